/*
 * The broker's catch-up read path (src/prefetch: tail cache and prefetch windows, through which
 * every subscription reads) end to end: `magnetar standalone` (binary from MG_BIN) started with
 * small budgets (--tail-cache-mb 1 --prefetch-mb 8) and a backlog of ~25 MiB, several times
 * both, read back with the C client on one topic, every message carrying its sequence number
 * and content derived from it, checked byte for byte.
 *
 * catchup.mixed_readers_each_get_every_message: a backlog written first (one message per entry,
 * then batches), then, on the same topic at once:
 *   - a subscription at the tail (Exclusive, Latest, subscribed before the rest is written):
 *     every message written after it, while the others catch up;
 *   - subscriptions behind by different amounts: Exclusive at Earliest (the whole topic), one
 *     sought forward (pc_seek into the backlog while messages already flow), readers started
 *     from a plain and from a batched message id;
 *   - one that pauses part way for longer than the prefetcher keeps an idle reader's window,
 *     then resumes;
 *   - one that seeks back after receiving part of the backlog: from the seek point it gets
 *     everything again, in order;
 *   - a Shared subscription with two consumers nacking some messages the first time.
 * Every Exclusive subscription and reader gets every message from its start exactly once and
 * in order; the Shared one gets every message at least once, each nacked one again with a
 * redelivery count, and ends with everything acknowledged (no backlog left). The budgets are
 * never exceeded (the peaks on /metrics), and with the prefetcher on, windows read ahead and
 * entries were served from the caches.
 *
 * catchup.closed_consumer_releases_its_window: a consumer closed in the middle of a catch-up
 * gives its window back: magnetar_prefetch_bytes falls to 0 soon after, well before the idle
 * release could have done it.
 *
 * With MG_TEST_STANDALONE_ARGS="--prefetch off" (ctest's *_prefetch_off entries) the same
 * scenarios run with on-demand reads; only the figures that need windows are then expected to
 * be zero instead. Every wait runs the loop with a deadline; every loop is bounded.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client/client.h"
#include "common/error.h"
#include "common/log.h"
#include "support/client_sync.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "support/sa_harness.h"

/* Sizes: the backlog must be several times both budgets (1 + 8 MiB) so catch-up readers cannot
 * be served from what the tail cache kept, and small enough to be written and read by eight
 * subscriptions in well under a minute on two cores, sanitizers included. */
#define PAYLOAD_BYTES  1024
#define HEADER_BYTES   16    /* "seq=0000000042  " */
#define PLAIN_COUNT    16000 /* backlog, one message per entry */
#define BATCHED_COUNT  8000  /* backlog, BATCH_MESSAGES per entry */
#define LIVE_COUNT     8000  /* written while the subscriptions read */
#define BACKLOG_COUNT  (PLAIN_COUNT + BATCHED_COUNT)
#define TOTAL_COUNT    (BACKLOG_COUNT + LIVE_COUNT)
#define BATCH_MESSAGES 32
#define SEND_INFLIGHT  500 /* sends outstanding per producer: below its pending limit */

/* Where the subscriptions behind start, and where the one that seeks back does so. */
#define SEEK_FORWARD_SEQ   8000  /* a plain message */
#define READER_PLAIN_SEQ   12000 /* a plain message */
#define READER_BATCHED_SEQ 20005 /* inside a batch, not its first message */
#define PAUSE_SEQ          10000
#define REWIND_FROM_SEQ    14000 /* received up to here, then... */
#define REWIND_TO_SEQ      4000  /* ...sought back to here */
/* Longer than the prefetcher keeps the window of a reader that stopped reading (its
 * PF_IDLE_RELEASE_MS, 5 s): the paused subscription resumes with a fresh window. */
#define PAUSE_MS           5500
/* Nacked on first receipt: the Shared subscription's messages with seq % NACK_EVERY == 3. */
#define NACK_EVERY         64
#define NACK_DELAY_MS      50
#define CUMULATIVE_EVERY   256 /* an Exclusive subscription acks cumulatively this often */

#define WAIT_MS           10000 /* an answer */
/* Bounds far above the seconds these take, for a loaded machine and a sanitizer build. */
#define WRITE_MS          60000  /* writing the backlog */
#define RUN_MS            120000 /* every subscription to the end */
#define QUIET_MS          300    /* "nothing more arrives" is checked over this long */
#define STEPS_MAX         64     /* returns of the main wait to act (seek, resume) */
#define METRICS_BYTES_MAX (4u << 20)
#define STATS_BYTES_MAX   (1u << 20)

/* The closed-consumer case: a backlog larger than the prefetch budget, part of it read. */
#define CLOSE_COUNT      12000
#define CLOSE_READ_COUNT 2000
#define CLOSE_QUEUE      200
/* The window is sampled, then the consumer closed, then its release awaited, all within the
 * idle release (5 s after the reader's last read): so the close is what released it. */
#define CLOSE_SAMPLE_MS  1500
#define CLOSE_RELEASE_MS 2500
#define IDLE_RELEASE_MS  5000 /* the prefetcher's PF_IDLE_RELEASE_MS */
#define METRICS_POLL_MS  50

/* ---- the standalone process ---------------------------------------------------------------- */

static sah_standalone g_sa;
static bool g_passed;
static bool g_prefetch_on;

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN); /* as any libuv program: a closed peer is an error, not a signal */
    mg_log_set_level(MG_LOG_WARN);
    g_passed = false;
    char mode[8];
    g_prefetch_on = !(sah_env_option("--prefetch", mode, sizeof(mode)) && strcmp(mode, "off") == 0);
    const char *const extra[] = { "--tail-cache-mb", "1", "--prefetch-mb", "8", NULL };
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
}

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

TestSuite(catchup, .init = suite_init, .fini = suite_fini, .timeout = 240);

/* ---- loop, client, producers ---------------------------------------------------------------- */

static uv_loop_t g_loop;
static pc_client *g_client;

static void client_open(void)
{
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    g_client = cs_client_open(&g_loop, g_sa.broker_port, WAIT_MS);
}

/* Closes the client, requires nothing left on the loop, and a clean stop of the standalone. */
static void finish(void)
{
    cs_client_close(&g_loop, g_client, WAIT_MS);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
    g_passed = true;
}

static pc_producer *producer_open(const pc_producer_opts *o)
{
    return cs_producer_open(&g_loop, g_client, o, WAIT_MS);
}

static void producer_close_sync(pc_producer *p)
{
    cs_producer_close(&g_loop, p, WAIT_MS);
}

/* ---- payloads: the sequence number, then bytes derived from it ------------------------------ */

static uint8_t fill_byte(uint32_t seq, size_t j)
{
    return (uint8_t)(seq * 7u + (uint32_t)j * 13u);
}

static void payload_make(uint32_t seq, uint8_t *dst)
{
    char head[HEADER_BYTES + 1];
    snprintf(head, sizeof(head), "seq=%010u  ", (unsigned)seq);
    memcpy(dst, head, HEADER_BYTES);
    for (size_t j = HEADER_BYTES; j < PAYLOAD_BYTES; j++)
        dst[j] = fill_byte(seq, j);
}

/* The message's sequence number, after checking every byte of it. */
static uint32_t payload_seq(const char *who, const pc_received *m)
{
    cr_assert_eq(m->payload_len, PAYLOAD_BYTES, "%s: a message of %zu bytes", who, m->payload_len);
    unsigned seq = 0;
    char head[HEADER_BYTES + 1];
    memcpy(head, m->payload, HEADER_BYTES);
    head[HEADER_BYTES] = '\0';
    cr_assert_eq(sscanf(head, "seq=%10u", &seq), 1, "%s: no sequence number in '%s'", who, head);
    cr_assert_lt(seq, TOTAL_COUNT, "%s: sequence number %u", who, seq);
    for (size_t j = HEADER_BYTES; j < PAYLOAD_BYTES; j++)
        cr_assert_eq(m->payload[j], fill_byte(seq, j), "%s: message %u differs at byte %zu", who,
                     seq, j);
    return seq;
}

/* The id of every message written, by sequence number: seeks and readers start at them. */
static pc_message_id g_ids[TOTAL_COUNT];

/* Writes [first, end) with at most SEND_INFLIGHT outstanding, refilled from the send callbacks
 * (which run in call order, so the n-th callback is message first + n). */
typedef struct pump {
    pc_producer *p;
    uint32_t first, next, end;
    uint32_t acked;
} pump;

static void pump_fill(pump *pu);

static void pump_sent(int status, const pc_message_id *id, void *arg)
{
    pump *pu = arg;
    uint32_t seq = pu->first + pu->acked;
    cr_assert_eq(status, MG_OK, "send of message %u: %s", seq, mg_strerror(status));
    g_ids[seq] = *id;
    pu->acked++;
    pump_fill(pu);
}

static void pump_fill(pump *pu)
{
    uint8_t payload[PAYLOAD_BYTES];
    while (pu->next < pu->end && pu->next - (pu->first + pu->acked) < SEND_INFLIGHT) {
        payload_make(pu->next, payload);
        pc_message m = { .payload = payload, .payload_len = sizeof(payload) };
        int rc = pc_send(pu->p, &m, pump_sent, pu);
        cr_assert_eq(rc, MG_OK, "pc_send of message %u: %s", pu->next, mg_strerror(rc));
        pu->next++;
    }
}

static bool pump_done(void *arg)
{
    const pump *pu = arg;
    return pu->first + pu->acked == pu->end;
}

static void pump_start(pump *pu, pc_producer *p, uint32_t first, uint32_t end)
{
    *pu = (pump){ .p = p, .first = first, .next = first, .end = end };
    pump_fill(pu);
}

static void write_all(pc_producer *p, uint32_t first, uint32_t end)
{
    pump pu;
    pump_start(&pu, p, first, end);
    cr_assert(mgt_run_until(&g_loop, pump_done, &pu, WRITE_MS), "%u of messages %u..%u written",
              pu.acked, first, end - 1);
}

/* ---- /metrics and the topic's stats -------------------------------------------------------- */

static char *metrics_get(void)
{
    char *text = malloc(METRICS_BYTES_MAX);
    cr_assert_not_null(text);
    int code = sah_http(&g_sa, "GET", "/metrics", NULL, text, METRICS_BYTES_MAX);
    cr_assert_eq(code, 200, "GET /metrics: %d (%s)", code, code < 0 ? mg_strerror(code) : "");
    return text;
}

/* The value of an unlabelled metric (its line "name value"). */
static double metric_value(const char *text, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            char *end;
            double v = strtod(line + len + 1, &end);
            cr_assert_neq(end, line + len + 1, "metric %s: no value", name);
            return v;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    cr_assert_fail("metric %s not on /metrics", name);
    return 0;
}

static double metric_now(const char *name)
{
    char *text = metrics_get();
    double v = metric_value(text, name);
    free(text);
    return v;
}

/* The budgets held: the peaks never went past the maxima, which are the flags given. */
static void check_budgets(const char *text)
{
    double tail_peak = metric_value(text, "magnetar_tail_cache_bytes_peak");
    double tail_max = metric_value(text, "magnetar_tail_cache_bytes_max");
    double pf_peak = metric_value(text, "magnetar_prefetch_bytes_peak");
    double pf_max = metric_value(text, "magnetar_prefetch_bytes_max");
    cr_assert_eq(tail_max, 1024.0 * 1024, "tail budget %.0f, --tail-cache-mb 1 given", tail_max);
    cr_assert_eq(pf_max, 8.0 * 1024 * 1024, "prefetch budget %.0f, --prefetch-mb 8 given", pf_max);
    cr_assert_leq(tail_peak, tail_max, "tail cache peak %.0f over its budget %.0f", tail_peak,
                  tail_max);
    cr_assert_leq(pf_peak, pf_max, "prefetch peak %.0f over its budget %.0f", pf_peak, pf_max);
}

/* msgBacklog of a subscription of topic, from the admin stats. */
static long long sub_backlog(const char *topic, const char *sub)
{
    char path[256], key[128];
    snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/stats", topic);
    char *body = malloc(STATS_BYTES_MAX);
    cr_assert_not_null(body);
    int code = sah_http(&g_sa, "GET", path, NULL, body, STATS_BYTES_MAX);
    cr_assert_eq(code, 200, "GET %s: %d", path, code);
    snprintf(key, sizeof(key), "\"%s\":{", sub);
    const char *at = strstr(body, key);
    cr_assert_not_null(at, "no subscription %s in %s", sub, body);
    at = strstr(at, "\"msgBacklog\":");
    cr_assert_not_null(at, "no msgBacklog for %s in %s", sub, body);
    long long backlog = strtoll(at + strlen("\"msgBacklog\":"), NULL, 10);
    free(body);
    return backlog;
}

/* ---- subscriptions that must get every message once, in order ------------------------------ */

typedef struct ordered {
    const char *name;
    pc_consumer *k;
    uint32_t next;       /* the sequence number due */
    bool seeking;        /* a seek in flight: the old position's messages may still come... */
    uint32_t stray_next; /* ...in order from where it was */
    uint32_t seek_to;    /* where the seek in flight goes */
    uint32_t pause_at;   /* pause once next reaches it; UINT32_MAX: never */
    bool paused;
    int64_t paused_ms;
    bool resumed;
    bool cumulative; /* ack cumulatively as it goes (durable subscriptions) */
    uint32_t received;
} ordered;

static void ordered_message(pc_consumer *k, const pc_received *m, void *arg)
{
    ordered *o = arg;
    uint32_t seq = payload_seq(o->name, m);
    o->received++;
    if (o->seeking) {
        cr_assert_eq(seq, o->stray_next, "%s: message %u before its seek completed, %u due",
                     o->name, seq, o->stray_next);
        o->stray_next++;
        return;
    }
    cr_assert_eq(seq, o->next, "%s: message %u where %u was due", o->name, seq, o->next);
    o->next++;
    if (o->cumulative && (o->next % CUMULATIVE_EVERY == 0 || o->next == TOTAL_COUNT))
        cr_assert_eq(pc_ack_cumulative(k, &m->id), MG_OK);
    if (o->next == o->pause_at) {
        pc_consumer_pause(k);
        o->paused = true;
        o->paused_ms = sah_now_ms();
        o->pause_at = UINT32_MAX; /* a rewind passes here again */
    }
}

static pc_consumer *subscribe(pc_consumer_opts *o)
{
    created c = { 0 };
    cr_assert_eq(pc_subscribe(g_client, o, consumer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "subscription not answered");
    cr_assert_eq(c.status, MG_OK, "subscribe: %s (%s)", mg_strerror(c.status),
                 pc_last_error(g_client));
    return c.obj;
}

/* An Exclusive subscription (or, with subscription NULL, a reader from start) on topic. */
static void ordered_open(ordered *o, const char *topic, const char *subscription,
                         pc_initial_position initial, const pc_message_id *start,
                         uint32_t first_seq)
{
    pc_consumer_opts co = { .topic = topic,
                            .subscription = subscription,
                            .type = PC_SUB_EXCLUSIVE,
                            .initial_position = initial,
                            .on_message = ordered_message,
                            .arg = o };
    if (start != NULL) {
        co.reader = true;
        co.start_id = *start;
        co.start_inclusive = true;
    }
    o->next = first_seq;
    o->pause_at = UINT32_MAX;
    o->cumulative = subscription != NULL;
    o->k = subscribe(&co);
}

static void ordered_seek_done(int status, void *arg)
{
    ordered *o = arg;
    cr_assert_eq(status, MG_OK, "%s: seek: %s", o->name, mg_strerror(status));
    /* The client dropped what it had not handed out; from here the new position's messages. */
    o->seeking = false;
    o->next = o->seek_to;
    if (o->paused) {
        o->paused = false;
        pc_consumer_resume(o->k);
    }
}

static void ordered_seek(ordered *o, uint32_t to_seq)
{
    o->seeking = true;
    o->stray_next = o->next;
    o->seek_to = to_seq;
    int rc = pc_seek(o->k, &g_ids[to_seq], ordered_seek_done, o);
    cr_assert_eq(rc, MG_OK, "%s: pc_seek: %s", o->name, mg_strerror(rc));
}

static void consumer_close_sync(pc_consumer *k)
{
    int st = cs_consumer_close(&g_loop, k, WAIT_MS);
    cr_assert_eq(st, MG_OK, "consumer close: %s", mg_strerror(st));
}

/* ---- the Shared subscription ------------------------------------------------------------------
 */

typedef struct shared_sub {
    uint8_t deliveries[TOTAL_COUNT]; /* saturating at 255 */
    bool acked[TOTAL_COUNT];
    bool nacked[TOTAL_COUNT];
    bool redelivered[TOTAL_COUNT]; /* a nacked one came again, with a redelivery count */
    uint32_t acked_count;
    uint32_t nack_count;
    uint32_t per_consumer[2];
} shared_sub;

typedef struct shared_member {
    shared_sub *s;
    int index;
} shared_member;

static void shared_message(pc_consumer *k, const pc_received *m, void *arg)
{
    shared_member *mb = arg;
    shared_sub *s = mb->s;
    uint32_t seq = payload_seq("shared", m);
    mb->s->per_consumer[mb->index]++;
    if (s->deliveries[seq] < UINT8_MAX)
        s->deliveries[seq]++;
    if (seq % NACK_EVERY == 3 && !s->nacked[seq]) {
        s->nacked[seq] = true;
        s->nack_count++;
        cr_assert_eq(pc_nack(k, &m->id), MG_OK);
        return;
    }
    if (s->nacked[seq]) {
        cr_assert_geq(m->redelivery_count, 1, "nacked message %u again with redelivery count 0",
                      seq);
        s->redelivered[seq] = true;
    }
    cr_assert_eq(pc_ack(k, &m->id), MG_OK);
    if (!s->acked[seq]) {
        s->acked[seq] = true;
        s->acked_count++;
    }
}

/* ---- the scenario ------------------------------------------------------------------------------
 */

enum { O_TAIL, O_FROM_START, O_SEEK_FORWARD, O_READER_PLAIN, O_READER_BATCHED, O_PAUSE, O_REWIND };
#define ORDERED_COUNT 7

typedef struct scene {
    ordered o[ORDERED_COUNT];
    shared_sub *shared;
    pump live;
} scene;

static bool ordered_complete(const ordered *o)
{
    return !o->seeking && o->next == TOTAL_COUNT;
}

static bool scene_complete(const scene *sc)
{
    for (int i = 0; i < ORDERED_COUNT; i++)
        if (!ordered_complete(&sc->o[i]))
            return false;
    return sc->shared->acked_count == TOTAL_COUNT && pump_done((void *)&sc->live);
}

static bool rewind_due(const scene *sc)
{
    const ordered *r = &sc->o[O_REWIND];
    return r->paused && !r->seeking;
}

static bool resume_due(const scene *sc)
{
    const ordered *p = &sc->o[O_PAUSE];
    return p->paused && !p->resumed && sah_now_ms() - p->paused_ms >= PAUSE_MS;
}

/* The main wait returns when the test has something to do, or at the end. */
static bool scene_step_due(void *arg)
{
    const scene *sc = arg;
    return rewind_due(sc) || resume_due(sc) || scene_complete(sc);
}

static void scene_report(const scene *sc)
{
    for (int i = 0; i < ORDERED_COUNT; i++) {
        const ordered *o = &sc->o[i];
        fprintf(stderr, "  %-15s next %u, received %u%s%s\n", o->name, o->next, o->received,
                o->seeking ? ", seeking" : "", o->paused ? ", paused" : "");
    }
    fprintf(stderr, "  shared          acked %u of %u, nacked %u; written %u of %u live\n",
            sc->shared->acked_count, TOTAL_COUNT, sc->shared->nack_count, sc->live.acked,
            LIVE_COUNT);
}

Test(catchup, mixed_readers_each_get_every_message)
{
    int64_t t0 = sah_now_ms();
    client_open();
    const char *topic = "catchup";
    pc_producer *plain = producer_open(&(pc_producer_opts){ .topic = topic });
    pc_producer *batched = producer_open(&(pc_producer_opts){ .topic = topic,
                                                              .batching = true,
                                                              .batch_max_messages = BATCH_MESSAGES,
                                                              .batch_max_delay_ms = 5 });
    write_all(plain, 0, PLAIN_COUNT);
    write_all(batched, PLAIN_COUNT, BACKLOG_COUNT);
    cr_assert_eq(g_ids[PLAIN_COUNT - 1].batch_index, -1);
    cr_assert_gt(g_ids[READER_BATCHED_SEQ].batch_index, 0, "the batched reader starts mid-batch");
    int64_t written_ms = sah_now_ms();

    scene *sc = calloc(1, sizeof(*sc));
    cr_assert_not_null(sc);
    sc->shared = calloc(1, sizeof(*sc->shared));
    cr_assert_not_null(sc->shared);
    static const char *const names[ORDERED_COUNT] = {
        "tail", "from-start", "seek-forward", "reader-plain", "reader-batched", "pause", "rewind"
    };
    for (int i = 0; i < ORDERED_COUNT; i++)
        sc->o[i].name = names[i];
    ordered_open(&sc->o[O_TAIL], topic, "tail", PC_INITIAL_LATEST, NULL, BACKLOG_COUNT);
    ordered_open(&sc->o[O_FROM_START], topic, "from-start", PC_INITIAL_EARLIEST, NULL, 0);
    ordered_open(&sc->o[O_SEEK_FORWARD], topic, "seek-forward", PC_INITIAL_EARLIEST, NULL, 0);
    ordered_seek(&sc->o[O_SEEK_FORWARD], SEEK_FORWARD_SEQ);
    ordered_open(&sc->o[O_READER_PLAIN], topic, NULL, PC_INITIAL_EARLIEST, &g_ids[READER_PLAIN_SEQ],
                 READER_PLAIN_SEQ);
    ordered_open(&sc->o[O_READER_BATCHED], topic, NULL, PC_INITIAL_EARLIEST,
                 &g_ids[READER_BATCHED_SEQ], READER_BATCHED_SEQ);
    ordered_open(&sc->o[O_PAUSE], topic, "pause", PC_INITIAL_EARLIEST, NULL, 0);
    sc->o[O_PAUSE].pause_at = PAUSE_SEQ;
    ordered_open(&sc->o[O_REWIND], topic, "rewind", PC_INITIAL_EARLIEST, NULL, 0);
    sc->o[O_REWIND].pause_at = REWIND_FROM_SEQ;
    shared_member members[2] = { { sc->shared, 0 }, { sc->shared, 1 } };
    pc_consumer *shared_k[2];
    for (int i = 0; i < 2; i++)
        shared_k[i] = subscribe(&(pc_consumer_opts){ .topic = topic,
                                                     .subscription = "shared",
                                                     .type = PC_SUB_SHARED,
                                                     .initial_position = PC_INITIAL_EARLIEST,
                                                     .nack_delay_ms = NACK_DELAY_MS,
                                                     .on_message = shared_message,
                                                     .arg = &members[i] });

    /* The rest is written while everyone reads; the tail subscription expects exactly it. */
    pump_start(&sc->live, plain, BACKLOG_COUNT, TOTAL_COUNT);
    int64_t deadline = sah_now_ms() + RUN_MS;
    bool rewound = false;
    for (int step = 0; step < STEPS_MAX && !scene_complete(sc); step++) {
        int64_t left = deadline - sah_now_ms();
        if (left <= 0 || !mgt_run_until(&g_loop, scene_step_due, sc, (int)left)) {
            scene_report(sc);
            cr_assert_fail("the subscriptions did not all complete within %d ms", RUN_MS);
        }
        if (rewind_due(sc)) {
            cr_assert(!rewound, "the rewound subscription paused twice");
            rewound = true;
            ordered_seek(&sc->o[O_REWIND], REWIND_TO_SEQ);
        }
        if (resume_due(sc)) {
            sc->o[O_PAUSE].resumed = true;
            sc->o[O_PAUSE].paused = false;
            pc_consumer_resume(sc->o[O_PAUSE].k);
        }
    }
    if (!scene_complete(sc)) {
        scene_report(sc);
        cr_assert_fail("the subscriptions did not complete within %d steps", STEPS_MAX);
    }
    int64_t read_ms = sah_now_ms();
    /* Nothing more: any extra message of an ordered subscription fails in its callback. */
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert(rewound && sc->o[O_PAUSE].resumed);
    for (int i = 0; i < ORDERED_COUNT; i++)
        cr_assert_eq(sc->o[i].next, TOTAL_COUNT, "%s stopped at %u", sc->o[i].name, sc->o[i].next);
    cr_assert_eq(sc->o[O_REWIND].received, TOTAL_COUNT + (REWIND_FROM_SEQ - REWIND_TO_SEQ),
                 "the rewound subscription got %u messages", sc->o[O_REWIND].received);

    const shared_sub *sh = sc->shared;
    cr_assert_eq(sh->nack_count, (TOTAL_COUNT + NACK_EVERY - 4) / NACK_EVERY);
    for (uint32_t seq = 0; seq < TOTAL_COUNT; seq++) {
        cr_assert(sh->acked[seq], "shared: message %u never acknowledged", seq);
        if (sh->nacked[seq])
            cr_assert(sh->redelivered[seq] && sh->deliveries[seq] >= 2,
                      "shared: nacked message %u not redelivered", seq);
    }
    cr_assert(sh->per_consumer[0] > 0 && sh->per_consumer[1] > 0,
              "shared: one consumer got everything (%u, %u)", sh->per_consumer[0],
              sh->per_consumer[1]);
    /* The acks reached the broker: nothing is left to deliver to the Shared subscription. */
    int64_t acked_deadline = sah_now_ms() + WAIT_MS;
    long long backlog;
    while ((backlog = sub_backlog(topic, "shared")) != 0 && sah_now_ms() < acked_deadline)
        mgt_run_for(&g_loop, 100);
    cr_assert_eq(backlog, 0, "shared: a backlog of %lld after every message was acked", backlog);

    char *text = metrics_get();
    check_budgets(text);
    /* An entry is kept only while a reader expects it: the tail subscription expected all the
     * live ones. */
    cr_assert_gt(metric_value(text, "magnetar_tail_cache_bytes_peak"), 0,
                 "the tail cache held nothing");
    double reads = metric_value(text, "magnetar_prefetch_reads_total");
    double hits = metric_value(text, "magnetar_cache_hits_total");
    double misses = metric_value(text, "magnetar_cache_misses_total");
    if (g_prefetch_on) {
        cr_assert_gt(reads, 0, "no prefetch read for subscriptions behind");
        cr_assert_gt(hits, 0, "no entry served from the caches");
    } else {
        cr_assert_eq(reads, 0, "prefetch reads with --prefetch off");
        cr_assert_gt(misses, 0, "no on-demand read with --prefetch off");
    }
    fprintf(stderr,
            "catchup (prefetch %s): backlog written in %lld ms, read by all in %lld ms; "
            "cache hits %.0f, misses %.0f, prefetch reads %.0f, tail peak %.0f, prefetch "
            "peak %.0f\n",
            g_prefetch_on ? "on" : "off", (long long)(written_ms - t0),
            (long long)(read_ms - written_ms), hits, misses, reads,
            metric_value(text, "magnetar_tail_cache_bytes_peak"),
            metric_value(text, "magnetar_prefetch_bytes_peak"));
    free(text);

    for (int i = 0; i < ORDERED_COUNT; i++)
        consumer_close_sync(sc->o[i].k);
    for (int i = 0; i < 2; i++)
        consumer_close_sync(shared_k[i]);
    producer_close_sync(plain);
    producer_close_sync(batched);
    free(sc->shared);
    free(sc);
    finish();
}

/* ---- a consumer closed during its catch-up -------------------------------------------------- */

typedef struct counter {
    uint32_t next;
    int64_t last_ms;
} counter;

static void counted_message(pc_consumer *k, const pc_received *m, void *arg)
{
    (void)k;
    counter *c = arg;
    uint32_t seq = payload_seq("closing", m);
    cr_assert_eq(seq, c->next, "closing: message %u where %u was due", seq, c->next);
    c->next++;
    c->last_ms = sah_now_ms();
}

static bool read_enough(void *arg)
{
    return ((counter *)arg)->next >= CLOSE_READ_COUNT;
}

/* Polls magnetar_prefetch_bytes (the loop is not run: the broker works on its own) until it is
 * above zero (want_held) or zero; returns whether it got there within limit_ms. */
static bool prefetch_bytes_become(bool want_held, int limit_ms, double *last)
{
    int64_t deadline = sah_now_ms() + limit_ms;
    for (;;) {
        *last = metric_now("magnetar_prefetch_bytes");
        if ((*last > 0) == want_held)
            return true;
        if (sah_now_ms() >= deadline)
            return false;
        struct timespec ts = { 0, METRICS_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
}

Test(catchup, closed_consumer_releases_its_window)
{
    client_open();
    const char *topic = "closing";
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = topic,
                                                        .batching = true,
                                                        .batch_max_messages = BATCH_MESSAGES,
                                                        .batch_max_delay_ms = 5 });
    write_all(p, 0, CLOSE_COUNT);
    producer_close_sync(p);

    counter c = { 0 };
    pc_consumer *k = subscribe(&(pc_consumer_opts){ .topic = topic,
                                                    .subscription = "s",
                                                    .initial_position = PC_INITIAL_EARLIEST,
                                                    .receiver_queue_size = CLOSE_QUEUE,
                                                    .on_message = counted_message,
                                                    .arg = &c });
    cr_assert(mgt_run_until(&g_loop, read_enough, &c, WAIT_MS), "read %u of %u", c.next,
              CLOSE_READ_COUNT);
    cr_assert_lt(c.next, CLOSE_COUNT - CLOSE_QUEUE, "the catch-up is over already");
    double held = 0;
    bool holding = prefetch_bytes_become(true, CLOSE_SAMPLE_MS, &held);
    if (g_prefetch_on)
        cr_assert(holding, "no window ahead of a consumer in the middle of its catch-up");
    else
        cr_assert(!holding, "%.0f prefetch bytes with --prefetch off", held);

    consumer_close_sync(k);
    int64_t closed_ms = sah_now_ms();
    double left = 0;
    cr_assert(prefetch_bytes_become(false, CLOSE_RELEASE_MS, &left),
              "%.0f prefetch bytes still held %d ms after the only reader closed", left,
              CLOSE_RELEASE_MS);
    int64_t released_ms = sah_now_ms();
    /* The broker's last read for this reader came at most a moment before the client's last
     * message (it reads only to fill the permits the client returns): released this soon after,
     * the window went with the close, not with the idle release. */
    cr_assert_lt(released_ms - c.last_ms, IDLE_RELEASE_MS,
                 "released %lld ms after the last read: the idle release may have done it",
                 (long long)(released_ms - c.last_ms));
    fprintf(stderr,
            "closing (prefetch %s): %.0f bytes held before the close, released within %lld ms "
            "(%lld ms after the last message received)\n",
            g_prefetch_on ? "on" : "off", held, (long long)(released_ms - closed_ms),
            (long long)(released_ms - c.last_ms));
    char *text = metrics_get();
    check_budgets(text);
    cr_assert_eq(metric_value(text, "magnetar_prefetch_inflight_bytes"), 0);
    cr_assert_eq(metric_value(text, "magnetar_prefetch_windows"), 0);
    free(text);
    finish();
}
