/*
 * A real ZooKeeper server for tests: a standalone ZooKeeperServerMain (Debian's `zookeeper`
 * package) in a JVM child process, on a free loopback port, with its configuration, data and
 * log in a fresh temporary directory.
 *
 * Lifecycle of a zkh:
 *
 *     zkh_start --> RUNNING --zkh_stop--> STOPPED --zkh_restart (same port, same data)--> RUNNING
 *                      |                     |
 *                      +----zkh_destroy------+--> gone (server stopped, directory removed)
 *
 * zkh_restart also works on a RUNNING server (stops it first): the "server went away mid-test,
 * the client recovers" scenario.
 *
 * Invariants:
 *  1. No server outlives the process that started it. The child is its own process group
 *     (stopping signals the whole group) and has PR_SET_PDEATHSIG = SIGKILL, so it dies with the
 *     starting thread even when the test crashes or is killed. Consequence: call zkh_start and
 *     zkh_restart from a thread that lives as long as the server (the main thread).
 *  2. Every wait is bounded: start ZKH_START_TIMEOUT_MS per attempt, stop ZKH_STOP_TIMEOUT_MS
 *     before SIGKILL.
 *  3. A missing java or ZooKeeper jar is an error (MG_ENOTFOUND with a message), never a skip:
 *     CI must run these tests.
 *
 * Suite-wide use with Criterion: start one server in ReportHook(PRE_ALL) and zkh_destroy it in
 * ReportHook(POST_ALL), with the zkh in a static variable. Criterion runs each test in a worker
 * process re-executed from the runner, so the workers do not see the runner's variables: pass
 * the URL to them in the environment (setenv("...", zkh_url(&h), 1) in PRE_ALL; workers inherit
 * it). The server is a child of the runner's main thread, which outlives every worker.
 *
 * Overrides (environment): JAVA_HOME (use $JAVA_HOME/bin/java instead of java on PATH),
 * MG_ZK_CLASSPATH (instead of /etc/zookeeper/conf:/usr/share/java/zookeeper.jar).
 *
 * Not thread-safe: one thread drives a zkh.
 */
#ifndef MG_TESTS_SUPPORT_ZK_HARNESS_H
#define MG_TESTS_SUPPORT_ZK_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

/* A JVM with ZooKeeper listens within 2-4 s on an idle machine; a loaded CI runner with
 * sanitizers may be several times slower. */
#define ZKH_START_TIMEOUT_MS 30000
/* ZooKeeper exits within a second of SIGTERM; past this it gets SIGKILL. */
#define ZKH_STOP_TIMEOUT_MS  10000
/* A freshly picked port can be taken by someone else before the JVM binds it: try again with
 * another one this many times. */
#define ZKH_START_ATTEMPTS   3
#define ZKH_DIR_BYTES_MAX    256
#define ZKH_URL_BYTES_MAX    64

typedef struct zkh {
    /* Private: use the functions below. Zero-initialise (or let zkh_start do it). */
    char dir[ZKH_DIR_BYTES_MAX]; /* temporary directory ("" before zkh_start) */
    char url[ZKH_URL_BYTES_MAX]; /* "zk:127.0.0.1:<port>" */
    int port;
    pid_t pid; /* the JVM (also its process group), 0 when not running */
} zkh;

/* Creates the directory, picks a free port and starts the server; returns once it answers
 * "ruok" with "imok". h is overwritten (it must not hold a running server). On failure the
 * server's log is printed, nothing is left running and the directory is removed.
 * Errors: MG_ENOTFOUND (no java or no ZooKeeper jar), MG_ETIMEDOUT (did not come up),
 * MG_EIO / MG_ESYS (directory, config, fork). */
int zkh_start(zkh *h);

/* Stops the server (SIGTERM to its process group, SIGKILL after ZKH_STOP_TIMEOUT_MS) and reaps
 * it. The directory and data stay, for zkh_restart. MG_OK also when it was not running. */
int zkh_stop(zkh *h);

/* Stops the server if it runs and starts it again on the same port with the same data
 * directory (persistent nodes and sessions survive). Errors as zkh_start (MG_ESTATE if h was
 * never started); on failure the server is stopped, the directory kept (zkh_destroy removes it). */
int zkh_restart(zkh *h);

/* Stops the server if it runs and removes the directory. h may be zeroed, stopped or running;
 * calling it twice is harmless. */
void zkh_destroy(zkh *h);

/* "zk:127.0.0.1:<port>" for md_store_open (append "/chroot" for a chroot). Valid after a
 * successful zkh_start until zkh_destroy. */
const char *zkh_url(const zkh *h);

/* The client port, 0 before zkh_start. */
int zkh_port(const zkh *h);

/* Whether the server process is running (it has not exited). */
bool zkh_running(zkh *h);

#endif
