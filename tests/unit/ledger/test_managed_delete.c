/* Deleting a stored managed ledger (real bookies and the real embedded metadata store, through
 * managed_util.h): its node, its cursor nodes, its ledgers' metadata and bookie data go, a
 * neighbour stays; a missing name; finishing a partial deletion; what is not a managed ledger
 * (a parent node, a list that does not parse); argument checks.
 * Everything runs on one loop in the test thread (managed_util.h), and every wait is bounded. */
#include "ledger/limits.h"
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(managed, .timeout = 30);

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
