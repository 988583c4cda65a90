/* Managed ledgers written and read back (real bookies and the real embedded metadata store,
 * through managed_util.h): adds and reads across rollovers by entry count, size and age,
 * positions and the BrokerEntryMetadata prefix (timestamps, message indexes with batches),
 * reopening (the index goes on), backpressure and argument checks, and the ledger list as
 * ml_ledgers reports it.
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(managed, .timeout = 30);

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
