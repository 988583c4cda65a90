/*
 * The fixed limits of the tail cache and prefetcher (src/prefetch), each with the reason for its
 * value; relations between them are checked at compile time at the end (docs/common.md,
 * "Limits"). The defaults are those of pf_env_opts (prefetch.h).
 */
#ifndef MG_PREFETCH_LIMITS_H
#define MG_PREFETCH_LIMITS_H

#include "bookie/limits.h"

/* Tail cache: enough for the last seconds of every busy topic of a broker (at 400 MB/s of
 * produce, 256 MiB is ~0.6 s of everything; a tail reader needs only what was added since its
 * last read). */
#define PF_TAIL_CACHE_BYTES_DEFAULT (256ull * 1024 * 1024)
/* Prefetch budget: windows of a few tens of MiB for each of several lagging readers. */
#define PF_PREFETCH_BYTES_DEFAULT   (512ull * 1024 * 1024)
/* One range read: the shape of fio's sequential read (1 MiB blocks); the bookie turns it into
 * one or a few O_DIRECT reads. */
#define PF_READ_BYTES_DEFAULT       (1u * 1024 * 1024)
/* A window's floor and ceiling. The floor keeps two reads in flight from the start; the target
 * grows (rate x latency, doubled at every wait) up to the ceiling. Small on purpose: the bytes
 * in flight should still be in the CPU's cache when they are checked and sent. On a 2-core
 * machine with an in-process bookie, a 1 GiB cold drain cost 0.8-0.95 CPU s with windows of
 * 2-8 MiB, 1.0-1.1 s with 1-4 MiB (reads of 512 KiB) and 1.4-2.2 s with 8-64 MiB: the checksum and
 * the copy to the consumer's socket ran 3-4x slower on data fetched long before (perf record). A
 * disk that needs more depth than this to stream gets it from the bookie's own reads. */
#define PF_WINDOW_BYTES_MIN_DEFAULT (2u * 1024 * 1024)
#define PF_WINDOW_BYTES_MAX_DEFAULT (8u * 1024 * 1024)
/* Catch-up bytes handed to dispatch per loop turn before the loop polls again. */
#define PF_SLICE_BYTES_DEFAULT      (2u * 1024 * 1024)
/* The share of the broker loop's time that catch-up dispatch may take (per 10 ms). On a 2-core
 * machine during 4 cold drains at ~1.1 GB/s, publish p99 was 58-76 ms with no cap and 33-38 ms
 * with 50 %, the drains as fast; a cold drain alone was not slower. */
#define PF_CATCHUP_DUTY_PCT_DEFAULT 50u
/* A reader that did not ask for entries for this long gives its window back. */
#define PF_IDLE_RELEASE_MS          5000u
/* Reads in flight per topic: 64 x 1 MiB covers the largest window. */
#define PF_TOPIC_READS_MAX          64u
/* A failed fetch is tried again this often, after this long. */
#define PF_READ_ATTEMPTS_MAX        3u
#define PF_RETRY_MS                 100u
/* Entries handed over in one read: the array is on the heap, sized per call. */
#define PF_READ_ENTRIES_MAX         10000
/* The stats period of the rate metrics (Pulsar's cache rates are per period too). */
#define PF_STATS_PERIOD_MS          10000u
/* Loops over positions are bounded: no claim or range holds more entries than this. */
#define PF_WALK_ENTRIES_MAX         (16u * 1024 * 1024)
/* The drain rate is measured over spans of at least this long. */
#define PF_RATE_SPAN_MS             200u

/* Relations between the limits above, checked at compile time. */
_Static_assert(PF_READ_BYTES_DEFAULT <= PF_WINDOW_BYTES_MIN_DEFAULT,
               "a window must hold at least one read");
_Static_assert(PF_WINDOW_BYTES_MIN_DEFAULT <= PF_WINDOW_BYTES_MAX_DEFAULT,
               "a window's floor must not exceed its ceiling");
_Static_assert((unsigned long long)PF_TOPIC_READS_MAX *PF_READ_BYTES_DEFAULT >=
                   PF_WINDOW_BYTES_MAX_DEFAULT,
               "a topic's reads in flight must be able to fill the largest window");
_Static_assert(PF_READ_BYTES_DEFAULT <= BK_RANGE_BYTES_MAX,
               "one range read must be one a bookie answers whole (BK_RANGE_BYTES_MAX)");

#endif
