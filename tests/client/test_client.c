/*
 * The C Pulsar client (src/client/client.h) against a real broker: every test starts
 * `magnetar standalone` (binary from MG_BIN) on free loopback ports with its data under a fresh
 * directory in /var/tmp, drives one client on its own libuv loop, and stops the standalone at
 * the end (the suite's fini kills it with SIGKILL whatever happened and removes the directory).
 * Every wait runs the loop with a deadline; no test depends on timing beyond those bounds.
 *
 * Cases: single messages and batches in order with keys, properties and event times; every
 * compression codec, batched and not, byte for byte; Shared splitting messages between two
 * consumers; Failover active-consumer changes; Key_Shared per-key order; individual, batch-index
 * and cumulative acks surviving a resubscription (acked not redelivered, unacked redelivered);
 * a nack redelivered with redelivery_count 1; seek to the earliest message and by publish time;
 * readers from EARLIEST and from a message id, inclusive and exclusive (plain and batch ids);
 * GET_LAST_MESSAGE_ID; unsubscribe; the pending-queue limits (fail-fast at exactly
 * max_pending_messages, then blocking with its own bound); pause and resume; refusals
 * (ProducerBusy, ConsumerBusy) with the broker's text; a partitioned topic; client close failing
 * what is pending; a broker restart (SIGTERM, same data and ports) during which the producer's
 * sends wait and complete afterwards and the consumer goes on where it was.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "client/client.h"
#include "common/error.h"
#include "common/log.h"
#include "support/client_sync.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "sends.h"
#include "support/sa_harness.h"

#define WAIT_MS  10000 /* an answer, a message */
#define QUIET_MS 300   /* "nothing more arrives" is checked over this long */
#define MSGS_MAX 2048  /* messages one sink records */

/* ---- the standalone process ---------------------------------------------------------------- */

static sah_standalone g_sa; /* support/sa_harness.h */
static bool g_passed;

/* SIGTERM and a clean exit within the bound. */
static void sa_stop(void)
{
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
}

/* ---- the loop and the client ------------------------------------------------------------------
 */

static uv_loop_t g_loop;
static bool g_loop_open;
static pc_client *g_client;

static void client_open(void)
{
    mg_log_set_level(MG_LOG_WARN);
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    g_loop_open = true;
    g_client = cs_client_open(&g_loop, g_sa.broker_port, 10000);
}

/* Closes the client and requires every libuv handle it had to be gone. */
static void client_close(void)
{
    cs_client_close(&g_loop, g_client, WAIT_MS);
    g_client = NULL;
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    g_loop_open = false;
}

/* ---- producers ----------------------------------------------------------------------------- */

static pc_producer *producer_open(const pc_producer_opts *o)
{
    created c = { 0 };
    cr_assert_eq(pc_producer_create(g_client, o, producer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "producer on %s not created",
              o->topic);
    cr_assert_eq(c.status, MG_OK, "producer on %s: %s (%s)", o->topic, mg_strerror(c.status),
                 pc_last_error(g_client));
    return c.obj;
}

static void wait_sends(sendrec *recs, size_t n)
{
    sends_wait(&g_loop, recs, n, WAIT_MS);
}

static int send_text(pc_producer *p, const char *text, const char *key, sendrec *rec)
{
    pc_message m = { .payload = text, .payload_len = strlen(text), .key = key };
    return pc_send(p, &m, sent_cb, rec);
}

static void producer_close_sync(pc_producer *p)
{
    cs_producer_close(&g_loop, p, WAIT_MS);
}

/* ---- consumers ------------------------------------------------------------------------------ */

typedef struct rmsg {
    pc_message_id id;
    uint8_t *payload;
    size_t len;
    char key[64];
    bool has_key;
    size_t nprops;
    char props[4][2][32];
    uint32_t redelivery;
    int64_t publish_time;
    int64_t event_time;
    char producer[64];
    char topic[256];
} rmsg;

typedef struct sink {
    pc_consumer *k;
    rmsg *msgs;
    size_t count;
    bool auto_ack;
    int actives[16]; /* on_active values in order (1 / 0) */
    size_t active_count;
    bool ended;
} sink;

static void sink_init(sink *s)
{
    memset(s, 0, sizeof(*s));
    s->msgs = calloc(MSGS_MAX, sizeof(rmsg));
    cr_assert_not_null(s->msgs);
}

static void sink_reset(sink *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->msgs[i].payload);
    s->count = 0;
}

static void sink_free(sink *s)
{
    sink_reset(s);
    free(s->msgs);
    s->msgs = NULL;
}

static void on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    sink *s = arg;
    cr_assert_lt(s->count, MSGS_MAX);
    rmsg *r = &s->msgs[s->count++];
    memset(r, 0, sizeof(*r));
    r->id = m->id;
    r->len = m->payload_len;
    r->payload = malloc(m->payload_len + 1);
    cr_assert_not_null(r->payload);
    memcpy(r->payload, m->payload, m->payload_len);
    r->payload[m->payload_len] = 0;
    if (m->key != NULL) {
        r->has_key = true;
        snprintf(r->key, sizeof(r->key), "%s", m->key);
        cr_assert_eq(m->key_len, strlen(m->key));
    }
    r->nprops = m->property_count;
    for (size_t i = 0; i < m->property_count && i < 4; i++) {
        snprintf(r->props[i][0], sizeof(r->props[i][0]), "%s", m->properties[i].key);
        snprintf(r->props[i][1], sizeof(r->props[i][1]), "%s", m->properties[i].value);
    }
    r->redelivery = m->redelivery_count;
    r->publish_time = m->publish_time_ms;
    r->event_time = m->event_time_ms;
    snprintf(r->producer, sizeof(r->producer), "%s", m->producer_name);
    snprintf(r->topic, sizeof(r->topic), "%s", m->topic);
    if (s->auto_ack)
        cr_assert_eq(pc_ack(k, &m->id), MG_OK);
}

static void on_active(pc_consumer *k, bool active, void *arg)
{
    (void)k;
    sink *s = arg;
    if (s->active_count < 16)
        s->actives[s->active_count++] = active ? 1 : 0;
}

static void on_end(pc_consumer *k, void *arg)
{
    (void)k;
    ((sink *)arg)->ended = true;
}

/* Subscribes with o (callbacks filled in for s); returns the status of the creation. */
static int consumer_try(pc_consumer_opts *o, sink *s)
{
    o->on_message = on_message;
    o->on_active = on_active;
    o->on_end = on_end;
    o->arg = s;
    created c = { 0 };
    cr_assert_eq(pc_subscribe(g_client, o, consumer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS),
              "subscription to %s not answered", o->topic);
    s->k = c.obj;
    if (c.status == MG_OK)
        cr_assert_not_null(s->k);
    else
        cr_assert_null(s->k);
    return c.status;
}

static void consumer_open(pc_consumer_opts *o, sink *s)
{
    int rc = consumer_try(o, s);
    cr_assert_eq(rc, MG_OK, "subscribe to %s: %s (%s)", o->topic, mg_strerror(rc),
                 pc_last_error(g_client));
}

static void done_cb(int status, void *arg)
{
    int *st = arg;
    *st = status;
}

static bool status_set(void *arg)
{
    return *(int *)arg != 1;
}

static void consumer_close_sync(sink *s)
{
    int st = 1;
    pc_consumer_close(s->k, done_cb, &st);
    cr_assert(mgt_run_until(&g_loop, status_set, &st, WAIT_MS), "consumer not closed");
    cr_assert_eq(st, MG_OK);
    s->k = NULL;
}

typedef struct count_wait {
    const sink *s;
    size_t want;
} count_wait;

static bool count_reached(void *arg)
{
    count_wait *w = arg;
    return w->s->count >= w->want;
}

/* Waits for at least n messages in s. */
static void wait_count(const sink *s, size_t n)
{
    count_wait w = { s, n };
    cr_assert(mgt_run_until(&g_loop, count_reached, &w, WAIT_MS), "got %zu messages of %zu",
              s->count, n);
}

/* Waits for n messages, then QUIET_MS more, and requires exactly n. */
static void wait_exactly(const sink *s, size_t n)
{
    wait_count(s, n);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(s->count, n, "expected exactly %zu messages, got %zu", n, s->count);
}

static bool id_eq(const pc_message_id *a, const pc_message_id *b)
{
    return a->ledger_id == b->ledger_id && a->entry_id == b->entry_id &&
           a->batch_index == b->batch_index && a->batch_size == b->batch_size &&
           a->partition == b->partition;
}

static void produce_n(pc_producer *p, const char *prefix, size_t n, sendrec *recs)
{
    for (size_t i = 0; i < n; i++) {
        char text[64];
        snprintf(text, sizeof(text), "%s-%zu", prefix, i);
        memset(&recs[i], 0, sizeof(recs[i]));
        cr_assert_eq(send_text(p, text, NULL, &recs[i]), MG_OK);
    }
    wait_sends(recs, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(recs[i].status, MG_OK, "send %zu: %s", i, mg_strerror(recs[i].status));
}

/* Subscribes with o (into s, initialised here), produces n messages "<prefix>-<i>" on p (recs)
 * and waits until s holds exactly those n. */
static void subscribe_and_fill(pc_producer *p, pc_consumer_opts *o, sink *s, const char *prefix,
                               size_t n, sendrec *recs)
{
    sink_init(s);
    consumer_open(o, s);
    produce_n(p, prefix, n, recs);
    wait_exactly(s, n);
}

/* Subscribes "s" (Exclusive) on topic from the earliest message into s (initialised here); with
 * auto_ack, s acknowledges every message as it comes. */
static void subscribe_earliest(const char *topic, sink *s, bool auto_ack)
{
    sink_init(s);
    s->auto_ack = auto_ack;
    consumer_open(&(pc_consumer_opts){ .topic = topic,
                                       .subscription = "s",
                                       .initial_position = PC_INITIAL_EARLIEST },
                  s);
}

/* An Exclusive subscription "s" on topic from the earliest message, acks grouped for 10 ms. */
static pc_consumer_opts acking_subscription(const char *topic)
{
    return (pc_consumer_opts){ .topic = topic,
                               .subscription = "s",
                               .initial_position = PC_INITIAL_EARLIEST,
                               .ack_group_ms = 10 };
}

/* Messages of the acknowledgement tests. */
#define ACKED_N 10

/* Subscribes s (initialised here) with acking_subscription(topic), sends ACKED_N messages
 * "<prefix>-<i>" through p (their receipts in recs) and waits for all of them on s; returns the
 * subscription's options, for resubscribe. */
static pc_consumer_opts subscribe_acking(pc_producer *p, const char *topic, sink *s,
                                         const char *prefix, sendrec recs[ACKED_N])
{
    pc_consumer_opts co = acking_subscription(topic);
    subscribe_and_fill(p, &co, s, prefix, ACKED_N, recs);
    return co;
}

/* Lets the grouped acks reach the broker, closes s's consumer and subscribes again with o: s then
 * receives what the broker kept for the subscription. */
static void resubscribe(pc_consumer_opts *o, sink *s)
{
    mgt_run_for(&g_loop, 100);
    consumer_close_sync(s);
    sink_reset(s);
    consumer_open(o, s);
}

/* ---- suite --------------------------------------------------------------------------------------
 */

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN); /* as any libuv program: a closed peer is an error, not a signal */
    g_passed = false;
    g_send_order = 0;
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    client_open();
}

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

/* The clean end of a test: the client closes with nothing left on the loop, the broker stops
 * cleanly. */
static void finish(void)
{
    client_close();
    sa_stop();
    g_passed = true;
}

/* The usual end of a test with one producer and one consumer: both closed, then finish. */
static void finish_with(pc_producer *p, sink *s)
{
    producer_close_sync(p);
    consumer_close_sync(s);
    sink_free(s);
    finish();
}

TestSuite(client, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* ---- the tests
 * ------------------------------------------------------------------------------------ */

Test(client, single_messages_in_order_with_keys_and_properties)
{
    pc_producer *p =
        producer_open(&(pc_producer_opts){ .topic = "single", .producer_name = "p-single" });
    sink s;
    sink_init(&s);
    consumer_open(&(pc_consumer_opts){ .topic = "single",
                                       .subscription = "s1",
                                       .initial_position = PC_INITIAL_EARLIEST },
                  &s);
    enum { N = 10 };
    sendrec recs[N] = { 0 };
    for (int i = 0; i < N; i++) {
        char text[32], key[16], val[16];
        snprintf(text, sizeof(text), "message %d", i);
        snprintf(key, sizeof(key), "k-%d", i);
        snprintf(val, sizeof(val), "%d", i);
        pc_property props[2] = { { "i", val }, { "kind", "single" } };
        pc_message m = { .payload = text,
                         .payload_len = strlen(text),
                         .key = i % 2 == 0 ? key : NULL,
                         .properties = props,
                         .property_count = 2,
                         .event_time_ms = i % 3 == 0 ? 1000 + i : 0 };
        cr_assert_eq(pc_send(p, &m, sent_cb, &recs[i]), MG_OK);
    }
    cr_assert_eq(pc_producer_pending(p), N);
    wait_sends(recs, N);
    cr_assert_eq(pc_producer_pending(p), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(recs[i].status, MG_OK);
        cr_assert_eq(recs[i].order, i, "callbacks in send order");
        cr_assert_eq(recs[i].id.batch_index, -1);
        cr_assert_eq(recs[i].id.batch_size, 0);
        cr_assert_eq(recs[i].id.partition, -1);
        if (i > 0)
            cr_assert_gt(pc_message_id_cmp(&recs[i].id, &recs[i - 1].id), 0);
    }
    wait_exactly(&s, N);
    int64_t t0 = sah_wall_ms();
    for (int i = 0; i < N; i++) {
        const rmsg *r = &s.msgs[i];
        char text[32];
        snprintf(text, sizeof(text), "message %d", i);
        cr_assert_str_eq((char *)r->payload, text);
        cr_assert(id_eq(&r->id, &recs[i].id), "message %d has the id its send got", i);
        cr_assert_eq(r->has_key, i % 2 == 0);
        if (i % 2 == 0) {
            char key[16];
            snprintf(key, sizeof(key), "k-%d", i);
            cr_assert_str_eq(r->key, key);
        }
        cr_assert_eq(r->nprops, 2);
        cr_assert_str_eq(r->props[0][0], "i");
        char val[16];
        snprintf(val, sizeof(val), "%d", i);
        cr_assert_str_eq(r->props[0][1], val);
        cr_assert_str_eq(r->props[1][0], "kind");
        cr_assert_str_eq(r->props[1][1], "single");
        cr_assert_eq(r->event_time, i % 3 == 0 ? 1000 + i : 0);
        cr_assert_str_eq(r->producer, "p-single");
        cr_assert_str_eq(r->topic, "persistent://public/default/single");
        cr_assert(r->publish_time > t0 - 60000 && r->publish_time <= t0 + 1000);
        cr_assert_eq(r->redelivery, 0);
    }
    char f[64];
    pc_message_id_format(&recs[0].id, f, sizeof(f));
    char want[64];
    snprintf(want, sizeof(want), "%lld:%lld:-1:-1", (long long)recs[0].id.ledger_id,
             (long long)recs[0].id.entry_id);
    cr_assert_str_eq(f, want);
    finish_with(p, &s);
}

Test(client, batches_carry_indexes_and_sizes)
{
    pc_producer *p = producer_open(&(pc_producer_opts){
        .topic = "batches", .batching = true, .batch_max_messages = 4, .batch_max_delay_ms = 50 });
    sink s;
    subscribe_earliest("batches", &s, false);
    enum { N = 10 };
    sendrec recs[N] = { 0 };
    for (int i = 0; i < N; i++) {
        char text[32], key[16];
        snprintf(text, sizeof(text), "batched %d", i);
        snprintf(key, sizeof(key), "key%d", i % 3);
        pc_property prop = { "n", text };
        pc_message m = { .payload = text,
                         .payload_len = strlen(text),
                         .key = key,
                         .properties = &prop,
                         .property_count = 1,
                         .event_time_ms = 500 + i };
        cr_assert_eq(pc_send(p, &m, sent_cb, &recs[i]), MG_OK);
    }
    wait_sends(recs, N);
    /* 4 + 4 by count, then 2 after the delay. */
    static const int sizes[N] = { 4, 4, 4, 4, 4, 4, 4, 4, 2, 2 };
    for (int i = 0; i < N; i++) {
        cr_assert_eq(recs[i].status, MG_OK);
        cr_assert_eq(recs[i].order, i);
        cr_assert_eq(recs[i].id.batch_index, i % 4, "message %d: index %d", i,
                     recs[i].id.batch_index);
        cr_assert_eq(recs[i].id.batch_size, sizes[i]);
        if (i % 4 != 0) {
            cr_assert_eq(recs[i].id.ledger_id, recs[i - 1].id.ledger_id);
            cr_assert_eq(recs[i].id.entry_id, recs[i - 1].id.entry_id);
        } else if (i > 0) {
            cr_assert_eq(recs[i].id.entry_id, recs[i - 1].id.entry_id + 1);
        }
    }
    wait_exactly(&s, N);
    for (int i = 0; i < N; i++) {
        const rmsg *r = &s.msgs[i];
        char text[32], key[16];
        snprintf(text, sizeof(text), "batched %d", i);
        snprintf(key, sizeof(key), "key%d", i % 3);
        cr_assert_str_eq((char *)r->payload, text);
        cr_assert(id_eq(&r->id, &recs[i].id));
        cr_assert_str_eq(r->key, key);
        cr_assert_eq(r->nprops, 1);
        cr_assert_str_eq(r->props[0][1], text);
        cr_assert_eq(r->event_time, 500 + i);
    }
    finish_with(p, &s);
}

/* Payload i of a compression round: compressible text, a stretch of noise, various sizes. */
static size_t make_payload(uint8_t *dst, size_t i)
{
    static const size_t sizes[] = { 0, 1, 100, 5000, 60000, 3 };
    size_t n = sizes[i % 6];
    uint32_t x = (uint32_t)(i * 2654435761u + 1);
    for (size_t j = 0; j < n; j++) {
        if (j % 97 < 60) {
            dst[j] = (uint8_t)("the quick brown fox "[j % 20]);
        } else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            dst[j] = (uint8_t)x;
        }
    }
    return n;
}

Test(client, every_codec_round_trips_byte_for_byte)
{
    static const char *const names[] = { "none", "lz4", "zlib", "zstd", "snappy" };
    static uint8_t buf[6][60000];
    size_t lens[6];
    for (size_t i = 0; i < 6; i++)
        lens[i] = make_payload(buf[i], i);
    for (int codec = PC_COMPRESSION_NONE; codec <= PC_COMPRESSION_SNAPPY; codec++) {
        for (int batching = 0; batching <= 1; batching++) {
            char topic[64];
            snprintf(topic, sizeof(topic), "comp-%s-%d", names[codec], batching);
            pc_producer *p = producer_open(&(pc_producer_opts){ .topic = topic,
                                                                .compression = codec,
                                                                .batching = batching,
                                                                .batch_max_delay_ms = 20 });
            sink s;
            sink_init(&s);
            consumer_open(&(pc_consumer_opts){ .topic = topic,
                                               .subscription = "s",
                                               .initial_position = PC_INITIAL_EARLIEST },
                          &s);
            sendrec recs[6] = { 0 };
            for (size_t i = 0; i < 6; i++) {
                pc_message m = { .payload = buf[i], .payload_len = lens[i] };
                cr_assert_eq(pc_send(p, &m, sent_cb, &recs[i]), MG_OK);
            }
            wait_sends(recs, 6);
            for (size_t i = 0; i < 6; i++)
                cr_assert_eq(recs[i].status, MG_OK, "%s: send %zu: %s", topic, i,
                             mg_strerror(recs[i].status));
            if (batching)
                cr_assert_eq(recs[5].id.batch_size, 6, "%s: one batch of 6", topic);
            wait_exactly(&s, 6);
            for (size_t i = 0; i < 6; i++) {
                cr_assert_eq(s.msgs[i].len, lens[i], "%s: message %zu length", topic, i);
                cr_assert(memcmp(s.msgs[i].payload, buf[i], lens[i]) == 0, "%s: message %zu bytes",
                          topic, i);
            }
            producer_close_sync(p);
            consumer_close_sync(&s);
            sink_free(&s);
        }
    }
    finish();
}

Test(client, shared_subscription_splits_messages)
{
    sink a, b;
    sink_init(&a);
    sink_init(&b);
    a.auto_ack = b.auto_ack = true;
    consumer_open(&(pc_consumer_opts){ .topic = "shared",
                                       .subscription = "sh",
                                       .type = PC_SUB_SHARED,
                                       .consumer_name = "a",
                                       .receiver_queue_size = 4 },
                  &a);
    consumer_open(&(pc_consumer_opts){ .topic = "shared",
                                       .subscription = "sh",
                                       .type = PC_SUB_SHARED,
                                       .consumer_name = "b",
                                       .receiver_queue_size = 4 },
                  &b);
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "shared" });
    enum { N = 40 };
    sendrec recs[N];
    produce_n(p, "shared", N, recs);
    count_wait wa = { &a, 0 };
    (void)wa;
    int64_t deadline = sah_now_ms() + WAIT_MS;
    while (a.count + b.count < N && sah_now_ms() < deadline)
        mgt_run_for(&g_loop, 20);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(a.count + b.count, N, "a %zu + b %zu", a.count, b.count);
    cr_assert_gt(a.count, 0);
    cr_assert_gt(b.count, 0);
    bool seen[N] = { false };
    for (int w = 0; w < 2; w++) {
        const sink *s = w == 0 ? &a : &b;
        for (size_t i = 0; i < s->count; i++) {
            int n = -1;
            cr_assert_eq(sscanf((char *)s->msgs[i].payload, "shared-%d", &n), 1);
            cr_assert(n >= 0 && n < N && !seen[n], "message %d twice", n);
            seen[n] = true;
        }
    }
    producer_close_sync(p);
    consumer_close_sync(&a);
    consumer_close_sync(&b);
    sink_free(&a);
    sink_free(&b);
    finish();
}

static bool actives_at_least(void *arg)
{
    count_wait *w = arg;
    return w->s->active_count >= w->want;
}

Test(client, failover_reports_the_active_consumer)
{
    sink a, b;
    sink_init(&a);
    sink_init(&b);
    consumer_open(&(pc_consumer_opts){ .topic = "failover",
                                       .subscription = "fo",
                                       .type = PC_SUB_FAILOVER,
                                       .consumer_name = "a" },
                  &a);
    count_wait wa = { &a, 1 };
    cr_assert(mgt_run_until(&g_loop, actives_at_least, &wa, WAIT_MS), "a heard nothing");
    cr_assert_eq(a.actives[0], 1, "a is active alone");
    consumer_open(&(pc_consumer_opts){ .topic = "failover",
                                       .subscription = "fo",
                                       .type = PC_SUB_FAILOVER,
                                       .consumer_name = "b" },
                  &b);
    count_wait wb = { &b, 1 };
    cr_assert(mgt_run_until(&g_loop, actives_at_least, &wb, WAIT_MS), "b heard nothing");
    cr_assert_eq(b.actives[b.active_count - 1], 0, "b is not active while a is");
    cr_assert_eq(a.actives[a.active_count - 1], 1, "a stays active");
    /* Messages go to a only. */
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "failover" });
    sendrec recs[5];
    produce_n(p, "fo", 5, recs);
    wait_exactly(&a, 5);
    cr_assert_eq(b.count, 0);
    /* a leaves: b becomes active and gets what a did not acknowledge. */
    size_t before = b.active_count;
    consumer_close_sync(&a);
    wb.want = before + 1;
    cr_assert(mgt_run_until(&g_loop, actives_at_least, &wb, WAIT_MS), "b was not told");
    cr_assert_eq(b.actives[b.active_count - 1], 1, "b is active now");
    wait_count(&b, 5);
    cr_assert_str_eq((char *)b.msgs[0].payload, "fo-0");
    producer_close_sync(p);
    consumer_close_sync(&b);
    sink_free(&a);
    sink_free(&b);
    finish();
}

Test(client, key_shared_keeps_per_key_order)
{
    sink a, b;
    sink_init(&a);
    sink_init(&b);
    a.auto_ack = b.auto_ack = true;
    consumer_open(
        &(pc_consumer_opts){
            .topic = "ks", .subscription = "ks", .type = PC_SUB_KEY_SHARED, .consumer_name = "a" },
        &a);
    consumer_open(
        &(pc_consumer_opts){
            .topic = "ks", .subscription = "ks", .type = PC_SUB_KEY_SHARED, .consumer_name = "b" },
        &b);
    pc_producer *p = producer_open(
        &(pc_producer_opts){ .topic = "ks", .batching = true, .batch_max_messages = 3 });
    enum { N = 60, KEYS = 12 };
    sendrec recs[N] = { 0 };
    for (int i = 0; i < N; i++) {
        char text[32], key[16];
        snprintf(key, sizeof(key), "key-%d", i % KEYS);
        snprintf(text, sizeof(text), "%d %d", i % KEYS, i);
        cr_assert_eq(send_text(p, text, key, &recs[i]), MG_OK);
    }
    wait_sends(recs, N);
    int64_t deadline = sah_now_ms() + WAIT_MS;
    while (a.count + b.count < N && sah_now_ms() < deadline)
        mgt_run_for(&g_loop, 20);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(a.count + b.count, N);
    int owner[KEYS], last[KEYS];
    for (int k = 0; k < KEYS; k++)
        owner[k] = -1, last[k] = -1;
    for (int w = 0; w < 2; w++) {
        const sink *s = w == 0 ? &a : &b;
        for (size_t i = 0; i < s->count; i++) {
            int key = -1, n = -1;
            cr_assert_eq(sscanf((char *)s->msgs[i].payload, "%d %d", &key, &n), 2);
            cr_assert(owner[key] == -1 || owner[key] == w, "key %d went to both consumers", key);
            owner[key] = w;
            cr_assert_gt(n, last[key], "key %d out of order (%d after %d)", key, n, last[key]);
            last[key] = n;
        }
    }
    producer_close_sync(p);
    consumer_close_sync(&a);
    consumer_close_sync(&b);
    sink_free(&a);
    sink_free(&b);
    finish();
}

Test(client, individual_acks_survive_a_resubscription)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "acks" });
    sink s;
    enum { N = ACKED_N };
    sendrec recs[N];
    pc_consumer_opts co = subscribe_acking(p, "acks", &s, "ack", recs);
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(pc_ack(s.k, &s.msgs[i].id), MG_OK);
    resubscribe(&co, &s);
    wait_exactly(&s, N / 2);
    for (int i = 0; i < N / 2; i++) {
        char text[32];
        snprintf(text, sizeof(text), "ack-%d", 2 * i + 1);
        cr_assert_str_eq((char *)s.msgs[i].payload, text, "redelivered: the unacked ones");
        cr_assert(id_eq(&s.msgs[i].id, &recs[2 * i + 1].id));
    }
    finish_with(p, &s);
}

Test(client, batch_index_acks_survive_a_resubscription)
{
    pc_producer *p = producer_open(&(pc_producer_opts){
        .topic = "back", .batching = true, .batch_max_messages = 10, .batch_max_delay_ms = 1000 });
    sink s;
    enum { N = ACKED_N };
    sendrec recs[N];
    pc_consumer_opts co = subscribe_acking(p, "back", &s, "b", recs);
    cr_assert_eq(recs[9].id.batch_size, 10);
    /* Two flushes: 0..2 then 3, 5, 7 — the broker ANDs their sets. */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pc_ack(s.k, &s.msgs[i].id), MG_OK);
    mgt_run_for(&g_loop, 100);
    for (int i = 3; i < 8; i += 2)
        cr_assert_eq(pc_ack(s.k, &s.msgs[i].id), MG_OK);
    resubscribe(&co, &s);
    static const int left[] = { 4, 6, 8, 9 };
    wait_exactly(&s, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s.msgs[i].id.batch_index, left[i]);
        cr_assert_eq(s.msgs[i].id.batch_size, 10);
    }
    /* All of them: the entry is gone. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pc_ack(s.k, &s.msgs[i].id), MG_OK);
    resubscribe(&co, &s);
    wait_exactly(&s, 0);
    finish_with(p, &s);
}

Test(client, cumulative_ack_then_resubscription)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "cum" });
    sink s;
    enum { N = ACKED_N };
    sendrec recs[N];
    pc_consumer_opts co = subscribe_acking(p, "cum", &s, "c", recs);
    cr_assert_eq(pc_ack_cumulative(s.k, &s.msgs[3].id), MG_OK);
    cr_assert_eq(pc_ack_cumulative(s.k, &s.msgs[5].id), MG_OK);
    cr_assert_eq(pc_ack_cumulative(s.k, &s.msgs[2].id), MG_OK); /* older: no effect */
    resubscribe(&co, &s);
    wait_exactly(&s, 4);
    for (int i = 0; i < 4; i++) {
        char text[16];
        snprintf(text, sizeof(text), "c-%d", 6 + i);
        cr_assert_str_eq((char *)s.msgs[i].payload, text);
    }
    /* Cumulative acks are for Exclusive and Failover only. */
    sink sh;
    sink_init(&sh);
    consumer_open(&(pc_consumer_opts){ .topic = "cum",
                                       .subscription = "shared",
                                       .type = PC_SUB_SHARED,
                                       .initial_position = PC_INITIAL_EARLIEST },
                  &sh);
    wait_count(&sh, 1);
    cr_assert_eq(pc_ack_cumulative(sh.k, &sh.msgs[0].id), MG_EINVAL);
    producer_close_sync(p);
    consumer_close_sync(&s);
    consumer_close_sync(&sh);
    sink_free(&s);
    sink_free(&sh);
    finish();
}

Test(client, nack_is_redelivered_with_count_one)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "nack" });
    sink s;
    sendrec recs[3];
    subscribe_and_fill(p,
                       &(pc_consumer_opts){ .topic = "nack",
                                            .subscription = "s",
                                            .type = PC_SUB_SHARED,
                                            .nack_delay_ms = 100,
                                            .initial_position = PC_INITIAL_EARLIEST },
                       &s, "n", 3, recs);
    cr_assert_eq(pc_ack(s.k, &s.msgs[0].id), MG_OK);
    cr_assert_eq(pc_ack(s.k, &s.msgs[2].id), MG_OK);
    cr_assert_eq(pc_nack(s.k, &s.msgs[1].id), MG_OK);
    wait_exactly(&s, 4);
    cr_assert_str_eq((char *)s.msgs[3].payload, "n-1");
    cr_assert(id_eq(&s.msgs[3].id, &recs[1].id));
    cr_assert_eq(s.msgs[3].redelivery, 1);
    finish_with(p, &s);
}

static void seek_done(int status, void *arg)
{
    *(int *)arg = status;
}

Test(client, seek_to_earliest_and_by_time)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "seek" });
    sink s;
    subscribe_earliest("seek", &s, true);
    sendrec recs[10];
    produce_n(p, "a", 5, recs);
    mgt_run_for(&g_loop, 50);
    int64_t middle = sah_wall_ms();
    mgt_run_for(&g_loop, 50);
    produce_n(p, "b", 5, recs + 5);
    wait_exactly(&s, 10);
    mgt_run_for(&g_loop, 200); /* the acks reach the broker */
    sink_reset(&s);
    int st = 1;
    cr_assert_eq(pc_seek(s.k, &PC_MESSAGE_ID_EARLIEST, seek_done, &st), MG_OK);
    cr_assert_eq(pc_seek(s.k, &PC_MESSAGE_ID_EARLIEST, seek_done, &st), MG_EAGAIN);
    cr_assert(mgt_run_until(&g_loop, status_set, &st, WAIT_MS));
    cr_assert_eq(st, MG_OK);
    wait_exactly(&s, 10);
    cr_assert_str_eq((char *)s.msgs[0].payload, "a-0");
    cr_assert_str_eq((char *)s.msgs[9].payload, "b-4");
    mgt_run_for(&g_loop, 200);
    sink_reset(&s);
    st = 1;
    cr_assert_eq(pc_seek_time(s.k, middle, seek_done, &st), MG_OK);
    cr_assert(mgt_run_until(&g_loop, status_set, &st, WAIT_MS));
    cr_assert_eq(st, MG_OK);
    wait_exactly(&s, 5);
    for (int i = 0; i < 5; i++) {
        char text[16];
        snprintf(text, sizeof(text), "b-%d", i);
        cr_assert_str_eq((char *)s.msgs[i].payload, text);
    }
    finish_with(p, &s);
}

/* A reader from start (inclusive or not); returns its sink after the expected count. */
static void reader_check(const char *topic, pc_message_id start, bool inclusive,
                         const sendrec *recs, size_t first, size_t n_total)
{
    sink s;
    sink_init(&s);
    consumer_open(
        &(pc_consumer_opts){
            .topic = topic, .reader = true, .start_id = start, .start_inclusive = inclusive },
        &s);
    wait_exactly(&s, n_total - first);
    for (size_t i = 0; i < n_total - first; i++)
        cr_assert(id_eq(&s.msgs[i].id, &recs[first + i].id),
                  "reader from %lld:%lld:%d (%s): message %zu", (long long)start.ledger_id,
                  (long long)start.entry_id, start.batch_index,
                  inclusive ? "inclusive" : "exclusive", i);
    consumer_close_sync(&s);
    sink_free(&s);
}

Test(client, readers_from_earliest_and_from_ids)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "reader" });
    sendrec recs[8];
    produce_n(p, "r", 8, recs);
    reader_check("reader", PC_MESSAGE_ID_EARLIEST, false, recs, 0, 8);
    reader_check("reader", recs[3].id, true, recs, 3, 8);
    reader_check("reader", recs[3].id, false, recs, 4, 8);
    /* Batch ids: a batch of 5, then readers from inside it. */
    pc_producer *bp = producer_open(&(pc_producer_opts){ .topic = "breader",
                                                         .batching = true,
                                                         .batch_max_messages = 5,
                                                         .batch_max_delay_ms = 1000 });
    sendrec brecs[10];
    produce_n(bp, "br", 10, brecs);
    cr_assert_eq(brecs[7].id.batch_index, 2);
    reader_check("breader", brecs[7].id, true, brecs, 7, 10);
    reader_check("breader", brecs[7].id, false, brecs, 8, 10);
    reader_check("breader", brecs[2].id, false, brecs, 3, 10);
    /* A reader at LATEST sees only what comes after it. */
    sink s;
    sink_init(&s);
    consumer_open(
        &(pc_consumer_opts){ .topic = "reader", .reader = true, .start_id = PC_MESSAGE_ID_LATEST },
        &s);
    wait_exactly(&s, 0);
    sendrec more[2];
    produce_n(p, "late", 2, more);
    wait_exactly(&s, 2);
    cr_assert_str_eq((char *)s.msgs[0].payload, "late-0");
    consumer_close_sync(&s);
    sink_free(&s);
    producer_close_sync(p);
    producer_close_sync(bp);
    finish();
}

typedef struct last_rec {
    bool done;
    int status;
    pc_message_id id;
} last_rec;

static void got_last(int status, const pc_message_id *id, void *arg)
{
    last_rec *l = arg;
    l->done = true;
    l->status = status;
    if (id != NULL)
        l->id = *id;
}

Test(client, get_last_message_id)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "last" });
    sink s;
    sink_init(&s);
    consumer_open(&(pc_consumer_opts){ .topic = "last", .subscription = "s" }, &s);
    sendrec recs[3];
    produce_n(p, "l", 3, recs);
    last_rec l = { 0 };
    cr_assert_eq(pc_get_last_message_id(s.k, got_last, &l), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &l.done, WAIT_MS));
    cr_assert_eq(l.status, MG_OK);
    cr_assert_eq(l.id.ledger_id, recs[2].id.ledger_id);
    cr_assert_eq(l.id.entry_id, recs[2].id.entry_id);
    finish_with(p, &s);
}

Test(client, unsubscribe_deletes_the_subscription)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "unsub" });
    sink s;
    sink_init(&s);
    pc_consumer_opts co = { .topic = "unsub",
                            .subscription = "gone",
                            .initial_position = PC_INITIAL_EARLIEST };
    consumer_open(&co, &s);
    sendrec recs[3];
    produce_n(p, "u", 3, recs);
    wait_exactly(&s, 3);
    int st = 1;
    cr_assert_eq(pc_unsubscribe(s.k, done_cb, &st), MG_OK);
    cr_assert(mgt_run_until(&g_loop, status_set, &st, WAIT_MS));
    cr_assert_eq(st, MG_OK);
    /* A subscription of that name starts afresh (at the latest message). */
    sink_reset(&s);
    co.initial_position = PC_INITIAL_LATEST;
    consumer_open(&co, &s);
    wait_exactly(&s, 0);
    sendrec more[1];
    produce_n(p, "after", 1, more);
    wait_exactly(&s, 1);
    cr_assert_str_eq((char *)s.msgs[0].payload, "after-0");
    finish_with(p, &s);
}

Test(client, pending_limit_fails_fast_at_exactly_max)
{
    pc_producer *p = producer_open(
        &(pc_producer_opts){ .topic = "limits", .max_pending_messages = 5, .fail_if_full = true });
    sendrec recs[6] = { 0 };
    for (int i = 0; i < 5; i++)
        cr_assert_eq(send_text(p, "x", NULL, &recs[i]), MG_OK, "send %d", i);
    cr_assert_eq(send_text(p, "x", NULL, &recs[5]), MG_EAGAIN);
    cr_assert_eq(pc_producer_pending(p), 5);
    wait_sends(recs, 5);
    cr_assert(!recs[5].done, "a refused send never calls back");
    cr_assert_eq(pc_producer_pending(p), 0);
    cr_assert_eq(send_text(p, "x", NULL, &recs[5]), MG_OK, "room again");
    wait_sends(recs + 5, 1);
    producer_close_sync(p);

    /* Blocking: 5 admitted, 5 more held (callbacks delayed, in order), then MG_EAGAIN. */
    pc_producer *q =
        producer_open(&(pc_producer_opts){ .topic = "limits", .max_pending_messages = 5 });
    sendrec held[11] = { 0 };
    g_send_order = 0;
    for (int i = 0; i < 10; i++) {
        char text[16];
        snprintf(text, sizeof(text), "h-%d", i);
        cr_assert_eq(send_text(q, text, NULL, &held[i]), MG_OK, "send %d", i);
    }
    cr_assert_eq(send_text(q, "over", NULL, &held[10]), MG_EAGAIN);
    cr_assert_eq(pc_producer_pending(q), 10);
    wait_sends(held, 10);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(held[i].status, MG_OK);
        cr_assert_eq(held[i].order, i);
        if (i > 0)
            cr_assert_gt(pc_message_id_cmp(&held[i].id, &held[i - 1].id), 0);
    }
    /* A payload larger than the broker's max_message_size is refused. */
    size_t big_len = 6u * 1024 * 1024;
    void *big = calloc(1, big_len);
    cr_assert_not_null(big);
    pc_message m = { .payload = big, .payload_len = big_len };
    cr_assert_eq(pc_send(q, &m, sent_cb, &held[10]), MG_EINVAL);
    free(big);
    producer_close_sync(q);
    finish();
}

Test(client, pause_holds_messages_until_resume)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "pause" });
    sink s;
    sink_init(&s);
    consumer_open(
        &(pc_consumer_opts){ .topic = "pause", .subscription = "s", .receiver_queue_size = 10 },
        &s);
    pc_consumer_pause(s.k);
    sendrec recs[20];
    produce_n(p, "p", 20, recs);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(s.count, 0, "nothing while paused");
    pc_consumer_resume(s.k);
    cr_assert_eq(s.count, 0, "resume hands messages out from the loop, not inside the call");
    wait_exactly(&s, 20);
    for (int i = 0; i < 20; i++) {
        char text[16];
        snprintf(text, sizeof(text), "p-%d", i);
        cr_assert_str_eq((char *)s.msgs[i].payload, text);
    }
    finish_with(p, &s);
}

Test(client, refusals_carry_the_broker_text)
{
    pc_producer *p =
        producer_open(&(pc_producer_opts){ .topic = "busy", .access_mode = PC_ACCESS_EXCLUSIVE });
    created c = { 0 };
    cr_assert_eq(
        pc_producer_create(g_client, &(pc_producer_opts){ .topic = "busy" }, producer_created, &c),
        MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS));
    cr_assert_eq(c.status, MG_EPERM);
    cr_assert_null(c.obj);
    cr_assert_neq(pc_last_error(g_client)[0], '\0');
    sink a, b;
    sink_init(&a);
    sink_init(&b);
    consumer_open(&(pc_consumer_opts){ .topic = "busy", .subscription = "x" }, &a);
    cr_assert_eq(consumer_try(&(pc_consumer_opts){ .topic = "busy", .subscription = "x" }, &b),
                 MG_EPERM);
    cr_assert(strstr(pc_last_error(g_client), "xclusive") != NULL, "text: %s",
              pc_last_error(g_client));
    cr_assert_eq(
        pc_producer_create(g_client, &(pc_producer_opts){ .topic = "a//b" }, producer_created, &c),
        MG_EINVAL);
    producer_close_sync(p);
    consumer_close_sync(&a);
    sink_free(&a);
    sink_free(&b);
    finish();
}

Test(client, partitioned_topic_routes_and_collects)
{
    cr_assert_eq(sah_http(&g_sa, "PUT", "/admin/v2/persistent/public/default/parts/partitions", "3",
                          NULL, 0),
                 204);
    sink s;
    subscribe_earliest("parts", &s, true);
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "parts" });
    enum { N = 30 };
    sendrec recs[N] = { 0 };
    for (int i = 0; i < N; i++) {
        char text[16], key[16];
        snprintf(text, sizeof(text), "%d", i);
        snprintf(key, sizeof(key), "k%d", i % 5);
        cr_assert_eq(send_text(p, text, i < 15 ? key : NULL, &recs[i]), MG_OK);
    }
    wait_sends(recs, N);
    int used[3] = { 0 };
    int key_part[5] = { -1, -1, -1, -1, -1 };
    for (int i = 0; i < N; i++) {
        cr_assert_eq(recs[i].status, MG_OK);
        cr_assert(recs[i].id.partition >= 0 && recs[i].id.partition < 3);
        used[recs[i].id.partition]++;
        if (i < 15) {
            int k = i % 5;
            cr_assert(key_part[k] == -1 || key_part[k] == recs[i].id.partition,
                      "a key goes to one partition");
            key_part[k] = recs[i].id.partition;
        }
    }
    cr_assert(used[0] > 0 && used[1] > 0 && used[2] > 0, "round robin spreads keyless sends");
    wait_exactly(&s, N);
    bool seen[N] = { false };
    for (int i = 0; i < N; i++) {
        int n = atoi((char *)s.msgs[i].payload);
        cr_assert(!seen[n]);
        seen[n] = true;
        cr_assert(id_eq(&s.msgs[i].id, &recs[n].id));
        char want[128];
        snprintf(want, sizeof(want), "persistent://public/default/parts-partition-%d",
                 recs[n].id.partition);
        cr_assert_str_eq(s.msgs[i].topic, want);
    }
    last_rec l = { 0 };
    cr_assert_eq(pc_get_last_message_id(s.k, got_last, &l), MG_ENOTSUP);
    finish_with(p, &s);
}

Test(client, client_close_fails_pending_sends)
{
    pc_producer *p = producer_open(
        &(pc_producer_opts){ .topic = "closing", .batching = true, .batch_max_delay_ms = 5000 });
    sendrec recs[3] = { 0 };
    for (int i = 0; i < 3; i++)
        cr_assert_eq(send_text(p, "pending", NULL, &recs[i]), MG_OK);
    bool closed = false;
    pc_client_close(g_client, cs_flag_cb, &closed);
    cr_assert(!recs[0].done, "nothing is called back inside pc_client_close");
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS));
    for (int i = 0; i < 3; i++) {
        cr_assert(recs[i].done);
        cr_assert_eq(recs[i].status, MG_ECLOSED);
        cr_assert_eq(recs[i].order, i);
    }
    g_client = NULL;
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0);
    g_loop_open = false;
    sa_stop();
    g_passed = true;
}

Test(client, broker_restart_resends_and_resumes)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "restart" });
    sink s;
    sink_init(&s);
    s.auto_ack = true;
    consumer_open(&(pc_consumer_opts){ .topic = "restart",
                                       .subscription = "s",
                                       .initial_position = PC_INITIAL_EARLIEST,
                                       .ack_group_ms = 10 },
                  &s);
    sendrec recs[10] = { 0 };
    produce_n(p, "before", 5, recs);
    wait_exactly(&s, 5);
    mgt_run_for(&g_loop, 200); /* the acks reach the broker */
    sa_stop();
    /* While the broker is down: sends wait (pending), nothing fails. */
    for (int i = 5; i < 10; i++) {
        char text[16];
        snprintf(text, sizeof(text), "after-%d", i - 5);
        cr_assert_eq(send_text(p, text, NULL, &recs[i]), MG_OK);
    }
    mgt_run_for(&g_loop, 500);
    for (int i = 5; i < 10; i++)
        cr_assert(!recs[i].done, "send %d completed while the broker was down (%s)", i,
                  mg_strerror(recs[i].status));
    cr_assert_eq(pc_producer_pending(p), 5);
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "standalone not restarted: %s", mg_strerror(rc));
    sends_all a = { recs + 5, 5 };
    cr_assert(mgt_run_until(&g_loop, sends_all_done, &a, 30000),
              "sends not completed after the restart");
    for (int i = 5; i < 10; i++) {
        cr_assert_eq(recs[i].status, MG_OK, "send %d: %s", i, mg_strerror(recs[i].status));
        cr_assert_eq(recs[i].order, i);
    }
    count_wait w = { &s, 10 };
    cr_assert(mgt_run_until(&g_loop, count_reached, &w, 30000), "the consumer got %zu of 10",
              s.count);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(s.count, 10, "no redelivery of what was acknowledged");
    for (int i = 5; i < 10; i++) {
        char text[16];
        snprintf(text, sizeof(text), "after-%d", i - 5);
        cr_assert_str_eq((char *)s.msgs[i].payload, text);
    }
    finish_with(p, &s);
}

Test(client, sends_time_out_while_the_broker_is_away)
{
    pc_producer *p = producer_open(&(pc_producer_opts){
        .topic = "timeout", .send_timeout_ms = 300, .max_pending_messages = 2 });
    sendrec ok[1];
    produce_n(p, "t", 1, ok);
    sa_stop();
    /* The loop has not run since before the stop: the timeout counts from each send, not from the
     * loop's last turn (a send stamped with that stale time would fail 200 ms early). */
    usleep(200 * 1000);
    sendrec recs[4] = { 0 };
    for (int i = 0; i < 4; i++)
        cr_assert_eq(send_text(p, "lost", NULL, &recs[i]), MG_OK); /* 2 pending, 2 held */
    int64_t t0 = sah_now_ms();
    wait_sends(recs, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(recs[i].status, MG_ETIMEDOUT, "send %d: %s", i, mg_strerror(recs[i].status));
        cr_assert_eq(recs[i].order, 1 + i);
    }
    cr_assert_geq(sah_now_ms() - t0, 250, "not before the send timeout");
    cr_assert_eq(pc_producer_pending(p), 0);
    /* The producer keeps trying to reconnect; closing it while the broker is away still ends. */
    producer_close_sync(p);
    client_close();
    g_passed = true;
}

Test(client, terminated_topic_ends_consumers_and_fails_producers)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "term" });
    sink s;
    subscribe_earliest("term", &s, true);
    sendrec recs[3];
    produce_n(p, "x", 3, recs);
    wait_exactly(&s, 3);
    cr_assert_eq(
        sah_http(&g_sa, "POST", "/admin/v2/persistent/public/default/term/terminate", "", NULL, 0),
        200);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &s.ended, WAIT_MS),
              "the consumer was not told of the end");
    /* The producer learns it when it comes back: its send fails, and so do later ones. */
    sendrec late = { 0 };
    int rc = send_text(p, "late", NULL, &late);
    if (rc == MG_OK) {
        wait_sends(&late, 1);
        rc = late.status;
    }
    cr_assert_eq(rc, MG_EPERM, "a send to a terminated topic: %s", mg_strerror(rc));
    sendrec later = { 0 };
    int64_t deadline = sah_now_ms() + WAIT_MS;
    while ((rc = send_text(p, "later", NULL, &later)) == MG_OK && sah_now_ms() < deadline) {
        wait_sends(&later, 1);
        cr_assert_eq(later.status, MG_EPERM);
        later.done = false;
    }
    cr_assert_eq(rc, MG_EPERM);
    cr_assert_neq(pc_last_error(g_client)[0], '\0');
    finish_with(p, &s);
}

Test(client, redeliver_unacked_sends_everything_again)
{
    pc_producer *p = producer_open(&(pc_producer_opts){ .topic = "redeliver" });
    sink s;
    sendrec recs[3];
    subscribe_and_fill(p,
                       &(pc_consumer_opts){ .topic = "redeliver",
                                            .subscription = "s",
                                            .initial_position = PC_INITIAL_EARLIEST },
                       &s, "r", 3, recs);
    cr_assert_eq(pc_ack(s.k, &s.msgs[0].id), MG_OK);
    mgt_run_for(&g_loop, 200); /* the ack reaches the broker first */
    cr_assert_eq(pc_redeliver_unacked(s.k), MG_OK);
    wait_exactly(&s, 5);
    cr_assert_str_eq((char *)s.msgs[3].payload, "r-1");
    cr_assert_str_eq((char *)s.msgs[4].payload, "r-2");
    cr_assert_eq(s.msgs[3].redelivery, 1);
    cr_assert_eq(s.msgs[4].redelivery, 1);
    finish_with(p, &s);
}

/* A slow broker (stopped with SIGSTOP, so its socket accepts and nothing answers): the producer
 * admits max_pending_messages plus as many held ones and then refuses with MG_EAGAIN, so the
 * client's memory stays bounded whatever the application does; once the broker runs again every
 * admitted message completes, in order. */
Test(client, slow_broker_bounds_the_pending_queue)
{
    pc_producer *p = producer_open(&(pc_producer_opts){
        .topic = "slow", .max_pending_messages = 50, .send_timeout_ms = 60000 });
    cr_assert_eq(kill(g_sa.pid, SIGSTOP), 0);
    enum { TRIES = 1000 };
    static sendrec recs[TRIES];
    memset(recs, 0, sizeof(recs));
    g_send_order = 0;
    int admitted = 0, refused = 0;
    for (int i = 0; i < TRIES; i++) {
        int rc = send_text(p, "while the broker sleeps", NULL, &recs[admitted]);
        if (rc == MG_OK)
            admitted++;
        else {
            cr_assert_eq(rc, MG_EAGAIN, "send %d: %s", i, mg_strerror(rc));
            refused++;
        }
        if (i % 100 == 0)
            mgt_run_for(&g_loop, 5); /* let the client write what it can to the sleeping broker */
    }
    cr_assert_eq(admitted, 100, "50 pending + 50 held, then refused (admitted %d)", admitted);
    cr_assert_eq(refused, TRIES - 100);
    cr_assert_eq(pc_producer_pending(p), 100);
    for (int i = 0; i < admitted; i++)
        cr_assert(!recs[i].done, "nothing completes while the broker is stopped (%d)", i);
    cr_assert_eq(kill(g_sa.pid, SIGCONT), 0);
    wait_sends(recs, (size_t)admitted);
    for (int i = 0; i < admitted; i++) {
        cr_assert_eq(recs[i].status, MG_OK, "send %d: %s", i, mg_strerror(recs[i].status));
        cr_assert_eq(recs[i].order, i);
    }
    cr_assert_eq(pc_producer_pending(p), 0);
    producer_close_sync(p);
    finish();
}
