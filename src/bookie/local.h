/*
 * The in-process path between a bk_client and a bk_storage of the same process
 * (../shared/ARCHITECTURE.md §4, §6: standalone's broker reaches its bookie without loopback
 * TCP). The storage stays on its own loop and thread; requests cross to it through one bounded
 * queue and answers come back through another (common/queue.h), so neither loop ever waits for
 * the other. The bytes never move: an add hands the storage a reference to the writer's payload
 * (with the small prefix in front of it, the one copy, made on the storage's thread), and a read
 * hands the client references to the storage's buffers.
 *
 * Life cycle (the order `magnetar standalone` follows):
 *
 *     bk_local_create (storage thread) --> bk_local_attach (client thread) --> serving
 *        --> the client closes (every request answered) --> bk_local_detach (client thread)
 *        --> bk_local_close (storage thread, before the storage closes) --> freed once both
 *            queues are closed
 *
 * Bounds: at most BK_LOCAL_INFLIGHT_MAX requests are in flight (past it the client's call
 * returns MG_EAGAIN, as a full connection would); the answer queue is as large, so an answer
 * always finds room.
 */
#ifndef MG_BOOKIE_LOCAL_H
#define MG_BOOKIE_LOCAL_H

#include "bookie/client.h"
#include "bookie/storage.h"

#include <uv.h>

/* Requests in flight: as many as a client keeps pending on one connection. */
#define BK_LOCAL_INFLIGHT_MAX 65536u

typedef struct bk_local bk_local;

/* Creates the transport for storage, whose loop is storage_loop; call on that loop's thread.
 * MG_ENOMEM, or the queue's errors. */
int bk_local_create(uv_loop_t *storage_loop, bk_storage *storage, bk_local **out);

/* Routes client's requests for addr (the bookie's advertised "host:port") to the storage. Call
 * on client_loop's thread, once. MG_EINVAL, MG_ENOMEM. */
int bk_local_attach(bk_local *l, uv_loop_t *client_loop, bk_client *client, const char *addr);

/* The client side is done (its client closed: nothing in flight). Call on the client loop's
 * thread, then run that loop until its handles closed. */
void bk_local_detach(bk_local *l);

/* The storage side is done; call on the storage loop's thread before the storage closes. The
 * transport is freed once both sides are closed. */
void bk_local_close(bk_local *l);

#endif
