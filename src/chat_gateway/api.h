/*
 * The chat HTTP API: GOIM logic's push and online endpoints, served on the admin HTTP server
 * (common/http.h, port 8080), and the chat page (page.h) at GET /chat.
 *
 * PUSH (POST, the request body is the message, 1 .. CG_PACKET_BODY_BYTES_DEFAULT bytes)
 *   /goim/push/keys?operation=OP&keys=k1,k2         kind keys, routed by the first key
 *   /goim/push/mids?operation=OP&mids=1,2           kind mids, routed by the first mid (decimal)
 *   /goim/push/room?operation=OP&type=live&room=1000  kind room, routed by the room id live://1000
 *   /goim/push/all?operation=OP[&speed=N]           kind all, always to chat-0
 *   Each push becomes one Pulsar message on persistent://public/default/chat-<i>, i =
 *   cg_chat_topic_index(routing, topic_count) (topics.h), whose payload is the body and whose
 *   properties are chat.kind, chat.room / chat.keys / chat.mids, chat.op (operation, default 5)
 *   and, when given, chat.speed; a room message's key is its room id. The API is a Pulsar client
 *   like any producer: one producer per chat topic, created on the first push to it (batching,
 *   1 ms delay). The answer comes once the broker stored the message, as GOIM's logic answers:
 *   HTTP 200 {"code":0,"message":"","data":{"id":"ledger:entry:batch"}}; HTTP 200
 *   {"code":-400,"message":...} for bad input, {"code":-500,"message":...} when the message could
 *   not be stored (or the API is busy: a full queue).
 *   A list is comma-separated (keys=a,b): the HTTP server hands over the first value of a
 *   repeated parameter only.
 *
 * ONLINE (GET; counts summed over the gateways' nodes /chat/online/<id> in the metadata store)
 *   /goim/online/room?type=live&rooms=1000,1001  {"live://1000":N,...}
 *   /goim/online/top?type=live&limit=N           [{"room_id":"live://1000","count":N},...]
 *   /goim/online/total                           {"conn_count":N,"ip_count":M}
 *   each inside {"code":0,"message":"","data":...}. A node that does not parse, or whose
 *   updated_ms is more than CG_ONLINE_STALE_MS old, is left out (and counted in a metric).
 *   cg_api_online_* below are the aggregation, a pure function of the nodes' values.
 *
 * LIFETIME: create (routes registered on a server not yet started) --> serving --> close -->
 *   (producers closed, client closed, metadata reads finished) --> closed_cb. The HTTP server
 *   must be closed first (no handler of the API may run once cg_api_close was called); replies
 *   still owed then go nowhere.
 *
 * METRICS (when a registry is given): magnetar_chat_api_pushes_total{kind,result} with result
 *   ok | bad_request | error | busy, magnetar_chat_api_online_requests_total{result} and
 *   magnetar_chat_api_online_skipped_total{reason} (parse | stale | over_limit).
 *
 * THREADING: everything runs on the loop given to cg_api_create (the HTTP server's loop), except
 *   the cg_api_online_* functions, which are reentrant and may run on any thread.
 */
#ifndef MG_CHAT_GATEWAY_API_H
#define MG_CHAT_GATEWAY_API_H

#include "chat_gateway/limits.h"
#include "common/http.h"
#include "common/metrics.h"
#include "metadata/metadata.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cg_api cg_api;

/* The metadata node under which every gateway writes its online counts. */
#define CG_ONLINE_PATH "/chat/online"

typedef struct cg_api_opts {
    const char *service_url; /* the broker, "pulsar://127.0.0.1:6650"; required, copied */
    uint32_t topic_count;    /* chat topics; 0 = CG_CHAT_TOPICS_DEFAULT, at most
                                CG_CHAT_TOPICS_MAX */
    md_client *md_client;    /* for the online endpoints, on the same loop; must outlive the
                                API; NULL: they answer -500 */
    mg_metrics *metrics;     /* NULL = none; must outlive the API */
} cg_api_opts;

/* Creates the API and registers its routes (the push and online endpoints and GET /chat) on
 * http, which must not be started yet.
 * [in] loop: the HTTP server's loop; every callback runs on it; must outlive the API.
 * [in] http: the server; must outlive the API.
 * [in] opts: copied.
 * [out] out: the API, owned by the caller; release with cg_api_close.
 * Loop thread. Errors: MG_EINVAL (no service URL, a bad one, topic_count over
 * CG_CHAT_TOPICS_MAX), mg_http_server_route's errors (MG_ELIMIT, MG_ESTATE), MG_ENOMEM. On error
 * nothing stays allocated; routes already registered on http must not be reached (close the
 * server without starting it). */
int cg_api_create(uv_loop_t *loop, mg_http_server *http, const cg_api_opts *opts, cg_api **out);

/* Closes the producers (their pending pushes complete and are answered), then the client, waits
 * for the metadata reads in flight, frees the API and calls closed_cb(arg) (may be NULL) from
 * the loop, never inside this call. Close the HTTP server first. Loop thread, once. */
void cg_api_close(cg_api *api, void (*closed_cb)(void *arg), void *arg);

/* --- online aggregation ---------------------------------------------------------------------- */

/* One gateway's node value: value_len bytes of JSON (need not be NUL-terminated)
 * {"id":..,"updated_ms":..,"conn_count":..,"ip_count":..,"rooms":{"type://id":count,...}}. */
typedef struct cg_api_online_value {
    const void *value;
    size_t value_len;
} cg_api_online_value;

typedef struct cg_api_online_room {
    char room_id[CG_ROOM_ID_BYTES_MAX + 1];
    uint64_t count;
} cg_api_online_room;

/* The sum over gateways. Fields are read-only to callers. */
typedef struct cg_api_online {
    uint64_t conn_count;
    uint64_t ip_count;
    uint32_t gateway_count;       /* values summed */
    uint32_t skipped_parse_count; /* values left out: not the JSON above, or a bad room id */
    uint32_t skipped_stale_count; /* values left out: updated_ms older than CG_ONLINE_STALE_MS */
    uint32_t rooms_dropped_count; /* rooms left out past CG_API_ONLINE_ROOMS_MAX */
    cg_api_online_room *rooms;    /* room_count rooms, sorted by room id (bytewise) */
    size_t room_count;
} cg_api_online;

/* Sums values[0, value_count) into *out: connections, IPs and each room's count over the values
 * that parse and whose updated_ms is at least now_ms - CG_ONLINE_STALE_MS. Counts that overflow
 * saturate at UINT64_MAX.
 * [out] out: owns its rooms after MG_OK; release with cg_api_online_release.
 * Any thread. Returns MG_OK, MG_ENOMEM (*out is then empty). */
int cg_api_online_aggregate(const cg_api_online_value *values, size_t value_count, int64_t now_ms,
                            cg_api_online *out);

/* The summed count of room_id (0 when no gateway has it). Any thread. */
uint64_t cg_api_online_room_count(const cg_api_online *o, const char *room_id);

/* Writes the rooms of type type (room ids "type://...") into dst, largest count first, ties by
 * room id, at most dst_capacity of them; returns how many were written. Any thread. */
size_t cg_api_online_top(const cg_api_online *o, const char *type, cg_api_online_room *dst,
                         size_t dst_capacity);

/* Frees what cg_api_online_aggregate allocated and empties *o; an empty o is accepted. */
void cg_api_online_release(cg_api_online *o);

#endif
