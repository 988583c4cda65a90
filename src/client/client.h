/*
 * Magnetar's C Pulsar client (prefix pc_): producers, consumers and readers speaking the Pulsar
 * binary protocol (../shared/REFERENCE.md §1) to any Pulsar-compatible broker. It is a library
 * with this one public header: Job workers, `magnetar client`, `magnetar perf`, `magnetar
 * replay` and tests use it, and it does not reach into broker internals (it shares only the wire
 * codec, pulsar/wire.h, and the batch compression codecs, pulsar/compress.h).
 *
 * MODEL
 *   A pc_client lives on one libuv loop, given by the caller, and every function is called on
 *   that loop's thread; every callback runs on it. A call that returns an error never calls its
 *   callback; one that returns PC_OK (MG_OK) calls it exactly once, never from inside the call.
 *   The client looks topics up (following Redirects, at most PC_LOOKUP_REDIRECTS_MAX), keeps one
 *   connection per broker address (a pool shared by every producer and consumer on it), and
 *   reconnects with exponential backoff (PC_BACKOFF_MS_MIN..PC_BACKOFF_MS_MAX) when a broker
 *   closes a producer or consumer (CLOSE_PRODUCER / CLOSE_CONSUMER: look the topic up again) or
 *   a connection is lost; producers resend what was not acknowledged, in order, and consumers
 *   resubscribe at their subscription's position. Keep-alive: PING after keepalive_s of silence,
 *   the connection is dropped (and re-established) when no answer comes. As in any libuv
 *   program, the application ignores SIGPIPE (a broker closing a connection must be an error
 *   on that connection, not a signal that kills the process).
 *
 * ERRORS are the project's MG_* codes (common/error.h): MG_EINVAL (bad argument), MG_EAGAIN
 *   (the producer's pending queue is full and block_if_full is off), MG_ECLOSED (closed),
 *   MG_ETIMEDOUT (send or operation timeout), MG_ECONNECTION (broker unreachable after
 *   operation_timeout_ms), MG_EPROTO (the broker broke the protocol), MG_EPERM (the broker
 *   refused: its error text is passed along, see pc_last_error), MG_ENOMEM.
 *
 * MEMORY is bounded: a producer's pending messages by max_pending_messages and
 *   max_pending_bytes (send blocks — the callback is delayed, nothing is dropped — or fails fast
 *   with MG_EAGAIN), a consumer's receive queue by receiver_queue_size (flow permits: the broker
 *   sends no more than asked).
 */
#ifndef MG_CLIENT_CLIENT_H
#define MG_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct pc_client pc_client;
typedef struct pc_producer pc_producer;
typedef struct pc_consumer pc_consumer;

/* --- message ids ---------------------------------------------------------------------------- */

/* A message's position: the entry (ledger, entry) and, in a batch, its index (-1 otherwise).
 * partition is the partition index for partitioned topics, -1 otherwise. */
typedef struct pc_message_id {
    int64_t ledger_id;
    int64_t entry_id;
    int32_t batch_index;
    int32_t batch_size; /* messages in its batch (0 when not batched) */
    int32_t partition;
} pc_message_id;

#define PC_MESSAGE_ID_EARLIEST ((pc_message_id){ -1, -1, -1, 0, -1 })
#define PC_MESSAGE_ID_LATEST   ((pc_message_id){ INT64_MAX, INT64_MAX, -1, 0, -1 })

/* Orders ids: negative, zero, positive (ledger, entry, batch index). */
int pc_message_id_cmp(const pc_message_id *a, const pc_message_id *b);
/* "ledger:entry:partition:batch_index" into dst (at least 64 bytes). */
void pc_message_id_format(const pc_message_id *id, char *dst, size_t cap);

/* --- client ---------------------------------------------------------------------------------- */

typedef struct pc_client_opts {
    const char *service_url;       /* "pulsar://host:port[,host:port...]"; required */
    uint32_t operation_timeout_ms; /* lookup, create producer, subscribe...; 0 = 30000 */
    uint32_t keepalive_s;          /* 0 = 30 */
    const char *auth_method_name;  /* e.g. "token"; NULL = none */
    const char *auth_data;         /* e.g. the token */
    const char *client_version;    /* sent in CONNECT; NULL = "magnetar-c <version>" */
} pc_client_opts;

/* Creates a client on loop (not yet connected: connections open on first use). MG_EINVAL (no
 * or bad service URL), MG_ENOMEM. */
int pc_client_create(uv_loop_t *loop, const pc_client_opts *opts, pc_client **out);

/* Closes every producer (pending sends fail with MG_ECLOSED) and consumer and connection, then
 * calls closed(arg) (may be NULL) and frees the client. Everything still pending completes with
 * MG_ECLOSED first, from the loop (never inside this call): creations (cb(MG_ECLOSED, NULL)),
 * sends, seeks, unsubscribes, closes, last-id requests. Producers and consumers must not be
 * used afterwards. Call it once. */
void pc_client_close(pc_client *c, void (*closed)(void *arg), void *arg);

/* The broker's error text of the last refused operation on this client ("" if none), for
 * messages to users. Valid until the next call. */
const char *pc_last_error(const pc_client *c);

/* --- messages -------------------------------------------------------------------------------- */

typedef struct pc_property {
    const char *key;
    const char *value;
} pc_property;

/* A message to send. Everything is copied by pc_send (the caller may free it on return). */
typedef struct pc_message {
    const void *payload;
    size_t payload_len;
    const char *key;               /* partition key (Key_Shared routing); NULL = none */
    const pc_property *properties; /* properties[0 .. property_count) */
    size_t property_count;
    int64_t event_time_ms; /* 0 = none */
} pc_message;

/* A received message: valid during the callback that hands it over (copy what you keep). */
typedef struct pc_received {
    pc_message_id id;
    const uint8_t *payload;
    size_t payload_len;
    const char *key; /* NULL = none (NUL-terminated copy) */
    size_t key_len;
    const pc_property *properties;
    size_t property_count;
    int64_t publish_time_ms;
    int64_t event_time_ms; /* 0 = none */
    uint32_t redelivery_count;
    const char *producer_name;
    const char *topic; /* the (partition) topic it came from */
} pc_received;

/* --- producers ------------------------------------------------------------------------------- */

/* The numbers of PulsarApi.proto's CompressionType (checked at compile time in producer.c). */
typedef enum pc_compression {
    PC_COMPRESSION_NONE = 0,
    PC_COMPRESSION_LZ4 = 1,
    PC_COMPRESSION_ZLIB = 2,
    PC_COMPRESSION_ZSTD = 3,
    PC_COMPRESSION_SNAPPY = 4,
} pc_compression;

typedef enum pc_access_mode {
    PC_ACCESS_SHARED = 0,
    PC_ACCESS_EXCLUSIVE = 1,
} pc_access_mode;

typedef struct pc_producer_opts {
    const char *topic;         /* required; short names mean persistent://public/default/x */
    const char *producer_name; /* NULL = chosen by the broker */
    pc_access_mode access_mode;
    bool batching;               /* default false (zero value); perf and Job workers set it */
    uint32_t batch_max_messages; /* 0 = 1000 */
    uint32_t batch_max_bytes;    /* 0 = 128 KiB */
    uint32_t batch_max_delay_ms; /* 0 = 1 (pulsar-perf's default batch time) */
    pc_compression compression;
    uint32_t max_pending_messages; /* 0 = 1000 (Pulsar's maxPendingMessages) */
    uint64_t max_pending_bytes;    /* 0 = 64 MiB */
    bool fail_if_full;             /* pc_send returns MG_EAGAIN instead of queueing past the
                                      limits (backpressure: the callback then waits) */
    uint32_t send_timeout_ms;      /* 0 = 30000; a send not acknowledged within it fails */
} pc_producer_opts;

typedef void (*pc_producer_cb)(int status, pc_producer *p, void *arg);
/* status MG_OK with the stored id, or the error (MG_ETIMEDOUT, MG_ECLOSED, MG_EPERM...). */
typedef void (*pc_send_cb)(int status, const pc_message_id *id, void *arg);

/* Creates a producer (lookup, then PRODUCER on the owner's connection). cb gets it or an
 * error and NULL (MG_EPERM when the broker refused: ProducerBusy, bad topic, the topic's backlog
 * quota exceeded with the producer_exception policy...; pc_last_error has the broker's text).
 * A topic over its backlog quota with the producer_request_hold policy does not refuse for
 * good: the creation is retried with backoff until the quota clears (the producer is then
 * created) or operation_timeout_ms passes (MG_EPERM). For a partitioned topic the producer
 * routes messages to partitions by key hash (round robin without key). */
int pc_producer_create(pc_client *c, const pc_producer_opts *opts, pc_producer_cb cb, void *arg);

/* Queues a message. Sequence ids are assigned in call order; callbacks run in call order.
 * When the pending limits are reached: with fail_if_full, MG_EAGAIN (nothing queued);
 * otherwise the message is held in the client until room frees (still bounded: at most
 * max_pending_messages more are held this way, then MG_EAGAIN). Errors returned: MG_EAGAIN,
 * MG_ECLOSED, MG_EINVAL (payload larger than the broker's max_message_size), MG_EPERM (the
 * topic was terminated: pending sends failed with MG_EPERM too; or the broker closed the
 * producer and refuses it again because the topic's backlog quota is exceeded with the
 * producer_exception policy: pending sends failed with MG_EPERM too, pc_last_error says why,
 * and sends work again once the producer is accepted). Under the producer_request_hold policy
 * sends are held instead, and complete once the quota clears or fail with MG_ETIMEDOUT after
 * send_timeout_ms. For a partitioned topic, order holds per partition. */
int pc_send(pc_producer *p, const pc_message *m, pc_send_cb cb, void *arg);

/* Sends the current batch now. */
void pc_producer_flush(pc_producer *p);

/* Messages queued and not yet acknowledged. */
size_t pc_producer_pending(const pc_producer *p);

/* Flushes, waits for pending sends (until send_timeout_ms), sends CLOSE_PRODUCER, frees. cb
 * may be NULL; it gets MG_OK (MG_ECLOSED when pc_client_close overtook it), from the loop. Call
 * it once; the producer must not be used afterwards. */
void pc_producer_close(pc_producer *p, void (*cb)(int status, void *arg), void *arg);

/* --- consumers and readers ----------------------------------------------------------------------
 */

typedef enum pc_sub_type {
    PC_SUB_EXCLUSIVE = 0,
    PC_SUB_SHARED = 1,
    PC_SUB_FAILOVER = 2,
    PC_SUB_KEY_SHARED = 3,
} pc_sub_type;

typedef enum pc_initial_position {
    PC_INITIAL_LATEST = 0,
    PC_INITIAL_EARLIEST = 1,
} pc_initial_position;

typedef void (*pc_message_cb)(pc_consumer *k, const pc_received *m, void *arg);
/* Failover: this consumer became active (true) or inactive (false). Changes the broker reports
 * before the subscription completed (cb) are not passed on. */
typedef void (*pc_active_cb)(pc_consumer *k, bool active, void *arg);
/* The topic was terminated and everything was received. */
typedef void (*pc_end_cb)(pc_consumer *k, void *arg);

typedef struct pc_consumer_opts {
    const char *topic;        /* required */
    const char *subscription; /* required for consumers; readers: NULL (a random name) */
    pc_sub_type type;
    pc_initial_position initial_position;
    const char *consumer_name; /* NULL = random */
    int32_t priority_level;
    uint32_t receiver_queue_size; /* flow permits; 0 = 1000 */
    uint32_t ack_group_ms;        /* acks are grouped and sent at most this often; 0 = 100,
                                     with at most 1000 ids per ACK */
    uint32_t nack_delay_ms;       /* negative acks are redelivered after it; 0 = 1000 */
    bool reader;                  /* a non-durable subscription starting at start_id */
    pc_message_id start_id;       /* readers: where to start (EARLIEST/LATEST or an id) */
    bool start_inclusive;         /* readers: deliver start_id itself */
    pc_message_cb on_message;     /* required */
    pc_active_cb on_active;       /* may be NULL */
    pc_end_cb on_end;             /* may be NULL */
    void *arg;                    /* for the three callbacks */
} pc_consumer_opts;

typedef void (*pc_consumer_cb)(int status, pc_consumer *k, void *arg);
typedef void (*pc_done_cb)(int status, void *arg);

/* Subscribes (lookup, SUBSCRIBE, FLOW receiver_queue_size). Messages arrive through
 * opts.on_message, one batch split into its messages (each with its batch index), with flow
 * permits replenished as the application receives them (half the queue at a time). cb gets
 * the consumer or an error and NULL (MG_EPERM: ConsumerBusy, bad topic...). For a partitioned
 * topic it subscribes to every partition. */
int pc_subscribe(pc_client *c, const pc_consumer_opts *opts, pc_consumer_cb cb, void *arg);

/* Acknowledges one message (a batch message: its bit; the entry is acknowledged when all are),
 * or everything up to id (cumulative; Exclusive and Failover only, else MG_EINVAL). Grouped:
 * sent within ack_group_ms. Batch messages use Pulsar's batch-index acks (an ack set where bit i
 * set = message i not yet acknowledged). Errors: MG_EINVAL (a bad id, or a partition this
 * consumer does not have), MG_ECLOSED, MG_ENOMEM. */
int pc_ack(pc_consumer *k, const pc_message_id *id);
int pc_ack_cumulative(pc_consumer *k, const pc_message_id *id);

/* Negative acknowledgement: the message is delivered again after nack_delay_ms (a batch message:
 * its whole batch is asked for again; the messages of it already acknowledged stay hidden).
 * With Exclusive and Failover subscriptions Pulsar brokers redeliver everything unacknowledged.
 * Errors as pc_ack. */
int pc_nack(pc_consumer *k, const pc_message_id *id);

/* Asks the broker to deliver every unacknowledged message again (messages received and not yet
 * handed to on_message are dropped: they come again). MG_ECLOSED. */
int pc_redeliver_unacked(pc_consumer *k);

/* Seeks the subscription to a message id or a publish time (milliseconds); messages already
 * received and not yet handed to on_message are dropped. cb: MG_OK or the error (may be NULL).
 * The broker then closes the consumer, which subscribes again at the new position. For a
 * partitioned topic an id with partition >= 0 seeks that partition, any other seek every one.
 * Errors returned: MG_EINVAL, MG_ECLOSED, MG_EAGAIN (a seek is in flight), MG_ECONNECTION (a
 * partition concerned is not connected now: try again), MG_ENOTSUP (pc_seek_time on a reader:
 * its position is an id). */
int pc_seek(pc_consumer *k, const pc_message_id *id, pc_done_cb cb, void *arg);
int pc_seek_time(pc_consumer *k, int64_t publish_time_ms, pc_done_cb cb, void *arg);

/* The last message id of the topic (GET_LAST_MESSAGE_ID). Errors returned: MG_EINVAL,
 * MG_ECLOSED, MG_EAGAIN (a request is in flight), MG_ECONNECTION (not connected now),
 * MG_ENOTSUP (a partitioned topic: there is no one last id). */
int pc_get_last_message_id(pc_consumer *k,
                           void (*cb)(int status, const pc_message_id *id, void *arg), void *arg);

/* Pauses / resumes delivery to on_message (permits are not replenished while paused). */
void pc_consumer_pause(pc_consumer *k);
void pc_consumer_resume(pc_consumer *k);

/* Unsubscribes (the subscription is deleted) and frees the consumer: cb(MG_OK) runs after it is
 * freed. When the broker refuses (e.g. ConsumerBusy: other consumers are connected), cb gets
 * the error (MG_EPERM, text in pc_last_error) and the consumer stays. Errors returned:
 * MG_ECLOSED (closed, or an unsubscribe in flight), MG_ECONNECTION (not connected now). */
int pc_unsubscribe(pc_consumer *k, pc_done_cb cb, void *arg);

/* Flushes grouped acks, sends CLOSE_CONSUMER, frees. cb may be NULL; it gets MG_OK (MG_ECLOSED
 * when pc_client_close overtook it), from the loop. The consumer must not be used afterwards. */
void pc_consumer_close(pc_consumer *k, pc_done_cb cb, void *arg);

#endif
