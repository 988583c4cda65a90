/*
 * The bookie's journal: write-ahead log with group commit (see journal.h for the API).
 *
 * FILES (in opts.dir)
 *   journal-<16 lowercase hex digits>.log   segment files, ids increasing from 1
 *   checkpoint                              the mark: records before it need no replay
 *   checkpoint.tmp                          the next mark while it is being written
 *   spare-<16 lowercase hex digits>.log     a segment no longer needed, kept to be reused as
 *                                           a later segment (the digits: its old id)
 *
 * SEGMENT FORMAT. A segment is a sequence of records from offset 0, followed by zeros (the file
 * is preallocated with fallocate, so fdatasync never has to write a size change). All integers
 * are LITTLE-ENDIAN. A record is a 29-byte header and the payload:
 *
 *     offset  size  field
 *          0     4  payload_len   0..BK_JOURNAL_RECORD_BYTES_MAX
 *          4     4  crc           CRC32C (common/crc32c.h) of bytes 8..28 and the payload
 *          8     1  type          BK_JREC_ADD (1) or BK_JREC_FENCE (2)
 *          9     8  ledger_id     int64, two's complement
 *         17     8  entry_id      int64, two's complement
 *         25     4  segment       the low 32 bits of the id of the segment it was written to
 *         29     n  payload
 *
 * A third type, PAD (3), is the journal's own: its payload is zeros, replay skips it. It fills a
 * group up to the next 4096-byte boundary when segments are written with O_DIRECT (below).
 *
 * A header of 29 zero bytes (or fewer than 29 bytes left, all zero) ends a segment cleanly: a
 * valid record never has type 0. So does an intact record of another segment: a reused file
 * (SPARES below) still holds its previous records after the new ones. Anything else that is not a
 * valid record (unknown type, length over the limit, record running past the end of the file, CRC
 * mismatch) is a torn or corrupt record: it ends the replay of that segment with a WARN naming the
 * file and offset, and replay goes on with the next segment. If a valid record follows right after
 * the bad one (its length field was intact, so only its bytes were damaged), acknowledged data
 * after it in that segment is being skipped, and an ERROR says so. (A torn tail after a crash is
 * normally followed by a newer segment, since every open starts a new one; that alone is no sign of
 * loss and gets only the WARN.) The journal never appends after a torn tail: each open writes to a
 * new segment.
 *
 * CHECKPOINT FORMAT (28 bytes, little-endian): magic "MGJC", u32 version (1), u64 segment_id,
 * u64 offset, u32 CRC32C of the 24 bytes before it. Written to checkpoint.tmp, fdatasync'ed,
 * renamed over checkpoint, then the directory is fsync'ed. A checkpoint file that exists but
 * fails these checks makes open fail with MG_ECORRUPT (replaying from the start could resurrect
 * deleted ledgers; an operator must look). A missing file means "replay everything".
 * Replay skips segments below mark.segment_id and, in segment mark.segment_id, starts at
 * mark.offset (always a record boundary, since it came from bk_journal_durable_pos).
 *
 * THREADS. Appenders (any thread) put records into a ring of queue_max slots under `mu` and
 * signal `cond` when the journal thread waits for them. The journal thread is the only one that
 * touches the segment file descriptor, the write buffer and the slots in [head, head + count):
 * appenders only fill slots past the end of the ring's occupied range, so the thread reads and
 * completes its group without holding the lock. Done callbacks run without the lock, in ring
 * (append) order. Checkpoints run on the caller's thread under `cp_mu` and only touch the mark
 * file and old segment files; they read the durable position under `mu`.
 *
 * GROUP-COMMIT RULE (the journal thread, with records queued):
 *   1. If the queued bytes reach the group limit (min(group_bytes_max, segment_bytes)), the
 *      oldest record is at least group_wait_us old, or close has begun: write now.
 *   2. Otherwise wait one step (group_wait_us / 8, at most until the oldest record turns
 *      group_wait_us old). If no record arrived during that step, the burst is over: write
 *      now. Else go back to 1.
 *   So a lone add waits one step (125 us by default), not the whole window, while a steady
 *   stream fills groups up to the window or the byte limit. Records that arrive during a
 *   write and fdatasync form the next group, which is usually written at once (its oldest
 *   record has already waited a whole sync). A group takes records from the head while they fit
 *   the group limit (at least one); it is written with one pwrite (a single record larger than
 *   the buffer: header and payload written separately, without a copy), then one fdatasync
 *   covers it, then its records complete in order. A group that would not fit in the rest of
 *   the segment goes to a new segment (created and preallocated first).
 *
 * O_DIRECT. Segments are written with O_DIRECT when the file system allows it (tmpfs does not:
 * then through the page cache, same format without padding; opts.buffered asks for that too).
 * Every group then starts and ends on a 4096-byte boundary: its records are copied into the
 * aligned write buffer, a PAD record fills the last block, and the buffer is written as whole
 * blocks. Measured with fio on this disk: 4 MiB writes each followed by fdatasync ran at
 * 355 MiB/s through the page cache and at 1,266 MiB/s with O_DIRECT (ext4 on a virtio disk);
 * the page cache path also copies every byte once more and leaves the writeback to the sync.
 * BookKeeper pads its journal to an alignment the same way (journalAlignmentSize).
 *
 * SPARES. A checkpoint does not delete the segments before its mark: it renames up to
 * SPARES_MAX of them to spare-<id>.log, and the next new segment is a spare renamed to its name
 * instead of a file created and preallocated. Deleting frees the extents of a whole segment
 * (with `discard`, as here, the file system then discards them on the device) and every new
 * segment allocates them again; both land in the transactions that the journal's fdatasync
 * waits for. A reused file's blocks are already written, so the fdatasync of an O_DIRECT
 * overwrite has no metadata to commit. Measured on standalone (`magnetar perf produce`, 1 KiB
 * messages, batching, 10,000 in flight): about 220k msg/s with 256 MiB segments created and
 * deleted, 280k msg/s when no segment was created or deleted during the run. The rename to a
 * spare needs no fsync: lost in a crash, the segment is simply an old one again, which open
 * deletes. The rename from a spare is fsync'ed (the directory) before anything is written to
 * it. Spares found at open are reused; more than SPARES_MAX are deleted. In a reused file, the
 * new records need not end on a boundary of the old ones, so each group is written with a
 * zero block (O_DIRECT) or a zero header after it, which the next group overwrites: replay
 * ends there cleanly. A group torn by a crash can still leave old bytes after its last intact
 * record; replay then ends with the usual WARN of a torn tail, and nothing acknowledged is
 * lost (the group was not).
 *
 * STATE MACHINE
 *
 *     OPEN --write, fdatasync or segment creation fails--> FAILED (sticky)
 *     OPEN, FAILED --bk_journal_close--> CLOSED (thread joined, memory freed)
 *
 *   OPEN: appends accepted (bounded by queue_max). FAILED: the failing group and every queued
 *   record complete with the error (MG_ENOSPC when the disk is full, else MG_EIO), appends
 *   return MG_EREADONLY, nothing more is written. A failed fdatasync is NEVER retried: after
 *   it, Linux may already have dropped the dirty pages and cleared the error, so a second
 *   fdatasync would "succeed" without the data being on disk (PostgreSQL's "fsyncgate", 2018).
 *   The only honest answer is to stop and let a restart replay what really is on disk.
 *
 *     FAILED --bk_journal_resume, the failure was not a group's fdatasync--> OPEN
 *
 *   A failed write or segment creation (a full disk) leaves nothing acknowledged in doubt:
 *   every record of the failed group and behind it completed with the error, and every earlier
 *   group was covered by a successful fdatasync. bk_journal_resume has the journal thread,
 *   once those completions are done, start a new segment exactly as an open does; if that
 *   works the journal is OPEN again. After a failed group fdatasync it refuses (MG_ESTATE):
 *   only a restart, which replays what really is on disk, leaves that FAILED.
 *   While closing: appends return MG_ECLOSED; queued records are written without group waits.
 *
 * INVARIANTS
 *   1. done is called exactly once per accepted record, in append order, on the journal thread;
 *      with MG_OK only after an fdatasync that covers the record returned success.
 *   2. durable (under mu) only grows and is updated before the records it covers complete.
 *   3. count <= queue_max; queued_bytes == sum of (header + payload) of the slots in the ring.
 *   4. The current segment is never deleted: checkpoint positions are <= durable, and only
 *      segments with an id below the position's segment id are removed.
 */
#include "bookie/journal.h"
#include "common/clock.h"
#include "common/fs.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Deleting an old segment: bytes freed per step and the pause between steps (segment_shrink). */
#define SEGMENT_SHRINK_STEP_BYTES (8u * 1024 * 1024)
#define SEGMENT_SHRINK_PAUSE_NS   2000000L

#define HDR_BYTES BK_JOURNAL_RECORD_HEADER_BYTES

#define SEGMENT_PREFIX      "journal-"
#define SEGMENT_SUFFIX      ".log"
#define SEGMENT_NAME_BYTES  (8 + 16 + 4) /* "journal-" + 16 hex + ".log" */
#define CHECKPOINT_NAME     "checkpoint"
#define SPARE_PREFIX        "spare-"
#define SPARE_NAME_BYTES    (6 + 16 + 4) /* "spare-" + 16 hex + ".log" */
/* Old segments kept for reuse (see SPARES in the header comment). */
#define SPARES_MAX          2u
#define CHECKPOINT_TMP_NAME "checkpoint.tmp"
#define CHECKPOINT_MAGIC    0x434A474Du /* "MGJC" read as a little-endian u32 */
#define CHECKPOINT_VERSION  1u
#define CHECKPOINT_BYTES    28u

/* Replay reads segments through a window of this size (grown for a larger record). */
#define REPLAY_WINDOW_BYTES   (1024u * 1024)
/* The write buffer is aligned to a page, the unit the kernel writes back, and the block of
 * O_DIRECT writes: with O_DIRECT, groups are padded to this size (PAD records). */
#define WRITE_BUFFER_ALIGN    4096u
/* The journal's own record type: padding, skipped by replay. */
#define REC_TYPE_PAD          3
/* An idle journal thread wakes up this often even without a signal (bounded waits). */
#define IDLE_WAIT_NS          (100ull * 1000 * 1000)
/* The group wait proceeds in steps of group_wait / GROUP_WAIT_STEPS; the loop is bounded by
 * GROUP_WAIT_ROUNDS_MAX in case the clock or timed waits misbehave. */
#define GROUP_WAIT_STEPS      8u
#define GROUP_WAIT_ROUNDS_MAX 64u

enum { STATE_OPEN = 0, STATE_FAILED = 1 };
enum { WAIT_NONE = 0, WAIT_IDLE = 1, WAIT_GROUP = 2 };

typedef struct bk_journal_slot {
    int type;
    int64_t ledger_id;
    int64_t entry_id;
    mg_buf *buf; /* one reference, or NULL when len == 0 */
    size_t off;
    size_t len;
    bk_journal_done_fn done;
    void *arg;
    uint64_t enqueued_ns; /* CLOCK_MONOTONIC */
} bk_journal_slot;

struct bk_journal {
    /* Immutable after open. */
    char dir[PATH_MAX];
    bk_io *io;
    uint64_t segment_bytes;
    uint64_t group_wait_ns;
    uint64_t group_step_ns;
    uint64_t group_cap_bytes; /* min(group_bytes_max, segment_bytes) */
    uint32_t queue_max;

    mg_histogram *m_sync_latency; /* microseconds, rendered as ms */
    mg_histogram *m_group_entries;
    mg_histogram *m_group_bytes;
    mg_counter *m_records;
    mg_counter *m_bytes;
    mg_counter *m_failures;
    mg_gauge *m_queue;

    /* Journal thread only (and open/close while the thread is not running). */
    int fd;
    bool want_direct; /* !opts.buffered */
    bool direct;      /* fd was opened with O_DIRECT: groups are padded to WRITE_BUFFER_ALIGN */
    bool reused;      /* the segment's file is a spare: each group is followed by zeros */
    uint64_t seg_id;
    uint64_t seg_off;
    uint8_t *wbuf;
    size_t wbuf_cap;
    pthread_t thread;
    bool thread_started;

    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bk_journal_slot *slots; /* ring of queue_max */
    uint32_t head;
    uint32_t count;
    uint64_t queued_bytes;
    uint64_t accepted_total;
    int waiting; /* WAIT_* : what the journal thread is waiting for */
    bool closing;
    int fail_status;
    bool fail_sync;        /* the failure was a group's fdatasync: never resumed */
    bool resume_requested; /* bk_journal_resume waits for the thread to try a new segment */
    bool resume_done;
    int resume_status;
    pthread_cond_t resume_cond; /* signalled when resume_done is set */
    bk_journal_pos durable;
    uint64_t cur_seg_id; /* copy of seg_id readable by checkpoints */

    int state;           /* STATE_*, atomic (written under mu) */
    uint64_t sync_count; /* atomic */

    /* Checkpoints. */
    pthread_mutex_t cp_mu;
    bk_journal_pos mark; /* under cp_mu */

    /* Spare segment files (old ids), under spare_mu: filled by checkpoints, taken by rolls. */
    pthread_mutex_t spare_mu;
    uint64_t spares[SPARES_MAX];
    uint32_t spare_count;
};

/* ---- small helpers ------------------------------------------------------------------------ */

int bk_journal_pos_cmp(bk_journal_pos a, bk_journal_pos b)
{
    if (a.segment_id != b.segment_id)
        return a.segment_id < b.segment_id ? -1 : 1;
    if (a.offset != b.offset)
        return a.offset < b.offset ? -1 : 1;
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* What the thread reports for a failure: the caller can act on "disk full"; everything else is
 * an I/O error. */
static int failure_status(int rc)
{
    return rc == MG_ENOSPC ? MG_ENOSPC : MG_EIO;
}

static void segment_path(const bk_journal *j, uint64_t id, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "%s/" SEGMENT_PREFIX "%016llx" SEGMENT_SUFFIX, j->dir,
                     (unsigned long long)id);
    MG_ASSERT(n > 0 && (size_t)n < out_size); /* dir length was checked at open */
}

static void file_path(const bk_journal *j, const char *name, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "%s/%s", j->dir, name);
    MG_ASSERT(n > 0 && (size_t)n < out_size);
}

/* Parses "<prefix><16 hex>.log"; returns true and *id. */
static bool parse_id_name(const char *name, const char *prefix, uint64_t *id)
{
    size_t plen = strlen(prefix);
    if (strlen(name) != plen + 16 + 4)
        return false;
    if (memcmp(name, prefix, plen) != 0 || memcmp(name + plen + 16, SEGMENT_SUFFIX, 4) != 0)
        return false;
    uint64_t v = 0;
    for (size_t i = plen; i < plen + 16; i++) {
        char c = name[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *id = v;
    return true;
}

/* Parses "journal-<16 hex>.log"; returns true and *id for a segment file name. */
static bool parse_segment_name(const char *name, uint64_t *id)
{
    return parse_id_name(name, SEGMENT_PREFIX, id);
}

/* Parses "spare-<16 hex>.log"; returns true and *id (the segment's old id). */
static bool parse_spare_name(const char *name, uint64_t *id)
{
    return parse_id_name(name, SPARE_PREFIX, id);
}

static void spare_path(const bk_journal *j, uint64_t id, char *out, size_t out_size)
{
    int n = snprintf(out, out_size, "%s/" SPARE_PREFIX "%016llx" SEGMENT_SUFFIX, j->dir,
                     (unsigned long long)id);
    MG_ASSERT(n > 0 && (size_t)n < out_size);
}

/* Takes a spare out of the pool: true and *id, or false when there is none. */
static bool spare_take(bk_journal *j, uint64_t *id)
{
    pthread_mutex_lock(&j->spare_mu);
    bool got = j->spare_count > 0;
    if (got)
        *id = j->spares[--j->spare_count];
    pthread_mutex_unlock(&j->spare_mu);
    return got;
}

/* Lists the segment ids in dir, sorted, into a new array (*ids, caller frees with mg_free). */
static int list_segments(const char *dir, uint64_t **ids_out, size_t *count_out)
{
    int rc = mg_list_ids(dir, parse_segment_name, BK_JOURNAL_SEGMENTS_MAX, ids_out, count_out);
    if (rc == MG_ELIMIT)
        MG_ERROR("journal: %s holds more than %u segment files; checkpoints have stopped?", dir,
                 BK_JOURNAL_SEGMENTS_MAX);
    else if (rc != MG_OK)
        MG_ERROR("journal: cannot list %s: %s", dir, mg_strerror(rc));
    return rc;
}

/* ---- checkpoint file ---------------------------------------------------------------------- */

static int checkpoint_read(bk_journal *j, bk_journal_pos *mark)
{
    char path[PATH_MAX];
    file_path(j, CHECKPOINT_NAME, path, sizeof(path));
    int fd;
    int rc = bk_io_open(j->io, path, O_RDONLY, 0, &fd);
    if (rc == MG_ENOTFOUND) {
        *mark = (bk_journal_pos){ 0, 0 };
        return MG_OK;
    }
    if (rc != MG_OK) {
        MG_ERROR("journal: cannot open %s: %s", path, mg_strerror(rc));
        return rc;
    }
    uint8_t b[CHECKPOINT_BYTES + 1];
    ssize_t n = bk_io_pread(j->io, fd, b, sizeof(b), 0);
    bk_io_close(j->io, fd);
    if (n < 0) {
        MG_ERROR("journal: cannot read %s: %s", path, mg_strerror((int)n));
        return (int)n;
    }
    if (n != CHECKPOINT_BYTES) {
        MG_ERROR("journal: checkpoint file %s is corrupt: %zd bytes, expected %u", path, n,
                 CHECKPOINT_BYTES);
        return MG_ECORRUPT;
    }
    if (get_le32(b) != CHECKPOINT_MAGIC || get_le32(b + 4) != CHECKPOINT_VERSION) {
        MG_ERROR("journal: checkpoint file %s is corrupt: bad magic or version", path);
        return MG_ECORRUPT;
    }
    uint32_t crc = mg_crc32c(0, b, 24);
    if (crc != get_le32(b + 24)) {
        MG_ERROR("journal: checkpoint file %s is corrupt: CRC mismatch (stored %08x, computed "
                 "%08x); refusing to guess which records are still needed",
                 path, get_le32(b + 24), crc);
        return MG_ECORRUPT;
    }
    mark->segment_id = get_le64(b + 8);
    mark->offset = get_le64(b + 16);
    return MG_OK;
}

static int checkpoint_write(bk_journal *j, bk_journal_pos pos)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    file_path(j, CHECKPOINT_TMP_NAME, tmp, sizeof(tmp));
    file_path(j, CHECKPOINT_NAME, path, sizeof(path));
    uint8_t b[CHECKPOINT_BYTES];
    put_le32(b, CHECKPOINT_MAGIC);
    put_le32(b + 4, CHECKPOINT_VERSION);
    put_le64(b + 8, pos.segment_id);
    put_le64(b + 16, pos.offset);
    put_le32(b + 24, mg_crc32c(0, b, 24));

    int fd;
    int rc = bk_io_open(j->io, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
    if (rc != MG_OK)
        goto fail;
    rc = bk_io_pwrite(j->io, fd, b, sizeof(b), 0);
    if (rc == MG_OK)
        rc = bk_io_fdatasync(j->io, fd);
    bk_io_close(j->io, fd);
    if (rc == MG_OK)
        rc = bk_io_rename(j->io, tmp, path);
    if (rc == MG_OK)
        rc = bk_io_fsync_dir(j->io, j->dir);
    if (rc == MG_OK)
        return MG_OK;
fail:
    MG_ERROR("journal: cannot write checkpoint %s: %s", path, mg_strerror(rc));
    (void)bk_io_unlink(j->io, tmp);
    return rc;
}

/* ---- segments ----------------------------------------------------------------------------- */

/* Creates segment `id`, preallocated and with its size and directory entry on disk, so that
 * later fdatasyncs only write data. Returns MG_OK and *fd_out, or an error (file removed). */
static int segment_create(bk_journal *j, uint64_t id, int *fd_out)
{
    char path[PATH_MAX];
    segment_path(j, id, path, sizeof(path));
    int fd = -1;
    int rc = MG_ENOTFOUND;
    uint64_t spare;
    if (spare_take(j, &spare)) {
        /* Reuse: rename, then open. Its old records end every replay of it (other segment). */
        char from[PATH_MAX];
        spare_path(j, spare, from, sizeof(from));
        rc = bk_io_rename(j->io, from, path);
        if (rc == MG_OK)
            rc = bk_io_open(j->io, path, O_RDWR, 0, &fd);
        if (rc != MG_OK) {
            MG_WARN("journal: cannot reuse %s as %s (%s); creating a new segment", from, path,
                    mg_strerror(rc));
            (void)bk_io_unlink(j->io, from);
            (void)bk_io_unlink(j->io, path);
        } else {
            MG_DEBUG("journal: %s: segment %llu reuses the file of segment %llu", j->dir,
                     (unsigned long long)id, (unsigned long long)spare);
        }
    }
    bool reused = rc == MG_OK;
    if (rc != MG_OK) {
        rc = bk_io_open(j->io, path, O_RDWR | O_CREAT | O_EXCL, 0644, &fd);
        if (rc != MG_OK) {
            MG_ERROR("journal: cannot create %s: %s", path, mg_strerror(rc));
            return rc;
        }
    }
    /* A reused file is normally allocated already: then this changes nothing. */
    const char *what = "preallocate";
    rc = bk_io_allocate(j->io, fd, 0, j->segment_bytes);
    if (rc == MG_OK) {
        what = "sync";
        rc = bk_io_fdatasync(j->io, fd);
    }
    if (rc == MG_OK) {
        what = "sync the directory of";
        rc = bk_io_fsync_dir(j->io, j->dir);
    }
    if (rc != MG_OK) {
        MG_ERROR("journal: cannot %s %s (%llu bytes): %s", what, path,
                 (unsigned long long)j->segment_bytes, mg_strerror(rc));
        bk_io_close(j->io, fd);
        (void)bk_io_unlink(j->io, path);
        return rc;
    }
    /* Writes go through a second descriptor opened with O_DIRECT, when the file system takes
     * it; otherwise through the page cache (logged once). */
    bool direct = false;
    if (j->want_direct) {
        int dfd;
        int drc = bk_io_open(j->io, path, O_WRONLY | O_DIRECT, 0, &dfd);
        if (drc == MG_OK) {
            bk_io_close(j->io, fd);
            fd = dfd;
            direct = true;
        } else {
            MG_INFO("journal: %s: O_DIRECT is refused (%s); writing through the page cache", j->dir,
                    mg_strerror(drc));
            j->want_direct = false;
        }
    }
    j->direct = direct;
    j->reused = reused;
    *fd_out = fd;
    return MG_OK;
}

/* Shrinks a segment about to be deleted a step at a time. Unlinking a whole 256 MiB segment
 * frees all its extents in one file-system transaction, and the next journal fdatasync must
 * wait for that transaction to commit: measured as 250-300 ms stalls of every add at each
 * checkpoint (publish p99 241 ms against 44 ms with the deletion left out). Freeing
 * SEGMENT_SHRINK_STEP_BYTES per ftruncate, with a short pause between steps, keeps each
 * transaction small. Runs on the checkpointing thread, never on the journal thread; a failure
 * only means the final unlink frees the rest at once. */
static void segment_shrink(bk_journal *j, const char *path)
{
    int fd;
    if (bk_io_open(j->io, path, O_RDWR, 0, &fd) != MG_OK)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        uint64_t size = (uint64_t)st.st_size;
        while (size > SEGMENT_SHRINK_STEP_BYTES) {
            size -= SEGMENT_SHRINK_STEP_BYTES;
            if (bk_io_truncate(j->io, fd, size) != MG_OK)
                break;
            struct timespec pause = { 0, SEGMENT_SHRINK_PAUSE_NS };
            nanosleep(&pause, NULL);
        }
    }
    bk_io_close(j->io, fd);
}

/* Keeps the old segment id (at path) as a spare if the pool has room: true when it did. */
static bool spare_keep(bk_journal *j, uint64_t id, const char *path)
{
    pthread_mutex_lock(&j->spare_mu);
    bool keep = j->spare_count < SPARES_MAX;
    if (keep) {
        char to[PATH_MAX];
        spare_path(j, id, to, sizeof(to));
        int rc = bk_io_rename(j->io, path, to);
        if (rc == MG_OK)
            j->spares[j->spare_count++] = id;
        else
            MG_WARN("journal: cannot keep %s as a spare (%s); deleting it", path, mg_strerror(rc));
        keep = rc == MG_OK;
    }
    pthread_mutex_unlock(&j->spare_mu);
    return keep;
}

/* Fills the spare pool from the spare files found at open; deletes those past SPARES_MAX. */
static void spares_load(bk_journal *j)
{
    uint64_t *ids = NULL;
    size_t count = 0;
    if (mg_list_ids(j->dir, parse_spare_name, BK_JOURNAL_SEGMENTS_MAX, &ids, &count) != MG_OK)
        return;
    for (size_t i = 0; i < count; i++) {
        if (j->spare_count < SPARES_MAX) {
            j->spares[j->spare_count++] = ids[i];
            continue;
        }
        char path[PATH_MAX];
        spare_path(j, ids[i], path, sizeof(path));
        segment_shrink(j, path);
        (void)bk_io_unlink(j->io, path);
    }
    mg_free(ids);
}

/* Retires the segment files with an id below before_id (never cur_id): kept as spares while
 * the pool has room, else deleted. Failures are logged. */
static void segments_delete_before(bk_journal *j, uint64_t before_id, uint64_t cur_id)
{
    uint64_t *ids = NULL;
    size_t count = 0;
    if (list_segments(j->dir, &ids, &count) != MG_OK)
        return;
    for (size_t i = 0; i < count && ids[i] < before_id; i++) {
        if (ids[i] == cur_id)
            continue;
        char path[PATH_MAX];
        segment_path(j, ids[i], path, sizeof(path));
        if (spare_keep(j, ids[i], path))
            continue;
        segment_shrink(j, path);
        int rc = bk_io_unlink(j->io, path);
        if (rc != MG_OK && rc != MG_ENOTFOUND)
            MG_WARN("journal: cannot delete %s: %s", path, mg_strerror(rc));
        else
            MG_DEBUG("journal: deleted %s", path);
    }
    mg_free(ids);
}

/* ---- replay ------------------------------------------------------------------------------- */

typedef struct seg_reader {
    bk_io *io;
    int fd;
    uint32_t seg_id; /* low 32 bits of the id of the segment being read */
    uint64_t file_bytes;
    uint8_t *win; /* bytes [win_off, win_off + win_len) of the file */
    size_t win_cap;
    uint64_t win_off;
    size_t win_len;
} seg_reader;

/* Makes bytes [off, off + n) available (the caller checked they lie inside the file) and points
 * *out at them. Returns MG_OK, MG_ENOMEM, MG_EIO (or the read's error). */
static int reader_get(seg_reader *r, uint64_t off, size_t n, const uint8_t **out)
{
    MG_ASSERT(off + n <= r->file_bytes);
    if (off >= r->win_off && off + n <= r->win_off + r->win_len) {
        *out = r->win + (off - r->win_off);
        return MG_OK;
    }
    if (n > r->win_cap) {
        uint8_t *nw = mg_malloc(n);
        if (nw == NULL)
            return MG_ENOMEM;
        mg_free(r->win);
        r->win = nw;
        r->win_cap = n;
    }
    uint64_t left = r->file_bytes - off;
    size_t want = left < r->win_cap ? (size_t)left : r->win_cap;
    ssize_t got = bk_io_pread(r->io, r->fd, r->win, want, off);
    r->win_off = off;
    r->win_len = got > 0 ? (size_t)got : 0;
    if (got < 0)
        return (int)got;
    if ((size_t)got < n)
        return MG_EIO; /* the file shrank under us, or a short read */
    *out = r->win;
    return MG_OK;
}

typedef enum rec_kind { REC_OK, REC_PAD, REC_END, REC_BAD } rec_kind;

typedef struct rec_view {
    int type;
    int64_t ledger_id;
    int64_t entry_id;
    const uint8_t *payload;
    uint32_t len;
    const char *why; /* REC_BAD: the reason */
} rec_view;

/* Decodes the record at off. Returns MG_OK with *kind set, or a read error. */
static int record_at(seg_reader *r, uint64_t off, rec_kind *kind, rec_view *v)
{
    const uint8_t *p;
    if (off >= r->file_bytes) {
        *kind = REC_END;
        return MG_OK;
    }
    uint64_t avail = r->file_bytes - off;
    if (avail < HDR_BYTES) {
        MG_TRY(reader_get(r, off, (size_t)avail, &p));
        *kind = all_zero(p, (size_t)avail) ? REC_END : REC_BAD;
        v->why = "short header at the end of the file";
        return MG_OK;
    }
    MG_TRY(reader_get(r, off, HDR_BYTES, &p));
    if (all_zero(p, HDR_BYTES)) {
        *kind = REC_END;
        return MG_OK;
    }
    uint32_t len = get_le32(p);
    uint32_t crc = get_le32(p + 4);
    int type = p[8];
    *kind = REC_BAD;
    if (type != BK_JREC_ADD && type != BK_JREC_FENCE && type != REC_TYPE_PAD) {
        v->why = "unknown record type";
        return MG_OK;
    }
    if (len > BK_JOURNAL_RECORD_BYTES_MAX) {
        v->why = "payload length over the limit";
        return MG_OK;
    }
    if ((uint64_t)HDR_BYTES + len > avail) {
        v->why = "record runs past the end of the file";
        v->len = len;
        return MG_OK;
    }
    MG_TRY(reader_get(r, off, HDR_BYTES + (size_t)len, &p));
    uint32_t actual = mg_crc32c(mg_crc32c(0, p + 8, HDR_BYTES - 8), p + HDR_BYTES, len);
    v->type = type;
    v->ledger_id = (int64_t)get_le64(p + 9);
    v->entry_id = (int64_t)get_le64(p + 17);
    v->payload = len ? p + HDR_BYTES : NULL;
    v->len = len;
    if (actual != crc) {
        v->why = "CRC mismatch";
        return MG_OK;
    }
    if (get_le32(p + 25) != r->seg_id) {
        *kind = REC_END; /* intact, but from the file's previous use as another segment */
        return MG_OK;
    }
    *kind = type == REC_TYPE_PAD ? REC_PAD : REC_OK;
    return MG_OK;
}

/* Replays segment id from offset start. Read errors fail (MG_EIO ...); bad records do not. */
static int replay_segment(bk_journal *j, seg_reader *r, uint64_t id, uint64_t start,
                          bk_journal_replay_fn replay, void *arg, uint64_t *records)
{
    char path[PATH_MAX];
    segment_path(j, id, path, sizeof(path));
    int rc = bk_io_open(j->io, path, O_RDONLY, 0, &r->fd);
    if (rc != MG_OK) {
        MG_ERROR("journal: cannot open %s for replay: %s", path, mg_strerror(rc));
        return rc;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0) {
        rc = mg_err_from_errno(errno);
        bk_io_close(j->io, r->fd);
        return rc;
    }
    r->file_bytes = (uint64_t)st.st_size;
    r->seg_id = (uint32_t)id;
    r->win_off = 0;
    r->win_len = 0;

    uint64_t off = start;
    /* Every round advances off by at least HDR_BYTES, so this ends within the file size. */
    for (;;) {
        rec_kind kind;
        rec_view v = { 0 };
        rc = record_at(r, off, &kind, &v);
        if (rc != MG_OK) {
            MG_ERROR("journal: cannot read %s at offset %llu: %s", path, (unsigned long long)off,
                     mg_strerror(rc));
            break;
        }
        if (kind == REC_END)
            break;
        if (kind == REC_BAD) {
            MG_WARN("journal: torn or corrupt record in %s at offset %llu (%s): replay of this "
                    "segment ends there",
                    path, (unsigned long long)off, v.why);
            /* Is there intact data behind it? Only checkable when its length looked sane. */
            if (v.why != NULL && strcmp(v.why, "CRC mismatch") == 0) {
                uint64_t next = off + HDR_BYTES + v.len;
                rec_kind nk;
                rec_view nv = { 0 };
                if (record_at(r, next, &nk, &nv) == MG_OK && nk == REC_OK)
                    MG_ERROR("journal: %s: valid records follow the corrupt one at offset %llu; "
                             "they are skipped (acknowledged data in this segment is lost)",
                             path, (unsigned long long)off);
            }
            break;
        }
        if (kind == REC_OK) {
            if (replay != NULL)
                replay(v.type, v.ledger_id, v.entry_id, v.payload, v.len, arg);
            (*records)++;
        }
        off += HDR_BYTES + (uint64_t)v.len;
    }
    bk_io_close(j->io, r->fd);
    r->fd = -1;
    return rc;
}

/* Replays every segment at or after the mark; returns the highest segment id found (0 if none)
 * in *max_id. Deletes segments wholly before the mark. */
static int replay_all(bk_journal *j, bk_journal_pos mark, bk_journal_replay_fn replay, void *arg,
                      uint64_t *max_id)
{
    uint64_t *ids = NULL;
    size_t count = 0;
    MG_TRY(list_segments(j->dir, &ids, &count));
    *max_id = count ? ids[count - 1] : 0;

    seg_reader r = { .io = j->io, .fd = -1 };
    r.win = mg_malloc(REPLAY_WINDOW_BYTES);
    if (r.win == NULL) {
        mg_free(ids);
        return MG_ENOMEM;
    }
    r.win_cap = REPLAY_WINDOW_BYTES;

    int rc = MG_OK;
    uint64_t records = 0, segments = 0;
    for (size_t i = 0; i < count && rc == MG_OK; i++) {
        if (ids[i] < mark.segment_id) {
            /* Left behind by a checkpoint interrupted before its deletions. */
            char path[PATH_MAX];
            segment_path(j, ids[i], path, sizeof(path));
            int urc = bk_io_unlink(j->io, path);
            if (urc != MG_OK && urc != MG_ENOTFOUND)
                MG_WARN("journal: cannot delete %s: %s", path, mg_strerror(urc));
            continue;
        }
        uint64_t start = ids[i] == mark.segment_id ? mark.offset : 0;
        rc = replay_segment(j, &r, ids[i], start, replay, arg, &records);
        segments++;
    }
    mg_free(r.win);
    mg_free(ids);
    if (rc == MG_OK)
        MG_INFO("journal: %s: replayed %llu records from %llu segments after checkpoint "
                "(%llu, %llu)",
                j->dir, (unsigned long long)records, (unsigned long long)segments,
                (unsigned long long)mark.segment_id, (unsigned long long)mark.offset);
    return rc;
}

/* ---- the journal thread ------------------------------------------------------------------- */

static uint64_t slot_bytes(const bk_journal_slot *s)
{
    return HDR_BYTES + (uint64_t)s->len;
}

static bk_journal_slot *slot_at(bk_journal *j, uint32_t i)
{
    return &j->slots[(j->head + i) % j->queue_max];
}

/* Waits on cond for at most ns, telling appenders what the thread waits for. Under mu. */
static void wait_locked(bk_journal *j, int what, uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_nsec + ns;
    ts.tv_sec += (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    j->waiting = what;
    pthread_cond_timedwait(&j->cond, &j->mu, &ts);
    j->waiting = WAIT_NONE;
}

/* The group-commit wait (rule in the header comment). Under mu, with count > 0. */
static void group_wait_locked(bk_journal *j)
{
    uint64_t seen = j->accepted_total;
    for (uint32_t round = 0; round < GROUP_WAIT_ROUNDS_MAX; round++) {
        if (j->closing || j->queued_bytes >= j->group_cap_bytes)
            return;
        uint64_t now = mg_clock_mono_ns();
        uint64_t deadline = slot_at(j, 0)->enqueued_ns + j->group_wait_ns;
        if (now >= deadline)
            return;
        uint64_t step = deadline - now < j->group_step_ns ? deadline - now : j->group_step_ns;
        wait_locked(j, WAIT_GROUP, step);
        if (j->accepted_total == seen)
            return; /* nothing arrived during the step: the burst is over */
        seen = j->accepted_total;
    }
}

/* Records the new durable position before the records it covers complete (invariant 2). */
static void set_durable(bk_journal *j)
{
    pthread_mutex_lock(&j->mu);
    j->durable = (bk_journal_pos){ j->seg_id, j->seg_off };
    j->cur_seg_id = j->seg_id;
    pthread_mutex_unlock(&j->mu);
}

static int roll_segment(bk_journal *j)
{
    uint64_t id = j->seg_id + 1;
    int fd;
    int rc = segment_create(j, id, &fd);
    if (rc != MG_OK)
        return rc;
    bk_io_close(j->io, j->fd);
    j->fd = fd;
    j->seg_id = id;
    j->seg_off = 0;
    pthread_mutex_lock(&j->mu);
    j->cur_seg_id = id;
    pthread_mutex_unlock(&j->mu);
    MG_DEBUG("journal: %s: rolled to segment %llu", j->dir, (unsigned long long)id);
    return MG_OK;
}

static void encode_header(uint8_t *h, const bk_journal_slot *s, const uint8_t *payload,
                          uint64_t seg_id)
{
    h[8] = (uint8_t)s->type;
    put_le64(h + 9, (uint64_t)s->ledger_id);
    put_le64(h + 17, (uint64_t)s->entry_id);
    put_le32(h + 25, (uint32_t)seg_id);
    uint32_t crc = mg_crc32c(mg_crc32c(0, h + 8, HDR_BYTES - 8), payload, s->len);
    put_le32(h, (uint32_t)s->len);
    put_le32(h + 4, crc);
}

static const uint8_t *slot_payload(const bk_journal_slot *s)
{
    return s->len ? mg_buf_data(s->buf) + s->off : NULL;
}

/* Bytes of the PAD record that ends a group of `bytes` bytes on a block boundary: 0 when it
 * already does or the segment is written through the page cache, else at least a header. */
static uint64_t group_pad(const bk_journal *j, uint64_t bytes)
{
    if (!j->direct)
        return 0;
    uint64_t pad = (WRITE_BUFFER_ALIGN - bytes % WRITE_BUFFER_ALIGN) % WRITE_BUFFER_ALIGN;
    if (pad > 0 && pad < HDR_BYTES)
        pad += WRITE_BUFFER_ALIGN;
    return pad;
}

/* Streams a group into the segment from j->seg_off through the write buffer: bytes are copied
 * in, and the buffer is written whenever it is full (whole blocks: its size is a multiple of
 * the block) and at the end of the group. */
typedef struct group_writer {
    bk_journal *j;
    size_t fill;
    uint64_t off;
    int rc;
} group_writer;

static void gw_flush(group_writer *w)
{
    if (w->rc != MG_OK || w->fill == 0)
        return;
    w->rc = bk_io_pwrite(w->j->io, w->j->fd, w->j->wbuf, w->fill, w->off);
    w->off += w->fill;
    w->fill = 0;
}

/* Copies n bytes from p (zeros when p is NULL) into the group. */
static void gw_put(group_writer *w, const uint8_t *p, size_t n)
{
    while (n > 0 && w->rc == MG_OK) {
        size_t k = w->j->wbuf_cap - w->fill;
        if (k > n)
            k = n;
        if (p != NULL)
            memcpy(w->j->wbuf + w->fill, p, k);
        else
            memset(w->j->wbuf + w->fill, 0, k);
        w->fill += k;
        if (p != NULL)
            p += k;
        n -= k;
        if (w->fill == w->j->wbuf_cap)
            gw_flush(w);
    }
}

/* Writes a PAD record of pad bytes (header included, pad >= HDR_BYTES). */
static void gw_pad(group_writer *w, uint64_t pad)
{
    static const uint8_t zeros[2 * WRITE_BUFFER_ALIGN];
    MG_ASSERT(pad >= HDR_BYTES && pad - HDR_BYTES <= sizeof(zeros));
    uint32_t len = (uint32_t)(pad - HDR_BYTES);
    uint8_t h[HDR_BYTES] = { 0 };
    h[8] = REC_TYPE_PAD;
    put_le32(h + 25, (uint32_t)w->j->seg_id);
    put_le32(h, len);
    put_le32(h + 4, mg_crc32c(mg_crc32c(0, h + 8, HDR_BYTES - 8), zeros, len));
    gw_put(w, h, HDR_BYTES);
    gw_put(w, NULL, len);
}

/* Writes the n records at the head of the ring (bytes in all, before padding) and syncs them.
 * Journal thread, without mu. Returns MG_OK or the failure status (MG_EIO / MG_ENOSPC). */
static int write_group(bk_journal *j, uint32_t n, uint64_t bytes)
{
    uint64_t pad = group_pad(j, bytes);
    /* In a reused file the old records lie after the new ones, and the new data need not end
     * on one of their boundaries: zeros after each group mark the end for replay (the next
     * group overwrites them). */
    uint64_t term = j->reused ? (j->direct ? WRITE_BUFFER_ALIGN : HDR_BYTES) : 0;
    if (j->seg_off > 0 && j->seg_off + bytes + pad + term > j->segment_bytes) {
        int rc = roll_segment(j);
        if (rc != MG_OK)
            return failure_status(rc);
    }
    group_writer w = { .j = j, .off = j->seg_off, .rc = MG_OK };
    for (uint32_t i = 0; i < n && w.rc == MG_OK; i++) {
        const bk_journal_slot *s = slot_at(j, i);
        uint8_t h[HDR_BYTES];
        encode_header(h, s, slot_payload(s), j->seg_id);
        gw_put(&w, h, HDR_BYTES);
        gw_put(&w, slot_payload(s), s->len);
    }
    if (pad > 0)
        gw_pad(&w, pad);
    if (j->reused)
        gw_put(&w, NULL, j->direct ? WRITE_BUFFER_ALIGN : HDR_BYTES);
    gw_flush(&w);
    int rc = w.rc;
    MG_ASSERT(rc != MG_OK || w.off >= j->seg_off + bytes + pad);
    if (rc != MG_OK) {
        MG_ERROR("journal: %s: write of %u records (%llu bytes) to segment %llu at offset %llu "
                 "failed: %s; the journal is now read-only",
                 j->dir, n, (unsigned long long)bytes, (unsigned long long)j->seg_id,
                 (unsigned long long)j->seg_off, mg_strerror(rc));
        return failure_status(rc);
    }
    uint64_t t0 = mg_clock_mono_ns();
    rc = bk_io_fdatasync(j->io, j->fd);
    mg_histogram_observe(j->m_sync_latency, (mg_clock_mono_ns() - t0) / 1000);
    __atomic_add_fetch(&j->sync_count, 1, __ATOMIC_RELAXED);
    if (rc != MG_OK) {
        /* Never retried: see "fsyncgate" in the header comment. */
        pthread_mutex_lock(&j->mu);
        j->fail_sync = true;
        pthread_mutex_unlock(&j->mu);
        MG_ERROR("journal: %s: fdatasync of segment %llu failed: %s; %u records are not "
                 "acknowledged and the journal is now read-only",
                 j->dir, (unsigned long long)j->seg_id, mg_strerror(rc), n);
        return failure_status(rc);
    }
    j->seg_off += bytes + pad;
    set_durable(j);
    mg_histogram_observe(j->m_group_entries, n);
    mg_histogram_observe(j->m_group_bytes, bytes);
    mg_counter_add(j->m_records, n);
    mg_counter_add(j->m_bytes, bytes);
    return MG_OK;
}

/* Completes the n records at the head of the ring, without mu, then removes them. */
static void complete_group(bk_journal *j, uint32_t n, uint64_t bytes, int status)
{
    for (uint32_t i = 0; i < n; i++) {
        bk_journal_slot *s = slot_at(j, i);
        /* The reference goes first, so a caller woken by done sees the journal let go. */
        mg_buf_unref(s->buf);
        s->buf = NULL;
        if (s->done != NULL)
            s->done(status, s->arg);
    }
    pthread_mutex_lock(&j->mu);
    j->head = (j->head + n) % j->queue_max;
    j->count -= n;
    j->queued_bytes -= bytes;
    pthread_mutex_unlock(&j->mu);
}

static void enter_failed_locked(bk_journal *j, int status)
{
    if (__atomic_load_n(&j->state, __ATOMIC_RELAXED) == STATE_FAILED)
        return;
    j->fail_status = status;
    __atomic_store_n(&j->state, STATE_FAILED, __ATOMIC_RELEASE);
    mg_counter_inc(j->m_failures);
}

static void *journal_main(void *arg)
{
    bk_journal *j = arg;
    mg_log_set_thread_name("bk-journal");
    pthread_mutex_lock(&j->mu);
    for (;;) {
        bool failed = __atomic_load_n(&j->state, __ATOMIC_RELAXED) == STATE_FAILED;
        if (failed && j->resume_requested && j->count == 0 && !j->closing) {
            /* The failed group and everything queued behind it have completed with the error:
             * nothing acknowledged lies after the failure, so writing goes on in a new segment
             * (as after a restart; replay ends the old one at its torn tail). */
            j->resume_requested = false;
            pthread_mutex_unlock(&j->mu);
            int rc = roll_segment(j);
            pthread_mutex_lock(&j->mu);
            if (rc == MG_OK) {
                j->fail_status = MG_OK;
                __atomic_store_n(&j->state, STATE_OPEN, __ATOMIC_RELEASE);
                MG_INFO("journal: %s: writable again, writing segment %llu", j->dir,
                        (unsigned long long)j->seg_id);
            }
            j->resume_status = rc == MG_OK ? MG_OK : failure_status(rc);
            j->resume_done = true;
            pthread_cond_broadcast(&j->resume_cond);
            continue;
        }
        if (j->count == 0) {
            if (j->closing)
                break;
            wait_locked(j, WAIT_IDLE, IDLE_WAIT_NS);
            continue;
        }
        if (failed) {
            /* Appends are refused now, so this drains the ring. */
            uint32_t n = j->count;
            uint64_t bytes = j->queued_bytes;
            int status = j->fail_status;
            pthread_mutex_unlock(&j->mu);
            complete_group(j, n, bytes, status);
            pthread_mutex_lock(&j->mu);
            continue;
        }
        group_wait_locked(j);
        mg_gauge_set(j->m_queue, (double)j->count);
        uint32_t n = 0;
        uint64_t bytes = 0;
        while (n < j->count) {
            uint64_t b = slot_bytes(slot_at(j, n));
            if (n > 0 && bytes + b > j->group_cap_bytes)
                break;
            bytes += b;
            n++;
        }
        pthread_mutex_unlock(&j->mu);

        int rc = write_group(j, n, bytes);
        if (rc != MG_OK) {
            /* FAILED before the callbacks run, so appends they make are refused. */
            pthread_mutex_lock(&j->mu);
            enter_failed_locked(j, rc);
            pthread_mutex_unlock(&j->mu);
        }
        complete_group(j, n, bytes, rc);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- public API --------------------------------------------------------------------------- */

static void register_metrics(bk_journal *j, mg_metrics *reg)
{
    if (reg == NULL)
        return;
    j->m_sync_latency = mg_metrics_unlabelled_histogram(reg, "bookie_journal_sync_latency_ms",
                                                        "Latency of each journal fdatasync", 0.001);
    j->m_group_entries = mg_metrics_unlabelled_histogram(
        reg, "bookie_journal_group_entries", "Records made durable by one journal fdatasync", 1.0);
    j->m_group_bytes =
        mg_metrics_unlabelled_histogram(reg, "bookie_journal_group_bytes",
                                        "Bytes (headers included) written per journal group", 1.0);
    j->m_records = mg_metrics_unlabelled_counter(reg, "bookie_journal_records_total",
                                                 "Journal records made durable");
    j->m_bytes = mg_metrics_unlabelled_counter(reg, "bookie_journal_bytes_total",
                                               "Journal bytes made durable, headers included");
    j->m_failures = mg_metrics_unlabelled_counter(reg, "bookie_journal_failures_total",
                                                  "Journal write or sync failures (each makes the "
                                                  "journal read-only until restart)");
    j->m_queue = mg_metrics_unlabelled_gauge(reg, "bookie_journal_queue_records",
                                             "Journal records queued when a group was formed");
}

static int check_opts(const bk_journal_opts *o)
{
    if (o == NULL || o->dir == NULL || o->dir[0] == '\0' || o->io == NULL)
        return MG_EINVAL;
    /* Room for "/journal-<16 hex>.log" or "/checkpoint.tmp" after the directory. */
    if (strlen(o->dir) + 1 + SEGMENT_NAME_BYTES + 1 > PATH_MAX)
        return MG_EINVAL;
    if (o->segment_bytes != 0 && (o->segment_bytes < BK_JOURNAL_SEGMENT_BYTES_MIN ||
                                  o->segment_bytes > BK_JOURNAL_SEGMENT_BYTES_MAX))
        return MG_EINVAL;
    if (o->group_wait_us > BK_JOURNAL_GROUP_WAIT_US_MAX)
        return MG_EINVAL;
    if (o->group_bytes_max > BK_JOURNAL_GROUP_BYTES_MAX)
        return MG_EINVAL;
    if (o->queue_max > BK_JOURNAL_QUEUE_RECORDS_MAX)
        return MG_EINVAL;
    return MG_OK;
}

static void journal_free(bk_journal *j)
{
    mg_free(j->slots);
    mg_free(j->wbuf);
    pthread_cond_destroy(&j->cond);
    pthread_cond_destroy(&j->resume_cond);
    pthread_mutex_destroy(&j->mu);
    pthread_mutex_destroy(&j->cp_mu);
    pthread_mutex_destroy(&j->spare_mu);
    mg_free(j);
}

int bk_journal_open(const bk_journal_opts *opts, bk_journal_replay_fn replay, void *arg,
                    bk_journal **out)
{
    MG_TRY(check_opts(opts));
    bk_journal *j = mg_calloc(1, sizeof(*j));
    if (j == NULL)
        return MG_ENOMEM;
    size_t dlen = strlen(opts->dir);
    while (dlen > 1 && opts->dir[dlen - 1] == '/')
        dlen--;
    memcpy(j->dir, opts->dir, dlen);
    j->dir[dlen] = '\0';
    j->io = opts->io;
    j->fd = -1;
    j->want_direct = !opts->buffered;
    j->segment_bytes = opts->segment_bytes ? opts->segment_bytes : BK_JOURNAL_SEGMENT_BYTES_DEFAULT;
    uint32_t wait_us = opts->group_wait_us ? opts->group_wait_us : BK_JOURNAL_GROUP_WAIT_US_DEFAULT;
    j->group_wait_ns = (uint64_t)wait_us * 1000;
    j->group_step_ns = j->group_wait_ns / GROUP_WAIT_STEPS;
    if (j->group_step_ns < 1000)
        j->group_step_ns = 1000;
    uint64_t gmax =
        opts->group_bytes_max ? opts->group_bytes_max : BK_JOURNAL_GROUP_BYTES_MAX_DEFAULT;
    j->group_cap_bytes = gmax < j->segment_bytes ? gmax : j->segment_bytes;
    j->queue_max = opts->queue_max ? opts->queue_max : BK_JOURNAL_QUEUE_MAX_DEFAULT;

    pthread_mutex_init(&j->mu, NULL);
    pthread_mutex_init(&j->cp_mu, NULL);
    pthread_mutex_init(&j->spare_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cond, &ca);
    pthread_cond_init(&j->resume_cond, &ca);
    pthread_condattr_destroy(&ca);

    /* The buffer holds a whole group, and at least one header (for the direct path). */
    j->wbuf_cap = j->group_cap_bytes > HDR_BYTES ? (size_t)j->group_cap_bytes : HDR_BYTES;
    j->wbuf_cap = (j->wbuf_cap + WRITE_BUFFER_ALIGN - 1) / WRITE_BUFFER_ALIGN * WRITE_BUFFER_ALIGN;
    j->wbuf = mg_aligned_alloc(WRITE_BUFFER_ALIGN, j->wbuf_cap);
    j->slots = mg_calloc(j->queue_max, sizeof(*j->slots));
    int rc = (j->wbuf == NULL || j->slots == NULL) ? MG_ENOMEM : MG_OK;

    if (rc == MG_OK)
        rc = mg_mkdirs(j->dir);
    if (rc == MG_OK) {
        char tmp[PATH_MAX];
        file_path(j, CHECKPOINT_TMP_NAME, tmp, sizeof(tmp));
        (void)bk_io_unlink(j->io, tmp); /* an interrupted checkpoint; the old mark stands */
        rc = checkpoint_read(j, &j->mark);
    }
    uint64_t max_id = 0;
    if (rc == MG_OK)
        rc = replay_all(j, j->mark, replay, arg, &max_id);
    if (rc == MG_OK)
        spares_load(j);
    if (rc == MG_OK) {
        j->seg_id = (max_id > j->mark.segment_id ? max_id : j->mark.segment_id) + 1;
        j->seg_off = 0;
        rc = segment_create(j, j->seg_id, &j->fd);
    }
    if (rc == MG_OK) {
        j->durable = (bk_journal_pos){ j->seg_id, 0 };
        j->cur_seg_id = j->seg_id;
        register_metrics(j, opts->metrics);
        int prc = pthread_create(&j->thread, NULL, journal_main, j);
        if (prc != 0) {
            rc = prc == ENOMEM || prc == EAGAIN ? MG_ENOMEM : mg_err_from_errno(prc);
            MG_ERROR("journal: cannot start the journal thread: %s", strerror(prc));
        } else {
            j->thread_started = true;
        }
    }
    if (rc != MG_OK) {
        if (j->fd >= 0)
            bk_io_close(j->io, j->fd);
        journal_free(j);
        return rc;
    }
    MG_INFO("journal: %s: open, writing segment %llu", j->dir, (unsigned long long)j->seg_id);
    *out = j;
    return MG_OK;
}

int bk_journal_append(bk_journal *j, int type, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                      size_t off, size_t len, bk_journal_done_fn done, void *arg)
{
    MG_ASSERT(j != NULL);
    if (type != BK_JREC_ADD && type != BK_JREC_FENCE)
        return MG_EINVAL;
    if (len > BK_JOURNAL_RECORD_BYTES_MAX)
        return MG_ELIMIT;
    if (len > 0 && (buf == NULL || off > mg_buf_len(buf) || len > mg_buf_len(buf) - off))
        return MG_EINVAL;

    pthread_mutex_lock(&j->mu);
    int rc = MG_OK;
    if (__atomic_load_n(&j->state, __ATOMIC_RELAXED) == STATE_FAILED)
        rc = MG_EREADONLY;
    else if (j->closing)
        rc = MG_ECLOSED;
    else if (j->count == j->queue_max)
        rc = MG_EAGAIN;
    if (rc != MG_OK) {
        pthread_mutex_unlock(&j->mu);
        return rc;
    }
    bk_journal_slot *s = &j->slots[(j->head + j->count) % j->queue_max];
    *s = (bk_journal_slot){
        .type = type,
        .ledger_id = ledger_id,
        .entry_id = entry_id,
        .buf = len > 0 ? mg_buf_ref(buf) : NULL,
        .off = off,
        .len = len,
        .done = done,
        .arg = arg,
        .enqueued_ns = mg_clock_mono_ns(),
    };
    j->count++;
    j->queued_bytes += slot_bytes(s);
    j->accepted_total++;
    if (j->waiting == WAIT_IDLE ||
        (j->waiting == WAIT_GROUP && j->queued_bytes >= j->group_cap_bytes))
        pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->mu);
    return MG_OK;
}

bk_journal_pos bk_journal_durable_pos(bk_journal *j)
{
    pthread_mutex_lock(&j->mu);
    bk_journal_pos p = j->durable;
    pthread_mutex_unlock(&j->mu);
    return p;
}

int bk_journal_checkpoint(bk_journal *j, bk_journal_pos pos)
{
    pthread_mutex_lock(&j->cp_mu);
    if (bk_journal_pos_cmp(pos, j->mark) <= 0) {
        pthread_mutex_unlock(&j->cp_mu);
        return MG_OK;
    }
    pthread_mutex_lock(&j->mu);
    bk_journal_pos durable = j->durable;
    uint64_t cur = j->cur_seg_id;
    pthread_mutex_unlock(&j->mu);
    if (bk_journal_pos_cmp(pos, durable) > 0) {
        pthread_mutex_unlock(&j->cp_mu);
        return MG_EINVAL;
    }
    int rc = checkpoint_write(j, pos);
    if (rc == MG_OK) {
        j->mark = pos;
        segments_delete_before(j, pos.segment_id, cur);
    }
    pthread_mutex_unlock(&j->cp_mu);
    return rc;
}

bool bk_journal_failed(const bk_journal *j)
{
    return __atomic_load_n(&j->state, __ATOMIC_ACQUIRE) == STATE_FAILED;
}

/* How long bk_journal_resume waits for the journal thread: it only has to finish completing the
 * failed records and create one segment (a preallocation and two syncs). */
#define RESUME_WAIT_NS (30ull * 1000 * 1000 * 1000)

int bk_journal_resume(bk_journal *j)
{
    pthread_mutex_lock(&j->mu);
    int rc = MG_OK;
    if (__atomic_load_n(&j->state, __ATOMIC_RELAXED) != STATE_FAILED) {
        rc = MG_OK;
    } else if (j->closing) {
        rc = MG_ECLOSED;
    } else if (j->fail_sync) {
        rc = MG_ESTATE;
    } else {
        j->resume_requested = true;
        j->resume_done = false;
        pthread_cond_signal(&j->cond);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t t = (uint64_t)ts.tv_nsec + RESUME_WAIT_NS;
        ts.tv_sec += (time_t)(t / 1000000000ull);
        ts.tv_nsec = (long)(t % 1000000000ull);
        while (!j->resume_done) {
            if (pthread_cond_timedwait(&j->resume_cond, &j->mu, &ts) == ETIMEDOUT)
                break;
        }
        rc = j->resume_done ? j->resume_status : MG_ETIMEDOUT;
        j->resume_requested = false;
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int bk_journal_fail_status(const bk_journal *j)
{
    bk_journal *m = (bk_journal *)j;
    pthread_mutex_lock(&m->mu);
    int rc = __atomic_load_n(&j->state, __ATOMIC_RELAXED) == STATE_FAILED ? j->fail_status : MG_OK;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

uint64_t bk_journal_sync_count(const bk_journal *j)
{
    return __atomic_load_n(&j->sync_count, __ATOMIC_RELAXED);
}

void bk_journal_close(bk_journal *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->mu);
    j->closing = true;
    pthread_cond_signal(&j->cond);
    pthread_mutex_unlock(&j->mu);
    if (j->thread_started)
        pthread_join(j->thread, NULL);
    MG_ASSERT(j->count == 0);
    if (j->fd >= 0)
        bk_io_close(j->io, j->fd);
    MG_INFO("journal: %s: closed at segment %llu offset %llu%s", j->dir,
            (unsigned long long)j->durable.segment_id, (unsigned long long)j->durable.offset,
            bk_journal_failed(j) ? " (failed)" : "");
    journal_free(j);
}
