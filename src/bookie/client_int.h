/*
 * Private to src/bookie: the client's hook for a bookie in the same process.
 *
 * `magnetar standalone` runs its bookie in the same process, on a loop and thread of its own.
 * Requests for that bookie's address need not cross loopback TCP (two copies of every byte and
 * the TCP stack on both sides): bk_client_set_local hands them to a transport (local.c, whose
 * public side is bk_local_* in bookie/bookie.h) that passes them to the storage's thread and
 * brings the answers back. Entries read travel as references to the storage's buffers, never
 * copied. client.c implements the functions below; local.c is the only transport.
 */
#ifndef MG_BOOKIE_CLIENT_INT_H
#define MG_BOOKIE_CLIENT_INT_H

#include "bookie/client.h"
#include "bookie/protocol.h"
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bk_local_req {
    struct bk_client *client;
    int32_t op; /* BK_OP_ADD, BK_OP_READ, BK_OP_READ_RANGE, BK_OP_READ_LAC, BK_OP_FENCE,
                   BK_OP_DELETE, BK_OP_HEALTH */
    int64_t ledger_id;
    int64_t entry_id;
    int64_t last_entry_id; /* READ_RANGE */
    uint32_t max_bytes;    /* READ_RANGE */
    /* ADD: the entry is prefix[0, prefix_len) || payload[off, off + len) (payload referenced) */
    uint8_t prefix[BK_REQUEST_PREFIX_BYTES_MAX];
    size_t prefix_len;
    mg_buf *payload;
    size_t off, len;
    void *client_req; /* the caller's callback and argument (the client's own record) */
    /* The transport's answer, carried back in the request itself (no allocation on the way
     * back): status, the last entry id for READ_LAC/FENCE, and for reads entries[0..count),
     * each holding a reference to its buffer. */
    void *transport;
    int status;
    int64_t value;
    bk_entry *entries;
    size_t count;
} bk_local_req;

/* Takes req (on MG_OK it must complete it exactly once, on the client's loop, through
 * bk_local_req_complete; on an error return the client keeps it). Called on the client's loop. */
typedef int (*bk_client_local_fn)(void *transport, bk_local_req *req);

/* From now on, requests for addr ("host:port", as ledgers name it) go to fn(transport, req)
 * instead of a connection (fn NULL: back to TCP). One local address per client. They have no
 * timeout: the transport always answers. Call on the client's loop, with no request to addr in
 * flight. MG_EINVAL (addr too long). */
int bk_client_set_local(bk_client *c, const char *addr, bk_client_local_fn fn, void *transport);

/* Completes a local request on the client's loop: its callback runs (entries[0..count) for
 * reads, valid during the callback; value: the last entry id for READ_LAC and FENCE), then req
 * is freed with its payload reference. */
void bk_local_req_complete(bk_local_req *req, int status, const bk_entry *entries, size_t count,
                           int64_t value);

#endif
