/* Finding and walking a managed ledger (real bookies and the real embedded metadata store,
 * through managed_util.h): find by time and by message index, next positions and the entries
 * between two positions, and an entry stored without the BrokerEntryMetadata prefix (read as
 * corrupt, the others still served).
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(managed, .timeout = 30);

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
