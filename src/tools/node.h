/*
 * A Magnetar process running one or more roles on one libuv loop: the metadata client, a
 * bookie, a broker, the HTTP server for /metrics, health and the admin API. `magnetar
 * standalone` runs all of them, `magnetar broker` the broker and HTTP parts against a shared
 * metadata store and remote bookies.
 *
 * mg_node_serve runs a whole process through the steps below.
 *
 * Life cycle: mg_node_init -> mg_node_open_metadata -> [mg_node_start_bookie] ->
 * [mg_node_start_broker] -> mg_node_start_http -> mg_node_register_broker -> mg_node_run
 * (until SIGINT/SIGTERM; stops every role in reverse order: HTTP, broker and its ledger
 * environment and bookie client, bookie server, bookie storage, metadata client) ->
 * mg_node_cleanup (also after a start-up failure part way: it stops what started). A second
 * signal while stopping exits at once with status 1. Start-up errors are logged here.
 */
#ifndef MG_TOOLS_NODE_H
#define MG_TOOLS_NODE_H

#include "bookie/bookie.h"
#include "bookie/client.h"
#include "broker/broker.h"
#include "broker/limits.h"
#include "ledger/ledger.h"
#include "common/http.h"
#include "common/metrics.h"
#include "metadata/metadata.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The answer to an ephemeral registration (mg_node_register). */
typedef struct mg_node_registration {
    bool answered;
    int status;
} mg_node_registration;

typedef struct mg_node {
    uv_loop_t loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    mg_metrics *metrics;
    mg_http_server *http;
    md_store *md;
    md_client *mdc;
    bk_storage *storage; /* on bookie_loop */
    bk_server *bookie;   /* on bookie_loop */
    /* The embedded bookie runs on its own loop and thread, so that it and the broker use both
     * cores (they talk over loopback TCP as they would across machines). */
    uv_loop_t bookie_loop;
    bool bookie_loop_ready;
    uv_thread_t bookie_thread;
    bool bookie_thread_running;
    uv_async_t bookie_stop;      /* wakes the bookie thread to close the server and storage */
    uv_async_t bookie_resume;    /* on bookie_loop: PUT /api/v1/bookie/state/readonly */
    uv_async_t resume_reply;     /* on loop: its answer */
    bool resume_reply_ready;     /* resume_reply initialised (HTTP started with a bookie) */
    mg_http_request *resume_req; /* the PUT waiting for its answer, or NULL */
    int resume_status;           /* atomic: the answer */
    bk_local *bk_local;          /* the broker's in-process path to the embedded bookie */
    char bookie_addr[160];       /* the embedded bookie's "host:port", as ledgers name it */
    bk_client *bkc;
    ml_env *env;
    br_broker *broker;
    char broker_path[300];
    char bookie_path[300];
    mg_node_registration registration;
    int lock_fd;
    int stopping;
    uint64_t fd_limit; /* RLIMIT_NOFILE after mg_node_init raised it; shared out by mg_fd_budget */
    struct mg_chat *chat;     /* the chat roles (tools/chat.h), stopped first; NULL = none */
    uv_timer_t chat_wait;     /* polls the chat roles' threads while they stop */
    struct cg_api *chat_api;  /* the chat push API and page on the admin port, or NULL */
    uint32_t chat_api_topics; /* set before mg_node_start_http: serve the chat API (0: no) */
    char chat_api_url[200];   /* and the broker it produces to, "pulsar://host:port" */
} mg_node;

typedef struct mg_node_bookie_opts {
    const char *data_dir; /* storage under <data_dir>/bookie */
    const char *bind_address;
    const char *advertised_address;
    int64_t port; /* 0: chosen once, kept in <data_dir>/bookie/port */
    int64_t write_cache_mb;
    int64_t read_cache_mb;
    int64_t journal_segment_mb; /* 0 = 256 */
} mg_node_bookie_opts;

/* Asks the metadata store to create the ephemeral node path (and its parents) holding value, and
 * runs loop until the store answers or timeout_ms passed: start-up only, bounded so that a
 * ZooKeeper ensemble that is down does not hang start-up silently. Returns md_create's error
 * when the request could not be sent; else MG_OK, with reg->answered saying whether the store
 * answered in time and reg->status what it answered. Logs nothing. reg must outlive the loop:
 * an answer after the timeout still lands in it. */
int mg_node_register(uv_loop_t *loop, md_client *mdc, mg_node_registration *reg, const char *path,
                     const char *value, size_t value_len, uint64_t timeout_ms);

/* After bk_storage_open failed with rc: when the disk had no room (the journal preallocates a
 * whole segment at every start), logs a start-up error saying how much the journal wanted, how
 * much the file system of journal_dir has free, and the option that lowers it
 * (--journal-segment-mb). Other errors were logged by the storage already. */
void mg_node_explain_storage_error(int rc, const char *journal_dir, int64_t journal_segment_mb);

/* BookKeeper's /api/v1/bookie/state/readonly, shared by `standalone` and `bookie` (loop thread
 * of the HTTP server): GET answers {"readOnly":bool[,"reason":"..."]} for a bk_storage_state;
 * a PUT body must be {"readOnly":false} (else 400 is answered and false returned); the PUT's
 * answer for a bk_storage_resume status is 200 {"readOnly":false}, 507 while the disk is still
 * full, else 503 with the reason. */
void mg_node_readonly_get(mg_http_request *req, int state);
bool mg_node_readonly_put_valid(mg_http_request *req);
void mg_node_readonly_reply(mg_http_request *req, int status);

/* The broker's settings that `standalone` and `broker` take as the same options
 * (MG_NODE_OPTS_BROKER_TUNING): a command's option struct holds one, filled by the parser. */
typedef struct mg_node_broker_tuning {
    int64_t message_size_max;
    int64_t keepalive_s;
    int64_t tail_cache_mb;
    int64_t prefetch_mb;
    int prefetch; /* MG_NODE_PREFETCH_ON or _OFF */
    int64_t catchup_duty_pct;
    bool auto_skip_non_recoverable_data;
    int64_t connection_memory_mb;
    int64_t retention_time_minutes; /* Pulsar's defaultRetentionTimeInMinutes; -1 = forever */
    int64_t retention_size_mb;      /* Pulsar's defaultRetentionSizeInMB; -1 = unlimited */
    int kafka;                      /* MG_NODE_KAFKA_ON or _OFF: the Kafka port (docs/kafka.md) */
    int64_t kafka_port;
    int64_t entries_per_ledger_max; /* Pulsar's managedLedgerMaxEntriesPerLedger */
    /* Namespace policies' defaults and checks (docs/broker.md "Policies"). */
    int64_t ttl_default_ms;            /* ttlDurationDefaultInSeconds; 0 = none */
    int64_t backlog_quota_limit_bytes; /* backlogQuotaDefaultLimitBytes; -1 = none */
    int64_t backlog_quota_limit_s;     /* backlogQuotaDefaultLimitSecond; -1 = none */
    int backlog_quota_policy;          /* br_backlog_policy: mg_node_backlog_policy_choices */
    int64_t expiry_check_ms;           /* messageExpiryCheckIntervalInMinutes */
    int64_t backlog_quota_check_ms;    /* backlogQuotaCheckIntervalInSeconds */
    int64_t retention_check_ms;        /* retentionCheckIntervalInSeconds */
} mg_node_broker_tuning;

typedef struct mg_node_broker_opts {
    const char *bind_address;
    const char *advertised_address;
    int64_t port;
    int ensemble_size, write_quorum, ack_quorum;
    const char *cluster;
    mg_node_broker_tuning tuning;
} mg_node_broker_opts;

enum { MG_NODE_PREFETCH_ON = 0, MG_NODE_PREFETCH_OFF = 1 };
enum { MG_NODE_KAFKA_ON = 0, MG_NODE_KAFKA_OFF = 1 };
extern const char *const mg_node_prefetch_choices[];
/* The backlog quota policies, in br_backlog_policy's order. */
extern const char *const mg_node_backlog_policy_choices[];

/* Options shared by the commands that run a broker (standalone, broker), for their mg_opt
 * tables: the same names, defaults, bounds and help everywhere. */
#define MG_NODE_OPT_BIND_ADDRESS(opts_type, field)                                           \
    {                                                                                        \
        .name = "bind-address", .type = MG_OPT_STRING, .offset = offsetof(opts_type, field), \
        .default_value = "0.0.0.0", .metavar = "ADDR",                                       \
        .help = "IPv4 address the servers listen on",                                        \
    }
#define MG_NODE_OPT_ADVERTISED_ADDRESS(opts_type, field)                                           \
    {                                                                                              \
        .name = "advertised-address", .type = MG_OPT_STRING, .offset = offsetof(opts_type, field), \
        .default_value = "127.0.0.1", .metavar = "ADDR",                                           \
        .help = "address clients and other brokers are told to connect to (lookups, "              \
                "/brokers, /bookies)",                                                             \
    }
#define MG_NODE_OPT_HTTP_PORT(opts_type, field)                                            \
    {                                                                                      \
        .name = "http-port", .type = MG_OPT_INT, .offset = offsetof(opts_type, field),     \
        .default_value = "8080", .metavar = "PORT",                                        \
        .help = "port of the admin REST API and /metrics (0 picks a free port)", .min = 0, \
        .max = 65535,                                                                      \
    }
#define MG_NODE_OPT_MAX_MESSAGE_SIZE(opts_type, field)                                             \
    {                                                                                              \
        .name = "max-message-size", .type = MG_OPT_INT, .offset = offsetof(opts_type, field),      \
        .default_value = "5242880", .metavar = "BYTES",                                            \
        .help = "largest message (batch) a producer may send, advertised to clients", .min = 1024, \
        .max = BR_MESSAGE_BYTES_MAX,                                                               \
    }
#define MG_NODE_OPT_KEEPALIVE_S(opts_type, field)                                             \
    {                                                                                         \
        .name = "keepalive-s", .type = MG_OPT_INT, .offset = offsetof(opts_type, field),      \
        .default_value = "30", .metavar = "S",                                                \
        .help = "seconds a client connection may stay silent before the broker PINGs it; no " \
                "answer within as long again closes it",                                      \
        .min = 1, .max = 3600,                                                                \
    }

/* The bookie's journal segment size (`bookie` and `standalone`): each segment file is
 * preallocated in full, so a small disk needs a smaller one (the start-up error names this). */
#define MG_NODE_OPT_JOURNAL_SEGMENT_MB(opts_type, field)                                        \
    {                                                                                           \
        .name = "journal-segment-mb", .type = MG_OPT_INT, .offset = offsetof(opts_type, field), \
        .default_value = "256", .metavar = "MB",                                                \
        .help = "size of a journal segment file, preallocated in full when it is created (and " \
                "at every start): lower it on a small disk, the journal needs at least one",    \
        .min = 1, .max = 65536,                                                                 \
    }

/* The broker's read caches (src/prefetch): budgets and the prefetcher's switch. */
#define MG_NODE_OPT_TAIL_CACHE_MB(opts_type, field)                                        \
    {                                                                                      \
        .name = "tail-cache-mb", .type = MG_OPT_INT, .offset = offsetof(opts_type, field), \
        .default_value = "256", .metavar = "MB",                                           \
        .help = "broker tail cache: entries just added, served to consumers at the tail "  \
                "without a bookie read, in MiB",                                           \
        .min = 1, .max = 1048576,                                                          \
    }
#define MG_NODE_OPT_PREFETCH_MB(opts_type, field)                                           \
    {                                                                                       \
        .name = "prefetch-mb", .type = MG_OPT_INT, .offset = offsetof(opts_type, field),    \
        .default_value = "512", .metavar = "MB",                                            \
        .help = "broker prefetch budget: entries read ahead of lagging subscriptions, and " \
                "reads in flight, in MiB",                                                  \
        .min = 4, .max = 1048576,                                                           \
    }
#define MG_NODE_OPT_PREFETCH(opts_type, field)                                           \
    {                                                                                    \
        .name = "prefetch", .type = MG_OPT_ENUM, .offset = offsetof(opts_type, field),   \
        .default_value = "on", .metavar = "on|off", .choices = mg_node_prefetch_choices, \
        .help = "read ahead of lagging subscriptions (off: on-demand reads, as Pulsar)", \
    }

#define MG_NODE_OPT_CATCHUP_DUTY_PCT(opts_type, field)                                        \
    {                                                                                         \
        .name = "catchup-duty-pct", .type = MG_OPT_INT, .offset = offsetof(opts_type, field), \
        .default_value = "50", .metavar = "PCT",                                              \
        .help = "share of the broker loop's time (per 10 ms) that dispatch to lagging "       \
                "subscriptions may take; the rest stays for publishes and tail reads "        \
                "(100: no cap)",                                                              \
        .min = 1, .max = 100,                                                                 \
    }

/* Lost ledgers (docs/broker.md "Lost ledgers"). Off by default, as Pulsar's
 * autoSkipNonRecoverableData: skipping acknowledges data on the subscriptions' behalf, which an
 * operator should decide; with it off the subscription stops at the loss (logged, in the
 * stats) until an operator skips or resets past it. */
#define MG_NODE_OPT_AUTO_SKIP_NON_RECOVERABLE_DATA(opts_type, field)                             \
    {                                                                                            \
        .name = "auto-skip-non-recoverable-data", .type = MG_OPT_BOOL,                           \
        .offset = offsetof(opts_type, field), .default_value = "false",                          \
        .help = "subscriptions whose next entry is in a lost ledger (missing from the bookies) " \
                "skip it, counting the skipped entries; off: they stop there until an "          \
                "operator skips or resets the subscription past it (Pulsar's "                   \
                "autoSkipNonRecoverableData)",                                                   \
    }

/* The broker's budget of connection memory (src/broker/server.c, "CONNECTION MEMORY"). */
/* Pulsar's broker settings defaultRetentionTimeInMinutes and defaultRetentionSizeInMB: a consumed
 * ledger is kept while within either (both 0, Pulsar's default: deleted once every subscription
 * has consumed it). Chat clients resume from the log only as far back as it reaches. */
#define MG_NODE_OPT_RETENTION_TIME_MINUTES(opts_type, field)                                     \
    {                                                                                            \
        .name = "default-retention-time-minutes", .type = MG_OPT_INT,                            \
        .offset = offsetof(opts_type, field), .default_value = "0", .metavar = "MINUTES",        \
        .help = "keep consumed messages this long (Pulsar's defaultRetentionTimeInMinutes; -1: " \
                "forever; 0: delete them once every subscription consumed them)",                \
        .min = -1, .max = 52560000,                                                              \
    }
#define MG_NODE_OPT_RETENTION_SIZE_MB(opts_type, field)                                      \
    {                                                                                        \
        .name = "default-retention-size-mb", .type = MG_OPT_INT,                             \
        .offset = offsetof(opts_type, field), .default_value = "0", .metavar = "MB",         \
        .help = "or keep up to this much of them per topic, whichever keeps more (Pulsar's " \
                "defaultRetentionSizeInMB; -1: unlimited; 0: none)",                         \
        .min = -1, .max = 1073741824,                                                        \
    }
#define MG_NODE_OPT_CONNECTION_MEMORY_MB(opts_type, field)                                        \
    {                                                                                             \
        .name = "connection-memory-mb", .type = MG_OPT_INT, .offset = offsetof(opts_type, field), \
        .default_value = "512", .metavar = "MB",                                                  \
        .help = "broker memory for client connections, in MiB: half for bytes queued to "         \
                "consumers (dispatch pauses when it is used up; each connection's share is "      \
                "that half divided among the connections with consumers, 1 to 16 MiB), half "     \
                "for frames larger than 64 KiB being received (reading pauses when it is "        \
                "used up)",                                                                       \
        .min = BR_CONN_MEMORY_BYTES_MIN >> 20, .max = 1048576,                                    \
    }

/* The options that fill an mg_node_broker_tuning, in the order --help lists them, for a command
 * whose option struct opts_type holds one named member. */
/* The Kafka protocol on the broker (src/broker/kop, docs/kafka.md). */
#define MG_NODE_OPT_KAFKA(opts_type, field)                                                    \
    {                                                                                          \
        .name = "kafka", .type = MG_OPT_ENUM, .offset = offsetof(opts_type, field),            \
        .default_value = "on", .metavar = "on|off", .choices = mg_node_prefetch_choices,       \
        .help = "serve the Kafka protocol (Kafka producers and consumers on the same topics)", \
    }
#define MG_NODE_OPT_KAFKA_PORT(opts_type, field)                                            \
    {                                                                                       \
        .name = "kafka-port", .type = MG_OPT_INT, .offset = offsetof(opts_type, field),     \
        .default_value = "9092", .metavar = "PORT",                                         \
        .help = "port of the Kafka protocol (0 picks a free port)", .min = 0, .max = 65535, \
    }

/* Rollover of every topic's ledgers by entry count (Pulsar's managedLedgerMaxEntriesPerLedger). */
#define MG_NODE_OPT_ENTRIES_PER_LEDGER_MAX(opts_type, field)                                \
    {                                                                                       \
        .name = "managed-ledger-max-entries-per-ledger", .type = MG_OPT_INT,                \
        .offset = offsetof(opts_type, field), .default_value = "50000", .metavar = "N",     \
        .help = "a topic's current ledger is closed and a new one started after this many " \
                "entries (Pulsar's managedLedgerMaxEntriesPerLedger); retention deletes "   \
                "whole ledgers",                                                            \
        .min = 1, .max = 100000000,                                                         \
    }

/* The namespace policies' broker-wide defaults (Pulsar's broker.conf names, turned into flags)
 * and how often the broker checks them on every open topic (docs/broker.md "Policies"). */
#define MG_NODE_OPT_TTL_DEFAULT(opts_type, field)                                          \
    {                                                                                      \
        .name = "ttl-duration-default", .type = MG_OPT_DURATION,                           \
        .offset = offsetof(opts_type, field), .default_value = "0", .metavar = "DURATION", \
        .help = "messages stored longer ago than this are acknowledged on every durable "  \
                "subscription's behalf where the namespace sets no TTL (Pulsar's "         \
                "ttlDurationDefaultInSeconds; whole seconds; 0: no TTL)",                  \
        .min = 0, .max = 3153600000000LL,                                                  \
    }
#define MG_NODE_OPT_BACKLOG_QUOTA_LIMIT_BYTES(opts_type, field)                              \
    {                                                                                        \
        .name = "backlog-quota-default-limit-bytes", .type = MG_OPT_INT,                     \
        .offset = offsetof(opts_type, field), .default_value = "-1", .metavar = "BYTES",     \
        .help = "a topic's backlog (bytes after its slowest subscription's acknowledged "    \
                "position) may not exceed this where the namespace sets no quota (Pulsar's " \
                "backlogQuotaDefaultLimitBytes; -1: no limit)",                              \
        .min = -1, .max = INT64_MAX,                                                         \
    }
#define MG_NODE_OPT_BACKLOG_QUOTA_LIMIT_S(opts_type, field)                                     \
    {                                                                                           \
        .name = "backlog-quota-default-limit-seconds", .type = MG_OPT_INT,                      \
        .offset = offsetof(opts_type, field), .default_value = "-1", .metavar = "S",            \
        .help = "a topic's oldest unacknowledged message may not be older than this where the " \
                "namespace sets no quota (Pulsar's backlogQuotaDefaultLimitSecond; -1: no "     \
                "limit)",                                                                       \
        .min = -1, .max = 3153600000LL,                                                         \
    }
#define MG_NODE_OPT_BACKLOG_QUOTA_POLICY(opts_type, field)                                       \
    {                                                                                            \
        .name = "backlog-quota-default-retention-policy", .type = MG_OPT_ENUM,                   \
        .offset = offsetof(opts_type, field), .default_value = "producer_request_hold",          \
        .metavar = "POLICY", .choices = mg_node_backlog_policy_choices,                          \
        .help = "what happens to a topic over the default backlog quota: producer_request_hold " \
                "(producers refused and closed, clients hold their messages), "                  \
                "producer_exception (producers refused and closed, clients fail their sends), "  \
                "consumer_backlog_eviction (the slowest subscriptions skip their oldest "        \
                "messages) (Pulsar's backlogQuotaDefaultRetentionPolicy)",                       \
    }
#define MG_NODE_OPT_EXPIRY_CHECK_INTERVAL(opts_type, field)                                 \
    {                                                                                       \
        .name = "message-expiry-check-interval", .type = MG_OPT_DURATION,                   \
        .offset = offsetof(opts_type, field), .default_value = "5m", .metavar = "DURATION", \
        .help = "how often message TTLs are applied to every open topic (Pulsar's "         \
                "messageExpiryCheckIntervalInMinutes)",                                     \
        .min = 10, .max = 86400000,                                                         \
    }
#define MG_NODE_OPT_BACKLOG_QUOTA_CHECK_INTERVAL(opts_type, field)                           \
    {                                                                                        \
        .name = "backlog-quota-check-interval", .type = MG_OPT_DURATION,                     \
        .offset = offsetof(opts_type, field), .default_value = "60s", .metavar = "DURATION", \
        .help = "how often backlog quotas are checked on every open topic (also when a "     \
                "producer connects) (Pulsar's backlogQuotaCheckIntervalInSeconds)",          \
        .min = 10, .max = 86400000,                                                          \
    }
#define MG_NODE_OPT_RETENTION_CHECK_INTERVAL(opts_type, field)                                \
    {                                                                                         \
        .name = "retention-check-interval", .type = MG_OPT_DURATION,                          \
        .offset = offsetof(opts_type, field), .default_value = "120s", .metavar = "DURATION", \
        .help = "how often consumed ledgers outside retention are looked for on every open "  \
                "topic (Pulsar's retentionCheckIntervalInSeconds)",                           \
        .min = 10, .max = 86400000,                                                           \
    }

#define MG_NODE_OPTS_BROKER_TUNING(opts_type, member)                                       \
    MG_NODE_OPT_MAX_MESSAGE_SIZE(opts_type, member.message_size_max),                       \
        MG_NODE_OPT_KEEPALIVE_S(opts_type, member.keepalive_s),                             \
        MG_NODE_OPT_TAIL_CACHE_MB(opts_type, member.tail_cache_mb),                         \
        MG_NODE_OPT_PREFETCH_MB(opts_type, member.prefetch_mb),                             \
        MG_NODE_OPT_PREFETCH(opts_type, member.prefetch),                                   \
        MG_NODE_OPT_CATCHUP_DUTY_PCT(opts_type, member.catchup_duty_pct),                   \
        MG_NODE_OPT_AUTO_SKIP_NON_RECOVERABLE_DATA(opts_type,                               \
                                                   member.auto_skip_non_recoverable_data),  \
        MG_NODE_OPT_CONNECTION_MEMORY_MB(opts_type, member.connection_memory_mb),           \
        MG_NODE_OPT_RETENTION_TIME_MINUTES(opts_type, member.retention_time_minutes),       \
        MG_NODE_OPT_RETENTION_SIZE_MB(opts_type, member.retention_size_mb),                 \
        MG_NODE_OPT_RETENTION_CHECK_INTERVAL(opts_type, member.retention_check_ms),         \
        MG_NODE_OPT_ENTRIES_PER_LEDGER_MAX(opts_type, member.entries_per_ledger_max),       \
        MG_NODE_OPT_TTL_DEFAULT(opts_type, member.ttl_default_ms),                          \
        MG_NODE_OPT_EXPIRY_CHECK_INTERVAL(opts_type, member.expiry_check_ms),               \
        MG_NODE_OPT_BACKLOG_QUOTA_LIMIT_BYTES(opts_type, member.backlog_quota_limit_bytes), \
        MG_NODE_OPT_BACKLOG_QUOTA_LIMIT_S(opts_type, member.backlog_quota_limit_s),         \
        MG_NODE_OPT_BACKLOG_QUOTA_POLICY(opts_type, member.backlog_quota_policy),           \
        MG_NODE_OPT_BACKLOG_QUOTA_CHECK_INTERVAL(opts_type, member.backlog_quota_check_ms), \
        MG_NODE_OPT_KAFKA(opts_type, member.kafka),                                         \
        MG_NODE_OPT_KAFKA_PORT(opts_type, member.kafka_port)

/* What a whole process runs (mg_node_serve): a broker and the HTTP server on its bind address,
 * registered under /brokers, with the metadata store at metadata_url; with bookie, also a bookie,
 * and then the process holds the lock on bookie->data_dir (one process per data directory). */
typedef struct mg_node_opts {
    const char *metadata_url;
    const mg_node_bookie_opts *bookie; /* NULL: the ledgers live on remote bookies */
    mg_node_broker_opts broker;
    int64_t http_port;
    struct mg_chat_opts *chat; /* the chat roles to run next to the broker; NULL = none */
    int64_t chat_api_topics;   /* serve the chat API with this many chat topics; 0 = no */
} mg_node_opts;

/* The life of a `magnetar` process that runs a node (`standalone`, `broker`), on the calling
 * thread: starts every role of o in order, logs one "<name> <version> ready" line naming its
 * ports, runs until SIGINT or SIGTERM stopped every role, logs "<name> stopped" and frees
 * everything. name is the command ("magnetar broker"). Returns the exit status: MG_EXIT_OK after
 * a clean stop, MG_EXIT_FAILURE when start-up failed (the reason logged). */
int mg_node_serve(const char *name, const mg_node_opts *o);

/* Sets up the loop, signals and the metrics registry. MG_ENOMEM. */
int mg_node_init(mg_node *n);
/* Opens the metadata store at url and a client on the loop. */
int mg_node_open_metadata(mg_node *n, const char *url);
/* Opens the bookie storage, serves its RPC and registers /bookies/<addr>:<port>. */
int mg_node_start_bookie(mg_node *n, const mg_node_bookie_opts *o);
/* Creates the bookie client, the ledger environment and the broker. */
int mg_node_start_broker(mg_node *n, const mg_node_broker_opts *o);
/* Serves GET /metrics, GET /admin/v2/brokers/health and, with a broker, the admin API. */
int mg_node_start_http(mg_node *n, const char *bind_address, int64_t port);
/* Registers the broker as /brokers/<advertised>:<http port> (ephemeral). */
int mg_node_register_broker(mg_node *n, const char *advertised_address);
/* Runs until a signal stopped every role. */
void mg_node_run(mg_node *n);
/* Stops whatever still runs and frees everything. */
void mg_node_cleanup(mg_node *n);

#endif
