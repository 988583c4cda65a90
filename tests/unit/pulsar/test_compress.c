/*
 * Tests for pulsar/compress.h, the Pulsar compression codecs.
 *
 * 1. Known vectors made by other front-ends of the reference libraries, embedded as bytes, prove
 *    the wire formats rather than only that our own output reads back:
 *      ZLIB    python3's zlib.compress (a complete zlib stream, level 6), and the stream that
 *              Pulsar's Java client writes: java.util.zip.Deflater (OpenJDK 17) with default
 *              settings drained with SYNC_FLUSH and never finished (ends 00 00 ff ff, no Adler-32)
 *              - made by a small Java program doing what CompressionCodecZLib.encode does.
 *      LZ4     the block inside the LZ4 frame written by the `lz4` 1.9.4 command line tool (frame
 *              header and block size word removed: what is left is a raw block), and blocks
 *              written byte by byte from the LZ4 block format description (literals only; literals
 *              then a match; the empty block).
 *      ZSTD    a frame from the `zstd -3` 1.5.4 command line tool (content size and XXH64
 *              checksum in it), and frames written byte by byte from RFC 8878 (a Raw block, an RLE
 *              block).
 *      SNAPPY  snappy-java 1.1.8.3's Snappy.compress (the C++ library behind JNI), and blocks
 *              written byte by byte from snappy's format_description.txt (a literal; a literal
 *              then a 1-byte-offset copy).
 *    Our own output is checked for its format with the libraries' plain one-shot decoders
 *    (uncompress() wants a complete zlib stream, LZ4_decompress_safe a raw block...).
 * 2. Round trips of every codec over 0, 1, 100, 4 KiB and 1 MiB of text-like and of random bytes,
 *    and at exactly MG_PULSAR_UNCOMPRESSED_BYTES_MAX; one byte more is MG_ELIMIT.
 * 3. Hostile input: every truncation, flipped bits at every position, wrong uncompressed
 *    lengths, declared lengths above the limit, random garbage, blocks that reach before the
 *    start of the output or claim more than they hold. The answer is MG_ECORRUPT or MG_ELIMIT
 *    and never a crash; the ASan build shows no byte is read or written out of bounds (inputs
 *    are copied into allocations of their exact size first).
 * 4. Allocation failures (mg_alloc_fail_after) give MG_ENOMEM with nothing leaked; names and
 *    parsing; unknown codecs.
 */
#include "pulsar/compress.h"

#include "common/alloc.h"
#include "common/error.h"
#include "pulsar/limits.h"

#include <criterion/criterion.h>
#include <lz4.h>
#include <snappy-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

static void compress_fini(void)
{
    mg_alloc_fail_reset();
}

TestSuite(compress, .timeout = 10, .fini = compress_fini);

static const int codecs_all[] = { MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE,
                                  MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4,
                                  MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB,
                                  MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD,
                                  MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY };
#define CODEC_COUNT (sizeof(codecs_all) / sizeof(codecs_all[0]))

/* The text every known vector below encodes (197 bytes). */
static const char vec_text[] =
    "Magnetar speaks Pulsar. Magnetar speaks Pulsar to every client: producers, consumers and "
    "readers. Batches compressed by one client decompress in any other client, byte for byte, "
    "batch after batch.\n";
#define VEC_TEXT_LEN (sizeof(vec_text) - 1)

/* --- known vectors (see the header comment for where each comes from) ---------------------- */

static const uint8_t vec_zlib_python[131] = {
    0x78, 0x9c, 0x6d, 0x8c, 0x31, 0x0e, 0x83, 0x40, 0x0c, 0x04, 0xfb, 0xbc, 0x62, 0x1f, 0x80,
    0xee, 0x01, 0x29, 0xd3, 0x23, 0xe5, 0x0b, 0xce, 0xdd, 0x12, 0x50, 0xe0, 0x0e, 0xd9, 0x26,
    0x12, 0xbf, 0x8f, 0x83, 0x48, 0x97, 0x6e, 0xd6, 0xb3, 0xde, 0x5e, 0x9e, 0x95, 0x2e, 0x0a,
    0x5b, 0x29, 0x2f, 0xc3, 0x7d, 0x9b, 0x4d, 0x34, 0xa1, 0xff, 0x7b, 0x87, 0x37, 0xf0, 0x4d,
    0xdd, 0x91, 0xe7, 0x89, 0xd5, 0xaf, 0x58, 0xb5, 0x95, 0x2d, 0x53, 0xad, 0x43, 0x6e, 0xd5,
    0xb6, 0x25, 0x10, 0x52, 0x0b, 0x94, 0x52, 0x82, 0x13, 0x6e, 0xe2, 0x79, 0xa4, 0x85, 0x5e,
    0x56, 0xa5, 0x19, 0x0b, 0x1e, 0x3b, 0x5a, 0xe5, 0xb9, 0x81, 0xc2, 0x9f, 0xc2, 0x54, 0xe3,
    0x37, 0xa4, 0x8f, 0xd4, 0x53, 0x77, 0xd1, 0x76, 0x62, 0x68, 0x7a, 0x40, 0xc4, 0xef, 0x1e,
    0x64, 0xf0, 0xa8, 0x1c, 0x9c, 0x2e, 0x1f, 0x22, 0x8b, 0x47, 0xce,
};

static const uint8_t vec_zlib_java[132] = {
    0x78, 0x9c, 0x6c, 0x8c, 0x31, 0x0e, 0x83, 0x40, 0x0c, 0x04, 0xfb, 0xbc, 0x62, 0x1f, 0x80,
    0xee, 0x01, 0x29, 0xd3, 0x23, 0xe5, 0x0b, 0xce, 0xdd, 0x12, 0x50, 0xe0, 0x0e, 0xd9, 0x26,
    0x12, 0xbf, 0x8f, 0x83, 0x48, 0x97, 0x6e, 0xd6, 0xb3, 0xde, 0x5e, 0x9e, 0x95, 0x2e, 0x0a,
    0x5b, 0x29, 0x2f, 0xc3, 0x7d, 0x9b, 0x4d, 0x34, 0xa1, 0xff, 0x7b, 0x87, 0x37, 0xf0, 0x4d,
    0xdd, 0x91, 0xe7, 0x89, 0xd5, 0xaf, 0x58, 0xb5, 0x95, 0x2d, 0x53, 0xad, 0x43, 0x6e, 0xd5,
    0xb6, 0x25, 0x10, 0x52, 0x0b, 0x94, 0x52, 0x82, 0x13, 0x6e, 0xe2, 0x79, 0xa4, 0x85, 0x5e,
    0x56, 0xa5, 0x19, 0x0b, 0x1e, 0x3b, 0x5a, 0xe5, 0xb9, 0x81, 0xc2, 0x9f, 0xc2, 0x54, 0xe3,
    0x37, 0xa4, 0x8f, 0xd4, 0x53, 0x77, 0xd1, 0x76, 0x62, 0x68, 0x7a, 0x40, 0xc4, 0xef, 0x1e,
    0x64, 0xf0, 0xa8, 0x1c, 0x9c, 0x2e, 0x1f, 0x00, 0x00, 0x00, 0xff, 0xff,
};

static const uint8_t vec_lz4_cli[166] = {
    0xff, 0x09, 0x4d, 0x61, 0x67, 0x6e, 0x65, 0x74, 0x61, 0x72, 0x20, 0x73, 0x70, 0x65, 0x61, 0x6b,
    0x73, 0x20, 0x50, 0x75, 0x6c, 0x73, 0x61, 0x72, 0x2e, 0x20, 0x18, 0x00, 0x03, 0xf3, 0x3e, 0x20,
    0x74, 0x6f, 0x20, 0x65, 0x76, 0x65, 0x72, 0x79, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x3a,
    0x20, 0x70, 0x72, 0x6f, 0x64, 0x75, 0x63, 0x65, 0x72, 0x73, 0x2c, 0x20, 0x63, 0x6f, 0x6e, 0x73,
    0x75, 0x6d, 0x65, 0x72, 0x73, 0x20, 0x61, 0x6e, 0x64, 0x20, 0x72, 0x65, 0x61, 0x64, 0x65, 0x72,
    0x73, 0x2e, 0x20, 0x42, 0x61, 0x74, 0x63, 0x68, 0x65, 0x73, 0x20, 0x63, 0x6f, 0x6d, 0x70, 0x72,
    0x65, 0x73, 0x73, 0x65, 0x64, 0x20, 0x62, 0x79, 0x20, 0x6f, 0x6e, 0x65, 0x44, 0x00, 0x34, 0x20,
    0x64, 0x65, 0x1b, 0x00, 0xd3, 0x20, 0x69, 0x6e, 0x20, 0x61, 0x6e, 0x79, 0x20, 0x6f, 0x74, 0x68,
    0x65, 0x72, 0x63, 0x00, 0xa1, 0x2c, 0x20, 0x62, 0x79, 0x74, 0x65, 0x20, 0x66, 0x6f, 0x72, 0x09,
    0x00, 0x30, 0x2c, 0x20, 0x62, 0x50, 0x00, 0xe0, 0x20, 0x61, 0x66, 0x74, 0x65, 0x72, 0x20, 0x62,
    0x61, 0x74, 0x63, 0x68, 0x2e, 0x0a,
};

static const uint8_t vec_zstd_cli[137] = {
    0x28, 0xb5, 0x2f, 0xfd, 0x24, 0xc5, 0xe5, 0x03, 0x00, 0x02, 0xc9, 0x19, 0x18, 0x90, 0x37, 0x6d,
    0x00, 0xd8, 0x62, 0xc3, 0x64, 0xcd, 0x8f, 0xf5, 0x6f, 0x49, 0xa4, 0xbd, 0xfc, 0x94, 0xda, 0xd7,
    0x58, 0x19, 0xdb, 0x75, 0x27, 0x00, 0xc2, 0xb0, 0xad, 0xe3, 0xfc, 0x16, 0xe5, 0x63, 0x93, 0x58,
    0xf8, 0x9b, 0x8e, 0x4d, 0xde, 0x58, 0x74, 0xba, 0xf2, 0x1d, 0x3e, 0xf2, 0x0f, 0x9d, 0x8e, 0xd1,
    0x55, 0x9f, 0x4a, 0x82, 0x66, 0xbd, 0x61, 0x5b, 0x02, 0x13, 0x9a, 0x47, 0xf5, 0x34, 0xba, 0xb2,
    0xe6, 0x93, 0x45, 0x0f, 0xcd, 0x46, 0xf3, 0xb6, 0x20, 0x4c, 0xc5, 0x81, 0xbd, 0x1f, 0x88, 0x39,
    0xe5, 0x0f, 0x37, 0xae, 0x4d, 0x64, 0x29, 0xb2, 0x10, 0xac, 0x86, 0xba, 0xa2, 0xce, 0xda, 0x5f,
    0xa1, 0x06, 0x01, 0x06, 0x00, 0x53, 0x88, 0xc1, 0x72, 0x11, 0xa1, 0xf2, 0xf7, 0x21, 0xd3, 0x1c,
    0x38, 0x33, 0xac, 0x32, 0xf1, 0x7a, 0xc4, 0x23, 0x40,
};

static const uint8_t vec_snappy_java[169] = {
    0xc5, 0x01, 0x5c, 0x4d, 0x61, 0x67, 0x6e, 0x65, 0x74, 0x61, 0x72, 0x20, 0x73, 0x70, 0x65, 0x61,
    0x6b, 0x73, 0x20, 0x50, 0x75, 0x6c, 0x73, 0x61, 0x72, 0x2e, 0x20, 0x56, 0x18, 0x00, 0xf0, 0x4c,
    0x20, 0x74, 0x6f, 0x20, 0x65, 0x76, 0x65, 0x72, 0x79, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74,
    0x3a, 0x20, 0x70, 0x72, 0x6f, 0x64, 0x75, 0x63, 0x65, 0x72, 0x73, 0x2c, 0x20, 0x63, 0x6f, 0x6e,
    0x73, 0x75, 0x6d, 0x65, 0x72, 0x73, 0x20, 0x61, 0x6e, 0x64, 0x20, 0x72, 0x65, 0x61, 0x64, 0x65,
    0x72, 0x73, 0x2e, 0x20, 0x42, 0x61, 0x74, 0x63, 0x68, 0x65, 0x73, 0x20, 0x63, 0x6f, 0x6d, 0x70,
    0x72, 0x65, 0x73, 0x73, 0x65, 0x64, 0x20, 0x62, 0x79, 0x20, 0x6f, 0x6e, 0x65, 0x0d, 0x44, 0x0c,
    0x20, 0x64, 0x65, 0x63, 0x0d, 0x1b, 0x30, 0x20, 0x69, 0x6e, 0x20, 0x61, 0x6e, 0x79, 0x20, 0x6f,
    0x74, 0x68, 0x65, 0x72, 0x0d, 0x1f, 0x24, 0x2c, 0x20, 0x62, 0x79, 0x74, 0x65, 0x20, 0x66, 0x6f,
    0x72, 0x05, 0x09, 0x50, 0x2c, 0x20, 0x62, 0x61, 0x74, 0x63, 0x68, 0x20, 0x61, 0x66, 0x74, 0x65,
    0x72, 0x20, 0x62, 0x61, 0x74, 0x63, 0x68, 0x2e, 0x0a,
};

/* --- helpers ------------------------------------------------------------------------------- */

/* A copy of src in an allocation of exactly len bytes, so that ASan sees any read past it. */
static uint8_t *exact_copy(const void *src, size_t len)
{
    uint8_t *p = malloc(len > 0 ? len : 1);
    cr_assert_not_null(p);
    if (len > 0)
        memcpy(p, src, len);
    return p;
}

/* pw_decompress on an exact-size copy of src; returns the status and leaves the result in *out. */
static int decompress_exact(int codec, const void *src, size_t src_len, size_t len, mg_buf **out)
{
    uint8_t *copy = exact_copy(src, src_len);
    int rc = pw_decompress(codec, copy, src_len, len, out);
    free(copy);
    if (rc != MG_OK)
        cr_assert_null(*out, "the result must be NULL on an error");
    return rc;
}

/* Asserts that src decompresses with codec to exactly want[0, want_len). */
static void expect_decoded(int codec, const void *src, size_t src_len, const void *want,
                           size_t want_len)
{
    mg_buf *out = NULL;
    int rc = decompress_exact(codec, src, src_len, want_len, &out);
    cr_assert_eq(rc, MG_OK, "%s: %s", pw_compression_name(codec), mg_err_name(rc));
    cr_assert_eq(mg_buf_len(out), want_len);
    cr_assert_eq(mg_buf_refcount(out), 1);
    if (want_len > 0)
        cr_assert_eq(memcmp(mg_buf_data(out), want, want_len), 0);
    mg_buf_unref(out);
}

static void expect_status(int codec, const void *src, size_t src_len, size_t len, int want)
{
    mg_buf *out = (mg_buf *)1;
    int rc = decompress_exact(codec, src, src_len, len, &out);
    cr_assert_eq(rc, want, "%s, %zu bytes -> %zu: got %s, want %s", pw_compression_name(codec),
                 src_len, len, mg_err_name(rc), mg_err_name(want));
    if (rc == MG_OK)
        mg_buf_unref(out);
}

static mg_buf *compress_ok(int codec, const void *src, size_t len)
{
    mg_buf *out = NULL;
    int rc = pw_compress(codec, src, len, &out);
    cr_assert_eq(rc, MG_OK, "%s of %zu bytes: %s", pw_compression_name(codec), len,
                 mg_err_name(rc));
    cr_assert_not_null(out);
    cr_assert_eq(mg_buf_refcount(out), 1);
    return out;
}

/* xorshift64*: deterministic bytes for the tests. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
    uint64_t s = seed | 1;
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 56);
}

/* Words, spaces and newlines drawn from a small vocabulary: compresses like log lines. */
static void fill_text(uint8_t *p, size_t len, uint64_t seed)
{
    static const char *const words[] = {
        "topic",  "ledger", "entry",    "batch",  "producer", "consumer", "ack",
        "cursor", "bookie", "magnetar", "pulsar", "message",  "42",       "2024-06-01T12:00:00Z"
    };
    const size_t word_count = sizeof(words) / sizeof(words[0]);
    uint64_t s = seed | 1;
    size_t i = 0;
    while (i < len) {
        uint64_t r = rng_next(&s);
        const char *w = words[r % word_count];
        for (size_t k = 0; w[k] != '\0' && i < len; k++)
            p[i++] = (uint8_t)w[k];
        if (i < len)
            p[i++] = (r >> 40) % 9 == 0 ? '\n' : ' ';
    }
}

static void roundtrip(int codec, const uint8_t *src, size_t len)
{
    mg_buf *c = compress_ok(codec, src, len);
    if (codec == MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE) {
        cr_assert_eq(mg_buf_len(c), len);
        if (len > 0)
            cr_assert_eq(memcmp(mg_buf_data(c), src, len), 0);
    }
    expect_decoded(codec, mg_buf_data(c), mg_buf_len(c), src, len);
    mg_buf_unref(c);
}

/* What a test checks on src[0, len) compressed by codec into c (c and src stay the caller's). */
typedef void compressed_check(int codec, mg_buf *c, const uint8_t *src, size_t len);

/* Compresses src[0, len) with each codec of codecs_all from index first on (1: all but NONE) and
 * hands each result to check. */
static void each_compressed(size_t first, const uint8_t *src, size_t len, compressed_check *check)
{
    for (size_t i = first; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs_all[i], src, len);
        check(codecs_all[i], c, src, len);
        mg_buf_unref(c);
    }
}

/* each_compressed on len bytes of fill_text(seed). */
static void each_compressed_text(size_t first, size_t len, uint64_t seed, compressed_check *check)
{
    uint8_t *src = malloc(len);
    cr_assert_not_null(src);
    fill_text(src, len, seed);
    each_compressed(first, src, len, check);
    free(src);
}

/* --- names ----------------------------------------------------------------------------------- */

Test(compress, names_are_pulsars)
{
    cr_assert_str_eq(pw_compression_name(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE), "NONE");
    cr_assert_str_eq(pw_compression_name(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4), "LZ4");
    cr_assert_str_eq(pw_compression_name(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB), "ZLIB");
    cr_assert_str_eq(pw_compression_name(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD), "ZSTD");
    cr_assert_str_eq(pw_compression_name(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY), "SNAPPY");
    cr_assert_null(pw_compression_name(-1));
    cr_assert_null(pw_compression_name(5));
    cr_assert_null(pw_compression_name(1000));
    /* The codecs are numbered as Pulsar's CompressionType (PulsarApi.proto). */
    cr_assert_eq(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, 0);
    cr_assert_eq(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, 1);
    cr_assert_eq(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, 2);
    cr_assert_eq(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, 3);
    cr_assert_eq(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, 4);
}

Test(compress, parse_is_case_insensitive_and_exact)
{
    for (size_t i = 0; i < CODEC_COUNT; i++)
        cr_assert_eq(pw_compression_parse(pw_compression_name(codecs_all[i])), codecs_all[i]);
    cr_assert_eq(pw_compression_parse("none"), MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE);
    cr_assert_eq(pw_compression_parse("lz4"), MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4);
    cr_assert_eq(pw_compression_parse("Zlib"), MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB);
    cr_assert_eq(pw_compression_parse("zStD"), MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD);
    cr_assert_eq(pw_compression_parse("snappy"), MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY);
    cr_assert_eq(pw_compression_parse(NULL), -1);
    cr_assert_eq(pw_compression_parse(""), -1);
    cr_assert_eq(pw_compression_parse("gzip"), -1);
    cr_assert_eq(pw_compression_parse("LZ4 "), -1);
    cr_assert_eq(pw_compression_parse(" LZ4"), -1);
    cr_assert_eq(pw_compression_parse("LZ"), -1);
    cr_assert_eq(pw_compression_parse("ZSTD1"), -1);
}

Test(compress, unknown_codec_is_einval)
{
    mg_buf *out = (mg_buf *)1;
    cr_assert_eq(pw_compress(-1, (const uint8_t *)"x", 1, &out), MG_EINVAL);
    cr_assert_null(out);
    out = (mg_buf *)1;
    cr_assert_eq(pw_compress(5, (const uint8_t *)"x", 1, &out), MG_EINVAL);
    cr_assert_null(out);
    out = (mg_buf *)1;
    cr_assert_eq(pw_decompress(5, (const uint8_t *)"x", 1, 1, &out), MG_EINVAL);
    cr_assert_null(out);
    out = (mg_buf *)1;
    cr_assert_eq(pw_decompress(-1, (const uint8_t *)"x", 1, 1, &out), MG_EINVAL);
    cr_assert_null(out);
}

/* --- known vectors -----------------------------------------------------------------------------
 */

Test(compress, zlib_reads_pythons_complete_stream)
{
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_python,
                   sizeof(vec_zlib_python), vec_text, VEC_TEXT_LEN);
}

Test(compress, zlib_reads_pulsar_javas_flushed_unfinished_stream)
{
    /* What the Java client writes: ends with the sync marker, no final block, no Adler-32. */
    const size_t n = sizeof(vec_zlib_java);
    cr_assert_eq(memcmp(vec_zlib_java + n - 4, "\x00\x00\xff\xff", 4), 0);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, n, vec_text,
                   VEC_TEXT_LEN);
    /* Java writes nothing at all for an empty payload. */
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, NULL, 0, NULL, 0);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, NULL, 0, 1, MG_ECORRUPT);
    /* Declared one byte short or long. */
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, n, VEC_TEXT_LEN - 1,
                  MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, n, VEC_TEXT_LEN + 1,
                  MG_ECORRUPT);
}

Test(compress, zlib_refuses_raw_deflate_and_gzip)
{
    /* The same deflate data without the zlib wrapper (2-byte header, 4-byte Adler-32). */
    const size_t n = sizeof(vec_zlib_python);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_python + 2, n - 6,
                  VEC_TEXT_LEN, MG_ECORRUPT);
    /* ... and wrapped as gzip (RFC 1952: 10-byte header, CRC-32 and ISIZE little-endian). */
    uint8_t gz[10 + sizeof(vec_zlib_python) - 6 + 8];
    static const uint8_t gz_header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
    memcpy(gz, gz_header, 10);
    memcpy(gz + 10, vec_zlib_python + 2, n - 6);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)vec_text, VEC_TEXT_LEN);
    uint8_t *t = gz + 10 + n - 6;
    for (int i = 0; i < 4; i++) {
        t[i] = (uint8_t)(crc >> (8 * i));
        t[4 + i] = (uint8_t)(VEC_TEXT_LEN >> (8 * i));
    }
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, gz, sizeof(gz), VEC_TEXT_LEN,
                  MG_ECORRUPT);
}

Test(compress, zlib_writes_complete_zlib_streams)
{
    mg_buf *c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, (const uint8_t *)vec_text,
                            VEC_TEXT_LEN);
    const uint8_t *p = mg_buf_data(c);
    size_t n = mg_buf_len(c);
    cr_assert_gt(n, 6);
    /* RFC 1950 header: deflate with a 32 KiB window, check bits, no preset dictionary. */
    cr_assert_eq(p[0], 0x78);
    cr_assert_eq((p[0] * 256 + p[1]) % 31, 0);
    cr_assert_eq(p[1] & 0x20, 0);
    /* Adler-32 of the text, big-endian, closes the stream. */
    uint32_t adler = (uint32_t)adler32(1, (const Bytef *)vec_text, VEC_TEXT_LEN);
    uint32_t tail =
        (uint32_t)p[n - 4] << 24 | (uint32_t)p[n - 3] << 16 | (uint32_t)p[n - 2] << 8 | p[n - 1];
    cr_assert_eq(tail, adler);
    /* zlib's one-shot uncompress() accepts only complete streams. */
    uint8_t back[VEC_TEXT_LEN];
    uLongf back_len = sizeof(back);
    cr_assert_eq(uncompress(back, &back_len, p, n), Z_OK);
    cr_assert_eq(back_len, VEC_TEXT_LEN);
    cr_assert_eq(memcmp(back, vec_text, VEC_TEXT_LEN), 0);
    mg_buf_unref(c);
    /* The empty payload is a complete stream too (Java's zero bytes are read, not written). */
    c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, NULL, 0);
    cr_assert_gt(mg_buf_len(c), 0);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, mg_buf_data(c), mg_buf_len(c), NULL,
                   0);
    mg_buf_unref(c);
}

Test(compress, lz4_reads_the_block_of_the_lz4_tools_frame)
{
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, vec_lz4_cli, sizeof(vec_lz4_cli),
                   vec_text, VEC_TEXT_LEN);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, vec_lz4_cli, sizeof(vec_lz4_cli),
                  VEC_TEXT_LEN - 1, MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, vec_lz4_cli, sizeof(vec_lz4_cli),
                  VEC_TEXT_LEN + 1, MG_ECORRUPT);
}

Test(compress, lz4_reads_hand_made_blocks)
{
    /* Token 0x50: 5 literals, no match (the last sequence of a block). */
    static const uint8_t literals[] = { 0x50, 'h', 'e', 'l', 'l', 'o' };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, literals, sizeof(literals), "hello", 5);
    /* Token 0x44: 4 literals "abcd", then offset 4 (little-endian) and match length 4 + 4 = 8,
     * which copies the literals twice; token 0x80: the last 8 literals. */
    static const uint8_t match[] = { 0x44, 'a', 'b', 'c', 'd', 0x04, 0x00, 0x80,
                                     '-',  'e', 'n', 'd', '-', 'x',  'y',  'z' };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, match, sizeof(match),
                   "abcdabcdabcd-end-xyz", 20);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, match, sizeof(match), 19, MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, match, sizeof(match), 21, MG_ECORRUPT);
    /* The empty block: one token with no literals. */
    static const uint8_t empty[] = { 0x00 };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, empty, 1, NULL, 0);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, NULL, 0, 0, MG_ECORRUPT);
    /* A match reaching before the start of the output (offset 5 after 4 bytes). */
    static const uint8_t before[] = { 0x44, 'a', 'b', 'c', 'd', 0x05, 0x00, 0x80,
                                      '-',  'e', 'n', 'd', '-', 'x',  'y',  'z' };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, before, sizeof(before), 20, MG_ECORRUPT);
    /* Offset 0 is invalid. */
    static const uint8_t zero[] = { 0x44, 'a', 'b', 'c', 'd', 0x00, 0x00, 0x80,
                                    '-',  'e', 'n', 'd', '-', 'x',  'y',  'z' };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, zero, sizeof(zero), 20, MG_ECORRUPT);
    /* Literal length claims more bytes than the block holds. */
    static const uint8_t overrun[] = { 0x90, 'a', 'b', 'c' };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, overrun, sizeof(overrun), 9,
                  MG_ECORRUPT);
    /* An LZ4 *frame* (magic 04 22 4d 18) is not what Pulsar sends. */
    static const uint8_t frame[] = { 0x04, 0x22, 0x4d, 0x18, 0x60, 0x40, 0x82, 0x06, 0x00, 0x00,
                                     0x80, 'h',  'e',  'l',  'l',  'o',  0x00, 0x00, 0x00, 0x00 };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, frame, sizeof(frame), 5, MG_ECORRUPT);
}

Test(compress, lz4_writes_raw_blocks)
{
    mg_buf *c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, (const uint8_t *)vec_text,
                            VEC_TEXT_LEN);
    const uint8_t *p = mg_buf_data(c);
    cr_assert_lt(mg_buf_len(c), VEC_TEXT_LEN); /* the repeated sentence became a match */
    cr_assert_neq(memcmp(p, "\x04\x22\x4d\x18", 4), 0, "not a frame");
    char back[VEC_TEXT_LEN];
    cr_assert_eq(LZ4_decompress_safe((const char *)p, back, (int)mg_buf_len(c), VEC_TEXT_LEN),
                 (int)VEC_TEXT_LEN);
    cr_assert_eq(memcmp(back, vec_text, VEC_TEXT_LEN), 0);
    mg_buf_unref(c);
    c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, NULL, 0);
    cr_assert_eq(mg_buf_len(c), 1);
    cr_assert_eq(mg_buf_data(c)[0], 0x00);
    mg_buf_unref(c);
}

Test(compress, zstd_reads_the_zstd_tools_frame)
{
    const size_t n = sizeof(vec_zstd_cli);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, vec_zstd_cli, n, vec_text,
                   VEC_TEXT_LEN);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, vec_zstd_cli, n, VEC_TEXT_LEN - 1,
                  MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, vec_zstd_cli, n, VEC_TEXT_LEN + 1,
                  MG_ECORRUPT);
    /* The frame carries a checksum (frame header descriptor bit 2): a changed byte in it is
     * caught although the content decodes. */
    cr_assert_neq(vec_zstd_cli[4] & 0x04, 0);
    uint8_t bad[sizeof(vec_zstd_cli)];
    memcpy(bad, vec_zstd_cli, n);
    bad[n - 1] ^= 0x01;
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, bad, n, VEC_TEXT_LEN, MG_ECORRUPT);
}

Test(compress, zstd_reads_hand_made_frames)
{
    /* RFC 8878: magic 28 b5 2f fd; descriptor 0x20 (single segment, 1-byte content size); a
     * block header (3 bytes little-endian: size << 3 | type << 1 | last): a Raw block. */
    static const uint8_t raw[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x20, 10,  0x51, 0x00, 0x00, 'h',
                                   'e',  'l',  'l',  'o',  ' ',  'z', 's',  't',  'd' };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, raw, sizeof(raw), "hello zstd", 10);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, raw, sizeof(raw) - 1, 10, MG_ECORRUPT);
    /* An RLE block: 100 times 'z' (size 100, type 1, last: 100 << 3 | 2 | 1 = 0x323). */
    static const uint8_t rle[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x20, 100, 0x23, 0x03, 0x00, 'z' };
    uint8_t zs[100];
    memset(zs, 'z', sizeof(zs));
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, rle, sizeof(rle), zs, sizeof(zs));
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, rle, sizeof(rle), 99, MG_ECORRUPT);
    /* A frame claiming 1 GiB (4-byte content size, descriptor 0xa0) as a 100-byte payload:
     * refused from the header, before anything of that size exists. */
    static const uint8_t bomb[] = { 0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x00,
                                    0x00, 0x40, 0x23, 0x03, 0x00, 'z' };
    mg_alloc_fail_after(0); /* nothing at all is allocated for it */
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, bomb, sizeof(bomb), 100, MG_ECORRUPT);
    mg_alloc_fail_reset();
    /* The same RLE block in a frame without a content size (descriptor 0x00, window
     * descriptor 0x00 = 1 KiB window) still has to fill exactly the declared length. */
    static const uint8_t nosize[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x23, 0x03, 0x00, 'z' };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, nosize, sizeof(nosize), zs,
                   sizeof(zs));
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, nosize, sizeof(nosize), 99,
                  MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, nosize, sizeof(nosize), 101,
                  MG_ECORRUPT);
    /* Not a frame. */
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, "hello", 5, 5, MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, NULL, 0, 0, MG_ECORRUPT);
}

Test(compress, zstd_writes_standard_frames_with_content_size)
{
    mg_buf *c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, (const uint8_t *)vec_text,
                            VEC_TEXT_LEN);
    const uint8_t *p = mg_buf_data(c);
    cr_assert_eq(memcmp(p, "\x28\xb5\x2f\xfd", 4), 0);
    cr_assert_eq(ZSTD_getFrameContentSize(p, mg_buf_len(c)), VEC_TEXT_LEN);
    cr_assert_eq(ZSTD_findFrameCompressedSize(p, mg_buf_len(c)), mg_buf_len(c));
    char back[VEC_TEXT_LEN];
    cr_assert_eq(ZSTD_decompress(back, sizeof(back), p, mg_buf_len(c)), VEC_TEXT_LEN);
    cr_assert_eq(memcmp(back, vec_text, VEC_TEXT_LEN), 0);
    mg_buf_unref(c);
}

Test(compress, snappy_reads_snappy_javas_output)
{
    const size_t n = sizeof(vec_snappy_java);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, vec_snappy_java, n, vec_text,
                   VEC_TEXT_LEN);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, vec_snappy_java, n, VEC_TEXT_LEN - 1,
                  MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, vec_snappy_java, n, VEC_TEXT_LEN + 1,
                  MG_ECORRUPT);
}

Test(compress, snappy_reads_hand_made_blocks)
{
    /* Varint length 12, then a literal tag ((12 - 1) << 2 | 0) and 12 bytes. */
    static const uint8_t literal[] = { 0x0c, 0x2c, 'h', 'e', 'l', 'l', 'o',
                                       ' ',  's',  'n', 'a', 'p', 'p', 'y' };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, literal, sizeof(literal),
                   "hello snappy", 12);
    /* A length that disagrees with the varint is refused before anything is allocated. */
    mg_alloc_fail_after(0);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, literal, sizeof(literal), 11,
                  MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, literal, sizeof(literal), 13,
                  MG_ECORRUPT);
    mg_alloc_fail_reset();
    /* Length 12: literal "abcd" (tag 3 << 2), then a copy with a 1-byte offset: tag
     * (offset >> 8) << 5 | (length - 4) << 2 | 1 = 0x11 for length 8, offset byte 4. */
    static const uint8_t copy[] = { 0x0c, 0x0c, 'a', 'b', 'c', 'd', 0x11, 0x04 };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, copy, sizeof(copy), "abcdabcdabcd",
                   12);
    /* Offset 5 reaches before the start; offset 0 is invalid. */
    static const uint8_t before[] = { 0x0c, 0x0c, 'a', 'b', 'c', 'd', 0x11, 0x05 };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, before, sizeof(before), 12,
                  MG_ECORRUPT);
    static const uint8_t zero[] = { 0x0c, 0x0c, 'a', 'b', 'c', 'd', 0x11, 0x00 };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, zero, sizeof(zero), 12, MG_ECORRUPT);
    /* Declares 12 bytes but holds only 4. */
    static const uint8_t shortb[] = { 0x0c, 0x0c, 'a', 'b', 'c', 'd' };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, shortb, sizeof(shortb), 12,
                  MG_ECORRUPT);
    /* The empty block is the varint 0 alone. */
    static const uint8_t empty[] = { 0x00 };
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, empty, 1, NULL, 0);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, NULL, 0, 0, MG_ECORRUPT);
    /* The framing format's stream identifier chunk is not what Pulsar sends. */
    static const uint8_t framed[] = { 0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y' };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, framed, sizeof(framed), 0,
                  MG_ECORRUPT);
    /* A varint that never ends. */
    static const uint8_t varint[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, varint, sizeof(varint), 12,
                  MG_ECORRUPT);
}

Test(compress, snappy_writes_raw_blocks)
{
    mg_buf *c = compress_ok(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, (const uint8_t *)vec_text,
                            VEC_TEXT_LEN);
    const uint8_t *p = mg_buf_data(c);
    /* Varint 197 = 0xc5 0x01 up front, no stream identifier. */
    cr_assert_eq(p[0], 0xc5);
    cr_assert_eq(p[1], 0x01);
    size_t len = 0;
    cr_assert_eq(snappy_uncompressed_length((const char *)p, mg_buf_len(c), &len), SNAPPY_OK);
    cr_assert_eq(len, VEC_TEXT_LEN);
    mg_buf_unref(c);
}

Test(compress, none_copies_exactly)
{
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, vec_text, VEC_TEXT_LEN, vec_text,
                   VEC_TEXT_LEN);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, NULL, 0, NULL, 0);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, vec_text, VEC_TEXT_LEN,
                  VEC_TEXT_LEN - 1, MG_ECORRUPT);
    expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, vec_text, VEC_TEXT_LEN,
                  VEC_TEXT_LEN + 1, MG_ECORRUPT);
}

/* --- round trips ----------------------------------------------------------------------------- */

Test(compress, every_codec_round_trips_many_sizes)
{
    static const size_t sizes[] = { 0, 1, 2, 100, 4096, 4097, 65536, 1024 * 1024 };
    const size_t size_max = 1024 * 1024;
    uint8_t *text = malloc(size_max);
    uint8_t *random = malloc(size_max);
    cr_assert_not_null(text);
    cr_assert_not_null(random);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        fill_text(text, sizes[s], 7 + s);
        fill_random(random, sizes[s], 11 + s);
        for (size_t i = 0; i < CODEC_COUNT; i++) {
            roundtrip(codecs_all[i], text, sizes[s]);
            roundtrip(codecs_all[i], random, sizes[s]);
        }
    }
    /* Text-like data really is compressed, random data costs at most a little. */
    fill_text(text, size_max, 3);
    fill_random(random, size_max, 5);
    for (size_t i = 1; i < CODEC_COUNT; i++) {
        mg_buf *c = compress_ok(codecs_all[i], text, size_max);
        cr_assert_lt(mg_buf_len(c), size_max / 2, "%s", pw_compression_name(codecs_all[i]));
        /* The worst-case buffer was cut to size. */
        cr_assert_leq(mg_buf_cap(c), mg_buf_len(c) + mg_buf_cap(c) / 4);
        mg_buf_unref(c);
        c = compress_ok(codecs_all[i], random, size_max);
        cr_assert_leq(mg_buf_len(c), size_max + size_max / 100);
        mg_buf_unref(c);
    }
    free(text);
    free(random);
}

Test(compress, the_limit_round_trips_and_one_byte_more_is_elimit, .timeout = 60)
{
    const size_t max = MG_PULSAR_UNCOMPRESSED_BYTES_MAX;
    cr_assert_eq(max, 16u * 1024 * 1024);
    uint8_t *big = malloc(max + 1);
    cr_assert_not_null(big);
    fill_text(big, max + 1, 99);
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        int codec = codecs_all[i];
        roundtrip(codec, big, max);
        mg_buf *out = (mg_buf *)1;
        cr_assert_eq(pw_compress(codec, big, max + 1, &out), MG_ELIMIT);
        cr_assert_null(out);
    }
    free(big);
}

/* --- hostile input -----------------------------------------------------------------------------
 */

static void lengths_above_the_limit_are_elimit(int codec, mg_buf *c, const uint8_t *src, size_t len)
{
    static const size_t lens[] = { MG_PULSAR_UNCOMPRESSED_BYTES_MAX + 1, 1u << 30, UINT32_MAX,
                                   SIZE_MAX };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
        expect_status(codec, mg_buf_data(c), mg_buf_len(c), lens[k], MG_ELIMIT);
}

Test(compress, declared_length_above_the_limit_is_elimit)
{
    each_compressed(0, (const uint8_t *)vec_text, VEC_TEXT_LEN, lengths_above_the_limit_are_elimit);
}

/* For 4096 bytes of input. */
static void wrong_lengths_are_ecorrupt(int codec, mg_buf *c, const uint8_t *src, size_t len)
{
    static const size_t lens[] = { 0, 1, 4095, 4097, 8192, MG_PULSAR_UNCOMPRESSED_BYTES_MAX };
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
        expect_status(codec, mg_buf_data(c), mg_buf_len(c), lens[k], MG_ECORRUPT);
}

Test(compress, wrong_uncompressed_length_is_ecorrupt)
{
    each_compressed_text(0, 4096, 1, wrong_lengths_are_ecorrupt);
}

static void truncations_are_ecorrupt(int codec, mg_buf *c, const uint8_t *src, size_t len)
{
    /* Every prefix, including a cut inside zlib's Adler-32 trailer. */
    for (size_t n = 0; n < mg_buf_len(c); n++)
        expect_status(codec, mg_buf_data(c), n, len, MG_ECORRUPT);
    /* A byte too many after the end of the data. */
    uint8_t *longer = malloc(mg_buf_len(c) + 1);
    cr_assert_not_null(longer);
    memcpy(longer, mg_buf_data(c), mg_buf_len(c));
    longer[mg_buf_len(c)] = 0;
    expect_status(codec, longer, mg_buf_len(c) + 1, len, MG_ECORRUPT);
    free(longer);
}

Test(compress, every_truncation_is_ecorrupt)
{
    each_compressed_text(1, 4096, 2, truncations_are_ecorrupt);
    /* The known vectors, cut anywhere before their end. Java's ZLIB stream has no end marker
     * beyond its flush, so it is whole once the last block is: every shorter cut loses data. */
    struct {
        int codec;
        const uint8_t *p;
        size_t n;
    } vecs[] = {
        { MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_python, sizeof(vec_zlib_python) },
        { MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, vec_lz4_cli, sizeof(vec_lz4_cli) },
        { MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, vec_zstd_cli, sizeof(vec_zstd_cli) },
        { MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, vec_snappy_java, sizeof(vec_snappy_java) },
    };
    for (size_t v = 0; v < sizeof(vecs) / sizeof(vecs[0]); v++)
        for (size_t n = 0; n < vecs[v].n; n++)
            expect_status(vecs[v].codec, vecs[v].p, n, VEC_TEXT_LEN, MG_ECORRUPT);
    /* Java's flushed stream ends with the last data block, then the empty stored block of the
     * flush (3 header bits in the last data byte's spare bits or the next byte, then
     * 00 00 ff ff). Cut before the data block ends: data lost. Cut right after it (the last 5
     * bytes gone): every byte is there and the cut is at a block boundary, which is all a
     * flushed stream ever promises. Cut inside the empty stored block's header: refused. */
    const size_t jn = sizeof(vec_zlib_java);
    for (size_t n = 0; n < jn - 5; n++)
        expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, n, VEC_TEXT_LEN,
                      MG_ECORRUPT);
    expect_decoded(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, jn - 5, vec_text,
                   VEC_TEXT_LEN);
    for (size_t n = jn - 4; n < jn; n++)
        expect_status(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, n, VEC_TEXT_LEN,
                      MG_ECORRUPT);
}

/* Flips bits at every position of a compressed input. The answer is MG_OK (the codec has no
 * checksum and the change still decodes to the declared length) or MG_ECORRUPT, never anything
 * else; with zlib's Adler-32 or zstd's frame checksum an MG_OK result is the original text. */
static void flip_everywhere(int codec, const uint8_t *p, size_t n, const uint8_t *want,
                            size_t want_len, bool checked)
{
    static const uint8_t masks[] = { 0x01, 0x10, 0x80, 0xff };
    uint8_t *copy = malloc(n);
    cr_assert_not_null(copy);
    size_t corrupt_count = 0;
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(copy, p, n);
            copy[pos] ^= masks[m];
            mg_buf *out = (mg_buf *)1;
            int rc = pw_decompress(codec, copy, n, want_len, &out);
            cr_assert(rc == MG_OK || rc == MG_ECORRUPT, "%s at %zu: %s", pw_compression_name(codec),
                      pos, mg_err_name(rc));
            if (rc == MG_OK) {
                cr_assert_eq(mg_buf_len(out), want_len);
                if (checked)
                    cr_assert_eq(memcmp(mg_buf_data(out), want, want_len), 0,
                                 "%s at %zu: changed data passed the checksum",
                                 pw_compression_name(codec), pos);
                mg_buf_unref(out);
            } else {
                cr_assert_null(out);
                corrupt_count++;
            }
        }
    }
    /* The header bytes at least are always checked. */
    cr_assert_gt(corrupt_count, 0);
    free(copy);
}

static void flips_are_ok_or_ecorrupt(int codec, mg_buf *c, const uint8_t *src, size_t len)
{
    flip_everywhere(codec, mg_buf_data(c), mg_buf_len(c), src, len,
                    codec == MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB);
}

Test(compress, flipped_bits_never_crash)
{
    each_compressed_text(1, 2048, 3, flips_are_ok_or_ecorrupt);
    const uint8_t *text = (const uint8_t *)vec_text;
    flip_everywhere(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD, vec_zstd_cli, sizeof(vec_zstd_cli),
                    text, VEC_TEXT_LEN, true);
    flip_everywhere(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_python,
                    sizeof(vec_zlib_python), text, VEC_TEXT_LEN, true);
    flip_everywhere(MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB, vec_zlib_java, sizeof(vec_zlib_java),
                    text, VEC_TEXT_LEN, false);
    flip_everywhere(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, vec_lz4_cli, sizeof(vec_lz4_cli), text,
                    VEC_TEXT_LEN, false);
    flip_everywhere(MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY, vec_snappy_java,
                    sizeof(vec_snappy_java), text, VEC_TEXT_LEN, false);
}

Test(compress, random_garbage_never_crashes)
{
    static const size_t lens[] = { 0, 1, 16, 100, 1000, 65536 };
    uint8_t garbage[512];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)round * 7 % sizeof(garbage);
        fill_random(garbage, n, 1000 + (uint64_t)round);
        /* Some rounds start with the right magic, to get past the first check. */
        if (round % 4 == 1 && n >= 4)
            memcpy(garbage, "\x28\xb5\x2f\xfd", 4);
        if (round % 4 == 2 && n >= 2)
            memcpy(garbage, "\x78\x9c", 2);
        for (size_t i = 1; i < CODEC_COUNT; i++) {
            for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
                mg_buf *out = NULL;
                int rc = decompress_exact(codecs_all[i], garbage, n, lens[k], &out);
                cr_assert(rc == MG_OK || rc == MG_ECORRUPT, "%s: %s",
                          pw_compression_name(codecs_all[i]), mg_err_name(rc));
                if (rc == MG_OK) {
                    cr_assert_eq(mg_buf_len(out), lens[k]);
                    mg_buf_unref(out);
                }
            }
        }
    }
}

/* --- allocation failures ---------------------------------------------------------------------- */

/* A failed allocation while compressing src or decompressing c is MG_ENOMEM with no result. */
static void allocation_failures_are_enomem(int codec, mg_buf *c, const uint8_t *src, size_t len)
{
    /* Fail the k-th allocation for growing k until the call gets through. */
    bool compressed = false, decompressed = false;
    for (int64_t k = 0; k < 32 && !(compressed && decompressed); k++) {
        mg_buf *out = (mg_buf *)1;
        mg_alloc_fail_after(k);
        int rc = compressed ? MG_OK : pw_compress(codec, src, len, &out);
        mg_alloc_fail_reset();
        if (!compressed) {
            cr_assert(rc == MG_OK || rc == MG_ENOMEM, "%s", mg_err_name(rc));
            if (rc == MG_OK) {
                compressed = true;
                mg_buf_unref(out);
            } else {
                cr_assert_null(out);
            }
        }
        if (decompressed)
            continue;
        out = (mg_buf *)1;
        mg_alloc_fail_after(k);
        rc = pw_decompress(codec, mg_buf_data(c), mg_buf_len(c), len, &out);
        mg_alloc_fail_reset();
        cr_assert(rc == MG_OK || rc == MG_ENOMEM, "%s", mg_err_name(rc));
        if (rc == MG_OK) {
            decompressed = true;
            cr_assert_eq(memcmp(mg_buf_data(out), src, len), 0);
            mg_buf_unref(out);
        } else {
            cr_assert_null(out);
        }
    }
    cr_assert(compressed && decompressed, "%s", pw_compression_name(codec));
}

Test(compress, allocation_failures_are_enomem_and_leak_nothing)
{
    uint8_t src[8192];
    fill_text(src, sizeof(src), 4);
    each_compressed(0, src, sizeof(src), allocation_failures_are_enomem);
    /* The very first allocation failing is MG_ENOMEM for every codec. */
    for (size_t i = 0; i < CODEC_COUNT; i++) {
        mg_buf *out = (mg_buf *)1;
        mg_alloc_fail_after(0);
        int rc = pw_compress(codecs_all[i], src, sizeof(src), &out);
        mg_alloc_fail_reset();
        cr_assert_eq(rc, MG_ENOMEM);
        cr_assert_null(out);
    }
}
