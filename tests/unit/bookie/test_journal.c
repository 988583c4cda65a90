/*
 * Tests for bookie/journal.h: append/close/reopen round trips (mixed types, sizes from 0 to
 * 16 MiB, payload slices at an offset), completion of queued records at close, torn and corrupt
 * tails (truncation, a flipped payload byte in the middle and at the end: warnings with file and
 * offset, an ERROR when valid records follow, a new segment after reopen), checkpoints (replay
 * starts at the mark, old segments deleted, idempotence, a damaged checkpoint file), group commit
 * (deterministic: one fdatasync for 2100 records queued from three threads; free-running: exact
 * completion counts and per-thread order), segment roll-over, injected faults (fdatasync EIO,
 * pwrite ENOSPC, preallocation ENOSPC on roll-over: sticky FAILED state, exact statuses, nothing
 * retried, replay afterwards), the queue bound (exact MG_EAGAIN), and argument checks.
 *
 * Determinism without timing: a done callback that blocks the journal thread until the test
 * releases it lets the test queue records behind it, so group boundaries are known exactly.
 */
#include "bookie/journal.h"

#include "bookie/io.h"
#include "bookie/limits.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/metrics.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "support/cr_util.h"

TestSuite(journal, .timeout = 60);

#define HDR          BK_JOURNAL_RECORD_HEADER_BYTES
#define RECORDS_MAX  4096
#define WAIT_TOTAL_S 20

/* ---- helpers: directories and files ---------------------------------------------------- */

static char *make_tmpdir(void)
{
    char *d = strdup("/tmp/bkj_test_XXXXXX");
    cr_assert_not_null(d);
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rm_tree(char *dir)
{
    mgt_rm_tree(dir);
    free(dir);
}

/* Number of segment files in dir; the highest id in *max_id. */
static int count_segments(const char *dir, unsigned long long *max_id)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    unsigned long long mx = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long id;
        if (strlen(e->d_name) == 28 && sscanf(e->d_name, "journal-%16llx.log", &id) == 1) {
            n++;
            if (id > mx)
                mx = id;
        }
    }
    closedir(d);
    if (max_id)
        *max_id = mx;
    return n;
}

/* Number of spare segment files (spare-<16 hex>.log) in dir. */
static int count_spares(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long id;
        if (strlen(e->d_name) == 26 && sscanf(e->d_name, "spare-%16llx.log", &id) == 1)
            n++;
    }
    closedir(d);
    return n;
}

static void seg_path(char *out, size_t cap, const char *dir, unsigned long long id)
{
    snprintf(out, cap, "%s/journal-%016llx.log", dir, id);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0);
    unsigned char c;
    cr_assert_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    cr_assert_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* ---- helpers: payloads ------------------------------------------------------------------ */

static uint8_t pattern(uint32_t seed, size_t k)
{
    return (uint8_t)(seed * 131u + k * 7u + (k >> 8));
}

/* A buffer holding len pattern bytes at offset off (bytes before are junk). */
static mg_buf *make_payload(uint32_t seed, size_t off, size_t len)
{
    mg_buf *b = mg_buf_new(off + len);
    cr_assert_not_null(b);
    uint8_t *p = mg_buf_data(b);
    memset(p, 0xee, off);
    for (size_t k = 0; k < len; k++)
        p[off + k] = pattern(seed, k);
    mg_buf_set_len(b, off + len);
    return b;
}

/* ---- helpers: replay collector ---------------------------------------------------------- */

typedef struct rec {
    int type;
    int64_t ledger_id;
    int64_t entry_id;
    uint8_t *payload;
    size_t len;
} rec;

typedef struct collector {
    rec *recs;
    size_t count;
    size_t cap;
} collector;

static void on_replay(int type, int64_t ledger_id, int64_t entry_id, const uint8_t *payload,
                      size_t len, void *arg)
{
    collector *c = arg;
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->recs = realloc(c->recs, c->cap * sizeof(rec));
        cr_assert_not_null(c->recs);
    }
    rec *r = &c->recs[c->count++];
    r->type = type;
    r->ledger_id = ledger_id;
    r->entry_id = entry_id;
    r->len = len;
    r->payload = malloc(len ? len : 1);
    cr_assert_not_null(r->payload);
    if (len)
        memcpy(r->payload, payload, len);
}

static void collector_free(collector *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->recs[i].payload);
    free(c->recs);
    memset(c, 0, sizeof(*c));
}

/* Checks that record r is what append_rec(i, ...) wrote. */
static void expect_rec(const rec *r, int type, int64_t ledger_id, int64_t entry_id, uint32_t seed,
                       size_t len)
{
    cr_assert_eq(r->type, type, "type %d, expected %d", r->type, type);
    cr_assert_eq(r->ledger_id, ledger_id);
    cr_assert_eq(r->entry_id, entry_id, "entry %lld, expected %lld", (long long)r->entry_id,
                 (long long)entry_id);
    cr_assert_eq(r->len, len, "len %zu, expected %zu", r->len, len);
    for (size_t k = 0; k < len; k++)
        if (r->payload[k] != pattern(seed, k))
            cr_assert_fail("payload byte %zu of entry %lld differs", k, (long long)entry_id);
}

/* ---- helpers: completions --------------------------------------------------------------- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint32_t completed;
    int status[RECORDS_MAX];     /* 1 = not completed */
    uint32_t order[RECORDS_MAX]; /* indexes in completion order */
    int64_t block_idx;           /* the completion of this index blocks until release */
    bool entered;
    bool release;
} waiter;

typedef struct ticket {
    waiter *w;
    uint32_t idx;
} ticket;

static waiter *waiter_new(void)
{
    waiter *w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    for (int i = 0; i < RECORDS_MAX; i++)
        w->status[i] = 1;
    w->block_idx = -1;
    return w;
}

static void waiter_free(waiter *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static struct timespec deadline_in(int s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += s;
    return ts;
}

static void on_done(int status, void *arg)
{
    ticket *t = arg;
    waiter *w = t->w;
    pthread_mutex_lock(&w->mu);
    cr_assert_eq(w->status[t->idx], 1, "record %u completed twice", t->idx);
    w->status[t->idx] = status;
    w->order[w->completed++] = t->idx;
    pthread_cond_broadcast(&w->cond);
    if ((int64_t)t->idx == w->block_idx) {
        w->entered = true;
        pthread_cond_broadcast(&w->cond);
        struct timespec ts = deadline_in(WAIT_TOTAL_S);
        while (!w->release)
            if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) != 0)
                break; /* the test failed meanwhile; do not hang the journal */
    }
    pthread_mutex_unlock(&w->mu);
}

static void wait_completed(waiter *w, uint32_t n)
{
    struct timespec ts = deadline_in(WAIT_TOTAL_S);
    pthread_mutex_lock(&w->mu);
    while (w->completed < n)
        if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) != 0)
            break;
    uint32_t got = w->completed;
    pthread_mutex_unlock(&w->mu);
    cr_assert_geq(got, n, "only %u of %u completions arrived", got, n);
}

static void wait_entered(waiter *w)
{
    struct timespec ts = deadline_in(WAIT_TOTAL_S);
    pthread_mutex_lock(&w->mu);
    while (!w->entered)
        if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) != 0)
            break;
    bool e = w->entered;
    pthread_mutex_unlock(&w->mu);
    cr_assert(e, "the blocking completion never ran");
}

static void release_blocked(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->release = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static int status_of(waiter *w, uint32_t i)
{
    pthread_mutex_lock(&w->mu);
    int s = w->status[i];
    pthread_mutex_unlock(&w->mu);
    return s;
}

/* ---- helpers: journal ------------------------------------------------------------------- */

typedef struct fixture {
    char *dir;
    bk_io *io;
    bk_journal_opts opts;
    waiter *w;
    ticket tickets[RECORDS_MAX];
} fixture;

static fixture *fixture_new(void)
{
    fixture *f = calloc(1, sizeof(*f));
    cr_assert_not_null(f);
    f->dir = make_tmpdir();
    cr_assert_eq(bk_io_create(&f->io), MG_OK);
    f->opts.dir = f->dir;
    f->opts.io = f->io;
    f->opts.segment_bytes = 4 * 1024 * 1024;
    /* Through the page cache: the layout is then exactly the records, which the tests that
     * compute offsets rely on. The O_DIRECT layout (groups padded to blocks) has its own
     * tests, named direct_*. */
    f->opts.buffered = true;
    f->w = waiter_new();
    for (uint32_t i = 0; i < RECORDS_MAX; i++)
        f->tickets[i] = (ticket){ f->w, i };
    return f;
}

static void fixture_free(fixture *f)
{
    bk_io_destroy(f->io);
    rm_tree(f->dir);
    waiter_free(f->w);
    free(f);
}

static bk_journal *open_ok(fixture *f, collector *c)
{
    bk_journal *j = NULL;
    int rc = bk_journal_open(&f->opts, c ? on_replay : NULL, c, &j);
    cr_assert_eq(rc, MG_OK, "open: %s", mg_err_name(rc));
    cr_assert_not_null(j);
    return j;
}

/* Opens the journal again and checks that it replays exactly records 0..n-1 as append_rec made
 * them (ADD, len bytes), then closes it. */
static void expect_replay(fixture *f, uint32_t n, size_t len)
{
    collector c = { 0 };
    bk_journal *j = open_ok(f, &c);
    cr_assert_eq(c.count, n, "replayed %u records, want %u", c.count, n);
    for (uint32_t i = 0; i < n; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, len);
    bk_journal_close(j);
    collector_free(&c);
}

/* Appends record i: ADD of len pattern bytes (seed i) for ledger 7, entry i, from a buffer with
 * a 3-byte offset, or a FENCE with no payload. Returns the append's status. */
static int append_rec(fixture *f, bk_journal *j, uint32_t i, int type, size_t len)
{
    if (type == BK_JREC_FENCE && len == 0)
        return bk_journal_append(j, type, 7, i, NULL, 0, 0, on_done, &f->tickets[i]);
    mg_buf *b = make_payload(i, 3, len);
    int rc = bk_journal_append(j, type, 7, i, b, 3, len, on_done, &f->tickets[i]);
    mg_buf_unref(b);
    return rc;
}

/* Redirects log records to a temporary file; log_text() reads them back. */
static int log_capture(void)
{
    char path[] = "/tmp/bkj_log_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    unlink(path);
    mg_log_set_fd(fd);
    return fd;
}

static char *log_text(int fd)
{
    mg_log_set_fd(2);
    off_t size = lseek(fd, 0, SEEK_END);
    char *s = calloc(1, (size_t)size + 1);
    cr_assert_not_null(s);
    cr_assert_eq(pread(fd, s, (size_t)size, 0), size);
    close(fd);
    return s;
}

/* ---- tests ------------------------------------------------------------------------------ */

Test(journal, pos_cmp)
{
    bk_journal_pos a = { 1, 100 }, b = { 1, 200 }, c = { 2, 0 };
    cr_assert_eq(bk_journal_pos_cmp(a, b), -1);
    cr_assert_eq(bk_journal_pos_cmp(b, a), 1);
    cr_assert_eq(bk_journal_pos_cmp(b, c), -1);
    cr_assert_eq(bk_journal_pos_cmp(c, b), 1);
    cr_assert_eq(bk_journal_pos_cmp(a, a), 0);
}

/* Sizes and types of the round-trip records. */
static size_t rt_len(uint32_t i)
{
    static const size_t sizes[] = { 0, 1, 25, 100, 4095, 4096, 70000, 0, 513 * 1024, 3 };
    if (i == 11)
        return 5u * 1024 * 1024; /* a large Pulsar batch: bigger than the group buffer */
    return sizes[i % 10];
}

static int rt_type(uint32_t i)
{
    return i % 7 == 3 ? BK_JREC_FENCE : BK_JREC_ADD;
}

static void roundtrip_mixed_records(bool buffered)
{
    fixture *f = fixture_new();
    f->opts.buffered = buffered;
    f->opts.segment_bytes = 32 * 1024 * 1024; /* everything fits the first segment */
    bk_journal *j = open_ok(f, NULL);
    bk_journal_pos p0 = bk_journal_durable_pos(j);
    cr_assert_eq(p0.segment_id, 1);
    cr_assert_eq(p0.offset, 0);

    const uint32_t n = 40;
    uint64_t bytes = 0;
    mg_buf *kept = make_payload(99, 0, 10);
    for (uint32_t i = 0; i < n; i++) {
        size_t len = rt_type(i) == BK_JREC_FENCE ? 0 : rt_len(i);
        cr_assert_eq(append_rec(f, j, i, rt_type(i), len), MG_OK);
        bytes += HDR + len;
    }
    /* One more from a buffer the test keeps: the journal's reference must be dropped. */
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 8, 0, kept, 2, 5, on_done, &f->tickets[n]),
                 MG_OK);
    bytes += HDR + 5;
    wait_completed(f->w, n + 1);
    for (uint32_t i = 0; i <= n; i++)
        cr_assert_eq(status_of(f->w, i), MG_OK);
    for (uint32_t i = 0; i <= n; i++)
        cr_assert_eq(f->w->order[i], i, "completion %u was record %u", i, f->w->order[i]);
    bk_journal_pos p = bk_journal_durable_pos(j);
    cr_assert_eq(p.segment_id, 1);
    if (buffered) {
        cr_assert_eq(p.offset, bytes);
    } else {
        /* Each group ends on a block: padded, never cut short. */
        cr_assert_eq(p.offset % 4096, 0, "offset %llu", (unsigned long long)p.offset);
        cr_assert_geq(p.offset, bytes);
    }
    cr_assert_eq(mg_buf_refcount(kept), 1);
    cr_assert_geq(bk_journal_sync_count(j), 1);
    bk_journal_close(j);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, n + 1);
    for (uint32_t i = 0; i < n; i++)
        expect_rec(&c.recs[i], rt_type(i), 7, i, i, rt_type(i) == BK_JREC_FENCE ? 0 : rt_len(i));
    cr_assert_eq(c.recs[n].ledger_id, 8);
    cr_assert_eq(memcmp(c.recs[n].payload, mg_buf_data(kept) + 2, 5), 0);
    /* New records go to a new segment. */
    cr_assert_eq(bk_journal_durable_pos(j).segment_id, 2);
    bk_journal_close(j);
    collector_free(&c);

    /* The third open replays the same records again (nothing was checkpointed). */
    j = open_ok(f, &c);
    cr_assert_eq(c.count, n + 1);
    bk_journal_close(j);
    collector_free(&c);
    mg_buf_unref(kept);
    fixture_free(f);
}

Test(journal, roundtrip_mixed_records)
{
    roundtrip_mixed_records(true);
}

Test(journal, direct_roundtrip_mixed_records)
{
    roundtrip_mixed_records(false);
}

/* With O_DIRECT, one record per group: the record at k * 4096, then a PAD record filling the
 * block (type 3, zeros), which replay skips. A torn last group ends the replay before it. */
Test(journal, direct_groups_are_padded_and_a_torn_one_ends_replay)
{
    fixture *f = fixture_new();
    f->opts.buffered = false;
    bk_journal *j = open_ok(f, NULL);
    const uint32_t n = 6;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 1000), MG_OK);
        wait_completed(f->w, i + 1); /* a group each */
        cr_assert_eq(status_of(f->w, i), MG_OK);
        cr_assert_eq(bk_journal_durable_pos(j).offset, (uint64_t)(i + 1) * 4096);
    }
    bk_journal_close(j);

    char path[512];
    seg_path(path, sizeof(path), f->dir, 1);
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    uint8_t h[HDR];
    cr_assert_eq(pread(fd, h, HDR, 4096 + HDR + 1000), HDR);
    close(fd);
    cr_assert_eq(h[8], 3, "a PAD record follows the record, type %u", h[8]);
    uint32_t pad_len =
        (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    cr_assert_eq(pad_len, 4096 - 2 * HDR - 1000);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, n, "PAD records are not replayed: %u records", c.count);
    for (uint32_t i = 0; i < n; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, 1000);
    bk_journal_close(j);
    collector_free(&c);

    /* Tear the last group: its record loses its end. */
    cr_assert_eq(truncate(path, (off_t)((n - 1) * 4096 + HDR + 500)), 0);
    expect_replay(f, n - 1, 1000);
    fixture_free(f);
}

/* Segments written through the page cache and with O_DIRECT replay together, in order. */
Test(journal, direct_and_buffered_segments_replay_together)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 333), MG_OK);
    wait_completed(f->w, 5);
    bk_journal_close(j);
    f->opts.buffered = false;
    j = open_ok(f, NULL);
    for (uint32_t i = 5; i < 10; i++) {
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 4000 + i), MG_OK);
        wait_completed(f->w, i + 1);
    }
    bk_journal_close(j);
    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 10);
    for (uint32_t i = 0; i < 10; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, i < 5 ? 333 : 4000 + i);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, close_completes_queued_records)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    const uint32_t n = 300;
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 200), MG_OK);
    bk_journal_close(j);
    /* Every completion ran before close returned. */
    cr_assert_eq(f->w->completed, n);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(f->w->status[i], MG_OK);
        cr_assert_eq(f->w->order[i], i);
    }
    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, n);
    for (uint32_t i = 0; i < n; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, 200);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

/* Writes n records of len bytes, closes; returns the offset of the last record. */
static uint64_t write_and_close(fixture *f, uint32_t n, size_t len)
{
    bk_journal *j = open_ok(f, NULL);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, len), MG_OK);
    wait_completed(f->w, n);
    bk_journal_close(j);
    return (uint64_t)(n - 1) * (HDR + len);
}

Test(journal, torn_tail_truncated)
{
    fixture *f = fixture_new();
    const uint32_t n = 10;
    uint64_t last = write_and_close(f, n, 1000);
    char path[512];
    seg_path(path, sizeof(path), f->dir, 1);
    cr_assert_eq(truncate(path, (off_t)(last + HDR + 500)), 0);

    int lfd = log_capture();
    collector c = { 0 };
    bk_journal *j = open_ok(f, &c);
    char *log = log_text(lfd);
    cr_assert_eq(c.count, n - 1);
    for (uint32_t i = 0; i < n - 1; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, 1000);
    char want[700];
    snprintf(want, sizeof(want), "%s at offset %llu (record runs past the end of the file)", path,
             (unsigned long long)last);
    cr_assert_not_null(strstr(log, want), "log lacks \"%s\":\n%s", want, log);
    cr_assert_not_null(strstr(log, "WARN"));
    cr_assert_null(strstr(log, "are skipped"), "a torn tail is no data loss:\n%s", log);
    free(log);
    collector_free(&c);

    /* A record appended now goes to a new segment and is replayed by the next open too. */
    cr_assert_eq(bk_journal_durable_pos(j).segment_id, 2);
    cr_assert_eq(append_rec(f, j, 500, BK_JREC_ADD, 777), MG_OK);
    wait_completed(f->w, n + 1);
    cr_assert_eq(status_of(f->w, 500), MG_OK);
    bk_journal_close(j);

    j = open_ok(f, &c);
    cr_assert_eq(c.count, n);
    for (uint32_t i = 0; i < n - 1; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, 1000);
    expect_rec(&c.recs[n - 1], BK_JREC_ADD, 7, 500, 500, 777);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, torn_tail_short_header)
{
    fixture *f = fixture_new();
    uint64_t last = write_and_close(f, 5, 100);
    char path[512];
    seg_path(path, sizeof(path), f->dir, 1);
    cr_assert_eq(truncate(path, (off_t)(last + 10)), 0); /* 10 bytes of the last header */
    collector c = { 0 };
    bk_journal *j = open_ok(f, &c);
    cr_assert_eq(c.count, 4);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, corrupt_payload_in_the_middle_and_at_the_end)
{
    fixture *f = fixture_new();
    const uint32_t n = 10;
    const size_t len = 1000;
    write_and_close(f, n, len);
    char path[512];
    seg_path(path, sizeof(path), f->dir, 1);

    /* The last record: a warning only, the 9 before it replay. */
    uint64_t last = (uint64_t)(n - 1) * (HDR + len);
    flip_byte(path, (off_t)(last + HDR + 10));
    int lfd = log_capture();
    collector c = { 0 };
    bk_journal *j = open_ok(f, &c);
    bk_journal_close(j);
    char *log = log_text(lfd);
    cr_assert_eq(c.count, n - 1);
    cr_assert_not_null(strstr(log, "CRC mismatch"), "%s", log);
    cr_assert_null(strstr(log, "are skipped"), "%s", log);
    free(log);
    collector_free(&c);

    /* Record 4 in the middle: records 0..3 replay, and an ERROR says valid ones were skipped. */
    uint64_t mid = 4 * (uint64_t)(HDR + len);
    flip_byte(path, (off_t)(mid + HDR + 500));
    lfd = log_capture();
    j = open_ok(f, &c);
    bk_journal_close(j);
    log = log_text(lfd);
    cr_assert_eq(c.count, 4);
    for (uint32_t i = 0; i < 4; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, len);
    char want[700];
    snprintf(want, sizeof(want), "%s at offset %llu (CRC mismatch)", path, (unsigned long long)mid);
    cr_assert_not_null(strstr(log, want), "%s", log);
    cr_assert_not_null(strstr(log, "ERROR"), "%s", log);
    cr_assert_not_null(strstr(log, "are skipped"), "%s", log);
    free(log);
    collector_free(&c);

    /* A damaged header type byte also ends the segment (and the open does not fail). */
    flip_byte(path, (off_t)(2 * (HDR + len) + 8));
    j = open_ok(f, &c);
    bk_journal_close(j);
    cr_assert_eq(c.count, 2);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, checkpoint_replays_only_later_records_and_deletes_segments)
{
    fixture *f = fixture_new();
    f->opts.segment_bytes = 64 * 1024;
    bk_journal *j = open_ok(f, NULL);
    const uint32_t n = 200;
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 1000), MG_OK);
    wait_completed(f->w, n);
    unsigned long long max_id;
    int segs = count_segments(f->dir, &max_id);
    /* 200 * 1025 bytes in 64 KiB segments: at least 4 segments. */
    cr_assert_geq(segs, 4, "%d segments", segs);

    bk_journal_pos pos = bk_journal_durable_pos(j);
    cr_assert_eq(pos.segment_id, max_id);
    bk_journal_pos beyond = { pos.segment_id, pos.offset + 1 };
    cr_assert_eq(bk_journal_checkpoint(j, beyond), MG_EINVAL);
    cr_assert_eq(bk_journal_checkpoint(j, pos), MG_OK);
    cr_assert_eq(count_segments(f->dir, NULL), 1);
    /* An older (or the same) position changes nothing. */
    cr_assert_eq(bk_journal_checkpoint(j, (bk_journal_pos){ 1, 0 }), MG_OK);
    cr_assert_eq(bk_journal_checkpoint(j, pos), MG_OK);

    for (uint32_t i = n; i < n + 10; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 300), MG_OK);
    wait_completed(f->w, n + 10);
    bk_journal_close(j);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 10);
    for (uint32_t i = 0; i < 10; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, n + i, n + i, 300);
    collector_free(&c);
    /* After reopen: a checkpoint at the durable position leaves only the new segment. */
    cr_assert_geq(count_segments(f->dir, NULL), 2);
    cr_assert_eq(bk_journal_checkpoint(j, bk_journal_durable_pos(j)), MG_OK);
    cr_assert_eq(count_segments(f->dir, NULL), 1);
    bk_journal_close(j);
    /* A segment below the mark (a checkpoint interrupted before its deletions) is deleted by
     * the next open and not replayed. */
    char old[512];
    seg_path(old, sizeof(old), f->dir, 1);
    int ofd = open(old, O_CREAT | O_WRONLY, 0644);
    cr_assert(ofd >= 0);
    cr_assert_eq(write(ofd, "\x11garbage", 8), 8); /* would replay as a corrupt record */
    close(ofd);
    cr_assert_eq(count_segments(f->dir, NULL), 2);
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 0);
    cr_assert_eq(count_segments(f->dir, NULL), 2); /* the mark's segment and the new one */
    cr_assert_eq(access(old, F_OK), -1);
    bk_journal_close(j);
    fixture_free(f);
}

/* A checkpoint keeps two old segments as spares; later segments reuse them, and a reused file's
 * old records (another segment's, with the same ledger and entry ids and sizes) are never
 * replayed, nor reported as corrupt. */
static void spares_reused(bool buffered)
{
    fixture *f = fixture_new();
    f->opts.buffered = buffered;
    f->opts.segment_bytes = 64 * 1024;
    bk_journal *j = open_ok(f, NULL);
    const uint32_t n = 200;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 1000), MG_OK);
        if (i % 8 == 7)
            wait_completed(f->w, i + 1); /* several groups, several segments */
    }
    wait_completed(f->w, n);
    int segs = count_segments(f->dir, NULL);
    cr_assert_geq(segs, 4, "%d segments", segs);
    cr_assert_eq(bk_journal_checkpoint(j, bk_journal_durable_pos(j)), MG_OK);
    cr_assert_eq(count_segments(f->dir, NULL), 1);
    cr_assert_eq(count_spares(f->dir), 2, "two old segments kept as spares");

    /* The same ids again (ticket i+n, entry i): reused files hold records just like these.
     * A little more than a segment's worth: at least one roll to a reused file, which keeps
     * old records after the new ones. */
    const uint32_t m = 70;
    for (uint32_t i = 0; i < m; i++) {
        mg_buf *b = make_payload(i, 3, 1000);
        cr_assert_eq(
            bk_journal_append(j, BK_JREC_ADD, 7, i, b, 3, 1000, on_done, &f->tickets[n + i]),
            MG_OK);
        mg_buf_unref(b);
        if (i % 8 == 7)
            wait_completed(f->w, n + i + 1);
    }
    wait_completed(f->w, n + m);
    for (uint32_t i = 0; i < m; i++)
        cr_assert_eq(status_of(f->w, n + i), MG_OK);
    cr_assert_lt(count_spares(f->dir), 2, "a spare was reused for a new segment");
    bk_journal_close(j);

    int lfd = log_capture();
    collector c = { 0 };
    j = open_ok(f, &c);
    char *log = log_text(lfd);
    cr_assert_eq(c.count, m, "replayed %u records", c.count);
    for (uint32_t i = 0; i < m; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, 1000);
    cr_assert_null(strstr(log, "torn or corrupt"), "stale records are no corruption:\n%s", log);
    free(log);
    collector_free(&c);
    bk_journal_close(j);
    fixture_free(f);
}

Test(journal, spares_are_reused_and_their_old_records_never_replayed)
{
    spares_reused(true);
}

Test(journal, direct_spares_are_reused_and_their_old_records_never_replayed)
{
    spares_reused(false);
}

Test(journal, corrupt_checkpoint_file)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_ADD, 10), MG_OK);
    wait_completed(f->w, 1);
    cr_assert_eq(bk_journal_checkpoint(j, bk_journal_durable_pos(j)), MG_OK);
    bk_journal_close(j);

    char path[512];
    snprintf(path, sizeof(path), "%s/checkpoint", f->dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, 28);
    flip_byte(path, 12); /* inside the segment id */
    j = NULL;
    cr_assert_eq(bk_journal_open(&f->opts, NULL, NULL, &j), MG_ECORRUPT);
    cr_assert_null(j);
    flip_byte(path, 12);
    j = open_ok(f, NULL); /* restored: opens again */
    bk_journal_close(j);
    cr_assert_eq(truncate(path, 20), 0);
    cr_assert_eq(bk_journal_open(&f->opts, NULL, NULL, &j), MG_ECORRUPT);
    fixture_free(f);
}

typedef struct appender {
    fixture *f;
    bk_journal *j;
    uint32_t first;
    uint32_t count;
    int failures;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    for (uint32_t i = a->first; i < a->first + a->count; i++) {
        int rc;
        /* Bounded retry on MG_EAGAIN (only with a small queue). */
        for (int tries = 0; tries < 1000000; tries++) {
            rc = append_rec(a->f, a->j, i, BK_JREC_ADD, 50 + i % 100);
            if (rc != MG_EAGAIN)
                break;
            sched_yield();
        }
        if (rc != MG_OK)
            a->failures++;
    }
    return NULL;
}

static void run_appenders(fixture *f, bk_journal *j, uint32_t first, uint32_t per_thread)
{
    appender a[3];
    pthread_t t[3];
    for (int k = 0; k < 3; k++) {
        a[k] = (appender){ f, j, first + (uint32_t)k * per_thread, per_thread, 0 };
        cr_assert_eq(pthread_create(&t[k], NULL, appender_main, &a[k]), 0);
    }
    for (int k = 0; k < 3; k++) {
        pthread_join(t[k], NULL);
        cr_assert_eq(a[k].failures, 0);
    }
}

/* Completions of each thread's records must come in that thread's append order. */
static void expect_per_thread_order(waiter *w, uint32_t first, uint32_t per_thread, uint32_t total)
{
    int64_t last[3] = { -1, -1, -1 };
    for (uint32_t k = 0; k < total; k++) {
        uint32_t idx = w->order[k];
        if (idx < first)
            continue;
        uint32_t t = (idx - first) / per_thread;
        cr_assert_lt(t, 3);
        cr_assert_gt((int64_t)idx, last[t], "thread %u: %u completed after %lld", t, idx,
                     (long long)last[t]);
        last[t] = idx;
    }
}

Test(journal, group_commit_one_sync_for_queued_records)
{
    fixture *f = fixture_new();
    mg_metrics *m;
    cr_assert_eq(mg_metrics_create(&m), MG_OK);
    f->opts.metrics = m;
    bk_journal *j = open_ok(f, NULL);

    /* Record 0's completion holds the journal thread while three threads queue 2100 more. */
    f->w->block_idx = 0;
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_ADD, 10), MG_OK);
    wait_entered(f->w);
    const uint32_t per = 700, total = 1 + 3 * per;
    run_appenders(f, j, 1, per);
    release_blocked(f->w);
    wait_completed(f->w, total);
    for (uint32_t i = 0; i < total; i++)
        cr_assert_eq(f->w->status[i], MG_OK);
    expect_per_thread_order(f->w, 1, per, total);
    /* 2100 records of at most 174 bytes fit one 512 KiB group: one sync for them all. */
    cr_assert_eq(bk_journal_sync_count(j), 2);

    char *text;
    cr_assert_eq(mg_metrics_render(m, &text, NULL), MG_OK);
    char want[128];
    snprintf(want, sizeof(want), "bookie_journal_records_total %u\n", total);
    cr_assert_not_null(strstr(text, want), "%s", text);
    cr_assert_not_null(strstr(text, "bookie_journal_group_entries_count 2\n"), "%s", text);
    cr_assert_not_null(strstr(text, "bookie_journal_sync_latency_ms_count 2\n"), "%s", text);
    cr_assert_not_null(strstr(text, "bookie_journal_failures_total 0\n"), "%s", text);
    snprintf(want, sizeof(want), "bookie_journal_group_entries{quantile=\"1.0\"} %u\n", total - 1);
    cr_assert_not_null(strstr(text, want), "%s", text);
    free(text);
    bk_journal_close(j);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, total);
    int64_t last[3] = { 0, 0, 0 };
    for (uint32_t k = 1; k < total; k++) {
        int64_t e = c.recs[k].entry_id;
        int t = (int)((e - 1) / per);
        cr_assert_gt(e, last[t]);
        last[t] = e;
        expect_rec(&c.recs[k], BK_JREC_ADD, 7, e, (uint32_t)e, 50 + (size_t)e % 100);
    }
    bk_journal_close(j);
    collector_free(&c);
    mg_metrics_destroy(m);
    fixture_free(f);
}

Test(journal, group_commit_free_running_threads)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    const uint32_t per = 700, total = 3 * per;
    run_appenders(f, j, 0, per);
    wait_completed(f->w, total);
    cr_assert_eq(f->w->completed, total);
    for (uint32_t i = 0; i < total; i++)
        cr_assert_eq(f->w->status[i], MG_OK);
    expect_per_thread_order(f->w, 0, per, total);
    cr_assert_leq(bk_journal_sync_count(j), total);
    bk_journal_close(j);
    cr_assert_eq(f->w->completed, total);
    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, total);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

static size_t roll_len(uint32_t i)
{
    if (i == 150)
        return 200 * 1024; /* larger than a segment */
    return ((uint32_t)(i * 2654435761u) >> 7) % 3000;
}

static void segment_roll_over(bool buffered)
{
    fixture *f = fixture_new();
    f->opts.buffered = buffered;
    f->opts.segment_bytes = 64 * 1024;
    bk_journal *j = open_ok(f, NULL);
    const uint32_t n = 300;
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, roll_len(i)), MG_OK);
        if (i % 50 == 0)
            wait_completed(f->w, i + 1); /* several groups */
    }
    wait_completed(f->w, n);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(f->w->status[i], MG_OK);
    bk_journal_close(j);
    int segs = count_segments(f->dir, NULL);
    cr_assert_geq(segs, 8, "%d segments", segs); /* ~650 KiB in 64 KiB segments */

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, n);
    for (uint32_t i = 0; i < n; i++)
        expect_rec(&c.recs[i], BK_JREC_ADD, 7, i, i, roll_len(i));
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, segment_roll_over)
{
    segment_roll_over(true);
}

Test(journal, direct_segment_roll_over)
{
    segment_roll_over(false);
}

Test(journal, fault_fdatasync_eio_is_sticky)
{
    fixture *f = fixture_new();
    f->opts.group_bytes_max = 4096; /* each 3000-byte record is a group of its own */
    bk_journal *j = open_ok(f, NULL);
    bk_journal_pos p0 = bk_journal_durable_pos(j);

    f->w->block_idx = 0;
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_ADD, 3000), MG_OK);
    wait_entered(f->w);
    for (uint32_t i = 1; i <= 3; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 3000), MG_OK);
    bk_io_fault_arm(f->io, BK_IO_SYNC, ".log", 0, 1, MG_EIO, 0);
    release_blocked(f->w);
    wait_completed(f->w, 4);
    cr_assert_eq(status_of(f->w, 0), MG_OK);
    cr_assert_eq(status_of(f->w, 1), MG_EIO);
    cr_assert_eq(status_of(f->w, 2), MG_EIO); /* queued behind the failure: never written */
    cr_assert_eq(status_of(f->w, 3), MG_EIO);
    cr_assert(bk_journal_failed(j));
    /* The failed fdatasync was not retried, and nothing after it was synced. */
    cr_assert_eq(bk_io_fault_count(f->io, BK_IO_SYNC), 1);
    cr_assert_eq(bk_journal_sync_count(j), 2);
    bk_journal_pos p = bk_journal_durable_pos(j);
    cr_assert_eq(p.segment_id, p0.segment_id);
    cr_assert_eq(p.offset, HDR + 3000);
    cr_assert_eq(append_rec(f, j, 4, BK_JREC_ADD, 10), MG_EREADONLY);
    cr_assert_eq(append_rec(f, j, 5, BK_JREC_FENCE, 0), MG_EREADONLY);
    bk_journal_close(j);
    cr_assert_eq(f->w->completed, 4);

    bk_io_fault_clear(f->io, BK_IO_SYNC);
    collector c = { 0 };
    j = open_ok(f, &c);
    /* Record 0 was acknowledged; record 1 reached the page cache and may replay, intact;
     * 2 and 3 were never written. */
    cr_assert(c.count == 1 || c.count == 2, "%zu records", c.count);
    expect_rec(&c.recs[0], BK_JREC_ADD, 7, 0, 0, 3000);
    if (c.count == 2)
        expect_rec(&c.recs[1], BK_JREC_ADD, 7, 1, 1, 3000);
    cr_assert_not(bk_journal_failed(j));
    cr_assert_eq(append_rec(f, j, 6, BK_JREC_ADD, 10), MG_OK);
    wait_completed(f->w, 5);
    cr_assert_eq(status_of(f->w, 6), MG_OK);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, fault_pwrite_enospc)
{
    fixture *f = fixture_new();
    mg_metrics *m;
    cr_assert_eq(mg_metrics_create(&m), MG_OK);
    f->opts.metrics = m;
    bk_journal *j = open_ok(f, NULL);
    bk_io_fault_arm(f->io, BK_IO_PWRITE, ".log", 0, -1, MG_ENOSPC, 0);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 100), MG_OK);
    wait_completed(f->w, 5);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(status_of(f->w, i), MG_ENOSPC);
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(bk_journal_sync_count(j), 0); /* a failed write is not followed by a sync */
    cr_assert_eq(bk_io_fault_count(f->io, BK_IO_PWRITE), 1);
    cr_assert_eq(append_rec(f, j, 5, BK_JREC_ADD, 100), MG_EREADONLY);
    char *text;
    cr_assert_eq(mg_metrics_render(m, &text, NULL), MG_OK);
    cr_assert_not_null(strstr(text, "bookie_journal_failures_total 1\n"), "%s", text);
    free(text);
    bk_journal_close(j);
    bk_io_fault_clear(f->io, BK_IO_PWRITE);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 0);
    bk_journal_close(j);
    collector_free(&c);
    mg_metrics_destroy(m);
    fixture_free(f);
}

/* Opens f's journal with 64 KiB segments, makes every preallocation of a new segment fail with
 * MG_ENOSPC, and appends 1024-byte records one group at a time until one fails: the first 62 (of
 * 1024 + 25 bytes each) fit the first segment. */
static bk_journal *fill_until_enospc(fixture *f)
{
    f->opts.segment_bytes = 64 * 1024;
    bk_journal *j = open_ok(f, NULL);
    bk_io_fault_arm(f->io, BK_IO_ALLOCATE, ".log", 0, -1, MG_ENOSPC, 0);
    uint32_t i = 0;
    for (; i < 100; i++) {
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 1024), MG_OK);
        wait_completed(f->w, i + 1);
        if (status_of(f->w, i) != MG_OK)
            break;
    }
    cr_assert_eq(i, 62);
    return j;
}

Test(journal, fault_preallocate_enospc_on_roll_over)
{
    fixture *f = fixture_new();
    bk_journal *j = fill_until_enospc(f);
    cr_assert_eq(status_of(f->w, 62), MG_ENOSPC);
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(append_rec(f, j, 63, BK_JREC_ADD, 1024), MG_EREADONLY);
    bk_journal_close(j);
    cr_assert_eq(count_segments(f->dir, NULL), 1); /* the half-made segment was removed */
    bk_io_fault_clear(f->io, BK_IO_ALLOCATE);
    expect_replay(f, 62, 1024);
    fixture_free(f);
}

Test(journal, resume_after_a_full_disk_on_roll_over)
{
    fixture *f = fixture_new();
    bk_journal *j = fill_until_enospc(f);
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(bk_journal_fail_status(j), MG_ENOSPC);
    /* Still full: the new segment cannot be made, the journal stays FAILED. */
    cr_assert_eq(bk_journal_resume(j), MG_ENOSPC);
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(append_rec(f, j, 62, BK_JREC_ADD, 1024), MG_EREADONLY);
    /* Space is back: writing goes on in a new segment, and everything acknowledged replays. */
    bk_io_fault_clear(f->io, BK_IO_ALLOCATE);
    cr_assert_eq(bk_journal_resume(j), MG_OK);
    cr_assert_not(bk_journal_failed(j));
    cr_assert_eq(bk_journal_fail_status(j), MG_OK);
    for (uint32_t k = 63; k < 73; k++) {
        cr_assert_eq(append_rec(f, j, k, BK_JREC_ADD, 1024), MG_OK);
        wait_completed(f->w, k + 1);
        cr_assert_eq(status_of(f->w, k), MG_OK);
    }
    cr_assert_eq(bk_journal_resume(j), MG_OK, "resuming an open journal is a no-op");
    bk_journal_close(j);
    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 72, "62 before the failure, 10 after the resume");
    for (uint32_t k = 0; k < 62; k++)
        expect_rec(&c.recs[k], BK_JREC_ADD, 7, k, k, 1024);
    for (uint32_t k = 62; k < 72; k++)
        expect_rec(&c.recs[k], BK_JREC_ADD, 7, k + 1, k + 1, 1024);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}

Test(journal, no_resume_after_a_failed_fdatasync)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    bk_io_fault_arm(f->io, BK_IO_SYNC, ".log", 0, 1, MG_EIO, 0);
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_ADD, 100), MG_OK);
    wait_completed(f->w, 1);
    cr_assert_eq(status_of(f->w, 0), MG_EIO);
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(bk_journal_resume(j), MG_ESTATE, "a failed fdatasync is never retried");
    cr_assert(bk_journal_failed(j));
    cr_assert_eq(append_rec(f, j, 1, BK_JREC_ADD, 100), MG_EREADONLY);
    bk_journal_close(j);
    fixture_free(f);
}

Test(journal, fault_preallocate_enospc_at_open)
{
    fixture *f = fixture_new();
    bk_io_fault_arm(f->io, BK_IO_ALLOCATE, ".log", 0, 1, MG_ENOSPC, 0);
    bk_journal *j = NULL;
    cr_assert_eq(bk_journal_open(&f->opts, NULL, NULL, &j), MG_ENOSPC);
    cr_assert_null(j);
    cr_assert_eq(count_segments(f->dir, NULL), 0);
    j = open_ok(f, NULL);
    bk_journal_close(j);
    fixture_free(f);
}

Test(journal, queue_bound_returns_eagain)
{
    fixture *f = fixture_new();
    f->opts.queue_max = 4;
    bk_journal *j = open_ok(f, NULL);
    f->w->block_idx = 0;
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_ADD, 10), MG_OK);
    wait_entered(f->w); /* record 0 counts until its completion returns */
    for (uint32_t i = 1; i < 4; i++)
        cr_assert_eq(append_rec(f, j, i, BK_JREC_ADD, 10), MG_OK);
    cr_assert_eq(append_rec(f, j, 4, BK_JREC_ADD, 10), MG_EAGAIN);
    cr_assert_eq(append_rec(f, j, 4, BK_JREC_FENCE, 0), MG_EAGAIN);
    release_blocked(f->w);
    wait_completed(f->w, 4);
    cr_assert_eq(f->w->completed, 4);
    cr_assert_eq(append_rec(f, j, 4, BK_JREC_ADD, 10), MG_OK);
    wait_completed(f->w, 5);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(status_of(f->w, i), MG_OK);
    bk_journal_close(j);
    fixture_free(f);
}

Test(journal, argument_checks_and_limits)
{
    fixture *f = fixture_new();
    bk_journal *j = open_ok(f, NULL);
    mg_buf *small = make_payload(1, 0, 10);
    cr_assert_eq(bk_journal_append(j, 3, 1, 1, small, 0, 10, on_done, &f->tickets[0]), MG_EINVAL);
    cr_assert_eq(bk_journal_append(j, 0, 1, 1, small, 0, 10, on_done, &f->tickets[0]), MG_EINVAL);
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 1, 1, small, 5, 6, on_done, &f->tickets[0]),
                 MG_EINVAL);
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 1, 1, small, 11, 0, NULL, NULL), MG_OK);
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 1, 1, NULL, 0, 5, on_done, &f->tickets[0]),
                 MG_EINVAL);
    cr_assert_eq(mg_buf_refcount(small), 1);

    /* One byte over the limit: MG_ELIMIT; exactly the limit: stored and replayed. */
    size_t max = BK_JOURNAL_RECORD_BYTES_MAX;
    mg_buf *big = make_payload(2, 0, max + 1);
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 1, 2, big, 0, max + 1, on_done, &f->tickets[0]),
                 MG_ELIMIT);
    cr_assert_eq(bk_journal_append(j, BK_JREC_ADD, 1, 2, big, 0, max, on_done, &f->tickets[0]),
                 MG_OK);
    wait_completed(f->w, 1);
    cr_assert_eq(status_of(f->w, 0), MG_OK);
    bk_journal_close(j);
    mg_buf_unref(big);
    mg_buf_unref(small);

    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 2);
    cr_assert_eq(c.recs[0].len, 0);
    expect_rec(&c.recs[1], BK_JREC_ADD, 1, 2, 2, max);
    bk_journal_close(j);
    collector_free(&c);

    /* Options. */
    bk_journal_opts o = f->opts;
    o.segment_bytes = 100;
    cr_assert_eq(bk_journal_open(&o, NULL, NULL, &j), MG_EINVAL);
    o = f->opts;
    o.io = NULL;
    cr_assert_eq(bk_journal_open(&o, NULL, NULL, &j), MG_EINVAL);
    o = f->opts;
    o.queue_max = BK_JOURNAL_QUEUE_RECORDS_MAX + 1;
    cr_assert_eq(bk_journal_open(&o, NULL, NULL, &j), MG_EINVAL);
    o = f->opts;
    o.dir = NULL;
    cr_assert_eq(bk_journal_open(&o, NULL, NULL, &j), MG_EINVAL);
    fixture_free(f);
}

Test(journal, creates_missing_directories)
{
    fixture *f = fixture_new();
    char nested[512];
    snprintf(nested, sizeof(nested), "%s/a/b/journal/", f->dir);
    f->opts.dir = nested;
    bk_journal *j = open_ok(f, NULL);
    cr_assert_eq(append_rec(f, j, 0, BK_JREC_FENCE, 0), MG_OK);
    wait_completed(f->w, 1);
    bk_journal_close(j);
    snprintf(nested, sizeof(nested), "%s/a/b/journal", f->dir);
    cr_assert_eq(count_segments(nested, NULL), 1);
    collector c = { 0 };
    j = open_ok(f, &c);
    cr_assert_eq(c.count, 1);
    cr_assert_eq(c.recs[0].type, BK_JREC_FENCE);
    cr_assert_eq(c.recs[0].entry_id, 0);
    bk_journal_close(j);
    collector_free(&c);
    fixture_free(f);
}
