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
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw_raw(uint32_t crc, const void *data,
                                                                size_t size)
{
    const unsigned char *p = data;
    uint64_t c = ~crc;
    /* Byte steps up to an 8-byte boundary so the wide loads below are aligned. */
    while (size > 0 && ((uintptr_t)p & 7u) != 0) {
        c = _mm_crc32_u8((uint32_t)c, *p);
        p++;
        size--;
    }
    while (size >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof(word));
        c = _mm_crc32_u64(c, word);
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
/* 0: not yet probed, 1: no, 2: yes. Probing is idempotent, so a race only repeats it. */
static int crc_hw_state;
#endif

bool mg_crc32c_hw_available(void)
{
#if MG__CRC32C_HAVE_HW
    int state = __atomic_load_n(&crc_hw_state, __ATOMIC_RELAXED);
    if (state == 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("sse4.2") ? 2 : 1;
        __atomic_store_n(&crc_hw_state, state, __ATOMIC_RELAXED);
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
