/*
 * The GOIM packet codec: the packet the chat gateway speaks with its clients over TCP and
 * WebSocket, which is also Bilibili's public live-danmaku packet (REFERENCE.md §4). It is the
 * first piece of the gateway (docs/chat_gateway.md) and keeps no state between calls.
 *
 * PACKET (all integers big-endian)
 *
 *   [packLen u32][headerLen u16 = 16][ver u16][op u32][seq u32][body ...]
 *
 *   packLen counts the whole packet, header included, so a packet is packLen bytes long and its
 *   body packLen - 16. ver says what the body is (CG_VER_*), op what the packet means (CG_OP_*),
 *   seq is the client's sequence number, echoed in replies. An op 9 (raw batch) body is whole
 *   packets back to back, each with its own header.
 *
 * ZERO COPY
 *   Decoding never copies: cg_packet_decode and the batch splitter report pointers into the
 *   caller's bytes. A batch is encoded once into one mg_buf that every recipient shares.
 *
 * ERRORS
 *   MG_EAGAIN  not enough bytes yet for the header (cg_packet_size only)
 *   MG_EPROTO  malformed input: headerLen other than 16, packLen below 16, a batch that ends in
 *              the middle of a packet or whose packet runs past the batch
 *   MG_ELIMIT  a body over the allowed bound, or a batch of more than CG_BATCH_PACKETS_MAX
 *   MG_EINVAL  a caller's mistake: a destination too small, lengths that disagree
 *   MG_ENOMEM  allocation failed (the mg_buf encoders)
 *
 * THREADING: every function is reentrant and may run on any thread; memory passed in belongs to
 * the caller for the duration of the call.
 */
#ifndef MG_CHAT_GATEWAY_PACKET_H
#define MG_CHAT_GATEWAY_PACKET_H

#include "chat_gateway/limits.h"
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Operations of GOIM v2 (its api/protocol operation list; Bilibili uses the same numbers). */
#define CG_OP_HANDSHAKE         0u /* handshake */
#define CG_OP_HANDSHAKE_REPLY   1u
#define CG_OP_HEARTBEAT         2u /* client -> server, every 30 s */
#define CG_OP_HEARTBEAT_REPLY   3u /* server -> client, body: u32 room online count, ver 1 */
#define CG_OP_SEND_MSG          4u /* client -> server message */
#define CG_OP_SEND_MSG_REPLY    5u /* server -> client message (a room message goes out so) */
#define CG_OP_DISCONNECT_REPLY  6u
#define CG_OP_AUTH              7u  /* the first packet of a connection */
#define CG_OP_AUTH_REPLY        8u  /* ver 1, body {"code":0} */
#define CG_OP_RAW               9u  /* raw batch: the body is whole packets back to back */
#define CG_OP_PROTO_READY       10u /* GOIM's internal markers for its send ring, */
#define CG_OP_PROTO_FINISH      11u /* never sent on the wire */
#define CG_OP_CHANGE_ROOM       12u
#define CG_OP_CHANGE_ROOM_REPLY 13u
#define CG_OP_SUB               14u /* subscribe to ops */
#define CG_OP_SUB_REPLY         15u
#define CG_OP_UNSUB             16u /* unsubscribe from ops */
#define CG_OP_UNSUB_REPLY       17u
#define CG_OP_COUNT             18u /* ops 0 .. CG_OP_COUNT - 1 have names */

/* What the body is (Bilibili's meaning of ver; GOIM itself writes 1). */
#define CG_VER_JSON   0u /* JSON text */
#define CG_VER_INT    1u /* a heartbeat or auth body: u32 online count, {"code":0} */
#define CG_VER_ZLIB   2u /* zlib of packets back to back (not decoded by this codec) */
#define CG_VER_BROTLI 3u /* brotli of packets back to back (not decoded by this codec) */

/* Bytes of a heartbeat reply body: the room's online count as a big-endian u32. */
#define CG_HEARTBEAT_REPLY_BODY_BYTES 4u

/* A decoded packet: the header's fields and a view of its body inside the caller's bytes. As an
 * input to the encoders, packet_len is ignored. */
typedef struct cg_packet {
    uint32_t packet_len; /* packLen: CG_PACKET_HEADER_BYTES + body_len */
    uint16_t ver;        /* CG_VER_* */
    uint32_t op;         /* CG_OP_* (any value is carried; only the names are limited) */
    uint32_t seq;
    const uint8_t *body; /* body_len bytes; NULL only when body_len is 0 */
    uint32_t body_len;
} cg_packet;

/* --- One packet ------------------------------------------------------------------------------ */

/* Looks at the first n bytes of a stream (p may be NULL when n is 0) and tells how long the
 * packet that starts there is. body_max_bytes bounds the body (a connection passes its
 * configured bound, CG_PACKET_BODY_BYTES_DEFAULT unless set; values above
 * CG_PACKET_BODY_BYTES_ABS_MAX are treated as it). Each field is checked as soon as its bytes are
 * there, so a bad packLen is refused after 4 bytes and a bad headerLen after 6.
 * Returns MG_OK with *packet_len = packLen once the 16 header bytes are there (the body may not
 * be yet: wait for *packet_len bytes), MG_EAGAIN while fewer than 16 bytes are there and none
 * of them is wrong, MG_EPROTO when packLen < 16 or headerLen != 16, MG_ELIMIT when the body,
 * packLen - 16, is over the bound. *packet_len is set only on MG_OK. */
int cg_packet_size(const uint8_t *p, size_t n, uint32_t body_max_bytes, size_t *packet_len);

/* Decodes the packet p[0, packet_len), where packet_len is what cg_packet_size returned for it.
 * out->body points into p. Returns MG_OK, MG_EPROTO (headerLen != 16), MG_EINVAL (packet_len
 * disagrees with packLen, is below 16 or over the absolute bound, or p is NULL). */
int cg_packet_decode(const uint8_t *p, size_t packet_len, cg_packet *out);

/* Writes the packet (ver, op, seq, body of body_len bytes; body may be NULL when body_len is 0)
 * into dst, which has room for dst_capacity bytes, and sets *written to its length,
 * CG_PACKET_HEADER_BYTES + body_len. Returns MG_OK, MG_ELIMIT (body over
 * CG_PACKET_BODY_BYTES_ABS_MAX), MG_EINVAL (dst too small; nothing is written). */
int cg_packet_encode(uint16_t ver, uint32_t op, uint32_t seq, const void *body, size_t body_len,
                     uint8_t *dst, size_t dst_capacity, size_t *written);

/* As cg_packet_encode, into a new mg_buf of exactly the packet's length; the caller owns its one
 * reference. Returns MG_OK, MG_ELIMIT, MG_ENOMEM (*out is then NULL). */
int cg_packet_encode_buf(uint16_t ver, uint32_t op, uint32_t seq, const void *body, size_t body_len,
                         mg_buf **out);

/* The name of an op for logs and metric labels: "HEARTBEAT", "AUTH_REPLY", "RAW", ...;
 * "UNKNOWN" for a value past CG_OP_UNSUB_REPLY. The string is static. */
const char *cg_op_name(uint32_t op);

/* --- Heartbeat reply ------------------------------------------------------------------------- */

/* Writes the body of a heartbeat reply (op 3, ver 1): the room's online count as a big-endian
 * u32, the only form Bilibili's clients read. Cannot fail. */
void cg_heartbeat_reply_body(uint32_t online_count, uint8_t body[CG_HEARTBEAT_REPLY_BODY_BYTES]);

/* Reads the online count of a decoded heartbeat reply. Returns MG_OK, MG_EPROTO when the body is
 * not exactly CG_HEARTBEAT_REPLY_BODY_BYTES long. */
int cg_heartbeat_reply_count(const cg_packet *reply, uint32_t *online_count);

/* --- Op 9 raw batches ------------------------------------------------------------------------ */

/* Walks the packets of an op 9 body one at a time. Fields are private. */
typedef struct cg_batch_iter {
    const uint8_t *body;
    size_t body_len;
    size_t pos;            /* offset of the next packet */
    uint32_t packet_count; /* packets returned so far */
    int error;             /* MG_OK, or the error every later call returns */
} cg_batch_iter;

/* Starts a walk over body[0, body_len) (the body of an op 9 packet; body may be NULL when
 * body_len is 0). The iterator reads the caller's bytes, which must outlive it. */
void cg_batch_iter_init(cg_batch_iter *it, const uint8_t *body, size_t body_len);

/* The next packet of the batch in *out (its body points into the batch). Returns MG_OK,
 * MG_ENOTFOUND when the batch is used up, MG_EPROTO when fewer than 16 bytes are left, a header
 * is malformed or a packLen runs past the batch, MG_ELIMIT after CG_BATCH_PACKETS_MAX packets.
 * An error is returned again on every later call. An inner packet's body is bounded only by the
 * batch around it. */
int cg_batch_next(cg_batch_iter *it, cg_packet *out);

/* Splits a whole batch at once into out[0, *count), checking every packet before returning.
 * Returns MG_OK, cg_batch_next's errors, or MG_ELIMIT when the batch holds more than
 * out_capacity packets. *count is set only on MG_OK. */
int cg_batch_split(const uint8_t *body, size_t body_len, cg_packet *out, size_t out_capacity,
                   size_t *count);

/* The length of the op 9 packet that cg_batch_encode builds from packets[0, count): 16 + the sum
 * of 16 + body_len of each. */
size_t cg_batch_encoded_len(const cg_packet *packets, size_t count);

/* Encodes packets[0, count) (their ver, op, seq and body; packet_len is ignored) as the body of
 * one op 9 packet with the given ver and seq, into a new mg_buf of exactly its length that the
 * caller owns: the gateway encodes a merged batch once and shares that buffer with every
 * recipient. Returns MG_OK, MG_ELIMIT (count over CG_BATCH_PACKETS_MAX, or the batch body over
 * CG_PACKET_BODY_BYTES_ABS_MAX), MG_EINVAL (count 0), MG_ENOMEM (*out is then NULL). */
int cg_batch_encode(uint16_t ver, uint32_t seq, const cg_packet *packets, size_t count,
                    mg_buf **out);

#endif
