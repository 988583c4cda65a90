/*
 * The fixed limits of the command-line tools (src/tools, src/main.c), each with the reason for
 * its value; relations with the limits of the modules they use are checked at compile time at the
 * end (docs/common.md, "Limits").
 */
#ifndef MG_TOOLS_LIMITS_H
#define MG_TOOLS_LIMITS_H

#include "common/limits.h"

/* Bookie role (src/tools/bookie.c). */
/* How long start-up waits for the metadata store before giving up. */
#define BOOKIE_START_TIMEOUT_MS 30000

/* Standalone and broker roles (src/tools/node.c). */
/* How long start-up waits for the metadata store before giving up. */
#define NODE_START_TIMEOUT_MS 30000

/* magnetar client produce / consume (src/tools/client.c). */
#define CLI_MESSAGES_MAX   1024 /* distinct -m messages */
#define CLI_PROPERTIES_MAX 64

/* fio runs of magnetar perf (src/tools/fio.c). */
/* fio prints about 10 KiB of JSON per job; more than this is not fio's answer. */
#define FIO_OUTPUT_BYTES_MAX  (4u * 1024 * 1024)
/* A single fio job runs at most this long (fio's --runtime; the layout of the file comes first
 * and is bounded by its size). */
#define FIO_RUNTIME_S         60
/* Shell command lines built for popen (paths are at most PATH_MAX). */
#define FIO_COMMAND_BYTES_MAX 8192

/* magnetar perf against a bookie (src/tools/perf.c). */
/* Progress lines on stderr this often during the add and read phases. */
#define PERF_PROGRESS_MS          2000
/* The shared pattern entries are cut from: entry offsets wrap within this many bytes. */
#define PERF_PATTERN_SPAN_BYTES   (64u * 1024)
/* Latency histograms: 2^5 sub-buckets per power of two (< 3.2 % error), up to 1000 s in µs. */
#define PERF_HIST_PRECISION_BITS  5
#define PERF_HIST_VALUE_MAX_US    1000000000ull
/* Mismatching entries described one by one on stderr before only counting the rest. */
#define PERF_MISMATCH_REPORTS_MAX 10
/* The bookie's /metrics page; far smaller in practice. */
#define PERF_METRICS_BYTES_MAX    (4u * 1024 * 1024)
/* Connecting to and reading /metrics. */
#define PERF_METRICS_TIMEOUT_S    5

/* magnetar perf produce / consume against a broker (src/tools/perf_pulsar.c). */
#define PP_TOPICS_MAX       64
#define PP_PRODUCERS_MAX    256
#define PP_LATENCY_US_MAX   (600ull * 1000 * 1000) /* 10 min: anything above is an overflow */
#define PP_TICK_MS          1
#define PP_CLOSE_TIMEOUT_MS 30000

/* Relations between the limits above and the lower modules', checked at compile time. */
_Static_assert(PERF_HIST_PRECISION_BITS <= MG_HIST_PRECISION_BITS_MAX,
               "the precision of perf's latency histograms must be one a histogram accepts");

#endif
