/*
 * The roles of a Magnetar process on one loop; see node.h. Stopping is a chain: each step's
 * callback starts the next (HTTP -> broker -> ledger environment -> bookie client -> bookie
 * server -> bookie storage -> metadata client -> signal handles), so nothing is closed while
 * something above it may still use it.
 */
#include "node.h"

#include "chat.h"

#include "chat_gateway/api.h"

#include "common/error.h"
#include "common/fs.h"
#include "common/listen.h"
#include "common/log.h"
#include "tools.h"
#include "tools/limits.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Why the bookie's storage refuses writes, for the health check and the state route. */
static const char *storage_state_reason(int state)
{
    if (state == MG_ENOSPC)
        return "the bookie's storage is read-only: disk full (no space left on device); free "
               "space, then PUT /api/v1/bookie/state/readonly {\"readOnly\":false}";
    return "the bookie's storage is read-only after an I/O error (see the log)";
}

/* Pulsar's broker health check fails (non-200, with the reason) when the broker cannot write;
 * here that is the embedded bookie's storage being read-only. The storage's state is an atomic
 * readable from this loop. */
static void handle_health(mg_http_request *req, void *arg)
{
    mg_node *s = arg;
    int state = s->storage != NULL ? bk_storage_state(s->storage) : 0;
    if (state != 0) {
        mg_http_reply_json_error(req, 503, storage_state_reason(state));
        return;
    }
    mg_http_reply(req, 200, "text/plain", "ok", 2);
}

/* ---- the bookie's read-only state: BookKeeper's /api/v1/bookie/state/readonly ----------------
 * GET answers {"readOnly":bool}; PUT {"readOnly":false} asks the storage to become writable
 * again (bk_storage_resume, on the bookie's loop), answered once it is (200) or with why not
 * (507 while the disk is still full, 503 otherwise). One PUT at a time (409 for another). */

void mg_node_readonly_reply(mg_http_request *req, int status)
{
    if (status == MG_OK) {
        mg_http_reply(req, 200, "application/json", "{\"readOnly\":false}", 18);
        return;
    }
    char why[256];
    snprintf(why, sizeof(why), "the bookie's storage stays read-only: %s%s", mg_strerror(status),
             status == MG_EREADONLY ? " (a journal sync failed: restart the bookie)" : "");
    mg_http_reply_json_error(req, status == MG_ENOSPC ? 507 : 503, why);
}

static void resume_replied(uv_async_t *h)
{
    mg_node *s = h->data;
    mg_http_request *req = s->resume_req;
    s->resume_req = NULL;
    if (req != NULL)
        mg_node_readonly_reply(req, __atomic_load_n(&s->resume_status, __ATOMIC_ACQUIRE));
}

static void resume_done(int status, void *arg)
{
    mg_node *s = arg;
    __atomic_store_n(&s->resume_status, status, __ATOMIC_RELEASE);
    uv_async_send(&s->resume_reply);
}

static void resume_requested(uv_async_t *h)
{
    mg_node *s = h->data;
    int rc = s->storage != NULL ? bk_storage_resume(s->storage, resume_done, s) : MG_ECLOSED;
    if (rc != MG_OK)
        resume_done(rc, s);
}

void mg_node_readonly_get(mg_http_request *req, int state)
{
    char body[512];
    int n =
        snprintf(body, sizeof(body), "{\"readOnly\":%s%s%s%s}", state ? "true" : "false",
                 state ? ",\"reason\":\"" : "", state ? mg_strerror(state) : "", state ? "\"" : "");
    mg_http_reply(req, 200, "application/json", body, (size_t)n);
}

static void handle_readonly_get(mg_http_request *req, void *arg)
{
    mg_node *s = arg;
    mg_node_readonly_get(req, bk_storage_state(s->storage));
}

bool mg_node_readonly_put_valid(mg_http_request *req)
{
    size_t len = 0;
    const char *body = mg_http_request_body(req, &len);
    char compact[64];
    size_t n = 0;
    for (size_t i = 0; body != NULL && i < len && n + 1 < sizeof(compact); i++)
        if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t')
            compact[n++] = body[i];
    compact[n] = '\0';
    if (strcmp(compact, "{\"readOnly\":true}") == 0) {
        mg_http_reply_json_error(req, 400, "making a writable bookie read-only is not supported");
        return false;
    }
    if (strcmp(compact, "{\"readOnly\":false}") != 0) {
        mg_http_reply_json_error(req, 400, "the body must be {\"readOnly\":false}");
        return false;
    }
    return true;
}

static void handle_readonly_put(mg_http_request *req, void *arg)
{
    mg_node *s = arg;
    if (!mg_node_readonly_put_valid(req))
        return;
    if (s->resume_req != NULL) {
        mg_http_reply_json_error(req, 409, "a request to make the bookie writable is running");
        return;
    }
    s->resume_req = req;
    uv_async_send(&s->bookie_resume);
}

static void handle_metrics(mg_http_request *req, void *arg)
{
    mg_node *s = arg;
    char *text = NULL;
    size_t len = 0;
    int rc = mg_metrics_render(s->metrics, &text, &len);
    if (rc == MG_OK && s->broker != NULL)
        rc = br_broker_metrics_render(s->broker, &text, &len);
    if (rc != MG_OK) {
        free(text);
        mg_http_reply_json_error(req, 500, mg_strerror(rc));
        return;
    }
    mg_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* ---- stopping: each step's callback starts the next ----------------------------------------- */

static void md_client_closed(void *arg)
{
    mg_node *s = arg;
    s->mdc = NULL;
    if (s->resume_reply_ready) {
        s->resume_reply_ready = false;
        if (s->resume_req != NULL) {
            mg_http_reply_json_error(s->resume_req, 503, "the node is stopping");
            s->resume_req = NULL;
        }
        uv_close((uv_handle_t *)&s->resume_reply, NULL);
    }
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
}

/* ---- the bookie's thread ----------------------------------------------------------------------
 * Runs bookie_loop until the stop async closes the server, then the storage (its write cache
 * flushed), then the async handle itself, which ends the loop. */

static void bookie_storage_closed(int status, void *arg)
{
    mg_node *s = arg;
    if (status != MG_OK)
        MG_WARN("closing the bookie storage: %s", mg_strerror(status));
    s->storage = NULL;
    uv_close((uv_handle_t *)&s->bookie_resume, NULL);
    uv_close((uv_handle_t *)&s->bookie_stop, NULL);
}

static void bookie_server_closed(void *arg)
{
    mg_node *s = arg;
    s->bookie = NULL;
    if (s->storage)
        bk_storage_close(s->storage, bookie_storage_closed, s);
    else
        bookie_storage_closed(MG_OK, s);
}

static void bookie_stop_requested(uv_async_t *h)
{
    mg_node *s = h->data;
    if (s->bk_local != NULL) {
        bk_local_close(s->bk_local); /* the broker's side is gone: nothing in flight */
        s->bk_local = NULL;
    }
    if (s->bookie)
        bk_server_close(s->bookie, bookie_server_closed, s);
    else
        bookie_server_closed(s);
}

/* Stops the bookie (on its thread, or here when the thread never started) and frees its loop.
 * Blocks the calling loop for as long as the storage takes to close: only while stopping. */
static void bookie_shutdown(mg_node *s)
{
    if (!s->bookie_loop_ready)
        return;
    if (s->bookie_thread_running) {
        uv_async_send(&s->bookie_stop);
        uv_thread_join(&s->bookie_thread);
        s->bookie_thread_running = false;
    }
    mg_tool_loop_close(&s->bookie_loop);
    s->bookie_loop_ready = false;
}

static void bk_client_closed(void *arg)
{
    mg_node *s = arg;
    s->bkc = NULL;
    if (s->bk_local != NULL)
        bk_local_detach(s->bk_local);
    bookie_shutdown(s);
    if (s->mdc)
        md_client_close(s->mdc, md_client_closed, s);
    else
        md_client_closed(s);
}

static void broker_closed(void *arg)
{
    mg_node *s = arg;
    s->broker = NULL;
    if (s->env) {
        ml_env_destroy(s->env);
        s->env = NULL;
    }
    if (s->bkc)
        bk_client_close(s->bkc, bk_client_closed, s);
    else
        bk_client_closed(s);
}

/* The chat API's producers go before the broker they produce to. */
static void chat_api_closed(void *arg)
{
    mg_node *s = arg;
    s->chat_api = NULL;
    if (s->broker)
        br_broker_close(s->broker, broker_closed, s);
    else
        broker_closed(s);
}

static void http_closed(void *arg)
{
    mg_node *s = arg;
    s->http = NULL;
    if (s->chat_api)
        cg_api_close(s->chat_api, chat_api_closed, s);
    else
        chat_api_closed(s);
}

static void stop(mg_node *s);

/* The chat roles' threads close their roles (which may wait for this loop's broker to answer
 * them), then end; polled from here so this loop keeps serving meanwhile. */
static void chat_wait_tick(uv_timer_t *t)
{
    mg_node *s = t->data;
    if (!mg_chat_done(s->chat))
        return;
    uv_timer_stop(t);
    mg_chat_stop(s->chat); /* joins threads that have ended */
    s->chat = NULL;
    stop(s);
}

static void stop(mg_node *s)
{
    s->stopping = 1;
    if (s->chat != NULL) { /* they use the metadata store and the broker: first */
        mg_chat_request_stop(s->chat);
        uv_timer_start(&s->chat_wait, chat_wait_tick, 10, 10);
        return;
    }

    if (s->http)
        mg_http_server_close(s->http, http_closed, s);
    else
        http_closed(s);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    mg_node *s = handle->data;
    if (s->stopping) {
        MG_WARN("second %s while stopping: exiting now", strsignal(signum));
        _exit(MG_EXIT_FAILURE);
    }
    MG_INFO("received %s: stopping", strsignal(signum));
    stop(s);
}

/* ---- starting ----------------------------------------------------------------------------------
 */

static int register_metrics(mg_node *s)
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

int mg_node_open_metadata(mg_node *s, const char *url)
{
    int rc = md_store_open(url, NULL, &s->md);
    if (rc != MG_OK) {
        MG_ERROR("cannot open the metadata store %s: %s", url, mg_strerror(rc));
        return rc;
    }
    MG_INFO("metadata store %s open (%s)", url, md_store_backend(s->md));
    return md_client_create(s->md, &s->loop, &s->mdc);
}

static void registration_answered(int status, const char *path, void *arg)
{
    mg_node_registration *reg = arg;
    (void)path;
    reg->status = status;
    reg->answered = true;
}

int mg_node_register(uv_loop_t *loop, md_client *mdc, mg_node_registration *reg, const char *path,
                     const char *value, size_t value_len, uint64_t timeout_ms)
{
    reg->answered = false;
    MG_TRY(md_create(mdc, path, value, value_len, MD_EPHEMERAL | MD_CREATE_PARENTS,
                     registration_answered, reg));
    uint64_t deadline_ms = uv_now(loop) + timeout_ms;
    while (!reg->answered && uv_now(loop) < deadline_ms) {
        if (uv_run(loop, UV_RUN_NOWAIT) == 0)
            uv_sleep(1);
        uv_update_time(loop);
    }
    return MG_OK;
}

/* Registers this process under path (start-up only), logging why it could not. */
static int register_node(mg_node *s, const char *path, const char *value)
{
    mg_node_registration *reg = &s->registration;
    MG_TRY(
        mg_node_register(&s->loop, s->mdc, reg, path, value, strlen(value), NODE_START_TIMEOUT_MS));
    if (!reg->answered) {
        MG_ERROR("the metadata store did not answer within %d ms", NODE_START_TIMEOUT_MS);
        return MG_ETIMEDOUT;
    }
    if (reg->status != MG_OK)
        MG_ERROR("cannot register %s in the metadata store: %s%s", path, mg_strerror(reg->status),
                 reg->status == MG_EEXIST ? " (another process uses this address)" : "");
    return reg->status;
}

/* The bookie's identity is its address: ledgers name the bookies that hold them. With
 * --bookie-port 0 the port chosen on the first start is kept in <data-dir>/bookie/port and used
 * again on every restart, so the ledgers stay readable. Returns the port to listen on. */
static int64_t bookie_port_choose(const mg_node_bookie_opts *o, char *file, size_t file_size)
{
    snprintf(file, file_size, "%s/bookie/port", o->data_dir);
    if (o->port != 0)
        return o->port;
    FILE *f = fopen(file, "r");
    long long port = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld", &port) != 1 || port < 1 || port > 65535)
            port = 0;
        fclose(f);
    }
    return port;
}

static void bookie_port_remember(const char *file, unsigned port)
{
    FILE *f = fopen(file, "w");
    if (f == NULL || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0)
        MG_WARN("cannot write %s: %s (a restart will pick another bookie port and will not find "
                "its ledgers)",
                file, strerror(errno));
}

/* What the bookie's thread needs to start, and what it answers (through `started`). */
typedef struct bookie_start {
    mg_node *node;
    const mg_node_bookie_opts *o;
    const char *journal, *ledgers;
    uv_sem_t started;
    int status;
} bookie_start;

void mg_node_explain_storage_error(int rc, const char *journal_dir, int64_t journal_segment_mb)
{
    if (rc != MG_ENOSPC)
        return;
    struct statvfs sv;
    unsigned long long free_mb = 0;
    if (statvfs(journal_dir, &sv) == 0)
        free_mb = (unsigned long long)sv.f_bavail * sv.f_frsize >> 20;
    MG_ERROR("the bookie cannot start: its journal preallocates %lld MiB per segment file and the "
             "file system of %s has %llu MiB free; lower it with --journal-segment-mb (e.g. "
             "--journal-segment-mb %llu) or free space",
             (long long)(journal_segment_mb ? journal_segment_mb : 256), journal_dir, free_mb,
             free_mb / 4 > 1 ? free_mb / 4 : 1);
}

/* The bookie's thread opens the storage and the server itself: they belong to the thread that
 * runs their loop (their queues record their consumer thread when created). */
static void bookie_thread_main(void *arg)
{
    bookie_start *b = arg;
    mg_node *s = b->node;
    const mg_node_bookie_opts *o = b->o;
    mg_log_set_thread_name("bookie");
    bk_storage_opts so = {
        .journal_dir = b->journal,
        .ledger_dir = b->ledgers,
        .write_cache_bytes = (size_t)o->write_cache_mb << 20,
        .read_cache_bytes = (size_t)o->read_cache_mb << 20,
        .journal_segment_bytes = (uint64_t)o->journal_segment_mb << 20,
        .readahead = true,
        .metrics = s->metrics,
    };
    int rc = bk_storage_open(&s->bookie_loop, &so, &s->storage);
    if (rc != MG_OK)
        mg_node_explain_storage_error(rc, b->journal, o->journal_segment_mb);
    char port_file[4200];
    int64_t port = bookie_port_choose(o, port_file, sizeof(port_file));
    if (rc == MG_OK) {
        /* A node with a bookie is a standalone: a broker shares its descriptors. */
        mg_fd_shares fds;
        mg_fd_budget(s->fd_limit, true, true, &fds);
        bk_server_opts sv = { .host = o->bind_address,
                              .port = (uint16_t)port,
                              .metrics = s->metrics,
                              .connections_max = fds.bookie_max };
        rc = bk_server_start(&s->bookie_loop, s->storage, &sv, &s->bookie);
        if (rc != MG_OK)
            MG_ERROR("cannot serve the bookie RPC on %s:%lld: %s", o->bind_address, (long long)port,
                     mg_strerror(rc));
    }
    if (rc == MG_OK && o->port == 0 && port == 0)
        bookie_port_remember(port_file, bk_server_port(s->bookie));
    if (rc == MG_OK) {
        /* The broker of this process reaches the storage through this, not loopback TCP. */
        rc = bk_local_create(&s->bookie_loop, s->storage, &s->bk_local);
        if (rc != MG_OK)
            MG_ERROR("cannot set up the in-process bookie path: %s", mg_strerror(rc));
    }
    if (rc != MG_OK) {
        /* Close what opened, here on its own thread, before telling the main thread. */
        bookie_stop_requested(&s->bookie_stop);
        uv_run(&s->bookie_loop, UV_RUN_DEFAULT);
    }
    b->status = rc;
    uv_sem_post(&b->started); /* b may be gone from here on */
    if (rc == MG_OK)
        uv_run(&s->bookie_loop, UV_RUN_DEFAULT);
}

int mg_node_start_bookie(mg_node *s, const mg_node_bookie_opts *o)
{
    char journal[4200], ledgers[4200];
    snprintf(journal, sizeof(journal), "%s/bookie/journal", o->data_dir);
    snprintf(ledgers, sizeof(ledgers), "%s/bookie/ledgers", o->data_dir);
    int rc = mg_mkdirs(journal);
    if (rc == MG_OK)
        rc = mg_mkdirs(ledgers);
    if (rc != MG_OK) {
        MG_ERROR("cannot create %s or %s: %s", journal, ledgers, mg_strerror(rc));
        return rc;
    }
    if (uv_loop_init(&s->bookie_loop) != 0 ||
        uv_async_init(&s->bookie_loop, &s->bookie_stop, bookie_stop_requested) != 0 ||
        uv_async_init(&s->bookie_loop, &s->bookie_resume, resume_requested) != 0) {
        MG_ERROR("cannot set up the bookie's event loop");
        return MG_ENOMEM;
    }
    s->bookie_stop.data = s;
    s->bookie_resume.data = s;
    s->bookie_loop_ready = true;
    bookie_start b = { .node = s, .o = o, .journal = journal, .ledgers = ledgers };
    if (uv_sem_init(&b.started, 0) != 0)
        return MG_ENOMEM;
    if (uv_thread_create(&s->bookie_thread, bookie_thread_main, &b) != 0) {
        uv_sem_destroy(&b.started);
        MG_ERROR("cannot start the bookie's thread");
        return MG_ENOMEM;
    }
    uv_sem_wait(&b.started);
    uv_sem_destroy(&b.started);
    if (b.status != MG_OK) {
        uv_thread_join(&s->bookie_thread); /* it closed what it opened and returned */
        mg_tool_loop_close(&s->bookie_loop);
        s->bookie_loop_ready = false;
        return b.status; /* logged */
    }
    s->bookie_thread_running = true;
    snprintf(s->bookie_addr, sizeof(s->bookie_addr), "%s:%u", o->advertised_address,
             (unsigned)bk_server_port(s->bookie));
    snprintf(s->bookie_path, sizeof(s->bookie_path), "/bookies/%s", s->bookie_addr);
    char value[9000];
    snprintf(value, sizeof(value),
             "{\"version\":\"%s\",\"journalDir\":\"%s\",\"ledgerDirs\":\"%s\","
             "\"startTimestamp\":%lld}",
             MG_VERSION, journal, ledgers, (long long)time(NULL) * 1000);
    return register_node(s, s->bookie_path, value);
}

const char *const mg_node_prefetch_choices[] = { "on", "off", NULL };
const char *const mg_node_backlog_policy_choices[] = { "producer_request_hold",
                                                       "producer_exception",
                                                       "consumer_backlog_eviction", NULL };

int mg_node_start_broker(mg_node *s, const mg_node_broker_opts *o)
{
    MG_TRY(bk_client_create(&s->loop, NULL, &s->bkc));
    if (s->bk_local != NULL) {
        int lrc = bk_local_attach(s->bk_local, &s->loop, s->bkc, s->bookie_addr);
        if (lrc != MG_OK) {
            MG_ERROR("cannot attach the broker to the in-process bookie: %s", mg_strerror(lrc));
            return lrc;
        }
    }
    mg_fd_shares fds;
    mg_fd_budget(s->fd_limit, true, s->bookie != NULL, &fds);
    ml_env_opts eo = { .ensemble_size = o->ensemble_size,
                       .write_quorum = o->write_quorum,
                       .ack_quorum = o->ack_quorum,
                       .metrics = s->metrics };
    MG_TRY(ml_env_create(&s->loop, s->mdc, s->bkc, &eo, &s->env));
    br_broker_opts bo = {
        .host = o->bind_address,
        .port = (uint16_t)o->port,
        .advertised_address = o->advertised_address,
        .message_bytes_max = (uint32_t)o->tuning.message_size_max,
        .keepalive_s = (uint32_t)o->tuning.keepalive_s,
        .cluster = o->cluster,
        .metrics = s->metrics,
        .tail_cache_bytes = (uint64_t)o->tuning.tail_cache_mb << 20,
        .prefetch_bytes = (uint64_t)o->tuning.prefetch_mb << 20,
        .prefetch_off = o->tuning.prefetch == MG_NODE_PREFETCH_OFF,
        .catchup_duty_pct = (uint32_t)o->tuning.catchup_duty_pct,
        .auto_skip_non_recoverable_data = o->tuning.auto_skip_non_recoverable_data,
        .connection_memory_bytes = (uint64_t)o->tuning.connection_memory_mb << 20,
        .connections_max = fds.broker_max,
        .kafka = o->tuning.kafka == MG_NODE_KAFKA_ON,
        .kafka_port = (uint16_t)o->tuning.kafka_port,
        .ttl_default_s = o->tuning.ttl_default_ms / 1000,
        .backlog_quota_limit_bytes = o->tuning.backlog_quota_limit_bytes,
        .backlog_quota_limit_s = o->tuning.backlog_quota_limit_s,
        .backlog_quota_policy = o->tuning.backlog_quota_policy,
        .expiry_check_ms = (uint32_t)o->tuning.expiry_check_ms,
        .backlog_quota_check_ms = (uint32_t)o->tuning.backlog_quota_check_ms,
        .retention_check_ms = (uint32_t)o->tuning.retention_check_ms,
        .ml_config = { .entries_per_ledger_max = o->tuning.entries_per_ledger_max,
                       .retention_time_ms = o->tuning.retention_time_minutes < 0
                                                ? -1
                                                : o->tuning.retention_time_minutes * 60000,
                       .retention_bytes = o->tuning.retention_size_mb < 0
                                              ? -1
                                              : o->tuning.retention_size_mb << 20 },
    };
    int rc = br_broker_start(s->env, &bo, &s->broker);
    if (rc == MG_OK)
        MG_INFO("broker: at most %u connections (descriptor limit %llu, %llu kept in reserve, "
                "%u for the admin port%s)",
                (unsigned)fds.broker_max, (unsigned long long)fds.limit,
                (unsigned long long)fds.reserve, (unsigned)fds.http_max,
                s->bookie != NULL ? ", the rest for the bookie" : "");
    if (rc != MG_OK)
        MG_ERROR("cannot start the broker on %s:%lld: %s", o->bind_address, (long long)o->port,
                 mg_strerror(rc));
    return rc;
}

int mg_node_start_http(mg_node *s, const char *bind_address, int64_t port)
{
    mg_fd_shares fds;
    mg_fd_budget(s->fd_limit, s->broker != NULL, s->bookie != NULL, &fds);
    mg_http_options ho = { .host = bind_address,
                           .port = (uint16_t)port,
                           .connections_max = fds.http_max,
                           .metrics = s->metrics };
    int rc = mg_http_server_create(&s->loop, &ho, &s->http);
    if (rc != MG_OK)
        return rc;
    MG_TRY(mg_http_server_route(s->http, "GET", "/metrics", handle_metrics, s));
    MG_TRY(mg_http_server_route(s->http, "GET", "/admin/v2/brokers/health", handle_health, s));
    if (s->storage != NULL) {
        if (uv_async_init(&s->loop, &s->resume_reply, resume_replied) != 0)
            return MG_ENOMEM;
        s->resume_reply.data = s;
        s->resume_reply_ready = true;
        MG_TRY(mg_http_server_route(s->http, "GET", "/api/v1/bookie/state/readonly",
                                    handle_readonly_get, s));
        MG_TRY(mg_http_server_route(s->http, "PUT", "/api/v1/bookie/state/readonly",
                                    handle_readonly_put, s));
    }
    if (s->broker != NULL)
        MG_TRY(br_broker_admin_register(s->broker, s->http));
    if (s->broker != NULL && s->chat_api_topics > 0) {
        /* The chat push API produces through the broker like any Pulsar client. */
        cg_api_opts ao = { .service_url = s->chat_api_url,
                           .topic_count = s->chat_api_topics,
                           .md_client = s->mdc,
                           .metrics = s->metrics };
        rc = cg_api_create(&s->loop, s->http, &ao, &s->chat_api);
        if (rc != MG_OK) {
            MG_ERROR("cannot set up the chat push API: %s", mg_strerror(rc));
            return rc;
        }
    }
    MG_TRY(mg_http_server_start(s->http)); /* logs the address on failure */
    if (s->broker != NULL)
        br_broker_set_http_port(s->broker, mg_http_server_port(s->http));
    return MG_OK;
}

/* Registers this process as a live broker: ephemeral /brokers/<address>:<http port>, holding
 * JSON in the spirit of Pulsar's broker registration. */
int mg_node_register_broker(mg_node *s, const char *advertised_address)
{
    unsigned port = mg_http_server_port(s->http);
    snprintf(s->broker_path, sizeof(s->broker_path), "/brokers/%s:%u", advertised_address, port);
    char value[512];
    snprintf(value, sizeof(value),
             "{\"webServiceUrl\":\"http://%s:%u\",\"pulsarServiceUrl\":\"pulsar://%s:%u\","
             "\"version\":\"%s\",\"startTimestamp\":%lld}",
             advertised_address, port, advertised_address, (unsigned)br_broker_port(s->broker),
             MG_VERSION, (long long)time(NULL) * 1000);
    return register_node(s, s->broker_path, value);
}

int mg_node_init(mg_node *s)
{
    memset(s, 0, sizeof(*s));
    s->lock_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&s->loop);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_timer_init(&s->loop, &s->chat_wait);
    s->sigint.data = s->sigterm.data = s->chat_wait.data = s;
    s->fd_limit = mg_fd_limit_raise();
    if (register_metrics(s) != MG_OK) {
        MG_ERROR("cannot set up metrics: out of memory");
        return MG_ENOMEM;
    }
    return MG_OK;
}

void mg_node_run(mg_node *s)
{
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

void mg_node_cleanup(mg_node *s)
{
    if (!s->stopping &&
        (s->http || s->broker || s->bkc || s->bookie_loop_ready || s->storage || s->mdc)) {
        /* Start-up failed part way: stop what started, in the same order. */
        stop(s);
        uint64_t deadline_ms = uv_now(&s->loop) + NODE_START_TIMEOUT_MS;
        while (s->mdc != NULL && uv_now(&s->loop) < deadline_ms)
            uv_run(&s->loop, UV_RUN_ONCE);
    }
    mg_tool_loop_close(&s->loop);
    md_store_close(s->md);
    mg_metrics_destroy(s->metrics);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
}

/* What mg_node_start_http needs to serve the chat API: the topic count and the broker's URL. */
static int chat_api_prepare(mg_node *n, const mg_node_opts *o)
{
    n->chat_api_topics = (uint32_t)o->chat_api_topics;
    snprintf(n->chat_api_url, sizeof(n->chat_api_url), "pulsar://%s:%u",
             o->broker.advertised_address, (unsigned)br_broker_port(n->broker));
    return MG_OK;
}

int mg_node_serve(const char *name, const mg_node_opts *o)
{
    const mg_node_broker_opts *ro = &o->broker;
    mg_node n;
    int status = MG_EXIT_FAILURE;
    if (mg_node_init(&n) != MG_OK ||
        (o->bookie != NULL && mg_tool_lock_dir(o->bookie->data_dir, &n.lock_fd) != MG_OK) ||
        mg_node_open_metadata(&n, o->metadata_url) != MG_OK ||
        (o->bookie != NULL && mg_node_start_bookie(&n, o->bookie) != MG_OK) ||
        mg_node_start_broker(&n, ro) != MG_OK || chat_api_prepare(&n, o) != MG_OK ||
        mg_node_start_http(&n, ro->bind_address, o->http_port) != MG_OK ||
        mg_node_register_broker(&n, ro->advertised_address) != MG_OK)
        goto out;
    mg_chat chat;
    memset(&chat, 0, sizeof(chat));
    char chat_url[200];
    if (o->chat != NULL && (o->chat->gateway || o->chat->job)) {
        snprintf(chat_url, sizeof(chat_url), "pulsar://%s:%u", ro->advertised_address,
                 (unsigned)br_broker_port(n.broker));
        o->chat->service_url = chat_url;
        n.chat = &chat;
        if (mg_chat_start(&chat, n.md, n.metrics, o->chat) != MG_OK)
            goto out;
    }
    /* The last part names what this process adds to the broker: its bookie, or the replication
     * of the ledgers it writes to remote bookies. */
    char roles[4400];
    if (o->bookie != NULL)
        snprintf(roles, sizeof(roles), "bookie %s:%u, data in %s", o->bookie->advertised_address,
                 (unsigned)bk_server_port(n.bookie), o->bookie->data_dir);
    else
        snprintf(roles, sizeof(roles), "ledgers %d/%d/%d", ro->ensemble_size, ro->write_quorum,
                 ro->ack_quorum);
    if (br_broker_kafka_port(n.broker) != 0) {
        size_t len = strlen(roles);
        snprintf(roles + len, sizeof(roles) - len, ", kafka %s:%u", ro->advertised_address,
                 (unsigned)br_broker_kafka_port(n.broker));
    }
    if (n.chat != NULL && o->chat->gateway) {
        size_t len = strlen(roles);
        snprintf(roles + len, sizeof(roles) - len, ", chat gateway TCP %u, WebSocket %u, push %u",
                 (unsigned)mg_chat_gateway_port(n.chat, 0),
                 (unsigned)mg_chat_gateway_port(n.chat, 1),
                 (unsigned)mg_chat_gateway_port(n.chat, 2));
    }
    MG_INFO("%s %s ready: pulsar://%s:%u, admin and metrics on http://%s:%u, %s", name, MG_VERSION,
            ro->advertised_address, (unsigned)br_broker_port(n.broker), ro->bind_address,
            (unsigned)mg_http_server_port(n.http), roles);
    mg_node_run(&n);
    MG_INFO("%s stopped", name);
    status = MG_EXIT_OK;
out:
    if (n.chat != NULL) {
        mg_chat_stop(n.chat);
        n.chat = NULL;
    }
    mg_node_cleanup(&n);
    return status;
}
