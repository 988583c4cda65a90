/*
 * A bounded multi-producer, single-consumer queue of `void *` items for handing work from any
 * thread to one libuv loop (Magnetar runs one loop per thread; this hand-off is the only lock on
 * the data path).
 *
 * The consumer is a loop: a push wakes it through a uv_async_t, and on that loop's thread the
 * queue passes each item to drain_fn in FIFO order. Wake-ups coalesce: a producer only signals
 * the loop when no wake-up is already pending, and libuv may merge several signals into one
 * callback, so one callback (a "drain pass") takes whatever is queued. A pass handles at most
 * `capacity` items — the ones present when it starts; items pushed meanwhile (by producers or by
 * drain_fn itself) wait for the next pass, which the pass re-arms before returning. So a busy
 * producer cannot keep the loop inside one callback and starve its other handles.
 *
 * A full queue returns MG_EAGAIN: the producer applies backpressure (stops reading its socket,
 * holds flow permits) and retries later; nothing blocks.
 *
 * Why a mutex around a ring and not a lock-free ring: the critical section is a few stores, the
 * consumer takes the lock once per pass (not per item), and the lock is what makes shutdown
 * safe. A push checks "closed", enqueues and (if needed) signals the async handle all under the
 * lock, and close sets "closed" under the same lock; so once close has taken the lock no
 * producer is inside uv_async_send(), and the handle can be closed and its memory freed in the
 * close callback. A lock-free ring would need the same exclusion between the last signal and
 * uv_close() by other means, for a gain this hand-off does not need.
 *
 * Life cycle (every transition on the consumer loop's thread except push):
 *
 *     mg_queue_create --> OPEN --mg_queue_close--> CLOSING --close callback--> freed
 *                          |                          |
 *                 push: OK / MG_EAGAIN          push: MG_ECLOSED
 *
 * Invariants:
 *   1. 0 <= len <= capacity; items come out in the order they went in (per queue: the order in
 *      which pushes took the lock).
 *   2. Every item pushed with MG_OK is passed exactly once, either to drain_fn or (after close
 *      started) to dispose_fn.
 *   3. If items are queued and the queue is open, a drain pass is scheduled.
 */
#ifndef MG_COMMON_QUEUE_H
#define MG_COMMON_QUEUE_H

#include <stdint.h>
#include <uv.h>

typedef struct mg_queue mg_queue;

/* Creates a queue of capacity slots (1 .. MG_QUEUE_CAPACITY_MAX) consumed on consumer_loop.
 * drain_fn(item, arg) (not NULL) runs on the consumer loop's thread for every item, in order;
 * it takes ownership of the item and may push to this queue or close it.
 * Call on the consumer loop's thread (the one that runs consumer_loop). The queue's async handle
 * keeps the loop alive until mg_queue_close. On success *out is the queue, owned by the caller
 * until mg_queue_close. Returns MG_OK, MG_EINVAL (capacity out of range), MG_ENOMEM, or the
 * converted libuv error if the async handle or mutex cannot be set up; on error *out is left
 * unchanged and nothing stays allocated or registered on the loop. */
int mg_queue_create(uv_loop_t *consumer_loop, uint32_t capacity,
                    void (*drain_fn)(void *item, void *arg), void *arg, mg_queue **out);

/* Appends item (any value, NULL included) from any thread. On MG_OK the queue owns the item
 * until it is handed to drain_fn or dispose_fn; on error the caller keeps it.
 * Returns MG_OK, MG_EAGAIN when the queue holds `capacity` items (apply backpressure and retry
 * later), or MG_ECLOSED once mg_queue_close has started. The queue pointer must still be valid:
 * producers must be stopped, or have dropped the pointer, before closed_fn returns. */
int mg_queue_push(mg_queue *queue, void *item);

/* Starts closing the queue, on the consumer loop's thread (also from inside drain_fn). Further
 * pushes return MG_ECLOSED. Every item still queued (and, when called from drain_fn, every item
 * of the current pass not yet drained) is passed to dispose_fn(item, arg) right away, in FIFO
 * order; with dispose_fn NULL those items are simply forgotten. Then the async handle is closed;
 * from its close callback closed_fn(arg) runs (if not NULL) and afterwards the queue's memory is
 * freed, so the queue must not be used after closed_fn starts. The loop must run for closed_fn
 * to be called. Calling it twice is a programmer error (asserted). */
void mg_queue_close(mg_queue *queue, void (*dispose_fn)(void *item, void *arg),
                    void (*closed_fn)(void *arg), void *arg);

/* The number of items queued now (0 once close has started). Any thread; a snapshot that other
 * threads may change the next moment. */
uint32_t mg_queue_len(mg_queue *queue);

/* The capacity given to mg_queue_create. Any thread. */
uint32_t mg_queue_capacity(const mg_queue *queue);

#endif
