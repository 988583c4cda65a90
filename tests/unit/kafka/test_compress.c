/*
 * Tests for kafka/compress.h, the compression codecs of Kafka's record batches.
 *
 * 1. Known vectors made by other front-ends of the reference libraries, embedded as bytes, prove
 *    the wire formats rather than only that our own output reads back. All encode the same
 *    112 bytes ("hello, kafka! " eight times):
 *      gzip    gzip 1.12, `gzip -n -6`
 *      lz4     lz4 1.9.4, `lz4 -c` from a pipe (a frame with a content checksum)
 *      zstd    zstd 1.5.4, `zstd -3 -c` from a pipe (no content size: what streaming writers
 *              such as Kafka's Java client produce; with a checksum)
 *      snappy  snappy-java 1.1.8.3 (the library Kafka's Java client uses): SnappyOutputStream
 *              (the xerial framing) and Snappy.compress (a raw block, what librdkafka writes).
 *    Our own output is checked for its framing byte by byte (magics, xerial chunk lengths, lz4
 *    block independence).
 * 2. Round trips of every codec over 0 and 1 bytes, 100 KiB of text-like and of random bytes,
 *    and 1 MiB + 17 (several lz4 blocks and xerial chunks); concatenated gzip members, zstd and
 *    lz4 frames; a zstd skippable frame; hand-built xerial streams with uneven chunks.
 * 3. Limits: out_max one byte short is MG_ELIMIT, exactly enough is MG_OK; 10 MiB of zeros
 *    against out_max 1 MiB (a "zip bomb") is MG_ELIMIT for every codec; a zstd window over 8 MiB
 *    is MG_ELIMIT; kw_compress refuses inputs over KW_DECOMPRESSED_BYTES_MAX.
 * 4. Hostile input: truncations, a flipped byte at every position (inputs copied into
 *    allocations of their exact size, so the ASan build sees any read past them); checked
 *    regions (checksums, lengths, magics) must give MG_ECORRUPT, everything else MG_OK or
 *    MG_ECORRUPT; trailing garbage; lz4's offset 0 never leaks stale memory.
 * 5. Allocation failures (mg_alloc_fail_after) give MG_ENOMEM with nothing leaked; names and
 *    parsing; unknown codecs and NONE give MG_EINVAL.
 */
#include "kafka/compress.h"

#include "common/alloc.h"
#include "common/error.h"
#include "kafka/limits.h"
#include "kafka/wire.h"

#include <criterion/criterion.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static void compress_fini(void)
{
    mg_alloc_fail_reset();
}

TestSuite(kafka_compress, .timeout = 10, .fini = compress_fini);

static const int codecs[] = { KW_CODEC_GZIP, KW_CODEC_SNAPPY, KW_CODEC_LZ4, KW_CODEC_ZSTD };
#define CODEC_COUNT (sizeof(codecs) / sizeof(codecs[0]))

#define KIB 1024u
#define MIB (1024u * 1024u)

/* --- Helpers ----------------------------------------------------------------------------- */

/* Text-like bytes: numbered records with repeated words, compressible but not trivially. */
static uint8_t *make_text(size_t n)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    cr_assert_not_null(p);
    size_t pos = 0;
    for (unsigned i = 0; pos < n; i++) {
        char line[96];
        int len = snprintf(line, sizeof(line), "{\"id\":%u,\"user\":\"u-%u\",\"event\":\"%s\"}\n",
                           i, i % 97, i % 3 == 0 ? "click" : "view");
        for (int k = 0; k < len && pos < n; k++)
            p[pos++] = (uint8_t)line[k];
    }
    return p;
}

/* Random bytes (xorshift64, fixed seed): incompressible. */
static uint8_t *make_random(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    cr_assert_not_null(p);
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static mg_buf *compress_ok(int codec, const uint8_t *src, size_t n)
{
    mg_buf *c = NULL;
    int rc = kw_compress(codec, src, n, &c);
    cr_assert_eq(rc, MG_OK, "kw_compress(%s, %zu bytes) = %s", kw_codec_name(codec), n,
                 mg_err_name(rc));
    cr_assert_not_null(c);
    cr_assert_eq(mg_buf_refcount(c), 1);
    return c;
}

/* kw_decompress over an exact-size copy of src (so ASan sees any read past it). */
static int decompress_copy(int codec, const uint8_t *src, size_t n, size_t out_max, mg_buf **out)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    cr_assert_not_null(copy);
    if (n > 0)
        memcpy(copy, src, n);
    int rc = kw_decompress(codec, copy, n, out_max, out);
    free(copy);
    if (rc != MG_OK)
        cr_assert_null(*out, "a failed decompression left a buffer");
    return rc;
}

static void expect_decoded(int codec, const uint8_t *src, size_t n, const void *want,
                           size_t want_len)
{
    mg_buf *d = NULL;
    int rc = decompress_copy(codec, src, n, KW_DECOMPRESSED_BYTES_MAX, &d);
    cr_assert_eq(rc, MG_OK, "%s: %s", kw_codec_name(codec), mg_err_name(rc));
    cr_assert_eq(mg_buf_refcount(d), 1);
    cr_assert_eq(mg_buf_len(d), want_len, "%s: %zu bytes, want %zu", kw_codec_name(codec),
                 mg_buf_len(d), want_len);
    if (want_len > 0)
        cr_assert_eq(memcmp(mg_buf_data(d), want, want_len), 0, "%s: other bytes",
                     kw_codec_name(codec));
    mg_buf_unref(d);
}

static void expect_status(int codec, const uint8_t *src, size_t n, size_t out_max, int want)
{
    mg_buf *d = NULL;
    int rc = decompress_copy(codec, src, n, out_max, &d);
    cr_assert_eq(rc, want, "%s over %zu bytes: %s, want %s", kw_codec_name(codec), n,
                 mg_err_name(rc), mg_err_name(want));
    mg_buf_unref(d);
}

static void round_trip(int codec, const uint8_t *src, size_t n)
{
    mg_buf *c = compress_ok(codec, src, n);
    expect_decoded(codec, mg_buf_data(c), mg_buf_len(c), src, n);
    mg_buf_unref(c);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* a followed by b in one new allocation (*len set). */
static uint8_t *concat(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len, size_t *len)
{
    uint8_t *p = malloc(a_len + b_len + 1);
    cr_assert_not_null(p);
    memcpy(p, a, a_len);
    memcpy(p + a_len, b, b_len);
    *len = a_len + b_len;
    return p;
}

/* --- Known vectors ------------------------------------------------------------------------ */

#define VEC_TEXT_LEN 112u

static void vec_text(char *out)
{
    for (int i = 0; i < 8; i++)
        memcpy(out + 14 * i, "hello, kafka! ", 14);
}

/* printf '%s' "$T" | gzip -n -6 */
static const uint8_t vec_gzip[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd,
    0xc9, 0xc9, 0xd7, 0x51, 0xc8, 0x4e, 0x4c, 0xcb, 0x4e, 0x54, 0x54, 0xc8, 0xa0,
    0x39, 0x0f, 0x00, 0x2a, 0x31, 0x40, 0x2d, 0x70, 0x00, 0x00, 0x00,
};
/* printf '%s' "$T" | lz4 -c */
static const uint8_t vec_lz4[] = {
    0x04, 0x22, 0x4d, 0x18, 0x64, 0x40, 0xa7, 0x18, 0x00, 0x00, 0x00, 0xef, 0x68, 0x65, 0x6c,
    0x6c, 0x6f, 0x2c, 0x20, 0x6b, 0x61, 0x66, 0x6b, 0x61, 0x21, 0x20, 0x0e, 0x00, 0x4a, 0x50,
    0x66, 0x6b, 0x61, 0x21, 0x20, 0x00, 0x00, 0x00, 0x00, 0xd5, 0xd5, 0x88, 0xeb,
};
/* printf '%s' "$T" | zstd -3 -c */
static const uint8_t vec_zstd[] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0xad, 0x00, 0x00, 0x70, 0x68, 0x65,
    0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x6b, 0x61, 0x66, 0x6b, 0x61, 0x21, 0x20,
    0x01, 0x00, 0x1f, 0xd3, 0x54, 0x02, 0x8e, 0xda, 0xee, 0x18,
};
/* snappy-java: new SnappyOutputStream(out).write(T) (the xerial framing, one chunk). */
static const uint8_t vec_xerial[] = {
    0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x16, 0x70, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c,
    0x20, 0x6b, 0x61, 0x66, 0x6b, 0x61, 0x21, 0x20, 0xfe, 0x0e, 0x00, 0x86, 0x0e, 0x00,
};
/* snappy-java: Snappy.compress(T) (a raw block). */
static const uint8_t vec_snappy_raw[] = {
    0x70, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x6b, 0x61,
    0x66, 0x6b, 0x61, 0x21, 0x20, 0xfe, 0x0e, 0x00, 0x86, 0x0e, 0x00,
};
/* snappy-java: an empty SnappyOutputStream closed (the header alone). */
static const uint8_t vec_xerial_empty[] = { 0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00,
                                            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01 };

Test(kafka_compress, decodes_the_reference_tools_output)
{
    char text[VEC_TEXT_LEN];
    vec_text(text);
    expect_decoded(KW_CODEC_GZIP, vec_gzip, sizeof(vec_gzip), text, VEC_TEXT_LEN);
    expect_decoded(KW_CODEC_LZ4, vec_lz4, sizeof(vec_lz4), text, VEC_TEXT_LEN);
    expect_decoded(KW_CODEC_ZSTD, vec_zstd, sizeof(vec_zstd), text, VEC_TEXT_LEN);
    expect_decoded(KW_CODEC_SNAPPY, vec_xerial, sizeof(vec_xerial), text, VEC_TEXT_LEN);
    expect_decoded(KW_CODEC_SNAPPY, vec_snappy_raw, sizeof(vec_snappy_raw), text, VEC_TEXT_LEN);
    expect_decoded(KW_CODEC_SNAPPY, vec_xerial_empty, sizeof(vec_xerial_empty), NULL, 0);
    /* The zstd vector has no content size: the decoder cannot have sized its output from it. */
    cr_assert_eq(ZSTD_getFrameContentSize(vec_zstd, sizeof(vec_zstd)), ZSTD_CONTENTSIZE_UNKNOWN);
    /* A codec reading another's bytes refuses them. */
    expect_status(KW_CODEC_GZIP, vec_zstd, sizeof(vec_zstd), KIB, MG_ECORRUPT);
    expect_status(KW_CODEC_ZSTD, vec_lz4, sizeof(vec_lz4), KIB, MG_ECORRUPT);
    expect_status(KW_CODEC_LZ4, vec_gzip, sizeof(vec_gzip), KIB, MG_ECORRUPT);
    expect_status(KW_CODEC_SNAPPY, vec_gzip, sizeof(vec_gzip), KIB, MG_ECORRUPT);
}

/* --- Our own output's framing ------------------------------------------------------------- */

Test(kafka_compress, writes_the_formats_the_clients_read)
{
    const size_t n = 100 * KIB + 3;
    uint8_t *src = make_text(n);

    mg_buf *c = compress_ok(KW_CODEC_GZIP, src, n);
    const uint8_t *p = mg_buf_data(c);
    cr_assert(p[0] == 0x1f && p[1] == 0x8b && p[2] == 8, "not a gzip member");
    /* ISIZE, the trailer's last 4 bytes (little-endian), is the input's length. */
    size_t len = mg_buf_len(c);
    uint32_t isize = (uint32_t)p[len - 4] | (uint32_t)p[len - 3] << 8 | (uint32_t)p[len - 2] << 16 |
                     (uint32_t)p[len - 1] << 24;
    cr_assert_eq(isize, n);
    cr_assert_lt(len, n / 4, "text compresses");
    mg_buf_unref(c);

    /* xerial: snappy-java's header, then 32 KiB of input per chunk. */
    c = compress_ok(KW_CODEC_SNAPPY, src, n);
    p = mg_buf_data(c);
    len = mg_buf_len(c);
    cr_assert_eq(memcmp(p, vec_xerial_empty, sizeof(vec_xerial_empty)), 0);
    size_t pos = 16, chunks = 0, total = 0;
    while (pos < len) {
        cr_assert_leq(pos + 4, len);
        uint32_t clen = be32(p + pos);
        cr_assert_leq(pos + 4 + clen, len);
        size_t ulen = 0;
        cr_assert_eq(snappy_uncompressed_length((const char *)p + pos + 4, clen, &ulen), SNAPPY_OK);
        size_t want = n - total < 32 * KIB ? n - total : 32 * KIB;
        cr_assert_eq(ulen, want, "chunk %zu holds %zu bytes", chunks, ulen);
        total += ulen;
        pos += 4 + clen;
        chunks++;
    }
    cr_assert_eq(pos, len);
    cr_assert_eq(chunks, 4);
    cr_assert_eq(total, n);
    mg_buf_unref(c);

    /* lz4: a frame; FLG version 01 with independent blocks; BD 64 KiB blocks. */
    c = compress_ok(KW_CODEC_LZ4, src, n);
    p = mg_buf_data(c);
    cr_assert_eq(memcmp(p, "\x04\x22\x4d\x18", 4), 0);
    cr_assert_eq(p[4] & 0xc0, 0x40, "FLG version");
    cr_assert_neq(p[4] & 0x20, 0, "blocks not independent");
    cr_assert_eq(p[5], 0x40, "BD: 64 KiB blocks");
    mg_buf_unref(c);

    /* zstd: a frame with the content size. */
    c = compress_ok(KW_CODEC_ZSTD, src, n);
    p = mg_buf_data(c);
    cr_assert_eq(memcmp(p, "\x28\xb5\x2f\xfd", 4), 0);
    cr_assert_eq(ZSTD_getFrameContentSize(p, mg_buf_len(c)), n);
    cr_assert_eq(ZSTD_findFrameCompressedSize(p, mg_buf_len(c)), mg_buf_len(c));
    mg_buf_unref(c);
    free(src);
}

/* --- Round trips -------------------------------------------------------------------------- */

Test(kafka_compress, round_trips_every_codec)
{
    const size_t sizes[] = { 0, 1, 100 * KIB, MIB + 17 };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t *text = make_text(sizes[s]);
        uint8_t *rnd = make_random(sizes[s], 0x5eed + s);
        for (size_t i = 0; i < CODEC_COUNT; i++) {
            round_trip(codecs[i], text, sizes[s]);
            round_trip(codecs[i], rnd, sizes[s]);
        }
        free(text);
        free(rnd);
    }
    /* NULL with length 0 is the empty input. */
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs[i], NULL, 0);
        expect_decoded(codecs[i], mg_buf_data(c), mg_buf_len(c), NULL, 0);
        mg_buf_unref(c);
    }
}

Test(kafka_compress, snappy_raw_blocks_as_librdkafka_writes_them)
{
    const size_t n = 100 * KIB;
    uint8_t *src = make_text(n);
    size_t cap = snappy_max_compressed_length(n);
    char *raw = malloc(cap);
    size_t len = cap;
    cr_assert_eq(snappy_compress((const char *)src, n, raw, &len), SNAPPY_OK);
    expect_decoded(KW_CODEC_SNAPPY, (const uint8_t *)raw, len, src, n);
    /* The empty raw block: the varint 0 alone. */
    expect_decoded(KW_CODEC_SNAPPY, (const uint8_t *)"", 1, NULL, 0);
    /* Trailing bytes after a raw block make it decode past its declared length. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, raw, len);
    longer[len] = 0;
    expect_status(KW_CODEC_SNAPPY, longer, len + 1, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    free(longer);
    free(raw);
    free(src);
}

/* Builds an xerial stream of raw snappy chunks over src cut at the given lengths. */
static uint8_t *xerial_build(const uint8_t *src, const size_t *cuts, size_t cut_count,
                             size_t *out_len)
{
    size_t cap = 16;
    for (size_t i = 0; i < cut_count; i++)
        cap += 4 + snappy_max_compressed_length(cuts[i]);
    uint8_t *p = malloc(cap);
    cr_assert_not_null(p);
    memcpy(p, vec_xerial_empty, 16);
    size_t pos = 16, off = 0;
    for (size_t i = 0; i < cut_count; i++) {
        size_t n = cap - pos - 4;
        cr_assert_eq(snappy_compress((const char *)src + off, cuts[i], (char *)p + pos + 4, &n),
                     SNAPPY_OK);
        put_be32(p + pos, (uint32_t)n);
        pos += 4 + n;
        off += cuts[i];
    }
    *out_len = pos;
    return p;
}

Test(kafka_compress, snappy_xerial_with_several_chunks)
{
    /* Chunks of uneven sizes, as a writer with another block size would cut them. */
    const size_t cuts[] = { 1000, 50000, 7, 65536, 1 };
    size_t n = 0;
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
        n += cuts[i];
    uint8_t *src = make_random(n, 7);
    memset(src + 1000, 'k', 50000); /* a compressible stretch */
    size_t len = 0;
    uint8_t *x = xerial_build(src, cuts, sizeof(cuts) / sizeof(cuts[0]), &len);
    expect_decoded(KW_CODEC_SNAPPY, x, len, src, n);

    /* Our own writer's several 32 KiB chunks. */
    mg_buf *c = compress_ok(KW_CODEC_SNAPPY, src, n);
    expect_decoded(KW_CODEC_SNAPPY, mg_buf_data(c), mg_buf_len(c), src, n);
    mg_buf_unref(c);

    /* A chunk length of 0, or one past the end, is corrupt. */
    uint8_t *bad = malloc(len);
    memcpy(bad, x, len);
    put_be32(bad + 16, 0);
    expect_status(KW_CODEC_SNAPPY, bad, len, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    put_be32(bad + 16, (uint32_t)len);
    expect_status(KW_CODEC_SNAPPY, bad, len, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    put_be32(bad + 16, 0x80000000u);
    expect_status(KW_CODEC_SNAPPY, bad, len, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    /* The header alone, cut: corrupt. A chunk's length cut in the middle: corrupt. */
    expect_status(KW_CODEC_SNAPPY, x, 12, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    expect_status(KW_CODEC_SNAPPY, x, 18, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
    free(bad);
    free(x);
    free(src);
}

Test(kafka_compress, concatenated_members_and_frames)
{
    const uint8_t a[] = "first member; ";
    const uint8_t b[] = "second member";
    const size_t a_len = sizeof(a) - 1, b_len = sizeof(b) - 1;
    char want[64];
    memcpy(want, a, a_len);
    memcpy(want + a_len, b, b_len);
    const int concat_codecs[] = { KW_CODEC_GZIP, KW_CODEC_LZ4, KW_CODEC_ZSTD };
    for (size_t i = 0; i < 3; i++) {
        int codec = concat_codecs[i];
        mg_buf *ca = compress_ok(codec, a, a_len);
        mg_buf *cb = compress_ok(codec, b, b_len);
        size_t len = 0;
        uint8_t *both =
            concat(mg_buf_data(ca), mg_buf_len(ca), mg_buf_data(cb), mg_buf_len(cb), &len);
        expect_decoded(codec, both, len, want, a_len + b_len);
        /* Three: the first again at the end. */
        size_t len3 = 0;
        uint8_t *three = concat(both, len, mg_buf_data(ca), mg_buf_len(ca), &len3);
        char want3[96];
        memcpy(want3, want, a_len + b_len);
        memcpy(want3 + a_len + b_len, a, a_len);
        expect_decoded(codec, three, len3, want3, 2 * a_len + b_len);
        /* A second member or frame cut short is truncated input. */
        expect_status(codec, both, len - 1, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
        /* Garbage after the last member or frame is corrupt. */
        size_t glen = 0;
        uint8_t *garbage =
            concat(mg_buf_data(ca), mg_buf_len(ca), (const uint8_t *)"xyzw!", 5, &glen);
        expect_status(codec, garbage, glen, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
        free(garbage);
        free(three);
        free(both);
        mg_buf_unref(ca);
        mg_buf_unref(cb);
    }
    /* The zstd CLI's frame (no content size, a checksum) followed by one of ours. */
    char text[VEC_TEXT_LEN + 16];
    vec_text(text);
    memcpy(text + VEC_TEXT_LEN, a, a_len);
    mg_buf *ca = compress_ok(KW_CODEC_ZSTD, a, a_len);
    size_t len = 0;
    uint8_t *mixed = concat(vec_zstd, sizeof(vec_zstd), mg_buf_data(ca), mg_buf_len(ca), &len);
    expect_decoded(KW_CODEC_ZSTD, mixed, len, text, VEC_TEXT_LEN + a_len);
    free(mixed);
    /* A zstd skippable frame (magic 0x184d2a50, little-endian size, bytes) is skipped. */
    const uint8_t skip[] = { 0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c' };
    uint8_t *with_skip = concat(skip, sizeof(skip), mg_buf_data(ca), mg_buf_len(ca), &len);
    expect_decoded(KW_CODEC_ZSTD, with_skip, len, a, a_len);
    free(with_skip);
    mg_buf_unref(ca);
}

/* --- Limits ------------------------------------------------------------------------------- */

Test(kafka_compress, out_max_is_exact)
{
    const size_t n = 100 * KIB;
    uint8_t *src = make_text(n);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs[i], src, n);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), n - 1, MG_ELIMIT);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), n / 2, MG_ELIMIT);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), 0, MG_ELIMIT);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), n, MG_OK);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), SIZE_MAX, MG_OK);
        mg_buf_unref(c);
    }
    free(src);
    /* The empty output fits out_max 0. */
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs[i], NULL, 0);
        expect_status(codecs[i], mg_buf_data(c), mg_buf_len(c), 0, MG_OK);
        mg_buf_unref(c);
    }
}

/* 10 MiB of zeros compressed, read with out_max 1 MiB. */
static void zip_bomb(int codec)
{
    const size_t n = 10 * MIB;
    uint8_t *zeros = calloc(1, n);
    cr_assert_not_null(zeros);
    mg_buf *c = compress_ok(codec, zeros, n);
    free(zeros);
    cr_assert_lt(mg_buf_len(c), n / 20, "%s: zeros compress", kw_codec_name(codec));
    expect_status(codec, mg_buf_data(c), mg_buf_len(c), MIB, MG_ELIMIT);
    mg_buf_unref(c);
}

Test(kafka_compress, zip_bomb_gzip)
{
    zip_bomb(KW_CODEC_GZIP);
}

Test(kafka_compress, zip_bomb_snappy)
{
    zip_bomb(KW_CODEC_SNAPPY);
    /* A single raw block declaring 10 MiB. */
    const size_t n = 10 * MIB;
    char *zeros = calloc(1, n);
    size_t len = snappy_max_compressed_length(n);
    char *raw = malloc(len);
    cr_assert_eq(snappy_compress(zeros, n, raw, &len), SNAPPY_OK);
    free(zeros);
    /* Refused from the declared length: nothing is allocated. */
    mg_alloc_fail_after(0);
    expect_status(KW_CODEC_SNAPPY, (const uint8_t *)raw, len, MIB, MG_ELIMIT);
    mg_alloc_fail_reset();
    free(raw);
}

Test(kafka_compress, zip_bomb_lz4)
{
    zip_bomb(KW_CODEC_LZ4);
}

Test(kafka_compress, zip_bomb_zstd)
{
    zip_bomb(KW_CODEC_ZSTD);
}

/* A zstd frame without a content size whose window is 2^window_log. */
static mg_buf *zstd_with_window(int window_log, const void *src, size_t n)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    cr_assert_not_null(cctx);
    cr_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log)));
    cr_assert(!ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    mg_buf *b = mg_buf_new(ZSTD_compressBound(n) + 64);
    ZSTD_outBuffer out = { mg_buf_data(b), mg_buf_cap(b), 0 };
    ZSTD_inBuffer in = { src, n, 0 };
    /* continue, then end: a single ZSTD_e_end call would size the window to the input. */
    cr_assert(!ZSTD_isError(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_continue)));
    size_t left;
    do {
        left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
        cr_assert(!ZSTD_isError(left));
    } while (left != 0);
    ZSTD_freeCCtx(cctx);
    mg_buf_set_len(b, out.pos);
    return b;
}

Test(kafka_compress, zstd_window_over_8_mib_is_refused)
{
    const char text[] = "a record in a frame with a large window";
    mg_buf *ok = zstd_with_window(23, text, sizeof(text));
    expect_decoded(KW_CODEC_ZSTD, mg_buf_data(ok), mg_buf_len(ok), text, sizeof(text));
    mg_buf *big = zstd_with_window(24, text, sizeof(text));
    expect_status(KW_CODEC_ZSTD, mg_buf_data(big), mg_buf_len(big), KW_DECOMPRESSED_BYTES_MAX,
                  MG_ELIMIT);
    mg_buf_unref(ok);
    mg_buf_unref(big);
}

Test(kafka_compress, compress_refuses_inputs_over_the_limit)
{
    /* calloc maps the pages lazily: this costs no memory. */
    uint8_t *big = calloc(1, KW_DECOMPRESSED_BYTES_MAX + 1);
    cr_assert_not_null(big);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = (mg_buf *)1;
        cr_assert_eq(kw_compress(codecs[i], big, KW_DECOMPRESSED_BYTES_MAX + 1, &c), MG_ELIMIT);
        cr_assert_null(c);
    }
    free(big);
}

/* --- Hostile input ------------------------------------------------------------------------ */

/* Whether cut falls between two chunks of the xerial stream p (or right after the header). */
static bool xerial_boundary(const uint8_t *p, size_t len, size_t cut)
{
    size_t pos = 16;
    while (pos < cut && pos + 4 <= len)
        pos += 4 + be32(p + pos);
    return pos == cut;
}

Test(kafka_compress, truncations_are_corrupt)
{
    /* Every cut of the first and last 512 bytes and every xerial chunk boundary, every fifth
     * cut between (all of them take too long under ASan). */
    const size_t n = 40 * KIB;
    uint8_t *src = make_text(n);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs[i], src, n);
        const uint8_t *p = mg_buf_data(c);
        size_t len = mg_buf_len(c);
        size_t boundaries = 0;
        for (size_t cut = 0; cut < len; cut++) {
            bool boundary = codecs[i] == KW_CODEC_SNAPPY && xerial_boundary(p, len, cut);
            if (cut >= 512 && len - cut > 512 && cut % 5 != 0 && !boundary)
                continue;
            if (boundary) {
                /* The xerial framing has no total length and no end mark: a stream cut between
                 * chunks is a shorter stream (the batch's CRC-32C is what catches it). */
                mg_buf *d = NULL;
                cr_assert_eq(decompress_copy(KW_CODEC_SNAPPY, p, cut, n, &d), MG_OK);
                cr_assert_eq(mg_buf_len(d), 32 * KIB * boundaries);
                cr_assert_eq(memcmp(mg_buf_data(d), src, mg_buf_len(d)), 0);
                mg_buf_unref(d);
                boundaries++;
                continue;
            }
            expect_status(codecs[i], p, cut, KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
        }
        if (codecs[i] == KW_CODEC_SNAPPY)
            cr_assert_eq(boundaries, 2); /* after the header and after the first chunk */
        mg_buf_unref(c);
    }
    free(src);
    /* And of the reference vectors (the lz4 and zstd ones carry checksums). */
    const struct {
        int codec;
        const uint8_t *p;
        size_t len;
    } vecs[] = {
        { KW_CODEC_GZIP, vec_gzip, sizeof(vec_gzip) },
        { KW_CODEC_LZ4, vec_lz4, sizeof(vec_lz4) },
        { KW_CODEC_ZSTD, vec_zstd, sizeof(vec_zstd) },
        { KW_CODEC_SNAPPY, vec_xerial, sizeof(vec_xerial) },
        { KW_CODEC_SNAPPY, vec_snappy_raw, sizeof(vec_snappy_raw) },
    };
    for (size_t v = 0; v < sizeof(vecs) / sizeof(vecs[0]); v++)
        for (size_t cut = 0; cut < vecs[v].len; cut++)
            if (!(vecs[v].p == vec_xerial && cut == 16))
                expect_status(vecs[v].codec, vecs[v].p, cut, KW_DECOMPRESSED_BYTES_MAX,
                              MG_ECORRUPT);
}

/* Flips every bit of byte i (x ^ 0xff) of src in turn and decodes: the answer is never a
 * crash; at positions from checked_from on it must be MG_ECORRUPT, elsewhere MG_OK or
 * MG_ECORRUPT (or MG_ELIMIT for a length grown past out_max). Returns how many were corrupt. */
static size_t flip_each(int codec, const uint8_t *src, size_t len, size_t checked_from)
{
    uint8_t *p = malloc(len);
    cr_assert_not_null(p);
    size_t corrupt = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(p, src, len);
        p[i] ^= 0xff;
        mg_buf *d = NULL;
        int rc = decompress_copy(codec, p, len, 64 * KIB, &d);
        mg_buf_unref(d);
        if (i >= checked_from)
            cr_assert_eq(rc, MG_ECORRUPT, "%s: byte %zu of %zu flipped: %s", kw_codec_name(codec),
                         i, len, mg_err_name(rc));
        else
            cr_assert(rc == MG_OK || rc == MG_ECORRUPT || rc == MG_ELIMIT,
                      "%s: byte %zu flipped: %s", kw_codec_name(codec), i, mg_err_name(rc));
        corrupt += rc == MG_ECORRUPT;
    }
    free(p);
    return corrupt;
}

Test(kafka_compress, flipped_bytes)
{
    /* gzip: after the 10-byte header (whose MTIME, XFL and OS bytes nothing checks) every byte
     * is covered by the deflate structure, the CRC-32 or the length. */
    flip_each(KW_CODEC_GZIP, vec_gzip, sizeof(vec_gzip), 10);
    /* lz4 with a content checksum: the magic, the descriptor under its checksum, the blocks
     * under the content checksum. */
    flip_each(KW_CODEC_LZ4, vec_lz4, sizeof(vec_lz4), 0);
    /* zstd with a checksum: from the block header on (the window descriptor is not checked). */
    flip_each(KW_CODEC_ZSTD, vec_zstd, sizeof(vec_zstd), 6);
    /* xerial: the magic, then the chunk length; the versions are not checked. */
    size_t c = flip_each(KW_CODEC_SNAPPY, vec_xerial, sizeof(vec_xerial), sizeof(vec_xerial));
    cr_assert_gt(c, 8);

    /* Our own output of each codec, which carries no checksum but the gzip one: no crash, no
     * error but corrupt or a limit; the magic is always checked. */
    const size_t n = 3000;
    uint8_t *src = make_text(n);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *m = compress_ok(codecs[i], src, n);
        size_t corrupt = flip_each(codecs[i], mg_buf_data(m), mg_buf_len(m),
                                   codecs[i] == KW_CODEC_GZIP ? 10 : mg_buf_len(m));
        cr_assert_gt(corrupt, 0);
        uint8_t *p = malloc(mg_buf_len(m));
        memcpy(p, mg_buf_data(m), mg_buf_len(m));
        p[0] ^= 0x01;
        expect_status(codecs[i], p, mg_buf_len(m), KW_DECOMPRESSED_BYTES_MAX, MG_ECORRUPT);
        free(p);
        mg_buf_unref(m);
    }
    free(src);
}

Test(kafka_compress, random_garbage_is_corrupt)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        size_t n = (size_t)(seed * 37 % 600);
        uint8_t *p = make_random(n, seed);
        for (size_t i = 0; i < CODEC_COUNT; i++) {
            mg_buf *d = NULL;
            int rc = decompress_copy(codecs[i], p, n, 64 * KIB, &d);
            /* A random raw snappy block can be valid by chance (a short literal); nothing else
             * can. */
            if (codecs[i] != KW_CODEC_SNAPPY)
                cr_assert_eq(rc, MG_ECORRUPT, "%s seed %llu: %s", kw_codec_name(codecs[i]),
                             (unsigned long long)seed, mg_err_name(rc));
            else
                cr_assert(rc == MG_ECORRUPT || rc == MG_ELIMIT || rc == MG_OK);
            mg_buf_unref(d);
        }
        free(p);
    }
}

Test(kafka_compress, lz4_offset_zero_leaks_nothing)
{
    /* A frame (FLG 0x60: version 1, independent blocks; BD 0x40; header checksum 0x82) with one
     * compressed block of 14 bytes: token 0x4f (4 literals, a match of 15 + 4 + 11 = 30), "abcd",
     * offset 0, the length byte 11, then the last sequence token 0x50 and 5 literals; the end mark.
     */
    const uint8_t frame[] = { 0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82, 0x0e, 0x00, 0x00,
                              0x00, 0x4f, 'a',  'b',  'c',  'd',  0x00, 0x00, 0x0b, 0x50,
                              'v',  'w',  'x',  'y',  'z',  0x00, 0x00, 0x00, 0x00 };
    for (int round = 0; round < 4; round++) {
        /* Leave stale non-zero bytes in the heap for the decoder's allocations to find. */
        for (int k = 0; k < 8; k++) {
            uint8_t *junk = malloc(4096u << k);
            memset(junk, 0xa5, 4096u << k);
            free(junk);
        }
        mg_buf *d = NULL;
        int rc = decompress_copy(KW_CODEC_LZ4, frame, sizeof(frame), KW_DECOMPRESSED_BYTES_MAX, &d);
        cr_assert(rc == MG_OK || rc == MG_ECORRUPT, "%s", mg_err_name(rc));
        if (rc == MG_OK) {
            /* Accepted: the match may only have repeated zeros or the block's own bytes. */
            const uint8_t *p = mg_buf_data(d);
            for (size_t i = 0; i < mg_buf_len(d); i++)
                cr_assert(p[i] != 0xa5, "stale heap byte at %zu", i);
        }
        mg_buf_unref(d);
    }
}

/* --- Allocation failures, codecs and names ------------------------------------------------- */

Test(kafka_compress, allocation_failures_are_enomem)
{
    const size_t n = 200 * KIB;
    uint8_t *src = make_text(n);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs[i], src, n);
        /* Every allocation in turn fails, until none has to. */
        for (int64_t budget = 0;; budget++) {
            cr_assert_lt(budget, 100, "%s: no end to the allocations", kw_codec_name(codecs[i]));
            mg_buf *d = (mg_buf *)1;
            mg_alloc_fail_after(budget);
            int rc = kw_decompress(codecs[i], mg_buf_data(c), mg_buf_len(c),
                                   KW_DECOMPRESSED_BYTES_MAX, &d);
            uint64_t failed = mg_alloc_failures_injected();
            mg_alloc_fail_reset();
            if (failed == 0) {
                cr_assert_eq(rc, MG_OK);
                cr_assert_eq(mg_buf_len(d), n);
                cr_assert_eq(memcmp(mg_buf_data(d), src, n), 0);
                mg_buf_unref(d);
                break;
            }
            /* A failed trim or nothing at all: either way a complete answer or MG_ENOMEM. */
            if (rc == MG_OK) {
                cr_assert_eq(mg_buf_len(d), n);
                mg_buf_unref(d);
            } else {
                cr_assert_eq(rc, MG_ENOMEM, "%s budget %lld: %s", kw_codec_name(codecs[i]),
                             (long long)budget, mg_err_name(rc));
                cr_assert_null(d);
            }
        }
        for (int64_t budget = 0;; budget++) {
            cr_assert_lt(budget, 100);
            mg_buf *e = (mg_buf *)1;
            mg_alloc_fail_after(budget);
            int rc = kw_compress(codecs[i], src, n, &e);
            uint64_t failed = mg_alloc_failures_injected();
            mg_alloc_fail_reset();
            if (rc == MG_OK) {
                mg_buf_unref(e);
                if (failed == 0)
                    break;
                continue;
            }
            cr_assert_eq(rc, MG_ENOMEM);
            cr_assert_null(e);
        }
        mg_buf_unref(c);
    }
    free(src);
}

Test(kafka_compress, none_and_unknown_codecs_are_invalid)
{
    const uint8_t bytes[] = { 1, 2, 3 };
    const int bad[] = { KW_CODEC_NONE, -1, 5, 7, 1000 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mg_buf *b = (mg_buf *)1;
        cr_assert_eq(kw_decompress(bad[i], bytes, sizeof(bytes), KIB, &b), MG_EINVAL);
        cr_assert_null(b);
        b = (mg_buf *)1;
        cr_assert_eq(kw_compress(bad[i], bytes, sizeof(bytes), &b), MG_EINVAL);
        cr_assert_null(b);
    }
    /* Compressed input longer than any Kafka frame. */
    mg_buf *b = (mg_buf *)1;
    cr_assert_eq(kw_decompress(KW_CODEC_GZIP, bytes, (size_t)KW_FRAME_BYTES_MAX + 1, KIB, &b),
                 MG_ELIMIT);
    cr_assert_null(b);
}

Test(kafka_compress, names_as_kafka_spells_them)
{
    const char *names[] = { "none", "gzip", "snappy", "lz4", "zstd" };
    for (int codec = 0; codec < 5; codec++) {
        cr_assert_str_eq(kw_codec_name(codec), names[codec]);
        cr_assert_eq(kw_codec_parse(names[codec]), codec);
    }
    cr_assert_eq(KW_CODEC_GZIP, 1);
    cr_assert_eq(KW_CODEC_ZSTD, 4);
    cr_assert_null(kw_codec_name(-1));
    cr_assert_null(kw_codec_name(5));
    cr_assert_eq(kw_codec_parse("GZIP"), -1);
    cr_assert_eq(kw_codec_parse("producer"), -1);
    cr_assert_eq(kw_codec_parse(""), -1);
    cr_assert_eq(kw_codec_parse(NULL), -1);
}
