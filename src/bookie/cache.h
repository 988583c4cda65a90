/*
 * The bookie's two in-memory entry caches (../shared/REFERENCE.md §2: read order write cache ->
 * flushing write cache -> read cache -> index).
 *
 * WRITE CACHE — double-buffered, as BookKeeper's DbLedgerStorage. Two halves, each a
 * preallocated item array (insertion order), an open-addressing hash from (ledger, entry) to
 * item index, and a hash from ledger to its largest entry id in that half. Adds go into the
 * ACTIVE half. A swap turns the active half into the FLUSHING half and the empty one into the
 * active half; the flush thread asks for the flushing items sorted by (ledger, entry), writes
 * them to the entry log and the index, and hands back; the loop then clears the flushing half,
 * dropping its references.
 *
 *     state:  idle (flushing half empty) --swap--> flushing --clear_flushing--> idle
 *             swap while flushing: MG_EAGAIN
 *
 * Invariants:
 *   1. Each item holds one reference to its buffer; count <= half_entries_max and bytes (the sum
 *      of item lengths; no per-item overhead: the entry bound covers the tables, which are
 *      preallocated) <= half_bytes_max, per half.
 *   2. Between swap and clear_flushing the flushing half is strictly immutable: its item array,
 *      its two hash tables and its counters are not written by anyone. The sorted view is a
 *      separate array of that half, written only by bk_write_cache_flushing_items() (on the
 *      flush thread) and read by nobody else, so the loop's lookups (which use the item array
 *      and hashes, never the sorted view) and the flush thread never touch the same memory
 *      with a write. Sorting therefore costs the flush thread, not the loop.
 *   3. All tables are allocated at create; put never allocates.
 *
 * Threads: put, get, last_entry, the counters, swap, clear_flushing and drop_ledger are called
 * on the loop thread only. flushing_items is called by one thread (the flush thread) between a
 * swap and the matching clear. The storage hands the swapped cache to the flush thread, and the
 * "flush done" back to the loop, through something that orders memory (a mutex, a queue, an
 * atomic release/acquire) — that is what makes the flushing half visible to the flush thread
 * and the sorted view's end visible before clear.
 *
 * Deleting a ledger: bk_write_cache_drop_ledger() removes its entries from the ACTIVE half only.
 * Its entries in the flushing half stay until clear: get and last_entry still see them, and the
 * flush writes them to the entry log and the index. The storage must therefore (a) not serve
 * reads of a ledger it is deleting from the write cache (check its own deleted set first), and
 * (b) either have the flush thread skip items of that ledger or delete the ledger from the index
 * again after that flush (bk_index_delete_ledger is idempotent); the entry-log bytes go at
 * compaction.
 *
 * READ CACHE — entries read from the entry logs (and read-ahead), FIFO: a hash chained over a
 * fixed bucket array plus one list in insertion order; get does not promote (as BookKeeper's
 * read cache, which is written in insertion order and evicted oldest first). Each entry is
 * charged len + BK_READ_CACHE_ENTRY_OVERHEAD_BYTES (bookie/limits.h), and the sum stays within
 * bytes_max, which also bounds the count (bytes_max / overhead). Loop thread only.
 *
 * Both caches hold (mg_buf, off, len) views, not copies: an entry that is a slice of a large
 * buffer (a 1 MiB O_DIRECT read holding a thousand entries) keeps the WHOLE buffer alive while
 * any of its slices is cached, yet is charged only len. The storage decides: copy small
 * entries out of large read buffers before caching them, or accept the slack.
 *
 * Private to src/bookie (the storage node's public API is bookie/bookie.h).
 */
#ifndef MG_BOOKIE_CACHE_H
#define MG_BOOKIE_CACHE_H

#include "bookie/client.h" /* bk_entry */
#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- write cache ---------------------------------------------------------------------------- */

typedef struct bk_write_cache bk_write_cache;

typedef struct bk_wc_item {
    int64_t ledger_id;
    int64_t entry_id;
    mg_buf *buf;
    size_t off;
    size_t len;
} bk_wc_item;

/* Creates a write cache of two halves, each holding at most half_bytes_max bytes of entries and
 * half_entries_max entries; all tables are allocated here (about 130 bytes per entry slot per
 * half). [out] *out, owned by the caller.
 * Errors: MG_EINVAL (half_bytes_max 0, half_entries_max 0 or above
 * BK_WRITE_CACHE_HALF_ENTRIES_MAX), MG_ENOMEM. Any thread. */
int bk_write_cache_create(size_t half_bytes_max, size_t half_entries_max, bk_write_cache **out);

/* Drops every reference (both halves) and frees the cache. No flush may be reading it. NULL is
 * a no-op. Loop thread. */
void bk_write_cache_destroy(bk_write_cache *wc);

/* Adds buf[off, off + len) as entry (ledger_id, entry_id) to the active half, taking a new
 * reference on buf (the caller keeps its own); no copy. An entry already in the active half is
 * replaced (its old reference dropped). Loop thread.
 * Errors: MG_EAGAIN (the active half is full by bytes or by entries: flush, or apply
 * backpressure; nothing changed), MG_ELIMIT (len > half_bytes_max: never fits), MG_EINVAL
 * (negative id, or the range is not inside buf's valid bytes). */
int bk_write_cache_put(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                       size_t off, size_t len);

/* Looks the entry up in the active half, then the flushing half. On true, *out holds the view
 * and a NEW reference to out->buf that the caller must mg_buf_unref. Loop thread. */
bool bk_write_cache_get(bk_write_cache *wc, int64_t ledger_id, int64_t entry_id, bk_entry *out);

/* The highest entry id of the ledger in either half, -1 if none. Loop thread. */
int64_t bk_write_cache_last_entry(bk_write_cache *wc, int64_t ledger_id);

/* The active half's payload bytes and entry count. Loop thread. */
size_t bk_write_cache_active_bytes(const bk_write_cache *wc);
size_t bk_write_cache_active_count(const bk_write_cache *wc);

/* True between a swap and the matching clear_flushing. Loop thread. */
bool bk_write_cache_flushing(const bk_write_cache *wc);

/* Makes the active half the (immutable) flushing half and the empty half active. Swapping an
 * empty active half is allowed (the flush then has nothing to write). Loop thread.
 * Errors: MG_EAGAIN (the previous flushing half is not cleared yet). */
int bk_write_cache_swap(bk_write_cache *wc);

/* The flushing half's items sorted by (ledger, entry), *count of them; sorted on the first call
 * after a swap, on the calling thread. The array and the buffers stay valid until
 * clear_flushing; the caller takes no references (take some to keep entries longer). Returns
 * NULL with *count 0 when nothing is flushing. One thread at a time (the flush thread), see the
 * header comment. */
const bk_wc_item *bk_write_cache_flushing_items(bk_write_cache *wc, size_t *count);

/* Drops the flushing half's references and empties it; the cache is no longer flushing. Only
 * after the flush thread is done with the items (handed back). No-op when not flushing. Loop
 * thread. */
void bk_write_cache_clear_flushing(bk_write_cache *wc);

/* Removes the ledger's entries from the ACTIVE half (dropping their references). The flushing
 * half is immutable: see "Deleting a ledger" above for what the storage must do. Loop thread. */
void bk_write_cache_drop_ledger(bk_write_cache *wc, int64_t ledger_id);

/* --- read cache ----------------------------------------------------------------------------- */

typedef struct bk_read_cache bk_read_cache;

/* Creates a read cache charged at most bytes_max (0: caches nothing). Allocates the bucket
 * array (one bucket per BK_READ_CACHE_BYTES_PER_BUCKET bytes, bounded). [out] *out, owned by the
 * caller. Errors: MG_ENOMEM. Any thread. */
int bk_read_cache_create(size_t bytes_max, bk_read_cache **out);

/* Drops every cached reference and frees the cache. NULL is a no-op. Loop thread. */
void bk_read_cache_destroy(bk_read_cache *rc);

/* Caches buf[off, off + len) as (ledger_id, entry_id), taking a new reference (the caller keeps
 * its own), evicting the oldest entries first until len + BK_READ_CACHE_ENTRY_OVERHEAD_BYTES
 * fits. Not cached (no reference taken, nothing evicted): an entry whose charge exceeds
 * bytes_max, an entry already cached (entries are immutable; the cached one stays, in its
 * place), or when the node cannot be allocated. The range must be inside buf's valid bytes
 * (asserted). Loop thread. */
void bk_read_cache_put(bk_read_cache *rc, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                       size_t off, size_t len);

/* On true, *out holds the view and a NEW reference the caller must mg_buf_unref (a hit); false
 * is a miss. Counts hits and misses; does not change the eviction order. Loop thread. */
bool bk_read_cache_get(bk_read_cache *rc, int64_t ledger_id, int64_t entry_id, bk_entry *out);

/* True if the entry is cached; counts nothing. Loop thread. */
bool bk_read_cache_contains(const bk_read_cache *rc, int64_t ledger_id, int64_t entry_id);

/* Removes every cached entry of the ledger, dropping their references (not counted as
 * evictions). O(cached entries). Loop thread. */
void bk_read_cache_drop_ledger(bk_read_cache *rc, int64_t ledger_id);

typedef struct bk_read_cache_stats {
    uint64_t hits, misses, inserts, evictions;
    size_t bytes; /* charged: sum of len + BK_READ_CACHE_ENTRY_OVERHEAD_BYTES */
    size_t count;
} bk_read_cache_stats;

/* Counters since create. Loop thread. */
void bk_read_cache_stats_get(const bk_read_cache *rc, bk_read_cache_stats *out);

#endif
