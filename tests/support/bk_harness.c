/*
 * Real bookies for tests (see bk_harness.h for the lifecycle and its invariants).
 *
 * Waiting: a repeating guard timer (BKH_GUARD_MS) runs only while the harness waits, so every
 * uv_run(UV_RUN_ONCE) returns within a few milliseconds and the deadline is checked; between
 * waits it is stopped and does not keep the caller's loop alive. Completion callbacks set flags
 * in the bookie's slot, which lives as long as the harness, so a late callback (after a timed
 * out wait) never writes to freed memory.
 */
#include "support/bk_harness.h"

#include "support/rm_tree.h"

#include "bookie/bookie.h"
#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BKH_GUARD_MS      5
#define BKH_DIR_BYTES_MAX 256
#define BKH_ADDR_BYTES    64

typedef struct bkh_bookie {
    bkh *h;
    int index;
    char journal_dir[BKH_DIR_BYTES_MAX + 32];
    char ledger_dir[BKH_DIR_BYTES_MAX + 32];
    char addr[BKH_ADDR_BYTES];
    char node[BKH_ADDR_BYTES + 16]; /* "/bookies/<addr>" */
    bk_storage *storage;
    bk_server *server;
    bk_io *io;           /* the storage's file I/O, kept across restarts for fault injection */
    bool running;        /* server up and registered */
    bool server_closed;  /* bk_server_close's callback ran */
    bool storage_closed; /* bk_storage_close's callback ran */
    bool md_done;        /* the last create or delete of the node completed */
    int md_status;
} bkh_bookie;

struct bkh {
    uv_loop_t *loop;
    char dir[BKH_DIR_BYTES_MAX];
    md_store *store;
    md_client *md;
    bk_client *bk;
    uv_timer_t guard;
    bool guard_init;
    bool guard_closed;
    bool md_closed;
    bool bk_closed;
    int bookie_count;
    bkh_bookie bookies[BKH_BOOKIES_MAX];
};

static void bkh_guard_tick(uv_timer_t *t)
{
    (void)t;
}

static void bkh_guard_closed(uv_handle_t *handle)
{
    bkh *h = handle->data;
    h->guard_closed = true;
}

/* Runs the loop until *flag is set or BKH_WAIT_MS passed. */
static int bkh_wait(bkh *h, const bool *flag)
{
    if (*flag)
        return MG_OK;
    uv_timer_start(&h->guard, bkh_guard_tick, BKH_GUARD_MS, BKH_GUARD_MS);
    uint64_t t0 = uv_hrtime();
    while (!*flag && uv_hrtime() - t0 < (uint64_t)BKH_WAIT_MS * 1000000u)
        uv_run(h->loop, UV_RUN_ONCE);
    uv_timer_stop(&h->guard);
    return *flag ? MG_OK : MG_ETIMEDOUT;
}

/* --- one bookie ----------------------------------------------------------------------------- */

static void bkh_server_closed(void *arg)
{
    bkh_bookie *b = arg;
    b->server_closed = true;
}

static void bkh_storage_closed(int status, void *arg)
{
    (void)status;
    bkh_bookie *b = arg;
    b->storage_closed = true;
}

static void bkh_node_created(int status, const char *path, void *arg)
{
    (void)path;
    bkh_bookie *b = arg;
    b->md_status = status;
    b->md_done = true;
}

static void bkh_node_deleted(int status, void *arg)
{
    bkh_bookie *b = arg;
    b->md_status = status;
    b->md_done = true;
}

static int bkh_storage_open(bkh_bookie *b)
{
    if (b->io == NULL && bk_io_create(&b->io) != MG_OK)
        return MG_ENOMEM;
    bk_storage_opts so = { .journal_dir = b->journal_dir,
                           .ledger_dir = b->ledger_dir,
                           .io = b->io,
                           .write_cache_bytes = BKH_CACHE_BYTES,
                           .read_cache_bytes = BKH_CACHE_BYTES,
                           .journal_group_wait_us = 200 };
    int rc = bk_storage_open(b->h->loop, &so, &b->storage);
    if (rc != MG_OK) {
        MG_ERROR("bk_harness: cannot open the storage of bookie %d: %s", b->index, mg_strerror(rc));
        b->storage = NULL;
        return rc;
    }
    b->storage_closed = false;
    return MG_OK;
}

static int bkh_storage_close(bkh_bookie *b)
{
    if (b->storage == NULL)
        return MG_OK;
    b->storage_closed = false;
    bk_storage_close(b->storage, bkh_storage_closed, b);
    int rc = bkh_wait(b->h, &b->storage_closed);
    if (rc != MG_OK)
        MG_ERROR("bk_harness: the storage of bookie %d did not close", b->index);
    b->storage = NULL;
    return rc;
}

/* Starts the server on a fresh port and registers it; the storage is open. */
static int bkh_serve(bkh_bookie *b)
{
    bkh *h = b->h;
    bk_server_opts so = { .host = "127.0.0.1", .port = 0 };
    int rc = bk_server_start(h->loop, b->storage, &so, &b->server);
    if (rc != MG_OK) {
        MG_ERROR("bk_harness: cannot start the server of bookie %d: %s", b->index, mg_strerror(rc));
        b->server = NULL;
        uv_run(h->loop, UV_RUN_NOWAIT); /* releases the failed handle */
        return rc;
    }
    b->server_closed = false;
    snprintf(b->addr, sizeof(b->addr), "127.0.0.1:%u", (unsigned)bk_server_port(b->server));
    snprintf(b->node, sizeof(b->node), "/bookies/%s", b->addr);
    static const char value[] = "{\"harness\":true}";
    b->md_done = false;
    rc = md_create(h->md, b->node, value, sizeof(value) - 1, MD_EPHEMERAL | MD_CREATE_PARENTS,
                   bkh_node_created, b);
    if (rc == MG_OK)
        rc = bkh_wait(h, &b->md_done);
    if (rc == MG_OK)
        rc = b->md_status;
    if (rc != MG_OK) {
        MG_ERROR("bk_harness: cannot register bookie %d as %s: %s", b->index, b->node,
                 mg_strerror(rc));
        bk_server_close(b->server, bkh_server_closed, b);
        b->server = NULL;
        bkh_wait(h, &b->server_closed);
        return rc;
    }
    b->running = true;
    return MG_OK;
}

static int bkh_bookie_start(bkh *h, int i)
{
    bkh_bookie *b = &h->bookies[i];
    memset(b, 0, sizeof(*b));
    b->h = h;
    b->index = i;
    b->server_closed = true;
    b->storage_closed = true;
    b->md_done = true;
    snprintf(b->journal_dir, sizeof(b->journal_dir), "%s/bookie-%d/journal", h->dir, i);
    snprintf(b->ledger_dir, sizeof(b->ledger_dir), "%s/bookie-%d/ledgers", h->dir, i);
    MG_TRY(bkh_storage_open(b));
    return bkh_serve(b);
}

/* --- harness -------------------------------------------------------------------------------- */

static void bkh_md_closed(void *arg)
{
    bkh *h = arg;
    h->md_closed = true;
}

static void bkh_bk_closed(void *arg)
{
    bkh *h = arg;
    h->bk_closed = true;
}

int bkh_start(uv_loop_t *loop, int bookie_count, bkh **out)
{
    if (loop == NULL || out == NULL || bookie_count < 1 || bookie_count > BKH_BOOKIES_MAX)
        return MG_EINVAL;
    /* A killed bookie leaves its peers writing into closed sockets: EPIPE, not a signal (the
     * magnetar executables do the same at start-up). */
    signal(SIGPIPE, SIG_IGN);
    bkh *h = mg_calloc(1, sizeof(*h));
    if (h == NULL)
        return MG_ENOMEM;
    h->loop = loop;
    h->md_closed = true;
    h->bk_closed = true;
    h->guard_closed = true;
    snprintf(h->dir, sizeof(h->dir), "/var/tmp/mg-bkh-XXXXXX");
    if (mkdtemp(h->dir) == NULL) {
        MG_ERROR("bk_harness: mkdtemp %s failed", h->dir);
        mg_free(h);
        return MG_ESYS;
    }
    int rc = uv_timer_init(loop, &h->guard);
    if (rc != 0) {
        mgt_rm_tree(h->dir);
        mg_free(h);
        return mg_err_from_uv(rc);
    }
    h->guard.data = h;
    h->guard_init = true;
    h->guard_closed = false;

    char url[BKH_DIR_BYTES_MAX + 32];
    snprintf(url, sizeof(url), "rocksdb:%s/metadata", h->dir);
    rc = md_store_open(url, NULL, &h->store);
    if (rc == MG_OK) {
        rc = md_client_create(h->store, loop, &h->md);
        if (rc == MG_OK)
            h->md_closed = false;
    }
    if (rc == MG_OK) {
        rc = bk_client_create(loop, NULL, &h->bk);
        if (rc == MG_OK)
            h->bk_closed = false;
    }
    for (int i = 0; rc == MG_OK && i < bookie_count; i++) {
        rc = bkh_bookie_start(h, i);
        h->bookie_count = i + 1; /* this one too: destroy closes what it opened */
    }
    if (rc != MG_OK) {
        MG_ERROR("bk_harness: start failed: %s", mg_strerror(rc));
        bkh_destroy(h);
        return rc;
    }
    *out = h;
    return MG_OK;
}

md_store *bkh_md_store(bkh *h)
{
    return h->store;
}

md_client *bkh_md_client(bkh *h)
{
    return h->md;
}

bk_client *bkh_bk_client(bkh *h)
{
    return h->bk;
}

int bkh_bookie_count(const bkh *h)
{
    return h->bookie_count;
}

const char *bkh_bookie_addr(const bkh *h, int i)
{
    if (i < 0 || i >= h->bookie_count)
        return NULL;
    return h->bookies[i].addr;
}

bk_storage *bkh_bookie_storage(bkh *h, int i)
{
    return i >= 0 && i < h->bookie_count ? h->bookies[i].storage : NULL;
}

bk_io *bkh_bookie_io(bkh *h, int i)
{
    return i >= 0 && i < h->bookie_count ? h->bookies[i].io : NULL;
}

bool bkh_bookie_running(const bkh *h, int i)
{
    return i >= 0 && i < h->bookie_count && h->bookies[i].running;
}

int bkh_kill_bookie(bkh *h, int i)
{
    if (h == NULL || i < 0 || i >= h->bookie_count)
        return MG_EINVAL;
    bkh_bookie *b = &h->bookies[i];
    if (!b->running)
        return MG_ESTATE;
    b->running = false;
    bk_server_close(b->server, bkh_server_closed, b);
    b->server = NULL;
    b->md_done = false;
    int rc = md_delete(h->md, b->node, MD_VERSION_ANY, bkh_node_deleted, b);
    if (rc != MG_OK) {
        MG_WARN("bk_harness: cannot delete %s: %s", b->node, mg_strerror(rc));
        b->md_done = true;
    }
    return MG_OK;
}

int bkh_restart_bookie(bkh *h, int i)
{
    if (h == NULL || i < 0 || i >= h->bookie_count)
        return MG_EINVAL;
    bkh_bookie *b = &h->bookies[i];
    if (b->running)
        MG_TRY(bkh_kill_bookie(h, i));
    MG_TRY(bkh_wait(h, &b->server_closed));
    MG_TRY(bkh_wait(h, &b->md_done));
    MG_TRY(bkh_storage_close(b));
    MG_TRY(bkh_storage_open(b));
    return bkh_serve(b);
}

void bkh_destroy(bkh *h)
{
    if (h == NULL)
        return;
    for (int i = 0; i < h->bookie_count; i++) {
        if (h->bookies[i].running)
            bkh_kill_bookie(h, i);
    }
    if (!h->bk_closed && h->bk != NULL) {
        bk_client_close(h->bk, bkh_bk_closed, h);
        bkh_wait(h, &h->bk_closed);
    }
    for (int i = 0; i < h->bookie_count; i++)
        bkh_wait(h, &h->bookies[i].md_done);
    if (!h->md_closed && h->md != NULL) {
        md_client_close(h->md, bkh_md_closed, h);
        bkh_wait(h, &h->md_closed);
    }
    bool leaked = !h->bk_closed || !h->md_closed;
    for (int i = 0; i < h->bookie_count; i++) {
        bkh_bookie *b = &h->bookies[i];
        if (bkh_wait(h, &b->server_closed) != MG_OK)
            leaked = true;
        if (bkh_storage_close(b) != MG_OK)
            leaked = true;
    }
    if (h->guard_init) {
        uv_close((uv_handle_t *)&h->guard, bkh_guard_closed);
        for (int n = 0; n < 1000 && !h->guard_closed; n++)
            uv_run(h->loop, UV_RUN_NOWAIT);
    }
    if (h->store != NULL && h->md_closed)
        md_store_close(h->store);
    mgt_rm_tree(h->dir);
    if (leaked || !h->guard_closed) {
        /* Something still refers to the harness: keep the memory rather than risk a use after
         * free in a late callback; the test has failed anyway. */
        MG_ERROR("bk_harness: destroy timed out, leaving the harness allocated");
        return;
    }
    for (int i = 0; i < h->bookie_count; i++)
        bk_io_destroy(h->bookies[i].io);
    mg_free(h);
}
