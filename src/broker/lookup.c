/*
 * Topic discovery: LOOKUP, PARTITIONED_METADATA and GET_TOPICS_OF_NAMESPACE.
 *
 * LOOKUP answers Connect with this broker's service URL (every topic is served by the broker
 * that is asked, which owns it); a bad topic name is answered with a LOOKUP_RESPONSE of type
 * Failed (clients such as pulsar-flex wait for that, not for ERROR).
 *
 * Each of the three first checks that the namespace exists (br_ns_check, namespace.c): a topic
 * of a namespace that does not is answered TopicNotFound "Namespace not found" (LOOKUP_RESPONSE
 * Failed, PARTITIONED_METADATA_RESPONSE Failed, ERROR), before any bundle is claimed.
 *
 * Partitioned topics are metadata only: /admin/partitioned-topics/<tenant>/<ns>/persistent/<t>
 * holds {"partitions": N} (written by the admin API); each partition is the ordinary topic
 * "<t>-partition-<i>". Topics of a namespace are the managed ledgers under
 * /managed-ledgers/<tenant>/<ns>/persistent, plus the partitions of its partitioned topics.
 */
#include "broker/broker_int.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

/* url NULL and ok: Connect here; url set: Redirect there; !ok: Failed with err. */
static void lookup_reply(br_conn *c, uint64_t request_id, bool ok, const char *url,
                         Magnetar__Pulsar__ServerError err, const char *message)
{
    Magnetar__Pulsar__CommandLookupTopicResponse r =
        MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
    r.request_id = request_id;
    r.has_response = 1;
    if (ok) {
        r.response = url == NULL
                         ? MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect
                         : MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect;
        r.broker_service_url = (char *)(url != NULL ? url : c->b->service_url);
        r.has_authoritative = 1;
        r.authoritative = 1;
    } else {
        r.response = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = err;
        r.message = (char *)message;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(LOOKUP_RESPONSE);
    cmd.lookup_topic_response = &r;
    br_conn_send_cmd(c, &cmd);
}

typedef struct lookup_req {
    br_conn *conn;
    uint64_t request_id;
    pw_topic_name tn;
} lookup_req;

static void lookup_owner_found(int status, const char *owner_url, void *arg)
{
    lookup_req *r = arg;
    if (status != MG_OK)
        lookup_reply(r->conn, r->request_id, false, NULL, ERR(MetadataError), mg_strerror(status));
    else
        lookup_reply(r->conn, r->request_id, true, owner_url, ERR(UnknownError), NULL);
    br_conn_unref(r->conn);
    mg_free(r);
}

/* The namespace exists: find (or claim) the owner. A missing one is answered before any
 * ownership is claimed for it. */
static void lookup_ns_checked(int status, void *arg)
{
    lookup_req *r = arg;
    if (status == MG_OK)
        status = br_owner_find(r->conn->b, &r->tn, lookup_owner_found, r);
    if (status == MG_OK)
        return;
    lookup_reply(r->conn, r->request_id, false, NULL,
                 status == MG_ENOTFOUND ? ERR(TopicNotFound) : ERR(MetadataError),
                 status == MG_ENOTFOUND ? BR_NS_NOT_FOUND_MESSAGE : mg_strerror(status));
    br_conn_unref(r->conn);
    mg_free(r);
}

void br_handle_lookup(br_conn *c, const Magnetar__Pulsar__CommandLookupTopic *cmd)
{
    pw_topic_name tn;
    char err[256];
    if (pw_topic_name_parse(cmd->topic, &tn, err, sizeof(err)) != MG_OK) {
        lookup_reply(c, cmd->request_id, false, NULL, ERR(InvalidTopicName), err);
        return;
    }
    if (!tn.persistent) {
        lookup_reply(c, cmd->request_id, false, NULL, ERR(InvalidTopicName),
                     "only persistent topics are supported");
        return;
    }
    lookup_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        lookup_reply(c, cmd->request_id, false, NULL, ERR(ServiceNotReady), "out of memory");
        return;
    }
    r->conn = c;
    r->request_id = cmd->request_id;
    r->tn = tn;
    br_conn_ref(c);
    int rc = br_ns_check(c->b, tn.tenant, tn.ns, lookup_ns_checked, r);
    if (rc != MG_OK) {
        br_conn_unref(c);
        mg_free(r);
        lookup_reply(c, cmd->request_id, false, NULL,
                     rc == MG_ELIMIT ? ERR(TooManyRequests) : ERR(MetadataError), mg_strerror(rc));
    }
}

/* ---- partitioned metadata ---------------------------------------------------------------------
 */

int br_partitioned_path(const pw_topic_name *tn, char *dst, size_t cap)
{
    int n = snprintf(dst, cap, "/admin/partitioned-topics/%s/%s/persistent/%s", tn->tenant, tn->ns,
                     tn->local);
    return n > 0 && (size_t)n < cap ? MG_OK : MG_ELIMIT;
}

/* Reads N from {"partitions": N}; -1 when the value is not that. */
int br_partitions_parse(const void *value, size_t len);
int br_partitions_parse(const void *value, size_t len)
{
    char buf[128];
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, value, len);
    buf[len] = '\0';
    const char *p = strstr(buf, "\"partitions\"");
    if (p == NULL)
        return -1;
    p = strchr(p, ':');
    if (p == NULL)
        return -1;
    char *end;
    long n = strtol(p + 1, &end, 10);
    if (end == p + 1 || n < 0 || n > MG_PULSAR_TOPIC_PARTITIONS_MAX)
        return -1;
    return (int)n;
}

typedef struct pm_req {
    br_conn *conn;
    uint64_t request_id;
    pw_topic_name tn;
} pm_req;

static void pm_reply(br_conn *c, uint64_t request_id, int partitions, int status)
{
    Magnetar__Pulsar__CommandPartitionedTopicMetadataResponse r =
        MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__INIT;
    r.request_id = request_id;
    r.has_response = 1;
    if (status == MG_OK) {
        r.response =
            MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Success;
        r.has_partitions = 1;
        r.partitions = (uint32_t)partitions;
    } else {
        r.response =
            MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Failed;
        r.has_error = 1;
        r.error = status == MG_EINVAL      ? ERR(InvalidTopicName)
                  : status == MG_ENOTFOUND ? ERR(TopicNotFound)
                                           : ERR(MetadataError);
        r.message =
            (char *)(status == MG_ENOTFOUND ? BR_NS_NOT_FOUND_MESSAGE : mg_strerror(status));
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(PARTITIONED_METADATA_RESPONSE);
    cmd.partition_metadata_response = &r;
    br_conn_send_cmd(c, &cmd);
}

static void pm_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    pm_req *r = arg;
    int partitions = 0;
    if (status == MG_OK) {
        partitions = br_partitions_parse(value, len);
        if (partitions < 0) {
            partitions = 0;
            status = MG_ECORRUPT;
        }
    } else if (status == MG_ENOTFOUND) {
        status = MG_OK;
    }
    pm_reply(r->conn, r->request_id, partitions, status);
    br_conn_unref(r->conn);
    mg_free(r);
}

/* The namespace must exist; then a partition is a plain topic, and a topic's count is read. */
static void pm_ns_checked(int status, void *arg)
{
    pm_req *r = arg;
    if (status == MG_OK && r->tn.partition >= 0) {
        pm_got(MG_ENOTFOUND, NULL, 0, NULL, r);
        return;
    }
    char path[MD_PATH_BYTES_MAX];
    if (status == MG_OK)
        status = br_partitioned_path(&r->tn, path, sizeof(path));
    if (status == MG_OK)
        status = md_get(r->conn->b->md, path, pm_got, r);
    if (status == MG_OK)
        return;
    pm_reply(r->conn, r->request_id, 0, status);
    br_conn_unref(r->conn);
    mg_free(r);
}

void br_handle_partitioned_metadata(br_conn *c,
                                    const Magnetar__Pulsar__CommandPartitionedTopicMetadata *cmd)
{
    pw_topic_name tn;
    char err[256];
    if (pw_topic_name_parse(cmd->topic, &tn, err, sizeof(err)) != MG_OK) {
        pm_reply(c, cmd->request_id, 0, MG_EINVAL);
        return;
    }
    if (!tn.persistent) {
        pm_reply(c, cmd->request_id, 0, MG_OK);
        return;
    }
    pm_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        pm_reply(c, cmd->request_id, 0, MG_ENOMEM);
        return;
    }
    r->conn = c;
    r->request_id = cmd->request_id;
    r->tn = tn;
    br_conn_ref(c);
    int rc = br_ns_check(c->b, tn.tenant, tn.ns, pm_ns_checked, r);
    if (rc != MG_OK) {
        br_conn_unref(c);
        mg_free(r);
        pm_reply(c, cmd->request_id, 0, rc);
    }
}

/* ---- topics of a namespace --------------------------------------------------------------------
 */

typedef struct ns_req {
    br_conn *conn;
    uint64_t request_id;
    char tenant[MG_PULSAR_TENANT_BYTES_MAX + 1];
    char ns[MG_PULSAR_NAMESPACE_BYTES_MAX + 1];
    bool non_persistent; /* the mode asks for non-persistent topics only */
} ns_req;

static void ns_listed(int status, const char *const *names, size_t count, void *arg)
{
    ns_req *r = arg;
    br_conn *c = r->conn;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        br_conn_send_error(c, r->request_id, ERR(MetadataError), mg_strerror(status));
    } else {
        char **topics = mg_calloc(count > 0 ? count : 1, sizeof(char *));
        size_t n = 0;
        for (size_t i = 0; topics != NULL && i < count; i++) {
            char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
            snprintf(full, sizeof(full), "persistent://%s/%s/%s", r->tenant, r->ns, names[i]);
            topics[n] = strdup(full);
            if (topics[n] != NULL)
                n++;
        }
        Magnetar__Pulsar__CommandGetTopicsOfNamespaceResponse resp =
            MAGNETAR__PULSAR__COMMAND_GET_TOPICS_OF_NAMESPACE_RESPONSE__INIT;
        resp.request_id = r->request_id;
        resp.n_topics = n;
        resp.topics = topics;
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = T(GET_TOPICS_OF_NAMESPACE_RESPONSE);
        cmd.get_topics_of_namespace_response = &resp;
        br_conn_send_cmd(c, &cmd);
        for (size_t i = 0; i < n; i++)
            free(topics[i]);
        mg_free(topics);
    }
    br_conn_unref(c);
    mg_free(r);
}

static void topics_ns_checked(int status, void *arg)
{
    ns_req *r = arg;
    if (status == MG_ENOTFOUND) {
        br_conn_send_error(r->conn, r->request_id, ERR(TopicNotFound), BR_NS_NOT_FOUND_MESSAGE);
        br_conn_unref(r->conn);
        mg_free(r);
        return;
    }
    if (status == MG_OK && r->non_persistent) {
        ns_listed(MG_OK, NULL, 0, r); /* no non-persistent topics here */
        return;
    }
    char path[MD_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "/managed-ledgers/%s/%s/persistent", r->tenant, r->ns);
    if (status == MG_OK)
        status = md_children(r->conn->b->md, path, ns_listed, r);
    if (status != MG_OK)
        ns_listed(status, NULL, 0, r);
}

void br_handle_topics_of_namespace(br_conn *c,
                                   const Magnetar__Pulsar__CommandGetTopicsOfNamespace *cmd)
{
    /* "tenant/ns": checked by parsing a topic name in it. */
    char probe[MG_PULSAR_TOPIC_BYTES_MAX + 16];
    pw_topic_name tn;
    snprintf(probe, sizeof(probe), "persistent://%s/x", cmd->namespace_ ? cmd->namespace_ : "");
    if (pw_topic_name_parse(probe, &tn, NULL, 0) != MG_OK) {
        br_conn_send_error(c, cmd->request_id, ERR(InvalidTopicName), "invalid namespace");
        return;
    }
    ns_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        br_conn_send_error(c, cmd->request_id, ERR(ServiceNotReady), "out of memory");
        return;
    }
    r->conn = c;
    r->request_id = cmd->request_id;
    r->non_persistent =
        cmd->has_mode &&
        cmd->mode == MAGNETAR__PULSAR__COMMAND_GET_TOPICS_OF_NAMESPACE__MODE__NON_PERSISTENT;
    snprintf(r->tenant, sizeof(r->tenant), "%s", tn.tenant);
    snprintf(r->ns, sizeof(r->ns), "%s", tn.ns);
    br_conn_ref(c);
    int rc = br_ns_check(c->b, tn.tenant, tn.ns, topics_ns_checked, r);
    if (rc != MG_OK) {
        br_conn_unref(c);
        mg_free(r);
        br_conn_send_error(c, cmd->request_id,
                           rc == MG_ELIMIT ? ERR(TooManyRequests) : ERR(MetadataError),
                           mg_strerror(rc));
    }
}
