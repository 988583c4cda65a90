/*
 * Tests for common/freelist.h: blocks come back zeroed whether new or reused, released blocks
 * are reused up to count_max and freed beyond it, clear frees what is kept (the ASan build
 * reports a leak otherwise), and an allocation failure is reported as NULL.
 */
#include "common/freelist.h"

#include "common/alloc.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

typedef struct block {
    void *first; /* overlaps the list's link while the block is released */
    uint64_t values[6];
} block;

static void freelist_fini(void)
{
    mg_alloc_fail_reset();
}

TestSuite(freelist, .timeout = 10, .fini = freelist_fini);

Test(freelist, blocks_are_zeroed_new_or_reused)
{
    mg_freelist fl;
    mg_freelist_init(&fl, sizeof(block), 4);
    block *b = mg_freelist_get(&fl);
    cr_assert_not_null(b);
    block zero = { 0 };
    cr_assert(memcmp(b, &zero, sizeof(zero)) == 0);
    memset(b, 0xab, sizeof(*b));
    mg_freelist_put(&fl, b);
    cr_assert_eq(fl.count, 1);
    block *again = mg_freelist_get(&fl);
    cr_assert_eq(again, b, "a released block is reused");
    cr_assert(memcmp(again, &zero, sizeof(zero)) == 0, "a reused block comes back zeroed");
    cr_assert_eq(fl.count, 0);
    mg_freelist_put(&fl, again);
    mg_freelist_clear(&fl);
    cr_assert_eq(fl.count, 0);
    cr_assert_null(fl.head);
}

Test(freelist, keeps_at_most_count_max)
{
    mg_freelist fl;
    mg_freelist_init(&fl, sizeof(block), 3);
    block *b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = mg_freelist_get(&fl);
        cr_assert_not_null(b[i]);
    }
    for (int i = 0; i < 8; i++)
        mg_freelist_put(&fl, b[i]); /* the last five go back to the allocator */
    cr_assert_eq(fl.count, 3);
    mg_freelist_put(&fl, NULL); /* a no-op */
    cr_assert_eq(fl.count, 3);
    /* The kept ones are handed out without the allocator, even when it refuses. */
    mg_alloc_fail_after(0);
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(mg_freelist_get(&fl), "kept block %d", i);
    cr_assert_null(mg_freelist_get(&fl), "an empty list asks the allocator, which refuses");
    cr_assert_eq(mg_alloc_failures_injected(), 1);
    mg_alloc_fail_reset();
    /* The three handed out are the first three released, in some order: give them back. */
    for (int i = 0; i < 3; i++)
        mg_freelist_put(&fl, b[i]);
    mg_freelist_clear(&fl);
}

Test(freelist, tiny_blocks_hold_the_link)
{
    mg_freelist fl;
    mg_freelist_init(&fl, 1, 2);
    cr_assert_geq(fl.block_bytes, sizeof(void *));
    void *p = mg_freelist_get(&fl);
    cr_assert_not_null(p);
    mg_freelist_put(&fl, p);
    cr_assert_eq(mg_freelist_get(&fl), p);
    mg_free(p);
    mg_freelist_clear(&fl);
}
