/*
 * The acknowledged-positions set of a cursor (internal to src/cursor): the positions above the
 * mark-delete position that were acknowledged individually, Pulsar's
 * individuallyDeletedMessages. It must stay small under millions of scattered acks, answer
 * "is this entry acked" and "how many are acked between a and b" without walking entries, and
 * list its maximal ranges in order (for CursorInfo and admin stats).
 *
 * Structure (roaring bitmaps' idea, per ledger): a position (ledger_id, entry_id) is split into
 * the ledger id, a container key (entry_id >> 16) and a 16-bit low part. The set is one sorted
 * array of containers ordered by (ledger_id, key); each container holds the low parts present in
 * its window of 65536 entries in one of three representations:
 *
 *   ARRAY   sorted uint16 values                 2 bytes per acked entry
 *   RUN     sorted, disjoint, non-adjacent [first, last] pairs of uint16   4 bytes per run
 *   BITMAP  65536 bits                           8192 bytes, whatever the content
 *
 * and after every change it switches to the smallest of the three for its current cardinality
 * and run count (min(2 * card, 4 * runs, 8192)). Why three kinds: a cursor's acks come as long
 * contiguous runs (a consumer keeping up; a cumulative-like pattern: RUN, a few bytes for 65536
 * acks), as sparse singletons far above a stuck mark-delete (ARRAY, 2 bytes each), or as a dense
 * random pattern (Shared subscriptions with many consumers: BITMAP, 1 bit per entry of the
 * window). Pulsar's OpenLongPairRangeSet uses a bitmap per ledger; roaring's run/array/bitmap
 * choice bounds the worst case of each pattern.
 *
 * Memory bound (what memory_bytes reports; allocator headers not counted):
 *   data of a container = round_up(min(2 * card, 4 * runs, 8192), 32) bytes  (<= 2 * card + 30)
 *   plus MC_RANGESET_CONTAINER_BYTES per container slot; the slot array grows by doubling, so at
 *   most 2 slots per container.
 *   => memory_bytes <= sizeof(set) + sum over containers of (2 * card + 30 + 2 * slot bytes)
 *                   <= 2 bytes per acked entry + ~110 bytes per 65536-entry window in use,
 *      and never more than ~8.3 KiB per window in use, however scattered the acks.
 *
 * Invariants:
 *  1. Containers are sorted by (ledger_id, key), strictly increasing; none is empty.
 *  2. card and nruns of every container are exact; runs are maximal within the container
 *     (a run ending at 65535 and one starting at 0 in the next container of the same ledger
 *     are merged only when ranges are listed).
 *  3. Every container is in its smallest representation (ties: ARRAY, then RUN, then BITMAP),
 *     and its allocation is exactly round_up(size, 32) bytes.
 *  4. total == sum of card.
 *
 * Ranges never span ledgers: the set does not know where a ledger ends, so (L, last) and
 * (L', 0) are never adjacent here (the cursor crosses ledgers with ml_next_position).
 *
 * Threads: none of its own; one owner (the cursor's loop) uses it.
 */
#ifndef MG_CURSOR_RANGESET_H
#define MG_CURSOR_RANGESET_H

#include "ledger/ledger.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mc_rangeset mc_rangeset;

/* Bytes accounted for one container slot (its header in the sorted array). */
#define MC_RANGESET_CONTAINER_BYTES 40

/* Creates an empty set, owned by the caller (mc_rangeset_destroy). MG_ENOMEM. */
int mc_rangeset_create(mc_rangeset **out);
/* Frees the set and everything in it. NULL is a no-op. */
void mc_rangeset_destroy(mc_rangeset *rs);

/* Adds pos. *added (may be NULL) tells whether it was new. Errors, with the set unchanged:
 * MG_EINVAL (negative ledger or entry id), MG_ELIMIT (a new container would exceed
 * MC_RANGESET_CONTAINERS_MAX), MG_ENOMEM. */
int mc_rangeset_add(mc_rangeset *rs, ml_position pos, bool *added);

/* Adds every position first..last (inclusive, same ledger, first.entry_id <= last.entry_id).
 * *added_count (may be NULL) gets the number of positions that were not in the set before.
 * Errors as mc_rangeset_add (MG_EINVAL also for a range across ledgers or reversed). On
 * MG_ENOMEM / MG_ELIMIT a prefix of the range may have been added (each added position is a
 * real ack, so the set stays a subset of the truth; *added_count counts them). */
int mc_rangeset_add_range(mc_rangeset *rs, ml_position first, ml_position last,
                          int64_t *added_count);

bool mc_rangeset_contains(const mc_rangeset *rs, ml_position pos);

/* Removes every position < pos (the mark-delete position moved to just before pos). */
void mc_rangeset_remove_below(mc_rangeset *rs, ml_position pos);

/* Removes everything. */
void mc_rangeset_clear(mc_rangeset *rs);

/* The first position >= pos in pos's ledger that is NOT in the set: pos itself when absent,
 * else (pos.ledger_id, one past the end of the run holding pos). The entry may lie past the end
 * of the ledger; the caller maps it with ml_next_position. Cost: one container lookup per
 * 65536 entries of the run (a bitmap is scanned by words). */
ml_position mc_rangeset_first_gap_from(const mc_rangeset *rs, ml_position pos);

/* Positions in the set within [a, b] (inclusive, in position order, any ledgers). Whole
 * containers count by their cardinality, the two end containers by popcount / binary search:
 * O(containers in range), never per entry. 0 when a > b. */
int64_t mc_rangeset_count_between(const mc_rangeset *rs, ml_position a, ml_position b);

/* Positions in the set. */
int64_t mc_rangeset_count(const mc_rangeset *rs);

/* Maximal ranges in the set (runs merged across container borders). O(containers). */
int64_t mc_rangeset_range_count(const mc_rangeset *rs);

/* Containers in use. */
size_t mc_rangeset_container_count(const mc_rangeset *rs);

/* Bytes held (see the bound in the header comment). */
size_t mc_rangeset_memory_bytes(const mc_rangeset *rs);

/* In-order iteration over the maximal ranges. The set must not change during an iteration.
 * Fields are private. */
typedef struct mc_rangeset_iter {
    const mc_rangeset *rs;
    size_t ci;   /* current container */
    uint32_t lo; /* next low part to look at in it (65536 = past its end) */
} mc_rangeset_iter;

void mc_rangeset_iter_init(const mc_rangeset *rs, mc_rangeset_iter *it);
/* The next range [*first, *last] (inclusive, one ledger); false when there is none. */
bool mc_rangeset_iter_next(mc_rangeset_iter *it, ml_position *first, ml_position *last);

#endif
