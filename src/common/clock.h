/*
 * Clocks: the one place Magnetar reads the time, as static inline functions over
 * clock_gettime(2).
 *
 * - mg_clock_mono_ns/us/ms: CLOCK_MONOTONIC, for durations, deadlines, rates and latencies. It
 *   never goes back and does not jump when the wall clock is set; its origin is arbitrary (the
 *   boot), so its values mean something only relative to each other. It is the clock libuv's
 *   uv_hrtime() reads on Linux, so the two can be mixed.
 * - mg_clock_wall_ms: CLOCK_REALTIME, milliseconds since the Unix epoch, for timestamps that
 *   leave the process (Pulsar publish and broker timestamps, metadata modification times, ledger
 *   creation times). It can jump when the clock is set: never measure a duration with it.
 *
 * The three monotonic functions read the same clock: mg_clock_mono_us() is
 * mg_clock_mono_ns() / 1000 and mg_clock_mono_ms() is mg_clock_mono_ns() / 1000000, truncated.
 * Any thread may call them; they take no lock and never fail (clock_gettime cannot fail for these
 * clocks with a valid pointer).
 *
 * A loop's cached time (uv_now) is not here on purpose: code on a loop that wants the time of the
 * current loop turn, the same for every callback in it, calls uv_now(loop) itself.
 */
#ifndef MG_COMMON_CLOCK_H
#define MG_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on the monotonic clock. */
static inline uint64_t mg_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Microseconds on the monotonic clock. */
static inline uint64_t mg_clock_mono_us(void)
{
    return mg_clock_mono_ns() / 1000u;
}

/* Milliseconds on the monotonic clock. */
static inline uint64_t mg_clock_mono_ms(void)
{
    return mg_clock_mono_ns() / 1000000u;
}

/* Milliseconds since the Unix epoch (wall-clock time). */
static inline int64_t mg_clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
