/*
 * The raw-socket Pulsar client of the tests (see pulsar_raw.h): blocking sockets, poll for
 * bounded reads, frames encoded and decoded by src/pulsar.
 */
#include "support/pulsar_raw.h"

#include "common/error.h"
#include "support/sa_harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define T(x) MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x

prw_conn prw_open(const prw_client *cl, int rcvbuf)
{
    prw_conn c = { .cl = cl,
                   .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
                   .auto_pong = cl->auto_pong };
    cr_assert_geq(c.fd, 0, "socket: %s", strerror(errno));
    if (rcvbuf > 0)
        setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* Bounds connect and every send: a broker that stops reading cannot hang the test. */
    struct timeval tv = { .tv_sec = cl->timeout_ms / 1000 };
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(cl->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c.fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect to %u: %s", cl->port,
                 strerror(errno));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

void prw_forget_frame(prw_conn *c)
{
    pw_frame_free(&c->f);
    free(c->raw);
    c->raw = NULL;
    c->raw_len = 0;
}

void prw_close(prw_conn *c)
{
    prw_forget_frame(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void prw_write(prw_conn *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t done = 0;
    int64_t deadline = sah_now_ms() + c->cl->timeout_ms;
    while (done < n) {
        ssize_t k = send(c->fd, b + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        done += (size_t)k;
        cr_assert_lt(sah_now_ms(), deadline, "send did not finish in time");
    }
}

void prw_write_buf(prw_conn *c, mg_buf *b)
{
    prw_write(c, mg_buf_data(b), mg_buf_len(b));
}

size_t prw_write_some(prw_conn *c, const void *p, size_t n)
{
    size_t done = 0;
    for (int i = 0; i < 100000 && done < n; i++) {
        ssize_t k = send(c->fd, (const uint8_t *)p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        done += (size_t)k;
    }
    return done;
}

void prw_send_cmd(prw_conn *c, const Magnetar__Pulsar__BaseCommand *cmd)
{
    mg_buf *b = NULL;
    cr_assert_eq(pw_command_encode(cmd, &b), MG_OK);
    prw_write_buf(c, b);
    mg_buf_unref(b);
}

void prw_send_pong(prw_conn *c)
{
    mg_buf *b = NULL;
    cr_assert_eq(pw_encode_pong(&b), MG_OK);
    prw_write_buf(c, b);
    mg_buf_unref(b);
    c->pongs_sent++;
}

void prw_send_ping(prw_conn *c)
{
    mg_buf *b = NULL;
    cr_assert_eq(pw_encode_ping(&b), MG_OK);
    prw_write_buf(c, b);
    mg_buf_unref(b);
}

prw_result prw_read_exact(prw_conn *c, uint8_t *dst, size_t n, int64_t deadline_ms)
{
    const prw_client *cl = c->cl;
    size_t got = 0;
    while (got < n) {
        int64_t left = deadline_ms - sah_now_ms();
        if (left <= 0)
            return PRW_TIMEOUT;
        bool serve = cl->side != NULL && c != cl->side && cl->side->fd >= 0;
        struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN },
                               { .fd = serve ? cl->side->fd : -1, .events = POLLIN } };
        int slice = cl->side_poll_ms > 0 && left > cl->side_poll_ms ? cl->side_poll_ms : (int)left;
        int r = poll(p, serve ? 2 : 1, slice);
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_geq(r, 0, "poll: %s", strerror(errno));
        if (serve && p[1].revents != 0)
            cl->side_ready(cl->side);
        if (p[0].revents == 0)
            continue;
        ssize_t k = recv(c->fd, dst + got, n - got, 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return PRW_EOF;
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        cr_assert_gt(k, 0, "recv: %s", strerror(errno));
        got += (size_t)k;
    }
    return PRW_FRAME;
}

prw_result prw_read_frame(prw_conn *c, int64_t deadline_ms)
{
    prw_forget_frame(c);
    uint8_t head[4];
    prw_result r = prw_read_exact(c, head, 4, deadline_ms);
    if (r != PRW_FRAME)
        return r;
    uint32_t total =
        ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
    cr_assert(total >= 4 && total <= PRW_FRAME_BYTES_MAX, "frame with total_size %u", total);
    c->raw_len = 4 + (size_t)total;
    c->raw = malloc(c->raw_len);
    cr_assert_not_null(c->raw);
    memcpy(c->raw, head, 4);
    r = prw_read_exact(c, c->raw + 4, total, deadline_ms);
    cr_assert_eq(r, PRW_FRAME, "connection ended inside a frame of %zu bytes (result %d)",
                 c->raw_len, r);
    int rc = pw_frame_decode(c->raw, c->raw_len, &c->f);
    cr_assert_eq(rc, MG_OK, "the broker sent a frame that does not decode: %s", mg_strerror(rc));
    return PRW_FRAME;
}

prw_result prw_next(prw_conn *c, int timeout_ms)
{
    int64_t deadline = sah_now_ms() + timeout_ms;
    for (int i = 0; i < PRW_PINGS_MAX; i++) {
        prw_result r = prw_read_frame(c, deadline);
        if (r != PRW_FRAME || !c->auto_pong || c->f.type != T(PING))
            return r;
        prw_send_pong(c);
    }
    cr_assert_fail("more than %d PINGs in a row", PRW_PINGS_MAX);
    return PRW_TIMEOUT;
}

const Magnetar__Pulsar__BaseCommand *prw_expect(prw_conn *c, int type)
{
    prw_result r = prw_next(c, c->cl->timeout_ms);
    cr_assert_eq(r, PRW_FRAME, "waiting for %s: %s", pw_command_type_name(type),
                 r == PRW_EOF ? "connection closed" : "timed out");
    cr_assert_eq(c->f.type, type, "expected %s, got %s", pw_command_type_name(type),
                 pw_command_type_name(c->f.type));
    return c->f.cmd;
}

void prw_send_producer(prw_conn *c, const char *topic, uint64_t producer_id, uint64_t request_id)
{
    Magnetar__Pulsar__CommandProducer p = MAGNETAR__PULSAR__COMMAND_PRODUCER__INIT;
    p.topic = (char *)topic;
    p.producer_id = producer_id;
    p.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(PRODUCER);
    cmd.producer = &p;
    prw_send_cmd(c, &cmd);
}

void prw_subscribe(prw_conn *c, const char *topic, const char *sub, uint64_t consumer_id,
                   uint64_t request_id, bool earliest, uint32_t permits)
{
    Magnetar__Pulsar__CommandSubscribe s = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
    s.topic = (char *)topic;
    s.subscription = (char *)sub;
    s.sub_type = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive;
    s.consumer_id = consumer_id;
    s.request_id = request_id;
    if (earliest) {
        s.has_initial_position = 1;
        s.initial_position = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SUBSCRIBE);
    cmd.subscribe = &s;
    prw_send_cmd(c, &cmd);
    cr_assert_eq(prw_expect(c, T(SUCCESS))->success->request_id, request_id);
    Magnetar__Pulsar__CommandFlow fl = MAGNETAR__PULSAR__COMMAND_FLOW__INIT;
    fl.consumer_id = consumer_id;
    fl.message_permits = permits;
    Magnetar__Pulsar__BaseCommand fc = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    fc.type = T(FLOW);
    fc.flow = &fl;
    prw_send_cmd(c, &fc);
}

mg_buf *prw_encode_connect(const char *client_version, int version)
{
    Magnetar__Pulsar__CommandConnect cc = MAGNETAR__PULSAR__COMMAND_CONNECT__INIT;
    cc.client_version = (char *)client_version;
    cc.has_protocol_version = 1;
    cc.protocol_version = version;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CONNECT);
    cmd.connect = &cc;
    mg_buf *b = NULL;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_OK);
    return b;
}

mg_buf *prw_encode_send(uint64_t producer_id, uint64_t sequence_id, const char *producer_name,
                        const void *data, size_t len)
{
    Magnetar__Pulsar__CommandSend s = MAGNETAR__PULSAR__COMMAND_SEND__INIT;
    s.producer_id = producer_id;
    s.sequence_id = sequence_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SEND);
    cmd.send = &s;
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = (char *)producer_name;
    md.sequence_id = sequence_id;
    md.publish_time = (uint64_t)time(NULL) * 1000;
    mg_buf *b = NULL;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, data, len, &b), MG_OK);
    return b;
}
