/*
 * The metadata-store conformance suite: the same cases, run against every backend.
 *
 * A file including this defines, before the #include:
 *   CONF_SUITE             the Criterion suite name
 *   static int conf_url(char *buf, size_t size)
 *                          writes the URL of a store for the current test (a fresh RocksDB
 *                          directory, or the shared ZooKeeper server) and returns 0
 *   static void conf_cleanup(void)
 *                          removes what conf_url made for this test
 * Every test works under its own base path (/t<pid>), so tests can share one ZooKeeper server.
 * Each test runs a libuv loop in the test thread; conf_wait() runs it until a callback says it
 * is done, bounded by CONF_TIMEOUT_MS so a broken backend fails the test instead of hanging.
 */
#ifndef MG_TESTS_METADATA_CONFORMANCE_H
#define MG_TESTS_METADATA_CONFORMANCE_H

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "metadata/limits.h"
#include "metadata/md_int.h"
#include "metadata/metadata.h"
#include "md_result.h"

#define CONF_TIMEOUT_MS 10000

static uv_loop_t conf_loop;
static md_store *conf_store;
static md_client *conf_client;
static char conf_base[64];
static char conf_url_buf[512];

static void conf_timeout_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag, or fails the test after CONF_TIMEOUT_MS. */
static void conf_wait(const bool *flag)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(&conf_loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, conf_timeout_cb, CONF_TIMEOUT_MS, 0);
    while (!*flag && !timed_out)
        uv_run(&conf_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&conf_loop, UV_RUN_NOWAIT);
    cr_assert(*flag, "timed out after %d ms waiting for a metadata callback", CONF_TIMEOUT_MS);
}

/* Runs the loop until *counter >= target, or fails the test after CONF_TIMEOUT_MS. */
static void conf_wait_count(const int *counter, int target)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(&conf_loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, conf_timeout_cb, CONF_TIMEOUT_MS, 0);
    while (*counter < target && !timed_out)
        uv_run(&conf_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&conf_loop, UV_RUN_NOWAIT);
    cr_assert_geq(*counter, target, "timed out after %d ms: %d of %d callbacks", CONF_TIMEOUT_MS,
                  *counter, target);
}

/* Synchronous wrappers over a given client; each returns the status. */

static const char *P(const char *rel)
{
    static char bufs[4][MD_PATH_BYTES_MAX + 1];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, MD_PATH_BYTES_MAX + 1, "%s%s", conf_base, rel);
    return b;
}

static int c_create(md_client *c, const char *path, const char *value, int flags, mdt_result *r)
{
    mdt_reset(r);
    int rc = md_create(c, path, value, value ? strlen(value) : 0, flags, mdt_create_done, r);
    if (rc != MG_OK)
        return rc;
    conf_wait(&r->done);
    return r->status;
}

static int c_get(md_client *c, const char *path, mdt_result *r)
{
    mdt_reset(r);
    int rc = md_get(c, path, mdt_get_done, r);
    if (rc != MG_OK)
        return rc;
    conf_wait(&r->done);
    return r->status;
}

static int c_set(md_client *c, const char *path, const char *value, int64_t version, mdt_result *r)
{
    mdt_reset(r);
    int rc = md_set(c, path, value, strlen(value), version, mdt_stat_done, r);
    if (rc != MG_OK)
        return rc;
    conf_wait(&r->done);
    return r->status;
}

static int c_delete(md_client *c, const char *path, int64_t version, mdt_result *r)
{
    mdt_reset(r);
    int rc = md_delete(c, path, version, mdt_done, r);
    if (rc != MG_OK)
        return rc;
    conf_wait(&r->done);
    return r->status;
}

static int c_children(md_client *c, const char *path, mdt_result *r)
{
    mdt_reset(r);
    int rc = md_children(c, path, mdt_children_done, r);
    if (rc != MG_OK)
        return rc;
    conf_wait(&r->done);
    return r->status;
}

static void conf_open(void)
{
    cr_assert_eq(conf_url(conf_url_buf, sizeof(conf_url_buf)), 0);
    md_store_options o = { .session_timeout_ms = 10000 };
    int rc = md_store_open(conf_url_buf, &o, &conf_store);
    cr_assert_eq(rc, MG_OK, "md_store_open(%s): %s", conf_url_buf, mg_strerror(rc));
    cr_assert_eq(md_client_create(conf_store, &conf_loop, &conf_client), MG_OK);
}

static void client_closed(void *arg)
{
    *(bool *)arg = true;
}

static void conf_close_client(md_client *c)
{
    bool closed = false;
    md_client_close(c, client_closed, &closed);
    conf_wait(&closed);
}

static void conf_close(void)
{
    if (conf_client)
        conf_close_client(conf_client);
    conf_client = NULL;
    md_store_close(conf_store);
    conf_store = NULL;
}

static void conf_setup(void)
{
    snprintf(conf_base, sizeof(conf_base), "/t%ld", (long)getpid());
    uv_loop_init(&conf_loop);
    conf_open();
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, conf_base, NULL, 0, &r), MG_OK);
    mdt_reset(&r);
}

static void conf_teardown(void)
{
    if (conf_store)
        conf_close();
    for (int i = 0; i < 100 && uv_loop_close(&conf_loop) == UV_EBUSY; i++)
        uv_run(&conf_loop, UV_RUN_NOWAIT);
    conf_cleanup();
}

TestSuite(CONF_SUITE, .init = conf_setup, .fini = conf_teardown, .timeout = 60);

Test(CONF_SUITE, create_then_get)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/a"), "hello", 0, &r), MG_OK);
    cr_assert_str_eq(r.path, P("/a"));
    cr_assert_eq(c_get(conf_client, P("/a"), &r), MG_OK);
    cr_assert_eq(r.len, 5);
    cr_assert_str_eq((char *)r.value, "hello");
    cr_assert_eq(r.stat.version, 0);
    cr_assert_eq(r.stat.ephemeral_owner, 0);
    cr_assert_eq(r.stat.child_count, 0);
    cr_assert_gt(r.stat.created_ms, 1600000000000LL);
    cr_assert_eq(c_create(conf_client, P("/a"), "again", 0, &r), MG_EEXIST);
    cr_assert_eq(c_get(conf_client, P("/missing"), &r), MG_ENOTFOUND);
    /* An empty value is a value. */
    cr_assert_eq(c_create(conf_client, P("/empty"), NULL, 0, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/empty"), &r), MG_OK);
    cr_assert_eq(r.len, 0);
    mdt_reset(&r);
}

Test(CONF_SUITE, missing_parent)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/x/y/z"), "v", 0, &r), MG_ENOTFOUND);
    cr_assert_eq(c_get(conf_client, P("/x"), &r), MG_ENOTFOUND);
    cr_assert_eq(c_create(conf_client, P("/x/y/z"), "v", MD_CREATE_PARENTS, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/x/y"), &r), MG_OK);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(r.stat.child_count, 1);
    cr_assert_eq(c_get(conf_client, P("/x/y/z"), &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "v");
    mdt_reset(&r);
}

Test(CONF_SUITE, set_compare_and_set)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/n"), "v0", 0, &r), MG_OK);
    cr_assert_eq(c_set(conf_client, P("/n"), "v1", 0, &r), MG_OK);
    cr_assert_eq(r.stat.version, 1);
    cr_assert_eq(c_set(conf_client, P("/n"), "stale", 0, &r), MG_EBADVERSION);
    cr_assert_eq(c_get(conf_client, P("/n"), &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "v1", "a refused set must not change the value");
    cr_assert_eq(r.stat.version, 1);
    cr_assert_eq(c_set(conf_client, P("/n"), "v2", MD_VERSION_ANY, &r), MG_OK);
    cr_assert_eq(r.stat.version, 2);
    cr_assert_eq(c_set(conf_client, P("/nope"), "v", MD_VERSION_ANY, &r), MG_ENOTFOUND);
    mdt_reset(&r);
}

Test(CONF_SUITE, delete_compare_and_set)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/d"), "v", 0, &r), MG_OK);
    cr_assert_eq(c_create(conf_client, P("/d/child"), "v", 0, &r), MG_OK);
    cr_assert_eq(c_delete(conf_client, P("/d"), MD_VERSION_ANY, &r), MG_ENOTEMPTY);
    cr_assert_eq(c_set(conf_client, P("/d/child"), "w", 0, &r), MG_OK);
    cr_assert_eq(c_delete(conf_client, P("/d/child"), 0, &r), MG_EBADVERSION);
    cr_assert_eq(c_get(conf_client, P("/d/child"), &r), MG_OK);
    cr_assert_eq(c_delete(conf_client, P("/d/child"), 1, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/d/child"), &r), MG_ENOTFOUND);
    cr_assert_eq(c_delete(conf_client, P("/d/child"), MD_VERSION_ANY, &r), MG_ENOTFOUND);
    cr_assert_eq(c_delete(conf_client, P("/d"), MD_VERSION_ANY, &r), MG_OK);
    mdt_reset(&r);
}

Test(CONF_SUITE, children_sorted_without_grandchildren)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/p"), NULL, 0, &r), MG_OK);
    const char *kids[] = { "/p/b", "/p/a", "/p/c", "/p/a/deep", "/p/ab" };
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(c_create(conf_client, P(kids[i]), "v", 0, &r), MG_OK);
    cr_assert_eq(c_children(conf_client, P("/p"), &r), MG_OK);
    cr_assert_eq(r.count, 4);
    cr_assert_str_eq(r.names[0], "a");
    cr_assert_str_eq(r.names[1], "ab");
    cr_assert_str_eq(r.names[2], "b");
    cr_assert_str_eq(r.names[3], "c");
    cr_assert_eq(c_get(conf_client, P("/p"), &r), MG_OK);
    cr_assert_eq(r.stat.child_count, 4);
    cr_assert_eq(c_children(conf_client, P("/p/c"), &r), MG_OK);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(c_children(conf_client, P("/none"), &r), MG_ENOTFOUND);
    mdt_reset(&r);
}

Test(CONF_SUITE, sequential_names)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/q"), NULL, 0, &r), MG_OK);
    char expect[MD_PATH_BYTES_MAX + 1];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(c_create(conf_client, P("/q/item-"), "v", MD_SEQUENTIAL, &r), MG_OK);
        snprintf(expect, sizeof(expect), "%s/q/item-%010d", conf_base, i);
        cr_assert_str_eq(r.path, expect);
    }
    cr_assert_eq(c_get(conf_client, expect, &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "v");
    cr_assert_eq(c_children(conf_client, P("/q"), &r), MG_OK);
    cr_assert_eq(r.count, 3);
    mdt_reset(&r);
}

Test(CONF_SUITE, ephemeral_lives_with_the_session)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/eph"), "alive", MD_EPHEMERAL, &r), MG_OK);
    cr_assert_eq(c_create(conf_client, P("/per"), "kept", 0, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/eph"), &r), MG_OK);
    cr_assert_eq(r.stat.ephemeral_owner, md_store_session_id(conf_store));
    cr_assert_neq(r.stat.ephemeral_owner, 0);
    cr_assert_eq(c_create(conf_client, P("/eph/kid"), "v", 0, &r), MG_EINVAL,
                 "ephemeral nodes cannot have children");
    cr_assert_eq(c_create(conf_client, P("/seq-eph-"), "v", MD_EPHEMERAL | MD_SEQUENTIAL, &r),
                 MG_OK);
    char seq_path[MD_PATH_BYTES_MAX + 1];
    snprintf(seq_path, sizeof(seq_path), "%s", r.path);

    /* End the session: close the store and open it again (a new session). */
    conf_close();
    conf_open();
    cr_assert_eq(c_get(conf_client, P("/eph"), &r), MG_ENOTFOUND);
    cr_assert_eq(c_get(conf_client, seq_path, &r), MG_ENOTFOUND);
    cr_assert_eq(c_get(conf_client, P("/per"), &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "kept");
    mdt_reset(&r);
}

Test(CONF_SUITE, node_watch_fires_once_per_change)
{
    mdt_result r = { 0 };
    mdt_watch w = { 0 };
    /* A watch on a missing node fires on its creation. */
    cr_assert_eq(md_get_watch(conf_client, P("/w"), mdt_watch_fired, &w, mdt_get_done, &r), MG_OK);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_ENOTFOUND);
    cr_assert_eq(w.fired, 0);
    cr_assert_eq(c_create(conf_client, P("/w"), "1", 0, &r), MG_OK);
    conf_wait_count(&w.fired, 1);
    cr_assert_eq(w.type, MD_EVENT_CREATED);
    cr_assert_str_eq(w.path, P("/w"));
    /* Not re-armed: a further change does not fire. */
    cr_assert_eq(c_set(conf_client, P("/w"), "2", MD_VERSION_ANY, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/w"), &r), MG_OK);
    cr_assert_eq(w.fired, 1);

    mdt_reset(&r);
    cr_assert_eq(md_get_watch(conf_client, P("/w"), mdt_watch_fired, &w, mdt_get_done, &r), MG_OK);
    conf_wait(&r.done);
    cr_assert_str_eq((char *)r.value, "2");
    cr_assert_eq(c_set(conf_client, P("/w"), "3", MD_VERSION_ANY, &r), MG_OK);
    conf_wait_count(&w.fired, 2);
    cr_assert_eq(w.type, MD_EVENT_CHANGED);

    mdt_reset(&r);
    cr_assert_eq(md_get_watch(conf_client, P("/w"), mdt_watch_fired, &w, mdt_get_done, &r), MG_OK);
    conf_wait(&r.done);
    cr_assert_eq(c_delete(conf_client, P("/w"), MD_VERSION_ANY, &r), MG_OK);
    conf_wait_count(&w.fired, 3);
    cr_assert_eq(w.type, MD_EVENT_DELETED);
    mdt_reset(&r);
}

Test(CONF_SUITE, children_watch_sees_another_client)
{
    mdt_result r = { 0 };
    mdt_watch w = { 0 };
    md_client *other;
    cr_assert_eq(md_client_create(conf_store, &conf_loop, &other), MG_OK);
    cr_assert_eq(c_create(conf_client, P("/room"), NULL, 0, &r), MG_OK);
    mdt_reset(&r);
    cr_assert_eq(
        md_children_watch(conf_client, P("/room"), mdt_watch_fired, &w, mdt_children_done, &r),
        MG_OK);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(c_create(other, P("/room/m1"), "x", 0, &r), MG_OK);
    conf_wait_count(&w.fired, 1);
    cr_assert_eq(w.type, MD_EVENT_CHILDREN);
    cr_assert_str_eq(w.path, P("/room"));

    /* A change of a child's value is not a children event. */
    mdt_reset(&r);
    cr_assert_eq(
        md_children_watch(conf_client, P("/room"), mdt_watch_fired, &w, mdt_children_done, &r),
        MG_OK);
    conf_wait(&r.done);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(c_set(other, P("/room/m1"), "y", MD_VERSION_ANY, &r), MG_OK);
    cr_assert_eq(c_get(conf_client, P("/room/m1"), &r), MG_OK);
    cr_assert_eq(w.fired, 1);
    cr_assert_eq(c_delete(other, P("/room/m1"), MD_VERSION_ANY, &r), MG_OK);
    conf_wait_count(&w.fired, 2);
    cr_assert_eq(w.type, MD_EVENT_CHILDREN);
    mdt_reset(&r);
    conf_close_client(other);
}

Test(CONF_SUITE, watch_lost_when_client_closes)
{
    mdt_result r = { 0 };
    mdt_watch w = { 0 };
    cr_assert_eq(c_create(conf_client, P("/lw"), "v", 0, &r), MG_OK);
    cr_assert_eq(md_get_watch(conf_client, P("/lw"), mdt_watch_fired, &w, mdt_get_done, &r), MG_OK);
    conf_wait(&r.done);
    conf_close_client(conf_client);
    conf_client = NULL;
    cr_assert_eq(w.fired, 1);
    cr_assert_eq(w.type, MD_EVENT_WATCH_LOST);
    mdt_reset(&r);
}

Test(CONF_SUITE, callbacks_never_run_inside_the_call)
{
    mdt_result r = { 0 };
    cr_assert_eq(md_get(conf_client, P("/nothing"), mdt_get_done, &r), MG_OK);
    cr_assert(!r.done);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_ENOTFOUND);
    mdt_reset(&r);
    cr_assert_eq(md_id_next(conf_client, "cb-test", mdt_id_done, &r), MG_OK);
    cr_assert(!r.done);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_OK);
    /* The second id comes from the cached block: still not inside the call. */
    r.done = false;
    cr_assert_eq(md_id_next(conf_client, "cb-test", mdt_id_done, &r), MG_OK);
    cr_assert(!r.done);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_OK);
    mdt_reset(&r);
}

#define CONF_IDS 200

typedef struct id_collect {
    int64_t ids[CONF_IDS];
    int count;
    int failed;
    int total;
} id_collect;

static void id_collect_done(int status, int64_t id, void *arg)
{
    id_collect *col = arg;
    if (status != MG_OK)
        col->failed++;
    else
        col->ids[col->count++] = id;
    col->total++;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

Test(CONF_SUITE, ids_unique_across_clients_stores_and_restarts)
{
    /* Counters are global: name them per test so shared servers do not mix runs. */
    char name[32];
    snprintf(name, sizeof(name), "ids-%ld", (long)getpid());
    md_store *second;
    md_client *a2, *b;
    md_store_options o = { .session_timeout_ms = 10000 };
    cr_assert_eq(md_client_create(conf_store, &conf_loop, &a2), MG_OK);
    /* A second store (a second process, in effect) only where two can share the data:
     * ZooKeeper. The embedded store has one owner; its second client stands in. */
    bool shared = strcmp(md_store_backend(conf_store), "zk") == 0;
    if (shared) {
        cr_assert_eq(md_store_open(conf_url_buf, &o, &second), MG_OK);
        cr_assert_eq(md_client_create(second, &conf_loop, &b), MG_OK);
    } else {
        second = NULL;
        cr_assert_eq(md_client_create(conf_store, &conf_loop, &b), MG_OK);
    }
    static id_collect col;
    memset(&col, 0, sizeof(col));
    md_client *clients[3] = { conf_client, a2, b };
    for (int i = 0; i < CONF_IDS / 2; i++) {
        /* Interleave requests so reservations race with compare-and-set. */
        cr_assert_eq(md_id_next(clients[i % 3], name, id_collect_done, &col), MG_OK);
    }
    conf_wait_count(&col.total, CONF_IDS / 2);
    cr_assert_eq(col.failed, 0);
    conf_close_client(a2);
    conf_close_client(b);
    if (second)
        md_store_close(second);

    /* After a restart, ids continue above every id handed out before. */
    conf_close();
    conf_open();
    for (int i = CONF_IDS / 2; i < CONF_IDS; i++)
        cr_assert_eq(md_id_next(conf_client, name, id_collect_done, &col), MG_OK);
    conf_wait_count(&col.total, CONF_IDS);
    cr_assert_eq(col.failed, 0);
    int64_t max_before = 0;
    for (int i = 0; i < CONF_IDS / 2; i++)
        max_before = col.ids[i] > max_before ? col.ids[i] : max_before;
    for (int i = CONF_IDS / 2; i < CONF_IDS; i++)
        cr_assert_gt(col.ids[i], max_before, "an id after the restart was not above the old ones");
    qsort(col.ids, CONF_IDS, sizeof(int64_t), cmp_i64);
    cr_assert_gt(col.ids[0], 0);
    for (int i = 1; i < CONF_IDS; i++)
        cr_assert_neq(col.ids[i], col.ids[i - 1], "id %" PRId64 " handed out twice", col.ids[i]);
}

Test(CONF_SUITE, bad_input_refused_at_once)
{
    mdt_result r = { 0 };
    static char longp[MD_PATH_BYTES_MAX + 2];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    cr_assert_eq(md_get(conf_client, longp, mdt_get_done, &r), MG_EINVAL);
    const char *bad[] = { "", "a/b", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/.." };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(md_create(conf_client, bad[i], "v", 1, 0, mdt_create_done, &r), MG_EINVAL,
                     "path '%s' should be refused", bad[i]);
    cr_assert_eq(md_get(conf_client, NULL, mdt_get_done, &r), MG_EINVAL);
    cr_assert_eq(md_create(conf_client, P("/f"), "v", 1, 0x100, mdt_create_done, &r), MG_EINVAL);
    cr_assert_eq(md_set(conf_client, P("/f"), "v", 1, -2, mdt_stat_done, &r), MG_EINVAL);
    cr_assert_eq(md_create(conf_client, "/", "v", 1, 0, mdt_create_done, &r), MG_EEXIST);
    cr_assert_eq(md_delete(conf_client, "/", MD_VERSION_ANY, mdt_done, &r), MG_EINVAL);
    cr_assert_eq(md_id_next(conf_client, "a/b", mdt_id_done, &r), MG_EINVAL);
    cr_assert(!r.done, "a refused call must not call its callback");

    /* Values: the limit itself is stored; one byte more is refused. */
    size_t big = MD_VALUE_BYTES_MAX;
    char *v = malloc(big + 1);
    for (size_t i = 0; i < big + 1; i++)
        v[i] = (char)('a' + i % 26);
    cr_assert_eq(md_create(conf_client, P("/big"), v, big + 1, 0, mdt_create_done, &r), MG_ELIMIT);
    cr_assert_eq(md_create(conf_client, P("/big"), v, big, 0, mdt_create_done, &r), MG_OK);
    conf_wait(&r.done);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(c_get(conf_client, P("/big"), &r), MG_OK);
    cr_assert_eq(r.len, big);
    cr_assert(memcmp(r.value, v, big) == 0);
    free(v);
    mdt_reset(&r);

    md_store *s;
    cr_assert_eq(md_store_open("etcd:127.0.0.1:2379", NULL, &s), MG_EINVAL);
    cr_assert_eq(md_store_open("rocksdb:", NULL, &s), MG_EINVAL);
    cr_assert_eq(md_store_open(NULL, NULL, &s), MG_EINVAL);
}

typedef struct flood {
    int done;
    int ok;
} flood;

static void flood_done(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    flood *f = arg;
    f->done++;
    f->ok += status == MG_OK;
}

Test(CONF_SUITE, inflight_limit_applies_backpressure)
{
    mdt_result r = { 0 };
    cr_assert_eq(c_create(conf_client, P("/fl"), "v", 0, &r), MG_OK);
    flood f = { 0 };
    int issued = 0;
    while (issued < MD_CLIENT_INFLIGHT_MAX) {
        cr_assert_eq(md_get(conf_client, P("/fl"), flood_done, &f), MG_OK);
        issued++;
    }
    cr_assert_eq(md_get(conf_client, P("/fl"), flood_done, &f), MG_ELIMIT);
    conf_wait_count(&f.done, issued);
    cr_assert_eq(f.ok, issued);
    cr_assert_eq(md_get(conf_client, P("/fl"), flood_done, &f), MG_OK);
    conf_wait_count(&f.done, issued + 1);
    mdt_reset(&r);
}

#endif
