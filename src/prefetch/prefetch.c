/*
 * Tail cache, prefetch windows and the loop-turn slices of catch-up dispatch (the design and its
 * invariants are in prefetch.h). Notes on the implementation:
 *
 *  - Cached entries of a topic are found by position in an open-addressing table (linear
 *    probing, backward-shift deletion, no tombstones), and listed oldest first per budget in
 *    the env (the eviction order).
 *  - A claim is a half-open run of positions [claim_first, claim_end) walked with
 *    ml_next_position, so it crosses ledger boundaries like a reader does. claim_end may name a
 *    position past a ledger's end (the ledger rolled over since): it is compared, never read.
 *  - A read request (pf_req) is in at most one of: the env's ready queues (its first entry is
 *    cached: serve it from the idle phase), its topic's waiting list (its first entry is being
 *    fetched), or an on-demand ml_read. Every path ends in exactly one call of its callback.
 *  - A fetch (pf_fetch) is one range of one ledger, [next, last], read with ml_read; a short
 *    answer continues from where it stopped while some reader still claims the rest.
 */
#include "prefetch/prefetch.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "prefetch/limits.h"

#include <inttypes.h>
#include <string.h>

/* --- small helpers -----------------------------------------------------------------------------
 */

typedef struct pf_link {
    struct pf_link *prev, *next;
} pf_link;

#define PF_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static void link_init(pf_link *h)
{
    h->prev = h->next = h;
}
static bool link_empty(const pf_link *h)
{
    return h->next == h;
}
static void link_push(pf_link *h, pf_link *l)
{
    l->prev = h->prev;
    l->next = h;
    h->prev->next = l;
    h->prev = l;
}
static void link_remove(pf_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}
/* Moves every member of from to the empty list to, in order: a pass over to is then not
 * disturbed by members added to from meanwhile. */
static void link_take_all(pf_link *from, pf_link *to)
{
    link_init(to);
    if (link_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    link_init(from);
}

enum { PF_TAIL = 0, PF_FETCHED = 1 };
enum { PF_Q_TAIL = 0, PF_Q_CATCHUP = 1 };

typedef struct pf_entry {
    ml_entry e; /* e.buf referenced */
    pf_topic *t;
    pf_link lru;
    uint32_t expected; /* claims covering it */
    uint8_t kind;
    bool read; /* served at least once */
} pf_entry;

typedef struct pf_req {
    pf_link link;
    pf_topic *t;
    pf_reader *r; /* NULL: a pf_read */
    ml_position from;
    int max_entries;
    uint32_t max_bytes;
    ml_mread_cb cb;
    void *arg;
    uint64_t start_us;
    uint64_t retry_at_ms;
    uint32_t attempts; /* on-demand reads that failed */
    bool busy;
    bool waited; /* not served at once: counted as a wait */
} pf_req;

typedef struct pf_fetch {
    pf_link link;  /* t->fetches */
    pf_link rlink; /* env->retries while waiting for a retry */
    pf_topic *t;
    int64_t ledger_id;
    int64_t next, last; /* entries still to get */
    uint32_t reserved;
    uint64_t start_us;
    uint32_t attempts;
    bool retrying;
    uint64_t retry_at_ms;
} pf_fetch;

struct pf_topic {
    pf_env *env;
    ml_managed *ml;
    pf_entry **slots;
    size_t cap, count;
    pf_link readers;
    pf_link fetches;
    uint32_t fetch_count;
    pf_link waiting;
    pf_link link; /* env->topics */
    uint32_t refs;
    bool closed;
    double avg_entry_bytes;
};

struct pf_reader {
    pf_topic *t;
    mc_cursor *cursor;
    pf_link link;
    bool active;
    bool closing;
    uint32_t refs; /* 1 while open, + a callback running */
    bool claimed;
    ml_position claim_first, claim_end;
    uint64_t claim_entries;
    bool window; /* counted in env->windows */
    pf_req req;
    uint64_t last_read_ms;
    uint64_t rate_t0_ms, rate_bytes;
    double rate;
    uint64_t window_bytes;
    uint64_t hits, misses, waits;
};

struct pf_env {
    uv_loop_t *loop;
    pf_env_opts o;
    pf_link lru[2];
    uint64_t used[2];
    uint64_t count[2];
    uint64_t inflight;
    pf_link ready[2];
    pf_link topics;
    pf_link retries;
    pf_link req_retries; /* requests whose on-demand read failed, waiting to try again */
    uv_idle_t idle;
    bool idle_on;
    /* The catch-up duty cycle: in each PF_DUTY_WINDOW_US, at most duty_pct % of the loop's time
     * goes to handing catch-up entries to dispatch; past it catch-up waits (resume) for the next
     * window while tail reads go on. */
    uint32_t duty_pct;
    uint64_t duty_start_us, duty_used_us;
    uv_timer_t resume;
    bool throttled;
    uv_timer_t timer;
    int handles_open;
    bool destroying;
    uint32_t ticks;
    double latency_us;
    pf_stats s;
    /* metrics (NULL without a registry) */
    uint64_t period_hits, period_misses, period_evictions;
    pf_stats exported;
    mg_gauge *g_hits_rate, *g_misses_rate, *g_used, *g_evictions_period;
    mg_counter *c_hits, *c_misses, *c_evictions, *c_fetched, *c_wasted, *c_waits, *c_fetches,
        *c_failures, *c_ready, *c_waited;
    mg_gauge *g_tail, *g_tail_peak, *g_tail_max, *g_pf, *g_pf_peak, *g_pf_max, *g_inflight,
        *g_windows, *g_window_bytes;
    mg_histogram *h_wait_us, *h_read_bytes;
};

static ml_position next_pos(const pf_topic *t, ml_position p)
{
    return ml_next_position(t->ml, p);
}

/* The first position holding an entry at or after p (or the next to be written). */
static ml_position norm_pos(const pf_topic *t, ml_position p)
{
    return ml_next_position(t->ml, (ml_position){ p.ledger_id, p.entry_id - 1 });
}

static int pcmp(ml_position a, ml_position b)
{
    return ml_position_cmp(a, b);
}

/* --- the position table -------------------------------------------------------------------------
 */

static size_t pos_slot(ml_position p, size_t cap)
{
    uint64_t h = (uint64_t)p.ledger_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)p.entry_id;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return (size_t)h & (cap - 1);
}

static pf_entry *tbl_get(const pf_topic *t, ml_position p)
{
    if (t->cap == 0)
        return NULL;
    for (size_t i = pos_slot(p, t->cap);; i = (i + 1) & (t->cap - 1)) {
        pf_entry *pe = t->slots[i];
        if (pe == NULL)
            return NULL;
        if (pe->e.position.ledger_id == p.ledger_id && pe->e.position.entry_id == p.entry_id)
            return pe;
    }
}

static int tbl_put(pf_topic *t, pf_entry *pe)
{
    if ((t->count + 1) * 4 > t->cap * 3) {
        size_t ncap = t->cap == 0 ? 256 : t->cap * 2;
        pf_entry **ns = mg_calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return MG_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->slots[i] == NULL)
                continue;
            size_t j = pos_slot(t->slots[i]->e.position, ncap);
            while (ns[j] != NULL)
                j = (j + 1) & (ncap - 1);
            ns[j] = t->slots[i];
        }
        mg_free(t->slots);
        t->slots = ns;
        t->cap = ncap;
    }
    size_t i = pos_slot(pe->e.position, t->cap);
    while (t->slots[i] != NULL)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = pe;
    t->count++;
    return MG_OK;
}

static void tbl_del(pf_topic *t, const pf_entry *pe)
{
    size_t i = pos_slot(pe->e.position, t->cap);
    while (t->slots[i] != pe) {
        MG_ASSERT(t->slots[i] != NULL);
        i = (i + 1) & (t->cap - 1);
    }
    t->slots[i] = NULL;
    t->count--;
    for (size_t j = (i + 1) & (t->cap - 1); t->slots[j] != NULL; j = (j + 1) & (t->cap - 1)) {
        size_t home = pos_slot(t->slots[j]->e.position, t->cap);
        bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

/* --- budgets and entries ------------------------------------------------------------------------
 */

static void note_peaks(pf_env *env)
{
    if (env->used[PF_TAIL] > env->s.tail_bytes_peak)
        env->s.tail_bytes_peak = env->used[PF_TAIL];
    uint64_t pf = env->used[PF_FETCHED] + env->inflight;
    if (pf > env->s.prefetch_bytes_peak)
        env->s.prefetch_bytes_peak = pf;
}

static void entry_free(pf_topic *t, pf_entry *pe)
{
    pf_env *env = t->env;
    tbl_del(t, pe);
    link_remove(&pe->lru);
    env->used[pe->kind] -= pe->e.len;
    env->count[pe->kind]--;
    if (pe->kind == PF_FETCHED && !pe->read)
        env->s.wasted_bytes += pe->e.len;
    mg_buf_unref(pe->e.buf);
    mg_free(pe);
}

/* Stores e (a reference to its buffer is taken) as a cached entry of kind, expected by count
 * claims. The caller checked the budget. */
static pf_entry *entry_insert(pf_topic *t, const ml_entry *e, int kind, uint32_t count)
{
    pf_env *env = t->env;
    pf_entry *pe = mg_calloc(1, sizeof(*pe));
    if (pe == NULL)
        return NULL;
    pe->e = *e;
    pe->t = t;
    pe->kind = (uint8_t)kind;
    pe->expected = count;
    if (tbl_put(t, pe) != MG_OK) {
        mg_free(pe);
        return NULL;
    }
    mg_buf_ref(e->buf);
    link_push(&env->lru[kind], &pe->lru);
    env->used[kind] += e->len;
    env->count[kind]++;
    note_peaks(env);
    t->avg_entry_bytes =
        t->avg_entry_bytes <= 0 ? (double)e->len : t->avg_entry_bytes * 0.9 + (double)e->len * 0.1;
    return pe;
}

/* One expected read of pe is done (or given back): freed when none is left. */
static void entry_release(pf_topic *t, pf_entry *pe)
{
    if (pe->expected > 0)
        pe->expected--;
    if (pe->expected == 0)
        entry_free(t, pe);
}

/* --- claims -------------------------------------------------------------------------------------
 */

static bool claim_covers(const pf_reader *r, ml_position p)
{
    return r->claimed && pcmp(p, r->claim_first) >= 0 && pcmp(p, r->claim_end) < 0;
}

static void window_count(pf_reader *r, bool on)
{
    if (r->window == on)
        return;
    r->window = on;
    if (on)
        r->t->env->s.windows++;
    else
        r->t->env->s.windows--;
}

/* Gives back the claimed positions before bound (inclusive: up to and with it). */
static void claim_release_below(pf_reader *r, ml_position bound, bool inclusive)
{
    if (!r->claimed)
        return;
    pf_topic *t = r->t;
    ml_position p = r->claim_first;
    uint32_t guard = 0;
    while (pcmp(p, r->claim_end) < 0) {
        int c = pcmp(p, bound);
        if (c > 0 || (c == 0 && !inclusive))
            break;
        pf_entry *pe = tbl_get(t, p);
        if (pe != NULL)
            entry_release(t, pe);
        if (r->claim_entries > 0)
            r->claim_entries--;
        p = next_pos(t, p);
        MG_ASSERT(++guard <= PF_WALK_ENTRIES_MAX);
    }
    if (pcmp(p, r->claim_end) >= 0) {
        /* Everything claimed was passed: an empty claim anchored where reading goes on. */
        r->claim_first = r->claim_end;
        r->claim_entries = 0;
    } else {
        r->claim_first = p;
    }
}

/* Gives the whole claim back. */
static void claim_drop(pf_reader *r)
{
    if (!r->claimed)
        return;
    pf_topic *t = r->t;
    ml_position p = r->claim_first;
    uint32_t guard = 0;
    while (pcmp(p, r->claim_end) < 0) {
        pf_entry *pe = tbl_get(t, p);
        if (pe != NULL)
            entry_release(t, pe);
        p = next_pos(t, p);
        MG_ASSERT(++guard <= PF_WALK_ENTRIES_MAX);
    }
    r->claimed = false;
    r->claim_entries = 0;
    window_count(r, false);
}

/* --- requests ------------------------------------------------------------------------------------
 */

static void idle_cb(uv_idle_t *h);
static int req_try(pf_req *q);
static void window_fill(pf_reader *r);

static void reader_unref(pf_reader *r);

static void topic_unref(pf_topic *t)
{
    MG_ASSERT(t->refs > 0);
    if (--t->refs > 0)
        return;
    MG_ASSERT(t->closed);
    link_remove(&t->link);
    mg_free(t->slots);
    mg_free(t);
}

static void ready_push(pf_req *q, int queue)
{
    pf_env *env = q->t->env;
    link_push(&env->ready[queue], &q->link);
    if (!env->idle_on && !(queue == PF_Q_CATCHUP && env->throttled)) {
        uv_idle_start(&env->idle, idle_cb);
        env->idle_on = true;
    }
}

/* Ends a request: its callback, then the request's own clean-up. */
static void req_complete(pf_req *q, int status, const ml_entry *entries, size_t count)
{
    pf_topic *t = q->t;
    pf_env *env = t->env;
    pf_reader *r = q->r;
    if (q->waited) {
        uint64_t us = mg_clock_mono_us() - q->start_us;
        env->s.waits++;
        env->s.wait_us += us;
        if (env->h_wait_us != NULL)
            mg_histogram_observe(env->h_wait_us, us);
        if (r != NULL)
            r->waits++;
    }
    if (status == MG_OK) {
        if (q->waited)
            env->s.entries_waited += count;
        else
            env->s.entries_ready += count;
    }
    ml_mread_cb cb = q->cb;
    void *arg = q->arg;
    q->busy = false;
    if (r != NULL) {
        if (status == MG_OK && count > 0) {
            /* What was read stays claimed until the reader's next read: the broker may defer
             * some of it (a consumer without room) and read it again at once, from here. */
            uint64_t bytes = 0;
            for (size_t i = 0; i < count; i++)
                bytes += entries[i].len;
            uint64_t now = mg_clock_mono_ms();
            r->rate_bytes += bytes;
            if (now - r->rate_t0_ms >= PF_RATE_SPAN_MS) {
                double rate = (double)r->rate_bytes * 1000.0 / (double)(now - r->rate_t0_ms);
                r->rate = r->rate <= 0 ? rate : r->rate * 0.7 + rate * 0.3;
                r->rate_t0_ms = now;
                r->rate_bytes = 0;
            }
        }
        cb(status, entries, count, arg);
        if (!r->closing)
            window_fill(r);
        reader_unref(r); /* the reference the request held */
    } else {
        mg_free(q);
        cb(status, entries, count, arg);
        topic_unref(t);
    }
}

/* Serves a request whose first entry is cached; returns the bytes handed over (0: the entry was
 * dropped meanwhile, the request went back to req_try). */
static uint64_t req_serve(pf_req *q)
{
    pf_topic *t = q->t;
    pf_env *env = t->env;
    ml_position p = q->from;
    size_t cap = (size_t)q->max_entries;
    ml_entry stack_out[64];
    ml_entry *out = cap <= 64 ? stack_out : mg_malloc(cap * sizeof(*out));
    if (out == NULL) {
        req_complete(q, MG_ENOMEM, NULL, 0);
        return 0;
    }
    size_t n = 0;
    uint64_t bytes = 0;
    uint32_t guard = 0;
    while (n < cap && ++guard <= PF_WALK_ENTRIES_MAX) {
        pf_entry *pe = tbl_get(t, p);
        if (pe == NULL)
            break;
        if (n > 0 && bytes + pe->e.len > q->max_bytes)
            break;
        out[n] = pe->e;
        mg_buf_ref(pe->e.buf);
        pe->read = true;
        bytes += pe->e.len;
        n++;
        if (bytes >= q->max_bytes)
            break;
        p = next_pos(t, p);
    }
    if (n == 0) {
        if (out != stack_out)
            mg_free(out);
        ml_position last = ml_last_position(t->ml);
        if (!t->closed && (last.ledger_id < 0 || pcmp(norm_pos(t, q->from), last) > 0)) {
            req_complete(q, MG_OK, NULL, 0); /* still past the end: nothing to read yet */
            return 0;
        }
        int rc = req_try(q);
        if (rc != MG_OK)
            req_complete(q, rc, NULL, 0);
        return 0;
    }
    env->s.hits += n;
    if (q->r != NULL)
        q->r->hits += n;
    req_complete(q, MG_OK, out, n);
    for (size_t i = 0; i < n; i++)
        mg_buf_unref(out[i].buf);
    if (out != stack_out)
        mg_free(out);
    return bytes;
}

/* The duty cycle's window: short enough that a publish or a tail read never waits long for
 * the catch-up half of it. */
#define PF_DUTY_WINDOW_US 10000u

static void resume_cb(uv_timer_t *h)
{
    pf_env *env = h->data;
    env->throttled = false;
    if (!link_empty(&env->ready[PF_Q_CATCHUP]) && !env->idle_on) {
        uv_idle_start(&env->idle, idle_cb);
        env->idle_on = true;
    }
}

static void idle_cb(uv_idle_t *h)
{
    pf_env *env = h->data;
    /* Tail reads first, every one of them: each is small (what was added since the reader's last
     * read), and they are what producers' and tail consumers' latency is made of. */
    pf_link batch;
    link_take_all(&env->ready[PF_Q_TAIL], &batch);
    while (!link_empty(&batch)) {
        pf_req *q = PF_CONTAINER(batch.next, pf_req, link);
        link_remove(&q->link);
        req_serve(q);
    }
    /* Then catch-up reads, one slice per loop turn. */
    uint64_t slice = 0;
    while (!env->throttled && !link_empty(&env->ready[PF_Q_CATCHUP]) &&
           slice < env->o.slice_bytes) {
        uint64_t t0 = 0;
        if (env->duty_pct < 100) {
            t0 = mg_clock_mono_us();
            if (t0 - env->duty_start_us >= PF_DUTY_WINDOW_US) {
                env->duty_start_us = t0;
                env->duty_used_us = 0;
            }
            if (env->duty_used_us * 100 >= (uint64_t)env->duty_pct * PF_DUTY_WINDOW_US) {
                env->throttled = true;
                uint64_t left = env->duty_start_us + PF_DUTY_WINDOW_US - t0;
                uv_timer_start(&env->resume, resume_cb, left / 1000 + 1, 0);
                break;
            }
        }
        pf_req *q = PF_CONTAINER(env->ready[PF_Q_CATCHUP].next, pf_req, link);
        link_remove(&q->link);
        slice += req_serve(q);
        if (env->duty_pct < 100)
            env->duty_used_us += mg_clock_mono_us() - t0;
    }
    if (link_empty(&env->ready[PF_Q_TAIL]) &&
        (link_empty(&env->ready[PF_Q_CATCHUP]) || env->throttled)) {
        uv_idle_stop(&env->idle);
        env->idle_on = false;
    }
}

static void ondemand_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    pf_req *q = arg;
    pf_topic *t = q->t;
    /* MG_ENOTFOUND: a lost ledger (ml_ledger_lost), which no retry brings back: the reader is
     * told at once. */
    if (status != MG_OK && status != MG_ECLOSED && status != MG_ESTATE && status != MG_ENOTFOUND &&
        !t->closed && ++q->attempts < PF_READ_ATTEMPTS_MAX) {
        /* Every bookie of the write set failed this read: try again shortly rather than hand
         * the reader an error (it would only stall until its next wake-up). */
        MG_WARN(
            "prefetch %s: reading from %" PRId64 ":%" PRId64 " failed (%s); trying again in %u ms",
            ml_name(t->ml), q->from.ledger_id, q->from.entry_id, mg_strerror(status), PF_RETRY_MS);
        t->env->s.fetch_failures++;
        q->retry_at_ms = mg_clock_mono_ms() + PF_RETRY_MS;
        link_push(&t->env->req_retries, &q->link);
        return; /* the topic reference stays with the request */
    }
    t->env->s.misses += count;
    if (q->r != NULL)
        q->r->misses += count;
    req_complete(q, status, entries, count);
    topic_unref(t);
}

static int req_ondemand(pf_req *q)
{
    pf_topic *t = q->t;
    int rc = ml_read(t->ml, q->from, q->max_entries, q->max_bytes, ondemand_done, q);
    if (rc == MG_OK) {
        t->refs++;
        q->waited = true;
    }
    return rc;
}

static pf_fetch *fetch_covering(const pf_topic *t, ml_position p)
{
    for (pf_link *l = t->fetches.next; l != &t->fetches; l = l->next) {
        pf_fetch *f = PF_CONTAINER(l, pf_fetch, link);
        if (f->ledger_id == p.ledger_id && p.entry_id >= f->next && p.entry_id <= f->last)
            return f;
    }
    return NULL;
}

static int fetch_issue(pf_fetch *f);

/* Starts fetching [first, last] of ledger_id, reserving an estimate of its bytes. */
static int fetch_start(pf_topic *t, int64_t ledger_id, int64_t first, int64_t last)
{
    if (t->fetch_count >= PF_TOPIC_READS_MAX)
        return MG_EAGAIN;
    pf_fetch *f = mg_calloc(1, sizeof(*f));
    if (f == NULL)
        return MG_ENOMEM;
    f->t = t;
    f->ledger_id = ledger_id;
    f->next = first;
    f->last = last;
    link_init(&f->rlink);
    link_push(&t->fetches, &f->link);
    t->fetch_count++;
    t->refs++;
    int rc = fetch_issue(f);
    if (rc != MG_OK) {
        link_remove(&f->link);
        t->fetch_count--;
        t->refs--;
        mg_free(f);
    }
    return rc;
}

static double ledger_avg(const pf_topic *t, int64_t ledger_id, int64_t *entries)
{
    int64_t n = 0, bytes = 0;
    *entries = 0;
    if (ml_ledger_size(t->ml, ledger_id, &n, &bytes) == MG_OK && n > 0) {
        *entries = n;
        return (double)bytes / (double)n;
    }
    return t->avg_entry_bytes > 0 ? t->avg_entry_bytes : 1024.0;
}

static void fetch_done(int status, const ml_entry *entries, size_t count, void *arg);

/* Reserves room for [next, last] (at most one read's worth) and reads it. MG_EAGAIN when the
 * budget has no room. */
static int fetch_issue(pf_fetch *f)
{
    pf_topic *t = f->t;
    pf_env *env = t->env;
    int64_t n_entries;
    double avg = ledger_avg(t, f->ledger_id, &n_entries);
    uint64_t want = (uint64_t)((double)(f->last - f->next + 1) * avg * 1.125) + 4096;
    if (want > env->o.read_bytes + env->o.read_bytes / 4)
        want = env->o.read_bytes + env->o.read_bytes / 4;
    if (env->used[PF_FETCHED] + env->inflight + want > env->o.prefetch_bytes)
        return MG_EAGAIN;
    int64_t count = f->last - f->next + 1;
    if (count > PF_READ_ENTRIES_MAX)
        count = PF_READ_ENTRIES_MAX;
    int rc = ml_read(t->ml, (ml_position){ f->ledger_id, f->next }, (int)count, (uint32_t)want,
                     fetch_done, f);
    if (rc != MG_OK)
        return rc;
    f->reserved = (uint32_t)want;
    f->start_us = mg_clock_mono_us();
    env->inflight += want;
    env->s.fetches++;
    note_peaks(env);
    return MG_OK;
}

static uint32_t claims_covering(const pf_topic *t, ml_position p)
{
    uint32_t n = 0;
    for (pf_link *l = t->readers.next; l != &t->readers; l = l->next) {
        const pf_reader *r = PF_CONTAINER(l, pf_reader, link);
        if (claim_covers(r, p))
            n++;
    }
    return n;
}

static bool claimed_by_any(const pf_topic *t, ml_position p)
{
    return claims_covering(t, p) > 0;
}

/* Requests waiting for fetches of t look again. */
static void wake_waiting(pf_topic *t)
{
    pf_link list;
    link_take_all(&t->waiting, &list);
    while (!link_empty(&list)) {
        pf_req *q = PF_CONTAINER(list.next, pf_req, link);
        link_remove(&q->link);
        int rc = req_try(q);
        if (rc != MG_OK)
            req_complete(q, rc, NULL, 0);
    }
}

static void fetch_end(pf_fetch *f)
{
    pf_topic *t = f->t;
    link_remove(&f->link);
    link_remove(&f->rlink);
    t->fetch_count--;
    mg_free(f);
    if (!t->closed)
        wake_waiting(t);
    topic_unref(t);
}

static void fetch_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    pf_fetch *f = arg;
    pf_topic *t = f->t;
    pf_env *env = t->env;
    env->inflight -= f->reserved;
    f->reserved = 0;
    if (t->closed) {
        fetch_end(f);
        return;
    }
    if (status != MG_OK) {
        env->s.fetch_failures++;
        if (status == MG_ENOTFOUND) {
            /* A lost ledger (ml_ledger_lost): nothing to prefetch; a reader that gets there
             * reads on demand and is told. */
            fetch_end(f);
            return;
        }
        if (++f->attempts < PF_READ_ATTEMPTS_MAX) {
            MG_WARN("prefetch %s: reading %" PRId64 ":%" PRId64 "..%" PRId64
                    " failed (%s); trying again in %u ms",
                    ml_name(t->ml), f->ledger_id, f->next, f->last, mg_strerror(status),
                    PF_RETRY_MS);
            f->retrying = true;
            f->retry_at_ms = mg_clock_mono_ms() + PF_RETRY_MS;
            link_push(&env->retries, &f->rlink);
            return;
        }
        MG_WARN("prefetch %s: reading %" PRId64 ":%" PRId64 "..%" PRId64
                " failed %u times (%s); readers read on demand",
                ml_name(t->ml), f->ledger_id, f->next, f->last, f->attempts, mg_strerror(status));
        fetch_end(f);
        return;
    }
    uint64_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        const ml_entry *e = &entries[i];
        if (e->position.ledger_id != f->ledger_id || e->position.entry_id != f->next)
            break; /* not the entry expected next: the rest is read again */
        f->next++;
        bytes += e->len;
        if (tbl_get(t, e->position) != NULL)
            continue; /* cached already (a tail entry) */
        uint32_t n = claims_covering(t, e->position);
        if (n == 0) {
            env->s.wasted_bytes += e->len; /* every reader that wanted it went away */
            continue;
        }
        if (env->used[PF_FETCHED] + env->inflight + e->len > env->o.prefetch_bytes) {
            env->s.evictions++; /* no room: dropped, read again when it is asked for */
            continue;
        }
        entry_insert(t, e, PF_FETCHED, n);
    }
    env->s.fetched_bytes += bytes;
    if (env->h_read_bytes != NULL)
        mg_histogram_observe(env->h_read_bytes, bytes);
    uint64_t us = mg_clock_mono_us() - f->start_us;
    env->latency_us = env->latency_us <= 0 ? (double)us : env->latency_us * 0.8 + (double)us * 0.2;
    f->attempts = 0;
    if (count > 0 && f->next <= f->last &&
        claimed_by_any(t, (ml_position){ f->ledger_id, f->next }) && fetch_issue(f) == MG_OK) {
        wake_waiting(t);
        return;
    }
    fetch_end(f);
}

/* Claims and fetches ahead of r until its window holds its target. */
static void window_fill(pf_reader *r)
{
    pf_topic *t = r->t;
    pf_env *env = t->env;
    if (env->o.prefetch_off || !r->active || r->closing || !r->claimed || t->closed)
        return;
    ml_position last = ml_last_position(t->ml);
    if (last.ledger_id < 0)
        return;
    double lat_s = env->latency_us / 1e6;
    uint64_t target = r->window_bytes;
    uint64_t want = (uint64_t)(2.0 * r->rate * lat_s);
    if (want > target)
        target = want;
    if (target > env->o.window_bytes_max)
        target = env->o.window_bytes_max;
    r->window_bytes = target;
    uint64_t share = env->o.prefetch_bytes / (env->s.windows > 0 ? env->s.windows : 1);
    if (target > share)
        target = share;
    double avg = t->avg_entry_bytes > 0 ? t->avg_entry_bytes : 1024.0;
    for (uint32_t guard = 0; guard < PF_TOPIC_READS_MAX; guard++) {
        if ((double)r->claim_entries * avg >= (double)target)
            break;
        ml_position start = norm_pos(t, r->claim_end);
        if (pcmp(start, last) > 0) {
            window_count(r, false); /* at the tail: new entries are claimed as they come */
            break;
        }
        if (ml_ledger_lost(t->ml, start.ledger_id))
            break; /* nothing of it can be read: the reader reads on demand there and is told */
        int64_t entries;
        double lavg = ledger_avg(t, start.ledger_id, &entries);
        int64_t lastid = start.ledger_id == last.ledger_id ? last.entry_id : entries - 1;
        if (lastid < start.entry_id)
            break;
        int64_t n = (int64_t)((double)env->o.read_bytes / lavg);
        if (n < 1)
            n = 1;
        if (n > PF_READ_ENTRIES_MAX)
            n = PF_READ_ENTRIES_MAX;
        if (start.entry_id + n - 1 < lastid)
            lastid = start.entry_id + n - 1;
        /* Room for what is not cached yet? Else the window stays as it is (shrinks). */
        uint64_t est = (uint64_t)((double)(lastid - start.entry_id + 1) * lavg);
        if (env->used[PF_FETCHED] + env->inflight + est > env->o.prefetch_bytes ||
            t->fetch_count >= PF_TOPIC_READS_MAX)
            break;
        window_count(r, true);
        /* Walk the chunk: cached entries are counted for this claim, entries being fetched will
         * be counted when they land, runs of missing ones are fetched. */
        int64_t run_first = -1;
        bool stop = false;
        for (int64_t id = start.entry_id; id <= lastid + 1; id++) {
            ml_position p = { start.ledger_id, id };
            pf_entry *pe = id <= lastid ? tbl_get(t, p) : NULL;
            bool missing = id <= lastid && pe == NULL && fetch_covering(t, p) == NULL;
            if (!missing && run_first >= 0) {
                if (fetch_start(t, start.ledger_id, run_first, id - 1) != MG_OK) {
                    lastid = run_first - 1; /* claim what is cached or coming, no more */
                    stop = true;
                    break;
                }
                run_first = -1;
            }
            if (missing && run_first < 0)
                run_first = id;
            if (pe != NULL)
                pe->expected++;
        }
        if (lastid >= start.entry_id) {
            if (pcmp(start, r->claim_end) != 0 && r->claim_entries == 0)
                r->claim_first = start; /* an empty claim anchored before a ledger's end */
            r->claim_end = (ml_position){ start.ledger_id, lastid + 1 };
            r->claim_entries += (uint64_t)(lastid - start.entry_id + 1);
        }
        if (stop)
            break;
    }
}

static void claim_anchor(pf_reader *r, ml_position at)
{
    claim_drop(r);
    r->claimed = true;
    r->claim_first = r->claim_end = at;
    r->claim_entries = 0;
}

/* Tries to serve q: ready queue when its first entry is cached, waiting list when it is being
 * fetched, else a window starts there, else an on-demand read. Errors: ml_read's. */
static int req_try(pf_req *q)
{
    pf_topic *t = q->t;
    pf_env *env = t->env;
    pf_reader *r = q->r;
    if (t->closed)
        return req_ondemand(q);
    q->from = norm_pos(t, q->from);
    /* Positions of the claim before this read were read (or skipped as acknowledged). */
    if (r != NULL && r->claimed && pcmp(q->from, r->claim_first) > 0)
        claim_release_below(r, q->from, false);
    pf_entry *pe = tbl_get(t, q->from);
    if (pe != NULL) {
        ready_push(q, pe->kind == PF_TAIL ? PF_Q_TAIL : PF_Q_CATCHUP);
        return MG_OK;
    }
    ml_position last = ml_last_position(t->ml);
    if (last.ledger_id < 0 || pcmp(q->from, last) > 0) {
        /* Past the end: answered from the idle phase without a bookie read (an entry added
         * meanwhile is served from the tail cache then, not read back from a bookie). */
        ready_push(q, PF_Q_TAIL);
        return MG_OK;
    }
    if (r == NULL || env->o.prefetch_off || !r->active || r->closing)
        return req_ondemand(q);
    /* The claim starts at the read position: what lies before it was passed (acknowledged
     * entries the cursor skipped); a read before it means the cursor moved back. */
    if (r->claimed && pcmp(q->from, r->claim_first) < 0)
        claim_drop(r);
    if (!r->claimed || pcmp(q->from, r->claim_end) > 0)
        claim_anchor(r, q->from);
    if (fetch_covering(t, q->from) == NULL) {
        /* Claimed but neither cached nor coming (dropped for room, a failed fetch): the claim
         * restarts here. */
        if (claim_covers(r, q->from))
            claim_anchor(r, q->from);
        window_fill(r);
    }
    if (fetch_covering(t, q->from) != NULL) {
        if (!q->waited)
            r->window_bytes = r->window_bytes * 2 > env->o.window_bytes_max
                                  ? env->o.window_bytes_max
                                  : r->window_bytes * 2;
        q->waited = true;
        link_push(&t->waiting, &q->link);
        return MG_OK;
    }
    return req_ondemand(q); /* no room to fetch: read it for this reader alone */
}

/* --- readers
 * -------------------------------------------------------------------------------------- */

static int reader_source(void *source, ml_position from, int max_entries, uint32_t max_bytes,
                         ml_mread_cb cb, void *cb_arg)
{
    pf_reader *r = source;
    if (r->closing)
        return MG_ECLOSED;
    if (r->req.busy)
        return MG_EAGAIN;
    if (max_entries < 1 || cb == NULL)
        return MG_EINVAL;
    if (max_entries > PF_READ_ENTRIES_MAX)
        max_entries = PF_READ_ENTRIES_MAX;
    pf_req *q = &r->req;
    q->t = r->t;
    q->r = r;
    q->from = from;
    q->max_entries = max_entries;
    q->max_bytes = max_bytes ? max_bytes : UINT32_MAX;
    q->cb = cb;
    q->arg = cb_arg;
    q->start_us = mg_clock_mono_us();
    q->waited = false;
    q->attempts = 0;
    q->busy = true;
    r->refs++;
    r->last_read_ms = mg_clock_mono_ms();
    int rc = req_try(q);
    if (rc != MG_OK) {
        q->busy = false;
        r->refs--;
    }
    return rc;
}

static void reader_free(pf_reader *r)
{
    pf_topic *t = r->t;
    link_remove(&r->link);
    t->env->s.readers--;
    mg_free(r);
    topic_unref(t);
}

static void reader_unref(pf_reader *r)
{
    MG_ASSERT(r->refs > 0);
    if (--r->refs == 0)
        reader_free(r);
}

int pf_reader_open(pf_topic *t, mc_cursor *cursor, pf_reader **out)
{
    MG_ASSERT(!t->closed);
    pf_reader *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    r->t = t;
    r->cursor = cursor;
    r->refs = 1;
    r->window_bytes = t->env->o.window_bytes_min;
    r->rate_t0_ms = mg_clock_mono_ms();
    r->last_read_ms = r->rate_t0_ms;
    link_init(&r->req.link);
    link_push(&t->readers, &r->link);
    t->refs++;
    t->env->s.readers++;
    mc_cursor_set_source(cursor, reader_source, r);
    *out = r;
    return MG_OK;
}

void pf_reader_close(pf_reader *r)
{
    MG_ASSERT(!r->closing);
    r->closing = true;
    claim_drop(r);
    /* A read in flight keeps the reader (its reference) until it has called back; the cursor,
     * closed right after this, waits for that read and never reads again. */
    if (!r->req.busy)
        mc_cursor_set_source(r->cursor, NULL, NULL);
    reader_unref(r);
}

void pf_reader_set_active(pf_reader *r, bool active)
{
    if (r->active == active)
        return;
    r->active = active;
    if (!active)
        claim_drop(r);
}

void pf_reader_reset(pf_reader *r)
{
    claim_drop(r);
}

void pf_reader_stats_get(const pf_reader *r, pf_reader_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->active = r->active;
    out->claim_first = out->claim_last = (ml_position){ -1, -1 };
    if (r->claimed) {
        out->claim_first = r->claim_first;
        out->claim_last = r->claim_end; /* exclusive end, shown as such */
        ml_position last = ml_last_position(r->t->ml);
        out->at_tail = last.ledger_id >= 0 && pcmp(norm_pos(r->t, r->claim_end), last) > 0;
    }
    out->window_bytes = r->window_bytes;
    out->rate_bytes_per_s = r->rate;
    out->hits = r->hits;
    out->misses = r->misses;
    out->waits = r->waits;
}

int pf_read_entries(pf_reader *r, int max_entries, uint32_t max_bytes, mc_read_cb cb, void *arg)
{
    if (r->closing)
        return MG_ECLOSED;
    return mc_read_entries(r->cursor, max_entries, max_bytes, cb, arg);
}

int pf_read(pf_topic *t, ml_position from, int max_entries, uint32_t max_bytes, ml_mread_cb cb,
            void *arg)
{
    if (t->closed)
        return MG_ECLOSED;
    if (cb == NULL || max_entries < 1)
        return MG_EINVAL;
    pf_req *q = mg_calloc(1, sizeof(*q));
    if (q == NULL)
        return MG_ENOMEM;
    link_init(&q->link);
    q->t = t;
    q->from = from;
    q->max_entries = max_entries > PF_READ_ENTRIES_MAX ? PF_READ_ENTRIES_MAX : max_entries;
    q->max_bytes = max_bytes ? max_bytes : UINT32_MAX;
    q->cb = cb;
    q->arg = arg;
    q->start_us = mg_clock_mono_us();
    q->busy = true;
    t->refs++;
    int rc = req_try(q);
    if (rc != MG_OK) {
        t->refs--;
        mg_free(q);
    }
    return rc;
}

/* --- topics
 * --------------------------------------------------------------------------------------- */

static void on_added(void *arg, const ml_entry *e)
{
    pf_topic *t = arg;
    pf_env *env = t->env;
    if (t->closed)
        return;
    uint32_t count = 0;
    for (pf_link *l = t->readers.next; l != &t->readers; l = l->next) {
        pf_reader *r = PF_CONTAINER(l, pf_reader, link);
        if (!r->active || r->closing)
            continue;
        ml_position at = r->claimed ? r->claim_end : mc_read_position(r->cursor);
        if (pcmp(norm_pos(t, at), e->position) == 0)
            count++;
    }
    if (count == 0 || e->len > env->o.tail_cache_bytes)
        return; /* nobody at the tail expects it */
    while (env->used[PF_TAIL] + e->len > env->o.tail_cache_bytes) {
        pf_entry *old = PF_CONTAINER(env->lru[PF_TAIL].next, pf_entry, lru);
        env->s.evictions++;
        entry_free(old->t, old);
    }
    if (entry_insert(t, e, PF_TAIL, count) == NULL)
        return;
    for (pf_link *l = t->readers.next; l != &t->readers; l = l->next) {
        pf_reader *r = PF_CONTAINER(l, pf_reader, link);
        if (!r->active || r->closing)
            continue;
        ml_position at = r->claimed ? r->claim_end : mc_read_position(r->cursor);
        if (pcmp(norm_pos(t, at), e->position) != 0)
            continue;
        if (!r->claimed) {
            r->claimed = true;
            r->claim_first = e->position;
            r->claim_entries = 0;
        }
        r->claim_end = (ml_position){ e->position.ledger_id, e->position.entry_id + 1 };
        r->claim_entries++;
    }
}

int pf_topic_open(pf_env *env, ml_managed *ml, pf_topic **out)
{
    pf_topic *t = mg_calloc(1, sizeof(*t));
    if (t == NULL)
        return MG_ENOMEM;
    t->env = env;
    t->ml = ml;
    t->refs = 1;
    link_init(&t->readers);
    link_init(&t->fetches);
    link_init(&t->waiting);
    link_push(&env->topics, &t->link);
    ml_set_added_listener(ml, on_added, t);
    *out = t;
    return MG_OK;
}

void pf_topic_close(pf_topic *t)
{
    MG_ASSERT(!t->closed);
    MG_ASSERT(link_empty(&t->readers));
    t->closed = true;
    ml_set_added_listener(t->ml, NULL, NULL);
    for (size_t i = 0; i < t->cap; i++) {
        while (t->slots[i] != NULL)
            entry_free(t, t->slots[i]);
    }
    /* Fetches waiting for a retry end now; those reading end when their read calls back. */
    for (pf_link *l = t->fetches.next; l != &t->fetches;) {
        pf_fetch *f = PF_CONTAINER(l, pf_fetch, link);
        l = l->next;
        if (f->retrying)
            fetch_end(f);
    }
    topic_unref(t);
}

/* --- the env ---------------------------------------------------------------------------------- */

/* Every PF_RETRY_MS: failed fetches due for another try; every second: windows of readers that
 * stopped reading; every PF_STATS_PERIOD_MS: the rate metrics. */
static void export_metrics(pf_env *env, double period_s);

/* Retries the members of list whose retry time (retry_at_ms of the member) has come, in order.
 * They are first moved to a list of their own, so that the retries, which may change list, do
 * not disturb the pass over it. */
static void retry_due(pf_link *list, uint64_t now, uint64_t (*retry_at_ms)(pf_link *member),
                      void (*retry)(pf_link *member))
{
    pf_link due;
    link_init(&due);
    for (pf_link *l = list->next; l != list;) {
        pf_link *member = l;
        l = l->next;
        if (retry_at_ms(member) <= now) {
            link_remove(member);
            link_push(&due, member);
        }
    }
    while (!link_empty(&due)) {
        pf_link *member = due.next;
        link_remove(member);
        retry(member);
    }
}

static uint64_t fetch_retry_at_ms(pf_link *member)
{
    return PF_CONTAINER(member, pf_fetch, rlink)->retry_at_ms;
}

static void fetch_retry(pf_link *member)
{
    pf_fetch *f = PF_CONTAINER(member, pf_fetch, rlink);
    f->retrying = false;
    pf_topic *t = f->t;
    if (t->closed || !claimed_by_any(t, (ml_position){ f->ledger_id, f->next }) ||
        fetch_issue(f) != MG_OK)
        fetch_end(f); /* waiting readers read on demand */
}

static uint64_t req_retry_at_ms(pf_link *member)
{
    return PF_CONTAINER(member, pf_req, link)->retry_at_ms;
}

static void req_retry(pf_link *member)
{
    pf_req *q = PF_CONTAINER(member, pf_req, link);
    pf_topic *t = q->t;
    int rc = req_try(q);
    if (rc != MG_OK)
        req_complete(q, rc, NULL, 0);
    topic_unref(t); /* the failed read's reference */
}

static void release_idle(pf_env *env, uint64_t now)
{
    for (pf_link *tl = env->topics.next; tl != &env->topics; tl = tl->next) {
        pf_topic *t = PF_CONTAINER(tl, pf_topic, link);
        for (pf_link *l = t->readers.next; l != &t->readers; l = l->next) {
            pf_reader *r = PF_CONTAINER(l, pf_reader, link);
            if (r->claimed && r->claim_entries > 0 && !r->req.busy &&
                now - r->last_read_ms >= env->o.idle_release_ms)
                claim_drop(r);
        }
    }
}

static void timer_cb(uv_timer_t *h)
{
    pf_env *env = h->data;
    uint64_t now = mg_clock_mono_ms();
    if (!link_empty(&env->retries))
        retry_due(&env->retries, now, fetch_retry_at_ms, fetch_retry);
    if (!link_empty(&env->req_retries))
        retry_due(&env->req_retries, now, req_retry_at_ms, req_retry);
    env->ticks++;
    if (env->ticks % (1000 / PF_RETRY_MS) == 0)
        release_idle(env, now);
    export_metrics(env, 0);
    if (env->ticks % (PF_STATS_PERIOD_MS / PF_RETRY_MS) == 0)
        export_metrics(env, PF_STATS_PERIOD_MS / 1000.0);
}

static void set_gauge(mg_gauge *g, double v)
{
    if (g != NULL)
        mg_gauge_set(g, v);
}

static void add_counter(mg_counter *c, uint64_t now, uint64_t before)
{
    if (c != NULL && now > before)
        mg_counter_add(c, now - before);
}

/* period_s 0: the gauges and counters; else also the per-period rates. */
static void export_metrics(pf_env *env, double period_s)
{
    pf_stats s;
    pf_env_stats(env, &s);
    if (period_s > 0) {
        set_gauge(env->g_hits_rate, (double)(s.hits - env->period_hits) / period_s);
        set_gauge(env->g_misses_rate, (double)(s.misses - env->period_misses) / period_s);
        set_gauge(env->g_evictions_period, (double)(s.evictions - env->period_evictions));
        env->period_hits = s.hits;
        env->period_misses = s.misses;
        env->period_evictions = s.evictions;
        return;
    }
    set_gauge(env->g_used, (double)(s.tail_bytes + env->used[PF_FETCHED]));
    set_gauge(env->g_tail, (double)s.tail_bytes);
    set_gauge(env->g_tail_peak, (double)s.tail_bytes_peak);
    set_gauge(env->g_tail_max, (double)s.tail_bytes_max);
    set_gauge(env->g_pf, (double)s.prefetch_bytes);
    set_gauge(env->g_pf_peak, (double)s.prefetch_bytes_peak);
    set_gauge(env->g_pf_max, (double)s.prefetch_bytes_max);
    set_gauge(env->g_inflight, (double)s.inflight_bytes);
    set_gauge(env->g_windows, (double)s.windows);
    uint64_t window_bytes = 0;
    for (pf_link *tl = env->topics.next; tl != &env->topics; tl = tl->next) {
        pf_topic *t = PF_CONTAINER(tl, pf_topic, link);
        for (pf_link *l = t->readers.next; l != &t->readers; l = l->next) {
            pf_reader *r = PF_CONTAINER(l, pf_reader, link);
            if (r->window)
                window_bytes += r->window_bytes;
        }
    }
    set_gauge(env->g_window_bytes, (double)window_bytes);
    add_counter(env->c_hits, s.hits, env->exported.hits);
    add_counter(env->c_misses, s.misses, env->exported.misses);
    add_counter(env->c_evictions, s.evictions, env->exported.evictions);
    add_counter(env->c_fetched, s.fetched_bytes, env->exported.fetched_bytes);
    add_counter(env->c_wasted, s.wasted_bytes, env->exported.wasted_bytes);
    add_counter(env->c_waits, s.waits, env->exported.waits);
    add_counter(env->c_fetches, s.fetches, env->exported.fetches);
    add_counter(env->c_failures, s.fetch_failures, env->exported.fetch_failures);
    add_counter(env->c_ready, s.entries_ready, env->exported.entries_ready);
    add_counter(env->c_waited, s.entries_waited, env->exported.entries_waited);
    env->exported = s;
}

static void register_metrics(pf_env *env)
{
    mg_metrics *m = env->o.metrics;
    if (m == NULL)
        return;
    env->g_hits_rate = mg_metrics_unlabelled_gauge(
        m, "pulsar_ml_cache_hits_rate", "entries served from the broker's caches per second");
    env->g_misses_rate = mg_metrics_unlabelled_gauge(
        m, "pulsar_ml_cache_misses_rate", "entries read from bookies on demand per second");
    env->g_used = mg_metrics_unlabelled_gauge(
        m, "pulsar_ml_cache_used_size", "bytes held by the tail cache and prefetched entries");
    env->g_evictions_period = mg_metrics_unlabelled_gauge(
        m, "pulsar_ml_cache_evictions", "entries evicted for room in the last stats period");
    env->c_hits = mg_metrics_unlabelled_counter(m, "magnetar_cache_hits_total",
                                                "entries served from the caches");
    env->c_misses =
        mg_metrics_unlabelled_counter(m, "magnetar_cache_misses_total", "entries read on demand");
    env->c_evictions = mg_metrics_unlabelled_counter(m, "magnetar_cache_evictions_total",
                                                     "entries dropped for room");
    env->g_tail =
        mg_metrics_unlabelled_gauge(m, "magnetar_tail_cache_bytes", "bytes in the tail cache");
    env->g_tail_peak = mg_metrics_unlabelled_gauge(m, "magnetar_tail_cache_bytes_peak",
                                                   "the most bytes the tail cache ever held");
    env->g_tail_max = mg_metrics_unlabelled_gauge(m, "magnetar_tail_cache_bytes_max",
                                                  "the tail cache's budget (--tail-cache-mb)");
    env->g_pf = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_bytes",
                                            "prefetched bytes held plus bytes reserved by reads");
    env->g_pf_peak = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_bytes_peak",
                                                 "the most prefetch bytes ever held or reserved");
    env->g_pf_max = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_bytes_max",
                                                "the prefetch budget (--prefetch-mb)");
    env->g_inflight = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_inflight_bytes",
                                                  "bytes reserved by prefetch reads in flight");
    env->g_windows = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_windows",
                                                 "readers with a prefetch window");
    env->g_window_bytes = mg_metrics_unlabelled_gauge(m, "magnetar_prefetch_window_bytes",
                                                      "the windows' target sizes, summed");
    env->c_fetched = mg_metrics_unlabelled_counter(m, "magnetar_prefetch_fetched_bytes_total",
                                                   "bytes read ahead into windows");
    env->c_wasted = mg_metrics_unlabelled_counter(m, "magnetar_prefetch_wasted_bytes_total",
                                                  "bytes read ahead and dropped without a read");
    env->c_waits = mg_metrics_unlabelled_counter(m, "magnetar_dispatch_waits_total",
                                                 "reads that waited for a bookie");
    env->c_fetches = mg_metrics_unlabelled_counter(m, "magnetar_prefetch_reads_total",
                                                   "range reads issued by windows");
    env->c_failures = mg_metrics_unlabelled_counter(m, "magnetar_prefetch_read_failures_total",
                                                    "range reads of windows that failed");
    env->c_ready = mg_metrics_unlabelled_counter(
        m, "magnetar_dispatch_entries_ready_total",
        "entries handed to dispatch by reads served without waiting for a bookie");
    env->c_waited = mg_metrics_unlabelled_counter(
        m, "magnetar_dispatch_entries_waited_total",
        "entries handed to dispatch by reads that waited for a bookie");
    env->h_wait_us = mg_metrics_unlabelled_histogram(m, "magnetar_dispatch_wait_seconds",
                                                     "how long a read waited for a bookie", 1e-6);
    env->h_read_bytes = mg_metrics_unlabelled_histogram(m, "magnetar_prefetch_read_bytes",
                                                        "bytes per range read of a window", 1.0);
}

int pf_env_create(uv_loop_t *loop, const pf_env_opts *opts, pf_env **out)
{
    pf_env_opts o = opts != NULL ? *opts : (pf_env_opts){ 0 };
    if (o.tail_cache_bytes == 0)
        o.tail_cache_bytes = PF_TAIL_CACHE_BYTES_DEFAULT;
    if (o.prefetch_bytes == 0)
        o.prefetch_bytes = PF_PREFETCH_BYTES_DEFAULT;
    if (o.read_bytes == 0)
        o.read_bytes = PF_READ_BYTES_DEFAULT;
    if (o.window_bytes_min == 0)
        o.window_bytes_min = PF_WINDOW_BYTES_MIN_DEFAULT;
    if (o.window_bytes_max == 0)
        o.window_bytes_max = PF_WINDOW_BYTES_MAX_DEFAULT;
    if (o.slice_bytes == 0)
        o.slice_bytes = PF_SLICE_BYTES_DEFAULT;
    if (o.idle_release_ms == 0)
        o.idle_release_ms = PF_IDLE_RELEASE_MS;
    if (o.catchup_duty_pct == 0)
        o.catchup_duty_pct = PF_CATCHUP_DUTY_PCT_DEFAULT;
    if (o.catchup_duty_pct > 100)
        return MG_EINVAL;
    if (o.window_bytes_min > o.window_bytes_max || o.read_bytes > o.window_bytes_max ||
        (!o.prefetch_off && o.prefetch_bytes < 2ull * o.read_bytes))
        return MG_EINVAL;
    pf_env *env = mg_calloc(1, sizeof(*env));
    if (env == NULL)
        return MG_ENOMEM;
    env->loop = loop;
    env->o = o;
    for (int k = 0; k < 2; k++) {
        link_init(&env->lru[k]);
        link_init(&env->ready[k]);
    }
    link_init(&env->topics);
    link_init(&env->retries);
    link_init(&env->req_retries);
    env->s.tail_bytes_max = o.tail_cache_bytes;
    env->s.prefetch_bytes_max = o.prefetch_bytes;
    uv_idle_init(loop, &env->idle);
    env->idle.data = env;
    uv_timer_init(loop, &env->timer);
    env->timer.data = env;
    uv_timer_init(loop, &env->resume);
    env->resume.data = env;
    env->handles_open = 3;
    env->duty_pct = o.catchup_duty_pct;
    uv_timer_start(&env->timer, timer_cb, PF_RETRY_MS, PF_RETRY_MS);
    uv_unref((uv_handle_t *)&env->timer); /* never keeps a loop alive by itself */
    register_metrics(env);
    export_metrics(env, 0);
    *out = env;
    return MG_OK;
}

static void env_handle_closed(uv_handle_t *h)
{
    pf_env *env = h->data;
    if (--env->handles_open == 0)
        mg_free(env);
}

void pf_env_destroy(pf_env *env)
{
    if (env == NULL)
        return;
    MG_ASSERT(link_empty(&env->topics));
    MG_ASSERT(link_empty(&env->ready[PF_Q_TAIL]) && link_empty(&env->ready[PF_Q_CATCHUP]));
    env->destroying = true;
    uv_close((uv_handle_t *)&env->idle, env_handle_closed);
    uv_close((uv_handle_t *)&env->timer, env_handle_closed);
    uv_close((uv_handle_t *)&env->resume, env_handle_closed);
}

void pf_env_stats(const pf_env *env, pf_stats *out)
{
    *out = env->s;
    out->tail_bytes = env->used[PF_TAIL];
    out->prefetch_bytes = env->used[PF_FETCHED] + env->inflight;
    out->inflight_bytes = env->inflight;
    out->tail_entries = env->count[PF_TAIL];
    out->prefetch_entries = env->count[PF_FETCHED];
}

bool pf_env_prefetch_on(const pf_env *env)
{
    return !env->o.prefetch_off;
}
