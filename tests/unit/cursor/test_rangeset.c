/*
 * Tests of the acknowledged-positions set (src/cursor/rangeset.h): exact answers for adds,
 * ranges, removal below a mark-delete, gaps, counts and in-order ranges, including container
 * borders and several ledgers; exact memory figures for each container representation; a
 * randomised comparison against a plain bit array; and 10 M scattered acks with the memory
 * bound of the header checked (<= 2 bytes per ack plus a per-container constant, <= 8 KiB per
 * window when scattered).
 */
#include "cursor/rangeset.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

TestSuite(rangeset, .timeout = 10);

#define POS(l, e) ((ml_position){ (l), (e) })

/* sizeof(struct mc_rangeset): four 8-byte fields (array, count, capacity, total). */
#define SET_BYTES 32u
#define SLOT      MC_RANGESET_CONTAINER_BYTES

static mc_rangeset *new_set(void)
{
    mc_rangeset *rs = NULL;
    cr_assert_eq(mc_rangeset_create(&rs), MG_OK);
    return rs;
}

static void expect_pos(ml_position got, int64_t l, int64_t e)
{
    cr_expect_eq(got.ledger_id, l, "ledger %lld != %lld", (long long)got.ledger_id, (long long)l);
    cr_expect_eq(got.entry_id, e, "entry %lld != %lld", (long long)got.entry_id, (long long)e);
}

Test(rangeset, empty)
{
    mc_rangeset *rs = new_set();
    cr_expect_eq(mc_rangeset_count(rs), 0);
    cr_expect_eq(mc_rangeset_range_count(rs), 0);
    cr_expect_not(mc_rangeset_contains(rs, POS(1, 5)));
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 5)), 1, 5);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(0, 0), POS(9, 99)), 0);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES);
    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(rs, &it);
    cr_expect_not(mc_rangeset_iter_next(&it, &f, &l));
    mc_rangeset_remove_below(rs, POS(5, 5));
    mc_rangeset_destroy(rs);
    mc_rangeset_destroy(NULL);
}

Test(rangeset, single_adds_merge_into_runs)
{
    mc_rangeset *rs = new_set();
    bool added = false;
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 5), &added), MG_OK);
    cr_expect(added);
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 7), &added), MG_OK);
    cr_expect_eq(mc_rangeset_range_count(rs), 2);
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 6), &added), MG_OK);
    cr_expect(added);
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 6), &added), MG_OK);
    cr_expect_not(added);
    cr_expect_eq(mc_rangeset_count(rs), 3);
    cr_expect_eq(mc_rangeset_range_count(rs), 1);
    cr_expect(mc_rangeset_contains(rs, POS(1, 5)));
    cr_expect(mc_rangeset_contains(rs, POS(1, 7)));
    cr_expect_not(mc_rangeset_contains(rs, POS(1, 4)));
    cr_expect_not(mc_rangeset_contains(rs, POS(1, 8)));
    cr_expect_not(mc_rangeset_contains(rs, POS(2, 6)));
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 0), POS(1, 6)), 2);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 6), POS(1, 6)), 1);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 7), POS(1, 6)), 0);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 5)), 1, 8);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 6)), 1, 8);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 4)), 1, 4);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 8)), 1, 8);

    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(rs, &it);
    cr_assert(mc_rangeset_iter_next(&it, &f, &l));
    expect_pos(f, 1, 5);
    expect_pos(l, 1, 7);
    cr_expect_not(mc_rangeset_iter_next(&it, &f, &l));
    mc_rangeset_destroy(rs);
}

Test(rangeset, invalid_arguments)
{
    mc_rangeset *rs = new_set();
    cr_expect_eq(mc_rangeset_add(rs, POS(-1, 0), NULL), MG_EINVAL);
    cr_expect_eq(mc_rangeset_add(rs, POS(1, -1), NULL), MG_EINVAL);
    cr_expect_eq(mc_rangeset_add_range(rs, POS(1, 0), POS(2, 0), NULL), MG_EINVAL);
    cr_expect_eq(mc_rangeset_add_range(rs, POS(1, 9), POS(1, 8), NULL), MG_EINVAL);
    cr_expect_eq(mc_rangeset_add_range(rs, POS(1, -1), POS(1, 8), NULL), MG_EINVAL);
    cr_expect_eq(mc_rangeset_count(rs), 0);
    cr_expect_not(mc_rangeset_contains(rs, POS(1, -1)));
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, -1)), 1, -1);
    mc_rangeset_destroy(rs);
}

/* Exact memory of each representation: header 32 + 4 slots of 40 + the container's data
 * rounded up to 32 bytes. */
Test(rangeset, representations_and_exact_memory)
{
    mc_rangeset *rs = new_set();
    /* 100 isolated values: ARRAY, 200 bytes -> 224. */
    for (int64_t e = 0; e < 200; e += 2)
        cr_assert_eq(mc_rangeset_add(rs, POS(1, e), NULL), MG_OK);
    cr_expect_eq(mc_rangeset_count(rs), 100);
    cr_expect_eq(mc_rangeset_range_count(rs), 100);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 224);

    /* Filling the gaps makes one run: RUN, 4 bytes -> 32. */
    int64_t added = 0;
    cr_assert_eq(mc_rangeset_add_range(rs, POS(1, 0), POS(1, 999), &added), MG_OK);
    cr_expect_eq(added, 900);
    cr_expect_eq(mc_rangeset_count(rs), 1000);
    cr_expect_eq(mc_rangeset_range_count(rs), 1);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 32);

    /* 5000 isolated values above it: array 10 000, runs 20 004, bitmap 8192 -> BITMAP. */
    for (int64_t e = 2000; e < 12000; e += 2)
        cr_assert_eq(mc_rangeset_add(rs, POS(1, e), NULL), MG_OK);
    cr_expect_eq(mc_rangeset_count(rs), 6000);
    cr_expect_eq(mc_rangeset_range_count(rs), 5001);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 8192);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 500), POS(1, 2100)), 500 + 51);

    /* The mark-delete passes most of them: 1000 isolated left -> ARRAY 2000 -> 2016. */
    mc_rangeset_remove_below(rs, POS(1, 10000));
    cr_expect_eq(mc_rangeset_count(rs), 1000);
    cr_expect_eq(mc_rangeset_range_count(rs), 1000);
    cr_expect_not(mc_rangeset_contains(rs, POS(1, 9998)));
    cr_expect(mc_rangeset_contains(rs, POS(1, 10000)));
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 2016);

    /* 3000 runs of 2: array 12 000, runs 12 000, bitmap 8192 -> BITMAP again; then a range
     * joins them all -> RUN. */
    for (int64_t e = 20000; e < 32000; e += 4) {
        cr_assert_eq(mc_rangeset_add(rs, POS(1, e), NULL), MG_OK);
        cr_assert_eq(mc_rangeset_add(rs, POS(1, e + 1), NULL), MG_OK);
    }
    cr_expect_eq(mc_rangeset_count(rs), 7000);
    cr_expect_eq(mc_rangeset_range_count(rs), 4000);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 8192);
    cr_assert_eq(mc_rangeset_add_range(rs, POS(1, 10000), POS(1, 40000), &added), MG_OK);
    cr_expect_eq(added, 30001 - 7000);
    cr_expect_eq(mc_rangeset_range_count(rs), 1);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 4 * SLOT + 32);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 10000)), 1, 40001);
    mc_rangeset_destroy(rs);
}

Test(rangeset, container_borders)
{
    mc_rangeset *rs = new_set();
    cr_assert_eq(mc_rangeset_add_range(rs, POS(1, 65530), POS(1, 65545), NULL), MG_OK);
    cr_expect_eq(mc_rangeset_container_count(rs), 2);
    cr_expect_eq(mc_rangeset_count(rs), 16);
    cr_expect_eq(mc_rangeset_range_count(rs), 1);
    cr_expect(mc_rangeset_contains(rs, POS(1, 65535)));
    cr_expect(mc_rangeset_contains(rs, POS(1, 65536)));
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 65530)), 1, 65546);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 65535), POS(1, 65537)), 3);

    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(rs, &it);
    cr_assert(mc_rangeset_iter_next(&it, &f, &l));
    expect_pos(f, 1, 65530);
    expect_pos(l, 1, 65545);
    cr_expect_not(mc_rangeset_iter_next(&it, &f, &l));

    /* Single adds across the border merge too. */
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 131071), NULL), MG_OK);
    cr_assert_eq(mc_rangeset_add(rs, POS(1, 131072), NULL), MG_OK);
    cr_expect_eq(mc_rangeset_range_count(rs), 2);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 131071)), 1, 131073);

    /* A run filling a window to its end, with no next container: the gap is the next window. */
    cr_assert_eq(mc_rangeset_add_range(rs, POS(4, 0), POS(4, 131071), NULL), MG_OK);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(4, 7)), 4, 131072);
    cr_assert_eq(mc_rangeset_add_range(rs, POS(3, 0), POS(3, 200000), NULL), MG_OK);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(3, 0)), 3, 200001);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(3, 196613)), 3, 200001);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(3, 100), POS(3, 199999)), 199900);

    /* Removing below a border leaves the upper container only. */
    mc_rangeset_remove_below(rs, POS(1, 65536));
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 0), POS(1, INT64_MAX)), 12);
    cr_expect_not(mc_rangeset_contains(rs, POS(1, 65535)));
    mc_rangeset_destroy(rs);
}

Test(rangeset, several_ledgers)
{
    mc_rangeset *rs = new_set();
    cr_assert_eq(mc_rangeset_add_range(rs, POS(1, 0), POS(1, 9), NULL), MG_OK);
    cr_assert_eq(mc_rangeset_add_range(rs, POS(2, 0), POS(2, 4), NULL), MG_OK);
    cr_assert_eq(mc_rangeset_add(rs, POS(5, 70000), NULL), MG_OK);
    cr_expect_eq(mc_rangeset_count(rs), 16);
    cr_expect_eq(mc_rangeset_range_count(rs), 3); /* never merged across ledgers */
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 5), POS(2, 2)), 5 + 3);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, 5), POS(2, -1)), 5);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(1, -1), POS(5, 70000)), 16);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(2, 3), POS(5, 69999)), 2);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(1, 3)), 1, 10);

    ml_position want[3][2] = { { POS(1, 0), POS(1, 9) },
                               { POS(2, 0), POS(2, 4) },
                               { POS(5, 70000), POS(5, 70000) } };
    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(rs, &it);
    for (int i = 0; i < 3; i++) {
        cr_assert(mc_rangeset_iter_next(&it, &f, &l));
        expect_pos(f, want[i][0].ledger_id, want[i][0].entry_id);
        expect_pos(l, want[i][1].ledger_id, want[i][1].entry_id);
    }
    cr_expect_not(mc_rangeset_iter_next(&it, &f, &l));

    mc_rangeset_remove_below(rs, POS(2, -1)); /* drops ledger 1 only */
    cr_expect_eq(mc_rangeset_count(rs), 6);
    mc_rangeset_remove_below(rs, POS(2, 3));
    cr_expect_eq(mc_rangeset_count(rs), 3);
    cr_expect_not(mc_rangeset_contains(rs, POS(2, 2)));
    cr_expect(mc_rangeset_contains(rs, POS(2, 3)));
    mc_rangeset_remove_below(rs, POS(6, 0));
    cr_expect_eq(mc_rangeset_count(rs), 0);
    cr_expect_eq(mc_rangeset_container_count(rs), 0);
    cr_assert_eq(mc_rangeset_add(rs, POS(9, 1), NULL), MG_OK);
    mc_rangeset_clear(rs);
    cr_expect_eq(mc_rangeset_count(rs), 0);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES);
    mc_rangeset_destroy(rs);
}

/* --- randomised comparison with a plain bit array ---------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

#define REF_SPAN 300000 /* entries per ledger: a little over 4.5 windows */

static void check_against(const mc_rangeset *rs, const bool *ref, int64_t base)
{
    /* count and ranges */
    int64_t n = 0;
    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(rs, &it);
    int64_t e = base;
    while (e < REF_SPAN) {
        while (e < REF_SPAN && !ref[e])
            e++;
        if (e == REF_SPAN)
            break;
        int64_t s = e;
        while (e < REF_SPAN && ref[e])
            e++;
        n += e - s;
        cr_assert(mc_rangeset_iter_next(&it, &f, &l), "missing range %lld..%lld", (long long)s,
                  (long long)(e - 1));
        cr_assert_eq(f.entry_id, s, "range start %lld != %lld", (long long)f.entry_id,
                     (long long)s);
        cr_assert_eq(l.entry_id, e - 1, "range end %lld != %lld", (long long)l.entry_id,
                     (long long)(e - 1));
    }
    cr_assert_not(mc_rangeset_iter_next(&it, &f, &l));
    cr_assert_eq(mc_rangeset_count(rs), n);
    /* probes; prefix[k] = values below k */
    int64_t *prefix = malloc((REF_SPAN + 1) * sizeof(*prefix));
    cr_assert_not_null(prefix);
    prefix[0] = 0;
    for (int64_t k = 0; k < REF_SPAN; k++)
        prefix[k + 1] = prefix[k] + (k >= base && ref[k]);
    /* gap[k] = first index >= k not set (REF_SPAN if none) */
    int64_t *gap = malloc((REF_SPAN + 1) * sizeof(*gap));
    cr_assert_not_null(gap);
    gap[REF_SPAN] = REF_SPAN;
    for (int64_t k = REF_SPAN - 1; k >= 0; k--)
        gap[k] = (k >= base && ref[k]) ? gap[k + 1] : k;
    for (int i = 0; i < 2000; i++) {
        int64_t a = (int64_t)(rng() % REF_SPAN), b = (int64_t)(rng() % REF_SPAN);
        if (a > b) {
            int64_t t = a;
            a = b;
            b = t;
        }
        cr_assert_eq(mc_rangeset_contains(rs, POS(7, a)), a >= base && ref[a]);
        int64_t want = prefix[b + 1] - prefix[a];
        cr_assert_eq(mc_rangeset_count_between(rs, POS(7, a), POS(7, b)), want, "count %lld..%lld",
                     (long long)a, (long long)b);
        int64_t g = gap[a];
        if (g < REF_SPAN)
            cr_assert_eq(mc_rangeset_first_gap_from(rs, POS(7, a)).entry_id, g, "gap from %lld",
                         (long long)a);
    }
    free(prefix);
    free(gap);
}

Test(rangeset, random_against_bit_array)
{
    rng_state = 0x9E3779B97F4A7C15ull;
    bool *ref = calloc(REF_SPAN, sizeof(*ref));
    cr_assert_not_null(ref);
    mc_rangeset *rs = new_set();
    int64_t base = 0; /* everything below it was removed */
    for (int round = 0; round < 12; round++) {
        for (int i = 0; i < 20000; i++) {
            uint64_t r = rng();
            int64_t e = base + (int64_t)(r % (uint64_t)(REF_SPAN - base));
            if ((r >> 40) % 50 == 0) {
                int64_t len = (int64_t)((r >> 20) % 3000);
                if (e + len >= REF_SPAN)
                    len = REF_SPAN - 1 - e;
                int64_t added = 0, want = 0;
                for (int64_t k = e; k <= e + len; k++)
                    want += !ref[k], ref[k] = true;
                cr_assert_eq(mc_rangeset_add_range(rs, POS(7, e), POS(7, e + len), &added), MG_OK);
                cr_assert_eq(added, want);
            } else {
                bool added = false;
                cr_assert_eq(mc_rangeset_add(rs, POS(7, e), &added), MG_OK);
                cr_assert_eq(added, !ref[e]);
                ref[e] = true;
            }
        }
        check_against(rs, ref, base);
        if (round % 3 == 2) {
            int64_t nb = base + (int64_t)(rng() % 40000);
            for (int64_t k = base; k < nb; k++)
                ref[k] = false;
            base = nb;
            mc_rangeset_remove_below(rs, POS(7, base));
            check_against(rs, ref, base);
        }
    }
    /* Every container obeys the bound: at most 2 bytes per value plus 32 of rounding and the
     * slot (twice, for the doubling slot array). */
    size_t bound = SET_BYTES + mc_rangeset_container_count(rs) * (32 + 2 * SLOT) +
                   2 * (size_t)mc_rangeset_count(rs);
    cr_expect_leq(mc_rangeset_memory_bytes(rs), bound);
    mc_rangeset_destroy(rs);
    free(ref);
}

/* --- 10 M scattered acks: the memory bound ----------------------------------------------- */

#define TEN_M 10000000

Test(rangeset, ten_million_every_other_entry)
{
    mc_rangeset *rs = new_set();
    int64_t failures = 0; /* one assertion after the loop keeps 10 M adds fast */
    for (int64_t i = 0; i < TEN_M; i++)
        failures += mc_rangeset_add(rs, POS(3, 2 * i), NULL) != MG_OK;
    cr_assert_eq(failures, 0);
    cr_expect_eq(mc_rangeset_count(rs), TEN_M);
    cr_expect_eq(mc_rangeset_range_count(rs), TEN_M);
    /* 20 M entries = 306 windows, each a full bitmap; 512 slots after doubling. */
    cr_expect_eq(mc_rangeset_container_count(rs), 306);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 512 * SLOT + 306 * 8192);
    cr_expect_eq(mc_rangeset_count_between(rs, POS(3, 1), POS(3, 1000000)), 500000);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(3, 1000000)), 3, 1000001);
    /* The mark-delete catches up halfway. */
    mc_rangeset_remove_below(rs, POS(3, TEN_M));
    cr_expect_eq(mc_rangeset_count(rs), TEN_M / 2);
    mc_rangeset_destroy(rs);
}

Test(rangeset, ten_million_random_half_density)
{
    rng_state = 42;
    mc_rangeset *rs = new_set();
    int64_t failures = 0; /* one assertion after the loop keeps 10 M adds fast */
    int64_t n = 0, e = 0;
    while (n < TEN_M) {
        if (rng() & 1) {
            failures += mc_rangeset_add(rs, POS(3, e), NULL) != MG_OK;
            n++;
        }
        e++;
    }
    cr_assert_eq(failures, 0);
    cr_expect_eq(mc_rangeset_count(rs), TEN_M);
    size_t windows = (size_t)((e + 65535) / 65536);
    cr_expect_eq(mc_rangeset_container_count(rs), windows);
    /* Scattered: a bitmap per window, well under 2 bytes per ack. */
    cr_expect_leq(mc_rangeset_memory_bytes(rs), SET_BYTES + windows * (8192 + 2 * SLOT));
    cr_expect_leq(mc_rangeset_memory_bytes(rs), (size_t)TEN_M * 26 / 100); /* 0.26 B/ack */
    mc_rangeset_destroy(rs);
}

Test(rangeset, ten_million_sparse)
{
    rng_state = 7;
    mc_rangeset *rs = new_set();
    int64_t failures = 0; /* one assertion after the loop keeps 10 M adds fast */
    /* Sparse: one ack in 64 entries on average -> arrays, 2 bytes per ack. */
    int64_t n = 0, e = 0;
    while (n < TEN_M) {
        e += 1 + (int64_t)(rng() % 127);
        failures += mc_rangeset_add(rs, POS(4, e), NULL) != MG_OK;
        n++;
    }
    cr_assert_eq(failures, 0);
    size_t c = mc_rangeset_container_count(rs);
    cr_expect_leq(mc_rangeset_memory_bytes(rs), SET_BYTES + c * (32 + 2 * SLOT) + 2 * (size_t)n);
    cr_expect_geq(mc_rangeset_memory_bytes(rs), 2 * (size_t)n); /* it is arrays indeed */
    mc_rangeset_destroy(rs);
}

Test(rangeset, ten_million_contiguous)
{
    mc_rangeset *rs = new_set();
    int64_t failures = 0; /* one assertion after the loop keeps 10 M adds fast */
    /* Contiguous single acks: one run per window, a few bytes in all. */
    for (int64_t i = 0; i < TEN_M; i++)
        failures += mc_rangeset_add(rs, POS(5, i), NULL) != MG_OK;
    cr_assert_eq(failures, 0);
    cr_expect_eq(mc_rangeset_range_count(rs), 1);
    cr_expect_eq(mc_rangeset_container_count(rs), 153);
    cr_expect_eq(mc_rangeset_memory_bytes(rs), SET_BYTES + 256 * SLOT + 153 * 32);
    expect_pos(mc_rangeset_first_gap_from(rs, POS(5, 0)), 5, TEN_M);
    mc_rangeset_destroy(rs);
}
