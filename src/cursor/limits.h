/*
 * The fixed limits of managed cursors (src/cursor), each with the reason for its value;
 * relations between them, and with the ledger's and the metadata store's limits, are checked at
 * compile time at the end (docs/common.md, "Limits").
 */
#ifndef MG_CURSOR_LIMITS_H
#define MG_CURSOR_LIMITS_H

#include "ledger/limits.h"
#include "metadata/limits.h"

/* Managed cursors (piece: cursor, src/cursor). */
/* Acknowledged-ranges set: containers of 65536 entries; 2^20 of them span 68 G entries above a
 * mark-delete position, far past any backlog a subscription keeps (Pulsar trims at retention),
 * and cap the container headers at 40 MiB per cursor. Past it an ack is refused (MG_ELIMIT) and
 * the entry is simply redelivered. */
#define MC_RANGESET_CONTAINERS_MAX     (1u << 20)
/* A durable cursor is written at most once per this interval while acks arrive (Pulsar's
 * markDeleteRatePerSecond is 1/s): a crash loses at most this much acknowledgement work, which
 * is redelivered, while the metadata store sees one write per cursor per second. */
#define MC_PERSIST_INTERVAL_MS_DEFAULT 1000u
/* CursorInfo size: ZooKeeper refuses values near 1 MiB (the store's own limit is 1000 KiB, hard
 * maximum here), and every persist rewrites the whole node, so the default keeps a write under
 * 256 KiB (about 5000 ranges; Pulsar persists 1000 ranges in the metadata store by default).
 * Ranges past the budget are dropped from the record (redelivered after a crash). */
#define MC_CURSOR_INFO_BYTES_DEFAULT   (256u * 1024)
#define MC_CURSOR_INFO_BYTES_HARD_MAX  (1000u * 1024)
/* A batch's ack set: Pulsar batches hold 1000 messages by default (batchingMaxMessages); 128
 * words (8192 messages) leaves room, and a larger set from a client is refused. */
#define MC_ACK_SET_WORDS_MAX           128u
/* Partially acknowledged batches kept per cursor (each up to 1 KiB of bits); past it a partial
 * ack is refused (the batch is redelivered whole, at-least-once). Pulsar bounds unacked
 * messages per subscription at 200000 by default, far fewer batches. */
#define MC_BATCH_ENTRIES_MAX           65536u
/* Entries dispatched and not yet acknowledged whose message count the cursor remembers (a
 * hash table of 24-byte slots at most half full: 3 MiB at most) for the message backlog; past
 * it an ack counts one message. Pulsar stops dispatching at 200000 unacked messages per
 * subscription (maxUnackedMessagesPerSubscription), i.e. far fewer batches. */
#define MC_PENDING_ENTRIES_MAX         (1u << 16)
/* One mc_read_entries call: Pulsar's dispatcher reads 100 entries at a time by default
 * (dispatcherMaxReadBatchSize); 10000 bounds the filtered array built per call. */
#define MC_READ_ENTRIES_MAX            10000
/* Bookie reads per mc_read_entries while every entry read was already acknowledged (contiguous
 * acked runs are skipped without reading, so this only bounds pathological patterns); past it
 * the call completes with MG_EAGAIN and no entries: call again. */
#define MC_READ_ROUNDS_MAX             64
/* Callers waiting for one flush of a cursor (close, resets, explicit flushes). */
#define MC_FLUSH_WAITERS_MAX           64u
/* A cursor's name is a subscription name; Pulsar keeps them short, and the metadata path
 * (/managed-ledgers/<topic>/<name>) must stay under the store's 1024-byte path limit. */
#define MC_NAME_BYTES_MAX              256u
/* Cursors of one managed ledger in one mc_group (subscriptions of a topic). */
#define MC_GROUP_CURSORS_MAX           4096u

/* Relations between the limits above, checked at compile time. */
_Static_assert(MC_CURSOR_INFO_BYTES_DEFAULT <= MC_CURSOR_INFO_BYTES_HARD_MAX,
               "the default CursorInfo budget must be within MC_CURSOR_INFO_BYTES_HARD_MAX");
_Static_assert(MC_CURSOR_INFO_BYTES_HARD_MAX <= MD_VALUE_BYTES_MAX,
               "a CursorInfo must fit one metadata value");
_Static_assert(sizeof("/managed-ledgers/") - 1 + ML_NAME_BYTES_MAX + 1 + MC_NAME_BYTES_MAX <
                   MD_PATH_BYTES_MAX,
               "a cursor's metadata path (/managed-ledgers/<ledger>/<cursor>) must fit "
               "MD_PATH_BYTES_MAX");
_Static_assert(MC_ACK_SET_WORDS_MAX * 64 >= 1000,
               "an ack set must cover a batch of Pulsar's default 1000 messages");

#endif
