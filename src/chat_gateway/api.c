/*
 * The chat HTTP API (declared in api.h, which lists the endpoints): GOIM logic's push endpoints
 * turned into Pulsar messages on the chat topics, its online endpoints summed from the gateways'
 * metadata nodes, and the route of the chat page.
 *
 * Design notes:
 *   1. Every request is validated whole before anything is queued or sent, so a refused push
 *      leaves no trace but its -400 answer and a metric.
 *   2. One producer per chat topic, created on the first push to it. A topic's state:
 *
 *          NONE --push--> CREATING --created--> READY
 *            ^               |
 *            +----failed-----+   (the waiting pushes answer -500; the next push tries again)
 *
 *      Pushes that arrive while CREATING wait in the topic's queue (at most
 *      CG_API_PRODUCER_WAITERS_MAX, then -500 "busy") and are sent in arrival order once the
 *      producer is there. A READY producer is kept until close: the client itself reconnects it
 *      when a broker goes away.
 *   3. A push owns its HTTP request until the send callback answers it; the request's strings
 *      and body stay valid until then (common/http.h), and pc_send copies what it keeps, so a
 *      push copies only what it builds (the room id, the normalised target list).
 *   4. An online request reads /chat/online's children, then each child's value, one metadata
 *      operation at a time; at most CG_API_ONLINE_REQUESTS_MAX requests run at once, so the API
 *      never has more than that many metadata operations in flight.
 *   5. Close: the ready producers are closed (their pending sends complete), then the client,
 *      whose close fails the creations still in flight (their waiting pushes answer -500); the
 *      API is freed once the client closed and no online request waits on the metadata store
 *      (their callbacks point at the API).
 */
#include "chat_gateway/api.h"

#include "chat_gateway/auth.h"

#include "chat_gateway/page.h"
#include "chat_gateway/topics.h"
#include "client/client.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The op a push carries when the request names none: GOIM's OpSendMsgReply, a message. */
#define CG__OP_DEFAULT       5u
/* Bytes of a decimal u32 and of a decimal int64 with its NUL. */
#define CG__U32_TEXT_BYTES   11u
#define CG__I64_TEXT_BYTES   20u
/* Bytes of a chat topic's name: the prefix and a decimal index. */
#define CG__TOPIC_NAME_BYTES 64u
/* Properties of a chat message at most: kind, room/keys/mids, op, speed. */
#define CG__PROPERTIES_MAX   4u

typedef enum cg__kind {
    CG__KIND_ROOM,
    CG__KIND_KEYS,
    CG__KIND_MIDS,
    CG__KIND_ALL,
    CG__KIND_COUNT
} cg__kind;

static const char *const cg__kind_names[CG__KIND_COUNT] = { "room", "keys", "mids", "all" };

typedef enum cg__result {
    CG__RESULT_OK,
    CG__RESULT_BAD_REQUEST,
    CG__RESULT_ERROR,
    CG__RESULT_BUSY,
    CG__RESULT_COUNT
} cg__result;

static const char *const cg__result_names[CG__RESULT_COUNT] = { "ok", "bad_request", "error",
                                                                "busy" };

/* GOIM logic's answer codes (its ecode package). */
#define CG__CODE_OK          0
#define CG__CODE_BAD_REQUEST (-400)
#define CG__CODE_SERVER      (-500)

typedef enum cg__online_endpoint {
    CG__ONLINE_ROOM,
    CG__ONLINE_TOP,
    CG__ONLINE_TOTAL
} cg__online_endpoint;

typedef enum cg__skip {
    CG__SKIP_PARSE,
    CG__SKIP_STALE,
    CG__SKIP_OVER_LIMIT,
    CG__SKIP_COUNT
} cg__skip;

static const char *const cg__skip_names[CG__SKIP_COUNT] = { "parse", "stale", "over_limit" };

typedef struct cg__push cg__push;

/* A push between its validation and its answer. */
struct cg__push {
    cg_api *api;
    mg_http_request *req;
    cg__kind kind;
    uint32_t topic_index;
    char op_text[CG__U32_TEXT_BYTES];
    char speed_text[CG__U32_TEXT_BYTES]; /* "" when the request gave none */
    char room_id[CG_ROOM_ID_BYTES_MAX + 1];
    char *targets;  /* keys or mids, comma-separated, owned; NULL for room and all */
    cg__push *next; /* in its topic's waiting queue */
};

typedef enum cg__producer_state {
    CG__PRODUCER_NONE,
    CG__PRODUCER_CREATING,
    CG__PRODUCER_READY
} cg__producer_state;

typedef struct cg__topic {
    cg_api *api;
    uint32_t index;
    char name[CG__TOPIC_NAME_BYTES];
    cg__producer_state state;
    pc_producer *producer;
    cg__push *wait_head; /* pushes waiting for the producer, oldest first */
    cg__push *wait_tail;
    uint32_t wait_count;
} cg__topic;

struct cg_api {
    uv_loop_t *loop;
    pc_client *client;
    md_client *mdc;
    uint32_t topic_count;
    cg__topic *topics;
    uint32_t online_inflight; /* online requests not answered yet */
    bool closing;
    uint32_t close_pending; /* producers closing during close */
    bool client_closing;
    bool client_closed;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    mg_counter *m_pushes[CG__KIND_COUNT][CG__RESULT_COUNT];
    mg_counter *m_online[CG__RESULT_COUNT];
    mg_counter *m_skipped[CG__SKIP_COUNT];
};

/* Reads a decimal number of at most max (digits only, no sign, no spaces). */
static bool cg__parse_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Whether key is a connection key: 1 .. CG_KEY_BYTES_MAX bytes of printable ASCII without
 * spaces or commas (a comma separates keys). */
static bool cg__key_valid(const char *key, size_t len)
{
    if (len == 0 || len > CG_KEY_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c >= 0x7f || c == ',')
            return false;
    }
    return true;
}

/* --- replies --------------------------------------------------------------------------------- */

/* Answers with root (a reference taken) as compact JSON, HTTP 200 as GOIM's logic answers. */
static void cg__reply_json(mg_http_request *req, json_t *root)
{
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (text == NULL) {
        mg_http_reply_json_error(req, 500, "out of memory");
        return;
    }
    mg_http_reply(req, 200, "application/json", text, strlen(text));
    free(text);
}

/* {"code":code,"message":message}. */
static void cg__reply_code(mg_http_request *req, int code, const char *message)
{
    cg__reply_json(req, json_pack("{s:i,s:s}", "code", code, "message", message));
}

/* {"code":0,"message":"","data":data} (a reference to data taken). */
static void cg__reply_data(mg_http_request *req, json_t *data)
{
    if (data == NULL) {
        cg__reply_code(req, CG__CODE_SERVER, "out of memory");
        return;
    }
    cg__reply_json(req,
                   json_pack("{s:i,s:s,s:o}", "code", CG__CODE_OK, "message", "", "data", data));
}

/* --- pushes ---------------------------------------------------------------------------------- */

static void cg__push_count(cg_api *api, cg__kind kind, cg__result result)
{
    mg_counter_inc(api->m_pushes[kind][result]);
}

static void cg__push_free(cg__push *p)
{
    free(p->targets);
    free(p);
}

/* Answers p with an error and frees it. */
static void cg__push_fail(cg__push *p, cg__result result, const char *message)
{
    MG_ASSERT(result != CG__RESULT_OK);
    cg__push_count(p->api, p->kind, result);
    cg__reply_code(
        p->req, result == CG__RESULT_BAD_REQUEST ? CG__CODE_BAD_REQUEST : CG__CODE_SERVER, message);
    cg__push_free(p);
}

static void cg__push_sent(int status, const pc_message_id *id, void *arg)
{
    cg__push *p = arg;
    if (status != MG_OK) {
        char why[160];
        snprintf(why, sizeof(why), "the broker did not store the message: %s", mg_strerror(status));
        cg__push_fail(p, CG__RESULT_ERROR, why);
        return;
    }
    char text[3 * CG__I64_TEXT_BYTES];
    snprintf(text, sizeof(text), "%" PRId64 ":%" PRId64 ":%" PRId32, id->ledger_id, id->entry_id,
             id->batch_index);
    cg__push_count(p->api, p->kind, CG__RESULT_OK);
    cg__reply_data(p->req, json_pack("{s:s}", "id", text));
    cg__push_free(p);
}

/* Sends p on its topic's producer (READY). */
static void cg__push_send(cg__push *p)
{
    cg__topic *t = &p->api->topics[p->topic_index];
    MG_ASSERT(t->state == CG__PRODUCER_READY);
    pc_property props[CG__PROPERTIES_MAX];
    size_t n = 0;
    props[n++] = (pc_property){ "chat.kind", cg__kind_names[p->kind] };
    if (p->kind == CG__KIND_ROOM)
        props[n++] = (pc_property){ "chat.room", p->room_id };
    else if (p->kind == CG__KIND_KEYS)
        props[n++] = (pc_property){ "chat.keys", p->targets };
    else if (p->kind == CG__KIND_MIDS)
        props[n++] = (pc_property){ "chat.mids", p->targets };
    props[n++] = (pc_property){ "chat.op", p->op_text };
    if (p->speed_text[0] != '\0')
        props[n++] = (pc_property){ "chat.speed", p->speed_text };
    MG_ASSERT(n <= CG__PROPERTIES_MAX);
    size_t body_len = 0;
    const void *body = mg_http_request_body(p->req, &body_len);
    pc_message m = {
        .payload = body,
        .payload_len = body_len,
        .key = p->kind == CG__KIND_ROOM ? p->room_id : NULL,
        .properties = props,
        .property_count = n,
    };
    int rc = pc_send(t->producer, &m, cg__push_sent, p);
    if (rc == MG_EAGAIN) {
        cg__push_fail(p, CG__RESULT_BUSY, "busy: too many messages waiting for the broker");
    } else if (rc != MG_OK) {
        char why[160];
        snprintf(why, sizeof(why), "could not send the message: %s", mg_strerror(rc));
        cg__push_fail(p, CG__RESULT_ERROR, why);
    }
}

/* Takes the oldest push waiting on t, NULL when none. */
static cg__push *cg__topic_dequeue(cg__topic *t)
{
    cg__push *p = t->wait_head;
    if (p == NULL)
        return NULL;
    t->wait_head = p->next;
    if (t->wait_head == NULL)
        t->wait_tail = NULL;
    p->next = NULL;
    MG_ASSERT(t->wait_count > 0);
    t->wait_count--;
    return p;
}

static void cg__topic_enqueue(cg__topic *t, cg__push *p)
{
    MG_ASSERT(t->wait_count < CG_API_PRODUCER_WAITERS_MAX);
    p->next = NULL;
    if (t->wait_tail != NULL)
        t->wait_tail->next = p;
    else
        t->wait_head = p;
    t->wait_tail = p;
    t->wait_count++;
}

/* Answers every push waiting on t with -500 and message. */
static void cg__topic_fail_waiters(cg__topic *t, const char *message)
{
    uint32_t bound = t->wait_count;
    for (uint32_t i = 0; i < bound; i++)
        cg__push_fail(cg__topic_dequeue(t), CG__RESULT_ERROR, message);
    MG_ASSERT(t->wait_head == NULL && t->wait_count == 0);
}

static void cg__close_step(cg_api *api);

static void cg__producer_closed(int status, void *arg)
{
    cg_api *api = arg;
    MG_ASSERT(api->closing && api->close_pending > 0);
    api->close_pending--;
    cg__close_step(api);
}

static void cg__producer_created(int status, pc_producer *producer, void *arg)
{
    cg__topic *t = arg;
    cg_api *api = t->api;
    MG_ASSERT(t->state == CG__PRODUCER_CREATING);
    if (api->closing) {
        t->state = CG__PRODUCER_NONE;
        cg__topic_fail_waiters(t, "the chat API is closing");
        /* Created while other producers were closing (a creation that the client's close
         * overtakes completes with MG_ECLOSED): close it before the client. */
        if (status == MG_OK && !api->client_closing) {
            api->close_pending++;
            pc_producer_close(producer, cg__producer_closed, api);
        }
        return;
    }
    if (status != MG_OK) {
        char why[256];
        snprintf(why, sizeof(why), "no producer on %s: %s %s", t->name, mg_strerror(status),
                 pc_last_error(api->client));
        MG_WARN("chat api: %s", why);
        t->state = CG__PRODUCER_NONE;
        cg__topic_fail_waiters(t, why);
        return;
    }
    t->producer = producer;
    t->state = CG__PRODUCER_READY;
    uint32_t bound = t->wait_count;
    for (uint32_t i = 0; i < bound; i++)
        cg__push_send(cg__topic_dequeue(t));
    MG_ASSERT(t->wait_count == 0);
}

/* Sends p now, or once its topic's producer exists. */
static void cg__push_dispatch(cg__push *p)
{
    cg_api *api = p->api;
    cg__topic *t = &api->topics[p->topic_index];
    switch (t->state) {
    case CG__PRODUCER_READY:
        cg__push_send(p);
        return;
    case CG__PRODUCER_CREATING:
        if (t->wait_count >= CG_API_PRODUCER_WAITERS_MAX) {
            cg__push_fail(p, CG__RESULT_BUSY, "busy: too many messages waiting for a producer");
            return;
        }
        cg__topic_enqueue(t, p);
        return;
    case CG__PRODUCER_NONE:
        break;
    }
    pc_producer_opts o = {
        .topic = t->name,
        .batching = true,
        .batch_max_delay_ms = 1,
        .max_pending_messages = CG_API_PRODUCER_PENDING_MAX,
        .fail_if_full = true,
    };
    int rc = pc_producer_create(api->client, &o, cg__producer_created, t);
    if (rc != MG_OK) {
        char why[160];
        snprintf(why, sizeof(why), "no producer on %s: %s", t->name, mg_strerror(rc));
        cg__push_fail(p, CG__RESULT_ERROR, why);
        return;
    }
    t->state = CG__PRODUCER_CREATING;
    cg__topic_enqueue(t, p);
}

/* Checks the query's comma-separated keys; on success *targets is a copy and routing holds the
 * first key. Returns NULL or what is wrong. */
static const char *cg__parse_keys(const char *list, char **targets, char *routing)
{
    if (list == NULL || list[0] == '\0')
        return "keys is missing";
    size_t count = 0;
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (!cg__key_valid(s, len))
            return "a key is empty, longer than 128 bytes, or not printable ASCII";
        if (++count > CG_API_PUSH_TARGETS_MAX)
            return "more than 1000 keys";
        if (count == 1) {
            memcpy(routing, s, len);
            routing[len] = '\0';
        }
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    *targets = strdup(list);
    return *targets == NULL ? "out of memory" : NULL;
}

/* Checks the query's comma-separated mids (decimal, 1 .. INT64_MAX); on success *targets holds
 * them normalised (no leading zeros) and routing the first one. Returns NULL or what is wrong. */
static const char *cg__parse_mids(const char *list, char **targets, char *routing)
{
    if (list == NULL || list[0] == '\0')
        return "mids is missing";
    /* Each mid normalised takes at most as many bytes as it had, so the copy fits. */
    char *out = malloc(strlen(list) + 1);
    if (out == NULL)
        return "out of memory";
    size_t used = 0;
    size_t count = 0;
    const char *s = list;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        uint64_t mid = 0;
        if (!cg__parse_decimal(s, len, INT64_MAX, &mid) || mid == 0) {
            free(out);
            return "a mid is not a decimal number between 1 and 9223372036854775807";
        }
        if (++count > CG_API_PUSH_TARGETS_MAX) {
            free(out);
            return "more than 1000 mids";
        }
        int n = sprintf(out + used, "%s%" PRIu64, count > 1 ? "," : "", mid);
        if (count == 1)
            sprintf(routing, "%" PRIu64, mid);
        used += (size_t)n;
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    *targets = out;
    return NULL;
}

/* Whether room_id is a whole room id "type://id", as auth.h reads one. */
static bool cg__room_id_valid(const char *room_id)
{
    cg_room room;
    size_t len = strlen(room_id);
    return cg_room_parse((const uint8_t *)room_id, len, &room, NULL) == MG_OK && room.len == len;
}

/* Builds room_id from the query's type and room. Returns NULL or what is wrong. */
static const char *cg__parse_room(const char *type, const char *room, char *room_id)
{
    if (type == NULL || type[0] == '\0')
        return "type is missing";
    if (!cg_room_type_valid(type, strlen(type)))
        return "type must be 1 to 16 of a-z, 0-9, '_' and '-'";
    if (room == NULL || room[0] == '\0')
        return "room is missing";
    if (!cg_room_name_valid(room, strlen(room)))
        return "room must be 1 to 64 printable ASCII characters without spaces, '/', ',' or "
               "quotes";
    snprintf(room_id, CG_ROOM_ID_BYTES_MAX + 1, "%s://%s", type, room);
    return NULL;
}

/* Validates a push request of kind into p. Returns NULL or what is wrong. */
static const char *cg__push_parse(cg__push *p, mg_http_request *req, char *routing)
{
    const char *op = mg_http_request_query(req, "operation");
    uint64_t v = CG__OP_DEFAULT;
    if (op != NULL && !cg__parse_decimal(op, strlen(op), UINT32_MAX, &v))
        return "operation must be a decimal number between 0 and 4294967295";
    snprintf(p->op_text, sizeof(p->op_text), "%" PRIu64, v);
    size_t body_len = 0;
    (void)mg_http_request_body(req, &body_len);
    if (body_len == 0)
        return "the body (the message) is empty";
    if (body_len > CG_PACKET_BODY_BYTES_DEFAULT)
        return "the body (the message) is over 4096 bytes";
    switch (p->kind) {
    case CG__KIND_KEYS:
        return cg__parse_keys(mg_http_request_query(req, "keys"), &p->targets, routing);
    case CG__KIND_MIDS:
        return cg__parse_mids(mg_http_request_query(req, "mids"), &p->targets, routing);
    case CG__KIND_ROOM: {
        const char *why = cg__parse_room(mg_http_request_query(req, "type"),
                                         mg_http_request_query(req, "room"), p->room_id);
        if (why == NULL)
            strcpy(routing, p->room_id);
        return why;
    }
    case CG__KIND_ALL: {
        const char *speed = mg_http_request_query(req, "speed");
        if (speed != NULL) {
            if (!cg__parse_decimal(speed, strlen(speed), UINT32_MAX, &v))
                return "speed must be a decimal number between 0 and 4294967295";
            snprintf(p->speed_text, sizeof(p->speed_text), "%" PRIu64, v);
        }
        return NULL;
    }
    case CG__KIND_COUNT:
        break;
    }
    MG_UNREACHABLE();
}

static void cg__push_handle(cg_api *api, mg_http_request *req, cg__kind kind)
{
    cg__push *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        cg__push_count(api, kind, CG__RESULT_ERROR);
        cg__reply_code(req, CG__CODE_SERVER, "out of memory");
        return;
    }
    p->api = api;
    p->req = req;
    p->kind = kind;
    /* The routing text: the room id, the first key (at most CG_KEY_BYTES_MAX) or the first mid. */
    char routing[CG_KEY_BYTES_MAX + CG_ROOM_ID_BYTES_MAX + 1];
    const char *why = cg__push_parse(p, req, routing);
    if (why != NULL) {
        cg__push_fail(p, CG__RESULT_BAD_REQUEST, why);
        return;
    }
    p->topic_index = kind == CG__KIND_ALL ? 0 : cg_chat_topic_index(routing, api->topic_count);
    MG_ASSERT(p->topic_index < api->topic_count);
    cg__push_dispatch(p);
}

static void cg__handle_push_keys(mg_http_request *req, void *arg)
{
    cg__push_handle(arg, req, CG__KIND_KEYS);
}

static void cg__handle_push_mids(mg_http_request *req, void *arg)
{
    cg__push_handle(arg, req, CG__KIND_MIDS);
}

static void cg__handle_push_room(mg_http_request *req, void *arg)
{
    cg__push_handle(arg, req, CG__KIND_ROOM);
}

static void cg__handle_push_all(mg_http_request *req, void *arg)
{
    cg__push_handle(arg, req, CG__KIND_ALL);
}

/* --- online aggregation ---------------------------------------------------------------------- */

static int cg__room_cmp_id(const void *a, const void *b)
{
    return strcmp(((const cg_api_online_room *)a)->room_id,
                  ((const cg_api_online_room *)b)->room_id);
}

/* Whether v is a JSON integer between 0 and INT64_MAX. */
static bool cg__json_count(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* Whether root is a gateway's node value: the fields api.h lists, with valid room ids. */
static bool cg__online_value_valid(const json_t *root)
{
    if (!json_is_object(root) || !json_is_string(json_object_get(root, "id")) ||
        !json_is_integer(json_object_get(root, "updated_ms")) ||
        !cg__json_count(json_object_get(root, "conn_count")) ||
        !cg__json_count(json_object_get(root, "ip_count")))
        return false;
    const json_t *rooms = json_object_get(root, "rooms");
    if (!json_is_object(rooms))
        return false;
    const char *room_id;
    const json_t *count;
    json_object_foreach((json_t *)rooms, room_id, count)
    {
        if (!cg__json_count(count) || !cg__room_id_valid(room_id))
            return false;
    }
    return true;
}

static uint64_t cg__add_saturated(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Adds count to room_id's sum; index maps a room id to its place in o->rooms (unsorted while
 * summing). Returns MG_OK, MG_ELIMIT (CG_API_ONLINE_ROOMS_MAX rooms already), MG_ENOMEM. */
static int cg__online_add_room(cg_api_online *o, json_t *index, size_t *capacity,
                               const char *room_id, uint64_t count)
{
    json_t *at = json_object_get(index, room_id);
    if (at != NULL) {
        cg_api_online_room *r = &o->rooms[json_integer_value(at)];
        r->count = cg__add_saturated(r->count, count);
        return MG_OK;
    }
    if (o->room_count >= CG_API_ONLINE_ROOMS_MAX)
        return MG_ELIMIT;
    if (o->room_count == *capacity) {
        size_t cap = *capacity == 0 ? 64 : *capacity * 2;
        cg_api_online_room *rooms = realloc(o->rooms, cap * sizeof(*rooms));
        if (rooms == NULL)
            return MG_ENOMEM;
        o->rooms = rooms;
        *capacity = cap;
    }
    if (json_object_set_new(index, room_id, json_integer((json_int_t)o->room_count)) != 0)
        return MG_ENOMEM;
    cg_api_online_room *r = &o->rooms[o->room_count++];
    MG_ASSERT(strlen(room_id) <= CG_ROOM_ID_BYTES_MAX);
    strcpy(r->room_id, room_id);
    r->count = count;
    return MG_OK;
}

int cg_api_online_aggregate(const cg_api_online_value *values, size_t value_count, int64_t now_ms,
                            cg_api_online *out)
{
    memset(out, 0, sizeof(*out));
    json_t *index = json_object();
    if (index == NULL)
        return MG_ENOMEM;
    size_t capacity = 0;
    int rc = MG_OK;
    for (size_t i = 0; i < value_count && rc == MG_OK; i++) {
        json_t *root =
            json_loadb(values[i].value, values[i].value_len, JSON_REJECT_DUPLICATES, NULL);
        if (!cg__online_value_valid(root)) {
            out->skipped_parse_count++;
        } else if (json_integer_value(json_object_get(root, "updated_ms")) <
                   now_ms - (int64_t)CG_ONLINE_STALE_MS) {
            out->skipped_stale_count++;
        } else {
            out->gateway_count++;
            out->conn_count = cg__add_saturated(
                out->conn_count, (uint64_t)json_integer_value(json_object_get(root, "conn_count")));
            out->ip_count = cg__add_saturated(
                out->ip_count, (uint64_t)json_integer_value(json_object_get(root, "ip_count")));
            const char *room_id;
            json_t *count;
            json_object_foreach(json_object_get(root, "rooms"), room_id, count)
            {
                int r = cg__online_add_room(out, index, &capacity, room_id,
                                            (uint64_t)json_integer_value(count));
                if (r == MG_ELIMIT) {
                    out->rooms_dropped_count++;
                } else if (r != MG_OK) {
                    rc = r;
                    break;
                }
            }
        }
        json_decref(root);
    }
    json_decref(index);
    if (rc != MG_OK) {
        cg_api_online_release(out);
        return rc;
    }
    if (out->room_count > 1)
        qsort(out->rooms, out->room_count, sizeof(*out->rooms), cg__room_cmp_id);
    return MG_OK;
}

uint64_t cg_api_online_room_count(const cg_api_online *o, const char *room_id)
{
    if (strlen(room_id) > CG_ROOM_ID_BYTES_MAX || o->room_count == 0)
        return 0;
    cg_api_online_room key;
    strcpy(key.room_id, room_id);
    const cg_api_online_room *r =
        bsearch(&key, o->rooms, o->room_count, sizeof(*o->rooms), cg__room_cmp_id);
    return r != NULL ? r->count : 0;
}

/* Whether a ranks before b in a top list: larger count, then smaller room id. */
static bool cg__room_before(const cg_api_online_room *a, const cg_api_online_room *b)
{
    return a->count != b->count ? a->count > b->count : strcmp(a->room_id, b->room_id) < 0;
}

size_t cg_api_online_top(const cg_api_online *o, const char *type, cg_api_online_room *dst,
                         size_t dst_capacity)
{
    size_t type_len = strlen(type);
    size_t n = 0;
    if (dst_capacity == 0)
        return 0;
    for (size_t i = 0; i < o->room_count; i++) {
        const cg_api_online_room *r = &o->rooms[i];
        if (strncmp(r->room_id, type, type_len) != 0 || strncmp(r->room_id + type_len, "://", 3))
            continue;
        if (n == dst_capacity && !cg__room_before(r, &dst[n - 1]))
            continue;
        /* Insert in order: dst stays sorted, its last entry dropped when full. */
        size_t at = n < dst_capacity ? n : n - 1;
        while (at > 0 && cg__room_before(r, &dst[at - 1])) {
            dst[at] = dst[at - 1];
            at--;
        }
        dst[at] = *r;
        if (n < dst_capacity)
            n++;
    }
    return n;
}

void cg_api_online_release(cg_api_online *o)
{
    free(o->rooms);
    memset(o, 0, sizeof(*o));
}

/* --- online endpoints ------------------------------------------------------------------------ */

typedef struct cg__online_req {
    cg_api *api;
    mg_http_request *req;
    cg__online_endpoint endpoint;
    const char *type;  /* the query's type (room, top), valid until the reply */
    const char *rooms; /* the query's rooms (room) */
    uint32_t limit;    /* top */
    char **names;      /* children of CG_ONLINE_PATH, name_count of them, owned */
    size_t name_count;
    size_t next;   /* the next name to read */
    char **values; /* values read, value_count of them, owned */
    size_t *value_lens;
    size_t value_count;
    uint32_t over_limit_count; /* children left out past CG_API_ONLINE_GATEWAYS_MAX */
} cg__online_req;

static void cg__close_finish(cg_api *api);

/* Answers r (with its last error or the aggregate), frees it and lets a close go on. */
static void cg__online_end(cg__online_req *r, int status)
{
    cg_api *api = r->api;
    cg__result result = CG__RESULT_OK;
    if (status != MG_OK) {
        char why[160];
        snprintf(why, sizeof(why), "could not read the online counts: %s", mg_strerror(status));
        cg__reply_code(r->req, CG__CODE_SERVER, why);
        result = CG__RESULT_ERROR;
    } else {
        cg_api_online_value *vals = calloc(r->value_count + 1, sizeof(*vals));
        cg_api_online o;
        int rc = vals != NULL ? MG_OK : MG_ENOMEM;
        for (size_t i = 0; rc == MG_OK && i < r->value_count; i++)
            vals[i] = (cg_api_online_value){ r->values[i], r->value_lens[i] };
        if (rc == MG_OK)
            rc = cg_api_online_aggregate(vals, r->value_count, mg_clock_wall_ms(), &o);
        free(vals);
        if (rc != MG_OK) {
            cg__reply_code(r->req, CG__CODE_SERVER, "out of memory");
            result = CG__RESULT_ERROR;
        } else {
            mg_counter_add(api->m_skipped[CG__SKIP_PARSE], o.skipped_parse_count);
            mg_counter_add(api->m_skipped[CG__SKIP_STALE], o.skipped_stale_count);
            mg_counter_add(api->m_skipped[CG__SKIP_OVER_LIMIT],
                           r->over_limit_count + o.rooms_dropped_count);
            json_t *data = NULL;
            if (r->endpoint == CG__ONLINE_TOTAL) {
                data = json_pack("{s:I,s:I}", "conn_count",
                                 (json_int_t)(o.conn_count > INT64_MAX ? INT64_MAX : o.conn_count),
                                 "ip_count",
                                 (json_int_t)(o.ip_count > INT64_MAX ? INT64_MAX : o.ip_count));
            } else if (r->endpoint == CG__ONLINE_ROOM) {
                data = json_object();
                const char *s = r->rooms;
                for (uint32_t i = 0; data != NULL && i < CG_API_ONLINE_QUERY_ROOMS_MAX; i++) {
                    const char *comma = strchr(s, ',');
                    size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
                    char room_id[CG_ROOM_ID_BYTES_MAX + 1];
                    snprintf(room_id, sizeof(room_id), "%s://%.*s", r->type, (int)len, s);
                    uint64_t n = cg_api_online_room_count(&o, room_id);
                    json_object_set_new(data, room_id,
                                        json_integer((json_int_t)(n > INT64_MAX ? INT64_MAX : n)));
                    if (comma == NULL)
                        break;
                    s = comma + 1;
                }
            } else {
                cg_api_online_room *top = calloc(r->limit, sizeof(*top));
                size_t n = top != NULL ? cg_api_online_top(&o, r->type, top, r->limit) : 0;
                data = top != NULL ? json_array() : NULL;
                for (size_t i = 0; data != NULL && i < n; i++) {
                    json_int_t c =
                        (json_int_t)(top[i].count > INT64_MAX ? INT64_MAX : top[i].count);
                    json_array_append_new(
                        data, json_pack("{s:s,s:I}", "room_id", top[i].room_id, "count", c));
                }
                free(top);
            }
            cg__reply_data(r->req, data);
            cg_api_online_release(&o);
        }
    }
    mg_counter_inc(api->m_online[result]);
    for (size_t i = 0; i < r->name_count; i++)
        free(r->names[i]);
    for (size_t i = 0; i < r->value_count; i++)
        free(r->values[i]);
    free(r->names);
    free(r->values);
    free(r->value_lens);
    free(r);
    MG_ASSERT(api->online_inflight > 0);
    api->online_inflight--;
    if (api->closing)
        cg__close_finish(api);
}

static void cg__online_next(cg__online_req *r);

static void cg__online_got(int status, const void *value, size_t value_len, const md_stat *stat,
                           void *arg)
{
    cg__online_req *r = arg;
    if (status == MG_OK) {
        char *copy = malloc(value_len + 1);
        if (copy == NULL) {
            cg__online_end(r, MG_ENOMEM);
            return;
        }
        memcpy(copy, value, value_len);
        copy[value_len] = '\0';
        r->values[r->value_count] = copy;
        r->value_lens[r->value_count] = value_len;
        r->value_count++;
    } else if (status != MG_ENOTFOUND) { /* MG_ENOTFOUND: the gateway left meanwhile */
        cg__online_end(r, status);
        return;
    }
    r->next++;
    cg__online_next(r);
}

/* Reads the next gateway's node, or answers when all were read. */
static void cg__online_next(cg__online_req *r)
{
    if (r->next == r->name_count) {
        cg__online_end(r, MG_OK);
        return;
    }
    char path[MD_PATH_BYTES_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", CG_ONLINE_PATH, r->names[r->next]);
    MG_ASSERT(n > 0 && (size_t)n < sizeof(path));
    int rc = md_get(r->api->mdc, path, cg__online_got, r);
    if (rc != MG_OK)
        cg__online_end(r, rc);
}

static void cg__online_children(int status, const char *const *names, size_t count, void *arg)
{
    cg__online_req *r = arg;
    if (status == MG_ENOTFOUND) { /* no gateway ever wrote its counts */
        cg__online_end(r, MG_OK);
        return;
    }
    if (status != MG_OK) {
        cg__online_end(r, status);
        return;
    }
    size_t take = count < CG_API_ONLINE_GATEWAYS_MAX ? count : CG_API_ONLINE_GATEWAYS_MAX;
    r->over_limit_count = (uint32_t)(count - take);
    r->names = calloc(take + 1, sizeof(*r->names));
    r->values = calloc(take + 1, sizeof(*r->values));
    r->value_lens = calloc(take + 1, sizeof(*r->value_lens));
    if (r->names == NULL || r->values == NULL || r->value_lens == NULL) {
        cg__online_end(r, MG_ENOMEM);
        return;
    }
    for (size_t i = 0; i < take; i++) {
        r->names[i] = strdup(names[i]);
        if (r->names[i] == NULL) {
            cg__online_end(r, MG_ENOMEM);
            return;
        }
        r->name_count++;
    }
    cg__online_next(r);
}

/* Validates the query of endpoint into r. Returns NULL or what is wrong. */
static const char *cg__online_parse(cg__online_req *r, mg_http_request *req)
{
    if (r->endpoint == CG__ONLINE_TOTAL)
        return NULL;
    r->type = mg_http_request_query(req, "type");
    if (r->type == NULL || r->type[0] == '\0')
        return "type is missing";
    if (!cg_room_type_valid(r->type, strlen(r->type)))
        return "type must be 1 to 16 of a-z, 0-9, '_' and '-'";
    if (r->endpoint == CG__ONLINE_TOP) {
        const char *limit = mg_http_request_query(req, "limit");
        uint64_t v = 0;
        if (limit == NULL || limit[0] == '\0')
            return "limit is missing";
        if (!cg__parse_decimal(limit, strlen(limit), CG_API_ONLINE_TOP_MAX, &v) || v == 0)
            return "limit must be a decimal number between 1 and 1000";
        r->limit = (uint32_t)v;
        return NULL;
    }
    r->rooms = mg_http_request_query(req, "rooms");
    if (r->rooms == NULL || r->rooms[0] == '\0')
        return "rooms is missing";
    size_t count = 0;
    const char *s = r->rooms;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);
        if (!cg_room_name_valid(s, len))
            return "a room must be 1 to 64 printable ASCII characters without spaces, '/', ',' "
                   "or quotes";
        if (++count > CG_API_ONLINE_QUERY_ROOMS_MAX)
            return "more than 100 rooms";
        if (comma == NULL)
            break;
        s = comma + 1;
    }
    return NULL;
}

static void cg__online_handle(cg_api *api, mg_http_request *req, cg__online_endpoint endpoint)
{
    cg__online_req probe = { .api = api, .req = req, .endpoint = endpoint };
    const char *why = cg__online_parse(&probe, req);
    if (why != NULL) {
        mg_counter_inc(api->m_online[CG__RESULT_BAD_REQUEST]);
        cg__reply_code(req, CG__CODE_BAD_REQUEST, why);
        return;
    }
    if (api->mdc == NULL) {
        mg_counter_inc(api->m_online[CG__RESULT_ERROR]);
        cg__reply_code(req, CG__CODE_SERVER, "no metadata store: online counts are unknown");
        return;
    }
    if (api->online_inflight >= CG_API_ONLINE_REQUESTS_MAX) {
        mg_counter_inc(api->m_online[CG__RESULT_BUSY]);
        cg__reply_code(req, CG__CODE_SERVER, "busy: too many online requests");
        return;
    }
    cg__online_req *r = malloc(sizeof(*r));
    if (r == NULL) {
        mg_counter_inc(api->m_online[CG__RESULT_ERROR]);
        cg__reply_code(req, CG__CODE_SERVER, "out of memory");
        return;
    }
    *r = probe;
    int rc = md_children(api->mdc, CG_ONLINE_PATH, cg__online_children, r);
    if (rc != MG_OK) {
        free(r);
        char message[160];
        snprintf(message, sizeof(message), "could not read the online counts: %s", mg_strerror(rc));
        mg_counter_inc(api->m_online[CG__RESULT_ERROR]);
        cg__reply_code(req, CG__CODE_SERVER, message);
        return;
    }
    api->online_inflight++;
}

static void cg__handle_online_room(mg_http_request *req, void *arg)
{
    cg__online_handle(arg, req, CG__ONLINE_ROOM);
}

static void cg__handle_online_top(mg_http_request *req, void *arg)
{
    cg__online_handle(arg, req, CG__ONLINE_TOP);
}

static void cg__handle_online_total(mg_http_request *req, void *arg)
{
    cg__online_handle(arg, req, CG__ONLINE_TOTAL);
}

/* --- create and close ------------------------------------------------------------------------ */

static void cg__metrics_register(cg_api *api, mg_metrics *m)
{
    if (m == NULL)
        return;
    static const char *const push_labels[] = { "kind", "result" };
    mg_metric_family *pf = mg_metrics_counter_family(
        m, "magnetar_chat_api_pushes_total",
        "Pushes through the chat HTTP API by kind (room, keys, mids, all) and result: ok (stored), "
        "bad_request (-400), error (-500: not stored), busy (-500: a full queue)",
        2, push_labels);
    for (int k = 0; k < CG__KIND_COUNT; k++)
        for (int r = 0; r < CG__RESULT_COUNT; r++) {
            const char *values[2] = { cg__kind_names[k], cg__result_names[r] };
            api->m_pushes[k][r] = pf != NULL ? mg_metrics_counter(pf, values) : NULL;
        }
    static const char *const result_label[] = { "result" };
    mg_metric_family *of = mg_metrics_counter_family(
        m, "magnetar_chat_api_online_requests_total",
        "Requests to the chat API's online endpoints by result (ok, bad_request, error, busy)", 1,
        result_label);
    for (int r = 0; r < CG__RESULT_COUNT; r++) {
        const char *values[1] = { cg__result_names[r] };
        api->m_online[r] = of != NULL ? mg_metrics_counter(of, values) : NULL;
    }
    static const char *const reason_label[] = { "reason" };
    mg_metric_family *sf = mg_metrics_counter_family(
        m, "magnetar_chat_api_online_skipped_total",
        "What the online endpoints left out: gateway values that do not parse (parse) or were not "
        "updated for 30 s (stale), gateways and rooms past the bounds (over_limit)",
        1, reason_label);
    for (int s = 0; s < CG__SKIP_COUNT; s++) {
        const char *values[1] = { cg__skip_names[s] };
        api->m_skipped[s] = sf != NULL ? mg_metrics_counter(sf, values) : NULL;
    }
}

static int cg__routes(cg_api *api, mg_http_server *http)
{
    MG_TRY(mg_http_server_route(http, "POST", "/goim/push/keys", cg__handle_push_keys, api));
    MG_TRY(mg_http_server_route(http, "POST", "/goim/push/mids", cg__handle_push_mids, api));
    MG_TRY(mg_http_server_route(http, "POST", "/goim/push/room", cg__handle_push_room, api));
    MG_TRY(mg_http_server_route(http, "POST", "/goim/push/all", cg__handle_push_all, api));
    MG_TRY(mg_http_server_route(http, "GET", "/goim/online/room", cg__handle_online_room, api));
    MG_TRY(mg_http_server_route(http, "GET", "/goim/online/top", cg__handle_online_top, api));
    MG_TRY(mg_http_server_route(http, "GET", "/goim/online/total", cg__handle_online_total, api));
    MG_TRY(mg_http_server_route(http, "GET", "/chat", cg_page_chat_handle, NULL));
    return MG_OK;
}

int cg_api_create(uv_loop_t *loop, mg_http_server *http, const cg_api_opts *opts, cg_api **out)
{
    if (opts == NULL || opts->service_url == NULL || opts->topic_count > CG_CHAT_TOPICS_MAX)
        return MG_EINVAL;
    cg_api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return MG_ENOMEM;
    api->loop = loop;
    api->mdc = opts->md_client;
    api->topic_count = opts->topic_count != 0 ? opts->topic_count : CG_CHAT_TOPICS_DEFAULT;
    api->topics = calloc(api->topic_count, sizeof(*api->topics));
    if (api->topics == NULL) {
        free(api);
        return MG_ENOMEM;
    }
    for (uint32_t i = 0; i < api->topic_count; i++) {
        cg__topic *t = &api->topics[i];
        t->api = api;
        t->index = i;
        int rc = cg_chat_topic_name(i, t->name, sizeof(t->name));
        MG_ASSERT(rc == MG_OK);
    }
    pc_client_opts co = { .service_url = opts->service_url };
    int rc = pc_client_create(loop, &co, &api->client);
    if (rc == MG_OK)
        rc = cg__routes(api, http);
    if (rc != MG_OK) {
        /* The client opened no connection yet: closing it only needs the loop to run, which the
         * caller does while closing the server. */
        if (api->client != NULL)
            pc_client_close(api->client, free, api->topics);
        else
            free(api->topics);
        free(api);
        return rc;
    }
    cg__metrics_register(api, opts->metrics);
    *out = api;
    return MG_OK;
}

static void cg__close_finish(cg_api *api)
{
    if (!api->client_closed || api->online_inflight > 0)
        return;
    void (*closed_cb)(void *) = api->closed_cb;
    void *arg = api->closed_arg;
    free(api->topics);
    free(api);
    if (closed_cb != NULL)
        closed_cb(arg);
}

static void cg__client_closed(void *arg)
{
    cg_api *api = arg;
    api->client_closed = true;
    cg__close_finish(api);
}

/* Closes the client once every producer has closed. */
static void cg__close_step(cg_api *api)
{
    if (api->close_pending > 0 || api->client_closing)
        return;
    api->client_closing = true;
    pc_client_close(api->client, cg__client_closed, api);
}

void cg_api_close(cg_api *api, void (*closed_cb)(void *arg), void *arg)
{
    MG_ASSERT(!api->closing);
    api->closing = true;
    api->closed_cb = closed_cb;
    api->closed_arg = arg;
    for (uint32_t i = 0; i < api->topic_count; i++) {
        cg__topic *t = &api->topics[i];
        if (t->state == CG__PRODUCER_READY) {
            api->close_pending++;
            t->state = CG__PRODUCER_NONE;
            pc_producer_close(t->producer, cg__producer_closed, api);
            t->producer = NULL;
        }
    }
    cg__close_step(api);
}
