/*
 * Auth, room, op-list and position parsing and the op 8 reply bodies (declared in auth.h, which
 * describes the formats).
 *
 * Design notes:
 *   1. JSON is read by jansson only (json_loadb with JSON_REJECT_DUPLICATES, after the body is
 *      checked against CG_AUTH_BODY_BYTES_MAX, which also bounds jansson's nesting); the values
 *      are copied into fixed fields and the jansson tree is freed before returning, so a
 *      cg_auth holds no heap memory.
 *   2. Room ids, op lists and positions are not JSON but short texts of a fixed grammar (a
 *      room id, "1000,1001", "L:E:B"); they are read by the small scanners below, written here
 *      because no library parses exactly these grammars and strtoll/strtoul accept signs,
 *      leading spaces and hexadecimal prefixes that the grammars refuse. Every number is read
 *      digit by digit with an overflow check before each step.
 *   3. A refusal's message is a static string, so the caller can keep the pointer.
 *   4. The reply bodies without variable text are constants; the refusal is built by jansson
 *      (json_dumpb), which escapes the message.
 */
#include "chat_gateway/auth.h"

#include "common/assert.h"
#include "common/error.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

_Static_assert(CG_ROOM_TYPE_BYTES_MAX == 16u && CG_ROOM_NAME_BYTES_MAX == 64u,
               "the room id refusals name these bounds");

/* Sets *why (when the caller asked for it) and returns MG_EPROTO. */
static int cg__refuse(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return MG_EPROTO;
}

static bool cg__is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Reads the decimal digits p[0, n) (n >= 1, digits only) as a value <= max. Returns false for an
 * empty text, a non-digit or a value over max. */
static bool cg__parse_decimal(const uint8_t *p, size_t n, uint64_t max, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* --- Room ids -------------------------------------------------------------------------------- */

static bool cg__room_type_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool cg__room_id_char(uint8_t c)
{
    return c > ' ' && c < 0x7f && c != '/' && c != ',' && c != '"' && c != '\'';
}

bool cg_room_type_valid(const char *type, size_t len)
{
    if (len == 0 || len > CG_ROOM_TYPE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!cg__room_type_char((uint8_t)type[i]))
            return false;
    return true;
}

bool cg_room_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > CG_ROOM_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!cg__room_id_char((uint8_t)name[i]))
            return false;
    return true;
}

/* Checks the room id p[0, n) (already trimmed, of any length) and copies it into *out. */
static int cg__room_check(const uint8_t *p, size_t n, cg_room *out, const char **why)
{
    size_t type_len = 0;
    while (type_len < n && type_len <= CG_ROOM_TYPE_BYTES_MAX && cg__room_type_char(p[type_len]))
        type_len++;
    if (type_len == 0 || type_len > CG_ROOM_TYPE_BYTES_MAX)
        return cg__refuse(why, "room id malformed: type is not 1..16 of [a-z0-9_-]");
    if (n - type_len < 3 || memcmp(p + type_len, "://", 3) != 0)
        return cg__refuse(why, "room id malformed: no type://id");
    size_t id_off = type_len + 3;
    size_t id_len = n - id_off;
    if (id_len == 0 || id_len > CG_ROOM_NAME_BYTES_MAX)
        return cg__refuse(why, "room id malformed: id is not 1..64 characters");
    for (size_t i = id_off; i < n; i++) {
        if (!cg__room_id_char(p[i]))
            return cg__refuse(why, "room id malformed: id has a space, '/', ',', quote or control");
    }
    MG_ASSERT(n <= CG_ROOM_BYTES_MAX);
    memcpy(out->text, p, n);
    out->text[n] = '\0';
    out->len = (uint8_t)n;
    out->type_len = (uint8_t)type_len;
    return MG_OK;
}

int cg_room_parse(const uint8_t *text, size_t len, cg_room *out, const char **why)
{
    MG_ASSERT(text != NULL || len == 0);
    size_t b = 0, e = len;
    while (b < e && cg__is_space(text[b]))
        b++;
    while (e > b && cg__is_space(text[e - 1]))
        e--;
    if (b == e)
        return cg__refuse(why, "no room");
    return cg__room_check(text + b, e - b, out, why);
}

/* --- Op lists -------------------------------------------------------------------------------- */

int cg_ops_parse(const uint8_t *text, size_t len, cg_ops *out, const char **why)
{
    MG_ASSERT(text != NULL || len == 0);
    out->count = 0;
    size_t pos = 0;
    for (;;) {
        size_t end = pos;
        while (end < len && text[end] != ',')
            end++;
        size_t b = pos, e = end;
        while (b < e && cg__is_space(text[b]))
            b++;
        while (e > b && cg__is_space(text[e - 1]))
            e--;
        uint64_t op = 0;
        if (!cg__parse_decimal(text + b, e - b, UINT32_MAX, &op))
            return cg__refuse(why, "ops not comma-separated u32 numbers");
        if (out->count >= CG_ACCEPT_OPS_MAX)
            return cg__refuse(why, "too many ops");
        out->ops[out->count++] = (uint32_t)op;
        if (end == len)
            return MG_OK;
        pos = end + 1;
    }
}

/* --- Positions ------------------------------------------------------------------------------- */

int cg_position_parse(const char *text, size_t len, cg_position *out)
{
    MG_ASSERT(text != NULL || len == 0);
    const uint8_t *p = (const uint8_t *)text;
    size_t c1 = 0;
    while (c1 < len && p[c1] != ':')
        c1++;
    if (c1 == len)
        return MG_EPROTO;
    size_t c2 = c1 + 1;
    while (c2 < len && p[c2] != ':')
        c2++;
    uint64_t ledger = 0, entry = 0, batch = 0;
    if (!cg__parse_decimal(p, c1, INT64_MAX, &ledger) ||
        !cg__parse_decimal(p + c1 + 1, c2 - c1 - 1, INT64_MAX, &entry))
        return MG_EPROTO;
    int32_t batch_index = -1;
    if (c2 < len) {
        const uint8_t *bp = p + c2 + 1;
        size_t bn = len - c2 - 1;
        if (bn == 2 && bp[0] == '-' && bp[1] == '1')
            batch_index = -1;
        else if (cg__parse_decimal(bp, bn, INT32_MAX, &batch))
            batch_index = (int32_t)batch;
        else
            return MG_EPROTO;
    }
    out->ledger_id = (int64_t)ledger;
    out->entry_id = (int64_t)entry;
    out->batch_index = batch_index;
    return MG_OK;
}

size_t cg_position_format(const cg_position *pos, char *dst, size_t dst_capacity)
{
    MG_ASSERT(dst_capacity >= CG_POSITION_TEXT_BYTES);
    MG_ASSERT(pos->ledger_id >= 0 && pos->entry_id >= 0 && pos->batch_index >= -1);
    int n;
    if (pos->batch_index < 0)
        n = snprintf(dst, dst_capacity, "%" PRId64 ":%" PRId64, pos->ledger_id, pos->entry_id);
    else
        n = snprintf(dst, dst_capacity, "%" PRId64 ":%" PRId64 ":%" PRId32, pos->ledger_id,
                     pos->entry_id, pos->batch_index);
    MG_ASSERT(n > 0 && (size_t)n < dst_capacity);
    return (size_t)n;
}

int cg_position_cmp(const cg_position *a, const cg_position *b)
{
    if (a->ledger_id != b->ledger_id)
        return a->ledger_id < b->ledger_id ? -1 : 1;
    if (a->entry_id != b->entry_id)
        return a->entry_id < b->entry_id ? -1 : 1;
    if (a->batch_index != b->batch_index)
        return a->batch_index < b->batch_index ? -1 : 1;
    return 0;
}

/* --- Auth bodies ----------------------------------------------------------------------------- */

/* Copies the optional string member name of obj into dst (room for max bytes and a NUL); an
 * absent member leaves it empty. */
static int cg__get_string(json_t *obj, const char *name, char *dst, size_t max, size_t *len,
                          const char *not_string, const char *too_long, const char **why)
{
    dst[0] = '\0';
    *len = 0;
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return MG_OK;
    if (!json_is_string(v))
        return cg__refuse(why, not_string);
    size_t n = json_string_length(v);
    if (n > max)
        return cg__refuse(why, too_long);
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    *len = n;
    return MG_OK;
}

/* Reads the optional integer member name of obj into *out (0 when absent). */
static int cg__get_int(json_t *obj, const char *name, int64_t *out, const char *bad,
                       const char **why)
{
    *out = 0;
    json_t *v = json_object_get(obj, name);
    if (v == NULL)
        return MG_OK;
    if (!json_is_integer(v))
        return cg__refuse(why, bad);
    *out = (int64_t)json_integer_value(v);
    return MG_OK;
}

/* Bilibili's "roomid": an integer or a decimal string, > 0, normalised to "live://N". */
static int cg__bilibili_room(json_t *v, cg_room *out, const char **why)
{
    static const char bad[] = "roomid not a positive integer";
    uint64_t id = 0;
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n <= 0)
            return cg__refuse(why, bad);
        id = (uint64_t)n;
    } else if (json_is_string(v)) {
        if (!cg__parse_decimal((const uint8_t *)json_string_value(v), json_string_length(v),
                               INT64_MAX, &id) ||
            id == 0)
            return cg__refuse(why, bad);
    } else {
        return cg__refuse(why, bad);
    }
    int n = snprintf(out->text, sizeof(out->text), "live://%" PRIu64, id);
    MG_ASSERT(n > 0 && (size_t)n < sizeof(out->text));
    out->len = (uint8_t)n;
    out->type_len = 4;
    return MG_OK;
}

static int cg__accepts(json_t *obj, cg_ops *out, const char **why)
{
    static const char bad[] = "accepts not an array of ops";
    out->count = 0;
    json_t *v = json_object_get(obj, "accepts");
    if (v == NULL)
        return MG_OK;
    if (!json_is_array(v))
        return cg__refuse(why, bad);
    size_t n = json_array_size(v);
    if (n > CG_ACCEPT_OPS_MAX)
        return cg__refuse(why, "too many accepts");
    for (size_t i = 0; i < n; i++) {
        json_t *op = json_array_get(v, i);
        if (!json_is_integer(op) || json_integer_value(op) < 0 ||
            json_integer_value(op) > (json_int_t)UINT32_MAX)
            return cg__refuse(why, bad);
        out->ops[out->count++] = (uint32_t)json_integer_value(op);
    }
    return MG_OK;
}

/* The extension fields "positions" and "last_id". */
static int cg__extensions(json_t *obj, cg_auth *out, const char **why)
{
    out->positions = false;
    out->has_last_id = false;
    out->last_id = (cg_position){ .ledger_id = -1, .entry_id = -1, .batch_index = -1 };
    json_t *v = json_object_get(obj, "positions");
    if (v != NULL) {
        if (!json_is_boolean(v))
            return cg__refuse(why, "positions not a bool");
        out->positions = json_is_true(v);
    }
    v = json_object_get(obj, "last_id");
    if (v != NULL) {
        if (!json_is_string(v) ||
            cg_position_parse(json_string_value(v), json_string_length(v), &out->last_id) != MG_OK)
            return cg__refuse(why, "last_id malformed (ledger:entry:batch)");
        out->has_last_id = true;
        out->positions = true;
    }
    return MG_OK;
}

/* Fills *out from the parsed object. */
static int cg__auth_fields(json_t *obj, cg_auth *out, const char **why)
{
    json_t *goim_room = json_object_get(obj, "room_id");
    json_t *bili_room = json_object_get(obj, "roomid");
    if (goim_room == NULL && bili_room == NULL)
        return cg__refuse(why, "no room (room_id or roomid)");
    if (goim_room != NULL && bili_room != NULL)
        return cg__refuse(why, "both room_id and roomid");
    out->protover = 0;
    if (goim_room != NULL) {
        out->dialect = CG_DIALECT_GOIM;
        MG_TRY(cg__get_int(obj, "mid", &out->mid, "mid not an integer", why));
        if (!json_is_string(goim_room))
            return cg__refuse(why, "room_id not a string");
        MG_TRY(cg__room_check((const uint8_t *)json_string_value(goim_room),
                              json_string_length(goim_room), &out->room, why));
    } else {
        out->dialect = CG_DIALECT_BILIBILI;
        MG_TRY(cg__get_int(obj, "uid", &out->mid, "uid not an integer", why));
        MG_TRY(cg__bilibili_room(bili_room, &out->room, why));
        int64_t protover = 0;
        MG_TRY(cg__get_int(obj, "protover", &protover, "protover not 0..3", why));
        if (protover < 0 || protover > 3)
            return cg__refuse(why, "protover not 0..3");
        out->protover = (uint8_t)protover;
    }
    size_t n = 0;
    MG_TRY(cg__get_string(obj, "key", out->key, CG_AUTH_KEY_BYTES_MAX, &n, "key not a string",
                          "key too long", why));
    out->key_len = (uint16_t)n;
    MG_TRY(cg__get_string(obj, "platform", out->platform, CG_AUTH_PLATFORM_BYTES_MAX, &n,
                          "platform not a string", "platform too long", why));
    out->platform_len = (uint8_t)n;
    MG_TRY(cg__accepts(obj, &out->accepts, why));
    return cg__extensions(obj, out, why);
}

int cg_auth_parse(const uint8_t *body, size_t len, cg_auth *out, const char **why)
{
    MG_ASSERT(body != NULL || len == 0);
    memset(out, 0, sizeof(*out));
    if (len > CG_AUTH_BODY_BYTES_MAX)
        return cg__refuse(why, "auth body too long");
    json_error_t err;
    json_t *root = json_loadb(len > 0 ? (const char *)body : "", len,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (root == NULL) {
        switch (json_error_code(&err)) {
        case json_error_out_of_memory:
            return MG_ENOMEM;
        case json_error_duplicate_key:
            return cg__refuse(why, "not JSON: duplicate key");
        case json_error_invalid_utf8:
            return cg__refuse(why, "not JSON: invalid UTF-8");
        case json_error_stack_overflow:
            return cg__refuse(why, "not JSON: nested too deep");
        default:
            return cg__refuse(why, "not JSON");
        }
    }
    int rc =
        json_is_object(root) ? cg__auth_fields(root, out, why) : cg__refuse(why, "not an object");
    json_decref(root);
    return rc;
}

/* --- Op 8 reply bodies ----------------------------------------------------------------------- */

static int cg__put_const(const char *text, char *dst, size_t dst_capacity, size_t *written)
{
    size_t n = strlen(text);
    if (dst == NULL || dst_capacity < n)
        return MG_EINVAL;
    memcpy(dst, text, n);
    *written = n;
    return MG_OK;
}

int cg_auth_reply_ok(char *dst, size_t dst_capacity, size_t *written)
{
    return cg__put_const("{\"code\":0}", dst, dst_capacity, written);
}

int cg_auth_reply_recovered(bool recovered, char *dst, size_t dst_capacity, size_t *written)
{
    return cg__put_const(recovered ? "{\"code\":0,\"recovered\":true}"
                                   : "{\"code\":0,\"recovered\":false}",
                         dst, dst_capacity, written);
}

int cg_auth_reply_refusal(const char *why, char *dst, size_t dst_capacity, size_t *written)
{
    MG_ASSERT(why != NULL);
    json_error_t err;
    json_t *obj = json_pack_ex(&err, 0, "{s:i,s:s}", "code", CG_AUTH_CODE_REFUSED, "message", why);
    if (obj == NULL)
        return json_error_code(&err) == json_error_out_of_memory ? MG_ENOMEM : MG_EINVAL;
    size_t n = json_dumpb(obj, dst, dst_capacity, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(obj);
    if (n == 0 || n > dst_capacity)
        return MG_EINVAL;
    *written = n;
    return MG_OK;
}
