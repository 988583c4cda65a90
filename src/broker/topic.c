/*
 * Topics, producers and publishing.
 *
 * TOPIC LIFE CYCLE
 *     br_topic_get (first use) --> OPENING: the namespace must exist (br_ns_check; else the open
 *         fails with MG_ENOTFOUND and nothing is created), the bundle must be ours, ml_open, then
 * every durable cursor stored under the managed ledger is opened (so retention and backlog count
 * subscriptions that have no consumer connected, as Pulsar does) --> OPEN OPENING --error-->
 * removed from the table at once (the next use tries again); waiters get the error. OPEN
 * --br_topic_close--> CLOSING: producers and consumers dropped (clients told to look the topic up
 * again), subscriptions closed (cursors write their state, or are deleted), the managed ledger
 * closed (or deleted) --> removed and freed once refs reach zero. refs counts everything that will
 * call back into the topic: waiters, sends being stored, subscription operations, admin requests. A
 * topic is freed only in CLOSING with refs 0.
 *
 * PUBLISHING: SEND -> checks (producer known and ready, checksum, metadata) -> ml_add with a
 * reference to the connection's receive buffer (no copy) -> SEND_RECEIPT with the stored
 * (ledger, entry) in completion order (ml_add calls back in call order), or SEND_ERROR. The
 * stored bytes are exactly what the client sent after the command, without any 0x0e02 prefix of
 * its own; the managed ledger prepends the broker's BrokerEntryMetadata.
 */
#include "broker/broker_int.h"

#include "broker/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "ledger/limits.h"

#include <stdio.h>
#include <string.h>

#define T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

void br_conn_pause_reading(br_conn *c);
void br_conn_resume_reading(br_conn *c);

/* ---- the table ---------------------------------------------------------------------------------
 */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

br_topic *br_topic_find(br_broker *b, const char *full_name)
{
    size_t i = name_hash(full_name) & (b->topics.bucket_count - 1);
    for (br_topic *t = b->topics.buckets[i]; t != NULL; t = t->hash_next)
        if (strcmp(t->name.full, full_name) == 0)
            return t;
    return NULL;
}

static void table_remove(br_broker *b, br_topic *t)
{
    size_t i = name_hash(t->name.full) & (b->topics.bucket_count - 1);
    for (br_topic **pp = &b->topics.buckets[i]; *pp != NULL; pp = &(*pp)->hash_next) {
        if (*pp == t) {
            *pp = t->hash_next;
            t->hash_next = NULL;
            b->topics.count--;
            return;
        }
    }
}

static void table_grow(br_broker *b)
{
    size_t n = b->topics.bucket_count * 2;
    br_topic **nb = mg_calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        br_topic *t = b->topics.buckets[i];
        while (t != NULL) {
            br_topic *next = t->hash_next;
            size_t j = name_hash(t->name.full) & (n - 1);
            t->hash_next = nb[j];
            nb[j] = t;
            t = next;
        }
    }
    mg_free(b->topics.buckets);
    b->topics.buckets = nb;
    b->topics.bucket_count = n;
}

/* ---- life cycle
 * ---------------------------------------------------------------------------------- */

static void topic_free(br_topic *t)
{
    br_broker *b = t->b;
    MG_ASSERT(t->refs == 0 && mg_list_empty(&t->producers) && mg_list_empty(&t->subs));
    mc_group_destroy(t->group);
    void (*cb)(int, void *) = t->closed_cb;
    void *arg = t->closed_arg;
    int status = t->open_status;
    mg_free(t);
    if (cb != NULL)
        cb(status, arg);
    (void)b;
}

void br_topic_ref(br_topic *t)
{
    t->refs++;
}

static void topic_finish_close(br_topic *t);
static void topic_ml_closed(int status, void *arg);
static void topic_deleted(int status, void *arg);

void br_topic_unref(br_topic *t)
{
    MG_ASSERT(t->refs > 0);
    t->refs--;
    if (t->state == BR_TOPIC_CLOSING)
        topic_finish_close(t);
}

static void topic_wake_waiters(br_topic *t, int status)
{
    br_topic_waiter *w = t->waiters;
    t->waiters = NULL;
    while (w != NULL) {
        br_topic_waiter *next = w->next;
        w->cb(status, status == MG_OK ? t : NULL, w->arg);
        mg_free(w);
        br_topic_unref(t);
        w = next;
    }
}

static void topic_open_failed(br_topic *t, int status)
{
    if (status == MG_ENOTFOUND)
        MG_INFO_LIMITED("broker: topic %s refused: namespace %s/%s does not exist", t->name.full,
                        t->name.tenant, t->name.ns);
    else
        MG_WARN("broker: cannot open topic %s: %s", t->name.full, mg_strerror(status));
    table_remove(t->b, t);
    t->open_status = status;
    t->state = BR_TOPIC_CLOSING; /* the managed ledger, if open, closes once waiters are told */
    br_topic_ref(t);
    topic_wake_waiters(t, status);
    br_topic_unref(t);
}

static void topic_ml_closed(int status, void *arg)
{
    br_topic *t = arg;
    if (status != MG_OK)
        MG_WARN("broker: closing topic %s: %s", t->name.full, mg_strerror(status));
    br_topic_unref(t);
}

/* Opening the stored cursors: one child of the managed ledger's node per durable cursor. */
static void topic_cursors_done(br_topic *t, int status)
{
    if (status != MG_OK) {
        topic_open_failed(t, status);
        return;
    }
    t->state = BR_TOPIC_OPEN;
    mc_group_hold(t->group, false);
    MG_INFO("broker: topic %s open", t->name.full);
    br_policy_topic_opened(t);
    topic_wake_waiters(t, MG_OK);
}

typedef struct children_ctx {
    br_topic *t;
    int remaining;
} children_ctx;

static void one_cursor_opened(int status, void *arg)
{
    children_ctx *cc = arg;
    br_topic *t = cc->t;
    if (status != MG_OK)
        MG_WARN("broker: topic %s: a stored subscription did not open: %s", t->name.full,
                mg_strerror(status));
    if (--cc->remaining > 0)
        return;
    mg_free(cc);
    br_topic_unref(t);
    if (t->state == BR_TOPIC_OPENING)
        topic_cursors_done(t, MG_OK);
}

static void children_listed(int status, const char *const *names, size_t count, void *arg)
{
    br_topic *t = arg;
    if (status == MG_ENOTFOUND) {
        status = MG_OK;
        count = 0;
    }
    if (status != MG_OK) {
        br_topic_unref(t);
        topic_open_failed(t, status);
        return;
    }
    children_ctx *cc = mg_calloc(1, sizeof(*cc));
    if (cc == NULL) {
        br_topic_unref(t);
        topic_open_failed(t, MG_ENOMEM);
        return;
    }
    cc->t = t;
    cc->remaining = 1; /* this function's own share, dropped below */
    for (size_t i = 0; i < count; i++) {
        cc->remaining++;
        int rc = br_sub_open_durable(t, names[i], MC_INITIAL_LATEST, one_cursor_opened, cc);
        if (rc != MG_OK) {
            MG_WARN("broker: topic %s: cannot open subscription %s: %s", t->name.full, names[i],
                    mg_strerror(rc));
            cc->remaining--;
        }
    }
    /* The topic reference of the listing moves to cc. */
    one_cursor_opened(MG_OK, cc);
}

static void ml_opened(int status, ml_managed *ml, void *arg)
{
    br_topic *t = arg;
    if (status != MG_OK) {
        br_topic_unref(t);
        topic_open_failed(t, status);
        return;
    }
    t->ml = ml;
    int rc = pf_topic_open(t->b->pf, ml, &t->pf);
    if (rc == MG_OK)
        rc = mc_group_create(ml, &t->group);
    if (rc == MG_OK)
        mc_group_hold(t->group, true); /* until every stored subscription is loaded */
    if (rc == MG_OK)
        rc = md_children(t->b->md, ml_metadata_path(ml), children_listed, t);
    if (rc != MG_OK) {
        br_topic_unref(t);
        topic_open_failed(t, rc);
    }
}

/* Opening starts by making sure this broker owns the topic's bundle: a client that went
 * straight to the wrong broker is refused (it looks the topic up again). */
static void topic_owner_found(int status, const char *owner_url, void *arg)
{
    br_topic *t = arg;
    if (status == MG_OK && owner_url != NULL) {
        MG_INFO("broker: topic %s is owned by %s", t->name.full, owner_url);
        status = MG_EPERM;
    }
    if (status == MG_OK && t->state == BR_TOPIC_OPENING)
        status = ml_open(t->b->env, t->ml_name, &t->b->opts.ml_config, ml_opened, t);
    else if (status == MG_OK)
        status = MG_ECLOSED; /* closed while asking */
    if (status != MG_OK) {
        br_topic_unref(t);
        if (t->state == BR_TOPIC_OPENING)
            topic_open_failed(t, status);
    }
}

/* Then the namespace must exist (namespace.c): a topic of a namespace that does not is refused
 * with MG_ENOTFOUND before anything is claimed or created for it. */
static void topic_ns_checked(int status, void *arg)
{
    br_topic *t = arg;
    if (status == MG_OK && t->state == BR_TOPIC_OPENING)
        status = br_owner_find(t->b, &t->name, topic_owner_found, t);
    else if (status == MG_OK)
        status = MG_ECLOSED; /* closed while asking */
    if (status != MG_OK) {
        br_topic_unref(t);
        if (t->state == BR_TOPIC_OPENING)
            topic_open_failed(t, status);
    }
}

int br_topic_get(br_broker *b, const pw_topic_name *name, br_topic_cb cb, void *arg)
{
    if (b->closing)
        return MG_ECLOSED;
    br_topic *t = br_topic_find(b, name->full);
    if (t != NULL && t->state == BR_TOPIC_OPEN) {
        cb(MG_OK, t, arg);
        return MG_OK;
    }
    if (t != NULL && t->state == BR_TOPIC_CLOSING)
        return MG_ESTATE;
    bool fresh = false;
    if (t == NULL) {
        if (b->topics.count >= BR_TOPICS_MAX)
            return MG_ELIMIT;
        t = mg_calloc(1, sizeof(*t));
        if (t == NULL)
            return MG_ENOMEM;
        t->b = b;
        t->name = *name;
        int rc = pw_topic_ml_name(name, t->ml_name, sizeof(t->ml_name));
        if (rc != MG_OK) {
            mg_free(t);
            return rc;
        }
        mg_list_init(&t->producers);
        mg_list_init(&t->subs);
        t->state = BR_TOPIC_OPENING;
        if (b->topics.count >= b->topics.bucket_count)
            table_grow(b);
        size_t i = name_hash(t->name.full) & (b->topics.bucket_count - 1);
        t->hash_next = b->topics.buckets[i];
        b->topics.buckets[i] = t;
        b->topics.count++;
        fresh = true;
    }
    br_topic_waiter *w = mg_calloc(1, sizeof(*w));
    if (w == NULL) {
        if (fresh) {
            table_remove(b, t);
            mg_free(t);
        }
        return MG_ENOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = t->waiters;
    t->waiters = w;
    br_topic_ref(t);
    if (fresh) {
        /* The open holds a reference; cb may run inside this call if it fails at once. */
        br_topic_ref(t);
        int rc = br_ns_check(b, t->name.tenant, t->name.ns, topic_ns_checked, t);
        if (rc != MG_OK) {
            t->waiters = NULL;
            mg_free(w);
            table_remove(b, t);
            mg_free(t);
            return rc;
        }
    }
    return MG_OK;
}

/* Closing: producers and subscriptions go first, then the managed ledger. */
static void topic_finish_close(br_topic *t)
{
    if (t->refs > 0 || !mg_list_empty(&t->subs))
        return;
    if (t->pf != NULL) {
        pf_topic_close(t->pf);
        t->pf = NULL;
    }
    if (t->ml != NULL) {
        ml_managed *ml = t->ml;
        t->ml = NULL;
        br_topic_ref(t);
        int rc = ml_close(ml, topic_ml_closed, t);
        if (rc != MG_OK) {
            MG_WARN("broker: closing topic %s: %s", t->name.full, mg_strerror(rc));
            t->refs--;
        } else {
            return;
        }
    }
    if (t->refs > 0)
        return;
    if (t->deleting) {
        t->deleting = false;
        br_topic_ref(t);
        int rc = br_topic_delete_stored(t->b, &t->name, topic_deleted, t);
        if (rc == MG_OK)
            return;
        t->refs--;
        t->open_status = rc;
    }
    table_remove(t->b, t);
    topic_free(t);
}

static void topic_deleted(int status, void *arg)
{
    br_topic *t = arg;
    t->open_status = status;
    br_topic_unref(t);
}

static void sub_closed_for_topic(int status, void *arg)
{
    br_topic *t = arg;
    (void)status;
    br_topic_unref(t);
}

void br_topic_close(br_topic *t, bool delete_data, void (*cb)(int status, void *arg), void *arg)
{
    MG_ASSERT(t->state != BR_TOPIC_CLOSING);
    t->closed_cb = cb;
    t->closed_arg = arg;
    t->deleting = delete_data;
    t->open_status = MG_OK;
    bool was_opening = t->state == BR_TOPIC_OPENING;
    t->state = BR_TOPIC_CLOSING;
    br_topic_ref(t); /* not freed inside this call */
    if (was_opening)
        topic_wake_waiters(t, MG_ECLOSED);
    kop_topic_closing(t);
    while (!mg_list_empty(&t->producers))
        br_producer_drop(MG_CONTAINER_OF(t->producers.next, br_producer, topic_link), true);
    for (mg_link *l = t->subs.next; l != &t->subs;) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        l = l->next;
        br_topic_ref(t);
        br_sub_close(s, delete_data, sub_closed_for_topic, t);
    }
    /* Deferred so that cb never runs inside this call. */
    br_topic_unref(t);
}

void br_topic_stats_tick(br_topic *t, double period_s)
{
    t->rate_in = (double)(t->msg_in - t->msg_in_prev) / period_s;
    t->throughput_in = (double)(t->bytes_in - t->bytes_in_prev) / period_s;
    t->rate_out = (double)(t->msg_out - t->msg_out_prev) / period_s;
    t->throughput_out = (double)(t->bytes_out - t->bytes_out_prev) / period_s;
    t->msg_in_prev = t->msg_in;
    t->bytes_in_prev = t->bytes_in;
    t->msg_out_prev = t->msg_out;
    t->bytes_out_prev = t->bytes_out;
    for (mg_link *l = t->producers.next; l != &t->producers; l = l->next) {
        br_producer *p = MG_CONTAINER_OF(l, br_producer, topic_link);
        p->rate_in = (double)(p->msg_in - p->msg_in_prev) / period_s;
        p->throughput_in = (double)(p->bytes_in - p->bytes_in_prev) / period_s;
        p->msg_in_prev = p->msg_in;
        p->bytes_in_prev = p->bytes_in;
    }
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        s->rate_out = (double)(s->msg_out - s->msg_out_prev) / period_s;
        s->throughput_out = (double)(s->bytes_out - s->bytes_out_prev) / period_s;
        s->msg_out_prev = s->msg_out;
        s->bytes_out_prev = s->bytes_out;
        s->rate_expired = (double)(s->msg_expired - s->msg_expired_prev) / period_s;
        s->msg_expired_prev = s->msg_expired;
        for (mg_link *m = s->consumers.next; m != &s->consumers; m = m->next) {
            br_consumer *k = MG_CONTAINER_OF(m, br_consumer, sub_link);
            k->rate_out = (double)(k->msg_out - k->msg_out_prev) / period_s;
            k->throughput_out = (double)(k->bytes_out - k->bytes_out_prev) / period_s;
            k->msg_out_prev = k->msg_out;
            k->bytes_out_prev = k->bytes_out;
        }
    }
}

int br_topic_delete_stored(br_broker *b, const pw_topic_name *name,
                           void (*cb)(int status, void *arg), void *arg)
{
    char ml_name[ML_NAME_BYTES_MAX];
    MG_TRY(pw_topic_ml_name(name, ml_name, sizeof(ml_name)));
    return ml_delete_stored(b->env, ml_name, cb, arg);
}

typedef struct terminate_ctx {
    br_topic *t;
    ml_find_cb cb;
    void *arg;
} terminate_ctx;

static void topic_terminated(int status, ml_position last, void *arg)
{
    terminate_ctx *x = arg;
    br_topic *t = x->t;
    if (status == MG_OK) {
        MG_INFO("broker: topic %s terminated at %lld:%lld", t->name.full, (long long)last.ledger_id,
                (long long)last.entry_id);
        /* Producers are told to go (they get TopicTerminatedError when they come back);
         * caught-up consumers learn they reached the end. */
        while (!mg_list_empty(&t->producers))
            br_producer_drop(MG_CONTAINER_OF(t->producers.next, br_producer, topic_link), true);
        br_topic_entries_added(t);
    }
    x->cb(status, last, x->arg);
    mg_free(x);
    br_topic_unref(t);
}

int br_topic_terminate(br_topic *t, ml_find_cb cb, void *arg)
{
    if (t->state != BR_TOPIC_OPEN)
        return MG_ESTATE;
    terminate_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL)
        return MG_ENOMEM;
    x->t = t;
    x->cb = cb;
    x->arg = arg;
    int rc = ml_terminate(t->ml, topic_terminated, x);
    if (rc != MG_OK) {
        mg_free(x);
        return rc;
    }
    br_topic_ref(t);
    return MG_OK;
}

/* ---- producers ------------------------------------------------------------------------------ */

br_producer *br_conn_producer(br_conn *c, uint64_t id)
{
    for (mg_link *l = c->producers.next; l != &c->producers; l = l->next) {
        br_producer *p = MG_CONTAINER_OF(l, br_producer, conn_link);
        if (p->id == id)
            return p;
    }
    return NULL;
}

static void send_close_producer(br_conn *c, uint64_t producer_id)
{
    Magnetar__Pulsar__CommandCloseProducer cp = MAGNETAR__PULSAR__COMMAND_CLOSE_PRODUCER__INIT;
    cp.producer_id = producer_id;
    cp.request_id = 0;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CLOSE_PRODUCER);
    cmd.close_producer = &cp;
    br_conn_send_cmd(c, &cmd);
}

static bool producer_closed_by_us(const br_conn *c, uint64_t id)
{
    uint32_t n = c->closed_producer_count < BR_CONN_CLOSED_PROD_MAX ? c->closed_producer_count
                                                                    : BR_CONN_CLOSED_PROD_MAX;
    for (uint32_t i = 0; i < n; i++)
        if (c->closed_producers[i] == id)
            return true;
    return false;
}

void br_producer_drop(br_producer *p, bool notify)
{
    /* CLOSE_PRODUCER goes out once p is detached and freed: a send that fails closes the
     * connection, which drops the producers still listed on it (c itself is freed only after
     * its handle closed, later on the loop). */
    br_conn *c = p->conn;
    uint64_t id = p->id;
    mg_list_remove(&p->conn_link);
    if (p->topic != NULL) {
        mg_list_remove(&p->topic_link);
        if (p->access_mode != MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Shared)
            p->topic->exclusive_producer = false;
    }
    mg_free(p);
    if (notify && c->state != BR_CONN_CLOSING) {
        c->closed_producers[c->closed_producer_count++ % BR_CONN_CLOSED_PROD_MAX] = id;
        send_close_producer(c, id);
    }
}

typedef struct producer_req {
    br_conn *conn;
    uint64_t producer_id;
    uint64_t request_id;
} producer_req;

static bool producer_name_taken(br_topic *t, const char *name)
{
    for (mg_link *l = t->producers.next; l != &t->producers; l = l->next)
        if (strcmp(MG_CONTAINER_OF(l, br_producer, topic_link)->name, name) == 0)
            return true;
    return false;
}

static void producer_topic_ready(int status, br_topic *t, void *arg)
{
    producer_req *r = arg;
    br_conn *c = r->conn;
    br_producer *p = c->state != BR_CONN_CLOSING ? br_conn_producer(c, r->producer_id) : NULL;
    int refusal = 0;
    const char *refusal_text = NULL;
    if (p == NULL || p->ready) {
        /* Closed meanwhile (CLOSE_PRODUCER or the connection). */
    } else if (status == MG_ENOTFOUND) {
        br_conn_send_error(c, r->request_id, ERR(TopicNotFound), BR_NS_NOT_FOUND_MESSAGE);
        br_producer_drop(p, false);
    } else if (status != MG_OK) {
        br_conn_send_error(c, r->request_id,
                           status == MG_EFENCED || status == MG_EPERM ? ERR(ServiceNotReady)
                                                                      : ERR(PersistenceError),
                           status == MG_EPERM ? "the topic is served by another broker: look "
                                                "it up again"
                                              : mg_strerror(status));
        br_producer_drop(p, false);
    } else if (ml_is_terminated(t->ml)) {
        br_conn_send_error(c, r->request_id, ERR(TopicTerminatedError),
                           "the topic is terminated: no message can be added");
        br_producer_drop(p, false);
    } else if ((refusal = br_policy_producer_refusal(t, &refusal_text)) != 0) {
        br_conn_send_error(c, r->request_id, (Magnetar__Pulsar__ServerError)refusal, refusal_text);
        br_producer_drop(p, false);
    } else if ((p->access_mode != MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Shared &&
                !mg_list_empty(&t->producers)) ||
               t->exclusive_producer) {
        br_conn_send_error(c, r->request_id, ERR(ProducerBusy),
                           "the topic has an exclusive producer, or producers already");
        br_producer_drop(p, false);
    } else if (p->name[0] != '\0' && producer_name_taken(t, p->name)) {
        br_conn_send_error(c, r->request_id, ERR(ProducerBusy),
                           "a producer with this name is already connected");
        br_producer_drop(p, false);
    } else {
        if (p->name[0] == '\0')
            snprintf(p->name, sizeof(p->name), "%s-%llu", t->b->cluster,
                     (unsigned long long)t->b->next_producer_seq++);
        p->topic = t;
        p->ready = true;
        if (p->access_mode != MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Shared)
            t->exclusive_producer = true;
        mg_list_push(&t->producers, &p->topic_link);
        Magnetar__Pulsar__CommandProducerSuccess ok =
            MAGNETAR__PULSAR__COMMAND_PRODUCER_SUCCESS__INIT;
        ok.request_id = r->request_id;
        ok.producer_name = p->name;
        ok.has_last_sequence_id = 1;
        ok.last_sequence_id = p->last_sequence_id;
        ok.has_producer_ready = 1;
        ok.producer_ready = 1;
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = T(PRODUCER_SUCCESS);
        cmd.producer_success = &ok;
        br_conn_send_cmd(c, &cmd);
        MG_DEBUG("broker: producer %s on %s from %s", p->name, t->name.full, c->peer);
    }
    br_conn_unref(c);
    mg_free(r);
}

void br_handle_producer(br_conn *c, const Magnetar__Pulsar__CommandProducer *cmd)
{
    br_producer *existing = br_conn_producer(c, cmd->producer_id);
    if (existing != NULL) {
        if (existing->ready) {
            /* A retry of a PRODUCER that succeeded: answer it again. */
            Magnetar__Pulsar__CommandProducerSuccess ok =
                MAGNETAR__PULSAR__COMMAND_PRODUCER_SUCCESS__INIT;
            ok.request_id = cmd->request_id;
            ok.producer_name = existing->name;
            ok.has_last_sequence_id = 1;
            ok.last_sequence_id = existing->last_sequence_id;
            Magnetar__Pulsar__BaseCommand r = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
            r.type = T(PRODUCER_SUCCESS);
            r.producer_success = &ok;
            br_conn_send_cmd(c, &r);
        } else {
            br_conn_send_error(c, cmd->request_id, ERR(ServiceNotReady),
                               "the producer is already being created");
        }
        return;
    }
    pw_topic_name tn;
    char err[256];
    if (pw_topic_name_parse(cmd->topic, &tn, err, sizeof(err)) != MG_OK) {
        br_conn_send_error(c, cmd->request_id, ERR(InvalidTopicName), err);
        return;
    }
    if (strcmp(tn.domain, "persistent") != 0) {
        br_conn_send_error(c, cmd->request_id, ERR(NotAllowedError),
                           "only persistent topics are supported");
        return;
    }
    int mode = cmd->has_producer_access_mode ? (int)cmd->producer_access_mode
                                             : MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Shared;
    if (mode != MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Shared &&
        mode != MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Exclusive) {
        br_conn_send_error(c, cmd->request_id, ERR(NotAllowedError),
                           "producer access mode not supported (Shared and Exclusive are)");
        return;
    }
    if (br_conn_handles_full(c, cmd->request_id, true))
        return;
    br_producer *p = mg_calloc(1, sizeof(*p));
    producer_req *r = mg_calloc(1, sizeof(*r));
    if (p == NULL || r == NULL) {
        mg_free(p);
        mg_free(r);
        br_conn_send_error(c, cmd->request_id, ERR(ServiceNotReady), "out of memory");
        return;
    }
    p->conn = c;
    p->id = cmd->producer_id;
    p->access_mode = mode;
    p->last_sequence_id = -1;
    p->connected_since_ms = mg_clock_wall_ms();
    mg_list_init(&p->topic_link);
    if (cmd->producer_name != NULL && cmd->producer_name[0] != '\0')
        snprintf(p->name, sizeof(p->name), "%s", cmd->producer_name);
    mg_list_push(&c->producers, &p->conn_link);
    r->conn = c;
    r->producer_id = cmd->producer_id;
    r->request_id = cmd->request_id;
    br_conn_ref(c);
    int rc = br_topic_get(c->b, &tn, producer_topic_ready, r);
    if (rc != MG_OK) {
        br_conn_unref(c);
        mg_free(r);
        mg_list_remove(&p->conn_link);
        mg_free(p);
        br_conn_send_error(c, cmd->request_id,
                           rc == MG_ELIMIT ? ERR(TooManyRequests) : ERR(ServiceNotReady),
                           mg_strerror(rc));
    }
}

void br_handle_close_producer(br_conn *c, const Magnetar__Pulsar__CommandCloseProducer *cmd)
{
    br_producer *p = br_conn_producer(c, cmd->producer_id);
    if (p != NULL)
        br_producer_drop(p, false);
    /* Pulsar answers SUCCESS also for an unknown producer (already closed). */
    br_conn_send_success(c, cmd->request_id);
}

/* ---- SEND
 * ------------------------------------------------------------------------------------------ */

/* One SEND from its arrival to its receipt: from the connection's free list (send_ctx_new),
 * back to it in send_stored. It holds a reference to the connection, which so outlives it. */
typedef struct send_ctx {
    br_conn *conn;
    br_topic *topic;
    uint64_t producer_id;
    uint64_t sequence_id;
    uint64_t highest_sequence_id;
    bool has_highest;
    int32_t num_messages;
    size_t bytes;
    uint64_t start_ns;
} send_ctx;

/* A zeroed send context of c's free list, or NULL (out of memory). */
static send_ctx *send_ctx_new(br_conn *c)
{
    if (c->send_pool.block_bytes == 0) /* first SEND of the connection */
        mg_freelist_init(&c->send_pool, sizeof(send_ctx), BR_CONN_SEND_POOL_MAX);
    return mg_freelist_get(&c->send_pool);
}

static void send_error(br_conn *c, uint64_t producer_id, uint64_t sequence_id,
                       Magnetar__Pulsar__ServerError err, const char *message)
{
    Magnetar__Pulsar__CommandSendError e = MAGNETAR__PULSAR__COMMAND_SEND_ERROR__INIT;
    e.producer_id = producer_id;
    e.sequence_id = sequence_id;
    e.error = err;
    e.message = (char *)message;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SEND_ERROR);
    cmd.send_error = &e;
    br_conn_send_cmd(c, &cmd);
}

/* The SEND_ERROR for a failed store. A bookie whose storage refuses writes (full disk, I/O
 * error) is NotAllowedError with the reason: Pulsar's clients fail that message at once with
 * the text (Java's recoverNotAllowedError), whereas after any other error they reconnect and
 * send it again, which here only ends in their send timeout. The managed ledger backs off, so
 * those answers come at once (docs/broker.md, "Errors of SEND"). */
static Magnetar__Pulsar__ServerError send_failure(int status, const char **message)
{
    if (status == MG_ENOSPC) {
        *message = "the bookie's storage is read-only: disk full (no space left on device); "
                   "writes resume once space is freed and the bookie is made writable again";
        return ERR(NotAllowedError);
    }
    if (status == MG_EREADONLY) {
        *message = "the bookie's storage is read-only after an I/O error (see the bookie's log)";
        return ERR(NotAllowedError);
    }
    *message = mg_strerror(status);
    return status == MG_EAGAIN ? ERR(TooManyRequests) : ERR(PersistenceError);
}

static void send_stored(int status, ml_position pos, int64_t index, void *arg)
{
    (void)index;
    send_ctx *x = arg;
    br_conn *c = x->conn;
    br_topic *t = x->topic;
    br_producer *p = c->state != BR_CONN_CLOSING ? br_conn_producer(c, x->producer_id) : NULL;
    t->sends_inflight--;
    if (status == MG_OK) {
        t->msg_in += (uint64_t)x->num_messages;
        t->bytes_in += x->bytes;
        if (p != NULL) {
            p->msg_in += (uint64_t)x->num_messages;
            p->bytes_in += x->bytes;
            p->last_sequence_id =
                (int64_t)(x->has_highest ? x->highest_sequence_id : x->sequence_id);
        }
        if (c->b->m_publish_latency_us)
            mg_histogram_observe(c->b->m_publish_latency_us, (uv_hrtime() - x->start_ns) / 1000);
        if (c->state != BR_CONN_CLOSING) {
            Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
            id.ledger_id = (uint64_t)pos.ledger_id;
            id.entry_id = (uint64_t)pos.entry_id;
            Magnetar__Pulsar__CommandSendReceipt rc = MAGNETAR__PULSAR__COMMAND_SEND_RECEIPT__INIT;
            rc.producer_id = x->producer_id;
            rc.sequence_id = x->sequence_id;
            rc.message_id = &id;
            if (x->has_highest) {
                rc.has_highest_sequence_id = 1;
                rc.highest_sequence_id = x->highest_sequence_id;
            }
            Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
            cmd.type = T(SEND_RECEIPT);
            cmd.send_receipt = &rc;
            br_conn_send_cmd(c, &cmd);
        }
        br_topic_entries_added(t);
    } else if (c->state != BR_CONN_CLOSING) {
        const char *why;
        Magnetar__Pulsar__ServerError err = send_failure(status, &why);
        if (err != ERR(NotAllowedError)) /* those are logged once per back-off by the ledger */
            MG_WARN_LIMITED("broker: storing a message of %s failed: %s", t->name.full, why);
        send_error(c, x->producer_id, x->sequence_id, err, why);
        if (status == MG_EFENCED && t->state == BR_TOPIC_OPEN) {
            /* Another broker owns the topic now: let clients look it up again. */
            br_topic_close(t, false, NULL, NULL);
        }
    }
    /* p may be gone here: closing the topic above drops its producers. */
    c->pending_sends--;
    if (c->paused_sends && c->pending_sends <= BR_CONN_PENDING_SENDS_MAX / 2) {
        c->paused_sends = false;
        br_conn_resume_reading(c);
    }
    br_topic_unref(t);
    mg_freelist_put(&c->send_pool, x);
    br_conn_unref(c);
}

void br_handle_send(br_conn *c, const pw_frame *f, const uint8_t *frame, size_t frame_off)
{
    const Magnetar__Pulsar__CommandSend *cmd = f->cmd->send;
    br_producer *p = br_conn_producer(c, cmd->producer_id);
    if (p == NULL && producer_closed_by_us(c, cmd->producer_id)) {
        /* Written before the client read our CLOSE_PRODUCER: it sends this again once the
         * producer is registered anew. Closing the connection instead would lose the receipts
         * still unread in the client's socket buffer (a reset discards them), and the client
         * would store again what was already stored. */
        return;
    }
    if (p == NULL) {
        br_conn_count_proto_error(c->b, "send_without_producer");
        br_conn_close(c, "SEND for a producer that does not exist");
        return;
    }
    if (!p->ready || p->topic == NULL) {
        send_error(c, cmd->producer_id, cmd->sequence_id, ERR(ServiceNotReady),
                   "the producer is not ready");
        return;
    }
    pw_payload pl;
    int rc = pw_payload_parse(frame + f->payload_off, f->payload_len, true, &pl);
    if (rc == MG_ECORRUPT) {
        br_conn_count_proto_error(c->b, "checksum");
        send_error(c, cmd->producer_id, cmd->sequence_id, ERR(ChecksumError),
                   "the message checksum does not match");
        return;
    }
    if (rc != MG_OK) {
        br_conn_count_proto_error(c->b, "bad_message_metadata");
        br_conn_close(c, "SEND with malformed message metadata");
        return;
    }
    int32_t num_messages = cmd->has_num_messages ? cmd->num_messages : pl.num_messages;
    if (num_messages < 1) {
        br_conn_count_proto_error(c->b, "bad_message_metadata");
        br_conn_close(c, "SEND with a message count below 1");
        return;
    }
    br_topic *t = p->topic;
    if (t->state != BR_TOPIC_OPEN) {
        send_error(c, cmd->producer_id, cmd->sequence_id, ERR(ServiceNotReady),
                   "the topic is closing");
        return;
    }
    send_ctx *x = send_ctx_new(c);
    if (x == NULL) {
        send_error(c, cmd->producer_id, cmd->sequence_id, ERR(PersistenceError), "out of memory");
        return;
    }
    size_t off = frame_off + f->payload_off + pl.client_off;
    size_t len = pl.client_len;
    x->conn = c;
    x->topic = t;
    x->producer_id = cmd->producer_id;
    x->sequence_id = cmd->sequence_id;
    x->has_highest = cmd->has_highest_sequence_id;
    x->highest_sequence_id = cmd->highest_sequence_id;
    x->num_messages = num_messages;
    x->bytes = len;
    x->start_ns = uv_hrtime();
    rc = ml_add(t->ml, c->rbuf, off, len, num_messages, send_stored, x);
    if (rc == MG_ESTATE && ml_is_fenced(t->ml)) {
        /* Another broker owns the log now. No error for this send: the client would resend
         * every send not yet acknowledged, and those still in flight may yet be stored (they
         * complete in order, stored or fenced). The first fenced one closes the topic, or,
         * with none in flight, we close it now; either way CLOSE_PRODUCER makes the client
         * look the topic up again and send this one again. As Pulsar's broker does for a
         * closed topic. */
        mg_freelist_put(&c->send_pool, x);
        if (t->sends_inflight == 0 && t->state == BR_TOPIC_OPEN)
            br_topic_close(t, false, NULL, NULL);
        return;
    }
    if (rc != MG_OK) {
        mg_freelist_put(&c->send_pool, x);
        if (ml_is_terminated(t->ml))
            send_error(c, cmd->producer_id, cmd->sequence_id, ERR(TopicTerminatedError),
                       "the topic is terminated");
        else {
            const char *why;
            Magnetar__Pulsar__ServerError err = send_failure(rc, &why);
            send_error(c, cmd->producer_id, cmd->sequence_id, err, why);
        }
        return;
    }
    br_conn_ref(c);
    br_topic_ref(t);
    t->sends_inflight++;
    if (++c->pending_sends >= BR_CONN_PENDING_SENDS_MAX && !c->paused_sends) {
        c->paused_sends = true;
        br_conn_pause_reading(c);
    }
}
