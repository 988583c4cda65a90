/* Bookie ledgers against real bookies (tests/support/bk_harness) and the real embedded metadata
 * store: create, add and read back byte for byte (3/3/2, 1/1/1, striped 3/2/2), completion
 * order, LAC and length, close and reopen, a bookie killed during writes (ensemble change), a
 * bookie that never answers (add timeout, ensemble change), two writers (recovery fences the
 * first), not enough bookies, delete, backpressure, metrics.
 *
 * Everything runs on one loop in the test thread. A repeating guard timer makes every
 * uv_run(UV_RUN_ONCE) return within a few milliseconds, and every wait is bounded. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"
#include "common/metrics.h"
#include "ledger/ledger.h"
#include "proto/ledger.pb-c.h"
#include "support/bk_harness.h"
#include "support/ml_harness.h"

TestSuite(bkledger, .timeout = 30);

#define WAIT_NS_MAX (20ull * 1000 * 1000 * 1000)

#define RUN_UNTIL(cond) MLH_RUN_UNTIL(&t.loop, cond, WAIT_NS_MAX)

/* ---- environment -------------------------------------------------------------------------- */

static mlh t;

static void set_flag(void *arg)
{
    *(bool *)arg = true;
}

static void setup_env(int bookies, int e, int w, int a, uint32_t add_timeout_ms,
                      uint32_t pending_max)
{
    mlh_opts o = { .bookie_count = bookies,
                   .metrics = true,
                   .env = { .ensemble_size = e,
                            .write_quorum = w,
                            .ack_quorum = a,
                            .add_timeout_ms = add_timeout_ms,
                            .pending_adds_max = pending_max } };
    cr_assert_eq(mlh_start(&t, &o), MG_OK);
}

static void teardown_env(void)
{
    cr_assert_eq(mlh_stop(&t), MG_OK, "handles left open on the loop");
}

static uint64_t counter(const char *name)
{
    return mlh_counter(&t, name);
}

/* ---- entries ------------------------------------------------------------------------------ */

static size_t entry_len(int64_t id)
{
    return 16 + (size_t)((id * 37) % 300);
}

static void entry_fill(int64_t id, uint8_t *dst)
{
    size_t n = entry_len(id);
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(id * 131 + (int64_t)i * 7 + (int64_t)(i >> 3));
}

static mg_buf *entry_buf(int64_t id)
{
    size_t n = entry_len(id);
    /* The entry sits in the middle of a larger buffer: off and len must be honoured. */
    mg_buf *b = mg_buf_new(n + 8);
    cr_assert_not_null(b);
    memset(mg_buf_data(b), 0xEE, n + 8);
    entry_fill(id, mg_buf_data(b) + 3);
    mg_buf_set_len(b, n + 8);
    return b;
}

static bool entry_matches(int64_t id, const bk_entry *en)
{
    uint8_t want[512];
    size_t n = entry_len(id);
    if (en->len != n)
        return false;
    entry_fill(id, want);
    return memcmp(mg_buf_data(en->buf) + en->off, want, n) == 0;
}

static int64_t total_length(int64_t count)
{
    int64_t s = 0;
    for (int64_t i = 0; i < count; i++)
        s += (int64_t)entry_len(i);
    return s;
}

/* ---- results ------------------------------------------------------------------------------ */

typedef struct lres {
    int calls;
    int status;
    ml_ledger *l;
} lres;

static void ledger_done(int status, ml_ledger *l, void *arg)
{
    lres *r = arg;
    r->calls++;
    r->status = status;
    r->l = l;
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

static ml_ledger *create_ledger(ml_env *env)
{
    lres r = { 0 };
    cr_assert_eq(ml_ledger_create(env, ledger_done, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "create: %s", mg_strerror(r.status));
    cr_assert_not_null(r.l);
    return r.l;
}

static ml_ledger *open_ledger(ml_env *env, int64_t id, bool recover, int expect)
{
    lres r = { 0 };
    cr_assert_eq(ml_ledger_open(env, id, recover, ledger_done, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, expect, "open: %s", mg_strerror(r.status));
    return r.l;
}

static int close_ledger(ml_ledger *l)
{
    dres r = { 0 };
    cr_assert_eq(ml_ledger_close(l, done_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

/* A pipelined writer: keeps up to window adds in flight until total were issued. */
typedef struct writer {
    ml_ledger *l;
    int64_t total;
    int64_t next;
    int window;
    int inflight;
    int64_t done;
    int64_t ok;
    int first_error;
    int refused; /* an add refused by the call (MG_EFENCED: found fenced), 0 if none */
    int64_t last_ok;
    int64_t expect_id; /* completions must come in entry order */
    bool disorder;
    int64_t hook_at;
    void (*hook)(struct writer *w);
} writer;

static void writer_pump(writer *w);

static void writer_add_done(int status, int64_t entry_id, void *arg)
{
    writer *w = arg;
    w->inflight--;
    w->done++;
    if (entry_id != w->expect_id)
        w->disorder = true;
    w->expect_id = entry_id + 1;
    if (status == MG_OK) {
        if (w->first_error != MG_OK)
            w->disorder = true; /* an add succeeded after one failed */
        w->ok++;
        w->last_ok = entry_id;
    } else if (w->first_error == MG_OK) {
        w->first_error = status;
    }
    if (w->hook != NULL && entry_id == w->hook_at)
        w->hook(w);
    if (w->first_error == MG_OK && w->refused == MG_OK)
        writer_pump(w);
}

static void writer_pump(writer *w)
{
    while (w->next < w->total && w->inflight < w->window) {
        mg_buf *b = entry_buf(w->next);
        int rc = ml_ledger_add(w->l, b, 3, entry_len(w->next), writer_add_done, w);
        mg_buf_unref(b); /* the ledger keeps its own reference */
        if (rc == MG_EAGAIN)
            break;
        if (rc == MG_EFENCED) {
            /* Found fenced while adds sent before may still complete: refused, not queued. */
            w->refused = rc;
            break;
        }
        cr_assert_eq(rc, MG_OK, "add: %s", mg_strerror(rc));
        w->next++;
        w->inflight++;
    }
}

static void write_entries(writer *w, ml_ledger *l, int64_t total, int window)
{
    w->l = l;
    w->total = total;
    w->window = window;
    w->last_ok = -1;
    writer_pump(w);
    RUN_UNTIL(w->done == w->next && (w->next == w->total || w->first_error != MG_OK));
}

/* Reads first..last through ml_ledger_read and checks every byte. */
typedef struct reader {
    int64_t next;
    int calls;
    int status;
    bool bad;
} reader;

static void reader_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    reader *r = arg;
    r->calls++;
    r->status = status;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].entry_id != r->next || !entry_matches(r->next, &entries[i]))
            r->bad = true;
        r->next++;
    }
}

static void read_all(ml_ledger *l, int64_t first, int64_t last, uint32_t max_bytes)
{
    reader r = { .next = first };
    int rounds = 0;
    while (r.next <= last) {
        int calls = r.calls;
        cr_assert_eq(ml_ledger_read(l, r.next, last, max_bytes, reader_done, &r), MG_OK);
        RUN_UNTIL(r.calls == calls + 1);
        cr_assert_eq(r.status, MG_OK, "read at %lld: %s", (long long)r.next, mg_strerror(r.status));
        cr_assert(!r.bad, "entry %lld differs", (long long)r.next);
        cr_assert_lt(++rounds, 100000);
    }
    cr_assert_eq(r.next, last + 1);
}

/* The stored metadata of a ledger (NULL when it is gone); free with
 * magnetar__ledger__ledger_metadata__free_unpacked. */
typedef struct mres {
    int calls;
    int status;
    Magnetar__Ledger__LedgerMetadata *m;
} mres;

static void meta_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    mres *r = arg;
    r->calls++;
    r->status = status;
    if (status == MG_OK)
        r->m = magnetar__ledger__ledger_metadata__unpack(NULL, len, value);
}

static Magnetar__Ledger__LedgerMetadata *meta_get(int64_t id)
{
    mres r = { 0 };
    char path[64];
    snprintf(path, sizeof(path), "/ledgers/%lld", (long long)id);
    cr_assert_eq(md_get(bkh_md_client(t.h), path, meta_got, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.m;
}

typedef struct bres {
    int calls;
    int status;
    size_t count;
    int64_t lac;
} bres;

static void bk_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    (void)entries;
    bres *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
}

/* Reads one entry straight from one bookie. */
static int bookie_read(const char *addr, int64_t ledger_id, int64_t entry_id)
{
    bres r = { 0 };
    cr_assert_eq(bk_client_read(bkh_bk_client(t.h), addr, ledger_id, entry_id, bk_read_done, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

typedef struct cres {
    int calls;
    int status;
    size_t count;
    char names[8][64];
} cres;

static void children_done(int status, const char *const *names, size_t count, void *arg)
{
    cres *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    for (size_t i = 0; i < count && i < 8; i++)
        snprintf(r->names[i], sizeof(r->names[i]), "%s", names[i]);
}

static size_t live_bookies(void)
{
    cres r = { 0 };
    cr_assert_eq(md_children(bkh_md_client(t.h), "/bookies", children_done, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    return r.count;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(bkledger, harness_registers_kills_restarts)
{
    setup_env(3, 1, 1, 1, 0, 0);
    cr_assert_eq(bkh_bookie_count(t.h), 3);
    cr_assert_eq(live_bookies(), 3);
    char old[64];
    snprintf(old, sizeof(old), "%s", bkh_bookie_addr(t.h, 1));
    cr_assert_eq(bkh_kill_bookie(t.h, 1), MG_OK);
    cr_assert_eq(bkh_kill_bookie(t.h, 1), MG_ESTATE);
    cr_assert(!bkh_bookie_running(t.h, 1));
    RUN_UNTIL(live_bookies() == 2);
    cr_assert_eq(bookie_read(old, 1, 0), MG_ECONNECTION);
    cr_assert_eq(bkh_restart_bookie(t.h, 1), MG_OK);
    cr_assert(bkh_bookie_running(t.h, 1));
    cr_assert_eq(live_bookies(), 3);
    /* The restarted bookie answers (an unknown entry: MG_ENOTFOUND, not a connection error). */
    cr_assert_eq(bookie_read(bkh_bookie_addr(t.h, 1), 1, 0), MG_ENOTFOUND);
    teardown_env();
}

static void add_read_case(int bookies, int e, int w, int a)
{
    setup_env(bookies, e, w, a, 0, 0);
    ml_ledger *l = create_ledger(t.env);
    cr_assert_geq(ml_ledger_id(l), 1);
    cr_assert_eq(ml_ledger_last_confirmed(l), -1);
    cr_assert_eq(ml_ledger_state_get(l), ML_LEDGER_OPEN);

    Magnetar__Ledger__LedgerMetadata *m = meta_get(ml_ledger_id(l));
    cr_assert_not_null(m);
    cr_assert_eq(m->ensemble_size, e);
    cr_assert_eq(m->write_quorum, w);
    cr_assert_eq(m->ack_quorum, a);
    cr_assert_eq(m->state, MAGNETAR__LEDGER__LEDGER_METADATA__STATE__OPEN);
    cr_assert_eq(m->n_ensembles, 1);
    cr_assert_eq(m->ensembles[0]->first_entry_id, 0);
    cr_assert_eq(m->ensembles[0]->n_bookies, (size_t)e);
    for (int i = 0; i < e; i++) {
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(m->ensembles[0]->bookies[i], m->ensembles[0]->bookies[j]);
    }
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);

    writer wr = { 0 };
    write_entries(&wr, l, 1000, 64);
    cr_assert_eq(wr.first_error, MG_OK, "%s", mg_strerror(wr.first_error));
    cr_assert_eq(wr.ok, 1000);
    cr_assert(!wr.disorder, "completions out of entry order");
    cr_assert_eq(ml_ledger_last_confirmed(l), 999);
    cr_assert_eq(ml_ledger_length(l), total_length(1000));
    read_all(l, 0, 999, 4096); /* many reads, a few entries each */
    read_all(l, 0, 999, 0);    /* as few reads as the bookies allow */
    read_all(l, 500, 500, 1);  /* max_bytes below one entry: still one entry */
    cr_assert_eq(ml_ledger_read(l, 0, 1000, 0, reader_done, &(reader){ 0 }), MG_EINVAL);

    int64_t id = ml_ledger_id(l);
    cr_assert_eq(close_ledger(l), MG_OK);

    m = meta_get(id);
    cr_assert_eq(m->state, MAGNETAR__LEDGER__LEDGER_METADATA__STATE__CLOSED);
    cr_assert_eq(m->last_entry_id, 999);
    cr_assert_eq(m->length, total_length(1000));
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);

    ml_ledger *r = open_ledger(t.env, id, false, MG_OK);
    cr_assert_eq(ml_ledger_state_get(r), ML_LEDGER_CLOSED);
    cr_assert_eq(ml_ledger_last_confirmed(r), 999);
    cr_assert_eq(ml_ledger_length(r), total_length(1000));
    read_all(r, 0, 999, 0);
    mg_buf *x = entry_buf(0);
    cr_assert_eq(ml_ledger_add(r, x, 0, 1, writer_add_done, NULL), MG_ESTATE);
    mg_buf_unref(x);
    ml_ledger_release(r);

    /* Recovery of a closed ledger just opens it. */
    r = open_ledger(t.env, id, true, MG_OK);
    cr_assert_eq(ml_ledger_last_confirmed(r), 999);
    ml_ledger_release(r);
    cr_assert_eq(counter("ml_recoveries_total"), 0);
    teardown_env();
}

Test(bkledger, add_read_3_3_2)
{
    add_read_case(3, 3, 3, 2);
}

Test(bkledger, add_read_1_1_1)
{
    add_read_case(1, 1, 1, 1);
}

Test(bkledger, add_read_striped_3_2_2)
{
    add_read_case(3, 3, 2, 2);
}

static int kill_index = -1;

static void kill_now(writer *w)
{
    (void)w;
    cr_assert_eq(bkh_kill_bookie(t.h, kill_index), MG_OK);
}

Test(bkledger, bookie_killed_during_writes)
{
    setup_env(4, 3, 3, 2, 0, 0);
    ml_ledger *l = create_ledger(t.env);
    int64_t id = ml_ledger_id(l);
    Magnetar__Ledger__LedgerMetadata *m = meta_get(id);
    /* The bookie outside the ensemble is the only possible replacement. */
    int spare = -1;
    for (int i = 0; i < 4; i++) {
        bool in = false;
        for (int j = 0; j < 3; j++)
            in = in || strcmp(m->ensembles[0]->bookies[j], bkh_bookie_addr(t.h, i)) == 0;
        if (!in)
            spare = i;
        else if (kill_index < 0)
            kill_index = i;
    }
    cr_assert_geq(spare, 0);
    char killed_addr[64], spare_addr[64];
    snprintf(killed_addr, sizeof(killed_addr), "%s", bkh_bookie_addr(t.h, kill_index));
    snprintf(spare_addr, sizeof(spare_addr), "%s", bkh_bookie_addr(t.h, spare));
    int killed_slot = -1;
    for (int j = 0; j < 3; j++) {
        if (strcmp(m->ensembles[0]->bookies[j], killed_addr) == 0)
            killed_slot = j;
    }
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);

    writer wr = { .hook_at = 200, .hook = kill_now };
    write_entries(&wr, l, 600, 64);
    cr_assert_eq(wr.first_error, MG_OK, "%s", mg_strerror(wr.first_error));
    cr_assert_eq(wr.ok, 600);
    cr_assert(!wr.disorder);
    cr_assert_eq(ml_ledger_last_confirmed(l), 599);
    cr_assert_eq(counter("ml_ensemble_changes_total"), 1);

    m = meta_get(id);
    cr_assert_eq(m->n_ensembles, 2);
    int64_t second = m->ensembles[1]->first_entry_id;
    cr_assert_gt(second, 200);
    cr_assert_leq(second, 600);
    cr_assert_str_eq(m->ensembles[1]->bookies[killed_slot], spare_addr);
    for (int j = 0; j < 3; j++) {
        if (j != killed_slot)
            cr_assert_str_eq(m->ensembles[1]->bookies[j], m->ensembles[0]->bookies[j]);
    }
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);
    /* The replacement holds the entries of the new ensemble, not the earlier ones. */
    cr_assert_eq(bookie_read(spare_addr, id, second), MG_OK);
    cr_assert_eq(bookie_read(spare_addr, id, 599), MG_OK);
    cr_assert_eq(bookie_read(spare_addr, id, 0), MG_ENOTFOUND);

    read_all(l, 0, 599, 0);
    cr_assert_eq(close_ledger(l), MG_OK);
    /* A reader on another handle sees everything, skipping the dead bookie. */
    ml_ledger *r = open_ledger(t.env, id, false, MG_OK);
    cr_assert_eq(ml_ledger_last_confirmed(r), 599);
    read_all(r, 0, 599, 0);
    ml_ledger_release(r);
    teardown_env();
}

/* A bookie that accepts connections and never answers. */
static int blackhole_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void created(int status, const char *path, void *arg)
{
    (void)path;
    dres *r = arg;
    r->calls++;
    r->status = status;
}

Test(bkledger, silent_bookie_times_out_and_is_replaced)
{
    setup_env(3, 3, 3, 3, 300, 0);
    /* Ensemble = bookies 0, 1 and the black hole; bookie 2 comes back as the spare. */
    cr_assert_eq(bkh_kill_bookie(t.h, 2), MG_OK);
    RUN_UNTIL(live_bookies() == 2);
    uint16_t port;
    int fd = blackhole_listen(&port);
    char node[64], hole[32];
    snprintf(hole, sizeof(hole), "127.0.0.1:%u", (unsigned)port);
    snprintf(node, sizeof(node), "/bookies/%s", hole);
    dres c = { 0 };
    cr_assert_eq(md_create(bkh_md_client(t.h), node, "x", 1, MD_EPHEMERAL, created, &c), MG_OK);
    RUN_UNTIL(c.calls == 1);
    cr_assert_eq(c.status, MG_OK);
    ml_ledger *l = create_ledger(t.env);
    cr_assert_eq(bkh_restart_bookie(t.h, 2), MG_OK);

    writer wr = { 0 };
    write_entries(&wr, l, 50, 10);
    cr_assert_eq(wr.first_error, MG_OK, "%s", mg_strerror(wr.first_error));
    cr_assert_eq(wr.ok, 50);
    cr_assert(!wr.disorder);
    Magnetar__Ledger__LedgerMetadata *m = meta_get(ml_ledger_id(l));
    /* Nothing could be acknowledged before the change: the first ensemble was edited. */
    cr_assert_eq(m->n_ensembles, 1);
    bool has_spare = false, has_hole = false;
    for (int j = 0; j < 3; j++) {
        has_spare = has_spare || strcmp(m->ensembles[0]->bookies[j], bkh_bookie_addr(t.h, 2)) == 0;
        has_hole = has_hole || strcmp(m->ensembles[0]->bookies[j], hole) == 0;
    }
    cr_assert(has_spare && !has_hole);
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);
    cr_assert_eq(counter("ml_ensemble_changes_total"), 1);
    cr_assert_eq(bookie_read(bkh_bookie_addr(t.h, 2), ml_ledger_id(l), 0), MG_OK);
    read_all(l, 0, 49, 0);
    cr_assert_eq(close_ledger(l), MG_OK);
    close(fd);
    teardown_env();
}

static void second_clients(md_client **md, bk_client **bk)
{
    cr_assert_eq(md_client_create(bkh_md_store(t.h), &t.loop, md), MG_OK);
    cr_assert_eq(bk_client_create(&t.loop, NULL, bk), MG_OK);
}

static void second_clients_close(md_client *md, bk_client *bk)
{
    bool a = false, b = false;
    md_client_close(md, set_flag, &a);
    bk_client_close(bk, set_flag, &b);
    RUN_UNTIL(a && b);
}

static void two_writers_case(int inflight_at_recovery)
{
    setup_env(3, 3, 3, 2, 0, 0);
    md_client *md2;
    bk_client *bk2;
    second_clients(&md2, &bk2);
    ml_env *env2;
    ml_env_opts o = { .ensemble_size = 3, .write_quorum = 3, .ack_quorum = 2 };
    cr_assert_eq(ml_env_create(&t.loop, md2, bk2, &o, &env2), MG_OK);

    ml_ledger *a = create_ledger(t.env);
    int64_t id = ml_ledger_id(a);
    writer wa = { 0 };
    write_entries(&wa, a, 100, 16);
    cr_assert_eq(wa.ok, 100);

    /* Leave some adds in flight while B recovers. */
    wa.total = 100 + inflight_at_recovery;
    writer_pump(&wa);
    lres rb = { 0 };
    cr_assert_eq(ml_ledger_open(env2, id, true, ledger_done, &rb), MG_OK);
    RUN_UNTIL(rb.calls == 1 && wa.done == wa.next);
    cr_assert_eq(rb.status, MG_OK, "%s", mg_strerror(rb.status));
    ml_ledger *b = rb.l;
    cr_assert_eq(ml_ledger_state_get(b), ML_LEDGER_CLOSED);
    cr_assert_geq(ml_ledger_last_confirmed(b), wa.last_ok);
    cr_assert_geq(ml_ledger_last_confirmed(b), 99);
    if (inflight_at_recovery == 0)
        cr_assert_eq(ml_ledger_last_confirmed(b), 99);
    cr_assert_eq(ml_ledger_length(b), total_length(ml_ledger_last_confirmed(b) + 1));
    cr_assert_eq(counter("ml_recoveries_total"), 0); /* B's env has no registry */
    read_all(b, 0, ml_ledger_last_confirmed(b), 0);

    /* A's next add is refused by the fenced bookies. */
    if (wa.first_error == MG_OK && wa.refused == MG_OK) {
        wa.total = wa.next + 1;
        writer_pump(&wa);
        RUN_UNTIL(wa.done == wa.next);
    }
    int err = wa.first_error != MG_OK ? wa.first_error : wa.refused;
    cr_assert_eq(err, MG_EFENCED, "%s", mg_strerror(err));
    cr_assert(!wa.disorder);
    cr_assert_eq(ml_ledger_state_get(a), ML_LEDGER_IN_RECOVERY);
    mg_buf *x = entry_buf(0);
    cr_assert_eq(ml_ledger_add(a, x, 0, 4, writer_add_done, &wa), MG_EFENCED);
    mg_buf_unref(x);
    cr_assert_eq(close_ledger(a), MG_EFENCED);

    Magnetar__Ledger__LedgerMetadata *m = meta_get(id);
    cr_assert_eq(m->state, MAGNETAR__LEDGER__LEDGER_METADATA__STATE__CLOSED);
    cr_assert_eq(m->last_entry_id, ml_ledger_last_confirmed(b));
    magnetar__ledger__ledger_metadata__free_unpacked(m, NULL);
    ml_ledger_release(b);
    ml_env_destroy(env2);
    second_clients_close(md2, bk2);
    teardown_env();
}

Test(bkledger, recovery_fences_the_first_writer)
{
    two_writers_case(0);
}

Test(bkledger, recovery_with_adds_in_flight)
{
    two_writers_case(40);
}

Test(bkledger, recovery_counts_and_open_ledger_lac)
{
    setup_env(3, 3, 3, 2, 0, 0);
    ml_ledger *a = create_ledger(t.env);
    int64_t id = ml_ledger_id(a);
    writer wa = { 0 };
    write_entries(&wa, a, 30, 8);
    cr_assert_eq(wa.ok, 30);
    /* Without recovery an open ledger is read up to what its bookies report. */
    ml_ledger *r = open_ledger(t.env, id, false, MG_OK);
    cr_assert_eq(ml_ledger_state_get(r), ML_LEDGER_OPEN);
    cr_assert_eq(ml_ledger_last_confirmed(r), 29);
    read_all(r, 0, 29, 0);
    ml_ledger_release(r);
    /* The writer keeps writing: nothing was fenced. */
    wa.total = 40;
    writer_pump(&wa);
    RUN_UNTIL(wa.done == wa.next);
    cr_assert_eq(wa.ok, 40);

    r = open_ledger(t.env, id, true, MG_OK);
    cr_assert_eq(ml_ledger_last_confirmed(r), 39);
    cr_assert_eq(counter("ml_recoveries_total"), 1);
    ml_ledger_release(r);
    /* Closing A now: the recovery closed the ledger where A's last add ended, so the close
     * agrees with it. */
    cr_assert_eq(close_ledger(a), MG_OK);

    /* An empty ledger recovers to last entry -1. */
    ml_ledger *e = create_ledger(t.env);
    r = open_ledger(t.env, ml_ledger_id(e), true, MG_OK);
    cr_assert_eq(ml_ledger_last_confirmed(r), -1);
    cr_assert_eq(ml_ledger_length(r), 0);
    ml_ledger_release(r);
    cr_assert_eq(counter("ml_recoveries_total"), 2);
    cr_assert_eq(close_ledger(e), MG_OK); /* nothing written: the recovery agrees with us */
    teardown_env();
}

Test(bkledger, not_enough_bookies)
{
    setup_env(2, 3, 3, 2, 0, 0);
    lres r = { 0 };
    cr_assert_eq(ml_ledger_create(t.env, ledger_done, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_ENOTFOUND);
    cr_assert_null(r.l);
    teardown_env();
}

Test(bkledger, no_replacement_fails_the_ledger)
{
    setup_env(3, 3, 3, 2, 0, 0);
    ml_ledger *l = create_ledger(t.env);
    kill_index = 0;
    writer wr = { .hook_at = 20, .hook = kill_now };
    write_entries(&wr, l, 200, 16);
    /* Entries up to the failure are acknowledged; the rest fail, in order. */
    cr_assert_eq(wr.first_error, MG_ENOTFOUND, "%s", mg_strerror(wr.first_error));
    cr_assert(!wr.disorder);
    cr_assert_geq(wr.ok, 21);
    cr_assert_eq(ml_ledger_last_confirmed(l), wr.last_ok);
    mg_buf *x = entry_buf(0);
    cr_assert_eq(ml_ledger_add(l, x, 0, 4, writer_add_done, &wr), MG_ESTATE);
    mg_buf_unref(x);
    int64_t id = ml_ledger_id(l);
    int64_t last = wr.last_ok;
    /* Closing still records what was acknowledged. */
    cr_assert_eq(close_ledger(l), MG_OK);
    ml_ledger *r = open_ledger(t.env, id, false, MG_OK);
    cr_assert_eq(ml_ledger_last_confirmed(r), last);
    read_all(r, 0, last, 0);
    ml_ledger_release(r);
    teardown_env();
}

Test(bkledger, delete_removes_metadata_and_data)
{
    setup_env(3, 3, 3, 2, 0, 0);
    ml_ledger *l = create_ledger(t.env);
    int64_t id = ml_ledger_id(l);
    writer wr = { 0 };
    write_entries(&wr, l, 10, 4);
    cr_assert_eq(close_ledger(l), MG_OK);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(bookie_read(bkh_bookie_addr(t.h, i), id, 5), MG_OK);
    dres d = { 0 };
    cr_assert_eq(ml_ledger_delete(t.env, id, done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(bookie_read(bkh_bookie_addr(t.h, i), id, 5), MG_ENOTFOUND);
    open_ledger(t.env, id, false, MG_ENOTFOUND);
    open_ledger(t.env, id, true, MG_ENOTFOUND);
    d.calls = 0;
    cr_assert_eq(ml_ledger_delete(t.env, id, done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_ENOTFOUND);
    teardown_env();
}

Test(bkledger, pending_adds_are_bounded)
{
    setup_env(1, 1, 1, 1, 0, 4);
    ml_ledger *l = create_ledger(t.env);
    writer wr = { .l = l, .last_ok = -1 };
    for (int i = 0; i < 4; i++) {
        mg_buf *b = entry_buf(i);
        cr_assert_eq(ml_ledger_add(l, b, 3, entry_len(i), writer_add_done, &wr), MG_OK);
        mg_buf_unref(b);
    }
    mg_buf *b = entry_buf(4);
    cr_assert_eq(ml_ledger_add(l, b, 3, entry_len(4), writer_add_done, &wr), MG_EAGAIN);
    cr_assert_eq(ml_ledger_add(l, b, 3, mg_buf_len(b), writer_add_done, &wr), MG_EINVAL);
    mg_buf_unref(b);
    cr_assert_eq(wr.done, 0); /* callbacks never run inside the call */
    RUN_UNTIL(wr.done == 4);
    cr_assert_eq(wr.ok, 4);
    cr_assert(!wr.disorder);
    cr_assert_eq(ml_ledger_length(l), total_length(4));
    cr_assert_eq(close_ledger(l), MG_OK);
    teardown_env();
}
