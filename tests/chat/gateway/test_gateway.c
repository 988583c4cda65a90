/*
 * The chat gateway (src/chat_gateway/gateway.h) running in-process: each test starts a gateway
 * on its own libuv loop in a thread, on ephemeral loopback ports, without metadata store and
 * without resume, and stops it at the end (cg_gateway_close through a uv_async, the thread
 * joined). Clients are blocking sockets in the test's thread (support/goim_client.h); the Job
 * side is a push-protocol client written here (a u32 length and a packed ChatFrame, encoded with
 * protobuf-c directly, not with the gateway's own framing code).
 *
 * Cases: auth over TCP and WebSocket in both dialects; heartbeats with the room's count; the
 * rooms a Job is told about (reset, joined, left); a room push in every form a client may ask
 * for (GOIM op 9, Bilibili protover 0, 2 and 3, WebSocket, positions) and its PushAck;
 * duplicates dropped by position; key, mid and all pushes with accepts lists; change room and
 * sub/unsub; bad input of many kinds closing only its connection; packets and WebSocket
 * frames split across reads, fragmented, pipelined after a partial one; the Job link's Ping,
 * bad and empty frames; the idle timeout; the slow consumer's soft and hard limits; a key
 * reused; the connection limit; closing the gateway with everything open; 1,200 rooms and keys;
 * 2,000 connections in one room.
 *
 * "Nothing was delivered" is never checked by waiting: a later push is sent and must be the
 * next thing the client reads.
 */
#include <criterion/criterion.h>
#include <brotli/decode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

#include "chat_gateway/gateway.h"
#include "common/error.h"
#include "common/metrics.h"
#include "proto/chat.pb-c.h"
#include "support/goim_client.h"

#define WAIT_MS     5000 /* an answer, a packet, a close */
#define MSGS_MAX    64   /* messages in one push built here */
#define INNER_MAX   256  /* inner packets of one batch read here */
#define FRAME_MAX   (16u * 1024 * 1024)
#define TOPIC       "persistent://public/chat/chat-0"
#define MANY_CONNS  2000
#define MANY_NOFILE 4200

TestSuite(gateway, .timeout = 60);

/* ---- the gateway on its own loop ---------------------------------------------------------- */

enum { REQ_NONE, REQ_COUNT, REQ_STOP };

typedef struct env {
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wake;
    uv_mutex_t mu;
    uv_cond_t cv;
    int req;        /* what the loop thread is asked (REQ_*), under mu */
    bool answered;  /* the answer is there, under mu */
    uint32_t count; /* REQ_COUNT's answer */
    cg_gateway *gw;
    mg_metrics *metrics;
    uint16_t tcp;
    uint16_t ws;
    uint16_t push;
} env;

static void gw_closed(void *arg)
{
    env *e = arg;
    uv_close((uv_handle_t *)&e->wake, NULL);
}

static void wake_cb(uv_async_t *a)
{
    env *e = a->data;
    uv_mutex_lock(&e->mu);
    int req = e->req;
    e->req = REQ_NONE;
    if (req == REQ_COUNT) {
        e->count = cg_gateway_connection_count(e->gw);
        e->answered = true;
        uv_cond_signal(&e->cv);
    }
    uv_mutex_unlock(&e->mu);
    if (req == REQ_STOP)
        cg_gateway_close(e->gw, gw_closed, e);
}

static void loop_main(void *arg)
{
    env *e = arg;
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

/* Starts a gateway with o's settings (ports, mdc and service_url are set here). */
static void env_start(env *e, cg_gateway_opts o)
{
    memset(e, 0, sizeof(*e));
    cr_assert_eq(mg_metrics_create(&e->metrics), MG_OK);
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    o.bind_address = "127.0.0.1";
    o.tcp_port = o.ws_port = o.push_port = 0;
    o.mdc = NULL;
    o.service_url = NULL;
    o.metrics = e->metrics;
    int rc = cg_gateway_create(&e->loop, &o, &e->gw);
    cr_assert_eq(rc, MG_OK, "cg_gateway_create: %s", mg_strerror(rc));
    rc = cg_gateway_start(e->gw);
    cr_assert_eq(rc, MG_OK, "cg_gateway_start: %s", mg_strerror(rc));
    e->tcp = cg_gateway_tcp_port(e->gw);
    e->ws = cg_gateway_ws_port(e->gw);
    e->push = cg_gateway_push_port(e->gw);
    cr_assert(e->tcp != 0 && e->ws != 0 && e->push != 0);
    uv_mutex_init(&e->mu);
    uv_cond_init(&e->cv);
    uv_async_init(&e->loop, &e->wake, wake_cb);
    e->wake.data = e;
    cr_assert_eq(uv_thread_create(&e->thread, loop_main, e), 0);
}

static cg_gateway_opts default_opts(void)
{
    return (cg_gateway_opts){ .auth_timeout_ms = 300, .idle_timeout_ms = 60000 };
}

static void env_stop(env *e)
{
    uv_mutex_lock(&e->mu);
    e->req = REQ_STOP;
    uv_mutex_unlock(&e->mu);
    uv_async_send(&e->wake);
    uv_thread_join(&e->thread);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "the gateway left handles open on its loop");
    uv_cond_destroy(&e->cv);
    uv_mutex_destroy(&e->mu);
    mg_metrics_destroy(e->metrics);
}

/* The gateway's connection count, asked on its loop. */
static uint32_t env_conn_count(env *e)
{
    uv_mutex_lock(&e->mu);
    e->req = REQ_COUNT;
    e->answered = false;
    uv_mutex_unlock(&e->mu);
    uv_async_send(&e->wake);
    uv_mutex_lock(&e->mu);
    for (int i = 0; i < 1000 && !e->answered; i++)
        uv_cond_timedwait(&e->cv, &e->mu, 100 * 1000 * 1000ull);
    bool ok = e->answered;
    uint32_t n = e->count;
    uv_mutex_unlock(&e->mu);
    cr_assert(ok, "the gateway's loop did not answer");
    return n;
}

/* Waits (bounded) until the gateway holds want connections. */
static void env_wait_conns(env *e, uint32_t want)
{
    uint32_t n = 0;
    for (int i = 0; i < WAIT_MS / 10; i++) {
        n = env_conn_count(e);
        if (n == want)
            return;
        usleep(10 * 1000);
    }
    cr_assert_fail("the gateway holds %u connections, not %u", n, want);
}

/* The value of one series in the rendered metrics, e.g.
 * "magnetar_chat_gateway_closed_total{reason=\"idle\"}"; 0 when absent. */
static uint64_t metric(env *e, const char *series)
{
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mg_metrics_render(e->metrics, &text, &len), MG_OK);
    uint64_t v = 0;
    size_t n = strlen(series);
    for (const char *line = text; line != NULL && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            v = strtoull(line + n + 1, NULL, 10);
            break;
        }
    }
    free(text);
    return v;
}

static uint64_t closed_count(env *e, const char *reason)
{
    char series[128];
    snprintf(series, sizeof(series), "magnetar_chat_gateway_closed_total{reason=\"%s\"}", reason);
    return metric(e, series);
}

/* Waits (bounded) until the series reaches want: a close is counted on the loop, maybe just
 * after the client saw its socket end. */
static void wait_metric(env *e, const char *series, uint64_t want)
{
    uint64_t n = 0;
    for (int i = 0; i < WAIT_MS / 10; i++) {
        n = metric(e, series);
        if (n >= want)
            break;
        usleep(10 * 1000);
    }
    cr_assert_eq(n, want, "%s is %llu, not %llu", series, (unsigned long long)n,
                 (unsigned long long)want);
}

static void wait_closed_count(env *e, const char *reason, uint64_t want)
{
    char series[128];
    snprintf(series, sizeof(series), "magnetar_chat_gateway_closed_total{reason=\"%s\"}", reason);
    wait_metric(e, series, want);
}

/* ---- clients ------------------------------------------------------------------------------ */

static void expect_auth_ok(goim_conn *c, const char *auth)
{
    goim_packet r;
    int rc = goim_auth(c, auth, &r);
    cr_assert_eq(rc, MG_OK, "auth %s: %s", auth, mg_strerror(rc));
    cr_assert_eq(r.ver, 1);
    cr_assert_eq(r.seq, 1);
    cr_assert_eq(r.body_len, strlen("{\"code\":0}"), "auth reply (%u bytes) %.*s", r.body_len,
                 (int)r.body_len, r.body);
    cr_assert(memcmp(r.body, "{\"code\":0}", r.body_len) == 0);
}

static goim_conn cli_tcp(env *e, const char *auth)
{
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, e->tcp, WAIT_MS, 0), MG_OK);
    expect_auth_ok(&c, auth);
    return c;
}

static goim_conn cli_ws(env *e, const char *auth)
{
    goim_conn c;
    int status = 0;
    int rc = goim_connect_ws(&c, e->ws, "/sub", WAIT_MS, 0, &status);
    cr_assert_eq(rc, MG_OK, "WebSocket handshake: %s (status %d)", mg_strerror(rc), status);
    expect_auth_ok(&c, auth);
    return c;
}

static void goim_auth_body(char *dst, size_t cap, int64_t mid, const char *key, const char *room,
                           const char *accepts, bool positions)
{
    snprintf(dst, cap,
             "{\"mid\":%lld,\"key\":\"%s\",\"room_id\":\"%s\",\"platform\":\"web\","
             "\"accepts\":[%s]%s}",
             (long long)mid, key, room, accepts, positions ? ",\"positions\":true" : "");
}

static goim_conn goim_in_room(env *e, const char *key, const char *room)
{
    char auth[256];
    goim_auth_body(auth, sizeof(auth), 1, key, room, "1000", false);
    return cli_tcp(e, auth);
}

/* Reads the next packet; it must be op (and ver unless ver < 0). */
static goim_packet expect_packet(goim_conn *c, uint32_t op, int ver)
{
    goim_packet p;
    int rc = goim_read(c, &p);
    cr_assert_eq(rc, MG_OK, "reading a packet (op %u expected): %s", op, mg_strerror(rc));
    cr_assert_eq(p.op, op, "op %u, not %u", p.op, op);
    if (ver >= 0)
        cr_assert_eq(p.ver, ver, "op %u: ver %u, not %d", op, p.ver, ver);
    return p;
}

static void expect_body(const goim_packet *p, const char *body)
{
    cr_assert_eq(p->body_len, strlen(body), "body %.*s, not %s", (int)p->body_len, p->body, body);
    cr_assert(memcmp(p->body, body, p->body_len) == 0, "body %.*s, not %s", (int)p->body_len,
              p->body, body);
}

/* The next packet is a heartbeat reply with the count. */
static void expect_heartbeat(goim_conn *c, uint32_t count)
{
    cr_assert_eq(goim_send(c, 1, 2, 9, NULL, 0), MG_OK);
    goim_packet p = expect_packet(c, 3, 1);
    cr_assert_eq(p.seq, 9);
    cr_assert_eq(p.body_len, 4);
    uint32_t n = (uint32_t)p.body[0] << 24 | (uint32_t)p.body[1] << 16 | (uint32_t)p.body[2] << 8 |
                 p.body[3];
    cr_assert_eq(n, count, "heartbeat count %u, not %u", n, count);
}

/* The next packet is an op 9 batch of op 5 packets with bodies[0, n), in order. */
static void expect_room_batch(goim_conn *c, const char *const *bodies, size_t n)
{
    goim_packet p = expect_packet(c, 9, 1);
    goim_packet inner[INNER_MAX];
    size_t k = 0;
    cr_assert_eq(goim_split(p.body, p.body_len, inner, INNER_MAX, &k), MG_OK);
    cr_assert_eq(k, n, "%zu packets in the batch, not %zu", k, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(inner[i].op, 5);
        expect_body(&inner[i], bodies[i]);
    }
}

static void expect_closed(goim_conn *c)
{
    int rc = goim_wait_closed(c, NULL, 0, NULL);
    cr_assert_eq(rc, MG_ECLOSED, "the gateway kept the connection open (%s)", mg_strerror(rc));
}

/* ---- the Job side -------------------------------------------------------------------------- */

static goim_conn job_connect(env *e)
{
    goim_conn j;
    cr_assert_eq(goim_connect_tcp(&j, e->push, WAIT_MS, 0), MG_OK);
    return j;
}

static void job_send(goim_conn *j, const Magnetar__Chat__ChatFrame *f)
{
    size_t n = magnetar__chat__chat_frame__get_packed_size(f);
    uint8_t *b = malloc(4 + n);
    cr_assert_not_null(b);
    b[0] = (uint8_t)(n >> 24);
    b[1] = (uint8_t)(n >> 16);
    b[2] = (uint8_t)(n >> 8);
    b[3] = (uint8_t)n;
    magnetar__chat__chat_frame__pack(f, b + 4);
    cr_assert_eq(goim_write_raw(j, b, 4 + n), MG_OK);
    free(b);
}

/* The next frame of kind (Pings are skipped); the caller frees it. */
static Magnetar__Chat__ChatFrame *job_expect(goim_conn *j, Magnetar__Chat__ChatFrame__KindCase kind)
{
    for (int i = 0; i < 100; i++) {
        uint8_t len[4];
        int rc = goim_read_exact(j, len, 4);
        cr_assert_eq(rc, MG_OK, "reading the push link: %s", mg_strerror(rc));
        uint32_t n =
            (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3];
        cr_assert_leq(n, FRAME_MAX);
        uint8_t *b = malloc(n ? n : 1);
        cr_assert_not_null(b);
        cr_assert_eq(goim_read_exact(j, b, n), MG_OK);
        Magnetar__Chat__ChatFrame *f = magnetar__chat__chat_frame__unpack(NULL, n, b);
        free(b);
        cr_assert_not_null(f, "a frame of the push link does not unpack");
        if (f->kind_case == MAGNETAR__CHAT__CHAT_FRAME__KIND_PING) {
            magnetar__chat__chat_frame__free_unpacked(f, NULL);
            continue;
        }
        cr_assert_eq(f->kind_case, kind, "frame kind %d, not %d", f->kind_case, kind);
        return f;
    }
    cr_assert_fail("only pings on the push link");
    return NULL;
}

/* Links a Job: Hello, and the Rooms reset it answers (returned; the caller frees it). */
static Magnetar__Chat__ChatFrame *job_hello(goim_conn *j)
{
    Magnetar__Chat__ChatHello h = MAGNETAR__CHAT__CHAT_HELLO__INIT;
    h.id = "test-job";
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO;
    f.hello = &h;
    job_send(j, &f);
    Magnetar__Chat__ChatFrame *r = job_expect(j, MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS);
    cr_assert(r->rooms->has_reset && r->rooms->reset, "the answer to Hello is not a reset");
    return r;
}

static goim_conn job_link(env *e)
{
    goim_conn j = job_connect(e);
    magnetar__chat__chat_frame__free_unpacked(job_hello(&j), NULL);
    return j;
}

/* What a push carries: messages with bodies, ops and positions (ledger < 0: none). */
typedef struct push_spec {
    Magnetar__Chat__ChatPushKind kind;
    const char *room;
    const char *const *keys;
    size_t n_keys;
    const int64_t *mids;
    size_t n_mids;
    size_t n;
    const char *bodies[MSGS_MAX];
    size_t body_lens[MSGS_MAX]; /* 0: strlen */
    uint32_t ops[MSGS_MAX];     /* 0: the default, 5 */
    int64_t ledger[MSGS_MAX];
    int64_t entry[MSGS_MAX];
    int32_t batch[MSGS_MAX];
} push_spec;

/* Sends the push and waits for its PushAck (Rooms diffs on the way are skipped). */
static void job_push(goim_conn *j, uint64_t push_id, const push_spec *s)
{
    Magnetar__Chat__ChatMessage msg[MSGS_MAX];
    Magnetar__Chat__ChatMessage *msgp[MSGS_MAX];
    Magnetar__Chat__ChatPosition pos[MSGS_MAX];
    cr_assert_leq(s->n, MSGS_MAX);
    for (size_t i = 0; i < s->n; i++) {
        magnetar__chat__chat_message__init(&msg[i]);
        msg[i].body.data = (uint8_t *)s->bodies[i];
        msg[i].body.len = s->body_lens[i] ? s->body_lens[i] : strlen(s->bodies[i]);
        if (s->ops[i] != 0) {
            msg[i].has_op = true;
            msg[i].op = s->ops[i];
        }
        if (s->ledger[i] >= 0) {
            magnetar__chat__chat_position__init(&pos[i]);
            pos[i].ledger_id = s->ledger[i];
            pos[i].entry_id = s->entry[i];
            pos[i].has_batch_index = true;
            pos[i].batch_index = s->batch[i];
            msg[i].position = &pos[i];
        }
        msgp[i] = &msg[i];
    }
    Magnetar__Chat__ChatPush p = MAGNETAR__CHAT__CHAT_PUSH__INIT;
    p.push_id = push_id;
    p.kind = s->kind;
    p.room = (char *)s->room;
    p.keys = (char **)s->keys;
    p.n_keys = s->n_keys;
    p.mids = (int64_t *)s->mids;
    p.n_mids = s->n_mids;
    p.topic = TOPIC;
    p.n_messages = s->n;
    p.messages = msgp;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH;
    f.push = &p;
    job_send(j, &f);
    for (int i = 0; i < 100; i++) {
        uint8_t len[4];
        cr_assert_eq(goim_read_exact(j, len, 4), MG_OK, "no PushAck for push %llu",
                     (unsigned long long)push_id);
        uint32_t n =
            (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3];
        cr_assert_leq(n, FRAME_MAX);
        uint8_t *b = malloc(n ? n : 1);
        cr_assert_not_null(b);
        cr_assert_eq(goim_read_exact(j, b, n), MG_OK);
        Magnetar__Chat__ChatFrame *r = magnetar__chat__chat_frame__unpack(NULL, n, b);
        free(b);
        cr_assert_not_null(r);
        bool ack = r->kind_case == MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK;
        if (ack) {
            cr_assert_eq(r->ack->push_id, push_id);
            cr_assert_eq(r->ack->status, 0, "push %llu acked with status %d",
                         (unsigned long long)push_id, r->ack->status);
        }
        magnetar__chat__chat_frame__free_unpacked(r, NULL);
        if (ack)
            return;
    }
    cr_assert_fail("no PushAck for push %llu", (unsigned long long)push_id);
}

/* A room push of bodies with positions (ledger, entry0 + i, batch -1). */
static void push_room(goim_conn *j, uint64_t push_id, const char *room, const char *const *bodies,
                      size_t n, int64_t ledger, int64_t entry0)
{
    push_spec s = { .kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM, .room = room, .n = n };
    for (size_t i = 0; i < n; i++) {
        s.bodies[i] = bodies[i];
        s.ledger[i] = ledger;
        s.entry[i] = entry0 + (int64_t)i;
        s.batch[i] = -1;
    }
    job_push(j, push_id, &s);
}

/* A push to keys, mids or all of one message with op and no position. */
static void push_one(goim_conn *j, uint64_t push_id, Magnetar__Chat__ChatPushKind kind,
                     const char *const *keys, size_t n_keys, const int64_t *mids, size_t n_mids,
                     uint32_t op, const char *body)
{
    push_spec s = {
        .kind = kind, .keys = keys, .n_keys = n_keys, .mids = mids, .n_mids = n_mids, .n = 1
    };
    s.bodies[0] = body;
    s.ops[0] = op;
    s.ledger[0] = -1;
    job_push(j, push_id, &s);
}

static bool rooms_has(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* ---- 1. auth ------------------------------------------------------------------------------ */

Test(gateway, auth_tcp_websocket_and_bilibili)
{
    env e;
    env_start(&e, default_opts());
    const char *goim = "{\"mid\":1,\"key\":\"a1\",\"room_id\":\"live://1000\",\"platform\":\"web\","
                       "\"accepts\":[1000]}";
    const char *goim_ws = "{\"mid\":2,\"key\":\"a2\",\"room_id\":\"live://1000\","
                          "\"platform\":\"web\",\"accepts\":[1000]}";
    const char *bili =
        "{\"uid\":0,\"roomid\":1000,\"protover\":0,\"platform\":\"web\",\"type\":2,\"key\":\"k\"}";
    goim_conn t = cli_tcp(&e, goim);
    goim_conn w = cli_ws(&e, goim_ws);
    goim_conn b = cli_tcp(&e, bili);
    goim_conn bw = cli_ws(&e, "{\"uid\":5,\"roomid\":\"1000\",\"protover\":0,\"key\":\"k2\"}");
    /* All four are in live://1000: Bilibili's roomid 1000 is that room. */
    expect_heartbeat(&t, 4);
    expect_heartbeat(&w, 4);
    expect_heartbeat(&b, 4);
    expect_heartbeat(&bw, 4);
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_auth_total{dialect=\"goim\"}"), 2);
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_auth_total{dialect=\"bilibili\"}"), 2);
    goim_close(&t);
    goim_close(&w);
    goim_close(&b);
    goim_close(&bw);
    env_wait_conns(&e, 0);
    env_stop(&e);
}

/* ---- 2. heartbeat ------------------------------------------------------------------------- */

Test(gateway, heartbeat_counts_room_members)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c[3];
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof(key), "hb%d", i);
        c[i] = goim_in_room(&e, key, "live://2000");
    }
    goim_conn other = goim_in_room(&e, "hb-other", "live://2001");
    for (int i = 0; i < 3; i++)
        expect_heartbeat(&c[i], 3);
    expect_heartbeat(&other, 1);
    goim_close(&c[2]);
    env_wait_conns(&e, 3);
    expect_heartbeat(&c[0], 2);
    goim_close(&c[0]);
    goim_close(&c[1]);
    goim_close(&other);
    env_stop(&e);
}

/* ---- 3. rooms announced to a Job ---------------------------------------------------------- */

Test(gateway, job_link_rooms_reset_joined_left)
{
    env e;
    env_start(&e, default_opts());
    goim_conn a = goim_in_room(&e, "r-a", "live://3001");
    goim_conn a2 = goim_in_room(&e, "r-a2", "chat://3000");
    goim_conn j = job_connect(&e);
    Magnetar__Chat__ChatFrame *f = job_hello(&j);
    cr_assert_eq(f->rooms->n_joined, 2);
    cr_assert(rooms_has(f->rooms->joined, f->rooms->n_joined, "live://3001"));
    cr_assert(rooms_has(f->rooms->joined, f->rooms->n_joined, "chat://3000"));
    cr_assert_eq(f->rooms->n_left, 0);
    magnetar__chat__chat_frame__free_unpacked(f, NULL);

    /* A new room's first member: joined. */
    goim_conn b = goim_in_room(&e, "r-b", "live://3002");
    f = job_expect(&j, MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS);
    cr_assert(!f->rooms->reset);
    cr_assert_eq(f->rooms->n_joined, 1);
    cr_assert_str_eq(f->rooms->joined[0], "live://3002");
    cr_assert_eq(f->rooms->n_left, 0);
    magnetar__chat__chat_frame__free_unpacked(f, NULL);

    /* A second member and the first leaving change nothing a Job needs: the next diff is the
     * last member leaving. */
    goim_conn c = goim_in_room(&e, "r-c", "live://3002");
    goim_close(&b);
    env_wait_conns(&e, 3);
    goim_close(&c);
    f = job_expect(&j, MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS);
    cr_assert(!f->rooms->reset);
    cr_assert_eq(f->rooms->n_joined, 0);
    cr_assert_eq(f->rooms->n_left, 1);
    cr_assert_str_eq(f->rooms->left[0], "live://3002");
    magnetar__chat__chat_frame__free_unpacked(f, NULL);

    /* A second Job's reset lists what is left. */
    goim_conn j2 = job_connect(&e);
    f = job_hello(&j2);
    cr_assert_eq(f->rooms->n_joined, 2);
    cr_assert(!rooms_has(f->rooms->joined, f->rooms->n_joined, "live://3002"));
    magnetar__chat__chat_frame__free_unpacked(f, NULL);
    goim_close(&a);
    goim_close(&a2);
    goim_close(&j);
    goim_close(&j2);
    env_stop(&e);
}

/* ---- 4. room push in every form ----------------------------------------------------------- */

/* Inflates a Bilibili ver 2 / 3 body and checks the three op 5 ver 0 packets inside. */
static void expect_compressed(const goim_packet *p, int ver, const char *const *bodies, size_t n)
{
    cr_assert_eq(p->op, 5);
    cr_assert_eq(p->ver, ver);
    size_t cap = 1 << 20;
    uint8_t *out = malloc(cap);
    cr_assert_not_null(out);
    size_t len = cap;
    if (ver == 2) {
        uLongf l = (uLongf)cap;
        cr_assert_eq(uncompress(out, &l, p->body, p->body_len), Z_OK, "not a zlib stream");
        len = (size_t)l;
    } else {
        cr_assert_eq(BrotliDecoderDecompress(p->body_len, p->body, &len, out),
                     BROTLI_DECODER_RESULT_SUCCESS, "not a brotli stream");
    }
    goim_packet inner[INNER_MAX];
    size_t k = 0;
    cr_assert_eq(goim_split(out, len, inner, INNER_MAX, &k), MG_OK);
    cr_assert_eq(k, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(inner[i].op, 5);
        cr_assert_eq(inner[i].ver, 0);
        expect_body(&inner[i], bodies[i]);
    }
    free(out);
}

Test(gateway, room_push_every_form)
{
    env e;
    env_start(&e, default_opts());
    const char *room = "live://4000";
    char auth[256];
    goim_auth_body(auth, sizeof(auth), 1, "g", room, "1000", false);
    goim_conn g = cli_tcp(&e, auth);
    goim_auth_body(auth, sizeof(auth), 2, "gp", room, "1000", true);
    goim_conn gp = cli_tcp(&e, auth);
    goim_auth_body(auth, sizeof(auth), 3, "w", room, "1000", false);
    goim_conn w = cli_ws(&e, auth);
    goim_conn b[4];
    for (int v = 0; v < 4; v++) {
        snprintf(auth, sizeof(auth),
                 "{\"uid\":%d,\"roomid\":4000,\"protover\":%d,\"platform\":\"web\",\"type\":2,"
                 "\"key\":\"b%d\"}",
                 10 + v, v, v);
        b[v] = cli_tcp(&e, auth);
    }
    goim_conn j = job_link(&e);

    const char *bodies[3] = { "{\"n\":1}", "{\"n\":2,\"text\":\"two\"}", "{\"n\":3}" };
    push_spec s = { .kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM, .room = room, .n = 3 };
    const int64_t entries[3] = { 10, 10, 11 };
    const int32_t batches[3] = { 0, 1, -1 };
    for (int i = 0; i < 3; i++) {
        s.bodies[i] = bodies[i];
        s.ledger[i] = 7;
        s.entry[i] = entries[i];
        s.batch[i] = batches[i];
    }
    job_push(&j, 41, &s);

    /* GOIM over TCP: one op 9 whose inner packets are the three messages. */
    goim_packet gpk = expect_packet(&g, 9, 1);
    goim_packet inner[INNER_MAX];
    size_t k = 0;
    cr_assert_eq(goim_split(gpk.body, gpk.body_len, inner, INNER_MAX, &k), MG_OK);
    cr_assert_eq(k, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(inner[i].op, 5);
        expect_body(&inner[i], bodies[i]);
    }
    uint8_t *tcp_bytes = malloc(gpk.packet_len);
    cr_assert_not_null(tcp_bytes);
    goim_header(tcp_bytes, gpk.packet_len, 16, gpk.ver, gpk.op, gpk.seq);
    memcpy(tcp_bytes + 16, gpk.body, gpk.body_len);

    /* WebSocket: the same bytes in one binary frame. */
    unsigned opcode = 0;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    cr_assert_eq(goim_ws_read_frame(&w, &opcode, &payload, &plen), MG_OK);
    cr_assert_eq(opcode, 2, "a frame of opcode %u, not binary", opcode);
    cr_assert_eq(plen, gpk.packet_len);
    cr_assert(memcmp(payload, tcp_bytes, plen) == 0, "the WebSocket frame differs from TCP's");
    free(tcp_bytes);

    /* Positions: op 20 "L:E:B" before each message. */
    goim_packet pp = expect_packet(&gp, 9, 1);
    cr_assert_eq(goim_split(pp.body, pp.body_len, inner, INNER_MAX, &k), MG_OK);
    cr_assert_eq(k, 6);
    const char *positions[3] = { "7:10:0", "7:10:1", "7:11" };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(inner[2 * i].op, 20);
        expect_body(&inner[2 * i], positions[i]);
        cr_assert_eq(inner[2 * i + 1].op, 5);
        expect_body(&inner[2 * i + 1], bodies[i]);
    }

    /* Bilibili protover 0 and 1: the three packets back to back, ver 0. */
    for (int v = 0; v < 2; v++) {
        for (int i = 0; i < 3; i++) {
            goim_packet p = expect_packet(&b[v], 5, 0);
            expect_body(&p, bodies[i]);
        }
    }
    /* protover 2: zlib; 3: brotli. */
    goim_packet z = expect_packet(&b[2], 5, 2);
    expect_compressed(&z, 2, bodies, 3);
    goim_packet br = expect_packet(&b[3], 5, 3);
    expect_compressed(&br, 3, bodies, 3);

    /* What follows is the next push, nothing else. */
    const char *next[1] = { "{\"n\":4}" };
    push_room(&j, 42, room, next, 1, 7, 12);
    expect_room_batch(&g, next, 1);
    for (int i = 0; i < 2; i++)
        expect_body((goim_packet[]){ expect_packet(&b[i], 5, 0) }, next[0]);
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_pushes_total"), 2);

    goim_close(&g);
    goim_close(&gp);
    goim_close(&w);
    for (int v = 0; v < 4; v++)
        goim_close(&b[v]);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 5. duplicates ------------------------------------------------------------------------ */

Test(gateway, duplicates_by_position)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = goim_in_room(&e, "d", "live://5000");
    goim_conn j = job_link(&e);
    const char *first[2] = { "m1", "m2" };
    push_room(&j, 1, "live://5000", first, 2, 3, 1);
    expect_room_batch(&c, first, 2);
    /* The same push again, then one older: nothing. */
    push_room(&j, 2, "live://5000", first, 2, 3, 1);
    const char *old[1] = { "m0" };
    push_room(&j, 3, "live://5000", old, 1, 3, 0);
    /* Partly new: only what is after the last delivered. */
    const char *mixed[2] = { "m2-again", "m3" };
    push_room(&j, 4, "live://5000", mixed, 2, 3, 2);
    const char *want[1] = { "m3" };
    expect_room_batch(&c, want, 1);
    /* A newer ledger is after every entry of an older one. */
    const char *newer[1] = { "m4" };
    push_room(&j, 5, "live://5000", newer, 1, 4, 0);
    expect_room_batch(&c, newer, 1);
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_duplicates_total"), 4);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 6. keys, mids, all ------------------------------------------------------------------- */

Test(gateway, keys_mids_all_and_accepts)
{
    env e;
    env_start(&e, default_opts());
    char auth[256];
    goim_auth_body(auth, sizeof(auth), 11, "k1", "live://6000", "1000", false);
    goim_conn c1 = cli_tcp(&e, auth);
    goim_auth_body(auth, sizeof(auth), 12, "k2", "live://6000", "1001", false);
    goim_conn c2 = cli_tcp(&e, auth);
    goim_conn c3 = cli_tcp(
        &e, "{\"uid\":13,\"roomid\":6001,\"protover\":0,\"platform\":\"web\",\"key\":\"k3\"}");
    goim_auth_body(auth, sizeof(auth), 13, "k4", "live://6002", "1000", false);
    goim_conn c4 = cli_ws(&e, auth);
    goim_conn j = job_link(&e);
    const Magnetar__Chat__ChatPushKind KEYS = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS;
    const Magnetar__Chat__ChatPushKind MIDS = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS;
    const Magnetar__Chat__ChatPushKind ALL = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL;

    /* Keys k1 and k2, op 1000: only k1 accepts it. GOIM gets the packet itself (no op 9). */
    const char *k12[2] = { "k1", "k2" };
    push_one(&j, 1, KEYS, k12, 2, NULL, 0, 1000, "to-keys");
    expect_body((goim_packet[]){ expect_packet(&c1, 1000, 1) }, "to-keys");
    /* k2 got nothing: its next packet is this one, of the op it accepts. */
    const char *k2[1] = { "k2" };
    push_one(&j, 2, KEYS, k2, 1, NULL, 0, 1001, "k2-only");
    expect_body((goim_packet[]){ expect_packet(&c2, 1001, 1) }, "k2-only");
    /* A Bilibili key accepts every op. */
    const char *k3[1] = { "k3" };
    push_one(&j, 3, KEYS, k3, 1, NULL, 0, 4242, "k3-any-op");
    expect_body((goim_packet[]){ expect_packet(&c3, 4242, 0) }, "k3-any-op");

    /* Mid 13: the Bilibili connection and the WebSocket one (op 1000 accepted by both). */
    const int64_t m13[1] = { 13 };
    push_one(&j, 4, MIDS, NULL, 0, m13, 1, 1000, "to-mid-13");
    expect_body((goim_packet[]){ expect_packet(&c3, 1000, 0) }, "to-mid-13");
    expect_body((goim_packet[]){ expect_packet(&c4, 1000, 1) }, "to-mid-13");

    /* All, op 1000: c1, c3, c4 (c2 accepts only 1001). */
    push_one(&j, 5, ALL, NULL, 0, NULL, 0, 1000, "to-all");
    expect_body((goim_packet[]){ expect_packet(&c1, 1000, 1) }, "to-all");
    expect_body((goim_packet[]){ expect_packet(&c3, 1000, 0) }, "to-all");
    expect_body((goim_packet[]){ expect_packet(&c4, 1000, 1) }, "to-all");
    /* All, op 1001: c2 and c3. */
    push_one(&j, 6, ALL, NULL, 0, NULL, 0, 1001, "to-all-1001");
    expect_body((goim_packet[]){ expect_packet(&c2, 1001, 1) }, "to-all-1001");
    expect_body((goim_packet[]){ expect_packet(&c3, 1001, 0) }, "to-all-1001");
    /* c1 and c4 got neither mid 13 (c1) nor op 1001: their next packet is this one. */
    const char *k14[2] = { "k1", "k4" };
    push_one(&j, 7, KEYS, k14, 2, NULL, 0, 1000, "end");
    expect_body((goim_packet[]){ expect_packet(&c1, 1000, 1) }, "end");
    expect_body((goim_packet[]){ expect_packet(&c4, 1000, 1) }, "end");
    /* An unknown key reaches no one and is still acknowledged. */
    const char *nobody[1] = { "nobody" };
    push_one(&j, 8, KEYS, nobody, 1, NULL, 0, 1000, "lost");
    goim_close(&c1);
    goim_close(&c2);
    goim_close(&c3);
    goim_close(&c4);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 7. change room, sub and unsub -------------------------------------------------------- */

Test(gateway, change_room_and_sub_unsub)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = goim_in_room(&e, "mover", "live://7001");
    goim_conn stay = goim_in_room(&e, "stay", "live://7001");
    goim_conn j = job_link(&e);
    const char *body = " live://7002\n";
    cr_assert_eq(goim_send(&c, 1, 12, 5, body, strlen(body)), MG_OK);
    goim_packet r = expect_packet(&c, 13, -1);
    cr_assert_eq(r.seq, 5);
    expect_body(&r, "live://7002");
    expect_heartbeat(&c, 1);
    expect_heartbeat(&stay, 1);

    const char *old_room[1] = { "to-7001" };
    push_room(&j, 1, "live://7001", old_room, 1, 1, 1);
    const char *new_room[1] = { "to-7002" };
    push_room(&j, 2, "live://7002", new_room, 1, 2, 1);
    expect_room_batch(&c, new_room, 1);
    expect_room_batch(&stay, old_room, 1);

    /* Sub 1001, then a key push of 1001 reaches it; unsub 1000, then 1000 does not. */
    const Magnetar__Chat__ChatPushKind KEYS = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS;
    const char *key[1] = { "mover" };
    push_one(&j, 3, KEYS, key, 1, NULL, 0, 1001, "before-sub");
    cr_assert_eq(goim_send(&c, 1, 14, 6, "1001", 4), MG_OK);
    r = expect_packet(&c, 15, -1);
    cr_assert_eq(r.seq, 6);
    expect_body(&r, "1001");
    push_one(&j, 4, KEYS, key, 1, NULL, 0, 1001, "after-sub");
    expect_body((goim_packet[]){ expect_packet(&c, 1001, 1) }, "after-sub");
    cr_assert_eq(goim_send(&c, 1, 16, 7, "1000", 4), MG_OK);
    r = expect_packet(&c, 17, -1);
    cr_assert_eq(r.seq, 7);
    expect_body(&r, "1000");
    push_one(&j, 5, KEYS, key, 1, NULL, 0, 1000, "after-unsub");
    push_one(&j, 6, KEYS, key, 1, NULL, 0, 1001, "still-1001");
    expect_body((goim_packet[]){ expect_packet(&c, 1001, 1) }, "still-1001");
    goim_close(&c);
    goim_close(&stay);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 8. bad input ------------------------------------------------------------------------- */

/* A gateway, a Job, and a bystander in live://8000 that must keep getting pushes. */
typedef struct bad_env {
    env e;
    goim_conn j;
    goim_conn bystander;
    uint64_t push_id;
} bad_env;

static void bad_start(bad_env *b)
{
    env_start(&b->e, default_opts());
    b->bystander = goim_in_room(&b->e, "bystander", "live://8000");
    b->j = job_link(&b->e);
    b->push_id = 1;
}

/* The bystander still gets pushes; the reason was counted once; everything is closed. */
static void bad_finish(bad_env *b, const char *reason)
{
    const char *msg[1] = { "still-here" };
    push_room(&b->j, b->push_id, "live://8000", msg, 1, 1, (int64_t)b->push_id);
    b->push_id++;
    expect_room_batch(&b->bystander, msg, 1);
    expect_heartbeat(&b->bystander, 1);
    wait_closed_count(&b->e, reason, 1);
    env_wait_conns(&b->e, 1);
    goim_close(&b->bystander);
    goim_close(&b->j);
    env_stop(&b->e);
}

static goim_conn live_tcp(bad_env *b)
{
    return goim_in_room(&b->e, "victim", "live://8000");
}

Test(gateway, bad_header_len)
{
    bad_env b;
    bad_start(&b);
    goim_conn c = live_tcp(&b);
    uint8_t h[16];
    goim_header(h, 16, 15, 1, 2, 1);
    cr_assert_eq(goim_write_raw(&c, h, sizeof(h)), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "bad_packet");
}

Test(gateway, bad_pack_len_over_bound)
{
    bad_env b;
    bad_start(&b);
    goim_conn c = live_tcp(&b);
    uint8_t h[16];
    goim_header(h, 16 + 5000, 16, 1, 2, 1);
    cr_assert_eq(goim_write_raw(&c, h, sizeof(h)), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "oversized");
}

Test(gateway, bad_garbage_bytes)
{
    bad_env b;
    bad_start(&b);
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, b.e.tcp, WAIT_MS, 0), MG_OK);
    const uint8_t junk[] = { 0x00, 0x00, 0x00, 0x03, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02 };
    cr_assert_eq(goim_write_raw(&c, junk, sizeof(junk)), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "bad_packet");
}

Test(gateway, no_auth_within_timeout)
{
    bad_env b;
    bad_start(&b);
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, b.e.tcp, WAIT_MS, 0), MG_OK);
    goim_conn w;
    int status = 0;
    cr_assert_eq(goim_connect_ws(&w, b.e.ws, "/sub", WAIT_MS, 0, &status), MG_OK);
    expect_closed(&c);
    expect_closed(&w);
    goim_close(&c);
    goim_close(&w);
    const char *msg[1] = { "x" };
    push_room(&b.j, 100, "live://8000", msg, 1, 1, 100);
    expect_room_batch(&b.bystander, msg, 1);
    wait_closed_count(&b.e, "auth_timeout", 2);
    goim_close(&b.bystander);
    goim_close(&b.j);
    env_stop(&b.e);
}

Test(gateway, first_packet_not_auth)
{
    bad_env b;
    bad_start(&b);
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, b.e.tcp, WAIT_MS, 0), MG_OK);
    cr_assert_eq(goim_send(&c, 1, 2, 1, NULL, 0), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "not_auth_first");
}

Test(gateway, unknown_op)
{
    bad_env b;
    bad_start(&b);
    goim_conn c = live_tcp(&b);
    cr_assert_eq(goim_send(&c, 1, 99, 1, NULL, 0), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "unknown_op");
}

Test(gateway, refused_auth_body)
{
    bad_env b;
    bad_start(&b);
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, b.e.tcp, WAIT_MS, 0), MG_OK);
    goim_packet r;
    cr_assert_eq(goim_auth(&c, "{\"mid\":1,\"key\":\"no-room\"}", &r), MG_OK);
    cr_assert_eq(r.ver, 1);
    const char *want = "{\"code\":-400,";
    cr_assert(r.body_len > strlen(want) && memcmp(r.body, want, strlen(want)) == 0,
              "refusal body %.*s", (int)r.body_len, r.body);
    cr_assert_not_null(memmem(r.body, r.body_len, "\"message\":", 10));
    expect_closed(&c);
    goim_close(&c);
    cr_assert_eq(metric(&b.e, "magnetar_chat_gateway_auth_refused_total"), 1);
    bad_finish(&b, "auth_refused");
}

Test(gateway, websocket_frame_without_mask)
{
    bad_env b;
    bad_start(&b);
    goim_conn w = cli_ws(&b.e, "{\"mid\":1,\"key\":\"ws-victim\",\"room_id\":\"live://8000\"}");
    uint8_t p[16];
    goim_header(p, 16, 16, 1, 2, 1);
    cr_assert_eq(goim_ws_send_frame(&w, 2, p, sizeof(p), false), MG_OK);
    goim_packet pk;
    int rc = goim_read(&w, &pk);
    cr_assert_eq(rc, MG_ECLOSED, "read: %s", mg_strerror(rc));
    cr_assert_eq(w.ws_close_code, 1002, "close code %u, not 1002", w.ws_close_code);
    expect_closed(&w);
    goim_close(&w);
    bad_finish(&b, "bad_websocket");
}

Test(gateway, websocket_other_path)
{
    bad_env b;
    bad_start(&b);
    goim_conn w;
    int status = 0;
    cr_assert_eq(goim_connect_ws(&w, b.e.ws, "/other", WAIT_MS, 0, &status), MG_EPROTO);
    cr_assert_eq(status, 404);
    expect_closed(&w);
    goim_close(&w);
    bad_finish(&b, "bad_handshake");
}

Test(gateway, websocket_bad_version)
{
    bad_env b;
    bad_start(&b);
    goim_conn w;
    cr_assert_eq(goim_connect_tcp(&w, b.e.ws, WAIT_MS, 0), MG_OK);
    const char *req = "GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 8\r\n\r\n";
    cr_assert_eq(goim_write_raw(&w, req, strlen(req)), MG_OK);
    uint8_t resp[1024];
    size_t len = 0;
    cr_assert_eq(goim_wait_closed(&w, resp, sizeof(resp) - 1, &len), MG_ECLOSED);
    resp[len] = '\0';
    cr_assert(strncmp((char *)resp, "HTTP/1.1 426", 12) == 0, "response: %s", resp);
    cr_assert_not_null(strcasestr((char *)resp, "Sec-WebSocket-Version: 13"), "response: %s", resp);
    goim_close(&w);
    bad_finish(&b, "bad_handshake");
}

/* ---- packets split across reads ---------------------------------------------------------- */

#define PIPELINED 400

/* The first half of a packet in one write, then its second half and many whole packets in the
 * next: the gateway keeps the half packet between reads and must then take whole packets past
 * its one-packet bound. (The pause only makes it likely that the halves arrive in different
 * reads; when they do not, the test passes without exercising the split.) */
Test(gateway, pipelined_packets_after_a_partial_one_tcp)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = goim_in_room(&e, "pipe", "live://13000");
    size_t n = (size_t)(PIPELINED + 1) * 16;
    uint8_t *b = malloc(n);
    cr_assert_not_null(b);
    for (int i = 0; i <= PIPELINED; i++)
        goim_header(b + 16 * i, 16, 16, 1, 2, (uint32_t)i);
    cr_assert_eq(goim_write_raw(&c, b, 8), MG_OK);
    usleep(100 * 1000);
    cr_assert_eq(goim_write_raw(&c, b + 8, n - 8), MG_OK);
    free(b);
    for (int i = 0; i <= PIPELINED; i++) {
        goim_packet p;
        int rc = goim_read(&c, &p);
        cr_assert_eq(rc, MG_OK, "heartbeat reply %d: %s (closed as %s)", i, mg_strerror(rc),
                     closed_count(&e, "oversized") ? "oversized" : "?");
        cr_assert_eq(p.op, 3);
        cr_assert_eq(p.seq, (uint32_t)i);
    }
    cr_assert_eq(closed_count(&e, "oversized"), 0);
    goim_close(&c);
    env_stop(&e);
}

#define PIPELINED_WS 1500

Test(gateway, pipelined_frames_after_a_partial_one_websocket)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = cli_ws(&e, "{\"mid\":1,\"key\":\"pipe-ws\",\"room_id\":\"live://13001\"}");
    /* Masked frames of one heartbeat each (mask 0: the payload is sent as it is). */
    const size_t fl = 2 + 4 + 16;
    size_t n = (size_t)(PIPELINED_WS + 1) * fl;
    uint8_t *b = calloc(1, n);
    cr_assert_not_null(b);
    for (int i = 0; i <= PIPELINED_WS; i++) {
        uint8_t *f = b + fl * (size_t)i;
        f[0] = 0x82;
        f[1] = 0x80 | 16;
        goim_header(f + 6, 16, 16, 1, 2, (uint32_t)i);
    }
    cr_assert_eq(goim_write_raw(&c, b, 10), MG_OK);
    usleep(100 * 1000);
    cr_assert_eq(goim_write_raw(&c, b + 10, n - 10), MG_OK);
    free(b);
    for (int i = 0; i <= PIPELINED_WS; i++) {
        goim_packet p;
        int rc = goim_read(&c, &p);
        cr_assert_eq(rc, MG_OK, "heartbeat reply %d: %s (closed as oversized: %llu)", i,
                     mg_strerror(rc), (unsigned long long)closed_count(&e, "oversized"));
        cr_assert_eq(p.op, 3);
        cr_assert_eq(p.seq, (uint32_t)i);
    }
    goim_close(&c);
    env_stop(&e);
}

/* ---- more of the protocol ----------------------------------------------------------------- */

Test(gateway, change_room_announced_to_jobs)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = goim_in_room(&e, "walker", "live://14001");
    goim_conn j = job_link(&e);
    const char *body = "live://14002";
    cr_assert_eq(goim_send(&c, 1, 12, 1, body, strlen(body)), MG_OK);
    expect_body((goim_packet[]){ expect_packet(&c, 13, -1) }, body);
    Magnetar__Chat__ChatFrame *f = job_expect(&j, MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS);
    cr_assert_eq(f->rooms->n_joined, 1);
    cr_assert_str_eq(f->rooms->joined[0], "live://14002");
    cr_assert_eq(f->rooms->n_left, 1);
    cr_assert_str_eq(f->rooms->left[0], "live://14001");
    magnetar__chat__chat_frame__free_unpacked(f, NULL);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, change_room_bad_body_closes)
{
    bad_env b;
    bad_start(&b);
    goim_conn c = live_tcp(&b);
    const char *body = "no room here";
    cr_assert_eq(goim_send(&c, 1, 12, 1, body, strlen(body)), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    bad_finish(&b, "bad_packet");
}

Test(gateway, websocket_packets_in_one_message_large_push_ping_close)
{
    env e;
    env_start(&e, default_opts());
    goim_conn w;
    int status = 0;
    cr_assert_eq(goim_connect_ws(&w, e.ws, "/sub", WAIT_MS, 0, &status), MG_OK);
    /* Auth and a heartbeat in one message. */
    const char *auth = "{\"mid\":1,\"key\":\"ws-big\",\"room_id\":\"live://15000\"}";
    size_t al = strlen(auth);
    uint8_t msg[256];
    goim_header(msg, (uint32_t)(16 + al), 16, 1, 7, 1);
    memcpy(msg + 16, auth, al);
    goim_header(msg + 16 + al, 16, 16, 1, 2, 2);
    cr_assert_eq(goim_ws_send_frame(&w, 2, msg, 32 + al, true), MG_OK);
    expect_body((goim_packet[]){ expect_packet(&w, 8, 1) }, "{\"code\":0}");
    goim_packet hb = expect_packet(&w, 3, 1);
    cr_assert_eq(hb.seq, 2);
    goim_conn t = goim_in_room(&e, "tcp-big", "live://15000");
    goim_conn j = job_link(&e);

    /* A push over 64 KiB: the frame's 64-bit length form. */
    size_t big = 100 * 1024;
    char *body = malloc(big + 1);
    cr_assert_not_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)('a' + i % 26);
    body[big] = '\0';
    const char *bodies[1] = { body };
    push_room(&j, 1, "live://15000", bodies, 1, 1, 1);
    goim_packet tp = expect_packet(&t, 9, 1);
    unsigned opcode = 0;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    cr_assert_eq(goim_ws_read_frame(&w, &opcode, &payload, &plen), MG_OK);
    cr_assert_eq(opcode, 2);
    cr_assert_eq(plen, tp.packet_len);
    cr_assert(memcmp(payload + 16, tp.body, tp.body_len) == 0);
    goim_packet inner[2];
    size_t k = 0;
    cr_assert_eq(goim_split(tp.body, tp.body_len, inner, 2, &k), MG_OK);
    cr_assert_eq(k, 1);
    cr_assert_eq(inner[0].body_len, big);
    cr_assert(memcmp(inner[0].body, body, big) == 0);
    free(body);

    /* A ping gets its pong; then a close from the client closes the connection. */
    cr_assert_eq(goim_ws_send_frame(&w, 9, "pp", 2, true), MG_OK);
    cr_assert_eq(goim_read_exact(&w, msg, 4), MG_OK);
    cr_assert_eq(msg[0], 0x8A, "not a pong: %02x", msg[0]);
    cr_assert_eq(msg[1], 2);
    cr_assert(memcmp(msg + 2, "pp", 2) == 0);
    const uint8_t code[2] = { 1000 >> 8, 1000 & 0xFF };
    cr_assert_eq(goim_ws_send_frame(&w, 8, code, 2, true), MG_OK);
    goim_packet p;
    cr_assert_eq(goim_read(&w, &p), MG_ECLOSED);
    cr_assert_eq(w.ws_close_code, 1000);
    expect_closed(&w);
    wait_closed_count(&e, "peer_closed", 1);
    goim_close(&w);
    goim_close(&t);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, job_ping_pong_and_push_before_hello)
{
    env e;
    env_start(&e, default_opts());
    goim_conn j = job_link(&e);
    Magnetar__Chat__ChatPing ping = MAGNETAR__CHAT__CHAT_PING__INIT;
    ping.has_nonce = true;
    ping.nonce = 77;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PING;
    f.ping = &ping;
    job_send(&j, &f);
    Magnetar__Chat__ChatFrame *r = job_expect(&j, MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG);
    cr_assert(r->pong->has_nonce);
    cr_assert_eq(r->pong->nonce, 77);
    magnetar__chat__chat_frame__free_unpacked(r, NULL);

    /* A push on a link that did not say Hello closes that link. */
    goim_conn rude = job_connect(&e);
    Magnetar__Chat__ChatPush p = MAGNETAR__CHAT__CHAT_PUSH__INIT;
    p.push_id = 1;
    p.kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL;
    p.topic = TOPIC;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH;
    f.push = &p;
    job_send(&rude, &f);
    expect_closed(&rude);
    goim_close(&rude);
    /* The first link still works. */
    goim_conn c = goim_in_room(&e, "after-rude", "live://16000");
    const char *msg[1] = { "ok" };
    push_room(&j, 2, "live://16000", msg, 1, 1, 1);
    expect_room_batch(&c, msg, 1);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, key_push_duplicates_by_topic)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = goim_in_room(&e, "kd", "live://17000");
    goim_conn j = job_link(&e);
    const char *key[1] = { "kd" };
    push_spec s = {
        .kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS, .keys = key, .n_keys = 1, .n = 1
    };
    s.bodies[0] = "first";
    s.ops[0] = 1000;
    s.ledger[0] = 5;
    s.entry[0] = 5;
    s.batch[0] = -1;
    job_push(&j, 1, &s);
    expect_body((goim_packet[]){ expect_packet(&c, 1000, 1) }, "first");
    s.bodies[0] = "again";
    job_push(&j, 2, &s);
    s.bodies[0] = "next";
    s.entry[0] = 6;
    job_push(&j, 3, &s);
    expect_body((goim_packet[]){ expect_packet(&c, 1000, 1) }, "next");
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_duplicates_total"), 1);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, bilibili_positions)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c = cli_tcp(&e, "{\"uid\":1,\"roomid\":18000,\"protover\":0,\"key\":\"bp\","
                              "\"positions\":true}");
    goim_conn j = job_link(&e);
    const char *bodies[2] = { "x", "y" };
    push_room(&j, 1, "live://18000", bodies, 2, 9, 4);
    const char *pos[2] = { "9:4", "9:5" };
    for (int i = 0; i < 2; i++) {
        expect_body((goim_packet[]){ expect_packet(&c, 20, 0) }, pos[i]);
        expect_body((goim_packet[]){ expect_packet(&c, 5, 0) }, bodies[i]);
    }
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, websocket_handshake_and_auth_in_one_write)
{
    env e;
    env_start(&e, default_opts());
    goim_conn w;
    cr_assert_eq(goim_connect_tcp(&w, e.ws, WAIT_MS, 0), MG_OK);
    const char *req = "GET /sub?room=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: keep-alive, Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n";
    const char *auth = "{\"mid\":1,\"key\":\"one-write\",\"room_id\":\"live://19000\"}";
    size_t rl = strlen(req), al = strlen(auth);
    uint8_t buf[1024];
    memcpy(buf, req, rl);
    /* One masked binary frame (mask 0) holding the auth packet. */
    buf[rl] = 0x82;
    buf[rl + 1] = (uint8_t)(0x80 | (16 + al));
    memset(buf + rl + 2, 0, 4);
    goim_header(buf + rl + 6, (uint32_t)(16 + al), 16, 1, 7, 1);
    memcpy(buf + rl + 22, auth, al);
    cr_assert_eq(goim_write_raw(&w, buf, rl + 22 + al), MG_OK);
    /* The response head, byte by byte up to its blank line. */
    size_t n = 0;
    for (; n < sizeof(buf) - 1; n++) {
        cr_assert_eq(goim_read_exact(&w, buf + n, 1), MG_OK);
        if (n >= 3 && memcmp(buf + n - 3, "\r\n\r\n", 4) == 0)
            break;
    }
    buf[n + 1] = '\0';
    cr_assert(strncmp((char *)buf, "HTTP/1.1 101", 12) == 0, "response: %s", buf);
    /* The sample key of RFC 6455 §1.3 and its accept value. */
    cr_assert_not_null(strstr((char *)buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "response: %s", buf);
    w.ws = true;
    expect_body((goim_packet[]){ expect_packet(&w, 8, 1) }, "{\"code\":0}");
    expect_heartbeat(&w, 1);
    goim_close(&w);
    env_stop(&e);
}

Test(gateway, connection_limit_and_body_bound)
{
    env e;
    cg_gateway_opts o = default_opts();
    o.connections_max = 2;
    o.body_bytes_max = 100;
    env_start(&e, o);
    goim_conn a = goim_in_room(&e, "lim-a", "live://20000");
    goim_conn b = goim_in_room(&e, "lim-b", "live://20000");
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, e.tcp, WAIT_MS, 0), MG_OK);
    expect_closed(&c);
    goim_close(&c);
    wait_metric(&e, "magnetar_chat_gateway_refused_total", 1);
    /* A body of 100 bytes is taken (op 4: ignored), 101 is over the bound. */
    uint8_t body[101];
    memset(body, 'x', sizeof(body));
    cr_assert_eq(goim_send(&a, 1, 4, 1, body, 100), MG_OK);
    expect_heartbeat(&a, 2);
    cr_assert_eq(goim_send(&a, 1, 4, 1, body, 101), MG_OK);
    expect_closed(&a);
    wait_closed_count(&e, "oversized", 1);
    expect_heartbeat(&b, 1);
    goim_close(&a);
    goim_close(&b);
    env_stop(&e);
}

/* The gateway closed with connections in every state, Job links and a queue being written:
 * every client sees its connection end and the loop is left with nothing open. */
Test(gateway, close_with_everything_open)
{
    env e;
    cg_gateway_opts o = default_opts();
    o.auth_timeout_ms = 60000;
    env_start(&e, o);
    goim_conn waiting;
    cr_assert_eq(goim_connect_tcp(&waiting, e.tcp, WAIT_MS, 0), MG_OK);
    goim_conn handshake;
    cr_assert_eq(goim_connect_tcp(&handshake, e.ws, WAIT_MS, 0), MG_OK);
    cr_assert_eq(goim_write_raw(&handshake, "GET /sub HTTP/1.1\r\n", 19), MG_OK);
    goim_conn live = goim_in_room(&e, "open-live", "live://21000");
    goim_conn ws = cli_ws(&e, "{\"mid\":1,\"key\":\"open-ws\",\"room_id\":\"live://21000\"}");
    goim_conn slow;
    cr_assert_eq(goim_connect_tcp(&slow, e.tcp, WAIT_MS, 4096), MG_OK);
    expect_auth_ok(&slow, "{\"mid\":1,\"key\":\"open-slow\",\"room_id\":\"live://21001\"}");
    goim_conn j = job_link(&e);
    goim_conn j2 = job_connect(&e);
    static char big[60 * 1024];
    memset(big, 'b', sizeof(big) - 1);
    const char *bodies[1] = { big };
    for (int i = 0; i < 20; i++)
        push_room(&j, (uint64_t)i + 1, "live://21001", bodies, 1, 1, i);
    env_wait_conns(&e, 5);
    env_stop(&e);
    expect_closed(&waiting);
    expect_closed(&handshake);
    expect_closed(&live);
    expect_closed(&ws);
    expect_closed(&slow);
    expect_closed(&j);
    expect_closed(&j2);
    goim_close(&waiting);
    goim_close(&handshake);
    goim_close(&live);
    goim_close(&ws);
    goim_close(&slow);
    goim_close(&j);
    goim_close(&j2);
}

Test(gateway, websocket_fragmented_auth_and_oversized_message)
{
    bad_env b;
    bad_start(&b);
    goim_conn w;
    int status = 0;
    cr_assert_eq(goim_connect_ws(&w, b.e.ws, "/sub", WAIT_MS, 0, &status), MG_OK);
    const char *auth = "{\"mid\":1,\"key\":\"frag\",\"room_id\":\"live://8000\"}";
    size_t al = strlen(auth);
    uint8_t pk[128];
    goim_header(pk, (uint32_t)(16 + al), 16, 1, 7, 1);
    memcpy(pk + 16, auth, al);
    /* Binary, not FIN: the first 10 bytes; a ping in between; a FIN continuation: the rest. */
    uint8_t f[160];
    f[0] = 0x02;
    f[1] = 0x80 | 10;
    memset(f + 2, 0, 4);
    memcpy(f + 6, pk, 10);
    cr_assert_eq(goim_write_raw(&w, f, 16), MG_OK);
    cr_assert_eq(goim_ws_send_frame(&w, 9, "x", 1, true), MG_OK);
    size_t rest = 16 + al - 10;
    f[0] = 0x80;
    f[1] = (uint8_t)(0x80 | rest);
    memcpy(f + 6, pk + 10, rest);
    cr_assert_eq(goim_write_raw(&w, f, 6 + rest), MG_OK);
    /* The pong comes first, then the auth reply (goim_read skips the pong). */
    expect_body((goim_packet[]){ expect_packet(&w, 8, 1) }, "{\"code\":0}");
    expect_heartbeat(&w, 2);
    /* A message over the gateway's WebSocket bound (16 KiB): close 1009. */
    size_t big = 20 * 1024;
    uint8_t *m = calloc(1, big);
    cr_assert_not_null(m);
    goim_header(m, (uint32_t)big, 16, 1, 4, 1);
    cr_assert_eq(goim_ws_send_frame(&w, 2, m, big, true), MG_OK);
    free(m);
    goim_packet p;
    cr_assert_eq(goim_read(&w, &p), MG_ECLOSED);
    cr_assert_eq(w.ws_close_code, 1009, "close code %u", w.ws_close_code);
    expect_closed(&w);
    goim_close(&w);
    bad_finish(&b, "bad_websocket");
}

Test(gateway, tcp_auth_byte_by_byte)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, e.tcp, WAIT_MS, 0), MG_OK);
    const char *auth = "{\"mid\":1,\"key\":\"slowly\",\"room_id\":\"live://22000\"}";
    size_t al = strlen(auth);
    uint8_t pk[128];
    goim_header(pk, (uint32_t)(16 + al), 16, 1, 7, 3);
    memcpy(pk + 16, auth, al);
    for (size_t i = 0; i < 16 + al; i++) {
        cr_assert_eq(goim_write_raw(&c, pk + i, 1), MG_OK);
        usleep(1000);
    }
    goim_packet r = expect_packet(&c, 8, 1);
    cr_assert_eq(r.seq, 3);
    expect_body(&r, "{\"code\":0}");
    expect_heartbeat(&c, 1);
    goim_close(&c);
    env_stop(&e);
}

Test(gateway, job_link_bad_frames)
{
    env e;
    env_start(&e, default_opts());
    goim_conn good = job_link(&e);
    /* A length over the push protocol's bound. */
    goim_conn j1 = job_connect(&e);
    const uint8_t huge[4] = { 0x7f, 0xff, 0xff, 0xff };
    cr_assert_eq(goim_write_raw(&j1, huge, 4), MG_OK);
    expect_closed(&j1);
    goim_close(&j1);
    /* Bytes that are not a ChatFrame. */
    goim_conn j2 = job_connect(&e);
    const uint8_t junk[9] = { 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff };
    cr_assert_eq(goim_write_raw(&j2, junk, sizeof(junk)), MG_OK);
    expect_closed(&j2);
    goim_close(&j2);
    /* A frame a Job does not send (an ack). */
    goim_conn j3 = job_connect(&e);
    Magnetar__Chat__ChatPushAck ack = MAGNETAR__CHAT__CHAT_PUSH_ACK__INIT;
    ack.push_id = 1;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK;
    f.ack = &ack;
    job_send(&j3, &f);
    expect_closed(&j3);
    goim_close(&j3);
    /* The good link was not touched. */
    goim_conn c = goim_in_room(&e, "after-bad-links", "live://23000");
    const char *msg[1] = { "fine" };
    push_room(&good, 1, "live://23000", msg, 1, 1, 1);
    expect_room_batch(&c, msg, 1);
    goim_close(&c);
    goim_close(&good);
    env_stop(&e);
}

/* push.h: a ChatFrame with no field set (length 0) is valid and means nothing, which is also
 * how a frame kind of a newer Job unpacks here: the link must go on. */
Test(gateway, job_link_empty_frame_means_nothing)
{
    env e;
    env_start(&e, default_opts());
    goim_conn j = job_link(&e);
    goim_conn c = goim_in_room(&e, "after-empty", "live://23001");
    cr_assert_eq(goim_write_raw(&j, "\0\0\0\0", 4), MG_OK);
    /* A field number this side does not know (99): unpacks as an empty ChatFrame too. */
    const uint8_t unknown[7] = { 0, 0, 0, 3, 0x98, 0x06, 0x01 }; /* field 99, varint 1 */
    cr_assert_eq(goim_write_raw(&j, unknown, sizeof(unknown)), MG_OK);
    const char *msg[1] = { "after-empty" };
    push_room(&j, 1, "live://23001", msg, 1, 1, 1);
    expect_room_batch(&c, msg, 1);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

#define MANY_ROOMS 1200

/* Past the first sizes of the room table and of the key buckets: every room in the reset, room
 * and key pushes reaching exactly their connections. */
Test(gateway, many_rooms_and_keys, .timeout = 120)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 2 * MANY_ROOMS + 200)
        cr_skip_test("RLIMIT_NOFILE hard limit %llu is too low for %d connections",
                     (unsigned long long)rl.rlim_max, MANY_ROOMS);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    env e;
    cg_gateway_opts o = default_opts();
    o.buckets = 4;
    env_start(&e, o);
    goim_conn *c = calloc(MANY_ROOMS, sizeof(*c));
    cr_assert_not_null(c);
    for (int i = 0; i < MANY_ROOMS; i++) {
        char auth[160];
        snprintf(auth, sizeof(auth),
                 "{\"mid\":%d,\"key\":\"mk-%d\",\"room_id\":\"live://r%d\",\"accepts\":[1000]}", i,
                 i, i);
        cr_assert_eq(goim_connect_tcp(&c[i], e.tcp, WAIT_MS, 0), MG_OK);
        expect_auth_ok(&c[i], auth);
    }
    goim_conn j = job_connect(&e);
    Magnetar__Chat__ChatFrame *f = job_hello(&j);
    cr_assert_eq(f->rooms->n_joined, MANY_ROOMS);
    for (int i = 0; i < MANY_ROOMS; i += 97) {
        char room[32];
        snprintf(room, sizeof(room), "live://r%d", i);
        cr_assert(rooms_has(f->rooms->joined, f->rooms->n_joined, room), "%s not in the reset",
                  room);
    }
    magnetar__chat__chat_frame__free_unpacked(f, NULL);
    for (int i = 0; i < MANY_ROOMS; i += 101) {
        char room[32], body[32];
        snprintf(room, sizeof(room), "live://r%d", i);
        snprintf(body, sizeof(body), "room-%d", i);
        const char *bodies[1] = { body };
        push_room(&j, (uint64_t)i + 1, room, bodies, 1, -1, 0);
        expect_room_batch(&c[i], bodies, 1);
        char key[32];
        snprintf(key, sizeof(key), "mk-%d", i);
        snprintf(body, sizeof(body), "key-%d", i);
        const char *keys[1] = { key };
        push_one(&j, 100000 + (uint64_t)i, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS, keys, 1,
                 NULL, 0, 1000, body);
        expect_body((goim_packet[]){ expect_packet(&c[i], 1000, 1) }, body);
    }
    /* Everyone else got nothing: an all push is the first thing each reads. */
    push_one(&j, 1, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL, NULL, 0, NULL, 0, 1000, "all");
    for (int i = 0; i < MANY_ROOMS; i++)
        expect_body((goim_packet[]){ expect_packet(&c[i], 1000, 1) }, "all");
    for (int i = 0; i < MANY_ROOMS; i++)
        goim_close(&c[i]);
    free(c);
    env_wait_conns(&e, 0);
    goim_close(&j);
    env_stop(&e);
}

Test(gateway, websocket_handshake_in_pieces)
{
    env e;
    env_start(&e, default_opts());
    goim_conn w;
    cr_assert_eq(goim_connect_tcp(&w, e.ws, WAIT_MS, 0), MG_OK);
    const char *req = "GET /sub HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n";
    size_t rl = strlen(req);
    for (size_t i = 0; i < rl; i += 7) {
        cr_assert_eq(goim_write_raw(&w, req + i, rl - i < 7 ? rl - i : 7), MG_OK);
        usleep(1000);
    }
    uint8_t buf[512];
    size_t n = 0;
    for (; n < sizeof(buf) - 1; n++) {
        cr_assert_eq(goim_read_exact(&w, buf + n, 1), MG_OK);
        if (n >= 3 && memcmp(buf + n - 3, "\r\n\r\n", 4) == 0)
            break;
    }
    buf[n + 1] = '\0';
    cr_assert(strncmp((char *)buf, "HTTP/1.1 101", 12) == 0, "response: %s", buf);
    w.ws = true;
    expect_auth_ok(&w, "{\"mid\":1,\"key\":\"pieces\",\"room_id\":\"live://24000\"}");
    expect_heartbeat(&w, 1);
    goim_close(&w);
    env_stop(&e);
}

/* A last_id with no broker to replay from: told recovered false, then live with positions. */
Test(gateway, last_id_without_resume)
{
    env e;
    env_start(&e, default_opts());
    goim_conn c;
    cr_assert_eq(goim_connect_tcp(&c, e.tcp, WAIT_MS, 0), MG_OK);
    goim_packet r;
    cr_assert_eq(
        goim_auth(
            &c,
            "{\"mid\":1,\"key\":\"resumer\",\"room_id\":\"live://25000\",\"last_id\":\"3:4:-1\"}",
            &r),
        MG_OK);
    expect_body(&r, "{\"code\":0,\"recovered\":false}");
    goim_conn j = job_link(&e);
    const char *msg[1] = { "live" };
    push_room(&j, 1, "live://25000", msg, 1, 3, 5);
    goim_packet p = expect_packet(&c, 9, 1);
    goim_packet inner[4];
    size_t k = 0;
    cr_assert_eq(goim_split(p.body, p.body_len, inner, 4, &k), MG_OK);
    cr_assert_eq(k, 2);
    cr_assert_eq(inner[0].op, 20);
    expect_body(&inner[0], "3:5");
    expect_body(&inner[1], "live");
    expect_heartbeat(&c, 1);
    goim_close(&c);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 9. idle timeout ---------------------------------------------------------------------- */

Test(gateway, idle_timeout)
{
    env e;
    cg_gateway_opts o = default_opts();
    o.idle_timeout_ms = 1500;
    env_start(&e, o);
    goim_conn silent = goim_in_room(&e, "silent", "live://9000");
    goim_conn beating = goim_in_room(&e, "beating", "live://9000");
    /* Heartbeats every 300 ms for 3.6 s: twice the timeout and its sweep. */
    for (int i = 0; i < 12; i++) {
        usleep(300 * 1000);
        cr_assert_eq(goim_send(&beating, 1, 2, 9, NULL, 0), MG_OK);
        goim_packet p = expect_packet(&beating, 3, 1);
        cr_assert_eq(p.body_len, 4);
    }
    silent.timeout_ms = 100;
    cr_assert_eq(goim_wait_closed(&silent, NULL, 0, NULL), MG_ECLOSED,
                 "a connection silent past idle_timeout_ms is still open");
    expect_heartbeat(&beating, 1);
    wait_closed_count(&e, "idle", 1);
    goim_close(&silent);
    goim_close(&beating);
    env_stop(&e);
}

/* ---- 10. slow consumer -------------------------------------------------------------------- */

#define SLOW_PUSHES     120
#define SLOW_MSGS       4
#define SLOW_BODY_BYTES (16 * 1024)
#define SLOW_HEARTBEATS 400

Test(gateway, slow_consumer_soft_then_hard)
{
    env e;
    cg_gateway_opts o = default_opts();
    o.queue_soft_bytes = 128 * 1024;
    o.queue_hard_bytes = 512 * 1024;
    env_start(&e, o);
    goim_conn slow;
    cr_assert_eq(goim_connect_tcp(&slow, e.tcp, WAIT_MS, 4096), MG_OK);
    expect_auth_ok(&slow, "{\"mid\":1,\"key\":\"slow\",\"room_id\":\"live://10000\"}");
    goim_conn reader = goim_in_room(&e, "reader", "live://10000");
    goim_conn j = job_link(&e);

    /* Many large pushes: the slow client's queue overflows its soft limit; the reader, which
     * reads each push before the next, gets every message. */
    for (int p = 0; p < SLOW_PUSHES; p++) {
        push_spec s = { .kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM,
                        .room = "live://10000",
                        .n = SLOW_MSGS };
        char bodies[SLOW_MSGS][SLOW_BODY_BYTES + 1];
        for (int m = 0; m < SLOW_MSGS; m++) {
            int n = snprintf(bodies[m], sizeof(bodies[m]), "%d.%d:", p, m);
            memset(bodies[m] + n, 'a' + m, SLOW_BODY_BYTES - (size_t)n);
            bodies[m][SLOW_BODY_BYTES] = '\0';
            s.bodies[m] = bodies[m];
            s.ledger[m] = 1;
            s.entry[m] = p * SLOW_MSGS + m;
            s.batch[m] = -1;
        }
        job_push(&j, (uint64_t)p + 1, &s);
        const char *want[SLOW_MSGS];
        for (int m = 0; m < SLOW_MSGS; m++)
            want[m] = bodies[m];
        expect_room_batch(&reader, want, SLOW_MSGS);
    }
    cr_assert_gt(metric(&e, "magnetar_chat_gateway_dropped_total"), 0,
                 "no chat frame was dropped for the client that never reads");
    /* Only chat frames were queued for it: still open. */
    cr_assert_eq(closed_count(&e, "slow_consumer"), 0);
    cr_assert_eq(env_conn_count(&e), 2);

    /* Replies are never dropped: heartbeats it does not read fill its queue to the hard limit. */
    int sent = 0;
    for (; sent < SLOW_HEARTBEATS; sent++)
        if (goim_send(&slow, 1, 2, (uint32_t)sent, NULL, 0) != MG_OK)
            break;
    cr_assert_gt(sent, 16);
    expect_closed(&slow);
    wait_closed_count(&e, "slow_consumer", 1);
    /* The reader is not affected. */
    const char *after[1] = { "after" };
    push_room(&j, 1000, "live://10000", after, 1, 2, 0);
    expect_room_batch(&reader, after, 1);
    expect_heartbeat(&reader, 1);
    goim_close(&slow);
    goim_close(&reader);
    goim_close(&j);
    env_stop(&e);
}

/* ---- 11. a key reused --------------------------------------------------------------------- */

Test(gateway, key_reused_replaces)
{
    env e;
    env_start(&e, default_opts());
    goim_conn first = goim_in_room(&e, "dup", "live://11000");
    goim_conn second = goim_in_room(&e, "dup", "live://11001");
    expect_closed(&first);
    wait_closed_count(&e, "replaced", 1);
    expect_heartbeat(&second, 1);
    goim_conn j = job_link(&e);
    const char *key[1] = { "dup" };
    push_one(&j, 1, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS, key, 1, NULL, 0, 1000, "k");
    expect_body((goim_packet[]){ expect_packet(&second, 1000, 1) }, "k");
    goim_close(&first);
    goim_close(&second);
    goim_close(&j);
    env_wait_conns(&e, 0);
    env_stop(&e);
}

/* ---- 12. many connections ----------------------------------------------------------------- */

Test(gateway, two_thousand_in_one_room, .timeout = 120)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < MANY_NOFILE)
        cr_skip_test("RLIMIT_NOFILE hard limit %llu is below %d: 2,000 connections need both "
                     "ends in this process",
                     (unsigned long long)rl.rlim_max, MANY_NOFILE);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    env e;
    env_start(&e, default_opts());
    goim_conn *c = calloc(MANY_CONNS, sizeof(*c));
    cr_assert_not_null(c);
    for (int i = 0; i < MANY_CONNS; i++) {
        char auth[128];
        snprintf(auth, sizeof(auth),
                 "{\"mid\":%d,\"key\":\"many-%d\",\"room_id\":\"live://12000\"}", i, i);
        cr_assert_eq(goim_connect_tcp(&c[i], e.tcp, WAIT_MS, 0), MG_OK, "connection %d", i);
        expect_auth_ok(&c[i], auth);
    }
    env_wait_conns(&e, MANY_CONNS);
    expect_heartbeat(&c[0], MANY_CONNS);
    goim_conn j = job_link(&e);
    const char *msg[1] = { "to-everyone" };
    push_room(&j, 1, "live://12000", msg, 1, 1, 0);
    for (int i = 0; i < MANY_CONNS; i++)
        expect_room_batch(&c[i], msg, 1);
    cr_assert_eq(metric(&e, "magnetar_chat_gateway_delivered_total"), MANY_CONNS);
    for (int i = 0; i < MANY_CONNS; i++)
        goim_close(&c[i]);
    free(c);
    env_wait_conns(&e, 0);
    goim_close(&j);
    env_stop(&e);
}
