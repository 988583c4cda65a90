/*
 * Asynchronous O_DIRECT reads of the entry logs with libaio, completed on a libuv loop: the
 * bookie's loop never blocks on a disk (../shared/ARCHITECTURE.md §4, §6).
 *
 * How it works: io_setup(depth) gives a kernel AIO context; every iocb carries an eventfd
 * (io_set_eventfd), which a uv_poll_t on the loop watches. When it becomes readable the loop
 * reads the eventfd and reaps the finished requests with io_getevents(min 0, no timeout), then
 * runs their done callbacks. Each read gets a fresh 4096-aligned mg_buf covering the requested
 * range rounded out to 4096-byte blocks (O_DIRECT needs aligned offset, length and memory); the
 * caller gets a view into it, so the bytes go on to the read cache or the network without a copy.
 *
 * Two classes of reads, so catch-up never delays the latency-sensitive ones:
 *   FOREGROUND  a client waits for it (a read-cache miss).
 *   BACKGROUND  read-ahead and catch-up windows.
 * Invariants:
 *   1. inflight(FG) + inflight(BG) <= depth, and inflight(BG) <= background_depth_max < depth,
 *      so read-ahead never fills the device queue and at least one slot is always left for
 *      foreground reads.
 *   2. A freed slot goes to the oldest queued FOREGROUND read first; a BACKGROUND read starts
 *      only when no foreground read is waiting. Within a class, reads start in FIFO order.
 *   3. Each class's wait queue holds at most BK_AIO_QUEUE_FACTOR * depth reads; past that
 *      bk_aio_read returns MG_EAGAIN (backpressure on the caller).
 *   4. Every accepted read gets exactly one done call: with its result, or MG_ECANCELED if it
 *      was still queued when bk_aio_close was called. A call that returns an error never calls
 *      done (libuv's rule).
 *
 * Faults: each completion consults bk_io_read_fault() (io.h) for its descriptor, so a fault
 * armed on BK_IO_PREAD turns a read into an error or a short read here too.
 *
 * Lifecycle: create -> OPEN --bk_aio_close--> CLOSING (queued reads canceled, in-flight ones
 * completed normally) --last in-flight read done--> the poll handle is closed, the AIO context
 * destroyed, the memory freed, then closed() runs. Memory is reclaimed only in the close
 * callback (libuv's model). An in-flight read cannot be canceled, so a hung device holds the
 * close until it answers.
 *
 * Threads: a bk_aio belongs to its loop; every function here is called on that loop's thread
 * and every callback runs there. The poll handle is unreferenced while no read is in flight,
 * so an idle bk_aio does not keep uv_run() from returning.
 *
 * Private to src/bookie (the storage node's public API is bookie/bookie.h).
 */
#ifndef MG_BOOKIE_AIO_H
#define MG_BOOKIE_AIO_H

#include "bookie/io.h"
#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct bk_aio bk_aio;

/* background = read-ahead / catch-up windows */
typedef enum bk_aio_class { BK_AIO_FOREGROUND = 0, BK_AIO_BACKGROUND = 1 } bk_aio_class;

#define BK_AIO_CLASS_COUNT   2
#define BK_AIO_ALIGN_BYTES   4096u
#define BK_AIO_DEPTH_DEFAULT 32u

/* Completion of one read, on the loop.
 *   status    MG_OK; an error from the kernel (errno converted once: MG_EIO, ...); an
 *             injected fault's error (bk_io_read_fault); MG_ENOMEM
 *             or another io_submit error for a queued read that could not start; MG_ECANCELED
 *             for a read still queued at close.
 *   buf       on MG_OK only (else NULL): a 4096-aligned buffer holding the blocks read; done
 *             receives ONE REFERENCE and must drop it with mg_buf_unref (or keep it: a cache
 *             may hold on to it). mg_buf_len(buf) = the bytes read from the disk, at least
 *             data_off + data_len when data_len > 0.
 *   data_off  where the requested offset lies inside buf.
 *   data_len  bytes of the requested range available from data_off: the requested length, less
 *             at end of file (0 at or past it: still MG_OK), or less after a short read.
 * done may call bk_aio_read and bk_aio_close. */
typedef void (*bk_aio_done_fn)(int status, mg_buf *buf, size_t data_off, size_t data_len,
                               void *arg);

/* Counters since creation (the storage turns them into metrics). A plain struct tag, not a
 * typedef: the name bk_aio_stats is the function that fills it (C has one namespace for
 * both), so write `struct bk_aio_stats st; bk_aio_stats(a, &st);`. */
struct bk_aio_stats {
    uint64_t reads;    /* completed reads, any status except MG_ECANCELED */
    uint64_t bytes;    /* data_len delivered by successful reads */
    uint64_t errors;   /* completed with status != MG_OK (not counting cancellations) */
    uint64_t canceled; /* queued reads completed with MG_ECANCELED */
    uint64_t reads_by_class[BK_AIO_CLASS_COUNT];
    uint64_t bytes_by_class[BK_AIO_CLASS_COUNT];
    uint64_t waited_by_class[BK_AIO_CLASS_COUNT]; /* reads that had to wait in the queue */
    unsigned queued_by_class[BK_AIO_CLASS_COUNT]; /* waiting now */
    unsigned inflight_peak_by_class[BK_AIO_CLASS_COUNT];
};

/* Creates a reader on loop: an AIO context for depth reads in flight (0 = BK_AIO_DEPTH_DEFAULT,
 * at most BK_AIO_DEPTH_MAX), of which at most background_depth_max BACKGROUND ones (0 = half
 * the depth; must be < depth, so depth >= 2). io (borrowed, must outlive the reader) supplies
 * injected read faults.
 * [out] *out: owned by the caller until bk_aio_close.
 * Errors: MG_EINVAL (depths), MG_EAGAIN (the kernel's fs.aio-max-nr is used up), MG_ENOMEM,
 * other errno conversions from io_setup/eventfd/uv_poll. If the last step (starting the poll)
 * fails, the partly created reader is freed on a later loop iteration. Loop thread. */
int bk_aio_create(uv_loop_t *loop, bk_io *io, unsigned depth, unsigned background_depth_max,
                  bk_aio **out);

/* Reads len bytes at offset of fd (opened with O_DIRECT, e.g. by bk_entrylogs_direct_fd; the
 * caller keeps it open until done ran), starting now if a slot of class cls is free, else
 * queueing it. done(arg) runs once, on the loop, never from inside this call.
 * Errors (done is then never called): MG_EINVAL (len 0, fd < 0, bad class, offset too large),
 * MG_ELIMIT (len > BK_AIO_READ_BYTES_MAX: split larger ranges), MG_EAGAIN (the class's queue is
 * full), MG_ECLOSED (bk_aio_close was called), MG_ENOMEM, an io_submit error. Loop thread. */
int bk_aio_read(bk_aio *a, bk_aio_class cls, int fd, uint64_t offset, size_t len,
                bk_aio_done_fn done, void *arg);

/* Starts closing: queued reads complete with MG_ECANCELED before this returns, in-flight ones
 * complete with their results as they finish; after the last, the handle is closed and
 * closed(arg) (may be NULL) runs on the loop, after which a is gone. Call once. Loop thread
 * (also from inside a done callback). */
void bk_aio_close(bk_aio *a, void (*closed)(void *arg), void *arg);

/* Reads of class cls submitted to the kernel and not yet reaped (a read's done sees the count
 * without itself). Loop thread. */
unsigned bk_aio_inflight(const bk_aio *a, bk_aio_class cls);

/* Copies the counters. Loop thread. */
void bk_aio_stats(const bk_aio *a, struct bk_aio_stats *out);

#endif
