/*
 * The admin REST subset (Pulsar's /admin/v2/persistent/{tenant}/{namespace}/...) and the
 * per-topic Prometheus metrics with Pulsar's names (../shared/REFERENCE.md §1).
 *
 * Routes (base = /admin/v2/persistent/{tenant}/{namespace}):
 *   GET    base                                   topics (partitions included), JSON array
 *   GET    base/partitioned                       partitioned topics
 *   PUT    base/{topic}                           create a topic (409 when it exists)
 *   DELETE base/{topic}[?force=true]              delete it and its data (412 while in use)
 *   PUT    base/{topic}/partitions                body N: create a partitioned topic
 *   GET    base/{topic}/partitions                {"partitions": N} (0: not partitioned)
 *   DELETE base/{topic}/partitions                delete it and every partition's data
 *   GET    base/{topic}/stats, /internalStats, /subscriptions, /lastMessageId
 *   PUT    base/{topic}/subscription/{sub}        create a durable subscription at the end
 *   DELETE base/{topic}/subscription/{sub}[?force=true]
 *   POST   base/{topic}/subscription/{sub}/skip/{n}, /skip_all, /resetcursor/{timestamp}
 *   POST   base/{topic}/terminate                 no more messages, ever; answers the last id
 *   GET    base/{topic}/messageid/{timestamp}     the first message published at or after
 *                                                 timestamp (ms, broker time), as Pulsar's
 *                                                 getMessageIdByTimestamp; 404 when there is none
 *   PUT    base/{topic}/subscription/{sub} with a message-id body {"ledgerId":L,"entryId":E}:
 *          create it there (the first message read is L:E); -1:-1 earliest, or
 *          INT64_MAX:INT64_MAX (Pulsar's MessageId.latest) latest; no body: latest
 *   POST   base/{topic}/subscription/{sub}/resetcursor  body a message id (with "isExcluded":
 *          true, the reset goes just after it): mark-delete before it, read position at it;
 *          an id the topic does not hold (nor its end) answers 412, as does creating a
 *          subscription there
 *   GET    base/{topic}/subscription/{sub}/position/{n}  peek: the n-th entry (1-based) after
 *          the subscription's mark-delete position, acknowledged or not, without moving
 *          anything; see "Peek" below
 *   GET    /admin/v2/clusters                     ["<cluster>"]: this broker's cluster
 *   GET    /admin/v2/brokers[/{cluster}]          live brokers' web service addresses
 *          ("host:port"), from the /brokers/<host:port> registrations; 404 for another cluster
 *
 * Peek answers as Pulsar's: the body is the entry's data (application/octet-stream),
 * decompressed; for a batch entry, the whole batch ([size][SingleMessageMetadata][payload]
 * ...), which the caller splits. The metadata goes in headers: X-Pulsar-Message-ID "L:E",
 * X-Pulsar-publish-time and X-Pulsar-event-time (ISO 8601, UTC, milliseconds),
 * X-Pulsar-producer-name, X-Pulsar-sequence-id, X-Pulsar-PROPERTY-<key> per property of a
 * message that is not batched, X-Pulsar-num-batch-message and X-Pulsar-batch-size for a batch,
 * X-Pulsar-Broker-Entry-METADATA-timestamp and -index. Header text is the stored text with
 * control characters replaced by '?', and a property whose key is not a header token is left
 * out (HTTP cannot carry them). 404 "Message not found" when there are fewer entries.
 * Errors are JSON {"reason": "..."} with Pulsar's statuses: 400 a number that is not one or is
 * out of range, 404 topic or subscription not found, 409 already exists, 412 invalid name, in
 * use, or a partition count past BR_ADMIN_PARTITIONS_MAX, 500 storage or metadata failure.
 *
 * Validation, before anything is looked up or created:
 *   - tenant, namespace and topic follow the topic-name rules of src/pulsar/topic.c: Pulsar's
 *     NamedEntity pattern [-=:.\w]+ (ASCII), not "." and not starting with "..", at most
 *     MG_PULSAR_TENANT_BYTES_MAX / MG_PULSAR_NAMESPACE_BYTES_MAX /
 *     MG_PULSAR_TOPIC_LOCAL_BYTES_MAX bytes; a decoded '/' ("%2F") is refused by name;
 *   - a subscription name is non-empty, without '/', shorter than MC_NAME_BYTES_MAX;
 *   - numbers in paths and bodies are plain decimal integers (no sign unless negative, no
 *     spaces inside) within int64_t, checked for overflow: skip/{n} >= 0,
 *     resetcursor/{timestamp} >= 0, messageid/{timestamp} >= 0, partitions in
 *     [1, BR_ADMIN_PARTITIONS_MAX], position/{n} in [1, BR_ADMIN_PEEK_POSITION_MAX];
 *   - a message-id body is a JSON object whose "ledgerId" and "entryId" are integers (other
 *     fields, such as "partitionIndex" and "batchIndex", are ignored): 400 otherwise.
 *
 * Every route names a namespace, which must exist (br_ns_check; 404 "Namespace does not exist",
 * as Pulsar) before anything else is looked up or created. Tenants and namespaces themselves
 * have their routes in namespace.c, registered with these.
 *
 * Every request that needs a topic opens it (as Pulsar loads a topic on an admin call) only if
 * it exists: the managed ledger's metadata node is checked first, so a GET never creates one.
 */
#include "broker/broker_int.h"

#include "broker/limits.h"
#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "cursor/limits.h"
#include "ledger/limits.h"
#include "metadata/limits.h"
#include "pulsar/compress.h"
#include "pulsar/limits.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int br_partitions_parse(const void *value, size_t len);

typedef enum admin_op {
    OP_CREATE,
    OP_DELETE,
    OP_STATS,
    OP_INTERNAL_STATS,
    OP_SUBSCRIPTIONS,
    OP_LAST_MESSAGE_ID,
    OP_SUB_CREATE,
    OP_SUB_DELETE,
    OP_SKIP,
    OP_SKIP_ALL,
    OP_RESET,
    OP_PART_CREATE,
    OP_PART_GET,
    OP_PART_DELETE,
    OP_TERMINATE,
    OP_MESSAGE_ID,
    OP_PEEK,
    OP_RESET_ID,
} admin_op;

typedef struct admin_req {
    br_broker *b;
    mg_http_request *req;
    admin_op op;
    pw_topic_name tn;
    char sub[MC_NAME_BYTES_MAX];
    int64_t arg;
    bool force;
    int partitions;
    int next_partition;
    int64_t node_version;
    ml_position pos; /* message-id body (has_pos); peek: the next entry to read */
    bool has_pos;
    bool excluded;
    br_topic *topic;                   /* peek: referenced while its reads run */
    void (*next)(struct admin_req *r); /* what runs once the namespace is known to exist */
    const char *list_root;             /* the listings: the metadata root they list */
} admin_req;

static void peek_read(admin_req *r);
static void sub_created_at(int status, void *arg);

static void reply_json(admin_req *r, int status, mg_strbuf *sb)
{
    if (mg_strbuf_status(sb) != MG_OK)
        mg_http_reply_json_error(r->req, 500, mg_strerror(mg_strbuf_status(sb)));
    else
        mg_http_reply(r->req, status, "application/json", mg_strbuf_str(sb), sb->len);
    mg_strbuf_free(sb);
}

static void finish(admin_req *r, int status, const char *reason)
{
    if (r->topic != NULL)
        br_topic_unref(r->topic);
    if (status == 204 || status == 200)
        mg_http_reply(r->req, status, NULL, NULL, 0);
    else
        mg_http_reply_json_error(r->req, status, reason);
    mg_free(r);
}

static int status_of(int rc)
{
    switch (rc) {
    case MG_ENOTFOUND:
        return 404;
    case MG_EEXIST:
        return 409;
    case MG_EINVAL:
    case MG_ESTATE:
        return 412;
    default:
        return 500;
    }
}

static void finish_rc(admin_req *r, int rc)
{
    if (rc == MG_OK)
        finish(r, 204, NULL);
    else
        finish(r, status_of(rc), mg_strerror(rc));
}

bool br_admin_name_param_ok(const char *value, const char *what, size_t max, char *err,
                            size_t err_size)
{
    if (value == NULL)
        return true; /* the route has no such parameter */
    size_t len = strnlen(value, max + 1);
    if (len == 0) {
        snprintf(err, err_size, "the %s name is empty", what);
        return false;
    }
    if (len > max) {
        snprintf(err, err_size, "the %s name is longer than %zu bytes", what, max);
        return false;
    }
    if (strchr(value, '/') != NULL) {
        snprintf(err, err_size, "the %s name '%s' has an invalid character '/'", what, value);
        return false;
    }
    return true;
}

typedef enum int_parse {
    INT_OK,
    INT_MALFORMED, /* not a decimal integer */
    INT_RANGE,     /* a decimal integer outside int64_t */
} int_parse;

/* Parses s[0, len) as a decimal int64_t: an optional '-', then digits only, checked for
 * overflow digit by digit (strtoll would clamp 2^64 to INT64_MAX and answer as if it fitted). */
static int_parse parse_i64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool negative = len > 0 && s[0] == '-';
    if (negative)
        i++;
    if (i == len)
        return INT_MALFORMED;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    bool range = false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return INT_MALFORMED;
        unsigned d = (unsigned)(s[i] - '0');
        if (range || v > (limit - d) / 10)
            range = true; /* keep checking the rest is digits */
        else
            v = v * 10 + d;
    }
    if (range)
        return INT_RANGE;
    *out = negative ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return INT_OK;
}

/* Reads text (a path parameter) as a non-negative int64_t into *out. Otherwise writes the reason,
 * naming what (e.g. "the number of messages to skip"), into err and returns 400. */
static int count_param(const char *text, const char *what, int64_t *out, char *err, size_t err_size)
{
    int_parse rc = text != NULL ? parse_i64(text, strlen(text), out) : INT_MALFORMED;
    if (rc == INT_OK && *out >= 0)
        return 0;
    if (rc == INT_RANGE)
        snprintf(err, err_size, "%s, '%.40s%s', is out of range: the largest is %" PRId64, what,
                 text, strlen(text) > 40 ? "..." : "", INT64_MAX);
    else
        snprintf(err, err_size, "%s must be a non-negative decimal integer, not '%.40s%s'", what,
                 text != NULL ? text : "", text != NULL && strlen(text) > 40 ? "..." : "");
    return 400;
}

/* Reads a message-id body ({"ledgerId":L,"entryId":E,...}) into out->pos and out->has_pos.
 * No body (only blanks) is fine unless required. 400 with the reason in err otherwise. */
static int message_id_body(const mg_http_request *req, bool required, br_admin_args *out, char *err,
                           size_t err_size)
{
    size_t len = 0;
    const char *body = mg_http_request_body(req, &len);
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", body[start]) != NULL)
        start++;
    if (start == len) {
        if (!required)
            return 0;
        snprintf(err, err_size,
                 "the body must be a message id, {\"ledgerId\":L,\"entryId\":E}; it is empty");
        return 400;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    json_t *l = json_object_get(j, "ledgerId");
    json_t *e = json_object_get(j, "entryId");
    json_t *x = json_object_get(j, "isExcluded");
    if (!json_is_integer(l) || !json_is_integer(e) || (x != NULL && !json_is_boolean(x))) {
        if (j == NULL)
            snprintf(err, err_size, "the body is not JSON: %s (line %d column %d)", jerr.text,
                     jerr.line, jerr.column);
        else
            snprintf(err, err_size,
                     "the body must be a message id, {\"ledgerId\":L,\"entryId\":E} with "
                     "integers L and E (and optionally \"isExcluded\":true|false)");
        json_decref(j);
        return 400;
    }
    out->pos = (ml_position){ json_integer_value(l), json_integer_value(e) };
    out->has_pos = true;
    out->excluded = json_is_true(x);
    json_decref(j);
    return 0;
}

static int refuse(char *err, size_t err_size, const char *reason)
{
    snprintf(err, err_size, "%s", reason);
    return 412;
}

int br_admin_args_parse(const mg_http_request *req, int op, br_admin_args *out, char *err,
                        size_t err_size)
{
    memset(out, 0, sizeof(*out));
    const char *tenant = mg_http_request_param(req, "tenant");
    const char *ns = mg_http_request_param(req, "namespace");
    const char *topic = mg_http_request_param(req, "topic");
    if (!br_admin_name_param_ok(tenant, "tenant", MG_PULSAR_TENANT_BYTES_MAX, err, err_size) ||
        !br_admin_name_param_ok(ns, "namespace", MG_PULSAR_NAMESPACE_BYTES_MAX, err, err_size) ||
        !br_admin_name_param_ok(topic, "topic", MG_PULSAR_TOPIC_LOCAL_BYTES_MAX, err, err_size))
        return 412;
    char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
    snprintf(full, sizeof(full), "persistent://%s/%s/%s", tenant ? tenant : "", ns ? ns : "",
             topic ? topic : "x");
    if (pw_topic_name_parse(full, &out->tn, err, err_size) != MG_OK)
        return 412;
    const char *sub = mg_http_request_param(req, "sub");
    if (sub != NULL) {
        if (sub[0] == '\0' || strlen(sub) >= sizeof(out->sub) || strchr(sub, '/') != NULL)
            return refuse(err, err_size, "invalid subscription name");
        snprintf(out->sub, sizeof(out->sub), "%s", sub);
    }
    const char *force = mg_http_request_query(req, "force");
    out->force = force != NULL && strcmp(force, "true") == 0;
    switch (op) {
    case OP_SKIP:
        return count_param(mg_http_request_param(req, "n"), "the number of messages to skip",
                           &out->arg, err, err_size);
    case OP_RESET:
        return count_param(mg_http_request_param(req, "timestamp"),
                           "the timestamp (milliseconds since the epoch)", &out->arg, err,
                           err_size);
    case OP_MESSAGE_ID:
        return count_param(mg_http_request_param(req, "timestamp"),
                           "the timestamp (milliseconds since the epoch)", &out->arg, err,
                           err_size);
    case OP_PEEK: {
        int status = count_param(mg_http_request_param(req, "n"), "the message position", &out->arg,
                                 err, err_size);
        if (status == 0 && (out->arg < 1 || out->arg > BR_ADMIN_PEEK_POSITION_MAX)) {
            snprintf(err, err_size,
                     "the message position must be between 1 and %d (1 is the first message "
                     "after the subscription's mark-delete position), not %" PRId64,
                     BR_ADMIN_PEEK_POSITION_MAX, out->arg);
            status = 400;
        }
        return status;
    }
    case OP_RESET_ID:
    case OP_SUB_CREATE:
        return message_id_body(req, op == OP_RESET_ID, out, err, err_size);
    case OP_PART_CREATE: {
        size_t len = 0;
        const char *body = mg_http_request_body(req, &len);
        /* The body is the count alone (Pulsar's clients send it as JSON: a bare number), with
         * blanks around it allowed. */
        size_t start = 0;
        while (start < len && strchr(" \t\r\n", body[start]) != NULL)
            start++;
        while (len > start && strchr(" \t\r\n", body[len - 1]) != NULL)
            len--;
        int64_t n = 0;
        int_parse pr = parse_i64(body + start, len - start, &n);
        if (pr == INT_RANGE) {
            snprintf(err, err_size,
                     "the number of partitions is out of range (the largest accepted is %d)",
                     BR_ADMIN_PARTITIONS_MAX);
            return 400;
        }
        if (pr != INT_OK) {
            snprintf(err, err_size, "the body must be the number of partitions, a decimal integer");
            return 400;
        }
        if (n < 1)
            return refuse(err, err_size, "the number of partitions must be more than 0");
        if (n > BR_ADMIN_PARTITIONS_MAX) {
            snprintf(err, err_size,
                     "%" PRId64 " partitions is more than the limit of %d partitions per topic "
                     "(BR_ADMIN_PARTITIONS_MAX)",
                     n, BR_ADMIN_PARTITIONS_MAX);
            return 412;
        }
        if (out->tn.partition >= 0)
            return refuse(err, err_size,
                          "a partition of a partitioned topic cannot be partitioned");
        out->partitions = (int)n;
        break;
    }
    default:
        break;
    }
    return 0;
}

static admin_req *parse(mg_http_request *req, void *arg, admin_op op)
{
    br_broker *b = arg;
    admin_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        mg_http_reply_json_error(req, 500, "out of memory");
        return NULL;
    }
    r->b = b;
    r->req = req;
    r->op = op;
    br_admin_args a;
    char err[256];
    int status = br_admin_args_parse(req, (int)op, &a, err, sizeof(err));
    if (status != 0) {
        finish(r, status, err);
        return NULL;
    }
    r->tn = a.tn;
    memcpy(r->sub, a.sub, sizeof(r->sub));
    r->force = a.force;
    r->arg = a.arg;
    r->partitions = a.partitions;
    r->pos = a.pos;
    r->has_pos = a.has_pos;
    r->excluded = a.excluded;
    return r;
}

static void ml_path(const pw_topic_name *tn, char *dst, size_t cap)
{
    char name[ML_NAME_BYTES_MAX];
    pw_topic_ml_name(tn, name, sizeof(name));
    snprintf(dst, cap, "/managed-ledgers/%s", name);
}

/* ---- JSON bodies --------------------------------------------------------------------------- */

static void pos_str(char *dst, size_t cap, ml_position p)
{
    snprintf(dst, cap, "%" PRId64 ":%" PRId64, p.ledger_id, p.entry_id);
}

static int64_t sub_backlog_msgs(const br_sub *s)
{
    return s->cursor != NULL ? mc_backlog_messages(s->cursor) : 0;
}

static int64_t sub_unacked(const br_sub *s)
{
    int64_t n = 0;
    for (const mg_link *l = s->consumers.next; l != &s->consumers; l = l->next)
        n += (int64_t)MG_CONTAINER_OF(l, br_consumer, sub_link)->unacked_msgs;
    return n;
}

static void stats_json(br_topic *t, mg_strbuf *sb)
{
    uint64_t avg = t->msg_in > 0 ? t->bytes_in / t->msg_in : 0;
    br_policy pol;
    br_policy_effective(t, &pol);
    mg_strbuf_printf(sb,
                     "{\"msgRateIn\":%.3f,\"msgThroughputIn\":%.3f,\"msgRateOut\":%.3f,"
                     "\"msgThroughputOut\":%.3f,\"msgInCounter\":%" PRIu64
                     ",\"bytesInCounter\":%" PRIu64 ",\"msgOutCounter\":%" PRIu64
                     ",\"bytesOutCounter\":%" PRIu64 ",\"averageMsgSize\":%" PRIu64
                     ",\"storageSize\":%" PRId64 ",\"backlogSize\":%" PRId64
                     ",\"backlogQuotaLimitSize\":%" PRId64 ",\"backlogQuotaLimitTime\":%" PRId64
                     ",\"publishers\":[",
                     t->rate_in, t->throughput_in, t->rate_out, t->throughput_out, t->msg_in,
                     t->bytes_in, t->msg_out, t->bytes_out, avg, ml_bytes_total(t->ml),
                     br_topic_backlog_bytes(t), pol.backlog_limit_bytes, pol.backlog_limit_s);
    bool first = true;
    for (mg_link *l = t->producers.next; l != &t->producers; l = l->next) {
        br_producer *p = MG_CONTAINER_OF(l, br_producer, topic_link);
        mg_strbuf_printf(sb, "%s{\"producerId\":%" PRIu64 ",\"producerName\":", first ? "" : ",",
                         p->id);
        mg_strbuf_json_string(sb, p->name);
        mg_strbuf_printf(sb,
                         ",\"accessMode\":\"%s\",\"msgRateIn\":%.3f,\"msgThroughputIn\":%.3f,"
                         "\"msgInCounter\":%" PRIu64 ",\"bytesInCounter\":%" PRIu64 ",\"address\":",
                         p->access_mode == 0 ? "Shared" : "Exclusive", p->rate_in, p->throughput_in,
                         p->msg_in, p->bytes_in);
        mg_strbuf_json_string(sb, p->conn->peer);
        mg_strbuf_printf(sb, ",\"clientVersion\":");
        mg_strbuf_json_string(sb, p->conn->client_version);
        mg_strbuf_printf(sb, ",\"connectedSinceMs\":%" PRId64 "}", p->connected_since_ms);
        first = false;
    }
    mg_strbuf_puts(sb, "],\"subscriptions\":{");
    first = true;
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        if (s->closing)
            continue;
        if (!first)
            mg_strbuf_puts(sb, ",");
        first = false;
        mg_strbuf_json_string(sb, s->name);
        mg_strbuf_printf(
            sb,
            ":{\"msgRateOut\":%.3f,\"msgThroughputOut\":%.3f,\"msgOutCounter\":%" PRIu64
            ",\"bytesOutCounter\":%" PRIu64 ",\"msgBacklog\":%" PRId64 ",\"backlogSize\":%" PRId64
            ",\"unackedMessages\":%" PRId64 ",\"msgRedelivered\":%" PRIu64
            ",\"msgRateExpired\":%.3f,\"totalMsgExpired\":%" PRIu64
            ",\"type\":\"%s\",\"isDurable\":%s,"
            "\"consumers\":[",
            s->rate_out, s->throughput_out, s->msg_out, s->bytes_out, sub_backlog_msgs(s),
            s->cursor != NULL ? mc_backlog_entries(s->cursor) : 0, sub_unacked(s),
            s->msg_redelivered, s->rate_expired, s->msg_expired, br_sub_type_name(s->type),
            s->durable ? "true" : "false");
        bool kfirst = true;
        for (mg_link *m = s->consumers.next; m != &s->consumers; m = m->next) {
            br_consumer *k = MG_CONTAINER_OF(m, br_consumer, sub_link);
            if (!k->ready)
                continue;
            mg_strbuf_printf(sb, "%s{\"consumerName\":", kfirst ? "" : ",");
            mg_strbuf_json_string(sb, k->name);
            mg_strbuf_printf(sb,
                             ",\"msgRateOut\":%.3f,\"msgThroughputOut\":%.3f,"
                             "\"msgOutCounter\":%" PRIu64 ",\"bytesOutCounter\":%" PRIu64
                             ",\"availablePermits\":%" PRId64 ",\"unackedMessages\":%" PRIu64
                             ",\"priorityLevel\":%d,\"isActive\":%s,\"address\":",
                             k->rate_out, k->throughput_out, k->msg_out, k->bytes_out, k->permits,
                             k->unacked_msgs, k->priority,
                             (s->type != BR_SUB_FAILOVER || k->active) ? "true" : "false");
            mg_strbuf_json_string(sb, k->conn->peer);
            mg_strbuf_printf(sb, ",\"connectedSinceMs\":%" PRId64 "}", k->connected_since_ms);
            kfirst = false;
        }
        mg_strbuf_puts(sb, "]}");
    }
    mg_strbuf_puts(sb, "}}");
}

static void internal_stats_json(br_topic *t, mg_strbuf *sb)
{
    char last[64];
    ml_position lp = ml_last_position(t->ml);
    if (lp.ledger_id < 0) {
        ml_position next = ml_first_position(t->ml);
        lp = (ml_position){ next.ledger_id, next.entry_id - 1 };
    }
    pos_str(last, sizeof(last), lp);
    mg_strbuf_printf(sb,
                     "{\"entriesAddedCounter\":%" PRId64 ",\"numberOfEntries\":%" PRId64
                     ",\"totalSize\":%" PRId64 ",\"messagesTotal\":%" PRId64
                     ",\"lastConfirmedEntry\":\"%s\",\"state\":\"%s\","
                     "\"lostLedgerCount\":%zu,\"lostEntriesSkipped\":%" PRId64 ",\"ledgers\":[",
                     ml_entries_total(t->ml), ml_entries_total(t->ml), ml_bytes_total(t->ml),
                     ml_messages_total(t->ml), last,
                     ml_is_terminated(t->ml) ? "Terminated" : "LedgerOpened",
                     ml_lost_ledger_count(t->ml), ml_lost_entries_skipped_total(t->ml));
    ml_ledger_info li[64];
    size_t total = ml_ledgers(t->ml, li, 64);
    size_t n = total < 64 ? total : 64;
    for (size_t i = 0; i < n; i++)
        mg_strbuf_printf(sb,
                         "%s{\"ledgerId\":%" PRId64 ",\"entries\":%" PRId64 ",\"size\":%" PRId64
                         ",\"timestamp\":%" PRId64 "%s}",
                         i > 0 ? "," : "", li[i].ledger_id, li[i].entries, li[i].size_bytes,
                         li[i].timestamp_ms, li[i].lost ? ",\"lost\":true" : "");
    mg_strbuf_puts(sb, "],\"cursors\":{");
    bool first = true;
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        if (s->cursor == NULL || s->closing)
            continue;
        if (!first)
            mg_strbuf_puts(sb, ",");
        first = false;
        char md[64], rd[64];
        pos_str(md, sizeof(md), mc_mark_delete_position(s->cursor));
        pos_str(rd, sizeof(rd), mc_read_position(s->cursor));
        mg_strbuf_json_string(sb, s->name);
        mg_strbuf_printf(sb,
                         ":{\"markDeletePosition\":\"%s\",\"readPosition\":\"%s\","
                         "\"totalNonContiguousDeletedMessagesRange\":%" PRId64
                         ",\"individuallyDeletedMessages\":\"[",
                         md, rd, mc_acked_range_count(s->cursor));
        mc_range ranges[32];
        size_t rt = mc_acked_ranges(s->cursor, ranges, 32);
        size_t rn = rt < 32 ? rt : 32;
        for (size_t i = 0; i < rn; i++)
            mg_strbuf_printf(sb, "%s(%" PRId64 ":%" PRId64 "..%" PRId64 ":%" PRId64 "]",
                             i > 0 ? "," : "", ranges[i].first.ledger_id,
                             ranges[i].first.entry_id - 1, ranges[i].last.ledger_id,
                             ranges[i].last.entry_id);
        mg_strbuf_printf(sb, "%s]\",\"isDurable\":%s", rt > rn ? ",..." : "",
                         s->durable ? "true" : "false");
        /* Lost ledgers: entries this cursor skipped, and the one where it waits, if any. */
        mg_strbuf_printf(sb, ",\"lostEntriesSkipped\":%" PRId64,
                         mc_lost_entries_skipped(s->cursor));
        if (s->stuck_lost)
            mg_strbuf_printf(sb, ",\"stoppedAtLostLedger\":%" PRId64, s->stuck_ledger_id);
        if (s->reader != NULL) {
            /* The cursor's window in the broker's caches (src/prefetch): the positions it
             * claims (first inclusive, end exclusive), the bytes its window aims to keep ahead,
             * its drain rate, and how its reads were served. */
            pf_reader_stats rs;
            pf_reader_stats_get(s->reader, &rs);
            char cf[64], ce[64];
            pos_str(cf, sizeof(cf), rs.claim_first);
            pos_str(ce, sizeof(ce), rs.claim_last);
            mg_strbuf_printf(sb,
                             ",\"prefetch\":{\"active\":%s,\"atTail\":%s,\"windowFirst\":\"%s\","
                             "\"windowEnd\":\"%s\",\"windowTargetBytes\":%" PRIu64
                             ",\"drainRateBytesPerSecond\":%.0f,\"cacheHits\":%" PRIu64
                             ",\"cacheMisses\":%" PRIu64 ",\"waits\":%" PRIu64 "}",
                             rs.active ? "true" : "false", rs.at_tail ? "true" : "false", cf, ce,
                             rs.window_bytes, rs.rate_bytes_per_s, rs.hits, rs.misses, rs.waits);
        }
        mg_strbuf_puts(sb, "}");
    }
    mg_strbuf_puts(sb, "}}");
}

/* ---- operations on an open topic --------------------------------------------------------------
 */

static void sub_op_done(int status, void *arg)
{
    finish_rc(arg, status);
}

static void sub_created(int status, void *arg)
{
    finish_rc(arg, status);
}

static void terminated_cb(int status, ml_position last, void *arg)
{
    admin_req *r = arg;
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_printf(&sb,
                     "{\"ledgerId\":%" PRId64 ",\"entryId\":%" PRId64 ",\"partitionIndex\":%d}",
                     last.ledger_id, last.entry_id, r->tn.partition);
    reply_json(r, 200, &sb);
    mg_free(r);
}

/* GET .../messageid/{timestamp}: ml_find_by_time answers the first entry whose broker timestamp
 * is at or after it, or the next position to be written when there is none (then 404, as
 * Pulsar). The id names the entry; batchIndex -1 stands for its first message. */
static void message_id_found(int status, ml_position pos, void *arg)
{
    admin_req *r = arg;
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    br_topic *t = br_topic_find(r->b, r->tn.full);
    if (t == NULL || t->state != BR_TOPIC_OPEN || t->ml == NULL) {
        finish(r, 503, "the topic was closed during the search");
        return;
    }
    ml_position last = ml_last_position(t->ml);
    if (last.ledger_id < 0 || ml_position_cmp(pos, last) > 0) {
        finish(r, 404, "no message after the timestamp");
        return;
    }
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_printf(&sb,
                     "{\"ledgerId\":%" PRId64 ",\"entryId\":%" PRId64
                     ",\"partitionIndex\":%d,\"batchIndex\":-1}",
                     pos.ledger_id, pos.entry_id, r->tn.partition);
    reply_json(r, 200, &sb);
    mg_free(r);
}

/* Where a reset by message id puts the read position: the id itself, the entry after it
 * ("isExcluded"), the first entry (earliest, -1:-1) or the end (latest, INT64_MAX). */
static ml_position reset_target(br_topic *t, const admin_req *r)
{
    if (r->pos.ledger_id < 0)
        return ml_first_position(t->ml);
    if (r->pos.ledger_id == INT64_MAX) {
        ml_position last = ml_last_position(t->ml);
        return last.ledger_id < 0 ? ml_first_position(t->ml) : ml_next_position(t->ml, last);
    }
    return r->excluded ? ml_next_position(t->ml, r->pos) : r->pos;
}

/* Whether pos names an entry the topic holds, or the end (the next position to be written).
 * Earliest and latest (ledger -1, INT64_MAX) always do. */
static bool position_held(br_topic *t, ml_position pos)
{
    if (pos.ledger_id < 0 || pos.ledger_id == INT64_MAX)
        return true;
    ml_position last = ml_last_position(t->ml);
    ml_position end = last.ledger_id < 0 ? ml_first_position(t->ml) : ml_next_position(t->ml, last);
    if (ml_position_cmp(pos, end) == 0)
        return true;
    if (pos.entry_id < 0 || ml_position_cmp(pos, ml_first_position(t->ml)) < 0)
        return false;
    int64_t entries = 0, bytes = 0;
    return ml_ledger_size(t->ml, pos.ledger_id, &entries, &bytes) == MG_OK &&
           pos.entry_id < entries;
}

/* Refuses (412, as Pulsar) a message id the topic does not hold; true when it was refused. */
static bool refuse_position(admin_req *r, br_topic *t)
{
    if (!r->has_pos || position_held(t, r->pos))
        return false;
    char why[200];
    snprintf(why, sizeof(why),
             "Unable to find position for position specified: %" PRId64 ":%" PRId64
             " is not a message of the topic",
             r->pos.ledger_id, r->pos.entry_id);
    finish(r, 412, why);
    return true;
}

/* A subscription created at a message id: open (at the end), now reset to the id. */
static void sub_created_at(int status, void *arg)
{
    admin_req *r = arg;
    br_sub *s = status == MG_OK ? br_topic_sub_find(r->topic, r->sub) : NULL;
    if (status == MG_OK && (s == NULL || s->cursor == NULL))
        status = MG_ESTATE;
    if (status == MG_OK)
        status = br_sub_reset_to_position(s, reset_target(r->topic, r), sub_op_done, r);
    if (status != MG_OK)
        finish_rc(r, status);
}

/* ---- peek ---------------------------------------------------------------------------------- */

/* Copies text into dst (cap bytes) for a header value: control characters become '?'. */
static void header_text(char *dst, size_t cap, const char *text, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[n] = '\0';
}

/* Whether key can be a header name's end (an RFC 9110 token). */
static bool header_token(const char *key)
{
    if (key == NULL || key[0] == '\0' || strlen(key) > 200)
        return false;
    for (const char *p = key; *p != '\0'; p++)
        if (!(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
            strchr("!#$%&'*+-.^_`|~", *p) == NULL)
            return false;
    return true;
}

static void iso_time(char *dst, size_t cap, uint64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char date[40];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(dst, cap, "%s.%03uZ", date, (unsigned)(ms % 1000));
}

/* Headers of a peek answer: at most PEEK_FIXED fixed ones and the first PEEK_PROPS_MAX
 * properties (more are left out), each name and value held in its own slot. */
enum { PEEK_FIXED = 10, PEEK_PROPS_MAX = 64, PEEK_HEADERS = PEEK_FIXED + PEEK_PROPS_MAX };
typedef struct peek_headers {
    const char *kv[2 * PEEK_HEADERS];
    char names[PEEK_PROPS_MAX][224];
    char values[PEEK_HEADERS][512];
    size_t count;
} peek_headers;

static void peek_add(peek_headers *h, const char *name, const char *value, size_t len)
{
    if (h->count >= PEEK_HEADERS)
        return;
    header_text(h->values[h->count], sizeof(h->values[0]), value, len);
    h->kv[2 * h->count] = name;
    h->kv[2 * h->count + 1] = h->values[h->count];
    h->count++;
}

static void peek_addf(peek_headers *h, const char *name, int64_t v)
{
    char text[32];
    int n = snprintf(text, sizeof(text), "%" PRId64, v);
    peek_add(h, name, text, (size_t)n);
}

static void peek_reply(admin_req *r, const ml_entry *e)
{
    const uint8_t *p = mg_buf_data(e->buf) + e->payload_off;
    pw_payload pl;
    int rc = pw_payload_parse(p, e->payload_len, false, &pl);
    if (rc != MG_OK) {
        finish(r, 500, "the stored entry does not parse as a Pulsar message");
        return;
    }
    Magnetar__Pulsar__MessageMetadata *md = NULL;
    rc = pw_metadata_unpack(p, &pl, &md);
    mg_buf *plain = NULL;
    if (rc == MG_OK && pl.compression != 0)
        rc = pw_decompress(pl.compression, p + pl.data_off, pl.data_len, pl.uncompressed_size,
                           &plain);
    if (rc != MG_OK) {
        pw_metadata_free(md);
        finish(r, 500, rc == MG_ENOMEM ? "out of memory" : "the stored entry does not decompress");
        return;
    }
    peek_headers *h = mg_calloc(1, sizeof(*h));
    if (h == NULL) {
        mg_buf_unref(plain);
        pw_metadata_free(md);
        finish(r, 500, "out of memory");
        return;
    }
    char text[64];
    int n = snprintf(text, sizeof(text), "%" PRId64 ":%" PRId64, e->position.ledger_id,
                     e->position.entry_id);
    peek_add(h, "X-Pulsar-Message-ID", text, (size_t)n);
    iso_time(text, sizeof(text), pl.publish_time_ms);
    peek_add(h, "X-Pulsar-publish-time", text, strlen(text));
    if (pl.event_time_ms != 0) {
        iso_time(text, sizeof(text), pl.event_time_ms);
        peek_add(h, "X-Pulsar-event-time", text, strlen(text));
    }
    peek_add(h, "X-Pulsar-producer-name", pl.producer_name, pl.producer_name_len);
    peek_addf(h, "X-Pulsar-sequence-id", pl.sequence_id);
    if (pl.batched) {
        peek_addf(h, "X-Pulsar-num-batch-message", pl.num_messages);
        peek_addf(h, "X-Pulsar-batch-size",
                  (int64_t)(plain != NULL ? mg_buf_len(plain) : pl.data_len));
    }
    /* The broker's prefix is not part of the payload view: the entry carries its fields. */
    if (e->broker_timestamp_ms > 0)
        peek_addf(h, "X-Pulsar-Broker-Entry-METADATA-timestamp", e->broker_timestamp_ms);
    if (e->index >= 0)
        peek_addf(h, "X-Pulsar-Broker-Entry-METADATA-index", e->index);
    for (size_t i = 0; md != NULL && i < md->n_properties && i < PEEK_PROPS_MAX; i++) {
        const char *key = md->properties[i]->key;
        const char *value = md->properties[i]->value;
        if (!header_token(key) || value == NULL)
            continue;
        snprintf(h->names[i], sizeof(h->names[0]), "X-Pulsar-PROPERTY-%s", key);
        peek_add(h, h->names[i], value, strlen(value));
    }
    const uint8_t *data = plain != NULL ? mg_buf_data(plain) : p + pl.data_off;
    size_t data_len = plain != NULL ? mg_buf_len(plain) : pl.data_len;
    mg_http_reply_headers(r->req, 200, "application/octet-stream", h->kv, h->count, data, data_len);
    mg_free(h);
    mg_buf_unref(plain);
    pw_metadata_free(md);
    br_topic_unref(r->topic);
    mg_free(r);
}

static void peek_read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    admin_req *r = arg;
    if (status == MG_ENOTFOUND) {
        finish(r, 500, "the entry is in a lost ledger (its data cannot be read)");
        return;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    if (count == 0) {
        finish(r, 404, "Message not found");
        return;
    }
    if ((int64_t)count >= r->arg) {
        peek_reply(r, &entries[r->arg - 1]);
        return;
    }
    if (r->topic->state != BR_TOPIC_OPEN || r->topic->ml == NULL) {
        finish(r, 503, "the topic closed while it was read");
        return;
    }
    r->arg -= (int64_t)count;
    r->pos = ml_next_position(r->topic->ml, entries[count - 1].position);
    peek_read(r);
}

/* Reads on from r->pos until the r->arg-th entry. */
static void peek_read(admin_req *r)
{
    if (r->topic->state != BR_TOPIC_OPEN || r->topic->ml == NULL) {
        finish(r, 503, "the topic closed while it was read");
        return;
    }
    int rc =
        ml_read(r->topic->ml, r->pos, (int)r->arg, BR_ADMIN_PEEK_READ_BYTES, peek_read_done, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static bool topic_in_use(br_topic *t)
{
    if (!mg_list_empty(&t->producers))
        return true;
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next)
        if (MG_CONTAINER_OF(l, br_sub, topic_link)->consumer_count > 0)
            return true;
    return false;
}

static void topic_deleted_cb(int status, void *arg)
{
    finish_rc(arg, status == MG_ENOTFOUND ? MG_OK : status);
}

static void with_topic(int status, br_topic *t, void *arg)
{
    admin_req *r = arg;
    if (status != MG_OK) {
        finish(r, status_of(status), mg_strerror(status));
        return;
    }
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    br_sub *s = r->sub[0] != '\0' ? br_topic_sub_find(t, r->sub) : NULL;
    int rc;
    switch (r->op) {
    case OP_CREATE:
        finish(r, 204, NULL);
        return;
    case OP_DELETE:
        if (topic_in_use(t) && !r->force) {
            finish(r, 412, "Topic has active producers/subscriptions");
            return;
        }
        br_topic_close(t, true, topic_deleted_cb, r);
        return;
    case OP_STATS:
        stats_json(t, &sb);
        reply_json(r, 200, &sb);
        mg_free(r);
        return;
    case OP_INTERNAL_STATS:
        internal_stats_json(t, &sb);
        reply_json(r, 200, &sb);
        mg_free(r);
        return;
    case OP_SUBSCRIPTIONS: {
        mg_strbuf_puts(&sb, "[");
        bool first = true;
        for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
            br_sub *x = MG_CONTAINER_OF(l, br_sub, topic_link);
            if (x->closing || !x->durable)
                continue;
            if (!first)
                mg_strbuf_puts(&sb, ",");
            first = false;
            mg_strbuf_json_string(&sb, x->name);
        }
        mg_strbuf_puts(&sb, "]");
        reply_json(r, 200, &sb);
        mg_free(r);
        return;
    }
    case OP_LAST_MESSAGE_ID: {
        ml_position lp = ml_last_position(t->ml);
        if (lp.ledger_id < 0) {
            ml_position next = ml_first_position(t->ml);
            lp = (ml_position){ next.ledger_id, next.entry_id - 1 };
        }
        mg_strbuf_printf(&sb,
                         "{\"ledgerId\":%" PRId64 ",\"entryId\":%" PRId64 ",\"partitionIndex\":%d}",
                         lp.ledger_id, lp.entry_id, t->name.partition);
        reply_json(r, 200, &sb);
        mg_free(r);
        return;
    }
    case OP_MESSAGE_ID:
        rc = ml_find_by_time(t->ml, r->arg, message_id_found, r);
        if (rc != MG_OK)
            finish_rc(r, rc);
        return;
    case OP_TERMINATE:
        rc = br_topic_terminate(t, terminated_cb, r);
        if (rc != MG_OK)
            finish_rc(r, rc);
        return;
    case OP_SUB_CREATE: {
        if (s != NULL) {
            finish(r, 409, "Subscription already exists for topic");
            return;
        }
        if (refuse_position(r, t))
            return;
        /* Earliest and latest are initial positions; an id is a reset once it is open. */
        bool at_id = r->has_pos && r->pos.ledger_id >= 0 && r->pos.ledger_id != INT64_MAX;
        mc_initial initial =
            r->has_pos && r->pos.ledger_id < 0 ? MC_INITIAL_EARLIEST : MC_INITIAL_LATEST;
        if (at_id) {
            r->topic = t;
            br_topic_ref(t);
        }
        rc = br_sub_open_durable(t, r->sub, initial, at_id ? sub_created_at : sub_created, r);
        if (rc != MG_OK)
            finish_rc(r, rc);
        return;
    }
    default:
        break;
    }
    /* Operations on an existing subscription. */
    if (s == NULL || s->cursor == NULL) {
        finish(r, 404, "Subscription not found");
        return;
    }
    switch (r->op) {
    case OP_SUB_DELETE:
        if (s->consumer_count > 0 && !r->force) {
            finish(r, 412, "Subscription has active connected consumers");
            return;
        }
        br_sub_close(s, true, sub_op_done, r);
        return;
    case OP_SKIP:
    case OP_SKIP_ALL:
        rc = br_sub_skip(s, r->op == OP_SKIP_ALL ? -1 : r->arg, sub_op_done, r);
        break;
    case OP_RESET:
        rc = br_sub_reset_to_time(s, r->arg, sub_op_done, r);
        break;
    case OP_RESET_ID:
        if (refuse_position(r, t))
            return;
        rc = br_sub_reset_to_position(s, reset_target(t, r), sub_op_done, r);
        break;
    case OP_PEEK:
        r->topic = t;
        br_topic_ref(t);
        r->pos = ml_next_position(t->ml, mc_mark_delete_position(s->cursor));
        peek_read(r);
        return;
    default:
        rc = MG_EINVAL;
        break;
    }
    if (rc != MG_OK)
        finish_rc(r, rc);
}

/* Reads the topic's node (partitioned: its partitioned-topic node) into cb; a read refused at
 * once finishes the request. */
static void get_topic_node(admin_req *r, bool partitioned, md_get_cb cb)
{
    char path[MD_PATH_BYTES_MAX];
    if (partitioned)
        br_partitioned_path(&r->tn, path, sizeof(path));
    else
        ml_path(&r->tn, path, sizeof(path));
    int rc = md_get(r->b->md, path, cb, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void topic_node_got(int status, const void *value, size_t len, const md_stat *stat,
                           void *arg)
{
    (void)value;
    (void)len;
    (void)stat;
    admin_req *r = arg;
    if (r->op == OP_CREATE) {
        if (status == MG_OK) {
            finish(r, 409, "This topic already exists");
            return;
        }
        if (status != MG_ENOTFOUND) {
            finish_rc(r, status);
            return;
        }
    } else if (status == MG_ENOTFOUND) {
        finish(r, 404, "Topic not found");
        return;
    } else if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    if (r->op == OP_DELETE && br_topic_find(r->b, r->tn.full) == NULL) {
        int rc = br_topic_delete_stored(r->b, &r->tn, topic_deleted_cb, r);
        if (rc != MG_OK)
            finish_rc(r, rc);
        return;
    }
    int rc = br_topic_get(r->b, &r->tn, with_topic, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void start_topic_op(admin_req *r)
{
    br_topic *t = br_topic_find(r->b, r->tn.full);
    if (t != NULL && t->state == BR_TOPIC_OPEN && r->op != OP_CREATE) {
        with_topic(MG_OK, t, r);
        return;
    }
    get_topic_node(r, false, topic_node_got);
}

static void part_create_node(admin_req *r);

/* A partitioned topic's name is also refused as a plain topic (and the other way round): a
 * create (OP_CREATE, OP_PART_CREATE) first reads the node of the other kind. */
static void other_kind_checked(int status, const void *value, size_t len, const md_stat *stat,
                               void *arg)
{
    (void)value;
    (void)len;
    (void)stat;
    admin_req *r = arg;
    bool partitioned = r->op == OP_PART_CREATE;
    if (status == MG_OK) {
        finish(r, 409,
               partitioned ? "This topic already exists (as a non-partitioned topic)"
                           : "This topic already exists (as a partitioned topic)");
        return;
    }
    if (partitioned)
        part_create_node(r);
    else
        start_topic_op(r);
}

/* Every route names a namespace: it must exist (404 "Namespace does not exist", as Pulsar)
 * before anything else is looked up or created. */
static void ns_checked(int status, void *arg)
{
    admin_req *r = arg;
    if (status == MG_ENOTFOUND)
        finish(r, 404, "Namespace does not exist");
    else if (status != MG_OK)
        finish_rc(r, status);
    else
        r->next(r);
}

static void ns_gate(admin_req *r, void (*next)(admin_req *r))
{
    r->next = next;
    int rc = br_ns_check(r->b, r->tn.tenant, r->tn.ns, ns_checked, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

#define HANDLER(fn, op_)                            \
    static void fn(mg_http_request *req, void *arg) \
    {                                               \
        admin_req *r = parse(req, arg, op_);        \
        if (r != NULL)                              \
            ns_gate(r, start_topic_op);             \
    }

HANDLER(h_delete, OP_DELETE)
HANDLER(h_stats, OP_STATS)
HANDLER(h_internal_stats, OP_INTERNAL_STATS)
HANDLER(h_subscriptions, OP_SUBSCRIPTIONS)
HANDLER(h_last_message_id, OP_LAST_MESSAGE_ID)
HANDLER(h_sub_create, OP_SUB_CREATE)
HANDLER(h_sub_delete, OP_SUB_DELETE)
HANDLER(h_skip_all, OP_SKIP_ALL)
HANDLER(h_terminate, OP_TERMINATE)
HANDLER(h_message_id, OP_MESSAGE_ID)

static void create_go(admin_req *r)
{
    if (r->tn.partition >= 0)
        start_topic_op(r);
    else
        get_topic_node(r, true, other_kind_checked);
}

static void h_create(mg_http_request *req, void *arg)
{
    admin_req *r = parse(req, arg, OP_CREATE);
    if (r != NULL)
        ns_gate(r, create_go);
}

HANDLER(h_skip, OP_SKIP)
HANDLER(h_reset, OP_RESET)
HANDLER(h_reset_id, OP_RESET_ID)
HANDLER(h_peek, OP_PEEK)

/* ---- partitioned topics ------------------------------------------------------------------------
 */

static void part_created(int status, const char *path, void *arg)
{
    (void)path;
    admin_req *r = arg;
    if (status == MG_EEXIST)
        finish(r, 409, "This topic already exists");
    else
        finish_rc(r, status);
}

static void part_create_node(admin_req *r)
{
    char path[MD_PATH_BYTES_MAX];
    br_partitioned_path(&r->tn, path, sizeof(path));
    char value_json[64];
    int n = snprintf(value_json, sizeof(value_json), "{\"partitions\":%d}", r->partitions);
    int rc = md_create(r->b->md, path, value_json, (size_t)n, MD_CREATE_PARENTS, part_created, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void part_create_go(admin_req *r)
{
    get_topic_node(r, false, other_kind_checked);
}

static void h_part_create(mg_http_request *req, void *arg)
{
    admin_req *r = parse(req, arg, OP_PART_CREATE);
    if (r != NULL)
        ns_gate(r, part_create_go);
}

static void part_got(int status, const void *value, size_t len, const md_stat *stat, void *arg);

static void part_read_go(admin_req *r)
{
    get_topic_node(r, true, part_got);
}

static void h_part_get(mg_http_request *req, void *arg)
{
    admin_req *r = parse(req, arg, OP_PART_GET);
    if (r != NULL)
        ns_gate(r, part_read_go);
}

static void part_delete_next(admin_req *r);

static void part_node_deleted(int status, void *arg)
{
    finish_rc(arg, status);
}

static void part_one_deleted(int status, void *arg)
{
    admin_req *r = arg;
    if (status != MG_OK && status != MG_ENOTFOUND) {
        finish_rc(r, status);
        return;
    }
    part_delete_next(r);
}

static void part_delete_next(admin_req *r)
{
    while (r->next_partition < r->partitions) {
        pw_topic_name pn;
        int i = r->next_partition++;
        if (pw_topic_partition_name(&r->tn, i, &pn) != MG_OK)
            continue;
        br_topic *t = br_topic_find(r->b, pn.full);
        if (t != NULL && t->state == BR_TOPIC_CLOSING)
            continue;
        if (t != NULL) {
            if (t->state == BR_TOPIC_OPEN && topic_in_use(t) && !r->force) {
                finish(r, 412, "Topic has active producers/subscriptions");
                return;
            }
            br_topic_close(t, true, part_one_deleted, r);
            return;
        }
        int rc = br_topic_delete_stored(r->b, &pn, part_one_deleted, r);
        if (rc == MG_OK)
            return;
        if (rc != MG_ENOTFOUND) {
            finish_rc(r, rc);
            return;
        }
    }
    char path[MD_PATH_BYTES_MAX];
    br_partitioned_path(&r->tn, path, sizeof(path));
    int rc = md_delete(r->b->md, path, MD_VERSION_ANY, part_node_deleted, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

static void part_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    admin_req *r = arg;
    int n = 0;
    if (status == MG_OK) {
        n = br_partitions_parse(value, len);
        if (n < 0) {
            finish(r, 500, "the stored partition count does not parse");
            return;
        }
    } else if (status != MG_ENOTFOUND) {
        finish_rc(r, status);
        return;
    }
    if (r->op == OP_PART_GET) {
        mg_strbuf sb;
        mg_strbuf_init(&sb, 0);
        mg_strbuf_printf(&sb, "{\"partitions\":%d}", n);
        reply_json(r, 200, &sb);
        mg_free(r);
        return;
    }
    if (status == MG_ENOTFOUND) {
        finish(r, 404, "Partitioned topic does not exist");
        return;
    }
    r->partitions = n;
    r->next_partition = 0;
    part_delete_next(r);
}

static void h_part_delete(mg_http_request *req, void *arg)
{
    admin_req *r = parse(req, arg, OP_PART_DELETE);
    if (r != NULL)
        ns_gate(r, part_read_go);
}

/* ---- namespace listings
 * -------------------------------------------------------------------------- */

static void list_done(int status, const char *const *names, size_t count, void *arg)
{
    admin_req *r = arg;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        finish_rc(r, status);
        return;
    }
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_puts(&sb, "[");
    for (size_t i = 0; i < count; i++) {
        char full[MG_PULSAR_TOPIC_BYTES_MAX + 64];
        snprintf(full, sizeof(full), "persistent://%s/%s/%s", r->tn.tenant, r->tn.ns, names[i]);
        if (i > 0)
            mg_strbuf_puts(&sb, ",");
        mg_strbuf_json_string(&sb, full);
    }
    mg_strbuf_puts(&sb, "]");
    reply_json(r, 200, &sb);
    mg_free(r);
}

static void list_go(admin_req *r)
{
    char path[MD_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s/persistent", r->list_root, r->tn.tenant, r->tn.ns);
    int rc = md_children(r->b->md, path, list_done, r);
    if (rc != MG_OK)
        finish_rc(r, rc);
}

/* Answers with the topics whose nodes stand under <root>/<tenant>/<namespace>/persistent. */
static void list_namespace(mg_http_request *req, void *arg, const char *root)
{
    admin_req *r = parse(req, arg, OP_STATS);
    if (r == NULL)
        return;
    r->list_root = root;
    ns_gate(r, list_go);
}

static void h_list(mg_http_request *req, void *arg)
{
    list_namespace(req, arg, "/managed-ledgers");
}

static void h_list_partitioned(mg_http_request *req, void *arg)
{
    list_namespace(req, arg, "/admin/partitioned-topics");
}

/* ---- clusters and brokers ------------------------------------------------------------------ */

static void h_clusters(mg_http_request *req, void *arg)
{
    br_broker *b = arg;
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_puts(&sb, "[");
    mg_strbuf_json_string(&sb, b->cluster);
    mg_strbuf_puts(&sb, "]");
    if (mg_strbuf_status(&sb) != MG_OK)
        mg_http_reply_json_error(req, 500, mg_strerror(mg_strbuf_status(&sb)));
    else
        mg_http_reply(req, 200, "application/json", mg_strbuf_str(&sb), sb.len);
    mg_strbuf_free(&sb);
}

static void brokers_listed(int status, const char *const *names, size_t count, void *arg)
{
    mg_http_request *req = arg;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        char why[160];
        snprintf(why, sizeof(why), "cannot read /brokers from the metadata store: %s",
                 mg_strerror(status));
        mg_http_reply_json_error(req, 500, why);
        return;
    }
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_puts(&sb, "[");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            mg_strbuf_puts(&sb, ",");
        mg_strbuf_json_string(&sb, names[i]);
    }
    mg_strbuf_puts(&sb, "]");
    if (mg_strbuf_status(&sb) != MG_OK)
        mg_http_reply_json_error(req, 500, mg_strerror(mg_strbuf_status(&sb)));
    else
        mg_http_reply(req, 200, "application/json", mg_strbuf_str(&sb), sb.len);
    mg_strbuf_free(&sb);
}

/* The live brokers: /brokers holds one ephemeral node per broker, named after its web service
 * address ("host:port"), which is what Pulsar lists. */
static void h_brokers(mg_http_request *req, void *arg)
{
    br_broker *b = arg;
    const char *cluster = mg_http_request_param(req, "cluster");
    if (cluster != NULL && strcmp(cluster, b->cluster) != 0) {
        char why[200];
        snprintf(why, sizeof(why), "Cluster %.64s does not exist (this broker serves cluster %s)",
                 cluster, b->cluster);
        mg_http_reply_json_error(req, 404, why);
        return;
    }
    int rc = md_children(b->md, "/brokers", brokers_listed, req);
    if (rc != MG_OK)
        brokers_listed(rc, NULL, 0, req);
}

#define BASE "/admin/v2/persistent/{tenant}/{namespace}"
static const struct {
    const char *method;
    const char *pattern;
    mg_http_handler_fn fn;
    admin_op op; /* what the handler passes to parse() */
} admin_routes[] = {
    { "GET", BASE, h_list, OP_STATS },
    { "GET", BASE "/partitioned", h_list_partitioned, OP_STATS },
    { "PUT", BASE "/{topic}", h_create, OP_CREATE },
    { "DELETE", BASE "/{topic}", h_delete, OP_DELETE },
    { "PUT", BASE "/{topic}/partitions", h_part_create, OP_PART_CREATE },
    { "GET", BASE "/{topic}/partitions", h_part_get, OP_PART_GET },
    { "DELETE", BASE "/{topic}/partitions", h_part_delete, OP_PART_DELETE },
    { "GET", BASE "/{topic}/stats", h_stats, OP_STATS },
    { "GET", BASE "/{topic}/internalStats", h_internal_stats, OP_INTERNAL_STATS },
    { "GET", BASE "/{topic}/subscriptions", h_subscriptions, OP_SUBSCRIPTIONS },
    { "GET", BASE "/{topic}/lastMessageId", h_last_message_id, OP_LAST_MESSAGE_ID },
    { "POST", BASE "/{topic}/terminate", h_terminate, OP_TERMINATE },
    { "GET", BASE "/{topic}/messageid/{timestamp}", h_message_id, OP_MESSAGE_ID },
    { "PUT", BASE "/{topic}/subscription/{sub}", h_sub_create, OP_SUB_CREATE },
    { "DELETE", BASE "/{topic}/subscription/{sub}", h_sub_delete, OP_SUB_DELETE },
    { "POST", BASE "/{topic}/subscription/{sub}/skip_all", h_skip_all, OP_SKIP_ALL },
    { "POST", BASE "/{topic}/subscription/{sub}/skip/{n}", h_skip, OP_SKIP },
    { "POST", BASE "/{topic}/subscription/{sub}/resetcursor/{timestamp}", h_reset, OP_RESET },
    { "POST", BASE "/{topic}/subscription/{sub}/resetcursor", h_reset_id, OP_RESET_ID },
    { "GET", BASE "/{topic}/subscription/{sub}/position/{n}", h_peek, OP_PEEK },
};

/* Routes outside a namespace: no topic to parse. */
static const struct {
    const char *method;
    const char *pattern;
    mg_http_handler_fn fn;
} cluster_routes[] = {
    { "GET", "/admin/v2/clusters", h_clusters },
    { "GET", "/admin/v2/brokers", h_brokers },
    { "GET", "/admin/v2/brokers/{cluster}", h_brokers },
};
#undef BASE

int br_broker_admin_register(br_broker *b, mg_http_server *http)
{
    for (size_t i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++)
        MG_TRY(mg_http_server_route(http, admin_routes[i].method, admin_routes[i].pattern,
                                    admin_routes[i].fn, b));
    for (size_t i = 0; i < sizeof(cluster_routes) / sizeof(cluster_routes[0]); i++)
        MG_TRY(mg_http_server_route(http, cluster_routes[i].method, cluster_routes[i].pattern,
                                    cluster_routes[i].fn, b));
    return br_namespace_admin_register(b, http);
}

bool br_admin_route(size_t i, const char **method, const char **pattern, int *op)
{
    if (i >= sizeof(admin_routes) / sizeof(admin_routes[0]))
        return false;
    *method = admin_routes[i].method;
    *pattern = admin_routes[i].pattern;
    *op = (int)admin_routes[i].op;
    return true;
}

/* ---- Prometheus
 * ------------------------------------------------------------------------------------ */

typedef enum topic_metric {
    TM_IN_MSGS,
    TM_IN_BYTES,
    TM_OUT_MSGS,
    TM_OUT_BYTES,
    TM_RATE_IN,
    TM_RATE_OUT,
    TM_THROUGHPUT_IN,
    TM_THROUGHPUT_OUT,
    TM_STORAGE,
    TM_BACKLOG_SIZE,
    TM_MSG_BACKLOG,
    TM_PRODUCERS,
    TM_CONSUMERS,
    TM_SUBSCRIPTIONS,
    TM_COUNT,
} topic_metric;

static const struct {
    const char *name;
    const char *type;
    const char *help;
} topic_metrics[TM_COUNT] = {
    { "pulsar_in_messages_total", "counter", "Messages published to the topic" },
    { "pulsar_in_bytes_total", "counter", "Bytes published to the topic" },
    { "pulsar_out_messages_total", "counter", "Messages delivered from the topic" },
    { "pulsar_out_bytes_total", "counter", "Bytes delivered from the topic" },
    { "pulsar_rate_in", "gauge", "Messages per second published (last 10 s)" },
    { "pulsar_rate_out", "gauge", "Messages per second delivered (last 10 s)" },
    { "pulsar_throughput_in", "gauge", "Bytes per second published (last 10 s)" },
    { "pulsar_throughput_out", "gauge", "Bytes per second delivered (last 10 s)" },
    { "pulsar_storage_size", "gauge", "Bytes stored for the topic" },
    { "pulsar_storage_backlog_size", "gauge",
      "Estimated bytes not yet consumed by the slowest "
      "subscription" },
    { "pulsar_msg_backlog", "gauge", "Messages not yet acknowledged, summed over subscriptions" },
    { "pulsar_producers_count", "gauge", "Producers connected to the topic" },
    { "pulsar_consumers_count", "gauge", "Consumers connected to the topic" },
    { "pulsar_subscriptions_count", "gauge", "Subscriptions of the topic" },
};

static double topic_metric_value(br_topic *t, topic_metric m)
{
    double consumers = 0, backlog = 0, subs = 0, producers = 0;
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        consumers += s->consumer_count;
        backlog += (double)sub_backlog_msgs(s);
        subs += 1;
    }
    for (mg_link *l = t->producers.next; l != &t->producers; l = l->next)
        producers += 1;
    switch (m) {
    case TM_IN_MSGS:
        return (double)t->msg_in;
    case TM_IN_BYTES:
        return (double)t->bytes_in;
    case TM_OUT_MSGS:
        return (double)t->msg_out;
    case TM_OUT_BYTES:
        return (double)t->bytes_out;
    case TM_RATE_IN:
        return t->rate_in;
    case TM_RATE_OUT:
        return t->rate_out;
    case TM_THROUGHPUT_IN:
        return t->throughput_in;
    case TM_THROUGHPUT_OUT:
        return t->throughput_out;
    case TM_STORAGE:
        return (double)ml_bytes_total(t->ml);
    case TM_BACKLOG_SIZE:
        return (double)br_topic_backlog_bytes(t);
    case TM_MSG_BACKLOG:
        return backlog;
    case TM_PRODUCERS:
        return producers;
    case TM_CONSUMERS:
        return consumers;
    case TM_SUBSCRIPTIONS:
        return subs;
    default:
        return 0;
    }
}

int br_broker_metrics_render(br_broker *b, char **text, size_t *len)
{
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    if (*text != NULL)
        mg_strbuf_append(&sb, *text, *len);
    for (int m = 0; m < TM_COUNT; m++) {
        mg_strbuf_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", topic_metrics[m].name,
                         topic_metrics[m].help, topic_metrics[m].name, topic_metrics[m].type);
        for (size_t i = 0; i < b->topics.bucket_count; i++) {
            for (br_topic *t = b->topics.buckets[i]; t != NULL; t = t->hash_next) {
                if (t->state != BR_TOPIC_OPEN || t->ml == NULL)
                    continue;
                mg_strbuf_printf(&sb, "%s{cluster=\"%s\",namespace=\"%s/%s\",topic=\"%s\"} %.17g\n",
                                 topic_metrics[m].name, b->cluster, t->name.tenant, t->name.ns,
                                 t->name.full, topic_metric_value(t, (topic_metric)m));
            }
        }
    }
    static const char *const sub_metrics[][3] = {
        { "pulsar_subscription_back_log", "gauge", "Messages not yet acknowledged" },
        { "pulsar_subscription_msg_rate_out", "gauge", "Messages per second delivered" },
        { "pulsar_subscription_unacked_messages", "gauge", "Messages delivered, not acked" },
        { "pulsar_subscription_consumers_count", "gauge", "Consumers connected" },
        { "pulsar_subscription_msg_rate_expired", "gauge",
          "Messages per second expired by the message TTL" },
        { "pulsar_subscription_total_msg_expired", "gauge",
          "Messages expired by the message TTL since the subscription was opened" },
    };
    for (size_t m = 0; m < sizeof(sub_metrics) / sizeof(sub_metrics[0]); m++) {
        mg_strbuf_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", sub_metrics[m][0], sub_metrics[m][2],
                         sub_metrics[m][0], sub_metrics[m][1]);
        for (size_t i = 0; i < b->topics.bucket_count; i++) {
            for (br_topic *t = b->topics.buckets[i]; t != NULL; t = t->hash_next) {
                if (t->state != BR_TOPIC_OPEN)
                    continue;
                for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
                    br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
                    if (s->closing)
                        continue;
                    double v = m == 0   ? (double)sub_backlog_msgs(s)
                               : m == 1 ? s->rate_out
                               : m == 2 ? (double)sub_unacked(s)
                               : m == 3 ? (double)s->consumer_count
                               : m == 4 ? s->rate_expired
                                        : (double)s->msg_expired;
                    mg_strbuf_printf(&sb,
                                     "%s{cluster=\"%s\",namespace=\"%s/%s\",topic=\"%s\","
                                     "subscription=",
                                     sub_metrics[m][0], b->cluster, t->name.tenant, t->name.ns,
                                     t->name.full);
                    mg_strbuf_json_string(&sb, s->name); /* escapes \\ and \" as Prometheus */
                    mg_strbuf_printf(&sb, "} %.17g\n", v);
                }
            }
        }
    }
    int rc = mg_strbuf_status(&sb);
    if (rc != MG_OK) {
        mg_strbuf_free(&sb);
        return rc;
    }
    mg_free(*text);
    *text = mg_strbuf_take(&sb, len);
    return MG_OK;
}
