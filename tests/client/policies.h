/*
 * What the policy tests (test_policies.c: the broker-wide defaults; test_ns_policies.c: policies
 * set on a namespace through the admin API) share: one standalone per test (g_sa) with a client
 * on one loop (g_client, g_loop), the admin API and metrics read back, a producer's sends and a
 * consumer's messages counted, and bounded waits for a stat to reach a value. Each test program
 * includes it once (static functions, one copy per program) and declares its own TestSuite with
 * suite_init and suite_fini, and its own start() (sah_start in the test's own file is what
 * tests/CMakeLists.txt looks for to run it a second time with --prefetch off).
 *
 * A topic is named either short ("name", in public/default) or in full
 * ("persistent://tenant/ns/name"); the admin paths follow.
 */
#ifndef MG_TESTS_CLIENT_POLICIES_H
#define MG_TESTS_CLIENT_POLICIES_H

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

#define WAIT_MS           10000 /* an answer */
#define EFFECT_MS         20000 /* a policy taking effect */
#define HOLD_MS           1500  /* "still not created / still held" is checked over this long */
#define QUIET_MS          1000  /* "nothing more arrives" is checked over this long */
#define CLIENT_OP_MS      30000 /* the client's operation timeout: a held creation's bound */
#define STATS_BYTES_MAX   65536
#define METRICS_BYTES_MAX (1024 * 1024)
#define SEQ_MAX           256u
#define QUOTA_BYTES       "20000"
#define CHECKS            "200ms"

static sah_standalone g_sa;
static bool g_passed;
static uv_loop_t g_loop;
static pc_client *g_client;

static inline void suite_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    mg_log_set_level(MG_LOG_WARN);
    g_passed = false;
    cr_assert_eq(uv_loop_init(&g_loop), 0);
}

static inline void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

static inline void finish(void)
{
    cs_client_close(&g_loop, g_client, WAIT_MS);
    g_client = NULL;
    uv_run(&g_loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&g_loop), 0, "handles left open on the loop");
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
    g_passed = true;
}

/* ---- admin API and metrics ------------------------------------------------------------------ */

static inline char *http_get(const char *path, size_t cap)
{
    char *body = malloc(cap);
    cr_assert_not_null(body);
    int code = sah_http(&g_sa, "GET", path, NULL, body, cap);
    cr_assert_eq(code, 200, "GET %s: %d", path, code);
    return body;
}

/* The admin path of topic (short, or "persistent://tenant/ns/name") followed by "/what". */
static inline void topic_path(const char *topic, const char *what, char *path, size_t cap)
{
    static const char scheme[] = "persistent://";
    int n =
        strncmp(topic, scheme, sizeof(scheme) - 1) == 0
            ? snprintf(path, cap, "/admin/v2/persistent/%s/%s", topic + sizeof(scheme) - 1, what)
            : snprintf(path, cap, "/admin/v2/persistent/public/default/%s/%s", topic, what);
    cr_assert(n > 0 && (size_t)n < cap, "admin path of %s too long", topic);
}

static inline char *topic_get(const char *topic, const char *what)
{
    char path[256];
    topic_path(topic, what, path, sizeof(path));
    return http_get(path, STATS_BYTES_MAX);
}

static inline long long json_int(const char *text, const char *key)
{
    char k[96];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *at = strstr(text, k);
    cr_assert_not_null(at, "no %s in %s", key, text);
    return strtoll(at + strlen(k), NULL, 10);
}

/* A number of the topic's stats (the first field of that name: the topic's own, or the only
 * subscription's). */
static inline long long stat_get(const char *topic, const char *key)
{
    char *text = topic_get(topic, "stats");
    long long v = json_int(text, key);
    free(text);
    return v;
}

static inline int ledger_count(const char *topic)
{
    char *text = topic_get(topic, "internalStats");
    int n = 0;
    for (const char *p = strstr(text, "\"ledgerId\":"); p != NULL;
         p = strstr(p + 1, "\"ledgerId\":"))
        n++;
    free(text);
    return n;
}

static inline double metric(const char *name)
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

static inline void skip_all(const char *topic)
{
    char path[256];
    topic_path(topic, "subscription/sub/skip_all", path, sizeof(path));
    int code = sah_http(&g_sa, "POST", path, "", NULL, 0);
    cr_assert(code >= 200 && code < 300, "POST %s: %d", path, code);
}

/* Polls stat_get(topic, key) until cmp(value) holds, at most EFFECT_MS. */
typedef struct stat_wait {
    const char *topic, *key;
    long long bound;
    int sign; /* -1: value <= bound; 0: value == bound; 1: value > bound */
    long long last;
} stat_wait;

static inline bool stat_reached(void *arg)
{
    stat_wait *w = arg;
    w->last = stat_get(w->topic, w->key);
    return w->sign < 0    ? w->last <= w->bound
           : w->sign == 0 ? w->last == w->bound
                          : w->last > w->bound;
}

/* mgt_run_until checks cond after every loop turn; asking the broker that often is wasteful, so
 * the poll runs the loop for 100 ms between two questions. */
static inline void wait_stat(const char *topic, const char *key, int sign, long long bound)
{
    stat_wait w = { .topic = topic, .key = key, .bound = bound, .sign = sign };
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    while (!stat_reached(&w)) {
        cr_assert_lt(sah_now_ms(), deadline, "%s of %s is %lld, waited for %s %lld", key, topic,
                     w.last,
                     sign < 0    ? "<="
                     : sign == 0 ? "=="
                                 : ">",
                     bound);
        mgt_run_for(&g_loop, 100);
    }
}

/* ---- producing ------------------------------------------------------------------------------ */

typedef struct sends {
    uint32_t ok, failed[3]; /* failed: [0] MG_EPERM, [1] MG_ETIMEDOUT, [2] other */
    uint32_t called;
} sends;

static inline void sent(int status, const pc_message_id *id, void *arg)
{
    (void)id;
    sends *s = arg;
    s->called++;
    if (status == MG_OK)
        s->ok++;
    else
        s->failed[status == MG_EPERM ? 0 : status == MG_ETIMEDOUT ? 1 : 2]++;
}

typedef struct sends_target {
    const sends *s;
    uint32_t count;
} sends_target;

static inline bool sends_reached(void *arg)
{
    const sends_target *t = arg;
    return t->s->called >= t->count;
}

static inline void wait_sends(const sends *s, uint32_t count)
{
    sends_target t = { s, count };
    cr_assert(mgt_run_until(&g_loop, sends_reached, &t, EFFECT_MS),
              "%u of %u sends answered (%u ok)", s->called, count, s->ok);
}

/* Sends "seq=<n>" padded with '.' to size bytes. Returns pc_send's status. */
static inline int send_seq(pc_producer *p, uint32_t seq, size_t size, sends *s)
{
    static char buf[70000];
    cr_assert_leq(size, sizeof(buf));
    memset(buf, '.', size);
    int n = snprintf(buf, sizeof(buf), "seq=%u", seq);
    buf[n] = size > (size_t)n ? '.' : '\0';
    pc_message m = { .payload = (const uint8_t *)buf,
                     .payload_len = size > (size_t)n ? size : (size_t)n };
    return pc_send(p, &m, sent, s);
}

/* Queues 30 messages of 1000 bytes: 30 KB of backlog, over the 20000-byte quota (the quota check
 * may close the producer while it writes them). */
static inline void overfill(pc_producer *p, sends *s)
{
    for (uint32_t i = 0; i < 30; i++)
        cr_assert_eq(send_seq(p, i, 1000, s), MG_OK);
}

static inline pc_producer *producer_open(const char *topic)
{
    pc_producer_opts po = { .topic = topic, .send_timeout_ms = 60000 };
    return cs_producer_open(&g_loop, g_client, &po, WAIT_MS);
}

/* ---- consuming: every message in order --------------------------------------------------- */

typedef struct got {
    uint32_t seq[SEQ_MAX];
    uint32_t count;
} got;

static inline void got_message(pc_consumer *k, const pc_received *m, void *arg)
{
    got *g = arg;
    char text[32] = { 0 };
    memcpy(text, m->payload, m->payload_len < sizeof(text) - 1 ? m->payload_len : sizeof(text) - 1);
    unsigned seq = 0;
    cr_assert_eq(sscanf(text, "seq=%u", &seq), 1, "not a test message: '%s'", text);
    cr_assert_lt(g->count, SEQ_MAX);
    g->seq[g->count++] = seq;
    cr_assert_eq(pc_ack_cumulative(k, &m->id), MG_OK);
}

static inline pc_consumer *subscribe(const char *topic, got *g)
{
    created c = { 0 };
    pc_consumer_opts co = { .topic = topic,
                            .subscription = "sub",
                            .type = PC_SUB_EXCLUSIVE,
                            .initial_position = PC_INITIAL_EARLIEST,
                            .on_message = got_message,
                            .arg = g };
    cr_assert_eq(pc_subscribe(g_client, &co, consumer_created, &c), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "subscription not answered");
    cr_assert_eq(c.status, MG_OK, "subscribe: %s (%s)", mg_strerror(c.status),
                 pc_last_error(g_client));
    return c.obj;
}

/* The durable subscription "sub" from the start, without a consumer. */
static inline void subscription_create(const char *topic)
{
    got none = { 0 };
    cr_assert_eq(cs_consumer_close(&g_loop, subscribe(topic, &none), WAIT_MS), MG_OK);
    cr_assert_eq(none.count, 0);
}

typedef struct got_target {
    const got *g;
    uint32_t count;
} got_target;

static inline bool got_reached(void *arg)
{
    const got_target *t = arg;
    return t->g->count >= t->count;
}

static inline void wait_got(const got *g, uint32_t count)
{
    got_target t = { g, count };
    cr_assert(mgt_run_until(&g_loop, got_reached, &t, EFFECT_MS), "%u of %u messages received",
              g->count, count);
}

#endif
