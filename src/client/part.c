/*
 * Lookups and the life cycle every producer and consumer part shares (the state diagram is in
 * client_int.h).
 *
 * LOOKUP: LOOKUP (or PARTITIONED_METADATA) is sent on the connection to a service address.
 * Redirect: ask again at the given broker, authoritative as it says, at most
 * PC_LOOKUP_REDIRECTS_MAX times; Connect: the owner is brokerServiceUrl (the pooled connection
 * to it is used); Failed: MG_EPERM with the broker's text (pc_last_error). A connection failure
 * to a service address moves the client to its next one. The lookup itself never retries: its
 * owner does, with backoff.
 *
 * PARTS: after a failure a part waits pc__backoff_next (PC_BACKOFF_MS_MIN doubling to
 * PC_BACKOFF_MS_MAX, with jitter) and starts again from the lookup; a READY part resets its
 * backoff. Before the first READY a part gives up on a refusal that retrying cannot change, or
 * once operation_timeout_ms passed since it started, reporting the last error.
 * ProducerBlockedQuotaExceededError (a backlog quota with producer_request_hold) is retried:
 * the quota clears when the subscriptions catch up.
 */
#include "client/client_int.h"

#include "client/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <string.h>

bool pc__server_error_retriable(int server_error)
{
    switch (server_error) {
    case PC__ERR(AuthenticationError):
    case PC__ERR(AuthorizationError):
    case PC__ERR(ConsumerBusy):
    case PC__ERR(ProducerBlockedQuotaExceededException):
    case PC__ERR(UnsupportedVersionError):
    case PC__ERR(TopicNotFound):
    case PC__ERR(SubscriptionNotFound):
    case PC__ERR(TopicTerminatedError):
    case PC__ERR(ProducerBusy):
    case PC__ERR(InvalidTopicName):
    case PC__ERR(IncompatibleSchema):
    case PC__ERR(ConsumerAssignError):
    case PC__ERR(NotAllowedError):
    case PC__ERR(ProducerFenced):
        return false;
    default:
        return true;
    }
}

/* ---- lookups ------------------------------------------------------------------------------------
 */

static void lookup_finish(pc__lookup *l, int status, bool fatal)
{
    l->active = false;
    l->cb(l, status, fatal);
}

static void lookup_step(pc__lookup *l);

static bool target_is_service(pc__lookup *l)
{
    for (uint32_t i = 0; i < l->c->service_count; i++)
        if (strcmp(l->c->service[i], l->target) == 0)
            return true;
    return false;
}

static void lookup_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__lookup *l = r->arg;
    l->req = NULL;
    if (status == MG_EPERM) {
        pc__set_last_error(l->c, cmd->error->message);
        lookup_finish(l, MG_EPERM, !pc__server_error_retriable((int)cmd->error->error));
        return;
    }
    if (status != MG_OK) {
        if (target_is_service(l))
            pc__service_failed(l->c, l->target);
        lookup_finish(l, status, false);
        return;
    }
    if (l->partitioned) {
        const Magnetar__Pulsar__CommandPartitionedTopicMetadataResponse *pm =
            cmd->partition_metadata_response;
        if (cmd->type != PC__T(PARTITIONED_METADATA_RESPONSE)) {
            lookup_finish(l, MG_EPROTO, false);
            return;
        }
        if (pm->has_response &&
            pm->response ==
                MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA_RESPONSE__LOOKUP_TYPE__Failed) {
            pc__set_last_error(l->c, pm->message != NULL ? pm->message : "lookup failed");
            lookup_finish(l, MG_EPERM,
                          pm->has_error && !pc__server_error_retriable((int)pm->error));
            return;
        }
        uint32_t n = pm->has_partitions ? pm->partitions : 0;
        if (n > MG_PULSAR_TOPIC_PARTITIONS_MAX) {
            pc__set_last_error(l->c, "too many partitions");
            lookup_finish(l, MG_ELIMIT, true);
            return;
        }
        l->partitions = n;
        lookup_finish(l, MG_OK, false);
        return;
    }
    if (cmd->type != PC__T(LOOKUP_RESPONSE)) {
        lookup_finish(l, MG_EPROTO, false);
        return;
    }
    const Magnetar__Pulsar__CommandLookupTopicResponse *lr = cmd->lookup_topic_response;
    int type = lr->has_response
                   ? (int)lr->response
                   : MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed;
    if (type == MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed) {
        pc__set_last_error(l->c, lr->message != NULL ? lr->message : "lookup failed");
        lookup_finish(l, MG_EPERM, lr->has_error && !pc__server_error_retriable((int)lr->error));
        return;
    }
    char addr[PC_ADDR_BYTES_MAX + 1];
    if (pc__parse_broker_url(lr->broker_service_url, addr, sizeof(addr)) != MG_OK) {
        pc__set_last_error(l->c, "the lookup answer names no usable pulsar:// broker URL");
        lookup_finish(l, MG_EPROTO, false);
        return;
    }
    if (type == MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect) {
        if (++l->redirects > PC_LOOKUP_REDIRECTS_MAX) {
            pc__set_last_error(l->c, "too many lookup redirects");
            lookup_finish(l, MG_ELIMIT, false);
            return;
        }
        snprintf(l->target, sizeof(l->target), "%s", addr);
        l->authoritative = lr->has_authoritative && lr->authoritative;
        lookup_step(l);
        return;
    }
    snprintf(l->broker, sizeof(l->broker), "%s", addr);
    lookup_finish(l, MG_OK, false);
}

static void lookup_send(pc__lookup *l, pc__conn *conn)
{
    uint64_t rid = pc__next_request_id(l->c);
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    Magnetar__Pulsar__CommandLookupTopic lt = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC__INIT;
    Magnetar__Pulsar__CommandPartitionedTopicMetadata pm =
        MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA__INIT;
    if (l->partitioned) {
        pm.topic = l->topic;
        pm.request_id = rid;
        cmd.type = PC__T(PARTITIONED_METADATA);
        cmd.partition_metadata = &pm;
    } else {
        lt.topic = l->topic;
        lt.request_id = rid;
        lt.has_authoritative = 1;
        lt.authoritative = l->authoritative;
        cmd.type = PC__T(LOOKUP);
        cmd.lookup_topic = &lt;
    }
    int rc = pc__conn_request(conn, &cmd, rid, lookup_answered, l, &l->req);
    if (rc != MG_OK)
        lookup_finish(l, rc == MG_ECLOSED ? MG_ECONNECTION : rc, false);
}

static void lookup_conn_ready(pc__wait *w, int status, pc__conn *conn)
{
    pc__lookup *l = MG_CONTAINER_OF(w, pc__lookup, wait);
    if (status != MG_OK) {
        if (target_is_service(l))
            pc__service_failed(l->c, l->target);
        lookup_finish(l, status == MG_EPERM ? MG_EPERM : MG_ECONNECTION, status == MG_EPERM);
        return;
    }
    lookup_send(l, conn);
}

/* Asks l->target; may finish (calling back) when the connection cannot even be asked for. */
static void lookup_step(pc__lookup *l)
{
    pc__conn *conn = NULL;
    int rc = pc__conn_get(l->c, l->target, &l->wait, &conn);
    if (rc == MG_EAGAIN)
        return;
    if (rc != MG_OK) {
        lookup_finish(l, rc, rc == MG_ECLOSED || rc == MG_EINVAL);
        return;
    }
    lookup_send(l, conn);
}

void pc__lookup_init(pc__lookup *l, pc_client *c, bool partitioned,
                     void (*cb)(pc__lookup *l, int status, bool fatal))
{
    memset(l, 0, sizeof(*l));
    l->c = c;
    l->partitioned = partitioned;
    l->cb = cb;
    l->wait.cb = lookup_conn_ready;
}

int pc__lookup_start(pc__lookup *l, const char *topic)
{
    pc__lookup_cancel(l);
    if (strlen(topic) >= sizeof(l->topic))
        return MG_EINVAL;
    snprintf(l->topic, sizeof(l->topic), "%s", topic);
    snprintf(l->target, sizeof(l->target), "%s", pc__service_addr(l->c));
    l->authoritative = false;
    l->redirects = 0;
    l->broker[0] = '\0';
    l->partitions = 0;
    pc__conn *conn = NULL;
    int rc = pc__conn_get(l->c, l->target, &l->wait, &conn);
    if (rc != MG_OK && rc != MG_EAGAIN)
        return rc;
    l->active = true;
    if (rc == MG_OK)
        lookup_send(l, conn); /* finishes (calls back) at once when it cannot send */
    return MG_OK;
}

void pc__lookup_cancel(pc__lookup *l)
{
    pc__wait_cancel(&l->wait);
    if (l->req != NULL) {
        pc__req_cancel(l->req);
        l->req = NULL;
    }
    l->active = false;
}

/* ---- parts -------------------------------------------------------------------------------------
 */

static void part_lookup_done(pc__lookup *l, int status, bool fatal);
static void part_conn_ready(pc__wait *w, int status, pc__conn *conn);

static void part_lookup(pc__part *p)
{
    p->state = PC__PART_LOOKUP;
    int rc = pc__lookup_start(&p->lookup, p->topic);
    if (rc != MG_OK)
        pc__part_failed(p, rc, rc != MG_EINVAL && rc != MG_ECLOSED);
}

static void backoff_fired(pc__timer *t)
{
    pc__part *p = MG_CONTAINER_OF(t, pc__part, backoff_timer);
    if (p->state == PC__PART_BACKOFF || p->state == PC__PART_INIT)
        part_lookup(p);
}

int pc__part_init(pc__part *p, pc_client *c, pc__part_kind kind, const pc__part_ops *ops,
                  const char *topic, int32_t partition)
{
    memset(p, 0, sizeof(*p));
    p->c = c;
    p->kind = kind;
    p->ops = ops;
    p->id = c->next_id++;
    p->partition = partition;
    p->state = PC__PART_INIT;
    p->backoff_ms = PC_BACKOFF_MS_MIN;
    mg_list_init(&p->conn_link);
    snprintf(p->topic, sizeof(p->topic), "%s", topic);
    pc__lookup_init(&p->lookup, c, false, part_lookup_done);
    p->wait.cb = part_conn_ready;
    MG_TRY(pc__timer_register(c, &p->backoff_timer, backoff_fired));
    int rc = pc__idmap_put(c, p);
    if (rc != MG_OK) {
        pc__timer_unregister(c, &p->backoff_timer);
        return rc;
    }
    return MG_OK;
}

void pc__part_fini(pc__part *p)
{
    pc__part_stop(p);
    pc__idmap_del(p->c, p);
    pc__timer_unregister(p->c, &p->backoff_timer);
}

void pc__part_start(pc__part *p)
{
    p->create_deadline_ms = pc__now_ms(p->c) + p->c->op_timeout_ms;
    p->state = PC__PART_INIT;
    pc__timer_start(p->c, &p->backoff_timer, 0);
}

static void part_on_conn(pc__part *p, pc__conn *conn)
{
    pc__conn_attach(conn, p);
    p->state = PC__PART_REGISTERING;
    int rc = p->ops->register_on(p);
    if (rc != MG_OK)
        pc__part_failed(p, rc == MG_ECLOSED ? MG_ECONNECTION : rc, true);
}

static void part_conn_ready(pc__wait *w, int status, pc__conn *conn)
{
    pc__part *p = MG_CONTAINER_OF(w, pc__part, wait);
    if (status != MG_OK) {
        pc__part_failed(p, status == MG_EPERM ? MG_EPERM : MG_ECONNECTION, status != MG_EPERM);
        return;
    }
    part_on_conn(p, conn);
}

static void part_lookup_done(pc__lookup *l, int status, bool fatal)
{
    pc__part *p = MG_CONTAINER_OF(l, pc__part, lookup);
    if (p->state != PC__PART_LOOKUP)
        return;
    if (status != MG_OK) {
        pc__part_failed(p, status, !fatal);
        return;
    }
    p->state = PC__PART_CONNECTING;
    pc__conn *conn = NULL;
    int rc = pc__conn_get(p->c, l->broker, &p->wait, &conn);
    if (rc == MG_EAGAIN)
        return;
    if (rc != MG_OK) {
        pc__part_failed(p, rc, rc != MG_EINVAL && rc != MG_ECLOSED);
        return;
    }
    part_on_conn(p, conn);
}

int pc__part_topic(const char *topic, uint32_t partitions, uint32_t i, pw_topic_name *scratch,
                   const char **out)
{
    if (partitions == 0) {
        *out = topic;
        return MG_OK;
    }
    pw_topic_name base;
    MG_TRY(pw_topic_name_parse(topic, &base, NULL, 0));
    MG_TRY(pw_topic_partition_name(&base, (int)i, scratch));
    *out = scratch->full;
    return MG_OK;
}

int pc__part_new(pc_client *c, size_t size, pc__part_kind kind, const pc__part_ops *ops,
                 const char *topic, uint32_t partitions, uint32_t i, pc__part **out)
{
    pw_topic_name tn;
    const char *name;
    MG_TRY(pc__part_topic(topic, partitions, i, &tn, &name));
    pc__part *p = mg_calloc(1, size);
    if (p == NULL)
        return MG_ENOMEM;
    int rc = pc__part_init(p, c, kind, ops, name, partitions > 0 ? (int32_t)i : -1);
    if (rc != MG_OK) {
        mg_free(p);
        return rc;
    }
    *out = p;
    return MG_OK;
}

void pc__part_ready(pc__part *p)
{
    p->state = PC__PART_READY;
    p->backoff_ms = PC_BACKOFF_MS_MIN;
    p->last_status = MG_OK;
    if (!p->created) {
        p->created = true;
        p->ops->created(p, MG_OK);
    }
}

static void part_cancel_inflight(pc__part *p)
{
    pc__lookup_cancel(&p->lookup);
    pc__wait_cancel(&p->wait);
    if (p->req != NULL) {
        pc__req_cancel(p->req);
        p->req = NULL;
    }
}

void pc__part_failed(pc__part *p, int status, bool retriable)
{
    if (p->state == PC__PART_CLOSED)
        return;
    pc_client *c = p->c;
    part_cancel_inflight(p);
    pc__conn_detach(p);
    p->ops->detached(p);
    if (p->state == PC__PART_CLOSED)
        return; /* its owner stopped it meanwhile */
    p->last_status = status;
    uint64_t now = pc__now_ms(c);
    if (!p->created && (!retriable || now >= p->create_deadline_ms)) {
        p->state = PC__PART_CLOSED;
        pc__timer_stop(c, &p->backoff_timer);
        p->ops->created(p, status);
        return;
    }
    p->state = PC__PART_BACKOFF;
    uint64_t delay = pc__backoff_next(c, &p->backoff_ms);
    if (!p->created && now + delay > p->create_deadline_ms)
        delay = p->create_deadline_ms - now;
    MG_DEBUG("client: %s (id %llu) retries in %llu ms: %s", p->topic, (unsigned long long)p->id,
             (unsigned long long)delay, mg_strerror(status));
    pc__timer_start(c, &p->backoff_timer, delay);
}

bool pc__part_register_answered(pc__part *p, int status, const Magnetar__Pulsar__BaseCommand *cmd,
                                int success_type)
{
    if (status == MG_EPERM) {
        pc__set_last_error(p->c, cmd->error->message);
        pc__part_failed(p, MG_EPERM, pc__server_error_retriable((int)cmd->error->error));
        return false;
    }
    if (status != MG_OK || (int)cmd->type != success_type) {
        pc__part_failed(p, status != MG_OK ? status : MG_EPROTO, true);
        return false;
    }
    return true;
}

void pc__part_reconnect(pc__part *p)
{
    p->backoff_ms = PC_BACKOFF_MS_MIN;
    pc__part_failed(p, MG_ECONNECTION, true);
}

void pc__part_conn_lost(pc__part *p, int status)
{
    (void)status;
    pc__part_failed(p, MG_ECONNECTION, true);
}

void pc__part_stop(pc__part *p)
{
    part_cancel_inflight(p);
    pc__conn_detach(p);
    pc__timer_stop(p->c, &p->backoff_timer);
    p->state = PC__PART_CLOSED;
}

static void release_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    (void)r;
    (void)status;
    (void)cmd;
}

int pc__part_close_request(pc__part *p, pc__req_cb cb, void *arg, pc__req **out)
{
    uint64_t rid = pc__next_request_id(p->c);
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    Magnetar__Pulsar__CommandCloseProducer cp = MAGNETAR__PULSAR__COMMAND_CLOSE_PRODUCER__INIT;
    Magnetar__Pulsar__CommandCloseConsumer cc = MAGNETAR__PULSAR__COMMAND_CLOSE_CONSUMER__INIT;
    if (p->kind == PC__KIND_PRODUCER) {
        cp.producer_id = p->id;
        cp.request_id = rid;
        cmd.type = PC__T(CLOSE_PRODUCER);
        cmd.close_producer = &cp;
    } else {
        cc.consumer_id = p->id;
        cc.request_id = rid;
        cmd.type = PC__T(CLOSE_CONSUMER);
        cmd.close_consumer = &cc;
    }
    return pc__conn_request(p->conn, &cmd, rid, cb, arg, out);
}

void pc__part_release(pc__part *p)
{
    /* The answer only frees the request: nothing refers to the part. */
    if (p->state == PC__PART_READY && p->conn != NULL)
        (void)pc__part_close_request(p, release_answered, NULL, NULL);
    pc__part_stop(p);
}
