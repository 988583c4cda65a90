/*
 * The bookie RPC client (see client.h for the API and protocol.h for the wire format).
 *
 * A client holds two connections (bk__conn) per bookie address: one for range reads (bulk), one
 * for everything else (adds, single reads, fences, LAC reads), so that a megabyte of a catch-up
 * read in a socket never sits in front of an add's answer (../shared/ARCHITECTURE.md §6: writes
 * and tail reads never queue behind catch-up reads). Each is created on first use and kept
 * (with its retry state) until the client closes or the slot is needed for another address
 * (BK_CLIENT_CONNECTIONS_MAX; only idle ones are evicted). Each request (bk__creq) is encoded
 * into its connection's output queue at once and stays until it completes; it is linked in
 *   - its connection's hash by request id (responses come in any order),
 *   - its connection's list (to fail all of them when the connection goes),
 *   - the client's deadline list: every request gets the same timeout, so issue order is
 *     deadline order; one timer is set for the head, and a pass fails every expired request.
 *
 * CONNECTION STATES
 *
 *            request           retry time reached        name resolved (or numeric address)
 *     IDLE ----------> [BACKOFF] ---------------> [RESOLVING] -------------> CONNECTING
 *      ^                                               |                         |
 *      |                      failure, timeout --------+--------+-- failure -----+ connected
 *      |                                                        v                v
 *      +--- closed; queued requests? then again from IDLE --- CLOSING <-- lost -- CONNECTED
 *
 *   - Requests made in any state but CONNECTED wait in the output queue and go out on connect.
 *   - Entering CLOSING fails every request of the connection with MG_ECONNECTION (from a
 *     libuv callback, never inside a call: errors found inside a call, such as a failing
 *     uv_write, are turned into a zero-delay timer first). Requests made during CLOSING wait for
 *     the next connection.
 *   - Backoff: consecutive failures (a failed attempt, or a loss) delay the next attempt by
 *     0, then BK_CLIENT_BACKOFF_MS_MIN doubling up to BK_CLIENT_BACKOFF_MS_MAX; a successful
 *     connect resets the count.
 *   - A host name may resolve to several addresses (up to BK_CLIENT_RESOLVED_ADDRS_MAX): a
 *     refused connect closes the handle and tries the next one, still in CONNECTING, under the
 *     same connect timeout.
 *   - One timer per connection serves the connect timeout (resolution included), the backoff
 *     and the deferred failure; they never overlap.
 *
 * CLOSING THE CLIENT
 *   Every handle is closed and every getaddrinfo cancelled; `outstanding` counts handles and
 *   resolutions not yet called back. When it reaches 0 every remaining request completes with
 *   MG_ECLOSED, the memory goes, and the caller's callback runs.
 *
 * Invariants:
 *   1. A request is completed (its callback called) exactly once, after being unlinked from
 *      all three lists; pending == the length of the connection's list.
 *   2. tcp_open <=> the tcp handle is initialised and its close callback has not run; it is
 *      closed at most once (tcp_closing).
 *   3. A connection is freed only when the client finishes (outstanding == 0) or when evicted
 *      (IDLE, no requests, no tcp handle, no resolution; freed in its timer's close callback).
 */
#include "bookie/client.h"
#include "bookie/client_int.h"
#include "bookie/protocol.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/freelist.h"
#include "common/log.h"

#include <netdb.h>
#include <stddef.h>
#include <string.h>

typedef enum bk__cstate {
    BK__C_IDLE = 0,
    BK__C_BACKOFF,
    BK__C_RESOLVING,
    BK__C_CONNECTING,
    BK__C_CONNECTED,
    BK__C_CLOSING,
} bk__cstate;

typedef struct bk__conn bk__conn;
typedef struct bk__creq bk__creq;

/* A request from its submission to its callback. A TCP request comes from the client's
 * req_pool; a request for the bookie of this process is the first half of a bk__lreq from
 * local_pool, with the transport's bk_local_req embedded after it (local set), and goes back
 * with it in bk_local_req_complete. Both lists are the client's, on its loop, and are emptied
 * when the client is freed (every request has called back by then). */
struct bk__creq {
    uint64_t request_id;
    bool local; /* embedded in a bk__lreq */
    int32_t op;
    bk__conn *conn;
    uint64_t deadline_ms;
    bk__creq *hnext;         /* hash chain */
    bk__creq *tprev, *tnext; /* client deadline list */
    bk__creq *cprev, *cnext; /* connection list */
    int64_t ledger_id;
    int64_t entry_id;
    union {
        bk_client_add_cb add;
        bk_client_read_cb read;
        bk_client_lac_cb lac;
        bk_client_done_cb done;
    } cb;
    void *arg;
};

/* An in-process request: the client's record and the transport's request in one block. */
typedef struct bk__lreq {
    bk__creq req;
    bk_local_req lr;
} bk__lreq;

#define BK__CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct bk__conn {
    bk_client *c;
    bk__conn *next; /* client's list */
    bool bulk;      /* the range-read connection of addr */
    char addr[BK_ADDR_BYTES_MAX + 1];
    char host[BK_ADDR_BYTES_MAX + 1];
    char port[8];
    bool numeric;
    struct sockaddr_storage addrs[BK_CLIENT_RESOLVED_ADDRS_MAX]; /* to try, in order */
    uint32_t addr_count;
    uint32_t addr_next; /* the one being tried */
    bk__cstate state;
    bool tcp_open;
    bool tcp_closing;
    bool gai_active;
    bool evicting;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai_req;
    bk_decoder dec;
    bk_outq outq;
    bk__creq **buckets;
    size_t bucket_mask;
    bk__creq *list_head, *list_tail;
    uint32_t pending;
    uint32_t failures;
    uint64_t retry_at_ms;
};

struct bk_client {
    uv_loop_t *loop;
    uint32_t request_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t pending_max;
    bk__conn *conns;
    uint32_t conn_count;
    uv_timer_t timer;
    bk__creq *thead, *ttail;
    uint64_t next_request_id;
    uint32_t outstanding;
    /* the bookie of this process (bk_client_set_local) */
    char local_addr[BK_ADDR_BYTES_MAX + 1];
    bk_client_local_fn local_fn;
    void *local_transport;
    uint32_t local_pending; /* local requests not answered yet: closing waits for them */
    mg_freelist req_pool;   /* released bk__creq (TCP) */
    mg_freelist local_pool; /* released bk__lreq (in-process) */
    bool closing;
    bool finishing;
    void (*closed_cb)(void *arg);
    void *closed_arg;
};

static void conn__lost(bk__conn *conn);
static void conn__connect(bk__conn *conn);
static void conn__tcp_connect(bk__conn *conn);
static void client__maybe_finish(bk_client *c);

/* ---- Requests ---------------------------------------------------------------------------- */

static void req__link(bk__creq *req)
{
    bk__conn *conn = req->conn;
    bk_client *c = conn->c;
    size_t b = (size_t)req->request_id & conn->bucket_mask;
    req->hnext = conn->buckets[b];
    conn->buckets[b] = req;

    req->cnext = NULL;
    req->cprev = conn->list_tail;
    if (conn->list_tail != NULL)
        conn->list_tail->cnext = req;
    else
        conn->list_head = req;
    conn->list_tail = req;
    conn->pending++;

    req->tnext = NULL;
    req->tprev = c->ttail;
    if (c->ttail != NULL)
        c->ttail->tnext = req;
    else
        c->thead = req; /* the caller arms the timer */
    c->ttail = req;
}

static void req__unlink(bk__creq *req)
{
    bk__conn *conn = req->conn;
    bk_client *c = conn->c;
    bk__creq **pp = &conn->buckets[(size_t)req->request_id & conn->bucket_mask];
    while (*pp != req) {
        MG_ASSERT(*pp != NULL);
        pp = &(*pp)->hnext;
    }
    *pp = req->hnext;
    req->hnext = NULL;

    if (req->cprev != NULL)
        req->cprev->cnext = req->cnext;
    else
        conn->list_head = req->cnext;
    if (req->cnext != NULL)
        req->cnext->cprev = req->cprev;
    else
        conn->list_tail = req->cprev;
    MG_ASSERT(conn->pending > 0);
    conn->pending--;

    if (req->tprev != NULL)
        req->tprev->tnext = req->tnext;
    else
        c->thead = req->tnext;
    if (req->tnext != NULL)
        req->tnext->tprev = req->tprev;
    else
        c->ttail = req->tprev;
    req->cprev = req->cnext = req->tprev = req->tnext = NULL;
}

static bk__creq *req__find(bk__conn *conn, uint64_t request_id)
{
    bk__creq *req = conn->buckets[(size_t)request_id & conn->bucket_mask];
    while (req != NULL && req->request_id != request_id)
        req = req->hnext;
    return req;
}

/* Calls req's callback with what its kind of request answers (TCP and in-process answers
 * alike), then frees it. */
static void req__deliver(bk_client *c, bk__creq *req, int status, const bk_entry *entries,
                         size_t count, int64_t lac)
{
    switch (req->op) {
    case BK_OP_ADD:
        req->cb.add(status, req->ledger_id, req->entry_id, req->arg);
        break;
    case BK_OP_READ:
    case BK_OP_READ_RANGE:
        if (status == MG_OK)
            req->cb.read(MG_OK, entries, count, req->arg);
        else
            req->cb.read(status, NULL, 0, req->arg);
        break;
    case BK_OP_READ_LAC:
    case BK_OP_FENCE:
        req->cb.lac(status, status == MG_OK ? lac : -1, req->arg);
        break;
    case BK_OP_DELETE:
    case BK_OP_HEALTH:
        req->cb.done(status, req->arg);
        break;
    default:
        MG_UNREACHABLE();
    }
    if (!req->local) /* a local one goes with its bk__lreq (bk_local_req_complete) */
        mg_freelist_put(&c->req_pool, req);
}

/* Calls the request's callback (the request is unlinked) and frees it. */
static void req__complete(bk__creq *req, int status, const bk_frame *frame)
{
    bool answered = status == MG_OK && frame != NULL;
    int64_t lac = -1;
    if (answered && (frame->resp.present & BK_HAS_LAST_ENTRY_ID))
        lac = frame->resp.last_entry_id;
    req__deliver(req->conn->c, req, status, answered ? frame->entries : NULL,
                 answered ? frame->entry_count : 0, lac);
}

/* Fails every request of the connection with status (they are unlinked first, so callbacks see
 * a consistent client and may issue new requests, which are not failed here). */
static void conn__fail_all(bk__conn *conn, int status)
{
    bk__creq *list = conn->list_head;
    bk__creq *failed = NULL, **tailp = &failed;
    while (list != NULL) {
        bk__creq *req = list;
        list = req->cnext;
        req__unlink(req);
        *tailp = req;
        tailp = &req->hnext; /* free after unlinking: reuse the hash link */
    }
    *tailp = NULL;
    while (failed != NULL) {
        bk__creq *req = failed;
        failed = req->hnext;
        req__complete(req, status, NULL);
    }
}

/* ---- Timeouts ---------------------------------------------------------------------------- */

static void client__on_timer(uv_timer_t *timer);

static void client__arm(bk_client *c)
{
    if (c->closing)
        return;
    if (c->thead == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->loop);
    uint64_t delay = c->thead->deadline_ms > now ? c->thead->deadline_ms - now : 0;
    uv_timer_start(&c->timer, client__on_timer, delay, 0);
}

static void client__on_timer(uv_timer_t *timer)
{
    bk_client *c = timer->data;
    uint64_t now = uv_now(c->loop);
    bk__creq *expired = NULL, **tailp = &expired;
    /* Bounded: each pass takes requests off the list. */
    while (c->thead != NULL && c->thead->deadline_ms <= now) {
        bk__creq *req = c->thead;
        req__unlink(req);
        *tailp = req;
        tailp = &req->hnext;
    }
    *tailp = NULL;
    while (expired != NULL) {
        bk__creq *req = expired;
        expired = req->hnext;
        req__complete(req, MG_ETIMEDOUT, NULL);
    }
    client__arm(c);
}

/* ---- Connections ------------------------------------------------------------------------- */

static uint64_t bk__backoff_ms(uint32_t failures)
{
    if (failures <= 1)
        return 0;
    uint32_t shift = failures - 2;
    if (shift > 16)
        shift = 16;
    uint64_t delay = (uint64_t)BK_CLIENT_BACKOFF_MS_MIN << shift;
    return delay > BK_CLIENT_BACKOFF_MS_MAX ? BK_CLIENT_BACKOFF_MS_MAX : delay;
}

/* Parses "host:port" or "[ipv6]:port". Numeric hosts fill sa. */
static int bk__parse_addr(const char *addr, bk__conn *conn)
{
    size_t len = strnlen(addr, BK_ADDR_BYTES_MAX + 1);
    if (len == 0 || len > BK_ADDR_BYTES_MAX)
        return MG_EINVAL;
    const char *host = addr, *host_end, *port;
    bool bracket = addr[0] == '[';
    if (bracket) {
        host = addr + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':')
            return MG_EINVAL;
        port = host_end + 2;
    } else {
        host_end = strrchr(addr, ':');
        if (host_end == NULL)
            return MG_EINVAL;
        if (memchr(host, ':', (size_t)(host_end - host)) != NULL)
            return MG_EINVAL; /* an IPv6 address needs brackets */
        port = host_end + 1;
    }
    size_t host_len = (size_t)(host_end - host);
    size_t port_len = strlen(port);
    if (host_len == 0 || port_len == 0 || port_len > 5)
        return MG_EINVAL;
    unsigned port_value = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (port[i] < '0' || port[i] > '9')
            return MG_EINVAL;
        port_value = port_value * 10 + (unsigned)(port[i] - '0');
    }
    if (port_value == 0 || port_value > 65535)
        return MG_EINVAL;
    memcpy(conn->host, host, host_len);
    conn->host[host_len] = '\0';
    memcpy(conn->port, port, port_len);
    conn->port[port_len] = '\0';
    memcpy(conn->addr, addr, len);
    conn->addr[len] = '\0';
    memset(&conn->addrs[0], 0, sizeof(conn->addrs[0]));
    if (uv_ip4_addr(conn->host, (int)port_value, (struct sockaddr_in *)&conn->addrs[0]) == 0 ||
        uv_ip6_addr(conn->host, (int)port_value, (struct sockaddr_in6 *)&conn->addrs[0]) == 0) {
        conn->numeric = true;
        conn->addr_count = 1;
    } else {
        if (bracket)
            return MG_EINVAL; /* brackets hold an IPv6 literal only */
        conn->numeric = false;
    }
    return MG_OK;
}

static void conn__on_timer_closed(uv_handle_t *handle)
{
    bk__conn *conn = handle->data;
    bk_client *c = conn->c;
    MG_ASSERT(c->outstanding > 0);
    c->outstanding--;
    if (conn->evicting) {
        bk_decoder_destroy(&conn->dec);
        mg_free(conn->buckets);
        mg_free(conn);
    }
    client__maybe_finish(c);
}

static void conn__written(bk_outq *q, int status);
static void conn__on_timer(uv_timer_t *timer);

static size_t bk__pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

static int conn__create(bk_client *c, const char *addr, bool bulk, bk__conn **out)
{
    bk__conn *conn = mg_calloc(1, sizeof(*conn));
    if (conn == NULL)
        return MG_ENOMEM;
    int rc = bk__parse_addr(addr, conn);
    if (rc != MG_OK) {
        mg_free(conn);
        return rc;
    }
    /* About four requests per chain when pending_max are waiting. */
    size_t buckets = bk__pow2_at_least(c->pending_max / 4);
    conn->buckets = mg_calloc(buckets, sizeof(*conn->buckets));
    if (conn->buckets == NULL) {
        mg_free(conn);
        return MG_ENOMEM;
    }
    conn->bucket_mask = buckets - 1;
    conn->c = c;
    conn->bulk = bulk;
    conn->state = BK__C_IDLE;
    bk_decoder_init(&conn->dec, BK_FRAME_RESPONSE);
    mg_outq_init(&conn->outq, conn__written, conn);
    MG_ASSERT(uv_timer_init(c->loop, &conn->timer) == 0); /* cannot fail on Unix */
    conn->timer.data = conn;
    c->outstanding++;
    conn->next = c->conns;
    c->conns = conn;
    c->conn_count++;
    *out = conn;
    return MG_OK;
}

/* Finds addr's connection of the class (bulk: range reads), or makes one (evicting an idle one
 * at the limit). */
static int conn__get(bk_client *c, const char *addr, bool bulk, bk__conn **out)
{
    for (bk__conn *conn = c->conns; conn != NULL; conn = conn->next) {
        if (conn->bulk == bulk && strcmp(conn->addr, addr) == 0) {
            *out = conn;
            return MG_OK;
        }
    }
    if (c->conn_count >= BK_CLIENT_CONNECTIONS_MAX) {
        bk__conn **pp = &c->conns;
        while (*pp != NULL && !((*pp)->state == BK__C_IDLE && (*pp)->pending == 0 &&
                                !(*pp)->tcp_open && !(*pp)->gai_active))
            pp = &(*pp)->next;
        if (*pp == NULL)
            return MG_ELIMIT;
        bk__conn *victim = *pp;
        *pp = victim->next;
        c->conn_count--;
        victim->evicting = true;
        uv_close((uv_handle_t *)&victim->timer, conn__on_timer_closed);
    }
    return conn__create(c, addr, bulk, out);
}

/* Defers a failure found inside a call to a callback of its own. */
static void conn__fail_soon(bk__conn *conn)
{
    uv_timer_start(&conn->timer, conn__on_timer, 0, 0);
}

static void conn__start(bk__conn *conn)
{
    MG_ASSERT(conn->state == BK__C_IDLE);
    uint64_t now = uv_now(conn->c->loop);
    if (now < conn->retry_at_ms) {
        conn->state = BK__C_BACKOFF;
        uv_timer_start(&conn->timer, conn__on_timer, conn->retry_at_ms - now, 0);
        return;
    }
    conn__connect(conn);
}

/* The tcp handle is closed and no resolution is running: go idle, or on if requests wait. */
static void conn__closed(bk__conn *conn)
{
    MG_ASSERT(!conn->tcp_open && !conn->gai_active);
    conn->state = BK__C_IDLE;
    if (conn->list_head != NULL)
        conn__start(conn);
}

static void conn__on_tcp_closed(uv_handle_t *handle)
{
    bk__conn *conn = handle->data;
    bk_client *c = conn->c;
    conn->tcp_open = false;
    conn->tcp_closing = false;
    MG_ASSERT(c->outstanding > 0);
    c->outstanding--;
    if (c->closing) {
        client__maybe_finish(c);
        return;
    }
    if (conn->state == BK__C_CONNECTING) {
        conn__tcp_connect(conn); /* the next address */
        return;
    }
    if (!conn->gai_active)
        conn__closed(conn);
}

static void conn__alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    bk__conn *conn = handle->data;
    if (bk_decoder_alloc(&conn->dec, buf) != MG_OK) {
        buf->base = NULL;
        buf->len = 0;
    }
}

static void conn__on_response(bk__conn *conn, const bk_frame *frame)
{
    bk__creq *req = req__find(conn, frame->resp.request_id);
    if (req == NULL) {
        /* Timed out already: the answer is late, not wrong. */
        MG_DEBUG("bookie client %s: response to unknown request %llu dropped", conn->addr,
                 (unsigned long long)frame->resp.request_id);
        return;
    }
    req__unlink(req);
    int status = frame->resp.status;
    if (frame->resp.op != req->op || status > 0) {
        MG_WARN("bookie client %s: response op %d status %d to a %s request", conn->addr,
                (int)frame->resp.op, (int)status, bk_op_name(req->op));
        status = MG_EPROTO;
    }
    req__complete(req, status, frame);
}

static void conn__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    bk__conn *conn = stream->data;
    bk_client *c = conn->c;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            MG_INFO("bookie client %s: connection lost: %s", conn->addr, uv_strerror((int)nread));
        conn__lost(conn);
        return;
    }
    bk_decoder_commit(&conn->dec, (size_t)nread);
    /* Bounded by the bytes just read; a callback may close the client or lose the
     * connection, which ends the loop. */
    while (conn->state == BK__C_CONNECTED && !c->closing) {
        bk_frame frame;
        int rc = bk_decoder_next(&conn->dec, &frame);
        if (rc == MG_EAGAIN)
            break;
        if (rc != MG_OK) {
            MG_WARN("bookie client %s: bad frame from the bookie (%s), closing the connection",
                    conn->addr, mg_strerror(rc));
            conn__lost(conn);
            break;
        }
        conn__on_response(conn, &frame);
        bk_frame_release(&frame);
    }
}

static void conn__on_connect(uv_connect_t *req, int status)
{
    bk__conn *conn = req->data;
    if (status == UV_ECANCELED || conn->c->closing || conn->state != BK__C_CONNECTING)
        return;
    if (status < 0) {
        if (conn->addr_next + 1 < conn->addr_count) {
            /* Try the next address once this handle is closed (the connect timer runs on). */
            MG_DEBUG("bookie client %s: connect failed (%s), trying the next address", conn->addr,
                     uv_strerror(status));
            conn->addr_next++;
            conn->tcp_closing = true;
            uv_close((uv_handle_t *)&conn->tcp, conn__on_tcp_closed);
            return;
        }
        MG_INFO("bookie client %s: connect failed: %s", conn->addr, uv_strerror(status));
        conn__lost(conn);
        return;
    }
    uv_timer_stop(&conn->timer);
    conn->state = BK__C_CONNECTED;
    conn->failures = 0;
    conn->retry_at_ms = 0;
    int rc = uv_read_start((uv_stream_t *)&conn->tcp, conn__alloc, conn__on_read);
    if (rc == 0)
        rc = mg_outq_flush(&conn->outq, (uv_stream_t *)&conn->tcp);
    if (rc != 0)
        conn__lost(conn);
}

static void conn__tcp_connect(bk__conn *conn)
{
    bk_client *c = conn->c;
    conn->state = BK__C_CONNECTING;
    MG_ASSERT(!conn->tcp_open);
    if (uv_tcp_init(c->loop, &conn->tcp) != 0) {
        conn__fail_soon(conn);
        return;
    }
    conn->tcp.data = conn;
    conn->tcp_open = true;
    c->outstanding++;
    (void)uv_tcp_nodelay(&conn->tcp, 1);
    conn->connect_req.data = conn;
    MG_ASSERT(conn->addr_next < conn->addr_count);
    int rc =
        uv_tcp_connect(&conn->connect_req, &conn->tcp,
                       (const struct sockaddr *)&conn->addrs[conn->addr_next], conn__on_connect);
    if (rc != 0) {
        MG_INFO("bookie client %s: connect failed: %s", conn->addr, uv_strerror(rc));
        conn__fail_soon(conn);
    }
}

static void conn__on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    bk__conn *conn = req->data;
    bk_client *c = conn->c;
    conn->gai_active = false;
    MG_ASSERT(c->outstanding > 0);
    c->outstanding--;
    if (c->closing) {
        uv_freeaddrinfo(res);
        client__maybe_finish(c);
        return;
    }
    if (conn->state != BK__C_RESOLVING) {
        /* Timed out meanwhile: conn__lost failed the requests and waits for this. */
        uv_freeaddrinfo(res);
        if (!conn->tcp_open)
            conn__closed(conn);
        return;
    }
    conn->addr_count = 0;
    for (struct addrinfo *ai = status == 0 ? res : NULL;
         ai != NULL && conn->addr_count < BK_CLIENT_RESOLVED_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(conn->addrs[0]))
            continue;
        memset(&conn->addrs[conn->addr_count], 0, sizeof(conn->addrs[0]));
        memcpy(&conn->addrs[conn->addr_count], ai->ai_addr, ai->ai_addrlen);
        conn->addr_count++;
    }
    uv_freeaddrinfo(res);
    if (conn->addr_count == 0) {
        MG_INFO("bookie client %s: cannot resolve %s: %s", conn->addr, conn->host,
                status < 0 ? uv_strerror(status) : "no address");
        conn__lost(conn);
        return;
    }
    conn__tcp_connect(conn);
}

static void conn__connect(bk__conn *conn)
{
    bk_client *c = conn->c;
    uv_timer_start(&conn->timer, conn__on_timer, c->connect_timeout_ms, 0);
    conn->addr_next = 0;
    if (conn->numeric) {
        conn__tcp_connect(conn);
        return;
    }
    conn->state = BK__C_RESOLVING;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    conn->gai_req.data = conn;
    int rc =
        uv_getaddrinfo(c->loop, &conn->gai_req, conn__on_resolved, conn->host, conn->port, &hints);
    if (rc != 0) {
        conn__fail_soon(conn);
        return;
    }
    conn->gai_active = true;
    c->outstanding++;
}

static void conn__on_timer(uv_timer_t *timer)
{
    bk__conn *conn = timer->data;
    if (conn->c->closing)
        return;
    if (conn->state == BK__C_BACKOFF) {
        conn__connect(conn);
        return;
    }
    /* Connect timeout, or a failure deferred out of a call. */
    if (conn->state == BK__C_RESOLVING || conn->state == BK__C_CONNECTING)
        MG_INFO("bookie client %s: connect failed or timed out", conn->addr);
    conn__lost(conn);
}

/* The connection failed or is gone: close it, fail its requests (MG_ECONNECTION). Only from
 * libuv callbacks. */
static void conn__lost(bk__conn *conn)
{
    bk_client *c = conn->c;
    if (c->closing || conn->state == BK__C_IDLE || conn->state == BK__C_BACKOFF ||
        conn->state == BK__C_CLOSING)
        return;
    uv_timer_stop(&conn->timer);
    conn->state = BK__C_CLOSING;
    if (conn->tcp_open && !conn->tcp_closing) {
        conn->tcp_closing = true;
        uv_close((uv_handle_t *)&conn->tcp, conn__on_tcp_closed);
    }
    if (conn->gai_active)
        (void)uv_cancel((uv_req_t *)&conn->gai_req);
    mg_outq_discard(&conn->outq);
    bk_decoder_destroy(&conn->dec);
    bk_decoder_init(&conn->dec, BK_FRAME_RESPONSE);
    if (conn->failures < UINT32_MAX)
        conn->failures++;
    conn->retry_at_ms = uv_now(c->loop) + bk__backoff_ms(conn->failures);
    conn__fail_all(conn, MG_ECONNECTION);
    /* Nothing to wait for (the tcp handle never opened): go on now. */
    if (!c->closing && conn->state == BK__C_CLOSING && !conn->tcp_open && !conn->gai_active)
        conn__closed(conn);
}

static void conn__written(bk_outq *q, int status)
{
    bk__conn *conn = q->arg;
    if (conn->c->closing || conn->state != BK__C_CONNECTED)
        return;
    if (status != MG_OK) {
        MG_INFO("bookie client %s: write failed: %s", conn->addr, mg_strerror(status));
        conn__lost(conn);
        return;
    }
    if (mg_outq_flush(q, (uv_stream_t *)&conn->tcp) != MG_OK)
        conn__lost(conn);
}

/* ---- Client ------------------------------------------------------------------------------ */

int bk_client_create(uv_loop_t *loop, const bk_client_opts *opts, bk_client **out)
{
    bk_client_opts o = { 0 };
    if (opts != NULL)
        o = *opts;
    if (o.pending_max > BK_CLIENT_PENDING_MAX)
        return MG_EINVAL;
    bk_client *c = mg_calloc(1, sizeof(*c));
    if (c == NULL)
        return MG_ENOMEM;
    c->loop = loop;
    c->request_timeout_ms =
        o.request_timeout_ms != 0 ? o.request_timeout_ms : BK_CLIENT_REQUEST_TIMEOUT_MS_DEFAULT;
    c->connect_timeout_ms =
        o.connect_timeout_ms != 0 ? o.connect_timeout_ms : BK_CLIENT_CONNECT_TIMEOUT_MS_DEFAULT;
    c->pending_max = o.pending_max != 0 ? o.pending_max : BK_CLIENT_PENDING_DEFAULT;
    c->next_request_id = 0;
    MG_ASSERT(uv_timer_init(loop, &c->timer) == 0); /* cannot fail on Unix */
    c->timer.data = c;
    c->outstanding = 1;
    mg_freelist_init(&c->req_pool, sizeof(bk__creq), BK_CLIENT_REQ_POOL_MAX);
    mg_freelist_init(&c->local_pool, sizeof(bk__lreq), BK_CLIENT_REQ_POOL_MAX);
    *out = c;
    return MG_OK;
}

static void client__on_timer_closed(uv_handle_t *handle)
{
    bk_client *c = handle->data;
    MG_ASSERT(c->outstanding > 0);
    c->outstanding--;
    client__maybe_finish(c);
}

static void client__maybe_finish(bk_client *c)
{
    if (!c->closing || c->outstanding > 0 || c->local_pending > 0 || c->finishing)
        return;
    c->finishing = true;
    for (bk__conn *conn = c->conns; conn != NULL; conn = conn->next)
        conn__fail_all(conn, MG_ECLOSED);
    while (c->conns != NULL) {
        bk__conn *conn = c->conns;
        c->conns = conn->next;
        MG_ASSERT(conn->list_head == NULL && mg_outq_writes_inflight(&conn->outq) == 0);
        mg_outq_discard(&conn->outq);
        bk_decoder_destroy(&conn->dec);
        mg_free(conn->buckets);
        mg_free(conn);
    }
    void (*closed)(void *) = c->closed_cb;
    void *arg = c->closed_arg;
    mg_freelist_clear(&c->req_pool);
    mg_freelist_clear(&c->local_pool);
    mg_free(c);
    if (closed != NULL)
        closed(arg);
}

void bk_client_close(bk_client *c, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!c->closing);
    c->closing = true;
    c->closed_cb = closed;
    c->closed_arg = arg;
    uv_close((uv_handle_t *)&c->timer, client__on_timer_closed);
    for (bk__conn *conn = c->conns; conn != NULL; conn = conn->next) {
        conn->state = BK__C_CLOSING;
        if (conn->tcp_open && !conn->tcp_closing) {
            conn->tcp_closing = true;
            uv_close((uv_handle_t *)&conn->tcp, conn__on_tcp_closed);
        }
        if (conn->gai_active)
            (void)uv_cancel((uv_req_t *)&conn->gai_req);
        uv_close((uv_handle_t *)&conn->timer, conn__on_timer_closed);
        mg_outq_discard(&conn->outq);
    }
}

/* Hands a request for the bookie of this process to its transport. */
static int client__submit_local(bk_client *c, const bk_request *wire, const uint8_t *prefix,
                                size_t prefix_len, mg_buf *payload, size_t off, size_t len,
                                const bk__creq *tmpl)
{
    if (prefix_len > BK_REQUEST_PREFIX_BYTES_MAX)
        return MG_EINVAL;
    if (c->local_pending >= c->pending_max)
        return MG_EAGAIN; /* as a connection's limit */
    bk__lreq *block = mg_freelist_get(&c->local_pool);
    if (block == NULL)
        return MG_ENOMEM;
    bk__creq *req = &block->req;
    bk_local_req *lr = &block->lr;
    *req = *tmpl;
    req->local = true;
    lr->client = c;
    lr->op = wire->op;
    lr->ledger_id = wire->ledger_id;
    lr->entry_id = wire->entry_id;
    lr->last_entry_id = wire->last_entry_id;
    lr->max_bytes = wire->max_bytes;
    if (prefix_len > 0)
        memcpy(lr->prefix, prefix, prefix_len);
    lr->prefix_len = prefix_len;
    lr->payload = payload != NULL ? mg_buf_ref(payload) : NULL;
    lr->off = off;
    lr->len = len;
    lr->client_req = req;
    int rc = c->local_fn(c->local_transport, lr);
    if (rc != MG_OK) {
        if (lr->payload != NULL)
            mg_buf_unref(lr->payload);
        mg_freelist_put(&c->local_pool, block);
        return rc;
    }
    c->local_pending++;
    return MG_OK;
}

void bk_local_req_complete(bk_local_req *lr, int status, const bk_entry *entries, size_t count,
                           int64_t value)
{
    bk_client *c = lr->client;
    bk__lreq *block = BK__CONTAINER_OF(lr, bk__lreq, lr);
    MG_ASSERT(lr->client_req == &block->req && block->req.local);
    req__deliver(c, &block->req, status, entries, count, value);
    if (lr->payload != NULL)
        mg_buf_unref(lr->payload);
    mg_freelist_put(&c->local_pool, block);
    MG_ASSERT(c->local_pending > 0);
    c->local_pending--;
    client__maybe_finish(c);
}

int bk_client_set_local(bk_client *c, const char *addr, bk_client_local_fn fn, void *transport)
{
    if (fn == NULL) {
        c->local_fn = NULL;
        c->local_transport = NULL;
        c->local_addr[0] = '\0';
        return MG_OK;
    }
    if (addr == NULL || strlen(addr) > BK_ADDR_BYTES_MAX)
        return MG_EINVAL;
    snprintf(c->local_addr, sizeof(c->local_addr), "%s", addr);
    c->local_fn = fn;
    c->local_transport = transport;
    return MG_OK;
}

/* Queues one request on addr's connection; tmpl holds the op, ids, callback and argument. */
static int client__submit(bk_client *c, const char *addr, const bk_request *wire,
                          const uint8_t *prefix, size_t prefix_len, mg_buf *payload, size_t off,
                          size_t len, const bk__creq *tmpl)
{
    if (c->closing)
        return MG_ECLOSED;
    if (addr == NULL)
        return MG_EINVAL;
    if (c->local_fn != NULL && strcmp(addr, c->local_addr) == 0)
        return client__submit_local(c, wire, prefix, prefix_len, payload, off, len, tmpl);
    bk__conn *conn;
    MG_TRY(conn__get(c, addr, wire->op == BK_OP_READ_RANGE, &conn));
    if (conn->pending >= c->pending_max)
        return MG_EAGAIN;
    bk__creq *req = mg_freelist_get(&c->req_pool);
    if (req == NULL)
        return MG_ENOMEM;
    *req = *tmpl;
    req->request_id = ++c->next_request_id;
    req->conn = conn;
    bk_request r = *wire;
    r.request_id = req->request_id;
    int rc = bk_outq_push_request_prefixed(&conn->outq, &r, prefix, prefix_len, payload, off, len);
    if (rc != MG_OK) {
        mg_freelist_put(&c->req_pool, req);
        return rc;
    }
    req->deadline_ms = uv_now(c->loop) + c->request_timeout_ms;
    bool arm = c->thead == NULL;
    req__link(req);
    if (arm)
        client__arm(c);
    switch (conn->state) {
    case BK__C_IDLE:
        conn__start(conn);
        break;
    case BK__C_CONNECTED:
        if (mg_outq_flush(&conn->outq, (uv_stream_t *)&conn->tcp) != MG_OK)
            conn__fail_soon(conn);
        break;
    default:
        break; /* sent once connected */
    }
    return MG_OK;
}

static bool bk__id_ok(int64_t id)
{
    return id >= 0;
}

int bk_client_add(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                  size_t off, size_t len, bk_client_add_cb cb, void *arg)
{
    return bk_client_add_prefixed(c, addr, ledger_id, entry_id, NULL, 0, buf, off, len, cb, arg);
}

int bk_client_add_prefixed(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id,
                           const uint8_t *prefix, size_t prefix_len, mg_buf *buf, size_t off,
                           size_t len, bk_client_add_cb cb, void *arg)
{
    if (cb == NULL || !bk__id_ok(ledger_id) || !bk__id_ok(entry_id) || (buf == NULL && len > 0) ||
        (prefix == NULL && prefix_len > 0) || prefix_len > BK_REQUEST_PREFIX_BYTES_MAX)
        return MG_EINVAL;
    if (len > BK_ENTRY_BYTES_MAX - prefix_len)
        return MG_ELIMIT;
    bk_request wire = { .op = BK_OP_ADD,
                        .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                        .ledger_id = ledger_id,
                        .entry_id = entry_id };
    bk__creq tmpl = { .op = BK_OP_ADD, .ledger_id = ledger_id, .entry_id = entry_id, .arg = arg };
    tmpl.cb.add = cb;
    return client__submit(c, addr, &wire, prefix, prefix_len, buf, off, len, &tmpl);
}

int bk_client_read(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id,
                   bk_client_read_cb cb, void *arg)
{
    if (cb == NULL || !bk__id_ok(ledger_id) || !bk__id_ok(entry_id))
        return MG_EINVAL;
    bk_request wire = { .op = BK_OP_READ,
                        .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                        .ledger_id = ledger_id,
                        .entry_id = entry_id };
    bk__creq tmpl = { .op = BK_OP_READ, .ledger_id = ledger_id, .entry_id = entry_id, .arg = arg };
    tmpl.cb.read = cb;
    return client__submit(c, addr, &wire, NULL, 0, NULL, 0, 0, &tmpl);
}

int bk_client_read_range(bk_client *c, const char *addr, int64_t ledger_id, int64_t first,
                         int64_t last, uint32_t max_bytes, bk_client_read_cb cb, void *arg)
{
    if (cb == NULL || !bk__id_ok(ledger_id) || !bk__id_ok(first) || last < first)
        return MG_EINVAL;
    bk_request wire = { .op = BK_OP_READ_RANGE,
                        .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID | BK_HAS_LAST_ENTRY_ID |
                                   BK_HAS_MAX_BYTES,
                        .ledger_id = ledger_id,
                        .entry_id = first,
                        .last_entry_id = last,
                        .max_bytes = max_bytes };
    bk__creq tmpl = {
        .op = BK_OP_READ_RANGE, .ledger_id = ledger_id, .entry_id = first, .arg = arg
    };
    tmpl.cb.read = cb;
    return client__submit(c, addr, &wire, NULL, 0, NULL, 0, 0, &tmpl);
}

static int client__ledger_op(bk_client *c, const char *addr, int32_t op, int64_t ledger_id,
                             bk__creq *tmpl)
{
    if (!bk__id_ok(ledger_id))
        return MG_EINVAL;
    bk_request wire = { .op = op, .present = BK_HAS_LEDGER_ID, .ledger_id = ledger_id };
    tmpl->op = op;
    tmpl->ledger_id = ledger_id;
    tmpl->entry_id = -1;
    return client__submit(c, addr, &wire, NULL, 0, NULL, 0, 0, tmpl);
}

int bk_client_read_lac(bk_client *c, const char *addr, int64_t ledger_id, bk_client_lac_cb cb,
                       void *arg)
{
    if (cb == NULL)
        return MG_EINVAL;
    bk__creq tmpl = { .arg = arg };
    tmpl.cb.lac = cb;
    return client__ledger_op(c, addr, BK_OP_READ_LAC, ledger_id, &tmpl);
}

int bk_client_fence(bk_client *c, const char *addr, int64_t ledger_id, bk_client_lac_cb cb,
                    void *arg)
{
    if (cb == NULL)
        return MG_EINVAL;
    bk__creq tmpl = { .arg = arg };
    tmpl.cb.lac = cb;
    return client__ledger_op(c, addr, BK_OP_FENCE, ledger_id, &tmpl);
}

int bk_client_delete(bk_client *c, const char *addr, int64_t ledger_id, bk_client_done_cb cb,
                     void *arg)
{
    if (cb == NULL)
        return MG_EINVAL;
    bk__creq tmpl = { .arg = arg };
    tmpl.cb.done = cb;
    return client__ledger_op(c, addr, BK_OP_DELETE, ledger_id, &tmpl);
}

int bk_client_health(bk_client *c, const char *addr, bk_client_done_cb cb, void *arg)
{
    if (cb == NULL)
        return MG_EINVAL;
    bk_request wire = { .op = BK_OP_HEALTH };
    bk__creq tmpl = { .op = BK_OP_HEALTH, .ledger_id = -1, .entry_id = -1, .arg = arg };
    tmpl.cb.done = cb;
    return client__submit(c, addr, &wire, NULL, 0, NULL, 0, 0, &tmpl);
}
