/*
 * The compression codecs of Pulsar's MessageMetadata.compression (NONE, LZ4, ZLIB, ZSTD,
 * SNAPPY), in the byte formats Pulsar clients use, so that batches compressed by one client
 * decompress in any other. Part of the Pulsar wire module, used by the client library (its
 * producers compress, its consumers decompress) and by the broker (its Kafka shim decompresses
 * the batches Pulsar producers compressed before handing them to Kafka consumers). Compression
 * covers a whole batch payload; MessageMetadata.uncompressed_size gives the size to expect back.
 *
 * Every function is reentrant (any thread); nothing is kept between calls.
 */
#ifndef MG_PULSAR_COMPRESS_H
#define MG_PULSAR_COMPRESS_H

#include "common/buf.h"
#include "proto/PulsarApi.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* codec is a Magnetar__Pulsar__CompressionType value (MessageMetadata.compression; the
 * client's pc_compression has the same numbers). Compresses src[0, src_len) into a new buffer
 * (*out, refcount 1, length = compressed size; owned by the caller). NONE copies. Errors:
 * MG_EINVAL (unknown codec), MG_ELIMIT (src_len too large for the codec), MG_ENOMEM. Every
 * codec refuses src_len above MG_PULSAR_UNCOMPRESSED_BYTES_MAX (pw_decompress would refuse the
 * result). On any error *out is set to NULL (for both functions). The formats, and what
 * decompression accepts, are described at the top of compress.c. */
int pw_compress(int codec, const uint8_t *src, size_t src_len, mg_buf **out);

/* Decompresses src[0, src_len) which must yield exactly uncompressed_len bytes (at most
 * MG_PULSAR_UNCOMPRESSED_BYTES_MAX) into a new buffer. Errors: MG_EINVAL (unknown codec),
 * MG_ELIMIT (uncompressed_len above the limit), MG_ECORRUPT (the data does not decompress, or
 * to another length), MG_ENOMEM. Never reads or writes out of bounds on malicious input. */
int pw_decompress(int codec, const uint8_t *src, size_t src_len, size_t uncompressed_len,
                  mg_buf **out);

/* The codec's name as Pulsar spells it ("NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY"), or NULL. */
const char *pw_compression_name(int codec);
/* Parses a name case-insensitively; -1 when unknown. */
int pw_compression_parse(const char *name);

#endif
