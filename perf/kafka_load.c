/*
 * perf_kafka_load: the Kafka client of workload 6 of ../shared/BENCHMARKS.md (perf/kafka.sh): a
 * load generator that speaks to the broker's Kafka port through librdkafka (Debian package
 * librdkafka-dev), configured as a Kafka user would configure it, so what it measures is what
 * such a user would see. Two modes:
 *
 *   produce  --count messages of --size bytes (or for --duration) to --topic, at --rate msg/s
 *            (0: as fast as librdkafka's queue takes them), acks=all, linger.ms=1 and the batch
 *            limits of --batch-size / --batch-messages, compression none unless --compression.
 *            Every message carries its send time (the delivery report's opaque): the latency is
 *            from rd_kafka_produce() to the delivery report, which comes once the broker
 *            answered the produce request (after the bookie's fdatasync). Messages/s and MB/s
 *            are delivered messages over the time from the first send to the last delivery
 *            report.
 *   consume  partition --partition of --topic assigned from --offset (beginning, end or a
 *            number) without a consumer group, or with --group subscribed as a group member
 *            (auto.offset.reset=earliest, offsets committed automatically). Messages and payload
 *            bytes are counted until --count messages, or the end of the partition
 *            (enable.partition.eof) unless --no-eof. Fetch settings stay at librdkafka's
 *            defaults (fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB) unless
 *            --fetch-max-bytes / --partition-fetch-bytes raise them. MB/s is payload bytes over
 *            the time from the assignment (or subscription) to the last message, the span
 *            `magnetar perf consume` reports from its subscription being ready.
 *
 * --set KEY=VALUE passes any other librdkafka property (after the ones above, so it wins).
 *
 * Output: every --stats-interval a progress line on stderr ("<mode>: t=S s: R msg/s, M MB/s, N
 * messages"); at the end one summary line and one JSON object on one line on stdout (and in
 * --json FILE). MB are 10^6 bytes, MiB 2^20.
 *
 * Bounds: every run ends at --count, --duration, SIGINT/SIGTERM or --timeout seconds after its
 * start, whichever comes first; the flush of the last messages and the consumer's close are
 * bounded within that; librdkafka's queue (queue.buffering.max.messages) bounds the messages
 * held. Exit status 0 when every message wanted was delivered (or consumed), 1 otherwise, 2 for
 * a usage error.
 *
 * THREADS: librdkafka runs its own; the delivery reports run on the main thread (in
 * rd_kafka_poll and rd_kafka_flush), so the counters and the histogram are the main thread's.
 */
#include "perf_args.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define KL_PROG           "perf_kafka_load"
#define KL_SIZE_MAX       (16 * 1024 * 1024) /* far above message.max.bytes' default */
#define KL_TIMEOUT_S_MAX  (7 * 24 * 3600)
#define KL_STATS_MS_MIN   100
#define KL_SETS_MAX       64    /* --set options */
#define KL_BATCH_POLL_MAX 10000 /* messages taken per consume_batch call */
#define KL_POLL_MS        100   /* one wait for a message or a free queue slot */
#define KL_CLOSE_MS       10000 /* consumer close and destroy, after the run */
#define KL_RATE_MAX       100000000
/* Latency histogram: 16 buckets per power of two of µs (under 6.3 % error), up to 2^35 µs. */
#define KL_HIST_SUB       16
#define KL_HIST_EXP_MAX   35
#define KL_HIST_BUCKETS   ((KL_HIST_EXP_MAX - 2) * KL_HIST_SUB)

typedef struct kl_opts {
    const char *mode;
    const char *bootstrap;
    const char *topic;
    const char *group;
    const char *json;
    const char *compression;
    const char *acks;
    const char *sets[KL_SETS_MAX];
    int set_count;
    int64_t partition;
    int64_t offset; /* consume: RD_KAFKA_OFFSET_BEGINNING, _END or >= 0 */
    int64_t count;
    int64_t duration_s;
    int64_t size_bytes;
    int64_t rate;
    int64_t linger_ms;
    int64_t batch_bytes;
    int64_t batch_messages;
    int64_t queue_messages;
    int64_t fetch_max_bytes;
    int64_t partition_fetch_bytes;
    int64_t timeout_s;
    int64_t stats_interval_ms;
    bool eof;
    bool idempotence;
} kl_opts;

typedef struct kl_hist {
    uint64_t count;
    uint64_t max_us;
    double sum_us;
    uint64_t buckets[KL_HIST_BUCKETS];
} kl_hist;

typedef struct kl_run {
    const kl_opts *o;
    double start_s;         /* produce: first send; consume: assignment */
    double first_s, last_s; /* first and last delivery report, or message */
    int64_t sent;           /* accepted by rd_kafka_produce */
    int64_t messages;       /* delivered (produce) or consumed (consume) */
    int64_t bytes;
    int64_t errors;
    int64_t first_offset, last_offset;
    bool eof;
    bool complete;
    kl_hist hist;
    char error[256];
    /* progress */
    double stats_last_s;
    int64_t stats_msgs, stats_bytes;
} kl_run;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- Histogram ----------------------------------------------------------------------------- */

static int hist_index(uint64_t v_us)
{
    if (v_us < KL_HIST_SUB)
        return (int)v_us;
    int e = 63 - __builtin_clzll(v_us);
    if (e > KL_HIST_EXP_MAX) {
        e = KL_HIST_EXP_MAX;
        v_us = (2ull << KL_HIST_EXP_MAX) - 1;
    }
    return (e - 3) * KL_HIST_SUB + (int)((v_us >> (e - 4)) & (KL_HIST_SUB - 1));
}

/* The middle of bucket i, in µs. */
static double hist_value_us(int i)
{
    if (i < KL_HIST_SUB)
        return i;
    int e = i / KL_HIST_SUB + 3;
    uint64_t width = 1ull << (e - 4);
    uint64_t low = (uint64_t)(KL_HIST_SUB + i % KL_HIST_SUB) << (e - 4);
    return (double)low + (double)(width - 1) / 2.0;
}

static void hist_add(kl_hist *h, uint64_t v_us)
{
    h->buckets[hist_index(v_us)]++;
    h->count++;
    h->sum_us += (double)v_us;
    if (v_us > h->max_us)
        h->max_us = v_us;
}

/* The q-quantile in ms (0 when empty); the maximum is exact. */
static double hist_quantile_ms(const kl_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < KL_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > rank) {
            double v = hist_value_us(i);
            return (v > (double)h->max_us ? (double)h->max_us : v) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* --- Options ------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: " KL_PROG " produce|consume [options]\n"
        "\n"
        "A Kafka load generator on librdkafka, configured as a Kafka user would.\n"
        "produce: send --count messages (or for --duration) with acks=all, linger.ms=1 and\n"
        "batching; print msg/s, MB/s and delivery-report latency percentiles.\n"
        "consume: read one partition from --offset without a group (or with --group) until\n"
        "--count messages or the end of the partition; print msg/s and MB/s.\n"
        "\n"
        "Common options:\n"
        "  --bootstrap HOST:PORT   bootstrap.servers (default 127.0.0.1:9092)\n"
        "  --topic NAME            the topic (required)\n"
        "  --count N               messages to send or read (0: --duration, or to the end)\n"
        "  --timeout S             end the run after S seconds whatever happened (default 600)\n"
        "  --stats-interval MS     time between progress lines on stderr (default 1000)\n"
        "  --json FILE             also write the JSON summary to FILE\n"
        "  --set KEY=VALUE         any librdkafka property (repeat it; applied last)\n"
        "\n"
        "produce:\n"
        "  --size BYTES            message size (default 1024)\n"
        "  --duration S            send for S seconds (default 0: until --count)\n"
        "  --rate MSG/S            messages per second (default 0: as fast as possible)\n"
        "  --acks all|1|0          acks (default all)\n"
        "  --linger-ms MS          linger.ms (default 1)\n"
        "  --batch-size BYTES      batch.size, bytes per partition batch (default 131072)\n"
        "  --batch-messages N      batch.num.messages (default 1000)\n"
        "  --queue-messages N      queue.buffering.max.messages (default 100000)\n"
        "  --compression CODEC     compression.codec: none, gzip, snappy, lz4, zstd\n"
        "                          (default none)\n"
        "  --idempotence           enable.idempotence=true (default false, librdkafka's)\n"
        "\n"
        "consume:\n"
        "  --partition N           the partition to assign (default 0)\n"
        "  --offset beginning|end|N  where to start without a group (default beginning)\n"
        "  --group ID              join consumer group ID instead of assigning (committed\n"
        "                          offsets, else the earliest)\n"
        "  --no-eof                do not stop at the end of the partition\n"
        "  --fetch-max-bytes B     fetch.max.bytes (default librdkafka's, 52428800)\n"
        "  --partition-fetch-bytes B  max.partition.fetch.bytes (default librdkafka's, 1048576)\n"
        "\n"
        "MB are 10^6 bytes. Exit status: 0 complete, 1 incomplete or failed, 2 usage.\n");
}

static bool parse_int(const char *name, const char *v, int64_t min, int64_t max, int64_t *out)
{
    return perf_parse_int(KL_PROG, name, v, min, max, out);
}

/* Returns 0 to run, 1 to exit 0 (--help), 2 on a usage error. */
static int parse_args(int argc, char **argv, kl_opts *o)
{
    *o = (kl_opts){ .bootstrap = "127.0.0.1:9092",
                    .compression = "none",
                    .acks = "all",
                    .offset = RD_KAFKA_OFFSET_BEGINNING,
                    .size_bytes = 1024,
                    .linger_ms = 1,
                    .batch_bytes = 131072,
                    .batch_messages = 1000,
                    .queue_messages = 100000,
                    .timeout_s = 600,
                    .stats_interval_ms = 1000,
                    .eof = true };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (a[0] != '-' && o->mode == NULL) {
            o->mode = a;
            continue;
        } else if (strcmp(a, "--no-eof") == 0) {
            o->eof = false;
            continue;
        } else if (strcmp(a, "--idempotence") == 0) {
            o->idempotence = true;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, KL_PROG ": %s needs a value (see --help)\n", a);
            return 2;
        } else if (strcmp(a, "--bootstrap") == 0) {
            o->bootstrap = v;
        } else if (strcmp(a, "--topic") == 0) {
            o->topic = v;
        } else if (strcmp(a, "--group") == 0) {
            o->group = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = v;
        } else if (strcmp(a, "--compression") == 0) {
            o->compression = v;
        } else if (strcmp(a, "--acks") == 0) {
            if (strcmp(v, "all") != 0 && strcmp(v, "-1") != 0 && strcmp(v, "1") != 0 &&
                strcmp(v, "0") != 0) {
                fprintf(stderr, KL_PROG ": --acks is all, 1 or 0\n");
                ok = false;
            }
            o->acks = v;
        } else if (strcmp(a, "--set") == 0) {
            if (o->set_count == KL_SETS_MAX || strchr(v, '=') == NULL || v[0] == '=') {
                fprintf(stderr, KL_PROG ": --set takes KEY=VALUE, at most %d times\n", KL_SETS_MAX);
                ok = false;
            } else {
                o->sets[o->set_count++] = v;
            }
        } else if (strcmp(a, "--offset") == 0) {
            if (strcmp(v, "beginning") == 0)
                o->offset = RD_KAFKA_OFFSET_BEGINNING;
            else if (strcmp(v, "end") == 0)
                o->offset = RD_KAFKA_OFFSET_END;
            else
                ok = parse_int(a, v, 0, INT64_MAX / 2, &o->offset);
        } else if (strcmp(a, "--partition") == 0) {
            ok = parse_int(a, v, 0, INT32_MAX, &o->partition);
        } else if (strcmp(a, "--count") == 0) {
            ok = parse_int(a, v, 0, INT64_MAX / 2, &o->count);
        } else if (strcmp(a, "--duration") == 0) {
            ok = parse_int(a, v, 0, KL_TIMEOUT_S_MAX, &o->duration_s);
        } else if (strcmp(a, "--size") == 0) {
            ok = parse_int(a, v, 0, KL_SIZE_MAX, &o->size_bytes);
        } else if (strcmp(a, "--rate") == 0) {
            ok = parse_int(a, v, 0, KL_RATE_MAX, &o->rate);
        } else if (strcmp(a, "--linger-ms") == 0) {
            ok = parse_int(a, v, 0, 900000, &o->linger_ms);
        } else if (strcmp(a, "--batch-size") == 0) {
            ok = parse_int(a, v, 1, 2147483647, &o->batch_bytes);
        } else if (strcmp(a, "--batch-messages") == 0) {
            ok = parse_int(a, v, 1, 1000000, &o->batch_messages);
        } else if (strcmp(a, "--queue-messages") == 0) {
            ok = parse_int(a, v, 1, 2147483647, &o->queue_messages);
        } else if (strcmp(a, "--fetch-max-bytes") == 0) {
            ok = parse_int(a, v, 1, 2147483135, &o->fetch_max_bytes);
        } else if (strcmp(a, "--partition-fetch-bytes") == 0) {
            ok = parse_int(a, v, 1, 1000000000, &o->partition_fetch_bytes);
        } else if (strcmp(a, "--timeout") == 0) {
            ok = parse_int(a, v, 1, KL_TIMEOUT_S_MAX, &o->timeout_s);
        } else if (strcmp(a, "--stats-interval") == 0) {
            ok = parse_int(a, v, KL_STATS_MS_MIN, 3600 * 1000, &o->stats_interval_ms);
        } else {
            fprintf(stderr, KL_PROG ": unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok)
            return 2;
        i++;
    }
    if (o->mode == NULL || (strcmp(o->mode, "produce") != 0 && strcmp(o->mode, "consume") != 0)) {
        fprintf(stderr, KL_PROG ": say produce or consume (see --help)\n");
        return 2;
    }
    if (o->topic == NULL || o->topic[0] == '\0') {
        fprintf(stderr, KL_PROG ": --topic is required\n");
        return 2;
    }
    if (strcmp(o->mode, "produce") == 0 && o->count == 0 && o->duration_s == 0) {
        fprintf(stderr, KL_PROG ": produce needs --count N or --duration S\n");
        return 2;
    }
    if (strcmp(o->mode, "consume") == 0 && o->count == 0 && !o->eof) {
        fprintf(stderr, KL_PROG ": consume with --no-eof needs --count N\n");
        return 2;
    }
    return 0;
}

/* --- librdkafka configuration ------------------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, KL_PROG ": %s=%s: %s\n", key, value, err);
        return -1;
    }
    return 0;
}

static int conf_set_int(rd_kafka_conf_t *conf, const char *key, int64_t value)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRId64, value);
    return conf_set(conf, key, buf);
}

/* Applies the --set KEY=VALUE options, after the program's own settings. */
static int conf_apply_sets(rd_kafka_conf_t *conf, const kl_opts *o)
{
    for (int i = 0; i < o->set_count; i++) {
        char key[256];
        const char *eq = strchr(o->sets[i], '=');
        size_t n = (size_t)(eq - o->sets[i]);
        if (n >= sizeof(key)) {
            fprintf(stderr, KL_PROG ": --set key too long: %s\n", o->sets[i]);
            return -1;
        }
        memcpy(key, o->sets[i], n);
        key[n] = '\0';
        if (conf_set(conf, key, eq + 1) != 0)
            return -1;
    }
    return 0;
}

/* Keeps the first error of the run (cut to the buffer). */
__attribute__((format(printf, 2, 3))) static void set_error(kl_run *r, const char *fmt, ...)
{
    if (r->error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

/* Client-level errors (connection refused, all brokers down, ...): logged; librdkafka retries,
 * and --timeout bounds how long. A fatal one ends the run. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kl_run *r = opaque;
    fprintf(stderr, KL_PROG ": %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        set_error(r, "fatal: %s", buf);
        stop_requested = 1;
    }
}

static void stats_tick(kl_run *r, double now)
{
    double dt = now - r->stats_last_s;
    if (dt * 1000.0 < (double)r->o->stats_interval_ms)
        return;
    fprintf(stderr, "%s: t=%.3f s: %.0f msg/s, %.1f MB/s, %" PRId64 " messages\n", r->o->mode,
            now - r->start_s, (double)(r->messages - r->stats_msgs) / dt,
            (double)(r->bytes - r->stats_bytes) / dt / 1e6, r->messages);
    r->stats_last_s = now;
    r->stats_msgs = r->messages;
    r->stats_bytes = r->bytes;
}

/* --- produce ------------------------------------------------------------------------------- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kl_run *r = opaque;
    double now = now_s();
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (r->errors++ == 0)
            fprintf(stderr, KL_PROG ": delivery failed: %s\n", rd_kafka_err2str(m->err));
        set_error(r, "delivery failed: %s", rd_kafka_err2str(m->err));
        return;
    }
    uint64_t sent_us = (uint64_t)(uintptr_t)m->_private;
    uint64_t t = now_us();
    hist_add(&r->hist, t > sent_us ? t - sent_us : 0);
    r->messages++;
    r->bytes += (int64_t)m->len;
    if (r->first_s == 0)
        r->first_s = now;
    r->last_s = now;
    if (r->first_offset < 0)
        r->first_offset = m->offset;
    r->last_offset = m->offset;
}

static int run_produce(const kl_opts *o, kl_run *r)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    rc |= conf_set(conf, "bootstrap.servers", o->bootstrap);
    rc |= conf_set(conf, "client.id", KL_PROG);
    rc |= conf_set(conf, "acks", o->acks);
    rc |= conf_set_int(conf, "linger.ms", o->linger_ms);
    rc |= conf_set_int(conf, "batch.size", o->batch_bytes);
    rc |= conf_set_int(conf, "batch.num.messages", o->batch_messages);
    rc |= conf_set_int(conf, "queue.buffering.max.messages", o->queue_messages);
    rc |= conf_set(conf, "compression.codec", o->compression);
    rc |= conf_set(conf, "enable.idempotence", o->idempotence ? "true" : "false");
    rc |= conf_apply_sets(conf, o);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return -2;
    }
    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        set_error(r, "rd_kafka_new: %s", err);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    char *payload = malloc(o->size_bytes > 0 ? (size_t)o->size_bytes : 1);
    if (rkt == NULL || payload == NULL) {
        set_error(r, "%s", rkt == NULL ? "rd_kafka_topic_new failed" : "out of memory");
        if (rkt != NULL)
            rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        free(payload);
        return -1;
    }
    /* Text-like bytes, the same as `magnetar perf produce` sends. */
    for (int64_t i = 0; i < o->size_bytes; i++)
        payload[i] = (char)('a' + (i * 7) % 26);

    double start = now_s();
    double deadline = start + (double)o->timeout_s;
    double send_end = o->duration_s > 0 ? start + (double)o->duration_s : deadline;
    if (send_end > deadline)
        send_end = deadline;
    r->start_s = r->stats_last_s = start;
    while (!stop_requested && (o->count == 0 || r->sent < o->count)) {
        double now = now_s();
        if (now >= send_end)
            break;
        if (o->rate > 0 && (double)r->sent >= (now - start) * (double)o->rate) {
            rd_kafka_poll(rk, 0);
            struct timespec ts = { 0, 200000 }; /* 0.2 ms: pacing finer than linger.ms */
            nanosleep(&ts, NULL);
            stats_tick(r, now);
            continue;
        }
        /* msgflags 0: the payload is neither copied nor freed (it lives as long as the run). */
        if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, 0, payload, (size_t)o->size_bytes, NULL, 0,
                             (void *)(uintptr_t)now_us()) != 0) {
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) { /* backpressure: serve delivery reports */
                rd_kafka_poll(rk, KL_POLL_MS);
                stats_tick(r, now_s());
                continue;
            }
            set_error(r, "produce: %s", rd_kafka_err2str(e));
            break;
        }
        r->sent++;
        if ((r->sent & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            stats_tick(r, now_s());
        }
    }
    /* Wait for the delivery reports of everything sent, within --timeout. */
    while (rd_kafka_outq_len(rk) > 0 && !stop_requested) {
        double now = now_s();
        if (now >= deadline)
            break;
        rd_kafka_poll(rk, KL_POLL_MS);
        stats_tick(r, now_s());
    }
    int64_t undelivered = r->sent - r->messages - r->errors;
    if (undelivered > 0 && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error),
                 "%" PRId64 " of %" PRId64 " messages without a delivery report at the end",
                 undelivered, r->sent);
    r->complete = r->errors == 0 && undelivered == 0 && r->sent > 0 &&
                  (o->count == 0 || r->messages == o->count);
    if (o->count > 0 && r->sent < o->count && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error),
                 "%" PRId64 " of %" PRId64 " messages sent before the end of the run", r->sent,
                 o->count);
    /* Purge what is left (a dead broker), so the destroy does not wait for it. */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(payload);
    return r->complete ? 0 : -1;
}

/* --- consume ------------------------------------------------------------------------------- */

static int run_consume(const kl_opts *o, kl_run *r)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = 0;
    rc |= conf_set(conf, "bootstrap.servers", o->bootstrap);
    rc |= conf_set(conf, "client.id", KL_PROG);
    rc |= conf_set(conf, "enable.partition.eof", o->eof ? "true" : "false");
    if (o->group != NULL) {
        rc |= conf_set(conf, "group.id", o->group);
        rc |= conf_set(conf, "auto.offset.reset", "earliest");
    } else {
        rc |= conf_set(conf, "enable.auto.commit", "false");
        rc |= conf_set(conf, "enable.auto.offset.store", "false");
    }
    if (o->fetch_max_bytes > 0)
        rc |= conf_set_int(conf, "fetch.max.bytes", o->fetch_max_bytes);
    if (o->partition_fetch_bytes > 0)
        rc |= conf_set_int(conf, "max.partition.fetch.bytes", o->partition_fetch_bytes);
    rc |= conf_apply_sets(conf, o);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return -2;
    }
    rd_kafka_conf_set_opaque(conf, r);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        set_error(r, "rd_kafka_new: %s", err);
        return -1;
    }
    /* With a group: the consumer queue of a group member. Without one: the partition is read
     * through librdkafka's simple consumer (rd_kafka_consume_start, as kcat does), since a
     * consumer without group.id has no consumer queue; both take messages in batches. */
    rd_kafka_queue_t *q = NULL;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_message_t **msgs = calloc(KL_BATCH_POLL_MAX, sizeof(*msgs));
    bool started = false;
    if (msgs == NULL) {
        set_error(r, "out of memory");
        goto out;
    }
    if (o->group != NULL) {
        rd_kafka_poll_set_consumer(rk);
        q = rd_kafka_queue_get_consumer(rk);
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(parts, o->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e =
            q != NULL ? rd_kafka_subscribe(rk, parts) : RD_KAFKA_RESP_ERR__INVALID_ARG;
        rd_kafka_topic_partition_list_destroy(parts);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            set_error(r, "subscribe: %s", rd_kafka_err2str(e));
            goto out;
        }
    } else {
        rkt = rd_kafka_topic_new(rk, o->topic, NULL);
        if (rkt == NULL || rd_kafka_consume_start(rkt, (int32_t)o->partition, o->offset) != 0) {
            set_error(r, "consume start: %s", rd_kafka_err2str(rd_kafka_last_error()));
            goto out;
        }
        started = true;
    }

    double start = now_s();
    double deadline = start + (double)o->timeout_s;
    r->start_s = r->stats_last_s = start;
    bool done = false;
    while (!done && !stop_requested) {
        double now = now_s();
        if (now >= deadline)
            break;
        ssize_t n = q != NULL ? rd_kafka_consume_batch_queue(q, KL_POLL_MS, msgs, KL_BATCH_POLL_MAX)
                              : rd_kafka_consume_batch(rkt, (int32_t)o->partition, KL_POLL_MS, msgs,
                                                       KL_BATCH_POLL_MAX);
        if (n < 0) {
            set_error(r, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
        int64_t before = r->messages;
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (o->eof) { /* the high watermark as the fetch saw it */
                    r->eof = true;
                    done = true;
                }
            } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                if (r->errors++ < 5)
                    fprintf(stderr, KL_PROG ": consume: %s\n", rd_kafka_message_errstr(m));
                if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                    m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
                    set_error(r, "consume: %s", rd_kafka_message_errstr(m));
                    done = true;
                }
            } else if (!done) {
                r->messages++;
                r->bytes += (int64_t)m->len;
                if (r->first_offset < 0)
                    r->first_offset = m->offset;
                r->last_offset = m->offset;
                if (o->count > 0 && r->messages >= o->count)
                    done = true;
            }
            rd_kafka_message_destroy(m);
        }
        if (r->messages > before) { /* the span ends with the last message, not with the EOF */
            double t = now_s();
            if (r->first_s == 0)
                r->first_s = t;
            r->last_s = t;
        }
        stats_tick(r, now_s());
    }
    r->complete = o->count > 0 ? r->messages >= o->count : r->eof;
    if (!r->complete && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error),
                 "%" PRId64 " messages%s before the end of the run (want %" PRId64 ")", r->messages,
                 r->eof ? " and the end of the partition" : "", o->count);
out:
    free(msgs);
    if (started)
        rd_kafka_consume_stop(rkt, (int32_t)o->partition);
    if (rkt != NULL)
        rd_kafka_topic_destroy(rkt);
    if (q != NULL) {
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk); /* leaves the group, commits */
    }
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    return r->complete ? 0 : -1;
}

/* --- Output -------------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void write_json(FILE *f, const kl_opts *o, const kl_run *r)
{
    bool produce = strcmp(o->mode, "produce") == 0;
    /* produce: first send to last delivery report; consume: assignment to the last message. */
    double secs = r->last_s > r->start_s ? r->last_s - r->start_s : 0;
    double first_to_last = r->last_s > r->first_s && r->first_s > 0 ? r->last_s - r->first_s : 0;
    fprintf(f, "{\"mode\":");
    json_string(f, o->mode);
    fprintf(f, ",\"topic\":");
    json_string(f, o->topic);
    fprintf(f, ",\"bootstrap\":");
    json_string(f, o->bootstrap);
    fprintf(f,
            ",\"complete\":%s,\"messages\":%" PRId64 ",\"bytes\":%" PRId64 ",\"errors\":%" PRId64
            ",\"seconds\":%.3f,\"msg_per_s\":%.1f,\"mb_per_s\":%.2f,\"mib_per_s\":%.2f"
            ",\"seconds_first_to_last\":%.3f,\"first_offset\":%" PRId64 ",\"last_offset\":%" PRId64,
            r->complete ? "true" : "false", r->messages, r->bytes, r->errors, secs,
            secs > 0 ? (double)r->messages / secs : 0, secs > 0 ? (double)r->bytes / 1e6 / secs : 0,
            secs > 0 ? (double)r->bytes / 1048576.0 / secs : 0, first_to_last, r->first_offset,
            r->last_offset);
    if (produce) {
        const kl_hist *h = &r->hist;
        fprintf(f,
                ",\"sent\":%" PRId64 ",\"latency_ms\":{\"count\":%" PRIu64 ",\"mean\":%.3f,"
                "\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}",
                r->sent, h->count, h->count ? h->sum_us / (double)h->count / 1000.0 : 0,
                hist_quantile_ms(h, 0.5), hist_quantile_ms(h, 0.95), hist_quantile_ms(h, 0.99),
                hist_quantile_ms(h, 0.999), (double)h->max_us / 1000.0);
        fprintf(f,
                ",\"options\":{\"size\":%" PRId64 ",\"count\":%" PRId64 ",\"duration_s\":%" PRId64
                ",\"rate\":%" PRId64 ",\"acks\":\"%s\",\"linger_ms\":%" PRId64
                ",\"batch_size\":%" PRId64 ",\"batch_num_messages\":%" PRId64
                ",\"queue_buffering_max_messages\":%" PRId64 ",\"compression\":",
                o->size_bytes, o->count, o->duration_s, o->rate, o->acks, o->linger_ms,
                o->batch_bytes, o->batch_messages, o->queue_messages);
        json_string(f, o->compression);
        fprintf(f, ",\"idempotence\":%s", o->idempotence ? "true" : "false");
    } else {
        fprintf(f, ",\"eof\":%s,\"options\":{\"count\":%" PRId64 ",\"partition\":%" PRId64,
                r->eof ? "true" : "false", o->count, o->partition);
        if (o->group != NULL) {
            fprintf(f, ",\"group\":");
            json_string(f, o->group);
        } else {
            fprintf(f, ",\"group\":null,\"offset\":");
            if (o->offset == RD_KAFKA_OFFSET_BEGINNING)
                fprintf(f, "\"beginning\"");
            else if (o->offset == RD_KAFKA_OFFSET_END)
                fprintf(f, "\"end\"");
            else
                fprintf(f, "%" PRId64, o->offset);
        }
        /* null: librdkafka's default (fetch.max.bytes 52428800, max.partition.fetch.bytes
         * 1048576) unless a --set changed it. */
        if (o->fetch_max_bytes > 0)
            fprintf(f, ",\"fetch_max_bytes\":%" PRId64, o->fetch_max_bytes);
        else
            fprintf(f, ",\"fetch_max_bytes\":null");
        if (o->partition_fetch_bytes > 0)
            fprintf(f, ",\"max_partition_fetch_bytes\":%" PRId64, o->partition_fetch_bytes);
        else
            fprintf(f, ",\"max_partition_fetch_bytes\":null");
    }
    fprintf(f, ",\"set\":[");
    for (int i = 0; i < o->set_count; i++) {
        if (i > 0)
            fputc(',', f);
        json_string(f, o->sets[i]);
    }
    fprintf(f, "]},\"librdkafka\":");
    json_string(f, rd_kafka_version_str());
    fprintf(f, ",\"error\":");
    if (r->error[0] != '\0')
        json_string(f, r->error);
    else
        fprintf(f, "null");
    fprintf(f, "}\n");
}

int main(int argc, char **argv)
{
    kl_opts o;
    int p = parse_args(argc, argv, &o);
    if (p != 0)
        return p == 1 ? 0 : 2;
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static kl_run r; /* the histogram is large: not on the stack */
    r.o = &o;
    r.first_offset = r.last_offset = -1;
    int rc = strcmp(o.mode, "produce") == 0 ? run_produce(&o, &r) : run_consume(&o, &r);
    if (rc == -2)
        return 2;
    double secs = r.last_s > r.start_s ? r.last_s - r.start_s : 0;
    if (strcmp(o.mode, "produce") == 0)
        fprintf(stderr,
                "produced to %s: %" PRId64 " messages, %.1f MB in %.3f s: %.0f msg/s, %.1f MB/s, "
                "delivery latency ms p50 %.3f p99 %.3f p99.9 %.3f max %.3f%s\n",
                o.topic, r.messages, (double)r.bytes / 1e6, secs,
                secs > 0 ? (double)r.messages / secs : 0,
                secs > 0 ? (double)r.bytes / 1e6 / secs : 0, hist_quantile_ms(&r.hist, 0.5),
                hist_quantile_ms(&r.hist, 0.99), hist_quantile_ms(&r.hist, 0.999),
                (double)r.hist.max_us / 1000.0, r.complete ? "" : " (INCOMPLETE)");
    else
        fprintf(stderr,
                "consumed from %s: %" PRId64
                " messages, %.1f MB in %.3f s: %.0f msg/s, %.1f MB/s%s\n",
                o.topic, r.messages, (double)r.bytes / 1e6, secs,
                secs > 0 ? (double)r.messages / secs : 0,
                secs > 0 ? (double)r.bytes / 1e6 / secs : 0, r.complete ? "" : " (INCOMPLETE)");
    if (r.error[0] != '\0')
        fprintf(stderr, KL_PROG ": %s\n", r.error);
    write_json(stdout, &o, &r);
    fflush(stdout);
    if (o.json != NULL) {
        FILE *f = fopen(o.json, "w");
        if (f == NULL) {
            fprintf(stderr, KL_PROG ": cannot write %s: %s\n", o.json, strerror(errno));
            rc = -1;
        } else {
            write_json(f, &o, &r);
            if (fclose(f) != 0)
                rc = -1;
        }
    }
    return rc == 0 ? 0 : 1;
}
