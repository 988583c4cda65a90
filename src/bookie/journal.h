/*
 * The bookie's journal: a write-ahead log with group commit, after BookKeeper's Journal.
 *
 * Every add (and every fence) is appended here before the bookie acknowledges it; the journal
 * thread writes whatever has queued up with one pwrite, covers it with one fdatasync, and only
 * then completes the records, in append order. The entries also go to the write cache and later
 * to the entry logs; once the flush thread has made them durable there it checkpoints the
 * journal, which persists a mark and deletes the segment files before it. At start-up the
 * records after the mark are replayed into the write cache. See journal.c for the file format,
 * the group-commit rule and the state machine (OPEN -> FAILED (sticky) -> CLOSED).
 *
 * Threads: bk_journal_open and bk_journal_close on one thread (the storage's start-up and
 * shutdown); bk_journal_append, bk_journal_durable_pos, bk_journal_failed,
 * bk_journal_sync_count from any thread; bk_journal_checkpoint from any thread (the flush
 * thread), serialised internally. Completions run on the journal thread.
 *
 * Private to src/bookie (the storage node's public API is bookie/bookie.h).
 */
#ifndef MG_BOOKIE_JOURNAL_H
#define MG_BOOKIE_JOURNAL_H

#include "bookie/io.h"
#include "common/buf.h"
#include "common/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bk_journal bk_journal;

/* Defaults for the options left 0. */
#define BK_JOURNAL_SEGMENT_BYTES_DEFAULT   (256ull * 1024 * 1024)
#define BK_JOURNAL_GROUP_WAIT_US_DEFAULT   1000u
/* BookKeeper flushes its journal at 512 KiB; Pulsar batches make entries of ~128 KiB, so that
 * would be four entries per fdatasync. 4 MiB groups measured ~15 % more produce throughput on
 * standalone (perf produce, 1 KiB messages batched, 198-201k against 220-239k msg/s, runs
 * alternated); a lone add still waits only one step of the group window. */
#define BK_JOURNAL_GROUP_BYTES_MAX_DEFAULT (4u * 1024 * 1024)
#define BK_JOURNAL_QUEUE_MAX_DEFAULT       65536u

/* Size of the fixed record header on disk (see journal.c): payload_len u32, crc u32, type u8,
 * ledger_id u64, entry_id u64, segment u32. */
#define BK_JOURNAL_RECORD_HEADER_BYTES 29u

typedef struct bk_journal_opts {
    const char *dir;          /* created (with its parents) if missing */
    bk_io *io;                /* required; borrowed, must outlive the journal */
    uint64_t segment_bytes;   /* preallocated size of a segment file; 0 = 256 MiB; within
                                 BK_JOURNAL_SEGMENT_BYTES_MIN..BK_JOURNAL_SEGMENT_BYTES_MAX */
    uint32_t group_wait_us;   /* 0 = 1000; at most BK_JOURNAL_GROUP_WAIT_US_MAX */
    uint32_t group_bytes_max; /* 0 = 4 MiB; at most BK_JOURNAL_GROUP_BYTES_MAX */
    uint32_t queue_max;       /* records accepted but not yet completed; 0 = 65536; at most
                                 BK_JOURNAL_QUEUE_RECORDS_MAX; past it append returns
                                 MG_EAGAIN */
    mg_metrics *metrics;      /* NULL = none; borrowed, must outlive the journal */
    bool buffered;            /* write through the page cache, not O_DIRECT (which is used
                                 when the file system allows it; see journal.c) */
} bk_journal_opts;

/* Record types. */
enum { BK_JREC_ADD = 1, BK_JREC_FENCE = 2 };

/* A place in the journal: a segment id and a byte offset in it. Totally ordered by
 * (segment_id, offset). */
typedef struct bk_journal_pos {
    uint64_t segment_id;
    uint64_t offset;
} bk_journal_pos;

/* -1, 0 or 1 as a is before, equal to or after b. */
int bk_journal_pos_cmp(bk_journal_pos a, bk_journal_pos b);

/* Called once per replayed record, in journal order, on the thread calling bk_journal_open.
 * payload[0, len) is valid during the call only (copy it to keep it); payload may be NULL when
 * len is 0. */
typedef void (*bk_journal_replay_fn)(int type, int64_t ledger_id, int64_t entry_id,
                                     const uint8_t *payload, size_t len, void *arg);

/* Opens the journal in opts->dir: creates the directory if missing, reads the checkpoint mark,
 * deletes segment files wholly before it (left over from an interrupted checkpoint), replays
 * synchronously every intact record after the mark through replay (may be NULL), creates a new
 * preallocated segment for new records and starts the journal thread. A torn or corrupt record
 * ends the replay of its segment with a logged warning and is not an error.
 * On success *out owns the journal (release with bk_journal_close).
 * Errors: MG_EINVAL (missing dir/io, option out of range, path too long), MG_ECORRUPT (the
 * checkpoint file is damaged: bad size, magic or CRC), MG_EIO (a read, write or sync failed),
 * MG_ENOSPC (no room for the new segment), MG_ELIMIT (more than BK_JOURNAL_SEGMENTS_MAX segment
 * files), MG_ENOMEM, or another code converted from errno. *out is untouched on error. */
int bk_journal_open(const bk_journal_opts *opts, bk_journal_replay_fn replay, void *arg,
                    bk_journal **out);

/* Completion of an append: status MG_OK once the record is on disk (fdatasync returned), or
 * MG_EIO / MG_ENOSPC when the journal failed before that. Runs on the journal thread, in append
 * order; hand the result to your own loop. It may call bk_journal_append (which then refuses
 * with MG_EREADONLY if the journal failed), but must not block for long (it holds up every
 * later completion) and must not call bk_journal_close (which joins this thread). */
typedef void (*bk_journal_done_fn)(int status, void *arg);

/* Queues a record of the given type (BK_JREC_ADD or BK_JREC_FENCE) for ledger_id/entry_id with
 * payload buf[off, off + len): a reference is taken on buf (the caller keeps its own) and the
 * bytes are not copied until the journal thread writes them, so they must not change meanwhile
 * (mg_buf contents are read-only once shared). buf may be NULL when len is 0 (a fence). done
 * (may be NULL) is called exactly once iff this returns MG_OK (the journal has dropped its
 * reference on buf by then); on error it is never called and no reference is kept.
 * Any thread. Errors: MG_EINVAL (bad type, or the range is not inside buf), MG_ELIMIT (len over
 * BK_JOURNAL_RECORD_BYTES_MAX), MG_EREADONLY (the journal failed), MG_ECLOSED (close has
 * begun), MG_EAGAIN (queue_max records are pending: retry after completions). */
int bk_journal_append(bk_journal *j, int type, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                      size_t off, size_t len, bk_journal_done_fn done, void *arg);

/* The position just after the last record made durable: every record completed with MG_OK lies
 * before it. Right after open it is (new segment, 0), after every replayed record. Any thread. */
bk_journal_pos bk_journal_durable_pos(bk_journal *j);

/* Declares that every record before pos is durable elsewhere (entry logs and index): persists
 * the mark atomically (temporary file, fdatasync, rename, directory fsync), then retires the
 * segment files that lie entirely before pos (a few are kept as spares, reused for later
 * segments; the rest are deleted). pos must come from bk_journal_durable_pos (read
 * before the data it covers was frozen for flushing). A pos not after the current mark does
 * nothing and returns MG_OK. Any thread; concurrent calls are serialised.
 * Errors: MG_EINVAL (pos after the durable position), MG_EIO / MG_ENOSPC (the mark could not be
 * written; the old mark stays valid and no file is deleted). A failed deletion is only logged. */
int bk_journal_checkpoint(bk_journal *j, bk_journal_pos pos);

/* True once a write, sync or segment creation failed: the journal is in its sticky FAILED state
 * and refuses appends until reopened. Any thread. */
bool bk_journal_failed(const bk_journal *j);

/* Leaves the FAILED state when that is safe (journal.c, STATE MACHINE): waits (at most 30 s)
 * for the journal thread to complete the failed records and start a new segment. Returns MG_OK
 * (OPEN: appends accepted again, also when the journal had not failed), MG_ESTATE (the failure
 * was a group's fdatasync: only a restart recovers), MG_ENOSPC / MG_EIO (the new segment could
 * not be created: still FAILED), MG_ETIMEDOUT, MG_ECLOSED. Blocks: call it from a thread that
 * may wait for the disk (the storage's maintenance thread), never from a loop. */
int bk_journal_resume(bk_journal *j);

/* MG_OK while OPEN, else the error that made it FAILED (MG_ENOSPC or MG_EIO). Any thread. */
int bk_journal_fail_status(const bk_journal *j);

/* Number of fdatasync calls made on segment data for groups of records (not counting segment
 * creation or checkpoints). For tests and diagnostics. Any thread. */
uint64_t bk_journal_sync_count(const bk_journal *j);

/* Stops accepting appends (they return MG_ECLOSED), writes and syncs what is queued and
 * completes it (with MG_OK, or the failure status), joins the journal thread, closes the files
 * and frees the journal. No append may run concurrently with or after the return of this call.
 * Records completed with MG_OK are replayed by the next open unless checkpointed. NULL is a
 * no-op. The thread that opened the journal. */
void bk_journal_close(bk_journal *j);

#endif
