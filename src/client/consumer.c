/*
 * Consumers and readers (client.h): one part per partition (client_int.h), flow permits,
 * delivery, acknowledgements, negative acknowledgements, seek.
 *
 * RECEIVING
 *   A MESSAGE becomes an entry in its part's queue holding a reference to the connection's
 *   receive buffer (no copy). Delivery parses it (the checksum verified; a 0x0e02 prefix
 *   skipped by pw_payload_parse), decompresses the whole payload, and hands out its messages one
 *   by one, each with its batch index, through on_message. A message whose bit is clear in the
 *   MESSAGE's ack_set (already acknowledged in a partially acknowledged batch) is skipped, as are
 *   a reader's messages before its start id (and the start id itself unless start_inclusive).
 *   Delivery stops between two messages when the application pauses, closes or clears the
 *   queue (those take effect after on_message returns: nothing is freed under it).
 *   A checksum mismatch drops the entry and asks the broker to redeliver it; an entry that
 *   cannot be decompressed or split is acknowledged with its ValidationError (as Pulsar's
 *   clients discard it) so it does not come back forever.
 *
 * FLOW: receiver_queue_size permits after each (re)subscription; afterwards the messages of
 *   every entry handed out (or skipped) are returned in one FLOW once they reach half the
 *   queue. The broker sends no more than the permits, so the queue holds at most
 *   receiver_queue_size messages plus the last batch; entries past receiver_queue_size + 1
 *   (a broker ignoring permits) are dropped.
 *
 * ACKS are grouped per part and sent every ack_group_ms (or as soon as 1000 wait), each ACK
 *   carrying a request_id when the broker speaks protocol 17 or later (its ACK_RESPONSE is
 *   checked; a refusal is logged: the message comes again, at-least-once). Batch messages use
 * Pulsar's batch-index acks: for every entry of a flush, the ids acknowledged in that flush become
 * one MessageIdData with an ack_set where bit i set = message i still NOT acknowledged as far as
 * this flush knows; the broker ANDs the sets of successive flushes and acknowledges the entry when
 * no bit is left, so no per-entry state is kept here. An entry whose messages were all acked in one
 * flush goes without a set. Cumulative acks keep the greatest id, sent with a set marking the
 * messages after it in its batch. Acks waiting while disconnected are sent after the resubscription
 * (the broker redelivered those messages meanwhile; acking them still counts).
 *
 * NACKS wait nack_delay_ms, then the grouped acks are flushed and the distinct entries are
 *   named in REDELIVER_UNACKNOWLEDGED_MESSAGES (a batch is redelivered whole; the ack_set the
 *   broker sends with it hides the messages already acknowledged).
 *
 * SEEK: SEEK is sent on every part concerned, MESSAGEs are dropped until its answer, the queue
 *   is cleared; the broker then closes the consumer (CLOSE_CONSUMER) and the part subscribes
 *   again, at the new position. A reader resubscribes at the seek id (its subscription is not
 *   durable); otherwise at the message after the last one it handed out.
 *
 * CONSUMER STATES (the handle's, client_int.h; its life cycle is handle.c's)
 *   META -> CREATING (parts subscribing; messages of parts already subscribed wait in their
 *   queues) -> READY --close, unsubscribe--> CLOSING --answers--> DEAD (freed from a zero-delay
 *   timer, then the close or unsubscribe callback). A creation failure goes to DEAD after
 *   cb(error, NULL); client close aborts any state.
 */
#include "client/client_int.h"

#include "client/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "pulsar/compress.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pc__entry pc__entry;
struct pc__entry {
    pc__entry *next;
    mg_buf *buf; /* the receive buffer holding the payload */
    size_t off;
    size_t len;
    int64_t ledger_id;
    int64_t entry_id;
    uint32_t redelivery_count;
    uint32_t ack_words; /* 0: no ack set */
    uint64_t *ack_set;  /* inside this allocation */
    bool parsed;
    bool batched;
    Magnetar__Pulsar__MessageMetadata *md;
    mg_buf *data; /* decompressed payload (owned), or NULL: the bytes are in buf */
    const uint8_t *dp;
    size_t dlen;
    size_t dpos;
    int32_t count;
    int32_t next_index;
};

typedef struct pc__ackid {
    int64_t ledger_id;
    int64_t entry_id;
    int32_t batch_index;
    int32_t batch_size;
} pc__ackid;

typedef struct pc__nack {
    pc__ackid id;
    uint64_t due_ms;
} pc__nack;

struct pc__cons {
    pc__part base;
    pc__entry *q_head, *q_tail;
    uint32_t q_entries;
    uint32_t flow_due;
    bool draining;
    bool clear_requested;
    bool clear_return_permits;
    bool dropping; /* a SEEK in flight */
    bool reached_end;
    /* readers: where the next subscription starts, and the filter for what precedes it */
    pc_message_id start;
    bool start_inclusive;
    bool start_set; /* a concrete id (not EARLIEST / LATEST) */
    bool filter_on;
    /* grouped acks */
    pc__ackid *acks;
    uint32_t ack_count;
    uint32_t ack_cap;
    bool has_cum;
    pc__ackid cum;
    pc__timer ack_timer;
    /* nacks: a FIFO (the delay is constant, so append order is due order) */
    pc__nack *nacks;
    uint32_t nack_head;
    uint32_t nack_count;
    uint32_t nack_cap;
    pc__timer nack_timer;
    pc__timer drain_timer;
    pc__req *seek_req;
    pc__req *last_req;
    pc__req *unsub_req;
    bool unsub_ok; /* this part's UNSUBSCRIBE succeeded */
};

typedef struct pc__multi {
    bool active;
    uint32_t waiting;
    int status;
    pc_done_cb cb;
    void *arg;
} pc__multi;

struct pc_consumer {
    pc__handle base; /* first: the shared life cycle (handle.c); its parts are pc__conss */
    char subscription[PC_NAME_BYTES_MAX + 1];
    char name[PC_NAME_BYTES_MAX + 1];
    pc_sub_type type;
    pc_initial_position initial;
    int32_t priority;
    uint32_t rq_size;
    uint32_t ack_group_ms;
    uint32_t nack_delay_ms;
    bool reader;
    pc_message_id start_id;
    bool start_inclusive;
    pc_message_cb on_message;
    pc_active_cb on_active;
    pc_end_cb on_end;
    void *arg;
    pc_consumer_cb create_cb;
    void *create_arg;
    bool paused;
    bool end_reported;
    pc__multi seek;
    pc__multi unsub;
    pc__multi close; /* its waiting is unused: the handle's close_waiting counts */
    void (*last_cb)(int status, const pc_message_id *id, void *arg);
    void *last_arg;
    /* DEAD: what the free reports; a close asked during an unsubscribe hears of it too */
    pc_done_cb final_cb;
    void *final_arg;
    pc_done_cb close_after_cb;
    void *close_after_arg;
    bool close_after_unsub;
};

/* Part i of k. */
static inline pc__cons *cons_at(const pc_consumer *k, uint32_t i)
{
    return (pc__cons *)(void *)k->base.parts[i];
}

/* The consumer a part belongs to. */
static inline pc_consumer *cons_parent(const pc__cons *kc)
{
    return (pc_consumer *)(void *)kc->base.handle;
}

static void cons_drain(pc__cons *kc);
static void cons_flush_acks(pc__cons *kc);

static bool is_set(const pc_message_id *id)
{
    return id->ledger_id >= 0 && id->ledger_id != INT64_MAX;
}

/* ---- the receive queue ------------------------------------------------------------------------
 */

static void entry_free(pc__entry *e)
{
    if (e->md != NULL)
        pw_metadata_free(e->md);
    mg_buf_unref(e->data);
    mg_buf_unref(e->buf);
    mg_free(e);
}

static void send_flow(pc__cons *kc, uint32_t permits)
{
    if (kc->base.state != PC__PART_READY || permits == 0)
        return;
    Magnetar__Pulsar__CommandFlow fl = MAGNETAR__PULSAR__COMMAND_FLOW__INIT;
    fl.consumer_id = kc->base.id;
    fl.message_permits = permits;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(FLOW);
    cmd.flow = &fl;
    pc__conn_send_cmd(kc->base.conn, &cmd);
}

static void maybe_flow(pc__cons *kc)
{
    uint32_t half = cons_parent(kc)->rq_size / 2;
    if (half == 0)
        half = 1;
    if (kc->flow_due >= half && kc->base.state == PC__PART_READY) {
        send_flow(kc, kc->flow_due);
        kc->flow_due = 0;
    }
}

static uint32_t entry_messages_left(const pc__entry *e)
{
    if (!e->parsed)
        return 1;
    return (uint32_t)(e->count - e->next_index);
}

static void queue_clear_now(pc__cons *kc, bool return_permits)
{
    uint32_t permits = 0;
    while (kc->q_head != NULL) {
        pc__entry *e = kc->q_head;
        kc->q_head = e->next;
        permits += entry_messages_left(e);
        entry_free(e);
    }
    kc->q_tail = NULL;
    kc->q_entries = 0;
    if (return_permits) {
        kc->flow_due += permits;
        if (kc->flow_due > 0 && kc->base.state == PC__PART_READY) {
            send_flow(kc, kc->flow_due);
            kc->flow_due = 0;
        }
    }
}

/* Clears the queue now, or after the message being handed out (rule 2 of client_int.h). */
static void queue_clear(pc__cons *kc, bool return_permits)
{
    if (kc->draining) {
        kc->clear_requested = true;
        kc->clear_return_permits = kc->clear_return_permits || return_permits;
        return;
    }
    queue_clear_now(kc, return_permits);
}

/* ---- sending acks, nacks and redeliveries --------------------------------------------------- */

/* Acks are fire-and-forget requests that may outlive their part: the answer names the part by
 * its id (looked up again) and only a refusal is logged. */
static void ack_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    if (status == MG_OK || status == MG_ECONNECTION || status == MG_ECLOSED)
        return;
    pc__part *p = pc__idmap_get(r->conn->c, (uint64_t)(uintptr_t)r->arg);
    const char *topic = p != NULL ? p->topic : "?";
    if (status == MG_EPERM && cmd != NULL && cmd->type == PC__T(ACK_RESPONSE))
        MG_WARN("client: consumer on %s: the broker refused an ack: %s", topic,
                cmd->ack_response->message != NULL ? cmd->ack_response->message : "");
    else
        MG_WARN("client: consumer on %s: ack: %s", topic, mg_strerror(status));
}

static int ackid_cmp(const void *a, const void *b)
{
    const pc__ackid *x = a, *y = b;
    if (x->ledger_id != y->ledger_id)
        return x->ledger_id < y->ledger_id ? -1 : 1;
    if (x->entry_id != y->entry_id)
        return x->entry_id < y->entry_id ? -1 : 1;
    return x->batch_index < y->batch_index ? -1 : x->batch_index > y->batch_index;
}

static uint32_t set_words(int32_t batch_size)
{
    return (uint32_t)((batch_size + 63) / 64);
}

/* Sends one ACK of type with ids[0, n) (each with its own ack set, may be NULL). */
static void send_ack_cmd(pc__cons *kc, int ack_type, Magnetar__Pulsar__MessageIdData **ids,
                         size_t n, int validation_error)
{
    uint64_t rid = pc__next_request_id(kc->base.c);
    /* Ack receipts (request_id, ACK_RESPONSE) exist from protocol 17 on. */
    bool receipt = kc->base.conn->protocol_version >= 17;
    Magnetar__Pulsar__CommandAck ack = MAGNETAR__PULSAR__COMMAND_ACK__INIT;
    ack.consumer_id = kc->base.id;
    ack.ack_type = (Magnetar__Pulsar__CommandAck__AckType)ack_type;
    ack.n_message_id = n;
    ack.message_id = ids;
    ack.has_request_id = receipt;
    ack.request_id = rid;
    if (validation_error >= 0) {
        ack.has_validation_error = 1;
        ack.validation_error = (Magnetar__Pulsar__CommandAck__ValidationError)validation_error;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(ACK);
    cmd.ack = &ack;
    int rc = receipt ? pc__conn_request(kc->base.conn, &cmd, rid, ack_answered,
                                        (void *)(uintptr_t)kc->base.id, NULL)
                     : pc__conn_send_cmd(kc->base.conn, &cmd);
    if (rc != MG_OK)
        MG_WARN("client: consumer on %s: cannot send an ack: %s", kc->base.topic, mg_strerror(rc));
}

/* Sends the grouped individual acks (READY only): one MessageIdData per entry. */
static void flush_individual(pc__cons *kc)
{
    if (kc->ack_count == 0)
        return;
    qsort(kc->acks, kc->ack_count, sizeof(pc__ackid), ackid_cmp);
    size_t cap = PC_ACK_IDS_PER_COMMAND;
    Magnetar__Pulsar__MessageIdData *data = mg_calloc(cap, sizeof(*data));
    Magnetar__Pulsar__MessageIdData **ptrs = mg_calloc(cap, sizeof(*ptrs));
    uint64_t *words = mg_calloc(cap * PC_ACK_SET_WORDS_MAX, sizeof(uint64_t));
    if (data == NULL || ptrs == NULL || words == NULL) {
        mg_free(data);
        mg_free(ptrs);
        mg_free(words);
        return; /* kept for the next flush */
    }
    size_t n = 0;
    uint32_t i = 0;
    while (i < kc->ack_count) {
        const pc__ackid *a = &kc->acks[i];
        Magnetar__Pulsar__MessageIdData *d = &data[n];
        magnetar__pulsar__message_id_data__init(d);
        d->ledger_id = (uint64_t)a->ledger_id;
        d->entry_id = (uint64_t)a->entry_id;
        uint32_t j = i + 1;
        while (j < kc->ack_count && kc->acks[j].ledger_id == a->ledger_id &&
               kc->acks[j].entry_id == a->entry_id)
            j++;
        bool whole = false;
        for (uint32_t x = i; x < j; x++)
            if (kc->acks[x].batch_index < 0 || kc->acks[x].batch_size <= 0)
                whole = true;
        uint32_t nw = set_words(a->batch_size);
        if (!whole && nw > PC_ACK_SET_WORDS_MAX) {
            MG_WARN("client: consumer on %s: batch %lld:%lld of %d messages is too large for "
                    "batch-index acks: not acknowledged",
                    kc->base.topic, (long long)a->ledger_id, (long long)a->entry_id,
                    (int)a->batch_size);
            i = j;
            continue;
        }
        if (!whole) {
            uint64_t *w = &words[n * PC_ACK_SET_WORDS_MAX];
            for (uint32_t b = 0; b < nw; b++)
                w[b] = ~0ull;
            if (a->batch_size % 64 != 0)
                w[nw - 1] = (1ull << (a->batch_size % 64)) - 1;
            for (uint32_t x = i; x < j; x++) {
                int32_t bi = kc->acks[x].batch_index;
                if (bi < a->batch_size)
                    w[bi / 64] &= ~(1ull << (bi % 64));
            }
            bool any = false;
            for (uint32_t b = 0; b < nw; b++)
                any = any || w[b] != 0;
            if (any) {
                d->n_ack_set = nw;
                d->ack_set = (int64_t *)w;
            }
        }
        ptrs[n] = d;
        n++;
        i = j;
        if (n == cap) {
            send_ack_cmd(kc, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Individual, ptrs, n, -1);
            n = 0;
        }
    }
    if (n > 0)
        send_ack_cmd(kc, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Individual, ptrs, n, -1);
    kc->ack_count = 0;
    mg_free(data);
    mg_free(ptrs);
    mg_free(words);
}

static void flush_cumulative(pc__cons *kc)
{
    if (!kc->has_cum)
        return;
    kc->has_cum = false;
    Magnetar__Pulsar__MessageIdData d = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    d.ledger_id = (uint64_t)kc->cum.ledger_id;
    d.entry_id = (uint64_t)kc->cum.entry_id;
    uint64_t w[PC_ACK_SET_WORDS_MAX];
    int32_t bi = kc->cum.batch_index, bs = kc->cum.batch_size;
    if (bi >= 0 && bs > 0 && bi < bs - 1 && set_words(bs) <= PC_ACK_SET_WORDS_MAX) {
        uint32_t nw = set_words(bs);
        memset(w, 0, sizeof(w));
        for (int32_t x = bi + 1; x < bs; x++)
            w[x / 64] |= 1ull << (x % 64);
        d.n_ack_set = nw;
        d.ack_set = (int64_t *)w;
    }
    Magnetar__Pulsar__MessageIdData *p = &d;
    send_ack_cmd(kc, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Cumulative, &p, 1, -1);
}

static void cons_flush_acks(pc__cons *kc)
{
    pc__timer_stop(kc->base.c, &kc->ack_timer);
    if (kc->base.state != PC__PART_READY)
        return;
    flush_individual(kc);
    flush_cumulative(kc);
}

static void ack_fired(pc__timer *t)
{
    cons_flush_acks(MG_CONTAINER_OF(t, pc__cons, ack_timer));
}

/* REDELIVER_UNACKNOWLEDGED_MESSAGES with ids[0, n) (n 0: everything). */
static void send_redeliver(pc__cons *kc, const pc__ackid *ids, size_t n)
{
    if (kc->base.state != PC__PART_READY)
        return;
    size_t done = 0;
    do {
        size_t k = n - done < PC_ACK_IDS_PER_COMMAND ? n - done : PC_ACK_IDS_PER_COMMAND;
        Magnetar__Pulsar__MessageIdData data[64];
        Magnetar__Pulsar__MessageIdData *ptrs[64];
        Magnetar__Pulsar__MessageIdData *dyn = NULL, **dynp = NULL;
        Magnetar__Pulsar__MessageIdData *d = data, **pp = ptrs;
        if (k > 64) {
            dyn = mg_calloc(k, sizeof(*dyn));
            dynp = mg_calloc(k, sizeof(*dynp));
            if (dyn == NULL || dynp == NULL) {
                mg_free(dyn);
                mg_free(dynp);
                return;
            }
            d = dyn;
            pp = dynp;
        }
        for (size_t i = 0; i < k; i++) {
            magnetar__pulsar__message_id_data__init(&d[i]);
            d[i].ledger_id = (uint64_t)ids[done + i].ledger_id;
            d[i].entry_id = (uint64_t)ids[done + i].entry_id;
            pp[i] = &d[i];
        }
        Magnetar__Pulsar__CommandRedeliverUnacknowledgedMessages rd =
            MAGNETAR__PULSAR__COMMAND_REDELIVER_UNACKNOWLEDGED_MESSAGES__INIT;
        rd.consumer_id = kc->base.id;
        rd.n_message_ids = k;
        rd.message_ids = pp;
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = PC__T(REDELIVER_UNACKNOWLEDGED_MESSAGES);
        cmd.redeliver_unacknowledged_messages = &rd;
        pc__conn_send_cmd(kc->base.conn, &cmd);
        mg_free(dyn);
        mg_free(dynp);
        done += k;
    } while (done < n);
}

static void nack_send_due(pc__cons *kc, uint64_t now_ms, bool all)
{
    uint32_t n = 0;
    while (n < kc->nack_count &&
           (all || kc->nacks[(kc->nack_head + n) % kc->nack_cap].due_ms <= now_ms))
        n++;
    if (n == 0)
        return;
    pc__ackid *ids = mg_calloc(n, sizeof(*ids));
    if (ids == NULL)
        return;
    for (uint32_t i = 0; i < n; i++) {
        ids[i] = kc->nacks[(kc->nack_head + i) % kc->nack_cap].id;
        ids[i].batch_index = -1;
    }
    kc->nack_head = (kc->nack_head + n) % kc->nack_cap;
    kc->nack_count -= n;
    qsort(ids, n, sizeof(*ids), ackid_cmp);
    uint32_t u = 0;
    for (uint32_t i = 0; i < n; i++)
        if (u == 0 || ids[u - 1].ledger_id != ids[i].ledger_id ||
            ids[u - 1].entry_id != ids[i].entry_id)
            ids[u++] = ids[i];
    /* The broker must know what was acknowledged before it redelivers a batch. */
    cons_flush_acks(kc);
    send_redeliver(kc, ids, u);
    mg_free(ids);
}

static void nack_arm(pc__cons *kc)
{
    if (kc->nack_count == 0) {
        pc__timer_stop(kc->base.c, &kc->nack_timer);
        return;
    }
    pc__timer_start_by(kc->base.c, &kc->nack_timer, kc->nacks[kc->nack_head].due_ms);
}

static void nack_fired(pc__timer *t)
{
    pc__cons *kc = MG_CONTAINER_OF(t, pc__cons, nack_timer);
    nack_send_due(kc, pc__now_ms(kc->base.c), false);
    nack_arm(kc);
}

/* Acknowledges a broken entry so the broker does not send it again (Pulsar discards them). */
static void discard_entry(pc__cons *kc, const pc__entry *e, int validation_error)
{
    if (kc->base.state != PC__PART_READY)
        return;
    Magnetar__Pulsar__MessageIdData d = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    d.ledger_id = (uint64_t)e->ledger_id;
    d.entry_id = (uint64_t)e->entry_id;
    Magnetar__Pulsar__MessageIdData *p = &d;
    send_ack_cmd(kc, MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Individual, &p, 1, validation_error);
}

/* ---- delivery
 * ------------------------------------------------------------------------------------ */

static int entry_parse(pc__cons *kc, pc__entry *e)
{
    const uint8_t *p = mg_buf_data(e->buf) + e->off;
    pw_payload pl;
    int rc = pw_payload_parse(p, e->len, true, &pl);
    if (rc == MG_ECORRUPT) {
        MG_WARN("client: consumer on %s: checksum mismatch in %lld:%lld: asking again",
                kc->base.topic, (long long)e->ledger_id, (long long)e->entry_id);
        pc__ackid id = { e->ledger_id, e->entry_id, -1, 0 };
        send_redeliver(kc, &id, 1);
        return rc;
    }
    if (rc == MG_OK)
        rc = pw_metadata_unpack(p, &pl, &e->md);
    if (rc != MG_OK) {
        MG_WARN("client: consumer on %s: entry %lld:%lld does not parse (%s): discarded",
                kc->base.topic, (long long)e->ledger_id, (long long)e->entry_id, mg_strerror(rc));
        if (rc != MG_ENOMEM)
            discard_entry(kc, e,
                          MAGNETAR__PULSAR__COMMAND_ACK__VALIDATION_ERROR__BatchDeSerializeError);
        return rc;
    }
    e->dp = p + pl.data_off;
    e->dlen = pl.data_len;
    if (e->md->has_compression && e->md->compression != MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE) {
        rc = pw_decompress((int)e->md->compression, e->dp, e->dlen, e->md->uncompressed_size,
                           &e->data);
        if (rc != MG_OK) {
            MG_WARN("client: consumer on %s: entry %lld:%lld does not decompress (%s): discarded",
                    kc->base.topic, (long long)e->ledger_id, (long long)e->entry_id,
                    mg_strerror(rc));
            if (rc != MG_ENOMEM)
                discard_entry(kc, e,
                              MAGNETAR__PULSAR__COMMAND_ACK__VALIDATION_ERROR__DecompressionError);
            return rc;
        }
        e->dp = mg_buf_data(e->data);
        e->dlen = mg_buf_len(e->data);
    }
    e->batched = e->md->has_num_messages_in_batch;
    e->count = e->batched ? e->md->num_messages_in_batch : 1;
    if (e->count < 1)
        e->count = 1;
    e->parsed = true;
    return MG_OK;
}

/* Whether a reader must skip id (before its start, or the start itself when exclusive). */
static bool reader_skips(pc__cons *kc, const pc_message_id *id)
{
    if (!kc->filter_on)
        return false;
    const pc_message_id *s = &kc->start;
    if (id->ledger_id != s->ledger_id || id->entry_id != s->entry_id) {
        bool before = id->ledger_id < s->ledger_id ||
                      (id->ledger_id == s->ledger_id && id->entry_id < s->entry_id);
        if (!before)
            kc->filter_on = false;
        return before;
    }
    if (s->batch_index < 0 || id->batch_index < 0)
        return !kc->start_inclusive;
    if (id->batch_index < s->batch_index)
        return true;
    if (id->batch_index == s->batch_index)
        return !kc->start_inclusive;
    return false;
}

/* Hands out (or skips) the next message of e. */
static void deliver_one(pc__cons *kc, pc__entry *e)
{
    pc_consumer *k = cons_parent(kc);
    int32_t idx = e->next_index++;
    pw_batch_msg bm = { NULL, NULL, 0 };
    const Magnetar__Pulsar__SingleMessageMetadata *smm = NULL;
    const uint8_t *payload;
    size_t payload_len;
    Magnetar__Pulsar__KeyValue **kvs;
    size_t nkv;
    const char *key;
    int64_t event_time;
    if (e->batched) {
        if (pw_batch_next(e->dp, e->dlen, &e->dpos, &bm) != MG_OK) {
            MG_WARN("client: consumer on %s: batch %lld:%lld is malformed at message %d",
                    kc->base.topic, (long long)e->ledger_id, (long long)e->entry_id, (int)idx);
            e->next_index = e->count;
            discard_entry(kc, e,
                          MAGNETAR__PULSAR__COMMAND_ACK__VALIDATION_ERROR__BatchDeSerializeError);
            return;
        }
        smm = bm.smm;
        payload = bm.payload;
        payload_len = bm.payload_len;
        kvs = smm->properties;
        nkv = smm->n_properties;
        key = smm->partition_key;
        event_time = smm->has_event_time ? (int64_t)smm->event_time : 0;
    } else {
        payload = e->dp;
        payload_len = e->dlen;
        kvs = e->md->properties;
        nkv = e->md->n_properties;
        key = e->md->partition_key;
        event_time = e->md->has_event_time ? (int64_t)e->md->event_time : 0;
    }
    pc_message_id id = { e->ledger_id, e->entry_id, e->batched ? idx : -1,
                         e->batched ? e->count : 0, kc->base.partition };
    bool skip = smm != NULL && smm->has_compacted_out && smm->compacted_out;
    if (e->ack_words > 0 && e->batched && (uint32_t)idx < e->ack_words * 64u &&
        ((e->ack_set[idx / 64] >> (idx % 64)) & 1u) == 0)
        skip = true; /* acknowledged already */
    if (!skip && k->reader && reader_skips(kc, &id))
        skip = true;
    if (!skip) {
        pc_property stack_props[16];
        pc_property *props = stack_props;
        if (nkv > 16) {
            props = mg_calloc(nkv, sizeof(*props));
            if (props == NULL)
                nkv = 0, props = stack_props;
        }
        for (size_t i = 0; i < nkv; i++) {
            props[i].key = kvs[i]->key;
            props[i].value = kvs[i]->value;
        }
        pc_received r;
        memset(&r, 0, sizeof(r));
        r.id = id;
        r.payload = payload;
        r.payload_len = payload_len;
        r.key = key;
        r.key_len = key != NULL ? strlen(key) : 0;
        r.properties = props;
        r.property_count = nkv;
        r.publish_time_ms = (int64_t)e->md->publish_time;
        r.event_time_ms = event_time;
        r.redelivery_count = e->redelivery_count;
        r.producer_name = e->md->producer_name;
        r.topic = kc->base.topic;
        if (k->reader) {
            kc->start = id;
            kc->start_inclusive = false;
            kc->start_set = true;
            kc->filter_on = false;
        }
        k->on_message(k, &r, k->arg);
        if (props != stack_props)
            mg_free(props);
    }
    pw_batch_msg_free(&bm);
}

static bool can_deliver(const pc__cons *kc)
{
    const pc_consumer *k = cons_parent(kc);
    return k->base.state == PC__HANDLE_READY && !k->paused && kc->base.state == PC__PART_READY &&
           !kc->dropping;
}

static void entry_pop(pc__cons *kc)
{
    pc__entry *e = kc->q_head;
    kc->q_head = e->next;
    if (kc->q_head == NULL)
        kc->q_tail = NULL;
    kc->q_entries--;
    kc->flow_due += e->parsed ? (uint32_t)e->count : 1;
    entry_free(e);
}

static void cons_drain(pc__cons *kc)
{
    if (kc->draining)
        return;
    kc->draining = true;
    for (;;) {
        if (kc->clear_requested) {
            bool permits = kc->clear_return_permits;
            kc->clear_requested = false;
            kc->clear_return_permits = false;
            queue_clear_now(kc, permits);
        }
        if (kc->q_head == NULL || !can_deliver(kc))
            break;
        pc__entry *e = kc->q_head;
        if (!e->parsed && entry_parse(kc, e) != MG_OK) {
            entry_pop(kc);
            maybe_flow(kc);
            continue;
        }
        if (e->next_index < e->count) {
            deliver_one(kc, e);
            continue;
        }
        entry_pop(kc);
        maybe_flow(kc);
    }
    kc->draining = false;
}

static void drain_fired(pc__timer *t)
{
    cons_drain(MG_CONTAINER_OF(t, pc__cons, drain_timer));
}

void pc__cons_on_message(pc__part *part, const Magnetar__Pulsar__CommandMessage *m, mg_buf *buf,
                         size_t off, size_t len)
{
    pc__cons *kc = (pc__cons *)part;
    pc_consumer *k = cons_parent(kc);
    if (part->state != PC__PART_READY || kc->dropping || k->base.state == PC__HANDLE_CLOSING ||
        k->base.state == PC__HANDLE_DEAD)
        return;
    if (kc->q_entries > k->rq_size) {
        MG_WARN("client: consumer on %s: the broker sent past the permits: entry dropped",
                part->topic);
        return;
    }
    uint32_t words = m->n_ack_set <= PC_ACK_SET_WORDS_MAX ? (uint32_t)m->n_ack_set : 0;
    pc__entry *e = mg_calloc(1, sizeof(*e) + words * sizeof(uint64_t));
    if (e == NULL) {
        MG_WARN("client: consumer on %s: out of memory: entry dropped", part->topic);
        return;
    }
    e->buf = mg_buf_ref(buf);
    e->off = off;
    e->len = len;
    e->ledger_id = (int64_t)m->message_id->ledger_id;
    e->entry_id = (int64_t)m->message_id->entry_id;
    e->redelivery_count = m->has_redelivery_count ? m->redelivery_count : 0;
    if (words > 0) {
        e->ack_set = (uint64_t *)(void *)(e + 1);
        memcpy(e->ack_set, m->ack_set, words * sizeof(uint64_t));
        e->ack_words = words;
    }
    if (kc->q_tail != NULL)
        kc->q_tail->next = e;
    else
        kc->q_head = e;
    kc->q_tail = e;
    kc->q_entries++;
    cons_drain(kc);
}

/* ---- subscription ---------------------------------------------------------------------------- */

static void subscribe_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__cons *kc = r->arg;
    pc__part *part = &kc->base;
    part->req = NULL;
    if (!pc__part_register_answered(part, status, cmd, PC__T(SUCCESS)))
        return;
    queue_clear(kc, false);
    kc->flow_due = 0;
    kc->dropping = false;
    kc->filter_on = cons_parent(kc)->reader && kc->start_set;
    pc__part_ready(part);
    if (part->state != PC__PART_READY)
        return;
    send_flow(kc, cons_parent(kc)->rq_size);
    cons_flush_acks(kc);
}

static int cons_register(pc__part *part)
{
    pc__cons *kc = (pc__cons *)part;
    pc_consumer *k = cons_parent(kc);
    uint64_t rid = pc__next_request_id(part->c);
    Magnetar__Pulsar__CommandSubscribe s = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
    s.topic = part->topic;
    s.subscription = k->subscription;
    s.sub_type = (Magnetar__Pulsar__CommandSubscribe__SubType)k->type;
    s.consumer_id = part->id;
    s.request_id = rid;
    s.consumer_name = k->name;
    if (k->priority != 0) {
        s.has_priority_level = 1;
        s.priority_level = k->priority;
    }
    s.has_initial_position = 1;
    s.initial_position = k->initial == PC_INITIAL_EARLIEST
                             ? MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest
                             : MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Latest;
    Magnetar__Pulsar__MessageIdData start = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    if (k->reader) {
        s.has_durable = 1;
        s.durable = 0;
        start.ledger_id = (uint64_t)kc->start.ledger_id;
        start.entry_id = (uint64_t)kc->start.entry_id;
        if (kc->start.batch_index >= 0) {
            start.has_batch_index = 1;
            start.batch_index = kc->start.batch_index;
        }
        s.start_message_id = &start;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(SUBSCRIBE);
    cmd.subscribe = &s;
    return pc__conn_request(part->conn, &cmd, rid, subscribe_answered, kc, &part->req);
}

static void cons_detached(pc__part *part)
{
    pc__cons *kc = (pc__cons *)part;
    queue_clear(kc, false);
    kc->flow_due = 0;
    kc->dropping = false;
    /* Everything unacknowledged comes again after the resubscription. */
    kc->nack_count = 0;
    kc->nack_head = 0;
    pc__timer_stop(part->c, &kc->nack_timer);
    pc__timer_stop(part->c, &kc->ack_timer);
}

static const pc__part_ops cons_ops = {
    .register_on = cons_register,
    .detached = cons_detached,
    .created = pc__handle_part_created,
};

void pc__cons_on_frame(pc__part *part, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__cons *kc = (pc__cons *)part;
    pc_consumer *k = cons_parent(kc);
    if (part->state != PC__PART_READY)
        return;
    switch (cmd->type) {
    case PC__T(CLOSE_CONSUMER):
        MG_DEBUG("client: the broker closed consumer %llu on %s: subscribing again",
                 (unsigned long long)part->id, part->topic);
        pc__part_reconnect(part);
        break;
    case PC__T(ACTIVE_CONSUMER_CHANGE):
        if (k->on_active != NULL && k->base.state == PC__HANDLE_READY)
            k->on_active(k,
                         cmd->active_consumer_change->has_is_active &&
                             cmd->active_consumer_change->is_active,
                         k->arg);
        break;
    case PC__T(REACHED_END_OF_TOPIC):
        if (!kc->reached_end) {
            kc->reached_end = true;
            uint32_t ended = 0;
            for (uint32_t i = 0; i < k->base.nparts; i++)
                ended += cons_at(k, i)->reached_end;
            if (ended == k->base.nparts && !k->end_reported && k->on_end != NULL &&
                k->base.state == PC__HANDLE_READY) {
                k->end_reported = true;
                k->on_end(k, k->arg);
            }
        }
        break;
    default:
        break;
    }
}

/* ---- consumer life cycle -----------------------------------------------------------------------
 */

static void cons_cancel_reqs(pc__cons *kc)
{
    pc__req **reqs[] = { &kc->seek_req, &kc->last_req, &kc->unsub_req, &kc->base.close_req };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
        if (*reqs[i] != NULL) {
            pc__req_cancel(*reqs[i]);
            *reqs[i] = NULL;
        }
}

static void cons_free(pc__cons *kc)
{
    pc_client *c = kc->base.c;
    cons_cancel_reqs(kc);
    pc__part_fini(&kc->base);
    kc->draining = false;
    queue_clear_now(kc, false);
    pc__timer_unregister(c, &kc->ack_timer);
    pc__timer_unregister(c, &kc->nack_timer);
    pc__timer_unregister(c, &kc->drain_timer);
    mg_free(kc->acks);
    mg_free(kc->nacks);
    mg_free(kc);
}

static void cons_part_free(pc__part *part)
{
    cons_free((pc__cons *)part);
}

/* release: tell the broker about a part still registered (not on client close). */
static void cons_part_stop(pc__part *part, bool release)
{
    pc__cons *kc = (pc__cons *)part;
    cons_cancel_reqs(kc);
    if (release && !kc->unsub_ok)
        pc__part_release(part);
    else
        pc__part_stop(part);
    pc__timer_stop(part->c, &kc->ack_timer);
    pc__timer_stop(part->c, &kc->nack_timer);
    pc__timer_stop(part->c, &kc->drain_timer);
}

static int cons_part_setup(pc__handle *h, pc__part *part)
{
    pc_consumer *k = (pc_consumer *)h;
    pc__cons *kc = (pc__cons *)part;
    if (k->reader) {
        kc->start = k->start_id;
        kc->start_inclusive = k->start_inclusive;
        kc->start_set = is_set(&k->start_id);
    }
    if (pc__timer_register(h->c, &kc->ack_timer, ack_fired) != MG_OK ||
        pc__timer_register(h->c, &kc->nack_timer, nack_fired) != MG_OK ||
        pc__timer_register(h->c, &kc->drain_timer, drain_fired) != MG_OK)
        return MG_ENOMEM;
    return MG_OK;
}

/* Before CLOSE_CONSUMER: nothing more is handed out, grouped acks go first. */
static void cons_part_closing(pc__part *part)
{
    pc__cons *kc = (pc__cons *)part;
    queue_clear(kc, false);
    if (part->state == PC__PART_READY)
        cons_flush_acks(kc);
}

static void consumer_report_created(pc__handle *h, int status)
{
    pc_consumer *k = (pc_consumer *)h;
    if (status != MG_OK) {
        k->create_cb(status, NULL, k->create_arg);
        return;
    }
    k->create_cb(MG_OK, k, k->create_arg);
    /* Parts subscribed earlier may hold messages: hand them out from the loop. */
    if (h->state == PC__HANDLE_READY)
        for (uint32_t i = 0; i < h->nparts; i++)
            if (cons_at(k, i)->q_head != NULL)
                pc__timer_start(h->c, &cons_at(k, i)->drain_timer, 0);
}

/* Stops everything; the zero-delay timer frees and calls cb(status, arg). */
static void consumer_kill(pc_consumer *k, int status, pc_done_cb cb, void *arg)
{
    k->final_cb = cb;
    k->final_arg = arg;
    pc__handle_kill(&k->base, status);
}

static void consumer_closed(pc__handle *h)
{
    pc_consumer *k = (pc_consumer *)h;
    consumer_kill(k, MG_OK, k->close.cb, k->close.arg);
}

static void consumer_dead(pc__handle *h)
{
    pc_consumer *k = (pc_consumer *)h;
    pc_done_cb cb = k->final_cb;
    void *arg = k->final_arg;
    int status = h->final_status;
    pc_done_cb cb2 = k->close_after_cb;
    void *arg2 = k->close_after_arg;
    pc__handle_free(h);
    if (cb != NULL)
        cb(status, arg);
    if (cb2 != NULL)
        cb2(MG_OK, arg2);
}

static void consumer_aborted(pc__handle *h, pc__handle_state was);

static const pc__handle_ops consumer_ops = {
    .part_kind = PC__KIND_CONSUMER,
    .part_size = sizeof(pc__cons),
    .part_ops = &cons_ops,
    .part_setup = cons_part_setup,
    .part_free = cons_part_free,
    .part_stop = cons_part_stop,
    .part_closing = cons_part_closing,
    .report_created = consumer_report_created,
    .closed = consumer_closed,
    .dead = consumer_dead,
    .aborted = consumer_aborted,
};

static void random_name(pc_client *c, const char *prefix, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s%010llx", prefix, (unsigned long long)(pc__random(c) & 0xFFFFFFFFFFull));
}

int pc_subscribe(pc_client *c, const pc_consumer_opts *opts, pc_consumer_cb cb, void *arg)
{
    if (c == NULL || opts == NULL || cb == NULL || opts->topic == NULL || opts->on_message == NULL)
        return MG_EINVAL;
    pw_topic_name tn;
    MG_TRY(pc__handle_check(c, opts->topic, &tn));
    if ((!opts->reader && (opts->subscription == NULL || opts->subscription[0] == '\0')) ||
        (opts->subscription != NULL && strlen(opts->subscription) > PC_NAME_BYTES_MAX) ||
        (opts->consumer_name != NULL && strlen(opts->consumer_name) > PC_NAME_BYTES_MAX) ||
        (int)opts->type < PC_SUB_EXCLUSIVE || (int)opts->type > PC_SUB_KEY_SHARED ||
        (opts->initial_position != PC_INITIAL_LATEST &&
         opts->initial_position != PC_INITIAL_EARLIEST) ||
        opts->receiver_queue_size > PC_RECEIVER_QUEUE_MAX)
        return MG_EINVAL;
    pc_consumer *k = mg_calloc(1, sizeof(*k));
    if (k == NULL)
        return MG_ENOMEM;
    if (opts->subscription != NULL && opts->subscription[0] != '\0')
        snprintf(k->subscription, sizeof(k->subscription), "%s", opts->subscription);
    else
        random_name(c, "reader-", k->subscription, sizeof(k->subscription));
    if (opts->consumer_name != NULL && opts->consumer_name[0] != '\0')
        snprintf(k->name, sizeof(k->name), "%s", opts->consumer_name);
    else
        random_name(c, "consumer-", k->name, sizeof(k->name));
    k->reader = opts->reader;
    k->type = opts->reader ? PC_SUB_EXCLUSIVE : opts->type;
    k->initial = opts->initial_position;
    k->priority = opts->priority_level;
    k->rq_size = opts->receiver_queue_size != 0 ? opts->receiver_queue_size : 1000;
    k->ack_group_ms = opts->ack_group_ms != 0 ? opts->ack_group_ms : 100;
    k->nack_delay_ms = opts->nack_delay_ms != 0 ? opts->nack_delay_ms : 1000;
    k->start_id = opts->start_id;
    k->start_inclusive = opts->start_inclusive;
    /* A reader's position is its start id; the initial position only matters for EARLIEST /
     * LATEST. With a concrete id it is Earliest: a broker that positions the new cursor by the
     * initial position before moving it to the start id (Magnetar's does) could not move it
     * back from Latest. */
    if (k->reader)
        k->initial =
            opts->start_id.ledger_id == INT64_MAX ? PC_INITIAL_LATEST : PC_INITIAL_EARLIEST;
    k->on_message = opts->on_message;
    k->on_active = opts->on_active;
    k->on_end = opts->on_end;
    k->arg = opts->arg;
    k->create_cb = cb;
    k->create_arg = arg;
    if (pc__handle_start(&k->base, c, &consumer_ops, tn.full, &c->consumers) != MG_OK) {
        mg_free(k);
        return MG_ENOMEM;
    }
    return MG_OK;
}

/* ---- acknowledgements
 * ---------------------------------------------------------------------------- */

/* The part an id belongs to, or NULL (a partition this consumer does not have). */
static pc__cons *part_of(pc_consumer *k, const pc_message_id *id)
{
    if (k->base.nparts == 1)
        return cons_at(k, 0);
    if (id->partition < 0 || (uint32_t)id->partition >= k->base.nparts)
        return NULL;
    return cons_at(k, id->partition);
}

static bool consumer_usable(const pc_consumer *k)
{
    return k->base.state == PC__HANDLE_READY && !k->base.c->closing;
}

/* The part an ack or nack of id goes to, in *kc: MG_EINVAL for no consumer, an id that names no
 * entry or a partition this consumer does not have; MG_ECLOSED when the consumer is not ready. */
static int ack_part(pc_consumer *k, const pc_message_id *id, pc__cons **kc)
{
    if (k == NULL || id == NULL || id->ledger_id < 0 || id->entry_id < 0)
        return MG_EINVAL;
    if (!consumer_usable(k))
        return MG_ECLOSED;
    *kc = part_of(k, id);
    return *kc != NULL ? MG_OK : MG_EINVAL;
}

int pc_ack(pc_consumer *k, const pc_message_id *id)
{
    pc__cons *kc;
    MG_TRY(ack_part(k, id, &kc));
    if (kc->ack_count >= PC_ACK_PENDING_MAX) {
        cons_flush_acks(kc);
        if (kc->ack_count >= PC_ACK_PENDING_MAX) {
            MG_WARN("client: consumer on %s: %u acks waiting while disconnected: dropped (the "
                    "broker redelivers those messages)",
                    kc->base.topic, (unsigned)kc->ack_count);
            kc->ack_count = 0;
        }
    }
    if (kc->ack_count == kc->ack_cap) {
        uint32_t ncap = kc->ack_cap == 0 ? 64 : kc->ack_cap * 2;
        if (ncap > PC_ACK_PENDING_MAX)
            ncap = PC_ACK_PENDING_MAX;
        pc__ackid *na = mg_realloc(kc->acks, ncap * sizeof(*na));
        if (na == NULL)
            return MG_ENOMEM;
        kc->acks = na;
        kc->ack_cap = ncap;
    }
    kc->acks[kc->ack_count++] =
        (pc__ackid){ id->ledger_id, id->entry_id, id->batch_index, id->batch_size };
    if (kc->ack_count >= PC_ACK_IDS_PER_COMMAND)
        cons_flush_acks(kc);
    else
        pc__timer_start_by(k->base.c, &kc->ack_timer, pc__now_ms(k->base.c) + k->ack_group_ms);
    return MG_OK;
}

int pc_ack_cumulative(pc_consumer *k, const pc_message_id *id)
{
    if (k != NULL && k->type != PC_SUB_EXCLUSIVE && k->type != PC_SUB_FAILOVER)
        return MG_EINVAL;
    pc__cons *kc;
    MG_TRY(ack_part(k, id, &kc));
    pc_message_id cur = { kc->cum.ledger_id, kc->cum.entry_id, kc->cum.batch_index, 0, -1 };
    if (!kc->has_cum || pc_message_id_cmp(id, &cur) > 0) {
        kc->cum = (pc__ackid){ id->ledger_id, id->entry_id, id->batch_index, id->batch_size };
        kc->has_cum = true;
    }
    pc__timer_start_by(k->base.c, &kc->ack_timer, pc__now_ms(k->base.c) + k->ack_group_ms);
    return MG_OK;
}

int pc_nack(pc_consumer *k, const pc_message_id *id)
{
    pc__cons *kc;
    MG_TRY(ack_part(k, id, &kc));
    if (kc->nack_count == PC_NACK_PENDING_MAX)
        nack_send_due(kc, 0, true);
    if (kc->nack_count == kc->nack_cap) {
        uint32_t ncap = kc->nack_cap == 0 ? 16 : kc->nack_cap * 2;
        if (ncap > PC_NACK_PENDING_MAX)
            ncap = PC_NACK_PENDING_MAX;
        pc__nack *nn = mg_malloc(ncap * sizeof(*nn));
        if (nn == NULL)
            return MG_ENOMEM;
        for (uint32_t i = 0; i < kc->nack_count; i++)
            nn[i] = kc->nacks[(kc->nack_head + i) % kc->nack_cap];
        mg_free(kc->nacks);
        kc->nacks = nn;
        kc->nack_cap = ncap;
        kc->nack_head = 0;
    }
    uint32_t slot = (kc->nack_head + kc->nack_count) % kc->nack_cap;
    kc->nacks[slot].id =
        (pc__ackid){ id->ledger_id, id->entry_id, id->batch_index, id->batch_size };
    kc->nacks[slot].due_ms = pc__now_ms(k->base.c) + k->nack_delay_ms;
    kc->nack_count++;
    nack_arm(kc);
    return MG_OK;
}

int pc_redeliver_unacked(pc_consumer *k)
{
    if (k == NULL)
        return MG_EINVAL;
    if (!consumer_usable(k))
        return MG_ECLOSED;
    for (uint32_t i = 0; i < k->base.nparts; i++) {
        pc__cons *kc = cons_at(k, i);
        if (kc->base.state != PC__PART_READY)
            continue;
        cons_flush_acks(kc);
        send_redeliver(kc, NULL, 0);
        queue_clear(kc, true);
    }
    return MG_OK;
}

/* ---- seek, last message id, pause
 * ---------------------------------------------------------------- */

static void multi_done(pc_consumer *k, pc__multi *m, int status)
{
    if (status != MG_OK && m->status == MG_OK)
        m->status = status;
    MG_ASSERT(m->waiting > 0);
    if (--m->waiting > 0)
        return;
    m->active = false;
    if (m->cb != NULL)
        m->cb(m->status, m->arg);
}

/* Sends one part's request of the multi-part operation m. Returns MG_OK when sent (one more
 * answer awaited); otherwise the operation ends: with the error returned at once when no part's
 * request is out yet (the caller returns it), else recorded in m for its callback, and
 * MULTI_STOP returned (send no more, let the answers come). */
#define MULTI_STOP 1
static int multi_send(pc__multi *m, pc__cons *kc, const Magnetar__Pulsar__BaseCommand *cmd,
                      uint64_t rid, pc__req_cb answered, pc__req **slot)
{
    int rc = pc__conn_request(kc->base.conn, cmd, rid, answered, kc, slot);
    if (rc == MG_OK) {
        m->waiting++;
        return MG_OK;
    }
    if (m->waiting == 0) {
        m->active = false;
        return rc;
    }
    m->status = rc;
    return MULTI_STOP;
}

static int answer_status(pc_client *c, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    if (status == MG_EPERM && cmd != NULL && cmd->type == PC__T(ERROR))
        pc__set_last_error(c, cmd->error->message);
    if (status == MG_OK && cmd != NULL && cmd->type == PC__T(ERROR))
        return MG_EPERM;
    return status;
}

static void seek_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__cons *kc = r->arg;
    pc_consumer *k = cons_parent(kc);
    kc->seek_req = NULL;
    status = answer_status(k->base.c, status, cmd);
    kc->dropping = false;
    if (status == MG_OK)
        queue_clear(kc, false); /* the broker closes the consumer: it subscribes again */
    multi_done(k, &k->seek, status);
}

static int seek_start(pc_consumer *k, const pc_message_id *id, int64_t time_ms, pc_done_cb cb,
                      void *arg)
{
    if (!consumer_usable(k))
        return MG_ECLOSED;
    if (k->seek.active)
        return MG_EAGAIN;
    uint32_t from = 0, to = k->base.nparts;
    if (id != NULL && id->partition >= 0 && k->base.nparts > 1) {
        if ((uint32_t)id->partition >= k->base.nparts)
            return MG_EINVAL;
        from = (uint32_t)id->partition;
        to = from + 1;
    }
    for (uint32_t i = from; i < to; i++)
        if (cons_at(k, i)->base.state != PC__PART_READY)
            return MG_ECONNECTION;
    k->seek = (pc__multi){ .active = true, .status = MG_OK, .cb = cb, .arg = arg };
    for (uint32_t i = from; i < to; i++) {
        pc__cons *kc = cons_at(k, i);
        cons_flush_acks(kc);
        uint64_t rid = pc__next_request_id(k->base.c);
        Magnetar__Pulsar__CommandSeek sk = MAGNETAR__PULSAR__COMMAND_SEEK__INIT;
        Magnetar__Pulsar__MessageIdData mid = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
        sk.consumer_id = kc->base.id;
        sk.request_id = rid;
        if (id != NULL) {
            mid.ledger_id = (uint64_t)id->ledger_id;
            mid.entry_id = (uint64_t)id->entry_id;
            sk.message_id = &mid;
        } else {
            sk.has_message_publish_time = 1;
            sk.message_publish_time = (uint64_t)time_ms;
        }
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = PC__T(SEEK);
        cmd.seek = &sk;
        int rc = multi_send(&k->seek, kc, &cmd, rid, seek_answered, &kc->seek_req);
        if (rc == MULTI_STOP)
            break;
        if (rc != MG_OK)
            return rc;
        kc->dropping = true;
        if (k->reader && id != NULL) {
            kc->start = *id;
            kc->start_inclusive = true;
            kc->start_set = is_set(id);
            k->initial = id->ledger_id == INT64_MAX ? PC_INITIAL_LATEST : PC_INITIAL_EARLIEST;
        }
    }
    return MG_OK;
}

int pc_seek(pc_consumer *k, const pc_message_id *id, pc_done_cb cb, void *arg)
{
    if (k == NULL || id == NULL)
        return MG_EINVAL;
    return seek_start(k, id, 0, cb, arg);
}

int pc_seek_time(pc_consumer *k, int64_t publish_time_ms, pc_done_cb cb, void *arg)
{
    if (k == NULL || publish_time_ms < 0)
        return MG_EINVAL;
    if (k->reader)
        return MG_ENOTSUP;
    return seek_start(k, NULL, publish_time_ms, cb, arg);
}

static void last_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__cons *kc = r->arg;
    pc_consumer *k = cons_parent(kc);
    kc->last_req = NULL;
    status = answer_status(k->base.c, status, cmd);
    void (*cb)(int, const pc_message_id *, void *) = k->last_cb;
    void *arg = k->last_arg;
    k->last_cb = NULL;
    if (status == MG_OK && cmd->type != PC__T(GET_LAST_MESSAGE_ID_RESPONSE))
        status = MG_EPROTO;
    if (status != MG_OK) {
        cb(status, NULL, arg);
        return;
    }
    const Magnetar__Pulsar__MessageIdData *d = cmd->get_last_message_id_response->last_message_id;
    pc_message_id id = { (int64_t)d->ledger_id, (int64_t)d->entry_id,
                         d->has_batch_index ? d->batch_index : -1,
                         d->has_batch_size ? d->batch_size : 0, kc->base.partition };
    cb(MG_OK, &id, arg);
}

int pc_get_last_message_id(pc_consumer *k,
                           void (*cb)(int status, const pc_message_id *id, void *arg), void *arg)
{
    if (k == NULL || cb == NULL)
        return MG_EINVAL;
    if (!consumer_usable(k))
        return MG_ECLOSED;
    if (k->base.nparts != 1)
        return MG_ENOTSUP;
    if (k->last_cb != NULL)
        return MG_EAGAIN;
    pc__cons *kc = cons_at(k, 0);
    if (kc->base.state != PC__PART_READY)
        return MG_ECONNECTION;
    uint64_t rid = pc__next_request_id(k->base.c);
    Magnetar__Pulsar__CommandGetLastMessageId g =
        MAGNETAR__PULSAR__COMMAND_GET_LAST_MESSAGE_ID__INIT;
    g.consumer_id = kc->base.id;
    g.request_id = rid;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(GET_LAST_MESSAGE_ID);
    cmd.get_last_message_id = &g;
    MG_TRY(pc__conn_request(kc->base.conn, &cmd, rid, last_answered, kc, &kc->last_req));
    k->last_cb = cb;
    k->last_arg = arg;
    return MG_OK;
}

void pc_consumer_pause(pc_consumer *k)
{
    k->paused = true;
}

void pc_consumer_resume(pc_consumer *k)
{
    if (!k->paused)
        return;
    k->paused = false;
    if (!consumer_usable(k))
        return;
    for (uint32_t i = 0; i < k->base.nparts; i++)
        if (cons_at(k, i)->q_head != NULL)
            pc__timer_start(k->base.c, &cons_at(k, i)->drain_timer, 0);
}

/* ---- unsubscribe and close
 * ----------------------------------------------------------------------- */

static void consumer_close_now(pc_consumer *k);

static void unsub_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__cons *kc = r->arg;
    pc_consumer *k = cons_parent(kc);
    kc->unsub_req = NULL;
    status = answer_status(k->base.c, status, cmd);
    kc->unsub_ok = status == MG_OK;
    if (status != MG_OK && k->unsub.status == MG_OK)
        k->unsub.status = status;
    if (--k->unsub.waiting > 0)
        return;
    k->unsub.active = false;
    if (k->unsub.status == MG_OK) {
        consumer_kill(k, MG_OK, k->unsub.cb, k->unsub.arg);
        return;
    }
    /* Refused: the consumer stays. Parts whose consumer the broker dropped subscribe again. */
    k->base.state = PC__HANDLE_READY;
    for (uint32_t i = 0; i < k->base.nparts; i++)
        if (cons_at(k, i)->unsub_ok && cons_at(k, i)->base.state == PC__PART_READY)
            pc__part_failed(&cons_at(k, i)->base, MG_ECONNECTION, true);
    if (k->unsub.cb != NULL)
        k->unsub.cb(k->unsub.status, k->unsub.arg);
    if (k->close_after_unsub && k->base.state == PC__HANDLE_READY) {
        k->close_after_unsub = false;
        k->close_after_cb = NULL; /* close.cb reports this close */
        consumer_close_now(k);
    }
}

int pc_unsubscribe(pc_consumer *k, pc_done_cb cb, void *arg)
{
    if (k == NULL)
        return MG_EINVAL;
    if (!consumer_usable(k) || k->unsub.active)
        return MG_ECLOSED;
    for (uint32_t i = 0; i < k->base.nparts; i++)
        if (cons_at(k, i)->base.state != PC__PART_READY)
            return MG_ECONNECTION;
    k->unsub = (pc__multi){ .active = true, .status = MG_OK, .cb = cb, .arg = arg };
    for (uint32_t i = 0; i < k->base.nparts; i++) {
        pc__cons *kc = cons_at(k, i);
        kc->unsub_ok = false;
        cons_flush_acks(kc);
        uint64_t rid = pc__next_request_id(k->base.c);
        Magnetar__Pulsar__CommandUnsubscribe u = MAGNETAR__PULSAR__COMMAND_UNSUBSCRIBE__INIT;
        u.consumer_id = kc->base.id;
        u.request_id = rid;
        Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
        cmd.type = PC__T(UNSUBSCRIBE);
        cmd.unsubscribe = &u;
        int rc = multi_send(&k->unsub, kc, &cmd, rid, unsub_answered, &kc->unsub_req);
        if (rc == MULTI_STOP)
            break;
        if (rc != MG_OK)
            return rc;
    }
    k->base.state = PC__HANDLE_CLOSING; /* nothing more is handed out */
    return MG_OK;
}

static void consumer_close_now(pc_consumer *k)
{
    k->base.state = PC__HANDLE_CLOSING;
    k->close.active = true;
    pc__handle_close_parts(&k->base);
}

void pc_consumer_close(pc_consumer *k, pc_done_cb cb, void *arg)
{
    if (k->base.c->closing || k->base.state == PC__HANDLE_DEAD) {
        /* The client is closing (or the consumer is going): that path reports. */
        if (k->base.state == PC__HANDLE_DEAD && k->final_cb != NULL) {
            k->close_after_cb = cb;
            k->close_after_arg = arg;
        } else if (k->close.cb == NULL) {
            k->close.cb = cb;
            k->close.arg = arg;
        }
        return;
    }
    MG_ASSERT(k->base.state == PC__HANDLE_READY || k->base.state == PC__HANDLE_CLOSING);
    if (k->close.active || k->close_after_unsub)
        return; /* closing already */
    k->close.cb = cb;
    k->close.arg = arg;
    if (k->unsub.active) {
        /* After the unsubscribe: its success frees the consumer (both callbacks run). */
        k->close_after_unsub = true;
        k->close_after_cb = cb;
        k->close_after_arg = arg;
        return;
    }
    consumer_close_now(k);
}

/* ---- client close ---------------------------------------------------------------------------- */

static void consumer_aborted(pc__handle *h, pc__handle_state was)
{
    pc_consumer *k = (pc_consumer *)h;
    if (k->seek.active) {
        k->seek.active = false;
        if (k->seek.cb != NULL)
            k->seek.cb(MG_ECLOSED, k->seek.arg);
    }
    if (k->last_cb != NULL) {
        void (*lcb)(int, const pc_message_id *, void *) = k->last_cb;
        k->last_cb = NULL;
        lcb(MG_ECLOSED, NULL, k->last_arg);
    }
    pc_done_cb cb = NULL;
    void *arg = NULL;
    int status = MG_ECLOSED;
    pc_done_cb cb2 = k->close_after_cb;
    void *arg2 = k->close_after_arg;
    if (was == PC__HANDLE_DEAD) {
        cb = k->final_cb;
        arg = k->final_arg;
        status = h->final_status;
    } else if (k->unsub.active) {
        cb = k->unsub.cb;
        arg = k->unsub.arg;
    } else {
        cb = k->close.cb;
        arg = k->close.arg;
    }
    pc__handle_free(h);
    if (cb != NULL)
        cb(status, arg);
    if (cb2 != NULL)
        cb2(MG_ECLOSED, arg2);
}
