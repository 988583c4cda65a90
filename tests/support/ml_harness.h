/*
 * The environment of the ledger-level tests (managed ledgers, bookie ledgers, cursors,
 * prefetch): a libuv loop in the test thread, real bookies with the real embedded metadata
 * store on it (support/bk_harness), an optional metrics registry and an ml_env on the
 * harness's metadata and bookie clients. Nothing is mocked.
 *
 * Lifecycle:
 *
 *     zeroed --mlh_start--> RUNNING --mlh_stop--> stopped (the loop closed, zeroed again)
 *
 * Invariants:
 *  1. While RUNNING a repeating guard timer (every MLH_GUARD_MS) keeps the loop alive, so a
 *     test's uv_run(&m->loop, UV_RUN_ONCE) returns within a few milliseconds even when nothing
 *     else happens: a test's own wait (MLH_RUN_UNTIL) is bounded by its deadline.
 *  2. Every wait of the harness is bounded (MLH_WAIT_MS); one that times out fails the call
 *     with MG_ETIMEDOUT. The operation is then still in flight and its callback would write
 *     into the returned call's stack frame: after MG_ETIMEDOUT the test fails at once (it
 *     asserts MG_OK) and runs the loop no more.
 *  3. The harness returns error codes and never asserts: the test decides.
 *
 * Threads: one thread (the loop's) drives an mlh; mlh_start, mlh_stop and the managed-ledger
 * calls run the loop, so they are called from the test's main flow, never from a callback.
 */
#ifndef MG_TESTS_SUPPORT_ML_HARNESS_H
#define MG_TESTS_SUPPORT_ML_HARNESS_H

#include "common/metrics.h"
#include "ledger/ledger.h"
#include "support/bk_harness.h"
#include "support/loop_wait.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The guard timer's period: how long an idle uv_run(UV_RUN_ONCE) may block. */
#define MLH_GUARD_MS    5
/* One open or close of a managed ledger on loopback bookies takes milliseconds; past this
 * something is stuck. */
#define MLH_WAIT_MS     20000
/* Loop turns mlh_stop gives the closing handles before it closes the loop. */
#define MLH_DRAIN_TURNS 1000

typedef struct mlh {
    /* Read by tests, written only by the functions below. */
    uv_loop_t loop;
    bkh *h;              /* the bookies and the metadata store */
    ml_env *env;         /* on bkh_md_client(h) and bkh_bk_client(h) */
    mg_metrics *metrics; /* NULL unless mlh_opts.metrics; given to the env */
    /* Private. */
    uv_timer_t guard;
} mlh;

typedef struct mlh_opts {
    int bookie_count; /* 1..BKH_BOOKIES_MAX; 0 = 1 */
    bool metrics;     /* create a registry (mlh.metrics) and pass it to the env */
    ml_env_opts env;  /* the env's options; .metrics is set by the harness */
} mlh_opts;

/* Initialises m->loop with its guard timer, starts o->bookie_count bookies (bkh_start), creates
 * the metrics registry when asked and the env. m is overwritten (it must not hold a running
 * harness). On failure nothing is left running and the loop is closed.
 * Errors: MG_ESYS (the loop or the timer), bkh_start's, mg_metrics_create's, ml_env_create's. */
int mlh_start(mlh *m, const mlh_opts *o);

/* Destroys the env (every ledger, managed ledger and cursor on it must be closed first) and the
 * bookies, closes the guard timer, runs the loop until nothing is left on it (at most
 * MLH_DRAIN_TURNS turns), closes it and destroys the metrics registry. Returns MG_ESTATE when
 * handles were left open on the loop (the test's own), else MG_OK. */
int mlh_stop(mlh *m);

/* The value of the unlabelled counter name of m's registry (0 when there is none). */
uint64_t mlh_counter(mlh *m, const char *name);

/* Opens the managed ledger name with cfg on env (m->env, or another env on m's loop, e.g. a
 * second broker's), running the loop until it is open. On success *out is owned by the caller
 * (mlh_close_ml). Errors: ml_open's (from the call or its callback), MG_ETIMEDOUT. */
int mlh_open_ml(mlh *m, ml_env *env, const char *name, const ml_config *cfg, ml_managed **out);

/* Closes ml, running the loop until its callback came; *status (may be NULL) receives the
 * callback's status (e.g. MG_EFENCED for a fenced owner: ml is closed all the same). Returns
 * MG_OK once the callback came, ml_close's error (no callback then), or MG_ETIMEDOUT (none
 * within MLH_WAIT_MS). */
int mlh_close_ml(mlh *m, ml_managed *ml, int *status);

/* What read callbacks delivered, collected (mlh_read_collect): the positions and broker
 * timestamps of the entries, in order. A test's reads stay well below the capacity; entries past
 * it are dropped (and then missing from what the test compares). */
#define MLH_READ_ENTRIES_MAX 256

typedef struct mlh_read {
    int calls;  /* callbacks so far */
    int status; /* the last one's */
    size_t n;   /* entries collected */
    ml_position got[MLH_READ_ENTRIES_MAX];
    int64_t ts[MLH_READ_ENTRIES_MAX];
} mlh_read;

/* A read callback (ml_read, mc_read_entries) appending to the mlh_read arg points to. */
void mlh_read_collect(int status, const ml_entry *e, size_t count, void *arg);

/* For Criterion tests (criterion.h included first): runs loop one iteration at a time until
 * cond holds, failing the test when wait_ns nanoseconds passed first (MGT_RUN_UNTIL). */
#define MLH_RUN_UNTIL(loop, cond, wait_ns) MGT_RUN_UNTIL(loop, cond, wait_ns)

#endif
