/*
 * The push protocol's framing (proto/chat.proto; docs/chat_gateway.md "Push protocol"): how a
 * Job worker and a gateway exchange ChatFrames over TCP. Both sides use it: the Job as the
 * client (job.c), the gateway as the server (gateway.c).
 *
 * FRAME (integers big-endian)
 *
 *   [length u32][length bytes: one serialized magnetar.chat.ChatFrame]
 *
 *   length counts only the ChatFrame; CG_PUSH_LENGTH_BYTES + length is at most
 *   CG_PUSH_FRAME_BYTES_MAX. A ChatFrame with no field set (length 0) is valid and means
 *   nothing (a newer peer's frame kind this side does not know unpacks the same way).
 *
 * ENCODING: a frame is encoded once into one mg_buf, which a gateway link's output queue
 *   (mg_outq) sends; the Job shares one push's buffer between every gateway it goes to.
 *
 * DECODING: cg_push_decoder is embedded in a connection and fed the bytes of each read as they
 *   come (a libuv read callback). A frame that lies whole in the fed bytes is unpacked from them
 *   without a copy; only the bytes of a frame that is not complete yet are copied, into the
 *   decoder's own buffer, which grows to that frame's length and is released when it completes.
 *   Errors are sticky: after MG_EPROTO or MG_ELIMIT the stream cannot be resynchronised and the
 *   connection must be closed.
 *
 *     fed bytes --cg_push_decoder_next--> MG_OK (a frame) ... MG_EAGAIN (all used; feed more)
 *                                    \--> MG_EPROTO / MG_ELIMIT (sticky: close the connection)
 *
 * ERRORS
 *   MG_EAGAIN  the fed bytes are used up (the decoder kept any incomplete frame's bytes)
 *   MG_ELIMIT  a length over CG_PUSH_FRAME_BYTES_MAX, read or written
 *   MG_EPROTO  bytes that do not unpack as a ChatFrame
 *   MG_ENOMEM  allocation failed (sticky in the decoder as well)
 *   MG_EINVAL  a caller's mistake (NULL frame)
 *
 * THREADING: the encoder is reentrant; a decoder belongs to its connection's loop.
 */
#ifndef MG_CHAT_GATEWAY_PUSH_H
#define MG_CHAT_GATEWAY_PUSH_H

#include "chat_gateway/limits.h"
#include "common/buf.h"
#include "proto/chat.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* The length of f's encoding, prefix included: CG_PUSH_LENGTH_BYTES + its packed size (may be
 * over CG_PUSH_FRAME_BYTES_MAX: the Job checks a push before encoding it). */
size_t cg_push_frame_encoded_len(const Magnetar__Chat__ChatFrame *f);

/* Encodes f as one frame, [u32 length][packed f], into a new mg_buf of exactly that length;
 * the caller owns its one reference and may share it (mg_buf_ref) between links. f is only
 * read. Returns MG_OK, MG_ELIMIT (the frame would be over CG_PUSH_FRAME_BYTES_MAX), MG_EINVAL
 * (f NULL), MG_ENOMEM; *out is NULL on error. */
int cg_push_frame_encode(const Magnetar__Chat__ChatFrame *f, mg_buf **out);

/* The incremental decoder of one connection. Fields are private. */
typedef struct cg_push_decoder {
    const uint8_t *src; /* the bytes fed and not yet used: src[src_pos, src_size) */
    size_t src_size;
    size_t src_pos;
    uint8_t *part;   /* the incomplete frame's bytes (prefix included), or NULL */
    size_t part_len; /* bytes of it held */
    size_t part_cap; /* bytes allocated */
    uint8_t head[CG_PUSH_LENGTH_BYTES]; /* the prefix while fewer than 4 bytes of it are held */
    uint32_t frame_len;                 /* the ChatFrame's length once the prefix is whole */
    int error;                          /* MG_OK, or the sticky error */
} cg_push_decoder;

/* Prepares an empty decoder. Never fails (nothing is allocated until a frame is split). */
void cg_push_decoder_init(cg_push_decoder *d);

/* Frees what the decoder holds (an incomplete frame's bytes); it may be initialised again. */
void cg_push_decoder_free(cg_push_decoder *d);

/* Hands the decoder src[0, src_size), the bytes of one read (src may be NULL when src_size is
 * 0). The decoder reads them in place, until cg_push_decoder_next returns something other than
 * MG_OK: the caller keeps them valid until then, and feeds again only after that (asserted). */
void cg_push_decoder_feed(cg_push_decoder *d, const uint8_t *src, size_t src_size);

/* The next whole frame of the stream. Returns MG_OK with *out a frame the caller owns and frees
 * with magnetar__chat__chat_frame__free_unpacked(*out, NULL); MG_EAGAIN when the fed bytes are
 * used up (an incomplete frame's bytes are kept for the next feed); MG_ELIMIT (a length over
 * CG_PUSH_FRAME_BYTES_MAX: refused as soon as its 4 bytes are there), MG_EPROTO (not a
 * ChatFrame) or MG_ENOMEM, each returned again on every later call. *out is NULL unless MG_OK. */
int cg_push_decoder_next(cg_push_decoder *d, Magnetar__Chat__ChatFrame **out);

/* Bytes the decoder holds of an incomplete frame (0 between frames), for tests and metrics. */
size_t cg_push_decoder_buffered(const cg_push_decoder *d);

#endif
