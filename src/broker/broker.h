/*
 * The broker: serves the Pulsar binary protocol (port 6650) on one libuv loop, with topics
 * stored as managed ledgers and subscriptions as managed cursors (../shared/ARCHITECTURE.md
 * §4–6, ../shared/REFERENCE.md §1). Unmodified Pulsar clients produce and consume through it.
 *
 * What it does: CONNECT/CONNECTED with protocol version negotiation and max_message_size,
 * PING/PONG keep-alive, LOOKUP and PARTITIONED_METADATA, producers (Shared and Exclusive access
 * modes), SEND stored as sent (plus the BrokerEntryMetadata prefix) and answered with the stored
 * message id, subscriptions of the four types (Exclusive, Shared, Failover, Key_Shared; durable
 * and non-durable; Earliest/Latest), FLOW permits counted per message, MESSAGE dispatch without
 * re-encoding, individual and cumulative acks with batch-index ack sets and ACK_RESPONSE,
 * redelivery, SEEK, GET_LAST_MESSAGE_ID, UNSUBSCRIBE, close in both directions,
 * ACTIVE_CONSUMER_CHANGE, GET_TOPICS_OF_NAMESPACE. The admin REST subset and per-topic
 * Prometheus metrics with Pulsar's names are served through the process's HTTP server.
 *
 * Threads: a broker belongs to one loop (the ml_env's); every function is called on it.
 */
#ifndef MG_BROKER_BROKER_H
#define MG_BROKER_BROKER_H

#include "common/http.h"
#include "common/metrics.h"
#include "ledger/ledger.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct br_broker br_broker;

typedef struct br_broker_opts {
    const char *host;               /* numeric IPv4 address to bind; NULL = "0.0.0.0" */
    uint16_t port;                  /* 0 = ephemeral (br_broker_port); usually 6650 */
    const char *advertised_address; /* host named in lookup answers and in /brokers; NULL = host,
                                       or 127.0.0.1 when host is 0.0.0.0 */
    uint16_t http_port;             /* the admin port, for webServiceUrl in registrations */
    uint32_t message_bytes_max;     /* advertised max_message_size; 0 = 5 MiB (Pulsar) */
    uint32_t keepalive_s;           /* idle seconds before a PING; no answer in as many again
                                       closes the connection; 0 = 30 (Pulsar) */
    ml_config ml_config;            /* rollover and retention of every topic's managed ledger */
    const char *cluster;            /* the `cluster` label of metrics; NULL = "standalone" */
    mg_metrics *metrics;            /* broker-wide metrics; NULL = none; must outlive the broker */
    uint64_t tail_cache_bytes;      /* the tail cache's budget; 0 = PF_TAIL_CACHE_BYTES_DEFAULT */
    uint64_t prefetch_bytes;        /* the prefetch budget; 0 = PF_PREFETCH_BYTES_DEFAULT */
    bool prefetch_off;              /* no prefetch windows: on-demand reads, as Pulsar */
    uint32_t catchup_duty_pct;      /* share of the loop catch-up dispatch may take; 0 = 50 */
    bool auto_skip_non_recoverable_data; /* subscriptions skip lost ledgers (ml_ledger_lost) and
                                            count what they skipped; false (Pulsar's default):
                                            they stop there until an operator skips or resets */
    uint64_t connection_memory_bytes;    /* budget of bytes queued to consumers (half) and of
                                            partially received large frames (half); 0 =
                                            BR_CONN_MEMORY_BYTES_DEFAULT; at least
                                            BR_CONN_MEMORY_BYTES_MIN */
    uint32_t connections_max;            /* Pulsar connections served at once; past it a new one is
                                            closed at accept and counted in
                                            magnetar_broker_connections_refused_total; 0 =
                                            BR_CONNECTIONS_MAX; the roles pass their share of the
                                            descriptor limit (mg_fd_budget) */
    /* Namespace policies (policy.c, docs/broker.md "Policies"): the broker-wide defaults that
     * apply where a topic's namespace sets none (the retention defaults are ml_config's), and
     * how often each is checked on every open topic. A zeroed struct means no TTL and no
     * backlog quota. */
    int64_t ttl_default_s;             /* ttlDurationDefaultInSeconds; 0 = no TTL */
    int64_t backlog_quota_limit_bytes; /* backlogQuotaDefaultLimitBytes; 0 or less = none */
    int64_t backlog_quota_limit_s;     /* backlogQuotaDefaultLimitSecond; 0 or less = none */
    int backlog_quota_policy;          /* br_backlog_policy (broker/namespace.h) of both;
                                          0 = producer_request_hold */
    uint32_t expiry_check_ms;          /* messageExpiryCheckIntervalInMinutes; 0 = 5 min */
    uint32_t backlog_quota_check_ms;   /* backlogQuotaCheckIntervalInSeconds; 0 = 60 s */
    uint32_t retention_check_ms;       /* retentionCheckIntervalInSeconds; 0 = 120 s */
    bool kafka;                        /* serve the Kafka protocol (broker/kop, docs/kafka.md) */
    uint16_t kafka_port;               /* its port; 0 = ephemeral (br_broker_kafka_port);
                                          usually 9092 */
} br_broker_opts;

/* Binds, listens and starts serving on ml_env_loop(env); env (and its metadata and bookie
 * clients) is borrowed until br_broker_close's callback has run. On success *out is the broker,
 * owned by the caller until br_broker_close. Errors: MG_EINVAL (bad option), MG_ENOMEM, the
 * converted bind/listen error (port taken). */
int br_broker_start(ml_env *env, const br_broker_opts *opts, br_broker **out);

/* The port listened on (the ephemeral one when opts.port was 0). */
uint16_t br_broker_port(const br_broker *b);

/* The Kafka port listened on (0 when the Kafka protocol is off). */
uint16_t br_broker_kafka_port(const br_broker *b);

/* Sets the admin port named in ownership records (webServiceUrl), once the HTTP server that
 * serves the admin routes has started (it may have picked an ephemeral port). */
void br_broker_set_http_port(br_broker *b, uint16_t http_port);

/* Adds the admin REST routes (/admin/v2/persistent/..., see admin.c; /admin/v2/tenants/... and
 * /admin/v2/namespaces/..., see namespace.c) to http, which must not be started yet. MG_ENOMEM,
 * MG_ELIMIT (too many routes). */
int br_broker_admin_register(br_broker *b, mg_http_server *http);

/* Appends the per-topic and per-subscription metrics (Prometheus text, Pulsar's names) to
 * *text (a malloc'd string of *len bytes, reallocated). MG_ENOMEM. */
int br_broker_metrics_render(br_broker *b, char **text, size_t *len);

/* Stops listening, closes every connection, closes every topic (producers' pending sends
 * complete or fail, cursors write their state, managed ledgers close), then calls closed(arg)
 * and frees the broker. Call once. */
void br_broker_close(br_broker *b, void (*closed)(void *arg), void *arg);

#endif
