/*
 * Tests for the log-linear histogram (common/hist.h). Expected percentiles are bucket bounds
 * worked out by hand from the layout (p = 5: exact below 64, then 32 sub-buckets per power of
 * two), so an answer one bucket off fails.
 */
#include "common/error.h"
#include "common/hist.h"
#include "common/limits.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>

TestSuite(hist, .timeout = 10);

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

Test(hist, init_rejects_bad_parameters)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 0, 1000), MG_EINVAL);
    cr_assert_eq(mg_hist_init(&h, MG_HIST_PRECISION_BITS_MAX + 1, 1000), MG_EINVAL);
    cr_assert_eq(mg_hist_init(&h, 5, 0), MG_EINVAL);
    cr_assert_null(h.counts);
    mg_hist_destroy(&h); /* zeroed: harmless */
    cr_assert_eq(mg_hist_init(&h, MG_HIST_PRECISION_BITS_MAX, 1000), MG_OK);
    mg_hist_destroy(&h);
    mg_hist_destroy(&h); /* twice: harmless */
}

Test(hist, layout_p5)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000), MG_OK);
    /* 1000: msb 9, shift 4, index (4 << 5) + (1000 >> 4) = 128 + 62 = 190. */
    cr_assert_eq(mg_hist_bucket_count(&h), 191);
    /* Values below 2^(p+1) = 64 each have their own bucket. */
    for (uint64_t v = 0; v < 64; v++) {
        cr_assert_eq(mg_hist_bucket_of(&h, v), v);
        cr_assert_eq(mg_hist_bucket_lower(&h, v), v);
        cr_assert_eq(mg_hist_bucket_upper(&h, v), v);
    }
    /* Then widths 2 for [64, 128), 4 for [128, 256), ... */
    cr_assert_eq(mg_hist_bucket_of(&h, 64), 64);
    cr_assert_eq(mg_hist_bucket_of(&h, 65), 64);
    cr_assert_eq(mg_hist_bucket_of(&h, 66), 65);
    cr_assert_eq(mg_hist_bucket_lower(&h, 64), 64);
    cr_assert_eq(mg_hist_bucket_upper(&h, 64), 65);
    cr_assert_eq(mg_hist_bucket_upper(&h, 95), 127);
    cr_assert_eq(mg_hist_bucket_lower(&h, 96), 128);
    cr_assert_eq(mg_hist_bucket_upper(&h, 96), 131);
    cr_assert_eq(mg_hist_bucket_of(&h, 500), 158); /* (3 << 5) + (500 >> 3) = 96 + 62 */
    cr_assert_eq(mg_hist_bucket_lower(&h, 158), 496);
    cr_assert_eq(mg_hist_bucket_upper(&h, 158), 503);
    cr_assert_eq(mg_hist_bucket_lower(&h, 190), 992);
    cr_assert_eq(mg_hist_bucket_upper(&h, 190), 1007); /* past value_max: layout bound */
    /* Values above value_max go to value_max's bucket. */
    cr_assert_eq(mg_hist_bucket_of(&h, 1u << 30), 190);
    mg_hist_destroy(&h);
}

Test(hist, buckets_contiguous_and_error_bounded)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, UINT64_MAX), MG_OK);
    /* (63 - 5) << 5 = 1856, plus (2^64 - 1) >> 58 = 63, plus one. */
    cr_assert_eq(mg_hist_bucket_count(&h), 1920);
    cr_assert_eq(mg_hist_bucket_lower(&h, 0), 0);
    for (size_t i = 0; i < mg_hist_bucket_count(&h); i++) {
        uint64_t lo = mg_hist_bucket_lower(&h, i), hi = mg_hist_bucket_upper(&h, i);
        cr_assert_leq(lo, hi);
        if (i > 0)
            cr_assert_eq(lo, mg_hist_bucket_upper(&h, i - 1) + 1, "bucket %zu", i);
        cr_assert_eq(mg_hist_bucket_of(&h, lo), i);
        cr_assert_eq(mg_hist_bucket_of(&h, hi), i);
        /* width <= lower / 32: relative error below 1/32 */
        if (lo >= 64)
            cr_assert_leq(hi - lo + 1, lo / 32, "bucket %zu [%" PRIu64 ", %" PRIu64 "]", i, lo, hi);
    }
    cr_assert_eq(mg_hist_bucket_upper(&h, 1919), UINT64_MAX);
    mg_hist_record(&h, UINT64_MAX);
    cr_assert_eq(mg_hist_bucket_value(&h, 1919), 1);
    cr_assert_eq(mg_hist_percentile(&h, 50), UINT64_MAX);
    cr_assert_eq(mg_hist_overflow_count(&h), 0);
    mg_hist_destroy(&h);
}

Test(hist, small_values_exact)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000000), MG_OK);
    for (uint64_t v = 0; v < 32; v++)
        mg_hist_record_n(&h, v, v + 1);
    for (uint64_t v = 0; v < 32; v++)
        cr_assert_eq(mg_hist_bucket_value(&h, v), v + 1);
    cr_assert_eq(mg_hist_bucket_value(&h, 32), 0);
    /* 528 values; value v occupies ranks v(v+1)/2 + 1 .. (v+1)(v+2)/2. */
    cr_assert_eq(mg_hist_count(&h), 528);
    cr_assert_eq(mg_hist_percentile(&h, 50), 22); /* rank 264: 253 < 264 <= 276 -> 22 */
    cr_assert_eq(mg_hist_percentile(&h, 0), 0);   /* rank 1: the single 0 */
    cr_assert_eq(mg_hist_percentile(&h, 100), 31);
    cr_assert_eq(mg_hist_min(&h), 0);
    cr_assert_eq(mg_hist_max(&h), 31);
    mg_hist_destroy(&h);
}

Test(hist, percentiles_of_1_to_1000)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000000), MG_OK);
    for (uint64_t v = 1; v <= 1000; v++)
        mg_hist_record(&h, v);
    cr_assert_eq(mg_hist_count(&h), 1000);
    cr_assert_eq(mg_hist_sum(&h), 500500);
    cr_assert_eq(mg_hist_min(&h), 1);
    cr_assert_eq(mg_hist_max(&h), 1000);
    cr_assert_float_eq(mg_hist_mean(&h), 500.5, 1e-9);
    /* rank 1 -> value 1, exact */
    cr_assert_eq(mg_hist_percentile(&h, 0), 1);
    /* rank 50 -> 50, exact (below 64) */
    cr_assert_eq(mg_hist_percentile(&h, 5), 50);
    /* rank 100 -> 100: width 2, bucket [100, 101] */
    cr_assert_eq(mg_hist_percentile(&h, 10), 101);
    /* rank 250 -> 250: width 4, bucket [248, 251] */
    cr_assert_eq(mg_hist_percentile(&h, 25), 251);
    /* rank 500 -> 500: width 8, bucket [496, 503] */
    cr_assert_eq(mg_hist_percentile(&h, 50), 503);
    /* rank 900 -> 900: width 16, bucket [896, 911] */
    cr_assert_eq(mg_hist_percentile(&h, 90), 911);
    /* rank 990 -> 990: bucket [976, 991] */
    cr_assert_eq(mg_hist_percentile(&h, 99), 991);
    /* rank 999 -> 999: bucket [992, 1007], clamped to max 1000 */
    cr_assert_eq(mg_hist_percentile(&h, 99.9), 1000);
    cr_assert_eq(mg_hist_percentile(&h, 100), 1000);
    /* Out of range p is clamped. */
    cr_assert_eq(mg_hist_percentile(&h, 150), 1000);
    cr_assert_eq(mg_hist_percentile(&h, -3), 1);
    mg_hist_destroy(&h);
}

Test(hist, percentile_rank_is_exact_ceiling)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000000), MG_OK);
    /* 999 tens and one 5000: p99.9 is rank ceil(999.0) = 999 -> 10, a rank of 1000 would give
     * 5000 (99.9 / 100 * 1000 is 999.0000000000001 in doubles). */
    mg_hist_record_n(&h, 10, 999);
    mg_hist_record(&h, 5000);
    cr_assert_eq(mg_hist_percentile(&h, 99.9), 10);
    cr_assert_eq(mg_hist_percentile(&h, 99.91), 5000); /* rank ceil(999.1) = 1000 */
    cr_assert_eq(mg_hist_percentile(&h, 100), 5000);
    mg_hist_reset(&h);
    mg_hist_record_n(&h, 7, 9999);
    mg_hist_record(&h, 100000);
    cr_assert_eq(mg_hist_percentile(&h, 99.99), 7);
    cr_assert_eq(mg_hist_percentile(&h, 99.999), 100000);
    /* 100000: msb 16, shift 11, bucket [98304, 100351]; clamped to max */
    cr_assert_eq(mg_hist_percentile(&h, 100), 100000);
    mg_hist_destroy(&h);
}

Test(hist, percentile_returns_bucket_upper_not_max)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000000), MG_OK);
    mg_hist_record(&h, 1000); /* bucket [992, 1007] */
    mg_hist_record(&h, 2000); /* msb 10, shift 5, 2000 >> 5 = 62: bucket [1984, 2015] */
    cr_assert_eq(mg_hist_percentile(&h, 50), 1007);
    cr_assert_eq(mg_hist_percentile(&h, 100), 2000);
    /* A single value: every percentile is that value (upper bound clamped to max = min). */
    mg_hist_reset(&h);
    mg_hist_record(&h, 1000);
    cr_assert_eq(mg_hist_percentile(&h, 0), 1000);
    cr_assert_eq(mg_hist_percentile(&h, 50), 1000);
    mg_hist_destroy(&h);
}

Test(hist, empty)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000), MG_OK);
    cr_assert_eq(mg_hist_count(&h), 0);
    cr_assert_eq(mg_hist_min(&h), 0);
    cr_assert_eq(mg_hist_max(&h), 0);
    cr_assert_eq(mg_hist_sum(&h), 0);
    cr_assert_float_eq(mg_hist_mean(&h), 0.0, 1e-12);
    cr_assert_eq(mg_hist_percentile(&h, 0), 0);
    cr_assert_eq(mg_hist_percentile(&h, 50), 0);
    cr_assert_eq(mg_hist_percentile(&h, 100), 0);
    for (size_t i = 0; i < mg_hist_bucket_count(&h); i++)
        cr_assert_eq(mg_hist_bucket_value(&h, i), 0);
    mg_hist_destroy(&h);
}

Test(hist, clamps_to_value_max)
{
    mg_hist h;
    cr_assert_eq(mg_hist_init(&h, 5, 1000), MG_OK);
    mg_hist_record(&h, 5000);
    mg_hist_record(&h, 1000); /* equal to value_max: not an overflow */
    mg_hist_record_n(&h, UINT64_MAX, 3);
    cr_assert_eq(mg_hist_count(&h), 5);
    cr_assert_eq(mg_hist_overflow_count(&h), 4);
    cr_assert_eq(mg_hist_max(&h), 1000);
    cr_assert_eq(mg_hist_min(&h), 1000);
    cr_assert_eq(mg_hist_sum(&h), 5000);
    cr_assert_eq(mg_hist_bucket_value(&h, 190), 5);
    cr_assert_eq(mg_hist_percentile(&h, 100), 1000);
    cr_assert_eq(mg_hist_percentile(&h, 1), 1000);
    mg_hist_reset(&h);
    cr_assert_eq(mg_hist_count(&h), 0);
    cr_assert_eq(mg_hist_overflow_count(&h), 0);
    cr_assert_eq(mg_hist_bucket_value(&h, 190), 0);
    mg_hist_destroy(&h);
}

Test(hist, record_n_equals_repeated_record)
{
    mg_hist a, b;
    cr_assert_eq(mg_hist_init(&a, 4, 100000), MG_OK);
    cr_assert_eq(mg_hist_init(&b, 4, 100000), MG_OK);
    mg_hist_record_n(&a, 777, 5);
    mg_hist_record_n(&a, 3, 0);
    for (int i = 0; i < 5; i++)
        mg_hist_record(&b, 777);
    cr_assert_eq(mg_hist_count(&a), mg_hist_count(&b));
    cr_assert_eq(mg_hist_sum(&a), 3885);
    cr_assert_eq(mg_hist_sum(&b), 3885);
    cr_assert_eq(mg_hist_min(&a), 777); /* the count-0 record did not touch min */
    for (size_t i = 0; i < mg_hist_bucket_count(&a); i++)
        cr_assert_eq(mg_hist_bucket_value(&a, i), mg_hist_bucket_value(&b, i));
    mg_hist_destroy(&a);
    mg_hist_destroy(&b);
}

static void assert_hist_equal(const mg_hist *a, const mg_hist *b)
{
    cr_assert_eq(mg_hist_bucket_count(a), mg_hist_bucket_count(b));
    for (size_t i = 0; i < mg_hist_bucket_count(a); i++)
        cr_assert_eq(mg_hist_bucket_value(a, i), mg_hist_bucket_value(b, i), "bucket %zu", i);
    cr_assert_eq(mg_hist_count(a), mg_hist_count(b));
    cr_assert_eq(mg_hist_sum(a), mg_hist_sum(b));
    cr_assert_eq(mg_hist_min(a), mg_hist_min(b));
    cr_assert_eq(mg_hist_max(a), mg_hist_max(b));
    cr_assert_eq(mg_hist_overflow_count(a), mg_hist_overflow_count(b));
    for (double p = 0; p <= 100; p += 0.5)
        cr_assert_eq(mg_hist_percentile(a, p), mg_hist_percentile(b, p));
}

Test(hist, merge_equals_recording_into_one)
{
    mg_hist a, b, all;
    cr_assert_eq(mg_hist_init(&a, 5, 1u << 24), MG_OK);
    cr_assert_eq(mg_hist_init(&b, 5, 1u << 24), MG_OK);
    cr_assert_eq(mg_hist_init(&all, 5, 1u << 24), MG_OK);
    for (int i = 0; i < 20000; i++) {
        uint64_t v = rng_next() >> (rng_next() % 64); /* spread over all magnitudes */
        mg_hist_record((i % 3 == 0) ? &a : &b, v);
        mg_hist_record(&all, v);
    }
    cr_assert_gt(mg_hist_overflow_count(&all), 0);
    cr_assert_eq(mg_hist_merge(&a, &b), MG_OK);
    assert_hist_equal(&a, &all);
    /* Merging an empty histogram changes nothing, including min/max. */
    mg_hist_reset(&b);
    cr_assert_eq(mg_hist_merge(&a, &b), MG_OK);
    assert_hist_equal(&a, &all);
    /* Merging into an empty one copies. */
    cr_assert_eq(mg_hist_merge(&b, &all), MG_OK);
    assert_hist_equal(&b, &all);
    mg_hist_destroy(&a);
    mg_hist_destroy(&b);
    mg_hist_destroy(&all);
}

Test(hist, mismatched_layout_is_einval)
{
    mg_hist a, b, c, z = { 0 };
    cr_assert_eq(mg_hist_init(&a, 5, 1000), MG_OK);
    cr_assert_eq(mg_hist_init(&b, 6, 1000), MG_OK);
    cr_assert_eq(mg_hist_init(&c, 5, 1001), MG_OK);
    mg_hist_record(&b, 10);
    mg_hist_record(&c, 10);
    cr_assert_eq(mg_hist_merge(&a, &b), MG_EINVAL);
    cr_assert_eq(mg_hist_merge(&a, &c), MG_EINVAL);
    cr_assert_eq(mg_hist_merge(&a, &z), MG_EINVAL);
    cr_assert_eq(mg_hist_snapshot(&b, &a), MG_EINVAL);
    cr_assert_eq(mg_hist_count(&a), 0); /* untouched */
    mg_hist_destroy(&a);
    mg_hist_destroy(&b);
    mg_hist_destroy(&c);
}

#define THREADS    4
#define PER_THREAD 50000

static mg_hist shared;

static void *record_worker(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    for (uint64_t i = 0; i < PER_THREAD; i++)
        mg_hist_record_atomic(&shared, base + (i % 5000));
    return NULL;
}

Test(hist, record_atomic_from_threads)
{
    cr_assert_eq(mg_hist_init(&shared, 5, 1u << 20), MG_OK);
    pthread_t t[THREADS];
    for (uintptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, record_worker, (void *)(i * 10)), 0);

    /* A snapshot taken while writers run is self-consistent. */
    mg_hist snap;
    cr_assert_eq(mg_hist_init(&snap, 5, 1u << 20), MG_OK);
    cr_assert_eq(mg_hist_snapshot(&shared, &snap), MG_OK);
    uint64_t total = 0;
    for (size_t i = 0; i < mg_hist_bucket_count(&snap); i++)
        total += mg_hist_bucket_value(&snap, i);
    cr_assert_eq(total, mg_hist_count(&snap));
    if (total > 0) {
        cr_assert_leq(mg_hist_min(&snap), mg_hist_percentile(&snap, 0));
        cr_assert_leq(mg_hist_percentile(&snap, 100), mg_hist_max(&snap));
    }

    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(t[i], NULL), 0);

    mg_hist expect;
    cr_assert_eq(mg_hist_init(&expect, 5, 1u << 20), MG_OK);
    for (uint64_t th = 0; th < THREADS; th++)
        for (uint64_t i = 0; i < PER_THREAD; i++)
            mg_hist_record(&expect, th * 10 + (i % 5000));
    cr_assert_eq(mg_hist_snapshot(&shared, &snap), MG_OK);
    cr_assert_eq(mg_hist_count(&snap), (uint64_t)THREADS * PER_THREAD);
    cr_assert_eq(mg_hist_count(&shared), (uint64_t)THREADS * PER_THREAD);
    assert_hist_equal(&snap, &expect);
    cr_assert_eq(mg_hist_min(&snap), 0);
    cr_assert_eq(mg_hist_max(&snap), 30 + 4999);
    mg_hist_destroy(&expect);
    mg_hist_destroy(&snap);
    mg_hist_destroy(&shared);
}

Test(hist, record_atomic_clamps)
{
    mg_hist h, s;
    cr_assert_eq(mg_hist_init(&h, 5, 1000), MG_OK);
    cr_assert_eq(mg_hist_init(&s, 5, 1000), MG_OK);
    mg_hist_record_atomic(&h, 1u << 20);
    mg_hist_record_atomic(&h, 3);
    cr_assert_eq(mg_hist_snapshot(&h, &s), MG_OK);
    cr_assert_eq(mg_hist_count(&s), 2);
    cr_assert_eq(mg_hist_overflow_count(&s), 1);
    cr_assert_eq(mg_hist_max(&s), 1000);
    cr_assert_eq(mg_hist_min(&s), 3);
    cr_assert_eq(mg_hist_sum(&s), 1003);
    mg_hist_destroy(&h);
    mg_hist_destroy(&s);
}
