/*
 * The Kafka protocol codec (src/kafka/wire.h): frames, primitives against bytes written by hand
 * from Kafka's protocol guide, a librdkafka ApiVersions v3 request header, and ApiVersions
 * responses of every version.
 */
#include "kafka/wire.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <string.h>

Test(kafka_wire, frame_size)
{
    size_t len = 0;
    const uint8_t p[] = { 0, 0, 0, 10 };
    cr_assert_eq(kw_frame_size(p, 3, 0, &len), MG_EAGAIN);
    cr_assert_eq(kw_frame_size(p, 4, 0, &len), MG_OK);
    cr_assert_eq(len, 14);
    const uint8_t small[] = { 0, 0, 0, 7 };
    cr_assert_eq(kw_frame_size(small, 4, 0, &len), MG_EPROTO);
    const uint8_t neg[] = { 0xff, 0xff, 0xff, 0xff };
    cr_assert_eq(kw_frame_size(neg, 4, 0, &len), MG_EPROTO);
    const uint8_t big[] = { 0, 0x10, 0, 0 }; /* 1 MiB */
    cr_assert_eq(kw_frame_size(big, 4, 1024 * 1024, &len), MG_ELIMIT);
    cr_assert_eq(kw_frame_size(big, 4, 2 * 1024 * 1024, &len), MG_OK);
    const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff };
    cr_assert_eq(kw_frame_size(huge, 4, SIZE_MAX, &len), MG_ELIMIT); /* capped by the absolute */
}

Test(kafka_wire, varints_against_the_guide)
{
    /* Zigzag: 0 -> 0, -1 -> 1, 1 -> 2, -64 -> 127, 64 -> 128 (0x80 0x01); unsigned 300 ->
     * 0xac 0x02. */
    const uint8_t bytes[] = { 0x00, 0x01, 0x02, 0x7f, 0x80, 0x01, 0xac, 0x02 };
    kw_reader r;
    kw_reader_init(&r, bytes, sizeof(bytes));
    cr_assert_eq(kw_read_varint(&r), 0);
    cr_assert_eq(kw_read_varint(&r), -1);
    cr_assert_eq(kw_read_varint(&r), 1);
    cr_assert_eq(kw_read_varint(&r), -64);
    cr_assert_eq(kw_read_varint(&r), 64);
    cr_assert_eq(kw_read_uvarint(&r), 300);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    cr_assert_eq(kw_reader_left(&r), 0);

    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_varint(&w, 0);
    kw_write_varint(&w, -1);
    kw_write_varint(&w, 1);
    kw_write_varint(&w, -64);
    kw_write_varint(&w, 64);
    kw_write_uvarint(&w, 300);
    cr_assert_eq(kw_writer_error(&w), MG_OK);
    cr_assert_eq(w.len, sizeof(bytes));
    cr_assert_arr_eq(w.buf, bytes, sizeof(bytes));
    kw_writer_free(&w);
}

Test(kafka_wire, varlong_round_trips)
{
    const int64_t values[] = {
        0, 1, -1, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, 1700000000000
    };
    kw_writer w;
    kw_writer_init(&w, 0);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        kw_write_varlong(&w, values[i]);
    kw_reader r;
    kw_reader_init(&r, w.buf, w.len);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        cr_assert_eq(kw_read_varlong(&r), values[i], "value %zu", i);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    kw_writer_free(&w);
}

Test(kafka_wire, sticky_errors)
{
    const uint8_t short_i32[] = { 1, 2, 3 };
    kw_reader r;
    kw_reader_init(&r, short_i32, sizeof(short_i32));
    cr_assert_eq(kw_read_i32(&r), 0);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
    cr_assert_eq(kw_read_i8(&r), 0); /* stays failed, reads nothing */
    /* A varint longer than 5 bytes, a string running past the end, a null of -2. */
    const uint8_t long_varint[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
    kw_reader_init(&r, long_varint, sizeof(long_varint));
    (void)kw_read_uvarint(&r);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
    const uint8_t past[] = { 0, 5, 'a', 'b' };
    kw_reader_init(&r, past, sizeof(past));
    kw_str s = kw_read_string(&r);
    cr_assert_null(s.ptr);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
    const uint8_t minus_two[] = { 0xff, 0xfe };
    kw_reader_init(&r, minus_two, sizeof(minus_two));
    (void)kw_read_string(&r);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
    /* Tagged fields that claim more than is there. */
    const uint8_t tags[] = { 0x05, 0x00, 0x01, 0x00 };
    kw_reader_init(&r, tags, sizeof(tags));
    kw_skip_tagged_fields(&r);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
}

Test(kafka_wire, strings)
{
    const uint8_t bytes[] = { 0x00, 0x03, 'a', 'b', 'c', 0xff, 0xff, 0x04, 'x', 'y', 'z', 0x00 };
    kw_reader r;
    kw_reader_init(&r, bytes, sizeof(bytes));
    kw_str a = kw_read_string(&r);
    cr_assert_eq(a.len, 3);
    cr_assert_eq(memcmp(a.ptr, "abc", 3), 0);
    kw_str n = kw_read_string(&r);
    cr_assert_eq(n.len, -1);
    cr_assert_null(n.ptr);
    kw_str c = kw_read_compact_string(&r); /* 4 = length 3 + 1 */
    cr_assert_eq(c.len, 3);
    cr_assert_eq(memcmp(c.ptr, "xyz", 3), 0);
    kw_str cn = kw_read_compact_string(&r); /* 0 = null */
    cr_assert_eq(cn.len, -1);
    cr_assert_eq(kw_reader_error(&r), MG_OK);

    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_string(&w, "abc");
    kw_write_string(&w, NULL);
    kw_write_compact_string(&w, "xyz");
    kw_write_compact_string(&w, NULL);
    cr_assert_eq(w.len, sizeof(bytes));
    cr_assert_arr_eq(w.buf, bytes, sizeof(bytes));
    kw_writer_free(&w);
}

/* The frame body of the ApiVersions v3 request librdkafka 2.0.2 sends first: request header v2
 * (client_id as a nullable string, then empty tagged fields) and a body of two compact strings
 * and empty tagged fields. */
Test(kafka_wire, librdkafka_api_versions_request)
{
    const uint8_t body[] = { 0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,      /* 18, v3, #1 */
                             0x00, 0x07, 'r',  'd',  'k',  'a',  'f',  'k',  'a', /* client_id */
                             0x00,                                                /* no tags */
                             0x0b, 'l',  'i',  'b',  'r',  'd',  'k',  'a',  'f',
                             'k',  'a',  0x06, '2',  '.',  '0',  '.',  '2',  0x00 };
    kw_reader r;
    kw_reader_init(&r, body, sizeof(body));
    kw_request_header h;
    kw_read_request_header(&r, &h);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    cr_assert_eq(h.api_key, KW_API_API_VERSIONS);
    cr_assert_eq(h.api_version, 3);
    cr_assert_eq(h.correlation_id, 1);
    cr_assert_eq(h.client_id.len, 7);
    cr_assert_eq(memcmp(h.client_id.ptr, "rdkafka", 7), 0);
    kw_str name = kw_read_compact_string(&r);
    kw_str version = kw_read_compact_string(&r);
    kw_skip_tagged_fields(&r);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    cr_assert_eq(kw_reader_left(&r), 0);
    cr_assert_eq(name.len, 10);
    cr_assert_eq(memcmp(name.ptr, "librdkafka", 10), 0);
    cr_assert_eq(version.len, 5);
    cr_assert_str_eq(kw_api_name(h.api_key), "ApiVersions");
    cr_assert_str_eq(kw_api_name(999), "Unknown");
    /* A v2 request of the same API has header v1: no tagged fields after the client id. */
    cr_assert_eq(kw_request_header_version(KW_API_API_VERSIONS, 2), 1);
    cr_assert_eq(kw_request_header_version(KW_API_PRODUCE, 7), 1);
}

Test(kafka_wire, api_versions_responses)
{
    const kw_api_range ranges[] = { { KW_API_PRODUCE, 3, 7 }, { KW_API_API_VERSIONS, 0, 3 } };
    /* v0: size, correlation id, error, i32 count, ranges. */
    const uint8_t v0[] = { 0, 0, 0, 22, 0, 0, 0, 9, 0,  0, 0, 0, 0,
                           2, 0, 0, 0,  3, 0, 7, 0, 18, 0, 0, 0, 3 };
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_api_versions_response(&w, 9, 0, KW_ERR_NONE, ranges, 2);
    cr_assert_eq(kw_writer_error(&w), MG_OK);
    cr_assert_eq(w.len, sizeof(v0));
    cr_assert_arr_eq(w.buf, v0, sizeof(v0));
    kw_writer_free(&w);
    /* v1: the same with throttle_time_ms at the end. */
    kw_writer_init(&w, 0);
    kw_write_api_versions_response(&w, 9, 1, KW_ERR_NONE, ranges, 2);
    cr_assert_eq(w.len, sizeof(v0) + 4);
    cr_assert_eq(w.buf[3], 26);
    cr_assert_arr_eq(w.buf + 4, v0 + 4, sizeof(v0) - 4);
    kw_writer_free(&w);
    /* v3 (flexible body, header v0): compact array (count + 1), each range with empty tags,
     * throttle time, empty tags. */
    const uint8_t v3[] = { 0, 0, 0, 26, 0,  0, 0, 9, 0, 35, 3, 0, 0, 0, 3,
                           0, 7, 0, 0,  18, 0, 0, 0, 3, 0,  0, 0, 0, 0, 0 };
    kw_writer_init(&w, 0);
    kw_write_api_versions_response(&w, 9, 3, KW_ERR_UNSUPPORTED_VERSION, ranges, 2);
    cr_assert_eq(w.len, sizeof(v3));
    cr_assert_arr_eq(w.buf, v3, sizeof(v3));
    kw_writer_free(&w);
}

Test(kafka_wire, writer_bound)
{
    kw_writer w;
    kw_writer_init(&w, 8);
    kw_write_i64(&w, 1);
    cr_assert_eq(kw_writer_error(&w), MG_OK);
    kw_write_i8(&w, 1);
    cr_assert_eq(kw_writer_error(&w), MG_ELIMIT);
    kw_write_i8(&w, 1); /* sticky */
    cr_assert_eq(w.len, 8);
    kw_writer_free(&w);
}

/* --- Record batches --------------------------------------------------------------------------- */

/* A batch of three records: a keyed one with two headers, one with a null key, one with a null
 * value (a tombstone). */
static size_t build_batch(kw_writer *w)
{
    kw_writer recs;
    kw_writer_init(&recs, 0);
    const char *const hdrs[4] = { "trace", "abc", "room", "live://1" };
    kw_write_record(&recs, 0, 0, "k0", 2, "hello", 5, hdrs, 2);
    kw_write_record(&recs, 5, 1, NULL, 0, "world", 5, NULL, 0);
    kw_write_record(&recs, -3, 2, "k2", 2, NULL, 0, NULL, 0);
    cr_assert_eq(kw_writer_error(&recs), MG_OK);
    kw_record_batch b = { .base_offset = 0,
                          .partition_leader_epoch = -1,
                          .attributes = KW_CODEC_NONE,
                          .last_offset_delta = 2,
                          .base_timestamp = 1700000000000,
                          .max_timestamp = 1700000000005,
                          .producer_id = -1,
                          .producer_epoch = -1,
                          .base_sequence = -1,
                          .records_count = 3 };
    kw_write_record_batch(w, &b, recs.buf, recs.len);
    cr_assert_eq(kw_writer_error(w), MG_OK);
    size_t records_len = recs.len;
    kw_writer_free(&recs);
    return records_len;
}

Test(kafka_wire, record_batch_round_trip)
{
    kw_writer w;
    kw_writer_init(&w, 0);
    size_t records_len = build_batch(&w);
    cr_assert_eq(w.len, KW_RECORD_BATCH_HEADER_BYTES + records_len);
    /* batchLength counts what follows it; magic 2 at offset 16. */
    cr_assert_eq((size_t)(w.buf[8] << 24 | w.buf[9] << 16 | w.buf[10] << 8 | w.buf[11]),
                 w.len - 12);
    cr_assert_eq(w.buf[16], 2);

    kw_record_batch b;
    size_t len = 0;
    cr_assert_eq(kw_record_batch_parse(w.buf, w.len, &b, &len), MG_OK);
    cr_assert_eq(len, w.len);
    cr_assert_eq(b.records_count, 3);
    cr_assert_eq(b.last_offset_delta, 2);
    cr_assert_eq(b.base_timestamp, 1700000000000);
    cr_assert_eq(b.producer_id, -1);
    cr_assert_eq(b.attributes & 7, KW_CODEC_NONE);
    cr_assert_eq(b.records_len, records_len);

    kw_reader r;
    kw_reader_init(&r, b.records, b.records_len);
    kw_record rec;
    kw_read_record(&r, &rec);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    cr_assert_eq(rec.offset_delta, 0);
    cr_assert_eq(rec.key.len, 2);
    cr_assert_eq(memcmp(rec.key.ptr, "k0", 2), 0);
    cr_assert_eq(rec.value.len, 5);
    cr_assert_eq(memcmp(rec.value.ptr, "hello", 5), 0);
    cr_assert_eq(rec.header_count, 2);
    kw_reader h;
    kw_reader_init(&h, rec.headers, rec.headers_len);
    kw_str k, v;
    kw_read_record_header(&h, &k, &v);
    cr_assert_eq(k.len, 5);
    cr_assert_eq(memcmp(k.ptr, "trace", 5), 0);
    kw_read_record_header(&h, &k, &v);
    cr_assert_eq(v.len, 8);
    cr_assert_eq(memcmp(v.ptr, "live://1", 8), 0);
    cr_assert_eq(kw_reader_left(&h), 0);
    kw_read_record(&r, &rec);
    cr_assert_eq(rec.timestamp_delta, 5);
    cr_assert_eq(rec.key.len, -1);
    cr_assert_null(rec.key.ptr);
    kw_read_record(&r, &rec);
    cr_assert_eq(rec.timestamp_delta, -3);
    cr_assert_eq(rec.value.len, -1);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
    cr_assert_eq(kw_reader_left(&r), 0);
    kw_writer_free(&w);
}

Test(kafka_wire, record_batch_refusals)
{
    kw_writer w;
    kw_writer_init(&w, 0);
    build_batch(&w);
    kw_record_batch b;
    size_t len = 0;
    /* Every byte the CRC covers (from attributes, offset 21) is checked. */
    for (size_t i = 21; i < w.len; i++) {
        w.buf[i] ^= 0x40;
        cr_assert_eq(kw_record_batch_parse(w.buf, w.len, &b, &len), MG_ECORRUPT, "byte %zu", i);
        w.buf[i] ^= 0x40;
    }
    /* Every prefix is short. */
    for (size_t n = 0; n < w.len; n++)
        cr_assert_eq(kw_record_batch_parse(w.buf, n, &b, &len), MG_EPROTO, "prefix %zu", n);
    /* Magic 1. */
    w.buf[16] = 1;
    cr_assert_eq(kw_record_batch_parse(w.buf, w.len, &b, &len), MG_EPROTO);
    w.buf[16] = 2;
    kw_writer_free(&w);
    /* A negative records count under a good checksum. */
    kw_writer_init(&w, 0);
    kw_record_batch neg = { .records_count = -2, .producer_id = -1 };
    kw_write_record_batch(&w, &neg, NULL, 0);
    cr_assert_eq(kw_record_batch_parse(w.buf, w.len, &b, &len), MG_EPROTO);
    kw_writer_free(&w);

    /* A record whose length disagrees with its fields, and one with a header with a null key. */
    const uint8_t bad_len[] = { 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00 }; /* length 1, body 6 */
    kw_reader r;
    kw_record rec;
    kw_reader_init(&r, bad_len, sizeof(bad_len));
    kw_read_record(&r, &rec);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
    /* length 7: attributes 0, ts 0, offset 0, key null (1), value null (1), 1 header: key -1 */
    const uint8_t null_header_key[] = { 0x0e, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x00 };
    kw_reader_init(&r, null_header_key, sizeof(null_header_key));
    kw_read_record(&r, &rec);
    cr_assert_eq(kw_reader_error(&r), MG_EPROTO);
}
