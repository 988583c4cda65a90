/*
 * The prefetch module: the broker's only way to read entries (../shared/ARCHITECTURE.md §6).
 * It holds two caches in front of the managed ledger, each with its own byte budget:
 *
 *  - the TAIL CACHE: an entry is inserted when its add completes (ml_set_added_listener), as the
 *    very reference-counted buffer that went to the bookies (no copy), and readers at the tail
 *    are served from it without a bookie read;
 *  - PREFETCH WINDOWS: for every reader behind the tail, entries are fetched ahead of its read
 *    position with large range reads (PF_READ_BYTES_DEFAULT each, ml_read of one ledger's
 *    contiguous entries), before the reader asks, keeping about rate x latency bytes in flight
 *    (with a floor and a ceiling).
 *
 * EXPECTED READS (PIP-430's idea). Every reader has a CLAIM: a contiguous run of positions
 * [claim_first, claim_last] that it will read. Every cached entry counts the claims that cover
 * it (expected); an entry that arrives (added, or fetched) is counted for the claims covering it
 * then. A reader that reads past a position takes its count back; an entry whose count reaches
 * zero is released at once. So an entry lives exactly as long as some reader still expects it,
 * or until its budget needs the room (oldest first). Claims:
 *  - a reader whose claim ends right before a new entry (or whose read position is that entry)
 *    extends its claim over it: readers at the tail expect every new entry;
 *  - a reader behind extends its claim window by window, fetching what no one has cached or
 *    fetches already; readers of one topic whose windows overlap share the cached entries and
 *    the reads in flight (one disk read, each entry expected once per reader);
 *  - what a reader read stays claimed until its next read (the broker may have to send part of
 *    it again at once: a consumer without room gets it through the replay set, from here);
 *  - a reader that seeks, goes inactive (no consumer) or closes gives its whole claim back, and so
 *    does one that did not read for PF_IDLE_RELEASE_MS; what it had fetched and nobody else
 *    expects is freed (counted as wasted).
 *
 * BUDGETS. Tail entries are charged to the tail budget; when it is full the oldest tail entry is
 * evicted, and catch-up work never evicts a tail entry. Fetched entries and the bytes reserved by
 * reads in flight are charged to the prefetch budget: a read is issued only when its
 * reservation fits, so windows shrink when the budget is full and the broker never holds more
 * than the two budgets. A reader that finds nothing cached and cannot fetch reads on demand (the
 * entries go to it and are not cached).
 *
 * ISOLATION. A read served from the caches is completed from the loop's idle phase (ml_read's
 * contract: never from inside the call): reads of tail entries first, all of them, then reads
 * of fetched entries up to PF_SLICE_BYTES_DEFAULT per loop turn, so publish completions and tail
 * dispatch never wait behind more than one slice of catch-up dispatch. Catch-up dispatch also
 * takes at most catchup_duty_pct % of each 10 ms of the loop: the rest stays for publishes,
 * tail reads and the other threads of the process (on 2 cores, the bookie's and the journal's).
 *
 * ERRORS. A fetch that fails (after ml_ledger_read tried every bookie of the write set) is
 * retried after PF_RETRY_MS, PF_READ_ATTEMPTS_MAX times; then the waiting reader reads on demand
 * and gets that read's error: its read position does not move, so an error is a delay, never a
 * gap.
 *
 * --prefetch off (pf_env_opts.prefetch_off): no windows; readers behind the tail read on demand,
 * as Pulsar's dispatcher does. The tail cache stays (Pulsar has its entry cache too).
 *
 * Threads: a pf_env and everything in it belong to one loop (the broker's); every call is made
 * on it and every callback runs on it.
 */
#ifndef MG_PREFETCH_PREFETCH_H
#define MG_PREFETCH_PREFETCH_H

#include "common/metrics.h"
#include "cursor/cursor.h"
#include "ledger/ledger.h"
#include "prefetch/limits.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct pf_env pf_env;
typedef struct pf_topic pf_topic;
typedef struct pf_reader pf_reader;

typedef struct pf_env_opts {
    uint64_t tail_cache_bytes; /* 0 = PF_TAIL_CACHE_BYTES_DEFAULT */
    uint64_t prefetch_bytes;   /* 0 = PF_PREFETCH_BYTES_DEFAULT */
    bool prefetch_off;         /* no windows: on-demand reads (the tail cache stays) */
    uint32_t read_bytes;       /* one fetch; 0 = PF_READ_BYTES_DEFAULT */
    uint32_t window_bytes_min; /* 0 = PF_WINDOW_BYTES_MIN_DEFAULT */
    uint32_t window_bytes_max; /* 0 = PF_WINDOW_BYTES_MAX_DEFAULT */
    uint32_t slice_bytes;      /* 0 = PF_SLICE_BYTES_DEFAULT */
    uint32_t idle_release_ms;  /* 0 = PF_IDLE_RELEASE_MS */
    uint32_t catchup_duty_pct; /* 1..100 (100: no cap); 0 = PF_CATCHUP_DUTY_PCT_DEFAULT */
    mg_metrics *metrics;       /* NULL = none; must outlive the env */
} pf_env_opts;

/* Figures of an env (also exported as metrics). */
typedef struct pf_stats {
    uint64_t tail_bytes, tail_bytes_peak, tail_bytes_max;
    uint64_t prefetch_bytes, prefetch_bytes_peak, prefetch_bytes_max; /* cached + reserved */
    uint64_t inflight_bytes;                                          /* reserved by reads */
    uint64_t tail_entries, prefetch_entries;
    uint64_t hits, misses;            /* entries served from the caches / read on demand */
    uint64_t evictions;               /* entries dropped for room (either budget) */
    uint64_t fetched_bytes;           /* bytes fetched into windows */
    uint64_t wasted_bytes;            /* fetched, then dropped without any read */
    uint64_t waits, wait_us;          /* reads that were not served at once, and their wait */
    uint64_t entries_ready;           /* entries handed to dispatch by reads served at once */
    uint64_t entries_waited;          /* entries handed over by reads that waited for a bookie */
    uint64_t fetches, fetch_failures; /* range reads issued by windows, and failed ones */
    uint64_t readers, windows;        /* open readers; readers with a window ahead */
} pf_stats;

/* Per reader (internalStats shows it for each cursor). */
typedef struct pf_reader_stats {
    bool active;
    bool at_tail;            /* its claim reaches the last entry added */
    ml_position claim_first; /* ledger_id -1: no claim */
    ml_position claim_last;  /* inclusive */
    uint64_t window_bytes;   /* target bytes in flight ahead of it */
    double rate_bytes_per_s; /* its drain rate */
    uint64_t hits, misses, waits;
} pf_reader_stats;

/* Creates the env of loop. MG_EINVAL (a budget below one read), MG_ENOMEM. */
int pf_env_create(uv_loop_t *loop, const pf_env_opts *opts, pf_env **out);
/* Every topic must be closed first (asserted); the env's handles are closed and it is freed
 * once the loop has run their close callbacks (run the loop after this). */
void pf_env_destroy(pf_env *env);
void pf_env_stats(const pf_env *env, pf_stats *out);
bool pf_env_prefetch_on(const pf_env *env);

/* Starts caching the entries of ml (registers its add listener). MG_ENOMEM. */
int pf_topic_open(pf_env *env, ml_managed *ml, pf_topic **out);
/* Drops the topic's cached entries; its readers must be closed first (asserted). Reads in
 * flight finish on their own (ml_close waits for them); the handle is freed after the last. Call
 * before ml_close. */
void pf_topic_close(pf_topic *t);

/* Makes cursor (of the topic's managed ledger) read through the caches: mc_read_entries then
 * reads via pf (mc_cursor_set_source). The reader starts inactive. MG_ENOMEM. */
int pf_reader_open(pf_topic *t, mc_cursor *cursor, pf_reader **out);
/* Gives the claim back and detaches from the cursor. A read in flight still calls back (with
 * what it gets), then the reader is freed: the cursor must then be closed right after (its close
 * waits for that read, and a closing cursor reads no more). */
void pf_reader_close(pf_reader *r);
/* active: the cursor has consumers and will read; inactive readers expect nothing (claim given
 * back) and fetch nothing. */
void pf_reader_set_active(pf_reader *r, bool active);
/* The cursor's read position moved other than by reading (seek, rewind, reset): the claim is
 * given back, the next read starts a new one. */
void pf_reader_reset(pf_reader *r);
void pf_reader_stats_get(const pf_reader *r, pf_reader_stats *out);

/* Reads the cursor's next entries (mc_read_entries through the caches); same contract and
 * errors as mc_read_entries. */
int pf_read_entries(pf_reader *r, int max_entries, uint32_t max_bytes, mc_read_cb cb, void *arg);

/* Reads entries from `from` on (redeliveries): from the caches where they hold them, else on
 * demand; nothing is fetched ahead and nothing is claimed. ml_read's contract and errors. */
int pf_read(pf_topic *t, ml_position from, int max_entries, uint32_t max_bytes, ml_mread_cb cb,
            void *arg);

#endif
