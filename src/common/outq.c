/*
 * The output queue; see outq.h. Invariant: every block but the tail is full, so appending
 * starts at the tail; blocks are allocated before anything is appended, so a failed push leaves
 * the queue as it was.
 */
#include "common/outq.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"

#include <string.h>

struct mg__outq_block {
    uv_write_t req;
    mg_outq *q;
    mg__outq_block *next;
    mg_chain chain;
};

void mg_outq_init(mg_outq *q, void (*written_cb)(mg_outq *q, int status), void *arg)
{
    memset(q, 0, sizeof(*q));
    q->written_cb = written_cb;
    q->arg = arg;
}

void mg_outq_set_total(mg_outq *q, size_t *total)
{
    if (q->total_bytes != NULL) {
        MG_ASSERT(*q->total_bytes >= q->queued_bytes);
        *q->total_bytes -= q->queued_bytes;
    }
    q->total_bytes = total;
    if (total != NULL)
        *total += q->queued_bytes;
}

static void outq_account(mg_outq *q, size_t add, size_t sub)
{
    MG_ASSERT(q->queued_bytes + add >= sub);
    q->queued_bytes = q->queued_bytes + add - sub;
    if (q->total_bytes != NULL) {
        MG_ASSERT(*q->total_bytes + add >= sub);
        *q->total_bytes = *q->total_bytes + add - sub;
    }
}

size_t mg_outq_queued_bytes(const mg_outq *q)
{
    return q->queued_bytes;
}

uint32_t mg_outq_writes_inflight(const mg_outq *q)
{
    return q->writes_inflight;
}

static void outq_block_free(mg__outq_block *b)
{
    mg_chain_reset(&b->chain);
    mg_free(b);
}

static size_t chain_room(const mg_chain *c)
{
    return MG_CHAIN_SLICES_MAX - mg_chain_slice_count(c);
}

int mg_outq_push(mg_outq *q, const mg_slice *slices, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (slices[i].len == 0 || slices[i].off > mg_buf_len(slices[i].buf) ||
            slices[i].len > mg_buf_len(slices[i].buf) - slices[i].off)
            return MG_EINVAL;
    }
    size_t room = q->tail != NULL ? chain_room(&q->tail->chain) : 0;
    size_t extra =
        count > room ? (count - room + MG_CHAIN_SLICES_MAX - 1) / MG_CHAIN_SLICES_MAX : 0;
    mg__outq_block *first_new = NULL, *last_new = NULL;
    for (size_t i = 0; i < extra; i++) {
        mg__outq_block *b = mg_calloc(1, sizeof(*b));
        if (b == NULL) {
            while (first_new != NULL) {
                mg__outq_block *next = first_new->next;
                mg_free(first_new);
                first_new = next;
            }
            return MG_ENOMEM;
        }
        b->q = q;
        mg_chain_init(&b->chain);
        if (last_new != NULL)
            last_new->next = b;
        else
            first_new = b;
        last_new = b;
    }
    mg__outq_block *b = room > 0 ? q->tail : first_new;
    if (first_new != NULL) {
        if (q->tail != NULL)
            q->tail->next = first_new;
        else
            q->head = first_new;
        q->tail = last_new;
    }
    size_t added = 0;
    for (size_t i = 0; i < count; i++) {
        while (chain_room(&b->chain) == 0)
            b = b->next;
        int rc = mg_chain_append(&b->chain, slices[i].buf, slices[i].off, slices[i].len);
        MG_ASSERT(rc == MG_OK);
        added += slices[i].len;
    }
    outq_account(q, added, 0);
    return MG_OK;
}

int mg_outq_push_buf(mg_outq *q, mg_buf *buf)
{
    mg_slice s = { buf, 0, mg_buf_len(buf) };
    return mg_outq_push(q, &s, 1);
}

static void outq_write_done(uv_write_t *req, int status)
{
    mg__outq_block *b = (mg__outq_block *)req;
    mg_outq *q = b->q;
    size_t bytes = mg_chain_len(&b->chain);
    outq_block_free(b);
    MG_ASSERT(q->writes_inflight > 0);
    q->writes_inflight--;
    outq_account(q, 0, bytes);
    q->written_cb(q, status < 0 ? mg_err_from_uv(status) : MG_OK);
}

int mg_outq_flush(mg_outq *q, uv_stream_t *stream)
{
    if (q->writes_inflight > 0)
        return MG_OK;
    while (q->head != NULL) {
        mg__outq_block *b = q->head;
        if (mg_chain_len(&b->chain) == 0) {
            q->head = b->next;
            if (q->head == NULL)
                q->tail = NULL;
            outq_block_free(b);
            continue;
        }
        struct iovec iov[MG_CHAIN_SLICES_MAX];
        size_t n = mg_chain_to_iovec(&b->chain, iov, MG_CHAIN_SLICES_MAX);
        int rc = uv_write(&b->req, stream, (const uv_buf_t *)iov, (unsigned)n, outq_write_done);
        if (rc < 0)
            return mg_err_from_uv(rc);
        q->head = b->next;
        if (q->head == NULL)
            q->tail = NULL;
        b->next = NULL;
        q->writes_inflight++;
    }
    return MG_OK;
}

void mg_outq_discard(mg_outq *q)
{
    while (q->head != NULL) {
        mg__outq_block *b = q->head;
        q->head = b->next;
        outq_account(q, 0, mg_chain_len(&b->chain));
        outq_block_free(b);
    }
    q->tail = NULL;
}
