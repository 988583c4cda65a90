/*
 * Managed cursors (src/cursor/cursor.h) against a real managed ledger on real bookies
 * (tests/support/bk_harness) and the real embedded metadata store. Nothing is mocked.
 *
 * Covered: individual and cumulative acks, batch-index acks (partial, masked to the batch size,
 * completing to a whole ack, cumulative with an ack set); the mark-delete position moving over
 * contiguous acks; exact entry and message backlogs after scattered acks across ledger
 * rollovers, and after each of 200 acks in random order (checked against a brute-force count,
 * across a close and reopen); reads skipping acknowledged entries; rewind redelivering
 * unacknowledged entries
 * only; resets by position and by publish time (persisted before their callback); a durable
 * cursor closed and reopened with its state; a crash (abort, no write) reopening at the last
 * persisted state: unpersisted acks redelivered, nothing skipped; a record truncated to its
 * size budget (a prefix of the ranges, the rest redelivered); the persist interval (no write
 * while it runs, one write when it expires); a second owner fencing the first (MG_EFENCED);
 * a second broker (another env) taking the topic over from the last persisted state;
 * non-durable cursors writing nothing; deletion; the group's slowest position.
 *
 * Everything runs on one loop in the test thread. A repeating guard timer makes every
 * uv_run(UV_RUN_ONCE) return within a few milliseconds, and every wait is bounded.
 */
#include "cursor/cursor.h"

#include "common/error.h"
#include "cursor/limits.h"
#include "ledger/ledger.h"
#include "proto/ledger.pb-c.h"
#include "support/bk_harness.h"
#include "support/ml_harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

TestSuite(cursor, .timeout = 10);

#define WAIT_NS_MAX (8ull * 1000 * 1000 * 1000) /* under the suite's 10 s */
#define ENTRIES_MAX 256

#define RUN_UNTIL(cond) MLH_RUN_UNTIL(&fx.loop, cond, WAIT_NS_MAX)

#define LONG_INTERVAL_MS 3600000u /* writes only on flush and close */

/* ---- environment -------------------------------------------------------------------------- */

static mlh fx; /* the loop, the bookie, the env */

typedef struct tenv {
    ml_managed *ml;
    ml_position pos[ENTRIES_MAX]; /* every entry published, in order */
    int64_t idx[ENTRIES_MAX];     /* its BrokerEntryMetadata index */
    int32_t msgs[ENTRIES_MAX];    /* its message count */
    int n;
} tenv;

static tenv t;

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

/* A fresh topic on one bookie (1/1/1); entries_per_ledger 0 = no rollover in the test. */
static void setup(const char *topic, int64_t entries_per_ledger)
{
    memset(&t, 0, sizeof(t));
    mlh_opts o = { .bookie_count = 1, .env = { .ensemble_size = 1 } };
    cr_assert_eq(mlh_start(&fx, &o), MG_OK);
    ml_config cfg = { .entries_per_ledger_max = entries_per_ledger,
                      .retention_time_ms = -1,
                      .retention_bytes = -1 };
    int rc = mlh_open_ml(&fx, fx.env, topic, &cfg, &t.ml);
    cr_assert_eq(rc, MG_OK, "ml_open: %s", mg_strerror(rc));
}

static void teardown(void)
{
    cr_assert_eq(mlh_close_ml(&fx, t.ml, NULL), MG_OK);
    cr_assert_eq(mlh_stop(&fx), MG_OK, "handles left open on the loop");
}

/* ---- publishing --------------------------------------------------------------------------- */

typedef struct addres {
    int calls;
    int status;
    ml_position pos;
    int64_t index;
} addres;

static void add_done(int status, ml_position pos, int64_t index, void *arg)
{
    addres *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
    r->index = index;
}

/* Publishes n entries; entry i of this call holds msgs_each(i) messages. */
static void publish(int n, int32_t (*msgs_each)(int i))
{
    cr_assert_leq(t.n + n, ENTRIES_MAX);
    addres r[ENTRIES_MAX];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < n; i++) {
        char text[64];
        int len = snprintf(text, sizeof(text), "entry-%d", t.n + i);
        mg_buf *b = mg_buf_new_copy(text, (size_t)len);
        cr_assert_not_null(b);
        int32_t m = msgs_each ? msgs_each(t.n + i) : 1;
        t.msgs[t.n + i] = m;
        cr_assert_eq(ml_add(t.ml, b, 0, (size_t)len, m, add_done, &r[i]), MG_OK);
        mg_buf_unref(b);
    }
    for (int i = 0; i < n; i++) {
        RUN_UNTIL(r[i].calls == 1);
        cr_assert_eq(r[i].status, MG_OK, "add: %s", mg_strerror(r[i].status));
        t.pos[t.n + i] = r[i].pos;
        t.idx[t.n + i] = r[i].index;
    }
    t.n += n;
}

static ml_position P(int i)
{
    return t.pos[i];
}

static ml_position before(int i)
{
    return (ml_position){ t.pos[i].ledger_id, t.pos[i].entry_id - 1 };
}

static void expect_pos(ml_position got, ml_position want)
{
    cr_expect(got.ledger_id == want.ledger_id && got.entry_id == want.entry_id,
              "position %lld:%lld, expected %lld:%lld", (long long)got.ledger_id,
              (long long)got.entry_id, (long long)want.ledger_id, (long long)want.entry_id);
}

/* ---- cursor helpers ----------------------------------------------------------------------- */

typedef struct openres {
    int calls;
    int status;
    mc_cursor *c;
} openres;

static void cursor_opened(int status, mc_cursor *c, void *arg)
{
    openres *r = arg;
    r->calls++;
    r->status = status;
    r->c = c;
}

static mc_cursor *open_cursor(const char *name, bool durable, mc_initial initial,
                              const mc_cursor_opts *o)
{
    openres r = { 0 };
    cr_assert_eq(mc_cursor_open(t.ml, name, durable, initial, o, cursor_opened, &r), MG_OK);
    cr_assert_eq(r.calls, 0, "callback from inside the call");
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "open %s: %s", name, mg_strerror(r.status));
    cr_assert_not_null(r.c);
    return r.c;
}

static const mc_cursor_opts quiet = { .persist_interval_ms = LONG_INTERVAL_MS };

static int finish(int (*fn)(mc_cursor *, mc_done_cb, void *), mc_cursor *c)
{
    dres r = { 0 };
    cr_assert_eq(fn(c, done_cb, &r), MG_OK);
    cr_assert_eq(r.calls, 0, "callback from inside the call");
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

static int close_cursor(mc_cursor *c)
{
    return finish(mc_cursor_close, c);
}

static int flush_cursor(mc_cursor *c)
{
    return finish(mc_cursor_flush, c);
}

/* Reads until caught up; returns the positions delivered (in r). */
static void read_all(mc_cursor *c, int batch, mlh_read *r)
{
    memset(r, 0, sizeof(*r));
    for (int round = 0; round < 200; round++) {
        int before_calls = r->calls;
        size_t before_n = r->n;
        cr_assert_eq(mc_read_entries(c, batch, 1u << 20, mlh_read_collect, r), MG_OK);
        RUN_UNTIL(r->calls == before_calls + 1);
        if (r->status == MG_EAGAIN)
            continue;
        cr_assert_eq(r->status, MG_OK, "read: %s", mg_strerror(r->status));
        if (r->n == before_n)
            return;
    }
    cr_assert_fail("read did not catch up");
}

/* The delivered positions are exactly the entries whose index is in want[] (in order). */
static void expect_delivered(const mlh_read *r, const int *want, size_t nwant)
{
    cr_assert_eq(r->n, nwant, "delivered %zu entries, expected %zu", r->n, nwant);
    for (size_t i = 0; i < nwant; i++)
        expect_pos(r->got[i], P(want[i]));
}

static int64_t msgs_in(int first, int last) /* messages of entries first..last */
{
    int64_t s = 0;
    for (int i = first; i <= last; i++)
        s += t.msgs[i];
    return s;
}

typedef struct getres {
    int calls;
    int status;
    int64_t version;
    Magnetar__Ledger__CursorInfo *info;
} getres;

static void got_node(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    getres *r = arg;
    r->calls++;
    r->status = status;
    if (status == MG_OK) {
        r->version = stat->version;
        r->info = magnetar__ledger__cursor_info__unpack(NULL, len, value);
    }
}

/* The stored CursorInfo of name (NULL with *status MG_ENOTFOUND when there is none). */
static Magnetar__Ledger__CursorInfo *stored(const char *name, int *status, int64_t *version)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", ml_metadata_path(t.ml), name);
    getres r = { 0 };
    cr_assert_eq(md_get(bkh_md_client(fx.h), path, got_node, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    *status = r.status;
    if (version)
        *version = r.version;
    if (r.status == MG_OK)
        cr_assert_not_null(r.info, "stored CursorInfo does not parse");
    return r.info;
}

static int32_t four(int i)
{
    (void)i;
    return 4;
}

static int32_t varied(int i)
{
    return 1 + i % 3;
}

/* ---- tests -------------------------------------------------------------------------------- */

Test(cursor, individual_acks_move_mark_delete)
{
    setup("t/ns/persistent/individual", 0);
    publish(10, NULL);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    expect_pos(mc_mark_delete_position(c), before(0));
    expect_pos(mc_read_position(c), P(0));
    cr_expect_eq(mc_backlog_entries(c), 10);
    cr_expect_eq(mc_backlog_messages(c), 10);

    cr_assert_eq(mc_ack_individual(c, P(1), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(2), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), before(0));
    cr_expect_eq(mc_acked_entries(c), 2);
    cr_expect_eq(mc_acked_range_count(c), 1);
    cr_expect_eq(mc_backlog_entries(c), 8);
    cr_expect(mc_is_acked(c, P(1)));
    cr_expect_not(mc_is_acked(c, P(0)));

    cr_assert_eq(mc_ack_individual(c, P(0), NULL, 0), MG_OK); /* fills the gap */
    expect_pos(mc_mark_delete_position(c), P(2));
    cr_expect_eq(mc_acked_entries(c), 0);
    cr_expect_eq(mc_backlog_entries(c), 7);
    cr_expect_eq(mc_backlog_messages(c), 7);

    cr_assert_eq(mc_ack_individual(c, P(4), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(4), NULL, 0), MG_OK); /* again: no-op */
    cr_assert_eq(mc_ack_individual(c, P(1), NULL, 0), MG_OK); /* below M: no-op */
    expect_pos(mc_mark_delete_position(c), P(2));
    cr_assert_eq(mc_ack_individual(c, P(3), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(4));
    cr_expect_eq(mc_backlog_entries(c), 5);

    /* Positions that are not entries are refused. */
    ml_position past = { P(9).ledger_id, P(9).entry_id + 5 };
    cr_expect_eq(mc_ack_individual(c, past, NULL, 0), MG_EINVAL);
    cr_expect_eq(mc_ack_individual(c, (ml_position){ -1, 0 }, NULL, 0), MG_EINVAL);
    cr_expect_eq(mc_ack_cumulative(c, past, NULL, 0), MG_EINVAL);
    cr_expect_eq(mc_backlog_entries(c), 5);

    /* Acking the rest one by one ends with nothing acknowledged above M = the last entry. */
    for (int i = 9; i >= 5; i--)
        cr_assert_eq(mc_ack_individual(c, P(i), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(9));
    cr_expect_eq(mc_backlog_entries(c), 0);
    cr_expect_eq(mc_backlog_messages(c), 0);
    cr_expect_eq(mc_acked_entries(c), 0);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, cumulative_acks)
{
    setup("t/ns/persistent/cumulative", 0);
    publish(10, NULL);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    cr_assert_eq(mc_ack_individual(c, P(5), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(7), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_cumulative(c, P(3), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(3));
    cr_expect_eq(mc_acked_entries(c), 2);
    cr_expect_eq(mc_backlog_entries(c), 4); /* 4, 6, 8, 9 */
    cr_expect_eq(mc_backlog_messages(c), 4);
    cr_assert_eq(mc_ack_individual(c, P(4), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(5));
    cr_assert_eq(mc_ack_cumulative(c, P(2), NULL, 0), MG_OK); /* behind M: no-op */
    expect_pos(mc_mark_delete_position(c), P(5));
    cr_assert_eq(mc_ack_cumulative(c, P(6), NULL, 0), MG_OK); /* then 7 is acked: M = 7 */
    expect_pos(mc_mark_delete_position(c), P(7));
    cr_expect_eq(mc_acked_entries(c), 0);
    cr_expect_eq(mc_backlog_entries(c), 2);
    cr_expect_eq(mc_backlog_messages(c), 2);
    cr_assert_eq(mc_ack_cumulative(c, P(9), NULL, 0), MG_OK);
    cr_expect_eq(mc_backlog_entries(c), 0);
    cr_expect_eq(mc_backlog_messages(c), 0);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, batch_index_acks)
{
    setup("t/ns/persistent/batches", 0);
    /* Opened on the empty log, the cursor knows every message count exactly. */
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    publish(5, four); /* 5 entries of 4 messages */
    mlh_read r;
    read_all(c, 100, &r); /* the cursor learns each entry's message count */
    cr_expect_eq(r.n, 5);
    cr_expect_eq(mc_backlog_messages(c), 20);

    uint64_t set = 0xEull; /* message 0 acknowledged */
    cr_assert_eq(mc_ack_individual(c, P(0), &set, 1), MG_OK);
    cr_expect_eq(mc_backlog_messages(c), 19);
    cr_expect_eq(mc_backlog_entries(c), 5);
    const uint64_t *w = NULL;
    size_t nw = 0;
    cr_assert_eq(mc_batch_ack_set(c, P(0), &w, &nw), MG_OK);
    cr_expect_eq(nw, 1);
    cr_expect_eq(w[0], 0xEull);
    set = 0xAull; /* and message 2: AND gives 0b1010 */
    cr_assert_eq(mc_ack_individual(c, P(0), &set, 1), MG_OK);
    cr_assert_eq(mc_batch_ack_set(c, P(0), &w, &nw), MG_OK);
    cr_expect_eq(w[0], 0xAull);
    cr_expect_eq(mc_backlog_messages(c), 18);
    set = 0; /* the rest: a whole ack, M moves */
    cr_assert_eq(mc_ack_individual(c, P(0), &set, 1), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(0));
    cr_expect_eq(mc_batch_ack_set(c, P(0), &w, &nw), MG_ENOTFOUND);
    cr_expect_eq(mc_backlog_messages(c), 16);
    cr_expect_eq(mc_backlog_entries(c), 4);

    /* Bits past the batch size (4) are not messages: all-but-message-0 leaves 3 unacked. */
    set = ~1ull;
    cr_assert_eq(mc_ack_individual(c, P(3), &set, 1), MG_OK);
    cr_assert_eq(mc_batch_ack_set(c, P(3), &w, &nw), MG_OK);
    cr_expect_eq(w[0], 0xEull);
    cr_expect_eq(mc_backlog_messages(c), 15);

    /* Cumulative with an ack set on entry 2: M = entry 1, entry 2 keeps messages 2 and 3. */
    set = 0xCull;
    cr_assert_eq(mc_ack_cumulative(c, P(2), &set, 1), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(1));
    cr_expect_eq(mc_backlog_entries(c), 3);
    cr_expect_eq(mc_backlog_messages(c), 2 + 3 + 4);

    /* Whole ack of a partially acknowledged entry counts its remaining messages only. */
    cr_assert_eq(mc_ack_individual(c, P(3), NULL, 0), MG_OK);
    cr_expect_eq(mc_backlog_messages(c), 2 + 4);
    cr_expect_eq(mc_ack_individual(c, P(4), &set, 0), MG_EINVAL);
    uint64_t big[MC_ACK_SET_WORDS_MAX + 1] = { 0 };
    cr_expect_eq(mc_ack_individual(c, P(4), big, MC_ACK_SET_WORDS_MAX + 1), MG_ELIMIT);

    /* The ack sets survive a close and reopen. */
    cr_expect_eq(close_cursor(c), MG_OK);
    c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    expect_pos(mc_mark_delete_position(c), P(1));
    cr_assert_eq(mc_batch_ack_set(c, P(2), &w, &nw), MG_OK);
    cr_expect_eq(w[0], 0xCull);
    cr_expect(mc_is_acked(c, P(3)));
    cr_expect_eq(mc_backlog_entries(c), 2);
    cr_expect_eq(mc_backlog_messages(c), 2 + 4);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, read_skips_acked_and_rewind_redelivers_unacked)
{
    setup("t/ns/persistent/reads", 0);
    publish(10, NULL);
    mc_cursor *c = open_cursor("sub", false, MC_INITIAL_EARLIEST, NULL);
    cr_assert_eq(mc_ack_individual(c, P(2), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(3), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(7), NULL, 0), MG_OK);
    mlh_read r;
    read_all(c, 3, &r);
    expect_delivered(&r, (int[]){ 0, 1, 4, 5, 6, 8, 9 }, 7);
    expect_pos(mc_read_position(c), (ml_position){ P(9).ledger_id, P(9).entry_id + 1 });

    /* Consumers ack some; a redelivery sends only what is still unacknowledged. */
    cr_assert_eq(mc_ack_individual(c, P(0), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(4), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(9), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(0));
    mc_rewind(c);
    expect_pos(mc_read_position(c), P(1));
    read_all(c, 100, &r);
    expect_delivered(&r, (int[]){ 1, 5, 6, 8 }, 4);

    /* Seek moves the read position only. */
    cr_assert_eq(mc_seek(c, P(6)), MG_OK);
    read_all(c, 100, &r);
    expect_delivered(&r, (int[]){ 6, 8 }, 2);
    cr_assert_eq(mc_seek(c, P(0)), MG_OK); /* <= M: the entry after M */
    expect_pos(mc_read_position(c), P(1));

    /* One read in flight at a time. */
    mlh_read r2 = { 0 };
    cr_assert_eq(mc_read_entries(c, 1, 1024, mlh_read_collect, &r2), MG_OK);
    cr_expect_eq(mc_read_entries(c, 1, 1024, mlh_read_collect, &r2), MG_EAGAIN);
    cr_expect_eq(mc_read_entries(c, 0, 1024, mlh_read_collect, &r2), MG_EINVAL);
    RUN_UNTIL(r2.calls == 1);
    expect_delivered(&r2, (int[]){ 1 }, 1);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, backlog_exact_across_rollovers)
{
    setup("t/ns/persistent/rollover", 10); /* a new ledger every 10 entries */
    mc_cursor *early = open_cursor("early", true, MC_INITIAL_EARLIEST, &quiet);
    publish(35, varied); /* 1, 2 or 3 messages per entry */
    cr_assert_neq(P(0).ledger_id, P(34).ledger_id, "no rollover happened");
    cr_expect_eq(P(10).entry_id, 0);
    cr_expect_eq(P(20).entry_id, 0);
    mc_cursor *late = open_cursor("late", true, MC_INITIAL_EARLIEST, &quiet);
    mc_cursor *latest = open_cursor("latest", true, MC_INITIAL_LATEST, &quiet);
    int64_t all_msgs = msgs_in(0, 34);
    cr_expect_eq(ml_messages_total(t.ml), all_msgs);
    mc_cursor *cs[2] = { early, late };
    for (int k = 0; k < 2; k++) {
        cr_expect_eq(mc_backlog_entries(cs[k]), 35);
        cr_expect_eq(mc_backlog_messages(cs[k]), all_msgs);
    }
    expect_pos(mc_mark_delete_position(latest), P(34));
    cr_expect_eq(mc_backlog_entries(latest), 0);
    cr_expect_eq(mc_backlog_messages(latest), 0);

    /* Scattered acks across the three ledgers: every third entry and both ledger borders. */
    bool acked[35] = { false };
    for (int i = 0; i < 35; i += 3)
        acked[i] = true;
    acked[9] = acked[10] = acked[19] = acked[20] = true;
    for (int k = 0; k < 2; k++) {
        mlh_read r;
        read_all(cs[k], 7, &r);
        cr_expect_eq(r.n, 35);
        for (int i = 0; i < 35; i++)
            if (acked[i])
                cr_assert_eq(mc_ack_individual(cs[k], P(i), NULL, 0), MG_OK);
    }
    /* M moved over entry 0 only (1 and 2 are not acknowledged). */
    int64_t want_entries = 0, want_msgs = 0;
    for (int i = 1; i < 35; i++) {
        want_entries += !acked[i];
        want_msgs += acked[i] ? 0 : t.msgs[i];
    }
    for (int k = 0; k < 2; k++) {
        expect_pos(mc_mark_delete_position(cs[k]), P(0));
        cr_expect_eq(mc_backlog_entries(cs[k]), want_entries);
        cr_expect_eq(mc_backlog_messages(cs[k]), want_msgs);
    }
    /* Ranges never cross a ledger: 9 and 10 are separate ranges. */
    mc_range ranges[64];
    size_t nr = mc_acked_ranges(early, ranges, 64);
    int64_t nacked = 0;
    for (size_t i = 0; i < nr && i < 64; i++) {
        cr_expect_eq(ranges[i].first.ledger_id, ranges[i].last.ledger_id);
        nacked += ranges[i].last.entry_id - ranges[i].first.entry_id + 1;
    }
    cr_expect_eq(nacked, mc_acked_entries(early));

    /* A cumulative ack into the second ledger, then the rest of the gaps up to 21. */
    cr_assert_eq(mc_ack_cumulative(early, P(14), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(early), P(15)); /* 15 was acknowledged */
    want_entries = 0;
    want_msgs = 0;
    for (int i = 16; i < 35; i++) {
        want_entries += !acked[i];
        want_msgs += acked[i] ? 0 : t.msgs[i];
    }
    cr_expect_eq(mc_backlog_entries(early), want_entries);
    cr_expect_eq(mc_backlog_messages(early), want_msgs);
    cr_assert_eq(mc_ack_individual(early, P(16), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(early, P(17), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(early), P(21)); /* 18, 19 | 20, 21 acked: across */
    cr_expect_eq(mc_backlog_messages(early), want_msgs - t.msgs[16] - t.msgs[17]);

    /* Close and reopen: the same backlog from the stored state. */
    cr_expect_eq(close_cursor(early), MG_OK);
    early = open_cursor("early", true, MC_INITIAL_EARLIEST, &quiet);
    expect_pos(mc_mark_delete_position(early), P(21));
    cr_expect_eq(mc_backlog_entries(early), want_entries - 2);
    cr_expect_eq(mc_backlog_messages(early), want_msgs - t.msgs[16] - t.msgs[17]);

    /* More entries arrive: the backlogs grow by exactly them. */
    publish(3, varied);
    cr_expect_eq(mc_backlog_entries(latest), 3);
    cr_expect_eq(mc_backlog_messages(latest), msgs_in(35, 37));
    cr_expect_eq(mc_backlog_messages(early), want_msgs - t.msgs[16] - t.msgs[17] + msgs_in(35, 37));
    cr_expect_eq(close_cursor(early), MG_OK);
    cr_expect_eq(close_cursor(late), MG_OK);
    cr_expect_eq(close_cursor(latest), MG_OK);
    teardown();
}

/* 200 entries over four ledgers acknowledged in a pseudo-random order: after every ack, M,
 * the entry backlog and the message backlog equal a brute-force count. */
Test(cursor, random_order_acks_exact)
{
    setup("t/ns/persistent/random", 64);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    publish(200, varied);
    mlh_read r;
    read_all(c, 50, &r);
    cr_assert_eq(r.n, 200);
    int order[200];
    for (int i = 0; i < 200; i++)
        order[i] = i;
    uint64_t x = 12345;
    for (int i = 199; i > 0; i--) { /* Fisher-Yates with an LCG */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int j = (int)((x >> 33) % (uint64_t)(i + 1));
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    bool acked[200] = { false };
    for (int k = 0; k < 200; k++) {
        acked[order[k]] = true;
        cr_assert_eq(mc_ack_individual(c, P(order[k]), NULL, 0), MG_OK);
        int first_unacked = 0;
        while (first_unacked < 200 && acked[first_unacked])
            first_unacked++;
        ml_position want_md = first_unacked == 0 ? before(0) : P(first_unacked - 1);
        ml_position md = mc_mark_delete_position(c);
        cr_assert(md.ledger_id == want_md.ledger_id && md.entry_id == want_md.entry_id,
                  "after ack %d: M %lld:%lld", k, (long long)md.ledger_id, (long long)md.entry_id);
        int64_t entries = 0, msgs = 0;
        for (int i = 0; i < 200; i++) {
            entries += !acked[i];
            msgs += acked[i] ? 0 : t.msgs[i];
        }
        cr_assert_eq(mc_backlog_entries(c), entries, "after ack %d", k);
        cr_assert_eq(mc_backlog_messages(c), msgs, "after ack %d", k);
        if (k == 100) { /* halfway: the stored state reproduces the same backlog */
            cr_expect_eq(close_cursor(c), MG_OK);
            c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
            cr_assert_eq(mc_backlog_messages(c), msgs);
            read_all(c, 50, &r); /* learn the counts again for the rest */
            cr_assert_eq(r.n, (size_t)entries);
        }
    }
    cr_expect_gt(mc_cursor_memory_bytes(c), 0);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

static void wait_clock_tick(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    int64_t t0 = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    for (int i = 0; i < 1000; i++) {
        uv_run(&fx.loop, UV_RUN_ONCE); /* the guard timer ticks every 5 ms */
        gettimeofday(&tv, NULL);
        if ((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000 >= t0 + 2)
            return;
    }
}

Test(cursor, reset_by_time_and_position)
{
    setup("t/ns/persistent/reset", 0);
    publish(5, varied);
    wait_clock_tick(); /* entries 5.. get later broker timestamps than 0..4 */
    publish(5, varied);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    mlh_read r;
    read_all(c, 100, &r);
    cr_assert_eq(r.n, 10);
    cr_assert_gt(r.ts[5], r.ts[4]);
    int64_t ts5 = r.ts[5];
    cr_assert_eq(mc_ack_cumulative(c, P(9), NULL, 0), MG_OK);
    cr_expect_eq(mc_backlog_entries(c), 0);

    dres d = { 0 };
    cr_assert_eq(mc_reset_to_time(c, ts5, done_cb, &d), MG_OK);
    cr_expect_eq(mc_reset_to_time(c, ts5, done_cb, &d), MG_EAGAIN);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);
    expect_pos(mc_mark_delete_position(c), P(4));
    expect_pos(mc_read_position(c), P(5));
    cr_expect_eq(mc_backlog_entries(c), 5);
    cr_expect_eq(mc_backlog_messages(c), msgs_in(5, 9));
    /* Persisted before the callback. */
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("sub", &st, NULL);
    cr_assert_eq(st, MG_OK);
    cr_expect_eq(info->mark_delete_ledger_id, P(4).ledger_id);
    cr_expect_eq(info->mark_delete_entry_id, P(4).entry_id);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);

    /* Acks above the new M are cleared by a reset. */
    cr_assert_eq(mc_ack_individual(c, P(7), NULL, 0), MG_OK);
    d = (dres){ 0 };
    cr_assert_eq(mc_reset_to_position(c, P(2), done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_assert_eq(d.status, MG_OK);
    expect_pos(mc_mark_delete_position(c), P(1));
    cr_expect_eq(mc_acked_entries(c), 0);
    cr_expect_eq(mc_backlog_entries(c), 8);
    cr_expect_eq(mc_backlog_messages(c), msgs_in(2, 9));
    read_all(c, 100, &r);
    expect_delivered(&r, (int[]){ 2, 3, 4, 5, 6, 7, 8, 9 }, 8);

    /* A time before everything: back to the start; after everything: nothing left. */
    d = (dres){ 0 };
    cr_assert_eq(mc_reset_to_time(c, 0, done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    expect_pos(mc_mark_delete_position(c), before(0));
    cr_expect_eq(mc_backlog_entries(c), 10);
    cr_expect_eq(mc_backlog_messages(c), msgs_in(0, 9));
    d = (dres){ 0 };
    cr_assert_eq(mc_reset_to_time(c, INT64_MAX / 2, done_cb, &d), MG_OK);
    RUN_UNTIL(d.calls == 1);
    cr_expect_eq(mc_backlog_entries(c), 0);
    cr_expect_eq(mc_backlog_messages(c), 0);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, durable_close_and_reopen)
{
    setup("t/ns/persistent/reopen", 0);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    publish(10, four);
    int st;
    int64_t version;
    Magnetar__Ledger__CursorInfo *info = stored("sub", &st, &version);
    cr_assert_eq(st, MG_OK);
    cr_expect_eq(version, 0); /* created at open, at the initial position */
    cr_expect_eq(info->mark_delete_entry_id, before(0).entry_id);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);

    mlh_read r;
    read_all(c, 100, &r);
    cr_assert_eq(mc_ack_individual(c, P(0), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(1), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(4), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(6), NULL, 0), MG_OK);
    uint64_t set = 0x9ull; /* messages 1 and 2 of entry 8 acknowledged */
    cr_assert_eq(mc_ack_individual(c, P(8), &set, 1), MG_OK);
    int64_t backlog_msgs = mc_backlog_messages(c);
    cr_expect_eq(backlog_msgs, 6 * 4 - 2);
    cr_expect_eq(mc_cursor_writes(c), 0); /* the interval has not run out */
    cr_expect_eq(close_cursor(c), MG_OK);

    info = stored("sub", &st, &version);
    cr_assert_eq(st, MG_OK);
    cr_expect_eq(version, 1);
    cr_expect_eq(info->mark_delete_ledger_id, P(1).ledger_id);
    cr_expect_eq(info->mark_delete_entry_id, P(1).entry_id);
    cr_assert_eq(info->n_individually_deleted, 2);
    cr_expect_eq(info->individually_deleted[0]->from_entry_id, P(3).entry_id); /* exclusive */
    cr_expect_eq(info->individually_deleted[0]->to_entry_id, P(4).entry_id);
    cr_expect_eq(info->individually_deleted[1]->to_entry_id, P(6).entry_id);
    cr_assert_eq(info->n_batch_acks, 1);
    cr_expect_eq(info->batch_acks[0]->entry_id, P(8).entry_id);
    cr_expect_eq(info->batch_acks[0]->ack_set[0], 0x9ull);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);

    c = open_cursor("sub", true, MC_INITIAL_LATEST, &quiet); /* initial ignored: it exists */
    expect_pos(mc_mark_delete_position(c), P(1));
    cr_expect_eq(mc_acked_entries(c), 2);
    cr_expect_eq(mc_backlog_entries(c), 6);
    cr_expect_eq(mc_backlog_messages(c), backlog_msgs);
    read_all(c, 100, &r);
    expect_delivered(&r, (int[]){ 2, 3, 5, 7, 8, 9 }, 6);
    const uint64_t *w;
    size_t nw;
    cr_assert_eq(mc_batch_ack_set(c, P(8), &w, &nw), MG_OK);
    cr_expect_eq(w[0], 0x9ull);
    cr_expect_eq(close_cursor(c), MG_OK);
    info = stored("sub", &st, &version);
    cr_expect_eq(version, 1); /* nothing changed: closing wrote nothing */
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    teardown();
}

Test(cursor, crash_reopens_last_persisted_state)
{
    setup("t/ns/persistent/crash", 0);
    publish(10, NULL);
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    for (int i = 0; i <= 2; i++)
        cr_assert_eq(mc_ack_individual(c, P(i), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(6), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(c), MG_OK);
    cr_expect_eq(mc_cursor_writes(c), 1);
    /* Acknowledged after the last write, then the broker dies. */
    cr_assert_eq(mc_ack_individual(c, P(3), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(5), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(8), NULL, 0), MG_OK);
    expect_pos(mc_mark_delete_position(c), P(3));
    cr_expect_eq(finish(mc_cursor_abort, c), MG_OK);

    c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    expect_pos(mc_mark_delete_position(c), P(2));
    cr_expect_eq(mc_acked_entries(c), 1);
    cr_expect_eq(mc_backlog_entries(c), 6);
    mlh_read r;
    read_all(c, 100, &r);
    /* 3, 5 and 8 come again (at-least-once); 6 does not, nothing unacknowledged is missing. */
    expect_delivered(&r, (int[]){ 3, 4, 5, 7, 8, 9 }, 6);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, truncated_record_keeps_a_prefix)
{
    setup("t/ns/persistent/truncate", 0);
    publish(41, NULL);
    mc_cursor_opts o = { .persist_interval_ms = LONG_INTERVAL_MS, .info_bytes_max = 160 };
    mc_cursor *c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &o);
    for (int i = 2; i <= 40; i += 2) /* 20 ranges of one entry */
        cr_assert_eq(mc_ack_individual(c, P(i), NULL, 0), MG_OK);
    cr_expect_eq(mc_acked_range_count(c), 20);
    cr_expect_eq(flush_cursor(c), MG_OK);
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("sub", &st, NULL);
    cr_assert_eq(st, MG_OK);
    size_t kept = info->n_individually_deleted;
    cr_expect_gt(kept, 0);
    cr_expect_lt(kept, 20);
    for (size_t i = 0; i < kept; i++) /* the ranges nearest M, in order */
        cr_expect_eq(info->individually_deleted[i]->to_entry_id, P(2 + 2 * (int)i).entry_id);
    size_t packed = magnetar__ledger__cursor_info__get_packed_size(info);
    cr_expect_leq(packed, 160);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    cr_expect_eq(finish(mc_cursor_abort, c), MG_OK);

    c = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    cr_expect_eq(mc_acked_range_count(c), (int64_t)kept);
    mlh_read r;
    read_all(c, 100, &r);
    cr_expect_eq(r.n, 41 - kept); /* everything not in the kept prefix, acked or not */
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

Test(cursor, persist_interval)
{
    setup("t/ns/persistent/interval", 0);
    publish(5, NULL);
    mc_cursor *c = open_cursor("quiet", true, MC_INITIAL_EARLIEST, &quiet);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(mc_ack_individual(c, P(i), NULL, 0), MG_OK);
    for (int i = 0; i < 20; i++) /* a few loop turns: nothing is written meanwhile */
        uv_run(&fx.loop, UV_RUN_ONCE);
    int st;
    int64_t version;
    Magnetar__Ledger__CursorInfo *info = stored("quiet", &st, &version);
    cr_expect_eq(version, 0);
    cr_expect_eq(mc_cursor_writes(c), 0);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    cr_expect_eq(close_cursor(c), MG_OK);

    mc_cursor_opts o = { .persist_interval_ms = 50 };
    c = open_cursor("busy", true, MC_INITIAL_EARLIEST, &o);
    cr_assert_eq(mc_ack_individual(c, P(0), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(1), NULL, 0), MG_OK);
    RUN_UNTIL(mc_cursor_writes(c) == 1); /* the interval ran out: one write for both */
    info = stored("busy", &st, &version);
    cr_expect_eq(version, 1);
    cr_expect_eq(info->mark_delete_entry_id, P(1).entry_id);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    cr_expect_eq(close_cursor(c), MG_OK);
    teardown();
}

static int events_seen;
static int event_status;

static void on_event(mc_cursor *c, int status, void *arg)
{
    (void)c;
    (void)arg;
    events_seen++;
    event_status = status;
}

Test(cursor, second_owner_fences_the_first)
{
    setup("t/ns/persistent/fence", 0);
    publish(5, NULL);
    events_seen = 0;
    mc_cursor_opts o = { .persist_interval_ms = LONG_INTERVAL_MS, .event_cb = on_event };
    mc_cursor *a = open_cursor("sub", true, MC_INITIAL_EARLIEST, &o);
    mc_cursor *b = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet); /* the new owner */
    cr_assert_eq(mc_ack_individual(b, P(0), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(b), MG_OK);
    cr_assert_eq(mc_ack_individual(a, P(1), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(a), MG_EFENCED);
    cr_expect_eq(events_seen, 1);
    cr_expect_eq(event_status, MG_EFENCED);
    cr_expect_eq(mc_cursor_status(a), MG_EFENCED);
    cr_expect_eq(mc_ack_individual(a, P(2), NULL, 0), MG_ESTATE);
    cr_expect_eq(close_cursor(a), MG_EFENCED);
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("sub", &st, NULL);
    cr_expect_eq(info->mark_delete_entry_id, P(0).entry_id); /* b's state, untouched */
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    cr_expect_eq(close_cursor(b), MG_OK);
    teardown();
}

/* Broker B takes the topic over (a second env opens the managed ledger, fencing A's) while A
 * still holds acks it never wrote: B's cursor starts from the last persisted state, and A's
 * late write is refused. */
Test(cursor, takeover_by_a_second_broker)
{
    setup("t/ns/persistent/takeover", 0);
    publish(8, NULL);
    mc_cursor *a = open_cursor("sub", true, MC_INITIAL_EARLIEST, &quiet);
    cr_assert_eq(mc_ack_cumulative(a, P(2), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(a), MG_OK);
    cr_assert_eq(mc_ack_cumulative(a, P(5), NULL, 0), MG_OK); /* never written */

    ml_env *env2 = NULL;
    ml_env_opts o = { .ensemble_size = 1 };
    cr_assert_eq(ml_env_create(&fx.loop, bkh_md_client(fx.h), bkh_bk_client(fx.h), &o, &env2),
                 MG_OK);
    ml_config cfg = { .retention_time_ms = -1, .retention_bytes = -1 };
    ml_managed *ml2 = NULL;
    int rc = mlh_open_ml(&fx, env2, "t/ns/persistent/takeover", &cfg, &ml2);
    cr_assert_eq(rc, MG_OK, "ml_open: %s", mg_strerror(rc));

    openres r = { 0 };
    cr_assert_eq(mc_cursor_open(ml2, "sub", true, MC_INITIAL_LATEST, &quiet, cursor_opened, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    mc_cursor *b = r.c;
    expect_pos(mc_mark_delete_position(b), P(2)); /* 3..5 will be delivered again */
    cr_expect_eq(mc_backlog_entries(b), 5);
    mlh_read rr;
    read_all(b, 100, &rr);
    expect_delivered(&rr, (int[]){ 3, 4, 5, 6, 7 }, 5);
    cr_assert_eq(mc_ack_individual(b, P(3), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(b), MG_OK);

    cr_expect_eq(flush_cursor(a), MG_EFENCED);
    cr_expect_eq(close_cursor(a), MG_EFENCED);
    cr_expect_eq(close_cursor(b), MG_OK);
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("sub", &st, NULL);
    cr_assert_eq(st, MG_OK);
    cr_expect_eq(info->mark_delete_entry_id, P(3).entry_id);
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);

    cr_assert_eq(mlh_close_ml(&fx, ml2, NULL), MG_OK);
    ml_env_destroy(env2);
    teardown(); /* closes A's (fenced) managed ledger */
}

Test(cursor, non_durable_persists_nothing)
{
    setup("t/ns/persistent/reader", 0);
    publish(5, NULL);
    mc_cursor *c = open_cursor("reader", false, MC_INITIAL_EARLIEST, NULL);
    cr_expect_not(mc_cursor_durable(c));
    cr_assert_eq(mc_ack_individual(c, P(0), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_individual(c, P(3), NULL, 0), MG_OK);
    cr_expect_eq(flush_cursor(c), MG_OK);
    cr_expect_eq(close_cursor(c), MG_OK);
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("reader", &st, NULL);
    cr_expect_null(info);
    cr_expect_eq(st, MG_ENOTFOUND);

    /* A reader starting at the latest entry sees only what comes next. */
    c = open_cursor("reader", false, MC_INITIAL_LATEST, NULL);
    expect_pos(mc_mark_delete_position(c), P(4));
    publish(2, NULL);
    mlh_read r;
    read_all(c, 100, &r);
    expect_delivered(&r, (int[]){ 5, 6 }, 2);
    cr_expect_eq(close_cursor(c), MG_OK);
    info = stored("reader", &st, NULL);
    cr_expect_eq(st, MG_ENOTFOUND);
    teardown();
}

Test(cursor, delete_and_group)
{
    setup("t/ns/persistent/group", 0);
    publish(6, NULL);
    mc_group *g = NULL;
    cr_assert_eq(mc_group_create(t.ml, &g), MG_OK);
    mc_cursor_opts o = { .persist_interval_ms = LONG_INTERVAL_MS, .group = g };
    mc_cursor *a = open_cursor("a", true, MC_INITIAL_EARLIEST, &o);
    mc_cursor *b = open_cursor("b", true, MC_INITIAL_EARLIEST, &o);
    mc_cursor *reader = open_cursor("r", false, MC_INITIAL_EARLIEST, &o);
    expect_pos(mc_group_slowest(g), before(0));
    cr_assert_eq(mc_ack_cumulative(b, P(2), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_cumulative(a, P(4), NULL, 0), MG_OK);
    cr_assert_eq(mc_ack_cumulative(reader, P(5), NULL, 0), MG_OK);
    expect_pos(mc_group_slowest(g), P(2)); /* the reader does not count */
    cr_expect_eq(close_cursor(reader), MG_OK);

    /* b closes (a topic unload, a broker restart): its subscription still needs 3.. */
    cr_expect_eq(close_cursor(b), MG_OK);
    expect_pos(mc_group_slowest(g), P(2));
    cr_assert_eq(mc_ack_cumulative(a, P(5), NULL, 0), MG_OK);
    expect_pos(mc_group_slowest(g), P(2));
    b = open_cursor("b", true, MC_INITIAL_EARLIEST, &o); /* back: it holds them itself */
    expect_pos(mc_mark_delete_position(b), P(2));
    cr_assert_eq(mc_ack_cumulative(b, P(3), NULL, 0), MG_OK);
    expect_pos(mc_group_slowest(g), P(3));

    /* Deleting a cursor removes its node and releases what it held. */
    cr_expect_eq(finish(mc_cursor_delete, b), MG_OK);
    int st;
    Magnetar__Ledger__CursorInfo *info = stored("b", &st, NULL);
    cr_expect_null(info);
    cr_expect_eq(st, MG_ENOTFOUND);
    expect_pos(mc_group_slowest(g), P(5));
    cr_expect_eq(close_cursor(a), MG_OK);
    mc_group_destroy(g);

    /* Bad names are refused at once. */
    openres r = { 0 };
    cr_expect_eq(mc_cursor_open(t.ml, "a/b", true, MC_INITIAL_EARLIEST, NULL, cursor_opened, &r),
                 MG_EINVAL);
    cr_expect_eq(mc_cursor_open(t.ml, "", true, MC_INITIAL_EARLIEST, NULL, cursor_opened, &r),
                 MG_EINVAL);
    cr_expect_eq(mc_cursor_open(t.ml, "..", false, MC_INITIAL_EARLIEST, NULL, cursor_opened, &r),
                 MG_EINVAL);
    cr_expect_eq(r.calls, 0);
    teardown();
}
