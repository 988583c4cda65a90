/*
 * Message sets of magic 0 and 1 (Produce v0-v2) read into records of magic 2
 * (kw_message_set_to_records, src/kafka/legacy.c): messages written here byte by byte from the
 * layout in Kafka's protocol guide, with zlib's CRC-32, plain and inside a gzip wrapper.
 */
#include "kafka/compress.h"
#include "kafka/wire.h"

#include "common/buf.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

typedef struct set {
    uint8_t b[8192];
    size_t len;
} set;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put64(uint8_t *p, int64_t v)
{
    put32(p, (uint32_t)((uint64_t)v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* Appends [offset][size][crc][magic][attributes][timestamp if magic 1][key][value]. */
static void add(set *s, int8_t magic, int8_t attributes, int64_t ts, const void *key, int32_t klen,
                const void *value, int32_t vlen)
{
    uint8_t *m = s->b + s->len;
    put64(m, 0);
    size_t at = 12, body = 12 + 4;
    m[body] = (uint8_t)magic;
    m[body + 1] = (uint8_t)attributes;
    size_t pos = body + 2;
    if (magic == 1) {
        put64(m + pos, ts);
        pos += 8;
    }
    put32(m + pos, (uint32_t)klen);
    pos += 4;
    if (klen > 0) {
        memcpy(m + pos, key, (size_t)klen);
        pos += (size_t)klen;
    }
    put32(m + pos, (uint32_t)vlen);
    pos += 4;
    if (vlen > 0) {
        memcpy(m + pos, value, (size_t)vlen);
        pos += (size_t)vlen;
    }
    put32(m + 8, (uint32_t)(pos - 12));
    put32(m + at, (uint32_t)crc32(0, m + body, (uInt)(pos - body)));
    s->len += pos;
}

static void read_back(const kw_record_batch *kb, int i, kw_record *out)
{
    kw_reader r;
    kw_reader_init(&r, kb->records, kb->records_len);
    for (int j = 0; j <= i; j++)
        kw_read_record(&r, out);
    cr_assert_eq(kw_reader_error(&r), MG_OK);
}

Test(kafka_legacy, magic_1_messages)
{
    set s = { .len = 0 };
    add(&s, 1, 0, 1000, "k1", 2, "value one", 9);
    add(&s, 1, 0, 1005, NULL, -1, "v2", 2);
    add(&s, 1, 0, 1002, "k3", 2, NULL, -1);
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_record_batch kb;
    cr_assert_eq(kw_message_set_to_records(s.b, s.len, 1 << 20, &w, &kb), MG_OK);
    cr_assert_eq(kb.records_count, 3);
    cr_assert_eq(kb.last_offset_delta, 2);
    cr_assert_eq(kb.base_timestamp, 1000);
    cr_assert_eq(kb.max_timestamp, 1005);
    cr_assert_eq(kb.producer_id, -1);
    kw_record rec;
    read_back(&kb, 0, &rec);
    cr_assert(rec.key.len == 2 && memcmp(rec.key.ptr, "k1", 2) == 0);
    cr_assert(rec.value.len == 9 && memcmp(rec.value.ptr, "value one", 9) == 0);
    cr_assert_eq(rec.timestamp_delta, 0);
    read_back(&kb, 1, &rec);
    cr_assert_eq(rec.key.len, -1);
    cr_assert_eq(rec.timestamp_delta, 5);
    cr_assert_eq(rec.offset_delta, 1);
    read_back(&kb, 2, &rec);
    cr_assert_eq(rec.value.len, -1);
    cr_assert_eq(rec.timestamp_delta, 2);
    kw_writer_free(&w);
}

Test(kafka_legacy, magic_0_has_no_timestamp)
{
    set s = { .len = 0 };
    add(&s, 0, 0, 0, "a", 1, "b", 1);
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_record_batch kb;
    cr_assert_eq(kw_message_set_to_records(s.b, s.len, 1 << 20, &w, &kb), MG_OK);
    cr_assert_eq(kb.records_count, 1);
    cr_assert_eq(kb.base_timestamp, -1);
    kw_writer_free(&w);
}

Test(kafka_legacy, gzip_wrapper)
{
    set inner = { .len = 0 };
    for (int i = 0; i < 20; i++) {
        char v[16];
        int n = snprintf(v, sizeof(v), "message %d", i);
        add(&inner, 1, 0, 2000 + i, NULL, -1, v, n);
    }
    mg_buf *z = NULL;
    cr_assert_eq(kw_compress(KW_CODEC_GZIP, inner.b, inner.len, &z), MG_OK);
    set outer = { .len = 0 };
    add(&outer, 1, KW_CODEC_GZIP, 2000, NULL, -1, mg_buf_data(z), (int32_t)mg_buf_len(z));
    mg_buf_unref(z);
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_record_batch kb;
    cr_assert_eq(kw_message_set_to_records(outer.b, outer.len, 1 << 20, &w, &kb), MG_OK);
    cr_assert_eq(kb.records_count, 20);
    kw_record rec;
    read_back(&kb, 19, &rec);
    cr_assert(rec.value.len == 10 && memcmp(rec.value.ptr, "message 19", 10) == 0);
    cr_assert_eq(rec.offset_delta, 19);
    kw_writer_free(&w);
    /* The decompressed set is bounded. */
    kw_writer_init(&w, 0);
    cr_assert_eq(kw_message_set_to_records(outer.b, outer.len, 64, &w, &kb), MG_ELIMIT);
    kw_writer_free(&w);
}

Test(kafka_legacy, refused)
{
    kw_writer w;
    kw_record_batch kb;
    set s = { .len = 0 };
    add(&s, 1, 0, 1, "k", 1, "v", 1);
    /* Every byte the CRC covers, damaged, is caught. */
    for (size_t i = 16; i < s.len; i++) {
        set d = s;
        d.b[i] ^= 0x40;
        kw_writer_init(&w, 0);
        int rc = kw_message_set_to_records(d.b, d.len, 1 << 20, &w, &kb);
        cr_assert(rc == MG_ECORRUPT, "byte %zu: %d", i, rc);
        kw_writer_free(&w);
    }
    /* Every short prefix is malformed (a trailing partial message), the empty set too. */
    for (size_t n = 0; n < s.len; n++) {
        kw_writer_init(&w, 0);
        cr_assert_eq(kw_message_set_to_records(s.b, n, 1 << 20, &w, &kb), MG_EPROTO, "%zu", n);
        kw_writer_free(&w);
    }
    /* Magic 2 is not a message set. */
    set m2 = { .len = 0 };
    add(&m2, 1, 0, 1, "k", 1, "v", 1);
    m2.b[16] = 2;
    put32(m2.b + 12, (uint32_t)crc32(0, m2.b + 16, (uInt)(m2.len - 16)));
    kw_writer_init(&w, 0);
    cr_assert_eq(kw_message_set_to_records(m2.b, m2.len, 1 << 20, &w, &kb), MG_EPROTO);
    kw_writer_free(&w);
    /* A compressed wrapper whose value does not decompress. */
    set bad = { .len = 0 };
    add(&bad, 1, KW_CODEC_GZIP, 1, NULL, -1, "not gzip at all", 15);
    kw_writer_init(&w, 0);
    cr_assert_eq(kw_message_set_to_records(bad.b, bad.len, 1 << 20, &w, &kb), MG_ECORRUPT);
    kw_writer_free(&w);
}
