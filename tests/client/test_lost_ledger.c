/*
 * A topic whose ledgers are deleted behind its back (an outsider deleting them through the bookie
 * port, as a bookie's lost disk would), end to end: `magnetar standalone` (binary from MG_BIN),
 * the C client, and a bookie client of the test that deletes ledgers on the standalone's
 * embedded bookie (127.0.0.1:<bookie port>).
 *
 * Both tests write three ledgers: messages 0..99, a restart (which rolls to a new ledger),
 * 100..199, a restart, 200..299; the subscription "sub" exists from the start (Earliest).
 *
 * lost.auto_skip_serves_what_exists (--auto-skip-non-recoverable-data): the middle ledger and
 * the last one (the ledger being written) are deleted on the bookie, then the standalone
 * restarts. The topic opens (the last ledger is marked lost at once: "lost":true in
 * internalStats), a producer writes 300..349, and the subscription receives 0..99 then
 * 300..349, in order, nothing else; the skips are counted (lostEntriesSkipped 200, topic and
 * cursor) and so are the ledgers on /metrics (ml_lost_ledgers_total 2,
 * ml_lost_entries_skipped_total 200).
 *
 * lost.stops_until_an_operator_skips (default: no automatic skip): the middle ledger is deleted,
 * the standalone restarts; the topic opens and takes 300..309; the subscription receives 0..99
 * and then nothing (internalStats: stoppedAtLostLedger names the ledger) until the admin API
 * skips 100 entries; then 200..299 and 300..309 follow, in order.
 *
 * Every wait runs the loop with a deadline; every loop is bounded.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bookie/client.h"
#include "client/client.h"
#include "common/error.h"
#include "common/log.h"
#include "support/client_sync.h"
#include "support/created.h"
#include "support/loop_wait.h"
#include "support/sa_harness.h"

#define PER_LEDGER        100u /* messages written between restarts: one ledger each */
#define MAX_SEQ           400u
#define WAIT_MS           10000 /* an answer */
#define WRITE_MS          30000 /* a ledger's messages */
#define QUIET_MS          1500  /* "nothing more arrives" is checked over this long */
#define STATS_BYTES_MAX   65536
#define METRICS_BYTES_MAX (1024 * 1024)

static sah_standalone g_sa;
static bool g_passed;
static uv_loop_t g_loop;
static pc_client *g_client;

static void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    mg_log_set_level(MG_LOG_WARN);
    g_passed = false;
    cr_assert_eq(uv_loop_init(&g_loop), 0);
}

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

TestSuite(lost, .init = suite_init, .fini = suite_fini, .timeout = 240);

/* ---- client -------------------------------------------------------------------------------- */

static void client_open(void)
{
    g_client = cs_client_open(&g_loop, g_sa.broker_port, WAIT_MS);
}

static void client_close(void)
{
    cs_client_close(&g_loop, g_client, WAIT_MS);
    g_client = NULL;
}

typedef struct pump {
    uint32_t next, end, acked, first;
    pc_message_id last_id;
} pump;

static void pump_sent(int status, const pc_message_id *id, void *arg)
{
    pump *pu = arg;
    cr_assert_eq(status, MG_OK, "send of message %u: %s", pu->first + pu->acked,
                 mg_strerror(status));
    pu->last_id = *id;
    pu->acked++;
}

static bool pump_done(void *arg)
{
    const pump *pu = arg;
    return pu->first + pu->acked == pu->end;
}

/* Writes messages "seq=<n>" for n in [first, end) with a new producer, and returns the ledger
 * of the last one. */
static int64_t write_range(const char *topic, uint32_t first, uint32_t end)
{
    created c = { 0 };
    pc_producer_opts po = { .topic = topic };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "producer not created");
    cr_assert_eq(c.status, MG_OK, "producer: %s (%s)", mg_strerror(c.status),
                 pc_last_error(g_client));
    pc_producer *p = c.obj;
    pump pu = { .next = first, .end = end, .first = first };
    for (uint32_t seq = first; seq < end; seq++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "seq=%u", seq);
        pc_message m = { .payload = (const uint8_t *)text, .payload_len = (size_t)n };
        cr_assert_eq(pc_send(p, &m, pump_sent, &pu), MG_OK);
    }
    cr_assert(mgt_run_until(&g_loop, pump_done, &pu, WRITE_MS), "%u of %u..%u written", pu.acked,
              first, end - 1);
    int st = 1;
    pc_producer_close(p, cs_status_cb, &st);
    cr_assert(mgt_run_until(&g_loop, cs_status_known, &st, WAIT_MS), "producer not closed");
    return pu.last_id.ledger_id;
}

/* ---- the subscription: every message in order, from the expected list ---------------------- */

typedef struct ordered {
    uint32_t expect[MAX_SEQ]; /* the sequence numbers due, in order */
    uint32_t expect_count;
    uint32_t received;
} ordered;

static void ordered_message(pc_consumer *k, const pc_received *m, void *arg)
{
    ordered *o = arg;
    char text[32] = { 0 };
    cr_assert_lt(m->payload_len, sizeof(text));
    memcpy(text, m->payload, m->payload_len);
    unsigned seq = 0;
    cr_assert_eq(sscanf(text, "seq=%u", &seq), 1, "not a test message: '%s'", text);
    cr_assert_lt(o->received, o->expect_count, "message %u after all the expected ones", seq);
    cr_assert_eq(seq, o->expect[o->received], "message %u where %u was due", seq,
                 o->expect[o->received]);
    o->received++;
    cr_assert_eq(pc_ack_cumulative(k, &m->id), MG_OK);
}

static void expect_range(ordered *o, uint32_t first, uint32_t end)
{
    for (uint32_t s = first; s < end; s++) {
        cr_assert_lt(o->expect_count, MAX_SEQ);
        o->expect[o->expect_count++] = s;
    }
}

static pc_consumer *subscribe(const char *topic, ordered *o)
{
    created c = { 0 };
    pc_consumer_opts co = { .topic = topic,
                            .subscription = "sub",
                            .type = PC_SUB_EXCLUSIVE,
                            .initial_position = PC_INITIAL_EARLIEST,
                            .on_message = ordered_message,
                            .arg = o };
    cr_assert_eq(pc_subscribe(g_client, &co, consumer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "subscription not answered");
    cr_assert_eq(c.status, MG_OK, "subscribe: %s (%s)", mg_strerror(c.status),
                 pc_last_error(g_client));
    return c.obj;
}

static void consumer_close(pc_consumer *k)
{
    cs_consumer_close(&g_loop, k, WAIT_MS);
}

typedef struct upto {
    const ordered *o;
    uint32_t count;
} upto;

static bool received_upto(void *arg)
{
    const upto *u = arg;
    return u->o->received >= u->count;
}

static void wait_received(const ordered *o, uint32_t count)
{
    upto u = { o, count };
    cr_assert(mgt_run_until(&g_loop, received_upto, &u, WRITE_MS), "%u of %u messages received",
              o->received, count);
}

/* ---- the outsider: deletes a ledger on the standalone's bookie ------------------------------ */

typedef struct deleted {
    bool done;
    int status;
} deleted;

static void delete_done(int status, void *arg)
{
    deleted *d = arg;
    d->done = true;
    d->status = status;
}

static void bookie_delete(int64_t ledger_id)
{
    bk_client *bk;
    cr_assert_eq(bk_client_create(&g_loop, NULL, &bk), MG_OK);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", g_sa.bookie_port);
    deleted d = { 0 };
    cr_assert_eq(bk_client_delete(bk, addr, ledger_id, delete_done, &d), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &d.done, WAIT_MS), "delete not answered");
    cr_assert_eq(d.status, MG_OK, "deleting ledger %lld: %s", (long long)ledger_id,
                 mg_strerror(d.status));
    bool closed = false;
    bk_client_close(bk, cs_flag_cb, &closed);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &closed, WAIT_MS), "bookie client not closed");
}

/* ---- admin API and metrics ---------------------------------------------------------------- */

static char *http_get(const char *path, size_t cap)
{
    char *body = malloc(cap);
    cr_assert_not_null(body);
    int code = sah_http(&g_sa, "GET", path, NULL, body, cap);
    cr_assert_eq(code, 200, "GET %s: %d", path, code);
    return body;
}

static char *internal_stats(const char *topic)
{
    char path[256];
    snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/internalStats", topic);
    return http_get(path, STATS_BYTES_MAX);
}

/* Whether internalStats lists ledger_id with "lost":true. */
static bool ledger_marked_lost(const char *stats, int64_t ledger_id)
{
    char key[64];
    snprintf(key, sizeof(key), "{\"ledgerId\":%lld,", (long long)ledger_id);
    const char *at = strstr(stats, key);
    cr_assert_not_null(at, "ledger %lld not in %s", (long long)ledger_id, stats);
    const char *end = strchr(at, '}');
    cr_assert_not_null(end);
    const char *lost = strstr(at, "\"lost\":true");
    return lost != NULL && lost < end;
}

static long long json_int(const char *text, const char *key)
{
    char k[96];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *at = strstr(text, k);
    cr_assert_not_null(at, "no %s in %s", key, text);
    return strtoll(at + strlen(k), NULL, 10);
}

static double metric(const char *name)
{
    char *text = http_get("/metrics", METRICS_BYTES_MAX);
    size_t len = strlen(name);
    double v = -1;
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            v = strtod(line + len + 1, NULL);
            break;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    free(text);
    cr_assert_geq(v, 0, "metric %s not on /metrics", name);
    return v;
}

/* ---- the common part: three ledgers ---------------------------------------------------------- */

/* Writes 0..99, 100..199, 200..299 with a restart between each (each restart rolls to a new
 * ledger); the subscription exists from the start. ledgers[] gets the three ledger ids. */
static void three_ledgers(const char *topic, const char *const *extra, int64_t ledgers[3])
{
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    for (uint32_t i = 0; i < 3; i++) {
        if (i > 0) {
            rc = sah_restart(&g_sa);
            cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
        }
        client_open();
        if (i == 0) {
            ordered none = { 0 };
            consumer_close(subscribe(topic, &none)); /* "sub" at the start, nothing read */
        }
        ledgers[i] = write_range(topic, i * PER_LEDGER, (i + 1) * PER_LEDGER);
        client_close();
    }
    /* Once more, so that the last ledger's entries are in the bookie's entry logs and its
     * journal checkpoint is past them: the bookie does not journal a deletion, so entries still
     * to be replayed from the journal would come back at the next start. */
    rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    cr_assert(ledgers[0] < ledgers[1] && ledgers[1] < ledgers[2], "ledgers %lld %lld %lld",
              (long long)ledgers[0], (long long)ledgers[1], (long long)ledgers[2]);
}

static void finish(void)
{
    client_close();
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
    g_passed = true;
}

Test(lost, auto_skip_serves_what_exists)
{
    const char *topic = "lost-auto";
    const char *const extra[] = { "--auto-skip-non-recoverable-data", NULL };
    int64_t l[3];
    three_ledgers(topic, extra, l);

    /* The middle ledger and the last one that holds entries go. */
    bookie_delete(l[1]);
    bookie_delete(l[2]);
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));

    /* The topic opens and takes new messages. */
    client_open();
    int64_t l4 = write_range(topic, 300, 350);
    cr_assert_gt(l4, l[2], "new messages went to ledger %lld", (long long)l4);

    /* Opening read the last entry of the last ledger that holds entries (for the message
     * count): that one is known lost already; the middle one is found when it is read. */
    char *stats = internal_stats(topic);
    cr_assert(ledger_marked_lost(stats, l[2]), "ledger %lld not marked lost: %s", (long long)l[2],
              stats);
    cr_assert(!ledger_marked_lost(stats, l[0]), "ledger %lld marked lost: %s", (long long)l[0],
              stats);
    cr_assert_eq(json_int(stats, "messagesTotal"), 350, "%s", stats);
    free(stats);

    /* What exists comes, in order; nothing else. */
    ordered o = { 0 };
    expect_range(&o, 0, 100);
    expect_range(&o, 300, 350);
    pc_consumer *k = subscribe(topic, &o);
    wait_received(&o, o.expect_count);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(o.received, o.expect_count, "%u messages received, %u expected", o.received,
                 o.expect_count);

    /* The skips are counted; the skipped ledgers were consumed as far as the subscription is
     * concerned, so retention (none in a standalone) deleted them with the first one. */
    stats = internal_stats(topic);
    cr_assert_eq(json_int(stats, "lostEntriesSkipped"), 200, "%s", stats);
    cr_assert_eq(json_int(stats, "lostLedgerCount"), 0, "%s", stats);
    const char *cur = strstr(stats, "\"cursors\":");
    cr_assert_not_null(cur);
    cr_assert_eq(json_int(cur, "lostEntriesSkipped"), 200, "%s", cur);
    free(stats);
    cr_assert_eq(metric("ml_lost_ledgers_total"), 2.0);
    cr_assert_eq(metric("ml_lost_entries_skipped_total"), 200.0);

    consumer_close(k);
    finish();
}

Test(lost, stops_until_an_operator_skips)
{
    const char *topic = "lost-stop";
    int64_t l[3];
    three_ledgers(topic, NULL, l);
    bookie_delete(l[1]);
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));

    client_open();
    write_range(topic, 300, 310);

    ordered o = { 0 };
    expect_range(&o, 0, 100);
    expect_range(&o, 200, 310);
    pc_consumer *k = subscribe(topic, &o);
    wait_received(&o, 100);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(o.received, 100, "%u messages received: dispatch went past the lost ledger",
                 o.received);

    char *stats = internal_stats(topic);
    cr_assert(ledger_marked_lost(stats, l[1]), "ledger %lld not marked lost: %s", (long long)l[1],
              stats);
    const char *cur = strstr(stats, "\"cursors\":");
    cr_assert_not_null(cur);
    cr_assert_eq(json_int(cur, "stoppedAtLostLedger"), l[1], "%s", cur);
    cr_assert_eq(json_int(cur, "lostEntriesSkipped"), 0, "%s", cur);
    free(stats);

    /* The operator skips the lost ledger's 100 entries (the acks of 0..99 are in by now: the
     * client sends them within its 100 ms grouping, long before QUIET_MS ended). */
    char path[256], body[1024];
    snprintf(path, sizeof(path), "/admin/v2/persistent/public/default/%s/subscription/sub/skip/100",
             topic);
    int code = sah_http(&g_sa, "POST", path, "", body, sizeof(body));
    cr_assert(code == 204 || code == 200, "POST %s: %d %s", path, code, body);
    wait_received(&o, o.expect_count);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(o.received, o.expect_count, "%u messages received, %u expected", o.received,
                 o.expect_count);

    stats = internal_stats(topic);
    cr_assert_null(strstr(stats, "stoppedAtLostLedger"), "%s", stats);
    free(stats);

    consumer_close(k);
    finish();
}
