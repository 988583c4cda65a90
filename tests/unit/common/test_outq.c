/*
 * Tests for common/outq.h's shared total (mg_outq_set_total): two queues over the two ends of a
 * socket pair add their queued bytes to one total, which follows pushes, completed writes and
 * discards exactly, and goes back to 0 when everything was written or dropped; a failed push
 * (a slice outside its buffer) changes nothing; detaching a queue takes its bytes out.
 */
#include "common/outq.h"

#include "common/buf.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

TestSuite(outq, .timeout = 10);

#define RUNS_MAX 1000 /* loop passes any write here needs, with plenty to spare */

typedef struct side {
    uv_pipe_t pipe;
    mg_outq q;
    int writes_done;
    int last_status;
    size_t read_bytes;
} side;

static void written(mg_outq *q, int status)
{
    side *s = q->arg;
    s->writes_done++;
    s->last_status = status;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    static char buf[65536];
    (void)h;
    (void)suggested;
    out->base = buf;
    out->len = sizeof(buf);
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    side *s = st->data;
    if (n > 0)
        s->read_bytes += (size_t)n;
}

static void open_pair(uv_loop_t *loop, side *a, side *b)
{
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    side *s[2] = { a, b };
    for (int i = 0; i < 2; i++) {
        memset(s[i], 0, sizeof(*s[i]));
        cr_assert_eq(uv_pipe_init(loop, &s[i]->pipe, 0), 0);
        cr_assert_eq(uv_pipe_open(&s[i]->pipe, fds[i]), 0);
        s[i]->pipe.data = s[i];
        mg_outq_init(&s[i]->q, written, s[i]);
        cr_assert_eq(uv_read_start((uv_stream_t *)&s[i]->pipe, alloc_cb, read_cb), 0);
    }
}

static void run_until_read(uv_loop_t *loop, side *reader, size_t bytes)
{
    for (int i = 0; i < RUNS_MAX && reader->read_bytes < bytes; i++)
        uv_run(loop, UV_RUN_ONCE);
    cr_assert_eq(reader->read_bytes, bytes);
}

Test(outq, shared_total_follows_pushes_writes_and_discards)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    side a, b;
    open_pair(&loop, &a, &b);
    size_t total = 7; /* the owner's other bytes: left alone */
    mg_outq_set_total(&a.q, &total);
    mg_outq_set_total(&b.q, &total);

    mg_buf *buf = mg_buf_new(4096);
    cr_assert_not_null(buf);
    memset(mg_buf_data(buf), 'x', 4096);
    mg_buf_set_len(buf, 4096);
    mg_slice sl[2] = { { buf, 0, 1000 }, { buf, 1000, 3000 } };
    cr_assert_eq(mg_outq_push(&a.q, sl, 2), MG_OK);
    cr_assert_eq(mg_outq_push_buf(&b.q, buf), MG_OK);
    cr_assert_eq(total, 7 + 4000 + 4096);
    cr_assert_eq(mg_outq_queued_bytes(&a.q), 4000);

    /* A slice past its buffer: refused, nothing counted. */
    mg_slice bad = { buf, 4000, 200 };
    cr_assert_eq(mg_outq_push(&a.q, &bad, 1), MG_EINVAL);
    cr_assert_eq(total, 7 + 4000 + 4096);

    /* Written: each queue's bytes leave the total as its writes complete. */
    cr_assert_eq(mg_outq_flush(&a.q, (uv_stream_t *)&a.pipe), MG_OK);
    run_until_read(&loop, &b, 4000);
    for (int i = 0; i < RUNS_MAX && a.writes_done == 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(a.writes_done, 1);
    cr_assert_eq(a.last_status, MG_OK);
    cr_assert_eq(total, 7 + 4096);

    /* Discarded before any write: taken out at once. */
    mg_outq_discard(&b.q);
    cr_assert_eq(total, 7);
    cr_assert_eq(mg_outq_queued_bytes(&b.q), 0);

    /* Detaching takes the queue's bytes out of the total; attaching adds them. */
    cr_assert_eq(mg_outq_push_buf(&a.q, buf), MG_OK);
    cr_assert_eq(total, 7 + 4096);
    mg_outq_set_total(&a.q, NULL);
    cr_assert_eq(total, 7);
    size_t other = 0;
    mg_outq_set_total(&a.q, &other);
    cr_assert_eq(other, 4096);
    cr_assert_eq(mg_outq_flush(&a.q, (uv_stream_t *)&a.pipe), MG_OK);
    run_until_read(&loop, &b, 4000 + 4096);
    for (int i = 0; i < RUNS_MAX && a.writes_done < 2; i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(other, 0);
    cr_assert_eq(total, 7);

    mg_buf_unref(buf);
    uv_close((uv_handle_t *)&a.pipe, NULL);
    uv_close((uv_handle_t *)&b.pipe, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
