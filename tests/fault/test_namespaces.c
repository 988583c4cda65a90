/*
 * Tenants and namespaces against a real standalone (support/sa_harness), through the admin REST
 * API (sah_http) and the Pulsar protocol on raw sockets (support/pulsar_raw):
 *  - public/default exists at the first start and after a restart;
 *  - every tenant and namespace route answers its successes and its errors (invalid names,
 *    a missing tenant, duplicates, a tenant with namespaces, bad bodies), and the policies
 *    round-trip with Pulsar's field names, fields the broker does not use kept;
 *  - a topic of a namespace that does not exist is refused on LOOKUP, PARTITIONED_METADATA,
 *    GET_TOPICS_OF_NAMESPACE, PRODUCER, SUBSCRIBE (TopicNotFound, "Namespace not found") and
 *    on the topic REST routes (404), and nothing is created for it; once the namespace is
 *    created the same topic is accepted;
 *  - a namespace with topics is not deleted (409) unless forced; a forced delete closes its
 *    producer and removes its topics (plain and partitioned) with their data.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pulsar/wire.h"
#include "common/buf.h"
#include "common/error.h"
#include "support/pulsar_raw.h"
#include "support/sa_harness.h"

#define T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

_Static_assert(ERR(TopicNotFound) == 11, "ServerError TopicNotFound is 11 on the wire");

#define REPLY_TIMEOUT_MS 10000 /* an answer (PRODUCER may create a ledger first) */
#define BODY_BYTES_MAX   8192
#define NS_MISSING       "persistent://ghost/ns1/t1"

static sah_standalone g_sa;
static bool g_passed;
static prw_client g_cl = { .timeout_ms = REPLY_TIMEOUT_MS };
static char g_body[BODY_BYTES_MAX];

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    sah_destroy(&g_sa);
}

TestSuite(namespaces, .fini = suite_fini, .timeout = 120);

static void sa_start(void)
{
    int rc = sah_start(&g_sa, NULL);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_cl.port = g_sa.broker_port;
}

/* method path [body] must answer status, with a body holding want (when not NULL). The body is
 * left in g_body. */
static void http_expect(const char *method, const char *path, const char *body, int status,
                        const char *want)
{
    int got = sah_http(&g_sa, method, path, body, g_body, sizeof(g_body));
    cr_assert_eq(got, status, "%s %s%s%s: expected %d, got %d: %s", method, path,
                 body != NULL ? " with " : "", body != NULL ? body : "", status, got, g_body);
    if (want != NULL)
        cr_assert_not_null(strstr(g_body, want), "%s %s: the answer %s does not hold %s", method,
                           path, g_body, want);
}

static void http_lacks(const char *method, const char *path, const char *unwanted)
{
    http_expect(method, path, NULL, 200, NULL);
    cr_assert_null(strstr(g_body, unwanted), "%s %s: the answer %s still holds %s", method, path,
                   g_body, unwanted);
}

/* ---- the Pulsar protocol ----------------------------------------------------------------------
 */

static prw_conn connect_raw(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    c.auto_pong = true;
    mg_buf *b = prw_encode_connect("magnetar-namespace-test", 19);
    prw_write_buf(&c, b);
    mg_buf_unref(b);
    prw_expect(&c, T(CONNECTED));
    return c;
}

static void send_lookup(prw_conn *c, const char *topic, uint64_t request_id)
{
    Magnetar__Pulsar__CommandLookupTopic lt = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC__INIT;
    lt.topic = (char *)topic;
    lt.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(LOOKUP);
    cmd.lookup_topic = &lt;
    prw_send_cmd(c, &cmd);
}

static void send_partitioned_metadata(prw_conn *c, const char *topic, uint64_t request_id)
{
    Magnetar__Pulsar__CommandPartitionedTopicMetadata pm =
        MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA__INIT;
    pm.topic = (char *)topic;
    pm.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(PARTITIONED_METADATA);
    cmd.partition_metadata = &pm;
    prw_send_cmd(c, &cmd);
}

static void send_topics_of_namespace(prw_conn *c, const char *ns, uint64_t request_id)
{
    Magnetar__Pulsar__CommandGetTopicsOfNamespace g =
        MAGNETAR__PULSAR__COMMAND_GET_TOPICS_OF_NAMESPACE__INIT;
    g.namespace_ = (char *)ns;
    g.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(GET_TOPICS_OF_NAMESPACE);
    cmd.get_topics_of_namespace = &g;
    prw_send_cmd(c, &cmd);
}

static void send_subscribe(prw_conn *c, const char *topic, uint64_t consumer_id,
                           uint64_t request_id)
{
    Magnetar__Pulsar__CommandSubscribe s = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
    s.topic = (char *)topic;
    s.subscription = (char *)"sub";
    s.sub_type = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive;
    s.consumer_id = consumer_id;
    s.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SUBSCRIBE);
    cmd.subscribe = &s;
    prw_send_cmd(c, &cmd);
}

static void expect_error(prw_conn *c, uint64_t request_id, const char *what)
{
    const Magnetar__Pulsar__CommandError *e = prw_expect(c, T(ERROR))->error;
    cr_assert_eq(e->request_id, request_id, "%s: the ERROR answers request %llu", what,
                 (unsigned long long)e->request_id);
    cr_assert_eq(e->error, ERR(TopicNotFound), "%s: error %d, not TopicNotFound", what,
                 (int)e->error);
    cr_assert_str_eq(e->message, "Namespace not found", "%s", what);
}

/* Every command that names a topic (or the namespace) of ghost/ns1 is refused. */
static void protocol_refuses_missing_namespace(void)
{
    prw_conn c = connect_raw();
    send_lookup(&c, NS_MISSING, 1);
    const Magnetar__Pulsar__CommandLookupTopicResponse *lr =
        prw_expect(&c, T(LOOKUP_RESPONSE))->lookup_topic_response;
    cr_assert_eq(lr->request_id, 1);
    cr_assert_eq(lr->response,
                 MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed);
    cr_assert(lr->has_error);
    cr_assert_eq(lr->error, ERR(TopicNotFound));
    cr_assert_str_eq(lr->message, "Namespace not found");

    send_partitioned_metadata(&c, NS_MISSING, 2);
    const Magnetar__Pulsar__CommandPartitionedTopicMetadataResponse *pr =
        prw_expect(&c, T(PARTITIONED_METADATA_RESPONSE))->partition_metadata_response;
    cr_assert_eq(pr->request_id, 2);
    cr_assert_eq(
        pr->response,
        MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Failed);
    cr_assert_eq(pr->error, ERR(TopicNotFound));

    send_topics_of_namespace(&c, "ghost/ns1", 3);
    expect_error(&c, 3, "GET_TOPICS_OF_NAMESPACE");

    prw_send_producer(&c, NS_MISSING, 1, 4);
    expect_error(&c, 4, "PRODUCER");

    send_subscribe(&c, NS_MISSING, 1, 5);
    expect_error(&c, 5, "SUBSCRIBE");
    prw_close(&c);
}

/* ---- the cases --------------------------------------------------------------------------------
 */

static void public_default_present(void)
{
    http_expect("GET", "/admin/v2/tenants", NULL, 200, "\"public\"");
    http_expect("GET", "/admin/v2/tenants/public", NULL, 200, "\"allowedClusters\"");
    http_expect("GET", "/admin/v2/namespaces/public", NULL, 200, "\"public/default\"");
    http_expect("GET", "/admin/v2/namespaces/public/default", NULL, 200, "\"deleted\":false");
    cr_assert_not_null(strstr(g_body, "\"bundles\""), "no bundles in %s", g_body);
    cr_assert_not_null(strstr(g_body, "\"backlog_quota_map\""), "no quota map in %s", g_body);
}

Test(namespaces, public_default_at_start_and_after_a_restart)
{
    sa_start();
    public_default_present();
    /* A topic of public/default works without any set-up. */
    prw_conn c = connect_raw();
    prw_send_producer(&c, "persistent://public/default/plain", 1, 1);
    prw_expect(&c, T(PRODUCER_SUCCESS));
    prw_close(&c);
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    g_cl.port = g_sa.broker_port;
    public_default_present();
    http_expect("GET", "/admin/v2/tenants", NULL, 200, "[\"public\"]");
    g_passed = true;
}

Test(namespaces, tenant_routes)
{
    sa_start();
    http_expect("PUT", "/admin/v2/tenants/..x", NULL, 412, "start with '..'");
    http_expect("PUT", "/admin/v2/tenants/a%20b", NULL, 412, "invalid character ' '");
    http_expect("PUT", "/admin/v2/tenants/a%2Fb", NULL, 412, "invalid character '/'");
    http_expect("PUT", "/admin/v2/tenants/acme", "{\"adminRoles\":\"ops\"}", 400,
                "'adminRoles' must be an array of strings");
    http_expect("PUT", "/admin/v2/tenants/acme", "{\"adminRoles\":[", 400, "not valid JSON");
    http_expect("PUT", "/admin/v2/tenants/acme", NULL, 204, NULL);
    http_expect("PUT", "/admin/v2/tenants/acme", NULL, 409, "Tenant already exists");
    http_expect("GET", "/admin/v2/tenants/acme", NULL, 200,
                "{\"adminRoles\":[],\"allowedClusters\":[\"standalone\"]}");
    http_expect("PUT", "/admin/v2/tenants/beta",
                "{\"adminRoles\":[\"ops\"],\"allowedClusters\":[\"standalone\"]}", 204, NULL);
    http_expect("GET", "/admin/v2/tenants/beta", NULL, 200, "\"adminRoles\":[\"ops\"]");
    http_expect("POST", "/admin/v2/tenants/beta",
                "{\"adminRoles\":[\"ops\",\"dev\"],\"allowedClusters\":[\"standalone\"]}", 204,
                NULL);
    http_expect("GET", "/admin/v2/tenants/beta", NULL, 200, "\"adminRoles\":[\"ops\",\"dev\"]");
    http_expect("POST", "/admin/v2/tenants/nobody", "{}", 404, "Tenant does not exist");
    http_expect("GET", "/admin/v2/tenants/nobody", NULL, 404, "Tenant does not exist");
    http_expect("GET", "/admin/v2/tenants", NULL, 200, "[\"acme\",\"beta\",\"public\"]");
    /* A tenant with a namespace stays. */
    http_expect("PUT", "/admin/v2/namespaces/beta/ns", NULL, 204, NULL);
    http_expect("DELETE", "/admin/v2/tenants/beta", NULL, 409,
                "The tenant still has active namespaces");
    http_expect("DELETE", "/admin/v2/namespaces/beta/ns", NULL, 204, NULL);
    http_expect("DELETE", "/admin/v2/tenants/beta", NULL, 204, NULL);
    http_expect("DELETE", "/admin/v2/tenants/beta", NULL, 404, "Tenant does not exist");
    http_expect("GET", "/admin/v2/tenants", NULL, 200, "[\"acme\",\"public\"]");
    g_passed = true;
}

Test(namespaces, namespace_routes_and_policies)
{
    sa_start();
    const char *ns = "/admin/v2/namespaces/acme/orders";
    http_expect("GET", "/admin/v2/namespaces/acme", NULL, 404, "Tenant does not exist");
    http_expect("PUT", ns, NULL, 404, "Tenant does not exist");
    http_expect("PUT", "/admin/v2/tenants/acme", "", 204, NULL);
    http_expect("GET", "/admin/v2/namespaces/acme", NULL, 200, "[]");
    http_expect("PUT", "/admin/v2/namespaces/acme/..y", NULL, 412, "start with '..'");
    http_expect("PUT", "/admin/v2/namespaces/acme/a%20b", NULL, 412, "invalid character ' '");
    http_expect("PUT", ns, "[1]", 400, "must be a JSON object");
    http_expect("PUT", ns, "{\"message_ttl_in_seconds\":-3}", 412, "message TTL must be >= 0");
    http_expect("PUT", ns, NULL, 204, NULL);
    http_expect("PUT", ns, NULL, 409, "Namespace already exists");
    http_expect("GET", "/admin/v2/namespaces/acme", NULL, 200, "[\"acme/orders\"]");
    http_expect("GET", "/admin/v2/namespaces/acme/nothing", NULL, 404, "Namespace does not exist");
    http_expect("GET", "/admin/v2/namespaces/acme/nothing/retention", NULL, 404,
                "Namespace does not exist");
    http_expect("POST", "/admin/v2/namespaces/acme/nothing/messageTTL", "5", 404,
                "Namespace does not exist");

    /* Unset policies: absent, and 204 on their own routes. */
    http_lacks("GET", ns, "retention_policies");
    http_lacks("GET", ns, "message_ttl_in_seconds");
    char path[256];
    snprintf(path, sizeof(path), "%s/retention", ns);
    http_expect("GET", path, NULL, 204, NULL);
    /* Retention. */
    http_expect("POST", path, "{\"retentionTimeInMinutes\":120,\"retentionSizeInMB\":512}", 204,
                NULL);
    http_expect("GET", path, NULL, 200,
                "{\"retentionTimeInMinutes\":120,\"retentionSizeInMB\":512}");
    http_expect(
        "GET", ns, NULL, 200,
        "\"retention_policies\":{\"retentionTimeInMinutes\":120,\"retentionSizeInMB\":512}");
    http_expect("POST", path, "{\"retentionTimeInMinutes\":-1,\"retentionSizeInMB\":-1}", 204,
                NULL);
    http_expect("GET", path, NULL, 200, "{\"retentionTimeInMinutes\":-1,\"retentionSizeInMB\":-1}");
    http_expect("POST", path, "{\"retentionTimeInMinutes\":-2,\"retentionSizeInMB\":10}", 412,
                "time limit must be >= -1");
    http_expect("POST", path, "{\"retentionTimeInMinutes\":0,\"retentionSizeInMB\":10}", 412,
                "Setting a single time or size limit to 0 is invalid");
    http_expect("POST", path, "{\"retentionTimeInMinutes\":\"x\"}", 400, "must be an integer");
    http_expect("POST", path, "{", 400, "not valid JSON");
    http_expect("POST", path, NULL, 400, "no body");
    http_expect("GET", path, NULL, 200, "{\"retentionTimeInMinutes\":-1,\"retentionSizeInMB\":-1}");
    http_expect("DELETE", path, NULL, 204, NULL);
    http_expect("GET", path, NULL, 204, NULL);
    http_lacks("GET", ns, "retention_policies");

    /* Message TTL: a bare integer. */
    snprintf(path, sizeof(path), "%s/messageTTL", ns);
    http_expect("GET", path, NULL, 204, NULL);
    http_expect("POST", path, "3600", 204, NULL);
    http_expect("GET", path, NULL, 200, "3600");
    http_expect("GET", ns, NULL, 200, "\"message_ttl_in_seconds\":3600");
    http_expect("POST", path, "-5", 412, "message TTL must be >= 0");
    http_expect("POST", path, "\"ten\"", 400, "must be an integer");
    http_expect("DELETE", path, NULL, 204, NULL);
    http_expect("GET", path, NULL, 204, NULL);
    http_lacks("GET", ns, "message_ttl_in_seconds");

    /* Backlog quotas, by type. */
    snprintf(path, sizeof(path), "%s/backlogQuotaMap", ns);
    http_expect("GET", path, NULL, 200, "{}");
    snprintf(path, sizeof(path), "%s/backlogQuota", ns);
    http_expect("POST", path,
                "{\"limitSize\":1048576,\"limitTime\":-1,\"policy\":\"producer_request_hold\"}",
                204, NULL);
    snprintf(path, sizeof(path), "%s/backlogQuota?backlogQuotaType=message_age", ns);
    http_expect("POST", path, "{\"limitTime\":300,\"policy\":\"consumer_backlog_eviction\"}", 204,
                NULL);
    snprintf(path, sizeof(path), "%s/backlogQuotaMap", ns);
    http_expect("GET", path, NULL, 200,
                "\"destination_storage\":{\"limit\":1048576,\"limitSize\":1048576,"
                "\"limitTime\":-1,\"policy\":\"producer_request_hold\"}");
    cr_assert_not_null(strstr(g_body,
                              "\"message_age\":{\"limit\":-1,\"limitSize\":-1,"
                              "\"limitTime\":300,\"policy\":\"consumer_backlog_eviction\"}"),
                       "%s", g_body);
    /* The older "limit" names the size too. */
    snprintf(path, sizeof(path), "%s/backlogQuota?backlogQuotaType=destination_storage", ns);
    http_expect("POST", path, "{\"limit\":2048,\"policy\":\"producer_exception\"}", 204, NULL);
    http_expect("GET", ns, NULL, 200,
                "\"destination_storage\":{\"limit\":2048,\"limitSize\":2048,\"limitTime\":-1,"
                "\"policy\":\"producer_exception\"}");
    http_expect("POST", path, "{\"limitSize\":10,\"policy\":\"drop_everything\"}", 400,
                "unknown backlog quota policy 'drop_everything'");
    http_expect("POST", path, "not json", 400, "not valid JSON");
    snprintf(path, sizeof(path), "%s/backlogQuota?backlogQuotaType=bogus", ns);
    http_expect("POST", path, "{\"limitSize\":10}", 400, "unknown backlogQuotaType 'bogus'");
    snprintf(path, sizeof(path), "%s/backlogQuota?backlogQuotaType=message_age", ns);
    http_expect("DELETE", path, NULL, 204, NULL);
    snprintf(path, sizeof(path), "%s/backlogQuotaMap", ns);
    http_lacks("GET", path, "message_age");
    http_expect("GET", path, NULL, 200, "\"destination_storage\"");

    /* Policies given at creation, and fields this broker does not use, round-trip. */
    const char *ns2 = "/admin/v2/namespaces/acme/given";
    http_expect("PUT", ns2,
                "{\"message_ttl_in_seconds\":15,\"retention_policies\":{\"retentionTimeInMinutes\":"
                "5,\"retentionSizeInMB\":6},\"schema_compatibility_strategy\":\"FULL\","
                "\"publishMaxMessageRate\":{\"standalone\":{\"publishThrottlingRateInMsg\":7}}}",
                204, NULL);
    snprintf(path, sizeof(path), "%s/messageTTL", ns2);
    http_expect("POST", path, "16", 204, NULL);
    http_expect("GET", ns2, NULL, 200, "\"message_ttl_in_seconds\":16");
    cr_assert_not_null(strstr(g_body, "\"schema_compatibility_strategy\":\"FULL\""), "%s", g_body);
    cr_assert_not_null(strstr(g_body, "\"publishThrottlingRateInMsg\":7"), "%s", g_body);
    cr_assert_not_null(strstr(g_body, "\"retentionTimeInMinutes\":5"), "%s", g_body);
    cr_assert_not_null(strstr(g_body, "\"deleted\":false"), "%s", g_body);

    /* The policies survive a restart. */
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    http_expect("GET", ns2, NULL, 200, "\"message_ttl_in_seconds\":16");
    http_expect("GET", "/admin/v2/namespaces/acme", NULL, 200, "[\"acme/given\",\"acme/orders\"]");
    g_passed = true;
}

Test(namespaces, topics_of_a_missing_namespace_are_refused_and_nothing_is_created)
{
    sa_start();
    protocol_refuses_missing_namespace();
    /* The topic routes. */
    http_expect("PUT", "/admin/v2/persistent/ghost/ns1/t1", NULL, 404, "Namespace does not exist");
    http_expect("PUT", "/admin/v2/persistent/ghost/ns1/p/partitions", "2", 404,
                "Namespace does not exist");
    http_expect("GET", "/admin/v2/persistent/ghost/ns1/t1/stats", NULL, 404,
                "Namespace does not exist");
    http_expect("GET", "/admin/v2/persistent/ghost/ns1", NULL, 404, "Namespace does not exist");
    /* An existing tenant without that namespace: the same. */
    http_expect("PUT", "/admin/v2/tenants/ghost", NULL, 204, NULL);
    protocol_refuses_missing_namespace();
    http_expect("PUT", "/admin/v2/persistent/ghost/ns1/t1", NULL, 404, "Namespace does not exist");

    /* Nothing was created for them. */
    http_expect("PUT", "/admin/v2/namespaces/ghost/ns1", NULL, 204, NULL);
    http_expect("GET", "/admin/v2/persistent/ghost/ns1", NULL, 200, "[]");
    http_expect("GET", "/admin/v2/persistent/ghost/ns1/partitioned", NULL, 200, "[]");

    /* Now the same topic is accepted: lookup, producer (which creates it), consumer. */
    prw_conn c = connect_raw();
    send_lookup(&c, NS_MISSING, 1);
    const Magnetar__Pulsar__CommandLookupTopicResponse *lr =
        prw_expect(&c, T(LOOKUP_RESPONSE))->lookup_topic_response;
    cr_assert_eq(lr->response,
                 MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    prw_send_producer(&c, NS_MISSING, 1, 2);
    prw_expect(&c, T(PRODUCER_SUCCESS));
    prw_subscribe(&c, NS_MISSING, "sub", 1, 3, true, 10);
    send_topics_of_namespace(&c, "ghost/ns1", 4);
    const Magnetar__Pulsar__CommandGetTopicsOfNamespaceResponse *tr =
        prw_expect(&c, T(GET_TOPICS_OF_NAMESPACE_RESPONSE))->get_topics_of_namespace_response;
    cr_assert_eq(tr->n_topics, 1);
    cr_assert_str_eq(tr->topics[0], NS_MISSING);
    prw_close(&c);
    http_expect("GET", "/admin/v2/persistent/ghost/ns1", NULL, 200, "[\"" NS_MISSING "\"]");
    g_passed = true;
}

Test(namespaces, delete_refused_with_topics_unless_forced)
{
    sa_start();
    const char *topic = "persistent://acme/orders/o1";
    http_expect("PUT", "/admin/v2/tenants/acme", NULL, 204, NULL);
    http_expect("PUT", "/admin/v2/namespaces/acme/orders", NULL, 204, NULL);
    http_expect("PUT", "/admin/v2/persistent/acme/orders/parted/partitions", "3", 204, NULL);
    /* A producer stores a message. */
    prw_conn c = connect_raw();
    prw_send_producer(&c, topic, 1, 1);
    prw_expect(&c, T(PRODUCER_SUCCESS));
    mg_buf *b = prw_encode_send(1, 0, "ns-test", "hello", 5);
    prw_write_buf(&c, b);
    mg_buf_unref(b);
    prw_expect(&c, T(SEND_RECEIPT));
    http_expect("GET", "/admin/v2/persistent/acme/orders/o1/internalStats", NULL, 200,
                "\"numberOfEntries\":1");

    http_expect("DELETE", "/admin/v2/namespaces/acme/orders", NULL, 409,
                "Cannot delete non empty namespace");
    http_expect("DELETE", "/admin/v2/namespaces/acme/nothing", NULL, 404,
                "Namespace does not exist");
    /* A tenant with a namespace stays. */
    http_expect("DELETE", "/admin/v2/tenants/acme", NULL, 409, "active namespaces");
    http_expect("DELETE", "/admin/v2/namespaces/acme/orders?force=true", NULL, 204, NULL);
    /* The producer was closed, and may not come back. */
    const Magnetar__Pulsar__CommandCloseProducer *cp =
        prw_expect(&c, T(CLOSE_PRODUCER))->close_producer;
    cr_assert_eq(cp->producer_id, 1);
    prw_send_producer(&c, topic, 2, 2);
    expect_error(&c, 2, "PRODUCER after the namespace was deleted");
    prw_close(&c);
    http_expect("GET", "/admin/v2/namespaces/acme/orders", NULL, 404, "Namespace does not exist");
    http_expect("GET", "/admin/v2/namespaces/acme", NULL, 200, "[]");

    /* Created again, it is empty: the topics and their data are gone. */
    http_expect("PUT", "/admin/v2/namespaces/acme/orders", NULL, 204, NULL);
    http_expect("GET", "/admin/v2/persistent/acme/orders", NULL, 200, "[]");
    http_expect("GET", "/admin/v2/persistent/acme/orders/partitioned", NULL, 200, "[]");
    http_expect("GET", "/admin/v2/persistent/acme/orders/o1/internalStats", NULL, 404,
                "Topic not found");
    c = connect_raw();
    prw_send_producer(&c, topic, 1, 1);
    prw_expect(&c, T(PRODUCER_SUCCESS));
    prw_close(&c);
    http_expect("GET", "/admin/v2/persistent/acme/orders/o1/internalStats", NULL, 200,
                "\"numberOfEntries\":0");
    /* An empty namespace goes without force, and then its tenant. */
    http_expect("DELETE", "/admin/v2/namespaces/acme/orders?force=true", NULL, 204, NULL);
    http_expect("PUT", "/admin/v2/namespaces/acme/empty", NULL, 204, NULL);
    http_expect("DELETE", "/admin/v2/namespaces/acme/empty", NULL, 204, NULL);
    http_expect("DELETE", "/admin/v2/tenants/acme", NULL, 204, NULL);
    g_passed = true;
}
