/*
 * Tests for CRC32C (common/crc32c.h): published vectors (RFC 3720 appendix B.4 and the
 * "123456789" check value), hardware == software on every length 0..4200 at every alignment
 * with random data and random running values (this crosses every tier boundary of the
 * interleaved hardware path but the longest), on lengths around the longest tier's blocks
 * (6144 bytes) and on 1 MiB, chained calls == one call on the concatenation (also split inside
 * interleaved blocks), and single-bit corruption always changes the value.
 */
#include "common/crc32c.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

TestSuite(crc32c, .timeout = 10);

/* A fixed xorshift generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void fill_random(unsigned char *buf, size_t size)
{
    for (size_t i = 0; i < size; i++)
        buf[i] = (unsigned char)(rng_next() >> 56);
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn fn)
{
    unsigned char buf[32];

    memset(buf, 0x00, sizeof(buf));
    cr_assert_eq(fn(0, buf, sizeof(buf)), 0x8A9136AAu);

    memset(buf, 0xFF, sizeof(buf));
    cr_assert_eq(fn(0, buf, sizeof(buf)), 0x62A8AB43u);

    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    cr_assert_eq(fn(0, buf, sizeof(buf)), 0x46DD794Eu);

    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    cr_assert_eq(fn(0, buf, sizeof(buf)), 0x113FDB5Cu);

    cr_assert_eq(fn(0, "123456789", 9), 0xE3069283u);
    cr_assert_eq(fn(0, NULL, 0), 0u);
    cr_assert_eq(fn(0x12345678u, NULL, 0), 0x12345678u);
    /* A single byte: "a" is a commonly quoted CRC32C check value. */
    cr_assert_eq(fn(0, "a", 1), 0xC1D04330u);
}

Test(crc32c, vectors_default)
{
    check_vectors(mg_crc32c);
}

Test(crc32c, vectors_software)
{
    check_vectors(mg_crc32c_sw);
}

Test(crc32c, vectors_hardware)
{
    if (!mg_crc32c_hw_available()) {
#if defined(__x86_64__)
        cr_log_warn("CPU without SSE4.2: hardware CRC32C not tested");
#endif
        return;
    }
    check_vectors(mg_crc32c_hw);
}

Test(crc32c, hw_equals_sw_every_length_and_alignment)
{
    if (!mg_crc32c_hw_available())
        return;
    static unsigned char buf[1024 + 16];
    fill_random(buf, sizeof(buf));
    for (size_t offset = 0; offset < 8; offset++) {
        for (size_t len = 0; len <= 1024; len++) {
            uint32_t sw = mg_crc32c_sw(0, buf + offset, len);
            uint32_t hw = mg_crc32c_hw(0, buf + offset, len);
            cr_assert_eq(hw, sw, "offset %zu len %zu: hw %08x sw %08x", offset, len, hw, sw);
            /* A non-zero running value too. */
            cr_assert_eq(mg_crc32c_hw(0xDEADBEEFu, buf + offset, len),
                         mg_crc32c_sw(0xDEADBEEFu, buf + offset, len));
        }
    }
}

Test(crc32c, default_equals_sw)
{
    static unsigned char buf[4096];
    fill_random(buf, sizeof(buf));
    for (size_t len = 0; len + 3 <= sizeof(buf); len += 37)
        cr_assert_eq(mg_crc32c(0, buf + 3, len), mg_crc32c_sw(0, buf + 3, len), "len %zu", len);
}

static void check_incremental(crc_fn fn)
{
    static unsigned char buf[777];
    fill_random(buf, sizeof(buf));
    uint32_t whole = fn(0, buf, sizeof(buf));
    for (size_t split = 0; split <= sizeof(buf); split++) {
        uint32_t c = fn(0, buf, split);
        c = fn(c, buf + split, sizeof(buf) - split);
        cr_assert_eq(c, whole, "split at %zu", split);
    }
    /* Three pieces, including empty ones. */
    uint32_t c = fn(0, buf, 100);
    c = fn(c, buf + 100, 0);
    c = fn(c, buf + 100, 5);
    c = fn(c, buf + 105, sizeof(buf) - 105);
    cr_assert_eq(c, whole);
    /* "123456789" in two calls. */
    cr_assert_eq(fn(fn(0, "1234", 4), "56789", 5), 0xE3069283u);
}

Test(crc32c, incremental_equals_one_shot)
{
    check_incremental(mg_crc32c_sw);
    check_incremental(mg_crc32c);
    if (mg_crc32c_hw_available())
        check_incremental(mg_crc32c_hw);
}

Test(crc32c, single_bit_flip_changes_crc)
{
    unsigned char buf[64];
    fill_random(buf, sizeof(buf));
    uint32_t good = mg_crc32c(0, buf, sizeof(buf));
    /* CRC32C detects every single-bit error; check every bit position. */
    for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        cr_assert_neq(mg_crc32c(0, buf, sizeof(buf)), good, "bit %zu", bit);
        cr_assert_neq(mg_crc32c_sw(0, buf, sizeof(buf)), good, "bit %zu", bit);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    cr_assert_eq(mg_crc32c(0, buf, sizeof(buf)), good);
    /* A wrong running value also gives a different result. */
    cr_assert_neq(mg_crc32c(1, buf, sizeof(buf)), good);
}

/* Every length 0..4200 at every misalignment 0..7, fresh random bytes and running value each
 * time: the software path is the reference. 4200 covers the single chain (< 192), the 64-byte
 * tier (192..1007), the 336-byte tier (1008..) and the mixes of both with the tail. */
Test(crc32c, hw_equals_sw_random_lengths_to_4200)
{
    if (!mg_crc32c_hw_available())
        return;
    static unsigned char buf[4200 + 8];
    for (size_t offset = 0; offset < 8; offset++) {
        fill_random(buf, sizeof(buf));
        for (size_t len = 0; len <= 4200; len++) {
            uint32_t start = (uint32_t)rng_next();
            uint32_t sw = mg_crc32c_sw(start, buf + offset, len);
            uint32_t hw = mg_crc32c_hw(start, buf + offset, len);
            cr_assert_eq(hw, sw, "offset %zu len %zu start %08x: hw %08x sw %08x", offset, len,
                         start, hw, sw);
        }
    }
}

/* Lengths around multiples of the longest tier's block (3 x 2048) and combinations with the
 * shorter tiers, plus 1 MiB, at two alignments. */
Test(crc32c, hw_equals_sw_long_buffers)
{
    if (!mg_crc32c_hw_available())
        return;
    static unsigned char buf[(1u << 20) + 8];
    fill_random(buf, sizeof(buf));
    static const size_t bases[] = {
        6144, 2 * 6144, 6144 + 1008, 6144 + 1008 + 192, 5 * 6144 + 2 * 1008 + 3 * 192, 65536
    };
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        for (size_t delta = 0; delta <= 16; delta++) {
            for (size_t offset = 0; offset < 8; offset += 3) {
                size_t lens[2] = { bases[b] + delta, bases[b] - delta };
                for (int i = 0; i < 2; i++) {
                    uint32_t start = (uint32_t)rng_next();
                    cr_assert_eq(mg_crc32c_hw(start, buf + offset, lens[i]),
                                 mg_crc32c_sw(start, buf + offset, lens[i]), "offset %zu len %zu",
                                 offset, lens[i]);
                }
            }
        }
    }
    cr_assert_eq(mg_crc32c_hw(0, buf + 1, 1u << 20), mg_crc32c_sw(0, buf + 1, 1u << 20));
    cr_assert_eq(mg_crc32c(0, buf, 1u << 20), mg_crc32c_sw(0, buf, 1u << 20));
    /* All zeros: a buffer whose streams all stay 0 until the combine. */
    memset(buf, 0, 3 * 6144);
    cr_assert_eq(mg_crc32c_hw(0, buf, 3 * 6144), mg_crc32c_sw(0, buf, 3 * 6144));
    cr_assert_eq(mg_crc32c_hw(0xFFFFFFFFu, buf, 3 * 6144),
                 mg_crc32c_sw(0xFFFFFFFFu, buf, 3 * 6144));
}

/* crc(A) continued with B == crc(A || B), with the split at random points (so the pieces start
 * and end inside interleaved blocks and at odd addresses), for lengths up to 13000. */
Test(crc32c, chained_equals_concatenation_random_splits)
{
    static unsigned char buf[13000 + 8];
    fill_random(buf, sizeof(buf));
    for (int round = 0; round < 2000; round++) {
        size_t offset = (size_t)(rng_next() % 8);
        size_t len = (size_t)(rng_next() % 13001);
        size_t split = len > 0 ? (size_t)(rng_next() % (len + 1)) : 0;
        uint32_t start = round % 2 ? (uint32_t)rng_next() : 0;
        const unsigned char *p = buf + offset;
        uint32_t whole = mg_crc32c_sw(start, p, len);
        cr_assert_eq(mg_crc32c(mg_crc32c(start, p, split), p + split, len - split), whole,
                     "len %zu split %zu", len, split);
        if (mg_crc32c_hw_available()) {
            uint32_t c = mg_crc32c_hw(start, p, split);
            cr_assert_eq(mg_crc32c_hw(c, p + split, len - split), whole, "len %zu split %zu", len,
                         split);
            /* Three pieces, the middle one handled by the other implementation. */
            size_t split2 = split + (len - split) / 2;
            c = mg_crc32c_hw(start, p, split);
            c = mg_crc32c_sw(c, p + split, split2 - split);
            c = mg_crc32c_hw(c, p + split2, len - split2);
            cr_assert_eq(c, whole, "len %zu splits %zu %zu", len, split, split2);
        }
    }
}
