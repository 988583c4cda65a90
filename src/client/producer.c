/*
 * Producers (client.h): one part per partition (client_int.h), batching, compression, pending
 * limits, receipts and resends.
 *
 * A MESSAGE'S WAY
 *   pc_send copies the message (one allocation: struct, key, properties, payload) and either
 *   admits it (counted in pending_msgs / pending_bytes, given the part's next sequence id) or,
 *   when the limits are reached and fail_if_full is off, holds it in the producer's held queue
 *   (at most max_pending_messages), admitted in order as room frees. An admitted message joins
 *   its part's batch (batching) or becomes an op at once. An op is one SEND: its messages, the
 *   encoded command head and payload (built once, resent as they are), its sequence ids.
 *   Ops wait in the part's queue, in sequence order, until their SEND_RECEIPT.
 *
 * BATCHES: flushed when batch_max_messages or batch_max_bytes is reached, batch_max_delay_ms
 *   after their first message, on pc_producer_flush and on close. A batch of one message is
 *   sent as a plain message (as Pulsar's Java client does). A batch payload is
 *   [u32 size][SingleMessageMetadata][payload] per message; compression covers the whole of it
 *   (MessageMetadata.uncompressed_size); num_messages_in_batch and highest_sequence_id (the last
 *   message's) are set, and the SEND's num_messages and highest_sequence_id too.
 *
 * RECEIPTS are matched to the oldest op: the same sequence id completes it (message ids: the
 *   i-th message of a batch gets batch index i and batch_size n); an older one is a duplicate
 *   of an op already failed or completed and is ignored; a newer one means the broker skipped
 *   something: the connection is closed and every op not acknowledged is resent (as Pulsar's
 *   clients do). SEND_ERROR ChecksumError fails that op with MG_ECORRUPT; NotAllowedError fails
 *   it with MG_EPERM and the broker's text in pc_last_error (Java's recoverNotAllowedError: e.g.
 *   the bookie's disk is full, so sending it again would fail the same way); any other
 *   SEND_ERROR closes the connection (resend after reconnecting). The broker's CLOSE_PRODUCER makes
 * the part look the topic up again; after each (re)registration every unacknowledged op is sent
 *   again in order.
 *
 * TERMINATED TOPICS: a SEND_ERROR TopicTerminatedError, or that refusal when the part registers
 *   again (the broker closes producers when it terminates a topic), stops the part for good:
 *   what it holds fails with MG_EPERM, and so does every later send to it.
 *
 * BACKLOG QUOTAS (the broker closes the producers of a topic over its quota; they register
 *   again and are refused, as Pulsar's clients see it):
 *   ProducerBlockedQuotaExceededError (producer_request_hold): retried with backoff like any
 *     failure, also while the producer is being created (until operation_timeout_ms); sends
 *     wait meanwhile (held, then failed by the send timeout) and go once the part registers.
 *   ProducerBlockedQuotaExceededException (producer_exception): refuses a producer being created
 *     at once (MG_EPERM, pc_last_error the broker's text); for a created one, everything the
 *     part holds fails with MG_EPERM and so does every send to it (pc_send returns MG_EPERM)
 *     while the part keeps registering again with backoff; once accepted, sends work again.
 *
 * SEND TIMEOUT (send_timeout_ms, checked by housekeeping): an op, or a held message, older than
 *   it fails with MG_ETIMEDOUT; a late receipt for it is then an old one and ignored.
 *
 * ORDER: sequence ids and callbacks follow pc_send order per part (per partition). Failures
 *   found while encoding (out of memory) are reported from a zero-delay timer, in order among
 *   themselves.
 *
 * PRODUCER STATES (the handle's, client_int.h; its life cycle is handle.c's)
 *   META (partitioned metadata, retried until operation_timeout_ms) -> CREATING (parts
 *   registering) -> READY --pc_producer_close--> CLOSING (pending sends finish or time out,
 *   then CLOSE_PRODUCER on every connected part) -> DEAD (freed from a zero-delay timer).
 *   A creation failure goes to DEAD after cb(error, NULL); client close aborts any state.
 */
#include "client/client_int.h"

#include "client/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "pulsar/compress.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <string.h>

/* A pc_compression value goes to pw_compress and into MessageMetadata.compression as it is: the
 * two enumerations must number the codecs alike. */
_Static_assert((int)PC_COMPRESSION_NONE == (int)MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE,
               "pc_compression numbers NONE as CompressionType does");
_Static_assert((int)PC_COMPRESSION_LZ4 == (int)MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4,
               "pc_compression numbers LZ4 as CompressionType does");
_Static_assert((int)PC_COMPRESSION_ZLIB == (int)MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB,
               "pc_compression numbers ZLIB as CompressionType does");
_Static_assert((int)PC_COMPRESSION_ZSTD == (int)MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD,
               "pc_compression numbers ZSTD as CompressionType does");
_Static_assert((int)PC_COMPRESSION_SNAPPY == (int)MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY,
               "pc_compression numbers SNAPPY as CompressionType does");

typedef struct pc__msg pc__msg;
struct pc__msg {
    pc__msg *next;
    uint32_t part_index;
    int64_t seq;
    const uint8_t *payload; /* inside this allocation */
    size_t len;
    const char *key; /* NULL = none */
    uint32_t prop_count;
    const char **props; /* key, value pairs */
    int64_t event_time_ms;
    pc_send_cb cb;
    void *arg;
    uint64_t enqueued_ms;
    int fail_status; /* encoding failed: reported from the part's fail_timer */
};

typedef struct pc__op pc__op;
struct pc__op {
    pc__op *next;
    int64_t seq_first;
    int64_t seq_last;
    uint32_t count;
    bool batched;
    bool sent; /* on the current connection */
    pc__msg *msgs;
    mg_buf *head;
    mg_buf *payload;
    uint64_t enqueued_ms;
    uint64_t bytes;
};

struct pc__prod {
    pc__part base;
    char name[PC_NAME_BYTES_MAX + 1];
    bool has_name;
    int64_t next_seq;
    uint32_t max_message_size;
    pc__msg *batch_head, *batch_tail;
    uint32_t batch_count;
    size_t batch_bytes;
    pc__timer batch_timer;
    pc__op *ops_head, *ops_tail;
    pc__msg *failed_head, *failed_tail; /* admitted, failed to encode: reported by fail_timer */
    pc__timer fail_timer;
    bool terminated;    /* the topic was terminated: everything for this part fails (MG_EPERM) */
    bool quota_refused; /* the broker refused the part with ProducerBlockedQuotaExceededException:
                           sends to it fail at once (MG_EPERM) until it registers again */
};

struct pc_producer {
    pc__handle base; /* first: the shared life cycle (handle.c); its parts are pc__prods */
    char user_name[PC_NAME_BYTES_MAX + 1];
    bool has_user_name;
    int access_mode;
    bool batching;
    uint32_t batch_max_messages;
    uint32_t batch_max_bytes;
    uint32_t batch_max_delay_ms;
    int compression;
    uint32_t max_pending_messages;
    uint64_t max_pending_bytes;
    bool fail_if_full;
    uint32_t send_timeout_ms;
    pc_producer_cb create_cb;
    void *create_arg;
    uint32_t rr_next;
    uint32_t pending_msgs;
    uint64_t pending_bytes;
    pc__msg *held_head, *held_tail;
    uint32_t held_count;
    void (*close_cb)(int status, void *arg);
    void *close_arg;
    bool close_started; /* CLOSE_PRODUCER sent */
};

/* Part i of p. */
static inline pc__prod *prod_at(const pc_producer *p, uint32_t i)
{
    return (pc__prod *)(void *)p->base.parts[i];
}

/* The producer a part belongs to. */
static inline pc_producer *prod_parent(const pc__prod *pp)
{
    return (pc_producer *)(void *)pp->base.handle;
}

static void producer_check_close(pc_producer *p);
static void producer_release_held(pc_producer *p);

/* ---- messages and ops ----------------------------------------------------------------------- */

static pc__msg *msg_new(const pc_message *m, pc_send_cb cb, void *arg, uint64_t now_ms)
{
    size_t key_len = m->key != NULL ? strlen(m->key) + 1 : 0;
    size_t strings = 0;
    for (size_t i = 0; i < m->property_count; i++)
        strings += strlen(m->properties[i].key) + strlen(m->properties[i].value) + 2;
    size_t ptrs = 2 * m->property_count * sizeof(char *);
    size_t total = sizeof(pc__msg) + ptrs + key_len + strings + m->payload_len;
    pc__msg *msg = mg_malloc(total);
    if (msg == NULL)
        return NULL;
    memset(msg, 0, sizeof(*msg));
    char *p = (char *)(msg + 1);
    msg->props = (const char **)(void *)p;
    p += ptrs;
    if (key_len > 0) {
        memcpy(p, m->key, key_len);
        msg->key = p;
        p += key_len;
    }
    for (size_t i = 0; i < m->property_count; i++) {
        size_t kl = strlen(m->properties[i].key) + 1, vl = strlen(m->properties[i].value) + 1;
        memcpy(p, m->properties[i].key, kl);
        msg->props[2 * i] = p;
        p += kl;
        memcpy(p, m->properties[i].value, vl);
        msg->props[2 * i + 1] = p;
        p += vl;
    }
    msg->prop_count = (uint32_t)m->property_count;
    if (m->payload_len > 0)
        memcpy(p, m->payload, m->payload_len);
    msg->payload = (const uint8_t *)p;
    msg->len = m->payload_len;
    msg->event_time_ms = m->event_time_ms;
    msg->cb = cb;
    msg->arg = arg;
    msg->enqueued_ms = now_ms;
    return msg;
}

/* Calls back every message of a list (in order) with status and frees them. */
static void msgs_fail(pc__msg *m, int status)
{
    while (m != NULL) {
        pc__msg *next = m->next;
        if (m->cb != NULL)
            m->cb(status, NULL, m->arg);
        mg_free(m);
        m = next;
    }
}

static void op_free(pc__op *op)
{
    mg_buf_unref(op->head);
    mg_buf_unref(op->payload);
    mg_free(op);
}

/* Properties of a message as KeyValue pointers (kv storage and ptrs supplied by the caller). */
static void fill_props(const pc__msg *m, Magnetar__Pulsar__KeyValue *kv,
                       Magnetar__Pulsar__KeyValue **ptrs)
{
    for (uint32_t i = 0; i < m->prop_count; i++) {
        magnetar__pulsar__key_value__init(&kv[i]);
        kv[i].key = (char *)m->props[2 * i];
        kv[i].value = (char *)m->props[2 * i + 1];
        ptrs[i] = &kv[i];
    }
}

/* The uncompressed batch payload of op's messages, written message by message with pw_batch_put
 * (the layout is the pulsar module's, pulsar/wire.h). */
static int batch_payload(const pc__op *op, mg_buf **out)
{
    size_t total = 0;
    uint32_t props_max = 0;
    for (const pc__msg *m = op->msgs; m != NULL; m = m->next) {
        total += 4 + m->len + 64 + (m->key != NULL ? strlen(m->key) : 0);
        for (uint32_t i = 0; i < m->prop_count; i++)
            total += strlen(m->props[2 * i]) + strlen(m->props[2 * i + 1]) + 8;
        if (m->prop_count > props_max)
            props_max = m->prop_count;
    }
    Magnetar__Pulsar__KeyValue *kv = mg_calloc(props_max + 1, sizeof(*kv));
    Magnetar__Pulsar__KeyValue **ptrs = mg_calloc(props_max + 1, sizeof(*ptrs));
    mg_buf *b = mg_buf_new(total);
    if (kv == NULL || ptrs == NULL || b == NULL) {
        mg_free(kv);
        mg_free(ptrs);
        mg_buf_unref(b);
        return MG_ENOMEM;
    }
    uint8_t *d = mg_buf_data(b);
    size_t off = 0;
    for (const pc__msg *m = op->msgs; m != NULL; m = m->next) {
        Magnetar__Pulsar__SingleMessageMetadata smm =
            MAGNETAR__PULSAR__SINGLE_MESSAGE_METADATA__INIT;
        fill_props(m, kv, ptrs);
        smm.n_properties = m->prop_count;
        smm.properties = ptrs;
        smm.partition_key = (char *)m->key;
        smm.payload_size = (int32_t)m->len;
        if (m->event_time_ms != 0) {
            smm.has_event_time = 1;
            smm.event_time = (uint64_t)m->event_time_ms;
        }
        smm.has_sequence_id = 1;
        smm.sequence_id = (uint64_t)m->seq;
        size_t n = 0;
        int rc = pw_batch_put(d + off, total - off, &smm, m->payload, m->len, &n);
        MG_ASSERT(rc == MG_OK);
        off += n;
    }
    mg_buf_set_len(b, off);
    mg_free(kv);
    mg_free(ptrs);
    *out = b;
    return MG_OK;
}

/* Encodes op (head and payload) for part pp. */
static int op_encode(pc__prod *pp, pc__op *op)
{
    pc_producer *p = prod_parent(pp);
    const pc__msg *first = op->msgs;
    mg_buf *raw = NULL;
    const uint8_t *data;
    size_t data_len;
    if (op->batched) {
        MG_TRY(batch_payload(op, &raw));
        data = mg_buf_data(raw);
        data_len = mg_buf_len(raw);
    } else {
        data = first->payload;
        data_len = first->len;
    }
    mg_buf *compressed = NULL;
    if (p->compression != PC_COMPRESSION_NONE) {
        int rc = pw_compress(p->compression, data, data_len, &compressed);
        if (rc != MG_OK) {
            mg_buf_unref(raw);
            return rc;
        }
    }
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = pp->name;
    md.sequence_id = (uint64_t)op->seq_first;
    md.publish_time = (uint64_t)mg_clock_wall_ms();
    Magnetar__Pulsar__KeyValue *kv = NULL;
    Magnetar__Pulsar__KeyValue **ptrs = NULL;
    if (op->batched) {
        md.has_num_messages_in_batch = 1;
        md.num_messages_in_batch = (int32_t)op->count;
        md.has_highest_sequence_id = 1;
        md.highest_sequence_id = (uint64_t)op->seq_last;
    } else {
        if (first->prop_count > 0) {
            kv = mg_calloc(first->prop_count, sizeof(*kv));
            ptrs = mg_calloc(first->prop_count, sizeof(*ptrs));
            if (kv == NULL || ptrs == NULL) {
                mg_free(kv);
                mg_free(ptrs);
                mg_buf_unref(raw);
                mg_buf_unref(compressed);
                return MG_ENOMEM;
            }
            fill_props(first, kv, ptrs);
            md.n_properties = first->prop_count;
            md.properties = ptrs;
        }
        md.partition_key = (char *)first->key;
        if (first->event_time_ms != 0) {
            md.has_event_time = 1;
            md.event_time = (uint64_t)first->event_time_ms;
        }
    }
    if (compressed != NULL) {
        md.has_compression = 1;
        md.compression = (Magnetar__Pulsar__CompressionType)p->compression;
        md.has_uncompressed_size = 1;
        md.uncompressed_size = (uint32_t)data_len;
        data = mg_buf_data(compressed);
        data_len = mg_buf_len(compressed);
    }
    int rc = pw_send_payload_encode(&md, data, data_len, &op->payload);
    mg_free(kv);
    mg_free(ptrs);
    mg_buf_unref(raw);
    mg_buf_unref(compressed);
    if (rc != MG_OK)
        return rc;
    Magnetar__Pulsar__CommandSend send = MAGNETAR__PULSAR__COMMAND_SEND__INIT;
    send.producer_id = pp->base.id;
    send.sequence_id = (uint64_t)op->seq_first;
    send.has_num_messages = 1;
    send.num_messages = (int32_t)op->count;
    if (op->batched) {
        send.has_highest_sequence_id = 1;
        send.highest_sequence_id = (uint64_t)op->seq_last;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(SEND);
    cmd.send = &send;
    rc = pw_payload_head_encode(&cmd, mg_buf_len(op->payload), &op->head);
    if (rc != MG_OK) {
        mg_buf_unref(op->payload);
        op->payload = NULL;
    }
    return rc;
}

/* Queues op on the part's connection (READY only). */
static void op_send(pc__prod *pp, pc__op *op)
{
    mg_slice s[2] = { { op->head, 0, mg_buf_len(op->head) },
                      { op->payload, 0, mg_buf_len(op->payload) } };
    if (pc__conn_queue(pp->base.conn, s, 2) == MG_OK)
        op->sent = true;
}

static void fail_fired(pc__timer *t)
{
    pc__prod *pp = MG_CONTAINER_OF(t, pc__prod, fail_timer);
    pc_producer *p = prod_parent(pp);
    while (pp->failed_head != NULL && p->base.state != PC__HANDLE_DEAD) {
        pc__msg *m = pp->failed_head;
        pp->failed_head = m->next;
        if (pp->failed_head == NULL)
            pp->failed_tail = NULL;
        m->next = NULL;
        p->pending_msgs--;
        p->pending_bytes -= m->len;
        msgs_fail(m, m->fail_status);
    }
    producer_release_held(p);
    producer_check_close(p);
}

/* Turns msgs (count of them, in order) into an op, queued and sent when connected. An encoding
 * failure is reported from fail_timer (this may run inside pc_send). */
static void op_make(pc__prod *pp, pc__msg *msgs, uint32_t count, uint64_t bytes)
{
    pc_producer *p = prod_parent(pp);
    pc__op *op = mg_calloc(1, sizeof(*op));
    int rc = MG_ENOMEM;
    if (op != NULL) {
        op->msgs = msgs;
        op->count = count;
        op->bytes = bytes;
        op->batched = count > 1;
        op->seq_first = msgs->seq;
        pc__msg *last = msgs;
        while (last->next != NULL)
            last = last->next;
        op->seq_last = last->seq;
        op->enqueued_ms = msgs->enqueued_ms;
        rc = op_encode(pp, op);
    }
    if (rc != MG_OK) {
        MG_WARN("client: producer on %s: cannot encode a message: %s", pp->base.topic,
                mg_strerror(rc));
        if (op != NULL)
            op_free(op);
        for (pc__msg *m = msgs; m != NULL; m = m->next)
            m->fail_status = rc;
        if (pp->failed_tail != NULL)
            pp->failed_tail->next = msgs;
        else
            pp->failed_head = msgs;
        pc__msg *last = msgs;
        while (last->next != NULL)
            last = last->next;
        pp->failed_tail = last;
        pc__timer_start(p->base.c, &pp->fail_timer, 0);
        return;
    }
    if (pp->ops_tail != NULL)
        pp->ops_tail->next = op;
    else
        pp->ops_head = op;
    pp->ops_tail = op;
    if (pp->base.state == PC__PART_READY) {
        op_send(pp, op);
        pc__conn_flush(pp->base.conn);
    }
}

/* Detaches the open batch, which is empty after: its messages in order, *count and *bytes. */
static pc__msg *batch_take(pc__prod *pp, uint32_t *count, uint64_t *bytes)
{
    pc__msg *msgs = pp->batch_head;
    *count = pp->batch_count;
    *bytes = pp->batch_bytes;
    pp->batch_head = pp->batch_tail = NULL;
    pp->batch_count = 0;
    pp->batch_bytes = 0;
    return msgs;
}

static void batch_flush(pc__prod *pp)
{
    pc__timer_stop(pp->base.c, &pp->batch_timer);
    if (pp->batch_count == 0)
        return;
    uint32_t count;
    uint64_t bytes;
    pc__msg *msgs = batch_take(pp, &count, &bytes);
    op_make(pp, msgs, count, bytes);
}

static void batch_fired(pc__timer *t)
{
    batch_flush(MG_CONTAINER_OF(t, pc__prod, batch_timer));
}

static uint32_t batch_bytes_limit(const pc__prod *pp)
{
    uint32_t limit = prod_parent(pp)->batch_max_bytes;
    uint32_t room = pp->max_message_size > 4096 ? pp->max_message_size - 4096 : 1024;
    return limit < room ? limit : room;
}

/* An admitted message joins its part: a sequence id, then the batch or an op of its own. */
static void part_add(pc__prod *pp, pc__msg *m)
{
    pc_producer *p = prod_parent(pp);
    m->seq = pp->next_seq++;
    m->next = NULL;
    if (pp->terminated || pp->quota_refused) {
        m->fail_status = MG_EPERM;
        if (pp->failed_tail != NULL)
            pp->failed_tail->next = m;
        else
            pp->failed_head = m;
        pp->failed_tail = m;
        pc__timer_start(p->base.c, &pp->fail_timer, 0);
        return;
    }
    if (!p->batching) {
        op_make(pp, m, 1, m->len);
        return;
    }
    uint32_t max_bytes = batch_bytes_limit(pp);
    if (pp->batch_count > 0 && pp->batch_bytes + m->len > max_bytes)
        batch_flush(pp);
    if (pp->batch_tail != NULL)
        pp->batch_tail->next = m;
    else
        pp->batch_head = m;
    pp->batch_tail = m;
    pp->batch_count++;
    pp->batch_bytes += m->len;
    if (pp->batch_count >= p->batch_max_messages || pp->batch_bytes >= max_bytes)
        batch_flush(pp);
    else if (pp->batch_count == 1)
        pc__timer_start(p->base.c, &pp->batch_timer, p->batch_max_delay_ms);
}

static bool producer_full(const pc_producer *p, size_t len)
{
    return p->pending_msgs >= p->max_pending_messages ||
           (p->pending_bytes > 0 && p->pending_bytes + len > p->max_pending_bytes);
}

static void admit(pc_producer *p, pc__msg *m)
{
    p->pending_msgs++;
    p->pending_bytes += m->len;
    part_add(prod_at(p, m->part_index), m);
}

static void producer_release_held(pc_producer *p)
{
    while (p->held_head != NULL && p->base.state != PC__HANDLE_DEAD &&
           !producer_full(p, p->held_head->len)) {
        pc__msg *m = p->held_head;
        p->held_head = m->next;
        if (p->held_head == NULL)
            p->held_tail = NULL;
        p->held_count--;
        admit(p, m);
    }
}

/* Completes op (already unlinked) and frees it. */
static void op_complete(pc__prod *pp, pc__op *op, int status, int64_t ledger_id, int64_t entry_id)
{
    pc_producer *p = prod_parent(pp);
    p->pending_msgs -= op->count;
    p->pending_bytes -= op->bytes;
    int32_t i = 0;
    for (pc__msg *m = op->msgs; m != NULL;) {
        pc__msg *next = m->next;
        if (m->cb != NULL) {
            if (status == MG_OK) {
                pc_message_id id = { ledger_id, entry_id, op->batched ? i : -1,
                                     op->batched ? (int32_t)op->count : 0, pp->base.partition };
                m->cb(MG_OK, &id, m->arg);
            } else {
                m->cb(status, NULL, m->arg);
            }
        }
        mg_free(m);
        m = next;
        i++;
    }
    op_free(op);
}

static pc__op *ops_pop(pc__prod *pp)
{
    pc__op *op = pp->ops_head;
    if (op != NULL) {
        pp->ops_head = op->next;
        if (pp->ops_head == NULL)
            pp->ops_tail = NULL;
        op->next = NULL;
    }
    return op;
}

/* ---- registration ---------------------------------------------------------------------------- */

static void prod_fail_all(pc__prod *pp, int status);

/* The topic was terminated (Pulsar: the producer's state becomes Terminated): the part stops,
 * what it holds fails with MG_EPERM (pc_last_error tells why), later sends to it fail too. */
static void prod_terminated(pc__prod *pp, const char *text)
{
    pc_producer *p = prod_parent(pp);
    MG_WARN("client: producer %s on %s: %s", pp->name, pp->base.topic, text);
    pc__set_last_error(p->base.c, text);
    pp->terminated = true;
    pc__part_stop(&pp->base);
    prod_fail_all(pp, MG_EPERM);
    producer_release_held(p);
    producer_check_close(p);
}

static void producer_answered(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__prod *pp = r->arg;
    pc__part *part = &pp->base;
    part->req = NULL;
    if (status == MG_EPERM && part->created && cmd->error->error == PC__ERR(TopicTerminatedError)) {
        pc__set_last_error(part->c, cmd->error->message);
        prod_terminated(pp, cmd->error->message);
        return;
    }
    if (status == MG_EPERM && part->created &&
        cmd->error->error == PC__ERR(ProducerBlockedQuotaExceededException)) {
        /* Pulsar's producer_exception: what the part holds fails now, and so do new sends,
         * while the part keeps registering again (with backoff) until the backlog is back
         * within its quota. */
        pc_producer *p = prod_parent(pp);
        MG_WARN("client: producer %s on %s: %s", pp->name, part->topic, cmd->error->message);
        pp->quota_refused = true;
        (void)pc__part_register_answered(part, status, cmd, PC__T(PRODUCER_SUCCESS));
        prod_fail_all(pp, MG_EPERM);
        producer_release_held(p);
        producer_check_close(p);
        return;
    }
    if (!pc__part_register_answered(part, status, cmd, PC__T(PRODUCER_SUCCESS)))
        return;
    pp->quota_refused = false;
    const Magnetar__Pulsar__CommandProducerSuccess *ok = cmd->producer_success;
    snprintf(pp->name, sizeof(pp->name), "%s", ok->producer_name);
    pp->has_name = true;
    pp->max_message_size = part->conn->max_message_size;
    if (!part->created) {
        int64_t last = ok->has_last_sequence_id ? ok->last_sequence_id : -1;
        pp->next_seq = last >= 0 ? last + 1 : 0;
    }
    pc__part_ready(part);
    if (part->state != PC__PART_READY)
        return; /* the producer went away meanwhile */
    /* Everything not acknowledged goes again, in order, except what was already sent on this
     * connection: pc__part_ready runs the application's creation callback, whose pc_send calls
     * send their messages at once (sending them again here stored every one twice). */
    for (pc__op *op = pp->ops_head; op != NULL; op = op->next)
        if (!op->sent)
            op_send(pp, op);
    pc__conn_flush(part->conn);
}

static int prod_register(pc__part *part)
{
    pc__prod *pp = (pc__prod *)part;
    pc_producer *p = prod_parent(pp);
    uint64_t rid = pc__next_request_id(part->c);
    Magnetar__Pulsar__CommandProducer cp = MAGNETAR__PULSAR__COMMAND_PRODUCER__INIT;
    cp.topic = part->topic;
    cp.producer_id = part->id;
    cp.request_id = rid;
    if (pp->has_name) {
        cp.producer_name = pp->name;
        cp.has_user_provided_producer_name = 1;
        cp.user_provided_producer_name = p->has_user_name;
    }
    if (p->access_mode != PC_ACCESS_SHARED) {
        cp.has_producer_access_mode = 1;
        cp.producer_access_mode = MAGNETAR__PULSAR__PRODUCER_ACCESS_MODE__Exclusive;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = PC__T(PRODUCER);
    cmd.producer = &cp;
    return pc__conn_request(part->conn, &cmd, rid, producer_answered, pp, &part->req);
}

static void prod_detached(pc__part *part)
{
    pc__prod *pp = (pc__prod *)part;
    for (pc__op *op = pp->ops_head; op != NULL; op = op->next)
        op->sent = false;
    if (pp->base.close_req != NULL) {
        pc__req_cancel(pp->base.close_req);
        pp->base.close_req = NULL;
        prod_parent(pp)->base.close_waiting--;
        producer_check_close(prod_parent(pp));
    }
}

static const pc__part_ops prod_ops = {
    .register_on = prod_register,
    .detached = prod_detached,
    .created = pc__handle_part_created,
};

/* ---- frames from the broker --------------------------------------------------------------------
 */

void pc__prod_on_frame(pc__part *part, const Magnetar__Pulsar__BaseCommand *cmd)
{
    pc__prod *pp = (pc__prod *)part;
    pc_producer *p = prod_parent(pp);
    if (part->state != PC__PART_READY)
        return;
    switch (cmd->type) {
    case PC__T(SEND_RECEIPT): {
        const Magnetar__Pulsar__CommandSendReceipt *rc = cmd->send_receipt;
        pc__op *op = pp->ops_head;
        int64_t seq = (int64_t)rc->sequence_id;
        if (op == NULL || !op->sent || seq < op->seq_first) {
            MG_DEBUG("client: producer %s: receipt for %lld ignored (old)", pp->name,
                     (long long)seq);
            return;
        }
        if (seq > op->seq_first) {
            MG_WARN("client: producer %s on %s: receipt for %lld while %lld is the oldest pending: "
                    "reconnecting to send again",
                    pp->name, part->topic, (long long)seq, (long long)op->seq_first);
            pc__conn_close(part->conn, MG_EPROTO, "a send receipt out of order");
            return;
        }
        ops_pop(pp);
        int64_t ledger = rc->message_id != NULL ? (int64_t)rc->message_id->ledger_id : -1;
        int64_t entry = rc->message_id != NULL ? (int64_t)rc->message_id->entry_id : -1;
        op_complete(pp, op, MG_OK, ledger, entry);
        producer_release_held(p);
        producer_check_close(p);
        break;
    }
    case PC__T(SEND_ERROR): {
        const Magnetar__Pulsar__CommandSendError *se = cmd->send_error;
        bool not_allowed = se->error == PC__ERR(NotAllowedError);
        if (se->error == PC__ERR(ChecksumError) || not_allowed) {
            if (not_allowed)
                pc__set_last_error(part->c, se->message);
            pc__op *prev = NULL;
            for (pc__op *op = pp->ops_head; op != NULL; prev = op, op = op->next) {
                if (op->seq_first != (int64_t)se->sequence_id)
                    continue;
                if (prev != NULL)
                    prev->next = op->next;
                else
                    pp->ops_head = op->next;
                if (pp->ops_tail == op)
                    pp->ops_tail = prev;
                op->next = NULL;
                op_complete(pp, op, not_allowed ? MG_EPERM : MG_ECORRUPT, -1, -1);
                producer_release_held(p);
                producer_check_close(p);
                return;
            }
            return;
        }
        if (se->error == PC__ERR(TopicTerminatedError)) {
            prod_terminated(pp, se->message);
            return;
        }
        MG_WARN("client: producer %s on %s: send error %d (%s): reconnecting to send again",
                pp->name, part->topic, (int)se->error, se->message);
        pc__conn_close(part->conn, MG_ECONNECTION, "send error");
        break;
    }
    case PC__T(CLOSE_PRODUCER):
        MG_INFO("client: the broker closed producer %s on %s: looking it up again", pp->name,
                part->topic);
        pc__part_reconnect(part);
        break;
    default:
        break;
    }
}

/* ---- producer life cycle -----------------------------------------------------------------------
 */

/* Fails everything a part holds (batch, ops, deferred failures) with status, in order. */
static void prod_fail_all(pc__prod *pp, int status)
{
    pc_producer *p = prod_parent(pp);
    pc__timer_stop(p->base.c, &pp->batch_timer);
    pc__timer_stop(p->base.c, &pp->fail_timer);
    pc__msg *failed = pp->failed_head;
    pp->failed_head = pp->failed_tail = NULL;
    for (pc__msg *m = failed; m != NULL; m = m->next) {
        p->pending_msgs--;
        p->pending_bytes -= m->len;
    }
    msgs_fail(failed, status);
    pc__op *op;
    while ((op = ops_pop(pp)) != NULL)
        op_complete(pp, op, status, -1, -1);
    uint32_t n;
    uint64_t bytes;
    pc__msg *batch = batch_take(pp, &n, &bytes);
    p->pending_msgs -= n;
    p->pending_bytes -= bytes;
    msgs_fail(batch, status);
}

static void prod_part_free(pc__part *part)
{
    pc__prod *pp = (pc__prod *)part;
    pc_client *c = part->c;
    pc__part_fini(part);
    pc__timer_unregister(c, &pp->batch_timer);
    pc__timer_unregister(c, &pp->fail_timer);
    mg_free(pp);
}

static void prod_part_stop(pc__part *part, bool release)
{
    if (part->close_req != NULL) {
        pc__req_cancel(part->close_req);
        part->close_req = NULL;
    }
    if (release)
        pc__part_release(part);
    else
        pc__part_stop(part);
}

static int prod_part_setup(pc__handle *h, pc__part *part)
{
    pc_producer *p = (pc_producer *)h;
    pc__prod *pp = (pc__prod *)part;
    pp->max_message_size = PC_MESSAGE_BYTES_DEFAULT;
    if (p->has_user_name) {
        snprintf(pp->name, sizeof(pp->name), "%s", p->user_name);
        pp->has_name = true;
    }
    if (pc__timer_register(h->c, &pp->batch_timer, batch_fired) != MG_OK ||
        pc__timer_register(h->c, &pp->fail_timer, fail_fired) != MG_OK)
        return MG_ENOMEM;
    return MG_OK;
}

static void producer_report_created(pc__handle *h, int status)
{
    pc_producer *p = (pc_producer *)h;
    p->create_cb(status, status == MG_OK ? p : NULL, p->create_arg);
}

static void producer_closed(pc__handle *h)
{
    pc__handle_kill(h, MG_OK);
}

/* Fails what the parts and the held queue hold with MG_ECLOSED, in order. */
static void producer_fail_held(pc_producer *p)
{
    for (uint32_t i = 0; i < p->base.nparts; i++)
        if (prod_at(p, i) != NULL)
            prod_fail_all(prod_at(p, i), MG_ECLOSED);
    pc__msg *held = p->held_head;
    p->held_head = p->held_tail = NULL;
    p->held_count = 0;
    msgs_fail(held, MG_ECLOSED);
}

static void producer_dead(pc__handle *h)
{
    pc_producer *p = (pc_producer *)h;
    void (*cb)(int, void *) = p->close_cb;
    void *arg = p->close_arg;
    int status = h->final_status;
    producer_fail_held(p);
    pc__handle_free(h);
    if (cb != NULL)
        cb(status, arg);
}

static void producer_aborted(pc__handle *h, pc__handle_state was)
{
    pc_producer *p = (pc_producer *)h;
    producer_fail_held(p);
    void (*cb)(int, void *) = p->close_cb;
    void *arg = p->close_arg;
    int status = was == PC__HANDLE_DEAD ? h->final_status : MG_ECLOSED;
    pc__handle_free(h);
    if (cb != NULL)
        cb(status, arg);
}

static const pc__handle_ops producer_ops = {
    .part_kind = PC__KIND_PRODUCER,
    .part_size = sizeof(pc__prod),
    .part_ops = &prod_ops,
    .part_setup = prod_part_setup,
    .part_free = prod_part_free,
    .part_stop = prod_part_stop,
    .report_created = producer_report_created,
    .closed = producer_closed,
    .dead = producer_dead,
    .aborted = producer_aborted,
};

int pc_producer_create(pc_client *c, const pc_producer_opts *opts, pc_producer_cb cb, void *arg)
{
    if (c == NULL || opts == NULL || cb == NULL || opts->topic == NULL)
        return MG_EINVAL;
    pw_topic_name tn;
    MG_TRY(pc__handle_check(c, opts->topic, &tn));
    if ((int)opts->compression < PC_COMPRESSION_NONE ||
        (int)opts->compression > PC_COMPRESSION_SNAPPY ||
        (opts->access_mode != PC_ACCESS_SHARED && opts->access_mode != PC_ACCESS_EXCLUSIVE) ||
        (opts->producer_name != NULL && strlen(opts->producer_name) > PC_NAME_BYTES_MAX) ||
        opts->max_pending_messages > PC_PENDING_MESSAGES_MAX ||
        opts->batch_max_messages > PC_BATCH_MESSAGES_MAX)
        return MG_EINVAL;
    pc_producer *p = mg_calloc(1, sizeof(*p));
    if (p == NULL)
        return MG_ENOMEM;
    if (opts->producer_name != NULL && opts->producer_name[0] != '\0') {
        snprintf(p->user_name, sizeof(p->user_name), "%s", opts->producer_name);
        p->has_user_name = true;
    }
    p->access_mode = opts->access_mode;
    p->batching = opts->batching;
    p->batch_max_messages = opts->batch_max_messages != 0 ? opts->batch_max_messages : 1000;
    p->batch_max_bytes = opts->batch_max_bytes != 0 ? opts->batch_max_bytes : 128 * 1024;
    p->batch_max_delay_ms = opts->batch_max_delay_ms != 0 ? opts->batch_max_delay_ms : 1;
    p->compression = (int)opts->compression;
    p->max_pending_messages = opts->max_pending_messages != 0 ? opts->max_pending_messages : 1000;
    p->max_pending_bytes =
        opts->max_pending_bytes != 0 ? opts->max_pending_bytes : 64ull * 1024 * 1024;
    p->fail_if_full = opts->fail_if_full;
    p->send_timeout_ms = opts->send_timeout_ms != 0 ? opts->send_timeout_ms : 30000;
    p->create_cb = cb;
    p->create_arg = arg;
    if (pc__handle_start(&p->base, c, &producer_ops, tn.full, &c->producers) != MG_OK) {
        mg_free(p);
        return MG_ENOMEM;
    }
    pc__housekeeping_arm(c);
    return MG_OK;
}

static uint32_t key_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *s = (const unsigned char *)key; *s != '\0'; s++) {
        h ^= *s;
        h *= 16777619u;
    }
    return h;
}

int pc_send(pc_producer *p, const pc_message *m, pc_send_cb cb, void *arg)
{
    if (p == NULL || m == NULL || (m->payload == NULL && m->payload_len > 0) ||
        (m->properties == NULL && m->property_count > 0) || m->property_count > PC_PROPERTIES_MAX)
        return MG_EINVAL;
    if (p->base.state != PC__HANDLE_READY || p->base.c->closing)
        return MG_ECLOSED;
    for (size_t i = 0; i < m->property_count; i++)
        if (m->properties[i].key == NULL || m->properties[i].value == NULL)
            return MG_EINVAL;
    uint32_t index = 0;
    if (p->base.nparts > 1)
        index = m->key != NULL ? key_hash(m->key) % p->base.nparts : p->rr_next++ % p->base.nparts;
    if (m->payload_len > prod_at(p, index)->max_message_size)
        return MG_EINVAL;
    if (prod_at(p, index)->terminated || prod_at(p, index)->quota_refused)
        return MG_EPERM;
    bool hold = p->held_count > 0 || producer_full(p, m->payload_len);
    if (hold && (p->fail_if_full || p->held_count >= p->max_pending_messages))
        return MG_EAGAIN;
    pc__msg *msg = msg_new(m, cb, arg, pc__call_now_ms(p->base.c));
    if (msg == NULL)
        return MG_ENOMEM;
    msg->part_index = index;
    if (hold) {
        if (p->held_tail != NULL)
            p->held_tail->next = msg;
        else
            p->held_head = msg;
        p->held_tail = msg;
        p->held_count++;
        return MG_OK;
    }
    admit(p, msg);
    return MG_OK;
}

void pc_producer_flush(pc_producer *p)
{
    if (p->base.state != PC__HANDLE_READY && p->base.state != PC__HANDLE_CLOSING)
        return;
    for (uint32_t i = 0; i < p->base.nparts; i++)
        batch_flush(prod_at(p, i));
}

size_t pc_producer_pending(const pc_producer *p)
{
    return (size_t)p->pending_msgs + p->held_count;
}

/* CLOSING: once nothing is pending, CLOSE_PRODUCER goes to every connected part; when all
 * answered (or left their connection) the producer dies. */
static void producer_check_close(pc_producer *p)
{
    if (p->base.state != PC__HANDLE_CLOSING)
        return;
    if (p->close_started) {
        if (p->base.close_waiting == 0)
            pc__handle_kill(&p->base, MG_OK);
        return;
    }
    if (p->pending_msgs > 0 || p->held_count > 0)
        return;
    p->close_started = true;
    pc__handle_close_parts(&p->base);
}

void pc_producer_close(pc_producer *p, void (*cb)(int status, void *arg), void *arg)
{
    if (p->base.c->closing || p->base.state == PC__HANDLE_DEAD) {
        /* The client is closing (or the producer is going): the abort reports it. */
        if (p->close_cb == NULL) {
            p->close_cb = cb;
            p->close_arg = arg;
        }
        return;
    }
    MG_ASSERT(p->base.state == PC__HANDLE_READY);
    p->base.state = PC__HANDLE_CLOSING;
    p->close_cb = cb;
    p->close_arg = arg;
    for (uint32_t i = 0; i < p->base.nparts; i++)
        batch_flush(prod_at(p, i));
    if (p->pending_msgs == 0 && p->held_count == 0) {
        /* Nothing to wait for; the CLOSE_PRODUCER answers (or the zero-delay kill) report. */
        producer_check_close(p);
    }
}

/* ---- housekeeping and client close -------------------------------------------------------------
 */

static void part_timeouts(pc__prod *pp, uint64_t now_ms)
{
    pc_producer *p = prod_parent(pp);
    while (pp->ops_head != NULL && now_ms - pp->ops_head->enqueued_ms >= p->send_timeout_ms &&
           p->base.state != PC__HANDLE_DEAD) {
        pc__op *op = ops_pop(pp);
        MG_DEBUG("client: producer %s: send %lld timed out", pp->name, (long long)op->seq_first);
        op_complete(pp, op, MG_ETIMEDOUT, -1, -1);
    }
}

void pc__producers_housekeeping(pc_client *c, uint64_t now_ms)
{
    for (mg_link *l = c->producers.next; l != &c->producers;) {
        pc_producer *p = MG_CONTAINER_OF(l, pc_producer, base.link);
        l = l->next;
        if (p->base.state != PC__HANDLE_READY && p->base.state != PC__HANDLE_CLOSING)
            continue;
        for (uint32_t i = 0; i < p->base.nparts && p->base.state != PC__HANDLE_DEAD; i++)
            part_timeouts(prod_at(p, i), now_ms);
        while (p->held_head != NULL && now_ms - p->held_head->enqueued_ms >= p->send_timeout_ms &&
               p->base.state != PC__HANDLE_DEAD) {
            pc__msg *m = p->held_head;
            p->held_head = m->next;
            if (p->held_head == NULL)
                p->held_tail = NULL;
            p->held_count--;
            m->next = NULL;
            msgs_fail(m, MG_ETIMEDOUT);
        }
        producer_release_held(p);
        producer_check_close(p);
    }
}

bool pc__producers_any(const pc_client *c)
{
    return !mg_list_empty(&c->producers);
}
