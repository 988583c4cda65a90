/*
 * Tests for common/queue.h: exact capacity and MG_EAGAIN, FIFO order through ring wrap-around,
 * the per-pass bound (items pushed during a pass wait for the next one), several producer threads
 * into a loop run by the test thread (every item exactly once, per-producer order, sum), push
 * after close, disposal of pending items on close (also from inside drain_fn), closed_fn called
 * once, argument checks and allocation failures during create.
 */
#include "common/queue.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/limits.h"

#include <criterion/criterion.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

static void queue_fini(void)
{
    mg_alloc_fail_reset();
}

TestSuite(queue, .timeout = 10, .fini = queue_fini);

#define ITEM(v)  ((void *)(uintptr_t)(v))
#define VALUE(p) ((uintptr_t)(p))

/* What the callbacks saw. */
typedef struct record {
    uintptr_t drained[256];
    uint32_t drained_count;
    uintptr_t disposed[256];
    uint32_t disposed_count;
    int closed_count;
    /* options */
    mg_queue *queue;
    uint32_t push_back_until; /* drain_fn pushes value + 100 until this many were pushed */
    uint32_t pushed_back;
    uint32_t close_after; /* close_in_drain closes the queue after this many items */
} record;

static void record_drain(void *item, void *arg)
{
    record *r = arg;
    cr_assert_lt(r->drained_count, 256);
    r->drained[r->drained_count++] = VALUE(item);
    if (r->pushed_back < r->push_back_until) {
        cr_assert_eq(mg_queue_push(r->queue, ITEM(VALUE(item) + 100)), MG_OK);
        r->pushed_back++;
    }
}

static void record_dispose(void *item, void *arg)
{
    record *r = arg;
    cr_assert_lt(r->disposed_count, 256);
    r->disposed[r->disposed_count++] = VALUE(item);
}

static void record_closed(void *arg)
{
    record *r = arg;
    r->closed_count++;
}

static void close_record(record *r)
{
    mg_queue_close(r->queue, record_dispose, record_closed, r);
}

/* Runs the loop until the queue's close completes, then checks the loop is empty. */
static void finish_loop(uv_loop_t *loop)
{
    cr_assert_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(loop), 0);
}

Test(queue, capacity_is_exact)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    record r = { 0 };
    cr_assert_eq(mg_queue_create(&loop, 4, record_drain, &r, &r.queue), MG_OK);
    cr_assert_eq(mg_queue_capacity(r.queue), 4);

    for (uintptr_t i = 1; i <= 4; i++)
        cr_assert_eq(mg_queue_push(r.queue, ITEM(i)), MG_OK);
    cr_assert_eq(mg_queue_len(r.queue), 4);
    cr_assert_eq(mg_queue_push(r.queue, ITEM(5)), MG_EAGAIN);
    cr_assert_eq(mg_queue_len(r.queue), 4);
    cr_assert_eq(r.drained_count, 0, "nothing is drained before the loop runs");

    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.drained_count, 4);
    cr_assert_eq(mg_queue_len(r.queue), 0);

    for (uintptr_t i = 5; i <= 8; i++)
        cr_assert_eq(mg_queue_push(r.queue, ITEM(i)), MG_OK);
    cr_assert_eq(mg_queue_push(r.queue, ITEM(9)), MG_EAGAIN);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.drained_count, 8);

    close_record(&r);
    finish_loop(&loop);
    cr_assert_eq(r.disposed_count, 0);
    cr_assert_eq(r.closed_count, 1);
}

Test(queue, fifo_through_wraparound)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    record r = { 0 };
    cr_assert_eq(mg_queue_create(&loop, 5, record_drain, &r, &r.queue), MG_OK);

    /* Batches of 3 against 5 slots move head and tail around the ring several times. */
    uintptr_t next = 1;
    for (int round = 0; round < 10; round++) {
        for (int k = 0; k < 3; k++)
            cr_assert_eq(mg_queue_push(r.queue, ITEM(next++)), MG_OK);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    cr_assert_eq(r.drained_count, 30);
    for (uint32_t i = 0; i < 30; i++)
        cr_assert_eq(r.drained[i], i + 1, "position %u", i);

    close_record(&r);
    finish_loop(&loop);
    cr_assert_eq(r.closed_count, 1);
}

Test(queue, pass_handles_at_most_capacity)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    record r = { .push_back_until = 8 };
    cr_assert_eq(mg_queue_create(&loop, 4, record_drain, &r, &r.queue), MG_OK);
    for (uintptr_t i = 1; i <= 4; i++)
        cr_assert_eq(mg_queue_push(r.queue, ITEM(i)), MG_OK);

    /* Each drained item pushes another: a pass takes only the 4 present at its start. */
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.drained_count, 4);
    cr_assert_eq(mg_queue_len(r.queue), 4);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.drained_count, 8);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.drained_count, 12);
    cr_assert_eq(mg_queue_len(r.queue), 0);

    const uintptr_t expect[12] = { 1, 2, 3, 4, 101, 102, 103, 104, 201, 202, 203, 204 };
    for (int i = 0; i < 12; i++)
        cr_assert_eq(r.drained[i], expect[i], "position %d", i);

    close_record(&r);
    finish_loop(&loop);
}

Test(queue, push_after_close_is_eclosed)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    record r = { 0 };
    cr_assert_eq(mg_queue_create(&loop, 4, record_drain, &r, &r.queue), MG_OK);
    close_record(&r);
    /* The memory lives until the close callback: pushes in between are refused. */
    cr_assert_eq(mg_queue_push(r.queue, ITEM(1)), MG_ECLOSED);
    cr_assert_eq(mg_queue_len(r.queue), 0);
    cr_assert_eq(r.closed_count, 0, "closed_fn runs from the close callback");
    finish_loop(&loop);
    cr_assert_eq(r.closed_count, 1);
    cr_assert_eq(r.drained_count, 0);
    cr_assert_eq(r.disposed_count, 0);
}

static void free_dispose(void *item, void *arg)
{
    int *seen = arg;
    int *value = item;
    seen[*value]++;
    free(value);
}

static void count_closed(void *arg)
{
    int *seen = arg;
    seen[0]++;
}

static void never_drain(void *item, void *arg)
{
    (void)item;
    (void)arg;
    cr_assert_fail("drain_fn must not run for a queue closed before its loop ran");
}

Test(queue, close_disposes_pending_once)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    mg_queue *q;
    cr_assert_eq(mg_queue_create(&loop, 8, never_drain, NULL, &q), MG_OK);
    /* Heap items: ASan reports any that is neither drained nor disposed. */
    for (int i = 1; i <= 6; i++) {
        int *value = malloc(sizeof(*value));
        cr_assert_not_null(value);
        *value = i;
        cr_assert_eq(mg_queue_push(q, value), MG_OK);
    }
    int seen[7] = { 0 }; /* seen[0]: closed_fn calls; seen[i]: disposals of item i */
    mg_queue_close(q, free_dispose, count_closed, seen);
    for (int i = 1; i <= 6; i++)
        cr_assert_eq(seen[i], 1, "item %d", i);
    cr_assert_eq(seen[0], 0);
    finish_loop(&loop);
    cr_assert_eq(seen[0], 1);
}

static void close_in_drain(void *item, void *arg)
{
    record *r = arg;
    r->drained[r->drained_count++] = VALUE(item);
    if (r->drained_count == r->close_after)
        close_record(r);
}

Test(queue, close_from_drain_disposes_rest_in_order)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    record r = { .close_after = 2 };
    cr_assert_eq(mg_queue_create(&loop, 8, close_in_drain, &r, &r.queue), MG_OK);
    for (uintptr_t i = 1; i <= 5; i++)
        cr_assert_eq(mg_queue_push(r.queue, ITEM(i)), MG_OK);
    finish_loop(&loop);
    cr_assert_eq(r.drained_count, 2);
    cr_assert_eq(r.drained[0], 1);
    cr_assert_eq(r.drained[1], 2);
    cr_assert_eq(r.disposed_count, 3);
    cr_assert_eq(r.disposed[0], 3);
    cr_assert_eq(r.disposed[1], 4);
    cr_assert_eq(r.disposed[2], 5);
    cr_assert_eq(r.closed_count, 1);
}

Test(queue, create_rejects_bad_capacity)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    mg_queue *q = NULL;
    cr_assert_eq(mg_queue_create(&loop, 0, never_drain, NULL, &q), MG_EINVAL);
    cr_assert_eq(mg_queue_create(&loop, MG_QUEUE_CAPACITY_MAX + 1, never_drain, NULL, &q),
                 MG_EINVAL);
    cr_assert_null(q);
    cr_assert_eq(uv_loop_close(&loop), 0, "nothing was registered on the loop");
}

Test(queue, create_allocation_failures)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    /* create makes three allocations; failing each in turn leaves nothing behind. */
    for (int64_t budget = 0; budget < 3; budget++) {
        mg_queue *q = NULL;
        mg_alloc_fail_after(budget);
        cr_assert_eq(mg_queue_create(&loop, 16, never_drain, NULL, &q), MG_ENOMEM, "budget %lld",
                     (long long)budget);
        cr_assert_eq(mg_alloc_failures_injected(), 1);
        cr_assert_null(q);
    }
    mg_alloc_fail_after(3);
    mg_queue *q = NULL;
    cr_assert_eq(mg_queue_create(&loop, 16, never_drain, NULL, &q), MG_OK);
    mg_alloc_fail_reset();
    mg_queue_close(q, NULL, NULL, NULL);
    finish_loop(&loop);
}

/* Several producer threads, one consumer loop in the test thread. */
#define MP_PRODUCERS          4
#define MP_ITEMS_PER_PRODUCER 20000
#define MP_CAPACITY           64
#define MP_TOTAL              (MP_PRODUCERS * MP_ITEMS_PER_PRODUCER)
/* A producer retries a full queue at most this often per item before giving up (the consumer
 * drains continuously, so reaching it means the consumer is stuck). */
#define MP_RETRIES_MAX        10000000

typedef struct mp_ctx {
    mg_queue *queue;
    uv_loop_t *loop;
    uint8_t seen[MP_TOTAL];
    uint32_t next_seq[MP_PRODUCERS];
    uint64_t delivered;
    uint64_t sum;
    bool order_ok;
    _Atomic int producer_errors;
} mp_ctx;

typedef struct mp_producer {
    mp_ctx *ctx;
    uint32_t id;
} mp_producer;

/* Item value: id * MP_ITEMS_PER_PRODUCER + seq + 1 (never 0). */
static void mp_produce(void *arg)
{
    mp_producer *p = arg;
    for (uint32_t seq = 0; seq < MP_ITEMS_PER_PRODUCER; seq++) {
        uintptr_t value = (uintptr_t)p->id * MP_ITEMS_PER_PRODUCER + seq + 1;
        int rc = MG_EAGAIN;
        for (int attempt = 0; attempt < MP_RETRIES_MAX && rc == MG_EAGAIN; attempt++) {
            rc = mg_queue_push(p->ctx->queue, ITEM(value));
            if (rc == MG_EAGAIN)
                sched_yield();
        }
        if (rc != MG_OK) {
            atomic_fetch_add(&p->ctx->producer_errors, 1);
            return;
        }
    }
}

static void mp_drain(void *item, void *arg)
{
    mp_ctx *ctx = arg;
    uintptr_t value = VALUE(item);
    if (value == 0 || value > MP_TOTAL) {
        ctx->order_ok = false;
        uv_stop(ctx->loop);
        return;
    }
    uint32_t index = (uint32_t)(value - 1);
    uint32_t producer = index / MP_ITEMS_PER_PRODUCER;
    uint32_t seq = index % MP_ITEMS_PER_PRODUCER;
    if (seq != ctx->next_seq[producer])
        ctx->order_ok = false;
    ctx->next_seq[producer] = seq + 1;
    ctx->seen[index]++;
    ctx->sum += value;
    if (++ctx->delivered == MP_TOTAL)
        uv_stop(ctx->loop);
}

Test(queue, many_producers_exactly_once)
{
    static mp_ctx ctx;
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    ctx.loop = &loop;
    ctx.order_ok = true;
    cr_assert_eq(mg_queue_create(&loop, MP_CAPACITY, mp_drain, &ctx, &ctx.queue), MG_OK);

    mp_producer producers[MP_PRODUCERS];
    uv_thread_t threads[MP_PRODUCERS];
    for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
        producers[i] = (mp_producer){ .ctx = &ctx, .id = i };
        cr_assert_eq(uv_thread_create(&threads[i], mp_produce, &producers[i]), 0);
    }
    /* Returns when the last item is drained (uv_stop) — or never, and the timeout fails us. */
    uv_run(&loop, UV_RUN_DEFAULT);
    for (uint32_t i = 0; i < MP_PRODUCERS; i++)
        cr_assert_eq(uv_thread_join(&threads[i]), 0);

    cr_assert_eq(atomic_load(&ctx.producer_errors), 0);
    cr_assert(ctx.order_ok, "each producer's items arrive in its push order");
    cr_assert_eq(ctx.delivered, MP_TOTAL);
    for (uint32_t i = 0; i < MP_TOTAL; i++)
        cr_assert_eq(ctx.seen[i], 1, "item %u", i + 1);
    cr_assert_eq(ctx.sum, (uint64_t)MP_TOTAL * (MP_TOTAL + 1) / 2);
    cr_assert_eq(mg_queue_len(ctx.queue), 0);

    int closed = 0;
    mg_queue_close(ctx.queue, NULL, count_closed, &closed);
    finish_loop(&loop);
    cr_assert_eq(closed, 1);
}
