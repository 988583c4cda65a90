/*
 * Waiting on a libuv loop in tests (see loop_wait.h). The deadline is taken from
 * CLOCK_MONOTONIC rather than uv_now, which only moves when the loop runs.
 */
#include "support/loop_wait.h"

#include "support/sa_harness.h"

#define MGT_GUARD_MS 5

static void mgt_guard_tick(uv_timer_t *t)
{
    (void)t;
}

bool mgt_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, int timeout_ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, mgt_guard_tick, MGT_GUARD_MS, MGT_GUARD_MS);
    int64_t deadline = sah_now_ms() + timeout_ms;
    bool ok;
    while (!(ok = cond(arg)) && sah_now_ms() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* completes the close: guard lives on this stack */
    return ok;
}

static bool mgt_never(void *arg)
{
    (void)arg;
    return false;
}

void mgt_run_for(uv_loop_t *loop, int ms)
{
    mgt_run_until(loop, mgt_never, NULL, ms);
}

bool mgt_flag_set(void *arg)
{
    return *(bool *)arg;
}
