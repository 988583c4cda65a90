/*
 * A real `magnetar standalone` for tests: the binary named by MG_BIN in a child process, on
 * free loopback ports the harness picks below the kernel's ephemeral range (so that no outgoing
 * connection takes one while the standalone is down for a restart; see sa_harness.c), bound to
 * 127.0.0.1, with its data and its log in a fresh directory under /var/tmp. The ports are read
 * from the standalone's "ready" line, which it prints once every part of it serves (the Kafka
 * port only when the Kafka shim is on: `--kafka off` in the extra arguments leaves it 0).
 *
 * Lifecycle of a sah_standalone:
 *
 *     sah_start --> RUNNING --sah_stop / sah_kill--> STOPPED --sah_restart--> RUNNING
 *                      |                                |      (same data, same ports)
 *                      +-----------sah_destroy----------+--> gone (killed, directory removed)
 *
 * sah_restart also works on a RUNNING standalone (stops it first).
 *
 * Invariants:
 *  1. No standalone outlives the process that started it: the child has PR_SET_PDEATHSIG =
 *     SIGKILL, so it dies with the starting thread even when the test crashes or is killed.
 *     Consequence: call sah_start and sah_restart from a thread that lives as long as the
 *     standalone (the test's main thread).
 *  2. Every wait is bounded: start-up SAH_START_TIMEOUT_MS, SIGTERM to exit SAH_STOP_TIMEOUT_MS
 *     (then SIGKILL), an HTTP request SAH_HTTP_TIMEOUT_MS.
 *  3. The directory is under /var/tmp, not TMPDIR: the bookie's journal and entry logs use
 *     O_DIRECT, which tmpfs refuses.
 *  4. The harness returns error codes and never asserts: the test decides (cr_assert_eq(rc,
 *     MG_OK, ...)). Failures are explained with MG_ERROR, and a failed start prints the end of
 *     the standalone's log.
 *
 * With Criterion: keep the sah_standalone in a static variable, start it in the test (or the
 * suite's .init) and call sah_destroy in the suite's .fini, which runs in the same worker
 * process whether the test passed or not.
 *
 * MG_TEST_STANDALONE_ARGS: when this environment variable is set, its words (split on spaces
 * and tabs; no quoting) are appended to the command line of every standalone started here,
 * after the test's own extra arguments, so the whole suite can run in another mode of the
 * broker without a copy of any test (ctest's *_prefetch_off entries set it to "--prefetch off").
 * A test whose expectations depend on that mode asks sah_env_option.
 *
 * Not thread-safe: one thread drives a sah_standalone.
 */
#ifndef MG_TESTS_SUPPORT_SA_HARNESS_H
#define MG_TESTS_SUPPORT_SA_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Storage, broker and HTTP server up on an idle machine within a second; a loaded CI runner
 * with sanitizers may be many times slower. */
#define SAH_START_TIMEOUT_MS     30000
/* A clean shutdown closes every topic and the storage; past this the standalone is stuck. */
#define SAH_STOP_TIMEOUT_MS      15000
/* One admin or metrics request (curl's --max-time); the harness gives curl 5 s more to exit
 * before it kills it. */
#define SAH_HTTP_TIMEOUT_MS      10000
#define SAH_DIR_BYTES_MAX        256
#define SAH_PATH_BYTES_MAX       300
/* Arguments a test adds to the standalone's command line (MG_TEST_STANDALONE_ARGS's words
 * included), and their bytes altogether. */
#define SAH_EXTRA_ARGS_MAX       16
#define SAH_EXTRA_ARGS_BYTES_MAX 512
/* How much of the end of the log sah_dump_log prints. */
#define SAH_LOG_TAIL_BYTES       8192

typedef struct sah_standalone {
    /* Read by tests, written only by the functions below. Zero-initialise (or let sah_start
     * do it). */
    pid_t pid;                    /* the standalone, 0 when not running */
    char dir[SAH_DIR_BYTES_MAX];  /* the temporary directory ("" before sah_start) */
    char log[SAH_PATH_BYTES_MAX]; /* <dir>/standalone.log: its stdout and stderr, all runs */
    uint16_t broker_port;         /* Pulsar protocol, 0 before the first ready line */
    uint16_t http_port;           /* admin API and /metrics */
    uint16_t bookie_port;         /* the embedded bookie's RPC */
    uint16_t kafka_port;          /* the Kafka protocol, 0 when the shim is off */
    /* Private. */
    off_t log_from;                       /* where the current run's output starts */
    char extra[SAH_EXTRA_ARGS_BYTES_MAX]; /* the extra arguments, each NUL-terminated */
    int extra_count;
} sah_standalone;

/* Creates the directory, starts `$MG_BIN standalone --data-dir <dir>/data --bind-address
 * 127.0.0.1 --advertised-address 127.0.0.1 --broker-port B --bookie-port K --http-port H
 * --write-cache-mb 8 --read-cache-mb 8 --log-level info --chat-gateway off --chat-job off
 * --kafka-port F` (free ports it picked; a start that exits at once, a port taken meanwhile,
 * is made again with others, up to three times) followed by extra_args (NULL or a
 * NULL-terminated list, copied: sah_restart uses them again) and by the words of
 * MG_TEST_STANDALONE_ARGS (read now, kept for sah_restart too), and returns once the ready line
 * named the ports. s is overwritten (it must not hold a running standalone or an undestroyed
 * directory). On failure the end of the log is printed, nothing is left running and the
 * directory is removed.
 * Errors: MG_EINVAL (MG_BIN unset), MG_ELIMIT (more than SAH_EXTRA_ARGS_MAX extra arguments or
 * SAH_EXTRA_ARGS_BYTES_MAX bytes of them, MG_TEST_STANDALONE_ARGS's words included), MG_EIO
 * (directory or log), MG_ESYS (fork),
 * MG_ECLOSED (the standalone exited during start-up), MG_ETIMEDOUT (not ready within
 * SAH_START_TIMEOUT_MS; it was killed). */
int sah_start(sah_standalone *s, const char *const *extra_args);

/* Stops the standalone if it runs (as sah_stop, whatever its exit status) and starts it again
 * on the same data directory, with the same ports (the Kafka port included) and extra
 * arguments; returns once it is ready. Its output is appended to the same log. Errors as
 * sah_start, and MG_ESTATE when s was never started; on failure nothing is left running and the
 * directory is kept (sah_destroy removes it). */
int sah_restart(sah_standalone *s);

/* Sends SIGTERM and waits up to SAH_STOP_TIMEOUT_MS for the standalone to exit; past that it is
 * killed with SIGKILL. Either way it is reaped and s->pid is 0 afterwards; the directory stays.
 * *wait_status (may be NULL) receives waitpid's status when it exited by itself, else 0.
 * Returns MG_OK only for a clean exit (status 0). Errors: MG_EIO (it exited with another status
 * or by a signal), MG_ETIMEDOUT (it had to be killed), MG_ESTATE (not running). */
int sah_stop(sah_standalone *s, int *wait_status);

/* Kills the standalone with SIGKILL and reaps it; nothing when it is not running. */
void sah_kill(sah_standalone *s);

/* Kills the standalone if it runs and removes the directory. s may be zeroed, stopped or
 * running; calling it twice is harmless. */
void sah_destroy(sah_standalone *s);

/* Prints the last SAH_LOG_TAIL_BYTES of the standalone's log to stderr (for a failed test);
 * nothing when there is no log. */
void sah_dump_log(const sah_standalone *s);

/* A request to the standalone's HTTP server through curl: method (e.g. "GET", "POST") on path
 * (starting with '/'); body, when not NULL, is sent as application/json (an empty string sends
 * an empty body with Content-Length: 0). The answer's body is written to out (NUL-terminated;
 * out may be NULL when cap is 0, to discard it). Returns the HTTP status code (100-599).
 * Errors: MG_EINVAL (no HTTP port yet, bad arguments), MG_ENOTFOUND (no curl on PATH), MG_ESYS
 * (pipe, spawn), MG_EIO (curl failed: no connection, its time limit), MG_ETIMEDOUT (curl did
 * not exit in time and was killed), MG_ELIMIT (the body needs more than cap - 1 bytes; out
 * holds its start), MG_EPROTO (no status from curl). */
int sah_http(const sah_standalone *s, const char *method, const char *path, const char *body,
             char *out, size_t cap);

/* The word that follows option (e.g. "--prefetch") in MG_TEST_STANDALONE_ARGS, copied into
 * value (NUL-terminated, cut to cap - 1 bytes); the last one when option is there several times,
 * as the standalone's own parsing keeps the last. Returns false, value untouched, when the
 * variable is unset or does not name option with a word after it. */
bool sah_env_option(const char *option, char *value, size_t cap);

/* GET /metrics: the answer in a new malloc'd NUL-terminated text of at most cap - 1 bytes in
 * *out (the caller frees it; NULL when it could not be allocated, MG_ENOMEM). Returns what
 * sah_http returns: 200 when the text is complete. */
int sah_metrics_get(const sah_standalone *s, size_t cap, char **out);

/* The value of the labelled series name{...} of a /metrics text (sah_http's answer) whose
 * labels contain label (e.g. reason="not_reading"); -1 when there is no such line. */
double sah_metric(const char *text, const char *name, const char *label);

/* The Kafka port of the running standalone (kafka_port), read from
 * the current run's ready line ("kafka 127.0.0.1:PORT"); 0 when that line names none (the Kafka
 * port disabled by an extra argument) or when s is not running. */
uint16_t sah_kafka_port(const sah_standalone *s);

/* Milliseconds of CLOCK_MONOTONIC: deadlines and durations. */
int64_t sah_now_ms(void);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME): compared with the broker's publish and
 * event times. */
int64_t sah_wall_ms(void);

#endif
