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
#define MG_CONFIG_KEY_BYTES_MAX 64
#define MG_CONFIG_VALUE_BYTES_MAX 4096
#define MG_CONFIG_FILE_BYTES_MAX (1024 * 1024)

/* HTTP admin/metrics server. Admin requests carry small JSON bodies; Pulsar's admin API has no
 * request larger than a few KiB. Connections are operators and scrapers, not clients. */
#define MG_HTTP_BODY_BYTES_MAX (1024 * 1024)
#define MG_HTTP_CONNECTIONS_MAX 1024
#define MG_HTTP_ROUTES_MAX 128
#define MG_HTTP_PATH_PARAMS_MAX 8
#define MG_HTTP_TIMEOUT_S 30

/* Metrics: a registry bounds its series so a bug that builds labels from data cannot grow it
 * without bound. Label values are topic names at most (Pulsar caps topic names near 256). */
#define MG_METRICS_SERIES_MAX 65536
#define MG_METRICS_LABELS_MAX 8
#define MG_METRICS_NAME_BYTES_MAX 128
#define MG_METRICS_LABEL_VALUE_BYTES_MAX 512

/* A buffer chain holds at most this many slices; a Pulsar MESSAGE frame needs at most 4
 * (header, command, metadata prefix, payload), a batch of dispatched entries a few dozen. */
#define MG_CHAIN_SLICES_MAX 64

#endif
