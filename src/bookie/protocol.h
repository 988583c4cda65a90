/*
 * The bookie RPC wire format (TCP port 3181): frame encoding, an incremental frame decoder for
 * bytes arriving from libuv reads, and a connection's output queue. Shared by the client
 * (client.c, linked by brokers) and the server (server.c); nothing here knows the storage engine.
 * Private to src/bookie (outside it, only the codec's fuzz target and its seed generator in
 * tests/fuzz include it); the client's users see bookie/client.h.
 *
 * FRAMES
 *
 *     +--------------+---------------+-----------------------+---------------------------+
 *     | frame_len u32| header_len u32| header (protobuf)     | payload                   |
 *     +--------------+---------------+-----------------------+---------------------------+
 *                    |<------------------------- frame_len bytes ------------------------>|
 *
 *   Lengths are big-endian. frame_len counts the bytes after itself: 4 + header_len + payload.
 *   4 <= frame_len <= BK_FRAME_BYTES_MAX and header_len <= min(frame_len - 4,
 *   BK_HEADER_BYTES_MAX); anything else, or a header that does not parse as the expected
 *   message, is MG_EPROTO and the connection is closed (no resynchronisation is attempted: a
 *   stream that lost its framing cannot be trusted).
 *   The header is a magnetar.bookie.Request (client -> bookie) or Response (bookie -> client),
 *   proto/bookie.proto. Payload: ADD requests carry the entry's bytes; READ and READ_RANGE
 *   responses carry the entries listed in the header, concatenated in that order, and the
 *   sizes listed must add up to the payload length exactly. Every other frame has no payload.
 *   The list has two forms, never both in one header: compact (first_entry_id >= 0 and packed
 *   entry_sizes: ids first_entry_id, first_entry_id + 1, ...), which the encoder writes whenever
 *   the ids are consecutive (a range always is: ~2 bytes per 1 KiB entry instead of ~8 and no
 *   sub-message to build or parse), and general (one EntryRef per entry, any ids) otherwise.
 *   The decoder accepts both and presents them identically (bk_frame.entries). A compact list
 *   with a field missing, a negative first id or ids past INT64_MAX, or a header with both
 *   forms, is MG_EPROTO.
 *
 * OPERATIONS (request fields -> response fields; every response echoes request_id and op and
 * has a status, an MG_ error code)
 *   ADD        ledger_id, entry_id, payload          -> ledger_id, entry_id
 *   READ       ledger_id, entry_id                   -> entries (one)
 *   READ_RANGE ledger_id, entry_id (first),          -> entries first.. in order, as many as fit
 *              last_entry_id, max_bytes                 max_bytes (at least one), stopping at the
 *                                                       first missing entry
 *   READ_LAC   ledger_id                             -> last_entry_id (-1: none stored)
 *   FENCE      ledger_id                             -> last_entry_id
 *   DELETE     ledger_id                             -> status only
 *   HEALTH     -                                     -> MG_OK, or MG_EREADONLY
 *   other op values                                  -> MG_ENOTSUP
 *   A missing field, a negative id, last_entry_id < entry_id or a payload on anything but ADD
 *   is MG_EINVAL; an ADD payload over BK_ENTRY_BYTES_MAX is MG_ELIMIT. A READ_RANGE answers at
 *   most BK_RANGE_ENTRIES_MAX entries and at most the server's cap of bytes (BK_RANGE_BYTES_MAX
 *   or lower; max_bytes 0 or absent means that cap); the client asks again for the rest. The
 *   storage's own errors (MG_EFENCED, MG_ENOTFOUND, MG_EREADONLY, MG_EAGAIN, ...) are passed
 *   through as the status.
 *   Requests are pipelined: a client sends without waiting, the bookie answers in any order, and
 *   the client matches responses by request_id (unique among its requests in flight on the
 *   connection).
 *
 * BUFFER OWNERSHIP
 *   Encoding writes the two lengths and the header into one new small mg_buf and references the
 *   payload's buffers (no copy of payload bytes). Decoding reads into mg_bufs owned by the
 *   decoder; a decoded frame holds one reference to the buffer that contains all of its bytes
 *   and its payload is a view of it (no copy when the frame arrived into one read buffer; when a
 *   frame starts near the end of a buffer its bytes so far are copied once into a buffer that
 *   can hold the whole frame). The decoder keeps reading into the unused tail of its buffer after
 *   views of earlier frames were handed out: those views cover bytes that never change again,
 *   and the buffer's length was set to its capacity while the decoder held the only reference,
 *   so no holder ever sees a byte or the length change. A frame is therefore always contiguous.
 *
 * THREADING: every object here belongs to one loop (the connection's); mg_bufs may travel.
 */
#ifndef MG_BOOKIE_PROTOCOL_H
#define MG_BOOKIE_PROTOCOL_H

#include "bookie/client.h" /* bk_entry, BK_RPC_PORT_DEFAULT, BK_REQUEST_PREFIX_BYTES_MAX */
#include "bookie/limits.h"
#include "common/buf.h"
#include "common/outq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Operation codes, the values of proto/bookie.proto's Op. */
typedef enum bk_op {
    BK_OP_ADD = 1,
    BK_OP_READ = 2,
    BK_OP_READ_RANGE = 3,
    BK_OP_READ_LAC = 4,
    BK_OP_FENCE = 5,
    BK_OP_DELETE = 6,
    BK_OP_HEALTH = 7,
} bk_op;
#define BK_OP_MAX 7

/* "add", "read", "read_range", "read_lac", "fence", "delete", "health"; "unknown" for any other
 * value. Static strings, used as metric labels. */
const char *bk_op_name(int32_t op);

/* Which optional fields a request or response carries (bk_request.present, bk_response.present). */
#define BK_HAS_LEDGER_ID     (1u << 0)
#define BK_HAS_ENTRY_ID      (1u << 1)
#define BK_HAS_LAST_ENTRY_ID (1u << 2)
#define BK_HAS_MAX_BYTES     (1u << 3)
#define BK_HAS_FLAGS         (1u << 4)

/* A request header. Fields whose bit is not in present are not sent (and read as 0). */
typedef struct bk_request {
    uint64_t request_id;
    int32_t op; /* a bk_op; other values travel as they are */
    uint32_t present;
    int64_t ledger_id;
    int64_t entry_id;
    int64_t last_entry_id;
    uint32_t max_bytes;
    uint32_t flags;
} bk_request;

/* A response header, without its entry list: the encoder takes the entries separately, the
 * decoder puts them in bk_frame. Only BK_HAS_LEDGER_ID, BK_HAS_ENTRY_ID and BK_HAS_LAST_ENTRY_ID
 * apply. message is "" for none; a longer one is cut at BK_MESSAGE_BYTES_MAX - 1 bytes. */
typedef struct bk_response {
    uint64_t request_id;
    int32_t op;
    int32_t status; /* MG_OK or an MG_E* code */
    uint32_t present;
    int64_t ledger_id;
    int64_t entry_id;
    int64_t last_entry_id;
    char message[BK_MESSAGE_BYTES_MAX];
} bk_response;

typedef enum bk_frame_kind {
    BK_FRAME_REQUEST = 0, /* a server decodes requests */
    BK_FRAME_RESPONSE = 1 /* a client decodes responses */
} bk_frame_kind;

/* One decoded frame. Owns one reference to buf (the buffer holding all of the frame's bytes)
 * and, for a response with entries, the entries array; release both with bk_frame_release.
 * Copying the struct moves the ownership (release exactly one copy). */
typedef struct bk_frame {
    bk_request req;     /* a request decoder's frames */
    bk_response resp;   /* a response decoder's frames */
    mg_buf *buf;        /* never NULL in a decoded frame */
    size_t payload_off; /* the payload is buf[payload_off, payload_off + payload_len) */
    size_t payload_len;
    bk_entry *entries; /* response: views into buf (borrowing the frame's reference) */
    size_t entry_count;
} bk_frame;

/* Drops the frame's reference and entries and zeroes it. NULL fields are fine (also a zeroed
 * frame). */
void bk_frame_release(bk_frame *frame);

/* ---- Encoding ---------------------------------------------------------------------------- */

/* Encodes the 8 length bytes and the header of a request frame with payload_len payload bytes
 * into a new buffer: *out (refcount 1, owned by the caller, length = the bytes to send before
 * the payload). Returns MG_OK, MG_ELIMIT (the frame would exceed BK_FRAME_BYTES_MAX) or
 * MG_ENOMEM; *out is untouched on error. */
int bk_encode_request_head(const bk_request *req, size_t payload_len, mg_buf **out);

/* As above for a response whose payload is entries[0..entry_count) (the header lists their ids
 * and sizes, in the compact form when the ids are consecutive from a non-negative first one,
 * else as EntryRefs; the payload length is the sum of their lengths). MG_ELIMIT also when
 * entry_count exceeds BK_RANGE_ENTRIES_MAX or an entry is longer than UINT32_MAX. */
int bk_encode_response_head(const bk_response *resp, const bk_entry *entries, size_t entry_count,
                            mg_buf **out);

/* Appends a whole request frame to out: the head (a new buffer) and the view payload[off,
 * off + len) (referenced, not copied; payload may be NULL when len is 0). All or nothing:
 * MG_ELIMIT when out lacks the 2 free slices (or as bk_encode_request_head), MG_EINVAL when the
 * view is outside payload's valid bytes, MG_ENOMEM. Loop thread of the chain. */
int bk_encode_request(const bk_request *req, mg_buf *payload, size_t off, size_t len,
                      mg_chain *out);

/* Appends a whole response frame to out: the head, then the entries' views referenced in order
 * (adjacent views of one buffer become one slice). All or nothing: MG_ELIMIT when out lacks the
 * slices (see bk_outq for responses of many entries), MG_EINVAL when a view is outside its
 * buffer's valid bytes, MG_ENOMEM. */
int bk_encode_response(const bk_response *resp, const bk_entry *entries, size_t entry_count,
                       mg_chain *out);

/* ---- Decoding ---------------------------------------------------------------------------- */

/* An incremental frame decoder, embedded by value in a connection. Fields are private.
 * Use with libuv: the alloc callback calls bk_decoder_alloc, the read callback
 * bk_decoder_commit(nread) and then bk_decoder_next until it returns MG_EAGAIN. */
typedef struct bk_decoder {
    bk_frame_kind kind;
    mg_buf *buf; /* current read buffer (length == capacity), or NULL */
    size_t pos;  /* first byte not yet returned in a frame */
    size_t fill; /* bytes received into buf */
    int error;   /* sticky: MG_EPROTO once the stream is broken */
} bk_decoder;

/* Makes an empty decoder for frames of the given kind. Allocates nothing. */
void bk_decoder_init(bk_decoder *dec, bk_frame_kind kind);

/* Drops the decoder's buffer (frames already returned keep theirs). The decoder may be reused
 * after bk_decoder_init. */
void bk_decoder_destroy(bk_decoder *dec);

/* Returns in *out free space to receive bytes into (for a libuv alloc callback): at least the
 * rest of the current frame when its length is known, so a frame always ends up in one buffer.
 * May move the bytes of an incomplete frame into a new buffer (the one copy). Returns MG_OK or
 * MG_ENOMEM (then *out is {NULL, 0}, which libuv reports to the read callback as UV_ENOBUFS). */
int bk_decoder_alloc(bk_decoder *dec, uv_buf_t *out);

/* Records that nread bytes were written at the start of the space the last bk_decoder_alloc
 * returned (asserts they fit). */
void bk_decoder_commit(bk_decoder *dec, size_t nread);

/* Copies data[0, size) into the decoder as if it had been read (bk_decoder_alloc + memcpy +
 * bk_decoder_commit, repeated). For tests and tools. Returns MG_OK or MG_ENOMEM. */
int bk_decoder_feed(bk_decoder *dec, const void *data, size_t size);

/* Takes the next complete frame: MG_OK and *out filled (owned by the caller: bk_frame_release),
 * MG_EAGAIN when more bytes are needed (*out zeroed), MG_EPROTO when the stream is malformed
 * (sticky: every later call returns it too; close the connection), MG_ENOMEM (the entries array
 * or the header could not be allocated; the frame stays in the decoder and a later call may
 * succeed). */
int bk_decoder_next(bk_decoder *dec, bk_frame *out);

/* Bytes received and not yet returned in a frame. */
size_t bk_decoder_buffered(const bk_decoder *dec);

/* The checks a bookie makes on a decoded request before any work (server.c): the fields its op
 * needs are present (ADD, READ: ledger_id and entry_id; READ_RANGE: those and last_entry_id;
 * READ_LAC, FENCE, DELETE: ledger_id; HEALTH: none), those ids are >= 0, a READ_RANGE has
 * last_entry_id >= entry_id, only ADD carries a payload (payload_len bytes), and an ADD's payload
 * is at most BK_ENTRY_BYTES_MAX. Returns MG_OK; MG_ENOTSUP (an op this bookie does not know),
 * MG_EINVAL or MG_ELIMIT with the reason for the reply in why (NUL-terminated, cut to why_size;
 * why may be NULL when why_size is 0). Pure: any thread. */
int bk_request_check(const bk_request *req, size_t payload_len, char *why, size_t why_size);

/* ---- Output queue ------------------------------------------------------------------------ */

/* A connection's output is the common output queue (common/outq.h: blocks of slices written
 * with uv_write, coalesced while a write is in flight); these two append bookie frames to it,
 * the payload as references to the entries' buffers (adjacent views of one buffer merged). */
typedef mg_outq bk_outq;

/* Appends a request frame (as bk_encode_request, any number of slices). Returns MG_OK,
 * MG_EINVAL, MG_ELIMIT or MG_ENOMEM; all or nothing. */
int bk_outq_push_request(mg_outq *q, const bk_request *req, mg_buf *payload, size_t off,
                         size_t len);

/* As bk_outq_push_request, with prefix[0, prefix_len) sent first as the start of the payload:
 * the frame's payload is prefix || payload[off, off + len). The prefix is copied into the
 * frame's head buffer, so a small header can go before a large payload without copying the
 * payload. prefix_len <= BK_REQUEST_PREFIX_BYTES_MAX (else MG_EINVAL). */
int bk_outq_push_request_prefixed(mg_outq *q, const bk_request *req, const uint8_t *prefix,
                                  size_t prefix_len, mg_buf *payload, size_t off, size_t len);

/* Appends a response frame (as bk_encode_response, any number of entries up to
 * BK_RANGE_ENTRIES_MAX). Returns MG_OK, MG_EINVAL, MG_ELIMIT or MG_ENOMEM; all or nothing. */
int bk_outq_push_response(mg_outq *q, const bk_response *resp, const bk_entry *entries,
                          size_t entry_count);

#endif
