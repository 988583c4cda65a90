/*
 * ZooKeeper backend of the metadata store (src/metadata/zk.c) against a real ZooKeeper server
 * started by the harness (tests/support/zk_harness.h), one per test: session expiry (ephemerals
 * go, other sessions' watches fire, the expired store's watches fire MD_EVENT_WATCH_LOST and it
 * opens a new session), the server going away and coming back, a chroot, the error mapping and
 * URL checks. The backend-independent semantics are in the conformance suite.
 *
 * Each test runs a libuv loop on the test thread; t_run() runs it until a condition holds,
 * bounded by a uv timer, so a broken backend fails the test instead of hanging it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"
#include "metadata/md_int.h"
#include "metadata/metadata.h"
#include "metadata/zk_int.h"
#include "support/zk_harness.h"
#include "md_result.h"

/* One metadata callback on a live server comes in milliseconds; connection changes take up to
 * a connect attempt plus the server's start-up. */
#define T_WAIT_MS            20000
#define T_RESTART_WAIT_MS    40000
#define T_SESSION_TIMEOUT_MS 4000
#define T_VALUE_BYTES_MAX    (MD_VALUE_BYTES_MAX + 1)
#define T_SESSION_EVENTS_MAX 64

/* Asserts that a synchronous wrapper returned want, naming both codes on failure. */
#define T_EXPECT(expr, want)                                                          \
    do {                                                                              \
        int t__rc = (expr);                                                           \
        cr_assert_eq(t__rc, (want), "%s: got %s, want %s", #expr, mg_err_name(t__rc), \
                     mg_err_name(want));                                              \
    } while (0)

TestSuite(zk, .timeout = 60);

static uv_loop_t t_loop;
static zkh t_server;

typedef struct t_sess {
    int count;
    md_session_state states[T_SESSION_EVENTS_MAX];
} t_sess;

/* --- loop helpers ----------------------------------------------------------------------- */

typedef bool (*t_pred)(void *arg);

static void t_timeout_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until pred(arg) holds or timeout_ms pass; returns pred(arg). */
static bool t_run(t_pred pred, void *arg, int timeout_ms)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(&t_loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, t_timeout_cb, (uint64_t)timeout_ms, 0);
    while (!pred(arg) && !timed_out)
        uv_run(&t_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&t_loop, UV_RUN_NOWAIT);
    return pred(arg);
}

static bool t_res_done(void *arg)
{
    return ((mdt_result *)arg)->done;
}

static bool t_watch_fired(void *arg)
{
    return ((mdt_watch *)arg)->fired > 0;
}

static bool t_flag(void *arg)
{
    return *(bool *)arg;
}

/* Index of the first state st at or after from, or -1. */
static int t_sess_find(const t_sess *s, md_session_state st, int from)
{
    for (int i = from < 0 ? 0 : from; i < s->count; i++) {
        if (s->states[i] == st)
            return i;
    }
    return -1;
}

static void t_session_cb(md_session_state state, void *arg)
{
    t_sess *s = arg;
    if (s->count < T_SESSION_EVENTS_MAX)
        s->states[s->count++] = state;
}

/* --- callbacks -------------------------------------------------------------------------- */

static void t_closed_cb(void *arg)
{
    *(bool *)arg = true;
}

/* --- synchronous wrappers (run the loop until the callback) ------------------------------- */

static int t_wait(mdt_result *r)
{
    cr_assert(t_run(t_res_done, r, T_WAIT_MS), "no metadata callback within %d ms", T_WAIT_MS);
    return r->status;
}

static int t_get(md_client *c, const char *path, mdt_result *r)
{
    mdt_reset(r);
    cr_assert_eq(md_get(c, path, mdt_get_done, r), MG_OK);
    return t_wait(r);
}

static int t_get_watch(md_client *c, const char *path, mdt_watch *w, mdt_result *r)
{
    mdt_reset(r);
    memset(w, 0, sizeof(*w));
    cr_assert_eq(md_get_watch(c, path, mdt_watch_fired, w, mdt_get_done, r), MG_OK);
    return t_wait(r);
}

static int t_create_n(md_client *c, const char *path, const void *value, size_t len, int flags,
                      mdt_result *r)
{
    mdt_reset(r);
    cr_assert_eq(md_create(c, path, value, len, flags, mdt_create_done, r), MG_OK);
    return t_wait(r);
}

static int t_create(md_client *c, const char *path, const char *value, int flags, mdt_result *r)
{
    return t_create_n(c, path, value, strlen(value), flags, r);
}

static int t_set(md_client *c, const char *path, const char *value, int64_t version, mdt_result *r)
{
    mdt_reset(r);
    cr_assert_eq(md_set(c, path, value, strlen(value), version, mdt_stat_done, r), MG_OK);
    return t_wait(r);
}

static int t_delete(md_client *c, const char *path, int64_t version, mdt_result *r)
{
    mdt_reset(r);
    cr_assert_eq(md_delete(c, path, version, mdt_done, r), MG_OK);
    return t_wait(r);
}

static int t_children(md_client *c, const char *path, mdt_result *r)
{
    mdt_reset(r);
    cr_assert_eq(md_children(c, path, mdt_children_done, r), MG_OK);
    return t_wait(r);
}

static int t_children_watch(md_client *c, const char *path, mdt_watch *w, mdt_result *r)
{
    mdt_reset(r);
    memset(w, 0, sizeof(*w));
    cr_assert_eq(md_children_watch(c, path, mdt_watch_fired, w, mdt_children_done, r), MG_OK);
    return t_wait(r);
}

static md_store *t_open(const char *url, int32_t session_timeout_ms)
{
    md_store_options opts = { .session_timeout_ms = session_timeout_ms };
    md_store *s = NULL;
    int rc = md_store_open(url, &opts, &s);
    cr_assert_eq(rc, MG_OK, "md_store_open(%s): %s", url, mg_strerror(rc));
    return s;
}

static md_client *t_client(md_store *s, t_sess *log)
{
    md_client *c = NULL;
    cr_assert_eq(md_client_create(s, &t_loop, &c), MG_OK);
    if (log != NULL)
        md_client_on_session(c, t_session_cb, log);
    return c;
}

static void t_close_client(md_client *c)
{
    bool closed = false;
    md_client_close(c, t_closed_cb, &closed);
    cr_assert(t_run(t_flag, &closed, T_WAIT_MS), "client close did not finish");
}

/* --- fixtures ---------------------------------------------------------------------------- */

static void t_init_loop(void)
{
    /* ZooKeeper's connection warnings are expected here; MG_TEST_LOG_LEVEL=debug shows all. */
    const char *name = getenv("MG_TEST_LOG_LEVEL");
    mg_log_level level = MG_LOG_ERROR;
    if (name != NULL && mg_log_parse_level(name, &level) != MG_OK)
        level = MG_LOG_ERROR;
    mg_log_set_level(level);
    cr_assert_eq(uv_loop_init(&t_loop), 0);
}

static void t_fini_loop(void)
{
    uv_run(&t_loop, UV_RUN_NOWAIT);
    cr_expect_eq(uv_loop_close(&t_loop), 0, "handles left open on the test loop");
}

static void t_init(void)
{
    t_init_loop();
    int rc = zkh_start(&t_server);
    cr_assert_eq(rc, MG_OK, "cannot start a ZooKeeper server: %s", mg_strerror(rc));
}

static void t_fini(void)
{
    zkh_destroy(&t_server);
    t_fini_loop();
}

/* --- session expiry ---------------------------------------------------------------------- */

typedef struct t_expiry {
    mdt_watch *on_eph;   /* B's node watch on A's ephemeral */
    mdt_watch *on_keep;  /* A's node watch on a persistent node nobody touches */
    mdt_watch *on_quiet; /* A's children watch on a node whose children nobody touches */
    t_sess *log;         /* A's session events */
} t_expiry;

static bool t_expiry_seen(void *arg)
{
    t_expiry *e = arg;
    int expired = t_sess_find(e->log, MD_SESSION_EXPIRED, 0);
    return e->on_eph->fired > 0 && e->on_keep->fired > 0 && e->on_quiet->fired > 0 &&
           expired >= 0 && t_sess_find(e->log, MD_SESSION_CONNECTED, expired + 1) >= 0;
}

Test(zk, expiry_removes_ephemerals_and_fires_watches, .init = t_init, .fini = t_fini)
{
    md_store *a = t_open(zkh_url(&t_server), 10000);
    md_store *b = t_open(zkh_url(&t_server), 10000);
    cr_assert_str_eq(md_store_backend(a), "zk");
    t_sess log_a = { 0 };
    md_client *ca = t_client(a, &log_a);
    md_client *cb = t_client(b, NULL);
    mdt_result r = { 0 };

    T_EXPECT(t_create(ca, "/eph", "a1", MD_EPHEMERAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/eph");
    int64_t sid1 = md_store_session_id(a);
    cr_assert_neq(sid1, 0);
    cr_assert_neq(md_store_session_id(b), sid1);
    T_EXPECT(t_create(ca, "/keep", "k", 0, &r), MG_OK);
    T_EXPECT(t_create(ca, "/quiet", "", 0, &r), MG_OK);

    T_EXPECT(t_get(cb, "/eph", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "a1");
    cr_assert_eq(r.stat.ephemeral_owner, sid1);

    mdt_watch on_eph, on_keep, on_quiet;
    T_EXPECT(t_get_watch(cb, "/eph", &on_eph, &r), MG_OK);
    T_EXPECT(t_get_watch(ca, "/keep", &on_keep, &r), MG_OK);
    T_EXPECT(t_children_watch(ca, "/quiet", &on_quiet, &r), MG_OK);
    cr_assert_eq(r.count, 0);

    int rc = md_zk_expire_session_for_test(a);
    cr_assert_eq(rc, MG_OK, "expire: %s", mg_strerror(rc));
    t_expiry e = { &on_eph, &on_keep, &on_quiet, &log_a };
    cr_assert(t_run(t_expiry_seen, &e, T_WAIT_MS),
              "after expiry: eph %d keep %d quiet %d, %d session events", on_eph.fired,
              on_keep.fired, on_quiet.fired, log_a.count);

    /* B saw the ephemeral go; A's watches were lost with its session. */
    cr_assert_eq(on_eph.fired, 1);
    cr_assert_eq(on_eph.type, MD_EVENT_DELETED);
    cr_assert_str_eq(on_eph.path, "/eph");
    cr_assert_eq(on_keep.fired, 1);
    cr_assert_eq(on_keep.type, MD_EVENT_WATCH_LOST);
    cr_assert_str_eq(on_keep.path, "/keep");
    cr_assert_eq(on_quiet.fired, 1);
    cr_assert_eq(on_quiet.type, MD_EVENT_WATCH_LOST);
    cr_assert_str_eq(on_quiet.path, "/quiet");

    /* A is on a new session, and works. */
    int64_t sid2 = md_store_session_id(a);
    cr_assert_neq(sid2, 0);
    cr_assert_neq(sid2, sid1);
    T_EXPECT(t_get(cb, "/eph", &r), MG_ENOTFOUND);
    T_EXPECT(t_get(ca, "/keep", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "k");
    T_EXPECT(t_create(ca, "/eph", "a2", MD_EPHEMERAL, &r), MG_OK);
    T_EXPECT(t_get(cb, "/eph", &r), MG_OK);
    cr_assert_eq(r.stat.ephemeral_owner, sid2);

    /* Closing A ends its session at once: B sees the new ephemeral go too. */
    T_EXPECT(t_get_watch(cb, "/eph", &on_eph, &r), MG_OK);
    t_close_client(ca);
    md_store_close(a);
    cr_assert(t_run(t_watch_fired, &on_eph, T_WAIT_MS), "closing A left its ephemeral");
    cr_assert_eq(on_eph.type, MD_EVENT_DELETED);
    T_EXPECT(t_get(cb, "/eph", &r), MG_ENOTFOUND);

    mdt_reset(&r);
    t_close_client(cb);
    md_store_close(b);
}

/* --- server stopped and restarted -------------------------------------------------------- */

typedef struct t_after {
    t_sess *log;
    md_session_state first;
    md_session_state then; /* 0: only first */
} t_after;

static bool t_after_seen(void *arg)
{
    t_after *a = arg;
    int i = t_sess_find(a->log, a->first, 0);
    if (i < 0)
        return false;
    return a->then == 0 || t_sess_find(a->log, a->then, i + 1) >= 0;
}

Test(zk, server_restart_disconnects_then_recovers, .init = t_init, .fini = t_fini)
{
    md_store *a = t_open(zkh_url(&t_server), T_SESSION_TIMEOUT_MS);
    t_sess log = { 0 };
    md_client *c = t_client(a, &log);
    mdt_result r = { 0 };
    T_EXPECT(t_create(c, "/persist", "data", 0, &r), MG_OK);
    T_EXPECT(t_create(c, "/mine", "", MD_EPHEMERAL, &r), MG_OK);
    int64_t sid = md_store_session_id(a);
    cr_assert_neq(sid, 0);

    cr_assert_eq(zkh_stop(&t_server), MG_OK);
    cr_assert(!zkh_running(&t_server));
    t_after down = { &log, MD_SESSION_DISCONNECTED, 0 };
    cr_assert(t_run(t_after_seen, &down, T_WAIT_MS), "no DISCONNECTED after the server stopped");

    /* While it is down, operations fail with MG_ECONNECTION (within one connect attempt). */
    T_EXPECT(t_get(c, "/persist", &r), MG_ECONNECTION);
    T_EXPECT(t_create(c, "/new", "x", 0, &r), MG_ECONNECTION);
    T_EXPECT(t_set(c, "/persist", "y", MD_VERSION_ANY, &r), MG_ECONNECTION);

    cr_assert_eq(zkh_restart(&t_server), MG_OK);
    t_after up = { &log, MD_SESSION_DISCONNECTED, MD_SESSION_CONNECTED };
    cr_assert(t_run(t_after_seen, &up, T_RESTART_WAIT_MS),
              "no CONNECTED after the server came back (%d session events)", log.count);

    /* Persistent data survived; the session did too unless it was reported expired. */
    T_EXPECT(t_get(c, "/persist", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "data");
    cr_assert_eq(r.stat.version, 0);
    T_EXPECT(t_get(c, "/new", &r), MG_ENOTFOUND);
    if (t_sess_find(&log, MD_SESSION_EXPIRED, 0) < 0) {
        cr_assert_eq(md_store_session_id(a), sid);
        T_EXPECT(t_get(c, "/mine", &r), MG_OK);
        cr_assert_eq(r.stat.ephemeral_owner, sid);
    }
    T_EXPECT(t_set(c, "/persist", "again", 0, &r), MG_OK);
    cr_assert_eq(r.stat.version, 1);

    mdt_reset(&r);
    t_close_client(c);
    md_store_close(a);
}

/* --- chroot ------------------------------------------------------------------------------ */

Test(zk, chroot_paths_are_relative, .init = t_init, .fini = t_fini)
{
    md_store *plain = t_open(zkh_url(&t_server), 0);
    md_client *cp = t_client(plain, NULL);
    mdt_result r = { 0 };
    T_EXPECT(t_create(cp, "/chroot-x", "", 0, &r), MG_OK);

    char url[128];
    snprintf(url, sizeof(url), "%s/chroot-x", zkh_url(&t_server));
    md_store *rooted = t_open(url, 0);
    md_client *cr = t_client(rooted, NULL);

    T_EXPECT(t_create(cr, "/a", "v", 0, &r), MG_OK);
    cr_assert_str_eq(r.path, "/a");
    T_EXPECT(t_get(cp, "/chroot-x/a", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "v");
    T_EXPECT(t_get(cp, "/a", &r), MG_ENOTFOUND);
    T_EXPECT(t_children(cr, "/", &r), MG_OK);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.names[0], "a");

    /* Sequential names come back relative, with ten digits. */
    T_EXPECT(t_create(cr, "/s-", "", MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_eq(strlen(r.path), strlen("/s-") + MD_SEQUENTIAL_DIGITS, "path %s", r.path);
    cr_assert_eq(strncmp(r.path, "/s-", 3), 0, "path %s", r.path);
    for (size_t i = 3; i < strlen(r.path); i++)
        cr_assert(r.path[i] >= '0' && r.path[i] <= '9', "path %s", r.path);
    char full[MD_PATH_BYTES_MAX + 16];
    snprintf(full, sizeof(full), "/chroot-x%s", r.path);
    T_EXPECT(t_get(cp, full, &r), MG_OK);

    /* Events carry relative paths: a node watch on a missing node fires on its create. */
    mdt_watch w;
    T_EXPECT(t_get_watch(cr, "/w", &w, &r), MG_ENOTFOUND);
    cr_assert_eq(w.fired, 0);
    T_EXPECT(t_create(cp, "/chroot-x/w", "1", 0, &r), MG_OK);
    cr_assert(t_run(t_watch_fired, &w, T_WAIT_MS), "no CREATED event under the chroot");
    cr_assert_eq(w.type, MD_EVENT_CREATED);
    cr_assert_str_eq(w.path, "/w");

    T_EXPECT(t_children_watch(cr, "/", &w, &r), MG_OK);
    T_EXPECT(t_create(cp, "/chroot-x/b", "", 0, &r), MG_OK);
    cr_assert(t_run(t_watch_fired, &w, T_WAIT_MS), "no CHILDREN event under the chroot");
    cr_assert_eq(w.type, MD_EVENT_CHILDREN);
    cr_assert_str_eq(w.path, "/");

    /* Missing parents are created inside the chroot, as empty persistent nodes. */
    T_EXPECT(t_create(cr, "/p1/p2/leaf", "x", MD_CREATE_PARENTS, &r), MG_OK);
    cr_assert_str_eq(r.path, "/p1/p2/leaf");
    T_EXPECT(t_get(cp, "/chroot-x/p1/p2", &r), MG_OK);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(r.stat.ephemeral_owner, 0);
    cr_assert_eq(r.stat.child_count, 1);

    mdt_reset(&r);
    t_close_client(cr);
    md_store_close(rooted);
    t_close_client(cp);
    md_store_close(plain);
}

/* --- operations and error mapping -------------------------------------------------------- */

Test(zk, operations_map_zookeeper_errors, .init = t_init, .fini = t_fini)
{
    md_store *s = t_open(zkh_url(&t_server), 0);
    md_client *c = t_client(s, NULL);
    mdt_result r = { 0 };
    int64_t before_ms = (int64_t)time(NULL) * 1000;

    T_EXPECT(t_create(c, "/n", "1", 0, &r), MG_OK);
    T_EXPECT(t_create(c, "/n", "2", 0, &r), MG_EEXIST);
    T_EXPECT(t_get(c, "/n", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "1");
    cr_assert_eq(r.stat.version, 0);
    cr_assert_eq(r.stat.ephemeral_owner, 0);
    cr_assert_eq(r.stat.child_count, 0);
    cr_assert_eq(r.stat.created_ms, r.stat.modified_ms);
    /* Wall clock of the server (same machine): within a minute of the test's. */
    cr_assert_geq(r.stat.created_ms, before_ms - 60000);
    cr_assert_leq(r.stat.created_ms, before_ms + 60000);

    T_EXPECT(t_set(c, "/n", "3", 5, &r), MG_EBADVERSION);
    T_EXPECT(t_set(c, "/n", "3", 0, &r), MG_OK);
    cr_assert_eq(r.stat.version, 1);
    T_EXPECT(t_set(c, "/n", "4", MD_VERSION_ANY, &r), MG_OK);
    cr_assert_eq(r.stat.version, 2);

    T_EXPECT(t_create(c, "/n/c", "", 0, &r), MG_OK);
    T_EXPECT(t_delete(c, "/n", MD_VERSION_ANY, &r), MG_ENOTEMPTY);
    T_EXPECT(t_delete(c, "/n/c", 7, &r), MG_EBADVERSION);
    T_EXPECT(t_delete(c, "/n/c", 0, &r), MG_OK);
    T_EXPECT(t_delete(c, "/n/c", MD_VERSION_ANY, &r), MG_ENOTFOUND);

    T_EXPECT(t_get(c, "/missing", &r), MG_ENOTFOUND);
    T_EXPECT(t_set(c, "/missing", "x", MD_VERSION_ANY, &r), MG_ENOTFOUND);
    T_EXPECT(t_children(c, "/missing", &r), MG_ENOTFOUND);
    T_EXPECT(t_create(c, "/no/parent", "x", 0, &r), MG_ENOTFOUND);

    T_EXPECT(t_create(c, "/e", "", MD_EPHEMERAL, &r), MG_OK);
    T_EXPECT(t_create(c, "/e/child", "", 0, &r), MG_EINVAL);
    T_EXPECT(t_create(c, "/e/x/y", "", MD_CREATE_PARENTS, &r), MG_EINVAL);
    T_EXPECT(t_create(c, "/e-seq-", "", MD_EPHEMERAL | MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_eq(strlen(r.path), strlen("/e-seq-") + MD_SEQUENTIAL_DIGITS);
    char seq_path[MD_PATH_BYTES_MAX + 1];
    snprintf(seq_path, sizeof(seq_path), "%s", r.path);
    T_EXPECT(t_get(c, seq_path, &r), MG_OK);
    cr_assert_eq(r.stat.ephemeral_owner, md_store_session_id(s));

    /* Parents: an existing ancestor is fine, the missing ones are created. */
    T_EXPECT(t_create(c, "/x", "top", 0, &r), MG_OK);
    T_EXPECT(t_create(c, "/x/y/z", "leaf", MD_CREATE_PARENTS, &r), MG_OK);
    T_EXPECT(t_get(c, "/x", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "top");
    T_EXPECT(t_children(c, "/x", &r), MG_OK);
    cr_assert_eq(r.count, 1);
    cr_assert_str_eq(r.names[0], "y");
    T_EXPECT(t_get(c, "/x/y/z", &r), MG_OK);
    cr_assert_str_eq((char *)r.value, "leaf");
    T_EXPECT(t_create(c, "/x/y/z", "again", MD_CREATE_PARENTS, &r), MG_EEXIST);

    /* The largest value goes through ZooKeeper's packet limit (jute.maxbuffer). */
    uint8_t *big = mg_malloc(MD_VALUE_BYTES_MAX);
    cr_assert_not_null(big);
    for (size_t i = 0; i < MD_VALUE_BYTES_MAX; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    T_EXPECT(t_create_n(c, "/big", big, MD_VALUE_BYTES_MAX, 0, &r), MG_OK);
    T_EXPECT(t_get(c, "/big", &r), MG_OK);
    cr_assert_eq(r.len, MD_VALUE_BYTES_MAX);
    cr_assert_eq(memcmp(r.value, big, MD_VALUE_BYTES_MAX), 0);
    mg_free(big);

    /* Watches: a change fires CHANGED, a delete fires DELETED on node and children watches. */
    mdt_watch wn, wc;
    T_EXPECT(t_get_watch(c, "/x", &wn, &r), MG_OK);
    T_EXPECT(t_children_watch(c, "/x", &wc, &r), MG_OK);
    T_EXPECT(t_set(c, "/x", "changed", 0, &r), MG_OK);
    cr_assert(t_run(t_watch_fired, &wn, T_WAIT_MS));
    cr_assert_eq(wn.type, MD_EVENT_CHANGED);
    cr_assert_eq(wc.fired, 0);
    T_EXPECT(t_delete(c, "/x/y/z", 0, &r), MG_OK);
    T_EXPECT(t_delete(c, "/x/y", 0, &r), MG_OK);
    cr_assert(t_run(t_watch_fired, &wc, T_WAIT_MS));
    cr_assert_eq(wc.type, MD_EVENT_CHILDREN);
    T_EXPECT(t_get_watch(c, "/x", &wn, &r), MG_OK);
    T_EXPECT(t_delete(c, "/x", MD_VERSION_ANY, &r), MG_OK);
    cr_assert(t_run(t_watch_fired, &wn, T_WAIT_MS));
    cr_assert_eq(wn.type, MD_EVENT_DELETED);
    cr_assert_str_eq(wn.path, "/x");

    mdt_reset(&r);
    t_close_client(c);
    md_store_close(s);
}

/* --- URLs and a store without a server ---------------------------------------------------- */

Test(zk, bad_urls_are_einval, .init = t_init_loop, .fini = t_fini_loop)
{
    static const char *const bad[] = {
        "zk:",
        "zk:127.0.0.1",
        "zk:127.0.0.1:",
        "zk:127.0.0.1:0",
        "zk:127.0.0.1:65536",
        "zk:127.0.0.1:21a1",
        "zk::2181",
        "zk:127.0.0.1:2181,",
        "zk:,127.0.0.1:2181",
        "zk:127.0.0.1:2181,,127.0.0.1:2182",
        "zk:127.0.0.1:2181/a/",
        "zk:127.0.0.1:2181//a",
        "zk:127.0.0.1:2181/a/../b",
        "zk:/chroot",
        "zk:bad host:2181",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        md_store *s = NULL;
        int rc = md_store_open(bad[i], NULL, &s);
        cr_assert_eq(rc, MG_EINVAL, "%s: %s", bad[i], mg_strerror(rc));
        cr_assert_null(s, "%s", bad[i]);
    }
}

Test(zk, no_server_fails_operations_with_econnection, .init = t_init_loop, .fini = t_fini_loop)
{
    /* Nothing listens on port 1: every connect attempt is refused at once. Two servers and a
     * chroot check the list parsing of a valid URL. */
    md_store *s = t_open("zk:127.0.0.1:1,localhost:1/some/root", T_SESSION_TIMEOUT_MS);
    cr_assert_eq(md_store_session_id(s), 0);
    md_client *c = t_client(s, NULL);
    mdt_result r = { 0 };
    T_EXPECT(t_get(c, "/a", &r), MG_ECONNECTION);
    T_EXPECT(t_create(c, "/a", "x", MD_CREATE_PARENTS, &r), MG_ECONNECTION);
    T_EXPECT(t_children(c, "/", &r), MG_ECONNECTION);
    mdt_watch w;
    T_EXPECT(t_get_watch(c, "/a", &w, &r), MG_ECONNECTION);
    cr_assert_eq(md_store_session_id(s), 0);
    mdt_reset(&r);
    t_close_client(c);
    md_store_close(s);
    cr_assert_eq(w.fired, 0); /* a failed read leaves no watch */
}
