/*
 * The broker's listener and connections: reads frames, hands each command to its handler
 * (topic.c, sub.c, lookup.c), queues replies, keeps the connection alive with PING/PONG.
 *
 * CONNECTION STATES
 *     accepted --> AWAIT_CONNECT --CONNECT--> READY --(close: peer, error, broker)--> CLOSING
 *   In AWAIT_CONNECT only CONNECT (and PING) is accepted; anything else closes the connection.
 *   CLOSING: producers and consumers are dropped at once (their subscriptions redeliver what
 *   was unacknowledged), the handle is closed; the memory goes when the last asynchronous
 *   operation that holds a reference (a SEND being stored, a topic being opened) completes.
 *
 * BAD INPUT harms only its connection and is counted in
 * pulsar_broker_protocol_errors_total{reason}: a frame larger than the advertised
 * max_message_size plus Pulsar's padding, a malformed frame or command, an unknown command type
 * (answered with ERROR when it carried nothing we could answer; the connection stays), SEND
 * before PRODUCER (closed, as Pulsar does), a wrong checksum (SEND_ERROR ChecksumError, the
 * connection stays).
 *
 * RECEIVE BUFFERS: frames are parsed in place from a reference-counted buffer; a SEND's payload
 * goes to the managed ledger as a reference to that buffer (no copy). Bytes past the buffer's
 * length are filled by later reads while earlier frames' payloads are still referenced: holders
 * only ever read their own range, so this does not disturb them. A frame that does not fit the
 * rest of the buffer moves, with whatever follows it, to a new buffer sized for it.
 *
 * BACKPRESSURE: more than BR_CONN_PENDING_SENDS_MAX SENDs waiting for storage stops reading the
 * socket until half completed; dispatch to a connection whose output queue holds more than its
 * share of the output budget pauses until it drains (below).
 *
 * CONNECTION MEMORY: one broker-wide budget (opts.connection_memory_bytes), half for bytes queued
 * to consumers, half for receive buffers larger than BR_READ_BUF_BYTES (frames being received).
 *  1. Before CONNECT a frame may be at most BR_CONNECT_FRAME_BYTES_MAX: a larger one refuses the
 *     connection at its header (magnetar_broker_refused_total{reason="frame_before_connect"}).
 *  2. Output: every connection's mg_outq adds its queued bytes to b->out_bytes. Dispatch queues
 *     to a connection while it is below its share (the output half divided among the
 *     connections that have consumers, within BR_CONN_OUT_BYTES_MIN..MAX) and the half is not
 *     used up. Past the half, a reserve of BR_CONN_OUT_BYTES_MIN goes to connections that have
 *     written everything they were given, so consumers that read are never starved by ones that
 *     do not (a consumer that does not read keeps bytes queued once its socket buffers are
 *     full). Consumers that cannot take more wait in b->out_waiters: a connection is woken when
 *     its own queue drained below its share, every one when the total fell below
 *     BR_CONN_OUT_RESUME_PCT of the half. Bound: the half plus the reserve plus one entry (each
 *     entry is queued only while there is room), plus replies (3). While the half is used up, a
 *     waiting connection whose queue has not moved for BR_CONN_OUT_STALL_MS is closed
 *     (magnetar_broker_refused_total{reason="not_reading"}): consumers that never read cannot
 *     hold the budget for ever.
 *  3. Replies: a connection whose output queue holds more than its share plus a largest frame
 *     (more than dispatch ever queues) does not read the socket until its queue fell below its
 *     share: a client that sends requests without reading the answers cannot grow the broker.
 *  4. Receive: a buffer larger than BR_READ_BUF_BYTES (for a frame larger than that) is taken
 *     from the receive half (c->recv_held, summed in b->recv_bytes) before it is allocated; when
 *     it does not fit, the connection stops reading (uv_read_stop) and waits in b->recv_waiters,
 *     in order, until buffers are given back (a frame's buffer goes as soon as everything in it
 *     was parsed). A connection is always admitted when nobody else holds any, so every frame
 *     that passes the frame limit is eventually received. Standard buffers (2 x
 *     BR_READ_BUF_BYTES) are not counted: they are bounded by the connection count.
 *  5. A connection that does not read (paused by 3 or 4, or for pending sends) is not timed out
 *     by the keep-alive: its silence is ours.
 * Pauses are counted in magnetar_broker_connection_memory_pauses_total{kind}, the bytes in use
 * in magnetar_broker_connection_memory_bytes{kind} (and _peak, and the budget in _limit_bytes).
 */
#include "broker/broker_int.h"

#include "broker/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define T(x) MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x

void br_conn_pause_reading(br_conn *c);
void br_conn_resume_reading(br_conn *c);

void br_conn_count_proto_error(br_broker *b, const char *reason)
{
    if (b->m_proto_errors == NULL)
        return;
    const char *values[] = { reason };
    mg_counter *c = mg_metrics_counter(b->m_proto_errors, values);
    if (c != NULL)
        mg_counter_inc(c);
}

static void count_command(br_broker *b, int type)
{
    if (b->m_commands == NULL || type < 0 || type >= BR_COMMAND_TYPES_MAX)
        return;
    if (b->m_command_counters[type] == NULL) {
        const char *values[] = { pw_command_type_name(type) };
        b->m_command_counters[type] = mg_metrics_counter(b->m_commands, values);
    }
    if (b->m_command_counters[type] != NULL)
        mg_counter_inc(b->m_command_counters[type]);
}

/* ---- connection memory ---------------------------------------------------------------------- */

static void broker_maybe_closed(br_broker *b);

static void mem_gauges(br_broker *b)
{
    if (b->out_bytes > b->out_bytes_peak)
        b->out_bytes_peak = b->out_bytes;
    if (b->recv_bytes > b->recv_bytes_peak)
        b->recv_bytes_peak = b->recv_bytes;
    if (b->m_mem_bytes[BR_MEM_OUT] == NULL)
        return;
    mg_gauge_set(b->m_mem_bytes[BR_MEM_OUT], (double)b->out_bytes);
    mg_gauge_set(b->m_mem_bytes[BR_MEM_RECV], (double)b->recv_bytes);
    mg_gauge_set(b->m_mem_peak[BR_MEM_OUT], (double)b->out_bytes_peak);
    mg_gauge_set(b->m_mem_peak[BR_MEM_RECV], (double)b->recv_bytes_peak);
}

static void count_pause(br_broker *b, int kind)
{
    if (b->m_mem_pauses[kind] != NULL)
        mg_counter_inc(b->m_mem_pauses[kind]);
}

/* Moves every element of from to the (empty) list to. */
static void list_move_all(mg_link *from, mg_link *to)
{
    mg_list_init(to);
    if (mg_list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    mg_list_init(from);
}

/* A connection's share of the output budget (CONNECTION MEMORY 2). */
static size_t conn_out_share(const br_broker *b)
{
    size_t n = b->consumer_conn_count > 0 ? b->consumer_conn_count : 1;
    size_t share = b->out_budget_bytes / n;
    if (share < BR_CONN_OUT_BYTES_MIN)
        share = BR_CONN_OUT_BYTES_MIN;
    if (share > BR_CONN_OUT_BYTES_MAX)
        share = BR_CONN_OUT_BYTES_MAX;
    return share;
}

size_t br_conn_out_room(const br_conn *c)
{
    if (c->state == BR_CONN_CLOSING)
        return 0;
    const br_broker *b = c->b;
    size_t queued = mg_outq_queued_bytes(&c->out);
    size_t share = conn_out_share(b);
    if (queued >= share)
        return 0;
    size_t room = share - queued;
    if (b->out_bytes >= b->out_budget_bytes) {
        /* The reserve past the budget, for connections that wrote everything they were given. */
        size_t over = b->out_bytes - b->out_budget_bytes;
        if (queued > 0 || over >= BR_CONN_OUT_BYTES_MIN)
            return 0;
        size_t reserve = BR_CONN_OUT_BYTES_MIN - over;
        return room < reserve ? room : reserve;
    }
    size_t left = b->out_budget_bytes - b->out_bytes;
    return room < left ? room : left;
}

bool br_conn_writable(const br_conn *c)
{
    return br_conn_out_room(c) > 0;
}

/* A rate-limited warning for connections closed to protect memory: one line per
 * BR_REFUSED_LOG_PERIOD_MS at most, with the count since the last one; each at debug level. */
static void log_refused(br_broker *b, uint64_t *logged_ms, uint64_t *unlogged, const char *what,
                        const br_conn *c)
{
    MG_DEBUG("broker: closing %s: %s", c->peer, what);
    (*unlogged)++;
    uint64_t now = uv_now(b->loop);
    if (*logged_ms == 0 || now - *logged_ms >= BR_REFUSED_LOG_PERIOD_MS) {
        MG_WARN("broker: closed %llu connection(s) since the last such line: %s (the last: %s)",
                (unsigned long long)*unlogged, what, c->peer);
        *logged_ms = now;
        *unlogged = 0;
    }
}

/* The rest of log_refused's count, once the period has passed (from the stats timer). */
static void log_refused_rest(br_broker *b, uint64_t *logged_ms, uint64_t *unlogged,
                             const char *what)
{
    uint64_t now = uv_now(b->loop);
    if (*unlogged == 0 || now - *logged_ms < BR_REFUSED_LOG_PERIOD_MS)
        return;
    MG_WARN("broker: closed %llu connection(s) since the last such line: %s",
            (unsigned long long)*unlogged, what);
    *logged_ms = now;
    *unlogged = 0;
}

#define REFUSED_BEFORE_CONNECT "a frame larger than a CONNECT can be (128 KiB) before CONNECT"
#define REFUSED_NOT_READING \
    "its consumers did not read for 10 s while the output budget was used up"

static void out_stall_check(uv_timer_t *t);

void br_conn_out_wait(br_conn *c)
{
    br_broker *b = c->b;
    if (c->state == BR_CONN_CLOSING)
        return;
    if (!c->out_blocked) {
        c->out_blocked = true;
        mg_list_push(&b->out_waiters, &c->out_wait_link);
    }
    if (b->out_bytes >= b->out_budget_bytes && !b->out_paused) {
        b->out_paused = true;
        count_pause(b, BR_PAUSE_DISPATCH);
        if (!b->closing)
            uv_timer_start(&b->out_stall_timer, out_stall_check, BR_CONN_OUT_STALL_CHECK_MS,
                           BR_CONN_OUT_STALL_CHECK_MS);
        MG_DEBUG("broker: dispatch paused: %zu bytes queued to consumers (budget %zu)",
                 b->out_bytes, b->out_budget_bytes);
    }
}

static void out_unwait(br_conn *c)
{
    if (c->out_blocked) {
        c->out_blocked = false;
        mg_list_remove(&c->out_wait_link);
    }
}

/* Called when output bytes were given back (a write completed or was cancelled): once the total
 * fell below BR_CONN_OUT_RESUME_PCT of the budget, every waiting connection's consumers are
 * dispatched to again (those that still cannot take more wait again). */
static void out_wake(br_broker *b)
{
    if (!b->out_paused || b->out_bytes > b->out_budget_bytes / 100 * BR_CONN_OUT_RESUME_PCT)
        return;
    b->out_paused = false;
    if (!b->closing)
        uv_timer_stop(&b->out_stall_timer);
    mg_link woken;
    list_move_all(&b->out_waiters, &woken);
    while (!mg_list_empty(&woken)) {
        br_conn *c = MG_CONTAINER_OF(woken.next, br_conn, out_wait_link);
        mg_list_remove(&c->out_wait_link);
        c->out_blocked = false;
        br_conn_ref(c);
        br_conn_out_drained(c);
        br_conn_unref(c);
    }
}

/* While dispatch is paused by the budget: closes the waiting connections whose queue has not
 * moved for BR_CONN_OUT_STALL_MS (their bytes go when the cancelled writes complete). */
static void out_stall_check(uv_timer_t *t)
{
    br_broker *b = t->data;
    if (!b->out_paused || b->closing)
        return;
    uint64_t now = uv_now(b->loop);
    mg_link check;
    list_move_all(&b->out_waiters, &check);
    while (!mg_list_empty(&check)) {
        br_conn *c = MG_CONTAINER_OF(check.next, br_conn, out_wait_link);
        mg_list_remove(&c->out_wait_link);
        mg_list_push(&b->out_waiters, &c->out_wait_link);
        if (c->state == BR_CONN_CLOSING || mg_outq_queued_bytes(&c->out) == 0 ||
            now - c->out_progress_ms < BR_CONN_OUT_STALL_MS)
            continue;
        if (b->m_refused_not_reading != NULL)
            mg_counter_inc(b->m_refused_not_reading);
        log_refused(b, &b->stalled_logged_ms, &b->stalled_unlogged, REFUSED_NOT_READING, c);
        br_conn_close(c, NULL);
    }
}

void br_conn_consumers_changed(br_conn *c, bool has_consumers)
{
    br_broker *b = c->b;
    if (has_consumers) {
        b->consumer_conn_count++;
    } else {
        MG_ASSERT(b->consumer_conn_count > 0);
        b->consumer_conn_count--;
    }
}

/* Takes need bytes of the receive budget for c's next receive buffer (in place of what it
 * holds); false when they do not fit while others hold some. */
static bool recv_reserve(br_conn *c, size_t need)
{
    br_broker *b = c->b;
    if (need <= c->recv_held) {
        b->recv_bytes -= c->recv_held - need;
        c->recv_held = need;
        mem_gauges(b);
        return true;
    }
    size_t others = b->recv_bytes - c->recv_held;
    if (others > 0 && others + need > b->recv_budget_bytes)
        return false;
    b->recv_bytes = others + need;
    c->recv_held = need;
    mem_gauges(b);
    return true;
}

static void recv_wake(uv_timer_t *t);

static void recv_release(br_conn *c)
{
    br_broker *b = c->b;
    if (c->paused_recv) {
        c->paused_recv = false;
        mg_list_remove(&c->recv_wait_link);
    }
    if (c->recv_held == 0)
        return;
    MG_ASSERT(b->recv_bytes >= c->recv_held);
    b->recv_bytes -= c->recv_held;
    c->recv_held = 0;
    mem_gauges(b);
    /* Waiters resume from the loop, not from inside this connection's callbacks. */
    if (!mg_list_empty(&b->recv_waiters) && !b->closing)
        uv_timer_start(&b->recv_wake_timer, recv_wake, 0, 0);
}

/* Receive budget was given back: connections waiting for it resume reading, in order of
 * arrival, as long as their buffers fit. */
static void recv_wake(uv_timer_t *t)
{
    br_broker *b = t->data;
    while (!mg_list_empty(&b->recv_waiters)) {
        br_conn *c = MG_CONTAINER_OF(b->recv_waiters.next, br_conn, recv_wait_link);
        if (!recv_reserve(c, c->recv_need))
            return;
        mg_list_remove(&c->recv_wait_link);
        c->paused_recv = false;
        br_conn_ref(c);
        br_conn_resume_reading(c);
        br_conn_unref(c);
    }
}

static void recv_wait(br_conn *c, size_t need)
{
    br_broker *b = c->b;
    c->recv_need = need;
    if (c->paused_recv)
        return;
    c->paused_recv = true;
    mg_list_push(&b->recv_waiters, &c->recv_wait_link);
    br_conn_pause_reading(c);
    count_pause(b, BR_PAUSE_RECEIVE);
    MG_DEBUG("broker: %s waits for %zu bytes of receive buffer (%zu of %zu in use)", c->peer, need,
             b->recv_bytes, b->recv_budget_bytes);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

void br_conn_ref(br_conn *c)
{
    c->refs++;
}

void br_conn_unref(br_conn *c)
{
    MG_ASSERT(c->refs > 0);
    if (--c->refs > 0)
        return;
    br_broker *b = c->b;
    mg_outq_discard(&c->out);
    mg_outq_set_total(&c->out, NULL);
    recv_release(c);
    mg_buf_unref(c->rbuf);
    mg_freelist_clear(&c->send_pool);
    mg_list_remove(&c->link);
    b->conn_count--;
    if (b->m_connections)
        mg_gauge_set(b->m_connections, b->conn_count);
    mg_free(c);
    broker_maybe_closed(b);
}

static void conn_handle_closed(uv_handle_t *h)
{
    br_conn *c = h->data;
    if (--c->handles_open == 0)
        br_conn_unref(c);
}

void br_conn_close(br_conn *c, const char *reason)
{
    if (c->state == BR_CONN_CLOSING)
        return;
    if (reason != NULL)
        MG_INFO_LIMITED("broker: closing connection from %s: %s", c->peer, reason);
    c->state = BR_CONN_CLOSING;
    if (c->b->m_conn_closed)
        mg_counter_inc(c->b->m_conn_closed);
    /* Producers and consumers first: subscriptions redeliver what this client did not ack. */
    while (!mg_list_empty(&c->producers))
        br_producer_drop(MG_CONTAINER_OF(c->producers.next, br_producer, conn_link), false);
    while (!mg_list_empty(&c->consumers))
        br_consumer_drop(MG_CONTAINER_OF(c->consumers.next, br_consumer, conn_link), false);
    mg_outq_discard(&c->out);
    out_unwait(c);
    if (c->paused_recv) {
        c->paused_recv = false;
        mg_list_remove(&c->recv_wait_link);
    }
    c->paused_replies = false;
    mem_gauges(c->b);
    uv_close((uv_handle_t *)&c->keepalive, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* ---- output ---------------------------------------------------------------------------------- */

static void conn_written(mg_outq *q, int status)
{
    br_conn *c = q->arg;
    br_broker *b = c->b;
    if (c->state != BR_CONN_CLOSING && status != MG_OK) {
        br_conn_close(c, mg_strerror(status));
    } else if (c->state != BR_CONN_CLOSING) {
        c->out_progress_ms = uv_now(b->loop);
        br_conn_flush(c);
        if (c->out_blocked && br_conn_writable(c)) {
            out_unwait(c);
            br_conn_out_drained(c);
        }
        if (c->paused_replies && mg_outq_queued_bytes(&c->out) < conn_out_share(b)) {
            c->paused_replies = false;
            br_conn_resume_reading(c);
        }
    }
    mem_gauges(b);
    out_wake(b);
}

void br_conn_flush(br_conn *c)
{
    if (c->state == BR_CONN_CLOSING)
        return;
    int rc = mg_outq_flush(&c->out, (uv_stream_t *)&c->tcp);
    if (rc != MG_OK)
        br_conn_close(c, mg_strerror(rc));
}

int br_conn_queue(br_conn *c, const mg_slice *slices, size_t count)
{
    if (c->state == BR_CONN_CLOSING)
        return MG_ECLOSED;
    if (mg_outq_queued_bytes(&c->out) == 0)
        c->out_progress_ms = uv_now(c->b->loop);
    int rc = mg_outq_push(&c->out, slices, count);
    mem_gauges(c->b);
    return rc;
}

void br_conn_send(br_conn *c, mg_buf *frame)
{
    if (c->state == BR_CONN_CLOSING)
        return;
    if (mg_outq_queued_bytes(&c->out) == 0)
        c->out_progress_ms = uv_now(c->b->loop);
    int rc = mg_outq_push_buf(&c->out, frame);
    mem_gauges(c->b);
    if (rc != MG_OK) {
        br_conn_close(c, mg_strerror(rc));
        return;
    }
    br_conn_flush(c);
}

void br_conn_send_cmd(br_conn *c, const Magnetar__Pulsar__BaseCommand *cmd)
{
    if (c->state == BR_CONN_CLOSING)
        return;
    mg_buf *frame = NULL;
    int rc = pw_command_encode(cmd, &frame);
    if (rc != MG_OK) {
        br_conn_close(c, mg_strerror(rc));
        return;
    }
    br_conn_send(c, frame);
    mg_buf_unref(frame);
}

void br_conn_send_error(br_conn *c, uint64_t request_id, Magnetar__Pulsar__ServerError err,
                        const char *message)
{
    Magnetar__Pulsar__CommandError e = MAGNETAR__PULSAR__COMMAND_ERROR__INIT;
    e.request_id = request_id;
    e.error = err;
    e.message = (char *)(message != NULL ? message : "");
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(ERROR);
    cmd.error = &e;
    br_conn_send_cmd(c, &cmd);
}

bool br_conn_handles_full(br_conn *c, uint64_t request_id, bool producers)
{
    const mg_link *head = producers ? &c->producers : &c->consumers;
    size_t n = 0;
    for (const mg_link *l = head->next; l != head && n < BR_CONN_HANDLES_MAX; l = l->next)
        n++;
    if (n < BR_CONN_HANDLES_MAX)
        return false;
    br_conn_send_error(c, request_id, MAGNETAR__PULSAR__SERVER_ERROR__TooManyRequests,
                       producers ? "too many producers on this connection"
                                 : "too many consumers on this connection");
    return true;
}

void br_conn_send_success(br_conn *c, uint64_t request_id)
{
    Magnetar__Pulsar__CommandSuccess s = MAGNETAR__PULSAR__COMMAND_SUCCESS__INIT;
    s.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SUCCESS);
    cmd.success = &s;
    br_conn_send_cmd(c, &cmd);
}

static void send_simple(br_conn *c, Magnetar__Pulsar__BaseCommand__Type type)
{
    Magnetar__Pulsar__CommandPing ping = MAGNETAR__PULSAR__COMMAND_PING__INIT;
    Magnetar__Pulsar__CommandPong pong = MAGNETAR__PULSAR__COMMAND_PONG__INIT;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = type;
    if (type == T(PING))
        cmd.ping = &ping;
    else
        cmd.pong = &pong;
    br_conn_send_cmd(c, &cmd);
}

/* ---- commands ---------------------------------------------------------------------------------
 */

static void handle_connect(br_conn *c, const Magnetar__Pulsar__CommandConnect *cmd)
{
    if (c->state != BR_CONN_AWAIT_CONNECT) {
        br_conn_count_proto_error(c->b, "connect_twice");
        br_conn_close(c, "CONNECT on a connected connection");
        return;
    }
    int client_version = cmd->has_protocol_version ? cmd->protocol_version : 0;
    c->protocol_version =
        client_version < BR_PROTOCOL_VERSION ? client_version : BR_PROTOCOL_VERSION;
    c->bem_supported = client_version >= 18 && cmd->feature_flags != NULL &&
                       cmd->feature_flags->has_supports_broker_entry_metadata &&
                       cmd->feature_flags->supports_broker_entry_metadata;
    snprintf(c->client_version, sizeof(c->client_version), "%s",
             cmd->client_version != NULL ? cmd->client_version : "");
    c->state = BR_CONN_READY;

    Magnetar__Pulsar__FeatureFlags ff = MAGNETAR__PULSAR__FEATURE_FLAGS__INIT;
    ff.has_supports_broker_entry_metadata = 1;
    ff.supports_broker_entry_metadata = 1;
    Magnetar__Pulsar__CommandConnected ok = MAGNETAR__PULSAR__COMMAND_CONNECTED__INIT;
    ok.server_version = (char *)"Magnetar " MG_VERSION;
    ok.has_protocol_version = 1;
    ok.protocol_version = c->protocol_version;
    ok.has_max_message_size = 1;
    ok.max_message_size = (int32_t)c->b->opts.message_bytes_max;
    ok.feature_flags = &ff;
    Magnetar__Pulsar__BaseCommand reply = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    reply.type = T(CONNECTED);
    reply.connected = &ok;
    br_conn_send_cmd(c, &reply);
    MG_DEBUG("broker: %s connected (%s, protocol %d)", c->peer, c->client_version,
             c->protocol_version);
}

/* A command this broker does not serve: ERROR, naming the command's request_id when it has
 * one so that the client fails that request instead of waiting for it. */
static void handle_unknown(br_conn *c, const pw_frame *f)
{
    br_conn_count_proto_error(c->b, "unsupported_command");
    uint64_t request_id = 0;
    const ProtobufCMessage *body = pw_command_body(f->cmd);
    if (body != NULL) {
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field_by_name(body->descriptor, "request_id");
        if (fd != NULL && fd->type == PROTOBUF_C_TYPE_UINT64 &&
            fd->label != PROTOBUF_C_LABEL_REPEATED)
            memcpy(&request_id, (const char *)body + fd->offset, sizeof(request_id));
    }
    char message[96];
    snprintf(message, sizeof(message), "%s is not supported by this broker",
             pw_command_type_name(f->cmd->type));
    br_conn_send_error(c, request_id, MAGNETAR__PULSAR__SERVER_ERROR__NotAllowedError, message);
}

static void handle_frame(br_conn *c, const pw_frame *f, const uint8_t *frame, size_t frame_off)
{
    const Magnetar__Pulsar__BaseCommand *cmd = f->cmd;
    count_command(c->b, cmd->type);
    if (c->state == BR_CONN_AWAIT_CONNECT && cmd->type != T(CONNECT) && cmd->type != T(PING) &&
        cmd->type != T(PONG)) {
        br_conn_count_proto_error(c->b, "not_connected");
        br_conn_close(c, "a command before CONNECT");
        return;
    }
    switch (cmd->type) {
    case T(CONNECT):
        handle_connect(c, cmd->connect);
        break;
    case T(PING):
        send_simple(c, T(PONG));
        break;
    case T(PONG):
        break;
    case T(LOOKUP):
        br_handle_lookup(c, cmd->lookup_topic);
        break;
    case T(PARTITIONED_METADATA):
        br_handle_partitioned_metadata(c, cmd->partition_metadata);
        break;
    case T(GET_TOPICS_OF_NAMESPACE):
        br_handle_topics_of_namespace(c, cmd->get_topics_of_namespace);
        break;
    case T(PRODUCER):
        br_handle_producer(c, cmd->producer);
        break;
    case T(SEND):
        br_handle_send(c, f, frame, frame_off);
        break;
    case T(CLOSE_PRODUCER):
        br_handle_close_producer(c, cmd->close_producer);
        break;
    case T(SUBSCRIBE):
        br_handle_subscribe(c, cmd->subscribe);
        break;
    case T(FLOW):
        br_handle_flow(c, cmd->flow);
        break;
    case T(ACK):
        br_handle_ack(c, cmd->ack);
        break;
    case T(REDELIVER_UNACKNOWLEDGED_MESSAGES):
        br_handle_redeliver(c, cmd->redeliver_unacknowledged_messages);
        break;
    case T(SEEK):
        br_handle_seek(c, cmd->seek);
        break;
    case T(UNSUBSCRIBE):
        br_handle_unsubscribe(c, cmd->unsubscribe);
        break;
    case T(CLOSE_CONSUMER):
        br_handle_close_consumer(c, cmd->close_consumer);
        break;
    case T(GET_LAST_MESSAGE_ID):
        br_handle_get_last_message_id(c, cmd->get_last_message_id);
        break;
    default:
        handle_unknown(c, f);
        break;
    }
}

/* ---- input -------------------------------------------------------------------------------------
 */

static uint32_t frame_limit(const br_broker *b)
{
    return b->opts.message_bytes_max + BR_FRAME_PADDING_BYTES;
}

/* The frame limit of the connection's state: before CONNECT, only what a CONNECT can be. */
static uint32_t conn_frame_limit(const br_conn *c)
{
    uint32_t limit = frame_limit(c->b);
    if (c->state == BR_CONN_AWAIT_CONNECT && limit > BR_CONNECT_FRAME_BYTES_MAX)
        limit = BR_CONNECT_FRAME_BYTES_MAX;
    return limit;
}

/* A frame announced before CONNECT is larger than a CONNECT can be: the connection is closed at
 * the header, before any of the frame is buffered. Per connection this logs at debug level only;
 * a warning sums the refusals at most once per BR_REFUSED_LOG_PERIOD_MS. */
static void refuse_before_connect(br_conn *c, const uint8_t *head)
{
    br_broker *b = c->b;
    uint32_t total =
        ((uint32_t)head[0] << 24) | ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) | head[3];
    if (b->m_refused_before_connect != NULL)
        mg_counter_inc(b->m_refused_before_connect);
    MG_DEBUG("broker: %s announced a frame of %u bytes before CONNECT (at most %u)", c->peer, total,
             BR_CONNECT_FRAME_BYTES_MAX);
    log_refused(b, &b->refused_logged_ms, &b->refused_unlogged, REFUSED_BEFORE_CONNECT, c);
    br_conn_close(c, NULL);
}

/* The capacity conn_alloc gives a new receive buffer for a frame of want bytes. */
static size_t rbuf_cap(const br_conn *c, size_t want)
{
    /* Room for several frames when they are large (a producer's batches), up to
     * BR_READ_BUF_LARGE_BYTES: the partial frame at the end of a buffer is copied into the next
     * one, and with room for one frame that copy was 3.9 % of the standalone's CPU samples at
     * ~400 MiB/s of 128 KiB batches (1.5 % with room for four). Not before CONNECT. */
    size_t cap = want;
    if (c->state == BR_CONN_READY && want > BR_READ_BUF_BYTES &&
        want * BR_READ_BUF_LARGE_FRAMES <= BR_READ_BUF_LARGE_BYTES)
        cap = want * BR_READ_BUF_LARGE_FRAMES;
    return cap + BR_READ_BUF_BYTES;
}

/* Whether the current receive buffer takes the rest of a frame of want bytes (and 1 KiB more):
 * else conn_alloc moves the unparsed bytes to a fresh one. */
static bool rbuf_fits(const br_conn *c, size_t want)
{
    return c->rbuf != NULL && mg_buf_cap(c->rbuf) - c->rpos >= want &&
           mg_buf_cap(c->rbuf) - mg_buf_len(c->rbuf) >= 1024;
}

static size_t rbuf_want(const br_conn *c)
{
    return c->rwant > BR_READ_BUF_BYTES ? c->rwant : BR_READ_BUF_BYTES;
}

/* A frame of c->rwant bytes is being received: takes the receive budget for the buffer it needs
 * (CONNECTION MEMORY 4); false when the connection must wait for it (reading stopped). */
static bool conn_reserve_frame(br_conn *c)
{
    size_t want = rbuf_want(c);
    if (want <= BR_READ_BUF_BYTES || rbuf_fits(c, want))
        return true;
    size_t need = rbuf_cap(c, want);
    if (recv_reserve(c, need))
        return true;
    recv_wait(c, need);
    return false;
}

/* Everything received was parsed: a large buffer goes back (its bytes stay alive only as long as
 * payloads handed on from it do); the next read gets a standard one. */
static void conn_drop_large_rbuf(br_conn *c)
{
    if (c->recv_held == 0 || c->rbuf == NULL || mg_buf_len(c->rbuf) != c->rpos)
        return;
    mg_buf_unref(c->rbuf);
    c->rbuf = NULL;
    c->rpos = 0;
    recv_release(c);
}

static void conn_process(br_conn *c)
{
    while (c->state != BR_CONN_CLOSING && c->rbuf != NULL) {
        const uint8_t *data = mg_buf_data(c->rbuf);
        size_t avail = mg_buf_len(c->rbuf) - c->rpos;
        size_t frame_len = 0;
        int rc = pw_frame_size(data + c->rpos, avail, conn_frame_limit(c), &frame_len);
        if (rc == MG_EAGAIN) {
            c->rwant = 0;
            conn_drop_large_rbuf(c);
            return;
        }
        if (rc == MG_ELIMIT && c->state == BR_CONN_AWAIT_CONNECT) {
            refuse_before_connect(c, data + c->rpos);
            return;
        }
        if (rc != MG_OK) {
            br_conn_count_proto_error(c->b, rc == MG_ELIMIT ? "frame_too_large" : "bad_frame");
            br_conn_close(c, rc == MG_ELIMIT ? "frame larger than max_message_size"
                                             : "malformed frame size");
            return;
        }
        if (frame_len > avail) {
            c->rwant = frame_len;
            conn_reserve_frame(c);
            return;
        }
        c->rwant = 0;
        if (c->state == BR_CONN_READY &&
            mg_outq_queued_bytes(&c->out) >= conn_out_share(c->b) + frame_limit(c->b)) {
            /* CONNECTION MEMORY 3: the peer does not read what it asked for. */
            c->paused_replies = true;
            br_conn_pause_reading(c);
            count_pause(c->b, BR_PAUSE_REPLIES);
            MG_DEBUG("broker: %s does not read its answers (%zu bytes queued): not reading it",
                     c->peer, mg_outq_queued_bytes(&c->out));
            return;
        }
        pw_frame f;
        rc = pw_frame_decode(data + c->rpos, frame_len, &f);
        if (rc == MG_ENOTSUP) {
            br_conn_count_proto_error(c->b, "unknown_command");
            br_conn_send_error(c, 0, MAGNETAR__PULSAR__SERVER_ERROR__NotAllowedError,
                               "unknown command type");
            c->rpos += frame_len;
            continue;
        }
        if (rc != MG_OK) {
            br_conn_count_proto_error(c->b, "bad_command");
            br_conn_close(c, "malformed command");
            return;
        }
        size_t frame_off = c->rpos;
        c->rpos += frame_len;
        handle_frame(c, &f, data + frame_off, frame_off);
        pw_frame_free(&f);
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    br_conn *c = h->data;
    size_t want = rbuf_want(c);
    size_t unparsed = c->rbuf != NULL ? mg_buf_len(c->rbuf) - c->rpos : 0;
    if (!rbuf_fits(c, want)) {
        /* A fresh buffer when the old one is full, the frame is larger than what is left, or the
         * old one is referenced elsewhere and mostly parsed (rbuf_cap says how large). A large
         * one was taken from the receive budget by conn_reserve_frame before reading resumed. */
        size_t cap = rbuf_cap(c, want);
        mg_buf *nb = mg_buf_new(cap);
        if (nb == NULL) {
            out->base = NULL;
            out->len = 0;
            return;
        }
        if (want > BR_READ_BUF_BYTES) {
            if (!recv_reserve(c, cap)) {
                /* Not reserved beforehand (never expected): counted anyway, over the budget. */
                c->b->recv_bytes += cap - c->recv_held;
                c->recv_held = cap;
                mem_gauges(c->b);
            }
        } else {
            recv_release(c);
        }
        if (unparsed > 0)
            memcpy(mg_buf_data(nb), mg_buf_data(c->rbuf) + c->rpos, unparsed);
        mg_buf_set_len(nb, unparsed);
        mg_buf_unref(c->rbuf);
        c->rbuf = nb;
        c->rpos = 0;
    }
    out->base = (char *)mg_buf_data(c->rbuf) + mg_buf_len(c->rbuf);
    out->len = mg_buf_cap(c->rbuf) - mg_buf_len(c->rbuf);
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    br_conn *c = stream->data;
    if (nread == UV_ENOBUFS) {
        br_conn_close(c, "out of memory for the receive buffer");
        return;
    }
    if (nread < 0) {
        br_conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    c->last_in_ms = uv_now(c->b->loop);
    c->idle_ping_sent = false;
    mg_buf_set_len(c->rbuf, mg_buf_len(c->rbuf) + (size_t)nread);
    br_conn_ref(c);
    conn_process(c);
    br_conn_unref(c);
}

void br_conn_pause_reading(br_conn *c)
{
    if (c->reading && c->state != BR_CONN_CLOSING) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* Reading resumes only when no reason to pause it remains (pending sends, receive budget,
 * unread replies). */
void br_conn_resume_reading(br_conn *c)
{
    if (c->paused_sends || c->paused_recv || c->paused_replies)
        return;
    if (!c->reading && c->state != BR_CONN_CLOSING) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
        if (rc < 0) {
            br_conn_close(c, uv_strerror(rc));
            return;
        }
        c->reading = true;
        /* Frames already buffered while paused. */
        br_conn_ref(c);
        conn_process(c);
        br_conn_unref(c);
    }
}

static void conn_keepalive(uv_timer_t *t)
{
    br_conn *c = t->data;
    if (c->state == BR_CONN_CLOSING)
        return;
    uint64_t now = uv_now(c->b->loop);
    uint64_t period_ms = (uint64_t)c->b->opts.keepalive_s * 1000;
    if (c->state == BR_CONN_AWAIT_CONNECT) {
        /* CONNECT is due within the keep-alive period, and BR_CONNECT_TIMEOUT_MS at most, of the
         * accept, not of the last byte in: a socket that never speaks, or trickles bytes, must
         * not hold a connection slot (and its buffer) for long. Counted with the refusals. */
        uint64_t due_ms = period_ms < BR_CONNECT_TIMEOUT_MS ? period_ms : BR_CONNECT_TIMEOUT_MS;
        if (now - c->accepted_ms >= due_ms) {
            if (c->b->m_refused_connect_timeout)
                mg_counter_inc(c->b->m_refused_connect_timeout);
            br_conn_close(c, "no CONNECT in time after connecting");
        }
        return;
    }
    uint64_t idle_ms = now - c->last_in_ms;
    if (idle_ms < period_ms)
        return;
    if (c->idle_ping_sent) {
        br_conn_close(c, "no answer to PING: keep-alive timeout");
        return;
    }
    if (!c->reading) {
        /* Paused (CONNECTION MEMORY 5): the peer's answer would not be read. */
        c->last_in_ms = uv_now(c->b->loop);
        return;
    }
    c->idle_ping_sent = true;
    c->last_in_ms = uv_now(c->b->loop) - period_ms / 2; /* answer due within half a period more */
    send_simple(c, T(PING));
}

/* ---- listener
 * ------------------------------------------------------------------------------------ */

/* A socket accepted by the listener (common/listen.c, which backs off when descriptors run
 * out). Past opts.connections_max it is closed at once: the descriptors left are the reserve
 * that keeps files, the bookie and the admin port working. */
static void on_connection(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    (void)addr;
    (void)addr_len;
    br_broker *b = arg;
    if (b->conn_count >= b->opts.connections_max) {
        close(fd);
        if (b->m_conn_refused)
            mg_counter_inc(b->m_conn_refused);
        MG_WARN_LIMITED("broker: %u connections open, the limit: refusing another (the limit "
                        "follows the descriptor limit; see docs/broker.md)",
                        (unsigned)b->conn_count);
        return;
    }
    br_conn *c = mg_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        MG_WARN_LIMITED("broker: out of memory for a connection");
        return;
    }
    c->b = b;
    mg_list_init(&c->producers);
    mg_list_init(&c->consumers);
    mg_list_init(&c->link);
    mg_outq_init(&c->out, conn_written, c);
    mg_outq_set_total(&c->out, &b->out_bytes);
    uv_tcp_init(b->loop, &c->tcp);
    uv_timer_init(b->loop, &c->keepalive);
    c->tcp.data = c->keepalive.data = c;
    c->handles_open = 2;
    c->refs = 1;
    mg_list_push(&b->conns, &c->link);
    b->conn_count++;
    if (b->m_connections)
        mg_gauge_set(b->m_connections, b->conn_count);
    if (b->m_conn_opened)
        mg_counter_inc(b->m_conn_opened);
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        c->state = BR_CONN_AWAIT_CONNECT;
        MG_WARN_LIMITED("broker: cannot use an accepted socket: %s", uv_strerror(rc));
        br_conn_close(c, NULL);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        mg_sockaddr_format((const struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    else
        snprintf(c->peer, sizeof(c->peer), "?");
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_in_ms = c->accepted_ms = uv_now(b->loop);
    uint64_t period_ms = (uint64_t)b->opts.keepalive_s * 1000;
    uint64_t first_ms =
        period_ms / 2 < BR_CONNECT_TIMEOUT_MS ? period_ms / 2 : BR_CONNECT_TIMEOUT_MS;
    uv_timer_start(&c->keepalive, conn_keepalive, first_ms, period_ms / 2);
    c->state = BR_CONN_AWAIT_CONNECT;
    br_conn_resume_reading(c);
}

static void stats_tick(uv_timer_t *t)
{
    br_broker *b = t->data;
    for (size_t i = 0; i < b->topics.bucket_count; i++)
        for (br_topic *tp = b->topics.buckets[i]; tp != NULL; tp = tp->hash_next)
            br_topic_stats_tick(tp, BR_STATS_PERIOD_S);
    log_refused_rest(b, &b->refused_logged_ms, &b->refused_unlogged, REFUSED_BEFORE_CONNECT);
    log_refused_rest(b, &b->stalled_logged_ms, &b->stalled_unlogged, REFUSED_NOT_READING);
}

/* The metadata session expired: this broker's ownership nodes are gone and another broker may
 * take its bundles over. Drop them and close every topic (clients look them up again). */
static void session_changed(md_session_state state, void *arg)
{
    br_broker *b = arg;
    if (state != MD_SESSION_EXPIRED || b->closing)
        return;
    MG_WARN("broker: metadata session expired: releasing every topic");
    br_owned_clear(b);
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        br_topic *t = b->topics.buckets[i];
        while (t != NULL) {
            br_topic *next = t->hash_next;
            if (t->state == BR_TOPIC_OPEN)
                br_topic_close(t, false, NULL, NULL);
            t = next;
        }
    }
}

static void register_metrics(br_broker *b)
{
    mg_metrics *m = b->opts.metrics;
    if (m == NULL)
        return;
    b->m_connections = mg_metrics_unlabelled_gauge(m, "pulsar_active_connections",
                                                   "Open Pulsar protocol connections");
    b->m_conn_opened = mg_metrics_unlabelled_counter(m, "pulsar_connection_created_total_count",
                                                     "Pulsar protocol connections accepted");
    b->m_conn_refused = mg_metrics_unlabelled_counter(
        m, "magnetar_broker_connections_refused_total",
        "Pulsar protocol connections closed at accept: the connection limit was reached");
    b->m_conn_closed = mg_metrics_unlabelled_counter(m, "pulsar_connection_closed_total_count",
                                                     "Pulsar protocol connections closed");
    static const char *const reason[] = { "reason" };
    b->m_proto_errors = mg_metrics_counter_family(
        m, "magnetar_broker_protocol_errors_total",
        "Bad input from Pulsar clients, by kind (the connection was answered or closed)", 1,
        reason);
    static const char *const type[] = { "type" };
    b->m_commands = mg_metrics_counter_family(m, "magnetar_broker_commands_total",
                                              "Pulsar commands received, by type", 1, type);
    b->m_publish_latency_us = mg_metrics_unlabelled_histogram(
        m, "magnetar_broker_publish_latency_ms",
        "Time from a SEND's arrival to its SEND_RECEIPT, in milliseconds", 0.001);
    mg_metric_family *refused = mg_metrics_counter_family(
        m, "magnetar_broker_refused_total",
        "Connections refused or closed to protect the broker's memory, by reason "
        "(frame_before_connect: a frame larger than a CONNECT can be before CONNECT; "
        "not_reading: consumers that did not read for 10 s while the output budget was used up; "
        "connect_timeout: no CONNECT within the keep-alive period, 10 s at most, of the accept)",
        1, reason);
    const char *before_connect[] = { "frame_before_connect" };
    b->m_refused_before_connect = refused ? mg_metrics_counter(refused, before_connect) : NULL;
    const char *not_reading[] = { "not_reading" };
    b->m_refused_not_reading = refused ? mg_metrics_counter(refused, not_reading) : NULL;
    const char *connect_timeout[] = { "connect_timeout" };
    b->m_refused_connect_timeout = refused ? mg_metrics_counter(refused, connect_timeout) : NULL;
    static const char *const kind[] = { "kind" };
    mg_metric_family *bytes = mg_metrics_gauge_family(
        m, "magnetar_broker_connection_memory_bytes",
        "Connection memory in use: output (bytes queued to consumers and replies) and receive "
        "(buffers of frames larger than 64 KiB being received)",
        1, kind);
    mg_metric_family *peak = mg_metrics_gauge_family(
        m, "magnetar_broker_connection_memory_bytes_peak",
        "Highest magnetar_broker_connection_memory_bytes since the broker started", 1, kind);
    mg_metric_family *limit = mg_metrics_gauge_family(
        m, "magnetar_broker_connection_memory_limit_bytes",
        "The budget of each kind of connection memory (half of --connection-memory-mb each)", 1,
        kind);
    mg_metric_family *pauses = mg_metrics_counter_family(
        m, "magnetar_broker_connection_memory_pauses_total",
        "Pauses for connection memory: dispatch (the output budget was used up), receive (a "
        "connection waited for a receive buffer), replies (a client that did not read its "
        "answers was not read)",
        1, kind);
    static const char *const kinds[2] = { "output", "receive" };
    for (int i = 0; i < 2; i++) {
        const char *v[] = { kinds[i] };
        b->m_mem_bytes[i] = bytes ? mg_metrics_gauge(bytes, v) : NULL;
        b->m_mem_peak[i] = peak ? mg_metrics_gauge(peak, v) : NULL;
        mg_gauge *g = limit ? mg_metrics_gauge(limit, v) : NULL;
        if (g != NULL)
            mg_gauge_set(g, (double)(i == BR_MEM_OUT ? b->out_budget_bytes : b->recv_budget_bytes));
    }
    if (b->m_mem_bytes[BR_MEM_OUT] == NULL || b->m_mem_bytes[BR_MEM_RECV] == NULL ||
        b->m_mem_peak[BR_MEM_OUT] == NULL || b->m_mem_peak[BR_MEM_RECV] == NULL)
        b->m_mem_bytes[BR_MEM_OUT] = NULL; /* mem_gauges sets all four or none */
    static const char *const pause_kinds[3] = { "dispatch", "receive", "replies" };
    for (int i = 0; i < 3; i++) {
        const char *v[] = { pause_kinds[i] };
        b->m_mem_pauses[i] = pauses ? mg_metrics_counter(pauses, v) : NULL;
    }
}

int br_broker_start(ml_env *env, const br_broker_opts *opts, br_broker **out)
{
    if (opts == NULL ||
        (opts->message_bytes_max != 0 &&
         (opts->message_bytes_max < 1024 || opts->message_bytes_max > BR_MESSAGE_BYTES_MAX)) ||
        (opts->connection_memory_bytes != 0 &&
         opts->connection_memory_bytes < BR_CONN_MEMORY_BYTES_MIN))
        return MG_EINVAL;
    br_broker *b = mg_calloc(1, sizeof(*b));
    if (b == NULL)
        return MG_ENOMEM;
    b->loop = ml_env_loop(env);
    b->env = env;
    b->md = ml_env_md(env);
    b->opts = *opts;
    if (b->opts.message_bytes_max == 0)
        b->opts.message_bytes_max = BR_MESSAGE_BYTES_DEFAULT;
    if (b->opts.keepalive_s == 0)
        b->opts.keepalive_s = 30;
    snprintf(b->host, sizeof(b->host), "%s", opts->host != NULL ? opts->host : "0.0.0.0");
    const char *adv = opts->advertised_address;
    if (adv == NULL || adv[0] == '\0')
        adv = strcmp(b->host, "0.0.0.0") == 0 ? "127.0.0.1" : b->host;
    snprintf(b->advertised, sizeof(b->advertised), "%s", adv);
    snprintf(b->cluster, sizeof(b->cluster), "%s",
             opts->cluster != NULL ? opts->cluster : "standalone");
    b->opts.host = b->host;
    b->opts.advertised_address = b->advertised;
    b->opts.cluster = b->cluster;
    mg_list_init(&b->conns);
    uint64_t mem = opts->connection_memory_bytes != 0 ? opts->connection_memory_bytes
                                                      : BR_CONN_MEMORY_BYTES_DEFAULT;
    if (mem > SIZE_MAX)
        mem = SIZE_MAX;
    b->out_budget_bytes = (size_t)(mem / 2);
    b->recv_budget_bytes = (size_t)(mem - mem / 2);
    mg_list_init(&b->out_waiters);
    mg_list_init(&b->recv_waiters);
    b->topics.bucket_count = 1024;
    b->topics.buckets = mg_calloc(b->topics.bucket_count, sizeof(br_topic *));
    if (b->topics.buckets == NULL) {
        mg_free(b);
        return MG_ENOMEM;
    }
    register_metrics(b);

    struct sockaddr_in addr;
    int rc = uv_ip4_addr(b->host, opts->port, &addr);
    if (rc != 0) {
        mg_free(b->topics.buckets);
        mg_free(b);
        return MG_EINVAL;
    }
    if (b->opts.connections_max == 0 || b->opts.connections_max > BR_CONNECTIONS_MAX)
        b->opts.connections_max = BR_CONNECTIONS_MAX;
    int lfd = -1;
    rc = mg_listen_socket("broker", b->host, opts->port, 511, &lfd, NULL);
    if (rc == MG_OK)
        rc = mg_listener_start(b->loop, lfd, "broker", on_connection, b, &b->listener);
    if (rc != MG_OK) {
        mg_free(b->topics.buckets);
        mg_free(b);
        return rc;
    }
    pf_env_opts po = { .tail_cache_bytes = opts->tail_cache_bytes,
                       .prefetch_bytes = opts->prefetch_bytes,
                       .prefetch_off = opts->prefetch_off,
                       .catchup_duty_pct = opts->catchup_duty_pct,
                       .metrics = opts->metrics };
    rc = pf_env_create(b->loop, &po, &b->pf);
    if (rc != MG_OK) {
        mg_listener_close(b->listener, NULL, NULL);
        uv_run(b->loop, UV_RUN_NOWAIT);
        mg_free(b->topics.buckets);
        mg_free(b);
        return rc;
    }
    if (opts->kafka) {
        rc = kop_start(b, b->host, opts->kafka_port, &b->kop);
        if (rc != MG_OK) {
            pf_env_destroy(b->pf);
            mg_listener_close(b->listener, NULL, NULL);
            uv_run(b->loop, UV_RUN_NOWAIT);
            mg_free(b->topics.buckets);
            mg_free(b);
            return rc;
        }
    }
    rc = br_ns_start(b);
    if (rc != MG_OK) {
        if (b->kop != NULL)
            kop_close(b->kop, NULL, NULL);
        pf_env_destroy(b->pf);
        mg_listener_close(b->listener, NULL, NULL);
        uv_run(b->loop, UV_RUN_NOWAIT);
        mg_free(b->topics.buckets);
        mg_free(b);
        return rc;
    }
    b->listening = true;
    snprintf(b->service_url, sizeof(b->service_url), "pulsar://%s:%u", b->advertised,
             (unsigned)br_broker_port(b));
    md_client_on_session(b->md, session_changed, b);
    uv_timer_init(b->loop, &b->stats_timer);
    b->stats_timer.data = b;
    uv_timer_start(&b->stats_timer, stats_tick, BR_STATS_PERIOD_S * 1000, BR_STATS_PERIOD_S * 1000);
    uv_timer_init(b->loop, &b->recv_wake_timer);
    b->recv_wake_timer.data = b;
    uv_timer_init(b->loop, &b->out_stall_timer);
    b->out_stall_timer.data = b;
    br_policy_start(b);
    *out = b;
    return MG_OK;
}

uint16_t br_broker_port(const br_broker *b)
{
    return mg_listener_port(b->listener);
}

uint16_t br_broker_kafka_port(const br_broker *b)
{
    return b->kop != NULL ? kop_port(b->kop) : 0;
}

void br_broker_set_http_port(br_broker *b, uint16_t http_port)
{
    b->opts.http_port = http_port;
}

/* ---- close ------------------------------------------------------------------------------------
 */

static void broker_handle_closed(uv_handle_t *h)
{
    br_broker *b = h->data;
    MG_ASSERT(b->close_pending > 0);
    b->close_pending--;
    broker_maybe_closed(b);
}

static void broker_maybe_closed(br_broker *b)
{
    if (!b->closing || b->close_pending > 0 || !mg_list_empty(&b->conns) || b->topics.count > 0)
        return;
    void (*cb)(void *) = b->closed_cb;
    void *arg = b->closed_arg;
    br_owned_clear(b);
    pf_env_destroy(b->pf); /* its handles close on the loop, which runs on */
    mg_free(b->topics.buckets);
    mg_free(b);
    if (cb != NULL)
        cb(arg);
}

static void broker_listener_closed(void *arg)
{
    br_broker *b = arg;
    MG_ASSERT(b->close_pending > 0);
    b->close_pending--;
    broker_maybe_closed(b);
}

static void kop_closed(void *arg)
{
    br_broker *b = arg;
    b->kop = NULL;
    broker_listener_closed(b);
}

static void ns_cache_closed(void *arg)
{
    broker_listener_closed(arg);
}

static void topic_closed_for_shutdown(int status, void *arg)
{
    (void)status;
    br_broker *b = arg;
    broker_maybe_closed(b);
}

void br_broker_close(br_broker *b, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!b->closing);
    b->closing = true;
    md_client_on_session(b->md, NULL, NULL);
    b->closed_cb = closed;
    b->closed_arg = arg;
    b->close_pending = 4;
    mg_listener_close(b->listener, broker_listener_closed, b);
    if (b->kop != NULL) {
        /* Kafka connections first: their readers hold topics. */
        b->close_pending++;
        kop_close(b->kop, kop_closed, b);
    }
    uv_close((uv_handle_t *)&b->stats_timer, broker_handle_closed);
    b->stats_timer.data = b;
    uv_close((uv_handle_t *)&b->recv_wake_timer, broker_handle_closed);
    uv_close((uv_handle_t *)&b->out_stall_timer, broker_handle_closed);
    b->close_pending += (uint32_t)br_policy_close(b, broker_handle_closed);
    /* Connections first (their consumers and producers detach), then topics. */
    for (mg_link *l = b->conns.next; l != &b->conns;) {
        br_conn *c = MG_CONTAINER_OF(l, br_conn, link);
        l = l->next;
        br_conn_close(c, NULL);
    }
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        br_topic *t = b->topics.buckets[i];
        while (t != NULL) {
            br_topic *next = t->hash_next;
            if (t->state != BR_TOPIC_CLOSING)
                br_topic_close(t, false, topic_closed_for_shutdown, b);
            t = next;
        }
    }
    /* Then the namespace cache: topic opens still asking it get MG_ECLOSED. */
    b->close_pending++;
    br_ns_close(b, ns_cache_closed, b);
    broker_maybe_closed(b);
}
