/*
 * CRC32C (Castagnoli): the checksum of Pulsar frames (the magic 0x0e01 section) and of bookie
 * journal records.
 *
 * Parameters: reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF. The
 * running value passed in and returned is the finished CRC, so a computation starts with 0 and
 * can be split anywhere:
 *
 *     mg_crc32c(mg_crc32c(0, a, n), b, m) == mg_crc32c(0, a || b, n + m)
 *
 * Two implementations give identical results: the SSE4.2 `crc32` instruction (x86-64 only,
 * chosen at run time when the CPU has it; buffers of 192 bytes and more run as three
 * interleaved streams combined through precomputed shift tables, see crc32c.c) and a portable
 * slicing-by-8 table fallback whose tables are computed from the polynomial on first use. All
 * functions are pure and may be called from any thread.
 */
#ifndef MG_COMMON_CRC32C_H
#define MG_COMMON_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extends the CRC32C `crc` (0 to start) with `size` bytes at `data` and returns the new value.
 * `data` may be NULL when size is 0. Uses the hardware instruction when available, else the
 * table fallback. Any thread; never fails. */
uint32_t mg_crc32c(uint32_t crc, const void *data, size_t size);

/* The portable table-driven implementation (slicing-by-8). Same contract as mg_crc32c. */
uint32_t mg_crc32c_sw(uint32_t crc, const void *data, size_t size);

/* The SSE4.2 implementation. Same contract as mg_crc32c, but may only be called when
 * mg_crc32c_hw_available() is true (asserted: calling it otherwise is a programmer error).
 * Exposed for tests and benchmarks. */
uint32_t mg_crc32c_hw(uint32_t crc, const void *data, size_t size);

/* True when this build and this CPU can run mg_crc32c_hw (x86-64 with SSE4.2). Any thread. */
bool mg_crc32c_hw_available(void);

#endif
