/*
 * The compression codecs of Kafka's RecordBatch (magic 2, attributes bits 0-2: KW_CODEC_GZIP,
 * KW_CODEC_SNAPPY, KW_CODEC_LZ4, KW_CODEC_ZSTD in wire.h): the records section of a batch, after
 * its 61-byte header, is compressed as one unit. Decompression reads what librdkafka and Kafka's
 * Java client write (both snappy shapes among them); compression writes what both read. The
 * byte formats are described at the top of compress.c.
 *
 * KW_CODEC_NONE is refused by both directions (MG_EINVAL): uncompressed records are read in
 * place (kw_read_record over kw_record_batch.records), never copied through a codec.
 *
 * THREADING: every function is reentrant (any thread); nothing is kept between calls.
 */
#ifndef MG_KAFKA_COMPRESS_H
#define MG_KAFKA_COMPRESS_H

#include "common/buf.h"
#include "kafka/wire.h" /* KW_CODEC_* */

#include <stddef.h>
#include <stdint.h>

/* Decompresses src[0, src_len), the records section of a batch compressed with codec, into a new
 * buffer (*out, refcount 1, length = the decompressed size; owned by the caller). out_max bounds
 * the decompressed size (callers pass KW_DECOMPRESSED_BYTES_MAX unless they know better); no
 * size declared inside the input is trusted beyond it: the output grows as the data decodes, and
 * no more than out_max + 1 bytes of output are ever allocated (the decoders' own working memory
 * aside, which is bounded too: compress.c). Never reads or writes out of bounds, whatever src
 * holds.
 * Errors (then *out is NULL):
 *   MG_EINVAL    codec is KW_CODEC_NONE or unknown
 *   MG_ELIMIT    the output would exceed out_max, src_len exceeds KW_FRAME_BYTES_MAX, or a zstd
 *                frame asks for a window over 8 MiB (compress.c)
 *   MG_ECORRUPT  the data does not decompress: malformed, truncated, a checksum that does not
 *                match, bytes after the last gzip member / zstd or lz4 frame that are not one
 *   MG_ENOMEM    allocation failed */
int kw_decompress(int codec, const uint8_t *src, size_t src_len, size_t out_max, mg_buf **out);

/* Compresses src[0, src_len) with codec (gzip level 6; snappy in the xerial framing with 32 KiB
 * blocks; an lz4 frame of 64 KiB independent blocks; zstd level 3) into a new buffer (*out,
 * refcount 1, length = the compressed size; owned by the caller). src may be NULL when src_len
 * is 0. Errors (then *out is NULL): MG_EINVAL (KW_CODEC_NONE or unknown), MG_ELIMIT (src_len
 * over KW_DECOMPRESSED_BYTES_MAX: a default reader would refuse the result), MG_ENOMEM. */
int kw_compress(int codec, const uint8_t *src, size_t src_len, mg_buf **out);

/* The codec's name as Kafka's compression.type spells it: "none", "gzip", "snappy", "lz4",
 * "zstd"; NULL for any other value. */
const char *kw_codec_name(int codec);

/* The codec of one of those names (exact, lower case as Kafka's configuration writes them);
 * -1 for any other string or NULL. */
int kw_codec_parse(const char *name);

#endif
