/*
 * OffsetCommit (v0-7) and OffsetFetch (v1-5): a consumer group's committed offset in a
 * partition is the mark-delete position of the durable subscription named as the group on the
 * partition's topic (docs/kafka.md, "Consumer groups"). So backlog, stats, metrics, resetcursor
 * and retention see a Kafka group exactly as a Pulsar subscription, a Pulsar subscription's
 * position is the offset a Kafka consumer of that group resumes from, and committed offsets are
 * as durable as cursors (written before the commit is answered).
 *
 * Committing offset O (the next message the group will read) in an entry E holding offsets
 * base..index: the mark-delete position becomes the entry before E, and E's messages below O
 * are acknowledged with a batch ack set (E's messages from O on stay unacknowledged). O equal to
 * the high watermark acknowledges everything. A commit that moves forward is a cumulative ack; one
 * that moves back (a consumer rewinding) resets the cursor there, as resetcursor does.
 * Fetching reads it back: the entry after the mark-delete position, its first offset plus the
 * messages its ack set marks acknowledged. A group with no subscription on a partition has no
 * offset there (-1). Commit metadata strings are not kept (fetched as empty).
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "cursor/limits.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int16_t kop_group_commit_check(kop_groups *g, kw_str group_id, int32_t generation,
                               kw_str member_id);

typedef struct off_part {
    struct off_ctx *x;
    const char *topic; /* topic name bytes: in the request, or owned */
    size_t topic_len;
    char *owned;
    int32_t partition;
    int64_t offset; /* commit: to store; fetch: found */
    int16_t error;
    br_topic *t;
    br_sub *s;
    ml_position pos;
    uint64_t ack_set[MC_ACK_SET_WORDS_MAX];
    size_t words;
    bool partial;
} off_part;

typedef struct off_ctx {
    kop_req *q;
    bool commit;
    char group[MC_NAME_BYTES_MAX];
    off_part *parts;
    size_t count, cap;
    uint32_t pending;
    int16_t error; /* OffsetFetch's top-level error */
} off_ctx;

static void off_free(off_ctx *x)
{
    for (size_t i = 0; i < x->count; i++) {
        mg_free(x->parts[i].owned);
        if (x->parts[i].t != NULL)
            br_topic_unref(x->parts[i].t);
    }
    mg_free(x->parts);
    mg_free(x);
}

static off_part *off_add(off_ctx *x)
{
    if (x->count == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4;
        off_part *v = mg_realloc(x->parts, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        x->parts = v;
        x->cap = cap;
    }
    off_part *p = &x->parts[x->count++];
    memset(p, 0, sizeof(*p));
    p->x = x;
    p->offset = -1;
    return p;
}

static size_t topic_groups(const off_ctx *x)
{
    size_t n = 0;
    for (size_t j = 0; j < x->count; j++)
        if (j == 0 || x->parts[j].topic != x->parts[j - 1].topic)
            n++;
    return n;
}

static void off_reply(off_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 3)
        kw_write_i32(&w, 0);
    kw_write_i32(&w, (int32_t)topic_groups(x));
    size_t i = 0;
    while (i < x->count) {
        size_t end = i + 1;
        while (end < x->count && x->parts[end].topic == x->parts[i].topic)
            end++;
        kw_write_i16(&w, (int16_t)x->parts[i].topic_len);
        kw_write_bytes(&w, x->parts[i].topic, x->parts[i].topic_len);
        kw_write_i32(&w, (int32_t)(end - i));
        for (size_t j = i; j < end; j++) {
            off_part *p = &x->parts[j];
            kw_write_i32(&w, p->partition);
            if (x->commit) {
                kw_write_i16(&w, p->error);
            } else {
                kw_write_i64(&w, p->error == KE_NONE ? p->offset : -1);
                if (q->version >= 5)
                    kw_write_i32(&w, -1); /* committed_leader_epoch */
                kw_write_string(&w, "");  /* metadata */
                kw_write_i16(&w, p->error);
            }
            kop_req_error(q, p->error);
        }
        i = end;
    }
    if (!x->commit && q->version >= 2) {
        kw_write_i16(&w, x->error);
        kop_req_error(q, x->error);
    }
    kop_reply_end(q, &w);
    kop_conn_unref(conn);
    off_free(x);
}

static void off_done(off_ctx *x)
{
    MG_ASSERT(x->pending > 0);
    if (--x->pending == 0)
        off_reply(x);
}

static void part_fail(off_part *p, int16_t error)
{
    if (p->error == KE_NONE)
        p->error = error;
    off_done(p->x);
}

/* ---- where a partition's offsets live ---------------------------------------------------------
 * On the broker that owns the partition (its subscription's cursor is open there): a partition
 * owned here is served here; one owned by another broker is forwarded to it (forward.c) as an
 * offsets request of its own, with the group's generation already checked here. A forwarded
 * request is never forwarded again (an owner that changed meanwhile answers
 * NOT_LEADER_OR_FOLLOWER and the client retries). */

typedef void (*part_forward_fn)(off_part *p, const char *addr);

typedef struct route_ctx {
    off_part *p;
    kop_resolve_cb local;
    part_forward_fn remote;
} route_ctx;

static void route_owner(int status, const char *kafka_addr, void *arg)
{
    route_ctx *rc = arg;
    off_part *p = rc->p;
    kop_resolve_cb local = rc->local;
    part_forward_fn remote = rc->remote;
    mg_free(rc);
    if (status != MG_OK) {
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
    } else if (kafka_addr == NULL) {
        kop_partition_open(p->x->q->c->k, p->topic, p->topic_len, p->partition, false, local, p);
    } else if (p->x->q->forwarded) {
        part_fail(p, KE_NOT_LEADER_OR_FOLLOWER);
    } else {
        remote(p, kafka_addr);
    }
}

static void route_named(int16_t error, const pw_topic_name *tn, void *arg)
{
    route_ctx *rc = arg;
    off_part *p = rc->p;
    if (error != KE_NONE) {
        kop_resolve_cb local = rc->local;
        mg_free(rc);
        local(error, NULL, p); /* reported as the local path reports it */
        return;
    }
    int r = br_owner_kafka(p->x->q->c->k->b, tn, route_owner, rc);
    if (r != MG_OK)
        route_owner(r, NULL, rc);
}

static void part_route(off_part *p, kop_resolve_cb local, part_forward_fn remote)
{
    kop_server *k = p->x->q->c->k;
    /* Open here already: owned here, no lookup. */
    pw_topic_name tn;
    for (int plain = 0; plain < 2; plain++) {
        if (plain == 1 && p->partition != 0)
            break;
        if (kop_topic_name(p->topic, p->topic_len, plain ? -1 : p->partition, &tn) != KE_NONE)
            break;
        br_topic *t = br_topic_find(k->b, tn.full);
        if (t != NULL && t->state == BR_TOPIC_OPEN) {
            local(KE_NONE, t, p);
            return;
        }
    }
    route_ctx *rc = mg_calloc(1, sizeof(*rc));
    if (rc == NULL) {
        part_fail(p, KE_UNKNOWN_SERVER_ERROR);
        return;
    }
    rc->p = p;
    rc->local = local;
    rc->remote = remote;
    kop_partition_name(k, p->topic, p->topic_len, p->partition, route_named, rc);
}

/* Starts a forwarded request: [size][key][version][correlation id][client id], then the body
 * the caller writes; kop_forward after. */
static void fwd_begin(kw_writer *w, int16_t api_key, int16_t version)
{
    kw_writer_init(w, 0);
    kw_write_i32(w, 0);
    kw_write_i16(w, api_key);
    kw_write_i16(w, version);
    kw_write_i32(w, 1);
    kw_write_string(w, KOP_FORWARD_CLIENT_ID);
}

static void fwd_send(off_part *p, const char *addr, kw_writer *w, kop_forward_cb cb)
{
    kw_writer_patch_size(w, 0);
    int rc = w->error != MG_OK ? w->error : kop_forward(p->x->q->c->k, addr, w->buf, w->len, cb, p);
    kw_writer_free(w);
    if (rc != MG_OK) {
        MG_WARN_LIMITED("kafka: cannot reach %s for the offsets of group %s: %s", addr, p->x->group,
                        mg_strerror(rc));
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
    }
}

/* The answer of a forwarded request for one partition: [topics: 1][name][partitions: 1]
 * [partition], then what follows (read by the caller). */
static bool fwd_answer_head(kw_reader *r)
{
    if (kw_read_i32(r) != 1)
        return false;
    kw_read_string(r);
    if (kw_read_i32(r) != 1)
        return false;
    kw_read_i32(r);
    return kw_reader_error(r) == MG_OK;
}

static void commit_forwarded(int status, const uint8_t *body, size_t len, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        MG_WARN_LIMITED("kafka: committing offsets of group %s through their owner failed: %s",
                        p->x->group, mg_strerror(status));
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    kw_reader r;
    kw_reader_init(&r, body, len);
    int16_t error = KE_COORDINATOR_NOT_AVAILABLE;
    if (fwd_answer_head(&r)) {
        int16_t e = kw_read_i16(&r);
        if (kw_reader_error(&r) == MG_OK)
            error = e;
    }
    if (error != KE_NONE)
        part_fail(p, error);
    else
        off_done(p->x);
}

static void forward_commit(off_part *p, const char *addr)
{
    kw_writer w;
    fwd_begin(&w, KW_API_OFFSET_COMMIT, 2);
    kw_write_string(&w, p->x->group);
    kw_write_i32(&w, -1); /* generation: checked by the coordinator */
    kw_write_string(&w, "");
    kw_write_i64(&w, -1); /* retention_time_ms */
    kw_write_i32(&w, 1);
    kw_write_i16(&w, (int16_t)p->topic_len);
    kw_write_bytes(&w, p->topic, p->topic_len);
    kw_write_i32(&w, 1);
    kw_write_i32(&w, p->partition);
    kw_write_i64(&w, p->offset);
    kw_write_string(&w, "");
    fwd_send(p, addr, &w, commit_forwarded);
}

static void fetch_forwarded(int status, const uint8_t *body, size_t len, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    kw_reader r;
    kw_reader_init(&r, body, len);
    int16_t error = KE_COORDINATOR_NOT_AVAILABLE;
    int64_t offset = -1;
    if (fwd_answer_head(&r)) {
        offset = kw_read_i64(&r);
        kw_read_string(&r); /* metadata */
        int16_t e = kw_read_i16(&r);
        if (kw_reader_error(&r) == MG_OK)
            error = e;
    }
    p->offset = offset;
    if (error != KE_NONE)
        part_fail(p, error);
    else
        off_done(p->x);
}

static void forward_fetch(off_part *p, const char *addr)
{
    kw_writer w;
    fwd_begin(&w, KW_API_OFFSET_FETCH, 1);
    kw_write_string(&w, p->x->group);
    kw_write_i32(&w, 1);
    kw_write_i16(&w, (int16_t)p->topic_len);
    kw_write_bytes(&w, p->topic, p->topic_len);
    kw_write_i32(&w, 1);
    kw_write_i32(&w, p->partition);
    fwd_send(p, addr, &w, fetch_forwarded);
}

/* ---- commit ---------------------------------------------------------------------------------- */

static void commit_written(int status, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        MG_WARN_LIMITED("kafka: committing offset %" PRId64 " of group %s on %s failed: %s",
                        p->offset, p->x->group, p->t->name.full, mg_strerror(status));
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    off_done(p->x);
}

static void commit_ack(off_part *p)
{
    int rc = br_sub_ack_upto(p->s, p->pos, p->partial ? p->ack_set : NULL,
                             p->partial ? p->words : 0, p->offset, commit_written, p);
    if (rc != MG_OK)
        part_fail(p, rc == MG_ESTATE ? KE_COORDINATOR_LOAD_IN_PROGRESS : KE_UNKNOWN_SERVER_ERROR);
}

static void commit_reset_done(int status, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        commit_written(status, p);
        return;
    }
    if (p->partial) {
        commit_ack(p);
    } else {
        mc_set_acked_messages(p->s->cursor, p->offset);
        off_done(p->x);
    }
}

/* The entry holding the committed offset, read: where the mark-delete position goes. */
static void commit_entry_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK || count == 0) {
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    const ml_entry *e = &entries[0];
    pw_payload pl;
    int32_t n = 1;
    if (pw_payload_parse(mg_buf_data(e->buf) + e->payload_off, e->payload_len, false, &pl) == MG_OK)
        n = pl.num_messages;
    int64_t base = e->index - n + 1;
    p->pos = e->position;
    /* Messages [O - base, n) of the entry stay unacknowledged; all of them when O <= base. */
    int64_t from = p->offset > base ? p->offset - base : 0;
    size_t words = ((size_t)n + 63) / 64;
    if (words > MC_ACK_SET_WORDS_MAX) {
        /* Too large to record by message: the whole entry stays unacknowledged (its messages
         * before O are read again: at least once). */
        from = 0;
        words = 1;
        n = 1;
    }
    memset(p->ack_set, 0, sizeof(p->ack_set));
    for (int64_t i = from; i < n; i++)
        p->ack_set[i / 64] |= (uint64_t)1 << (i % 64);
    p->words = words;
    p->partial = true;
    ml_position m = mc_mark_delete_position(p->s->cursor);
    ml_position next = ml_next_position(p->t->ml, m);
    int c = ml_position_cmp(p->pos, next);
    const uint64_t *cur;
    size_t cur_words;
    bool had_set = mc_batch_ack_set(p->s->cursor, p->pos, &cur, &cur_words) == MG_OK;
    bool forward = c > 0;
    if (c == 0) {
        /* Same entry: forward when every message acknowledged now stays acknowledged. */
        forward = true;
        for (size_t i = 0; had_set && i < words; i++) {
            uint64_t now_unacked = i < cur_words ? cur[i] : 0;
            if ((p->ack_set[i] & ~now_unacked) != 0)
                forward = false;
        }
    }
    if (forward) {
        commit_ack(p);
        return;
    }
    p->partial = from > 0;
    int rc = br_sub_reset_to_position(p->s, p->pos, commit_reset_done, p);
    if (rc != MG_OK)
        part_fail(p, rc == MG_ESTATE ? KE_COORDINATOR_LOAD_IN_PROGRESS : KE_UNKNOWN_SERVER_ERROR);
}

static void commit_found(int status, ml_position pos, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    int rc = pf_read(p->t->pf, pos, 1, 1, commit_entry_read, p);
    if (rc != MG_OK)
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
}

static void commit_with_sub(off_part *p)
{
    ml_managed *ml = p->t->ml;
    int64_t hw = ml_messages_total(ml);
    if (p->offset < 0 || p->offset > hw) {
        part_fail(p, KE_OFFSET_OUT_OF_RANGE);
        return;
    }
    if (p->offset == hw) {
        /* Everything read: acknowledge up to the last entry. */
        ml_position last = ml_last_position(ml);
        ml_position m = mc_mark_delete_position(p->s->cursor);
        if (last.ledger_id < 0 || ml_position_cmp(last, m) <= 0) {
            mc_set_acked_messages(p->s->cursor, p->offset);
            int rc = mc_cursor_flush(p->s->cursor, commit_written, p);
            if (rc != MG_OK)
                part_fail(p, KE_COORDINATOR_LOAD_IN_PROGRESS);
            return;
        }
        p->pos = last;
        p->partial = false;
        commit_ack(p);
        return;
    }
    int rc = ml_find_by_index(ml, p->offset, commit_found, p);
    if (rc != MG_OK)
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
}

static void commit_sub_opened(int status, void *arg)
{
    off_part *p = arg;
    p->s = status == MG_OK || status == MG_EEXIST ? br_topic_sub_find(p->t, p->x->group) : NULL;
    if (p->s == NULL || p->s->cursor == NULL) {
        part_fail(p, KE_COORDINATOR_LOAD_IN_PROGRESS);
        return;
    }
    commit_with_sub(p);
}

static void commit_topic(int16_t error, br_topic *t, void *arg)
{
    off_part *p = arg;
    if (error != KE_NONE) {
        part_fail(p, error);
        return;
    }
    br_topic_ref(t);
    p->t = t;
    p->s = br_topic_sub_find(t, p->x->group);
    if (p->s != NULL) {
        if (p->s->cursor == NULL || p->s->closing) {
            part_fail(p, KE_COORDINATOR_LOAD_IN_PROGRESS);
            return;
        }
        commit_with_sub(p);
        return;
    }
    /* The group's first commit on this partition: its subscription starts at the first entry,
     * so nothing is released to retention before the commit moves it. */
    int rc = br_sub_open_durable(t, p->x->group, MC_INITIAL_EARLIEST, commit_sub_opened, p);
    if (rc != MG_OK)
        commit_sub_opened(rc, p);
}

static void part_init(off_part *p, off_ctx *x, kw_str topic)
{
    p->x = x;
    p->offset = -1;
    p->topic = topic.ptr;
    p->topic_len = (size_t)topic.len;
}

static void commit_part_read(void *el, kw_str topic, kw_reader *r, void *arg)
{
    off_part *p = el;
    off_ctx *x = arg;
    part_init(p, x, topic);
    p->partition = kw_read_i32(r);
    p->offset = kw_read_i64(r);
    if (x->q->version >= 6)
        kw_read_i32(r); /* committed_leader_epoch */
    if (x->q->version == 1)
        kw_read_i64(r); /* commit_timestamp */
    kw_read_string(r);  /* metadata */
}

void kop_handle_offset_commit(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    kw_str group = kw_read_string(r);
    int32_t generation = -1;
    kw_str member = { NULL, -1 };
    if (q->version >= 1) {
        generation = kw_read_i32(r);
        member = kw_read_string(r);
    }
    if (q->version >= 7)
        kw_read_string(r); /* group_instance_id */
    if (q->version >= 2 && q->version <= 4)
        kw_read_i64(r); /* retention_time_ms: offsets live as long as the subscription */
    int32_t topics = kw_read_i32(r);
    off_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    x->commit = true;
    kop_read_partitions(r, topics, (void **)&x->parts, &x->count, &x->cap, sizeof(off_part), 100000,
                        commit_part_read, x);
    if (kw_reader_error(r) != MG_OK || topics < 0 || topics > 100000) {
        off_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed OffsetCommit request");
        kop_reply_none(q);
        return;
    }
    int16_t error = KE_NONE;
    if (q->coord_error != KE_NONE)
        error = q->coord_error;
    else if (group.len <= 0 || (size_t)group.len >= MC_NAME_BYTES_MAX ||
             memchr(group.ptr, '/', (size_t)group.len) != NULL ||
             (group.len == 1 && group.ptr[0] == '.') ||
             (group.len == 2 && group.ptr[0] == '.' && group.ptr[1] == '.'))
        error = KE_INVALID_GROUP_ID;
    else
        error = kop_group_commit_check(c->k->groups, group, generation, member);
    if (error == KE_NONE) {
        memcpy(x->group, group.ptr, (size_t)group.len);
        x->group[group.len] = '\0';
    }
    kop_conn_ref(c);
    x->pending = 1;
    for (size_t i = 0; i < x->count; i++) {
        off_part *p = &x->parts[i];
        if (error != KE_NONE) {
            p->error = error;
            continue;
        }
        x->pending++;
        part_route(p, commit_topic, forward_commit);
    }
    off_done(x);
}

/* ---- fetch ----------------------------------------------------------------------------------- */

static void fetch_entry_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    off_part *p = arg;
    if (status != MG_OK) {
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
        return;
    }
    if (count == 0) {
        p->offset = ml_messages_total(p->t->ml);
        off_done(p->x);
        return;
    }
    const ml_entry *e = &entries[0];
    pw_payload pl;
    int32_t n = 1;
    if (pw_payload_parse(mg_buf_data(e->buf) + e->payload_off, e->payload_len, false, &pl) == MG_OK)
        n = pl.num_messages;
    int64_t base = e->index - n + 1;
    p->offset = base;
    const uint64_t *set;
    size_t words;
    if (p->s->cursor != NULL &&
        mc_batch_ack_set(p->s->cursor, e->position, &set, &words) == MG_OK) {
        /* The first message still unacknowledged. */
        for (int32_t i = 0; i < n; i++) {
            if ((size_t)(i / 64) >= words || (set[i / 64] >> (i % 64) & 1) != 0)
                break;
            p->offset = base + i + 1;
        }
    }
    off_done(p->x);
}

static void fetch_topic(int16_t error, br_topic *t, void *arg)
{
    off_part *p = arg;
    if (error != KE_NONE) {
        /* No such partition: no committed offset. */
        off_done(p->x);
        return;
    }
    br_topic_ref(t);
    p->t = t;
    p->s = br_topic_sub_find(t, p->x->group);
    if (p->s == NULL || !p->s->durable) {
        off_done(p->x);
        return;
    }
    if (p->s->cursor == NULL) {
        part_fail(p, KE_COORDINATOR_LOAD_IN_PROGRESS);
        return;
    }
    ml_position m = mc_mark_delete_position(p->s->cursor);
    ml_position next = ml_next_position(t->ml, m);
    ml_position last = ml_last_position(t->ml);
    if (last.ledger_id < 0 || ml_position_cmp(next, last) > 0) {
        p->offset = ml_messages_total(t->ml);
        off_done(p->x);
        return;
    }
    int rc = pf_read(t->pf, next, 1, 1, fetch_entry_read, p);
    if (rc != MG_OK)
        part_fail(p, KE_COORDINATOR_NOT_AVAILABLE);
}

/* Every open partition of public/default with a subscription named as the group. */
static void fetch_all_partitions(off_ctx *x)
{
    br_broker *b = x->q->c->k->b;
    for (size_t i = 0; i < b->topics.bucket_count; i++) {
        for (br_topic *t = b->topics.buckets[i]; t != NULL; t = t->hash_next) {
            if (t->state != BR_TOPIC_OPEN || strcmp(t->name.tenant, "public") != 0 ||
                strcmp(t->name.ns, "default") != 0 || br_topic_sub_find(t, x->group) == NULL)
                continue;
            const char *local = t->name.local;
            size_t len = strlen(local);
            int32_t partition = 0;
            const char *dash = strstr(local, "-partition-");
            if (t->name.partition >= 0 && dash != NULL) {
                partition = t->name.partition;
                len = (size_t)(dash - local);
            }
            off_part *p = off_add(x);
            if (p == NULL)
                return;
            p->owned = mg_malloc(len + 1);
            if (p->owned == NULL) {
                x->count--;
                return;
            }
            memcpy(p->owned, local, len);
            p->owned[len] = '\0';
            p->topic = p->owned;
            p->topic_len = len;
            p->partition = partition;
        }
    }
}

static void fetch_part_read(void *el, kw_str topic, kw_reader *r, void *arg)
{
    off_part *p = el;
    part_init(p, arg, topic);
    p->partition = kw_read_i32(r);
}

void kop_handle_offset_fetch(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    kw_str group = kw_read_string(r);
    int32_t topics = kw_read_i32(r);
    off_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    kop_read_partitions(r, topics, (void **)&x->parts, &x->count, &x->cap, sizeof(off_part), 100000,
                        fetch_part_read, x);
    if (kw_reader_error(r) != MG_OK || topics > 100000 || (topics < 0 && q->version < 2)) {
        off_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed OffsetFetch request");
        kop_reply_none(q);
        return;
    }
    bool group_ok = group.len > 0 && (size_t)group.len < MC_NAME_BYTES_MAX &&
                    memchr(group.ptr, '/', (size_t)group.len) == NULL;
    if (group_ok) {
        memcpy(x->group, group.ptr, (size_t)group.len);
        x->group[group.len] = '\0';
        group_ok = strcmp(x->group, ".") != 0 && strcmp(x->group, "..") != 0;
    }
    kop_conn_ref(c);
    x->pending = 1;
    if (!group_ok || q->coord_error != KE_NONE) {
        x->error = group_ok ? q->coord_error : KE_INVALID_GROUP_ID;
        for (size_t i = 0; i < x->count; i++)
            x->parts[i].error = x->error;
        off_done(x);
        return;
    }
    if (topics < 0)
        fetch_all_partitions(x);
    for (size_t i = 0; i < x->count; i++) {
        off_part *p = &x->parts[i];
        x->pending++;
        part_route(p, fetch_topic, forward_fetch);
    }
    off_done(x);
}
