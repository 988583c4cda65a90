/*
 * The broker's Kafka port over raw sockets: every test starts `magnetar standalone` (binary from
 * MG_BIN, --kafka-port 0) on free loopback ports with its data under a fresh directory in
 * /var/tmp, speaks the Kafka protocol to it through support/kafka_raw (requests built and answers
 * read with src/kafka's codec), and stops it at the end: a clean exit and no sanitizer report in
 * its log are required (sa_finish); the suite's fini destroys it whatever happened. Every wait is
 * bounded.
 *
 * Rule checked by the bad-input cases: bad input on one connection is answered with the error
 * code Kafka's protocol defines for it, or closes that connection, and is counted on /metrics
 * (magnetar_kafka_protocol_errors_total{reason}, magnetar_kafka_unknown_api_total,
 * magnetar_kafka_request_errors_total{api}); it never disturbs a well-behaved connection opened
 * before (it produces and fetches throughout: healthy_open, healthy_check) nor stored data (what
 * was produced before is fetched back whole and unchanged afterwards).
 *
 * Then what a client library hides: answers in request order with their correlation ids when
 * requests are pipelined; long polling (a fetch at the high watermark answered when another
 * connection produces, or after max_wait_ms); the idempotent producer's sequence and epoch
 * checks; Metadata's auto-creation switch; a consumer group's life (MEMBER_ID_REQUIRED, join,
 * sync, heartbeats, commits in the middle of a batch, leave) and its offsets after a restart;
 * two members rebalancing; acks 0 (no answer; a refused batch closes the connection, as Kafka's
 * broker does); every served version of Produce, Fetch, ListOffsets and Metadata; a first batch
 * larger than a fetch's limits sent whole (KIP-74); CreateTopics and DeleteTopics.
 *
 * The Kafka error codes are the protocol's (Kafka's protocol guide): the KE_* below.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kafka/wire.h"
#include "common/error.h"
#include "support/kafka_raw.h"
#include "support/sa_harness.h"

/* Kafka error codes the cases expect. */
#define KE_NONE                         0
#define KE_OFFSET_OUT_OF_RANGE          1
#define KE_CORRUPT_MESSAGE              2
#define KE_UNKNOWN_TOPIC_OR_PARTITION   3
#define KE_LEADER_NOT_AVAILABLE         5
#define KE_INVALID_TOPIC_EXCEPTION      17
#define KE_INVALID_REQUIRED_ACKS        21
#define KE_ILLEGAL_GENERATION           22
#define KE_UNKNOWN_MEMBER_ID            25
#define KE_REBALANCE_IN_PROGRESS        27
#define KE_TOPIC_ALREADY_EXISTS         36
#define KE_INVALID_PARTITIONS           37
#define KE_UNSUPPORTED_VERSION          35
#define KE_OUT_OF_ORDER_SEQUENCE_NUMBER 45
#define KE_INVALID_PRODUCER_EPOCH       47
#define KE_MEMBER_ID_REQUIRED           79

#define REPLY_TIMEOUT_MS   15000      /* an answer (a produce may open a ledger first) */
#define CLOSE_TIMEOUT_MS   5000       /* a connection the broker must close */
#define METRICS_BYTES_MAX  (4u << 20) /* largest /metrics answer read */
/* A long poll answered "soon" after a produce: well under its 10 s wait, with room for a loaded
 * machine. */
#define LONG_POLL_WAIT_MS  10000
#define LONG_POLL_SOON_MS  5000
/* A long poll that nothing ends: answered after at least 0.8 of its wait, and not much later. */
#define SHORT_POLL_WAIT_MS 500
#define SHORT_POLL_LATE_MS 5000
/* Fetches that gather what a topic holds: each waits at most this, all of them FETCH_ALL_MS. */
#define FETCH_WAIT_MS      1000
#define FETCH_ALL_MS       15000

#define HEALTHY_TOPIC "healthy"

/* The byte offsets of a record batch's fields (REFERENCE.md §3). */
#define BATCH_MAGIC_AT 16
#define BATCH_CRC_AT   17

/* ---- the standalone ------------------------------------------------------------------------ */

static sah_standalone g_sa;
static uint16_t g_kport; /* its Kafka port */
static bool g_passed;    /* set at the end of a test body: fini shows the log otherwise */

static krw_conn g_healthy = { .fd = -1 };
static int g_healthy_count; /* records it produced: healthy-0 .. healthy-(count-1) */

/* The connections of the running test: closed by the suite's fini too, so that a failed case
 * leaves no answer buffer behind (a sanitizer build would report it). */
#define CONNS_MAX 16
static krw_conn g_conns[CONNS_MAX];
static int g_conn_count;

static void sa_start(void)
{
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_kport = sah_kafka_port(&g_sa);
    cr_assert_neq(g_kport, 0, "the ready line names no Kafka port");
}

static void suite_fini(void)
{
    krw_close(&g_healthy);
    for (int i = 0; i < g_conn_count; i++)
        krw_close(&g_conns[i]);
    if (!g_passed) {
        /* Stopped rather than killed: the log then shows what the stop reports (a sanitizer
         * build's leaks among it). */
        if (g_sa.pid > 0)
            sah_stop(&g_sa, NULL);
        sah_dump_log(&g_sa);
    }
    sah_destroy(&g_sa);
}

TestSuite(kafka_raw, .fini = suite_fini, .timeout = 120);

/* The end of every test: the standalone stops cleanly (SIGTERM, exit status 0: nothing the case
 * sent broke its shutdown, and a sanitizer build's leak report would change the status), and its
 * log holds no sanitizer report. */
static void sa_finish(void)
{
    krw_close(&g_healthy);
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
    FILE *f = fopen(g_sa.log, "r");
    cr_assert_not_null(f, "cannot read %s", g_sa.log);
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        bool report = strstr(line, "ERROR: AddressSanitizer") != NULL ||
                      strstr(line, "ERROR: LeakSanitizer") != NULL ||
                      strstr(line, "runtime error: ") != NULL;
        if (report) {
            fclose(f);
            cr_assert_fail("a sanitizer report in the standalone's log: %s", line);
        }
    }
    fclose(f);
    g_passed = true;
}

static void nap_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A new connection to the Kafka port, in a slot of g_conns. */
static krw_conn *kopen(void)
{
    for (int i = 0; i < g_conn_count; i++) {
        if (g_conns[i].fd < 0) {
            g_conns[i] = krw_open(g_kport, REPLY_TIMEOUT_MS);
            return &g_conns[i];
        }
    }
    cr_assert_lt(g_conn_count, CONNS_MAX, "more than %d connections open", CONNS_MAX);
    g_conns[g_conn_count] = krw_open(g_kport, REPLY_TIMEOUT_MS);
    return &g_conns[g_conn_count++];
}

/* ---- metrics ----------------------------------------------------------------------------- */

static char *metrics_text(void)
{
    char *text = NULL;
    int rc = sah_metrics_get(&g_sa, METRICS_BYTES_MAX, &text);
    cr_assert_eq(rc, 200, "GET /metrics: %d", rc);
    return text;
}

/* The value of an unlabelled series; -1 when absent. */
static double metric_plain(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

/* magnetar_kafka_protocol_errors_total{reason="<reason>"}, 0 when absent (a child made on first
 * use). */
static double proto_errors(const char *text, const char *reason)
{
    char label[96];
    snprintf(label, sizeof(label), "reason=\"%s\"", reason);
    double v = sah_metric(text, "magnetar_kafka_protocol_errors_total", label);
    return v < 0 ? 0 : v;
}

static double request_errors(const char *text, const char *api)
{
    char label[96];
    snprintf(label, sizeof(label), "api=\"%s\"", api);
    double v = sah_metric(text, "magnetar_kafka_request_errors_total", label);
    return v < 0 ? 0 : v;
}

/* ---- records ----------------------------------------------------------------------------- */

static bool view_is(kw_str s, const char *text)
{
    return s.len >= 0 && (size_t)s.len == strlen(text) && memcmp(s.ptr, text, (size_t)s.len) == 0;
}

/* Fetches (topic, 0) from offset 0 until the high watermark, checking that it holds exactly
 * values[0, count) at offsets first .. first + count - 1 (what was stored before them at offsets
 * below first is skipped). */
static void expect_log(krw_conn *c, const char *topic, int64_t first, const char *const *values,
                       int count)
{
    int64_t next = first;
    int64_t deadline = sah_now_ms() + FETCH_ALL_MS;
    static krw_fetch_result f;
    while (next < first + count) {
        cr_assert_lt(sah_now_ms(), deadline, "%s: only offsets below %lld fetched in %d ms", topic,
                     (long long)next, FETCH_ALL_MS);
        krw_fetch(c, topic, 0, next, FETCH_WAIT_MS, &f);
        cr_assert_eq(f.error, KE_NONE, "fetching %s at %lld: error %d", topic, (long long)next,
                     f.error);
        cr_assert_eq(f.high_watermark, first + count, "%s: high watermark %lld, expected %lld",
                     topic, (long long)f.high_watermark, (long long)(first + count));
        for (size_t i = 0; i < f.record_count; i++) {
            const krw_record_view *v = &f.records[i];
            if (v->offset < next)
                continue; /* the start of an entry holding next */
            cr_assert_eq(v->offset, next, "%s: offset %lld fetched where %lld was due", topic,
                         (long long)v->offset, (long long)next);
            const char *want = values[next - first];
            cr_assert(view_is(v->value, want), "%s at %lld: \"%.*s\", expected \"%s\"", topic,
                      (long long)next, v->value.len > 0 ? (int)v->value.len : 0,
                      v->value.len > 0 ? v->value.ptr : "", want);
            cr_assert_eq(v->key.len, -1, "%s at %lld: a key where none was produced", topic,
                         (long long)next);
            next++;
        }
    }
}

static int64_t latest(krw_conn *c, const char *topic)
{
    int64_t off = -1;
    int16_t e = krw_list_offsets(c, topic, 0, -1, &off);
    cr_assert_eq(e, KE_NONE, "ListOffsets latest of %s: error %d", topic, e);
    return off;
}

/* ---- the healthy connection ------------------------------------------------------------- */

#define HEALTHY_MAX 64
static char g_healthy_values[HEALTHY_MAX][32];
static const char *g_healthy_ptrs[HEALTHY_MAX];

static void healthy_produce(int n)
{
    cr_assert_leq(g_healthy_count + n, HEALTHY_MAX);
    for (int i = g_healthy_count; i < g_healthy_count + n; i++) {
        snprintf(g_healthy_values[i], sizeof(g_healthy_values[i]), "healthy-%d", i);
        g_healthy_ptrs[i] = g_healthy_values[i];
    }
    int64_t base =
        krw_produce_values(&g_healthy, HEALTHY_TOPIC, 0, g_healthy_ptrs + g_healthy_count, n);
    cr_assert_eq(base, g_healthy_count, "the healthy producer's batch stored at %lld, not %d",
                 (long long)base, g_healthy_count);
    g_healthy_count += n;
}

/* A connection that produces and fetches while the cases misbehave on others. */
static void healthy_open(void)
{
    g_healthy = krw_open(g_kport, REPLY_TIMEOUT_MS);
    g_healthy_count = 0;
    healthy_produce(3);
    expect_log(&g_healthy, HEALTHY_TOPIC, 0, g_healthy_ptrs, g_healthy_count);
}

/* The healthy connection still produces (the next offsets) and fetches everything back. */
static void healthy_check(void)
{
    healthy_produce(2);
    expect_log(&g_healthy, HEALTHY_TOPIC, 0, g_healthy_ptrs, g_healthy_count);
}

/* ---- 1a: frame sizes ---------------------------------------------------------------------- */

/* A 4-byte size and nothing after it: the broker must close at once, without waiting for the
 * body it announces. */
static void send_size_expect_closed(int32_t size, const char *what)
{
    krw_conn *c = kopen();
    uint8_t head[4] = { (uint8_t)((uint32_t)size >> 24), (uint8_t)((uint32_t)size >> 16),
                        (uint8_t)((uint32_t)size >> 8), (uint8_t)size };
    krw_write(c, head, sizeof(head));
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, what);
}

Test(kafka_raw, bad_frame_sizes)
{
    sa_start();
    healthy_open();
    send_size_expect_closed(-16, "a frame of size -16");
    send_size_expect_closed(INT32_MIN, "a frame of size INT32_MIN");
    send_size_expect_closed(3, "a frame of size 3 (below a request header)");
    send_size_expect_closed(200 << 20, "a frame announcing 200 MiB");
    send_size_expect_closed(INT32_MAX, "a frame announcing 2 GiB");
    healthy_check();
    char *m = metrics_text();
    cr_expect_eq(proto_errors(m, "bad_frame"), 3, "bad_frame: %g", proto_errors(m, "bad_frame"));
    cr_expect_eq(proto_errors(m, "frame_too_large"), 2, "frame_too_large: %g",
                 proto_errors(m, "frame_too_large"));
    free(m);
    sa_finish();
}

/* ---- 1b: truncated requests --------------------------------------------------------------- */

Test(kafka_raw, truncated_requests)
{
    sa_start();
    healthy_open();

    /* Metadata v1 announcing 5 topics and naming none. */
    krw_conn *c = kopen();
    kw_writer w;
    krw_begin(c, &w, KW_API_METADATA, 1);
    kw_write_i32(&w, 5);
    krw_send(c, &w);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "Metadata with a topic count of 5 and no topics");

    /* Metadata v1 with a topic whose string length runs past the frame. */
    c = kopen();
    krw_begin(c, &w, KW_API_METADATA, 1);
    kw_write_i32(&w, 1);
    kw_write_i16(&w, 100);
    kw_write_bytes(&w, "abc", 3);
    krw_send(c, &w);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "Metadata with a topic name cut short");

    /* Produce v7 cut after its topic count. */
    c = kopen();
    krw_begin(c, &w, KW_API_PRODUCE, 7);
    kw_write_string(&w, NULL);
    kw_write_i16(&w, 1);
    kw_write_i32(&w, 1000);
    kw_write_i32(&w, 1);
    krw_send(c, &w);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "Produce cut after its topic count");

    /* Fetch v11 cut inside its partition (its max_bytes and the fields after it missing). */
    c = kopen();
    krw_begin(c, &w, KW_API_FETCH, 11);
    krw_fetch_body(&w, 11, 0, 1, HEALTHY_TOPIC, 0, 0, 1 << 20);
    w.len -= 10; /* cut inside the partition (and drop the trailing fields) */
    krw_send(c, &w);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "Fetch cut inside its partition");

    /* A request header without its client id (header v1 needs one): size 8. */
    c = kopen();
    static const uint8_t hdr[] = { 0, 0, 0, 8, 0, 3, 0, 1, 0, 0, 0, 7 };
    krw_write(c, hdr, sizeof(hdr));
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "a request header without its client id");

    healthy_check();
    char *m = metrics_text();
    cr_expect_eq(proto_errors(m, "bad_request"), 4, "bad_request: %g",
                 proto_errors(m, "bad_request"));
    cr_expect_eq(proto_errors(m, "bad_header"), 1, "bad_header: %g", proto_errors(m, "bad_header"));
    free(m);
    sa_finish();
}

/* ---- 1c: unknown APIs and versions -------------------------------------------------------- */

/* A request of (key, version) with a few body bytes: the broker must close the connection. */
static void send_expect_closed(int16_t key, int16_t version, const char *what)
{
    krw_conn *c = kopen();
    kw_writer w;
    krw_begin(c, &w, key, version);
    kw_write_i32(&w, 0);
    kw_write_i32(&w, 0);
    krw_send(c, &w);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, what);
}

Test(kafka_raw, unknown_api_and_versions)
{
    sa_start();
    healthy_open();
    send_expect_closed(999, 0, "API key 999");
    send_expect_closed(-1, 0, "API key -1");
    send_expect_closed(KW_API_PRODUCE, 8, "Produce v8");
    send_expect_closed(KW_API_FETCH, 12, "Fetch v12");
    send_expect_closed(KW_API_METADATA, 5, "Metadata v5");
    send_expect_closed(KW_API_OFFSET_FETCH, 0, "OffsetFetch v0");
    healthy_check();
    char *m = metrics_text();
    cr_expect_eq(metric_plain(m, "magnetar_kafka_unknown_api_total"), 2,
                 "magnetar_kafka_unknown_api_total: %g",
                 metric_plain(m, "magnetar_kafka_unknown_api_total"));
    cr_expect_eq(proto_errors(m, "unknown_api"), 2, "unknown_api: %g",
                 proto_errors(m, "unknown_api"));
    cr_expect_eq(proto_errors(m, "unsupported_version"), 4, "unsupported_version: %g",
                 proto_errors(m, "unsupported_version"));
    free(m);
    sa_finish();
}

/* ---- 1d: ApiVersions ------------------------------------------------------------------------ */

/* What the broker serves (REFERENCE.md §3 and docs/kafka.md). */
static const kw_api_range served[] = {
    { KW_API_PRODUCE, 0, 7 },          { KW_API_FETCH, 4, 11 },
    { KW_API_LIST_OFFSETS, 0, 2 },     { KW_API_METADATA, 0, 4 },
    { KW_API_OFFSET_COMMIT, 0, 7 },    { KW_API_OFFSET_FETCH, 1, 5 },
    { KW_API_FIND_COORDINATOR, 0, 2 }, { KW_API_JOIN_GROUP, 0, 5 },
    { KW_API_HEARTBEAT, 0, 3 },        { KW_API_LEAVE_GROUP, 0, 1 },
    { KW_API_SYNC_GROUP, 0, 3 },       { KW_API_DESCRIBE_GROUPS, 0, 4 },
    { KW_API_LIST_GROUPS, 0, 2 },      { KW_API_API_VERSIONS, 0, 3 },
    { KW_API_CREATE_TOPICS, 0, 4 },    { KW_API_DELETE_TOPICS, 0, 3 },
    { KW_API_INIT_PRODUCER_ID, 0, 1 },
};
#define SERVED_COUNT (sizeof(served) / sizeof(served[0]))

/* The ranges must be exactly the served table, each API once, in any order. */
static void expect_served(const kw_api_range *got, size_t count, const char *what)
{
    cr_assert_eq(count, SERVED_COUNT, "%s lists %zu APIs, expected %zu", what, count, SERVED_COUNT);
    for (size_t i = 0; i < SERVED_COUNT; i++) {
        size_t found = 0;
        for (size_t j = 0; j < count; j++) {
            if (got[j].api_key != served[i].api_key)
                continue;
            found++;
            cr_assert(got[j].min_version == served[i].min_version &&
                          got[j].max_version == served[i].max_version,
                      "%s: %s versions %d-%d, expected %d-%d", what, kw_api_name(served[i].api_key),
                      got[j].min_version, got[j].max_version, served[i].min_version,
                      served[i].max_version);
        }
        cr_assert_eq(found, 1, "%s lists %s %zu times", what, kw_api_name(served[i].api_key),
                     found);
    }
}

Test(kafka_raw, api_versions)
{
    sa_start();
    healthy_open();
    krw_conn *c = kopen();
    kw_api_range got[64];
    size_t n = 0;

    /* v4 is not served: answered at v0 with UNSUPPORTED_VERSION and the table, the connection
     * kept, so that the client retries at a version both know. */
    int16_t e = krw_api_versions(c, 4, 0, got, 64, &n);
    cr_assert_eq(e, KE_UNSUPPORTED_VERSION, "ApiVersions v4: error %d", e);
    expect_served(got, n, "ApiVersions v4's answer (v0)");

    e = krw_api_versions(c, 3, 3, got, 64, &n);
    cr_assert_eq(e, KE_NONE, "ApiVersions v3: error %d", e);
    expect_served(got, n, "ApiVersions v3");
    for (int16_t v = 0; v <= 2; v++) {
        e = krw_api_versions(c, v, v, got, 64, &n);
        cr_assert_eq(e, KE_NONE, "ApiVersions v%d: error %d", v, e);
        expect_served(got, n, "ApiVersions v0-2");
    }
    /* A much newer client (v100) is answered the same way. */
    e = krw_api_versions(c, 100, 0, got, 64, &n);
    cr_assert_eq(e, KE_UNSUPPORTED_VERSION, "ApiVersions v100: error %d", e);
    expect_served(got, n, "ApiVersions v100's answer (v0)");
    krw_close(c);

    healthy_check();
    char *m = metrics_text();
    cr_expect_eq(request_errors(m, "ApiVersions"), 2, "request errors of ApiVersions: %g",
                 request_errors(m, "ApiVersions"));
    free(m);
    sa_finish();
}

/* ---- 1e: bad record batches --------------------------------------------------------------- */

static const char *const good_values[] = { "good-0", "good-1", "good-2", "good-3", "good-4" };

/* A plain batch of two records into a new writer. */
static kw_writer two_records(int16_t attributes, int64_t producer_id)
{
    static const char *const v[] = { "bad-0", "bad-1" };
    kw_writer b;
    kw_writer_init(&b, 0);
    krw_batch spec = KRW_BATCH_PLAIN;
    spec.attributes = attributes;
    if (producer_id >= 0) {
        spec.producer_id = producer_id;
        spec.producer_epoch = 0;
        spec.base_sequence = 0;
    }
    krw_write_batch(&b, &spec, v, 2);
    return b;
}

/* A batch whose header says records_count (and last_offset_delta) over the records of values. */
static kw_writer miscounted(int32_t records_count, int32_t last_offset_delta, int16_t attributes,
                            const void *records, size_t records_len)
{
    kw_writer b;
    kw_writer_init(&b, 0);
    int64_t now = sah_wall_ms();
    kw_record_batch kb = { .base_offset = 0,
                           .partition_leader_epoch = -1,
                           .attributes = attributes,
                           .last_offset_delta = last_offset_delta,
                           .base_timestamp = now,
                           .max_timestamp = now,
                           .producer_id = -1,
                           .producer_epoch = -1,
                           .base_sequence = -1,
                           .records_count = records_count };
    kw_write_record_batch(&b, &kb, records, records_len);
    cr_assert_eq(kw_writer_error(&b), MG_OK);
    return b;
}

/* Produces the bytes of b (freed) with acks to topic; the answer's error must be want (or, with
 * want -1, any error), and the topic's high watermark must stay hw. */
static void produce_refused(krw_conn *c, const char *topic, kw_writer *b, int16_t acks,
                            int16_t want, int64_t hw, const char *what)
{
    krw_produce_result r = krw_produce(c, topic, 0, acks, b->buf, b->len);
    kw_writer_free(b);
    if (want >= 0)
        cr_assert_eq(r.error, want, "%s: error %d, expected %d", what, r.error, want);
    else
        cr_assert_neq(r.error, KE_NONE, "%s: accepted (base offset %lld)", what,
                      (long long)r.base_offset);
    int64_t now = latest(c, topic);
    cr_assert_eq(now, hw, "%s: the high watermark moved from %lld to %lld", what, (long long)hw,
                 (long long)now);
}

Test(kafka_raw, bad_record_batches)
{
    sa_start();
    healthy_open();
    const char *topic = "bad-batches";
    krw_conn *c = kopen();
    int64_t base = krw_produce_values(c, topic, 0, good_values, 5);
    cr_assert_eq(base, 0);
    cr_assert_eq(latest(c, topic), 5);
    int errors = 0;

    kw_writer b = two_records(0, -1);
    b.buf[BATCH_CRC_AT + 2] ^= 0x5a;
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "a batch with a wrong CRC");
    errors++;

    b = two_records(0, -1);
    b.buf[BATCH_MAGIC_AT] = 1;
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "a batch of magic 1");
    errors++;

    b = two_records(0, -1);
    b.buf[BATCH_MAGIC_AT] = 3;
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "a batch of magic 3");
    errors++;

    b = two_records(0, -1);
    produce_refused(c, topic, &b, 5, KE_INVALID_REQUIRED_ACKS, 5, "acks=5");
    errors++;

    b = two_records(0x10, 77);
    produce_refused(c, topic, &b, 1, -1, 5, "a transactional batch");
    errors++;

    b = two_records(0x20, -1);
    produce_refused(c, topic, &b, 1, -1, 5, "a control batch");
    errors++;

    /* Records that disagree with the header's count: three announced, two written. */
    kw_writer recs;
    kw_writer_init(&recs, 0);
    kw_write_record(&recs, 0, 0, NULL, -1, "r0", 2, NULL, 0);
    kw_write_record(&recs, 0, 1, NULL, -1, "r1", 2, NULL, 0);
    cr_assert_eq(kw_writer_error(&recs), MG_OK);
    b = miscounted(3, 2, 0, recs.buf, recs.len);
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "records_count 3 over 2 records");
    errors++;
    /* One announced, two written. */
    b = miscounted(1, 0, 0, recs.buf, recs.len);
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "records_count 1 over 2 records");
    errors++;
    /* A count that disagrees with last_offset_delta. */
    b = miscounted(2, 5, 0, recs.buf, recs.len);
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5,
                    "records_count 2 with last_offset_delta 5");
    errors++;
    kw_writer_free(&recs);

    /* gzip whose compressed bytes are garbage. */
    static const char garbage[] = "these bytes are not gzip data, whatever the attributes say";
    b = miscounted(2, 1, KW_CODEC_GZIP, garbage, sizeof(garbage));
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "gzip batch of garbage");
    errors++;

    /* The connection survived all that: what was stored is intact, and it produces on. */
    expect_log(c, topic, 0, good_values, 5);
    static const char *const after[] = { "after-0" };
    cr_assert_eq(krw_produce_values(c, topic, 0, after, 1), 5);
    krw_close(c);
    healthy_check();

    char *m = metrics_text();
    cr_expect_eq(request_errors(m, "Produce"), errors, "request errors of Produce: %g, expected %d",
                 request_errors(m, "Produce"), errors);
    /* crc: the wrong CRC, and the batch whose magic byte says 1, read as a message set of magic 1
     * whose CRC-32 does not match; bad_batch: magic 3, the three miscounted batches, the gzip
     * garbage. */
    cr_expect_eq(proto_errors(m, "crc"), 2, "crc: %g", proto_errors(m, "crc"));
    cr_expect_eq(proto_errors(m, "bad_batch"), 5, "bad_batch: %g", proto_errors(m, "bad_batch"));
    free(m);
    sa_finish();
}

/* A record set of a good batch followed by one with a wrong CRC: CORRUPT_MESSAGE, and the
 * partition's data refused whole, the good batch included (Kafka validates every batch of a
 * partition before it appends any: a client told CORRUPT_MESSAGE must not find half of what it
 * sent stored, or its retry stores it twice). The same for a malformed second batch. */
Test(kafka_raw, corrupt_batch_after_good_one)
{
    sa_start();
    healthy_open();
    const char *topic = "half-bad";
    krw_conn *c = kopen();
    int64_t base = krw_produce_values(c, topic, 0, good_values, 5);
    cr_assert_eq(base, 0);

    kw_writer b = two_records(0, -1);
    kw_writer bad = two_records(0, -1);
    bad.buf[BATCH_CRC_AT] ^= 0xff;
    kw_write_bytes(&b, bad.buf, bad.len);
    kw_writer_free(&bad);
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5,
                    "a good batch then one with a wrong CRC");

    b = two_records(0, -1);
    bad = two_records(0, -1);
    bad.buf[BATCH_MAGIC_AT] = 1;
    kw_write_bytes(&b, bad.buf, bad.len);
    kw_writer_free(&bad);
    produce_refused(c, topic, &b, 1, KE_CORRUPT_MESSAGE, 5, "a good batch then one of magic 1");

    expect_log(c, topic, 0, good_values, 5);
    krw_close(c);
    healthy_check();
    sa_finish();
}

/* ---- 1f: offsets, unknown topics, bad names ------------------------------------------------ */

/* Whether the admin API lists a topic of that (Kafka) name in public/default. */
static bool topic_listed(const char *name)
{
    char body[65536];
    int rc =
        sah_http(&g_sa, "GET", "/admin/v2/persistent/public/default", NULL, body, sizeof(body));
    cr_assert_eq(rc, 200, "listing the topics: %d", rc);
    char quoted[300];
    snprintf(quoted, sizeof(quoted), "persistent://public/default/%s\"", name);
    return strstr(body, quoted) != NULL;
}

/* A fetch of (topic, partition) at offset with no wait: its error (records must be none). */
static int16_t fetch_error(krw_conn *c, const char *topic, int32_t partition, int64_t offset)
{
    static krw_fetch_result f;
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_FETCH, 11);
    krw_fetch_body(&w, 11, 0, 1, topic, partition, offset, 1 << 20);
    krw_send(c, &w);
    krw_parse_fetch(krw_expect(c, corr, "Fetch"), 11, topic, partition, &f);
    cr_assert_eq(f.record_count, 0, "a fetch of %s-%d at %lld got %zu records", topic, partition,
                 (long long)offset, f.record_count);
    return f.error;
}

Test(kafka_raw, offsets_and_unknown_topics)
{
    sa_start();
    healthy_open();
    const char *topic = "ranges";
    krw_conn *c = kopen();
    static const char *const v[] = { "r-0", "r-1", "r-2" };
    cr_assert_eq(krw_produce_values(c, topic, 0, v, 3), 0);
    int fetch_errors = 0, lo_errors = 0, md_errors = 0;

    int16_t e = fetch_error(c, topic, 0, 4);
    cr_expect_eq(e, KE_OFFSET_OUT_OF_RANGE, "fetch beyond the high watermark: %d", e);
    fetch_errors++;
    e = fetch_error(c, topic, 0, 1000000);
    cr_expect_eq(e, KE_OFFSET_OUT_OF_RANGE, "fetch far beyond the high watermark: %d", e);
    fetch_errors++;
    e = fetch_error(c, topic, 0, -1);
    cr_expect_eq(e, KE_OFFSET_OUT_OF_RANGE, "fetch at -1: %d", e);
    fetch_errors++;
    e = fetch_error(c, topic, 0, INT64_MIN);
    cr_expect_eq(e, KE_OFFSET_OUT_OF_RANGE, "fetch at INT64_MIN: %d", e);
    fetch_errors++;
    /* At the high watermark: nothing yet, no error. */
    e = fetch_error(c, topic, 0, 3);
    cr_expect_eq(e, KE_NONE, "fetch at the high watermark: %d", e);

    /* Unknown topics and partitions: an error, and nothing created. */
    e = fetch_error(c, "no-such-topic", 0, 0);
    cr_expect_eq(e, KE_UNKNOWN_TOPIC_OR_PARTITION, "fetch of an unknown topic: %d", e);
    fetch_errors++;
    e = fetch_error(c, topic, 5, 0);
    cr_expect_eq(e, KE_UNKNOWN_TOPIC_OR_PARTITION, "fetch of partition 5 of a plain topic: %d", e);
    fetch_errors++;
    e = fetch_error(c, topic, -1, 0);
    cr_expect_eq(e, KE_UNKNOWN_TOPIC_OR_PARTITION, "fetch of partition -1: %d", e);
    fetch_errors++;
    int64_t off = 0;
    e = krw_list_offsets(c, "no-such-topic-2", 0, -1, &off);
    cr_expect_eq(e, KE_UNKNOWN_TOPIC_OR_PARTITION, "ListOffsets of an unknown topic: %d", e);
    lo_errors++;
    cr_expect(!topic_listed("no-such-topic"), "a fetch created the topic it did not find");
    cr_expect(!topic_listed("no-such-topic-2"), "ListOffsets created the topic it did not find");
    cr_expect(!topic_listed("ranges-partition-5"), "a fetch created a partition it did not find");

    /* Names Kafka refuses (only [a-zA-Z0-9._-], 1 to 249 of them, not "." or ".."). */
    char too_long[251];
    memset(too_long, 'x', 250);
    too_long[250] = '\0';
    const char *const bad_names[] = { "bad/name", "bad name!", "..", too_long };
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        static krw_metadata md;
        krw_metadata_req(c, 4, &bad_names[i], 1, true, &md);
        const krw_md_topic *t = krw_md_find(&md, bad_names[i]);
        cr_assert_not_null(t, "Metadata does not answer about \"%.40s\"", bad_names[i]);
        cr_expect_eq(t->error, KE_INVALID_TOPIC_EXCEPTION, "Metadata of \"%.40s\": error %d",
                     bad_names[i], t->error);
        md_errors++;
    }
    cr_expect(!topic_listed("bad/name") && !topic_listed("bad name!"),
              "a topic with an illegal name was created");

    /* Stored data intact. */
    expect_log(c, topic, 0, v, 3);
    krw_close(c);
    healthy_check();
    char *m = metrics_text();
    cr_expect_eq(request_errors(m, "Fetch"), fetch_errors,
                 "request errors of Fetch: %g, expected %d", request_errors(m, "Fetch"),
                 fetch_errors);
    cr_expect_eq(request_errors(m, "ListOffsets"), lo_errors,
                 "request errors of ListOffsets: %g, expected %d", request_errors(m, "ListOffsets"),
                 lo_errors);
    cr_expect_eq(request_errors(m, "Metadata"), md_errors,
                 "request errors of Metadata: %g, expected %d", request_errors(m, "Metadata"),
                 md_errors);
    free(m);
    sa_finish();
}

/* ---- 2a: pipelining ------------------------------------------------------------------------- */

Test(kafka_raw, pipelined_answers_in_order)
{
    sa_start();
    const char *topic = "pipe";
    krw_conn *c = kopen();
    static const char *const v[] = { "p-0" };
    cr_assert_eq(krw_produce_values(c, topic, 0, v, 1), 0);

    /* One write: a Fetch at the high watermark that waits 300 ms, then requests answered at once.
     * Every answer must come in request order, the Fetch's first. */
    kw_writer w;
    kw_writer_init(&w, 0);
    int32_t corr[6];
    kw_writer one;

    corr[0] = krw_begin(c, &one, KW_API_FETCH, 11);
    krw_fetch_body(&one, 11, 300, 1, topic, 0, 1, 1 << 20);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    corr[1] = krw_begin(c, &one, KW_API_METADATA, 4);
    kw_write_i32(&one, 1);
    kw_write_string(&one, topic);
    kw_write_i8(&one, 0);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    corr[2] = krw_begin(c, &one, KW_API_API_VERSIONS, 2);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    corr[3] = krw_begin(c, &one, KW_API_LIST_OFFSETS, 2);
    kw_write_i32(&one, -1);
    kw_write_i8(&one, 0);
    kw_write_i32(&one, 1);
    kw_write_string(&one, topic);
    kw_write_i32(&one, 1);
    kw_write_i32(&one, 0);
    kw_write_i64(&one, -1);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    /* Another long wait behind them, then a Metadata again. */
    corr[4] = krw_begin(c, &one, KW_API_FETCH, 11);
    krw_fetch_body(&one, 11, 200, 1, topic, 0, 1, 1 << 20);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    corr[5] = krw_begin(c, &one, KW_API_METADATA, 1);
    kw_write_i32(&one, 1);
    kw_write_string(&one, topic);
    krw_finish(&one, 0);
    kw_write_bytes(&w, one.buf, one.len);
    kw_writer_free(&one);

    cr_assert_eq(kw_writer_error(&w), MG_OK);
    int64_t t0 = sah_now_ms();
    krw_write(c, w.buf, w.len);
    kw_writer_free(&w);

    static krw_fetch_result f;
    krw_parse_fetch(krw_expect(c, corr[0], "the pipelined Fetch (300 ms)"), 11, topic, 0, &f);
    int64_t first = sah_now_ms() - t0;
    cr_expect_eq(f.error, KE_NONE);
    cr_expect_eq(f.record_count, 0);
    cr_expect_geq(first, 240, "the first Fetch was answered after %lld ms, before its wait",
                  (long long)first);
    kw_reader *r = krw_expect(c, corr[1], "the pipelined Metadata after the Fetch");
    r->pos = r->len; /* its contents are the next tests' */
    r = krw_expect(c, corr[2], "the pipelined ApiVersions");
    cr_expect_eq(kw_read_i16(r), KE_NONE);
    r = krw_expect(c, corr[3], "the pipelined ListOffsets");
    krw_parse_fetch(krw_expect(c, corr[4], "the second pipelined Fetch (200 ms)"), 11, topic, 0,
                    &f);
    cr_expect_eq(f.error, KE_NONE);
    krw_expect(c, corr[5], "the last pipelined Metadata");

    /* Many small requests in one write: all answered, in order. */
    enum { MANY = 40 };
    int32_t many[MANY];
    kw_writer_init(&w, 0);
    for (int i = 0; i < MANY; i++) {
        if (i % 2 == 0) {
            many[i] = krw_begin(c, &one, KW_API_API_VERSIONS, (int16_t)(i % 3));
        } else {
            many[i] = krw_begin(c, &one, KW_API_METADATA, 1);
            kw_write_i32(&one, 1);
            kw_write_string(&one, topic);
        }
        krw_finish(&one, 0);
        kw_write_bytes(&w, one.buf, one.len);
        kw_writer_free(&one);
    }
    krw_write(c, w.buf, w.len);
    kw_writer_free(&w);
    for (int i = 0; i < MANY; i++)
        krw_expect(c, many[i], i % 2 == 0 ? "a pipelined ApiVersions" : "a pipelined Metadata");

    /* A request trickled a byte at a time, then two cut in 3-byte writes (a cut inside a size
     * among them): each answered once whole. */
    int32_t tc = krw_begin(c, &one, KW_API_METADATA, 1);
    kw_write_i32(&one, 1);
    kw_write_string(&one, topic);
    krw_finish(&one, 0);
    for (size_t i = 0; i < one.len; i++) {
        krw_write(c, one.buf + i, 1);
        nap_ms(1);
    }
    kw_writer_free(&one);
    krw_expect(c, tc, "a Metadata sent a byte at a time");
    kw_writer_init(&w, 0);
    int32_t two[2];
    for (int i = 0; i < 2; i++) {
        two[i] = krw_begin(c, &one, KW_API_API_VERSIONS, 1);
        krw_finish(&one, 0);
        kw_write_bytes(&w, one.buf, one.len);
        kw_writer_free(&one);
    }
    for (size_t i = 0; i < w.len; i += 3) {
        krw_write(c, w.buf + i, w.len - i < 3 ? w.len - i : 3);
        nap_ms(1);
    }
    kw_writer_free(&w);
    krw_expect(c, two[0], "the first ApiVersions sent in pieces");
    krw_expect(c, two[1], "the second ApiVersions sent in pieces");
    krw_close(c);
    sa_finish();
}

/* ---- 2b: long polling ---------------------------------------------------------------------- */

Test(kafka_raw, long_poll_answered_by_produce)
{
    sa_start();
    const char *topic = "poll";
    krw_conn *a = kopen(), *b = kopen();
    static const char *const v[] = { "before-0", "before-1" };
    cr_assert_eq(krw_produce_values(b, topic, 0, v, 2), 0);

    kw_writer w;
    int32_t corr = krw_begin(a, &w, KW_API_FETCH, 11);
    krw_fetch_body(&w, 11, LONG_POLL_WAIT_MS, 1, topic, 0, 2, 1 << 20);
    int64_t t0 = sah_now_ms();
    krw_send(a, &w);
    /* Nothing may come before the produce. */
    nap_ms(300);
    static const char *const late[] = { "late" };
    int64_t tp = sah_now_ms();
    cr_assert_eq(krw_produce_values(b, topic, 0, late, 1), 2);
    static krw_fetch_result f;
    krw_parse_fetch(krw_expect(a, corr, "the long-polling Fetch"), 11, topic, 0, &f);
    int64_t t1 = sah_now_ms();
    cr_expect_geq(t1 - t0, 250, "the long poll was answered after %lld ms, before the produce",
                  (long long)(t1 - t0));
    cr_assert_lt(t1 - tp, LONG_POLL_SOON_MS,
                 "the long poll was answered %lld ms after the produce (its wait: %d ms)",
                 (long long)(t1 - tp), LONG_POLL_WAIT_MS);
    cr_assert_eq(f.error, KE_NONE, "the long poll's error: %d", f.error);
    cr_assert_eq(f.record_count, 1, "the long poll got %zu records", f.record_count);
    cr_assert_eq(f.records[0].offset, 2);
    cr_assert(view_is(f.records[0].value, "late"));
    cr_expect_eq(f.high_watermark, 3);
    krw_close(a);
    krw_close(b);
    sa_finish();
}

Test(kafka_raw, long_poll_times_out)
{
    sa_start();
    const char *topic = "poll-idle";
    krw_conn *c = kopen();
    static const char *const v[] = { "only" };
    cr_assert_eq(krw_produce_values(c, topic, 0, v, 1), 0);
    for (int round = 0; round < 2; round++) {
        kw_writer w;
        int32_t corr = krw_begin(c, &w, KW_API_FETCH, 11);
        krw_fetch_body(&w, 11, SHORT_POLL_WAIT_MS, 1, topic, 0, 1, 1 << 20);
        int64_t t0 = sah_now_ms();
        krw_send(c, &w);
        static krw_fetch_result f;
        krw_parse_fetch(krw_expect(c, corr, "the idle long poll"), 11, topic, 0, &f);
        int64_t took = sah_now_ms() - t0;
        cr_assert_geq(took, SHORT_POLL_WAIT_MS * 8 / 10,
                      "a %d ms long poll with nothing new was answered after %lld ms",
                      SHORT_POLL_WAIT_MS, (long long)took);
        cr_assert_lt(took, SHORT_POLL_LATE_MS,
                     "a %d ms long poll with nothing new was answered after %lld ms",
                     SHORT_POLL_WAIT_MS, (long long)took);
        cr_assert_eq(f.error, KE_NONE);
        cr_assert_eq(f.record_count, 0);
        cr_assert_eq(f.high_watermark, 1);
    }
    krw_close(c);
    sa_finish();
}

/* ---- 2c: the idempotent producer ---------------------------------------------------------- */

/* Produces a batch of an idempotent producer: values[0, count) at base_seq with epoch. */
static krw_produce_result idem_produce(krw_conn *c, const char *topic, int64_t pid, int16_t epoch,
                                       int32_t base_seq, const char *const *values, int count)
{
    kw_writer b;
    kw_writer_init(&b, 0);
    krw_batch spec = {
        .producer_id = pid, .producer_epoch = epoch, .base_sequence = base_seq, .attributes = 0
    };
    krw_write_batch(&b, &spec, values, count);
    krw_produce_result r = krw_produce(c, topic, 0, -1, b.buf, b.len);
    kw_writer_free(&b);
    return r;
}

Test(kafka_raw, idempotent_producer)
{
    sa_start();
    const char *topic = "idem";
    krw_conn *c = kopen();
    int64_t pid = -1;
    int16_t epoch = -1;
    int16_t e = krw_init_producer_id(c, &pid, &epoch);
    cr_assert_eq(e, KE_NONE, "InitProducerId: error %d", e);
    cr_assert_geq(pid, 0, "InitProducerId gave producer id %lld", (long long)pid);
    cr_assert_eq(epoch, 0, "InitProducerId gave epoch %d", epoch);

    static const char *const b0[] = { "i-0", "i-1", "i-2" };
    krw_produce_result r = idem_produce(c, topic, pid, 0, 0, b0, 3);
    cr_assert_eq(r.error, KE_NONE, "the first batch (sequence 0): error %d", r.error);
    cr_assert_eq(r.base_offset, 0);
    cr_assert_eq(latest(c, topic), 3);

    /* The same batch again (a retry): its first answer again, stored once. */
    r = idem_produce(c, topic, pid, 0, 0, b0, 3);
    cr_assert_eq(r.error, KE_NONE, "the retried batch: error %d", r.error);
    cr_assert_eq(r.base_offset, 0, "the retried batch answered at %lld", (long long)r.base_offset);
    cr_assert_eq(latest(c, topic), 3, "the retried batch was stored again");

    /* Sequence 5 where 3 is expected. */
    static const char *const gap[] = { "gap" };
    r = idem_produce(c, topic, pid, 0, 5, gap, 1);
    cr_assert_eq(r.error, KE_OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence 5 where 3 is due: error %d",
                 r.error);
    cr_assert_eq(latest(c, topic), 3);

    /* Sequence 3: stored. */
    static const char *const b1[] = { "i-3", "i-4" };
    r = idem_produce(c, topic, pid, 0, 3, b1, 2);
    cr_assert_eq(r.error, KE_NONE, "sequence 3: error %d", r.error);
    cr_assert_eq(r.base_offset, 3);

    /* A new epoch starts at sequence 0; then the old epoch is fenced. */
    static const char *const b2[] = { "i-5" };
    r = idem_produce(c, topic, pid, 1, 0, b2, 1);
    cr_assert_eq(r.error, KE_NONE, "epoch 1 at sequence 0: error %d", r.error);
    cr_assert_eq(r.base_offset, 5);
    static const char *const stale[] = { "stale" };
    r = idem_produce(c, topic, pid, 0, 5, stale, 1);
    cr_assert_eq(r.error, KE_INVALID_PRODUCER_EPOCH, "epoch 0 after epoch 1: error %d", r.error);
    cr_assert_eq(latest(c, topic), 6);

    /* Another producer id on the same partition keeps its own sequence. */
    int64_t pid2 = -1;
    e = krw_init_producer_id(c, &pid2, &epoch);
    cr_assert_eq(e, KE_NONE);
    cr_assert_neq(pid2, pid, "InitProducerId gave the same producer id twice");
    cr_assert_eq(epoch, 0);
    static const char *const o0[] = { "o-0", "o-1" };
    r = idem_produce(c, topic, pid2, 0, 0, o0, 2);
    cr_assert_eq(r.error, KE_NONE, "the second producer at sequence 0: error %d", r.error);
    cr_assert_eq(r.base_offset, 6);
    /* ... and the first one's sequence (1 in epoch 1) is untouched by it. */
    static const char *const b3[] = { "i-6" };
    r = idem_produce(c, topic, pid, 1, 1, b3, 1);
    cr_assert_eq(r.error, KE_NONE, "the first producer at sequence 1 of epoch 1: error %d",
                 r.error);
    cr_assert_eq(r.base_offset, 8);
    static const char *const o2[] = { "o-2" };
    r = idem_produce(c, topic, pid2, 0, 2, o2, 1);
    cr_assert_eq(r.error, KE_NONE, "the second producer at sequence 2: error %d", r.error);
    cr_assert_eq(r.base_offset, 9);

    static const char *const all[] = { "i-0", "i-1", "i-2", "i-3", "i-4",
                                       "i-5", "o-0", "o-1", "i-6", "o-2" };
    expect_log(c, topic, 0, all, 10);
    krw_close(c);
    sa_finish();
}

/* ---- 2d: Metadata and auto-creation -------------------------------------------------------- */

Test(kafka_raw, metadata_auto_creation)
{
    sa_start();
    krw_conn *c = kopen();
    static const char *const v[] = { "x" };
    cr_assert_eq(krw_produce_values(c, "md-existing", 0, v, 1), 0);
    static krw_metadata md;

    const char *off[] = { "md-auto-off" };
    krw_metadata_req(c, 4, off, 1, false, &md);
    const krw_md_topic *t = krw_md_find(&md, off[0]);
    cr_assert_not_null(t, "Metadata does not answer about %s", off[0]);
    cr_assert_eq(t->error, KE_UNKNOWN_TOPIC_OR_PARTITION,
                 "Metadata v4 without auto-creation of an unknown topic: error %d", t->error);
    cr_assert(!topic_listed(off[0]), "Metadata without auto-creation created the topic");

    const char *on[] = { "md-auto-on" };
    int64_t deadline = sah_now_ms() + REPLY_TIMEOUT_MS;
    do {
        krw_metadata_req(c, 4, on, 1, true, &md);
        t = krw_md_find(&md, on[0]);
        cr_assert_not_null(t, "Metadata does not answer about %s", on[0]);
    } while (t->error == KE_LEADER_NOT_AVAILABLE && sah_now_ms() < deadline);
    cr_assert_eq(t->error, KE_NONE, "Metadata v4 with auto-creation: error %d", t->error);
    cr_assert_eq(t->partition_count, 1, "the created topic has %d partitions", t->partition_count);
    cr_assert_eq(t->partition_error, KE_NONE);
    cr_assert_eq(t->leader, md.node_id, "partition 0's leader is %d, the broker is %d", t->leader,
                 md.node_id);
    cr_assert_eq(md.broker_count, 1);
    cr_assert_str_eq(md.host, "127.0.0.1");
    cr_assert_eq(md.port, g_kport, "Metadata names port %d, the Kafka port is %u", md.port,
                 g_kport);
    cr_assert(topic_listed(on[0]), "auto-creation did not create the topic");
    /* The created topic is usable. */
    cr_assert_eq(krw_produce_values(c, on[0], 0, v, 1), 0);

    /* A null list: every topic, both of them (and not the one never created). */
    krw_metadata_req(c, 4, NULL, 0, false, &md);
    cr_assert_not_null(krw_md_find(&md, "md-existing"), "the null list lacks md-existing");
    cr_assert_not_null(krw_md_find(&md, on[0]), "the null list lacks %s", on[0]);
    cr_assert_null(krw_md_find(&md, off[0]), "the null list names %s", off[0]);
    for (size_t i = 0; i < md.topic_count; i++)
        cr_expect_eq(md.topics[i].error, KE_NONE, "%s listed with error %d", md.topics[i].name,
                     md.topics[i].error);
    /* v1 says the same about them. */
    krw_metadata_req(c, 1, NULL, 0, false, &md);
    cr_assert_not_null(krw_md_find(&md, "md-existing"));
    cr_assert_not_null(krw_md_find(&md, on[0]));
    krw_close(c);
    sa_finish();
}

/* ---- 2e: a consumer group ------------------------------------------------------------------ */

Test(kafka_raw, consumer_group)
{
    sa_start();
    const char *topic = "grp-topic";
    const char *group = "grp";
    krw_conn *c = kopen();
    static const char *const v[] = { "g-0", "g-1", "g-2", "g-3", "g-4",
                                     "g-5", "g-6", "g-7", "g-8", "g-9" };
    cr_assert_eq(krw_produce_values(c, topic, 0, v, 10), 0);

    static krw_join j;
    krw_join_group(c, group, "", &j);
    cr_assert_eq(j.error, KE_MEMBER_ID_REQUIRED, "JoinGroup v4 without a member id: error %d",
                 j.error);
    cr_assert_neq(j.member_id[0], '\0', "MEMBER_ID_REQUIRED without a member id");
    char member[KRW_NAME_BYTES_MAX];
    snprintf(member, sizeof(member), "%s", j.member_id);

    krw_join_group(c, group, member, &j);
    cr_assert_eq(j.error, KE_NONE, "JoinGroup with the given id: error %d", j.error);
    cr_assert_eq(j.generation, 1);
    cr_assert_str_eq(j.member_id, member);
    cr_assert_str_eq(j.leader, member, "the only member is not the leader");
    cr_assert_str_eq(j.protocol, "range");
    cr_assert_eq(j.member_count, 1, "the leader got %zu members", j.member_count);
    cr_assert_str_eq(j.members[0], member);

    const char *const to[] = { member };
    const char *const assign[] = { "assignment: grp-topic 0" };
    char got[64];
    int16_t e = krw_sync_group(c, group, 1, member, to, assign, 1, got, sizeof(got));
    cr_assert_eq(e, KE_NONE, "SyncGroup as the leader: error %d", e);
    cr_assert_str_eq(got, assign[0], "SyncGroup answered another assignment");

    e = krw_heartbeat(c, group, 1, member);
    cr_assert_eq(e, KE_NONE, "Heartbeat: error %d", e);
    e = krw_heartbeat(c, group, 2, member);
    cr_assert_eq(e, KE_ILLEGAL_GENERATION, "Heartbeat of generation 2: error %d", e);
    e = krw_heartbeat(c, group, 1, "nobody");
    cr_assert_eq(e, KE_UNKNOWN_MEMBER_ID, "Heartbeat of an unknown member: error %d", e);

    /* Commits: in the middle of the one batch, forward, back. */
    int64_t off = -1;
    e = krw_offset_fetch(c, group, topic, 0, &off);
    cr_assert_eq(e, KE_NONE, "OffsetFetch before any commit: error %d", e);
    cr_assert_eq(off, -1, "OffsetFetch before any commit: %lld", (long long)off);
    static const int64_t commits[] = { 4, 7, 2, 10, 4 };
    for (size_t i = 0; i < sizeof(commits) / sizeof(commits[0]); i++) {
        e = krw_offset_commit(c, group, 1, member, topic, 0, commits[i]);
        cr_assert_eq(e, KE_NONE, "OffsetCommit of %lld: error %d", (long long)commits[i], e);
        e = krw_offset_fetch(c, group, topic, 0, &off);
        cr_assert_eq(e, KE_NONE, "OffsetFetch after committing %lld: error %d",
                     (long long)commits[i], e);
        cr_assert_eq(off, commits[i], "committed %lld, OffsetFetch says %lld",
                     (long long)commits[i], (long long)off);
    }
    e = krw_offset_commit(c, group, 3, member, topic, 0, 6);
    cr_assert_eq(e, KE_ILLEGAL_GENERATION, "OffsetCommit of generation 3: error %d", e);
    e = krw_offset_fetch(c, group, topic, 0, &off);
    cr_assert_eq(off, 4, "a refused commit moved the offset to %lld", (long long)off);

    e = krw_leave_group(c, group, member);
    cr_assert_eq(e, KE_NONE, "LeaveGroup: error %d", e);
    char state[64];
    size_t members = 99;
    e = krw_describe_group(c, group, state, sizeof(state), &members);
    cr_assert_eq(e, KE_NONE, "DescribeGroups: error %d", e);
    cr_assert_str_eq(state, "Empty");
    cr_assert_eq(members, 0);
    e = krw_heartbeat(c, group, 1, member);
    cr_assert_eq(e, KE_UNKNOWN_MEMBER_ID, "Heartbeat after leaving: error %d", e);
    krw_close(c);

    /* Committed offsets outlive the broker. */
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    g_kport = sah_kafka_port(&g_sa);
    cr_assert_neq(g_kport, 0);
    c = kopen();
    e = krw_offset_fetch(c, group, topic, 0, &off);
    cr_assert_eq(e, KE_NONE, "OffsetFetch after a restart: error %d", e);
    cr_assert_eq(off, 4, "after a restart OffsetFetch says %lld, 4 was committed", (long long)off);
    expect_log(c, topic, 0, v, 10);
    krw_close(c);
    sa_finish();
}

/* ---- acks 0 ---------------------------------------------------------------------------------- */

/* Produce with acks 0 gets no answer: the next request's answer is the next to come, with its own
 * correlation id. A refused batch with acks 0 closes the connection, as Kafka's broker does: it
 * is the only way such a producer learns of the error (and refreshes its metadata). */
Test(kafka_raw, acks_zero)
{
    sa_start();
    healthy_open();
    const char *topic = "acks0";
    krw_conn *c = kopen();
    static const char *const v[] = { "z-0", "z-1" };
    kw_writer b;
    kw_writer_init(&b, 0);
    krw_write_batch(&b, &KRW_BATCH_PLAIN, v, 2);
    kw_writer w;
    krw_begin(c, &w, KW_API_PRODUCE, 7);
    krw_produce_body(&w, NULL, 0, 30000, topic, 0, b.buf, b.len);
    krw_send(c, &w);
    /* Stored in the background: ListOffsets (answers with their own correlation ids, checked by
     * krw_expect) until it is there. */
    int64_t off = -1;
    int64_t deadline = sah_now_ms() + REPLY_TIMEOUT_MS;
    int16_t e;
    do {
        e = krw_list_offsets(c, topic, 0, -1, &off);
        cr_assert(e == KE_NONE || e == KE_UNKNOWN_TOPIC_OR_PARTITION,
                  "ListOffsets after an acks-0 produce: error %d", e);
    } while ((e != KE_NONE || off < 2) && sah_now_ms() < deadline);
    cr_assert_eq(off, 2, "the acks-0 batch was not stored (latest offset %lld)", (long long)off);
    expect_log(c, topic, 0, v, 2);

    /* The same batch with a broken CRC and acks 0: the connection is closed, nothing stored. */
    b.buf[BATCH_CRC_AT] ^= 0x01;
    krw_begin(c, &w, KW_API_PRODUCE, 7);
    krw_produce_body(&w, NULL, 0, 30000, topic, 0, b.buf, b.len);
    krw_send(c, &w);
    kw_writer_free(&b);
    krw_expect_closed(c, CLOSE_TIMEOUT_MS, "a corrupt batch produced with acks 0");
    c = kopen();
    expect_log(c, topic, 0, v, 2);
    krw_close(c);
    healthy_check();
    sa_finish();
}

/* ---- 2e': two members, rebalances ------------------------------------------------------------ */

static void expect_state(krw_conn *c, const char *group, const char *want, size_t members)
{
    char state[64];
    size_t n = 0;
    int16_t e = krw_describe_group(c, group, state, sizeof(state), &n);
    cr_assert_eq(e, KE_NONE, "DescribeGroups: error %d", e);
    cr_assert_str_eq(state, want, "the group is %s, expected %s", state, want);
    cr_assert_eq(n, members, "the group has %zu members, expected %zu", n, members);
}

/* A new member makes the group rebalance: the old member learns it from its heartbeat
 * (REBALANCE_IN_PROGRESS), joins again, and the join completes for both in generation 2 with the
 * old leader leading; the follower's SyncGroup waits for the leader's assignments. A member
 * leaving makes it rebalance again. */
Test(kafka_raw, group_rebalance)
{
    sa_start();
    const char *group = "pair";
    krw_conn *a = kopen(), *b = kopen();
    static krw_join ja, jb;

    krw_join_group(a, group, "", &ja);
    cr_assert_eq(ja.error, KE_MEMBER_ID_REQUIRED);
    char ida[KRW_NAME_BYTES_MAX];
    snprintf(ida, sizeof(ida), "%s", ja.member_id);
    krw_join_group(a, group, ida, &ja);
    cr_assert_eq(ja.error, KE_NONE);
    cr_assert_eq(ja.generation, 1);
    expect_state(b, group, "CompletingRebalance", 1);
    const char *const one_member[] = { ida };
    const char *const one_assign[] = { "a: all" };
    char got[64];
    cr_assert_eq(krw_sync_group(a, group, 1, ida, one_member, one_assign, 1, got, sizeof(got)),
                 KE_NONE);
    cr_assert_str_eq(got, "a: all");
    expect_state(b, group, "Stable", 1);

    krw_join_group(b, group, "", &jb);
    cr_assert_eq(jb.error, KE_MEMBER_ID_REQUIRED);
    char idb[KRW_NAME_BYTES_MAX];
    snprintf(idb, sizeof(idb), "%s", jb.member_id);
    cr_assert_str_neq(idb, ida, "two members were given the same id");
    int32_t jbc = krw_join_group_send(b, group, idb);
    /* b's join waits for a: a's heartbeat says so. */
    int16_t e = krw_heartbeat(a, group, 1, ida);
    cr_assert_eq(e, KE_REBALANCE_IN_PROGRESS, "the old member's heartbeat: error %d", e);
    expect_state(a, group, "PreparingRebalance", 2);
    krw_join_group(a, group, ida, &ja);
    cr_assert_eq(ja.error, KE_NONE, "the old member's second join: error %d", ja.error);
    krw_join_group_read(b, jbc, &jb);
    cr_assert_eq(jb.error, KE_NONE, "the new member's join: error %d", jb.error);
    cr_assert_eq(ja.generation, 2);
    cr_assert_eq(jb.generation, 2);
    cr_assert_str_eq(ja.leader, ida, "the leader changed to %s", ja.leader);
    cr_assert_str_eq(jb.leader, ida);
    cr_assert_eq(ja.member_count, 2, "the leader got %zu members", ja.member_count);
    cr_assert_eq(jb.member_count, 0, "a follower got %zu members", jb.member_count);
    bool a_listed = strcmp(ja.members[0], ida) == 0 || strcmp(ja.members[1], ida) == 0;
    bool b_listed = strcmp(ja.members[0], idb) == 0 || strcmp(ja.members[1], idb) == 0;
    cr_assert(a_listed && b_listed, "the leader's member list lacks a member");

    /* The follower's sync first: it waits for the leader's. */
    int32_t sbc = krw_sync_group_send(b, group, 2, idb, NULL, NULL, 0);
    const char *const two_members[] = { ida, idb };
    const char *const two_assign[] = { "a: half", "b: half" };
    e = krw_sync_group(a, group, 2, ida, two_members, two_assign, 2, got, sizeof(got));
    cr_assert_eq(e, KE_NONE, "the leader's SyncGroup: error %d", e);
    cr_assert_str_eq(got, "a: half");
    e = krw_sync_group_read(b, sbc, got, sizeof(got));
    cr_assert_eq(e, KE_NONE, "the follower's SyncGroup: error %d", e);
    cr_assert_str_eq(got, "b: half");
    expect_state(a, group, "Stable", 2);
    cr_assert_eq(krw_heartbeat(a, group, 2, ida), KE_NONE);
    cr_assert_eq(krw_heartbeat(b, group, 2, idb), KE_NONE);
    cr_assert_eq(krw_heartbeat(b, group, 1, idb), KE_ILLEGAL_GENERATION);

    /* b leaves: a rebalances alone into generation 3. */
    cr_assert_eq(krw_leave_group(b, group, idb), KE_NONE);
    e = krw_heartbeat(a, group, 2, ida);
    cr_assert_eq(e, KE_REBALANCE_IN_PROGRESS, "a heartbeat after the other member left: error %d",
                 e);
    krw_join_group(a, group, ida, &ja);
    cr_assert_eq(ja.error, KE_NONE);
    cr_assert_eq(ja.generation, 3);
    cr_assert_eq(ja.member_count, 1);
    cr_assert_eq(krw_sync_group(a, group, 3, ida, one_member, one_assign, 1, got, sizeof(got)),
                 KE_NONE);
    expect_state(b, group, "Stable", 1);
    krw_close(a);
    krw_close(b);
    sa_finish();
}

/* ---- every served version ------------------------------------------------------------------ */

/* Each version of Produce, Fetch, ListOffsets and Metadata the broker advertises, with the
 * layout Kafka's message specifications give it; and a fetch whose byte limits are smaller than
 * the first batch still returns that batch whole (KIP-74: a consumer must make progress). */
Test(kafka_raw, every_served_version)
{
    sa_start();
    const char *topic = "versions";
    krw_conn *c = kopen();
    char values[5][16];
    const char *ptrs[5];
    for (int16_t v = 3; v <= 7; v++) {
        int i = v - 3;
        snprintf(values[i], sizeof(values[i]), "v%d", v);
        ptrs[i] = values[i];
        kw_writer b;
        kw_writer_init(&b, 0);
        krw_write_batch(&b, &KRW_BATCH_PLAIN, &ptrs[i], 1);
        kw_writer w;
        int32_t corr = krw_begin(c, &w, KW_API_PRODUCE, v);
        krw_produce_body(&w, NULL, 1, 30000, topic, 0, b.buf, b.len);
        krw_send(c, &w);
        kw_writer_free(&b);
        krw_produce_result r = krw_parse_produce(krw_expect(c, corr, "Produce"), v, topic, 0);
        cr_assert_eq(r.error, KE_NONE, "Produce v%d: error %d", v, r.error);
        cr_assert_eq(r.base_offset, i, "Produce v%d stored at %lld", v, (long long)r.base_offset);
    }
    static krw_fetch_result f;
    for (int16_t v = 4; v <= 11; v++) {
        kw_writer w;
        int32_t corr = krw_begin(c, &w, KW_API_FETCH, v);
        krw_fetch_body(&w, v, 0, 1, topic, 0, 1, 1 << 20);
        krw_send(c, &w);
        krw_parse_fetch(krw_expect(c, corr, "Fetch"), v, topic, 0, &f);
        cr_assert_eq(f.error, KE_NONE, "Fetch v%d: error %d", v, f.error);
        cr_assert_eq(f.high_watermark, 5, "Fetch v%d: high watermark %lld", v,
                     (long long)f.high_watermark);
        /* Offsets below the one asked for may come (an entry is sent whole): skip them. */
        size_t k = 0;
        while (k < f.record_count && f.records[k].offset < 1)
            k++;
        cr_assert_eq(f.record_count - k, 4, "Fetch v%d from 1: %zu records", v, f.record_count - k);
        for (int j = 0; j < 4; j++) {
            cr_assert_eq(f.records[k + j].offset, 1 + j);
            cr_assert(view_is(f.records[k + j].value, values[1 + j]), "Fetch v%d: a wrong value",
                      v);
        }
        /* The log start offset (v5+) is fetch_log_start_offset's. */
    }
    for (int16_t v = 0; v <= 2; v++) {
        for (int which = 0; which < 2; which++) { /* latest, earliest */
            int64_t ts = which == 0 ? -1 : -2;
            kw_writer w;
            int32_t corr = krw_begin(c, &w, KW_API_LIST_OFFSETS, v);
            kw_write_i32(&w, -1);
            if (v >= 2)
                kw_write_i8(&w, 0);
            kw_write_i32(&w, 1);
            kw_write_string(&w, topic);
            kw_write_i32(&w, 1);
            kw_write_i32(&w, 0);
            kw_write_i64(&w, ts);
            if (v == 0)
                kw_write_i32(&w, 1); /* max_num_offsets */
            krw_send(c, &w);
            kw_reader *r = krw_expect(c, corr, "ListOffsets");
            if (v >= 2)
                kw_read_i32(r); /* throttle_time_ms */
            cr_assert_eq(kw_read_i32(r), 1);
            kw_str name = kw_read_string(r);
            cr_assert(view_is(name, topic));
            cr_assert_eq(kw_read_i32(r), 1);
            cr_assert_eq(kw_read_i32(r), 0);
            int16_t e = kw_read_i16(r);
            cr_assert_eq(e, KE_NONE, "ListOffsets v%d: error %d", v, e);
            int64_t off;
            if (v == 0) {
                cr_assert_eq(kw_read_i32(r), 1, "ListOffsets v0: not one offset");
                off = kw_read_i64(r);
            } else {
                kw_read_i64(r); /* timestamp */
                off = kw_read_i64(r);
            }
            krw_done(r, "ListOffsets");
            cr_assert_eq(off, which == 0 ? 5 : 0, "ListOffsets v%d of %lld: %lld", v, (long long)ts,
                         (long long)off);
        }
    }
    static krw_metadata md;
    for (int16_t v = 0; v <= 4; v++) {
        const char *const names[] = { topic };
        krw_metadata_req(c, v, names, 1, false, &md);
        const krw_md_topic *t = krw_md_find(&md, topic);
        cr_assert_not_null(t, "Metadata v%d does not name %s", v, topic);
        cr_assert_eq(t->error, KE_NONE, "Metadata v%d: error %d", v, t->error);
        cr_assert_eq(t->partition_count, 1);
        cr_assert_eq(md.broker_count, 1);
        cr_assert_eq(md.port, g_kport);
        if (v >= 1)
            cr_assert_eq(md.controller_id, md.node_id, "Metadata v%d: controller %d, node %d", v,
                         md.controller_id, md.node_id);
    }

    /* Byte limits below the size of the first batch: it comes whole all the same. */
    static const char *const big[] = {
        "a record of some length, longer than the partition's byte limit of this fetch",
    };
    cr_assert_eq(krw_produce_values(c, topic, 0, big, 1), 5);
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_FETCH, 11);
    krw_fetch_body(&w, 11, 0, 1, topic, 0, 5, 10);
    krw_send(c, &w);
    krw_parse_fetch(krw_expect(c, corr, "Fetch"), 11, topic, 0, &f);
    cr_assert_eq(f.error, KE_NONE);
    size_t k = 0;
    while (k < f.record_count && f.records[k].offset < 5)
        k++;
    cr_assert_eq(f.record_count - k, 1,
                 "a fetch with 10-byte limits of a larger first batch got %zu records",
                 f.record_count - k);
    cr_assert(view_is(f.records[k].value, big[0]));
    krw_close(c);
    sa_finish();
}

/* Fetch v5+ answers the partition's log start offset: the first offset still stored (what
 * ListOffsets earliest says), not -1, which Kafka answers only with an error. */
Test(kafka_raw, fetch_log_start_offset)
{
    sa_start();
    const char *topic = "log-start";
    krw_conn *c = kopen();
    static const char *const v[] = { "s-0", "s-1" };
    cr_assert_eq(krw_produce_values(c, topic, 0, v, 2), 0);
    int64_t earliest = -1;
    cr_assert_eq(krw_list_offsets(c, topic, 0, -2, &earliest), KE_NONE);
    cr_assert_eq(earliest, 0);
    static krw_fetch_result f;
    krw_fetch(c, topic, 0, 0, 0, &f);
    cr_assert_eq(f.error, KE_NONE);
    cr_assert_eq(f.log_start_offset, earliest,
                 "Fetch v11 answers log_start_offset %lld, ListOffsets earliest %lld",
                 (long long)f.log_start_offset, (long long)earliest);
    krw_close(c);
    sa_finish();
}

/* ---- CreateTopics and DeleteTopics ----------------------------------------------------------- */

/* CreateTopics v3 of one topic with partitions (replication factor 1); validate_only as given.
 * Returns the topic's error code. */
static int16_t create_topic(krw_conn *c, const char *name, int32_t partitions, bool validate_only)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_CREATE_TOPICS, 3);
    kw_write_i32(&w, 1);
    kw_write_string(&w, name);
    kw_write_i32(&w, partitions);
    kw_write_i16(&w, 1);
    kw_write_i32(&w, 0); /* assignments */
    kw_write_i32(&w, 0); /* configs */
    kw_write_i32(&w, 30000);
    kw_write_i8(&w, validate_only ? 1 : 0);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "CreateTopics");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "a CreateTopics answer about other than one topic");
    cr_assert(view_is(kw_read_string(r), name), "a CreateTopics answer about another topic");
    int16_t e = kw_read_i16(r);
    kw_read_string(r); /* error_message */
    krw_done(r, "CreateTopics");
    return e;
}

/* DeleteTopics v3 of one topic: its error code. */
static int16_t delete_topic(krw_conn *c, const char *name)
{
    kw_writer w;
    int32_t corr = krw_begin(c, &w, KW_API_DELETE_TOPICS, 3);
    kw_write_i32(&w, 1);
    kw_write_string(&w, name);
    kw_write_i32(&w, 30000);
    krw_send(c, &w);
    kw_reader *r = krw_expect(c, corr, "DeleteTopics");
    kw_read_i32(r); /* throttle_time_ms */
    cr_assert_eq(kw_read_i32(r), 1, "a DeleteTopics answer about other than one topic");
    cr_assert(view_is(kw_read_string(r), name), "a DeleteTopics answer about another topic");
    int16_t e = kw_read_i16(r);
    krw_done(r, "DeleteTopics");
    return e;
}

Test(kafka_raw, create_and_delete_topics)
{
    sa_start();
    krw_conn *c = kopen();
    const char *topic = "ct-three";
    int16_t e = create_topic(c, topic, 3, false);
    cr_assert_eq(e, KE_NONE, "CreateTopics of 3 partitions: error %d", e);
    static krw_metadata md;
    const char *const names[] = { topic };
    krw_metadata_req(c, 4, names, 1, false, &md);
    const krw_md_topic *t = krw_md_find(&md, topic);
    cr_assert_not_null(t);
    cr_assert_eq(t->error, KE_NONE);
    cr_assert_eq(t->partition_count, 3, "the created topic has %d partitions", t->partition_count);

    /* Partition 2 takes records; partition 3 does not exist. */
    static const char *const v[] = { "p2-0", "p2-1" };
    cr_assert_eq(krw_produce_values(c, topic, 2, v, 2), 0);
    static krw_fetch_result f;
    krw_fetch(c, topic, 2, 0, FETCH_WAIT_MS, &f);
    cr_assert_eq(f.error, KE_NONE);
    cr_assert_eq(f.record_count, 2);
    cr_assert(view_is(f.records[1].value, "p2-1"));
    int64_t off = -1;
    cr_assert_eq(krw_list_offsets(c, topic, 0, -1, &off), KE_NONE);
    cr_assert_eq(off, 0, "partition 0 holds %lld records, none were produced to it",
                 (long long)off);
    kw_writer b;
    kw_writer_init(&b, 0);
    krw_write_batch(&b, &KRW_BATCH_PLAIN, v, 1);
    krw_produce_result pr = krw_produce(c, topic, 3, 1, b.buf, b.len);
    kw_writer_free(&b);
    cr_assert_eq(pr.error, KE_UNKNOWN_TOPIC_OR_PARTITION, "produce to partition 3 of 3: error %d",
                 pr.error);
    cr_assert(!topic_listed("ct-three-partition-3"), "produce created partition 3");

    e = create_topic(c, topic, 3, false);
    cr_assert_eq(e, KE_TOPIC_ALREADY_EXISTS, "CreateTopics of an existing topic: error %d", e);
    e = create_topic(c, "ct-zero", 0, false);
    cr_assert_eq(e, KE_INVALID_PARTITIONS, "CreateTopics of 0 partitions: error %d", e);
    cr_assert(!topic_listed("ct-zero"));
    e = create_topic(c, "ct/bad", 1, false);
    cr_assert_eq(e, KE_INVALID_TOPIC_EXCEPTION, "CreateTopics of an illegal name: error %d", e);
    e = create_topic(c, "ct-validate", 2, true);
    cr_assert_eq(e, KE_NONE, "CreateTopics validate_only: error %d", e);
    const char *const vnames[] = { "ct-validate" };
    krw_metadata_req(c, 4, vnames, 1, false, &md);
    t = krw_md_find(&md, "ct-validate");
    cr_assert_not_null(t);
    cr_assert_eq(t->error, KE_UNKNOWN_TOPIC_OR_PARTITION, "validate_only created the topic");
    e = create_topic(c, "ct-one", 1, false);
    cr_assert_eq(e, KE_NONE, "CreateTopics of 1 partition: error %d", e);
    cr_assert(topic_listed("ct-one"), "a one-partition topic is a plain topic");

    /* Deleted: unknown afterwards. */
    e = delete_topic(c, topic);
    cr_assert_eq(e, KE_NONE, "DeleteTopics: error %d", e);
    krw_metadata_req(c, 4, names, 1, false, &md);
    t = krw_md_find(&md, topic);
    cr_assert_not_null(t);
    cr_assert_eq(t->error, KE_UNKNOWN_TOPIC_OR_PARTITION, "Metadata of a deleted topic: error %d",
                 t->error);
    cr_assert_eq(krw_list_offsets(c, topic, 2, -1, &off), KE_UNKNOWN_TOPIC_OR_PARTITION);
    e = delete_topic(c, "ct-never");
    cr_assert_eq(e, KE_UNKNOWN_TOPIC_OR_PARTITION, "DeleteTopics of an unknown topic: error %d", e);
    e = delete_topic(c, "ct-one");
    cr_assert_eq(e, KE_NONE, "DeleteTopics of a plain topic: error %d", e);
    cr_assert(!topic_listed("ct-one"));
    krw_close(c);
    sa_finish();
}
