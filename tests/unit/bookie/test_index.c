/*
 * Tests of the bookie's location index (src/bookie/index.c): exact lookups, bounded seeks and
 * runs, the big-endian key order across ledgers, ledger info (last entry, fencing) across
 * reopen, deletion, compare-and-set relocation, argument checks, corrupt values written with
 * the RocksDB C API, and the directory lock. Each test uses a fresh temporary directory.
 */
#include "bookie/index.h"
#include "bookie/limits.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/cr_util.h"

static char tmp_dir[128];
static char db_dir[192];

static void ix_setup(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mg_test_index_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
    /* Two missing levels: open must create parents. */
    snprintf(db_dir, sizeof(db_dir), "%s/ledgers/index", tmp_dir);
}

static void ix_teardown(void)
{
    mgt_rm_tree(tmp_dir);
}

TestSuite(index, .init = ix_setup, .fini = ix_teardown, .timeout = 10);

static bk_location loc_of(uint32_t log_id, uint32_t offset, uint32_t size)
{
    return (bk_location){ .log_id = log_id, .offset = offset, .size = size };
}

static bk_index_put put_of(int64_t ledger_id, int64_t entry_id)
{
    /* A location derived from the ids, so every lookup can be checked exactly. */
    return (bk_index_put){ .ledger_id = ledger_id,
                           .entry_id = entry_id,
                           .loc = loc_of((uint32_t)ledger_id, (uint32_t)entry_id * 100u,
                                         (uint32_t)entry_id + 7u) };
}

static void expect_loc(bk_location got, int64_t ledger_id, int64_t entry_id)
{
    cr_expect_eq(got.log_id, (uint32_t)ledger_id);
    cr_expect_eq(got.offset, (uint32_t)entry_id * 100u);
    cr_expect_eq(got.size, (uint32_t)entry_id + 7u);
}

static bk_index *open_ix(void)
{
    bk_index *ix = NULL;
    cr_assert_eq(bk_index_open(db_dir, &ix), MG_OK);
    cr_assert_not_null(ix);
    return ix;
}

/* Puts (ledger_id, e) for each e in entries[0, n) in one batch. */
static void put_entries(bk_index *ix, int64_t ledger_id, const int64_t *entries, size_t n)
{
    bk_index_put puts[64];
    cr_assert(n <= 64);
    for (size_t i = 0; i < n; i++)
        puts[i] = put_of(ledger_id, entries[i]);
    cr_assert_eq(bk_index_put_batch(ix, puts, n), MG_OK);
}

static void put_range(bk_index *ix, int64_t ledger_id, int64_t first, int64_t last)
{
    int64_t ids[64];
    size_t n = 0;
    for (int64_t e = first; e <= last; e++)
        ids[n++] = e;
    put_entries(ix, ledger_id, ids, n);
}

Test(index, put_batch_then_get_each)
{
    bk_index *ix = open_ix();
    put_range(ix, 1, 0, 9);
    for (int64_t e = 0; e <= 9; e++) {
        bk_location loc = { 0 };
        cr_assert_eq(bk_index_get(ix, 1, e, &loc), MG_OK);
        expect_loc(loc, 1, e);
    }
    bk_location loc;
    cr_expect_eq(bk_index_get(ix, 1, 10, &loc), MG_ENOTFOUND);
    cr_expect_eq(bk_index_get(ix, 2, 0, &loc), MG_ENOTFOUND);
    /* A later put of the same entry replaces its location. */
    bk_index_put p = { .ledger_id = 1, .entry_id = 3, .loc = loc_of(9, 99, 999) };
    cr_assert_eq(bk_index_put_batch(ix, &p, 1), MG_OK);
    cr_assert_eq(bk_index_get(ix, 1, 3, &loc), MG_OK);
    cr_expect_eq(loc.log_id, 9u);
    cr_expect_eq(loc.offset, 99u);
    cr_expect_eq(loc.size, 999u);
    /* Empty batches are no-ops. */
    cr_expect_eq(bk_index_put_batch(ix, NULL, 0), MG_OK);
    bk_index_close(ix);
}

Test(index, seek_finds_next_entry_after_gap)
{
    bk_index *ix = open_ix();
    const int64_t ids[] = { 0, 1, 2, 10, 11 };
    put_entries(ix, 5, ids, 5);
    put_range(ix, 6, 0, 3); /* the next ledger must never be seen */
    int64_t found = -7;
    bk_location loc;
    cr_assert_eq(bk_index_seek(ix, 5, 3, &found, &loc), MG_OK);
    cr_expect_eq(found, 10);
    expect_loc(loc, 5, 10);
    cr_assert_eq(bk_index_seek(ix, 5, 10, &found, &loc), MG_OK);
    cr_expect_eq(found, 10);
    cr_assert_eq(bk_index_seek(ix, 5, 11, &found, &loc), MG_OK);
    cr_expect_eq(found, 11);
    expect_loc(loc, 5, 11);
    cr_assert_eq(bk_index_seek(ix, 5, 0, &found, &loc), MG_OK);
    cr_expect_eq(found, 0);
    cr_expect_eq(bk_index_seek(ix, 5, 12, &found, &loc), MG_ENOTFOUND);
    cr_expect_eq(bk_index_seek(ix, 5, INT64_MAX, &found, &loc), MG_ENOTFOUND);
    cr_expect_eq(bk_index_seek(ix, 4, 0, &found, &loc), MG_ENOTFOUND);
    cr_expect_eq(bk_index_seek(ix, 6, 4, &found, &loc), MG_ENOTFOUND);
    bk_index_close(ix);
}

Test(index, seek_run_stops_at_gap_last_and_capacity)
{
    bk_index *ix = open_ix();
    const int64_t ids[] = { 0, 1, 2, 3, 4, 6, 7, 8, 9 };
    put_entries(ix, 7, ids, 9);
    put_range(ix, 8, 0, 3); /* would continue the run 6..9 with 10.. if seeks bled over */
    bk_index_put out[16];
    size_t count = 99;

    /* At a gap: 0..4, then 5 is missing. */
    cr_assert_eq(bk_index_seek_run(ix, 7, 0, 100, out, 16, &count), MG_OK);
    cr_assert_eq(count, 5);
    for (size_t i = 0; i < count; i++) {
        cr_expect_eq(out[i].ledger_id, 7);
        cr_expect_eq(out[i].entry_id, (int64_t)i);
        expect_loc(out[i].loc, 7, (int64_t)i);
    }
    /* At the ledger's end. */
    cr_assert_eq(bk_index_seek_run(ix, 7, 6, INT64_MAX, out, 16, &count), MG_OK);
    cr_assert_eq(count, 4);
    cr_expect_eq(out[0].entry_id, 6);
    cr_expect_eq(out[3].entry_id, 9);
    expect_loc(out[3].loc, 7, 9);
    /* At last. */
    cr_assert_eq(bk_index_seek_run(ix, 7, 0, 2, out, 16, &count), MG_OK);
    cr_expect_eq(count, 3);
    cr_assert_eq(bk_index_seek_run(ix, 7, 7, 7, out, 16, &count), MG_OK);
    cr_expect_eq(count, 1);
    cr_expect_eq(out[0].entry_id, 7);
    /* At capacity. */
    cr_assert_eq(bk_index_seek_run(ix, 7, 1, 100, out, 2, &count), MG_OK);
    cr_expect_eq(count, 2);
    cr_expect_eq(out[0].entry_id, 1);
    cr_expect_eq(out[1].entry_id, 2);
    /* First entry missing. */
    count = 99;
    cr_expect_eq(bk_index_seek_run(ix, 7, 5, 9, out, 16, &count), MG_ENOTFOUND);
    cr_expect_eq(count, 0);
    cr_expect_eq(bk_index_seek_run(ix, 7, 10, 20, out, 16, &count), MG_ENOTFOUND);
    cr_expect_eq(count, 0);
    /* Bad arguments. */
    cr_expect_eq(bk_index_seek_run(ix, 7, 3, 2, out, 16, &count), MG_EINVAL);
    cr_expect_eq(bk_index_seek_run(ix, 7, 0, 2, out, 0, &count), MG_EINVAL);
    bk_index_close(ix);
}

typedef struct ledger_walk {
    int64_t ids[16];
    bk_ledger_info infos[16];
    size_t count;
    size_t stop_after; /* 0: never */
} ledger_walk;

static int walk_fn(int64_t ledger_id, const bk_ledger_info *info, void *arg)
{
    ledger_walk *w = arg;
    cr_assert(w->count < 16);
    w->ids[w->count] = ledger_id;
    w->infos[w->count] = *info;
    w->count++;
    if (w->stop_after != 0 && w->count == w->stop_after)
        return MG_ECANCELED;
    return MG_OK;
}

Test(index, ledgers_do_not_bleed_big_endian_order)
{
    bk_index *ix = open_ix();
    /* Inserted in a mixed order; 256 = 00..01 00 and 255 = 00..00 ff differ in their two low
     * bytes, 2^56 only in the high byte: a little-endian key would sort them wrongly. */
    const int64_t high = (int64_t)1 << 56;
    put_range(ix, 256, 0, 1);
    put_range(ix, high, 0, 0);
    put_range(ix, 255, 0, 2);
    const int64_t last_of_1[] = { 100 };
    put_entries(ix, 2, (const int64_t[]){ 0 }, 1);
    put_entries(ix, 1, last_of_1, 1);
    bk_index_put top = put_of(INT64_MAX, INT64_MAX);
    cr_assert_eq(bk_index_put_batch(ix, &top, 1), MG_OK);

    int64_t found;
    bk_location loc;
    bk_index_put out[8];
    size_t count;
    /* Ledger 1's last entry vs ledger 2's first. */
    cr_assert_eq(bk_index_seek(ix, 1, 0, &found, &loc), MG_OK);
    cr_expect_eq(found, 100);
    cr_expect_eq(bk_index_seek(ix, 1, 101, &found, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_seek(ix, 2, 0, &found, &loc), MG_OK);
    cr_expect_eq(found, 0);
    expect_loc(loc, 2, 0);
    /* 255 vs 256. */
    cr_expect_eq(bk_index_seek(ix, 255, 3, &found, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_seek_run(ix, 255, 0, INT64_MAX, out, 8, &count), MG_OK);
    cr_expect_eq(count, 3);
    cr_assert_eq(bk_index_seek_run(ix, 256, 0, INT64_MAX, out, 8, &count), MG_OK);
    cr_expect_eq(count, 2);
    cr_expect_eq(out[1].ledger_id, 256);
    expect_loc(out[1].loc, 256, 1);
    cr_expect_eq(bk_index_seek(ix, 256, 2, &found, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_seek(ix, high, 0, &found, &loc), MG_OK);
    cr_expect_eq(found, 0);
    /* The largest ids: the exclusive bounds are 2^63, which must not wrap. */
    cr_assert_eq(bk_index_get(ix, INT64_MAX, INT64_MAX, &loc), MG_OK);
    expect_loc(loc, INT64_MAX, INT64_MAX);
    cr_assert_eq(bk_index_seek(ix, INT64_MAX, 0, &found, &loc), MG_OK);
    cr_expect_eq(found, INT64_MAX);
    cr_assert_eq(bk_index_seek_run(ix, INT64_MAX, INT64_MAX, INT64_MAX, out, 8, &count), MG_OK);
    cr_expect_eq(count, 1);

    ledger_walk w = { 0 };
    cr_assert_eq(bk_index_ledgers(ix, walk_fn, &w), MG_OK);
    const int64_t want[] = { 1, 2, 255, 256, high, INT64_MAX };
    cr_assert_eq(w.count, 6);
    for (size_t i = 0; i < 6; i++)
        cr_expect_eq(w.ids[i], want[i], "ledger %zu: %" PRId64 " != %" PRId64, i, w.ids[i],
                     want[i]);
    cr_expect_eq(w.infos[0].last_entry_id, 100);
    cr_expect_eq(w.infos[2].last_entry_id, 2);
    cr_expect_eq(w.infos[3].last_entry_id, 1);
    cr_expect_eq(w.infos[5].last_entry_id, INT64_MAX);
    cr_expect(w.infos[0].exists);
    cr_expect(!w.infos[0].fenced);

    /* A callback's non-OK value stops the walk and is returned. */
    ledger_walk stop = { .stop_after = 2 };
    cr_expect_eq(bk_index_ledgers(ix, walk_fn, &stop), MG_ECANCELED);
    cr_expect_eq(stop.count, 2);
    cr_expect_eq(stop.ids[1], 2);
    bk_index_close(ix);
}

Test(index, ledger_info_tracks_max_entry)
{
    bk_index *ix = open_ix();
    bk_ledger_info info = { .exists = true, .fenced = true, .last_entry_id = 5 };
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect(!info.exists);
    cr_expect(!info.fenced);
    cr_expect_eq(info.last_entry_id, -1);

    put_range(ix, 3, 0, 4);
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect(info.exists);
    cr_expect_eq(info.last_entry_id, 4);
    put_entries(ix, 3, (const int64_t[]){ 2 }, 1); /* lower: no change */
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 4);
    put_entries(ix, 3, (const int64_t[]){ 9, 6 }, 2);
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 9);

    /* Interleaved ledgers in one batch: runs are merged per ledger. */
    bk_index_put puts[] = { put_of(4, 5), put_of(5, 7), put_of(4, 8), put_of(5, 1), put_of(4, 3) };
    cr_assert_eq(bk_index_put_batch(ix, puts, 5), MG_OK);
    cr_assert_eq(bk_index_ledger_get(ix, 4, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 8);
    cr_assert_eq(bk_index_ledger_get(ix, 5, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 7);
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 9);
    bk_index_close(ix);
}

Test(index, fenced_flag_persists_across_reopen)
{
    bk_index *ix = open_ix();
    put_range(ix, 11, 0, 6);
    cr_assert_eq(bk_index_ledger_set_fenced(ix, 11), MG_OK);
    cr_assert_eq(bk_index_ledger_set_fenced(ix, 11), MG_OK); /* idempotent */
    cr_assert_eq(bk_index_ledger_set_fenced(ix, 10), MG_OK); /* unknown: created */
    put_range(ix, 12, 0, 0);
    bk_index_close(ix);

    ix = open_ix();
    bk_ledger_info info;
    cr_assert_eq(bk_index_ledger_get(ix, 11, &info), MG_OK);
    cr_expect(info.exists);
    cr_expect(info.fenced);
    cr_expect_eq(info.last_entry_id, 6);
    cr_assert_eq(bk_index_ledger_get(ix, 10, &info), MG_OK);
    cr_expect(info.exists);
    cr_expect(info.fenced);
    cr_expect_eq(info.last_entry_id, -1);
    cr_assert_eq(bk_index_ledger_get(ix, 12, &info), MG_OK);
    cr_expect(info.exists);
    cr_expect(!info.fenced);
    cr_expect_eq(info.last_entry_id, 0);
    /* Fencing is recorded, not enforced, and a later put keeps it. */
    put_range(ix, 11, 7, 7);
    cr_assert_eq(bk_index_ledger_get(ix, 11, &info), MG_OK);
    cr_expect(info.fenced);
    cr_expect_eq(info.last_entry_id, 7);
    bk_index_close(ix);
}

Test(index, delete_ledger_removes_only_that_ledger)
{
    bk_index *ix = open_ix();
    put_range(ix, 1, 0, 4);
    put_range(ix, 2, 0, 4);
    put_range(ix, 3, 0, 4);
    cr_assert_eq(bk_index_ledger_set_fenced(ix, 2), MG_OK);
    cr_assert_eq(bk_index_delete_ledger(ix, 2), MG_OK);

    bk_location loc;
    int64_t found;
    for (int64_t e = 0; e <= 4; e++) {
        cr_expect_eq(bk_index_get(ix, 2, e, &loc), MG_ENOTFOUND);
        cr_assert_eq(bk_index_get(ix, 1, e, &loc), MG_OK);
        expect_loc(loc, 1, e);
        cr_assert_eq(bk_index_get(ix, 3, e, &loc), MG_OK);
        expect_loc(loc, 3, e);
    }
    cr_expect_eq(bk_index_seek(ix, 2, 0, &found, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_seek(ix, 1, 4, &found, &loc), MG_OK);
    cr_expect_eq(found, 4);
    bk_ledger_info info;
    cr_assert_eq(bk_index_ledger_get(ix, 2, &info), MG_OK);
    cr_expect(!info.exists);
    cr_expect(!info.fenced);
    cr_expect_eq(info.last_entry_id, -1);
    cr_assert_eq(bk_index_ledger_get(ix, 3, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 4);

    ledger_walk w = { 0 };
    cr_assert_eq(bk_index_ledgers(ix, walk_fn, &w), MG_OK);
    cr_assert_eq(w.count, 2);
    cr_expect_eq(w.ids[0], 1);
    cr_expect_eq(w.ids[1], 3);

    cr_expect_eq(bk_index_delete_ledger(ix, 2), MG_OK);  /* idempotent */
    cr_expect_eq(bk_index_delete_ledger(ix, 99), MG_OK); /* unknown */
    bk_index_close(ix);

    /* Still gone after a reopen. */
    ix = open_ix();
    cr_expect_eq(bk_index_get(ix, 2, 0, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_get(ix, 3, 0, &loc), MG_OK);
    bk_index_close(ix);
}

Test(index, relocate_moves_only_when_from_matches)
{
    bk_index *ix = open_ix();
    const bk_location a = loc_of(1, 1000, 50), b = loc_of(1, 2000, 50), c = loc_of(4, 0, 50);
    bk_index_put p = { .ledger_id = 8, .entry_id = 0, .loc = a };
    cr_assert_eq(bk_index_put_batch(ix, &p, 1), MG_OK);

    bk_location loc;
    cr_expect_eq(bk_index_relocate(ix, 8, 0, b, c), MG_ENOTFOUND); /* moved meanwhile */
    cr_assert_eq(bk_index_get(ix, 8, 0, &loc), MG_OK);
    cr_expect_eq(loc.log_id, 1u);
    cr_expect_eq(loc.offset, 1000u);
    cr_expect_eq(bk_index_relocate(ix, 8, 0, (bk_location){ 1, 1000, 51 }, c), MG_ENOTFOUND);

    cr_assert_eq(bk_index_relocate(ix, 8, 0, a, c), MG_OK);
    cr_assert_eq(bk_index_get(ix, 8, 0, &loc), MG_OK);
    cr_expect_eq(loc.log_id, 4u);
    cr_expect_eq(loc.offset, 0u);
    cr_expect_eq(loc.size, 50u);
    cr_expect_eq(bk_index_relocate(ix, 8, 0, a, b), MG_ENOTFOUND); /* already moved */
    cr_expect_eq(bk_index_relocate(ix, 8, 1, a, b), MG_ENOTFOUND); /* never existed */
    cr_assert_eq(bk_index_sync(ix), MG_OK);

    bk_ledger_info info;
    cr_assert_eq(bk_index_ledger_get(ix, 8, &info), MG_OK);
    cr_expect_eq(info.last_entry_id, 0);
    cr_assert_eq(bk_index_delete_ledger(ix, 8), MG_OK);
    cr_expect_eq(bk_index_relocate(ix, 8, 0, c, a), MG_ENOTFOUND); /* deleted meanwhile */
    cr_expect_eq(bk_index_get(ix, 8, 0, &loc), MG_ENOTFOUND);
    bk_index_close(ix);

    /* The relocation survives a reopen (synced above, and the WAL is replayed anyway). */
}

Test(index, relocation_survives_reopen)
{
    bk_index *ix = open_ix();
    bk_index_put p = { .ledger_id = 8, .entry_id = 3, .loc = loc_of(1, 10, 20) };
    cr_assert_eq(bk_index_put_batch(ix, &p, 1), MG_OK);
    cr_assert_eq(bk_index_relocate(ix, 8, 3, loc_of(1, 10, 20), loc_of(2, 30, 20)), MG_OK);
    cr_assert_eq(bk_index_sync(ix), MG_OK);
    bk_index_close(ix);
    ix = open_ix();
    bk_location loc;
    cr_assert_eq(bk_index_get(ix, 8, 3, &loc), MG_OK);
    cr_expect_eq(loc.log_id, 2u);
    cr_expect_eq(loc.offset, 30u);
    cr_expect_eq(loc.size, 20u);
    bk_index_close(ix);
}

Test(index, negative_ids_are_invalid)
{
    bk_index *ix = open_ix();
    bk_location loc;
    int64_t found;
    bk_index_put out[4];
    size_t count;
    bk_ledger_info info;
    cr_expect_eq(bk_index_get(ix, -1, 0, &loc), MG_EINVAL);
    cr_expect_eq(bk_index_get(ix, 0, -1, &loc), MG_EINVAL);
    cr_expect_eq(bk_index_seek(ix, -1, 0, &found, &loc), MG_EINVAL);
    cr_expect_eq(bk_index_seek(ix, 1, INT64_MIN, &found, &loc), MG_EINVAL);
    cr_expect_eq(bk_index_seek_run(ix, -5, 0, 3, out, 4, &count), MG_EINVAL);
    cr_expect_eq(bk_index_seek_run(ix, 5, -1, 3, out, 4, &count), MG_EINVAL);
    cr_expect_eq(bk_index_ledger_get(ix, -1, &info), MG_EINVAL);
    cr_expect_eq(bk_index_ledger_set_fenced(ix, -1), MG_EINVAL);
    cr_expect_eq(bk_index_delete_ledger(ix, INT64_MIN), MG_EINVAL);
    cr_expect_eq(bk_index_relocate(ix, -1, 0, loc_of(0, 0, 0), loc_of(1, 1, 1)), MG_EINVAL);
    cr_expect_eq(bk_index_relocate(ix, 1, -1, loc_of(0, 0, 0), loc_of(1, 1, 1)), MG_EINVAL);

    /* One bad put rejects the whole batch: nothing is written. */
    bk_index_put puts[] = { put_of(1, 0), put_of(1, 1), { .ledger_id = 1, .entry_id = -2 } };
    cr_expect_eq(bk_index_put_batch(ix, puts, 3), MG_EINVAL);
    cr_expect_eq(bk_index_get(ix, 1, 0, &loc), MG_ENOTFOUND);
    cr_assert_eq(bk_index_ledger_get(ix, 1, &info), MG_OK);
    cr_expect(!info.exists);
    puts[2].ledger_id = -1;
    puts[2].entry_id = 2;
    cr_expect_eq(bk_index_put_batch(ix, puts, 3), MG_EINVAL);
    cr_expect_eq(bk_index_put_batch(ix, puts, (size_t)BK_INDEX_PUT_BATCH_MAX + 1), MG_ELIMIT);
    bk_index_close(ix);
}

/* Writes key -> value straight into the closed index's database. */
static void raw_put(const void *key, size_t key_len, const void *value, size_t value_len)
{
    rocksdb_options_t *opts = rocksdb_options_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(opts, db_dir, &err);
    cr_assert_null(err, "raw open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put(db, wo, key, key_len, value, value_len, &err);
    cr_assert_null(err, "raw put: %s", err);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(opts);
}

static void entry_key(uint8_t key[17], uint64_t ledger_id, uint64_t entry_id)
{
    key[0] = 'e';
    for (int i = 0; i < 8; i++) {
        key[1 + i] = (uint8_t)(ledger_id >> (56 - 8 * i));
        key[9 + i] = (uint8_t)(entry_id >> (56 - 8 * i));
    }
}

Test(index, corrupt_values_are_reported)
{
    bk_index *ix = open_ix();
    put_range(ix, 1, 0, 2);
    put_range(ix, 2, 0, 0);
    bk_index_close(ix);

    /* Entry (1, 1): 3 bytes instead of 12. Ledger 2's info: version 9. Ledger 3's info: the
     * right length but an unknown flag bit. Ledger 4's info: last_entry_id -2. */
    uint8_t key[17];
    entry_key(key, 1, 1);
    raw_put(key, sizeof(key), "abc", 3);
    const uint8_t l2[9] = { 'l', 0, 0, 0, 0, 0, 0, 0, 2 };
    const uint8_t bad_version[10] = { 9, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    raw_put(l2, sizeof(l2), bad_version, sizeof(bad_version));
    const uint8_t l3[9] = { 'l', 0, 0, 0, 0, 0, 0, 0, 3 };
    const uint8_t bad_flags[10] = { 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0 };
    raw_put(l3, sizeof(l3), bad_flags, sizeof(bad_flags));
    const uint8_t l4[9] = { 'l', 0, 0, 0, 0, 0, 0, 0, 4 };
    const uint8_t bad_last[10] = { 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe };
    raw_put(l4, sizeof(l4), bad_last, sizeof(bad_last));

    ix = open_ix();
    bk_location loc;
    int64_t found;
    bk_index_put out[8];
    size_t count;
    bk_ledger_info info;
    cr_assert_eq(bk_index_get(ix, 1, 0, &loc), MG_OK);
    expect_loc(loc, 1, 0);
    cr_expect_eq(bk_index_get(ix, 1, 1, &loc), MG_ECORRUPT);
    cr_expect_eq(bk_index_seek(ix, 1, 1, &found, &loc), MG_ECORRUPT);
    cr_expect_eq(bk_index_seek_run(ix, 1, 0, 10, out, 8, &count), MG_ECORRUPT);
    cr_expect_eq(count, 0);
    cr_assert_eq(bk_index_seek(ix, 1, 2, &found, &loc), MG_OK);
    cr_expect_eq(found, 2);
    cr_expect_eq(bk_index_relocate(ix, 1, 1, loc_of(0, 0, 0), loc_of(1, 1, 1)), MG_ECORRUPT);
    cr_expect_eq(bk_index_ledger_get(ix, 2, &info), MG_ECORRUPT);
    cr_expect_eq(bk_index_ledger_get(ix, 3, &info), MG_ECORRUPT);
    cr_expect_eq(bk_index_ledger_get(ix, 4, &info), MG_ECORRUPT);
    cr_expect_eq(bk_index_ledger_set_fenced(ix, 2), MG_ECORRUPT);
    /* A batch touching a corrupt ledger info writes nothing. */
    bk_index_put puts[] = { put_of(9, 0), put_of(2, 5) };
    cr_expect_eq(bk_index_put_batch(ix, puts, 2), MG_ECORRUPT);
    cr_expect_eq(bk_index_get(ix, 9, 0, &loc), MG_ENOTFOUND);
    /* The walk stops at the first corrupt ledger, after visiting ledger 1. */
    ledger_walk w = { 0 };
    cr_expect_eq(bk_index_ledgers(ix, walk_fn, &w), MG_ECORRUPT);
    cr_expect_eq(w.count, 1);
    cr_expect_eq(w.ids[0], 1);
    /* Deleting a ledger never needs to decode it. */
    cr_expect_eq(bk_index_delete_ledger(ix, 2), MG_OK);
    cr_expect_eq(bk_index_ledger_get(ix, 2, &info), MG_OK);
    cr_expect(!info.exists);
    bk_index_close(ix);
}

Test(index, unknown_format_version_is_corrupt)
{
    bk_index *ix = open_ix();
    bk_index_close(ix);
    const uint8_t v = 2;
    raw_put("v", 1, &v, 1);
    ix = (bk_index *)0x1;
    cr_expect_eq(bk_index_open(db_dir, &ix), MG_ECORRUPT);
    cr_expect_null(ix);
}

Test(index, locked_directory_is_eagain)
{
    bk_index *ix = open_ix();
    put_range(ix, 1, 0, 0);
    bk_index *second = (bk_index *)0x1;
    cr_expect_eq(bk_index_open(db_dir, &second), MG_EAGAIN);
    cr_expect_null(second);
    /* The first one still works, and once closed the directory can be opened again. */
    bk_location loc;
    cr_expect_eq(bk_index_get(ix, 1, 0, &loc), MG_OK);
    bk_index_close(ix);
    ix = open_ix();
    cr_expect_eq(bk_index_get(ix, 1, 0, &loc), MG_OK);
    bk_index_close(ix);
}
