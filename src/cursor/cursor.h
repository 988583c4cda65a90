/*
 * Managed cursors (../shared/ARCHITECTURE.md §6, §8): a subscription's position in a topic's
 * managed ledger, as Pulsar's ManagedCursor.
 *
 * State of a cursor:
 *  - mark-delete position M: every position <= M is acknowledged;
 *  - individually acknowledged entries above M (a bounded-memory set, rangeset.h);
 *  - batch ack sets: per partially acknowledged entry, a bitmap of the messages of the batch
 *    still unacknowledged (Pulsar's convention: bit i set = message i NOT acknowledged);
 *  - read position R: the next entry to read for dispatch. R > M always.
 * Invariant: no position in the acknowledged set or in a batch ack set is <= M, and the entry
 * right after M is never wholly acknowledged (M moves over contiguous acks at once:
 * after an ack that makes next(M) acknowledged, M becomes the last entry of that run).
 *
 * Life cycle:
 *
 *     mc_cursor_open
 *           |
 *        OPENING --(metadata or read error: the open callback gets NULL)--> freed
 *           |  loaded, or created at the initial position
 *           v
 *         OPEN --(a write hits EBADVERSION)--> FENCED (sticky; can still be closed)
 *           |  mc_cursor_close / mc_cursor_abort / mc_cursor_delete
 *           v
 *        CLOSING --(operations in flight done; final write or delete)--> freed, callback
 *
 * FENCED is sticky (mc_cursor_status() = MG_EFENCED, event_cb told once): another broker wrote
 * the cursor, i.e. took the topic over. A fenced cursor refuses acks, resets and flushes
 * (MG_ESTATE) and writes nothing any more; close it (nothing is written) and drop the topic.
 *
 * Persistence (durable cursors only): the cursor is the node <ml_metadata_path(ml)>/<name>
 * holding a CursorInfo (proto/ledger.proto). Writes are compare-and-set on the node's version,
 * at most one in flight, and at most one per persist_interval_ms while something changed; a
 * flush (close, resets, mc_cursor_flush) writes at once. A write carries at most
 * info_bytes_max bytes: the ranges nearest the mark-delete first, then batch ack sets, as many
 * as fit; the rest is dropped from that record with a warning.
 *
 * Why this gives at-least-once and never a skip: acknowledgements only grow (M only moves
 * forward, entries only join the set, ack-set bits only clear) except through the explicit
 * resets, which are persisted before their callback runs. Each record therefore describes a
 * state in which every position marked acknowledged really was acknowledged: its M was a real
 * M at some time, its ranges a subset of the real ranges (possibly truncated), its ack sets a
 * superset of the real unacked bits (or absent: the whole entry unacked). After a crash the
 * cursor reopens from the last record, which acknowledges a subset of what the consumers had
 * acknowledged: what is missing (acks after the last write, truncated ranges) is delivered
 * again; nothing that was not acknowledged can appear acknowledged.
 *
 * Message backlog: the cursor keeps A = messages acknowledged counting every message of the
 * entries <= M, so mc_backlog_messages = ml_messages_total - A (BrokerEntryMetadata indexes
 * count messages). A is exact when the cursor knows the message count of each entry it sees
 * acknowledged: it learns an entry's count when it reads it (index minus the previous entry's
 * index; after a seek it reads one entry before the read position to learn it). Approximations
 * (documented, never affecting what is delivered): an entry acknowledged without having been
 * read by this cursor (or past MC_PENDING_ENTRIES_MAX unacknowledged entries) counts as one
 * message; a new EARLIEST cursor on a non-empty log, and a reset to the first entry of a
 * ledger, assume that entry holds one message (the log does not say what was trimmed before
 * it; the error ends when that entry is acknowledged); a first partial batch ack of an entry
 * of unknown size counts nothing for the bits it clears; a record truncated for size counts
 * one message per dropped entry. The result is never below
 * mc_backlog_entries (each entry not wholly acknowledged holds an unacknowledged message). An
 * exact recount happens whenever M reaches the last entry with nothing acknowledged above it.
 *
 * Oldest needed position: cursors opened with an mc_group (one per managed ledger, owned by the
 * caller) are aggregated: after any mark-delete change of a durable cursor of the group, the
 * group calls ml_set_oldest_needed(ml, next(slowest M)) if the slowest M changed. Non-durable
 * cursors (readers) never hold back ledger deletion, as in Pulsar. A durable cursor closed or
 * aborted (not deleted) stays in the group at its last M ("parked": its subscription still
 * needs those entries) until a cursor of the same name opens in the group again; a deleted
 * one releases its entries.
 *
 * Threads: a cursor belongs to the managed ledger's loop (ml_env_loop); every call is made on
 * it and every callback runs on it. A call that returns an error never calls its callback; one
 * that returns MG_OK calls it exactly once (never from inside the call).
 */
#ifndef MG_CURSOR_CURSOR_H
#define MG_CURSOR_CURSOR_H

#include "ledger/ledger.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mc_cursor mc_cursor;
typedef struct mc_group mc_group;

typedef enum mc_initial {
    MC_INITIAL_LATEST = 0,   /* M = the last entry: only entries added from now on */
    MC_INITIAL_EARLIEST = 1, /* M = just before the first entry still in the log */
} mc_initial;

typedef void (*mc_cursor_cb)(int status, mc_cursor *cursor, void *arg);
typedef void (*mc_done_cb)(int status, void *arg);
/* entries: the entries read, acknowledged ones left out, valid during the callback only
 * (mg_buf_ref an entry's buf to keep it). */
typedef void (*mc_read_cb)(int status, const ml_entry *entries, size_t count, void *arg);
/* A sticky error hit the cursor outside any call (MG_EFENCED). Runs once. */
typedef void (*mc_event_cb)(mc_cursor *cursor, int status, void *arg);

typedef struct mc_cursor_opts {
    uint32_t persist_interval_ms; /* 0 = MC_PERSIST_INTERVAL_MS_DEFAULT */
    uint32_t info_bytes_max;      /* CursorInfo budget; 0 = MC_CURSOR_INFO_BYTES_DEFAULT, at most
                                     MC_CURSOR_INFO_BYTES_HARD_MAX, at least 64 */
    mc_group *group;              /* NULL = the caller aggregates mc_mark_delete_position */
    mc_event_cb event_cb;         /* NULL = poll mc_cursor_status */
    void *event_arg;
    /* A read that meets a lost ledger (ml_ledger_lost: its entries cannot be read): true = its
     * entries from the read position on are acknowledged, counted (mc_lost_entries_skipped,
     * ml_lost_entries_skipped) and logged, and the read goes on in the next ledger, as
     * Pulsar's autoSkipNonRecoverableData; false = the read calls back MG_ENOTFOUND and the
     * read position stays there until an ack, a seek or a reset moves it past. */
    bool skip_lost_ledgers;
} mc_cursor_opts;

/* An inclusive range of acknowledged positions (one ledger). */
typedef struct mc_range {
    ml_position first;
    ml_position last;
} mc_range;

/* --- groups --------------------------------------------------------------------------------- */

/* Creates the group of cursors of ml (owned by the caller). MG_ENOMEM. */
int mc_group_create(ml_managed *ml, mc_group **out);
/* Frees the group (parked positions included); its cursors must all be closed first
 * (asserted). NULL is a no-op. */
void mc_group_destroy(mc_group *group);
/* hold = true: the group tells the managed ledger nothing until released, while its stored
 * cursors are being opened one by one (else the first cursor open would let retention delete
 * ledgers that a cursor not yet loaded still needs). Releasing sends the slowest position. */
void mc_group_hold(mc_group *group, bool hold);
/* The slowest mark-delete position of the group's durable cursors, open or parked; ledger_id -1
 * when none. */
ml_position mc_group_slowest(const mc_group *group);

/* --- open and close --------------------------------------------------------------------------- */

/* Opens the cursor name (a subscription name: 1..MC_NAME_BYTES_MAX - 1 bytes, no '/', not "."
 * or "..") on ml. durable: loads <ml_metadata_path(ml)>/<name>, or creates it at the initial
 * position if missing (initial is ignored when it exists). Not durable: nothing is read or
 * written in the metadata store. opts may be NULL (defaults). cb gets the cursor (owned by the
 * caller until mc_cursor_close / abort) or an error and NULL.
 * Errors returned: MG_EINVAL (name), MG_ELIMIT (group full), MG_ENOMEM. To cb: metadata errors,
 * MG_ECORRUPT (the stored CursorInfo does not parse). */
int mc_cursor_open(ml_managed *ml, const char *name, bool durable, mc_initial initial,
                   const mc_cursor_opts *opts, mc_cursor_cb cb, void *arg);

/* Closes: a durable cursor that is not fenced writes its state (if it changed since the last
 * write) and then frees; in-flight reads complete first (their callbacks get MG_ECLOSED).
 * cb gets the final write's status: MG_OK (also for a non-durable cursor, or when nothing
 * changed since the last write), MG_EFENCED (the cursor was fenced: nothing written), metadata
 * errors (the acks since the last write will be redelivered). The cursor is freed in every
 * case. Errors returned: MG_ECLOSED (already closing), MG_ESTATE (still opening),
 * MG_EAGAIN (MC_FLUSH_WAITERS_MAX waiters). */
int mc_cursor_close(mc_cursor *cursor, mc_done_cb cb, void *arg);

/* Frees without writing anything, as a crash would leave the metadata (also for a broker that
 * lost the topic). Waits for in-flight operations like close. cb gets MG_OK. */
int mc_cursor_abort(mc_cursor *cursor, mc_done_cb cb, void *arg);

/* Deletes the cursor's node (unsubscribe; CAS on the known version) and frees the cursor.
 * A non-durable cursor is just freed. cb: MG_OK, MG_EFENCED (someone else wrote it), metadata
 * errors; the cursor is freed in every case. Errors returned: MG_ECLOSED. */
int mc_cursor_delete(mc_cursor *cursor, mc_done_cb cb, void *arg);

/* Writes the state now (durable; if a write is in flight, one more after it). cb: MG_OK, or the
 * write's error (MG_EFENCED...). A non-durable cursor completes with MG_OK. Errors returned:
 * MG_ESTATE (fenced), MG_ECLOSED, MG_EAGAIN (MC_FLUSH_WAITERS_MAX waiting). */
int mc_cursor_flush(mc_cursor *cursor, mc_done_cb cb, void *arg);

/* --- reading -----------------------------------------------------------------------------------
 */

/* Reads up to max_entries (1..MC_READ_ENTRIES_MAX) and about max_bytes from the read position
 * (ml_read), leaving out acknowledged entries (contiguous acknowledged runs are skipped without
 * reading), and advances the read position past what was read. Partially acknowledged batches
 * are delivered; mc_batch_ack_set gives their ack set for the consumer.
 * cb: MG_OK with count 0 = nothing to read now (caught up); MG_EAGAIN with count 0 = only
 * acknowledged entries met in MC_READ_ROUNDS_MAX reads, or the read position was moved (seek,
 * rewind, reset) while the read was in flight (its entries are dropped), call again; MG_ECLOSED;
 * MG_ENOTFOUND = the read position is in a lost ledger (ml_ledger_lost) and the cursor does not
 * skip lost ledgers (mc_cursor_opts.skip_lost_ledgers); ml_read's other errors. Errors returned:
 * MG_EAGAIN (a read is in flight: one at a time), MG_EINVAL, MG_ECLOSED, MG_ESTATE (still opening).
 */
int mc_read_entries(mc_cursor *cursor, int max_entries, uint32_t max_bytes, mc_read_cb cb,
                    void *arg);

/* Where mc_read_entries gets its entries: a function with ml_read's contract (entries from
 * `from` on, in order, at most max_entries and about max_bytes, at least one; count 0 with MG_OK
 * past the end; a call that returns an error never calls cb, one that returns MG_OK calls it
 * exactly once and never from inside the call). The prefetcher (src/prefetch) installs itself
 * here so that a subscription's reads are served from its caches. */
typedef int (*mc_read_fn)(void *source, ml_position from, int max_entries, uint32_t max_bytes,
                          ml_mread_cb cb, void *cb_arg);

/* Makes mc_read_entries read through fn(source, ...) instead of ml_read (fn NULL: back to
 * ml_read). Not while a read is in flight (asserted). The cursor's other reads (the first entry
 * after a reset, an open at EARLIEST) still use ml_read: they read one entry each. */
void mc_cursor_set_source(mc_cursor *cursor, mc_read_fn fn, void *source);

/* Read position = the entry after the mark-delete position: unacknowledged entries are read
 * again (redelivery); acknowledged ones are still skipped. */
void mc_rewind(mc_cursor *cursor);

/* Moves the read position only (a position <= M means the entry after M). MG_EINVAL for a
 * negative ledger id. */
int mc_seek(mc_cursor *cursor, ml_position pos);

/* --- acknowledging -----------------------------------------------------------------------------
 */

/* Acknowledges pos. ack_set NULL: the whole entry. Otherwise a batch-index ack: words words,
 * bit i set = message i still unacknowledged; it is ANDed into the entry's recorded set (the
 * first time, recorded as given, limited to the batch size when known) and when no bit is left
 * the entry counts as wholly acknowledged. Positions <= M or already acknowledged are a no-op.
 * Then M moves over the contiguous acknowledged run after it, if any.
 * Errors (nothing recorded): MG_EINVAL (negative ids, past the last entry, words 0 with a
 * set), MG_ELIMIT (words > MC_ACK_SET_WORDS_MAX, MC_BATCH_ENTRIES_MAX partial batches, set
 * too large), MG_ENOMEM, MG_ESTATE (fenced), MG_ECLOSED. */
int mc_ack_individual(mc_cursor *cursor, ml_position pos, const uint64_t *ack_set, size_t words);

/* Acknowledges everything <= pos: M = pos (a pos <= M is a no-op), acknowledged ranges and ack
 * sets <= pos dropped, M then moved over a following contiguous run. With ack_set (a batch
 * message of pos acknowledged cumulatively, as Pulsar's batch-index cumulative ack): M moves to
 * just before pos and pos gets the ack set as in mc_ack_individual. Errors as
 * mc_ack_individual. */
int mc_ack_cumulative(mc_cursor *cursor, ml_position pos, const uint64_t *ack_set, size_t words);

/* --- resets (persisted before cb for a durable cursor) -----------------------------------------
 */

/* Read position = pos, M = the entry before pos ((pos.ledger_id, pos.entry_id - 1)), every
 * acknowledgement above it cleared. cb: MG_OK, the persisting write's error, ml_read errors.
 * Errors returned: MG_EINVAL, MG_EAGAIN (a reset is in flight), MG_ESTATE, MG_ECLOSED. */
int mc_reset_to_position(mc_cursor *cursor, ml_position pos, mc_done_cb cb, void *arg);

/* As mc_reset_to_position at the first entry whose broker timestamp is >= timestamp_ms
 * (ml_find_by_time; past the end: M = the last entry). */
int mc_reset_to_time(mc_cursor *cursor, int64_t timestamp_ms, mc_done_cb cb, void *arg);

/* Sets the count of messages acknowledged (A, see "Message backlog") when the caller knows it
 * exactly: a Kafka consumer group's commit of offset O acknowledges exactly the messages with
 * an index below O (broker/kop/offsets.c). Written with the next state write. Never fails. */
void mc_set_acked_messages(mc_cursor *cursor, int64_t acked);
/* --- state ----------------------------------------------------------------------------------- */

ml_position mc_mark_delete_position(const mc_cursor *cursor);
ml_position mc_read_position(const mc_cursor *cursor);
const char *mc_cursor_name(const mc_cursor *cursor);
bool mc_cursor_durable(const mc_cursor *cursor);
/* MG_OK, or the sticky error (MG_EFENCED). */
int mc_cursor_status(const mc_cursor *cursor);

/* Whether pos is acknowledged (<= M, or wholly acknowledged above it). */
bool mc_is_acked(const mc_cursor *cursor, ml_position pos);
/* The recorded ack set of a partially acknowledged entry: MG_OK with *words (valid until the
 * next call that changes the cursor) and *count, or MG_ENOTFOUND. */
int mc_batch_ack_set(const mc_cursor *cursor, ml_position pos, const uint64_t **words,
                     size_t *count);

/* Entries after M up to the last entry, less the acknowledged ones (ml_entries_between minus
 * the set's count: no scan). */
int64_t mc_backlog_entries(const mc_cursor *cursor);
/* Messages not acknowledged (see "Message backlog" above). */
int64_t mc_backlog_messages(const mc_cursor *cursor);

/* Entries acknowledged above M, and the number of maximal ranges they form. */
int64_t mc_acked_entries(const mc_cursor *cursor);
int64_t mc_acked_range_count(const mc_cursor *cursor);
/* Copies the first min(cap, total) ranges, in order, into out; returns the total. */
size_t mc_acked_ranges(const mc_cursor *cursor, mc_range *out, size_t cap);
/* Entries this cursor skipped in lost ledgers since it was opened (skip_lost_ledgers). */
int64_t mc_lost_entries_skipped(const mc_cursor *cursor);
/* Bytes held by the acknowledgement state (set, ack sets, pending message counts). */
size_t mc_cursor_memory_bytes(const mc_cursor *cursor);
/* Successful metadata writes since open (creation excluded), for tests and stats. */
uint64_t mc_cursor_writes(const mc_cursor *cursor);

#endif
