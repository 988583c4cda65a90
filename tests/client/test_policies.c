/*
 * Namespace policies enforced by the broker (docs/broker.md "Policies"), end to end: a real
 * `magnetar standalone` (binary from MG_BIN) per test, started with the broker-wide defaults of
 * the policy under test and short check intervals, driven by the C client and the admin API.
 *
 * policies.retention_keeps_the_newest_within_size: ledgers of 4 entries of 64 KiB, retention
 *   1 MiB; a subscription reads and acknowledges 40 messages (10 ledgers): the consumed ledgers
 *   outside the size are deleted and the 3 newest consumed ones (plus the current) are kept.
 * policies.ttl_expires_old_messages: TTL 5 s; 12 messages wait on a subscription without
 *   consumer until its backlog is 0 (stats: totalMsgExpired 12; /metrics counts them); 5 more
 *   are then written and a consumer of the subscription receives exactly those, in order.
 *   The topic's messageTTL?applied=true answers the broker's default, 5.
 * policies.quota_hold_blocks_producers_until_cleared: backlog quota 20000 bytes,
 *   producer_request_hold; once the backlog is over it, the producer that wrote it is closed and
 *   holds a new message, a new producer is not created, and both go on once the subscription is
 *   cleared (skip_all): the new producer is created, every message is stored.
 *   backlogQuotaMap?applied=true answers the broker's default quota.
 * policies.quota_exception_fails_sends: the same with producer_exception: the writing
 *   producer's sends fail (MG_EPERM, the broker's reason in pc_last_error), a new producer is
 *   refused at once; after skip_all the first producer sends again.
 * policies.quota_eviction_cuts_the_backlog: the same with consumer_backlog_eviction: every send
 *   succeeds; the backlog is cut to within 20000 bytes; a consumer then receives the newest
 *   messages, contiguous up to the last, the oldest gone.
 * policies.quota_age_eviction_expires_old_messages: a message_age quota of 4 s with
 *   consumer_backlog_eviction: 10 messages leave the backlog once older; 3 newer ones are what
 *   a consumer then receives. backlogQuotaMap?applied=true has its message_age quota.
 * policies.quota_age_refuses_producers: a message_age quota of 1 s with producer_exception: new
 *   producers are refused once the unacknowledged message is older, and accepted again after
 *   skip_all.
 *
 * Every wait runs the loop with a deadline (no assertion on how long an effect takes, only that
 * it comes within a generous bound); every loop is bounded.
 */
#include "policies.h"

TestSuite(policies, .init = suite_init, .fini = suite_fini, .timeout = 120);

/* Starts the standalone with extra arguments and opens g_client on it. */
static void start(const char *const *extra)
{
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_client = cs_client_open(&g_loop, g_sa.broker_port, CLIENT_OP_MS);
}

/* ---- retention ------------------------------------------------------------------------------ */

Test(policies, retention_keeps_the_newest_within_size)
{
    const char *const extra[] = { "--managed-ledger-max-entries-per-ledger",
                                  "4",
                                  "--default-retention-size-mb",
                                  "1",
                                  "--retention-check-interval",
                                  CHECKS,
                                  NULL };
    start(extra);
    const char *topic = "retained";
    got g = { 0 };
    pc_consumer *k = subscribe(topic, &g);
    pc_producer *p = producer_open(topic);
    sends s = { 0 };
    for (uint32_t i = 0; i < 40; i++)
        cr_assert_eq(send_seq(p, i, 65536, &s), MG_OK);
    wait_sends(&s, 40);
    cr_assert_eq(s.ok, 40);
    wait_got(&g, 40);
    for (uint32_t i = 0; i < 40; i++)
        cr_assert_eq(g.seq[i], i);
    /* Ten ledgers of four 64 KiB entries, all consumed: those outside 1 MiB go, the newest three
     * consumed ones (786 KiB and a little; four would be more than 1 MiB) stay with the ledger
     * being written. */
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    int n;
    while ((n = ledger_count(topic)) != 4) {
        cr_assert_lt(sah_now_ms(), deadline, "%d ledgers listed, 4 expected", n);
        cr_assert_gt(n, 4, "retention deleted ledgers within 1 MiB: %d left", n);
        mgt_run_for(&g_loop, 100);
    }
    mgt_run_for(&g_loop, 1000); /* several retention checks */
    cr_assert_eq(ledger_count(topic), 4, "ledgers within retention were deleted");
    cs_producer_close(&g_loop, p, WAIT_MS);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    finish();
}

/* ---- message TTL ---------------------------------------------------------------------------- */

Test(policies, ttl_expires_old_messages)
{
    const char *const extra[] = { "--ttl-duration-default",
                                  "5s",
                                  "--message-expiry-check-interval",
                                  CHECKS,
                                  "--managed-ledger-max-entries-per-ledger",
                                  "5",
                                  NULL };
    start(extra);
    const char *topic = "expiring";
    subscription_create(topic);
    pc_producer *p = producer_open(topic);
    sends s = { 0 };
    for (uint32_t i = 0; i < 12; i++)
        cr_assert_eq(send_seq(p, i, 100, &s), MG_OK);
    wait_sends(&s, 12);
    cr_assert_eq(s.ok, 12);
    wait_stat(topic, "msgBacklog", 0, 0);
    cr_assert_eq(stat_get(topic, "totalMsgExpired"), 12);
    cr_assert_eq(metric("magnetar_broker_expired_messages_total"), 12.0);
    /* The TTL the topic runs with, the broker's default, as the admin API reports it. */
    char *applied = topic_get(topic, "messageTTL?applied=true");
    cr_assert_eq(strtoll(applied, NULL, 10), 5, "applied messageTTL: %s", applied);
    free(applied);

    /* Newer messages stay; a consumer gets those only. */
    for (uint32_t i = 12; i < 17; i++)
        cr_assert_eq(send_seq(p, i, 100, &s), MG_OK);
    wait_sends(&s, 17);
    cr_assert_eq(s.ok, 17);
    got g = { 0 };
    pc_consumer *k = subscribe(topic, &g);
    wait_got(&g, 5);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(g.count, 5, "%u messages received, 5 expected", g.count);
    for (uint32_t i = 0; i < 5; i++)
        cr_assert_eq(g.seq[i], 12 + i, "message %u where %u was due", g.seq[i], 12 + i);
    cs_producer_close(&g_loop, p, WAIT_MS);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    finish();
}

/* ---- backlog quotas ---------------------------------------------------------------------------
 */

Test(policies, quota_hold_blocks_producers_until_cleared)
{
    const char *const extra[] = { "--backlog-quota-default-limit-bytes", QUOTA_BYTES,
                                  "--backlog-quota-check-interval", CHECKS, NULL };
    start(extra);
    const char *topic = "held";
    subscription_create(topic);
    char *applied = topic_get(topic, "backlogQuotaMap?applied=true");
    const char *q = strstr(applied, "\"destination_storage\":{");
    cr_assert_not_null(q, "applied backlogQuotaMap: %s", applied);
    cr_assert_eq(json_int(q, "limitSize"), 20000, "applied backlogQuotaMap: %s", applied);
    cr_assert_not_null(strstr(q, "\"policy\":\"producer_request_hold\""), "%s", applied);
    free(applied);
    pc_producer *p1 = producer_open(topic);
    sends s1 = { 0 };
    overfill(p1, &s1);
    wait_stat(topic, "backlogSize", 1, 20000);
    /* The check closes p1 (it was writing): its next message is held. */
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    while (metric("magnetar_broker_backlog_quota_producer_refusals_total") < 1) {
        cr_assert_lt(sah_now_ms(), deadline, "no producer closed for the quota");
        mgt_run_for(&g_loop, 100);
    }
    cr_assert_eq(send_seq(p1, 30, 1000, &s1), MG_OK);

    created c2 = { 0 };
    pc_producer_opts po = { .topic = topic, .send_timeout_ms = 60000 };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c2), MG_OK);
    mgt_run_for(&g_loop, HOLD_MS);
    cr_assert(!c2.done, "a producer was created over the quota: %s", mg_strerror(c2.status));
    cr_assert_lt(s1.called, 31, "the message sent over the quota was answered");
    cr_assert_eq(s1.failed[0] + s1.failed[1] + s1.failed[2], 0, "sends failed under hold");

    skip_all(topic);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c2.done, CLIENT_OP_MS),
              "the held producer was not created once the backlog was cleared");
    cr_assert_eq(c2.status, MG_OK, "producer: %s (%s)", mg_strerror(c2.status),
                 pc_last_error(g_client));
    wait_sends(&s1, 31);
    cr_assert_eq(s1.ok, 31, "%u of 31 held messages stored", s1.ok);
    sends s2 = { 0 };
    cr_assert_eq(send_seq(c2.obj, 100, 1000, &s2), MG_OK);
    wait_sends(&s2, 1);
    cr_assert_eq(s2.ok, 1);
    cs_producer_close(&g_loop, c2.obj, WAIT_MS);
    cs_producer_close(&g_loop, p1, WAIT_MS);
    finish();
}

Test(policies, quota_exception_fails_sends)
{
    const char *const extra[] = { "--backlog-quota-default-limit-bytes",
                                  QUOTA_BYTES,
                                  "--backlog-quota-default-retention-policy",
                                  "producer_exception",
                                  "--backlog-quota-check-interval",
                                  CHECKS,
                                  NULL };
    start(extra);
    const char *topic = "refused";
    subscription_create(topic);
    pc_producer *p1 = producer_open(topic);
    sends s1 = { 0 };
    overfill(p1, &s1);
    wait_sends(&s1, 30);
    /* The check closes p1; registering again is refused: sends fail at once. */
    uint32_t seq = 30;
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    int rc;
    while ((rc = send_seq(p1, seq++, 1000, &s1)) == MG_OK && s1.failed[0] == 0) {
        cr_assert_lt(sah_now_ms(), deadline, "the producer over the quota can still send");
        mgt_run_for(&g_loop, 100);
    }
    cr_assert(rc == MG_EPERM || s1.failed[0] > 0, "send: %s", mg_strerror(rc));
    cr_assert_not_null(strstr(pc_last_error(g_client), "backlog quota"), "last error: %s",
                       pc_last_error(g_client));
    cr_assert_eq(s1.failed[1] + s1.failed[2], 0, "sends failed otherwise than refused");

    created c2 = { 0 };
    pc_producer_opts po = { .topic = topic };
    cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c2), MG_OK);
    cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c2.done, WAIT_MS), "creation not answered");
    cr_assert_eq(c2.status, MG_EPERM, "a producer over the quota: %s", mg_strerror(c2.status));
    cr_assert_not_null(strstr(pc_last_error(g_client), "backlog quota"), "last error: %s",
                       pc_last_error(g_client));

    /* Cleared: p1 registers again and sends. */
    skip_all(topic);
    sends s3 = { 0 };
    deadline = sah_now_ms() + CLIENT_OP_MS;
    while (send_seq(p1, seq++, 1000, &s3) != MG_OK) {
        cr_assert_lt(sah_now_ms(), deadline, "the producer was not accepted again");
        mgt_run_for(&g_loop, 100);
    }
    wait_sends(&s3, 1);
    cr_assert_eq(s3.ok, 1, "the send after the backlog was cleared failed");
    cs_producer_close(&g_loop, p1, WAIT_MS);
    finish();
}

Test(policies, quota_eviction_cuts_the_backlog)
{
    const char *const extra[] = { "--backlog-quota-default-limit-bytes",
                                  QUOTA_BYTES,
                                  "--backlog-quota-default-retention-policy",
                                  "consumer_backlog_eviction",
                                  "--backlog-quota-check-interval",
                                  CHECKS,
                                  NULL };
    start(extra);
    const char *topic = "evicted";
    subscription_create(topic);
    pc_producer *p = producer_open(topic);
    sends s = { 0 };
    for (uint32_t i = 0; i < 100; i++)
        cr_assert_eq(send_seq(p, i, 1000, &s), MG_OK);
    wait_sends(&s, 100);
    cr_assert_eq(s.ok, 100, "producers are not affected by eviction: %u of 100 stored", s.ok);
    wait_stat(topic, "backlogSize", -1, 20000);
    long long backlog = stat_get(topic, "msgBacklog");
    cr_assert(backlog > 0 && backlog < 100, "msgBacklog %lld", backlog);
    cr_assert_geq(metric("magnetar_broker_backlog_evicted_messages_total"), 100.0 - 20.0);
    /* Still producing while the checks run. */
    for (uint32_t i = 100; i < 110; i++)
        cr_assert_eq(send_seq(p, i, 1000, &s), MG_OK);
    wait_sends(&s, 110);
    cr_assert_eq(s.ok, 110);
    cs_producer_close(&g_loop, p, WAIT_MS);
    wait_stat(topic, "backlogSize", -1, 20000);

    /* The oldest are gone; what is left is contiguous up to the last. */
    got g = { 0 };
    pc_consumer *k = subscribe(topic, &g);
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    while (g.count == 0 || g.seq[g.count - 1] != 109) {
        cr_assert_lt(sah_now_ms(), deadline, "%u received, the last not among them", g.count);
        mgt_run_for(&g_loop, 50);
    }
    cr_assert_gt(g.seq[0], 0, "the oldest message was not evicted");
    cr_assert_leq(g.count, 20 + 1, "%u messages left, more than the quota holds", g.count);
    for (uint32_t i = 1; i < g.count; i++)
        cr_assert_eq(g.seq[i], g.seq[0] + i, "message %u where %u was due", g.seq[i], g.seq[0] + i);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    finish();
}

/* message_age: the oldest unacknowledged message older than the limit. The newer messages must
 * reach the consumer within the limit after they are written: 4 s leaves room for a loaded
 * machine. */

Test(policies, quota_age_eviction_expires_old_messages)
{
    const char *const extra[] = { "--backlog-quota-default-limit-seconds",
                                  "4",
                                  "--backlog-quota-default-retention-policy",
                                  "consumer_backlog_eviction",
                                  "--backlog-quota-check-interval",
                                  CHECKS,
                                  NULL };
    start(extra);
    const char *topic = "aged";
    subscription_create(topic);
    pc_producer *p = producer_open(topic);
    sends s = { 0 };
    for (uint32_t i = 0; i < 10; i++)
        cr_assert_eq(send_seq(p, i, 100, &s), MG_OK);
    wait_sends(&s, 10);
    cr_assert_eq(s.ok, 10);
    wait_stat(topic, "msgBacklog", 0, 0);
    cr_assert_eq(metric("magnetar_broker_backlog_evicted_messages_total"), 10.0);
    cr_assert_eq(stat_get(topic, "backlogQuotaLimitTime"), 4);
    cr_assert_eq(stat_get(topic, "backlogQuotaLimitSize"), -1);
    char *applied = topic_get(topic, "backlogQuotaMap?applied=true");
    const char *q = strstr(applied, "\"message_age\":{");
    cr_assert_not_null(q, "applied backlogQuotaMap: %s", applied);
    cr_assert_eq(json_int(q, "limitTime"), 4, "applied backlogQuotaMap: %s", applied);
    cr_assert_not_null(strstr(q, "\"policy\":\"consumer_backlog_eviction\""), "%s", applied);
    free(applied);
    for (uint32_t i = 10; i < 13; i++)
        cr_assert_eq(send_seq(p, i, 100, &s), MG_OK);
    wait_sends(&s, 13);
    cr_assert_eq(s.ok, 13, "producers are not affected by eviction");
    got g = { 0 };
    pc_consumer *k = subscribe(topic, &g);
    wait_got(&g, 3);
    mgt_run_for(&g_loop, QUIET_MS);
    cr_assert_eq(g.count, 3, "%u messages received, 3 expected", g.count);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(g.seq[i], 10 + i, "message %u where %u was due", g.seq[i], 10 + i);
    cs_producer_close(&g_loop, p, WAIT_MS);
    cr_assert_eq(cs_consumer_close(&g_loop, k, WAIT_MS), MG_OK);
    finish();
}

Test(policies, quota_age_refuses_producers)
{
    const char *const extra[] = { "--backlog-quota-default-limit-seconds",
                                  "1",
                                  "--backlog-quota-default-retention-policy",
                                  "producer_exception",
                                  "--backlog-quota-check-interval",
                                  CHECKS,
                                  NULL };
    start(extra);
    const char *topic = "aged-refused";
    subscription_create(topic);
    pc_producer *p1 = producer_open(topic);
    sends s1 = { 0 };
    cr_assert_eq(send_seq(p1, 0, 100, &s1), MG_OK);
    wait_sends(&s1, 1);
    cr_assert_eq(s1.ok, 1);
    /* Once the message is older than 1 s, new producers are refused. */
    int64_t deadline = sah_now_ms() + EFFECT_MS;
    for (;;) {
        created c = { 0 };
        pc_producer_opts po = { .topic = topic };
        cr_assert_eq(pc_producer_create(g_client, &po, producer_created, &c), MG_OK);
        cr_assert(mgt_run_until(&g_loop, mgt_flag_set, &c.done, WAIT_MS), "creation not answered");
        if (c.status == MG_EPERM)
            break;
        cr_assert_eq(c.status, MG_OK, "producer: %s", mg_strerror(c.status));
        cs_producer_close(&g_loop, c.obj, WAIT_MS);
        cr_assert_lt(sah_now_ms(), deadline, "producers still accepted over the age quota");
        mgt_run_for(&g_loop, 200);
    }
    cr_assert_not_null(strstr(pc_last_error(g_client), "backlog quota"), "last error: %s",
                       pc_last_error(g_client));
    /* Cleared: accepted again. */
    skip_all(topic);
    pc_producer *p2 = producer_open(topic);
    cs_producer_close(&g_loop, p2, WAIT_MS);
    cs_producer_close(&g_loop, p1, WAIT_MS);
    finish();
}
