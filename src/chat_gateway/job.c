/*
 * The chat Job worker (declared in job.h, which says what it does and what bounds it).
 *
 * OBJECTS
 *   cg_job       one per worker: the client, one consumer per chat topic, the open room batches
 *                (a map by room and a list in deadline order), the gateways, the pushes in
 *                flight, a merge timer and a tick timer (every CG_JOB_TICK_MS: reconnects,
 *                pings, dead links, retries of the registry and of subscriptions).
 *   cg__msg      a received chat message until it is acknowledged: its consumer and id, and what
 *                a ChatMessage needs (body, op, position, publish time).
 *   cg__batch    a room's open batch (room messages waiting for the merge bound).
 *   cg__push     one ChatPush: its messages, its frame encoded once (an mg_buf every link
 *                shares), and the number of deliveries still waiting for a PushAck.
 *   cg__delivery one push on one gateway, in that gateway's list in push order.
 *   cg__gw       a registered gateway and its link.
 *
 * GATEWAY LINK STATES
 *
 *   RESOLVING --md_get: address--> CONNECTING --connected, Hello sent--> HELLO
 *     ^    |                           |                                     | Rooms reset
 *     |    +--bad or no value--> BAD   | failure, silence, a refused push    v
 *     |                           |    v                                   READY
 *     +--tick: retry time--------DOWN <-------------------------------------+
 *     +--tick: longest backoff---BAD
 *   any state --registration gone--> DROPPED (handles closed, freed once they are)
 *
 * INVARIANTS
 *   1. A message is in exactly one place until it is acknowledged: an open batch, or a push.
 *      unacked_messages counts them all.
 *   2. A push is acknowledged (its messages pc_ack'ed) when its waiting count falls to 0, that
 *      is when every delivery was answered with status 0 or released (the gateway left the
 *      registry, or its room set does not hold the room). Never before.
 *   3. A gateway's deliveries are in push order; a link sends them in that order, at most
 *      CG_JOB_LINK_WINDOW sent and unanswered at a time (sent_unacked; unsent counts the rest,
 *      sent as answers free the window), and after a link failure every unanswered one is sent
 *      again first (sent flags reset).
 *   4. Pushes go out on a link only in READY (after the Rooms reset); the Job sends nothing but
 *      Hello, Ping and Pong before that. Deliveries queued meanwhile for rooms the reset does not
 *      hold are released then (invariant 2).
 *   5. Open batches are ordered by deadline: merge_max_ms is the same for all, so the order in
 *      which they opened is the order of their deadlines; the merge timer is armed for the
 *      first one.
 *   6. A gateway is freed only when its handle is closed, no md_get is pending for it and no
 *      write of its is in flight; the Job only when its client, timers, gateways and metadata
 *      calls are done. The registry watch cannot be cancelled, so its argument is a small
 *      token that outlives the Job and is freed when the watch fires.
 */
#include "chat_gateway/job.h"

#include "chat_gateway/limits.h"
#include "chat_gateway/push.h"
#include "chat_gateway/topics.h"
#include "client/client.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/list.h"
#include "common/log.h"
#include "common/outq.h"
#include "proto/chat.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- a small string map (room sets, open batches) ------------------------------------------- */

typedef struct cg__entry {
    struct cg__entry *next;
    uint32_t hash;
    void *value;
    char key[]; /* NUL-terminated */
} cg__entry;

typedef struct cg__map {
    cg__entry **buckets;
    uint32_t bucket_count; /* a power of two, or 0 before the first insert */
    uint32_t count;
} cg__map;

static cg__entry **cg__map_slot(cg__map *m, const char *key, uint32_t h)
{
    if (m->bucket_count == 0)
        return NULL;
    cg__entry **e = &m->buckets[h & (m->bucket_count - 1)];
    for (uint32_t i = 0; *e != NULL && i <= m->count; i++, e = &(*e)->next)
        if ((*e)->hash == h && strcmp((*e)->key, key) == 0)
            return e;
    return e;
}

static cg__entry *cg__map_get(cg__map *m, const char *key)
{
    cg__entry **e = cg__map_slot(m, key, cg_fnv1a32(key, strlen(key)));
    return e == NULL ? NULL : *e;
}

/* Doubles the bucket array once the map holds as many entries as buckets. */
static int cg__map_grow(cg__map *m)
{
    uint32_t n = m->bucket_count == 0 ? 16 : m->bucket_count * 2;
    cg__entry **b = mg_calloc(n, sizeof(*b));
    if (b == NULL)
        return MG_ENOMEM;
    for (uint32_t i = 0; i < m->bucket_count; i++) {
        for (cg__entry *e = m->buckets[i]; e != NULL;) {
            cg__entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    mg_free(m->buckets);
    m->buckets = b;
    m->bucket_count = n;
    return MG_OK;
}

/* Inserts key (copied) with value, or finds it. MG_OK, MG_ENOMEM. */
static int cg__map_put(cg__map *m, const char *key, void *value, cg__entry **out)
{
    uint32_t h = cg_fnv1a32(key, strlen(key));
    cg__entry **e = cg__map_slot(m, key, h);
    if (e != NULL && *e != NULL) {
        *out = *e;
        return MG_OK;
    }
    if (m->count >= m->bucket_count)
        MG_TRY(cg__map_grow(m));
    size_t len = strlen(key);
    cg__entry *n = mg_malloc(sizeof(*n) + len + 1);
    if (n == NULL)
        return MG_ENOMEM;
    memcpy(n->key, key, len + 1);
    n->hash = h;
    n->value = value;
    e = &m->buckets[h & (m->bucket_count - 1)];
    n->next = *e;
    *e = n;
    m->count++;
    *out = n;
    return MG_OK;
}

static void cg__map_del(cg__map *m, const char *key)
{
    cg__entry **e = cg__map_slot(m, key, cg_fnv1a32(key, strlen(key)));
    if (e == NULL || *e == NULL)
        return;
    cg__entry *d = *e;
    *e = d->next;
    mg_free(d);
    m->count--;
}

static void cg__map_clear(cg__map *m)
{
    for (uint32_t i = 0; i < m->bucket_count; i++) {
        for (cg__entry *e = m->buckets[i]; e != NULL;) {
            cg__entry *next = e->next;
            mg_free(e);
            e = next;
        }
    }
    mg_free(m->buckets);
    memset(m, 0, sizeof(*m));
}

/* --- objects ---------------------------------------------------------------------------------- */

typedef enum cg__job_state {
    CG__JOB_CREATED,
    CG__JOB_RUNNING,
    CG__JOB_CLOSING,
} cg__job_state;

typedef enum cg__gw_state {
    CG__GW_RESOLVING,
    CG__GW_BAD,
    CG__GW_DOWN,
    CG__GW_CONNECTING,
    CG__GW_HELLO,
    CG__GW_READY,
    CG__GW_DROPPED,
} cg__gw_state;

typedef struct cg__topic {
    struct cg_job *job;
    uint32_t index;
    char name[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    pc_consumer *consumer;
    bool subscribing;
    uint64_t retry_at_ms; /* resubscribe after a failure, 0 = not waiting */
} cg__topic;

typedef struct cg__msg {
    cg__topic *topic;
    pc_message_id id;
    int64_t publish_time_ms;
    uint32_t op;
    uint8_t *body;
    size_t body_len;
} cg__msg;

typedef struct cg__batch {
    mg_link link; /* job->batches, in deadline order */
    cg__topic *topic;
    uint64_t deadline_ms;
    cg__msg *msgs;
    uint32_t msg_count;
    size_t bytes;
    char room[];
} cg__batch;

typedef struct cg__push {
    struct cg_job *job;
    mg_link link; /* job->pushes */
    uint64_t push_id;
    Magnetar__Chat__ChatPushKind kind;
    char *room; /* kind room */
    cg__msg *msgs;
    uint32_t msg_count;
    mg_buf *frame;
    uint32_t waiting; /* deliveries not yet answered */
} cg__push;

typedef struct cg__gw cg__gw;

typedef struct cg__delivery {
    mg_link link; /* gw->deliveries, in push order */
    cg__push *push;
    bool sent;
    uint64_t sent_ns;
} cg__delivery;

struct cg__gw {
    struct cg_job *job;
    mg_link link; /* job->gateways */
    cg__gw_state state;
    bool seen;    /* in the latest registry listing */
    bool getting; /* an md_get for it is pending */
    bool tcp_open;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct sockaddr_storage addr;
    mg_outq outq;
    cg_push_decoder dec;
    uint8_t *rbuf;
    bool rooms_all; /* too many rooms to track: every room push goes to it */
    cg__map rooms;
    mg_link deliveries;
    uint32_t sent_unacked; /* deliveries sent on this link and not answered (CG_JOB_LINK_WINDOW) */
    uint32_t unsent;       /* deliveries not sent yet */
    uint32_t backoff_ms;
    uint64_t retry_at_ms;
    uint64_t since_ms;   /* when the current state began */
    uint64_t last_rx_ms; /* when the last frame arrived */
    uint64_t last_ping_ms;
    char push_addr[CG_ADDR_BYTES_MAX];
    char id[];
};

/* The registry watch's argument (invariant 6). */
typedef struct cg__watch_token {
    struct cg_job *job;
} cg__watch_token;

struct cg_job {
    uv_loop_t *loop;
    cg__job_state state;
    md_client *md;
    pc_client *client;
    bool client_open;
    char *subscription;
    char name[CG_JOB_NAME_BYTES_MAX];
    uint32_t merge_max_messages;
    uint32_t merge_max_ms;
    cg__topic *topics;
    uint32_t topic_count;
    bool consuming; /* subscriptions started */
    bool paused;    /* consumers paused for CG_JOB_UNACKED_MESSAGES_MAX */
    uint32_t consumers_closing;

    cg__map batch_by_room;
    mg_link batches;
    mg_link pushes;
    mg_link gateways;
    uint32_t gateway_count;
    uint64_t next_push_id;

    /* Registry. */
    bool listing;     /* an md_children_watch or md_create is pending */
    bool listed_once; /* a listing succeeded */
    uint64_t list_retry_at_ms;
    cg__watch_token *watch;         /* the token of the watch set, NULL when none */
    cg__watch_token *listing_token; /* the token of the listing in flight */
    uint32_t md_pending;            /* metadata calls not yet called back */

    uv_timer_t merge_timer;
    uv_timer_t tick_timer;
    uint32_t handles_open;

    cg_job_stats stats;
    mg_counter *m_received, *m_pushed, *m_acked, *m_malformed;
    mg_gauge *m_pushes_inflight, *m_links_up;
    mg_histogram *m_rtt;

    void (*closed_cb)(void *arg);
    void *closed_arg;
};

static void cg__gw_send_pending(cg__gw *g);
static void cg__gw_fail(cg__gw *g, const char *why);
static void cg__registry_list(cg_job *j);
static void cg__maybe_closed(cg_job *j);
static void cg__maybe_subscribe(cg_job *j);

static uint64_t cg__now_ms(void)
{
    return mg_clock_mono_ms();
}

/* --- acknowledging ---------------------------------------------------------------------------- */

static void cg__msg_free(cg__msg *m)
{
    mg_free(m->body);
    m->body = NULL;
}

/* Lets the consumers go on once in-flight messages fell to half the bound. */
static void cg__unacked_add(cg_job *j, int32_t delta)
{
    j->stats.unacked_messages = (uint32_t)((int64_t)j->stats.unacked_messages + delta);
    if (!j->paused && j->stats.unacked_messages >= CG_JOB_UNACKED_MESSAGES_MAX) {
        j->paused = true;
        for (uint32_t i = 0; i < j->topic_count; i++)
            if (j->topics[i].consumer != NULL)
                pc_consumer_pause(j->topics[i].consumer);
        MG_INFO("chat job %s: %u messages unacknowledged, consumers paused", j->name,
                j->stats.unacked_messages);
    } else if (j->paused && j->stats.unacked_messages <= CG_JOB_UNACKED_MESSAGES_MAX / 2) {
        j->paused = false;
        for (uint32_t i = 0; i < j->topic_count; i++)
            if (j->topics[i].consumer != NULL)
                pc_consumer_resume(j->topics[i].consumer);
    }
}

static void cg__ack(cg_job *j, cg__msg *m)
{
    int rc = pc_ack(m->topic->consumer, &m->id);
    if (rc != MG_OK)
        MG_WARN_LIMITED("chat job %s: ack on %s: %s", j->name, m->topic->name, mg_strerror(rc));
}

/* Frees a push; with acked, its messages are acknowledged first (invariant 2). */
static void cg__push_finish(cg__push *p, bool acked)
{
    cg_job *j = p->job;
    for (uint32_t i = 0; i < p->msg_count; i++) {
        if (acked)
            cg__ack(j, &p->msgs[i]);
        cg__msg_free(&p->msgs[i]);
    }
    if (acked) {
        j->stats.acked_count += p->msg_count;
        mg_counter_add(j->m_acked, p->msg_count);
    }
    mg_list_remove(&p->link);
    j->stats.pushes_inflight--;
    mg_gauge_add(j->m_pushes_inflight, -1);
    if (j->state != CG__JOB_CLOSING)
        cg__unacked_add(j, -(int32_t)p->msg_count);
    mg_buf_unref(p->frame);
    mg_free(p->msgs);
    mg_free(p->room);
    mg_free(p);
}

/* A delivery is over: answered with status 0, or released (its gateway left, or does not hold
 * the room). */
static void cg__delivery_done(cg__delivery *d, bool answered)
{
    cg__push *p = d->push;
    if (answered)
        mg_histogram_observe(p->job->m_rtt, (mg_clock_mono_ns() - d->sent_ns) / 1000);
    mg_list_remove(&d->link);
    mg_free(d);
    MG_ASSERT(p->waiting > 0);
    if (--p->waiting == 0)
        cg__push_finish(p, true);
}

/* --- gateway links ---------------------------------------------------------------------------- */

static void cg__links_up_add(cg_job *j, int delta)
{
    j->stats.links_up = (uint32_t)((int)j->stats.links_up + delta);
    mg_gauge_add(j->m_links_up, delta);
}

static void cg__gw_set_state(cg__gw *g, cg__gw_state s)
{
    if (g->state == CG__GW_READY && s != CG__GW_READY)
        cg__links_up_add(g->job, -1);
    if (s == CG__GW_READY && g->state != CG__GW_READY)
        cg__links_up_add(g->job, 1);
    g->state = s;
    g->since_ms = cg__now_ms();
}

static void cg__gw_maybe_free(cg__gw *g)
{
    if (g->state != CG__GW_DROPPED || g->tcp_open || g->getting ||
        mg_outq_writes_inflight(&g->outq) > 0)
        return;
    cg_job *j = g->job;
    mg_list_remove(&g->link);
    j->gateway_count--;
    j->stats.gateways = j->gateway_count;
    cg_push_decoder_free(&g->dec);
    mg_outq_discard(&g->outq);
    cg__map_clear(&g->rooms);
    mg_free(g->rbuf);
    mg_free(g);
    cg__maybe_closed(j);
}

static void cg__gw_tcp_closed(uv_handle_t *h)
{
    cg__gw *g = h->data;
    g->tcp_open = false;
    mg_outq_discard(&g->outq);
    cg__gw_maybe_free(g);
}

/* Closes the link's socket; what was sent and not answered is sent again on the next link. */
static void cg__gw_close_tcp(cg__gw *g)
{
    if (g->tcp_open && !uv_is_closing((uv_handle_t *)&g->tcp))
        uv_close((uv_handle_t *)&g->tcp, cg__gw_tcp_closed);
    mg_outq_discard(&g->outq);
    cg_push_decoder_free(&g->dec);
    cg_push_decoder_init(&g->dec);
    for (mg_link *l = g->deliveries.next; l != &g->deliveries; l = l->next) {
        cg__delivery *d = MG_CONTAINER_OF(l, cg__delivery, link);
        if (d->sent)
            g->unsent++;
        d->sent = false;
    }
    g->sent_unacked = 0;
}

static void cg__gw_fail(cg__gw *g, const char *why)
{
    if (g->state == CG__GW_DROPPED)
        return;
    MG_WARN_LIMITED("chat job %s: gateway %s (%s): %s; reconnecting in %u ms", g->job->name, g->id,
                    g->push_addr, why, g->backoff_ms);
    cg__gw_close_tcp(g);
    cg__gw_set_state(g, CG__GW_DOWN);
    g->retry_at_ms = cg__now_ms() + g->backoff_ms;
    g->backoff_ms =
        g->backoff_ms * 2 > CG_JOB_BACKOFF_MS_MAX ? CG_JOB_BACKOFF_MS_MAX : g->backoff_ms * 2;
}

/* The gateway left the registry (or the Job closes): its deliveries are released, as if
 * acknowledged when the Job goes on (its clients are gone with it), unacknowledged when the Job
 * closes. */
static void cg__gw_drop(cg__gw *g)
{
    if (g->state == CG__GW_DROPPED)
        return;
    cg_job *j = g->job;
    cg__gw_close_tcp(g);
    cg__gw_set_state(g, CG__GW_DROPPED);
    for (mg_link *l = g->deliveries.next; l != &g->deliveries;) {
        cg__delivery *d = MG_CONTAINER_OF(l, cg__delivery, link);
        l = l->next;
        if (j->state == CG__JOB_CLOSING) {
            mg_list_remove(&d->link);
            mg_free(d);
        } else {
            cg__delivery_done(d, false);
        }
    }
    g->unsent = 0;
    cg__gw_maybe_free(g);
}

static void cg__gw_written(mg_outq *q, int status)
{
    cg__gw *g = q->arg;
    if (status != MG_OK && status != MG_ECANCELED) {
        cg__gw_fail(g, mg_strerror(status));
    } else if (g->state == CG__GW_HELLO || g->state == CG__GW_READY) {
        int rc = mg_outq_flush(&g->outq, (uv_stream_t *)&g->tcp);
        if (rc != MG_OK)
            cg__gw_fail(g, mg_strerror(rc));
    }
    cg__gw_maybe_free(g);
}

/* Queues one frame on the link and starts writing. */
static int cg__gw_write(cg__gw *g, mg_buf *frame)
{
    int rc = mg_outq_push_buf(&g->outq, frame);
    if (rc == MG_OK)
        rc = mg_outq_flush(&g->outq, (uv_stream_t *)&g->tcp);
    return rc;
}

static int cg__gw_write_frame(cg__gw *g, const Magnetar__Chat__ChatFrame *f)
{
    mg_buf *b = NULL;
    int rc = cg_push_frame_encode(f, &b);
    if (rc == MG_OK)
        rc = cg__gw_write(g, b);
    mg_buf_unref(b);
    return rc;
}

static void cg__gw_ping(cg__gw *g, bool pong, uint64_t nonce)
{
    Magnetar__Chat__ChatPing ping = MAGNETAR__CHAT__CHAT_PING__INIT;
    ping.has_nonce = 1;
    ping.nonce = nonce;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    if (pong) {
        f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG;
        f.pong = &ping;
    } else {
        f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PING;
        f.ping = &ping;
    }
    int rc = cg__gw_write_frame(g, &f);
    if (rc != MG_OK)
        cg__gw_fail(g, mg_strerror(rc));
}

/* Whether a room push is for this gateway, as far as the Job knows its rooms. */
static bool cg__gw_wants(cg__gw *g, const cg__push *p)
{
    if (p->kind != MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM || g->state != CG__GW_READY ||
        g->rooms_all)
        return true;
    return cg__map_get(&g->rooms, p->room) != NULL;
}

/* READY: releases the room deliveries the gateway does not want (queued while its rooms were
 * not known), then sends every unsent delivery in order (invariant 3). */
static void cg__gw_send_pending(cg__gw *g)
{
    if (g->state != CG__GW_READY)
        return;
    /* Releasing a delivery may finish its push (pushes_inflight drops): bound the walk by the
     * count it starts with, one delivery per push in flight. */
    uint32_t guard = 0, bound = g->job->stats.pushes_inflight;
    for (mg_link *l = g->deliveries.next; l != &g->deliveries; guard++) {
        MG_ASSERT(guard <= bound);
        cg__delivery *d = MG_CONTAINER_OF(l, cg__delivery, link);
        l = l->next;
        if (d->sent)
            continue;
        if (!cg__gw_wants(g, d->push)) {
            g->unsent--;
            cg__delivery_done(d, false);
            continue;
        }
        if (g->sent_unacked >= CG_JOB_LINK_WINDOW)
            break; /* the rest goes as answers come back */
        int rc = mg_outq_push_buf(&g->outq, d->push->frame);
        if (rc != MG_OK) {
            cg__gw_fail(g, mg_strerror(rc));
            return;
        }
        d->sent = true;
        d->sent_ns = mg_clock_mono_ns();
        g->unsent--;
        g->sent_unacked++;
    }
    int rc = mg_outq_flush(&g->outq, (uv_stream_t *)&g->tcp);
    if (rc != MG_OK)
        cg__gw_fail(g, mg_strerror(rc));
}

static void cg__gw_rooms(cg__gw *g, const Magnetar__Chat__ChatRooms *r)
{
    if (r->reset) {
        cg__map_clear(&g->rooms);
        g->rooms_all = false;
    }
    for (size_t i = 0; i < r->n_left; i++)
        cg__map_del(&g->rooms, r->left[i]);
    for (size_t i = 0; i < r->n_joined && !g->rooms_all; i++) {
        cg__entry *e = NULL;
        if (g->rooms.count >= CG_JOB_GATEWAY_ROOMS_MAX ||
            cg__map_put(&g->rooms, r->joined[i], NULL, &e) != MG_OK) {
            g->rooms_all = true; /* see CG_JOB_GATEWAY_ROOMS_MAX */
            cg__map_clear(&g->rooms);
        }
    }
    if (g->state == CG__GW_HELLO && r->reset) {
        cg__gw_set_state(g, CG__GW_READY);
        g->backoff_ms = CG_JOB_BACKOFF_MS_MIN;
        MG_INFO("chat job %s: gateway %s (%s) ready, %u rooms", g->job->name, g->id, g->push_addr,
                g->rooms.count);
        cg__gw_send_pending(g);
    }
}

static void cg__gw_ack(cg__gw *g, const Magnetar__Chat__ChatPushAck *a)
{
    uint32_t guard = 0;
    for (mg_link *l = g->deliveries.next; l != &g->deliveries; l = l->next, guard++) {
        MG_ASSERT(guard <= g->job->stats.pushes_inflight);
        cg__delivery *d = MG_CONTAINER_OF(l, cg__delivery, link);
        if (d->push->push_id != a->push_id || !d->sent)
            continue;
        if (a->status != 0) {
            /* Not queued for its recipients: sent again on a new link (invariant 2). */
            char why[96];
            snprintf(why, sizeof(why), "push %" PRIu64 " refused: %s", a->push_id,
                     mg_err_name(a->status));
            cg__gw_fail(g, why);
            return;
        }
        MG_ASSERT(g->sent_unacked > 0);
        g->sent_unacked--;
        cg__delivery_done(d, true);
        if (g->unsent > 0)
            cg__gw_send_pending(g); /* the window has room again */
        return;
    }
    MG_DEBUG("chat job %s: gateway %s acknowledged unknown push %" PRIu64, g->job->name, g->id,
             a->push_id);
}

static void cg__gw_frame(cg__gw *g, const Magnetar__Chat__ChatFrame *f)
{
    switch (f->kind_case) {
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS:
        cg__gw_rooms(g, f->rooms);
        break;
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK:
        cg__gw_ack(g, f->ack);
        break;
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_PING:
        cg__gw_ping(g, true, f->ping->nonce);
        break;
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO:
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG:
    default:
        break; /* a Pong only shows the link alive (last_rx_ms); unknown kinds are ignored */
    }
}

static void cg__gw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    cg__gw *g = h->data;
    buf->base = (char *)g->rbuf;
    buf->len = g->rbuf != NULL ? CG_JOB_READ_BUF_BYTES : 0;
}

static void cg__gw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cg__gw *g = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        cg__gw_fail(g, nread == UV_EOF ? "closed by the gateway" : uv_strerror((int)nread));
        return;
    }
    g->last_rx_ms = cg__now_ms();
    cg_push_decoder_feed(&g->dec, (const uint8_t *)buf->base, (size_t)nread);
    /* Each frame takes bytes of the read, so this ends (push.c, note 3). */
    for (;;) {
        Magnetar__Chat__ChatFrame *f = NULL;
        int rc = cg_push_decoder_next(&g->dec, &f);
        if (rc == MG_EAGAIN)
            return;
        if (rc != MG_OK) {
            cg__gw_fail(g, mg_strerror(rc));
            return;
        }
        cg__gw_frame(g, f);
        magnetar__chat__chat_frame__free_unpacked(f, NULL);
        if (g->state != CG__GW_HELLO && g->state != CG__GW_READY)
            return; /* the frame failed or dropped the link */
    }
}

static void cg__gw_connected(uv_connect_t *req, int status)
{
    cg__gw *g = req->data;
    if (g->state != CG__GW_CONNECTING)
        return; /* failed or dropped meanwhile: the handle is closing */
    if (status < 0) {
        cg__gw_fail(g, uv_strerror(status));
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&g->tcp, cg__gw_alloc, cg__gw_read);
    if (rc < 0) {
        cg__gw_fail(g, uv_strerror(rc));
        return;
    }
    cg__gw_set_state(g, CG__GW_HELLO);
    g->last_rx_ms = cg__now_ms();
    g->last_ping_ms = g->last_rx_ms;
    Magnetar__Chat__ChatHello h = MAGNETAR__CHAT__CHAT_HELLO__INIT;
    h.id = g->job->name;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO;
    f.hello = &h;
    rc = cg__gw_write_frame(g, &f);
    if (rc != MG_OK)
        cg__gw_fail(g, mg_strerror(rc));
}

static void cg__gw_connect(cg__gw *g)
{
    MG_ASSERT(!g->tcp_open);
    if (g->rbuf == NULL && (g->rbuf = mg_malloc(CG_JOB_READ_BUF_BYTES)) == NULL) {
        cg__gw_fail(g, "out of memory");
        return;
    }
    int rc = uv_tcp_init(g->job->loop, &g->tcp);
    if (rc < 0) {
        cg__gw_fail(g, uv_strerror(rc));
        return;
    }
    g->tcp_open = true;
    g->tcp.data = g;
    uv_tcp_nodelay(&g->tcp, 1);
    cg__gw_set_state(g, CG__GW_CONNECTING);
    g->connect_req.data = g;
    rc = uv_tcp_connect(&g->connect_req, &g->tcp, (const struct sockaddr *)&g->addr,
                        cg__gw_connected);
    if (rc < 0)
        cg__gw_fail(g, uv_strerror(rc));
}

/* Parses "host:port" (a numeric IPv4 or IPv6 address; IPv6 may be in brackets). */
static int cg__parse_addr(const char *s, struct sockaddr_storage *out)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return MG_EINVAL;
    char host[CG_ADDR_BYTES_MAX];
    size_t n = (size_t)(colon - s);
    if (n >= sizeof(host))
        return MG_EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    if (host[0] == '[' && n >= 2 && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port <= 0 || port > 65535)
        return MG_EINVAL;
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0)
        return MG_OK;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0)
        return MG_OK;
    return MG_EINVAL;
}

static void cg__gw_got(int status, const void *value, size_t value_len, const md_stat *stat,
                       void *arg)
{
    cg__gw *g = arg;
    cg_job *j = g->job;
    g->getting = false;
    j->md_pending--;
    if (g->state == CG__GW_DROPPED) {
        cg__gw_maybe_free(g);
        return;
    }
    if (status != MG_OK && status != MG_ENOTFOUND) {
        /* The store is unreachable: read again later. */
        MG_WARN_LIMITED("chat job %s: reading gateway %s: %s; retrying", j->name, g->id,
                        mg_strerror(status));
        g->retry_at_ms = cg__now_ms() + CG_JOB_REGISTRY_RETRY_MS;
        return;
    }
    const char *why = NULL;
    json_t *root = NULL;
    if (status != MG_OK) {
        why = "its registration is gone"; /* the next listing drops it */
    } else {
        json_error_t err;
        root = json_loadb(value, value_len, 0, &err);
        const char *push = json_string_value(json_object_get(root, "push"));
        if (push == NULL)
            why = "no \"push\" address in its registration";
        else if (strlen(push) >= sizeof(g->push_addr) || cg__parse_addr(push, &g->addr) != MG_OK)
            why = "bad \"push\" address (host:port, numeric host)";
        else
            snprintf(g->push_addr, sizeof(g->push_addr), "%s", push);
    }
    json_decref(root);
    if (why != NULL) {
        /* BAD holds no pushes, so a misconfigured gateway cannot stall the Job; its
         * registration is read again after the longest backoff. */
        MG_WARN_LIMITED("chat job %s: gateway %s ignored: %s", j->name, g->id, why);
        cg__gw_set_state(g, CG__GW_BAD);
        g->retry_at_ms = cg__now_ms() + CG_JOB_BACKOFF_MS_MAX;
    } else {
        cg__gw_connect(g);
    }
    cg__maybe_subscribe(j);
}

/* Reads the gateway's registration (again before every connect, so a gateway that came back
 * on another address is found there). */
static void cg__gw_resolve(cg__gw *g)
{
    cg_job *j = g->job;
    MG_ASSERT(!g->getting && !g->tcp_open);
    cg__gw_set_state(g, CG__GW_RESOLVING);
    g->retry_at_ms = 0;
    char path[sizeof(CG_GATEWAYS_PATH) + CG_GATEWAY_ID_BYTES_MAX + 1];
    snprintf(path, sizeof(path), "%s/%s", CG_GATEWAYS_PATH, g->id);
    int rc = md_get(j->md, path, cg__gw_got, g);
    if (rc != MG_OK) {
        MG_WARN_LIMITED("chat job %s: reading gateway %s: %s; retrying", j->name, g->id,
                        mg_strerror(rc));
        g->retry_at_ms = cg__now_ms() + CG_JOB_REGISTRY_RETRY_MS;
        return;
    }
    g->getting = true;
    j->md_pending++;
}

static void cg__gw_add(cg_job *j, const char *id)
{
    if (j->gateway_count >= CG_JOB_GATEWAYS_MAX) {
        MG_WARN_LIMITED("chat job %s: more than %u gateways; %s ignored", j->name,
                        CG_JOB_GATEWAYS_MAX, id);
        return;
    }
    size_t len = strlen(id);
    cg__gw *g = mg_calloc(1, sizeof(*g) + len + 1);
    if (g == NULL)
        return; /* the next listing tries again */
    memcpy(g->id, id, len + 1);
    g->job = j;
    g->seen = true;
    g->backoff_ms = CG_JOB_BACKOFF_MS_MIN;
    mg_list_init(&g->deliveries);
    mg_outq_init(&g->outq, cg__gw_written, g);
    cg_push_decoder_init(&g->dec);
    mg_list_push(&j->gateways, &g->link);
    j->gateway_count++;
    j->stats.gateways = j->gateway_count;
    cg__gw_resolve(g);
}

/* --- the gateway registry --------------------------------------------------------------------- */

static void cg__registry_retry(cg_job *j, int status)
{
    MG_WARN_LIMITED("chat job %s: reading %s: %s; retrying", j->name, CG_GATEWAYS_PATH,
                    mg_strerror(status));
    j->list_retry_at_ms = cg__now_ms() + CG_JOB_REGISTRY_RETRY_MS;
}

static void cg__registry_watch(md_event_type type, const char *path, void *arg)
{
    cg__watch_token *t = arg;
    cg_job *j = t->job;
    mg_free(t);
    if (j == NULL)
        return; /* the Job closed before the watch fired */
    j->watch = NULL;
    cg__registry_list(j);
}

static void cg__registry_created(int status, const char *path, void *arg)
{
    cg_job *j = arg;
    j->md_pending--;
    j->listing = false;
    if (j->state == CG__JOB_CLOSING) {
        cg__maybe_closed(j);
        return;
    }
    if (status != MG_OK && status != MG_EEXIST) {
        cg__registry_retry(j, status);
        return;
    }
    cg__registry_list(j);
}

static void cg__registry_listed(int status, const char *const *names, size_t count, void *arg)
{
    cg_job *j = arg;
    cg__watch_token *t = j->listing_token;
    j->listing_token = NULL;
    j->md_pending--;
    j->listing = false;
    if (status != MG_OK) {
        mg_free(t); /* no watch was set */
    } else if (j->state == CG__JOB_CLOSING) {
        t->job = NULL; /* freed when the watch fires */
    } else {
        j->watch = t;
    }
    if (j->state == CG__JOB_CLOSING) {
        cg__maybe_closed(j);
        return;
    }
    if (status == MG_ENOTFOUND) {
        /* No gateway ever registered: create the persistent parent, then list it (with its
         * watch) again. */
        int rc =
            md_create(j->md, CG_GATEWAYS_PATH, NULL, 0, MD_CREATE_PARENTS, cg__registry_created, j);
        if (rc != MG_OK) {
            cg__registry_retry(j, rc);
            return;
        }
        j->listing = true;
        j->md_pending++;
        return;
    }
    if (status != MG_OK) {
        cg__registry_retry(j, status);
        return;
    }
    for (mg_link *l = j->gateways.next; l != &j->gateways; l = l->next)
        MG_CONTAINER_OF(l, cg__gw, link)->seen = false;
    for (size_t i = 0; i < count; i++) {
        if (strlen(names[i]) >= CG_GATEWAY_ID_BYTES_MAX)
            continue;
        bool known = false;
        for (mg_link *l = j->gateways.next; l != &j->gateways && !known; l = l->next) {
            cg__gw *g = MG_CONTAINER_OF(l, cg__gw, link);
            if (g->state != CG__GW_DROPPED && strcmp(g->id, names[i]) == 0) {
                g->seen = true;
                known = true;
            }
        }
        if (!known)
            cg__gw_add(j, names[i]);
    }
    for (mg_link *l = j->gateways.next; l != &j->gateways;) {
        cg__gw *g = MG_CONTAINER_OF(l, cg__gw, link);
        l = l->next;
        if (!g->seen && g->state != CG__GW_DROPPED) {
            MG_INFO("chat job %s: gateway %s left", j->name, g->id);
            cg__gw_drop(g);
        }
    }
    j->listed_once = true;
    cg__maybe_subscribe(j);
}

/* Lists the registry and sets a watch on it. One listing at a time, and at most one watch
 * outstanding: a watch is set only by a successful listing, and a listing starts only when no
 * watch is set (first, after the watch fired, or after a failure). */
static void cg__registry_list(cg_job *j)
{
    if (j->state != CG__JOB_RUNNING || j->listing || j->watch != NULL)
        return;
    j->list_retry_at_ms = 0;
    cg__watch_token *t = mg_calloc(1, sizeof(*t));
    if (t == NULL) {
        cg__registry_retry(j, MG_ENOMEM);
        return;
    }
    t->job = j;
    int rc =
        md_children_watch(j->md, CG_GATEWAYS_PATH, cg__registry_watch, t, cg__registry_listed, j);
    if (rc != MG_OK) {
        mg_free(t);
        cg__registry_retry(j, rc);
        return;
    }
    j->listing_token = t;
    j->listing = true;
    j->md_pending++;
}

/* --- pushes ----------------------------------------------------------------------------------- */

/* Builds the push of msgs[0, count) (taken over: the push owns them and frees the array),
 * encodes it once and hands it to every gateway that wants it; with none it is acknowledged at
 * once. room (kind room), keys and mids (other kinds) describe the recipients. */
static void cg__push_send(cg_job *j, cg__topic *topic, Magnetar__Chat__ChatPushKind kind,
                          const char *room, char **keys, size_t key_count, int64_t *mids,
                          size_t mid_count, cg__msg *msgs, uint32_t count)
{
    cg__push *p = mg_calloc(1, sizeof(*p));
    Magnetar__Chat__ChatMessage *cm = mg_calloc(count, sizeof(*cm));
    Magnetar__Chat__ChatMessage **cmp = mg_calloc(count, sizeof(*cmp));
    Magnetar__Chat__ChatPosition *pos = mg_calloc(count, sizeof(*pos));
    int rc = MG_ENOMEM;
    if (p != NULL && cm != NULL && cmp != NULL && pos != NULL &&
        (room == NULL || (p->room = mg_malloc(strlen(room) + 1)) != NULL)) {
        if (room != NULL)
            memcpy(p->room, room, strlen(room) + 1);
        p->job = j;
        p->push_id = ++j->next_push_id;
        p->kind = kind;
        p->msgs = msgs;
        p->msg_count = count;
        for (uint32_t i = 0; i < count; i++) {
            magnetar__chat__chat_message__init(&cm[i]);
            magnetar__chat__chat_position__init(&pos[i]);
            pos[i].ledger_id = msgs[i].id.ledger_id;
            pos[i].entry_id = msgs[i].id.entry_id;
            pos[i].has_batch_index = 1;
            pos[i].batch_index = msgs[i].id.batch_index;
            cm[i].body.data = msgs[i].body;
            cm[i].body.len = msgs[i].body_len;
            cm[i].has_op = 1;
            cm[i].op = msgs[i].op;
            cm[i].position = &pos[i];
            cm[i].has_publish_time_ms = 1;
            cm[i].publish_time_ms = msgs[i].publish_time_ms;
            cmp[i] = &cm[i];
        }
        Magnetar__Chat__ChatPush push = MAGNETAR__CHAT__CHAT_PUSH__INIT;
        push.push_id = p->push_id;
        push.kind = kind;
        push.room = (char *)room;
        push.keys = keys;
        push.n_keys = key_count;
        push.mids = mids;
        push.n_mids = mid_count;
        push.topic = topic->name;
        push.messages = cmp;
        push.n_messages = count;
        Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
        f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH;
        f.push = &push;
        rc = cg_push_frame_encode(&f, &p->frame);
    }
    mg_free(cm);
    mg_free(cmp);
    mg_free(pos);
    if (rc != MG_OK) {
        /* Not pushed: delivered again later (nack), never acknowledged unpushed. */
        MG_ERROR_LIMITED("chat job %s: push of %u messages on %s: %s", j->name, count, topic->name,
                         mg_strerror(rc));
        for (uint32_t i = 0; i < count; i++) {
            pc_nack(msgs[i].topic->consumer, &msgs[i].id);
            cg__msg_free(&msgs[i]);
        }
        cg__unacked_add(j, -(int32_t)count);
        mg_free(msgs);
        if (p != NULL)
            mg_free(p->room);
        mg_free(p);
        return;
    }
    mg_list_push(&j->pushes, &p->link);
    j->stats.pushes_inflight++;
    mg_gauge_add(j->m_pushes_inflight, 1);
    j->stats.pushed_count += count;
    mg_counter_add(j->m_pushed, count);
    p->waiting = 1; /* held while deliveries are added, so it cannot finish midway */
    for (mg_link *l = j->gateways.next; l != &j->gateways; l = l->next) {
        cg__gw *g = MG_CONTAINER_OF(l, cg__gw, link);
        if (g->state == CG__GW_BAD || g->state == CG__GW_DROPPED || !cg__gw_wants(g, p))
            continue;
        cg__delivery *d = mg_calloc(1, sizeof(*d));
        if (d == NULL) {
            /* This gateway misses the push; it is resent after a Job restart at worst. */
            MG_ERROR_LIMITED("chat job %s: out of memory for a delivery", j->name);
            continue;
        }
        d->push = p;
        p->waiting++;
        mg_list_push(&g->deliveries, &d->link);
        g->unsent++;
        /* Sent now unless older ones wait (order) or the link's window is full: a gateway that
         * falls behind holds the Job back, and the backlog stays in the topics. */
        if (g->state == CG__GW_READY && g->unsent == 1 && g->sent_unacked < CG_JOB_LINK_WINDOW) {
            int wrc = cg__gw_write(g, p->frame);
            if (wrc != MG_OK) {
                cg__gw_fail(g, mg_strerror(wrc));
            } else {
                d->sent = true;
                d->sent_ns = mg_clock_mono_ns();
                g->unsent--;
                g->sent_unacked++;
            }
        }
    }
    if (--p->waiting == 0)
        cg__push_finish(p, true);
}

static void cg__batch_flush(cg_job *j, cg__batch *b)
{
    mg_list_remove(&b->link);
    cg__map_del(&j->batch_by_room, b->room);
    cg__push_send(j, b->topic, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM, b->room, NULL, 0,
                  NULL, 0, b->msgs, b->msg_count);
    mg_free(b);
}

static void cg__merge_due(uv_timer_t *t)
{
    cg_job *j = t->data;
    uint64_t now = cg__now_ms();
    /* Bounded by the open batches; each flush removes one. */
    while (!mg_list_empty(&j->batches)) {
        cg__batch *b = MG_CONTAINER_OF(j->batches.next, cg__batch, link);
        if (b->deadline_ms > now)
            break;
        cg__batch_flush(j, b);
    }
    if (!mg_list_empty(&j->batches)) {
        cg__batch *b = MG_CONTAINER_OF(j->batches.next, cg__batch, link);
        uv_timer_start(&j->merge_timer, cg__merge_due, b->deadline_ms - now, 0);
    }
}

/* Adds a room message to its room's batch; the batch is pushed once full. */
static void cg__room_add(cg_job *j, const char *room, cg__msg *m)
{
    cg__entry *e = cg__map_get(&j->batch_by_room, room);
    cg__batch *b = e != NULL ? e->value : NULL;
    size_t room_bound = CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_HEADER_BYTES_MAX;
    if (b != NULL && (b->topic != m->topic ||
                      b->bytes + m->body_len + CG_PUSH_MESSAGE_OVERHEAD_BYTES > room_bound)) {
        cg__batch_flush(j, b); /* keep one topic per push, and every push under the bound */
        b = NULL;
    }
    if (b == NULL) {
        size_t len = strlen(room);
        b = mg_calloc(1, sizeof(*b) + len + 1);
        cg__msg *msgs = b != NULL ? mg_calloc(j->merge_max_messages, sizeof(*msgs)) : NULL;
        if (msgs == NULL || cg__map_put(&j->batch_by_room, room, b, &e) != MG_OK) {
            mg_free(msgs);
            mg_free(b);
            cg__msg *one = mg_calloc(1, sizeof(*one));
            if (one == NULL) {
                pc_nack(m->topic->consumer, &m->id);
                cg__msg_free(m);
                cg__unacked_add(j, -1);
                return;
            }
            *one = *m;
            cg__push_send(j, m->topic, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM, room, NULL,
                          0, NULL, 0, one, 1);
            return;
        }
        memcpy(b->room, room, len + 1);
        b->topic = m->topic;
        b->msgs = msgs;
        b->deadline_ms = cg__now_ms() + j->merge_max_ms;
        bool first = mg_list_empty(&j->batches);
        mg_list_push(&j->batches, &b->link);
        if (first)
            uv_timer_start(&j->merge_timer, cg__merge_due, j->merge_max_ms, 0);
    }
    b->msgs[b->msg_count++] = *m;
    b->bytes += m->body_len + CG_PUSH_MESSAGE_OVERHEAD_BYTES;
    if (b->msg_count >= j->merge_max_messages) {
        bool was_first = j->batches.next == &b->link;
        cg__batch_flush(j, b);
        if (was_first) {
            uv_timer_stop(&j->merge_timer);
            if (!mg_list_empty(&j->batches)) {
                cg__batch *n = MG_CONTAINER_OF(j->batches.next, cg__batch, link);
                uint64_t now = cg__now_ms();
                uv_timer_start(&j->merge_timer, cg__merge_due,
                               n->deadline_ms > now ? n->deadline_ms - now : 0, 0);
            }
        }
    }
}

/* --- receiving -------------------------------------------------------------------------------- */

static const char *cg__prop(const pc_received *m, const char *key)
{
    for (size_t i = 0; i < m->property_count; i++)
        if (strcmp(m->properties[i].key, key) == 0)
            return m->properties[i].value;
    return NULL;
}

/* Splits a comma-separated list in place into items[0, *count); empty items are refused. */
static int cg__split(char *s, char **items, size_t cap, size_t *count)
{
    *count = 0;
    for (char *p = s; p != NULL;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        if (*p == '\0' || strlen(p) >= CG_ROOM_BYTES_MAX || *count >= cap)
            return MG_EINVAL;
        items[(*count)++] = p;
        p = comma != NULL ? comma + 1 : NULL;
    }
    return MG_OK;
}

static void cg__malformed(cg_job *j, pc_consumer *k, const pc_received *m, const char *why)
{
    char id[64];
    pc_message_id_format(&m->id, id, sizeof(id));
    MG_WARN_LIMITED("chat job %s: message %s on %s refused: %s", j->name, id, m->topic, why);
    j->stats.malformed_count++;
    mg_counter_inc(j->m_malformed);
    int rc = pc_ack(k, &m->id);
    if (rc != MG_OK)
        MG_WARN_LIMITED("chat job %s: ack: %s", j->name, mg_strerror(rc));
}

static void cg__on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    cg__topic *topic = arg;
    cg_job *j = topic->job;
    if (j->state != CG__JOB_RUNNING)
        return;
    j->stats.received_count++;
    mg_counter_inc(j->m_received);
    const char *kind = cg__prop(m, "chat.kind");
    const char *op_text = cg__prop(m, "chat.op");
    uint32_t op = 5;
    if (op_text != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(op_text, &end, 10);
        if (errno != 0 || end == op_text || *end != '\0' || v > UINT32_MAX) {
            cg__malformed(j, k, m, "bad chat.op");
            return;
        }
        op = (uint32_t)v;
    }
    if (m->payload_len >
        CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_HEADER_BYTES_MAX - CG_PUSH_MESSAGE_OVERHEAD_BYTES) {
        cg__malformed(j, k, m, "body too large for one push");
        return;
    }
    Magnetar__Chat__ChatPushKind pk;
    const char *room = NULL;
    const char *list = NULL;
    if (kind == NULL) {
        cg__malformed(j, k, m, "no chat.kind");
        return;
    } else if (strcmp(kind, "room") == 0) {
        pk = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM;
        room = cg__prop(m, "chat.room");
        if (room == NULL || room[0] == '\0' || strlen(room) >= CG_ROOM_BYTES_MAX) {
            cg__malformed(j, k, m, "room message without a valid chat.room");
            return;
        }
    } else if (strcmp(kind, "keys") == 0) {
        pk = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS;
        list = cg__prop(m, "chat.keys");
    } else if (strcmp(kind, "mids") == 0) {
        pk = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS;
        list = cg__prop(m, "chat.mids");
    } else if (strcmp(kind, "all") == 0) {
        pk = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL;
    } else {
        cg__malformed(j, k, m, "unknown chat.kind");
        return;
    }
    char *copy = NULL;
    char **items = NULL;
    int64_t *mids = NULL;
    size_t item_count = 0;
    if (pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS ||
        pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS) {
        if (list == NULL) {
            cg__malformed(j, k, m, "no chat.keys or chat.mids");
            return;
        }
        size_t len = strlen(list);
        copy = mg_malloc(len + 1);
        items = mg_calloc(CG_PUSH_TARGETS_MAX, sizeof(*items));
        mids = mg_calloc(CG_PUSH_TARGETS_MAX, sizeof(*mids));
        if (copy == NULL || items == NULL || mids == NULL) {
            pc_nack(k, &m->id);
            goto out;
        }
        memcpy(copy, list, len + 1);
        if (cg__split(copy, items, CG_PUSH_TARGETS_MAX, &item_count) != MG_OK) {
            cg__malformed(j, k, m, "bad chat.keys or chat.mids list");
            goto out;
        }
        for (size_t i = 0; i < item_count && pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS;
             i++) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(items[i], &end, 10);
            if (errno != 0 || *end != '\0') {
                cg__malformed(j, k, m, "bad member id in chat.mids");
                goto out;
            }
            mids[i] = v;
        }
    }
    cg__msg msg = { .topic = topic, .id = m->id, .publish_time_ms = m->publish_time_ms, .op = op };
    msg.body = mg_malloc(m->payload_len > 0 ? m->payload_len : 1);
    if (msg.body == NULL) {
        pc_nack(k, &m->id);
        goto out;
    }
    if (m->payload_len > 0)
        memcpy(msg.body, m->payload, m->payload_len);
    msg.body_len = m->payload_len;
    cg__unacked_add(j, 1);
    if (pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM) {
        cg__room_add(j, room, &msg);
    } else {
        cg__msg *one = mg_malloc(sizeof(*one));
        if (one == NULL) {
            pc_nack(k, &m->id);
            cg__msg_free(&msg);
            cg__unacked_add(j, -1);
            goto out;
        }
        *one = msg;
        bool is_mids = pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_MIDS;
        bool is_keys = pk == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS;
        cg__push_send(j, topic, pk, NULL, is_keys ? items : NULL, is_keys ? item_count : 0,
                      is_mids ? mids : NULL, is_mids ? item_count : 0, one, 1);
    }
out:
    mg_free(copy);
    mg_free(items);
    mg_free(mids);
}

/* --- subscriptions ---------------------------------------------------------------------------- */

static void cg__subscribed(int status, pc_consumer *k, void *arg)
{
    cg__topic *t = arg;
    cg_job *j = t->job;
    t->subscribing = false;
    if (j->state != CG__JOB_RUNNING)
        return; /* closing: the client closes the consumer with itself */
    if (status != MG_OK) {
        MG_WARN_LIMITED("chat job %s: subscribing to %s: %s (%s); retrying", j->name, t->name,
                        mg_strerror(status), pc_last_error(j->client));
        t->retry_at_ms = cg__now_ms() + CG_JOB_REGISTRY_RETRY_MS;
        return;
    }
    t->consumer = k;
    if (j->paused)
        pc_consumer_pause(k);
    MG_INFO("chat job %s: consuming %s", j->name, t->name);
}

static void cg__subscribe(cg_job *j, cg__topic *t)
{
    pc_consumer_opts o = {
        .topic = t->name,
        .subscription = j->subscription,
        .type = PC_SUB_FAILOVER,
        .initial_position = PC_INITIAL_EARLIEST,
        .consumer_name = j->name,
        .receiver_queue_size = CG_JOB_RECEIVER_QUEUE_MESSAGES,
        .on_message = cg__on_message,
        .arg = t,
    };
    t->retry_at_ms = 0;
    int rc = pc_subscribe(j->client, &o, cg__subscribed, t);
    if (rc != MG_OK) {
        MG_WARN_LIMITED("chat job %s: subscribing to %s: %s; retrying", j->name, t->name,
                        mg_strerror(rc));
        t->retry_at_ms = cg__now_ms() + CG_JOB_REGISTRY_RETRY_MS;
        return;
    }
    t->subscribing = true;
}

/* Consumers start once the registry was read and every gateway in it resolved. */
static void cg__maybe_subscribe(cg_job *j)
{
    if (j->consuming || !j->listed_once || j->state != CG__JOB_RUNNING)
        return;
    for (mg_link *l = j->gateways.next; l != &j->gateways; l = l->next)
        if (MG_CONTAINER_OF(l, cg__gw, link)->state == CG__GW_RESOLVING)
            return;
    j->consuming = true;
    for (uint32_t i = 0; i < j->topic_count; i++)
        cg__subscribe(j, &j->topics[i]);
}

/* --- the tick --------------------------------------------------------------------------------- */

static void cg__tick(uv_timer_t *t)
{
    cg_job *j = t->data;
    uint64_t now = cg__now_ms();
    if (j->list_retry_at_ms != 0 && now >= j->list_retry_at_ms)
        cg__registry_list(j);
    for (uint32_t i = 0; i < j->topic_count; i++) {
        cg__topic *tp = &j->topics[i];
        if (tp->retry_at_ms != 0 && now >= tp->retry_at_ms)
            cg__subscribe(j, tp);
    }
    for (mg_link *l = j->gateways.next; l != &j->gateways;) {
        cg__gw *g = MG_CONTAINER_OF(l, cg__gw, link);
        l = l->next;
        switch (g->state) {
        case CG__GW_DOWN:
        case CG__GW_BAD:
        case CG__GW_RESOLVING:
            if (g->retry_at_ms != 0 && now >= g->retry_at_ms && !g->tcp_open && !g->getting)
                cg__gw_resolve(g);
            break;
        case CG__GW_CONNECTING:
            if (now - g->since_ms >= CG_JOB_CONNECT_TIMEOUT_MS)
                cg__gw_fail(g, "connect timed out");
            break;
        case CG__GW_HELLO:
        case CG__GW_READY:
            if (now - g->last_rx_ms >= CG_PUSH_DEAD_MS) {
                cg__gw_fail(g, "silent link");
            } else if (now - g->last_rx_ms >= CG_PUSH_PING_IDLE_MS &&
                       now - g->last_ping_ms >= CG_PUSH_PING_IDLE_MS) {
                g->last_ping_ms = now;
                cg__gw_ping(g, false, now);
            }
            break;
        default:
            break;
        }
    }
}

/* --- life cycle ------------------------------------------------------------------------------- */

static char *cg__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mg_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static void cg__free(cg_job *j)
{
    cg__map_clear(&j->batch_by_room);
    mg_free(j->topics);
    mg_free(j->subscription);
    mg_free(j);
}

int cg_job_create(uv_loop_t *loop, const cg_job_opts *opts, cg_job **out)
{
    *out = NULL;
    if (loop == NULL || opts == NULL || opts->service_url == NULL || opts->md == NULL ||
        opts->topics > CG_CHAT_TOPICS_MAX || opts->merge_max_messages > CG_BATCH_PACKETS_MAX ||
        opts->merge_max_ms > CG_JOB_MERGE_MS_MAX ||
        (opts->name != NULL && strlen(opts->name) >= CG_JOB_NAME_BYTES_MAX))
        return MG_EINVAL;
    cg_job *j = mg_calloc(1, sizeof(*j));
    if (j == NULL)
        return MG_ENOMEM;
    j->loop = loop;
    j->md = opts->md;
    j->topic_count = opts->topics != 0 ? opts->topics : CG_CHAT_TOPICS_DEFAULT;
    j->merge_max_messages =
        opts->merge_max_messages != 0 ? opts->merge_max_messages : CG_JOB_MERGE_MESSAGES_DEFAULT;
    j->merge_max_ms = opts->merge_max_ms != 0 ? opts->merge_max_ms : CG_JOB_MERGE_MS_DEFAULT;
    snprintf(j->name, sizeof(j->name), "%s", opts->name != NULL ? opts->name : "job");
    mg_list_init(&j->batches);
    mg_list_init(&j->pushes);
    mg_list_init(&j->gateways);
    j->subscription =
        cg__strdup(opts->subscription != NULL ? opts->subscription : CG_JOB_SUBSCRIPTION_DEFAULT);
    j->topics = mg_calloc(j->topic_count, sizeof(*j->topics));
    if (j->subscription == NULL || j->topics == NULL) {
        cg__free(j);
        return MG_ENOMEM;
    }
    for (uint32_t i = 0; i < j->topic_count; i++) {
        j->topics[i].job = j;
        j->topics[i].index = i;
        MG_ASSERT(cg_chat_topic_name(i, j->topics[i].name, sizeof(j->topics[i].name)) == MG_OK);
    }
    pc_client_opts co = { .service_url = opts->service_url };
    int rc = pc_client_create(loop, &co, &j->client);
    if (rc != MG_OK) {
        cg__free(j);
        return rc;
    }
    j->client_open = true;
    mg_metrics *reg = opts->metrics;
    if (reg != NULL) {
        j->m_received = mg_metrics_unlabelled_counter(
            reg, "magnetar_chat_job_messages_received_total", "Chat messages received by the Job.");
        j->m_pushed = mg_metrics_unlabelled_counter(reg, "magnetar_chat_job_messages_pushed_total",
                                                    "Chat messages put into pushes to gateways.");
        j->m_acked = mg_metrics_unlabelled_counter(
            reg, "magnetar_chat_job_messages_acked_total",
            "Chat messages acknowledged after every gateway acknowledged their push.");
        j->m_malformed = mg_metrics_unlabelled_counter(
            reg, "magnetar_chat_job_messages_malformed_total",
            "Chat messages refused for their properties (and acknowledged).");
        j->m_pushes_inflight = mg_metrics_unlabelled_gauge(reg, "magnetar_chat_job_pushes_inflight",
                                                           "Pushes waiting for a PushAck.");
        j->m_links_up = mg_metrics_unlabelled_gauge(reg, "magnetar_chat_job_gateway_links_up",
                                                    "Gateway links past Hello and Rooms.");
        j->m_rtt = mg_metrics_unlabelled_histogram(
            reg, "magnetar_chat_job_push_rtt_ms",
            "Time from sending a push to a gateway to its PushAck, in milliseconds.", 0.001);
    }
    *out = j;
    return MG_OK;
}

int cg_job_start(cg_job *j)
{
    if (j->state != CG__JOB_CREATED)
        return MG_ESTATE;
    MG_ASSERT(uv_timer_init(j->loop, &j->merge_timer) == 0);
    MG_ASSERT(uv_timer_init(j->loop, &j->tick_timer) == 0);
    j->merge_timer.data = j;
    j->tick_timer.data = j;
    j->handles_open = 2;
    j->state = CG__JOB_RUNNING;
    uv_timer_start(&j->tick_timer, cg__tick, CG_JOB_TICK_MS, CG_JOB_TICK_MS);
    cg__registry_list(j);
    MG_INFO("chat job %s: started, %u topics, merging %u messages or %u ms", j->name,
            j->topic_count, j->merge_max_messages, j->merge_max_ms);
    return MG_OK;
}

void cg_job_stats_get(const cg_job *j, cg_job_stats *out)
{
    *out = j->stats;
}

static void cg__maybe_closed(cg_job *j)
{
    if (j->state != CG__JOB_CLOSING || j->client_open || j->md_pending > 0 || j->handles_open > 0 ||
        j->gateway_count > 0)
        return;
    void (*cb)(void *) = j->closed_cb;
    void *arg = j->closed_arg;
    cg__free(j);
    if (cb != NULL)
        cb(arg);
}

static void cg__client_closed(void *arg)
{
    cg_job *j = arg;
    j->client_open = false;
    cg__maybe_closed(j);
}

static void cg__consumer_closed(int status, void *arg)
{
    cg_job *j = arg;
    MG_ASSERT(j->consumers_closing > 0);
    if (--j->consumers_closing == 0)
        pc_client_close(j->client, cg__client_closed, j);
}

static void cg__timer_closed(uv_handle_t *h)
{
    cg_job *j = h->data;
    j->handles_open--;
    cg__maybe_closed(j);
}

void cg_job_close(cg_job *j, void (*closed_cb)(void *arg), void *arg)
{
    MG_ASSERT(j->state != CG__JOB_CLOSING);
    bool started = j->state == CG__JOB_RUNNING;
    j->state = CG__JOB_CLOSING;
    j->closed_cb = closed_cb;
    j->closed_arg = arg;
    if (j->watch != NULL) {
        j->watch->job = NULL; /* freed when the watch fires (invariant 6) */
        j->watch = NULL;
    }
    /* Open batches and pushes are dropped unacknowledged: redelivered to the next Job. */
    for (mg_link *l = j->batches.next; l != &j->batches;) {
        cg__batch *b = MG_CONTAINER_OF(l, cg__batch, link);
        l = l->next;
        for (uint32_t i = 0; i < b->msg_count; i++)
            cg__msg_free(&b->msgs[i]);
        mg_list_remove(&b->link);
        mg_free(b->msgs);
        mg_free(b);
    }
    cg__map_clear(&j->batch_by_room);
    for (mg_link *l = j->gateways.next; l != &j->gateways;) {
        cg__gw *g = MG_CONTAINER_OF(l, cg__gw, link);
        l = l->next;
        cg__gw_drop(g);
    }
    for (mg_link *l = j->pushes.next; l != &j->pushes;) {
        cg__push *p = MG_CONTAINER_OF(l, cg__push, link);
        l = l->next;
        cg__push_finish(p, false);
    }
    if (started) {
        uv_close((uv_handle_t *)&j->merge_timer, cg__timer_closed);
        uv_close((uv_handle_t *)&j->tick_timer, cg__timer_closed);
    }
    /* Consumers close first, which sends their grouped acks; then the client. Both call back
     * from the loop, so closed_cb never runs inside this call. */
    for (uint32_t i = 0; i < j->topic_count; i++) {
        if (j->topics[i].consumer != NULL) {
            j->consumers_closing++;
            pc_consumer_close(j->topics[i].consumer, cg__consumer_closed, j);
            j->topics[i].consumer = NULL;
        }
    }
    if (j->consumers_closing == 0)
        pc_client_close(j->client, cg__client_closed, j);
}
