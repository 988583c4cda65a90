/*
 * Tests of the chat HTTP API (src/chat_gateway/api.c) without a broker: the online aggregation
 * (sums over gateways, stale and malformed values left out, the room lookup and the top list),
 * room id validation, every refusal of each push and online endpoint through
 * mg_http_server_inject (the server's own routing, no socket), counted in the API's metrics, and
 * the chat page answering at GET /chat. Storing pushes is tested against a real standalone in
 * tests/chat/api/test_api_produce.c.
 */
#include "chat_gateway/api.h"
#include "chat_gateway/auth.h"

#include "chat_gateway/limits.h"
#include "chat_gateway/page.h"
#include "common/error.h"
#include "common/http.h"
#include "common/log.h"
#include "common/metrics.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

TestSuite(api, .timeout = 30);

/* --- online aggregation ---------------------------------------------------------------------- */

#define NOW_MS 1700000000000LL

static cg_api_online_value val(const char *json)
{
    return (cg_api_online_value){ json, strlen(json) };
}

Test(api, online_sums_gateways)
{
    char a[256], b[256];
    snprintf(a, sizeof(a),
             "{\"id\":\"gw-a\",\"updated_ms\":%lld,\"conn_count\":10,\"ip_count\":7,"
             "\"rooms\":{\"live://1000\":6,\"live://1001\":4}}",
             NOW_MS - 1000);
    snprintf(b, sizeof(b),
             "{\"id\":\"gw-b\",\"updated_ms\":%lld,\"conn_count\":5,\"ip_count\":5,"
             "\"rooms\":{\"live://1000\":3,\"game://7\":2}}",
             NOW_MS);
    cg_api_online_value v[2] = { val(a), val(b) };
    cg_api_online o;
    cr_assert_eq(cg_api_online_aggregate(v, 2, NOW_MS, &o), MG_OK);
    cr_assert_eq(o.conn_count, 15);
    cr_assert_eq(o.ip_count, 12);
    cr_assert_eq(o.gateway_count, 2);
    cr_assert_eq(o.skipped_parse_count, 0);
    cr_assert_eq(o.skipped_stale_count, 0);
    cr_assert_eq(o.room_count, 3);
    /* Sorted by room id. */
    cr_assert_str_eq(o.rooms[0].room_id, "game://7");
    cr_assert_str_eq(o.rooms[1].room_id, "live://1000");
    cr_assert_str_eq(o.rooms[2].room_id, "live://1001");
    cr_assert_eq(cg_api_online_room_count(&o, "live://1000"), 9);
    cr_assert_eq(cg_api_online_room_count(&o, "live://1001"), 4);
    cr_assert_eq(cg_api_online_room_count(&o, "game://7"), 2);
    cr_assert_eq(cg_api_online_room_count(&o, "live://9"), 0);
    cg_api_online_release(&o);
    cr_assert_eq(o.rooms, NULL);
    cr_assert_eq(o.room_count, 0);
}

Test(api, online_leaves_out_stale_and_malformed_values)
{
    char fresh[256], stale[256], edge[256];
    snprintf(fresh, sizeof(fresh),
             "{\"id\":\"f\",\"updated_ms\":%lld,\"conn_count\":1,\"ip_count\":1,"
             "\"rooms\":{\"live://1\":1}}",
             NOW_MS);
    snprintf(stale, sizeof(stale),
             "{\"id\":\"s\",\"updated_ms\":%lld,\"conn_count\":100,\"ip_count\":100,"
             "\"rooms\":{\"live://1\":100}}",
             NOW_MS - (long long)CG_ONLINE_STALE_MS - 1);
    /* Exactly CG_ONLINE_STALE_MS old still counts. */
    snprintf(edge, sizeof(edge),
             "{\"id\":\"e\",\"updated_ms\":%lld,\"conn_count\":2,\"ip_count\":2,"
             "\"rooms\":{\"live://1\":2}}",
             NOW_MS - (long long)CG_ONLINE_STALE_MS);
    const char *bad[] = {
        "",
        "not json",
        "[1,2]",
        "{\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1,\"rooms\":{}}",
        "{\"id\":\"x\",\"conn_count\":1,\"ip_count\":1,\"rooms\":{}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":-1,\"ip_count\":1,"
        "\"rooms\":{}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":\"1\","
        "\"rooms\":{}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1,"
        "\"rooms\":{\"live://1\":-3}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1,"
        "\"rooms\":{\"no-type\":3}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1,"
        "\"rooms\":{\"LIVE://1\":3}}",
        "{\"id\":\"x\",\"updated_ms\":1700000000000,\"conn_count\":1,\"ip_count\":1,"
        "\"rooms\":{\"live://1\":1.5}}",
        "{\"id\":\"x\",\"id\":\"y\",\"updated_ms\":1700000000000,\"conn_count\":1,"
        "\"ip_count\":1,\"rooms\":{}}",
    };
    size_t nbad = sizeof(bad) / sizeof(bad[0]);
    cg_api_online_value v[32];
    size_t n = 0;
    v[n++] = val(fresh);
    v[n++] = val(stale);
    v[n++] = val(edge);
    for (size_t i = 0; i < nbad; i++)
        v[n++] = val(bad[i]);
    cg_api_online o;
    cr_assert_eq(cg_api_online_aggregate(v, n, NOW_MS, &o), MG_OK);
    cr_assert_eq(o.gateway_count, 2);
    cr_assert_eq(o.skipped_stale_count, 1);
    cr_assert_eq(o.skipped_parse_count, nbad);
    cr_assert_eq(o.conn_count, 3);
    cr_assert_eq(o.ip_count, 3);
    cr_assert_eq(o.room_count, 1);
    cr_assert_eq(cg_api_online_room_count(&o, "live://1"), 3);
    cg_api_online_release(&o);
}

Test(api, online_empty_and_saturating)
{
    cg_api_online o;
    cr_assert_eq(cg_api_online_aggregate(NULL, 0, NOW_MS, &o), MG_OK);
    cr_assert_eq(o.conn_count, 0);
    cr_assert_eq(o.room_count, 0);
    cr_assert_eq(cg_api_online_room_count(&o, "live://1"), 0);
    cg_api_online_room top[4];
    cr_assert_eq(cg_api_online_top(&o, "live", top, 4), 0);
    cg_api_online_release(&o);

    char big[256];
    snprintf(big, sizeof(big),
             "{\"id\":\"b\",\"updated_ms\":%lld,\"conn_count\":%" PRId64 ",\"ip_count\":1,"
             "\"rooms\":{\"live://1\":%" PRId64 "}}",
             NOW_MS, INT64_MAX, INT64_MAX);
    cg_api_online_value v[3] = { val(big), val(big), val(big) };
    cr_assert_eq(cg_api_online_aggregate(v, 3, NOW_MS, &o), MG_OK);
    cr_assert_eq(o.conn_count, UINT64_MAX);
    cr_assert_eq(o.ip_count, 3);
    cr_assert_eq(cg_api_online_room_count(&o, "live://1"), UINT64_MAX);
    cg_api_online_release(&o);
}

Test(api, online_top_orders_and_filters)
{
    char a[512];
    snprintf(a, sizeof(a),
             "{\"id\":\"a\",\"updated_ms\":%lld,\"conn_count\":0,\"ip_count\":0,"
             "\"rooms\":{\"live://1\":5,\"live://2\":9,\"live://3\":5,\"live://4\":1,"
             "\"lives://5\":100,\"game://6\":50,\"live://7\":7}}",
             NOW_MS);
    cg_api_online_value v[1] = { val(a) };
    cg_api_online o;
    cr_assert_eq(cg_api_online_aggregate(v, 1, NOW_MS, &o), MG_OK);
    cg_api_online_room top[8];
    size_t n = cg_api_online_top(&o, "live", top, 8);
    /* Largest first, ties by room id; "lives://5" and "game://6" are of other types. */
    cr_assert_eq(n, 5);
    const char *want[] = { "live://2", "live://7", "live://1", "live://3", "live://4" };
    const uint64_t counts[] = { 9, 7, 5, 5, 1 };
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(top[i].room_id, want[i], "place %zu", i);
        cr_assert_eq(top[i].count, counts[i]);
    }
    n = cg_api_online_top(&o, "live", top, 3);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(top[0].room_id, "live://2");
    cr_assert_str_eq(top[1].room_id, "live://7");
    cr_assert_str_eq(top[2].room_id, "live://1");
    n = cg_api_online_top(&o, "game", top, 8);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(top[0].room_id, "game://6");
    cr_assert_eq(cg_api_online_top(&o, "none", top, 8), 0);
    cg_api_online_release(&o);
}

Test(api, online_rooms_bounded)
{
    /* One gateway naming one room more than the bound: the last one (in its order) is left
     * out and counted. */
    size_t rooms = CG_API_ONLINE_ROOMS_MAX + 1;
    size_t cap = 128 + rooms * 24;
    char *json = malloc(cap);
    cr_assert_not_null(json);
    size_t len = (size_t)snprintf(json, cap,
                                  "{\"id\":\"g\",\"updated_ms\":%lld,\"conn_count\":1,"
                                  "\"ip_count\":1,\"rooms\":{",
                                  NOW_MS);
    for (size_t i = 0; i < rooms; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"live://%zu\":1", i ? "," : "", i);
    len += (size_t)snprintf(json + len, cap - len, "}}");
    cr_assert_lt(len, cap);
    cg_api_online_value v[1] = { { json, len } };
    cg_api_online o;
    cr_assert_eq(cg_api_online_aggregate(v, 1, NOW_MS, &o), MG_OK);
    cr_assert_eq(o.room_count, CG_API_ONLINE_ROOMS_MAX);
    cr_assert_eq(o.rooms_dropped_count, 1);
    cr_assert_eq(o.gateway_count, 1);
    cg_api_online_release(&o);
    free(json);
}

/* --- validation ------------------------------------------------------------------------------ */

/* The push API gets a room's type and id apart (?type=live&room=1000): auth.h's checks of the two
 * halves, against what cg_room_parse takes whole (tests/unit/chat_gateway/test_auth.c). */
Test(api, room_halves)
{
    cr_assert(cg_room_type_valid("live", 4));
    cr_assert(cg_room_type_valid("a_b-9", 5));
    cr_assert(cg_room_type_valid("abcdefghijklmnop", 16));
    cr_assert_not(cg_room_type_valid("abcdefghijklmnopq", 17)); /* type of 17 */
    cr_assert_not(cg_room_type_valid("", 0));
    cr_assert_not(cg_room_type_valid("Live", 4));
    cr_assert(cg_room_name_valid("x!~", 3));
    cr_assert_not(cg_room_name_valid("", 0));
    cr_assert_not(cg_room_name_valid("1 2", 3));
    cr_assert_not(cg_room_name_valid("1/2", 3));
    cr_assert_not(cg_room_name_valid("1,2", 3));
    cr_assert_not(cg_room_name_valid("\"1\"", 3));
    cr_assert_not(cg_room_name_valid("'1'", 3));
    cr_assert_not(cg_room_name_valid("caf\xc3\xa9", 5));
    char id[CG_ROOM_NAME_BYTES_MAX + 1];
    memset(id, 'x', sizeof(id));
    cr_assert(cg_room_name_valid(id, CG_ROOM_NAME_BYTES_MAX));
    cr_assert_not(cg_room_name_valid(id, CG_ROOM_NAME_BYTES_MAX + 1));
}

/* --- the routes, through mg_http_server_inject ---------------------------------------------- */

typedef struct env {
    uv_loop_t loop;
    mg_http_server *http;
    mg_metrics *metrics;
    cg_api *api;
} env;

static env g_env;

static void env_open(void)
{
    mg_log_set_level(MG_LOG_WARN);
    cr_assert_eq(uv_loop_init(&g_env.loop), 0);
    cr_assert_eq(mg_metrics_create(&g_env.metrics), MG_OK);
    cr_assert_eq(mg_http_server_create(&g_env.loop, NULL, &g_env.http), MG_OK);
    /* Nothing listens on port 1: a push that passes validation waits for a producer that is
     * never created, which the refusal tests must never cause. */
    cg_api_opts o = { .service_url = "pulsar://127.0.0.1:1", .metrics = g_env.metrics };
    cr_assert_eq(cg_api_create(&g_env.loop, g_env.http, &o, &g_env.api), MG_OK);
}

static void flag_cb(void *arg)
{
    *(bool *)arg = true;
}

static void env_close(void)
{
    bool http_closed = false, api_closed = false;
    mg_http_server_close(g_env.http, flag_cb, &http_closed);
    cg_api_close(g_env.api, flag_cb, &api_closed);
    cr_assert_not(api_closed, "closed_cb ran inside cg_api_close");
    for (int i = 0; i < 1000 && !(http_closed && api_closed); i++)
        uv_run(&g_env.loop, UV_RUN_ONCE);
    cr_assert(http_closed && api_closed);
    cr_assert_eq(uv_loop_close(&g_env.loop), 0, "handles left open on the loop");
    mg_metrics_destroy(g_env.metrics);
}

static uint64_t pushes(const char *kind, const char *result)
{
    mg_metric_family *f =
        mg_metrics_counter_family(g_env.metrics, "magnetar_chat_api_pushes_total", NULL, 2,
                                  (const char *const[]){ "kind", "result" });
    cr_assert_not_null(f);
    return mg_counter_value(mg_metrics_counter(f, (const char *const[]){ kind, result }));
}

static uint64_t online_requests(const char *result)
{
    mg_metric_family *f =
        mg_metrics_counter_family(g_env.metrics, "magnetar_chat_api_online_requests_total", NULL, 1,
                                  (const char *const[]){ "result" });
    cr_assert_not_null(f);
    return mg_counter_value(mg_metrics_counter(f, (const char *const[]){ result }));
}

/* Injects method path with the query pairs query[0, 2 * pairs) and body; returns the status. */
static int inject(const char *method, const char *path, const char *const *query, size_t pairs,
                  const char *body, size_t body_len)
{
    char clen[32];
    snprintf(clen, sizeof(clen), "%zu", body_len);
    const char *headers[] = { "Content-Length", clen };
    int status = -1;
    cr_assert_eq(mg_http_server_inject(g_env.http, method, path, headers, 1, query, pairs, body,
                                       body_len, &status),
                 MG_OK);
    return status;
}

/* A push that must be refused: answered at once (HTTP 200, GOIM's -400 in the body), counted as
 * a bad request of kind, and nothing else counted. */
static void refused(const char *kind, const char *const *query, size_t pairs, const char *body,
                    size_t body_len)
{
    char path[64];
    snprintf(path, sizeof(path), "/goim/push/%s", kind);
    uint64_t before = pushes(kind, "bad_request");
    int status = inject("POST", path, query, pairs, body, body_len);
    cr_assert_eq(status, 200, "%s %s=%s: status %d", kind, pairs ? query[0] : "-",
                 pairs && query[1] ? query[1] : "-", status);
    cr_assert_eq(pushes(kind, "bad_request"), before + 1, "%s %s=%s not refused", kind,
                 pairs ? query[0] : "-", pairs && query[1] ? query[1] : "-");
    cr_assert_eq(pushes(kind, "ok") + pushes(kind, "error") + pushes(kind, "busy"), 0);
}

#define Q(...)                  ((const char *const[]){ __VA_ARGS__ })
#define NQ(...)                 (sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(char *) / 2)
#define REFUSE(kind, body, ...) refused(kind, Q(__VA_ARGS__), NQ(__VA_ARGS__), body, strlen(body))
#define REFUSE_NOQ(kind, body)  refused(kind, NULL, 0, body, strlen(body))

Test(api, push_refusals_common_to_every_kind, .init = env_open, .fini = env_close)
{
    char *big = malloc(CG_PACKET_BODY_BYTES_DEFAULT + 2);
    cr_assert_not_null(big);
    memset(big, 'x', CG_PACKET_BODY_BYTES_DEFAULT + 1);
    big[CG_PACKET_BODY_BYTES_DEFAULT + 1] = '\0';
    const char *const kinds[] = { "keys", "mids", "room", "all" };
    /* A query each kind accepts, so only the part under test is wrong. */
    const char *const good[][6] = {
        { "keys", "k1,k2", "operation", NULL, NULL, NULL },
        { "mids", "1,2", "operation", NULL, NULL, NULL },
        { "type", "live", "room", "1000", "operation", NULL },
        { "speed", "10", "operation", NULL, NULL, NULL },
    };
    const size_t good_pairs[] = { 2, 2, 3, 2 };
    const char *const bad_ops[] = { "", "x", "-1", "1.0", " 5", "4294967296", "+5", "5 " };
    for (size_t k = 0; k < 4; k++) {
        const char *q[6];
        memcpy(q, good[k], sizeof(q));
        size_t pairs = good_pairs[k];
        /* The body: empty, then one byte over 4096 bytes. */
        q[2 * pairs - 1] = "5";
        refused(kinds[k], q, pairs, "", 0);
        refused(kinds[k], q, pairs, big, CG_PACKET_BODY_BYTES_DEFAULT + 1);
        for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
            q[2 * pairs - 1] = bad_ops[i];
            refused(kinds[k], q, pairs, "hello", 5);
        }
    }
    free(big);
}

Test(api, push_keys_refusals, .init = env_open, .fini = env_close)
{
    REFUSE_NOQ("keys", "hi");
    REFUSE("keys", "hi", "keys", "");
    REFUSE("keys", "hi", "keys", NULL);
    REFUSE("keys", "hi", "keys", ",");
    REFUSE("keys", "hi", "keys", "a,");
    REFUSE("keys", "hi", "keys", ",a");
    REFUSE("keys", "hi", "keys", "a,,b");
    REFUSE("keys", "hi", "keys", "a b");
    REFUSE("keys", "hi", "keys", "caf\xc3\xa9");
    REFUSE("keys", "hi", "key", "a");
    char longkey[CG_KEY_BYTES_MAX + 2];
    memset(longkey, 'k', CG_KEY_BYTES_MAX + 1);
    longkey[CG_KEY_BYTES_MAX + 1] = '\0';
    REFUSE("keys", "hi", "keys", longkey);
    /* One key more than the bound. */
    size_t cap = (CG_API_PUSH_TARGETS_MAX + 1) * 2 + 1;
    char *many = malloc(cap);
    cr_assert_not_null(many);
    size_t len = 0;
    for (size_t i = 0; i <= CG_API_PUSH_TARGETS_MAX; i++)
        len += (size_t)snprintf(many + len, cap - len, "%sk", i ? "," : "");
    REFUSE("keys", "hi", "keys", many);
    free(many);
}

Test(api, push_mids_refusals, .init = env_open, .fini = env_close)
{
    REFUSE_NOQ("mids", "hi");
    REFUSE("mids", "hi", "mids", "");
    REFUSE("mids", "hi", "mids", "0");
    REFUSE("mids", "hi", "mids", "-1");
    REFUSE("mids", "hi", "mids", "1,x");
    REFUSE("mids", "hi", "mids", "1,,2");
    REFUSE("mids", "hi", "mids", "1,");
    REFUSE("mids", "hi", "mids", "1.5");
    REFUSE("mids", "hi", "mids", " 1");
    REFUSE("mids", "hi", "mids", "9223372036854775808");
    REFUSE("mids", "hi", "mids", "99999999999999999999999");
    size_t cap = (CG_API_PUSH_TARGETS_MAX + 1) * 2 + 1;
    char *many = malloc(cap);
    cr_assert_not_null(many);
    size_t len = 0;
    for (size_t i = 0; i <= CG_API_PUSH_TARGETS_MAX; i++)
        len += (size_t)snprintf(many + len, cap - len, "%s7", i ? "," : "");
    REFUSE("mids", "hi", "mids", many);
    free(many);
}

Test(api, push_room_refusals, .init = env_open, .fini = env_close)
{
    REFUSE_NOQ("room", "hi");
    REFUSE("room", "hi", "room", "1000");
    REFUSE("room", "hi", "type", "live");
    REFUSE("room", "hi", "type", "", "room", "1000");
    REFUSE("room", "hi", "type", "live", "room", "");
    REFUSE("room", "hi", "type", "Live", "room", "1000");
    REFUSE("room", "hi", "type", "li ve", "room", "1000");
    REFUSE("room", "hi", "type", "live:", "room", "1000");
    REFUSE("room", "hi", "type", "abcdefghijklmnopq", "room", "1000");
    REFUSE("room", "hi", "type", "live", "room", "10 00");
    REFUSE("room", "hi", "type", "live", "room", "a/b");
    REFUSE("room", "hi", "type", "live", "room", "1000,1001");
    REFUSE("room", "hi", "type", "live", "room", "\"1\"");
    REFUSE("room", "hi", "type", "live", "room", "'1'");
    REFUSE("room", "hi", "type", "live", "room", "caf\xc3\xa9");
    char longroom[CG_ROOM_NAME_BYTES_MAX + 2];
    memset(longroom, 'r', CG_ROOM_NAME_BYTES_MAX + 1);
    longroom[CG_ROOM_NAME_BYTES_MAX + 1] = '\0';
    REFUSE("room", "hi", "type", "live", "room", longroom);
}

Test(api, push_all_refusals, .init = env_open, .fini = env_close)
{
    REFUSE("all", "hi", "speed", "");
    REFUSE("all", "hi", "speed", "fast");
    REFUSE("all", "hi", "speed", "-1");
    REFUSE("all", "hi", "speed", "4294967296");
}

Test(api, push_wrong_method, .init = env_open, .fini = env_close)
{
    cr_assert_eq(inject("GET", "/goim/push/room", Q("type", "live", "room", "1"), 2, "", 0), 405);
    cr_assert_eq(inject("POST", "/goim/online/total", NULL, 0, "", 0), 405);
    cr_assert_eq(inject("POST", "/goim/push/nothing", NULL, 0, "x", 1), 404);
    cr_assert_eq(pushes("room", "bad_request"), 0);
}

/* A valid push is kept for later (its producer is being created): the handler does not answer,
 * and closing the API while the producer is being created completes. */
Test(api, push_valid_waits_for_its_producer, .init = env_open, .fini = env_close)
{
    int status = inject("POST", "/goim/push/room", Q("type", "live", "room", "1000"), 2, "hi", 2);
    cr_assert_eq(status, 0, "a valid push was answered at once: %d", status);
    status = inject("POST", "/goim/push/room", Q("type", "live", "room", "1000"), 2, "hi", 2);
    cr_assert_eq(status, 0);
    cr_assert_eq(pushes("room", "bad_request"), 0);
}

Test(api, online_refusals, .init = env_open, .fini = env_close)
{
    struct {
        const char *path;
        const char *q[4];
        size_t pairs;
    } cases[] = {
        { "/goim/online/room", { NULL }, 0 },
        { "/goim/online/room", { "type", "live" }, 1 },
        { "/goim/online/room", { "rooms", "1000" }, 1 },
        { "/goim/online/room", { "type", "Live", "rooms", "1000" }, 2 },
        { "/goim/online/room", { "type", "live", "rooms", "" }, 2 },
        { "/goim/online/room", { "type", "live", "rooms", "1,,2" }, 2 },
        { "/goim/online/room", { "type", "live", "rooms", "1 2" }, 2 },
        { "/goim/online/top", { NULL }, 0 },
        { "/goim/online/top", { "type", "live" }, 1 },
        { "/goim/online/top", { "limit", "10" }, 1 },
        { "/goim/online/top", { "type", "live", "limit", "0" }, 2 },
        { "/goim/online/top", { "type", "live", "limit", "1001" }, 2 },
        { "/goim/online/top", { "type", "live", "limit", "ten" }, 2 },
        { "/goim/online/top", { "type", "", "limit", "10" }, 2 },
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++) {
        uint64_t before = online_requests("bad_request");
        int status =
            inject("GET", cases[i].path, cases[i].pairs ? cases[i].q : NULL, cases[i].pairs, "", 0);
        cr_assert_eq(status, 200, "case %zu: %d", i, status);
        cr_assert_eq(online_requests("bad_request"), before + 1, "case %zu not refused", i);
    }
    /* More than 100 rooms. */
    char rooms[512];
    size_t len = 0;
    for (int i = 0; i <= (int)CG_API_ONLINE_QUERY_ROOMS_MAX; i++)
        len += (size_t)snprintf(rooms + len, sizeof(rooms) - len, "%s%d", i ? "," : "", i % 10);
    uint64_t before = online_requests("bad_request");
    cr_assert_eq(inject("GET", "/goim/online/room", Q("type", "live", "rooms", rooms), 2, "", 0),
                 200);
    cr_assert_eq(online_requests("bad_request"), before + 1);
    /* Valid requests without a metadata store: answered -500, counted as errors. */
    cr_assert_eq(inject("GET", "/goim/online/total", NULL, 0, "", 0), 200);
    cr_assert_eq(inject("GET", "/goim/online/top", Q("type", "live", "limit", "3"), 2, "", 0), 200);
    cr_assert_eq(online_requests("error"), 2);
    cr_assert_eq(online_requests("ok"), 0);
}

/* --- the page -------------------------------------------------------------------------------- */

Test(api, page_route_answers_html, .init = env_open, .fini = env_close)
{
    cr_assert_eq(inject("GET", "/chat", NULL, 0, "", 0), 200);
    cr_assert_eq(inject("POST", "/chat", NULL, 0, "", 0), 405);
}

Test(api, page_is_the_chat_page)
{
    size_t len = 0;
    const char *html = cg_page_chat_html(&len);
    cr_assert_gt(len, 1000);
    cr_assert_eq(strlen(html), len, "the page holds a NUL byte or lost its end");
    cr_assert_eq(strncmp(html, "<!doctype html>", 15), 0);
    cr_assert_not_null(strstr(html, "</html>"));
    const char *needles[] = { "data-testid=\"room\"",   "data-testid=\"name\"",
                              "data-testid=\"join\"",   "data-testid=\"message\"",
                              "data-testid=\"send\"",   "data-testid=\"messages\"",
                              "data-testid=\"online\"", "window.chatState",
                              "/goim/push/room",        ":3102/sub" };
    for (size_t i = 0; i < sizeof(needles) / sizeof(needles[0]); i++)
        cr_assert_not_null(strstr(html, needles[i]), "the page lacks %s", needles[i]);
    cr_assert_null(strstr(html, "innerHTML"), "the page must put text with textContent");
}
