/*
 * Bookie ledgers: one writer, entries striped over an ensemble of bookies, metadata in
 * /ledgers/<id> (see ledger.h for the API; BookKeeper's ledger protocol is the model).
 *
 * WRITING
 *   Entry e goes to its write set: write_quorum consecutive bookies of the ensemble starting at
 *   index e mod ensemble_size (slot j of the write set is bookie (e + j) mod ensemble_size). It
 *   is acknowledged once ack_quorum of them confirmed AND every earlier entry was acknowledged:
 *   completions run strictly in entry order and advance the LAC (last add confirmed). Pending
 *   adds live in a ring ordered by entry id (bounded by pending_adds_max); each keeps a
 *   reference to its buffer until it completes, because an ensemble change may have to send it
 *   again.
 *
 * ENSEMBLE CHANGE (a bookie of the write set failed: an error other than MG_EFENCED, or no
 * answer within add_timeout_ms)
 *   1. The bookie's index goes into replace_mask; nothing more is sent to it; completions stop
 *      (an entry acknowledged now could be attributed to the new ensemble by the metadata while
 *      the replacement does not hold it).
 *   2. /bookies is listed; a replacement is drawn at random among live bookies that are not in
 *      the ensemble and never failed for this ledger (none: the ledger fails with MG_ENOTFOUND,
 *      or with what the failed bookie answered when that was its storage refusing writes,
 *      MG_ENOSPC or MG_EREADONLY, which the writer backs off from).
 *   3. The metadata gets an ensemble starting at LAC + 1 (or the last ensemble is edited, when
 *      it already starts there), written with compare-and-set on the version we hold. On
 *      MG_EBADVERSION it is read again: CLOSED or IN_RECOVERY means another client is recovering
 *      the ledger, so we are fenced (MG_EFENCED); still OPEN, the write is retried.
 *   4. Once written, every pending entry whose write set includes a replaced index forgets that
 *      slot's confirmation and is sent to the replacement; completions resume.
 *   Failures seen meanwhile accumulate in replace_mask for the next round.
 *
 * FENCING AND ERRORS
 *   MG_EFENCED from any bookie means a reader recovered the ledger: the ledger enters the
 *   sticky error state, no add is sent any more, and the answers still in flight are awaited
 *   (each at most add_timeout_ms): an add that reaches ack quorum meanwhile was written before
 *   the fence, so recovery keeps it, and it completes with MG_OK, in order; every other pending
 *   add then fails with MG_EFENCED. (Failing them all at once told producers that entries the
 *   recovered ledger holds had failed, and their resends were stored twice.) Any other failure that
 *   cannot be repaired (no replacement bookie, metadata errors, out of memory) does the same
 *   with its own code. After an error no add is accepted (MG_ESTATE): a ledger never has holes.
 *   Failing pending adds is deferred to the ledger's timer, so no callback ever runs inside the
 *   call that caused it.
 *
 * STATE MACHINE of a writer handle
 *
 *     create --> OPEN --ml_ledger_close--> CLOSING (drain adds, wait for a running ensemble
 *                 |                           |     change, write CLOSED with CAS) --> freed
 *                 +--error (fenced, ...)------+--> ERROR (adds refused; close writes CLOSED
 *                                                  with the LAC unless fenced, then frees)
 *   A writer handle reports ML_LEDGER_OPEN, or ML_LEDGER_IN_RECOVERY once it learnt that it was
 *   fenced.
 *
 * RECOVERY (ml_ledger_open with recover = true, on a ledger not CLOSED)
 *   1. Read the metadata; write it back as IN_RECOVERY (CAS; on a conflict start again): from
 *      now on the old writer cannot change its ensemble any more.
 *   2. Fence the ledger on every bookie of the last ensemble; at least ensemble_size -
 *      ack_quorum + 1 must answer, so that every write set has fewer than ack_quorum unfenced
 *      bookies and the old writer cannot get another entry acknowledged. Each fenced bookie
 *      answers the highest entry it stores; their maximum bounds the scan.
 *   3. Scan from entry 0 upwards with range reads (the protocol carries no piggybacked LAC, so
 *      the scan also yields the exact length): an entry is present when any bookie of its
 *      write set returns it, missing when write_quorum - ack_quorum + 1 of them answer
 *      MG_ENOTFOUND (it cannot have reached ack quorum); any other outcome fails the recovery
 *      (a later attempt can do better). The last entry is the one before the first missing one
 *      (or the bound). An entry missing below the last ensemble's first entry would be a lost
 *      acknowledged entry: MG_EIO.
 *   4. Write CLOSED with the last entry id and the length (CAS); if another recovery closed it
 *      first, its result is used.
 *   Entries recovered from fewer than ack_quorum bookies are not re-replicated (fenced bookies
 *   refuse adds and the protocol has no recovery add); they stay readable from where they are.
 *   The scan reads the whole ledger: recovery costs one sequential read of it.
 *
 * OPEN WITHOUT RECOVERY of a ledger not CLOSED: its LAC is estimated from the bookies of the
 * last ensemble (each reports the highest entry it stores): the ack_quorum-th highest answer, at
 * least the entry before the last ensemble's first one. The length is unknown there (0).
 *
 * LIFETIME: a handle is freed once it is released (close completed, or ml_ledger_release),
 * no bookie or metadata request of its own is outstanding (outstanding == 0: every client
 * callback still finds it) and no callback of its own is on the stack (depth == 0); the timer
 * handle is closed last and its close callback frees the memory. A released handle stops
 * counting as an object of the env at once and never touches the env again (late answers of
 * the bookie client only find it, ignore themselves and free it), so the env may be destroyed
 * right after the last close callback; read operations count as objects until they call back.
 */
#include "ledger/ledger_int.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "ledger/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ML_PATH_BYTES   40
/* The ring of pending adds starts this small and doubles up to pending_adds_max. */
#define ML_RING_INITIAL 64u

_Static_assert(ML_ADD_PREFIX_BYTES_MAX <= BK_REQUEST_PREFIX_BYTES_MAX,
               "a ledger add's prefix fits a bookie request's");

/* One bookie ADD in flight: from the ledger's free list (req_pool), back to it when answered. */
typedef struct ml__req {
    ml_ledger *l;
    int64_t entry_id;
    uint64_t seq;
    int slot;
    int bookie;
} ml__req;

struct ml_ledger {
    ml_env *env;
    int64_t id;
    char path[ML_PATH_BYTES];
    ml__meta meta;
    int64_t md_version;
    bool writer;
    int64_t lac;
    int64_t length;
    int64_t next_entry_id;
    int error; /* sticky, MG_OK while healthy */

    ml__add **ring;
    uint32_t ring_cap, ring_head, ring_count;
    uint64_t seq;
    bool retry_unsent;

    bool changing;
    uint32_t replace_mask;  /* ensemble indexes to replace in the next change */
    uint32_t changing_mask; /* ensemble indexes the running change replaces */
    int change_attempts;
    ml__meta next_meta;
    bool has_next_meta;
    char *excluded[ML_EXCLUDED_BOOKIES_MAX];
    int excluded_count;
    int bookie_error; /* the last error a bookie answered an add with (MG_OK: none) */

    bool close_requested, close_started;
    int close_attempts;
    ml_done_cb close_cb;
    void *close_arg;

    uv_timer_t timer;
    uint64_t period_ms;
    mg_freelist req_pool; /* released ml__req (ML_BOOKIE_REQ_POOL_MAX), freed with the handle */
    uint32_t outstanding; /* client requests of this handle not yet called back */
    int depth;            /* callbacks of this handle on the stack */
    bool released;
    bool freeing;
};

/* --- lifetime ------------------------------------------------------------------------------- */

static void ml__timer_closed(uv_handle_t *h)
{
    ml_ledger *l = h->data;
    for (uint32_t i = 0; i < l->ring_count; i++) {
        ml__add *a = l->ring[(l->ring_head + i) % l->ring_cap];
        mg_buf_unref(a->buf);
        if (a->owned)
            mg_free(a);
    }
    mg_free(l->ring);
    mg_freelist_clear(&l->req_pool);
    for (int i = 0; i < l->excluded_count; i++)
        mg_free(l->excluded[i]);
    if (l->has_next_meta)
        ml__meta_free(&l->next_meta);
    ml__meta_free(&l->meta);
    mg_free(l);
}

/* The caller gave the handle up: it no longer counts as an object of the env (it is not touched
 * again after this point, so the env may go before the handle's memory does). */
static void ml__mark_released(ml_ledger *l)
{
    MG_ASSERT(!l->released);
    l->released = true;
    l->env->objects--;
}

static void ml__maybe_free(ml_ledger *l)
{
    if (l->released && !l->freeing && l->outstanding == 0 && l->depth == 0) {
        l->freeing = true;
        uv_timer_stop(&l->timer);
        uv_close((uv_handle_t *)&l->timer, ml__timer_closed);
    }
}

static void ml__enter(ml_ledger *l)
{
    l->depth++;
}

static void ml__leave(ml_ledger *l)
{
    MG_ASSERT(l->depth > 0);
    l->depth--;
    ml__maybe_free(l);
}

static ml_ledger *ml__ledger_new(ml_env *env, int64_t id, ml__meta *meta, int64_t version,
                                 bool writer)
{
    ml_ledger *l = mg_calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    if (uv_timer_init(env->loop, &l->timer) != 0) {
        mg_free(l);
        return NULL;
    }
    l->timer.data = l;
    uv_unref((uv_handle_t *)&l->timer); /* in-flight requests keep the loop alive, not this */
    mg_freelist_init(&l->req_pool, sizeof(ml__req), ML_BOOKIE_REQ_POOL_MAX);
    l->env = env;
    l->id = id;
    ml__ledger_path(id, l->path, sizeof(l->path));
    l->meta = *meta;
    memset(meta, 0, sizeof(*meta));
    l->md_version = version;
    l->writer = writer;
    l->lac = -1;
    l->period_ms = env->add_timeout_ms / 4;
    if (l->period_ms < ML_TIMER_PERIOD_MS_MIN)
        l->period_ms = ML_TIMER_PERIOD_MS_MIN;
    if (l->period_ms > ML_TIMER_PERIOD_MS_MAX)
        l->period_ms = ML_TIMER_PERIOD_MS_MAX;
    env->objects++;
    return l;
}

/* Releases a handle that was never given to a caller. */
static void ml__ledger_discard(ml_ledger *l)
{
    ml__mark_released(l);
    ml__maybe_free(l);
}

/* --- writing -------------------------------------------------------------------------------- */

static void ml__tick(uv_timer_t *t);

static void ml__kick(ml_ledger *l, uint64_t delay_ms)
{
    if (!l->freeing)
        uv_timer_start(&l->timer, ml__tick, delay_ms, l->period_ms);
}

static ml__add *ml__find_add(ml_ledger *l, int64_t entry_id)
{
    if (l->ring_count == 0)
        return NULL;
    int64_t first = l->ring[l->ring_head]->entry_id;
    if (entry_id < first || entry_id >= first + (int64_t)l->ring_count)
        return NULL;
    return l->ring[(l->ring_head + (uint32_t)(entry_id - first)) % l->ring_cap];
}

static ml__add *ml__ring_at(ml_ledger *l, uint32_t i)
{
    return l->ring[(l->ring_head + i) % l->ring_cap];
}

static ml__add *ml__ring_pop(ml_ledger *l)
{
    ml__add *a = l->ring[l->ring_head];
    l->ring_head = (l->ring_head + 1) % l->ring_cap;
    l->ring_count--;
    return a;
}

static int ml__ring_push(ml_ledger *l, ml__add *a)
{
    if (l->ring_count == l->ring_cap) {
        uint32_t cap = l->ring_cap ? l->ring_cap * 2 : ML_RING_INITIAL;
        ml__add **r = mg_malloc(sizeof(*r) * cap);
        if (r == NULL)
            return MG_ENOMEM;
        for (uint32_t i = 0; i < l->ring_count; i++)
            r[i] = ml__ring_at(l, i);
        mg_free(l->ring);
        l->ring = r;
        l->ring_cap = cap;
        l->ring_head = 0;
    }
    l->ring[(l->ring_head + l->ring_count) % l->ring_cap] = a;
    l->ring_count++;
    return MG_OK;
}

/* Enters the sticky error state; the pending adds fail from the timer. */
static void ml__fail(ml_ledger *l, int err)
{
    if (l->error != MG_OK)
        return;
    MG_ASSERT(err != MG_OK);
    if (err != MG_EFENCED)
        MG_WARN("ledger %lld: writing failed: %s", (long long)l->id, mg_strerror(err));
    l->error = err;
    ml__kick(l, 0);
}

static void ml__fail_pending(ml_ledger *l)
{
    while (l->ring_count > 0) {
        ml__add *a = ml__ring_pop(l);
        ml_add_cb cb = a->cb;
        void *arg = a->arg;
        int64_t id = a->entry_id;
        mg_buf_unref(a->buf);
        if (a->owned)
            mg_free(a);
        cb(l->error, id, arg);
    }
}

static void ml__close_progress(ml_ledger *l);
static void ml__start_change(ml_ledger *l);
static void ml__add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg);

static bool ml__is_excluded(const ml_ledger *l, const char *addr)
{
    for (int i = 0; i < l->excluded_count; i++) {
        if (strcmp(l->excluded[i], addr) == 0)
            return true;
    }
    return false;
}

/* A bookie of the current ensemble failed an add: schedule its replacement. */
static void ml__bookie_failed(ml_ledger *l, int bookie, int err)
{
    if (l->error != MG_OK)
        return;
    uint32_t bit = 1u << bookie;
    if ((l->replace_mask | l->changing_mask) & bit)
        return;
    const char *addr = l->meta.ensembles[l->meta.ensemble_count - 1].bookies[bookie];
    MG_WARN("ledger %lld: bookie %s failed an add (%s), replacing it", (long long)l->id, addr,
            mg_strerror(err));
    l->bookie_error = err;
    if (!ml__is_excluded(l, addr) && l->excluded_count < ML_EXCLUDED_BOOKIES_MAX) {
        size_t n = strlen(addr);
        char *copy = mg_malloc(n + 1);
        if (copy != NULL) {
            memcpy(copy, addr, n + 1);
            l->excluded[l->excluded_count++] = copy;
        }
    }
    l->replace_mask |= bit;
    if (!l->changing)
        ml__start_change(l);
}

/* Sends slot j of a's write set to its bookie of the current ensemble. */
static void ml__send_slot(ml_ledger *l, ml__add *a, int j)
{
    int e = l->meta.ensemble_size;
    int b = (int)((a->entry_id + j) % e);
    uint32_t bit = 1u << j;
    a->inflight &= ~bit;
    a->seq[j] = 0;
    if (((l->replace_mask | l->changing_mask) >> b) & 1u) {
        a->unsent |= bit;
        return;
    }
    ml__req *r = mg_freelist_get(&l->req_pool);
    if (r == NULL) {
        ml__fail(l, MG_ENOMEM);
        return;
    }
    r->l = l;
    r->entry_id = a->entry_id;
    r->seq = ++l->seq;
    r->slot = j;
    r->bookie = b;
    const char *addr = l->meta.ensembles[l->meta.ensemble_count - 1].bookies[b];
    int rc = bk_client_add_prefixed(l->env->bk, addr, l->id, a->entry_id, a->prefix, a->prefix_len,
                                    a->buf, a->off, a->len, ml__add_done, r);
    if (rc == MG_OK) {
        l->outstanding++;
        a->seq[j] = r->seq;
        a->sent_ms[j] = uv_now(l->env->loop);
        a->inflight |= bit;
        a->unsent &= ~bit;
        return;
    }
    mg_freelist_put(&l->req_pool, r);
    a->unsent |= bit;
    if (rc == MG_EAGAIN) {
        /* The client's queue for that bookie is full: try again shortly. */
        if (!l->retry_unsent)
            ml__kick(l, ML_TIMER_PERIOD_MS_MIN);
        l->retry_unsent = true;
        return;
    }
    if (rc == MG_ECLOSED || rc == MG_ENOMEM)
        ml__fail(l, rc);
    else
        ml__bookie_failed(l, b, rc);
}

/* Completes, in entry order, every add at the head that reached ack quorum. */
/* Whether answers of adds sent before a fence are still awaited (see FENCING AND ERRORS). */
static bool ml__settling(ml_ledger *l)
{
    if (l->error != MG_EFENCED)
        return false;
    uint64_t now = uv_now(l->env->loop);
    for (uint32_t i = 0; i < l->ring_count; i++) {
        const ml__add *a = ml__ring_at(l, i);
        for (int j = 0; j < l->meta.write_quorum; j++)
            if ((a->inflight & (1u << j)) && now - a->sent_ms[j] < l->env->add_timeout_ms)
                return true;
    }
    return false;
}

static void ml__complete(ml_ledger *l)
{
    while ((l->error == MG_OK || l->error == MG_EFENCED) && !l->changing && l->ring_count > 0) {
        ml__add *a = l->ring[l->ring_head];
        if (a->acks < l->meta.ack_quorum)
            break;
        ml__ring_pop(l);
        l->lac = a->entry_id;
        l->length += (int64_t)(a->prefix_len + a->len);
        ml_add_cb cb = a->cb;
        void *arg = a->arg;
        int64_t id = a->entry_id;
        mg_buf_unref(a->buf);
        if (a->owned)
            mg_free(a);
        cb(MG_OK, id, arg);
    }
    ml__close_progress(l);
}

static void ml__add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    (void)ledger_id;
    (void)entry_id;
    ml__req *r = arg;
    ml_ledger *l = r->l;
    ml__enter(l);
    l->outstanding--;
    ml__add *a = l->error == MG_OK || l->error == MG_EFENCED ? ml__find_add(l, r->entry_id) : NULL;
    uint32_t bit = 1u << r->slot;
    if (a != NULL && a->seq[r->slot] == r->seq && (a->inflight & bit)) {
        a->inflight &= ~bit;
        if (status == MG_OK) {
            if (!(a->acked & bit)) {
                a->acked |= bit;
                a->acks++;
            }
            ml__complete(l);
        } else if (status == MG_EFENCED) {
            ml__fail(l, MG_EFENCED);
        } else {
            ml__bookie_failed(l, r->bookie, status);
        }
    } else if (status == MG_EFENCED && l->error == MG_OK && !l->released) {
        ml__fail(l, MG_EFENCED); /* a late answer, but the news holds for later adds */
    }
    if (l->error == MG_EFENCED && !l->released)
        ml__kick(l, 0); /* perhaps the last answer awaited: fail what is left */
    mg_freelist_put(&l->req_pool, r);
    ml__leave(l);
}

static void ml__check_timeouts(ml_ledger *l)
{
    uint64_t now = uv_now(l->env->loop);
    for (uint32_t i = 0; i < l->ring_count && l->error == MG_OK; i++) {
        ml__add *a = ml__ring_at(l, i);
        for (int j = 0; j < l->meta.write_quorum; j++) {
            uint32_t bit = 1u << j;
            if ((a->inflight & bit) && now - a->sent_ms[j] >= l->env->add_timeout_ms) {
                a->inflight &= ~bit;
                a->seq[j] = 0; /* a late answer no longer counts */
                a->unsent |= bit;
                ml__bookie_failed(l, (int)((a->entry_id + j) % l->meta.ensemble_size),
                                  MG_ETIMEDOUT);
            }
        }
    }
}

static void ml__resend_unsent(ml_ledger *l)
{
    l->retry_unsent = false;
    for (uint32_t i = 0; i < l->ring_count && l->error == MG_OK; i++) {
        ml__add *a = ml__ring_at(l, i);
        for (int j = 0; j < l->meta.write_quorum; j++) {
            if (a->unsent & (1u << j))
                ml__send_slot(l, a, j);
        }
    }
}

static void ml__tick(uv_timer_t *t)
{
    ml_ledger *l = t->data;
    if (l->released) {
        uv_timer_stop(t); /* nothing left to do, and the env may be gone */
        return;
    }
    ml__enter(l);
    if (l->error != MG_OK) {
        if (!ml__settling(l))
            ml__fail_pending(l);
    } else {
        ml__check_timeouts(l);
        if (l->retry_unsent && !l->changing)
            ml__resend_unsent(l);
    }
    ml__close_progress(l);
    if (l->ring_count == 0 && !l->retry_unsent)
        uv_timer_stop(t);
    ml__leave(l);
}

/* --- ensemble change ------------------------------------------------------------------------ */

static void ml__change_written(int status, const md_stat *stat, void *arg);
static void ml__change_reread(int status, const void *value, size_t value_len, const md_stat *stat,
                              void *arg);

static void ml__change_abort(ml_ledger *l, int err)
{
    if (l->has_next_meta) {
        ml__meta_free(&l->next_meta);
        l->has_next_meta = false;
    }
    l->changing = false;
    if (err != MG_OK)
        ml__fail(l, err);
}

static void ml__change_write(ml_ledger *l)
{
    uint8_t *buf;
    size_t len;
    int rc = ml__meta_encode(&l->next_meta, &buf, &len);
    if (rc == MG_OK) {
        rc = md_set(l->env->md, l->path, buf, len, l->md_version, ml__change_written, l);
        mg_free(buf);
    }
    if (rc != MG_OK) {
        ml__change_abort(l, rc);
        return;
    }
    l->outstanding++;
}

static void ml__change_children(int status, const char *const *names, size_t count, void *arg)
{
    ml_ledger *l = arg;
    ml__enter(l);
    l->outstanding--;
    if (l->error != MG_OK) {
        ml__change_abort(l, MG_OK);
        goto out;
    }
    if (status != MG_OK) {
        ml__change_abort(l, status);
        goto out;
    }
    const ml__ensemble *last = &l->meta.ensembles[l->meta.ensemble_count - 1];
    int e = l->meta.ensemble_size;
    /* Candidates: live, not in the ensemble, never failed for this ledger. */
    size_t *cand = mg_malloc(sizeof(*cand) * (count ? count : 1));
    if (cand == NULL) {
        ml__change_abort(l, MG_ENOMEM);
        goto out;
    }
    size_t ncand = 0;
    for (size_t i = 0; i < count; i++) {
        bool in = ml__is_excluded(l, names[i]);
        for (int j = 0; j < e && !in; j++)
            in = strcmp(last->bookies[j], names[i]) == 0;
        if (!in)
            cand[ncand++] = i;
    }
    int need = __builtin_popcount(l->changing_mask);
    if ((int)ncand < need) {
        MG_WARN("ledger %lld: no live bookie left to replace a failed one (%zu candidates, %d "
                "needed)",
                (long long)l->id, ncand, need);
        mg_free(cand);
        /* The adds fail with what the bookie said (a full disk, a read-only storage), which
         * the writer can act on, rather than with "not found". */
        ml__change_abort(l, l->bookie_error == MG_ENOSPC || l->bookie_error == MG_EREADONLY
                                ? l->bookie_error
                                : MG_ENOTFOUND);
        goto out;
    }
    ml__meta nm;
    int rc = ml__meta_copy(&l->meta, &nm);
    if (rc != MG_OK) {
        mg_free(cand);
        ml__change_abort(l, rc);
        goto out;
    }
    int64_t first = l->lac + 1;
    MG_ASSERT(last->first_entry_id <= first);
    if (last->first_entry_id != first) {
        if (nm.ensemble_count >= ML_ENSEMBLES_MAX) {
            ml__meta_free(&nm);
            mg_free(cand);
            ml__change_abort(l, MG_ELIMIT);
            goto out;
        }
        ml__ensemble *grown = mg_realloc(nm.ensembles, sizeof(*grown) * (nm.ensemble_count + 1));
        if (grown == NULL) {
            ml__meta_free(&nm);
            mg_free(cand);
            ml__change_abort(l, MG_ENOMEM);
            goto out;
        }
        nm.ensembles = grown;
        ml__ensemble *ne = &nm.ensembles[nm.ensemble_count];
        memset(ne, 0, sizeof(*ne));
        nm.ensemble_count++;
        ne->first_entry_id = first;
        for (int j = 0; j < e && rc == MG_OK; j++) {
            size_t n = strlen(last->bookies[j]);
            ne->bookies[j] = mg_malloc(n + 1);
            if (ne->bookies[j] == NULL)
                rc = MG_ENOMEM;
            else
                memcpy(ne->bookies[j], last->bookies[j], n + 1);
        }
    }
    ml__ensemble *target = &nm.ensembles[nm.ensemble_count - 1];
    for (int b = 0; b < e && rc == MG_OK; b++) {
        if (!((l->changing_mask >> b) & 1u))
            continue;
        size_t k = (size_t)(ml__rand(l->env) % ncand);
        const char *pick = names[cand[k]];
        cand[k] = cand[--ncand];
        size_t n = strlen(pick);
        char *copy = mg_malloc(n + 1);
        if (copy == NULL) {
            rc = MG_ENOMEM;
            break;
        }
        memcpy(copy, pick, n + 1);
        MG_INFO("ledger %lld: ensemble change from entry %lld: %s -> %s", (long long)l->id,
                (long long)first, target->bookies[b], copy);
        mg_free(target->bookies[b]);
        target->bookies[b] = copy;
    }
    mg_free(cand);
    if (rc != MG_OK) {
        ml__meta_free(&nm);
        ml__change_abort(l, rc);
        goto out;
    }
    l->next_meta = nm;
    l->has_next_meta = true;
    ml__change_write(l);
out:
    ml__close_progress(l);
    ml__leave(l);
}

static void ml__start_change(ml_ledger *l)
{
    MG_ASSERT(!l->changing);
    l->changing = true;
    l->changing_mask = l->replace_mask;
    l->replace_mask = 0;
    l->change_attempts = 0;
    mg_counter_inc(l->env->m_ensemble_changes);
    int rc = md_children(l->env->md, "/bookies", ml__change_children, l);
    if (rc != MG_OK) {
        ml__change_abort(l, rc);
        return;
    }
    l->outstanding++;
}

static void ml__change_written(int status, const md_stat *stat, void *arg)
{
    ml_ledger *l = arg;
    ml__enter(l);
    l->outstanding--;
    if (status == MG_OK) {
        ml__meta_free(&l->meta);
        l->meta = l->next_meta;
        l->has_next_meta = false;
        l->md_version = stat->version;
        uint32_t mask = l->changing_mask;
        l->changing_mask = 0;
        l->changing = false;
        int e = l->meta.ensemble_size;
        for (uint32_t i = 0; i < l->ring_count && l->error == MG_OK; i++) {
            ml__add *a = ml__ring_at(l, i);
            for (int j = 0; j < l->meta.write_quorum; j++) {
                uint32_t bit = 1u << j;
                int b = (int)((a->entry_id + j) % e);
                if (!((mask >> b) & 1u))
                    continue;
                if (a->acked & bit) {
                    a->acked &= ~bit;
                    a->acks--;
                }
                ml__send_slot(l, a, j);
            }
        }
        ml__complete(l);
        if (l->error == MG_OK && !l->changing && l->replace_mask != 0)
            ml__start_change(l);
    } else if (status == MG_EBADVERSION && l->error == MG_OK) {
        int rc = md_get(l->env->md, l->path, ml__change_reread, l);
        if (rc != MG_OK)
            ml__change_abort(l, rc);
        else
            l->outstanding++;
    } else {
        ml__change_abort(l, status == MG_EBADVERSION ? MG_OK : status);
    }
    ml__close_progress(l);
    ml__leave(l);
}

static void ml__change_reread(int status, const void *value, size_t value_len, const md_stat *stat,
                              void *arg)
{
    ml_ledger *l = arg;
    ml__enter(l);
    l->outstanding--;
    if (l->error != MG_OK) {
        ml__change_abort(l, MG_OK);
    } else if (status != MG_OK) {
        ml__change_abort(l, status);
    } else {
        ml__meta m;
        int rc = ml__meta_decode(value, value_len, &m);
        if (rc != MG_OK) {
            ml__change_abort(l, rc);
        } else if (m.state != ML_LEDGER_OPEN) {
            ml__meta_free(&m);
            ml__change_abort(l, MG_EFENCED);
        } else if (++l->change_attempts > ML_MD_ATTEMPTS_MAX) {
            ml__meta_free(&m);
            ml__change_abort(l, MG_EBADVERSION);
        } else {
            ml__meta_free(&m);
            l->md_version = stat->version;
            ml__change_write(l);
        }
    }
    ml__close_progress(l);
    ml__leave(l);
}

/* --- add ------------------------------------------------------------------------------------ */

static int ml__add_submit(ml_ledger *l, ml__add *a, const uint8_t *prefix, size_t prefix_len,
                          mg_buf *buf, size_t off, size_t len, ml_add_cb cb, void *arg);

int ml_ledger_add(ml_ledger *l, mg_buf *buf, size_t off, size_t len, ml_add_cb cb, void *arg)
{
    return ml_ledger_add_prefixed(l, NULL, 0, buf, off, len, cb, arg);
}

int ml_ledger_add_prefixed(ml_ledger *l, const uint8_t *prefix, size_t prefix_len, mg_buf *buf,
                           size_t off, size_t len, ml_add_cb cb, void *arg)
{
    return ml__add_submit(l, NULL, prefix, prefix_len, buf, off, len, cb, arg);
}

int ml__ledger_add(ml_ledger *l, ml__add *a, const uint8_t *prefix, size_t prefix_len, mg_buf *buf,
                   size_t off, size_t len, ml_add_cb cb, void *arg)
{
    if (a == NULL)
        return MG_EINVAL;
    return ml__add_submit(l, a, prefix, prefix_len, buf, off, len, cb, arg);
}

/* Starts an add with the caller's request a, or (a NULL) with one allocated here, which the
 * ledger frees when it completes. */
static int ml__add_submit(ml_ledger *l, ml__add *a, const uint8_t *prefix, size_t prefix_len,
                          mg_buf *buf, size_t off, size_t len, ml_add_cb cb, void *arg)
{
    if (l == NULL || buf == NULL || cb == NULL || prefix_len > ML_ADD_PREFIX_BYTES_MAX ||
        (prefix == NULL && prefix_len > 0))
        return MG_EINVAL;
    if (l->writer && !l->released && !l->close_requested && l->error == MG_EFENCED)
        return MG_EFENCED;
    if (!l->writer || l->released || l->close_requested || l->error != MG_OK)
        return MG_ESTATE;
    if (off > mg_buf_len(buf) || len > mg_buf_len(buf) - off)
        return MG_EINVAL;
    if (len > BK_ENTRY_BYTES_MAX - prefix_len)
        return MG_ELIMIT;
    if (l->ring_count >= l->env->pending_adds_max)
        return MG_EAGAIN;
    bool owned = a == NULL;
    if (owned) {
        a = mg_calloc(1, sizeof(*a));
        if (a == NULL)
            return MG_ENOMEM;
    } else {
        memset(a, 0, sizeof(*a)); /* a reused request starts clean */
    }
    if (ml__ring_push(l, a) != MG_OK) {
        if (owned)
            mg_free(a);
        return MG_ENOMEM;
    }
    a->owned = owned;
    a->entry_id = l->next_entry_id++;
    a->buf = mg_buf_ref(buf);
    a->off = off;
    a->len = len;
    if (prefix_len > 0)
        memcpy(a->prefix, prefix, prefix_len);
    a->prefix_len = (uint8_t)prefix_len;
    a->cb = cb;
    a->arg = arg;
    for (int j = 0; j < l->meta.write_quorum && l->error == MG_OK; j++)
        ml__send_slot(l, a, j);
    if (!uv_is_active((uv_handle_t *)&l->timer))
        ml__kick(l, l->period_ms);
    return MG_OK;
}

int64_t ml_ledger_last_confirmed(const ml_ledger *l)
{
    return l->lac;
}

int64_t ml_ledger_id(const ml_ledger *l)
{
    return l->id;
}

int64_t ml_ledger_length(const ml_ledger *l)
{
    return l->length;
}

ml_ledger_state ml_ledger_state_get(const ml_ledger *l)
{
    if (l->writer && l->error == MG_EFENCED)
        return ML_LEDGER_IN_RECOVERY;
    return l->meta.state;
}

/* --- close ---------------------------------------------------------------------------------- */

static void ml__close_written(int status, const md_stat *stat, void *arg);

static void ml__close_finish(ml_ledger *l, int status)
{
    ml_done_cb cb = l->close_cb;
    void *arg = l->close_arg;
    ml__mark_released(l);
    uv_timer_stop(&l->timer);
    cb(status, arg);
}

static void ml__close_write(ml_ledger *l)
{
    ml__meta m = l->meta;
    m.state = ML_LEDGER_CLOSED;
    m.last_entry_id = l->lac;
    m.length = l->length;
    uint8_t *buf;
    size_t len;
    int rc = ml__meta_encode(&m, &buf, &len);
    if (rc == MG_OK) {
        rc = md_set(l->env->md, l->path, buf, len, l->md_version, ml__close_written, l);
        mg_free(buf);
    }
    if (rc != MG_OK) {
        ml__close_finish(l, rc);
        return;
    }
    l->outstanding++;
}

static void ml__close_reread(int status, const void *value, size_t value_len, const md_stat *stat,
                             void *arg)
{
    ml_ledger *l = arg;
    ml__enter(l);
    l->outstanding--;
    ml__meta m;
    int rc = status == MG_OK ? ml__meta_decode(value, value_len, &m) : status;
    if (rc != MG_OK) {
        ml__close_finish(l, rc);
    } else if (m.state == ML_LEDGER_CLOSED) {
        /* Closed by a recovery: fine if it ended where we did. */
        rc = m.last_entry_id == l->lac ? MG_OK : MG_EFENCED;
        ml__meta_free(&m);
        ml__close_finish(l, rc);
    } else if (m.state == ML_LEDGER_IN_RECOVERY) {
        ml__meta_free(&m);
        ml__close_finish(l, MG_EFENCED);
    } else if (++l->close_attempts > ML_MD_ATTEMPTS_MAX) {
        ml__meta_free(&m);
        ml__close_finish(l, MG_EBADVERSION);
    } else {
        ml__meta_free(&m);
        l->md_version = stat->version;
        ml__close_write(l);
    }
    ml__leave(l);
}

static void ml__close_written(int status, const md_stat *stat, void *arg)
{
    ml_ledger *l = arg;
    ml__enter(l);
    l->outstanding--;
    if (status == MG_OK) {
        l->md_version = stat->version;
        l->meta.state = ML_LEDGER_CLOSED;
        l->meta.last_entry_id = l->lac;
        l->meta.length = l->length;
        ml__close_finish(l, MG_OK);
    } else if (status == MG_EBADVERSION) {
        int rc = md_get(l->env->md, l->path, ml__close_reread, l);
        if (rc != MG_OK)
            ml__close_finish(l, rc);
        else
            l->outstanding++;
    } else {
        ml__close_finish(l, status);
    }
    ml__leave(l);
}

static void ml__close_progress(ml_ledger *l)
{
    if (!l->close_requested || l->close_started || l->ring_count > 0 || l->changing)
        return;
    l->close_started = true;
    if (l->error == MG_EFENCED) {
        ml__close_finish(l, MG_EFENCED);
        return;
    }
    ml__close_write(l);
}

int ml_ledger_close(ml_ledger *l, ml_done_cb cb, void *arg)
{
    if (l == NULL || cb == NULL)
        return MG_EINVAL;
    if (!l->writer || l->released || l->close_requested)
        return MG_ESTATE;
    l->close_requested = true;
    l->close_cb = cb;
    l->close_arg = arg;
    ml__kick(l, 0); /* progress from the loop, never inside this call */
    return MG_OK;
}

void ml_ledger_release(ml_ledger *l)
{
    if (l == NULL)
        return;
    MG_ASSERT(!l->writer); /* a writer handle is given up with ml_ledger_close */
    ml__mark_released(l);
    ml__maybe_free(l);
}

/* --- read ----------------------------------------------------------------------------------- */

typedef struct ml__read {
    ml_env *env;
    ml_ledger *l;
    int64_t next, last;
    uint32_t max_bytes;
    ml_read_cb cb;
    void *arg;
    int slot;
    int err;
    bool striped;
    bk_entry acc[ML_STRIPED_READ_ENTRIES_MAX];
    size_t acc_count;
    size_t acc_bytes;
} ml__read;

static void ml__read_done(int status, const bk_entry *entries, size_t count, void *arg);

/* Issues the read of op->next from slot op->slot onwards; returns MG_OK once one is in flight,
 * or the last error when every remaining slot refused synchronously. */
static int ml__read_issue(ml__read *op)
{
    ml_ledger *l = op->l;
    size_t k = ml__meta_ensemble_of(&l->meta, op->next);
    const ml__ensemble *ens = &l->meta.ensembles[k];
    int e = l->meta.ensemble_size;
    int64_t end = op->last;
    if (op->striped) {
        end = op->next;
    } else if (k + 1 < l->meta.ensemble_count &&
               l->meta.ensembles[k + 1].first_entry_id - 1 < end) {
        end = l->meta.ensembles[k + 1].first_entry_id - 1;
    }
    while (op->slot < l->meta.write_quorum) {
        const char *addr = ens->bookies[(op->next + op->slot) % e];
        int rc = bk_client_read_range(l->env->bk, addr, l->id, op->next, end,
                                      op->striped ? 0 : op->max_bytes, ml__read_done, op);
        if (rc == MG_OK) {
            l->outstanding++;
            return MG_OK;
        }
        op->err = rc;
        op->slot++;
    }
    return op->err != MG_OK ? op->err : MG_ENOTFOUND;
}

static void ml__read_deliver(ml__read *op, int status)
{
    if (status == MG_OK)
        op->cb(MG_OK, op->acc, op->acc_count, op->arg);
    else
        op->cb(status, NULL, 0, op->arg);
    for (size_t i = 0; i < op->acc_count; i++)
        mg_buf_unref(op->acc[i].buf);
    op->env->objects--;
    mg_free(op);
}

static void ml__read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    ml__read *op = arg;
    ml_ledger *l = op->l;
    ml__enter(l);
    l->outstanding--;
    bool got = status == MG_OK && count > 0 && entries[0].entry_id == op->next;
    if (got && !op->striped) {
        op->cb(MG_OK, entries, count, op->arg);
        op->env->objects--;
        mg_free(op);
        goto out;
    }
    if (got) {
        const bk_entry *en = &entries[0];
        if (op->acc_count > 0 && op->acc_bytes + en->len > op->max_bytes) {
            ml__read_deliver(op, MG_OK);
            goto out;
        }
        op->acc[op->acc_count] = *en;
        op->acc[op->acc_count].buf = mg_buf_ref(en->buf);
        op->acc_count++;
        op->acc_bytes += en->len;
        op->next++;
        op->slot = 0;
        op->err = MG_OK;
        if (op->next > op->last || op->acc_bytes >= op->max_bytes ||
            op->acc_count == ML_STRIPED_READ_ENTRIES_MAX) {
            ml__read_deliver(op, MG_OK);
            goto out;
        }
    } else {
        if (status != MG_OK && status != MG_ENOTFOUND)
            op->err = status;
        op->slot++;
    }
    int rc = ml__read_issue(op);
    if (rc != MG_OK)
        ml__read_deliver(op, op->acc_count > 0 ? MG_OK : rc);
out:
    ml__leave(l);
}

int ml_ledger_read(ml_ledger *l, int64_t first, int64_t last, uint32_t max_bytes, ml_read_cb cb,
                   void *arg)
{
    if (l == NULL || cb == NULL || first < 0 || last < first || last > l->lac)
        return MG_EINVAL;
    if (l->released)
        return MG_ESTATE;
    ml__read *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    op->env = l->env;
    op->l = l;
    op->next = first;
    op->last = last;
    op->max_bytes = max_bytes ? max_bytes : BK_RANGE_BYTES_MAX;
    op->cb = cb;
    op->arg = arg;
    op->striped = l->meta.ensemble_size > l->meta.write_quorum;
    int rc = ml__read_issue(op);
    if (rc != MG_OK) {
        mg_free(op);
        return rc;
    }
    l->env->objects++;
    return MG_OK;
}

/* --- create --------------------------------------------------------------------------------- */

typedef struct ml__create {
    ml_env *env;
    ml_ledger_cb cb;
    void *arg;
    int64_t id;
    char path[ML_PATH_BYTES];
    ml__meta meta;
} ml__create;

static void ml__create_finish(ml__create *op, int status, ml_ledger *l)
{
    ml__meta_free(&op->meta);
    op->env->objects--;
    ml_ledger_cb cb = op->cb;
    void *arg = op->arg;
    mg_free(op);
    cb(status, l, arg);
}

static void ml__create_done(int status, const char *path, void *arg)
{
    (void)path;
    ml__create *op = arg;
    if (status != MG_OK) {
        ml__create_finish(op, status, NULL);
        return;
    }
    ml_ledger *l = ml__ledger_new(op->env, op->id, &op->meta, 0, true);
    if (l == NULL) {
        ml__create_finish(op, MG_ENOMEM, NULL);
        return;
    }
    ml__create_finish(op, MG_OK, l);
}

static void ml__create_bookies(int status, const char *const *names, size_t count, void *arg)
{
    ml__create *op = arg;
    ml_env *env = op->env;
    if (status == MG_ENOTFOUND || (status == MG_OK && count < (size_t)env->ensemble_size)) {
        MG_WARN("cannot create a ledger: %zu live bookies, ensemble size %d",
                status == MG_OK ? count : (size_t)0, env->ensemble_size);
        ml__create_finish(op, MG_ENOTFOUND, NULL);
        return;
    }
    if (status != MG_OK) {
        ml__create_finish(op, status, NULL);
        return;
    }
    size_t *idx = mg_malloc(sizeof(*idx) * count);
    op->meta.ensembles = mg_calloc(1, sizeof(*op->meta.ensembles));
    if (idx == NULL || op->meta.ensembles == NULL) {
        mg_free(idx);
        ml__create_finish(op, MG_ENOMEM, NULL);
        return;
    }
    op->meta.ensemble_count = 1;
    op->meta.ensemble_size = env->ensemble_size;
    op->meta.write_quorum = env->write_quorum;
    op->meta.ack_quorum = env->ack_quorum;
    op->meta.state = ML_LEDGER_OPEN;
    op->meta.last_entry_id = -1;
    op->meta.ctime_ms = mg_clock_wall_ms();
    for (size_t i = 0; i < count; i++)
        idx[i] = i;
    int rc = MG_OK;
    for (int j = 0; j < env->ensemble_size; j++) {
        size_t left = count - (size_t)j;
        size_t k = (size_t)j + (size_t)(ml__rand(env) % left);
        size_t t = idx[j];
        idx[j] = idx[k];
        idx[k] = t;
        size_t n = strlen(names[idx[j]]);
        char *copy = n < BK_ADDR_BYTES_MAX ? mg_malloc(n + 1) : NULL;
        if (copy == NULL) {
            rc = n < BK_ADDR_BYTES_MAX ? MG_ENOMEM : MG_EINVAL;
            break;
        }
        memcpy(copy, names[idx[j]], n + 1);
        op->meta.ensembles[0].bookies[j] = copy;
    }
    mg_free(idx);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == MG_OK)
        rc = ml__meta_encode(&op->meta, &buf, &len);
    if (rc == MG_OK) {
        rc = md_create(env->md, op->path, buf, len, MD_CREATE_PARENTS, ml__create_done, op);
        mg_free(buf);
    }
    if (rc != MG_OK)
        ml__create_finish(op, rc, NULL);
}

static void ml__create_got_id(int status, int64_t id, void *arg)
{
    ml__create *op = arg;
    if (status != MG_OK) {
        ml__create_finish(op, status, NULL);
        return;
    }
    op->id = id;
    ml__ledger_path(id, op->path, sizeof(op->path));
    int rc = md_children(op->env->md, "/bookies", ml__create_bookies, op);
    if (rc != MG_OK)
        ml__create_finish(op, rc, NULL);
}

int ml_ledger_create(ml_env *env, ml_ledger_cb cb, void *arg)
{
    if (env == NULL || cb == NULL)
        return MG_EINVAL;
    ml__create *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    op->env = env;
    op->cb = cb;
    op->arg = arg;
    int rc = md_id_next(env->md, "ledgers", ml__create_got_id, op);
    if (rc != MG_OK) {
        mg_free(op);
        return rc;
    }
    env->objects++;
    return MG_OK;
}

/* --- open and recovery ---------------------------------------------------------------------- */

typedef struct ml__open {
    ml_env *env;
    int64_t id;
    bool recover;
    ml_ledger_cb cb;
    void *arg;
    char path[ML_PATH_BYTES];
    ml_ledger *l;
    int attempts;
    int set_attempts;
    bool counted;
    /* fence or LAC round */
    int expected, responses, oks;
    int64_t answers[ML_ENSEMBLE_SIZE_MAX];
    int last_err;
    /* scan */
    int64_t pos, upper, bytes;
    int slot, notfound, err;
} ml__open;

static void ml__open_start(ml__open *op);

static void ml__open_finish(ml__open *op, int status)
{
    ml_ledger *l = op->l;
    op->env->objects--;
    ml_ledger_cb cb = op->cb;
    void *arg = op->arg;
    mg_free(op);
    if (status != MG_OK) {
        if (l != NULL)
            ml__ledger_discard(l);
        cb(status, NULL, arg);
        return;
    }
    cb(MG_OK, l, arg);
}

static void ml__open_closed_reread(int status, const void *value, size_t value_len,
                                   const md_stat *stat, void *arg);

static void ml__open_closed(int status, const md_stat *stat, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    if (status == MG_OK) {
        l->md_version = stat->version;
        l->meta.state = ML_LEDGER_CLOSED;
        l->meta.last_entry_id = l->lac;
        l->meta.length = l->length;
        MG_INFO("ledger %lld recovered: last entry %lld, %lld bytes", (long long)l->id,
                (long long)l->lac, (long long)l->length);
        ml__open_finish(op, MG_OK);
        return;
    }
    if (status == MG_EBADVERSION) {
        int rc = md_get(op->env->md, op->path, ml__open_closed_reread, op);
        if (rc == MG_OK)
            return;
        status = rc;
    }
    ml__open_finish(op, status);
}

static void ml__open_write_closed(ml__open *op)
{
    ml_ledger *l = op->l;
    ml__meta m = l->meta;
    m.state = ML_LEDGER_CLOSED;
    m.last_entry_id = l->lac;
    m.length = l->length;
    uint8_t *buf;
    size_t len;
    int rc = ml__meta_encode(&m, &buf, &len);
    if (rc == MG_OK) {
        rc = md_set(op->env->md, op->path, buf, len, l->md_version, ml__open_closed, op);
        mg_free(buf);
    }
    if (rc != MG_OK)
        ml__open_finish(op, rc);
}

static void ml__open_closed_reread(int status, const void *value, size_t value_len,
                                   const md_stat *stat, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    ml__meta m;
    int rc = status == MG_OK ? ml__meta_decode(value, value_len, &m) : status;
    if (rc != MG_OK) {
        ml__open_finish(op, rc);
        return;
    }
    if (m.state == ML_LEDGER_CLOSED) {
        /* Another recovery closed it first: its result is the ledger's. */
        ml__meta_free(&l->meta);
        l->meta = m;
        l->md_version = stat->version;
        l->lac = m.last_entry_id;
        l->length = m.length;
        ml__open_finish(op, MG_OK);
        return;
    }
    ml__meta_free(&m);
    if (++op->set_attempts > ML_MD_ATTEMPTS_MAX) {
        ml__open_finish(op, MG_EBADVERSION);
        return;
    }
    l->md_version = stat->version;
    ml__open_write_closed(op);
}

static void ml__scan_next(ml__open *op);

static void ml__scan_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    const ml__meta *m = &l->meta;
    if (status == MG_OK && count > 0 && entries[0].entry_id == op->pos) {
        int64_t expect = op->pos;
        for (size_t i = 0; i < count && entries[i].entry_id == expect && expect <= op->upper;
             i++, expect++)
            op->bytes += (int64_t)entries[i].len;
        op->pos = expect;
        op->slot = 0;
        op->notfound = 0;
        op->err = MG_OK;
    } else {
        if (status == MG_OK || status == MG_ENOTFOUND)
            op->notfound++;
        else
            op->err = status;
        op->slot++;
        if (op->notfound >= m->write_quorum - m->ack_quorum + 1) {
            int64_t last_first = m->ensembles[m->ensemble_count - 1].first_entry_id;
            if (op->pos < last_first) {
                MG_ERROR("ledger %lld: entry %lld, acknowledged before an ensemble change, is "
                         "missing from its bookies",
                         (long long)l->id, (long long)op->pos);
                ml__open_finish(op, MG_EIO);
                return;
            }
            op->upper = op->pos - 1;
        } else if (op->slot >= m->write_quorum) {
            MG_WARN("ledger %lld: recovery cannot tell whether entry %lld exists: %s",
                    (long long)l->id, (long long)op->pos,
                    mg_strerror(op->err != MG_OK ? op->err : MG_EIO));
            ml__open_finish(op, op->err != MG_OK ? op->err : MG_EIO);
            return;
        }
    }
    ml__scan_next(op);
}

/* Reads forward from op->pos (see RECOVERY step 3). */
static void ml__scan_next(ml__open *op)
{
    ml_ledger *l = op->l;
    const ml__meta *m = &l->meta;
    while (op->pos <= op->upper) {
        size_t k = ml__meta_ensemble_of(m, op->pos);
        const ml__ensemble *ens = &m->ensembles[k];
        int64_t end = op->upper;
        if (m->ensemble_size > m->write_quorum)
            end = op->pos;
        else if (k + 1 < m->ensemble_count && m->ensembles[k + 1].first_entry_id - 1 < end)
            end = m->ensembles[k + 1].first_entry_id - 1;
        if (op->slot >= m->write_quorum) {
            ml__open_finish(op, op->err != MG_OK ? op->err : MG_EIO);
            return;
        }
        const char *addr = ens->bookies[(op->pos + op->slot) % m->ensemble_size];
        int rc = bk_client_read_range(op->env->bk, addr, l->id, op->pos, end, 0, ml__scan_done, op);
        if (rc == MG_OK)
            return;
        op->err = rc;
        op->slot++;
    }
    l->lac = op->upper;
    l->length = op->bytes;
    ml__open_write_closed(op);
}

static void ml__fence_done(int status, int64_t last_entry_id, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    if (status == MG_OK || status == MG_ENOTFOUND)
        op->answers[op->oks++] = status == MG_OK ? last_entry_id : -1;
    else
        op->last_err = status;
    if (++op->responses < op->expected)
        return;
    const ml__meta *m = &l->meta;
    int need = m->ensemble_size - m->ack_quorum + 1;
    if (op->oks < need) {
        MG_WARN("ledger %lld: recovery fenced %d bookies, %d needed", (long long)l->id, op->oks,
                need);
        ml__open_finish(op, op->last_err != MG_OK ? op->last_err : MG_ECONNECTION);
        return;
    }
    int64_t upper = m->ensembles[m->ensemble_count - 1].first_entry_id - 1;
    for (int i = 0; i < op->oks; i++) {
        if (op->answers[i] > upper)
            upper = op->answers[i];
    }
    op->pos = 0;
    op->upper = upper;
    op->bytes = 0;
    op->slot = 0;
    op->notfound = 0;
    op->err = MG_OK;
    ml__scan_next(op);
}

static void ml__open_marked(int status, const md_stat *stat, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    if (status == MG_EBADVERSION && ++op->attempts <= ML_RECOVERY_ATTEMPTS_MAX) {
        ml__open_start(op); /* the metadata moved: read it again */
        return;
    }
    if (status != MG_OK) {
        ml__open_finish(op, status);
        return;
    }
    l->md_version = stat->version;
    l->meta.state = ML_LEDGER_IN_RECOVERY;
    const ml__ensemble *last = &l->meta.ensembles[l->meta.ensemble_count - 1];
    op->expected = l->meta.ensemble_size;
    op->responses = 0;
    op->oks = 0;
    op->last_err = MG_OK;
    int sync_fail = 0;
    for (int j = 0; j < op->expected; j++) {
        int rc = bk_client_fence(op->env->bk, last->bookies[j], l->id, ml__fence_done, op);
        if (rc != MG_OK) {
            op->last_err = rc;
            sync_fail++;
        }
    }
    op->responses = sync_fail;
    if (sync_fail == op->expected) {
        op->responses = 0;
        op->expected = 0;
        ml__open_finish(op, op->last_err);
    }
}

static void ml__lac_done(int status, int64_t last_entry_id, void *arg)
{
    ml__open *op = arg;
    ml_ledger *l = op->l;
    if (status == MG_OK || status == MG_ENOTFOUND)
        op->answers[op->oks++] = status == MG_OK ? last_entry_id : -1;
    if (++op->responses < op->expected)
        return;
    /* The ack_quorum-th highest answer (see OPEN WITHOUT RECOVERY). */
    for (int i = 1; i < op->oks; i++) {
        for (int j = i; j > 0 && op->answers[j] > op->answers[j - 1]; j--) {
            int64_t t = op->answers[j];
            op->answers[j] = op->answers[j - 1];
            op->answers[j - 1] = t;
        }
    }
    int64_t lac = -1;
    if (op->oks >= l->meta.ack_quorum)
        lac = op->answers[l->meta.ack_quorum - 1];
    else if (op->oks > 0)
        lac = op->answers[op->oks - 1];
    int64_t floor = l->meta.ensembles[l->meta.ensemble_count - 1].first_entry_id - 1;
    l->lac = lac > floor ? lac : floor;
    l->length = 0;
    ml__open_finish(op, MG_OK);
}

static void ml__open_got(int status, const void *value, size_t value_len, const md_stat *stat,
                         void *arg)
{
    ml__open *op = arg;
    if (status != MG_OK) {
        ml__open_finish(op, status);
        return;
    }
    ml__meta m;
    int rc = ml__meta_decode(value, value_len, &m);
    if (rc != MG_OK) {
        ml__open_finish(op, rc);
        return;
    }
    if (op->l == NULL) {
        op->l = ml__ledger_new(op->env, op->id, &m, stat->version, false);
        if (op->l == NULL) {
            ml__meta_free(&m);
            ml__open_finish(op, MG_ENOMEM);
            return;
        }
    } else {
        ml__meta_free(&op->l->meta);
        op->l->meta = m;
        op->l->md_version = stat->version;
    }
    ml_ledger *l = op->l;
    if (l->meta.state == ML_LEDGER_CLOSED) {
        l->lac = l->meta.last_entry_id;
        l->length = l->meta.length;
        ml__open_finish(op, MG_OK);
        return;
    }
    const ml__ensemble *last = &l->meta.ensembles[l->meta.ensemble_count - 1];
    if (!op->recover) {
        op->expected = l->meta.ensemble_size;
        op->responses = 0;
        op->oks = 0;
        int sync_fail = 0;
        for (int j = 0; j < op->expected; j++) {
            if (bk_client_read_lac(op->env->bk, last->bookies[j], l->id, ml__lac_done, op) != MG_OK)
                sync_fail++;
        }
        op->responses = sync_fail;
        if (sync_fail == op->expected) {
            op->responses = 0;
            op->oks = 0;
            op->expected = 1;
            ml__lac_done(MG_ECONNECTION, -1, op);
        }
        return;
    }
    if (!op->counted) {
        op->counted = true;
        mg_counter_inc(op->env->m_recoveries);
        MG_INFO("ledger %lld: recovering (state %s)", (long long)l->id,
                l->meta.state == ML_LEDGER_OPEN ? "OPEN" : "IN_RECOVERY");
    }
    ml__meta mr = l->meta;
    mr.state = ML_LEDGER_IN_RECOVERY;
    uint8_t *buf;
    size_t len;
    rc = ml__meta_encode(&mr, &buf, &len);
    if (rc == MG_OK) {
        rc = md_set(op->env->md, op->path, buf, len, l->md_version, ml__open_marked, op);
        mg_free(buf);
    }
    if (rc != MG_OK)
        ml__open_finish(op, rc);
}

static void ml__open_start(ml__open *op)
{
    int rc = md_get(op->env->md, op->path, ml__open_got, op);
    if (rc != MG_OK)
        ml__open_finish(op, rc);
}

int ml_ledger_open(ml_env *env, int64_t ledger_id, bool recover, ml_ledger_cb cb, void *arg)
{
    if (env == NULL || cb == NULL || ledger_id < 0)
        return MG_EINVAL;
    ml__open *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    op->env = env;
    op->id = ledger_id;
    op->recover = recover;
    op->cb = cb;
    op->arg = arg;
    ml__ledger_path(ledger_id, op->path, sizeof(op->path));
    int rc = md_get(env->md, op->path, ml__open_got, op);
    if (rc != MG_OK) {
        mg_free(op);
        return rc;
    }
    env->objects++;
    return MG_OK;
}

/* --- delete --------------------------------------------------------------------------------- */

typedef struct ml__delete {
    ml_env *env;
    ml_done_cb cb;
    void *arg;
    int64_t id;
    char path[ML_PATH_BYTES];
    int pending;
} ml__delete;

static void ml__delete_finish(ml__delete *op, int status)
{
    op->env->objects--;
    ml_done_cb cb = op->cb;
    void *arg = op->arg;
    mg_free(op);
    cb(status, arg);
}

static void ml__delete_md_done(int status, void *arg)
{
    ml__delete_finish(arg, status);
}

static void ml__delete_metadata(ml__delete *op)
{
    int rc = md_delete(op->env->md, op->path, MD_VERSION_ANY, ml__delete_md_done, op);
    if (rc != MG_OK)
        ml__delete_finish(op, rc);
}

static void ml__delete_bookie_done(int status, void *arg)
{
    ml__delete *op = arg;
    if (status != MG_OK && status != MG_ENOTFOUND)
        MG_WARN("ledger %lld: a bookie could not delete it: %s", (long long)op->id,
                mg_strerror(status));
    if (--op->pending == 0)
        ml__delete_metadata(op);
}

static void ml__delete_got(int status, const void *value, size_t value_len, const md_stat *stat,
                           void *arg)
{
    (void)stat;
    ml__delete *op = arg;
    if (status != MG_OK) {
        ml__delete_finish(op, status);
        return;
    }
    ml__meta m;
    int rc = ml__meta_decode(value, value_len, &m);
    if (rc != MG_OK) {
        ml__delete_finish(op, rc);
        return;
    }
    /* Every distinct bookie of every ensemble; pending counts one extra until all are sent,
     * so that a fast answer cannot finish the operation early. */
    op->pending = 1;
    for (size_t i = 0; i < m.ensemble_count; i++) {
        for (int j = 0; j < m.ensemble_size; j++) {
            const char *addr = m.ensembles[i].bookies[j];
            bool seen = false;
            for (size_t pi = 0; pi <= i && !seen; pi++) {
                int lim = pi == i ? j : m.ensemble_size;
                for (int pj = 0; pj < lim && !seen; pj++)
                    seen = strcmp(m.ensembles[pi].bookies[pj], addr) == 0;
            }
            if (seen)
                continue;
            if (bk_client_delete(op->env->bk, addr, op->id, ml__delete_bookie_done, op) == MG_OK)
                op->pending++;
            else
                MG_WARN("ledger %lld: cannot ask %s to delete it", (long long)op->id, addr);
        }
    }
    ml__meta_free(&m);
    if (--op->pending == 0)
        ml__delete_metadata(op);
}

int ml_ledger_delete(ml_env *env, int64_t ledger_id, ml_done_cb cb, void *arg)
{
    if (env == NULL || cb == NULL || ledger_id < 0)
        return MG_EINVAL;
    ml__delete *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    op->env = env;
    op->cb = cb;
    op->arg = arg;
    op->id = ledger_id;
    ml__ledger_path(ledger_id, op->path, sizeof(op->path));
    int rc = md_get(env->md, op->path, ml__delete_got, op);
    if (rc != MG_OK) {
        mg_free(op);
        return rc;
    }
    env->objects++;
    return MG_OK;
}
