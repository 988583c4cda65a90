/*
 * The group coordinator: FindCoordinator (v0-2), JoinGroup (v0-5), SyncGroup (v0-3), Heartbeat
 * (v0-3), LeaveGroup (v0-1), DescribeGroups (v0-4), ListGroups (v0-2), following Kafka's group
 * membership protocol. Offsets are offsets.c's: a group's committed offsets are its durable
 * subscriptions, so they outlive the membership state kept here (in memory, as a Kafka
 * coordinator keeps it: after a restart the members join again).
 *
 * STATES (Kafka's names, DescribeGroups shows them)
 *   Empty               no members
 *   PreparingRebalance  a member joined, left or timed out: every member must join again (the
 *                       others learn it from their heartbeats: REBALANCE_IN_PROGRESS); the join
 *                       completes when every member has, or the rebalance timeout passed (those
 *                       that did not are removed)
 *   CompletingRebalance joined: a new generation, a leader, the protocol all members support;
 *                       waiting for the leader's SyncGroup with the assignments
 *   Stable              assignments handed out; heartbeats keep members in
 *
 * A member's session ends when no heartbeat (or join, or sync) came for its session timeout:
 * it is removed and the group rebalances. A connection closing does not end a membership (Kafka
 * clients reconnect). JoinGroup v4+ with an empty member id is answered MEMBER_ID_REQUIRED with
 * a new id the client joins with; older versions get the id in their answer.
 *
 * The coordinator of every group is this broker: one node answers for all (docs/kafka.md says
 * what a cluster of brokers does).
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KOP_GROUPS_MAX             10000u
#define KOP_GROUP_MEMBERS_MAX      1000u
#define KOP_GROUP_ID_BYTES_MAX     256u
#define KOP_MEMBER_ID_BYTES_MAX    256u
#define KOP_GROUP_PROTOCOLS_MAX    16u
#define KOP_GROUP_TICK_MS          250u
/* Kafka's group.min.session.timeout.ms and group.max.session.timeout.ms. */
#define KOP_SESSION_TIMEOUT_MIN_MS 6000
#define KOP_SESSION_TIMEOUT_MAX_MS 1800000
/* Members that asked for an id (MEMBER_ID_REQUIRED) must join with it within this. */
#define KOP_PENDING_MEMBER_MS      30000u

typedef enum group_state {
    GS_EMPTY = 0,
    GS_PREPARING = 1,
    GS_COMPLETING = 2,
    GS_STABLE = 3,
} group_state;

static const char *const state_names[] = { "Empty", "PreparingRebalance", "CompletingRebalance",
                                           "Stable" };

typedef struct member_protocol {
    char *name;
    uint8_t *metadata;
    size_t metadata_len;
} member_protocol;

typedef struct kop_member {
    mg_link link;
    char id[KOP_MEMBER_ID_BYTES_MAX];
    char client_id[64];
    char client_host[64];
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms;
    member_protocol protocols[KOP_GROUP_PROTOCOLS_MAX];
    size_t protocol_count;
    uint8_t *assignment;
    size_t assignment_len;
    kop_req *join_req; /* waiting for the join to complete */
    kop_req *sync_req; /* waiting for the leader's assignments */
    uint64_t last_seen_ms;
    bool joined; /* joined in the rebalance under way */
} kop_member;

typedef struct kop_group {
    mg_link link;
    char id[KOP_GROUP_ID_BYTES_MAX];
    group_state state;
    int32_t generation;
    char protocol_type[64];
    char protocol[64];
    char leader[KOP_MEMBER_ID_BYTES_MAX];
    mg_link members;
    uint32_t member_count;
    uint64_t rebalance_deadline_ms;
} kop_group;

typedef struct pending_member {
    char id[KOP_MEMBER_ID_BYTES_MAX];
    uint64_t expires_ms;
} pending_member;

struct kop_groups {
    kop_server *k;
    mg_link groups;
    uint32_t group_count;
    uv_timer_t tick;
    uint64_t next_member;
    pending_member *pending;
    size_t pending_count, pending_cap;
};

/* ---- helpers --------------------------------------------------------------------------------- */

static uint64_t now_ms(kop_groups *g)
{
    return uv_now(g->k->loop);
}

static bool str_eq(kw_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len >= 0 && (size_t)s.len == n && memcmp(s.ptr, c, n) == 0;
}

static void str_copy(char *dst, size_t cap, kw_str s)
{
    size_t n = s.len > 0 ? (size_t)s.len : 0;
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static kop_group *group_find(kop_groups *g, kw_str id)
{
    for (mg_link *l = g->groups.next; l != &g->groups; l = l->next) {
        kop_group *gr = MG_CONTAINER_OF(l, kop_group, link);
        if (str_eq(id, gr->id))
            return gr;
    }
    return NULL;
}

static kop_member *member_find(kop_group *gr, kw_str id)
{
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        if (str_eq(id, m->id))
            return m;
    }
    return NULL;
}

static void member_protocols_free(kop_member *m)
{
    for (size_t i = 0; i < m->protocol_count; i++) {
        mg_free(m->protocols[i].name);
        mg_free(m->protocols[i].metadata);
    }
    m->protocol_count = 0;
}

static void group_free_if_empty(kop_groups *g, kop_group *gr)
{
    if (gr->member_count > 0)
        return;
    mg_list_remove(&gr->link);
    g->group_count--;
    mg_free(gr);
}

/* ---- answers --------------------------------------------------------------------------------- */

static void join_reply(kop_req *q, int16_t error, int32_t generation, const char *protocol,
                       const char *leader, const char *member_id, kop_group *members_of)
{
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 2)
        kw_write_i32(&w, 0);
    kw_write_i16(&w, error);
    kop_req_error(q, error);
    kw_write_i32(&w, generation);
    kw_write_string(&w, protocol != NULL ? protocol : "");
    kw_write_string(&w, leader != NULL ? leader : "");
    kw_write_string(&w, member_id != NULL ? member_id : "");
    if (members_of == NULL) {
        kw_write_i32(&w, 0);
    } else {
        kw_write_i32(&w, (int32_t)members_of->member_count);
        for (mg_link *l = members_of->members.next; l != &members_of->members; l = l->next) {
            kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
            kw_write_string(&w, m->id);
            if (q->version >= 5)
                kw_write_string(&w, NULL);
            const member_protocol *mp = NULL;
            for (size_t i = 0; i < m->protocol_count; i++)
                if (strcmp(m->protocols[i].name, members_of->protocol) == 0)
                    mp = &m->protocols[i];
            kw_write_i32(&w, mp != NULL ? (int32_t)mp->metadata_len : 0);
            if (mp != NULL)
                kw_write_bytes(&w, mp->metadata, mp->metadata_len);
        }
    }
    kop_reply_end(q, &w);
}

static void sync_reply(kop_req *q, int16_t error, const uint8_t *assignment, size_t len)
{
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i16(&w, error);
    kop_req_error(q, error);
    kw_write_i32(&w, (int32_t)len);
    kw_write_bytes(&w, assignment, len);
    kop_reply_end(q, &w);
}

static void simple_reply(kop_req *q, int16_t error)
{
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i16(&w, error);
    kop_req_error(q, error);
    kop_reply_end(q, &w);
}

/* ---- rebalancing ----------------------------------------------------------------------------- */

static void member_remove(kop_groups *g, kop_group *gr, kop_member *m)
{
    mg_list_remove(&m->link);
    gr->member_count--;
    if (m->join_req != NULL)
        join_reply(m->join_req, KE_UNKNOWN_MEMBER_ID, -1, NULL, NULL, m->id, NULL);
    if (m->sync_req != NULL)
        sync_reply(m->sync_req, KE_UNKNOWN_MEMBER_ID, NULL, 0);
    if (strcmp(gr->leader, m->id) == 0)
        gr->leader[0] = '\0';
    member_protocols_free(m);
    mg_free(m->assignment);
    mg_free(m);
    (void)g;
}

static void rebalance_start(kop_groups *g, kop_group *gr)
{
    /* Syncs waiting for the old generation's assignments will not get them. */
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        if (m->sync_req != NULL) {
            sync_reply(m->sync_req, KE_REBALANCE_IN_PROGRESS, NULL, 0);
            m->sync_req = NULL;
        }
        m->joined = m->join_req != NULL;
    }
    if (gr->state == GS_PREPARING)
        return;
    gr->state = GS_PREPARING;
    int32_t timeout = 0;
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        if (m->rebalance_timeout_ms > timeout)
            timeout = m->rebalance_timeout_ms;
    }
    gr->rebalance_deadline_ms = now_ms(g) + (uint64_t)timeout;
    MG_INFO("kafka: group %s rebalancing (%u members)", gr->id, (unsigned)gr->member_count);
}

/* The protocol every member supports, in the leader's order of preference. */
static const char *common_protocol(kop_group *gr, kop_member *leader)
{
    for (size_t i = 0; i < leader->protocol_count; i++) {
        const char *name = leader->protocols[i].name;
        bool all = true;
        for (mg_link *l = gr->members.next; l != &gr->members && all; l = l->next) {
            kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
            bool has = false;
            for (size_t j = 0; j < m->protocol_count; j++)
                if (strcmp(m->protocols[j].name, name) == 0)
                    has = true;
            all = has;
        }
        if (all)
            return name;
    }
    return NULL;
}

static void join_complete(kop_groups *g, kop_group *gr)
{
    /* Members that did not join again are out. */
    for (mg_link *l = gr->members.next; l != &gr->members;) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        l = l->next;
        if (m->join_req == NULL) {
            MG_INFO("kafka: group %s: member %s did not join in time: removed", gr->id, m->id);
            member_remove(g, gr, m);
        }
    }
    if (gr->member_count == 0) {
        gr->state = GS_EMPTY;
        group_free_if_empty(g, gr);
        return;
    }
    kop_member *leader = NULL;
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        if (strcmp(m->id, gr->leader) == 0)
            leader = m;
    }
    if (leader == NULL)
        leader = MG_CONTAINER_OF(gr->members.next, kop_member, link);
    snprintf(gr->leader, sizeof(gr->leader), "%s", leader->id);
    const char *proto = common_protocol(gr, leader);
    gr->generation++;
    if (proto == NULL) {
        /* Checked at join; only reachable if members changed their protocols meanwhile. */
        for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
            kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
            join_reply(m->join_req, KE_INCONSISTENT_GROUP_PROTOCOL, -1, NULL, NULL, m->id, NULL);
            m->join_req = NULL;
        }
        while (!mg_list_empty(&gr->members))
            member_remove(g, gr, MG_CONTAINER_OF(gr->members.next, kop_member, link));
        gr->state = GS_EMPTY;
        group_free_if_empty(g, gr);
        return;
    }
    snprintf(gr->protocol, sizeof(gr->protocol), "%s", proto);
    gr->state = GS_COMPLETING;
    uint64_t now = now_ms(g);
    MG_INFO("kafka: group %s generation %d: %u members, leader %s, protocol %s", gr->id,
            (int)gr->generation, (unsigned)gr->member_count, gr->leader, gr->protocol);
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        kop_req *q = m->join_req;
        m->join_req = NULL;
        m->joined = false;
        m->last_seen_ms = now;
        mg_free(m->assignment);
        m->assignment = NULL;
        m->assignment_len = 0;
        join_reply(q, KE_NONE, gr->generation, gr->protocol, gr->leader, m->id,
                   m == leader ? gr : NULL);
    }
}

/* Whether every member has joined the rebalance under way. */
static bool all_joined(kop_group *gr)
{
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next)
        if (MG_CONTAINER_OF(l, kop_member, link)->join_req == NULL)
            return false;
    return true;
}

static void group_tick_one(kop_groups *g, kop_group *gr, uint64_t now)
{
    /* Sessions: a member waiting in a join is alive. */
    bool removed = false;
    for (mg_link *l = gr->members.next; l != &gr->members;) {
        kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
        l = l->next;
        if (m->join_req != NULL)
            continue;
        if (now - m->last_seen_ms >= (uint64_t)m->session_timeout_ms) {
            MG_INFO("kafka: group %s: member %s session timed out: removed", gr->id, m->id);
            member_remove(g, gr, m);
            removed = true;
        }
    }
    if (gr->member_count == 0) {
        gr->state = GS_EMPTY;
        group_free_if_empty(g, gr);
        return;
    }
    if (removed && gr->state != GS_PREPARING)
        rebalance_start(g, gr);
    if (gr->state == GS_PREPARING && (all_joined(gr) || now >= gr->rebalance_deadline_ms))
        join_complete(g, gr);
}

static void group_tick(uv_timer_t *t)
{
    kop_groups *g = t->data;
    uint64_t now = now_ms(g);
    for (mg_link *l = g->groups.next; l != &g->groups;) {
        kop_group *gr = MG_CONTAINER_OF(l, kop_group, link);
        l = l->next;
        group_tick_one(g, gr, now);
    }
    size_t j = 0;
    for (size_t i = 0; i < g->pending_count; i++)
        if (g->pending[i].expires_ms > now)
            g->pending[j++] = g->pending[i];
    g->pending_count = j;
}

int kop_groups_create(kop_server *k, kop_groups **out)
{
    kop_groups *g = mg_calloc(1, sizeof(*g));
    if (g == NULL)
        return MG_ENOMEM;
    g->k = k;
    mg_list_init(&g->groups);
    uv_timer_init(k->loop, &g->tick);
    g->tick.data = g;
    uv_timer_start(&g->tick, group_tick, KOP_GROUP_TICK_MS, KOP_GROUP_TICK_MS);
    uv_unref((uv_handle_t *)&g->tick);
    *out = g;
    return MG_OK;
}

static void groups_tick_closed(uv_handle_t *h)
{
    kop_groups *g = h->data;
    mg_free(g->pending);
    mg_free(g);
}

void kop_groups_destroy(kop_groups *g)
{
    if (g == NULL)
        return;
    while (!mg_list_empty(&g->groups)) {
        kop_group *gr = MG_CONTAINER_OF(g->groups.next, kop_group, link);
        while (!mg_list_empty(&gr->members)) {
            kop_member *m = MG_CONTAINER_OF(gr->members.next, kop_member, link);
            /* Requests waiting here belong to connections that are gone by now. */
            MG_ASSERT(m->join_req == NULL && m->sync_req == NULL);
            member_remove(g, gr, m);
        }
        group_free_if_empty(g, gr);
    }
    uv_close((uv_handle_t *)&g->tick, groups_tick_closed);
}

void kop_groups_conn_closed(kop_groups *g, kop_conn *c)
{
    /* Requests of c waiting for a rebalance are answered now (nobody reads the answers), so the
     * connection can be freed; the memberships stay until their sessions end. */
    for (mg_link *l = g->groups.next; l != &g->groups; l = l->next) {
        kop_group *gr = MG_CONTAINER_OF(l, kop_group, link);
        for (mg_link *m = gr->members.next; m != &gr->members; m = m->next) {
            kop_member *mb = MG_CONTAINER_OF(m, kop_member, link);
            if (mb->join_req != NULL && mb->join_req->c == c) {
                kop_req *q = mb->join_req;
                mb->join_req = NULL;
                mb->last_seen_ms = now_ms(g);
                join_reply(q, KE_REBALANCE_IN_PROGRESS, -1, NULL, NULL, mb->id, NULL);
            }
            if (mb->sync_req != NULL && mb->sync_req->c == c) {
                kop_req *q = mb->sync_req;
                mb->sync_req = NULL;
                sync_reply(q, KE_REBALANCE_IN_PROGRESS, NULL, 0);
            }
        }
    }
}

/* ---- FindCoordinator ------------------------------------------------------------------------- */

void kop_group_topic(const char *group_id, size_t len, pw_topic_name *out)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)group_id[i];
        h *= 1099511628211ull;
    }
    char full[128];
    snprintf(full, sizeof(full), "persistent://public/default/__kafka_group_%016" PRIx64, h);
    int rc = pw_topic_name_parse(full, out, NULL, 0);
    MG_ASSERT(rc == MG_OK);
}

static void coordinator_reply(kop_req *q, int16_t error, const char *msg, int32_t node,
                              const char *host, int32_t port)
{
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i16(&w, error);
    kop_req_error(q, error);
    if (q->version >= 1)
        kw_write_string(&w, msg);
    kw_write_i32(&w, error == KE_NONE ? node : -1);
    kw_write_string(&w, error == KE_NONE ? host : "");
    kw_write_i32(&w, error == KE_NONE ? port : -1);
    kop_reply_end(q, &w);
}

static void coordinator_owner(int status, const char *kafka_addr, void *arg)
{
    kop_req *q = arg;
    kop_conn *c = q->c;
    kop_server *k = c->k;
    if (status != MG_OK) {
        MG_WARN_LIMITED("kafka: cannot find a group coordinator: %s", mg_strerror(status));
        coordinator_reply(q, KE_COORDINATOR_NOT_AVAILABLE, mg_strerror(status), -1, "", -1);
    } else if (kafka_addr == NULL) {
        coordinator_reply(q, KE_NONE, NULL, k->node_id, k->advertised, k->port);
    } else {
        const char *colon = strrchr(kafka_addr, ':');
        char host[128];
        snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - kafka_addr) : 0, kafka_addr);
        if (colon == NULL)
            coordinator_reply(q, KE_COORDINATOR_NOT_AVAILABLE, "bad owner address", -1, "", -1);
        else
            coordinator_reply(q, KE_NONE, NULL, kop_node_id(kafka_addr), host, atoi(colon + 1));
    }
    kop_conn_unref(c);
}

/* The coordinator of a group is the broker that owns its kop_group_topic bundle (claimed by the
 * first broker asked, as a Pulsar lookup claims a topic's). */
void kop_handle_find_coordinator(kop_req *q, kw_reader *r)
{
    kw_str key = kw_read_string(r);
    int8_t key_type = q->version >= 1 ? kw_read_i8(r) : 0;
    if (kw_reader_error(r) != MG_OK) {
        kop_conn_proto_error(q->c, "bad_request", "malformed FindCoordinator request");
        kop_reply_none(q);
        return;
    }
    if (key_type != 0) {
        coordinator_reply(q, KE_COORDINATOR_NOT_AVAILABLE, "transactions are not served", -1, "",
                          -1);
        return;
    }
    if (key.len <= 0 || (size_t)key.len >= KOP_GROUP_ID_BYTES_MAX) {
        coordinator_reply(q, KE_INVALID_GROUP_ID, "a group id is 1 to 255 bytes", -1, "", -1);
        return;
    }
    pw_topic_name tn;
    kop_group_topic(key.ptr, (size_t)key.len, &tn);
    kop_conn_ref(q->c);
    int rc = br_owner_kafka(q->c->k->b, &tn, coordinator_owner, q);
    if (rc != MG_OK)
        coordinator_owner(rc, NULL, q);
}

/* ---- JoinGroup ------------------------------------------------------------------------------- */

static void new_member_id(kop_groups *g, kop_conn *c, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s-%016" PRIx64 "-%" PRIu64, c->client_id[0] ? c->client_id : "member",
             (uint64_t)random() << 32 ^ (uint64_t)random(), ++g->next_member);
}

static bool pending_take(kop_groups *g, kw_str id)
{
    for (size_t i = 0; i < g->pending_count; i++) {
        if (str_eq(id, g->pending[i].id)) {
            g->pending[i] = g->pending[--g->pending_count];
            return true;
        }
    }
    return false;
}

static void pending_add(kop_groups *g, const char *id)
{
    if (g->pending_count == g->pending_cap) {
        size_t cap = g->pending_cap ? g->pending_cap * 2 : 8;
        if (cap > 10000)
            return;
        pending_member *v = mg_realloc(g->pending, cap * sizeof(*v));
        if (v == NULL)
            return;
        g->pending = v;
        g->pending_cap = cap;
    }
    pending_member *p = &g->pending[g->pending_count++];
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->expires_ms = now_ms(g) + KOP_PENDING_MEMBER_MS;
}

void kop_handle_join_group(kop_req *q, kw_reader *r)
{
    kop_groups *g = q->c->k->groups;
    kw_str group_id = kw_read_string(r);
    int32_t session_timeout = kw_read_i32(r);
    int32_t rebalance_timeout = q->version >= 1 ? kw_read_i32(r) : session_timeout;
    kw_str member_id = kw_read_string(r);
    if (q->version >= 5)
        kw_read_string(r); /* group_instance_id: static membership is not served */
    kw_str protocol_type = kw_read_string(r);
    int32_t count = kw_read_i32(r);
    member_protocol protos[KOP_GROUP_PROTOCOLS_MAX];
    size_t nproto = 0;
    for (int32_t i = 0; i < count && kw_reader_error(r) == MG_OK; i++) {
        kw_str name = kw_read_string(r);
        int32_t len = kw_read_i32(r);
        if (len < -1 || (len > 0 && (size_t)len > kw_reader_left(r)) || name.len < 0) {
            r->error = MG_EPROTO;
            break;
        }
        const uint8_t *md = r->p + r->pos;
        if (len > 0)
            r->pos += (size_t)len;
        if (nproto < KOP_GROUP_PROTOCOLS_MAX) {
            protos[nproto].name = (char *)name.ptr;
            protos[nproto].metadata = (uint8_t *)md;
            protos[nproto].metadata_len = len > 0 ? (size_t)len : 0;
            protos[nproto].name = mg_malloc((size_t)name.len + 1);
            if (protos[nproto].name != NULL) {
                memcpy(protos[nproto].name, name.ptr, (size_t)name.len);
                protos[nproto].name[name.len] = '\0';
                nproto++;
            }
        }
    }
    if (kw_reader_error(r) != MG_OK || count < 0) {
        for (size_t i = 0; i < nproto; i++)
            mg_free(protos[i].name);
        kop_conn_proto_error(q->c, "bad_request", "malformed JoinGroup request");
        kop_reply_none(q);
        return;
    }
    int16_t error = KE_NONE;
    kop_group *gr = NULL;
    if (q->coord_error != KE_NONE)
        error = q->coord_error;
    else if (group_id.len <= 0 || (size_t)group_id.len >= KOP_GROUP_ID_BYTES_MAX)
        error = KE_INVALID_GROUP_ID;
    else if (session_timeout < KOP_SESSION_TIMEOUT_MIN_MS ||
             session_timeout > KOP_SESSION_TIMEOUT_MAX_MS)
        error = KE_INVALID_SESSION_TIMEOUT;
    else if (nproto == 0 || protocol_type.len <= 0 || (size_t)protocol_type.len >= 64)
        error = KE_INCONSISTENT_GROUP_PROTOCOL;
    else if (member_id.len < 0 || (size_t)member_id.len >= KOP_MEMBER_ID_BYTES_MAX)
        error = KE_UNKNOWN_MEMBER_ID;
    if (error == KE_NONE) {
        gr = group_find(g, group_id);
        if (gr != NULL && gr->member_count > 0 && !str_eq(protocol_type, gr->protocol_type))
            error = KE_INCONSISTENT_GROUP_PROTOCOL;
        /* Every member must share a protocol with the group's members. */
        if (error == KE_NONE && gr != NULL && gr->member_count > 0) {
            bool shared = false;
            for (size_t i = 0; i < nproto && !shared; i++) {
                bool all = true;
                for (mg_link *l = gr->members.next; l != &gr->members && all; l = l->next) {
                    kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
                    if (str_eq(member_id, m->id))
                        continue;
                    bool has = false;
                    for (size_t j = 0; j < m->protocol_count; j++)
                        if (strcmp(m->protocols[j].name, protos[i].name) == 0)
                            has = true;
                    all = has;
                }
                shared = all;
            }
            if (!shared)
                error = KE_INCONSISTENT_GROUP_PROTOCOL;
        }
    }
    if (error != KE_NONE) {
        for (size_t i = 0; i < nproto; i++)
            mg_free(protos[i].name);
        join_reply(q, error, -1, NULL, NULL, "", NULL);
        return;
    }
    kop_member *m = gr != NULL && member_id.len > 0 ? member_find(gr, member_id) : NULL;
    if (member_id.len > 0 && m == NULL && !pending_take(g, member_id)) {
        for (size_t i = 0; i < nproto; i++)
            mg_free(protos[i].name);
        join_reply(q, KE_UNKNOWN_MEMBER_ID, -1, NULL, NULL, "", NULL);
        return;
    }
    if (member_id.len == 0 && q->version >= 4) {
        char id[KOP_MEMBER_ID_BYTES_MAX];
        new_member_id(g, q->c, id, sizeof(id));
        pending_add(g, id);
        for (size_t i = 0; i < nproto; i++)
            mg_free(protos[i].name);
        join_reply(q, KE_MEMBER_ID_REQUIRED, -1, NULL, NULL, id, NULL);
        return;
    }
    if (gr == NULL) {
        if (g->group_count >= KOP_GROUPS_MAX || (gr = mg_calloc(1, sizeof(*gr))) == NULL) {
            for (size_t i = 0; i < nproto; i++)
                mg_free(protos[i].name);
            join_reply(q, KE_COORDINATOR_NOT_AVAILABLE, -1, NULL, NULL, "", NULL);
            return;
        }
        str_copy(gr->id, sizeof(gr->id), group_id);
        mg_list_init(&gr->members);
        mg_list_push(&g->groups, &gr->link);
        g->group_count++;
    }
    if (m == NULL) {
        if (gr->member_count >= KOP_GROUP_MEMBERS_MAX || (m = mg_calloc(1, sizeof(*m))) == NULL) {
            for (size_t i = 0; i < nproto; i++)
                mg_free(protos[i].name);
            join_reply(q, KE_COORDINATOR_NOT_AVAILABLE, -1, NULL, NULL, "", NULL);
            group_free_if_empty(g, gr);
            return;
        }
        if (member_id.len > 0)
            str_copy(m->id, sizeof(m->id), member_id);
        else
            new_member_id(g, q->c, m->id, sizeof(m->id));
        snprintf(m->client_id, sizeof(m->client_id), "%s", q->c->client_id);
        snprintf(m->client_host, sizeof(m->client_host), "%s", q->c->peer);
        mg_list_push(&gr->members, &m->link);
        gr->member_count++;
        if (gr->member_count == 1)
            str_copy(gr->protocol_type, sizeof(gr->protocol_type), protocol_type);
    }
    member_protocols_free(m);
    bool oom = false;
    for (size_t i = 0; i < nproto; i++) {
        m->protocols[i].name = protos[i].name;
        m->protocols[i].metadata_len = protos[i].metadata_len;
        m->protocols[i].metadata = mg_malloc(protos[i].metadata_len + 1);
        if (m->protocols[i].metadata == NULL)
            oom = true;
        else if (protos[i].metadata_len > 0)
            memcpy(m->protocols[i].metadata, protos[i].metadata, protos[i].metadata_len);
        m->protocol_count++;
    }
    m->session_timeout_ms = session_timeout;
    m->rebalance_timeout_ms = rebalance_timeout > 0 ? rebalance_timeout : session_timeout;
    m->last_seen_ms = now_ms(g);
    if (oom) {
        member_remove(g, gr, m);
        join_reply(q, KE_COORDINATOR_NOT_AVAILABLE, -1, NULL, NULL, "", NULL);
        group_free_if_empty(g, gr);
        return;
    }
    if (m->join_req != NULL) /* a second join of the same member: the first is superseded */
        join_reply(m->join_req, KE_REBALANCE_IN_PROGRESS, -1, NULL, NULL, m->id, NULL);
    m->join_req = q;
    rebalance_start(g, gr);
    if (all_joined(gr))
        join_complete(g, gr);
}

/* ---- SyncGroup ------------------------------------------------------------------------------- */

/* Checks (group, generation, member) for SyncGroup and Heartbeat. */
static int16_t member_check(kop_groups *g, kw_str group_id, int32_t generation, kw_str member_id,
                            kop_group **gr_out, kop_member **m_out)
{
    *gr_out = NULL;
    *m_out = NULL;
    if (group_id.len <= 0)
        return KE_INVALID_GROUP_ID;
    kop_group *gr = group_find(g, group_id);
    if (gr == NULL)
        return KE_UNKNOWN_MEMBER_ID;
    kop_member *m = member_find(gr, member_id);
    if (m == NULL)
        return KE_UNKNOWN_MEMBER_ID;
    *gr_out = gr;
    *m_out = m;
    m->last_seen_ms = now_ms(g);
    if (generation != gr->generation)
        return KE_ILLEGAL_GENERATION;
    return KE_NONE;
}

void kop_handle_sync_group(kop_req *q, kw_reader *r)
{
    kop_groups *g = q->c->k->groups;
    kw_str group_id = kw_read_string(r);
    int32_t generation = kw_read_i32(r);
    kw_str member_id = kw_read_string(r);
    if (q->version >= 3)
        kw_read_string(r); /* group_instance_id */
    int32_t count = kw_read_i32(r);
    size_t at = r->pos;
    for (int32_t i = 0; i < count && kw_reader_error(r) == MG_OK; i++) {
        kw_read_string(r);
        int32_t len = kw_read_i32(r);
        if (len < -1 || (len > 0 && (size_t)len > kw_reader_left(r)))
            r->error = MG_EPROTO;
        else if (len > 0)
            r->pos += (size_t)len;
    }
    if (kw_reader_error(r) != MG_OK || count < 0) {
        kop_conn_proto_error(q->c, "bad_request", "malformed SyncGroup request");
        kop_reply_none(q);
        return;
    }
    if (q->coord_error != KE_NONE) {
        sync_reply(q, q->coord_error, NULL, 0);
        return;
    }
    kop_group *gr;
    kop_member *m;
    int16_t error = member_check(g, group_id, generation, member_id, &gr, &m);
    if (error == KE_NONE && gr->state == GS_PREPARING)
        error = KE_REBALANCE_IN_PROGRESS;
    if (error != KE_NONE) {
        sync_reply(q, error, NULL, 0);
        return;
    }
    if (gr->state == GS_STABLE) {
        sync_reply(q, KE_NONE, m->assignment, m->assignment_len);
        return;
    }
    /* CompletingRebalance: the leader's sync carries every member's assignment. */
    if (m->sync_req != NULL)
        sync_reply(m->sync_req, KE_REBALANCE_IN_PROGRESS, NULL, 0);
    m->sync_req = q;
    if (strcmp(m->id, gr->leader) != 0)
        return;
    kw_reader ar;
    kw_reader_init(&ar, r->p + at, r->pos - at);
    for (int32_t i = 0; i < count; i++) {
        kw_str mid = kw_read_string(&ar);
        int32_t len = kw_read_i32(&ar);
        const uint8_t *bytes = ar.p + ar.pos;
        if (len > 0)
            ar.pos += (size_t)len;
        kop_member *to = member_find(gr, mid);
        if (to == NULL)
            continue;
        mg_free(to->assignment);
        to->assignment = NULL;
        to->assignment_len = 0;
        if (len > 0) {
            to->assignment = mg_malloc((size_t)len);
            if (to->assignment != NULL) {
                memcpy(to->assignment, bytes, (size_t)len);
                to->assignment_len = (size_t)len;
            }
        }
    }
    gr->state = GS_STABLE;
    for (mg_link *l = gr->members.next; l != &gr->members; l = l->next) {
        kop_member *mb = MG_CONTAINER_OF(l, kop_member, link);
        if (mb->sync_req != NULL) {
            kop_req *sq = mb->sync_req;
            mb->sync_req = NULL;
            sync_reply(sq, KE_NONE, mb->assignment, mb->assignment_len);
        }
    }
}

/* ---- Heartbeat and LeaveGroup ---------------------------------------------------------------- */

void kop_handle_heartbeat(kop_req *q, kw_reader *r)
{
    kop_groups *g = q->c->k->groups;
    kw_str group_id = kw_read_string(r);
    int32_t generation = kw_read_i32(r);
    kw_str member_id = kw_read_string(r);
    if (q->version >= 3)
        kw_read_string(r);
    if (kw_reader_error(r) != MG_OK) {
        kop_conn_proto_error(q->c, "bad_request", "malformed Heartbeat request");
        kop_reply_none(q);
        return;
    }
    if (q->coord_error != KE_NONE) {
        simple_reply(q, q->coord_error);
        return;
    }
    kop_group *gr;
    kop_member *m;
    int16_t error = member_check(g, group_id, generation, member_id, &gr, &m);
    if (gr != NULL && gr->state == GS_PREPARING &&
        (error == KE_NONE || error == KE_ILLEGAL_GENERATION))
        error = KE_REBALANCE_IN_PROGRESS;
    simple_reply(q, error);
}

void kop_handle_leave_group(kop_req *q, kw_reader *r)
{
    kop_groups *g = q->c->k->groups;
    kw_str group_id = kw_read_string(r);
    kw_str member_id = kw_read_string(r);
    if (kw_reader_error(r) != MG_OK) {
        kop_conn_proto_error(q->c, "bad_request", "malformed LeaveGroup request");
        kop_reply_none(q);
        return;
    }
    if (q->coord_error != KE_NONE) {
        simple_reply(q, q->coord_error);
        return;
    }
    kop_group *gr = group_find(g, group_id);
    kop_member *m = gr != NULL ? member_find(gr, member_id) : NULL;
    if (m == NULL) {
        simple_reply(q, group_id.len <= 0 ? KE_INVALID_GROUP_ID : KE_UNKNOWN_MEMBER_ID);
        return;
    }
    MG_INFO("kafka: group %s: member %s left", gr->id, m->id);
    member_remove(g, gr, m);
    simple_reply(q, KE_NONE);
    if (gr->member_count == 0) {
        gr->state = GS_EMPTY;
        group_free_if_empty(g, gr);
        return;
    }
    rebalance_start(g, gr);
    if (all_joined(gr))
        join_complete(g, gr);
}

/* ---- DescribeGroups and ListGroups ----------------------------------------------------------- */

void kop_handle_describe_groups(kop_req *q, kw_reader *r)
{
    kop_groups *g = q->c->k->groups;
    int32_t n = kw_read_i32(r);
    size_t at = r->pos;
    for (int32_t i = 0; i < n && kw_reader_error(r) == MG_OK; i++)
        kw_read_string(r);
    if (q->version >= 3)
        kw_read_i8(r);
    if (kw_reader_error(r) != MG_OK || n < 0 || n > 10000) {
        kop_conn_proto_error(q->c, "bad_request", "malformed DescribeGroups request");
        kop_reply_none(q);
        return;
    }
    kw_reader names;
    kw_reader_init(&names, r->p + at, r->len - at);
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i32(&w, n);
    for (int32_t i = 0; i < n; i++) {
        kw_str id = kw_read_string(&names);
        kop_group *gr = group_find(g, id);
        int16_t error = id.len <= 0 ? KE_INVALID_GROUP_ID : KE_NONE;
        kw_write_i16(&w, error);
        kop_req_error(q, error);
        kw_write_i16(&w, (int16_t)(id.len > 0 ? id.len : 0));
        kw_write_bytes(&w, id.ptr, id.len > 0 ? (size_t)id.len : 0);
        /* A group with no members here is Empty (its offsets may live on in subscriptions). */
        kw_write_string(&w, gr != NULL ? state_names[gr->state] : (error ? "" : "Empty"));
        kw_write_string(&w, gr != NULL ? gr->protocol_type : "");
        kw_write_string(&w, gr != NULL && gr->state != GS_PREPARING ? gr->protocol : "");
        kw_write_i32(&w, gr != NULL ? (int32_t)gr->member_count : 0);
        for (mg_link *l = gr != NULL ? gr->members.next : NULL; gr != NULL && l != &gr->members;
             l = l->next) {
            kop_member *m = MG_CONTAINER_OF(l, kop_member, link);
            kw_write_string(&w, m->id);
            if (q->version >= 4)
                kw_write_string(&w, NULL);
            kw_write_string(&w, m->client_id);
            kw_write_string(&w, m->client_host);
            const member_protocol *mp = NULL;
            for (size_t j = 0; j < m->protocol_count; j++)
                if (strcmp(m->protocols[j].name, gr->protocol) == 0)
                    mp = &m->protocols[j];
            kw_write_i32(&w, mp != NULL ? (int32_t)mp->metadata_len : 0);
            if (mp != NULL)
                kw_write_bytes(&w, mp->metadata, mp->metadata_len);
            kw_write_i32(&w, (int32_t)m->assignment_len);
            kw_write_bytes(&w, m->assignment, m->assignment_len);
        }
        if (q->version >= 3)
            kw_write_i32(&w, INT32_MIN); /* authorized_operations: not computed */
    }
    kop_reply_end(q, &w);
}

void kop_handle_list_groups(kop_req *q, kw_reader *r)
{
    (void)r;
    kop_groups *g = q->c->k->groups;
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i16(&w, KE_NONE);
    kw_write_i32(&w, (int32_t)g->group_count);
    for (mg_link *l = g->groups.next; l != &g->groups; l = l->next) {
        kop_group *gr = MG_CONTAINER_OF(l, kop_group, link);
        kw_write_string(&w, gr->id);
        kw_write_string(&w, gr->protocol_type);
    }
    kop_reply_end(q, &w);
}

/* For offsets.c: the generation check of OffsetCommit. generation -1 with an empty member id is
 * a commit from outside any group (a "simple" consumer), accepted while the group has no
 * members. */
int16_t kop_group_commit_check(kop_groups *g, kw_str group_id, int32_t generation,
                               kw_str member_id);
int16_t kop_group_commit_check(kop_groups *g, kw_str group_id, int32_t generation, kw_str member_id)
{
    kop_group *gr = group_find(g, group_id);
    if (generation < 0 && member_id.len <= 0)
        return gr == NULL || gr->member_count == 0 ? KE_NONE : KE_UNKNOWN_MEMBER_ID;
    if (gr == NULL)
        return KE_UNKNOWN_MEMBER_ID;
    kop_member *m = member_find(gr, member_id);
    if (m == NULL)
        return KE_UNKNOWN_MEMBER_ID;
    m->last_seen_ms = now_ms(g);
    /* As Kafka's coordinator: while preparing a rebalance the members of the current generation
     * still commit (what they commit as their partitions are revoked is not lost); once the
     * join completed, a new generation is being handed out. */
    if (gr->state == GS_COMPLETING)
        return KE_REBALANCE_IN_PROGRESS;
    if (generation != gr->generation)
        return KE_ILLEGAL_GENERATION;
    return KE_NONE;
}
