/*
 * The chat HTTP API (src/chat_gateway/api.h) against a real broker: the test starts `magnetar
 * standalone` (support/sa_harness.h), serves the API from an mg_http_server of its own on an
 * ephemeral loopback port, posts pushes of every kind through a real socket, and reads the chat
 * topics back with the C client (readers from the earliest message) to check what the broker
 * stored: the topic each push went to (FNV-1a of its routing text, computed here from the rule,
 * not with the API's function), payload, properties, key, and the id each answer named; a burst
 * of pushes that wait together for their topic's producer. The
 * online endpoints are read over the same socket from nodes the test writes into a metadata store
 * of its own (embedded RocksDB in a temporary directory): fresh, stale and malformed ones.
 * Every wait runs the loop with a deadline.
 */
#include "chat_gateway/api.h"

#include "client/client.h"
#include "common/error.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"
#include "metadata/metadata.h"
#include "support/client_sync.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "support/rm_tree.h"
#include "support/sa_harness.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define WAIT_MS        15000 /* an answer, a message, a close */
#define TOPICS         4u
#define RESPONSE_BYTES 16384
#define STORED_MAX     64

static sah_standalone g_sa;

static void suite_fini(void)
{
    sah_destroy(&g_sa);
}

TestSuite(chat_api, .timeout = 180, .fini = suite_fini);

/* --- the topic rule, from the contract ------------------------------------------------------- */

/* FNV-1a 32-bit (offset basis 0x811c9dc5, prime 0x01000193) of text modulo TOPICS. */
static uint32_t topic_of(const char *text)
{
    uint32_t h = 0x811c9dc5u;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        h ^= *p;
        h *= 0x01000193u;
    }
    return h % TOPICS;
}

/* --- the loop, the server, the API ----------------------------------------------------------- */

static uv_loop_t g_loop;
static mg_http_server *g_http;
static mg_metrics *g_metrics;
static cg_api *g_api;
static md_store *g_store;
static md_client *g_mdc;
static char g_md_dir[64];
static pc_client *g_client;

static void env_open(void)
{
    signal(SIGPIPE, SIG_IGN);
    mg_log_set_level(MG_LOG_WARN);
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone: %s", mg_strerror(rc));
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    cr_assert_eq(mg_metrics_create(&g_metrics), MG_OK);

    snprintf(g_md_dir, sizeof(g_md_dir), "/tmp/chat-api-md-XXXXXX");
    cr_assert_not_null(mkdtemp(g_md_dir));
    char url[128];
    snprintf(url, sizeof(url), "rocksdb:%s/md", g_md_dir);
    cr_assert_eq(md_store_open(url, NULL, &g_store), MG_OK);
    cr_assert_eq(md_client_create(g_store, &g_loop, &g_mdc), MG_OK);

    mg_http_options ho = { .host = "127.0.0.1", .port = 0 };
    cr_assert_eq(mg_http_server_create(&g_loop, &ho, &g_http), MG_OK);
    char broker[64];
    snprintf(broker, sizeof(broker), "pulsar://127.0.0.1:%u", (unsigned)g_sa.broker_port);
    cg_api_opts o = {
        .service_url = broker, .topic_count = TOPICS, .md_client = g_mdc, .metrics = g_metrics
    };
    cr_assert_eq(cg_api_create(&g_loop, g_http, &o, &g_api), MG_OK);
    cr_assert_eq(mg_http_server_start(g_http), MG_OK);
    cr_assert_gt(mg_http_server_port(g_http), 0);
    g_client = cs_client_open(&g_loop, g_sa.broker_port, WAIT_MS);
}

static void env_close(void)
{
    cs_client_close(&g_loop, g_client, WAIT_MS);
    bool http_closed = false, api_closed = false, md_closed = false;
    mg_http_server_close(g_http, cs_flag_cb, &http_closed);
    cg_api_close(g_api, cs_flag_cb, &api_closed);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &api_closed, WAIT_MS), "API not closed");
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &http_closed, WAIT_MS), "server not closed");
    md_client_close(g_mdc, cs_flag_cb, &md_closed);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &md_closed, WAIT_MS), "md client not closed");
    md_store_close(g_store);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    mg_metrics_destroy(g_metrics);
    mgt_rm_tree(g_md_dir);
}

/* --- an HTTP client on the loop (the server answers on the same loop) ------------------------ */

typedef struct http_call {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char *request;
    size_t request_len;
    char response[RESPONSE_BYTES];
    size_t response_len;
    bool overflow;
    bool closed;
} http_call;

static void http_closed(uv_handle_t *h)
{
    ((http_call *)h->data)->closed = true;
}

static void http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    http_call *c = h->data;
    size_t room = sizeof(c->response) - 1 - c->response_len;
    *buf = uv_buf_init(c->response + c->response_len, (unsigned)room);
}

static void http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    http_call *c = s->data;
    if (n > 0) {
        c->response_len += (size_t)n;
        if (c->response_len == sizeof(c->response) - 1)
            c->overflow = true;
    }
    if (n < 0 || c->overflow)
        uv_close((uv_handle_t *)&c->tcp, http_closed);
}

static void http_written(uv_write_t *w, int status)
{
    http_call *c = w->data;
    if (status != 0 || uv_read_start((uv_stream_t *)&c->tcp, http_alloc, http_read) != 0)
        uv_close((uv_handle_t *)&c->tcp, http_closed);
}

static void http_connected(uv_connect_t *req, int status)
{
    http_call *c = req->data;
    uv_buf_t b = uv_buf_init(c->request, (unsigned)c->request_len);
    c->write.data = c;
    if (status != 0 || uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, http_written) != 0)
        uv_close((uv_handle_t *)&c->tcp, http_closed);
}

/* Starts sending method path (with its query) and body (may be NULL) to the API's server with
 * "Connection: close"; http_finish waits for the answer. */
static http_call *http_start(const char *method, const char *path, const char *body)
{
    http_call *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    size_t body_len = body != NULL ? strlen(body) : 0;
    size_t cap = strlen(path) + body_len + 256;
    c->request = malloc(cap);
    cr_assert_not_null(c->request);
    c->request_len = (size_t)snprintf(c->request, cap,
                                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                      "Content-Length: %zu\r\n\r\n%s",
                                      method, path, body_len, body != NULL ? body : "");
    cr_assert_lt(c->request_len, cap);
    cr_assert_eq(uv_tcp_init(&g_loop, &c->tcp), 0);
    c->tcp.data = c;
    c->connect.data = c;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", mg_http_server_port(g_http), &addr);
    cr_assert_eq(
        uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&addr, http_connected), 0);
    return c;
}

/* Waits for c's whole answer, requires HTTP 200 and application/json, frees c and returns the
 * parsed body (the caller releases it). */
static json_t *http_finish(http_call *c)
{
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c->closed, WAIT_MS), "no answer to %.60s",
              c->request);
    cr_assert_not(c->overflow, "answer over %d bytes", RESPONSE_BYTES);
    c->response[c->response_len] = '\0';
    cr_assert_eq(strncmp(c->response, "HTTP/1.1 200 ", 13), 0, "%.60s answered: %.200s", c->request,
                 c->response);
    cr_assert_not_null(strcasestr(c->response, "\r\nContent-Type: application/json"), "%.300s",
                       c->response);
    const char *start = strstr(c->response, "\r\n\r\n");
    cr_assert_not_null(start);
    json_error_t err;
    json_t *root = json_loads(start + 4, 0, &err);
    cr_assert_not_null(root, "%.60s: not JSON (%s): %s", c->request, err.text, start + 4);
    free(c->request);
    free(c);
    return root;
}

static json_t *http_json(const char *method, const char *path, const char *body)
{
    return http_finish(http_start(method, path, body));
}

/* Requires {"code":0,"message":"","data":{"id":"L:E:B"}} and returns the id's parts. */
static void push_ok(json_t *root, int64_t *ledger, int64_t *entry, int32_t *batch)
{
    char *text = json_dumps(root, JSON_COMPACT);
    cr_assert_eq(json_integer_value(json_object_get(root, "code")), 0, "%s", text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "message")), "", "%s", text);
    const char *id = json_string_value(json_object_get(json_object_get(root, "data"), "id"));
    cr_assert_not_null(id, "%s", text);
    char tail = 0;
    cr_assert_eq(sscanf(id, "%" SCNd64 ":%" SCNd64 ":%" SCNd32 "%c", ledger, entry, batch, &tail),
                 3, "id %s", id);
    cr_assert_geq(*ledger, 0);
    cr_assert_geq(*entry, 0);
    /* -1 when the message went alone, not in a batch (the client's pc_message_id). */
    cr_assert_geq(*batch, -1, "id %s", id);
    free(text);
    json_decref(root);
}

/* Requires {"code":code,"message":<containing part>}. */
static void push_refused(json_t *root, int code, const char *part)
{
    char *text = json_dumps(root, JSON_COMPACT);
    cr_assert_eq(json_integer_value(json_object_get(root, "code")), code, "%s", text);
    const char *message = json_string_value(json_object_get(root, "message"));
    cr_assert_not_null(message, "%s", text);
    cr_assert_not_null(strstr(message, part), "%s", text);
    cr_assert_null(json_object_get(root, "data"), "%s", text);
    free(text);
    json_decref(root);
}

/* --- what the broker stored ------------------------------------------------------------------ */

typedef struct stored {
    char topic[128];
    pc_message_id id;
    char payload[256];
    bool has_key;
    char key[128];
    size_t nprops;
    char props[8][2][128];
} stored;

typedef struct sink {
    stored msgs[STORED_MAX];
    size_t count;
} sink;

static void sink_on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    sink *s = arg;
    cr_assert_lt(s->count, STORED_MAX);
    stored *d = &s->msgs[s->count++];
    snprintf(d->topic, sizeof(d->topic), "%s", m->topic);
    d->id = m->id;
    cr_assert_lt(m->payload_len, sizeof(d->payload));
    memcpy(d->payload, m->payload, m->payload_len);
    d->has_key = m->key != NULL;
    if (m->key != NULL)
        snprintf(d->key, sizeof(d->key), "%s", m->key);
    cr_assert_leq(m->property_count, 8);
    d->nprops = m->property_count;
    for (size_t i = 0; i < m->property_count; i++) {
        snprintf(d->props[i][0], sizeof(d->props[i][0]), "%s", m->properties[i].key);
        snprintf(d->props[i][1], sizeof(d->props[i][1]), "%s", m->properties[i].value);
    }
}

static const char *prop(const stored *d, const char *key)
{
    for (size_t i = 0; i < d->nprops; i++)
        if (strcmp(d->props[i][0], key) == 0)
            return d->props[i][1];
    return NULL;
}

typedef struct want {
    const char *kind;
    const char *routing; /* what picks the topic; NULL: chat-0 */
    const char *payload;
    const char *key; /* NULL: none */
    const char *props[4][2];
    int64_t ledger, entry;
    int32_t batch;
} want;

/* The message of s with the given id, NULL when none. */
static const stored *find(const sink *s, int64_t ledger, int64_t entry, int32_t batch)
{
    for (size_t i = 0; i < s->count; i++) {
        const pc_message_id *id = &s->msgs[i].id;
        if (id->ledger_id == ledger && id->entry_id == entry && id->batch_index == batch)
            return &s->msgs[i];
    }
    return NULL;
}

/* Reads every chat topic from the earliest message until n messages came, into one sink per
 * topic. */
static void read_topics(sink *sinks, size_t n)
{
    pc_consumer *readers[TOPICS];
    for (uint32_t t = 0; t < TOPICS; t++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "persistent://public/default/chat-%u", t);
        pc_consumer_opts o = { .topic = topic,
                               .reader = true,
                               .start_id = PC_MESSAGE_ID_EARLIEST,
                               .start_inclusive = true,
                               .on_message = sink_on_message,
                               .arg = &sinks[t] };
        created c = { 0 };
        cr_assert_eq(pc_subscribe(g_client, &o, consumer_created, &c), MG_OK);
        cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "reader on %s", topic);
        cr_assert_eq(c.status, MG_OK, "reader on %s: %s", topic, mg_strerror(c.status));
        readers[t] = c.obj;
    }
    /* All the messages, across the topics. */
    for (int round = 0; round < 1000; round++) {
        size_t total = 0;
        for (uint32_t t = 0; t < TOPICS; t++)
            total += sinks[t].count;
        if (total >= n)
            break;
        mgt_run_for(&g_loop, 10);
    }
    size_t total = 0;
    for (uint32_t t = 0; t < TOPICS; t++)
        total += sinks[t].count;
    cr_assert_eq(total, n, "%zu messages stored, %zu pushed", total, n);
    for (uint32_t t = 0; t < TOPICS; t++)
        cr_assert_eq(cs_consumer_close(&g_loop, readers[t], WAIT_MS), MG_OK);
}

Test(chat_api, pushes_of_every_kind_are_stored)
{
    env_open();
    want w[] = {
        { "room",
          "live://1000",
          "{\"user\":\"ann\",\"text\":\"hello\"}",
          "live://1000",
          { { "chat.kind", "room" }, { "chat.room", "live://1000" }, { "chat.op", "5" } },
          0,
          0,
          0 },
        { "room",
          "live://1001",
          "second room",
          "live://1001",
          { { "chat.kind", "room" }, { "chat.room", "live://1001" }, { "chat.op", "1000" } },
          0,
          0,
          0 },
        { "keys",
          "key-a",
          "to two keys",
          NULL,
          { { "chat.kind", "keys" }, { "chat.keys", "key-a,key-b" }, { "chat.op", "5" } },
          0,
          0,
          0 },
        { "mids",
          "42",
          "to two mids",
          NULL,
          { { "chat.kind", "mids" }, { "chat.mids", "42,7" }, { "chat.op", "6" } },
          0,
          0,
          0 },
        { "all",
          NULL,
          "to everyone",
          NULL,
          { { "chat.kind", "all" }, { "chat.op", "5" }, { "chat.speed", "3" } },
          0,
          0,
          0 },
    };
    const char *paths[] = {
        "/goim/push/room?type=live&room=1000",
        "/goim/push/room?operation=1000&type=live&room=1001",
        "/goim/push/keys?keys=key-a,key-b",
        "/goim/push/mids?operation=6&mids=0042,7",
        "/goim/push/all?speed=3",
    };
    size_t n = sizeof(w) / sizeof(w[0]);
    for (size_t i = 0; i < n; i++)
        push_ok(http_json("POST", paths[i], w[i].payload), &w[i].ledger, &w[i].entry, &w[i].batch);
    /* Refusals over the socket carry GOIM's code and say what was wrong. */
    push_refused(http_json("POST", "/goim/push/room?type=live", "x"), -400, "room is missing");
    push_refused(http_json("POST", "/goim/push/keys?keys=a", ""), -400, "empty");
    push_refused(http_json("POST", "/goim/push/mids?mids=1,x", "x"), -400, "mid");

    sink *sinks = calloc(TOPICS, sizeof(*sinks));
    cr_assert_not_null(sinks);
    read_topics(sinks, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t t = w[i].routing != NULL ? topic_of(w[i].routing) : 0;
        const stored *d = find(&sinks[t], w[i].ledger, w[i].entry, w[i].batch);
        cr_assert_not_null(d, "push %zu (%s) not on chat-%u at %" PRId64 ":%" PRId64 ":%d", i,
                           w[i].kind, t, w[i].ledger, w[i].entry, w[i].batch);
        char topic[64];
        snprintf(topic, sizeof(topic), "persistent://public/default/chat-%u", t);
        cr_assert_str_eq(d->topic, topic);
        cr_assert_str_eq(d->payload, w[i].payload);
        cr_assert_eq(d->has_key, w[i].key != NULL, "push %zu key", i);
        if (w[i].key != NULL)
            cr_assert_str_eq(d->key, w[i].key);
        size_t nprops = 0;
        for (size_t p = 0; p < 4 && w[i].props[p][0] != NULL; p++, nprops++) {
            const char *v = prop(d, w[i].props[p][0]);
            cr_assert_not_null(v, "push %zu lacks %s", i, w[i].props[p][0]);
            cr_assert_str_eq(v, w[i].props[p][1], "push %zu %s", i, w[i].props[p][0]);
        }
        cr_assert_eq(d->nprops, nprops, "push %zu has other properties", i);
    }
    free(sinks);
    env_close();
}

/* Pushes that arrive together, while their topic's producer is being created, wait for it and
 * are all stored once, each under the id it was answered with. */
#define BURST 32

Test(chat_api, a_burst_waits_for_the_producer)
{
    env_open();
    http_call *calls[BURST];
    for (int i = 0; i < BURST; i++) {
        char body[32];
        snprintf(body, sizeof(body), "burst %d", i);
        calls[i] = http_start("POST", "/goim/push/room?type=live&room=77", body);
        /* One loop turn each, so the requests reach the server one after the other. */
        uv_run(&g_loop, UV_RUN_NOWAIT);
    }
    int64_t ledger[BURST], entry[BURST];
    int32_t batch[BURST];
    for (int i = 0; i < BURST; i++)
        push_ok(http_finish(calls[i]), &ledger[i], &entry[i], &batch[i]);
    sink *sinks = calloc(TOPICS, sizeof(*sinks));
    cr_assert_not_null(sinks);
    read_topics(sinks, BURST);
    const sink *s = &sinks[topic_of("live://77")];
    cr_assert_eq(s->count, BURST);
    for (int i = 0; i < BURST; i++) {
        const stored *d = find(s, ledger[i], entry[i], batch[i]);
        cr_assert_not_null(d, "push %d not stored under the id it was answered with", i);
        cr_assert_str_eq(d->key, "live://77");
    }
    /* Every body once; the topic's order is the order of the answered ids. */
    for (size_t i = 0; i < s->count; i++) {
        for (size_t j = i + 1; j < s->count; j++)
            cr_assert_lt(pc_message_id_cmp(&s->msgs[i].id, &s->msgs[j].id), 0);
        int k = -1;
        cr_assert_eq(sscanf(s->msgs[i].payload, "burst %d", &k), 1);
        cr_assert(k >= 0 && k < BURST);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s->msgs[j].payload, s->msgs[i].payload);
    }
    free(sinks);
    env_close();
}

/* --- online ---------------------------------------------------------------------------------- */

typedef struct md_done {
    bool done;
    int status;
} md_done;

static void md_created(int status, const char *path, void *arg)
{
    md_done *d = arg;
    d->status = status;
    d->done = true;
}

static void md_put(const char *path, const char *value)
{
    md_done d = { 0 };
    cr_assert_eq(md_create(g_mdc, path, value, strlen(value), MD_EPHEMERAL | MD_CREATE_PARENTS,
                           md_created, &d),
                 MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &d.done, WAIT_MS));
    cr_assert_eq(d.status, MG_OK, "create %s: %s", path, mg_strerror(d.status));
}

static json_t *online_data(const char *path)
{
    json_t *root = http_json("GET", path, NULL);
    char *text = json_dumps(root, JSON_COMPACT);
    cr_assert_eq(json_integer_value(json_object_get(root, "code")), 0, "%s", text);
    cr_assert_str_eq(json_string_value(json_object_get(root, "message")), "", "%s", text);
    json_t *data = json_incref(json_object_get(root, "data"));
    cr_assert_not_null(data, "%s", text);
    free(text);
    json_decref(root);
    return data;
}

Test(chat_api, online_counts_sum_the_gateways)
{
    env_open();
    /* No gateway yet: zeros, not an error. */
    json_t *d = online_data("/goim/online/total");
    cr_assert_eq(json_integer_value(json_object_get(d, "conn_count")), 0);
    cr_assert_eq(json_integer_value(json_object_get(d, "ip_count")), 0);
    json_decref(d);

    int64_t now = sah_wall_ms();
    char v[512];
    snprintf(v, sizeof(v),
             "{\"id\":\"gw-1\",\"updated_ms\":%" PRId64 ",\"conn_count\":12,\"ip_count\":10,"
             "\"rooms\":{\"live://1000\":8,\"live://1001\":4}}",
             now);
    md_put("/chat/online/gw-1", v);
    snprintf(v, sizeof(v),
             "{\"id\":\"gw-2\",\"updated_ms\":%" PRId64 ",\"conn_count\":5,\"ip_count\":5,"
             "\"rooms\":{\"live://1000\":2,\"live://1002\":3,\"game://1\":9}}",
             now - 1000);
    md_put("/chat/online/gw-2", v);
    snprintf(v, sizeof(v),
             "{\"id\":\"gw-3\",\"updated_ms\":%" PRId64 ",\"conn_count\":500,\"ip_count\":500,"
             "\"rooms\":{\"live://1000\":500}}",
             now - 60000);
    md_put("/chat/online/gw-3", v);                                  /* stale */
    md_put("/chat/online/gw-4", "{\"id\":\"gw-4\",\"conn_count\":"); /* does not parse */

    d = online_data("/goim/online/total");
    cr_assert_eq(json_integer_value(json_object_get(d, "conn_count")), 17);
    cr_assert_eq(json_integer_value(json_object_get(d, "ip_count")), 15);
    json_decref(d);

    d = online_data("/goim/online/room?type=live&rooms=1000,1001,1002,9");
    cr_assert_eq(json_object_size(d), 4);
    cr_assert_eq(json_integer_value(json_object_get(d, "live://1000")), 10);
    cr_assert_eq(json_integer_value(json_object_get(d, "live://1001")), 4);
    cr_assert_eq(json_integer_value(json_object_get(d, "live://1002")), 3);
    cr_assert_eq(json_integer_value(json_object_get(d, "live://9")), 0);
    json_decref(d);

    d = online_data("/goim/online/top?type=live&limit=2");
    cr_assert_eq(json_array_size(d), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 0), "room_id")),
                     "live://1000");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(d, 0), "count")), 10);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(d, 1), "room_id")),
                     "live://1001");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(d, 1), "count")), 4);
    json_decref(d);

    /* The stale and the malformed value were counted. */
    mg_metric_family *f =
        mg_metrics_counter_family(g_metrics, "magnetar_chat_api_online_skipped_total", NULL, 1,
                                  (const char *const[]){ "reason" });
    cr_assert_eq(mg_counter_value(mg_metrics_counter(f, (const char *const[]){ "stale" })), 3);
    cr_assert_eq(mg_counter_value(mg_metrics_counter(f, (const char *const[]){ "parse" })), 3);
    env_close();
}
