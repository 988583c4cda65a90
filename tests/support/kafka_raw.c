/*
 * The raw-socket Kafka client of the tests (see kafka_raw.h): blocking sockets, poll for bounded
 * reads, requests and answers through src/kafka's codec. The layouts are those of Kafka's message
 * specifications at the versions kafka_raw.h names.
 */
#include "support/kafka_raw.h"

#include "common/error.h"
#include "support/sa_harness.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* The helpers' versions (kafka_raw.h). */
#define V_PRODUCE          7
#define V_FETCH            11
#define V_LIST_OFFSETS     2
#define V_INIT_PRODUCER    1
#define V_JOIN_GROUP       4
#define V_SYNC_GROUP       2
#define V_HEARTBEAT        2
#define V_LEAVE_GROUP      1
#define V_OFFSET_COMMIT    7
#define V_OFFSET_FETCH     5
#define V_DESCRIBE_GROUPS  4
/* The produce timeout sent (the broker answers once stored, whatever it is). */
#define PRODUCE_TIMEOUT_MS 30000

krw_conn krw_open(uint16_t port, int timeout_ms)
{
    krw_conn c = { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0),
                   .timeout_ms = timeout_ms,
                   .next_corr = 1 };
    cr_assert_geq(c.fd, 0, "socket: %s", strerror(errno));
    /* Bounds connect and every send: a broker that stops reading cannot hang the test. */
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(c.fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect to %u: %s", port,
                 strerror(errno));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
}

static void forget_answer(krw_conn *c)
{
    free(c->raw);
    c->raw = NULL;
    c->raw_len = 0;
    kw_reader_init(&c->body, NULL, 0);
}

void krw_close(krw_conn *c)
{
    forget_answer(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

void krw_write(krw_conn *c, const void *p, size_t n)
{
    cr_assert_geq(c->fd, 0, "write on a closed connection");
    const uint8_t *b = p;
    size_t done = 0;
    int64_t deadline = sah_now_ms() + c->timeout_ms;
    while (done < n) {
        ssize_t k = send(c->fd, b + done, n - done, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        cr_assert_gt(k, 0, "send: %s", strerror(errno));
        done += (size_t)k;
        cr_assert_lt(sah_now_ms(), deadline, "send did not finish in time");
    }
}

int32_t krw_begin(krw_conn *c, kw_writer *w, int16_t api_key, int16_t version)
{
    int32_t corr = c->next_corr++;
    kw_writer_init(w, 0);
    kw_write_i32(w, 0);
    kw_write_i16(w, api_key);
    kw_write_i16(w, version);
    kw_write_i32(w, corr);
    kw_write_string(w, KRW_CLIENT_ID);
    if (kw_request_header_version(api_key, version) >= 2)
        kw_write_empty_tagged_fields(w);
    return corr;
}

void krw_finish(kw_writer *w, size_t at)
{
    kw_writer_patch_size(w, at);
    cr_assert_eq(kw_writer_error(w), MG_OK, "building a request: %s",
                 mg_strerror(kw_writer_error(w)));
}

void krw_send(krw_conn *c, kw_writer *w)
{
    krw_finish(w, 0);
    krw_write(c, w->buf, w->len);
    kw_writer_free(w);
}

/* Reads exactly n bytes before deadline_ms. */
static krw_result read_exact(krw_conn *c, uint8_t *dst, size_t n, int64_t deadline_ms)
{
    size_t got = 0;
    while (got < n) {
        int64_t left = deadline_ms - sah_now_ms();
        if (left <= 0)
            return KRW_TIMEOUT;
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_geq(r, 0, "poll: %s", strerror(errno));
        if (r == 0)
            continue;
        ssize_t k = recv(c->fd, dst + got, n - got, 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return KRW_EOF;
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        cr_assert_gt(k, 0, "recv: %s", strerror(errno));
        got += (size_t)k;
    }
    return KRW_FRAME;
}

krw_result krw_read(krw_conn *c, int64_t deadline_ms)
{
    forget_answer(c);
    cr_assert_geq(c->fd, 0, "read on a closed connection");
    uint8_t head[4];
    krw_result r = read_exact(c, head, 4, deadline_ms);
    if (r != KRW_FRAME)
        return r;
    int32_t size = (int32_t)((uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 |
                             (uint32_t)head[2] << 8 | (uint32_t)head[3]);
    cr_assert(size >= 4 && (uint32_t)size <= KRW_FRAME_BYTES_MAX, "an answer of size %d", size);
    c->raw_len = (size_t)size;
    c->raw = malloc(c->raw_len);
    cr_assert_not_null(c->raw);
    r = read_exact(c, c->raw, c->raw_len, deadline_ms);
    cr_assert_eq(r, KRW_FRAME, "connection ended inside an answer of %zu bytes (result %d)",
                 c->raw_len, r);
    kw_reader_init(&c->body, c->raw, c->raw_len);
    c->corr = kw_read_i32(&c->body);
    return KRW_FRAME;
}

kw_reader *krw_expect(krw_conn *c, int32_t corr, const char *what)
{
    krw_result r = krw_read(c, sah_now_ms() + c->timeout_ms);
    cr_assert_eq(r, KRW_FRAME, "waiting for the answer to %s (correlation id %d): %s", what, corr,
                 r == KRW_EOF ? "connection closed" : "timed out");
    cr_assert_eq(c->corr, corr, "the answer to %s has correlation id %d, expected %d", what,
                 c->corr, corr);
    return &c->body;
}

void krw_expect_closed(krw_conn *c, int timeout_ms, const char *what)
{
    krw_result r = krw_read(c, sah_now_ms() + timeout_ms);
    if (r == KRW_FRAME)
        cr_assert_fail("%s: expected the connection closed, got an answer (correlation id %d, "
                       "%zu bytes)",
                       what, c->corr, c->raw_len);
    cr_assert_eq(r, KRW_EOF, "%s: the connection was not closed within %d ms", what, timeout_ms);
    krw_close(c);
}

void krw_done(kw_reader *r, const char *what)
{
    cr_assert_eq(kw_reader_error(r), MG_OK, "the answer to %s is malformed (short)", what);
    cr_assert_eq(kw_reader_left(r), 0, "the answer to %s has %zu bytes past its fields", what,
                 kw_reader_left(r));
}

/* Copies a string read into dst (cut to cap - 1; "" for null). */
static void str_copy(char *dst, size_t cap, kw_str s)
{
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    if (n > cap - 1)
        n = cap - 1;
    if (n > 0)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static bool str_is(kw_str s, const char *c)
{
    return s.len >= 0 && (size_t)s.len == strlen(c) && memcmp(s.ptr, c, (size_t)s.len) == 0;
}

/* Reads a string that must be name. */
static void expect_name(kw_reader *r, const char *name, const char *what)
{
    kw_str s = kw_read_string(r);
    cr_assert_eq(kw_reader_error(r), MG_OK, "the answer to %s is malformed", what);
    cr_assert(str_is(s, name), "the answer to %s names %.*s, expected %s", what,
              s.len > 0 ? (int)s.len : 0, s.len > 0 ? s.ptr : "", name);
}

/* --- ApiVersions ----------------------------------------------------------------------------- */

int16_t krw_api_versions(krw_conn *c, int16_t version, int16_t answer_version, kw_api_range *out,
                         size_t cap, size_t *count)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_API_VERSIONS, version);
    if (version >= 3) {
        kw_write_compact_string(&w, "magnetar-kafka-raw");
        kw_write_compact_string(&w, "1.0");
        kw_write_empty_tagged_fields(&w);
    }
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "ApiVersions");
    int16_t error = kw_read_i16(r);
    int64_t n = answer_version >= 3 ? (int64_t)kw_read_uvarint(r) - 1 : kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && n >= 0 && n < 1000,
              "ApiVersions answer with %lld APIs", (long long)n);
    *count = 0;
    for (int64_t i = 0; i < n; i++) {
        kw_api_range a;
        a.api_key = kw_read_i16(r);
        a.min_version = kw_read_i16(r);
        a.max_version = kw_read_i16(r);
        if (answer_version >= 3)
            kw_skip_tagged_fields(r);
        if (*count < cap)
            out[*count] = a;
        (*count)++;
    }
    if (answer_version >= 1)
        kw_read_i32(r); /* throttle_time_ms */
    if (answer_version >= 3)
        kw_skip_tagged_fields(r);
    krw_done(r, "ApiVersions");
    return error;
}

/* --- Records and Produce --------------------------------------------------------------------- */

void krw_write_batch(kw_writer *w, const krw_batch *b, const char *const *values, int count)
{
    cr_assert_eq(b->attributes & 7, 0, "krw_write_batch writes uncompressed records");
    kw_writer recs;
    kw_writer_init(&recs, 0);
    for (int i = 0; i < count; i++)
        kw_write_record(&recs, 0, i, NULL, -1, values[i], (int32_t)strlen(values[i]), NULL, 0);
    cr_assert_eq(kw_writer_error(&recs), MG_OK);
    int64_t now = sah_wall_ms();
    kw_record_batch kb = { .base_offset = 0,
                           .partition_leader_epoch = -1,
                           .attributes = b->attributes,
                           .last_offset_delta = count - 1,
                           .base_timestamp = now,
                           .max_timestamp = now,
                           .producer_id = b->producer_id,
                           .producer_epoch = b->producer_epoch,
                           .base_sequence = b->base_sequence,
                           .records_count = count };
    kw_write_record_batch(w, &kb, recs.buf, recs.len);
    kw_writer_free(&recs);
    cr_assert_eq(kw_writer_error(w), MG_OK);
}

void krw_produce_body(kw_writer *w, const char *transactional_id, int16_t acks, int32_t timeout_ms,
                      const char *topic, int32_t partition, const void *records, size_t len)
{
    kw_write_string(w, transactional_id);
    kw_write_i16(w, acks);
    kw_write_i32(w, timeout_ms);
    kw_write_i32(w, 1); /* topics */
    kw_write_string(w, topic);
    kw_write_i32(w, 1); /* partitions */
    kw_write_i32(w, partition);
    if (records == NULL) {
        kw_write_i32(w, -1);
    } else {
        kw_write_i32(w, (int32_t)len);
        kw_write_bytes(w, records, len);
    }
}

krw_produce_result krw_parse_produce(kw_reader *r, int16_t version, const char *topic,
                                     int32_t partition)
{
    krw_produce_result out = { .error = -1, .base_offset = -1 };
    cr_assert_eq(kw_read_i32(r), 1, "a Produce answer about other than one topic");
    expect_name(r, topic, "Produce");
    cr_assert_eq(kw_read_i32(r), 1, "a Produce answer about other than one partition");
    cr_assert_eq(kw_read_i32(r), partition, "a Produce answer about another partition");
    out.error = kw_read_i16(r);
    out.base_offset = kw_read_i64(r);
    kw_read_i64(r); /* log_append_time_ms (v2+) */
    if (version >= 5)
        kw_read_i64(r); /* log_start_offset */
    kw_read_i32(r);     /* throttle_time_ms */
    krw_done(r, "Produce");
    return out;
}

krw_produce_result krw_produce(krw_conn *c, const char *topic, int32_t partition, int16_t acks,
                               const void *records, size_t len)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_PRODUCE, V_PRODUCE);
    krw_produce_body(&w, NULL, acks, PRODUCE_TIMEOUT_MS, topic, partition, records, len);
    krw_send(c, &w);
    return krw_parse_produce(krw_expect(c, corr, "Produce"), V_PRODUCE, topic, partition);
}

int64_t krw_produce_values(krw_conn *c, const char *topic, int32_t partition,
                           const char *const *values, int count)
{
    kw_writer b;
    kw_writer_init(&b, 0);
    krw_write_batch(&b, &KRW_BATCH_PLAIN, values, count);
    krw_produce_result pr = krw_produce(c, topic, partition, 1, b.buf, b.len);
    kw_writer_free(&b);
    cr_assert_eq(pr.error, KW_ERR_NONE, "producing %d records to %s-%d: error %d", count, topic,
                 partition, pr.error);
    cr_assert_geq(pr.base_offset, 0);
    return pr.base_offset;
}

/* --- Fetch and ListOffsets ------------------------------------------------------------------- */

void krw_fetch_body(kw_writer *w, int16_t version, int32_t max_wait_ms, int32_t min_bytes,
                    const char *topic, int32_t partition, int64_t offset, int32_t max_bytes)
{
    kw_write_i32(w, -1); /* replica_id: a consumer */
    kw_write_i32(w, max_wait_ms);
    kw_write_i32(w, min_bytes);
    kw_write_i32(w, max_bytes); /* the whole answer's (v3+) */
    kw_write_i8(w, 0);          /* isolation_level: read uncommitted (v4+) */
    if (version >= 7) {
        kw_write_i32(w, 0);  /* session_id */
        kw_write_i32(w, -1); /* session_epoch: a full fetch, no session */
    }
    kw_write_i32(w, 1);
    kw_write_string(w, topic);
    kw_write_i32(w, 1);
    kw_write_i32(w, partition);
    if (version >= 9)
        kw_write_i32(w, -1); /* current_leader_epoch */
    kw_write_i64(w, offset);
    if (version >= 5)
        kw_write_i64(w, -1); /* log_start_offset (of a follower) */
    kw_write_i32(w, max_bytes);
    if (version >= 7)
        kw_write_i32(w, 0); /* forgotten_topics_data */
    if (version >= 11)
        kw_write_string(w, ""); /* rack_id */
}

/* Adds the records of the record set p[0, n) to out. */
static void parse_record_set(const uint8_t *p, size_t n, krw_fetch_result *out)
{
    size_t off = 0;
    while (off < n) {
        kw_record_batch kb;
        size_t blen;
        if (n - off < KW_RECORD_BATCH_HEADER_BYTES)
            break; /* a partial batch at the end */
        int32_t batch_length = (int32_t)((uint32_t)p[off + 8] << 24 | (uint32_t)p[off + 9] << 16 |
                                         (uint32_t)p[off + 10] << 8 | (uint32_t)p[off + 11]);
        if (batch_length >= 0 && (size_t)batch_length + 12 > n - off)
            break;
        int rc = kw_record_batch_parse(p + off, n - off, &kb, &blen);
        cr_assert_eq(rc, MG_OK, "a fetched record batch at byte %zu does not parse: %s", off,
                     mg_strerror(rc));
        cr_assert_eq(kb.attributes & 7, KW_CODEC_NONE,
                     "a fetched record batch is compressed (codec %d)", kb.attributes & 7);
        kw_reader rr;
        kw_reader_init(&rr, kb.records, kb.records_len);
        for (int32_t i = 0; i < kb.records_count; i++) {
            kw_record rec;
            kw_read_record(&rr, &rec);
            cr_assert_eq(kw_reader_error(&rr), MG_OK, "a fetched record does not decode");
            cr_assert_lt(out->record_count, KRW_FETCH_RECORDS_MAX);
            krw_record_view *v = &out->records[out->record_count++];
            v->offset = kb.base_offset + rec.offset_delta;
            v->key = rec.key;
            v->value = rec.value;
        }
        cr_assert_eq(kw_reader_left(&rr), 0, "a fetched batch has bytes after its %d records",
                     kb.records_count);
        off += blen;
    }
}

void krw_parse_fetch(kw_reader *r, int16_t version, const char *topic, int32_t partition,
                     krw_fetch_result *out)
{
    memset(out, 0, sizeof(*out));
    out->log_start_offset = -1;
    kw_read_i32(r); /* throttle_time_ms */
    if (version >= 7) {
        int16_t top = kw_read_i16(r);
        cr_assert_eq(top, KW_ERR_NONE, "Fetch answered with the top-level error %d", top);
        kw_read_i32(r); /* session_id */
    }
    cr_assert_eq(kw_read_i32(r), 1, "a Fetch answer about other than one topic");
    expect_name(r, topic, "Fetch");
    cr_assert_eq(kw_read_i32(r), 1, "a Fetch answer about other than one partition");
    cr_assert_eq(kw_read_i32(r), partition, "a Fetch answer about another partition");
    out->error = kw_read_i16(r);
    out->high_watermark = kw_read_i64(r);
    kw_read_i64(r); /* last_stable_offset */
    if (version >= 5)
        out->log_start_offset = kw_read_i64(r);
    int32_t aborted = kw_read_i32(r);
    for (int32_t i = 0; i < aborted && kw_reader_error(r) == MG_OK; i++) {
        kw_read_i64(r);
        kw_read_i64(r);
    }
    if (version >= 11)
        kw_read_i32(r); /* preferred_read_replica */
    int32_t len = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && len >= -1 &&
                  (len < 0 || (size_t)len <= kw_reader_left(r)),
              "a Fetch answer with a record set of %d bytes", len);
    if (len > 0) {
        parse_record_set(r->p + r->pos, (size_t)len, out);
        r->pos += (size_t)len;
    }
    krw_done(r, "Fetch");
}

void krw_fetch(krw_conn *c, const char *topic, int32_t partition, int64_t offset,
               int32_t max_wait_ms, krw_fetch_result *out)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_FETCH, V_FETCH);
    krw_fetch_body(&w, V_FETCH, max_wait_ms, 1, topic, partition, offset, 1 << 20);
    krw_send(c, &w);
    krw_parse_fetch(krw_expect(c, corr, "Fetch"), V_FETCH, topic, partition, out);
}

int16_t krw_list_offsets(krw_conn *c, const char *topic, int32_t partition, int64_t timestamp,
                         int64_t *offset)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_LIST_OFFSETS, V_LIST_OFFSETS);
    kw_write_i32(&w, -1); /* replica_id */
    kw_write_i8(&w, 0);   /* isolation_level */
    kw_write_i32(&w, 1);
    kw_write_string(&w, topic);
    kw_write_i32(&w, 1);
    kw_write_i32(&w, partition);
    kw_write_i64(&w, timestamp);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "ListOffsets");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "a ListOffsets answer about other than one topic");
    expect_name(r, topic, "ListOffsets");
    cr_assert_eq(kw_read_i32(r), 1, "a ListOffsets answer about other than one partition");
    cr_assert_eq(kw_read_i32(r), partition, "a ListOffsets answer about another partition");
    int16_t error = kw_read_i16(r);
    kw_read_i64(r); /* timestamp */
    *offset = kw_read_i64(r);
    krw_done(r, "ListOffsets");
    return error;
}

/* --- Metadata and InitProducerId ------------------------------------------------------------- */

void krw_metadata_req(krw_conn *c, int16_t version, const char *const *topics, int count,
                      bool allow_auto_create, krw_metadata *out)
{
    cr_assert(version >= 0 && version <= 4, "krw_metadata_req speaks Metadata v0-4");
    cr_assert(topics != NULL || version >= 1, "Metadata v0 has no null list (an empty one)");
    memset(out, 0, sizeof(*out));
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_METADATA, version);
    kw_write_i32(&w, topics == NULL ? -1 : count);
    for (int i = 0; topics != NULL && i < count; i++)
        kw_write_string(&w, topics[i]);
    if (version >= 4)
        kw_write_i8(&w, allow_auto_create ? 1 : 0);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "Metadata");
    if (version >= 3)
        kw_read_i32(r); /* throttle_time_ms */
    out->broker_count = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && out->broker_count >= 0 && out->broker_count < 1000,
              "a Metadata answer with %d brokers", out->broker_count);
    for (int32_t i = 0; i < out->broker_count; i++) {
        int32_t node = kw_read_i32(r);
        kw_str host = kw_read_string(r);
        int32_t port = kw_read_i32(r);
        if (version >= 1)
            kw_read_string(r); /* rack */
        if (i == 0) {
            out->node_id = node;
            str_copy(out->host, sizeof(out->host), host);
            out->port = port;
        }
    }
    if (version >= 2)
        kw_read_string(r); /* cluster_id */
    out->controller_id = version >= 1 ? kw_read_i32(r) : -1;
    int32_t n = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && n >= 0 && n <= KRW_TOPICS_MAX,
              "a Metadata answer with %d topics", n);
    for (int32_t i = 0; i < n; i++) {
        krw_md_topic *t = &out->topics[out->topic_count++];
        t->error = kw_read_i16(r);
        str_copy(t->name, sizeof(t->name), kw_read_string(r));
        if (version >= 1)
            kw_read_i8(r); /* is_internal */
        t->partition_count = kw_read_i32(r);
        t->leader = -1;
        cr_assert(kw_reader_error(r) == MG_OK && t->partition_count >= 0 &&
                      t->partition_count < 100000,
                  "a Metadata answer with %d partitions", t->partition_count);
        for (int32_t j = 0; j < t->partition_count; j++) {
            int16_t pe = kw_read_i16(r);
            kw_read_i32(r); /* partition_index */
            int32_t leader = kw_read_i32(r);
            if (j == 0) {
                t->partition_error = pe;
                t->leader = leader;
            }
            for (int k = 0; k < 2; k++) { /* replica_nodes, isr_nodes */
                int32_t m = kw_read_i32(r);
                for (int32_t l = 0; l < m && kw_reader_error(r) == MG_OK; l++)
                    kw_read_i32(r);
            }
        }
    }
    krw_done(r, "Metadata");
}

const krw_md_topic *krw_md_find(const krw_metadata *md, const char *name)
{
    for (size_t i = 0; i < md->topic_count; i++)
        if (strcmp(md->topics[i].name, name) == 0)
            return &md->topics[i];
    return NULL;
}

int16_t krw_init_producer_id(krw_conn *c, int64_t *producer_id, int16_t *epoch)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_INIT_PRODUCER_ID, V_INIT_PRODUCER);
    kw_write_string(&w, NULL); /* transactional_id */
    kw_write_i32(&w, 60000);   /* transaction_timeout_ms */
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "InitProducerId");
    kw_read_i32(r); /* throttle_time_ms */
    int16_t error = kw_read_i16(r);
    *producer_id = kw_read_i64(r);
    *epoch = kw_read_i16(r);
    krw_done(r, "InitProducerId");
    return error;
}

/* --- Groups and offsets ---------------------------------------------------------------------- */

int32_t krw_join_group_send(krw_conn *c, const char *group, const char *member_id)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_JOIN_GROUP, V_JOIN_GROUP);
    kw_write_string(&w, group);
    kw_write_i32(&w, KRW_SESSION_TIMEOUT_MS);
    kw_write_i32(&w, KRW_REBALANCE_TIMEOUT_MS);
    kw_write_string(&w, member_id);
    kw_write_string(&w, "consumer");
    kw_write_i32(&w, 1);
    kw_write_string(&w, "range");
    static const uint8_t md[] = { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 }; /* version 1, no topics */
    kw_write_i32(&w, (int32_t)sizeof(md));
    kw_write_bytes(&w, md, sizeof(md));
    krw_send(c, &w);
    return corr;
}

void krw_join_group_read(krw_conn *c, int32_t corr, krw_join *out)
{
    memset(out, 0, sizeof(*out));
    kw_reader *r = krw_expect(c, corr, "JoinGroup");
    kw_read_i32(r); /* throttle_time_ms */
    out->error = kw_read_i16(r);
    out->generation = kw_read_i32(r);
    str_copy(out->protocol, sizeof(out->protocol), kw_read_string(r));
    str_copy(out->leader, sizeof(out->leader), kw_read_string(r));
    str_copy(out->member_id, sizeof(out->member_id), kw_read_string(r));
    int32_t n = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && n >= 0 && n < 1000,
              "a JoinGroup answer with %d members", n);
    for (int32_t i = 0; i < n; i++) {
        kw_str id = kw_read_string(r);
        int32_t len = kw_read_i32(r);
        cr_assert(kw_reader_error(r) == MG_OK && len >= -1 &&
                      (len < 0 || (size_t)len <= kw_reader_left(r)),
                  "a JoinGroup member with %d bytes of metadata", len);
        if (len > 0)
            r->pos += (size_t)len;
        if (out->member_count < KRW_MEMBERS_MAX)
            str_copy(out->members[out->member_count], KRW_NAME_BYTES_MAX, id);
        out->member_count++;
    }
    krw_done(r, "JoinGroup");
}

void krw_join_group(krw_conn *c, const char *group, const char *member_id, krw_join *out)
{
    krw_join_group_read(c, krw_join_group_send(c, group, member_id), out);
}

int32_t krw_sync_group_send(krw_conn *c, const char *group, int32_t generation,
                            const char *member_id, const char *const *members,
                            const char *const *assignments, int count)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_SYNC_GROUP, V_SYNC_GROUP);
    kw_write_string(&w, group);
    kw_write_i32(&w, generation);
    kw_write_string(&w, member_id);
    kw_write_i32(&w, count);
    for (int i = 0; i < count; i++) {
        kw_write_string(&w, members[i]);
        kw_write_i32(&w, (int32_t)strlen(assignments[i]));
        kw_write_bytes(&w, assignments[i], strlen(assignments[i]));
    }
    krw_send(c, &w);
    return corr;
}

int16_t krw_sync_group_read(krw_conn *c, int32_t corr, char *assignment, size_t cap)
{
    kw_reader *r = krw_expect(c, corr, "SyncGroup");
    kw_read_i32(r); /* throttle_time_ms */
    int16_t error = kw_read_i16(r);
    int32_t len = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && len >= -1 &&
                  (len < 0 || (size_t)len <= kw_reader_left(r)),
              "a SyncGroup answer with an assignment of %d bytes", len);
    kw_str a = { .ptr = (const char *)r->p + r->pos, .len = len };
    str_copy(assignment, cap, a);
    r->pos += len > 0 ? (size_t)len : 0;
    krw_done(r, "SyncGroup");
    return error;
}

int16_t krw_sync_group(krw_conn *c, const char *group, int32_t generation, const char *member_id,
                       const char *const *members, const char *const *assignments, int count,
                       char *assignment, size_t cap)
{
    int32_t corr =
        krw_sync_group_send(c, group, generation, member_id, members, assignments, count);
    return krw_sync_group_read(c, corr, assignment, cap);
}

int16_t krw_heartbeat(krw_conn *c, const char *group, int32_t generation, const char *member_id)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_HEARTBEAT, V_HEARTBEAT);
    kw_write_string(&w, group);
    kw_write_i32(&w, generation);
    kw_write_string(&w, member_id);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "Heartbeat");
    kw_read_i32(r); /* throttle_time_ms */
    int16_t error = kw_read_i16(r);
    krw_done(r, "Heartbeat");
    return error;
}

int16_t krw_leave_group(krw_conn *c, const char *group, const char *member_id)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_LEAVE_GROUP, V_LEAVE_GROUP);
    kw_write_string(&w, group);
    kw_write_string(&w, member_id);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "LeaveGroup");
    kw_read_i32(r); /* throttle_time_ms */
    int16_t error = kw_read_i16(r);
    krw_done(r, "LeaveGroup");
    return error;
}

int16_t krw_offset_commit(krw_conn *c, const char *group, int32_t generation, const char *member_id,
                          const char *topic, int32_t partition, int64_t offset)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_OFFSET_COMMIT, V_OFFSET_COMMIT);
    kw_write_string(&w, group);
    kw_write_i32(&w, generation);
    kw_write_string(&w, member_id);
    kw_write_string(&w, NULL); /* group_instance_id (v7+) */
    kw_write_i32(&w, 1);
    kw_write_string(&w, topic);
    kw_write_i32(&w, 1);
    kw_write_i32(&w, partition);
    kw_write_i64(&w, offset);
    kw_write_i32(&w, -1); /* committed_leader_epoch (v6+) */
    kw_write_string(&w, "");
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "OffsetCommit");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "an OffsetCommit answer about other than one topic");
    expect_name(r, topic, "OffsetCommit");
    cr_assert_eq(kw_read_i32(r), 1, "an OffsetCommit answer about other than one partition");
    cr_assert_eq(kw_read_i32(r), partition, "an OffsetCommit answer about another partition");
    int16_t error = kw_read_i16(r);
    krw_done(r, "OffsetCommit");
    return error;
}

int16_t krw_offset_fetch(krw_conn *c, const char *group, const char *topic, int32_t partition,
                         int64_t *offset)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_OFFSET_FETCH, V_OFFSET_FETCH);
    kw_write_string(&w, group);
    kw_write_i32(&w, 1);
    kw_write_string(&w, topic);
    kw_write_i32(&w, 1);
    kw_write_i32(&w, partition);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "OffsetFetch");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "an OffsetFetch answer about other than one topic");
    expect_name(r, topic, "OffsetFetch");
    cr_assert_eq(kw_read_i32(r), 1, "an OffsetFetch answer about other than one partition");
    cr_assert_eq(kw_read_i32(r), partition, "an OffsetFetch answer about another partition");
    *offset = kw_read_i64(r);
    kw_read_i32(r);    /* committed_leader_epoch (v5+) */
    kw_read_string(r); /* metadata */
    int16_t error = kw_read_i16(r);
    int16_t group_error = kw_read_i16(r); /* (v2+) */
    krw_done(r, "OffsetFetch");
    return error != KW_ERR_NONE ? error : group_error;
}

int16_t krw_describe_group(krw_conn *c, const char *group, char *state, size_t state_cap,
                           size_t *member_count)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_DESCRIBE_GROUPS, V_DESCRIBE_GROUPS);
    kw_write_i32(&w, 1);
    kw_write_string(&w, group);
    kw_write_i8(&w, 0); /* include_authorized_operations (v3+) */
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "DescribeGroups");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "a DescribeGroups answer about other than one group");
    int16_t error = kw_read_i16(r);
    expect_name(r, group, "DescribeGroups");
    str_copy(state, state_cap, kw_read_string(r));
    kw_read_string(r); /* protocol_type */
    kw_read_string(r); /* protocol_data */
    int32_t n = kw_read_i32(r);
    cr_assert(kw_reader_error(r) == MG_OK && n >= 0 && n < 1000,
              "a DescribeGroups answer with %d members", n);
    for (int32_t i = 0; i < n; i++) {
        kw_read_string(r);            /* member_id */
        kw_read_string(r);            /* group_instance_id (v4+) */
        kw_read_string(r);            /* client_id */
        kw_read_string(r);            /* client_host */
        for (int k = 0; k < 2; k++) { /* member_metadata, member_assignment */
            int32_t len = kw_read_i32(r);
            cr_assert(kw_reader_error(r) == MG_OK && len >= -1 &&
                          (len < 0 || (size_t)len <= kw_reader_left(r)),
                      "a DescribeGroups member with %d bytes", len);
            if (len > 0)
                r->pos += (size_t)len;
        }
    }
    kw_read_i32(r); /* authorized_operations (v3+) */
    *member_count = (size_t)n;
    krw_done(r, "DescribeGroups");
    return error;
}
