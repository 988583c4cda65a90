/*
 * The broker's Kafka port (src/broker/kop, docs/kafka.md) against the real Kafka client library
 * of Debian, librdkafka 2.0.2: every test starts `magnetar standalone` (binary from MG_BIN) on
 * free loopback ports (support/sa_harness, which reads the Kafka port from the ready line), runs
 * librdkafka producers, consumers and admin clients against it from the test's thread, and stops
 * the standalone cleanly at the end (the suite's fini kills it whatever happened and removes its
 * directory).
 *
 * Cases:
 *  - idempotent_producer_exactly_once_in_order: enable.idempotence with acks=all and five
 *    requests in flight, 10,000 numbered messages in rounds of many batches; every delivery
 *    report is OK with offset = the message's number, the log holds exactly 10,000 messages and
 *    a consumer reads each once, in order, key, value and headers intact.
 *  - every_codec_round_trips_byte_for_byte: none, gzip, snappy, lz4 and zstd, 2,000 messages
 *    each of mixed sizes (compressible runs, random bytes, short text, some of 100 KiB), null
 *    values (tombstones) next to empty ones, null keys, binary keys holding NUL bytes or bytes
 *    that are not UTF-8; read back byte for byte.
 *  - compressed_batches_are_stored_compressed: the same compressible messages under each codec;
 *    a compressed topic takes less than a quarter of the uncompressed one's storage (librdkafka
 *    compressed the batches, the shim stored them compressed).
 *  - group_rebalances_on_join_and_leave: CreateTopics (4 partitions; again: TOPIC_ALREADY_EXISTS),
 *    DeleteTopics; two subscribed consumers split the 4 partitions, DescribeGroups shows them;
 *    one closes (LeaveGroup), the other gets all 4 in a rebalance and reads everything produced
 *    afterwards; every message is consumed at least once.
 *  - commit_on_revoke_during_a_rebalance_is_accepted: a member commits in its revoke callback
 *    while the group prepares a rebalance; Kafka accepts that commit.
 *  - committed_offsets_survive_a_restart: a group commits offset 500 of 1,000 synchronously; the
 *    standalone stops cleanly and starts again on the same data; rd_kafka_committed answers 500
 *    and a new consumer of the group starts exactly at message 500.
 *  - group_backlog_is_the_uncommitted_messages: the same, read over the admin API: the group is
 *    a subscription of the topic whose msgBacklog is the messages not committed (500), before
 *    and after the restart, and 0 once everything is committed.
 *  - list_offsets_earliest_latest_and_by_time: ListOffsets earliest and latest, and by time
 *    between two rounds of produce ~200 ms apart: the first offset of the second round; record
 *    timestamps come back as produced.
 *
 * A test whose checks do not all hold prints the end of its standalone's log (Criterion's cr_expect
 * lets the rest of a test run after a failed check).
 *
 * Every wait has a deadline and every loop a bound: librdkafka calls take timeouts, and polling
 * loops end at a deadline from sah_now_ms().
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "support/sa_harness.h"

#define WAIT_MS        15000 /* one answer: an admin result, a flush of a round, metadata */
#define CONSUME_MS     60000 /* reading a whole topic back */
#define REBALANCE_MS   30000 /* a group settling after a join or a leave */
#define POLL_MS        100   /* one consumer poll */
#define PRODUCE_TRIES  1000  /* a full local queue: poll and try again, at most this often */
#define HTTP_BYTES_MAX 65536

/* ---- the standalone -------------------------------------------------------------------------- */

static sah_standalone g_sa; /* support/sa_harness.h */
static bool g_passed;
static char g_bootstrap[64];

static void bootstrap_update(void)
{
    cr_assert_gt(g_sa.kafka_port, 0, "the ready line names no Kafka port");
    snprintf(g_bootstrap, sizeof(g_bootstrap), "127.0.0.1:%u", (unsigned)g_sa.kafka_port);
}

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_passed = false;
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    bootstrap_update();
}

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

/* SIGTERM and a clean exit within the bound. */
static void sa_stop(void)
{
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
}

/* The end of a passing test: the broker stops cleanly. */
static void finish(void)
{
    sa_stop();
    g_passed = true;
}

TestSuite(rdkafka, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* A JSON number after "name": in text at or after from; -1 when absent. */
static int64_t json_int(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = text != NULL ? strstr(text, key) : NULL;
    return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* GET path on the admin API: the body in out, the status asserted. */
static void http_get(const char *path, char *out, size_t cap, int want_status)
{
    int code = sah_http(&g_sa, "GET", path, NULL, out, cap);
    cr_assert_eq(code, want_status, "GET %s: %d (%s), expected %d", path, code,
                 code < 0 ? mg_strerror(code) : out, want_status);
}

/* ---- librdkafka configuration and handles -----------------------------------------------------
 */

static void conf_set(rd_kafka_conf_t *c, const char *name, const char *value)
{
    char err[512];
    cr_assert_eq(rd_kafka_conf_set(c, name, value, err, sizeof(err)), RD_KAFKA_CONF_OK, "%s=%s: %s",
                 name, value, err);
}

/* A configuration for the standalone: bootstrap, IPv4, warnings only, then the "name=value"
 * settings of the NULL-terminated kv. */
static rd_kafka_conf_t *conf_new(const char *const *kv)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    conf_set(c, "bootstrap.servers", g_bootstrap);
    conf_set(c, "broker.address.family", "v4");
    conf_set(c, "log_level", "4");
    for (int i = 0; kv != NULL && kv[i] != NULL; i++) {
        char name[128];
        const char *eq = strchr(kv[i], '=');
        cr_assert(eq != NULL && (size_t)(eq - kv[i]) < sizeof(name), "setting '%s'", kv[i]);
        memcpy(name, kv[i], (size_t)(eq - kv[i]));
        name[eq - kv[i]] = '\0';
        conf_set(c, name, eq + 1);
    }
    return c;
}

static rd_kafka_t *handle_new(rd_kafka_type_t type, rd_kafka_conf_t *c)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof(err));
    cr_assert_not_null(rk, "rd_kafka_new: %s", err);
    return rk;
}

/* ---- producing ------------------------------------------------------------------------------ */

/* Delivery reports of one producer: the message's number travels as its opaque. */
typedef struct reports {
    int ok, failed;
    rd_kafka_resp_err_t first_error;
    int64_t *offsets; /* by message number (NULL: not recorded) */
    int count_max;
} reports;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    reports *r = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (r->failed++ == 0)
            r->first_error = m->err;
        return;
    }
    r->ok++;
    intptr_t n = (intptr_t)m->_private;
    if (r->offsets != NULL && n >= 0 && n < r->count_max)
        r->offsets[n] = m->offset;
}

static rd_kafka_t *producer_new(reports *r, const char *const *kv)
{
    rd_kafka_conf_t *c = conf_new(kv);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_opaque(c, r);
    return handle_new(RD_KAFKA_PRODUCER, c);
}

/* One record: key and value NULL for null, headers as name/value strings (count pairs). */
typedef struct record {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    int64_t timestamp_ms; /* 0: the client's time */
    const char *const *headers;
    int header_count;
} record;

/* Queues r for partition (RD_KAFKA_PARTITION_UA: the partitioner's choice) with number n as its
 * opaque, polling and retrying while the local queue is full. */
static void produce(rd_kafka_t *rk, const char *topic, int32_t partition, const record *r, int n)
{
    rd_kafka_headers_t *h = NULL;
    if (r->header_count > 0) {
        h = rd_kafka_headers_new((size_t)r->header_count);
        for (int i = 0; i < r->header_count; i++)
            rd_kafka_header_add(h, r->headers[2 * i], -1, r->headers[2 * i + 1], -1);
    }
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int tries = 0; tries < PRODUCE_TRIES; tries++) {
        err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(r->key, r->key_len),
            RD_KAFKA_V_VALUE((void *)r->value, r->value_len), RD_KAFKA_V_TIMESTAMP(r->timestamp_ms),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE((void *)(intptr_t)n), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(rk, POLL_MS);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && h != NULL)
        rd_kafka_headers_destroy(h); /* owned by the message only when queued */
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "produce #%d to %s: %s", n, topic,
                 rd_kafka_err2str(err));
}

/* Waits (bounded) for every queued message's delivery report. */
static void flush(rd_kafka_t *rk, const reports *r)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(rk, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "flush: %s (%d delivered, %d failed)",
                 rd_kafka_err2str(err), r->ok, r->failed);
    cr_assert_eq(r->failed, 0, "%d deliveries failed, the first with %s", r->failed,
                 rd_kafka_err2str(r->first_error));
}

/* ---- reading a partition back ------------------------------------------------------------- */

/* A consumer assigned (no subscription, no commits) to one partition from offset. */
static rd_kafka_t *reader_new(const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_t *rk =
        handle_new(RD_KAFKA_CONSUMER,
                   conf_new((const char *const[]){ "group.id=readers", "enable.auto.commit=false",
                                                   "enable.partition.eof=true",
                                                   "auto.offset.reset=error", NULL }));
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "assign: %s", rd_kafka_err2str(err));
    return rk;
}

/* Polls rk for the next message or partition end, up to the deadline; fails the test on a
 * consumer error or when nothing comes. The caller destroys the message. */
static rd_kafka_message_t *next_event(rd_kafka_t *rk, int64_t deadline_ms, const char *what)
{
    for (;;) {
        int64_t left = deadline_ms - sah_now_ms();
        cr_assert_gt(left, 0, "nothing more within the time limit while %s", what);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, left < POLL_MS ? (int)left : POLL_MS);
        if (m == NULL)
            continue;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            char text[256];
            snprintf(text, sizeof(text), "%s", rd_kafka_message_errstr(m));
            rd_kafka_resp_err_t err = m->err;
            rd_kafka_message_destroy(m);
            cr_assert_fail("consumer error while %s: %s (%s)", what, rd_kafka_err2str(err), text);
        }
        return m;
    }
}

static void consumer_destroy(rd_kafka_t *rk)
{
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "consumer close: %s", rd_kafka_err2str(err));
    rd_kafka_destroy(rk);
}

/* The value of the last header name of m (NUL-terminated into out), false when absent. */
static bool header_text(const rd_kafka_message_t *m, const char *name, char *out, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v != NULL ? v : "", len);
    out[len] = '\0';
    return true;
}

static size_t header_count(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    return rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_header_cnt(h)
                                                                         : 0;
}

/* Low and high watermark of a partition (ListOffsets earliest and latest). */
static void watermarks(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t *low,
                       int64_t *high)
{
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic, partition, low, high, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "watermarks of %s [%d]: %s", topic, partition,
                 rd_kafka_err2str(err));
}

/* ---- a. the idempotent producer ------------------------------------------------------------ */

#define IDEM_COUNT  10000
#define IDEM_ROUNDS 4

static void idem_key(int n, char *out, size_t cap)
{
    snprintf(out, cap, "key-%05d", n);
}

/* Values of different lengths (12 .. 211 bytes), each naming its message. */
static size_t idem_value(int n, char *out, size_t cap)
{
    int len = snprintf(out, cap, "value-%05d-", n);
    int pad = n % 200;
    for (int i = 0; i < pad && (size_t)(len + 1) < cap; i++)
        out[len++] = (char)('a' + (n + i) % 26);
    out[len] = '\0';
    return (size_t)len;
}

Test(rdkafka, idempotent_producer_exactly_once_in_order)
{
    const char *topic = "idempotent";
    static int64_t offsets[IDEM_COUNT];
    for (int i = 0; i < IDEM_COUNT; i++)
        offsets[i] = -1;
    reports r = { .offsets = offsets, .count_max = IDEM_COUNT };
    rd_kafka_t *p =
        producer_new(&r, (const char *const[]){ "enable.idempotence=true", "acks=all",
                                                "max.in.flight.requests.per.connection=5",
                                                "linger.ms=5", "batch.num.messages=100", NULL });
    char key[32], value[256], seq[16];
    for (int round = 0; round < IDEM_ROUNDS; round++) {
        for (int n = round * (IDEM_COUNT / IDEM_ROUNDS);
             n < (round + 1) * (IDEM_COUNT / IDEM_ROUNDS); n++) {
            idem_key(n, key, sizeof(key));
            size_t vlen = idem_value(n, value, sizeof(value));
            snprintf(seq, sizeof(seq), "%d", n);
            const char *headers[] = { "seq", seq, "parity", n % 2 == 0 ? "even" : "odd" };
            produce(p, topic, 0,
                    &(record){ .key = key,
                               .key_len = strlen(key),
                               .value = value,
                               .value_len = vlen,
                               .headers = headers,
                               .header_count = 2 },
                    n);
            rd_kafka_poll(p, 0);
        }
        flush(p, &r);
    }
    cr_assert_eq(r.ok, IDEM_COUNT, "%d delivery reports OK, expected %d", r.ok, IDEM_COUNT);
    for (int n = 0; n < IDEM_COUNT; n++)
        cr_assert_eq(offsets[n], n, "message %d was stored at offset %" PRId64, n, offsets[n]);
    int64_t low = -1, high = -1;
    watermarks(p, topic, 0, &low, &high);
    cr_assert(low == 0 && high == IDEM_COUNT, "watermarks %" PRId64 "..%" PRId64 ", expected 0..%d",
              low, high, IDEM_COUNT);
    char *metrics = NULL;
    int code = sah_metrics_get(&g_sa, 1 << 20, &metrics);
    cr_assert_eq(code, 200, "GET /metrics: %d", code);
    double inits = sah_metric(metrics, "magnetar_kafka_requests_total", "api=\"InitProducerId\"");
    free(metrics);
    cr_assert_geq(inits, 1, "the producer never asked for a producer id (%g)", inits);
    rd_kafka_destroy(p);

    rd_kafka_t *c = reader_new(topic, 0, RD_KAFKA_OFFSET_BEGINNING);
    int64_t deadline = sah_now_ms() + CONSUME_MS;
    int next = 0;
    char h[64];
    for (int events = 0; events < IDEM_COUNT + 1000; events++) {
        rd_kafka_message_t *m = next_event(c, deadline, "reading the idempotent topic");
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            int64_t at = m->offset;
            rd_kafka_message_destroy(m);
            if (next == IDEM_COUNT) {
                cr_assert_eq(at, IDEM_COUNT, "end of partition at %" PRId64, at);
                break;
            }
            continue;
        }
        cr_assert_lt(next, IDEM_COUNT, "a message past the last one, at offset %" PRId64,
                     m->offset);
        cr_assert_eq(m->offset, next, "offset %" PRId64 " where %d was next", m->offset, next);
        idem_key(next, key, sizeof(key));
        size_t vlen = idem_value(next, value, sizeof(value));
        cr_assert(m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0,
                  "message %d: key '%.*s'", next, (int)m->key_len, (const char *)m->key);
        cr_assert(m->len == vlen && memcmp(m->payload, value, vlen) == 0,
                  "message %d: value '%.*s'", next, (int)m->len, (const char *)m->payload);
        cr_assert_eq(header_count(m), 2, "message %d: %zu headers", next, header_count(m));
        snprintf(seq, sizeof(seq), "%d", next);
        cr_assert(header_text(m, "seq", h, sizeof(h)) && strcmp(h, seq) == 0,
                  "message %d: header seq '%s'", next, h);
        cr_assert(header_text(m, "parity", h, sizeof(h)) &&
                      strcmp(h, next % 2 == 0 ? "even" : "odd") == 0,
                  "message %d: header parity '%s'", next, h);
        rd_kafka_message_destroy(m);
        next++;
    }
    cr_assert_eq(next, IDEM_COUNT, "read %d messages", next);
    consumer_destroy(c);
    finish();
}

/* ---- b. every codec ------------------------------------------------------------------------ */

#define CODEC_COUNT     2000
#define CODEC_VALUE_MAX (100 * 1024)

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Message n of the codec tests: its key and value (NULL for null) in the buffers given. */
static void codec_record(int n, record *r, uint8_t *key, uint8_t *value)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)(n + 1) * 0x100000001b3ull;
    memset(r, 0, sizeof(*r));
    if (n % 11 == 0) {
        r->key = NULL; /* null key */
    } else if (n % 7 == 0) {
        static const uint8_t nul_key[] = { 0, 'k', 0, 0, 0xff, 0 };
        memcpy(key, nul_key, sizeof(nul_key));
        memcpy(key + sizeof(nul_key), &n, sizeof(n));
        r->key = key;
        r->key_len = sizeof(nul_key) + sizeof(n);
    } else if (n % 13 == 0) {
        static const uint8_t bad_utf8[] = { 0xc3, 0x28, 0xff, 0xfe, 'x' };
        memcpy(key, bad_utf8, sizeof(bad_utf8));
        r->key = key;
        r->key_len = sizeof(bad_utf8);
    } else {
        r->key = key;
        r->key_len = (size_t)snprintf((char *)key, 32, "k%d", n);
    }
    size_t len;
    if (n % 97 == 5) {
        r->value = NULL; /* a tombstone */
        return;
    } else if (n % 89 == 3) {
        len = 0; /* empty, not null */
    } else if (n % 500 == 250) {
        len = CODEC_VALUE_MAX; /* large and random */
        for (size_t i = 0; i < len; i++)
            value[i] = (uint8_t)xorshift(&s);
    } else if (n % 4 == 0) {
        len = 500 + (size_t)(n * 37) % 8000; /* highly compressible */
        for (size_t i = 0; i < len; i++)
            value[i] = (uint8_t)("abcabcabd"[i % 9] + (i / 1000) % 3);
    } else if (n % 4 == 1) {
        len = 1 + (size_t)(n * 131) % 4000; /* random */
        for (size_t i = 0; i < len; i++)
            value[i] = (uint8_t)xorshift(&s);
    } else if (n % 4 == 2) {
        len = (size_t)snprintf((char *)value, 64, "short-%d", n);
    } else {
        len = (size_t)snprintf((char *)value, 64, "mixed-%d:", n); /* text, then random */
        size_t tail = (size_t)(n * 17) % 600;
        for (size_t i = 0; i < tail; i++)
            value[len + i] = (uint8_t)xorshift(&s);
        len += tail;
    }
    r->value = value;
    r->value_len = len;
}

static void check_bytes(int n, const char *what, const void *got, size_t got_len, const void *want,
                        size_t want_len)
{
    if (want == NULL) {
        cr_assert_null(got, "message %d: %s should be null, has %zu bytes", n, what, got_len);
        return;
    }
    cr_assert_not_null(got, "message %d: %s is null, expected %zu bytes", n, what, want_len);
    cr_assert_eq(got_len, want_len, "message %d: %s has %zu bytes, expected %zu", n, what, got_len,
                 want_len);
    cr_assert(memcmp(got, want, want_len) == 0, "message %d: %s differs", n, what);
}

Test(rdkafka, every_codec_round_trips_byte_for_byte)
{
    static const char *const codecs[] = { "none", "gzip", "snappy", "lz4", "zstd" };
    static uint8_t key[64], value[CODEC_VALUE_MAX];
    char topic[64], body[HTTP_BYTES_MAX], path[160];
    for (int ci = 0; ci < 5; ci++) {
        snprintf(topic, sizeof(topic), "codec-%s", codecs[ci]);
        reports r = { 0 };
        char codec[64];
        snprintf(codec, sizeof(codec), "compression.codec=%s", codecs[ci]);
        rd_kafka_t *p = producer_new(
            &r, (const char *const[]){ codec, "linger.ms=20", "batch.num.messages=300", NULL });
        record rec;
        for (int n = 0; n < CODEC_COUNT; n++) {
            codec_record(n, &rec, key, value);
            produce(p, topic, 0, &rec, n);
            rd_kafka_poll(p, 0);
        }
        flush(p, &r);
        cr_assert_eq(r.ok, CODEC_COUNT, "%s: %d delivered", codecs[ci], r.ok);
        rd_kafka_destroy(p);

        rd_kafka_t *c = reader_new(topic, 0, RD_KAFKA_OFFSET_BEGINNING);
        int64_t deadline = sah_now_ms() + CONSUME_MS;
        int next = 0;
        for (int events = 0; events < CODEC_COUNT + 1000 && next < CODEC_COUNT; events++) {
            rd_kafka_message_t *m = next_event(c, deadline, topic);
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                rd_kafka_message_destroy(m);
                continue;
            }
            cr_assert_eq(m->offset, next, "%s: offset %" PRId64 " where %d was next", codecs[ci],
                         m->offset, next);
            codec_record(next, &rec, key, value);
            check_bytes(next, "the key", m->key, m->key_len, rec.key, rec.key_len);
            check_bytes(next, "the value", m->payload, m->len, rec.value, rec.value_len);
            rd_kafka_message_destroy(m);
            next++;
        }
        cr_assert_eq(next, CODEC_COUNT, "%s: read %d messages", codecs[ci], next);
        consumer_destroy(c);

        snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/stats", topic);
        http_get(path, body, sizeof(body), 200);
        cr_assert_eq(json_int(body, "msgInCounter"), CODEC_COUNT, "%s: stats %s", codecs[ci], body);
    }
    finish();
}

#define PACKED_COUNT 500

/* The same compressible messages under every codec: a compressed topic must take much less room
 * than the uncompressed one. librdkafka compresses a batch only when it believes the broker
 * takes the codec (from the versions ApiVersions advertises; otherwise it logs "Broker does not
 * support compression type X: not compressing batch" and sends it plain), and the shim stores a
 * compressed batch compressed: storageSize tells both. */
Test(rdkafka, compressed_batches_are_stored_compressed)
{
    static const char *const codecs[] = { "none", "gzip", "snappy", "lz4", "zstd" };
    static uint8_t value[1024];
    int64_t storage[5];
    char topic[64], body[HTTP_BYTES_MAX], path[160];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)("compressible "[i % 13]);
    for (int ci = 0; ci < 5; ci++) {
        snprintf(topic, sizeof(topic), "packed-%s", codecs[ci]);
        reports r = { 0 };
        char codec[64];
        snprintf(codec, sizeof(codec), "compression.codec=%s", codecs[ci]);
        rd_kafka_t *p = producer_new(&r, (const char *const[]){ codec, "linger.ms=20", NULL });
        for (int n = 0; n < PACKED_COUNT; n++)
            produce(p, topic, 0, &(record){ .value = value, .value_len = sizeof(value) }, n);
        flush(p, &r);
        rd_kafka_destroy(p);
        snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/stats", topic);
        http_get(path, body, sizeof(body), 200);
        cr_assert_eq(json_int(body, "msgInCounter"), PACKED_COUNT, "%s: stats %s", codecs[ci],
                     body);
        storage[ci] = json_int(body, "storageSize");
    }
    int packed = 0;
    for (int ci = 1; ci < 5; ci++) {
        cr_expect_lt(storage[ci], storage[0] / 4,
                     "%s: the topic takes %" PRId64 " bytes, uncompressed %" PRId64
                     ": its batches were not stored compressed",
                     codecs[ci], storage[ci], storage[0]);
        packed += storage[ci] < storage[0] / 4;
    }
    sa_stop();
    g_passed = packed == 4;
}

/* ---- c. a consumer group rebalancing ------------------------------------------------------- */

#define GROUP_PARTITIONS 4
#define GROUP_ROUND      400 /* messages produced before the leave, and after */

typedef struct member {
    const char *name;
    rd_kafka_t *rk;
    bool assigned[GROUP_PARTITIONS];
    int assigned_count;
    int assign_events;
    int *seen; /* how often each message was consumed, by any member (shared) */
    int *seen_by_me;
    /* Manual commits: the positions are committed synchronously when partitions are revoked
     * (the usual place), and the answer kept. */
    bool commit_on_revoke;
    int revoke_events;
    rd_kafka_resp_err_t revoke_commit_err;
} member;

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    member *m = opaque;
    memset(m->assigned, 0, sizeof(m->assigned));
    m->assigned_count = 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition >= 0 && parts->elems[i].partition < GROUP_PARTITIONS &&
                !m->assigned[parts->elems[i].partition]) {
                m->assigned[parts->elems[i].partition] = true;
                m->assigned_count++;
            }
        m->assign_events++;
    } else {
        if (m->commit_on_revoke)
            m->revoke_commit_err = rd_kafka_commit(rk, NULL, 0);
        m->revoke_events++;
        rd_kafka_assign(rk, NULL);
    }
}

/* A member of group reading topic: auto-commit every 500 ms, or (commit_on_revoke) commits
 * only when partitions are revoked. */
static void member_open(member *m, const char *name, const char *group, bool commit_on_revoke,
                        const char *topic, int *seen, int *seen_by_me)
{
    memset(m, 0, sizeof(*m));
    m->name = name;
    m->seen = seen;
    m->seen_by_me = seen_by_me;
    m->commit_on_revoke = commit_on_revoke;
    char client_id[64], group_id[64];
    snprintf(client_id, sizeof(client_id), "client.id=%s", name);
    snprintf(group_id, sizeof(group_id), "group.id=%s", group);
    rd_kafka_conf_t *c = conf_new((const char *const[]){
        group_id, client_id, "session.timeout.ms=6000", "heartbeat.interval.ms=500",
        "auto.offset.reset=earliest",
        commit_on_revoke ? "enable.auto.commit=false" : "enable.auto.commit=true",
        "auto.commit.interval.ms=500", NULL });
    rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
    rd_kafka_conf_set_opaque(c, m);
    m->rk = handle_new(RD_KAFKA_CONSUMER, c);
    rd_kafka_poll_set_consumer(m->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(m->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "%s subscribe: %s", name, rd_kafka_err2str(err));
}

/* One poll of m: a message's number ("g-<n>") is counted as seen. */
static void member_poll(member *m)
{
    rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->rk, POLL_MS / 2);
    if (msg == NULL)
        return;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int n = -1;
        char text[32];
        size_t len = msg->len < sizeof(text) - 1 ? msg->len : sizeof(text) - 1;
        memcpy(text, msg->payload, len);
        text[len] = '\0';
        cr_assert(sscanf(text, "g-%d", &n) == 1 && n >= 0 && n < 2 * GROUP_ROUND,
                  "%s got '%s' at %d/%" PRId64, m->name, text, msg->partition, msg->offset);
        cr_assert_eq(msg->partition, n % GROUP_PARTITIONS, "%s got %s from partition %d", m->name,
                     text, msg->partition);
        m->seen[n]++;
        m->seen_by_me[n]++;
    } else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        cr_assert_fail("%s: consumer error %s (%s)", m->name, rd_kafka_err2str(msg->err),
                       rd_kafka_message_errstr(msg));
    }
    rd_kafka_message_destroy(msg);
}

static int count_seen(const int *seen, int from, int to)
{
    int n = 0;
    for (int i = from; i < to; i++)
        n += seen[i] > 0;
    return n;
}

static bool split_between(const member *a, const member *b)
{
    if (a->assigned_count == 0 || b->assigned_count == 0 ||
        a->assigned_count + b->assigned_count != GROUP_PARTITIONS)
        return false;
    for (int i = 0; i < GROUP_PARTITIONS; i++)
        if (a->assigned[i] == b->assigned[i])
            return false;
    return true;
}

/* Admin: creates topic with partitions, the result's error code. */
static rd_kafka_resp_err_t create_topic(rd_kafka_t *rk, const char *topic, int partitions)
{
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, sizeof(err));
    cr_assert_not_null(nt, "NewTopic %s: %s", topic, err);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    cr_assert_eq(rd_kafka_AdminOptions_set_request_timeout(o, WAIT_MS - 1000, err, sizeof(err)),
                 RD_KAFKA_RESP_ERR_NO_ERROR, "%s", err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    cr_assert_not_null(ev, "no CreateTopics result for %s", topic);
    cr_assert_eq(rd_kafka_event_type(ev), RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    cr_assert_eq(e, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics %s: %s", topic,
                 rd_kafka_event_error_string(ev));
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    cr_assert_eq(cnt, 1, "CreateTopics answered %zu topics", cnt);
    cr_assert_str_eq(rd_kafka_topic_result_name(res[0]), topic);
    e = rd_kafka_topic_result_error(res[0]);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    return e;
}

static rd_kafka_resp_err_t delete_topic(rd_kafka_t *rk, const char *topic)
{
    char err[512];
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    cr_assert_eq(rd_kafka_AdminOptions_set_request_timeout(o, WAIT_MS - 1000, err, sizeof(err)),
                 RD_KAFKA_RESP_ERR_NO_ERROR, "%s", err);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, WAIT_MS);
    cr_assert_not_null(ev, "no DeleteTopics result for %s", topic);
    cr_assert_eq(rd_kafka_event_type(ev), RD_KAFKA_EVENT_DELETETOPICS_RESULT);
    cr_assert_eq(rd_kafka_event_error(ev), RD_KAFKA_RESP_ERR_NO_ERROR, "DeleteTopics %s: %s", topic,
                 rd_kafka_event_error_string(ev));
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &cnt);
    cr_assert_eq(cnt, 1, "DeleteTopics answered %zu topics", cnt);
    rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[0]);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_DeleteTopic_destroy(dt);
    return e;
}

/* The partitions Metadata (all topics) gives topic, -1 when it is not listed. */
static int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "metadata: %s", rd_kafka_err2str(err));
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0)
            n = md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR ? md->topics[i].partition_cnt : -1;
    rd_kafka_metadata_destroy(md);
    return n;
}

Test(rdkafka, group_rebalances_on_join_and_leave)
{
    const char *topic = "group-topic";
    char body[HTTP_BYTES_MAX];
    reports r = { 0 };
    rd_kafka_t *p = producer_new(&r, (const char *const[]){ "linger.ms=5", NULL });

    rd_kafka_resp_err_t err = create_topic(p, topic, GROUP_PARTITIONS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics: %s", rd_kafka_err2str(err));
    err = create_topic(p, topic, GROUP_PARTITIONS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
                 "CreateTopics of an existing topic: %s", rd_kafka_err2str(err));
    cr_assert_eq(topic_partitions(p, topic), GROUP_PARTITIONS);
    http_get("/admin/v2/persistent/public/default/group-topic/partitions", body, sizeof(body), 200);
    cr_assert_eq(json_int(body, "partitions"), GROUP_PARTITIONS, "REST: %s", body);

    err = create_topic(p, "doomed", 2);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics doomed: %s", rd_kafka_err2str(err));
    cr_assert_eq(topic_partitions(p, "doomed"), 2);
    err = delete_topic(p, "doomed");
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "DeleteTopics: %s", rd_kafka_err2str(err));
    cr_assert_eq(topic_partitions(p, "doomed"), -1, "doomed is still listed after DeleteTopics");

    char value[32], key[32];
    for (int n = 0; n < GROUP_ROUND; n++) {
        snprintf(value, sizeof(value), "g-%d", n);
        snprintf(key, sizeof(key), "k%d", n);
        produce(
            p, topic, n % GROUP_PARTITIONS,
            &(record){
                .key = key, .key_len = strlen(key), .value = value, .value_len = strlen(value) },
            n);
    }
    flush(p, &r);

    static int seen[2 * GROUP_ROUND], seen1[2 * GROUP_ROUND], seen2[2 * GROUP_ROUND];
    member m1, m2;
    member_open(&m1, "member-1", "rebalancing", false, topic, seen, seen1);
    member_open(&m2, "member-2", "rebalancing", false, topic, seen, seen2);
    int64_t deadline = sah_now_ms() + REBALANCE_MS;
    while (!split_between(&m1, &m2) || count_seen(seen, 0, GROUP_ROUND) < GROUP_ROUND) {
        cr_assert_lt(sah_now_ms(), deadline,
                     "no split within %d ms: member-1 has %d partitions, member-2 %d; %d of %d "
                     "messages consumed",
                     REBALANCE_MS, m1.assigned_count, m2.assigned_count,
                     count_seen(seen, 0, GROUP_ROUND), GROUP_ROUND);
        member_poll(&m1);
        member_poll(&m2);
    }
    cr_assert_gt(count_seen(seen1, 0, GROUP_ROUND), 0, "member-1 consumed nothing");
    cr_assert_gt(count_seen(seen2, 0, GROUP_ROUND), 0, "member-2 consumed nothing");

    /* DescribeGroups through librdkafka's group listing: both members in a stable group. */
    const struct rd_kafka_group_list *groups = NULL;
    err = rd_kafka_list_groups(p, "rebalancing", &groups, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "list groups: %s", rd_kafka_err2str(err));
    cr_assert_eq(groups->group_cnt, 1, "%d groups named rebalancing", groups->group_cnt);
    cr_assert_str_eq(groups->groups[0].state, "Stable");
    cr_assert_str_eq(groups->groups[0].protocol_type, "consumer");
    cr_assert_eq(groups->groups[0].member_cnt, 2, "%d members", groups->groups[0].member_cnt);
    rd_kafka_group_list_destroy(groups);

    /* member-1 leaves: member-2 gets every partition. */
    int before = m2.assign_events;
    consumer_destroy(m1.rk);
    m1.rk = NULL;
    deadline = sah_now_ms() + REBALANCE_MS;
    while (m2.assign_events == before || m2.assigned_count != GROUP_PARTITIONS) {
        cr_assert_lt(sah_now_ms(), deadline,
                     "member-2 has %d partitions %d ms after member-1 left (%d assignments)",
                     m2.assigned_count, REBALANCE_MS, m2.assign_events);
        member_poll(&m2);
    }

    for (int n = GROUP_ROUND; n < 2 * GROUP_ROUND; n++) {
        snprintf(value, sizeof(value), "g-%d", n);
        snprintf(key, sizeof(key), "k%d", n);
        produce(
            p, topic, n % GROUP_PARTITIONS,
            &(record){
                .key = key, .key_len = strlen(key), .value = value, .value_len = strlen(value) },
            n);
    }
    flush(p, &r);
    deadline = sah_now_ms() + CONSUME_MS;
    while (count_seen(seen2, GROUP_ROUND, 2 * GROUP_ROUND) < GROUP_ROUND) {
        cr_assert_lt(sah_now_ms(), deadline,
                     "member-2 consumed %d of the %d messages after the leave",
                     count_seen(seen2, GROUP_ROUND, 2 * GROUP_ROUND), GROUP_ROUND);
        member_poll(&m2);
    }
    cr_assert_eq(count_seen(seen, 0, 2 * GROUP_ROUND), 2 * GROUP_ROUND);
    consumer_destroy(m2.rk);
    rd_kafka_destroy(p);
    finish();
}

/* A member commits its positions in its revoke callback, while the group prepares a
 * rebalance (another member joined) and waits for it to join again. Kafka's coordinator takes
 * commits from members of the current generation in PreparingRebalance (only
 * CompletingRebalance answers REBALANCE_IN_PROGRESS); librdkafka commits there on every revoke
 * when auto-commit is on, and a refusal means the next owner reads those messages again. */
Test(rdkafka, commit_on_revoke_during_a_rebalance_is_accepted)
{
    const char *topic = "revoking";
    enum { COUNT = 40 };
    reports r = { 0 };
    rd_kafka_t *p = producer_new(&r, (const char *const[]){ "linger.ms=5", NULL });
    rd_kafka_resp_err_t err = create_topic(p, topic, GROUP_PARTITIONS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "CreateTopics: %s", rd_kafka_err2str(err));
    char value[32];
    for (int n = 0; n < COUNT; n++) {
        snprintf(value, sizeof(value), "g-%d", n);
        produce(p, topic, n % GROUP_PARTITIONS,
                &(record){ .value = value, .value_len = strlen(value) }, n);
    }
    flush(p, &r);
    rd_kafka_destroy(p);

    static int seen[2 * GROUP_ROUND], seen1[2 * GROUP_ROUND], seen2[2 * GROUP_ROUND];
    member m1, m2;
    member_open(&m1, "first", "revokers", true, topic, seen, seen1);
    int64_t deadline = sah_now_ms() + REBALANCE_MS;
    while (m1.assigned_count != GROUP_PARTITIONS || count_seen(seen1, 0, COUNT) < COUNT) {
        cr_assert_lt(sah_now_ms(), deadline, "first: %d partitions, %d of %d messages",
                     m1.assigned_count, count_seen(seen1, 0, COUNT), COUNT);
        member_poll(&m1);
    }
    member_open(&m2, "second", "revokers", true, topic, seen, seen2);
    deadline = sah_now_ms() + REBALANCE_MS;
    while (m1.revoke_events == 0) {
        cr_assert_lt(sah_now_ms(), deadline, "first was not asked to give its partitions back");
        member_poll(&m1);
        member_poll(&m2);
    }
    cr_expect_eq(m1.revoke_commit_err, RD_KAFKA_RESP_ERR_NO_ERROR,
                 "the commit in the revoke callback (group preparing a rebalance) was answered "
                 "%s",
                 rd_kafka_err2str(m1.revoke_commit_err));
    consumer_destroy(m2.rk);
    consumer_destroy(m1.rk);
    sa_stop();
    g_passed = m1.revoke_commit_err == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* ---- d. committed offsets across a restart ------------------------------------------------- */

#define COMMIT_COUNT 1000
#define COMMIT_AT    500

static rd_kafka_t *committer_new(const char *topic)
{
    rd_kafka_t *rk = handle_new(
        RD_KAFKA_CONSUMER,
        conf_new((const char *const[]){ "group.id=committers", "enable.auto.commit=false",
                                        "auto.offset.reset=earliest", "session.timeout.ms=6000",
                                        "heartbeat.interval.ms=500", NULL }));
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "subscribe: %s", rd_kafka_err2str(err));
    return rk;
}

/* The group's committed offset of partition 0 (OffsetFetch). */
static int64_t committed(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "committed: %s", rd_kafka_err2str(err));
    cr_assert_eq(l->elems[0].err, RD_KAFKA_RESP_ERR_NO_ERROR, "committed: %s",
                 rd_kafka_err2str(l->elems[0].err));
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

/* The group's subscription in the topic's stats: its msgBacklog (-1: no such subscription). */
static int64_t group_backlog(const char *topic, const char *group)
{
    char path[160], key[80];
    static char body[HTTP_BYTES_MAX];
    snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/stats", topic);
    http_get(path, body, sizeof(body), 200);
    snprintf(key, sizeof(key), "\"%s\":{", group);
    const char *subs = strstr(body, "\"subscriptions\":{");
    const char *sub = subs != NULL ? strstr(subs, key) : NULL;
    return sub != NULL ? json_int(sub, "msgBacklog") : -1;
}

/* Produces messages "m-0" .. "m-<COMMIT_COUNT - 1>" to partition 0 of topic, batched. */
static void commits_produce(const char *topic)
{
    reports r = { 0 };
    rd_kafka_t *p = producer_new(&r, (const char *const[]){ "linger.ms=5", NULL });
    char value[32];
    for (int n = 0; n < COMMIT_COUNT; n++) {
        snprintf(value, sizeof(value), "m-%d", n);
        produce(p, topic, 0, &(record){ .value = value, .value_len = strlen(value) }, n);
    }
    flush(p, &r);
    rd_kafka_destroy(p);
}

/* Consumes with c the messages from .. to - 1, each once and in order, the first one first. */
static void commits_consume(rd_kafka_t *c, int from, int to, const char *what)
{
    char value[32];
    int64_t deadline = sah_now_ms() + CONSUME_MS;
    for (int next = from; next < to;) {
        rd_kafka_message_t *m = next_event(c, deadline, what);
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(value, sizeof(value), "m-%d", next);
            cr_assert(m->offset == next && m->len == strlen(value) &&
                          memcmp(m->payload, value, m->len) == 0,
                      "%s: offset %" PRId64 " '%.*s' where %s was next", what, m->offset,
                      (int)m->len, (const char *)m->payload, value);
            next++;
        }
        rd_kafka_message_destroy(m);
    }
}

/* Commits offset (synchronously) for partition 0 of topic, then reads it back. */
static void commit_sync(rd_kafka_t *c, const char *topic, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = offset;
    rd_kafka_resp_err_t err = rd_kafka_commit(c, l, 0);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "commit %" PRId64 ": %s", offset,
                 rd_kafka_err2str(err));
    cr_assert_eq(committed(c, topic), offset);
}

/* A clean stop, a start on the same data; the Kafka port is read again. */
static void restart(void)
{
    sa_stop();
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    bootstrap_update();
}

Test(rdkafka, committed_offsets_survive_a_restart)
{
    const char *topic = "commits";
    commits_produce(topic);
    rd_kafka_t *c = committer_new(topic);
    commits_consume(c, 0, COMMIT_AT, "consuming the first half");
    commit_sync(c, topic, COMMIT_AT);
    consumer_destroy(c);

    restart();
    c = committer_new(topic);
    cr_assert_eq(committed(c, topic), COMMIT_AT, "after the restart");
    commits_consume(c, COMMIT_AT, COMMIT_COUNT, "consuming after the restart");
    commit_sync(c, topic, COMMIT_COUNT);
    consumer_destroy(c);
    finish();
}

/* The group is a subscription of the topic: its backlog is the messages not committed, as a
 * Pulsar subscription's is the messages not acknowledged; before and after a restart. */
Test(rdkafka, group_backlog_is_the_uncommitted_messages)
{
    const char *topic = "backlogs";
    commits_produce(topic);
    rd_kafka_t *c = committer_new(topic);
    commits_consume(c, 0, COMMIT_AT, "consuming the first half");
    commit_sync(c, topic, COMMIT_AT);
    consumer_destroy(c);
    int64_t before = group_backlog(topic, "committers");
    cr_expect_eq(before, COMMIT_COUNT - COMMIT_AT,
                 "stats: subscription committers has msgBacklog %" PRId64 ", expected %d", before,
                 COMMIT_COUNT - COMMIT_AT);

    restart();
    int64_t after = group_backlog(topic, "committers");
    cr_expect_eq(after, COMMIT_COUNT - COMMIT_AT,
                 "stats after the restart: subscription committers has msgBacklog %" PRId64
                 ", expected %d",
                 after, COMMIT_COUNT - COMMIT_AT);
    c = committer_new(topic);
    commits_consume(c, COMMIT_AT, COMMIT_COUNT, "consuming after the restart");
    commit_sync(c, topic, COMMIT_COUNT);
    consumer_destroy(c);
    int64_t end = group_backlog(topic, "committers");
    cr_expect_eq(end, 0, "stats: everything committed, msgBacklog %" PRId64, end);
    sa_stop();
    g_passed = before == COMMIT_COUNT - COMMIT_AT && after == before && end == 0;
}

/* ---- e. ListOffsets ------------------------------------------------------------------------ */

#define TIMES_ROUND  100
#define TIMES_GAP_MS 100 /* before and after the time asked for */

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* offsets_for_times for one timestamp (or RD_KAFKA_OFFSET_BEGINNING / END). */
static int64_t offset_for_time(rd_kafka_t *rk, const char *topic, int64_t ts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = ts;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, WAIT_MS);
    cr_assert_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR, "offsets_for_times %" PRId64 ": %s", ts,
                 rd_kafka_err2str(err));
    cr_assert_eq(l->elems[0].err, RD_KAFKA_RESP_ERR_NO_ERROR, "offsets_for_times %" PRId64 ": %s",
                 ts, rd_kafka_err2str(l->elems[0].err));
    int64_t off = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

Test(rdkafka, list_offsets_earliest_latest_and_by_time)
{
    const char *topic = "times";
    static int64_t stamps[2 * TIMES_ROUND];
    reports r = { 0 };
    rd_kafka_t *p = producer_new(&r, (const char *const[]){ "linger.ms=5", NULL });
    int64_t start = sah_wall_ms(), between = 0;
    char value[32];
    for (int round = 0; round < 2; round++) {
        for (int n = round * TIMES_ROUND; n < (round + 1) * TIMES_ROUND; n++) {
            snprintf(value, sizeof(value), "t-%d", n);
            stamps[n] = sah_wall_ms();
            produce(
                p, topic, 0,
                &(record){ .value = value, .value_len = strlen(value), .timestamp_ms = stamps[n] },
                n);
            if (n % 10 == 9)
                sleep_ms(2); /* timestamps spread over the round */
        }
        flush(p, &r);
        if (round == 0) {
            sleep_ms(TIMES_GAP_MS);
            between = sah_wall_ms();
            sleep_ms(TIMES_GAP_MS);
        }
    }
    int64_t low = -1, high = -1;
    watermarks(p, topic, 0, &low, &high);
    cr_assert(low == 0 && high == 2 * TIMES_ROUND, "watermarks %" PRId64 "..%" PRId64, low, high);
    cr_assert_eq(offset_for_time(p, topic, RD_KAFKA_OFFSET_BEGINNING), 0, "earliest");
    cr_assert_eq(offset_for_time(p, topic, RD_KAFKA_OFFSET_END), 2 * TIMES_ROUND, "latest");
    cr_assert_eq(offset_for_time(p, topic, start - 60000), 0, "a time before the first message");
    int64_t off = offset_for_time(p, topic, between);
    cr_assert_eq(off, TIMES_ROUND,
                 "the time between the rounds gives offset %" PRId64 ", expected %d", off,
                 TIMES_ROUND);
    off = offset_for_time(p, topic, sah_wall_ms() + 60000);
    cr_assert_eq(off, RD_KAFKA_OFFSET_END, "a time after the last message gives %" PRId64, off);
    rd_kafka_destroy(p);

    /* The records' own timestamps come back as produced, as CreateTime. */
    rd_kafka_t *c = reader_new(topic, 0, RD_KAFKA_OFFSET_BEGINNING);
    int64_t deadline = sah_now_ms() + CONSUME_MS;
    for (int next = 0; next < 2 * TIMES_ROUND;) {
        rd_kafka_message_t *m = next_event(c, deadline, "reading the timed topic");
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_timestamp_type_t type;
            int64_t ts = rd_kafka_message_timestamp(m, &type);
            cr_assert(
                m->offset == next && ts == stamps[next] && type == RD_KAFKA_TIMESTAMP_CREATE_TIME,
                "offset %" PRId64 ": timestamp %" PRId64 " (type %d), expected %d at %" PRId64,
                m->offset, ts, (int)type, next, stamps[next]);
            next++;
        }
        rd_kafka_message_destroy(m);
    }
    consumer_destroy(c);
    finish();
}
