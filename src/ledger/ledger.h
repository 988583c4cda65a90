/*
 * The ledger module: a topic's log as a chain of bookie ledgers (../shared/ARCHITECTURE.md
 * §5, §8, §9). This is the layer that lets brokers be stateless: everything it knows is in the
 * bookies and the metadata store.
 *
 * Two levels:
 *  - Bookie ledgers (ml_ledger_*): one append-only log with one writer, striped over an
 *    ensemble of bookies. Each entry goes to write_quorum bookies and is acknowledged once
 *    ack_quorum of them confirmed; acknowledgements complete in entry order and advance the
 *    last-add-confirmed (LAC). A failed bookie is replaced in the ensemble for later entries
 *    (metadata updated with compare-and-set). A ledger whose writer died is opened with
 *    recovery: fenced on enough bookies that the old writer can no longer reach ack quorum,
 *    its last entry found, its metadata closed. Metadata: /ledgers/<ledger_id>
 *    (proto/ledger.proto LedgerMetadata).
 *  - Managed ledgers (ml_*): a topic's log, a list of bookie ledgers in
 *    /managed-ledgers/<tenant>/<ns>/persistent/<topic> (ManagedLedgerInfo). Positions are
 *    (ledger_id, entry_id). Adds go to the current ledger, which rolls over by size, entry count
 *    or age; opening recovers the last ledger (fencing out any previous owner) and starts a new
 *    one. Every entry is stored with a BrokerEntryMetadata prefix (magic 0x0e02, broker
 *    timestamp, message index = offset of its last message counting from 0 in the topic;
 *    written and read with the pulsar module's codec, pw_bem_encode and pw_bem_parse), so
 *    positions can be found by time and by message offset. Retention deletes ledgers that every
 *    cursor has consumed and that are outside the retention time or size. A managed ledger that
 *    is not open is deleted for good (its cursors, its ledgers, its node) by ml_delete_stored.
 *    A terminated managed ledger (ml_terminate, Pulsar's "terminate topic") takes no entry ever
 *    again, also after a restart; it is still read, searched, trimmed and closed.
 *
 * Threads: everything belongs to one libuv loop (the topic's); every call is made on it and
 * every callback runs on it. A call that returns an error never calls its callback; one that
 * returns MG_OK calls it exactly once.
 */
#ifndef MG_LEDGER_LEDGER_H
#define MG_LEDGER_LEDGER_H

#include "bookie/client.h"
#include "common/buf.h"
#include "common/metrics.h"
#include "metadata/metadata.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* --- environment ----------------------------------------------------------------------- */

/* Shared by the ledgers of one loop: the loop, a metadata client and a bookie client on it. */
typedef struct ml_env ml_env;

typedef struct ml_env_opts {
    int ensemble_size;         /* 0 = 1 (standalone); a cluster uses 3 */
    int write_quorum;          /* 0 = ensemble_size */
    int ack_quorum;            /* 0 = write_quorum (3/3/2 in a cluster: set 2) */
    uint32_t add_timeout_ms;   /* a bookie that does not answer an add within this is replaced;
                                  0 = 10000 */
    uint32_t pending_adds_max; /* per ledger, adds not yet acknowledged; past it MG_EAGAIN;
                                  0 = 10000 */
    mg_metrics *metrics;       /* NULL = none */
} ml_env_opts;

int ml_env_create(uv_loop_t *loop, md_client *md, bk_client *bk, const ml_env_opts *opts,
                  ml_env **out);
/* Every ledger and managed ledger of the env must be closed first. */
void ml_env_destroy(ml_env *env);

uv_loop_t *ml_env_loop(const ml_env *env);
md_client *ml_env_md(const ml_env *env);
bk_client *ml_env_bk(const ml_env *env);
mg_metrics *ml_env_metrics(const ml_env *env);

/* --- bookie ledgers ---------------------------------------------------------------------- */

typedef struct ml_ledger ml_ledger;

typedef enum ml_ledger_state {
    ML_LEDGER_OPEN = 0,
    ML_LEDGER_IN_RECOVERY = 1,
    ML_LEDGER_CLOSED = 2,
} ml_ledger_state;

typedef void (*ml_ledger_cb)(int status, ml_ledger *ledger, void *arg);
typedef void (*ml_add_cb)(int status, int64_t entry_id, void *arg);
typedef void (*ml_done_cb)(int status, void *arg);
/* entries as in bookie/client.h: views valid during the callback (mg_buf_ref to keep one). */
typedef void (*ml_read_cb)(int status, const bk_entry *entries, size_t count, void *arg);

/* Creates a ledger for writing: a new id (md_id_next "ledgers"), an ensemble of
 * ensemble_size bookies chosen at random among /bookies, metadata /ledgers/<id> (OPEN).
 * Errors to cb: MG_ENOTFOUND (fewer live bookies than ensemble_size), metadata errors. */
int ml_ledger_create(ml_env *env, ml_ledger_cb cb, void *arg);

/* Appends an entry (a reference to buf[off, off + len) is taken); entry ids are assigned
 * 0, 1, 2, ... in call order and cb runs in that order, with the entry id, once ack_quorum
 * bookies of its write set confirmed. A bookie that fails or times out is replaced by another
 * live bookie for this entry onwards (ensemble change, metadata CAS) and the entry is sent to
 * the replacement. Errors returned: MG_EAGAIN (pending_adds_max reached), MG_EFENCED (the
 * ledger was found fenced: adds sent before may still complete, with MG_OK, before the rest
 * fail), MG_ESTATE (not open for writing, closed, failed). Errors to cb: MG_EFENCED (another
 * writer recovered the ledger), MG_ENOTFOUND (no bookie left to replace a failed one),
 * MG_ETIMEDOUT. After a failed add every later add fails too (a ledger never has holes): close
 * it and roll over (when fenced: stop writing, another writer owns the log). */
int ml_ledger_add(ml_ledger *l, mg_buf *buf, size_t off, size_t len, ml_add_cb cb, void *arg);

/* As ml_ledger_add, storing prefix[0, prefix_len) || buf[off, off + len) as the entry, without
 * copying buf's bytes (the prefix, at most ML_ADD_PREFIX_BYTES_MAX bytes, is copied). */
#define ML_ADD_PREFIX_BYTES_MAX 64u
int ml_ledger_add_prefixed(ml_ledger *l, const uint8_t *prefix, size_t prefix_len, mg_buf *buf,
                           size_t off, size_t len, ml_add_cb cb, void *arg);

/* The last entry id acknowledged to the writer, or -1. For a ledger opened for reading: the
 * last entry id of the closed ledger (or of the recovered one). */
int64_t ml_ledger_last_confirmed(const ml_ledger *l);
int64_t ml_ledger_id(const ml_ledger *l);
int64_t ml_ledger_length(const ml_ledger *l); /* payload bytes acknowledged */
ml_ledger_state ml_ledger_state_get(const ml_ledger *l);

/* Closes a ledger opened for writing: waits for pending adds, then writes CLOSED metadata
 * with the last entry id and length (CAS). Frees the handle after cb. */
int ml_ledger_close(ml_ledger *l, ml_done_cb cb, void *arg);

/* Opens an existing ledger for reading. recover = false: the metadata as it is (a ledger still
 * OPEN is read up to the LAC its bookies report). recover = true: if it is not CLOSED, fence it
 * on enough bookies of its last ensemble that no writer can reach ack quorum any more, find its
 * last entry (the highest entry readable from ack quorum... as BookKeeper: read forward from the
 * highest LAC the bookies report until an entry is missing), write CLOSED metadata (CAS; if
 * another recovery closed it first, use that). Errors to cb: MG_ENOTFOUND (no such ledger). */
int ml_ledger_open(ml_env *env, int64_t ledger_id, bool recover, ml_ledger_cb cb, void *arg);

/* Reads entries first..last (last <= the last confirmed entry), at most max_bytes (at least one
 * entry), from a bookie of the entry's ensemble, trying the next bookie of the write set when
 * one fails. */
int ml_ledger_read(ml_ledger *l, int64_t first, int64_t last, uint32_t max_bytes, ml_read_cb cb,
                   void *arg);

/* Frees a handle opened for reading (no metadata change). */
void ml_ledger_release(ml_ledger *l);

/* Deletes a ledger: from every bookie of every ensemble, then its metadata. */
int ml_ledger_delete(ml_env *env, int64_t ledger_id, ml_done_cb cb, void *arg);

/* --- managed ledgers ---------------------------------------------------------------------- */

typedef struct ml_position {
    int64_t ledger_id;
    int64_t entry_id;
} ml_position;

#define ML_POSITION_EARLIEST ((ml_position){ -1, -1 })

/* Orders positions: negative, zero or positive as a <, =, > b. */
int ml_position_cmp(ml_position a, ml_position b);

typedef struct ml_managed ml_managed;

typedef struct ml_config {
    int64_t entries_per_ledger_max; /* roll over after this many entries; 0 = 50000 (Pulsar) */
    int64_t ledger_bytes_max;       /* roll over after this many bytes; 0 = 2 GiB */
    int64_t ledger_age_ms_max;      /* roll over a ledger older than this; 0 = 4 h (Pulsar) */
    int64_t retention_time_ms;      /* keep consumed ledgers this long; -1 = forever */
    int64_t retention_bytes;        /* keep consumed ledgers up to this size; -1 = unlimited.
                                       A consumed ledger goes once it is outside either limit;
                                       both 0: at once; a 0 beside a non-zero other: that one
                                       does not limit (see managed.c, RETENTION) */
} ml_config;

/* An entry as stored: the broker's prefix parsed, the payload as the client sent it. */
typedef struct ml_entry {
    ml_position position;
    int64_t broker_timestamp_ms;     /* BrokerEntryMetadata.broker_timestamp */
    int64_t index;                   /* BrokerEntryMetadata.index: offset of its last message */
    mg_buf *buf;                     /* the stored bytes, prefix included (zero-copy dispatch) */
    size_t off, len;                 /* the whole stored entry (or only the payload: entries
                                        from the tail cache, see ml_set_added_listener) */
    size_t payload_off, payload_len; /* the part after the prefix */
} ml_entry;

typedef void (*ml_managed_cb)(int status, ml_managed *ml, void *arg);
typedef void (*ml_madd_cb)(int status, ml_position pos, int64_t index, void *arg);
typedef void (*ml_mread_cb)(int status, const ml_entry *entries, size_t count, void *arg);
typedef void (*ml_find_cb)(int status, ml_position pos, void *arg);

/* Opens (creating if new) the managed ledger of name ("tenant/ns/persistent/topic"): reads its
 * ledger list, recovers its last ledger (fencing out a previous owner), creates a new ledger
 * and writes the list (CAS: if another owner changed it meanwhile, MG_EFENCED). A list marked
 * terminated (ml_terminate) gets no new ledger: it is written back with its last ledger
 * recovered and its empty ledgers dropped, and the managed ledger opens terminated
 * (ml_is_terminated; adds refused; reads, finds, retention and close work). */
int ml_open(ml_env *env, const char *name, const ml_config *config, ml_managed_cb cb, void *arg);

/* Appends an entry of num_messages messages (a Pulsar batch): the BrokerEntryMetadata prefix
 * is written before payload[off, off + len). cb gets the position and the entry's index.
 * Errors: MG_EAGAIN (too many pending adds), MG_ESTATE (closing, fenced, terminated, or
 * ml_terminate called on this handle, even if that termination failed). To cb: MG_EFENCED when
 * another broker took the topic over. */
int ml_add(ml_managed *ml, mg_buf *payload, size_t off, size_t len, int32_t num_messages,
           ml_madd_cb cb, void *arg);

/* Reads entries from position from (inclusive) onwards, at most max_entries and max_bytes
 * (at least one), across ledger boundaries; count 0 with MG_OK means from is past the end (of a
 * terminated managed ledger: the reader has everything there will ever be). MG_ENOTFOUND with
 * count 0: the first entry to read is in a lost ledger (ml_ledger_lost; a read that reaches one
 * after some entries returns those with MG_OK). */
int ml_read(ml_managed *ml, ml_position from, int max_entries, uint32_t max_bytes, ml_mread_cb cb,
            void *arg);

/* Called with every entry whose add completed, in position order, right before the add's own
 * callback: entry->buf is the payload the writer passed to ml_add (take a reference to keep it:
 * the tail cache keeps the very buffer that went to the bookies), entry->off == payload_off and
 * entry->len == payload_len (the prefix is not part of the view: pw_bem_encode with the entry's
 * broker_timestamp_ms and index rebuilds it, byte for byte).
 * One listener per managed ledger; fn NULL removes it. Runs on the managed ledger's loop. */
typedef void (*ml_added_fn)(void *arg, const ml_entry *entry);
void ml_set_added_listener(ml_managed *ml, ml_added_fn fn, void *arg);

/* Entries and stored bytes of ledger ledger_id of the list (the current ledger: what was
 * acknowledged so far). MG_ENOTFOUND when it is not in the list. */
int ml_ledger_size(const ml_managed *ml, int64_t ledger_id, int64_t *entries, int64_t *bytes);

/* The position of the last entry added (ledger_id -1 when the log is empty). */
ml_position ml_last_position(const ml_managed *ml);
/* The first position that holds an entry (after trimming), or the next position to be written. */
ml_position ml_first_position(const ml_managed *ml);
/* The next position after pos (skipping to the next ledger at a ledger's end). */
ml_position ml_next_position(const ml_managed *ml, ml_position pos);
/* Entries between two positions (a inclusive, b inclusive), computed from the ledger list. */
int64_t ml_entries_between(const ml_managed *ml, ml_position a, ml_position b);
/* Messages stored so far (the next message's index). */
int64_t ml_messages_total(const ml_managed *ml);
int64_t ml_entries_total(const ml_managed *ml);
int64_t ml_bytes_total(const ml_managed *ml);

/* One ledger of a managed ledger's list, as the admin API's internal stats show it. */
typedef struct ml_ledger_info {
    int64_t ledger_id;
    int64_t entries;      /* closed: its entry count; the current ledger: adds acknowledged */
    int64_t size_bytes;   /* stored bytes (BrokerEntryMetadata prefixes included), likewise */
    int64_t timestamp_ms; /* when it was closed (wall clock); 0 while it is open */
    bool closed;
    bool lost; /* its entries cannot be read (ml_ledger_lost) */
} ml_ledger_info;

/* Copies the first min(cap, total) ledgers of the current list into out[0, cap), oldest first
 * (the ledger being written, if any, last); returns the total, so a caller whose cap was too
 * small can ask again with a larger array (out may be NULL when cap is 0). A snapshot: the
 * list changes with rollovers and retention. No metadata read; never fails. */
size_t ml_ledgers(const ml_managed *ml, ml_ledger_info *out, size_t cap);
/* Lost ledgers (Pulsar's non-recoverable data): a ledger of the list whose entries its bookies
 * or the metadata store no longer have (deleted outside Magnetar, a bookie's disk lost). The
 * managed ledger marks one, in memory, when opening finds the last ledger's metadata gone or its
 * last entry unreadable, or when a read or find meets MG_ENOTFOUND for an entry the list says a
 * closed ledger holds (never the ledger being written); each is logged once (MG_ERROR) and
 * counted in ml_lost_ledgers_total. ml_read from a position in a lost ledger calls back
 * MG_ENOTFOUND (no entries) without bookie I/O; ml_find_by_* leave lost ledgers out. Moving a
 * reader past one is the caller's choice (mc_cursor_opts.skip_lost_ledgers, an operator's skip
 * or reset). A new open of the managed ledger finds them again when they are read. */
bool ml_ledger_lost(const ml_managed *ml, int64_t ledger_id);
/* Ledgers of the current list marked lost. */
size_t ml_lost_ledger_count(const ml_managed *ml);
/* Records that a cursor skipped entries (>= 0) of a lost ledger: added to
 * ml_lost_entries_skipped_total and to the metric ml_lost_entries_skipped_total. */
void ml_lost_entries_skipped(ml_managed *ml, int64_t entries);
/* Entries skipped in lost ledgers by the cursors of this managed ledger since it was opened. */
int64_t ml_lost_entries_skipped_total(const ml_managed *ml);

const char *ml_name(const ml_managed *ml);
ml_env *ml_managed_env(const ml_managed *ml);
/* The metadata path of the managed ledger: "/managed-ledgers/<name>" (cursors live below it). */
const char *ml_metadata_path(const ml_managed *ml);

/* The first position whose broker timestamp is >= timestamp_ms (binary search over ledgers,
 * then over entries, reading entries), or the next position to be written. */
int ml_find_by_time(ml_managed *ml, int64_t timestamp_ms, ml_find_cb cb, void *arg);
/* The position of the entry holding message index (binary search as above). */
int ml_find_by_index(ml_managed *ml, int64_t index, ml_find_cb cb, void *arg);

/* Tells the managed ledger the oldest position any cursor still needs (its slowest mark-delete
 * position + 1); ledgers entirely before it and outside retention are deleted (list updated
 * with CAS first, then the ledgers). */
void ml_set_oldest_needed(ml_managed *ml, ml_position pos);

/* Changes the retention of an open managed ledger (ml_config's retention_time_ms and
 * retention_bytes, same meanings) and runs the retention check at once: ledgers already consumed
 * that are outside the new retention are deleted as ml_set_oldest_needed deletes them. Calling it
 * with unchanged values re-runs the check, which is how time-based retention deletes a ledger
 * whose time ran out while nothing else happened (no rollover, no cursor moving). A check that
 * cannot run now (a rollover, a list write, a termination under way) runs once that is done;
 * on a closing or fenced managed ledger it does nothing. MG_EINVAL (NULL, a value below -1). */
int ml_set_retention(ml_managed *ml, int64_t retention_time_ms, int64_t retention_bytes);

/* Terminates the managed ledger (Pulsar's "terminate topic"): no entry is ever added again,
 * on this handle or by any later owner. From this call on ml_add returns MG_ESTATE; adds it
 * accepted before complete as usual (through a rollover if one is due). Once they have all
 * called back and no rollover runs, the current ledger is closed (as a rollover closes it; no
 * new ledger is created, and a rollover under way that no add needs any more lists none) and
 * the ledger list is written with compare-and-set, marked terminated (ManagedLedgerInfo's
 * terminated, terminated_ledger_id and terminated_entry_id fields) at the last position; an
 * empty last ledger is left out of the list and deleted.
 * cb gets MG_OK and the position of the last entry (ledger_id -1 when the log is empty), which
 * is ml_last_position from then on. On a terminated managed ledger (also one opened
 * terminated) cb gets MG_OK and the same position, from the loop without any I/O. Calls made
 * while a termination runs wait for it and get its outcome.
 * Errors returned (cb not called): MG_EINVAL (NULL), MG_ESTATE (opening or closing),
 * MG_EFENCED (already fenced and not terminated), MG_EAGAIN (16 calls already waiting),
 * MG_ENOMEM. Errors to cb: MG_EFENCED (another owner took the managed ledger over: the list
 * was not written by us, or the ledger was fenced), metadata errors (MG_ECONNECTION, MG_EIO,
 * MG_ELIMIT, ...): then the list in the store is not marked, adds stay refused on this handle,
 * and calling ml_terminate again retries the list write.
 * ml_close called meanwhile waits for the termination to finish. */
int ml_terminate(ml_managed *ml, ml_find_cb cb, void *arg);

/* Whether the managed ledger is terminated: true once ml_terminate's list write succeeded, or
 * from the open of a managed ledger whose list is marked terminated. Stays true if the managed
 * ledger is fenced later. Never fails. */
bool ml_is_terminated(const ml_managed *ml);

/* Whether the managed ledger learnt that another writer recovered its current ledger (another
 * broker owns the log now): ml_add refuses with MG_ESTATE from then on, and the adds still in
 * flight complete, in order, with MG_OK or MG_EFENCED. Never fails. */
bool ml_is_fenced(const ml_managed *ml);

/* Closes: waits for pending adds (and a termination under way), closes the current ledger,
 * frees after cb. */
int ml_close(ml_managed *ml, ml_done_cb cb, void *arg);

/* Deletes the managed ledger of name for good; it must not be open anywhere (in this process
 * the caller closes it first: nothing here knows which managed ledgers are open). Steps, each
 * waiting for the one before:
 *   1. read /managed-ledgers/<name> and decode its ledger list;
 *   2. write the node back unchanged with compare-and-set on the version read: an owner that
 *      still holds the list can no longer write it (its compare-and-set fails: MG_EFENCED
 *      while the node exists), and if the node changed since it was read, nothing has been
 *      deleted yet;
 *   3. delete every child node (the durable cursors), one at a time;
 *   4. delete every ledger of the list (ml_ledger_delete: bookies, then /ledgers/<id>), one at a
 *      time, oldest first;
 *   5. delete the node with compare-and-set on the version written in step 2.
 * Only the node goes: its parents (/managed-ledgers/<tenant>/<ns>/persistent) stay for the
 * namespace's other topics. A later ml_open of the same name starts an empty log.
 * A cursor node or a ledger already gone counts as deleted, and so does the node itself found
 * gone at step 5; so after any error, calling again finishes the job (what was deleted stays
 * deleted, nothing is deleted twice). No retry on a version conflict: the list changed because
 * another broker opened the managed ledger, and deleting what that owner now writes is for the
 * caller to decide.
 * Errors returned (cb not called): MG_EINVAL (name as for ml_open, NULL cb), MG_ENOMEM, the
 * metadata client's immediate errors (MG_ELIMIT, MG_ECLOSED). Errors to cb: MG_ENOTFOUND (no
 * such managed ledger: no node, or a node with no value, which is a parent such as
 * ".../persistent", not a managed ledger), MG_ECORRUPT (the list does not parse: nothing
 * deleted), MG_EBADVERSION (the node changed under step 2 or step 5: at step 2 nothing was
 * deleted, at step 5 the cursors and listed ledgers are gone and the node stays),
 * MG_ENOTEMPTY (a child appeared after step 3, or a cursor node has children), metadata
 * errors (MG_ECONNECTION, MG_EIO, MG_ECLOSED) from any step: the steps before it are done,
 * the rest not. A bookie that cannot be reached keeps its copy of a ledger (ml_ledger_delete
 * logs it and deletes the metadata anyway). */
int ml_delete_stored(ml_env *env, const char *name, ml_done_cb cb, void *arg);

#endif
