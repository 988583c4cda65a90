/*
 * Behaviour of the embedded RocksDB metadata backend that the cross-backend conformance suite
 * does not cover: what survives a restart (persistent nodes, values, versions, sequence
 * counters) and what does not (ephemerals, also those of a process that crashed), the
 * directory lock, defensive decoding of corrupt records, and the key layout's children scan.
 *
 * Each test makes its own mkdtemp directory and runs one libuv loop in the test thread;
 * t_wait() runs it until a callback sets its flag, bounded by a timer so a broken backend
 * fails the test instead of hanging it.
 */
#include <criterion/criterion.h>
#include <ftw.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "metadata/limits.h"
#include "metadata/md_int.h"
#include "metadata/metadata.h"

#define T_TIMEOUT_MS 5000
#define T_NAMES_MAX  16

typedef struct t_result {
    bool done;
    int status;
    char value[64];
    size_t len;
    md_stat stat;
    char path[MD_PATH_BYTES_MAX + 1];
    char names[T_NAMES_MAX][64];
    size_t count;
} t_result;

static char t_dir[256];     /* the mkdtemp directory */
static char t_url[320];     /* rocksdb:<t_dir>/a/b/db (the store makes the missing levels) */
static char t_db_path[300]; /* <t_dir>/a/b/db */

/* --- helpers ---------------------------------------------------------------------------- */

static void t_timeout(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until *flag, failing the test after T_TIMEOUT_MS. */
static bool t_run_until(uv_loop_t *loop, const bool *flag)
{
    bool timed_out = false;
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    timer.data = &timed_out;
    uv_timer_start(&timer, t_timeout, T_TIMEOUT_MS, 0);
    while (!*flag && !timed_out)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void t_wait(uv_loop_t *loop, const bool *flag)
{
    cr_assert(t_run_until(loop, flag), "timed out after %d ms waiting for a callback",
              T_TIMEOUT_MS);
}

static void get_done(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    t_result *r = arg;
    r->status = status;
    if (status == MG_OK) {
        r->len = len;
        if (len > 0) /* value is NULL for an empty node */
            memcpy(r->value, value, len < sizeof(r->value) - 1 ? len : sizeof(r->value) - 1);
        r->stat = *stat;
    }
    r->done = true;
}

static void create_done(int status, const char *path, void *arg)
{
    t_result *r = arg;
    r->status = status;
    if (status == MG_OK)
        snprintf(r->path, sizeof(r->path), "%s", path);
    r->done = true;
}

static void stat_done(int status, const md_stat *stat, void *arg)
{
    t_result *r = arg;
    r->status = status;
    if (status == MG_OK)
        r->stat = *stat;
    r->done = true;
}

static void children_done(int status, const char *const *names, size_t count, void *arg)
{
    t_result *r = arg;
    r->status = status;
    r->count = count;
    for (size_t i = 0; i < count && i < T_NAMES_MAX; i++)
        snprintf(r->names[i], sizeof(r->names[i]), "%s", names[i]);
    r->done = true;
}

static void closed_done(void *arg)
{
    *(bool *)arg = true;
}

/* One open store with one client on a loop. */
typedef struct t_env {
    uv_loop_t loop;
    md_store *store;
    md_client *client;
} t_env;

static void t_open(t_env *e)
{
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    int rc = md_store_open(t_url, NULL, &e->store);
    cr_assert_eq(rc, MG_OK, "md_store_open: %s", mg_err_name(rc));
    cr_assert_str_eq(md_store_backend(e->store), "rocksdb");
    cr_assert_eq(md_client_create(e->store, &e->loop, &e->client), MG_OK);
}

static void t_close(t_env *e)
{
    bool closed = false;
    md_client_close(e->client, closed_done, &closed);
    t_wait(&e->loop, &closed);
    md_store_close(e->store);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
}

static int t_get(t_env *e, const char *path, t_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(md_get(e->client, path, get_done, r), MG_OK);
    t_wait(&e->loop, &r->done);
    return r->status;
}

static int t_create(t_env *e, const char *path, const char *value, int flags, t_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(md_create(e->client, path, value, strlen(value), flags, create_done, r), MG_OK);
    t_wait(&e->loop, &r->done);
    return r->status;
}

static int t_set(t_env *e, const char *path, const char *value, int64_t version, t_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(md_set(e->client, path, value, strlen(value), version, stat_done, r), MG_OK);
    t_wait(&e->loop, &r->done);
    return r->status;
}

static int t_children(t_env *e, const char *path, t_result *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(md_children(e->client, path, children_done, r), MG_OK);
    t_wait(&e->loop, &r->done);
    return r->status;
}

static void t_setup(void)
{
    snprintf(t_dir, sizeof(t_dir), "/tmp/magnetar-mdrocks-XXXXXX");
    cr_assert_not_null(mkdtemp(t_dir));
    snprintf(t_db_path, sizeof(t_db_path), "%s/a/b/db", t_dir);
    snprintf(t_url, sizeof(t_url), "rocksdb:%s", t_db_path);
}

static int t_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void t_teardown(void)
{
    if (t_dir[0] != '\0')
        nftw(t_dir, t_rm, 16, FTW_DEPTH | FTW_PHYS);
    t_dir[0] = '\0';
}

/* Writes a raw value for key straight into the closed store's database. */
static void t_put_raw(const char *key, size_t key_len, const char *value, size_t value_len)
{
    rocksdb_options_t *o = rocksdb_options_create();
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, t_db_path, &err);
    cr_assert_null(err, "rocksdb_open: %s", err);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put(db, wo, key, key_len, value, value_len, &err);
    cr_assert_null(err, "rocksdb_put: %s", err);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

TestSuite(md_rocksdb, .init = t_setup, .fini = t_teardown, .timeout = 30);

/* --- tests ------------------------------------------------------------------------------ */

Test(md_rocksdb, restart_keeps_persistent_state_and_drops_ephemerals)
{
    t_env e;
    t_result r;
    t_open(&e);
    int64_t first_session = md_store_session_id(e.store);
    cr_assert_neq(first_session, 0);

    cr_assert_eq(t_create(&e, "/p", "one", 0, &r), MG_OK);
    cr_assert_eq(t_set(&e, "/p", "two", 0, &r), MG_OK);
    cr_assert_eq(t_set(&e, "/p", "three", 1, &r), MG_OK);
    cr_assert_eq(r.stat.version, 2);
    cr_assert_eq(t_create(&e, "/deep/x/y", "leaf", MD_CREATE_PARENTS, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/p/eph", "gone", MD_EPHEMERAL, &r), MG_OK);
    cr_assert_eq(t_get(&e, "/p/eph", &r), MG_OK);
    cr_assert_eq(r.stat.ephemeral_owner, first_session);
    cr_assert_eq(t_get(&e, "/p", &r), MG_OK);
    cr_assert_eq(r.stat.child_count, 1);
    int64_t created_ms = r.stat.created_ms;
    int64_t modified_ms = r.stat.modified_ms;
    t_close(&e);

    t_open(&e);
    cr_assert_neq(md_store_session_id(e.store), first_session);
    cr_assert_eq(t_get(&e, "/p", &r), MG_OK);
    cr_assert_eq(r.len, 5);
    cr_assert_str_eq(r.value, "three");
    cr_assert_eq(r.stat.version, 2);
    cr_assert_eq(r.stat.created_ms, created_ms);
    cr_assert_eq(r.stat.modified_ms, modified_ms);
    cr_assert_eq(r.stat.ephemeral_owner, 0);
    cr_assert_eq(r.stat.child_count, 0, "the dropped ephemeral is no longer counted");
    cr_assert_eq(t_get(&e, "/p/eph", &r), MG_ENOTFOUND);
    cr_assert_eq(t_children(&e, "/p", &r), MG_OK);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(t_get(&e, "/deep/x/y", &r), MG_OK);
    cr_assert_str_eq(r.value, "leaf");
    cr_assert_eq(t_get(&e, "/deep/x", &r), MG_OK);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(r.stat.child_count, 1);
    /* The version keeps counting from where it was. */
    cr_assert_eq(t_set(&e, "/p", "four", 1, &r), MG_EBADVERSION);
    cr_assert_eq(t_set(&e, "/p", "four", 2, &r), MG_OK);
    cr_assert_eq(r.stat.version, 3);
    t_close(&e);
}

Test(md_rocksdb, sequence_counters_continue_after_restart)
{
    t_env e;
    t_result r;
    t_open(&e);
    cr_assert_eq(t_create(&e, "/q", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/q/item-", "a", MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/q/item-0000000000");
    cr_assert_eq(t_create(&e, "/q/item-", "b", MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/q/item-0000000001");
    /* The counter is per parent: another parent starts at 0, even one made on the way. */
    cr_assert_eq(t_create(&e, "/r/s/n-", "c", MD_SEQUENTIAL | MD_CREATE_PARENTS, &r), MG_OK);
    cr_assert_str_eq(r.path, "/r/s/n-0000000000");
    /* An ephemeral sequential node uses a number that is never handed out again. */
    cr_assert_eq(t_create(&e, "/q/e-", "d", MD_SEQUENTIAL | MD_EPHEMERAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/q/e-0000000002");
    t_close(&e);

    t_open(&e);
    cr_assert_eq(t_create(&e, "/q/item-", "e", MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/q/item-0000000003");
    cr_assert_eq(t_create(&e, "/r/s/n-", "f", MD_SEQUENTIAL, &r), MG_OK);
    cr_assert_str_eq(r.path, "/r/s/n-0000000001");
    cr_assert_eq(t_children(&e, "/q", &r), MG_OK);
    cr_assert_eq(r.count, 3);
    cr_assert_str_eq(r.names[0], "item-0000000000");
    cr_assert_str_eq(r.names[1], "item-0000000001");
    cr_assert_str_eq(r.names[2], "item-0000000003");
    t_close(&e);
}

/* The child: opens the store, makes a persistent and an ephemeral node, and dies without
 * closing. Exit status 0 only if every step worked. */
static int t_crashing_child(void)
{
    uv_loop_t loop;
    md_store *store;
    md_client *client;
    if (uv_loop_init(&loop) != 0 || md_store_open(t_url, NULL, &store) != MG_OK ||
        md_client_create(store, &loop, &client) != MG_OK)
        return 1;
    const char *paths[] = { "/live", "/live/worker", "/live/session" };
    const int flags[] = { 0, MD_EPHEMERAL, MD_EPHEMERAL };
    for (int i = 0; i < 3; i++) {
        t_result r = { 0 };
        if (md_create(client, paths[i], "x", 1, flags[i], create_done, &r) != MG_OK)
            return 2;
        if (!t_run_until(&loop, &r.done) || r.status != MG_OK)
            return 3;
    }
    return 0;
}

Test(md_rocksdb, ephemerals_of_a_crashed_process_are_removed_on_open)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(t_crashing_child()); /* no md_store_close: a crash as far as the store can tell */
    int wstatus = 0;
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    cr_assert(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0, "child failed: status %d", wstatus);

    t_env e;
    t_result r;
    t_open(&e);
    cr_assert_eq(t_get(&e, "/live/worker", &r), MG_ENOTFOUND);
    cr_assert_eq(t_get(&e, "/live/session", &r), MG_ENOTFOUND);
    cr_assert_eq(t_get(&e, "/live", &r), MG_OK);
    cr_assert_eq(r.stat.child_count, 0);
    cr_assert_eq(t_children(&e, "/live", &r), MG_OK);
    cr_assert_eq(r.count, 0);
    /* The names are free again. */
    cr_assert_eq(t_create(&e, "/live/worker", "y", MD_EPHEMERAL, &r), MG_OK);
    t_close(&e);
}

Test(md_rocksdb, a_locked_directory_gives_eagain)
{
    t_env e;
    t_open(&e);
    md_store *second = NULL;
    cr_assert_eq(md_store_open(t_url, NULL, &second), MG_EAGAIN);
    cr_assert_null(second);
    t_close(&e);
    /* Once closed, the directory opens again. */
    cr_assert_eq(md_store_open(t_url, NULL, &second), MG_OK);
    md_store_close(second);
}

Test(md_rocksdb, corrupt_records_fail_only_their_node)
{
    t_env e;
    t_result r;
    t_open(&e);
    cr_assert_eq(t_create(&e, "/c", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/c/short", "v", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/c/format", "v", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/c/good", "fine", 0, &r), MG_OK);
    t_close(&e);

    /* Keys as the layout in rocksdb.c defines them: "n" parent '\0' name. */
    t_put_raw("n/c\0short", 9, "garbage", 7);
    char bad_format[60];
    memset(bad_format, 0, sizeof(bad_format));
    bad_format[0] = 9; /* an unknown format version with a full-length header */
    t_put_raw("n/c\0format", 10, bad_format, sizeof(bad_format));

    t_open(&e);
    cr_assert_eq(t_get(&e, "/c/short", &r), MG_ECORRUPT);
    cr_assert_eq(t_get(&e, "/c/format", &r), MG_ECORRUPT);
    cr_assert_eq(t_set(&e, "/c/short", "new", MD_VERSION_ANY, &r), MG_ECORRUPT);
    cr_assert_eq(t_create(&e, "/c/short/kid", "k", 0, &r), MG_ECORRUPT);
    /* A corrupt record still occupies its name. */
    cr_assert_eq(t_create(&e, "/c/format", "v", 0, &r), MG_EEXIST);
    /* Everything else still works. */
    cr_assert_eq(t_get(&e, "/c/good", &r), MG_OK);
    cr_assert_str_eq(r.value, "fine");
    cr_assert_eq(t_set(&e, "/c/good", "better", 0, &r), MG_OK);
    cr_assert_eq(r.stat.version, 1);
    cr_assert_eq(t_children(&e, "/c", &r), MG_OK);
    cr_assert_eq(r.count, 3);
    cr_assert_str_eq(r.names[0], "format");
    cr_assert_str_eq(r.names[1], "good");
    cr_assert_str_eq(r.names[2], "short");
    cr_assert_eq(t_create(&e, "/c/new", "n", 0, &r), MG_OK);
    t_close(&e);
}

Test(md_rocksdb, children_exclude_grandchildren_and_prefix_siblings)
{
    t_env e;
    t_result r;
    t_open(&e);
    cr_assert_eq(t_create(&e, "/a", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/a/b", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/a/b/c", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/a/b/c/d", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/a/bb", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/ab", "", 0, &r), MG_OK);
    cr_assert_eq(t_create(&e, "/ab/z", "", 0, &r), MG_OK);

    cr_assert_eq(t_children(&e, "/a", &r), MG_OK);
    cr_assert_eq(r.count, 2);
    cr_assert_str_eq(r.names[0], "b");
    cr_assert_str_eq(r.names[1], "bb");
    cr_assert_eq(t_children(&e, "/", &r), MG_OK);
    cr_assert_eq(r.count, 2);
    cr_assert_str_eq(r.names[0], "a");
    cr_assert_str_eq(r.names[1], "ab");
    cr_assert_eq(t_children(&e, "/a/b/c/d", &r), MG_OK);
    cr_assert_eq(r.count, 0);
    cr_assert_eq(t_get(&e, "/", &r), MG_OK);
    cr_assert_eq(r.stat.child_count, 2);
    cr_assert_eq(t_get(&e, "/a/b", &r), MG_OK);
    cr_assert_eq(r.stat.child_count, 1);
    t_close(&e);
}

static void t_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(md_rocksdb, open_failures_are_classified)
{
    md_store *s = NULL;
    char url[400], path[350];

    /* The directory is a regular file: RocksDB cannot make its files there. */
    snprintf(path, sizeof(path), "%s/plain", t_dir);
    t_write_file(path, "x");
    snprintf(url, sizeof(url), "rocksdb:%s", path);
    cr_assert_eq(md_store_open(url, NULL, &s), MG_EIO);
    /* A level of the path is a regular file: mkdir -p fails. */
    snprintf(url, sizeof(url), "rocksdb:%s/plain/db", t_dir);
    cr_assert_eq(md_store_open(url, NULL, &s), MG_EIO);

    /* A layout this build does not know (a newer version's database). */
    t_env e;
    t_open(&e);
    t_close(&e);
    t_put_raw("mlayout", 7, "\x02", 1);
    cr_assert_eq(md_store_open(t_url, NULL, &s), MG_ECORRUPT);
    t_put_raw("mlayout", 7, "\x01", 1);
    cr_assert_eq(md_store_open(t_url, NULL, &s), MG_OK);
    md_store_close(s);

    /* RocksDB's own files damaged: its CURRENT file names no manifest. */
    snprintf(path, sizeof(path), "%s/CURRENT", t_db_path);
    t_write_file(path, "garbage");
    s = NULL;
    cr_assert_eq(md_store_open(t_url, NULL, &s), MG_ECORRUPT);
    cr_assert_null(s);
}
