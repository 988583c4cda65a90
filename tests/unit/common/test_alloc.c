/*
 * Tests for common/alloc.h: the wrappers' contracts (NULL only on failure, calloc overflow,
 * alignment, realloc keeping the old block on failure) and fault injection (exact budgets,
 * failure counts, reset, and the budget shared exactly across threads).
 */
#include "common/alloc.h"

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

static void alloc_fini(void)
{
    mg_alloc_fail_reset();
}

TestSuite(alloc, .timeout = 10, .fini = alloc_fini);

Test(alloc, zero_sizes_return_distinct_non_null)
{
    void *a = mg_malloc(0);
    void *b = mg_calloc(0, 8);
    void *c = mg_realloc(NULL, 0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_not_null(c);
    cr_assert_neq(a, b);
    mg_free(a);
    mg_free(b);
    mg_free(c);
    mg_free(NULL);
}

Test(alloc, calloc_zeroes_and_checks_overflow)
{
    uint8_t *p = mg_calloc(100, 3);
    cr_assert_not_null(p);
    for (size_t i = 0; i < 300; i++)
        cr_assert_eq(p[i], 0, "byte %zu", i);
    mg_free(p);

    cr_assert_null(mg_calloc(SIZE_MAX / 2 + 1, 2));
    cr_assert_null(mg_calloc(2, SIZE_MAX / 2 + 1));
    cr_assert_null(mg_calloc(SIZE_MAX, SIZE_MAX));
    /* An overflow is not an injected failure. */
    cr_assert_eq(mg_alloc_failures_injected(), 0);
}

Test(alloc, realloc_grows_and_keeps_contents)
{
    uint8_t *p = mg_malloc(4);
    cr_assert_not_null(p);
    memcpy(p, "abcd", 4);
    uint8_t *q = mg_realloc(p, 4096);
    cr_assert_not_null(q);
    cr_assert_eq(memcmp(q, "abcd", 4), 0);
    mg_free(q);
}

Test(alloc, aligned_alloc_alignment)
{
    size_t aligns[] = { sizeof(void *), 64, 512, 4096 };
    for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
        void *p = mg_aligned_alloc(aligns[i], 3 * aligns[i]);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % aligns[i], 0, "align %zu", aligns[i]);
        memset(p, 0xab, 3 * aligns[i]);
        mg_free(p);
    }
}

Test(alloc, aligned_alloc_rejects_non_power_of_two, .signal = SIGABRT)
{
    (void)mg_aligned_alloc(48, 64);
}

Test(alloc, fail_after_exact_budget)
{
    mg_alloc_fail_after(3);
    void *a = mg_malloc(8);
    void *b = mg_calloc(2, 8);
    void *c = mg_aligned_alloc(64, 64);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_not_null(c);
    cr_assert_eq(mg_alloc_failures_injected(), 0);

    cr_assert_null(mg_malloc(8));
    cr_assert_null(mg_calloc(1, 1));
    cr_assert_null(mg_aligned_alloc(64, 64));
    cr_assert_null(mg_realloc(NULL, 8));
    cr_assert_eq(mg_alloc_failures_injected(), 4);

    mg_alloc_fail_reset();
    void *d = mg_malloc(8);
    cr_assert_not_null(d);
    cr_assert_eq(mg_alloc_failures_injected(), 4, "reset keeps the count");

    mg_free(a);
    mg_free(b);
    mg_free(c);
    mg_free(d);
}

Test(alloc, fail_after_zero_fails_next)
{
    mg_alloc_fail_after(0);
    cr_assert_null(mg_malloc(1));
    cr_assert_eq(mg_alloc_failures_injected(), 1);
    /* Arming again restarts the count. */
    mg_alloc_fail_after(1);
    cr_assert_eq(mg_alloc_failures_injected(), 0);
    void *p = mg_malloc(1);
    cr_assert_not_null(p);
    cr_assert_null(mg_malloc(1));
    cr_assert_eq(mg_alloc_failures_injected(), 1);
    mg_free(p);
}

Test(alloc, negative_disables)
{
    mg_alloc_fail_after(0);
    mg_alloc_fail_after(-1);
    void *p = mg_malloc(16);
    cr_assert_not_null(p);
    cr_assert_eq(mg_alloc_failures_injected(), 0);
    mg_free(p);
}

Test(alloc, realloc_failure_keeps_block)
{
    uint8_t *p = mg_malloc(8);
    cr_assert_not_null(p);
    memcpy(p, "magnetar", 8);
    mg_alloc_fail_after(0);
    cr_assert_null(mg_realloc(p, 1024));
    mg_alloc_fail_reset();
    cr_assert_eq(memcmp(p, "magnetar", 8), 0);
    mg_free(p);
}

/* Several threads allocate against one budget: exactly `budget` allocations get through. */
#define ALLOC_THREADS    4
#define ALLOC_PER_THREAD 2000
#define ALLOC_BUDGET     3001

static _Atomic int alloc_successes;
static _Atomic int alloc_failures;

static void alloc_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < ALLOC_PER_THREAD; i++) {
        void *p = mg_malloc(16);
        if (p != NULL) {
            atomic_fetch_add(&alloc_successes, 1);
            mg_free(p);
        } else {
            atomic_fetch_add(&alloc_failures, 1);
        }
    }
}

Test(alloc, budget_is_exact_across_threads)
{
    uv_thread_t threads[ALLOC_THREADS];
    mg_alloc_fail_after(ALLOC_BUDGET);
    for (int i = 0; i < ALLOC_THREADS; i++)
        cr_assert_eq(uv_thread_create(&threads[i], alloc_worker, NULL), 0);
    for (int i = 0; i < ALLOC_THREADS; i++)
        cr_assert_eq(uv_thread_join(&threads[i]), 0);
    mg_alloc_fail_reset();
    cr_assert_eq(atomic_load(&alloc_successes), ALLOC_BUDGET);
    cr_assert_eq(atomic_load(&alloc_failures), ALLOC_THREADS * ALLOC_PER_THREAD - ALLOC_BUDGET);
    cr_assert_eq(mg_alloc_failures_injected(),
                 (uint64_t)(ALLOC_THREADS * ALLOC_PER_THREAD - ALLOC_BUDGET));
}
