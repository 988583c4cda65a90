/*
 * Every fixed limit in Magnetar, in one place, each with the reason for its value
 * (SQLite's sqliteLimit.h is the model). A limit that an operator may change is a default
 * here and a configuration option elsewhere.
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
#define MG_HTTP_PATH_SEGMENTS_MAX 32
#define MG_HTTP_METHOD_BYTES_MAX  16
#define MG_HTTP_HOST_BYTES_MAX    256

/* Metadata store, ZooKeeper backend (piece: mdzk, src/metadata/zk.c). */
/* A connect string lists a handful of host:port pairs and a chroot path; ensembles have 3, 5 or 7
 * servers, so 64 hosts and 4 KiB are far past any real setting and catch a pasted file. */
#define MD_ZK_TARGET_BYTES_MAX  4096
#define MD_ZK_HOSTS_MAX         64
/* A get with a watch on a missing node reads again when an exists check finds the node created
 * meanwhile; each round means the node was created and deleted again within one round trip.
 * Past this many rounds the churn is pathological and the read fails with MG_EIO. */
#define MD_ZK_GET_ROUNDS_MAX    16
/* A create with MD_CREATE_PARENTS recreates the missing ancestors again when another client
 * deletes one of them in between; past this many rounds it fails with MG_ENOTFOUND. */
#define MD_ZK_PARENT_ROUNDS_MAX 8
/* Closing waits this long for requests already sent to get their real results (a live server
 * answers in milliseconds; a dead one makes them fail within a connect attempt) before it closes
 * the handle and fails what is left with MG_ECLOSED. */
#define MD_ZK_CLOSE_DRAIN_MS    5000
/* After a session expiry a new handle is created; if that fails (host names do not resolve, out
 * of memory) it is tried again after this delay, until it works or the store is closed. */
#define MD_ZK_REINIT_RETRY_MS   1000

#endif
