/*
 * Produce (v3-7) and InitProducerId (v0-1).
 *
 * Each record batch of a partition becomes one entry of its topic (convert.c), added through
 * the managed ledger as a Pulsar SEND is; the answer's base offset is the entry's first message
 * index. acks 0 gets no answer, acks 1 and -1 an answer once the entry is stored (ack quorum of
 * bookies, journal synced): there are no follower replicas to wait for beyond that.
 *
 * IDEMPOTENT PRODUCERS. InitProducerId hands out producer ids from the metadata store's id
 * sequence (unique across restarts and brokers), epoch 0. Each topic keeps, per producer id, the
 * epoch and the sequence the next batch must start at (counting batches still being stored),
 * and the first sequence and offset of the last batch stored. A batch
 *   - of an older epoch: INVALID_PRODUCER_EPOCH;
 *   - of a newer epoch: must start at sequence 0 (else OUT_OF_ORDER_SEQUENCE_NUMBER);
 *   - starting where the last stored batch started: a retry of it, answered with its offset and
 *     not stored again;
 *   - starting below the expected sequence otherwise: DUPLICATE_SEQUENCE_NUMBER (clients take it
 *     as delivered);
 *   - starting above it: OUT_OF_ORDER_SEQUENCE_NUMBER;
 *   - of a producer this topic has not seen (new, or the broker restarted and the state is in
 *     memory only): accepted as the start of its sequence.
 * A batch whose store fails puts the expected sequence back, so the client's retry is accepted.
 * Transactions are not served (no transactional id: InitProducerId with one is refused).
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Partitions one Produce request may name. */
#define KOP_PRODUCE_PARTITIONS_MAX 10000

typedef struct prod_part {
    kw_str topic;
    int32_t partition;
    const uint8_t *records;
    size_t records_len;
    int16_t error;
    int64_t base_offset;
    uint32_t batches_pending;
    bool offset_set;
} prod_part;

typedef struct prod_ctx {
    kop_req *q;
    int16_t acks;
    prod_part *parts;
    size_t count;
    size_t pending;
    /* For the answer: the topic of each partition in order. */
} prod_ctx;

typedef struct batch_op {
    prod_ctx *x;
    prod_part *pp;
    br_topic *t;
    int64_t producer_id;
    int16_t epoch;
    int32_t base_seq;
    int32_t count;
    size_t bytes;
    uint64_t start_ns;
} batch_op;

static void prod_reply(prod_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    if (x->acks == 0) {
        /* No answer; a producer with acks 0 learns of an error only by the connection closing,
         * as Kafka's broker closes it. */
        bool failed = false;
        for (size_t i = 0; i < x->count; i++)
            failed = failed || x->parts[i].error != KE_NONE;
        kop_reply_none(q);
        if (failed)
            kop_conn_close(conn, "a produce with acks 0 failed");
    } else {
        kw_writer w;
        kop_reply_begin(q, &w);
        /* Topics in the order first named, each with its partitions in order. */
        size_t i = 0;
        size_t topics = 0;
        for (size_t j = 0; j < x->count; j++)
            if (j == 0 || x->parts[j].topic.ptr != x->parts[j - 1].topic.ptr)
                topics++;
        kw_write_i32(&w, (int32_t)topics);
        while (i < x->count) {
            size_t end = i + 1;
            while (end < x->count && x->parts[end].topic.ptr == x->parts[i].topic.ptr)
                end++;
            kw_write_i16(&w, (int16_t)x->parts[i].topic.len);
            kw_write_bytes(&w, x->parts[i].topic.ptr, (size_t)x->parts[i].topic.len);
            kw_write_i32(&w, (int32_t)(end - i));
            for (size_t j = i; j < end; j++) {
                prod_part *pp = &x->parts[j];
                kw_write_i32(&w, pp->partition);
                kw_write_i16(&w, pp->error);
                kop_req_error(q, pp->error);
                kw_write_i64(&w, pp->error == KE_NONE ? pp->base_offset : -1);
                if (q->version >= 2)
                    kw_write_i64(&w, -1); /* log_append_time_ms: CreateTime */
                if (q->version >= 5)
                    kw_write_i64(&w, -1); /* log_start_offset: not tracked */
            }
            i = end;
        }
        if (q->version >= 1)
            kw_write_i32(&w, 0); /* throttle_time_ms */
        kop_reply_end(q, &w);
    }
    kop_conn_unref(conn);
    mg_free(x->parts);
    mg_free(x);
}

static void part_done(prod_ctx *x)
{
    MG_ASSERT(x->pending > 0);
    if (--x->pending == 0)
        prod_reply(x);
}

static void part_fail(prod_ctx *x, prod_part *pp, int16_t error)
{
    if (pp->error == KE_NONE)
        pp->error = error;
}

/* ---- producer state -------------------------------------------------------------------------- */

static kop_producer_state *pstate_find(kop_topic *kt, int64_t pid)
{
    for (size_t i = 0; i < kt->producer_count; i++)
        if (kt->producers[i].producer_id == pid)
            return &kt->producers[i];
    return NULL;
}

/* Producers remembered per topic: the oldest is forgotten past it (it is then accepted as new). */
#define KOP_PRODUCERS_PER_TOPIC_MAX 1024

static kop_producer_state *pstate_add(kop_topic *kt, int64_t pid)
{
    if (kt->producer_count == KOP_PRODUCERS_PER_TOPIC_MAX) {
        memmove(kt->producers, kt->producers + 1,
                (kt->producer_count - 1) * sizeof(*kt->producers));
        kt->producer_count--;
    }
    if (kt->producer_count == kt->producer_cap) {
        size_t cap = kt->producer_cap ? kt->producer_cap * 2 : 4;
        kop_producer_state *v = mg_realloc(kt->producers, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        kt->producers = v;
        kt->producer_cap = cap;
    }
    kop_producer_state *s = &kt->producers[kt->producer_count++];
    memset(s, 0, sizeof(*s));
    s->producer_id = pid;
    s->last_seq = -1;
    s->first_seq = -1;
    s->last_offset = -1;
    return s;
}

/* Decides what to do with a batch of an idempotent producer. Returns KE_NONE to store it (the
 * expected sequence then counts it), or an error; *dup_offset >= 0 with KE_NONE: a retry of
 * the last stored batch, answered with that offset. */
static int16_t pstate_check(kop_topic *kt, const kw_record_batch *kb, int64_t *dup_offset)
{
    *dup_offset = -1;
    int32_t count = kb->last_offset_delta + 1;
    kop_producer_state *s = pstate_find(kt, kb->producer_id);
    if (s == NULL) {
        s = pstate_add(kt, kb->producer_id);
        if (s == NULL)
            return KE_UNKNOWN_SERVER_ERROR;
        s->epoch = kb->producer_epoch;
        s->next_seq = kb->base_sequence;
    }
    if (kb->producer_epoch < s->epoch)
        return KE_INVALID_PRODUCER_EPOCH;
    if (kb->producer_epoch > s->epoch) {
        if (kb->base_sequence != 0)
            return KE_OUT_OF_ORDER_SEQUENCE_NUMBER;
        s->epoch = kb->producer_epoch;
        s->next_seq = 0;
        s->first_seq = s->last_seq = -1;
        s->last_offset = -1;
    }
    if (kb->base_sequence == s->next_seq) {
        s->next_seq = (int32_t)(((int64_t)s->next_seq + count) & INT32_MAX);
        s->inflight++;
        return KE_NONE;
    }
    if (s->first_seq >= 0 && kb->base_sequence == s->first_seq && s->inflight == 0) {
        *dup_offset = s->last_offset;
        return KE_NONE;
    }
    if (kb->base_sequence < s->next_seq)
        return KE_DUPLICATE_SEQUENCE_NUMBER;
    return KE_OUT_OF_ORDER_SEQUENCE_NUMBER;
}

static void pstate_stored(kop_topic *kt, const batch_op *op, int64_t base_offset, bool ok)
{
    kop_producer_state *s = pstate_find(kt, op->producer_id);
    if (s == NULL || s->epoch != op->epoch)
        return;
    if (s->inflight > 0)
        s->inflight--;
    if (ok) {
        s->first_seq = op->base_seq;
        s->last_seq = (int32_t)(((int64_t)op->base_seq + op->count - 1) & INT32_MAX);
        s->last_offset = base_offset;
    } else {
        /* Not stored: the client sends it again from its sequence. */
        s->next_seq = op->base_seq;
    }
}

/* ---- storing --------------------------------------------------------------------------------- */

static int16_t store_error(int status)
{
    switch (status) {
    case MG_EAGAIN:
    case MG_ENOSPC:
    case MG_EREADONLY:
    case MG_EIO:
        return KE_KAFKA_STORAGE_ERROR;
    case MG_EFENCED:
    case MG_ESTATE:
        return KE_NOT_LEADER_OR_FOLLOWER;
    default:
        return KE_UNKNOWN_SERVER_ERROR;
    }
}

static void batch_stored(int status, ml_position pos, int64_t index, void *arg)
{
    (void)pos;
    batch_op *op = arg;
    prod_ctx *x = op->x;
    prod_part *pp = op->pp;
    br_topic *t = op->t;
    kop_server *k = x->q->c->k;
    t->sends_inflight--;
    int64_t base = index - op->count + 1;
    if (op->producer_id >= 0 && t->kop != NULL)
        pstate_stored(t->kop, op, base, status == MG_OK);
    if (status == MG_OK) {
        t->msg_in += (uint64_t)op->count;
        t->bytes_in += op->bytes;
        if (k->m_records_in)
            mg_counter_add(k->m_records_in, (uint64_t)op->count);
        if (t->b->m_publish_latency_us)
            mg_histogram_observe(t->b->m_publish_latency_us, (uv_hrtime() - op->start_ns) / 1000);
        if (!pp->offset_set) {
            pp->base_offset = base;
            pp->offset_set = true;
        }
        br_topic_entries_added(t);
    } else {
        if (status != MG_ENOSPC && status != MG_EREADONLY)
            MG_WARN_LIMITED("kafka: storing a batch of %s failed: %s", t->name.full,
                            mg_strerror(status));
        part_fail(x, pp, store_error(status));
        if (status == MG_EFENCED && t->state == BR_TOPIC_OPEN)
            br_topic_close(t, false, NULL, NULL);
    }
    br_topic_unref(t);
    mg_free(op);
    if (--pp->batches_pending == 0)
        part_done(x);
}

/* One batch of a partition, read and converted, not stored yet. */
typedef struct prep_batch {
    mg_buf *entry;
    int32_t count;
    int64_t producer_id;
    int16_t epoch;
    int32_t base_seq;
    int64_t dup_offset; /* >= 0: a retry of the last batch stored: answered, not stored */
    bool checked;       /* counted in the producer's state (undone if a later one fails) */
} prep_batch;

/* Batches v[from, to) counted in their producers' state are not stored after all: their
 * sequences go back, last first. */
static void pstate_undo(kop_topic *kt, prep_batch *v, size_t from, size_t to)
{
    for (size_t j = to; j-- > from;) {
        if (!v[j].checked)
            continue;
        batch_op undo = { .producer_id = v[j].producer_id,
                          .epoch = v[j].epoch,
                          .base_seq = v[j].base_seq };
        pstate_stored(kt, &undo, -1, false);
        v[j].checked = false;
    }
}

static void count_refused(kop_conn *c, const char *reason)
{
    kop_server *k = c->k;
    if (k->m_proto_errors) {
        const char *labels[] = { reason };
        mg_counter *ctr = mg_metrics_counter(k->m_proto_errors, labels);
        if (ctr)
            mg_counter_inc(ctr);
    }
}

/* Reads and converts every batch of the partition's records (at most KOP_BATCHES_MAX): any
 * batch refused refuses them all, as Kafka validates a partition's records before appending
 * any. Returns KE_NONE and the batches, or the error. */
#define KOP_BATCHES_MAX 64
static int16_t part_prepare(prod_ctx *x, prod_part *pp, br_topic *t, kop_topic *kt, prep_batch *v,
                            size_t *count)
{
    kop_conn *c = x->q->c;
    size_t off = 0;
    *count = 0;
    while (off < pp->records_len) {
        if (*count == KOP_BATCHES_MAX)
            return KE_RECORD_LIST_TOO_LARGE;
        kw_record_batch kb;
        size_t blen;
        int rc;
        kw_writer legacy;
        kw_writer_init(&legacy, KW_DECOMPRESSED_BYTES_MAX);
        if (pp->records_len - off > 16 && pp->records[off + 16] < 2) {
            /* A message set of magic 0 or 1 (Produce v0-v2): all of it, one entry. */
            rc = kw_message_set_to_records(pp->records + off, pp->records_len - off,
                                           KW_DECOMPRESSED_BYTES_MAX, &legacy, &kb);
            blen = pp->records_len - off;
        } else {
            rc = kw_record_batch_parse(pp->records + off, pp->records_len - off, &kb, &blen);
        }
        int16_t error = KE_NONE;
        if (rc != MG_OK) {
            count_refused(c, rc == MG_ECORRUPT ? "crc" : "bad_batch");
            MG_INFO_LIMITED("kafka: %s from %s for %s: refused (CORRUPT_MESSAGE)",
                            rc == MG_ECORRUPT ? "a record batch whose CRC does not match"
                                              : "malformed records",
                            c->peer, t->name.full);
            error = rc == MG_ELIMIT ? KE_MESSAGE_TOO_LARGE : KE_CORRUPT_MESSAGE;
        } else if ((kb.attributes & 0x30) != 0) {
            error = KE_UNSUPPORTED_FOR_MESSAGE_FORMAT; /* transactional or control */
        } else if (blen > t->b->opts.message_bytes_max) {
            error = KE_MESSAGE_TOO_LARGE;
        } else if (kb.records_count != kb.last_offset_delta + 1 || kb.records_count < 1) {
            count_refused(c, "bad_batch");
            error = KE_CORRUPT_MESSAGE;
        }
        if (error != KE_NONE) {
            kw_writer_free(&legacy);
            return error;
        }
        off += blen;
        prep_batch *b = &v[(*count)++];
        memset(b, 0, sizeof(*b));
        b->producer_id = kb.producer_id >= 0 ? kb.producer_id : -1;
        b->epoch = kb.producer_epoch;
        b->base_seq = kb.base_sequence;
        b->dup_offset = -1;
        char pname[96];
        int64_t seq;
        if (b->producer_id >= 0) {
            snprintf(pname, sizeof(pname), "kafka-%" PRId64, kb.producer_id);
            seq = kb.base_sequence;
        } else {
            snprintf(pname, sizeof(pname), "kafka-%s", c->client_id[0] ? c->client_id : "client");
            seq = kt->seq;
            kt->seq += kb.records_count;
        }
        rc = kop_batch_to_entry(&kb, pname, seq, mg_clock_wall_ms(), &b->entry, &b->count);
        kw_writer_free(&legacy);
        if (rc != MG_OK) {
            if (rc == MG_ECORRUPT || rc == MG_EPROTO)
                count_refused(c, "bad_batch");
            return rc == MG_EPROTO || rc == MG_ECORRUPT ? KE_CORRUPT_MESSAGE
                   : rc == MG_ELIMIT                    ? KE_MESSAGE_TOO_LARGE
                                                        : KE_UNKNOWN_SERVER_ERROR;
        }
    }
    /* Idempotent producers: every batch's sequence checked before any is stored. */
    for (size_t i = 0; i < *count; i++) {
        prep_batch *b = &v[i];
        if (b->producer_id < 0)
            continue;
        kw_record_batch kb = { 0 };
        kb.producer_id = b->producer_id;
        kb.producer_epoch = b->epoch;
        kb.base_sequence = b->base_seq;
        kb.last_offset_delta = b->count - 1;
        int16_t e = pstate_check(kt, &kb, &b->dup_offset);
        if (e != KE_NONE) {
            pstate_undo(kt, v, 0, i);
            return e;
        }
        b->checked = b->dup_offset < 0;
    }
    return KE_NONE;
}

/* Stores the batches of one partition in order (each is added at once: the managed ledger
 * keeps the order of adds), once all of them were read, converted and checked. */
static void part_store(prod_ctx *x, prod_part *pp, br_topic *t)
{
    kop_topic *kt = kop_topic_of(t);
    if (kt == NULL) {
        part_fail(x, pp, KE_UNKNOWN_SERVER_ERROR);
        return;
    }
    if (t->state != BR_TOPIC_OPEN) {
        part_fail(x, pp, KE_NOT_LEADER_OR_FOLLOWER);
        return;
    }
    prep_batch v[KOP_BATCHES_MAX];
    size_t n = 0;
    int16_t error = part_prepare(x, pp, t, kt, v, &n);
    pp->batches_pending = 1; /* held while adding */
    for (size_t i = 0; i < n; i++) {
        prep_batch *b = &v[i];
        if (error != KE_NONE) {
            mg_buf_unref(b->entry);
            continue;
        }
        if (b->dup_offset >= 0) {
            if (!pp->offset_set) {
                pp->base_offset = b->dup_offset;
                pp->offset_set = true;
            }
            mg_buf_unref(b->entry);
            continue;
        }
        int rc = MG_ENOMEM;
        batch_op *op = mg_calloc(1, sizeof(*op));
        if (op != NULL) {
            op->x = x;
            op->pp = pp;
            op->t = t;
            op->producer_id = b->producer_id;
            op->epoch = b->epoch;
            op->base_seq = b->base_seq;
            op->count = b->count;
            op->bytes = mg_buf_len(b->entry);
            op->start_ns = uv_hrtime();
            rc = ml_add(t->ml, b->entry, 0, mg_buf_len(b->entry), b->count, batch_stored, op);
        }
        mg_buf_unref(b->entry);
        if (rc != MG_OK) {
            mg_free(op);
            /* This one and the ones after it are not stored: their sequences go back. */
            pstate_undo(kt, v, i, n);
            error = ml_is_terminated(t->ml) ? KE_INVALID_REQUEST : store_error(rc);
            continue;
        }
        br_topic_ref(t);
        t->sends_inflight++;
        pp->batches_pending++;
    }
    if (error != KE_NONE)
        part_fail(x, pp, error);
    if (--pp->batches_pending == 0)
        part_done(x);
}

static void part_opened(int16_t error, br_topic *t, void *arg)
{
    batch_op *hold = arg; /* carries x and pp only */
    prod_ctx *x = hold->x;
    prod_part *pp = hold->pp;
    mg_free(hold);
    if (error != KE_NONE) {
        part_fail(x, pp, error);
        part_done(x);
        return;
    }
    x->pending++; /* part_store finishes with its own part_done */
    part_store(x, pp, t);
    part_done(x);
}

static void prod_part_read(void *el, kw_str topic, kw_reader *r, void *arg)
{
    (void)arg;
    prod_part *pp = el;
    pp->topic = topic;
    pp->partition = kw_read_i32(r);
    int32_t len = kw_read_i32(r);
    if (len > 0 && (size_t)len <= kw_reader_left(r)) {
        pp->records = r->p + r->pos;
        pp->records_len = (size_t)len;
        r->pos += (size_t)len;
    } else if (len > 0) {
        r->error = MG_EPROTO;
    }
}

void kop_handle_produce(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    kw_str txn = { NULL, -1 };
    if (q->version >= 3)
        txn = kw_read_string(r);
    int16_t acks = kw_read_i16(r);
    kw_read_i32(r); /* timeout_ms */
    int32_t topics = kw_read_i32(r);
    if (kw_reader_error(r) != MG_OK || topics < 0 || topics > KOP_PRODUCE_PARTITIONS_MAX) {
        kop_conn_proto_error(c, "bad_request", "malformed Produce request");
        kop_reply_none(q);
        return;
    }
    prod_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    x->acks = acks;
    size_t cap = 0;
    kop_read_partitions(r, topics, (void **)&x->parts, &x->count, &cap, sizeof(prod_part),
                        KOP_PRODUCE_PARTITIONS_MAX, prod_part_read, x);
    if (kw_reader_error(r) != MG_OK) {
        bool oom = r->error == MG_ENOMEM;
        mg_free(x->parts);
        mg_free(x);
        if (oom)
            kop_conn_close(c, "out of memory");
        else
            kop_conn_proto_error(c, "bad_request", "malformed Produce request");
        kop_reply_none(q);
        return;
    }
    kop_conn_ref(c);
    x->pending = 1; /* held while starting */
    for (size_t i = 0; i < x->count; i++) {
        prod_part *pp = &x->parts[i];
        if (txn.len >= 0) {
            part_fail(x, pp, KE_INVALID_REQUEST); /* transactions are not served */
            continue;
        }
        if (acks != 0 && acks != 1 && acks != -1) {
            part_fail(x, pp, KE_INVALID_REQUIRED_ACKS);
            continue;
        }
        if (pp->records_len == 0) {
            part_fail(x, pp, KE_CORRUPT_MESSAGE);
            continue;
        }
        batch_op *hold = mg_calloc(1, sizeof(*hold));
        if (hold == NULL) {
            part_fail(x, pp, KE_UNKNOWN_SERVER_ERROR);
            continue;
        }
        hold->x = x;
        hold->pp = pp;
        x->pending++;
        kop_partition_open(c->k, pp->topic.ptr, (size_t)pp->topic.len, pp->partition, true,
                           part_opened, hold);
    }
    part_done(x);
}

/* ---- InitProducerId -------------------------------------------------------------------------- */

typedef struct pid_ctx {
    kop_req *q;
} pid_ctx;

static void pid_reply(kop_req *q, int16_t error, int64_t pid)
{
    kw_writer w;
    kop_reply_begin(q, &w);
    kw_write_i32(&w, 0);
    kw_write_i16(&w, error);
    kop_req_error(q, error);
    kw_write_i64(&w, error == KE_NONE ? pid : -1);
    kw_write_i16(&w, error == KE_NONE ? 0 : -1);
    kop_reply_end(q, &w);
}

static void pid_allocated(int status, int64_t id, void *arg)
{
    pid_ctx *x = arg;
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    if (status != MG_OK)
        MG_WARN_LIMITED("kafka: cannot allocate a producer id: %s", mg_strerror(status));
    pid_reply(q, status == MG_OK ? KE_NONE : KE_COORDINATOR_NOT_AVAILABLE, id);
    kop_conn_unref(conn);
    mg_free(x);
}

void kop_handle_init_producer_id(kop_req *q, kw_reader *r)
{
    kw_str txn = kw_read_string(r);
    kw_read_i32(r); /* transaction_timeout_ms */
    if (kw_reader_error(r) != MG_OK) {
        kop_conn_proto_error(q->c, "bad_request", "malformed InitProducerId request");
        kop_reply_none(q);
        return;
    }
    if (txn.len >= 0) {
        MG_INFO_LIMITED("kafka: %s asked for a transactional producer: transactions are not "
                        "served",
                        q->c->peer);
        pid_reply(q, KE_INVALID_REQUEST, -1);
        return;
    }
    pid_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        pid_reply(q, KE_UNKNOWN_SERVER_ERROR, -1);
        return;
    }
    x->q = q;
    kop_conn_ref(q->c);
    int rc = md_id_next(q->c->k->b->md, KOP_PRODUCER_ID_SEQ, pid_allocated, x);
    if (rc != MG_OK)
        pid_allocated(rc, -1, x);
}
