/*
 * A blocking client of the chat gateway's client protocol (GOIM / Bilibili packets,
 * REFERENCE.md §4), for tests: one connection over TCP or WebSocket to 127.0.0.1, packets
 * written as given and read back whole. It speaks the wire itself (packet header, WebSocket
 * handshake with a random key, masked client frames, the Sec-WebSocket-Accept check) and
 * shares no code with the gateway, so a test compares the gateway with an independent reading
 * of the protocol. One thread drives a connection; nothing runs behind it.
 *
 * Invariants:
 *  1. Every wait is bounded: each read and write by the connection's timeout_ms (poll with a
 *     deadline); nothing loops without a bound.
 *  2. A connection holds at most one packet or frame returned (freed by the next read on it and
 *     by goim_close); bytes read past it wait in the connection's buffer.
 *  3. Results are MG_* codes, never assertions, so callers decide what a failure means:
 *     MG_ETIMEDOUT nothing whole within the timeout, MG_ECLOSED the peer closed (end of stream,
 *     a reset, or a WebSocket close frame), MG_EPROTO bytes that are not the protocol, MG_ELIMIT
 *     a packet over GOIM_PACKET_BYTES_MAX, MG_ECONNECTION the socket failed, MG_ENOMEM.
 */
#ifndef MG_TESTS_SUPPORT_GOIM_CLIENT_H
#define MG_TESTS_SUPPORT_GOIM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOIM_HEADER_BYTES     16u
#define GOIM_PACKET_BYTES_MAX (16u * 1024 * 1024) /* the largest packet or frame read */

/* A packet read or to split: its body points into the connection's or the caller's bytes. */
typedef struct goim_packet {
    uint32_t packet_len;
    uint16_t ver;
    uint32_t op;
    uint32_t seq;
    const uint8_t *body; /* body_len bytes; NULL when body_len is 0 */
    uint32_t body_len;
} goim_packet;

typedef struct goim_conn {
    int fd;         /* -1 when closed */
    bool ws;        /* packets travel in WebSocket binary frames */
    int timeout_ms; /* bounds each read and write */
    uint8_t *in;    /* bytes read and not yet returned (WebSocket: data frames' payloads) */
    size_t in_len;
    size_t in_cap;
    uint8_t *raw; /* what the WebSocket frame reader has read and not parsed */
    size_t raw_len;
    size_t raw_cap;
    uint8_t *last;          /* the last packet or frame returned */
    uint16_t ws_close_code; /* the code of the server's close frame, once one came (0: none) */
} goim_conn;

/* Connects over TCP to 127.0.0.1:port with TCP_NODELAY; rcvbuf > 0 sets SO_RCVBUF before
 * connecting (a client that takes little into its kernel buffer). Returns MG_OK,
 * MG_ECONNECTION. */
int goim_connect_tcp(goim_conn *c, uint16_t port, int timeout_ms, int rcvbuf);

/* Connects to 127.0.0.1:port and does the WebSocket handshake on path (version 13, a random
 * Sec-WebSocket-Key). *http_status (may be NULL) gets the response's status. Returns MG_OK once
 * a 101 with the right Sec-WebSocket-Accept came; MG_EPROTO for another status or a wrong
 * accept (the connection is still open; the caller closes it), MG_ECONNECTION, MG_ETIMEDOUT. */
int goim_connect_ws(goim_conn *c, uint16_t port, const char *path, int timeout_ms, int rcvbuf,
                    int *http_status);

/* Closes the connection and frees what it holds; harmless on a closed one. */
void goim_close(goim_conn *c);

/* Writes all n bytes as they are (over WebSocket too: no frame around them). Returns MG_OK,
 * MG_ETIMEDOUT, MG_ECLOSED. */
int goim_write_raw(goim_conn *c, const void *p, size_t n);

/* Writes one packet: over WebSocket in one masked binary frame. Returns as goim_write_raw. */
int goim_send(goim_conn *c, uint16_t ver, uint32_t op, uint32_t seq, const void *body,
              size_t body_len);

/* Writes one WebSocket frame (FIN set) with opcode and payload; masked unless mask is false
 * (which a server must refuse). Returns as goim_write_raw. */
int goim_ws_send_frame(goim_conn *c, unsigned opcode, const void *payload, size_t len, bool mask);

/* Reads the next packet into *out (valid until the next read or goim_close). Over WebSocket
 * packets are read from binary frames' payloads, a packet possibly spanning frames. */
int goim_read(goim_conn *c, goim_packet *out);

/* WebSocket only: reads the next frame whole (pings are answered and skipped), with nothing of
 * a previous packet read left over. *payload is valid until the next read. A close frame sets
 * ws_close_code and returns MG_ECLOSED. */
int goim_ws_read_frame(goim_conn *c, unsigned *opcode, const uint8_t **payload, size_t *len);

/* Reads bytes until the peer closes, within the timeout: MG_ECLOSED when it closed (the normal
 * outcome), MG_ETIMEDOUT when it kept the connection open. The first dst_capacity bytes read
 * are kept in dst (may be NULL) and *len (may be NULL) gets their count; the rest is dropped. */
int goim_wait_closed(goim_conn *c, uint8_t *dst, size_t dst_capacity, size_t *len);

/* Reads exactly n bytes as they come (no packet or frame reading): for a socket that speaks
 * another protocol, e.g. a Job's link to the push port opened with goim_connect_tcp. */
int goim_read_exact(goim_conn *c, void *dst, size_t n);

/* Sends op 7 with body (a NUL-terminated JSON text) and reads the reply, which must be op 8.
 * Returns MG_OK with *reply set, MG_EPROTO for another op, or a read error. */
int goim_auth(goim_conn *c, const char *body, goim_packet *reply);

/* Decodes the packet at p[0, n) (exactly one packet). Returns MG_OK, MG_EPROTO. */
int goim_packet_decode(const uint8_t *p, size_t n, goim_packet *out);

/* Splits body[0, len), packets back to back (an op 9 body, a decompressed Bilibili batch), into
 * out[0, *count). Returns MG_OK, MG_EPROTO (a packet runs past the end or has a bad header),
 * MG_ELIMIT (more than cap packets). */
int goim_split(const uint8_t *body, size_t len, goim_packet *out, size_t cap, size_t *count);

/* Writes a 16-byte packet header (big-endian) into dst. */
void goim_header(uint8_t dst[GOIM_HEADER_BYTES], uint32_t packet_len, uint16_t header_len,
                 uint16_t ver, uint32_t op, uint32_t seq);

#endif
