/*
 * The fixed limits of common, each with the reason for its value (SQLite's sqliteLimit.h is the
 * model). Every module keeps its own limits the same way in src/<module>/limits.h; relations
 * between limits are checked at compile time with _Static_assert next to them (docs/common.md,
 * "Limits"). A limit that an operator may change is a default here and a configuration option
 * elsewhere.
 */
#ifndef MG_COMMON_LIMITS_H
#define MG_COMMON_LIMITS_H

/* A log line is formatted on the stack; longer messages are cut with "...". */
#define MG_LOG_LINE_BYTES_MAX 2048

/* Configuration: option names and values are short words and paths; a config file larger
 * than this is almost certainly the wrong file. */
#define MG_CONFIG_KEY_BYTES_MAX   64
#define MG_CONFIG_VALUE_BYTES_MAX 4096
#define MG_CONFIG_FILE_BYTES_MAX  (1024 * 1024)

/* HTTP admin/metrics server. Admin requests carry small JSON bodies; Pulsar's admin API has no
 * request larger than a few KiB. Connections are operators and scrapers, not clients. */
#define MG_HTTP_BODY_BYTES_MAX  (1024 * 1024)
#define MG_HTTP_CONNECTIONS_MAX 1024
#define MG_HTTP_ROUTES_MAX      128
#define MG_HTTP_PATH_PARAMS_MAX 8
#define MG_HTTP_TIMEOUT_S       30

/* Metrics: a registry bounds its series so a bug that builds labels from data cannot grow it
 * without bound. Label values are topic names at most (Pulsar caps topic names near 256). */
#define MG_METRICS_SERIES_MAX            65536
#define MG_METRICS_LABELS_MAX            8
#define MG_METRICS_NAME_BYTES_MAX        128
#define MG_METRICS_LABEL_VALUE_BYTES_MAX 512

/* The growth limit of a string builder initialised without one (mg_strbuf_init with 0): replies
 * built in memory (admin JSON, the Prometheus page) stay far below it; the cap stops a bug from
 * growing one without bound. */
#define MG_STRBUF_BYTES_MAX_DEFAULT (64u * 1024 * 1024)

/* A buffer chain holds at most this many slices; a Pulsar MESSAGE frame needs at most 4
 * (header, command, metadata prefix, payload), a batch of dispatched entries a few dozen. */
#define MG_CHAIN_SLICES_MAX 64

/* Configuration parser (common/config.c, piece: config). A subcommand with more options than
 * this would have an unreadable --help; the bound lets the parser keep per-option state on the
 * stack. A config file line holds a key, '=', a value and a little indentation around them. */
#define MG_CONFIG_OPTIONS_MAX    128
#define MG_CONFIG_LINE_BYTES_MAX (MG_CONFIG_KEY_BYTES_MAX + MG_CONFIG_VALUE_BYTES_MAX + 64)

/* Cross-loop queue (common/queue.c, buffers-and-queue piece). A queue preallocates its ring
 * and its drain batch (two pointers per slot), and a drain pass handles at most its capacity, so
 * the capacity also bounds the time one pass holds the consumer loop. Hand-offs between loops
 * need hundreds to a few thousand slots; a million is far past any sane setting and marks a
 * bug that would pin 16 MiB per queue. */
#define MG_QUEUE_CAPACITY_MAX (1u << 20)

/* CRC32C, histograms and the metrics registry (piece: hist). */
/* A histogram with p precision bits has about (64 - p) * 2^p buckets of 8 bytes. p = 12 (0.025 %
 * error, ~1.7 MiB when value_max is near 2^64) is finer than any latency measurement is accurate;
 * more would only cost memory. */
#define MG_HIST_PRECISION_BITS_MAX     12
/* Histograms behind metrics: 5 bits keep the relative error under 3.2 %, and 2^40 - 1 covers
 * 12.7 days in microseconds or 1 TiB in bytes, in 1152 buckets (9 KiB per series). */
#define MG_METRICS_HIST_PRECISION_BITS 5
#define MG_METRICS_HIST_VALUE_MAX      ((1ull << 40) - 1)
/* Families are registered by code, not built from data: a few hundred exist in practice. */
#define MG_METRICS_FAMILIES_MAX        4096
/* HELP texts are one sentence. */
#define MG_METRICS_HELP_BYTES_MAX      1024

/* HTTP server (common/http.c, piece: http). The longest admin API path has about a dozen
 * segments (/admin/v2/persistent/{t}/{ns}/{topic}/subscription/{sub}/skip/{n}); 32 leaves room
 * and keeps the per-request segment table on the stack. Methods are short tokens ("OPTIONS" is
 * the longest standard one). A bind host is an address literal or a DNS name (at most 253). */
#define MG_HTTP_PATH_SEGMENTS_MAX   32
#define MG_HTTP_METHOD_BYTES_MAX    16
#define MG_HTTP_HOST_BYTES_MAX      256
/* Connections the HTTP server admits past its limit while it closes the idle connection that
 * has waited longest (nginx closes idle keep-alive connections the same way when it runs out):
 * a new request, e.g. the health check, is served at once instead of waiting in the backlog for
 * an idle timeout. Connections in the middle of a request are never closed for it; when all
 * are busy and these slots are taken too, a new connection is closed at once. */
#define MG_HTTP_CONNECTIONS_RESERVE 8

/* Listeners (common/listen.c, piece: listen). Accepting pauses for MIN ms when the process runs
 * out of descriptors, doubling on each failure up to MAX ms: descriptors come back when clients
 * close, and a second is a short wait for a client next to a spinning core. A batch of accepts
 * per readiness event keeps one busy listener from starving the loop's other work. */
#define MG_LISTEN_BACKOFF_MS_MIN   10u
#define MG_LISTEN_BACKOFF_MS_MAX   1000u
#define MG_LISTEN_ACCEPT_BATCH_MAX 64u
/* The soft RLIMIT_NOFILE is raised to the hard limit but no further than this: connection
 * tables are sized by it, and a million descriptors is beyond what one process here serves. */
#define MG_FD_LIMIT_MAX            (1u << 20)
/* Descriptors kept out of the connection budget (a quarter of the limit, within these bounds):
 * RocksDB's files, the journal and entry logs, ledger handles, epoll and event fds, metadata
 * and bookie client sockets, and the admin port. An idle standalone uses about 40. */
#define MG_FD_RESERVE_MIN          64u
#define MG_FD_RESERVE_MAX          2048u
/* The admin HTTP server's share never goes below this, so health and metrics stay reachable. */
#define MG_FD_HTTP_MIN             8u
/* The largest shares mg_fd_budget gives a bookie's RPC server and a broker's Pulsar port: each
 * server's own connection limit (BK_SERVER_CONNECTIONS_MAX, BR_CONNECTIONS_MAX). common includes
 * no other module, so the values are repeated here; bookie/limits.h and broker/limits.h check at
 * compile time that they agree. */
#define MG_FD_BOOKIE_MAX           4096u
#define MG_FD_BROKER_MAX           65536u

/* Relations between the limits above, checked at compile time. */
_Static_assert(MG_CONFIG_LINE_BYTES_MAX <= MG_CONFIG_FILE_BYTES_MAX,
               "a config file holds at least one line of the longest key and value");
_Static_assert(MG_METRICS_HIST_PRECISION_BITS <= MG_HIST_PRECISION_BITS_MAX,
               "the precision of metrics histograms must be one a histogram accepts");
_Static_assert(MG_CHAIN_SLICES_MAX >= 4,
               "a buffer chain must hold a Pulsar MESSAGE frame: header, command, metadata prefix "
               "and payload");
_Static_assert(MG_LISTEN_BACKOFF_MS_MIN <= MG_LISTEN_BACKOFF_MS_MAX,
               "the accept back-off starts at or below its maximum");
_Static_assert(MG_FD_RESERVE_MIN <= MG_FD_RESERVE_MAX,
               "the descriptor reserve's lower bound must not exceed its upper bound");
_Static_assert(MG_FD_RESERVE_MAX + MG_FD_HTTP_MIN < MG_FD_LIMIT_MAX,
               "the largest reserve and the HTTP server's share must leave descriptors for "
               "connections");
_Static_assert(MG_FD_HTTP_MIN <= MG_HTTP_CONNECTIONS_MAX,
               "the HTTP server's smallest descriptor share must be within its connection limit");
#endif
