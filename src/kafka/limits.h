/*
 * The fixed limits of the Kafka protocol codec (src/kafka), each with the reason for its value
 * (docs/common.md, "Limits").
 */
#ifndef MG_KAFKA_LIMITS_H
#define MG_KAFKA_LIMITS_H

/* Kafka wire codec (piece: wire, src/kafka). */
/* Absolute bound on one frame (4 + size) the codec builds or accepts. Kafka brokers refuse
 * requests over socket.request.max.bytes, 100 MiB by default; a produce request carries at most
 * message.max.bytes (1 MiB by default) per partition. 100 MiB keeps a hostile size from making a
 * connection buffer gigabytes. */
#define KW_FRAME_BYTES_MAX          (100u * 1024 * 1024)
/* The smallest request frame body: api_key, api_version, correlation_id. */
#define KW_REQUEST_HEADER_BYTES_MIN 8u
/* The highest ApiVersions version the codec writes (v3, flexible: librdkafka sends it first). */
#define KW_API_VERSIONS_MAX_VERSION 3

/* Records in one batch: librdkafka batches at most 10,000 messages (batch.num.messages) and Kafka
 * brokers set no lower cap; the count drives loops and arrays sized from it, so a count past
 * this is refused as malformed. */
#define KW_RECORDS_MAX 1000000

/* Kafka codec (piece: compression, src/kafka/compress.c). */
/* The decompressed size of one batch's records that callers of kw_decompress allow by default.
 * Producers bound a batch before compression (librdkafka's batch.size, 1,000,000 bytes; the Java
 * client's batch.size, 16 KiB) and brokers bound it after (message.max.bytes, about 1 MiB), so
 * real batches decompress to about a megabyte; text and JSON records that compress 10 to 20
 * times still fit with room to spare. The bound is what one hostile batch can cost: gzip and
 * zstd expand up to about a thousandfold, so a 1 MiB "zip bomb" would otherwise become a
 * gigabyte. kw_compress refuses larger inputs too, as nothing could decompress them. */
#define KW_DECOMPRESSED_BYTES_MAX (32u * 1024 * 1024)

_Static_assert(KW_FRAME_BYTES_MAX <= 0x7FFFFFFFu, "a frame's size is an i32");
_Static_assert(KW_DECOMPRESSED_BYTES_MAX <= 0x7E000000u, "LZ4 and zlib count in int and uInt");

#endif
