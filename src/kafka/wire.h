/*
 * The Kafka protocol codec: the first piece of the Kafka-protocol shim (issue "The Kafka protocol
 * on port 9092", docs/kafka.md), as src/pulsar is the Pulsar one. It knows nothing of
 * connections, topics or storage, and keeps no state between calls.
 *
 * FRAMES (all integers big-endian)
 *
 *   [size i32][request or response header][body]
 *
 *   size counts the bytes after itself. A request header is api_key i16, api_version i16,
 *   correlation_id i32 (v0); then client_id, a nullable string with an i16 length (v1); then
 *   tagged fields (v2, the "flexible" header of flexible API versions). A response header is
 *   correlation_id i32 (v0), then tagged fields (v1). ApiVersions answers with header v0 at
 *   every version, so that a client that does not know the broker's versions yet can read it
 *   (../shared/REFERENCE.md §3).
 *
 * PRIMITIVES
 *   A kw_reader reads a request or response body in place, with a sticky error: after the first
 *   read past the end or malformed field every read returns zero values and kw_reader_error
 *   says MG_EPROTO, so a decoder checks once at the end. A kw_writer appends to a growing
 *   buffer, also with a sticky error (MG_ENOMEM, MG_ELIMIT past its bound). Flexible versions use
 *   unsigned varints for compact lengths (length + 1, 0 = null) and tagged fields; records use
 *   zigzag varints (kw_read_varint).
 *
 * ERRORS
 *   MG_EAGAIN  not enough bytes yet (kw_frame_size only)
 *   MG_ELIMIT  a size beyond the allowed frame size
 *   MG_EPROTO  malformed input
 *   MG_ENOMEM  allocation failed
 *
 * THREADING: every function is reentrant; objects passed in belong to the caller.
 */
#ifndef MG_KAFKA_WIRE_H
#define MG_KAFKA_WIRE_H

#include "kafka/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* API keys of the requests the shim will serve (Kafka's protocol guide numbers them). */
#define KW_API_PRODUCE          0
#define KW_API_FETCH            1
#define KW_API_LIST_OFFSETS     2
#define KW_API_METADATA         3
#define KW_API_OFFSET_COMMIT    8
#define KW_API_OFFSET_FETCH     9
#define KW_API_FIND_COORDINATOR 10
#define KW_API_JOIN_GROUP       11
#define KW_API_HEARTBEAT        12
#define KW_API_LEAVE_GROUP      13
#define KW_API_SYNC_GROUP       14
#define KW_API_DESCRIBE_GROUPS  15
#define KW_API_LIST_GROUPS      16
#define KW_API_API_VERSIONS     18
#define KW_API_CREATE_TOPICS    19
#define KW_API_DELETE_TOPICS    20
#define KW_API_INIT_PRODUCER_ID 22

/* Error codes of Kafka's protocol that the codec itself answers with. */
#define KW_ERR_NONE                0
#define KW_ERR_CORRUPT_MESSAGE     2
#define KW_ERR_UNSUPPORTED_VERSION 35
#define KW_ERR_INVALID_REQUEST     42

/* --- Frames ---------------------------------------------------------------------------------- */

/* How long the frame at the head of p[0, n) is: MG_OK with *frame_len = 4 + size once the 4 size
 * bytes are there; MG_EAGAIN before; MG_EPROTO for a negative size or one below the smallest
 * header (8); MG_ELIMIT for a frame over frame_bytes_max (capped by KW_FRAME_BYTES_MAX). */
int kw_frame_size(const uint8_t *p, size_t n, size_t frame_bytes_max, size_t *frame_len);

/* --- Reading --------------------------------------------------------------------------------- */

typedef struct kw_reader {
    const uint8_t *p;
    size_t len, pos;
    int error; /* MG_OK or MG_EPROTO, sticky */
} kw_reader;

/* A string or bytes read in place: ptr points into the reader's bytes (NULL for a null one). */
typedef struct kw_str {
    const char *ptr;
    int32_t len; /* -1 for null */
} kw_str;

void kw_reader_init(kw_reader *r, const void *p, size_t len);
int kw_reader_error(const kw_reader *r);
/* Bytes not read yet. */
size_t kw_reader_left(const kw_reader *r);

int8_t kw_read_i8(kw_reader *r);
int16_t kw_read_i16(kw_reader *r);
int32_t kw_read_i32(kw_reader *r);
int64_t kw_read_i64(kw_reader *r);
uint32_t kw_read_uvarint(kw_reader *r);      /* unsigned LEB128, at most 5 bytes */
int32_t kw_read_varint(kw_reader *r);        /* zigzag, at most 5 bytes */
int64_t kw_read_varlong(kw_reader *r);       /* zigzag, at most 10 bytes */
kw_str kw_read_string(kw_reader *r);         /* i16 length; -1 null (nullable strings) */
kw_str kw_read_compact_string(kw_reader *r); /* uvarint length + 1; 0 null */
/* Skips tagged fields (flexible versions): a uvarint count of (tag, size, bytes). */
void kw_skip_tagged_fields(kw_reader *r);

/* --- Writing --------------------------------------------------------------------------------- */

typedef struct kw_writer {
    uint8_t *buf;
    size_t len, cap, max;
    int error; /* MG_OK, MG_ENOMEM or MG_ELIMIT, sticky */
} kw_writer;

/* An empty writer bounded at max bytes (0 = KW_FRAME_BYTES_MAX). kw_writer_free releases it. */
void kw_writer_init(kw_writer *w, size_t max);
void kw_writer_free(kw_writer *w);
int kw_writer_error(const kw_writer *w);

void kw_write_i8(kw_writer *w, int8_t v);
void kw_write_i16(kw_writer *w, int16_t v);
void kw_write_i32(kw_writer *w, int32_t v);
void kw_write_i64(kw_writer *w, int64_t v);
void kw_write_uvarint(kw_writer *w, uint32_t v);
void kw_write_varint(kw_writer *w, int32_t v);
void kw_write_varlong(kw_writer *w, int64_t v);
void kw_write_bytes(kw_writer *w, const void *p, size_t n);
void kw_write_string(kw_writer *w, const char *s);         /* i16 length; NULL writes -1 */
void kw_write_compact_string(kw_writer *w, const char *s); /* NULL writes 0 */
/* No tagged fields: a count of 0. */
void kw_write_empty_tagged_fields(kw_writer *w);
/* Writes the frame's size at offset at (where 4 bytes were reserved with kw_write_i32(w, 0)):
 * the bytes after it. */
void kw_writer_patch_size(kw_writer *w, size_t at);

/* --- Headers --------------------------------------------------------------------------------- */

typedef struct kw_request_header {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    kw_str client_id; /* v1 and later; null in v0 */
} kw_request_header;

/* The request header version of (api_key, api_version): 2 for the flexible versions the shim
 * knows of, else 1 (ApiVersions v3+ is flexible; the others the shim will serve are not at the
 * versions it advertises, REFERENCE.md §3). */
int kw_request_header_version(int16_t api_key, int16_t api_version);

/* Reads a request header from the frame body r (after the size): api_key, api_version and
 * correlation_id, then client_id and, for a flexible version, the tagged fields. A reader error
 * (MG_EPROTO) when malformed. The correlation id is read first, so a caller can answer an
 * unknown API or version with it. */
void kw_read_request_header(kw_reader *r, kw_request_header *out);

/* --- ApiVersions ----------------------------------------------------------------------------- */

/* One API the broker serves, with its versions. */
typedef struct kw_api_range {
    int16_t api_key;
    int16_t min_version, max_version;
} kw_api_range;

/* Writes a whole ApiVersions response frame (size, header v0, body) for version
 * (0..KW_API_VERSIONS_MAX_VERSION; v3 is flexible) with error_code and the ranges.
 * Errors: the writer's (sticky). */
void kw_write_api_versions_response(kw_writer *w, int32_t correlation_id, int16_t version,
                                    int16_t error_code, const kw_api_range *ranges, size_t count);

/* --- Record batches (magic 2) ------------------------------------------------------------- */

/* The codec of a batch's records (attributes bits 0-2). */
#define KW_CODEC_NONE   0
#define KW_CODEC_GZIP   1
#define KW_CODEC_SNAPPY 2
#define KW_CODEC_LZ4    3
#define KW_CODEC_ZSTD   4

/* A RecordBatch of magic 2 (REFERENCE.md §3), its records left in place (compressed when the
 * codec says so). */
typedef struct kw_record_batch {
    int64_t base_offset;
    int32_t partition_leader_epoch;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
    const uint8_t *records; /* records_len bytes after the header */
    size_t records_len;
} kw_record_batch;

/* The fixed part of a batch: baseOffset i64, batchLength i32 and the 49 bytes batchLength counts
 * before the records. */
#define KW_RECORD_BATCH_HEADER_BYTES 61u

/* Reads the batch at the head of p[0, n) into *out and sets *batch_len to its length
 * (12 + batchLength). Checks magic 2, the lengths, a records count within KW_RECORDS_MAX and the
 * CRC-32C over attributes to the end. Returns MG_OK, MG_EPROTO (short or malformed, a magic
 * other than 2), MG_ECORRUPT (the CRC does not match: Kafka's CORRUPT_MESSAGE). */
int kw_record_batch_parse(const uint8_t *p, size_t n, kw_record_batch *out, size_t *batch_len);

/* One record of an uncompressed batch. */
typedef struct kw_record {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    kw_str key;   /* len -1: null */
    kw_str value; /* len -1: null */
    uint32_t header_count;
    const uint8_t *headers; /* header_count (key varint-string, value varint-bytes) pairs */
    size_t headers_len;
} kw_record;

/* Reads the next record from r (positioned on a batch's uncompressed records). A reader error
 * when malformed: a record's length that disagrees with its fields, negative lengths other than
 * -1, more headers than bytes. */
void kw_read_record(kw_reader *r, kw_record *out);

/* Reads one of a record's headers from r (over out->headers, headers_len). */
void kw_read_record_header(kw_reader *r, kw_str *key, kw_str *value);

/* Writes a batch of magic 2 whose records (already encoded with kw_write_record, compressed or
 * not as attributes say) are records[0, records_len): the header with batchLength and the
 * CRC-32C computed. */
void kw_write_record_batch(kw_writer *w, const kw_record_batch *b, const void *records,
                           size_t records_len);

/* The same in two steps, for records written in place: kw_record_batch_begin reserves the
 * header (KW_RECORD_BATCH_HEADER_BYTES) and returns where it starts; the caller appends the
 * records (kw_write_record); kw_record_batch_end writes the header over the reservation, with
 * batchLength and the CRC-32C of what follows it. */
size_t kw_record_batch_begin(kw_writer *w);
void kw_record_batch_end(kw_writer *w, size_t at, const kw_record_batch *b);

/* Makes room for n more bytes at once (the sticky error on failure): fewer copies when the
 * size to come is known. */
void kw_writer_reserve(kw_writer *w, size_t n);

/* Appends one record (no headers when header_count is 0; headers are header_count pairs of
 * NUL-terminated key and value strings). */
void kw_write_record(kw_writer *w, int64_t timestamp_delta, int32_t offset_delta, const void *key,
                     int32_t key_len, const void *value, int32_t value_len,
                     const char *const *headers, uint32_t header_count);

/* Reads a message set of magic 0 or 1 (Produce v0-v2: legacy.c says why the shim serves them)
 * p[0, n) into records of magic 2 appended to records (kw_write_record; an empty writer), and
 * describes them in *out as the uncompressed batch of magic 2 holding them (base offset 0, no
 * producer id, records pointing into records' buffer). Compressed wrapper messages (gzip,
 * snappy, lz4) are read through, one level deep, decompressing at most out_max bytes each.
 * Returns MG_OK; MG_ECORRUPT (a message's CRC-32 does not match, or its compressed value does
 * not decompress: Kafka's CORRUPT_MESSAGE); MG_EPROTO (malformed, a magic other than 0 or 1, an
 * empty set); MG_ELIMIT (more than KW_RECORDS_MAX records, or a decompressed set over
 * out_max); MG_ENOMEM. */
int kw_message_set_to_records(const uint8_t *p, size_t n, size_t out_max, kw_writer *records,
                              kw_record_batch *out);

/* The name of an API key for logs and metric labels ("Produce", "ApiVersions", ...; "Unknown"). */
const char *kw_api_name(int16_t api_key);

#endif
