/*
 * `magnetar bookie`: a storage node (../shared/ARCHITECTURE.md §2, §5-6).
 *
 * Opens the storage engine (journal in --journal-dir, entry logs and index in --ledger-dirs),
 * serves the bookie RPC on --port, registers itself in the metadata store as the ephemeral
 * node /bookies/<advertised-address>:<port> (brokers choose ensembles from these), and serves
 * /metrics and /admin/v2/bookies/health on --http-port. SIGINT or SIGTERM: unregister (close
 * the metadata session), stop the server, flush and close the storage, exit 0.
 */
#include "tools.h"
#include "node.h"

#include "common/fs.h"

#include "bookie/bookie.h"
#include "common/error.h"
#include "common/http.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"
#include "metadata/metadata.h"
#include "tools/limits.h"

#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct bookie_opts {
    int64_t port;
    char *bind_address;
    char *advertised_address;
    char *journal_dir;
    char *ledger_dirs;
    char *metadata_url;
    int64_t http_port;
    int64_t write_cache_mb;
    int64_t read_cache_mb;
    int64_t journal_segment_mb;
    int64_t journal_group_wait_us;
    int64_t readahead_kb;
    bool readahead;
    int log_level;
} bookie_opts;

static const mg_opt bookie_opt_table[] = {
    { .name = "port",
      .short_name = 'p',
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, port),
      .default_value = "3181",
      .metavar = "PORT",
      .help = "port of the bookie RPC (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "bind-address",
      .type = MG_OPT_STRING,
      .offset = offsetof(bookie_opts, bind_address),
      .default_value = "0.0.0.0",
      .metavar = "ADDR",
      .help = "address the RPC and HTTP servers listen on" },
    { .name = "advertised-address",
      .type = MG_OPT_STRING,
      .offset = offsetof(bookie_opts, advertised_address),
      .default_value = "127.0.0.1",
      .metavar = "ADDR",
      .help = "address brokers use to reach this bookie (its /bookies registration)" },
    { .name = "journal-dir",
      .type = MG_OPT_STRING,
      .offset = offsetof(bookie_opts, journal_dir),
      .default_value = "./data/bookie/journal",
      .metavar = "DIR",
      .help = "directory of the write-ahead journal (put it on its own disk if you can)" },
    { .name = "ledger-dirs",
      .type = MG_OPT_STRING,
      .offset = offsetof(bookie_opts, ledger_dirs),
      .default_value = "./data/bookie/ledgers",
      .metavar = "DIR",
      .help = "directory of the entry logs and the location index" },
    { .name = "metadata-url",
      .type = MG_OPT_STRING,
      .offset = offsetof(bookie_opts, metadata_url),
      .default_value = "zk:127.0.0.1:2181",
      .metavar = "URL",
      .help = "metadata store: zk:host:port[,host:port...][/chroot] or rocksdb:<dir>" },
    { .name = "http-port",
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, http_port),
      .default_value = "8000",
      .metavar = "PORT",
      .help = "port of /metrics and /admin/v2/bookies/health (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "write-cache-mb",
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, write_cache_mb),
      .default_value = "64",
      .metavar = "MB",
      .help = "write cache, both halves together, in MiB",
      .min = 2,
      .max = 1 << 20 },
    { .name = "read-cache-mb",
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, read_cache_mb),
      .default_value = "64",
      .metavar = "MB",
      .help = "read cache (read-ahead lands here), in MiB",
      .min = 1,
      .max = 1 << 20 },
    MG_NODE_OPT_JOURNAL_SEGMENT_MB(bookie_opts, journal_segment_mb),
    { .name = "journal-group-wait-us",
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, journal_group_wait_us),
      .default_value = "1000",
      .metavar = "US",
      .help = "longest wait for more records before a journal fdatasync",
      .min = 0,
      .max = 1000000 },
    { .name = "readahead",
      .type = MG_OPT_BOOL,
      .offset = offsetof(bookie_opts, readahead),
      .default_value = "true",
      .help = "asynchronous read-ahead for sequential readers (--no-readahead: off)" },
    { .name = "readahead-kb",
      .type = MG_OPT_INT,
      .offset = offsetof(bookie_opts, readahead_kb),
      .default_value = "4096",
      .metavar = "KB",
      .help = "size of one read-ahead window, in KiB",
      .min = 64,
      .max = 1 << 20 },
    MG_TOOL_OPT_LOG_LEVEL(bookie_opts, log_level),
};

static const mg_cmd_spec bookie_spec = {
    .name = "magnetar bookie",
    .usage = "[options]",
    .summary = "Runs a storage node: a journal with group commit, ledger-sorted entry logs, a "
               "RocksDB location index and O_DIRECT reads with asynchronous read-ahead, served "
               "over the bookie RPC. Registers itself in the metadata store under /bookies.",
    .opts = bookie_opt_table,
    .opt_count = sizeof(bookie_opt_table) / sizeof(bookie_opt_table[0]),
    .positional_min = 0,
    .positional_max = 0,
};

typedef struct bookie_proc {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    mg_metrics *metrics;
    mg_http_server *http;
    bk_storage *storage;
    bk_server *server;
    md_store *md;
    md_client *mdc;
    mg_node_registration registration;
    int pending_closes;
    bool stopping;
} bookie_proc;

static void handle_metrics(mg_http_request *req, void *arg)
{
    bookie_proc *b = arg;
    char *text = NULL;
    size_t len = 0;
    int rc = mg_metrics_render(b->metrics, &text, &len);
    if (rc != MG_OK) {
        mg_http_reply_json_error(req, 500, mg_strerror(rc));
        return;
    }
    mg_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void handle_health(mg_http_request *req, void *arg)
{
    bookie_proc *b = arg;
    if (bk_storage_read_only(b->storage))
        mg_http_reply_json_error(req, 503,
                                 bk_storage_state(b->storage) == MG_ENOSPC
                                     ? "storage is read-only: disk full (no space left on device)"
                                     : "storage is read-only after an I/O error");
    else
        mg_http_reply(req, 200, "text/plain", "ok", 2);
}

static void handle_readonly_get(mg_http_request *req, void *arg)
{
    bookie_proc *b = arg;
    mg_node_readonly_get(req, bk_storage_state(b->storage));
}

static void resumed(int status, void *arg)
{
    mg_node_readonly_reply(arg, status);
}

static void handle_readonly_put(mg_http_request *req, void *arg)
{
    bookie_proc *b = arg;
    if (!mg_node_readonly_put_valid(req))
        return;
    int rc = bk_storage_resume(b->storage, resumed, req);
    if (rc != MG_OK)
        mg_node_readonly_reply(req, rc);
}

static void one_closed(void *arg)
{
    bookie_proc *b = arg;
    b->pending_closes--;
}

static void storage_closed(int status, void *arg)
{
    bookie_proc *b = arg;
    b->storage = NULL;
    b->pending_closes--;
}

static void server_closed(void *arg)
{
    bookie_proc *b = arg;
    b->server = NULL;
    b->pending_closes--;
    /* The server is gone: no request can reach the storage any more. */
    b->pending_closes++;
    bk_storage_close(b->storage, storage_closed, b);
}

static void mdc_closed(void *arg)
{
    bookie_proc *b = arg;
    b->mdc = NULL;
    b->pending_closes--;
}

static void stop(bookie_proc *b)
{
    if (b->stopping)
        return;
    b->stopping = true;
    uv_close((uv_handle_t *)&b->sigint, NULL);
    uv_close((uv_handle_t *)&b->sigterm, NULL);
    if (b->mdc) {
        b->pending_closes++;
        md_client_close(b->mdc, mdc_closed, b);
    }
    if (b->http) {
        b->pending_closes++;
        mg_http_server_close(b->http, one_closed, b);
        b->http = NULL;
    }
    if (b->server) {
        b->pending_closes++;
        bk_server_close(b->server, server_closed, b);
    } else if (b->storage) {
        b->pending_closes++;
        bk_storage_close(b->storage, storage_closed, b);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    bookie_proc *b = h->data;
    MG_INFO("received %s: stopping", strsignal(signum));
    stop(b);
}

static int start(bookie_proc *b, const bookie_opts *o, char *ready, size_t ready_size)
{
    int rc = mg_mkdirs(o->journal_dir);
    if (rc == MG_OK)
        rc = mg_mkdirs(o->ledger_dirs);
    if (rc != MG_OK) {
        MG_ERROR("cannot create %s or %s: %s", o->journal_dir, o->ledger_dirs, mg_strerror(rc));
        return rc;
    }
    MG_TRY(mg_metrics_create(&b->metrics));
    mg_metrics_register_process(b->metrics);
    bk_storage_opts so = {
        .journal_dir = o->journal_dir,
        .ledger_dir = o->ledger_dirs,
        .write_cache_bytes = (size_t)o->write_cache_mb << 20,
        .read_cache_bytes = (size_t)o->read_cache_mb << 20,
        .journal_group_wait_us = (uint32_t)o->journal_group_wait_us,
        .journal_segment_bytes = (uint64_t)o->journal_segment_mb << 20,
        .readahead = o->readahead,
        .readahead_bytes = (size_t)o->readahead_kb << 10,
        .metrics = b->metrics,
    };
    rc = bk_storage_open(&b->loop, &so, &b->storage);
    if (rc != MG_OK) {
        mg_node_explain_storage_error(rc, o->journal_dir, o->journal_segment_mb);
        return rc; /* logged */
    }
    mg_fd_shares fds;
    mg_fd_budget(mg_fd_limit_raise(), false, true, &fds);
    bk_server_opts sv = { .host = o->bind_address,
                          .port = (uint16_t)o->port,
                          .metrics = b->metrics,
                          .connections_max = fds.bookie_max };
    rc = bk_server_start(&b->loop, b->storage, &sv, &b->server);
    if (rc != MG_OK) {
        MG_ERROR("cannot serve the bookie RPC on %s:%lld: %s", o->bind_address, (long long)o->port,
                 mg_strerror(rc));
        return rc;
    }
    mg_http_options ho = { .host = o->bind_address,
                           .port = (uint16_t)o->http_port,
                           .connections_max = fds.http_max,
                           .metrics = b->metrics };
    MG_TRY(mg_http_server_create(&b->loop, &ho, &b->http));
    MG_TRY(mg_http_server_route(b->http, "GET", "/metrics", handle_metrics, b));
    MG_TRY(mg_http_server_route(b->http, "GET", "/admin/v2/bookies/health", handle_health, b));
    MG_TRY(mg_http_server_route(b->http, "GET", "/api/v1/bookie/state/readonly",
                                handle_readonly_get, b));
    MG_TRY(mg_http_server_route(b->http, "PUT", "/api/v1/bookie/state/readonly",
                                handle_readonly_put, b));
    MG_TRY(mg_http_server_start(b->http));

    rc = md_store_open(o->metadata_url, NULL, &b->md);
    if (rc != MG_OK) {
        MG_ERROR("cannot open the metadata store %s: %s", o->metadata_url, mg_strerror(rc));
        return rc;
    }
    MG_TRY(md_client_create(b->md, &b->loop, &b->mdc));
    unsigned port = bk_server_port(b->server);
    char path[300], value[512];
    snprintf(path, sizeof(path), "/bookies/%s:%u", o->advertised_address, port);
    int n = snprintf(value, sizeof(value),
                     "{\"version\":\"%s\",\"journalDir\":\"%s\",\"ledgerDirs\":\"%s\","
                     "\"httpPort\":%u,\"startTimestamp\":%lld}",
                     MG_VERSION, o->journal_dir, o->ledger_dirs, mg_http_server_port(b->http),
                     (long long)time(NULL) * 1000);
    mg_node_registration *reg = &b->registration;
    MG_TRY(
        mg_node_register(&b->loop, b->mdc, reg, path, value, (size_t)n, BOOKIE_START_TIMEOUT_MS));
    if (!reg->answered) {
        MG_ERROR("the metadata store %s did not answer within %d ms", o->metadata_url,
                 BOOKIE_START_TIMEOUT_MS);
        return MG_ETIMEDOUT;
    }
    if (reg->status != MG_OK) {
        MG_ERROR("cannot register %s: %s%s", path, mg_strerror(reg->status),
                 reg->status == MG_EEXIST ? " (another bookie runs with this address)" : "");
        return reg->status;
    }
    snprintf(ready, ready_size, "rpc %s:%u, http %s:%u, registered as %s", o->bind_address, port,
             o->bind_address, (unsigned)mg_http_server_port(b->http), path);
    return MG_OK;
}

int mg_tool_bookie(int argc, char **argv)
{
    bookie_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&bookie_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    signal(SIGPIPE, SIG_IGN);

    bookie_proc b;
    memset(&b, 0, sizeof(b));
    uv_loop_init(&b.loop);
    uv_signal_init(&b.loop, &b.sigint);
    uv_signal_init(&b.loop, &b.sigterm);
    b.sigint.data = b.sigterm.data = &b;
    char ready[1024];
    int rc = start(&b, &o, ready, sizeof(ready));
    int status = MG_EXIT_OK;
    if (rc == MG_OK) {
        uv_signal_start(&b.sigint, on_signal, SIGINT);
        uv_signal_start(&b.sigterm, on_signal, SIGTERM);
        MG_INFO("magnetar bookie %s ready: %s", MG_VERSION, ready);
        uv_run(&b.loop, UV_RUN_DEFAULT);
    } else {
        status = MG_EXIT_FAILURE;
        stop(&b);
    }
    while (b.pending_closes > 0)
        uv_run(&b.loop, UV_RUN_ONCE);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    md_store_close(b.md);
    mg_metrics_destroy(b.metrics);
    if (status == MG_EXIT_OK)
        MG_INFO("magnetar bookie stopped");
    mg_config_free(&bookie_spec, &o);
    return status;
}
