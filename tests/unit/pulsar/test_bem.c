/*
 * Tests of the BrokerEntryMetadata prefix codec (pw_bem_encode, pw_bem_parse in
 * src/pulsar/wire.c). The golden bytes are written out by hand from the format
 * ([0x0e02][size u32][0x08 varint broker_timestamp][0x10 varint index]): every stored entry
 * carries them, so the encoder must keep producing exactly these.
 */
#include "pulsar/wire.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

TestSuite(bem, .timeout = 10);

typedef struct golden {
    int64_t ts;
    int64_t index;
    size_t len;
    uint8_t bytes[PW_BEM_PREFIX_BYTES_MAX];
} golden;

static const golden k_golden[] = {
    /* zeros: each field still written, as a one-byte varint */
    { 0, 0, 10, { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x10, 0x00 } },
    /* small: 1000 = 0xe8 0x07, 41 = 0x29 */
    { 1000, 41, 11, { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x05, 0x08, 0xe8, 0x07, 0x10, 0x29 } },
    /* a wall-clock timestamp and an index of two bytes */
    { 1700000000500,
      300,
      16,
      { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x08, 0xf4, 0xd3, 0x95, 0xff, 0xbc, 0x31, 0x10, 0xac,
        0x02 } },
    /* an index past 2^31 */
    { 1,
      2147483648,
      14,
      { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x08, 0x08, 0x01, 0x10, 0x80, 0x80, 0x80, 0x80, 0x08 } },
    /* a negative index: its two's complement as a 10-byte varint */
    { 1700000000500, -1, 24, { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x12, 0x08, 0xf4,
                               0xd3, 0x95, 0xff, 0xbc, 0x31, 0x10, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 } },
    /* INT64_MAX twice: 9-byte varints */
    { INT64_MAX, INT64_MAX, 26, { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x14, 0x08, 0xff, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x10, 0xff,
                                  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f } },
    /* the longest prefix: -1 twice, two 10-byte varints */
    { -1, -1, 28, { 0x0e, 0x02, 0x00, 0x00, 0x00, 0x16, 0x08, 0xff, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x10, 0xff, 0xff,
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 } },
};

#define GOLDEN_COUNT (sizeof(k_golden) / sizeof(k_golden[0]))

Test(bem, encode_golden_bytes)
{
    for (size_t i = 0; i < GOLDEN_COUNT; i++) {
        const golden *g = &k_golden[i];
        uint8_t dst[PW_BEM_PREFIX_BYTES_MAX + 4];
        memset(dst, 0xa5, sizeof(dst));
        size_t n = pw_bem_encode(g->ts, g->index, dst);
        cr_assert_eq(n, g->len, "case %zu: length %zu, expected %zu", i, n, g->len);
        cr_assert_arr_eq(dst, g->bytes, g->len, "case %zu: bytes differ", i);
        for (size_t k = n; k < sizeof(dst); k++)
            cr_assert_eq(dst[k], 0xa5, "case %zu: wrote past the prefix at %zu", i, k);
    }
    cr_assert_eq(k_golden[GOLDEN_COUNT - 1].len, PW_BEM_PREFIX_BYTES_MAX);
}

Test(bem, parse_golden_bytes)
{
    for (size_t i = 0; i < GOLDEN_COUNT; i++) {
        const golden *g = &k_golden[i];
        /* followed by client bytes, which the parser must leave alone */
        uint8_t entry[PW_BEM_PREFIX_BYTES_MAX + 3];
        memcpy(entry, g->bytes, g->len);
        memcpy(entry + g->len, "abc", 3);
        pw_bem bem;
        cr_assert_eq(pw_bem_parse(entry, g->len + 3, &bem), MG_OK, "case %zu", i);
        cr_assert(bem.has_broker_timestamp);
        cr_assert(bem.has_index);
        cr_assert_eq(bem.broker_timestamp_ms, (uint64_t)g->ts, "case %zu", i);
        cr_assert_eq(bem.index, g->index, "case %zu", i);
        cr_assert_eq(bem.len, g->len, "case %zu", i);
        /* the prefix alone parses too */
        cr_assert_eq(pw_bem_parse(g->bytes, g->len, &bem), MG_OK);
        cr_assert_eq(bem.len, g->len);
    }
}

Test(bem, payload_parse_agrees)
{
    /* a stored entry: prefix, then client bytes [metadata_size][MessageMetadata][data] */
    static const uint8_t client[] = { 0x00, 0x00, 0x00, 0x08, 0x0a, 0x01, 'p',
                                      0x10, 0x07, 0x18, 0xe8, 0x07, 'h',  'i' };
    for (size_t i = 0; i < GOLDEN_COUNT; i++) {
        const golden *g = &k_golden[i];
        uint8_t entry[PW_BEM_PREFIX_BYTES_MAX + sizeof(client)];
        size_t n = pw_bem_encode(g->ts, g->index, entry);
        memcpy(entry + n, client, sizeof(client));
        pw_payload pl;
        cr_assert_eq(pw_payload_parse(entry, n + sizeof(client), false, &pl), MG_OK);
        cr_assert(pl.has_broker_entry_metadata && pl.has_broker_timestamp && pl.has_index);
        cr_assert_eq(pl.bem_len, n);
        cr_assert_eq(pl.client_off, n);
        cr_assert_eq(pl.broker_timestamp_ms, (uint64_t)g->ts);
        cr_assert_eq(pl.index, g->index);
        cr_assert_eq(pl.data_len, 2);
    }
}

Test(bem, absent_fields)
{
    static const uint8_t only_index[] = { 0x0e, 0x02, 0, 0, 0, 2, 0x10, 0x05 };
    pw_bem bem;
    cr_assert_eq(pw_bem_parse(only_index, sizeof(only_index), &bem), MG_OK);
    cr_assert_not(bem.has_broker_timestamp);
    cr_assert_eq(bem.broker_timestamp_ms, 0);
    cr_assert(bem.has_index);
    cr_assert_eq(bem.index, 5);
    static const uint8_t empty[] = { 0x0e, 0x02, 0, 0, 0, 0 };
    cr_assert_eq(pw_bem_parse(empty, sizeof(empty), &bem), MG_OK);
    cr_assert_not(bem.has_broker_timestamp);
    cr_assert_not(bem.has_index);
    cr_assert_eq(bem.index, -1);
    cr_assert_eq(bem.len, 6);
}

Test(bem, malformed_refused)
{
    pw_bem bem;
    memset(&bem, 0x5a, sizeof(bem));
    const pw_bem untouched = bem;
    /* no magic (a client's checksum magic instead), or nothing at all */
    static const uint8_t checksum[] = { 0x0e, 0x01, 0, 0, 0, 2, 0x10, 0x05 };
    cr_assert_eq(pw_bem_parse(checksum, sizeof(checksum), &bem), MG_EPROTO);
    cr_assert_eq(pw_bem_parse(NULL, 0, &bem), MG_EPROTO);
    /* truncated before the size is complete */
    static const uint8_t good[] = { 0x0e, 0x02, 0, 0, 0, 5, 0x08, 0xe8, 0x07, 0x10, 0x29 };
    for (size_t n = 0; n < 6; n++)
        cr_assert_eq(pw_bem_parse(good, n, &bem), MG_EPROTO, "length %zu", n);
    /* the size running past the bytes */
    for (size_t n = 6; n < sizeof(good); n++)
        cr_assert_eq(pw_bem_parse(good, n, &bem), MG_EPROTO, "length %zu", n);
    /* a size above the bound, though the bytes are there */
    uint8_t big[6 + MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX + 1] = {
        0x0e, 0x02, 0, 0, 0, MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX + 1
    };
    cr_assert_eq(pw_bem_parse(big, sizeof(big), &bem), MG_EPROTO);
    /* a protobuf that does not parse: a varint that never ends */
    static const uint8_t junk[] = { 0x0e, 0x02, 0, 0, 0, 3, 0x08, 0xff, 0xff };
    cr_assert_eq(pw_bem_parse(junk, sizeof(junk), &bem), MG_EPROTO);
    /* a field numbered 0, written in two bytes so that protobuf-c keeps it */
    static const uint8_t zero[] = { 0x0e, 0x02, 0, 0, 0, 5, 0x80, 0x00, 0x01, 0x10, 0x05 };
    cr_assert_eq(pw_bem_parse(zero, sizeof(zero), &bem), MG_EPROTO);
    cr_assert_arr_eq(&bem, &untouched, sizeof(bem), "a refused prefix wrote the result");
}
