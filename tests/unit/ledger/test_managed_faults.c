/* Managed ledgers when things go wrong (real bookies and the real embedded metadata store,
 * through managed_util.h): a second owner taking over (the first is fenced, with and without
 * adds in flight), a ledger that cannot be replaced once bookies are lost (the adds fail in
 * order, the index stays contiguous, writing resumes once they are back), and a full disk
 * (backing off without creating ledger after ledger, resuming once space is back).
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "unit/ledger/managed_util.h"

#include "support/loop_wait.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(managed, .timeout = 30);

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
        mgt_run_for(&t.loop, attempt == 0 ? 1100 : 2100);
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
    dres r = { 0 };
    cr_assert_eq(bk_storage_resume(bkh_bookie_storage(t.h, 0), done_cb, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    int64_t k = -1;
    for (int i = 0; i < 100 && k < 0; i++) { /* the back-off is 4 s now */
        int64_t next = a.issued;
        if (add_one(ml, &a) == MG_OK)
            k = next;
        else
            mgt_run_for(&t.loop, 100);
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
