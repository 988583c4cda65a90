/*
 * `magnetar perf produce` and `magnetar perf consume`: Pulsar load generators with the main
 * flags of `pulsar-perf` (../shared/REFERENCE.md §1, ../shared/BENCHMARKS.md workload 4),
 * through Magnetar's C client (client/client.h), so they measure any Pulsar-compatible broker.
 *
 * produce: --producers producers on every topic send --size-byte messages at --rate msg/s in
 *   total (0: as fast as the client's pending queue allows), batched by --batch-time-window
 *   (ms; 0 disables batching), --batch-max-messages and --batch-max-bytes, compressed with
 *   --compression, until --num-messages or --test-duration. Latency is publish-to-receipt:
 *   from pc_send to its callback (the broker answers after the bookie's fdatasync).
 * consume: --num-consumers consumers on subscription --subscriber-name of type
 *   --subscription-type receive until --num-messages or --test-duration. Latency is end to end:
 *   receive time minus the message's publish time (same clock when both run here).
 *
 * Every --stats-interval (10 s, as pulsar-perf) one line:
 *   Throughput produced: X msg/s --- Y Mbit/s --- Latency: mean: ... ms - med: ... - 95pct: ...
 *   - 99pct: ... - 99.9pct: ... - 99.99pct: ... - Max: ...
 * and at the end the aggregated line, plus --json FILE with every figure. With --fio-dir DIR
 * (produce), fio's 4 KiB fdatasync write bandwidth on that disk is measured after the run and
 * the ratio printed next to ours.
 *
 * Bounds: the client's pending queue (--max-outstanding) bounds memory; every run ends at
 * --num-messages, --test-duration or SIGINT; pacing runs on a 1 ms timer.
 */
#include "client/client.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/hist.h"
#include "common/log.h"
#include "fio.h"
#include "tools.h"
#include "tools/limits.h"

#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- options ---------------------------------------------------------------------------------- */

/* Options both workloads take, with the same names, bounds and help (pulsar-perf's). */
#define PP_OPT_NUM_MESSAGES(opts_type, verb)                                               \
    {                                                                                      \
        .name = "num-messages", .short_name = 'm', .type = MG_OPT_INT,                     \
        .offset = offsetof(opts_type, num_messages), .default_value = "0", .metavar = "N", \
        .help = "messages to " verb " in total (0: until --test-duration)", .min = 0,      \
        .max = INT64_MAX                                                                   \
    }
#define PP_OPT_TEST_DURATION(opts_type)                                                          \
    {                                                                                            \
        .name = "test-duration", .short_name = 't', .type = MG_OPT_DURATION,                     \
        .offset = offsetof(opts_type, duration_ms), .default_value = "0", .metavar = "DURATION", \
        .help = "stop after this long (0: at --num-messages, or at SIGINT)", .min = 0,           \
        .max = 7LL * 24 * 3600 * 1000                                                            \
    }
#define PP_OPT_STATS_INTERVAL(opts_type)                                                           \
    {                                                                                              \
        .name = "stats-interval", .type = MG_OPT_DURATION,                                         \
        .offset = offsetof(opts_type, interval_ms), .default_value = "10s", .metavar = "DURATION", \
        .help = "time between two progress lines", .min = 100, .max = 3600000                      \
    }
#define PP_OPT_JSON(opts_type)                                                      \
    {                                                                               \
        .name = "json", .type = MG_OPT_STRING, .offset = offsetof(opts_type, json), \
        .default_value = NULL, .metavar = "FILE",                                   \
        .help = "also write the summary as a JSON object to FILE"                   \
    }

typedef struct perf_produce_opts {
    char *service_url;
    int64_t rate;
    int64_t size_bytes;
    int64_t producers;
    int64_t batch_ms;
    int64_t batch_max_messages;
    int64_t batch_max_bytes;
    int compression;
    int64_t num_messages;
    int64_t duration_ms;
    int64_t max_outstanding;
    int64_t interval_ms;
    char *json;
    char *fio_dir;
    int log_level;
} perf_produce_opts;

static const char *const compression_names[] = { "NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY", NULL };

static const mg_opt perf_produce_opt_table[] = {
    MG_TOOL_OPT_SERVICE_URL(perf_produce_opts, service_url),
    { .name = "rate",
      .short_name = 'r',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_produce_opts, rate),
      .default_value = "100",
      .metavar = "MSG/S",
      .help = "messages per second, all producers together (0: as fast as possible)",
      .min = 0,
      .max = 100000000 },
    { .name = "size",
      .short_name = 's',
      .type = MG_OPT_BYTES,
      .offset = offsetof(perf_produce_opts, size_bytes),
      .default_value = "1024",
      .metavar = "BYTES",
      .help = "message size",
      .min = 1,
      .max = 5 * 1024 * 1024 },
    { .name = "producers",
      .short_name = 'n',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_produce_opts, producers),
      .default_value = "1",
      .metavar = "N",
      .help = "producers per topic",
      .min = 1,
      .max = PP_PRODUCERS_MAX },
    { .name = "batch-time-window",
      .short_name = 'b',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_produce_opts, batch_ms),
      .default_value = "1",
      .metavar = "MS",
      .help = "batch messages for this long (0 disables batching)",
      .min = 0,
      .max = 10000 },
    { .name = "batch-max-messages",
      .type = MG_OPT_INT,
      .offset = offsetof(perf_produce_opts, batch_max_messages),
      .default_value = "1000",
      .metavar = "N",
      .help = "messages in one batch at most",
      .min = 1,
      .max = 100000 },
    { .name = "batch-max-bytes",
      .type = MG_OPT_BYTES,
      .offset = offsetof(perf_produce_opts, batch_max_bytes),
      .default_value = "128KiB",
      .metavar = "BYTES",
      .help = "bytes in one batch at most",
      .min = 1024,
      .max = 5 * 1024 * 1024 },
    { .name = "compression",
      .short_name = 'z',
      .type = MG_OPT_ENUM,
      .offset = offsetof(perf_produce_opts, compression),
      .default_value = "NONE",
      .metavar = "CODEC",
      .help = "batch compression",
      .choices = compression_names },
    PP_OPT_NUM_MESSAGES(perf_produce_opts, "send"),
    PP_OPT_TEST_DURATION(perf_produce_opts),
    { .name = "max-outstanding",
      .short_name = 'o',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_produce_opts, max_outstanding),
      .default_value = "1000",
      .metavar = "N",
      .help = "messages sent and not yet acknowledged, per producer",
      .min = 1,
      .max = 1000000 },
    PP_OPT_STATS_INTERVAL(perf_produce_opts),
    PP_OPT_JSON(perf_produce_opts),
    { .name = "fio-dir",
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_produce_opts, fio_dir),
      .default_value = NULL,
      .metavar = "DIR",
      .help = "after the run, measure fio's 4 KiB fdatasync writes in DIR (the broker's disk) "
              "and report the ratio" },
    MG_TOOL_OPT_LOG_LEVEL(perf_produce_opts, log_level),
};

static const mg_cmd_spec perf_produce_spec = {
    .name = "magnetar perf produce",
    .usage = "[options] TOPIC...",
    .summary = "Produces messages at a given rate and prints throughput and publish latency "
               "percentiles every --stats-interval, as pulsar-perf produce.",
    .opts = perf_produce_opt_table,
    .opt_count = sizeof(perf_produce_opt_table) / sizeof(perf_produce_opt_table[0]),
    .positional_min = 1,
    .positional_max = PP_TOPICS_MAX,
};

typedef struct perf_consume_opts {
    char *service_url;
    char *subscriber_name;
    int sub_type;
    int position;
    int64_t consumers;
    int64_t queue_size;
    int64_t num_messages;
    int64_t duration_ms;
    int64_t interval_ms;
    char *json;
    int log_level;
} perf_consume_opts;

static const mg_opt perf_consume_opt_table[] = {
    MG_TOOL_OPT_SERVICE_URL(perf_consume_opts, service_url),
    { .name = "subscriber-name",
      .short_name = 'S',
      .type = MG_OPT_STRING,
      .offset = offsetof(perf_consume_opts, subscriber_name),
      .default_value = "sub",
      .metavar = "NAME",
      .help = "subscription name" },
    MG_TOOL_OPT_SUB_TYPE(perf_consume_opts, sub_type, 0),
    MG_TOOL_OPT_SUB_POSITION(perf_consume_opts, position, 0),
    { .name = "num-consumers",
      .short_name = 'n',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_consume_opts, consumers),
      .default_value = "1",
      .metavar = "N",
      .help = "consumers per topic",
      .min = 1,
      .max = PP_PRODUCERS_MAX },
    { .name = "receiver-queue-size",
      .short_name = 'q',
      .type = MG_OPT_INT,
      .offset = offsetof(perf_consume_opts, queue_size),
      .default_value = "1000",
      .metavar = "N",
      .help = "flow permits per consumer",
      .min = 1,
      .max = 1000000 },
    PP_OPT_NUM_MESSAGES(perf_consume_opts, "receive"),
    PP_OPT_TEST_DURATION(perf_consume_opts),
    PP_OPT_STATS_INTERVAL(perf_consume_opts),
    PP_OPT_JSON(perf_consume_opts),
    MG_TOOL_OPT_LOG_LEVEL(perf_consume_opts, log_level),
};

static const mg_cmd_spec perf_consume_spec = {
    .name = "magnetar perf consume",
    .usage = "[options] TOPIC...",
    .summary = "Consumes messages and prints throughput and end-to-end latency percentiles "
               "every --stats-interval, as pulsar-perf consume.",
    .opts = perf_consume_opt_table,
    .opt_count = sizeof(perf_consume_opt_table) / sizeof(perf_consume_opt_table[0]),
    .positional_min = 1,
    .positional_max = PP_TOPICS_MAX,
};

/* --- shared run state
 * ----------------------------------------------------------------------------- */

typedef struct pp_run {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_timer_t stats;
    uv_signal_t sigint;
    pc_client *client;
    bool producing; /* produce, else consume */
    bool stopping;
    int status; /* first fatal error */
    uint64_t start_ns, end_ns, interval_start_ns;
    /* producers (produce) or consumers (consume): how many, up, and closed */
    size_t handle_count, handles_ready, handles_closed;
    /* counters */
    uint64_t msgs, bytes, errors;
    uint64_t interval_msgs, interval_bytes;
    mg_hist total_us, interval_us;
    /* produce */
    const perf_produce_opts *po;
    pc_producer *producers[PP_TOPICS_MAX * PP_PRODUCERS_MAX];
    uint64_t sent; /* pc_send accepted */
    uint8_t *payload;
    size_t next_producer;
    /* consume */
    const perf_consume_opts *co;
    pc_consumer *consumers[PP_TOPICS_MAX * PP_PRODUCERS_MAX];
    int64_t limit_msgs;
    int64_t duration_ms;
} pp_run;

static double us_to_ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void print_line(pp_run *r, const char *what, double secs, uint64_t msgs, uint64_t bytes,
                       const mg_hist *h, FILE *out)
{
    double rate = secs > 0 ? (double)msgs / secs : 0;
    double mbit = secs > 0 ? (double)bytes * 8 / 1e6 / secs : 0;
    fprintf(out,
            "%s: %.1f msg/s --- %.1f Mbit/s --- Latency: mean: %.3f ms - med: %.3f - 95pct: %.3f "
            "- 99pct: %.3f - 99.9pct: %.3f - 99.99pct: %.3f - Max: %.3f\n",
            what, rate, mbit, mg_hist_mean(h) / 1000.0, us_to_ms(mg_hist_percentile(h, 50)),
            us_to_ms(mg_hist_percentile(h, 95)), us_to_ms(mg_hist_percentile(h, 99)),
            us_to_ms(mg_hist_percentile(h, 99.9)), us_to_ms(mg_hist_percentile(h, 99.99)),
            us_to_ms(mg_hist_max(h)));
    fflush(out);
    (void)r;
}

static void on_stats(uv_timer_t *t)
{
    pp_run *r = t->data;
    uint64_t now = mg_clock_mono_ns();
    double secs = (double)(now - r->interval_start_ns) / 1e9;
    print_line(r, r->producing ? "Throughput produced" : "Throughput received", secs,
               r->interval_msgs, r->interval_bytes, &r->interval_us, stdout);
    r->interval_msgs = r->interval_bytes = 0;
    mg_hist_reset(&r->interval_us);
    r->interval_start_ns = now;
}

static void record(pp_run *r, uint64_t latency_us, size_t bytes)
{
    r->msgs++;
    r->bytes += bytes;
    r->interval_msgs++;
    r->interval_bytes += bytes;
    mg_hist_record(&r->total_us, latency_us);
    mg_hist_record(&r->interval_us, latency_us);
}

static void client_closed(void *arg)
{
    pp_run *r = arg;
    r->client = NULL;
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->stats, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
}

static void maybe_close_client(pp_run *r)
{
    if (r->client != NULL && r->handles_closed == r->handle_count)
        pc_client_close(r->client, client_closed, r);
}

static void one_closed(int status, void *arg)
{
    pp_run *r = arg;
    (void)status;
    r->handles_closed++;
    maybe_close_client(r);
}

static void stop(pp_run *r, int status)
{
    if (r->stopping)
        return;
    r->stopping = true;
    if (status != MG_OK && r->status == MG_OK)
        r->status = status;
    r->end_ns = mg_clock_mono_ns();
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->stats);
    size_t n = r->handles_ready; /* those never up count themselves as closed */
    for (size_t i = 0; i < n; i++) {
        if (r->producing && r->producers[i] != NULL)
            pc_producer_close(r->producers[i], one_closed, r);
        else if (!r->producing && r->consumers[i] != NULL)
            pc_consumer_close(r->consumers[i], one_closed, r);
    }
    maybe_close_client(r);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    pp_run *r = h->data;
    MG_INFO("perf: interrupted, stopping");
    stop(r, MG_OK);
}

/* --- produce --------------------------------------------------------------------------------- */

typedef struct send_ctx {
    pp_run *r;
    uint64_t start_ns;
} send_ctx;

static void sent(int status, const pc_message_id *id, void *arg)
{
    (void)id;
    send_ctx *x = arg;
    pp_run *r = x->r;
    if (status == MG_OK) {
        record(r, (mg_clock_mono_ns() - x->start_ns) / 1000, (size_t)r->po->size_bytes);
    } else {
        r->errors++;
        if (r->errors == 1)
            MG_WARN("perf produce: a send failed: %s", mg_strerror(status));
    }
    mg_free(x);
    if (!r->stopping && r->po->num_messages > 0 &&
        r->msgs + r->errors >= (uint64_t)r->po->num_messages)
        stop(r, MG_OK);
}

static void on_tick_produce(uv_timer_t *t)
{
    pp_run *r = t->data;
    if (r->stopping || r->handles_ready < r->handle_count)
        return;
    uint64_t now = mg_clock_mono_ns();
    if (r->duration_ms > 0 && now - r->start_ns >= (uint64_t)r->duration_ms * 1000000ull) {
        stop(r, MG_OK);
        return;
    }
    uint64_t target;
    if (r->po->rate > 0)
        target = (uint64_t)((double)(now - r->start_ns) / 1e9 * (double)r->po->rate) + 1;
    else
        target = UINT64_MAX;
    if (r->po->num_messages > 0 && target > (uint64_t)r->po->num_messages)
        target = (uint64_t)r->po->num_messages;
    /* Bounded per tick: at most every producer's outstanding limit. */
    uint64_t budget = (uint64_t)r->po->max_outstanding * r->handle_count;
    while (r->sent < target && budget-- > 0) {
        pc_producer *p = r->producers[r->next_producer];
        if (pc_producer_pending(p) >= (size_t)r->po->max_outstanding) {
            /* This producer is full: try the others once, else wait for the next tick. */
            size_t tried = 0;
            while (tried < r->handle_count && pc_producer_pending(r->producers[r->next_producer]) >=
                                                  (size_t)r->po->max_outstanding) {
                r->next_producer = (r->next_producer + 1) % r->handle_count;
                tried++;
            }
            if (tried == r->handle_count)
                break;
            p = r->producers[r->next_producer];
        }
        send_ctx *x = mg_malloc(sizeof(*x));
        if (x == NULL) {
            stop(r, MG_ENOMEM);
            return;
        }
        x->r = r;
        x->start_ns = mg_clock_mono_ns();
        pc_message m = { .payload = r->payload, .payload_len = (size_t)r->po->size_bytes };
        int rc = pc_send(p, &m, sent, x);
        if (rc == MG_EAGAIN) {
            mg_free(x);
            break;
        }
        if (rc != MG_OK) {
            mg_free(x);
            MG_ERROR("perf produce: pc_send: %s", mg_strerror(rc));
            stop(r, rc);
            return;
        }
        r->sent++;
        r->next_producer = (r->next_producer + 1) % r->handle_count;
    }
}

/* A producer or consumer is up (true: keep it), or failed (the run stops). When all are up the
 * run starts: the pacing or deadline tick every tick_ms, the progress line every interval. */
static bool handle_created(pp_run *r, int status, const char *what)
{
    if (status != MG_OK) {
        MG_ERROR("perf: cannot create a %s: %s (%s)", what, mg_strerror(status),
                 r->client ? pc_last_error(r->client) : "");
        r->handles_closed++;
        stop(r, status);
        return false;
    }
    r->handles_ready++;
    return true;
}

static void maybe_start(pp_run *r, uv_timer_cb tick, uint64_t tick_ms, int64_t interval_ms)
{
    if (r->stopping || r->handles_ready < r->handle_count)
        return;
    MG_INFO("perf: %zu %s ready", r->handle_count, r->producing ? "producers" : "consumers");
    r->start_ns = r->interval_start_ns = mg_clock_mono_ns();
    uv_timer_start(&r->tick, tick, r->producing ? 0 : tick_ms, tick_ms);
    uv_timer_start(&r->stats, on_stats, (uint64_t)interval_ms, (uint64_t)interval_ms);
}

static void producer_created(int status, pc_producer *p, void *arg)
{
    pp_run *r = arg;
    if (!handle_created(r, status, "producer"))
        return;
    r->producers[r->handles_ready - 1] = p;
    if (r->stopping)
        pc_producer_close(p, one_closed, r);
    else
        maybe_start(r, on_tick_produce, PP_TICK_MS, r->po->interval_ms);
}

/* --- consume ---------------------------------------------------------------------------------- */

static void on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    pp_run *r = arg;
    int64_t lat_ms = mg_clock_wall_ms() - m->publish_time_ms;
    record(r, lat_ms > 0 ? (uint64_t)lat_ms * 1000 : 0, m->payload_len);
    pc_ack(k, &m->id);
    if (!r->stopping && r->limit_msgs > 0 && r->msgs >= (uint64_t)r->limit_msgs)
        stop(r, MG_OK);
}

static void on_tick_consume(uv_timer_t *t)
{
    pp_run *r = t->data;
    if (!r->stopping && r->duration_ms > 0 &&
        mg_clock_mono_ns() - r->start_ns >= (uint64_t)r->duration_ms * 1000000ull)
        stop(r, MG_OK);
}

static void consumer_created(int status, pc_consumer *k, void *arg)
{
    pp_run *r = arg;
    if (!handle_created(r, status, "consumer"))
        return;
    r->consumers[r->handles_ready - 1] = k;
    if (r->stopping)
        pc_consumer_close(k, one_closed, r);
    else
        maybe_start(r, on_tick_consume, 100, r->co->interval_ms);
}

/* --- summary
 * --------------------------------------------------------------------------------------- */

static void json_latency(FILE *f, const mg_hist *h)
{
    fprintf(f,
            "{\"mean\":%.3f,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"p9999\":%.3f,"
            "\"max\":%.3f}",
            mg_hist_mean(h) / 1000.0, us_to_ms(mg_hist_percentile(h, 50)),
            us_to_ms(mg_hist_percentile(h, 95)), us_to_ms(mg_hist_percentile(h, 99)),
            us_to_ms(mg_hist_percentile(h, 99.9)), us_to_ms(mg_hist_percentile(h, 99.99)),
            us_to_ms(mg_hist_max(h)));
}

static int write_json(pp_run *r, const char *path, double secs, const mg_fio_result *fio,
                      char **topics, int topic_count)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "magnetar perf: cannot write %s\n", path);
        return MG_EIO;
    }
    double rate = secs > 0 ? (double)r->msgs / secs : 0;
    double mib = secs > 0 ? (double)r->bytes / (1024.0 * 1024.0) / secs : 0;
    fprintf(f, "{\"workload\":\"%s\",\"topics\":[", r->producing ? "produce" : "consume");
    for (int i = 0; i < topic_count; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", topics[i]);
    fprintf(f,
            "],\"seconds\":%.3f,\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"msg_per_s\":%.1f,\"mib_per_s\":%.2f,\"mbit_per_s\":%.1f,"
            "\"latency_ms\":",
            secs, r->msgs, r->bytes, r->errors, rate, mib, mib * 8 * 1.048576);
    json_latency(f, &r->total_us);
    if (r->producing) {
        const perf_produce_opts *o = r->po;
        fprintf(f,
                ",\"options\":{\"rate\":%" PRId64 ",\"size\":%" PRId64 ",\"producers\":%" PRId64
                ",\"batch_time_window_ms\":%" PRId64 ",\"batch_max_messages\":%" PRId64
                ",\"compression\":\"%s\",\"max_outstanding\":%" PRId64 "}",
                o->rate, o->size_bytes, o->producers, o->batch_ms, o->batch_max_messages,
                compression_names[o->compression], o->max_outstanding);
        if (fio != NULL && fio->ok)
            fprintf(f,
                    ",\"fio_fdatasync_write\":{\"mib_per_s\":%.2f,\"iops\":%.0f},"
                    "\"ratio_to_fio_fdatasync_mib\":%.2f",
                    fio->bw_bytes_per_s / (1024.0 * 1024.0), fio->iops,
                    fio->bw_bytes_per_s > 0 ? mib * 1024.0 * 1024.0 / fio->bw_bytes_per_s : 0);
    } else {
        const perf_consume_opts *o = r->co;
        fprintf(f,
                ",\"options\":{\"subscription\":\"%s\",\"type\":\"%s\",\"consumers\":%" PRId64
                ",\"receiver_queue_size\":%" PRId64 "}",
                o->subscriber_name, mg_tool_sub_types[o->sub_type], o->consumers, o->queue_size);
    }
    fprintf(f, "}\n");
    return fclose(f) == 0 ? MG_OK : MG_EIO;
}

static int run_setup(pp_run *r, const char *url)
{
    memset(&r->loop, 0, sizeof(r->loop));
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->tick);
    uv_timer_init(&r->loop, &r->stats);
    uv_signal_init(&r->loop, &r->sigint);
    r->tick.data = r->stats.data = r->sigint.data = r;
    uv_signal_start(&r->sigint, on_sigint, SIGINT);
    MG_TRY(mg_hist_init(&r->total_us, 7, PP_LATENCY_US_MAX));
    MG_TRY(mg_hist_init(&r->interval_us, 7, PP_LATENCY_US_MAX));
    pc_client_opts co = { .service_url = url };
    int rc = pc_client_create(&r->loop, &co, &r->client);
    if (rc != MG_OK)
        fprintf(stderr, "magnetar perf: cannot create a client for %s: %s\n", url, mg_strerror(rc));
    return rc;
}

static void run_teardown(pp_run *r)
{
    if (r->client != NULL) {
        stop(r, MG_OK);
        uv_run(&r->loop, UV_RUN_DEFAULT);
    }
    mg_tool_loop_close(&r->loop);
    mg_hist_destroy(&r->total_us);
    mg_hist_destroy(&r->interval_us);
}

/* Starts one producer or consumer on topic; its callback counts it as up or failed. */
typedef int (*pp_start_fn)(pp_run *r, const char *topic);

static int start_producer(pp_run *r, const char *topic)
{
    const perf_produce_opts *o = r->po;
    pc_producer_opts po = {
        .topic = topic,
        .batching = o->batch_ms > 0,
        .batch_max_messages = (uint32_t)o->batch_max_messages,
        .batch_max_bytes = (uint32_t)o->batch_max_bytes,
        .batch_max_delay_ms = (uint32_t)o->batch_ms,
        .compression = (pc_compression)o->compression,
        .max_pending_messages = (uint32_t)o->max_outstanding,
        .fail_if_full = true,
    };
    return pc_producer_create(r->client, &po, producer_created, r);
}

static int start_consumer(pp_run *r, const char *topic)
{
    const perf_consume_opts *o = r->co;
    pc_consumer_opts co = {
        .topic = topic,
        .subscription = o->subscriber_name,
        .type = (pc_sub_type)o->sub_type,
        .initial_position = (pc_initial_position)o->position,
        .receiver_queue_size = (uint32_t)o->queue_size,
        .on_message = on_message,
        .arg = r,
    };
    return pc_subscribe(r->client, &co, consumer_created, r);
}

/* The run itself: per_topic producers or consumers (start_one) on every topic of res, the loop
 * until the run stops, then the aggregated line on stdout. Returns the run's length in seconds
 * (0 when it never started). */
static double run_topics(pp_run *r, const mg_cmd_spec *spec, const mg_config_result *res,
                         int64_t per_topic, pp_start_fn start_one)
{
    r->handle_count = (size_t)res->positional_count * (size_t)per_topic;
    for (int t = 0; t < res->positional_count; t++) {
        for (int64_t i = 0; i < per_topic; i++) {
            int rc = start_one(r, res->positional[t]);
            if (rc != MG_OK) {
                fprintf(stderr, "%s: %s: %s\n", spec->name, res->positional[t], mg_strerror(rc));
                r->handles_closed++;
                stop(r, rc);
            }
        }
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    double secs =
        r->end_ns > r->start_ns && r->start_ns > 0 ? (double)(r->end_ns - r->start_ns) / 1e9 : 0;
    print_line(r,
               r->producing ? "Aggregated throughput produced" : "Aggregated throughput received",
               secs, r->msgs, r->bytes, &r->total_us, stdout);
    return secs;
}

int mg_perf_produce(int argc, char **argv)
{
    perf_produce_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&perf_produce_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    if (o.fio_dir != NULL && !mg_fio_installed())
        return mg_tool_usage_error(&perf_produce_spec, &o,
                                   "--fio-dir given but fio is not installed (Debian package fio)");
    pp_run *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_EXIT_FAILURE;
    r->producing = true;
    r->po = &o;
    r->duration_ms = o.duration_ms;
    r->payload = mg_malloc((size_t)o.size_bytes);
    int status = MG_EXIT_FAILURE;
    if (r->payload == NULL || run_setup(r, o.service_url) != MG_OK)
        goto out;
    for (int64_t i = 0; i < o.size_bytes; i++)
        r->payload[i] = (uint8_t)('a' + (i * 7) % 26); /* compressible like text */
    double secs = run_topics(r, &perf_produce_spec, &res, o.producers, start_producer);
    mg_fio_result fio = { 0 };
    if (r->status == MG_OK && o.fio_dir != NULL) {
        mg_fio_sync_write(o.fio_dir, &fio);
        if (fio.ok) {
            double ours = secs > 0 ? (double)r->bytes / secs : 0;
            printf("fio 4 KiB fdatasync writes in %s: %.1f MiB/s (%.0f IOPS); produce: %.1f "
                   "MiB/s = %.1fx fio\n",
                   o.fio_dir, fio.bw_bytes_per_s / 1048576.0, fio.iops, ours / 1048576.0,
                   fio.bw_bytes_per_s > 0 ? ours / fio.bw_bytes_per_s : 0);
        } else {
            fprintf(stderr, "magnetar perf produce: fio unavailable: %s\n", fio.error);
        }
    }
    if (r->errors > 0)
        fprintf(stderr, "magnetar perf produce: %" PRIu64 " sends failed\n", r->errors);
    status = r->status == MG_OK && r->errors == 0 ? MG_EXIT_OK : MG_EXIT_FAILURE;
    if (o.json != NULL && write_json(r, o.json, secs, o.fio_dir ? &fio : NULL, res.positional,
                                     res.positional_count) != MG_OK)
        status = MG_EXIT_FAILURE;
out:
    run_teardown(r);
    mg_free(r->payload);
    mg_free(r);
    mg_config_free(&perf_produce_spec, &o);
    return status;
}

int mg_perf_consume(int argc, char **argv)
{
    perf_consume_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&perf_consume_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    pp_run *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_EXIT_FAILURE;
    r->co = &o;
    r->duration_ms = o.duration_ms;
    r->limit_msgs = o.num_messages;
    int status = MG_EXIT_FAILURE;
    if (run_setup(r, o.service_url) != MG_OK)
        goto out;
    double secs = run_topics(r, &perf_consume_spec, &res, o.consumers, start_consumer);
    status = r->status == MG_OK ? MG_EXIT_OK : MG_EXIT_FAILURE;
    if (o.json != NULL &&
        write_json(r, o.json, secs, NULL, res.positional, res.positional_count) != MG_OK)
        status = MG_EXIT_FAILURE;
out:
    run_teardown(r);
    mg_free(r);
    mg_config_free(&perf_consume_spec, &o);
    return status;
}
