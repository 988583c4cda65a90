/*
 * `magnetar standalone`: every role in one process (../shared/ARCHITECTURE.md §2).
 *
 * What runs today: the embedded metadata store (or ZooKeeper, with --metadata-url), in which
 * the process registers itself as a live broker (ephemeral /brokers/<address>:<port>), and the
 * HTTP server on --http-port with GET /metrics (Prometheus text) and
 * GET /admin/v2/brokers/health ("ok", as Pulsar's health check answers). The bookie, broker,
 * chat gateway and Job worker join this process as their modules land.
 *
 * Life cycle: parse options -> lock the data directory (one process per data directory) ->
 * open the metadata store -> start the HTTP server -> register in /brokers -> log one "ready"
 * line naming every port -> run the loop until SIGINT or SIGTERM -> close the HTTP server and
 * the metadata client, close the store (its ephemerals go), free everything, exit 0. A second
 * signal while stopping exits at once with status 1.
 */
#include "tools.h"

#include "common/error.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "metadata/metadata.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* How long start-up waits for the metadata store before giving up. */
#define STANDALONE_START_TIMEOUT_MS 30000

typedef struct standalone_opts {
    char *data_dir;
    char *metadata_url;
    char *bind_address;
    int64_t http_port;
    int log_level;
} standalone_opts;

static const mg_opt standalone_opt_table[] = {
    { .name = "data-dir",
      .short_name = 'd',
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, data_dir),
      .default_value = "./data",
      .metavar = "DIR",
      .help = "directory for all stored data (created if missing; one process per directory)" },
    { .name = "metadata-url",
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, metadata_url),
      .default_value = NULL,
      .metavar = "URL",
      .help = "metadata store: rocksdb:<dir> or zk:host:port[,host:port...][/chroot] "
              "(default: rocksdb:<data-dir>/metadata)" },
    { .name = "bind-address",
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, bind_address),
      .default_value = "0.0.0.0",
      .metavar = "ADDR",
      .help = "IPv4 address the servers listen on" },
    { .name = "http-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, http_port),
      .default_value = "8080",
      .metavar = "PORT",
      .help = "port of the admin REST API and /metrics (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    MG_TOOL_OPT_LOG_LEVEL(standalone_opts, log_level),
};

static const mg_cmd_spec standalone_spec = {
    .name = "magnetar standalone",
    .usage = "[options]",
    .summary = "Runs Magnetar in one process: metadata store, bookie, broker and HTTP admin, "
               "with all data under --data-dir. Stops cleanly on SIGINT or SIGTERM.",
    .opts = standalone_opt_table,
    .opt_count = sizeof(standalone_opt_table) / sizeof(standalone_opt_table[0]),
    .positional_min = 0,
    .positional_max = 0,
};

typedef struct standalone {
    uv_loop_t loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    mg_metrics *metrics;
    mg_http_server *http;
    md_store *md;
    md_client *mdc;
    char broker_path[300];
    bool registered;
    int register_status;
    int lock_fd;
    int stopping;
} standalone;

static void handle_health(mg_http_request *req, void *arg)
{
    mg_http_reply(req, 200, "text/plain", "ok", 2);
}

static void handle_metrics(mg_http_request *req, void *arg)
{
    standalone *s = arg;
    char *text = NULL;
    size_t len = 0;
    int rc = mg_metrics_render(s->metrics, &text, &len);
    if (rc != MG_OK) {
        mg_http_reply_json_error(req, 500, mg_strerror(rc));
        return;
    }
    mg_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void md_client_closed(void *arg)
{
    standalone *s = arg;
    s->mdc = NULL;
}

static void http_closed(void *arg)
{
    standalone *s = arg;
    s->http = NULL;
    if (s->mdc)
        md_client_close(s->mdc, md_client_closed, s);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    standalone *s = handle->data;
    if (s->stopping) {
        MG_WARN("second %s while stopping: exiting now", strsignal(signum));
        _exit(MG_EXIT_FAILURE);
    }
    s->stopping = 1;
    MG_INFO("received %s: stopping", strsignal(signum));
    if (s->http)
        mg_http_server_close(s->http, http_closed, s);
    else
        http_closed(s);
}

static int register_metrics(standalone *s)
{
    MG_TRY(mg_metrics_create(&s->metrics));
    mg_metrics_register_process(s->metrics);
    static const char *const names[] = { "version" };
    static const char *const values[] = { MG_VERSION };
    mg_metric_family *info = mg_metrics_gauge_family(
        s->metrics, "magnetar_build_info", "Build information; the value is always 1", 1, names);
    mg_gauge *g = info ? mg_metrics_gauge(info, values) : NULL;
    if (g == NULL)
        return MG_ENOMEM;
    mg_gauge_set(g, 1);
    return MG_OK;
}

static int start_http(standalone *s, const standalone_opts *o)
{
    mg_http_options ho = { .host = o->bind_address, .port = (uint16_t)o->http_port };
    int rc = mg_http_server_create(&s->loop, &ho, &s->http);
    if (rc != MG_OK)
        return rc;
    MG_TRY(mg_http_server_route(s->http, "GET", "/metrics", handle_metrics, s));
    MG_TRY(mg_http_server_route(s->http, "GET", "/admin/v2/brokers/health", handle_health, s));
    return mg_http_server_start(s->http); /* logs the address on failure */
}

static int open_metadata(standalone *s, const standalone_opts *o)
{
    char url[4200];
    if (o->metadata_url != NULL && o->metadata_url[0] != '\0')
        snprintf(url, sizeof(url), "%s", o->metadata_url);
    else
        snprintf(url, sizeof(url), "rocksdb:%s/metadata", o->data_dir);
    int rc = md_store_open(url, NULL, &s->md);
    if (rc != MG_OK) {
        MG_ERROR("cannot open the metadata store %s: %s", url, mg_strerror(rc));
        return rc;
    }
    MG_INFO("metadata store %s open (%s)", url, md_store_backend(s->md));
    return md_client_create(s->md, &s->loop, &s->mdc);
}

static void broker_registered(int status, const char *path, void *arg)
{
    standalone *s = arg;
    s->register_status = status;
    s->registered = true;
}

/* Registers this process as a live broker: ephemeral /brokers/<address>:<http port>, holding
 * JSON in the spirit of Pulsar's broker registration. Waits for the answer (start-up only). */
static int register_broker(standalone *s, const standalone_opts *o)
{
    unsigned port = mg_http_server_port(s->http);
    snprintf(s->broker_path, sizeof(s->broker_path), "/brokers/%s:%u", o->bind_address, port);
    char value[512];
    int n = snprintf(value, sizeof(value),
                     "{\"webServiceUrl\":\"http://%s:%u\",\"version\":\"%s\","
                     "\"startTimestamp\":%lld}",
                     o->bind_address, port, MG_VERSION, (long long)time(NULL) * 1000);
    MG_TRY(md_create(s->mdc, s->broker_path, value, (size_t)n, MD_EPHEMERAL | MD_CREATE_PARENTS,
                     broker_registered, s));
    /* Bounded: a ZooKeeper ensemble that is down must not hang start-up silently. */
    uint64_t deadline_ms = uv_now(&s->loop) + STANDALONE_START_TIMEOUT_MS;
    while (!s->registered && uv_now(&s->loop) < deadline_ms)
        uv_run(&s->loop, UV_RUN_NOWAIT) == 0 ? uv_sleep(1) : (void)0;
    if (!s->registered) {
        MG_ERROR("the metadata store did not answer within %d ms", STANDALONE_START_TIMEOUT_MS);
        return MG_ETIMEDOUT;
    }
    if (s->register_status != MG_OK) {
        MG_ERROR("cannot register %s in the metadata store: %s", s->broker_path,
                 mg_strerror(s->register_status));
    }
    return s->register_status;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int mg_tool_standalone(int argc, char **argv)
{
    standalone_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&standalone_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    mg_log_set_level((mg_log_level)o.log_level);

    standalone s;
    memset(&s, 0, sizeof(s));
    s.lock_fd = -1;
    int status = MG_EXIT_FAILURE;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&s.loop);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;

    if (mg_tool_lock_dir(o.data_dir, &s.lock_fd) != MG_OK)
        goto out;
    if (register_metrics(&s) != MG_OK) {
        MG_ERROR("cannot set up metrics: out of memory");
        goto out;
    }
    if (open_metadata(&s, &o) != MG_OK)
        goto out;
    if (start_http(&s, &o) != MG_OK)
        goto out;
    if (register_broker(&s, &o) != MG_OK)
        goto out;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);

    MG_INFO("magnetar standalone %s ready: admin and metrics on http://%s:%u, data in %s",
            MG_VERSION, o.bind_address, (unsigned)mg_http_server_port(s.http), o.data_dir);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    MG_INFO("magnetar standalone stopped");
    status = MG_EXIT_OK;

out:
    if (s.http) {
        mg_http_server_close(s.http, NULL, NULL);
        s.http = NULL;
    }
    if (s.mdc) {
        md_client_close(s.mdc, md_client_closed, &s);
        while (s.mdc)
            uv_run(&s.loop, UV_RUN_ONCE);
    }
    uv_walk(&s.loop, close_walk_cb, NULL);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    uv_loop_close(&s.loop);
    md_store_close(s.md);
    mg_metrics_destroy(s.metrics);
    if (s.lock_fd >= 0)
        close(s.lock_fd);
    mg_config_free(&standalone_spec, &o);
    return status;
}
