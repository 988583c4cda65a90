/*
 * The compression codecs of Pulsar's MessageMetadata.compression (NONE, LZ4, ZLIB, ZSTD,
 * SNAPPY), in the byte formats Pulsar clients use, so that batches compressed by one client
 * decompress in any other. Internal to the client library. Compression covers a whole batch
 * payload; MessageMetadata.uncompressed_size gives the size to expect back.
 *
 * Every function is reentrant (any thread); nothing is kept between calls.
 */
#ifndef MG_CLIENT_COMPRESS_H
#define MG_CLIENT_COMPRESS_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* codec is a pc_compression value (client.h). Compresses src[0, src_len) into a new buffer
 * (*out, refcount 1, length = compressed size; owned by the caller). NONE copies. Errors:
 * MG_EINVAL (unknown codec), MG_ELIMIT (src_len too large for the codec), MG_ENOMEM. Every
 * codec refuses src_len above PC_UNCOMPRESSED_BYTES_MAX (pc_decompress would refuse the result).
 * On any error *out is set to NULL (for both functions). The formats, and what decompression
 * accepts, are described at the top of compress.c. */
int pc_compress(int codec, const uint8_t *src, size_t src_len, mg_buf **out);

/* Decompresses src[0, src_len) which must yield exactly uncompressed_len bytes (at most
 * PC_UNCOMPRESSED_BYTES_MAX) into a new buffer. Errors: MG_EINVAL (unknown codec),
 * MG_ELIMIT (uncompressed_len above the limit), MG_ECORRUPT (the data does not decompress, or
 * to another length), MG_ENOMEM. Never reads or writes out of bounds on malicious input. */
int pc_decompress(int codec, const uint8_t *src, size_t src_len, size_t uncompressed_len,
                  mg_buf **out);

/* The codec's name as Pulsar spells it ("NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY"), or NULL. */
const char *pc_compression_name(int codec);
/* Parses a name case-insensitively; -1 when unknown. */
int pc_compression_parse(const char *name);

#endif
