/*
 * libaio O_DIRECT reads completed on a libuv loop; the model, invariants and lifecycle are in
 * aio.h.
 *
 * Design notes:
 *   - One aio_req per accepted read (its iocb inside, iocb.data pointing back at it). The data
 *     buffer is allocated only when the read is submitted, so queued reads hold no data memory.
 *   - Reaping: the eventfd counts completions, but its value is only a wake-up; the truth is
 *     io_getevents(min 0). A completion that lands between reading the eventfd and reaping is
 *     reaped now and leaves the eventfd readable, so the next wake-up finds nothing: harmless.
 *     One wake-up reaps at most depth events (everything that can be in flight), in batches.
 *   - Per batch: first every reaped read gives back its slot, then queued reads are submitted
 *     (foreground first), then the done callbacks run. So a done that issues a new read queues
 *     behind the reads that were already waiting.
 *   - Re-entrancy: done may call bk_aio_read or bk_aio_close. Closing inside done marks the
 *     reader CLOSING; the handle is closed (uv_close) once nothing is in flight, and the memory
 *     goes in the close callback, i.e. never while a reap is running.
 */
#include "bookie/aio.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <libaio.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define AIO_REAP_BATCH 64

typedef struct aio_req {
    struct iocb iocb;
    struct aio_req *next; /* wait queue link */
    bk_aio_class cls;
    int fd;
    uint64_t offset;
    size_t len;
    uint64_t aligned_offset;
    size_t aligned_len;
    mg_buf *buf;
    bk_aio_done_fn done;
    void *arg;
} aio_req;

typedef struct aio_queue {
    aio_req *head;
    aio_req *tail;
    unsigned count;
} aio_queue;

struct bk_aio {
    uv_loop_t *loop;
    bk_io *io;
    io_context_t ctx;
    int efd;
    uv_poll_t poll;
    unsigned depth;
    unsigned bg_max;
    unsigned queue_max;
    unsigned inflight[BK_AIO_CLASS_COUNT];
    unsigned inflight_total;
    aio_queue queue[BK_AIO_CLASS_COUNT];
    bool closing;       /* bk_aio_close was called */
    bool handle_closed; /* uv_close was called */
    void (*closed)(void *arg);
    void *closed_arg;
    struct bk_aio_stats stats;
};

static void queue_push(aio_queue *q, aio_req *r)
{
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->count++;
}

static aio_req *queue_pop(aio_queue *q)
{
    aio_req *r = q->head;
    if (r == NULL)
        return NULL;
    q->head = r->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->count--;
    return r;
}

static bool slot_free(const bk_aio *a, bk_aio_class cls)
{
    if (a->inflight_total >= a->depth)
        return false;
    return cls == BK_AIO_FOREGROUND || a->inflight[BK_AIO_BACKGROUND] < a->bg_max;
}

/* Submits r to the kernel. On error nothing is in flight and r still belongs to the caller. */
static int submit(bk_aio *a, aio_req *r)
{
    r->buf = mg_buf_new_aligned(BK_AIO_ALIGN_BYTES, r->aligned_len);
    if (r->buf == NULL)
        return MG_ENOMEM;
    io_prep_pread(&r->iocb, r->fd, mg_buf_data(r->buf), r->aligned_len,
                  (long long)r->aligned_offset);
    io_set_eventfd(&r->iocb, a->efd);
    r->iocb.data = r;
    struct iocb *list[1] = { &r->iocb };
    int n;
    do {
        n = io_submit(a->ctx, 1, list);
    } while (n == -EINTR);
    if (n != 1) {
        mg_buf_unref(r->buf);
        r->buf = NULL;
        return n < 0 ? mg_err_from_errno(-n) : MG_EIO;
    }
    if (a->inflight_total == 0)
        uv_ref((uv_handle_t *)&a->poll);
    a->inflight[r->cls]++;
    a->inflight_total++;
    if (a->inflight[r->cls] > a->stats.inflight_peak_by_class[r->cls])
        a->stats.inflight_peak_by_class[r->cls] = a->inflight[r->cls];
    return MG_OK;
}

/* Completes r without data (an error or a cancellation) and frees it. */
static void fail_req(bk_aio *a, aio_req *r, int status)
{
    if (status == MG_ECANCELED) {
        a->stats.canceled++;
    } else {
        a->stats.reads++;
        a->stats.errors++;
        a->stats.reads_by_class[r->cls]++;
    }
    bk_aio_done_fn done = r->done;
    void *arg = r->arg;
    mg_free(r);
    done(status, NULL, 0, 0, arg);
}

/* Starts queued reads while slots are free: foreground first. Bounded by the number of reads
 * that can exist at once (twice over, for reads a failing done issues again); any left over
 * start at the next completion. */
static void dispatch(bk_aio *a)
{
    unsigned bound = a->depth + 2 * BK_AIO_CLASS_COUNT * a->queue_max;
    for (unsigned i = 0; i < bound && !a->closing; i++) {
        aio_queue *fg = &a->queue[BK_AIO_FOREGROUND];
        aio_queue *bg = &a->queue[BK_AIO_BACKGROUND];
        aio_req *r;
        if (fg->head != NULL && slot_free(a, BK_AIO_FOREGROUND))
            r = queue_pop(fg);
        else if (fg->head == NULL && bg->head != NULL && slot_free(a, BK_AIO_BACKGROUND))
            r = queue_pop(bg);
        else
            break;
        a->stats.queued_by_class[r->cls] = a->queue[r->cls].count;
        int rc = submit(a, r);
        if (rc != MG_OK)
            fail_req(a, r, rc);
    }
}

/* Delivers a reaped read: res is the kernel's result (bytes or -errno). */
static void complete(bk_aio *a, aio_req *r, long res)
{
    int status = res < 0 ? mg_err_from_errno((int)-res) : MG_OK;
    size_t got = res < 0 ? 0 : (size_t)res;
    MG_ASSERT(got <= r->aligned_len);
    size_t short_bytes = 0;
    int fault = bk_io_read_fault(a->io, r->fd, &short_bytes);
    if (status == MG_OK && fault != 0)
        status = fault;
    mg_buf *buf = r->buf;
    r->buf = NULL;
    if (status != MG_OK) {
        mg_buf_unref(buf);
        fail_req(a, r, status);
        return;
    }
    size_t data_off = (size_t)(r->offset - r->aligned_offset);
    size_t data_len = got > data_off ? got - data_off : 0;
    if (data_len > r->len)
        data_len = r->len;
    if (short_bytes > 0) {
        data_len = short_bytes >= data_len ? 0 : data_len - short_bytes;
        if (got > data_off + data_len)
            got = data_off + data_len;
    }
    mg_buf_set_len(buf, got);
    a->stats.reads++;
    a->stats.bytes += data_len;
    a->stats.reads_by_class[r->cls]++;
    a->stats.bytes_by_class[r->cls] += data_len;
    bk_aio_done_fn done = r->done;
    void *arg = r->arg;
    mg_free(r);
    done(MG_OK, buf, data_off, data_len, arg);
}

static void on_handle_closed(uv_handle_t *h)
{
    bk_aio *a = h->data;
    io_destroy(a->ctx);
    close(a->efd);
    void (*closed)(void *) = a->closed;
    void *arg = a->closed_arg;
    mg_free(a);
    if (closed)
        closed(arg);
}

static void finish_close(bk_aio *a)
{
    if (a->handle_closed)
        return;
    MG_ASSERT(a->inflight_total == 0);
    a->handle_closed = true;
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, on_handle_closed);
}

static void reap(bk_aio *a)
{
    struct io_event ev[AIO_REAP_BATCH];
    unsigned rounds = a->depth / AIO_REAP_BATCH + 1;
    for (unsigned round = 0; round < rounds && a->inflight_total > 0; round++) {
        struct timespec zero = { 0, 0 };
        int n = io_getevents(a->ctx, 0, AIO_REAP_BATCH, ev, &zero);
        if (n == -EINTR)
            continue;
        if (n < 0) {
            MG_ERROR("aio: io_getevents: %s", mg_strerror(mg_err_from_errno(-n)));
            break;
        }
        for (int i = 0; i < n; i++) {
            aio_req *r = ev[i].data;
            MG_ASSERT(a->inflight[r->cls] > 0 && a->inflight_total > 0);
            a->inflight[r->cls]--;
            a->inflight_total--;
        }
        dispatch(a);
        for (int i = 0; i < n; i++)
            complete(a, ev[i].data, (long)ev[i].res);
        if (n < AIO_REAP_BATCH)
            break;
    }
    if (a->handle_closed)
        return;
    if (a->inflight_total == 0) {
        if (a->closing)
            finish_close(a);
        else
            uv_unref((uv_handle_t *)&a->poll);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    bk_aio *a = h->data;
    if (status < 0)
        MG_WARN("aio: eventfd poll: %s", mg_strerror(mg_err_from_uv(status)));
    uint64_t count;
    ssize_t rc;
    do {
        rc = read(a->efd, &count, sizeof(count));
    } while (rc < 0 && errno == EINTR);
    reap(a);
}

int bk_aio_create(uv_loop_t *loop, bk_io *io, unsigned depth, unsigned background_depth_max,
                  bk_aio **out)
{
    if (depth == 0)
        depth = BK_AIO_DEPTH_DEFAULT;
    if (background_depth_max == 0)
        background_depth_max = depth / 2;
    if (depth < 2 || depth > BK_AIO_DEPTH_MAX || background_depth_max == 0 ||
        background_depth_max >= depth)
        return MG_EINVAL;
    bk_aio *a = mg_calloc(1, sizeof(*a));
    if (a == NULL)
        return MG_ENOMEM;
    a->loop = loop;
    a->io = io;
    a->depth = depth;
    a->bg_max = background_depth_max;
    a->queue_max = BK_AIO_QUEUE_FACTOR * depth;
    a->efd = -1;
    int rc = io_setup((int)depth, &a->ctx);
    if (rc < 0) {
        mg_free(a);
        return mg_err_from_errno(-rc);
    }
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0) {
        rc = mg_err_from_errno(errno);
        io_destroy(a->ctx);
        mg_free(a);
        return rc;
    }
    rc = uv_poll_init(loop, &a->poll, a->efd);
    if (rc < 0) {
        close(a->efd);
        io_destroy(a->ctx);
        mg_free(a);
        return mg_err_from_uv(rc);
    }
    a->poll.data = a;
    rc = uv_poll_start(&a->poll, UV_READABLE, on_poll);
    if (rc < 0) {
        a->closing = true;
        finish_close(a); /* the memory goes in the close callback */
        return mg_err_from_uv(rc);
    }
    uv_unref((uv_handle_t *)&a->poll);
    *out = a;
    return MG_OK;
}

int bk_aio_read(bk_aio *a, bk_aio_class cls, int fd, uint64_t offset, size_t len,
                bk_aio_done_fn done, void *arg)
{
    MG_ASSERT(done != NULL);
    if (a->closing)
        return MG_ECLOSED;
    if ((cls != BK_AIO_FOREGROUND && cls != BK_AIO_BACKGROUND) || fd < 0 || len == 0)
        return MG_EINVAL;
    if (len > BK_AIO_READ_BYTES_MAX)
        return MG_ELIMIT;
    if (offset > (uint64_t)INT64_MAX - BK_AIO_READ_BYTES_MAX - BK_AIO_ALIGN_BYTES)
        return MG_EINVAL;
    bool start_now = a->queue[cls].head == NULL && slot_free(a, cls) &&
                     (cls == BK_AIO_FOREGROUND || a->queue[BK_AIO_FOREGROUND].head == NULL);
    if (!start_now && a->queue[cls].count >= a->queue_max)
        return MG_EAGAIN;
    aio_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_ENOMEM;
    uint64_t end = offset + len;
    r->cls = cls;
    r->fd = fd;
    r->offset = offset;
    r->len = len;
    r->aligned_offset = offset & ~(uint64_t)(BK_AIO_ALIGN_BYTES - 1);
    r->aligned_len =
        (size_t)(((end + BK_AIO_ALIGN_BYTES - 1) & ~(uint64_t)(BK_AIO_ALIGN_BYTES - 1)) -
                 r->aligned_offset);
    r->done = done;
    r->arg = arg;
    if (start_now) {
        int rc = submit(a, r);
        if (rc != MG_OK) {
            mg_free(r);
            return rc;
        }
        return MG_OK;
    }
    queue_push(&a->queue[cls], r);
    a->stats.waited_by_class[cls]++;
    a->stats.queued_by_class[cls] = a->queue[cls].count;
    return MG_OK;
}

void bk_aio_close(bk_aio *a, void (*closed)(void *arg), void *arg)
{
    MG_ASSERT(!a->closing);
    a->closing = true;
    a->closed = closed;
    a->closed_arg = arg;
    /* Bounded: bk_aio_read refuses new reads from now on, so the queues only shrink. */
    for (int cls = 0; cls < BK_AIO_CLASS_COUNT; cls++) {
        aio_req *r;
        while ((r = queue_pop(&a->queue[cls])) != NULL) {
            a->stats.queued_by_class[cls] = a->queue[cls].count;
            fail_req(a, r, MG_ECANCELED);
        }
    }
    if (a->inflight_total == 0)
        finish_close(a);
}

unsigned bk_aio_inflight(const bk_aio *a, bk_aio_class cls)
{
    MG_ASSERT(cls == BK_AIO_FOREGROUND || cls == BK_AIO_BACKGROUND);
    return a->inflight[cls];
}

void bk_aio_stats(const bk_aio *a, struct bk_aio_stats *out)
{
    *out = a->stats;
}
