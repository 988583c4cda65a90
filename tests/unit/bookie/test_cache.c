/*
 * Tests of the bookie's write cache (double-buffered) and read cache (FIFO) in
 * src/bookie/cache.c: exact bytes and reference counts, the exact bytes/entries limits, sorted
 * flushing items, lookups across both halves, ledger drops, a flush-thread reader walking the
 * flushing half while the test thread puts and gets, and the read cache's oldest-first eviction
 * with its exact byte accounting and statistics.
 */
#include "bookie/cache.h"
#include "bookie/limits.h"
#include "common/buf.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

TestSuite(write_cache, .timeout = 10);
TestSuite(read_cache, .timeout = 10);

/* --- write cache ---------------------------------------------------------------------------- */

static void expect_bytes(const bk_entry *e, const char *want)
{
    cr_assert_eq(e->len, strlen(want));
    cr_expect_eq(memcmp(mg_buf_data(e->buf) + e->off, want, e->len), 0);
}

Test(write_cache, put_get_exact_bytes_and_refcounts)
{
    bk_write_cache *wc = NULL;
    cr_assert_eq(bk_write_cache_create(1024, 16, &wc), MG_OK);
    mg_buf *buf = mg_buf_new_copy("hello world", 11);
    cr_assert_not_null(buf);
    cr_assert_eq(bk_write_cache_put(wc, 1, 0, buf, 0, 5), MG_OK);
    cr_assert_eq(bk_write_cache_put(wc, 1, 1, buf, 6, 5), MG_OK);
    cr_expect_eq(mg_buf_refcount(buf), 3);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 10);
    cr_expect_eq(bk_write_cache_active_count(wc), 2);
    cr_expect(!bk_write_cache_flushing(wc));

    bk_entry e = { 0 };
    cr_assert(bk_write_cache_get(wc, 1, 1, &e));
    cr_expect_eq(e.entry_id, 1);
    cr_expect_eq(e.buf, buf);
    cr_expect_eq(e.off, 6);
    expect_bytes(&e, "world");
    cr_expect_eq(mg_buf_refcount(buf), 4);
    mg_buf_unref(e.buf);
    cr_assert(bk_write_cache_get(wc, 1, 0, &e));
    expect_bytes(&e, "hello");
    mg_buf_unref(e.buf);
    cr_expect_eq(mg_buf_refcount(buf), 3);

    cr_expect(!bk_write_cache_get(wc, 1, 2, &e));
    cr_expect(!bk_write_cache_get(wc, 2, 0, &e));
    cr_expect_eq(mg_buf_refcount(buf), 3);

    bk_write_cache_destroy(wc);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}

Test(write_cache, full_half_is_eagain_exact_limits)
{
    bk_write_cache *wc = NULL;
    mg_buf *buf = mg_buf_new(200);
    cr_assert_not_null(buf);
    memset(mg_buf_data(buf), 'x', 200);
    mg_buf_set_len(buf, 200);

    /* Bytes: 60 + 40 fills 100 exactly; one more byte does not fit. */
    cr_assert_eq(bk_write_cache_create(100, 16, &wc), MG_OK);
    cr_assert_eq(bk_write_cache_put(wc, 1, 0, buf, 0, 60), MG_OK);
    cr_assert_eq(bk_write_cache_put(wc, 1, 1, buf, 0, 40), MG_OK);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 100);
    cr_expect_eq(bk_write_cache_put(wc, 1, 2, buf, 0, 1), MG_EAGAIN);
    cr_expect_eq(bk_write_cache_put(wc, 1, 2, buf, 0, 0), MG_OK); /* an empty entry fits */
    cr_expect_eq(bk_write_cache_active_count(wc), 3);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 100);
    /* Never fits, whatever is flushed. */
    cr_expect_eq(bk_write_cache_put(wc, 1, 3, buf, 0, 101), MG_ELIMIT);
    /* Replacing counts the difference: 60 -> 61 does not fit, 60 -> 59 does. */
    cr_expect_eq(bk_write_cache_put(wc, 1, 0, buf, 0, 61), MG_EAGAIN);
    cr_expect_eq(bk_write_cache_put(wc, 1, 0, buf, 0, 59), MG_OK);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 99);
    cr_expect_eq(mg_buf_refcount(buf), 4);
    bk_write_cache_destroy(wc);
    cr_expect_eq(mg_buf_refcount(buf), 1);

    /* Entries: 3 fit, the 4th does not; replacing one at the limit still works. */
    cr_assert_eq(bk_write_cache_create(1000, 3, &wc), MG_OK);
    for (int64_t e = 0; e < 3; e++)
        cr_assert_eq(bk_write_cache_put(wc, 7, e, buf, 0, 10), MG_OK);
    cr_expect_eq(bk_write_cache_put(wc, 7, 3, buf, 0, 10), MG_EAGAIN);
    cr_expect_eq(bk_write_cache_put(wc, 8, 0, buf, 0, 1), MG_EAGAIN);
    cr_expect_eq(bk_write_cache_put(wc, 7, 1, buf, 5, 20), MG_OK);
    cr_expect_eq(bk_write_cache_active_count(wc), 3);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 40);
    cr_expect_eq(mg_buf_refcount(buf), 4);

    /* Bad arguments change nothing. */
    cr_expect_eq(bk_write_cache_put(wc, -1, 0, buf, 0, 1), MG_EINVAL);
    cr_expect_eq(bk_write_cache_put(wc, 7, -1, buf, 0, 1), MG_EINVAL);
    cr_expect_eq(bk_write_cache_put(wc, 7, 0, buf, 150, 51), MG_EINVAL);
    cr_expect_eq(bk_write_cache_put(wc, 7, 0, buf, 201, 0), MG_EINVAL);
    cr_expect_eq(mg_buf_refcount(buf), 4);
    bk_write_cache_destroy(wc);

    cr_expect_eq(bk_write_cache_create(0, 3, &wc), MG_EINVAL);
    cr_expect_eq(bk_write_cache_create(100, 0, &wc), MG_EINVAL);
    cr_expect_eq(bk_write_cache_create(100, (size_t)BK_WRITE_CACHE_HALF_ENTRIES_MAX + 1, &wc),
                 MG_EINVAL);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}

/* A buffer holding "L<ledger>E<entry>", so every item's bytes name its key. */
static mg_buf *keyed_buf(int64_t ledger_id, int64_t entry_id, size_t *len)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "L%lldE%lld", (long long)ledger_id, (long long)entry_id);
    cr_assert(n > 0 && (size_t)n < sizeof(text));
    *len = (size_t)n;
    mg_buf *buf = mg_buf_new_copy(text, (size_t)n);
    cr_assert_not_null(buf);
    return buf;
}

static bool keyed_bytes_match(const mg_buf *buf, size_t off, size_t len, int64_t ledger_id,
                              int64_t entry_id)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "L%lldE%lld", (long long)ledger_id, (long long)entry_id);
    return (size_t)n == len && memcmp(mg_buf_data((mg_buf *)buf) + off, text, len) == 0;
}

/* Puts a keyed entry and drops the test's own reference: the cache holds the only one. */
static void put_keyed(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id)
{
    size_t len;
    mg_buf *buf = keyed_buf(ledger_id, entry_id, &len);
    cr_assert_eq(bk_write_cache_put(wc, ledger_id, entry_id, buf, 0, len), MG_OK);
    mg_buf_unref(buf);
}

static bool get_keyed(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id)
{
    bk_entry e;
    if (!bk_write_cache_get(wc, ledger_id, entry_id, &e))
        return false;
    bool ok = e.entry_id == entry_id && keyed_bytes_match(e.buf, e.off, e.len, ledger_id, entry_id);
    mg_buf_unref(e.buf);
    return ok;
}

Test(write_cache, swap_sorts_flushing_items_and_lookups_span_halves)
{
    bk_write_cache *wc = NULL;
    cr_assert_eq(bk_write_cache_create(4096, 64, &wc), MG_OK);
    const int64_t keys[][2] = { { 3, 1 }, { 1, 5 }, { 256, 0 }, { 2, 0 },
                                { 1, 2 }, { 3, 0 }, { 1, 9 },   { 255, 7 } };
    for (size_t i = 0; i < 8; i++)
        put_keyed(wc, keys[i][0], keys[i][1]);
    size_t count = 99;
    cr_expect_null(bk_write_cache_flushing_items(wc, &count));
    cr_expect_eq(count, 0);

    cr_assert_eq(bk_write_cache_swap(wc), MG_OK);
    cr_expect(bk_write_cache_flushing(wc));
    cr_expect_eq(bk_write_cache_active_count(wc), 0);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 0);
    const bk_wc_item *items = bk_write_cache_flushing_items(wc, &count);
    cr_assert_not_null(items);
    cr_assert_eq(count, 8);
    const int64_t sorted[][2] = { { 1, 2 }, { 1, 5 }, { 1, 9 },   { 2, 0 },
                                  { 3, 0 }, { 3, 1 }, { 255, 7 }, { 256, 0 } };
    for (size_t i = 0; i < 8; i++) {
        cr_expect_eq(items[i].ledger_id, sorted[i][0], "item %zu", i);
        cr_expect_eq(items[i].entry_id, sorted[i][1], "item %zu", i);
        cr_expect(keyed_bytes_match(items[i].buf, items[i].off, items[i].len, sorted[i][0],
                                    sorted[i][1]));
    }
    /* Asking again gives the same array. */
    size_t again = 0;
    cr_expect_eq(bk_write_cache_flushing_items(wc, &again), items);
    cr_expect_eq(again, 8);

    /* Lookups find flushing entries while new puts go to the active half. */
    for (size_t i = 0; i < 8; i++)
        cr_expect(get_keyed(wc, keys[i][0], keys[i][1]));
    put_keyed(wc, 1, 10);
    put_keyed(wc, 4, 0);
    cr_expect_eq(bk_write_cache_active_count(wc), 2);
    cr_expect(get_keyed(wc, 1, 10));
    cr_expect(get_keyed(wc, 1, 9));
    cr_expect_eq(bk_write_cache_last_entry(wc, 1), 10); /* active */
    cr_expect_eq(bk_write_cache_last_entry(wc, 3), 1);  /* flushing */
    cr_expect_eq(bk_write_cache_last_entry(wc, 4), 0);
    cr_expect_eq(bk_write_cache_last_entry(wc, 5), -1);
    cr_expect_eq(bk_write_cache_swap(wc), MG_EAGAIN);

    /* An entry put again while its older copy is flushing: the active one wins. */
    mg_buf *newer = mg_buf_new_copy("NEW", 3);
    cr_assert_eq(bk_write_cache_put(wc, 3, 0, newer, 0, 3), MG_OK);
    bk_entry e;
    cr_assert(bk_write_cache_get(wc, 3, 0, &e));
    cr_expect_eq(e.buf, newer);
    mg_buf_unref(e.buf);
    cr_expect_eq(items[4].ledger_id, 3); /* the flushing copy is untouched */
    cr_expect(keyed_bytes_match(items[4].buf, items[4].off, items[4].len, 3, 0));

    /* Clear drops the flushing references: keep one item's buffer to watch it. */
    mg_buf *watched = mg_buf_ref(items[0].buf);
    cr_expect_eq(mg_buf_refcount(watched), 2);
    bk_write_cache_clear_flushing(wc);
    cr_expect_eq(mg_buf_refcount(watched), 1);
    mg_buf_unref(watched);
    cr_expect(!bk_write_cache_flushing(wc));
    cr_expect(!get_keyed(wc, 1, 9));
    cr_expect(!get_keyed(wc, 255, 7));
    cr_expect(get_keyed(wc, 1, 10));
    cr_expect_eq(bk_write_cache_last_entry(wc, 1), 10);
    cr_expect_eq(bk_write_cache_last_entry(wc, 3), 0);
    cr_expect_eq(bk_write_cache_last_entry(wc, 255), -1);
    bk_write_cache_clear_flushing(wc); /* no-op */

    /* The next cycle uses the other half. */
    cr_assert_eq(bk_write_cache_swap(wc), MG_OK);
    items = bk_write_cache_flushing_items(wc, &count);
    cr_assert_eq(count, 3);
    cr_expect_eq(items[0].ledger_id, 1);
    cr_expect_eq(items[0].entry_id, 10);
    cr_expect_eq(items[1].ledger_id, 3);
    cr_expect_eq(items[1].buf, newer);
    cr_expect_eq(items[2].ledger_id, 4);
    cr_expect_eq(mg_buf_refcount(newer), 2);
    bk_write_cache_clear_flushing(wc);
    cr_expect_eq(mg_buf_refcount(newer), 1);
    mg_buf_unref(newer);

    /* An empty swap is allowed. */
    cr_assert_eq(bk_write_cache_swap(wc), MG_OK);
    cr_expect(bk_write_cache_flushing(wc));
    count = 99;
    (void)bk_write_cache_flushing_items(wc, &count);
    cr_expect_eq(count, 0);
    bk_write_cache_clear_flushing(wc);
    bk_write_cache_destroy(wc);
}

Test(write_cache, replacing_an_entry)
{
    bk_write_cache *wc = NULL;
    cr_assert_eq(bk_write_cache_create(100, 4, &wc), MG_OK);
    mg_buf *a = mg_buf_new_copy("aaaaaa", 6);
    mg_buf *b = mg_buf_new_copy("bb", 2);
    cr_assert_eq(bk_write_cache_put(wc, 1, 0, a, 0, 6), MG_OK);
    cr_assert_eq(bk_write_cache_put(wc, 1, 0, b, 0, 2), MG_OK);
    cr_expect_eq(bk_write_cache_active_count(wc), 1);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 2);
    cr_expect_eq(mg_buf_refcount(a), 1);
    cr_expect_eq(mg_buf_refcount(b), 2);
    bk_entry e;
    cr_assert(bk_write_cache_get(wc, 1, 0, &e));
    expect_bytes(&e, "bb");
    mg_buf_unref(e.buf);
    /* The same buffer again: the reference is kept, not lost. */
    cr_assert_eq(bk_write_cache_put(wc, 1, 0, b, 1, 1), MG_OK);
    cr_expect_eq(mg_buf_refcount(b), 2);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 1);
    bk_write_cache_destroy(wc);
    cr_expect_eq(mg_buf_refcount(b), 1);
    mg_buf_unref(a);
    mg_buf_unref(b);
}

Test(write_cache, drop_ledger_active_half_only)
{
    bk_write_cache *wc = NULL;
    cr_assert_eq(bk_write_cache_create(1 << 16, 64, &wc), MG_OK);
    mg_buf *buf = mg_buf_new_copy("0123456789", 10);
    /* Ledger 1 goes to the flushing half too. */
    cr_assert_eq(bk_write_cache_put(wc, 1, 100, buf, 0, 10), MG_OK);
    cr_assert_eq(bk_write_cache_swap(wc), MG_OK);
    for (int64_t e = 0; e < 10; e++) {
        cr_assert_eq(bk_write_cache_put(wc, 1, e, buf, 0, 1), MG_OK);
        cr_assert_eq(bk_write_cache_put(wc, 2, e, buf, (size_t)e, 2 > 10 - e ? 1 : 2), MG_OK);
    }
    cr_expect_eq(bk_write_cache_active_count(wc), 20);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 10 + 19);
    cr_expect_eq(mg_buf_refcount(buf), 22);

    bk_write_cache_drop_ledger(wc, 1);
    cr_expect_eq(bk_write_cache_active_count(wc), 10);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 19);
    cr_expect_eq(mg_buf_refcount(buf), 12);
    bk_entry e;
    for (int64_t i = 0; i < 10; i++) {
        cr_expect(!bk_write_cache_get(wc, 1, i, &e));
        cr_assert(bk_write_cache_get(wc, 2, i, &e), "entry %lld", (long long)i);
        cr_expect_eq(e.off, (size_t)i);
        mg_buf_unref(e.buf);
    }
    /* The flushing half still has ledger 1's entry (the storage must cope, see cache.h). */
    cr_assert(bk_write_cache_get(wc, 1, 100, &e));
    mg_buf_unref(e.buf);
    cr_expect_eq(bk_write_cache_last_entry(wc, 1), 100);
    cr_expect_eq(bk_write_cache_last_entry(wc, 2), 9);
    bk_write_cache_drop_ledger(wc, 3); /* unknown: no-op */
    cr_expect_eq(bk_write_cache_active_count(wc), 10);

    /* After the drop the half still takes puts, ledger 1 included. */
    cr_assert_eq(bk_write_cache_put(wc, 1, 5, buf, 0, 3), MG_OK);
    cr_expect_eq(bk_write_cache_active_count(wc), 11);
    cr_assert(bk_write_cache_get(wc, 1, 5, &e));
    cr_expect_eq(e.len, 3);
    mg_buf_unref(e.buf);
    bk_write_cache_clear_flushing(wc);
    cr_expect_eq(bk_write_cache_last_entry(wc, 1), 5);
    bk_write_cache_drop_ledger(wc, 2);
    bk_write_cache_drop_ledger(wc, 1);
    cr_expect_eq(bk_write_cache_active_count(wc), 0);
    cr_expect_eq(bk_write_cache_active_bytes(wc), 0);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    bk_write_cache_destroy(wc);
    mg_buf_unref(buf);
}

/* The concurrent test: the flush thread walks the flushing half while the test thread puts into
 * the active half and reads both. */
enum { CONC_FLUSH_ENTRIES = 2000, CONC_ACTIVE_ENTRIES = 2000, CONC_READER_ROUNDS = 50 };

typedef struct conc_reader {
    bk_write_cache *wc;
    size_t bad; /* items out of order or with wrong bytes */
    size_t seen;
} conc_reader;

static void *conc_reader_main(void *arg)
{
    conc_reader *r = arg;
    for (int round = 0; round < CONC_READER_ROUNDS; round++) {
        size_t count = 0;
        const bk_wc_item *items = bk_write_cache_flushing_items(r->wc, &count);
        if (items == NULL || count != CONC_FLUSH_ENTRIES) {
            r->bad++;
            continue;
        }
        for (size_t i = 0; i < count; i++) {
            const bk_wc_item *it = &items[i];
            if (i > 0 && (items[i - 1].ledger_id > it->ledger_id ||
                          (items[i - 1].ledger_id == it->ledger_id &&
                           items[i - 1].entry_id >= it->entry_id)))
                r->bad++;
            /* What a flush does with an item: read its bytes (and maybe take a reference). */
            mg_buf *held = mg_buf_ref(it->buf);
            if (!keyed_bytes_match(held, it->off, it->len, it->ledger_id, it->entry_id))
                r->bad++;
            mg_buf_unref(held);
            r->seen++;
        }
    }
    return NULL;
}

Test(write_cache, flush_thread_reads_flushing_half_concurrently)
{
    bk_write_cache *wc = NULL;
    cr_assert_eq(bk_write_cache_create(1 << 20, 4096, &wc), MG_OK);
    /* Out of order: ledger = i % 7, entry = (i * 7919) % 2000 keeps (ledger, entry) unique. */
    for (int64_t i = 0; i < CONC_FLUSH_ENTRIES; i++)
        put_keyed(wc, i % 7, (i * 7919) % CONC_FLUSH_ENTRIES);
    cr_assert_eq(bk_write_cache_active_count(wc), CONC_FLUSH_ENTRIES);
    cr_assert_eq(bk_write_cache_swap(wc), MG_OK);

    int64_t flush_last[7] = { -1, -1, -1, -1, -1, -1, -1 };
    for (int64_t i = 0; i < CONC_FLUSH_ENTRIES; i++)
        if ((i * 7919) % CONC_FLUSH_ENTRIES > flush_last[i % 7])
            flush_last[i % 7] = (i * 7919) % CONC_FLUSH_ENTRIES;

    conc_reader r = { .wc = wc };
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, conc_reader_main, &r), 0);
    size_t found = 0, last_ok = 0;
    for (int64_t i = 0; i < CONC_ACTIVE_ENTRIES; i++) {
        put_keyed(wc, 10 + i % 3, i);
        found += get_keyed(wc, 10 + i % 3, i);                          /* active */
        found += get_keyed(wc, i % 7, (i * 7919) % CONC_FLUSH_ENTRIES); /* flushing */
        last_ok += bk_write_cache_last_entry(wc, i % 7) == flush_last[i % 7];
        last_ok += bk_write_cache_last_entry(wc, 10 + i % 3) == i;
    }
    cr_assert_eq(pthread_join(thread, NULL), 0);
    cr_expect_eq(found, CONC_ACTIVE_ENTRIES * 2);
    cr_expect_eq(last_ok, CONC_ACTIVE_ENTRIES * 2);
    cr_expect_eq(r.bad, 0);
    cr_expect_eq(r.seen, (size_t)CONC_READER_ROUNDS * CONC_FLUSH_ENTRIES);
    cr_expect_eq(bk_write_cache_active_count(wc), CONC_ACTIVE_ENTRIES);
    bk_write_cache_clear_flushing(wc);
    cr_expect_eq(bk_write_cache_active_count(wc), CONC_ACTIVE_ENTRIES);
    bk_write_cache_destroy(wc);
}

/* --- read cache ----------------------------------------------------------------------------- */

#define OVERHEAD ((size_t)BK_READ_CACHE_ENTRY_OVERHEAD_BYTES)

static mg_buf *filled_buf(size_t len)
{
    mg_buf *buf = mg_buf_new(len);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < len; i++)
        mg_buf_data(buf)[i] = (uint8_t)i;
    mg_buf_set_len(buf, len);
    return buf;
}

static void expect_stats(const bk_read_cache *rc, uint64_t hits, uint64_t misses, uint64_t inserts,
                         uint64_t evictions, size_t bytes, size_t count)
{
    bk_read_cache_stats s;
    bk_read_cache_stats_get(rc, &s);
    cr_expect_eq(s.hits, hits);
    cr_expect_eq(s.misses, misses);
    cr_expect_eq(s.inserts, inserts);
    cr_expect_eq(s.evictions, evictions);
    cr_expect_eq(s.bytes, bytes);
    cr_expect_eq(s.count, count);
}

Test(read_cache, evicts_oldest_first_with_exact_bytes)
{
    bk_read_cache *rc = NULL;
    const size_t max = 3 * (100 + OVERHEAD);
    cr_assert_eq(bk_read_cache_create(max, &rc), MG_OK);
    mg_buf *buf = filled_buf(1000);
    for (int64_t e = 0; e < 3; e++)
        bk_read_cache_put(rc, 1, e, buf, (size_t)e * 100, 100);
    expect_stats(rc, 0, 0, 3, 0, max, 3);
    cr_expect_eq(mg_buf_refcount(buf), 4);

    /* Full: the 4th evicts exactly the oldest. */
    bk_read_cache_put(rc, 1, 3, buf, 300, 100);
    cr_expect(!bk_read_cache_contains(rc, 1, 0));
    cr_expect(bk_read_cache_contains(rc, 1, 1));
    cr_expect(bk_read_cache_contains(rc, 1, 2));
    cr_expect(bk_read_cache_contains(rc, 1, 3));
    expect_stats(rc, 0, 0, 4, 1, max, 3);
    cr_expect_eq(mg_buf_refcount(buf), 4);

    /* 250 + overhead needs two evictions: (1,1) then (1,2). */
    bk_read_cache_put(rc, 1, 4, buf, 0, 250);
    cr_expect(!bk_read_cache_contains(rc, 1, 1));
    cr_expect(!bk_read_cache_contains(rc, 1, 2));
    cr_expect(bk_read_cache_contains(rc, 1, 3));
    cr_expect(bk_read_cache_contains(rc, 1, 4));
    expect_stats(rc, 0, 0, 5, 3, 100 + 250 + 2 * OVERHEAD, 2);
    cr_expect_eq(mg_buf_refcount(buf), 3);

    /* A hit does not protect (1,3): FIFO, not LRU. */
    bk_entry e;
    cr_assert(bk_read_cache_get(rc, 1, 3, &e));
    cr_expect_eq(e.entry_id, 3);
    cr_expect_eq(e.off, 300);
    cr_expect_eq(e.len, 100);
    cr_expect_eq(mg_buf_data(e.buf)[e.off], (uint8_t)300);
    mg_buf_unref(e.buf);
    bk_read_cache_put(rc, 1, 5, buf, 0, 100);
    cr_expect(!bk_read_cache_contains(rc, 1, 3));
    cr_expect(bk_read_cache_contains(rc, 1, 4));
    cr_expect(bk_read_cache_contains(rc, 1, 5));
    expect_stats(rc, 1, 0, 6, 4, 250 + 100 + 2 * OVERHEAD, 2);

    bk_read_cache_destroy(rc);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}

Test(read_cache, oversize_entry_is_not_cached)
{
    bk_read_cache *rc = NULL;
    cr_assert_eq(bk_read_cache_create(200, &rc), MG_OK);
    mg_buf *buf = filled_buf(300);
    bk_read_cache_put(rc, 1, 0, buf, 0, 50);
    bk_read_cache_put(rc, 1, 1, buf, 0, 200 - OVERHEAD + 1); /* charge 201 */
    cr_expect(!bk_read_cache_contains(rc, 1, 1));
    cr_expect(bk_read_cache_contains(rc, 1, 0)); /* nothing evicted for it */
    bk_read_cache_put(rc, 1, 2, buf, 0, 300);
    cr_expect(!bk_read_cache_contains(rc, 1, 2));
    expect_stats(rc, 0, 0, 1, 0, 50 + OVERHEAD, 1);
    cr_expect_eq(mg_buf_refcount(buf), 2);
    /* Exactly the budget fits (evicting the first). */
    bk_read_cache_put(rc, 1, 3, buf, 0, 200 - OVERHEAD);
    cr_expect(bk_read_cache_contains(rc, 1, 3));
    cr_expect(!bk_read_cache_contains(rc, 1, 0));
    expect_stats(rc, 0, 0, 2, 1, 200, 1);
    bk_read_cache_destroy(rc);

    /* A zero budget caches nothing. */
    cr_assert_eq(bk_read_cache_create(0, &rc), MG_OK);
    bk_read_cache_put(rc, 1, 0, buf, 0, 0);
    cr_expect(!bk_read_cache_contains(rc, 1, 0));
    expect_stats(rc, 0, 0, 0, 0, 0, 0);
    bk_read_cache_destroy(rc);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}

Test(read_cache, stats_are_exact)
{
    bk_read_cache *rc = NULL;
    cr_assert_eq(bk_read_cache_create(1 << 20, &rc), MG_OK);
    mg_buf *buf = filled_buf(64);
    bk_entry e;
    cr_expect(!bk_read_cache_get(rc, 1, 0, &e));
    bk_read_cache_put(rc, 1, 0, buf, 0, 10);
    bk_read_cache_put(rc, 1, 1, buf, 10, 20);
    bk_read_cache_put(rc, 2, 0, buf, 30, 30);
    bk_read_cache_put(rc, 1, 0, buf, 0, 64); /* already cached: kept as it is */
    for (int i = 0; i < 3; i++) {
        cr_assert(bk_read_cache_get(rc, 1, 1, &e));
        cr_expect_eq(e.len, 20);
        mg_buf_unref(e.buf);
    }
    cr_assert(bk_read_cache_get(rc, 1, 0, &e));
    cr_expect_eq(e.len, 10);
    mg_buf_unref(e.buf);
    cr_expect(!bk_read_cache_get(rc, 2, 1, &e));
    cr_expect(!bk_read_cache_get(rc, 3, 0, &e));
    cr_expect(bk_read_cache_contains(rc, 2, 0)); /* not counted */
    cr_expect(!bk_read_cache_contains(rc, 2, 5));
    expect_stats(rc, 4, 3, 3, 0, 60 + 3 * OVERHEAD, 3);
    cr_expect_eq(mg_buf_refcount(buf), 4);
    bk_read_cache_destroy(rc);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}

Test(read_cache, drop_ledger_releases_references)
{
    bk_read_cache *rc = NULL;
    const size_t max = 6 * (10 + OVERHEAD);
    cr_assert_eq(bk_read_cache_create(max, &rc), MG_OK);
    mg_buf *b1 = filled_buf(10), *b2 = filled_buf(10);
    for (int64_t e = 0; e < 3; e++) {
        bk_read_cache_put(rc, 1, e, b1, 0, 10);
        bk_read_cache_put(rc, 2, e, b2, 0, 10);
    }
    cr_expect_eq(mg_buf_refcount(b1), 4);
    cr_expect_eq(mg_buf_refcount(b2), 4);
    bk_read_cache_drop_ledger(rc, 1);
    cr_expect_eq(mg_buf_refcount(b1), 1);
    cr_expect_eq(mg_buf_refcount(b2), 4);
    for (int64_t e = 0; e < 3; e++) {
        cr_expect(!bk_read_cache_contains(rc, 1, e));
        cr_expect(bk_read_cache_contains(rc, 2, e));
    }
    expect_stats(rc, 0, 0, 6, 0, 3 * (10 + OVERHEAD), 3);
    bk_read_cache_drop_ledger(rc, 7); /* unknown: no-op */

    /* The FIFO order of what is left is intact: fill up, then the next put evicts (2,0). */
    for (int64_t e = 10; e < 13; e++)
        bk_read_cache_put(rc, 1, e, b1, 0, 10);
    expect_stats(rc, 0, 0, 9, 0, max, 6);
    bk_read_cache_put(rc, 3, 0, b1, 0, 10);
    cr_expect(!bk_read_cache_contains(rc, 2, 0));
    cr_expect(bk_read_cache_contains(rc, 2, 1));
    cr_expect_eq(mg_buf_refcount(b2), 3);
    expect_stats(rc, 0, 0, 10, 1, max, 6);
    bk_read_cache_drop_ledger(rc, 2);
    bk_read_cache_drop_ledger(rc, 1);
    bk_read_cache_drop_ledger(rc, 3);
    expect_stats(rc, 0, 0, 10, 1, 0, 0);
    cr_expect_eq(mg_buf_refcount(b1), 1);
    cr_expect_eq(mg_buf_refcount(b2), 1);
    bk_read_cache_destroy(rc);
    mg_buf_unref(b1);
    mg_buf_unref(b2);
}

Test(read_cache, slices_of_one_buffer_keep_it_alive)
{
    /* Three entries sliced from one large read buffer: the buffer lives while any is cached. */
    bk_read_cache *rc = NULL;
    cr_assert_eq(bk_read_cache_create(2 * (100 + OVERHEAD), &rc), MG_OK);
    mg_buf *big = filled_buf(4096);
    bk_read_cache_put(rc, 9, 0, big, 0, 100);
    bk_read_cache_put(rc, 9, 1, big, 100, 100);
    cr_expect_eq(mg_buf_refcount(big), 3);
    bk_read_cache_put(rc, 9, 2, big, 200, 100); /* evicts (9,0) */
    cr_expect_eq(mg_buf_refcount(big), 3);
    expect_stats(rc, 0, 0, 3, 1, 2 * (100 + OVERHEAD), 2);
    mg_buf_unref(big); /* the caller lets go: the cache's references keep it alive */
    bk_entry e;
    cr_assert(bk_read_cache_get(rc, 9, 2, &e));
    cr_expect_eq(mg_buf_refcount(e.buf), 3);
    cr_expect_eq(mg_buf_data(e.buf)[e.off], (uint8_t)200);
    mg_buf_unref(e.buf);
    bk_read_cache_destroy(rc); /* frees it (ASan would report a leak otherwise) */
}

Test(read_cache, many_entries_chain_correctly)
{
    /* Far more entries than buckets (128 for this budget): every one stays reachable. */
    bk_read_cache *rc = NULL;
    const size_t n = 500;
    cr_assert_eq(bk_read_cache_create(n * (1 + OVERHEAD), &rc), MG_OK);
    mg_buf *buf = filled_buf(1);
    for (size_t i = 0; i < n; i++)
        bk_read_cache_put(rc, (int64_t)(i % 5), (int64_t)i, buf, 0, 1);
    for (size_t i = 0; i < n; i++)
        cr_expect(bk_read_cache_contains(rc, (int64_t)(i % 5), (int64_t)i));
    expect_stats(rc, 0, 0, n, 0, n * (1 + OVERHEAD), n);
    bk_read_cache_drop_ledger(rc, 0);
    expect_stats(rc, 0, 0, n, 0, (n - n / 5) * (1 + OVERHEAD), n - n / 5);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(bk_read_cache_contains(rc, (int64_t)(i % 5), (int64_t)i), i % 5 != 0);
    cr_expect_eq(mg_buf_refcount(buf), 1 + n - n / 5);
    bk_read_cache_destroy(rc);
    cr_expect_eq(mg_buf_refcount(buf), 1);
    mg_buf_unref(buf);
}
