/*
 * perf_nats_drain: the NATS JetStream side of the catch-up benchmark (perf/catchup.sh,
 * ../shared/BENCHMARKS.md workload 1 and its peers). Two modes, both against a nats-server
 * with JetStream on loopback, through libnats (Debian package libnats-dev):
 *
 *   publish  creates a file-storage stream (--stream, one --subject) if it does not exist and
 *            publishes --count messages of --size bytes with asynchronous publish (at most
 *            --max-pending awaiting their ack), then waits for every ack. It reports msg/s and
 *            MB/s and the stream's own message and byte counts afterwards.
 *   drain    reads the stream from its first message with an ephemeral pull consumer, fetching
 *            --batch messages per request, until --count messages (0: as many as the stream
 *            holds when the drain starts). With --ack all, the last message of every batch is
 *            acknowledged (ack policy "all", which covers the batch), so the consumer's state
 *            moves as a durable subscription's would, at one ack per batch; --ack none uses the
 *            ack policy "none".
 *
 * The drain's MB/s is bytes delivered over the time from the subscription being ready to the
 * last message, the same span `magnetar perf consume` reports, so the two can be divided; the
 * time from the first to the last message is written too. MB are 10^6 bytes.
 *
 * Every --stats-interval a progress line goes to stdout ("<mode>: t=S s: R msg/s, M MB/s, N
 * messages"), where t is seconds since the subscription (or the first publish) started; the
 * summary line and --json FILE come at the end.
 *
 * Bounds: each run ends at --count or after --timeout seconds, whichever comes first; every
 * blocking libnats call is given a timeout within that; the server is never reconnected to (a
 * lost connection ends the run with an error). Exit status 0 when --count messages were
 * published and acknowledged (or drained), 1 otherwise, 2 for a usage error.
 */
#include "perf_args.h"

#include <nats/nats.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ND_API_WAIT_MS   10000 /* stream and consumer requests: a loaded 2-core machine */
#define ND_CONNECT_MS    5000
#define ND_FETCH_WAIT_MS 2000              /* one fetch; the run's own --timeout bounds the whole */
#define ND_STALL_WAIT_MS 1000              /* one wait for a free async-publish slot, retried */
#define ND_SIZE_MAX      (8 * 1024 * 1024) /* nats-server's largest max_payload */
#define ND_BATCH_MAX     100000
#define ND_PENDING_MAX   1000000
#define ND_TIMEOUT_S_MAX (7 * 24 * 3600)
#define ND_STATS_MS_MIN  100

typedef struct nd_opts {
    const char *mode;
    const char *url;
    const char *stream;
    const char *subject;
    const char *json;
    int64_t count;
    int64_t size_bytes;
    int64_t max_pending;
    int64_t batch;
    int64_t timeout_s;
    int64_t stats_interval_ms;
    bool ack_all;
} nd_opts;

typedef struct nd_result {
    int64_t messages;
    int64_t bytes;
    int64_t errors;
    int64_t pending;
    double seconds;               /* from start (first publish, or subscription ready) to end */
    double seconds_first_to_last; /* drain only */
    bool complete;
    uint64_t stream_msgs;
    uint64_t stream_bytes;
    bool stream_known;
    char error[256];
} nd_result;

/* Async publish failures arrive on a libnats thread. */
static atomic_int_fast64_t publish_errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: perf_nats_drain publish|drain [options]\n"
            "\n"
            "publish: create a file-storage JetStream stream if missing and publish --count\n"
            "messages of --size bytes with asynchronous publish, waiting for every ack.\n"
            "drain: read the stream from its first message with a pull consumer as fast as it\n"
            "goes, until --count messages (0: what the stream holds when the drain starts).\n"
            "\n"
            "Options:\n"
            "  --url URL             server (default nats://127.0.0.1:4222)\n"
            "  --stream NAME         stream (default CATCHUP)\n"
            "  --subject SUBJECT     the stream's subject (default catchup.b)\n"
            "  --count N             messages to publish or drain (publish: required)\n"
            "  --size BYTES          message size, publish (default 1024)\n"
            "  --max-pending N       async publishes awaiting their ack (default 20000)\n"
            "  --batch N             messages per fetch, drain (default 5000)\n"
            "  --ack all|none        drain: ack the last message of each batch under ack\n"
            "                        policy all, or use ack policy none (default all)\n"
            "  --timeout S           end the run after S seconds whatever happened (default 600)\n"
            "  --stats-interval MS   time between progress lines (default 1000)\n"
            "  --json FILE           also write the figures as one JSON object to FILE\n"
            "  --help                this help\n"
            "\n"
            "MB are 10^6 bytes. Exit status: 0 complete, 1 incomplete or failed, 2 usage.\n");
}

static bool parse_int(const char *name, const char *v, int64_t min, int64_t max, int64_t *out)
{
    return perf_parse_int("perf_nats_drain", name, v, min, max, out);
}

/* Returns 0 to run, 1 to exit 0 (--help), 2 on a usage error. */
static int parse_args(int argc, char **argv, nd_opts *o)
{
    *o = (nd_opts){ .url = "nats://127.0.0.1:4222",
                    .stream = "CATCHUP",
                    .subject = "catchup.b",
                    .count = -1,
                    .size_bytes = 1024,
                    .max_pending = 20000,
                    .batch = 5000,
                    .timeout_s = 600,
                    .stats_interval_ms = 1000,
                    .ack_all = true };
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
        } else if (v == NULL) {
            fprintf(stderr, "perf_nats_drain: %s needs a value (see --help)\n", a);
            return 2;
        } else if (strcmp(a, "--url") == 0) {
            o->url = v;
        } else if (strcmp(a, "--stream") == 0) {
            o->stream = v;
        } else if (strcmp(a, "--subject") == 0) {
            o->subject = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = v;
        } else if (strcmp(a, "--count") == 0) {
            ok = parse_int(a, v, 0, INT64_MAX / 2, &o->count);
        } else if (strcmp(a, "--size") == 0) {
            ok = parse_int(a, v, 1, ND_SIZE_MAX, &o->size_bytes);
        } else if (strcmp(a, "--max-pending") == 0) {
            ok = parse_int(a, v, 1, ND_PENDING_MAX, &o->max_pending);
        } else if (strcmp(a, "--batch") == 0) {
            ok = parse_int(a, v, 1, ND_BATCH_MAX, &o->batch);
        } else if (strcmp(a, "--timeout") == 0) {
            ok = parse_int(a, v, 1, ND_TIMEOUT_S_MAX, &o->timeout_s);
        } else if (strcmp(a, "--stats-interval") == 0) {
            ok = parse_int(a, v, ND_STATS_MS_MIN, 3600 * 1000, &o->stats_interval_ms);
        } else if (strcmp(a, "--ack") == 0) {
            if (strcmp(v, "all") == 0 || strcmp(v, "none") == 0) {
                o->ack_all = strcmp(v, "all") == 0;
            } else {
                fprintf(stderr, "perf_nats_drain: --ack is all or none\n");
                ok = false;
            }
        } else {
            fprintf(stderr, "perf_nats_drain: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok)
            return 2;
        i++;
    }
    if (o->mode == NULL || (strcmp(o->mode, "publish") != 0 && strcmp(o->mode, "drain") != 0)) {
        fprintf(stderr, "perf_nats_drain: say publish or drain (see --help)\n");
        return 2;
    }
    if (strcmp(o->mode, "publish") == 0 && o->count <= 0) {
        fprintf(stderr, "perf_nats_drain: publish needs --count N > 0\n");
        return 2;
    }
    if (o->count < 0)
        o->count = 0;
    return 0;
}

static void set_error(nd_result *r, const char *what, natsStatus s)
{
    if (r->error[0] != '\0')
        return;
    const char *last = nats_GetLastError(NULL);
    snprintf(r->error, sizeof(r->error), "%s: %s%s%s", what, natsStatus_GetText(s),
             last != NULL && last[0] != '\0' ? ": " : "", last != NULL ? last : "");
}

/* Progress every --stats-interval: rate over the interval just ended. */
typedef struct nd_stats {
    const char *mode;
    double start_s, last_s;
    int64_t last_msgs, last_bytes;
    double interval_s;
} nd_stats;

static void stats_tick(nd_stats *st, double now, int64_t msgs, int64_t bytes)
{
    if (now - st->last_s < st->interval_s)
        return;
    double dt = now - st->last_s;
    printf("%s: t=%.3f s: %.0f msg/s, %.1f MB/s, %" PRId64 " messages\n", st->mode,
           now - st->start_s, (double)(msgs - st->last_msgs) / dt,
           (double)(bytes - st->last_bytes) / dt / 1e6, msgs);
    fflush(stdout);
    st->last_s = now;
    st->last_msgs = msgs;
    st->last_bytes = bytes;
}

static void stream_state(jsCtx *js, const nd_opts *o, nd_result *r)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, js, o->stream, NULL, &jerr) == NATS_OK && si != NULL) {
        r->stream_msgs = si->State.Msgs;
        r->stream_bytes = si->State.Bytes;
        r->stream_known = true;
    }
    jsStreamInfo_Destroy(si);
}

static void on_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    (void)closure;
    atomic_fetch_add(&publish_errors, 1);
}

static int ensure_stream(jsCtx *js, const nd_opts *o, nd_result *r)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, js, o->stream, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK)
        return 0;
    if (s != NATS_NOT_FOUND) {
        set_error(r, "stream info", s);
        return -1;
    }
    const char *subjects[1] = { o->subject };
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = o->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage; /* the peer of a bookie's entry logs, not a memory stream */
    sc.Retention = js_LimitsPolicy;
    sc.Replicas = 1;
    si = NULL;
    s = js_AddStream(&si, js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        set_error(r, "add stream", s);
        return -1;
    }
    return 0;
}

static int run_publish(jsCtx *js, const nd_opts *o, nd_result *r)
{
    if (ensure_stream(js, o, r) != 0)
        return -1;
    char *payload = malloc((size_t)o->size_bytes);
    if (payload == NULL) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return -1;
    }
    /* Text-like bytes, as `magnetar perf produce` sends; neither side compresses. */
    for (int64_t i = 0; i < o->size_bytes; i++)
        payload[i] = (char)('a' + (i * 7) % 26);
    double start = now_s();
    double deadline = start + (double)o->timeout_s;
    nd_stats st = { .mode = "publish",
                    .start_s = start,
                    .last_s = start,
                    .interval_s = (double)o->stats_interval_ms / 1000.0 };
    int64_t sent = 0;
    natsStatus s = NATS_OK;
    while (sent < o->count) {
        double now = now_s();
        if (now >= deadline)
            break;
        s = js_PublishAsync(js, o->subject, payload, (int)o->size_bytes, NULL);
        if (s == NATS_TIMEOUT) /* stalled at --max-pending: wait again, within --timeout */
            continue;
        if (s != NATS_OK) {
            set_error(r, "publish", s);
            break;
        }
        sent++;
        stats_tick(&st, now, sent, sent * o->size_bytes);
    }
    double left_ms = (deadline - now_s()) * 1000.0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = left_ms > 1 ? (int64_t)left_ms : 1;
    natsStatus cs = js_PublishAsyncComplete(js, &po);
    r->seconds = now_s() - start;
    if (cs != NATS_OK) {
        natsMsgList pending = { 0 };
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
            r->pending = pending.Count;
            natsMsgList_Destroy(&pending);
        }
        if (cs != NATS_TIMEOUT)
            set_error(r, "publish complete", cs);
    }
    r->errors = (int64_t)atomic_load(&publish_errors);
    r->messages = sent - r->errors - r->pending;
    if (r->messages < 0)
        r->messages = 0;
    r->bytes = r->messages * o->size_bytes;
    r->complete = r->messages == o->count;
    if (!r->complete && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error),
                 "%" PRId64 " of %" PRId64 " acknowledged within --timeout %" PRId64 " s (%" PRId64
                 " failed, %" PRId64 " pending)",
                 r->messages, o->count, o->timeout_s, r->errors, r->pending);
    stream_state(js, o, r);
    free(payload);
    return r->complete ? 0 : -1;
}

static int run_drain(jsCtx *js, const nd_opts *o, nd_result *r)
{
    int64_t want = o->count;
    stream_state(js, o, r);
    if (!r->stream_known) {
        snprintf(r->error, sizeof(r->error), "stream %s not found", o->stream);
        return -1;
    }
    if (want == 0)
        want = (int64_t)r->stream_msgs;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = o->stream;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = o->ack_all ? js_AckAll : js_AckNone;
    so.Config.ReplayPolicy = js_ReplayInstant;
    /* The server's default (1000 unacknowledged) would cap a fetch below --batch. */
    so.Config.MaxAckPending = o->batch * 4;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&sub, js, o->subject, NULL, NULL, &so, &jerr);
    if (s != NATS_OK) {
        set_error(r, "pull subscribe", s);
        return -1;
    }
    double start = now_s();
    double deadline = start + (double)o->timeout_s;
    double first = 0, last = 0;
    nd_stats st = { .mode = "drain",
                    .start_s = start,
                    .last_s = start,
                    .interval_s = (double)o->stats_interval_ms / 1000.0 };
    while (r->messages < want) {
        double now = now_s();
        if (now >= deadline)
            break;
        double left_ms = (deadline - now) * 1000.0;
        int64_t wait_ms = left_ms < ND_FETCH_WAIT_MS ? (int64_t)left_ms + 1 : ND_FETCH_WAIT_MS;
        int64_t batch = want - r->messages < o->batch ? want - r->messages : o->batch;
        natsMsgList list = { 0 };
        s = natsSubscription_Fetch(&list, sub, (int)batch, wait_ms, &jerr);
        if (s == NATS_TIMEOUT) /* nothing within wait_ms: try again until --timeout */
            continue;
        if (s != NATS_OK) {
            set_error(r, "fetch", s);
            break;
        }
        for (int i = 0; i < list.Count; i++)
            r->bytes += natsMsg_GetDataLength(list.Msgs[i]);
        r->messages += list.Count;
        if (list.Count > 0) {
            last = now_s();
            if (first == 0)
                first = last;
            if (o->ack_all) {
                s = natsMsg_Ack(list.Msgs[list.Count - 1], NULL);
                if (s != NATS_OK)
                    set_error(r, "ack", s);
            }
        }
        natsMsgList_Destroy(&list);
        if (s != NATS_OK)
            break;
        stats_tick(&st, now_s(), r->messages, r->bytes);
    }
    r->seconds = (last > 0 ? last : now_s()) - start;
    r->seconds_first_to_last = last > first ? last - first : 0;
    r->complete = r->messages >= want;
    if (!r->complete && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error),
                 "%" PRId64 " of %" PRId64 " messages within --timeout %" PRId64 " s", r->messages,
                 want, o->timeout_s);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return r->complete ? 0 : -1;
}

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

static int write_json(const nd_opts *o, const nd_result *r)
{
    FILE *f = fopen(o->json, "w");
    if (f == NULL) {
        fprintf(stderr, "perf_nats_drain: cannot write %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    double mb_s = r->seconds > 0 ? (double)r->bytes / 1e6 / r->seconds : 0;
    fprintf(f, "{\"mode\":");
    json_string(f, o->mode);
    fprintf(f, ",\"stream\":");
    json_string(f, o->stream);
    fprintf(f,
            ",\"complete\":%s,\"messages\":%" PRId64 ",\"bytes\":%" PRId64
            ",\"seconds\":%.3f,\"msg_per_s\":%.1f,\"mb_per_s\":%.2f",
            r->complete ? "true" : "false", r->messages, r->bytes, r->seconds,
            r->seconds > 0 ? (double)r->messages / r->seconds : 0, mb_s);
    if (strcmp(o->mode, "drain") == 0)
        fprintf(f,
                ",\"seconds_first_to_last\":%.3f,\"mb_per_s_first_to_last\":%.2f,\"ack\":\"%s\""
                ",\"batch\":%" PRId64,
                r->seconds_first_to_last,
                r->seconds_first_to_last > 0 ? (double)r->bytes / 1e6 / r->seconds_first_to_last
                                             : 0,
                o->ack_all ? "all" : "none", o->batch);
    else
        fprintf(f, ",\"errors\":%" PRId64 ",\"pending\":%" PRId64 ",\"max_pending\":%" PRId64,
                r->errors, r->pending, o->max_pending);
    if (r->stream_known)
        fprintf(f, ",\"stream_msgs\":%" PRIu64 ",\"stream_bytes\":%" PRIu64, r->stream_msgs,
                r->stream_bytes);
    else
        fprintf(f, ",\"stream_msgs\":null,\"stream_bytes\":null");
    fprintf(f, ",\"error\":");
    if (r->error[0] != '\0')
        json_string(f, r->error);
    else
        fprintf(f, "null");
    fprintf(f, "}\n");
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    nd_opts o;
    int p = parse_args(argc, argv, &o);
    if (p != 0)
        return p == 1 ? 0 : 2;

    nd_result r = { 0 };
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    int rc = -1;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, o.url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(opts, ND_CONNECT_MS);
    if (s == NATS_OK) /* a lost server ends the run rather than stalling it */
        s = natsOptions_SetAllowReconnect(opts, false);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, "perf_nats_drain");
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK) {
        set_error(&r, "connect", s);
        goto out;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = ND_API_WAIT_MS;
    jo.PublishAsync.MaxPending = o.max_pending;
    jo.PublishAsync.StallWait = ND_STALL_WAIT_MS;
    jo.PublishAsync.ErrHandler = on_publish_error;
    s = natsConnection_JetStream(&js, nc, &jo);
    if (s != NATS_OK) {
        set_error(&r, "jetstream context", s);
        goto out;
    }
    rc = strcmp(o.mode, "publish") == 0 ? run_publish(js, &o, &r) : run_drain(js, &o, &r);

out:;
    double mb_s = r.seconds > 0 ? (double)r.bytes / 1e6 / r.seconds : 0;
    printf("%s %s: %" PRId64 " messages, %.1f MB in %.3f s: %.0f msg/s, %.1f MB/s%s\n",
           strcmp(o.mode, "publish") == 0 ? "published to" : "drained from", o.stream, r.messages,
           (double)r.bytes / 1e6, r.seconds, r.seconds > 0 ? (double)r.messages / r.seconds : 0,
           mb_s, r.complete ? "" : " (INCOMPLETE)");
    if (r.error[0] != '\0')
        fprintf(stderr, "perf_nats_drain: %s\n", r.error);
    if (o.json != NULL && write_json(&o, &r) != 0)
        rc = -1;
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return rc == 0 ? 0 : 1;
}
