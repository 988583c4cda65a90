/*
 * `magnetar perf <workload>`: load generators that print a human summary and, with --json, a
 * machine-readable result (../shared/BENCHMARKS.md, perf/README.md). Built so far: `bookie`
 * (here), `produce` and `consume` (perf_pulsar.c); `catchup` and `chat` arrive with the modules
 * they measure.
 *
 * `magnetar perf bookie` measures one running bookie over its RPC (bookie/client.h):
 *
 *   1. adds: N entries of --entry-size bytes to one ledger, --inflight outstanding; each add is
 *      acknowledged after the bookie's journal fdatasync (group commit), so this is "fsync on".
 *      Per-add latency goes into an mg_hist (microseconds).
 *   2. settle (the bookie flushes its write cache into the entry logs), then `sync` and
 *      drop_caches, so the next phase reads from the disk; when caches cannot be dropped the
 *      read result is labelled "warm".
 *   3. cold sequential read: READ_RANGE requests over consecutive windows of --read-max-kb
 *      worth of entries, --read-inflight outstanding, until every entry was read once; a
 *      response cut short by a byte or count cap is continued from the entry after the last one
 *      returned. Every entry's length and pattern is checked.
 *   4. with --fio-dir: the disk's own limits from fio in the same run (sequential O_DIRECT read
 *      of 1 MiB at depth 16, run before phase 1 and again after phase 3, because the disk's
 *      speed drifts; 4 KiB writes each followed by fdatasync), and the ratios
 *      read MiB/s / mean fio read MiB/s (the goal is >= 0.8) and add MiB/s / fio fdatasync
 *      MiB/s.
 *
 * With --bookie-http the bookie's /metrics are read before and after phase 3 (a blocking
 * HTTP/1.0 GET), and the differences give its O_DIRECT reads, bytes per read and read-ahead use.
 * With --skip-add phases 1-2 are skipped and a ledger kept by an earlier run is read back.
 *
 * Entry contents: entry e is its id (8 bytes, little-endian) followed by a slice of a fixed
 * pseudo-random pattern starting at an offset derived from e, so each entry differs from its
 * neighbours, a misplaced entry is detected, and building or checking one is a memcpy/memcmp.
 *
 * fio runs through fio.h (popen, its JSON searched as text; a failure is reported, never a
 * guessed figure).
 *
 * Bounds: adds in flight <= --inflight, range reads in flight <= --read-inflight, every request
 * answered or failed within the client's timeouts (connect 5 s, request 10 s), fio capped by
 * --runtime and its output by FIO_OUTPUT_BYTES_MAX, the metrics page by PERF_METRICS_BYTES_MAX.
 * Threading: one thread, one libuv loop.
 */
#include "fio.h"
#include "tools.h"

#include "bookie/client.h"
#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/hist.h"
#include "common/log.h"
#include "tools/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* ---- options -------------------------------------------------------------------------------- */

typedef struct perf_bookie_opts {
    char *bookie;
    int64_t ledger_id;
    int64_t entry_count;
    int64_t entry_bytes;
    int64_t inflight;
    int64_t read_inflight;
    int64_t read_max_kb;
    int64_t settle_ms;
    bool drop_caches;
    bool delete_ledger;
    bool skip_add;
    char *fio_dir;
    int64_t fio_bytes;
    char *bookie_http;
    char *json_path;
    int log_level;
} perf_bookie_opts;

static const mg_opt perf_bookie_opt_table[] = {
    { .name = "bookie",
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_bookie_opts, bookie),
      .default_value = "127.0.0.1:3181",
      .metavar = "ADDR",
      .help = "host:port of the running bookie's RPC" },
    { .name = "ledger",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_bookie_opts, ledger_id),
      .default_value = "-1",
      .metavar = "ID",
      .help = "ledger to write; -1 derives one from the current time (microseconds since the "
              "epoch), so reruns against the same bookie do not collide",
      .min = -1,
      .max = INT64_MAX },
    { .name = "entries",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_bookie_opts, entry_count),
      .default_value = "1048576",
      .metavar = "N",
      .help = "entries to add, then read back",
      .min = 1,
      .max = 1ll << 36 },
    { .name = "entry-size",
      .type = MG_OPT_BYTES,
      .offset = offsetof(perf_bookie_opts, entry_bytes),
      .default_value = "1k",
      .metavar = "BYTES",
      .help = "size of each entry (512, 1k, 64k, 1M, ...)",
      .min = 1,
      .max = BK_ENTRY_BYTES_MAX },
    { .name = "inflight",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_bookie_opts, inflight),
      .default_value = "1000",
      .metavar = "N",
      .help = "adds outstanding at once",
      .min = 1,
      .max = 65536 },
    { .name = "read-inflight",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_bookie_opts, read_inflight),
      .default_value = "16",
      .metavar = "N",
      .help = "range reads outstanding at once (the default, 16 of 1 MiB, is the shape of "
              "fio's read: 1 MiB blocks, depth 16)",
      .min = 1,
      .max = 1024 },
    { .name = "read-max-kb",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_bookie_opts, read_max_kb),
      .default_value = "1024",
      .metavar = "KB",
      .help = "max_bytes of one READ_RANGE in KiB; each request asks for that many bytes' worth "
              "of entries",
      .min = 1,
      .max = BK_RANGE_BYTES_MAX / 1024 },
    { .name = "settle",
      .type = MG_OPT_DURATION,
      .offset = offsetof(perf_bookie_opts, settle_ms),
      .default_value = "5s",
      .metavar = "DURATION",
      .help = "wait after the adds so the bookie flushes its write cache to the entry logs",
      .min = 0,
      .max = 3600000 },
    { .name = "drop-caches",
      .type = MG_OPT_BOOL,
      .offset = offsetof(perf_bookie_opts, drop_caches),
      .default_value = "true",
      .help = "sync and write 3 to /proc/sys/vm/drop_caches before reading (needs root; "
              "otherwise, or with --no-drop-caches, the read is reported as warm)" },
    { .name = "delete-ledger",
      .type = MG_OPT_BOOL,
      .offset = offsetof(perf_bookie_opts, delete_ledger),
      .default_value = "true",
      .help = "delete the ledger at the end (--no-delete-ledger keeps it); never done with "
              "--skip-add" },
    { .name = "skip-add",
      .type = MG_OPT_BOOL,
      .offset = offsetof(perf_bookie_opts, skip_add),
      .default_value = "false",
      .help = "do not add: read back a ledger that an earlier run kept (--no-delete-ledger); "
              "give its --ledger, --entries and --entry-size. For comparing read settings on "
              "the same data" },
    { .name = "fio-dir",
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_bookie_opts, fio_dir),
      .default_value = NULL,
      .metavar = "DIR",
      .help = "also run fio in DIR (the disk of the bookie's ledger dir) and report the ratios; "
              "fio's files are deleted afterwards" },
    { .name = "fio-size",
      .type = MG_OPT_BYTES,
      .offset = offsetof(perf_bookie_opts, fio_bytes),
      .default_value = "1G",
      .metavar = "SIZE",
      .help = "size of fio's sequential read file",
      .min = 1 << 20,
      .max = 1ll << 40 },
    { .name = "bookie-http",
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_bookie_opts, bookie_http),
      .default_value = NULL,
      .metavar = "ADDR",
      .help = "host:port of the bookie's HTTP server: read its /metrics around the read phase "
              "to report bytes per disk read and read-ahead use" },
    { .name = "json",
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_bookie_opts, json_path),
      .default_value = NULL,
      .metavar = "FILE",
      .help = "also write every figure, the options and the ratios as a JSON object to FILE" },
    MG_TOOL_OPT_LOG_LEVEL(perf_bookie_opts, log_level),
};

static const mg_cmd_spec perf_bookie_spec = {
    .name = "magnetar perf bookie",
    .usage = "[options]",
    .summary = "Benchmarks a running bookie: adds entries with fsync on (pipelined), lets the "
               "bookie flush, drops the page cache, reads everything back with range reads "
               "(checking every byte), and with --fio-dir measures the disk with fio in the "
               "same run and reports the ratios. Prints a summary; --json writes the figures.",
    .opts = perf_bookie_opt_table,
    .opt_count = sizeof(perf_bookie_opt_table) / sizeof(perf_bookie_opt_table[0]),
    .positional_min = 0,
    .positional_max = 0,
};

/* ---- results -------------------------------------------------------------------------------- */

typedef struct disk_metrics {
    bool ok;
    double reads;                    /* O_DIRECT reads of entry logs */
    double read_bytes;               /* their bytes */
    double ra_issued;                /* read-ahead bytes read into the read cache */
    double ra_used;                  /* read-ahead bytes served */
    double src_read_cache, src_disk; /* read requests by the slowest source they used */
    char error[256];
} disk_metrics;

typedef struct phase_stats {
    uint64_t entries;
    uint64_t bytes;
    uint64_t requests;
    double seconds;
    mg_hist lat_us;
} phase_stats;

/* ---- the run -------------------------------------------------------------------------------- */

typedef struct pb_run pb_run;

/* One outstanding request: an add (entry_id) or a range read (first..last). */
typedef struct pb_slot {
    pb_run *run;
    int64_t first, last;
    uint64_t start_ns;
    struct pb_slot *next_free;
} pb_slot;

struct pb_run {
    uv_loop_t loop;
    uv_timer_t timer;
    bk_client *client;
    const perf_bookie_opts *o;
    int64_t ledger_id;
    size_t entry_bytes;
    uint8_t *pattern; /* PERF_PATTERN_SPAN_BYTES + entry_bytes */

    int status;      /* first failure; MG_OK while all is well */
    char error[512]; /* its description */
    bool done;       /* the current phase (or request) finished */
    uint64_t phase_start_ns;

    pb_slot *slots; /* max(inflight, read_inflight) */
    pb_slot *free_slots;
    uint32_t inflight, inflight_max;
    int64_t next;  /* next entry to add, or first entry of the next read window */
    int64_t probe; /* a probe's answer: a status (health, delete) or the last entry (read_lac) */

    int64_t window_entries;
    uint32_t read_max_bytes;
    uint64_t mismatches;

    phase_stats add, read;
    phase_stats *cur; /* the phase in progress, for the progress lines */
    const char *cur_name;
};

static double pb_mib(double bytes)
{
    return bytes / (1024.0 * 1024.0);
}

static void pb_fail(pb_run *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pb_fail(pb_run *r, int status, const char *fmt, ...)
{
    if (r->status != MG_OK)
        return; /* keep the first */
    r->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

/* Runs the loop until r->done. Every request completes within the client's timeouts and the
 * progress timer only runs while requests do, so this is bounded. */
static void pb_wait(pb_run *r)
{
    while (!r->done) {
        if (uv_run(&r->loop, UV_RUN_ONCE) == 0 && !r->done) {
            pb_fail(r, MG_ESTATE, "internal error: nothing left to wait for");
            break;
        }
    }
}

/* ---- entry pattern -------------------------------------------------------------------------- */

static int pb_pattern_make(pb_run *r)
{
    size_t n = PERF_PATTERN_SPAN_BYTES + r->entry_bytes;
    r->pattern = mg_malloc(n);
    if (r->pattern == NULL)
        return MG_ENOMEM;
    uint64_t x = 0x9E3779B97F4A7C15ull; /* xorshift64*: fixed seed, the same pattern every run */
    for (size_t i = 0; i < n; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r->pattern[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
    }
    return MG_OK;
}

/* Entry e = 8 id bytes (little-endian) + pattern[off(e) + 8, off(e) + size), cut at size. */
static size_t pb_pattern_off(int64_t entry_id)
{
    return (size_t)(((uint64_t)entry_id * 8191u) % PERF_PATTERN_SPAN_BYTES);
}

static void pb_entry_fill(const pb_run *r, int64_t entry_id, uint8_t *dst)
{
    size_t head = r->entry_bytes < 8 ? r->entry_bytes : 8;
    for (size_t i = 0; i < head; i++)
        dst[i] = (uint8_t)((uint64_t)entry_id >> (8 * i));
    if (r->entry_bytes > 8)
        memcpy(dst + 8, r->pattern + pb_pattern_off(entry_id) + 8, r->entry_bytes - 8);
}

static bool pb_entry_check(const pb_run *r, int64_t entry_id, const uint8_t *p, size_t len)
{
    if (len != r->entry_bytes)
        return false;
    size_t head = len < 8 ? len : 8;
    for (size_t i = 0; i < head; i++)
        if (p[i] != (uint8_t)((uint64_t)entry_id >> (8 * i)))
            return false;
    return len <= 8 || memcmp(p + 8, r->pattern + pb_pattern_off(entry_id) + 8, len - 8) == 0;
}

/* ---- slots and progress --------------------------------------------------------------------- */

static pb_slot *pb_slot_get(pb_run *r)
{
    pb_slot *s = r->free_slots;
    MG_ASSERT(s != NULL);
    r->free_slots = s->next_free;
    r->inflight++;
    return s;
}

static void pb_slot_put(pb_run *r, pb_slot *s)
{
    MG_ASSERT(r->inflight > 0);
    s->next_free = r->free_slots;
    r->free_slots = s;
    r->inflight--;
}

static void pb_progress(uv_timer_t *t)
{
    pb_run *r = t->data;
    double s = (double)(mg_clock_mono_ns() - r->phase_start_ns) / 1e9;
    const phase_stats *ph = r->cur;
    MG_INFO("perf bookie: %s %" PRIu64 "/%" PRId64 " entries (%.0f %%), %.1f MiB/s so far",
            r->cur_name, ph->entries, r->o->entry_count,
            100.0 * (double)ph->entries / (double)r->o->entry_count,
            s > 0 ? pb_mib((double)ph->bytes) / s : 0.0);
}

static void pb_phase_begin(pb_run *r, phase_stats *ph, const char *name)
{
    r->cur = ph;
    r->cur_name = name;
    r->done = false;
    r->next = 0;
    r->phase_start_ns = mg_clock_mono_ns();
    uv_timer_start(&r->timer, pb_progress, PERF_PROGRESS_MS, PERF_PROGRESS_MS);
}

static double pb_phase_end(pb_run *r)
{
    uv_timer_stop(&r->timer);
    return (double)(mg_clock_mono_ns() - r->phase_start_ns) / 1e9;
}

/* ---- probes: health, read_lac, delete ------------------------------------------------------- */

static void pb_done_cb(int status, void *arg)
{
    pb_run *r = arg;
    r->probe = status;
    r->done = true;
}

static void pb_lac_cb(int status, int64_t last_entry_id, void *arg)
{
    pb_run *r = arg;
    r->probe = status == MG_OK ? last_entry_id : -1;
    if (status != MG_OK && status != MG_ENOTFOUND)
        pb_fail(r, status, "READ_LAC of ledger %" PRId64 ": %s", r->ledger_id, mg_strerror(status));
    r->done = true;
}

/* The bookie answers, is writable, and does not hold the ledger yet. */
static int pb_probe(pb_run *r)
{
    const char *addr = r->o->bookie;
    r->done = false;
    int rc = bk_client_health(r->client, addr, pb_done_cb, r);
    if (rc != MG_OK) {
        fprintf(stderr, "magnetar perf bookie: bad bookie address '%s': %s\n", addr,
                mg_strerror(rc));
        return rc;
    }
    pb_wait(r);
    if (r->probe != MG_OK) {
        fprintf(stderr, "magnetar perf bookie: cannot use the bookie at %s: %s%s\n", addr,
                mg_strerror((int)r->probe),
                r->probe == MG_ECONNECTION || r->probe == MG_ETIMEDOUT
                    ? " (is `magnetar bookie` running there? see --bookie)"
                    : "");
        return (int)r->probe;
    }
    r->done = false;
    rc = bk_client_read_lac(r->client, addr, r->ledger_id, pb_lac_cb, r);
    if (rc == MG_OK)
        pb_wait(r);
    if (rc != MG_OK || r->status != MG_OK) {
        fprintf(stderr, "magnetar perf bookie: %s\n", rc != MG_OK ? mg_strerror(rc) : r->error);
        return rc != MG_OK ? rc : r->status;
    }
    if (r->o->skip_add) {
        if (r->probe < r->o->entry_count - 1) {
            fprintf(stderr,
                    "magnetar perf bookie: --skip-add: ledger %" PRId64 " holds %" PRId64
                    " entries on %s, fewer than --entries %" PRId64 "\n",
                    r->ledger_id, r->probe + 1, addr, r->o->entry_count);
            return MG_ENOTFOUND;
        }
        return MG_OK;
    }
    if (r->probe >= 0) {
        fprintf(stderr,
                "magnetar perf bookie: ledger %" PRId64 " already holds entries 0..%" PRId64
                " on %s; choose another --ledger\n",
                r->ledger_id, r->probe, addr);
        return MG_EEXIST;
    }
    return MG_OK;
}

static void pb_delete_ledger(pb_run *r)
{
    r->done = false;
    int rc = bk_client_delete(r->client, r->o->bookie, r->ledger_id, pb_done_cb, r);
    if (rc == MG_OK) {
        pb_wait(r);
        rc = (int)r->probe;
    }
    if (rc != MG_OK)
        MG_WARN("perf bookie: could not delete ledger %" PRId64 ": %s", r->ledger_id,
                mg_strerror(rc));
}

/* ---- phase 1: adds -------------------------------------------------------------------------- */

static void pb_add_issue(pb_run *r);

static void pb_add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    pb_slot *s = arg;
    pb_run *r = s->run;
    (void)ledger_id;
    if (status != MG_OK) {
        pb_fail(r, status, "ADD of ledger %" PRId64 " entry %" PRId64 " failed: %s", r->ledger_id,
                entry_id, mg_strerror(status));
    } else {
        mg_hist_record(&r->add.lat_us, (mg_clock_mono_ns() - s->start_ns) / 1000u);
        r->add.entries++;
        r->add.bytes += r->entry_bytes;
        r->add.requests++;
    }
    pb_slot_put(r, s);
    pb_add_issue(r);
}

static void pb_add_issue(pb_run *r)
{
    while (r->status == MG_OK && r->inflight < r->inflight_max && r->next < r->o->entry_count) {
        mg_buf *b = mg_buf_new(r->entry_bytes);
        if (b == NULL) {
            pb_fail(r, MG_ENOMEM, "out of memory for an entry");
            break;
        }
        pb_entry_fill(r, r->next, mg_buf_data(b));
        mg_buf_set_len(b, r->entry_bytes);
        pb_slot *s = pb_slot_get(r);
        s->first = s->last = r->next;
        s->start_ns = mg_clock_mono_ns();
        int rc = bk_client_add(r->client, r->o->bookie, r->ledger_id, r->next, b, 0, r->entry_bytes,
                               pb_add_done, s);
        mg_buf_unref(b); /* the client holds its own reference until the bytes are sent */
        if (rc != MG_OK) {
            pb_slot_put(r, s);
            pb_fail(r, rc, "cannot send ADD of entry %" PRId64 ": %s", r->next, mg_strerror(rc));
            break;
        }
        r->next++;
    }
    if (r->inflight == 0 && (r->status != MG_OK || r->next >= r->o->entry_count))
        r->done = true;
}

static int pb_phase_add(pb_run *r)
{
    r->inflight_max = (uint32_t)r->o->inflight;
    pb_phase_begin(r, &r->add, "add");
    pb_add_issue(r);
    pb_wait(r);
    r->add.seconds = pb_phase_end(r);
    return r->status;
}

/* ---- phase 2: settle, drop caches ----------------------------------------------------------- */

static void pb_settle_done(uv_timer_t *t)
{
    pb_run *r = t->data;
    r->done = true;
}

static void pb_settle(pb_run *r)
{
    if (r->o->settle_ms <= 0)
        return;
    MG_INFO("perf bookie: settling for %" PRId64 " ms (the bookie flushes its write cache)",
            r->o->settle_ms);
    r->done = false;
    uv_timer_start(&r->timer, pb_settle_done, (uint64_t)r->o->settle_ms, 0);
    pb_wait(r);
}

/* sync, then "3" into /proc/sys/vm/drop_caches. Returns true when the caches were dropped; else
 * why in why. */

/* ---- phase 3: range reads ------------------------------------------------------------------- */

static void pb_read_issue(pb_run *r);

static int pb_read_send(pb_run *r, pb_slot *s);

static void pb_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    pb_slot *s = arg;
    pb_run *r = s->run;
    mg_hist_record(&r->read.lat_us, (mg_clock_mono_ns() - s->start_ns) / 1000u);
    if (status != MG_OK || count == 0) {
        pb_fail(r, status != MG_OK ? status : MG_EPROTO,
                "READ_RANGE of ledger %" PRId64 " entries %" PRId64 "..%" PRId64 ": %s",
                r->ledger_id, s->first, s->last,
                status != MG_OK ? mg_strerror(status) : "no entries");
        pb_slot_put(r, s);
        pb_read_issue(r);
        return;
    }
    r->read.requests++;
    if (count > (size_t)(s->last - s->first + 1)) {
        pb_fail(r, MG_EPROTO, "READ_RANGE %" PRId64 "..%" PRId64 " answered %zu entries", s->first,
                s->last, count);
        count = (size_t)(s->last - s->first + 1);
    }
    for (size_t i = 0; i < count; i++) {
        const bk_entry *e = &entries[i];
        int64_t want = s->first + (int64_t)i;
        const uint8_t *p = mg_buf_data(e->buf) + e->off;
        if (e->entry_id != want || !pb_entry_check(r, want, p, e->len)) {
            if (r->mismatches < PERF_MISMATCH_REPORTS_MAX)
                MG_ERROR("perf bookie: entry %" PRId64 " does not match what was written (got "
                         "entry id %" PRId64 ", %zu bytes, want %zu bytes)",
                         want, e->entry_id, e->len, r->entry_bytes);
            r->mismatches++;
        }
        r->read.bytes += e->len;
    }
    r->read.entries += count;
    if (r->status == MG_OK && s->first + (int64_t)count <= s->last) {
        /* cut short by the byte or entry cap: ask for the rest of this window at once */
        s->first += (int64_t)count;
        int rc = pb_read_send(r, s);
        if (rc == MG_OK)
            return;
        pb_fail(r, rc, "cannot send READ_RANGE: %s", mg_strerror(rc));
    }
    pb_slot_put(r, s);
    pb_read_issue(r);
}

static int pb_read_send(pb_run *r, pb_slot *s)
{
    s->start_ns = mg_clock_mono_ns();
    return bk_client_read_range(r->client, r->o->bookie, r->ledger_id, s->first, s->last,
                                r->read_max_bytes, pb_read_done, s);
}

static void pb_read_issue(pb_run *r)
{
    while (r->status == MG_OK && r->inflight < r->inflight_max && r->next < r->o->entry_count) {
        pb_slot *s = pb_slot_get(r);
        s->first = r->next;
        s->last = r->next + r->window_entries - 1;
        if (s->last >= r->o->entry_count)
            s->last = r->o->entry_count - 1;
        int rc = pb_read_send(r, s);
        if (rc != MG_OK) {
            pb_slot_put(r, s);
            pb_fail(r, rc, "cannot send READ_RANGE: %s", mg_strerror(rc));
            break;
        }
        r->next = s->last + 1;
    }
    if (r->inflight == 0 && (r->status != MG_OK || r->next >= r->o->entry_count))
        r->done = true;
}

static int pb_phase_read(pb_run *r)
{
    r->inflight_max = (uint32_t)r->o->read_inflight;
    r->read_max_bytes = (uint32_t)(r->o->read_max_kb * 1024);
    int64_t w = (int64_t)r->read_max_bytes / (int64_t)r->entry_bytes;
    if (w < 1)
        w = 1;
    if (w > (int64_t)BK_RANGE_ENTRIES_MAX)
        w = BK_RANGE_ENTRIES_MAX;
    r->window_entries = w;
    pb_phase_begin(r, &r->read, "read");
    pb_read_issue(r);
    pb_wait(r);
    r->read.seconds = pb_phase_end(r);
    return r->status;
}

/* ---- /metrics of the bookie ----------------------------------------------------------------- */

/* GET http://addr/metrics (HTTP/1.0, so the server closes when done) into a malloc'd,
 * NUL-terminated body. Bounded by PERF_METRICS_TIMEOUT_S per socket operation and
 * PERF_METRICS_BYTES_MAX. */
static int pb_http_get_metrics(const char *addr, char **body_out, char *why, size_t why_size)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(why, why_size, "'%s' is not host:port", addr);
        return MG_EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0) {
        snprintf(why, why_size, "cannot resolve %s: %s", addr, gai_strerror(g));
        return MG_EINVAL;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = { .tv_sec = PERF_METRICS_TIMEOUT_S };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* also bounds connect() */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        snprintf(why, why_size, "cannot connect to %s: %s", addr, strerror(errno));
        return MG_ECONNECTION;
    }
    char req[512];
    int n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr);
    if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) {
        snprintf(why, why_size, "cannot send the request to %s", addr);
        close(fd);
        return MG_ECONNECTION;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = mg_malloc(cap + 1);
    int rc = buf ? MG_OK : MG_ENOMEM;
    while (rc == MG_OK) {
        if (len == cap) {
            if (cap >= PERF_METRICS_BYTES_MAX) {
                rc = MG_ELIMIT;
                break;
            }
            char *nb = mg_realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? MG_ETIMEDOUT : mg_err_from_errno(errno);
        else if (got == 0)
            break;
        else
            len += (size_t)got;
    }
    close(fd);
    if (rc != MG_OK) {
        snprintf(why, why_size, "reading http://%s/metrics: %s", addr, mg_strerror(rc));
        mg_free(buf);
        return rc;
    }
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || strlen(buf) < 12 || strncmp(buf + 9, "200", 3) != 0 ||
        body == NULL) {
        snprintf(why, why_size, "http://%s/metrics did not answer 200", addr);
        mg_free(buf);
        return MG_EPROTO;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    *body_out = buf;
    return MG_OK;
}

/* The value of the sample whose name and labels are exactly `series` (a line "series value"). */
static bool pb_metric(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            char *end;
            double v = strtod(p + n + 1, &end);
            if (end == p + n + 1)
                return false;
            *out = v;
            return true;
        }
    }
    return false;
}

static int pb_disk_metrics(const char *addr, disk_metrics *m)
{
    memset(m, 0, sizeof(*m));
    char *text = NULL;
    int rc = pb_http_get_metrics(addr, &text, m->error, sizeof(m->error));
    if (rc != MG_OK)
        return rc;
    bool ok = pb_metric(text, "bookie_disk_read_size_bytes_count", &m->reads) &&
              pb_metric(text, "bookie_disk_read_size_bytes_sum", &m->read_bytes);
    /* read-ahead and per-source counts exist once used; absent means 0 */
    pb_metric(text, "bookie_readahead_bytes_total{state=\"issued\"}", &m->ra_issued);
    pb_metric(text, "bookie_readahead_bytes_total{state=\"used\"}", &m->ra_used);
    pb_metric(text, "bookie_read_latency_ms_count{source=\"read_cache\"}", &m->src_read_cache);
    pb_metric(text, "bookie_read_latency_ms_count{source=\"disk\"}", &m->src_disk);
    mg_free(text);
    if (!ok) {
        snprintf(m->error, sizeof(m->error), "http://%s/metrics has no bookie_disk_read_size_bytes",
                 addr);
        return MG_ENOTFOUND;
    }
    m->ok = true;
    return MG_OK;
}

/* ---- fio ------------------------------------------------------------------------------------ */

/* ---- report --------------------------------------------------------------------------------- */

typedef struct pb_report {
    const perf_bookie_opts *o;
    int64_t ledger_id;
    const phase_stats *add, *read;
    uint64_t mismatches;
    bool caches_dropped;
    char drop_why[256]; /* why not, "" when dropped */
    bool fio_ran;
    /* fio's sequential read runs before the adds and after the read phase: the disk's speed
     * drifts on these machines (BENCHMARKS.md), and the ratio uses the mean of the two */
    mg_fio_result seq_before, seq, sync;
    bool metrics_ran;
    disk_metrics dm; /* deltas over the read phase */
    char started[32];
} pb_report;

static double pb_rate(double n, double seconds)
{
    return seconds > 0 ? n / seconds : 0.0;
}

/* fio's sequential read in bytes/s: the mean of the runs before and after the read phase that
 * succeeded; 0 when neither did. */
static double pb_fio_seq_bw(const pb_report *p)
{
    int n = p->seq_before.ok + p->seq.ok;
    if (n == 0)
        return 0.0;
    return ((p->seq_before.ok ? p->seq_before.bw_bytes_per_s : 0.0) +
            (p->seq.ok ? p->seq.bw_bytes_per_s : 0.0)) /
           n;
}

static double pb_ms(const mg_hist *h, double p)
{
    return (double)mg_hist_percentile(h, p) / 1000.0;
}

static void pb_print_summary(const pb_report *p, FILE *out)
{
    const perf_bookie_opts *o = p->o;
    double add_mibs = pb_mib(pb_rate((double)p->add->bytes, p->add->seconds));
    double read_mibs = pb_mib(pb_rate((double)p->read->bytes, p->read->seconds));
    fprintf(out,
            "magnetar perf bookie: %s, ledger %" PRId64 ", %" PRId64 " entries x %" PRId64
            " B = %.1f MiB\n",
            o->bookie, p->ledger_id, o->entry_count, o->entry_bytes,
            pb_mib((double)o->entry_count * (double)o->entry_bytes));
    if (o->skip_add)
        fprintf(out, "  %-22s skipped (--skip-add: reading a ledger written earlier)\n",
                "add (fsync on)");
    else
        fprintf(out,
                "  %-22s %10.0f adds/s  %8.1f MiB/s   latency ms p50 %.2f  p99 %.2f  p99.9 %.2f  "
                "max %.2f   (inflight %" PRId64 ")\n",
                "add (fsync on)", pb_rate((double)p->add->entries, p->add->seconds), add_mibs,
                pb_ms(&p->add->lat_us, 50), pb_ms(&p->add->lat_us, 99),
                pb_ms(&p->add->lat_us, 99.9), (double)mg_hist_max(&p->add->lat_us) / 1000.0,
                o->inflight);
    char label[64];
    snprintf(label, sizeof(label), "read (%s)", p->caches_dropped ? "cold" : "WARM");
    fprintf(
        out,
        "  %-22s %10.0f entries/s %6.1f MiB/s   %" PRIu64 " requests, %.0f KiB/request, "
        "latency ms p50 %.2f  p99 %.2f   (read-inflight %" PRId64 ", read-max-kb %" PRId64 ")\n",
        label, pb_rate((double)p->read->entries, p->read->seconds), read_mibs, p->read->requests,
        p->read->requests ? (double)p->read->bytes / (double)p->read->requests / 1024.0 : 0.0,
        pb_ms(&p->read->lat_us, 50), pb_ms(&p->read->lat_us, 99), o->read_inflight, o->read_max_kb);
    if (!p->caches_dropped)
        fprintf(out, "  %-22s %s\n", "  (warm: caches kept)", p->drop_why);
    if (p->metrics_ran) {
        if (p->dm.ok)
            fprintf(out,
                    "  %-22s %10.0f reads  %8.0f KiB/read    read-ahead %.1f MiB issued, %.1f MiB "
                    "used; requests served by disk %.0f, read cache %.0f\n",
                    "bookie disk reads", p->dm.reads,
                    p->dm.reads > 0 ? p->dm.read_bytes / p->dm.reads / 1024.0 : 0.0,
                    pb_mib(p->dm.ra_issued), pb_mib(p->dm.ra_used), p->dm.src_disk,
                    p->dm.src_read_cache);
        else
            fprintf(out, "  %-22s unavailable: %s\n", "bookie disk reads", p->dm.error);
    }
    if (!p->fio_ran)
        return;
    const mg_fio_result *seqs[2] = { &p->seq_before, &p->seq };
    static const char *const seq_names[2] = { "fio seq read before", "fio seq read after" };
    for (int i = 0; i < 2; i++) {
        if (seqs[i]->ok)
            fprintf(out,
                    "  %-22s %10.0f IOPS    %8.1f MiB/s   clat mean %.2f ms   (1 MiB O_DIRECT, "
                    "libaio depth 16, %.0f MiB)\n",
                    seq_names[i], seqs[i]->iops, pb_mib(seqs[i]->bw_bytes_per_s),
                    seqs[i]->clat_ns_mean / 1e6, pb_mib((double)o->fio_bytes));
        else
            fprintf(out, "  %-22s unavailable: %s\n", seq_names[i], seqs[i]->error);
    }
    if (p->sync.ok)
        fprintf(out,
                "  %-22s %10.0f IOPS    %8.1f MiB/s   clat mean %.3f ms, fdatasync mean %.3f ms"
                "   (4 KiB writes, 64 MiB)\n",
                "fio 4k write+fdatasync", p->sync.iops, pb_mib(p->sync.bw_bytes_per_s),
                p->sync.clat_ns_mean / 1e6,
                p->sync.sync_ns_mean >= 0 ? p->sync.sync_ns_mean / 1e6 : 0.0);
    else
        fprintf(out, "  %-22s unavailable: %s\n", "fio 4k write+fdatasync", p->sync.error);
    if (pb_fio_seq_bw(p) > 0)
        fprintf(out, "  %-22s %10.2f        (goal >= 0.80; fio: %.1f MiB/s, the mean of %s)%s\n",
                "read / fio seq read", read_mibs / pb_mib(pb_fio_seq_bw(p)),
                pb_mib(pb_fio_seq_bw(p)),
                p->seq_before.ok && p->seq.ok ? "before and after" : "the run that worked",
                p->caches_dropped ? "" : "  WARM: page cache not dropped");
    if (p->sync.ok && !o->skip_add)
        fprintf(out,
                "  %-22s %10.1fx MiB/s  %.1fx ops/s   (group commit: one fdatasync covers many "
                "adds; fio pays one per 4 KiB)\n",
                "add / fio fdatasync", add_mibs / pb_mib(p->sync.bw_bytes_per_s),
                pb_rate((double)p->add->entries, p->add->seconds) / p->sync.iops);
}

static void pb_json_string(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void pb_json_latency(FILE *f, const mg_hist *h)
{
    fprintf(f,
            "{\"p50\": %.3f, \"p99\": %.3f, \"p99_9\": %.3f, \"max\": %.3f, \"mean\": %.3f, "
            "\"count\": %" PRIu64 "}",
            pb_ms(h, 50), pb_ms(h, 99), pb_ms(h, 99.9), (double)mg_hist_max(h) / 1000.0,
            mg_hist_mean(h) / 1000.0, mg_hist_count(h));
}

static void pb_json_fio(FILE *f, const mg_fio_result *r)
{
    if (!r->ok) {
        fputs("{\"available\": false, \"error\": ", f);
        pb_json_string(f, r->error);
        fputs("}", f);
        return;
    }
    fprintf(f,
            "{\"available\": true, \"bw_bytes_per_s\": %.0f, \"mib_per_s\": %.3f, \"iops\": %.3f, "
            "\"clat_mean_ms\": %.6f",
            r->bw_bytes_per_s, pb_mib(r->bw_bytes_per_s), r->iops, r->clat_ns_mean / 1e6);
    if (r->sync_ns_mean >= 0)
        fprintf(f, ", \"fdatasync_mean_ms\": %.6f", r->sync_ns_mean / 1e6);
    fputs("}", f);
}

static int pb_write_json(const pb_report *p, const char *path)
{
    const perf_bookie_opts *o = p->o;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "magnetar perf bookie: cannot write %s: %s\n", path, strerror(errno));
        return MG_EIO;
    }
    double add_mibs = pb_mib(pb_rate((double)p->add->bytes, p->add->seconds));
    double read_mibs = pb_mib(pb_rate((double)p->read->bytes, p->read->seconds));
    fputs("{\n  \"benchmark\": \"bookie\",\n  \"magnetar_version\": ", f);
    pb_json_string(f, MG_VERSION);
    fputs(",\n  \"started\": ", f);
    pb_json_string(f, p->started);
    fputs(",\n  \"options\": {\"bookie\": ", f);
    pb_json_string(f, o->bookie);
    fprintf(f,
            ", \"ledger\": %" PRId64 ", \"entries\": %" PRId64 ", \"entry_size_bytes\": %" PRId64
            ", \"inflight\": %" PRId64 ", \"read_inflight\": %" PRId64 ", \"read_max_kb\": %" PRId64
            ", \"settle_ms\": %" PRId64 ", \"drop_caches\": %s, \"skip_add\": %s, \"fio_dir\": ",
            p->ledger_id, o->entry_count, o->entry_bytes, o->inflight, o->read_inflight,
            o->read_max_kb, o->settle_ms, o->drop_caches ? "true" : "false",
            o->skip_add ? "true" : "false");
    pb_json_string(f, o->fio_dir);
    fprintf(f, ", \"fio_size_bytes\": %" PRId64 "},\n", o->fio_bytes);
    if (o->skip_add) {
        fputs("  \"add\": null,\n", f);
    } else {
        fprintf(f,
                "  \"add\": {\"entries\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"seconds\": %.3f, "
                "\"adds_per_s\": %.1f, \"mib_per_s\": %.3f, \"fsync\": true, \"latency_ms\": ",
                p->add->entries, p->add->bytes, p->add->seconds,
                pb_rate((double)p->add->entries, p->add->seconds), add_mibs);
        pb_json_latency(f, &p->add->lat_us);
        fputs("},\n", f);
    }
    fprintf(f, "  \"caches_dropped\": %s,\n  \"drop_caches_error\": ",
            p->caches_dropped ? "true" : "false");
    pb_json_string(f, p->caches_dropped ? NULL : p->drop_why);
    fprintf(f,
            ",\n  \"read\": {\"state\": \"%s\", \"entries\": %" PRIu64 ", \"bytes\": %" PRIu64
            ", \"seconds\": %.3f, \"mib_per_s\": %.3f, \"entries_per_s\": %.1f, \"requests\": "
            "%" PRIu64 ", \"bytes_per_request\": %.1f, \"mismatches\": %" PRIu64
            ", \"latency_ms\": ",
            p->caches_dropped ? "cold" : "warm", p->read->entries, p->read->bytes, p->read->seconds,
            read_mibs, pb_rate((double)p->read->entries, p->read->seconds), p->read->requests,
            p->read->requests ? (double)p->read->bytes / (double)p->read->requests : 0.0,
            p->mismatches);
    pb_json_latency(f, &p->read->lat_us);
    fputs("},\n  \"bookie_disk\": ", f);
    if (!p->metrics_ran) {
        fputs("null", f);
    } else if (!p->dm.ok) {
        fputs("{\"available\": false, \"error\": ", f);
        pb_json_string(f, p->dm.error);
        fputs("}", f);
    } else {
        fprintf(f,
                "{\"available\": true, \"disk_reads\": %.0f, \"disk_read_bytes\": %.0f, "
                "\"bytes_per_disk_read\": %.1f, \"readahead_issued_bytes\": %.0f, "
                "\"readahead_used_bytes\": %.0f, \"requests_from_disk\": %.0f, "
                "\"requests_from_read_cache\": %.0f}",
                p->dm.reads, p->dm.read_bytes,
                p->dm.reads > 0 ? p->dm.read_bytes / p->dm.reads : 0.0, p->dm.ra_issued,
                p->dm.ra_used, p->dm.src_disk, p->dm.src_read_cache);
    }
    fputs(",\n  \"fio\": ", f);
    if (!p->fio_ran) {
        fputs("null", f);
    } else {
        fputs("{\"seqread_before\": ", f);
        pb_json_fio(f, &p->seq_before);
        fputs(", \"seqread\": ", f);
        pb_json_fio(f, &p->seq);
        fputs(", \"seqread_mean_mib_per_s\": ", f);
        if (pb_fio_seq_bw(p) > 0)
            fprintf(f, "%.2f", pb_mib(pb_fio_seq_bw(p)));
        else
            fputs("null", f);
        fputs(", \"syncwrite\": ", f);
        pb_json_fio(f, &p->sync);
        fputs("}", f);
    }
    fputs(",\n  \"ratios\": {\"read_vs_fio_seqread\": ", f);
    if (p->fio_ran && pb_fio_seq_bw(p) > 0)
        fprintf(f, "%.4f", read_mibs / pb_mib(pb_fio_seq_bw(p)));
    else
        fputs("null", f);
    fputs(", \"read_goal\": 0.8, \"add_bytes_vs_fio_syncwrite_bytes\": ", f);
    if (p->fio_ran && p->sync.ok && !o->skip_add)
        fprintf(f, "%.4f, \"adds_vs_fio_syncwrite_iops\": %.4f",
                add_mibs / pb_mib(p->sync.bw_bytes_per_s),
                pb_rate((double)p->add->entries, p->add->seconds) / p->sync.iops);
    else
        fputs("null, \"adds_vs_fio_syncwrite_iops\": null", f);
    fputs("}\n}\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "magnetar perf bookie: writing %s failed\n", path);
        return MG_EIO;
    }
    return MG_OK;
}

/* ---- the workload --------------------------------------------------------------------------- */

static void pb_client_closed(void *arg)
{
    pb_run *r = arg;
    r->done = true;
}

static int pb_check_options(const perf_bookie_opts *o)
{
    if (o->skip_add && o->ledger_id < 0) {
        fprintf(stderr, "magnetar perf bookie: --skip-add needs --ledger (the ledger to read)\n");
        return MG_EXIT_USAGE;
    }
    if (o->fio_dir == NULL)
        return -1;
    struct stat st;
    if (stat(o->fio_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "magnetar perf bookie: --fio-dir %s is not a directory\n", o->fio_dir);
        return MG_EXIT_USAGE;
    }
    if (!mg_fio_installed()) {
        fprintf(stderr, "magnetar perf bookie: --fio-dir needs fio, which is not installed "
                        "(Debian package fio; scripts/setup.sh installs it)\n");
        return MG_EXIT_FAILURE;
    }
    return -1;
}

/* Phases 1-4 with the client on r->loop; fills rep. Returns MG_OK or the failure (reported). */
static int pb_phases(pb_run *r, pb_report *rep)
{
    const perf_bookie_opts *o = r->o;
    int rc = pb_probe(r);
    if (rc != MG_OK)
        return rc;
    /* fio's first sequential read comes before the adds, not right before the read phase: fio
     * deletes its file afterwards, and on a file system mounted with `discard` (as here) the
     * discards of a whole file slow the reads that follow them. */
    if (o->fio_dir != NULL) {
        MG_INFO("perf bookie: fio sequential read in %s (before the adds and the read)",
                o->fio_dir);
        mg_fio_seq_read(o->fio_dir, o->fio_bytes, &rep->seq_before);
        if (!rep->seq_before.ok)
            fprintf(stderr, "magnetar perf bookie: fio sequential read unavailable: %s\n",
                    rep->seq_before.error);
        uv_update_time(&r->loop);
    }
    if (!o->skip_add) {
        MG_INFO("perf bookie: adding %" PRId64 " entries of %zu bytes to ledger %" PRId64 " on %s",
                o->entry_count, r->entry_bytes, r->ledger_id, o->bookie);
        rc = pb_phase_add(r);
        if (rc != MG_OK) {
            fprintf(stderr, "magnetar perf bookie: %s\n", r->error);
            return rc;
        }
        pb_settle(r);
    }
    if (o->drop_caches) {
        rep->caches_dropped = mg_drop_caches(rep->drop_why, sizeof(rep->drop_why));
        if (!rep->caches_dropped)
            fprintf(stderr,
                    "magnetar perf bookie: %s; the read below is WARM (served partly from "
                    "the page cache), not cold\n",
                    rep->drop_why);
    } else {
        snprintf(rep->drop_why, sizeof(rep->drop_why), "--no-drop-caches");
    }
    disk_metrics before;
    if (o->bookie_http != NULL) {
        rep->metrics_ran = true;
        if (pb_disk_metrics(o->bookie_http, &before) != MG_OK)
            MG_WARN("perf bookie: %s", before.error);
    }
    MG_INFO("perf bookie: reading ledger %" PRId64 " back (%s)", r->ledger_id,
            rep->caches_dropped ? "cold" : "warm");
    /* fio and drop_caches ran outside the loop, which still has the time from before them: a
     * request timer started from that stale time would expire at once. */
    uv_update_time(&r->loop);
    rc = pb_phase_read(r);
    if (rc != MG_OK) {
        fprintf(stderr, "magnetar perf bookie: %s\n", r->error);
        return rc;
    }
    if (rep->metrics_ran) {
        disk_metrics after;
        if (!before.ok) {
            rep->dm = before;
        } else if (pb_disk_metrics(o->bookie_http, &after) != MG_OK) {
            rep->dm = after;
        } else {
            rep->dm = after;
            rep->dm.reads -= before.reads;
            rep->dm.read_bytes -= before.read_bytes;
            rep->dm.ra_issued -= before.ra_issued;
            rep->dm.ra_used -= before.ra_used;
            rep->dm.src_disk -= before.src_disk;
            rep->dm.src_read_cache -= before.src_read_cache;
        }
    }
    if (o->delete_ledger && !o->skip_add)
        pb_delete_ledger(r);
    return MG_OK;
}

static int perf_bookie(int argc, char **argv)
{
    perf_bookie_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&perf_bookie_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    exit_now = pb_check_options(&o);
    if (exit_now >= 0) {
        mg_config_free(&perf_bookie_spec, &o);
        return exit_now;
    }

    pb_run r;
    memset(&r, 0, sizeof(r));
    pb_report rep;
    memset(&rep, 0, sizeof(rep));
    r.o = &o;
    r.entry_bytes = (size_t)o.entry_bytes;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(rep.started, sizeof(rep.started), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (o.ledger_id >= 0) {
        r.ledger_id = o.ledger_id;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r.ledger_id = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    }
    size_t slot_count = (size_t)(o.inflight > o.read_inflight ? o.inflight : o.read_inflight);
    int rc = pb_pattern_make(&r);
    r.slots = rc == MG_OK ? mg_calloc(slot_count, sizeof(pb_slot)) : NULL;
    if (r.slots == NULL ||
        mg_hist_init(&r.add.lat_us, PERF_HIST_PRECISION_BITS, PERF_HIST_VALUE_MAX_US) != MG_OK ||
        mg_hist_init(&r.read.lat_us, PERF_HIST_PRECISION_BITS, PERF_HIST_VALUE_MAX_US) != MG_OK) {
        fprintf(stderr, "magnetar perf bookie: out of memory\n");
        mg_hist_destroy(&r.add.lat_us);
        mg_free(r.slots);
        mg_free(r.pattern);
        mg_config_free(&perf_bookie_spec, &o);
        return MG_EXIT_FAILURE;
    }
    for (size_t i = 0; i < slot_count; i++) {
        r.slots[i].run = &r;
        r.slots[i].next_free = r.free_slots;
        r.free_slots = &r.slots[i];
    }

    uv_loop_init(&r.loop);
    uv_timer_init(&r.loop, &r.timer);
    r.timer.data = &r;
    bk_client_opts co = { .pending_max = (uint32_t)(slot_count + 16) };
    rc = bk_client_create(&r.loop, &co, &r.client);
    if (rc == MG_OK) {
        rc = pb_phases(&r, &rep);
        r.done = false;
        bk_client_close(r.client, pb_client_closed, &r);
        while (!r.done)
            uv_run(&r.loop, UV_RUN_ONCE);
    } else {
        fprintf(stderr, "magnetar perf bookie: cannot create the client: %s\n", mg_strerror(rc));
    }
    uv_close((uv_handle_t *)&r.timer, NULL);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);

    int status = rc == MG_OK ? MG_EXIT_OK : MG_EXIT_FAILURE;
    if (rc == MG_OK && o.fio_dir != NULL) {
        rep.fio_ran = true;
        mg_fio_seq_read(o.fio_dir, o.fio_bytes, &rep.seq);
        mg_fio_sync_write(o.fio_dir, &rep.sync);
        if (!rep.seq.ok)
            fprintf(stderr, "magnetar perf bookie: fio sequential read unavailable: %s\n",
                    rep.seq.error);
        if (!rep.sync.ok)
            fprintf(stderr, "magnetar perf bookie: fio fdatasync write unavailable: %s\n",
                    rep.sync.error);
    }
    if (rc == MG_OK) {
        rep.o = &o;
        rep.ledger_id = r.ledger_id;
        rep.add = &r.add;
        rep.read = &r.read;
        rep.mismatches = r.mismatches;
        pb_print_summary(&rep, stdout);
        fflush(stdout);
        if (o.json_path != NULL && pb_write_json(&rep, o.json_path) != MG_OK)
            status = MG_EXIT_FAILURE;
        if (r.mismatches > 0) {
            fprintf(stderr,
                    "magnetar perf bookie: %" PRIu64 " entries read back differ from what was "
                    "written\n",
                    r.mismatches);
            status = MG_EXIT_FAILURE;
        }
    }
    mg_hist_destroy(&r.add.lat_us);
    mg_hist_destroy(&r.read.lat_us);
    mg_free(r.slots);
    mg_free(r.pattern);
    mg_config_free(&perf_bookie_spec, &o);
    return status;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static void perf_usage(FILE *out);

static const mg_tool_command perf_workloads[] = {
    { "bookie", "one bookie: adds with fsync, cold range reads, fio ratios", perf_bookie },
    { "produce", "publish throughput and latency through a broker (as pulsar-perf produce)",
      mg_perf_produce },
    { "consume", "consume throughput and end-to-end latency (as pulsar-perf consume)",
      mg_perf_consume },
    { "catchup", "drain of a cold backlog against the disk's bandwidth", NULL },
};

static const mg_tool_command_table perf_workload_table = {
    .prefix = "magnetar perf",
    .kind = "workload",
    .not_built_note = "",
    .commands = perf_workloads,
    .count = sizeof(perf_workloads) / sizeof(perf_workloads[0]),
    .usage = perf_usage,
};

static void perf_usage(FILE *out)
{
    fprintf(out, "Usage: magnetar perf <workload> [options]\n"
                 "       magnetar perf <workload> --help\n\n"
                 "Load generators; each prints a human summary and can write a JSON result "
                 "(perf/README.md).\n\nWorkloads:\n");
    mg_tool_command_list(out, &perf_workload_table, 10);
}

int mg_tool_perf(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "magnetar perf: name a workload\n\n");
        perf_usage(stderr);
        return MG_EXIT_USAGE;
    }
    const char *w = argv[1];
    if (mg_tool_asks_help(w)) {
        perf_usage(stdout);
        return MG_EXIT_OK;
    }
    return mg_tool_command_run(&perf_workload_table, argc - 1, argv + 1);
}
