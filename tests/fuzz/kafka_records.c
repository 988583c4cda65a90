/*
 * Fuzz target kafka_records: what the Kafka-protocol shim reads from a producer, in two modes
 * chosen by the first byte.
 *
 *   any first byte but 0xff: the input is a RecordBatch of magic 2 (a Produce request's records)
 *     read as the shim will: kw_record_batch_parse; for a codec other than none, kw_decompress
 *     with out_max 1 MiB; then every record with kw_read_record and every header of each with
 *     kw_read_record_header. A batch whose only fault is its CRC-32C is given the right one and
 *     parsed again, so that inputs reach the codecs and the records instead of stopping at the
 *     checksum (a batch's first byte is its base offset's high byte, 0 from every producer).
 *     The same bytes are first read as a message set of magic 0 or 1 (Produce v0-v2) by
 *     kw_message_set_to_records, whose records must read back.
 *   0xff: the rest is a request frame body: kw_frame_size over it, kw_read_request_header, then
 *     a sequence of kw_reader reads, each chosen by the next byte.
 *
 * Checks beyond "no crash, no sanitizer report": a parsed batch and the records, keys, values
 * and headers read from it lie inside their buffer; a failed decompression leaves no buffer, a
 * successful one is at most out_max and (when small) compresses and decompresses back to the
 * same bytes; the codec bits 5 to 7 are refused as invalid; a reader's error is sticky and
 * leaves nothing to read.
 */
#include "common/crc32c.h"
#include "common/error.h"
#include "kafka/compress.h"
#include "kafka/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one batch may decompress to here: small enough that a bomb costs little per input. */
#define OUT_MAX_BYTES     (1024u * 1024u)
/* Outputs up to this size are also compressed again and must come back unchanged. */
#define ROUND_TRIP_BYTES  (64u * 1024u)
/* Reads of the request mode per input: bounds the loop. */
#define READS_PER_INPUT   512u
/* The offset of a batch's CRC and of the bytes it covers (attributes on). */
#define BATCH_CRC_AT      17u
#define BATCH_CRC_FROM    21u
#define REQUEST_MODE_BYTE 0xffu

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "kafka_records: invariant broken: %s\n", what);
        abort();
    }
}

static volatile uint8_t sink;

static void touch(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= b[i];
    sink = x;
}

static bool inside(const void *ptr, size_t len, const uint8_t *base, size_t base_len)
{
    const uint8_t *p = ptr;
    return p >= base && p <= base + base_len && len <= (size_t)(base + base_len - p);
}

static void check_str(kw_str s, const uint8_t *base, size_t base_len, const char *what)
{
    if (s.len < 0) {
        check(s.len == -1 && s.ptr == NULL, what);
        return;
    }
    check(s.len == 0 || inside(s.ptr, (size_t)s.len, base, base_len), what);
    touch(s.ptr, (size_t)s.len);
}

static void read_records(const uint8_t *p, size_t len, int32_t count)
{
    kw_reader r;
    kw_reader_init(&r, p, len);
    for (int32_t i = 0; i < count; i++) {
        kw_record rec;
        kw_read_record(&r, &rec);
        if (kw_reader_error(&r) != MG_OK)
            break;
        check_str(rec.key, p, len, "a record's key outside its records");
        check_str(rec.value, p, len, "a record's value outside its records");
        check(inside(rec.headers, rec.headers_len, p, len), "headers outside their records");
        kw_reader h;
        kw_reader_init(&h, rec.headers, rec.headers_len);
        for (uint32_t k = 0; k < rec.header_count; k++) {
            kw_str key, value;
            kw_read_record_header(&h, &key, &value);
            check(kw_reader_error(&h) == MG_OK, "kw_read_record accepted a bad header");
            check(key.len >= 0, "a null header key");
            check_str(key, rec.headers, rec.headers_len, "a header key outside its record");
            check_str(value, rec.headers, rec.headers_len, "a header value outside its record");
        }
        check(kw_reader_left(&h) == 0, "bytes after a record's headers");
    }
}

static void round_trip(int codec, mg_buf *d)
{
    mg_buf *c = NULL;
    int rc = kw_compress(codec, mg_buf_data(d), mg_buf_len(d), &c);
    check(rc == MG_OK || rc == MG_ENOMEM, "output of kw_decompress does not compress");
    if (rc != MG_OK)
        return;
    mg_buf *back = NULL;
    rc = kw_decompress(codec, mg_buf_data(c), mg_buf_len(c), mg_buf_len(d), &back);
    check(rc == MG_OK || rc == MG_ENOMEM, "kw_compress output does not decompress");
    if (rc == MG_OK)
        check(mg_buf_len(back) == mg_buf_len(d) &&
                  memcmp(mg_buf_data(back), mg_buf_data(d), mg_buf_len(d)) == 0,
              "a round trip changed the bytes");
    mg_buf_unref(back);
    mg_buf_unref(c);
}

static void batch_mode(uint8_t *p, size_t size)
{
    kw_record_batch b;
    size_t batch_len = 0;
    int rc = kw_record_batch_parse(p, size, &b, &batch_len);
    if (rc == MG_ECORRUPT) {
        /* The checksum alone was wrong (it is checked after the lengths): right it. */
        size_t total = 12 + ((size_t)p[8] << 24 | (size_t)p[9] << 16 | (size_t)p[10] << 8 | p[11]);
        check(total <= size && total >= KW_RECORD_BATCH_HEADER_BYTES, "ECORRUPT for a bad length");
        uint32_t crc = mg_crc32c(0, p + BATCH_CRC_FROM, total - BATCH_CRC_FROM);
        p[BATCH_CRC_AT] = (uint8_t)(crc >> 24);
        p[BATCH_CRC_AT + 1] = (uint8_t)(crc >> 16);
        p[BATCH_CRC_AT + 2] = (uint8_t)(crc >> 8);
        p[BATCH_CRC_AT + 3] = (uint8_t)crc;
        rc = kw_record_batch_parse(p, size, &b, &batch_len);
        check(rc != MG_ECORRUPT, "the right CRC-32C is refused");
    }
    if (rc != MG_OK)
        return;
    check(batch_len <= size && batch_len >= KW_RECORD_BATCH_HEADER_BYTES, "a batch's length");
    check(b.records == p + KW_RECORD_BATCH_HEADER_BYTES &&
              b.records_len == batch_len - KW_RECORD_BATCH_HEADER_BYTES,
          "records outside the batch");
    int codec = b.attributes & 7;
    if (codec == KW_CODEC_NONE) {
        read_records(b.records, b.records_len, b.records_count);
        return;
    }
    mg_buf *d = NULL;
    rc = kw_decompress(codec, b.records, b.records_len, OUT_MAX_BYTES, &d);
    if (codec > KW_CODEC_ZSTD)
        check(rc == MG_EINVAL, "an unknown codec is not refused");
    if (rc != MG_OK) {
        check(d == NULL, "a failed decompression left a buffer");
        check(rc == MG_EINVAL || rc == MG_ECORRUPT || rc == MG_ELIMIT || rc == MG_ENOMEM,
              "an unexpected error");
        return;
    }
    check(mg_buf_len(d) <= OUT_MAX_BYTES, "output beyond out_max");
    check(mg_buf_refcount(d) == 1, "a shared result");
    /* The records in a buffer of their own size, so ASan sees any read past them. */
    size_t n = mg_buf_len(d);
    uint8_t *recs = malloc(n > 0 ? n : 1);
    if (recs != NULL) {
        memcpy(recs, mg_buf_data(d), n);
        read_records(recs, n, b.records_count);
        free(recs);
    }
    if (n <= ROUND_TRIP_BYTES)
        round_trip(codec, d);
    mg_buf_unref(d);
}

static void request_mode(const uint8_t *p, size_t size)
{
    size_t frame_len = 0;
    if (kw_frame_size(p, size, 0, &frame_len) == MG_OK)
        check(frame_len >= 4 + KW_REQUEST_HEADER_BYTES_MIN && frame_len <= KW_FRAME_BYTES_MAX,
              "a frame length outside its bounds");
    kw_reader r;
    kw_reader_init(&r, p, size);
    kw_request_header h;
    kw_read_request_header(&r, &h);
    if (kw_reader_error(&r) != MG_OK)
        return;
    check_str(h.client_id, p, size, "client_id outside the body");
    (void)kw_api_name(h.api_key);
    check(kw_request_header_version(h.api_key, h.api_version) >= 1, "a header version");
    for (unsigned i = 0; i < READS_PER_INPUT && kw_reader_left(&r) > 0; i++) {
        uint8_t op = (uint8_t)kw_read_i8(&r);
        switch (op % 10) {
        case 0:
            (void)kw_read_i8(&r);
            break;
        case 1:
            (void)kw_read_i16(&r);
            break;
        case 2:
            (void)kw_read_i32(&r);
            break;
        case 3:
            (void)kw_read_i64(&r);
            break;
        case 4:
            (void)kw_read_uvarint(&r);
            break;
        case 5:
            (void)kw_read_varint(&r);
            break;
        case 6:
            (void)kw_read_varlong(&r);
            break;
        case 7:
            check_str(kw_read_string(&r), p, size, "a string outside the body");
            break;
        case 8:
            check_str(kw_read_compact_string(&r), p, size, "a compact string outside the body");
            break;
        default:
            kw_skip_tagged_fields(&r);
            break;
        }
        if (kw_reader_error(&r) != MG_OK) {
            check(kw_reader_left(&r) == 0, "bytes left after an error");
            check(kw_read_i32(&r) == 0 && kw_reader_error(&r) == MG_EPROTO,
                  "the reader's error is not sticky");
            break;
        }
    }
}

/* kw_message_set_to_records: on success the records it wrote read back, count for count. */
static void legacy_mode(const uint8_t *p, size_t size)
{
    kw_writer w;
    kw_writer_init(&w, OUT_MAX_BYTES);
    kw_record_batch kb;
    if (kw_message_set_to_records(p, size, OUT_MAX_BYTES, &w, &kb) == MG_OK) {
        check(kb.records_count > 0 && kb.records == w.buf && kb.records_len == w.len,
              "a message set's batch describes the records written");
        kw_reader r;
        kw_reader_init(&r, kb.records, kb.records_len);
        for (int32_t i = 0; i < kb.records_count; i++) {
            kw_record rec;
            kw_read_record(&r, &rec);
            check(kw_reader_error(&r) == MG_OK && rec.offset_delta == i,
                  "a message set's records read back");
        }
        check(kw_reader_left(&r) == 0, "a message set's records fill what was written");
    }
    kw_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool request = size > 0 && data[0] == REQUEST_MODE_BYTE;
    if (request) {
        data++;
        size--;
    }
    /* A copy of exactly the input's size, so ASan sees any read past it (and the batch mode
     * may right its checksum). */
    uint8_t *p = malloc(size > 0 ? size : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    if (request) {
        request_mode(p, size);
    } else {
        /* The same bytes as a message set of magic 0 or 1 (Produce v0-v2), before the batch
         * mode may change them. */
        legacy_mode(p, size);
        batch_mode(p, size);
    }
    free(p);
    return 0;
}
