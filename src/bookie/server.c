/*
 * The bookie RPC server (see bookie.h for the API, protocol.h for the wire format).
 *
 * CONNECTION LIFE
 *
 *     accepted --> OPEN (reading) <--> OPEN (paused: backpressure) --> CLOSING --> freed
 *                                                                   (refs == 0)
 *   - OPEN: frames are decoded and dispatched one by one. Each request handed to the storage
 *     holds the connection (refs) and counts as in flight until its callback has queued the
 *     response. Answers not needing the storage (HEALTH, errors) are queued at once.
 *   - Backpressure: a connection stops reading (uv_read_stop) while inflight >=
 *     inflight_max_per_conn or its queued output >= BK_SERVER_CONN_OUT_BYTES_MAX, and also stops
 *     decoding frames already received. When a request completes or a write finishes, the
 *     buffered frames are decoded first and reading resumes only if still under both limits. So
 *     a connection's memory is bounded by those limits plus one frame.
 *   - Output is coalesced by the bk_outq: responses queued while a write is in flight go out
 *     together when it completes; every dispatch batch and every completion flushes.
 *   - CLOSING (peer closed, read or write error, malformed frame, server closing): the handle
 *     is closed, queued output and buffered input dropped. Requests still in the storage keep
 *     the struct alive; their responses are dropped when they come. The struct is freed when
 *     the handle's close callback has run and the last request has called back (refs == 0).
 *
 * SERVER LIFE: bk_server_close closes the listener and every connection; the server is freed
 * when the listener is closed and the last connection freed.
 *
 * Invariants:
 *   1. refs == (handle not yet closed ? 1 : 0) + requests in the storage; inflight == requests
 *      in the storage.
 *   2. A response is queued only on an OPEN connection.
 *   3. conn__process never recurses (a storage call may complete inside it): `processing`.
 *   4. Response views into storage buffers are referenced by the output chains, never copied.
 */
#include "bookie/bookie.h"

#include "bookie/limits.h"
#include "bookie/protocol.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/freelist.h"
#include "common/listen.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct bk__sconn bk__sconn;

struct bk_server {
    uv_loop_t *loop;
    bk_storage *storage;
    mg_listener *listener;
    uint16_t port;
    uint32_t connections_max;
    uint32_t inflight_max;
    uint32_t range_bytes_max;
    bk__sconn *conns;
    uint32_t conn_count;
    bool listener_open;
    bool closing;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    /* Metrics; index 0 is "unknown", 1..BK_OP_MAX the ops. NULL without a registry. */
    mg_counter *requests[BK_OP_MAX + 1];
    mg_histogram *latency[BK_OP_MAX + 1];
    mg_gauge *connections;
    mg_counter *protocol_errors;
    mg_counter *refused;
};

struct bk__sconn {
    bk_server *srv;
    bk__sconn *prev, *next;
    uv_tcp_t tcp;
    bk_decoder dec;
    bk_outq outq;
    uint32_t refs;
    uint32_t inflight;
    /* Released requests (bk__sreq), at most the server's inflight_max: the connection never
     * had more in flight. Freed with the connection, which every request holds a reference to. */
    mg_freelist req_pool;
    bool reading;
    bool closing;
    bool processing;
};

/* One request in the storage: from its connection's req_pool, back to it when it ends. */
typedef struct bk__sreq {
    bk__sconn *conn;
    uint64_t request_id;
    int32_t op;
    int64_t ledger_id;
    int64_t entry_id;
    size_t max_bytes; /* READ_RANGE */
    uint64_t start_ns;
} bk__sreq;

static void conn__process(bk__sconn *conn);
static void server__maybe_finish(bk_server *s);

static int bk__op_index(int32_t op)
{
    return op >= 1 && op <= BK_OP_MAX ? op : 0;
}

/* ---- Connections ------------------------------------------------------------------------- */

static void conn__unref(bk__sconn *conn)
{
    MG_ASSERT(conn->refs > 0);
    if (--conn->refs > 0)
        return;
    bk_server *s = conn->srv;
    MG_ASSERT(conn->inflight == 0 && mg_outq_writes_inflight(&conn->outq) == 0);
    mg_outq_discard(&conn->outq);
    bk_decoder_destroy(&conn->dec);
    mg_freelist_clear(&conn->req_pool);
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        s->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    s->conn_count--;
    mg_free(conn);
    server__maybe_finish(s);
}

static void conn__on_closed(uv_handle_t *handle)
{
    conn__unref(handle->data);
}

static void conn__close(bk__sconn *conn)
{
    if (conn->closing)
        return;
    conn->closing = true;
    conn->reading = false;
    mg_gauge_add(conn->srv->connections, -1);
    uv_close((uv_handle_t *)&conn->tcp, conn__on_closed);
    mg_outq_discard(&conn->outq);
    bk_decoder_destroy(&conn->dec);
}

static void conn__alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bk__sconn *conn = handle->data;
    if (bk_decoder_alloc(&conn->dec, buf) != MG_OK) {
        buf->base = NULL;
        buf->len = 0;
    }
}

static void conn__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    bk__sconn *conn = stream->data;
    if (nread == 0 || conn->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            MG_DEBUG("bookie rpc: connection read failed: %s", uv_strerror((int)nread));
        conn__close(conn);
        return;
    }
    bk_decoder_commit(&conn->dec, (size_t)nread);
    conn__process(conn);
}

/* Queues a response; on failure tries a bare error response, and closes the connection if even
 * that cannot be queued (the client would wait for its timeout otherwise). */
static void conn__reply(bk__sconn *conn, const bk_response *resp, const bk_entry *entries,
                        size_t count)
{
    MG_ASSERT(!conn->closing);
    int rc = bk_outq_push_response(&conn->outq, resp, entries, count);
    if (rc == MG_OK)
        return;
    bk_response err = *resp;
    err.status = rc;
    err.present = 0;
    snprintf(err.message, sizeof(err.message), "response could not be encoded: %s",
             mg_strerror(rc));
    if (bk_outq_push_response(&conn->outq, &err, NULL, 0) != MG_OK) {
        MG_WARN_LIMITED("bookie rpc: cannot queue a response (%s), closing the connection",
                        mg_strerror(rc));
        conn__close(conn);
    }
}

static void conn__reply_status(bk__sconn *conn, const bk_request *req, int status,
                               const char *message)
{
    bk_response resp;
    memset(&resp, 0, sizeof(resp));
    resp.request_id = req->request_id;
    resp.op = req->op;
    resp.status = status;
    if (message != NULL)
        snprintf(resp.message, sizeof(resp.message), "%s", message);
    conn__reply(conn, &resp, NULL, 0);
}

static void server__observe(bk_server *s, int32_t op, uint64_t start_ns)
{
    uint64_t now_ns = uv_hrtime();
    uint64_t us = now_ns > start_ns ? (now_ns - start_ns) / 1000 : 0;
    mg_histogram_observe(s->latency[bk__op_index(op)], us);
}

static bk__sreq *sreq__new(bk__sconn *conn, const bk_request *r, uint64_t start_ns)
{
    if (conn->req_pool.block_bytes == 0) /* the connection's first request */
        mg_freelist_init(&conn->req_pool, sizeof(bk__sreq), conn->srv->inflight_max);
    bk__sreq *req = mg_freelist_get(&conn->req_pool);
    if (req == NULL)
        return NULL;
    req->conn = conn;
    req->request_id = r->request_id;
    req->op = r->op;
    req->ledger_id = r->ledger_id;
    req->entry_id = r->entry_id;
    req->max_bytes = 0;
    req->start_ns = start_ns;
    conn->refs++;
    conn->inflight++;
    return req;
}

/* Ends a request whose response (if any) is queued: frees it, lets the connection go on. */
static void sreq__finish(bk__sreq *req)
{
    bk__sconn *conn = req->conn;
    server__observe(conn->srv, req->op, req->start_ns);
    mg_freelist_put(&conn->req_pool, req);
    MG_ASSERT(conn->inflight > 0);
    conn->inflight--;
    if (!conn->closing)
        conn__process(conn);
    conn__unref(conn);
}

/* A request the storage refused at once: it never calls back. */
static void sreq__refused(bk__sreq *req, const bk_request *r, int rc)
{
    bk__sconn *conn = req->conn;
    mg_freelist_put(&conn->req_pool, req);
    conn->inflight--;
    conn->refs--; /* the handle still holds one: never the last */
    MG_ASSERT(conn->refs > 0);
    conn__reply_status(conn, r, rc, NULL);
}

static void sreq__fill(const bk__sreq *req, bk_response *resp, int status)
{
    memset(resp, 0, sizeof(*resp));
    resp->request_id = req->request_id;
    resp->op = req->op;
    resp->status = status;
    resp->present = BK_HAS_LEDGER_ID;
    resp->ledger_id = req->ledger_id;
}

static void srv__add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    bk__sreq *req = arg;
    if (!req->conn->closing) {
        bk_response resp;
        sreq__fill(req, &resp, status);
        resp.present |= BK_HAS_ENTRY_ID;
        resp.ledger_id = ledger_id;
        resp.entry_id = entry_id;
        conn__reply(req->conn, &resp, NULL, 0);
    }
    sreq__finish(req);
}

static void srv__read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    bk__sreq *req = arg;
    if (!req->conn->closing) {
        bk_response resp;
        size_t n = 0;
        if (status == MG_OK) {
            /* At most max_bytes (at least one entry) and BK_RANGE_ENTRIES_MAX entries, whatever
             * the storage returned: the response must fit a frame. */
            size_t cap = req->op == BK_OP_READ ? 1 : BK_RANGE_ENTRIES_MAX;
            size_t bytes = 0;
            while (n < count && n < cap) {
                if (n > 0 && (bytes > req->max_bytes || entries[n].len > req->max_bytes - bytes))
                    break;
                bytes += entries[n].len;
                n++;
            }
            if (n == 0)
                status = MG_ENOTFOUND;
        }
        sreq__fill(req, &resp, status);
        conn__reply(req->conn, &resp, status == MG_OK ? entries : NULL, n);
    }
    sreq__finish(req);
}

static void srv__lac_done(int status, int64_t last_entry_id, void *arg)
{
    bk__sreq *req = arg;
    if (!req->conn->closing) {
        bk_response resp;
        sreq__fill(req, &resp, status);
        if (status == MG_OK) {
            resp.present |= BK_HAS_LAST_ENTRY_ID;
            resp.last_entry_id = last_entry_id;
        }
        conn__reply(req->conn, &resp, NULL, 0);
    }
    sreq__finish(req);
}

static void srv__done(int status, void *arg)
{
    bk__sreq *req = arg;
    if (!req->conn->closing) {
        bk_response resp;
        sreq__fill(req, &resp, status);
        conn__reply(req->conn, &resp, NULL, 0);
    }
    sreq__finish(req);
}

/* Handles one decoded request; consumes the frame. */
static void conn__dispatch(bk__sconn *conn, bk_frame *frame)
{
    bk_server *s = conn->srv;
    const bk_request *r = &frame->req;
    uint64_t start_ns = uv_hrtime();
    mg_counter_inc(s->requests[bk__op_index(r->op)]);

    /* Validate the fields each op needs (bk_request_check, shared with the fuzz target). */
    char why[64];
    int invalid = bk_request_check(r, frame->payload_len, why, sizeof(why));
    if (invalid != MG_OK) {
        conn__reply_status(conn, r, invalid, why);
        server__observe(s, r->op, start_ns);
        bk_frame_release(frame);
        return;
    }
    if (r->op == BK_OP_HEALTH) {
        conn__reply_status(conn, r, bk_storage_read_only(s->storage) ? MG_EREADONLY : MG_OK, NULL);
        server__observe(s, r->op, start_ns);
        bk_frame_release(frame);
        return;
    }

    bk__sreq *req = sreq__new(conn, r, start_ns);
    if (req == NULL) {
        conn__reply_status(conn, r, MG_ENOMEM, NULL);
        bk_frame_release(frame);
        return;
    }
    int rc;
    switch (r->op) {
    case BK_OP_ADD:
        /* The storage takes its own reference to the payload's buffer. */
        rc = bk_storage_add(s->storage, r->ledger_id, r->entry_id, frame->buf, frame->payload_off,
                            frame->payload_len, srv__add_done, req);
        break;
    case BK_OP_READ:
        req->max_bytes = SIZE_MAX;
        rc = bk_storage_read(s->storage, r->ledger_id, r->entry_id, srv__read_done, req);
        break;
    case BK_OP_READ_RANGE: {
        uint32_t max_bytes = (r->present & BK_HAS_MAX_BYTES) ? r->max_bytes : 0;
        if (max_bytes == 0 || max_bytes > s->range_bytes_max)
            max_bytes = s->range_bytes_max;
        req->max_bytes = max_bytes;
        int64_t last = r->last_entry_id;
        if ((uint64_t)(last - r->entry_id) >= BK_RANGE_ENTRIES_MAX)
            last = r->entry_id + (int64_t)BK_RANGE_ENTRIES_MAX - 1;
        rc = bk_storage_read_range(s->storage, r->ledger_id, r->entry_id, last, max_bytes,
                                   srv__read_done, req);
        break;
    }
    case BK_OP_READ_LAC:
        rc = bk_storage_read_lac(s->storage, r->ledger_id, srv__lac_done, req);
        break;
    case BK_OP_FENCE:
        rc = bk_storage_fence(s->storage, r->ledger_id, srv__lac_done, req);
        break;
    case BK_OP_DELETE:
        rc = bk_storage_delete(s->storage, r->ledger_id, srv__done, req);
        break;
    default:
        MG_UNREACHABLE();
    }
    if (rc != MG_OK) {
        sreq__refused(req, r, rc);
        server__observe(s, r->op, start_ns);
    }
    bk_frame_release(frame);
}

static bool conn__under_limits(const bk__sconn *conn)
{
    return conn->inflight < conn->srv->inflight_max &&
           mg_outq_queued_bytes(&conn->outq) < BK_SERVER_CONN_OUT_BYTES_MAX;
}

/* Decodes and dispatches buffered frames while under the limits, flushes the output, and
 * starts or stops reading to match the limits. */
static void conn__process(bk__sconn *conn)
{
    if (conn->processing || conn->closing)
        return;
    bk_server *s = conn->srv;
    conn->processing = true;
    /* Bounded by the bytes buffered (each pass consumes a frame) and by inflight_max. */
    while (!conn->closing && conn__under_limits(conn)) {
        bk_frame frame;
        int rc = bk_decoder_next(&conn->dec, &frame);
        if (rc == MG_EAGAIN)
            break;
        if (rc != MG_OK) {
            if (rc == MG_EPROTO) {
                mg_counter_inc(s->protocol_errors);
                MG_WARN_LIMITED("bookie rpc: malformed frame, closing the connection");
            } else {
                MG_WARN_LIMITED("bookie rpc: cannot decode a frame (%s), closing the connection",
                                mg_strerror(rc));
            }
            conn__close(conn);
            break;
        }
        conn__dispatch(conn, &frame);
    }
    conn->processing = false;
    if (conn->closing)
        return;
    int rc = mg_outq_flush(&conn->outq, (uv_stream_t *)&conn->tcp);
    if (rc != MG_OK) {
        MG_DEBUG("bookie rpc: write failed: %s", mg_strerror(rc));
        conn__close(conn);
        return;
    }
    bool want = conn__under_limits(conn);
    if (want && !conn->reading) {
        rc = uv_read_start((uv_stream_t *)&conn->tcp, conn__alloc, conn__on_read);
        if (rc != 0) {
            conn__close(conn);
            return;
        }
        conn->reading = true;
    } else if (!want && conn->reading) {
        uv_read_stop((uv_stream_t *)&conn->tcp);
        conn->reading = false;
    }
}

static void conn__written(bk_outq *q, int status)
{
    bk__sconn *conn = q->arg;
    if (conn->closing)
        return;
    if (status != MG_OK) {
        MG_DEBUG("bookie rpc: write failed: %s", mg_strerror(status));
        conn__close(conn);
        return;
    }
    conn__process(conn);
}

/* A socket accepted by the listener (common/listen.c backs off when descriptors run out). Past
 * connections_max it is closed at once, keeping the rest of the descriptors for the storage. */
static void server__on_connection(void *arg, int fd, const struct sockaddr *addr,
                                  socklen_t addr_len)
{
    (void)addr;
    (void)addr_len;
    bk_server *s = arg;
    if (s->closing) {
        close(fd);
        return;
    }
    if (s->conn_count >= s->connections_max) {
        close(fd);
        mg_counter_inc(s->refused);
        MG_WARN_LIMITED("bookie rpc: %u connections, the limit: refusing another",
                        (unsigned)s->conn_count);
        return;
    }
    bk__sconn *conn = mg_calloc(1, sizeof(*conn));
    if (conn == NULL) {
        close(fd);
        MG_WARN_LIMITED("bookie rpc: out of memory accepting a connection");
        return;
    }
    conn->srv = s;
    conn->refs = 1;
    bk_decoder_init(&conn->dec, BK_FRAME_REQUEST);
    mg_outq_init(&conn->outq, conn__written, conn);
    MG_ASSERT(uv_tcp_init(s->loop, &conn->tcp) == 0);
    conn->tcp.data = conn;
    conn->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = conn;
    s->conns = conn;
    s->conn_count++;
    mg_gauge_add(s->connections, 1);
    int rc = uv_tcp_open(&conn->tcp, fd);
    if (rc != 0) {
        close(fd);
        MG_WARN_LIMITED("bookie rpc: cannot use an accepted socket: %s", uv_strerror(rc));
        conn__close(conn);
        return;
    }
    (void)uv_tcp_nodelay(&conn->tcp, 1);
    conn__process(conn); /* starts reading */
}

/* ---- Server ------------------------------------------------------------------------------ */

static void server__register_metrics(bk_server *s, mg_metrics *reg)
{
    if (reg == NULL)
        return;
    const char *labels[] = { "op" };
    mg_metric_family *req_fam = mg_metrics_counter_family(
        reg, "bookie_rpc_requests_total", "Requests received by the bookie RPC server.", 1, labels);
    mg_metric_family *lat_fam = mg_metrics_histogram_family(
        reg, "bookie_rpc_request_latency_ms",
        "Time from decoding a request to queueing its response.", 1, labels, 0.001);
    for (int op = 0; op <= BK_OP_MAX; op++) {
        const char *value[] = { bk_op_name(op) };
        s->requests[op] = mg_metrics_counter(req_fam, value);
        s->latency[op] = mg_metrics_histogram(lat_fam, value);
    }
    s->connections =
        mg_metrics_unlabelled_gauge(reg, "bookie_rpc_connections", "Open bookie RPC connections.");
    s->protocol_errors = mg_metrics_unlabelled_counter(reg, "bookie_rpc_protocol_errors_total",
                                                       "Connections closed for a malformed frame.");
    s->refused = mg_metrics_unlabelled_counter(
        reg, "bookie_rpc_connections_refused_total",
        "Connections closed at accept: the connection limit was reached.");
}

static void server__on_listener_closed(void *arg)
{
    bk_server *s = arg;
    s->listener_open = false;
    server__maybe_finish(s);
}

static void server__maybe_finish(bk_server *s)
{
    if (!s->closing || s->listener_open || s->conns != NULL)
        return;
    void (*closed)(void *) = s->closed_cb;
    void *arg = s->closed_arg;
    mg_free(s);
    if (closed != NULL)
        closed(arg);
}

int bk_server_start(uv_loop_t *loop, bk_storage *storage, const bk_server_opts *opts,
                    bk_server **out)
{
    if (loop == NULL || storage == NULL || opts == NULL)
        return MG_EINVAL;
    if (opts->inflight_max_per_conn > BK_SERVER_INFLIGHT_MAX ||
        opts->range_bytes_max > BK_RANGE_BYTES_MAX)
        return MG_EINVAL;
    const char *host = opts->host != NULL ? opts->host : "0.0.0.0";
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    if (uv_ip4_addr(host, opts->port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(host, opts->port, (struct sockaddr_in6 *)&sa) != 0)
        return MG_EINVAL;

    bk_server *s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return MG_ENOMEM;
    s->loop = loop;
    s->storage = storage;
    s->inflight_max =
        opts->inflight_max_per_conn != 0 ? opts->inflight_max_per_conn : BK_SERVER_INFLIGHT_DEFAULT;
    s->range_bytes_max = opts->range_bytes_max != 0 ? opts->range_bytes_max : BK_RANGE_BYTES_MAX;
    s->connections_max =
        opts->connections_max != 0 && opts->connections_max < BK_SERVER_CONNECTIONS_MAX
            ? opts->connections_max
            : BK_SERVER_CONNECTIONS_MAX;
    int lfd = -1;
    int rc = mg_listen_socket("bookie rpc", host, opts->port, 128, &lfd, &s->port);
    if (rc == MG_OK)
        rc = mg_listener_start(loop, lfd, "bookie rpc", server__on_connection, s, &s->listener);
    if (rc != MG_OK) {
        mg_free(s);
        return rc;
    }
    s->listener_open = true;
    server__register_metrics(s, opts->metrics);
    MG_INFO("bookie rpc: listening on %s:%u", host, (unsigned)s->port);
    *out = s;
    return MG_OK;
}

uint16_t bk_server_port(const bk_server *s)
{
    return s->port;
}

void bk_server_close(bk_server *s, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!s->closing);
    s->closing = true;
    s->closed_cb = closed;
    s->closed_arg = arg;
    mg_listener_close(s->listener, server__on_listener_closed, s);
    for (bk__sconn *conn = s->conns; conn != NULL; conn = conn->next)
        conn__close(conn);
}
