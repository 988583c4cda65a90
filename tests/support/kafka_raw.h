/*
 * A blocking Kafka client over raw sockets, for tests that must say on the wire what no client
 * library would (lying frame sizes, unknown API keys, unsupported versions, corrupt record
 * batches, pipelined requests) and see what a library hides (correlation ids, the order of
 * answers, error codes per partition, long-poll timing). Requests are built with src/kafka's
 * kw_writer and answers read with its kw_reader; the connection is to a broker's Kafka port on
 * 127.0.0.1. One test thread drives it; nothing runs behind it.
 *
 * Invariants:
 *  1. Every wait is bounded: a send by krw_conn.timeout_ms (SO_SNDTIMEO and a deadline), a read
 *     by the deadline or timeout its caller gives (krw_expect: krw_conn.timeout_ms).
 *  2. A connection holds at most one answer read (krw_conn.raw, freed by the next read and by
 *     krw_close): the kw_str views the parsers hand out point into it and are valid until then.
 *  3. As support/pulsar_raw.h, what is not a normal outcome fails the running Criterion test at
 *     once (a socket error, a send that does not finish, an answer that does not decode, a
 *     correlation id other than the one expected); a peer that closes or stays silent is a normal
 *     outcome (KRW_EOF, KRW_TIMEOUT) where a caller asks for it (krw_read), and a failure where
 *     it expects an answer (krw_expect and the request helpers). Kafka error codes are returned,
 *     never asserted: the test decides.
 *
 * Versions the helpers speak (all non-flexible but ApiVersions v3): Produce v7, Fetch v11,
 * ListOffsets v2, Metadata v4 (or the version given), InitProducerId v1, JoinGroup v4,
 * SyncGroup v2, Heartbeat v2, LeaveGroup v1, OffsetCommit v7, OffsetFetch v5, DescribeGroups v4.
 */
#ifndef MG_TESTS_SUPPORT_KAFKA_RAW_H
#define MG_TESTS_SUPPORT_KAFKA_RAW_H

#include "kafka/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest answer read: a fetch answers at most 50 MiB (the broker's bound) and headers. */
#define KRW_FRAME_BYTES_MAX      (64u << 20)
/* Records one fetch result holds (the tests fetch a few dozen). */
#define KRW_FETCH_RECORDS_MAX    1024
/* Topics, and members of a group, one parsed answer holds. */
#define KRW_TOPICS_MAX           64
#define KRW_MEMBERS_MAX          8
#define KRW_NAME_BYTES_MAX       256
/* The client id every request carries. */
#define KRW_CLIENT_ID            "magnetar-kafka-raw"
/* The session and rebalance timeouts of krw_join_group (the broker's minimum session is 6 s). */
#define KRW_SESSION_TIMEOUT_MS   10000
#define KRW_REBALANCE_TIMEOUT_MS 10000

typedef enum krw_result {
    KRW_FRAME = 1,   /* an answer was read */
    KRW_EOF = 0,     /* the peer closed (or reset) the connection */
    KRW_TIMEOUT = -1 /* nothing (complete) before the deadline */
} krw_result;

typedef struct krw_conn {
    int fd;            /* -1 when closed */
    int timeout_ms;    /* bounds each send and krw_expect's wait */
    int32_t next_corr; /* the correlation id of the next request krw_begin starts */
    uint8_t *raw;      /* the last answer, after its size (malloc'd) */
    size_t raw_len;
    int32_t corr;   /* the last answer's correlation id */
    kw_reader body; /* over the last answer, after its header (response header v0) */
} krw_conn;

/* --- Connections and frames ------------------------------------------------------------------ */

/* A connection to 127.0.0.1:port with TCP_NODELAY. Fails the test when it cannot connect. */
krw_conn krw_open(uint16_t port, int timeout_ms);

/* Closes the connection and frees its answer; harmless on a closed one. */
void krw_close(krw_conn *c);

/* Writes all n bytes within the connection's timeout (else the test fails). */
void krw_write(krw_conn *c, const void *p, size_t n);

/* Starts a request frame in w (kw_writer_init'ed here): the size to patch, then request header
 * v1 (api_key, version, the next correlation id, KRW_CLIENT_ID), or v2 (tagged fields added) for
 * a flexible version (kw_request_header_version). The caller writes the body. Returns the
 * correlation id. */
int32_t krw_begin(krw_conn *c, kw_writer *w, int16_t api_key, int16_t version);

/* Patches the size of the frame krw_begin started at offset at of w (0 for a lone request). */
void krw_finish(kw_writer *w, size_t at);

/* krw_finish(w, 0), writes the frame and frees w. */
void krw_send(krw_conn *c, kw_writer *w);

/* Reads one whole answer before deadline_ms (sah_now_ms's clock) into c->raw; sets c->corr and
 * c->body. An answer announcing a size below 4 or above KRW_FRAME_BYTES_MAX, or a connection
 * closed inside an answer, fails the test. */
krw_result krw_read(krw_conn *c, int64_t deadline_ms);

/* The next answer, within the connection's timeout, must carry correlation id corr; returns its
 * body reader (valid until the next read). what names the request in failures. */
kw_reader *krw_expect(krw_conn *c, int32_t corr, const char *what);

/* The broker must close the connection within timeout_ms without answering; then it is closed
 * here too. */
void krw_expect_closed(krw_conn *c, int timeout_ms, const char *what);

/* Fails the test when r has an error (a field read past the answer's end) or bytes left. */
void krw_done(kw_reader *r, const char *what);

/* --- ApiVersions ----------------------------------------------------------------------------- */

/* ApiVersions at version (v3: the flexible request header and body), its answer read as
 * answer_version (the version the broker must answer at: the same, or 0 for a version it does
 * not serve). The ranges go to out[0, cap) and their number to *count. Returns the error code. */
int16_t krw_api_versions(krw_conn *c, int16_t version, int16_t answer_version, kw_api_range *out,
                         size_t cap, size_t *count);

/* --- Records and Produce --------------------------------------------------------------------- */

/* The header fields of a batch krw_write_batch writes; the rest follows from the records. */
typedef struct krw_batch {
    int64_t producer_id; /* -1: not idempotent */
    int16_t producer_epoch;
    int32_t base_sequence;
    int16_t attributes; /* codec bits must be 0: the records are written uncompressed */
} krw_batch;

#define KRW_BATCH_PLAIN \
    ((krw_batch){ .producer_id = -1, .producer_epoch = -1, .base_sequence = -1, .attributes = 0 })

/* Appends a record batch (magic 2, CRC computed) of count records: null keys, values[i] (text),
 * offset deltas 0..count-1, timestamps now. */
void krw_write_batch(kw_writer *w, const krw_batch *b, const char *const *values, int count);

/* The body of a Produce request (v3-7) for one partition; records may be NULL (a null record
 * set). */
void krw_produce_body(kw_writer *w, const char *transactional_id, int16_t acks, int32_t timeout_ms,
                      const char *topic, int32_t partition, const void *records, size_t len);

typedef struct krw_produce_result {
    int16_t error;
    int64_t base_offset;
} krw_produce_result;

/* Reads a Produce answer (v3-7) about one partition of topic. */
krw_produce_result krw_parse_produce(kw_reader *r, int16_t version, const char *topic,
                                     int32_t partition);

/* Produce v7 of records to (topic, partition) with acks (not 0), and its answer. */
krw_produce_result krw_produce(krw_conn *c, const char *topic, int32_t partition, int16_t acks,
                               const void *records, size_t len);

/* A plain batch of values produced with acks 1; the answer must be NONE. Returns the base
 * offset. */
int64_t krw_produce_values(krw_conn *c, const char *topic, int32_t partition,
                           const char *const *values, int count);

/* --- Fetch and ListOffsets ------------------------------------------------------------------- */

typedef struct krw_record_view {
    int64_t offset;
    kw_str key;
    kw_str value; /* point into the connection's last answer */
} krw_record_view;

typedef struct krw_fetch_result {
    int16_t error; /* the partition's */
    int64_t high_watermark;
    int64_t log_start_offset; /* v5+; -1 before */
    size_t record_count;
    krw_record_view records[KRW_FETCH_RECORDS_MAX];
} krw_fetch_result;

/* The body of a Fetch request (v4-11) for one partition. */
void krw_fetch_body(kw_writer *w, int16_t version, int32_t max_wait_ms, int32_t min_bytes,
                    const char *topic, int32_t partition, int64_t offset, int32_t max_bytes);

/* Reads a Fetch answer (v4-11) about one partition of topic into *out: the batches must parse
 * (magic 2, CRC), be uncompressed, and their records decode; a partial batch at the end (cut by
 * max_bytes) is ignored, as clients do. */
void krw_parse_fetch(kw_reader *r, int16_t version, const char *topic, int32_t partition,
                     krw_fetch_result *out);

/* Fetch v11 of (topic, partition) from offset, min_bytes 1, waiting at most max_wait_ms. */
void krw_fetch(krw_conn *c, const char *topic, int32_t partition, int64_t offset,
               int32_t max_wait_ms, krw_fetch_result *out);

/* ListOffsets v2 of (topic, partition) at timestamp (-1 latest, -2 earliest); *offset gets the
 * answer's offset. Returns the partition's error code. */
int16_t krw_list_offsets(krw_conn *c, const char *topic, int32_t partition, int64_t timestamp,
                         int64_t *offset);

/* --- Metadata and InitProducerId ------------------------------------------------------------- */

typedef struct krw_md_topic {
    char name[KRW_NAME_BYTES_MAX];
    int16_t error;
    int32_t partition_count;
    int16_t partition_error; /* the first partition's (0 when none) */
    int32_t leader;          /* the first partition's (-1 when none) */
} krw_md_topic;

typedef struct krw_metadata {
    int32_t broker_count;
    int32_t node_id; /* the first broker's */
    char host[KRW_NAME_BYTES_MAX];
    int32_t port;
    int32_t controller_id; /* v1+ */
    size_t topic_count;
    krw_md_topic topics[KRW_TOPICS_MAX];
} krw_metadata;

/* Metadata at version (0-4) for topics[0, count), or every topic when topics is NULL (a null
 * list, v1+; v0 asks for every topic with an empty list); allow_auto_create is sent from v4. */
void krw_metadata_req(krw_conn *c, int16_t version, const char *const *topics, int count,
                      bool allow_auto_create, krw_metadata *out);

/* The topic named name in md; NULL when absent. */
const krw_md_topic *krw_md_find(const krw_metadata *md, const char *name);

/* InitProducerId v1 without a transactional id. Returns the error code. */
int16_t krw_init_producer_id(krw_conn *c, int64_t *producer_id, int16_t *epoch);

/* --- Groups and offsets ---------------------------------------------------------------------- */

typedef struct krw_join {
    int16_t error;
    int32_t generation;
    char protocol[KRW_NAME_BYTES_MAX];
    char leader[KRW_NAME_BYTES_MAX];
    char member_id[KRW_NAME_BYTES_MAX];
    size_t member_count;
    char members[KRW_MEMBERS_MAX][KRW_NAME_BYTES_MAX];
} krw_join;

/* JoinGroup v4 of group as member_id ("" for a new member), protocol type "consumer", one
 * protocol "range" with a small metadata; the answer in *out. The _send and _read halves let a
 * test keep a join waiting (it completes when every member has joined) while it does more. */
void krw_join_group(krw_conn *c, const char *group, const char *member_id, krw_join *out);
int32_t krw_join_group_send(krw_conn *c, const char *group, const char *member_id);
void krw_join_group_read(krw_conn *c, int32_t corr, krw_join *out);

/* SyncGroup v2 of member_id in generation; the leader hands out assignments[i] (text) to
 * members[i] for i < count, a follower sends count 0. The member's own assignment is copied to
 * assignment (NUL-terminated, cut to cap - 1 bytes). Returns the error code. A follower's sync
 * waits for the leader's: the _send and _read halves. */
int16_t krw_sync_group(krw_conn *c, const char *group, int32_t generation, const char *member_id,
                       const char *const *members, const char *const *assignments, int count,
                       char *assignment, size_t cap);
int32_t krw_sync_group_send(krw_conn *c, const char *group, int32_t generation,
                            const char *member_id, const char *const *members,
                            const char *const *assignments, int count);
int16_t krw_sync_group_read(krw_conn *c, int32_t corr, char *assignment, size_t cap);

/* Heartbeat v2 and LeaveGroup v1: the error codes. */
int16_t krw_heartbeat(krw_conn *c, const char *group, int32_t generation, const char *member_id);
int16_t krw_leave_group(krw_conn *c, const char *group, const char *member_id);

/* OffsetCommit v7 of offset for (topic, partition): the partition's error code. */
int16_t krw_offset_commit(krw_conn *c, const char *group, int32_t generation, const char *member_id,
                          const char *topic, int32_t partition, int64_t offset);

/* OffsetFetch v5 of (topic, partition): the partition's error code (or the group's, when the
 * partition's is NONE), the committed offset in *offset (-1 none). */
int16_t krw_offset_fetch(krw_conn *c, const char *group, const char *topic, int32_t partition,
                         int64_t *offset);

/* DescribeGroups v4 of one group: its error code; its state copied to state (cut to
 * state_cap - 1 bytes), its members counted in *member_count. */
int16_t krw_describe_group(krw_conn *c, const char *group, char *state, size_t state_cap,
                           size_t *member_count);

#endif
