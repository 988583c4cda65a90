/*
 * The cross-loop MPSC queue (see queue.h for the model, the life cycle and the invariants).
 *
 * Fields under `mutex`: ring, head, count, wake_pending, closing (closing is written only by the
 * consumer, under the mutex, so the consumer may also read it without the lock).
 * Consumer-only fields: batch, batch_next, batch_len, dispose/closed callbacks.
 *
 * The wake-up protocol keeps one signal in flight at most:
 *   - wake_pending is true from the push that signals the loop until a drain pass ends with the
 *     ring empty. Producers that find it true do not signal (no eventfd write per item).
 *   - A pass moves the items present at its start to `batch` (one lock), runs drain_fn on them
 *     without the lock, then under the lock either re-signals (items arrived meanwhile; keep
 *     wake_pending) or clears wake_pending (ring empty). Check and clear under one lock, so a
 *     push can never find wake_pending true while no pass is scheduled.
 */
#include "common/queue.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"

#include <stdbool.h>

struct mg_queue {
    uv_async_t async; /* async.data == the queue */
    uv_mutex_t mutex;
    uv_thread_t consumer_thread;
    void (*drain_fn)(void *item, void *arg);
    void *drain_arg;

    /* under mutex */
    void **ring; /* capacity slots; items at head, head + 1, ... (mod capacity) */
    uint32_t head;
    uint32_t count;
    bool wake_pending;
    bool closing;

    /* consumer thread only */
    void **batch; /* the items of the current drain pass */
    uint32_t batch_next;
    uint32_t batch_len;
    void (*closed_fn)(void *arg);
    void *close_arg;

    uint32_t capacity;
};

static void mg__queue_assert_consumer(const mg_queue *queue)
{
    uv_thread_t self = uv_thread_self();
    MG_ASSERT(uv_thread_equal(&self, &queue->consumer_thread));
}

/* Signals the loop; the caller holds the mutex (see the header comment of queue.h on close). */
static void mg__queue_signal_locked(mg_queue *queue)
{
    int rc = uv_async_send(&queue->async);
    MG_ASSERT(rc == 0);
}

static void mg__queue_drain(uv_async_t *async)
{
    mg_queue *queue = async->data;
    mg__queue_assert_consumer(queue);
    if (queue->closing)
        return;

    uv_mutex_lock(&queue->mutex);
    uint32_t n = queue->count;
    for (uint32_t i = 0; i < n; i++) {
        queue->batch[i] = queue->ring[queue->head];
        queue->head = queue->head + 1 == queue->capacity ? 0 : queue->head + 1;
    }
    queue->count = 0;
    uv_mutex_unlock(&queue->mutex);

    queue->batch_next = 0;
    queue->batch_len = n;
    /* drain_fn may close the queue; mg_queue_close then disposes the rest of the batch and sets
     * batch_len = batch_next, which ends this loop. */
    while (queue->batch_next < queue->batch_len) {
        void *item = queue->batch[queue->batch_next++];
        queue->drain_fn(item, queue->drain_arg);
    }
    queue->batch_next = 0;
    queue->batch_len = 0;
    if (queue->closing)
        return;

    uv_mutex_lock(&queue->mutex);
    if (queue->count > 0)
        mg__queue_signal_locked(queue); /* re-arm: wake_pending stays true */
    else
        queue->wake_pending = false;
    uv_mutex_unlock(&queue->mutex);
}

int mg_queue_create(uv_loop_t *consumer_loop, uint32_t capacity,
                    void (*drain_fn)(void *item, void *arg), void *arg, mg_queue **out)
{
    MG_ASSERT(consumer_loop != NULL && drain_fn != NULL && out != NULL);
    if (capacity == 0 || capacity > MG_QUEUE_CAPACITY_MAX)
        return MG_EINVAL;

    mg_queue *queue = mg_calloc(1, sizeof(*queue));
    if (queue == NULL)
        return MG_ENOMEM;
    queue->ring = mg_calloc(capacity, sizeof(queue->ring[0]));
    if (queue->ring != NULL)
        queue->batch = mg_calloc(capacity, sizeof(queue->batch[0]));
    if (queue->ring == NULL || queue->batch == NULL) {
        mg_free(queue->ring);
        mg_free(queue->batch);
        mg_free(queue);
        return MG_ENOMEM;
    }
    queue->capacity = capacity;
    queue->drain_fn = drain_fn;
    queue->drain_arg = arg;
    queue->consumer_thread = uv_thread_self();

    int rc = uv_mutex_init(&queue->mutex);
    if (rc != 0)
        goto fail_mutex;
    /* Last step: once the handle is registered, undoing it needs a close callback. */
    rc = uv_async_init(consumer_loop, &queue->async, mg__queue_drain);
    if (rc != 0)
        goto fail_async;
    queue->async.data = queue;
    *out = queue;
    return MG_OK;

fail_async:
    uv_mutex_destroy(&queue->mutex);
fail_mutex:
    mg_free(queue->ring);
    mg_free(queue->batch);
    mg_free(queue);
    return mg_err_from_uv(rc);
}

int mg_queue_push(mg_queue *queue, void *item)
{
    int rc = MG_OK;
    uv_mutex_lock(&queue->mutex);
    if (queue->closing) {
        rc = MG_ECLOSED;
    } else if (queue->count == queue->capacity) {
        rc = MG_EAGAIN;
    } else {
        uint32_t tail = queue->head + queue->count;
        if (tail >= queue->capacity)
            tail -= queue->capacity;
        queue->ring[tail] = item;
        queue->count++;
        if (!queue->wake_pending) {
            queue->wake_pending = true;
            mg__queue_signal_locked(queue);
        }
    }
    uv_mutex_unlock(&queue->mutex);
    return rc;
}

static void mg__queue_closed(uv_handle_t *handle)
{
    mg_queue *queue = handle->data;
    if (queue->closed_fn != NULL)
        queue->closed_fn(queue->close_arg);
    uv_mutex_destroy(&queue->mutex);
    mg_free(queue->ring);
    mg_free(queue->batch);
    mg_free(queue);
}

void mg_queue_close(mg_queue *queue, void (*dispose_fn)(void *item, void *arg),
                    void (*closed_fn)(void *arg), void *arg)
{
    mg__queue_assert_consumer(queue);
    MG_ASSERT(!queue->closing);

    uv_mutex_lock(&queue->mutex);
    queue->closing = true;
    uint32_t head = queue->head;
    uint32_t count = queue->count;
    queue->count = 0;
    uv_mutex_unlock(&queue->mutex);
    /* From here no producer touches the ring or the handle (they see closing under the lock),
     * so this thread owns the ring slots [head, head + count) without the lock. */

    /* Items of an interrupted drain pass are older than the ones in the ring: dispose first. */
    while (queue->batch_next < queue->batch_len) {
        void *item = queue->batch[queue->batch_next++];
        if (dispose_fn != NULL)
            dispose_fn(item, arg);
    }
    queue->batch_len = queue->batch_next;

    for (uint32_t i = 0; i < count; i++) {
        void *item = queue->ring[head];
        head = head + 1 == queue->capacity ? 0 : head + 1;
        if (dispose_fn != NULL)
            dispose_fn(item, arg);
    }

    queue->closed_fn = closed_fn;
    queue->close_arg = arg;
    uv_close((uv_handle_t *)&queue->async, mg__queue_closed);
}

uint32_t mg_queue_len(mg_queue *queue)
{
    uv_mutex_lock(&queue->mutex);
    uint32_t count = queue->count;
    uv_mutex_unlock(&queue->mutex);
    return count;
}

uint32_t mg_queue_capacity(const mg_queue *queue)
{
    return queue->capacity;
}
