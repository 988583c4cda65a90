/*
 * The bookie RPC client, the module's public header for brokers (target mg_bookie_client, which
 * does not link the storage engine): asynchronous requests to bookies over the RPC wire format
 * (private to the module, protocol.h), on one libuv loop. It exports the client, bk_entry (the
 * entry views it hands out, shared with the storage API of bookie/bookie.h) and the defaults
 * that belong to its calls; the limits it refers to are in bookie/limits.h. A bookie in the
 * same process is reached without TCP once bk_local_attach (bookie/bookie.h) routes its
 * address.
 *
 * One connection per bookie address ("host:port", made on first use), requests pipelined on it
 * and matched to responses by request id. Every function is called on the client's loop and
 * every callback runs on it, never inside the call that started the request. A function that
 * returns an error never calls its callback; one that returns MG_OK calls it exactly once.
 *
 * Errors a callback may get, besides the bookie's own status (MG_EFENCED, MG_ENOTFOUND,
 * MG_EREADONLY, MG_EINVAL, MG_ELIMIT, MG_ENOTSUP, MG_EAGAIN, MG_EIO, ...):
 *   MG_ETIMEDOUT    no answer within request_timeout_ms (the connection is kept; a late answer
 *                   is dropped)
 *   MG_ECONNECTION  the connection could not be made (refused, unresolvable, connect timeout)
 *                   or was lost, or the bookie broke the protocol (the connection is closed);
 *                   the next request reconnects
 *   MG_ECLOSED      the client was closed
 *   MG_EPROTO       the bookie's answer did not match the request
 * Synchronous errors (returned, no callback): MG_EINVAL (bad address or argument), MG_ELIMIT
 * (payload over BK_ENTRY_BYTES_MAX, too many addresses), MG_EAGAIN (pending_max requests already
 * wait for that address), MG_ECLOSED (client closing), MG_ENOMEM.
 */
#ifndef MG_BOOKIE_CLIENT_H
#define MG_BOOKIE_CLIENT_H

#include "common/buf.h"
#include "bookie/limits.h" /* BK_ENTRY_BYTES_MAX, BK_CLIENT_*: the limits named here */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The bookie RPC's usual TCP port. */
#define BK_RPC_PORT_DEFAULT 3181

/* An entry's bytes are buf[off, off + len); the holder of a bk_entry borrows buf unless it says
 * otherwise. The storage engine (bookie/bookie.h) hands out entries the same way. */
typedef struct bk_entry {
    int64_t entry_id;
    mg_buf *buf;
    size_t off;
    size_t len;
} bk_entry;

/* The most bytes bk_client_add_prefixed puts in front of an entry's payload. */
#define BK_REQUEST_PREFIX_BYTES_MAX 256u

typedef struct bk_client bk_client;

typedef struct bk_client_opts {
    uint32_t request_timeout_ms; /* 0 = BK_CLIENT_REQUEST_TIMEOUT_MS_DEFAULT (10 s) */
    uint32_t connect_timeout_ms; /* 0 = BK_CLIENT_CONNECT_TIMEOUT_MS_DEFAULT (5 s), includes
                                    name resolution */
    uint32_t pending_max;        /* per connection; 0 = BK_CLIENT_PENDING_DEFAULT; at most
                                    BK_CLIENT_PENDING_MAX; past it calls return MG_EAGAIN */
} bk_client_opts;

/* Creates a client on loop (opts may be NULL: all defaults). *out is owned by the caller until
 * bk_client_close's callback. Returns MG_OK, MG_EINVAL (pending_max too large) or MG_ENOMEM.
 * Call on the loop's thread. */
int bk_client_create(uv_loop_t *loop, const bk_client_opts *opts, bk_client **out);

/* Closes every connection; every request not yet answered completes with MG_ECLOSED (from the
 * loop, before closed runs), calls made meanwhile return MG_ECLOSED, then closed(arg) runs (may
 * be NULL) and the client is freed. Call once. */
void bk_client_close(bk_client *c, void (*closed)(void *arg), void *arg);

/* ADD: ledger_id, entry_id echo the request. */
typedef void (*bk_client_add_cb)(int status, int64_t ledger_id, int64_t entry_id, void *arg);
/* READ, READ_RANGE: entries[0..count) in entry order (count 0 on error). The entries are views
 * into the response's buffer, valid during the callback: take a reference with mg_buf_ref to
 * keep one (no copy is made). */
typedef void (*bk_client_read_cb)(int status, const bk_entry *entries, size_t count, void *arg);
/* READ_LAC, FENCE: the highest entry id stored (-1: none). */
typedef void (*bk_client_lac_cb)(int status, int64_t last_entry_id, void *arg);
typedef void (*bk_client_done_cb)(int status, void *arg);

/* Stores buf[off, off + len) as entry entry_id of ledger_id on the bookie at addr. The client
 * takes a reference to buf until the bytes are written (no copy). ids >= 0. */
int bk_client_add(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id, mg_buf *buf,
                  size_t off, size_t len, bk_client_add_cb cb, void *arg);

/* As bk_client_add, storing prefix[0, prefix_len) || buf[off, off + len) as the entry: the
 * prefix (at most BK_REQUEST_PREFIX_BYTES_MAX bytes) is copied, the payload is not. The managed
 * ledger puts its per-entry metadata in front of a message this way. */
int bk_client_add_prefixed(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id,
                           const uint8_t *prefix, size_t prefix_len, mg_buf *buf, size_t off,
                           size_t len, bk_client_add_cb cb, void *arg);

/* Reads one entry (MG_ENOTFOUND when it is not stored). */
int bk_client_read(bk_client *c, const char *addr, int64_t ledger_id, int64_t entry_id,
                   bk_client_read_cb cb, void *arg);

/* Reads entries first..last (inclusive, first <= last) in order, stopping at the first missing
 * one or once max_bytes of payload are reached (at least one entry; max_bytes 0 or above the
 * bookie's cap means the cap, 16 MiB by default). */
int bk_client_read_range(bk_client *c, const char *addr, int64_t ledger_id, int64_t first,
                         int64_t last, uint32_t max_bytes, bk_client_read_cb cb, void *arg);

/* The highest entry id stored for the ledger (MG_ENOTFOUND for an unknown ledger). */
int bk_client_read_lac(bk_client *c, const char *addr, int64_t ledger_id, bk_client_lac_cb cb,
                       void *arg);

/* Fences the ledger (later adds fail with MG_EFENCED); answers its last entry id. */
int bk_client_fence(bk_client *c, const char *addr, int64_t ledger_id, bk_client_lac_cb cb,
                    void *arg);

/* Deletes the ledger. */
int bk_client_delete(bk_client *c, const char *addr, int64_t ledger_id, bk_client_done_cb cb,
                     void *arg);

/* MG_OK when the bookie is up and writable, MG_EREADONLY when it is up and read-only. */
int bk_client_health(bk_client *c, const char *addr, bk_client_done_cb cb, void *arg);

#endif
