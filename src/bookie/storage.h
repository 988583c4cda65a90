/*
 * The bookie's storage engine: BookKeeper's DbLedgerStorage design (journal, double-buffered
 * write cache, ledger-sorted entry logs, RocksDB location index, read cache), improved for
 * sequential catch-up reads (range reads found with one index seek and served by a few large
 * O_DIRECT reads; an asynchronous read-ahead). ../shared/ARCHITECTURE.md §4-6 and
 * ../shared/REFERENCE.md §2.
 *
 * Threads: a bk_storage belongs to one libuv loop (the bookie's), and every function here is
 * called on that loop; every callback runs on it. Disk work happens elsewhere: the journal
 * thread (append + group-commit fdatasync), the flush thread (write cache -> entry log + index)
 * and libaio (entry-log reads, completions polled on the loop). Nothing here blocks the loop
 * on a disk.
 *
 * Payload ownership: an add takes a reference to the caller's mg_buf range; a read hands out
 * entries as (mg_buf, offset, length) views valid during the callback (take a reference with
 * mg_buf_ref to keep one), so an entry is sent to the network without a copy.
 *
 * Errors: MG_EFENCED (add to a fenced ledger), MG_ENOTFOUND (no such entry or ledger),
 * MG_ECORRUPT (the stored bytes fail their checksum or point outside a file: reported for that
 * entry, never served), MG_EREADONLY (the storage hit an I/O error on write or sync and refuses
 * adds until bk_storage_resume or a restart; reads go on), MG_ENOSPC (the same read-only state,
 * entered because the disk was full: adds are refused with it so that the writer learns why),
 * MG_EAGAIN (a bounded queue is full: retry later), MG_ECLOSED.
 */
#ifndef MG_BOOKIE_STORAGE_H
#define MG_BOOKIE_STORAGE_H

#include "bookie/io.h"
#include "common/buf.h"
#include "common/metrics.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct bk_storage bk_storage;

typedef struct bk_storage_opts {
    const char *journal_dir;
    const char *ledger_dir;           /* entry logs and the location index */
    size_t write_cache_bytes;         /* both halves together; 0 = 64 MiB */
    size_t read_cache_bytes;          /* 0 = 64 MiB */
    uint32_t journal_group_wait_us;   /* 0 = 1000 */
    uint32_t journal_group_bytes_max; /* 0 = 4 MiB (BK_JOURNAL_GROUP_BYTES_MAX_DEFAULT) */
    uint64_t journal_segment_bytes;   /* 0 = 256 MiB */
    uint64_t entrylog_bytes_max;      /* 0 = 1 GiB */
    bool readahead;                   /* asynchronous read-ahead on (default on: set false to
                                         disable for comparisons) */
    size_t readahead_bytes;           /* one read-ahead window; 0 = 4 MiB */
    unsigned aio_depth;               /* in-flight O_DIRECT reads; 0 = 32 */
    bk_io *io;                        /* NULL = a plain one owned by the storage */
    mg_metrics *metrics;              /* NULL = no metrics */
} bk_storage_opts;

/* Shared with the RPC client (protocol.h), which must not include this header. */
#ifndef BK_ENTRY_DEFINED
#define BK_ENTRY_DEFINED
typedef struct bk_entry {
    int64_t entry_id;
    mg_buf *buf;
    size_t off;
    size_t len;
} bk_entry;
#endif

typedef void (*bk_add_done_cb)(int status, int64_t ledger_id, int64_t entry_id, void *arg);
/* entries[0..count) in entry order; valid during the callback only. */
typedef void (*bk_read_done_cb)(int status, const bk_entry *entries, size_t count, void *arg);
typedef void (*bk_lac_done_cb)(int status, int64_t last_entry_id, void *arg);
typedef void (*bk_done_cb)(int status, void *arg);

/* Opens the storage (creating directories), replays the journal into the write cache, starts
 * the threads. Synchronous (start-up). Errors: MG_EIO, MG_ECORRUPT, MG_ENOMEM, MG_EAGAIN
 * (directories locked by another bookie). */
int bk_storage_open(uv_loop_t *loop, const bk_storage_opts *opts, bk_storage **out);

/* Stops accepting work, completes what is in flight, flushes the write cache, closes. */
void bk_storage_close(bk_storage *s, bk_done_cb closed_cb, void *arg);

/* Adds an entry: payload[off, off + len) of buf (a reference is taken). done runs once the
 * journal record is on disk. Entry ids of a ledger need not arrive in order. */
int bk_storage_add(bk_storage *s, int64_t ledger_id, int64_t entry_id, mg_buf *buf, size_t off,
                   size_t len, bk_add_done_cb done, void *arg);

/* Reads one entry. */
int bk_storage_read(bk_storage *s, int64_t ledger_id, int64_t entry_id, bk_read_done_cb done,
                    void *arg);

/* Reads entries first..last of a ledger, stopping early at max_bytes (at least one entry is
 * returned if the first exists) or at the first missing entry. */
int bk_storage_read_range(bk_storage *s, int64_t ledger_id, int64_t first_entry_id,
                          int64_t last_entry_id, size_t max_bytes, bk_read_done_cb done, void *arg);

/* The highest entry id stored for the ledger (-1 if none; MG_ENOTFOUND if the ledger is
 * unknown). */
int bk_storage_read_lac(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg);

/* Fences a ledger durably: later adds fail with MG_EFENCED, reads still work. done gets the
 * last entry id stored. */
int bk_storage_fence(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg);

/* Deletes a ledger: its index entries go at once, its bytes when garbage collection compacts
 * the entry logs that hold them. */
int bk_storage_delete(bk_storage *s, int64_t ledger_id, bk_done_cb done, void *arg);

/* Flushes the write cache now: done runs once every entry added before the call is in an entry
 * log and the index (and the journal checkpoint has moved past it), or with the error that
 * stopped the flush. */
int bk_storage_flush(bk_storage *s, bk_done_cb done, void *arg);

/* Runs a garbage-collection pass now (normally one runs every minute): entry logs with no live
 * entries are removed, those whose live share fell below half are compacted. done runs when
 * the pass is over. */
int bk_storage_gc(bk_storage *s, bk_done_cb done, void *arg);

typedef struct bk_storage_stats {
    uint64_t adds;
    uint64_t reads_write_cache; /* entries served from each source */
    uint64_t reads_read_cache;
    uint64_t reads_disk;
    uint64_t disk_reads; /* O_DIRECT reads issued, foreground and read-ahead */
    uint64_t disk_read_bytes;
    uint64_t disk_walks; /* of those, stretches found by a walk (two index look-ups) */
    uint64_t readahead_windows;
    uint64_t readahead_bytes;      /* read into the read cache by read-ahead */
    uint64_t readahead_used_bytes; /* of those, served to readers */
    uint64_t flushes;
    uint64_t gc_logs_removed;
    uint64_t gc_bytes_compacted;
} bk_storage_stats;

/* Counters since open. Loop thread. */
void bk_storage_stats_get(const bk_storage *s, bk_storage_stats *out);

/* True once an I/O error put the storage in its read-only error state. Loop thread. */
bool bk_storage_read_only(const bk_storage *s);

/* 0 while writable, else the error that made the storage read-only (MG_ENOSPC: the disk was
 * full; MG_EIO or another code: an I/O error). Any thread (an atomic read), for health checks. */
int bk_storage_state(const bk_storage *s);

/* Makes a read-only storage writable again once the cause is gone (storage.c, "Error state"):
 * probes that both directories take a write and an fdatasync, resumes the journal and the entry
 * logs, runs the failed flush again. done(MG_OK) once writable (also when it was not
 * read-only); else done gets why it stays read-only: MG_ENOSPC (still full), MG_EIO,
 * MG_EREADONLY (a journal fdatasync had failed: only a restart recovers). done never runs inside
 * the call. Returns MG_OK, MG_EAGAIN (a flush is finishing: ask again), MG_ECLOSED, MG_ENOMEM.
 * Loop thread. */
int bk_storage_resume(bk_storage *s, bk_done_cb done, void *arg);

#endif
