/*
 * Subscriptions, consumers, dispatch and acknowledgements (the dispatch model is described in
 * broker_int.h).
 *
 * SUBSCRIPTION LIFE CYCLE
 *     created by SUBSCRIBE, by the admin API or at topic open (a stored durable cursor)
 *       --> OPENING (mc_cursor_open; consumers that arrive meanwhile wait in `consumers` not
 *           ready) --> OPEN --br_sub_close--> CLOSING (consumers dropped; the cursor closed or
 *           deleted once no read is in flight) --> freed.
 *   A non-durable subscription (a reader) closes when its last consumer leaves.
 *
 * CONSUMER RULES (as Pulsar): a subscription has one type while it has consumers; a consumer of
 * another type gets ConsumerBusy. Exclusive takes one consumer. Failover: the active consumer
 * is the first by (priority level, name) — for partition N of a partitioned topic, the
 * (N mod count)-th — and every consumer is told with ACTIVE_CONSUMER_CHANGE when it changes;
 * what the previous active consumer had not acknowledged goes to the new one. Key_Shared: a
 * message's key (ordering key, else partition key, else none) hashes into [0, 65536) and the
 * consumer owning that point of a hash ring (BR_KEY_RING_POINTS points per consumer) gets it.
 *
 * PERMITS are counted in messages: a batch of n messages takes n permits; a consumer whose
 * permits are used up receives nothing more until FLOW (Pulsar lets permits go below zero by
 * the last batch; so do we).
 */
#include "broker/broker_int.h"

#include "broker/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "cursor/limits.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

static void sub_dispatch(br_sub *s);
static void sub_maybe_free(br_sub *s);

/* ---- position containers -------------------------------------------------------------------- */

static uint64_t pos_hash(ml_position p)
{
    uint64_t h = (uint64_t)p.ledger_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)p.entry_id;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return h;
}

static bool pos_eq(ml_position a, ml_position b)
{
    return a.ledger_id == b.ledger_id && a.entry_id == b.entry_id;
}

br_pending *br_posmap_get(br_posmap *m, ml_position pos)
{
    if (m->cap == 0)
        return NULL;
    size_t i = pos_hash(pos) & (m->cap - 1);
    while (m->slots[i].used) {
        if (pos_eq(m->slots[i].pos, pos))
            return &m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static int posmap_grow(br_posmap *m)
{
    size_t ncap = m->cap == 0 ? 64 : m->cap * 2;
    br_pending *ns = mg_calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].used)
            continue;
        size_t j = pos_hash(m->slots[i].pos) & (ncap - 1);
        while (ns[j].used)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    mg_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return MG_OK;
}

br_pending *br_posmap_put(br_posmap *m, ml_position pos)
{
    br_pending *p = br_posmap_get(m, pos);
    if (p != NULL)
        return p;
    if ((m->count + 1) * 4 > m->cap * 3 && posmap_grow(m) != MG_OK)
        return NULL;
    size_t i = pos_hash(pos) & (m->cap - 1);
    while (m->slots[i].used)
        i = (i + 1) & (m->cap - 1);
    memset(&m->slots[i], 0, sizeof(m->slots[i]));
    m->slots[i].used = true;
    m->slots[i].pos = pos;
    m->count++;
    return &m->slots[i];
}

void br_posmap_del(br_posmap *m, ml_position pos)
{
    br_pending *p = br_posmap_get(m, pos);
    if (p == NULL)
        return;
    size_t i = (size_t)(p - m->slots);
    m->slots[i].used = false;
    m->count--;
    /* Backward shift: move later members of the probe run into the hole. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (m->cap - 1);
        if (!m->slots[j].used)
            break;
        size_t home = pos_hash(m->slots[j].pos) & (m->cap - 1);
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            m->slots[j].used = false;
            i = j;
        }
    }
}

void br_posmap_free(br_posmap *m)
{
    mg_free(m->slots);
    memset(m, 0, sizeof(*m));
}

static size_t posset_lower(const br_posset *s, ml_position pos)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ml_position_cmp(s->v[mid], pos) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int br_posset_add(br_posset *s, ml_position pos)
{
    size_t i = posset_lower(s, pos);
    if (i < s->count && pos_eq(s->v[i], pos))
        return MG_OK;
    if (s->count == s->cap) {
        size_t ncap = s->cap == 0 ? 64 : s->cap * 2;
        ml_position *nv = mg_realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return MG_ENOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    memmove(&s->v[i + 1], &s->v[i], (s->count - i) * sizeof(*s->v));
    s->v[i] = pos;
    s->count++;
    return MG_OK;
}

bool br_posset_del(br_posset *s, ml_position pos)
{
    size_t i = posset_lower(s, pos);
    if (i >= s->count || !pos_eq(s->v[i], pos))
        return false;
    memmove(&s->v[i], &s->v[i + 1], (s->count - i - 1) * sizeof(*s->v));
    s->count--;
    return true;
}

void br_posset_free(br_posset *s)
{
    mg_free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- helpers ------------------------------------------------------------------------------------
 */

const char *br_sub_type_name(br_sub_type type)
{
    switch (type) {
    case BR_SUB_EXCLUSIVE:
        return "Exclusive";
    case BR_SUB_SHARED:
        return "Shared";
    case BR_SUB_FAILOVER:
        return "Failover";
    case BR_SUB_KEY_SHARED:
        return "Key_Shared";
    }
    return "Unknown";
}

br_consumer *br_conn_consumer(br_conn *c, uint64_t id)
{
    for (mg_link *l = c->consumers.next; l != &c->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, conn_link);
        if (k->id == id)
            return k;
    }
    return NULL;
}

br_sub *br_topic_sub_find(br_topic *t, const char *name)
{
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        if (strcmp(s->name, name) == 0 && !s->closing)
            return s;
    }
    return NULL;
}

static uint32_t hash32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u; /* FNV-1a, then a final mix so nearby keys spread */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static void send_active_change(br_consumer *k, bool active)
{
    Magnetar__Pulsar__CommandActiveConsumerChange ac =
        MAGNETAR__PULSAR__COMMAND_ACTIVE_CONSUMER_CHANGE__INIT;
    ac.consumer_id = k->id;
    ac.has_is_active = 1;
    ac.is_active = active;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(ACTIVE_CONSUMER_CHANGE);
    cmd.active_consumer_change = &ac;
    br_conn_send_cmd(k->conn, &cmd);
}

static void send_close_consumer(br_conn *c, uint64_t consumer_id)
{
    Magnetar__Pulsar__CommandCloseConsumer cc = MAGNETAR__PULSAR__COMMAND_CLOSE_CONSUMER__INIT;
    cc.consumer_id = consumer_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CLOSE_CONSUMER);
    cmd.close_consumer = &cc;
    br_conn_send_cmd(c, &cmd);
}

/* Moves a consumer's unacknowledged entries (all of them, or only pos) to the replay set. */
static void requeue_consumer(br_sub *s, br_consumer *k, bool count_redelivery)
{
    for (size_t i = 0; i < s->pending.cap; i++) {
        br_pending *p = &s->pending.slots[i];
        if (!p->used || p->consumer != k)
            continue;
        p->consumer = NULL;
        if (count_redelivery)
            p->redeliveries++;
        if (br_posset_add(&s->replay, p->pos) != MG_OK)
            MG_WARN("broker: out of memory queueing a redelivery on %s", s->name);
    }
    k->unacked_msgs = 0;
}

static int consumer_cmp(const br_consumer *a, const br_consumer *b)
{
    if (a->priority != b->priority)
        return a->priority < b->priority ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c != 0)
        return c;
    return a->id < b->id ? -1 : a->id > b->id ? 1 : 0;
}

/* Failover: elects the active consumer; tells everybody when it changed. */
static void failover_elect(br_sub *s, bool notify_all)
{
    if (s->type != BR_SUB_FAILOVER || s->consumer_count == 0)
        return;
    br_consumer *sorted[BR_SUB_CONSUMERS_MAX];
    size_t n = 0;
    for (mg_link *l = s->consumers.next; l != &s->consumers && n < BR_SUB_CONSUMERS_MAX;
         l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        if (!k->ready)
            continue;
        size_t i = n++;
        while (i > 0 && consumer_cmp(sorted[i - 1], k) > 0) {
            sorted[i] = sorted[i - 1];
            i--;
        }
        sorted[i] = k;
    }
    if (n == 0)
        return;
    int part = s->topic->name.partition;
    br_consumer *active = sorted[(size_t)(part > 0 ? part : 0) % n];
    br_consumer *old = NULL;
    for (size_t i = 0; i < n; i++)
        if (sorted[i]->active)
            old = sorted[i];
    if (old == active && !notify_all)
        return;
    if (old != NULL && old != active) {
        old->active = false;
        requeue_consumer(s, old, false);
    }
    active->active = true;
    for (size_t i = 0; i < n; i++)
        if (notify_all || sorted[i] == old || sorted[i] == active)
            send_active_change(sorted[i], sorted[i] == active);
}

static int ring_point_cmp(const void *a, const void *b)
{
    const br_ring_point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    /* Equal points (a collision): the older consumer first, deterministically. */
    return x->k->id < y->k->id ? -1 : x->k->id > y->k->id ? 1 : 0;
}

/* Key_Shared: the ring of every ready consumer's points, sorted; rebuilt when consumers come
 * or go (a few hundred points: cheap), searched by binary search for each message. */
static void ring_rebuild(br_sub *s)
{
    mg_free(s->ring);
    s->ring = NULL;
    s->ring_len = 0;
    if (s->type != BR_SUB_KEY_SHARED || s->consumer_count == 0)
        return;
    s->ring = mg_calloc((size_t)s->consumer_count * BR_KEY_RING_POINTS, sizeof(*s->ring));
    if (s->ring == NULL)
        return; /* key_shared_owner falls back to the first consumer */
    for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        if (!k->ready)
            continue;
        for (size_t i = 0; i < BR_KEY_RING_POINTS; i++)
            s->ring[s->ring_len++] = (br_ring_point){ k->ring_points[i], k };
    }
    qsort(s->ring, s->ring_len, sizeof(*s->ring), ring_point_cmp);
}

/* The owner of key_hash: the consumer with the smallest point >= key_hash, wrapping to the
 * smallest point of all. */
static br_consumer *key_shared_owner(br_sub *s, uint32_t key_hash)
{
    if (s->ring_len == 0) {
        for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
            br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
            if (k->ready)
                return k;
        }
        return NULL;
    }
    size_t lo = 0, hi = s->ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->ring[mid].h < key_hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return s->ring[lo < s->ring_len ? lo : 0].k;
}

static void consumer_ring_init(br_consumer *k)
{
    char buf[BR_NAME_BYTES_MAX + 96];
    for (size_t i = 0; i < BR_KEY_RING_POINTS; i++) {
        int n = snprintf(buf, sizeof(buf), "%s/%s/%llu/%zu", k->name, k->conn->peer,
                         (unsigned long long)k->id, i);
        k->ring_points[i] = hash32(buf, (size_t)n) % BR_KEY_HASH_RANGE;
    }
}

/* ---- dispatch
 * ------------------------------------------------------------------------------------ */

static bool consumer_can_take(const br_consumer *k)
{
    return k != NULL && k->ready && !k->closing && k->permits > 0 && !k->blocked_round &&
           br_conn_writable(k->conn);
}

/* The permits of the consumers that can take entries now, and the bytes their connections may
 * still be given within their share of the broker's output budget (*room, br_conn_out_room): a
 * read larger than that would be deferred to the replay set in part. A consumer whose connection
 * has no room waits to be woken when it has (br_conn_out_wait). */
static int64_t sub_permits(br_sub *s, uint64_t *room)
{
    int64_t total = 0;
    *room = 0;
    for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        if (!k->ready || k->permits <= 0)
            continue;
        size_t conn_room = br_conn_out_room(k->conn);
        if (conn_room == 0) {
            br_conn_out_wait(k->conn);
            continue;
        }
        if ((s->type == BR_SUB_FAILOVER && !k->active))
            continue;
        total += k->permits;
        *room += conn_room;
    }
    return total;
}

static br_consumer *choose_consumer(br_sub *s, const pw_payload *pl, bool parsed)
{
    switch (s->type) {
    case BR_SUB_EXCLUSIVE:
    case BR_SUB_FAILOVER:
        for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
            br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
            if (k->ready && (s->type == BR_SUB_EXCLUSIVE || k->active))
                return k;
        }
        return NULL;
    case BR_SUB_SHARED: {
        if (s->consumer_count == 0)
            return NULL;
        mg_link *start = s->rr_next != NULL ? &s->rr_next->sub_link : s->consumers.next;
        mg_link *l = start;
        for (uint32_t i = 0; i <= s->consumer_count; i++) {
            if (l == &s->consumers) {
                l = l->next;
                continue;
            }
            br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
            if (consumer_can_take(k)) {
                mg_link *next = l->next == &s->consumers ? s->consumers.next : l->next;
                s->rr_next =
                    next == &s->consumers ? NULL : MG_CONTAINER_OF(next, br_consumer, sub_link);
                return k;
            }
            l = l->next;
        }
        return NULL;
    }
    case BR_SUB_KEY_SHARED: {
        const uint8_t *key = NULL;
        size_t key_len = 0;
        if (parsed && pl->ordering_key != NULL) {
            key = pl->ordering_key;
            key_len = pl->ordering_key_len;
        } else if (parsed && pl->partition_key != NULL) {
            key = pl->partition_key;
            key_len = pl->partition_key_len;
        }
        uint32_t h =
            hash32(key != NULL ? (const void *)key : (const void *)"", key_len) % BR_KEY_HASH_RANGE;
        return key_shared_owner(s, h);
    }
    }
    return NULL;
}

static void sub_ref(br_sub *s)
{
    s->refs++;
}

static void sub_unref(br_sub *s)
{
    MG_ASSERT(s->refs > 0);
    s->refs--;
    sub_maybe_free(s);
}

/* Sends one entry to a consumer; false when the consumer cannot take it now (deferred). */
static void dispatch_entry(br_sub *s, const ml_entry *e)
{
    ml_position pos = e->position;
    br_pending *pr = br_posmap_get(&s->pending, pos);
    if (mc_is_acked(s->cursor, pos)) {
        if (pr != NULL)
            br_posmap_del(&s->pending, pos);
        return;
    }
    if (pr != NULL && pr->consumer != NULL)
        return; /* delivered already and not acknowledged: not twice */
    pw_payload pl;
    const uint8_t *bytes = mg_buf_data(e->buf) + e->payload_off;
    bool parsed = pw_payload_parse(bytes, e->payload_len, false, &pl) == MG_OK;
    uint32_t msgs = parsed ? (uint32_t)pl.num_messages : 1;
    s->avg_entry_msgs =
        s->avg_entry_msgs <= 0 ? (double)msgs : s->avg_entry_msgs * 0.9 + (double)msgs * 0.1;
    br_consumer *k = choose_consumer(s, &pl, parsed);
    if (!consumer_can_take(k) || s->pending.count >= BR_SUB_UNACKED_ENTRIES_MAX) {
        if (k != NULL)
            k->blocked_round = true;
        if (pr == NULL)
            pr = br_posmap_put(&s->pending, pos);
        if (pr != NULL) {
            pr->msgs = msgs;
            pr->consumer = NULL;
            br_posset_add(&s->replay, pos);
        }
        return;
    }
    if (pr == NULL) {
        pr = br_posmap_put(&s->pending, pos);
        if (pr == NULL) {
            br_posset_add(&s->replay, pos);
            return;
        }
    }
    /* The MESSAGE: a head for this consumer, then the stored bytes as they are. An entry from
     * the tail cache is held without its BrokerEntryMetadata prefix: for a consumer that wants
     * it, the prefix is rebuilt (the same bytes as stored) into the head. */
    bool rebuild_prefix = k->wants_bem && e->len == e->payload_len;
    mg_slice body = k->wants_bem && !rebuild_prefix
                        ? (mg_slice){ e->buf, e->off, e->len }
                        : (mg_slice){ e->buf, e->payload_off, e->payload_len };
    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = (uint64_t)pos.ledger_id;
    id.entry_id = (uint64_t)pos.entry_id;
    Magnetar__Pulsar__CommandMessage m = MAGNETAR__PULSAR__COMMAND_MESSAGE__INIT;
    m.consumer_id = k->id;
    m.message_id = &id;
    if (pr->redeliveries > 0) {
        m.has_redelivery_count = 1;
        m.redelivery_count = pr->redeliveries;
    }
    const uint64_t *words = NULL;
    size_t nwords = 0;
    if (msgs > 1 && mc_batch_ack_set(s->cursor, pos, &words, &nwords) == MG_OK) {
        m.n_ack_set = nwords;
        m.ack_set = (int64_t *)words;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(MESSAGE);
    cmd.message = &m;
    mg_buf *head = NULL;
    int rc;
    if (rebuild_prefix) {
        uint8_t prefix[PW_BEM_PREFIX_BYTES_MAX];
        size_t prefix_len = pw_bem_encode(e->broker_timestamp_ms, e->index, prefix);
        rc = pw_payload_head_encode_prefixed(&cmd, prefix, prefix_len, body.len, &head);
    } else {
        rc = pw_payload_head_encode(&cmd, body.len, &head);
    }
    if (rc == MG_OK) {
        mg_slice sl[2] = { { head, 0, mg_buf_len(head) }, body };
        rc = br_conn_queue(k->conn, sl, 2);
        mg_buf_unref(head);
    }
    if (rc != MG_OK) {
        pr->consumer = NULL;
        pr->msgs = msgs;
        br_posset_add(&s->replay, pos);
        br_conn_close(k->conn, mg_strerror(rc));
        return;
    }
    pr->consumer = k;
    pr->msgs = msgs;
    k->permits -= msgs;
    k->unacked_msgs += msgs;
    k->msg_out += msgs;
    k->bytes_out += body.len;
    s->msg_out += msgs;
    s->bytes_out += body.len;
    s->topic->msg_out += msgs;
    s->topic->bytes_out += body.len;
}

static void flush_consumers(br_sub *s)
{
    for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        k->blocked_round = false;
        br_conn_flush(k->conn);
    }
}

static void send_end_of_topic(br_sub *s)
{
    for (mg_link *l = s->consumers.next; l != &s->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        if (!k->ready || k->end_sent)
            continue;
        k->end_sent = true;
        Magnetar__Pulsar__CommandReachedEndOfTopic e =
            MAGNETAR__PULSAR__COMMAND_REACHED_END_OF_TOPIC__INIT;
        e.consumer_id = k->id;
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = T(REACHED_END_OF_TOPIC);
        cmd.reached_end_of_topic = &e;
        br_conn_send_cmd(k->conn, &cmd);
    }
}

static void read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    br_sub *s = arg;
    s->reading = false;
    if (s->closing || s->cursor == NULL) {
        sub_unref(s);
        return;
    }
    if (status == MG_OK && count == 0) {
        s->caught_up = true;
        /* Everything was read: on a terminated topic, consumers learn there is no more (as
         * Pulsar, once the cursor's read position passed the last entry). */
        if (s->topic->ml != NULL && ml_is_terminated(s->topic->ml) && s->replay.count == 0)
            send_end_of_topic(s);
    } else if (status == MG_ENOTFOUND && s->topic->ml != NULL &&
               ml_ledger_lost(s->topic->ml, mc_read_position(s->cursor).ledger_id)) {
        /* A lost ledger and no automatic skip: dispatch waits at it (see sub_dispatch). */
        int64_t lid = mc_read_position(s->cursor).ledger_id;
        if (!s->stuck_lost || s->stuck_ledger_id != lid)
            MG_ERROR("broker: subscription %s/%s stops at lost ledger %" PRId64
                     ": skip it (admin API skip, skip_all or resetcursor) or run with "
                     "--auto-skip-non-recoverable-data",
                     s->topic->name.full, s->name, lid);
        s->stuck_lost = true;
        s->stuck_ledger_id = lid;
    } else if (status != MG_OK && status != MG_EAGAIN) {
        MG_WARN("broker: reading %s/%s: %s", s->topic->name.full, s->name, mg_strerror(status));
    }
    for (size_t i = 0; i < count; i++)
        dispatch_entry(s, &entries[i]);
    flush_consumers(s);
    bool retry = status == MG_OK || status == MG_EAGAIN;
    sub_unref(s);
    if (retry)
        sub_dispatch(s);
}

typedef struct replay_ctx {
    br_sub *s;
    ml_position first, last; /* the replay positions this read covers */
} replay_ctx;

static void replay_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    replay_ctx *x = arg;
    br_sub *s = x->s;
    s->reading = false;
    if (s->closing || s->cursor == NULL) {
        mg_free(x);
        sub_unref(s);
        return;
    }
    if (status == MG_ENOTFOUND && ml_ledger_lost(s->topic->ml, x->first.ledger_id)) {
        /* Delivered once, then its ledger was lost: it cannot be sent again. Dropped from the
         * redelivery set (it stays unacknowledged until a skip or a reset) so that redelivery
         * of the rest goes on. */
        MG_ERROR("broker: %s/%s: cannot redeliver entries of lost ledger %" PRId64,
                 s->topic->name.full, s->name, x->first.ledger_id);
        while (s->replay.count > 0 && s->replay.v[0].ledger_id == x->first.ledger_id) {
            ml_position p = s->replay.v[0];
            br_posset_del(&s->replay, p);
            br_posmap_del(&s->pending, p);
        }
        status = MG_OK;
    } else if (status != MG_OK) {
        MG_WARN("broker: redelivering on %s/%s: %s", s->topic->name.full, s->name,
                mg_strerror(status));
    } else {
        /* Positions of the range that no longer exist (trimmed) are dropped. */
        ml_position upto = count > 0 ? entries[count - 1].position : x->last;
        size_t j = 0;
        for (size_t i = 0; i < count; i++) {
            if (!br_posset_del(&s->replay, entries[i].position))
                continue; /* not waiting for redelivery (acked meanwhile, or never pending) */
            dispatch_entry(s, &entries[i]);
            j++;
        }
        while (s->replay.count > 0 && ml_position_cmp(s->replay.v[0], x->first) >= 0 &&
               ml_position_cmp(s->replay.v[0], upto) <= 0) {
            ml_position p = s->replay.v[0];
            br_pending *pr = br_posmap_get(&s->pending, p);
            if (pr != NULL && pr->consumer == NULL && j > 0)
                break; /* deferred again this round: keep it */
            br_posset_del(&s->replay, p);
            br_posmap_del(&s->pending, p);
        }
    }
    flush_consumers(s);
    mg_free(x);
    sub_unref(s);
    if (status == MG_OK)
        sub_dispatch(s);
}

static void sub_dispatch(br_sub *s)
{
    if (s->reading || s->cursor == NULL || s->reader == NULL || s->closing || s->resetting ||
        s->consumer_count == 0)
        return;
    uint64_t room;
    int64_t permits = sub_permits(s, &room);
    if (permits <= 0 || s->pending.count >= BR_SUB_UNACKED_ENTRIES_MAX)
        return;
    /* Permits count messages and reads count entries: read about as many entries as the
     * permits cover (the last batch may take them below zero, as Pulsar's dispatcher lets it),
     * and no more bytes than the consumers' output queues take, so that little of a read is
     * deferred to the replay set. */
    double per_entry = s->avg_entry_msgs > 1 ? s->avg_entry_msgs : 1;
    int64_t want = (int64_t)((double)permits / per_entry) + 1;
    int max_entries = want < BR_DISPATCH_ENTRIES_MAX ? (int)want : BR_DISPATCH_ENTRIES_MAX;
    uint32_t max_bytes =
        room < BR_DISPATCH_BYTES_MAX ? (uint32_t)(room > 0 ? room : 1) : BR_DISPATCH_BYTES_MAX;
    if (s->replay.count > 0) {
        /* Entries waiting for redelivery first, in position order: a run within one ledger. */
        ml_position first = s->replay.v[0];
        size_t n = 1;
        while (n < s->replay.count && n < (size_t)max_entries &&
               s->replay.v[n].ledger_id == first.ledger_id &&
               s->replay.v[n].entry_id - first.entry_id < BR_DISPATCH_ENTRIES_MAX)
            n++;
        ml_position last = s->replay.v[n - 1];
        replay_ctx *x = mg_calloc(1, sizeof(*x));
        if (x == NULL)
            return;
        x->s = s;
        x->first = first;
        x->last = last;
        int span = (int)(last.entry_id - first.entry_id + 1);
        int rc = pf_read(s->topic->pf, first, span, BR_DISPATCH_BYTES_MAX, replay_done, x);
        if (rc != MG_OK) {
            mg_free(x);
            MG_WARN("broker: redelivery read on %s/%s: %s", s->topic->name.full, s->name,
                    mg_strerror(rc));
            return;
        }
        s->reading = true;
        sub_ref(s);
        return;
    }
    if (s->caught_up)
        return;
    if (s->stuck_lost) {
        ml_position r = mc_read_position(s->cursor);
        if (r.ledger_id == s->stuck_ledger_id && ml_ledger_lost(s->topic->ml, r.ledger_id))
            return;
        s->stuck_lost = false;
    }
    int rc = pf_read_entries(s->reader, max_entries, max_bytes, read_done, s);
    if (rc == MG_OK) {
        s->reading = true;
        sub_ref(s);
    } else if (rc != MG_EAGAIN) {
        MG_WARN("broker: read on %s/%s: %s", s->topic->name.full, s->name, mg_strerror(rc));
    }
}

void br_topic_entries_added(br_topic *t)
{
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        s->caught_up = false;
        sub_dispatch(s);
    }
    kop_topic_entries_added(t);
}

void br_conn_out_drained(br_conn *c)
{
    for (mg_link *l = c->consumers.next; l != &c->consumers; l = l->next) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, conn_link);
        if (k->sub != NULL && k->ready)
            sub_dispatch(k->sub);
    }
}

/* ---- subscription life cycle -------------------------------------------------------------------
 */

static void sub_maybe_free(br_sub *s)
{
    if (!s->closing || s->refs > 0 || s->cursor != NULL || s->opening)
        return;
    br_topic *t = s->topic;
    mg_list_remove(&s->topic_link);
    br_posmap_free(&s->pending);
    br_posset_free(&s->replay);
    mg_free(s->ring);
    mg_free(s);
    br_topic_unref(t); /* the subscription's reference */
}

typedef struct sub_close_ctx {
    br_sub *s;
    void (*cb)(int status, void *arg);
    void *arg;
} sub_close_ctx;

static void cursor_closed(int status, void *arg)
{
    sub_close_ctx *x = arg;
    br_sub *s = x->s;
    if (status != MG_OK && status != MG_EFENCED)
        MG_WARN("broker: closing subscription %s of %s: %s", s->name, s->topic->name.full,
                mg_strerror(status));
    void (*cb)(int, void *) = x->cb;
    void *cb_arg = x->arg;
    mg_free(x);
    s->cursor = NULL;
    sub_maybe_free(s);
    if (cb != NULL)
        cb(status, cb_arg);
}

static void sub_close_cursor(br_sub *s, bool delete_cursor, void (*cb)(int, void *), void *arg)
{
    sub_close_ctx *x = mg_calloc(1, sizeof(*x));
    int rc = MG_ENOMEM;
    if (x != NULL) {
        x->s = s;
        x->cb = cb;
        x->arg = arg;
        if (s->reader != NULL) {
            pf_reader_close(s->reader); /* a read in flight completes during the close */
            s->reader = NULL;
        }
        rc = delete_cursor ? mc_cursor_delete(s->cursor, cursor_closed, x)
                           : mc_cursor_close(s->cursor, cursor_closed, x);
    }
    if (rc != MG_OK) {
        mg_free(x);
        if (s->reader != NULL) {
            pf_reader_close(s->reader);
            s->reader = NULL;
        }
        MG_WARN("broker: closing subscription %s: %s", s->name, mg_strerror(rc));
        /* The cursor cannot be closed (already closing): forget it. */
        s->cursor = NULL;
        sub_maybe_free(s);
        if (cb != NULL)
            cb(rc, arg);
    }
}

void br_sub_close(br_sub *s, bool delete_cursor, void (*cb)(int status, void *arg), void *arg)
{
    s->closing = true;
    sub_ref(s);
    while (!mg_list_empty(&s->consumers))
        br_consumer_drop(MG_CONTAINER_OF(s->consumers.next, br_consumer, sub_link), true);
    if (s->cursor != NULL) {
        sub_close_cursor(s, delete_cursor, cb, arg);
    } else {
        /* Still opening: the open callback closes it. */
        s->close_delete = delete_cursor;
        s->close_cb = cb;
        s->close_arg = arg;
    }
    sub_unref(s);
}

static br_sub *sub_new(br_topic *t, const char *name, bool durable)
{
    br_sub *s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->topic = t;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->durable = durable;
    s->opening = true;
    mg_list_init(&s->consumers);
    mg_list_push(&t->subs, &s->topic_link);
    br_topic_ref(t);
    return s;
}

static void cursor_event(mc_cursor *cursor, int status, void *arg)
{
    (void)cursor;
    br_sub *s = arg;
    MG_WARN("broker: subscription %s of %s: %s (another broker took the topic over)", s->name,
            s->topic->name.full, mg_strerror(status));
    if (s->topic->state == BR_TOPIC_OPEN)
        br_topic_close(s->topic, false, NULL, NULL);
}

static void attach_waiting_consumers(br_sub *s, int status);

typedef struct sub_open_ctx {
    br_sub *s;
    ml_position start; /* non-durable: where to start (ledger -1: the initial position) */
    void (*cb)(int status, void *arg);
    void *arg;
} sub_open_ctx;

static void cursor_opened(int status, mc_cursor *cursor, void *arg)
{
    sub_open_ctx *x = arg;
    br_sub *s = x->s;
    s->opening = false;
    s->cursor = cursor;
    if (status == MG_OK && x->start.ledger_id >= 0)
        mc_seek(cursor, x->start);
    if (status == MG_OK) {
        /* Every read of the subscription goes through the topic's caches. */
        status = pf_reader_open(s->topic->pf, cursor, &s->reader);
        if (status == MG_OK)
            pf_reader_set_active(s->reader, s->consumer_count > 0);
        else {
            mc_cursor_abort(cursor, NULL, NULL);
            s->cursor = NULL;
        }
    }
    if (x->cb != NULL)
        x->cb(status, x->arg);
    mg_free(x);
    if (status != MG_OK) {
        MG_WARN("broker: cannot open subscription %s of %s: %s", s->name, s->topic->name.full,
                mg_strerror(status));
        s->closing = true;
        attach_waiting_consumers(s, status);
        sub_maybe_free(s);
        return;
    }
    if (s->closing) {
        sub_close_cursor(s, s->close_delete, s->close_cb, s->close_arg);
        return;
    }
    attach_waiting_consumers(s, MG_OK);
}

static int sub_open(br_sub *s, mc_initial initial, ml_position start,
                    void (*cb)(int status, void *arg), void *arg)
{
    sub_open_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL)
        return MG_ENOMEM;
    x->s = s;
    x->start = start;
    x->cb = cb;
    x->arg = arg;
    mc_cursor_opts o = { 0 };
    o.group = s->topic->group;
    o.skip_lost_ledgers = s->topic->b->opts.auto_skip_non_recoverable_data;
    o.event_cb = cursor_event;
    o.event_arg = s;
    int rc = mc_cursor_open(s->topic->ml, s->name, s->durable, initial, &o, cursor_opened, x);
    if (rc != MG_OK)
        mg_free(x);
    return rc;
}

int br_sub_open_durable(br_topic *t, const char *name, mc_initial initial,
                        void (*cb)(int status, void *arg), void *arg)
{
    if (br_topic_sub_find(t, name) != NULL)
        return MG_EEXIST;
    br_sub *s = sub_new(t, name, true);
    if (s == NULL)
        return MG_ENOMEM;
    int rc = sub_open(s, initial, (ml_position){ -1, -1 }, cb, arg);
    if (rc != MG_OK) {
        s->opening = false;
        s->closing = true;
        sub_maybe_free(s);
    }
    return rc;
}

/* ---- consumers ----------------------------------------------------------------------------------
 */

static void consumer_free(br_consumer *k)
{
    mg_list_remove(&k->conn_link);
    if (mg_list_empty(&k->conn->consumers))
        br_conn_consumers_changed(k->conn, false);
    br_conn_unref(k->conn);
    mg_free(k);
}

void br_consumer_drop(br_consumer *k, bool notify)
{
    /* CLOSE_CONSUMER goes out once k is detached and freed: a send that fails closes the
     * connection, which drops the consumers still listed on it. The reference keeps c. */
    br_conn *c = k->conn;
    uint64_t id = k->id;
    bool tell = notify && k->ready;
    if (tell)
        br_conn_ref(c);
    br_sub *s = k->sub;
    k->closing = true;
    if (s != NULL) {
        mg_list_remove(&k->sub_link);
        if (k->ready)
            s->consumer_count--;
        if (s->consumer_count == 0 && s->reader != NULL)
            pf_reader_set_active(s->reader, false);
        if (s->rr_next == k)
            s->rr_next = NULL;
        if (k->ready)
            requeue_consumer(s, k, false);
        bool was_active = k->active;
        k->sub = NULL;
        ring_rebuild(s);
        if (was_active)
            failover_elect(s, false);
        if (!s->durable && s->consumer_count == 0 && mg_list_empty(&s->consumers) && !s->closing)
            br_sub_close(s, false, NULL, NULL);
        else
            sub_dispatch(s);
    }
    consumer_free(k);
    if (tell) {
        if (c->state != BR_CONN_CLOSING)
            send_close_consumer(c, id);
        br_conn_unref(c);
    }
}

typedef struct subscribe_req {
    br_conn *conn;
    uint64_t consumer_id;
    uint64_t request_id;
    br_sub_type type;
    bool durable;
    mc_initial initial;
    ml_position start;
    char sub_name[MC_NAME_BYTES_MAX];
} subscribe_req;

/* A consumer joins its subscription: the type rules, then SUCCESS and dispatch. */
static void consumer_attach(br_consumer *k, br_sub *s, uint64_t request_id)
{
    br_conn *c = k->conn;
    if (s->consumer_count > 0 && s->type != k->requested_type) {
        br_conn_send_error(c, request_id, ERR(ConsumerBusy),
                           "the subscription has consumers of another type");
        mg_list_remove(&k->sub_link);
        k->sub = NULL;
        consumer_free(k);
        return;
    }
    if (s->consumer_count > 0 && k->requested_type == BR_SUB_EXCLUSIVE) {
        br_conn_send_error(c, request_id, ERR(ConsumerBusy),
                           "Exclusive consumer is already connected");
        mg_list_remove(&k->sub_link);
        k->sub = NULL;
        consumer_free(k);
        return;
    }
    if (s->consumer_count >= BR_SUB_CONSUMERS_MAX) {
        br_conn_send_error(c, request_id, ERR(ConsumerBusy), "too many consumers");
        mg_list_remove(&k->sub_link);
        k->sub = NULL;
        consumer_free(k);
        return;
    }
    s->type = k->requested_type;
    k->ready = true;
    s->consumer_count++;
    if (s->reader != NULL)
        pf_reader_set_active(s->reader, true);
    consumer_ring_init(k);
    ring_rebuild(s);
    br_conn_send_success(c, request_id);
    MG_DEBUG("broker: consumer %s (%s) on %s/%s from %s", k->name, br_sub_type_name(s->type),
             s->topic->name.full, s->name, c->peer);
    if (s->type == BR_SUB_FAILOVER)
        failover_elect(s, true);
    if (s->type == BR_SUB_KEY_SHARED) {
        /* Keys may move to the new consumer: what others hold of them stays theirs until
         * acknowledged; new entries of those keys go to the new owner. */
    }
    s->caught_up = false;
    sub_dispatch(s);
}

static void attach_waiting_consumers(br_sub *s, int status)
{
    for (mg_link *l = s->consumers.next; l != &s->consumers;) {
        br_consumer *k = MG_CONTAINER_OF(l, br_consumer, sub_link);
        l = l->next;
        if (k->ready)
            continue;
        if (status != MG_OK) {
            br_conn_send_error(k->conn, k->pending_request_id, ERR(ServiceNotReady),
                               mg_strerror(status));
            mg_list_remove(&k->sub_link);
            k->sub = NULL;
            consumer_free(k);
            continue;
        }
        consumer_attach(k, s, k->pending_request_id);
    }
}

static void subscribe_topic_ready(int status, br_topic *t, void *arg)
{
    subscribe_req *r = arg;
    br_conn *c = r->conn;
    br_consumer *k = c->state != BR_CONN_CLOSING ? br_conn_consumer(c, r->consumer_id) : NULL;
    if (k == NULL || k->sub != NULL || k->closing) {
        /* closed meanwhile */
    } else if (status == MG_ENOTFOUND) {
        br_conn_send_error(c, r->request_id, ERR(TopicNotFound), BR_NS_NOT_FOUND_MESSAGE);
        br_consumer_drop(k, false);
    } else if (status != MG_OK) {
        br_conn_send_error(c, r->request_id, ERR(ServiceNotReady),
                           status == MG_EPERM ? "the topic is served by another broker: look "
                                                "it up again"
                                              : mg_strerror(status));
        br_consumer_drop(k, false);
    } else {
        br_sub *s = br_topic_sub_find(t, r->sub_name);
        bool created = false;
        if (s == NULL) {
            s = sub_new(t, r->sub_name, r->durable);
            created = s != NULL;
        }
        if (s == NULL) {
            br_conn_send_error(c, r->request_id, ERR(ServiceNotReady), "out of memory");
            br_consumer_drop(k, false);
        } else {
            k->sub = s;
            k->pending_request_id = r->request_id;
            mg_list_push(&s->consumers, &k->sub_link);
            if (created) {
                int rc = sub_open(s, r->initial, r->start, NULL, NULL);
                if (rc != MG_OK) {
                    s->opening = false;
                    s->closing = true;
                    br_conn_send_error(
                        c, r->request_id,
                        rc == MG_EINVAL ? ERR(InvalidTopicName) : ERR(ServiceNotReady),
                        rc == MG_EINVAL ? "invalid subscription name" : mg_strerror(rc));
                    mg_list_remove(&k->sub_link);
                    k->sub = NULL;
                    br_consumer_drop(k, false);
                    sub_maybe_free(s);
                }
            } else if (!s->opening) {
                consumer_attach(k, s, r->request_id);
            }
        }
    }
    br_conn_unref(c);
    mg_free(r);
}

void br_handle_subscribe(br_conn *c, const Magnetar__Pulsar__CommandSubscribe *cmd)
{
    br_consumer *existing = br_conn_consumer(c, cmd->consumer_id);
    if (existing != NULL) {
        if (existing->ready)
            br_conn_send_success(c, cmd->request_id);
        else
            br_conn_send_error(c, cmd->request_id, ERR(ServiceNotReady),
                               "the consumer is already being created");
        return;
    }
    pw_topic_name tn;
    char err[256];
    if (pw_topic_name_parse(cmd->topic, &tn, err, sizeof(err)) != MG_OK) {
        br_conn_send_error(c, cmd->request_id, ERR(InvalidTopicName), err);
        return;
    }
    if (!tn.persistent) {
        br_conn_send_error(c, cmd->request_id, ERR(NotAllowedError),
                           "only persistent topics are supported");
        return;
    }
    if (cmd->subscription == NULL || cmd->subscription[0] == '\0' ||
        strlen(cmd->subscription) >= MC_NAME_BYTES_MAX || strchr(cmd->subscription, '/')) {
        br_conn_send_error(c, cmd->request_id, ERR(InvalidTopicName), "invalid subscription name");
        return;
    }
    int type = (int)cmd->sub_type;
    if (type < BR_SUB_EXCLUSIVE || type > BR_SUB_KEY_SHARED) {
        br_conn_send_error(c, cmd->request_id, ERR(NotAllowedError), "unknown subscription type");
        return;
    }
    if (br_conn_handles_full(c, cmd->request_id, false))
        return;
    br_consumer *k = mg_calloc(1, sizeof(*k));
    subscribe_req *r = mg_calloc(1, sizeof(*r));
    if (k == NULL || r == NULL) {
        mg_free(k);
        mg_free(r);
        br_conn_send_error(c, cmd->request_id, ERR(ServiceNotReady), "out of memory");
        return;
    }
    k->conn = c;
    br_conn_ref(c);
    k->id = cmd->consumer_id;
    k->requested_type = (br_sub_type)type;
    k->priority = cmd->has_priority_level ? cmd->priority_level : 0;
    k->wants_bem = c->bem_supported;
    k->connected_since_ms = mg_clock_wall_ms();
    snprintf(k->name, sizeof(k->name), "%s", cmd->consumer_name != NULL ? cmd->consumer_name : "");
    mg_list_init(&k->sub_link);
    if (mg_list_empty(&c->consumers))
        br_conn_consumers_changed(c, true);
    mg_list_push(&c->consumers, &k->conn_link);

    r->conn = c;
    r->consumer_id = cmd->consumer_id;
    r->request_id = cmd->request_id;
    r->type = (br_sub_type)type;
    r->durable = cmd->has_durable ? cmd->durable : true;
    r->initial = cmd->has_initial_position &&
                         cmd->initial_position ==
                             MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest
                     ? MC_INITIAL_EARLIEST
                     : MC_INITIAL_LATEST;
    r->start = (ml_position){ -1, -1 };
    if (!r->durable && cmd->start_message_id != NULL) {
        int64_t l = (int64_t)cmd->start_message_id->ledger_id;
        int64_t e = (int64_t)cmd->start_message_id->entry_id;
        if (l == INT64_MAX && e == INT64_MAX)
            r->initial = MC_INITIAL_LATEST; /* MessageId.latest */
        else if (l < 0)
            r->initial = MC_INITIAL_EARLIEST; /* MessageId.earliest */
        else {
            /* Opened at the earliest entry so that the seek to start can go backwards too
             * (from the latest, a seek at or before the mark-delete position does nothing). */
            r->start = (ml_position){ l, e < 0 ? 0 : e };
            r->initial = MC_INITIAL_EARLIEST;
        }
    }
    snprintf(r->sub_name, sizeof(r->sub_name), "%s", cmd->subscription);
    br_conn_ref(c);
    int rc = br_topic_get(c->b, &tn, subscribe_topic_ready, r);
    if (rc != MG_OK) {
        br_conn_unref(c);
        mg_free(r);
        br_conn_send_error(c, cmd->request_id,
                           rc == MG_ELIMIT ? ERR(TooManyRequests) : ERR(ServiceNotReady),
                           mg_strerror(rc));
        br_consumer_drop(k, false);
    }
}

void br_handle_flow(br_conn *c, const Magnetar__Pulsar__CommandFlow *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL)
        return; /* Pulsar ignores FLOW for an unknown consumer */
    k->permits += cmd->message_permits;
    if (k->sub != NULL && k->ready)
        sub_dispatch(k->sub);
}

/* ---- acknowledgements
 * ----------------------------------------------------------------------------- */

static void send_ack_response(br_conn *c, uint64_t consumer_id, uint64_t request_id, int status)
{
    Magnetar__Pulsar__CommandAckResponse ar = MAGNETAR__PULSAR__COMMAND_ACK_RESPONSE__INIT;
    ar.consumer_id = consumer_id;
    ar.has_request_id = 1;
    ar.request_id = request_id;
    if (status != MG_OK) {
        ar.has_error = 1;
        ar.error = status == MG_ENOTFOUND ? ERR(ConsumerNotFound) : ERR(UnknownError);
        ar.message = (char *)mg_strerror(status);
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(ACK_RESPONSE);
    cmd.ack_response = &ar;
    br_conn_send_cmd(c, &cmd);
}

static void forget_pending(br_sub *s, ml_position pos)
{
    br_pending *p = br_posmap_get(&s->pending, pos);
    if (p == NULL)
        return;
    if (p->consumer != NULL)
        p->consumer->unacked_msgs -=
            p->consumer->unacked_msgs >= p->msgs ? p->msgs : p->consumer->unacked_msgs;
    else
        br_posset_del(&s->replay, pos);
    br_posmap_del(&s->pending, pos);
}

void br_handle_ack(br_conn *c, const Magnetar__Pulsar__CommandAck *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL || k->sub == NULL || !k->ready || k->sub->cursor == NULL) {
        if (cmd->has_request_id)
            send_ack_response(c, cmd->consumer_id, cmd->request_id, MG_ENOTFOUND);
        return;
    }
    br_sub *s = k->sub;
    int status = MG_OK;
    bool cumulative = cmd->ack_type == MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Cumulative;
    size_t n = cmd->n_message_id < BR_ACK_IDS_MAX ? cmd->n_message_id : BR_ACK_IDS_MAX;
    for (size_t i = 0; i < n; i++) {
        const Magnetar__Pulsar__MessageIdData *id = cmd->message_id[i];
        ml_position pos = { (int64_t)id->ledger_id, (int64_t)id->entry_id };
        const uint64_t *set = id->n_ack_set > 0 ? (const uint64_t *)id->ack_set : NULL;
        int rc = cumulative ? mc_ack_cumulative(s->cursor, pos, set, id->n_ack_set)
                            : mc_ack_individual(s->cursor, pos, set, id->n_ack_set);
        if (rc != MG_OK) {
            status = rc;
            continue;
        }
        if (cumulative) {
            for (size_t j = 0; j < s->pending.cap; j++) {
                br_pending *p = &s->pending.slots[j];
                if (p->used && ml_position_cmp(p->pos, pos) <= 0 &&
                    mc_is_acked(s->cursor, p->pos)) {
                    forget_pending(s, p->pos);
                    j--; /* backward shift may have moved another record into this slot */
                }
            }
        } else if (mc_is_acked(s->cursor, pos)) {
            forget_pending(s, pos);
        }
    }
    if (cmd->has_request_id)
        send_ack_response(c, cmd->consumer_id, cmd->request_id, status);
    sub_dispatch(s);
}

void br_handle_redeliver(br_conn *c,
                         const Magnetar__Pulsar__CommandRedeliverUnacknowledgedMessages *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL || k->sub == NULL || !k->ready)
        return;
    br_sub *s = k->sub;
    /* One active consumer (Exclusive, Failover): everything it has not acknowledged is sent
     * again, whatever ids were named (as Pulsar does; clients such as pulsar-flex clear their
     * whole receive queue on a negative ack and count on it). */
    if (cmd->n_message_ids == 0 || s->type == BR_SUB_EXCLUSIVE || s->type == BR_SUB_FAILOVER) {
        requeue_consumer(s, k, true);
    } else {
        for (size_t i = 0; i < cmd->n_message_ids && i < BR_ACK_IDS_MAX; i++) {
            ml_position pos = { (int64_t)cmd->message_ids[i]->ledger_id,
                                (int64_t)cmd->message_ids[i]->entry_id };
            br_pending *p = br_posmap_get(&s->pending, pos);
            if (p == NULL || p->consumer != k)
                continue;
            k->unacked_msgs -= k->unacked_msgs >= p->msgs ? p->msgs : k->unacked_msgs;
            p->consumer = NULL;
            p->redeliveries++;
            br_posset_add(&s->replay, pos);
        }
    }
    s->msg_redelivered++;
    sub_dispatch(s);
}

/* ---- seek, unsubscribe, close, last message id -------------------------------------------------
 */

typedef struct op_req {
    br_conn *conn;
    br_sub *sub;
    uint64_t consumer_id;
    uint64_t request_id;
    void (*cb)(int status, void *arg); /* admin callers */
    void *arg;
} op_req;

/* A request from connection c; NULL (out of memory answered) on allocation failure. */
static op_req *op_req_new(br_conn *c, uint64_t request_id)
{
    op_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        br_conn_send_error(c, request_id, ERR(ServiceNotReady), "out of memory");
        return NULL;
    }
    r->conn = c;
    r->request_id = request_id;
    return r;
}

/* Answers a connection's request unless the connection is closing: success, or err with the
 * text of status. */
static void op_reply(const op_req *r, int status, Magnetar__Pulsar__ServerError err)
{
    if (r->conn->state == BR_CONN_CLOSING)
        return;
    if (status == MG_OK)
        br_conn_send_success(r->conn, r->request_id);
    else
        br_conn_send_error(r->conn, r->request_id, err, mg_strerror(status));
}

/* After a reset every consumer reconnects (Pulsar disconnects them so clients clear what they
 * had received); pending and replay state starts afresh. */
static void sub_after_reset(br_sub *s)
{
    for (size_t i = 0; i < s->pending.cap; i++) {
        br_pending *p = &s->pending.slots[i];
        if (p->used && p->consumer != NULL)
            p->consumer->unacked_msgs = 0;
    }
    br_posmap_free(&s->pending);
    br_posset_free(&s->replay);
    s->caught_up = false;
    if (s->reader != NULL)
        pf_reader_reset(s->reader); /* the read position moved: a new window */
    while (!mg_list_empty(&s->consumers))
        br_consumer_drop(MG_CONTAINER_OF(s->consumers.next, br_consumer, sub_link), true);
}

static void seek_done(int status, void *arg)
{
    op_req *r = arg;
    br_sub *s = r->sub;
    if (r->conn != NULL) {
        op_reply(r, status, ERR(UnknownError));
        br_conn_unref(r->conn);
    }
    s->resetting = false;
    if (status == MG_OK && !s->closing)
        sub_after_reset(s);
    else if (!s->closing)
        sub_dispatch(s);
    if (r->cb != NULL)
        r->cb(status, r->arg);
    mg_free(r);
    sub_unref(s);
}

void br_handle_seek(br_conn *c, const Magnetar__Pulsar__CommandSeek *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL || k->sub == NULL || !k->ready || k->sub->cursor == NULL) {
        br_conn_send_error(c, cmd->request_id, ERR(ConsumerNotFound), "unknown consumer");
        return;
    }
    if (cmd->message_id == NULL && !cmd->has_message_publish_time) {
        br_conn_send_error(c, cmd->request_id, ERR(NotAllowedError),
                           "SEEK needs a message id or a publish time");
        return;
    }
    br_sub *s = k->sub;
    op_req *r = op_req_new(c, cmd->request_id);
    if (r == NULL)
        return;
    r->sub = s;
    int rc;
    if (cmd->has_message_publish_time) {
        rc = mc_reset_to_time(s->cursor, (int64_t)cmd->message_publish_time, seek_done, r);
    } else {
        int64_t l = (int64_t)cmd->message_id->ledger_id;
        int64_t e = (int64_t)cmd->message_id->entry_id;
        ml_position pos;
        if (l < 0)
            pos = ml_first_position(s->topic->ml); /* MessageId.earliest */
        else if (l == INT64_MAX)
            pos = ml_next_position(s->topic->ml, ml_last_position(s->topic->ml));
        else
            pos = (ml_position){ l, e < 0 ? 0 : e };
        if (pos.ledger_id < 0)
            pos = ml_first_position(s->topic->ml);
        rc = mc_reset_to_position(s->cursor, pos, seek_done, r);
    }
    if (rc != MG_OK) {
        mg_free(r);
        br_conn_send_error(c, cmd->request_id, ERR(UnknownError), mg_strerror(rc));
        return;
    }
    /* Nothing is dispatched until the reset is done: entries read from the new position before
     * the consumers are dropped (seek_done) would be lost to them. */
    s->resetting = true;
    br_conn_ref(c);
    sub_ref(s);
}

static void unsubscribed(int status, void *arg)
{
    op_req *r = arg;
    op_reply(r, status, ERR(MetadataError));
    br_conn_unref(r->conn);
    mg_free(r);
}

void br_handle_unsubscribe(br_conn *c, const Magnetar__Pulsar__CommandUnsubscribe *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL || k->sub == NULL || !k->ready) {
        br_conn_send_error(c, cmd->request_id, ERR(ConsumerNotFound), "unknown consumer");
        return;
    }
    br_sub *s = k->sub;
    bool force = cmd->has_force && cmd->force;
    if (s->consumer_count > 1 && !force) {
        br_conn_send_error(c, cmd->request_id, ERR(ConsumerBusy),
                           "the subscription has other consumers");
        return;
    }
    op_req *r = op_req_new(c, cmd->request_id);
    if (r == NULL)
        return;
    br_conn_ref(c);
    br_consumer_drop(k, false);
    if (s->closing) {
        /* A reader's subscription closed with its last consumer. */
        unsubscribed(MG_OK, r);
        return;
    }
    br_sub_close(s, true, unsubscribed, r);
}

void br_handle_close_consumer(br_conn *c, const Magnetar__Pulsar__CommandCloseConsumer *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k != NULL)
        br_consumer_drop(k, false);
    br_conn_send_success(c, cmd->request_id);
}

void br_handle_get_last_message_id(br_conn *c, const Magnetar__Pulsar__CommandGetLastMessageId *cmd)
{
    br_consumer *k = br_conn_consumer(c, cmd->consumer_id);
    if (k == NULL || k->sub == NULL || !k->ready || k->sub->topic->ml == NULL) {
        br_conn_send_error(c, cmd->request_id, ERR(ConsumerNotFound), "unknown consumer");
        return;
    }
    br_sub *s = k->sub;
    ml_position last = ml_last_position(s->topic->ml);
    if (last.ledger_id < 0) {
        ml_position next = ml_first_position(s->topic->ml);
        last = (ml_position){ next.ledger_id, next.entry_id - 1 };
    }
    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = (uint64_t)last.ledger_id;
    id.entry_id = (uint64_t)last.entry_id;
    Magnetar__Pulsar__MessageIdData md = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    Magnetar__Pulsar__CommandGetLastMessageIdResponse resp =
        MAGNETAR__PULSAR__COMMAND_GET_LAST_MESSAGE_ID_RESPONSE__INIT;
    resp.last_message_id = &id;
    resp.request_id = cmd->request_id;
    if (s->cursor != NULL) {
        ml_position m = mc_mark_delete_position(s->cursor);
        md.ledger_id = (uint64_t)m.ledger_id;
        md.entry_id = (uint64_t)m.entry_id;
        resp.consumer_mark_delete_position = &md;
    }
    Magnetar__Pulsar__BaseCommand reply = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    reply.type = T(GET_LAST_MESSAGE_ID_RESPONSE);
    reply.get_last_message_id_response = &resp;
    br_conn_send_cmd(c, &reply);
}

/* ---- admin operations
 * ------------------------------------------------------------------------------ */

/* Forgets the pending records of every entry the cursor now has acknowledged (after an
 * acknowledgement made by the admin API or a Kafka commit, not by the consumers). */
static void forget_acked(br_sub *s)
{
    for (size_t j = 0; j < s->pending.cap; j++) {
        br_pending *p = &s->pending.slots[j];
        if (p->used && mc_is_acked(s->cursor, p->pos)) {
            forget_pending(s, p->pos);
            j--; /* backward shift may have moved another record into this slot */
        }
    }
}

int br_sub_skip(br_sub *s, int64_t messages, void (*cb)(int status, void *arg), void *arg)
{
    if (s->cursor == NULL)
        return MG_ESTATE;
    ml_managed *ml = s->topic->ml;
    ml_position last = ml_last_position(ml);
    ml_position m = mc_mark_delete_position(s->cursor);
    ml_position target = m;
    if (messages < 0) {
        target = last;
    } else {
        /* Entries after the mark-delete position, skipping acknowledged ones, one per message
         * (a batch counts as one: Pulsar skips whole entries too). */
        int64_t left = messages;
        ml_position p = m;
        while (left > 0 && ml_position_cmp(p, last) < 0) {
            p = ml_next_position(ml, p);
            if (!mc_is_acked(s->cursor, p))
                left--;
            target = p;
        }
    }
    if (target.ledger_id >= 0 && ml_position_cmp(target, m) > 0) {
        int rc = mc_ack_cumulative(s->cursor, target, NULL, 0);
        if (rc != MG_OK)
            return rc;
        forget_acked(s);
        sub_dispatch(s); /* a subscription stopped at a lost ledger may go on now */
    }
    return mc_cursor_flush(s->cursor, cb, arg);
}

int br_sub_ack_upto(br_sub *s, ml_position pos, const uint64_t *ack_set, size_t words,
                    int64_t acked_msgs, void (*cb)(int status, void *arg), void *arg)
{
    if (s->cursor == NULL || s->resetting)
        return MG_ESTATE;
    int rc = mc_ack_cumulative(s->cursor, pos, ack_set, words);
    if (rc != MG_OK)
        return rc;
    if (acked_msgs >= 0)
        mc_set_acked_messages(s->cursor, acked_msgs);
    forget_acked(s);
    sub_dispatch(s);
    return mc_cursor_flush(s->cursor, cb, arg);
}

/* A reset of s's cursor to pos, or to the time timestamp_ms when by_time; seek_done ends it. */
static int sub_reset(br_sub *s, bool by_time, ml_position pos, int64_t timestamp_ms,
                     void (*cb)(int status, void *arg), void *arg)
{
    if (s->cursor == NULL)
        return MG_ESTATE;
    op_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    r->sub = s;
    r->cb = cb;
    r->arg = arg;
    int rc = by_time ? mc_reset_to_time(s->cursor, timestamp_ms, seek_done, r)
                     : mc_reset_to_position(s->cursor, pos, seek_done, r);
    if (rc != MG_OK) {
        mg_free(r);
        return rc;
    }
    s->resetting = true;
    sub_ref(s);
    return MG_OK;
}

int br_sub_reset_to_position(br_sub *s, ml_position pos, void (*cb)(int status, void *arg),
                             void *arg)
{
    if (s->resetting)
        return MG_ESTATE;
    return sub_reset(s, false, pos, 0, cb, arg);
}

int br_sub_reset_to_time(br_sub *s, int64_t timestamp_ms, void (*cb)(int status, void *arg),
                         void *arg)
{
    return sub_reset(s, true, (ml_position){ -1, -1 }, timestamp_ms, cb, arg);
}
