/*
 * Tenants and namespaces: their metadata, their admin REST routes, and the cache of every
 * namespace's policies that the rest of the broker reads (namespace.h).
 *
 * METADATA (Pulsar's paths and JSON; the same keys in RocksDB and ZooKeeper)
 *   /admin/policies/<tenant>        TenantInfo {"adminRoles": [...], "allowedClusters": [...]}
 *   /admin/policies/<tenant>/<ns>   Policies {"bundles": {...}, "backlog_quota_map": {...},
 *                                   "retention_policies": {...}, "message_ttl_in_seconds": N,
 *                                   "deleted": false, ...}
 * A namespace node is a child of its tenant's, so a namespace is created without
 * MD_CREATE_PARENTS (a missing tenant answers MG_ENOTFOUND, and a tenant deleted meanwhile is
 * never brought back empty) and a tenant with namespaces cannot be deleted (MG_ENOTEMPTY).
 * Every update is a compare-and-set on the node's version, tried again on a conflict. Fields of
 * the Policies this broker does not use are kept as they were written.
 *
 * public/default exists from the start: br_ns_start creates the tenant public and the
 * namespace public/default when they are missing (MG_EEXIST: another broker, or an earlier
 * start, did). Then metadata written before tenants existed is brought along: a namespace that
 * holds topics (managed ledgers or partitioned topics) without its nodes gets them. Checks that
 * arrive meanwhile wait for that first attempt; a failed attempt is made again every
 * BR_NS_RETRY_MS.
 *
 * EXISTENCE. A topic opens only in a namespace that exists and is not being deleted:
 * br_ns_check, called before a topic is opened (topic.c) and before lookups answer (lookup.c,
 * the admin routes), answers from the cache, or reads the namespace's node into it. A
 * namespace that does not exist is not cached, so its creation anywhere is seen at once.
 *
 * THE CACHE. One entry per namespace a topic was opened in (or looked up), holding its parsed
 * policies and the node's version, at most BR_NAMESPACES_CACHED_MAX. Entry states:
 *
 *     (none) --br_ns_check--> LOADING --node read--> READY (watch armed) --node deleted--> (none)
 *                                 \--missing / error--> (none); the checks waiting get it
 *
 * A READY entry is kept fresh by a one-shot watch on its node, armed again by the read that
 * each firing makes (md_get_watch), so another broker's change is seen within a round trip.
 * A change made through this broker's REST routes is applied at once from the written value;
 * the watch then finds the same version and changes nothing. Every change of a READY entry
 * (policies, deletion) calls br_policies_changed; a namespace marked deleted or gone closes
 * this broker's open topics in it. A watch read that fails (the session down) is made again
 * every BR_NS_RETRY_MS.
 *
 * Callbacks of the metadata store hold a context naming the entry by key and id, never a
 * pointer into the table, and the table (br_ns_cache) lives until the last such context is
 * gone: watches fire with MD_EVENT_WATCH_LOST only when the metadata client closes, after the
 * broker. Threads: all on the broker's loop.
 */
#include "broker/broker_int.h"
#include "broker/namespace.h"

#include "broker/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"
#include "pulsar/limits.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLICIES_ROOT "/admin/policies"
#define NS_KEY_BYTES  (MG_PULSAR_TENANT_BYTES_MAX + MG_PULSAR_NAMESPACE_BYTES_MAX + 2)
#define NS_BUCKETS    256u

/* ---- the cache ------------------------------------------------------------------------------ */

typedef struct ns_waiter {
    struct ns_waiter *next;
    br_ns_cb cb;
    void *arg;
    char tenant[MG_PULSAR_TENANT_BYTES_MAX + 1]; /* deferred checks (booting) only */
    char ns[MG_PULSAR_NAMESPACE_BYTES_MAX + 1];
} ns_waiter;

typedef enum ns_state { NS_LOADING, NS_READY } ns_state;

typedef struct ns_entry {
    struct ns_entry *next;  /* bucket chain */
    char key[NS_KEY_BYTES]; /* "tenant/ns" */
    char tenant[MG_PULSAR_TENANT_BYTES_MAX + 1];
    char ns[MG_PULSAR_NAMESPACE_BYTES_MAX + 1];
    uint64_t id; /* distinguishes this entry from an earlier one of the same key */
    ns_state state;
    br_ns_policies pol;
    bool deleted;       /* "deleted": true, a forced delete is under way */
    int64_t version;    /* of the node the policies were read from */
    bool rearm_pending; /* the watch read failed: BR_NS_RETRY_MS */
    ns_waiter *waiters;
} ns_entry;

typedef struct br_ns_cache {
    br_broker *b; /* NULL once the broker closed */
    int refs;     /* the broker's, and one per metadata callback outstanding */
    uint64_t next_id;
    ns_entry *buckets[NS_BUCKETS];
    size_t count;
    bool booting;           /* the first attempt at public/default has not come back */
    bool boot_done;         /* public/default known to exist */
    ns_waiter *deferred;    /* checks that arrived while booting */
    uv_timer_t retry_timer; /* bootstrap and watch re-arming */
    bool timer_armed;
    void (*closed_cb)(void *arg); /* br_ns_close's, once the timer closed */
    void *closed_arg;
} br_ns_cache;

/* What a metadata callback of the cache holds. */
typedef struct ns_ctx {
    br_ns_cache *cache;
    char key[NS_KEY_BYTES];
    uint64_t id;
} ns_ctx;

static uint32_t key_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void make_key(char *dst, const char *tenant, const char *ns)
{
    snprintf(dst, NS_KEY_BYTES, "%s/%s", tenant, ns);
}

static ns_entry *entry_find(br_ns_cache *nc, const char *key)
{
    for (ns_entry *e = nc->buckets[key_hash(key) % NS_BUCKETS]; e != NULL; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void entry_remove(br_ns_cache *nc, ns_entry *e)
{
    for (ns_entry **pp = &nc->buckets[key_hash(e->key) % NS_BUCKETS]; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            nc->count--;
            return;
        }
    }
}

static void cache_unref(br_ns_cache *nc)
{
    MG_ASSERT(nc->refs > 0);
    if (--nc->refs == 0)
        mg_free(nc);
}

static ns_ctx *ctx_new(br_ns_cache *nc, const ns_entry *e)
{
    ns_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->cache = nc;
    snprintf(x->key, sizeof(x->key), "%s", e->key);
    x->id = e->id;
    nc->refs++;
    return x;
}

/* The entry x names, if it is still the one x was made for. Frees x (and its reference) when
 * it is not, or when the broker closed. */
static ns_entry *ctx_entry(ns_ctx *x)
{
    br_ns_cache *nc = x->cache;
    ns_entry *e = nc->b != NULL ? entry_find(nc, x->key) : NULL;
    if (e != NULL && e->id == x->id)
        return e;
    mg_free(x);
    cache_unref(nc);
    return NULL;
}

static void ctx_free(ns_ctx *x)
{
    br_ns_cache *nc = x->cache;
    mg_free(x);
    cache_unref(nc);
}

/* ---- policies JSON ----------------------------------------------------------------------------
 */

static const char *const backlog_policy_names[] = {
    [BR_BACKLOG_PRODUCER_REQUEST_HOLD] = "producer_request_hold",
    [BR_BACKLOG_PRODUCER_EXCEPTION] = "producer_exception",
    [BR_BACKLOG_CONSUMER_BACKLOG_EVICTION] = "consumer_backlog_eviction",
};

static int backlog_policy_parse(const char *s, br_backlog_policy *out)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, backlog_policy_names[i]) == 0) {
            *out = (br_backlog_policy)i;
            return MG_OK;
        }
    }
    return MG_EINVAL;
}

static int64_t int_field(const json_t *obj, const char *name)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, name) : NULL;
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : BR_POLICY_UNSET;
}

/* Reads the fields the broker uses from a stored Policies object; what is missing or malformed
 * stays unset (the broker's defaults apply). */
static void policies_from_json(const json_t *root, br_ns_policies *p, bool *deleted)
{
    p->retention_time_minutes = BR_POLICY_UNSET;
    p->retention_size_mb = BR_POLICY_UNSET;
    p->message_ttl_seconds = BR_POLICY_UNSET;
    p->backlog_limit_bytes = BR_POLICY_UNSET;
    p->backlog_size_policy = BR_BACKLOG_PRODUCER_REQUEST_HOLD;
    p->backlog_limit_seconds = BR_POLICY_UNSET;
    p->backlog_age_policy = BR_BACKLOG_PRODUCER_REQUEST_HOLD;
    *deleted = json_is_true(json_object_get(root, "deleted"));
    const json_t *ret = json_object_get(root, "retention_policies");
    if (json_is_object(ret)) {
        p->retention_time_minutes = int_field(ret, "retentionTimeInMinutes");
        p->retention_size_mb = int_field(ret, "retentionSizeInMB");
    }
    p->message_ttl_seconds = int_field(root, "message_ttl_in_seconds");
    const json_t *map = json_object_get(root, "backlog_quota_map");
    const json_t *size = json_object_get(map, "destination_storage");
    if (json_is_object(size)) {
        p->backlog_limit_bytes = int_field(size, "limitSize");
        if (p->backlog_limit_bytes == BR_POLICY_UNSET)
            p->backlog_limit_bytes = int_field(size, "limit");
        const json_t *pol = json_object_get(size, "policy");
        if (json_is_string(pol))
            backlog_policy_parse(json_string_value(pol), &p->backlog_size_policy);
    }
    const json_t *age = json_object_get(map, "message_age");
    if (json_is_object(age)) {
        p->backlog_limit_seconds = int_field(age, "limitTime");
        const json_t *pol = json_object_get(age, "policy");
        if (json_is_string(pol))
            backlog_policy_parse(json_string_value(pol), &p->backlog_age_policy);
    }
}

/* ---- applying what the metadata says ------------------------------------------------------- */

/* Closes this broker's open topics of tenant/ns (their clients look them up again and are
 * refused). */
static void close_ns_topics(br_broker *b, const char *tenant, const char *ns)
{
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        br_topic *t = b->topics.buckets[i];
        while (t != NULL) {
            br_topic *next = t->hash_next;
            if (t->state != BR_TOPIC_CLOSING && strcmp(t->name.tenant, tenant) == 0 &&
                strcmp(t->name.ns, ns) == 0) {
                MG_INFO("broker: closing topic %s: its namespace is deleted", t->name.full);
                br_topic_close(t, false, NULL, NULL);
            }
            t = next;
        }
    }
}

static void wake_waiters(ns_entry *e, int status)
{
    ns_waiter *w = e->waiters;
    e->waiters = NULL;
    while (w != NULL) {
        ns_waiter *next = w->next;
        w->cb(status, w->arg);
        mg_free(w);
        w = next;
    }
}

/* The node of e now holds value (version): parse it into e if newer. close_topics: a namespace
 * now marked deleted closes its topics here (a forced delete through this broker closes them
 * itself, deleting their data). */
static void entry_apply(br_ns_cache *nc, ns_entry *e, const void *value, size_t len,
                        int64_t version, bool close_topics)
{
    if (e->state == NS_READY && version <= e->version)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(value, len, 0, &jerr);
    if (!json_is_object(root))
        MG_WARN("broker: the policies of namespace %s do not parse (%s): the defaults apply",
                e->key, root == NULL ? jerr.text : "not a JSON object");
    bool was_deleted = e->deleted;
    bool deleted = false;
    policies_from_json(json_is_object(root) ? root : NULL, &e->pol, &deleted);
    json_decref(root);
    bool first = e->state == NS_LOADING;
    e->state = NS_READY;
    e->version = version;
    e->deleted = deleted;
    if (first)
        return;
    br_broker *b = nc->b;
    if (deleted && !was_deleted && close_topics)
        close_ns_topics(b, e->tenant, e->ns);
    br_policies_changed(b, e->tenant, e->ns);
}

/* The namespace's node is gone: the entry goes, and so do the namespace's open topics. */
static void entry_gone(br_ns_cache *nc, ns_entry *e)
{
    br_broker *b = nc->b;
    char tenant[sizeof(e->tenant)], ns[sizeof(e->ns)];
    memcpy(tenant, e->tenant, sizeof(tenant));
    memcpy(ns, e->ns, sizeof(ns));
    bool was_ready = e->state == NS_READY;
    entry_remove(nc, e);
    wake_waiters(e, MG_ENOTFOUND);
    mg_free(e);
    if (!was_ready)
        return;
    MG_INFO("broker: namespace %s/%s is deleted", tenant, ns);
    close_ns_topics(b, tenant, ns);
    br_policies_changed(b, tenant, ns);
}

static void watch_fired(md_event_type type, const char *path, void *arg);
static void watch_read(int status, const void *value, size_t len, const md_stat *stat, void *arg);
static void retry_arm(br_ns_cache *nc);

static void ns_path(char *dst, size_t cap, const char *tenant, const char *ns)
{
    snprintf(dst, cap, POLICIES_ROOT "/%s/%s", tenant, ns);
}

/* Reads e's node and leaves a watch on it. On failure to ask, tries again later. */
static void entry_arm(br_ns_cache *nc, ns_entry *e)
{
    e->rearm_pending = false;
    ns_ctx *wx = ctx_new(nc, e);
    ns_ctx *rx = ctx_new(nc, e);
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), e->tenant, e->ns);
    int rc = wx != NULL && rx != NULL
                 ? md_get_watch(nc->b->md, path, watch_fired, wx, watch_read, rx)
                 : MG_ENOMEM;
    if (rc == MG_OK)
        return;
    if (wx != NULL)
        ctx_free(wx);
    if (rx != NULL)
        ctx_free(rx);
    MG_WARN_LIMITED("broker: cannot watch the policies of namespace %s: %s", e->key,
                    mg_strerror(rc));
    e->rearm_pending = true;
    retry_arm(nc);
}

static void watch_fired(md_event_type type, const char *path, void *arg)
{
    (void)type;
    (void)path;
    ns_ctx *x = arg;
    ns_entry *e = ctx_entry(x);
    if (e == NULL)
        return;
    br_ns_cache *nc = x->cache;
    ctx_free(x);
    entry_arm(nc, e);
}

static void watch_read(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    ns_ctx *x = arg;
    ns_entry *e = ctx_entry(x);
    if (e == NULL)
        return;
    br_ns_cache *nc = x->cache;
    ctx_free(x);
    if (status == MG_OK) {
        entry_apply(nc, e, value, len, stat->version, true);
    } else if (status == MG_ENOTFOUND) {
        entry_gone(nc, e);
    } else if (status != MG_ECLOSED) {
        MG_WARN_LIMITED("broker: cannot read the policies of namespace %s: %s", e->key,
                        mg_strerror(status));
        e->rearm_pending = true;
        retry_arm(nc);
    }
}

static void load_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    ns_ctx *x = arg;
    ns_entry *e = ctx_entry(x);
    if (e == NULL)
        return;
    br_ns_cache *nc = x->cache;
    ctx_free(x);
    if (status != MG_OK) {
        entry_remove(nc, e);
        wake_waiters(e, status);
        mg_free(e);
        return;
    }
    entry_apply(nc, e, value, len, stat->version, false);
    entry_arm(nc, e);
    wake_waiters(e, e->deleted ? MG_ENOTFOUND : MG_OK);
}

/* ---- public/default, and retries ------------------------------------------------------------ */

static void boot_start(br_ns_cache *nc);

static void retry_tick(uv_timer_t *t)
{
    br_ns_cache *nc = t->data;
    nc->timer_armed = false;
    if (nc->b == NULL)
        return;
    if (!nc->boot_done && !nc->booting)
        boot_start(nc);
    for (size_t i = 0; i < NS_BUCKETS; i++)
        for (ns_entry *e = nc->buckets[i]; e != NULL; e = e->next)
            if (e->rearm_pending && e->state == NS_READY)
                entry_arm(nc, e);
}

static void retry_arm(br_ns_cache *nc)
{
    if (nc->timer_armed || nc->b == NULL)
        return;
    nc->timer_armed = true;
    uv_timer_start(&nc->retry_timer, retry_tick, BR_NS_RETRY_MS, 0);
}

static void boot_finished(br_ns_cache *nc, int status)
{
    nc->booting = false;
    if (status == MG_OK || status == MG_EEXIST) {
        nc->boot_done = true;
    } else {
        MG_WARN("broker: cannot create the namespace public/default: %s (trying again)",
                mg_strerror(status));
        retry_arm(nc);
    }
    /* Checks that waited for the first attempt go on, whatever its result. */
    ns_waiter *w = nc->deferred;
    nc->deferred = NULL;
    while (w != NULL) {
        ns_waiter *next = w->next;
        int rc = br_ns_check(nc->b, w->tenant, w->ns, w->cb, w->arg);
        if (rc != MG_OK)
            w->cb(rc, w->arg);
        mg_free(w);
        w = next;
    }
}

static int default_policies(br_broker *b, const json_t *given, char **out);
static int default_tenant(br_broker *b, const json_t *given, char **out);
static int names_check(const char *tenant, const char *ns, char *err, size_t err_size);
static void names_free(char **v, size_t n);
static char **names_copy(const char *const *names, size_t count);

/* Metadata written before tenants and namespaces existed: every namespace that holds topics (a
 * child under /managed-ledgers/<t>/<ns>/persistent or /admin/partitioned-topics/<t>/<ns>/
 * persistent) gets its tenant and namespace nodes when they are missing, so its topics keep
 * working. One pass at start, after public/default; checks wait for it. */
typedef struct migrate {
    br_ns_cache *nc;
    int root; /* 0: /managed-ledgers, 1: /admin/partitioned-topics */
    char **tenants;
    size_t tenant_count, next_tenant;
    char **nss;
    size_t ns_count, next_ns;
} migrate;

static const char *const migrate_roots[] = { "/managed-ledgers", "/admin/partitioned-topics" };

static void mig_root(migrate *m);
static void mig_next_tenant(migrate *m);
static void mig_next_ns(migrate *m);

/* Ends the pass with status (the whole start-up attempt is made again after a failure). */
static void mig_end(migrate *m, int status)
{
    br_ns_cache *nc = m->nc;
    names_free(m->tenants, m->tenant_count);
    names_free(m->nss, m->ns_count);
    mg_free(m);
    if (nc->b != NULL)
        boot_finished(nc, status);
    cache_unref(nc);
}

/* Whether m may go on: the broker did not close, and status is a result it goes on after. */
static bool mig_go_on(migrate *m, int status)
{
    if (m->nc->b == NULL) {
        mig_end(m, MG_ECLOSED);
        return false;
    }
    if (status != MG_OK && status != MG_ENOTFOUND && status != MG_EEXIST) {
        mig_end(m, status);
        return false;
    }
    return true;
}

static const char *mig_tenant(const migrate *m)
{
    return m->tenants[m->next_tenant - 1];
}

static void mig_ns_created(int status, const char *path, void *arg)
{
    migrate *m = arg;
    if (status == MG_OK)
        MG_INFO("broker: namespace %s/%s created for the topics it already holds", mig_tenant(m),
                m->nss[m->next_ns - 1]);
    if (mig_go_on(m, status))
        mig_next_ns(m);
}

static void mig_tenant_created(int status, const char *path, void *arg)
{
    (void)path;
    migrate *m = arg;
    if (!mig_go_on(m, status))
        return;
    char *value = NULL;
    char ns_node[MD_PATH_BYTES_MAX];
    ns_path(ns_node, sizeof(ns_node), mig_tenant(m), m->nss[m->next_ns - 1]);
    int rc = default_policies(m->nc->b, NULL, &value);
    if (rc == MG_OK)
        rc = md_create(m->nc->b->md, ns_node, value, strlen(value), 0, mig_ns_created, m);
    free(value);
    if (rc != MG_OK)
        mig_end(m, rc);
}

static void mig_topics_listed(int status, const char *const *names, size_t count, void *arg)
{
    (void)names;
    migrate *m = arg;
    if (!mig_go_on(m, status))
        return;
    if (status != MG_OK || count == 0) {
        mig_next_ns(m);
        return;
    }
    char *value = NULL;
    char node[MD_PATH_BYTES_MAX];
    snprintf(node, sizeof(node), POLICIES_ROOT "/%s", mig_tenant(m));
    int rc = default_tenant(m->nc->b, NULL, &value);
    if (rc == MG_OK)
        rc = md_create(m->nc->b->md, node, value, strlen(value), MD_CREATE_PARENTS,
                       mig_tenant_created, m);
    free(value);
    if (rc != MG_OK)
        mig_end(m, rc);
}

static void mig_next_ns(migrate *m)
{
    while (m->next_ns < m->ns_count) {
        const char *ns = m->nss[m->next_ns++];
        char err[256];
        if (names_check(mig_tenant(m), ns, err, sizeof(err)) != 0)
            continue; /* not a name this broker writes */
        char path[MD_PATH_BYTES_MAX];
        snprintf(path, sizeof(path), "%s/%s/%s/persistent", migrate_roots[m->root], mig_tenant(m),
                 ns);
        int rc = md_children(m->nc->b->md, path, mig_topics_listed, m);
        if (rc != MG_OK)
            mig_end(m, rc);
        return;
    }
    names_free(m->nss, m->ns_count);
    m->nss = NULL;
    m->ns_count = m->next_ns = 0;
    mig_next_tenant(m);
}

static void mig_nss_listed(int status, const char *const *names, size_t count, void *arg)
{
    migrate *m = arg;
    if (!mig_go_on(m, status))
        return;
    if (status != MG_OK)
        count = 0;
    m->nss = names_copy(names, count);
    if (m->nss == NULL) {
        mig_end(m, MG_ENOMEM);
        return;
    }
    m->ns_count = count;
    mig_next_ns(m);
}

static void mig_next_tenant(migrate *m)
{
    while (m->next_tenant < m->tenant_count) {
        const char *tenant = m->tenants[m->next_tenant++];
        char err[256];
        if (names_check(tenant, NULL, err, sizeof(err)) != 0)
            continue;
        char path[MD_PATH_BYTES_MAX];
        snprintf(path, sizeof(path), "%s/%s", migrate_roots[m->root], tenant);
        int rc = md_children(m->nc->b->md, path, mig_nss_listed, m);
        if (rc != MG_OK)
            mig_end(m, rc);
        return;
    }
    names_free(m->tenants, m->tenant_count);
    m->tenants = NULL;
    m->tenant_count = m->next_tenant = 0;
    m->root++;
    mig_root(m);
}

static void mig_tenants_listed(int status, const char *const *names, size_t count, void *arg)
{
    migrate *m = arg;
    if (!mig_go_on(m, status))
        return;
    if (status != MG_OK)
        count = 0;
    m->tenants = names_copy(names, count);
    if (m->tenants == NULL) {
        mig_end(m, MG_ENOMEM);
        return;
    }
    m->tenant_count = count;
    mig_next_tenant(m);
}

static void mig_root(migrate *m)
{
    if (m->root >= 2) {
        mig_end(m, MG_OK);
        return;
    }
    int rc = md_children(m->nc->b->md, migrate_roots[m->root], mig_tenants_listed, m);
    if (rc != MG_OK)
        mig_end(m, rc);
}

static void boot_ns_created(int status, const char *path, void *arg)
{
    (void)path;
    br_ns_cache *nc = arg;
    if (nc->b == NULL || (status != MG_OK && status != MG_EEXIST)) {
        if (nc->b != NULL)
            boot_finished(nc, status);
        cache_unref(nc);
        return;
    }
    migrate *m = mg_calloc(1, sizeof(*m));
    if (m == NULL) {
        boot_finished(nc, MG_ENOMEM);
        cache_unref(nc);
        return;
    }
    m->nc = nc; /* the reference of the start-up attempt moves to m */
    mig_root(m);
}

static void boot_tenant_created(int status, const char *path, void *arg)
{
    (void)path;
    br_ns_cache *nc = arg;
    if (nc->b == NULL) {
        cache_unref(nc);
        return;
    }
    if (status != MG_OK && status != MG_EEXIST) {
        boot_finished(nc, status);
        cache_unref(nc);
        return;
    }
    char *value = NULL;
    int rc = default_policies(nc->b, NULL, &value);
    if (rc == MG_OK)
        rc = md_create(nc->b->md, POLICIES_ROOT "/public/default", value, strlen(value), 0,
                       boot_ns_created, nc);
    free(value);
    if (rc != MG_OK) {
        boot_finished(nc, rc);
        cache_unref(nc);
    }
}

static void boot_start(br_ns_cache *nc)
{
    char *value = NULL;
    int rc = default_tenant(nc->b, NULL, &value);
    nc->booting = true;
    if (rc == MG_OK)
        rc = md_create(nc->b->md, POLICIES_ROOT "/public", value, strlen(value), MD_CREATE_PARENTS,
                       boot_tenant_created, nc);
    free(value);
    if (rc == MG_OK)
        nc->refs++;
    else
        boot_finished(nc, rc);
}

int br_ns_start(br_broker *b)
{
    br_ns_cache *nc = mg_calloc(1, sizeof(*nc));
    if (nc == NULL)
        return MG_ENOMEM;
    nc->b = b;
    nc->refs = 1;
    uv_timer_init(b->loop, &nc->retry_timer);
    nc->retry_timer.data = nc;
    b->ns_cache = nc;
    boot_start(nc);
    return MG_OK;
}

static void retry_timer_closed(uv_handle_t *h)
{
    br_ns_cache *nc = h->data;
    void (*cb)(void *) = nc->closed_cb;
    void *arg = nc->closed_arg;
    cache_unref(nc);
    cb(arg);
}

void br_ns_close(br_broker *b, void (*closed_cb)(void *arg), void *arg)
{
    br_ns_cache *nc = b->ns_cache;
    b->ns_cache = NULL;
    nc->b = NULL;
    for (size_t i = 0; i < NS_BUCKETS; i++) {
        while (nc->buckets[i] != NULL) {
            ns_entry *e = nc->buckets[i];
            nc->buckets[i] = e->next;
            wake_waiters(e, MG_ECLOSED);
            mg_free(e);
        }
    }
    nc->count = 0;
    ns_waiter *w = nc->deferred;
    nc->deferred = NULL;
    while (w != NULL) {
        ns_waiter *next = w->next;
        w->cb(MG_ECLOSED, w->arg);
        mg_free(w);
        w = next;
    }
    nc->closed_cb = closed_cb;
    nc->closed_arg = arg;
    uv_close((uv_handle_t *)&nc->retry_timer, retry_timer_closed);
}

int br_ns_check(br_broker *b, const char *tenant, const char *ns, br_ns_cb cb, void *arg)
{
    br_ns_cache *nc = b->ns_cache;
    if (nc == NULL || b->closing)
        return MG_ECLOSED;
    if (nc->booting) {
        ns_waiter *w = mg_calloc(1, sizeof(*w));
        if (w == NULL)
            return MG_ENOMEM;
        w->cb = cb;
        w->arg = arg;
        snprintf(w->tenant, sizeof(w->tenant), "%s", tenant);
        snprintf(w->ns, sizeof(w->ns), "%s", ns);
        w->next = nc->deferred;
        nc->deferred = w;
        return MG_OK;
    }
    char key[NS_KEY_BYTES];
    make_key(key, tenant, ns);
    ns_entry *e = entry_find(nc, key);
    if (e != NULL && e->state == NS_READY) {
        cb(e->deleted ? MG_ENOTFOUND : MG_OK, arg);
        return MG_OK;
    }
    ns_waiter *w = mg_calloc(1, sizeof(*w));
    if (w == NULL)
        return MG_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    if (e != NULL) {
        w->next = e->waiters;
        e->waiters = w;
        return MG_OK;
    }
    if (nc->count >= BR_NAMESPACES_CACHED_MAX) {
        mg_free(w);
        MG_WARN_LIMITED("broker: namespace %s refused: the policies of %u namespaces are cached "
                        "already (BR_NAMESPACES_CACHED_MAX)",
                        key, (unsigned)BR_NAMESPACES_CACHED_MAX);
        return MG_ELIMIT;
    }
    e = mg_calloc(1, sizeof(*e));
    if (e == NULL) {
        mg_free(w);
        return MG_ENOMEM;
    }
    snprintf(e->key, sizeof(e->key), "%s", key);
    snprintf(e->tenant, sizeof(e->tenant), "%s", tenant);
    snprintf(e->ns, sizeof(e->ns), "%s", ns);
    e->id = ++nc->next_id;
    e->state = NS_LOADING;
    e->waiters = w;
    ns_ctx *x = ctx_new(nc, e);
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), tenant, ns);
    int rc = x != NULL ? md_get(b->md, path, load_got, x) : MG_ENOMEM;
    if (rc != MG_OK) {
        if (x != NULL)
            ctx_free(x);
        mg_free(w);
        mg_free(e);
        return rc;
    }
    uint32_t i = key_hash(key) % NS_BUCKETS;
    e->next = nc->buckets[i];
    nc->buckets[i] = e;
    nc->count++;
    return MG_OK;
}

const br_ns_policies *br_ns_policies_find(br_broker *b, const char *tenant, const char *ns)
{
    br_ns_cache *nc = b->ns_cache;
    if (nc == NULL)
        return NULL;
    char key[NS_KEY_BYTES];
    make_key(key, tenant, ns);
    ns_entry *e = entry_find(nc, key);
    return e != NULL && e->state == NS_READY && !e->deleted ? &e->pol : NULL;
}

/* A write through this broker's REST routes: the cache takes the written value at once. */
static void cache_written(br_broker *b, const char *tenant, const char *ns, const char *value,
                          int64_t version, bool close_topics)
{
    br_ns_cache *nc = b->ns_cache;
    if (nc == NULL)
        return;
    char key[NS_KEY_BYTES];
    make_key(key, tenant, ns);
    ns_entry *e = entry_find(nc, key);
    if (e != NULL && e->state == NS_READY)
        entry_apply(nc, e, value, strlen(value), version, close_topics);
}

static void cache_deleted(br_broker *b, const char *tenant, const char *ns)
{
    br_ns_cache *nc = b->ns_cache;
    if (nc == NULL)
        return;
    char key[NS_KEY_BYTES];
    make_key(key, tenant, ns);
    ns_entry *e = entry_find(nc, key);
    if (e != NULL && e->state == NS_READY)
        entry_gone(nc, e);
}

/* ---- the REST routes --------------------------------------------------------------------------
 */

typedef enum ns_op {
    OP_TENANTS_LIST,
    OP_TENANT_CREATE,
    OP_TENANT_GET,
    OP_TENANT_UPDATE,
    OP_TENANT_DELETE,
    OP_NS_LIST,
    OP_NS_CREATE,
    OP_NS_GET,
    OP_NS_DELETE,
    OP_RETENTION_GET,
    OP_RETENTION_SET,
    OP_RETENTION_DELETE,
    OP_TTL_GET,
    OP_TTL_SET,
    OP_TTL_DELETE,
    OP_QUOTA_MAP_GET,
    OP_QUOTA_SET,
    OP_QUOTA_DELETE,
    OP_TOPIC_RETENTION,
    OP_TOPIC_TTL,
    OP_TOPIC_QUOTA_MAP,
} ns_op;

typedef struct ns_req {
    br_broker *b;
    mg_http_request *req;
    ns_op op;
    char tenant[MG_PULSAR_TENANT_BYTES_MAX + 1];
    char ns[MG_PULSAR_NAMESPACE_BYTES_MAX + 1];
    pw_topic_name tn;       /* the topic routes */
    json_t *value;          /* what the request sets (its body, checked) */
    const char *quota_type; /* backlogQuotaType */
    bool force;             /* DELETE namespace ?force=true */
    bool applied;           /* topic routes ?applied=true */
    int attempts;           /* compare-and-set attempts */
    int64_t version;        /* of the node read */
    char **topics;          /* a namespace's topics (managed ledgers) to delete */
    size_t topic_count, next_topic;
    char **parts; /* its partitioned topics' nodes */
    size_t part_count, next_part;
    int cleanup_step; /* the empty parent nodes removed after a forced delete */
} ns_req;

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    mg_free(v);
}

static void req_free(ns_req *r)
{
    json_decref(r->value);
    names_free(r->topics, r->topic_count);
    names_free(r->parts, r->part_count);
    mg_free(r);
}

static void finish(ns_req *r, int status, const char *reason)
{
    if (status == 204 || status == 200)
        mg_http_reply(r->req, status, NULL, NULL, 0);
    else
        mg_http_reply_json_error(r->req, status, reason);
    req_free(r);
}

static int status_of(int rc)
{
    switch (rc) {
    case MG_ENOTFOUND:
        return 404;
    case MG_EEXIST:
    case MG_EBADVERSION:
    case MG_ENOTEMPTY:
        return 409;
    case MG_ELIMIT:
        return 412;
    default:
        return 500;
    }
}

static void finish_rc(ns_req *r, int rc)
{
    if (rc == MG_OK)
        finish(r, 204, NULL);
    else
        finish(r, status_of(rc), mg_strerror(rc));
}

/* Replies 200 with v as JSON (v borrowed). */
static void finish_json(ns_req *r, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) {
        finish(r, 500, "out of memory");
        return;
    }
    mg_http_reply(r->req, 200, "application/json", text, strlen(text));
    free(text);
    req_free(r);
}

/* The tenant (and namespace, when ns is not NULL) names of a request, by the topic-name rules
 * of src/pulsar/topic.c (the admin API's own checks, admin.c): 0, or 412 with the reason. */
static int names_check(const char *tenant, const char *ns, char *err, size_t err_size)
{
    if (!br_admin_name_param_ok(tenant, "tenant", MG_PULSAR_TENANT_BYTES_MAX, err, err_size) ||
        !br_admin_name_param_ok(ns, "namespace", MG_PULSAR_NAMESPACE_BYTES_MAX, err, err_size))
        return 412;
    char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
    snprintf(full, sizeof(full), "persistent://%s/%s/x", tenant, ns != NULL ? ns : "x");
    pw_topic_name tn;
    return pw_topic_name_parse(full, &tn, err, err_size) == MG_OK ? 0 : 412;
}

static ns_req *req_new(mg_http_request *req, void *arg, ns_op op)
{
    ns_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        mg_http_reply_json_error(req, 500, "out of memory");
        return NULL;
    }
    r->b = arg;
    r->req = req;
    r->op = op;
    const char *tenant = mg_http_request_param(req, "tenant");
    const char *ns = mg_http_request_param(req, "namespace");
    char err[256];
    if (tenant != NULL && names_check(tenant, ns, err, sizeof(err)) != 0) {
        finish(r, 412, err);
        return NULL;
    }
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant != NULL ? tenant : "");
    snprintf(r->ns, sizeof(r->ns), "%s", ns != NULL ? ns : "");
    const char *force = mg_http_request_query(req, "force");
    r->force = force != NULL && strcmp(force, "true") == 0;
    return r;
}

/* The request body as JSON: *out NULL when there is none (blanks only). 0, or 400 with the
 * reason. */
static int body_json(ns_req *r, json_t **out, char *err, size_t err_size)
{
    size_t len = 0;
    const char *body = mg_http_request_body(r->req, &len);
    *out = NULL;
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]) != NULL)
        i++;
    if (i == len)
        return 0;
    json_error_t jerr;
    *out = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (*out == NULL) {
        snprintf(err, err_size, "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        return 400;
    }
    return 0;
}

/* ---- checking policies ---------------------------------------------------------------------- */

/* An integer field of obj: *out = dflt when absent (or JSON null). 0, or 400 with the reason. */
static int int_member(const json_t *obj, const char *name, int64_t dflt, int64_t *out, char *err,
                      size_t err_size)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) {
        snprintf(err, err_size, "'%s' must be an integer", name);
        return 400;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* RetentionPolicies {"retentionTimeInMinutes": N, "retentionSizeInMB": N}, checked as Pulsar
 * checks it; *out is the object to store. */
static int retention_check(const json_t *v, json_t **out, char *err, size_t err_size)
{
    if (!json_is_object(v)) {
        snprintf(err, err_size,
                 "the retention policies must be a JSON object {\"retentionTimeInMinutes\": N, "
                 "\"retentionSizeInMB\": N}");
        return 400;
    }
    int64_t minutes = 0, mb = 0;
    int st = int_member(v, "retentionTimeInMinutes", 0, &minutes, err, err_size);
    if (st == 0)
        st = int_member(v, "retentionSizeInMB", 0, &mb, err, err_size);
    if (st != 0)
        return st;
    if (minutes < -1 || mb < -1) {
        snprintf(err, err_size, "Invalid retention policy: %s limit must be >= -1",
                 minutes < -1 ? "time" : "size");
        return 412;
    }
    if ((minutes == 0) != (mb == 0)) {
        snprintf(err, err_size,
                 "Invalid retention policy: Setting a single time or size limit to 0 is invalid "
                 "when one of the limits has a non-zero value. Use the value of -1 instead of 0 "
                 "to ignore a specific limit. To disable retention both limits must be set to 0.");
        return 412;
    }
    *out = json_pack("{s:I,s:I}", "retentionTimeInMinutes", (json_int_t)minutes,
                     "retentionSizeInMB", (json_int_t)mb);
    return *out != NULL ? 0 : 500;
}

static int ttl_check(const json_t *v, json_t **out, char *err, size_t err_size)
{
    if (!json_is_integer(v)) {
        snprintf(err, err_size, "the message TTL must be an integer number of seconds");
        return 400;
    }
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > INT32_MAX) {
        snprintf(err, err_size,
                 "Invalid value for message TTL, message TTL must be >= 0 and at most %d",
                 INT32_MAX);
        return 412;
    }
    *out = json_integer(n);
    return *out != NULL ? 0 : 500;
}

/* BacklogQuota {"limitSize": B (or "limit"), "limitTime": S, "policy": "..."}: *out is what is
 * stored, with Pulsar's fields "limit", "limitSize", "limitTime", "policy". */
static int quota_check(const json_t *v, json_t **out, char *err, size_t err_size)
{
    if (!json_is_object(v)) {
        snprintf(err, err_size,
                 "the backlog quota must be a JSON object {\"limitSize\": bytes, \"limitTime\": "
                 "seconds, \"policy\": \"producer_request_hold\"}");
        return 400;
    }
    int64_t limit = -1, size = -1, time_s = -1;
    int st = int_member(v, "limit", -1, &limit, err, err_size);
    if (st == 0)
        st = int_member(v, "limitSize", limit, &size, err, err_size);
    if (st == 0)
        st = int_member(v, "limitTime", -1, &time_s, err, err_size);
    if (st != 0)
        return st;
    if (size < -1 || time_s < -1) {
        snprintf(err, err_size, "the backlog quota's %s must be -1 (none) or more",
                 size < -1 ? "limitSize" : "limitTime");
        return 412;
    }
    const json_t *pol = json_object_get(v, "policy");
    br_backlog_policy p = BR_BACKLOG_PRODUCER_REQUEST_HOLD;
    if (pol != NULL && !json_is_null(pol) &&
        (!json_is_string(pol) || backlog_policy_parse(json_string_value(pol), &p) != MG_OK)) {
        snprintf(err, err_size,
                 "unknown backlog quota policy %.64s%s%s: one of producer_request_hold, "
                 "producer_exception, consumer_backlog_eviction",
                 json_is_string(pol) ? "'" : "", json_is_string(pol) ? json_string_value(pol) : "",
                 json_is_string(pol) ? "'" : "(not a string)");
        return 400;
    }
    *out = json_pack("{s:I,s:I,s:I,s:s}", "limit", (json_int_t)size, "limitSize", (json_int_t)size,
                     "limitTime", (json_int_t)time_s, "policy", backlog_policy_names[p]);
    return *out != NULL ? 0 : 500;
}

static bool quota_type_ok(const char *type)
{
    return strcmp(type, "destination_storage") == 0 || strcmp(type, "message_age") == 0;
}

/* A Policies object given to PUT namespace: the fields this broker reads are checked (and
 * normalized) in place; the rest is kept as given. */
static int policies_check(json_t *root, char *err, size_t err_size)
{
    if (!json_is_object(root)) {
        snprintf(err, err_size, "the namespace policies must be a JSON object");
        return 400;
    }
    json_t *v = json_object_get(root, "retention_policies");
    json_t *checked = NULL;
    int st;
    if (v != NULL && !json_is_null(v)) {
        if ((st = retention_check(v, &checked, err, err_size)) != 0)
            return st;
        json_object_set_new(root, "retention_policies", checked);
    }
    v = json_object_get(root, "message_ttl_in_seconds");
    if (v != NULL && !json_is_null(v)) {
        if ((st = ttl_check(v, &checked, err, err_size)) != 0)
            return st;
        json_object_set_new(root, "message_ttl_in_seconds", checked);
    }
    v = json_object_get(root, "backlog_quota_map");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            snprintf(err, err_size, "'backlog_quota_map' must be a JSON object");
            return 400;
        }
        const char *type;
        json_t *q;
        void *tmp;
        json_object_foreach_safe(v, tmp, type, q)
        {
            if (!quota_type_ok(type)) {
                snprintf(err, err_size,
                         "unknown backlog quota type '%.64s': destination_storage or message_age",
                         type);
                return 400;
            }
            if ((st = quota_check(q, &checked, err, err_size)) != 0)
                return st;
            json_object_set_new(v, type, checked);
        }
    }
    return 0;
}

static int tenant_check(const json_t *v, char *err, size_t err_size)
{
    if (!json_is_object(v)) {
        snprintf(err, err_size,
                 "the tenant info must be a JSON object {\"adminRoles\": [...], "
                 "\"allowedClusters\": [...]}");
        return 400;
    }
    static const char *const lists[] = { "adminRoles", "allowedClusters" };
    for (size_t i = 0; i < 2; i++) {
        const json_t *a = json_object_get(v, lists[i]);
        if (a == NULL || json_is_null(a))
            continue;
        bool ok = json_is_array(a);
        size_t j;
        const json_t *s;
        json_array_foreach(a, j, s) ok = ok && json_is_string(s);
        if (!ok) {
            snprintf(err, err_size, "'%s' must be an array of strings", lists[i]);
            return 400;
        }
    }
    return 0;
}

/* TenantInfo to store: given (checked), or an empty one, with the fields Pulsar's has. */
static int default_tenant(br_broker *b, const json_t *given, char **out)
{
    json_t *root = given != NULL ? json_deep_copy(given) : json_object();
    if (root == NULL)
        return MG_ENOMEM;
    if (json_object_get(root, "adminRoles") == NULL ||
        json_is_null(json_object_get(root, "adminRoles")))
        json_object_set_new(root, "adminRoles", json_array());
    if (json_object_get(root, "allowedClusters") == NULL ||
        json_is_null(json_object_get(root, "allowedClusters")))
        json_object_set_new(root, "allowedClusters", json_pack("[s]", b->cluster));
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *out != NULL ? MG_OK : MG_ENOMEM;
}

/* Policies of a new namespace: given (checked) or empty, with the bundles (BR_BUNDLES ranges
 * of the 32-bit hash, as owner.c splits it), an empty backlog quota map, the cluster, and
 * "deleted": false. */
static int default_policies(br_broker *b, const json_t *given, char **out)
{
    json_t *root = given != NULL ? json_deep_copy(given) : json_object();
    if (root == NULL)
        return MG_ENOMEM;
    json_t *bounds = json_array();
    uint64_t width = (1ull << 32) / BR_BUNDLES;
    for (uint64_t i = 0; i <= BR_BUNDLES; i++) {
        uint64_t v = i * width > 0xFFFFFFFFull ? 0xFFFFFFFFull : i * width;
        char hex[16];
        snprintf(hex, sizeof(hex), "0x%08llx", (unsigned long long)v);
        json_array_append_new(bounds, json_string(hex));
    }
    json_object_set_new(root, "bundles",
                        json_pack("{s:o,s:i}", "boundaries", bounds, "numBundles", BR_BUNDLES));
    if (!json_is_object(json_object_get(root, "backlog_quota_map")))
        json_object_set_new(root, "backlog_quota_map", json_object());
    if (!json_is_array(json_object_get(root, "replication_clusters")))
        json_object_set_new(root, "replication_clusters", json_pack("[s]", b->cluster));
    json_object_set_new(root, "deleted", json_false());
    *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return *out != NULL ? MG_OK : MG_ENOMEM;
}

/* ---- tenants -------------------------------------------------------------------------------- */

static void tenant_path(char *dst, size_t cap, const char *tenant)
{
    snprintf(dst, cap, POLICIES_ROOT "/%s", tenant);
}

static void children_to_json(ns_req *r, int status, const char *const *names, size_t count,
                             const char *prefix)
{
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < count; i++) {
        char name[NS_KEY_BYTES];
        snprintf(name, sizeof(name), "%s%s", prefix, names[i]);
        json_array_append_new(a, json_string(name));
    }
    if (a == NULL) {
        finish(r, 500, "out of memory");
        return;
    }
    finish_json(r, a);
    json_decref(a);
}

static void tenants_listed(int status, const char *const *names, size_t count, void *arg)
{
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    children_to_json(arg, status, names, count, "");
}

static void h_tenants_list(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_TENANTS_LIST);
    if (r == NULL)
        return;
    int rc = md_children(r->b->md, POLICIES_ROOT, tenants_listed, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void tenant_created(int status, const char *path, void *arg)
{
    (void)path;
    ns_req *r = arg;
    if (status == MG_EEXIST)
        finish(r, 409, "Tenant already exists");
    else
        finish_rc(r, status);
}

/* The TenantInfo body of PUT and POST, checked into r->value (NULL: none given). */
static bool tenant_body(ns_req *r)
{
    char err[256];
    int st = body_json(r, &r->value, err, sizeof(err));
    if (st == 0 && r->value != NULL)
        st = tenant_check(r->value, err, sizeof(err));
    if (st != 0) {
        finish(r, st, err);
        return false;
    }
    return true;
}

static void h_tenant_create(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_TENANT_CREATE);
    if (r == NULL || !tenant_body(r))
        return;
    char *value = NULL;
    char path[MD_PATH_BYTES_MAX];
    tenant_path(path, sizeof(path), r->tenant);
    int rc = default_tenant(r->b, r->value, &value);
    if (rc == MG_OK)
        rc = md_create(r->b->md, path, value, strlen(value), MD_CREATE_PARENTS, tenant_created, r);
    free(value);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void tenant_updated(int status, const md_stat *stat, void *arg);

static void tenant_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Tenant does not exist");
        return;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    if (r->op == OP_TENANT_GET) {
        mg_http_reply(r->req, 200, "application/json", value, len);
        req_free(r);
        return;
    }
    char *text = NULL;
    char path[MD_PATH_BYTES_MAX];
    tenant_path(path, sizeof(path), r->tenant);
    int rc = default_tenant(r->b, r->value, &text);
    if (rc == MG_OK)
        rc = md_set(r->b->md, path, text, strlen(text), stat->version, tenant_updated, r);
    free(text);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void tenant_read(ns_req *r)
{
    char path[MD_PATH_BYTES_MAX];
    tenant_path(path, sizeof(path), r->tenant);
    int rc = md_get(r->b->md, path, tenant_got, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void tenant_updated(int status, const md_stat *stat, void *arg)
{
    (void)stat;
    ns_req *r = arg;
    if (status == MG_EBADVERSION && ++r->attempts < BR_NS_SET_ATTEMPTS_MAX)
        tenant_read(r);
    else if (status == MG_ENOTFOUND)
        finish(r, 404, "Tenant does not exist");
    else
        finish_rc(r, status);
}

static void h_tenant_get(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_TENANT_GET);
    if (r != NULL)
        tenant_read(r);
}

static void h_tenant_update(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_TENANT_UPDATE);
    if (r != NULL && tenant_body(r))
        tenant_read(r);
}

static void tenant_deleted(int status, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND)
        finish(r, 404, "Tenant does not exist");
    else if (status == MG_ENOTEMPTY)
        finish(r, 409, "The tenant still has active namespaces");
    else
        finish_rc(r, status);
}

static void h_tenant_delete(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_TENANT_DELETE);
    if (r == NULL)
        return;
    char path[MD_PATH_BYTES_MAX];
    tenant_path(path, sizeof(path), r->tenant);
    int rc = md_delete(r->b->md, path, MD_VERSION_ANY, tenant_deleted, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

/* ---- namespaces ----------------------------------------------------------------------------- */

static void namespaces_listed(int status, const char *const *names, size_t count, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Tenant does not exist");
        return;
    }
    char prefix[MG_PULSAR_TENANT_BYTES_MAX + 2];
    snprintf(prefix, sizeof(prefix), "%s/", r->tenant);
    children_to_json(r, status, names, count, prefix);
}

static void h_ns_list(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_NS_LIST);
    if (r == NULL)
        return;
    char path[MD_PATH_BYTES_MAX];
    tenant_path(path, sizeof(path), r->tenant);
    int rc = md_children(r->b->md, path, namespaces_listed, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void ns_created(int status, const char *path, void *arg)
{
    (void)path;
    ns_req *r = arg;
    if (status == MG_EEXIST)
        finish(r, 409, "Namespace already exists");
    else if (status == MG_ENOTFOUND)
        finish(r, 404, "Tenant does not exist");
    else
        finish_rc(r, status);
}

static void h_ns_create(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_NS_CREATE);
    if (r == NULL)
        return;
    char err[512];
    int st = body_json(r, &r->value, err, sizeof(err));
    if (st == 0 && r->value != NULL)
        st = policies_check(r->value, err, sizeof(err));
    if (st != 0) {
        finish(r, st, err);
        return;
    }
    char *value = NULL;
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), r->tenant, r->ns);
    int rc = default_policies(r->b, r->value, &value);
    if (rc == MG_OK)
        rc = md_create(r->b->md, path, value, strlen(value), 0, ns_created, r);
    free(value);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

/* Reads the namespace's Policies (404 when missing) into cb as a JSON object. */
typedef void (*policies_cb)(ns_req *r, json_t *root, const char *raw, size_t raw_len);

typedef struct policies_read {
    ns_req *r;
    policies_cb cb;
} policies_read;

static void policies_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    policies_read *pr = arg;
    ns_req *r = pr->r;
    policies_cb cb = pr->cb;
    mg_free(pr);
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Namespace does not exist");
        return;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(value, len, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        finish(r, 500, "the stored policies of the namespace do not parse");
        return;
    }
    r->version = stat->version;
    cb(r, root, value, len);
    json_decref(root);
}

static void policies_read_start(ns_req *r, policies_cb cb)
{
    policies_read *pr = mg_calloc(1, sizeof(*pr));
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), r->tenant, r->ns);
    int rc = MG_ENOMEM;
    if (pr != NULL) {
        pr->r = r;
        pr->cb = cb;
        rc = md_get(r->b->md, path, policies_got, pr);
    }
    if (rc != MG_OK) {
        mg_free(pr);
        finish_rc(r, rc);
    }
}

static void policies_reply(ns_req *r, json_t *root, const char *raw, size_t raw_len)
{
    (void)raw;
    (void)raw_len;
    const json_t *v = NULL;
    switch (r->op) {
    case OP_NS_GET:
        v = root;
        break;
    case OP_RETENTION_GET:
        v = json_object_get(root, "retention_policies");
        break;
    case OP_TTL_GET:
        v = json_object_get(root, "message_ttl_in_seconds");
        break;
    case OP_QUOTA_MAP_GET:
        v = json_object_get(root, "backlog_quota_map");
        if (v == NULL || json_is_null(v)) {
            json_t *empty = json_object();
            finish_json(r, empty);
            json_decref(empty);
            return;
        }
        break;
    default:
        break;
    }
    if (v == NULL || json_is_null(v))
        finish(r, 204, NULL); /* not set: Pulsar answers a null entity with 204 */
    else
        finish_json(r, v);
}

#define READ_HANDLER(fn, op_)                       \
    static void fn(mg_http_request *req, void *arg) \
    {                                               \
        ns_req *r = req_new(req, arg, op_);         \
        if (r != NULL)                              \
            policies_read_start(r, policies_reply); \
    }

READ_HANDLER(h_ns_get, OP_NS_GET)
READ_HANDLER(h_retention_get, OP_RETENTION_GET)
READ_HANDLER(h_ttl_get, OP_TTL_GET)
READ_HANDLER(h_quota_map_get, OP_QUOTA_MAP_GET)

/* ---- updates: read, change, compare-and-set ------------------------------------------------ */

static void modify_start(ns_req *r);

static void modify_written(int status, const md_stat *stat, void *arg)
{
    ns_req *r = arg;
    if (status == MG_EBADVERSION && ++r->attempts < BR_NS_SET_ATTEMPTS_MAX) {
        modify_start(r);
        return;
    }
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Namespace does not exist");
        return;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    finish(r, 204, NULL);
}

/* The written value is applied to the cache before the answer, so a topic of this broker sees
 * the new policies as soon as the client knows they are stored. */
typedef struct modify_ctx {
    ns_req *r;
    char *text;
} modify_ctx;

static void modify_set_done(int status, const md_stat *stat, void *arg)
{
    modify_ctx *m = arg;
    ns_req *r = m->r;
    if (status == MG_OK)
        cache_written(r->b, r->tenant, r->ns, m->text, stat->version, true);
    free(m->text);
    mg_free(m);
    modify_written(status, stat, r);
}

static void modify_apply(ns_req *r, json_t *root, const char *raw, size_t raw_len)
{
    (void)raw;
    (void)raw_len;
    if (json_is_true(json_object_get(root, "deleted"))) {
        finish(r, 404, "Namespace does not exist (it is being deleted)");
        return;
    }
    switch (r->op) {
    case OP_RETENTION_SET:
        json_object_set(root, "retention_policies", r->value);
        break;
    case OP_RETENTION_DELETE:
        json_object_del(root, "retention_policies");
        break;
    case OP_TTL_SET:
        json_object_set(root, "message_ttl_in_seconds", r->value);
        break;
    case OP_TTL_DELETE:
        json_object_del(root, "message_ttl_in_seconds");
        break;
    case OP_QUOTA_SET:
    case OP_QUOTA_DELETE: {
        json_t *map = json_object_get(root, "backlog_quota_map");
        if (!json_is_object(map)) {
            map = json_object();
            json_object_set_new(root, "backlog_quota_map", map);
        }
        if (r->op == OP_QUOTA_SET)
            json_object_set(map, r->quota_type, r->value);
        else
            json_object_del(map, r->quota_type);
        break;
    }
    default:
        break;
    }
    modify_ctx *m = mg_calloc(1, sizeof(*m));
    char *text = json_dumps(root, JSON_COMPACT);
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), r->tenant, r->ns);
    int rc = MG_ENOMEM;
    if (m != NULL && text != NULL) {
        m->r = r;
        m->text = text;
        rc = md_set(r->b->md, path, text, strlen(text), r->version, modify_set_done, m);
    }
    if (rc != MG_OK) {
        mg_free(m);
        free(text);
        finish_rc(r, rc);
    }
}

static void modify_start(ns_req *r)
{
    policies_read_start(r, modify_apply);
}

/* The backlogQuotaType query parameter (destination_storage when absent). */
static bool quota_type_param(ns_req *r)
{
    const char *type = mg_http_request_query(r->req, "backlogQuotaType");
    r->quota_type = type != NULL ? type : "destination_storage";
    if (quota_type_ok(r->quota_type))
        return true;
    char err[160];
    snprintf(err, sizeof(err),
             "unknown backlogQuotaType '%.64s': destination_storage or message_age", r->quota_type);
    finish(r, 400, err);
    return false;
}

static void h_modify(mg_http_request *req, void *arg, ns_op op)
{
    ns_req *r = req_new(req, arg, op);
    if (r == NULL)
        return;
    char err[512];
    json_t *body = NULL;
    int st = 0;
    if (op == OP_RETENTION_SET || op == OP_TTL_SET || op == OP_QUOTA_SET) {
        st = body_json(r, &body, err, sizeof(err));
        if (st == 0 && body == NULL) {
            snprintf(err, sizeof(err), "the request has no body");
            st = 400;
        }
        if (st == 0)
            st = op == OP_RETENTION_SET ? retention_check(body, &r->value, err, sizeof(err))
                 : op == OP_TTL_SET     ? ttl_check(body, &r->value, err, sizeof(err))
                                        : quota_check(body, &r->value, err, sizeof(err));
        json_decref(body);
    }
    if (st == 500)
        snprintf(err, sizeof(err), "out of memory");
    if (st != 0) {
        finish(r, st, err);
        return;
    }
    if ((op == OP_QUOTA_SET || op == OP_QUOTA_DELETE) && !quota_type_param(r))
        return;
    modify_start(r);
}

#define MODIFY_HANDLER(fn, op_)                     \
    static void fn(mg_http_request *req, void *arg) \
    {                                               \
        h_modify(req, arg, op_);                    \
    }

MODIFY_HANDLER(h_retention_set, OP_RETENTION_SET)
MODIFY_HANDLER(h_retention_delete, OP_RETENTION_DELETE)
MODIFY_HANDLER(h_ttl_set, OP_TTL_SET)
MODIFY_HANDLER(h_ttl_delete, OP_TTL_DELETE)
MODIFY_HANDLER(h_quota_set, OP_QUOTA_SET)
MODIFY_HANDLER(h_quota_delete, OP_QUOTA_DELETE)

/* ---- deleting a namespace ------------------------------------------------------------------
 * Without force: refused (409) while it has topics (managed ledgers, partitioned topics, or
 * topics open here). With force: the Policies are marked "deleted": true first (every broker's
 * cache then refuses new topics in it and closes its open ones), then every topic is deleted
 * with its data (as the topic DELETE route does: an open topic is closed with its data
 * deleted), then the partitioned topics' nodes, the empty parents, and the namespace's node. */

static bool ns_has_open_topics(br_broker *b, const char *tenant, const char *ns)
{
    for (size_t i = 0; i < b->topics.bucket_count; i++)
        for (br_topic *t = b->topics.buckets[i]; t != NULL; t = t->hash_next)
            if (t->state != BR_TOPIC_CLOSING && strcmp(t->name.tenant, tenant) == 0 &&
                strcmp(t->name.ns, ns) == 0)
                return true;
    return false;
}

static char **names_copy(const char *const *names, size_t count)
{
    char **v = mg_calloc(count > 0 ? count : 1, sizeof(char *));
    for (size_t i = 0; v != NULL && i < count; i++) {
        v[i] = strdup(names[i]);
        if (v[i] == NULL) {
            names_free(v, i);
            return NULL;
        }
    }
    return v;
}

static void del_start(ns_req *r);
static void del_cleanup(ns_req *r);

static void del_node_deleted(int status, void *arg)
{
    ns_req *r = arg;
    if (status == MG_EBADVERSION && ++r->attempts < BR_NS_SET_ATTEMPTS_MAX) {
        del_start(r);
        return;
    }
    if (status == MG_OK) {
        cache_deleted(r->b, r->tenant, r->ns); /* logs it when the namespace was cached */
        finish(r, 204, NULL);
    } else if (status == MG_ENOTFOUND) {
        finish(r, 404, "Namespace does not exist");
    } else if (status == MG_ENOTEMPTY) {
        finish(r, 409, "Cannot delete non empty namespace");
    } else {
        finish_rc(r, status);
    }
}

/* Removes the namespace's empty parent nodes of topic metadata (errors do not matter: a node
 * that is not empty or not there stays as it is), then the namespace's node. */
static void del_cleanup_done(int status, void *arg)
{
    (void)status;
    ns_req *r = arg;
    r->cleanup_step++;
    del_cleanup(r);
}

static void del_cleanup(ns_req *r)
{
    static const char *const roots[] = { "/managed-ledgers", "/admin/partitioned-topics" };
    char path[MD_PATH_BYTES_MAX];
    while (r->cleanup_step < 4) {
        snprintf(path, sizeof(path), "%s/%s/%s%s", roots[r->cleanup_step / 2], r->tenant, r->ns,
                 r->cleanup_step % 2 == 0 ? "/persistent" : "");
        if (md_delete(r->b->md, path, MD_VERSION_ANY, del_cleanup_done, r) == MG_OK)
            return;
        r->cleanup_step++;
    }
    ns_path(path, sizeof(path), r->tenant, r->ns);
    int rc = md_delete(r->b->md, path, r->version, del_node_deleted, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void del_next_part(ns_req *r);

static void del_part_done(int status, void *arg)
{
    ns_req *r = arg;
    if (status != MG_OK && status != MG_ENOTFOUND) {
        finish_rc(r, status);
        return;
    }
    del_next_part(r);
}

static void del_next_part(ns_req *r)
{
    if (r->next_part < r->part_count) {
        char path[MD_PATH_BYTES_MAX];
        snprintf(path, sizeof(path), "/admin/partitioned-topics/%s/%s/persistent/%s", r->tenant,
                 r->ns, r->parts[r->next_part++]);
        int rc = md_delete(r->b->md, path, MD_VERSION_ANY, del_part_done, r);
        if (rc != MG_OK)
            finish_rc(r, rc);
        return;
    }
    del_cleanup(r);
}

static void del_next_topic(ns_req *r);

static void del_topic_done(int status, void *arg)
{
    ns_req *r = arg;
    if (status != MG_OK && status != MG_ENOTFOUND) {
        finish_rc(r, status);
        return;
    }
    del_next_topic(r);
}

static void del_next_topic(ns_req *r)
{
    while (r->next_topic < r->topic_count) {
        char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
        snprintf(full, sizeof(full), "persistent://%s/%s/%s", r->tenant, r->ns,
                 r->topics[r->next_topic++]);
        pw_topic_name tn;
        if (pw_topic_name_parse(full, &tn, NULL, 0) != MG_OK)
            continue; /* not a name this broker writes */
        br_topic *t = br_topic_find(r->b, tn.full);
        if (t != NULL && t->state == BR_TOPIC_CLOSING)
            continue; /* closing for another reason; its data stays */
        if (t != NULL) {
            br_topic_close(t, true, del_topic_done, r);
            return;
        }
        int rc = br_topic_delete_stored(r->b, &tn, del_topic_done, r);
        if (rc == MG_OK)
            return;
        if (rc != MG_ENOTFOUND) {
            finish_rc(r, rc);
            return;
        }
    }
    close_ns_topics(r->b, r->tenant, r->ns); /* open here, not stored yet */
    del_next_part(r);
}

static void del_marked(int status, const md_stat *stat, void *arg)
{
    modify_ctx *m = arg;
    ns_req *r = m->r;
    char *text = m->text;
    mg_free(m);
    if (status == MG_OK) {
        r->version = stat->version;
        cache_written(r->b, r->tenant, r->ns, text, stat->version, false);
    }
    free(text);
    if (status == MG_EBADVERSION && ++r->attempts < BR_NS_SET_ATTEMPTS_MAX)
        del_start(r);
    else if (status == MG_ENOTFOUND)
        finish(r, 404, "Namespace does not exist");
    else if (status != MG_OK)
        finish_rc(r, status);
    else
        del_next_topic(r);
}

static void del_parts_listed(int status, const char *const *names, size_t count, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    r->parts = names_copy(names, count);
    if (r->parts == NULL) {
        finish(r, 500, "out of memory");
        return;
    }
    r->part_count = count;
    if (!r->force) {
        if (r->topic_count + r->part_count > 0 || ns_has_open_topics(r->b, r->tenant, r->ns))
            finish(r, 409, "Cannot delete non empty namespace");
        else
            del_cleanup(r);
        return;
    }
    if (json_is_true(json_object_get(r->value, "deleted"))) {
        del_next_topic(r); /* an earlier forced delete stopped half way */
        return;
    }
    json_object_set_new(r->value, "deleted", json_true());
    modify_ctx *m = mg_calloc(1, sizeof(*m));
    char *text = json_dumps(r->value, JSON_COMPACT);
    char path[MD_PATH_BYTES_MAX];
    ns_path(path, sizeof(path), r->tenant, r->ns);
    int rc = MG_ENOMEM;
    if (m != NULL && text != NULL) {
        m->r = r;
        m->text = text;
        rc = md_set(r->b->md, path, text, strlen(text), r->version, del_marked, m);
    }
    if (rc != MG_OK) {
        mg_free(m);
        free(text);
        finish_rc(r, rc);
    }
}

static void del_topics_listed(int status, const char *const *names, size_t count, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    r->topics = names_copy(names, count);
    if (r->topics == NULL) {
        finish(r, 500, "out of memory");
        return;
    }
    r->topic_count = count;
    char path[MD_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "/admin/partitioned-topics/%s/%s/persistent", r->tenant, r->ns);
    int rc = md_children(r->b->md, path, del_parts_listed, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void del_policies_read(ns_req *r, json_t *root, const char *raw, size_t raw_len)
{
    (void)raw;
    (void)raw_len;
    json_decref(r->value);
    r->value = json_incref(root);
    char path[MD_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "/managed-ledgers/%s/%s/persistent", r->tenant, r->ns);
    int rc = md_children(r->b->md, path, del_topics_listed, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void del_start(ns_req *r)
{
    names_free(r->topics, r->topic_count);
    names_free(r->parts, r->part_count);
    r->topics = r->parts = NULL;
    r->topic_count = r->part_count = r->next_topic = r->next_part = 0;
    r->cleanup_step = 0;
    policies_read_start(r, del_policies_read);
}

static void h_ns_delete(mg_http_request *req, void *arg)
{
    ns_req *r = req_new(req, arg, OP_NS_DELETE);
    if (r != NULL)
        del_start(r);
}

/* ---- a topic's policies as applied ---------------------------------------------------------
 * GET /admin/v2/persistent/{tenant}/{namespace}/{topic}/retention|messageTTL|backlogQuotaMap:
 * Magnetar has no topic-level policies, so without ?applied=true the answer is 204 (none set,
 * as Pulsar answers a topic without its own); with it, the policies the topic runs with: the
 * namespace's as this broker's cache holds them (br_ns_policies_find), else the broker's
 * defaults. */

static int64_t default_retention_minutes(const br_broker *b)
{
    int64_t ms = b->opts.ml_config.retention_time_ms;
    return ms < 0 ? -1 : ms / 60000;
}

static int64_t default_retention_mb(const br_broker *b)
{
    int64_t bytes = b->opts.ml_config.retention_bytes;
    return bytes < 0 ? -1 : bytes >> 20;
}

static int64_t default_ttl_s(const br_broker *b)
{
    return b->opts.ttl_default_s > 0 ? b->opts.ttl_default_s : 0;
}

static json_t *quota_json(int64_t limit_bytes, int64_t limit_s, br_backlog_policy p)
{
    return json_pack("{s:I,s:I,s:I,s:s}", "limit", (json_int_t)limit_bytes, "limitSize",
                     (json_int_t)limit_bytes, "limitTime", (json_int_t)limit_s, "policy",
                     backlog_policy_names[p]);
}

static void topic_policy_reply(ns_req *r)
{
    if (!r->applied) {
        finish(r, 204, NULL);
        return;
    }
    const br_ns_policies *p = br_ns_policies_find(r->b, r->tenant, r->ns);
    json_t *v = NULL;
    switch (r->op) {
    case OP_TOPIC_RETENTION:
        if (p != NULL && p->retention_time_minutes != BR_POLICY_UNSET)
            v = json_pack("{s:I,s:I}", "retentionTimeInMinutes",
                          (json_int_t)p->retention_time_minutes, "retentionSizeInMB",
                          (json_int_t)(p->retention_size_mb != BR_POLICY_UNSET
                                           ? p->retention_size_mb
                                           : default_retention_mb(r->b)));
        else
            v = json_pack("{s:I,s:I}", "retentionTimeInMinutes",
                          (json_int_t)default_retention_minutes(r->b), "retentionSizeInMB",
                          (json_int_t)default_retention_mb(r->b));
        break;
    case OP_TOPIC_TTL:
        v = json_integer(p != NULL && p->message_ttl_seconds != BR_POLICY_UNSET
                             ? (json_int_t)p->message_ttl_seconds
                             : (json_int_t)default_ttl_s(r->b));
        break;
    case OP_TOPIC_QUOTA_MAP:
        v = json_object();
        if (v == NULL)
            break;
        if (p != NULL && p->backlog_limit_bytes != BR_POLICY_UNSET)
            json_object_set_new(v, "destination_storage",
                                quota_json(p->backlog_limit_bytes, -1, p->backlog_size_policy));
        else
            json_object_set_new(v, "destination_storage",
                                quota_json(r->b->opts.backlog_quota_limit_bytes > 0
                                               ? r->b->opts.backlog_quota_limit_bytes
                                               : -1,
                                           -1, (br_backlog_policy)r->b->opts.backlog_quota_policy));
        if (p != NULL && p->backlog_limit_seconds != BR_POLICY_UNSET)
            json_object_set_new(v, "message_age",
                                quota_json(-1, p->backlog_limit_seconds, p->backlog_age_policy));
        else if (r->b->opts.backlog_quota_limit_s > 0)
            json_object_set_new(v, "message_age",
                                quota_json(-1, r->b->opts.backlog_quota_limit_s,
                                           (br_backlog_policy)r->b->opts.backlog_quota_policy));
        break;
    default:
        break;
    }
    if (v == NULL) {
        finish(r, 500, "out of memory");
        return;
    }
    finish_json(r, v);
    json_decref(v);
}

static void topic_node_got(int status, const void *value, size_t len, const md_stat *stat,
                           void *arg)
{
    (void)value;
    (void)len;
    (void)stat;
    ns_req *r = arg;
    if (status == MG_OK) {
        topic_policy_reply(r);
        return;
    }
    if (status != MG_ENOTFOUND) {
        finish_rc(r, status);
        return;
    }
    if (r->attempts++ > 0) {
        finish(r, 404, "Topic not found");
        return;
    }
    /* Not a plain topic: perhaps a partitioned one. */
    char path[MD_PATH_BYTES_MAX];
    br_partitioned_path(&r->tn, path, sizeof(path));
    int rc = md_get(r->b->md, path, topic_node_got, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void topic_ns_checked(int status, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Namespace does not exist");
        return;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    char name[ML_NAME_BYTES_MAX];
    char path[MD_PATH_BYTES_MAX];
    int rc = pw_topic_ml_name(&r->tn, name, sizeof(name));
    if (rc == MG_OK) {
        snprintf(path, sizeof(path), "/managed-ledgers/%s", name);
        rc = md_get(r->b->md, path, topic_node_got, r);
    }
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void h_topic_policy(mg_http_request *req, void *arg, ns_op op)
{
    ns_req *r = req_new(req, arg, op);
    if (r == NULL)
        return;
    br_admin_args a;
    char err[256];
    int st = br_admin_args_parse(req, BR_ADMIN_OP_NONE, &a, err, sizeof(err));
    if (st != 0) {
        finish(r, st, err);
        return;
    }
    r->tn = a.tn;
    const char *applied = mg_http_request_query(req, "applied");
    r->applied = applied != NULL && strcmp(applied, "true") == 0;
    int rc = br_ns_check(r->b, r->tenant, r->ns, topic_ns_checked, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

#define TOPIC_HANDLER(fn, op_)                      \
    static void fn(mg_http_request *req, void *arg) \
    {                                               \
        h_topic_policy(req, arg, op_);              \
    }

TOPIC_HANDLER(h_topic_retention, OP_TOPIC_RETENTION)
TOPIC_HANDLER(h_topic_ttl, OP_TOPIC_TTL)
TOPIC_HANDLER(h_topic_quota_map, OP_TOPIC_QUOTA_MAP)

#define TENANTS "/admin/v2/tenants"
#define NS      "/admin/v2/namespaces/{tenant}/{namespace}"
#define TOPIC   "/admin/v2/persistent/{tenant}/{namespace}/{topic}"
static const struct {
    const char *method;
    const char *pattern;
    mg_http_handler_fn fn;
} ns_routes[] = {
    { "GET", TENANTS, h_tenants_list },
    { "PUT", TENANTS "/{tenant}", h_tenant_create },
    { "GET", TENANTS "/{tenant}", h_tenant_get },
    { "POST", TENANTS "/{tenant}", h_tenant_update },
    { "DELETE", TENANTS "/{tenant}", h_tenant_delete },
    { "GET", "/admin/v2/namespaces/{tenant}", h_ns_list },
    { "PUT", NS, h_ns_create },
    { "GET", NS, h_ns_get },
    { "DELETE", NS, h_ns_delete },
    { "GET", NS "/retention", h_retention_get },
    { "POST", NS "/retention", h_retention_set },
    { "DELETE", NS "/retention", h_retention_delete },
    { "GET", NS "/messageTTL", h_ttl_get },
    { "POST", NS "/messageTTL", h_ttl_set },
    { "DELETE", NS "/messageTTL", h_ttl_delete },
    { "GET", NS "/backlogQuotaMap", h_quota_map_get },
    { "POST", NS "/backlogQuota", h_quota_set },
    { "DELETE", NS "/backlogQuota", h_quota_delete },
    { "GET", TOPIC "/retention", h_topic_retention },
    { "GET", TOPIC "/messageTTL", h_topic_ttl },
    { "GET", TOPIC "/backlogQuotaMap", h_topic_quota_map },
};
#undef TENANTS
#undef NS
#undef TOPIC

int br_namespace_admin_register(br_broker *b, mg_http_server *http)
{
    for (size_t i = 0; i < sizeof(ns_routes) / sizeof(ns_routes[0]); i++)
        MG_TRY(mg_http_server_route(http, ns_routes[i].method, ns_routes[i].pattern,
                                    ns_routes[i].fn, b));
    return MG_OK;
}
