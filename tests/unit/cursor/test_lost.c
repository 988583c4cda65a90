/*
 * Lost ledgers (ledger.h "Lost ledgers", cursor.h skip_lost_ledgers) against a real managed
 * ledger on a real bookie (tests/support/bk_harness) and the real embedded metadata store: a
 * ledger of the list is deleted on its bookie the way an outsider would (bk_client_delete), or
 * its metadata is gone.
 *
 * Covered: reads stop at a lost ledger with MG_ENOTFOUND and serve what comes before it; the
 * ledger is marked lost once (ml_ledgers, ml_lost_ledger_count, ml_lost_ledgers_total); finds
 * leave it out; a cursor that does not skip stops there until a cumulative ack (an operator's
 * skip) or a reset moves it past, a reset into the lost ledger works and a reset by time to a
 * time inside it lands on the first entry after it; a cursor that skips
 * delivers everything else in order, acknowledges the lost entries and counts them
 * (mc_lost_entries_skipped, ml_lost_entries_skipped_total and its metric); opening a managed
 * ledger whose last non-empty ledger is gone (the message count from the list, adds go on with
 * the next index) and one whose last ledger's metadata is gone (kept in the list as lost with 0
 * entries, a new ledger written).
 *
 * Everything runs on one loop in the test thread. A repeating guard timer makes every
 * uv_run(UV_RUN_ONCE) return within a few milliseconds, and every wait is bounded.
 */
#include "cursor/cursor.h"

#include "common/error.h"
#include "common/metrics.h"
#include "ledger/ledger.h"
#include "proto/ledger.pb-c.h"
#include "support/bk_harness.h"
#include "support/ml_harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(lost, .timeout = 20);

#define WAIT_NS_MAX (15ull * 1000 * 1000 * 1000) /* under the suite's 20 s */
#define ENTRIES_MAX 64
#define PER_LEDGER  10

#define RUN_UNTIL(cond) MLH_RUN_UNTIL(&fx.loop, cond, WAIT_NS_MAX)

#define TOPIC "t/ns/persistent/lost"

static mlh fx; /* the loop, the bookie, the metrics, the env */

typedef struct tenv {
    ml_managed *ml;
    ml_position pos[ENTRIES_MAX];
    int64_t idx[ENTRIES_MAX];
    int n;
} tenv;

static tenv t;

typedef struct res {
    int calls;
    int status;
    void *obj;
    ml_position pos;
    int64_t index;
} res;

static void done_cb(int status, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
}

static const ml_config cfg = { .entries_per_ledger_max = PER_LEDGER,
                               .retention_time_ms = -1,
                               .retention_bytes = -1 };

static void open_ml(void)
{
    int rc = mlh_open_ml(&fx, fx.env, TOPIC, &cfg, &t.ml);
    cr_assert_eq(rc, MG_OK, "ml_open: %s", mg_strerror(rc));
}

static void close_ml(void)
{
    cr_assert_eq(mlh_close_ml(&fx, t.ml, NULL), MG_OK);
    t.ml = NULL;
}

static void setup(void)
{
    memset(&t, 0, sizeof(t));
    mlh_opts o = { .bookie_count = 1, .metrics = true, .env = { .ensemble_size = 1 } };
    cr_assert_eq(mlh_start(&fx, &o), MG_OK);
}

static void teardown(void)
{
    if (t.ml != NULL)
        close_ml();
    cr_assert_eq(mlh_stop(&fx), MG_OK, "handles left open on the loop");
}

static uint64_t counter(const char *name)
{
    return mlh_counter(&fx, name);
}

static void add_done(int status, ml_position pos, int64_t index, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
    r->index = index;
}

/* Publishes n one-message entries, one at a time. */
static void publish(int n)
{
    cr_assert_leq(t.n + n, ENTRIES_MAX);
    for (int i = 0; i < n; i++) {
        char text[32];
        int len = snprintf(text, sizeof(text), "entry-%d", t.n);
        mg_buf *b = mg_buf_new_copy(text, (size_t)len);
        cr_assert_not_null(b);
        res r = { 0 };
        cr_assert_eq(ml_add(t.ml, b, 0, (size_t)len, 1, add_done, &r), MG_OK);
        mg_buf_unref(b);
        RUN_UNTIL(r.calls == 1);
        cr_assert_eq(r.status, MG_OK, "add: %s", mg_strerror(r.status));
        t.pos[t.n] = r.pos;
        t.idx[t.n] = r.index;
        t.n++;
    }
}

static void expect_pos(ml_position got, ml_position want)
{
    cr_assert(got.ledger_id == want.ledger_id && got.entry_id == want.entry_id,
              "position %lld:%lld, expected %lld:%lld", (long long)got.ledger_id,
              (long long)got.entry_id, (long long)want.ledger_id, (long long)want.entry_id);
}

/* Deletes a ledger on the bookie only, as an outsider on the bookie port would. */
static void bookie_delete(int64_t ledger_id)
{
    res r = { 0 };
    cr_assert_eq(
        bk_client_delete(bkh_bk_client(fx.h), bkh_bookie_addr(fx.h, 0), ledger_id, done_cb, &r),
        MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "bookie delete: %s", mg_strerror(r.status));
}

static void ml_read_from(ml_position from, int max, mlh_read *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(ml_read(t.ml, from, max, 0, mlh_read_collect, r), MG_OK);
    RUN_UNTIL(r->calls == 1);
}

/* Reads the cursor until it is caught up (MG_OK with nothing) or an error; returns the last
 * status. */
static int cursor_read_all(mc_cursor *c, mlh_read *r)
{
    memset(r, 0, sizeof(*r));
    for (int round = 0; round < 100; round++) {
        int before_calls = r->calls;
        size_t before_n = r->n;
        cr_assert_eq(mc_read_entries(c, 4, 1u << 20, mlh_read_collect, r), MG_OK);
        RUN_UNTIL(r->calls == before_calls + 1);
        if (r->status == MG_EAGAIN)
            continue;
        if (r->status != MG_OK || r->n == before_n)
            return r->status;
    }
    cr_assert_fail("read did not catch up");
    return MG_EIO;
}

static void expect_entries(const mlh_read *r, int first, int end, size_t at)
{
    for (int i = first; i < end; i++, at++) {
        cr_assert_lt(at, r->n, "entry %d not delivered (%zu delivered)", i, r->n);
        expect_pos(r->got[at], t.pos[i]);
    }
}

static void cursor_opened(int status, mc_cursor *c, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->obj = c;
}

static mc_cursor *open_cursor(const char *name, bool skip)
{
    mc_cursor_opts o = { .persist_interval_ms = 3600000u, .skip_lost_ledgers = skip };
    res r = { 0 };
    cr_assert_eq(mc_cursor_open(t.ml, name, true, MC_INITIAL_EARLIEST, &o, cursor_opened, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "open %s: %s", name, mg_strerror(r.status));
    return r.obj;
}

static void close_cursor(mc_cursor *c)
{
    res r = { 0 };
    cr_assert_eq(mc_cursor_close(c, done_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
}

static void found(int status, ml_position pos, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
}

static bool lost_in_list(int64_t ledger_id, int64_t *entries)
{
    ml_ledger_info li[16];
    size_t n = ml_ledgers(t.ml, li, 16);
    cr_assert_leq(n, 16);
    for (size_t i = 0; i < n; i++) {
        if (li[i].ledger_id == ledger_id) {
            if (entries != NULL)
                *entries = li[i].entries;
            return li[i].lost;
        }
    }
    cr_assert_fail("ledger %lld not in the list", (long long)ledger_id);
    return false;
}

/* Entries 0..29 in three ledgers A, B, C (PER_LEDGER each); B is deleted on the bookie. */
static void three_ledgers_middle_lost(void)
{
    open_ml();
    for (int i = 0; i < 3; i++) {
        publish(PER_LEDGER);
        usleep(3000); /* each ledger's broker timestamps after the one before's */
    }
    cr_assert(t.pos[0].ledger_id < t.pos[10].ledger_id &&
              t.pos[10].ledger_id < t.pos[20].ledger_id);
    bookie_delete(t.pos[10].ledger_id);
}

Test(lost, reads_finds_and_cursors_meet_a_lost_ledger, .init = setup, .fini = teardown)
{
    three_ledgers_middle_lost();
    int64_t b = t.pos[10].ledger_id;

    /* A read from before it returns what comes before; one from it is told. */
    mlh_read r;
    ml_read_from(t.pos[5], 20, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.n, 5, "%zu entries", r.n);
    expect_pos(r.got[4], t.pos[9]);
    ml_read_from(t.pos[10], 20, &r);
    cr_assert_eq(r.status, MG_ENOTFOUND, "read from the lost ledger: %s", mg_strerror(r.status));
    cr_assert_eq(r.n, 0);
    cr_assert(ml_ledger_lost(t.ml, b));
    cr_assert(!ml_ledger_lost(t.ml, t.pos[0].ledger_id));
    cr_assert(!ml_ledger_lost(t.ml, t.pos[20].ledger_id));
    int64_t entries = -1;
    cr_assert(lost_in_list(b, &entries));
    cr_assert_eq(entries, PER_LEDGER, "the list keeps its entry count");
    cr_assert_eq(ml_lost_ledger_count(t.ml), 1);
    ml_read_from(t.pos[12], 20, &r); /* known now: told again, counted once */
    cr_assert_eq(r.status, MG_ENOTFOUND);
    cr_assert_eq(counter("ml_lost_ledgers_total"), 1);

    /* Finds leave it out. */
    res f = { 0 };
    cr_assert_eq(ml_find_by_index(t.ml, t.idx[25], found, &f), MG_OK);
    RUN_UNTIL(f.calls == 1);
    cr_assert_eq(f.status, MG_OK, "find: %s", mg_strerror(f.status));
    expect_pos(f.pos, t.pos[25]);

    /* Without skipping: the cursor stops at it, until an operator's skip (a cumulative ack
     * over the lost entries). */
    mc_cursor *stop = open_cursor("stop", false);
    cr_assert_eq(cursor_read_all(stop, &r), MG_ENOTFOUND);
    cr_assert_eq(r.n, PER_LEDGER);
    expect_entries(&r, 0, 10, 0);
    cr_assert_eq(mc_read_position(stop).ledger_id, b);
    cr_assert_eq(cursor_read_all(stop, &r), MG_ENOTFOUND, "still stopped");
    cr_assert_eq(r.n, 0);
    cr_assert_eq(mc_ack_cumulative(stop, t.pos[19], NULL, 0), MG_OK);
    cr_assert_eq(cursor_read_all(stop, &r), MG_OK);
    cr_assert_eq(r.n, PER_LEDGER);
    expect_entries(&r, 20, 30, 0);
    cr_assert_eq(mc_lost_entries_skipped(stop), 0);

    /* A reset into the lost ledger works (and stops there again); one past it reads on. */
    res rs = { 0 };
    cr_assert_eq(mc_reset_to_position(stop, t.pos[15], done_cb, &rs), MG_OK);
    RUN_UNTIL(rs.calls == 1);
    cr_assert_eq(rs.status, MG_OK, "reset into the lost ledger: %s", mg_strerror(rs.status));
    cr_assert_eq(cursor_read_all(stop, &r), MG_ENOTFOUND);
    memset(&rs, 0, sizeof(rs));
    cr_assert_eq(mc_reset_to_position(stop, t.pos[20], done_cb, &rs), MG_OK);
    RUN_UNTIL(rs.calls == 1);
    cr_assert_eq(rs.status, MG_OK, "reset past the lost ledger: %s", mg_strerror(rs.status));
    cr_assert_eq(cursor_read_all(stop, &r), MG_OK);
    expect_entries(&r, 20, 30, 0);
    /* A reset by time to a time inside the lost ledger lands on the first entry after it. */
    ml_read_from(t.pos[20], 1, &r);
    cr_assert_eq(r.status, MG_OK);
    int64_t ts20 = r.ts[0];
    ml_read_from(t.pos[9], 1, &r);
    cr_assert_lt(r.ts[0], ts20);
    memset(&rs, 0, sizeof(rs));
    cr_assert_eq(mc_reset_to_time(stop, r.ts[0] + 1, done_cb, &rs), MG_OK);
    RUN_UNTIL(rs.calls == 1);
    cr_assert_eq(rs.status, MG_OK, "reset by time: %s", mg_strerror(rs.status));
    expect_pos(mc_read_position(stop), t.pos[20]);
    cr_assert_eq(cursor_read_all(stop, &r), MG_OK);
    expect_entries(&r, 20, 30, 0);
    close_cursor(stop);

    /* Skipping: everything else, in order; the lost entries acknowledged and counted. */
    mc_cursor *skip = open_cursor("skip", true);
    cr_assert_eq(cursor_read_all(skip, &r), MG_OK);
    cr_assert_eq(r.n, 2 * PER_LEDGER, "%zu entries", r.n);
    expect_entries(&r, 0, 10, 0);
    expect_entries(&r, 20, 30, 10);
    cr_assert_eq(mc_lost_entries_skipped(skip), PER_LEDGER);
    cr_assert_eq(ml_lost_entries_skipped_total(t.ml), PER_LEDGER);
    cr_assert_eq(counter("ml_lost_entries_skipped_total"), PER_LEDGER);
    cr_assert(mc_is_acked(skip, t.pos[10]) && mc_is_acked(skip, t.pos[19]));
    cr_assert(!mc_is_acked(skip, t.pos[9]) && !mc_is_acked(skip, t.pos[20]));
    cr_assert_eq(mc_backlog_entries(skip), 2 * PER_LEDGER);
    /* Acknowledging what was delivered leaves nothing: the lost ledger does not hold M back. */
    cr_assert_eq(mc_ack_cumulative(skip, t.pos[9], NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(skip), t.pos[19]);
    close_cursor(skip);
}

Test(lost, open_with_the_last_ledger_gone_from_its_bookie, .init = setup, .fini = teardown)
{
    open_ml();
    publish(2 * PER_LEDGER);
    int64_t b = t.pos[10].ledger_id;
    close_ml();
    bookie_delete(b);

    open_ml(); /* used to fail: the last entry's index could not be read */
    cr_assert(ml_ledger_lost(t.ml, b));
    cr_assert(!ml_ledger_lost(t.ml, t.pos[0].ledger_id));
    cr_assert_eq(ml_messages_total(t.ml), 2 * PER_LEDGER, "the count from the list");
    expect_pos(ml_last_position(t.ml), t.pos[19]);
    cr_assert_eq(counter("ml_lost_ledgers_total"), 1);
    publish(1);
    cr_assert_eq(t.idx[20], 2 * PER_LEDGER, "the index goes on: %lld", (long long)t.idx[20]);
    cr_assert_gt(t.pos[20].ledger_id, b);

    mlh_read r;
    ml_read_from(t.pos[0], 30, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.n, PER_LEDGER);
    ml_read_from(t.pos[20], 30, &r);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.n, 1);
}

static void node_created(int status, const char *path, void *arg)
{
    (void)path;
    done_cb(status, arg);
}

static void ledger_created(int status, ml_ledger *l, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->obj = l;
}

Test(lost, open_with_the_last_ledger_metadata_gone, .init = setup, .fini = teardown)
{
    /* A list whose last ledger (not closed: its writer died) has no /ledgers node: a real
     * ledger id (ids only grow along a list), whose ledger is then deleted. */
    res lc = { 0 };
    cr_assert_eq(ml_ledger_create(fx.env, ledger_created, &lc), MG_OK);
    RUN_UNTIL(lc.calls == 1);
    cr_assert_eq(lc.status, MG_OK, "ledger create: %s", mg_strerror(lc.status));
    const int64_t gone = ml_ledger_id(lc.obj);
    res ld = { 0 };
    cr_assert_eq(ml_ledger_close(lc.obj, done_cb, &ld), MG_OK);
    RUN_UNTIL(ld.calls == 1);
    memset(&ld, 0, sizeof(ld));
    cr_assert_eq(ml_ledger_delete(fx.env, gone, done_cb, &ld), MG_OK);
    RUN_UNTIL(ld.calls == 1);
    cr_assert_eq(ld.status, MG_OK, "ledger delete: %s", mg_strerror(ld.status));
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo li =
        MAGNETAR__LEDGER__MANAGED_LEDGER_INFO__LEDGER_INFO__INIT;
    li.ledger_id = gone;
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo *lis[1] = { &li };
    Magnetar__Ledger__ManagedLedgerInfo info = MAGNETAR__LEDGER__MANAGED_LEDGER_INFO__INIT;
    info.n_ledgers = 1;
    info.ledgers = lis;
    uint8_t buf[256];
    size_t len = magnetar__ledger__managed_ledger_info__pack(&info, buf);
    res r = { 0 };
    cr_assert_eq(md_create(bkh_md_client(fx.h), "/managed-ledgers/" TOPIC, buf, len,
                           MD_CREATE_PARENTS, node_created, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "md_create: %s", mg_strerror(r.status));

    open_ml();
    int64_t entries = -1;
    cr_assert(lost_in_list(gone, &entries), "kept in the list, marked lost");
    cr_assert_eq(entries, 0);
    cr_assert_eq(ml_lost_ledger_count(t.ml), 1);
    publish(3);
    cr_assert_gt(t.pos[0].ledger_id, gone);
    cr_assert_eq(t.idx[0], 0);
    mlh_read rr;
    ml_read_from((ml_position){ gone, 0 }, 10, &rr); /* 0 entries: straight to the next ledger */
    cr_assert_eq(rr.status, MG_OK);
    cr_assert_eq(rr.n, 3);
}
