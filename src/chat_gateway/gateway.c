/*
 * The chat gateway: client connections, rooms, buckets, the fan-out of pushed messages, and the
 * push port Job workers feed (gateway.h, docs/chat_gateway.md).
 *
 * CONNECTIONS
 *   A client connection (cg__conn) goes through
 *
 *       [WS: HANDSHAKE] --upgrade--> AUTH --op 7 accepted--> LIVE --> CLOSING --close cb--> freed
 *                                      |                      ^
 *                                      +--op 7 with last_id--> RESUMING (resume.c)
 *
 *   Bad input in any state (a packet the codec refuses, an op the state does not allow, a bad
 *   WebSocket frame, a refused auth) closes the connection with its reason logged (rate-limited)
 *   and counted in magnetar_chat_gateway_closed_total{reason}. Nothing else is touched.
 *
 * MEMORY OF A CONNECTION
 *   An idle connection holds its cg__conn (libuv's TCP handle, list links, its WebSocket parser
 *   state, an output ring of CG_QUEUE_SLOTS pointers) and its key: under a kilobyte. Reads land in
 *   one buffer of the gateway (CG_READ_BUFFER_BYTES), handled at once; only the bytes of an
 *   incomplete packet or frame are copied into the connection, and freed when it completes.
 *   Timers are the gateway's, not the connection's: connections waiting for auth sit in a list
 *   ordered by accept time, live ones in a list ordered by their last packet (moved to the tail
 *   on each), and one timer walks both lists from the head every second.
 *
 * FAN-OUT
 *   A push (from a Job link) is turned into frames at most once per form a recipient needs: the
 *   form is the client's dialect (GOIM: an op 9 batch; Bilibili: packets back to back, zlib or
 *   brotli per protover), whether it asked for positions, and its transport (a WebSocket frame
 *   header in front). Each frame is one reference-counted mg_buf. A recipient whose queue is
 *   empty gets it written at once with uv_try_write, which needs no reference and no request;
 *   the rest (and what the kernel did not take) waits in the recipient's ring, holding a
 *   reference, and goes out gathered: one uv_write (writev) per connection for everything
 *   queued.
 *
 * SLOW CONSUMERS (the policy of Redis's client output buffer limits)
 *   Soft: when a frame does not fit the ring (CG_QUEUE_SLOTS) or the queued bytes would pass
 *   queue_soft_bytes, the oldest chat frames not yet handed to the kernel are dropped and counted
 *   (magnetar_chat_gateway_dropped_total). Hard: when that is not enough (what is queued is
 *   replies or is being written) and the queue would pass queue_hard_bytes or its slots, the
 *   connection is closed (reason "slow_consumer").
 *
 * DUPLICATES
 *   A pushed message whose position is not after the last one delivered for its room (room
 *   pushes) or its topic (other pushes) is dropped: a Job that restarts resends what it had not
 *   seen acknowledged, and clients must not get it twice. Positions in one topic only grow, and a
 *   room lives in one topic.
 *
 * ROOMS AND JOBS
 *   Rooms live in a hash table; a room holds its members in a list and their count. A room whose
 *   membership crosses zero is marked dirty; once per loop iteration (uv_check) the dirty rooms
 *   are sent to every Job link as a ChatRooms diff, and rooms left empty are freed. A new link
 *   gets every room with members (reset) in answer to its Hello.
 *
 * Invariants:
 *   1. A connection is in exactly one of: gw->waiting (HANDSHAKE, AUTH), gw->live (LIVE,
 *      RESUMING), no list (CLOSING).
 *   2. A connection is in a room's member list iff state is LIVE or RESUMING; room->count is the
 *      length of that list.
 *   3. q_inflight <= q_count <= CG_QUEUE_SLOTS; entries [0, q_inflight) are being written by one
 *      uv_write; only entries at or after q_inflight may be dropped; q_off is 0 unless the first
 *      entry was partly taken by uv_try_write (it is then in flight).
 *   4. Every queued entry holds one reference to its frame, released when written, dropped, or
 *      when the connection is freed.
 */
#include "chat_gateway/gateway.h"

#include "chat_gateway/auth.h"
#include "chat_gateway/compress.h"
#include "chat_gateway/packet.h"
#include "chat_gateway/push.h"
#include "chat_gateway/topics.h"
#include "chat_gateway/ws.h"
#include "chat_gateway/gateway_int.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"
#include "metadata/metadata.h"
#include "proto/chat.pb-c.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------------------------- */

static uint32_t gw_hash(const void *p, size_t n)
{
    return cg_fnv1a32(p, n);
}

static int64_t gw_now_ms(cg_gateway *gw)
{
    return (int64_t)uv_now(gw->loop);
}

static const char *const gw_reason_names[CG__REASON_COUNT] = {
    [CG__REASON_PEER_CLOSED] = "peer_closed",     [CG__REASON_READ_ERROR] = "read_error",
    [CG__REASON_WRITE_ERROR] = "write_error",     [CG__REASON_BAD_PACKET] = "bad_packet",
    [CG__REASON_OVERSIZED] = "oversized",         [CG__REASON_NO_AUTH] = "auth_timeout",
    [CG__REASON_AUTH_REFUSED] = "auth_refused",   [CG__REASON_NOT_AUTH_FIRST] = "not_auth_first",
    [CG__REASON_UNKNOWN_OP] = "unknown_op",       [CG__REASON_BAD_WEBSOCKET] = "bad_websocket",
    [CG__REASON_BAD_HANDSHAKE] = "bad_handshake", [CG__REASON_IDLE] = "idle",
    [CG__REASON_SLOW_CONSUMER] = "slow_consumer", [CG__REASON_REPLACED] = "replaced",
    [CG__REASON_RESUME_FAILED] = "resume_failed", [CG__REASON_SHUTDOWN] = "shutdown",
    [CG__REASON_NO_MEMORY] = "no_memory",
};

const char *cg__reason_name(int reason)
{
    return reason >= 0 && reason < CG__REASON_COUNT && gw_reason_names[reason]
               ? gw_reason_names[reason]
               : "unknown";
}

/* ---- rooms -------------------------------------------------------------------------------- */

static int rooms_grow(cg_gateway *gw)
{
    uint32_t cap = gw->room_cap ? gw->room_cap * 2 : 1024;
    cg__room **t = mg_calloc(cap, sizeof(*t));
    if (t == NULL)
        return MG_ENOMEM;
    for (uint32_t i = 0; i < gw->room_cap; i++) {
        cg__room *r = gw->room_table[i];
        while (r != NULL) {
            cg__room *next = r->hnext;
            uint32_t slot = r->hash & (cap - 1);
            r->hnext = t[slot];
            t[slot] = r;
            r = next;
        }
    }
    mg_free(gw->room_table);
    gw->room_table = t;
    gw->room_cap = cap;
    return MG_OK;
}

cg__room *cg__room_find(cg_gateway *gw, const char *name)
{
    if (gw->room_cap == 0)
        return NULL;
    size_t len = strlen(name);
    uint32_t h = gw_hash(name, len);
    for (cg__room *r = gw->room_table[h & (gw->room_cap - 1)]; r != NULL; r = r->hnext)
        if (r->hash == h && strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static cg__room *room_get(cg_gateway *gw, const char *name)
{
    cg__room *r = cg__room_find(gw, name);
    if (r != NULL)
        return r;
    if ((gw->room_cap == 0 || gw->room_count >= gw->room_cap / 4 * 3) && rooms_grow(gw) != MG_OK)
        return NULL;
    size_t len = strlen(name);
    r = mg_calloc(1, sizeof(*r) + len + 1);
    if (r == NULL)
        return NULL;
    memcpy(r->name, name, len + 1);
    r->hash = gw_hash(name, len);
    mg_list_init(&r->members);
    mg_list_init(&r->dirty_link);
    uint32_t slot = r->hash & (gw->room_cap - 1);
    r->hnext = gw->room_table[slot];
    gw->room_table[slot] = r;
    gw->room_count++;
    return r;
}

void cg__room_free(cg_gateway *gw, cg__room *r)
{
    MG_ASSERT(r->count == 0);
    cg__room **pp = &gw->room_table[r->hash & (gw->room_cap - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    mg_list_remove(&r->dirty_link);
    gw->room_count--;
    mg_free(r);
}

static void room_mark_dirty(cg_gateway *gw, cg__room *r)
{
    if (mg_list_empty(&r->dirty_link))
        mg_list_push(&gw->dirty_rooms, &r->dirty_link);
}

int cg__conn_join(cg__conn *c, const char *room)
{
    cg_gateway *gw = c->gw;
    cg__room *r = room_get(gw, room);
    if (r == NULL)
        return MG_ENOMEM;
    mg_list_push(&r->members, &c->room_link);
    c->room = r;
    if (r->count++ == 0)
        room_mark_dirty(gw, r);
    return MG_OK;
}

void cg__conn_leave(cg__conn *c)
{
    cg__room *r = c->room;
    if (r == NULL)
        return;
    mg_list_remove(&c->room_link);
    c->room = NULL;
    MG_ASSERT(r->count > 0);
    if (--r->count == 0)
        room_mark_dirty(c->gw, r);
}

/* ---- buckets and keys ---------------------------------------------------------------------- */

static cg__bucket *bucket_of(cg_gateway *gw, uint32_t key_hash)
{
    return &gw->buckets[key_hash % gw->bucket_count];
}

static int bucket_grow(cg__bucket *b)
{
    uint32_t cap = b->key_cap ? b->key_cap * 2 : 64;
    cg__conn **t = mg_calloc(cap, sizeof(*t));
    if (t == NULL)
        return MG_ENOMEM;
    for (uint32_t i = 0; i < b->key_cap; i++) {
        cg__conn *c = b->keys[i];
        while (c != NULL) {
            cg__conn *next = c->key_next;
            uint32_t slot = (c->key_hash >> 5) & (cap - 1);
            c->key_next = t[slot];
            t[slot] = c;
            c = next;
        }
    }
    mg_free(b->keys);
    b->keys = t;
    b->key_cap = cap;
    return MG_OK;
}

cg__conn *cg__key_find(cg_gateway *gw, const char *key)
{
    size_t len = strlen(key);
    uint32_t h = gw_hash(key, len);
    cg__bucket *b = bucket_of(gw, h);
    if (b->key_cap == 0)
        return NULL;
    for (cg__conn *c = b->keys[(h >> 5) & (b->key_cap - 1)]; c != NULL; c = c->key_next)
        if (c->key_hash == h && strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

static int bucket_add(cg_gateway *gw, cg__conn *c)
{
    cg__bucket *b = bucket_of(gw, c->key_hash);
    if (b->key_count >= b->key_cap / 2 + b->key_cap / 4 && bucket_grow(b) != MG_OK)
        return MG_ENOMEM;
    uint32_t slot = (c->key_hash >> 5) & (b->key_cap - 1);
    c->key_next = b->keys[slot];
    b->keys[slot] = c;
    b->key_count++;
    mg_list_push(&b->conns, &c->bucket_link);
    c->in_bucket = 1;
    return MG_OK;
}

static void bucket_remove(cg_gateway *gw, cg__conn *c)
{
    if (!c->in_bucket)
        return;
    cg__bucket *b = bucket_of(gw, c->key_hash);
    cg__conn **pp = &b->keys[(c->key_hash >> 5) & (b->key_cap - 1)];
    while (*pp != c)
        pp = &(*pp)->key_next;
    *pp = c->key_next;
    c->key_next = NULL;
    b->key_count--;
    mg_list_remove(&c->bucket_link);
    c->in_bucket = 0;
}

/* ---- output queue -------------------------------------------------------------------------- */

static void conn_write_done(uv_write_t *req, int status);

static uint32_t q_index(const cg__conn *c, uint32_t k)
{
    return (c->q_head + k) % CG_QUEUE_SLOTS;
}

/* Starts one gathered write of everything queued, unless a write is in flight. */
static void conn_flush(cg__conn *c)
{
    if (c->q_inflight > 0 || c->q_count == 0 || c->state == CG__CLOSING)
        return;
    cg_gateway *gw = c->gw;
    uv_buf_t bufs[CG_QUEUE_SLOTS];
    for (uint32_t k = 0; k < c->q_count; k++) {
        mg_buf *b = c->q[q_index(c, k)];
        uint32_t off = k == 0 ? c->q_off : 0;
        bufs[k] = uv_buf_init((char *)mg_buf_data(b) + off, (unsigned)(mg_buf_len(b) - off));
    }
    uv_write_t *req = mg_freelist_get(&gw->write_reqs);
    if (req == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    req->data = c;
    int rc = uv_write(req, (uv_stream_t *)&c->tcp, bufs, c->q_count, conn_write_done);
    if (rc != 0) {
        mg_freelist_put(&gw->write_reqs, req);
        cg__conn_close(c, CG__REASON_WRITE_ERROR);
        return;
    }
    c->q_inflight = (uint8_t)c->q_count;
    c->refs++;
}

static void q_release_head(cg__conn *c, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = q_index(c, 0);
        mg_buf *b = c->q[i];
        c->q_bytes -= (uint32_t)(mg_buf_len(b) - c->q_off);
        c->q_off = 0;
        c->q_drop_mask &= ~(1u << i);
        mg_buf_unref(b);
        c->q[i] = NULL;
        c->q_head = (uint8_t)((c->q_head + 1) % CG_QUEUE_SLOTS);
        c->q_count--;
    }
}

static void conn_unref(cg__conn *c);

static void conn_write_done(uv_write_t *req, int status)
{
    cg__conn *c = req->data;
    cg_gateway *gw = c->gw;
    mg_freelist_put(&gw->write_reqs, req);
    uint32_t n = c->q_inflight;
    c->q_inflight = 0;
    if (c->state != CG__CLOSING) {
        if (status < 0) {
            cg__conn_close(c, CG__REASON_WRITE_ERROR);
        } else {
            q_release_head(c, n);
            conn_flush(c);
        }
    }
    conn_unref(c);
}

/* Removes queued entry k (not in flight), shifting the later ones down. */
static void q_drop_at(cg__conn *c, uint32_t k)
{
    MG_ASSERT(k >= c->q_inflight && k < c->q_count);
    uint32_t i = q_index(c, k);
    mg_buf *b = c->q[i];
    c->q_bytes -= (uint32_t)mg_buf_len(b);
    mg_buf_unref(b);
    for (uint32_t j = k; j + 1 < c->q_count; j++) {
        uint32_t to = q_index(c, j), from = q_index(c, j + 1);
        c->q[to] = c->q[from];
        if (c->q_drop_mask & (1u << from))
            c->q_drop_mask |= 1u << to;
        else
            c->q_drop_mask &= ~(1u << to);
    }
    uint32_t last = q_index(c, c->q_count - 1);
    c->q[last] = NULL;
    c->q_drop_mask &= ~(1u << last);
    c->q_count--;
}

/* Drops the oldest droppable entry not in flight; false when there is none. */
static bool q_drop_oldest(cg__conn *c)
{
    for (uint32_t k = c->q_inflight; k < c->q_count; k++) {
        if (c->q_drop_mask & (1u << q_index(c, k))) {
            q_drop_at(c, k);
            return true;
        }
    }
    return false;
}

/* Sends frame to c: written at once when nothing waits, else queued (one new reference).
 * droppable: a chat frame the soft limit may drop (replies are not). Returns false when the
 * connection was closed (hard limit, write error). */
bool cg__conn_send(cg__conn *c, mg_buf *frame, bool droppable)
{
    cg_gateway *gw = c->gw;
    if (c->state == CG__CLOSING)
        return false;
    size_t len = mg_buf_len(frame);
    size_t off = 0;
    if (c->q_count == 0) {
        uv_buf_t b = uv_buf_init((char *)mg_buf_data(frame), (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == (int)len) {
            gw->writes_direct++;
            return true;
        }
        if (n < 0 && n != UV_EAGAIN) {
            cg__conn_close(c, CG__REASON_WRITE_ERROR);
            return false;
        }
        if (n > 0)
            off = (size_t)n;
    }
    /* Make room: the soft limit drops the oldest chat frames not yet being written. */
    while (c->q_count == CG_QUEUE_SLOTS ||
           (droppable && c->q_bytes + (len - off) > gw->soft_bytes)) {
        if (!q_drop_oldest(c))
            break;
        gw->dropped++;
        mg_counter_inc(gw->m_dropped);
    }
    if (c->q_count == CG_QUEUE_SLOTS || c->q_bytes + (len - off) > gw->hard_bytes) {
        if (droppable && off == 0 && c->q_count > 0) {
            /* The new chat frame itself is the oldest droppable thing left. */
            gw->dropped++;
            mg_counter_inc(gw->m_dropped);
            return true;
        }
        cg__conn_close(c, CG__REASON_SLOW_CONSUMER);
        return false;
    }
    uint32_t i = q_index(c, c->q_count);
    c->q[i] = mg_buf_ref(frame);
    if (droppable && off == 0)
        c->q_drop_mask |= 1u << i;
    else
        c->q_drop_mask &= ~(1u << i);
    if (c->q_count == 0)
        c->q_off = (uint32_t)off;
    c->q_count++;
    c->q_bytes += (uint32_t)(len - off);
    conn_flush(c);
    return c->state != CG__CLOSING;
}

/* Sends one packet built for c alone (a reply). WebSocket connections get it in a frame. */
bool cg__conn_reply(cg__conn *c, uint32_t op, uint16_t ver, uint32_t seq, const void *body,
                    size_t body_len)
{
    uint8_t head[CG_WS_SERVER_HEADER_BYTES_MAX];
    size_t hdr = c->kind == CG__WS
                     ? cg_ws_frame_header(CG_WS_OP_BINARY, CG_PACKET_HEADER_BYTES + body_len, head)
                     : 0;
    mg_buf *b = mg_buf_new(hdr + CG_PACKET_HEADER_BYTES + body_len);
    if (b == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return false;
    }
    uint8_t *p = mg_buf_data(b);
    memcpy(p, head, hdr);
    size_t written = 0;
    int rc = cg_packet_encode(ver, op, seq, body, body_len, p + hdr,
                              CG_PACKET_HEADER_BYTES + body_len, &written);
    MG_ASSERT(rc == MG_OK);
    mg_buf_set_len(b, hdr + written);
    bool ok = cg__conn_send(c, b, false);
    mg_buf_unref(b);
    return ok;
}

/* Writes raw bytes (a handshake answer, a WebSocket control frame). */
bool cg__conn_send_raw(cg__conn *c, const void *bytes, size_t len)
{
    mg_buf *b = mg_buf_new_copy(bytes, len);
    if (b == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return false;
    }
    bool ok = cg__conn_send(c, b, false);
    mg_buf_unref(b);
    return ok;
}

/* ---- connection life ------------------------------------------------------------------------ */

static void conn_free(cg__conn *c)
{
    cg_gateway *gw = c->gw;
    for (uint32_t k = 0; k < c->q_count; k++)
        mg_buf_unref(c->q[q_index(c, k)]);
    mg_free(c->in);
    mg_free(c->key);
    mg_free(c->accepts);
    cg_ws_conn_fini(&c->ws);
    mg_free(c);
    MG_ASSERT(gw->conn_handles > 0);
    gw->conn_handles--;
    cg__gateway_maybe_closed(gw);
}

static void conn_unref(cg__conn *c)
{
    MG_ASSERT(c->refs > 0);
    if (--c->refs == 0)
        conn_free(c);
}

static void conn_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

void cg__conn_close(cg__conn *c, int reason)
{
    if (c->state == CG__CLOSING)
        return;
    cg_gateway *gw = c->gw;
    int prev = c->state;
    c->state = CG__CLOSING;
    if (c->resume != NULL)
        cg__resume_cancel(c, false);
    cg__conn_leave(c);
    bucket_remove(gw, c);
    mg_list_remove(&c->wait_link);
    if (prev == CG__LIVE || prev == CG__RESUMING) {
        MG_ASSERT(gw->live_count > 0);
        gw->live_count--;
    }
    MG_ASSERT(gw->conn_count > 0);
    gw->conn_count--;
    mg_gauge_set(gw->m_conns[c->kind], (double)--gw->conns_by_kind[c->kind]);
    if (reason >= 0 && reason < CG__REASON_COUNT)
        mg_counter_inc(gw->m_closed[reason]);
    if (reason != CG__REASON_PEER_CLOSED && reason != CG__REASON_SHUTDOWN)
        MG_INFO_LIMITED("chat gateway: closed %s connection from %s: %s",
                        c->kind == CG__WS ? "WebSocket" : "TCP", c->peer, cg__reason_name(reason));
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

/* Closes after the client was told why: refusal replies are small and go out with
 * uv_try_write in cg__conn_send before the close (what the kernel did not take is lost with the
 * connection, as the peer is being refused anyway). */
static void conn_refuse(cg__conn *c, int reason, const char *why)
{
    if (why != NULL)
        MG_INFO_LIMITED("chat gateway: refusing %s: %s", c->peer, why);
    cg__conn_close(c, reason);
}

/* ---- client packets ------------------------------------------------------------------------- */

/* A packet from a live connection: its idle deadline starts again (the tail of gw->live). Before
 * auth nothing moves the deadline, which counts from the accept (gw->waiting stays in accept
 * order). */
static void conn_touch(cg__conn *c)
{
    cg_gateway *gw = c->gw;
    if (c->state != CG__LIVE && c->state != CG__RESUMING)
        return;
    c->last_rx_ms = gw_now_ms(gw);
    mg_list_remove(&c->wait_link);
    mg_list_push(&gw->live, &c->wait_link);
}

static void conn_make_key(cg_gateway *gw, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s-%" PRIu64, gw->id, ++gw->key_counter);
}

static void handle_auth(cg__conn *c, const cg_packet *pk)
{
    cg_gateway *gw = c->gw;
    cg_auth *a = &gw->auth_scratch;
    const char *why = NULL;
    char body[CG_AUTH_REPLY_BODY_BYTES];
    size_t n = 0;
    int rc = cg_auth_parse(pk->body, pk->body_len, a, &why);
    if (rc != MG_OK) {
        if (why == NULL)
            why = mg_strerror(rc);
        if (cg_auth_reply_refusal(why, body, sizeof(body), &n) == MG_OK)
            cg__conn_reply(c, CG_OP_AUTH_REPLY, CG_VER_INT, pk->seq, body, n);
        mg_counter_inc(gw->m_auth_refused);
        conn_refuse(c, CG__REASON_AUTH_REFUSED, why);
        return;
    }
    char made[CG_AUTH_KEY_BYTES_MAX + 1];
    const char *key = a->key;
    size_t key_len = a->key_len;
    if (key_len == 0) {
        conn_make_key(gw, made, sizeof(made));
        key = made;
        key_len = strlen(made);
    }
    cg__conn *old = cg__key_find(gw, key);
    if (old != NULL)
        cg__conn_close(old, CG__REASON_REPLACED);
    c->key = mg_malloc(key_len + 1);
    if (c->key == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    memcpy(c->key, key, key_len);
    c->key[key_len] = '\0';
    c->key_hash = gw_hash(c->key, key_len);
    c->mid = a->mid;
    c->dialect = (uint8_t)a->dialect;
    c->protover = a->protover;
    c->positions = a->positions || a->has_last_id;
    c->accept_all = a->dialect == CG_DIALECT_BILIBILI;
    if (a->accepts.count > 0) {
        c->accepts = mg_malloc(a->accepts.count * sizeof(uint32_t));
        if (c->accepts == NULL) {
            cg__conn_close(c, CG__REASON_NO_MEMORY);
            return;
        }
        memcpy(c->accepts, a->accepts.ops, a->accepts.count * sizeof(uint32_t));
        c->accept_count = (uint16_t)a->accepts.count;
    }
    if (bucket_add(gw, c) != MG_OK || cg__conn_join(c, a->room.text) != MG_OK) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    mg_list_remove(&c->wait_link);
    c->last_rx_ms = gw_now_ms(gw); /* the idle deadline starts at auth */
    mg_list_push(&gw->live, &c->wait_link);
    gw->live_count++;
    mg_counter_inc(gw->m_auth_ok[c->dialect == CG_DIALECT_BILIBILI ? 1 : 0]);
    if (a->has_last_id) {
        c->state = CG__RESUMING;
        cg__resume_start(c, &a->last_id, pk->seq); /* replies when it knows "recovered" */
        return;
    }
    c->state = CG__LIVE;
    if (cg_auth_reply_ok(body, sizeof(body), &n) == MG_OK)
        cg__conn_reply(c, CG_OP_AUTH_REPLY, CG_VER_INT, pk->seq, body, n);
}

static void handle_change_room(cg__conn *c, const cg_packet *pk)
{
    cg_room room;
    const char *why = NULL;
    if (cg_room_parse(pk->body, pk->body_len, &room, &why) != MG_OK) {
        conn_refuse(c, CG__REASON_BAD_PACKET, why);
        return;
    }
    if (c->resume != NULL)
        cg__resume_cancel(c, true);
    c->state = CG__LIVE;
    c->has_floor = 0; /* a resume's floor is its old room's */
    cg__conn_leave(c);
    if (cg__conn_join(c, room.text) != MG_OK) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    cg__conn_reply(c, CG_OP_CHANGE_ROOM_REPLY, CG_VER_INT, pk->seq, room.text, room.len);
}

static void handle_ops(cg__conn *c, const cg_packet *pk, bool add)
{
    cg_ops ops;
    const char *why = NULL;
    if (cg_ops_parse(pk->body, pk->body_len, &ops, &why) != MG_OK) {
        conn_refuse(c, CG__REASON_BAD_PACKET, why);
        return;
    }
    uint32_t merged[CG_ACCEPT_OPS_MAX];
    size_t m = 0;
    for (uint32_t i = 0; i < c->accept_count; i++) {
        bool removed = false;
        for (size_t j = 0; !add && j < ops.count; j++)
            removed |= ops.ops[j] == c->accepts[i];
        if (!removed && m < CG_ACCEPT_OPS_MAX)
            merged[m++] = c->accepts[i];
    }
    for (size_t j = 0; add && j < ops.count; j++) {
        bool have = false;
        for (size_t i = 0; i < m; i++)
            have |= merged[i] == ops.ops[j];
        if (!have && m < CG_ACCEPT_OPS_MAX)
            merged[m++] = ops.ops[j];
    }
    uint32_t *copy = m > 0 ? mg_malloc(m * sizeof(uint32_t)) : NULL;
    if (m > 0 && copy == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    if (m > 0)
        memcpy(copy, merged, m * sizeof(uint32_t));
    mg_free(c->accepts);
    c->accepts = copy;
    c->accept_count = (uint16_t)m;
    cg__conn_reply(c, add ? CG_OP_SUB_REPLY : CG_OP_UNSUB_REPLY, CG_VER_INT, pk->seq, pk->body,
                   pk->body_len);
}

uint32_t cg__room_online(cg_gateway *gw, const cg__room *r)
{
    if (r == NULL)
        return 0;
    return r->count + cg__online_remote(gw, r->name);
}

/* One whole packet from a client. */
static void handle_packet(cg__conn *c, const cg_packet *pk)
{
    cg_gateway *gw = c->gw;
    gw->packets_in++;
    if (c->state == CG__AUTH) {
        if (pk->op != CG_OP_AUTH) {
            conn_refuse(c, CG__REASON_NOT_AUTH_FIRST, "the first packet must be auth (op 7)");
            return;
        }
        handle_auth(c, pk);
        return;
    }
    switch (pk->op) {
    case CG_OP_HEARTBEAT: {
        uint8_t body[CG_HEARTBEAT_REPLY_BODY_BYTES];
        cg_heartbeat_reply_body(cg__room_online(gw, c->room), body);
        cg__conn_reply(c, CG_OP_HEARTBEAT_REPLY, CG_VER_INT, pk->seq, body, sizeof(body));
        mg_counter_inc(gw->m_heartbeats);
        return;
    }
    case CG_OP_CHANGE_ROOM:
        handle_change_room(c, pk);
        return;
    case CG_OP_SUB:
    case CG_OP_UNSUB:
        handle_ops(c, pk, pk->op == CG_OP_SUB);
        return;
    case CG_OP_HANDSHAKE:
    case CG_OP_SEND_MSG:
        /* Known client ops a gateway of GOIM's answers elsewhere (its logic service): taken and
         * counted, never an error. Clients send chat through the push API. */
        mg_counter_inc(gw->m_ignored_ops);
        return;
    default: {
        char why[64];
        snprintf(why, sizeof(why), "op %" PRIu32 " (%s) is not one a client sends", pk->op,
                 cg_op_name(pk->op));
        conn_refuse(c, CG__REASON_UNKNOWN_OP, why);
        return;
    }
    }
}

/* Handles the whole packets at p[0, n) (a WebSocket message: they must be whole). */
static void handle_packets_whole(cg__conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    for (uint32_t i = 0; off < n && i < CG_BATCH_PACKETS_MAX && c->state != CG__CLOSING; i++) {
        size_t plen = 0;
        int rc = cg_packet_size(p + off, n - off, c->gw->body_bytes_max, &plen);
        if (rc == MG_OK && plen > n - off)
            rc = MG_EAGAIN;
        if (rc != MG_OK) {
            conn_refuse(c, rc == MG_ELIMIT ? CG__REASON_OVERSIZED : CG__REASON_BAD_PACKET,
                        rc == MG_EAGAIN   ? "a WebSocket message ends inside a packet"
                        : rc == MG_ELIMIT ? "a packet body over the bound"
                                          : "a malformed packet header");
            return;
        }
        cg_packet pk;
        if (cg_packet_decode(p + off, plen, &pk) != MG_OK) {
            conn_refuse(c, CG__REASON_BAD_PACKET, "a malformed packet");
            return;
        }
        handle_packet(c, &pk);
        off += plen;
    }
    if (off < n && c->state != CG__CLOSING)
        conn_refuse(c, CG__REASON_BAD_PACKET, "too many packets in one WebSocket message");
}

/* TCP: handles every whole packet at the head of p[0, n); returns the bytes used. */
static size_t handle_tcp_bytes(cg__conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n && c->state != CG__CLOSING) {
        size_t plen = 0;
        int rc = cg_packet_size(p + off, n - off, c->gw->body_bytes_max, &plen);
        if (rc == MG_EAGAIN)
            break;
        if (rc != MG_OK) {
            conn_refuse(c, rc == MG_ELIMIT ? CG__REASON_OVERSIZED : CG__REASON_BAD_PACKET,
                        rc == MG_ELIMIT ? "a packet body over the bound"
                                        : "a malformed packet header (packLen or headerLen)");
            return n;
        }
        if (plen > n - off)
            break;
        cg_packet pk;
        if (cg_packet_decode(p + off, plen, &pk) != MG_OK) {
            conn_refuse(c, CG__REASON_BAD_PACKET, "a malformed packet");
            return n;
        }
        conn_touch(c);
        handle_packet(c, &pk);
        off += plen;
    }
    return off;
}

/* ---- WebSocket ------------------------------------------------------------------------------ */

static int ws_message_done(void *user, unsigned opcode, uint8_t *data, size_t len)
{
    cg__conn *c = user;
    (void)opcode; /* browsers' GOIM clients send binary; a text message is taken as bytes too */
    conn_touch(c);
    handle_packets_whole(c, data, len);
    return c->state == CG__CLOSING ? MG_ECLOSED : MG_OK;
}

static void ws_reply_ready(void *user, const uint8_t *frame, size_t len)
{
    cg__conn_send_raw(user, frame, len);
}

static void ws_close_done(void *user, uint16_t code, const char *reason, size_t reason_len,
                          bool by_peer)
{
    cg__conn *c = user;
    if (by_peer && (code == CG_WS_CLOSE_NORMAL || code == CG_WS_CLOSE_GOING_AWAY ||
                    code == CG_WS_CLOSE_NO_STATUS)) {
        cg__conn_close(c, CG__REASON_PEER_CLOSED);
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "WebSocket close %u (%s)%s%.*s", (unsigned)code,
             cg_ws_close_name(code), reason_len ? ": " : "", (int)reason_len, reason ? reason : "");
    conn_refuse(c, CG__REASON_BAD_WEBSOCKET, why);
}

const cg_ws_config cg__ws_config = {
    .events = { .message_done = ws_message_done,
                .reply_ready = ws_reply_ready,
                .close_done = ws_close_done },
    .message_bytes_max = CG_WS_MESSAGE_BYTES_DEFAULT,
};

/* WebSocket: handshake, then frames. Returns the bytes used. */
static size_t handle_ws_bytes(cg__conn *c, uint8_t *p, size_t n)
{
    size_t used = 0;
    if (c->state == CG__HANDSHAKE) {
        cg_ws_handshake hs;
        int rc = cg_ws_handshake_parse(p, n, &hs);
        if (rc == MG_EAGAIN)
            return 0;
        uint8_t resp[CG_WS_RESPONSE_BYTES_MAX];
        size_t resp_len = 0;
        if (rc != MG_OK) {
            if (cg_ws_response_refuse(hs.status, hs.reason, resp, sizeof(resp), &resp_len) == MG_OK)
                cg__conn_send_raw(c, resp, resp_len);
            conn_refuse(c, CG__REASON_BAD_HANDSHAKE, hs.reason);
            return n;
        }
        if (hs.path_len != 4 || memcmp(hs.path, "/sub", 4) != 0) {
            if (cg_ws_response_refuse(404, "the chat gateway serves WebSocket at /sub", resp,
                                      sizeof(resp), &resp_len) == MG_OK)
                cg__conn_send_raw(c, resp, resp_len);
            conn_refuse(c, CG__REASON_BAD_HANDSHAKE, "a WebSocket path other than /sub");
            return n;
        }
        if (cg_ws_response_accept(&hs, resp, sizeof(resp), &resp_len) != MG_OK ||
            !cg__conn_send_raw(c, resp, resp_len))
            return n;
        c->state = CG__AUTH;
        cg_ws_conn_init(&c->ws, &cg__ws_config, c);
        used = hs.request_bytes;
    }
    if (used < n && c->state != CG__CLOSING) {
        size_t consumed = 0;
        int rc = cg_ws_feed(&c->ws, p + used, n - used, &consumed);
        if (rc != MG_OK && c->state != CG__CLOSING) {
            if (rc == MG_ENOMEM)
                cg__conn_close(c, CG__REASON_NO_MEMORY);
            else
                conn_refuse(c, CG__REASON_BAD_WEBSOCKET, "a bad WebSocket frame");
            return n;
        }
        used += consumed;
    }
    return used;
}

/* ---- reading -------------------------------------------------------------------------------- */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cg__conn *c = h->data;
    cg_gateway *gw = c->gw;
    *buf = uv_buf_init((char *)gw->rbuf, CG_READ_BUFFER_BYTES);
}

static size_t conn_in_max(const cg__conn *c)
{
    return c->kind == CG__WS ? CG_WS_MESSAGE_BYTES_DEFAULT + CG_WS_HANDSHAKE_BYTES_MAX
                             : CG_PACKET_HEADER_BYTES + c->gw->body_bytes_max;
}

static size_t conn_handle(cg__conn *c, uint8_t *p, size_t n)
{
    return c->kind == CG__WS ? handle_ws_bytes(c, p, n) : handle_tcp_bytes(c, p, n);
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cg__conn *c = s->data;
    (void)buf;
    if (nread == 0 || c->state == CG__CLOSING)
        return;
    if (nread < 0) {
        cg__conn_close(c, nread == UV_EOF ? CG__REASON_PEER_CLOSED : CG__REASON_READ_ERROR);
        return;
    }
    c->refs++; /* the handlers may close c */
    uint8_t *p = c->gw->rbuf;
    size_t n = (size_t)nread;
    if (c->in_len > 0) {
        /* Complete the partial packet or frame kept from the last read. The kept bytes are at
         * most conn_in_max (checked below when they were kept) and a read at most
         * CG_READ_BUFFER_BYTES, so this is bounded; the new bytes may hold whole packets after
         * the partial one, and only what is left over after handling them is checked. */
        size_t need = c->in_len + n;
        if (need > c->in_cap) {
            uint8_t *q = mg_realloc(c->in, need);
            if (q == NULL) {
                cg__conn_close(c, CG__REASON_NO_MEMORY);
                conn_unref(c);
                return;
            }
            c->in = q;
            c->in_cap = (uint32_t)need;
        }
        memcpy(c->in + c->in_len, p, n);
        c->in_len = (uint32_t)need;
        p = c->in;
        n = need;
    }
    size_t used = conn_handle(c, p, n);
    if (c->state != CG__CLOSING) {
        size_t rest = n - used;
        if (rest == 0) {
            mg_free(c->in);
            c->in = NULL;
            c->in_len = c->in_cap = 0;
        } else if (rest > conn_in_max(c)) {
            conn_refuse(c, CG__REASON_OVERSIZED, "a packet or frame over the bound");
        } else if (p == c->in) {
            memmove(c->in, c->in + used, rest);
            c->in_len = (uint32_t)rest;
        } else {
            uint8_t *q = mg_malloc(rest);
            if (q == NULL) {
                cg__conn_close(c, CG__REASON_NO_MEMORY);
            } else {
                memcpy(q, p + used, rest);
                mg_free(c->in);
                c->in = q;
                c->in_len = c->in_cap = (uint32_t)rest;
            }
        }
    }
    conn_unref(c);
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void on_client(cg_gateway *gw, int fd, const struct sockaddr *addr, int kind)
{
    if (gw->closing || gw->conn_count >= gw->connections_max) {
        close(fd);
        mg_counter_inc(gw->m_refused_full);
        MG_WARN_LIMITED("chat gateway: %u connections open, the limit: refusing another",
                        (unsigned)gw->conn_count);
        return;
    }
    cg__conn *c = mg_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        MG_WARN_LIMITED("chat gateway: out of memory for a connection");
        return;
    }
    c->gw = gw;
    c->kind = (uint8_t)kind;
    c->state = kind == CG__WS ? CG__HANDSHAKE : CG__AUTH;
    c->refs = 1;
    mg_list_init(&c->wait_link);
    mg_list_init(&c->room_link);
    mg_list_init(&c->bucket_link);
    uv_tcp_init(gw->loop, &c->tcp);
    c->tcp.data = c;
    gw->conn_handles++;
    gw->conn_count++;
    mg_gauge_set(gw->m_conns[kind], (double)++gw->conns_by_kind[kind]);
    mg_counter_inc(gw->m_accepted[kind]);
    c->last_rx_ms = gw_now_ms(gw);
    mg_list_push(&gw->waiting, &c->wait_link);
    mg_sockaddr_format(addr, c->peer, sizeof(c->peer));
    if (addr != NULL && addr->sa_family == AF_INET)
        c->ip4 = ((const struct sockaddr_in *)addr)->sin_addr.s_addr;
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        cg__conn_close(c, CG__REASON_READ_ERROR);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
    if (rc != 0)
        cg__conn_close(c, CG__REASON_READ_ERROR);
}

static void on_tcp_client(void *arg, int fd, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    on_client(arg, fd, addr, CG__TCP);
}

static void on_ws_client(void *arg, int fd, const struct sockaddr *addr, socklen_t len)
{
    (void)len;
    on_client(arg, fd, addr, CG__WS);
}

/* ---- timers: auth deadline, idle connections, Job links ------------------------------------- */

static void on_sweep(uv_timer_t *t)
{
    cg_gateway *gw = t->data;
    int64_t now = gw_now_ms(gw);
    /* Both lists are in deadline order: stop at the first connection not due. */
    for (uint32_t i = 0; i < CG_CONNECTIONS_MAX && !mg_list_empty(&gw->waiting); i++) {
        cg__conn *c = MG_CONTAINER_OF(gw->waiting.next, cg__conn, wait_link);
        if (now - c->last_rx_ms < (int64_t)gw->auth_timeout_ms)
            break;
        conn_refuse(c, CG__REASON_NO_AUTH, "no auth within the timeout");
    }
    for (uint32_t i = 0; i < CG_CONNECTIONS_MAX && !mg_list_empty(&gw->live); i++) {
        cg__conn *c = MG_CONTAINER_OF(gw->live.next, cg__conn, wait_link);
        if (now - c->last_rx_ms < (int64_t)gw->idle_timeout_ms)
            break;
        cg__conn_close(c, CG__REASON_IDLE);
    }
    cg__links_sweep(gw, now);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static void metrics_register(cg_gateway *gw, mg_metrics *reg)
{
    if (reg == NULL)
        return;
    mg_metric_family *f = mg_metrics_gauge_family(reg, "magnetar_chat_gateway_connections",
                                                  "Client connections open, by transport", 1,
                                                  (const char *[]){ "transport" });
    mg_metric_family *a = mg_metrics_counter_family(reg, "magnetar_chat_gateway_accepted_total",
                                                    "Client connections accepted, by transport", 1,
                                                    (const char *[]){ "transport" });
    static const char *const kinds[] = { "tcp", "websocket" };
    for (int k = 0; k < 2; k++) {
        gw->m_conns[k] = f ? mg_metrics_gauge(f, (const char *[]){ kinds[k] }) : NULL;
        gw->m_accepted[k] = a ? mg_metrics_counter(a, (const char *[]){ kinds[k] }) : NULL;
    }
    mg_metric_family *c = mg_metrics_counter_family(reg, "magnetar_chat_gateway_closed_total",
                                                    "Client connections closed, by reason", 1,
                                                    (const char *[]){ "reason" });
    for (int r = 0; r < CG__REASON_COUNT; r++)
        gw->m_closed[r] = c ? mg_metrics_counter(c, (const char *[]){ cg__reason_name(r) }) : NULL;
    mg_metric_family *au =
        mg_metrics_counter_family(reg, "magnetar_chat_gateway_auth_total",
                                  "Accepted auths, by dialect", 1, (const char *[]){ "dialect" });
    gw->m_auth_ok[0] = au ? mg_metrics_counter(au, (const char *[]){ "goim" }) : NULL;
    gw->m_auth_ok[1] = au ? mg_metrics_counter(au, (const char *[]){ "bilibili" }) : NULL;
    gw->m_auth_refused = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_auth_refused_total", "Auth packets refused");
    gw->m_heartbeats = mg_metrics_unlabelled_counter(reg, "magnetar_chat_gateway_heartbeats_total",
                                                     "Heartbeats answered");
    gw->m_ignored_ops = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_ignored_ops_total",
        "Client packets of ops the gateway takes without acting (handshake, send message)");
    gw->m_dropped = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_dropped_total",
        "Chat frames dropped from slow connections' queues (the soft limit)");
    gw->m_delivered = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_delivered_total",
        "Chat messages handed to client connections (one per message and recipient)");
    gw->m_duplicates = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_duplicates_total",
        "Pushed messages dropped as already delivered (a Job's redelivery)");
    gw->m_pushes = mg_metrics_unlabelled_counter(reg, "magnetar_chat_gateway_pushes_total",
                                                 "Pushes received from Job workers");
    gw->m_refused_full = mg_metrics_unlabelled_counter(
        reg, "magnetar_chat_gateway_refused_total",
        "Client connections refused at accept: the connection limit was reached");
    gw->m_links = mg_metrics_unlabelled_gauge(reg, "magnetar_chat_gateway_job_links",
                                              "Job worker links open");
}

int cg_gateway_create(uv_loop_t *loop, const cg_gateway_opts *opts, cg_gateway **out)
{
    cg_gateway_opts o = opts ? *opts : (cg_gateway_opts){ 0 };
    if (o.buckets > CG_BUCKETS_MAX || o.topics > CG_CHAT_TOPICS_MAX ||
        (o.queue_soft_bytes && o.queue_hard_bytes && o.queue_soft_bytes >= o.queue_hard_bytes) ||
        (o.body_bytes_max > CG_PACKET_BODY_BYTES_ABS_MAX))
        return MG_EINVAL;
    cg_gateway *gw = mg_calloc(1, sizeof(*gw));
    if (gw == NULL)
        return MG_ENOMEM;
    gw->loop = loop;
    gw->rbuf = mg_malloc(CG_READ_BUFFER_BYTES);
    gw->merge_msgs = mg_malloc(CG_FANOUT_MERGE_MESSAGES_MAX * sizeof(cg__msg));
    gw->bucket_count = o.buckets ? o.buckets : CG_BUCKETS_DEFAULT;
    gw->buckets = mg_calloc(gw->bucket_count, sizeof(cg__bucket));
    snprintf(gw->bind, sizeof(gw->bind), "%s", o.bind_address ? o.bind_address : "0.0.0.0");
    snprintf(gw->advertised, sizeof(gw->advertised), "%s",
             o.advertised_address ? o.advertised_address : "127.0.0.1");
    if (o.id != NULL)
        snprintf(gw->id, sizeof(gw->id), "%s", o.id);
    if (o.service_url != NULL) {
        gw->service_url = mg_malloc(strlen(o.service_url) + 1);
        if (gw->service_url != NULL)
            memcpy(gw->service_url, o.service_url, strlen(o.service_url) + 1);
        gw->resume_enabled = gw->service_url != NULL;
    }
    if (gw->rbuf == NULL || gw->buckets == NULL || gw->merge_msgs == NULL ||
        (o.service_url && gw->service_url == NULL)) {
        mg_free(gw->rbuf);
        mg_free(gw->merge_msgs);
        mg_free(gw->buckets);
        mg_free(gw->service_url);
        mg_free(gw);
        return MG_ENOMEM;
    }
    for (uint32_t i = 0; i < gw->bucket_count; i++)
        mg_list_init(&gw->buckets[i].conns);
    gw->ports[0] = o.tcp_port;
    gw->ports[1] = o.ws_port;
    gw->ports[2] = o.push_port;
    gw->mdc = o.mdc;
    gw->topics = o.topics ? o.topics : CG_CHAT_TOPICS_DEFAULT;
    gw->auth_timeout_ms = o.auth_timeout_ms ? o.auth_timeout_ms : CG_AUTH_TIMEOUT_MS_DEFAULT;
    gw->idle_timeout_ms = o.idle_timeout_ms ? o.idle_timeout_ms : CG_IDLE_TIMEOUT_MS_DEFAULT;
    gw->body_bytes_max = o.body_bytes_max ? o.body_bytes_max : CG_PACKET_BODY_BYTES_DEFAULT;
    gw->soft_bytes = o.queue_soft_bytes ? o.queue_soft_bytes : CG_QUEUE_SOFT_BYTES_DEFAULT;
    gw->hard_bytes = o.queue_hard_bytes ? o.queue_hard_bytes : CG_QUEUE_HARD_BYTES_DEFAULT;
    if (gw->soft_bytes >= gw->hard_bytes)
        gw->hard_bytes = gw->soft_bytes * 4;
    gw->connections_max = o.connections_max ? o.connections_max : CG_CONNECTIONS_MAX;
    gw->online_interval_ms =
        o.online_interval_ms ? o.online_interval_ms : CG_ONLINE_INTERVAL_MS_DEFAULT;
    mg_list_init(&gw->waiting);
    mg_list_init(&gw->live);
    mg_list_init(&gw->dirty_rooms);
    mg_list_init(&gw->links);
    mg_freelist_init(&gw->write_reqs, sizeof(uv_write_t), 1024);
    metrics_register(gw, o.metrics);
    *out = gw;
    return MG_OK;
}

static int start_listener(cg_gateway *gw, int which, const char *what, mg_listener_accept_fn fn)
{
    int fd = -1;
    uint16_t port = 0;
    int rc = mg_listen_socket(what, gw->bind, gw->ports[which], 4096, &fd, &port);
    if (rc != MG_OK)
        return rc;
    rc = mg_listener_start(gw->loop, fd, what, fn, gw, &gw->listeners[which]);
    if (rc != MG_OK)
        return rc;
    gw->ports[which] = port;
    return MG_OK;
}

int cg_gateway_start(cg_gateway *gw)
{
    MG_ASSERT(!gw->started);
    gw->started = true;
    uv_timer_init(gw->loop, &gw->sweep);
    gw->sweep.data = gw;
    uv_check_init(gw->loop, &gw->check);
    gw->check.data = gw;
    gw->handles_open = 2;
    int rc = start_listener(gw, 0, "chat-tcp", on_tcp_client);
    if (rc == MG_OK)
        rc = start_listener(gw, 1, "chat-ws", on_ws_client);
    if (rc == MG_OK)
        rc = start_listener(gw, 2, "chat-push", cg__on_link);
    if (rc != MG_OK)
        return rc;
    if (gw->id[0] == '\0')
        snprintf(gw->id, sizeof(gw->id), "%s:%u", gw->advertised, (unsigned)gw->ports[2]);
    uv_timer_start(&gw->sweep, on_sweep, 1000, 1000);
    uv_check_start(&gw->check, cg__rooms_flush);
    if (rc == MG_OK && gw->resume_enabled)
        rc = cg__resume_env_start(gw);
    if (rc == MG_OK)
        rc = cg__online_start(gw);
    MG_INFO("chat gateway %s: TCP %s:%u, WebSocket %s:%u/sub, push %s:%u", gw->id, gw->bind,
            (unsigned)gw->ports[0], gw->bind, (unsigned)gw->ports[1], gw->bind,
            (unsigned)gw->ports[2]);
    return rc;
}

uint16_t cg_gateway_tcp_port(const cg_gateway *gw)
{
    return gw->ports[0];
}

uint16_t cg_gateway_ws_port(const cg_gateway *gw)
{
    return gw->ports[1];
}

uint16_t cg_gateway_push_port(const cg_gateway *gw)
{
    return gw->ports[2];
}

uint32_t cg_gateway_connection_count(const cg_gateway *gw)
{
    return gw->conn_count;
}

static void gateway_free(cg_gateway *gw)
{
    for (uint32_t i = 0; i < gw->room_cap; i++) {
        cg__room *r = gw->room_table[i];
        while (r != NULL) {
            cg__room *next = r->hnext;
            mg_free(r);
            r = next;
        }
    }
    mg_free(gw->room_table);
    for (uint32_t i = 0; i < gw->bucket_count; i++)
        mg_free(gw->buckets[i].keys);
    mg_free(gw->buckets);
    mg_free(gw->streams);
    mg_free(gw->rbuf);
    mg_free(gw->merge_msgs);
    mg_free(gw->service_url);
    mg_freelist_clear(&gw->write_reqs);
    void (*closed)(void *) = gw->closed;
    void *arg = gw->closed_arg;
    mg_free(gw);
    if (closed)
        closed(arg);
}

void cg__gateway_maybe_closed(cg_gateway *gw)
{
    if (gw->closing && gw->conn_handles == 0 && gw->handles_open == 0 && gw->listeners_open == 0 &&
        gw->link_handles == 0 && gw->side_pending == 0)
        gateway_free(gw);
}

static void gw_handle_closed(uv_handle_t *h)
{
    cg_gateway *gw = h->data;
    gw->handles_open--;
    cg__gateway_maybe_closed(gw);
}

static void gw_listener_closed(void *arg)
{
    cg_gateway *gw = arg;
    gw->listeners_open--;
    cg__gateway_maybe_closed(gw);
}

void cg_gateway_close(cg_gateway *gw, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!gw->closing);
    gw->closing = true;
    gw->closed = closed;
    gw->closed_arg = arg;
    for (int i = 0; i < 3; i++) {
        if (gw->listeners[i] != NULL) {
            gw->listeners_open++;
            mg_listener_close(gw->listeners[i], gw_listener_closed, gw);
            gw->listeners[i] = NULL;
        }
    }
    for (uint32_t b = 0; b < gw->bucket_count; b++) {
        for (uint32_t i = 0; i < CG_CONNECTIONS_MAX && !mg_list_empty(&gw->buckets[b].conns); i++)
            cg__conn_close(MG_CONTAINER_OF(gw->buckets[b].conns.next, cg__conn, bucket_link),
                           CG__REASON_SHUTDOWN);
    }
    for (uint32_t i = 0; i < CG_CONNECTIONS_MAX && !mg_list_empty(&gw->waiting); i++)
        cg__conn_close(MG_CONTAINER_OF(gw->waiting.next, cg__conn, wait_link), CG__REASON_SHUTDOWN);
    for (uint32_t i = 0; i < CG_CONNECTIONS_MAX && !mg_list_empty(&gw->live); i++)
        cg__conn_close(MG_CONTAINER_OF(gw->live.next, cg__conn, wait_link), CG__REASON_SHUTDOWN);
    cg__links_close_all(gw);
    cg__online_stop(gw);
    cg__resume_env_stop(gw);
    if (gw->started) {
        uv_close((uv_handle_t *)&gw->sweep, gw_handle_closed);
        uv_close((uv_handle_t *)&gw->check, gw_handle_closed);
    }
    cg__gateway_maybe_closed(gw);
}
