/*
 * The prefetch module (src/prefetch/prefetch.h) against real managed ledgers and cursors on real
 * bookies (tests/support/bk_harness), with small budgets so that windows fill, shrink and
 * evict. Nothing is mocked. Every scenario runs twice: prefetch on, and --prefetch off
 * (on-demand reads; the tail cache stays).
 *
 * Covered: mixed cursors on one topic (one at the tail while producers write, three behind by
 * different amounts, one that stops, one that seeks back) each get every entry once and in
 * order, across ledger rollovers; the tail reader is served from the tail cache only (no
 * on-demand read once it is at the tail); both budgets hold (read back through the metrics'
 * peak gauges); a reader that closes gives its window back (nothing fetched stays held); one
 * that stops reading gives it back after the idle time; an injected disk read error on the
 * bookie is retried and never shows as a gap; redelivery reads (pf_read) come from the caches
 * when they hold the entries.
 *
 * Each payload carries its sequence number, so order and completeness are checked on content.
 */
#include "prefetch/prefetch.h"

#include "bookie/bookie.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/metrics.h"
#include "support/bk_harness.h"
#include "support/ml_harness.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(prefetch, .timeout = 60);

#define WAIT_NS_MAX    (20ull * 1000 * 1000 * 1000) /* under the suite's 60 s */
#define ENTRIES_MAX    4000
#define READERS_MAX    8
#define TAIL_BYTES     (256u * 1024)
#define PREFETCH_BYTES (192u * 1024)

static void pump(void);
static void dump_state(void);

#define RUN_UNTIL(cond)                                                                       \
    do {                                                                                      \
        uint64_t run_until_t0 = uv_hrtime();                                                  \
        while (!(cond)) {                                                                     \
            if (uv_hrtime() - run_until_t0 >= WAIT_NS_MAX)                                    \
                dump_state();                                                                 \
            cr_assert_lt(uv_hrtime() - run_until_t0, WAIT_NS_MAX, "timed out waiting for %s", \
                         #cond);                                                              \
            pump();                                                                           \
            uv_run(&fx.loop, UV_RUN_ONCE);                                                    \
        }                                                                                     \
    } while (0)

typedef struct trd {
    const char *name;
    mc_cursor *c;
    pf_reader *r;
    int64_t *got; /* sequence numbers received, in order */
    int ngot;
    int stop_after; /* stop reading after this many (0: never) */
    bool paused;    /* not read from pump() */
    bool reading;
    bool closed;
    int errors;
} trd;

static mlh fx; /* the loop, the bookie, the env */

typedef struct tenv {
    ml_managed *ml;
    mg_metrics *metrics;
    pf_env *pf;
    pf_topic *pt;
    ml_position pos[ENTRIES_MAX];
    int added, acked, to_add; /* adds issued, adds acknowledged, adds to issue from pump() */
    trd rd[READERS_MAX];
    int nrd;
} tenv;

static tenv t;
static uint32_t idle_release_ms = 300; /* the env's idle time, set before setup_env */

/* What every reader got and what the env holds, printed when a wait times out. */
static void dump_state(void)
{
    fprintf(stderr, "added %d acked %d to_add %d\n", t.added, t.acked, t.to_add);
    for (int i = 0; i < t.nrd; i++) {
        const trd *d = &t.rd[i];
        pf_reader_stats rs = { 0 };
        if (!d->closed)
            pf_reader_stats_get(d->r, &rs);
        fprintf(stderr,
                "  %-12s got %d (last %lld) reading %d closed %d errors %d hits %llu misses "
                "%llu waits %llu claim %lld:%lld..%lld:%lld\n",
                d->name, d->ngot, d->ngot > 0 ? (long long)d->got[d->ngot - 1] : -1LL, d->reading,
                d->closed, d->errors, (unsigned long long)rs.hits, (unsigned long long)rs.misses,
                (unsigned long long)rs.waits, (long long)rs.claim_first.ledger_id,
                (long long)rs.claim_first.entry_id, (long long)rs.claim_last.ledger_id,
                (long long)rs.claim_last.entry_id);
    }
    if (t.pf != NULL) {
        pf_stats s;
        pf_env_stats(t.pf, &s);
        fprintf(stderr,
                "  env: tail %llu B (%llu entries) prefetch %llu B (%llu entries, %llu in "
                "flight) fetches %llu failures %llu windows %llu\n",
                (unsigned long long)s.tail_bytes, (unsigned long long)s.tail_entries,
                (unsigned long long)s.prefetch_bytes, (unsigned long long)s.prefetch_entries,
                (unsigned long long)s.inflight_bytes, (unsigned long long)s.fetches,
                (unsigned long long)s.fetch_failures, (unsigned long long)s.windows);
    }
}

typedef struct dres {
    int calls;
    int status;
} dres;

static void done_cb(int status, void *arg)
{
    dres *r = arg;
    r->calls++;
    r->status = status;
}

/* --- writing ------------------------------------------------------------------------------- */

/* Entry i: its sequence number, then filler; sizes vary from 600 to ~3.6 KiB. */
static size_t entry_size(int i)
{
    return 600 + (size_t)((i * 7919) % 3000);
}

static void added(int status, ml_position pos, int64_t index, void *arg)
{
    (void)index;
    int i = (int)(intptr_t)arg;
    cr_assert_eq(status, MG_OK, "add %d: %s", i, mg_strerror(status));
    t.pos[i] = pos;
    t.acked++;
}

static void add_one(void)
{
    int i = t.added;
    size_t len = entry_size(i);
    mg_buf *b = mg_buf_new(len);
    cr_assert_not_null(b);
    uint8_t *d = mg_buf_data(b);
    int64_t seq = i;
    memcpy(d, &seq, sizeof(seq));
    for (size_t k = sizeof(seq); k < len; k++)
        d[k] = (uint8_t)(i + k);
    mg_buf_set_len(b, len);
    cr_assert_eq(ml_add(t.ml, b, 0, len, 1, added, (void *)(intptr_t)i), MG_OK);
    mg_buf_unref(b);
    t.added++;
}

/* --- reading ------------------------------------------------------------------------------- */

static void read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    trd *d = arg;
    d->reading = false;
    if (status != MG_OK && status != MG_EAGAIN) {
        d->errors++;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const uint8_t *p = mg_buf_data(entries[i].buf) + entries[i].payload_off;
        cr_assert_geq(entries[i].payload_len, sizeof(int64_t));
        int64_t seq;
        memcpy(&seq, p, sizeof(seq));
        cr_assert_eq(entries[i].payload_len, entry_size((int)seq), "%s: entry %lld has %zu bytes",
                     d->name, (long long)seq, entries[i].payload_len);
        cr_assert_eq(p[entries[i].payload_len - 1],
                     (uint8_t)(seq + (int64_t)entries[i].payload_len - 1), "%s: entry %lld bytes",
                     d->name, (long long)seq);
        cr_assert_lt(d->ngot, 2 * ENTRIES_MAX);
        d->got[d->ngot++] = seq;
        cr_assert_eq(mc_ack_individual(d->c, entries[i].position, NULL, 0), MG_OK);
    }
}

/* One step of every reader that may read, and of the writer. */
static void pump(void)
{
    /* A producer with a few adds in flight, as a client's pending queue keeps it: bursts of
     * acknowledgements stay smaller than the tail cache. */
    while (t.added < t.to_add && t.added - t.acked < 8)
        add_one();
    for (int i = 0; i < t.nrd; i++) {
        trd *d = &t.rd[i];
        if (d->closed || d->paused || d->reading || (d->stop_after > 0 && d->ngot >= d->stop_after))
            continue;
        int max = d->stop_after > 0 && d->stop_after - d->ngot < 16 ? d->stop_after - d->ngot : 16;
        int rc = pf_read_entries(d->r, max, 32 * 1024, read_done, d);
        if (rc == MG_OK)
            d->reading = true;
        else
            cr_assert_eq(rc, MG_EAGAIN, "%s: pf_read_entries: %s", d->name, mg_strerror(rc));
    }
}

typedef struct cres {
    int calls;
    int status;
    mc_cursor *c;
} cres;

static void cursor_opened(int status, mc_cursor *c, void *arg)
{
    cres *r = arg;
    r->calls++;
    r->status = status;
    r->c = c;
}

static trd *reader_open(const char *name, mc_initial initial)
{
    cr_assert_lt(t.nrd, READERS_MAX);
    trd *d = &t.rd[t.nrd++];
    memset(d, 0, sizeof(*d));
    d->name = name;
    d->paused = true; /* until the test starts it */
    d->got = calloc(2 * ENTRIES_MAX, sizeof(*d->got));
    cr_assert_not_null(d->got);
    cres r = { 0 };
    cr_assert_eq(mc_cursor_open(t.ml, name, false, initial, NULL, cursor_opened, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    d->c = r.c;
    cr_assert_eq(pf_reader_open(t.pt, d->c, &d->r), MG_OK);
    pf_reader_set_active(d->r, true);
    return d;
}

static void reader_close(trd *d)
{
    if (d->closed)
        return;
    d->paused = true;
    RUN_UNTIL(!d->reading);
    pf_reader_close(d->r);
    d->closed = true;
    dres r = { 0 };
    cr_assert_eq(mc_cursor_close(d->c, done_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
}

/* Moves d's read position to entry i: a plain seek (ahead of what it acknowledged), or a reset
 * that also forgets acknowledgements (as a broker does for a SEEK). */
static void reader_seek(trd *d, int i)
{
    RUN_UNTIL(!d->reading);
    cr_assert_eq(mc_seek(d->c, t.pos[i]), MG_OK);
    pf_reader_reset(d->r);
}

static void reader_reset(trd *d, int i)
{
    RUN_UNTIL(!d->reading);
    dres r = { 0 };
    cr_assert_eq(mc_reset_to_position(d->c, t.pos[i], done_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    pf_reader_reset(d->r);
}

static void expect_sequence(const trd *d, int from, int to)
{
    cr_assert_eq(d->ngot, to - from, "%s: %d entries, expected %d", d->name, d->ngot, to - from);
    for (int i = 0; i < d->ngot; i++)
        cr_assert_eq(d->got[i], from + i, "%s: entry %d is %lld, expected %d", d->name, i,
                     (long long)d->got[i], from + i);
}

/* --- environment --------------------------------------------------------------------------- */

static void setup_env(bool prefetch_off, int64_t entries_per_ledger)
{
    memset(&t, 0, sizeof(t));
    mlh_opts o = { .bookie_count = 1, .env = { .ensemble_size = 1 } };
    cr_assert_eq(mlh_start(&fx, &o), MG_OK);
    ml_config cfg = { .entries_per_ledger_max = entries_per_ledger,
                      .retention_time_ms = -1,
                      .retention_bytes = -1 };
    int rc = mlh_open_ml(&fx, fx.env, "public/default/persistent/pf", &cfg, &t.ml);
    cr_assert_eq(rc, MG_OK, "ml_open: %s", mg_strerror(rc));
    cr_assert_eq(mg_metrics_create(&t.metrics), MG_OK);
    pf_env_opts po = { .tail_cache_bytes = TAIL_BYTES,
                       .prefetch_bytes = PREFETCH_BYTES,
                       .prefetch_off = prefetch_off,
                       .read_bytes = 16 * 1024,
                       .window_bytes_min = 32 * 1024,
                       .window_bytes_max = 64 * 1024,
                       .slice_bytes = 64 * 1024,
                       .idle_release_ms = idle_release_ms,
                       .metrics = t.metrics };
    cr_assert_eq(pf_env_create(&fx.loop, &po, &t.pf), MG_OK);
    cr_assert_eq(pf_topic_open(t.pf, t.ml, &t.pt), MG_OK);
}

static void write_backlog(int n)
{
    t.to_add = n;
    RUN_UNTIL(t.acked == n);
}

static void teardown_env(void)
{
    for (int i = 0; i < t.nrd; i++) {
        reader_close(&t.rd[i]);
        free(t.rd[i].got);
    }
    pf_topic_close(t.pt);
    cr_assert_eq(mlh_close_ml(&fx, t.ml, NULL), MG_OK);
    pf_env_destroy(t.pf);
    cr_assert_eq(mlh_stop(&fx), MG_OK, "handles left open on the loop");
    mg_metrics_destroy(t.metrics);
}

/* The value of an unlabelled metric, as /metrics renders it. */
static double metric(const char *name)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mg_metrics_render(t.metrics, &text, &len), MG_OK);
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    cr_assert_not_null(p, "metric %s not rendered", name);
    double v = strtod(p + strlen(key), NULL);
    free(text);
    return v;
}

static bool stats_settled(void)
{
    pf_stats s;
    pf_env_stats(t.pf, &s);
    return s.inflight_bytes == 0;
}

/* --- tests --------------------------------------------------------------------------------- */

ParameterizedTestParameters(prefetch, mixed_cursors)
{
    static bool modes[] = { false, true };
    return cr_make_param_array(bool, modes, 2);
}

/* One tail reader while 1200 more entries are written; readers behind from 0, 400 and 800 of a
 * 1600-entry backlog; one that stops at 250 (then closes); one that reads 700 and seeks back to
 * 100. Ledgers roll every 350 entries. */
ParameterizedTest(bool *off, prefetch, mixed_cursors)
{
    setup_env(*off, 350);
    write_backlog(1600);
    trd *tail = reader_open("tail", MC_INITIAL_LATEST);
    trd *b0 = reader_open("behind-0", MC_INITIAL_EARLIEST);
    trd *b400 = reader_open("behind-400", MC_INITIAL_EARLIEST);
    trd *b800 = reader_open("behind-800", MC_INITIAL_EARLIEST);
    trd *stop = reader_open("stops", MC_INITIAL_EARLIEST);
    trd *back = reader_open("seeks-back", MC_INITIAL_EARLIEST);
    reader_seek(b400, 400);
    reader_seek(b800, 800);
    stop->stop_after = 250;
    back->stop_after = 700;
    for (int i = 0; i < t.nrd; i++)
        t.rd[i].paused = false;
    t.to_add = 2800;
    RUN_UNTIL(t.acked == 2800 && tail->ngot == 1200 && b0->ngot == 2800 && b400->ngot == 2400 &&
              b800->ngot == 2000 && stop->ngot == 250 && back->ngot == 700);
    expect_sequence(tail, 1600, 2800);
    expect_sequence(b0, 0, 2800);
    expect_sequence(b400, 400, 2800);
    expect_sequence(b800, 800, 2800);
    expect_sequence(stop, 0, 250);
    /* Seek back: everything from 100 again, in order. */
    reader_reset(back, 100);
    back->stop_after = 0;
    RUN_UNTIL(back->ngot == 700 + 2700);
    for (int i = 0; i < 700; i++)
        cr_assert_eq(back->got[i], i);
    for (int i = 0; i < 2700; i++)
        cr_assert_eq(back->got[700 + i], 100 + i, "seeks-back: entry %d", 700 + i);
    for (int i = 0; i < t.nrd; i++)
        cr_assert_eq(t.rd[i].errors, 0, "%s: read errors", t.rd[i].name);

    /* The tail reader never read a bookie once it was at the tail. */
    pf_reader_stats rs;
    pf_reader_stats_get(tail->r, &rs);
    cr_assert_eq(rs.misses, 0, "tail reader: %llu entries read on demand",
                 (unsigned long long)rs.misses);
    cr_assert_geq(rs.hits, 1200);

    pf_stats s;
    pf_env_stats(t.pf, &s);
    if (*off) {
        cr_assert_eq(s.fetches, 0, "no windows with --prefetch off");
    } else {
        cr_assert_gt(s.fetches, 0);
        pf_reader_stats_get(b0->r, &rs);
        cr_assert_gt(rs.hits, rs.misses, "a reader behind is served mostly from its window");
    }
    /* The budgets, as the metrics saw them (exported every 100 ms; wait for one export). */
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < 300ull * 1000 * 1000)
        uv_run(&fx.loop, UV_RUN_ONCE);
    cr_assert_leq(metric("magnetar_tail_cache_bytes_peak"), TAIL_BYTES);
    cr_assert_leq(metric("magnetar_prefetch_bytes_peak"), PREFETCH_BYTES);
    cr_assert_gt(metric("magnetar_tail_cache_bytes_peak"), 0);
    cr_assert_eq(metric("magnetar_tail_cache_bytes_max"), TAIL_BYTES);
    cr_assert_leq(s.tail_bytes_peak, TAIL_BYTES);
    /* Every entry delivered is counted once, as served at once or after a wait. */
    cr_assert_gt(s.entries_ready, 0);
    cr_assert_eq(metric("magnetar_dispatch_entries_ready_total") +
                     metric("magnetar_dispatch_entries_waited_total"),
                 (double)(s.entries_ready + s.entries_waited));
    cr_assert_leq(s.prefetch_bytes_peak, PREFETCH_BYTES);
    teardown_env();
}

/* A reader that closes gives back what was fetched for it; one that stops reading, after the
 * idle time. */
Test(prefetch, close_and_idle_release)
{
    setup_env(false, 0);
    write_backlog(600);
    trd *a = reader_open("closes", MC_INITIAL_EARLIEST);
    a->paused = false;
    a->stop_after = 50;
    RUN_UNTIL(a->ngot == 50 && stats_settled());
    pf_stats s;
    pf_env_stats(t.pf, &s);
    cr_assert_gt(s.prefetch_entries, 0, "a window ahead of the reader");
    reader_close(a);
    RUN_UNTIL(stats_settled());
    pf_env_stats(t.pf, &s);
    cr_assert_eq(s.prefetch_entries, 0, "closing released the window");
    cr_assert_eq(s.prefetch_bytes, 0);
    cr_assert_gt(s.wasted_bytes, 0, "what it never read counts as wasted");
    cr_assert_eq(s.windows, 0);

    trd *b = reader_open("stops", MC_INITIAL_EARLIEST);
    b->paused = false;
    b->stop_after = 50;
    RUN_UNTIL(b->ngot == 50 && stats_settled());
    pf_env_stats(t.pf, &s);
    cr_assert_gt(s.prefetch_entries, 0);
    /* It stays open and active but reads no more: released after idle_release_ms (300). */
    uint64_t t0 = uv_hrtime();
    RUN_UNTIL(stats_settled() && (pf_env_stats(t.pf, &s), s.prefetch_entries == 0));
    cr_assert_geq(uv_hrtime() - t0, 100ull * 1000 * 1000, "released before the idle time");
    /* Reading again starts a new window and goes on where it stopped. */
    b->stop_after = 0;
    RUN_UNTIL(b->ngot == 600);
    expect_sequence(b, 0, 600);
    teardown_env();
}

ParameterizedTestParameters(prefetch, read_error_retried)
{
    static bool modes[] = { false, true };
    return cr_make_param_array(bool, modes, 2);
}

static void flushed(int status, void *arg)
{
    dres *r = arg;
    r->calls++;
    r->status = status;
}

/* The bookie's disk fails two reads: the reader still gets every entry, once, in order. */
ParameterizedTest(bool *off, prefetch, read_error_retried)
{
    setup_env(*off, 0);
    write_backlog(500);
    dres fr = { 0 };
    cr_assert_eq(bk_storage_flush(bkh_bookie_storage(fx.h, 0), flushed, &fr), MG_OK);
    RUN_UNTIL(fr.calls == 1);
    cr_assert_eq(fr.status, MG_OK);
    /* Armed once the cursor is open (opening at EARLIEST reads the first entry itself). */
    trd *a = reader_open("reader", MC_INITIAL_EARLIEST);
    a->paused = false;
    bk_io *io = bkh_bookie_io(fx.h, 0);
    bk_io_fault_arm(io, BK_IO_PREAD, "ledgers", 0, 2, MG_EIO, 0);
    RUN_UNTIL(a->ngot == 500);
    expect_sequence(a, 0, 500);
    cr_assert_geq(bk_io_fault_count(io, BK_IO_PREAD), 1, "no read failed: nothing was tested");
    pf_stats s;
    pf_env_stats(t.pf, &s);
    cr_assert_geq(s.fetch_failures, 1, "the failure reached the prefetcher and was retried");
    cr_assert_eq(a->errors, 0);
    bk_io_fault_clear(io, BK_IO_PREAD);
    teardown_env();
}

static uint64_t tail_entries(void)
{
    pf_stats s;
    pf_env_stats(t.pf, &s);
    return s.tail_entries;
}

typedef struct rres {
    int calls;
    int status;
    int64_t seq[64];
    size_t count;
} rres;

static void range_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    rres *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    for (size_t i = 0; i < count && i < 64; i++)
        memcpy(&r->seq[i], mg_buf_data(entries[i].buf) + entries[i].payload_off, sizeof(int64_t));
}

/* Redelivery reads: from the tail cache when it holds the entries, from a bookie otherwise. */
Test(prefetch, redelivery_reads)
{
    idle_release_ms = 60000; /* the stopped tail reader keeps its claim through the test */
    setup_env(false, 0);
    trd *a = reader_open("tail", MC_INITIAL_LATEST);
    a->paused = false;
    t.to_add = 20;
    /* The tail reader took them; its next read (past the end) released them. */
    RUN_UNTIL(t.acked == 20 && a->ngot == 20 && tail_entries() == 0);
    /* Add more without reading, so the cache holds them. */
    a->paused = true;
    RUN_UNTIL(!a->reading);
    t.to_add = 30;
    RUN_UNTIL(t.acked == 30);
    pf_stats before, after;
    pf_env_stats(t.pf, &before);
    cr_assert_eq(before.tail_entries, 10);
    rres r = { 0 };
    cr_assert_eq(pf_read(t.pt, t.pos[22], 5, 0, range_done, &r), MG_OK);
    cr_assert_eq(r.calls, 0, "never called back from inside the call");
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(r.seq[i], 22 + i);
    pf_env_stats(t.pf, &after);
    cr_assert_eq(after.hits - before.hits, 5);
    cr_assert_eq(after.misses, before.misses);
    /* Entries no cache holds any more come from the bookie. */
    rres r2 = { 0 };
    cr_assert_eq(pf_read(t.pt, t.pos[3], 4, 0, range_done, &r2), MG_OK);
    RUN_UNTIL(r2.calls == 1);
    cr_assert_eq(r2.status, MG_OK);
    cr_assert_eq(r2.count, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(r2.seq[i], 3 + i);
    pf_env_stats(t.pf, &after);
    cr_assert_eq(after.misses - before.misses, 4);
    teardown_env();
}
