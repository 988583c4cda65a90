/*
 * The fixed limits of ledgers and managed ledgers (src/ledger), each with the reason for its
 * value; relations between them, and with the metadata store's and the Pulsar topic names'
 * limits, are checked at compile time at the end (docs/common.md, "Limits").
 */
#ifndef MG_LEDGER_LIMITS_H
#define MG_LEDGER_LIMITS_H

#include "metadata/limits.h"
#include "pulsar/limits.h"

/* Ledgers and managed ledgers (piece: ledger, src/ledger). */
/* Bookies in one ensemble. BookKeeper ensembles are 2-5 bookies; striping over more gains
 * nothing, and recovery fences every one of them. Per-entry bookie sets are 32-bit masks. */
#define ML_ENSEMBLE_SIZE_MAX        16
/* Ensembles of one ledger (one per ensemble change). 1024 ensembles of 16 addresses stay under
 * half of the metadata store's 1000 KiB value; a ledger that lost a thousand bookies is better
 * closed (the add fails with MG_ELIMIT, the managed ledger rolls over). */
#define ML_ENSEMBLES_MAX            1024
/* Bookies remembered as failed by one ledger's writer (never chosen again as a replacement). */
#define ML_EXCLUDED_BOOKIES_MAX     64
/* Compare-and-set rounds on one metadata node when the version moved but the state still
 * allows the write (a concurrent recovery bumping the version); more means a fight. */
#define ML_MD_ATTEMPTS_MAX          8
/* Whole recovery restarts (the metadata changed under it before it could be fenced). */
#define ML_RECOVERY_ATTEMPTS_MAX    8
/* Entries one ml_ledger_read gathers with single-entry reads when the ensemble is striped
 * (ensemble_size > write_quorum: no bookie holds a contiguous range). */
#define ML_STRIPED_READ_ENTRIES_MAX 64
/* A managed ledger's name "tenant/namespace/persistent/topic": Pulsar caps topic names well
 * below this, and "/managed-ledgers/" + name + "/" + a cursor name must fit MD_PATH_BYTES_MAX
 * (1024). */
#define ML_NAME_BYTES_MAX           512
/* Ledgers in one managed ledger's list: a LedgerInfo is about 30 bytes, so 20000 of them stay
 * under the metadata store's 1000 KiB value. At the limit the current ledger stops rolling
 * over (retention normally keeps the list far shorter). */
#define ML_LEDGERS_MAX              20000
/* Read handles of closed ledgers a managed ledger keeps open (catch-up readers touch one or
 * two ledgers at a time; each handle costs a metadata read to open). */
#define ML_READ_HANDLES_MAX         8
/* Entries returned by one ml_read: Pulsar dispatches at most a few hundred per read; this caps
 * the array allocated for the result. */
#define ML_READ_ENTRIES_MAX         10000
/* Ledgers one add is written to before its error is reported: a failed ledger is closed and
 * the add retried on the next one (ordering and message indexes kept), at most this often. */
#define ML_ADD_ATTEMPTS_MAX         3
/* Pending-add timer of a writing ledger: checks add timeouts at a quarter of add_timeout_ms,
 * within these bounds. */
#define ML_TIMER_PERIOD_MS_MIN      5
#define ML_TIMER_PERIOD_MS_MAX      1000

/* Ledger environment defaults (src/ledger/env.c; ml_env_opts in ledger.h documents them). */
#define ML_DEFAULT_ADD_TIMEOUT_MS   10000u
#define ML_DEFAULT_PENDING_ADDS_MAX 10000u
/* The pending-add ring grows by doubling; this many adds is plenty for any broker. */
#define ML_PENDING_ADDS_HARD_MAX    (1u << 20)

/* Managed-ledger roll-over defaults (ml_config in ledger.h documents them). */
#define ML_DEFAULT_ENTRIES_MAX    50000
#define ML_DEFAULT_BYTES_MAX      (2ll * 1024 * 1024 * 1024)
#define ML_DEFAULT_AGE_MS         (4ll * 3600 * 1000)
/* Back-off while the bookies refuse writes (STORAGE REFUSING WRITES): the first attempt after
 * one second (an operator may have freed space already), at most one every 30 s (as Pulsar's
 * client reconnect back-off): a full disk is not fixed in milliseconds, and each attempt costs a
 * ledger's creation. */
#define ML_STORAGE_BACKOFF_MS_MIN 1000u
#define ML_STORAGE_BACKOFF_MS_MAX 30000u

/* Per-entry request free lists (ledger_int.h, common/freelist.h). */
/* Released add operations (managed.c ml__op) an env (a loop) keeps for reuse, ~0.4 KiB each (1.6
 * MiB at most): the adds a loop has in flight when every entry holds one message and a group commit
 * acknowledges hundreds at once; past it a burst costs the allocator, as before. A list never holds
 * more than its owner once had in flight. */
#define ML_ADD_OP_POOL_MAX     4096u
/* Released bookie requests (bkledger.c ml__req, 40 bytes) a ledger keeps for reuse (40 KiB at
 * most). */
#define ML_BOOKIE_REQ_POOL_MAX 1024u

/* Relations between the limits above, checked at compile time. */
_Static_assert(ML_ENSEMBLE_SIZE_MAX <= 32, "per-entry bookie sets are 32-bit masks");
_Static_assert(MG_PULSAR_ML_NAME_BYTES_MAX < ML_NAME_BYTES_MAX,
               "the managed-ledger name of the longest topic name must fit ML_NAME_BYTES_MAX");
_Static_assert(sizeof("/managed-ledgers/") - 1 + ML_NAME_BYTES_MAX < MD_PATH_BYTES_MAX,
               "a managed ledger's metadata path must fit MD_PATH_BYTES_MAX");
_Static_assert((unsigned long long)ML_LEDGERS_MAX * 30 <= MD_VALUE_BYTES_MAX,
               "a managed ledger's list of ML_LEDGERS_MAX ledgers (about 30 bytes each) must fit "
               "one metadata value");
_Static_assert(ML_TIMER_PERIOD_MS_MIN <= ML_TIMER_PERIOD_MS_MAX,
               "the pending-add timer period bounds must be ordered");
_Static_assert(ML_DEFAULT_PENDING_ADDS_MAX <= ML_PENDING_ADDS_HARD_MAX,
               "the default of pending adds must be within ML_PENDING_ADDS_HARD_MAX");
_Static_assert(ML_STORAGE_BACKOFF_MS_MIN <= ML_STORAGE_BACKOFF_MS_MAX,
               "the storage back-off starts at or below its maximum");

#endif
