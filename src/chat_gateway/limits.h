/*
 * The fixed limits of the chat gateway (src/chat_gateway), each with the reason for its value;
 * relations between them are checked at compile time at the end (docs/common.md, "Limits").
 */
#ifndef MG_CHAT_GATEWAY_LIMITS_H
#define MG_CHAT_GATEWAY_LIMITS_H

/* GOIM packet codec (piece: packet, src/chat_gateway). */
/* The fixed header: packLen u32, headerLen u16, ver u16, op u32, seq u32. GOIM and Bilibili
 * both write headerLen = 16 and nothing else; a packet with another value is refused. */
#define CG_PACKET_HEADER_BYTES       16u
/* The body bound a connection applies to what its client sends when nothing else is configured:
 * GOIM's comet refuses a body over 4096 bytes (REFERENCE.md §4). Auth, heartbeats and a room
 * message sent by a client are all far smaller. */
#define CG_PACKET_BODY_BYTES_DEFAULT 4096u
/* Absolute bound on a body the codec builds or accepts, whatever the configured bound (values
 * above it are treated as it): packLen is a u32 read from the network, and the largest body the
 * gateway itself writes is an op 9 batch of CG_BATCH_PACKETS_MAX packets of a default-bounded
 * body each (checked below), about 4.1 MiB. 8 MiB leaves room for that and keeps a hostile
 * packLen from making a connection buffer gigabytes. */
#define CG_PACKET_BODY_BYTES_ABS_MAX (8u * 1024 * 1024)
/* Packets in one op 9 raw batch, split or built. GOIM's Job merges at most 20 messages per room
 * before pushing; 1024 leaves room for a larger merge setting while bounding the split loop and
 * any per-packet array a caller sizes from it. */
#define CG_BATCH_PACKETS_MAX         1024u

/* Relations between the limits above, checked at compile time. */
_Static_assert(CG_PACKET_BODY_BYTES_DEFAULT <= CG_PACKET_BODY_BYTES_ABS_MAX,
               "the default body bound must be within the absolute one");
_Static_assert((unsigned long long)CG_BATCH_PACKETS_MAX *(CG_PACKET_HEADER_BYTES +
                                                          CG_PACKET_BODY_BYTES_DEFAULT) <=
                   CG_PACKET_BODY_BYTES_ABS_MAX,
               "a full batch of default-bounded packets must fit one op 9 body");
_Static_assert((unsigned long long)CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_ABS_MAX <=
                   0xFFFFFFFFull,
               "packLen is a u32");
_Static_assert(CG_BATCH_PACKETS_MAX *CG_PACKET_HEADER_BYTES <= CG_PACKET_BODY_BYTES_ABS_MAX,
               "a batch of empty packets must fit one op 9 body");

/* WebSocket engine (piece: ws, src/chat_gateway/ws.h, RFC 6455). */
/* Bytes of an HTTP Upgrade request, request line and headers up to the blank line. A browser's
 * request with cookies is 0.5 to 2 KiB; 8 KiB is nginx's default for one header line
 * (large_client_header_buffers) and bounds what a connection buffers before it is a WebSocket. */
#define CG_WS_HANDSHAKE_BYTES_MAX       8192u
/* Payload of a control frame (close, ping, pong): RFC 6455 §5.5 allows at most 125 bytes. */
#define CG_WS_CONTROL_PAYLOAD_BYTES_MAX 125u
/* A close reason: what is left of a control payload after the 2-byte code (RFC 6455 §5.5.1). */
#define CG_WS_CLOSE_REASON_BYTES_MAX    (CG_WS_CONTROL_PAYLOAD_BYTES_MAX - 2u)
/* A client frame's header at its longest: 2 bytes, a 64-bit length, a 4-byte mask (§5.2). A
 * caller's input buffer needs this plus the message bound to hold any acceptable frame. */
#define CG_WS_CLIENT_HEADER_BYTES_MAX   14u
/* A server frame's header at its longest: 2 bytes and a 64-bit length; no mask (§5.1). */
#define CG_WS_SERVER_HEADER_BYTES_MAX   10u
/* A server control frame: a 2-byte header (a length of 125 fits the first byte) and its payload. */
#define CG_WS_CONTROL_FRAME_BYTES_MAX   (2u + CG_WS_CONTROL_PAYLOAD_BYTES_MAX)
/* The message bound a connection applies when nothing else is configured: a client's binary
 * message carries GOIM packets (auth, heartbeats, a room message), each bounded by
 * CG_PACKET_BODY_BYTES_DEFAULT; 16 KiB holds three full ones and keeps the input buffer a
 * connection needs for a whole frame small. */
#define CG_WS_MESSAGE_BYTES_DEFAULT     (16u * 1024)
/* Absolute bound on a message, whatever the configuration (larger values are treated as it):
 * one GOIM packet of the codec's absolute bound. It keeps message lengths and the reassembly
 * buffer's power-of-two growth within a u32. */
#define CG_WS_MESSAGE_BYTES_ABS_MAX     (CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_ABS_MAX)
/* The first allocation of a reassembly buffer; it then doubles up to the message bound, so a
 * message split into many small fragments costs O(log n) reallocations, not one per fragment. */
#define CG_WS_REASSEMBLY_BYTES_MIN      256u
/* An HTTP response the engine builds: status line, Connection, Content-Type and -Length,
 * Sec-WebSocket-Version on a 426, and a one-line body; the 101 response is 129 bytes. */
#define CG_WS_RESPONSE_BYTES_MAX        512u

_Static_assert(CG_WS_MESSAGE_BYTES_DEFAULT <= CG_WS_MESSAGE_BYTES_ABS_MAX,
               "the default message bound must be within the absolute one");
_Static_assert(CG_WS_MESSAGE_BYTES_DEFAULT >=
                   3u * (CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_DEFAULT),
               "a default message must hold three default-bounded GOIM packets");
_Static_assert((unsigned long long)CG_WS_MESSAGE_BYTES_ABS_MAX * 2u <= 0xFFFFFFFFull,
               "reassembly doubling must stay within a u32");
_Static_assert(CG_WS_REASSEMBLY_BYTES_MIN <= CG_WS_MESSAGE_BYTES_DEFAULT,
               "the first reassembly allocation must be within the default bound");
_Static_assert(CG_WS_CONTROL_FRAME_BYTES_MAX < CG_WS_RESPONSE_BYTES_MAX,
               "a caller's response buffer also holds any control frame");

#endif
