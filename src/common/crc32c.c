/*
 * CRC32C; see crc32c.h.
 *
 * Software path: slicing-by-8. Table 0 is the classic byte-at-a-time table for the reflected
 * polynomial; table k holds the CRC contribution of a byte followed by k zero bytes, so eight
 * input bytes are folded with eight lookups and no data-dependent chain between them. The
 * tables (8 KiB) are computed once, on first use, under pthread_once; afterwards they are only
 * read, so any number of threads may use them.
 *
 * Hardware path: the SSE4.2 crc32 instruction implements exactly this polynomial (reflected,
 * no initial/final inversion of its own). Only the functions that use it are compiled for
 * SSE4.2 (target attribute), never the whole file, so the library still runs on CPUs without
 * it; the choice is made at run time with __builtin_cpu_supports and cached.
 *
 * Three interleaved streams. One crc32 takes 3 cycles before its result can feed the next, but
 * the CPU starts one per cycle: a single dependent chain runs at a third of the instruction's
 * throughput. So a long buffer is cut into blocks of 3 x L bytes, the three L-byte parts are
 * run as three independent chains (A from the running register, B and C from 0) and combined.
 * The raw register (the value between the inversions) is linear over GF(2) in the register and
 * the data together, which gives
 *
 *     reg(r, X || Y) = reg(reg(r, X), Y)          reg(r, Y) = shift_|Y|(r) ^ reg(0, Y)
 *
 * where shift_L(r) = reg(r, L zero bytes) multiplies r by x^(8L) modulo the polynomial. Hence
 *
 *     reg(r, A || B || C) = shift_L(shift_L(reg(r, A)) ^ reg(0, B)) ^ reg(0, C).
 *
 * shift_L is a linear map on 32 bits, applied as four lookups in 256-entry tables:
 * T_k[b] = shift_L(b << 8k), so shift_L(r) = T_0[r & 0xff] ^ T_1[r >> 8 & 0xff] ^ ... The
 * tables are built from the images of the 32 one-bit registers, each obtained by running the
 * byte-at-a-time software CRC over L zero bytes. Block sizes ("tiers"), longest first: each
 * tier is used while at least 3 x L bytes remain, then the next shorter one, then a single
 * chain for the rest (under 3 x 64 bytes). L = 2048 for large buffers; L = 336 so that a
 * 1 KiB entry with its 16-byte record header (1040 bytes) is one block of 1008 bytes and four
 * words; L = 64 mops up what is left of mid-sized buffers. Measured on the development
 * machine (Xeon, cycles per byte): single chain 0.31; tiered 0.13 at 1040 bytes, 0.11 from
 * 64 KiB up, 0.13 on average over sizes 64..6200. A combine costs two dependent table
 * applications (~15 cycles), so tiers shorter than 64 bytes do not pay. The shift tables
 * (3 x 4 KiB) are built once, under pthread_once, by the first caller that finds the
 * hardware path available (mg_crc32c_hw_available), before that result is published.
 *
 * Invariant: both paths compute ~crc_raw(~crc, data), i.e. the caller always sees finished
 * CRC values.
 */
#include "common/crc32c.h"
#include "common/assert.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#define MG__CRC32C_HAVE_HW 1
#include <nmmintrin.h>
#else
#define MG__CRC32C_HAVE_HW 0
#endif

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc_tables[8][256];
static pthread_once_t crc_tables_once = PTHREAD_ONCE_INIT;

static void crc_tables_build(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        crc_tables[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc_tables[0][i];
        for (int k = 1; k < 8; k++) {
            c = (c >> 8) ^ crc_tables[0][c & 0xffu];
            crc_tables[k][i] = c;
        }
    }
}

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t mg_crc32c_sw(uint32_t crc, const void *data, size_t size)
{
    pthread_once(&crc_tables_once, crc_tables_build);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (size >= 8) {
        uint32_t lo = c ^ load_le32(p);
        uint32_t hi = load_le32(p + 4);
        c = crc_tables[7][lo & 0xffu] ^ crc_tables[6][(lo >> 8) & 0xffu] ^
            crc_tables[5][(lo >> 16) & 0xffu] ^ crc_tables[4][lo >> 24] ^
            crc_tables[3][hi & 0xffu] ^ crc_tables[2][(hi >> 8) & 0xffu] ^
            crc_tables[1][(hi >> 16) & 0xffu] ^ crc_tables[0][hi >> 24];
        p += 8;
        size -= 8;
    }
    while (size > 0) {
        c = (c >> 8) ^ crc_tables[0][(c ^ *p) & 0xffu];
        p++;
        size--;
    }
    return ~c;
}

#if MG__CRC32C_HAVE_HW
/* Stream lengths L of the interleaved tiers, longest first (see the file comment). Each is a
 * multiple of 8, so the three streams of a block keep the 8-byte alignment of the first. */
#define CRC_HW_TIERS       3
#define CRC_HW_TIER0_BYTES 2048u
#define CRC_HW_TIER1_BYTES 336u
#define CRC_HW_TIER2_BYTES 64u
_Static_assert(CRC_HW_TIER0_BYTES % 8 == 0 && CRC_HW_TIER1_BYTES % 8 == 0 &&
                   CRC_HW_TIER2_BYTES % 8 == 0,
               "tier lengths keep the 8-byte alignment");
static const size_t crc_hw_tier_bytes[CRC_HW_TIERS] = { CRC_HW_TIER0_BYTES, CRC_HW_TIER1_BYTES,
                                                        CRC_HW_TIER2_BYTES };
/* crc_shift_tables[t][k][b] = shift_L(b << 8k) for L = crc_hw_tier_bytes[t]. */
static uint32_t crc_shift_tables[CRC_HW_TIERS][4][256];
static pthread_once_t crc_shift_once = PTHREAD_ONCE_INIT;

/* The raw register after len zero bytes, one byte at a time (table 0). */
static uint32_t crc_raw_zeros(uint32_t reg, size_t len)
{
    for (size_t i = 0; i < len; i++)
        reg = (reg >> 8) ^ crc_tables[0][reg & 0xffu];
    return reg;
}

static void crc_shift_tables_build(void)
{
    pthread_once(&crc_tables_once, crc_tables_build);
    for (int t = 0; t < CRC_HW_TIERS; t++) {
        uint32_t image[32]; /* shift_L of each one-bit register */
        for (int bit = 0; bit < 32; bit++)
            image[bit] = crc_raw_zeros(1u << bit, crc_hw_tier_bytes[t]);
        for (int k = 0; k < 4; k++) {
            for (uint32_t b = 0; b < 256; b++) {
                uint32_t v = 0;
                for (int bit = 0; bit < 8; bit++) {
                    if ((b >> bit) & 1u)
                        v ^= image[8 * k + bit];
                }
                crc_shift_tables[t][k][b] = v;
            }
        }
    }
}

static inline uint32_t crc_shift(const uint32_t (*table)[256], uint32_t reg)
{
    return table[0][reg & 0xffu] ^ table[1][(reg >> 8) & 0xffu] ^ table[2][(reg >> 16) & 0xffu] ^
           table[3][reg >> 24];
}

static inline uint64_t load_u64(const unsigned char *p)
{
    uint64_t word;
    memcpy(&word, p, sizeof(word));
    return word;
}

/* Consumes whole blocks of 3 x len bytes from *p while at least that many remain: three
 * interleaved chains, combined through the tier's shift tables. len is a constant at every call,
 * so each call is specialised. */
__attribute__((target("sse4.2"), always_inline)) static inline uint64_t
crc_hw_tier(uint64_t reg, const unsigned char **p, size_t *size, size_t len,
            const uint32_t (*table)[256])
{
    const unsigned char *q = *p;
    size_t left = *size;
    while (left >= 3 * len) {
        uint64_t a = reg, b = 0, c = 0;
        const unsigned char *end = q + len;
        do {
            a = _mm_crc32_u64(a, load_u64(q));
            b = _mm_crc32_u64(b, load_u64(q + len));
            c = _mm_crc32_u64(c, load_u64(q + 2 * len));
            q += 8;
        } while (q < end);
        reg = crc_shift(table, crc_shift(table, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
        q += 2 * len;
        left -= 3 * len;
    }
    *p = q;
    *size = left;
    return reg;
}

/* Only called once mg_crc32c_hw_available() returned true, which built the shift tables. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw_raw(uint32_t crc, const void *data,
                                                                size_t size)
{
    const unsigned char *p = data;
    uint64_t c = ~crc;
    /* Narrow steps up to an 8-byte boundary so the wide loads below are aligned. */
    if (size >= 1 && ((uintptr_t)p & 1u) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p);
        p++;
        size--;
    }
    if (size >= 2 && ((uintptr_t)p & 2u) != 0) {
        uint16_t half;
        memcpy(&half, p, sizeof(half));
        c = _mm_crc32_u16((uint32_t)c, half);
        p += 2;
        size -= 2;
    }
    if (size >= 4 && ((uintptr_t)p & 4u) != 0) {
        uint32_t word;
        memcpy(&word, p, sizeof(word));
        c = _mm_crc32_u32((uint32_t)c, word);
        p += 4;
        size -= 4;
    }
    if (size >= 3 * CRC_HW_TIER2_BYTES) {
        c = crc_hw_tier(c, &p, &size, CRC_HW_TIER0_BYTES, crc_shift_tables[0]);
        c = crc_hw_tier(c, &p, &size, CRC_HW_TIER1_BYTES, crc_shift_tables[1]);
        c = crc_hw_tier(c, &p, &size, CRC_HW_TIER2_BYTES, crc_shift_tables[2]);
    }
    while (size >= 8) {
        c = _mm_crc32_u64(c, load_u64(p));
        p += 8;
        size -= 8;
    }
    while (size > 0) {
        c = _mm_crc32_u8((uint32_t)c, *p);
        p++;
        size--;
    }
    return ~(uint32_t)c;
}
#endif

#if MG__CRC32C_HAVE_HW
/* 0: not yet probed, 1: no, 2: yes (and the shift tables are built). Probing is idempotent, so
 * a race only repeats it. */
static int crc_hw_state;
#endif

bool mg_crc32c_hw_available(void)
{
#if MG__CRC32C_HAVE_HW
    /* Acquire pairs with the release below: whoever sees 2 also sees the shift tables. */
    int state = __atomic_load_n(&crc_hw_state, __ATOMIC_ACQUIRE);
    if (state == 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        if (state == 2)
            pthread_once(&crc_shift_once, crc_shift_tables_build);
        __atomic_store_n(&crc_hw_state, state, __ATOMIC_RELEASE);
    }
    return state == 2;
#else
    return false;
#endif
}

uint32_t mg_crc32c_hw(uint32_t crc, const void *data, size_t size)
{
    MG_ASSERT(mg_crc32c_hw_available());
#if MG__CRC32C_HAVE_HW
    return crc32c_hw_raw(crc, data, size);
#else
    (void)crc;
    (void)data;
    (void)size;
    MG_UNREACHABLE();
#endif
}

uint32_t mg_crc32c(uint32_t crc, const void *data, size_t size)
{
#if MG__CRC32C_HAVE_HW
    if (mg_crc32c_hw_available())
        return crc32c_hw_raw(crc, data, size);
#endif
    return mg_crc32c_sw(crc, data, size);
}
