/*
 * The bookie's location index: where each entry lies in the entry logs, and what is known about
 * each ledger (exists, fenced, last entry id). A RocksDB database in its own directory, laid
 * out as BookKeeper's DbLedgerStorage does it (../shared/REFERENCE.md §2).
 *
 * Key/value layout (format 1):
 *
 *     'e' ledger_id(u64 BE) entry_id(u64 BE)  -> log_id(u32 LE) offset(u32 LE) size(u32 LE)
 *     'l' ledger_id(u64 BE)                   -> version(u8 = 1) flags(u8: bit 0 fenced)
 *                                                last_entry_id(i64 BE, -1 = none)
 *     'v'                                     -> format version (u8 = 1)
 *
 * Ids are big-endian so that RocksDB's bytewise key order is (ledger, entry) order: every
 * entry of a ledger lies between 'e'+L and 'e'+(L+1), which is the iterate_upper_bound of every
 * seek (a seek never reads into the next ledger), and a DeleteRange over that span removes a
 * ledger. An entry value is exactly 12 bytes and not versioned: its length is its format (a
 * later format would use another length). A ledger value carries a version byte. A value of
 * any other shape, or a key of the wrong length inside a range, is reported as MG_ECORRUPT
 * (logged), never trusted.
 *
 * Invariants:
 *   1. Ids are >= 0 (negative ids are MG_EINVAL before anything is read or written).
 *   2. For every ledger with an 'e' key there is an 'l' key whose last_entry_id is the largest
 *      entry id ever indexed for it (put_batch writes both in one atomic batch). It is a high
 *      water mark: relocate does not change it.
 *   3. put_batch, set_fenced and delete_ledger are synced (fdatasync of RocksDB's WAL) before
 *      they return. relocate is not (compaction moves thousands of entries): call
 *      bk_index_sync() before deleting the entry log the entries were moved out of.
 *
 * Threads (single-writer rule): every WRITE (put_batch, relocate, set_fenced, delete_ledger,
 * sync) happens on one thread at a time — the storage's flush/maintenance thread. put_batch and
 * set_fenced read-modify-write the ledger info, so two concurrent writers could lose an update;
 * overlapping writes are caught by an assertion. Reads (get, seek, seek_run, ledger_get,
 * ledgers) are safe from any thread at any time, concurrently with the writer. open and close
 * are not concurrent with anything.
 *
 * Fencing is recorded, not enforced: put_batch indexes entries of a fenced ledger too (the
 * storage refuses the adds; recovery writes may still arrive), and a put to a deleted ledger
 * creates it again — the storage filters those out (see cache.h on deletion).
 *
 * Private to src/bookie (the storage node's public API is bookie/bookie.h).
 */
#ifndef MG_BOOKIE_INDEX_H
#define MG_BOOKIE_INDEX_H

#include "bookie/entrylog.h" /* bk_location */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bk_index bk_index;

typedef struct bk_index_put {
    int64_t ledger_id;
    int64_t entry_id;
    bk_location loc;
} bk_index_put;

typedef struct bk_ledger_info {
    bool exists;
    bool fenced;
    int64_t last_entry_id; /* -1: none */
} bk_ledger_info;

/* Opens (creating if missing, parent directories included) the index in dir.
 * [out] *out: the index, owned by the caller (bk_index_close).
 * Errors: MG_EAGAIN (dir is locked by another open index, in this or another process; logged),
 * MG_ECORRUPT (RocksDB reports corruption, or an unknown format version), MG_EIO, MG_ENOMEM. */
int bk_index_open(const char *dir, bk_index **out);

/* Closes the index. No call may be running or start on any thread. NULL is a no-op. */
void bk_index_close(bk_index *ix);

/* Indexes puts[0, n) in one atomic, synced write batch, and in the same batch raises each
 * touched ledger's info to exists = true, last_entry_id = max(old, largest entry id here). A
 * put for an entry already indexed replaces its location. n == 0 is a no-op.
 * Writer thread. Errors: MG_EINVAL (a negative id; nothing written), MG_ELIMIT
 * (n > BK_INDEX_PUT_BATCH_MAX), MG_ECORRUPT (a touched ledger's info is corrupt; nothing
 * written), MG_EIO, MG_ENOMEM. */
int bk_index_put_batch(bk_index *ix, const bk_index_put *puts, size_t n);

/* Looks up one entry. [out] *out on MG_OK. Any thread.
 * Errors: MG_ENOTFOUND, MG_EINVAL, MG_ECORRUPT, MG_EIO. */
int bk_index_get(bk_index *ix, int64_t ledger_id, int64_t entry_id, bk_location *out);

/* Finds the first entry of the ledger with id >= entry_id (one iterator seek, bounded to the
 * ledger). [out] *found_entry_id, *out on MG_OK. Any thread.
 * Errors: MG_ENOTFOUND (no such entry in this ledger), MG_EINVAL, MG_ECORRUPT, MG_EIO. */
int bk_index_seek(bk_index *ix, int64_t ledger_id, int64_t entry_id, int64_t *found_entry_id,
                  bk_location *out);

/* Finds the run of consecutive entries first_entry_id, first_entry_id + 1, ... of the ledger,
 * stopping at the first missing id, after last_entry_id, or when capacity entries were found —
 * one iterator seek and Next() steps, what a range read uses to find a contiguous run.
 * [out] out[0, *count) in entry order, *count (0 on error). Any thread.
 * Errors: MG_ENOTFOUND (first_entry_id itself is missing), MG_EINVAL (negative id,
 * first > last, capacity 0), MG_ECORRUPT, MG_EIO. */
int bk_index_seek_run(bk_index *ix, int64_t ledger_id, int64_t first_entry_id,
                      int64_t last_entry_id, bk_index_put *out, size_t capacity, size_t *count);

/* Reads a ledger's info. An unknown ledger is MG_OK with exists = false, fenced = false,
 * last_entry_id = -1. Any thread. Errors: MG_EINVAL, MG_ECORRUPT, MG_EIO. */
int bk_index_ledger_get(bk_index *ix, int64_t ledger_id, bk_ledger_info *out);

/* Marks a ledger fenced, durably (synced), creating its info (exists, last_entry_id -1) if it
 * is unknown. Fencing a fenced ledger is MG_OK. Writer thread.
 * Errors: MG_EINVAL, MG_ECORRUPT, MG_EIO. */
int bk_index_ledger_set_fenced(bk_index *ix, int64_t ledger_id);

/* Deletes a ledger: a DeleteRange over all its entries plus its info, one synced batch.
 * Idempotent: an unknown ledger is MG_OK. Writer thread. Errors: MG_EINVAL, MG_EIO. */
int bk_index_delete_ledger(bk_index *ix, int64_t ledger_id);

/* Compaction: sets the entry's location to `to` only if it still equals `from` (written to the
 * WAL, not synced: see invariant 3). Writer thread.
 * Returns MG_OK (moved) or MG_ENOTFOUND (the entry was deleted, or indexed elsewhere meanwhile
 * — not an error for compaction: leave it). Errors: MG_EINVAL, MG_ECORRUPT, MG_EIO. */
int bk_index_relocate(bk_index *ix, int64_t ledger_id, int64_t entry_id, bk_location from,
                      bk_location to);

/* Makes every earlier write durable (fdatasync of the WAL), e.g. after a run of relocates.
 * Writer thread. Errors: MG_EIO. */
int bk_index_sync(bk_index *ix);

/* Calls fn for every known ledger, in ascending id order. fn returns MG_OK to go on; any other
 * value stops the walk and is returned. Any thread; the walk sees the index as it was when the walk
 * began (a RocksDB iterator pins that state), so fn may call the index (writes only on the writer
 * thread). Errors: fn's value, MG_ECORRUPT (a corrupt ledger key or value; the walk stops), MG_EIO,
 * MG_ENOMEM. */
int bk_index_ledgers(bk_index *ix,
                     int (*fn)(int64_t ledger_id, const bk_ledger_info *info, void *arg),
                     void *arg);

#endif
