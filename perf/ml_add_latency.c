/*
 * perf_ml_add: managed-ledger add latency and throughput through real bookies in this process
 * (tests/support/bk_harness: storage engines, RPC over loopback TCP, embedded metadata store),
 * for 1 bookie (1/1/1) and 3 bookies (3/3/2).
 *
 *     perf_ml_add [--count N] [--window W] [--size BYTES] [--latency-count N] [--json FILE]
 *
 * For each configuration:
 *   - window 1: --latency-count adds one after the other (each waits for the previous one):
 *     the latency of an add on an idle system;
 *   - windowed: --count adds with at most --window in flight: throughput, and the latency of an
 *     add under that load (from ml_add to its callback);
 *   - raw bookie: --latency-count bk_client_add calls to one bookie, one after the other, with
 *     the same entry size: what the ledger layers add on top of one bookie round trip.
 * Measured in the same run, as the reference: 4 KiB write + fdatasync on the same file system
 * (/var/tmp), one after the other — a bookie acknowledges an add only after its journal's
 * fdatasync, so this bounds the window-1 latency from below.
 *
 * Prints a summary and writes every figure to --json (default: no file). Latencies come from an
 * mg_hist (10 precision bits: < 0.1 % error), in milliseconds.
 */
#include "common/error.h"
#include "common/hist.h"
#include "common/log.h"
#include "ledger/ledger.h"
#include "support/bk_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define PERF_HIST_BITS     10
#define PERF_HIST_MAX_US   (120ull * 1000 * 1000)
#define PERF_WAIT_NS       (600ull * 1000 * 1000 * 1000)
#define PERF_SYNC_WRITES   1000
#define PERF_SYNC_BYTES    4096
#define PERF_WINDOW_MAX    10000
#define PERF_RAW_LEDGER_ID 999999

typedef struct perf_opts {
    long count;
    long window;
    long size;
    long latency_count;
    const char *json;
} perf_opts;

typedef struct lat_summary {
    double p50, p99, p999, max, mean; /* ms */
    uint64_t count;
} lat_summary;

typedef struct cfg_result {
    int bookies, ensemble, write_quorum, ack_quorum;
    lat_summary w1;
    lat_summary windowed;
    double seconds, adds_per_s, mib_per_s;
    lat_summary raw;
    int error;
} cfg_result;

/* --- loop helpers --------------------------------------------------------------------------- */

static void guard_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag; returns MG_ETIMEDOUT after PERF_WAIT_NS. */
static int run_until(uv_loop_t *loop, const bool *flag)
{
    uint64_t t0 = uv_hrtime();
    while (!*flag) {
        if (uv_hrtime() - t0 > PERF_WAIT_NS)
            return MG_ETIMEDOUT;
        uv_run(loop, UV_RUN_ONCE);
    }
    return MG_OK;
}

static void summarize(const mg_hist *h, lat_summary *s)
{
    s->count = mg_hist_count(h);
    s->p50 = (double)mg_hist_percentile(h, 50.0) / 1000.0;
    s->p99 = (double)mg_hist_percentile(h, 99.0) / 1000.0;
    s->p999 = (double)mg_hist_percentile(h, 99.9) / 1000.0;
    s->max = (double)mg_hist_max(h) / 1000.0;
    s->mean = mg_hist_mean(h) / 1000.0;
}

/* --- fdatasync reference -------------------------------------------------------------------- */

static int measure_fdatasync(lat_summary *out)
{
    char path[] = "/var/tmp/mg-perf-sync-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return MG_ESYS;
    unlink(path);
    static char block[PERF_SYNC_BYTES];
    memset(block, 0x5a, sizeof(block));
    mg_hist h;
    if (mg_hist_init(&h, PERF_HIST_BITS, PERF_HIST_MAX_US) != MG_OK) {
        close(fd);
        return MG_ENOMEM;
    }
    int rc = MG_OK;
    for (int i = 0; i < PERF_SYNC_WRITES && rc == MG_OK; i++) {
        uint64_t t0 = uv_hrtime();
        if (pwrite(fd, block, sizeof(block), (off_t)i * PERF_SYNC_BYTES) != PERF_SYNC_BYTES ||
            fdatasync(fd) != 0)
            rc = mg_err_from_errno(errno);
        mg_hist_record(&h, (uv_hrtime() - t0) / 1000);
    }
    close(fd);
    summarize(&h, out);
    mg_hist_destroy(&h);
    return rc;
}

/* --- managed-ledger adds -------------------------------------------------------------------- */

typedef struct add_run {
    uv_loop_t *loop;
    ml_managed *ml;
    mg_buf *payload;
    long total;
    long window;
    long issued;
    long done;
    int error;
    bool finished;
    mg_hist hist;
    uint64_t *start_ns; /* per in-flight slot */
    long *slot_of;      /* free slots stack */
    long free_count;
} add_run;

typedef struct add_ctx {
    add_run *r;
    long slot;
} add_ctx;

static add_ctx *g_ctx;

static void pump(add_run *r);

static void add_done(int status, ml_position pos, int64_t index, void *arg)
{
    (void)pos;
    (void)index;
    add_ctx *c = arg;
    add_run *r = c->r;
    mg_hist_record(&r->hist, (uv_hrtime() - r->start_ns[c->slot]) / 1000);
    r->slot_of[r->free_count++] = c->slot;
    r->done++;
    if (status != MG_OK && r->error == MG_OK)
        r->error = status;
    if (r->done == r->total || r->error != MG_OK) {
        if (r->done == r->issued)
            r->finished = true;
        return;
    }
    pump(r);
}

static void pump(add_run *r)
{
    while (r->issued < r->total && r->issued - r->done < r->window && r->error == MG_OK) {
        long slot = r->slot_of[--r->free_count];
        r->start_ns[slot] = uv_hrtime();
        int rc = ml_add(r->ml, r->payload, 0, mg_buf_len(r->payload), 1, add_done, &g_ctx[slot]);
        if (rc == MG_EAGAIN) {
            r->free_count++;
            return;
        }
        if (rc != MG_OK) {
            r->free_count++;
            r->error = rc;
            if (r->done == r->issued)
                r->finished = true;
            return;
        }
        r->issued++;
    }
}

static int run_adds(uv_loop_t *loop, ml_managed *ml, mg_buf *payload, long total, long window,
                    lat_summary *lat, double *seconds)
{
    add_run r = { .loop = loop, .ml = ml, .payload = payload, .total = total, .window = window };
    if (mg_hist_init(&r.hist, PERF_HIST_BITS, PERF_HIST_MAX_US) != MG_OK)
        return MG_ENOMEM;
    r.start_ns = calloc((size_t)window, sizeof(*r.start_ns));
    r.slot_of = calloc((size_t)window, sizeof(*r.slot_of));
    g_ctx = calloc((size_t)window, sizeof(*g_ctx));
    if (r.start_ns == NULL || r.slot_of == NULL || g_ctx == NULL) {
        mg_hist_destroy(&r.hist);
        free(r.start_ns);
        free(r.slot_of);
        free(g_ctx);
        return MG_ENOMEM;
    }
    for (long i = 0; i < window; i++) {
        r.slot_of[i] = window - 1 - i;
        g_ctx[i] = (add_ctx){ &r, i };
    }
    r.free_count = window;
    uint64_t t0 = uv_hrtime();
    pump(&r);
    int rc = run_until(loop, &r.finished);
    *seconds = (double)(uv_hrtime() - t0) / 1e9;
    summarize(&r.hist, lat);
    mg_hist_destroy(&r.hist);
    free(r.start_ns);
    free(r.slot_of);
    free(g_ctx);
    g_ctx = NULL;
    return rc != MG_OK ? rc : r.error;
}

/* --- raw bookie adds ------------------------------------------------------------------------ */

typedef struct raw_run {
    bk_client *bk;
    const char *addr;
    mg_buf *payload;
    long total, done;
    int error;
    bool finished;
    uint64_t t0;
    mg_hist hist;
} raw_run;

static void raw_next(raw_run *r);

static void raw_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    (void)ledger_id;
    (void)entry_id;
    raw_run *r = arg;
    mg_hist_record(&r->hist, (uv_hrtime() - r->t0) / 1000);
    if (status != MG_OK) {
        r->error = status;
        r->finished = true;
        return;
    }
    if (++r->done == r->total) {
        r->finished = true;
        return;
    }
    raw_next(r);
}

static void raw_next(raw_run *r)
{
    r->t0 = uv_hrtime();
    int rc = bk_client_add(r->bk, r->addr, PERF_RAW_LEDGER_ID, r->done, r->payload, 0,
                           mg_buf_len(r->payload), raw_done, r);
    if (rc != MG_OK) {
        r->error = rc;
        r->finished = true;
    }
}

static int run_raw(uv_loop_t *loop, bkh *h, mg_buf *payload, long total, lat_summary *lat)
{
    raw_run r = {
        .bk = bkh_bk_client(h), .addr = bkh_bookie_addr(h, 0), .payload = payload, .total = total
    };
    if (mg_hist_init(&r.hist, PERF_HIST_BITS, PERF_HIST_MAX_US) != MG_OK)
        return MG_ENOMEM;
    raw_next(&r);
    int rc = run_until(loop, &r.finished);
    summarize(&r.hist, lat);
    mg_hist_destroy(&r.hist);
    return rc != MG_OK ? rc : r.error;
}

/* --- one configuration ---------------------------------------------------------------------- */

typedef struct open_res {
    bool done;
    int status;
    ml_managed *ml;
} open_res;

static void ml_opened(int status, ml_managed *ml, void *arg)
{
    open_res *o = arg;
    o->done = true;
    o->status = status;
    o->ml = ml;
}

static void ml_closed(int status, void *arg)
{
    open_res *o = arg;
    o->done = true;
    o->status = status;
}

static int run_config(const perf_opts *o, cfg_result *res)
{
    uv_loop_t loop;
    uv_timer_t guard;
    bkh *h = NULL;
    ml_env *env = NULL;
    int rc = uv_loop_init(&loop);
    if (rc != 0)
        return mg_err_from_uv(rc);
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, guard_tick, 5, 5);
    mg_buf *payload = mg_buf_new((size_t)o->size);
    if (payload == NULL)
        return MG_ENOMEM;
    for (long i = 0; i < o->size; i++)
        mg_buf_data(payload)[i] = (uint8_t)(i * 31 + 7);
    mg_buf_set_len(payload, (size_t)o->size);

    rc = bkh_start(&loop, res->bookies, &h);
    if (rc == MG_OK) {
        ml_env_opts eo = { .ensemble_size = res->ensemble,
                           .write_quorum = res->write_quorum,
                           .ack_quorum = res->ack_quorum };
        rc = ml_env_create(&loop, bkh_md_client(h), bkh_bk_client(h), &eo, &env);
    }
    open_res op = { 0 };
    if (rc == MG_OK) {
        char name[64];
        snprintf(name, sizeof(name), "perf/ns/persistent/add-%d", res->bookies);
        rc = ml_open(env, name, NULL, ml_opened, &op);
        if (rc == MG_OK)
            rc = run_until(&loop, &op.done);
        if (rc == MG_OK)
            rc = op.status;
    }
    double secs = 0;
    lat_summary warm;
    if (rc == MG_OK) /* warm-up: connections, first journal groups, caches */
        rc = run_adds(&loop, op.ml, payload, o->latency_count / 10 + 1, 1, &warm, &secs);
    if (rc == MG_OK)
        rc = run_adds(&loop, op.ml, payload, o->latency_count, 1, &res->w1, &secs);
    if (rc == MG_OK) {
        rc = run_adds(&loop, op.ml, payload, o->count, o->window, &res->windowed, &res->seconds);
        res->adds_per_s = (double)o->count / res->seconds;
        res->mib_per_s = res->adds_per_s * (double)o->size / (1024.0 * 1024.0);
    }
    if (rc == MG_OK)
        rc = run_raw(&loop, h, payload, o->latency_count, &res->raw);
    if (op.ml != NULL) {
        open_res cl = { 0 };
        if (ml_close(op.ml, ml_closed, &cl) == MG_OK)
            run_until(&loop, &cl.done);
    }
    if (env != NULL)
        ml_env_destroy(env);
    bkh_destroy(h);
    mg_buf_unref(payload);
    uv_close((uv_handle_t *)&guard, NULL);
    for (int i = 0; i < 1000 && uv_loop_alive(&loop); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    res->error = rc;
    return rc;
}

/* --- output --------------------------------------------------------------------------------- */

static void print_lat(const char *what, const lat_summary *s)
{
    printf("  %-26s n=%-7llu p50 %7.3f ms  p99 %7.3f ms  p99.9 %7.3f ms  max %7.3f ms\n", what,
           (unsigned long long)s->count, s->p50, s->p99, s->p999, s->max);
}

static void json_lat(FILE *f, const char *key, const lat_summary *s)
{
    fprintf(f,
            "\"%s\": {\"count\": %llu, \"p50\": %.4f, \"p99\": %.4f, \"p99_9\": %.4f, "
            "\"max\": %.4f, \"mean\": %.4f}",
            key, (unsigned long long)s->count, s->p50, s->p99, s->p999, s->max, s->mean);
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static int write_json(const perf_opts *o, const lat_summary *sync, int sync_rc,
                      const cfg_result *res, int n)
{
    FILE *f = fopen(o->json, "w");
    if (f == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", o->json, strerror(errno));
        return 1;
    }
    fprintf(f, "{\n  \"benchmark\": \"ml_add_latency\",\n");
    fprintf(f,
            "  \"options\": {\"count\": %ld, \"window\": %ld, \"entry_bytes\": %ld, "
            "\"latency_count\": %ld},\n",
            o->count, o->window, o->size, o->latency_count);
    fprintf(f, "  ");
    if (sync_rc == MG_OK)
        json_lat(f, "fdatasync_4k_ms", sync);
    else
        fprintf(f, "\"fdatasync_4k_ms\": null");
    fprintf(f, ",\n  \"configs\": [\n");
    for (int i = 0; i < n; i++) {
        const cfg_result *r = &res[i];
        fprintf(f,
                "    {\"bookies\": %d, \"ensemble_size\": %d, \"write_quorum\": %d, "
                "\"ack_quorum\": %d, \"error\": %s%s%s,\n      ",
                r->bookies, r->ensemble, r->write_quorum, r->ack_quorum, r->error ? "\"" : "",
                r->error ? mg_err_name(r->error) : "null", r->error ? "\"" : "");
        json_lat(f, "window_1_latency_ms", &r->w1);
        fprintf(f,
                ",\n      \"windowed\": {\"window\": %ld, \"seconds\": %.4f, "
                "\"adds_per_s\": %.1f, \"mib_per_s\": %.2f, ",
                o->window, r->seconds, r->adds_per_s, r->mib_per_s);
        json_lat(f, "latency_ms", &r->windowed);
        fprintf(f, "},\n      ");
        json_lat(f, "raw_bookie_window_1_latency_ms", &r->raw);
        fprintf(f,
                ",\n      \"ratios\": {\"window_1_p50_vs_fdatasync_p50\": %.3f, "
                "\"window_1_p50_vs_raw_bookie_p50\": %.3f}}%s\n",
                sync_rc == MG_OK ? ratio(r->w1.p50, sync->p50) : 0.0, ratio(r->w1.p50, r->raw.p50),
                i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    return 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    perf_opts o = { .count = 100000, .window = 256, .size = 1024, .latency_count = 5000 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = v == NULL;
        if (!bad && strcmp(a, "--count") == 0)
            bad = parse_long(v, 1, 100000000, &o.count);
        else if (!bad && strcmp(a, "--window") == 0)
            bad = parse_long(v, 1, PERF_WINDOW_MAX, &o.window);
        else if (!bad && strcmp(a, "--size") == 0)
            bad = parse_long(v, 1, 1024 * 1024, &o.size);
        else if (!bad && strcmp(a, "--latency-count") == 0)
            bad = parse_long(v, 1, 10000000, &o.latency_count);
        else if (!bad && strcmp(a, "--json") == 0)
            o.json = v;
        else
            bad = 1;
        if (bad) {
            fprintf(stderr,
                    "usage: %s [--count N] [--window W] [--size BYTES] [--latency-count N] "
                    "[--json FILE]\n",
                    argv[0]);
            return 2;
        }
        i++;
    }
    mg_log_set_level(MG_LOG_WARN);

    lat_summary sync = { 0 };
    int sync_rc = measure_fdatasync(&sync);
    printf("ml add benchmark: %ld adds of %ld bytes, window %ld; window-1 runs of %ld adds\n",
           o.count, o.size, o.window, o.latency_count);
    if (sync_rc == MG_OK)
        print_lat("4 KiB write+fdatasync", &sync);
    else
        printf("  fdatasync reference failed: %s\n", mg_strerror(sync_rc));

    cfg_result res[2] = {
        { .bookies = 1, .ensemble = 1, .write_quorum = 1, .ack_quorum = 1 },
        { .bookies = 3, .ensemble = 3, .write_quorum = 3, .ack_quorum = 2 },
    };
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        cfg_result *r = &res[i];
        int rc = run_config(&o, r);
        printf("%d bookie%s, %d/%d/%d:\n", r->bookies, r->bookies > 1 ? "s" : "", r->ensemble,
               r->write_quorum, r->ack_quorum);
        if (rc != MG_OK) {
            printf("  FAILED: %s\n", mg_strerror(rc));
            failed = 1;
            continue;
        }
        print_lat("window 1", &r->w1);
        char what[64];
        snprintf(what, sizeof(what), "window %ld", o.window);
        print_lat(what, &r->windowed);
        printf("  %-26s %.0f adds/s, %.1f MiB/s (%.2f s)\n", "throughput", r->adds_per_s,
               r->mib_per_s, r->seconds);
        print_lat("raw bookie add, window 1", &r->raw);
        printf("  %-26s vs fdatasync p50 %.2fx, vs raw bookie add p50 %.2fx\n",
               "window-1 p50 ratio", sync_rc == MG_OK ? ratio(r->w1.p50, sync.p50) : 0.0,
               ratio(r->w1.p50, r->raw.p50));
    }
    if (o.json != NULL && write_json(&o, &sync, sync_rc, res, 2) != 0)
        return 1;
    return failed;
}
