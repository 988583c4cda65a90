/*
 * The WebSocket protocol engine of the chat gateway (RFC 6455, server side). It owns no socket
 * and does no I/O: the gateway feeds it the bytes it read from a connection on the WebSocket
 * port and writes the bytes it is asked to write. Three parts:
 *
 *   HANDSHAKE  cg_ws_handshake_parse reads the HTTP/1.1 Upgrade request at the head of a
 *              connection (incrementally: MG_EAGAIN until the blank line), checks it (§4.2.1),
 *              reports the path, query and the request's length, and computes
 *              Sec-WebSocket-Accept; cg_ws_response_accept and cg_ws_response_refuse build the
 *              101 response or a 400 / 404 / 426 refusal.
 *   INCOMING   cg_ws_conn, embedded by value in every connection (32 bytes on LP64), parses
 *              client frames fed with cg_ws_feed, unmasks them in place, reassembles fragments
 *              and reports whole messages, ping replies and the close through callbacks.
 *   OUTGOING   cg_ws_frame_header writes a server frame header to put in front of a shared
 *              payload; cg_ws_ping_frame, cg_ws_pong_frame and cg_ws_close_frame build whole
 *              control frames.
 *
 * MEMORY
 *   An idle connection with no partial frame holds no buffer: cg_ws_feed consumes whole frames
 *   only and leaves a partial frame in the caller's bytes (the caller keeps p[consumed, n) and
 *   feeds it again with what follows). A whole unfragmented message is delivered as a pointer
 *   into the caller's bytes. Only a fragmented message is copied, into a buffer the engine
 *   allocates at its first fragment and frees at its last (or at close, or cg_ws_conn_fini).
 *   A caller's input buffer needs room for CG_WS_CLIENT_HEADER_BYTES_MAX + the message bound
 *   (and at least 6 + CG_WS_CONTROL_PAYLOAD_BYTES_MAX for a control frame) to hold the largest
 *   frame the engine accepts; larger frames are refused (close 1009) as soon as their header is
 *   there.
 *
 * CONNECTION STATES
 *
 *     OPEN --(data frame, not FIN)--> REASSEMBLING --(final continuation)--> OPEN
 *     OPEN / REASSEMBLING --(close received, protocol error, cg_ws_close)--> CLOSED
 *
 *   CLOSED is sticky: cg_ws_feed ignores every later byte and returns MG_ECLOSED.
 *
 * ERRORS
 *   MG_EAGAIN  the handshake request is not complete yet
 *   MG_EPROTO  the handshake request is refused (the out struct says the status and why)
 *   MG_ELIMIT  the handshake request is over CG_WS_HANDSHAKE_BYTES_MAX without its blank line
 *   MG_ECLOSED bytes fed to a closed connection (ignored)
 *   MG_ENOMEM  a reassembly buffer could not be allocated (the engine closed with 1011)
 *   MG_EINVAL  a caller's mistake: a destination too small, a payload or reason too long
 *   Protocol errors in frames are not returned: the engine closes (1002, 1007, 1009) through
 *   the callbacks, as RFC 6455 §7.1.7 "fail the WebSocket connection" asks.
 *
 * THREADING: a cg_ws_conn is used by one thread at a time (its connection's loop); every other
 * function is reentrant and may run on any thread.
 */
#ifndef MG_CHAT_GATEWAY_WS_H
#define MG_CHAT_GATEWAY_WS_H

#include "chat_gateway/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Frame opcodes (RFC 6455 §5.2). */
#define CG_WS_OP_CONTINUATION 0x0u
#define CG_WS_OP_TEXT         0x1u
#define CG_WS_OP_BINARY       0x2u
#define CG_WS_OP_CLOSE        0x8u
#define CG_WS_OP_PING         0x9u
#define CG_WS_OP_PONG         0xAu

/* Close codes (RFC 6455 §7.4.1). */
#define CG_WS_CLOSE_NORMAL          1000u /* the purpose of the connection is fulfilled */
#define CG_WS_CLOSE_GOING_AWAY      1001u /* the server shuts down */
#define CG_WS_CLOSE_PROTOCOL_ERROR  1002u /* a frame broke RFC 6455 */
#define CG_WS_CLOSE_UNSUPPORTED     1003u /* a data type the endpoint does not accept */
#define CG_WS_CLOSE_NO_STATUS       1005u /* reported only: a close frame without a code */
#define CG_WS_CLOSE_INVALID_PAYLOAD 1007u /* text that is not UTF-8 */
#define CG_WS_CLOSE_POLICY          1008u /* e.g. no auth within its deadline */
#define CG_WS_CLOSE_TOO_BIG         1009u /* a message over the bound */
#define CG_WS_CLOSE_INTERNAL_ERROR  1011u /* the server failed (out of memory) */

/* Length of the Sec-WebSocket-Accept value: base64 of a 20-byte SHA-1. */
#define CG_WS_ACCEPT_CHARS 28u

/* --- Handshake ------------------------------------------------------------------------------- */

/* What cg_ws_handshake_parse found. path and query point into the caller's bytes. */
typedef struct cg_ws_handshake {
    size_t request_bytes; /* the request's length; bytes after it are frames (MG_OK only) */
    const char *path;     /* the request target up to '?', starting with '/' (MG_OK only) */
    size_t path_len;
    const char *query; /* after '?', without it; NULL when there is no '?' (MG_OK only) */
    size_t query_len;
    char accept[CG_WS_ACCEPT_CHARS + 1]; /* Sec-WebSocket-Accept, NUL-terminated (MG_OK only) */
    int status;         /* on MG_EPROTO or MG_ELIMIT: 400 or 426, the refusal to send */
    const char *reason; /* on MG_EPROTO or MG_ELIMIT: static text saying what was wrong */
} cg_ws_handshake;

/* Parses the HTTP/1.1 Upgrade request at the head of p[0, n), the first bytes read from a
 * connection (the caller calls again with all the bytes so far when more arrive). Checks method
 * GET, version HTTP/1.1, an origin-form target, Host, Upgrade with the token websocket,
 * Connection with the token Upgrade (both case-insensitive), Sec-WebSocket-Version 13 and a
 * Sec-WebSocket-Key that is base64 of 16 bytes. Lines may end in CRLF or LF. Subprotocol and
 * extension headers are ignored. Returns
 *   MG_OK      *out filled: the request took out->request_bytes bytes; any bytes after it
 *              are WebSocket frames;
 *   MG_EAGAIN  no blank line yet and nothing wrong so far (a first line that cannot start with
 *              "GET " is refused at once);
 *   MG_EPROTO  refused: out->status is 400, or 426 for a missing or other version, and
 *              out->reason says why (give both to cg_ws_response_refuse);
 *   MG_ELIMIT  CG_WS_HANDSHAKE_BYTES_MAX bytes without the blank line (status 400).
 * The path is reported, not checked: a caller serving one path answers others with 404. */
int cg_ws_handshake_parse(const uint8_t *p, size_t n, cg_ws_handshake *out);

/* Computes the Sec-WebSocket-Accept value of a Sec-WebSocket-Key (§4.2.2: base64 of the SHA-1
 * of the key and the protocol's GUID) into accept, NUL-terminated. Cannot fail. */
void cg_ws_accept_key(const char *key, size_t key_len, char accept[CG_WS_ACCEPT_CHARS + 1]);

/* Writes the 101 Switching Protocols response for a parsed request into dst (room for
 * dst_capacity bytes; CG_WS_RESPONSE_BYTES_MAX is always enough) and sets *written. Returns
 * MG_OK, MG_EINVAL (dst too small; nothing is written). */
int cg_ws_response_accept(const cg_ws_handshake *hs, uint8_t *dst, size_t dst_capacity,
                          size_t *written);

/* Writes a refusal into dst: status 400, 404 or 426 (426 carries Sec-WebSocket-Version: 13),
 * Connection: close, and a text/plain body of reason and a newline (reason is NUL-terminated,
 * at most CG_WS_CLOSE_REASON_BYTES_MAX bytes). Returns MG_OK, MG_EINVAL (another status, a reason
 * too long, dst too small; nothing is written). */
int cg_ws_response_refuse(int status, const char *reason, uint8_t *dst, size_t dst_capacity,
                          size_t *written);

/* --- Incoming frames ------------------------------------------------------------------------- */

/* What the engine tells its caller. Each is called from inside cg_ws_feed, on its thread; user
 * is the pointer given to cg_ws_conn_init. */
typedef struct cg_ws_events {
    /* A whole data message: opcode CG_WS_OP_TEXT (checked as UTF-8) or CG_WS_OP_BINARY. data
     * (NULL when len is 0) is valid only during the call: it points into the bytes given to
     * cg_ws_feed, unmasked in place, or into the engine's reassembly buffer; the caller may
     * modify it. Returns MG_OK to go on, or an error, which stops cg_ws_feed and is returned by
     * it (the connection stays open: the caller closes it with cg_ws_close, which it may also
     * call from here; data is then invalid once cg_ws_close returns). */
    int (*message_done)(void *user, unsigned opcode, uint8_t *data, size_t len);
    /* A control frame to send to the peer: a pong, the reply to a close, or the close the engine
     * sends on a protocol error. frame[0, len) is valid only during the call; the caller copies
     * it into the connection's write queue (len <= CG_WS_CONTROL_FRAME_BYTES_MAX). */
    void (*reply_ready)(void *user, const uint8_t *frame, size_t len);
    /* The connection is closed: by the peer (by_peer true: its code, CG_WS_CLOSE_NO_STATUS when
     * its close frame had none, and reason), or by the engine on a protocol error (by_peer false:
     * the code and reason it sent, after reply_ready gave the frame). The caller closes the
     * socket once the close frame is written. reason is valid only during the call. */
    void (*close_done)(void *user, uint16_t code, const char *reason, size_t reason_len,
                       bool by_peer);
} cg_ws_events;

/* What every connection of a listener shares: one per gateway, outliving its connections. */
typedef struct cg_ws_config {
    cg_ws_events events;
    /* Bound on a data message, fragments together (CG_WS_MESSAGE_BYTES_DEFAULT if unsure;
     * values above CG_WS_MESSAGE_BYTES_ABS_MAX are treated as it); over it: close 1009. */
    uint32_t message_bytes_max;
} cg_ws_config;

/* A connection's parser state, embedded by value. Fields are private. */
typedef struct cg_ws_conn {
    const cg_ws_config *config;
    void *user;
    uint8_t *msg;       /* the fragmented message being reassembled; NULL otherwise */
    uint32_t msg_len;   /* bytes in msg */
    uint8_t msg_opcode; /* CG_WS_OP_TEXT or _BINARY while reassembling; 0 otherwise */
    uint8_t utf8_state; /* the UTF-8 check's state across a text message's fragments */
    uint8_t closed;     /* 1 once a close was sent or received */
    uint8_t reserved;
} cg_ws_conn;

/* Starts a connection's parser once its handshake is done. config must outlive the connection;
 * user is passed to every callback. Allocates nothing. Cannot fail. */
void cg_ws_conn_init(cg_ws_conn *c, const cg_ws_config *config, void *user);

/* Frees what the connection holds (a partly reassembled message); c may then be dropped or
 * initialised again. Calls no callback. */
void cg_ws_conn_fini(cg_ws_conn *c);

/* Feeds the bytes p[0, n) read from the connection (p may be NULL when n is 0). Processes every
 * whole frame at the head of p, unmasking it in place and calling the callbacks, and sets
 * *consumed to the bytes of those frames: the caller keeps p[*consumed, n), a partial frame,
 * and feeds it again in front of the next bytes read. Returns
 *   MG_OK      every whole frame processed; after a close (received or sent by the engine in
 *              this call) the rest is ignored and *consumed is n;
 *   MG_ECLOSED the connection was already closed: the bytes are ignored, *consumed is n;
 *   MG_ENOMEM  a reassembly buffer could not be allocated: the engine closed with 1011;
 *   the error message_done returned: *consumed counts the frame that carried the message.
 * Must not be called from inside one of its own callbacks; cg_ws_close may be (the rest of the
 * bytes is then ignored and *consumed is n). */
int cg_ws_feed(cg_ws_conn *c, uint8_t *p, size_t n, size_t *consumed);

/* Closes the connection from the server's side: writes the close frame (code, and reason of
 * reason_len bytes, at most CG_WS_CLOSE_REASON_BYTES_MAX, may be NULL when 0) into dst, sets
 * *written, and marks the connection closed (a partly reassembled message is freed; later
 * cg_ws_feed calls ignore their bytes). Calls no callback. Returns MG_OK, MG_ECLOSED (already
 * closed: nothing is written), MG_EINVAL (as cg_ws_close_frame; the connection stays open). */
int cg_ws_close(cg_ws_conn *c, uint16_t code, const char *reason, size_t reason_len, uint8_t *dst,
                size_t dst_capacity, size_t *written);

/* True once a close was sent or received. */
bool cg_ws_conn_closed(const cg_ws_conn *c);

/* Bytes the connection holds for a message being reassembled (its buffer's capacity); 0 when
 * idle. For memory accounting. */
size_t cg_ws_conn_held_bytes(const cg_ws_conn *c);

/* --- Outgoing frames ------------------------------------------------------------------------- */

/* Writes the header of a server frame (FIN set, no mask, opcode, payload length in 7, 16 or 64
 * bits as §5.2 asks for the shortest) into dst and returns its length, 2 to
 * CG_WS_SERVER_HEADER_BYTES_MAX. Every recipient of a message gets the same bytes, so the
 * gateway writes header and payload once into one shared buffer. opcode is a CG_WS_OP_* value.
 * Cannot fail. */
size_t cg_ws_frame_header(unsigned opcode, uint64_t payload_len,
                          uint8_t dst[CG_WS_SERVER_HEADER_BYTES_MAX]);

/* Write a whole ping or pong frame with payload[0, payload_len) (payload may be NULL when
 * payload_len is 0) into dst and set *written. Return MG_OK, MG_EINVAL (payload over
 * CG_WS_CONTROL_PAYLOAD_BYTES_MAX, dst too small; nothing is written). */
int cg_ws_ping_frame(const void *payload, size_t payload_len, uint8_t *dst, size_t dst_capacity,
                     size_t *written);
int cg_ws_pong_frame(const void *payload, size_t payload_len, uint8_t *dst, size_t dst_capacity,
                     size_t *written);

/* Writes a close frame with code and reason[0, reason_len) (reason may be NULL when reason_len
 * is 0; it should be UTF-8) into dst and sets *written. code 0 writes a close frame with an
 * empty payload (the reply to a close that had no code; reason_len must then be 0). Returns
 * MG_OK, MG_EINVAL (reason over CG_WS_CLOSE_REASON_BYTES_MAX, a reason without a code, dst too
 * small; nothing is written). */
int cg_ws_close_frame(uint16_t code, const char *reason, size_t reason_len, uint8_t *dst,
                      size_t dst_capacity, size_t *written);

/* --- Close codes ----------------------------------------------------------------------------- */

/* True for a code a peer may send in a close frame (RFC 6455 §7.4: 1000-1003, 1007-1014 of the
 * IANA registry, 3000-4999). */
bool cg_ws_close_code_valid(uint16_t code);

/* The name of a close code for logs: "NORMAL", "PROTOCOL_ERROR", "TOO_BIG", ...; "REGISTERED"
 * for 3000-3999, "PRIVATE" for 4000-4999, "UNKNOWN" otherwise. The string is static. */
const char *cg_ws_close_name(uint16_t code);

#endif
