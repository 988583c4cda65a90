/*
 * The Kafka port: listener, connections, framing, answers in request order, ApiVersions and the
 * dispatch table (kop_int.h). What is advertised is the table below and nothing else: an API or
 * version not in it closes the connection (Kafka's broker does the same), except ApiVersions,
 * which is answered at v0 with UNSUPPORTED_VERSION and the table, as Kafka does, so that a client
 * can retry at a version both know.
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/listen.h"
#include "common/log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef void (*kop_handler)(kop_req *q, kw_reader *r);

typedef struct kop_api {
    int16_t key;
    int16_t min, max;
    kop_handler fn;
} kop_api;

static void handle_api_versions(kop_req *q, kw_reader *r);

/* Versions: ../shared/REFERENCE.md §3 and docs/kafka.md (none of these is flexible except
 * ApiVersions v3, whose answer uses header v0 anyway). Produce starts at v0, with the message
 * sets of magic 0 and 1 (src/kafka/legacy.c): librdkafka up to 2.11 compresses with gzip,
 * snappy or lz4 only for a broker whose Produce versions start at 0. */
static const kop_api apis[] = {
    { KW_API_PRODUCE, 0, 7, kop_handle_produce },
    { KW_API_FETCH, 4, 11, kop_handle_fetch },
    { KW_API_LIST_OFFSETS, 0, 2, kop_handle_list_offsets },
    { KW_API_METADATA, 0, 4, kop_handle_metadata },
    { KW_API_OFFSET_COMMIT, 0, 7, kop_handle_offset_commit },
    { KW_API_OFFSET_FETCH, 1, 5, kop_handle_offset_fetch },
    { KW_API_FIND_COORDINATOR, 0, 2, kop_handle_find_coordinator },
    { KW_API_JOIN_GROUP, 0, 5, kop_handle_join_group },
    { KW_API_HEARTBEAT, 0, 3, kop_handle_heartbeat },
    { KW_API_LEAVE_GROUP, 0, 1, kop_handle_leave_group },
    { KW_API_SYNC_GROUP, 0, 3, kop_handle_sync_group },
    { KW_API_DESCRIBE_GROUPS, 0, 4, kop_handle_describe_groups },
    { KW_API_LIST_GROUPS, 0, 2, kop_handle_list_groups },
    { KW_API_API_VERSIONS, 0, 3, handle_api_versions },
    { KW_API_CREATE_TOPICS, 0, 4, kop_handle_create_topics },
    { KW_API_DELETE_TOPICS, 0, 3, kop_handle_delete_topics },
    { KW_API_INIT_PRODUCER_ID, 0, 1, kop_handle_init_producer_id },
};
#define APIS_COUNT (sizeof(apis) / sizeof(apis[0]))

static const kop_api *api_find(int16_t key)
{
    for (size_t i = 0; i < APIS_COUNT; i++)
        if (apis[i].key == key)
            return &apis[i];
    return NULL;
}

static void conn_process(kop_conn *c);
static void conn_resume(kop_conn *c);

/* ---- references and closing ------------------------------------------------------------------ */

void kop_conn_ref(kop_conn *c)
{
    c->refs++;
}

void kop_server_maybe_closed(kop_server *k)
{
    if (!k->closing || k->close_pending > 0 || !mg_list_empty(&k->conns) || k->forwards_open > 0 ||
        k->readers_open > 0)
        return;
    void (*cb)(void *) = k->closed_cb;
    void *arg = k->closed_arg;
    kop_groups_destroy(k->groups);
    mg_free(k);
    if (cb != NULL)
        cb(arg);
}

void kop_conn_unref(kop_conn *c)
{
    MG_ASSERT(c->refs > 0);
    if (--c->refs > 0)
        return;
    kop_server *k = c->k;
    MG_ASSERT(mg_list_empty(&c->reqs));
    mg_outq_discard(&c->out);
    mg_buf_unref(c->rbuf);
    mg_list_remove(&c->link);
    k->conn_count--;
    if (k->m_connections)
        mg_gauge_set(k->m_connections, k->conn_count);
    mg_free(c);
    kop_server_maybe_closed(k);
}

static void conn_handle_closed(uv_handle_t *h)
{
    kop_conn_unref(h->data);
}

void kop_conn_close(kop_conn *c, const char *reason)
{
    if (c->closing)
        return;
    if (reason != NULL)
        MG_INFO_LIMITED("kafka: closing connection from %s: %s", c->peer, reason);
    c->closing = true;
    kop_conn_readers_close(c);
    kop_groups_conn_closed(c->k->groups, c);
    mg_outq_discard(&c->out);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

void kop_conn_proto_error(kop_conn *c, const char *reason, const char *detail)
{
    kop_server *k = c->k;
    if (k->m_proto_errors) {
        const char *labels[] = { reason };
        mg_counter *ctr = mg_metrics_counter(k->m_proto_errors, labels);
        if (ctr != NULL)
            mg_counter_inc(ctr);
    }
    kop_conn_close(c, detail);
}

/* ---- answers --------------------------------------------------------------------------------- */

static void conn_written(mg_outq *q, int status)
{
    kop_conn *c = q->arg;
    if (c->closing)
        return;
    if (status != MG_OK) {
        kop_conn_close(c, mg_strerror(status));
        return;
    }
    int rc = mg_outq_flush(&c->out, (uv_stream_t *)&c->tcp);
    if (rc != MG_OK)
        kop_conn_close(c, mg_strerror(rc));
}

/* Sends the answers ready at the head of the queue, frees their requests. */
static void conn_send_ready(kop_conn *c)
{
    kop_server *k = c->k;
    bool queued = false;
    kop_conn_ref(c);
    while (!mg_list_empty(&c->reqs)) {
        kop_req *q = MG_CONTAINER_OF(c->reqs.next, kop_req, link);
        if (!q->done)
            break;
        mg_list_remove(&q->link);
        c->req_count--;
        c->req_bytes -= q->frame_len;
        if (q->resp != NULL && !c->closing) {
            if (mg_outq_push_buf(&c->out, q->resp) != MG_OK)
                kop_conn_close(c, "out of memory for an answer");
            queued = true;
        }
        for (size_t i = 0; i < q->resp_count; i++) {
            if (!c->closing && mg_outq_push_buf(&c->out, q->resp_parts[i]) != MG_OK)
                kop_conn_close(c, "out of memory for an answer");
            queued = true;
            mg_buf_unref(q->resp_parts[i]);
        }
        mg_free(q->resp_parts);
        if (q->api_key >= 0 && q->api_key < KOP_API_KEYS_MAX) {
            kop_api_stats *s = &k->api[q->api_key];
            if (s->latency_us)
                mg_histogram_observe(s->latency_us, (uv_hrtime() - q->start_ns) / 1000);
            if (q->error && s->errors)
                mg_counter_inc(s->errors);
        }
        mg_buf_unref(q->resp);
        mg_buf_unref(q->frame_buf);
        mg_free(q);
        kop_conn_unref(c);
    }
    if (queued && !c->closing) {
        int rc = mg_outq_flush(&c->out, (uv_stream_t *)&c->tcp);
        if (rc != MG_OK)
            kop_conn_close(c, mg_strerror(rc));
    }
    if (c->paused && c->req_count <= KOP_CONN_REQUESTS_MAX / 2 &&
        c->req_bytes <= KOP_CONN_REQUEST_BYTES_HELD_MAX / 2 && !c->closing) {
        c->paused = false;
        conn_resume(c);
    }
    kop_conn_unref(c);
}

void kop_reply_begin(kop_req *q, kw_writer *w)
{
    kw_writer_init(w, KW_FRAME_BYTES_MAX);
    kw_write_i32(w, 0);
    kw_write_i32(w, q->corr);
}

static void free_writer_buf(void *data, void *arg)
{
    (void)arg;
    mg_free(data);
}

void kop_reply_end(kop_req *q, kw_writer *w)
{
    MG_ASSERT(!q->done);
    kop_conn *c = q->c;
    kw_writer_patch_size(w, 0);
    if (w->error != MG_OK) {
        MG_WARN_LIMITED("kafka: cannot build the answer to %s from %s: %s", kw_api_name(q->api_key),
                        c->peer, mg_strerror(w->error));
        kw_writer_free(w);
        q->done = true;
        kop_conn_close(c, "answer too large or out of memory");
        conn_send_ready(c);
        return;
    }
    mg_buf *b = mg_buf_wrap(w->buf, w->len, free_writer_buf, NULL);
    if (b == NULL) {
        kw_writer_free(w);
        q->done = true;
        kop_conn_close(c, "out of memory for an answer");
        conn_send_ready(c);
        return;
    }
    w->buf = NULL;
    kw_writer_free(w);
    q->resp = b;
    q->done = true;
    conn_send_ready(c);
}

void kop_reply_parts(kop_req *q, mg_buf **parts, size_t n)
{
    MG_ASSERT(!q->done);
    q->resp_parts = parts;
    q->resp_count = n;
    q->done = true;
    conn_send_ready(q->c);
}

void kop_reply_none(kop_req *q)
{
    MG_ASSERT(!q->done);
    q->done = true;
    conn_send_ready(q->c);
}

void kop_read_partitions(kw_reader *r, int32_t topics, void **v, size_t *count, size_t *cap,
                         size_t elem, size_t max, kop_partition_read_fn read, void *arg)
{
    for (int32_t i = 0; i < topics && kw_reader_error(r) == MG_OK; i++) {
        kw_str name = kw_read_string(r);
        int32_t parts = kw_read_i32(r);
        if (name.len < 0 || parts < 0 || *count + (size_t)parts > max) {
            r->error = MG_EPROTO;
            return;
        }
        for (int32_t j = 0; j < parts && kw_reader_error(r) == MG_OK; j++) {
            if (*count == *cap) {
                size_t nc = *cap ? *cap * 2 : 4;
                void *nv = mg_realloc(*v, nc * elem);
                if (nv == NULL) {
                    r->error = MG_ENOMEM;
                    return;
                }
                *v = nv;
                *cap = nc;
            }
            uint8_t *el = (uint8_t *)*v + *count * elem;
            (*count)++;
            memset(el, 0, elem);
            read(el, name, r, arg);
        }
    }
}

/* ---- ApiVersions ----------------------------------------------------------------------------- */

static size_t api_ranges(kw_api_range *out)
{
    for (size_t i = 0; i < APIS_COUNT; i++)
        out[i] = (kw_api_range){ apis[i].key, apis[i].min, apis[i].max };
    return APIS_COUNT;
}

static void api_versions_reply(kop_req *q, int16_t version, int16_t error)
{
    kw_api_range ranges[APIS_COUNT];
    size_t n = api_ranges(ranges);
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_api_versions_response(&w, q->corr, version, error, ranges, n);
    /* kw_write_api_versions_response writes a whole frame: hand it over as it is. */
    if (w.error != MG_OK) {
        kw_writer_free(&w);
        q->done = true;
        kop_conn_close(q->c, "out of memory");
        conn_send_ready(q->c);
        return;
    }
    kop_req_error(q, error);
    mg_buf *b = mg_buf_wrap(w.buf, w.len, free_writer_buf, NULL);
    if (b == NULL) {
        kw_writer_free(&w);
        q->done = true;
        kop_conn_close(q->c, "out of memory");
        conn_send_ready(q->c);
        return;
    }
    q->resp = b;
    q->done = true;
    conn_send_ready(q->c);
}

static void handle_api_versions(kop_req *q, kw_reader *r)
{
    /* v3 carries client_software_name and _version (compact strings) and tagged fields; the
     * body is not needed for the answer, but a malformed one is refused as Kafka does. */
    if (q->version >= 3) {
        kw_read_compact_string(r);
        kw_read_compact_string(r);
        kw_skip_tagged_fields(r);
        if (kw_reader_error(r) != MG_OK) {
            api_versions_reply(q, q->version, KE_INVALID_REQUEST);
            return;
        }
    }
    api_versions_reply(q, q->version, KE_NONE);
}

/* ---- requests -------------------------------------------------------------------------------- */

static void run_handler(kop_req *q)
{
    kw_reader body;
    kw_reader_init(&body, q->body, q->body_len);
    q->handler(q, &body);
}

/* The group APIs name their group first; they are served by the group's coordinator only (the
 * owner of kop_group_topic's bundle), except the offsets requests another broker forwards. */
static bool needs_coordinator(const kop_req *q)
{
    switch (q->api_key) {
    case KW_API_JOIN_GROUP:
    case KW_API_SYNC_GROUP:
    case KW_API_HEARTBEAT:
    case KW_API_LEAVE_GROUP:
        return true;
    case KW_API_OFFSET_COMMIT:
    case KW_API_OFFSET_FETCH:
        return !q->forwarded;
    default:
        return false;
    }
}

static void coordinator_found(int status, const char *kafka_addr, void *arg)
{
    kop_req *q = arg;
    kop_conn *c = q->c;
    if (status != MG_OK)
        q->coord_error = KE_COORDINATOR_NOT_AVAILABLE;
    else if (kafka_addr != NULL)
        q->coord_error = KE_NOT_COORDINATOR;
    run_handler(q);
    kop_conn_unref(c);
}

static void coordinator_check(kop_req *q)
{
    kw_reader r;
    kw_reader_init(&r, q->body, q->body_len);
    kw_str group = kw_read_string(&r);
    if (kw_reader_error(&r) != MG_OK || group.len <= 0) {
        run_handler(q); /* the handler refuses it */
        return;
    }
    pw_topic_name tn;
    kop_group_topic(group.ptr, (size_t)group.len, &tn);
    kop_conn_ref(q->c);
    int rc = br_owner_kafka(q->c->k->b, &tn, coordinator_found, q);
    if (rc != MG_OK)
        coordinator_found(rc, NULL, q);
}

/* Handles the frame p[0, len) of c->rbuf. Returns false when the connection closed. */
static bool conn_request(kop_conn *c, const uint8_t *p, size_t len)
{
    kop_server *k = c->k;
    kw_reader r;
    kw_reader_init(&r, p + 4, len - 4);
    kw_request_header h;
    kw_read_request_header(&r, &h);
    if (kw_reader_error(&r) != MG_OK) {
        kop_conn_proto_error(c, "bad_header", "malformed request header");
        return false;
    }
    const kop_api *api = api_find(h.api_key);
    if (api == NULL) {
        if (k->m_unknown_api)
            mg_counter_inc(k->m_unknown_api);
        char why[96];
        snprintf(why, sizeof(why), "unknown API key %d", (int)h.api_key);
        kop_conn_proto_error(c, "unknown_api", why);
        return false;
    }
    kop_req *q = mg_calloc(1, sizeof(*q));
    if (q == NULL) {
        kop_conn_close(c, "out of memory for a request");
        return false;
    }
    q->c = c;
    q->api_key = h.api_key;
    q->version = h.api_version;
    q->corr = h.correlation_id;
    q->start_ns = uv_hrtime();
    q->frame_buf = mg_buf_ref(c->rbuf);
    q->body = p + 4 + r.pos;
    q->body_len = len - 4 - r.pos;
    q->frame_len = len;
    mg_list_push(&c->reqs, &q->link);
    c->req_count++;
    c->req_bytes += len;
    kop_conn_ref(c);
    if (h.client_id.len > 0 && c->client_id[0] == '\0') {
        size_t n = (size_t)h.client_id.len < sizeof(c->client_id) - 1 ? (size_t)h.client_id.len
                                                                      : sizeof(c->client_id) - 1;
        memcpy(c->client_id, h.client_id.ptr, n);
        c->client_id[n] = '\0';
    }
    if (h.api_key < KOP_API_KEYS_MAX && k->api[h.api_key].requests)
        mg_counter_inc(k->api[h.api_key].requests);
    if (h.api_version < api->min || h.api_version > api->max) {
        if (h.api_key == KW_API_API_VERSIONS) {
            api_versions_reply(q, 0, KE_UNSUPPORTED_VERSION);
            return !c->closing;
        }
        char why[128];
        snprintf(why, sizeof(why), "%s version %d is not served (versions %d to %d are)",
                 kw_api_name(h.api_key), (int)h.api_version, (int)api->min, (int)api->max);
        q->done = true;
        kop_conn_proto_error(c, "unsupported_version", why);
        conn_send_ready(c);
        return false;
    }
    q->forwarded = h.client_id.len == (int32_t)strlen(KOP_FORWARD_CLIENT_ID) &&
                   memcmp(h.client_id.ptr, KOP_FORWARD_CLIENT_ID, (size_t)h.client_id.len) == 0;
    q->handler = api->fn;
    kop_conn_ref(c);
    if (needs_coordinator(q))
        coordinator_check(q);
    else
        run_handler(q);
    bool open = !c->closing;
    kop_conn_unref(c);
    return open;
}

static void conn_process(kop_conn *c)
{
    while (!c->closing && c->reading) {
        if (c->req_count >= KOP_CONN_REQUESTS_MAX ||
            c->req_bytes >= KOP_CONN_REQUEST_BYTES_HELD_MAX) {
            c->paused = true;
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
            return;
        }
        size_t n = mg_buf_len(c->rbuf) - c->rpos;
        const uint8_t *p = mg_buf_data(c->rbuf) + c->rpos;
        size_t flen;
        int rc = kw_frame_size(p, n, KOP_REQUEST_BYTES_MAX, &flen);
        if (rc == MG_EAGAIN)
            return;
        if (rc == MG_ELIMIT) {
            kop_conn_proto_error(c, "frame_too_large",
                                 "a request larger than the limit (see docs/kafka.md)");
            return;
        }
        if (rc != MG_OK) {
            kop_conn_proto_error(c, "bad_frame", "malformed request size");
            return;
        }
        if (flen > n)
            return;
        c->rpos += flen;
        if (!conn_request(c, p, flen))
            return;
    }
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    kop_conn *c = h->data;
    size_t unparsed = c->rbuf != NULL ? mg_buf_len(c->rbuf) - c->rpos : 0;
    size_t want = KOP_READ_BUF_BYTES;
    if (unparsed >= 4) {
        size_t flen;
        if (kw_frame_size(mg_buf_data(c->rbuf) + c->rpos, unparsed, KOP_REQUEST_BYTES_MAX, &flen) ==
                MG_OK &&
            flen > want)
            want = flen;
    }
    size_t room = c->rbuf != NULL ? mg_buf_cap(c->rbuf) - mg_buf_len(c->rbuf) : 0;
    /* A fresh buffer when the frame being read does not fit in what is left, or little is. */
    if (c->rbuf == NULL || c->rpos + want > mg_buf_cap(c->rbuf) || room < 4096) {
        mg_buf *nb = mg_buf_new(want);
        if (nb == NULL) {
            out->base = NULL;
            out->len = 0;
            return;
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
    kop_conn *c = stream->data;
    if (nread == UV_ENOBUFS) {
        kop_conn_close(c, "out of memory for the receive buffer");
        return;
    }
    if (nread < 0) {
        kop_conn_close(c, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    mg_buf_set_len(c->rbuf, mg_buf_len(c->rbuf) + (size_t)nread);
    kop_conn_ref(c);
    conn_process(c);
    kop_conn_unref(c);
}

static void conn_resume(kop_conn *c)
{
    if (c->reading || c->closing)
        return;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
    if (rc < 0) {
        kop_conn_close(c, uv_strerror(rc));
        return;
    }
    c->reading = true;
    if (c->rbuf != NULL) {
        kop_conn_ref(c);
        conn_process(c);
        kop_conn_unref(c);
    }
}

static void on_accept(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    (void)addr_len;
    kop_server *k = arg;
    if (k->closing || k->conn_count >= BR_CONNECTIONS_MAX) {
        close(fd);
        MG_WARN_LIMITED("kafka: refusing a connection: %u open, the limit",
                        (unsigned)k->conn_count);
        return;
    }
    kop_conn *c = mg_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->k = k;
    c->id = ++k->next_conn_id;
    mg_list_init(&c->reqs);
    mg_list_init(&c->readers);
    mg_list_init(&c->link);
    mg_outq_init(&c->out, conn_written, c);
    uv_tcp_init(k->loop, &c->tcp);
    c->tcp.data = c;
    c->refs = 1;
    mg_list_push(&k->conns, &c->link);
    k->conn_count++;
    if (k->m_connections)
        mg_gauge_set(k->m_connections, k->conn_count);
    mg_sockaddr_format(addr, c->peer, sizeof(c->peer));
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        kop_conn_close(c, uv_strerror(rc));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_resume(c);
}

/* ---- server ---------------------------------------------------------------------------------- */

static void register_metrics(kop_server *k, mg_metrics *m)
{
    if (m == NULL)
        return;
    static const char *const api_label[] = { "api" };
    mg_metric_family *req = mg_metrics_counter_family(
        m, "magnetar_kafka_requests_total", "Kafka requests received, by API", 1, api_label);
    mg_metric_family *err = mg_metrics_counter_family(
        m, "magnetar_kafka_request_errors_total",
        "Kafka requests answered with an error code somewhere in the answer, by API", 1, api_label);
    mg_metric_family *lat = mg_metrics_histogram_family(
        m, "magnetar_kafka_request_latency_ms",
        "Time from a Kafka request's arrival to its answer, by API, in milliseconds", 1, api_label,
        0.001);
    for (size_t i = 0; i < APIS_COUNT; i++) {
        const char *labels[] = { kw_api_name(apis[i].key) };
        kop_api_stats *s = &k->api[apis[i].key];
        s->requests = req ? mg_metrics_counter(req, labels) : NULL;
        s->errors = err ? mg_metrics_counter(err, labels) : NULL;
        s->latency_us = lat ? mg_metrics_histogram(lat, labels) : NULL;
    }
    static const char *const reason[] = { "reason" };
    k->m_proto_errors = mg_metrics_counter_family(
        m, "magnetar_kafka_protocol_errors_total",
        "Bad input from Kafka clients that closed the connection, by kind", 1, reason);
    k->m_unknown_api = mg_metrics_unlabelled_counter(m, "magnetar_kafka_unknown_api_total",
                                                     "Kafka requests of an API key not served");
    k->m_connections =
        mg_metrics_unlabelled_gauge(m, "magnetar_kafka_connections", "Kafka connections open");
    k->m_records_in = mg_metrics_unlabelled_counter(m, "magnetar_kafka_records_in_total",
                                                    "Records stored from Kafka producers");
    k->m_records_out = mg_metrics_unlabelled_counter(m, "magnetar_kafka_records_out_total",
                                                     "Records sent to Kafka consumers");
}

static void sweep_tick(uv_timer_t *t)
{
    kop_readers_sweep(t->data);
}

int kop_start(br_broker *b, const char *host, uint16_t port, kop_server **out)
{
    kop_server *k = mg_calloc(1, sizeof(*k));
    if (k == NULL)
        return MG_ENOMEM;
    k->b = b;
    k->loop = b->loop;
    mg_list_init(&k->conns);
    mg_list_init(&k->forwards);
    snprintf(k->advertised, sizeof(k->advertised), "%s", b->advertised);
    int rc = kop_groups_create(k, &k->groups);
    if (rc != MG_OK) {
        mg_free(k);
        return rc;
    }
    int fd = -1;
    rc = mg_listen_socket("kafka", host, port, 511, &fd, &k->port);
    if (rc == MG_OK)
        rc = mg_listener_start(k->loop, fd, "kafka", on_accept, k, &k->listener);
    if (rc != MG_OK) {
        kop_groups_destroy(k->groups);
        mg_free(k);
        return rc;
    }
    register_metrics(k, b->opts.metrics);
    char addr[192];
    snprintf(addr, sizeof(addr), "%s:%u", k->advertised, (unsigned)k->port);
    k->node_id = kop_node_id(addr);
    uv_timer_init(k->loop, &k->sweep);
    k->sweep.data = k;
    uv_timer_start(&k->sweep, sweep_tick, KOP_READER_IDLE_MS / 4, KOP_READER_IDLE_MS / 4);
    uv_unref((uv_handle_t *)&k->sweep);
    MG_INFO("kafka: serving the Kafka protocol on %s:%u", host != NULL ? host : "0.0.0.0",
            (unsigned)k->port);
    *out = k;
    return MG_OK;
}

uint16_t kop_port(const kop_server *k)
{
    return k->port;
}

static void listener_closed(void *arg)
{
    kop_server *k = arg;
    MG_ASSERT(k->close_pending > 0);
    k->close_pending--;
    kop_server_maybe_closed(k);
}

static void sweep_closed(uv_handle_t *h)
{
    listener_closed(h->data);
}

void kop_close(kop_server *k, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!k->closing);
    k->closing = true;
    k->closed_cb = closed;
    k->closed_arg = arg;
    k->close_pending = 2;
    mg_listener_close(k->listener, listener_closed, k);
    uv_close((uv_handle_t *)&k->sweep, sweep_closed);
    for (mg_link *l = k->conns.next; l != &k->conns;) {
        kop_conn *c = MG_CONTAINER_OF(l, kop_conn, link);
        l = l->next;
        kop_conn_close(c, NULL);
    }
    kop_forwards_close(k);
    kop_server_maybe_closed(k);
}
