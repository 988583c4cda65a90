/*
 * The write cache (two preallocated halves) and the read cache (FIFO, chained hash). Design,
 * invariants and thread rules are in cache.h; here are the table layouts.
 *
 * A write-cache half, for cap = half_entries_max and slot_count = the power of two >= 2 * cap
 * (load factor <= 1/2, so linear probing always ends at an empty slot):
 *
 *     items[cap]          entries in insertion order, items[0, count)
 *     item_slot[cap]      the hash slot of items[i], so clear zeroes count slots, not the table
 *     slots[slot_count]   open addressing on (ledger, entry): item index + 1, 0 = empty
 *     ledgers[slot_count] open addressing on ledger: {ledger_id (-1 = empty), entry_id_max}
 *     ledger_used[cap]    the occupied ledger slots, ledger_used[0, ledger_count)
 *     sorted[cap]         the flush thread's sorted copy of items (no references of its own)
 *
 * Nothing is ever removed from a live table slot by slot: replacing an entry rewrites its item
 * in place; drop_ledger compacts the item array and rebuilds both hashes; clear zeroes exactly
 * the slots in use. So linear-probing chains never get holes.
 *
 * The read cache: buckets[pow2] of singly linked chains, and a doubly linked list from the
 * oldest to the newest node; each node is one mg_malloc.
 */
#include "bookie/cache.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

static uint64_t cache_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t cache_hash(int64_t ledger_id, int64_t entry_id)
{
    return cache_mix64(cache_mix64((uint64_t)ledger_id) ^ (uint64_t)entry_id);
}

/* --- write cache ---------------------------------------------------------------------------- */

typedef struct wc_ledger {
    int64_t ledger_id; /* -1: empty slot */
    int64_t entry_id_max;
} wc_ledger;

typedef struct wc_half {
    bk_wc_item *items;
    uint32_t *item_slot;
    uint32_t *slots;
    wc_ledger *ledgers;
    uint32_t *ledger_used;
    bk_wc_item *sorted;
    size_t count;
    size_t ledger_count;
    size_t bytes;
    bool sorted_ready; /* flush thread only (and clear, after the hand-back) */
} wc_half;

struct bk_write_cache {
    wc_half halves[2];
    wc_half *active;
    wc_half *flush; /* the other half */
    bool flushing;
    size_t half_bytes_max;
    size_t half_entries_max;
    size_t slot_mask; /* slot_count - 1 */
};

static void wc_half_free(wc_half *h)
{
    mg_free(h->items);
    mg_free(h->item_slot);
    mg_free(h->slots);
    mg_free(h->ledgers);
    mg_free(h->ledger_used);
    mg_free(h->sorted);
}

static int wc_half_init(wc_half *h, size_t cap, size_t slot_count)
{
    memset(h, 0, sizeof(*h));
    h->items = mg_calloc(cap, sizeof(*h->items));
    h->item_slot = mg_calloc(cap, sizeof(*h->item_slot));
    h->slots = mg_calloc(slot_count, sizeof(*h->slots));
    h->ledgers = mg_calloc(slot_count, sizeof(*h->ledgers));
    h->ledger_used = mg_calloc(cap, sizeof(*h->ledger_used));
    h->sorted = mg_calloc(cap, sizeof(*h->sorted));
    if (h->items == NULL || h->item_slot == NULL || h->slots == NULL || h->ledgers == NULL ||
        h->ledger_used == NULL || h->sorted == NULL) {
        wc_half_free(h);
        memset(h, 0, sizeof(*h));
        return MG_ENOMEM;
    }
    for (size_t i = 0; i < slot_count; i++)
        h->ledgers[i].ledger_id = -1;
    return MG_OK;
}

/* The slot holding (ledger, entry), or the empty slot where it would go. */
static size_t wc_find_slot(const bk_write_cache *wc, const wc_half *h, int64_t ledger_id,
                           int64_t entry_id)
{
    size_t s = (size_t)cache_hash(ledger_id, entry_id) & wc->slot_mask;
    for (;;) {
        uint32_t v = h->slots[s];
        if (v == 0)
            return s;
        const bk_wc_item *it = &h->items[v - 1];
        if (it->ledger_id == ledger_id && it->entry_id == entry_id)
            return s;
        s = (s + 1) & wc->slot_mask;
    }
}

static const bk_wc_item *wc_lookup(const bk_write_cache *wc, const wc_half *h, int64_t ledger_id,
                                   int64_t entry_id)
{
    if (h->count == 0)
        return NULL;
    uint32_t v = h->slots[wc_find_slot(wc, h, ledger_id, entry_id)];
    return v == 0 ? NULL : &h->items[v - 1];
}

/* The ledger's slot, or the empty slot where it would go. */
static size_t wc_find_ledger(const bk_write_cache *wc, const wc_half *h, int64_t ledger_id)
{
    size_t s = (size_t)cache_mix64((uint64_t)ledger_id) & wc->slot_mask;
    while (h->ledgers[s].ledger_id != -1 && h->ledgers[s].ledger_id != ledger_id)
        s = (s + 1) & wc->slot_mask;
    return s;
}

static void wc_ledger_note(const bk_write_cache *wc, wc_half *h, int64_t ledger_id,
                           int64_t entry_id)
{
    size_t s = wc_find_ledger(wc, h, ledger_id);
    wc_ledger *l = &h->ledgers[s];
    if (l->ledger_id == -1) {
        MG_ASSERT(h->ledger_count < wc->half_entries_max);
        l->ledger_id = ledger_id;
        l->entry_id_max = entry_id;
        h->ledger_used[h->ledger_count++] = (uint32_t)s;
    } else if (entry_id > l->entry_id_max) {
        l->entry_id_max = entry_id;
    }
}

/* Indexes items[i] (not yet in the tables) in both hashes. */
static void wc_index_item(const bk_write_cache *wc, wc_half *h, size_t i)
{
    const bk_wc_item *it = &h->items[i];
    size_t s = wc_find_slot(wc, h, it->ledger_id, it->entry_id);
    MG_ASSERT(h->slots[s] == 0);
    h->slots[s] = (uint32_t)(i + 1);
    h->item_slot[i] = (uint32_t)s;
    wc_ledger_note(wc, h, it->ledger_id, it->entry_id);
}

/* Empties both hashes, touching only the slots in use. */
static void wc_clear_tables(wc_half *h)
{
    for (size_t i = 0; i < h->count; i++)
        h->slots[h->item_slot[i]] = 0;
    for (size_t i = 0; i < h->ledger_count; i++)
        h->ledgers[h->ledger_used[i]].ledger_id = -1;
    h->ledger_count = 0;
}

static void wc_half_release(wc_half *h)
{
    wc_clear_tables(h);
    for (size_t i = 0; i < h->count; i++) {
        mg_buf_unref(h->items[i].buf);
        h->items[i].buf = NULL;
    }
    h->count = 0;
    h->bytes = 0;
    h->sorted_ready = false;
}

int bk_write_cache_create(size_t half_bytes_max, size_t half_entries_max, bk_write_cache **out)
{
    MG_ASSERT(out != NULL);
    *out = NULL;
    if (half_bytes_max == 0 || half_entries_max == 0 ||
        half_entries_max > BK_WRITE_CACHE_HALF_ENTRIES_MAX)
        return MG_EINVAL;
    size_t slot_count = 2;
    while (slot_count < 2 * half_entries_max)
        slot_count <<= 1;
    bk_write_cache *wc = mg_calloc(1, sizeof(*wc));
    if (wc == NULL)
        return MG_ENOMEM;
    if (wc_half_init(&wc->halves[0], half_entries_max, slot_count) != MG_OK ||
        wc_half_init(&wc->halves[1], half_entries_max, slot_count) != MG_OK) {
        wc_half_free(&wc->halves[0]);
        wc_half_free(&wc->halves[1]);
        mg_free(wc);
        return MG_ENOMEM;
    }
    wc->active = &wc->halves[0];
    wc->flush = &wc->halves[1];
    wc->half_bytes_max = half_bytes_max;
    wc->half_entries_max = half_entries_max;
    wc->slot_mask = slot_count - 1;
    *out = wc;
    return MG_OK;
}

void bk_write_cache_destroy(bk_write_cache *wc)
{
    if (wc == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        wc_half_release(&wc->halves[i]);
        wc_half_free(&wc->halves[i]);
    }
    mg_free(wc);
}

int bk_write_cache_put(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                       size_t off, size_t len)
{
    MG_ASSERT(buf != NULL);
    if (ledger_id < 0 || entry_id < 0)
        return MG_EINVAL;
    size_t buf_len = mg_buf_len(buf);
    if (off > buf_len || len > buf_len - off)
        return MG_EINVAL;
    if (len > wc->half_bytes_max)
        return MG_ELIMIT;
    wc_half *h = wc->active;
    size_t s = wc_find_slot(wc, h, ledger_id, entry_id);
    if (h->slots[s] != 0) {
        bk_wc_item *it = &h->items[h->slots[s] - 1];
        if (h->bytes - it->len + len > wc->half_bytes_max)
            return MG_EAGAIN;
        h->bytes = h->bytes - it->len + len;
        mg_buf *old = it->buf;
        it->buf = mg_buf_ref(buf);
        it->off = off;
        it->len = len;
        mg_buf_unref(old);
        return MG_OK;
    }
    if (h->count >= wc->half_entries_max || len > wc->half_bytes_max - h->bytes)
        return MG_EAGAIN;
    size_t i = h->count++;
    h->items[i] = (bk_wc_item){
        .ledger_id = ledger_id, .entry_id = entry_id, .buf = mg_buf_ref(buf), .off = off, .len = len
    };
    h->bytes += len;
    h->slots[s] = (uint32_t)(i + 1);
    h->item_slot[i] = (uint32_t)s;
    wc_ledger_note(wc, h, ledger_id, entry_id);
    return MG_OK;
}

bool bk_write_cache_get(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id, bk_entry *out)
{
    MG_ASSERT(out != NULL);
    const bk_wc_item *it = wc_lookup(wc, wc->active, ledger_id, entry_id);
    if (it == NULL && wc->flushing)
        it = wc_lookup(wc, wc->flush, ledger_id, entry_id);
    if (it == NULL)
        return false;
    *out = (bk_entry){
        .entry_id = entry_id, .buf = mg_buf_ref(it->buf), .off = it->off, .len = it->len
    };
    return true;
}

static int64_t wc_half_last(const bk_write_cache *wc, const wc_half *h, int64_t ledger_id)
{
    if (h->ledger_count == 0 || ledger_id < 0)
        return -1;
    const wc_ledger *l = &h->ledgers[wc_find_ledger(wc, h, ledger_id)];
    return l->ledger_id == -1 ? -1 : l->entry_id_max;
}

int64_t bk_write_cache_last_entry(bk_write_cache *wc, int64_t ledger_id)
{
    int64_t last = wc_half_last(wc, wc->active, ledger_id);
    if (wc->flushing) {
        int64_t f = wc_half_last(wc, wc->flush, ledger_id);
        if (f > last)
            last = f;
    }
    return last;
}

size_t bk_write_cache_active_bytes(const bk_write_cache *wc)
{
    return wc->active->bytes;
}

size_t bk_write_cache_active_count(const bk_write_cache *wc)
{
    return wc->active->count;
}

bool bk_write_cache_flushing(const bk_write_cache *wc)
{
    return wc->flushing;
}

int bk_write_cache_swap(bk_write_cache *wc)
{
    if (wc->flushing)
        return MG_EAGAIN;
    MG_ASSERT(wc->flush->count == 0);
    wc_half *h = wc->active;
    wc->active = wc->flush;
    wc->flush = h;
    h->sorted_ready = false;
    wc->flushing = true;
    return MG_OK;
}

static int wc_item_cmp(const void *a, const void *b)
{
    const bk_wc_item *x = a, *y = b;
    if (x->ledger_id != y->ledger_id)
        return x->ledger_id < y->ledger_id ? -1 : 1;
    return (x->entry_id > y->entry_id) - (x->entry_id < y->entry_id);
}

const bk_wc_item *bk_write_cache_flushing_items(bk_write_cache *wc, size_t *count)
{
    MG_ASSERT(count != NULL);
    *count = 0;
    if (!wc->flushing)
        return NULL;
    wc_half *h = wc->flush;
    if (!h->sorted_ready) {
        /* Copies: the loop keeps reading items[] through the hash meanwhile (invariant 2). */
        memcpy(h->sorted, h->items, h->count * sizeof(*h->sorted));
        qsort(h->sorted, h->count, sizeof(*h->sorted), wc_item_cmp);
        h->sorted_ready = true;
    }
    *count = h->count;
    return h->sorted;
}

void bk_write_cache_clear_flushing(bk_write_cache *wc)
{
    if (!wc->flushing)
        return;
    wc_half_release(wc->flush);
    wc->flushing = false;
}

void bk_write_cache_drop_ledger(bk_write_cache *wc, int64_t ledger_id)
{
    wc_half *h = wc->active;
    if (wc_half_last(wc, h, ledger_id) < 0)
        return;
    wc_clear_tables(h);
    size_t kept = 0;
    for (size_t i = 0; i < h->count; i++) {
        bk_wc_item *it = &h->items[i];
        if (it->ledger_id == ledger_id) {
            h->bytes -= it->len;
            mg_buf_unref(it->buf);
            continue;
        }
        h->items[kept++] = *it;
    }
    for (size_t i = kept; i < h->count; i++)
        h->items[i].buf = NULL;
    h->count = kept;
    for (size_t i = 0; i < kept; i++)
        wc_index_item(wc, h, i);
}

/* --- read cache ----------------------------------------------------------------------------- */

typedef struct rc_node {
    int64_t ledger_id;
    int64_t entry_id;
    mg_buf *buf;
    size_t off;
    size_t len;
    struct rc_node *chain_next; /* bucket chain */
    struct rc_node *older;      /* FIFO list: towards rc->oldest */
    struct rc_node *newer;
} rc_node;

_Static_assert(sizeof(rc_node) + 16 + 8 <= BK_READ_CACHE_ENTRY_OVERHEAD_BYTES,
               "the per-entry charge must cover the node, the allocator header and a bucket");

struct bk_read_cache {
    size_t bytes_max;
    rc_node **buckets;
    size_t bucket_mask;
    rc_node *oldest;
    rc_node *newest;
    bk_read_cache_stats stats;
};

int bk_read_cache_create(size_t bytes_max, bk_read_cache **out)
{
    MG_ASSERT(out != NULL);
    *out = NULL;
    size_t bucket_count = 16;
    while (bucket_count < BK_READ_CACHE_BUCKETS_MAX &&
           bucket_count < bytes_max / BK_READ_CACHE_BYTES_PER_BUCKET)
        bucket_count <<= 1;
    bk_read_cache *rc = mg_calloc(1, sizeof(*rc));
    if (rc == NULL)
        return MG_ENOMEM;
    rc->buckets = mg_calloc(bucket_count, sizeof(*rc->buckets));
    if (rc->buckets == NULL) {
        mg_free(rc);
        return MG_ENOMEM;
    }
    rc->bucket_mask = bucket_count - 1;
    rc->bytes_max = bytes_max;
    *out = rc;
    return MG_OK;
}

static rc_node **rc_bucket(const bk_read_cache *rc, int64_t ledger_id, int64_t entry_id)
{
    return &rc->buckets[(size_t)cache_hash(ledger_id, entry_id) & rc->bucket_mask];
}

static rc_node *rc_find(const bk_read_cache *rc, int64_t ledger_id, int64_t entry_id)
{
    for (rc_node *n = *rc_bucket(rc, ledger_id, entry_id); n != NULL; n = n->chain_next)
        if (n->ledger_id == ledger_id && n->entry_id == entry_id)
            return n;
    return NULL;
}

/* Unlinks n from its chain and the FIFO list, drops its reference, frees it. */
static void rc_remove(bk_read_cache *rc, rc_node *n)
{
    rc_node **pp = rc_bucket(rc, n->ledger_id, n->entry_id);
    while (*pp != n) {
        MG_ASSERT(*pp != NULL);
        pp = &(*pp)->chain_next;
    }
    *pp = n->chain_next;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        rc->oldest = n->newer;
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        rc->newest = n->older;
    rc->stats.bytes -= n->len + BK_READ_CACHE_ENTRY_OVERHEAD_BYTES;
    rc->stats.count--;
    mg_buf_unref(n->buf);
    mg_free(n);
}

void bk_read_cache_destroy(bk_read_cache *rc)
{
    if (rc == NULL)
        return;
    rc_node *n = rc->oldest;
    while (n != NULL) {
        rc_node *next = n->newer;
        mg_buf_unref(n->buf);
        mg_free(n);
        n = next;
    }
    mg_free(rc->buckets);
    mg_free(rc);
}

void bk_read_cache_put(bk_read_cache *rc, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                       size_t off, size_t len)
{
    MG_ASSERT(buf != NULL);
    size_t buf_len = mg_buf_len(buf);
    MG_ASSERT(off <= buf_len && len <= buf_len - off);
    if (len > rc->bytes_max || BK_READ_CACHE_ENTRY_OVERHEAD_BYTES > rc->bytes_max - len)
        return;
    size_t charge = len + BK_READ_CACHE_ENTRY_OVERHEAD_BYTES;
    if (rc_find(rc, ledger_id, entry_id) != NULL)
        return;
    rc_node *n = mg_malloc(sizeof(*n));
    if (n == NULL)
        return;
    while (rc->stats.bytes + charge > rc->bytes_max) {
        MG_ASSERT(rc->oldest != NULL);
        rc_remove(rc, rc->oldest);
        rc->stats.evictions++;
    }
    rc_node **bucket = rc_bucket(rc, ledger_id, entry_id);
    *n = (rc_node){ .ledger_id = ledger_id,
                    .entry_id = entry_id,
                    .buf = mg_buf_ref(buf),
                    .off = off,
                    .len = len,
                    .chain_next = *bucket,
                    .older = rc->newest,
                    .newer = NULL };
    *bucket = n;
    if (rc->newest != NULL)
        rc->newest->newer = n;
    else
        rc->oldest = n;
    rc->newest = n;
    rc->stats.bytes += charge;
    rc->stats.count++;
    rc->stats.inserts++;
}

bool bk_read_cache_get(bk_read_cache *rc, int64_t ledger_id, int64_t entry_id, bk_entry *out)
{
    MG_ASSERT(out != NULL);
    rc_node *n = rc_find(rc, ledger_id, entry_id);
    if (n == NULL) {
        rc->stats.misses++;
        return false;
    }
    rc->stats.hits++;
    *out =
        (bk_entry){ .entry_id = entry_id, .buf = mg_buf_ref(n->buf), .off = n->off, .len = n->len };
    return true;
}

bool bk_read_cache_contains(const bk_read_cache *rc, int64_t ledger_id, int64_t entry_id)
{
    return rc_find(rc, ledger_id, entry_id) != NULL;
}

void bk_read_cache_drop_ledger(bk_read_cache *rc, int64_t ledger_id)
{
    rc_node *n = rc->oldest;
    while (n != NULL) {
        rc_node *next = n->newer;
        if (n->ledger_id == ledger_id)
            rc_remove(rc, n);
        n = next;
    }
}

void bk_read_cache_stats_get(const bk_read_cache *rc, bk_read_cache_stats *out)
{
    *out = rc->stats;
}
