/*
 * Managed ledgers: a topic's log as a list of bookie ledgers (see ledger.h for the API; Pulsar's
 * ManagedLedgerImpl is the model). The list lives in /managed-ledgers/<name> (ManagedLedgerInfo)
 * and every write of it is a compare-and-set on the version this owner read or wrote last: a
 * version conflict means another broker took the topic over (MG_EFENCED).
 *
 * STATES
 *
 *     ml_open: OPENING (read list, recover the last ledger, create a ledger, write list)
 *        |         \
 *        |          \ the list is marked terminated: no ledger created, the list written
 *        |           \ back as it is ----------------------------------------> TERMINATED
 *        v            limits reached / ledger failed            list written
 *     WRITING ---------------------------------------> ROLLING -------------> WRITING
 *        ^  \                                          |   (drain in-flight adds of the old
 *        |   \ ledger creation failed                  |    ledger, close it, create the next,
 *        |    +------------------> NO_LEDGER <---------+    write the list)
 *        |  next ml_add: ROLLING without an old ledger  |
 *        +----------------------------------------------+
 *
 *     WRITING, ROLLING, NO_LEDGER --ml_terminate, then the queue empty and no rollover
 *        running--> TERMINATING --list written--> TERMINATED (sticky: no current ledger,
 *                   (close the current ledger,     adds refused; reads, finds, retention
 *                    write the list: terminated)   and close work)
 *                        | list write failed (not fenced)
 *                        v
 *                    NO_LEDGER (adds still refused: ml_terminate again retries)
 *
 *     any state --MG_EFENCED (bookie or list CAS)--> FENCED (sticky: adds fail, reads work)
 *     ml_close: waits for the queue to drain, a rollover and a termination to finish, closes the
 *     current ledger, writes the list, waits for its reads and deletions, calls back, frees.
 *
 * ADDS AND ORDER
 *   Every ml_add becomes an op in one FIFO queue (bounded by the env's pending_adds_max). An op
 *   is WAITING until dispatched to the current ledger (INFLIGHT), then DONE; callbacks run from
 *   the head of the queue only, so they come in call order whatever ledger completes first.
 *   At its first dispatch an op gets its broker timestamp (never below the previous one: the
 *   clock may step back) and its index (messages dispatched before it + num_messages - 1) and
 *   its prefix [0x0e02][u32 size][BrokerEntryMetadata] is built once (pw_bem_encode, the
 *   pulsar module's codec; reads parse it back with pw_bem_parse); the entry stored is that
 *   prefix followed by the payload, which is handed on by reference, never copied (the copy
 *   was 8 % of the standalone's CPU samples at ~400 MiB/s of produce). When the
 *   current ledger fails with an error other than MG_EFENCED, its in-flight ops (a suffix of
 *   the queue: a ledger acknowledges in order) go back to WAITING with their bytes, the ledger
 *   is rolled over and they are written again to the next one in the same order, so indexes
 *   stay contiguous; after ML_ADD_ATTEMPTS_MAX ledgers the op and everything behind it fail and
 *   the index counter goes back to the last stored message. Adds issued during a rollover wait
 *   in the same queue.
 *
 * STORAGE REFUSING WRITES (a bookie's disk is full: adds answered MG_ENOSPC, or MG_EREADONLY)
 *   Another ledger would fail the same way, so the failure is not rolled over per add (that
 *   created a ledger per failed write, ids 1 -> 1,219 in 55 s). Instead:
 *     1. The first such failure starts a back-off of ML_STORAGE_BACKOFF_MS_MIN (doubling at each
 *        failed attempt up to ML_STORAGE_BACKOFF_MS_MAX). The rollover that follows closes the
 *        failed ledger but creates none: every waiting add fails at once with the bookie's
 *        error, and the state is NO_LEDGER.
 *     2. Until the back-off ends, ml_add refuses at once with that error (no op is queued).
 *     3. The first ml_add after it is one attempt: a ledger is created and adds are dispatched
 *        one at a time (`probing`) until one is acknowledged, which ends the back-off. If it
 *        fails, back to 1 with the doubled delay; the empty ledger of the failed attempt is
 *        dropped from the list (and deleted) by the next attempt's list write, so the list does
 *        not grow with them.
 *
 * MESSAGE COUNT ACROSS RESTARTS
 *   On open the index of the last stored entry is read back: the last entry of the last
 *   non-empty ledger (after recovery) is read and its BrokerEntryMetadata parsed; the count is
 *   its index + 1. When retention removed every non-empty ledger, the list property
 *   "magnetar.messages_closed" (the count at the end of the closed ledgers, written with every
 *   list update) is used; 0 for a new log.
 *
 * LIST UPDATES (one at a time: list_busy)
 *   open (recovered ledger closed, empty closed ledgers dropped, new ledger appended unless
 *   the list is marked terminated), rollover (old ledger closed with entries, size, close time;
 *   new ledger appended), retention (a prefix of ledgers removed), terminate (current ledger
 *   closed, dropped if empty; terminated = true with the last position), close (current ledger
 *   closed; dropped if empty). A list write waits for the running one; after each, a waiting
 *   rollover, termination, close or trim runs, in that order.
 *
 * TERMINATION (Pulsar's "terminate topic"; ml_terminate)
 *   The mark is ManagedLedgerInfo's own fields terminated (2), terminated_ledger_id (3) and
 *   terminated_entry_id (4): optional fields, so a list written before termination existed
 *   decodes as not terminated, and every list write carries them over once set. Steps:
 *     1. ml_terminate sets term_requested: from then on ml_add refuses with MG_ESTATE (sticky
 *        for this handle, whatever the outcome). Adds already queued are written as usual,
 *        through rollovers if they come.
 *     2. Once the queue is empty and no rollover runs: TERMINATING. A rollover that finds
 *        term_requested and no add waiting for its new ledger does not list it: the new ledger
 *        is closed and deleted (never in the list) and the state becomes NO_LEDGER, so that
 *        termination creates no ledger of its own.
 *     3. The current ledger (if any) is closed as a rollover closes it; the list is written
 *        (CAS) with it closed, or without it when it is empty (then it is deleted), and with
 *        terminated = true at the last position (ledger_id -1: an empty log).
 *     4. TERMINATED; every waiting ml_terminate gets MG_OK and the position. A version
 *        conflict is MG_EFENCED (FENCED); another error is passed on and leaves NO_LEDGER with
 *        adds still refused (ml_terminate again retries step 3).
 *   Opening a terminated list recovers its last ledger as usual but creates none: the list is
 *   written back (CAS, so a previous owner is fenced out of the list) and the state is
 *   TERMINATED. Retention never deletes the last ledger of the list, so the last position and
 *   the message count stay readable.
 *
 * RETENTION (ml_set_oldest_needed(pos); also re-checked after each rollover and by
 * ml_set_retention, which changes the rules below while the managed ledger is open)
 *   Ledgers are deleted oldest first, and the scan stops at the first one kept. Ledger L (never
 *   the last of the list) is deleted when all three hold:
 *     - it is entirely before pos (L < pos.ledger_id, or L == pos.ledger_id and L's entry count
 *       <= pos.entry_id);
 *     - it is outside retention, as Pulsar's ManagedLedgerImpl trims: with both limits 0,
 *       always (no retention); otherwise when it is outside either limit that is > 0:
 *       retention_time_ms > 0 and now - L's close time >= retention_time_ms, or
 *       retention_bytes > 0 and the consumed ledgers from L onwards (those entirely before
 *       pos) hold more than retention_bytes. A limit of -1 (forever, unlimited) never
 *       deletes, nor does a limit of 0 beside a non-zero other (Pulsar refuses such a pair in
 *       a namespace's policies; a broker default of 60 minutes and 0 MB means 60 minutes).
 *   So a consumed ledger is kept while it is within the time AND within the size retention.
 *   The list is written first (CAS); then each ledger is deleted from its bookies and metadata.
 *
 * READS
 *   A read clamps to what the list knows: a closed ledger's entry count, the current ledger's
 *   confirmed adds. The current ledger is read through its writer handle; closed ledgers through
 *   a small cache of read handles (ML_READ_HANDLES_MAX, least recently used evicted). Entries are
 *   handed out as views of the bookie response buffers (zero-copy; valid during the callback).
 *   Reads and finds start from a zero-delay timer, so their callbacks never run inside the call.
 *
 * LOST LEDGERS (a ledger of the list that its bookies or the metadata store no longer have:
 * deleted outside Magnetar, a bookie's disk lost; Pulsar's "non-recoverable" ledgers)
 *   A ledger is marked lost, in memory, when
 *     - opening recovers the last ledger of the list and its metadata is gone: it is kept in
 *       the list, closed with 0 entries (how many it had is unknown), so that the stats show
 *       it until a later open drops it as an empty ledger;
 *     - opening reads the last entry of the last non-empty ledger (for the message count) and
 *       the bookies answer MG_ENOTFOUND: the count falls back to the list property
 *       "magnetar.messages_closed", written with every list update (exact when the ledger was
 *       closed by a rollover or a clean close);
 *     - a read or a find meets MG_ENOTFOUND for an entry the list says a closed ledger has.
 *   The current ledger is never marked (its writer still adds to it). Each ledger is logged
 *   once (MG_ERROR) when it is marked, and counted in ml_lost_ledgers_total. From then on
 *   ml_read from a position in it calls back MG_ENOTFOUND at once, without bookie I/O (a read
 *   that reaches it after some entries returns those); finds leave it out. The managed
 *   ledger itself works as before: adds, rollovers, retention (which deletes a lost ledger
 *   like any other once it is consumed). Moving readers past it is the cursors' business
 *   (mc_cursor_opts.skip_lost_ledgers, or an operator's skip or reset).
 *
 * LIFETIME: `outstanding` counts metadata requests, ledger operations and reads of this managed
 * ledger; close completes when it is zero, then the timer handle is closed and its close
 * callback calls the user back and frees the memory.
 */
#include "ledger/ledger_int.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "ledger/limits.h"
#include "proto/ledger.pb-c.h"
#include "pulsar/wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ML_PROP_MESSAGES     "magnetar.messages_closed"
#define ML_NUM_BYTES         24
/* ml_terminate calls waiting for one termination: it is an admin operation, so a handful at
 * most for one topic; past it MG_EAGAIN. Local to this file: nothing else sizes by it. */
#define ML__TERM_WAITERS_MAX 16

int ml__managed_path(const char *name, char *buf, size_t buf_size)
{
    size_t n = strlen(name);
    if (n == 0 || n >= ML_NAME_BYTES_MAX || name[0] == '/')
        return MG_EINVAL;
    MG_ASSERT(buf_size >= ML__MANAGED_PATH_BYTES);
    snprintf(buf, buf_size, "%s%s", ML__MANAGED_PATH_PREFIX, name);
    return MG_OK;
}

int ml_position_cmp(ml_position a, ml_position b)
{
    if (a.ledger_id != b.ledger_id)
        return a.ledger_id < b.ledger_id ? -1 : 1;
    if (a.entry_id != b.entry_id)
        return a.entry_id < b.entry_id ? -1 : 1;
    return 0;
}

typedef struct ml__linfo {
    int64_t ledger_id;
    int64_t entries; /* closed: its entry count; current: confirmed adds */
    int64_t size;    /* bytes, likewise */
    int64_t timestamp_ms;
    bool closed;
    bool lost; /* its entries cannot be read (see LOST LEDGERS); in memory only */
} ml__linfo;

typedef enum ml__mstate {
    ML__M_OPENING = 0,
    ML__M_WRITING,
    ML__M_ROLLING,
    ML__M_NO_LEDGER,
    ML__M_FENCED,
    ML__M_TERMINATING,
    ML__M_TERMINATED,
} ml__mstate;

typedef enum ml__opstate {
    ML__OP_WAITING = 0,
    ML__OP_INFLIGHT,
    ML__OP_DONE,
} ml__opstate;

_Static_assert(PW_BEM_PREFIX_BYTES_MAX <= ML_ADD_PREFIX_BYTES_MAX,
               "the entry prefix fits a prefixed ledger add");

/* An add: from the env's free list (ml__op_new), back to it once its callback ran. It embeds
 * the bookie ledger's add request (ml__add), which a ledger holds while the op is INFLIGHT;
 * after that request's callback the op may be sent again, on the next ledger, with the same
 * embedded request. */
typedef struct ml__op {
    struct ml__op *next;
    ml_managed *ml;
    ml__add add; /* the bookie ledger's request, held by ml->current while INFLIGHT */
    uint64_t seq;
    mg_buf *payload;
    size_t off, len;
    int32_t num_messages;
    /* The stored entry is prefix + payload: the prefix is built at the first dispatch (its
     * index is fixed then), the payload is sent as it is, never copied. */
    uint8_t prefix[PW_BEM_PREFIX_BYTES_MAX];
    uint8_t prefix_len; /* 0 until built */
    int64_t ts;         /* the prefix's broker timestamp */
    int64_t index;
    int64_t ledger_id;
    ml__opstate state;
    int status;
    int last_error;
    int attempts;
    ml_position pos;
    uint64_t start_us;
    ml_madd_cb cb;
    void *arg;
} ml__op;

/* Something that needs a ledger handle (a read or find step). */
typedef struct ml__waiter {
    struct ml__waiter *next;
    int64_t ledger_id;
    void (*fn)(struct ml__waiter *w, ml_ledger *l, int status);
} ml__waiter;

typedef struct ml__handle {
    ml_managed *ml;
    int64_t ledger_id; /* -1: free */
    ml_ledger *l;      /* NULL while opening */
    ml__waiter *waiters;
    uint64_t used;
} ml__handle;

/* A read or find started from the timer. */
typedef struct ml__start {
    struct ml__start *next;
    void (*fn)(struct ml__start *s);
} ml__start;

typedef void (*ml__list_done_fn)(ml_managed *ml, int status);

/* An ml_terminate call waiting for the termination to finish. */
typedef struct ml__term_waiter {
    struct ml__term_waiter *next;
    ml_find_cb cb;
    void *arg;
} ml__term_waiter;

struct ml_managed {
    ml_env *env;
    char name[ML_NAME_BYTES_MAX];
    char path[ML__MANAGED_PATH_BYTES];
    ml_config cfg;
    ml__mstate state;
    int64_t md_version; /* -1: the node does not exist yet */

    ml__linfo *ledgers;
    size_t ledger_count, ledger_cap;
    char **prop_keys, **prop_values;
    size_t prop_count;
    bool has_terminated, terminated;
    bool has_term_ledger, has_term_entry;
    int64_t term_ledger, term_entry;

    ml_ledger *current; /* writer handle of the last ledger of the list, or NULL */
    uint64_t current_created_ms;
    int64_t cur_entries, cur_bytes; /* dispatched to the current ledger */
    ml__op *head, *tail, *next_dispatch;
    uint32_t op_count;
    uint32_t inflight;
    uint64_t op_seq;
    int64_t next_index;
    int64_t messages_total;
    int64_t closed_messages;
    int64_t last_ts;
    ml_position last_pos;
    bool warned_ledgers_max;
    int64_t lost_skipped_entries; /* entries cursors skipped past in lost ledgers */
    ml_added_fn added_fn;         /* ml_set_added_listener */
    void *added_arg;

    /* rollover */
    bool roll_closing;
    bool roll_closed;
    bool roll_creating;
    bool roll_created;
    int roll_create_status;
    ml_ledger *roll_new;
    bool roll_listing;
    uint64_t roll_started_ms; /* monotonic, for the log */
    int64_t roll_dropped; /* the empty ledger of a failed attempt left out by this roll, or -1 */

    /* storage refusing writes (see STORAGE REFUSING WRITES) */
    int storage_error;         /* MG_OK, or MG_ENOSPC / MG_EREADONLY: what the bookie answered */
    uint64_t backoff_ms;       /* the current delay; 0 when not backing off */
    uint64_t backoff_until_ms; /* monotonic: until then adds are refused at once */
    bool probing;              /* one add at a time until one is acknowledged */

    /* termination (see TERMINATION) */
    bool term_requested; /* ml_terminate was called: adds are refused from then on */
    bool term_closing;   /* the current ledger is being closed by the termination */
    bool term_listing;   /* the list marked terminated is being written */
    bool term_dropping;  /* that write leaves out the empty last ledger */
    ml__term_waiter *term_waiters, *term_waiters_tail;
    uint32_t term_waiter_count;

    /* list writes */
    bool list_busy;
    ml__list_done_fn list_done;
    bool trim_pending;
    ml_position oldest_needed;
    size_t trim_count;
    int64_t *dropped; /* ledgers removed from the list by open, deleted once it is written */
    size_t dropped_count;

    ml__handle handles[ML_READ_HANDLES_MAX];
    ml__waiter *handle_waiters;
    uint64_t handle_tick;

    ml__start *starts;
    uv_timer_t timer;
    uint32_t outstanding;

    /* open */
    ml_managed_cb open_cb;
    void *open_arg;
    int open_status;
    bool open_failed;

    /* close */
    bool closing, close_started, close_listing, finishing;
    int close_status;
    ml_done_cb close_cb;
    void *close_arg;
};

static void ml__close_progress(ml_managed *ml);
static void ml__roll_progress(ml_managed *ml);
static void ml__trim(ml_managed *ml);
static void ml__dispatch(ml_managed *ml);
static void ml__drain(ml_managed *ml);
static void ml__fenced(ml_managed *ml);
static void ml__term_progress(ml_managed *ml);

/* --- helpers -------------------------------------------------------------------------------- */

static ml__linfo *ml__last_linfo(ml_managed *ml)
{
    return ml->ledger_count ? &ml->ledgers[ml->ledger_count - 1] : NULL;
}

static int ml__linfo_append(ml_managed *ml, const ml__linfo *li)
{
    if (ml->ledger_count == ml->ledger_cap) {
        size_t cap = ml->ledger_cap ? ml->ledger_cap * 2 : 16;
        ml__linfo *n = mg_realloc(ml->ledgers, cap * sizeof(*n));
        if (n == NULL)
            return MG_ENOMEM;
        ml->ledgers = n;
        ml->ledger_cap = cap;
    }
    ml->ledgers[ml->ledger_count++] = *li;
    return MG_OK;
}

/* The index of the first ledger with id >= ledger_id, or ledger_count. */
static size_t ml__lower_ledger(const ml_managed *ml, int64_t ledger_id)
{
    size_t lo = 0, hi = ml->ledger_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ml->ledgers[mid].ledger_id < ledger_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Marks ledger_id of the list lost (see LOST LEDGERS); why says what was found. Returns
 * whether it was newly marked (false: not in the list, the current ledger, or marked before). */
static bool ml__mark_lost(ml_managed *ml, int64_t ledger_id, const char *why)
{
    size_t i = ml__lower_ledger(ml, ledger_id);
    if (i == ml->ledger_count || ml->ledgers[i].ledger_id != ledger_id || ml->ledgers[i].lost)
        return false;
    if (ml->current != NULL && ml_ledger_id(ml->current) == ledger_id)
        return false;
    ml__linfo *li = &ml->ledgers[i];
    li->lost = true;
    mg_counter_inc(ml->env->m_lost_ledgers);
    MG_ERROR("managed ledger %s: ledger %" PRId64 " (%" PRId64 " entries) is lost: %s; its "
             "entries cannot be read: readers stop there unless skipping lost ledgers is on "
             "(--auto-skip-non-recoverable-data) or an operator skips or resets past it",
             ml->name, ledger_id, li->entries, why);
    return true;
}

static ml_position ml__next_write_position(const ml_managed *ml)
{
    if (ml->ledger_count == 0)
        return (ml_position){ -1, -1 };
    const ml__linfo *li = &ml->ledgers[ml->ledger_count - 1];
    return (ml_position){ li->ledger_id, li->entries };
}

static char *ml__strdup(const char *s)
{
    size_t n = strlen(s);
    char *d = mg_malloc(n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

static void ml__timer_fired(uv_timer_t *t);

static void ml__kick(ml_managed *ml)
{
    if (!ml->finishing)
        uv_timer_start(&ml->timer, ml__timer_fired, 0, 0);
}

/* --- list codec and writes ------------------------------------------------------------------ */

int ml__info_unpack(const void *value, size_t len, void **out)
{
    Magnetar__Ledger__ManagedLedgerInfo *pb =
        magnetar__ledger__managed_ledger_info__unpack(NULL, len, value);
    if (pb == NULL)
        return MG_ECORRUPT;
    int rc = pb->n_ledgers > ML_LEDGERS_MAX ? MG_ECORRUPT : MG_OK;
    for (size_t i = 0; rc == MG_OK && i < pb->n_ledgers; i++) {
        int64_t id = pb->ledgers[i]->ledger_id;
        if (id < 0 || (i > 0 && id <= pb->ledgers[i - 1]->ledger_id))
            rc = MG_ECORRUPT;
    }
    if (rc != MG_OK) {
        magnetar__ledger__managed_ledger_info__free_unpacked(pb, NULL);
        return rc;
    }
    *out = pb;
    return MG_OK;
}

static int ml__list_decode(ml_managed *ml, const void *value, size_t len)
{
    void *unpacked;
    MG_TRY(ml__info_unpack(value, len, &unpacked));
    Magnetar__Ledger__ManagedLedgerInfo *pb = unpacked;
    int rc = MG_OK;
    for (size_t i = 0; rc == MG_OK && i < pb->n_ledgers; i++) {
        const Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo *p = pb->ledgers[i];
        ml__linfo li = { .ledger_id = p->ledger_id,
                         .entries = p->has_entries ? p->entries : 0,
                         .size = p->has_size ? p->size : 0,
                         .timestamp_ms = p->has_timestamp_ms ? p->timestamp_ms : 0,
                         .closed = p->has_entries };
        if (li.entries < 0 || li.size < 0 || (!li.closed && i + 1 != pb->n_ledgers))
            rc = MG_ECORRUPT;
        else
            rc = ml__linfo_append(ml, &li);
    }
    if (rc == MG_OK && pb->n_properties > 0) {
        ml->prop_keys = mg_calloc(pb->n_properties, sizeof(char *));
        ml->prop_values = mg_calloc(pb->n_properties, sizeof(char *));
        if (ml->prop_keys == NULL || ml->prop_values == NULL)
            rc = MG_ENOMEM;
        for (size_t i = 0; rc == MG_OK && i < pb->n_properties; i++) {
            ml->prop_keys[i] = ml__strdup(pb->properties[i]->key);
            ml->prop_values[i] = ml__strdup(pb->properties[i]->value);
            ml->prop_count = i + 1;
            if (ml->prop_keys[i] == NULL || ml->prop_values[i] == NULL)
                rc = MG_ENOMEM;
        }
    }
    ml->has_terminated = pb->has_terminated;
    ml->terminated = pb->terminated;
    ml->has_term_ledger = pb->has_terminated_ledger_id;
    ml->term_ledger = pb->terminated_ledger_id;
    ml->has_term_entry = pb->has_terminated_entry_id;
    ml->term_entry = pb->terminated_entry_id;
    magnetar__ledger__managed_ledger_info__free_unpacked(pb, NULL);
    return rc;
}

static int64_t ml__prop_messages(const ml_managed *ml)
{
    for (size_t i = 0; i < ml->prop_count; i++) {
        if (strcmp(ml->prop_keys[i], ML_PROP_MESSAGES) == 0)
            return strtoll(ml->prop_values[i], NULL, 10);
    }
    return 0;
}

static void ml__list_set_done(int status, const md_stat *stat, void *arg);
static void ml__list_create_done(int status, const char *path, void *arg);

/* Writes ledgers[skip, ledger_count - drop_last) plus append (if not NULL), marked terminated
 * at *terminate_at when that is not NULL (otherwise the termination fields as they are). done
 * runs with MG_OK, MG_EFENCED (the version moved: another owner) or another error. */
static int ml__list_write(ml_managed *ml, size_t skip, bool drop_last, const ml__linfo *append,
                          const ml_position *terminate_at, ml__list_done_fn done)
{
    MG_ASSERT(!ml->list_busy);
    size_t keep = ml->ledger_count - skip - (drop_last ? 1 : 0);
    size_t n = keep + (append ? 1 : 0);
    if (n > ML_LEDGERS_MAX)
        return MG_ELIMIT;
    Magnetar__Ledger__ManagedLedgerInfo pb = MAGNETAR__LEDGER__MANAGED_LEDGER_INFO__INIT;
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo *infos = mg_calloc(n ? n : 1, sizeof(*infos));
    Magnetar__Ledger__ManagedLedgerInfo__LedgerInfo **iptrs = mg_calloc(n ? n : 1, sizeof(*iptrs));
    size_t pn = ml->prop_count + 1;
    Magnetar__Ledger__ManagedLedgerInfo__PropertiesEntry *props = mg_calloc(pn, sizeof(*props));
    Magnetar__Ledger__ManagedLedgerInfo__PropertiesEntry **pptrs = mg_calloc(pn, sizeof(*pptrs));
    int rc = MG_ENOMEM;
    uint8_t *buf = NULL;
    if (infos == NULL || iptrs == NULL || props == NULL || pptrs == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const ml__linfo *li = i < keep ? &ml->ledgers[skip + i] : append;
        magnetar__ledger__managed_ledger_info__ledger_info__init(&infos[i]);
        infos[i].ledger_id = li->ledger_id;
        if (li->closed) {
            infos[i].has_entries = 1;
            infos[i].entries = li->entries;
            infos[i].has_size = 1;
            infos[i].size = li->size;
            infos[i].has_timestamp_ms = 1;
            infos[i].timestamp_ms = li->timestamp_ms;
        }
        iptrs[i] = &infos[i];
    }
    pb.n_ledgers = n;
    pb.ledgers = iptrs;
    char num[ML_NUM_BYTES];
    snprintf(num, sizeof(num), "%" PRId64, ml->closed_messages);
    size_t np = 0;
    for (size_t i = 0; i < ml->prop_count; i++) {
        if (strcmp(ml->prop_keys[i], ML_PROP_MESSAGES) == 0)
            continue;
        magnetar__ledger__managed_ledger_info__properties_entry__init(&props[np]);
        props[np].key = ml->prop_keys[i];
        props[np].value = ml->prop_values[i];
        pptrs[np] = &props[np];
        np++;
    }
    magnetar__ledger__managed_ledger_info__properties_entry__init(&props[np]);
    props[np].key = (char *)ML_PROP_MESSAGES;
    props[np].value = num;
    pptrs[np] = &props[np];
    np++;
    pb.n_properties = np;
    pb.properties = pptrs;
    pb.has_terminated = ml->has_terminated;
    pb.terminated = ml->terminated;
    pb.has_terminated_ledger_id = ml->has_term_ledger;
    pb.terminated_ledger_id = ml->term_ledger;
    pb.has_terminated_entry_id = ml->has_term_entry;
    pb.terminated_entry_id = ml->term_entry;
    if (terminate_at != NULL) {
        pb.has_terminated = pb.terminated = 1;
        pb.has_terminated_ledger_id = pb.has_terminated_entry_id = 1;
        pb.terminated_ledger_id = terminate_at->ledger_id;
        pb.terminated_entry_id = terminate_at->entry_id;
    }
    size_t len = magnetar__ledger__managed_ledger_info__get_packed_size(&pb);
    buf = mg_malloc(len ? len : 1);
    if (buf == NULL)
        goto out;
    magnetar__ledger__managed_ledger_info__pack(&pb, buf);
    if (ml->md_version < 0)
        rc =
            md_create(ml->env->md, ml->path, buf, len, MD_CREATE_PARENTS, ml__list_create_done, ml);
    else
        rc = md_set(ml->env->md, ml->path, buf, len, ml->md_version, ml__list_set_done, ml);
    if (rc == MG_OK) {
        ml->list_busy = true;
        ml->list_done = done;
        ml->outstanding++;
    }
out:
    mg_free(buf);
    mg_free(infos);
    mg_free(iptrs);
    mg_free(props);
    mg_free(pptrs);
    return rc;
}

/* After a list write: whoever waited for the list goes on. */
static void ml__list_idle(ml_managed *ml)
{
    if (ml->state == ML__M_ROLLING)
        ml__roll_progress(ml);
    ml__close_progress(ml);
    if (ml->trim_pending && !ml->list_busy)
        ml__trim(ml);
}

static void ml__list_finish(ml_managed *ml, int status)
{
    ml->outstanding--;
    ml->list_busy = false;
    ml__list_done_fn done = ml->list_done;
    ml->list_done = NULL;
    if (status == MG_EBADVERSION || status == MG_EEXIST) {
        MG_WARN("managed ledger %s: its ledger list changed under us: another owner took it",
                ml->name);
        status = MG_EFENCED;
    }
    done(ml, status);
    ml__list_idle(ml);
}

static void ml__list_set_done(int status, const md_stat *stat, void *arg)
{
    ml_managed *ml = arg;
    if (status == MG_OK)
        ml->md_version = stat->version;
    ml__list_finish(ml, status);
}

static void ml__list_create_done(int status, const char *path, void *arg)
{
    (void)path;
    ml_managed *ml = arg;
    if (status == MG_OK)
        ml->md_version = 0;
    ml__list_finish(ml, status);
}

/* --- ledgers given up ----------------------------------------------------------------------- */

static void ml__deleted(int status, void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    if (status != MG_OK && status != MG_ENOTFOUND)
        MG_WARN("managed ledger %s: deleting a ledger failed: %s", ml->name, mg_strerror(status));
    ml__close_progress(ml);
}

static void ml__delete_ledger(ml_managed *ml, int64_t ledger_id)
{
    int rc = ml_ledger_delete(ml->env, ledger_id, ml__deleted, ml);
    if (rc == MG_OK)
        ml->outstanding++;
    else
        MG_WARN("managed ledger %s: cannot delete ledger %" PRId64 ": %s", ml->name, ledger_id,
                mg_strerror(rc));
}

typedef struct ml__discard {
    ml_managed *ml;
    int64_t ledger_id;
} ml__discard;

static void ml__discard_closed(int status, void *arg)
{
    (void)status;
    ml__discard *d = arg;
    ml_managed *ml = d->ml;
    int64_t id = d->ledger_id;
    mg_free(d);
    ml->outstanding--;
    ml__delete_ledger(ml, id);
    ml__close_progress(ml);
}

/* Closes and deletes a ledger that never made it into the list. */
static void ml__discard_ledger(ml_managed *ml, ml_ledger *l)
{
    ml__discard *d = mg_malloc(sizeof(*d));
    int rc = MG_ENOMEM;
    if (d != NULL) {
        d->ml = ml;
        d->ledger_id = ml_ledger_id(l);
        rc = ml_ledger_close(l, ml__discard_closed, d);
    }
    if (rc != MG_OK) {
        mg_free(d);
        MG_ERROR("managed ledger %s: cannot close ledger %" PRId64 ": %s", ml->name,
                 ml_ledger_id(l), mg_strerror(rc));
        return;
    }
    ml->outstanding++;
}

/* --- read handles --------------------------------------------------------------------------- */

static void ml__with_ledger(ml_managed *ml, ml__waiter *w);

static void ml__handle_opened(int status, ml_ledger *l, void *arg)
{
    ml__handle *h = arg;
    ml_managed *ml = h->ml;
    ml->outstanding--;
    ml__waiter *ws = h->waiters;
    h->waiters = NULL;
    if (status == MG_OK) {
        h->l = l;
    } else {
        h->ledger_id = -1;
    }
    /* Reverse to call back in arrival order. */
    ml__waiter *rev = NULL;
    while (ws != NULL) {
        ml__waiter *n = ws->next;
        ws->next = rev;
        rev = ws;
        ws = n;
    }
    while (rev != NULL) {
        ml__waiter *n = rev->next;
        rev->fn(rev, l, status);
        rev = n;
    }
    /* A slot may be free now for those who found none. */
    ml__waiter *pending = ml->handle_waiters;
    ml->handle_waiters = NULL;
    while (pending != NULL) {
        ml__waiter *n = pending->next;
        ml__with_ledger(ml, pending);
        pending = n;
    }
    ml__close_progress(ml);
}

/* Runs w->fn with a handle of ledger w->ledger_id: the writer of the current ledger, a cached
 * read handle, or one opened now (w waits). Called from callbacks only. */
static void ml__with_ledger(ml_managed *ml, ml__waiter *w)
{
    if (ml->current != NULL && ml_ledger_id(ml->current) == w->ledger_id) {
        w->fn(w, ml->current, MG_OK);
        return;
    }
    ml__handle *slot = NULL, *victim = NULL;
    for (int i = 0; i < ML_READ_HANDLES_MAX; i++) {
        ml__handle *h = &ml->handles[i];
        if (h->ledger_id == w->ledger_id) {
            slot = h;
            break;
        }
        if (h->ledger_id < 0) {
            if (victim == NULL || victim->ledger_id >= 0)
                victim = h;
        } else if (h->l != NULL &&
                   (victim == NULL || (victim->ledger_id >= 0 && h->used < victim->used))) {
            victim = h;
        }
    }
    if (slot != NULL) {
        slot->used = ++ml->handle_tick;
        if (slot->l != NULL) {
            w->fn(w, slot->l, MG_OK);
        } else {
            w->next = slot->waiters;
            slot->waiters = w;
        }
        return;
    }
    if (victim == NULL) {
        w->next = ml->handle_waiters; /* every slot is opening: wait for one */
        ml->handle_waiters = w;
        return;
    }
    if (victim->l != NULL)
        ml_ledger_release(victim->l); /* reads in flight on it finish normally */
    victim->l = NULL;
    victim->ledger_id = w->ledger_id;
    victim->used = ++ml->handle_tick;
    victim->waiters = NULL;
    int rc = ml_ledger_open(ml->env, w->ledger_id, false, ml__handle_opened, victim);
    if (rc != MG_OK) {
        victim->ledger_id = -1;
        w->fn(w, NULL, rc);
        return;
    }
    ml->outstanding++;
    w->next = NULL;
    victim->waiters = w;
}

static void ml__handles_release(ml_managed *ml, int64_t below_ledger_id)
{
    for (int i = 0; i < ML_READ_HANDLES_MAX; i++) {
        ml__handle *h = &ml->handles[i];
        if (h->ledger_id >= 0 && h->l != NULL && h->ledger_id < below_ledger_id) {
            ml_ledger_release(h->l);
            h->l = NULL;
            h->ledger_id = -1;
        }
    }
}

/* --- adds ----------------------------------------------------------------------------------- */

/* Ledger age and the storage back-off read the monotonic clock now, not the loop's cached time
 * (uv_now): that lags behind a caller that blocked since the last loop turn. */

static bool ml__storage_refused(int status)
{
    return status == MG_ENOSPC || status == MG_EREADONLY;
}

static bool ml__backing_off(const ml_managed *ml)
{
    return ml->storage_error != MG_OK && mg_clock_mono_ms() < ml->backoff_until_ms;
}

/* An add was refused by the storage: start (or lengthen) the back-off, once per attempt. */
static void ml__backoff_start(ml_managed *ml, int status)
{
    if (ml__backing_off(ml))
        return; /* another add of the same attempt */
    uint64_t step = ml->backoff_ms == 0 ? ML_STORAGE_BACKOFF_MS_MIN : ml->backoff_ms * 2;
    ml->backoff_ms = step > ML_STORAGE_BACKOFF_MS_MAX ? ML_STORAGE_BACKOFF_MS_MAX : step;
    ml->backoff_until_ms = mg_clock_mono_ms() + ml->backoff_ms;
    ml->storage_error = status;
    ml->probing = false;
    MG_WARN("managed ledger %s: the bookie refuses writes (%s): adds fail at once for %" PRIu64
            " ms, then one attempt is made",
            ml->name, mg_strerror(status), ml->backoff_ms);
}

/* A zeroed op from the loop's free list, or NULL (MG_ENOMEM). */
static ml__op *ml__op_new(ml_env *env)
{
    if (env->op_pool.block_bytes == 0) /* first use: env.c does not know the op's size */
        mg_freelist_init(&env->op_pool, sizeof(ml__op), ML_ADD_OP_POOL_MAX);
    return mg_freelist_get(&env->op_pool);
}

static void ml__op_free(ml__op *op)
{
    mg_buf_unref(op->payload);
    mg_freelist_put(&op->ml->env->op_pool, op);
}

/* Calls back the DONE ops at the head of the queue, in order. */
static void ml__drain(ml_managed *ml)
{
    while (ml->head != NULL && ml->head->state == ML__OP_DONE) {
        ml__op *op = ml->head;
        ml->head = op->next;
        if (ml->head == NULL)
            ml->tail = NULL;
        ml->op_count--;
        if (op->status == MG_OK && ml->added_fn != NULL) {
            ml_entry e = { .position = op->pos,
                           .broker_timestamp_ms = op->ts,
                           .index = op->index,
                           .buf = op->payload,
                           .off = op->off,
                           .len = op->len,
                           .payload_off = op->off,
                           .payload_len = op->len };
            ml->added_fn(ml->added_arg, &e);
        }
        op->cb(op->status, op->status == MG_OK ? op->pos : (ml_position){ -1, -1 },
               op->status == MG_OK ? op->index : -1, op->arg);
        ml__op_free(op);
    }
    ml__close_progress(ml);
}

/* Fails op and every op behind it (none is in flight) with status. */
static void ml__fail_from(ml_managed *ml, ml__op *from, int status)
{
    for (ml__op *op = from; op != NULL; op = op->next) {
        MG_ASSERT(op->state != ML__OP_INFLIGHT);
        if (op->state == ML__OP_WAITING) {
            op->state = ML__OP_DONE;
            op->status = status;
        }
    }
    ml->next_dispatch = NULL;
    ml->next_index = ml->messages_total; /* indexes of failed ops are reused */
}

static bool ml__roll_due(const ml_managed *ml, bool after_add)
{
    if (ml->cur_entries == 0)
        return false;
    if (ml->ledger_count >= ML_LEDGERS_MAX)
        return false;
    if (after_add)
        return ml->cur_entries >= ml->cfg.entries_per_ledger_max ||
               ml->cur_bytes >= ml->cfg.ledger_bytes_max;
    return mg_clock_mono_ms() - ml->current_created_ms >= (uint64_t)ml->cfg.ledger_age_ms_max;
}

static void ml__start_roll(ml_managed *ml);
static void ml__roll_old_closed(int status, void *arg);

static void ml__op_added(int status, int64_t entry_id, void *arg);

/* The broker timestamp, index and prefix length of a stored entry data[0, len), as ml__op_build
 * wrote them: both fields present, neither negative. MG_ECORRUPT for anything else (no prefix,
 * a malformed one, a missing or negative field); MG_ENOMEM. */
static int ml__entry_bem(const uint8_t *data, size_t len, int64_t *timestamp_ms, int64_t *index,
                         size_t *prefix_len)
{
    pw_bem bem;
    int rc = pw_bem_parse(data, len, &bem);
    if (rc == MG_ENOMEM)
        return rc;
    if (rc != MG_OK || !bem.has_broker_timestamp || !bem.has_index ||
        bem.broker_timestamp_ms > (uint64_t)INT64_MAX || bem.index < 0)
        return MG_ECORRUPT;
    *timestamp_ms = (int64_t)bem.broker_timestamp_ms;
    *index = bem.index;
    *prefix_len = bem.len;
    return MG_OK;
}

static int ml__op_build(ml_managed *ml, ml__op *op)
{
    int64_t ts = mg_clock_wall_ms();
    if (ts < ml->last_ts)
        ts = ml->last_ts;
    ml->last_ts = ts;
    op->index = ml->next_index + op->num_messages - 1;
    op->ts = ts;
    size_t plen = pw_bem_encode(ts, op->index, op->prefix);
    MG_ASSERT(plen > 0 && plen <= PW_BEM_PREFIX_BYTES_MAX);
    op->prefix_len = (uint8_t)plen;
    ml->next_index += op->num_messages;
    return MG_OK;
}

static void ml__dispatch(ml_managed *ml)
{
    while (ml->state == ML__M_WRITING && ml->next_dispatch != NULL) {
        ml__op *op = ml->next_dispatch;
        if (ml->probing && ml->inflight > 0)
            return; /* one attempt at a time: its completion dispatches the next */
        if (ml__roll_due(ml, false)) {
            ml__start_roll(ml);
            return;
        }
        if (op->attempts >= ML_ADD_ATTEMPTS_MAX) {
            MG_WARN("managed ledger %s: an add failed on %d ledgers: %s", ml->name, op->attempts,
                    mg_strerror(op->last_error));
            ml__fail_from(ml, op, op->last_error);
            ml__drain(ml);
            return;
        }
        if (op->prefix_len == 0 && ml__op_build(ml, op) != MG_OK) {
            ml__fail_from(ml, op, MG_ENOMEM);
            ml__drain(ml);
            return;
        }
        int rc = ml__ledger_add(ml->current, &op->add, op->prefix, op->prefix_len, op->payload,
                                op->off, op->len, ml__op_added, op);
        if (rc == MG_EAGAIN)
            return; /* the next completion dispatches again */
        if (rc == MG_EFENCED) {
            /* Another writer recovered the ledger (an add completing before the fence got us
             * here): no rollover, the log is someone else's now. */
            ml__fenced(ml);
            return;
        }
        if (rc != MG_OK) {
            /* The ledger failed (its own adds are failing) or refuses: roll over. */
            op->attempts++;
            op->last_error = rc;
            ml__start_roll(ml);
            return;
        }
        op->state = ML__OP_INFLIGHT;
        op->ledger_id = ml_ledger_id(ml->current);
        ml->inflight++;
        ml->cur_entries++;
        ml->cur_bytes += (int64_t)(op->prefix_len + op->len);
        ml->next_dispatch = op->next;
        if (ml__roll_due(ml, true)) {
            ml__start_roll(ml);
            return;
        }
    }
}

static void ml__op_added(int status, int64_t entry_id, void *arg)
{
    ml__op *op = arg;
    ml_managed *ml = op->ml;
    MG_ASSERT(op->state == ML__OP_INFLIGHT);
    ml->inflight--;
    if (status == MG_OK) {
        op->state = ML__OP_DONE;
        op->status = MG_OK;
        op->pos = (ml_position){ op->ledger_id, entry_id };
        ml__linfo *li = ml__last_linfo(ml);
        MG_ASSERT(li != NULL && li->ledger_id == op->ledger_id);
        li->entries = entry_id + 1;
        li->size += (int64_t)(op->prefix_len + op->len);
        ml->last_pos = op->pos;
        ml->messages_total = op->index + 1;
        if (ml->storage_error != MG_OK) {
            MG_INFO("managed ledger %s: the bookie accepts writes again", ml->name);
            ml->storage_error = MG_OK;
            ml->backoff_ms = 0;
            ml->backoff_until_ms = 0;
            ml->probing = false;
        }
        if (ml->env->m_add_latency != NULL)
            mg_histogram_observe(ml->env->m_add_latency, mg_clock_mono_us() - op->start_us);
    } else if (status == MG_EFENCED || ml->state == ML__M_FENCED) {
        op->state = ML__OP_DONE;
        op->status = status;
        ml__fenced(ml);
    } else {
        /* Written again to the next ledger, in order (see ADDS AND ORDER), unless the storage
         * refuses writes (see STORAGE REFUSING WRITES). */
        op->state = ML__OP_WAITING;
        op->attempts++;
        op->last_error = status;
        if (ml__storage_refused(status))
            ml__backoff_start(ml, status);
        if (ml->next_dispatch == NULL || ml->next_dispatch->seq > op->seq)
            ml->next_dispatch = op;
        if (ml->state == ML__M_WRITING)
            ml__start_roll(ml);
    }
    if (ml->state == ML__M_ROLLING)
        ml__roll_progress(ml);
    else
        ml__dispatch(ml);
    ml__drain(ml);
}

int ml_add(ml_managed *ml, mg_buf *payload, size_t off, size_t len, int32_t num_messages,
           ml_madd_cb cb, void *arg)
{
    if (ml == NULL || payload == NULL || cb == NULL || num_messages < 1)
        return MG_EINVAL;
    if (off > mg_buf_len(payload) || len > mg_buf_len(payload) - off)
        return MG_EINVAL;
    if (len > BK_ENTRY_BYTES_MAX - PW_BEM_PREFIX_BYTES_MAX)
        return MG_ELIMIT;
    if (ml->closing || ml->state == ML__M_FENCED || ml->state == ML__M_OPENING ||
        ml->term_requested || ml_is_terminated(ml))
        return MG_ESTATE;
    if (ml->state == ML__M_NO_LEDGER && ml__backing_off(ml))
        return ml->storage_error; /* nothing queued: every earlier add failed already */
    if (ml->op_count >= ml->env->pending_adds_max)
        return MG_EAGAIN;
    ml__op *op = ml__op_new(ml->env);
    if (op == NULL)
        return MG_ENOMEM;
    op->ml = ml;
    op->seq = ++ml->op_seq;
    op->payload = mg_buf_ref(payload);
    op->off = off;
    op->len = len;
    op->num_messages = num_messages;
    op->index = -1;
    op->cb = cb;
    op->arg = arg;
    op->start_us = mg_clock_mono_us();
    if (ml->tail != NULL)
        ml->tail->next = op;
    else
        ml->head = op;
    ml->tail = op;
    ml->op_count++;
    if (ml->next_dispatch == NULL)
        ml->next_dispatch = op;
    if (ml->state == ML__M_NO_LEDGER)
        ml__start_roll(ml); /* try to get a ledger again */
    else
        ml__dispatch(ml);
    return MG_OK;
}

/* --- fencing -------------------------------------------------------------------------------- */

static void ml__fenced_ledger_closed(int status, void *arg)
{
    (void)status;
    ml_managed *ml = arg;
    ml->outstanding--;
    ml__close_progress(ml);
}

static void ml__fenced(ml_managed *ml)
{
    if (ml->state == ML__M_FENCED)
        return;
    MG_WARN("managed ledger %s: fenced, another broker owns it now", ml->name);
    bool rolling = ml->state == ML__M_ROLLING;
    bool term_closing = ml->term_closing;
    ml->state = ML__M_FENCED;
    for (ml__op *op = ml->next_dispatch; op != NULL; op = op->next) {
        if (op->state == ML__OP_WAITING) {
            op->state = ML__OP_DONE;
            op->status = MG_EFENCED;
        }
    }
    ml->next_dispatch = NULL;
    /* The writer handle goes (its adds fail with MG_EFENCED by themselves). During a rollover
     * the rollover's callbacks take care of the old ledger (closed through them, so that they
     * see it go) and of the new one. */
    if (ml->current == NULL || term_closing)
        return; /* a termination closing it: its callback lets the handle go */
    if (rolling) {
        if (!ml->roll_closing) {
            ml->roll_closing = true;
            if (ml_ledger_close(ml->current, ml__roll_old_closed, ml) == MG_OK)
                ml->outstanding++;
            else
                ml->roll_closed = true;
        }
        return;
    }
    if (ml_ledger_close(ml->current, ml__fenced_ledger_closed, ml) == MG_OK)
        ml->outstanding++;
    ml->current = NULL;
}

/* --- rollover ------------------------------------------------------------------------------- */

static void ml__roll_listed(ml_managed *ml, int status);
static void ml__fenced_ledger_closed(int status, void *arg);

/* The current ledger's close finished (a rollover's or a termination's): it is closed in the
 * list whatever the status. The list records what we know was acknowledged; after a failed
 * close the ledger's own metadata gets closed by the next recovery. */
static void ml__current_closed(ml_managed *ml, int status)
{
    ml->outstanding--;
    ml->current = NULL;
    ml__linfo *li = ml__last_linfo(ml);
    li->closed = true;
    li->timestamp_ms = mg_clock_wall_ms();
    if (status == MG_EFENCED)
        ml__fenced(ml);
    else if (status != MG_OK)
        MG_WARN("managed ledger %s: closing ledger %" PRId64 " failed: %s", ml->name, li->ledger_id,
                mg_strerror(status));
}

static void ml__roll_old_closed(int status, void *arg)
{
    ml_managed *ml = arg;
    ml->roll_closed = true;
    ml__current_closed(ml, status);
    ml__roll_progress(ml);
    ml__drain(ml);
}

static void ml__roll_new_created(int status, ml_ledger *l, void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    ml->roll_created = true;
    ml->roll_create_status = status;
    ml->roll_new = l;
    ml__roll_progress(ml);
    ml__drain(ml);
}

/* Ends a rollover that produced no new current ledger. */
static void ml__roll_abort(ml_managed *ml, int status)
{
    if (ml->roll_new != NULL) {
        ml__discard_ledger(ml, ml->roll_new);
        ml->roll_new = NULL;
    }
    ml->roll_closing = ml->roll_closed = ml->roll_creating = ml->roll_created = false;
    ml->roll_listing = false;
    if (ml->state == ML__M_FENCED)
        return;
    ml->state = ML__M_NO_LEDGER;
    MG_WARN("managed ledger %s: no ledger to write to: %s", ml->name, mg_strerror(status));
    if (ml->next_dispatch != NULL)
        ml__fail_from(ml, ml->next_dispatch, status);
}

static void ml__roll_progress(ml_managed *ml)
{
    if (ml->state == ML__M_FENCED) {
        /* Let the callbacks in flight land, then drop what the rollover made. */
        if ((ml->roll_closing && !ml->roll_closed) || (ml->roll_creating && !ml->roll_created) ||
            ml->roll_listing)
            return;
        if (ml->roll_closing || ml->roll_creating)
            ml__roll_abort(ml, MG_EFENCED);
        return;
    }
    if (ml->state != ML__M_ROLLING)
        return;
    /* 1. the old ledger: once its in-flight adds are answered, close it */
    if (ml->current != NULL && !ml->roll_closing) {
        if (ml->inflight > 0)
            return;
        ml->roll_closing = true;
        int rc = ml_ledger_close(ml->current, ml__roll_old_closed, ml);
        if (rc != MG_OK) {
            /* Cannot happen for a live writer handle; treat the ledger as closed. */
            MG_ERROR("managed ledger %s: cannot close ledger: %s", ml->name, mg_strerror(rc));
            ml->roll_closed = true;
        } else {
            ml->outstanding++;
        }
    }
    if (ml->current == NULL && !ml->roll_closing) {
        ml->roll_closing = true;
        ml->roll_closed = true;
    }
    if (!ml->roll_closed || !ml->roll_created || ml->roll_listing)
        return;
    /* 2. both done: the list */
    if (ml->term_requested && ml->next_dispatch == NULL) {
        /* Terminating, and no add waits for the new ledger (none can come): it is not listed
         * but closed and deleted, and the termination goes on without a ledger. */
        if (ml->roll_new != NULL) {
            ml__discard_ledger(ml, ml->roll_new);
            ml->roll_new = NULL;
        }
        ml->roll_closing = ml->roll_closed = ml->roll_creating = ml->roll_created = false;
        ml->state = ML__M_NO_LEDGER;
        ml->trim_pending = true; /* retention may apply to the ledger just closed */
        ml__close_progress(ml);
        return;
    }
    if (ml->roll_create_status != MG_OK) {
        ml__roll_abort(ml, ml->roll_create_status);
        ml__close_progress(ml);
        return;
    }
    if (ml->list_busy)
        return; /* ml__list_idle brings us back */
    ml->closed_messages = ml->messages_total;
    ml__linfo nl = { .ledger_id = ml_ledger_id(ml->roll_new) };
    /* An attempt after a storage failure: the empty ledger of the previous failed attempt is
     * left out of the list (and deleted once it is written), so attempts do not pile up. */
    const ml__linfo *last = ml__last_linfo(ml);
    bool drop = ml->storage_error != MG_OK && last != NULL && last->closed && last->entries == 0;
    ml->roll_dropped = drop ? last->ledger_id : -1;
    int rc = ml__list_write(ml, 0, drop, &nl, NULL, ml__roll_listed);
    if (rc != MG_OK) {
        ml__roll_abort(ml, rc);
        ml__close_progress(ml);
        return;
    }
    ml->roll_listing = true;
}

static void ml__roll_listed(ml_managed *ml, int status)
{
    ml->roll_listing = false;
    if (status == MG_OK && ml->roll_dropped >= 0) {
        ml__linfo *last = ml__last_linfo(ml);
        MG_ASSERT(last != NULL && last->ledger_id == ml->roll_dropped);
        ml->ledger_count--;
        ml__delete_ledger(ml, ml->roll_dropped);
    }
    ml->roll_dropped = -1;
    if (status == MG_OK) {
        ml__linfo nl = { .ledger_id = ml_ledger_id(ml->roll_new) };
        status = ml__linfo_append(ml, &nl);
    }
    if (status == MG_OK && ml->state == ML__M_FENCED) {
        /* Fenced while the list was being written: the new ledger is in the list, so it is
         * only closed (empty; the next owner drops it from the list and deletes it). */
        if (ml_ledger_close(ml->roll_new, ml__fenced_ledger_closed, ml) == MG_OK)
            ml->outstanding++;
        ml->roll_new = NULL;
        ml->roll_closing = ml->roll_closed = ml->roll_creating = ml->roll_created = false;
        ml__drain(ml);
        return;
    }
    if (status == MG_EFENCED || ml->state == ML__M_FENCED) {
        ml__fenced(ml);
        ml__roll_abort(ml, MG_EFENCED);
        ml__drain(ml);
        return;
    }
    if (status != MG_OK) {
        ml__roll_abort(ml, status);
        ml__drain(ml);
        return;
    }
    ml->current = ml->roll_new;
    ml->roll_new = NULL;
    ml->roll_closing = ml->roll_closed = ml->roll_creating = ml->roll_created = false;
    ml->current_created_ms = mg_clock_mono_ms();
    ml->cur_entries = 0;
    ml->cur_bytes = 0;
    ml->state = ML__M_WRITING;
    mg_counter_inc(ml->env->m_rollovers);
    MG_DEBUG("managed ledger %s: rolled over to ledger %" PRId64 " in %" PRIu64 " ms", ml->name,
             ml_ledger_id(ml->current), mg_clock_mono_ms() - ml->roll_started_ms);
    ml->trim_pending = true; /* retention may apply to the ledger just closed */
    ml__dispatch(ml);
    ml__drain(ml);
}

static void ml__start_roll(ml_managed *ml)
{
    if (ml->state != ML__M_WRITING && ml->state != ML__M_NO_LEDGER)
        return;
    ml->state = ML__M_ROLLING;
    ml->roll_started_ms = mg_clock_mono_ms();
    ml->roll_closing = ml->roll_closed = false;
    ml->roll_created = false;
    ml->roll_creating = true;
    ml->roll_new = NULL;
    ml->roll_dropped = -1;
    if (ml__backing_off(ml)) {
        /* The bookies refuse writes: close the failed ledger, create none; the waiting adds
         * fail with the storage's error (STORAGE REFUSING WRITES). */
        ml->roll_created = true;
        ml->roll_create_status = ml->storage_error;
        ml__roll_progress(ml);
        return;
    }
    if (ml->storage_error != MG_OK)
        ml->probing = true; /* the back-off is over: this is one attempt */
    int rc = ml_ledger_create(ml->env, ml__roll_new_created, ml);
    if (rc != MG_OK) {
        ml->roll_created = true;
        ml->roll_create_status = rc;
    } else {
        ml->outstanding++;
    }
    ml__roll_progress(ml);
}

/* --- retention ------------------------------------------------------------------------------ */

static void ml__trim_listed(ml_managed *ml, int status)
{
    size_t n = ml->trim_count;
    ml->trim_count = 0;
    if (status == MG_EFENCED) {
        ml__fenced(ml);
        ml__drain(ml);
        return;
    }
    if (status != MG_OK) {
        MG_WARN("managed ledger %s: retention could not update the list: %s", ml->name,
                mg_strerror(status));
        return;
    }
    int64_t below = ml->ledgers[n].ledger_id;
    for (size_t i = 0; i < n; i++) {
        MG_INFO("managed ledger %s: retention deletes ledger %" PRId64 " (%" PRId64
                " entries, %" PRId64 " bytes)",
                ml->name, ml->ledgers[i].ledger_id, ml->ledgers[i].entries, ml->ledgers[i].size);
        ml__delete_ledger(ml, ml->ledgers[i].ledger_id);
    }
    memmove(ml->ledgers, ml->ledgers + n, (ml->ledger_count - n) * sizeof(*ml->ledgers));
    ml->ledger_count -= n;
    ml__handles_release(ml, below);
}

/* How many ledgers at the head of the list retention deletes now (see RETENTION). */
static size_t ml__trim_count(const ml_managed *ml)
{
    ml_position pos = ml->oldest_needed;
    size_t consumed = 0;
    while (consumed + 1 < ml->ledger_count) {
        const ml__linfo *li = &ml->ledgers[consumed];
        if (!li->closed)
            break;
        bool before = li->ledger_id < pos.ledger_id ||
                      (li->ledger_id == pos.ledger_id && li->entries <= pos.entry_id);
        if (!before)
            break;
        consumed++;
    }
    int64_t rt = ml->cfg.retention_time_ms, rb = ml->cfg.retention_bytes;
    int64_t consumed_bytes = 0;
    for (size_t i = 0; i < consumed; i++)
        consumed_bytes += ml->ledgers[i].size;
    int64_t now = mg_clock_wall_ms();
    size_t n = 0;
    bool none = rt == 0 && rb == 0;
    for (; n < consumed; n++) {
        const ml__linfo *li = &ml->ledgers[n];
        bool time_out = rt > 0 && now - li->timestamp_ms >= rt;
        bool size_out = rb > 0 && consumed_bytes > rb;
        if (!none && !time_out && !size_out)
            break;
        consumed_bytes -= li->size;
    }
    return n;
}

static void ml__trim(ml_managed *ml)
{
    if (ml->closing || ml->state == ML__M_FENCED || ml->state == ML__M_OPENING)
        return;
    if (ml->list_busy || ml->state == ML__M_ROLLING || ml->state == ML__M_TERMINATING) {
        ml->trim_pending = true;
        return;
    }
    ml->trim_pending = false;
    size_t n = ml__trim_count(ml);
    if (n == 0)
        return;
    ml->trim_count = n;
    int rc = ml__list_write(ml, n, false, NULL, NULL, ml__trim_listed);
    if (rc != MG_OK) {
        ml->trim_count = 0;
        MG_WARN("managed ledger %s: retention cannot write the list: %s", ml->name,
                mg_strerror(rc));
    }
}

void ml_set_oldest_needed(ml_managed *ml, ml_position pos)
{
    ml->oldest_needed = pos;
    ml__trim(ml);
}

int ml_set_retention(ml_managed *ml, int64_t retention_time_ms, int64_t retention_bytes)
{
    if (ml == NULL || retention_time_ms < -1 || retention_bytes < -1)
        return MG_EINVAL;
    ml->cfg.retention_time_ms = retention_time_ms;
    ml->cfg.retention_bytes = retention_bytes;
    ml__trim(ml);
    return MG_OK;
}

/* --- reads ---------------------------------------------------------------------------------- */

typedef struct ml__rop {
    ml__start start;
    ml__waiter w;
    ml_managed *ml;
    ml_position pos;
    int max_entries;
    uint32_t max_bytes;
    ml_mread_cb cb;
    void *arg;
    int64_t last;
    ml_entry *entries;
    size_t count;
    size_t bytes;
} ml__rop;

static void ml__rop_deliver(ml__rop *op, int status)
{
    ml_managed *ml = op->ml;
    if (status == MG_OK)
        op->cb(MG_OK, op->entries, op->count, op->arg);
    else
        op->cb(status, NULL, 0, op->arg);
    for (size_t i = 0; i < op->count; i++)
        mg_buf_unref(op->entries[i].buf);
    mg_free(op->entries);
    mg_free(op);
    ml->outstanding--;
    ml__close_progress(ml);
}

static void ml__rop_step(ml__rop *op);

/* A read of a closed ledger found no entry where the list says there is one: the ledger is
 * lost (see LOST LEDGERS). */
static void ml__rop_missing(ml__rop *op, int status)
{
    if (status == MG_ENOTFOUND)
        ml__mark_lost(op->ml, op->w.ledger_id,
                      "its bookies or its metadata no longer have an entry it holds");
}

static void ml__rop_got(int status, const bk_entry *entries, size_t count, void *arg)
{
    ml__rop *op = arg;
    if (status != MG_OK) {
        ml__rop_missing(op, status);
        ml__rop_deliver(op, op->count > 0 ? MG_OK : status);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const bk_entry *en = &entries[i];
        if (op->count > 0 && op->bytes + en->len > op->max_bytes) {
            ml__rop_deliver(op, MG_OK);
            return;
        }
        ml_entry *me = &op->entries[op->count];
        const uint8_t *data = mg_buf_data(en->buf) + en->off;
        size_t plen;
        if (ml__entry_bem(data, en->len, &me->broker_timestamp_ms, &me->index, &plen) != MG_OK) {
            MG_WARN("managed ledger %s: entry %" PRId64 ":%" PRId64
                    " has no valid BrokerEntryMetadata",
                    op->ml->name, op->w.ledger_id, en->entry_id);
            ml__rop_deliver(op, op->count > 0 ? MG_OK : MG_ECORRUPT);
            return;
        }
        me->position = (ml_position){ op->w.ledger_id, en->entry_id };
        me->buf = mg_buf_ref(en->buf);
        me->off = en->off;
        me->len = en->len;
        me->payload_off = en->off + plen;
        me->payload_len = en->len - plen;
        op->count++;
        op->bytes += en->len;
        op->pos = (ml_position){ op->w.ledger_id, en->entry_id + 1 };
        if (op->count == (size_t)op->max_entries || op->bytes >= op->max_bytes) {
            ml__rop_deliver(op, MG_OK);
            return;
        }
    }
    ml__rop_step(op);
}

static void ml__rop_have_ledger(ml__waiter *w, ml_ledger *l, int status)
{
    ml__rop *op = (ml__rop *)((char *)w - offsetof(ml__rop, w));
    if (status != MG_OK) {
        ml__rop_missing(op, status);
        ml__rop_deliver(op, op->count > 0 ? MG_OK : status);
        return;
    }
    uint32_t budget = op->max_bytes - (uint32_t)op->bytes;
    int rc = ml_ledger_read(l, op->pos.entry_id, op->last, budget, ml__rop_got, op);
    if (rc != MG_OK)
        ml__rop_deliver(op, op->count > 0 ? MG_OK : rc);
}

static void ml__rop_step(ml__rop *op)
{
    ml_managed *ml = op->ml;
    for (size_t guard = 0; guard <= ml->ledger_count; guard++) {
        size_t i = ml__lower_ledger(ml, op->pos.ledger_id);
        if (i == ml->ledger_count) {
            ml__rop_deliver(op, MG_OK);
            return;
        }
        const ml__linfo *li = &ml->ledgers[i];
        if (li->ledger_id != op->pos.ledger_id || op->pos.entry_id < 0)
            op->pos =
                (ml_position){ li->ledger_id, li->ledger_id != op->pos.ledger_id
                                                  ? 0
                                                  : (op->pos.entry_id < 0 ? 0 : op->pos.entry_id) };
        if (op->pos.entry_id >= li->entries) {
            if (i + 1 == ml->ledger_count) {
                ml__rop_deliver(op, MG_OK); /* past the end */
                return;
            }
            op->pos = (ml_position){ ml->ledgers[i + 1].ledger_id, 0 };
            continue;
        }
        if (li->lost) {
            /* Nothing of it can be read: the reader learns where (op->pos) and decides. */
            ml__rop_deliver(op, op->count > 0 ? MG_OK : MG_ENOTFOUND);
            return;
        }
        int64_t want = op->max_entries - (int64_t)op->count;
        op->last = op->pos.entry_id + want - 1;
        if (op->last > li->entries - 1)
            op->last = li->entries - 1;
        op->w.ledger_id = li->ledger_id;
        op->w.fn = ml__rop_have_ledger;
        ml__with_ledger(ml, &op->w);
        return;
    }
    ml__rop_deliver(op, op->count > 0 ? MG_OK : MG_EIO);
}

static void ml__rop_start(ml__start *s)
{
    ml__rop_step((ml__rop *)((char *)s - offsetof(ml__rop, start)));
}

static void ml__timer_fired(uv_timer_t *t)
{
    ml_managed *ml = t->data;
    ml__start *s = ml->starts;
    ml->starts = NULL;
    ml__start *rev = NULL;
    while (s != NULL) {
        ml__start *n = s->next;
        s->next = rev;
        rev = s;
        s = n;
    }
    while (rev != NULL) {
        ml__start *n = rev->next;
        rev->fn(rev);
        rev = n;
    }
    ml__close_progress(ml);
}

static void ml__defer(ml_managed *ml, ml__start *s, void (*fn)(ml__start *s))
{
    s->fn = fn;
    s->next = ml->starts;
    ml->starts = s;
    ml->outstanding++;
    ml__kick(ml);
}

int ml_read(ml_managed *ml, ml_position from, int max_entries, uint32_t max_bytes, ml_mread_cb cb,
            void *arg)
{
    if (ml == NULL || cb == NULL || max_entries < 1)
        return MG_EINVAL;
    if (ml->closing || ml->state == ML__M_OPENING)
        return MG_ESTATE;
    if (max_entries > ML_READ_ENTRIES_MAX)
        max_entries = ML_READ_ENTRIES_MAX;
    ml__rop *op = mg_calloc(1, sizeof(*op));
    ml_entry *entries = op ? mg_calloc((size_t)max_entries, sizeof(*entries)) : NULL;
    if (entries == NULL) {
        mg_free(op);
        return MG_ENOMEM;
    }
    op->ml = ml;
    op->pos = from;
    op->max_entries = max_entries;
    op->max_bytes = max_bytes ? max_bytes : BK_RANGE_BYTES_MAX;
    op->cb = cb;
    op->arg = arg;
    op->entries = entries;
    ml__defer(ml, &op->start, ml__rop_start);
    return MG_OK;
}

/* --- find by time or index ------------------------------------------------------------------ */

typedef struct ml__fop {
    ml__start start;
    ml__waiter w;
    ml_managed *ml;
    bool by_time;
    int64_t target;
    ml_find_cb cb;
    void *arg;
    ml__linfo *cand; /* snapshot of the non-empty ledgers */
    size_t ncand;
    bool in_ledger; /* phase 2: entries of cand[lo] */
    size_t lo, hi;
    int64_t elo, ehi;
    int64_t probe;
    size_t restarts; /* searches started again after a probe found a lost ledger */
} ml__fop;

static void ml__fop_finish(ml__fop *op, int status, ml_position pos)
{
    ml_managed *ml = op->ml;
    op->cb(status, pos, op->arg);
    mg_free(op->cand);
    mg_free(op);
    ml->outstanding--;
    ml__close_progress(ml);
}

static void ml__fop_next(ml__fop *op);
static void ml__fop_start(ml__start *s);

/* A probe failed: a ledger found lost is left out and the search starts again (at most once per
 * ledger of the list, as each restart marks one more); any other error ends the find. */
static void ml__fop_failed(ml__fop *op, int status)
{
    if (status == MG_ENOTFOUND && op->restarts < op->ml->ledger_count &&
        ml__mark_lost(op->ml, op->w.ledger_id,
                      "its bookies or its metadata no longer have an entry it holds")) {
        op->restarts++;
        mg_free(op->cand);
        op->cand = NULL;
        op->ncand = 0;
        op->in_ledger = false;
        ml__fop_start(&op->start);
        return;
    }
    ml__fop_finish(op, status, (ml_position){ -1, -1 });
}

static void ml__fop_got(int status, const bk_entry *entries, size_t count, void *arg)
{
    ml__fop *op = arg;
    if (status == MG_OK && count == 0)
        status = MG_ENOTFOUND;
    if (status != MG_OK) {
        ml__fop_failed(op, status);
        return;
    }
    int64_t ts, index;
    size_t plen;
    if (ml__entry_bem(mg_buf_data(entries[0].buf) + entries[0].off, entries[0].len, &ts, &index,
                      &plen) != MG_OK) {
        ml__fop_finish(op, MG_ECORRUPT, (ml_position){ -1, -1 });
        return;
    }
    bool at_or_after = (op->by_time ? ts : index) >= op->target;
    if (!op->in_ledger) {
        size_t mid = op->lo + (op->hi - op->lo) / 2;
        if (at_or_after)
            op->hi = mid;
        else
            op->lo = mid + 1;
    } else {
        int64_t mid = op->elo + (op->ehi - op->elo) / 2;
        if (at_or_after)
            op->ehi = mid;
        else
            op->elo = mid + 1;
    }
    ml__fop_next(op);
}

static void ml__fop_have_ledger(ml__waiter *w, ml_ledger *l, int status)
{
    ml__fop *op = (ml__fop *)((char *)w - offsetof(ml__fop, w));
    if (status != MG_OK) {
        ml__fop_failed(op, status);
        return;
    }
    int rc = ml_ledger_read(l, op->probe, op->probe, 0, ml__fop_got, op);
    if (rc != MG_OK)
        ml__fop_finish(op, rc, (ml_position){ -1, -1 });
}

/* One probe per step: first over the ledgers (by their last entry), then inside one. */
static void ml__fop_next(ml__fop *op)
{
    if (!op->in_ledger) {
        if (op->lo < op->hi) {
            size_t mid = op->lo + (op->hi - op->lo) / 2;
            op->w.ledger_id = op->cand[mid].ledger_id;
            op->probe = op->cand[mid].entries - 1;
        } else if (op->lo == op->ncand) {
            ml__fop_finish(op, MG_OK, ml__next_write_position(op->ml));
            return;
        } else {
            /* cand[lo] is the first ledger whose last entry qualifies: search inside it. */
            op->in_ledger = true;
            op->elo = 0;
            op->ehi = op->cand[op->lo].entries - 1;
            ml__fop_next(op);
            return;
        }
    } else {
        if (op->elo >= op->ehi) {
            ml__fop_finish(op, MG_OK, (ml_position){ op->cand[op->lo].ledger_id, op->elo });
            return;
        }
        op->w.ledger_id = op->cand[op->lo].ledger_id;
        op->probe = op->elo + (op->ehi - op->elo) / 2;
    }
    op->w.fn = ml__fop_have_ledger;
    ml__with_ledger(op->ml, &op->w);
}

static void ml__fop_start(ml__start *s)
{
    ml__fop *op = (ml__fop *)((char *)s - offsetof(ml__fop, start));
    ml_managed *ml = op->ml;
    op->cand = mg_calloc(ml->ledger_count ? ml->ledger_count : 1, sizeof(*op->cand));
    if (op->cand == NULL) {
        ml__fop_finish(op, MG_ENOMEM, (ml_position){ -1, -1 });
        return;
    }
    for (size_t i = 0; i < ml->ledger_count; i++) {
        if (ml->ledgers[i].entries > 0 && !ml->ledgers[i].lost)
            op->cand[op->ncand++] = ml->ledgers[i];
    }
    op->lo = 0;
    op->hi = op->ncand;
    ml__fop_next(op);
}

static int ml__find(ml_managed *ml, bool by_time, int64_t target, ml_find_cb cb, void *arg)
{
    if (ml == NULL || cb == NULL)
        return MG_EINVAL;
    if (ml->closing || ml->state == ML__M_OPENING)
        return MG_ESTATE;
    ml__fop *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    op->ml = ml;
    op->by_time = by_time;
    op->target = target;
    op->cb = cb;
    op->arg = arg;
    ml__defer(ml, &op->start, ml__fop_start);
    return MG_OK;
}

int ml_find_by_time(ml_managed *ml, int64_t timestamp_ms, ml_find_cb cb, void *arg)
{
    return ml__find(ml, true, timestamp_ms, cb, arg);
}

int ml_find_by_index(ml_managed *ml, int64_t index, ml_find_cb cb, void *arg)
{
    return ml__find(ml, false, index, cb, arg);
}

/* --- positions and counters ----------------------------------------------------------------- */

ml_position ml_last_position(const ml_managed *ml)
{
    return ml->last_pos;
}

ml_position ml_first_position(const ml_managed *ml)
{
    for (size_t i = 0; i < ml->ledger_count; i++) {
        if (ml->ledgers[i].entries > 0)
            return (ml_position){ ml->ledgers[i].ledger_id, 0 };
    }
    return ml__next_write_position(ml);
}

void ml_set_added_listener(ml_managed *ml, ml_added_fn fn, void *arg)
{
    ml->added_fn = fn;
    ml->added_arg = fn != NULL ? arg : NULL;
}

int ml_ledger_size(const ml_managed *ml, int64_t ledger_id, int64_t *entries, int64_t *bytes)
{
    size_t i = ml__lower_ledger(ml, ledger_id);
    if (i == ml->ledger_count || ml->ledgers[i].ledger_id != ledger_id)
        return MG_ENOTFOUND;
    *entries = ml->ledgers[i].entries;
    *bytes = ml->ledgers[i].size;
    return MG_OK;
}

ml_position ml_next_position(const ml_managed *ml, ml_position pos)
{
    size_t i = ml__lower_ledger(ml, pos.ledger_id);
    if (i == ml->ledger_count)
        return (ml_position){ pos.ledger_id, pos.entry_id < 0 ? 0 : pos.entry_id + 1 };
    ml_position next = ml->ledgers[i].ledger_id == pos.ledger_id
                           ? (ml_position){ pos.ledger_id, pos.entry_id < 0 ? 0 : pos.entry_id + 1 }
                           : (ml_position){ ml->ledgers[i].ledger_id, 0 };
    /* Past the end of a closed ledger: the first entry of the next one. */
    while (i + 1 < ml->ledger_count && ml->ledgers[i].closed &&
           next.entry_id >= ml->ledgers[i].entries) {
        i++;
        next = (ml_position){ ml->ledgers[i].ledger_id, 0 };
    }
    return next;
}

int64_t ml_entries_between(const ml_managed *ml, ml_position a, ml_position b)
{
    int64_t n = 0;
    for (size_t i = 0; i < ml->ledger_count; i++) {
        const ml__linfo *li = &ml->ledgers[i];
        if (li->ledger_id < a.ledger_id || li->ledger_id > b.ledger_id || li->entries == 0)
            continue;
        int64_t lo = li->ledger_id == a.ledger_id ? (a.entry_id < 0 ? 0 : a.entry_id) : 0;
        int64_t hi = li->ledger_id == b.ledger_id ? b.entry_id : li->entries - 1;
        if (hi > li->entries - 1)
            hi = li->entries - 1;
        if (hi >= lo)
            n += hi - lo + 1;
    }
    return n;
}

int64_t ml_messages_total(const ml_managed *ml)
{
    return ml->messages_total;
}

int64_t ml_entries_total(const ml_managed *ml)
{
    int64_t n = 0;
    for (size_t i = 0; i < ml->ledger_count; i++)
        n += ml->ledgers[i].entries;
    return n;
}

int64_t ml_bytes_total(const ml_managed *ml)
{
    int64_t n = 0;
    for (size_t i = 0; i < ml->ledger_count; i++)
        n += ml->ledgers[i].size;
    return n;
}

size_t ml_ledgers(const ml_managed *ml, ml_ledger_info *out, size_t cap)
{
    size_t n = ml->ledger_count < cap ? ml->ledger_count : cap;
    for (size_t i = 0; i < n; i++) {
        const ml__linfo *li = &ml->ledgers[i];
        out[i] = (ml_ledger_info){ .ledger_id = li->ledger_id,
                                   .entries = li->entries,
                                   .size_bytes = li->size,
                                   .timestamp_ms = li->closed ? li->timestamp_ms : 0,
                                   .closed = li->closed,
                                   .lost = li->lost };
    }
    return ml->ledger_count;
}

bool ml_ledger_lost(const ml_managed *ml, int64_t ledger_id)
{
    size_t i = ml__lower_ledger(ml, ledger_id);
    return i < ml->ledger_count && ml->ledgers[i].ledger_id == ledger_id && ml->ledgers[i].lost;
}

size_t ml_lost_ledger_count(const ml_managed *ml)
{
    size_t n = 0;
    for (size_t i = 0; i < ml->ledger_count; i++)
        n += ml->ledgers[i].lost ? 1 : 0;
    return n;
}

void ml_lost_entries_skipped(ml_managed *ml, int64_t entries)
{
    MG_ASSERT(entries >= 0);
    ml->lost_skipped_entries += entries;
    mg_counter_add(ml->env->m_lost_skipped, (uint64_t)entries);
}

int64_t ml_lost_entries_skipped_total(const ml_managed *ml)
{
    return ml->lost_skipped_entries;
}

const char *ml_name(const ml_managed *ml)
{
    return ml->name;
}

ml_env *ml_managed_env(const ml_managed *ml)
{
    return ml->env;
}

const char *ml_metadata_path(const ml_managed *ml)
{
    return ml->path;
}

/* --- freeing -------------------------------------------------------------------------------- */

static void ml__free(ml_managed *ml)
{
    for (size_t i = 0; i < ml->prop_count; i++) {
        mg_free(ml->prop_keys[i]);
        mg_free(ml->prop_values[i]);
    }
    mg_free(ml->prop_keys);
    mg_free(ml->prop_values);
    mg_free(ml->ledgers);
    mg_free(ml->dropped);
    mg_free(ml);
}

static void ml__timer_closed(uv_handle_t *h)
{
    ml_managed *ml = h->data;
    ml_env *env = ml->env;
    env->objects--;
    if (ml->open_cb != NULL) {
        ml_managed_cb cb = ml->open_cb;
        void *arg = ml->open_arg;
        int status = ml->open_status;
        ml__free(ml);
        cb(status, NULL, arg);
        return;
    }
    ml_done_cb cb = ml->close_cb;
    void *arg = ml->close_arg;
    int status = ml->close_status;
    ml__free(ml);
    cb(status, arg);
}

static void ml__timer_closed_quietly(uv_handle_t *h)
{
    ml__free(h->data);
}

/* Everything of ours has called back: close the timer; its callback calls the user back. */
static void ml__finish(ml_managed *ml)
{
    MG_ASSERT(!ml->finishing && ml->outstanding == 0 && ml->head == NULL);
    ml->finishing = true;
    ml__handles_release(ml, INT64_MAX);
    uv_timer_stop(&ml->timer);
    uv_close((uv_handle_t *)&ml->timer, ml__timer_closed);
}

/* --- termination (see TERMINATION) ----------------------------------------------------------- */

bool ml_is_terminated(const ml_managed *ml)
{
    return ml->has_terminated && ml->terminated;
}

bool ml_is_fenced(const ml_managed *ml)
{
    return ml->state == ML__M_FENCED;
}

/* The position a terminated list records: the one written with the mark, or (a list marked by
 * something that wrote no position) the last entry known. */
static ml_position ml__term_position(const ml_managed *ml)
{
    if (ml->has_term_ledger && ml->has_term_entry)
        return (ml_position){ ml->term_ledger, ml->term_entry };
    return ml->last_pos;
}

/* Calls back every waiting ml_terminate with status (and the position on MG_OK). */
static void ml__term_complete(ml_managed *ml, int status)
{
    ml_position pos = status == MG_OK ? ml__term_position(ml) : (ml_position){ -1, -1 };
    ml__term_waiter *w = ml->term_waiters;
    ml->term_waiters = ml->term_waiters_tail = NULL;
    ml->term_waiter_count = 0;
    while (w != NULL) {
        ml__term_waiter *n = w->next;
        w->cb(status, pos, w->arg);
        mg_free(w);
        w = n;
    }
}

static void ml__term_listed(ml_managed *ml, int status)
{
    ml->term_listing = false;
    bool dropped = ml->term_dropping;
    ml->term_dropping = false;
    if (status == MG_OK) {
        if (dropped) {
            /* The empty last ledger left the list: delete it too. */
            int64_t id = ml->ledgers[ml->ledger_count - 1].ledger_id;
            ml->ledger_count--;
            ml__delete_ledger(ml, id);
        }
        ml_position at = ml->last_pos;
        ml->has_terminated = ml->terminated = true;
        ml->has_term_ledger = ml->has_term_entry = true;
        ml->term_ledger = at.ledger_id;
        ml->term_entry = at.entry_id;
        if (ml->state != ML__M_FENCED)
            ml->state = ML__M_TERMINATED;
        MG_INFO("managed ledger %s: terminated at %" PRId64 ":%" PRId64 ", %zu ledgers", ml->name,
                at.ledger_id, at.entry_id, ml->ledger_count);
        ml__term_complete(ml, MG_OK);
        return;
    }
    if (status == MG_EFENCED)
        ml__fenced(ml);
    else if (ml->state != ML__M_FENCED)
        ml->state = ML__M_NO_LEDGER; /* adds stay refused (term_requested) */
    MG_WARN("managed ledger %s: terminating failed: %s", ml->name, mg_strerror(status));
    ml__term_complete(ml, ml->state == ML__M_FENCED ? MG_EFENCED : status);
}

static void ml__term_write_list(ml_managed *ml)
{
    ml->closed_messages = ml->messages_total;
    ml__linfo *li = ml__last_linfo(ml);
    bool drop_last = li != NULL && li->closed && li->entries == 0;
    ml_position at = ml->last_pos;
    int rc = ml__list_write(ml, 0, drop_last, NULL, &at, ml__term_listed);
    if (rc != MG_OK) {
        MG_WARN("managed ledger %s: terminating cannot write the list: %s", ml->name,
                mg_strerror(rc));
        ml->state = ML__M_NO_LEDGER;
        ml__term_complete(ml, rc);
        return;
    }
    ml->term_listing = true;
    ml->term_dropping = drop_last;
}

static void ml__term_ledger_closed(int status, void *arg)
{
    ml_managed *ml = arg;
    ml->term_closing = false;
    ml__current_closed(ml, status);
    ml__close_progress(ml); /* runs ml__term_progress first */
}

/* Moves a requested termination on; called (through ml__close_progress) after anything that
 * may unblock it. Never calls back inside ml_terminate: that only kicks the timer. */
static void ml__term_progress(ml_managed *ml)
{
    if (ml->term_waiters == NULL || ml->finishing || ml->open_failed)
        return;
    switch (ml->state) {
    case ML__M_OPENING:
    case ML__M_ROLLING:
        return;
    case ML__M_FENCED:
        ml__term_complete(ml, ml_is_terminated(ml) ? MG_OK : MG_EFENCED);
        return;
    case ML__M_TERMINATED:
        ml__term_complete(ml, MG_OK);
        return;
    case ML__M_TERMINATING:
        if (ml->term_closing || ml->term_listing || ml->list_busy)
            return; /* ml__list_idle brings us back once the list is free */
        ml__term_write_list(ml);
        return;
    case ML__M_WRITING:
    case ML__M_NO_LEDGER:
        break;
    }
    if (ml->head != NULL)
        return; /* adds queued before ml_terminate finish first */
    ml->state = ML__M_TERMINATING;
    if (ml->current != NULL) {
        int rc = ml_ledger_close(ml->current, ml__term_ledger_closed, ml);
        if (rc == MG_OK) {
            ml->term_closing = true;
            ml->outstanding++;
            return;
        }
        /* Cannot happen for a live writer handle; treat the ledger as closed. */
        MG_ERROR("managed ledger %s: cannot close ledger: %s", ml->name, mg_strerror(rc));
        ml__linfo *li = ml__last_linfo(ml);
        li->closed = true;
        li->timestamp_ms = mg_clock_wall_ms();
        ml->current = NULL;
    }
    if (!ml->list_busy)
        ml__term_write_list(ml);
}

int ml_terminate(ml_managed *ml, ml_find_cb cb, void *arg)
{
    if (ml == NULL || cb == NULL)
        return MG_EINVAL;
    if (ml->closing || ml->state == ML__M_OPENING)
        return MG_ESTATE;
    if (ml->state == ML__M_FENCED && !ml_is_terminated(ml))
        return MG_EFENCED;
    if (ml->term_waiter_count >= ML__TERM_WAITERS_MAX)
        return MG_EAGAIN;
    ml__term_waiter *w = mg_calloc(1, sizeof(*w));
    if (w == NULL)
        return MG_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    if (ml->term_waiters_tail != NULL)
        ml->term_waiters_tail->next = w;
    else
        ml->term_waiters = w;
    ml->term_waiters_tail = w;
    ml->term_waiter_count++;
    ml->term_requested = true;
    ml__kick(ml); /* progress from the loop: the callback never runs inside this call */
    return MG_OK;
}

/* --- close ---------------------------------------------------------------------------------- */

static void ml__close_listed(ml_managed *ml, int status)
{
    if (status != MG_OK && ml->close_status == MG_OK)
        ml->close_status = status;
    ml__linfo *li = ml__last_linfo(ml);
    if (status == MG_OK && li != NULL && li->closed && li->entries == 0 && ml->ledger_count > 1) {
        /* The empty last ledger left the list: delete it too. */
        int64_t id = li->ledger_id;
        ml->ledger_count--;
        ml__delete_ledger(ml, id);
    }
    ml->close_listing = false;
}

static void ml__close_write_list(ml_managed *ml)
{
    ml->closed_messages = ml->messages_total;
    ml__linfo *li = ml__last_linfo(ml);
    bool drop_last = li != NULL && li->closed && li->entries == 0 && ml->ledger_count > 1;
    int rc = ml__list_write(ml, 0, drop_last, NULL, NULL, ml__close_listed);
    if (rc != MG_OK) {
        ml->close_status = rc;
        return;
    }
    ml->close_listing = true;
}

static void ml__close_ledger_closed(int status, void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    ml->current = NULL;
    ml__linfo *li = ml__last_linfo(ml);
    li->closed = true;
    li->timestamp_ms = mg_clock_wall_ms();
    if (status == MG_EFENCED) {
        ml->close_status = MG_EFENCED;
        ml->state = ML__M_FENCED;
    } else {
        if (status != MG_OK)
            MG_WARN("managed ledger %s: closing ledger %" PRId64 " failed: %s", ml->name,
                    li->ledger_id, mg_strerror(status));
        ml__close_write_list(ml);
    }
    ml__close_progress(ml);
}

static void ml__close_progress(ml_managed *ml)
{
    if (ml->open_failed) {
        if (ml->outstanding == 0 && !ml->finishing) {
            ml->finishing = true;
            uv_timer_stop(&ml->timer);
            uv_close((uv_handle_t *)&ml->timer, ml__timer_closed);
        }
        return;
    }
    ml__term_progress(ml);
    if (!ml->closing || ml->finishing || ml->state == ML__M_OPENING)
        return;
    if (!ml->close_started) {
        if (ml->head != NULL || ml->state == ML__M_ROLLING || ml->list_busy ||
            ml->state == ML__M_TERMINATING || ml->term_waiters != NULL)
            return;
        ml->close_started = true;
        if (ml->state == ML__M_FENCED) {
            ml->close_status = MG_EFENCED;
        } else if (ml->current != NULL) {
            int rc = ml_ledger_close(ml->current, ml__close_ledger_closed, ml);
            if (rc == MG_OK) {
                ml->outstanding++;
                return;
            }
            ml->close_status = rc;
            ml->current = NULL;
        } else {
            ml__close_write_list(ml); /* NO_LEDGER: record the last ledger as closed */
        }
    }
    if (ml->outstanding > 0 || ml->close_listing || ml->list_busy || ml->current != NULL)
        return;
    ml__finish(ml);
}

int ml_close(ml_managed *ml, ml_done_cb cb, void *arg)
{
    if (ml == NULL || cb == NULL)
        return MG_EINVAL;
    if (ml->closing || ml->state == ML__M_OPENING)
        return MG_ESTATE;
    ml->closing = true;
    ml->close_cb = cb;
    ml->close_arg = arg;
    ml->close_status = MG_OK;
    ml__kick(ml); /* progress from the loop: the callback never runs inside this call */
    return MG_OK;
}

/* --- open ----------------------------------------------------------------------------------- */

/* Open failed: give up what was made (a new ledger is closed and deleted), then, once nothing
 * is outstanding, call back with the error (ml__close_progress finishes). */
static void ml__open_fail(ml_managed *ml, int status)
{
    ml->open_status = status;
    ml->open_failed = true;
    ml->state = ML__M_FENCED; /* nothing more gets started */
    if (ml->current != NULL) {
        ml__discard_ledger(ml, ml->current);
        ml->current = NULL;
    }
    ml__close_progress(ml);
}

static void ml__open_listed(ml_managed *ml, int status)
{
    if (status == MG_OK && ml->current != NULL) {
        ml__linfo nl = { .ledger_id = ml_ledger_id(ml->current) };
        status = ml__linfo_append(ml, &nl);
    }
    if (status != MG_OK) {
        ml__open_fail(ml, status);
        return;
    }
    for (size_t i = 0; i < ml->dropped_count; i++)
        ml__delete_ledger(ml, ml->dropped[i]);
    ml->dropped_count = 0;
    ml_managed_cb cb = ml->open_cb;
    void *arg = ml->open_arg;
    ml->open_cb = NULL;
    if (ml->current == NULL) {
        ml->state = ML__M_TERMINATED;
        ml->term_requested = true;
        ml_position at = ml__term_position(ml);
        MG_INFO("managed ledger %s: open, terminated at %" PRId64 ":%" PRId64
                ", %zu ledgers, %" PRId64 " messages",
                ml->name, at.ledger_id, at.entry_id, ml->ledger_count, ml->messages_total);
    } else {
        ml->state = ML__M_WRITING;
        ml->current_created_ms = mg_clock_mono_ms();
        MG_INFO("managed ledger %s: open, %zu ledgers, %" PRId64
                " messages, writing ledger %" PRId64,
                ml->name, ml->ledger_count, ml->messages_total, ml_ledger_id(ml->current));
    }
    cb(MG_OK, ml, arg);
}

static void ml__open_created(int status, ml_ledger *l, void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    if (status != MG_OK) {
        ml__open_fail(ml, status);
        return;
    }
    ml->current = l;
    ml->closed_messages = ml->messages_total;
    ml__linfo nl = { .ledger_id = ml_ledger_id(l) };
    int rc = ml__list_write(ml, 0, false, &nl, NULL, ml__open_listed);
    if (rc != MG_OK)
        ml__open_fail(ml, rc);
}

static void ml__open_create(ml_managed *ml)
{
    if (ml_is_terminated(ml)) {
        /* No ledger for a terminated log: the list goes back as it is (recovered and empty
         * ledgers closed or dropped), with CAS so that a previous owner is out of it. */
        ml->closed_messages = ml->messages_total;
        int rc = ml__list_write(ml, 0, false, NULL, NULL, ml__open_listed);
        if (rc != MG_OK)
            ml__open_fail(ml, rc);
        return;
    }
    int rc = ml_ledger_create(ml->env, ml__open_created, ml);
    if (rc != MG_OK) {
        ml__open_fail(ml, rc);
        return;
    }
    ml->outstanding++;
}

typedef struct ml__derive {
    ml_managed *ml;
    ml_ledger *l;
    int64_t ledger_id;
    int64_t entry_id;
} ml__derive;

/* The last entry of the last non-empty ledger cannot be read because the ledger is gone: the
 * message count is the one the list recorded (see LOST LEDGERS); the open goes on. */
static bool ml__derive_lost(ml_managed *ml, int64_t ledger_id, int status)
{
    if (status != MG_ENOTFOUND)
        return false;
    ml__mark_lost(ml, ledger_id, "its last entry cannot be read from its bookies");
    MG_WARN("managed ledger %s: message count taken from the ledger list: %" PRId64, ml->name,
            ml->messages_total);
    return true;
}

static void ml__derive_read(int status, const bk_entry *entries, size_t count, void *arg)
{
    ml__derive *d = arg;
    ml_managed *ml = d->ml;
    ml->outstanding--;
    int64_t ts = 0, index = 0;
    size_t plen;
    if (status == MG_OK && count == 0)
        status = MG_ENOTFOUND;
    if (status == MG_OK)
        status = ml__entry_bem(mg_buf_data(entries[0].buf) + entries[0].off, entries[0].len, &ts,
                               &index, &plen);
    ml_ledger_release(d->l);
    int64_t ledger_id = d->ledger_id;
    mg_free(d);
    if (ml__derive_lost(ml, ledger_id, status)) {
        ml__open_create(ml);
        return;
    }
    if (status != MG_OK) {
        MG_ERROR("managed ledger %s: cannot read the index of its last entry: %s", ml->name,
                 mg_strerror(status));
        ml__open_fail(ml, status);
        return;
    }
    ml->messages_total = index + 1;
    ml->next_index = index + 1;
    ml->last_ts = ts;
    ml__open_create(ml);
}

static void ml__derive_opened(int status, ml_ledger *l, void *arg)
{
    ml__derive *d = arg;
    ml_managed *ml = d->ml;
    ml->outstanding--;
    if (status == MG_OK) {
        d->l = l;
        status = ml_ledger_read(l, d->entry_id, d->entry_id, 0, ml__derive_read, d);
        if (status == MG_OK) {
            ml->outstanding++;
            return;
        }
        ml_ledger_release(l);
    }
    int64_t ledger_id = d->ledger_id;
    mg_free(d);
    if (ml__derive_lost(ml, ledger_id, status)) {
        ml__open_create(ml);
        return;
    }
    ml__open_fail(ml, status);
}

/* The list is complete (recovery done): drop empty ledgers, find the message count. */
static void ml__open_derive(ml_managed *ml)
{
    size_t w = 0;
    for (size_t i = 0; i < ml->ledger_count; i++) {
        ml__linfo *li = &ml->ledgers[i];
        if (li->closed && li->entries == 0 && !li->lost) {
            ml->dropped[ml->dropped_count++] = li->ledger_id;
            continue;
        }
        ml->ledgers[w++] = *li;
    }
    ml->ledger_count = w;
    ml->messages_total = ml->next_index = ml__prop_messages(ml);
    ml->last_pos = (ml_position){ -1, -1 };
    /* A lost last ledger kept with 0 entries is not where the last entry is. */
    const ml__linfo *last = NULL;
    for (size_t i = ml->ledger_count; i > 0 && last == NULL; i--) {
        if (ml->ledgers[i - 1].entries > 0)
            last = &ml->ledgers[i - 1];
    }
    if (last == NULL) {
        ml__open_create(ml);
        return;
    }
    ml->last_pos = (ml_position){ last->ledger_id, last->entries - 1 };
    ml__derive *d = mg_calloc(1, sizeof(*d));
    int rc = MG_ENOMEM;
    if (d != NULL) {
        d->ml = ml;
        d->ledger_id = last->ledger_id;
        d->entry_id = last->entries - 1;
        rc = ml_ledger_open(ml->env, last->ledger_id, false, ml__derive_opened, d);
    }
    if (rc != MG_OK) {
        mg_free(d);
        ml__open_fail(ml, rc);
        return;
    }
    ml->outstanding++;
}

static void ml__open_recovered(int status, ml_ledger *l, void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    ml__linfo *li = ml__last_linfo(ml);
    if (status == MG_ENOTFOUND) {
        /* Its metadata is gone: how many entries it had is unknown. Kept in the list with 0
         * entries and marked lost, so that the stats show it (see LOST LEDGERS). */
        li->entries = 0;
        li->size = 0;
        li->closed = true;
        ml__mark_lost(ml, li->ledger_id,
                      "its metadata does not exist (recovering the last ledger)");
    } else if (status != MG_OK) {
        MG_ERROR("managed ledger %s: cannot recover ledger %" PRId64 ": %s", ml->name,
                 li->ledger_id, mg_strerror(status));
        ml__open_fail(ml, status);
        return;
    } else {
        li->entries = ml_ledger_last_confirmed(l) + 1;
        li->size = ml_ledger_length(l);
        ml_ledger_release(l);
    }
    li->closed = true;
    li->timestamp_ms = mg_clock_wall_ms();
    ml__open_derive(ml);
}

static void ml__open_got(int status, const void *value, size_t value_len, const md_stat *stat,
                         void *arg)
{
    ml_managed *ml = arg;
    ml->outstanding--;
    if (status == MG_ENOTFOUND) {
        ml->md_version = -1;
    } else if (status != MG_OK) {
        ml__open_fail(ml, status);
        return;
    } else {
        ml->md_version = stat->version;
        int rc = ml__list_decode(ml, value, value_len);
        if (rc != MG_OK) {
            MG_ERROR("managed ledger %s: its ledger list does not parse", ml->name);
            ml__open_fail(ml, rc);
            return;
        }
    }
    ml->dropped = mg_calloc(ml->ledger_count ? ml->ledger_count : 1, sizeof(*ml->dropped));
    if (ml->dropped == NULL) {
        ml__open_fail(ml, MG_ENOMEM);
        return;
    }
    ml__linfo *li = ml__last_linfo(ml);
    if (li != NULL && !li->closed) {
        /* The previous owner's ledger: fence it and find its end. */
        int rc = ml_ledger_open(ml->env, li->ledger_id, true, ml__open_recovered, ml);
        if (rc != MG_OK) {
            ml__open_fail(ml, rc);
            return;
        }
        ml->outstanding++;
        return;
    }
    ml__open_derive(ml);
}

int ml_open(ml_env *env, const char *name, const ml_config *config, ml_managed_cb cb, void *arg)
{
    if (env == NULL || name == NULL || cb == NULL)
        return MG_EINVAL;
    char path[ML__MANAGED_PATH_BYTES];
    if (ml__managed_path(name, path, sizeof(path)) != MG_OK)
        return MG_EINVAL;
    size_t n = strlen(name);
    ml_config c = { 0 };
    if (config != NULL)
        c = *config;
    if (c.entries_per_ledger_max < 0 || c.ledger_bytes_max < 0 || c.ledger_age_ms_max < 0 ||
        c.retention_time_ms < -1 || c.retention_bytes < -1)
        return MG_EINVAL;
    if (c.entries_per_ledger_max == 0)
        c.entries_per_ledger_max = ML_DEFAULT_ENTRIES_MAX;
    if (c.ledger_bytes_max == 0)
        c.ledger_bytes_max = ML_DEFAULT_BYTES_MAX;
    if (c.ledger_age_ms_max == 0)
        c.ledger_age_ms_max = ML_DEFAULT_AGE_MS;
    ml_managed *ml = mg_calloc(1, sizeof(*ml));
    if (ml == NULL)
        return MG_ENOMEM;
    ml->env = env;
    memcpy(ml->name, name, n + 1);
    memcpy(ml->path, path, sizeof(path));
    ml->cfg = c;
    ml->state = ML__M_OPENING;
    ml->md_version = -1;
    ml->last_pos = (ml_position){ -1, -1 };
    ml->oldest_needed = (ml_position){ -1, -1 };
    ml->open_cb = cb;
    ml->open_arg = arg;
    for (int i = 0; i < ML_READ_HANDLES_MAX; i++) {
        ml->handles[i].ml = ml;
        ml->handles[i].ledger_id = -1;
    }
    int rc = uv_timer_init(env->loop, &ml->timer);
    if (rc != 0) {
        mg_free(ml);
        return mg_err_from_uv(rc);
    }
    ml->timer.data = ml;
    rc = md_get(env->md, ml->path, ml__open_got, ml);
    if (rc != MG_OK) {
        /* The timer handle must still be closed; its callback frees and calls nobody. */
        ml->finishing = true;
        uv_close((uv_handle_t *)&ml->timer, ml__timer_closed_quietly);
        return rc;
    }
    ml->outstanding++;
    env->objects++;
    return MG_OK;
}
