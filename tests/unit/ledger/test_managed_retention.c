/* Managed-ledger retention (real bookies and the real embedded metadata store, through
 * managed_util.h): consumed ledgers deleted (metadata and bookie data) with no time or size
 * rule, kept by a time rule, the newest kept up to a size rule, and cut by either rule when both
 * are set.
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"

TestSuite(managed, .timeout = 30);

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

/* Both limits set: a consumed ledger goes once it is outside either (as Pulsar trims), so a size
 * rule cuts ledgers that are still within the time rule, and a time rule of -1 does not keep
 * what the size rule lets go. */
Test(managed, retention_outside_either_limit)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 0, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a);
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    int64_t l1_size = info->ledgers[1]->size, l2_size = info->ledgers[2]->size;
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    cr_assert_eq(close_ml(ml), MG_OK);
    /* Within the hour, but L0 is outside L1's size: it goes; L1 stays. */
    cfg.retention_time_ms = 3600 * 1000;
    cfg.retention_bytes = l1_size;
    ml = open_ml(t.env, NAME, &cfg, MG_OK);
    ml_set_oldest_needed(ml, a.pos[10]);
    RUN_UNTIL(ml_entries_total(ml) == 12);
    for (int i = 0; i < 50; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(ml_entries_total(ml), 12);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[5]), 0);
    /* Forever by time, and a byte less than L1 and L2 by size: once L2 is consumed too, L1 is
     * outside the size and goes, L2 stays. */
    cr_assert_eq(ml_set_retention(ml, -1, l1_size + l2_size - 1), MG_OK);
    ml_set_oldest_needed(ml, a.pos[15]);
    RUN_UNTIL(ml_entries_total(ml) == 7);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[10]), 0);
    /* Forever and unlimited: nothing more goes. */
    cr_assert_eq(ml_set_retention(ml, -1, -1), MG_OK);
    ml_set_oldest_needed(ml, a.pos[16]);
    for (int i = 0; i < 50; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(ml_entries_total(ml), 7);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}

/* ml_set_retention on an open managed ledger: consumed ledgers kept by a time rule go as soon as
 * the rule is lowered; a rule whose time runs out later takes effect when the check is run again
 * with the same values (what the broker's periodic retention check does). */
Test(managed, set_retention_applies_while_open)
{
    setup_env(1, 1, 1, 1, 0);
    ml_config cfg = { .retention_time_ms = 3600 * 1000, .retention_bytes = 0 };
    ml_managed *ml;
    static adds a;
    retention_fixture(&cfg, &ml, &a); /* L0..L2 closed with 5 entries, L3 current with 2 */
    cr_assert_eq(ml_set_retention(ml, -2, 0), MG_EINVAL);
    cr_assert_eq(ml_set_retention(ml, 0, -2), MG_EINVAL);
    cr_assert_eq(ml_set_retention(NULL, 0, 0), MG_EINVAL);

    /* L0 and L1 consumed, within the hour: kept. */
    ml_set_oldest_needed(ml, a.pos[10]);
    for (int i = 0; i < 50; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    cr_assert_eq(ml_entries_total(ml), 17);

    /* Within the hour, or within L1's size: only L0 goes. */
    Magnetar__Ledger__ManagedLedgerInfo *info = info_get(NAME);
    int64_t l1_size = info->ledgers[1]->size;
    magnetar__ledger__managed_ledger_info__free_unpacked(info, NULL);
    cr_assert_eq(ml_set_retention(ml, 0, l1_size), MG_OK);
    RUN_UNTIL(ml_entries_total(ml) == 12);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[5]), 0);

    /* 100 ms and no size rule: L1 goes once it has been closed that long and the check runs
     * again, with nothing else happening to the managed ledger. */
    cr_assert_eq(ml_set_retention(ml, 100, 0), MG_OK);
    int64_t start = mg_clock_wall_ms();
    while (mg_clock_wall_ms() - start < 150) {
        uv_run(&t.loop, UV_RUN_NOWAIT);
        usleep(10 * 1000);
    }
    cr_assert_eq(ml_set_retention(ml, 100, 0), MG_OK);
    RUN_UNTIL(ml_entries_total(ml) == 7);
    cr_assert_eq(ml_position_cmp(ml_first_position(ml), a.pos[10]), 0);
    RUN_UNTIL(ledger_node_status(a.pos[5].ledger_id) == MG_ENOTFOUND);
    cr_assert_eq(ledger_node_status(a.pos[10].ledger_id), MG_OK);
    cr_assert_eq(close_ml(ml), MG_OK);
    teardown_env();
}
