/*
 * The client's broker connections: one per "host:port", shared by every lookup, producer and
 * consumer that needs that broker.
 *
 * CONNECTION STATES
 *
 *     RESOLVING --addresses--> CONNECTING --TCP up, CONNECT sent--> HANDSHAKE --CONNECTED--> READY
 *         |                        |  (next address on failure)        |                      |
 *         +------------------------+-----------------------------------+----------------------+
 *                   failure, timeout (operation_timeout_ms), keep-alive, pc__conn_close
 *                                              v
 *                                           CLOSING --handles closed--> freed
 *
 *   - Waiters (pc__wait) queue until READY and hear of it, or of the failure, from a libuv
 *     callback. Requests are made only on READY connections.
 *   - Entering CLOSING is always deferred to a zero-delay timer (pc__conn_close), so a failing
 *     write inside an API call, or a handler reading a frame, never sees the connection vanish.
 *     Then every waiter gets the error, every request MG_ECONNECTION, and every attached
 *     producer or consumer is told (it reconnects with backoff). A connection that is CLOSING is
 *     no longer found by pc__conn_get: the next user opens a fresh one.
 *   - Keep-alive: after keepalive_ms without input a PING goes out; no input within half a
 *     period more drops the connection. The broker's PINGs are answered with PONG.
 *
 * RECEIVE BUFFER: frames are parsed in place from a reference-counted buffer (as the broker's
 * server.c does); a consumer that keeps a MESSAGE takes a reference to it instead of copying.
 * Bytes past the buffer's length are filled by later reads while earlier payloads are still
 * referenced: holders read only their own range. A frame that does not fit the rest of the
 * buffer moves, with whatever follows it, to a new buffer sized for it. The bound on a frame is
 * the broker's max_message_size plus PC_FRAME_PADDING_BYTES.
 */
#include "client/client_int.h"

#include "client/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- life cycle -------------------------------------------------------------------------------
 */

static void conn_maybe_free(pc__conn *conn)
{
    if (conn->state != PC__CONN_CLOSING || conn->handles_open > 0 || conn->gai_active)
        return;
    pc_client *c = conn->c;
    MG_ASSERT(mg_list_empty(&conn->reqs) && mg_list_empty(&conn->waiters) &&
              mg_list_empty(&conn->parts));
    mg_list_remove(&conn->link);
    c->conn_count--;
    pc__timer_unregister(c, &conn->close_timer);
    mg_outq_discard(&conn->out);
    mg_buf_unref(conn->rbuf);
    mg_free(conn);
    pc__client_maybe_freed(c);
}

static void tcp_closed(uv_handle_t *h)
{
    pc__conn *conn = h->data;
    conn->tcp_open = false;
    conn->handles_open--;
    conn_maybe_free(conn);
}

static void tcp_close(pc__conn *conn, uv_close_cb cb)
{
    if (!conn->tcp_open || uv_is_closing((uv_handle_t *)&conn->tcp))
        return;
    uv_close((uv_handle_t *)&conn->tcp, cb);
}

/* Moves the connection to CLOSING now: everybody hears of it with status. */
static void conn_close_now(pc__conn *conn, int status)
{
    if (conn->state == PC__CONN_CLOSING)
        return;
    pc_client *c = conn->c;
    if (conn->close_reason[0] != '\0' && status != MG_ECLOSED)
        MG_INFO("client: connection to %s closed: %s", conn->addr, conn->close_reason);
    conn->state = PC__CONN_CLOSING;
    pc__timer_stop(c, &conn->close_timer);
    mg_outq_discard(&conn->out);
    if (conn->gai_active)
        uv_cancel((uv_req_t *)&conn->gai_req);
    tcp_close(conn, tcp_closed);
    int req_status = status == MG_ECLOSED ? MG_ECLOSED : MG_ECONNECTION;
    while (!mg_list_empty(&conn->waiters)) {
        pc__wait *w = MG_CONTAINER_OF(conn->waiters.next, pc__wait, link);
        mg_list_remove(&w->link);
        w->conn = NULL;
        w->cb(w, status, NULL);
    }
    while (!mg_list_empty(&conn->reqs)) {
        pc__req *r = MG_CONTAINER_OF(conn->reqs.next, pc__req, link);
        mg_list_remove(&r->link);
        conn->req_count--;
        r->cb(r, req_status, NULL);
        mg_free(r);
    }
    while (!mg_list_empty(&conn->parts)) {
        pc__part *p = MG_CONTAINER_OF(conn->parts.next, pc__part, conn_link);
        pc__part_conn_lost(p, status); /* detaches p */
        if (p->conn == conn) {
            /* The part did not detach: do it for it rather than loop. */
            pc__conn_detach(p);
        }
    }
    conn_maybe_free(conn);
}

static void close_fired(pc__timer *t)
{
    pc__conn *conn = MG_CONTAINER_OF(t, pc__conn, close_timer);
    conn_close_now(conn, conn->close_status);
}

void pc__conn_close(pc__conn *conn, int status, const char *reason)
{
    if (conn->state == PC__CONN_CLOSING || pc__timer_armed(&conn->close_timer))
        return;
    conn->close_status = status;
    snprintf(conn->close_reason, sizeof(conn->close_reason), "%s",
             reason != NULL ? reason : mg_strerror(status));
    pc__timer_start(conn->c, &conn->close_timer, 0);
}

void pc__conn_abort(pc__conn *conn)
{
    conn->close_reason[0] = '\0';
    conn_close_now(conn, MG_ECLOSED);
}

void pc__conn_attach(pc__conn *conn, pc__part *p)
{
    MG_ASSERT(p->conn == NULL);
    p->conn = conn;
    mg_list_push(&conn->parts, &p->conn_link);
}

void pc__conn_detach(pc__part *p)
{
    if (p->conn == NULL)
        return;
    mg_list_remove(&p->conn_link);
    p->conn = NULL;
}

/* ---- output -------------------------------------------------------------------------------------
 */

static void conn_written(mg_outq *q, int status)
{
    pc__conn *conn = q->arg;
    if (conn->state == PC__CONN_CLOSING)
        return;
    if (status != MG_OK) {
        pc__conn_close(conn, MG_ECONNECTION, mg_strerror(status));
        return;
    }
    pc__conn_flush(conn);
}

void pc__conn_flush(pc__conn *conn)
{
    if (conn->state == PC__CONN_CLOSING || conn->state < PC__CONN_HANDSHAKE)
        return;
    int rc = mg_outq_flush(&conn->out, (uv_stream_t *)&conn->tcp);
    if (rc != MG_OK)
        pc__conn_close(conn, MG_ECONNECTION, mg_strerror(rc));
}

int pc__conn_queue(pc__conn *conn, const mg_slice *slices, size_t count)
{
    if (conn->state == PC__CONN_CLOSING || pc__timer_armed(&conn->close_timer))
        return MG_ECLOSED;
    int rc = mg_outq_push(&conn->out, slices, count);
    if (rc != MG_OK)
        pc__conn_close(conn, rc, "cannot queue output");
    return rc;
}

int pc__conn_send_cmd(pc__conn *conn, const Magnetar__Pulsar__BaseCommand *cmd)
{
    if (conn->state == PC__CONN_CLOSING || pc__timer_armed(&conn->close_timer))
        return MG_ECLOSED;
    mg_buf *frame = NULL;
    int rc = pw_command_encode(cmd, &frame);
    if (rc != MG_OK)
        return rc;
    mg_slice s = { frame, 0, mg_buf_len(frame) };
    rc = pc__conn_queue(conn, &s, 1);
    mg_buf_unref(frame);
    if (rc == MG_OK)
        pc__conn_flush(conn);
    return rc;
}

int pc__conn_request(pc__conn *conn, const Magnetar__Pulsar__BaseCommand *cmd, uint64_t request_id,
                     pc__req_cb cb, void *arg, pc__req **out)
{
    if (conn->state != PC__CONN_READY || pc__timer_armed(&conn->close_timer))
        return MG_ECLOSED;
    if (conn->req_count >= PC_CONN_REQUESTS_MAX)
        return MG_ELIMIT;
    pc__req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    int rc = pc__conn_send_cmd(conn, cmd);
    if (rc != MG_OK) {
        mg_free(r);
        return rc;
    }
    r->conn = conn;
    r->request_id = request_id;
    r->deadline_ms = pc__now_ms(conn->c) + conn->c->op_timeout_ms;
    r->cb = cb;
    r->arg = arg;
    mg_list_push(&conn->reqs, &r->link);
    conn->req_count++;
    if (out != NULL)
        *out = r;
    return MG_OK;
}

void pc__req_cancel(pc__req *r)
{
    if (r == NULL)
        return;
    mg_list_remove(&r->link);
    r->conn->req_count--;
    mg_free(r);
}

static pc__req *req_take(pc__conn *conn, uint64_t request_id)
{
    for (mg_link *l = conn->reqs.next; l != &conn->reqs; l = l->next) {
        pc__req *r = MG_CONTAINER_OF(l, pc__req, link);
        if (r->request_id == request_id) {
            mg_list_remove(&r->link);
            conn->req_count--;
            return r;
        }
    }
    return NULL;
}

static void req_complete(pc__conn *conn, uint64_t request_id, int status,
                         const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__req *r = req_take(conn, request_id);
    if (r == NULL) {
        MG_DEBUG("client: %s answered request %llu, which nobody waits for (%s)", conn->addr,
                 (unsigned long long)request_id, pw_command_type_name(cmd->type));
        return;
    }
    r->cb(r, status, cmd);
    mg_free(r);
}

static void send_simple(pc__conn *conn, int type)
{
    Magnetar__Pulsar__CommandPing ping = MAGNETAR__PULSAR__COMMAND_PING__INIT;
    Magnetar__Pulsar__CommandPong pong = MAGNETAR__PULSAR__COMMAND_PONG__INIT;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = type;
    if (type == PC__T(PING))
        cmd.ping = &ping;
    else
        cmd.pong = &pong;
    pc__conn_send_cmd(conn, &cmd);
}

/* ---- housekeeping -------------------------------------------------------------------------------
 */

void pc__conn_housekeeping(pc__conn *conn, uint64_t now_ms)
{
    if (conn->state == PC__CONN_CLOSING || pc__timer_armed(&conn->close_timer))
        return;
    if (conn->state != PC__CONN_READY) {
        if (now_ms >= conn->connect_deadline_ms)
            pc__conn_close(conn, MG_ETIMEDOUT, "connect timeout");
        return;
    }
    /* Requests share one timeout, so the list is in deadline order. */
    while (!mg_list_empty(&conn->reqs)) {
        pc__req *r = MG_CONTAINER_OF(conn->reqs.next, pc__req, link);
        if (r->deadline_ms > now_ms)
            break;
        mg_list_remove(&r->link);
        conn->req_count--;
        r->cb(r, MG_ETIMEDOUT, NULL);
        mg_free(r);
        if (conn->state == PC__CONN_CLOSING)
            return;
    }
    uint64_t period = conn->c->keepalive_ms;
    if (now_ms - conn->last_in_ms < period)
        return;
    if (conn->ping_sent) {
        pc__conn_close(conn, MG_ECONNECTION, "no answer to PING: keep-alive timeout");
        return;
    }
    conn->ping_sent = true;
    conn->last_in_ms = now_ms - period / 2; /* the answer is due within half a period more */
    send_simple(conn, PC__T(PING));
}

/* ---- frames -------------------------------------------------------------------------------------
 */

static void conn_ready(pc__conn *conn, const Magnetar__Pulsar__CommandConnected *ok)
{
    conn->state = PC__CONN_READY;
    uint32_t max = PC_MESSAGE_BYTES_DEFAULT;
    if (ok->has_max_message_size && ok->max_message_size > 0)
        max = (uint32_t)ok->max_message_size;
    if (max > PC_MESSAGE_BYTES_MAX)
        max = PC_MESSAGE_BYTES_MAX;
    conn->max_message_size = max;
    conn->protocol_version = ok->has_protocol_version ? ok->protocol_version : 0;
    MG_DEBUG("client: connected to %s (%s, protocol %d, max message %u)", conn->addr,
             ok->server_version, (int)conn->protocol_version, (unsigned)max);
    while (conn->state == PC__CONN_READY && !mg_list_empty(&conn->waiters)) {
        pc__wait *w = MG_CONTAINER_OF(conn->waiters.next, pc__wait, link);
        mg_list_remove(&w->link);
        w->conn = NULL;
        w->cb(w, MG_OK, conn);
    }
}

static void send_auth_response(pc__conn *conn)
{
    pc_client *c = conn->c;
    Magnetar__Pulsar__AuthData ad = MAGNETAR__PULSAR__AUTH_DATA__INIT;
    ad.auth_method_name = c->auth_method_name;
    if (c->auth_data != NULL) {
        ad.has_auth_data = 1;
        ad.auth_data.data = (uint8_t *)c->auth_data;
        ad.auth_data.len = strlen(c->auth_data);
    }
    Magnetar__Pulsar__CommandAuthResponse ar = MAGNETAR__PULSAR__COMMAND_AUTH_RESPONSE__INIT;
    ar.client_version = c->client_version;
    ar.response = &ad;
    ar.has_protocol_version = 1;
    ar.protocol_version = PC__PROTOCOL_VERSION;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(AUTH_RESPONSE);
    cmd.auth_response = &ar;
    pc__conn_send_cmd(conn, &cmd);
}

/* The part a frame names, if it is attached to this connection. */
static pc__part *part_for(pc__conn *conn, uint64_t id, pc__part_kind kind)
{
    pc__part *p = pc__idmap_get(conn->c, id);
    if (p == NULL || p->kind != kind || p->conn != conn)
        return NULL;
    return p;
}

static void handle_frame(pc__conn *conn, const pw_frame *f, size_t frame_off)
{
    const Magnetar__Pulsar__BaseCommand *cmd = f->cmd;
    pc__part *p;
    switch (cmd->type) {
    case PC__T(CONNECTED):
        if (conn->state == PC__CONN_HANDSHAKE)
            conn_ready(conn, cmd->connected);
        break;
    case PC__T(ERROR): {
        pc__req *r = req_take(conn, cmd->error->request_id);
        if (r != NULL) {
            r->cb(r, MG_EPERM, cmd);
            mg_free(r);
        } else if (conn->state == PC__CONN_HANDSHAKE) {
            pc__set_last_error(conn->c, cmd->error->message);
            pc__conn_close(conn, MG_EPERM, cmd->error->message);
        } else {
            MG_WARN("client: %s: error %d: %s", conn->addr, (int)cmd->error->error,
                    cmd->error->message);
        }
        break;
    }
    case PC__T(PING):
        send_simple(conn, PC__T(PONG));
        break;
    case PC__T(PONG):
        break;
    case PC__T(AUTH_CHALLENGE):
        send_auth_response(conn);
        break;
    case PC__T(SUCCESS):
        req_complete(conn, cmd->success->request_id, MG_OK, cmd);
        break;
    case PC__T(PRODUCER_SUCCESS):
        req_complete(conn, cmd->producer_success->request_id, MG_OK, cmd);
        break;
    case PC__T(LOOKUP_RESPONSE):
        req_complete(conn, cmd->lookup_topic_response->request_id, MG_OK, cmd);
        break;
    case PC__T(PARTITIONED_METADATA_RESPONSE):
        req_complete(conn, cmd->partition_metadata_response->request_id, MG_OK, cmd);
        break;
    case PC__T(GET_LAST_MESSAGE_ID_RESPONSE):
        req_complete(conn, cmd->get_last_message_id_response->request_id, MG_OK, cmd);
        break;
    case PC__T(ACK_RESPONSE):
        if (cmd->ack_response->has_request_id)
            req_complete(conn, cmd->ack_response->request_id,
                         cmd->ack_response->has_error ? MG_EPERM : MG_OK, cmd);
        break;
    case PC__T(SEND_RECEIPT):
        if ((p = part_for(conn, cmd->send_receipt->producer_id, PC__KIND_PRODUCER)) != NULL)
            pc__prod_on_frame(p, cmd);
        break;
    case PC__T(SEND_ERROR):
        if ((p = part_for(conn, cmd->send_error->producer_id, PC__KIND_PRODUCER)) != NULL)
            pc__prod_on_frame(p, cmd);
        break;
    case PC__T(CLOSE_PRODUCER):
        if ((p = part_for(conn, cmd->close_producer->producer_id, PC__KIND_PRODUCER)) != NULL)
            pc__prod_on_frame(p, cmd);
        break;
    case PC__T(MESSAGE):
        if ((p = part_for(conn, cmd->message->consumer_id, PC__KIND_CONSUMER)) != NULL)
            pc__cons_on_message(p, cmd->message, conn->rbuf, frame_off + f->payload_off,
                                f->payload_len);
        break;
    case PC__T(CLOSE_CONSUMER):
        if ((p = part_for(conn, cmd->close_consumer->consumer_id, PC__KIND_CONSUMER)) != NULL)
            pc__cons_on_frame(p, cmd);
        break;
    case PC__T(ACTIVE_CONSUMER_CHANGE):
        if ((p = part_for(conn, cmd->active_consumer_change->consumer_id, PC__KIND_CONSUMER)) !=
            NULL)
            pc__cons_on_frame(p, cmd);
        break;
    case PC__T(REACHED_END_OF_TOPIC):
        if ((p = part_for(conn, cmd->reached_end_of_topic->consumer_id, PC__KIND_CONSUMER)) != NULL)
            pc__cons_on_frame(p, cmd);
        break;
    default:
        MG_DEBUG("client: %s sent %s, ignored", conn->addr, pw_command_type_name(cmd->type));
        break;
    }
}

/* ---- input -------------------------------------------------------------------------------------
 */

static uint32_t frame_limit(const pc__conn *conn)
{
    uint32_t max = conn->max_message_size != 0 ? conn->max_message_size : PC_MESSAGE_BYTES_DEFAULT;
    return max + PC_FRAME_PADDING_BYTES;
}

static bool conn_gone(const pc__conn *conn)
{
    return conn->state == PC__CONN_CLOSING || pc__timer_armed(&conn->close_timer);
}

static void conn_process(pc__conn *conn)
{
    while (!conn_gone(conn) && conn->rbuf != NULL) {
        const uint8_t *data = mg_buf_data(conn->rbuf);
        size_t avail = mg_buf_len(conn->rbuf) - conn->rpos;
        size_t frame_len = 0;
        int rc = pw_frame_size(data + conn->rpos, avail, frame_limit(conn), &frame_len);
        if (rc == MG_EAGAIN) {
            conn->rwant = 0;
            return;
        }
        if (rc != MG_OK) {
            pc__conn_close(conn, MG_EPROTO,
                           rc == MG_ELIMIT ? "frame larger than max_message_size"
                                           : "malformed frame size");
            return;
        }
        if (frame_len > avail) {
            conn->rwant = frame_len;
            return;
        }
        conn->rwant = 0;
        pw_frame f;
        rc = pw_frame_decode(data + conn->rpos, frame_len, &f);
        if (rc == MG_ENOTSUP) {
            MG_DEBUG("client: %s sent a command of unknown type %d, ignored", conn->addr, f.type);
            conn->rpos += frame_len;
            continue;
        }
        if (rc != MG_OK) {
            pc__conn_close(conn, MG_EPROTO, "malformed command");
            return;
        }
        size_t frame_off = conn->rpos;
        conn->rpos += frame_len;
        handle_frame(conn, &f, frame_off);
        pw_frame_free(&f);
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    pc__conn *conn = h->data;
    size_t want = conn->rwant > PC_READ_BUF_BYTES ? conn->rwant : PC_READ_BUF_BYTES;
    size_t unparsed = conn->rbuf != NULL ? mg_buf_len(conn->rbuf) - conn->rpos : 0;
    bool fits = conn->rbuf != NULL && mg_buf_cap(conn->rbuf) - conn->rpos >= want &&
                mg_buf_cap(conn->rbuf) - mg_buf_len(conn->rbuf) >= 1024;
    if (!fits) {
        mg_buf *nb = mg_buf_new(want + PC_READ_BUF_BYTES);
        if (nb == NULL) {
            out->base = NULL;
            out->len = 0;
            return;
        }
        if (unparsed > 0)
            memcpy(mg_buf_data(nb), mg_buf_data(conn->rbuf) + conn->rpos, unparsed);
        mg_buf_set_len(nb, unparsed);
        mg_buf_unref(conn->rbuf);
        conn->rbuf = nb;
        conn->rpos = 0;
    }
    out->base = (char *)mg_buf_data(conn->rbuf) + mg_buf_len(conn->rbuf);
    out->len = mg_buf_cap(conn->rbuf) - mg_buf_len(conn->rbuf);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    pc__conn *conn = stream->data;
    if (conn_gone(conn))
        return;
    if (nread == UV_ENOBUFS) {
        pc__conn_close(conn, MG_ENOMEM, "out of memory for the receive buffer");
        return;
    }
    if (nread < 0) {
        pc__conn_close(conn, MG_ECONNECTION,
                       nread == UV_EOF ? "closed by the broker" : uv_strerror((int)nread));
        uv_read_stop(stream);
        return;
    }
    if (nread == 0)
        return;
    conn->last_in_ms = pc__now_ms(conn->c);
    conn->ping_sent = false;
    mg_buf_set_len(conn->rbuf, mg_buf_len(conn->rbuf) + (size_t)nread);
    conn_process(conn);
}

/* ---- connecting ---------------------------------------------------------------------------------
 */

static void send_connect(pc__conn *conn)
{
    pc_client *c = conn->c;
    Magnetar__Pulsar__CommandConnect cc = MAGNETAR__PULSAR__COMMAND_CONNECT__INIT;
    cc.client_version = c->client_version;
    cc.has_protocol_version = 1;
    cc.protocol_version = PC__PROTOCOL_VERSION;
    if (c->auth_method_name != NULL)
        cc.auth_method_name = c->auth_method_name;
    if (c->auth_data != NULL) {
        cc.has_auth_data = 1;
        cc.auth_data.data = (uint8_t *)c->auth_data;
        cc.auth_data.len = strlen(c->auth_data);
    }
    Magnetar__Pulsar__FeatureFlags ff = MAGNETAR__PULSAR__FEATURE_FLAGS__INIT;
    ff.has_supports_auth_refresh = 1;
    ff.supports_auth_refresh = 1;
    cc.feature_flags = &ff;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(CONNECT);
    cmd.connect = &cc;
    pc__conn_send_cmd(conn, &cmd);
}

static void try_next_addr(pc__conn *conn);

static void tcp_closed_retry(uv_handle_t *h)
{
    pc__conn *conn = h->data;
    conn->tcp_open = false;
    conn->handles_open--;
    if (conn->state == PC__CONN_CLOSING) {
        conn_maybe_free(conn);
        return;
    }
    try_next_addr(conn);
}

static void tcp_connected(uv_connect_t *req, int status)
{
    pc__conn *conn = req->data;
    if (conn->state == PC__CONN_CLOSING)
        return;
    if (status < 0) {
        MG_DEBUG("client: connecting to %s: %s", conn->addr, uv_strerror(status));
        tcp_close(conn, tcp_closed_retry);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    conn->state = PC__CONN_HANDSHAKE;
    conn->last_in_ms = pc__now_ms(conn->c);
    int rc = uv_read_start((uv_stream_t *)&conn->tcp, conn_alloc, conn_read);
    if (rc < 0) {
        pc__conn_close(conn, MG_ECONNECTION, uv_strerror(rc));
        return;
    }
    send_connect(conn);
}

static void try_next_addr(pc__conn *conn)
{
    if (conn->addr_next >= conn->addr_count) {
        pc__conn_close(conn, MG_ECONNECTION, "cannot connect");
        return;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&conn->addrs[conn->addr_next++];
    int rc = uv_tcp_init(conn->c->loop, &conn->tcp);
    if (rc < 0) {
        pc__conn_close(conn, mg_err_from_uv(rc), uv_strerror(rc));
        return;
    }
    conn->tcp.data = conn;
    conn->tcp_open = true;
    conn->handles_open++;
    conn->state = PC__CONN_CONNECTING;
    conn->connect_req.data = conn;
    rc = uv_tcp_connect(&conn->connect_req, &conn->tcp, sa, tcp_connected);
    if (rc < 0) {
        MG_DEBUG("client: connecting to %s: %s", conn->addr, uv_strerror(rc));
        tcp_close(conn, tcp_closed_retry);
    }
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pc__conn *conn = req->data;
    conn->gai_active = false;
    if (conn->state == PC__CONN_CLOSING) {
        uv_freeaddrinfo(res);
        conn_maybe_free(conn);
        return;
    }
    if (status < 0) {
        uv_freeaddrinfo(res);
        pc__conn_close(conn, MG_ECONNECTION, uv_strerror(status));
        return;
    }
    conn->addr_count = 0;
    for (struct addrinfo *ai = res; ai != NULL && conn->addr_count < PC_RESOLVED_ADDRS_MAX;
         ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(conn->addrs[0]))
            continue;
        memcpy(&conn->addrs[conn->addr_count++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    conn->addr_next = 0;
    try_next_addr(conn);
}

/* Splits "host:port" ("[v6]:port" too) into conn->host and conn->port. */
static int split_addr(pc__conn *conn, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr)
        return MG_EINVAL;
    size_t hl = (size_t)(colon - addr);
    const char *h = addr;
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= sizeof(conn->host) || pl == 0 || pl >= sizeof(conn->port))
        return MG_EINVAL;
    memcpy(conn->host, h, hl);
    conn->host[hl] = '\0';
    memcpy(conn->port, colon + 1, pl + 1);
    return MG_OK;
}

static int conn_new(pc_client *c, const char *addr, pc__conn **out)
{
    if (c->conn_count >= PC_CONNECTIONS_MAX)
        return MG_ELIMIT;
    if (strlen(addr) > PC_ADDR_BYTES_MAX)
        return MG_EINVAL;
    pc__conn *conn = mg_calloc(1, sizeof(*conn));
    if (conn == NULL)
        return MG_ENOMEM;
    conn->c = c;
    snprintf(conn->addr, sizeof(conn->addr), "%s", addr);
    int rc = split_addr(conn, addr);
    if (rc != MG_OK) {
        mg_free(conn);
        return rc;
    }
    if (pc__timer_register(c, &conn->close_timer, close_fired) != MG_OK) {
        mg_free(conn);
        return MG_ENOMEM;
    }
    mg_list_init(&conn->reqs);
    mg_list_init(&conn->waiters);
    mg_list_init(&conn->parts);
    mg_outq_init(&conn->out, conn_written, conn);
    conn->connect_deadline_ms = pc__now_ms(c) + c->op_timeout_ms;
    mg_list_push(&c->conns, &conn->link);
    c->conn_count++;

    int port = atoi(conn->port);
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    if (uv_ip4_addr(conn->host, port, &sin) == 0) {
        memcpy(&conn->addrs[0], &sin, sizeof(sin));
        conn->addr_count = 1;
        try_next_addr(conn);
    } else if (uv_ip6_addr(conn->host, port, &sin6) == 0) {
        memcpy(&conn->addrs[0], &sin6, sizeof(sin6));
        conn->addr_count = 1;
        try_next_addr(conn);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        conn->gai_req.data = conn;
        conn->state = PC__CONN_RESOLVING;
        rc = uv_getaddrinfo(c->loop, &conn->gai_req, resolved, conn->host, conn->port, &hints);
        if (rc < 0)
            pc__conn_close(conn, MG_ECONNECTION, uv_strerror(rc));
        else
            conn->gai_active = true;
    }
    pc__housekeeping_arm(c);
    *out = conn;
    return MG_OK;
}

int pc__conn_get(pc_client *c, const char *addr, pc__wait *w, pc__conn **ready)
{
    if (c->closing)
        return MG_ECLOSED;
    pc__conn *conn = NULL;
    for (mg_link *l = c->conns.next; l != &c->conns; l = l->next) {
        pc__conn *x = MG_CONTAINER_OF(l, pc__conn, link);
        if (!conn_gone(x) && strcmp(x->addr, addr) == 0) {
            conn = x;
            break;
        }
    }
    if (conn == NULL)
        MG_TRY(conn_new(c, addr, &conn));
    if (conn->state == PC__CONN_READY) {
        *ready = conn;
        return MG_OK;
    }
    MG_ASSERT(w->conn == NULL);
    w->conn = conn;
    mg_list_push(&conn->waiters, &w->link);
    return MG_EAGAIN;
}

void pc__wait_cancel(pc__wait *w)
{
    if (w->conn == NULL)
        return;
    mg_list_remove(&w->link);
    w->conn = NULL;
}
