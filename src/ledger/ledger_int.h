/*
 * Internals of the ledger module shared by env.c, bkledger.c, managed.c and delete.c: the
 * environment, the in-memory form of LedgerMetadata and small helpers (the BrokerEntryMetadata
 * prefix codec is the pulsar module's, pulsar/wire.h). Nothing here is used outside src/ledger.
 */
#ifndef MG_LEDGER_LEDGER_INT_H
#define MG_LEDGER_LEDGER_INT_H

#include "ledger/ledger.h"

#include "common/freelist.h"
#include "ledger/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ml_env {
    uv_loop_t *loop;
    md_client *md;
    bk_client *bk;
    int ensemble_size;
    int write_quorum;
    int ack_quorum;
    uint32_t add_timeout_ms;
    uint32_t pending_adds_max;
    mg_metrics *metrics;
    mg_histogram *m_add_latency; /* ml_add_latency_ms: recorded in microseconds */
    mg_counter *m_rollovers;
    mg_counter *m_ensemble_changes;
    mg_counter *m_recoveries;
    mg_counter *m_lost_ledgers; /* ml_lost_ledgers_total */
    mg_counter *m_lost_skipped; /* ml_lost_entries_skipped_total */
    uint64_t rng;               /* xorshift64* state (bookie choice) */
    int64_t objects;            /* ledger handles, managed ledgers and module operations alive */
    mg_freelist op_pool;        /* managed.c's add operations (ml__op), reused on this loop */
};

/* --- per-entry requests ------------------------------------------------------------------------
 * A produced entry crosses the module in two requests: the managed ledger's add operation
 * (managed.c, ml__op), which embeds the bookie ledger's add request (ml__add, below), as a libuv
 * caller embeds a uv_write_t in its own context. The operations come from the env's free list
 * (op_pool: one per loop, ops are freed on the loop before the env can be destroyed); the
 * bookie requests of one add (one per write-set slot) come from the ledger's own free list,
 * because a late answer may arrive after the add completed and its operation was reused. */

/* The bookie ledger's add request (ml__ledger_add). Owned by the caller, who embeds it in its
 * own per-entry context; the ledger holds it from a successful ml__ledger_add until it calls cb
 * and never touches it afterwards, so the caller may free or reuse it from inside cb (answers
 * of its bookies that arrive later find only the ledger). All fields are the ledger's. */
typedef struct ml__add {
    int64_t entry_id;
    mg_buf *buf;
    size_t off, len;
    uint8_t
        prefix[ML_ADD_PREFIX_BYTES_MAX]; /* stored before buf's bytes (ml_ledger_add_prefixed) */
    uint8_t prefix_len;
    bool owned; /* allocated by the ledger (ml_ledger_add_prefixed): freed by it */
    ml_add_cb cb;
    void *arg;
    uint32_t acked;    /* write-set slots that confirmed */
    uint32_t inflight; /* slots with a request outstanding */
    uint32_t unsent;   /* slots not sent: bookie being replaced, or the client was busy */
    int acks;
    uint64_t seq[ML_ENSEMBLE_SIZE_MAX];     /* per slot: the request whose answer counts */
    uint64_t sent_ms[ML_ENSEMBLE_SIZE_MAX]; /* per slot: when it was sent (uv_now) */
} ml__add;

/* ml_ledger_add_prefixed with a request the caller owns (a, zeroed or reused after its
 * callback ran; see ml__add). Same arguments, errors and callback otherwise; on an error a is
 * not held. */
int ml__ledger_add(ml_ledger *l, ml__add *a, const uint8_t *prefix, size_t prefix_len, mg_buf *buf,
                   size_t off, size_t len, ml_add_cb cb, void *arg);

/* A uniformly distributed random number (not cryptographic) from the env's generator. */
uint64_t ml__rand(ml_env *env);

/* --- ledger metadata (proto/ledger.proto LedgerMetadata) ------------------------------------ */

typedef struct ml__ensemble {
    int64_t first_entry_id;
    char *bookies[ML_ENSEMBLE_SIZE_MAX]; /* ensemble_size of them, mg_malloc'd */
} ml__ensemble;

typedef struct ml__meta {
    int ensemble_size;
    int write_quorum;
    int ack_quorum;
    ml_ledger_state state;
    int64_t last_entry_id; /* -1 unless CLOSED */
    int64_t length;
    int64_t ctime_ms;
    ml__ensemble *ensembles; /* first_entry_id strictly increasing, the first is 0 */
    size_t ensemble_count;
} ml__meta;

/* Parses and validates (1 <= ack <= write <= ensemble <= ML_ENSEMBLE_SIZE_MAX, at least one
 * ensemble and at most ML_ENSEMBLES_MAX, each with ensemble_size addresses, increasing first
 * ids starting at 0). *out is owned by the caller (ml__meta_free). MG_ECORRUPT or MG_ENOMEM. */
int ml__meta_decode(const void *data, size_t len, ml__meta *out);
/* Serialises m into a new mg_malloc'd buffer (*out, *out_len). MG_ENOMEM. */
int ml__meta_encode(const ml__meta *m, uint8_t **out, size_t *out_len);
/* Deep copy. MG_ENOMEM (dst then empty). */
int ml__meta_copy(const ml__meta *src, ml__meta *dst);
void ml__meta_free(ml__meta *m);
/* The index of the ensemble that holds entry_id (entry_id >= 0). */
size_t ml__meta_ensemble_of(const ml__meta *m, int64_t entry_id);

/* "/ledgers/<id>" into buf (at least 32 bytes). */
void ml__ledger_path(int64_t ledger_id, char *buf, size_t buf_size);

/* --- managed-ledger nodes ------------------------------------------------------------------ */

#define ML__MANAGED_PATH_PREFIX "/managed-ledgers/"
/* Unpacks a managed ledger's list (ManagedLedgerInfo, proto/ledger.proto) and checks what
 * every reader relies on: at most ML_LEDGERS_MAX ledgers, ids >= 0 and strictly increasing.
 * [out] *out (a Magnetar__Ledger__ManagedLedgerInfo *, freed by the caller with
 * magnetar__ledger__managed_ledger_info__free_unpacked). MG_ECORRUPT or MG_ENOMEM. */
int ml__info_unpack(const void *value, size_t len, void **out);

/* Bytes of a managed ledger's metadata path, terminator included. */
#define ML__MANAGED_PATH_BYTES (sizeof(ML__MANAGED_PATH_PREFIX) + ML_NAME_BYTES_MAX)

/* Checks a managed-ledger name (non-empty, shorter than ML_NAME_BYTES_MAX, not starting with
 * '/'; the metadata store checks the rest) and writes "/managed-ledgers/<name>" into buf
 * (ML__MANAGED_PATH_BYTES). MG_OK or MG_EINVAL. */
int ml__managed_path(const char *name, char *buf, size_t buf_size);

#endif
