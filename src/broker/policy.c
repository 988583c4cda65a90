/*
 * Enforcement of the namespace policies (namespace.h): retention, message TTL and backlog
 * quotas, with Pulsar's meanings (docs/broker.md "Policies").
 *
 * EFFECTIVE POLICY (br_policy_effective): each value is the namespace's when set
 *   (br_ns_policies_find, not BR_POLICY_UNSET), else the broker's default (br_broker_opts).
 *   It is looked up afresh at every check, so a change of the namespace's policies or of the
 *   cache takes effect at the next check at the latest; br_policies_changed runs every check on
 *   the namespace's open topics at once.
 *
 * WHEN (one uv timer per kind, each going over every open topic):
 *   retention   every retention_check_ms, at topic open, on a policy change: ml_set_retention
 *               with the effective values, which also re-runs the managed ledger's trim (so a
 *               consumed ledger whose retention time ran out goes without waiting for a
 *               rollover or an acknowledgement).
 *   TTL         every expiry_check_ms, at topic open, on a policy change: for a TTL > 0, every
 *               durable subscription acknowledges (mark-delete) everything up to the newest entry
 *               whose broker timestamp is older than now - TTL (ml_find_by_time, one search per
 *               topic), as Pulsar's PersistentMessageExpiryMonitor.
 *   quota       every backlog_quota_check_ms, at topic open, on a policy change, and when a
 *               producer asks to join (br_policy_producer_refusal).
 *
 * BACKLOG QUOTA (per topic; the slowest durable subscription's mark-delete position M)
 *   destination_storage: exceeded when the bytes after M (br_topic_backlog_bytes) are above
 *     limit_bytes.
 *   message_age: exceeded when the entry after M (the oldest unacknowledged message of the
 *     slowest subscription) was stored more than limit_s ago. Its broker timestamp needs a
 *     read: the timestamp is kept with its position (age_pos, age_ts_ms) and read again only
 *     when M moved. A producer's request is judged on what is known without waiting: when the
 *     timestamp of the current M is not known yet, age does not refuse it, and the read starts
 *     (the check that follows disconnects the producer if the age is exceeded).
 *   Exceeded, per policy:
 *     producer_request_hold   producers refused with ProducerBlockedQuotaExceededError and the
 *                             connected ones closed (CLOSE_PRODUCER): they come back, are
 *                             refused, and their clients hold the messages while they retry;
 *     producer_exception      the same with ProducerBlockedQuotaExceededException: clients fail
 *                             their sends;
 *     consumer_backlog_eviction  (size) every durable subscription behind the position P whose
 *                             following bytes fit the limit is acknowledged up to P; (age) every
 *                             durable subscription expires what is older than the limit, as TTL.
 *   Back under the quota, producers are accepted again (the check at each request is fresh).
 *
 * SAFETY: work runs only on OPEN topics; every asynchronous step holds a topic reference and,
 *   when it calls back, does nothing unless the topic is still OPEN; subscriptions are looked
 *   up again by name then (one may have been deleted meanwhile) and skipped while they open,
 *   close or reset. At most one expiry search and one age read per topic at a time.
 *
 * Threads: the broker's loop.
 */
#include "broker/broker_int.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <string.h>

#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

#define BR_EXPIRY_CHECK_MS_DEFAULT    (5u * 60u * 1000u)
#define BR_QUOTA_CHECK_MS_DEFAULT     (60u * 1000u)
#define BR_RETENTION_CHECK_MS_DEFAULT (120u * 1000u)

/* Ledgers copied from a managed ledger's list at once (ml_ledgers) to walk it. */
#define BR_POLICY_LEDGERS_MAX 4096

static const char *policy_name(br_backlog_policy p)
{
    switch (p) {
    case BR_BACKLOG_PRODUCER_EXCEPTION:
        return "producer_exception";
    case BR_BACKLOG_CONSUMER_BACKLOG_EVICTION:
        return "consumer_backlog_eviction";
    default:
        return "producer_request_hold";
    }
}

void br_policy_effective(br_topic *t, br_policy *out)
{
    const br_broker_opts *o = &t->b->opts;
    out->retention_time_ms = o->ml_config.retention_time_ms;
    out->retention_bytes = o->ml_config.retention_bytes;
    out->ttl_s = o->ttl_default_s > 0 ? o->ttl_default_s : 0;
    out->backlog_limit_bytes = o->backlog_quota_limit_bytes > 0 ? o->backlog_quota_limit_bytes : -1;
    out->backlog_limit_s = o->backlog_quota_limit_s > 0 ? o->backlog_quota_limit_s : -1;
    out->backlog_size_policy = (br_backlog_policy)o->backlog_quota_policy;
    out->backlog_age_policy = (br_backlog_policy)o->backlog_quota_policy;
    const br_ns_policies *ns = br_ns_policies_find(t->b, t->name.tenant, t->name.ns);
    if (ns == NULL)
        return;
    if (ns->retention_time_minutes != BR_POLICY_UNSET)
        out->retention_time_ms =
            ns->retention_time_minutes < 0 ? -1 : ns->retention_time_minutes * 60000;
    if (ns->retention_size_mb != BR_POLICY_UNSET)
        out->retention_bytes = ns->retention_size_mb < 0 ? -1 : ns->retention_size_mb << 20;
    if (ns->message_ttl_seconds != BR_POLICY_UNSET)
        out->ttl_s = ns->message_ttl_seconds > 0 ? ns->message_ttl_seconds : 0;
    if (ns->backlog_limit_bytes != BR_POLICY_UNSET) {
        out->backlog_limit_bytes = ns->backlog_limit_bytes < 0 ? -1 : ns->backlog_limit_bytes;
        out->backlog_size_policy = ns->backlog_size_policy;
    }
    if (ns->backlog_limit_seconds != BR_POLICY_UNSET) {
        out->backlog_limit_s = ns->backlog_limit_seconds < 0 ? -1 : ns->backlog_limit_seconds;
        out->backlog_age_policy = ns->backlog_age_policy;
    }
}

/* ---- positions and sizes --------------------------------------------------------------------- */

/* The managed ledger's list (at most BR_POLICY_LEDGERS_MAX, oldest first) into a new array;
 * NULL when out of memory. */
static ml_ledger_info *ledgers_copy(ml_managed *ml, size_t *count)
{
    size_t n = ml_ledgers(ml, NULL, 0);
    if (n > BR_POLICY_LEDGERS_MAX)
        n = BR_POLICY_LEDGERS_MAX;
    ml_ledger_info *v = mg_calloc(n > 0 ? n : 1, sizeof(*v));
    if (v == NULL)
        return NULL;
    size_t total = ml_ledgers(ml, v, n);
    *count = total < n ? total : n;
    return v;
}

/* Bytes stored after pos: whole ledgers after its ledger, and the share of its own ledger's
 * bytes that its later entries hold (entries of one ledger counted at their average size). */
static int64_t bytes_after(const ml_ledger_info *v, size_t n, ml_position pos)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].ledger_id > pos.ledger_id) {
            total += v[i].size_bytes;
        } else if (v[i].ledger_id == pos.ledger_id && v[i].entries > 0) {
            int64_t later = v[i].entries - (pos.entry_id + 1);
            if (later > 0)
                total += v[i].size_bytes * later / v[i].entries;
        }
    }
    return total;
}

int64_t br_topic_backlog_bytes(br_topic *t)
{
    if (t->ml == NULL || t->group == NULL)
        return 0;
    ml_position m = mc_group_slowest(t->group);
    if (m.ledger_id < 0)
        return 0;
    size_t n = 0;
    ml_ledger_info *v = ledgers_copy(t->ml, &n);
    if (v == NULL)
        return 0;
    int64_t bytes = bytes_after(v, n, m);
    mg_free(v);
    return bytes;
}

/* The position P, as early as possible, whose following bytes fit within limit (bytes_after(P)
 * <= limit); ledger_id -1 when the whole log fits. */
static ml_position fit_position(const ml_ledger_info *v, size_t n, int64_t limit)
{
    int64_t acc = 0;
    for (size_t i = n; i-- > 0;) {
        if (v[i].entries <= 0)
            continue;
        if (acc + v[i].size_bytes <= limit) {
            acc += v[i].size_bytes;
            continue;
        }
        /* Keep k entries of this ledger: k * size / entries <= limit - acc, so k < entries. */
        int64_t k = v[i].size_bytes > 0 ? (limit - acc) * v[i].entries / v[i].size_bytes : 0;
        if (k >= v[i].entries)
            k = v[i].entries - 1;
        return (ml_position){ v[i].ledger_id, v[i].entries - k - 1 };
    }
    return (ml_position){ -1, -1 };
}

/* The position just before pos in the list (the previous non-empty ledger's last entry at a
 * ledger's start); ledger_id -1 when nothing is before it. */
static ml_position position_before(const ml_ledger_info *v, size_t n, ml_position pos)
{
    if (pos.entry_id > 0) {
        for (size_t i = 0; i < n; i++)
            if (v[i].ledger_id == pos.ledger_id)
                return (ml_position){ pos.ledger_id, pos.entry_id - 1 };
    }
    ml_position best = { -1, -1 };
    for (size_t i = 0; i < n; i++)
        if (v[i].ledger_id < pos.ledger_id && v[i].entries > 0)
            best = (ml_position){ v[i].ledger_id, v[i].entries - 1 };
    return best;
}

/* Whether the subscription is in a state where the policies may move its mark-delete. */
static bool sub_movable(const br_sub *s)
{
    return s->durable && s->cursor != NULL && !s->opening && !s->closing && !s->resetting;
}

static void cursor_written(int status, void *arg)
{
    (void)arg;
    if (status != MG_OK)
        MG_WARN("broker: writing a subscription moved by a policy: %s", mg_strerror(status));
}

/* Acknowledges every movable durable subscription of t up to target (those already past it are
 * left alone); returns the messages they no longer have in their backlog. */
static bool sub_listed(br_topic *t, const br_sub *s)
{
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next)
        if (MG_CONTAINER_OF(l, br_sub, topic_link) == s)
            return true;
    return false;
}

static bool sub_behind(const br_sub *s, ml_position target)
{
    return sub_movable(s) && ml_position_cmp(mc_mark_delete_position(s->cursor), target) < 0;
}

static uint64_t move_subs_to(br_topic *t, ml_position target, bool count_expired)
{
    uint64_t total = 0;
    ml_position last = ml_last_position(t->ml);
    if (target.ledger_id < 0 || last.ledger_id < 0)
        return 0;
    if (ml_position_cmp(target, last) > 0)
        target = last;
    /* The subscriptions to move are listed first: moving one dispatches, and a connection that
     * fails meanwhile may take a non-durable subscription off the list, so each is looked up
     * again before it is touched. */
    size_t n = 0;
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next)
        n += sub_behind(MG_CONTAINER_OF(l, br_sub, topic_link), target) ? 1 : 0;
    if (n == 0)
        return 0;
    br_sub **v = mg_calloc(n, sizeof(*v));
    if (v == NULL)
        return 0;
    size_t k = 0;
    for (mg_link *l = t->subs.next; l != &t->subs && k < n; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        if (sub_behind(s, target))
            v[k++] = s;
    }
    for (size_t i = 0; i < k; i++) {
        br_sub *s = v[i];
        if (t->state != BR_TOPIC_OPEN || !sub_listed(t, s) || !sub_behind(s, target))
            continue;
        int64_t before = mc_backlog_messages(s->cursor);
        int rc = br_sub_ack_upto(s, target, NULL, 0, -1, cursor_written, NULL);
        if (rc == MG_EAGAIN) {
            /* Moved; only its write waits for the ones in flight (written with the next). */
            rc = MG_OK;
        }
        if (rc != MG_OK) {
            MG_WARN("broker: topic %s: subscription %s cannot be moved to %" PRId64 ":%" PRId64
                    ": %s",
                    t->name.full, s->name, target.ledger_id, target.entry_id, mg_strerror(rc));
            continue;
        }
        int64_t after = mc_backlog_messages(s->cursor);
        uint64_t gone = before > after ? (uint64_t)(before - after) : 0;
        if (count_expired)
            s->msg_expired += gone;
        total += gone;
    }
    mg_free(v);
    return total;
}

/* ---- expiry by time (TTL, and the eviction of a message_age quota) -------------------------- */

typedef struct expire_ctx {
    br_topic *t;
    bool ttl; /* else a backlog quota eviction */
    int64_t limit_s;
} expire_ctx;

static void expire_found(int status, ml_position pos, void *arg)
{
    expire_ctx *x = arg;
    br_topic *t = x->t;
    t->expiring = false;
    if (t->state == BR_TOPIC_OPEN && t->ml != NULL) {
        if (status != MG_OK) {
            MG_WARN("broker: topic %s: finding the messages older than %" PRId64 " s: %s",
                    t->name.full, x->limit_s, mg_strerror(status));
        } else {
            size_t n = 0;
            ml_ledger_info *v = ledgers_copy(t->ml, &n);
            if (v != NULL) {
                ml_position target = position_before(v, n, pos);
                mg_free(v);
                uint64_t gone = move_subs_to(t, target, x->ttl);
                if (gone > 0) {
                    MG_INFO("broker: topic %s: %" PRIu64 " messages older than %" PRId64 " s %s",
                            t->name.full, gone, x->limit_s,
                            x->ttl ? "expired (message TTL)"
                                   : "evicted (backlog quota message_age, "
                                     "consumer_backlog_eviction)");
                    mg_counter_add(x->ttl ? t->b->m_expired : t->b->m_evicted, gone);
                }
            }
        }
    }
    mg_free(x);
    br_topic_unref(t);
}

/* Whether some movable durable subscription of t has a backlog. */
static bool any_backlog(br_topic *t)
{
    for (mg_link *l = t->subs.next; l != &t->subs; l = l->next) {
        br_sub *s = MG_CONTAINER_OF(l, br_sub, topic_link);
        if (sub_movable(s) && mc_backlog_entries(s->cursor) > 0)
            return true;
    }
    return false;
}

/* Starts the expiry of everything stored more than limit_s ago on every durable subscription. */
static void expire_older(br_topic *t, int64_t limit_s, bool ttl)
{
    if (t->state != BR_TOPIC_OPEN || t->ml == NULL || t->expiring || limit_s <= 0 ||
        !any_backlog(t))
        return;
    expire_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL)
        return;
    x->t = t;
    x->ttl = ttl;
    x->limit_s = limit_s;
    int rc = ml_find_by_time(t->ml, mg_clock_wall_ms() - limit_s * 1000, expire_found, x);
    if (rc != MG_OK) {
        MG_WARN("broker: topic %s: cannot look for expired messages: %s", t->name.full,
                mg_strerror(rc));
        mg_free(x);
        return;
    }
    t->expiring = true;
    br_topic_ref(t);
}

static void ttl_check(br_topic *t, const br_policy *p)
{
    if (p->ttl_s > 0)
        expire_older(t, p->ttl_s, true);
}

/* ---- backlog quota ----------------------------------------------------------------------------
 */

static void quota_check(br_topic *t);

/* The entry after the slowest durable mark-delete position: the oldest unacknowledged one;
 * ledger_id -1 when there is none (no durable subscription, or no backlog). */
static ml_position oldest_unacked(br_topic *t)
{
    ml_position m = mc_group_slowest(t->group);
    ml_position last = ml_last_position(t->ml);
    if (m.ledger_id < 0 || last.ledger_id < 0 || ml_position_cmp(m, last) >= 0)
        return (ml_position){ -1, -1 };
    ml_position next = ml_next_position(t->ml, m);
    if (ml_position_cmp(next, last) > 0)
        return (ml_position){ -1, -1 };
    return next;
}

static void age_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    br_topic *t = arg;
    t->age_reading = false;
    if (t->state == BR_TOPIC_OPEN && t->ml != NULL) {
        if (status == MG_OK && count > 0) {
            t->age_pos = entries[0].position;
            t->age_ts_ms = entries[0].broker_timestamp_ms;
            quota_check(t);
        } else if (status != MG_OK) {
            MG_WARN("broker: topic %s: reading the oldest unacknowledged entry for the backlog "
                    "quota: %s",
                    t->name.full, mg_strerror(status));
        }
    }
    br_topic_unref(t);
}

/* The age in milliseconds of the oldest unacknowledged message, when known now: -1 when there
 * is none or its timestamp is not known yet (then, with read, its read starts). */
static int64_t backlog_age_ms(br_topic *t, bool read)
{
    ml_position first = oldest_unacked(t);
    if (first.ledger_id < 0)
        return -1;
    if (t->age_pos.ledger_id >= 0 && ml_position_cmp(t->age_pos, first) == 0) {
        int64_t age_ms = mg_clock_wall_ms() - t->age_ts_ms;
        return age_ms > 0 ? age_ms : 0;
    }
    if (read && !t->age_reading) {
        int rc = ml_read(t->ml, first, 1, 1, age_read, t);
        if (rc == MG_OK) {
            t->age_reading = true;
            br_topic_ref(t);
        } else {
            MG_WARN("broker: topic %s: cannot read the oldest unacknowledged entry: %s",
                    t->name.full, mg_strerror(rc));
        }
    }
    return -1;
}

/* What the quotas say now: which is exceeded, and what was measured (bytes after the slowest
 * mark-delete; age of the oldest unacknowledged message, -1 when none or not known yet). */
typedef struct quota_verdict {
    bool size_exceeded, age_exceeded;
    int64_t bytes, age_s;
} quota_verdict;

static void quota_judge(br_topic *t, const br_policy *p, bool read, quota_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->age_s = -1;
    if (p->backlog_limit_bytes >= 0) {
        v->bytes = br_topic_backlog_bytes(t);
        v->size_exceeded = v->bytes > p->backlog_limit_bytes;
    }
    if (p->backlog_limit_s >= 0) {
        int64_t age_ms = backlog_age_ms(t, read);
        v->age_s = age_ms >= 0 ? age_ms / 1000 : -1;
        v->age_exceeded = age_ms >= 0 && age_ms > p->backlog_limit_s * 1000;
    }
}

static void drop_producers(br_topic *t, br_backlog_policy policy)
{
    uint64_t n = 0;
    while (!mg_list_empty(&t->producers)) {
        br_producer_drop(MG_CONTAINER_OF(t->producers.next, br_producer, topic_link), true);
        n++;
    }
    if (n > 0) {
        MG_INFO("broker: topic %s: %" PRIu64 " producers closed: backlog quota exceeded (%s)",
                t->name.full, n, policy_name(policy));
        mg_counter_add(t->b->m_quota_refusals, n);
    }
}

static void evict_size(br_topic *t, int64_t limit)
{
    size_t n = 0;
    ml_ledger_info *v = ledgers_copy(t->ml, &n);
    if (v == NULL)
        return;
    ml_position target = fit_position(v, n, limit);
    mg_free(v);
    uint64_t gone = move_subs_to(t, target, false);
    if (gone > 0) {
        MG_INFO("broker: topic %s: %" PRIu64 " messages evicted to bring the backlog within "
                "%" PRId64 " bytes (backlog quota destination_storage, "
                "consumer_backlog_eviction)",
                t->name.full, gone, limit);
        mg_counter_add(t->b->m_evicted, gone);
    }
}

static void quota_check(br_topic *t)
{
    if (t->state != BR_TOPIC_OPEN || t->ml == NULL)
        return;
    br_policy p;
    br_policy_effective(t, &p);
    if (p.backlog_limit_bytes < 0 && p.backlog_limit_s < 0) {
        if (t->quota_exceeded)
            MG_INFO("broker: topic %s: no backlog quota any more: producers are accepted again",
                    t->name.full);
        t->quota_exceeded = false;
        return;
    }
    quota_verdict v;
    quota_judge(t, &p, true, &v);
    bool blocked = false;
    if (v.size_exceeded) {
        if (p.backlog_size_policy == BR_BACKLOG_CONSUMER_BACKLOG_EVICTION) {
            evict_size(t, p.backlog_limit_bytes);
        } else {
            blocked = true;
            drop_producers(t, p.backlog_size_policy);
        }
    }
    if (v.age_exceeded) {
        if (p.backlog_age_policy == BR_BACKLOG_CONSUMER_BACKLOG_EVICTION) {
            expire_older(t, p.backlog_limit_s, false);
        } else {
            blocked = true;
            drop_producers(t, p.backlog_age_policy);
        }
    }
    if (blocked && !t->quota_exceeded)
        MG_WARN("broker: topic %s: backlog quota exceeded (%" PRId64 " bytes, limit %" PRId64
                "; oldest unacknowledged %" PRId64 " s old, limit %" PRId64
                " s): producers are refused",
                t->name.full, v.bytes, p.backlog_limit_bytes, v.age_s, p.backlog_limit_s);
    else if (!blocked && t->quota_exceeded)
        MG_INFO("broker: topic %s: backlog back within its quota: producers are accepted again",
                t->name.full);
    t->quota_exceeded = blocked;
}

int br_policy_producer_refusal(br_topic *t, const char **message)
{
    br_policy p;
    br_policy_effective(t, &p);
    if (p.backlog_limit_bytes < 0 && p.backlog_limit_s < 0)
        return 0;
    quota_verdict v;
    quota_judge(t, &p, true, &v);
    br_backlog_policy policy;
    if (v.size_exceeded && p.backlog_size_policy != BR_BACKLOG_CONSUMER_BACKLOG_EVICTION)
        policy = p.backlog_size_policy;
    else if (v.age_exceeded && p.backlog_age_policy != BR_BACKLOG_CONSUMER_BACKLOG_EVICTION)
        policy = p.backlog_age_policy;
    else
        return 0;
    mg_counter_inc(t->b->m_quota_refusals);
    if (policy == BR_BACKLOG_PRODUCER_EXCEPTION) {
        *message = "the backlog quota of the topic is exceeded (producer_exception): messages "
                   "cannot be published until its subscriptions catch up";
        return ERR(ProducerBlockedQuotaExceededException);
    }
    *message = "the backlog quota of the topic is exceeded (producer_request_hold): producers "
               "are held until its subscriptions catch up";
    return ERR(ProducerBlockedQuotaExceededError);
}

/* ---- retention --------------------------------------------------------------------------------
 */

static void retention_apply(br_topic *t, const br_policy *p)
{
    if (t->state != BR_TOPIC_OPEN || t->ml == NULL)
        return;
    int rc = ml_set_retention(t->ml, p->retention_time_ms, p->retention_bytes);
    if (rc != MG_OK)
        MG_WARN("broker: topic %s: cannot apply retention (%" PRId64 " ms, %" PRId64 " bytes): %s",
                t->name.full, p->retention_time_ms, p->retention_bytes, mg_strerror(rc));
}

/* ---- timers and events ------------------------------------------------------------------------
 */

enum { CHECK_RETENTION = 1, CHECK_TTL = 2, CHECK_QUOTA = 4, CHECK_ALL = 7 };

static void topic_check(br_topic *t, int what)
{
    if (t->state != BR_TOPIC_OPEN || t->ml == NULL)
        return;
    br_policy p;
    br_policy_effective(t, &p);
    if (what & CHECK_RETENTION)
        retention_apply(t, &p);
    if (what & CHECK_TTL)
        ttl_check(t, &p);
    if (what & CHECK_QUOTA)
        quota_check(t);
}

/* Runs the checks on every open topic (of tenant/ns when tenant is not NULL). A check never
 * closes a topic or removes one from the table, so walking the buckets is safe. */
static void each_topic(br_broker *b, int what, const char *tenant, const char *ns)
{
    if (b->closing)
        return;
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        for (br_topic *t = b->topics.buckets[i]; t != NULL;) {
            br_topic *next = t->hash_next;
            if (tenant == NULL ||
                (strcmp(t->name.tenant, tenant) == 0 && strcmp(t->name.ns, ns) == 0))
                topic_check(t, what);
            t = next;
        }
    }
}

static void expiry_tick(uv_timer_t *h)
{
    each_topic(h->data, CHECK_TTL, NULL, NULL);
}

static void quota_tick(uv_timer_t *h)
{
    each_topic(h->data, CHECK_QUOTA, NULL, NULL);
}

static void retention_tick(uv_timer_t *h)
{
    each_topic(h->data, CHECK_RETENTION, NULL, NULL);
}

static void timer_start(br_broker *b, uv_timer_t *h, uv_timer_cb cb, uint32_t ms, uint32_t dflt)
{
    uint64_t period = ms != 0 ? ms : dflt;
    uv_timer_init(b->loop, h);
    h->data = b;
    uv_timer_start(h, cb, period, period);
}

void br_policy_start(br_broker *b)
{
    timer_start(b, &b->expiry_timer, expiry_tick, b->opts.expiry_check_ms,
                BR_EXPIRY_CHECK_MS_DEFAULT);
    timer_start(b, &b->quota_timer, quota_tick, b->opts.backlog_quota_check_ms,
                BR_QUOTA_CHECK_MS_DEFAULT);
    timer_start(b, &b->retention_timer, retention_tick, b->opts.retention_check_ms,
                BR_RETENTION_CHECK_MS_DEFAULT);
    mg_metrics *m = b->opts.metrics;
    if (m == NULL)
        return;
    b->m_expired = mg_metrics_unlabelled_counter(
        m, "magnetar_broker_expired_messages_total",
        "Messages that durable subscriptions lost to the message TTL (acknowledged on their "
        "behalf)");
    b->m_evicted = mg_metrics_unlabelled_counter(
        m, "magnetar_broker_backlog_evicted_messages_total",
        "Messages that durable subscriptions lost to a backlog quota with the "
        "consumer_backlog_eviction policy");
    b->m_quota_refusals = mg_metrics_unlabelled_counter(
        m, "magnetar_broker_backlog_quota_producer_refusals_total",
        "Producers refused or closed because their topic's backlog quota was exceeded");
}

int br_policy_close(br_broker *b, uv_close_cb done)
{
    uv_close((uv_handle_t *)&b->expiry_timer, done);
    uv_close((uv_handle_t *)&b->quota_timer, done);
    uv_close((uv_handle_t *)&b->retention_timer, done);
    return 3;
}

void br_policy_topic_opened(br_topic *t)
{
    t->age_pos = (ml_position){ -1, -1 };
    topic_check(t, CHECK_ALL);
}

void br_policies_changed(br_broker *b, const char *tenant, const char *ns)
{
    MG_INFO("broker: the policies of namespace %s/%s changed: applying them", tenant, ns);
    each_topic(b, CHECK_ALL, tenant, ns);
}
