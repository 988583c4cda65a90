/*
 * Broker internals shared by server.c (connections, commands), topic.c (topics, producers,
 * publishing), sub.c (subscriptions, consumers, dispatch, acks) and admin.c (REST, metrics).
 *
 * OBJECTS AND OWNERSHIP
 *   br_broker  owns the listener, the list of connections and the topic table.
 *   br_conn    one client connection; owns its producers and consumers (by id) until they are
 *              closed. A connection is freed when its handle is closed and no asynchronous
 *              operation still refers to it (refs).
 *   br_topic   one persistent topic: its managed ledger (ml), its cursor group, its producers
 *              and subscriptions. Opened on first use (producer, consumer, admin), closed when
 *              the broker closes or the topic is deleted.
 *   br_sub     one subscription: its managed cursor, its consumers, and the dispatch state.
 *   br_producer, br_consumer  belong to a connection and a topic (subscription) at once; closing
 *              either side detaches them from both.
 *
 * DISPATCH (sub.c) — one model for all four subscription types
 *   Every entry delivered and not yet wholly acknowledged has a pending record in the
 *   subscription (pos -> consumer, message count, redelivery count). Entries to deliver again
 *   (consumer closed, negative ack, REDELIVER_UNACKNOWLEDGED, no permits left for the entry's
 *   consumer) keep their record with consumer NULL and are listed in the replay set, ordered by
 *   position. A dispatch round serves the replay set first (reading those entries again), then
 *   reads new entries at the cursor's read position; each entry goes to a consumer chosen by
 *   the type: the active consumer (Exclusive, Failover), round robin among consumers with
 *   permits (Shared), the owner of the key's hash (Key_Shared). An entry whose consumer cannot
 *   take it now joins the replay set, and so does every later entry for that consumer in the
 *   round, which keeps each consumer's (hence each key's) order.
 *
 * Threads: all on the broker's loop.
 */
#ifndef MG_BROKER_BROKER_INT_H
#define MG_BROKER_BROKER_INT_H

#include "broker/broker.h"
#include "broker/kop/kop.h"
#include "broker/limits.h"
#include "broker/namespace.h"
#include "cursor/limits.h"
#include "ledger/limits.h"
#include "metadata/limits.h"
#include "pulsar/wire.h"
#include "common/freelist.h"
#include "common/hist.h"
#include "common/list.h"
#include "common/listen.h"
#include "common/outq.h"
#include "cursor/cursor.h"
#include "metadata/metadata.h"
#include "prefetch/prefetch.h"
#include "proto/PulsarApi.pb-c.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Our newest protocol version (answered as min(ours, the client's)). */
#define BR_PROTOCOL_VERSION 19

typedef struct br_conn br_conn;
typedef struct br_topic br_topic;
typedef struct br_sub br_sub;
typedef struct br_producer br_producer;
typedef struct br_consumer br_consumer;

/* --- position map: open addressing, backward-shift deletion --------------------------------- */

typedef struct br_pending {
    ml_position pos;
    br_consumer *consumer; /* NULL: waiting in the replay set */
    uint32_t msgs;         /* messages in the entry (1 for a single message) */
    uint32_t redeliveries; /* times delivered again */
    bool used;
} br_pending;

typedef struct br_posmap {
    br_pending *slots;
    size_t cap; /* a power of two, or 0 */
    size_t count;
} br_posmap;

br_pending *br_posmap_get(br_posmap *m, ml_position pos);
/* Inserts (or returns the existing) record for pos. NULL when out of memory. */
br_pending *br_posmap_put(br_posmap *m, ml_position pos);
void br_posmap_del(br_posmap *m, ml_position pos);
void br_posmap_free(br_posmap *m);

/* A sorted set of positions (the replay set). */
typedef struct br_posset {
    ml_position *v;
    size_t count, cap;
} br_posset;

int br_posset_add(br_posset *s, ml_position pos); /* MG_OK (also when present), MG_ENOMEM */
bool br_posset_del(br_posset *s, ml_position pos);
void br_posset_free(br_posset *s);

/* --- broker ---------------------------------------------------------------------------------- */

#define BR_STATS_PERIOD_S    10
/* Command types are small numbers (up to 40 in PulsarApi.proto; newer ones below 64). */
#define BR_COMMAND_TYPES_MAX 64

/* Bundles per namespace (topic ownership, owner.c): Pulsar's default is 4; more bundles spread
 * a namespace's topics over more brokers. */
#define BR_BUNDLES 16

typedef struct br_owned {
    struct br_owned *next;
    char path[MD_PATH_BYTES_MAX];
} br_owned;

/* status MG_OK: owner_url NULL when this broker owns the topic's bundle, else the owner's
 * pulsar:// URL (valid during the call). Errors: metadata errors, MG_ECORRUPT. */
typedef void (*br_owner_cb)(int status, const char *owner_url, void *arg);
/* Finds (claiming it when nobody does) the owner of tn's bundle. cb may run inside the call
 * (when the bundle is known to be ours). MG_ENOMEM, metadata errors returned. */
int br_owner_find(br_broker *b, const pw_topic_name *tn, br_owner_cb cb, void *arg);
void br_bundle_path(const pw_topic_name *tn, char *dst, size_t cap);
/* As br_owner_find, for the Kafka shim: cb gets MG_OK and kafka_addr NULL when this broker owns
 * tn's bundle, or the owner's Kafka "host:port" (valid during the call); MG_ENOTFOUND when the
 * owner does not serve the Kafka protocol. */
typedef void (*br_owner_kafka_cb)(int status, const char *kafka_addr, void *arg);
int br_owner_kafka(br_broker *b, const pw_topic_name *tn, br_owner_kafka_cb cb, void *arg);
void br_owned_clear(br_broker *b);

typedef struct br_topic_table {
    br_topic **buckets;
    size_t bucket_count; /* a power of two */
    size_t count;
} br_topic_table;

struct br_broker {
    uv_loop_t *loop;
    ml_env *env;
    pf_env *pf; /* the caches every topic reads through */
    md_client *md;
    br_broker_opts opts;
    char host[64];
    char advertised[128];
    char service_url[192]; /* pulsar://advertised:port */
    char cluster[64];
    mg_listener *listener;
    bool listening;
    mg_link conns;
    uint32_t conn_count;
    br_topic_table topics;
    br_owned *owned;            /* bundles this broker owns */
    uint64_t next_producer_seq; /* for generated producer names */
    bool closing;
    uint32_t close_pending; /* connections and topics still closing */
    void (*closed_cb)(void *arg);
    void *closed_arg;
    uv_timer_t stats_timer;     /* rates every BR_STATS_PERIOD_S */
    uv_timer_t recv_wake_timer; /* resumes receive-budget waiters from the loop */

    /* Connection memory (server.c, "CONNECTION MEMORY"). */
    size_t out_budget_bytes; /* bytes queued to consumers, all connections */
    size_t out_bytes;        /* every connection's mg_outq adds its queued bytes here */
    size_t out_bytes_peak;
    bool out_paused;              /* a consumer waits because out_bytes reached the budget */
    mg_link out_waiters;          /* br_conn.out_wait_link: connections with out_blocked */
    uint32_t consumer_conn_count; /* connections with at least one consumer: shares */
    size_t recv_budget_bytes;     /* large receive buffers, all connections */
    size_t recv_bytes;            /* sum of br_conn.recv_held */
    size_t recv_bytes_peak;
    mg_link recv_waiters;       /* br_conn.recv_wait_link, in order of arrival */
    uint64_t refused_logged_ms; /* last warning about refused connections */
    uint64_t refused_unlogged;  /* refusals since */
    uv_timer_t out_stall_timer; /* while out_paused: closes consumers that stopped reading */
    uint64_t stalled_logged_ms; /* last warning about them */
    uint64_t stalled_unlogged;

    /* Metrics (NULL when opts.metrics is NULL). */
    mg_gauge *m_connections;
    mg_counter *m_conn_opened;
    mg_counter *m_conn_refused;
    mg_counter *m_conn_closed;
    mg_metric_family *m_proto_errors;                     /* label: reason */
    mg_metric_family *m_commands;                         /* label: type */
    mg_counter *m_command_counters[BR_COMMAND_TYPES_MAX]; /* looked up once per type */
    mg_histogram *m_publish_latency_us;
    mg_counter *m_refused_before_connect; /* magnetar_broker_refused_total{reason} */
    mg_counter *m_refused_not_reading;
    mg_counter *m_refused_connect_timeout;
    mg_gauge *m_mem_bytes[2]; /* [BR_MEM_OUT], [BR_MEM_RECV] */
    mg_gauge *m_mem_peak[2];
    mg_counter *m_mem_pauses[3]; /* BR_PAUSE_* */

    kop_server *kop; /* the Kafka port (broker/kop), NULL when off */

    /* Policies (policy.c): one timer per kind of periodic check. */
    uv_timer_t expiry_timer;
    uv_timer_t quota_timer;
    uv_timer_t retention_timer;
    mg_counter *m_expired;        /* magnetar_broker_expired_messages_total */
    mg_counter *m_evicted;        /* magnetar_broker_backlog_evicted_messages_total */
    mg_counter *m_quota_refusals; /* magnetar_broker_backlog_quota_producer_refusals_total */
    struct br_ns_cache *ns_cache; /* tenants' and namespaces' policies (namespace.c) */
};

enum { BR_MEM_OUT = 0, BR_MEM_RECV = 1 };
enum { BR_PAUSE_DISPATCH = 0, BR_PAUSE_RECEIVE = 1, BR_PAUSE_REPLIES = 2 };

/* --- connections ------------------------------------------------------------------------------ */

typedef enum br_conn_state {
    BR_CONN_AWAIT_CONNECT = 0,
    BR_CONN_READY = 1,
    BR_CONN_CLOSING = 2,
} br_conn_state;

struct br_conn {
    br_broker *b;
    mg_link link; /* in b->conns */
    uv_tcp_t tcp;
    uv_timer_t keepalive;
    br_conn_state state;
    int refs; /* the handle (1) + asynchronous operations holding the connection */
    int handles_open;
    int protocol_version;
    bool bem_supported; /* the client can parse the 0x0e02 prefix */
    bool reading;
    bool idle_ping_sent;
    uint64_t last_in_ms;
    uint64_t accepted_ms; /* loop time of the accept (BR_CONNECT_TIMEOUT_MS runs from it) */
    char peer[64];
    char client_version[64];

    mg_buf *rbuf; /* receive buffer: [rpos, len) not parsed yet */
    size_t rpos;
    size_t rwant; /* length of the frame being received, when known and larger than rbuf */
    mg_outq out;

    mg_link producers; /* br_producer.conn_link */
    mg_link consumers; /* br_consumer.conn_link */
    uint32_t pending_sends;
    /* Released send contexts (topic.c, one per SEND until its receipt), kept for the next SENDs
     * of this connection: at most BR_CONN_SEND_POOL_MAX, freed with the connection (every
     * context holds a reference to the connection, so none is in use by then). */
    mg_freelist send_pool;
    /* Ids of the producers the broker closed last (CLOSE_PRODUCER), a ring. */
    uint64_t closed_producers[BR_CONN_CLOSED_PROD_MAX];
    uint32_t closed_producer_count; /* recorded ever; the ring keeps the last ones */
    bool paused_sends;              /* reading stopped for pending_sends */
    bool out_blocked; /* some consumer waits for the output queue to drain (in out_waiters) */
    mg_link out_wait_link;
    bool paused_recv; /* reading stopped: no room in the receive budget (in recv_waiters) */
    mg_link recv_wait_link;
    size_t recv_need;         /* the receive buffer paused_recv waits for */
    size_t recv_held;         /* receive budget taken by rbuf (0 for a BR_READ_BUF_BYTES one) */
    bool paused_replies;      /* reading stopped: the peer does not read what it asked for */
    uint64_t out_progress_ms; /* loop time of the last write completion, or of the first push
                                 to an empty output queue */
};

/* Queues a frame (takes its own reference) and flushes. On failure closes the connection. */
void br_conn_send(br_conn *c, mg_buf *frame);
/* Queues a frame built from a command. */
void br_conn_send_cmd(br_conn *c, const Magnetar__Pulsar__BaseCommand *cmd);
void br_conn_send_error(br_conn *c, uint64_t request_id, Magnetar__Pulsar__ServerError err,
                        const char *message);
void br_conn_send_success(br_conn *c, uint64_t request_id);
/* Whether the connection already holds BR_CONN_HANDLES_MAX producers (or consumers); if so it
 * answers the request with TooManyRequests itself. */
bool br_conn_handles_full(br_conn *c, uint64_t request_id, bool producers);
/* Queues slices (a MESSAGE head and an entry) without flushing; br_conn_flush after a batch. */
int br_conn_queue(br_conn *c, const mg_slice *slices, size_t count);
void br_conn_flush(br_conn *c);
/* Whether dispatch may queue more to the connection: its output queue is below its share of
 * the broker's output budget, and the budget is not used up (or the connection has written
 * everything it was given and the small reserve past the budget is not used up either: a
 * consumer that reads is never starved by ones that do not). */
bool br_conn_writable(const br_conn *c);
/* The bytes dispatch may still queue to the connection (0 when not writable). */
size_t br_conn_out_room(const br_conn *c);
/* Dispatch to a consumer of c waits for room: br_conn_out_drained(c) is called once c's queue
 * drained or the broker's budget has room again. */
void br_conn_out_wait(br_conn *c);
/* A consumer joined (first) or left (last) the connection: the output shares change. */
void br_conn_consumers_changed(br_conn *c, bool has_consumers);
void br_conn_ref(br_conn *c);
void br_conn_unref(br_conn *c);
/* Closes the connection (protocol error or shutdown); reason is logged. */
void br_conn_close(br_conn *c, const char *reason);
void br_conn_count_proto_error(br_broker *b, const char *reason);

/* --- topics ------------------------------------------------------------------------------------
 */

typedef enum br_topic_state {
    BR_TOPIC_OPENING = 0,
    BR_TOPIC_OPEN = 1,
    BR_TOPIC_FAILED = 2, /* open failed or fenced: refuses new work, closes when unused */
    BR_TOPIC_CLOSING = 3,
} br_topic_state;

typedef void (*br_topic_cb)(int status, br_topic *t, void *arg);

typedef struct br_topic_waiter {
    struct br_topic_waiter *next;
    br_topic_cb cb;
    void *arg;
} br_topic_waiter;

struct br_topic {
    br_broker *b;
    br_topic *hash_next;
    pw_topic_name name;
    char ml_name[ML_NAME_BYTES_MAX];
    br_topic_state state;
    int open_status;
    ml_managed *ml;
    pf_topic *pf; /* the topic's caches; NULL while ml is */
    mc_group *group;
    br_topic_waiter *waiters;
    mg_link producers;       /* br_producer.topic_link */
    mg_link subs;            /* br_sub.topic_link */
    int refs;                /* waiters, sends in flight, subscription operations, admin requests */
    uint32_t sends_inflight; /* ml_add accepted, its callback not yet run */
    bool exclusive_producer;
    bool deleting;
    void (*closed_cb)(int status, void *arg);
    void *closed_arg;

    /* Stats. */
    uint64_t msg_in, bytes_in, msg_out, bytes_out;
    uint64_t msg_in_prev, bytes_in_prev, msg_out_prev, bytes_out_prev;
    double rate_in, throughput_in, rate_out, throughput_out;

    struct kop_topic *kop; /* the Kafka shim's state of the topic (broker/kop), NULL until used */

    /* Policies (policy.c). */
    bool expiring;       /* a search by time for expiry runs (TTL or backlog age) */
    bool age_reading;    /* the read of the oldest unacknowledged entry runs */
    ml_position age_pos; /* the entry age_ts_ms belongs to; ledger_id -1: none known */
    int64_t age_ts_ms;   /* its broker timestamp */
    bool quota_exceeded; /* the backlog quota was exceeded at the last check (logged once) */
};

/* Finds or opens the topic (full name). cb runs once the topic is open (at once, inside the
 * call, when it already is) with MG_OK, or with the open's error. MG_ELIMIT (too many topics),
 * MG_ENOMEM, MG_ECLOSED (broker closing) returned. */
int br_topic_get(br_broker *b, const pw_topic_name *name, br_topic_cb cb, void *arg);
br_topic *br_topic_find(br_broker *b, const char *full_name);
void br_topic_ref(br_topic *t);
void br_topic_unref(br_topic *t);
/* Closes every producer and consumer of the topic (telling their clients to look it up again),
 * closes cursors and the managed ledger, and removes the topic; with delete_data the managed
 * ledger's ledgers and metadata and the cursors are deleted. cb may be NULL. */
void br_topic_close(br_topic *t, bool delete_data, void (*cb)(int status, void *arg), void *arg);
br_sub *br_topic_sub_find(br_topic *t, const char *name);
void br_topic_stats_tick(br_topic *t, double period_s);
/* Deletes a topic that is not open: its managed ledger's ledgers and metadata. */
int br_topic_delete_stored(br_broker *b, const pw_topic_name *name,
                           void (*cb)(int status, void *arg), void *arg);

/* --- producers -------------------------------------------------------------------------------- */

struct br_producer {
    br_conn *conn;
    br_topic *topic; /* NULL until the topic opened */
    mg_link conn_link;
    mg_link topic_link;
    uint64_t id;
    char name[BR_NAME_BYTES_MAX];
    int access_mode;
    bool ready;
    bool closing;
    int64_t last_sequence_id;
    uint64_t msg_in, bytes_in;
    uint64_t msg_in_prev, bytes_in_prev;
    double rate_in, throughput_in;
    int64_t connected_since_ms;
};

void br_handle_producer(br_conn *c, const Magnetar__Pulsar__CommandProducer *cmd);
void br_handle_send(br_conn *c, const pw_frame *f, const uint8_t *frame, size_t frame_off);
void br_handle_close_producer(br_conn *c, const Magnetar__Pulsar__CommandCloseProducer *cmd);
br_producer *br_conn_producer(br_conn *c, uint64_t id);
/* Detaches and frees a producer (connection gone or topic closing). notify: tell the client
 * (CLOSE_PRODUCER) so it looks the topic up again. */
void br_producer_drop(br_producer *p, bool notify);

/* --- subscriptions and consumers ---------------------------------------------------------------
 */

typedef enum br_sub_type {
    BR_SUB_EXCLUSIVE = 0,
    BR_SUB_SHARED = 1,
    BR_SUB_FAILOVER = 2,
    BR_SUB_KEY_SHARED = 3,
} br_sub_type;

struct br_consumer {
    br_conn *conn;
    br_sub *sub; /* NULL until subscribed */
    mg_link conn_link;
    mg_link sub_link;
    uint64_t id;
    char name[BR_NAME_BYTES_MAX];
    int priority;
    int64_t permits;       /* messages the client can take now (may go below 0 with batches) */
    uint64_t unacked_msgs; /* messages delivered and not acknowledged */
    bool wants_bem;        /* send the 0x0e02 prefix */
    bool ready;
    bool active;        /* Failover: the active consumer */
    bool blocked_round; /* dispatch: an entry for it was deferred this round */
    bool closing;
    bool end_sent; /* REACHED_END_OF_TOPIC sent */
    br_sub_type requested_type;
    uint64_t pending_request_id; /* SUBSCRIBE answered once the subscription opened */
    uint64_t msg_out, bytes_out;
    uint64_t msg_out_prev, bytes_out_prev;
    double rate_out, throughput_out;
    int64_t connected_since_ms;
    uint32_t ring_points[BR_KEY_RING_POINTS]; /* Key_Shared hash ring positions */
};

typedef struct br_ring_point {
    uint32_t h;
    br_consumer *k;
} br_ring_point;

struct br_sub {
    br_topic *topic;
    mg_link topic_link;
    char name[MC_NAME_BYTES_MAX];
    br_sub_type type;
    bool durable;
    mc_cursor *cursor; /* NULL while opening */
    pf_reader *reader; /* reads the cursor through the topic's caches; with cursor */
    bool opening;
    bool closing;
    bool reading;   /* a read of the cursor or of the replay set is in flight */
    bool caught_up; /* the last read found nothing new: wait for an add */
    bool resetting; /* a SEEK or reset of the cursor runs: no dispatch until it is done */
    bool dispatch_scheduled;
    mg_link consumers; /* br_consumer.sub_link, in arrival order */
    uint32_t consumer_count;
    br_consumer *rr_next; /* Shared: next consumer of the round robin */
    br_ring_point *ring;  /* Key_Shared: every ready consumer's points, sorted */
    size_t ring_len;
    br_posmap pending; /* delivered or waiting for redelivery, not wholly acknowledged */
    br_posset replay;  /* positions waiting for redelivery */
    uint64_t msg_out, bytes_out;
    uint64_t msg_out_prev, bytes_out_prev;
    double rate_out, throughput_out;
    uint64_t msg_redelivered;
    uint64_t msg_expired; /* messages expired by the TTL (policy.c) */
    uint64_t msg_expired_prev;
    double rate_expired;
    double avg_entry_msgs; /* messages per entry dispatched (a moving average): sizes reads */
    /* The read position is in lost ledger stuck_ledger_id (ml_ledger_lost) and the cursor does
     * not skip lost ledgers: no read until a skip, an ack or a reset moves it out (logged once
     * per ledger). */
    bool stuck_lost;
    int64_t stuck_ledger_id;
    int refs;          /* reads and operations in flight */
    bool close_delete; /* closing while opening: what to do once open */
    void (*close_cb)(int status, void *arg);
    void *close_arg;
};

void br_handle_subscribe(br_conn *c, const Magnetar__Pulsar__CommandSubscribe *cmd);
void br_handle_flow(br_conn *c, const Magnetar__Pulsar__CommandFlow *cmd);
void br_handle_ack(br_conn *c, const Magnetar__Pulsar__CommandAck *cmd);
void br_handle_redeliver(br_conn *c,
                         const Magnetar__Pulsar__CommandRedeliverUnacknowledgedMessages *cmd);
void br_handle_seek(br_conn *c, const Magnetar__Pulsar__CommandSeek *cmd);
void br_handle_unsubscribe(br_conn *c, const Magnetar__Pulsar__CommandUnsubscribe *cmd);
void br_handle_close_consumer(br_conn *c, const Magnetar__Pulsar__CommandCloseConsumer *cmd);
void br_handle_get_last_message_id(br_conn *c,
                                   const Magnetar__Pulsar__CommandGetLastMessageId *cmd);
br_consumer *br_conn_consumer(br_conn *c, uint64_t id);
/* Detaches and frees a consumer; its unacknowledged entries go to the replay set. notify: tell
 * the client (CLOSE_CONSUMER). */
void br_consumer_drop(br_consumer *k, bool notify);
/* A new entry was added to the topic: wake caught-up subscriptions. */
void br_topic_entries_added(br_topic *t);
/* The connection's output drained: resume dispatch to its consumers. */
void br_conn_out_drained(br_conn *c);
/* Closes a subscription (its consumers dropped with notify); delete: the cursor is deleted. */
void br_sub_close(br_sub *s, bool delete_cursor, void (*cb)(int status, void *arg), void *arg);
/* Terminates the topic (no message can be added any more): producers are closed, consumers that
 * read everything are told REACHED_END_OF_TOPIC. cb gets the last position. */
int br_topic_terminate(br_topic *t, ml_find_cb cb, void *arg);
/* Admin operations on a subscription. */
int br_sub_skip(br_sub *s, int64_t messages, void (*cb)(int status, void *arg), void *arg);
int br_sub_reset_to_time(br_sub *s, int64_t timestamp_ms, void (*cb)(int status, void *arg),
                         void *arg);
/* Acknowledges everything up to pos (with ack_set: up to just before pos, whose messages
 * whose bit is clear are acknowledged too) and writes the cursor; cb after the write. For
 * Kafka offset commits moving forward; acked_msgs >= 0: the exact count of messages now
 * acknowledged (mc_set_acked_messages). MG_ESTATE while the cursor opens or resets. */
int br_sub_ack_upto(br_sub *s, ml_position pos, const uint64_t *ack_set, size_t words,
                    int64_t acked_msgs, void (*cb)(int status, void *arg), void *arg);
/* Moves the mark-delete position to just before pos and the read position to pos, every
 * acknowledgement above cleared (persisted before cb), as a reset by time does. */
int br_sub_reset_to_position(br_sub *s, ml_position pos, void (*cb)(int status, void *arg),
                             void *arg);
/* Opens (creating at initial if new) the durable subscription name without consumers: stored
 * subscriptions at topic open, and the admin API. MG_EEXIST when it is open already. */
int br_sub_open_durable(br_topic *t, const char *name, mc_initial initial,
                        void (*cb)(int status, void *arg), void *arg);
const char *br_sub_type_name(br_sub_type type);

/* --- policies (policy.c) ------------------------------------------------------------------- */

/* A topic's policies in force: its namespace's values where set, else the broker's defaults. */
typedef struct br_policy {
    int64_t retention_time_ms;   /* ml_config's meaning: -1 forever, 0 none */
    int64_t retention_bytes;     /* -1 unlimited, 0 none */
    int64_t ttl_s;               /* 0 = no TTL */
    int64_t backlog_limit_bytes; /* destination_storage; -1 = none */
    br_backlog_policy backlog_size_policy;
    int64_t backlog_limit_s; /* message_age; -1 = none */
    br_backlog_policy backlog_age_policy;
} br_policy;

void br_policy_effective(br_topic *t, br_policy *out);
/* Starts the periodic checks of a broker (br_broker_start). */
void br_policy_start(br_broker *b);
/* Closes the timers: each calls done(its handle) once closed (br_broker_close). Returns how
 * many handles close. */
int br_policy_close(br_broker *b, uv_close_cb done);
/* A topic finished opening: its retention applied, TTL and backlog quota checked. */
void br_policy_topic_opened(br_topic *t);
/* A producer asks to join t: the backlog quota's verdict. Returns 0 to accept, else the
 * ServerError to refuse with (ProducerBlockedQuotaExceededError / ...Exception), *message
 * saying why (static text). */
int br_policy_producer_refusal(br_topic *t, const char **message);
/* The topic's backlog in bytes: from the slowest durable subscription's mark-delete position to
 * the end (entry sizes estimated per ledger, as stored; 0 without durable subscriptions). */
int64_t br_topic_backlog_bytes(br_topic *t);

/* --- lookup and namespaces (lookup.c) -------------------------------------------------------- */

void br_handle_lookup(br_conn *c, const Magnetar__Pulsar__CommandLookupTopic *cmd);
void br_handle_partitioned_metadata(br_conn *c,
                                    const Magnetar__Pulsar__CommandPartitionedTopicMetadata *cmd);
void br_handle_topics_of_namespace(br_conn *c,
                                   const Magnetar__Pulsar__CommandGetTopicsOfNamespace *cmd);

/* --- tenants, namespaces and the policy cache (namespace.c) --------------------------------- */

/* What a Pulsar client is told (TopicNotFound) for a topic of a namespace that does not exist,
 * as Pulsar answers it. */
#define BR_NS_NOT_FOUND_MESSAGE "Namespace not found"

typedef void (*br_ns_cb)(int status, void *arg);
/* Whether namespace tenant/ns exists: cb(MG_OK) when it does (its policies are then in the
 * cache, br_ns_policies_find), cb(MG_ENOTFOUND) when it does not or is being deleted, or the
 * metadata error. Called before a topic is opened and before a lookup answers. cb may run
 * inside the call (the namespace is cached). Returns MG_ECLOSED (broker closing), MG_ENOMEM,
 * MG_ELIMIT (BR_NAMESPACES_CACHED_MAX namespaces cached), a metadata error; then cb is not
 * called. */
int br_ns_check(br_broker *b, const char *tenant, const char *ns, br_ns_cb cb, void *arg);
/* Sets up the cache and creates public/default when missing (asynchronously; checks wait for
 * the first attempt). MG_ENOMEM. */
int br_ns_start(br_broker *b);
/* Drops the cache (checks waiting get MG_ECLOSED); closed_cb once its timer closed. */
void br_ns_close(br_broker *b, void (*closed_cb)(void *arg), void *arg);
/* Adds the routes of /admin/v2/tenants, /admin/v2/namespaces and the topics' applied policies. */
int br_namespace_admin_register(br_broker *b, mg_http_server *http);

/* --- admin API (admin.c) --------------------------------------------------------------------- */

/* Checks one path parameter before it is put into a topic name: present (NULL passes: the route
 * has no such parameter), non-empty, within max bytes, without a '/' (a decoded "%2F"). Writes
 * the reason into err and returns false when it is not. */
bool br_admin_name_param_ok(const char *value, const char *what, size_t max, char *err,
                            size_t err_size);
/* The op of br_admin_args_parse that parses the names and the query only. */
#define BR_ADMIN_OP_NONE (-1)
/* Reads the partitioned-topic node's path of tn (lookup.c). MG_ELIMIT when it does not fit. */
int br_partitioned_path(const pw_topic_name *tn, char *dst, size_t cap);

/* What an admin request names and asks, parsed and checked before any work. */
typedef struct br_admin_args {
    pw_topic_name tn;            /* {tenant}/{namespace}/{topic} ("x" when the route has none) */
    char sub[MC_NAME_BYTES_MAX]; /* {sub}, "" when the route has none */
    bool force;                  /* ?force=true */
    int64_t arg;                 /* skip/{n}, resetcursor/{timestamp} */
    int partitions;              /* the body of PUT .../partitions */
    ml_position pos;             /* a message-id body ({"ledgerId":L,"entryId":E}); ledger_id -1
                                    with entry_id -1: earliest; INT64_MAX: latest; has_pos false:
                                    no body */
    bool has_pos;
    bool excluded; /* the body's "isExcluded": start after pos, not at it */
} br_admin_args;

/* Route i of the admin API (0, 1, ... until it returns false): its method and pattern, as
 * br_broker_admin_register registers them, and the op its handler parses for (pass it to
 * br_admin_args_parse). For the fuzz target, which routes requests through the same table. */
bool br_admin_route(size_t i, const char **method, const char **pattern, int *op);

/* Parses req's path parameters, query and body for op into *out, as every admin handler does
 * before it touches the broker. Returns 0, or the HTTP status the handler answers (412) with the
 * reason in err (cut to err_size > 0). Pure: reads req only; req's loop thread. */
int br_admin_args_parse(const mg_http_request *req, int op, br_admin_args *out, char *err,
                        size_t err_size);

#endif
