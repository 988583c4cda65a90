/*
 * Tests for bookie/aio.h, with a libuv loop run by the test thread and a file of known content
 * (8 MiB + 1000 bytes of a non-repeating pattern) opened with O_DIRECT: unaligned ranges, ranges
 * across 4 KiB blocks, at and past the end of the file (short, then empty) compared byte for
 * byte; more reads than the depth, all completed exactly once with the right bytes; the
 * background limit and foreground priority checked from inside the done callbacks and by the
 * counters; bounded queues (MG_EAGAIN); injected EIO and short reads through bk_io; a queued read
 * whose buffer cannot be allocated; close with reads queued (MG_ECANCELED), from inside a done
 * callback, and when idle; an entry-log record read through its O_DIRECT descriptor.
 *
 * The file lives under /var/tmp (O_DIRECT needs a real disk; tmpfs refuses it with EINVAL, which
 * fails the test with a message saying so).
 */
#include "bookie/aio.h"

#include "bookie/entrylog.h"
#include "bookie/io.h"
#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "support/cr_util.h"

#define FILE_BYTES ((uint64_t)8 * 1024 * 1024 + 1000)

static char g_dir[256];
static char g_path[300];
static bk_io *g_io;
static int g_fd = -1;

static uint8_t pattern(uint64_t i)
{
    return (uint8_t)(((i + 1) * 0x9E3779B97F4A7C15ull) >> 56);
}

static void suite_init(void)
{
    snprintf(g_dir, sizeof(g_dir), "/var/tmp/mg-aio-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp under /var/tmp failed");
    snprintf(g_path, sizeof(g_path), "%s/data", g_dir);
    cr_assert_eq(bk_io_create(&g_io), MG_OK);
    int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    size_t chunk = 1 << 20;
    uint8_t *b = malloc(chunk);
    for (uint64_t off = 0; off < FILE_BYTES; off += chunk) {
        size_t n = FILE_BYTES - off < chunk ? (size_t)(FILE_BYTES - off) : chunk;
        for (size_t i = 0; i < n; i++)
            b[i] = pattern(off + i);
        cr_assert_eq(pwrite(fd, b, n, (off_t)off), (ssize_t)n);
    }
    free(b);
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    int rc = bk_io_open(g_io, g_path, O_RDONLY | O_DIRECT, 0, &g_fd);
    if (rc == MG_EINVAL)
        cr_assert_fail(
            "open(O_DIRECT) of %s failed with EINVAL: this file system (tmpfs?) does not "
            "support O_DIRECT; run the tests with /var/tmp on a real disk",
            g_path);
    cr_assert_eq(rc, MG_OK, "open %s: %s", g_path, mg_err_name(rc));
}

static void suite_fini(void)
{
    mg_alloc_fail_reset();
    if (g_fd >= 0)
        bk_io_close(g_io, g_fd);
    mgt_rm_tree(g_dir);
    bk_io_destroy(g_io);
}

TestSuite(aio, .timeout = 30, .init = suite_init, .fini = suite_fini);

/* ---- harness ---- */

typedef struct tctx {
    uv_loop_t loop;
    bk_aio *aio;
    unsigned depth;
    unsigned bg_max;
    unsigned done_count;
    unsigned closed_count;
    unsigned bg_done_with_fg_queued; /* foreground priority violations seen */
    bool close_in_next_done;
} tctx;

typedef struct treq {
    tctx *c;
    bk_aio_class cls;
    uint64_t offset;
    size_t len;
    int calls;
    int status;
    size_t data_off;
    size_t data_len;
} treq;

static size_t expected_len(uint64_t offset, size_t len)
{
    if (offset >= FILE_BYTES)
        return 0;
    return FILE_BYTES - offset < len ? (size_t)(FILE_BYTES - offset) : len;
}

static void on_closed(void *arg)
{
    tctx *c = arg;
    c->closed_count++;
}

static void on_done(int status, mg_buf *buf, size_t data_off, size_t data_len, void *arg)
{
    treq *r = arg;
    tctx *c = r->c;
    r->calls++;
    r->status = status;
    r->data_off = data_off;
    r->data_len = data_len;
    c->done_count++;
    if (status == MG_OK) {
        cr_assert_not_null(buf);
        cr_assert_eq((uintptr_t)mg_buf_data(buf) % 4096, 0, "O_DIRECT buffer alignment");
        cr_assert_eq(data_off, r->offset % 4096);
        if (data_len > 0)
            cr_assert_geq(mg_buf_len(buf), data_off + data_len);
        cr_assert_eq(mg_buf_cap(buf) % 4096, 0);
        const uint8_t *p = mg_buf_data(buf) + data_off;
        for (size_t i = 0; i < data_len; i++) {
            if (p[i] != pattern(r->offset + i))
                cr_assert_fail("read at %llu len %zu: byte %zu differs",
                               (unsigned long long)r->offset, r->len, i);
        }
    } else {
        cr_assert_null(buf);
        cr_assert_eq(data_len, 0);
    }
    mg_buf_unref(buf);
    if (c->close_in_next_done) {
        c->close_in_next_done = false;
        bk_aio_close(c->aio, on_closed, c);
    }
}

/* Done callback that also checks the in-flight limits and foreground priority (only while the
 * reader is open: c->aio is valid). */
static void on_done_checked(int status, mg_buf *buf, size_t data_off, size_t data_len, void *arg)
{
    treq *r = arg;
    tctx *c = r->c;
    unsigned fg = bk_aio_inflight(c->aio, BK_AIO_FOREGROUND);
    unsigned bg = bk_aio_inflight(c->aio, BK_AIO_BACKGROUND);
    cr_assert_leq(bg, c->bg_max, "background in flight %u > %u", bg, c->bg_max);
    cr_assert_leq(fg + bg, c->depth);
    struct bk_aio_stats st;
    bk_aio_stats(c->aio, &st);
    if (r->cls == BK_AIO_BACKGROUND && st.queued_by_class[BK_AIO_FOREGROUND] > 0)
        c->bg_done_with_fg_queued++;
    on_done(status, buf, data_off, data_len, arg);
}

static void ctx_start(tctx *c, unsigned depth, unsigned bg_max)
{
    memset(c, 0, sizeof(*c));
    cr_assert_eq(uv_loop_init(&c->loop), 0);
    c->depth = depth;
    c->bg_max = bg_max;
    int rc = bk_aio_create(&c->loop, g_io, depth, bg_max, &c->aio);
    cr_assert_eq(rc, MG_OK, "bk_aio_create: %s", mg_err_name(rc));
}

static void ctx_run(tctx *c)
{
    cr_assert_eq(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
}

/* Closes the reader (unless already closed) and the loop; the loop must have no handle left. */
static void ctx_stop(tctx *c, bool close_aio)
{
    if (close_aio)
        bk_aio_close(c->aio, on_closed, c);
    ctx_run(c);
    cr_assert_eq(c->closed_count, 1);
    cr_assert_eq(uv_loop_close(&c->loop), 0, "a handle was left open");
}

static void issue(tctx *c, treq *r, bk_aio_class cls, uint64_t offset, size_t len,
                  bk_aio_done_fn fn)
{
    memset(r, 0, sizeof(*r));
    r->c = c;
    r->cls = cls;
    r->offset = offset;
    r->len = len;
    int rc = bk_aio_read(c->aio, cls, g_fd, offset, len, fn, r);
    cr_assert_eq(rc, MG_OK, "bk_aio_read(%llu, %zu): %s", (unsigned long long)offset, len,
                 mg_err_name(rc));
}

/* ---- tests ---- */

Test(aio, unaligned_ranges_and_end_of_file)
{
    static const struct {
        uint64_t offset;
        size_t len;
    } ranges[] = {
        { 123, 10000 },
        { 4095, 2 },
        { 4096, 4096 },
        { 8190, 8194 },
        { 0, 1 },
        { 1000, 4u << 20 },
        { FILE_BYTES - 100, 1000 },  /* short at the end */
        { FILE_BYTES - 5000, 5000 }, /* exactly to the end */
        { FILE_BYTES - 1, 1 },
        { FILE_BYTES, 10 },         /* at the end: 0 bytes */
        { FILE_BYTES + 5000, 100 }, /* past it: 0 bytes */
        { FILE_BYTES + (1u << 20), 1 },
    };
    enum { N = sizeof(ranges) / sizeof(ranges[0]) };
    tctx c;
    ctx_start(&c, 32, 8);
    treq r[N];
    for (size_t i = 0; i < N; i++)
        issue(&c, &r[i], i % 2 ? BK_AIO_BACKGROUND : BK_AIO_FOREGROUND, ranges[i].offset,
              ranges[i].len, on_done);
    cr_assert_eq(c.done_count, 0, "done never runs inside bk_aio_read");
    ctx_run(&c);
    cr_assert_eq(c.done_count, N);
    uint64_t bytes = 0;
    for (size_t i = 0; i < N; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, MG_OK, "range %zu: %s", i, mg_err_name(r[i].status));
        cr_assert_eq(r[i].data_len, expected_len(ranges[i].offset, ranges[i].len), "range %zu", i);
        bytes += r[i].data_len;
    }
    cr_assert_eq(r[6].data_len, 100);
    cr_assert_eq(r[9].data_len, 0);
    struct bk_aio_stats st;
    bk_aio_stats(c.aio, &st);
    cr_assert_eq(st.reads, N);
    cr_assert_eq(st.bytes, bytes);
    cr_assert_eq(st.errors, 0);
    cr_assert_eq(st.reads_by_class[BK_AIO_FOREGROUND] + st.reads_by_class[BK_AIO_BACKGROUND], N);
    cr_assert_eq(st.waited_by_class[BK_AIO_FOREGROUND] + st.waited_by_class[BK_AIO_BACKGROUND], 0);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_FOREGROUND), 0);
    ctx_stop(&c, true);
}

Test(aio, many_reads_limits_and_priority)
{
    enum { DEPTH = 8, BG = 2, FG_N = DEPTH + 4 * DEPTH, BG_N = 4 * DEPTH };
    tctx c;
    ctx_start(&c, DEPTH, BG);
    treq *fg = calloc(FG_N, sizeof(*fg));
    treq *bg = calloc(BG_N, sizeof(*bg));
    uint64_t x = 12345;
    uint64_t want_bytes = 0;
    for (int i = 0; i < FG_N + BG_N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t off = (x >> 20) % FILE_BYTES;
        size_t len = 1 + (size_t)((x >> 8) % 300000);
        want_bytes += expected_len(off, len);
        if (i < FG_N)
            issue(&c, &fg[i], BK_AIO_FOREGROUND, off, len, on_done_checked);
        else
            issue(&c, &bg[i - FG_N], BK_AIO_BACKGROUND, off, len, on_done_checked);
    }
    /* Both queues are full now. */
    treq extra = { .c = &c };
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, 10, on_done, &extra), MG_EAGAIN);
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_BACKGROUND, g_fd, 0, 10, on_done, &extra), MG_EAGAIN);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_FOREGROUND), DEPTH);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_BACKGROUND), 0,
                 "background waits while foreground reads are queued");

    ctx_run(&c);
    cr_assert_eq(c.done_count, FG_N + BG_N);
    cr_assert_eq(extra.calls, 0);
    for (int i = 0; i < FG_N; i++) {
        cr_assert_eq(fg[i].calls, 1);
        cr_assert_eq(fg[i].status, MG_OK);
        cr_assert_eq(fg[i].data_len, expected_len(fg[i].offset, fg[i].len));
    }
    for (int i = 0; i < BG_N; i++) {
        cr_assert_eq(bg[i].calls, 1);
        cr_assert_eq(bg[i].status, MG_OK);
        cr_assert_eq(bg[i].data_len, expected_len(bg[i].offset, bg[i].len));
    }
    cr_assert_eq(c.bg_done_with_fg_queued, 0, "a background read started before foreground");
    struct bk_aio_stats st;
    bk_aio_stats(c.aio, &st);
    cr_assert_eq(st.reads, FG_N + BG_N);
    cr_assert_eq(st.bytes, want_bytes);
    cr_assert_eq(st.reads_by_class[BK_AIO_FOREGROUND], FG_N);
    cr_assert_eq(st.reads_by_class[BK_AIO_BACKGROUND], BG_N);
    cr_assert_eq(st.waited_by_class[BK_AIO_FOREGROUND], FG_N - DEPTH);
    cr_assert_eq(st.waited_by_class[BK_AIO_BACKGROUND], BG_N);
    cr_assert_eq(st.inflight_peak_by_class[BK_AIO_FOREGROUND], DEPTH);
    cr_assert_eq(st.inflight_peak_by_class[BK_AIO_BACKGROUND], BG);
    cr_assert_eq(st.queued_by_class[BK_AIO_FOREGROUND], 0);
    cr_assert_eq(st.queued_by_class[BK_AIO_BACKGROUND], 0);
    ctx_stop(&c, true);
    free(fg);
    free(bg);
}

Test(aio, background_alone_stays_under_its_limit)
{
    enum { DEPTH = 8, BG = 3, N = 30 };
    tctx c;
    ctx_start(&c, DEPTH, BG);
    treq r[N];
    for (int i = 0; i < N; i++)
        issue(&c, &r[i], BK_AIO_BACKGROUND, (uint64_t)i * 200000 + 7, 100000, on_done_checked);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_BACKGROUND), BG);
    /* A foreground read still starts at once: slots are left for it. */
    treq f;
    issue(&c, &f, BK_AIO_FOREGROUND, 5, 5, on_done_checked);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_FOREGROUND), 1);
    ctx_run(&c);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].data_len, 100000);
    }
    cr_assert_eq(f.data_len, 5);
    struct bk_aio_stats st;
    bk_aio_stats(c.aio, &st);
    cr_assert_eq(st.inflight_peak_by_class[BK_AIO_BACKGROUND], BG);
    cr_assert_eq(st.waited_by_class[BK_AIO_BACKGROUND], N - BG);
    cr_assert_eq(st.waited_by_class[BK_AIO_FOREGROUND], 0);
    ctx_stop(&c, true);
}

Test(aio, injected_eio_and_short_read)
{
    tctx c;
    ctx_start(&c, 4, 1);
    treq r[4];
    bk_io_fault_arm(g_io, BK_IO_PREAD, NULL, 0, 1, MG_EIO, 0);
    issue(&c, &r[0], BK_AIO_FOREGROUND, 100, 1000, on_done);
    ctx_run(&c);
    cr_assert_eq(r[0].calls, 1);
    cr_assert_eq(r[0].status, MG_EIO);
    cr_assert_eq(r[0].data_len, 0);
    cr_assert_eq(bk_io_fault_count(g_io, BK_IO_PREAD), 1);

    /* Fired once: the next read is fine. */
    issue(&c, &r[1], BK_AIO_FOREGROUND, 100, 1000, on_done);
    ctx_run(&c);
    cr_assert_eq(r[1].status, MG_OK);
    cr_assert_eq(r[1].data_len, 1000);

    /* A short read: 1000 bytes fewer, the rest correct (checked in on_done). */
    bk_io_fault_arm(g_io, BK_IO_PREAD, NULL, 0, 1, 0, 1000);
    issue(&c, &r[2], BK_AIO_BACKGROUND, 100, 10000, on_done);
    ctx_run(&c);
    cr_assert_eq(r[2].status, MG_OK);
    cr_assert_eq(r[2].data_len, 9000);

    /* A fault for another path does not fire; one for this file does. */
    bk_io_fault_arm(g_io, BK_IO_PREAD, "journal", 0, -1, MG_EIO, 0);
    issue(&c, &r[3], BK_AIO_FOREGROUND, 0, 10, on_done);
    ctx_run(&c);
    cr_assert_eq(r[3].status, MG_OK);
    bk_io_fault_arm(g_io, BK_IO_PREAD, "/data", 0, -1, MG_EIO, 0);
    issue(&c, &r[3], BK_AIO_FOREGROUND, 0, 10, on_done);
    ctx_run(&c);
    cr_assert_eq(r[3].status, MG_EIO);
    bk_io_fault_clear(g_io, BK_IO_PREAD);

    struct bk_aio_stats st;
    bk_aio_stats(c.aio, &st);
    cr_assert_eq(st.reads, 5);
    cr_assert_eq(st.errors, 2);
    cr_assert_eq(st.bytes, 1000 + 9000 + 10);
    ctx_stop(&c, true);
}

Test(aio, close_cancels_queued_reads)
{
    enum { N = 10 };
    tctx c;
    ctx_start(&c, 2, 1);
    treq r[N];
    for (int i = 0; i < N; i++)
        issue(&c, &r[i], BK_AIO_FOREGROUND, (uint64_t)i * 65536, 65536, on_done);
    cr_assert_eq(bk_aio_inflight(c.aio, BK_AIO_FOREGROUND), 2);
    bk_aio_close(c.aio, on_closed, &c);
    /* The queued ones are canceled before close returns; the in-flight ones still run. */
    cr_assert_eq(c.done_count, N - 2);
    for (int i = 2; i < N; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, MG_ECANCELED);
    }
    treq late = { .c = &c };
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, 1, on_done, &late), MG_ECLOSED);
    cr_assert_eq(c.closed_count, 0);
    ctx_stop(&c, false);
    cr_assert_eq(c.done_count, N);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(r[i].calls, 1);
        cr_assert_eq(r[i].status, MG_OK, "in-flight reads complete with their data");
        cr_assert_eq(r[i].data_len, 65536);
    }
    cr_assert_eq(late.calls, 0);
}

Test(aio, close_from_inside_done)
{
    enum { N = 9 };
    tctx c;
    ctx_start(&c, 4, 2);
    treq r[N];
    for (int i = 0; i < N; i++)
        issue(&c, &r[i], i < 4 ? BK_AIO_FOREGROUND : BK_AIO_BACKGROUND, (uint64_t)i * 9999, 777,
              on_done);
    c.close_in_next_done = true;
    ctx_run(&c);
    cr_assert_eq(c.closed_count, 1);
    cr_assert_eq(c.done_count, N);
    int ok = 0;
    int canceled = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(r[i].calls, 1);
        ok += r[i].status == MG_OK;
        canceled += r[i].status == MG_ECANCELED;
    }
    cr_assert_eq(ok + canceled, N);
    cr_assert_geq(ok, 4, "everything in flight at the close completes");
    cr_assert_geq(canceled, 1);
    cr_assert_eq(uv_loop_close(&c.loop), 0);
}

Test(aio, close_idle)
{
    tctx c;
    ctx_start(&c, 2, 1);
    ctx_run(&c); /* an idle reader does not keep the loop running */
    ctx_stop(&c, true);
}

Test(aio, argument_errors)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    bk_aio *a = NULL;
    cr_assert_eq(bk_aio_create(&loop, g_io, 1, 0, &a), MG_EINVAL);
    cr_assert_eq(bk_aio_create(&loop, g_io, 4, 4, &a), MG_EINVAL);
    cr_assert_eq(bk_aio_create(&loop, g_io, BK_AIO_DEPTH_MAX + 1, 1, &a), MG_EINVAL);
    cr_assert_null(a);
    cr_assert_eq(uv_loop_close(&loop), 0);

    tctx c;
    ctx_start(&c, 0, 0); /* defaults */
    treq r = { .c = &c };
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, 0, on_done, &r), MG_EINVAL);
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, -1, 0, 10, on_done, &r), MG_EINVAL);
    cr_assert_eq(bk_aio_read(c.aio, (bk_aio_class)2, g_fd, 0, 10, on_done, &r), MG_EINVAL);
    cr_assert_eq(
        bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, BK_AIO_READ_BYTES_MAX + 1, on_done, &r),
        MG_ELIMIT);
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, UINT64_MAX - 5, 10, on_done, &r),
                 MG_EINVAL);
    /* A descriptor the kernel refuses (write-only): the error is returned, done never runs. */
    int wfd = open(g_path, O_WRONLY);
    cr_assert_geq(wfd, 0);
    cr_assert_lt(bk_aio_read(c.aio, BK_AIO_FOREGROUND, wfd, 0, 10, on_done, &r), 0);
    close(wfd);
    /* The largest read: the whole file. */
    issue(&c, &r, BK_AIO_FOREGROUND, 0, BK_AIO_READ_BYTES_MAX, on_done);
    ctx_run(&c);
    cr_assert_eq(r.calls, 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.data_len, FILE_BYTES);
    cr_assert_eq(c.done_count, 1);
    ctx_stop(&c, true);
}

Test(aio, allocation_failures)
{
    tctx c;
    ctx_start(&c, 2, 1);
    treq r[3];
    /* Refused at once: no callback, nothing leaked. */
    mg_alloc_fail_after(0);
    treq x = { .c = &c };
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, 10, on_done, &x), MG_ENOMEM);
    mg_alloc_fail_after(1); /* the request, not its buffer */
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_FOREGROUND, g_fd, 0, 10, on_done, &x), MG_ENOMEM);
    mg_alloc_fail_reset();
    cr_assert_eq(x.calls, 0);

    /* A queued read whose buffer cannot be allocated when its turn comes: done(MG_ENOMEM). */
    issue(&c, &r[0], BK_AIO_FOREGROUND, 0, 100, on_done);
    issue(&c, &r[1], BK_AIO_FOREGROUND, 100, 100, on_done);
    issue(&c, &r[2], BK_AIO_FOREGROUND, 200, 100, on_done); /* queued */
    mg_alloc_fail_after(0);
    ctx_run(&c);
    mg_alloc_fail_reset();
    cr_assert_eq(r[0].status, MG_OK);
    cr_assert_eq(r[1].status, MG_OK);
    cr_assert_eq(r[2].calls, 1);
    cr_assert_eq(r[2].status, MG_ENOMEM);
    ctx_stop(&c, true);

    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    bk_aio *a = NULL;
    mg_alloc_fail_after(0);
    cr_assert_eq(bk_aio_create(&loop, g_io, 4, 1, &a), MG_ENOMEM);
    mg_alloc_fail_reset();
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* An entry-log record read through its O_DIRECT descriptor and decoded from the aio buffer. */
typedef struct rec_read {
    int calls;
    int status;
    bk_record rec;
    uint8_t payload[3000];
    size_t records;
} rec_read;

static void on_record(int status, mg_buf *buf, size_t data_off, size_t data_len, void *arg)
{
    rec_read *rr = arg;
    rr->calls++;
    rr->status = status;
    cr_assert_eq(status, MG_OK);
    const uint8_t *p = mg_buf_data(buf) + data_off;
    size_t pos = 0;
    while (pos < data_len) {
        bk_record rec;
        cr_assert_eq(bk_record_parse(p + pos, data_len - pos, &rec), MG_OK);
        if (rr->records == 0) {
            rr->rec = rec;
            memcpy(rr->payload, rec.payload, rec.payload_len);
        }
        rr->records++;
        pos += rec.record_size;
    }
    mg_buf_unref(buf);
}

Test(aio, entrylog_record_through_direct_fd)
{
    bk_entrylogs *el = NULL;
    cr_assert_eq(bk_entrylogs_open(g_dir, g_io, 0, &el), MG_OK);
    uint8_t payload[3000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31 + 7);
    bk_location locs[5];
    for (int e = 0; e < 5; e++)
        cr_assert_eq(bk_entrylogs_append(el, 77, e, payload, sizeof(payload), &locs[e]), MG_OK);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    int dfd = -1;
    cr_assert_eq(bk_entrylogs_direct_fd(el, locs[0].log_id, &dfd), MG_OK);

    tctx c;
    ctx_start(&c, 4, 1);
    rec_read one = { 0 };
    rec_read range = { 0 };
    cr_assert_eq(
        bk_aio_read(c.aio, BK_AIO_FOREGROUND, dfd, locs[2].offset, locs[2].size, on_record, &one),
        MG_OK);
    /* A range read of all five records (contiguous: one ledger, one flush). */
    cr_assert_eq(bk_aio_read(c.aio, BK_AIO_BACKGROUND, dfd, locs[0].offset,
                             locs[4].offset + locs[4].size - locs[0].offset, on_record, &range),
                 MG_OK);
    ctx_run(&c);
    cr_assert_eq(one.calls, 1);
    cr_assert_eq(one.records, 1);
    cr_assert_eq(one.rec.ledger_id, 77);
    cr_assert_eq(one.rec.entry_id, 2);
    cr_assert_eq(one.rec.payload_len, sizeof(payload));
    cr_assert(memcmp(one.payload, payload, sizeof(payload)) == 0);
    cr_assert_eq(range.records, 5);
    cr_assert_eq(range.rec.entry_id, 0);
    ctx_stop(&c, true);
    bk_entrylogs_close(el);
}
