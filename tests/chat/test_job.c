/*
 * The chat Job worker (src/chat_gateway/job.c) against a real broker and a real push-protocol
 * peer. Every test starts `magnetar standalone` (MG_BIN) for the chat topics; the standalone's
 * metadata store is in-process, so the Job gets its own store (RocksDB in a fresh directory)
 * where the test registers a gateway, /chat/gateways/gw-1, pointing to a small push-protocol
 * server the test runs on its loop (127.0.0.1): it answers Hello with Rooms (reset, the rooms
 * the test gives it), records every push, answers Ping with Pong, and acknowledges pushes
 * unless told to withhold them. Chat messages are produced with the C client, to the topic
 * cg_chat_topic_index chooses, with the chat.* properties.
 *
 * Cases: room merging (20 messages stored before the Job starts make one push; a lone message
 * waits for the merge delay); room pushes only to a gateway whose room set holds the room (a
 * Rooms diff then opens it); keys, mids and all messages pushed one by one, unmerged;
 * positions increasing; malformed messages counted and acknowledged; messages acknowledged
 * only after PushAck (withheld acks, then a new Job gets them again and a third gets nothing);
 * a gateway's registration removed releases its pending pushes, which are then acknowledged; a
 * link dropped by the gateway is reconnected and its unanswered pushes resent first, in order;
 * an idle link is pinged and stays up.
 * Every wait runs the loop with a deadline.
 */
#include "chat_gateway/job.h"
#include "chat_gateway/push.h"
#include "chat_gateway/topics.h"
#include "client/client.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/metrics.h"
#include "metadata/metadata.h"
#include "support/client_sync.h"
#include "support/loop_wait.h"
#include "support/sa_harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define WAIT_MS    15000 /* an answer, a push */
#define QUIET_MS   700   /* "nothing more arrives" is checked over this long */
#define TOPICS     4
#define PUSHES_MAX 256
#define MSGS_MAX   32 /* messages recorded per push */
#define ROOMS_MAX  8
#define CONNS_MAX  8

/* ---- the push-protocol peer ------------------------------------------------------------------ */

typedef struct rec_msg {
    char body[64];
    uint32_t op;
    int64_t ledger_id, entry_id;
    int32_t batch_index;
    int64_t publish_time_ms;
} rec_msg;

typedef struct rec_push {
    uint64_t push_id;
    int kind;
    char room[64];
    char keys[4][32];
    size_t key_count;
    int64_t mids[4];
    size_t mid_count;
    char topic[64];
    rec_msg msgs[MSGS_MAX];
    size_t msg_count;
    int64_t at_ms; /* when it arrived (monotonic) */
} rec_push;

typedef struct srv_conn {
    uv_tcp_t tcp;
    cg_push_decoder dec;
    uint8_t rbuf[64 * 1024];
    bool open;
    struct srv *s;
} srv_conn;

typedef struct srv {
    uv_tcp_t listener;
    uint16_t port;
    bool ack;                  /* acknowledge pushes */
    char rooms[ROOMS_MAX][64]; /* sent in the Rooms reset */
    size_t room_count;
    srv_conn *conns[CONNS_MAX];
    size_t conn_count;
    size_t hello_count;
    size_t pong_count;
    size_t ping_count; /* Pings from the Job (answered with Pong) */
    rec_push pushes[PUSHES_MAX];
    size_t push_count;
    size_t pushed_msgs; /* messages in pushes[0, push_count) */
} srv;

static srv g_srv;
static uv_loop_t g_loop;

typedef struct srv_write {
    uv_write_t req;
    mg_buf *b;
} srv_write;

static void srv_written(uv_write_t *req, int status)
{
    srv_write *w = (srv_write *)req;
    mg_buf_unref(w->b);
    free(w);
}

static void srv_send(srv_conn *c, const Magnetar__Chat__ChatFrame *f)
{
    if (!c->open)
        return;
    srv_write *w = calloc(1, sizeof(*w));
    cr_assert_not_null(w);
    cr_assert_eq(cg_push_frame_encode(f, &w->b), MG_OK);
    uv_buf_t buf = uv_buf_init((char *)mg_buf_data(w->b), (unsigned)mg_buf_len(w->b));
    cr_assert_eq(uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, srv_written), 0);
}

static void srv_send_rooms(srv_conn *c, bool reset, const char *joined)
{
    char *rooms[ROOMS_MAX];
    Magnetar__Chat__ChatRooms r = MAGNETAR__CHAT__CHAT_ROOMS__INIT;
    r.has_reset = 1;
    r.reset = reset;
    if (reset) {
        for (size_t i = 0; i < g_srv.room_count; i++)
            rooms[i] = g_srv.rooms[i];
        r.n_joined = g_srv.room_count;
    } else {
        rooms[0] = (char *)joined;
        r.n_joined = 1;
    }
    r.joined = rooms;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS;
    f.rooms = &r;
    srv_send(c, &f);
}

static void srv_send_ack(srv_conn *c, uint64_t push_id)
{
    Magnetar__Chat__ChatPushAck a = MAGNETAR__CHAT__CHAT_PUSH_ACK__INIT;
    a.push_id = push_id;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK;
    f.ack = &a;
    srv_send(c, &f);
}

static void srv_send_ping(srv_conn *c, uint64_t nonce)
{
    Magnetar__Chat__ChatPing p = MAGNETAR__CHAT__CHAT_PING__INIT;
    p.has_nonce = 1;
    p.nonce = nonce;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PING;
    f.ping = &p;
    srv_send(c, &f);
}

static void srv_record(const Magnetar__Chat__ChatPush *p)
{
    cr_assert_lt(g_srv.push_count, PUSHES_MAX);
    rec_push *r = &g_srv.pushes[g_srv.push_count++];
    memset(r, 0, sizeof(*r));
    r->push_id = p->push_id;
    r->kind = p->kind;
    snprintf(r->room, sizeof(r->room), "%s", p->room != NULL ? p->room : "");
    snprintf(r->topic, sizeof(r->topic), "%s", p->topic);
    r->key_count = p->n_keys;
    for (size_t i = 0; i < p->n_keys && i < 4; i++)
        snprintf(r->keys[i], sizeof(r->keys[i]), "%s", p->keys[i]);
    r->mid_count = p->n_mids;
    for (size_t i = 0; i < p->n_mids && i < 4; i++)
        r->mids[i] = p->mids[i];
    cr_assert_leq(p->n_messages, MSGS_MAX);
    r->msg_count = p->n_messages;
    for (size_t i = 0; i < p->n_messages; i++) {
        const Magnetar__Chat__ChatMessage *m = p->messages[i];
        rec_msg *rm = &r->msgs[i];
        size_t n = m->body.len < sizeof(rm->body) - 1 ? m->body.len : sizeof(rm->body) - 1;
        if (n > 0)
            memcpy(rm->body, m->body.data, n);
        rm->op = m->op;
        cr_assert_not_null(m->position);
        rm->ledger_id = m->position->ledger_id;
        rm->entry_id = m->position->entry_id;
        rm->batch_index = m->position->batch_index;
        rm->publish_time_ms = m->publish_time_ms;
    }
    r->at_ms = sah_now_ms();
    g_srv.pushed_msgs += p->n_messages;
}

static void srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    srv_conn *c = h->data;
    *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void srv_conn_closed(uv_handle_t *h)
{
    srv_conn *c = h->data;
    cg_push_decoder_free(&c->dec);
    free(c);
}

static void srv_conn_close(srv_conn *c)
{
    if (!c->open)
        return;
    c->open = false;
    for (size_t i = 0; i < c->s->conn_count; i++)
        if (c->s->conns[i] == c)
            c->s->conns[i] = NULL;
    uv_close((uv_handle_t *)&c->tcp, srv_conn_closed);
}

static void srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    srv_conn *c = st->data;
    if (nread < 0) {
        srv_conn_close(c);
        return;
    }
    cg_push_decoder_feed(&c->dec, (const uint8_t *)buf->base, (size_t)nread);
    for (int guard = 0; guard < 100000; guard++) {
        Magnetar__Chat__ChatFrame *f = NULL;
        int rc = cg_push_decoder_next(&c->dec, &f);
        if (rc == MG_EAGAIN)
            return;
        cr_assert_eq(rc, MG_OK, "the Job sent a bad frame: %s", mg_strerror(rc));
        switch (f->kind_case) {
        case MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO:
            g_srv.hello_count++;
            srv_send_rooms(c, true, NULL);
            break;
        case MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH:
            srv_record(f->push);
            if (g_srv.ack)
                srv_send_ack(c, f->push->push_id);
            break;
        case MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG:
            g_srv.pong_count++;
            break;
        case MAGNETAR__CHAT__CHAT_FRAME__KIND_PING: {
            g_srv.ping_count++;
            Magnetar__Chat__ChatFrame pong = MAGNETAR__CHAT__CHAT_FRAME__INIT;
            pong.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG;
            pong.pong = f->ping;
            srv_send(c, &pong);
            break;
        }
        default:
            break;
        }
        magnetar__chat__chat_frame__free_unpacked(f, NULL);
    }
}

static void srv_accept(uv_stream_t *l, int status)
{
    cr_assert_eq(status, 0);
    srv_conn *c = calloc(1, sizeof(*c));
    cr_assert_not_null(c);
    c->s = &g_srv;
    cg_push_decoder_init(&c->dec);
    cr_assert_eq(uv_tcp_init(&g_loop, &c->tcp), 0);
    c->tcp.data = c;
    c->open = true;
    cr_assert_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    cr_assert_eq(uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read), 0);
    cr_assert_lt(g_srv.conn_count, CONNS_MAX);
    g_srv.conns[g_srv.conn_count++] = c;
}

static void srv_start(bool ack, const char *room)
{
    memset(&g_srv, 0, sizeof(g_srv));
    g_srv.ack = ack;
    if (room != NULL)
        snprintf(g_srv.rooms[g_srv.room_count++], sizeof(g_srv.rooms[0]), "%s", room);
    cr_assert_eq(uv_tcp_init(&g_loop, &g_srv.listener), 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    cr_assert_eq(uv_tcp_bind(&g_srv.listener, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&g_srv.listener, 16, srv_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    cr_assert_eq(uv_tcp_getsockname(&g_srv.listener, (struct sockaddr *)&ss, &len), 0);
    g_srv.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static srv_conn *srv_conn_live(void)
{
    for (size_t i = 0; i < g_srv.conn_count; i++)
        if (g_srv.conns[i] != NULL && g_srv.conns[i]->open)
            return g_srv.conns[i];
    return NULL;
}

static void srv_stop(void)
{
    for (size_t i = 0; i < g_srv.conn_count; i++)
        if (g_srv.conns[i] != NULL)
            srv_conn_close(g_srv.conns[i]);
    uv_close((uv_handle_t *)&g_srv.listener, NULL);
}

/* ---- the environment: standalone, metadata store, clients --------------------------------- */

static sah_standalone g_sa;
static bool g_passed;
static char g_md_dir[128];
static md_store *g_store;
static md_client *g_md;
static pc_client *g_client;
static char g_url[64];

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    mg_log_set_level(MG_LOG_WARN);
    g_passed = false;
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    snprintf(g_url, sizeof(g_url), "pulsar://127.0.0.1:%u", g_sa.broker_port);
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    snprintf(g_md_dir, sizeof(g_md_dir), "/tmp/mg-test-job-XXXXXX");
    cr_assert_not_null(mkdtemp(g_md_dir));
    char url[200];
    snprintf(url, sizeof(url), "rocksdb:%s/md", g_md_dir);
    cr_assert_eq(md_store_open(url, NULL, &g_store), MG_OK);
    cr_assert_eq(md_client_create(g_store, &g_loop, &g_md), MG_OK);
    g_client = cs_client_open(&g_loop, g_sa.broker_port, WAIT_MS);
}

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
    if (g_md_dir[0] != '\0') {
        char cmd[200];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_md_dir);
        (void)!system(cmd);
    }
}

static void md_done(int status, void *arg)
{
    *(int *)arg = status;
}

static void md_created(int status, const char *path, void *arg)
{
    *(int *)arg = status;
}

/* Registers gateway id with the push server's address, as a gateway does. */
static void gateway_register(const char *id)
{
    char path[128], value[256];
    snprintf(path, sizeof(path), "/chat/gateways/%s", id);
    snprintf(value, sizeof(value),
             "{\"id\":\"%s\",\"push\":\"127.0.0.1:%u\",\"tcp\":\"127.0.0.1:3101\","
             "\"ws\":\"127.0.0.1:3102\"}",
             id, g_srv.port);
    int st = 1;
    cr_assert_eq(md_create(g_md, path, value, strlen(value), MD_EPHEMERAL | MD_CREATE_PARENTS,
                           md_created, &st),
                 MG_OK);
    cr_assert(mgt_run_until(&g_loop, cs_status_known, &st, WAIT_MS));
    cr_assert_eq(st, MG_OK, "register: %s", mg_strerror(st));
}

static void gateway_unregister(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/chat/gateways/%s", id);
    int st = 1;
    cr_assert_eq(md_delete(g_md, path, MD_VERSION_ANY, md_done, &st), MG_OK);
    cr_assert(mgt_run_until(&g_loop, cs_status_known, &st, WAIT_MS));
    cr_assert_eq(st, MG_OK);
}

/* The clean end: Job-free, everything closed, nothing left on the loop, the broker stopped. */
static void finish(void)
{
    srv_stop();
    cs_client_close(&g_loop, g_client, WAIT_MS);
    bool closed = false;
    md_client_close(g_md, cs_flag_cb, &closed);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS));
    md_store_close(g_store);
    mgt_run_for(&g_loop, 10);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    int status = 0;
    cr_assert_eq(sah_stop(&g_sa, &status), MG_OK);
    g_passed = true;
}

TestSuite(job, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* ---- the Job ------------------------------------------------------------------------------- */

static cg_job *job_open(uint32_t merge_max_messages, uint32_t merge_max_ms, mg_metrics *reg)
{
    cg_job_opts o = {
        .service_url = g_url,
        .md = g_md,
        .topics = TOPICS,
        .merge_max_messages = merge_max_messages,
        .merge_max_ms = merge_max_ms,
        .name = "job-test",
        .metrics = reg,
    };
    cg_job *j = NULL;
    cr_assert_eq(cg_job_create(&g_loop, &o, &j), MG_OK);
    cr_assert_eq(cg_job_start(j), MG_OK);
    cr_assert_eq(cg_job_start(j), MG_ESTATE);
    return j;
}

static void job_close(cg_job *j)
{
    bool closed = false;
    cg_job_close(j, cs_flag_cb, &closed);
    cr_assert(!closed, "closed inside the call");
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS), "Job not closed");
}

typedef struct stat_wait {
    cg_job *j;
    uint64_t acked;
    uint32_t links;
} stat_wait;

static bool acked_reached(void *arg)
{
    stat_wait *w = arg;
    cg_job_stats s;
    cg_job_stats_get(w->j, &s);
    return s.acked_count >= w->acked;
}

static bool links_reached(void *arg)
{
    stat_wait *w = arg;
    cg_job_stats s;
    cg_job_stats_get(w->j, &s);
    return s.links_up >= w->links;
}

static void wait_link(cg_job *j)
{
    stat_wait w = { .j = j, .links = 1 };
    cr_assert(mgt_run_until(&g_loop, links_reached, &w, WAIT_MS), "gateway link not ready");
}

static void wait_acked(cg_job *j, uint64_t n)
{
    stat_wait w = { .j = j, .acked = n };
    cg_job_stats s;
    bool ok = mgt_run_until(&g_loop, acked_reached, &w, WAIT_MS);
    cg_job_stats_get(j, &s);
    cr_assert(ok, "acked %llu of %llu", (unsigned long long)s.acked_count, (unsigned long long)n);
}

static bool pushed_msgs_reached(void *arg)
{
    return g_srv.pushed_msgs >= *(size_t *)arg;
}

static bool pong_seen(void *arg)
{
    return g_srv.pong_count > 0;
}

static void wait_pushed_msgs(size_t n)
{
    cr_assert(mgt_run_until(&g_loop, pushed_msgs_reached, &n, WAIT_MS),
              "%zu of %zu messages pushed", g_srv.pushed_msgs, n);
}

static bool malformed_4(void *arg)
{
    cg_job_stats s;
    cg_job_stats_get(arg, &s);
    return s.malformed_count >= 4;
}

/* ---- producing chat messages ---------------------------------------------------------------- */

static pc_producer *g_producers[TOPICS];

static pc_producer *producer_for(uint32_t index)
{
    if (g_producers[index] == NULL) {
        char topic[CG_CHAT_TOPIC_NAME_BYTES_MAX];
        cr_assert_eq(cg_chat_topic_name(index, topic, sizeof(topic)), MG_OK);
        pc_producer_opts o = { .topic = topic };
        g_producers[index] = cs_producer_open(&g_loop, g_client, &o, WAIT_MS);
    }
    return g_producers[index];
}

static void producers_close(void)
{
    for (uint32_t i = 0; i < TOPICS; i++) {
        if (g_producers[i] != NULL)
            cs_producer_close(&g_loop, g_producers[i], WAIT_MS);
        g_producers[i] = NULL;
    }
}

static void send_done(int status, const pc_message_id *id, void *arg)
{
    *(int *)arg = status;
}

/* Produces body with the given chat properties (name/value pairs, NULL-terminated) to the
 * topic that routing hashes to, and waits until it is stored. */
static void produce(const char *routing, const char *body, const char *key,
                    const char *const *props)
{
    pc_property p[8];
    size_t n = 0;
    for (; props[2 * n] != NULL; n++)
        p[n] = (pc_property){ props[2 * n], props[2 * n + 1] };
    uint32_t index = routing != NULL ? cg_chat_topic_index(routing, TOPICS) : 0;
    pc_message m = { .payload = body,
                     .payload_len = strlen(body),
                     .key = key,
                     .properties = p,
                     .property_count = n };
    int st = 1;
    cr_assert_eq(pc_send(producer_for(index), &m, send_done, &st), MG_OK);
    cr_assert(mgt_run_until(&g_loop, cs_status_known, &st, WAIT_MS), "send not done");
    cr_assert_eq(st, MG_OK, "send: %s", mg_strerror(st));
}

static void produce_room(const char *room, const char *body)
{
    const char *props[] = { "chat.kind", "room", "chat.room", room, NULL };
    produce(room, body, room, props);
}

static int pos_cmp(const rec_msg *a, const rec_msg *b)
{
    if (a->ledger_id != b->ledger_id)
        return a->ledger_id < b->ledger_id ? -1 : 1;
    if (a->entry_id != b->entry_id)
        return a->entry_id < b->entry_id ? -1 : 1;
    return a->batch_index < b->batch_index ? -1 : a->batch_index > b->batch_index;
}

/* ---- the tests ------------------------------------------------------------------------------ */

Test(job, room_messages_merged)
{
    const char *room = "live://1000";
    srv_start(true, room);
    gateway_register("gw-1");
    /* 20 messages stored before the Job starts: read in one burst, pushed as one. */
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof(body), "m%02d", i);
        produce_room(room, body);
    }
    mg_metrics *reg = NULL;
    cr_assert_eq(mg_metrics_create(&reg), MG_OK);
    cg_job *j = job_open(20, 5000, reg);
    wait_pushed_msgs(20);
    cr_assert_eq(g_srv.push_count, 1, "20 messages in %zu pushes", g_srv.push_count);
    rec_push *p = &g_srv.pushes[0];
    cr_assert_eq(p->kind, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM);
    cr_assert_str_eq(p->room, room);
    char topic[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    cg_chat_topic_name(cg_chat_topic_index(room, TOPICS), topic, sizeof(topic));
    cr_assert_str_eq(p->topic, topic);
    for (size_t i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof(body), "m%02zu", i);
        cr_assert_str_eq(p->msgs[i].body, body, "order");
        cr_assert_eq(p->msgs[i].op, 5);
        cr_assert_gt(p->msgs[i].publish_time_ms, 0);
        if (i > 0)
            cr_assert_lt(pos_cmp(&p->msgs[i - 1], &p->msgs[i]), 0, "positions increase");
    }
    wait_acked(j, 20);
    job_close(j);

    /* A lone message waits for its batch's delay (at least merge_max_ms after it was sent). */
    j = job_open(20, 1000, NULL);
    wait_link(j);
    int64_t t0 = sah_now_ms();
    const char *props[] = { "chat.kind", "room", "chat.room", room, "chat.op", "1000", NULL };
    produce(room, "lone", room, props);
    wait_pushed_msgs(21);
    cr_assert_eq(g_srv.push_count, 2);
    p = &g_srv.pushes[1];
    cr_assert_eq(p->msg_count, 1);
    cr_assert_str_eq(p->msgs[0].body, "lone");
    cr_assert_eq(p->msgs[0].op, 1000);
    cr_assert_geq(p->at_ms - t0, 1000 - 20, "pushed after %lld ms", (long long)(p->at_ms - t0));
    cr_assert_gt(pos_cmp(&p->msgs[0], &g_srv.pushes[0].msgs[19]), 0);
    wait_acked(j, 1);
    job_close(j);

    char *text = NULL;
    cr_assert_eq(mg_metrics_render(reg, &text, NULL), MG_OK);
    cr_assert_not_null(strstr(text, "magnetar_chat_job_messages_received_total 20\n"), "%s", text);
    cr_assert_not_null(strstr(text, "magnetar_chat_job_messages_acked_total 20\n"));
    cr_assert_not_null(strstr(text, "magnetar_chat_job_pushes_inflight 0\n"));
    cr_assert_not_null(strstr(text, "magnetar_chat_job_push_rtt_ms_count 1\n"));
    free(text);
    mg_metrics_destroy(reg);
    producers_close();
    finish();
}

Test(job, room_pushes_follow_the_rooms_set)
{
    const char *room = "live://2000";
    srv_start(true, NULL); /* the gateway holds no room yet */
    gateway_register("gw-1");
    cg_job *j = job_open(1, 50, NULL);
    wait_link(j);
    produce_room(room, "nobody-here");
    wait_acked(j, 1); /* no gateway holds the room: acknowledged unpushed */
    cr_assert_eq(g_srv.push_count, 0);

    /* A member joins on the gateway: the diff, then a Ping whose Pong shows it was read. */
    srv_conn *c = srv_conn_live();
    cr_assert_not_null(c);
    srv_send_rooms(c, false, room);
    srv_send_ping(c, 7);
    cr_assert(mgt_run_until(&g_loop, pong_seen, NULL, WAIT_MS), "no Pong");
    produce_room(room, "member-here");
    wait_pushed_msgs(1);
    cr_assert_str_eq(g_srv.pushes[0].msgs[0].body, "member-here");
    cr_assert_str_eq(g_srv.pushes[0].room, room);
    wait_acked(j, 2);
    cg_job_stats s;
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.received_count, 2);
    cr_assert_eq(s.pushed_count, 2, "both were put into pushes");
    job_close(j);
    producers_close();
    finish();
}

Test(job, keys_mids_all_unmerged_and_malformed)
{
    srv_start(true, NULL);
    gateway_register("gw-1");
    cg_job *j = job_open(20, 5000, NULL);
    wait_link(j);
    const char *k1[] = { "chat.kind", "keys", "chat.keys", "conn-a,conn-b", NULL };
    const char *k2[] = { "chat.kind", "keys", "chat.keys", "conn-a,conn-b", NULL };
    const char *m1[] = { "chat.kind", "mids", "chat.mids", "123,-4,900", NULL };
    const char *a1[] = { "chat.kind", "all", "chat.op", "5", NULL };
    produce("conn-a", "k1", NULL, k1);
    produce("conn-a", "k2", NULL, k2);
    produce("123", "m1", NULL, m1);
    produce(NULL, "a1", NULL, a1);
    wait_pushed_msgs(4);
    cr_assert_eq(g_srv.push_count, 4, "one push per message, not merged");
    /* Order holds within a topic; across topics it need not. */
    rec_push *by_body[4] = { 0 };
    const char *bodies[4] = { "k1", "k2", "m1", "a1" };
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(g_srv.pushes[i].msg_count, 1);
        for (size_t b = 0; b < 4; b++)
            if (strcmp(g_srv.pushes[i].msgs[0].body, bodies[b]) == 0)
                by_body[b] = &g_srv.pushes[i];
    }
    for (size_t b = 0; b < 4; b++)
        cr_assert_not_null(by_body[b], "%s not pushed", bodies[b]);
    cr_assert_eq(by_body[0]->kind, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS);
    cr_assert_eq(by_body[0]->key_count, 2);
    cr_assert_str_eq(by_body[0]->keys[1], "conn-b");
    cr_assert_lt(by_body[0]->push_id, by_body[1]->push_id);
    cr_assert_lt(pos_cmp(&by_body[0]->msgs[0], &by_body[1]->msgs[0]), 0);
    cr_assert_eq(by_body[2]->kind, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS);
    cr_assert_eq(by_body[2]->mid_count, 3);
    cr_assert_eq(by_body[2]->mids[1], -4);
    cr_assert_eq(by_body[3]->kind, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL);
    char topic0[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    cg_chat_topic_name(0, topic0, sizeof(topic0));
    cr_assert_str_eq(by_body[3]->topic, topic0);
    wait_acked(j, 4);

    /* Malformed: counted and acknowledged, never pushed. */
    const char *bad1[] = { "chat.kind", "everyone", NULL };
    const char *bad2[] = { "chat.kind", "room", NULL };
    const char *bad3[] = { "chat.kind", "mids", "chat.mids", "12,x", NULL };
    const char *bad4[] = { "chat.kind", "keys", "chat.keys", "a,,b", NULL };
    produce(NULL, "b1", NULL, bad1);
    produce(NULL, "b2", NULL, bad2);
    produce("12", "b3", NULL, bad3);
    produce("a", "b4", NULL, bad4);
    cr_assert(mgt_run_until(&g_loop, malformed_4, j, WAIT_MS), "malformed not counted");
    cg_job_stats s;
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.malformed_count, 4);
    cr_assert_eq(g_srv.push_count, 4);
    job_close(j);
    /* Acknowledged: a new Job gets none of them again. */
    j = job_open(20, 50, NULL);
    wait_link(j);
    mgt_run_for(&g_loop, QUIET_MS);
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.received_count, 0, "%llu redelivered", (unsigned long long)s.received_count);
    job_close(j);
    producers_close();
    finish();
}

Test(job, acked_only_after_push_ack)
{
    const char *room = "live://3000";
    srv_start(false, room); /* acks withheld */
    gateway_register("gw-1");
    cg_job *j = job_open(1, 50, NULL);
    wait_link(j);
    for (int i = 0; i < 5; i++) {
        char body[16];
        snprintf(body, sizeof(body), "w%d", i);
        produce_room(room, body);
    }
    wait_pushed_msgs(5);
    mgt_run_for(&g_loop, QUIET_MS);
    cg_job_stats s;
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.acked_count, 0, "acked without PushAck");
    cr_assert_eq(s.pushes_inflight, 5);
    cr_assert_eq(s.unacked_messages, 5);
    rec_msg first[5];
    for (size_t i = 0; i < 5; i++)
        first[i] = g_srv.pushes[i].msgs[0];
    job_close(j);

    /* A new Job: the unacknowledged messages come again, with the same positions, in order. */
    g_srv.ack = true;
    size_t before = g_srv.push_count;
    j = job_open(1, 50, NULL);
    wait_pushed_msgs(10);
    for (size_t i = 0; i < 5; i++) {
        rec_msg *m = &g_srv.pushes[before + i].msgs[0];
        cr_assert_str_eq(m->body, first[i].body);
        cr_assert_eq(pos_cmp(m, &first[i]), 0);
    }
    wait_acked(j, 5);
    job_close(j);

    /* Acknowledged now: a third Job gets nothing. */
    before = g_srv.push_count;
    j = job_open(1, 50, NULL);
    wait_link(j);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(g_srv.push_count, before);
    job_close(j);
    producers_close();
    finish();
}

Test(job, gateway_removed_releases_pushes)
{
    const char *room = "live://4000";
    srv_start(false, room);
    gateway_register("gw-1");
    cg_job *j = job_open(1, 50, NULL);
    wait_link(j);
    for (int i = 0; i < 3; i++)
        produce_room(room, "x");
    wait_pushed_msgs(3);
    cg_job_stats s;
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.acked_count, 0);
    gateway_unregister("gw-1");
    wait_acked(j, 3);
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.pushes_inflight, 0);
    cr_assert_eq(s.gateways, 0);
    cr_assert_eq(s.links_up, 0);
    job_close(j);
    producers_close();
    finish();
}

static bool hello_2(void *arg)
{
    return g_srv.hello_count >= 2;
}

Test(job, link_failure_resends_in_order)
{
    const char *room = "live://5000";
    srv_start(false, room);
    gateway_register("gw-1");
    cg_job *j = job_open(1, 50, NULL);
    wait_link(j);
    for (int i = 0; i < 3; i++) {
        char body[16];
        snprintf(body, sizeof(body), "r%d", i);
        produce_room(room, body);
    }
    wait_pushed_msgs(3);
    uint64_t ids[3];
    for (size_t i = 0; i < 3; i++)
        ids[i] = g_srv.pushes[i].push_id;
    /* The gateway drops the link unanswered; a message produced meanwhile waits behind. */
    srv_conn *c = srv_conn_live();
    cr_assert_not_null(c);
    srv_conn_close(c);
    g_srv.ack = true;
    produce_room(room, "r3");
    cr_assert(mgt_run_until(&g_loop, hello_2, NULL, WAIT_MS), "no reconnect");
    wait_pushed_msgs(7);
    wait_acked(j, 4);
    /* On the new link: the three unanswered pushes first, in order, then the new one. */
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(g_srv.pushes[3 + i].push_id, ids[i], "resent %zu", i);
        cr_assert_eq(pos_cmp(&g_srv.pushes[3 + i].msgs[0], &g_srv.pushes[i].msgs[0]), 0);
    }
    cr_assert_str_eq(g_srv.pushes[6].msgs[0].body, "r3");
    cr_assert_gt(g_srv.pushes[6].push_id, ids[2]);
    job_close(j);
    producers_close();
    finish();
}

static bool ping_seen(void *arg)
{
    return g_srv.ping_count > 0;
}

Test(job, idle_link_pinged)
{
    srv_start(true, NULL);
    gateway_register("gw-1");
    cg_job *j = job_open(20, 50, NULL);
    wait_link(j);
    /* Nothing comes from the gateway after its Rooms: the Job pings after CG_PUSH_PING_IDLE_MS,
     * and the Pong keeps the link up (one link, one Hello). */
    cr_assert(mgt_run_until(&g_loop, ping_seen, NULL, CG_PUSH_PING_IDLE_MS + 5000), "no Ping");
    mgt_run_for(&g_loop, 300);
    cg_job_stats s;
    cg_job_stats_get(j, &s);
    cr_assert_eq(s.links_up, 1);
    cr_assert_eq(g_srv.hello_count, 1);
    job_close(j);
    finish();
}
