/*
 * Topic ownership among stateless brokers (../shared/ARCHITECTURE.md §8–9).
 *
 * A namespace's topics are split into BR_BUNDLES bundles by a hash of the topic name (with its
 * partition suffix). The broker that owns a bundle serves all of its topics; ownership is the
 * ephemeral node /ownership/<tenant>/<ns>/<bundle> holding the owner's service URLs, created by
 * the first broker asked about one of its topics (a LOOKUP, or a producer or consumer arriving
 * directly). It goes away with that broker's metadata session, and another broker takes the
 * bundle over on the next lookup (fencing the managed ledgers as it opens them).
 *
 * Bundle names are Pulsar's: the hash range "0x%08x_0x%08x" of [0, 2^32).
 *
 * Invariant: a bundle is in `owned` only after this broker's ephemeral node for it was
 * created or read back with this broker's service URL; the list is cleared when the session
 * is lost (every open topic is then closed: another broker may already own them).
 */
#include "broker/broker_int.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"

#include <stdio.h>
#include <string.h>

static uint32_t topic_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a with a final mix */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    return h;
}

void br_bundle_path(const pw_topic_name *tn, char *dst, size_t cap)
{
    uint32_t h = topic_hash(tn->full);
    uint64_t width = (1ull << 32) / BR_BUNDLES;
    uint64_t lo = (h / width) * width;
    uint64_t hi = lo + width;
    snprintf(dst, cap, "/ownership/%s/%s/0x%08llx_0x%08llx", tn->tenant, tn->ns,
             (unsigned long long)lo, (unsigned long long)(hi > 0xFFFFFFFFull ? 0xFFFFFFFFull : hi));
}

static bool is_owned(br_broker *b, const char *path)
{
    for (br_owned *o = b->owned; o != NULL; o = o->next)
        if (strcmp(o->path, path) == 0)
            return true;
    return false;
}

static void mark_owned(br_broker *b, const char *path)
{
    if (is_owned(b, path))
        return;
    br_owned *o = mg_calloc(1, sizeof(*o));
    if (o == NULL)
        return; /* asked again next time: still correct */
    snprintf(o->path, sizeof(o->path), "%s", path);
    o->next = b->owned;
    b->owned = o;
    MG_INFO("broker: owns bundle %s", path);
}

void br_owned_clear(br_broker *b)
{
    while (b->owned != NULL) {
        br_owned *o = b->owned;
        b->owned = o->next;
        mg_free(o);
    }
}

typedef struct owner_req {
    br_broker *b;
    char path[MD_PATH_BYTES_MAX];
    bool created_tried;
    br_owner_cb cb;
    void *arg;
} owner_req;

static void owner_finish(owner_req *r, int status, const char *url)
{
    r->cb(status, url, r->arg);
    mg_free(r);
}

/* Pulls "<key>":"..." out of the owner's JSON. */
static bool owner_field(const void *value, size_t len, const char *name, char *dst, size_t cap)
{
    char buf[1024];
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, value, len);
    buf[len] = '\0';
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":\"", name);
    const char *p = strstr(buf, key);
    if (p == NULL)
        return false;
    p += strlen(key);
    const char *end = strchr(p, '"');
    if (end == NULL || (size_t)(end - p) >= cap)
        return false;
    memcpy(dst, p, (size_t)(end - p));
    dst[end - p] = '\0';
    return true;
}

static void owner_claim(owner_req *r);

static void owner_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    owner_req *r = arg;
    if (status == MG_ENOTFOUND && !r->created_tried) {
        owner_claim(r);
        return;
    }
    if (status != MG_OK) {
        owner_finish(r, status == MG_ENOTFOUND ? MG_EAGAIN : status, NULL);
        return;
    }
    char url[256];
    if (!owner_field(value, len, "pulsarServiceUrl", url, sizeof(url))) {
        owner_finish(r, MG_ECORRUPT, NULL);
        return;
    }
    if (strcmp(url, r->b->service_url) == 0) {
        mark_owned(r->b, r->path);
        owner_finish(r, MG_OK, NULL);
        return;
    }
    owner_finish(r, MG_OK, url);
}

static void owner_created(int status, const char *path, void *arg)
{
    (void)path;
    owner_req *r = arg;
    if (status == MG_OK) {
        mark_owned(r->b, r->path);
        owner_finish(r, MG_OK, NULL);
        return;
    }
    if (status == MG_EEXIST) {
        /* Another broker (or a concurrent request of ours) won: read who. */
        int rc = md_get(r->b->md, r->path, owner_got, r);
        if (rc != MG_OK)
            owner_finish(r, rc, NULL);
        return;
    }
    owner_finish(r, status, NULL);
}

static void owner_claim(owner_req *r)
{
    r->created_tried = true;
    char value[640];
    char kafka[192] = "";
    if (r->b->kop != NULL)
        snprintf(kafka, sizeof(kafka), ",\"kafkaAddress\":\"%s:%u\"", r->b->advertised,
                 (unsigned)kop_port(r->b->kop));
    int n = snprintf(value, sizeof(value),
                     "{\"pulsarServiceUrl\":\"%s\",\"webServiceUrl\":\"http://%s:%u\"%s}",
                     r->b->service_url, r->b->advertised, (unsigned)r->b->opts.http_port, kafka);
    int rc = md_create(r->b->md, r->path, value, (size_t)n, MD_EPHEMERAL | MD_CREATE_PARENTS,
                       owner_created, r);
    if (rc != MG_OK)
        owner_finish(r, rc, NULL);
}

int br_owner_find(br_broker *b, const pw_topic_name *tn, br_owner_cb cb, void *arg)
{
    char path[MD_PATH_BYTES_MAX];
    br_bundle_path(tn, path, sizeof(path));
    if (is_owned(b, path)) {
        cb(MG_OK, NULL, arg);
        return MG_OK;
    }
    owner_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    r->b = b;
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->cb = cb;
    r->arg = arg;
    int rc = md_get(b->md, path, owner_got, r);
    if (rc != MG_OK)
        mg_free(r);
    return rc;
}

/* ---- the owner's Kafka address (broker/kop) ------------------------------------------------- */

typedef struct kafka_owner_req {
    br_broker *b;
    char path[MD_PATH_BYTES_MAX];
    br_owner_kafka_cb cb;
    void *arg;
} kafka_owner_req;

static void kafka_owner_got(int status, const void *value, size_t len, const md_stat *stat,
                            void *arg)
{
    (void)stat;
    kafka_owner_req *r = arg;
    char addr[192];
    if (status == MG_OK && !owner_field(value, len, "kafkaAddress", addr, sizeof(addr)))
        status = MG_ENOTFOUND; /* an owner that does not serve the Kafka protocol */
    r->cb(status, status == MG_OK ? addr : NULL, r->arg);
    mg_free(r);
}

static void kafka_owner_found(int status, const char *owner_url, void *arg)
{
    kafka_owner_req *r = arg;
    if (status != MG_OK || owner_url == NULL) {
        r->cb(status, NULL, r->arg);
        mg_free(r);
        return;
    }
    int rc = md_get(r->b->md, r->path, kafka_owner_got, r);
    if (rc != MG_OK)
        kafka_owner_got(rc, NULL, 0, NULL, r);
}

int br_owner_kafka(br_broker *b, const pw_topic_name *tn, br_owner_kafka_cb cb, void *arg)
{
    kafka_owner_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    r->b = b;
    br_bundle_path(tn, r->path, sizeof(r->path));
    r->cb = cb;
    r->arg = arg;
    int rc = br_owner_find(b, tn, kafka_owner_found, r);
    if (rc != MG_OK)
        mg_free(r);
    return rc;
}
