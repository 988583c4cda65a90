/*
 * Waiting on a libuv loop in tests: run the test's loop until a condition holds or a deadline
 * passes, or for a fixed time. The condition is checked before the first iteration and after
 * each one; a guard timer (every 5 ms) makes each iteration return even when nothing else
 * happens on the loop, so the deadline is met within a few milliseconds.
 *
 * Invariants: every wait is bounded by its timeout; a call leaves nothing of its own on the loop
 * (the guard timer is closed, and its close completed, before it returns).
 *
 * Call from the test's main flow, never from a callback of the same loop (uv_run is not
 * reentrant).
 */
#ifndef MG_TESTS_SUPPORT_LOOP_WAIT_H
#define MG_TESTS_SUPPORT_LOOP_WAIT_H

#include <stdbool.h>
#include <uv.h>

/* Runs loop until cond(arg) returns true or timeout_ms passed; returns cond's last value. */
bool mgt_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, int timeout_ms);

/* Runs loop for ms milliseconds (whatever happens). */
void mgt_run_for(uv_loop_t *loop, int ms);

/* A condition for mgt_run_until: whether the bool that arg points to is true. */
bool mgt_flag_set(void *arg);

/* For Criterion tests (criterion.h included first): runs loop one iteration at a time until
 * cond holds, failing the test when wait_ns nanoseconds passed first. The loop needs something
 * that makes each iteration return (a guard timer, as mgt_guard_start in support/cr_util.h). */
#define MGT_RUN_UNTIL(loop, cond, wait_ns)                                                  \
    do {                                                                                    \
        uint64_t run_until_t0 = uv_hrtime();                                                \
        while (!(cond)) {                                                                   \
            cr_assert_lt(uv_hrtime() - run_until_t0, (wait_ns), "timed out waiting for %s", \
                         #cond);                                                            \
            uv_run((loop), UV_RUN_ONCE);                                                    \
        }                                                                                   \
    } while (0)

#endif
