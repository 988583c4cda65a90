/*
 * Connection memory a stranger could pin, against the real broker: every test starts `magnetar
 * standalone` (binary from MG_BIN) on free loopback ports, talks to it over raw sockets speaking
 * the Pulsar protocol by hand (src/pulsar/wire.h encodes), reads its resident memory from
 * /proc/<pid>/status and its counters from /metrics. Every wait is bounded by a deadline.
 *
 * broker_memory.frames_before_connect_are_refused: 200 connections that never sent CONNECT each
 * announce a 5 MiB frame and send 1 MiB of it; each is closed at once (at the header), the
 * standalone's resident memory stays within RSS_GROWTH_MAX_KB of where it started (it grew by
 * 1 GiB before the bound), magnetar_broker_refused_total{reason="frame_before_connect"} counts
 * all 200, and a CONNECT afterwards is answered as usual.
 *
 * broker_memory.receive_budget_pauses_large_frames: with --connection-memory-mb 32 (16 MiB for
 * receive buffers), 40 producers each send all but the last 64 KiB of a 3 MiB SEND: only as many
 * get a receive buffer as fit the budget, the rest stop being read (pauses counted), the bytes
 * in use never pass the budget, resident memory stays bounded (120 MiB without the bound), a
 * producer sending small messages is served meanwhile; then every frame is finished and every
 * SEND is stored (waiting connections got buffers in turn), and every buffer is given back.
 *
 * broker_memory.consumers_that_never_read_are_bounded: with --connection-memory-mb 32 (16 MiB
 * for output queues), 20 consumers with a tiny receive buffer subscribe to a 40 MiB backlog,
 * grant a million permits and never read: the bytes queued to consumers never pass the budget
 * plus the documented slack (sampled all along, and the peak gauge), dispatch pauses (counted),
 * resident memory stays bounded (320 MiB without the bound), a consumer that reads, on another
 * topic, gets all its messages meanwhile, the broker closes consumers that held the budget
 * without reading for BR_CONN_OUT_STALL_MS (refused_total{reason="not_reading"}), and once the
 * rest are closed too every queued byte is given back.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "broker/limits.h"
#include "pulsar/wire.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/limits.h"
#include "support/pulsar_raw.h"
#include "support/sa_harness.h"

#define T(x) MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x

#define REPLY_TIMEOUT_MS  10000 /* an answer (PRODUCER may create a ledger first) */
#define CLOSE_TIMEOUT_MS  10000 /* every refused connection closed */
#define SETTLE_MS         20000 /* the broker reached the state a test waits for */
#define POLL_MS           100   /* metrics sampling period */
#define METRICS_BYTES_MAX (4u << 20)
/* Resident memory the standalone may gain in a test: far below what the cases cost without the
 * bounds (1 GiB, 150 MiB, 320 MiB), far above the noise of allocator and caches. */
#define RSS_GROWTH_MAX_KB (100 * 1024)

/* Case 1. */
#define STRANGERS          200
#define ANNOUNCED_BYTES    (5u * 1024 * 1024)
#define STRANGER_SENDS     (1u * 1024 * 1024) /* of the announced frame, what the socket takes */
/* Cases 2 and 3: --connection-memory-mb 32, half of it each. */
#define BUDGET_MB          32
#define HALF_BYTES         (BUDGET_MB / 2 * 1024 * 1024)
#define PARTIAL_CONNS      40
#define PARTIAL_MSG_BYTES  (3u * 1024 * 1024)
#define PARTIAL_HELD_BACK  (64u * 1024) /* of each frame, sent only once all were paused */
#define PARTIAL_RECEIPT_MS 60000        /* every frame through the budget in turn, stored */
#define STUCK_CONSUMERS    20
#define BACKLOG_MSGS       320
#define MSG_BYTES          (128u * 1024) /* 40 MiB of backlog */
#define SEND_WINDOW        32
#define NORMAL_MSGS        50
/* A message to the reading consumer: at worst once the broker closed the consumers that do not
 * read (BR_CONN_OUT_STALL_MS and its check period). */
#define NORMAL_MS          (BR_CONN_OUT_STALL_MS + 20000)
#define STUCK_PERMITS      1000000
/* What may be queued past the output half (server.c, CONNECTION MEMORY 2): one read of the
 * consumer that reads (BR_CONN_OUT_BYTES_MIN) and an entry past each check, with room for the
 * MESSAGE heads and replies. */
#define OUT_SLACK_BYTES    (BR_CONN_OUT_BYTES_MIN + 4 * (MSG_BYTES + 1024))

static sah_standalone g_sa;
static bool g_passed;
/* The client of every connection (its port set by sa_start); PINGs answered on every read. */
static prw_client g_cl = { .timeout_ms = REPLY_TIMEOUT_MS, .auto_pong = true };

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

TestSuite(broker_memory, .fini = suite_fini, .timeout = 300);

static void sa_start(const char *const *extra)
{
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_cl.port = g_sa.broker_port;
}

static void sa_stop_clean(void)
{
    int rc = sah_stop(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "the standalone did not exit cleanly: %s", mg_strerror(rc));
}

/* ---- /proc and /metrics --------------------------------------------------------------------- */

/* A "Name:   value kB" line of /proc/<pid>/status, in KiB. */
static long status_kb(const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)g_sa.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    cr_assert_gt(kb, 0, "no %s in %s", field, path);
    return kb;
}

static char *metrics_get(void)
{
    char *text = NULL;
    int code = sah_metrics_get(&g_sa, METRICS_BYTES_MAX + 1, &text);
    cr_assert_eq(code, 200, "GET /metrics: %d (%s)", code, code < 0 ? mg_strerror(code) : "");
    return text;
}

static double metric_now(const char *name, const char *label)
{
    char *text = metrics_get();
    double v = sah_metric(text, name, label);
    free(text);
    cr_assert_geq(v, 0, "%s{%s} not on /metrics", name, label);
    return v;
}

#define MEM_BYTES "magnetar_broker_connection_memory_bytes"
#define MEM_PEAK  "magnetar_broker_connection_memory_bytes_peak"
#define MEM_LIMIT "magnetar_broker_connection_memory_limit_bytes"
#define MEM_PAUSE "magnetar_broker_connection_memory_pauses_total"
#define OUTPUT    "kind=\"output\""
#define RECEIVE   "kind=\"receive\""

/* ---- a raw client ------------------------------------------------------------------------- */

/* The next frame other than PING (answered) within timeout_ms; the test fails without one. */
static const Magnetar__Pulsar__BaseCommand *rc_next(prw_conn *c, int timeout_ms)
{
    prw_result r = prw_next(c, timeout_ms);
    cr_assert_eq(r, PRW_FRAME, "no frame within %d ms (%s)", timeout_ms,
                 r == PRW_EOF ? "connection closed" : "timed out");
    return c->f.cmd;
}

static void rc_handshake(prw_conn *c)
{
    mg_buf *b = prw_encode_connect("magnetar-memory-test", 19);
    prw_write_buf(c, b);
    mg_buf_unref(b);
    prw_expect(c, T(CONNECTED));
}

static void rc_producer(prw_conn *c, const char *topic, uint64_t producer_id)
{
    prw_send_producer(c, topic, producer_id, producer_id);
    prw_expect(c, T(PRODUCER_SUCCESS));
}

static void rc_send(prw_conn *c, uint64_t producer_id, uint64_t seq, const void *data, size_t len)
{
    mg_buf *b = prw_encode_send(producer_id, seq, "memory-test-producer", data, len);
    prw_write_buf(c, b);
    mg_buf_unref(b);
}

/* Publishes count messages of len bytes (a window of SEND_WINDOW in flight), every receipt
 * awaited. */
static void publish(prw_conn *c, uint64_t producer_id, uint32_t count, size_t len)
{
    uint8_t *data = malloc(len);
    cr_assert_not_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 31 + producer_id);
    uint32_t sent = 0, acked = 0;
    while (acked < count) {
        while (sent < count && sent - acked < SEND_WINDOW)
            rc_send(c, producer_id, sent++, data, len);
        const Magnetar__Pulsar__BaseCommand *cmd = prw_expect(c, T(SEND_RECEIPT));
        cr_assert_eq(cmd->send_receipt->producer_id, producer_id);
        cr_assert_eq(cmd->send_receipt->sequence_id, acked, "receipt %llu, expected %u",
                     (unsigned long long)cmd->send_receipt->sequence_id, acked);
        acked++;
    }
    free(data);
}

static void rc_subscribe(prw_conn *c, const char *topic, const char *sub, uint64_t consumer_id,
                         uint32_t permits)
{
    prw_subscribe(c, topic, sub, consumer_id, 1000 + consumer_id, true, permits);
}

/* ---- the tests --------------------------------------------------------------------------------
 */

Test(broker_memory, frames_before_connect_are_refused)
{
    sa_start(NULL);
    long rss0 = status_kb("VmRSS");
    uint8_t *data = calloc(1, STRANGER_SENDS);
    cr_assert_not_null(data);
    prw_conn c[STRANGERS];
    int64_t start = sah_now_ms();
    for (int i = 0; i < STRANGERS; i++) {
        c[i] = prw_open(&g_cl, 0);
        uint8_t head[8] = { (uint8_t)(ANNOUNCED_BYTES >> 24),
                            (uint8_t)(ANNOUNCED_BYTES >> 16),
                            (uint8_t)(ANNOUNCED_BYTES >> 8),
                            (uint8_t)ANNOUNCED_BYTES,
                            0,
                            0,
                            0,
                            16 };
        cr_assert_eq(prw_write_some(&c[i], head, sizeof(head)), sizeof(head));
        prw_write_some(&c[i], data, STRANGER_SENDS);
    }
    free(data);
    /* Each must be closed (EOF or reset) without a byte sent to it. */
    int64_t deadline = sah_now_ms() + CLOSE_TIMEOUT_MS;
    for (int i = 0; i < STRANGERS; i++) {
        uint8_t b;
        int r = prw_read_exact(&c[i], &b, 1, deadline);
        cr_assert_eq(r, 0, "stranger %d: %s", i,
                     r < 0 ? "not closed in time" : "the broker sent it something");
        prw_close(&c[i]);
    }
    long rss = status_kb("VmRSS"), hwm = status_kb("VmHWM");
    fprintf(stderr, "strangers: %d refused in %lld ms; VmRSS %ld -> %ld kB, VmHWM %ld kB\n",
            STRANGERS, (long long)(sah_now_ms() - start), rss0, rss, hwm);
    cr_assert_lt(hwm, rss0 + RSS_GROWTH_MAX_KB, "VmHWM %ld kB, started at %ld kB", hwm, rss0);
    double refused = metric_now("magnetar_broker_refused_total", "reason=\"frame_before_connect\"");
    cr_assert_eq(refused, STRANGERS, "refused_total{frame_before_connect} = %g", refused);
    /* The broker serves as before. */
    prw_conn ok = prw_open(&g_cl, 0);
    rc_handshake(&ok);
    prw_close(&ok);
    sa_stop_clean();
    g_passed = true;
}

/* A whole SEND frame of a len-byte message. */
static mg_buf *send_frame(uint64_t producer_id, uint64_t seq, size_t len)
{
    uint8_t *data = calloc(1, len);
    cr_assert_not_null(data);
    mg_buf *b = prw_encode_send(producer_id, seq, "memory-test-producer", data, len);
    free(data);
    return b;
}

Test(broker_memory, receive_budget_pauses_large_frames)
{
    const char *const extra[] = { "--connection-memory-mb", "32", NULL };
    sa_start(extra);
    cr_assert_eq(metric_now(MEM_LIMIT, RECEIVE), HALF_BYTES);
    long rss0 = status_kb("VmRSS");
    mg_buf *frame = send_frame(1, 0, PARTIAL_MSG_BYTES);
    size_t frame_len = mg_buf_len(frame);
    size_t first = frame_len - PARTIAL_HELD_BACK;
    prw_conn c[PARTIAL_CONNS];
    for (int i = 0; i < PARTIAL_CONNS; i++) {
        c[i] = prw_open(&g_cl, 0);
        rc_handshake(&c[i]);
        rc_producer(&c[i], "persistent://public/default/memory-large", 1);
        /* The frame but its last bytes: the kernel takes what the broker does not read. */
        cr_assert_eq(prw_write_some(&c[i], mg_buf_data(frame), first), first,
                     "connection %d: the socket did not take %zu bytes", i, first);
    }
    /* As many as fit have a buffer; every other one waits: one pause each. */
    size_t per_conn = frame_len + 64 * 1024;
    size_t fit = HALF_BYTES / per_conn;
    double pauses = 0, used = 0;
    int64_t deadline = sah_now_ms() + SETTLE_MS;
    while (sah_now_ms() < deadline) {
        char *text = metrics_get();
        pauses = sah_metric(text, MEM_PAUSE, "kind=\"receive\"");
        used = sah_metric(text, MEM_BYTES, RECEIVE);
        free(text);
        cr_assert_leq(used, HALF_BYTES, "receive bytes %g past the budget", used);
        if (pauses >= (double)(PARTIAL_CONNS - fit))
            break;
        usleep(POLL_MS * 1000);
    }
    cr_assert_geq(pauses, (double)(PARTIAL_CONNS - fit), "receive pauses %g", pauses);
    cr_assert_geq(used, (double)(fit * per_conn), "receive bytes %g", used);
    /* Small frames are not held up. */
    prw_conn p = prw_open(&g_cl, 0);
    rc_handshake(&p);
    rc_producer(&p, "persistent://public/default/memory-small", 1);
    publish(&p, 1, 10, 1000);
    long rss = status_kb("VmRSS"), hwm = status_kb("VmHWM");
    fprintf(stderr,
            "partial frames: %d connections, %zu fit, %g pauses; VmRSS %ld -> %ld kB, "
            "VmHWM %ld kB\n",
            PARTIAL_CONNS, fit, pauses, rss0, rss, hwm);
    cr_assert_lt(rss, rss0 + RSS_GROWTH_MAX_KB, "VmRSS %ld kB, started at %ld kB", rss, rss0);
    /* Every frame completes: waiting connections get buffers in turn as others finish. */
    for (int i = 0; i < PARTIAL_CONNS; i++)
        prw_write(&c[i], mg_buf_data(frame) + first, frame_len - first);
    for (int i = 0; i < PARTIAL_CONNS; i++) {
        const Magnetar__Pulsar__BaseCommand *cmd = rc_next(&c[i], PARTIAL_RECEIPT_MS);
        cr_assert_eq(cmd->type, T(SEND_RECEIPT), "connection %d: %s", i,
                     pw_command_type_name(cmd->type));
    }
    mg_buf_unref(frame);
    deadline = sah_now_ms() + SETTLE_MS;
    while (sah_now_ms() < deadline && metric_now(MEM_BYTES, RECEIVE) > 0)
        usleep(POLL_MS * 1000);
    cr_assert_eq(metric_now(MEM_BYTES, RECEIVE), 0, "receive buffers not given back");
    cr_assert_leq(metric_now(MEM_PEAK, RECEIVE), HALF_BYTES);
    for (int i = 0; i < PARTIAL_CONNS; i++)
        prw_close(&c[i]);
    prw_close(&p);
    sa_stop_clean();
    g_passed = true;
}

Test(broker_memory, consumers_that_never_read_are_bounded)
{
    const char *const extra[] = {
        "--connection-memory-mb", "32", "--tail-cache-mb", "16", "--prefetch-mb", "16", NULL
    };
    sa_start(extra);
    cr_assert_eq(metric_now(MEM_LIMIT, OUTPUT), HALF_BYTES);
    static const char stuck_topic[] = "persistent://public/default/memory-backlog";
    static const char normal_topic[] = "persistent://public/default/memory-normal";
    prw_conn p = prw_open(&g_cl, 0);
    rc_handshake(&p);
    rc_producer(&p, stuck_topic, 1);
    rc_producer(&p, normal_topic, 2);
    publish(&p, 1, BACKLOG_MSGS, MSG_BYTES);
    publish(&p, 2, NORMAL_MSGS, 1000);
    long rss0 = status_kb("VmRSS");

    prw_conn k[STUCK_CONSUMERS];
    for (int i = 0; i < STUCK_CONSUMERS; i++) {
        k[i] = prw_open(&g_cl, 4096);
        rc_handshake(&k[i]);
        char sub[32];
        snprintf(sub, sizeof(sub), "stuck-%d", i);
        rc_subscribe(&k[i], stuck_topic, sub, 1, STUCK_PERMITS);
    }
    /* The stuck consumers fill the output budget: dispatch pauses. */
    double out = 0, dispatch_pauses = 0;
    int64_t deadline = sah_now_ms() + SETTLE_MS;
    while (sah_now_ms() < deadline) {
        char *text = metrics_get();
        out = sah_metric(text, MEM_BYTES, OUTPUT);
        dispatch_pauses = sah_metric(text, MEM_PAUSE, "kind=\"dispatch\"");
        free(text);
        cr_assert_leq(out, HALF_BYTES + OUT_SLACK_BYTES, "output bytes %g past the budget", out);
        if (dispatch_pauses >= 1)
            break;
        usleep(POLL_MS * 1000);
    }
    cr_assert_geq(dispatch_pauses, 1, "dispatch never paused (output bytes %g)", out);

    long rss_paused = status_kb("VmRSS");

    /* A consumer that reads gets every message of its topic meanwhile (at once, through the
     * reserve, or once the broker closed consumers that did not read). */
    prw_conn n = prw_open(&g_cl, 0);
    rc_handshake(&n);
    rc_subscribe(&n, normal_topic, "normal", 7, 1000);
    int64_t normal_start = sah_now_ms();
    for (int i = 0; i < NORMAL_MSGS; i++) {
        const Magnetar__Pulsar__BaseCommand *cmd = rc_next(&n, NORMAL_MS);
        cr_assert_eq(cmd->type, T(MESSAGE), "normal consumer: %s", pw_command_type_name(cmd->type));
        cr_assert_eq(cmd->message->consumer_id, 7);
    }
    int64_t normal_ms = sah_now_ms() - normal_start;
    /* The budget held all along: samples, and the peak. */
    for (int i = 0; i < 10; i++) {
        out = metric_now(MEM_BYTES, OUTPUT);
        cr_assert_leq(out, HALF_BYTES + OUT_SLACK_BYTES, "output bytes %g past the budget", out);
        usleep(POLL_MS * 1000);
    }
    double peak = metric_now(MEM_PEAK, OUTPUT);
    cr_assert_leq(peak, HALF_BYTES + OUT_SLACK_BYTES, "output peak %g past the budget", peak);
    long hwm = status_kb("VmHWM");
    fprintf(stderr,
            "stuck consumers: %d, output peak %g bytes (budget %d), %g dispatch pauses; the "
            "reading consumer got its %d messages in %lld ms; VmRSS %ld -> %ld kB, VmHWM %ld "
            "kB\n",
            STUCK_CONSUMERS, peak, HALF_BYTES, dispatch_pauses, NORMAL_MSGS, (long long)normal_ms,
            rss0, rss_paused, hwm);
    cr_assert_lt(rss_paused, rss0 + RSS_GROWTH_MAX_KB, "VmRSS %ld kB, started at %ld kB",
                 rss_paused, rss0);

    /* Consumers that do not read are closed once they held the budget for BR_CONN_OUT_STALL_MS;
     * the rest are closed here; either way their queued bytes go back. */
    double closed = 0;
    deadline = sah_now_ms() + BR_CONN_OUT_STALL_MS + SETTLE_MS;
    while (sah_now_ms() < deadline && closed < 1) {
        closed = metric_now("magnetar_broker_refused_total", "reason=\"not_reading\"");
        usleep(POLL_MS * 1000);
    }
    cr_assert_geq(closed, 1, "no consumer closed for not reading");
    for (int i = 0; i < STUCK_CONSUMERS; i++)
        prw_close(&k[i]);
    deadline = sah_now_ms() + SETTLE_MS;
    while (sah_now_ms() < deadline && metric_now(MEM_BYTES, OUTPUT) > 0)
        usleep(POLL_MS * 1000);
    cr_assert_eq(metric_now(MEM_BYTES, OUTPUT), 0);
    cr_assert_leq(metric_now(MEM_PEAK, OUTPUT), HALF_BYTES + OUT_SLACK_BYTES);
    prw_close(&n);
    prw_close(&p);
    sa_stop_clean();
    g_passed = true;
}
