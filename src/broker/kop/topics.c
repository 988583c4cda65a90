/*
 * Kafka topics and partitions as Pulsar topics (kop_int.h, "ONE LOG"), and the requests about
 * topics: Metadata (v0-4), CreateTopics (v0-4), DeleteTopics (v0-3).
 *
 * A Kafka topic t lives in public/default. It is partitioned when the partitioned-topic node
 * /admin/partitioned-topics/public/default/persistent/t exists ({"partitions": N}, the admin
 * API's format): its partitions are the topics t-partition-0 .. t-partition-(N-1). Otherwise it
 * exists when its managed ledger does, as one partition (0). A topic created from the Kafka side
 * with one partition is a plain topic, with more a partitioned one, so Pulsar clients see the
 * same shape Pulsar would have given it.
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int br_partitioned_path(const pw_topic_name *tn, char *dst, size_t cap);
int br_partitions_parse(const void *value, size_t len);

/* Kafka's longest topic name. */
#define KOP_TOPIC_NAME_MAX     249
/* Topics one Metadata, CreateTopics or DeleteTopics request may name. */
#define KOP_TOPICS_PER_REQUEST 10000
/* The largest partition count CreateTopics accepts (the admin API's limit). */
#define KOP_PARTITIONS_MAX     BR_ADMIN_PARTITIONS_MAX

static bool kafka_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > KOP_TOPIC_NAME_MAX)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

int32_t kop_node_id(const char *addr)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = addr; *p != '\0'; p++) {
        h ^= (unsigned char)*p;
        h *= 16777619u;
    }
    return (int32_t)(h & 0x7fffffffu);
}

int16_t kop_topic_name(const char *name, size_t len, int32_t partition, pw_topic_name *out)
{
    if (!kafka_name_ok(name, len))
        return KE_INVALID_TOPIC_EXCEPTION;
    char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
    if (partition >= 0)
        snprintf(full, sizeof(full), "persistent://public/default/%.*s-partition-%d", (int)len,
                 name, (int)partition);
    else
        snprintf(full, sizeof(full), "persistent://public/default/%.*s", (int)len, name);
    if (pw_topic_name_parse(full, out, NULL, 0) != MG_OK)
        return KE_INVALID_TOPIC_EXCEPTION;
    return KE_NONE;
}

kop_topic *kop_topic_of(br_topic *t)
{
    if (t->kop == NULL) {
        kop_topic *kt = mg_calloc(1, sizeof(*kt));
        if (kt == NULL)
            return NULL;
        kt->t = t;
        mg_list_init(&kt->waiters);
        mg_list_init(&kt->readers);
        t->kop = kt;
    }
    return t->kop;
}

/* ---- partitions of a topic ------------------------------------------------------------------- */

typedef struct parts_ctx {
    kop_server *k;
    pw_topic_name base;
    kop_partitions_cb cb;
    void *arg;
} parts_ctx;

static void parts_done(parts_ctx *x, int status, int partitions)
{
    x->cb(status, partitions, x->arg);
    mg_free(x);
}

static void ml_node_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)value;
    (void)len;
    (void)stat;
    parts_ctx *x = arg;
    if (status == MG_OK)
        parts_done(x, MG_OK, 0);
    else if (status == MG_ENOTFOUND)
        parts_done(x, MG_OK, -1);
    else
        parts_done(x, status, -1);
}

static void part_node_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    parts_ctx *x = arg;
    if (status == MG_OK) {
        int n = br_partitions_parse(value, len);
        parts_done(x, n > 0 ? MG_OK : MG_ECORRUPT, n > 0 ? n : -1);
        return;
    }
    if (status != MG_ENOTFOUND) {
        parts_done(x, status, -1);
        return;
    }
    br_topic *t = br_topic_find(x->k->b, x->base.full);
    if (t != NULL && t->state == BR_TOPIC_OPEN) {
        parts_done(x, MG_OK, 0);
        return;
    }
    char path[MD_PATH_BYTES_MAX];
    char ml[ML_NAME_BYTES_MAX];
    pw_topic_ml_name(&x->base, ml, sizeof(ml));
    snprintf(path, sizeof(path), "/managed-ledgers/%s", ml);
    int rc = md_get(x->k->b->md, path, ml_node_got, x);
    if (rc != MG_OK)
        parts_done(x, rc, -1);
}

int kop_topic_partitions(kop_server *k, const char *name, kop_partitions_cb cb, void *arg)
{
    parts_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL)
        return MG_ENOMEM;
    if (kop_topic_name(name, strlen(name), -1, &x->base) != KE_NONE) {
        mg_free(x);
        return MG_EINVAL;
    }
    x->k = k;
    x->cb = cb;
    x->arg = arg;
    char path[MD_PATH_BYTES_MAX];
    br_partitioned_path(&x->base, path, sizeof(path));
    int rc = md_get(k->b->md, path, part_node_got, x);
    if (rc != MG_OK)
        mg_free(x);
    return rc;
}

/* ---- opening a partition --------------------------------------------------------------------- */

typedef struct open_ctx {
    kop_server *k;
    char name[KOP_TOPIC_NAME_MAX + 1];
    int32_t partition;
    bool create;
    kop_resolve_cb cb;
    kop_name_cb name_cb; /* kop_partition_name: the name only, nothing opened */
    void *arg;
} open_ctx;

static int16_t open_error(int status)
{
    switch (status) {
    case MG_ELIMIT:
    case MG_ENOMEM:
        return KE_UNKNOWN_SERVER_ERROR;
    case MG_ESTATE:
    case MG_ECLOSED:
        return KE_LEADER_NOT_AVAILABLE;
    case MG_ENOTFOUND: /* the topic's namespace (public/default) does not exist */
        return KE_UNKNOWN_TOPIC_OR_PARTITION;
    default:
        return KE_NOT_LEADER_OR_FOLLOWER;
    }
}

static void partition_opened(int status, br_topic *t, void *arg)
{
    open_ctx *x = arg;
    if (status == MG_OK)
        x->cb(KE_NONE, t, x->arg);
    else
        x->cb(open_error(status), NULL, x->arg);
    mg_free(x);
}

static void open_topic(open_ctx *x, const pw_topic_name *tn)
{
    if (x->name_cb != NULL) {
        x->name_cb(KE_NONE, tn, x->arg);
        mg_free(x);
        return;
    }
    int rc = br_topic_get(x->k->b, tn, partition_opened, x);
    if (rc != MG_OK) {
        x->cb(open_error(rc), NULL, x->arg);
        mg_free(x);
    }
}

static void open_partitions_found(int status, int partitions, void *arg)
{
    open_ctx *x = arg;
    pw_topic_name tn;
    size_t len = strlen(x->name);
    if (status != MG_OK) {
        MG_WARN_LIMITED("kafka: cannot look topic %s up: %s", x->name, mg_strerror(status));
        if (x->name_cb != NULL)
            x->name_cb(KE_LEADER_NOT_AVAILABLE, NULL, x->arg);
        else
            x->cb(KE_LEADER_NOT_AVAILABLE, NULL, x->arg);
        mg_free(x);
        return;
    }
    if (partitions > 0 && x->partition < partitions) {
        kop_topic_name(x->name, len, x->partition, &tn);
        open_topic(x, &tn);
        return;
    }
    if ((partitions == 0 || (partitions < 0 && x->create)) && x->partition == 0) {
        kop_topic_name(x->name, len, -1, &tn);
        open_topic(x, &tn);
        return;
    }
    if (x->name_cb != NULL)
        x->name_cb(KE_UNKNOWN_TOPIC_OR_PARTITION, NULL, x->arg);
    else
        x->cb(KE_UNKNOWN_TOPIC_OR_PARTITION, NULL, x->arg);
    mg_free(x);
}

void kop_partition_name(kop_server *k, const char *name, size_t len, int32_t partition,
                        kop_name_cb cb, void *arg)
{
    pw_topic_name tn;
    int16_t err =
        partition < 0 ? KE_UNKNOWN_TOPIC_OR_PARTITION : kop_topic_name(name, len, partition, &tn);
    if (err != KE_NONE) {
        cb(err, NULL, arg);
        return;
    }
    open_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        cb(KE_UNKNOWN_SERVER_ERROR, NULL, arg);
        return;
    }
    x->k = k;
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    x->partition = partition;
    x->name_cb = cb;
    x->arg = arg;
    int rc = kop_topic_partitions(k, x->name, open_partitions_found, x);
    if (rc != MG_OK) {
        mg_free(x);
        cb(KE_UNKNOWN_SERVER_ERROR, NULL, arg);
    }
}

void kop_partition_open(kop_server *k, const char *name, size_t len, int32_t partition, bool create,
                        kop_resolve_cb cb, void *arg)
{
    pw_topic_name tn;
    int16_t err =
        partition < 0 ? KE_UNKNOWN_TOPIC_OR_PARTITION : kop_topic_name(name, len, partition, &tn);
    if (err != KE_NONE) {
        cb(err, NULL, arg);
        return;
    }
    /* Open already: no metadata read. */
    br_topic *t = br_topic_find(k->b, tn.full);
    if (t != NULL && t->state == BR_TOPIC_OPEN) {
        cb(KE_NONE, t, arg);
        return;
    }
    if (partition == 0) {
        kop_topic_name(name, len, -1, &tn);
        t = br_topic_find(k->b, tn.full);
        if (t != NULL && t->state == BR_TOPIC_OPEN) {
            cb(KE_NONE, t, arg);
            return;
        }
    }
    open_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        cb(KE_UNKNOWN_SERVER_ERROR, NULL, arg);
        return;
    }
    x->k = k;
    memcpy(x->name, name, len);
    x->name[len] = '\0';
    x->partition = partition;
    x->create = create;
    x->cb = cb;
    x->arg = arg;
    int rc = kop_topic_partitions(k, x->name, open_partitions_found, x);
    if (rc != MG_OK) {
        mg_free(x);
        cb(KE_UNKNOWN_SERVER_ERROR, NULL, arg);
    }
}

/* ---- Metadata -------------------------------------------------------------------------------- */

typedef struct meta_topic {
    char *name;
    int16_t error;
    int partitions;   /* 0: one (a plain topic) */
    int32_t *leaders; /* per partition: the owner's node id, -1 when not known */
} meta_topic;

/* A broker named in the answer. */
typedef struct meta_node {
    int32_t id;
    char host[128];
    int32_t port;
} meta_node;

typedef struct meta_ctx {
    kop_req *q;
    meta_topic *topics;
    size_t count, cap;
    size_t pending;
    bool auto_create;
    bool all;
    /* Listing every topic: the partitioned ones first, then the managed ledgers. */
    char **partitioned;
    size_t partitioned_count;
    bool leaders_phase; /* topics resolved: finding each partition's owner */
    meta_node *nodes;
    size_t node_count, node_cap;
} meta_ctx;

static void meta_free(meta_ctx *x)
{
    for (size_t i = 0; i < x->count; i++) {
        mg_free(x->topics[i].name);
        mg_free(x->topics[i].leaders);
    }
    mg_free(x->nodes);
    mg_free(x->topics);
    for (size_t i = 0; i < x->partitioned_count; i++)
        mg_free(x->partitioned[i]);
    mg_free(x->partitioned);
    mg_free(x);
}

static int meta_add(meta_ctx *x, const char *name, size_t len)
{
    if (x->count == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        meta_topic *v = mg_realloc(x->topics, cap * sizeof(*v));
        if (v == NULL)
            return MG_ENOMEM;
        x->topics = v;
        x->cap = cap;
    }
    char *s = mg_malloc(len + 1);
    if (s == NULL)
        return MG_ENOMEM;
    memcpy(s, name, len);
    s[len] = '\0';
    x->topics[x->count++] = (meta_topic){ s, KE_NONE, 0, NULL };
    return MG_OK;
}

static void write_brokers(const meta_ctx *x, kw_writer *w, int16_t version)
{
    kop_server *k = x->q->c->k;
    kw_write_i32(w, (int32_t)(1 + x->node_count));
    kw_write_i32(w, k->node_id);
    kw_write_string(w, k->advertised);
    kw_write_i32(w, k->port);
    if (version >= 1)
        kw_write_string(w, NULL); /* rack */
    for (size_t i = 0; i < x->node_count; i++) {
        kw_write_i32(w, x->nodes[i].id);
        kw_write_string(w, x->nodes[i].host);
        kw_write_i32(w, x->nodes[i].port);
        if (version >= 1)
            kw_write_string(w, NULL);
    }
}

static void meta_reply(meta_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    kop_server *k = q->c->k;
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 3)
        kw_write_i32(&w, 0); /* throttle_time_ms */
    write_brokers(x, &w, q->version);
    if (q->version >= 2)
        kw_write_string(&w, k->b->cluster);
    if (q->version >= 1)
        kw_write_i32(&w, k->node_id); /* controller */
    kw_write_i32(&w, (int32_t)x->count);
    for (size_t i = 0; i < x->count; i++) {
        meta_topic *m = &x->topics[i];
        kw_write_i16(&w, m->error);
        kop_req_error(q, m->error);
        kw_write_string(&w, m->name);
        if (q->version >= 1)
            kw_write_i8(&w, 0); /* is_internal */
        int n = m->error != KE_NONE ? 0 : (m->partitions > 0 ? m->partitions : 1);
        kw_write_i32(&w, n);
        for (int p = 0; p < n; p++) {
            int32_t leader = m->leaders != NULL ? m->leaders[p] : k->node_id;
            /* The bookies replicate: each partition has one replica, its owner, in sync. */
            kw_write_i16(&w, leader >= 0 ? KE_NONE : KE_LEADER_NOT_AVAILABLE);
            kw_write_i32(&w, p);
            kw_write_i32(&w, leader);
            kw_write_i32(&w, leader >= 0 ? 1 : 0);
            if (leader >= 0)
                kw_write_i32(&w, leader);
            kw_write_i32(&w, leader >= 0 ? 1 : 0);
            if (leader >= 0)
                kw_write_i32(&w, leader);
        }
    }
    kop_reply_end(q, &w);
    kop_conn_unref(conn);
    meta_free(x);
}

static void meta_leaders(meta_ctx *x);

static void meta_one_done(meta_ctx *x)
{
    MG_ASSERT(x->pending > 0);
    if (--x->pending > 0)
        return;
    if (!x->leaders_phase) {
        x->leaders_phase = true;
        meta_leaders(x);
        return;
    }
    meta_reply(x);
}

typedef struct leader_item {
    meta_ctx *x;
    size_t topic;
    int partition;
} leader_item;

static int32_t meta_node_add(meta_ctx *x, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    int32_t id = kop_node_id(addr);
    if (id == x->q->c->k->node_id)
        return id;
    for (size_t i = 0; i < x->node_count; i++)
        if (x->nodes[i].id == id)
            return id;
    if (x->node_count == x->node_cap) {
        size_t cap = x->node_cap ? x->node_cap * 2 : 4;
        meta_node *v = mg_realloc(x->nodes, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        x->nodes = v;
        x->node_cap = cap;
    }
    meta_node *nd = &x->nodes[x->node_count++];
    nd->id = id;
    snprintf(nd->host, sizeof(nd->host), "%.*s", (int)(colon - addr), addr);
    nd->port = atoi(colon + 1);
    return id;
}

static void leader_found(int status, const char *kafka_addr, void *arg)
{
    leader_item *it = arg;
    meta_ctx *x = it->x;
    int32_t id = -1;
    if (status == MG_OK)
        id = kafka_addr == NULL ? x->q->c->k->node_id : meta_node_add(x, kafka_addr);
    else
        MG_WARN_LIMITED("kafka: cannot find the owner of %s partition %d: %s",
                        x->topics[it->topic].name, it->partition, mg_strerror(status));
    x->topics[it->topic].leaders[it->partition] = id;
    mg_free(it);
    meta_one_done(x);
}

/* Each partition's leader is the broker that owns its bundle (the first broker asked claims a
 * bundle nobody owns, as a Pulsar lookup does). */
static void meta_leaders(meta_ctx *x)
{
    kop_server *k = x->q->c->k;
    x->pending = 1;
    for (size_t i = 0; i < x->count; i++) {
        meta_topic *m = &x->topics[i];
        if (m->error != KE_NONE)
            continue;
        int n = m->partitions > 0 ? m->partitions : 1;
        m->leaders = mg_calloc((size_t)n, sizeof(int32_t));
        if (m->leaders == NULL) {
            m->error = KE_UNKNOWN_SERVER_ERROR;
            continue;
        }
        for (int p = 0; p < n; p++) {
            m->leaders[p] = -1;
            pw_topic_name tn;
            leader_item *it = mg_calloc(1, sizeof(*it));
            if (it == NULL || kop_topic_name(m->name, strlen(m->name), m->partitions > 0 ? p : -1,
                                             &tn) != KE_NONE) {
                mg_free(it);
                continue;
            }
            it->x = x;
            it->topic = i;
            it->partition = p;
            x->pending++;
            if (br_owner_kafka(k->b, &tn, leader_found, it) != MG_OK) {
                mg_free(it);
                x->pending--;
            }
        }
    }
    meta_one_done(x);
}

typedef struct meta_item {
    meta_ctx *x;
    size_t i;
} meta_item;

static void meta_created(int16_t error, br_topic *t, void *arg)
{
    (void)t;
    meta_item *it = arg;
    meta_ctx *x = it->x;
    x->topics[it->i].error = error;
    x->topics[it->i].partitions = 0;
    mg_free(it);
    meta_one_done(x);
}

static void meta_create_owner(int status, const char *kafka_addr, void *arg)
{
    meta_item *it = arg;
    meta_ctx *x = it->x;
    meta_topic *m = &x->topics[it->i];
    if (status == MG_OK && kafka_addr == NULL) {
        kop_partition_open(x->q->c->k, m->name, strlen(m->name), 0, true, meta_created, it);
        return;
    }
    m->error = status == MG_OK ? KE_NONE : KE_LEADER_NOT_AVAILABLE;
    m->partitions = 0;
    mg_free(it);
    meta_one_done(x);
}

static void meta_found(int status, int partitions, void *arg)
{
    meta_item *it = arg;
    meta_ctx *x = it->x;
    meta_topic *m = &x->topics[it->i];
    if (status != MG_OK) {
        m->error = KE_LEADER_NOT_AVAILABLE;
    } else if (partitions >= 0) {
        m->partitions = partitions;
    } else if (x->auto_create) {
        /* Created as Kafka's auto.create.topics.enable does (one partition): a plain topic, by
         * the broker that owns its bundle (here, or the owner's first produce creates it). */
        pw_topic_name tn;
        kop_topic_name(m->name, strlen(m->name), -1, &tn);
        int rc = br_owner_kafka(x->q->c->k->b, &tn, meta_create_owner, it);
        if (rc == MG_OK)
            return;
        m->error = KE_LEADER_NOT_AVAILABLE;
    } else {
        m->error = KE_UNKNOWN_TOPIC_OR_PARTITION;
    }
    mg_free(it);
    meta_one_done(x);
}

static void meta_resolve_all(meta_ctx *x)
{
    x->pending = 1; /* held while starting */
    for (size_t i = 0; i < x->count; i++) {
        meta_topic *m = &x->topics[i];
        if (!kafka_name_ok(m->name, strlen(m->name))) {
            m->error = KE_INVALID_TOPIC_EXCEPTION;
            continue;
        }
        meta_item *it = mg_calloc(1, sizeof(*it));
        if (it == NULL) {
            m->error = KE_UNKNOWN_SERVER_ERROR;
            continue;
        }
        it->x = x;
        it->i = i;
        x->pending++;
        int rc = kop_topic_partitions(x->q->c->k, m->name, meta_found, it);
        if (rc != MG_OK) {
            mg_free(it);
            x->pending--;
            m->error = KE_UNKNOWN_SERVER_ERROR;
        }
    }
    meta_one_done(x);
}

/* "<p>-partition-<n>" where p is a partitioned topic: a partition, not a topic of its own. */
static bool is_partition_of_listed(const meta_ctx *x, const char *name)
{
    const char *s = strstr(name, "-partition-");
    while (s != NULL) {
        const char *d = s + strlen("-partition-");
        bool digits = *d != '\0';
        for (const char *e = d; *e != '\0'; e++)
            if (*e < '0' || *e > '9')
                digits = false;
        if (digits) {
            size_t plen = (size_t)(s - name);
            for (size_t i = 0; i < x->partitioned_count; i++)
                if (strlen(x->partitioned[i]) == plen && memcmp(x->partitioned[i], name, plen) == 0)
                    return true;
        }
        s = strstr(s + 1, "-partition-");
    }
    return false;
}

static void meta_ml_listed(int status, const char *const *names, size_t count, void *arg)
{
    meta_ctx *x = arg;
    if (status != MG_OK && status != MG_ENOTFOUND)
        MG_WARN_LIMITED("kafka: cannot list the topics of public/default: %s", mg_strerror(status));
    for (size_t i = 0; status == MG_OK && i < count && x->count < KOP_TOPICS_PER_REQUEST; i++) {
        if (is_partition_of_listed(x, names[i]) || !kafka_name_ok(names[i], strlen(names[i])))
            continue;
        if (meta_add(x, names[i], strlen(names[i])) != MG_OK)
            break;
    }
    for (size_t i = 0; i < x->partitioned_count && x->count < KOP_TOPICS_PER_REQUEST; i++)
        if (meta_add(x, x->partitioned[i], strlen(x->partitioned[i])) != MG_OK)
            break;
    meta_resolve_all(x);
}

static void meta_part_listed(int status, const char *const *names, size_t count, void *arg)
{
    meta_ctx *x = arg;
    if (status == MG_OK && count > 0) {
        x->partitioned = mg_calloc(count, sizeof(char *));
        for (size_t i = 0; x->partitioned != NULL && i < count; i++) {
            size_t n = strlen(names[i]);
            char *s = mg_malloc(n + 1);
            if (s == NULL)
                break;
            memcpy(s, names[i], n + 1);
            x->partitioned[x->partitioned_count++] = s;
        }
    }
    int rc = md_children(x->q->c->k->b->md, "/managed-ledgers/public/default/persistent",
                         meta_ml_listed, x);
    if (rc != MG_OK)
        meta_ml_listed(rc, NULL, 0, x);
}

void kop_handle_metadata(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    meta_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    int32_t n = kw_read_i32(r);
    /* v0: an empty list asks for every topic; v1+: null (-1) does, empty asks for none. */
    x->all = n < 0 || (q->version == 0 && n == 0);
    if (n > KOP_TOPICS_PER_REQUEST) {
        meta_free(x);
        kop_conn_proto_error(c, "too_many_topics", "Metadata naming too many topics");
        kop_reply_none(q);
        return;
    }
    for (int32_t i = 0; i < n && kw_reader_error(r) == MG_OK; i++) {
        kw_str s = kw_read_string(r);
        if (kw_reader_error(r) == MG_OK && s.len >= 0 && meta_add(x, s.ptr, (size_t)s.len) != MG_OK)
            break;
    }
    /* Kafka brokers create topics on Metadata (auto.create.topics.enable, true by default); from
     * v4 the client says whether it wants that. */
    x->auto_create = true;
    if (q->version >= 4)
        x->auto_create = kw_read_i8(r) != 0;
    if (kw_reader_error(r) != MG_OK || (size_t)(n > 0 ? n : 0) != x->count) {
        meta_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed Metadata request");
        kop_reply_none(q);
        return;
    }
    kop_conn_ref(c);
    if (!x->all) {
        meta_resolve_all(x);
        return;
    }
    x->auto_create = false;
    int rc = md_children(c->k->b->md, "/admin/partitioned-topics/public/default/persistent",
                         meta_part_listed, x);
    if (rc != MG_OK)
        meta_part_listed(rc, NULL, 0, x);
}

/* ---- CreateTopics ---------------------------------------------------------------------------- */

typedef struct create_topic {
    char name[KOP_TOPIC_NAME_MAX + 1];
    int32_t partitions;
    int16_t error;
    const char *message;
} create_topic;

typedef struct create_ctx {
    kop_req *q;
    create_topic *topics;
    size_t count;
    size_t next;
    bool validate_only;
} create_ctx;

static void create_next(create_ctx *x);

static void create_reply(create_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 2)
        kw_write_i32(&w, 0);
    kw_write_i32(&w, (int32_t)x->count);
    for (size_t i = 0; i < x->count; i++) {
        create_topic *ct = &x->topics[i];
        kw_write_string(&w, ct->name);
        kw_write_i16(&w, ct->error);
        kop_req_error(q, ct->error);
        if (q->version >= 1)
            kw_write_string(&w, ct->error != KE_NONE ? ct->message : NULL);
    }
    kop_reply_end(q, &w);
    kop_conn_unref(conn);
    mg_free(x->topics);
    mg_free(x);
}

static void create_node_done(int status, const char *path, void *arg)
{
    (void)path;
    create_ctx *x = arg;
    create_topic *ct = &x->topics[x->next - 1];
    if (status == MG_EEXIST) {
        ct->error = KE_TOPIC_ALREADY_EXISTS;
        ct->message = "the topic already exists";
    } else if (status != MG_OK) {
        ct->error = KE_UNKNOWN_SERVER_ERROR;
        ct->message = mg_strerror(status);
    }
    create_next(x);
}

static void create_plain_done(int16_t error, br_topic *t, void *arg)
{
    (void)t;
    create_ctx *x = arg;
    create_topic *ct = &x->topics[x->next - 1];
    if (error != KE_NONE) {
        ct->error = error;
        ct->message = "the topic could not be created";
    }
    create_next(x);
}

static void create_exists_checked(int status, int partitions, void *arg)
{
    create_ctx *x = arg;
    create_topic *ct = &x->topics[x->next - 1];
    if (status != MG_OK) {
        ct->error = KE_UNKNOWN_SERVER_ERROR;
        ct->message = mg_strerror(status);
    } else if (partitions >= 0) {
        ct->error = KE_TOPIC_ALREADY_EXISTS;
        ct->message = "the topic already exists";
    } else if (!x->validate_only) {
        kop_server *k = x->q->c->k;
        if (ct->partitions == 1) {
            kop_partition_open(k, ct->name, strlen(ct->name), 0, true, create_plain_done, x);
            return;
        }
        pw_topic_name tn;
        kop_topic_name(ct->name, strlen(ct->name), -1, &tn);
        char path[MD_PATH_BYTES_MAX];
        br_partitioned_path(&tn, path, sizeof(path));
        char value[64];
        int n = snprintf(value, sizeof(value), "{\"partitions\":%d}", (int)ct->partitions);
        int rc =
            md_create(k->b->md, path, value, (size_t)n, MD_CREATE_PARENTS, create_node_done, x);
        if (rc == MG_OK)
            return;
        ct->error = KE_UNKNOWN_SERVER_ERROR;
        ct->message = mg_strerror(rc);
    }
    create_next(x);
}

static void create_next(create_ctx *x)
{
    while (x->next < x->count) {
        create_topic *ct = &x->topics[x->next++];
        if (ct->error != KE_NONE)
            continue;
        int rc = kop_topic_partitions(x->q->c->k, ct->name, create_exists_checked, x);
        if (rc == MG_OK)
            return;
        ct->error = KE_UNKNOWN_SERVER_ERROR;
        ct->message = mg_strerror(rc);
    }
    create_reply(x);
}

void kop_handle_create_topics(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    int32_t n = kw_read_i32(r);
    if (n < 0 || n > KOP_TOPICS_PER_REQUEST) {
        kop_conn_proto_error(c, "bad_request", "malformed CreateTopics request");
        kop_reply_none(q);
        return;
    }
    create_ctx *x = mg_calloc(1, sizeof(*x));
    create_topic *v = mg_calloc(n > 0 ? (size_t)n : 1, sizeof(*v));
    if (x == NULL || v == NULL) {
        mg_free(x);
        mg_free(v);
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    x->topics = v;
    x->count = (size_t)n;
    for (int32_t i = 0; i < n && kw_reader_error(r) == MG_OK; i++) {
        create_topic *ct = &v[i];
        kw_str name = kw_read_string(r);
        int32_t partitions = kw_read_i32(r);
        int16_t replication = kw_read_i16(r);
        int32_t assignments = kw_read_i32(r);
        for (int32_t a = 0; a < assignments && kw_reader_error(r) == MG_OK; a++) {
            kw_read_i32(r);
            int32_t ids = kw_read_i32(r);
            for (int32_t b = 0; b < ids && kw_reader_error(r) == MG_OK; b++)
                kw_read_i32(r);
        }
        int32_t configs = kw_read_i32(r);
        for (int32_t a = 0; a < configs && kw_reader_error(r) == MG_OK; a++) {
            kw_read_string(r);
            kw_read_string(r);
        }
        if (kw_reader_error(r) != MG_OK)
            break;
        size_t len = name.len > 0 ? (size_t)name.len : 0;
        if (len > KOP_TOPIC_NAME_MAX)
            len = KOP_TOPIC_NAME_MAX;
        memcpy(ct->name, name.ptr != NULL ? name.ptr : "", len);
        ct->name[len] = '\0';
        ct->partitions = partitions == -1 ? 1 : partitions;
        if (!kafka_name_ok(name.ptr != NULL ? name.ptr : "", name.len > 0 ? (size_t)name.len : 0)) {
            ct->error = KE_INVALID_TOPIC_EXCEPTION;
            ct->message = "a topic name is 1 to 249 of a-z A-Z 0-9 . _ -";
        } else if (ct->partitions < 1 || ct->partitions > KOP_PARTITIONS_MAX) {
            ct->error = KE_INVALID_PARTITIONS;
            ct->message = "the number of partitions is out of range";
        } else if (assignments > 0) {
            ct->error = KE_INVALID_REQUEST;
            ct->message = "replica assignments are not supported: the bookies replicate";
        } else if (replication != -1 && replication < 1) {
            ct->error = KE_INVALID_REPLICATION_FACTOR;
            ct->message = "the replication factor must be at least 1";
        }
    }
    kw_read_i32(r); /* timeout_ms */
    if (q->version >= 1)
        x->validate_only = kw_read_i8(r) != 0;
    if (kw_reader_error(r) != MG_OK) {
        mg_free(v);
        mg_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed CreateTopics request");
        kop_reply_none(q);
        return;
    }
    kop_conn_ref(c);
    create_next(x);
}

/* ---- DeleteTopics ---------------------------------------------------------------------------- */

typedef struct delete_topic {
    char name[KOP_TOPIC_NAME_MAX + 1];
    int16_t error;
} delete_topic;

typedef struct delete_ctx {
    kop_req *q;
    delete_topic *topics;
    size_t count, next;
    int partitions, next_partition;
} delete_ctx;

static void delete_next(delete_ctx *x);
static void delete_partition_next(delete_ctx *x);

static void delete_reply(delete_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 1)
        kw_write_i32(&w, 0);
    kw_write_i32(&w, (int32_t)x->count);
    for (size_t i = 0; i < x->count; i++) {
        kw_write_string(&w, x->topics[i].name);
        kw_write_i16(&w, x->topics[i].error);
        kop_req_error(q, x->topics[i].error);
    }
    kop_reply_end(q, &w);
    kop_conn_unref(conn);
    mg_free(x->topics);
    mg_free(x);
}

static void delete_step_done(int status, void *arg)
{
    delete_ctx *x = arg;
    if (status != MG_OK && status != MG_ENOTFOUND)
        x->topics[x->next - 1].error = KE_UNKNOWN_SERVER_ERROR;
    if (x->partitions > 0)
        delete_partition_next(x);
    else
        delete_next(x);
}

/* Deletes one Pulsar topic: closed with its data when open, else its stored data. Returns
 * whether the callback will run. */
static bool delete_one(delete_ctx *x, const pw_topic_name *tn)
{
    br_broker *b = x->q->c->k->b;
    br_topic *t = br_topic_find(b, tn->full);
    if (t != NULL && t->state == BR_TOPIC_CLOSING)
        return false;
    if (t != NULL) {
        br_topic_close(t, true, delete_step_done, x);
        return true;
    }
    return br_topic_delete_stored(b, tn, delete_step_done, x) == MG_OK;
}

static void delete_node_done(int status, void *arg)
{
    delete_ctx *x = arg;
    x->partitions = 0;
    delete_step_done(status, x);
}

static void delete_partition_next(delete_ctx *x)
{
    delete_topic *dt = &x->topics[x->next - 1];
    pw_topic_name tn;
    while (x->next_partition < x->partitions) {
        kop_topic_name(dt->name, strlen(dt->name), x->next_partition++, &tn);
        if (delete_one(x, &tn))
            return;
    }
    kop_topic_name(dt->name, strlen(dt->name), -1, &tn);
    char path[MD_PATH_BYTES_MAX];
    br_partitioned_path(&tn, path, sizeof(path));
    int rc = md_delete(x->q->c->k->b->md, path, MD_VERSION_ANY, delete_node_done, x);
    if (rc != MG_OK)
        delete_node_done(rc, x);
}

static void delete_found(int status, int partitions, void *arg)
{
    delete_ctx *x = arg;
    delete_topic *dt = &x->topics[x->next - 1];
    if (status != MG_OK) {
        dt->error = KE_UNKNOWN_SERVER_ERROR;
    } else if (partitions < 0) {
        dt->error = KE_UNKNOWN_TOPIC_OR_PARTITION;
    } else if (partitions > 0) {
        x->partitions = partitions;
        x->next_partition = 0;
        delete_partition_next(x);
        return;
    } else {
        pw_topic_name tn;
        kop_topic_name(dt->name, strlen(dt->name), -1, &tn);
        if (delete_one(x, &tn))
            return;
    }
    delete_next(x);
}

static void delete_next(delete_ctx *x)
{
    while (x->next < x->count) {
        delete_topic *dt = &x->topics[x->next++];
        if (dt->error != KE_NONE)
            continue;
        if (kop_topic_partitions(x->q->c->k, dt->name, delete_found, x) == MG_OK)
            return;
        dt->error = KE_UNKNOWN_SERVER_ERROR;
    }
    delete_reply(x);
}

void kop_handle_delete_topics(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    int32_t n = kw_read_i32(r);
    if (n < 0 || n > KOP_TOPICS_PER_REQUEST) {
        kop_conn_proto_error(c, "bad_request", "malformed DeleteTopics request");
        kop_reply_none(q);
        return;
    }
    delete_ctx *x = mg_calloc(1, sizeof(*x));
    delete_topic *v = mg_calloc(n > 0 ? (size_t)n : 1, sizeof(*v));
    if (x == NULL || v == NULL) {
        mg_free(x);
        mg_free(v);
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    x->topics = v;
    x->count = (size_t)n;
    for (int32_t i = 0; i < n && kw_reader_error(r) == MG_OK; i++) {
        kw_str s = kw_read_string(r);
        size_t len = s.len > 0 ? (size_t)s.len : 0;
        if (len > KOP_TOPIC_NAME_MAX)
            len = KOP_TOPIC_NAME_MAX;
        if (s.ptr != NULL)
            memcpy(v[i].name, s.ptr, len);
        if (s.ptr == NULL || !kafka_name_ok(s.ptr, s.len > 0 ? (size_t)s.len : 0))
            v[i].error = KE_INVALID_TOPIC_EXCEPTION;
    }
    kw_read_i32(r); /* timeout_ms */
    if (kw_reader_error(r) != MG_OK) {
        mg_free(v);
        mg_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed DeleteTopics request");
        kop_reply_none(q);
        return;
    }
    kop_conn_ref(c);
    delete_next(x);
}
