/* The clocks of common/clock.h: the monotonic clock never goes back, its three units read the
 * same clock (and the one uv_hrtime reads), a sleep shows on it, and the wall clock agrees with
 * time(NULL). */
#include "common/clock.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

TestSuite(clock, .timeout = 10);

#define CALLS 200000

Test(clock, monotonic_never_goes_back)
{
    uint64_t ns = mg_clock_mono_ns(), us = mg_clock_mono_us(), ms = mg_clock_mono_ms();
    for (int i = 0; i < CALLS; i++) {
        uint64_t ns2 = mg_clock_mono_ns(), us2 = mg_clock_mono_us(), ms2 = mg_clock_mono_ms();
        cr_assert_geq(ns2, ns, "ns went back: %llu after %llu", (unsigned long long)ns2,
                      (unsigned long long)ns);
        cr_assert_geq(us2, us);
        cr_assert_geq(ms2, ms);
        ns = ns2;
        us = us2;
        ms = ms2;
    }
}

Test(clock, units_agree)
{
    for (int i = 0; i < 1000; i++) {
        /* Each read lies between the reads before and after it, in its own unit. */
        uint64_t ns1 = mg_clock_mono_ns();
        uint64_t us = mg_clock_mono_us();
        uint64_t ms = mg_clock_mono_ms();
        uint64_t ns2 = mg_clock_mono_ns();
        cr_assert_leq(ns1 / 1000u, us);
        cr_assert_leq(us, ns2 / 1000u);
        cr_assert_leq(ns1 / 1000000u, ms);
        cr_assert_leq(ms, ns2 / 1000000u);
    }
}

Test(clock, monotonic_is_uv_hrtime_clock)
{
    /* clock.h promises the clock uv_hrtime() reads, so the two can be mixed. */
    uint64_t h1 = uv_hrtime();
    uint64_t ns = mg_clock_mono_ns();
    uint64_t h2 = uv_hrtime();
    cr_assert_leq(h1, ns);
    cr_assert_leq(ns, h2);
}

Test(clock, a_sleep_shows_on_the_monotonic_clock)
{
    uint64_t t0 = mg_clock_mono_ms();
    struct timespec d = { 0, 20 * 1000000L };
    while (nanosleep(&d, &d) != 0)
        ;
    uint64_t t1 = mg_clock_mono_ms();
    cr_assert_geq(t1 - t0, 20);
    cr_assert_lt(t1 - t0, 5000);
}

Test(clock, wall_is_near_time)
{
    /* time(NULL) may read a coarser clock that lags by a tick: allow a second either way. */
    time_t t0 = time(NULL);
    int64_t w = mg_clock_wall_ms();
    time_t t1 = time(NULL);
    cr_assert_geq(w / 1000, (int64_t)t0 - 1);
    cr_assert_leq(w / 1000, (int64_t)t1 + 1);
    /* Milliseconds since the epoch: past 2020-01-01 (1577836800 s). */
    cr_assert_gt(w, INT64_C(1577836800000));
}
