/* Terminating a managed ledger (real bookies and the real embedded metadata store, through
 * managed_util.h): adds in flight complete and later adds are refused; twice; an empty log;
 * reopened terminated without a new ledger; retention of a terminated log; rollovers under
 * way when the termination comes; a fenced owner.
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(managed, .timeout = 30);

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
