/*
 * The bookie's storage engine; API and error codes in bookie.h.
 *
 * Pieces: journal.c (write-ahead log, group commit), cache.c (double-buffered write cache,
 * read cache), entrylog.c (ledger-sorted data files), index.c (RocksDB location index),
 * aio.c (O_DIRECT reads through libaio).
 *
 * Threads and who touches what:
 *   loop         every public call and callback; the caches; read state; libaio completions
 *   journal      appends and fdatasyncs; its completions come back through `jq` (an mg_queue)
 *   maintenance  flushes the write cache's flushing half to the entry log, syncs it, writes
 *                the index, persists fences, advances the journal checkpoint; then garbage
 *                collection. It is the only writer of the entry logs and the index.
 *   threadpool   index look-ups for reads (uv_queue_work): the loop never waits on RocksDB;
 *                and the check (CRC, size, ids) of the records of each stretch read from disk
 *
 * Write path: add -> write cache (active half) -> journal append -> (journal thread: fdatasync)
 * -> jq -> loop -> caller's callback. The entry sits in the write cache before its journal
 * record is written, so the journal position read when the halves are swapped is a safe
 * checkpoint once the flushing half is in the entry log and the index: every record before it
 * belongs to an entry in that half or in an earlier one.
 *
 * Read path: write cache -> read cache -> in-flight read-ahead window (wait for it) -> index
 * (two point look-ups planning a walk, else one seek for a whole run) -> O_DIRECT read of each
 * contiguous stretch -> every record of the stretch checked on the threadpool (a walk finds its
 * records by their headers there) -> parsed in place on the loop: entries are
 * handed out as slices of the read buffer, never copied. The first record that does not check
 * ends the read there (MG_ECORRUPT, logged, counted): a bad record is never served. A read
 * owns one reference per disk chunk it used (its entries share it) and one per cache hit, in
 * its `held` list; its entries are views kept alive by those.
 *
 * Read-ahead (the idea of BookKeeper BP-49): per ledger, the engine remembers where the last
 * read ended. A read that starts there is sequential; after it, if no window is in flight and
 * the reader has passed 75 % of the last window, a background window of readahead_bytes is
 * read into the read cache with the BACKGROUND aio class (bounded in-flight, never ahead of
 * foreground reads). The read that triggered it does not wait. A read that wants an entry of
 * an in-flight window waits for that window only. A read that ends while other reads of the
 * same ledger are still in progress triggers nothing: that caller pipelines its reads, i.e. it
 * reads ahead itself (the broker's prefetcher), and a window would only read its data twice.
 *
 * Error state: a failed journal append or sync, or a failed flush (entry log write, sync, index
 * write), puts the engine in READ_ONLY: adds and fences fail at once with MG_ENOSPC when the
 * cause was a full disk, else with MG_EREADONLY; reads go on (the write cache keeps unflushed
 * entries readable, the failed flush's half included; the journal still holds them, since its
 * checkpoint moves only after a flush succeeded). The cause is kept (bk_storage_state) for the
 * health checks, the `bookie_server_status` metric and the adds' answers.
 *
 *     OPEN --I/O error--> READ_ONLY --bk_storage_resume (checks pass)--> OPEN
 *       \                     \--close--> CLOSING --> CLOSED
 *        \---------------------close---------^
 *
 * bk_storage_resume (an operator freed space; `PUT /api/v1/bookie/state/readonly`) runs on the
 * maintenance thread: (1) a probe file is written and fdatasync'ed in the journal directory
 * (BK_RESUME_PROBE_BYTES) and in the entry-log directory (with room reserved for a whole flush,
 * half the write cache), then removed: if the disk is still full nothing changes; (2) the journal
 * leaves FAILED if its failure was not a group fdatasync (journal.c: those never are retried, only
 * a restart replays what is on disk); (3) the entry logs leave ERROR by starting a new log; (4) the
 * flush that failed is run again from the start (the flushing half is still in the write cache),
 * then the journal checkpoint moves. Only when all of that succeeds does the engine become OPEN
 * again; otherwise it stays READ_ONLY and the caller gets the reason. Nothing acknowledged is lost
 * either way: until a flush has succeeded the journal keeps every acknowledged entry for the replay
 * of a restart.
 */
#include "bookie/bookie.h"
#include "common/clock.h"
#include "common/fs.h"

#include "bookie/aio.h"
#include "bookie/cache.h"
#include "bookie/entrylog.h"
#include "bookie/index.h"
#include "bookie/journal.h"
#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/freelist.h"
#include "common/log.h"
#include "common/queue.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* An add or a fence on its way through the write cache and the journal: from the storage's
 * add_pool (add_ctx_new), back to it in jq_drain on the storage's loop, after its callback. The
 * journal thread only pushes it onto the completion queue. */
typedef struct add_ctx {
    bk_storage *s;
    int64_t ledger_id, entry_id;
    mg_buf *buf;
    size_t off, len;
    bk_add_done_cb cb;
    void *arg;
    int status;
    uint64_t start_ns;
    int type;          /* BK_JREC_ADD or BK_JREC_FENCE */
    bool refused;      /* refused by a read-only storage: no new error to report */
    uint32_t ro_epoch; /* s->ro_epoch when accepted: a failure from before a resume is old news */
    bk_lac_done_cb fence_cb;
    struct add_ctx *next;
} add_ctx;

typedef struct ra_state ra_state;
typedef struct read_ctx read_ctx;

typedef struct disk_chunk {
    read_ctx *r;
    uint64_t offset;
    size_t len;
    size_t first, end; /* run[first, end) lie in this chunk */
    mg_buf *buf;
    size_t data_off, data_len;
    int status;
    size_t valid;   /* run[first, first + valid) checked (CRC, size, ids) by chunk_verify */
    bool used;      /* entries view buf: its reference moves to the read's held list */
    uv_work_t work; /* chunk_verify on the threadpool */
} disk_chunk;

struct read_ctx {
    bk_storage *s;
    int64_t ledger_id;
    int64_t first, last, next;
    size_t max_bytes, bytes;
    bk_read_done_cb cb;
    void *arg;
    bk_entry *entries; /* views: each buffer is kept alive by a reference in held */
    size_t count, cap;
    mg_buf **held; /* the references this read owns: one per cache hit, one per disk chunk */
    size_t held_count, held_cap;
    int status;
    int source; /* 0 write cache, 1 read cache, 2 disk: the slowest source used */
    uint64_t start_ns;
    bool readahead; /* a read-ahead window, not a caller's read */
    ra_state *ra;
    ra_state *ra_fg; /* a caller's read: its ledger's state, counting it in fg_inflight */
    /* index look-up */
    uv_work_t work;
    bk_index_put *run;
    size_t run_count, run_pos;
    /* a walk (see index_work): the run's locations come from the record headers of one read of
     * [walk_offset, walk_offset + walk_len) of entry log walk_log, not from the index */
    bool walk;
    uint32_t walk_log, walk_offset, walk_len;
    size_t walk_cap;                       /* the run's capacity: the entries the walk may find */
    disk_chunk chunks[BK_DISK_CHUNKS_MAX]; /* the disk reads in flight for one stretch */
    int chunk_count, chunks_done;          /* done: read and verified, or failed */
    int work_status;
    struct read_ctx *next_waiter;
    struct read_ctx *next_ready;
};

struct ra_state {
    int64_t ledger_id;     /* -1: free slot */
    int64_t next_expected; /* where the last read of this ledger ended + 1 */
    int64_t window_first, window_last;
    bool inflight;
    uint32_t fg_inflight; /* callers' reads of this ledger in progress */
    read_ctx *waiters;
    uint64_t used_tick;
};

typedef struct flush_waiter {
    bk_done_cb cb;
    void *arg;
    struct flush_waiter *next;
} flush_waiter;

typedef struct delete_item {
    int64_t ledger_id;
    bk_done_cb cb;
    void *arg;
    int status;
    struct delete_item *next;
} delete_item;

typedef struct fence_item {
    int64_t ledger_id;
    struct fence_item *next;
} fence_item;

struct bk_storage {
    uv_loop_t *loop;
    char *journal_dir, *ledger_dir;
    size_t readahead_bytes;
    bool readahead_on;
    uint64_t wc_half_bytes; /* one flush writes at most this much */
    bk_io *io;
    bool own_io;
    bk_journal *journal;
    bk_entrylogs *elogs;
    bk_index *index;
    bk_write_cache *wc;
    bk_read_cache *rc;
    bk_aio *aio;
    mg_queue *jq;
    uv_async_t wake; /* maintenance results and deferred callbacks */
    uv_timer_t flush_timer;
    int handles_open;

    /* loop-only state */
    bool closing, read_only;
    int ro_cause;      /* the error that made it read-only (MG_ENOSPC, MG_EIO, ...) */
    int ro_state;      /* atomic copy for other threads: 0 writable, else ro_cause */
    uint32_t ro_epoch; /* counts resumes */
    flush_waiter *resume_waiters;
    int adds_inflight, reads_inflight;
    add_ctx *waiting_head, *waiting_tail;
    mg_freelist add_pool; /* released add_ctx (BK_STORAGE_ADD_POOL_MAX), on the storage's loop */
    int waiting_count;
    read_ctx *ready_head, *ready_tail;
    ra_state ra[BK_RA_LEDGERS_MAX];
    uint64_t ra_tick;
    int64_t *fenced;
    size_t fenced_count, fenced_cap;
    flush_waiter *flush_waiters; /* wait for the flush after the one in progress */
    flush_waiter *flush_current; /* wait for the flush in progress */
    bk_done_cb closed_cb;
    void *closed_arg;

    /* shared with the maintenance thread, under mu */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool flush_requested, flush_running, flush_done, stop;
    int flush_status;
    bool resume_requested, resume_running, resume_done;
    bool resume_flush; /* the failed flush's half is still in the write cache: run it again */
    int resume_status;
    bk_journal_pos flush_pos;
    fence_item *fences_pending;   /* persisted into the index by the next flush */
    delete_item *deletes_pending; /* for the maintenance thread */
    delete_item *deletes_done;    /* for the loop */
    uint64_t gc_next_ms;

    bk_storage_stats stats;   /* loop-only fields; gc_* and flushes under mu */
    flush_waiter *gc_waiters; /* loop-only: answered when gc_passes passes gc_target */
    uint64_t gc_passes;       /* under mu */
    uint64_t gc_target;
    bool gc_requested; /* under mu */
    bool gc_running;   /* under mu */

    /* metrics (NULL-safe) */
    mg_histogram *m_add_latency;
    mg_histogram *m_read_latency[3];
    mg_histogram *m_disk_read_bytes;
    mg_counter *m_stretches[2]; /* found by a walk, by the index */
    mg_counter *m_ra_issued, *m_ra_used;
    mg_counter *m_flush_bytes, *m_gc_logs_removed, *m_gc_bytes_compacted, *m_errors;
    mg_gauge *m_state[2]; /* bookie_state{state="writable"}, {state="read_only"} */
};

/* --- fenced ledgers (loop) ------------------------------------------------------------------ */

/* Fenced ledgers: a sorted array, looked up on every add (binary search) and changed only
 * by a fence or a delete (rare: a fence is a recovery). */
static size_t fenced_lower_bound(const bk_storage *s, int64_t ledger_id)
{
    size_t lo = 0, hi = s->fenced_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->fenced[mid] < ledger_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool is_fenced(const bk_storage *s, int64_t ledger_id)
{
    size_t i = fenced_lower_bound(s, ledger_id);
    return i < s->fenced_count && s->fenced[i] == ledger_id;
}

static int mark_fenced(bk_storage *s, int64_t ledger_id)
{
    size_t i = fenced_lower_bound(s, ledger_id);
    if (i < s->fenced_count && s->fenced[i] == ledger_id)
        return MG_OK;
    if (s->fenced_count == s->fenced_cap) {
        size_t cap = s->fenced_cap ? s->fenced_cap * 2 : 64;
        int64_t *p = mg_realloc(s->fenced, cap * sizeof(*p));
        if (p == NULL)
            return MG_ENOMEM;
        s->fenced = p;
        s->fenced_cap = cap;
    }
    memmove(&s->fenced[i + 1], &s->fenced[i], (s->fenced_count - i) * sizeof(s->fenced[0]));
    s->fenced[i] = ledger_id;
    s->fenced_count++;
    return MG_OK;
}

static void unmark_fenced(bk_storage *s, int64_t ledger_id)
{
    size_t i = fenced_lower_bound(s, ledger_id);
    if (i < s->fenced_count && s->fenced[i] == ledger_id) {
        memmove(&s->fenced[i], &s->fenced[i + 1], (s->fenced_count - i - 1) * sizeof(s->fenced[0]));
        s->fenced_count--;
    }
}

static void queue_fence_persist(bk_storage *s, int64_t ledger_id)
{
    fence_item *f = mg_malloc(sizeof(*f));
    if (f == NULL) {
        MG_WARN("bookie: out of memory: the fence of ledger %" PRId64
                " stays in the journal only until the next restart",
                ledger_id);
        return;
    }
    f->ledger_id = ledger_id;
    pthread_mutex_lock(&s->mu);
    f->next = s->fences_pending;
    s->fences_pending = f;
    pthread_mutex_unlock(&s->mu);
}

/* --- entering the error state ---------------------------------------------------------------- */

static void state_publish(bk_storage *s)
{
    __atomic_store_n(&s->ro_state, s->read_only ? s->ro_cause : 0, __ATOMIC_RELEASE);
    mg_gauge_set(s->m_state[0], s->read_only ? 0.0 : 1.0);
    mg_gauge_set(s->m_state[1], s->read_only ? 1.0 : 0.0);
}

static void enter_read_only(bk_storage *s, int cause, const char *what)
{
    if (!s->read_only) {
        s->ro_cause = cause == MG_ENOSPC ? MG_ENOSPC : cause == MG_EREADONLY ? MG_EIO : cause;
        if (cause == MG_ENOSPC)
            MG_ERROR("bookie: %s failed: the disk is full (%s): storage is now read-only; free "
                     "space, then `PUT /api/v1/bookie/state/readonly` with {\"readOnly\":false} "
                     "(or a restart) makes it writable again",
                     what, mg_strerror(cause));
        else
            MG_ERROR("bookie: %s failed (%s): storage is now read-only; check the disk, then "
                     "`PUT /api/v1/bookie/state/readonly` with {\"readOnly\":false} or a restart",
                     what, mg_strerror(cause));
    }
    s->read_only = true;
    state_publish(s);
    mg_counter_inc(s->m_errors);
}

/* What an add or a fence to a read-only storage is answered: the cause when the disk is full
 * (so that producers learn it), else MG_EREADONLY. */
static int ro_status(const bk_storage *s)
{
    return s->ro_cause == MG_ENOSPC ? MG_ENOSPC : MG_EREADONLY;
}

/* --- maintenance thread ----------------------------------------------------------------------- */

/* Writes the flushing half to the entry log, syncs, indexes it and persists pending fences,
 * then moves the journal checkpoint to pos (unless checkpoint is false: during replay).
 * Runs on the maintenance thread (or the opening thread before it exists). */
static int flush_half(bk_storage *s, bk_journal_pos pos, bool checkpoint)
{
    size_t count = 0;
    const bk_wc_item *items = bk_write_cache_flushing_items(s->wc, &count);
    bk_index_put *puts = NULL;
    if (count > 0) {
        puts = mg_malloc(count * sizeof(*puts));
        if (puts == NULL)
            return MG_ENOMEM;
    }
    uint64_t bytes = 0;
    int rc = MG_OK;
    for (size_t i = 0; i < count && rc == MG_OK; i++) {
        const bk_wc_item *it = &items[i];
        puts[i].ledger_id = it->ledger_id;
        puts[i].entry_id = it->entry_id;
        rc = bk_entrylogs_append(s->elogs, it->ledger_id, it->entry_id,
                                 mg_buf_data(it->buf) + it->off, it->len, &puts[i].loc);
        bytes += it->len;
    }
    if (rc == MG_OK && count > 0)
        rc = bk_entrylogs_sync(s->elogs);
    if (rc == MG_OK && count > 0)
        rc = bk_index_put_batch(s->index, puts, count);
    mg_free(puts);

    pthread_mutex_lock(&s->mu);
    fence_item *fences = s->fences_pending;
    s->fences_pending = NULL;
    pthread_mutex_unlock(&s->mu);
    while (fences) {
        fence_item *f = fences;
        fences = f->next;
        if (rc == MG_OK)
            rc = bk_index_ledger_set_fenced(s->index, f->ledger_id);
        if (rc != MG_OK) {
            /* put it back: the journal keeps the fence until a later flush persists it */
            pthread_mutex_lock(&s->mu);
            f->next = s->fences_pending;
            s->fences_pending = f;
            pthread_mutex_unlock(&s->mu);
        } else {
            mg_free(f);
        }
    }
    if (rc == MG_OK && checkpoint)
        rc = bk_journal_checkpoint(s->journal, pos);
    if (rc == MG_OK) {
        mg_counter_add(s->m_flush_bytes, bytes);
        pthread_mutex_lock(&s->mu);
        s->stats.flushes++;
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

typedef struct gc_log {
    uint64_t total;
    uint64_t live;
    bk_index *index;
} gc_log;

static void gc_count(int64_t ledger_id, uint64_t bytes, void *arg)
{
    gc_log *g = arg;
    g->total += bytes;
    bk_ledger_info info;
    if (bk_index_ledger_get(g->index, ledger_id, &info) == MG_OK && info.exists)
        g->live += bytes;
}

typedef struct gc_move {
    bk_storage *s;
    int status;
    uint64_t moved_bytes;
    bk_index_put *moved;
    bk_location *from;
    size_t count, cap;
} gc_move;

static int gc_copy_record(const bk_record *rec, bk_location loc, void *arg)
{
    gc_move *m = arg;
    bk_location cur;
    if (bk_index_get(m->s->index, rec->ledger_id, rec->entry_id, &cur) != MG_OK)
        return 0; /* deleted: drop */
    if (cur.log_id != loc.log_id || cur.offset != loc.offset)
        return 0; /* superseded: drop */
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        bk_index_put *p = mg_realloc(m->moved, cap * sizeof(*p));
        bk_location *f = p ? mg_realloc(m->from, cap * sizeof(*f)) : NULL;
        if (p)
            m->moved = p;
        if (f)
            m->from = f;
        if (p == NULL || f == NULL) {
            m->status = MG_ENOMEM;
            return 1;
        }
        m->cap = cap;
    }
    bk_index_put *put = &m->moved[m->count];
    put->ledger_id = rec->ledger_id;
    put->entry_id = rec->entry_id;
    int rc = bk_entrylogs_append(m->s->elogs, rec->ledger_id, rec->entry_id, rec->payload,
                                 rec->payload_len, &put->loc);
    if (rc != MG_OK) {
        m->status = rc;
        return 1;
    }
    m->from[m->count++] = loc;
    m->moved_bytes += rec->payload_len;
    return 0;
}

/* Garbage collection of finished entry logs. Crash safety: live entries are copied to the
 * current log and synced BEFORE the index points at the copies, and a log is removed only
 * after that; a crash in between leaves either the old copy referenced (the new one is garbage
 * for a later pass) or the old log unreferenced (removed by a later pass). */
static void gc_pass(bk_storage *s)
{
    uint32_t ids[256];
    size_t n = bk_entrylogs_list(s->elogs, ids, 256);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop || s->flush_requested;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            return; /* flushes come first; the next pass goes on */
        gc_log g = { .index = s->index };
        if (bk_entrylogs_ledger_map(s->elogs, ids[i], gc_count, &g) != MG_OK)
            continue;
        if (g.total > 0 && (double)g.live >= BK_GC_LIVE_SHARE_MIN * (double)g.total)
            continue;
        if (g.live > 0) {
            gc_move m = { .s = s, .status = MG_OK };
            int rc = bk_entrylogs_scan(s->elogs, ids[i], gc_copy_record, &m);
            if (rc == MG_OK && m.status == MG_OK)
                rc = bk_entrylogs_sync(s->elogs);
            for (size_t k = 0; rc == MG_OK && m.status == MG_OK && k < m.count; k++) {
                int r = bk_index_relocate(s->index, m.moved[k].ledger_id, m.moved[k].entry_id,
                                          m.from[k], m.moved[k].loc);
                if (r != MG_OK && r != MG_ENOTFOUND)
                    rc = r;
            }
            if (rc == MG_OK && m.status == MG_OK && m.count > 0)
                rc = bk_index_sync(s->index); /* relocations are durable before the removal */
            mg_free(m.moved);
            mg_free(m.from);
            if (rc != MG_OK || m.status != MG_OK) {
                MG_WARN("bookie: compaction of entry log %u stopped: %s", ids[i],
                        mg_strerror(rc != MG_OK ? rc : m.status));
                return;
            }
            mg_counter_add(s->m_gc_bytes_compacted, m.moved_bytes);
            pthread_mutex_lock(&s->mu);
            s->stats.gc_bytes_compacted += m.moved_bytes;
            pthread_mutex_unlock(&s->mu);
        }
        if (bk_entrylogs_remove(s->elogs, ids[i]) == MG_OK) {
            mg_counter_inc(s->m_gc_logs_removed);
            pthread_mutex_lock(&s->mu);
            s->stats.gc_logs_removed++;
            pthread_mutex_unlock(&s->mu);
            MG_INFO("bookie: entry log %u removed (%" PRIu64 " of %" PRIu64 " bytes live)", ids[i],
                    g.live, g.total);
        }
    }
}

/* Reserves room_bytes in a probe file in dir, writes and syncs its first block, removes it:
 * the disk takes writes again, with room for what must be written next. */
static int probe_dir(bk_storage *s, const char *dir, uint64_t room_bytes)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/.writable-probe", dir);
    void *buf = mg_calloc(1, BK_RESUME_PROBE_BYTES);
    if (buf == NULL)
        return MG_ENOMEM;
    int fd = -1;
    int rc = bk_io_open(s->io, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc == MG_OK && room_bytes > BK_RESUME_PROBE_BYTES)
        rc = bk_io_allocate(s->io, fd, 0, room_bytes);
    if (rc == MG_OK)
        rc = bk_io_pwrite(s->io, fd, buf, BK_RESUME_PROBE_BYTES, 0);
    if (rc == MG_OK)
        rc = bk_io_fdatasync(s->io, fd);
    if (fd >= 0)
        bk_io_close(s->io, fd);
    (void)bk_io_unlink(s->io, path);
    mg_free(buf);
    if (rc != MG_OK)
        MG_WARN("bookie: %s still refuses writes: %s", dir, mg_strerror(rc));
    return rc;
}

/* The maintenance thread's part of bk_storage_resume (see the header comment). */
static int resume_run(bk_storage *s, bool flush_again, bk_journal_pos pos)
{
    MG_TRY(probe_dir(s, s->journal_dir, BK_RESUME_PROBE_BYTES));
    /* The entry logs must take at least a whole flush (a half of the write cache). */
    MG_TRY(probe_dir(s, s->ledger_dir, s->wc_half_bytes));
    int rc = bk_journal_resume(s->journal);
    if (rc == MG_ESTATE) {
        MG_WARN("bookie: a journal fdatasync failed: only a restart (which replays the journal) "
                "makes the storage writable again");
        return MG_EREADONLY;
    }
    MG_TRY(rc);
    MG_TRY(bk_entrylogs_resume(s->elogs));
    if (flush_again)
        MG_TRY(flush_half(s, pos, true));
    return MG_OK;
}

static void *maintenance_main(void *arg)
{
    bk_storage *s = arg;
    mg_log_set_thread_name("bk-maint");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->flush_requested && !s->gc_requested && !s->deletes_pending &&
               !s->resume_requested && mg_clock_mono_ms() < s->gc_next_ms) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        if (s->deletes_pending) {
            delete_item *d = s->deletes_pending;
            s->deletes_pending = NULL;
            pthread_mutex_unlock(&s->mu);
            for (delete_item *k = d; k; k = k->next)
                k->status = bk_index_delete_ledger(s->index, k->ledger_id);
            pthread_mutex_lock(&s->mu);
            while (d) {
                delete_item *next = d->next;
                d->next = s->deletes_done;
                s->deletes_done = d;
                d = next;
            }
            uv_async_send(&s->wake);
            continue;
        }
        if (s->resume_requested) {
            s->resume_requested = false;
            s->resume_running = true;
            bool again = s->resume_flush;
            bk_journal_pos pos = s->flush_pos;
            pthread_mutex_unlock(&s->mu);
            int rc = resume_run(s, again, pos);
            pthread_mutex_lock(&s->mu);
            s->resume_running = false;
            s->resume_done = true;
            s->resume_status = rc;
            uv_async_send(&s->wake);
            continue;
        }
        if (s->flush_requested) {
            s->flush_requested = false;
            s->flush_running = true;
            bk_journal_pos pos = s->flush_pos;
            pthread_mutex_unlock(&s->mu);
            int rc = flush_half(s, pos, true);
            pthread_mutex_lock(&s->mu);
            s->flush_running = false;
            s->flush_done = true;
            s->flush_status = rc;
            uv_async_send(&s->wake);
            continue;
        }
        if (s->stop)
            break;
        if (!s->gc_requested && mg_clock_mono_ms() < s->gc_next_ms)
            continue;
        s->gc_next_ms = mg_clock_mono_ms() + BK_GC_INTERVAL_MS;
        s->gc_requested = false;
        s->gc_running = true;
        pthread_mutex_unlock(&s->mu);
        gc_pass(s);
        pthread_mutex_lock(&s->mu);
        s->gc_running = false;
        s->gc_passes++;
        uv_async_send(&s->wake);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* --- flushing (loop side) ----------------------------------------------------------------------
 */

static void retry_waiting_adds(bk_storage *s);
static void journal_done(int status, void *arg);

static void start_flush(bk_storage *s)
{
    if (s->read_only || bk_write_cache_flushing(s->wc))
        return;
    pthread_mutex_lock(&s->mu);
    bool fences = s->fences_pending != NULL;
    pthread_mutex_unlock(&s->mu);
    if (bk_write_cache_active_count(s->wc) == 0 && !fences)
        return;
    bk_journal_pos pos = bk_journal_durable_pos(s->journal);
    if (bk_write_cache_swap(s->wc) != MG_OK)
        return;
    s->flush_current = s->flush_waiters; /* this flush covers every add made so far */
    s->flush_waiters = NULL;
    pthread_mutex_lock(&s->mu);
    s->flush_pos = pos;
    s->flush_requested = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    retry_waiting_adds(s); /* the fresh active half has room */
}

static void flush_timer_cb(uv_timer_t *t)
{
    start_flush(t->data);
}

static void add_after_cache(bk_storage *s, add_ctx *a);
static void finish_close_if_idle(bk_storage *s);

static void retry_waiting_adds(bk_storage *s)
{
    while (s->waiting_head) {
        add_ctx *a = s->waiting_head;
        if (!s->read_only && bk_write_cache_put(s->wc, a->ledger_id, a->entry_id, a->buf, a->off,
                                                a->len) == MG_EAGAIN) {
            if (!bk_write_cache_flushing(s->wc))
                start_flush(s); /* swaps, then calls back here once */
            return;             /* still full: wait for the flush in progress */
        }
        s->waiting_head = a->next;
        if (s->waiting_head == NULL)
            s->waiting_tail = NULL;
        s->waiting_count--;
        if (s->read_only) {
            /* Not in the write cache: journalling it would acknowledge an entry that no read
             * finds until a restart. Refused, through the queue as every completion. */
            a->refused = true;
            journal_done(ro_status(s), a);
            continue;
        }
        add_after_cache(s, a);
    }
}

/* --- deferred read completions ------------------------------------------------------------------
 */

static void read_finish(read_ctx *r);

static void defer_read(read_ctx *r)
{
    bk_storage *s = r->s;
    r->next_ready = NULL;
    if (s->ready_tail)
        s->ready_tail->next_ready = r;
    else
        s->ready_head = r;
    s->ready_tail = r;
    uv_async_send(&s->wake);
}

static int waiter_push(flush_waiter **list, bk_done_cb cb, void *arg)
{
    flush_waiter *w = mg_malloc(sizeof(*w));
    if (w == NULL)
        return MG_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    w->next = *list;
    *list = w;
    return MG_OK;
}

/* Detaches the list first, so a callback may add a new waiter for the next round. */
static void waiters_answer(flush_waiter **list, int status)
{
    flush_waiter *w = *list;
    *list = NULL;
    while (w) {
        flush_waiter *next = w->next;
        w->cb(status, w->arg);
        mg_free(w);
        w = next;
    }
}

/* The maintenance thread finished a resume (see the header comment). */
static void resume_finished(bk_storage *s, int status)
{
    if (status == MG_OK && s->read_only) {
        s->read_only = false;
        s->ro_cause = 0;
        s->ro_epoch++;
        if (bk_write_cache_flushing(s->wc))
            bk_write_cache_clear_flushing(s->wc); /* flushed again by the resume */
        state_publish(s);
        MG_INFO("bookie: storage is writable again");
        waiters_answer(&s->flush_current, MG_OK);
        retry_waiting_adds(s);
        start_flush(s);
    } else if (status != MG_OK) {
        MG_WARN("bookie: storage stays read-only: %s", mg_strerror(status));
    }
    waiters_answer(&s->resume_waiters, status);
}

static void wake_cb(uv_async_t *h)
{
    bk_storage *s = h->data;
    pthread_mutex_lock(&s->mu);
    bool done = s->flush_done;
    int status = s->flush_status;
    s->flush_done = false;
    bool resumed = s->resume_done;
    int resume_status = s->resume_status;
    s->resume_done = false;
    pthread_mutex_unlock(&s->mu);
    if (resumed)
        resume_finished(s, resume_status);
    if (done) {
        if (status == MG_OK) {
            bk_write_cache_clear_flushing(s->wc);
        } else {
            enter_read_only(s, status, "flushing the write cache to the entry log");
        }
        waiters_answer(&s->flush_current, status);
        retry_waiting_adds(s);
        if ((s->waiting_head || s->flush_waiters) && !s->read_only)
            start_flush(s);
    }
    if (s->flush_waiters && (s->read_only || !bk_write_cache_flushing(s->wc))) {
        /* nothing to flush (or no flush possible): answer now */
        waiters_answer(&s->flush_waiters, s->read_only ? MG_EREADONLY : MG_OK);
    }
    pthread_mutex_lock(&s->mu);
    uint64_t passes = s->gc_passes;
    delete_item *deleted = s->deletes_done;
    s->deletes_done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (deleted) {
        delete_item *next = deleted->next;
        if (deleted->status != MG_OK)
            MG_WARN("bookie: deleting ledger %" PRId64 ": %s", deleted->ledger_id,
                    mg_strerror(deleted->status));
        s->reads_inflight--;
        deleted->cb(deleted->status, deleted->arg);
        mg_free(deleted);
        deleted = next;
    }
    if (s->gc_waiters && passes >= s->gc_target)
        waiters_answer(&s->gc_waiters, MG_OK);
    read_ctx *r = s->ready_head;
    s->ready_head = s->ready_tail = NULL;
    while (r) {
        read_ctx *next = r->next_ready;
        read_finish(r);
        r = next;
    }
    if (s->closing)
        finish_close_if_idle(s);
}

/* --- adds ----------------------------------------------------------------------------------------
 */

static add_ctx *add_ctx_new(bk_storage *s)
{
    return mg_freelist_get(&s->add_pool);
}

static void journal_done(int status, void *arg)
{
    add_ctx *a = arg;
    a->status = status;
    int rc = mg_queue_push(a->s->jq, a);
    MG_ASSERT(rc == MG_OK); /* sized by BK_ADDS_INFLIGHT_MAX: never full */
}

static void jq_drain(void *item, void *arg)
{
    add_ctx *a = item;
    bk_storage *s = arg;
    s->adds_inflight--;
    if (a->status != MG_OK && a->status != MG_ECLOSED && !a->refused && a->ro_epoch == s->ro_epoch)
        enter_read_only(s, a->status, "writing the journal");
    if (a->type == BK_JREC_FENCE) {
        int64_t last = -1;
        if (a->status == MG_OK) {
            queue_fence_persist(s, a->ledger_id);
            last = bk_write_cache_last_entry(s->wc, a->ledger_id);
            bk_ledger_info info;
            /* the index read is a point look-up of one small key, done once per fence */
            if (bk_index_ledger_get(s->index, a->ledger_id, &info) == MG_OK &&
                info.last_entry_id > last)
                last = info.last_entry_id;
        }
        a->fence_cb(a->status, last, a->arg);
    } else {
        mg_histogram_observe(s->m_add_latency, (mg_clock_mono_ns() - a->start_ns) / 1000u);
        a->cb(a->status, a->ledger_id, a->entry_id, a->arg);
        mg_buf_unref(a->buf);
    }
    mg_freelist_put(&s->add_pool, a);
    if (s->closing)
        finish_close_if_idle(s);
}

static void add_after_cache(bk_storage *s, add_ctx *a)
{
    int rc = bk_journal_append(s->journal, a->type, a->ledger_id, a->entry_id, a->buf, a->off,
                               a->len, journal_done, a);
    if (rc != MG_OK) {
        /* The journal refused (failed, or full): complete through the queue, never inline. */
        if (rc == MG_EREADONLY) {
            /* The journal failed: the cause (a full disk?) is what the caller needs. */
            int cause = bk_journal_fail_status(s->journal);
            rc = cause == MG_ENOSPC ? MG_ENOSPC : MG_EREADONLY;
            a->refused = s->read_only;
        }
        a->status = rc;
        journal_done(a->status, a);
    }
}

int bk_storage_add(bk_storage *s, int64_t ledger_id, int64_t entry_id, mg_buf *buf, size_t off,
                   size_t len, bk_add_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (ledger_id < 0 || entry_id < 0 || buf == NULL || off + len > mg_buf_len(buf))
        return MG_EINVAL;
    if (s->read_only)
        return ro_status(s);
    if (is_fenced(s, ledger_id))
        return MG_EFENCED;
    if (s->adds_inflight >= BK_ADDS_INFLIGHT_MAX)
        return MG_EAGAIN;
    add_ctx *a = add_ctx_new(s);
    if (a == NULL)
        return MG_ENOMEM;
    a->s = s;
    a->type = BK_JREC_ADD;
    a->ledger_id = ledger_id;
    a->entry_id = entry_id;
    a->buf = mg_buf_ref(buf);
    a->off = off;
    a->len = len;
    a->cb = done;
    a->arg = arg;
    a->start_ns = mg_clock_mono_ns();
    a->ro_epoch = s->ro_epoch;
    s->adds_inflight++;
    s->stats.adds++;
    /* Adds never overtake one another: while some wait for room, a new one waits behind them
     * (the journal, and so the acknowledgements, keep the order adds arrived in). */
    int rc =
        s->waiting_head ? MG_EAGAIN : bk_write_cache_put(s->wc, ledger_id, entry_id, buf, off, len);
    if (rc == MG_EAGAIN) {
        if (s->waiting_count >= BK_ADDS_WAITING_MAX) {
            s->adds_inflight--;
            mg_buf_unref(a->buf);
            mg_freelist_put(&s->add_pool, a);
            return MG_EAGAIN;
        }
        a->next = NULL;
        if (s->waiting_tail)
            s->waiting_tail->next = a;
        else
            s->waiting_head = a;
        s->waiting_tail = a;
        s->waiting_count++;
        start_flush(s);
        return MG_OK;
    }
    if (rc != MG_OK) {
        s->adds_inflight--;
        mg_buf_unref(a->buf);
        mg_freelist_put(&s->add_pool, a);
        return rc;
    }
    add_after_cache(s, a);
    return MG_OK;
}

int bk_storage_fence(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (ledger_id < 0)
        return MG_EINVAL;
    if (s->read_only)
        return ro_status(s);
    if (s->adds_inflight >= BK_ADDS_INFLIGHT_MAX)
        return MG_EAGAIN;
    MG_TRY(mark_fenced(s, ledger_id)); /* adds fail from now on */
    add_ctx *a = add_ctx_new(s);
    if (a == NULL)
        return MG_ENOMEM;
    a->s = s;
    a->type = BK_JREC_FENCE;
    a->ledger_id = ledger_id;
    a->entry_id = -1;
    a->ro_epoch = s->ro_epoch;
    a->fence_cb = done;
    a->arg = arg;
    s->adds_inflight++;
    add_after_cache(s, a);
    return MG_OK;
}

int bk_storage_flush(bk_storage *s, bk_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    MG_TRY(waiter_push(&s->flush_waiters, done, arg));
    start_flush(s); /* no-op while a flush runs: the next one starts when it ends */
    uv_async_send(&s->wake);
    return MG_OK;
}

int bk_storage_resume(bk_storage *s, bk_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (!s->read_only) {
        MG_TRY(waiter_push(&s->resume_waiters, done, arg));
        uv_async_send(&s->wake); /* answered MG_OK from wake_cb, never inline */
        pthread_mutex_lock(&s->mu);
        if (!s->resume_running && !s->resume_requested) {
            s->resume_done = true;
            s->resume_status = MG_OK;
        }
        pthread_mutex_unlock(&s->mu);
        return MG_OK;
    }
    pthread_mutex_lock(&s->mu);
    bool busy = s->flush_running || s->flush_requested;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        return MG_EAGAIN; /* a flush is finishing: its outcome comes first */
    MG_TRY(waiter_push(&s->resume_waiters, done, arg));
    pthread_mutex_lock(&s->mu);
    if (!s->resume_running && !s->resume_requested) {
        s->resume_requested = true;
        s->resume_flush = bk_write_cache_flushing(s->wc);
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return MG_OK;
}

int bk_storage_state(const bk_storage *s)
{
    return __atomic_load_n(&s->ro_state, __ATOMIC_ACQUIRE);
}

int bk_storage_gc(bk_storage *s, bk_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    MG_TRY(waiter_push(&s->gc_waiters, done, arg));
    pthread_mutex_lock(&s->mu);
    /* A pass running now may have passed some logs already: wait for the next one. */
    s->gc_target = s->gc_passes + (s->gc_running ? 2 : 1);
    s->gc_requested = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return MG_OK;
}

void bk_storage_stats_get(const bk_storage *s, bk_storage_stats *out)
{
    bk_storage *m = (bk_storage *)s;
    pthread_mutex_lock(&m->mu);
    *out = s->stats;
    pthread_mutex_unlock(&m->mu);
}

bool bk_storage_read_only(const bk_storage *s)
{
    return s->read_only;
}

/* --- reads ---------------------------------------------------------------------------------------
 */

static ra_state *ra_find(bk_storage *s, int64_t ledger_id, bool create)
{
    ra_state *lru = &s->ra[0];
    for (int i = 0; i < BK_RA_LEDGERS_MAX; i++) {
        ra_state *r = &s->ra[i];
        if (r->ledger_id == ledger_id) {
            r->used_tick = ++s->ra_tick;
            return r;
        }
        if (!r->inflight && r->fg_inflight == 0 && r->used_tick < lru->used_tick)
            lru = r;
    }
    if (!create || lru->inflight || lru->fg_inflight > 0)
        return NULL;
    memset(lru, 0, sizeof(*lru));
    lru->ledger_id = ledger_id;
    lru->next_expected = -1;
    lru->window_first = lru->window_last = -1;
    lru->used_tick = ++s->ra_tick;
    return lru;
}

/* Adds the view buf[off, off + len) to the read's entries. Takes no reference: buf must be kept
 * alive by one in r->held (a disk chunk's entries share the chunk's single reference instead of
 * taking one each). */
static int entries_push(read_ctx *r, mg_buf *buf, size_t off, size_t len, int64_t entry_id)
{
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        bk_entry *e = mg_realloc(r->entries, cap * sizeof(*e));
        if (e == NULL)
            return MG_ENOMEM;
        r->entries = e;
        r->cap = cap;
    }
    bk_entry *e = &r->entries[r->count++];
    e->entry_id = entry_id;
    e->buf = buf;
    e->off = off;
    e->len = len;
    r->bytes += len;
    r->next = entry_id + 1;
    return MG_OK;
}

/* Makes room for n more references in r->held. */
static int held_reserve(read_ctx *r, size_t n)
{
    if (r->held_cap - r->held_count >= n)
        return MG_OK;
    size_t cap = r->held_cap ? r->held_cap : 16;
    while (cap - r->held_count < n)
        cap *= 2;
    mg_buf **held = mg_realloc(r->held, cap * sizeof(*held));
    if (held == NULL)
        return MG_ENOMEM;
    r->held = held;
    r->held_cap = cap;
    return MG_OK;
}

/* A cache hit: e carries a new reference, which the read keeps; then the view is added. On
 * MG_ENOMEM the reference is dropped (or kept in held) and no view added. */
static int entries_push_owned(read_ctx *r, const bk_entry *e, int64_t entry_id)
{
    if (held_reserve(r, 1) != MG_OK) {
        mg_buf_unref(e->buf);
        return MG_ENOMEM;
    }
    r->held[r->held_count++] = e->buf;
    return entries_push(r, e->buf, e->off, e->len, entry_id);
}

static bool read_wants_more(const read_ctx *r)
{
    if (r->status != MG_OK || r->next > r->last)
        return false;
    return r->count == 0 || r->bytes < r->max_bytes;
}

static void read_free(read_ctx *r)
{
    for (size_t i = 0; i < r->held_count; i++)
        mg_buf_unref(r->held[i]);
    mg_free(r->held);
    mg_free(r->entries);
    mg_free(r->run);
    mg_free(r);
}

static void readahead_maybe(bk_storage *s, int64_t ledger_id, int64_t first, int64_t end,
                            bool pipelined);
static void read_step(read_ctx *r);

static void ra_window_done(read_ctx *w)
{
    bk_storage *s = w->s;
    ra_state *ra = w->ra;
    for (size_t i = 0; i < w->count; i++) {
        bk_entry *e = &w->entries[i];
        bk_read_cache_put(s->rc, w->ledger_id, e->entry_id, e->buf, e->off, e->len);
    }
    mg_counter_add(s->m_ra_issued, w->bytes);
    s->stats.readahead_windows++;
    s->stats.readahead_bytes += w->bytes;
    if (ra != NULL) {
        ra->inflight = false;
        if (w->count > 0)
            ra->window_last = w->entries[w->count - 1].entry_id;
        read_ctx *waiter = ra->waiters;
        ra->waiters = NULL;
        while (waiter) {
            read_ctx *next = waiter->next_waiter;
            read_step(waiter);
            waiter = next;
        }
    }
    s->reads_inflight--;
    read_free(w);
}

/* Delivers a finished read to its caller; runs from the loop's deferred list. */
static void read_finish(read_ctx *r)
{
    bk_storage *s = r->s;
    if (r->readahead) {
        ra_window_done(r);
        return;
    }
    int status = r->status;
    if (status == MG_OK && r->count == 0)
        status = MG_ENOTFOUND;
    if (r->count > 0)
        status = MG_OK; /* a range read returns what it has; the next read reports the rest */
    mg_histogram_observe(s->m_read_latency[r->source], (mg_clock_mono_ns() - r->start_ns) / 1000u);
    /* A caller that keeps several reads of the ledger in flight reads ahead by itself (the
     * broker's prefetcher): a read-ahead window would read what its next reads ask for. */
    bool pipelined = false;
    if (r->ra_fg != NULL && r->ra_fg->ledger_id == r->ledger_id && r->ra_fg->fg_inflight > 0) {
        r->ra_fg->fg_inflight--;
        pipelined = r->ra_fg->fg_inflight > 0;
    }
    r->cb(status, r->count ? r->entries : NULL, r->count, r->arg);
    if (r->count > 0 && r->count <= BK_RA_TRIGGER_ENTRIES_MAX && s->readahead_on)
        readahead_maybe(s, r->ledger_id, r->first, r->entries[r->count - 1].entry_id, pipelined);
    s->reads_inflight--;
    read_free(r);
    if (s->closing)
        finish_close_if_idle(s);
}

/* Tries to plan a walk: two point look-ups instead of an iterator step per entry. The first
 * wanted entry's location gives where to start; the location of the last entry the budget can
 * take (all entries the size of the first) gives where to stop. When both lie in one entry log
 * no further apart than those entries would take, plus a little, the stretch between them is
 * read in one I/O and its records found by their headers (walk_verify): entries of one ledger
 * flushed together lie back to back. Anything else in between (another ledger's records, a
 * later flush) ends the walk early, costing at most the slack in wasted bytes; the next step
 * looks up where the read goes on. Returns false to fall back to the run (uneven entry sizes,
 * a ledger spread over flushes, the ledger's last entries). Threadpool. */
static bool walk_plan(read_ctx *r, int64_t last, bk_location first)
{
    size_t budget = r->max_bytes > r->bytes ? r->max_bytes - r->bytes : 0;
    size_t payload = first.size > BK_RECORD_HEADER_BYTES ? first.size - BK_RECORD_HEADER_BYTES : 1;
    uint64_t n = (uint64_t)(last - r->next) + 1;
    if (budget < SIZE_MAX && n > budget / payload + 1)
        n = budget / payload + 1;
    if (n > BK_DISK_READ_BYTES_MAX / first.size)
        n = BK_DISK_READ_BYTES_MAX / first.size;
    if (n == 0)
        n = 1;
    uint64_t end = (uint64_t)first.offset + first.size;
    if (n > 1) {
        bk_location probe;
        if (bk_index_get(r->s->index, r->ledger_id, r->next + (int64_t)n - 1, &probe) != MG_OK ||
            probe.log_id != first.log_id || probe.offset <= first.offset)
            return false;
        uint64_t expect = n * first.size;
        end = (uint64_t)probe.offset + probe.size;
        if (end - first.offset > expect + expect / 8 + BK_WALK_SLACK_BYTES ||
            end - first.offset > BK_DISK_READ_BYTES_MAX)
            return false;
    }
    r->run = mg_malloc(n * sizeof(*r->run));
    if (r->run == NULL)
        return false;
    r->run[0] = (bk_index_put){ .ledger_id = r->ledger_id, .entry_id = r->next, .loc = first };
    r->run_count = 1;
    r->walk = true;
    r->walk_cap = n;
    r->walk_log = first.log_id;
    r->walk_offset = first.offset;
    r->walk_len = (uint32_t)(end - first.offset);
    return true;
}

static void index_work(uv_work_t *w)
{
    read_ctx *r = w->data;
    int64_t last = r->last;
    if (last - r->next >= BK_RUN_ENTRIES_MAX)
        last = r->next + BK_RUN_ENTRIES_MAX - 1;
    r->run_pos = 0;
    r->walk = false;
    bk_location first;
    r->work_status = bk_index_get(r->s->index, r->ledger_id, r->next, &first);
    if (r->work_status != MG_OK || (first.size > 0 && walk_plan(r, last, first)))
        return; /* MG_ENOTFOUND: the first wanted entry is missing */
    size_t cap = (size_t)(last - r->next + 1);
    r->run = mg_malloc(cap * sizeof(*r->run));
    if (r->run == NULL) {
        r->work_status = MG_ENOMEM;
        return;
    }
    r->work_status =
        bk_index_seek_run(r->s->index, r->ledger_id, r->next, last, r->run, cap, &r->run_count);
    if (r->work_status == MG_OK && (r->run_count == 0 || r->run[0].entry_id != r->next))
        r->work_status = MG_ENOTFOUND; /* the first wanted entry is missing */
}

static void disk_read_done(int status, mg_buf *buf, size_t data_off, size_t data_len, void *arg);
static void disk_chunks_parse(read_ctx *r);

static void disk_submit(read_ctx *r, uint32_t log_id);

/* Reads a walk's stretch (walk_plan) in one I/O; walk_verify finds its records. */
static void read_walk(read_ctx *r)
{
    disk_chunk *c = &r->chunks[0];
    memset(c, 0, sizeof(*c));
    c->r = r;
    c->offset = r->walk_offset;
    c->len = r->walk_len;
    c->first = 0;
    c->end = 1;
    r->chunk_count = 1;
    r->chunks_done = 0;
    r->s->stats.disk_walks++;
    mg_counter_inc(r->s->m_stretches[0]);
    disk_submit(r, r->walk_log);
}

/* Reads the contiguous stretch of the run starting at run_pos: O_DIRECT reads of about
 * BK_DISK_CHUNK_BYTES each, cut at record boundaries, all in flight at once; the entries are
 * parsed in order once every chunk has arrived. */
static void read_disk(read_ctx *r)
{
    if (r->walk) {
        read_walk(r);
        return;
    }
    const bk_index_put *p = &r->run[r->run_pos];
    /* The budget counts payload bytes, as the caller's max_bytes does; records carry a header
     * on top, so compare like with like or the tail of a request becomes extra round trips. */
    size_t budget = r->max_bytes > r->bytes ? r->max_bytes - r->bytes : 0;
    size_t payload = p->loc.size - BK_RECORD_HEADER_BYTES;
    uint64_t start = p->loc.offset;
    uint64_t end = start + p->loc.size;
    size_t k = r->run_pos + 1;
    while (k < r->run_count && r->run[k].loc.log_id == p->loc.log_id &&
           r->run[k].loc.offset == end && r->run[k].entry_id == r->run[k - 1].entry_id + 1 &&
           end - start + r->run[k].loc.size <= BK_DISK_READ_BYTES_MAX && payload < budget) {
        end += r->run[k].loc.size;
        payload += r->run[k].loc.size - BK_RECORD_HEADER_BYTES;
        k++;
    }
    /* Cut into chunks at record boundaries. */
    r->chunk_count = 0;
    r->chunks_done = 0;
    size_t i = r->run_pos;
    while (i < k && r->chunk_count < BK_DISK_CHUNKS_MAX) {
        disk_chunk *c = &r->chunks[r->chunk_count++];
        memset(c, 0, sizeof(*c));
        c->r = r;
        c->offset = r->run[i].loc.offset;
        c->first = i;
        while (i < k && (c->len == 0 || c->len + r->run[i].loc.size <= BK_DISK_CHUNK_BYTES)) {
            c->len += r->run[i].loc.size;
            i++;
        }
        c->end = i;
    }
    mg_counter_inc(r->s->m_stretches[1]);
    disk_submit(r, p->loc.log_id);
}

/* Submits the read's chunks, all at once, from entry log log_id. */
static void disk_submit(read_ctx *r, uint32_t log_id)
{
    bk_storage *s = r->s;
    int fd;
    int rc = bk_entrylogs_direct_fd(s->elogs, log_id, &fd);
    if (rc != MG_OK) {
        r->status = rc == MG_ENOTFOUND ? MG_ECORRUPT : rc;
        defer_read(r);
        return;
    }
    int chunks = r->chunk_count;
    for (int c = 0; c < chunks; c++) {
        disk_chunk *ch = &r->chunks[c];
        rc = bk_aio_read(s->aio, r->readahead ? BK_AIO_BACKGROUND : BK_AIO_FOREGROUND, fd,
                         ch->offset, ch->len, disk_read_done, ch);
        if (rc != MG_OK) {
            ch->status = rc;
            r->chunks_done++;
            continue;
        }
        mg_histogram_observe(s->m_disk_read_bytes, ch->len);
        s->stats.disk_reads++;
        s->stats.disk_read_bytes += ch->len;
    }
    if (r->chunks_done == chunks)
        disk_chunks_parse(r); /* every submission failed */
}

/* Checks the records of a chunk that arrived: each must parse (length, CRC) and carry the
 * ledger, entry id and size the index gave. Sets c->valid to the length of the good prefix.
 * Reads only the chunk's buffer, the run and the ids, which nothing changes meanwhile, and
 * writes only c->valid: runs on a threadpool thread (several chunks of a read at once), or on
 * the loop when the work cannot be queued. */
static void chunk_verify(const read_ctx *r, disk_chunk *c)
{
    c->valid = 0;
    if (c->status != MG_OK)
        return;
    const uint8_t *base = mg_buf_data(c->buf) + c->data_off;
    size_t pos = 0;
    for (size_t i = c->first; i < c->end; i++) {
        const bk_index_put *p = &r->run[i];
        bk_record rec;
        int rc = pos + p->loc.size <= c->data_len
                     ? bk_record_parse(base + pos, c->data_len - pos, &rec)
                     : MG_ECORRUPT; /* the index points past the end of the file */
        if (rc != MG_OK || rec.ledger_id != r->ledger_id || rec.entry_id != p->entry_id ||
            rec.record_size != p->loc.size)
            return;
        pos += p->loc.size;
        c->valid++;
    }
}

/* Adds one verified chunk's records to the read's entries, in order, as views of the chunk's
 * buffer. A record chunk_verify refused is reported as corrupt and ends the read there: a bad
 * record is never served. Returns false to stop. Loop thread. */
static bool parse_chunk(read_ctx *r, disk_chunk *c)
{
    bk_storage *s = r->s;
    if (c->status != MG_OK) {
        MG_WARN("bookie: reading ledger %" PRId64 " entry %" PRId64 " from disk: %s", r->ledger_id,
                r->next, mg_strerror(c->status));
        r->status = c->status;
        return false;
    }
    size_t pos = 0;
    for (size_t i = c->first; i < c->end && read_wants_more(r); i++) {
        const bk_index_put *p = &r->run[i];
        if (p->entry_id != r->next)
            return false;
        if (i - c->first >= c->valid) {
            MG_ERROR("bookie: ledger %" PRId64 " entry %" PRId64
                     " is corrupt on disk (entry log %u offset %u): not served",
                     r->ledger_id, p->entry_id, p->loc.log_id, p->loc.offset);
            mg_counter_inc(s->m_errors);
            r->status = MG_ECORRUPT;
            return false;
        }
        size_t payload_off = c->data_off + pos + BK_RECORD_HEADER_BYTES;
        if (entries_push(r, c->buf, payload_off, p->loc.size - BK_RECORD_HEADER_BYTES,
                         p->entry_id) != MG_OK) {
            r->status = MG_ENOMEM;
            return false;
        }
        c->used = true;
        pos += p->loc.size;
        r->run_pos = i + 1;
        if (!r->readahead)
            s->stats.reads_disk++;
    }
    return true;
}

/* Every chunk of the stretch has arrived and been verified: hand out the entries. */
static void disk_chunks_parse(read_ctx *r)
{
    /* Room for every chunk's reference first, so a chunk whose entries were handed out can
     * always be kept. */
    if (held_reserve(r, (size_t)r->chunk_count) != MG_OK) {
        r->status = MG_ENOMEM;
    } else {
        for (int c = 0; c < r->chunk_count; c++) {
            if (!parse_chunk(r, &r->chunks[c]))
                break;
        }
    }
    for (int c = 0; c < r->chunk_count; c++) {
        disk_chunk *ch = &r->chunks[c];
        if (ch->used)
            r->held[r->held_count++] = ch->buf; /* the entries' views share this reference */
        else
            mg_buf_unref(ch->buf); /* NULL-safe */
        ch->buf = NULL;
    }
    r->chunk_count = r->chunks_done = 0;
    r->walk = false; /* what the walk found is a run like any other now */
    read_step(r);
}

/* A walk's check: the records of its one chunk, from the first location on, as long as each
 * parses (length, CRC) and is the next entry of the ledger; the first must also have the size
 * the index gave. Fills the run with what it found (at least the first location, so a first
 * record that does not check is reported corrupt by parse_chunk). A record that does not
 * belong ends the walk; the next step looks the entry up again. Threadpool, like chunk_verify. */
static void walk_verify(read_ctx *r, disk_chunk *c)
{
    c->valid = 0;
    c->end = 1;
    if (c->status != MG_OK)
        return;
    const uint8_t *base = mg_buf_data(c->buf) + c->data_off;
    size_t pos = 0;
    size_t n = 0;
    while (n < r->walk_cap && pos < c->data_len) {
        bk_record rec;
        if (bk_record_parse(base + pos, c->data_len - pos, &rec) != MG_OK ||
            rec.ledger_id != r->ledger_id || rec.entry_id != r->run[0].entry_id + (int64_t)n ||
            (n == 0 && rec.record_size != r->run[0].loc.size))
            break;
        r->run[n] = (bk_index_put){
            .ledger_id = r->ledger_id,
            .entry_id = rec.entry_id,
            .loc = { .log_id = r->walk_log,
                     .offset = r->walk_offset + (uint32_t)pos,
                     .size = (uint32_t)rec.record_size },
        };
        pos += rec.record_size;
        n++;
    }
    if (n > 0) {
        r->run_count = n;
        c->end = n;
        c->valid = n;
    }
}

static void chunk_verify_work(uv_work_t *w)
{
    disk_chunk *c = w->data;
    if (c->r->walk)
        walk_verify(c->r, c);
    else
        chunk_verify(c->r, c);
}

/* One more chunk is read and verified (or failed): once all are, hand out the entries. */
static void chunk_finished(read_ctx *r)
{
    if (++r->chunks_done == r->chunk_count)
        disk_chunks_parse(r);
}

static void chunk_verify_done(uv_work_t *w, int uv_status)
{
    disk_chunk *c = w->data;
    if (uv_status != 0) /* not run (never cancelled, but be safe): verify here */
        chunk_verify_work(w);
    chunk_finished(c->r);
}

/* Each chunk is checked on the threadpool as soon as it arrives: the CRCs run off the loop,
 * which keeps serving the network and the disk completions, and overlap with the chunks still
 * being read. */
static void disk_read_done(int status, mg_buf *buf, size_t data_off, size_t data_len, void *arg)
{
    disk_chunk *c = arg;
    read_ctx *r = c->r;
    r->source = 2;
    c->status = status;
    c->buf = buf;
    c->data_off = data_off;
    c->data_len = data_len;
    if (status == MG_OK && data_len < c->len)
        c->data_len = data_len; /* short: the records past the end are reported corrupt */
    if (status == MG_OK) {
        c->work.data = c;
        if (uv_queue_work(r->s->loop, &c->work, chunk_verify_work, chunk_verify_done) == 0)
            return;
        chunk_verify_work(&c->work);
    }
    chunk_finished(r);
}

static void index_work_done(uv_work_t *w, int uv_status)
{
    read_ctx *r = w->data;
    if (uv_status != 0 || r->work_status != MG_OK) {
        if (r->work_status == MG_ENOTFOUND || uv_status != 0)
            r->next = r->last + 1; /* nothing more to read: finish with what we have */
        else
            r->status = r->work_status;
        defer_read(r);
        return;
    }
    read_disk(r);
}

/* Advances a read: caches first, then a read-ahead window in flight, then the disk. */
static void read_step(read_ctx *r)
{
    bk_storage *s = r->s;
    while (read_wants_more(r)) {
        /* the rest of an index run already in hand */
        if (r->run != NULL && r->run_pos < r->run_count && r->run[r->run_pos].entry_id == r->next) {
            read_disk(r);
            return;
        }
        bk_entry e;
        if (!r->readahead && bk_write_cache_get(s->wc, r->ledger_id, r->next, &e)) {
            s->stats.reads_write_cache++;
            if (entries_push_owned(r, &e, r->next) != MG_OK) {
                r->status = MG_ENOMEM;
                break;
            }
            continue;
        }
        if (bk_read_cache_get(s->rc, r->ledger_id, r->next, &e)) {
            if (r->readahead) {
                mg_buf_unref(e.buf); /* already cached: the window starts later */
                r->next++;
                continue;
            }
            mg_counter_add(s->m_ra_used, e.len);
            s->stats.reads_read_cache++;
            s->stats.readahead_used_bytes += e.len;
            if (r->source < 1)
                r->source = 1;
            if (entries_push_owned(r, &e, r->next) != MG_OK) {
                r->status = MG_ENOMEM;
                break;
            }
            continue;
        }
        if (!r->readahead) {
            ra_state *ra = ra_find(s, r->ledger_id, false);
            if (ra && ra->inflight && r->next >= ra->window_first && r->next <= ra->window_last) {
                r->next_waiter = ra->waiters; /* wait for that window only */
                ra->waiters = r;
                return;
            }
        }
        mg_free(r->run);
        r->run = NULL;
        r->run_count = r->run_pos = 0;
        r->work.data = r;
        int rc = uv_queue_work(s->loop, &r->work, index_work, index_work_done);
        if (rc != 0) {
            r->status = mg_err_from_uv(rc);
            break;
        }
        return;
    }
    defer_read(r);
}

static void readahead_maybe(bk_storage *s, int64_t ledger_id, int64_t first, int64_t end,
                            bool pipelined)
{
    ra_state *ra = ra_find(s, ledger_id, true);
    if (ra == NULL)
        return;
    bool sequential = ra->next_expected == first;
    ra->next_expected = end + 1;
    if (!sequential || pipelined || ra->inflight || s->closing ||
        s->reads_inflight >= BK_READS_INFLIGHT_MAX)
        return;
    if (ra->window_last >= 0 && end < ra->window_last) {
        /* inside the last window: read the next one once 75 % of it has been consumed */
        int64_t span = ra->window_last - ra->window_first + 1;
        if (end < ra->window_first + (span * 3) / 4)
            return;
    }
    int64_t start = ra->window_last > end ? ra->window_last + 1 : end + 1;
    read_ctx *w = mg_calloc(1, sizeof(*w));
    if (w == NULL)
        return;
    w->s = s;
    w->readahead = true;
    w->ra = ra;
    w->ledger_id = ledger_id;
    w->first = w->next = start;
    w->last = start + BK_RA_ENTRIES_MAX - 1;
    w->max_bytes = s->readahead_bytes;
    w->start_ns = mg_clock_mono_ns();
    ra->inflight = true;
    ra->window_first = start;
    ra->window_last = w->last;
    s->reads_inflight++;
    read_step(w);
}

static int read_start(bk_storage *s, int64_t ledger_id, int64_t first, int64_t last,
                      size_t max_bytes, bk_read_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (ledger_id < 0 || first < 0 || last < first)
        return MG_EINVAL;
    if (s->reads_inflight >= BK_READS_INFLIGHT_MAX)
        return MG_EAGAIN;
    read_ctx *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    r->s = s;
    r->ledger_id = ledger_id;
    r->first = r->next = first;
    r->last = last;
    r->max_bytes = max_bytes;
    r->cb = done;
    r->arg = arg;
    r->start_ns = mg_clock_mono_ns();
    if (s->readahead_on) {
        r->ra_fg = ra_find(s, ledger_id, true);
        if (r->ra_fg != NULL)
            r->ra_fg->fg_inflight++;
    }
    s->reads_inflight++;
    read_step(r);
    return MG_OK;
}

int bk_storage_read(bk_storage *s, int64_t ledger_id, int64_t entry_id, bk_read_done_cb done,
                    void *arg)
{
    return read_start(s, ledger_id, entry_id, entry_id, SIZE_MAX, done, arg);
}

int bk_storage_read_range(bk_storage *s, int64_t ledger_id, int64_t first_entry_id,
                          int64_t last_entry_id, size_t max_bytes, bk_read_done_cb done, void *arg)
{
    return read_start(s, ledger_id, first_entry_id, last_entry_id, max_bytes, done, arg);
}

/* --- last entry, delete ------------------------------------------------------------------------
 */

typedef struct lac_ctx {
    bk_storage *s;
    uv_work_t work;
    int64_t ledger_id;
    int64_t last;
    int status;
    bool delete_op;
    bk_lac_done_cb cb;
    bk_done_cb done_cb;
    void *arg;
} lac_ctx;

static void lac_work(uv_work_t *w)
{
    lac_ctx *c = w->data;
    bk_ledger_info info;
    c->status = bk_index_ledger_get(c->s->index, c->ledger_id, &info);
    c->last = -1;
    if (c->status == MG_OK && info.exists)
        c->last = info.last_entry_id;
    else if (c->status == MG_OK)
        c->status = MG_ENOTFOUND;
}

static void lac_done(uv_work_t *w, int uv_status)
{
    lac_ctx *c = w->data;
    bk_storage *s = c->s;
    int64_t cached = bk_write_cache_last_entry(s->wc, c->ledger_id);
    if (cached > c->last) {
        c->last = cached;
        c->status = MG_OK;
    }
    if (c->status == MG_ENOTFOUND && is_fenced(s, c->ledger_id))
        c->status = MG_OK; /* fenced before its first entry: known, empty */
    s->reads_inflight--;
    c->cb(uv_status != 0 ? mg_err_from_uv(uv_status) : c->status, c->last, c->arg);
    mg_free(c);
    if (s->closing)
        finish_close_if_idle(s);
}

int bk_storage_read_lac(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (ledger_id < 0)
        return MG_EINVAL;
    lac_ctx *c = mg_calloc(1, sizeof(*c));
    if (c == NULL)
        return MG_ENOMEM;
    c->s = s;
    c->ledger_id = ledger_id;
    c->cb = done;
    c->arg = arg;
    c->work.data = c;
    s->reads_inflight++;
    int rc = uv_queue_work(s->loop, &c->work, lac_work, lac_done);
    if (rc != 0) {
        s->reads_inflight--;
        mg_free(c);
        return mg_err_from_uv(rc);
    }
    return MG_OK;
}

int bk_storage_delete(bk_storage *s, int64_t ledger_id, bk_done_cb done, void *arg)
{
    if (s->closing)
        return MG_ECLOSED;
    if (ledger_id < 0)
        return MG_EINVAL;
    if (s->read_only)
        return MG_EREADONLY;
    delete_item *d = mg_calloc(1, sizeof(*d));
    if (d == NULL)
        return MG_ENOMEM;
    d->ledger_id = ledger_id;
    d->cb = done;
    d->arg = arg;
    /* Cached copies go now; the index entries go on the maintenance thread (the index's one
     * writer). An entry of this ledger still in the flushing half is indexed by that flush,
     * which runs before the delete on the same thread, so the delete removes it too. */
    bk_write_cache_drop_ledger(s->wc, ledger_id);
    bk_read_cache_drop_ledger(s->rc, ledger_id);
    unmark_fenced(s, ledger_id);
    s->reads_inflight++;
    pthread_mutex_lock(&s->mu);
    d->next = s->deletes_pending;
    s->deletes_pending = d;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return MG_OK;
}

/* --- open and close ----------------------------------------------------------------------------
 */

static char *dup_str(const char *src)
{
    size_t n = strlen(src) + 1;
    char *d = mg_malloc(n);
    if (d)
        memcpy(d, src, n);
    return d;
}

typedef struct replay_ctx {
    bk_storage *s;
    int status;
    uint64_t records;
} replay_ctx;

/* Flushes synchronously on the calling thread (start-up only, before the maintenance thread
 * runs). During replay (checkpoint false) the journal is not open yet. */
static int flush_now(bk_storage *s, bool checkpoint)
{
    if (bk_write_cache_active_count(s->wc) == 0 && s->fences_pending == NULL && !checkpoint)
        return MG_OK;
    MG_TRY(bk_write_cache_swap(s->wc));
    bk_journal_pos pos = { 0, 0 };
    if (checkpoint)
        pos = bk_journal_durable_pos(s->journal);
    int rc = flush_half(s, pos, checkpoint);
    if (rc == MG_OK)
        bk_write_cache_clear_flushing(s->wc);
    return rc;
}

static void replay_record(int type, int64_t ledger_id, int64_t entry_id, const uint8_t *payload,
                          size_t len, void *arg)
{
    replay_ctx *rc = arg;
    bk_storage *s = rc->s;
    if (rc->status != MG_OK)
        return;
    rc->records++;
    if (type == BK_JREC_FENCE) {
        rc->status = mark_fenced(s, ledger_id);
        queue_fence_persist(s, ledger_id);
        return;
    }
    mg_buf *b = mg_buf_new_copy(payload, len);
    if (b == NULL) {
        rc->status = MG_ENOMEM;
        return;
    }
    int r = bk_write_cache_put(s->wc, ledger_id, entry_id, b, 0, len);
    if (r == MG_EAGAIN) {
        /* The checkpoint cannot move during replay: the records stay in the journal until the
         * flush at the end of open moves it past all of them. */
        r = flush_now(s, false);
        if (r == MG_OK)
            r = bk_write_cache_put(s->wc, ledger_id, entry_id, b, 0, len);
    }
    mg_buf_unref(b);
    rc->status = r;
}

static int load_fenced(int64_t ledger_id, const bk_ledger_info *info, void *arg)
{
    bk_storage *s = arg;
    if (info->fenced)
        return mark_fenced(s, ledger_id) == MG_OK ? 0 : 1;
    return 0;
}

static double server_status(void *arg)
{
    return bk_storage_state(arg) == 0 ? 1.0 : 0.0;
}

static double readahead_unused(void *arg)
{
    const bk_storage *s = arg;
    uint64_t issued = __atomic_load_n(&s->stats.readahead_bytes, __ATOMIC_RELAXED);
    uint64_t used = __atomic_load_n(&s->stats.readahead_used_bytes, __ATOMIC_RELAXED);
    return issued > used ? (double)(issued - used) : 0.0;
}

static void register_metrics(bk_storage *s, mg_metrics *m)
{
    if (m == NULL)
        return;
    s->m_add_latency = mg_metrics_unlabelled_histogram(
        m, "bookie_add_latency_ms", "Latency of adds until the journal record is on disk", 0.001);
    static const char *const source_label[] = { "source" };
    mg_metric_family *rl = mg_metrics_histogram_family(
        m, "bookie_read_latency_ms", "Latency of reads by the slowest source they used", 1,
        source_label, 0.001);
    static const char *const sources[3][1] = { { "write_cache" }, { "read_cache" }, { "disk" } };
    for (int i = 0; i < 3; i++)
        s->m_read_latency[i] = rl ? mg_metrics_histogram(rl, sources[i]) : NULL;
    s->m_disk_read_bytes = mg_metrics_unlabelled_histogram(
        m, "bookie_disk_read_size_bytes", "Size of each O_DIRECT read of an entry log", 1.0);
    static const char *const found_label[] = { "found" };
    mg_metric_family *sf = mg_metrics_counter_family(
        m, "bookie_disk_stretches_total",
        "Contiguous stretches read from the entry logs, by how they were found: walk (two index "
        "look-ups, records found by their headers) or index (one index step per entry)",
        1, found_label);
    static const char *const founds[2][1] = { { "walk" }, { "index" } };
    for (int i = 0; i < 2; i++)
        s->m_stretches[i] = sf ? mg_metrics_counter(sf, founds[i]) : NULL;
    static const char *const state_label[] = { "state" };
    mg_metric_family *ra = mg_metrics_counter_family(
        m, "bookie_readahead_bytes_total",
        "Read-ahead bytes: issued (read into the read cache), used (served from it)", 1,
        state_label);
    static const char *const issued[] = { "issued" };
    static const char *const used[] = { "used" };
    s->m_ra_issued = ra ? mg_metrics_counter(ra, issued) : NULL;
    s->m_ra_used = ra ? mg_metrics_counter(ra, used) : NULL;
    mg_metrics_gauge_fn(m, "bookie_readahead_unused_bytes",
                        "Read-ahead bytes read from disk and not served (yet): evicted unused, "
                        "or still waiting in the read cache",
                        readahead_unused, s);
    s->m_flush_bytes = mg_metrics_unlabelled_counter(
        m, "bookie_flush_bytes_total", "Bytes flushed from the write cache to entry logs");
    s->m_gc_logs_removed = mg_metrics_unlabelled_counter(
        m, "bookie_gc_entrylogs_removed_total", "Entry logs removed by garbage collection");
    s->m_gc_bytes_compacted = mg_metrics_unlabelled_counter(
        m, "bookie_gc_compacted_bytes_total", "Live bytes copied out of compacted entry logs");
    s->m_errors = mg_metrics_unlabelled_counter(
        m, "bookie_storage_errors_total", "I/O errors and corrupt entries met by the storage");
    mg_metrics_gauge_fn(m, "bookie_server_status",
                        "1 while the bookie's storage is writable, 0 while it is read-only (as "
                        "BookKeeper's bookie_SERVER_STATUS)",
                        server_status, s);
    mg_metric_family *st = mg_metrics_gauge_family(
        m, "bookie_state",
        "1 for the state the bookie's storage is in: writable, or read_only after a write or sync "
        "failed (a full disk, an I/O error)",
        1, state_label);
    static const char *const writable[] = { "writable" };
    static const char *const read_only[] = { "read_only" };
    s->m_state[0] = st ? mg_metrics_gauge(st, writable) : NULL;
    s->m_state[1] = st ? mg_metrics_gauge(st, read_only) : NULL;
    state_publish(s);
}

static void storage_free(bk_storage *s)
{
    if (s->index)
        bk_index_close(s->index);
    if (s->elogs)
        bk_entrylogs_close(s->elogs);
    if (s->wc)
        bk_write_cache_destroy(s->wc);
    if (s->rc)
        bk_read_cache_destroy(s->rc);
    if (s->own_io)
        bk_io_destroy(s->io);
    while (s->fences_pending) {
        fence_item *f = s->fences_pending;
        s->fences_pending = f->next;
        mg_free(f);
    }
    mg_freelist_clear(&s->add_pool);
    mg_free(s->fenced);
    mg_free(s->journal_dir);
    mg_free(s->ledger_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    mg_free(s);
}

int bk_storage_open(uv_loop_t *loop, const bk_storage_opts *opts, bk_storage **out)
{
    bk_storage *s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return MG_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    mg_freelist_init(&s->add_pool, sizeof(add_ctx), BK_STORAGE_ADD_POOL_MAX);
    s->loop = loop;
    s->journal_dir = dup_str(opts->journal_dir);
    s->ledger_dir = dup_str(opts->ledger_dir);
    s->readahead_on = opts->readahead;
    s->readahead_bytes = opts->readahead_bytes ? opts->readahead_bytes : BK_DEFAULT_READAHEAD_BYTES;
    for (int i = 0; i < BK_RA_LEDGERS_MAX; i++)
        s->ra[i].ledger_id = -1;
    int rc = MG_OK;
    if (s->journal_dir == NULL || s->ledger_dir == NULL)
        rc = MG_ENOMEM;
    if (rc == MG_OK && opts->io) {
        s->io = opts->io;
    } else if (rc == MG_OK) {
        rc = bk_io_create(&s->io);
        s->own_io = rc == MG_OK;
    }
    size_t wc_bytes =
        opts->write_cache_bytes ? opts->write_cache_bytes : BK_DEFAULT_WRITE_CACHE_BYTES;
    size_t rc_bytes = opts->read_cache_bytes ? opts->read_cache_bytes : BK_DEFAULT_READ_CACHE_BYTES;
    s->wc_half_bytes = wc_bytes / 2;
    if (rc == MG_OK)
        rc = bk_write_cache_create(wc_bytes / 2, BK_ADDS_INFLIGHT_MAX, &s->wc);
    if (rc == MG_OK)
        rc = bk_read_cache_create(rc_bytes, &s->rc);
    char path[4200];
    if (rc == MG_OK) {
        snprintf(path, sizeof(path), "%s/index", s->ledger_dir);
        rc = mg_mkdirs(path);
        if (rc == MG_OK)
            rc = bk_index_open(path, &s->index);
    }
    if (rc == MG_OK) {
        snprintf(path, sizeof(path), "%s/entrylogs", s->ledger_dir);
        rc = mg_mkdirs(path);
        if (rc == MG_OK)
            rc = bk_entrylogs_open(path, s->io, opts->entrylog_bytes_max, &s->elogs);
    }
    if (rc == MG_OK)
        rc = bk_index_ledgers(s->index, load_fenced, s);
    register_metrics(s, opts->metrics);
    if (rc != MG_OK) {
        MG_ERROR("bookie: cannot open storage in %s: %s", s->ledger_dir, mg_strerror(rc));
        storage_free(s);
        return rc;
    }

    /* Replay the journal into the write cache, then flush it all and checkpoint. */
    replay_ctx replay = { .s = s, .status = MG_OK };
    bk_journal_opts jo = {
        .dir = s->journal_dir,
        .io = s->io,
        .segment_bytes = opts->journal_segment_bytes,
        .group_wait_us = opts->journal_group_wait_us,
        .group_bytes_max = opts->journal_group_bytes_max,
        .queue_max = BK_ADDS_INFLIGHT_MAX,
        .metrics = opts->metrics,
    };
    rc = bk_journal_open(&jo, replay_record, &replay, &s->journal);
    if (rc == MG_OK && replay.status != MG_OK)
        rc = replay.status;
    if (rc == MG_OK)
        rc = flush_now(s, true);
    if (rc != MG_OK) {
        MG_ERROR("bookie: cannot replay the journal in %s: %s", s->journal_dir, mg_strerror(rc));
        if (s->journal)
            bk_journal_close(s->journal);
        storage_free(s);
        return rc;
    }
    if (replay.records > 0)
        MG_INFO("bookie: replayed %" PRIu64 " journal records", replay.records);

    unsigned depth = opts->aio_depth ? opts->aio_depth : BK_DEFAULT_AIO_DEPTH;
    rc = bk_aio_create(loop, s->io, depth, depth / 2 ? depth / 2 : 1, &s->aio);
    if (rc == MG_OK)
        rc = mg_queue_create(loop, BK_ADDS_INFLIGHT_MAX + 16, jq_drain, s, &s->jq);
    if (rc != MG_OK) {
        bk_journal_close(s->journal);
        storage_free(s); /* the aio handle, if any, is leaked with the failed loop setup */
        return rc;
    }
    uv_async_init(loop, &s->wake, wake_cb);
    s->wake.data = s;
    uv_timer_init(loop, &s->flush_timer);
    s->flush_timer.data = s;
    uv_timer_start(&s->flush_timer, flush_timer_cb, BK_FLUSH_INTERVAL_MS, BK_FLUSH_INTERVAL_MS);
    s->gc_next_ms = mg_clock_mono_ms() + BK_GC_INTERVAL_MS;
    int err = pthread_create(&s->thread, NULL, maintenance_main, s);
    MG_ASSERT(err == 0);
    *out = s;
    return MG_OK;
}

/* One of the four things closed at the end has finished; the last one frees the storage. */
static void one_closed(bk_storage *s)
{
    if (--s->handles_open > 0)
        return;
    bk_done_cb cb = s->closed_cb;
    void *arg = s->closed_arg;
    storage_free(s);
    if (cb)
        cb(MG_OK, arg);
}

static void handle_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

static void aio_closed(void *arg)
{
    one_closed(arg);
}

static void jq_closed(void *arg)
{
    one_closed(arg);
}

static void jq_dispose(void *item, void *arg)
{
    MG_UNREACHABLE(); /* the queue is empty when closed */
}

/* Called on the loop whenever in-flight work finishes during close. */
static void finish_close_if_idle(bk_storage *s)
{
    if (s->adds_inflight > 0 || s->reads_inflight > 0 || s->handles_open > 0)
        return;
    pthread_mutex_lock(&s->mu);
    bool busy = s->flush_running || s->flush_requested || s->resume_running || s->resume_requested;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        return;
    if (bk_write_cache_flushing(s->wc) && s->read_only) {
        /* The failed flush's entries are still in the journal: the next open replays them. */
        bk_write_cache_clear_flushing(s->wc);
    }
    if (bk_write_cache_flushing(s->wc))
        return; /* its completion comes through wake_cb */
    if (!s->read_only && bk_write_cache_active_count(s->wc) > 0) {
        start_flush(s);
        return;
    }
    /* Everything is flushed and acknowledged: stop the threads and the handles. */
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    bk_journal_close(s->journal);
    s->journal = NULL;
    s->handles_open = 4;
    uv_timer_stop(&s->flush_timer);
    s->flush_timer.data = s;
    uv_close((uv_handle_t *)&s->flush_timer, handle_closed);
    uv_close((uv_handle_t *)&s->wake, handle_closed);
    mg_queue_close(s->jq, jq_dispose, jq_closed, s);
    bk_aio_close(s->aio, aio_closed, s);
}

void bk_storage_close(bk_storage *s, bk_done_cb closed_cb, void *arg)
{
    MG_ASSERT(!s->closing);
    s->closing = true;
    s->closed_cb = closed_cb;
    s->closed_arg = arg;
    /* Adds waiting for room fail now; the rest completes normally. */
    while (s->waiting_head) {
        add_ctx *a = s->waiting_head;
        s->waiting_head = a->next;
        s->waiting_count--;
        a->status = MG_ECLOSED;
        journal_done(MG_ECLOSED, a);
    }
    s->waiting_tail = NULL;
    uv_async_send(&s->wake);
}
