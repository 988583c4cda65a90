/*
 * Compressed batches for Bilibili clients (REFERENCE.md §4). A client whose auth asked
 * protover 2 or 3 receives a room's merged messages as one op 5 packet whose ver is 2 (the body
 * is a zlib stream, deflate with the zlib header, of the inner packets back to back) or 3 (the
 * body is a brotli stream of them). The gateway compresses each batch once, into one mg_buf
 * holding the whole outer packet, and shares that buffer with every recipient.
 *
 * Decompression, bounded by the caller, is here for tests and test clients: the gateway itself
 * never inflates what a client sends (clients send op 7, op 2 and small JSON, never compressed).
 *
 * ERRORS
 *   MG_EINVAL  a caller's mistake: a ver other than CG_VER_ZLIB / CG_VER_BROTLI, empty input,
 *              input that is not whole packets back to back (cg_compress_batch)
 *   MG_ELIMIT  input over CG_PACKET_BODY_BYTES_ABS_MAX or over CG_BATCH_PACKETS_MAX packets, a
 *              compressed body over CG_PACKET_BODY_BYTES_ABS_MAX, a decompressed size over the
 *              caller's bound
 *   MG_EPROTO  a compressed body that is corrupt, truncated or followed by trailing bytes
 *   MG_ENOMEM  allocation failed (*out is then NULL)
 *
 * THREADING: every function is reentrant and may run on any thread (the zlib and brotli states
 * live on the call's stack or heap); memory passed in belongs to the caller for the call.
 */
#ifndef MG_CHAT_GATEWAY_COMPRESS_H
#define MG_CHAT_GATEWAY_COMPRESS_H

#include "chat_gateway/limits.h"
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Compresses the packets src[0, src_size) (whole packets back to back, at most
 * CG_BATCH_PACKETS_MAX of them, as cg_batch_split reads them) with zlib (ver CG_VER_ZLIB) or
 * brotli (ver CG_VER_BROTLI), and writes the outer packet — op CG_OP_SEND_MSG_REPLY, that ver,
 * seq, the compressed body — into a new mg_buf of exactly its length. The caller owns the one
 * reference and may share it with every recipient. Returns MG_OK, MG_EINVAL, MG_ELIMIT, MG_ENOMEM
 * (see ERRORS); *out is NULL on error. */
int cg_compress_batch(uint16_t ver, const void *src, size_t src_size, uint32_t seq, mg_buf **out);

/* Decompresses the body src[0, src_size) of an outer packet of ver CG_VER_ZLIB or CG_VER_BROTLI
 * into a new mg_buf holding the inner packets back to back (not checked: split them with
 * cg_batch_split), owned by the caller. The output may not grow past dst_bytes_max (values above
 * CG_PACKET_BODY_BYTES_ABS_MAX are treated as it): memory grows with what is actually
 * decompressed, so a small body that would inflate without limit costs at most about twice the
 * bound before MG_ELIMIT. Returns MG_OK, MG_EINVAL (ver, empty src), MG_EPROTO (corrupt,
 * truncated, trailing bytes, or nothing inside), MG_ELIMIT, MG_ENOMEM; *out is NULL on error. */
int cg_compress_decode(uint16_t ver, const void *src, size_t src_size, size_t dst_bytes_max,
                       mg_buf **out);

#endif
