/*
 * The Kafka shim keeps the broker's rule that a topic lives in a namespace that exists: a Kafka
 * topic is a topic of public/default, which exists from the start; once public/default is
 * deleted (forced, through the admin API) a Produce is answered UNKNOWN_TOPIC_OR_PARTITION and
 * creates nothing, and once it is created again the same Produce is stored. Against a real
 * standalone (support/sa_harness) through the raw Kafka client (support/kafka_raw).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "kafka/wire.h"
#include "common/error.h"
#include "support/kafka_raw.h"
#include "support/sa_harness.h"

#define TIMEOUT_MS                 10000
#define UNKNOWN_TOPIC_OR_PARTITION 3 /* Kafka's error code */
#define NS_URL                     "/admin/v2/namespaces/public/default"

static sah_standalone g_sa;
static bool g_passed;

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

TestSuite(kafka_namespace, .fini = suite_fini, .timeout = 120);

static krw_produce_result produce_one(krw_conn *c, const char *topic, const char *value)
{
    kw_writer b;
    kw_writer_init(&b, 0);
    const char *const values[] = { value };
    krw_write_batch(&b, &KRW_BATCH_PLAIN, values, 1);
    cr_assert_eq(kw_writer_error(&b), MG_OK);
    krw_produce_result r = krw_produce(c, topic, 0, 1, b.buf, b.len);
    kw_writer_free(&b);
    return r;
}

static void http_expect(const char *method, const char *path, int status, const char *want)
{
    char body[4096];
    int got = sah_http(&g_sa, method, path, NULL, body, sizeof(body));
    cr_assert_eq(got, status, "%s %s: expected %d, got %d: %s", method, path, status, got, body);
    if (want != NULL)
        cr_assert_not_null(strstr(body, want), "%s %s: %s does not hold %s", method, path, body,
                           want);
}

Test(kafka_namespace, produce_refused_while_public_default_is_missing)
{
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    krw_conn c = krw_open(sah_kafka_port(&g_sa), TIMEOUT_MS);
    krw_produce_result r = produce_one(&c, "orders", "first");
    cr_assert_eq(r.error, 0, "produce to public/default: error %d", r.error);

    http_expect("DELETE", NS_URL "?force=true", 204, NULL);
    r = produce_one(&c, "orders", "second");
    cr_assert_eq(r.error, UNKNOWN_TOPIC_OR_PARTITION, "a deleted topic: error %d", r.error);
    r = produce_one(&c, "fresh", "one");
    cr_assert_eq(r.error, UNKNOWN_TOPIC_OR_PARTITION, "a new topic: error %d", r.error);

    http_expect("PUT", NS_URL, 204, NULL);
    http_expect("GET", "/admin/v2/persistent/public/default", 200, "[]");
    r = produce_one(&c, "fresh", "one");
    cr_assert_eq(r.error, 0, "produce after public/default came back: error %d", r.error);
    cr_assert_eq(r.base_offset, 0);
    http_expect("GET", "/admin/v2/persistent/public/default", 200,
                "[\"persistent://public/default/fresh\"]");
    krw_close(&c);
    g_passed = true;
}
