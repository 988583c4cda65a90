/*
 * The allocator wrappers and their fault injection (see alloc.h for the budget states).
 *
 * Invariants:
 *   - mg__alloc_budget < 0 means injection is disabled; the fast path reads it once, relaxed.
 *   - While armed, the budget only decreases, by exactly one per allowed allocation, through a
 *     compare-and-swap, so across all threads exactly n allocations get through after
 *     mg_alloc_fail_after(n).
 *   - Relaxed ordering is enough: the budget orders nothing but itself. A thread that arms it
 *     and then allocates sees its own store.
 */
#include "common/alloc.h"

#include "common/assert.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

static _Atomic int64_t mg__alloc_budget = -1;
static _Atomic uint64_t mg__alloc_failures = 0;

/* Returns true when this allocation may proceed, false when fault injection refuses it. */
static bool mg__alloc_allowed(void)
{
    int64_t budget = atomic_load_explicit(&mg__alloc_budget, memory_order_relaxed);
    for (;;) {
        if (budget < 0)
            return true;
        if (budget == 0) {
            atomic_fetch_add_explicit(&mg__alloc_failures, 1, memory_order_relaxed);
            return false;
        }
        /* On failure the CAS reloads budget; a concurrent reset (budget < 0) ends the loop. */
        if (atomic_compare_exchange_weak_explicit(&mg__alloc_budget, &budget, budget - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return true;
    }
}

void *mg_malloc(size_t size)
{
    if (!mg__alloc_allowed())
        return NULL;
    return malloc(size == 0 ? 1 : size);
}

void *mg_calloc(size_t n, size_t size)
{
    size_t total_bytes;
    if (__builtin_mul_overflow(n, size, &total_bytes))
        return NULL;
    if (!mg__alloc_allowed())
        return NULL;
    if (total_bytes == 0)
        return calloc(1, 1);
    return calloc(n, size);
}

void *mg_realloc(void *ptr, size_t size)
{
    if (!mg__alloc_allowed())
        return NULL;
    return realloc(ptr, size == 0 ? 1 : size);
}

void mg_free(void *ptr)
{
    free(ptr);
}

void *mg_aligned_alloc(size_t align, size_t size)
{
    MG_ASSERT(align != 0 && (align & (align - 1)) == 0);
    MG_ASSERT(align % sizeof(void *) == 0);
    if (!mg__alloc_allowed())
        return NULL;
    void *ptr = NULL;
    if (posix_memalign(&ptr, align, size == 0 ? 1 : size) != 0)
        return NULL;
    return ptr;
}

void mg_alloc_fail_after(int64_t n)
{
    atomic_store_explicit(&mg__alloc_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&mg__alloc_budget, n < 0 ? -1 : n, memory_order_relaxed);
}

void mg_alloc_fail_reset(void)
{
    atomic_store_explicit(&mg__alloc_budget, -1, memory_order_relaxed);
}

uint64_t mg_alloc_failures_injected(void)
{
    return atomic_load_explicit(&mg__alloc_failures, memory_order_relaxed);
}
