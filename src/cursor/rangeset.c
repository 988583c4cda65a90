/*
 * The acknowledged-positions set: per-ledger containers of 65536 entries, each an ARRAY, RUN or
 * BITMAP container, whichever is smallest (design, memory bound and invariants in rangeset.h).
 *
 * Every container operation works in the container's current representation, then
 * ctr_normalize() switches to the smallest one and trims the allocation to
 * round_up(size, MC__GRANULE). A switch costs O(8 KiB) at most, the same order as one insertion
 * into an array or run container (a memmove), so switching eagerly never changes the
 * complexity of an operation. Allocation failures while switching or trimming leave a valid,
 * merely larger, container.
 */
#include "cursor/rangeset.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "cursor/limits.h"

#include <string.h>

#define MC__WINDOW       65536u
#define MC__BITMAP_WORDS 1024u
#define MC__BITMAP_BYTES 8192u
#define MC__GRANULE      32u

enum { MC__ARRAY = 1, MC__RUN = 2, MC__BITMAP = 3 };

typedef struct mc__run {
    uint16_t first;
    uint16_t last;
} mc__run;

typedef struct mc__ctr {
    int64_t ledger_id;
    int64_t key; /* entry_id >> 16 */
    void *data;
    uint32_t card;  /* 1..65536 */
    uint32_t nruns; /* maximal runs within the container */
    uint32_t alloc_bytes;
    uint8_t kind;
} mc__ctr;

_Static_assert(sizeof(mc__ctr) == MC_RANGESET_CONTAINER_BYTES, "container slot size");

struct mc_rangeset {
    mc__ctr *c; /* sorted by (ledger_id, key) */
    size_t n;
    size_t cap;
    int64_t total;
};

/* --- small helpers ---------------------------------------------------------------------- */

static uint32_t round_granule(uint32_t bytes)
{
    return (bytes + MC__GRANULE - 1) & ~(MC__GRANULE - 1);
}

static uint32_t kind_bytes(int kind, uint32_t card, uint32_t nruns)
{
    switch (kind) {
    case MC__ARRAY:
        return 2u * card;
    case MC__RUN:
        return 4u * nruns;
    default:
        return MC__BITMAP_BYTES;
    }
}

static int best_kind(uint32_t card, uint32_t nruns)
{
    uint32_t a = 2u * card, r = 4u * nruns;
    if (a <= r && a <= MC__BITMAP_BYTES)
        return MC__ARRAY;
    if (r <= MC__BITMAP_BYTES)
        return MC__RUN;
    return MC__BITMAP;
}

static int64_t entry_key(int64_t entry_id)
{
    return entry_id / (int64_t)MC__WINDOW; /* entry_id >= 0 */
}

static uint32_t entry_low(int64_t entry_id)
{
    return (uint32_t)(entry_id % (int64_t)MC__WINDOW);
}

static int cmp_slot(int64_t la, int64_t ka, int64_t lb, int64_t kb)
{
    if (la != lb)
        return la < lb ? -1 : 1;
    if (ka != kb)
        return ka < kb ? -1 : 1;
    return 0;
}

/* --- bitmap primitives ------------------------------------------------------------------- */

static bool bm_test(const uint64_t *w, uint32_t v)
{
    return (w[v >> 6] >> (v & 63)) & 1u;
}

static void bm_set_range(uint64_t *w, uint32_t lo, uint32_t hi)
{
    uint32_t wl = lo >> 6, wh = hi >> 6;
    uint64_t ml = ~0ull << (lo & 63);
    uint64_t mh = ~0ull >> (63 - (hi & 63));
    if (wl == wh) {
        w[wl] |= ml & mh;
        return;
    }
    w[wl] |= ml;
    for (uint32_t i = wl + 1; i < wh; i++)
        w[i] = ~0ull;
    w[wh] |= mh;
}

/* First set bit >= from, or MC__WINDOW. */
static uint32_t bm_next_set(const uint64_t *w, uint32_t from)
{
    if (from >= MC__WINDOW)
        return MC__WINDOW;
    uint32_t i = from >> 6;
    uint64_t x = w[i] & (~0ull << (from & 63));
    for (;;) {
        if (x)
            return (i << 6) + (uint32_t)__builtin_ctzll(x);
        if (++i == MC__BITMAP_WORDS)
            return MC__WINDOW;
        x = w[i];
    }
}

/* First clear bit >= from, or MC__WINDOW. */
static uint32_t bm_next_clear(const uint64_t *w, uint32_t from)
{
    if (from >= MC__WINDOW)
        return MC__WINDOW;
    uint32_t i = from >> 6;
    uint64_t x = ~w[i] & (~0ull << (from & 63));
    for (;;) {
        if (x)
            return (i << 6) + (uint32_t)__builtin_ctzll(x);
        if (++i == MC__BITMAP_WORDS)
            return MC__WINDOW;
        x = ~w[i];
    }
}

static uint32_t bm_count_range(const uint64_t *w, uint32_t lo, uint32_t hi)
{
    uint32_t wl = lo >> 6, wh = hi >> 6;
    uint64_t ml = ~0ull << (lo & 63);
    uint64_t mh = ~0ull >> (63 - (hi & 63));
    if (wl == wh)
        return (uint32_t)__builtin_popcountll(w[wl] & ml & mh);
    uint32_t n = (uint32_t)__builtin_popcountll(w[wl] & ml);
    for (uint32_t i = wl + 1; i < wh; i++)
        n += (uint32_t)__builtin_popcountll(w[i]);
    return n + (uint32_t)__builtin_popcountll(w[wh] & mh);
}

static void bm_recount(const uint64_t *w, uint32_t *card, uint32_t *nruns)
{
    uint32_t c = 0, r = 0;
    uint64_t carry = 0; /* top bit of the previous word */
    for (uint32_t i = 0; i < MC__BITMAP_WORDS; i++) {
        uint64_t x = w[i];
        c += (uint32_t)__builtin_popcountll(x);
        r += (uint32_t)__builtin_popcountll(x & ~((x << 1) | carry));
        carry = x >> 63;
    }
    *card = c;
    *nruns = r;
}

/* --- array and run primitives ------------------------------------------------------------ */

/* First index whose value is >= v. */
static uint32_t arr_lower(const uint16_t *a, uint32_t n, uint32_t v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the last run whose first <= v, or -1. */
static int64_t run_find(const mc__run *r, uint32_t n, uint32_t v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[mid].first <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo - 1;
}

/* First run index whose last >= v (n if none). */
static uint32_t run_lower_last(const mc__run *r, uint32_t n, uint32_t v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r[mid].last < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t arr_count_runs(const uint16_t *a, uint32_t n)
{
    uint32_t r = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || a[i] != a[i - 1] + 1)
            r++;
    return r;
}

/* --- containers -------------------------------------------------------------------------- */

/* Sets the allocation to exactly round_granule(bytes). MG_ENOMEM leaves it as it was. */
static int ctr_realloc(mc__ctr *c, uint32_t bytes)
{
    uint32_t want = round_granule(bytes);
    if (want == 0)
        want = MC__GRANULE;
    if (want == c->alloc_bytes)
        return MG_OK;
    void *p = mg_realloc(c->data, want);
    if (!p)
        return MG_ENOMEM;
    c->data = p;
    c->alloc_bytes = want;
    return MG_OK;
}

/* The first run of the container with last >= from, clipped to start at from; false if none. */
static bool ctr_next_run(const mc__ctr *c, uint32_t from, uint32_t *first, uint32_t *last)
{
    if (from >= MC__WINDOW)
        return false;
    switch (c->kind) {
    case MC__ARRAY: {
        const uint16_t *a = c->data;
        uint32_t i = arr_lower(a, c->card, from);
        if (i == c->card)
            return false;
        *first = a[i];
        while (i + 1 < c->card && a[i + 1] == a[i] + 1)
            i++;
        *last = a[i];
        return true;
    }
    case MC__RUN: {
        const mc__run *r = c->data;
        uint32_t i = run_lower_last(r, c->nruns, from);
        if (i == c->nruns)
            return false;
        *first = r[i].first > from ? r[i].first : from;
        *last = r[i].last;
        return true;
    }
    default: {
        uint32_t f = bm_next_set(c->data, from);
        if (f == MC__WINDOW)
            return false;
        *first = f;
        *last = bm_next_clear(c->data, f) - 1;
        return true;
    }
    }
}

static bool ctr_contains(const mc__ctr *c, uint32_t v)
{
    switch (c->kind) {
    case MC__ARRAY: {
        const uint16_t *a = c->data;
        uint32_t i = arr_lower(a, c->card, v);
        return i < c->card && a[i] == v;
    }
    case MC__RUN: {
        const mc__run *r = c->data;
        int64_t i = run_find(r, c->nruns, v);
        return i >= 0 && v <= r[i].last;
    }
    default:
        return bm_test(c->data, v);
    }
}

/* Rebuilds the container in representation kind (card and nruns unchanged). */
static int ctr_convert(mc__ctr *c, int kind)
{
    uint32_t bytes = kind_bytes(kind, c->card, c->nruns);
    uint32_t alloc = round_granule(bytes);
    void *p = kind == MC__BITMAP ? mg_calloc(1, alloc) : mg_malloc(alloc);
    if (!p)
        return MG_ENOMEM;
    uint32_t from = 0, f, l, k = 0;
    while (ctr_next_run(c, from, &f, &l)) {
        if (kind == MC__ARRAY) {
            for (uint32_t v = f; v <= l; v++)
                ((uint16_t *)p)[k++] = (uint16_t)v;
        } else if (kind == MC__RUN) {
            ((mc__run *)p)[k++] = (mc__run){ (uint16_t)f, (uint16_t)l };
        } else {
            bm_set_range(p, f, l);
        }
        from = l + 1;
    }
    MG_ASSERT(kind == MC__BITMAP || k == (kind == MC__ARRAY ? c->card : c->nruns));
    mg_free(c->data);
    c->data = p;
    c->alloc_bytes = alloc;
    c->kind = (uint8_t)kind;
    return MG_OK;
}

/* Switches to the smallest representation and trims the allocation (invariant 3). */
static void ctr_normalize(mc__ctr *c)
{
    if (c->card == 0)
        return;
    int want = best_kind(c->card, c->nruns);
    if (want != c->kind && ctr_convert(c, want) != MG_OK)
        return; /* stays valid, only larger */
    (void)ctr_realloc(c, kind_bytes(c->kind, c->card, c->nruns));
}

static int ctr_add(mc__ctr *c, uint32_t v, bool *added)
{
    *added = false;
    switch (c->kind) {
    case MC__ARRAY: {
        uint16_t *a = c->data;
        uint32_t i = a ? arr_lower(a, c->card, v) : 0;
        if (i < c->card && a[i] == v)
            return MG_OK;
        if (2u * (c->card + 1) > c->alloc_bytes) {
            MG_TRY(ctr_realloc(c, 2u * (c->card + 1)));
            a = c->data;
        }
        bool left = i > 0 && a[i - 1] + 1u == v;
        bool right = i < c->card && a[i] == v + 1u;
        memmove(a + i + 1, a + i, (size_t)(c->card - i) * sizeof(*a));
        a[i] = (uint16_t)v;
        c->card++;
        c->nruns = c->nruns + 1 - left - right;
        break;
    }
    case MC__RUN: {
        mc__run *r = c->data;
        int64_t i = run_find(r, c->nruns, v);
        if (i >= 0 && v <= r[i].last)
            return MG_OK;
        bool left = i >= 0 && r[i].last + 1u == v;
        bool right = (uint32_t)(i + 1) < c->nruns && r[i + 1].first == v + 1u;
        if (left && right) {
            r[i].last = r[i + 1].last;
            memmove(r + i + 1, r + i + 2, (size_t)(c->nruns - (uint32_t)i - 2) * sizeof(*r));
            c->nruns--;
        } else if (left) {
            r[i].last = (uint16_t)v;
        } else if (right) {
            r[i + 1].first = (uint16_t)v;
        } else {
            if (4u * (c->nruns + 1) > c->alloc_bytes) {
                MG_TRY(ctr_realloc(c, 4u * (c->nruns + 1)));
                r = c->data;
            }
            uint32_t at = (uint32_t)(i + 1);
            memmove(r + at + 1, r + at, (size_t)(c->nruns - at) * sizeof(*r));
            r[at] = (mc__run){ (uint16_t)v, (uint16_t)v };
            c->nruns++;
        }
        c->card++;
        break;
    }
    default: {
        uint64_t *w = c->data;
        if (bm_test(w, v))
            return MG_OK;
        w[v >> 6] |= 1ull << (v & 63);
        bool left = v > 0 && bm_test(w, v - 1);
        bool right = v + 1 < MC__WINDOW && bm_test(w, v + 1);
        c->card++;
        c->nruns = c->nruns + 1 - left - right;
        break;
    }
    }
    *added = true;
    ctr_normalize(c);
    return MG_OK;
}

/* Adds lo..hi (inclusive); *added gets the number of new values. */
static int ctr_add_range(mc__ctr *c, uint32_t lo, uint32_t hi, uint32_t *added)
{
    *added = 0;
    if (c->card == 0) {
        MG_TRY(ctr_realloc(c, 4));
        c->kind = MC__RUN;
        ((mc__run *)c->data)[0] = (mc__run){ (uint16_t)lo, (uint16_t)hi };
        c->card = hi - lo + 1;
        c->nruns = 1;
        *added = c->card;
        ctr_normalize(c);
        return MG_OK;
    }
    if (c->kind == MC__ARRAY)
        MG_TRY(ctr_convert(c, 4u * (c->nruns + 1) <= MC__BITMAP_BYTES ? MC__RUN : MC__BITMAP));
    uint32_t before = c->card;
    if (c->kind == MC__RUN) {
        mc__run *r = c->data;
        uint32_t i = run_lower_last(r, c->nruns, lo == 0 ? 0 : lo - 1); /* overlaps or touches */
        int64_t j = run_find(r, c->nruns, hi + 1); /* last with first <= hi+1 */
        if ((int64_t)i > j) {
            if (4u * (c->nruns + 1) > c->alloc_bytes) {
                MG_TRY(ctr_realloc(c, 4u * (c->nruns + 1)));
                r = c->data;
            }
            memmove(r + i + 1, r + i, (size_t)(c->nruns - i) * sizeof(*r));
            r[i] = (mc__run){ (uint16_t)lo, (uint16_t)hi };
            c->nruns++;
            c->card += hi - lo + 1;
        } else {
            uint32_t nf = r[i].first < lo ? r[i].first : lo;
            uint32_t nl = r[j].last > hi ? r[j].last : hi;
            uint32_t removed = 0;
            for (int64_t k = i; k <= j; k++)
                removed += (uint32_t)r[k].last - r[k].first + 1;
            r[i] = (mc__run){ (uint16_t)nf, (uint16_t)nl };
            uint32_t tail = c->nruns - (uint32_t)j - 1;
            memmove(r + i + 1, r + j + 1, (size_t)tail * sizeof(*r));
            c->nruns -= (uint32_t)(j - (int64_t)i);
            c->card = c->card - removed + (nl - nf + 1);
        }
    } else {
        bm_set_range(c->data, lo, hi);
        bm_recount(c->data, &c->card, &c->nruns);
    }
    *added = c->card - before;
    ctr_normalize(c);
    return MG_OK;
}

/* Removes the values < v (0 < v < 65536). */
static void ctr_remove_below(mc__ctr *c, uint32_t v)
{
    switch (c->kind) {
    case MC__ARRAY: {
        uint16_t *a = c->data;
        uint32_t i = arr_lower(a, c->card, v);
        memmove(a, a + i, (size_t)(c->card - i) * sizeof(*a));
        c->card -= i;
        c->nruns = arr_count_runs(a, c->card);
        break;
    }
    case MC__RUN: {
        mc__run *r = c->data;
        uint32_t i = run_lower_last(r, c->nruns, v);
        memmove(r, r + i, (size_t)(c->nruns - i) * sizeof(*r));
        c->nruns -= i;
        if (c->nruns > 0 && r[0].first < v)
            r[0].first = (uint16_t)v;
        c->card = 0;
        for (uint32_t k = 0; k < c->nruns; k++)
            c->card += (uint32_t)r[k].last - r[k].first + 1;
        break;
    }
    default: {
        uint64_t *w = c->data;
        memset(w, 0, (size_t)(v >> 6) * sizeof(*w));
        w[v >> 6] &= ~0ull << (v & 63);
        bm_recount(w, &c->card, &c->nruns);
        break;
    }
    }
    ctr_normalize(c);
}

/* First value >= v not in the container, or MC__WINDOW. */
static uint32_t ctr_first_gap(const mc__ctr *c, uint32_t v)
{
    switch (c->kind) {
    case MC__ARRAY: {
        const uint16_t *a = c->data;
        uint32_t i = arr_lower(a, c->card, v);
        if (i == c->card || a[i] != v)
            return v;
        while (i + 1 < c->card && a[i + 1] == a[i] + 1)
            i++;
        return a[i] + 1u;
    }
    case MC__RUN: {
        const mc__run *r = c->data;
        int64_t i = run_find(r, c->nruns, v);
        if (i < 0 || r[i].last < v)
            return v;
        return r[i].last + 1u;
    }
    default:
        return bm_test(c->data, v) ? bm_next_clear(c->data, v) : v;
    }
}

/* Values within lo..hi (inclusive). */
static uint32_t ctr_count_range(const mc__ctr *c, uint32_t lo, uint32_t hi)
{
    switch (c->kind) {
    case MC__ARRAY: {
        const uint16_t *a = c->data;
        return arr_lower(a, c->card, hi + 1) - arr_lower(a, c->card, lo);
    }
    case MC__RUN: {
        const mc__run *r = c->data;
        uint32_t n = 0;
        for (uint32_t i = run_lower_last(r, c->nruns, lo); i < c->nruns && r[i].first <= hi; i++) {
            uint32_t f = r[i].first > lo ? r[i].first : lo;
            uint32_t l = r[i].last < hi ? r[i].last : hi;
            n += l - f + 1;
        }
        return n;
    }
    default:
        return bm_count_range(c->data, lo, hi);
    }
}

/* --- the set ----------------------------------------------------------------------------- */

int mc_rangeset_create(mc_rangeset **out)
{
    mc_rangeset *rs = mg_calloc(1, sizeof(*rs));
    if (!rs)
        return MG_ENOMEM;
    *out = rs;
    return MG_OK;
}

void mc_rangeset_clear(mc_rangeset *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        mg_free(rs->c[i].data);
    mg_free(rs->c);
    rs->c = NULL;
    rs->n = rs->cap = 0;
    rs->total = 0;
}

void mc_rangeset_destroy(mc_rangeset *rs)
{
    if (!rs)
        return;
    mc_rangeset_clear(rs);
    mg_free(rs);
}

/* First slot whose (ledger_id, key) >= the given one. */
static size_t find_slot(const mc_rangeset *rs, int64_t ledger_id, int64_t key)
{
    size_t lo = 0, hi = rs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_slot(rs->c[mid].ledger_id, rs->c[mid].key, ledger_id, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static mc__ctr *get_ctr(const mc_rangeset *rs, int64_t ledger_id, int64_t key, size_t *slot)
{
    size_t i = find_slot(rs, ledger_id, key);
    if (slot)
        *slot = i;
    if (i < rs->n && rs->c[i].ledger_id == ledger_id && rs->c[i].key == key)
        return &rs->c[i];
    return NULL;
}

/* Inserts an empty ARRAY container at slot i. */
static int insert_ctr(mc_rangeset *rs, size_t i, int64_t ledger_id, int64_t key)
{
    if (rs->n == rs->cap) {
        if (rs->cap >= MC_RANGESET_CONTAINERS_MAX)
            return MG_ELIMIT;
        size_t ncap = rs->cap ? rs->cap * 2 : 4;
        if (ncap > MC_RANGESET_CONTAINERS_MAX)
            ncap = MC_RANGESET_CONTAINERS_MAX;
        mc__ctr *p = mg_realloc(rs->c, ncap * sizeof(*p));
        if (!p)
            return MG_ENOMEM;
        rs->c = p;
        rs->cap = ncap;
    }
    memmove(rs->c + i + 1, rs->c + i, (rs->n - i) * sizeof(*rs->c));
    rs->c[i] = (mc__ctr){ .ledger_id = ledger_id, .key = key, .kind = MC__ARRAY };
    rs->n++;
    return MG_OK;
}

static void remove_ctrs(mc_rangeset *rs, size_t from, size_t count)
{
    if (count == 0)
        return;
    for (size_t k = from; k < from + count; k++) {
        rs->total -= rs->c[k].card;
        mg_free(rs->c[k].data);
    }
    memmove(rs->c + from, rs->c + from + count, (rs->n - from - count) * sizeof(*rs->c));
    rs->n -= count;
}

int mc_rangeset_add(mc_rangeset *rs, ml_position pos, bool *added)
{
    if (added)
        *added = false;
    if (pos.ledger_id < 0 || pos.entry_id < 0)
        return MG_EINVAL;
    int64_t key = entry_key(pos.entry_id);
    size_t slot;
    mc__ctr *c = get_ctr(rs, pos.ledger_id, key, &slot);
    bool fresh = false;
    if (!c) {
        MG_TRY(insert_ctr(rs, slot, pos.ledger_id, key));
        c = &rs->c[slot];
        fresh = true;
    }
    bool a;
    int rc = ctr_add(c, entry_low(pos.entry_id), &a);
    if (rc != MG_OK) {
        if (fresh)
            remove_ctrs(rs, slot, 1);
        return rc;
    }
    if (a)
        rs->total++;
    if (added)
        *added = a;
    return MG_OK;
}

int mc_rangeset_add_range(mc_rangeset *rs, ml_position first, ml_position last,
                          int64_t *added_count)
{
    if (added_count)
        *added_count = 0;
    if (first.ledger_id < 0 || first.entry_id < 0 || first.ledger_id != last.ledger_id ||
        last.entry_id < first.entry_id)
        return MG_EINVAL;
    int64_t k0 = entry_key(first.entry_id), k1 = entry_key(last.entry_id);
    for (int64_t k = k0; k <= k1; k++) {
        uint32_t lo = k == k0 ? entry_low(first.entry_id) : 0;
        uint32_t hi = k == k1 ? entry_low(last.entry_id) : MC__WINDOW - 1;
        size_t slot;
        mc__ctr *c = get_ctr(rs, first.ledger_id, k, &slot);
        bool fresh = false;
        if (!c) {
            MG_TRY(insert_ctr(rs, slot, first.ledger_id, k));
            c = &rs->c[slot];
            fresh = true;
        }
        uint32_t a;
        int rc = ctr_add_range(c, lo, hi, &a);
        if (rc != MG_OK) {
            if (fresh)
                remove_ctrs(rs, slot, 1);
            return rc;
        }
        rs->total += a;
        if (added_count)
            *added_count += a;
    }
    return MG_OK;
}

bool mc_rangeset_contains(const mc_rangeset *rs, ml_position pos)
{
    if (pos.ledger_id < 0 || pos.entry_id < 0)
        return false;
    const mc__ctr *c = get_ctr(rs, pos.ledger_id, entry_key(pos.entry_id), NULL);
    return c && ctr_contains(c, entry_low(pos.entry_id));
}

void mc_rangeset_remove_below(mc_rangeset *rs, ml_position pos)
{
    int64_t key = pos.entry_id < 0 ? 0 : entry_key(pos.entry_id);
    uint32_t lo = pos.entry_id < 0 ? 0 : entry_low(pos.entry_id);
    size_t slot = find_slot(rs, pos.ledger_id, key);
    remove_ctrs(rs, 0, slot);
    if (lo == 0 || rs->n == 0 || rs->c[0].ledger_id != pos.ledger_id || rs->c[0].key != key)
        return;
    mc__ctr *c = &rs->c[0];
    uint32_t before = c->card;
    ctr_remove_below(c, lo);
    rs->total -= before - c->card;
    if (c->card == 0)
        remove_ctrs(rs, 0, 1);
}

ml_position mc_rangeset_first_gap_from(const mc_rangeset *rs, ml_position pos)
{
    if (pos.ledger_id < 0 || pos.entry_id < 0)
        return pos;
    size_t slot;
    int64_t key = entry_key(pos.entry_id);
    const mc__ctr *c = get_ctr(rs, pos.ledger_id, key, &slot);
    uint32_t v = entry_low(pos.entry_id);
    while (c) {
        uint32_t g = ctr_first_gap(c, v);
        if (g < MC__WINDOW)
            return (ml_position){ pos.ledger_id, c->key * (int64_t)MC__WINDOW + g };
        /* The run reaches the end of the window: continue in the next one, if it is there. */
        int64_t next_key = c->key + 1;
        slot++;
        v = 0;
        if (slot < rs->n && rs->c[slot].ledger_id == pos.ledger_id && rs->c[slot].key == next_key)
            c = &rs->c[slot];
        else
            return (ml_position){ pos.ledger_id, next_key * (int64_t)MC__WINDOW };
    }
    return pos;
}

int64_t mc_rangeset_count_between(const mc_rangeset *rs, ml_position a, ml_position b)
{
    if (a.ledger_id > b.ledger_id || (a.ledger_id == b.ledger_id && a.entry_id > b.entry_id))
        return 0;
    int64_t ak = a.entry_id < 0 ? 0 : entry_key(a.entry_id);
    uint32_t alo = a.entry_id < 0 ? 0 : entry_low(a.entry_id);
    if (b.entry_id < 0) {
        /* Nothing of ledger b.ledger_id is <= b: stop before it. */
        b = (ml_position){ b.ledger_id - 1, INT64_MAX };
    }
    int64_t bk = entry_key(b.entry_id);
    uint32_t blo = entry_low(b.entry_id);
    int64_t n = 0;
    for (size_t i = find_slot(rs, a.ledger_id, ak); i < rs->n; i++) {
        const mc__ctr *c = &rs->c[i];
        if (cmp_slot(c->ledger_id, c->key, b.ledger_id, bk) > 0)
            break;
        uint32_t lo = (c->ledger_id == a.ledger_id && c->key == ak) ? alo : 0;
        uint32_t hi = (c->ledger_id == b.ledger_id && c->key == bk) ? blo : MC__WINDOW - 1;
        if (lo == 0 && hi == MC__WINDOW - 1)
            n += c->card;
        else if (lo <= hi)
            n += ctr_count_range(c, lo, hi);
    }
    return n;
}

int64_t mc_rangeset_count(const mc_rangeset *rs)
{
    return rs->total;
}

/* Whether the run ending at 65535 in slot i continues at 0 in slot i + 1. */
static bool joins_next(const mc_rangeset *rs, size_t i)
{
    if (i + 1 >= rs->n)
        return false;
    const mc__ctr *c = &rs->c[i], *d = &rs->c[i + 1];
    return d->ledger_id == c->ledger_id && d->key == c->key + 1 &&
           ctr_contains(c, MC__WINDOW - 1) && ctr_contains(d, 0);
}

int64_t mc_rangeset_range_count(const mc_rangeset *rs)
{
    int64_t n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        n += rs->c[i].nruns;
        if (joins_next(rs, i))
            n--;
    }
    return n;
}

size_t mc_rangeset_container_count(const mc_rangeset *rs)
{
    return rs->n;
}

size_t mc_rangeset_memory_bytes(const mc_rangeset *rs)
{
    size_t n = sizeof(*rs) + rs->cap * sizeof(*rs->c);
    for (size_t i = 0; i < rs->n; i++)
        n += rs->c[i].alloc_bytes;
    return n;
}

void mc_rangeset_iter_init(const mc_rangeset *rs, mc_rangeset_iter *it)
{
    *it = (mc_rangeset_iter){ .rs = rs, .ci = 0, .lo = 0 };
}

bool mc_rangeset_iter_next(mc_rangeset_iter *it, ml_position *first, ml_position *last)
{
    const mc_rangeset *rs = it->rs;
    while (it->ci < rs->n) {
        const mc__ctr *c = &rs->c[it->ci];
        uint32_t f, l;
        if (!ctr_next_run(c, it->lo, &f, &l)) {
            it->ci++;
            it->lo = 0;
            continue;
        }
        int64_t base = c->key * (int64_t)MC__WINDOW;
        *first = (ml_position){ c->ledger_id, base + f };
        /* A run that reaches the end of the window may go on in the next container. */
        while (l == MC__WINDOW - 1 && joins_next(rs, it->ci)) {
            it->ci++;
            c = &rs->c[it->ci];
            uint32_t f2;
            bool ok = ctr_next_run(c, 0, &f2, &l);
            MG_ASSERT(ok && f2 == 0);
        }
        *last = (ml_position){ c->ledger_id, c->key * (int64_t)MC__WINDOW + l };
        it->lo = l + 1;
        if (it->lo >= MC__WINDOW) {
            it->ci++;
            it->lo = 0;
        }
        return true;
    }
    return false;
}
