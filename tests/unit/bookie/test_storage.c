/*
 * The storage engine end to end, on a real disk directory: adds, reads from each source
 * (write cache, disk through libaio, read cache after read-ahead), range reads across a flush
 * boundary and under a byte cap, last entry, fencing, deletion, garbage collection, journal
 * replay after a process dies without closing, and the error paths (an fdatasync failure puts
 * the storage in its read-only state; a corrupt byte on disk is reported, never served).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bookie/aio.h"
#include "bookie/entrylog.h"
#include "bookie/bookie.h"
#include "common/error.h"

#define TIMEOUT_MS 15000

static uv_loop_t loop;
static char dir[256];
static bk_storage *st;
static bk_io *io;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void timeout_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void wait_count(const int *counter, int target)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, timeout_cb, TIMEOUT_MS, 0);
    while (*counter < target && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_geq(*counter, target, "timed out: %d of %d callbacks", *counter, target);
}

static bk_storage_opts default_opts(void)
{
    static char jdir[300], ldir[300];
    snprintf(jdir, sizeof(jdir), "%s/journal", dir);
    snprintf(ldir, sizeof(ldir), "%s/ledgers", dir);
    bk_storage_opts o = {
        .journal_dir = jdir,
        .ledger_dir = ldir,
        .write_cache_bytes = 8u << 20,
        .read_cache_bytes = 8u << 20,
        .journal_segment_bytes = 4u << 20,
        .readahead = true,
        .readahead_bytes = 256u << 10,
        .io = io,
    };
    return o;
}

static void open_with(const bk_storage_opts *o)
{
    int rc = bk_storage_open(&loop, o, &st);
    cr_assert_eq(rc, MG_OK, "bk_storage_open: %s", mg_strerror(rc));
}

/* Opens with the default options and read-ahead off. */
static void open_no_readahead(void)
{
    bk_storage_opts o = default_opts();
    o.readahead = false;
    open_with(&o);
}

static void closed_cb(int status, void *arg)
{
    (*(int *)arg)++;
}

static void close_storage(void)
{
    int closed = 0;
    bk_storage_close(st, closed_cb, &closed);
    wait_count(&closed, 1);
    st = NULL;
}

static void setup(void)
{
    /* O_DIRECT needs a real file system: not tmpfs. */
    snprintf(dir, sizeof(dir), "/var/tmp/magnetar-storage-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    uv_loop_init(&loop);
    cr_assert_eq(bk_io_create(&io), MG_OK);
}

static void teardown(void)
{
    if (st) {
        /* Criterion ignores assertion failures here: a close that never ends aborts instead. */
        int closed = 0;
        bk_storage_close(st, closed_cb, &closed);
        uint64_t deadline = uv_now(&loop) + TIMEOUT_MS;
        while (closed == 0 && uv_now(&loop) < deadline) {
            uv_run(&loop, UV_RUN_NOWAIT);
            uv_sleep(1);
            uv_update_time(&loop);
        }
        if (closed == 0)
            abort();
        st = NULL;
    }
    for (int i = 0; i < 100 && uv_loop_close(&loop) == UV_EBUSY; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    bk_io_destroy(io);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(storage, .init = setup, .fini = teardown, .timeout = 120);

/* --- helpers ----------------------------------------------------------------------------- */

typedef struct adds {
    int done;
    int ok;
    int last_status;
} adds;

static void add_cb(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    adds *a = arg;
    a->done++;
    a->ok += status == MG_OK;
    a->last_status = status;
}

/* Entries of ledgers at or above this id all have FIXED_PAYLOAD bytes: what a range read can
 * walk (storage.c walk_plan); below it, sizes vary, which makes it fall back to the index. */
#define FIXED_LEDGER_MIN 1000
#define FIXED_PAYLOAD    1000

/* The payload of (ledger, entry): deterministic, size varies with the entry. */
static size_t payload_of(int64_t ledger, int64_t entry, uint8_t *out, size_t cap)
{
    size_t len = ledger >= FIXED_LEDGER_MIN ? FIXED_PAYLOAD
                                            : 100 + (size_t)((entry * 37 + ledger * 11) % 900);
    if (len > cap)
        len = cap;
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)((ledger * 31 + entry * 7 + (int64_t)i) & 0xff);
    return len;
}

static void add_range(int64_t ledger, int64_t first, int64_t last)
{
    adds a = { 0 };
    int issued = 0;
    for (int64_t e = first; e <= last; e++) {
        uint8_t tmp[1024];
        size_t len = payload_of(ledger, e, tmp, sizeof(tmp));
        mg_buf *b = mg_buf_new_copy(tmp, len);
        cr_assert_eq(bk_storage_add(st, ledger, e, b, 0, len, add_cb, &a), MG_OK);
        mg_buf_unref(b);
        issued++;
    }
    wait_count(&a.done, issued);
    cr_assert_eq(a.ok, issued, "an add failed: %s", mg_strerror(a.last_status));
}

static void flush(void)
{
    int done = 0;
    cr_assert_eq(bk_storage_flush(st, closed_cb, &done), MG_OK);
    wait_count(&done, 1);
}

/* A read whose callback checks every entry's bytes against payload_of(ledger, entry). */
typedef struct checked {
    int64_t ledger;
    int done;
    int status;
    size_t count;
    int64_t first, last;
    size_t bytes;
    int mismatches;
} checked;

static void checked_cb(int status, const bk_entry *entries, size_t count, void *arg)
{
    checked *c = arg;
    c->status = status;
    c->count = count;
    c->bytes = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t want[1024];
        size_t len = payload_of(c->ledger, entries[i].entry_id, want, sizeof(want));
        if (entries[i].len != len ||
            memcmp(mg_buf_data(entries[i].buf) + entries[i].off, want, len) != 0)
            c->mismatches++;
        if (i > 0 && entries[i].entry_id != entries[i - 1].entry_id + 1)
            c->mismatches++;
        c->bytes += entries[i].len;
    }
    if (count > 0) {
        c->first = entries[0].entry_id;
        c->last = entries[count - 1].entry_id;
    }
    c->done++;
}

static checked read_one(int64_t ledger, int64_t entry)
{
    checked c = { .ledger = ledger };
    cr_assert_eq(bk_storage_read(st, ledger, entry, checked_cb, &c), MG_OK);
    wait_count(&c.done, 1);
    return c;
}

static checked read_range(int64_t ledger, int64_t first, int64_t last, size_t max_bytes)
{
    checked c = { .ledger = ledger };
    cr_assert_eq(bk_storage_read_range(st, ledger, first, last, max_bytes, checked_cb, &c), MG_OK);
    wait_count(&c.done, 1);
    return c;
}

typedef struct lac {
    int done;
    int status;
    int64_t last;
} lac;

static void lac_cb(int status, int64_t last, void *arg)
{
    lac *l = arg;
    l->status = status;
    l->last = last;
    l->done++;
}

/* --- tests ----------------------------------------------------------------------------------- */

Test(storage, add_then_read_from_write_cache_and_disk)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(1, 0, 199);
    add_range(2, 0, 99);
    bk_storage_stats s0;
    bk_storage_stats_get(st, &s0);
    checked c = read_one(1, 17);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 1);
    cr_assert_eq(c.mismatches, 0);
    bk_storage_stats s1;
    bk_storage_stats_get(st, &s1);
    cr_assert_eq(s1.reads_write_cache, s0.reads_write_cache + 1);

    flush();
    for (int64_t e = 0; e < 200; e += 13) {
        c = read_one(1, e);
        cr_assert_eq(c.status, MG_OK, "entry %ld: %s", (long)e, mg_strerror(c.status));
        cr_assert_eq(c.count, 1);
        cr_assert_eq(c.mismatches, 0);
        cr_assert_eq(c.first, e);
    }
    bk_storage_stats s2;
    bk_storage_stats_get(st, &s2);
    cr_assert_gt(s2.reads_disk, 0, "after a flush, reads must come from the entry logs");
    cr_assert_eq(read_one(1, 200).status, MG_ENOTFOUND);
    cr_assert_eq(read_one(3, 0).status, MG_ENOTFOUND);
}

Test(storage, range_read_across_flush_boundary_and_byte_cap)
{
    open_no_readahead();
    add_range(5, 0, 499);
    flush();
    add_range(5, 500, 599); /* these stay in the write cache */
    checked c = read_range(5, 450, 560, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 111, "got %zu entries", c.count);
    cr_assert_eq(c.first, 450);
    cr_assert_eq(c.last, 560);
    cr_assert_eq(c.mismatches, 0);

    /* The byte cap: entries are returned until the cap is reached (the entry that crosses it
     * included); at least one entry comes back even under a tiny cap. */
    size_t expect_bytes = 0, expect_count = 0;
    for (int64_t e = 0; e <= 499 && expect_bytes < 20000; e++) {
        uint8_t tmp[1024];
        expect_bytes += payload_of(5, e, tmp, sizeof(tmp));
        expect_count++;
    }
    c = read_range(5, 0, 499, 20000);
    cr_assert_eq(c.count, expect_count, "got %zu, want %zu", c.count, expect_count);
    cr_assert_eq(c.bytes, expect_bytes);
    cr_assert_eq(c.mismatches, 0);
    c = read_range(5, 10, 499, 1);
    cr_assert_eq(c.count, 1);
    cr_assert_eq(c.first, 10);

    /* A range read stops at the first missing entry. */
    c = read_range(5, 590, 700, SIZE_MAX);
    cr_assert_eq(c.count, 10);
    cr_assert_eq(c.last, 599);
    cr_assert_eq(read_range(5, 600, 700, SIZE_MAX).status, MG_ENOTFOUND);

    /* One disk read covers a contiguous run: far fewer reads than entries. */
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_lt(s.disk_reads * 10, s.reads_disk, "%lu disk reads for %lu entries",
                 (unsigned long)s.disk_reads, (unsigned long)s.reads_disk);
}

Test(storage, range_read_walks_records_of_equal_size)
{
    open_no_readahead();
    add_range(1001, 0, 1999);
    flush();
    checked c = read_range(1001, 0, 1999, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 2000, "got %zu entries", c.count);
    cr_assert_eq(c.mismatches, 0);
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_eq(s.disk_walks, 1, "%lu walks", (unsigned long)s.disk_walks);
    cr_assert_eq(s.disk_reads, 1, "one read for the whole stretch, got %lu",
                 (unsigned long)s.disk_reads);

    /* A byte cap: the walk plans only what the cap takes, and the read returns exactly that. */
    c = read_range(1001, 100, 1999, 10 * FIXED_PAYLOAD);
    cr_assert_eq(c.count, 10);
    cr_assert_eq(c.first, 100);
    cr_assert_eq(c.mismatches, 0);
    bk_storage_stats_get(st, &s);
    cr_assert_eq(s.disk_walks, 2);
    cr_assert_leq(s.disk_read_bytes - (uint64_t)2000 * (FIXED_PAYLOAD + BK_RECORD_HEADER_BYTES),
                  (uint64_t)11 * (FIXED_PAYLOAD + BK_RECORD_HEADER_BYTES) + 2 * BK_AIO_ALIGN_BYTES,
                  "the capped walk read %lu bytes in all", (unsigned long)s.disk_read_bytes);
}

/* Flush 1 holds ledger 1002's entries 0..9 followed by ledger 1003's entry 10; flush 2 holds
 * 1002's entries 10..19 right after. A walk over 0..19 meets 1003's record after entry 9, with
 * the very entry id it wants next: it must stop there, look entry 10 up again and go on, never
 * serving another ledger's record. */
Test(storage, walk_stops_at_another_ledgers_record)
{
    open_no_readahead();
    add_range(1002, 0, 9);
    add_range(1003, 10, 10);
    flush();
    add_range(1002, 10, 19);
    flush();
    checked c = read_range(1002, 0, 19, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 20, "got %zu entries", c.count);
    cr_assert_eq(c.first, 0);
    cr_assert_eq(c.last, 19);
    cr_assert_eq(c.mismatches, 0);
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_eq(s.disk_walks, 2, "%lu walks", (unsigned long)s.disk_walks);
    c = read_one(1003, 10);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, sequential_reads_trigger_readahead)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(7, 0, 2999);
    flush();
    for (int64_t e = 0; e < 1500; e++) {
        checked c = read_one(7, e);
        cr_assert_eq(c.status, MG_OK);
        cr_assert_eq(c.mismatches, 0);
    }
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_gt(s.readahead_windows, 0);
    cr_assert_gt(s.readahead_bytes, 0);
    cr_assert_gt(s.reads_read_cache, 1000, "only %lu of 1500 reads came from read-ahead",
                 (unsigned long)s.reads_read_cache);
    cr_assert_leq(s.readahead_used_bytes, s.readahead_bytes);
    /* Random reads start no window. */
    uint64_t windows = s.readahead_windows;
    for (int64_t e = 2999; e > 2500; e -= 97)
        cr_assert_eq(read_one(7, e).status, MG_OK);
    bk_storage_stats_get(st, &s);
    cr_assert_eq(s.readahead_windows, windows);
}

Test(storage, readahead_off_reads_only_what_is_asked)
{
    open_no_readahead();
    add_range(8, 0, 999);
    flush();
    for (int64_t e = 0; e < 300; e++)
        cr_assert_eq(read_one(8, e).status, MG_OK);
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_eq(s.readahead_windows, 0);
    cr_assert_eq(s.reads_read_cache, 0);
    cr_assert_eq(s.reads_disk, 300);
}

Test(storage, last_entry_and_fence)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(9, 0, 41);
    lac l = { 0 };
    cr_assert_eq(bk_storage_read_lac(st, 9, lac_cb, &l), MG_OK);
    wait_count(&l.done, 1);
    cr_assert_eq(l.status, MG_OK);
    cr_assert_eq(l.last, 41);
    flush();
    add_range(9, 42, 50);
    l.done = 0;
    cr_assert_eq(bk_storage_read_lac(st, 9, lac_cb, &l), MG_OK);
    wait_count(&l.done, 1);
    cr_assert_eq(l.last, 50);
    l.done = 0;
    cr_assert_eq(bk_storage_read_lac(st, 99, lac_cb, &l), MG_OK);
    wait_count(&l.done, 1);
    cr_assert_eq(l.status, MG_ENOTFOUND);

    l.done = 0;
    cr_assert_eq(bk_storage_fence(st, 9, lac_cb, &l), MG_OK);
    wait_count(&l.done, 1);
    cr_assert_eq(l.status, MG_OK);
    cr_assert_eq(l.last, 50);
    uint8_t p[8] = { 0 };
    mg_buf *b = mg_buf_new_copy(p, sizeof(p));
    adds a = { 0 };
    cr_assert_eq(bk_storage_add(st, 9, 51, b, 0, sizeof(p), add_cb, &a), MG_EFENCED);
    cr_assert_eq(read_one(9, 50).status, MG_OK, "a fenced ledger is still readable");

    /* The fence survives a restart (journal, then index after the flush on close). */
    close_storage();
    open_with(&o);
    cr_assert_eq(bk_storage_add(st, 9, 51, b, 0, sizeof(p), add_cb, &a), MG_EFENCED);
    cr_assert_eq(bk_storage_add(st, 10, 0, b, 0, sizeof(p), add_cb, &a), MG_OK);
    wait_count(&a.done, 1);
    mg_buf_unref(b);
}

Test(storage, restart_keeps_everything)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(11, 0, 299);
    flush();
    add_range(11, 300, 399); /* flushed by close */
    close_storage();
    open_with(&o);
    checked c = read_range(11, 0, 399, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 400);
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, journal_replay_after_the_process_dies)
{
    bk_storage_opts o = default_opts();
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        /* The child adds, waits for every acknowledgement, and dies without closing: the
         * entries exist only in its journal. */
        uv_loop_t l;
        uv_loop_init(&l);
        bk_storage *s;
        if (bk_storage_open(&l, &o, &s) != MG_OK)
            _exit(2);
        adds a = { 0 };
        for (int64_t e = 0; e < 500; e++) {
            uint8_t tmp[1024];
            size_t len = payload_of(12, e, tmp, sizeof(tmp));
            mg_buf *b = mg_buf_new_copy(tmp, len);
            if (bk_storage_add(s, 12, e, b, 0, len, add_cb, &a) != MG_OK)
                _exit(3);
            mg_buf_unref(b);
        }
        while (a.done < 500)
            uv_run(&l, UV_RUN_ONCE);
        _exit(a.ok == 500 ? 0 : 4);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
    open_with(&o);
    checked c = read_range(12, 0, 499, SIZE_MAX);
    cr_assert_eq(c.count, 500, "replayed %zu of 500 acknowledged entries", c.count);
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, delete_ledger)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(13, 0, 99);
    flush();
    add_range(14, 0, 9);
    int done = 0;
    cr_assert_eq(bk_storage_delete(st, 13, closed_cb, &done), MG_OK);
    wait_count(&done, 1);
    cr_assert_eq(read_one(13, 5).status, MG_ENOTFOUND);
    cr_assert_eq(read_one(14, 5).status, MG_OK);
}

Test(storage, gc_removes_and_compacts_entry_logs)
{
    bk_storage_opts o = default_opts();
    o.entrylog_bytes_max = 256u << 10; /* many small logs */
    open_with(&o);
    /* Ledger 20 fills whole logs alone; ledgers 21 and 22 share later ones. */
    add_range(20, 0, 999);
    flush();
    for (int64_t e = 0; e < 600; e += 100) {
        add_range(21, e, e + 99);
        add_range(22, e, e + 99);
    }
    flush();
    add_range(23, 0, 999); /* moves the current log on, so the mixed ones are finished */
    flush();
    int done = 0;
    cr_assert_eq(bk_storage_delete(st, 20, closed_cb, &done), MG_OK);
    cr_assert_eq(bk_storage_delete(st, 21, closed_cb, &done), MG_OK);
    wait_count(&done, 2);
    done = 0;
    cr_assert_eq(bk_storage_gc(st, closed_cb, &done), MG_OK);
    wait_count(&done, 1);
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_gt(s.gc_logs_removed, 0);
    cr_assert_gt(s.gc_bytes_compacted, 0, "logs half full of ledger 22 should be compacted");
    checked c = read_range(22, 0, 599, SIZE_MAX);
    cr_assert_eq(c.count, 600, "ledger 22 after compaction: %zu entries", c.count);
    cr_assert_eq(c.mismatches, 0);
    c = read_range(23, 0, 999, SIZE_MAX);
    cr_assert_eq(c.count, 1000);
    cr_assert_eq(read_one(20, 0).status, MG_ENOTFOUND);
    /* And after a restart. */
    close_storage();
    open_with(&o);
    c = read_range(22, 0, 599, SIZE_MAX);
    cr_assert_eq(c.count, 600);
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, fsync_failure_makes_storage_read_only)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(30, 0, 9);
    bk_io_fault_arm(io, BK_IO_SYNC, "journal", 0, -1, MG_EIO, 0);
    uint8_t p[64] = { 1 };
    mg_buf *b = mg_buf_new_copy(p, sizeof(p));
    adds a = { 0 };
    cr_assert_eq(bk_storage_add(st, 30, 10, b, 0, sizeof(p), add_cb, &a), MG_OK);
    wait_count(&a.done, 1);
    cr_assert_eq(a.ok, 0, "an add whose journal sync failed was acknowledged");
    cr_assert_eq(a.last_status, MG_EIO);
    cr_assert(bk_storage_read_only(st));
    cr_assert_eq(bk_storage_add(st, 30, 11, b, 0, sizeof(p), add_cb, &a), MG_EREADONLY);
    mg_buf_unref(b);
    checked c = read_one(30, 5);
    cr_assert_eq(c.status, MG_OK, "reads go on in the read-only state");
    cr_assert_eq(c.mismatches, 0);
    bk_io_fault_clear(io, BK_IO_SYNC);
}

/* Opens the storage, adds entries 0..99 of ledger and flushes them onto an entry log disk that is
 * full (every write MG_ENOSPC): the storage turns read-only. */
static void flush_onto_a_full_disk(int64_t ledger)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(ledger, 0, 99);
    bk_io_fault_arm(io, BK_IO_PWRITE, "entrylogs", 0, -1, MG_ENOSPC, 0);
    flush();
    cr_assert(bk_storage_read_only(st));
}

Test(storage, enospc_on_entry_log_makes_storage_read_only)
{
    flush_onto_a_full_disk(31);
    checked c = read_range(31, 0, 99, SIZE_MAX);
    cr_assert_eq(c.count, 100, "unflushed entries stay readable from the write cache");
    cr_assert_eq(c.mismatches, 0);
    bk_io_fault_clear(io, BK_IO_PWRITE);
}

typedef struct resumed {
    int done;
    int status;
} resumed;

static void resumed_cb(int status, void *arg)
{
    resumed *r = arg;
    r->status = status;
    r->done++;
}

static int resume(void)
{
    resumed r = { 0 };
    cr_assert_eq(bk_storage_resume(st, resumed_cb, &r), MG_OK);
    cr_assert_eq(r.done, 0, "resume called back inside the call");
    wait_count(&r.done, 1);
    return r.status;
}

static int add_one(int64_t ledger, int64_t entry)
{
    uint8_t tmp[1024];
    size_t len = payload_of(ledger, entry, tmp, sizeof(tmp));
    mg_buf *b = mg_buf_new_copy(tmp, len);
    adds a = { 0 };
    int rc = bk_storage_add(st, ledger, entry, b, 0, len, add_cb, &a);
    mg_buf_unref(b);
    if (rc != MG_OK)
        return rc;
    wait_count(&a.done, 1);
    return a.last_status;
}

Test(storage, full_entry_log_disk_then_resume_loses_nothing)
{
    flush_onto_a_full_disk(32);
    cr_assert_eq(bk_storage_state(st), MG_ENOSPC, "the state names the full disk");
    cr_assert_eq(add_one(32, 100), MG_ENOSPC, "adds are refused at once with the cause");
    /* Still full: the resume fails and changes nothing. */
    cr_assert_eq(resume(), MG_ENOSPC);
    cr_assert(bk_storage_read_only(st));
    cr_assert_eq(add_one(32, 100), MG_ENOSPC);
    /* Space is back. */
    bk_io_fault_clear(io, BK_IO_PWRITE);
    cr_assert_eq(resume(), MG_OK);
    cr_assert(!bk_storage_read_only(st));
    cr_assert_eq(bk_storage_state(st), 0);
    add_range(32, 100, 199);
    flush();
    checked c = read_range(32, 0, 199, SIZE_MAX);
    cr_assert_eq(c.count, 200);
    cr_assert_eq(c.mismatches, 0);
    cr_assert_eq(resume(), MG_OK, "resuming a writable storage is a no-op");
    close_storage();
    bk_storage_opts o = default_opts();
    open_with(&o);
    c = read_range(32, 0, 199, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 200, "every acknowledged entry survives the restart");
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, full_journal_disk_then_resume_loses_nothing)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(33, 0, 49);
    bk_io_fault_arm(io, BK_IO_PWRITE, "journal", 0, -1, MG_ENOSPC, 0);
    cr_assert_eq(add_one(33, 50), MG_ENOSPC, "the add whose journal write failed says why");
    cr_assert(bk_storage_read_only(st));
    cr_assert_eq(bk_storage_state(st), MG_ENOSPC);
    cr_assert_eq(add_one(33, 50), MG_ENOSPC);
    bk_io_fault_clear(io, BK_IO_PWRITE);
    cr_assert_eq(resume(), MG_OK);
    cr_assert(!bk_storage_read_only(st));
    add_range(33, 50, 99);
    close_storage();
    open_with(&o);
    checked c = read_range(33, 0, 99, SIZE_MAX);
    cr_assert_eq(c.count, 100, "the journal written after the resume is replayed");
    cr_assert_eq(c.mismatches, 0);
}

Test(storage, failed_journal_sync_is_not_resumed)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    add_range(34, 0, 9);
    bk_io_fault_arm(io, BK_IO_SYNC, "journal", 0, 1, MG_EIO, 0);
    cr_assert_eq(add_one(34, 10), MG_EIO);
    cr_assert(bk_storage_read_only(st));
    cr_assert_eq(bk_storage_state(st), MG_EIO);
    /* Even with the disk healthy again: after a failed fdatasync only a restart recovers. */
    cr_assert_eq(resume(), MG_EREADONLY);
    cr_assert(bk_storage_read_only(st));
    cr_assert_eq(add_one(34, 10), MG_EREADONLY);
    close_storage();
    open_with(&o);
    checked c = read_range(34, 0, 9, SIZE_MAX);
    cr_assert_eq(c.count, 10);
    cr_assert_eq(add_one(34, 10), MG_OK, "a restart makes it writable");
}

Test(storage, eio_on_disk_read_is_reported)
{
    bk_storage_opts o = default_opts();
    o.readahead = false;
    open_with(&o);
    add_range(32, 0, 99);
    flush();
    bk_io_fault_arm(io, BK_IO_PREAD, NULL, 0, 1, MG_EIO, 0);
    cr_assert_eq(read_one(32, 3).status, MG_EIO);
    checked c = read_one(32, 3);
    cr_assert_eq(c.status, MG_OK, "the next read works");
    cr_assert_eq(c.mismatches, 0);
}

static int find_log(const char *path, const struct stat *sb, int flag, struct FTW *ftw);
static char log_path[512];

static int find_log(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".log") == 0 && strstr(path, "entrylogs"))
        snprintf(log_path, sizeof(log_path), "%s", path);
    return 0;
}

/* Stores entries 0..last of ledger in the entry logs (read-ahead off), closes the storage and
 * finds the entry log's path (log_path), for a test to damage the file before reopening it
 * (open_no_readahead). */
static void store_then_close(int64_t ledger, int64_t last)
{
    open_no_readahead();
    add_range(ledger, 0, last);
    flush();
    close_storage();
    log_path[0] = '\0';
    nftw(dir, find_log, 16, FTW_PHYS);
    cr_assert_neq(log_path[0], '\0');
}

Test(storage, corrupt_byte_on_disk_is_never_served)
{
    store_then_close(33, 9);
    /* Flip one byte inside the payload of the 6th record. */
    int fd = open(log_path, O_RDWR);
    cr_assert_geq(fd, 0);
    off_t off = BK_ENTRYLOG_HEADER_BYTES;
    for (int64_t e = 0; e < 5; e++) {
        uint8_t tmp[1024];
        off += (off_t)(BK_RECORD_HEADER_BYTES + payload_of(33, e, tmp, sizeof(tmp)));
    }
    off += BK_RECORD_HEADER_BYTES + 3;
    uint8_t byte;
    cr_assert_eq(pread(fd, &byte, 1, off), 1);
    byte ^= 0x40;
    cr_assert_eq(pwrite(fd, &byte, 1, off), 1);
    close(fd);

    open_no_readahead();
    cr_assert_eq(read_one(33, 5).status, MG_ECORRUPT);
    checked c = read_one(33, 4);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.mismatches, 0);
    c = read_range(33, 0, 9, SIZE_MAX);
    cr_assert_eq(c.count, 5, "a range read stops before the corrupt entry");
    cr_assert_eq(c.mismatches, 0);
}

/* The entry log is cut inside entry 7: a range read (a walk: equal sizes) stops before it; 7
 * is reported corrupt, and so is 8, whose index location lies past the end of the file. */
Test(storage, truncated_entry_log_is_reported_corrupt)
{
    store_then_close(1004, 9);
    off_t cut =
        BK_ENTRYLOG_HEADER_BYTES + 7 * (off_t)(BK_RECORD_HEADER_BYTES + FIXED_PAYLOAD) + 100;
    cr_assert_eq(truncate(log_path, cut), 0);

    open_no_readahead();
    checked c = read_range(1004, 0, 9, SIZE_MAX);
    cr_assert_eq(c.status, MG_OK);
    cr_assert_eq(c.count, 7, "got %zu entries", c.count);
    cr_assert_eq(c.mismatches, 0);
    bk_storage_stats s;
    bk_storage_stats_get(st, &s);
    cr_assert_geq(s.disk_walks, 1);
    cr_assert_eq(read_one(1004, 7).status, MG_ECORRUPT);
    cr_assert_eq(read_one(1004, 8).status, MG_ECORRUPT);
    cr_assert_eq(read_range(1004, 8, 9, SIZE_MAX).status, MG_ECORRUPT);
}

Test(storage, bad_arguments)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    uint8_t p[4] = { 0 };
    mg_buf *b = mg_buf_new_copy(p, sizeof(p));
    adds a = { 0 };
    cr_assert_eq(bk_storage_add(st, -1, 0, b, 0, 4, add_cb, &a), MG_EINVAL);
    cr_assert_eq(bk_storage_add(st, 1, -5, b, 0, 4, add_cb, &a), MG_EINVAL);
    cr_assert_eq(bk_storage_add(st, 1, 0, b, 2, 4, add_cb, &a), MG_EINVAL);
    checked c = { 0 };
    cr_assert_eq(bk_storage_read_range(st, 1, 5, 4, SIZE_MAX, checked_cb, &c), MG_EINVAL);
    cr_assert_eq(a.done, 0);
    cr_assert_eq(c.done, 0);
    mg_buf_unref(b);
}

Test(storage, many_fenced_ledgers_and_delete_unfences)
{
    bk_storage_opts o = default_opts();
    open_with(&o);
    static const int64_t order[] = { 57, 3, 99, 12, 40, 1, 75, 28 };
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        lac l = { 0 };
        cr_assert_eq(bk_storage_fence(st, order[i], lac_cb, &l), MG_OK);
        wait_count(&l.done, 1);
        cr_assert_eq(l.status, MG_OK);
    }
    uint8_t p[4] = { 0 };
    mg_buf *b = mg_buf_new_copy(p, sizeof(p));
    adds a = { 0 };
    int expected_ok = 0;
    for (int64_t ledger = 0; ledger <= 100; ledger++) {
        bool fenced = false;
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
            fenced = fenced || order[i] == ledger;
        int rc = bk_storage_add(st, ledger, 0, b, 0, sizeof(p), add_cb, &a);
        cr_assert_eq(rc, fenced ? MG_EFENCED : MG_OK, "ledger %ld", (long)ledger);
        expected_ok += !fenced;
    }
    wait_count(&a.done, expected_ok);
    int done = 0;
    cr_assert_eq(bk_storage_delete(st, 40, closed_cb, &done), MG_OK);
    wait_count(&done, 1);
    cr_assert_eq(bk_storage_add(st, 40, 0, b, 0, sizeof(p), add_cb, &a), MG_OK,
                 "a deleted ledger is no longer fenced");
    cr_assert_eq(bk_storage_add(st, 12, 1, b, 0, sizeof(p), add_cb, &a), MG_EFENCED);
    cr_assert_eq(bk_storage_add(st, 41, 1, b, 0, sizeof(p), add_cb, &a), MG_OK);
    wait_count(&a.done, expected_ok + 2);
    mg_buf_unref(b);
}
