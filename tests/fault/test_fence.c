/*
 * A topic's ledger fenced under load, with the real process: `magnetar standalone` (MG_BIN) is
 * started, a producer keeps SEND_WINDOW messages in flight, and the topic's current ledger is
 * fenced from outside through the embedded bookie's port, as a broker taking the topic over
 * would do. Every add in flight then fails with MG_EFENCED: the broker answers SEND_ERROR,
 * closes the topic (its producers and consumers are told to look it up again), and reopens it
 * on the next lookup with a new ledger. Several rounds, then:
 *   - the standalone is still alive and answering (a use of a freed producer here once crashed
 *     it: run this test against a sanitizer build, as the test command does);
 *   - every send completed, acknowledged (the client resends what failed);
 *   - a subscription from the earliest message gets every message once, in order: no send the
 *     fenced ledger kept was reported failed (its adds in flight complete before the rest fail),
 *     and no receipt was lost to a connection the broker closed (a SEND racing our
 *     CLOSE_PRODUCER is dropped, not answered by closing the connection).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bookie/client.h"
#include "client/client.h"
#include "common/error.h"
#include "common/log.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "support/sa_harness.h"

#define ROUNDS          4
#define PER_ROUND       4000 /* messages sent in each round */
#define SEND_WINDOW     400  /* sends in flight */
#define FENCE_AFTER     1000 /* acknowledgements in a round before the fence */
#define WAIT_MS         30000
#define STATS_BYTES_MAX (64 * 1024)
#define TOTAL           (ROUNDS * PER_ROUND)

static sah_standalone g_sa;
static uv_loop_t g_loop;
static pc_client *g_client;

typedef struct pump {
    pc_producer *p;
    uint32_t next;  /* next sequence number to send */
    uint32_t until; /* send up to here (exclusive) */
    uint32_t acked;
    uint32_t failed;
    int first_error;
    uint32_t inflight;
} pump;

static void pump_fill(pump *u);

/* Per message: acknowledgements and the id of the last, for the failure messages. */
static uint8_t g_acks[TOTAL];
static pc_message_id g_ids[TOTAL];

static void sent(int status, const pc_message_id *id, void *arg)
{
    pump *u = arg;
    u->inflight--;
    if (status == MG_OK) {
        uint32_t seq = u->acked; /* completions come in send order */
        g_acks[seq]++;
        g_ids[seq] = *id;
        u->acked++;
    } else {
        if (u->failed++ == 0)
            u->first_error = status;
    }
    pump_fill(u);
}

static void pump_fill(pump *u)
{
    while (u->inflight < SEND_WINDOW && u->next < u->until) {
        char text[32];
        int n = snprintf(text, sizeof(text), "fence-%08" PRIu32, u->next);
        pc_message m = { .payload = text, .payload_len = (size_t)n };
        int rc = pc_send(u->p, &m, sent, u);
        cr_assert_eq(rc, MG_OK, "pc_send of %" PRIu32 ": %s", u->next, mg_strerror(rc));
        u->next++;
        u->inflight++;
    }
}

typedef struct counted {
    const uint32_t *have;
    uint32_t want;
} counted;

static bool reached(void *arg)
{
    counted *c = arg;
    return *c->have >= c->want;
}

/* Whether the standalone still runs (a zombie, not yet reaped by the harness, does not). */
static bool standalone_alive(void)
{
    char path[64], stat[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)g_sa.pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *end = strrchr(stat, ')'); /* "pid (comm) S ..." */
    return end != NULL && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
}

/* Fails the test with the standalone's log (a sanitizer's report is there) once it died. */
static void require_alive(const char *when)
{
    if (!standalone_alive()) {
        sah_dump_log(&g_sa);
        cr_assert_fail("the standalone died %s (its log is above)", when);
    }
}

static bool pump_idle_or_dead(void *arg)
{
    pump *u = arg;
    return (u->inflight == 0 && u->next == u->until) || !standalone_alive();
}

/* The ledger of the topic's last entry, from its internalStats ("lastConfirmedEntry":"L:E"). */
static int64_t current_ledger(const char *topic)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/internalStats", topic);
    char *body = malloc(STATS_BYTES_MAX);
    cr_assert_not_null(body);
    int code = sah_http(&g_sa, "GET", path, NULL, body, STATS_BYTES_MAX);
    cr_assert_eq(code, 200, "GET %s: %d", path, code);
    const char *key = "\"lastConfirmedEntry\":\"";
    const char *at = strstr(body, key);
    cr_assert_not_null(at, "no lastConfirmedEntry in %s", body);
    int64_t ledger = strtoll(at + strlen(key), NULL, 10);
    free(body);
    return ledger;
}

typedef struct fenced {
    bool done;
    int status;
} fenced;

static void fence_done(int status, int64_t last_entry_id, void *arg)
{
    (void)last_entry_id;
    fenced *f = arg;
    f->done = true;
    f->status = status;
}

typedef struct sink {
    uint32_t next; /* sequence number due */
    uint32_t count;
    uint32_t out_of_order;
} sink;

static void on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    sink *s = arg;
    char text[32];
    size_t n = m->payload_len < sizeof(text) - 1 ? m->payload_len : sizeof(text) - 1;
    memcpy(text, m->payload, n);
    text[n] = '\0';
    cr_assert_eq(strncmp(text, "fence-", 6), 0, "unexpected payload %s", text);
    uint32_t seq = (uint32_t)strtoul(text + 6, NULL, 10);
    if (seq != s->next && s->out_of_order++ == 0)
        cr_log_error(
            "message %u (%lld:%lld) received while %u was due; acked %u times as %lld:%lld", seq,
            (long long)m->id.ledger_id, (long long)m->id.entry_id, s->next, g_acks[seq],
            (long long)g_ids[seq].ledger_id, (long long)g_ids[seq].entry_id);
    s->next = seq + 1;
    s->count++;
    cr_assert_eq(pc_ack(k, &m->id), MG_OK);
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

static void fini(void)
{
    sah_destroy(&g_sa);
}

TestSuite(fence, .fini = fini, .timeout = 300);

Test(fence, ledger_fenced_under_load)
{
    mg_log_set_level(MG_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN); /* a write to a connection the broker closed fails, not kills */
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone start: %s", mg_strerror(rc));
    cr_assert_eq(uv_loop_init(&g_loop), 0);
    char url[64], bookie[64];
    snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", g_sa.broker_port);
    snprintf(bookie, sizeof(bookie), "127.0.0.1:%u", g_sa.bookie_port);
    pc_client_opts o = { .service_url = url, .operation_timeout_ms = 10000 };
    cr_assert_eq(pc_client_create(&g_loop, &o, &g_client), MG_OK);
    bk_client *bk;
    cr_assert_eq(bk_client_create(&g_loop, NULL, &bk), MG_OK);

    const char *topic = "fenced";
    created pc = { 0 };
    pc_producer_opts po = { .topic = topic, .max_pending_messages = SEND_WINDOW * 2 };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &pc), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &pc.done, WAIT_MS), "producer not created");
    cr_assert_eq(pc.status, MG_OK, "producer: %s", mg_strerror(pc.status));

    pump u = { .p = pc.obj };
    int64_t fenced_ledgers[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        uint32_t base = u.acked;
        u.until = (uint32_t)(round + 1) * PER_ROUND;
        pump_fill(&u);
        counted c = { &u.acked, base + FENCE_AFTER };
        cr_assert(mgt_run_until(&g_loop, reached, &c, WAIT_MS), "round %d: %u of %u acknowledged",
                  round, u.acked - base, FENCE_AFTER);
        int64_t ledger = current_ledger(topic);
        cr_assert_geq(ledger, 0, "round %d: no current ledger", round);
        for (int i = 0; i < round; i++)
            cr_assert_neq(ledger, fenced_ledgers[i],
                          "round %d: ledger %" PRId64
                          " was fenced in round %d and still takes adds",
                          round, ledger, i);
        fenced_ledgers[round] = ledger;
        fenced f = { 0 };
        cr_assert_eq(bk_client_fence(bk, bookie, ledger, fence_done, &f), MG_OK);
        cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &f.done, WAIT_MS), "fence not answered");
        cr_assert_eq(f.status, MG_OK, "fence of ledger %" PRId64 ": %s", ledger,
                     mg_strerror(f.status));
        bool idle = mgt_run_until(&g_loop, pump_idle_or_dead, &u, WAIT_MS);
        char when[64];
        snprintf(when, sizeof(when), "in round %d, after the fence", round);
        require_alive(when);
        cr_assert(idle, "round %d: %u sends still in flight", round, u.inflight);
    }
    cr_assert_eq(u.failed, 0, "%u sends failed, the first with %s", u.failed,
                 mg_strerror(u.first_error));
    cr_assert_eq(u.acked, TOTAL);

    /* Still alive and answering, and every message is there once, in order. */
    char text[256];
    int code = sah_http(&g_sa, "GET", "/admin/v2/brokers/health", NULL, text, sizeof(text));
    if (code != 200)
        sah_dump_log(&g_sa);
    cr_assert_eq(code, 200, "health after the fences: %d", code);
    sink s = { 0 };
    created kc = { 0 };
    pc_consumer_opts ko = { .topic = topic,
                            .subscription = "check",
                            .initial_position = PC_INITIAL_EARLIEST,
                            .on_message = on_message,
                            .arg = &s };
    cr_assert_eq(pc_subscribe(g_client, &ko, consumer_created, &kc), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &kc.done, WAIT_MS), "subscribe not answered");
    cr_assert_eq(kc.status, MG_OK, "subscribe: %s", mg_strerror(kc.status));
    counted all = { &s.count, TOTAL };
    cr_assert(mgt_run_until(&g_loop, reached, &all, WAIT_MS), "%u of %u messages received", s.count,
              TOTAL);
    mgt_run_for(&g_loop, 300);
    if (s.count != TOTAL || s.out_of_order != 0)
        sah_dump_log(&g_sa);
    cr_assert_eq(s.count, TOTAL, "%u messages received for %u sent", s.count, TOTAL);
    cr_assert_eq(s.out_of_order, 0, "%u messages out of order", s.out_of_order);

    bool closed = false;
    pc_client_close(g_client, closed_cb, &closed);
    bk_client_close(bk, NULL, NULL);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS), "client not closed");
    uv_run(&g_loop, UV_RUN_NOWAIT);
    int status = 0;
    rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
}
