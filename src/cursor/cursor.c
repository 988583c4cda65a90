/*
 * Managed cursors: acknowledgement state, reads that skip acknowledged entries, backlog
 * arithmetic, resets, and CursorInfo persistence with compare-and-set (the model, the life
 * cycle and the at-least-once argument are in cursor.h).
 *
 * Structure of a cursor:
 *  - acked:    mc_rangeset of wholly acknowledged entries above M.
 *  - batches:  sorted array of partially acknowledged entries above M with their unacked bits
 *              (never also in acked; an entry whose bits all clear moves to acked).
 *  - pend:     open-addressing table (linear probing, backward-shift deletion) position ->
 *              message count, for entries read and not yet wholly acknowledged; it feeds A.
 *  - A (acked_msgs): messages acknowledged counting every message of entries <= M. Updates:
 *              whole ack of e: += unacked messages of e (ack-set popcount, else its count from
 *              pend, else 1); partial ack: += bits newly cleared; M moving over a contiguous
 *              acknowledged run: unchanged (those messages were counted when acknowledged);
 *              cumulative ack: += unacked messages of the entries it covers; M reaching the
 *              last entry with nothing acknowledged above: = ml_messages_total (exact again).
 *  - chain:    the last entry seen by a read and its index, so the next entry's message count
 *              is index - chain_index.
 *  - persistence: dirty flag, one write in flight, a timer for the interval, flush waiters.
 *
 * Operations in flight (ml_read, ml_find_by_time, metadata calls) are counted in inflight; a
 * closing cursor frees itself (after closing its two timers) only when that count is 0, no write
 * is in flight and no waiter is left, so no callback ever sees freed memory.
 *
 * Waiters (flush callers, the close and reset continuations) are in one bounded array, each in
 * one state: NEXT (needs a write that starts after it was queued), ARMED (attached to the write
 * in flight) or DEFERRED (result known, delivered from the defer timer so that no callback runs
 * inside the call that queued it).
 */
#include "cursor/cursor.h"

#include "cursor/rangeset.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "cursor/limits.h"
#include "metadata/metadata.h"
#include "proto/ledger.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* CursorInfo property holding A (see the header comment). */
#define MC__PROP_ACKED "mc.acked_messages"

typedef struct mc__batch {
    ml_position pos;
    uint64_t *bits; /* bit set = message not acknowledged */
    uint32_t words;
    int64_t acked_msgs; /* messages of this batch already counted in A */
} mc__batch;

typedef struct mc__pending {
    int64_t ledger_id; /* -1 = empty slot */
    int64_t entry_id;
    int64_t msgs;
} mc__pending;

typedef enum mc__wstate { MC__W_NEXT = 1, MC__W_ARMED = 2, MC__W_DEFERRED = 3 } mc__wstate;

typedef struct mc__waiter {
    mc_done_cb cb;
    void *arg;
    mc__wstate state;
    int status; /* for DEFERRED */
} mc__waiter;

typedef enum mc__phase { MC__OPENING = 1, MC__OPEN = 2, MC__CLOSING = 3 } mc__phase;
typedef enum mc__close_kind { MC__CLOSE = 1, MC__ABORT = 2, MC__DELETE = 3 } mc__close_kind;

/* A durable cursor closed without being deleted: its subscription still needs the entries
 * after its M, so the group keeps holding them until a cursor of that name opens again. */
typedef struct mc__parked {
    char *name; /* NULL if it could not be copied: then it is never released (conservative) */
    ml_position md;
} mc__parked;

struct mc_group {
    ml_managed *ml;
    mc_cursor **cursors; /* open cursors (durable or not) */
    size_t n, cap;
    mc__parked *parked;
    size_t nparked, parked_cap;
    bool sent;
    ml_position sent_pos;
    bool held; /* mc_group_hold: the group's cursors are still being loaded */
};

struct mc_cursor {
    ml_managed *ml;
    uv_loop_t *loop;
    md_client *md;
    mc_group *group;
    char name[MC_NAME_BYTES_MAX];
    char *path; /* durable only */
    bool durable;
    mc_initial initial;
    mc__phase phase;
    int status; /* sticky: MG_OK or MG_EFENCED */
    uint32_t persist_interval_ms;
    size_t info_bytes_max;
    mc_event_cb event_cb;
    void *event_arg;
    bool skip_lost;               /* mc_cursor_opts.skip_lost_ledgers */
    int64_t lost_skipped_entries; /* mc_lost_entries_skipped */

    /* acknowledgement state */
    ml_position md_pos;
    ml_position read_pos;
    mc_rangeset *acked;
    mc__batch *batches;
    size_t nbatches, batches_cap;
    mc__pending *pend;
    size_t pend_cap, pend_count;
    int64_t acked_msgs;
    bool chain_known;
    ml_position chain_pos;
    int64_t chain_index;

    /* reading */
    bool reading;
    mc_read_cb read_cb;
    void *read_arg;
    uint64_t pos_gen;     /* bumped when the read position is moved other than by reading */
    uint64_t read_gen;    /* pos_gen when the read in flight started */
    mc_read_fn source_fn; /* where mc_read_entries reads: ml_read unless set */
    void *source;
    int read_max_entries;
    uint32_t read_max_bytes;
    int read_rounds;
    bool read_extra;
    ml_position read_from;

    /* reset */
    bool resetting;
    mc_done_cb reset_cb;
    void *reset_arg;
    ml_position reset_pos;

    /* persistence */
    int64_t version;
    bool dirty;
    bool writing;
    bool timer_armed;
    uint64_t last_write_ms;
    uint64_t writes;
    mc__waiter waiters[MC_FLUSH_WAITERS_MAX];
    size_t nwaiters;
    uv_timer_t persist_timer;
    uv_timer_t defer_timer;
    bool handles_ready;
    int handles_open;
    int64_t inflight;

    /* open */
    mc_cursor_cb open_cb;
    void *open_arg;
    bool open_retried;
    bool open_deferred;
    int open_status; /* non-durable: the result delivered from the defer timer */

    /* close */
    mc__close_kind close_kind;
    int close_status;
    mc_done_cb close_cb;
    void *close_arg;
    bool delete_issued;
    bool delete_done;
    bool handles_closing;
};

static void try_finish(mc_cursor *c);
static void persist_start(mc_cursor *c);
static void schedule_persist(mc_cursor *c);
static void group_update(mc_group *g);

/* --- small helpers --------------------------------------------------------------------------- */

static int pcmp(ml_position a, ml_position b)
{
    return ml_position_cmp(a, b);
}

static ml_position next_of(const mc_cursor *c, ml_position p)
{
    return ml_next_position(c->ml, p);
}

static ml_position above(ml_position p)
{
    return (ml_position){ p.ledger_id, p.entry_id + 1 };
}

static int64_t popcount_words(const uint64_t *w, size_t n)
{
    int64_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += __builtin_popcountll(w[i]);
    return k;
}

static void op_begin(mc_cursor *c)
{
    c->inflight++;
}

static void op_end(mc_cursor *c)
{
    MG_ASSERT(c->inflight > 0);
    c->inflight--;
    try_finish(c);
}

/* --- pending message counts ------------------------------------------------------------------ */

static uint64_t pend_hash(int64_t ledger_id, int64_t entry_id)
{
    uint64_t x = (uint64_t)ledger_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)entry_id;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return x;
}

static size_t pend_slot(const mc_cursor *c, ml_position p)
{
    size_t mask = c->pend_cap - 1;
    size_t i = (size_t)pend_hash(p.ledger_id, p.entry_id) & mask;
    while (c->pend[i].ledger_id != -1 &&
           (c->pend[i].ledger_id != p.ledger_id || c->pend[i].entry_id != p.entry_id))
        i = (i + 1) & mask;
    return i;
}

static int64_t pend_get(const mc_cursor *c, ml_position p)
{
    if (c->pend_cap == 0)
        return -1;
    size_t i = pend_slot(c, p);
    return c->pend[i].ledger_id == -1 ? -1 : c->pend[i].msgs;
}

static int pend_rehash(mc_cursor *c, size_t cap)
{
    mc__pending *t = mg_malloc(cap * sizeof(*t));
    if (!t)
        return MG_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        t[i].ledger_id = -1;
    mc__pending *old = c->pend;
    size_t old_cap = c->pend_cap;
    c->pend = t;
    c->pend_cap = cap;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].ledger_id == -1)
            continue;
        size_t s = pend_slot(c, (ml_position){ old[i].ledger_id, old[i].entry_id });
        c->pend[s] = old[i];
    }
    mg_free(old);
    return MG_OK;
}

/* Remembers p's message count unless known already; silently skipped past the limit (the
 * entry then counts one message when acknowledged). */
static void pend_put(mc_cursor *c, ml_position p, int64_t msgs)
{
    if (pend_get(c, p) >= 0)
        return;
    if (c->pend_count >= MC_PENDING_ENTRIES_MAX)
        return;
    if ((c->pend_count + 1) * 2 > c->pend_cap &&
        pend_rehash(c, c->pend_cap ? c->pend_cap * 2 : 64) != MG_OK)
        return;
    size_t i = pend_slot(c, p);
    c->pend[i] = (mc__pending){ p.ledger_id, p.entry_id, msgs };
    c->pend_count++;
}

/* Removes p (backward-shift deletion keeps every probe chain unbroken). */
static void pend_del(mc_cursor *c, ml_position p)
{
    if (c->pend_cap == 0)
        return;
    size_t mask = c->pend_cap - 1;
    size_t i = pend_slot(c, p);
    if (c->pend[i].ledger_id == -1)
        return;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (c->pend[j].ledger_id == -1)
            break;
        size_t k = (size_t)pend_hash(c->pend[j].ledger_id, c->pend[j].entry_id) & mask;
        /* j's home k: move j into the hole at i unless k lies cyclically in (i, j]. */
        bool k_in = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!k_in) {
            c->pend[i] = c->pend[j];
            i = j;
        }
    }
    c->pend[i].ledger_id = -1;
    c->pend_count--;
}

static void pend_clear(mc_cursor *c)
{
    mg_free(c->pend);
    c->pend = NULL;
    c->pend_cap = c->pend_count = 0;
}

/* --- batch ack sets -------------------------------------------------------------------------- */

static size_t batch_lower(const mc_cursor *c, ml_position p)
{
    size_t lo = 0, hi = c->nbatches;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pcmp(c->batches[mid].pos, p) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static mc__batch *batch_find(const mc_cursor *c, ml_position p)
{
    size_t i = batch_lower(c, p);
    if (i < c->nbatches && pcmp(c->batches[i].pos, p) == 0)
        return &c->batches[i];
    return NULL;
}

static void batch_remove_at(mc_cursor *c, size_t i)
{
    mg_free(c->batches[i].bits);
    memmove(c->batches + i, c->batches + i + 1, (c->nbatches - i - 1) * sizeof(*c->batches));
    c->nbatches--;
}

static void batch_remove(mc_cursor *c, ml_position p)
{
    size_t i = batch_lower(c, p);
    if (i < c->nbatches && pcmp(c->batches[i].pos, p) == 0)
        batch_remove_at(c, i);
}

static int batch_insert(mc_cursor *c, ml_position p, const uint64_t *bits, uint32_t words,
                        mc__batch **out)
{
    if (c->nbatches >= MC_BATCH_ENTRIES_MAX)
        return MG_ELIMIT;
    if (c->nbatches == c->batches_cap) {
        size_t ncap = c->batches_cap ? c->batches_cap * 2 : 8;
        mc__batch *nb = mg_realloc(c->batches, ncap * sizeof(*nb));
        if (!nb)
            return MG_ENOMEM;
        c->batches = nb;
        c->batches_cap = ncap;
    }
    uint64_t *copy = mg_malloc(words * sizeof(*copy));
    if (!copy)
        return MG_ENOMEM;
    memcpy(copy, bits, words * sizeof(*copy));
    size_t i = batch_lower(c, p);
    memmove(c->batches + i + 1, c->batches + i, (c->nbatches - i) * sizeof(*c->batches));
    c->batches[i] = (mc__batch){ .pos = p, .bits = copy, .words = words, .acked_msgs = 0 };
    c->nbatches++;
    *out = &c->batches[i];
    return MG_OK;
}

static void batch_clear(mc_cursor *c)
{
    for (size_t i = 0; i < c->nbatches; i++)
        mg_free(c->batches[i].bits);
    c->nbatches = 0;
}

/* --- group ----------------------------------------------------------------------------------- */

int mc_group_create(ml_managed *ml, mc_group **out)
{
    mc_group *g = mg_calloc(1, sizeof(*g));
    if (!g)
        return MG_ENOMEM;
    g->ml = ml;
    *out = g;
    return MG_OK;
}

void mc_group_destroy(mc_group *g)
{
    if (!g)
        return;
    MG_ASSERT(g->n == 0);
    for (size_t i = 0; i < g->nparked; i++)
        mg_free(g->parked[i].name);
    mg_free(g->parked);
    mg_free(g->cursors);
    mg_free(g);
}

void mc_group_hold(mc_group *g, bool hold)
{
    g->held = hold;
    if (!hold)
        group_update(g);
}

ml_position mc_group_slowest(const mc_group *g)
{
    ml_position s = { -1, -1 };
    bool any = false;
    for (size_t i = 0; i < g->n; i++) {
        const mc_cursor *c = g->cursors[i];
        if (!c->durable)
            continue;
        if (!any || pcmp(c->md_pos, s) < 0)
            s = c->md_pos;
        any = true;
    }
    for (size_t i = 0; i < g->nparked; i++) {
        if (!any || pcmp(g->parked[i].md, s) < 0)
            s = g->parked[i].md;
        any = true;
    }
    return s;
}

static void group_update(mc_group *g)
{
    if (!g || g->held)
        return;
    ml_position s = mc_group_slowest(g);
    if (s.ledger_id < 0)
        return;
    if (g->sent && pcmp(s, g->sent_pos) == 0)
        return;
    g->sent = true;
    g->sent_pos = s;
    ml_set_oldest_needed(g->ml, ml_next_position(g->ml, s));
}

static int group_add(mc_group *g, mc_cursor *c)
{
    if (g->n + g->nparked >= MC_GROUP_CURSORS_MAX)
        return MG_ELIMIT;
    /* Reserve the parking slot now, so that closing never needs memory. */
    if (g->parked_cap < g->n + g->nparked + 1) {
        size_t ncap = g->parked_cap ? g->parked_cap * 2 : 8;
        mc__parked *p = mg_realloc(g->parked, ncap * sizeof(*p));
        if (!p)
            return MG_ENOMEM;
        g->parked = p;
        g->parked_cap = ncap;
    }
    if (g->n == g->cap) {
        if (g->cap >= MC_GROUP_CURSORS_MAX)
            return MG_ELIMIT;
        size_t ncap = g->cap ? g->cap * 2 : 8;
        mc_cursor **p = mg_realloc(g->cursors, ncap * sizeof(*p));
        if (!p)
            return MG_ENOMEM;
        g->cursors = p;
        g->cap = ncap;
    }
    g->cursors[g->n++] = c;
    /* Open again: the cursor itself now holds its entries. */
    for (size_t i = 0; i < g->nparked;) {
        if (g->parked[i].name && strcmp(g->parked[i].name, c->name) == 0) {
            mg_free(g->parked[i].name);
            g->parked[i] = g->parked[--g->nparked];
        } else {
            i++;
        }
    }
    return MG_OK;
}

/* Removes c; a durable cursor closed (not deleted) is parked at its M. */
static void group_remove(mc_group *g, mc_cursor *c, bool park)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->cursors[i] == c) {
            g->cursors[i] = g->cursors[--g->n];
            break;
        }
    }
    if (!park || !c->durable)
        return;
    MG_ASSERT(g->nparked < g->parked_cap); /* reserved by group_add */
    size_t n = strlen(c->name) + 1;
    char *name = mg_malloc(n);
    if (name)
        memcpy(name, c->name, n);
    g->parked[g->nparked++] = (mc__parked){ name, c->md_pos };
}

/* --- mark-delete movement -------------------------------------------------------------------- */

static bool nothing_above(const mc_cursor *c)
{
    return mc_rangeset_count(c->acked) == 0 && c->nbatches == 0;
}

/* Sets M (forward) after the caller accounted A; drops the state <= M, keeps R > M. */
static void set_md(mc_cursor *c, ml_position md)
{
    c->md_pos = md;
    mc_rangeset_remove_below(c->acked, above(md));
    size_t k = batch_lower(c, above(md));
    if (k > 0) {
        for (size_t i = 0; i < k; i++)
            mg_free(c->batches[i].bits);
        memmove(c->batches, c->batches + k, (c->nbatches - k) * sizeof(*c->batches));
        c->nbatches -= k;
    }
    if (pcmp(c->read_pos, md) <= 0)
        c->read_pos = next_of(c, md);
    if (nothing_above(c) && pcmp(md, ml_last_position(c->ml)) == 0)
        c->acked_msgs = ml_messages_total(c->ml); /* everything is acknowledged: exact again */
    c->dirty = true;
    schedule_persist(c);
    group_update(c->group);
}

/* Moves M over the contiguous acknowledged run after it, if any. Each round crosses one run
 * (within a ledger; ml_next_position crosses ledger ends), so the loop ends within the number
 * of ranges in the set. */
static void advance(mc_cursor *c)
{
    ml_position md = c->md_pos;
    bool moved = false;
    for (;;) {
        ml_position p = next_of(c, md);
        if (!mc_rangeset_contains(c->acked, p))
            break;
        ml_position g = mc_rangeset_first_gap_from(c->acked, p);
        md = (ml_position){ p.ledger_id, g.entry_id - 1 };
        moved = true;
    }
    if (moved)
        set_md(c, md);
}

/* Unacknowledged messages of the entries in (M, upto], removing their pend and batch records;
 * an entry of unknown size counts one message. */
static int64_t unacked_messages_upto(mc_cursor *c, ml_position upto)
{
    ml_position p0 = next_of(c, c->md_pos);
    if (pcmp(p0, upto) > 0)
        return 0;
    int64_t entries = ml_entries_between(c->ml, p0, upto);
    int64_t acked = mc_rangeset_count_between(c->acked, p0, upto);
    int64_t known_entries = 0, msgs = 0;
    /* Partially acknowledged batches: their unacked bits. */
    size_t k = batch_lower(c, above(upto));
    for (size_t i = 0; i < k; i++) {
        msgs += popcount_words(c->batches[i].bits, c->batches[i].words);
        known_entries++;
    }
    /* Entries read and not acknowledged: their counts (a batch record took precedence). */
    if (c->pend_count > 0) {
        bool any = false;
        for (size_t i = 0; i < c->pend_cap; i++) {
            mc__pending *e = &c->pend[i];
            if (e->ledger_id == -1)
                continue;
            ml_position ep = { e->ledger_id, e->entry_id };
            if (pcmp(ep, upto) > 0)
                continue;
            any = true;
            if (pcmp(ep, c->md_pos) <= 0 || mc_rangeset_contains(c->acked, ep))
                continue;
            if (batch_find(c, ep))
                continue;
            msgs += e->msgs;
            known_entries++;
        }
        if (any) {
            /* Rebuild without the entries <= upto (O(table), rare: cumulative acks). */
            mc__pending *old = c->pend;
            size_t old_cap = c->pend_cap;
            c->pend = NULL;
            c->pend_cap = c->pend_count = 0;
            for (size_t i = 0; i < old_cap; i++) {
                ml_position ep = { old[i].ledger_id, old[i].entry_id };
                if (old[i].ledger_id != -1 && pcmp(ep, upto) > 0)
                    pend_put(c, ep, old[i].msgs);
            }
            mg_free(old);
        }
    }
    int64_t unknown = entries - acked - known_entries;
    return msgs + (unknown > 0 ? unknown : 0);
}

/* --- persistence ----------------------------------------------------------------------------- */

static size_t varint_bytes(size_t v)
{
    size_t n = 1;
    while (v >= 128) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Encodes the state into a new buffer of at most info_bytes_max bytes (ranges nearest M first,
 * then ack sets, as many as fit). */
static int build_info(mc_cursor *c, uint8_t **out, size_t *out_len)
{
    Magnetar__Ledger__CursorInfo info = MAGNETAR__LEDGER__CURSOR_INFO__INIT;
    Magnetar__Ledger__CursorInfo__PropertiesEntry prop =
        MAGNETAR__LEDGER__CURSOR_INFO__PROPERTIES_ENTRY__INIT;
    Magnetar__Ledger__CursorInfo__PropertiesEntry *props[1] = { &prop };
    info.mark_delete_ledger_id = c->md_pos.ledger_id;
    info.mark_delete_entry_id = c->md_pos.entry_id;
    prop.key = (char *)MC__PROP_ACKED;
    prop.has_value = 1;
    prop.value = c->acked_msgs;
    info.n_properties = 1;
    info.properties = props;
    info.has_last_active_ms = 1;
    info.last_active_ms = mg_clock_wall_ms();
    size_t used = magnetar__ledger__cursor_info__get_packed_size(&info);

    Magnetar__Ledger__CursorInfo__Range *ranges = NULL;
    Magnetar__Ledger__CursorInfo__Range **rptr = NULL;
    Magnetar__Ledger__CursorInfo__BatchAcks *bas = NULL;
    Magnetar__Ledger__CursorInfo__BatchAcks **bptr = NULL;
    size_t nr = 0, rcap = 0, nb = 0;
    int64_t dropped_entries = 0, dropped_msgs = 0, total_ranges = 0;
    size_t dropped_batches = 0;
    bool full = false;
    int rc = MG_OK;

    mc_rangeset_iter it;
    ml_position f, l;
    mc_rangeset_iter_init(c->acked, &it);
    while (mc_rangeset_iter_next(&it, &f, &l)) {
        total_ranges++;
        Magnetar__Ledger__CursorInfo__Range r = MAGNETAR__LEDGER__CURSOR_INFO__RANGE__INIT;
        r.from_ledger_id = f.ledger_id;
        r.from_entry_id = f.entry_id - 1; /* exclusive, as Pulsar's MessageRange */
        r.to_ledger_id = l.ledger_id;
        r.to_entry_id = l.entry_id;
        size_t sz = protobuf_c_message_get_packed_size(&r.base);
        size_t cost = 1 + varint_bytes(sz) + sz;
        if (full || used + cost > c->info_bytes_max) {
            full = true; /* only a prefix: a later range must not be kept after a gap */
            dropped_entries += l.entry_id - f.entry_id + 1;
            continue;
        }
        if (nr == rcap) {
            size_t ncap = rcap ? rcap * 2 : 64;
            void *p = mg_realloc(ranges, ncap * sizeof(*ranges));
            if (!p) {
                rc = MG_ENOMEM;
                goto out;
            }
            ranges = p;
            rcap = ncap;
        }
        ranges[nr++] = r;
        used += cost;
    }
    if (nr > 0) {
        rptr = mg_malloc(nr * sizeof(*rptr));
        if (!rptr) {
            rc = MG_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < nr; i++)
            rptr[i] = &ranges[i];
        info.n_individually_deleted = nr;
        info.individually_deleted = rptr;
    }
    if (c->nbatches > 0) {
        bas = mg_malloc(c->nbatches * sizeof(*bas));
        bptr = mg_malloc(c->nbatches * sizeof(*bptr));
        if (!bas || !bptr) {
            rc = MG_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < c->nbatches; i++) {
            const mc__batch *b = &c->batches[i];
            Magnetar__Ledger__CursorInfo__BatchAcks ba =
                MAGNETAR__LEDGER__CURSOR_INFO__BATCH_ACKS__INIT;
            ba.ledger_id = b->pos.ledger_id;
            ba.entry_id = b->pos.entry_id;
            ba.n_ack_set = b->words;
            ba.ack_set = b->bits;
            size_t sz = protobuf_c_message_get_packed_size(&ba.base);
            size_t cost = 1 + varint_bytes(sz) + sz;
            if (used + cost > c->info_bytes_max) {
                dropped_batches++;
                dropped_msgs += b->acked_msgs;
                continue;
            }
            bas[nb] = ba;
            bptr[nb] = &bas[nb];
            nb++;
            used += cost;
        }
        info.n_batch_acks = nb;
        info.batch_acks = bptr;
    }
    if (dropped_entries > 0 || dropped_batches > 0) {
        MG_WARN("cursor %s: CursorInfo limited to %zu bytes: %zu of %lld ranges and %zu of %zu "
                "ack sets persisted; the rest is redelivered after a crash",
                c->path, c->info_bytes_max, nr, (long long)total_ranges, nb, c->nbatches);
        int64_t a = c->acked_msgs - dropped_entries - dropped_msgs;
        prop.value = a > 0 ? a : 0;
    }
    size_t len = magnetar__ledger__cursor_info__get_packed_size(&info);
    uint8_t *buf = mg_malloc(len);
    if (!buf) {
        rc = MG_ENOMEM;
        goto out;
    }
    magnetar__ledger__cursor_info__pack(&info, buf);
    *out = buf;
    *out_len = len;
out:
    mg_free(ranges);
    mg_free(rptr);
    mg_free(bas);
    mg_free(bptr);
    return rc;
}

static void defer_cb(uv_timer_t *t);

static void defer_start(mc_cursor *c)
{
    uv_timer_start(&c->defer_timer, defer_cb, 0, 0);
}

static int waiter_add(mc_cursor *c, mc_done_cb cb, void *arg, mc__wstate state, int status)
{
    if (c->nwaiters >= MC_FLUSH_WAITERS_MAX)
        return MG_EAGAIN;
    c->waiters[c->nwaiters++] = (mc__waiter){ cb, arg, state, status };
    if (state == MC__W_DEFERRED)
        defer_start(c);
    return MG_OK;
}

/* Completes the waiters in state `which` with status (called from a callback, never from a
 * public call). The array is compacted before any callback runs, since a callback may queue. */
static void waiters_complete(mc_cursor *c, mc__wstate which, int status)
{
    mc__waiter done[MC_FLUSH_WAITERS_MAX];
    size_t nd = 0, keep = 0;
    for (size_t i = 0; i < c->nwaiters; i++) {
        if (c->waiters[i].state == which) {
            done[nd] = c->waiters[i];
            if (which == MC__W_DEFERRED)
                status = c->waiters[i].status;
            done[nd++].status = status;
        } else {
            c->waiters[keep++] = c->waiters[i];
        }
    }
    c->nwaiters = keep;
    for (size_t i = 0; i < nd; i++)
        done[i].cb(done[i].status, done[i].arg);
}

static bool waiters_any(const mc_cursor *c, mc__wstate which)
{
    for (size_t i = 0; i < c->nwaiters; i++)
        if (c->waiters[i].state == which)
            return true;
    return false;
}

/* Turns the waiters in state `which` into DEFERRED ones with status. */
static void waiters_defer(mc_cursor *c, mc__wstate which, int status)
{
    bool any = false;
    for (size_t i = 0; i < c->nwaiters; i++) {
        if (c->waiters[i].state == which) {
            c->waiters[i].state = MC__W_DEFERRED;
            c->waiters[i].status = status;
            any = true;
        }
    }
    if (any)
        defer_start(c);
}

static void fence(mc_cursor *c)
{
    if (c->status != MG_OK)
        return;
    c->status = MG_EFENCED;
    MG_WARN("cursor %s: written by another owner (version conflict): fenced", c->path);
    uv_timer_stop(&c->persist_timer);
    c->timer_armed = false;
    if (c->event_cb)
        c->event_cb(c, MG_EFENCED, c->event_arg);
}

static void write_done(int status, const md_stat *stat, void *arg)
{
    mc_cursor *c = arg;
    c->writing = false;
    if (status == MG_OK) {
        c->version = stat->version;
        c->writes++;
    } else if (status == MG_EBADVERSION) {
        status = MG_EFENCED;
        fence(c);
    } else {
        c->dirty = true;
        MG_WARN("cursor %s: persisting failed: %s (acks since the last write would be "
                "redelivered after a crash)",
                c->path, mg_strerror(status));
    }
    if (status != MG_OK && c->phase == MC__CLOSING && c->close_kind == MC__CLOSE)
        c->close_status = status;
    waiters_complete(c, MC__W_ARMED, status);
    if (c->status != MG_OK) {
        waiters_complete(c, MC__W_NEXT, c->status);
    } else if (waiters_any(c, MC__W_NEXT)) {
        if (status == MG_OK)
            persist_start(c);
        else
            waiters_complete(c, MC__W_NEXT, status);
    } else {
        schedule_persist(c);
    }
    op_end(c);
}

/* Starts a write of the current state (durable, not fenced, none in flight). */
static void persist_start(mc_cursor *c)
{
    if (!c->durable || c->status != MG_OK || c->writing)
        return;
    if (c->timer_armed) {
        uv_timer_stop(&c->persist_timer);
        c->timer_armed = false;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = build_info(c, &buf, &len);
    if (rc == MG_OK) {
        rc = md_set(c->md, c->path, buf, len, c->version, write_done, c);
        mg_free(buf);
    }
    if (rc != MG_OK) {
        MG_WARN("cursor %s: cannot start a write: %s", c->path, mg_strerror(rc));
        waiters_defer(c, MC__W_NEXT, rc);
        return; /* dirty stays; the next ack or flush tries again */
    }
    op_begin(c);
    c->writing = true;
    c->dirty = false;
    c->last_write_ms = uv_now(c->loop);
    for (size_t i = 0; i < c->nwaiters; i++)
        if (c->waiters[i].state == MC__W_NEXT)
            c->waiters[i].state = MC__W_ARMED;
}

static void persist_timer_cb(uv_timer_t *t)
{
    mc_cursor *c = t->data;
    c->timer_armed = false;
    if (c->dirty && c->phase == MC__OPEN)
        persist_start(c);
}

/* Arms the interval timer when the state changed and no write is due yet. */
static void schedule_persist(mc_cursor *c)
{
    if (!c->durable || c->status != MG_OK || c->phase != MC__OPEN || !c->dirty || c->writing ||
        c->timer_armed || !c->handles_ready)
        return;
    uint64_t now = uv_now(c->loop);
    uint64_t due = c->last_write_ms + c->persist_interval_ms;
    c->timer_armed = true;
    uv_timer_start(&c->persist_timer, persist_timer_cb, due > now ? due - now : 0, 0);
}

/* --- open ------------------------------------------------------------------------------------ */

static bool name_ok(const char *name)
{
    size_t n = name ? strnlen(name, MC_NAME_BYTES_MAX) : 0;
    if (n == 0 || n >= MC_NAME_BYTES_MAX || strchr(name, '/'))
        return false;
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Initial state of a new cursor. Returns true when the first entry of the log must be read
 * to learn A (EARLIEST on a non-empty log). */
static bool init_fresh(mc_cursor *c)
{
    ml_position first = ml_first_position(c->ml);
    ml_position last = ml_last_position(c->ml);
    int64_t total = ml_messages_total(c->ml);
    bool empty = last.ledger_id < 0 || pcmp(first, last) > 0;
    if (c->initial == MC_INITIAL_LATEST && !empty) {
        c->md_pos = last;
    } else {
        c->md_pos = (ml_position){ first.ledger_id, first.entry_id - 1 };
    }
    c->read_pos = next_of(c, c->md_pos);
    if (c->initial == MC_INITIAL_EARLIEST && !empty)
        return true;
    /* Everything in the log is at or below M: A is every message. */
    c->acked_msgs = total;
    c->chain_known = true;
    c->chain_pos = c->md_pos;
    c->chain_index = total - 1;
    return false;
}

/* Loads a stored CursorInfo. Entries that cannot be used are skipped (they are then simply
 * delivered again). */
static int load_info(mc_cursor *c, const void *value, size_t len)
{
    Magnetar__Ledger__CursorInfo *info =
        magnetar__ledger__cursor_info__unpack(NULL, len, (const uint8_t *)value);
    if (!info)
        return MG_ECORRUPT;
    int rc = MG_OK;
    c->md_pos = (ml_position){ info->mark_delete_ledger_id, info->mark_delete_entry_id };
    size_t skipped = 0;
    for (size_t i = 0; i < info->n_individually_deleted; i++) {
        const Magnetar__Ledger__CursorInfo__Range *r = info->individually_deleted[i];
        if (r->from_ledger_id != r->to_ledger_id || r->from_entry_id < -1 ||
            r->to_entry_id <= r->from_entry_id) {
            skipped++;
            continue;
        }
        ml_position f = { r->from_ledger_id, r->from_entry_id + 1 };
        ml_position l = { r->to_ledger_id, r->to_entry_id };
        if (pcmp(l, c->md_pos) <= 0)
            continue;
        if (pcmp(f, c->md_pos) <= 0)
            f = above(c->md_pos);
        rc = mc_rangeset_add_range(c->acked, f, l, NULL);
        if (rc == MG_ELIMIT) {
            skipped += info->n_individually_deleted - i;
            rc = MG_OK;
            break;
        }
        if (rc != MG_OK)
            goto out;
    }
    for (size_t i = 0; i < info->n_batch_acks; i++) {
        const Magnetar__Ledger__CursorInfo__BatchAcks *b = info->batch_acks[i];
        ml_position p = { b->ledger_id, b->entry_id };
        if (b->n_ack_set == 0 || b->n_ack_set > MC_ACK_SET_WORDS_MAX || pcmp(p, c->md_pos) <= 0 ||
            mc_rangeset_contains(c->acked, p) || batch_find(c, p) ||
            popcount_words(b->ack_set, b->n_ack_set) == 0) {
            skipped++;
            continue;
        }
        mc__batch *nb;
        rc = batch_insert(c, p, b->ack_set, (uint32_t)b->n_ack_set, &nb);
        if (rc == MG_ELIMIT) {
            skipped++;
            rc = MG_OK;
            continue;
        }
        if (rc != MG_OK)
            goto out;
    }
    if (skipped > 0)
        MG_WARN("cursor %s: %zu stored ranges or ack sets unusable, delivered again", c->path,
                skipped);
    bool have_a = false;
    for (size_t i = 0; i < info->n_properties; i++) {
        if (strcmp(info->properties[i]->key, MC__PROP_ACKED) == 0 &&
            info->properties[i]->has_value) {
            c->acked_msgs = info->properties[i]->value;
            have_a = true;
        }
    }
    c->read_pos = next_of(c, c->md_pos);
    if (!have_a) {
        /* Written by something else: one message per unacknowledged entry. */
        int64_t backlog = mc_backlog_entries(c);
        int64_t total = ml_messages_total(c->ml);
        c->acked_msgs = total > backlog ? total - backlog : 0;
    }
    c->chain_known = false;
out:
    magnetar__ledger__cursor_info__free_unpacked(info, NULL);
    return rc;
}

static void handle_closed(uv_handle_t *h)
{
    mc_cursor *c = h->data;
    if (--c->handles_open > 0)
        return;
    if (c->group) {
        group_remove(c->group, c, c->close_kind != MC__DELETE);
        group_update(c->group);
    }
    mc_done_cb cb = c->close_cb;
    void *arg = c->close_arg;
    int status = c->close_status;
    mc_rangeset_destroy(c->acked);
    batch_clear(c);
    mg_free(c->batches);
    pend_clear(c);
    mg_free(c->path);
    mg_free(c);
    if (cb)
        cb(status, arg);
}

static void delete_done(int status, void *arg)
{
    mc_cursor *c = arg;
    c->delete_done = true;
    if (status == MG_EBADVERSION)
        status = MG_EFENCED;
    c->close_status = status;
    op_end(c);
}

/* Frees the cursor once nothing is in flight any more (see the header comment). */
static void try_finish(mc_cursor *c)
{
    if (c->phase != MC__CLOSING || c->handles_closing)
        return;
    if (c->inflight > 0 || c->writing || c->nwaiters > 0)
        return;
    if (c->close_kind == MC__DELETE && c->durable && !c->delete_done) {
        if (c->delete_issued)
            return;
        c->delete_issued = true;
        int rc =
            c->status == MG_OK ? md_delete(c->md, c->path, c->version, delete_done, c) : c->status;
        if (rc == MG_OK) {
            op_begin(c);
            return;
        }
        c->delete_done = true;
        c->close_status = rc;
    }
    c->handles_closing = true;
    MG_ASSERT(c->handles_ready); /* set before any callback can run */
    c->handles_open = 2;
    uv_close((uv_handle_t *)&c->persist_timer, handle_closed);
    uv_close((uv_handle_t *)&c->defer_timer, handle_closed);
}

static void finish_open(mc_cursor *c, int status)
{
    mc_cursor_cb cb = c->open_cb;
    void *arg = c->open_arg;
    if (status == MG_OK && c->group)
        status = group_add(c->group, c);
    if (status != MG_OK) {
        c->phase = MC__CLOSING;
        c->close_kind = MC__ABORT;
        c->close_cb = NULL;
        c->group = NULL;
        cb(status, NULL, arg);
        try_finish(c);
        return;
    }
    c->phase = MC__OPEN;
    c->dirty = false;
    c->last_write_ms = uv_now(c->loop);
    group_update(c->group);
    cb(MG_OK, c, arg);
}

static void defer_cb(uv_timer_t *t)
{
    mc_cursor *c = t->data;
    if (c->open_deferred) {
        c->open_deferred = false;
        finish_open(c, c->open_status);
    }
    waiters_complete(c, MC__W_DEFERRED, MG_OK);
    try_finish(c);
}

static void open_get_done(int status, const void *value, size_t value_len, const md_stat *stat,
                          void *arg);
static void open_create_done(int status, const char *path, void *arg);

/* A new cursor's state is known: a durable one creates its node, a non-durable one is done
 * (from the defer timer, so that the callback never runs inside mc_cursor_open). */
static void open_fresh_continue(mc_cursor *c, int status)
{
    if (!c->durable) {
        c->open_status = status;
        c->open_deferred = true;
        defer_start(c);
        return;
    }
    if (status != MG_OK) {
        finish_open(c, status);
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = build_info(c, &buf, &len);
    if (rc == MG_OK) {
        rc = md_create(c->md, c->path, buf, len, 0, open_create_done, c);
        mg_free(buf);
    }
    if (rc != MG_OK) {
        finish_open(c, rc);
        return;
    }
    c->inflight++;
}

/* EARLIEST on a non-empty log: A = the messages before the first entry still in the log. The
 * log does not say whether older ledgers were trimmed, so the first entry is assumed to hold
 * one message (A = its index); the error, at most its message count - 1, disappears when that
 * entry is acknowledged (it then counts one message). Exact for unbatched first entries. */
void mc_set_acked_messages(mc_cursor *c, int64_t acked)
{
    if (acked < 0)
        acked = 0;
    if (c->acked_msgs == acked)
        return;
    c->acked_msgs = acked;
    c->dirty = true;
    schedule_persist(c);
}

static void first_read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    mc_cursor *c = arg;
    c->inflight--;
    if (status == MG_ENOTFOUND) {
        /* The first entry is in a lost ledger: its index is unknown; every entry of the log is
         * assumed to hold one message. */
        status = MG_OK;
        count = 0;
        int64_t left = ml_entries_between(c->ml, next_of(c, c->md_pos), ml_last_position(c->ml));
        int64_t a = ml_messages_total(c->ml) - left;
        c->acked_msgs = a > 0 ? a : 0;
        c->chain_known = false;
    } else if (status == MG_OK) {
        c->acked_msgs = count > 0 ? entries[0].index : ml_messages_total(c->ml);
        c->chain_known = false;
    }
    open_fresh_continue(c, status);
}

static void open_fresh(mc_cursor *c)
{
    if (!init_fresh(c)) {
        open_fresh_continue(c, MG_OK);
        return;
    }
    int rc = ml_read(c->ml, next_of(c, c->md_pos), 1, 1, first_read_done, c);
    if (rc != MG_OK) {
        open_fresh_continue(c, rc);
        return;
    }
    c->inflight++;
}

static void open_create_done(int status, const char *path, void *arg)
{
    mc_cursor *c = arg;
    c->inflight--;
    if (status == MG_OK) {
        c->version = 0;
        finish_open(c, MG_OK);
        return;
    }
    if (status == MG_EEXIST && !c->open_retried) {
        /* Created by someone else meanwhile: load theirs. */
        c->open_retried = true;
        mc_rangeset_clear(c->acked);
        int rc = md_get(c->md, c->path, open_get_done, c);
        if (rc == MG_OK) {
            c->inflight++;
            return;
        }
        status = rc;
    }
    finish_open(c, status);
}

static void open_get_done(int status, const void *value, size_t value_len, const md_stat *stat,
                          void *arg)
{
    mc_cursor *c = arg;
    c->inflight--;
    if (status == MG_OK) {
        int rc = load_info(c, value, value_len);
        if (rc == MG_OK) {
            c->version = stat->version;
            advance(c);
        }
        finish_open(c, rc);
        return;
    }
    if (status != MG_ENOTFOUND) {
        finish_open(c, status);
        return;
    }
    open_fresh(c);
}

int mc_cursor_open(ml_managed *ml, const char *name, bool durable, mc_initial initial,
                   const mc_cursor_opts *opts, mc_cursor_cb cb, void *arg)
{
    static const mc_cursor_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!ml || !cb || !name_ok(name))
        return MG_EINVAL;
    if (opts->group &&
        (opts->group->ml != ml || opts->group->n + opts->group->nparked >= MC_GROUP_CURSORS_MAX))
        return opts->group->ml != ml ? MG_EINVAL : MG_ELIMIT;
    mc_cursor *c = mg_calloc(1, sizeof(*c));
    if (!c)
        return MG_ENOMEM;
    int rc = mc_rangeset_create(&c->acked);
    if (rc != MG_OK) {
        mg_free(c);
        return rc;
    }
    ml_env *env = ml_managed_env(ml);
    c->ml = ml;
    c->loop = ml_env_loop(env);
    c->md = ml_env_md(env);
    c->group = opts->group;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->durable = durable;
    c->initial = initial;
    c->phase = MC__OPENING;
    c->status = MG_OK;
    c->persist_interval_ms =
        opts->persist_interval_ms ? opts->persist_interval_ms : MC_PERSIST_INTERVAL_MS_DEFAULT;
    c->info_bytes_max = opts->info_bytes_max ? opts->info_bytes_max : MC_CURSOR_INFO_BYTES_DEFAULT;
    if (c->info_bytes_max > MC_CURSOR_INFO_BYTES_HARD_MAX)
        c->info_bytes_max = MC_CURSOR_INFO_BYTES_HARD_MAX;
    if (c->info_bytes_max < 64)
        c->info_bytes_max = 64;
    c->event_cb = opts->event_cb;
    c->event_arg = opts->event_arg;
    c->skip_lost = opts->skip_lost_ledgers;
    c->open_cb = cb;
    c->open_arg = arg;
    c->version = -1;
    if (durable) {
        const char *base = ml_metadata_path(ml);
        size_t n = strlen(base) + 1 + strlen(name) + 1;
        c->path = mg_malloc(n);
        if (!c->path) {
            mc_rangeset_destroy(c->acked);
            mg_free(c);
            return MG_ENOMEM;
        }
        snprintf(c->path, n, "%s/%s", base, name);
        rc = md_get(c->md, c->path, open_get_done, c);
        if (rc != MG_OK) {
            mg_free(c->path);
            mc_rangeset_destroy(c->acked);
            mg_free(c);
            return rc;
        }
        c->inflight++;
    } else {
        c->path = mg_malloc(strlen(name) + 1);
        if (!c->path) {
            mc_rangeset_destroy(c->acked);
            mg_free(c);
            return MG_ENOMEM;
        }
        memcpy(c->path, name, strlen(name) + 1); /* for log lines */
    }
    uv_timer_init(c->loop, &c->persist_timer);
    uv_timer_init(c->loop, &c->defer_timer);
    c->persist_timer.data = c;
    c->defer_timer.data = c;
    c->handles_ready = true;
    if (!durable)
        open_fresh(c); /* completes from a callback in every case */
    return MG_OK;
}

/* --- close ----------------------------------------------------------------------------------- */

static void close_flushed(int status, void *arg)
{
    mc_cursor *c = arg;
    c->close_status = status;
}

static int start_close(mc_cursor *c, mc__close_kind kind, mc_done_cb cb, void *arg)
{
    if (c->phase == MC__CLOSING)
        return MG_ECLOSED;
    if (c->phase == MC__OPENING)
        return MG_ESTATE;
    c->phase = MC__CLOSING;
    c->close_kind = kind;
    c->close_cb = cb;
    c->close_arg = arg;
    c->close_status = MG_OK;
    uv_timer_stop(&c->persist_timer);
    c->timer_armed = false;
    if (kind == MC__CLOSE && c->durable && c->status == MG_OK && c->dirty) {
        int rc = waiter_add(c, close_flushed, c, MC__W_NEXT, MG_OK);
        if (rc != MG_OK) {
            c->phase = MC__OPEN;
            return rc;
        }
        if (!c->writing)
            persist_start(c);
    } else if (kind == MC__CLOSE && c->durable && c->status != MG_OK) {
        c->close_status = c->status;
    } else if (kind != MC__CLOSE) {
        /* Flushes nobody will write any more. */
        waiters_defer(c, MC__W_NEXT, MG_ECLOSED);
    }
    /* Finishing always goes through a callback (a timer or an operation's), never from here. */
    defer_start(c);
    return MG_OK;
}

int mc_cursor_close(mc_cursor *c, mc_done_cb cb, void *arg)
{
    return start_close(c, MC__CLOSE, cb, arg);
}

int mc_cursor_abort(mc_cursor *c, mc_done_cb cb, void *arg)
{
    return start_close(c, MC__ABORT, cb, arg);
}

int mc_cursor_delete(mc_cursor *c, mc_done_cb cb, void *arg)
{
    return start_close(c, MC__DELETE, cb, arg);
}

int mc_cursor_flush(mc_cursor *c, mc_done_cb cb, void *arg)
{
    if (c->phase == MC__CLOSING)
        return MG_ECLOSED;
    if (c->phase != MC__OPEN || c->status != MG_OK)
        return MG_ESTATE;
    if (!c->durable)
        return waiter_add(c, cb, arg, MC__W_DEFERRED, MG_OK);
    MG_TRY(waiter_add(c, cb, arg, MC__W_NEXT, MG_OK));
    if (!c->writing)
        persist_start(c);
    return MG_OK;
}

/* --- reading --------------------------------------------------------------------------------- */

static void read_done(int status, const ml_entry *entries, size_t count, void *arg);

/* Skips contiguous acknowledged runs at p without reading them. */
static ml_position skip_acked(const mc_cursor *c, ml_position p)
{
    while (mc_rangeset_contains(c->acked, p)) {
        ml_position g = mc_rangeset_first_gap_from(c->acked, p);
        p = next_of(c, (ml_position){ p.ledger_id, g.entry_id - 1 });
    }
    return p;
}

static int read_round(mc_cursor *c)
{
    /* The read position as an entry that exists: a position past the end of a ledger that has
     * rolled over since it was computed is the next ledger's first entry (else the chain below
     * would look broken and the entry before would be read again). */
    ml_position p = next_of(c, (ml_position){ c->read_pos.ledger_id, c->read_pos.entry_id - 1 });
    p = skip_acked(c, p);
    c->read_pos = p;
    c->read_from = p;
    c->read_gen = c->pos_gen;
    c->read_extra = false;
    bool chained = c->chain_known && pcmp(next_of(c, c->chain_pos), p) == 0;
    if (!chained && p.entry_id > 0) {
        /* Read the entry before too, to learn the first entry's message count. */
        c->read_from = (ml_position){ p.ledger_id, p.entry_id - 1 };
        c->read_extra = true;
    }
    int max_entries = c->read_max_entries + (c->read_extra ? 1 : 0);
    int rc =
        c->source_fn != NULL
            ? c->source_fn(c->source, c->read_from, max_entries, c->read_max_bytes, read_done, c)
            : ml_read(c->ml, c->read_from, max_entries, c->read_max_bytes, read_done, c);
    if (rc == MG_OK)
        op_begin(c);
    return rc;
}

/* A read met lost ledger ledger_id (ml_read's MG_ENOTFOUND). With skip_lost, the entries of it
 * from the read position on (those before were delivered: their consumers acknowledge them)
 * are acknowledged, one message each, and the read position moves to the next ledger, as
 * Pulsar's autoSkipNonRecoverableData acknowledges a lost ledger for the subscription. Returns
 * whether it skipped (false: not skipping, not lost, or the acknowledgement could not be
 * recorded: the read then reports the error). */
static bool skip_lost(mc_cursor *c, int64_t ledger_id)
{
    int64_t entries, bytes;
    if (!c->skip_lost || !ml_ledger_lost(c->ml, ledger_id) ||
        ml_ledger_size(c->ml, ledger_id, &entries, &bytes) != MG_OK || entries <= 0)
        return false;
    ml_position first = { ledger_id, 0 };
    if (c->read_pos.ledger_id == ledger_id && c->read_pos.entry_id > 0)
        first.entry_id = c->read_pos.entry_id;
    if (pcmp(first, c->md_pos) <= 0)
        first = above(c->md_pos);
    ml_position last = { ledger_id, entries - 1 };
    int64_t added = 0;
    if (first.ledger_id == ledger_id && first.entry_id <= last.entry_id) {
        int rc = mc_rangeset_add_range(c->acked, first, last, &added);
        c->acked_msgs += added;
        if (rc != MG_OK) {
            MG_WARN("cursor %s: cannot acknowledge lost ledger %" PRId64 ": %s", c->name, ledger_id,
                    mg_strerror(rc));
            if (added > 0) {
                c->dirty = true;
                advance(c);
                schedule_persist(c);
            }
            return false;
        }
    }
    c->lost_skipped_entries += added;
    ml_lost_entries_skipped(c->ml, added);
    MG_WARN("cursor %s of %s: ledger %" PRId64 " is lost: skipped its %" PRId64
            " unread entries (non-recoverable data skipped automatically)",
            c->name, ml_name(c->ml), ledger_id, added);
    c->chain_known = false;
    c->read_pos = next_of(c, last);
    c->dirty = true;
    advance(c);
    schedule_persist(c);
    return true;
}

static void finish_read(mc_cursor *c, int status, const ml_entry *entries, size_t count)
{
    c->reading = false;
    c->read_cb(status, entries, count, c->read_arg);
}

static void read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    mc_cursor *c = arg;
    if (c->phase == MC__CLOSING) {
        finish_read(c, MG_ECLOSED, NULL, 0);
    } else if (c->read_gen != c->pos_gen) {
        /* The read position was moved (seek, rewind, reset) while this read was in flight:
         * what it read belongs to the old position and must not move the new one. */
        finish_read(c, MG_EAGAIN, NULL, 0);
    } else if (status == MG_ENOTFOUND && skip_lost(c, c->read_from.ledger_id)) {
        if (++c->read_rounds >= MC_READ_ROUNDS_MAX) {
            finish_read(c, MG_EAGAIN, NULL, 0);
        } else {
            int rc = read_round(c);
            if (rc != MG_OK)
                finish_read(c, rc, NULL, 0);
        }
    } else if (status != MG_OK || count == 0) {
        finish_read(c, status, NULL, 0);
    } else {
        ml_entry *out = mg_malloc(count * sizeof(*out));
        if (!out) {
            finish_read(c, MG_ENOMEM, NULL, 0);
            op_end(c);
            return;
        }
        size_t n = 0;
        for (size_t i = 0; i < count; i++) {
            const ml_entry *e = &entries[i];
            int64_t msgs = -1;
            if (i > 0)
                msgs = e->index - entries[i - 1].index;
            else if (c->chain_known && pcmp(next_of(c, c->chain_pos), e->position) == 0)
                msgs = e->index - c->chain_index;
            c->chain_known = true;
            c->chain_pos = e->position;
            c->chain_index = e->index;
            if (i == 0 && c->read_extra && pcmp(e->position, c->read_from) == 0)
                continue; /* the entry before the read position, read for its index */
            if (pcmp(e->position, c->read_pos) < 0 || pcmp(e->position, c->md_pos) <= 0 ||
                mc_rangeset_contains(c->acked, e->position))
                continue;
            if (msgs > 0)
                pend_put(c, e->position, msgs);
            out[n++] = *e;
        }
        ml_position last = entries[count - 1].position;
        if (pcmp(last, c->read_pos) >= 0)
            c->read_pos = next_of(c, last);
        if (n > 0) {
            finish_read(c, MG_OK, out, n);
        } else if (++c->read_rounds >= MC_READ_ROUNDS_MAX) {
            finish_read(c, MG_EAGAIN, NULL, 0);
        } else {
            int rc = read_round(c);
            if (rc != MG_OK)
                finish_read(c, rc, NULL, 0);
        }
        mg_free(out);
    }
    op_end(c);
}

int mc_read_entries(mc_cursor *c, int max_entries, uint32_t max_bytes, mc_read_cb cb, void *arg)
{
    if (c->phase == MC__CLOSING)
        return MG_ECLOSED;
    if (c->phase != MC__OPEN || c->status != MG_OK)
        return MG_ESTATE;
    if (!cb || max_entries < 1 || max_entries > MC_READ_ENTRIES_MAX)
        return MG_EINVAL;
    if (c->reading)
        return MG_EAGAIN;
    c->read_cb = cb;
    c->read_arg = arg;
    c->read_max_entries = max_entries;
    c->read_max_bytes = max_bytes;
    c->read_rounds = 0;
    MG_TRY(read_round(c));
    c->reading = true;
    return MG_OK;
}

void mc_cursor_set_source(mc_cursor *c, mc_read_fn fn, void *source)
{
    MG_ASSERT(!c->reading);
    c->source_fn = fn;
    c->source = fn != NULL ? source : NULL;
}

void mc_rewind(mc_cursor *c)
{
    c->pos_gen++;
    c->read_pos = next_of(c, c->md_pos);
}

int mc_seek(mc_cursor *c, ml_position pos)
{
    if (pos.ledger_id < 0)
        return MG_EINVAL;
    c->pos_gen++;
    c->read_pos = pcmp(pos, c->md_pos) <= 0 ? next_of(c, c->md_pos) : pos;
    return MG_OK;
}

/* --- acknowledging --------------------------------------------------------------------------- */

static int ack_check(const mc_cursor *c, ml_position pos, const uint64_t *ack_set, size_t words)
{
    if (c->phase == MC__CLOSING)
        return MG_ECLOSED;
    if (c->phase != MC__OPEN || c->status != MG_OK)
        return MG_ESTATE;
    if (pos.ledger_id < 0 || pos.entry_id < 0)
        return MG_EINVAL;
    if (ack_set && words == 0)
        return MG_EINVAL;
    if (ack_set && words > MC_ACK_SET_WORDS_MAX)
        return MG_ELIMIT;
    ml_position last = ml_last_position(c->ml);
    if (last.ledger_id < 0 || pcmp(pos, last) > 0)
        return MG_EINVAL;
    /* A position inside the log range that is not an entry (past the end of a closed ledger,
     * in a ledger that is not in the list) must not enter the set: it would be counted. */
    if (pcmp(pos, c->md_pos) > 0 && ml_entries_between(c->ml, pos, pos) != 1)
        return MG_EINVAL;
    return MG_OK;
}

/* Whole-entry acknowledgement of pos (> M, not yet in the set), contributing msgs to A. */
static int ack_whole(mc_cursor *c, ml_position pos, int64_t msgs)
{
    MG_TRY(mc_rangeset_add(c->acked, pos, NULL));
    batch_remove(c, pos);
    pend_del(c, pos);
    c->acked_msgs += msgs;
    c->dirty = true;
    advance(c);
    schedule_persist(c);
    return MG_OK;
}

int mc_ack_individual(mc_cursor *c, ml_position pos, const uint64_t *ack_set, size_t words)
{
    MG_TRY(ack_check(c, pos, ack_set, words));
    if (pcmp(pos, c->md_pos) <= 0 || mc_rangeset_contains(c->acked, pos))
        return MG_OK;
    mc__batch *b = batch_find(c, pos);
    if (!ack_set) {
        int64_t msgs = b ? popcount_words(b->bits, b->words) : pend_get(c, pos);
        return ack_whole(c, pos, msgs >= 0 ? msgs : 1);
    }
    if (!b) {
        int64_t size = pend_get(c, pos); /* the batch's message count, when known */
        uint64_t masked[MC_ACK_SET_WORDS_MAX];
        memcpy(masked, ack_set, words * sizeof(*masked));
        if (size > 0 && (uint64_t)size < (uint64_t)words * 64) {
            for (size_t i = 0; i < words; i++) {
                int64_t lo = (int64_t)i * 64;
                if (lo >= size)
                    masked[i] = 0;
                else if (size - lo < 64)
                    masked[i] &= (1ull << (size - lo)) - 1;
            }
        }
        int64_t unacked = popcount_words(masked, words);
        if (unacked == 0) /* every message of the batch: a whole ack */
            return ack_whole(c, pos, size > 0 ? size : 1);
        MG_TRY(batch_insert(c, pos, masked, (uint32_t)words, &b));
        int64_t newly = size > 0 && size > unacked ? size - unacked : 0;
        b->acked_msgs = newly;
        c->acked_msgs += newly;
        c->dirty = true;
        schedule_persist(c);
        return MG_OK;
    }
    /* AND into the recorded set; words the client did not send stay as they were. */
    int64_t before = popcount_words(b->bits, b->words);
    int64_t after = 0;
    for (size_t i = 0; i < b->words; i++)
        after += __builtin_popcountll(i < words ? b->bits[i] & ack_set[i] : b->bits[i]);
    if (after == 0)
        return ack_whole(c, pos, before);
    for (size_t i = 0; i < b->words && i < words; i++)
        b->bits[i] &= ack_set[i];
    b->acked_msgs += before - after;
    c->acked_msgs += before - after;
    c->dirty = true;
    schedule_persist(c);
    return MG_OK;
}

int mc_ack_cumulative(mc_cursor *c, ml_position pos, const uint64_t *ack_set, size_t words)
{
    MG_TRY(ack_check(c, pos, ack_set, words));
    bool partial = ack_set && popcount_words(ack_set, words) > 0;
    ml_position target = partial ? (ml_position){ pos.ledger_id, pos.entry_id - 1 } : pos;
    if (pcmp(target, c->md_pos) > 0) {
        c->acked_msgs += unacked_messages_upto(c, target);
        set_md(c, target);
    }
    if (partial)
        return mc_ack_individual(c, pos, ack_set, words);
    advance(c);
    return MG_OK;
}

/* --- resets ---------------------------------------------------------------------------------- */

static void reset_flushed(int status, void *arg)
{
    mc_cursor *c = arg;
    c->resetting = false;
    c->reset_cb(status, c->reset_arg);
}

static void reset_complete(mc_cursor *c, int status)
{
    if (status == MG_OK && c->durable) {
        if (waiter_add(c, reset_flushed, c, MC__W_NEXT, MG_OK) == MG_OK) {
            if (!c->writing)
                persist_start(c);
            return;
        }
        status = MG_EAGAIN;
    }
    c->resetting = false;
    c->reset_cb(status, c->reset_arg);
}

static void reset_read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    mc_cursor *c = arg;
    if (c->phase == MC__CLOSING || c->status != MG_OK) {
        reset_complete(c, c->phase == MC__CLOSING ? MG_ECLOSED : c->status);
        op_end(c);
        return;
    }
    if (status != MG_OK && status != MG_ENOTFOUND) {
        reset_complete(c, status);
        op_end(c);
        return;
    }
    ml_position pos = c->reset_pos;
    ml_position md = { pos.ledger_id, pos.entry_id - 1 };
    bool exact = false;
    int64_t a;
    if (status == MG_ENOTFOUND) {
        /* The entry read for its index is in a lost ledger: a reset there (or just past it)
         * still works; every entry from pos on is assumed to hold one message. */
        count = 0;
        a = ml_messages_total(c->ml) - ml_entries_between(c->ml, pos, ml_last_position(c->ml));
        if (a < 0)
            a = 0;
    } else if (count == 0) {
        a = ml_messages_total(c->ml); /* past the end */
        exact = true;
    } else if (md.entry_id >= 0 && pcmp(entries[0].position, md) == 0) {
        a = entries[0].index + 1;
        exact = true;
    } else {
        a = entries[0].index; /* the first entry after M assumed to hold one message */
    }
    mc_rangeset_clear(c->acked);
    batch_clear(c);
    pend_clear(c);
    c->md_pos = md;
    c->acked_msgs = a;
    c->pos_gen++;
    c->read_pos = next_of(c, md);
    c->chain_known = exact && md.entry_id >= 0 && count > 0;
    c->chain_pos = md;
    c->chain_index = a - 1;
    c->dirty = true;
    group_update(c->group);
    reset_complete(c, MG_OK);
    op_end(c);
}

static int reset_start(mc_cursor *c, ml_position pos)
{
    c->reset_pos = pos;
    ml_position from = pos.entry_id > 0 ? (ml_position){ pos.ledger_id, pos.entry_id - 1 } : pos;
    int rc = ml_read(c->ml, from, 1, 1, reset_read_done, c);
    if (rc == MG_OK)
        op_begin(c);
    return rc;
}

static int reset_check(const mc_cursor *c, mc_done_cb cb)
{
    if (c->phase == MC__CLOSING)
        return MG_ECLOSED;
    if (c->phase != MC__OPEN || c->status != MG_OK)
        return MG_ESTATE;
    if (!cb)
        return MG_EINVAL;
    if (c->resetting)
        return MG_EAGAIN;
    return MG_OK;
}

int mc_reset_to_position(mc_cursor *c, ml_position pos, mc_done_cb cb, void *arg)
{
    MG_TRY(reset_check(c, cb));
    if (pos.ledger_id < 0 || pos.entry_id < 0)
        return MG_EINVAL;
    MG_TRY(reset_start(c, pos));
    c->resetting = true;
    c->reset_cb = cb;
    c->reset_arg = arg;
    return MG_OK;
}

static void reset_find_done(int status, ml_position pos, void *arg)
{
    mc_cursor *c = arg;
    if (status == MG_OK && c->phase == MC__OPEN && c->status == MG_OK)
        status = reset_start(c, pos);
    else if (status == MG_OK)
        status = c->phase == MC__CLOSING ? MG_ECLOSED : c->status;
    if (status != MG_OK)
        reset_complete(c, status);
    op_end(c);
}

int mc_reset_to_time(mc_cursor *c, int64_t timestamp_ms, mc_done_cb cb, void *arg)
{
    MG_TRY(reset_check(c, cb));
    MG_TRY(ml_find_by_time(c->ml, timestamp_ms, reset_find_done, c));
    op_begin(c);
    c->resetting = true;
    c->reset_cb = cb;
    c->reset_arg = arg;
    return MG_OK;
}

/* --- state ----------------------------------------------------------------------------------- */

ml_position mc_mark_delete_position(const mc_cursor *c)
{
    return c->md_pos;
}

ml_position mc_read_position(const mc_cursor *c)
{
    return c->read_pos;
}

const char *mc_cursor_name(const mc_cursor *c)
{
    return c->name;
}

bool mc_cursor_durable(const mc_cursor *c)
{
    return c->durable;
}

int mc_cursor_status(const mc_cursor *c)
{
    return c->status;
}

bool mc_is_acked(const mc_cursor *c, ml_position pos)
{
    return pcmp(pos, c->md_pos) <= 0 || mc_rangeset_contains(c->acked, pos);
}

int mc_batch_ack_set(const mc_cursor *c, ml_position pos, const uint64_t **words, size_t *count)
{
    const mc__batch *b = batch_find(c, pos);
    if (!b)
        return MG_ENOTFOUND;
    *words = b->bits;
    *count = b->words;
    return MG_OK;
}

int64_t mc_backlog_entries(const mc_cursor *c)
{
    ml_position last = ml_last_position(c->ml);
    ml_position p = next_of(c, c->md_pos);
    if (last.ledger_id < 0 || pcmp(p, last) > 0)
        return 0;
    int64_t n = ml_entries_between(c->ml, p, last) - mc_rangeset_count_between(c->acked, p, last);
    return n > 0 ? n : 0;
}

int64_t mc_backlog_messages(const mc_cursor *c)
{
    int64_t n = ml_messages_total(c->ml) - c->acked_msgs;
    /* Every entry not wholly acknowledged holds at least one unacknowledged message. */
    int64_t entries = mc_backlog_entries(c);
    return n > entries ? n : entries;
}

int64_t mc_lost_entries_skipped(const mc_cursor *c)
{
    return c->lost_skipped_entries;
}

int64_t mc_acked_entries(const mc_cursor *c)
{
    return mc_rangeset_count(c->acked);
}

int64_t mc_acked_range_count(const mc_cursor *c)
{
    return mc_rangeset_range_count(c->acked);
}

size_t mc_acked_ranges(const mc_cursor *c, mc_range *out, size_t cap)
{
    mc_rangeset_iter it;
    ml_position f, l;
    size_t n = 0;
    mc_rangeset_iter_init(c->acked, &it);
    while (mc_rangeset_iter_next(&it, &f, &l)) {
        if (n < cap)
            out[n] = (mc_range){ f, l };
        n++;
    }
    return n;
}

size_t mc_cursor_memory_bytes(const mc_cursor *c)
{
    size_t n = mc_rangeset_memory_bytes(c->acked) + c->batches_cap * sizeof(*c->batches) +
               c->pend_cap * sizeof(*c->pend);
    for (size_t i = 0; i < c->nbatches; i++)
        n += c->batches[i].words * sizeof(uint64_t);
    return n;
}

uint64_t mc_cursor_writes(const mc_cursor *c)
{
    return c->writes;
}
