/*
 * The Kafka-protocol shim (KoP) inside the broker: Kafka clients produce to and fetch from the
 * same managed ledgers as Pulsar clients (../shared/ARCHITECTURE.md §5, docs/kafka.md). The wire
 * codec is src/kafka (kw_*); this part knows connections, topics and groups.
 *
 * FILES
 *   server.c    the listener on --kafka-port, connections, framing, responses in request order,
 *               ApiVersions, the dispatch table, metrics
 *   topics.c    Kafka topic and partition -> Pulsar topic, Metadata, CreateTopics, DeleteTopics
 *   produce.c   Produce (record batch -> one entry, a Pulsar batch), InitProducerId, idempotence
 *   fetch.c     Fetch (entries -> record batches; readers through the prefetcher; long polling),
 *               ListOffsets
 *   convert.c   a record batch <-> a Pulsar batch payload
 *   group.c     the group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 *               LeaveGroup, DescribeGroups, ListGroups
 *   offsets.c   OffsetCommit and OffsetFetch: a group's offsets are durable subscriptions
 *
 * ONE LOG. A Kafka topic t is persistent://public/default/t; partition N of a partitioned topic
 * is t-partition-N, a non-partitioned topic is partition 0. A Kafka offset is the
 * BrokerEntryMetadata index of a message; an entry holding n messages with index i holds offsets
 * i - n + 1 .. i. The high watermark is ml_messages_total (adds acknowledged by the bookies).
 *
 * REQUESTS. Every request of a connection gets a kop_req in arrival order; a handler answers it
 * at once or later (kop_reply_*), and answers go out in request order, as Kafka clients expect.
 * A request holds a reference to the receive buffer its bytes are in, so a handler may keep
 * pointers into the request (kw_str) until it answers.
 *
 * Threads: all on the broker's loop.
 */
#ifndef MG_BROKER_KOP_KOP_INT_H
#define MG_BROKER_KOP_KOP_INT_H

#include "broker/broker_int.h"
#include "broker/kop/kop.h"
#include "kafka/wire.h"
#include "common/list.h"
#include "common/metrics.h"
#include "common/outq.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Requests of a connection read and not yet answered: past it the connection is not read from
 * until some are answered (librdkafka keeps at most 5 in flight per connection by default). */
#define KOP_CONN_REQUESTS_MAX           64u
/* Bytes of requests a connection holds unanswered (their receive buffers stay referenced until
 * the answer): past it the connection is not read from until half are answered. Above the
 * largest request, so one always gets through. */
#define KOP_CONN_REQUEST_BYTES_HELD_MAX (128u * 1024 * 1024)
/* Requests to other brokers in flight (forward.c), each a connection of its own: past it an
 * offsets request for a partition owned elsewhere is answered COORDINATOR_NOT_AVAILABLE and the
 * client retries. */
#define KOP_FORWARDS_MAX                256u
/* Receive buffers: frames up to this size are read into a buffer of it. */
#define KOP_READ_BUF_BYTES              (256u * 1024)
/* The largest request frame accepted (Kafka's socket.request.max.bytes is 100 MiB; a produce
 * request carries at most message.max.bytes per partition, Kafka's default 1 MiB). */
#define KOP_REQUEST_BYTES_MAX           (64u * 1024 * 1024)
/* Fetch readers one connection keeps (one per partition it fetches). */
#define KOP_CONN_READERS_MAX            4096u
/* A reader nobody fetched through for this long is closed. */
#define KOP_READER_IDLE_MS              60000u
/* A fetch waits at most this long, whatever the client asks (Kafka clients ask 500 ms). */
#define KOP_FETCH_WAIT_MS_MAX           30000
/* Entries read per partition and fetch round, and the bytes a fetch answers at most. */
#define KOP_FETCH_ENTRIES_MAX           500
#define KOP_FETCH_BYTES_MAX             (50u * 1024 * 1024)
/* Bytes of record batches read ahead for the next fetches of catching-up readers, the whole
 * server (fetch.c, "READ AHEAD"): a few dozen lagging consumers at librdkafka's 1 MiB per
 * partition fetch. */
#define KOP_READ_AHEAD_BYTES_MAX        (64u * 1024 * 1024)
/* Producer ids are taken from the metadata store's id sequence "kafka-producer-ids". */
#define KOP_PRODUCER_ID_SEQ             "kafka-producer-ids"

/* Kafka error codes the shim answers with (Kafka's protocol guide numbers them). */
#define KE_NONE                           0
#define KE_OFFSET_OUT_OF_RANGE            1
#define KE_CORRUPT_MESSAGE                2
#define KE_UNKNOWN_TOPIC_OR_PARTITION     3
#define KE_INVALID_FETCH_SIZE             4
#define KE_LEADER_NOT_AVAILABLE           5
#define KE_NOT_LEADER_OR_FOLLOWER         6
#define KE_REQUEST_TIMED_OUT              7
#define KE_MESSAGE_TOO_LARGE              10
#define KE_COORDINATOR_LOAD_IN_PROGRESS   14
#define KE_COORDINATOR_NOT_AVAILABLE      15
#define KE_NOT_COORDINATOR                16
#define KE_INVALID_TOPIC_EXCEPTION        17
#define KE_RECORD_LIST_TOO_LARGE          18
#define KE_NOT_ENOUGH_REPLICAS            19
#define KE_INVALID_REQUIRED_ACKS          21
#define KE_ILLEGAL_GENERATION             22
#define KE_INCONSISTENT_GROUP_PROTOCOL    23
#define KE_INVALID_GROUP_ID               24
#define KE_UNKNOWN_MEMBER_ID              25
#define KE_INVALID_SESSION_TIMEOUT        26
#define KE_REBALANCE_IN_PROGRESS          27
#define KE_INVALID_COMMIT_OFFSET_SIZE     28
#define KE_TOPIC_AUTHORIZATION_FAILED     29
#define KE_UNSUPPORTED_VERSION            35
#define KE_TOPIC_ALREADY_EXISTS           36
#define KE_INVALID_PARTITIONS             37
#define KE_INVALID_REPLICATION_FACTOR     38
#define KE_INVALID_REQUEST                42
#define KE_UNSUPPORTED_FOR_MESSAGE_FORMAT 43
#define KE_OUT_OF_ORDER_SEQUENCE_NUMBER   45
#define KE_DUPLICATE_SEQUENCE_NUMBER      46
#define KE_INVALID_PRODUCER_EPOCH         47
#define KE_INVALID_TXN_STATE              48
#define KE_UNKNOWN_SERVER_ERROR           (-1)
#define KE_NON_EMPTY_GROUP                68
#define KE_GROUP_ID_NOT_FOUND             69
#define KE_MEMBER_ID_REQUIRED             79
#define KE_UNKNOWN_PRODUCER_ID            59
#define KE_KAFKA_STORAGE_ERROR            56

typedef struct kop_conn kop_conn;
typedef struct kop_req kop_req;
typedef struct kop_topic kop_topic;
typedef struct kop_reader kop_reader;
typedef struct kop_groups kop_groups;
typedef void kop_handler_fn(kop_req *q, kw_reader *r);

/* Per API key served: metrics children looked up once. */
typedef struct kop_api_stats {
    mg_counter *requests;
    mg_counter *errors;
    mg_histogram *latency_us;
} kop_api_stats;

#define KOP_API_KEYS_MAX 64

struct kop_server {
    br_broker *b;
    uv_loop_t *loop;
    mg_listener *listener;
    uint16_t port;
    char advertised[128];
    int32_t node_id; /* kop_node_id of advertised:port */
    mg_link conns;
    uint32_t conn_count;
    uint64_t next_conn_id;
    bool closing;
    uint32_t close_pending;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    kop_groups *groups;
    uv_timer_t sweep;       /* closes idle readers */
    mg_link forwards;       /* forward.c's requests in flight */
    uint32_t forwards_open; /* and those whose handles still close */

    size_t ahead_bytes;    /* read ahead by the readers (fetch.c) */
    uint32_t readers_open; /* readers not freed yet (their cursors may still be closing) */

    /* Metrics (NULL when the broker has none). */
    kop_api_stats api[KOP_API_KEYS_MAX];
    mg_counter *m_unknown_api;
    mg_metric_family *m_proto_errors; /* label: reason */
    mg_gauge *m_connections;
    mg_counter *m_records_in;
    mg_counter *m_records_out;
};

struct kop_conn {
    kop_server *k;
    mg_link link; /* in k->conns */
    uint64_t id;
    uv_tcp_t tcp;
    int refs; /* the handle + requests + asynchronous operations */
    bool closing;
    bool reading;
    bool paused; /* too many requests unanswered */
    char peer[64];
    char client_id[64];
    mg_buf *rbuf; /* [rpos, len) not parsed yet */
    size_t rpos;
    mg_outq out;
    mg_link reqs; /* kop_req.link, in arrival order */
    uint32_t req_count;
    size_t req_bytes; /* frame bytes of those requests */
    mg_link readers;  /* kop_reader.conn_link */
    uint32_t reader_count;
};

struct kop_req {
    kop_conn *c;
    mg_link link;
    int16_t api_key, version;
    int32_t corr;
    uint64_t start_ns;
    mg_buf *frame_buf; /* holds the request's bytes (a reference) */
    const uint8_t *body;
    size_t body_len;
    size_t frame_len;
    mg_buf *resp;        /* the answer once ready (NULL: none yet, or none to send) */
    mg_buf **resp_parts; /* or the answer in pieces (kop_reply_parts), resp_count of them */
    size_t resp_count;
    bool done;
    bool error;          /* answered with an error somewhere (counted) */
    bool forwarded;      /* sent by another broker on behalf of a coordinator (forward.c) */
    int16_t coord_error; /* group APIs: NOT_COORDINATOR when another broker coordinates the
                            group, COORDINATOR_NOT_AVAILABLE when that is not known */
    kop_handler_fn *handler;
};

/* --- server.c -------------------------------------------------------------------------------- */

/* Frees the server once it closes and nothing is left (connections, forwarded requests). */
void kop_server_maybe_closed(kop_server *k);
/* The server closes: forwarded requests in flight fail (MG_ECLOSED) from the loop. */
void kop_forwards_close(kop_server *k);
void kop_conn_ref(kop_conn *c);
void kop_conn_unref(kop_conn *c);
void kop_conn_close(kop_conn *c, const char *reason);
/* Counts a protocol error by reason (a metric label) and closes the connection. */
void kop_conn_proto_error(kop_conn *c, const char *reason, const char *detail);

/* Starts the answer of q: w gets [size][correlation id] (response header v0), the handler writes
 * the body and calls kop_reply_end. */
void kop_reply_begin(kop_req *q, kw_writer *w);
/* Finishes the answer (frees w's buffer into the answer) and sends what is ready, in order.
 * A writer error closes the connection. */
void kop_reply_end(kop_req *q, kw_writer *w);
/* Finishes the answer given in n pieces sent one after the other (parts and the buffers are
 * taken over; parts is mg_malloc'd): the first starts with [size][correlation id], its size
 * already covering every piece. For Fetch, whose record batches go out without a copy. */
void kop_reply_parts(kop_req *q, mg_buf **parts, size_t n);
/* Finishes a request that gets no answer (Produce with acks 0). */
void kop_reply_none(kop_req *q);
/* Marks q as answered with an error code (the metrics count it). */
static inline void kop_req_error(kop_req *q, int16_t code)
{
    if (code != KE_NONE)
        q->error = true;
}

/* Reads the array every partition-level request has, `topics` entries of [name, [fields of a
 * partition]]: for each partition, one more element of elem bytes at the end of *v (its count
 * and capacity in *count and *cap, grown by doubling), zeroed, then read(element, topic name, r,
 * arg) reads the partition's fields. At most max partitions in all. Sets the reader's error:
 * MG_EPROTO for a negative count or one past max, MG_ENOMEM. */
typedef void (*kop_partition_read_fn)(void *element, kw_str topic, kw_reader *r, void *arg);
void kop_read_partitions(kw_reader *r, int32_t topics, void **v, size_t *count, size_t *cap,
                         size_t elem, size_t max, kop_partition_read_fn read, void *arg);

/* --- topics.c --------------------------------------------------------------------------------- */

/* The Kafka node id of a broker's Kafka address "host:port": brokers have no numbers of their
 * own, so each is named by a 31-bit hash of its address, the same on every broker. */
int32_t kop_node_id(const char *addr);

/* What a Kafka (topic, partition) resolves to. */
typedef void (*kop_resolve_cb)(int16_t error, br_topic *t, void *arg);
/* Checks a Kafka topic name (Kafka's rules: 1..249 of [a-zA-Z0-9._-], not "." or ".."), writes
 * the Pulsar topic of its partition into out. KE_INVALID_TOPIC_EXCEPTION or KE_NONE. */
int16_t kop_topic_name(const char *name, size_t len, int32_t partition, pw_topic_name *out);
/* Finds the partitions of topic name: cb(error, partitions) with 0 for a non-partitioned topic
 * that exists, -1 when the topic does not exist. */
typedef void (*kop_partitions_cb)(int status, int partitions, void *arg);
int kop_topic_partitions(kop_server *k, const char *name, kop_partitions_cb cb, void *arg);
/* Opens the Pulsar topic of (name, partition), creating it when create is set and it does not
 * exist (as the first produce of Kafka and Pulsar does). cb gets KE_NONE and the open topic, or a
 * Kafka error (KE_UNKNOWN_TOPIC_OR_PARTITION, KE_NOT_LEADER_OR_FOLLOWER, ...). cb may run
 * inside the call. */
void kop_partition_open(kop_server *k, const char *name, size_t len, int32_t partition, bool create,
                        kop_resolve_cb cb, void *arg);
/* The Pulsar topic of (name, partition) when it exists (metadata read, nothing opened or
 * created): cb(KE_NONE, tn) or a Kafka error and NULL. */
typedef void (*kop_name_cb)(int16_t error, const pw_topic_name *tn, void *arg);
void kop_partition_name(kop_server *k, const char *name, size_t len, int32_t partition,
                        kop_name_cb cb, void *arg);
void kop_handle_metadata(kop_req *q, kw_reader *r);
void kop_handle_create_topics(kop_req *q, kw_reader *r);
void kop_handle_delete_topics(kop_req *q, kw_reader *r);

/* Per Pulsar topic state of the shim (br_topic.kop), made on first use. */
typedef struct kop_producer_state {
    int64_t producer_id;
    int16_t epoch;
    int32_t last_seq;    /* sequence of the last record stored (-1 none) */
    int32_t first_seq;   /* of the last batch stored */
    int64_t last_offset; /* base offset of the last batch stored */
    int32_t inflight;    /* batches of this producer being stored */
    int32_t next_seq;    /* sequence the next batch must start at (inflight counted) */
} kop_producer_state;

struct kop_topic {
    br_topic *t;
    mg_link waiters; /* kop_wait.link: fetches waiting for new entries */
    mg_link readers; /* kop_reader.topic_link */
    int64_t seq;     /* Pulsar sequence ids of non-idempotent Kafka batches */
    kop_producer_state *producers;
    size_t producer_count, producer_cap;
    /* The first offset still stored (Fetch's log_start_offset), for the first position it was
     * read at; read again when retention moved the first position. */
    int64_t log_start;
    ml_position log_start_pos;
    bool log_start_known;
};

kop_topic *kop_topic_of(br_topic *t); /* NULL when out of memory */

/* --- produce.c -------------------------------------------------------------------------------- */

void kop_handle_produce(kop_req *q, kw_reader *r);
void kop_handle_init_producer_id(kop_req *q, kw_reader *r);

/* --- fetch.c ---------------------------------------------------------------------------------- */

void kop_handle_fetch(kop_req *q, kw_reader *r);
void kop_handle_list_offsets(kop_req *q, kw_reader *r);
/* The connection closes: its readers close. */
void kop_conn_readers_close(kop_conn *c);
/* Closes readers not used for KOP_READER_IDLE_MS (the server's timer calls it). */
void kop_readers_sweep(kop_server *k);

/* --- convert.c -------------------------------------------------------------------------------- */

/* A record batch (parsed, CRC checked) -> the client bytes of one entry (a Pulsar batch payload
 * [0x0e01][crc][metadata size][MessageMetadata][batch]) in *out, the record count in *count.
 * producer_name and sequence_id go into the metadata; now_ms is the publish time (and the
 * records' time for LogAppendTime). Errors: MG_EPROTO (records malformed, count disagrees),
 * MG_ECORRUPT (compressed data that does not decompress), MG_ELIMIT, MG_ENOMEM. */
int kop_batch_to_entry(const kw_record_batch *kb, const char *producer_name, int64_t sequence_id,
                       int64_t now_ms, mg_buf **out, int32_t *count);
/* Appends to w one record batch of the messages of entry e whose offsets are >= from_offset
 * (a whole entry normally: the first entry of a fetch may start before from_offset, and Kafka
 * clients skip what they did not ask for, so it is sent whole). Returns the number of records
 * written (0 when the entry cannot be read as messages: it is skipped and counted), or an
 * error: MG_ENOMEM, MG_ELIMIT. */
int kop_entry_to_batch(const ml_entry *e, kw_writer *w, int32_t *records);

/* --- group.c and offsets.c -------------------------------------------------------------------- */

/* The client id of requests one broker sends another (forward.c): an OffsetCommit or
 * OffsetFetch for a partition the receiver owns, on behalf of the group's coordinator. */
#define KOP_FORWARD_CLIENT_ID "magnetar-coordinator"

/* The Pulsar topic whose bundle's owner coordinates group_id (a name made of a hash of it, so any
 * group id maps to a valid topic name): its owner is the group's coordinator in a cluster. */
void kop_group_topic(const char *group_id, size_t len, pw_topic_name *out);
/* Sends one request (a whole frame of frame_len bytes, its correlation id is the caller's) to the
 * Kafka port at addr ("host:port") on a connection of its own and calls cb with the answer's
 * body (after the correlation id), or an error (MG_ETIMEDOUT after KOP_FORWARD_TIMEOUT_MS,
 * connection errors, MG_EPROTO). cb runs once, never inside the call. Errors returned (cb not
 * called): MG_EAGAIN (KOP_FORWARDS_MAX in flight), MG_EINVAL (addr not numeric IPv4),
 * MG_ENOMEM, MG_ECLOSED. */
#define KOP_FORWARD_TIMEOUT_MS 10000
typedef void (*kop_forward_cb)(int status, const uint8_t *body, size_t len, void *arg);
int kop_forward(kop_server *k, const char *addr, const uint8_t *frame, size_t frame_len,
                kop_forward_cb cb, void *arg);

int kop_groups_create(kop_server *k, kop_groups **out);
void kop_groups_destroy(kop_groups *g);
void kop_handle_find_coordinator(kop_req *q, kw_reader *r);
void kop_handle_join_group(kop_req *q, kw_reader *r);
void kop_handle_sync_group(kop_req *q, kw_reader *r);
void kop_handle_heartbeat(kop_req *q, kw_reader *r);
void kop_handle_leave_group(kop_req *q, kw_reader *r);
void kop_handle_describe_groups(kop_req *q, kw_reader *r);
void kop_handle_list_groups(kop_req *q, kw_reader *r);
void kop_handle_offset_commit(kop_req *q, kw_reader *r);
void kop_handle_offset_fetch(kop_req *q, kw_reader *r);
/* A connection closed: members it held stay until their session times out (Kafka's way). */
void kop_groups_conn_closed(kop_groups *g, kop_conn *c);

#endif
