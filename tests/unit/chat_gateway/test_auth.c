/*
 * Tests of the auth bodies, room ids, op lists, positions and op 8 reply bodies
 * (src/chat_gateway/auth.c): the example bodies of both dialects and the real shape of
 * Bilibili's web client, every refusal with its message, unicode, duplicate keys and deeply
 * nested junk, the extension fields, positions round-tripped and ordered, and reply bodies read
 * back with jansson.
 */
#include "chat_gateway/auth.h"

#include "chat_gateway/limits.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(auth, .timeout = 10);

/* A key shaped like the token of Bilibili's getDanmuInfo (198 characters of base64url). */
#define WEB_KEY                                                                                    \
    "PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA_2O76UMFxFkM_R5Kjp1vRt-1fjORS_6ilI8ihN5KXSc7Tvo_"      \
    "hBKqFYY_kv5ZJr3J1TWDtkwtDDb-xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8po-799NksnRH9ucAUsdMlHU" \
    "vTCQCyEZDz_TddJ8H=="

static int parse(const char *body, cg_auth *a, const char **why)
{
    *why = NULL;
    return cg_auth_parse((const uint8_t *)body, strlen(body), a, why);
}

/* Asserts that body is refused with exactly the message want. */
static void refused(const char *body, const char *want)
{
    cg_auth a;
    const char *why = NULL;
    int rc = parse(body, &a, &why);
    cr_assert_eq(rc, MG_EPROTO, "%s: rc %d", body, rc);
    cr_assert_not_null(why, "%s", body);
    cr_assert_str_eq(why, want, "%s", body);
}

/* --- the dialects ---------------------------------------------------------------------------- */

Test(auth, goim_example)
{
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse("{\"mid\":123,\"key\":\"abc\",\"room_id\":\"live://1000\",\"platform\":"
                       "\"web\",\"accepts\":[1000,1001]}",
                       &a, &why),
                 MG_OK, "%s", why);
    cr_assert_eq(a.dialect, CG_DIALECT_GOIM);
    cr_assert_eq(a.mid, 123);
    cr_assert_str_eq(a.key, "abc");
    cr_assert_eq(a.key_len, 3);
    cr_assert_str_eq(a.room.text, "live://1000");
    cr_assert_eq(a.room.len, 11);
    cr_assert_eq(a.room.type_len, 4);
    cr_assert_str_eq(a.platform, "web");
    cr_assert_eq(a.platform_len, 3);
    cr_assert_eq(a.protover, 0);
    cr_assert_eq(a.accepts.count, 2);
    cr_assert_eq(a.accepts.ops[0], 1000);
    cr_assert_eq(a.accepts.ops[1], 1001);
    cr_assert_not(a.positions);
    cr_assert_not(a.has_last_id);
}

Test(auth, bilibili_example)
{
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse("{\"uid\":0,\"roomid\":1000,\"protover\":3,\"platform\":\"web\",\"type\":2,"
                       "\"key\":\"k3y\"}",
                       &a, &why),
                 MG_OK, "%s", why);
    cr_assert_eq(a.dialect, CG_DIALECT_BILIBILI);
    cr_assert_eq(a.mid, 0);
    cr_assert_str_eq(a.room.text, "live://1000");
    cr_assert_eq(a.room.type_len, 4);
    cr_assert_eq(a.protover, 3);
    cr_assert_str_eq(a.platform, "web");
    cr_assert_str_eq(a.key, "k3y");
    cr_assert_eq(a.accepts.count, 0);
    cr_assert_not(a.positions);
}

Test(auth, bilibili_web_shape)
{
    /* The body Bilibili's web player sends, field order and all, with a logged-in uid. */
    const char *body = "{\"uid\":12345678,\"roomid\":21452505,\"protover\":3,\"buvid\":"
                       "\"9C1F2A3B-1111-2222-3333-444455556666infoc\",\"platform\":\"web\","
                       "\"type\":2,\"key\":\"" WEB_KEY "\"}";
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse(body, &a, &why), MG_OK, "%s", why);
    cr_assert_eq(a.dialect, CG_DIALECT_BILIBILI);
    cr_assert_eq(a.mid, 12345678);
    cr_assert_str_eq(a.room.text, "live://21452505");
    cr_assert_eq(a.room.len, strlen("live://21452505"));
    cr_assert_eq(a.key_len, strlen(WEB_KEY));
    cr_assert_eq(a.key_len, 198);
    cr_assert_str_eq(a.key, WEB_KEY);
    cr_assert_eq(a.protover, 3);
}

Test(auth, bilibili_roomid_forms)
{
    static const struct {
        const char *body;
        const char *room;
    } ok[] = {
        { "{\"roomid\":\"21452505\"}", "live://21452505" },
        { "{\"roomid\":\"007\"}", "live://7" },
        { "{\"roomid\":1}", "live://1" },
        { "{\"roomid\":9223372036854775807}", "live://9223372036854775807" },
        { "{\"roomid\":\"9223372036854775807\"}", "live://9223372036854775807" },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cg_auth a;
        const char *why = NULL;
        cr_assert_eq(parse(ok[i].body, &a, &why), MG_OK, "%s: %s", ok[i].body, why);
        cr_assert_str_eq(a.room.text, ok[i].room);
        cr_assert_eq(a.protover, 0, "protover absent is 0");
    }
    static const char *const bad[] = {
        "{\"roomid\":0}",        "{\"roomid\":-5}",
        "{\"roomid\":\"0\"}",    "{\"roomid\":\"-5\"}",
        "{\"roomid\":\"12a\"}",  "{\"roomid\":\" 12\"}",
        "{\"roomid\":\"\"}",     "{\"roomid\":1.5}",
        "{\"roomid\":\"0x10\"}", "{\"roomid\":null}",
        "{\"roomid\":true}",     "{\"roomid\":[1]}",
        "{\"roomid\":\"+12\"}",  "{\"roomid\":\"9223372036854775808\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(bad[i], "roomid not a positive integer");
}

Test(auth, protover)
{
    for (int p = 0; p <= 3; p++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"roomid\":5,\"protover\":%d}", p);
        cg_auth a;
        const char *why = NULL;
        cr_assert_eq(parse(body, &a, &why), MG_OK, "%s", why);
        cr_assert_eq(a.protover, p);
    }
    refused("{\"roomid\":5,\"protover\":4}", "protover not 0..3");
    refused("{\"roomid\":5,\"protover\":-1}", "protover not 0..3");
    refused("{\"roomid\":5,\"protover\":\"3\"}", "protover not 0..3");
    /* GOIM has no protover: the field is ignored and the connection is uncompressed. */
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse("{\"room_id\":\"live://5\",\"protover\":9}", &a, &why), MG_OK);
    cr_assert_eq(a.protover, 0);
}

/* --- refusals -------------------------------------------------------------------------------- */

Test(auth, refusals)
{
    static const struct {
        const char *body;
        const char *why;
    } cases[] = {
        { "", "not JSON" },
        { "{", "not JSON" },
        { "{\"room_id\":\"live://1\"} x", "not JSON" },
        { "[object Object]", "not JSON" },
        { "[1,2]", "not an object" },
        { "\"live://1\"", "not an object" },
        { "42", "not an object" },
        { "null", "not an object" },
        { "{}", "no room (room_id or roomid)" },
        { "{\"mid\":1,\"key\":\"abc\"}", "no room (room_id or roomid)" },
        { "{\"room_id\":\"live://1\",\"roomid\":1}", "both room_id and roomid" },
        { "{\"room_id\":1000}", "room_id not a string" },
        { "{\"room_id\":\"1000\"}", "room id malformed: no type://id" },
        { "{\"room_id\":\"\"}", "room id malformed: type is not 1..16 of [a-z0-9_-]" },
        { "{\"room_id\":\"Live://1\"}", "room id malformed: type is not 1..16 of [a-z0-9_-]" },
        { "{\"room_id\":\"live://\"}", "room id malformed: id is not 1..64 characters" },
        { "{\"room_id\":\"live://a b\"}",
          "room id malformed: id has a space, '/', ',', quote or control" },
        { "{\"room_id\":\"live://1\",\"mid\":\"123\"}", "mid not an integer" },
        { "{\"room_id\":\"live://1\",\"mid\":1.5}", "mid not an integer" },
        { "{\"roomid\":1,\"uid\":\"0\"}", "uid not an integer" },
        { "{\"room_id\":\"live://1\",\"key\":7}", "key not a string" },
        { "{\"room_id\":\"live://1\",\"platform\":[]}", "platform not a string" },
        { "{\"room_id\":\"live://1\",\"platform\":\"abcdefghijklmnopqrstuvwxyz0123456\"}",
          "platform too long" },
        { "{\"room_id\":\"live://1\",\"accepts\":1000}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"accepts\":\"1000,1001\"}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"accepts\":[1000,\"1001\"]}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"accepts\":[-1]}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"accepts\":[4294967296]}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"accepts\":[[1]]}", "accepts not an array of ops" },
        { "{\"room_id\":\"live://1\",\"positions\":1}", "positions not a bool" },
        { "{\"room_id\":\"live://1\",\"positions\":\"true\"}", "positions not a bool" },
        { "{\"room_id\":\"live://1\",\"last_id\":\"1:2:3:4\"}",
          "last_id malformed (ledger:entry:batch)" },
        { "{\"room_id\":\"live://1\",\"last_id\":[1,2,3]}",
          "last_id malformed (ledger:entry:batch)" },
        { "{\"room_id\":\"live://1\",\"last_id\":\"-1:0\"}",
          "last_id malformed (ledger:entry:batch)" },
        { "{\"room_id\":\"live://1\",\"room_id\":\"live://2\"}", "not JSON: duplicate key" },
        { "{\"roomid\":1,\"key\":\"a\",\"key\":\"a\"}", "not JSON: duplicate key" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        refused(cases[i].body, cases[i].why);

    /* A body too long, and a refusal with why left NULL. */
    char *big = malloc(CG_AUTH_BODY_BYTES_MAX + 2);
    cr_assert_not_null(big);
    memset(big, ' ', CG_AUTH_BODY_BYTES_MAX + 1);
    memcpy(big, "{\"roomid\":1}", 12);
    big[CG_AUTH_BODY_BYTES_MAX + 1] = '\0';
    refused(big, "auth body too long");
    cg_auth a;
    cr_assert_eq(cg_auth_parse((const uint8_t *)big, CG_AUTH_BODY_BYTES_MAX, &a, NULL), MG_OK,
                 "trailing whitespace within the bound is JSON");
    free(big);
    cr_assert_eq(cg_auth_parse((const uint8_t *)"{}", 2, &a, NULL), MG_EPROTO);
    cr_assert_eq(cg_auth_parse(NULL, 0, &a, NULL), MG_EPROTO);
}

Test(auth, key_bound)
{
    char body[CG_AUTH_KEY_BYTES_MAX + 64];
    char key[CG_AUTH_KEY_BYTES_MAX + 2];
    memset(key, 'k', sizeof(key));
    key[CG_AUTH_KEY_BYTES_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"roomid\":1,\"key\":\"%s\"}", key);
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse(body, &a, &why), MG_OK, "%s", why);
    cr_assert_eq(a.key_len, CG_AUTH_KEY_BYTES_MAX);
    cr_assert_eq(strlen(a.key), CG_AUTH_KEY_BYTES_MAX);
    key[CG_AUTH_KEY_BYTES_MAX] = 'k';
    key[CG_AUTH_KEY_BYTES_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"roomid\":1,\"key\":\"%s\"}", key);
    refused(body, "key too long");

    /* The platform's bound, at and past it. */
    cr_assert_eq(
        parse("{\"roomid\":1,\"platform\":\"abcdefghijklmnopqrstuvwxyz012345\"}", &a, &why), MG_OK,
        "%s", why);
    cr_assert_eq(a.platform_len, CG_AUTH_PLATFORM_BYTES_MAX);
}

Test(auth, unicode)
{
    cg_auth a;
    const char *why = NULL;
    /* Raw UTF-8 and \u escapes (a surrogate pair among them) in the strings kept as sent. */
    cr_assert_eq(parse("{\"room_id\":\"live://1\",\"platform\":\"\xe7\xbd\x91\xe9\xa1\xb5\","
                       "\"key\":\"caf\\u00e9\\ud83d\\ude00\"}",
                       &a, &why),
                 MG_OK, "%s", why);
    cr_assert_str_eq(a.platform, "\xe7\xbd\x91\xe9\xa1\xb5");
    cr_assert_eq(a.platform_len, 6);
    cr_assert_str_eq(a.key, "caf\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(a.key_len, 9);
    /* A room id is ASCII only, however it is written. */
    refused("{\"room_id\":\"live://\xe7\xbd\x91\"}",
            "room id malformed: id has a space, '/', ',', quote or control");
    refused("{\"room_id\":\"live://\\u00e9\"}",
            "room id malformed: id has a space, '/', ',', quote or control");
    refused("{\"room_id\":\"\\u00e9://1\"}", "room id malformed: type is not 1..16 of [a-z0-9_-]");
    /* Bytes that are not UTF-8, and a NUL inside a string. */
    refused("{\"room_id\":\"live://1\",\"key\":\"\xff\xfe\"}", "not JSON: invalid UTF-8");
    refused("{\"room_id\":\"live://1\",\"key\":\"a\\u0000b\"}", "not JSON");
}

Test(auth, nested_junk)
{
    /* Deep but balanced nesting in an unknown field is read and ignored. */
    size_t depth = 1500;
    size_t cap = depth * 2 + 64;
    char *body = malloc(cap);
    cr_assert_not_null(body);
    size_t n = (size_t)snprintf(body, cap, "{\"room_id\":\"live://1\",\"x\":");
    memset(body + n, '[', depth);
    memset(body + n + depth, ']', depth);
    n += 2 * depth;
    body[n++] = '}';
    body[n] = '\0';
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse(body, &a, &why), MG_OK, "%s", why);
    cr_assert_str_eq(a.room.text, "live://1");
    free(body);

    /* Past jansson's depth limit, within the body bound. */
    body = malloc(CG_AUTH_BODY_BYTES_MAX + 1);
    cr_assert_not_null(body);
    memset(body, '[', CG_AUTH_BODY_BYTES_MAX);
    body[CG_AUTH_BODY_BYTES_MAX] = '\0';
    refused(body, "not JSON: nested too deep");
    memset(body, '{', 1);
    memset(body + 1, ' ', CG_AUTH_BODY_BYTES_MAX - 1);
    refused(body, "not JSON");
    free(body);

    /* Junk of every JSON type where a room is expected. */
    refused("{\"room_id\":{\"a\":[{\"b\":[1,2,{\"c\":null}]}]}}", "room_id not a string");
    refused("{\"roomid\":{\"a\":{\"b\":{\"c\":{}}}}}", "roomid not a positive integer");
}

/* --- extension fields ------------------------------------------------------------------------ */

Test(auth, extension_fields)
{
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse("{\"room_id\":\"live://1\",\"positions\":true}", &a, &why), MG_OK);
    cr_assert(a.positions);
    cr_assert_not(a.has_last_id);
    cr_assert_eq(parse("{\"roomid\":1,\"positions\":false}", &a, &why), MG_OK);
    cr_assert_not(a.positions);

    /* last_id implies positions, even when positions says false. */
    cr_assert_eq(parse("{\"roomid\":1,\"protover\":2,\"last_id\":\"12:34:5\",\"positions\":false}",
                       &a, &why),
                 MG_OK, "%s", why);
    cr_assert(a.positions);
    cr_assert(a.has_last_id);
    cr_assert_eq(a.last_id.ledger_id, 12);
    cr_assert_eq(a.last_id.entry_id, 34);
    cr_assert_eq(a.last_id.batch_index, 5);
    cr_assert_eq(a.protover, 2);

    cr_assert_eq(parse("{\"room_id\":\"chat://lobby-7\",\"mid\":-3,\"last_id\":\"0:0\"}", &a, &why),
                 MG_OK, "%s", why);
    cr_assert_eq(a.dialect, CG_DIALECT_GOIM);
    cr_assert_eq(a.mid, -3);
    cr_assert_str_eq(a.room.text, "chat://lobby-7");
    cr_assert_eq(a.room.type_len, 4);
    cr_assert(a.has_last_id);
    cr_assert_eq(a.last_id.ledger_id, 0);
    cr_assert_eq(a.last_id.entry_id, 0);
    cr_assert_eq(a.last_id.batch_index, -1);
}

Test(auth, accepts_bound)
{
    char body[1024];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"room_id\":\"live://1\",\"accepts\":[");
    for (uint32_t i = 0; i < CG_ACCEPT_OPS_MAX; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s%u", i ? "," : "", 4294967295u - i);
    snprintf(body + n, sizeof(body) - n, "]}");
    cg_auth a;
    const char *why = NULL;
    cr_assert_eq(parse(body, &a, &why), MG_OK, "%s", why);
    cr_assert_eq(a.accepts.count, CG_ACCEPT_OPS_MAX);
    cr_assert_eq(a.accepts.ops[0], 4294967295u);
    cr_assert_eq(a.accepts.ops[CG_ACCEPT_OPS_MAX - 1], 4294967295u - (CG_ACCEPT_OPS_MAX - 1));
    snprintf(body + n, sizeof(body) - n, ",0]}");
    refused(body, "too many accepts");
    cr_assert_eq(parse("{\"room_id\":\"live://1\",\"accepts\":[]}", &a, &why), MG_OK);
    cr_assert_eq(a.accepts.count, 0);
}

/* --- room ids and op lists ------------------------------------------------------------------- */

Test(auth, room_parse)
{
    cg_room r;
    const char *why = NULL;
    const char *t = " \t live://1000\r\n";
    cr_assert_eq(cg_room_parse((const uint8_t *)t, strlen(t), &r, &why), MG_OK);
    cr_assert_str_eq(r.text, "live://1000");
    cr_assert_eq(r.len, 11);
    cr_assert_eq(r.type_len, 4);

    /* Type and id at their bounds, and one past. */
    char buf[CG_ROOM_BYTES_MAX + 8];
    memset(buf, 'a', CG_ROOM_TYPE_BYTES_MAX);
    memcpy(buf + CG_ROOM_TYPE_BYTES_MAX, "://", 3);
    memset(buf + CG_ROOM_TYPE_BYTES_MAX + 3, '~', CG_ROOM_NAME_BYTES_MAX);
    cr_assert_eq(cg_room_parse((const uint8_t *)buf, CG_ROOM_BYTES_MAX, &r, &why), MG_OK, "%s",
                 why);
    cr_assert_eq(r.len, CG_ROOM_BYTES_MAX);
    cr_assert_eq(r.type_len, CG_ROOM_TYPE_BYTES_MAX);
    cr_assert_eq(strlen(r.text), CG_ROOM_BYTES_MAX);
    buf[CG_ROOM_BYTES_MAX] = '~';
    cr_assert_eq(cg_room_parse((const uint8_t *)buf, CG_ROOM_BYTES_MAX + 1, &r, &why), MG_EPROTO);
    cr_assert_str_eq(why, "room id malformed: id is not 1..64 characters");
    const char *long_type = "abcdefghijklmnopq://1";
    cr_assert_eq(cg_room_parse((const uint8_t *)long_type, strlen(long_type), &r, &why), MG_EPROTO);
    cr_assert_str_eq(why, "room id malformed: type is not 1..16 of [a-z0-9_-]");

    static const char *const ok[] = { "a://b", "my_type-2://x.y:z@!#$%&()*+-;<=>?[]^_`{|}~" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(cg_room_parse((const uint8_t *)ok[i], strlen(ok[i]), &r, &why), MG_OK,
                     "%s: %s", ok[i], why);
    static const char *const bad_id[] = { "live://a/b", "live://a,b",  "live://a\"b",
                                          "live://a'b", "live://a\tb", "live://a\x7f" };
    for (size_t i = 0; i < sizeof(bad_id) / sizeof(bad_id[0]); i++) {
        cr_assert_eq(cg_room_parse((const uint8_t *)bad_id[i], strlen(bad_id[i]), &r, &why),
                     MG_EPROTO, "%s", bad_id[i]);
        cr_assert_str_eq(why, "room id malformed: id has a space, '/', ',', quote or control");
    }
    static const char *const bad_shape[] = { "live:/1", "live//1", "live:1", "live" };
    for (size_t i = 0; i < sizeof(bad_shape) / sizeof(bad_shape[0]); i++) {
        cr_assert_eq(cg_room_parse((const uint8_t *)bad_shape[i], strlen(bad_shape[i]), &r, &why),
                     MG_EPROTO, "%s", bad_shape[i]);
        cr_assert_str_eq(why, "room id malformed: no type://id");
    }
    cr_assert_eq(cg_room_parse((const uint8_t *)" \r\n", 3, &r, &why), MG_EPROTO);
    cr_assert_str_eq(why, "no room");
    cr_assert_eq(cg_room_parse(NULL, 0, &r, NULL), MG_EPROTO);
}

Test(auth, ops_parse)
{
    cg_ops o;
    const char *why = NULL;
    const char *t = "1000,1001";
    cr_assert_eq(cg_ops_parse((const uint8_t *)t, strlen(t), &o, &why), MG_OK);
    cr_assert_eq(o.count, 2);
    cr_assert_eq(o.ops[0], 1000);
    cr_assert_eq(o.ops[1], 1001);
    t = " 7 ,\t8 , 4294967295\n";
    cr_assert_eq(cg_ops_parse((const uint8_t *)t, strlen(t), &o, &why), MG_OK);
    cr_assert_eq(o.count, 3);
    cr_assert_eq(o.ops[2], 4294967295u);

    static const char *const bad[] = { "",     " ",          "1,,2", "1,", ",1", "-1",
                                       "0x10", "4294967296", "1 2",  "+1", "a" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(cg_ops_parse((const uint8_t *)bad[i], strlen(bad[i]), &o, &why), MG_EPROTO,
                     "%s", bad[i]);
        cr_assert_str_eq(why, "ops not comma-separated u32 numbers");
    }

    char buf[1024];
    size_t n = 0;
    for (uint32_t i = 0; i < CG_ACCEPT_OPS_MAX; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%u", i ? "," : "", i);
    cr_assert_eq(cg_ops_parse((const uint8_t *)buf, n, &o, &why), MG_OK);
    cr_assert_eq(o.count, CG_ACCEPT_OPS_MAX);
    cr_assert_eq(o.ops[CG_ACCEPT_OPS_MAX - 1], CG_ACCEPT_OPS_MAX - 1);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",1");
    cr_assert_eq(cg_ops_parse((const uint8_t *)buf, n, &o, &why), MG_EPROTO);
    cr_assert_str_eq(why, "too many ops");
    cr_assert_eq(cg_ops_parse(NULL, 0, &o, NULL), MG_EPROTO);
}

/* --- positions ------------------------------------------------------------------------------- */

Test(auth, position_round_trip)
{
    static const struct {
        const char *text;
        cg_position pos;
        const char *formatted;
    } cases[] = {
        { "12:34:5", { 12, 34, 5 }, "12:34:5" },
        { "12:34", { 12, 34, -1 }, "12:34" },
        { "12:34:-1", { 12, 34, -1 }, "12:34" },
        { "0:0:0", { 0, 0, 0 }, "0:0:0" },
        { "007:08:09", { 7, 8, 9 }, "7:8:9" },
        { "9223372036854775807:9223372036854775807:2147483647",
          { INT64_MAX, INT64_MAX, INT32_MAX },
          "9223372036854775807:9223372036854775807:2147483647" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cg_position p;
        cr_assert_eq(cg_position_parse(cases[i].text, strlen(cases[i].text), &p), MG_OK, "%s",
                     cases[i].text);
        cr_assert_eq(p.ledger_id, cases[i].pos.ledger_id, "%s", cases[i].text);
        cr_assert_eq(p.entry_id, cases[i].pos.entry_id, "%s", cases[i].text);
        cr_assert_eq(p.batch_index, cases[i].pos.batch_index, "%s", cases[i].text);
        char out[CG_POSITION_TEXT_BYTES];
        size_t n = cg_position_format(&p, out, sizeof(out));
        cr_assert_eq(n, strlen(cases[i].formatted));
        cr_assert_str_eq(out, cases[i].formatted);
        cg_position back;
        cr_assert_eq(cg_position_parse(out, n, &back), MG_OK);
        cr_assert_eq(cg_position_cmp(&p, &back), 0);
    }
    static const char *const bad[] = {
        "",
        "12",
        "12:",
        ":34",
        "12:34:",
        "-1:0",
        "0:-1",
        "0:0:-2",
        "0:0:-0",
        "0:0:--1",
        "1:2:3:4",
        " 1:2",
        "1:2 ",
        "1:+2",
        "a:b:c",
        "1:2:0x3",
        "9223372036854775808:0",
        "0:9223372036854775808",
        "0:0:2147483648",
        "99999999999999999999999999:0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cg_position p = { 77, 77, 77 };
        cr_assert_eq(cg_position_parse(bad[i], strlen(bad[i]), &p), MG_EPROTO, "%s", bad[i]);
        cr_assert_eq(p.ledger_id, 77, "nothing written on a refusal");
    }
    /* The length given is what is read, not the NUL. */
    cg_position p;
    cr_assert_eq(cg_position_parse("1:2:3junk", 5, &p), MG_OK);
    cr_assert_eq(p.batch_index, 3);
}

static int cmp_qsort(const void *a, const void *b)
{
    return cg_position_cmp(a, b);
}

Test(auth, position_order)
{
    cg_position sorted[] = {
        { 0, 0, -1 }, { 0, 0, 0 },  { 0, 0, 1 },         { 0, 1, -1 },
        { 0, 1, 7 },  { 1, 0, -1 }, { 1, 0, INT32_MAX }, { INT64_MAX, INT64_MAX, INT32_MAX },
    };
    size_t n = sizeof(sorted) / sizeof(sorted[0]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c = cg_position_cmp(&sorted[i], &sorted[j]);
            if (i < j)
                cr_assert_lt(c, 0, "%zu < %zu", i, j);
            else if (i > j)
                cr_assert_gt(c, 0, "%zu > %zu", i, j);
            else
                cr_assert_eq(c, 0);
        }
    }
    cg_position shuffled[sizeof(sorted) / sizeof(sorted[0])];
    for (size_t i = 0; i < n; i++)
        shuffled[i] = sorted[(i * 5 + 3) % n];
    qsort(shuffled, n, sizeof(shuffled[0]), cmp_qsort);
    cr_assert_arr_eq(shuffled, sorted, sizeof(sorted));
}

/* --- reply bodies ---------------------------------------------------------------------------- */

Test(auth, reply_bodies)
{
    char out[CG_AUTH_REPLY_BODY_BYTES];
    size_t n = 0;
    cr_assert_eq(cg_auth_reply_ok(out, sizeof(out), &n), MG_OK);
    cr_assert_eq(n, 10);
    cr_assert_arr_eq(out, "{\"code\":0}", n);
    cr_assert_eq(cg_auth_reply_recovered(true, out, sizeof(out), &n), MG_OK);
    cr_assert_eq(n, strlen("{\"code\":0,\"recovered\":true}"));
    cr_assert_arr_eq(out, "{\"code\":0,\"recovered\":true}", n);
    cr_assert_eq(cg_auth_reply_recovered(false, out, sizeof(out), &n), MG_OK);
    cr_assert_eq(n, strlen("{\"code\":0,\"recovered\":false}"));
    cr_assert_arr_eq(out, "{\"code\":0,\"recovered\":false}", n);
    cr_assert_eq(cg_auth_reply_refusal("no room (room_id or roomid)", out, sizeof(out), &n), MG_OK);
    const char *want = "{\"code\":-400,\"message\":\"no room (room_id or roomid)\"}";
    cr_assert_eq(n, strlen(want));
    cr_assert_arr_eq(out, want, n);

    /* Too small: exactly one byte short of each. */
    size_t w = 99;
    cr_assert_eq(cg_auth_reply_ok(out, 9, &w), MG_EINVAL);
    cr_assert_eq(
        cg_auth_reply_recovered(false, out, strlen("{\"code\":0,\"recovered\":false}") - 1, &w),
        MG_EINVAL);
    cr_assert_eq(cg_auth_reply_refusal("no room (room_id or roomid)", out, strlen(want) - 1, &w),
                 MG_EINVAL);
    cr_assert_eq(w, 99);
}

Test(auth, refusal_escaped)
{
    char out[CG_AUTH_REPLY_BODY_BYTES];
    size_t n = 0;
    const char *why = "bad \"key\" \\ \n\t\x01 caf\xc3\xa9";
    cr_assert_eq(cg_auth_reply_refusal(why, out, sizeof(out), &n), MG_OK);
    const char *want =
        "{\"code\":-400,\"message\":\"bad \\\"key\\\" \\\\ \\n\\t\\u0001 caf\\u00E9\"}";
    cr_assert_eq(n, strlen(want), "%.*s", (int)n, out);
    cr_assert_arr_eq(out, want, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_lt((unsigned char)out[i], 0x80, "ASCII only");
    cr_assert_eq(cg_auth_reply_refusal("\xff", out, sizeof(out), &n), MG_EINVAL, "not UTF-8");
}

Test(auth, every_refusal_fits_its_reply)
{
    /* Each message the parsers produce, sent back and read again by jansson. */
    static const char *const bodies[] = {
        "x",
        "[]",
        "{}",
        "{\"room_id\":\"live://1\",\"roomid\":1}",
        "{\"room_id\":1}",
        "{\"room_id\":\"1\"}",
        "{\"room_id\":\"A://1\"}",
        "{\"room_id\":\"a://\"}",
        "{\"room_id\":\"a://,\"}",
        "{\"roomid\":0}",
        "{\"roomid\":1,\"protover\":7}",
        "{\"roomid\":1,\"uid\":\"x\"}",
        "{\"room_id\":\"a://1\",\"mid\":\"x\"}",
        "{\"roomid\":1,\"key\":1}",
        "{\"roomid\":1,\"platform\":1}",
        "{\"roomid\":1,\"platform\":\"0123456789012345678901234567890123456789\"}",
        "{\"roomid\":1,\"accepts\":{}}",
        "{\"roomid\":1,\"positions\":0}",
        "{\"roomid\":1,\"last_id\":\"x\"}",
        "{\"roomid\":1,\"roomid\":1}",
        "{\"roomid\":\"\xc3\"}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        cg_auth a;
        const char *why = NULL;
        cr_assert_eq(parse(bodies[i], &a, &why), MG_EPROTO, "%s", bodies[i]);
        char out[CG_AUTH_REPLY_BODY_BYTES];
        size_t n = 0;
        cr_assert_eq(cg_auth_reply_refusal(why, out, sizeof(out), &n), MG_OK, "%s", why);
        json_error_t err;
        json_t *j = json_loadb(out, n, 0, &err);
        cr_assert_not_null(j, "%.*s", (int)n, out);
        cr_assert_eq(json_integer_value(json_object_get(j, "code")), CG_AUTH_CODE_REFUSED);
        cr_assert_str_eq(json_string_value(json_object_get(j, "message")), why);
        json_decref(j);
    }
}
