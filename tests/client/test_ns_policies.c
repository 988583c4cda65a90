/*
 * Namespace policies set through the admin API (docs/broker.md "Tenants and namespaces" and
 * "Policies"), end to end on a real `magnetar standalone` per test: each case creates tenant
 * nsp and namespace nsp/ns, sets a policy there while its topic is open, and watches it take
 * effect on that topic, while a topic of public/default (no namespace policy, no broker default
 * for it) is not affected. Producers and consumers stay connected across every change (their
 * connectedSinceMs in the topic stats does not move), except those a backlog quota closes.
 *
 * ns_policies.retention_applies_to_open_topics: the broker's default keeps 1 MiB of consumed
 *   ledgers; nsp/ns keeps everything (-1, -1) and its topic keeps its 10 consumed ledgers while
 *   public/default's is cut to the 1 MiB; then -1 minutes and 1 MB on nsp/ns cut it by size
 *   (a ledger goes once outside either limit, as Pulsar); then 0/0 deletes its consumed ledgers at
 *   once (the periodic check is an hour away: the change itself applies it); removed, the
 *   broker's 1 MiB applies again.
 * ns_policies.ttl_set_and_removed: a TTL of 1 s set on nsp/ns (through the `magnetar admin`
 *   CLI) expires the 8 messages waiting on its topic's subscription, not those of
 *   public/default; removed, 3 newer messages stay for 3 s (fifteen checks) and a consumer gets
 *   exactly those.
 * ns_policies.quota_hold / quota_exception / quota_eviction: a destination_storage quota of
 *   20000 bytes set over a 30000-byte backlog: producer_request_hold closes the writing producer
 *   (its next message is held) and holds a new one; producer_exception fails its sends and
 *   refuses a new one; consumer_backlog_eviction cuts the backlog to the limit while every send
 *   succeeds. Removing the quota lets the producers back (the backlog still over 20000 bytes),
 *   or, for eviction, lets the backlog grow again.
 * ns_policies.quota_age_eviction: a message_age quota of 1 s with consumer_backlog_eviction set
 *   on nsp/ns over 30 waiting messages evicts them, not public/default's; removed, 3 newer
 *   messages stay for 3 s and a consumer gets exactly those.
 *
 * Every REST answer is read back: GET returns what was set, with Pulsar's field names, and 204
 * once removed; a topic's retention or backlogQuotaMap ?applied=true answers its namespace's
 * value, or the broker's default for public/default's. Every wait is bounded; an effect that must
 * not happen is checked either after the same effect was seen elsewhere or with no policy left that
 * could cause it.
 */
#include "policies.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(ns_policies, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* Starts the standalone with extra arguments and opens g_client on it. */
static void start(const char *const *extra)
{
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_client = cs_client_open(&g_loop, g_sa.broker_port, CLIENT_OP_MS);
}

#define NS         "/admin/v2/namespaces/nsp/ns"
#define NO_TTL_MS  3000 /* messages must outlive a removed 1 s TTL this long */
#define CLI_MS     20000
#define ANSWER_MAX 4096

extern char **environ;

/* ---- admin API ------------------------------------------------------------------------------ */

/* method on path with body (NULL: none); asserts the status is want. The answer in out. */
static void admin(const char *method, const char *path, const char *body, int want, char *out,
                  size_t cap)
{
    int code = sah_http(&g_sa, method, path, body, out, cap);
    cr_assert_eq(code, want, "%s %s %s: %d, %d expected (%s)", method, path,
                 body != NULL ? body : "", code, want, out != NULL ? out : "");
}

static void ns_create(void)
{
    admin("PUT", "/admin/v2/tenants/nsp", NULL, 204, NULL, 0);
    admin("PUT", NS, NULL, 204, NULL, 0);
}

/* GET NS<what> into out, 200 expected. */
static void ns_get(const char *what, char *out, size_t cap)
{
    char path[256];
    snprintf(path, sizeof(path), NS "%s", what);
    admin("GET", path, NULL, 200, out, cap);
}

/* The connectedSinceMs of the first producer (list "publishers") or consumer ("consumers") of
 * topic. */
static long long connected_since(const char *topic, const char *list)
{
    char *text = topic_get(topic, "stats");
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":[{", list);
    const char *at = strstr(text, key);
    cr_assert_not_null(at, "no %s connected to %s: %s", list, topic, text);
    long long v = json_int(at, "connectedSinceMs");
    free(text);
    return v;
}

/* ---- retention ------------------------------------------------------------------------------ */

/* Produces count messages of 64 KiB (4 to a ledger) from seq on, and waits for the
 * consumer (its messages in g, seq received so far) to get them. */
static void produce_consumed(pc_producer *p, got *g, uint32_t seq, uint32_t count)
{
    cr_assert_eq(g->count, seq);
    sends s = { 0 };
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(send_seq(p, seq + i, 65536, &s), MG_OK);
    wait_sends(&s, count);
    cr_assert_eq(s.ok, count);
    wait_got(g, seq + count);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq(g->seq[seq + i], seq + i);
}

/* Waits until topic lists want ledgers, failing when fewer are listed on the way. */
static void wait_ledgers(const char *topic, int want)
{
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    int n;
    while ((n = ledger_count(topic)) != want) {
        cr_assert_lt(sah_now_ms(), deadline, "%s: %d ledgers listed, %d expected", topic, n, want);
        cr_assert_gt(n, want, "%s: %d ledgers left, %d expected", topic, n, want);
        mgt_run_for(&g_loop, 100);
    }
}

Test(ns_policies, retention_applies_to_open_topics)
{
    const char *const extra[] = { "--managed-ledger-max-entries-per-ledger",
                                  "4",
                                  "--default-retention-size-mb",
                                  "1",
                                  "--retention-check-interval",
                                  "1h",
                                  NULL };
    start(extra);
    ns_create();
    char answer[ANSWER_MAX];
    admin("POST", NS "/retention", "{\"retentionTimeInMinutes\":-1,\"retentionSizeInMB\":-1}", 204,
          NULL, 0);
    ns_get("/retention", answer, sizeof(answer));
    cr_assert_eq(json_int(answer, "retentionTimeInMinutes"), -1, "%s", answer);
    cr_assert_eq(json_int(answer, "retentionSizeInMB"), -1, "%s", answer);
    ns_get("", answer, sizeof(answer));
    const char *rp = strstr(answer, "\"retention_policies\":{");
    cr_assert_not_null(rp, "no retention_policies in %s", answer);
    cr_assert_eq(json_int(rp, "retentionSizeInMB"), -1, "%s", answer);

    /* nsp/ns keeps everything; public/default keeps 1 MiB (three consumed ledgers). The
     * namespace's topic is consumed first: once public/default's is cut, its trim had every
     * chance to run. */
    const char *kept = "persistent://nsp/ns/kept", *trimmed = "trimmed";
    got gk = { 0 }, gt = { 0 };
    pc_consumer *kk = subscribe(kept, &gk);
    pc_producer *pk = producer_open(kept);
    produce_consumed(pk, &gk, 0, 40);
    pc_consumer *kt = subscribe(trimmed, &gt);
    pc_producer *pt = producer_open(trimmed);
    produce_consumed(pt, &gt, 0, 40);
    wait_ledgers(trimmed, 4);
    int n = ledger_count(kept);
    cr_assert_geq(n, 10, "nsp/ns retains everything, yet %d ledgers are left of 10", n);
    /* What each topic runs with, as the admin API reports it. */
    char *applied = topic_get(kept, "retention?applied=true");
    cr_assert_eq(json_int(applied, "retentionSizeInMB"), -1, "applied retention: %s", applied);
    free(applied);
    applied = topic_get(trimmed, "retention?applied=true");
    cr_assert_eq(json_int(applied, "retentionSizeInMB"), 1, "applied retention: %s", applied);
    cr_assert_eq(json_int(applied, "retentionTimeInMinutes"), 0, "applied: %s", applied);
    free(applied);
    long long pk_since = connected_since(kept, "publishers");
    long long kk_since = connected_since(kept, "consumers");

    /* A size limit under an unlimited time, as Pulsar trims: a consumed ledger goes once it is
     * outside either limit, so 1 MiB cuts the ten consumed ledgers to the newest three. */
    admin("POST", NS "/retention", "{\"retentionTimeInMinutes\":-1,\"retentionSizeInMB\":1}", 204,
          NULL, 0);
    wait_ledgers(kept, 4);

    /* 0/0 on nsp/ns, while its topic is open: consumed ledgers go at once. */
    admin("POST", NS "/retention", "{\"retentionTimeInMinutes\":0,\"retentionSizeInMB\":0}", 204,
          NULL, 0);
    ns_get("/retention", answer, sizeof(answer));
    cr_assert_eq(json_int(answer, "retentionTimeInMinutes"), 0, "%s", answer);
    cr_assert_eq(json_int(answer, "retentionSizeInMB"), 0, "%s", answer);
    wait_ledgers(kept, 1);
    cr_assert_eq(ledger_count(trimmed), 4, "public/default's retention changed with nsp/ns's");

    /* The producer and consumer connected before go on, not reconnected. */
    produce_consumed(pk, &gk, 40, 4);
    cr_assert_eq(connected_since(kept, "publishers"), pk_since, "the producer reconnected");
    cr_assert_eq(connected_since(kept, "consumers"), kk_since, "the consumer reconnected");

    /* Removed: the broker's 1 MiB again (four more ledgers consumed, three kept). */
    admin("DELETE", NS "/retention", NULL, 204, NULL, 0);
    admin("GET", NS "/retention", NULL, 204, NULL, 0);
    produce_consumed(pk, &gk, 44, 16);
    wait_ledgers(kept, 4);

    cs_producer_close(&g_loop, pk, WAIT_MS);
    cs_producer_close(&g_loop, pt, WAIT_MS);
    cr_assert_eq(cs_consumer_close(&g_loop, kk, WAIT_MS), MG_OK);
    cr_assert_eq(cs_consumer_close(&g_loop, kt, WAIT_MS), MG_OK);
    finish();
}

/* ---- message TTL ---------------------------------------------------------------------------- */

/* Runs `$MG_BIN admin --admin-url http://127.0.0.1:<port> <args...>` and asserts it exits 0
 * within CLI_MS (its output goes to the test's). */
static void cli(const char *const *args)
{
    const char *bin = getenv("MG_BIN");
    cr_assert_not_null(bin, "MG_BIN is not set");
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", g_sa.http_port);
    const char *argv[16] = { bin, "admin", "--admin-url", url };
    size_t n = 4;
    for (; args[n - 4] != NULL; n++) {
        cr_assert_lt(n, sizeof(argv) / sizeof(argv[0]) - 1);
        argv[n] = args[n - 4];
    }
    argv[n] = NULL;
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, bin, NULL, NULL, (char *const *)argv, environ), 0);
    int64_t deadline = sah_now_ms() + CLI_MS;
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        if (sah_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            cr_assert_fail("magnetar admin %s did not exit", args[0]);
        }
        usleep(20000);
    }
    cr_assert_eq(r, pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "magnetar admin %s %s: status %d",
              args[0], args[1], status);
}

Test(ns_policies, ttl_set_and_removed)
{
    const char *const extra[] = { "--message-expiry-check-interval", CHECKS, NULL };
    start(extra);
    ns_create();
    const char *expiring = "persistent://nsp/ns/expiring", *kept = "kept";
    subscription_create(expiring);
    subscription_create(kept);
    pc_producer *pe = producer_open(expiring);
    pc_producer *pk = producer_open(kept);
    sends se = { 0 }, sk = { 0 };
    for (uint32_t i = 0; i < 8; i++) {
        cr_assert_eq(send_seq(pe, i, 100, &se), MG_OK);
        cr_assert_eq(send_seq(pk, i, 100, &sk), MG_OK);
    }
    wait_sends(&se, 8);
    wait_sends(&sk, 8);
    cr_assert_eq(se.ok + sk.ok, 16);
    long long since = connected_since(expiring, "publishers");

    const char *const set[] = {
        "namespaces", "set-message-ttl", "nsp/ns", "--messageTTL", "1", NULL
    };
    cli(set);
    char answer[ANSWER_MAX];
    ns_get("/messageTTL", answer, sizeof(answer));
    cr_assert_eq(strtoll(answer, NULL, 10), 1, "messageTTL: %s", answer);
    ns_get("", answer, sizeof(answer));
    cr_assert_eq(json_int(answer, "message_ttl_in_seconds"), 1, "%s", answer);

    wait_stat(expiring, "msgBacklog", 0, 0);
    cr_assert_eq(stat_get(expiring, "totalMsgExpired"), 8);
    /* public/default's messages are as old: the checks that expired nsp/ns's passed them. */
    cr_assert_eq(stat_get(kept, "msgBacklog"), 8, "public/default's messages expired");
    cr_assert_eq(stat_get(kept, "totalMsgExpired"), 0);

    /* Removed: newer messages stay. */
    admin("DELETE", NS "/messageTTL", NULL, 204, NULL, 0);
    admin("GET", NS "/messageTTL", NULL, 204, NULL, 0);
    for (uint32_t i = 8; i < 11; i++)
        cr_assert_eq(send_seq(pe, i, 100, &se), MG_OK);
    wait_sends(&se, 11);
    cr_assert_eq(se.ok, 11);
    mgt_run_for(&g_loop, NO_TTL_MS);
    cr_assert_eq(stat_get(expiring, "msgBacklog"), 3, "messages expired without a TTL");
    cr_assert_eq(stat_get(expiring, "totalMsgExpired"), 8);
    cr_assert_eq(connected_since(expiring, "publishers"), since, "the producer reconnected");
    got g = { 0 };
    pc_consumer *k = subscribe(expiring, &g);
    wait_got(&g, 3);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(g.count, 3, "%u messages received, 3 expected", g.count);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(g.seq[i], 8 + i, "message %u where %u was due", g.seq[i], 8 + i);
    cs_producer_close(&g_loop, pe, WAIT_MS);
    cs_producer_close(&g_loop, pk, WAIT_MS);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    finish();
}

/* ---- backlog quotas ---------------------------------------------------------------------------
 */

#define HELD "persistent://nsp/ns/held"
#define FREE "free"

/* Starts the standalone, creates nsp/ns, and fills the subscription "sub" of HELD and of FREE
 * with 30000 bytes through the producers *ph and *pf (no quota anywhere yet: all stored). */
static void quota_setup(pc_producer **ph, pc_producer **pf, sends *sh, sends *sf)
{
    const char *const extra[] = { "--backlog-quota-check-interval", CHECKS, NULL };
    start(extra);
    ns_create();
    subscription_create(HELD);
    subscription_create(FREE);
    *ph = producer_open(HELD);
    *pf = producer_open(FREE);
    overfill(*ph, sh);
    overfill(*pf, sf);
    wait_sends(sh, 30);
    wait_sends(sf, 30);
    cr_assert_eq(sh->ok + sf->ok, 60);
    cr_assert_gt(stat_get(HELD, "backlogSize"), 20000);
    cr_assert_gt(stat_get(FREE, "backlogSize"), 20000);
}

/* Sets the destination_storage quota of nsp/ns to 20000 bytes with policy, and reads it back. */
static void quota_set(const char *policy)
{
    char body[128], answer[ANSWER_MAX];
    snprintf(body, sizeof(body), "{\"limitSize\":20000,\"limitTime\":-1,\"policy\":\"%s\"}",
             policy);
    admin("POST", NS "/backlogQuota?backlogQuotaType=destination_storage", body, 204, NULL, 0);
    ns_get("/backlogQuotaMap", answer, sizeof(answer));
    const char *q = strstr(answer, "\"destination_storage\":{");
    cr_assert_not_null(q, "no destination_storage in %s", answer);
    cr_assert_eq(json_int(q, "limitSize"), 20000, "%s", answer);
    cr_assert_eq(json_int(q, "limitTime"), -1, "%s", answer);
    char pol[96];
    snprintf(pol, sizeof(pol), "\"policy\":\"%s\"", policy);
    cr_assert_not_null(strstr(q, pol), "%s not in %s", pol, answer);
    ns_get("", answer, sizeof(answer));
    q = strstr(answer, "\"backlog_quota_map\":{\"destination_storage\":{");
    cr_assert_not_null(q, "no backlog_quota_map in %s", answer);
    cr_assert_eq(json_int(q, "limitSize"), 20000, "%s", answer);
    cr_assert_eq(stat_get(HELD, "backlogQuotaLimitSize"), 20000);
    cr_assert_eq(stat_get(FREE, "backlogQuotaLimitSize"), -1);
    char *applied = topic_get(HELD, "backlogQuotaMap?applied=true");
    cr_assert_not_null(strstr(applied, pol), "applied backlogQuotaMap: %s", applied);
    cr_assert_eq(json_int(applied, "limitSize"), 20000, "applied backlogQuotaMap: %s", applied);
    free(applied);
    applied = topic_get(FREE, "backlogQuotaMap?applied=true");
    cr_assert_eq(json_int(applied, "limitSize"), -1, "applied backlogQuotaMap: %s", applied);
    free(applied);
}

static void quota_remove(void)
{
    char answer[ANSWER_MAX];
    admin("DELETE", NS "/backlogQuota?backlogQuotaType=destination_storage", NULL, 204, NULL, 0);
    ns_get("/backlogQuotaMap", answer, sizeof(answer));
    cr_assert_null(strstr(answer, "destination_storage"), "quota left: %s", answer);
    cr_assert_eq(stat_get(HELD, "backlogQuotaLimitSize"), -1);
}

/* public/default's topic, over 20000 bytes too, takes a new producer and a message. */
static void free_unaffected(pc_producer *pf, sends *sf)
{
    pc_producer *p = producer_open(FREE);
    cs_producer_close(&g_loop, p, WAIT_MS);
    uint32_t before = sf->ok;
    cr_assert_eq(send_seq(pf, 1000, 1000, sf), MG_OK);
    wait_sends(sf, sf->called + 1);
    cr_assert_eq(sf->ok, before + 1, "a send to public/default failed");
}

Test(ns_policies, quota_hold)
{
    pc_producer *ph, *pf;
    sends sh = { 0 }, sf = { 0 };
    quota_setup(&ph, &pf, &sh, &sf);
    quota_set("producer_request_hold");
    /* The change closes the writing producer at once: its next message is held. */
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    while (metric("magnetar_broker_backlog_quota_producer_refusals_total") < 1) {
        cr_assert_lt(sah_now_ms(), deadline, "no producer closed for the quota");
        mgt_run_for(&g_loop, 100);
    }
    cr_assert_eq(send_seq(ph, 30, 1000, &sh), MG_OK);
    created c2 = { 0 };
    pc_producer_opts po = { .topic = HELD, .send_timeout_ms = 60000 };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c2), MG_OK);
    free_unaffected(pf, &sf);
    mgt_run_for(&g_loop, HOLD_MS);
    cr_assert(!c2.done, "a producer was created over the quota: %s", mg_strerror(c2.status));
    cr_assert_lt(sh.called, 31, "the message sent over the quota was answered");

    /* Removed, with the backlog still over 20000 bytes: both producers go on. */
    quota_remove();
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c2.done, CLIENT_OP_MS),
              "the held producer was not created once the quota was removed");
    cr_assert_eq(c2.status, MG_OK, "producer: %s (%s)", mg_strerror(c2.status),
                 pc_last_error(g_client));
    wait_sends(&sh, 31);
    cr_assert_eq(sh.ok, 31, "%u of 31 held messages stored", sh.ok);
    cr_assert_gt(stat_get(HELD, "backlogSize"), 20000);
    cs_producer_close(&g_loop, c2.obj, WAIT_MS);
    cs_producer_close(&g_loop, ph, WAIT_MS);
    cs_producer_close(&g_loop, pf, WAIT_MS);
    finish();
}

Test(ns_policies, quota_exception)
{
    pc_producer *ph, *pf;
    sends sh = { 0 }, sf = { 0 };
    quota_setup(&ph, &pf, &sh, &sf);
    quota_set("producer_exception");
    /* The change closes the producer; registering again is refused: sends fail. */
    uint32_t seq = 30;
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    int rc;
    while ((rc = send_seq(ph, seq++, 1000, &sh)) == MG_OK && sh.failed[0] == 0) {
        cr_assert_lt(sah_now_ms(), deadline, "the producer over the quota can still send");
        mgt_run_for(&g_loop, 100);
    }
    cr_assert(rc == MG_EPERM || sh.failed[0] > 0, "send: %s", mg_strerror(rc));
    cr_assert_eq(sh.failed[1] + sh.failed[2], 0, "sends failed otherwise than refused");
    created c2 = { 0 };
    pc_producer_opts po = { .topic = HELD };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c2), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c2.done, WAIT_MS), "creation not answered");
    cr_assert_eq(c2.status, MG_EPERM, "a producer over the quota: %s", mg_strerror(c2.status));
    cr_assert_not_null(strstr(pc_last_error(g_client), "producer_exception"), "last error: %s",
                       pc_last_error(g_client));
    free_unaffected(pf, &sf);

    /* Removed: the producer registers again and sends; a new one is created. */
    quota_remove();
    sends s3 = { 0 };
    deadline = sah_now_ms() + CLIENT_OP_MS;
    while (send_seq(ph, seq++, 1000, &s3) != MG_OK) {
        cr_assert_lt(sah_now_ms(), deadline, "the producer was not accepted again");
        mgt_run_for(&g_loop, 100);
    }
    wait_sends(&s3, 1);
    cr_assert_eq(s3.ok, 1, "the send after the quota was removed failed");
    pc_producer *p2 = producer_open(HELD);
    cs_producer_close(&g_loop, p2, WAIT_MS);
    cs_producer_close(&g_loop, ph, WAIT_MS);
    cs_producer_close(&g_loop, pf, WAIT_MS);
    finish();
}

Test(ns_policies, quota_eviction)
{
    pc_producer *ph, *pf;
    sends sh = { 0 }, sf = { 0 };
    quota_setup(&ph, &pf, &sh, &sf);
    long long since = connected_since(HELD, "publishers");
    quota_set("consumer_backlog_eviction");
    wait_stat(HELD, "backlogSize", -1, 20000);
    long long left = stat_get(HELD, "msgBacklog");
    cr_assert(left > 0 && left < 30, "msgBacklog %lld", left);
    /* public/default's backlog, as big, was passed by the same checks. */
    cr_assert_eq(stat_get(FREE, "msgBacklog"), 30, "public/default's backlog was evicted");
    for (uint32_t i = 30; i < 40; i++)
        cr_assert_eq(send_seq(ph, i, 1000, &sh), MG_OK);
    wait_sends(&sh, 40);
    cr_assert_eq(sh.ok, 40, "producers are not affected by eviction: %u of 40 stored", sh.ok);
    cr_assert_eq(connected_since(HELD, "publishers"), since, "the producer reconnected");
    wait_stat(HELD, "backlogSize", -1, 20000);

    /* Removed: the backlog grows past 20000 bytes and stays. */
    quota_remove();
    left = stat_get(HELD, "msgBacklog");
    for (uint32_t i = 40; i < 70; i++)
        cr_assert_eq(send_seq(ph, i, 1000, &sh), MG_OK);
    wait_sends(&sh, 70);
    cr_assert_eq(sh.ok, 70);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(stat_get(HELD, "msgBacklog"), left + 30, "evicted without a quota");
    cr_assert_gt(stat_get(HELD, "backlogSize"), 20000);

    /* What is left is contiguous up to the last. */
    got g = { 0 };
    pc_consumer *k = subscribe(HELD, &g);
    wait_got(&g, (uint32_t)(left + 30));
    cr_assert_eq(g.seq[g.count - 1], 69);
    for (uint32_t i = 1; i < g.count; i++)
        cr_assert_eq(g.seq[i], g.seq[0] + i, "message %u where %u was due", g.seq[i], g.seq[0] + i);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    cs_producer_close(&g_loop, ph, WAIT_MS);
    cs_producer_close(&g_loop, pf, WAIT_MS);
    finish();
}

/* message_age with consumer_backlog_eviction, set on nsp/ns over 30 messages already waiting:
 * they leave the backlog (those of public/default, as old, stay); removed, newer messages stay
 * for NO_TTL_MS, longer than the 1 s limit. */
Test(ns_policies, quota_age_eviction)
{
    pc_producer *ph, *pf;
    sends sh = { 0 }, sf = { 0 };
    quota_setup(&ph, &pf, &sh, &sf);
    char answer[ANSWER_MAX];
    admin("POST", NS "/backlogQuota?backlogQuotaType=message_age",
          "{\"limitTime\":1,\"policy\":\"consumer_backlog_eviction\"}", 204, NULL, 0);
    ns_get("/backlogQuotaMap", answer, sizeof(answer));
    const char *q = strstr(answer, "\"message_age\":{");
    cr_assert_not_null(q, "no message_age in %s", answer);
    cr_assert_eq(json_int(q, "limitTime"), 1, "%s", answer);
    cr_assert_eq(json_int(q, "limitSize"), -1, "%s", answer);
    cr_assert_not_null(strstr(q, "\"policy\":\"consumer_backlog_eviction\""), "%s", answer);
    cr_assert_null(strstr(answer, "destination_storage"), "%s", answer);
    cr_assert_eq(stat_get(HELD, "backlogQuotaLimitTime"), 1);
    cr_assert_eq(stat_get(FREE, "backlogQuotaLimitTime"), -1);

    wait_stat(HELD, "msgBacklog", 0, 0);
    cr_assert_eq(stat_get(FREE, "msgBacklog"), 30, "public/default's backlog was evicted");
    cr_assert_eq(metric("magnetar_broker_backlog_evicted_messages_total"), 30.0);

    admin("DELETE", NS "/backlogQuota?backlogQuotaType=message_age", NULL, 204, NULL, 0);
    ns_get("/backlogQuotaMap", answer, sizeof(answer));
    cr_assert_null(strstr(answer, "message_age"), "quota left: %s", answer);
    cr_assert_eq(stat_get(HELD, "backlogQuotaLimitTime"), -1);
    for (uint32_t i = 30; i < 33; i++)
        cr_assert_eq(send_seq(ph, i, 100, &sh), MG_OK);
    wait_sends(&sh, 33);
    cr_assert_eq(sh.ok, 33);
    mgt_run_for(&g_loop, NO_TTL_MS);
    cr_assert_eq(stat_get(HELD, "msgBacklog"), 3, "messages evicted without a quota");
    got g = { 0 };
    pc_consumer *k = subscribe(HELD, &g);
    wait_got(&g, 3);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(g.count, 3, "%u messages received, 3 expected", g.count);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(g.seq[i], 30 + i, "message %u where %u was due", g.seq[i], 30 + i);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    cs_producer_close(&g_loop, ph, WAIT_MS);
    cs_producer_close(&g_loop, pf, WAIT_MS);
    finish();
}
