/*
 * Log-linear histogram; see hist.h for the layout.
 *
 * Bucket index <-> value range, with p = precision_bits:
 *   index(v)  = (s << p) + (v >> s),   s = max(0, msb(v) - p)
 *   for index i < 2^(p+1): the single value i;
 *   otherwise s = (i >> p) - 1, q = i - (s << p) in [2^p, 2^(p+1)),
 *             lower = q << s, upper = ((q + 1) << s) - 1.
 * The upper bound of the very last possible bucket (value_max near 2^64) wraps to 2^64 - 1 in
 * unsigned arithmetic, which is the right answer.
 *
 * Invariants (single-writer histograms): count == sum of counts[]; min <= max when count > 0;
 * min == UINT64_MAX and max == 0 when count == 0.
 */
#include "common/hist.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline size_t hist_index(uint32_t p, uint64_t v)
{
    if (v < (UINT64_C(2) << p))
        return (size_t)v;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(v);
    uint32_t s = msb - p;
    return ((size_t)s << p) + (size_t)(v >> s);
}

static inline uint64_t hist_lower(uint32_t p, size_t i)
{
    if (i < ((size_t)2 << p))
        return (uint64_t)i;
    uint32_t s = (uint32_t)(i >> p) - 1u;
    uint64_t q = (uint64_t)i - ((uint64_t)s << p);
    return q << s;
}

static inline uint64_t hist_upper(uint32_t p, size_t i)
{
    if (i < ((size_t)2 << p))
        return (uint64_t)i;
    uint32_t s = (uint32_t)(i >> p) - 1u;
    uint64_t q = (uint64_t)i - ((uint64_t)s << p);
    return ((q + 1u) << s) - 1u;
}

int mg_hist_init(mg_hist *h, uint32_t precision_bits, uint64_t value_max)
{
    MG_ASSERT(h != NULL);
    memset(h, 0, sizeof(*h));
    if (precision_bits < 1 || precision_bits > MG_HIST_PRECISION_BITS_MAX || value_max < 1)
        return MG_EINVAL;
    size_t buckets = hist_index(precision_bits, value_max) + 1;
    uint64_t *counts = calloc(buckets, sizeof(uint64_t));
    if (counts == NULL)
        return MG_ENOMEM;
    h->counts = counts;
    h->bucket_count = buckets;
    h->value_max = value_max;
    h->precision_bits = precision_bits;
    h->min = UINT64_MAX;
    return MG_OK;
}

void mg_hist_destroy(mg_hist *h)
{
    if (h == NULL)
        return;
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

void mg_hist_record_n(mg_hist *h, uint64_t value, uint64_t count)
{
    MG_ASSERT(h->counts != NULL);
    if (count == 0)
        return;
    if (value > h->value_max) {
        value = h->value_max;
        h->overflow_count += count;
    }
    h->counts[hist_index(h->precision_bits, value)] += count;
    h->count += count;
    h->sum += value * count;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

void mg_hist_record(mg_hist *h, uint64_t value)
{
    mg_hist_record_n(h, value, 1);
}

void mg_hist_record_atomic(mg_hist *h, uint64_t value)
{
    MG_ASSERT(h->counts != NULL);
    if (value > h->value_max) {
        value = h->value_max;
        __atomic_fetch_add(&h->overflow_count, 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&h->counts[hist_index(h->precision_bits, value)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum, value, __ATOMIC_RELAXED);
    /* Each failed exchange means another writer moved min (max) towards value, so these loops
     * end after at most as many rounds as there are concurrent writers improving it. */
    uint64_t cur = __atomic_load_n(&h->min, __ATOMIC_RELAXED);
    while (value < cur && !__atomic_compare_exchange_n(&h->min, &cur, value, true, __ATOMIC_RELAXED,
                                                       __ATOMIC_RELAXED)) {
    }
    cur = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
    while (value > cur && !__atomic_compare_exchange_n(&h->max, &cur, value, true, __ATOMIC_RELAXED,
                                                       __ATOMIC_RELAXED)) {
    }
}

static int hist_same_layout(const mg_hist *a, const mg_hist *b)
{
    return a->counts != NULL && b->counts != NULL && a->precision_bits == b->precision_bits &&
           a->value_max == b->value_max && a->bucket_count == b->bucket_count;
}

int mg_hist_snapshot(const mg_hist *src, mg_hist *dst)
{
    if (!hist_same_layout(src, dst))
        return MG_EINVAL;
    uint64_t total = 0;
    for (size_t i = 0; i < src->bucket_count; i++) {
        uint64_t c = __atomic_load_n(&src->counts[i], __ATOMIC_RELAXED);
        dst->counts[i] = c;
        total += c;
    }
    dst->count = total;
    dst->sum = __atomic_load_n(&src->sum, __ATOMIC_RELAXED);
    dst->overflow_count = __atomic_load_n(&src->overflow_count, __ATOMIC_RELAXED);
    if (total == 0) {
        dst->min = UINT64_MAX;
        dst->max = 0;
        return MG_OK;
    }
    uint64_t mn = __atomic_load_n(&src->min, __ATOMIC_RELAXED);
    uint64_t mx = __atomic_load_n(&src->max, __ATOMIC_RELAXED);
    /* A bucket may already show a value whose min/max update is not visible yet (relaxed
     * order): fall back to the outermost non-empty buckets so that min <= max and every bucket
     * lies between them. */
    size_t first = 0, last = src->bucket_count - 1;
    while (dst->counts[first] == 0)
        first++;
    while (dst->counts[last] == 0)
        last--;
    if (mn > hist_upper(dst->precision_bits, first))
        mn = hist_lower(dst->precision_bits, first);
    if (mx < hist_lower(dst->precision_bits, last)) {
        mx = hist_upper(dst->precision_bits, last);
        if (mx > dst->value_max)
            mx = dst->value_max;
    }
    if (mn > mx)
        mn = mx;
    dst->min = mn;
    dst->max = mx;
    return MG_OK;
}

int mg_hist_merge(mg_hist *dst, const mg_hist *src)
{
    if (!hist_same_layout(dst, src))
        return MG_EINVAL;
    for (size_t i = 0; i < src->bucket_count; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->sum += src->sum;
    dst->overflow_count += src->overflow_count;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return MG_OK;
}

void mg_hist_reset(mg_hist *h)
{
    MG_ASSERT(h->counts != NULL);
    memset(h->counts, 0, h->bucket_count * sizeof(uint64_t));
    h->count = 0;
    h->sum = 0;
    h->overflow_count = 0;
    h->min = UINT64_MAX;
    h->max = 0;
}

uint64_t mg_hist_count(const mg_hist *h)
{
    return h->count;
}

uint64_t mg_hist_min(const mg_hist *h)
{
    return h->count == 0 ? 0 : h->min;
}

uint64_t mg_hist_max(const mg_hist *h)
{
    return h->count == 0 ? 0 : h->max;
}

uint64_t mg_hist_sum(const mg_hist *h)
{
    return h->sum;
}

uint64_t mg_hist_overflow_count(const mg_hist *h)
{
    return h->overflow_count;
}

double mg_hist_mean(const mg_hist *h)
{
    return h->count == 0 ? 0.0 : (double)h->sum / (double)h->count;
}

/* ceil(count * p / 100), computed exactly in integers from p rounded to 1e-7 percent, so that
 * binary fractions such as 99.9 do not push the rank one past an exact product. */
static uint64_t hist_rank(uint64_t count, double p)
{
    if (!(p > 0.0))
        p = 0.0;
    if (p > 100.0)
        p = 100.0;
    const uint64_t one = 1000000000u; /* p is turned into parts per 10^9 */
    uint64_t ppb = (uint64_t)llround(p * 1e7);
    uint64_t hi = count / one, lo = count % one;
    /* hi * ppb <= (2^64 / 10^9) * 10^9 and lo * ppb < 10^18: neither overflows. */
    uint64_t rank = hi * ppb + (lo * ppb + one - 1) / one;
    if (rank < 1)
        rank = 1;
    if (rank > count)
        rank = count;
    return rank;
}

uint64_t mg_hist_percentile(const mg_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = hist_rank(h->count, p);
    uint64_t seen = 0;
    uint64_t result = h->max;
    for (size_t i = 0; i < h->bucket_count; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            result = hist_upper(h->precision_bits, i);
            break;
        }
    }
    if (result > h->max)
        result = h->max;
    if (result < h->min)
        result = h->min;
    return result;
}

size_t mg_hist_bucket_count(const mg_hist *h)
{
    return h->bucket_count;
}

uint64_t mg_hist_bucket_lower(const mg_hist *h, size_t i)
{
    MG_ASSERT(i < h->bucket_count);
    return hist_lower(h->precision_bits, i);
}

uint64_t mg_hist_bucket_upper(const mg_hist *h, size_t i)
{
    MG_ASSERT(i < h->bucket_count);
    return hist_upper(h->precision_bits, i);
}

uint64_t mg_hist_bucket_value(const mg_hist *h, size_t i)
{
    MG_ASSERT(i < h->bucket_count);
    return h->counts[i];
}

size_t mg_hist_bucket_of(const mg_hist *h, uint64_t value)
{
    MG_ASSERT(h->counts != NULL);
    if (value > h->value_max)
        value = h->value_max;
    return hist_index(h->precision_bits, value);
}
