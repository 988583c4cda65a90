/*
 * Requests one broker's Kafka shim sends another (kop_int.h, kop_forward): a group's
 * coordinator commits and fetches the offsets of partitions another broker owns through that
 * owner, whose subscription cursor they are (the owner alone writes a cursor it holds open).
 *
 * One connection per request: connect, write the frame, read one answer, close. Offsets requests
 * come every few seconds per consumer, so a pool would save little and its reconnects and
 * in-flight matching would cost more code than the handshake costs time. Every request is
 * bounded by KOP_FORWARD_TIMEOUT_MS. The owner's address must be a numeric IPv4 address (brokers
 * advertise one: --advertised-address).
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct kop_fwd {
    kop_server *k;
    mg_link link; /* in k->forwards */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    uv_write_t write;
    uint8_t *out;
    size_t out_len;
    uint8_t *in;
    size_t in_len, in_cap;
    kop_forward_cb cb;
    void *arg;
    bool done;
    int handles;
    int fail_status; /* what the timer reports: MG_ETIMEDOUT unless set before */
} kop_fwd;

static void fwd_handle_closed(uv_handle_t *h)
{
    kop_fwd *f = h->data;
    if (--f->handles > 0)
        return;
    kop_server *k = f->k;
    mg_free(f->out);
    mg_free(f->in);
    mg_free(f);
    MG_ASSERT(k->forwards_open > 0);
    k->forwards_open--;
    kop_server_maybe_closed(k);
}

/* Calls back once and closes. */
static void fwd_finish(kop_fwd *f, int status, const uint8_t *body, size_t len)
{
    if (f->done)
        return;
    f->done = true;
    mg_list_remove(&f->link);
    f->cb(status, body, len, f->arg);
    uv_close((uv_handle_t *)&f->timer, fwd_handle_closed);
    uv_close((uv_handle_t *)&f->tcp, fwd_handle_closed);
}

static void fwd_timeout(uv_timer_t *t)
{
    kop_fwd *f = t->data;
    fwd_finish(f, f->fail_status != MG_OK ? f->fail_status : MG_ETIMEDOUT, NULL, 0);
}

static void fwd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    kop_fwd *f = h->data;
    if (f->in_cap - f->in_len < 4096) {
        size_t cap = f->in_cap ? f->in_cap * 2 : 16384;
        uint8_t *p = mg_realloc(f->in, cap);
        if (p == NULL) {
            out->base = NULL;
            out->len = 0;
            return;
        }
        f->in = p;
        f->in_cap = cap;
    }
    out->base = (char *)f->in + f->in_len;
    out->len = f->in_cap - f->in_len;
}

static void fwd_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    kop_fwd *f = s->data;
    if (nread < 0) {
        fwd_finish(f, nread == UV_EOF ? MG_ECONNECTION : mg_err_from_uv((int)nread), NULL, 0);
        return;
    }
    f->in_len += (size_t)nread;
    size_t frame_len;
    int rc = kw_frame_size(f->in, f->in_len, KOP_REQUEST_BYTES_MAX, &frame_len);
    if (rc == MG_EAGAIN || (rc == MG_OK && frame_len > f->in_len))
        return;
    if (rc != MG_OK || frame_len < 8) {
        fwd_finish(f, MG_EPROTO, NULL, 0);
        return;
    }
    /* [size][correlation id][body] */
    fwd_finish(f, MG_OK, f->in + 8, frame_len - 8);
}

static void fwd_written(uv_write_t *w, int status)
{
    kop_fwd *f = w->data;
    if (status != 0)
        fwd_finish(f, mg_err_from_uv(status), NULL, 0);
}

static void fwd_connected(uv_connect_t *c, int status)
{
    kop_fwd *f = c->data;
    if (f->done)
        return;
    if (status != 0) {
        fwd_finish(f, mg_err_from_uv(status), NULL, 0);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)f->out, (unsigned)f->out_len);
    f->write.data = f;
    int rc = uv_write(&f->write, (uv_stream_t *)&f->tcp, &b, 1, fwd_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&f->tcp, fwd_alloc, fwd_read);
    if (rc != 0)
        fwd_finish(f, mg_err_from_uv(rc), NULL, 0);
}

int kop_forward(kop_server *k, const char *addr, const uint8_t *frame, size_t frame_len,
                kop_forward_cb cb, void *arg)
{
    if (k->closing)
        return MG_ECLOSED;
    if (k->forwards_open >= KOP_FORWARDS_MAX)
        return MG_EAGAIN;
    const char *colon = strrchr(addr, ':');
    char host[64];
    if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
        return MG_EINVAL;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa;
    if (uv_ip4_addr(host, atoi(colon + 1), &sa) != 0)
        return MG_EINVAL;
    kop_fwd *f = mg_calloc(1, sizeof(*f));
    uint8_t *out = mg_malloc(frame_len);
    if (f == NULL || out == NULL) {
        mg_free(f);
        mg_free(out);
        return MG_ENOMEM;
    }
    memcpy(out, frame, frame_len);
    f->k = k;
    f->out = out;
    f->out_len = frame_len;
    f->cb = cb;
    f->arg = arg;
    uv_tcp_init(k->loop, &f->tcp);
    uv_timer_init(k->loop, &f->timer);
    f->tcp.data = f->timer.data = f->connect.data = f;
    f->handles = 2;
    k->forwards_open++;
    mg_list_push(&k->forwards, &f->link);
    uv_timer_start(&f->timer, fwd_timeout, KOP_FORWARD_TIMEOUT_MS, 0);
    int rc = uv_tcp_connect(&f->connect, &f->tcp, (const struct sockaddr *)&sa, fwd_connected);
    if (rc != 0) {
        /* Called back from the loop, never inside this call. */
        f->fail_status = mg_err_from_uv(rc);
        uv_timer_start(&f->timer, fwd_timeout, 0, 0);
    }
    return MG_OK;
}

void kop_forwards_close(kop_server *k)
{
    for (mg_link *l = k->forwards.next; l != &k->forwards; l = l->next) {
        kop_fwd *f = MG_CONTAINER_OF(l, kop_fwd, link);
        f->fail_status = MG_ECLOSED;
        uv_timer_start(&f->timer, fwd_timeout, 0, 0);
    }
}
