/* Managed ledgers against real bookies (tests/support/bk_harness) and the real embedded metadata
 * store: adds and reads across rollovers (by entry count, size and age), positions and the
 * BrokerEntryMetadata prefix (timestamps, message indexes with batches), reopening, a second
 * owner taking over (the first is fenced), find by time and by index, entries between positions,
 * retention (time and size rules), a corrupt entry, backpressure, a ledger that cannot be
 * replaced (the add fails, indexes stay contiguous, writing resumes once bookies are back), the
 * ledger list as ml_ledgers reports it, deleting a stored managed ledger (its node, cursor
 * nodes, ledger metadata and bookie data; a missing name; finishing a partial deletion), and
 * termination (adds in flight complete, later adds refused; twice; an empty log; reopened
 * terminated without a new ledger; retention; rollovers under way; a fenced owner).
 *
 * Everything runs on one loop in the test thread; a repeating guard timer makes every
 * uv_run(UV_RUN_ONCE) return within a few milliseconds, and every wait is bounded. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/limits.h"
#include "common/metrics.h"
#include "ledger/ledger.h"
#include "ledger/limits.h"
#include "proto/ledger.pb-c.h"
#include "support/bk_harness.h"

TestSuite(managed, .timeout = 30);

#define WAIT_NS_MAX (20ull * 1000 * 1000 * 1000)

#define RUN_UNTIL(cond)                                                                       \
    do {                                                                                      \
        uint64_t run_until_t0 = uv_hrtime();                                                  \
        while (!(cond)) {                                                                     \
            cr_assert_lt(uv_hrtime() - run_until_t0, WAIT_NS_MAX, "timed out waiting for %s", \
                         #cond);                                                              \
            uv_run(&t.loop, UV_RUN_ONCE);                                                     \
        }                                                                                     \
    } while (0)

#define NAME "tenant/ns/persistent/topic"

/* ---- environment -------------------------------------------------------------------------- */

typedef struct tenv {
    uv_loop_t loop;
    uv_timer_t guard;
    bkh *h;
    ml_env *env;
    mg_metrics *metrics;
} tenv;

static tenv t;

static void guard_tick(uv_timer_t *timer)
{
    (void)timer;
}

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

static void setup_env(int bookies, int e, int w, int a, uint32_t pending_max)
{
    memset(&t, 0, sizeof(t));
    cr_assert_eq(uv_loop_init(&t.loop), 0);
    cr_assert_eq(uv_timer_init(&t.loop, &t.guard), 0);
    cr_assert_eq(uv_timer_start(&t.guard, guard_tick, 5, 5), 0);
    cr_assert_eq(bkh_start(&t.loop, bookies, &t.h), MG_OK);
    cr_assert_eq(mg_metrics_create(&t.metrics), MG_OK);
    ml_env_opts o = { .ensemble_size = e,
                      .write_quorum = w,
                      .ack_quorum = a,
                      .pending_adds_max = pending_max,
                      .metrics = t.metrics };
    cr_assert_eq(ml_env_create(&t.loop, bkh_md_client(t.h), bkh_bk_client(t.h), &o, &t.env), MG_OK);
}

static void teardown_env(void)
{
    ml_env_destroy(t.env);
    bkh_destroy(t.h);
    uv_close((uv_handle_t *)&t.guard, NULL);
    for (int i = 0; i < 1000 && uv_loop_alive(&t.loop); i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&t.loop), 0, "handles left open on the loop");
    mg_metrics_destroy(t.metrics);
}

static uint64_t counter(const char *name)
{
    return mg_counter_value(mg_metrics_unlabelled_counter(t.metrics, name, NULL));
}

/* ---- managed ledger helpers --------------------------------------------------------------- */

typedef struct ores {
    int calls;
    int status;
    ml_managed *ml;
} ores;

static void opened(int status, ml_managed *ml, void *arg)
{
    ores *r = arg;
    r->calls++;
    r->status = status;
    r->ml = ml;
}

static ml_managed *open_ml(ml_env *env, const char *name, const ml_config *cfg, int expect)
{
    ores r = { 0 };
    cr_assert_eq(ml_open(env, name, cfg, opened, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, expect, "open: %s", mg_strerror(r.status));
    if (expect != MG_OK)
        cr_assert_null(r.ml);
    return r.ml;
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

static int close_ml(ml_managed *ml)
{
    dres r = { 0 };
    cr_assert_eq(ml_close(ml, done_cb, &r), MG_OK);
    cr_assert_eq(r.calls, 0);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

/* The payload of message batch k and its message count. */
static size_t payload_len(int64_t k)
{
    return 12 + (size_t)((k * 13) % 90);
}

static void payload_fill(int64_t k, uint8_t *dst)
{
    size_t n = payload_len(k);
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(k * 7 + (int64_t)i * 3);
}

static int32_t batch_messages(int64_t k)
{
    return (int32_t)(1 + k % 4);
}

#define ADDS_MAX 512

/* Adds and what they got, indexed by batch number k. */
typedef struct adds {
    int64_t issued;
    int64_t done;
    int64_t ok;
    int first_error;
    bool disorder;
    int64_t next_cb; /* callbacks must come in call order */
    ml_position pos[ADDS_MAX];
    int64_t index[ADDS_MAX];
    int status[ADDS_MAX];
    struct slot {
        struct adds *a;
        int64_t k;
    } slots[ADDS_MAX];
} adds;

static void add_done(int status, ml_position pos, int64_t index, void *arg)
{
    struct slot *s = arg;
    adds *a = s->a;
    if (s->k != a->next_cb)
        a->disorder = true;
    a->next_cb = s->k + 1;
    a->done++;
    a->status[s->k] = status;
    if (status == MG_OK) {
        a->ok++;
        a->pos[s->k] = pos;
        a->index[s->k] = index;
    } else {
        a->pos[s->k] = (ml_position){ -1, -1 };
        if (a->first_error == MG_OK)
            a->first_error = status;
    }
}

/* Issues batch k (the next one) without waiting. */
static int add_one(ml_managed *ml, adds *a)
{
    int64_t k = a->issued;
    cr_assert_lt(k, ADDS_MAX);
    size_t n = payload_len(k);
    mg_buf *b = mg_buf_new(n + 5);
    cr_assert_not_null(b);
    memset(mg_buf_data(b), 0xAB, n + 5);
    payload_fill(k, mg_buf_data(b) + 5);
    mg_buf_set_len(b, n + 5);
    a->slots[k] = (struct slot){ a, k };
    int rc = ml_add(ml, b, 5, n, batch_messages(k), add_done, &a->slots[k]);
    mg_buf_unref(b);
    if (rc == MG_OK)
        a->issued++;
    return rc;
}

/* Adds count batches, up to window in flight, and waits for them all. */
static void add_many(ml_managed *ml, adds *a, int64_t count, int window)
{
    int64_t end = a->issued + count;
    while (a->issued < end) {
        while (a->issued < end && a->issued - a->done < window)
            cr_assert_eq(add_one(ml, a), MG_OK);
        RUN_UNTIL(a->issued - a->done < window || a->done == a->issued);
    }
    RUN_UNTIL(a->done == a->issued);
}

/* Messages in batches [0, k). */
static int64_t messages_before(int64_t k)
{
    int64_t m = 0;
    for (int64_t i = 0; i < k; i++)
        m += batch_messages(i);
    return m;
}

/* ---- reads -------------------------------------------------------------------------------- */

#define READ_MAX 512

typedef struct rres {
    int calls;
    int status;
    size_t count;
    ml_position pos[READ_MAX];
    int64_t ts[READ_MAX];
    int64_t index[READ_MAX];
    size_t len[READ_MAX];
    size_t stored[READ_MAX];    /* the whole stored entry, prefix included */
    uint8_t *payload[READ_MAX]; /* copies */
    bool prefix_ok;
} rres;

static void rres_free(rres *r)
{
    for (size_t i = 0; i < r->count && i < READ_MAX; i++)
        free(r->payload[i]);
    memset(r, 0, sizeof(*r));
}

static void read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    rres *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    r->prefix_ok = true;
    for (size_t i = 0; i < count && i < READ_MAX; i++) {
        const ml_entry *e = &entries[i];
        const uint8_t *raw = mg_buf_data(e->buf) + e->off;
        if (raw[0] != 0x0e || raw[1] != 0x02 || e->payload_off <= e->off ||
            e->payload_off + e->payload_len != e->off + e->len)
            r->prefix_ok = false;
        r->pos[i] = e->position;
        r->ts[i] = e->broker_timestamp_ms;
        r->index[i] = e->index;
        r->len[i] = e->payload_len;
        r->stored[i] = e->len;
        r->payload[i] = malloc(e->payload_len + 1);
        memcpy(r->payload[i], mg_buf_data(e->buf) + e->payload_off, e->payload_len);
    }
}

static void read_ml(ml_managed *ml, ml_position from, int max_entries, uint32_t max_bytes, rres *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(ml_read(ml, from, max_entries, max_bytes, read_done, r), MG_OK);
    cr_assert_eq(r->calls, 0); /* never inside the call */
    RUN_UNTIL(r->calls == 1);
}

/* Checks that read entry i is batch k as added. */
static void check_entry(const rres *r, size_t i, const adds *a, int64_t k)
{
    cr_assert_eq(ml_position_cmp(r->pos[i], a->pos[k]), 0, "entry %zu: position", i);
    cr_assert_eq(r->index[i], a->index[k]);
    cr_assert_eq(r->len[i], payload_len(k));
    uint8_t want[128];
    payload_fill(k, want);
    cr_assert_eq(memcmp(r->payload[i], want, payload_len(k)), 0, "batch %lld payload",
                 (long long)k);
}

typedef struct fres {
    int calls;
    int status;
    ml_position pos;
} fres;

static void found(int status, ml_position pos, void *arg)
{
    fres *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
}

static ml_position find_time(ml_managed *ml, int64_t ts)
{
    fres r = { 0 };
    cr_assert_eq(ml_find_by_time(ml, ts, found, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    return r.pos;
}

static ml_position find_index(ml_managed *ml, int64_t index)
{
    fres r = { 0 };
    cr_assert_eq(ml_find_by_index(ml, index, found, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    return r.pos;
}

/* ---- metadata ----------------------------------------------------------------------------- */

typedef struct mres {
    int calls;
    int status;
    Magnetar__Ledger__ManagedLedgerInfo *info;
} mres;

static void info_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    mres *r = arg;
    r->calls++;
    r->status = status;
    if (status == MG_OK)
        r->info = magnetar__ledger__managed_ledger_info__unpack(NULL, len, value);
}

static Magnetar__Ledger__ManagedLedgerInfo *info_get(const char *name)
{
    mres r = { 0 };
    char path[256];
    snprintf(path, sizeof(path), "/managed-ledgers/%s", name);
    cr_assert_eq(md_get(bkh_md_client(t.h), path, info_got, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_not_null(r.info);
    return r.info;
}

static int node_status(const char *path)
{
    mres r = { 0 };
    cr_assert_eq(md_get(bkh_md_client(t.h), path, info_got, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    if (r.info != NULL)
        magnetar__ledger__managed_ledger_info__free_unpacked(r.info, NULL);
    return r.status;
}

static int ledger_node_status(int64_t ledger_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/ledgers/%lld", (long long)ledger_id);
    return node_status(path);
}

typedef struct bres {
    int calls;
    int status;
} bres;

static void bk_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    (void)entries;
    (void)count;
    bres *r = arg;
    r->calls++;
    r->status = status;
}

static int bookie_read(int i, int64_t ledger_id, int64_t entry_id)
{
    bres r = { 0 };
    cr_assert_eq(bk_client_read(bkh_bk_client(t.h), bkh_bookie_addr(t.h, i), ledger_id, entry_id,
                                bk_read_done, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(managed, add_and_read_across_rollovers)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 10 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert_str_eq(ml_name(ml), NAME);
    cr_assert_str_eq(ml_metadata_path(ml), "/managed-ledgers/" NAME);
    cr_assert_eq(ml_managed_env(ml), t.env);
    cr_assert_eq(ml_messages_total(ml), 0);
    cr_assert_eq(ml_last_position(ml).ledger_id, -1);
    ml_position first_write = ml_first_position(ml);
    cr_assert_eq(first_write.entry_id, 0);

    static adds a;
    memset(&a, 0, sizeof(a));
    int64_t t0 = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t0 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    add_many(ml, &a, 35, 8);
    cr_assert_eq(a.ok, 35);
    cr_assert(!a.disorder, "callbacks out of call order");
    int64_t t1;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t1 = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    /* Positions: 10 per ledger, new ledgers in increasing id order; indexes count messages. */
    cr_assert_eq(ml_position_cmp(a.pos[0], first_write), 0);
    for (int64_t k = 0; k < 35; k++) {
        cr_assert_eq(a.pos[k].entry_id, k % 10, "batch %lld", (long long)k);
        if (k % 10 != 0)
            cr_assert_eq(a.pos[k].ledger_id, a.pos[k - 1].ledger_id);
        else if (k > 0)
            cr_assert_gt(a.pos[k].ledger_id, a.pos[k - 1].ledger_id);
        cr_assert_eq(a.index[k], messages_before(k + 1) - 1);
    }
    cr_assert_eq(ml_messages_total(ml), messages_before(35));
    cr_assert_eq(ml_entries_total(ml), 35);
    cr_assert_eq(ml_position_cmp(ml_last_position(ml), a.pos[34]), 0);
    cr_assert_eq(counter("ml_ledger_rollovers_total"), 3);
    mg_histogram *lat =
        mg_metrics_unlabelled_histogram(t.metrics, "ml_add_latency_ms", NULL, 0.001);
    mg_hist snap;
    cr_assert_eq(mg_hist_init(&snap, MG_METRICS_HIST_PRECISION_BITS, MG_METRICS_HIST_VALUE_MAX),
                 MG_OK);
    cr_assert_eq(mg_histogram_snapshot(lat, &snap), MG_OK);
    cr_assert_eq(mg_hist_count(&snap), 35);
    mg_hist_destroy(&snap);

    /* One read across all four ledgers. */
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 35);
    cr_assert(r.prefix_ok);
    int64_t bytes = 0;
    for (size_t i = 0; i < 35; i++) {
        check_entry(&r, i, &a, (int64_t)i);
        cr_assert_geq(r.ts[i], t0);
        cr_assert_leq(r.ts[i], t1);
        if (i > 0)
            cr_assert_geq(r.ts[i], r.ts[i - 1]);
        bytes += (int64_t)payload_len((int64_t)i);
    }
    rres_free(&r);
    cr_assert_gt(ml_bytes_total(ml), bytes); /* payloads plus their prefixes */

    /* Small reads, following ml_next_position, see every entry exactly once. */
    ml_position p = ml_first_position(ml);
    cr_assert_eq(ml_position_cmp(p, a.pos[0]), 0);
    int64_t k = 0;
    for (int round = 0; round < 100 && k < 35; round++) {
        read_ml(ml, p, 7, 0, &r);
        cr_assert_eq(r.status, MG_OK);
        cr_assert_gt(r.count, 0);
        cr_assert_leq(r.count, 7);
        for (size_t i = 0; i < r.count; i++)
            check_entry(&r, i, &a, k++);
        p = ml_next_position(ml, r.pos[r.count - 1]);
        rres_free(&r);
    }
    cr_assert_eq(k, 35);
    /* Past the end: nothing, and the next position is the next one to be written. */
    cr_assert_eq(ml_position_cmp(p, (ml_position){ a.pos[34].ledger_id, 5 }), 0);
    read_ml(ml, p, 10, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 0);
    /* max_bytes smaller than one entry: still one entry; two entries' worth: two. */
    read_ml(ml, a.pos[3], 10, 1, &r);
    cr_assert_eq(r.count, 1);
    check_entry(&r, 0, &a, 3);
    rres_free(&r);
    /* A read starting at the end of a closed ledger goes on in the next one. */
    read_ml(ml, (ml_position){ a.pos[9].ledger_id, 10 }, 2, 0, &r);
    cr_assert_eq(r.count, 2);
    check_entry(&r, 0, &a, 10);
    rres_free(&r);

    /* The ledger list: three closed ledgers of 10 entries, the current one open. */
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, 4);
    for (size_t i = 0; i < 3; i++) {
        cr_assert(info->ledgers[i]->has_entries);
        cr_assert_eq(info->ledgers[i]->entries, 10);
        cr_assert_gt(info->ledgers[i]->size, 0);
        cr_assert_eq(info->ledgers[i]->ledger_id, a.pos[i * 10].ledger_id);
    }
    cr_assert(!info->ledgers[3]->has_entries);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);

    cr_assert_eq(close_ml(ml), MG_OK);
    info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, 4);
    cr_assert(info->ledgers[3]->has_entries);
    cr_assert_eq(info->ledgers[3]->entries, 5);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    teardown_env();
}

Test(managed, rollover_by_bytes_and_age)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .ledger_bytes_max = 300, .ledger_age_ms_max = 60000 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 24, 1);
    /* A ledger rolls over with the add that took it to 300 stored bytes (an entry stores at
     * most 90 payload bytes and a prefix of under 30). */
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_geq(info->n_ledgers, 4);
    int64_t sum = 0, entries = 0;
    for (size_t i = 0; i + 1 < info->n_ledgers; i++) {
        cr_assert_geq(info->ledgers[i]->size, 300);
        cr_assert_lt(info->ledgers[i]->size, 300 + 120);
        sum += info->ledgers[i]->size;
        entries += info->ledgers[i]->entries;
    }
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    cr_assert_lt(sum, ml_bytes_total(ml));
    cr_assert_lt(entries, 24);
    for (int64_t k = 1; k < 24; k++)
        cr_assert_geq(a.pos[k].ledger_id, a.pos[k - 1].ledger_id);
    cr_assert_eq(close_ml(ml), MG_OK);

    ml_config age = { .ledger_age_ms_max = 30 };
    ml = open_ml(t.env, NAME, &age, MG_OK);
    static adds b;
    memset(&b, 0, sizeof(b));
    add_many(ml, &b, 1, 1);
    add_many(ml, &b, 1, 1);
    cr_assert_eq(b.pos[1].ledger_id, b.pos[0].ledger_id);
    uv_sleep(40);
    add_many(ml, &b, 1, 1);
    cr_assert_gt(b.pos[2].ledger_id, b.pos[1].ledger_id);
    cr_assert_eq(b.pos[2].entry_id, 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, reopen_keeps_entries_and_continues_the_index)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 6 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 15, 4);
    cr_assert_eq(a.ok, 15);
    cr_assert_eq(close_ml(ml), MG_OK);

    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert_eq(ml_messages_total(ml), messages_before(15));
    cr_assert_eq(ml_entries_total(ml), 15);
    cr_assert_eq(ml_position_cmp(ml_last_position(ml), a.pos[14]), 0);
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &r);
    cr_assert_eq(r.count, 15);
    for (size_t i = 0; i < 15; i++)
        check_entry(&r, i, &a, (int64_t)i);
    rres_free(&r);
    add_many(ml, &a, 5, 2);
    cr_assert_eq(a.ok, 20);
    cr_assert(!a.disorder);
    for (int64_t k = 15; k < 20; k++)
        cr_assert_eq(a.index[k], messages_before(k + 1) - 1);
    cr_assert_gt(a.pos[15].ledger_id, a.pos[14].ledger_id);
    cr_assert_eq(a.pos[15].entry_id, 0);
    cr_assert_eq(close_ml(ml), MG_OK);

    /* Opening and closing without adds does not grow the list. */
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    size_t n = info->n_ledgers;
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    for (int i = 0; i < 3; i++) {
        ml = open_ml(t.env, NAME, &cfg, MG_OK);
        cr_assert_eq(ml_messages_total(ml), messages_before(20));
        cr_assert_eq(close_ml(ml), MG_OK);
    }
    info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, n);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    teardown_env();
}

static void second_clients(md_client **md, bk_client **bk)
{
    cr_assert_eq(md_client_create(bkh_md_store(t.h), &t.loop, md), MG_OK);
    cr_assert_eq(bk_client_create(&t.loop, NULL, bk), MG_OK);
}

static void second_clients_close(md_client *md, bk_client *bk)
{
    bool x = false, y = false;
    md_client_close(md, set_flag, &x);
    bk_client_close(bk, set_flag, &y);
    RUN_UNTIL(x && y);
}

static void takeover_case(int inflight)
{
    setup_env(3, 3, 3, 2, 0);
    md_client *md2;
    bk_client *bk2;
    second_clients(&md2, &bk2);
    ml_env *env2;
    ml_env_opts o = { .ensemble_size = 3, .write_quorum = 3, .ack_quorum = 2 };
    cr_assert_eq(ml_env_create(&t.loop, md2, bk2, &o, &env2), MG_OK);

    ml_config cfg = { .entries_per_ledger_max = 8 };
    ml_managed *first = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(first, &a, 20, 4);
    cr_assert_eq(a.ok, 20);
    for (int i = 0; i < inflight; i++)
        cr_assert_eq(add_one(first, &a), MG_OK);

    /* The "killed" broker's managed ledger is never closed; a second broker opens it. While
     * the first still writes, it may roll over and write the list between the second's read
     * and its compare-and-set: the second then gets MG_EFENCED and tries again, as a broker
     * loading a topic does (the first is fenced by then and cannot write the list again). */
    ores ro = { 0 };
    for (int attempt = 0; attempt < 5; attempt++) {
        memset(&ro, 0, sizeof(ro));
        cr_assert_eq(ml_open(env2, NAME, &cfg, opened, &ro), MG_OK);
        RUN_UNTIL(ro.calls == 1);
        if (ro.status != MG_EFENCED || inflight == 0)
            break;
    }
    RUN_UNTIL(a.done == a.issued);
    cr_assert_eq(ro.status, MG_OK, "%s", mg_strerror(ro.status));
    ml_managed *second = ro.ml;
    int64_t acked = a.ok;
    cr_assert_geq(ml_entries_total(second), acked);
    cr_assert_eq(ml_messages_total(second), messages_before(ml_entries_total(second)));

    /* The first owner is fenced. */
    if (a.first_error == MG_OK) {
        cr_assert_eq(add_one(first, &a), MG_OK);
        RUN_UNTIL(a.done == a.issued);
    }
    cr_assert_eq(a.first_error, MG_EFENCED, "%s", mg_strerror(a.first_error));
    cr_assert(!a.disorder);
    cr_assert_eq(add_one(first, &a), MG_ESTATE);

    /* The second owner sees every acknowledged entry, and goes on from there. */
    static rres r;
    read_ml(second, ML_POSITION_EARLIEST, 200, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq((int64_t)r.count, ml_entries_total(second));
    for (int64_t k = 0; k < acked; k++)
        check_entry(&r, (size_t)k, &a, k);
    int64_t stored = (int64_t)r.count;
    rres_free(&r);
    static adds b;
    memset(&b, 0, sizeof(b));
    add_many(second, &b, 3, 3);
    cr_assert_eq(b.ok, 3);
    cr_assert_eq(b.index[0], messages_before(stored) + batch_messages(0) - 1);
    cr_assert_gt(b.pos[0].ledger_id, a.pos[19].ledger_id);

    cr_assert_eq(close_ml(first), MG_EFENCED);
    cr_assert_eq(close_ml(second), MG_OK);
    ml_env_destroy(env2);
    second_clients_close(md2, bk2);
    teardown_env();
}

Test(managed, second_owner_fences_the_first)
{
    takeover_case(0);
}

Test(managed, second_owner_with_adds_in_flight)
{
    takeover_case(10);
}

Test(managed, find_by_time_and_index)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 7 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    for (int batch = 0; batch < 4; batch++) {
        add_many(ml, &a, 10, 3);
        uv_sleep(3); /* distinct timestamps between batches */
    }
    cr_assert_eq(a.ok, 40);
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &r);
    cr_assert_eq(r.count, 40);
    ml_position end = ml_next_position(ml, a.pos[39]);

    /* Every timestamp, one below and one above: the first entry at or after it. */
    for (size_t i = 0; i < 40; i++) {
        int64_t targets[3] = { r.ts[i] - 1, r.ts[i], r.ts[i] + 1 };
        for (int j = 0; j < 3; j++) {
            size_t want = 0;
            while (want < 40 && r.ts[want] < targets[j])
                want++;
            ml_position expect = want < 40 ? r.pos[want] : end;
            ml_position got = find_time(ml, targets[j]);
            cr_assert_eq(ml_position_cmp(got, expect), 0, "time %lld: got %lld:%lld want %lld:%lld",
                         (long long)targets[j], (long long)got.ledger_id, (long long)got.entry_id,
                         (long long)expect.ledger_id, (long long)expect.entry_id);
        }
    }
    /* Every message index: the entry that holds it. */
    int64_t total = messages_before(40);
    cr_assert_eq(ml_messages_total(ml), total);
    for (int64_t idx = 0; idx < total; idx++) {
        int64_t k = 0;
        while (messages_before(k + 1) - 1 < idx)
            k++;
        ml_position got = find_index(ml, idx);
        cr_assert_eq(ml_position_cmp(got, a.pos[k]), 0, "index %lld", (long long)idx);
    }
    cr_assert_eq(ml_position_cmp(find_index(ml, total), end), 0);
    cr_assert_eq(ml_position_cmp(find_index(ml, total + 100), end), 0);
    rres_free(&r);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, positions_and_entries_between)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 5 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 13, 4);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[0]), 0);
    /* ml_next_position walks every entry once. */
    ml_position p = ml_first_position(ml);
    for (int64_t k = 0; k < 13; k++) {
        cr_assert_eq(ml_position_cmp(p, a.pos[k]), 0, "step %lld", (long long)k);
        p = ml_next_position(ml, p);
    }
    cr_assert_eq(ml_position_cmp(p, (ml_position){ a.pos[12].ledger_id, 3 }), 0);
    /* (L, -1) is the position before a ledger's first entry. */
    cr_assert_eq(
        ml_position_cmp(ml_next_position(ml, (ml_position){ a.pos[5].ledger_id, -1 }), a.pos[5]),
        0);
    cr_assert_eq(ml_position_cmp(ml_next_position(ml, ML_POSITION_EARLIEST), a.pos[0]), 0);

    for (int64_t i = 0; i < 13; i++) {
        for (int64_t j = 0; j < 13; j++) {
            int64_t want = j >= i ? j - i + 1 : 0;
            cr_assert_eq(ml_entries_between(ml, a.pos[i], a.pos[j]), want, "%lld..%lld",
                         (long long)i, (long long)j);
        }
    }
    cr_assert_eq(ml_entries_between(ml, (ml_position){ a.pos[5].ledger_id, -1 }, a.pos[12]), 8);
    cr_assert_eq(ml_entries_between(ml, ML_POSITION_EARLIEST, a.pos[12]), 13);
    cr_assert_eq(ml_entries_between(ml, a.pos[0], (ml_position){ a.pos[12].ledger_id, 99 }), 13);
    cr_assert_eq(ml_entries_between(ml, a.pos[3], (ml_position){ a.pos[5].ledger_id, -1 }), 2);
    cr_assert_lt(ml_position_cmp(a.pos[4], a.pos[5]), 0);
    cr_assert_gt(ml_position_cmp(a.pos[6], a.pos[5]), 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

static void retention_fixture(ml_config *cfg, ml_managed **out, adds *a)
{
    cfg->entries_per_ledger_max = 5;
    *out = open_ml(t.env, NAME, cfg, MG_OK);
    memset(a, 0, sizeof(*a));
    add_many(*out, a, 17, 1); /* L0..L2 closed with 5 entries, L3 current with 2 */
    cr_assert_eq(a->ok, 17);
}

Test(managed, retention_deletes_consumed_ledgers)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 0, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a);
    int64_t l0 = a.pos[0].ledger_id, l1 = a.pos[5].ledger_id, l2 = a.pos[10].ledger_id;
    cr_assert_eq(bookie_read(0, l0, 4), MG_OK);

    /* Needed from L1's third entry: only L0 is entirely consumed. */
    ml_set_oldest_needed(ml, a.pos[7]);
    RUN_UNTIL(ml_entries_total(ml) == 12);
    /* Needed from L2's first entry: L1 goes too. */
    ml_set_oldest_needed(ml, a.pos[10]);
    RUN_UNTIL(ml_entries_total(ml) == 7);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[10]), 0);
    RUN_UNTIL(ledger_node_status(l1) == MG_ENOTFOUND);
    cr_assert_eq(ledger_node_status(l0), MG_ENOTFOUND);
    cr_assert_eq(ledger_node_status(l2), MG_OK);
    cr_assert_eq(bookie_read(0, l0, 4), MG_ENOTFOUND);
    cr_assert_eq(bookie_read(0, l1, 0), MG_ENOTFOUND);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, 2);
    cr_assert_eq(info->ledgers[0]->ledger_id, l2);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &r);
    cr_assert_eq(r.count, 7);
    check_entry(&r, 0, &a, 10);
    rres_free(&r);
    /* Past everything: the current ledger is never deleted. */
    ml_set_oldest_needed(ml, (ml_position){ a.pos[16].ledger_id, 2 });
    RUN_UNTIL(ml_entries_total(ml) == 2);
    cr_assert_eq(ml_messages_total(ml), messages_before(17));
    cr_assert_eq(close_ml(ml), MG_OK);

    /* The message count survives retention and a restart. */
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert_eq(ml_messages_total(ml), messages_before(17));
    cr_assert_eq(ml_entries_total(ml), 2);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, retention_time_keeps_ledgers)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 3600 * 1000, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a);
    ml_set_oldest_needed(ml, a.pos[16]);
    for (int i = 0; i < 50; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(ml_entries_total(ml), 17);
    cr_assert_eq(ledger_node_status(a.pos[0].ledger_id), MG_OK);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, 4);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, retention_bytes_keeps_the_newest)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 0, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    int64_t l1_size = info->ledgers[1]->size;
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    cr_assert_eq(close_ml(ml), MG_OK);
    /* L0 and L1 consumed, keep up to L1's size of them: only L0 goes. */
    cfg.retention_bytes = l1_size;
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    ml_set_oldest_needed(ml, a.pos[10]);
    RUN_UNTIL(ml_entries_total(ml) == 12);
    for (int i = 0; i < 50; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(ml_entries_total(ml), 12);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[5]), 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

/* A managed ledger whose first ledger was written without the prefix (not by us). */
static void raw_added(int status, int64_t entry_id, void *arg)
{
    (void)entry_id;
    int *n = arg;
    cr_assert_eq(status, MG_OK);
    (*n)++;
}

static void ledger_done(int status, ml_ledger *l, void *arg)
{
    ml_ledger **out = arg;
    cr_assert_eq(status, MG_OK);
    *out = l;
}

static void created(int status, const char *path, void *arg)
{
    (void)path;
    dres *r = arg;
    r->calls++;
    r->status = status;
}

Test(managed, entry_without_prefix_is_corrupt)
{
    setup_env(1, 1, 1, 1, 0);
    ml_ledger *l = NULL;
    cr_assert_eq(ml_ledger_create(t.env, ledger_done, &l), MG_OK);
    RUN_UNTIL(l != NULL);
    int added = 0;
    mg_buf *junk = mg_buf_new_copy("not an entry", 12);
    /* Entry 1 carries a valid prefix: ts 1000, index 41. */
    static const uint8_t good[] = { 0x0e, 0x02, 0, 0, 0, 5, 0x08, 0xe8, 0x07, 0x10, 41, 'h', 'i' };
    mg_buf *ok = mg_buf_new_copy(good, sizeof(good));
    cr_assert_eq(ml_ledger_add(l, junk, 0, 12, raw_added, &added), MG_OK);
    cr_assert_eq(ml_ledger_add(l, ok, 0, sizeof(good), raw_added, &added), MG_OK);
    mg_buf_unref(junk);
    mg_buf_unref(ok);
    RUN_UNTIL(added == 2);
    int64_t id = ml_ledger_id(l);
    dres d = { 0 };
    cr_assert_eq(ml_ledger_close(l, done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    Magnetar__Ledger__ManagedLedgerInfo info = MAGNETAR__LEDGER__MANAGED_LEDGER_INFO__INIT;
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo li =
        MAGNETAR__LEDGER__MANAGED_LEDGER_INFO__LEDGER_INFO__INIT;
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo *lis[1] = { &li };
    li.ledger_id = id;
    li.has_entries = 1;
    li.entries = 2;
    li.has_size = 1;
    li.size = 12 + sizeof(good);
    info.n_ledgers = 1;
    info.ledgers = lis;
    uint8_t buf[256];
    size_t n = magnetar__ledger__managed_ledger_info__pack(&info, buf);
    dres c = { 0 };
    cr_assert_eq(md_create(bkh_md_client(t.h), "/managed-ledgers/" NAME, buf, n, MD_CREATE_PARENTS,
                           created, &c),
                 MG_OK);
    RUN_UNTIL(c.calls == 1);
    cr_assert_eq(c.status, MG_OK);

    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    cr_assert_eq(ml_messages_total(ml), 42); /* from the last entry's index */
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 10, 0, &r);
    cr_assert_eq(r.status, MG_ECORRUPT);
    cr_assert_eq(r.count, 0);
    read_ml(ml, (ml_position){ id, 1 }, 10, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.ts[0], 1000);
    cr_assert_eq(r.index[0], 41);
    cr_assert_eq(r.len[0], 2);
    cr_assert_eq(memcmp(r.payload[0], "hi", 2), 0);
    rres_free(&r);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 1, 1);
    cr_assert_eq(a.index[0], 42 + batch_messages(0) - 1);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, pending_adds_are_bounded_and_arguments_checked)
{
    setup_env(1, 1, 1, 1, 3);
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(add_one(ml, &a), MG_OK);
    cr_assert_eq(add_one(ml, &a), MG_EAGAIN);
    cr_assert_eq(a.done, 0);
    RUN_UNTIL(a.done == 3);
    cr_assert_eq(a.ok, 3);
    mg_buf *b = mg_buf_new_copy("x", 1);
    cr_assert_eq(ml_add(ml, b, 0, 2, 1, add_done, NULL), MG_EINVAL);
    cr_assert_eq(ml_add(ml, b, 0, 1, 0, add_done, NULL), MG_EINVAL);
    cr_assert_eq(ml_read(ml, ML_POSITION_EARLIEST, 0, 0, read_done, NULL), MG_EINVAL);
    cr_assert_eq(ml_open(t.env, "/bad", NULL, opened, NULL), MG_EINVAL);
    cr_assert_eq(ml_open(t.env, "", NULL, opened, NULL), MG_EINVAL);
    dres d = { 0 };
    cr_assert_eq(ml_close(ml, done_cb, &d), MG_OK);
    cr_assert_eq(ml_close(ml, done_cb, &d), MG_ESTATE);
    cr_assert_eq(ml_add(ml, b, 0, 1, 1, add_done, NULL), MG_ESTATE);
    mg_buf_unref(b);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);
    teardown_env();
}

Test(managed, lost_bookies_fail_adds_then_writing_resumes)
{
    setup_env(3, 3, 3, 2, 0);
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 5, 1);
    /* Kill a bookie: no replacement exists, so the ledger fails at its next add, the managed
     * ledger cannot create another (two bookies left for ensembles of three) and the adds
     * behind the last acknowledged one fail, in order. */
    cr_assert_eq(bkh_kill_bookie(t.h, 0), MG_OK);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(add_one(ml, &a), MG_OK);
    RUN_UNTIL(a.done == a.issued);
    cr_assert(!a.disorder);
    cr_assert_eq(a.first_error, MG_ENOTFOUND, "%s", mg_strerror(a.first_error));
    int64_t good = a.ok;
    cr_assert_geq(good, 5);
    cr_assert_lt(good, 25);
    for (int64_t k = 0; k < good; k++)
        cr_assert_eq(a.status[k], MG_OK);
    for (int64_t k = good; k < a.issued; k++)
        cr_assert_eq(a.status[k], MG_ENOTFOUND);
    cr_assert_eq(ml_messages_total(ml), messages_before(good));

    /* Bookies back: the next add gets a new ledger and the index goes on without a gap. */
    cr_assert_eq(bkh_restart_bookie(t.h, 0), MG_OK);
    static adds b;
    memset(&b, 0, sizeof(b));
    b.issued = b.done = b.next_cb = a.issued; /* same batch numbering */
    add_many(ml, &b, 1, 1);
    cr_assert_eq(b.ok, 1);
    cr_assert_eq(b.index[a.issued], messages_before(good) + batch_messages(a.issued) - 1);
    cr_assert_gt(b.pos[a.issued].ledger_id, a.pos[good - 1].ledger_id);
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &r);
    cr_assert_eq((int64_t)r.count, good + 1);
    for (int64_t k = 0; k < good; k++)
        check_entry(&r, (size_t)k, &a, k);
    rres_free(&r);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

/* Runs the loop for ms (the guard timer keeps it turning). */
static void run_for_ms(uint64_t ms)
{
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < ms * 1000000u)
        uv_run(&t.loop, UV_RUN_ONCE);
}

typedef struct rsm {
    int calls;
    int status;
} rsm;

static void resumed_cb(int status, void *arg)
{
    rsm *r = arg;
    r->calls++;
    r->status = status;
}

Test(managed, full_disk_backs_off_without_ledger_churn, .timeout = 60)
{
    setup_env(1, 1, 1, 1, 0);
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 5, 1);
    uint64_t rollovers0 = counter("ml_rollovers_total");

    /* The bookie's disk fills up: its journal write fails, its storage turns read-only. */
    bk_io_fault_arm(bkh_bookie_io(t.h, 0), BK_IO_PWRITE, "journal", 0, -1, MG_ENOSPC, 0);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(add_one(ml, &a), MG_OK);
    RUN_UNTIL(a.done == a.issued);
    cr_assert(!a.disorder);
    cr_assert_eq(a.ok, 5);
    for (int64_t k = 5; k < a.issued; k++)
        cr_assert_eq(a.status[k], MG_ENOSPC, "add %lld: %s", (long long)k,
                     mg_strerror(a.status[k]));
    cr_assert_eq(ml_messages_total(ml), messages_before(5));

    /* Backing off: refused at once, no ledger created. */
    for (int i = 0; i < 100; i++)
        cr_assert_eq(add_one(ml, &a), MG_ENOSPC);
    cr_assert_eq(counter("ml_rollovers_total"), rollovers0);
    ml_ledger_info li[8];
    cr_assert_eq(ml_ledgers(ml, li, 8), 1, "only the failed ledger, closed");

    /* Two attempts after the back-off (1 s, then 2 s): each one ledger, dropped by the next. */
    for (int attempt = 0; attempt < 2; attempt++) {
        run_for_ms(attempt == 0 ? 1100 : 2100);
        int64_t k = a.issued;
        cr_assert_eq(add_one(ml, &a), MG_OK, "attempt %d: the add is tried", attempt);
        cr_assert_eq(add_one(ml, &a), MG_OK, "attempt %d: adds queue behind it", attempt);
        RUN_UNTIL(a.done == a.issued);
        cr_assert_eq(a.status[k], MG_ENOSPC);
        cr_assert_eq(a.status[k + 1], MG_ENOSPC);
        cr_assert_eq(add_one(ml, &a), MG_ENOSPC, "backing off again");
    }
    size_t n = ml_ledgers(ml, li, 8);
    cr_assert_leq(n, 2, "attempts do not pile up ledgers (%zu listed)", n);
    cr_assert_eq(li[0].entries, 5);

    /* Space is back: the bookie resumes, the next attempt writes and the index goes on. */
    bk_io_fault_clear(bkh_bookie_io(t.h, 0), BK_IO_PWRITE);
    rsm r = { 0 };
    cr_assert_eq(bk_storage_resume(bkh_bookie_storage(t.h, 0), resumed_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    int64_t k = -1;
    for (int i = 0; i < 100 && k < 0; i++) { /* the back-off is 4 s now */
        int64_t next = a.issued;
        if (add_one(ml, &a) == MG_OK)
            k = next;
        else
            run_for_ms(100);
    }
    cr_assert_geq(k, 0, "no add accepted within 10 s of the resume");
    RUN_UNTIL(a.done == a.issued);
    cr_assert_eq(a.status[k], MG_OK, "%s", mg_strerror(a.status[k]));
    cr_assert_eq(a.index[k], messages_before(5) + batch_messages(k) - 1, "no gap in the index");
    add_many(ml, &a, 10, 4);
    cr_assert_eq(a.ok, 16);
    static rres rr;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &rr);
    cr_assert_eq((int64_t)rr.count, 16);
    for (int64_t j = 0; j < 5; j++)
        check_entry(&rr, (size_t)j, &a, j);
    rres_free(&rr);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

/* ---- ledger list and deletion ------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Checks ml_ledgers against what the adds got: ledgers[i] holds batches [starts[i], starts[i+1])
 * (starts[n] = a->issued), the last one open unless last_closed. Sizes are checked against the
 * stored lengths read back, and against the metadata list for the closed ledgers. */
static void check_ledgers(ml_managed *ml, const adds *a, const int64_t *starts, size_t n,
                          int64_t t0, int64_t t1)
{
    ml_ledger_info li[8];
    cr_assert_leq(n, 8);
    cr_assert_eq(ml_ledgers(ml, li, 8), n);
    static rres r;
    read_ml(ml, ML_POSITION_EARLIEST, READ_MAX, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq((int64_t)r.count, a->issued);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, n);
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t from = starts[i], to = i + 1 < n ? starts[i + 1] : a->issued;
        cr_assert_eq(li[i].ledger_id, a->pos[from].ledger_id, "ledger %zu: id", i);
        cr_assert_eq(li[i].entries, to - from, "ledger %zu: entries", i);
        int64_t size = 0;
        for (int64_t k = from; k < to; k++) {
            cr_assert_eq(r.pos[k].ledger_id, li[i].ledger_id);
            size += (int64_t)r.stored[k];
        }
        cr_assert_eq(li[i].size_bytes, size, "ledger %zu: size", i);
        cr_assert_eq(info->ledgers[i]->ledger_id, li[i].ledger_id);
        if (i + 1 < n) {
            cr_assert(li[i].closed, "ledger %zu: closed", i);
            cr_assert_geq(li[i].timestamp_ms, t0);
            cr_assert_leq(li[i].timestamp_ms, t1);
            cr_assert_eq(info->ledgers[i]->entries, li[i].entries);
            cr_assert_eq(info->ledgers[i]->size, li[i].size_bytes);
            cr_assert_eq(info->ledgers[i]->timestamp_ms, li[i].timestamp_ms);
        } else {
            cr_assert(!li[i].closed, "the current ledger is open");
            cr_assert_eq(li[i].timestamp_ms, 0);
            cr_assert(!info->ledgers[i]->has_entries);
        }
        total += size;
    }
    cr_assert_eq(ml_bytes_total(ml), total);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    rres_free(&r);
}

Test(managed, ledgers_lists_the_current_list)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 4 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    ml_ledger_info li[8];
    cr_assert_eq(ml_ledgers(ml, li, 8), 1);
    cr_assert_eq(li[0].ledger_id, ml_first_position(ml).ledger_id);
    cr_assert_eq(li[0].entries, 0);
    cr_assert_eq(li[0].size_bytes, 0);
    cr_assert_eq(li[0].timestamp_ms, 0);
    cr_assert(!li[0].closed);

    static adds a;
    memset(&a, 0, sizeof(a));
    int64_t t0 = wall_ms();
    add_many(ml, &a, 10, 1); /* L0 and L1 closed with 4 entries, L2 current with 2 */
    int64_t t1 = wall_ms();
    cr_assert_eq(a.ok, 10);
    cr_assert_eq(li[0].ledger_id, a.pos[0].ledger_id);
    cr_assert_lt(a.pos[0].ledger_id, a.pos[4].ledger_id);
    cr_assert_lt(a.pos[4].ledger_id, a.pos[8].ledger_id);
    check_ledgers(ml, &a, (const int64_t[]){ 0, 4, 8 }, 3, t0, t1);

    /* A short array gets the oldest ledgers; the rest of it is not touched; cap 0 counts. */
    memset(li, 0x5a, sizeof(li));
    cr_assert_eq(ml_ledgers(ml, li, 2), 3);
    cr_assert_eq(li[0].ledger_id, a.pos[0].ledger_id);
    cr_assert_eq(li[1].ledger_id, a.pos[4].ledger_id);
    cr_assert_eq(li[1].entries, 4);
    cr_assert_eq(li[2].ledger_id, (int64_t)0x5a5a5a5a5a5a5a5all);
    cr_assert_eq(ml_ledgers(ml, NULL, 0), 3);

    /* One more add: the open ledger's counts follow the acknowledgements. */
    add_many(ml, &a, 1, 1);
    cr_assert_eq(ml_ledgers(ml, li, 8), 3);
    cr_assert_eq(li[2].entries, 3);
    cr_assert(!li[2].closed);
    cr_assert_eq(close_ml(ml), MG_OK);

    /* Reopened: the three closed ledgers, then the new open one, empty. */
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    int64_t t3 = wall_ms();
    cr_assert_eq(ml_ledgers(ml, li, 8), 4);
    cr_assert_eq(li[2].ledger_id, a.pos[8].ledger_id);
    cr_assert_eq(li[2].entries, 3);
    cr_assert(li[2].closed);
    cr_assert_geq(li[2].timestamp_ms, t1);
    cr_assert_leq(li[2].timestamp_ms, t3);
    cr_assert_gt(li[3].ledger_id, li[2].ledger_id);
    cr_assert_eq(li[3].entries, 0);
    cr_assert_eq(li[3].size_bytes, 0);
    cr_assert(!li[3].closed);
    static adds b;
    memset(&b, 0, sizeof(b));
    b.issued = b.done = b.next_cb = a.issued; /* same batch numbering */
    add_many(ml, &b, 2, 1);
    cr_assert_eq(ml_ledgers(ml, li, 8), 4);
    cr_assert_eq(li[3].ledger_id, b.pos[a.issued].ledger_id);
    cr_assert_eq(li[3].entries, 2);
    cr_assert_eq(ml_bytes_total(ml),
                 li[0].size_bytes + li[1].size_bytes + li[2].size_bytes + li[3].size_bytes);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

typedef struct cres {
    int calls;
    int status;
} cres;

static void node_created(int status, const char *path, void *arg)
{
    (void)path;
    cres *r = arg;
    r->calls++;
    r->status = status;
}

/* Writes a durable cursor's node as the cursor module does: <managed ledger path>/<cursor>. */
static void cursor_node_create(const char *ml_name_, const char *cursor, ml_position mark_delete)
{
    Magnetar__Ledger__CursorInfo ci = MAGNETAR__LEDGER__CURSOR_INFO__INIT;
    ci.mark_delete_ledger_id = mark_delete.ledger_id;
    ci.mark_delete_entry_id = mark_delete.entry_id;
    uint8_t buf[64];
    size_t len = magnetar__ledger__cursor_info__get_packed_size(&ci);
    cr_assert_leq(len, sizeof(buf));
    magnetar__ledger__cursor_info__pack(&ci, buf);
    char path[256];
    snprintf(path, sizeof(path), "/managed-ledgers/%s/%s", ml_name_, cursor);
    cres r = { 0 };
    cr_assert_eq(md_create(bkh_md_client(t.h), path, buf, len, 0, node_created, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
}

static int cursor_node_status(const char *ml_name_, const char *cursor)
{
    char path[256];
    snprintf(path, sizeof(path), "/managed-ledgers/%s/%s", ml_name_, cursor);
    return node_status(path);
}

static int delete_stored(const char *name)
{
    dres r = { 0 };
    cr_assert_eq(ml_delete_stored(t.env, name, done_cb, &r), MG_OK);
    cr_assert_eq(r.calls, 0); /* never inside the call */
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

static void ledger_opened(int status, ml_ledger *l, void *arg)
{
    ores *r = arg;
    r->calls++;
    r->status = status;
    if (l != NULL)
        ml_ledger_release(l);
}

static int ledger_open_status(int64_t ledger_id)
{
    ores r = { 0 };
    cr_assert_eq(ml_ledger_open(t.env, ledger_id, false, ledger_opened, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

#define OTHER "tenant/ns/persistent/other"

Test(managed, delete_stored_removes_everything)
{
    /* Two bookies, both in every ensemble: each holds every entry. */
    setup_env(2, 2, 2, 2, 0);
    ml_config cfg = { .entries_per_ledger_max = 3 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 8, 2); /* ledgers of 3, 3 and 2 entries */
    cr_assert_eq(a.ok, 8);
    cr_assert_eq(close_ml(ml), MG_OK);
    int64_t ids[3] = { a.pos[0].ledger_id, a.pos[3].ledger_id, a.pos[6].ledger_id };
    cursor_node_create(NAME, "sub-a", a.pos[2]);
    cursor_node_create(NAME, "sub-b", ML_POSITION_EARLIEST);
    /* A neighbour in the same namespace, with a cursor of its own: untouched. */
    ml_managed *other = open_ml(t.env, OTHER, &cfg, MG_OK);
    static adds o;
    memset(&o, 0, sizeof(o));
    add_many(other, &o, 4, 1);
    cr_assert_eq(close_ml(other), MG_OK);
    cursor_node_create(OTHER, "sub-a", o.pos[1]);

    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(ledger_node_status(ids[i]), MG_OK);
        for (int b = 0; b < 2; b++)
            cr_assert_eq(bookie_read(b, ids[i], 0), MG_OK);
    }
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert_eq(info->n_ledgers, 3);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);

    cr_assert_eq(delete_stored(NAME), MG_OK);

    cr_assert_eq(node_status("/managed-ledgers/" NAME), MG_ENOTFOUND);
    cr_assert_eq(cursor_node_status(NAME, "sub-a"), MG_ENOTFOUND);
    cr_assert_eq(cursor_node_status(NAME, "sub-b"), MG_ENOTFOUND);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(ledger_node_status(ids[i]), MG_ENOTFOUND, "ledger %lld", (long long)ids[i]);
        cr_assert_eq(ledger_open_status(ids[i]), MG_ENOTFOUND);
        for (int b = 0; b < 2; b++)
            cr_assert_eq(bookie_read(b, ids[i], 0), MG_ENOTFOUND, "ledger %lld on bookie %d",
                         (long long)ids[i], b);
    }
    /* The parents stay, and so does the neighbour with its cursor and its data. */
    cr_assert_eq(node_status("/managed-ledgers/tenant/ns/persistent"), MG_OK);
    cr_assert_eq(cursor_node_status(OTHER, "sub-a"), MG_OK);
    cr_assert_eq(ledger_node_status(o.pos[0].ledger_id), MG_OK);
    other = open_ml(t.env, OTHER, &cfg, MG_OK);
    cr_assert_eq(ml_entries_total(other), 4);
    static rres r;
    read_ml(other, ML_POSITION_EARLIEST, 10, 0, &r);
    cr_assert_eq(r.count, 4);
    for (size_t i = 0; i < 4; i++)
        check_entry(&r, i, &o, (int64_t)i);
    rres_free(&r);
    cr_assert_eq(close_ml(other), MG_OK);

    /* Deleting again finds nothing. */
    cr_assert_eq(delete_stored(NAME), MG_ENOTFOUND);

    /* The same name opens as an empty log. */
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert_eq(ml_entries_total(ml), 0);
    cr_assert_eq(ml_messages_total(ml), 0);
    cr_assert_eq(ml_last_position(ml).ledger_id, -1);
    ml_ledger_info li[4];
    cr_assert_eq(ml_ledgers(ml, li, 4), 1);
    cr_assert_gt(li[0].ledger_id, ids[2]);
    cr_assert_eq(li[0].entries, 0);
    read_ml(ml, ML_POSITION_EARLIEST, 10, 0, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 0);
    static adds b;
    memset(&b, 0, sizeof(b));
    add_many(ml, &b, 1, 1);
    cr_assert_eq(b.ok, 1);
    cr_assert_eq(b.index[0], batch_messages(0) - 1);
    cr_assert_eq(b.pos[0].entry_id, 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, delete_stored_finishes_a_partial_deletion)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 2 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 6, 1); /* three ledgers of 2 entries */
    cr_assert_eq(close_ml(ml), MG_OK);
    int64_t ids[3] = { a.pos[0].ledger_id, a.pos[2].ledger_id, a.pos[4].ledger_id };
    cursor_node_create(NAME, "sub-a", a.pos[0]);
    cursor_node_create(NAME, "sub-b", a.pos[1]);
    /* As if a deletion had stopped half-way: one cursor and the middle ledger are gone. */
    dres d = { 0 };
    cr_assert_eq(ml_ledger_delete(t.env, ids[1], done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);
    cr_assert_eq(ledger_node_status(ids[1]), MG_ENOTFOUND);
    memset(&d, 0, sizeof(d));
    cr_assert_eq(md_delete(bkh_md_client(t.h), "/managed-ledgers/" NAME "/sub-a", MD_VERSION_ANY,
                           done_cb, &d),
                 MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);

    cr_assert_eq(delete_stored(NAME), MG_OK);
    cr_assert_eq(node_status("/managed-ledgers/" NAME), MG_ENOTFOUND);
    cr_assert_eq(cursor_node_status(NAME, "sub-b"), MG_ENOTFOUND);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(ledger_node_status(ids[i]), MG_ENOTFOUND);
        cr_assert_eq(bookie_read(0, ids[i], 1), MG_ENOTFOUND);
    }
    teardown_env();
}

Test(managed, delete_stored_of_what_is_not_a_managed_ledger)
{
    setup_env(1, 1, 1, 1, 0);
    /* No such name at all. */
    cr_assert_eq(delete_stored("tenant/ns/persistent/missing"), MG_ENOTFOUND);
    cr_assert_eq(delete_stored("nothing/here/persistent/missing"), MG_ENOTFOUND);

    /* A parent node (empty, created on the way) is not a managed ledger: its children, the
     * namespace's topics, are left alone. */
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 2, 1);
    cr_assert_eq(close_ml(ml), MG_OK);
    cr_assert_eq(delete_stored("tenant/ns/persistent"), MG_ENOTFOUND);
    cr_assert_eq(delete_stored("tenant"), MG_ENOTFOUND);
    cr_assert_eq(node_status("/managed-ledgers/" NAME), MG_OK);
    cr_assert_eq(ledger_node_status(a.pos[0].ledger_id), MG_OK);

    /* A list that does not parse: nothing is deleted. */
    cres c = { 0 };
    cr_assert_eq(md_create(bkh_md_client(t.h), "/managed-ledgers/tenant/ns/persistent/junk",
                           "\xff\xff\xff", 3, 0, node_created, &c),
                 MG_OK);
    RUN_UNTIL(c.calls == 1);
    cr_assert_eq(c.status, MG_OK);
    cursor_node_create("tenant/ns/persistent/junk", "sub-a", ML_POSITION_EARLIEST);
    cr_assert_eq(delete_stored("tenant/ns/persistent/junk"), MG_ECORRUPT);
    cr_assert_eq(cursor_node_status("tenant/ns/persistent/junk", "sub-a"), MG_OK);

    /* Arguments: refused at once, no callback. */
    dres d = { 0 };
    cr_assert_eq(ml_delete_stored(t.env, NAME, NULL, NULL), MG_EINVAL);
    cr_assert_eq(ml_delete_stored(NULL, NAME, done_cb, &d), MG_EINVAL);
    cr_assert_eq(ml_delete_stored(t.env, NULL, done_cb, &d), MG_EINVAL);
    cr_assert_eq(ml_delete_stored(t.env, "", done_cb, &d), MG_EINVAL);
    cr_assert_eq(ml_delete_stored(t.env, "/" NAME, done_cb, &d), MG_EINVAL);
    cr_assert_eq(ml_delete_stored(t.env, "tenant//x", done_cb, &d), MG_EINVAL);
    char longname[ML_NAME_BYTES_MAX + 1];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_eq(ml_delete_stored(t.env, longname, done_cb, &d), MG_EINVAL);
    for (int i = 0; i < 20; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(d.calls, 0);
    teardown_env();
}

/* ---- termination -------------------------------------------------------------------------- */

typedef struct tres {
    int calls;
    int status;
    ml_position pos;
    const adds *a; /* if set: how many adds had called back when the termination did */
    int64_t adds_done;
} tres;

static void terminated_cb(int status, ml_position pos, void *arg)
{
    tres *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
    if (r->a != NULL)
        r->adds_done = r->a->done;
}

/* Starts ml_terminate (never calling back inside the call). */
static void terminate_start(ml_managed *ml, tres *r)
{
    cr_assert_eq(ml_terminate(ml, terminated_cb, r), MG_OK);
    cr_assert_eq(r->calls, 0);
}

static ml_position terminate_ml(ml_managed *ml)
{
    tres r = { 0 };
    terminate_start(ml, &r);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "terminate: %s", mg_strerror(r.status));
    return r.pos;
}

/* The version of a node. */
static void version_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)value;
    (void)len;
    int64_t *v = arg;
    *v = status == MG_OK ? stat->version : -2;
}

static int64_t node_version(const char *path)
{
    int64_t v = -3;
    cr_assert_eq(md_get(bkh_md_client(t.h), path, version_got, &v), MG_OK);
    RUN_UNTIL(v != -3);
    return v;
}

#define LEDGER_NODES_MAX 64

typedef struct lnodes {
    int calls;
    int status;
    size_t count;
    int64_t ids[LEDGER_NODES_MAX];
} lnodes;

static void children_got(int status, const char *const *names, size_t count, void *arg)
{
    lnodes *r = arg;
    r->calls++;
    r->status = status;
    r->count = 0;
    for (size_t i = 0; status == MG_OK && i < count && i < LEDGER_NODES_MAX; i++)
        r->ids[r->count++] = strtoll(names[i], NULL, 10);
}

/* The ledger ids that have metadata (/ledgers/<id>; none before the first ledger). */
static void ledger_nodes(lnodes *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(md_children(bkh_md_client(t.h), "/ledgers", children_got, r), MG_OK);
    RUN_UNTIL(r->calls == 1);
    if (r->status == MG_ENOTFOUND)
        return; /* no ledger made yet */
    cr_assert_eq(r->status, MG_OK, "%s", mg_strerror(r->status));
}

static bool has_id(const lnodes *r, int64_t id)
{
    for (size_t i = 0; i < r->count; i++)
        if (r->ids[i] == id)
            return true;
    return false;
}

/* Checks the stored list: marked terminated at pos, n ledgers, all closed and not empty; and,
 * when ml is not NULL, the same ledgers as ml_ledgers reports. */
static void check_terminated_list(ml_managed *ml, const char *name, ml_position pos, size_t n)
{
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(name);
    cr_assert(info->has_terminated && info->terminated, "the list is marked terminated");
    cr_assert(info->has_terminated_ledger_id && info->has_terminated_entry_id);
    cr_assert_eq(info->terminated_ledger_id, pos.ledger_id);
    cr_assert_eq(info->terminated_entry_id, pos.entry_id);
    cr_assert_eq(info->n_ledgers, n);
    ml_ledger_info li[16];
    cr_assert_leq(n, 16);
    if (ml != NULL)
        cr_assert_eq(ml_ledgers(ml, li, 16), n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(info->ledgers[i]->has_entries, "ledger %zu closed in the list", i);
        cr_assert_gt(info->ledgers[i]->entries, 0, "no empty ledger is kept");
        if (ml == NULL)
            continue;
        cr_assert_eq(info->ledgers[i]->ledger_id, li[i].ledger_id);
        cr_assert_eq(info->ledgers[i]->entries, li[i].entries);
        cr_assert(li[i].closed);
    }
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
}

Test(managed, terminate_with_adds_in_flight)
{
    setup_env(1, 1, 1, 1, 0);
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    cr_assert(!ml_is_terminated(ml));
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 5, 2);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(add_one(ml, &a), MG_OK);
    cr_assert_lt(a.done, a.issued); /* still in flight */
    tres r = { .a = &a };
    terminate_start(ml, &r);
    cr_assert(!ml_is_terminated(ml)); /* not before the list is written */
    /* From the call on, adds are refused at once. */
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    /* The adds queued before complete normally, before the termination calls back. */
    cr_assert_eq(r.adds_done, 11);
    cr_assert_eq(a.ok, 11);
    cr_assert(!a.disorder);
    cr_assert_eq(ml_position_cmp(r.pos, a.pos[10]), 0);
    cr_assert_eq(r.pos.entry_id, 10);
    cr_assert_eq(ml_position_cmp(ml_last_position(ml), a.pos[10]), 0);
    cr_assert(ml_is_terminated(ml));
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    cr_assert_eq(ml_messages_total(ml), messages_before(11));

    /* One ledger, closed with the 11 entries; the list is marked. */
    check_terminated_list(ml, NAME, a.pos[10], 1);
    ml_ledger_info li[2];
    cr_assert_eq(ml_ledgers(ml, li, 2), 1);
    cr_assert_eq(li[0].ledger_id, a.pos[0].ledger_id);
    cr_assert_eq(li[0].entries, 11);
    cr_assert_gt(li[0].timestamp_ms, 0);

    /* Everything reads; past the last entry: count 0 with MG_OK. */
    static rres rr;
    read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &rr);
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.count, 11);
    for (size_t i = 0; i < 11; i++)
        check_entry(&rr, i, &a, (int64_t)i);
    rres_free(&rr);
    read_ml(ml, ml_next_position(ml, r.pos), 10, 0, &rr);
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.count, 0);
    read_ml(ml, (ml_position){ r.pos.ledger_id + 1, 0 }, 10, 0, &rr);
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.count, 0);
    cr_assert_eq(ml_position_cmp(find_index(ml, a.index[7]), a.pos[7]), 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, terminate_twice)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 3 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 7, 2); /* 3 + 3 + 1 */
    cr_assert_eq(a.ok, 7);
    /* Two calls while the termination runs: both get its outcome, in call order. */
    tres r1 = { 0 }, r2 = { 0 };
    terminate_start(ml, &r1);
    terminate_start(ml, &r2);
    RUN_UNTIL(r1.calls == 1 && r2.calls == 1);
    cr_assert_eq(r1.status, MG_OK);
    cr_assert_eq(r2.status, MG_OK);
    cr_assert_eq(ml_position_cmp(r1.pos, a.pos[6]), 0);
    cr_assert_eq(ml_position_cmp(r2.pos, a.pos[6]), 0);
    check_terminated_list(ml, NAME, a.pos[6], 3);

    /* Once terminated: MG_OK and the same position, without writing anything. */
    int64_t v = node_version("/managed-ledgers/" NAME);
    cr_assert_geq(v, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ml_position_cmp(terminate_ml(ml), a.pos[6]), 0);
    cr_assert_eq(node_version("/managed-ledgers/" NAME), v);
    cr_assert_eq(ml_terminate(ml, NULL, NULL), MG_EINVAL);
    cr_assert_eq(ml_terminate(NULL, terminated_cb, NULL), MG_EINVAL);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

Test(managed, terminate_an_empty_log)
{
    setup_env(1, 1, 1, 1, 0);
    ml_managed *ml = open_ml(t.env, NAME, NULL, MG_OK);
    ml_ledger_info li[2];
    cr_assert_eq(ml_ledgers(ml, li, 2), 1);
    int64_t empty_id = li[0].ledger_id;
    ml_position p = terminate_ml(ml);
    cr_assert_eq(p.ledger_id, -1);
    cr_assert_eq(p.entry_id, -1);
    cr_assert(ml_is_terminated(ml));
    /* The empty ledger left the list and is deleted. */
    check_terminated_list(ml, NAME, p, 0);
    RUN_UNTIL(ledger_node_status(empty_id) == MG_ENOTFOUND);
    cr_assert_eq(ml_last_position(ml).ledger_id, -1);
    cr_assert_eq(ml_entries_total(ml), 0);
    static rres rr;
    read_ml(ml, ML_POSITION_EARLIEST, 10, 0, &rr);
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.count, 0);
    static adds a;
    memset(&a, 0, sizeof(a));
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    cr_assert_eq(ml_position_cmp(terminate_ml(ml), p), 0);
    cr_assert_eq(close_ml(ml), MG_OK);

    /* Reopened: still terminated and empty, and no ledger was created. */
    lnodes before, after;
    ledger_nodes(&before);
    ml = open_ml(t.env, NAME, NULL, MG_OK);
    cr_assert(ml_is_terminated(ml));
    cr_assert_eq(ml_ledgers(ml, li, 2), 0);
    cr_assert_eq(ml_messages_total(ml), 0);
    cr_assert_eq(ml_last_position(ml).ledger_id, -1);
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    cr_assert_eq(ml_position_cmp(terminate_ml(ml), p), 0);
    read_ml(ml, ML_POSITION_EARLIEST, 10, 0, &rr);
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.count, 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    ledger_nodes(&after);
    cr_assert_eq(after.count, before.count);
    check_terminated_list(NULL, NAME, p, 0);
    teardown_env();
}

Test(managed, terminated_survives_reopen)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .entries_per_ledger_max = 4 };
    ml_managed *ml = open_ml(t.env, NAME, &cfg, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(ml, &a, 10, 3); /* 4 + 4 + 2 */
    cr_assert_eq(a.ok, 10);
    ml_position p = terminate_ml(ml);
    cr_assert_eq(ml_position_cmp(p, a.pos[9]), 0);
    ml_ledger_info was[4];
    cr_assert_eq(ml_ledgers(ml, was, 4), 3);
    cr_assert_eq(close_ml(ml), MG_OK);
    check_terminated_list(NULL, NAME, p, 3);

    lnodes before;
    ledger_nodes(&before);
    for (int round = 0; round < 2; round++) {
        ml = open_ml(t.env, NAME, &cfg, MG_OK);
        cr_assert(ml_is_terminated(ml));
        /* No new ledger: the same three, closed, in memory and in the store. */
        ml_ledger_info li[4];
        cr_assert_eq(ml_ledgers(ml, li, 4), 3);
        for (size_t i = 0; i < 3; i++) {
            cr_assert_eq(li[i].ledger_id, was[i].ledger_id);
            cr_assert_eq(li[i].entries, was[i].entries);
            cr_assert_eq(li[i].size_bytes, was[i].size_bytes);
            cr_assert(li[i].closed);
        }
        check_terminated_list(ml, NAME, p, 3);
        lnodes now;
        ledger_nodes(&now);
        cr_assert_eq(now.count, before.count, "a ledger was created");
        cr_assert_eq(ml_position_cmp(ml_last_position(ml), p), 0);
        cr_assert_eq(ml_messages_total(ml), messages_before(10));
        cr_assert_eq(ml_entries_total(ml), 10);
        /* Adds refused; everything readable; past the end nothing; the same position. */
        cr_assert_eq(add_one(ml, &a), MG_ESTATE);
        static rres rr;
        read_ml(ml, ML_POSITION_EARLIEST, 100, 0, &rr);
        cr_assert_eq(rr.status, MG_OK);
        cr_assert_eq(rr.count, 10);
        for (size_t i = 0; i < 10; i++)
            check_entry(&rr, i, &a, (int64_t)i);
        rres_free(&rr);
        read_ml(ml, ml_next_position(ml, p), 10, 0, &rr);
        cr_assert_eq(rr.status, MG_OK);
        cr_assert_eq(rr.count, 0);
        cr_assert_eq(ml_position_cmp(find_index(ml, a.index[5]), a.pos[5]), 0);
        cr_assert_eq(ml_position_cmp(terminate_ml(ml), p), 0);
        cr_assert_eq(close_ml(ml), MG_OK);
    }
    check_terminated_list(NULL, NAME, p, 3);
    teardown_env();
}

Test(managed, retention_trims_a_terminated_log)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 0, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a); /* L0..L2 with 5 entries, L3 with 2 */
    int64_t l0 = a.pos[0].ledger_id, l1 = a.pos[5].ledger_id, l3 = a.pos[15].ledger_id;
    ml_position p = terminate_ml(ml);
    cr_assert_eq(ml_position_cmp(p, a.pos[16]), 0);
    /* On the handle that terminated: L0 consumed, it goes. */
    ml_set_oldest_needed(ml, a.pos[5]);
    RUN_UNTIL(ml_entries_total(ml) == 12);
    RUN_UNTIL(ledger_node_status(l0) == MG_ENOTFOUND);
    check_terminated_list(ml, NAME, p, 3);
    cr_assert_eq(close_ml(ml), MG_OK);

    /* Opened terminated: everything consumed, all but the last ledger go. */
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert(ml_is_terminated(ml));
    ml_set_oldest_needed(ml, ml_next_position(ml, p));
    RUN_UNTIL(ml_entries_total(ml) == 2);
    RUN_UNTIL(ledger_node_status(l1) == MG_ENOTFOUND);
    check_terminated_list(ml, NAME, p, 1);
    ml_ledger_info li[2];
    cr_assert_eq(ml_ledgers(ml, li, 2), 1);
    cr_assert_eq(li[0].ledger_id, l3);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[15]), 0);
    cr_assert_eq(ml_position_cmp(ml_last_position(ml), p), 0);
    static rres rr;
    read_ml(ml, ML_POSITION_EARLIEST, 10, 0, &rr);
    cr_assert_eq(rr.count, 2);
    check_entry(&rr, 0, &a, 15);
    check_entry(&rr, 1, &a, 16);
    rres_free(&rr);
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    cr_assert_eq(close_ml(ml), MG_OK);

    /* Still terminated, with the message count, after retention and a restart. */
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    cr_assert(ml_is_terminated(ml));
    cr_assert_eq(ml_messages_total(ml), messages_before(17));
    cr_assert_eq(ml_entries_total(ml), 2);
    cr_assert_eq(ml_position_cmp(terminate_ml(ml), p), 0);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

/* Adds n batches at once to a managed ledger that rolls over every 2 entries and terminates it
 * right away, so the termination meets rollovers in every phase; the log is then n entries in
 * ledgers of 2, all closed and listed, no other ledger left behind, and it reopens terminated. */
static void terminate_racing_rollover_case(const char *name, int64_t n, bool close_at_once)
{
    lnodes before;
    ledger_nodes(&before);
    ml_config cfg = { .entries_per_ledger_max = 2 };
    ml_managed *ml = open_ml(t.env, name, &cfg, MG_OK);
    uint64_t rollovers = counter("ml_ledger_rollovers_total");
    static adds a;
    memset(&a, 0, sizeof(a));
    for (int64_t k = 0; k < n; k++)
        cr_assert_eq(add_one(ml, &a), MG_OK);
    tres r = { .a = &a };
    terminate_start(ml, &r);
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    dres c = { 0 };
    if (close_at_once) {
        /* Close waits for the termination, which waits for the adds. */
        cr_assert_eq(ml_close(ml, done_cb, &c), MG_OK);
        cr_assert_eq(ml_terminate(ml, terminated_cb, &r), MG_ESTATE);
    }
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "n %lld: %s", (long long)n, mg_strerror(r.status));
    cr_assert_eq(r.adds_done, n);
    cr_assert_eq(a.ok, n, "n %lld", (long long)n);
    cr_assert(!a.disorder);
    cr_assert_eq(ml_position_cmp(r.pos, a.pos[n - 1]), 0, "n %lld", (long long)n);
    for (int64_t k = 0; k < n; k++)
        cr_assert_eq(a.pos[k].entry_id, k % 2);
    size_t ledgers = (size_t)(n + 1) / 2;
    if (close_at_once) {
        RUN_UNTIL(c.calls == 1);
        cr_assert_eq(c.status, MG_OK);
        check_terminated_list(NULL, name, r.pos, ledgers);
    } else {
        cr_assert(ml_is_terminated(ml));
        check_terminated_list(ml, name, r.pos, ledgers);
        cr_assert_eq(close_ml(ml), MG_OK);
    }
    /* Every ledger made since the start is in the list: a rollover under way when the
     * termination came was not listed, and its ledger is deleted. */
    lnodes after;
    ledger_nodes(&after);
    size_t made = 0;
    for (size_t i = 0; i < after.count; i++) {
        if (has_id(&before, after.ids[i]))
            continue;
        made++;
        bool listed = false;
        for (int64_t k = 0; k < n; k++)
            listed = listed || a.pos[k].ledger_id == after.ids[i];
        cr_assert(listed, "n %lld: ledger %lld left behind", (long long)n, (long long)after.ids[i]);
    }
    cr_assert_eq(made, ledgers);
    /* Each rollover that listed a ledger is one of them: none listed one to drop it after. */
    cr_assert_eq(counter("ml_ledger_rollovers_total") - rollovers, ledgers - 1);

    ml = open_ml(t.env, name, &cfg, MG_OK);
    cr_assert(ml_is_terminated(ml));
    cr_assert_eq(ml_entries_total(ml), n);
    cr_assert_eq(ml_position_cmp(ml_last_position(ml), r.pos), 0);
    cr_assert_eq(add_one(ml, &a), MG_ESTATE);
    cr_assert_eq(close_ml(ml), MG_OK);
}

Test(managed, terminate_racing_rollovers)
{
    setup_env(1, 1, 1, 1, 0);
    static const char *names[] = {
        "t/ns/persistent/r1", "t/ns/persistent/r2", "t/ns/persistent/r3",
        "t/ns/persistent/r4", "t/ns/persistent/r5", "t/ns/persistent/r6"
    };
    /* n even: the last add starts a rollover that nothing needs; n odd: adds wait for one. */
    for (int64_t n = 1; n <= 5; n++)
        terminate_racing_rollover_case(names[n - 1], n, false);
    terminate_racing_rollover_case(names[5], 4, true);
    teardown_env();
}

Test(managed, terminate_by_a_fenced_owner)
{
    setup_env(1, 1, 1, 1, 0);
    md_client *md2;
    bk_client *bk2;
    second_clients(&md2, &bk2);
    ml_env *env2;
    cr_assert_eq(ml_env_create(&t.loop, md2, bk2, NULL, &env2), MG_OK);
    ml_managed *first = open_ml(t.env, NAME, NULL, MG_OK);
    static adds a;
    memset(&a, 0, sizeof(a));
    add_many(first, &a, 3, 1);
    /* Another broker takes the topic over; the first one's termination is refused. */
    ml_managed *second = open_ml(env2, NAME, NULL, MG_OK);
    tres r = { 0 };
    terminate_start(first, &r);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_EFENCED, "%s", mg_strerror(r.status));
    cr_assert_eq(r.pos.ledger_id, -1);
    cr_assert(!ml_is_terminated(first));
    cr_assert_eq(ml_terminate(first, terminated_cb, &r), MG_EFENCED);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    cr_assert(!info->terminated);
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    /* The owner goes on writing, then terminates after its own adds. */
    static adds b;
    memset(&b, 0, sizeof(b));
    b.issued = b.done = b.next_cb = a.issued;
    add_many(second, &b, 2, 1);
    cr_assert_eq(b.ok, 2);
    cr_assert_eq(ml_position_cmp(terminate_ml(second), b.pos[a.issued + 1]), 0);
    cr_assert_eq(close_ml(first), MG_EFENCED);
    cr_assert_eq(close_ml(second), MG_OK);
    ml_env_destroy(env2);
    second_clients_close(md2, bk2);
    teardown_env();
}
