/*
 * A log-linear histogram of non-negative integers (latencies in microseconds, sizes in bytes),
 * after the HdrHistogram idea: fixed memory, O(1) record, bounded relative error.
 *
 * Layout, for p = precision_bits and S = 2^p:
 *   - values below 2S are exact: value v has bucket v;
 *   - above that, each power of two [2^m, 2^(m+1)) (m > p) is split into S equal sub-buckets
 *     of width 2^(m-p), so a bucket's width is at most 1/S of any value in it (p = 5: < 3.2 %).
 *   With shift s = max(0, msb(v) - p), bucket(v) = (s << p) + (v >> s).
 *   The layout depends only on (precision_bits, value_max); histograms with the same pair can be
 *   merged.
 *
 * Values above value_max are clamped to value_max (and counted in overflow_count); count, sum,
 * min and max describe the clamped values, so they agree with the buckets.
 *
 * Threading: a histogram written by one thread uses mg_hist_record / mg_hist_record_n and is read
 * by that thread (or after a join/handoff). A histogram shared by several writers uses only
 * mg_hist_record_atomic (relaxed atomic adds on the same memory) and is read only through
 * mg_hist_snapshot, which copies it into a private histogram with relaxed atomic loads. The usual
 * pattern for hot paths is one plain histogram per thread, combined with mg_hist_merge.
 *
 * The struct is public so that it can be embedded; treat its fields as read-only and use the
 * functions below.
 */
#ifndef MG_COMMON_HIST_H
#define MG_COMMON_HIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct mg_hist {
    uint64_t *counts;        /* bucket_count counters, owned, allocated by mg_hist_init */
    size_t bucket_count;     /* bucket_of(value_max) + 1 */
    uint64_t value_max;      /* larger values are clamped to this */
    uint32_t precision_bits; /* p: 2^p linear sub-buckets per power of two */
    uint64_t count;          /* values recorded */
    uint64_t sum;            /* sum of recorded (clamped) values, modulo 2^64 */
    uint64_t min;            /* smallest recorded value; UINT64_MAX while empty */
    uint64_t max;            /* largest recorded value; 0 while empty */
    uint64_t overflow_count; /* values that were above value_max */
} mg_hist;

/* Initialises *h as an empty histogram with 2^precision_bits sub-buckets per power of two that
 * holds values 0..value_max. Allocates the bucket array (the only allocation: recording never
 * allocates). precision_bits must be in 1..MG_HIST_PRECISION_BITS_MAX and value_max >= 1.
 * Returns MG_OK, MG_EINVAL (bad parameters; *h is left zeroed) or MG_ENOMEM.
 * The caller owns *h and releases it with mg_hist_destroy. */
int mg_hist_init(mg_hist *h, uint32_t precision_bits, uint64_t value_max);

/* Frees the bucket array and zeroes *h. Safe on a zeroed or already destroyed histogram. No
 * other thread may use h at the same time. */
void mg_hist_destroy(mg_hist *h);

/* Records one value (clamped to value_max). Single writer: the caller must be the only thread
 * touching h. Never fails, never allocates. */
void mg_hist_record(mg_hist *h, uint64_t value);

/* Records `count` occurrences of value (clamped to value_max). count 0 does nothing. Single
 * writer, like mg_hist_record. */
void mg_hist_record_n(mg_hist *h, uint64_t value, uint64_t count);

/* Records one value with relaxed atomic operations, so that any number of threads may record
 * into the same histogram at once. Such a shared histogram must then be read only with
 * mg_hist_snapshot (and not written with the plain functions while others are recording). */
void mg_hist_record_atomic(mg_hist *h, uint64_t value);

/* Copies src into dst using relaxed atomic loads, so src may be receiving mg_hist_record_atomic
 * calls meanwhile. dst must have been initialised with the same precision_bits and value_max;
 * its previous contents are replaced. dst's count is the sum of the copied buckets, so its
 * percentiles are consistent even if writers were active (sum, min and max may include a few
 * values more or less than the buckets). Returns MG_OK or MG_EINVAL (different layout). */
int mg_hist_snapshot(const mg_hist *src, mg_hist *dst);

/* Adds every value of src into dst (this is how per-thread histograms are combined). Both must
 * have the same precision_bits and value_max, else MG_EINVAL and dst is unchanged. Single
 * writer on dst; src must not be written meanwhile. Returns MG_OK or MG_EINVAL. */
int mg_hist_merge(mg_hist *dst, const mg_hist *src);

/* Empties the histogram, keeping its layout and memory. Single writer. */
void mg_hist_reset(mg_hist *h);

/* Summary values. count, sum: as recorded; min, max: 0 for an empty histogram; mean: sum/count,
 * 0.0 when empty. Readers must not race with writers (use mg_hist_snapshot for shared ones). */
uint64_t mg_hist_count(const mg_hist *h);
uint64_t mg_hist_min(const mg_hist *h);
uint64_t mg_hist_max(const mg_hist *h);
uint64_t mg_hist_sum(const mg_hist *h);
uint64_t mg_hist_overflow_count(const mg_hist *h);
double mg_hist_mean(const mg_hist *h);

/* The p-th percentile, p in [0, 100] (values outside are clamped, NaN counts as 0; p is used to
 * 1e-7 resolution). Finds the bucket holding the ceil(p/100 * count)-th smallest value (at least
 * the first) and returns that bucket's upper bound (the highest value equivalent to it), limited
 * to [min, max]; so p = 100 returns max. Returns 0 for an empty histogram. */
uint64_t mg_hist_percentile(const mg_hist *h, double p);

/* Bucket iteration for exporters. Buckets are numbered 0..mg_hist_bucket_count()-1 in increasing
 * value order; bucket i holds the values mg_hist_bucket_lower(h, i)..mg_hist_bucket_upper(h, i)
 * (inclusive; the last bucket's bounds may extend past value_max). mg_hist_bucket_value returns
 * the number of values recorded in it. An index out of range is a programmer error (asserted).
 * mg_hist_bucket_of returns the bucket a value (clamped to value_max) is recorded in. */
size_t mg_hist_bucket_count(const mg_hist *h);
uint64_t mg_hist_bucket_lower(const mg_hist *h, size_t i);
uint64_t mg_hist_bucket_upper(const mg_hist *h, size_t i);
uint64_t mg_hist_bucket_value(const mg_hist *h, size_t i);
size_t mg_hist_bucket_of(const mg_hist *h, uint64_t value);

#endif
