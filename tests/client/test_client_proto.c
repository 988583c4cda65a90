/*
 * The C Pulsar client's protocol handling against a scripted fake broker: a small Pulsar
 * server on the test's own libuv loop (127.0.0.1, a free port) that records every frame the
 * client sends and answers as each test tells it, so that the cases a real broker does not
 * produce on demand can be checked frame by frame: lookup Redirect (authoritative, to another
 * broker), a redirect loop, lookup Failed with the broker's text; SEND_ERROR ChecksumError,
 * another SEND_ERROR (reconnect and resend in order), a receipt out of order, the broker's
 * CLOSE_PRODUCER (look up again, resend in order, same producer name); keep-alive (the client
 * answers PING, and drops a connection whose broker stays silent); on the consumer side the
 * initial FLOW and its replenishment, a MESSAGE with a bad checksum (not delivered,
 * REDELIVER asked), a 0x0e02 broker entry metadata prefix, a batch with an ack_set (acked
 * messages skipped), an LZ4 batch, batch-index acks grouped into one ACK with the exact set,
 * cumulative acks, nacks sent after their delay, and ACK request ids.
 * Every wait is bounded.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pulsar/wire.h"
#include "pulsar/compress.h"
#include "client/client.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "sends.h"
#include "support/sa_harness.h"

#define T(x)       MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x)     MAGNETAR__PULSAR__SERVER_ERROR__##x
#define WAIT_MS    5000
#define FRAMES_MAX 4096
#define CONNS_MAX  16

static uv_loop_t g_loop;
static pc_client *g_client;

/* ---- the fake broker ------------------------------------------------------------------------- */

typedef struct fbroker fbroker;

typedef struct fconn {
    uv_tcp_t tcp;
    fbroker *b;
    int index;
    bool open;
    uint8_t *buf;
    size_t len;
    size_t cap;
} fconn;

typedef struct frame_rec {
    int conn;
    int type;
    uint8_t *raw;
    size_t len;
} frame_rec;

typedef enum lookup_mode {
    LOOKUP_CONNECT = 0, /* Connect to this broker */
    LOOKUP_REDIRECT,    /* Redirect to redirect_port */
    LOOKUP_FAILED,      /* Failed, TopicNotFound, "no such topic" */
} lookup_mode;

struct fbroker {
    uv_tcp_t listener;
    unsigned port;
    bool listener_open;
    fconn *conns[CONNS_MAX];
    int nconns;
    frame_rec frames[FRAMES_MAX];
    int nframes;
    /* behaviour */
    lookup_mode lookup;
    unsigned redirect_port;
    bool silent;          /* answer nothing at all (PING included) */
    bool refuse_connect;  /* answer CONNECT with ERROR AuthenticationError */
    bool hold_receipts;   /* record SENDs without answering */
    int64_t checksum_seq; /* SEND_ERROR ChecksumError for this sequence id (-1: none) */
    int64_t error_seq;    /* SEND_ERROR PersistenceError for this one, once */
    int64_t receipt_skip; /* answer this SEND with the receipt of the next one, once */
    int64_t entry_next;
    uint64_t producer_id;
    uint64_t consumer_id;
    /* FLOW permits received */
    uint32_t permits;
};

static fbroker g_a, g_b;

static void fb_closed(uv_handle_t *h)
{
    (void)h;
}

static void fb_written(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void fb_write(fconn *fc, const void *p, size_t n)
{
    if (!fc->open)
        return;
    uv_write_t *w = malloc(sizeof(*w));
    void *copy = malloc(n);
    cr_assert(w != NULL && copy != NULL);
    memcpy(copy, p, n);
    w->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&fc->tcp, &b, 1, fb_written), 0);
}

static void fb_write_buf(fconn *fc, mg_buf *b)
{
    fb_write(fc, mg_buf_data(b), mg_buf_len(b));
    mg_buf_unref(b);
}

static void fb_send_cmd(fconn *fc, const Magnetar__Pulsar__BaseCommand *cmd)
{
    mg_buf *b = NULL;
    cr_assert_eq(pw_command_encode(cmd, &b), MG_OK);
    fb_write_buf(fc, b);
}

static void fb_drop(fconn *fc)
{
    if (!fc->open)
        return;
    fc->open = false;
    uv_close((uv_handle_t *)&fc->tcp, fb_closed);
}

static void fb_lookup_reply(fbroker *b, fconn *fc, const Magnetar__Pulsar__CommandLookupTopic *l)
{
    char url[64];
    Magnetar__Pulsar__CommandLookupTopicResponse r =
        MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
    r.request_id = l->request_id;
    r.has_response = 1;
    if (b->lookup == LOOKUP_FAILED) {
        r.response = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = ERR(TopicNotFound);
        r.message = (char *)"no such topic";
    } else {
        bool redirect = b->lookup == LOOKUP_REDIRECT;
        snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", redirect ? b->redirect_port : b->port);
        r.response = redirect
                         ? MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect
                         : MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect;
        r.broker_service_url = url;
        r.has_authoritative = 1;
        r.authoritative = 1;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(LOOKUP_RESPONSE);
    cmd.lookup_topic_response = &r;
    fb_send_cmd(fc, &cmd);
}

static void fb_success(fconn *fc, uint64_t request_id)
{
    mg_buf *b = NULL;
    cr_assert_eq(pw_encode_success(request_id, &b), MG_OK);
    fb_write_buf(fc, b);
}

static void fb_receipt(fbroker *b, fconn *fc, uint64_t producer_id, uint64_t seq)
{
    mg_buf *m = NULL;
    cr_assert_eq(pw_encode_send_receipt(producer_id, (int64_t)seq, -1, 7, b->entry_next++, &m),
                 MG_OK);
    fb_write_buf(fc, m);
}

static void fb_handle(fbroker *b, fconn *fc, const pw_frame *f)
{
    const Magnetar__Pulsar__BaseCommand *cmd = f->cmd;
    if (b->silent)
        return;
    switch (cmd->type) {
    case T(CONNECT): {
        if (b->refuse_connect) {
            mg_buf *m = NULL;
            cr_assert_eq(pw_encode_error(0, ERR(AuthenticationError), "bad token", &m), MG_OK);
            fb_write_buf(fc, m);
            break;
        }
        Magnetar__Pulsar__CommandConnected ok = MAGNETAR__PULSAR__COMMAND_CONNECTED__INIT;
        ok.server_version = (char *)"fake";
        ok.has_protocol_version = 1;
        ok.protocol_version = 19;
        ok.has_max_message_size = 1;
        ok.max_message_size = 1024 * 1024;
        Magnetar__Pulsar__BaseCommand r = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        r.type = T(CONNECTED);
        r.connected = &ok;
        fb_send_cmd(fc, &r);
        break;
    }
    case T(PING): {
        mg_buf *m = NULL;
        cr_assert_eq(pw_encode_pong(&m), MG_OK);
        fb_write_buf(fc, m);
        break;
    }
    case T(PARTITIONED_METADATA): {
        Magnetar__Pulsar__CommandPartitionedTopicMetadataResponse r =
            MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__INIT;
        r.request_id = cmd->partition_metadata->request_id;
        r.has_partitions = 1;
        r.partitions = 0;
        r.has_response = 1;
        r.response =
            MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Success;
        Magnetar__Pulsar__BaseCommand c = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        c.type = T(PARTITIONED_METADATA_RESPONSE);
        c.partition_metadata_response = &r;
        fb_send_cmd(fc, &c);
        break;
    }
    case T(LOOKUP):
        fb_lookup_reply(b, fc, cmd->lookup_topic);
        break;
    case T(PRODUCER): {
        b->producer_id = cmd->producer->producer_id;
        Magnetar__Pulsar__CommandProducerSuccess ok =
            MAGNETAR__PULSAR__COMMAND_PRODUCER_SUCCESS__INIT;
        ok.request_id = cmd->producer->request_id;
        ok.producer_name = (char *)"fake-producer";
        ok.has_last_sequence_id = 1;
        ok.last_sequence_id = 41; /* the client starts at 42 */
        Magnetar__Pulsar__BaseCommand r = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        r.type = T(PRODUCER_SUCCESS);
        r.producer_success = &ok;
        fb_send_cmd(fc, &r);
        break;
    }
    case T(SEND): {
        uint64_t seq = cmd->send->sequence_id;
        if (b->hold_receipts)
            break;
        if ((int64_t)seq == b->checksum_seq) {
            mg_buf *m = NULL;
            cr_assert_eq(pw_encode_send_error(cmd->send->producer_id, (int64_t)seq,
                                              ERR(ChecksumError), "bad checksum", &m),
                         MG_OK);
            fb_write_buf(fc, m);
            break;
        }
        if ((int64_t)seq == b->error_seq) {
            b->error_seq = -1;
            mg_buf *m = NULL;
            cr_assert_eq(pw_encode_send_error(cmd->send->producer_id, (int64_t)seq,
                                              ERR(PersistenceError), "disk on fire", &m),
                         MG_OK);
            fb_write_buf(fc, m);
            break;
        }
        if ((int64_t)seq == b->receipt_skip) {
            b->receipt_skip = -1;
            fb_receipt(b, fc, cmd->send->producer_id, seq + 1);
            break;
        }
        fb_receipt(b, fc, cmd->send->producer_id, seq);
        break;
    }
    case T(CLOSE_PRODUCER):
        fb_success(fc, cmd->close_producer->request_id);
        break;
    case T(SUBSCRIBE):
        b->consumer_id = cmd->subscribe->consumer_id;
        fb_success(fc, cmd->subscribe->request_id);
        break;
    case T(FLOW):
        b->permits += cmd->flow->message_permits;
        break;
    case T(ACK):
        if (cmd->ack->has_request_id) {
            Magnetar__Pulsar__CommandAckResponse ar = MAGNETAR__PULSAR__COMMAND_ACK_RESPONSE__INIT;
            ar.consumer_id = cmd->ack->consumer_id;
            ar.has_request_id = 1;
            ar.request_id = cmd->ack->request_id;
            Magnetar__Pulsar__BaseCommand r = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
            r.type = T(ACK_RESPONSE);
            r.ack_response = &ar;
            fb_send_cmd(fc, &r);
        }
        break;
    case T(CLOSE_CONSUMER):
        fb_success(fc, cmd->close_consumer->request_id);
        break;
    default:
        break;
    }
}

static void fb_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    fconn *fc = h->data;
    if (fc->cap - fc->len < 65536) {
        fc->cap = fc->cap * 2 + 65536;
        fc->buf = realloc(fc->buf, fc->cap);
        cr_assert_not_null(fc->buf);
    }
    out->base = (char *)fc->buf + fc->len;
    out->len = fc->cap - fc->len;
}

static void fb_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    fconn *fc = s->data;
    if (nread < 0) {
        fb_drop(fc);
        return;
    }
    fc->len += (size_t)nread;
    size_t off = 0;
    for (;;) {
        size_t frame_len = 0;
        int rc = pw_frame_size(fc->buf + off, fc->len - off, 16u << 20, &frame_len);
        if (rc == MG_EAGAIN || (rc == MG_OK && frame_len > fc->len - off))
            break;
        cr_assert_eq(rc, MG_OK, "the client sent a bad frame size");
        pw_frame f;
        cr_assert_eq(pw_frame_decode(fc->buf + off, frame_len, &f), MG_OK,
                     "the client sent a frame that does not decode");
        fbroker *b = fc->b;
        cr_assert_lt(b->nframes, FRAMES_MAX);
        frame_rec *r = &b->frames[b->nframes++];
        r->conn = fc->index;
        r->type = f.type;
        r->raw = malloc(frame_len);
        cr_assert_not_null(r->raw);
        memcpy(r->raw, fc->buf + off, frame_len);
        r->len = frame_len;
        fb_handle(b, fc, &f);
        pw_frame_free(&f);
        off += frame_len;
    }
    memmove(fc->buf, fc->buf + off, fc->len - off);
    fc->len -= off;
}

static void fb_accept(uv_stream_t *server, int status)
{
    cr_assert_eq(status, 0);
    fbroker *b = server->data;
    cr_assert_lt(b->nconns, CONNS_MAX);
    fconn *fc = calloc(1, sizeof(*fc));
    cr_assert_not_null(fc);
    fc->b = b;
    fc->index = b->nconns;
    b->conns[b->nconns++] = fc;
    uv_tcp_init(&g_loop, &fc->tcp);
    fc->tcp.data = fc;
    cr_assert_eq(uv_accept(server, (uv_stream_t *)&fc->tcp), 0);
    fc->open = true;
    uv_read_start((uv_stream_t *)&fc->tcp, fb_alloc, fb_read);
}

static void fb_start(fbroker *b)
{
    memset(b, 0, sizeof(*b));
    b->checksum_seq = b->error_seq = b->receipt_skip = -1;
    b->entry_next = 0;
    uv_tcp_init(&g_loop, &b->listener);
    b->listener.data = b;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    cr_assert_eq(uv_tcp_bind(&b->listener, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&b->listener, 16, fb_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&b->listener, (struct sockaddr *)&ss, &len);
    b->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    b->listener_open = true;
}

static void fb_stop(fbroker *b)
{
    if (b->listener_open)
        uv_close((uv_handle_t *)&b->listener, fb_closed);
    b->listener_open = false;
    for (int i = 0; i < b->nconns; i++)
        fb_drop(b->conns[i]);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    for (int i = 0; i < b->nconns; i++) {
        free(b->conns[i]->buf);
        free(b->conns[i]);
    }
    b->nconns = 0;
    for (int i = 0; i < b->nframes; i++)
        free(b->frames[i].raw);
    b->nframes = 0;
}

/* The n-th (0-based) recorded frame of a type, decoded (caller frees), or NULL. */
static int fb_count(const fbroker *b, int type)
{
    int n = 0;
    for (int i = 0; i < b->nframes; i++)
        n += b->frames[i].type == type;
    return n;
}

static bool fb_nth(const fbroker *b, int type, int nth, pw_frame *out, int *conn)
{
    for (int i = 0; i < b->nframes; i++) {
        if (b->frames[i].type != type || nth-- > 0)
            continue;
        cr_assert_eq(pw_frame_decode(b->frames[i].raw, b->frames[i].len, out), MG_OK);
        if (conn != NULL)
            *conn = b->frames[i].conn;
        return true;
    }
    return false;
}

typedef struct type_wait {
    const fbroker *b;
    int type;
    int count;
} type_wait;

static bool type_reached(void *arg)
{
    type_wait *w = arg;
    return fb_count(w->b, w->type) >= w->count;
}

static void wait_frames(const fbroker *b, int type, int count)
{
    type_wait w = { b, type, count };
    cr_assert(mgt_run_until(&g_loop, type_reached, &w, WAIT_MS), "waited for %d %s frames, got %d",
              count, pw_command_type_name(type), fb_count(b, type));
}

/* ---- the client --------------------------------------------------------------------------------
 */

static void client_open(unsigned port, uint32_t op_timeout_ms, uint32_t keepalive_s)
{
    char url[64];
    snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", port);
    pc_client_opts o = { .service_url = url,
                         .operation_timeout_ms = op_timeout_ms,
                         .keepalive_s = keepalive_s };
    cr_assert_eq(pc_client_create(&g_loop, &o, &g_client), MG_OK);
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    mg_log_set_level(MG_LOG_ERROR);
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    fb_start(&g_a);
    fb_start(&g_b);
}

/* Closes the client and both fake brokers; the loop must end with nothing open. */
static void finish(void)
{
    bool closed = false;
    pc_client_close(g_client, closed_cb, &closed);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS));
    fb_stop(&g_a);
    fb_stop(&g_b);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
}

TestSuite(client_proto, .init = suite_init, .timeout = 60);

static int producer_try(const pc_producer_opts *o, pc_producer **out)
{
    created c = { 0 };
    cr_assert_eq(pc_producer_create(g_client, o, producer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, 2 * WAIT_MS),
              "producer creation not answered");
    *out = c.obj;
    return c.status;
}

static void send_n(pc_producer *p, sendrec *r, int n)
{
    for (int i = 0; i < n; i++) {
        char text[16];
        snprintf(text, sizeof(text), "m%d", i);
        pc_message m = { .payload = text, .payload_len = strlen(text) };
        cr_assert_eq(pc_send(p, &m, sent_cb, &r[i]), MG_OK);
    }
}

static void wait_sends(sendrec *r, int n)
{
    sends_wait(&g_loop, r, (size_t)n, WAIT_MS);
}

/* Opens the client on broker a (5 s operation timeout), creates a producer on "t", sends n
 * messages and waits for their results in r[0, n). */
static void produce_n(sendrec *r, int n)
{
    client_open(g_a.port, 5000, 30);
    pc_producer *p = NULL;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_OK);
    send_n(p, r, n);
    wait_sends(r, n);
}

/* Sequence ids of the SENDs a broker got on connection conn (-1: any), in order. */
static int send_seqs(const fbroker *b, int conn, int64_t *seqs, int cap)
{
    int n = 0;
    for (int i = 0; i < b->nframes && n < cap; i++) {
        if (b->frames[i].type != T(SEND) || (conn >= 0 && b->frames[i].conn != conn))
            continue;
        pw_frame f;
        cr_assert_eq(pw_frame_decode(b->frames[i].raw, b->frames[i].len, &f), MG_OK);
        seqs[n++] = (int64_t)f.cmd->send->sequence_id;
        pw_frame_free(&f);
    }
    return n;
}

/* ---- lookups ------------------------------------------------------------------------------------
 */

Test(client_proto, lookup_follows_a_redirect_authoritatively)
{
    g_a.lookup = LOOKUP_REDIRECT;
    g_a.redirect_port = g_b.port;
    client_open(g_a.port, 5000, 30);
    pc_producer *p = NULL;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_OK);
    cr_assert_eq(fb_count(&g_a, T(PARTITIONED_METADATA)), 1);
    cr_assert_eq(fb_count(&g_a, T(LOOKUP)), 1);
    cr_assert_eq(fb_count(&g_a, T(PRODUCER)), 0);
    pw_frame f;
    cr_assert(fb_nth(&g_a, T(LOOKUP), 0, &f, NULL));
    cr_assert_str_eq(f.cmd->lookup_topic->topic, "persistent://public/default/t");
    cr_assert(!f.cmd->lookup_topic->authoritative);
    pw_frame_free(&f);
    cr_assert(fb_nth(&g_b, T(LOOKUP), 0, &f, NULL));
    cr_assert(f.cmd->lookup_topic->authoritative, "the redirected lookup is authoritative");
    pw_frame_free(&f);
    cr_assert_eq(fb_count(&g_b, T(PRODUCER)), 1, "the producer registers at the owner");
    cr_assert(fb_nth(&g_b, T(CONNECT), 0, &f, NULL));
    cr_assert_eq(f.cmd->connect->protocol_version, 19);
    cr_assert_not_null(f.cmd->connect->client_version);
    pw_frame_free(&f);
    /* Sequence ids continue from the broker's last_sequence_id. */
    sendrec r[1] = { 0 };
    send_n(p, r, 1);
    wait_sends(r, 1);
    cr_assert_eq(r[0].status, MG_OK);
    int64_t seq;
    cr_assert_eq(send_seqs(&g_b, -1, &seq, 1), 1);
    cr_assert_eq(seq, 42);
    finish();
}

Test(client_proto, redirect_loop_gives_up)
{
    g_a.lookup = LOOKUP_REDIRECT;
    g_a.redirect_port = g_a.port;
    client_open(g_a.port, 1000, 30);
    pc_producer *p = NULL;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_ELIMIT);
    cr_assert_null(p);
    cr_assert_geq(fb_count(&g_a, T(LOOKUP)), 21, "20 redirects followed, then given up");
    cr_assert_str_eq(pc_last_error(g_client), "too many lookup redirects");
    finish();
}

Test(client_proto, lookup_failure_is_eperm_with_the_text)
{
    g_a.lookup = LOOKUP_FAILED;
    client_open(g_a.port, 5000, 30);
    pc_producer *p = NULL;
    int64_t t0 = sah_now_ms();
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_EPERM);
    cr_assert_lt(sah_now_ms() - t0, 4000, "TopicNotFound is not retried until the timeout");
    cr_assert_str_eq(pc_last_error(g_client), "no such topic");
    finish();
}

Test(client_proto, unreachable_broker_is_econnection_after_the_timeout)
{
    unsigned port = g_b.port;
    fb_stop(&g_b); /* nothing listens there any more */
    fb_start(&g_b);
    cr_assert_neq(g_b.port, port);
    client_open(port, 800, 30);
    pc_producer *p = NULL;
    int64_t t0 = sah_now_ms();
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_ECONNECTION);
    int64_t took = sah_now_ms() - t0;
    cr_assert(took >= 700 && took < 4000, "gave up after %lld ms", (long long)took);
    finish();
}

Test(client_proto, connect_carries_auth_and_a_refusal_is_eperm)
{
    char url[64];
    snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", g_a.port);
    pc_client_opts o = { .service_url = url,
                         .operation_timeout_ms = 3000,
                         .auth_method_name = "token",
                         .auth_data = "secret-token",
                         .client_version = "test-client 1" };
    cr_assert_eq(pc_client_create(&g_loop, &o, &g_client), MG_OK);
    g_a.refuse_connect = true;
    pc_producer *p = NULL;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_EPERM);
    cr_assert_str_eq(pc_last_error(g_client), "bad token");
    pw_frame f;
    cr_assert(fb_nth(&g_a, T(CONNECT), 0, &f, NULL));
    const Magnetar__Pulsar__CommandConnect *cc = f.cmd->connect;
    cr_assert_str_eq(cc->client_version, "test-client 1");
    cr_assert_str_eq(cc->auth_method_name, "token");
    cr_assert(cc->has_auth_data);
    cr_assert_eq(cc->auth_data.len, strlen("secret-token"));
    cr_assert(memcmp(cc->auth_data.data, "secret-token", cc->auth_data.len) == 0);
    pw_frame_free(&f);
    g_a.refuse_connect = false;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_OK);
    finish();
}

static void consumer_unexpected(int status, pc_consumer *k, void *arg)
{
    (void)status;
    (void)k;
    (void)arg;
    cr_assert_fail("a refused subscription called back");
}

Test(client_proto, bad_options_are_einval)
{
    pc_client *c = NULL;
    cr_assert_eq(pc_client_create(&g_loop, &(pc_client_opts){ .service_url = "http://x:1" }, &c),
                 MG_EINVAL);
    cr_assert_eq(pc_client_create(&g_loop, &(pc_client_opts){ .service_url = "pulsar://x" }, &c),
                 MG_EINVAL);
    cr_assert_eq(pc_client_create(&g_loop, &(pc_client_opts){ .service_url = NULL }, &c),
                 MG_EINVAL);
    cr_assert_eq(
        pc_client_create(&g_loop, &(pc_client_opts){ .service_url = "pulsar://a:1,b:70000" }, &c),
        MG_EINVAL);
    client_open(g_a.port, 3000, 30);
    created cr = { 0 };
    cr_assert_eq(
        pc_producer_create(g_client, &(pc_producer_opts){ .topic = NULL }, producer_created, &cr),
        MG_EINVAL);
    cr_assert_eq(pc_producer_create(g_client, &(pc_producer_opts){ .topic = "t", .compression = 9 },
                                    producer_created, &cr),
                 MG_EINVAL);
    cr_assert_eq(pc_subscribe(g_client, &(pc_consumer_opts){ .topic = "t" }, NULL, &cr), MG_EINVAL);
    cr_assert_eq(pc_subscribe(g_client, &(pc_consumer_opts){ .topic = "t", .subscription = "s" },
                              consumer_unexpected, &cr),
                 MG_EINVAL, "on_message is required");
    cr_assert(!cr.done);
    pc_message_id a = { 1, 2, 3, 4, 0 }, b = { 1, 2, -1, 0, 0 };
    cr_assert_gt(pc_message_id_cmp(&a, &b), 0);
    cr_assert_lt(pc_message_id_cmp(&b, &a), 0);
    cr_assert_eq(pc_message_id_cmp(&a, &a), 0);
    char text[64];
    pc_message_id_format(&a, text, sizeof(text));
    cr_assert_str_eq(text, "1:2:0:3");
    finish();
}

/* ---- producer errors ----------------------------------------------------------------------------
 */

Test(client_proto, checksum_error_fails_that_send_only)
{
    g_a.checksum_seq = 43;
    sendrec r[3] = { 0 };
    produce_n(r, 3);
    cr_assert_eq(r[0].status, MG_OK);
    cr_assert_eq(r[1].status, MG_ECORRUPT);
    cr_assert_eq(r[2].status, MG_OK);
    cr_assert_eq(g_a.nconns, 1, "no reconnection for a checksum error");
    finish();
}

Test(client_proto, send_error_reconnects_and_resends_in_order)
{
    g_a.error_seq = 43;
    sendrec r[4] = { 0 };
    produce_n(r, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(r[i].status, MG_OK, "send %d: %s", i, mg_strerror(r[i].status));
        cr_assert_eq(r[i].order, i);
    }
    cr_assert_eq(g_a.nconns, 2, "the connection was replaced");
    int64_t seqs[16];
    int n = send_seqs(&g_a, 1, seqs, 16);
    cr_assert_geq(n, 1);
    cr_assert_eq(seqs[0], 43, "the resend starts at the failed send");
    for (int i = 1; i < n; i++)
        cr_assert_eq(seqs[i], seqs[i - 1] + 1, "resent in order");
    cr_assert_eq(fb_count(&g_a, T(PRODUCER)), 2);
    pw_frame f;
    cr_assert(fb_nth(&g_a, T(PRODUCER), 1, &f, NULL));
    cr_assert_str_eq(f.cmd->producer->producer_name, "fake-producer",
                     "the producer keeps its name");
    pw_frame_free(&f);
    finish();
}

Test(client_proto, receipt_out_of_order_resends)
{
    g_a.receipt_skip = 42;
    sendrec r[2] = { 0 };
    produce_n(r, 2);
    cr_assert_eq(r[0].status, MG_OK);
    cr_assert_eq(r[1].status, MG_OK);
    cr_assert_eq(r[0].order, 0);
    cr_assert_geq(g_a.nconns, 2, "the connection was replaced");
    finish();
}

Test(client_proto, close_producer_looks_up_again_and_resends)
{
    g_a.hold_receipts = true;
    client_open(g_a.port, 5000, 30);
    pc_producer *p = NULL;
    cr_assert_eq(
        producer_try(&(pc_producer_opts){ .topic = "t", .batching = true, .batch_max_messages = 2 },
                     &p),
        MG_OK);
    sendrec r[5] = { 0 };
    send_n(p, r, 5); /* batches 42-43, 44-45, then 46 after the delay */
    wait_frames(&g_a, T(SEND), 3);
    int lookups = fb_count(&g_a, T(LOOKUP));
    g_a.hold_receipts = false;
    Magnetar__Pulsar__CommandCloseProducer cp = MAGNETAR__PULSAR__COMMAND_CLOSE_PRODUCER__INIT;
    cp.producer_id = g_a.producer_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    fb_send_cmd(g_a.conns[0], &cmd);
    wait_sends(r, 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(r[i].status, MG_OK);
        cr_assert_eq(r[i].order, i);
    }
    cr_assert_eq(r[1].id.batch_index, 1);
    cr_assert_eq(r[1].id.batch_size, 2);
    cr_assert_eq(r[4].id.batch_index, -1, "a batch of one goes as a plain message");
    cr_assert_gt(fb_count(&g_a, T(LOOKUP)), lookups, "looked up again");
    cr_assert_eq(fb_count(&g_a, T(PRODUCER)), 2);
    int64_t seqs[16];
    int n = send_seqs(&g_a, -1, seqs, 16);
    cr_assert_eq(n, 6, "three SENDs, then the same three again");
    static const int64_t want[6] = { 42, 44, 46, 42, 44, 46 };
    for (int i = 0; i < 6; i++)
        cr_assert_eq(seqs[i], want[i]);
    cr_assert_eq(g_a.nconns, 1, "the same connection");
    finish();
}

/* ---- keep-alive ---------------------------------------------------------------------------------
 */

Test(client_proto, keepalive_answers_pings_and_drops_silent_brokers)
{
    client_open(g_a.port, 5000, 1);
    pc_producer *p = NULL;
    cr_assert_eq(producer_try(&(pc_producer_opts){ .topic = "t" }, &p), MG_OK);
    mg_buf *ping = NULL;
    cr_assert_eq(pw_encode_ping(&ping), MG_OK);
    fb_write_buf(g_a.conns[0], ping);
    wait_frames(&g_a, T(PONG), 1);
    /* Idle: the client pings after keepalive_s; the broker answers: nothing is dropped. */
    wait_frames(&g_a, T(PING), 1);
    mgt_run_for(&g_loop, 1500);
    cr_assert_eq(g_a.nconns, 1);
    /* Silent: the connection is dropped and made again. */
    g_a.silent = true;
    type_wait w = { &g_a, T(CONNECT), 2 };
    cr_assert(mgt_run_until(&g_loop, type_reached, &w, 6000),
              "no reconnection after the broker went silent");
    g_a.silent = false;
    finish();
}

/* ---- consumers ----------------------------------------------------------------------------------
 */

typedef struct rmsg {
    pc_message_id id;
    char payload[64];
    uint32_t redelivery;
} rmsg;

typedef struct sink {
    pc_consumer *k;
    rmsg msgs[64];
    int count;
} sink;

static void on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    (void)k;
    sink *s = arg;
    cr_assert_lt(s->count, 64);
    rmsg *r = &s->msgs[s->count++];
    r->id = m->id;
    snprintf(r->payload, sizeof(r->payload), "%.*s", (int)m->payload_len, (const char *)m->payload);
    r->redelivery = m->redelivery_count;
}

typedef struct count_wait {
    const sink *s;
    int want;
} count_wait;

static bool count_reached(void *arg)
{
    count_wait *w = arg;
    return w->s->count >= w->want;
}

/* A MESSAGE frame for the consumer: entry (7, entry) with metadata md and data; options: a
 * broken checksum, a 0x0e02 prefix, an ack set. */
static void fb_message(fconn *fc, uint64_t consumer_id, int64_t entry,
                       const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                       size_t data_len, bool corrupt, bool bem, const int64_t *ack_set,
                       size_t ack_words)
{
    mg_buf *payload = NULL;
    cr_assert_eq(pw_send_payload_encode(md, data, data_len, &payload), MG_OK);
    if (corrupt)
        mg_buf_data(payload)[mg_buf_len(payload) - 1] ^= 0x55;
    uint8_t prefix[64];
    size_t prefix_len = 0;
    if (bem) {
        Magnetar__Pulsar__BrokerEntryMetadata e = MAGNETAR__PULSAR__BROKER_ENTRY_METADATA__INIT;
        e.has_broker_timestamp = 1;
        e.broker_timestamp = 1234;
        e.has_index = 1;
        e.index = 99;
        size_t n = magnetar__pulsar__broker_entry_metadata__pack(&e, prefix + 6);
        prefix[0] = 0x0e;
        prefix[1] = 0x02;
        prefix[2] = (uint8_t)(n >> 24);
        prefix[3] = (uint8_t)(n >> 16);
        prefix[4] = (uint8_t)(n >> 8);
        prefix[5] = (uint8_t)n;
        prefix_len = 6 + n;
    }
    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = 7;
    id.entry_id = (uint64_t)entry;
    Magnetar__Pulsar__CommandMessage m = MAGNETAR__PULSAR__COMMAND_MESSAGE__INIT;
    m.consumer_id = consumer_id;
    m.message_id = &id;
    m.n_ack_set = ack_words;
    m.ack_set = (int64_t *)ack_set;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(MESSAGE);
    cmd.message = &m;
    mg_buf *head = NULL;
    cr_assert_eq(pw_payload_head_encode(&cmd, prefix_len + mg_buf_len(payload), &head), MG_OK);
    size_t total = mg_buf_len(head) + prefix_len + mg_buf_len(payload);
    uint8_t *all = malloc(total);
    cr_assert_not_null(all);
    memcpy(all, mg_buf_data(head), mg_buf_len(head));
    memcpy(all + mg_buf_len(head), prefix, prefix_len);
    memcpy(all + mg_buf_len(head) + prefix_len, mg_buf_data(payload), mg_buf_len(payload));
    fb_write(fc, all, total);
    free(all);
    mg_buf_unref(head);
    mg_buf_unref(payload);
}

/* A batch payload of n messages "b<entry>-<i>". */
static size_t batch_bytes(uint8_t *dst, int64_t entry, int n)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        char text[32];
        snprintf(text, sizeof(text), "b%lld-%d", (long long)entry, i);
        Magnetar__Pulsar__SingleMessageMetadata smm =
            MAGNETAR__PULSAR__SINGLE_MESSAGE_METADATA__INIT;
        smm.payload_size = (int32_t)strlen(text);
        size_t sz = magnetar__pulsar__single_message_metadata__get_packed_size(&smm);
        dst[off] = 0;
        dst[off + 1] = 0;
        dst[off + 2] = (uint8_t)(sz >> 8);
        dst[off + 3] = (uint8_t)sz;
        magnetar__pulsar__single_message_metadata__pack(&smm, dst + off + 4);
        off += 4 + sz;
        memcpy(dst + off, text, strlen(text));
        off += strlen(text);
    }
    return off;
}

static Magnetar__Pulsar__MessageMetadata plain_md(uint64_t seq)
{
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = (char *)"remote";
    md.sequence_id = seq;
    md.publish_time = 1000;
    return md;
}

Test(client_proto, consumer_frames)
{
    client_open(g_a.port, 5000, 30);
    sink s;
    memset(&s, 0, sizeof(s));
    created c = { 0 };
    pc_consumer_opts o = { .topic = "t",
                           .subscription = "s",
                           .receiver_queue_size = 6,
                           .ack_group_ms = 50,
                           .nack_delay_ms = 100,
                           .on_message = on_message,
                           .arg = &s };
    cr_assert_eq(pc_subscribe(g_client, &o, consumer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS));
    cr_assert_eq(c.status, MG_OK);
    s.k = c.obj;
    wait_frames(&g_a, T(FLOW), 1);
    cr_assert_eq(g_a.permits, 6, "the first FLOW is receiver_queue_size");
    pw_frame f;
    cr_assert(fb_nth(&g_a, T(SUBSCRIBE), 0, &f, NULL));
    cr_assert_str_eq(f.cmd->subscribe->subscription, "s");
    cr_assert_eq(f.cmd->subscribe->sub_type,
                 MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive);
    cr_assert(f.cmd->subscribe->consumer_name != NULL && f.cmd->subscribe->consumer_name[0]);
    pw_frame_free(&f);
    fconn *fc = g_a.conns[0];
    uint64_t cid = g_a.consumer_id;

    /* 0: plain; 1: bad checksum; 2: with a 0x0e02 prefix. */
    Magnetar__Pulsar__MessageMetadata md = plain_md(1);
    fb_message(fc, cid, 0, &md, "zero", 4, false, false, NULL, 0);
    fb_message(fc, cid, 1, &md, "one", 3, true, false, NULL, 0);
    fb_message(fc, cid, 2, &md, "two", 3, false, true, NULL, 0);
    count_wait w = { &s, 2 };
    cr_assert(mgt_run_until(&g_loop, count_reached, &w, WAIT_MS));
    wait_frames(&g_a, T(REDELIVER_UNACKNOWLEDGED_MESSAGES), 1);
    cr_assert(fb_nth(&g_a, T(REDELIVER_UNACKNOWLEDGED_MESSAGES), 0, &f, NULL));
    cr_assert_eq(f.cmd->redeliver_unacknowledged_messages->n_message_ids, 1);
    cr_assert_eq(f.cmd->redeliver_unacknowledged_messages->message_ids[0]->entry_id, 1,
                 "the corrupt entry is asked for again");
    pw_frame_free(&f);
    cr_assert_str_eq(s.msgs[0].payload, "zero");
    cr_assert_str_eq(s.msgs[1].payload, "two", "the corrupt one is not delivered");
    cr_assert_eq(s.msgs[1].id.entry_id, 2);
    cr_assert_eq(s.msgs[1].id.batch_index, -1);

    /* 3: a batch of 4 whose messages 0 and 2 were acknowledged (bits clear). */
    uint8_t batch[1024];
    size_t blen = batch_bytes(batch, 3, 4);
    Magnetar__Pulsar__MessageMetadata bmd = plain_md(2);
    bmd.has_num_messages_in_batch = 1;
    bmd.num_messages_in_batch = 4;
    int64_t set = 0xA; /* 1010: messages 1 and 3 still unacknowledged */
    fb_message(fc, cid, 3, &bmd, batch, blen, false, false, &set, 1);
    w.want = 4;
    cr_assert(mgt_run_until(&g_loop, count_reached, &w, WAIT_MS));
    cr_assert_str_eq(s.msgs[2].payload, "b3-1");
    cr_assert_eq(s.msgs[2].id.batch_index, 1);
    cr_assert_eq(s.msgs[2].id.batch_size, 4);
    cr_assert_str_eq(s.msgs[3].payload, "b3-3");
    /* Permits: 1 + 1 + 1 (corrupt) + 4 = 7 messages used, half of 6 is 3: FLOWs followed. */
    wait_frames(&g_a, T(FLOW), 2);
    mgt_run_for(&g_loop, 100);
    cr_assert_eq(g_a.permits, 6 + 7, "every message of every entry is given back");

    /* 4: an LZ4 batch of 3. */
    blen = batch_bytes(batch, 4, 3);
    mg_buf *z = NULL;
    cr_assert_eq(pw_compress(MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4, batch, blen, &z), MG_OK);
    Magnetar__Pulsar__MessageMetadata zmd = plain_md(3);
    zmd.has_num_messages_in_batch = 1;
    zmd.num_messages_in_batch = 3;
    zmd.has_compression = 1;
    zmd.compression = MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4;
    zmd.has_uncompressed_size = 1;
    zmd.uncompressed_size = (uint32_t)blen;
    fb_message(fc, cid, 4, &zmd, mg_buf_data(z), mg_buf_len(z), false, false, NULL, 0);
    mg_buf_unref(z);
    w.want = 7;
    cr_assert(mgt_run_until(&g_loop, count_reached, &w, WAIT_MS));
    cr_assert_str_eq(s.msgs[4].payload, "b4-0");
    cr_assert_str_eq(s.msgs[6].payload, "b4-2");

    /* Acks: two messages of batch 3 and one of batch 4 in one flush, then entry 0 whole. */
    int acks_before = fb_count(&g_a, T(ACK));
    cr_assert_eq(pc_ack(s.k, &s.msgs[2].id), MG_OK);
    cr_assert_eq(pc_ack(s.k, &s.msgs[3].id), MG_OK);
    cr_assert_eq(pc_ack(s.k, &s.msgs[5].id), MG_OK);
    cr_assert_eq(pc_ack(s.k, &s.msgs[0].id), MG_OK);
    wait_frames(&g_a, T(ACK), acks_before + 1);
    mgt_run_for(&g_loop, 100);
    cr_assert_eq(fb_count(&g_a, T(ACK)), acks_before + 1, "one ACK for the group");
    cr_assert(fb_nth(&g_a, T(ACK), acks_before, &f, NULL));
    const Magnetar__Pulsar__CommandAck *ack = f.cmd->ack;
    cr_assert_eq(ack->ack_type, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Individual);
    cr_assert(ack->has_request_id);
    cr_assert_eq(ack->n_message_id, 3);
    cr_assert_eq(ack->message_id[0]->entry_id, 0);
    cr_assert_eq(ack->message_id[0]->n_ack_set, 0, "a plain message: no set");
    cr_assert_eq(ack->message_id[1]->entry_id, 3);
    cr_assert_eq(ack->message_id[1]->n_ack_set, 1);
    cr_assert_eq(ack->message_id[1]->ack_set[0], 0x5, "bits of 1 and 3 cleared of 1111");
    cr_assert_eq(ack->message_id[2]->entry_id, 4);
    cr_assert_eq(ack->message_id[2]->ack_set[0], 0x5, "bit 1 cleared of 111");
    pw_frame_free(&f);

    /* Cumulative: batch 4 up to index 0 leaves 1 and 2 marked. */
    cr_assert_eq(pc_ack_cumulative(s.k, &s.msgs[4].id), MG_OK);
    wait_frames(&g_a, T(ACK), acks_before + 2);
    cr_assert(fb_nth(&g_a, T(ACK), acks_before + 1, &f, NULL));
    cr_assert_eq(f.cmd->ack->ack_type, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Cumulative);
    cr_assert_eq(f.cmd->ack->message_id[0]->entry_id, 4);
    cr_assert_eq(f.cmd->ack->message_id[0]->ack_set[0], 0x6);
    pw_frame_free(&f);

    /* A nack waits its delay, then names the entry. */
    int redeliver_before = fb_count(&g_a, T(REDELIVER_UNACKNOWLEDGED_MESSAGES));
    int64_t t0 = sah_now_ms();
    cr_assert_eq(pc_nack(s.k, &s.msgs[1].id), MG_OK);
    wait_frames(&g_a, T(REDELIVER_UNACKNOWLEDGED_MESSAGES), redeliver_before + 1);
    cr_assert_geq(sah_now_ms() - t0, 90);
    cr_assert(fb_nth(&g_a, T(REDELIVER_UNACKNOWLEDGED_MESSAGES), redeliver_before, &f, NULL));
    cr_assert_eq(f.cmd->redeliver_unacknowledged_messages->message_ids[0]->entry_id, 2);
    pw_frame_free(&f);

    /* The broker closes the consumer: it subscribes again and gives fresh permits. */
    int subs = fb_count(&g_a, T(SUBSCRIBE));
    uint32_t permits = g_a.permits;
    Magnetar__Pulsar__CommandCloseConsumer cc = MAGNETAR__PULSAR__COMMAND_CLOSE_CONSUMER__INIT;
    cc.consumer_id = cid;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CLOSE_CONSUMER);
    cmd.close_consumer = &cc;
    fb_send_cmd(fc, &cmd);
    wait_frames(&g_a, T(SUBSCRIBE), subs + 1);
    mgt_run_for(&g_loop, 100);
    cr_assert_eq(g_a.permits, permits + 6);
    finish();
}

Test(client_proto, client_close_fails_creations_in_progress)
{
    g_a.silent = true; /* CONNECT is never answered */
    client_open(g_a.port, 5000, 30);
    created pc = { 0 }, kc = { 0 };
    sink s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(
        pc_producer_create(g_client, &(pc_producer_opts){ .topic = "t" }, producer_created, &pc),
        MG_OK);
    cr_assert_eq(
        pc_subscribe(g_client,
                     &(pc_consumer_opts){
                         .topic = "t", .subscription = "s", .on_message = on_message, .arg = &s },
                     consumer_created, &kc),
        MG_OK);
    wait_frames(&g_a, T(CONNECT), 1);
    bool closed = false;
    pc_client_close(g_client, closed_cb, &closed);
    cr_assert(!pc.done && !kc.done, "nothing is called back inside pc_client_close");
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS));
    cr_assert(pc.done && kc.done);
    cr_assert_eq(pc.status, MG_ECLOSED);
    cr_assert_null(pc.obj);
    cr_assert_eq(kc.status, MG_ECLOSED);
    cr_assert_null(kc.obj);
    fb_stop(&g_a);
    fb_stop(&g_b);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
}
