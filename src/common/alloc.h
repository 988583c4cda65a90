/*
 * The allocator every Magnetar module uses instead of calling malloc(3) directly.
 *
 * The functions behave like their libc counterparts with three differences:
 *
 *   1. NULL always means failure. A request for 0 bytes allocates 1 byte, so callers never have
 *      to tell "empty" from "out of memory".
 *   2. mg_calloc() checks n * size for overflow and fails instead of wrapping.
 *   3. Fault injection: a test can make every allocation fail after a chosen number of
 *      successful ones (mg_alloc_fail_after), to drive each error path that handles
 *      MG_ENOMEM. The ASan build then shows that such paths release what they had taken.
 *
 * FAULT INJECTION IS PROCESS-WIDE TEST MACHINERY. It is the one piece of mutable global state in
 * this module (like the log level): a single atomic budget shared by all threads. Production code
 * never arms it. The normal path costs one relaxed atomic load of the budget; only while
 * injection is armed does an allocation pay for a compare-and-swap.
 *
 * Budget states (budget = number of allocations still allowed to succeed):
 *
 *     disabled (budget < 0) --fail_after(n >= 0)--> armed (budget = n)
 *     armed, budget > 0     --allocation-------->   budget - 1 (allocation proceeds)
 *     armed, budget == 0    --allocation-------->   budget stays 0, returns NULL, failure counted
 *     any                   --fail_reset() or fail_after(n < 0)--> disabled
 *
 * Memory from any function here (mg_aligned_alloc included) is released with mg_free().
 */
#ifndef MG_COMMON_ALLOC_H
#define MG_COMMON_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Allocates size bytes (uninitialised), aligned for any object type (max_align_t).
 * Returns the memory, owned by the caller (release with mg_free), or NULL on failure or when
 * fault injection refuses. Any thread. */
void *mg_malloc(size_t size);

/* Allocates n * size zeroed bytes. Returns NULL when n * size overflows size_t (no allocation is
 * attempted and no injected failure is counted), on failure, or when fault injection refuses.
 * Ownership as mg_malloc. Any thread. */
void *mg_calloc(size_t n, size_t size);

/* Resizes the block ptr (which may be NULL, then this is mg_malloc) to size bytes, keeping the
 * contents up to the smaller of the two sizes. On success returns the new block and ptr must no
 * longer be used; on failure (or an injected failure) returns NULL and ptr is untouched and
 * still owned by the caller. size 0 keeps a 1-byte block rather than freeing. Any thread. */
void *mg_realloc(void *ptr, size_t size);

/* Releases memory from any function in this header. NULL is a no-op. Any thread. */
void mg_free(void *ptr);

/* Allocates size bytes aligned to align (posix_memalign), e.g. a 4096-aligned block for O_DIRECT
 * I/O. align must be a power of two and a multiple of sizeof(void *) (asserted: a wrong alignment
 * is a programmer error). Returns NULL on failure or an injected failure. Release with mg_free.
 * Any thread. */
void *mg_aligned_alloc(size_t align, size_t size);

/* Test machinery (process-wide, see the header comment). Arms fault injection: the next n
 * allocations succeed, every later one returns NULL until mg_alloc_fail_reset(). n == 0 makes
 * the very next allocation fail. A negative n disables injection. Also sets the count returned
 * by mg_alloc_failures_injected() back to 0. Any thread; meant for the test's main thread. */
void mg_alloc_fail_after(int64_t n);

/* Test machinery: disables fault injection; allocations succeed again. The failure count is kept
 * so a test can read it afterwards. Any thread. */
void mg_alloc_fail_reset(void);

/* Test machinery: how many allocations were refused by fault injection since the last
 * mg_alloc_fail_after() (since start-up if it was never called). Any thread. */
uint64_t mg_alloc_failures_injected(void);

#endif
