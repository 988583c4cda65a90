/*
 * The in-process bookie transport (API: bk_local_* in bookie.h; the client's side of the hook in
 * client_int.h). Two queues: `requests` (consumed on the storage's loop) and `answers` (consumed
 * on the client's loop). A request is a bk_local_req from the client; on the storage thread it
 * becomes one bk_storage_* call whose callback writes the answer into the request itself (no
 * allocation on the way back): the status, the value, and for reads a copy of the entry views,
 * each holding its own reference to its buffer (the storage's views are valid only during its
 * callback). On the client thread the answer completes the request (bk_local_req_complete) and
 * drops those references.
 *
 * Invariants:
 *   1. inflight (client thread only) counts requests pushed and not yet answered; it never
 *      exceeds BK_LOCAL_INFLIGHT_MAX, the answer queue's capacity, so an answer push succeeds.
 *   2. Each side closes its own queue on its own thread; the memory goes when the last of the
 *      two close callbacks ran (refs).
 */
#include "bookie/bookie.h"
#include "bookie/client_int.h"
#include "bookie/protocol.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "common/queue.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

struct bk_local {
    bk_storage *storage;
    mg_queue *requests; /* consumed on the storage's loop */
    mg_queue *answers;  /* consumed on the client's loop */
    uint32_t inflight;  /* client thread */
    atomic_int refs;    /* queues still open */
};

static void local_unref(bk_local *l)
{
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        mg_free(l);
}

static void queue_closed(void *arg)
{
    local_unref(arg);
}

/* --- the storage's thread ----------------------------------------------------------------------
 */

static void answer_push(bk_local_req *a)
{
    bk_local *l = a->transport;
    int rc = mg_queue_push(l->answers, a);
    /* Room is guaranteed (invariant 1); a closed queue means the client side went away with a
     * request in flight, which its life cycle rules out. */
    MG_ASSERT(rc == MG_OK);
}

/* The request becomes its own answer. */
static bk_local_req *answer_new(bk_local *l, bk_local_req *req, int status)
{
    req->transport = l;
    req->status = status;
    req->value = -1;
    req->entries = NULL;
    req->count = 0;
    return req;
}

static void add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    (void)ledger_id;
    (void)entry_id;
    bk_local_req *a = arg;
    a->status = status;
    answer_push(a);
}

static void read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    bk_local_req *a = arg;
    const bk_local_req *req = a;
    a->status = status;
    if (status == MG_OK && count > 0) {
        /* As the RPC server answers: at most max_bytes (at least one entry). */
        size_t cap = req->op == BK_OP_READ ? 1 : BK_RANGE_ENTRIES_MAX;
        uint64_t max_bytes = req->op == BK_OP_READ ? UINT64_MAX : req->max_bytes;
        size_t n = 0;
        uint64_t bytes = 0;
        while (n < count && n < cap) {
            if (n > 0 && bytes + entries[n].len > max_bytes)
                break;
            bytes += entries[n].len;
            n++;
        }
        a->entries = mg_malloc(n * sizeof(*a->entries));
        if (a->entries == NULL) {
            a->status = MG_ENOMEM;
            answer_push(a);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            a->entries[i] = entries[i];
            mg_buf_ref(entries[i].buf);
        }
        a->count = n;
    } else if (status == MG_OK) {
        a->status = MG_ENOTFOUND;
    }
    answer_push(a);
}

static void lac_done(int status, int64_t last_entry_id, void *arg)
{
    bk_local_req *a = arg;
    a->status = status;
    a->value = last_entry_id;
    answer_push(a);
}

static void done(int status, void *arg)
{
    bk_local_req *a = arg;
    a->status = status;
    answer_push(a);
}

static void request_run(void *item, void *arg)
{
    bk_local *l = arg;
    bk_local_req *req = item;
    bk_local_req *a = answer_new(l, req, MG_OK);
    bk_storage *s = l->storage;
    int rc;
    switch (req->op) {
    case BK_OP_ADD: {
        mg_buf *entry;
        size_t off = 0, len = req->prefix_len + req->len;
        if (len > BK_ENTRY_BYTES_MAX) {
            rc = MG_ELIMIT;
            break;
        }
        if (req->prefix_len == 0 && req->payload != NULL) {
            entry = mg_buf_ref(req->payload);
            off = req->off;
        } else {
            /* The prefix and the payload in one buffer, as the storage takes an entry (the
             * RPC path gets them contiguous from the socket). */
            entry = mg_buf_new(len);
            if (entry == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            uint8_t *d = mg_buf_data(entry);
            memcpy(d, req->prefix, req->prefix_len);
            if (req->len > 0) /* an empty payload may come without a buffer */
                memcpy(d + req->prefix_len, mg_buf_data(req->payload) + req->off, req->len);
            mg_buf_set_len(entry, len);
        }
        rc = bk_storage_add(s, req->ledger_id, req->entry_id, entry, off, len, add_done, a);
        mg_buf_unref(entry); /* the storage took its own reference */
        break;
    }
    case BK_OP_READ:
        rc = bk_storage_read(s, req->ledger_id, req->entry_id, read_done, a);
        break;
    case BK_OP_READ_RANGE: {
        uint32_t max_bytes = req->max_bytes;
        if (max_bytes == 0 || max_bytes > BK_RANGE_BYTES_MAX)
            max_bytes = BK_RANGE_BYTES_MAX;
        req->max_bytes = max_bytes;
        int64_t last = req->last_entry_id;
        if ((uint64_t)(last - req->entry_id) >= BK_RANGE_ENTRIES_MAX)
            last = req->entry_id + (int64_t)BK_RANGE_ENTRIES_MAX - 1;
        rc = bk_storage_read_range(s, req->ledger_id, req->entry_id, last, max_bytes, read_done, a);
        break;
    }
    case BK_OP_READ_LAC:
        rc = bk_storage_read_lac(s, req->ledger_id, lac_done, a);
        break;
    case BK_OP_FENCE:
        rc = bk_storage_fence(s, req->ledger_id, lac_done, a);
        break;
    case BK_OP_DELETE:
        rc = bk_storage_delete(s, req->ledger_id, done, a);
        break;
    case BK_OP_HEALTH:
        rc = bk_storage_read_only(s) ? MG_EREADONLY : MG_OK;
        a->status = rc;
        answer_push(a);
        return;
    default:
        rc = MG_EINVAL;
        break;
    }
    if (rc != MG_OK) {
        a->status = rc;
        answer_push(a);
    }
}

/* A request still queued when the storage side closes: answered as a closed connection. */
static void request_dispose(void *item, void *arg)
{
    bk_local_req *a = answer_new(arg, item, MG_ECONNECTION);
    answer_push(a);
}

int bk_local_create(uv_loop_t *storage_loop, bk_storage *storage, bk_local **out)
{
    bk_local *l = mg_calloc(1, sizeof(*l));
    if (l == NULL)
        return MG_ENOMEM;
    l->storage = storage;
    atomic_init(&l->refs, 1);
    int rc = mg_queue_create(storage_loop, BK_LOCAL_INFLIGHT_MAX, request_run, l, &l->requests);
    if (rc != MG_OK) {
        mg_free(l);
        return rc;
    }
    *out = l;
    return MG_OK;
}

void bk_local_close(bk_local *l)
{
    mg_queue_close(l->requests, request_dispose, queue_closed, l);
}

/* --- the client's thread ------------------------------------------------------------------------
 */

static void answer_run(void *item, void *arg)
{
    bk_local *l = arg;
    bk_local_req *a = item;
    MG_ASSERT(l->inflight > 0);
    l->inflight--;
    bk_entry *entries = a->entries;
    size_t count = a->count;
    /* Frees a: what its entries reference is dropped afterwards. */
    bk_local_req_complete(a, a->status, entries, count, a->value);
    for (size_t i = 0; i < count; i++)
        mg_buf_unref(entries[i].buf);
    mg_free(entries);
}

static int local_submit(void *transport, bk_local_req *req)
{
    bk_local *l = transport;
    if (l->inflight >= BK_LOCAL_INFLIGHT_MAX)
        return MG_EAGAIN;
    int rc = mg_queue_push(l->requests, req);
    if (rc == MG_OK)
        l->inflight++;
    return rc == MG_ECLOSED ? MG_ECONNECTION : rc;
}

int bk_local_attach(bk_local *l, uv_loop_t *client_loop, bk_client *client, const char *addr)
{
    int rc = mg_queue_create(client_loop, BK_LOCAL_INFLIGHT_MAX, answer_run, l, &l->answers);
    if (rc != MG_OK)
        return rc;
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
    rc = bk_client_set_local(client, addr, local_submit, l);
    if (rc != MG_OK) {
        mg_queue_close(l->answers, NULL, queue_closed, l);
        l->answers = NULL;
    }
    return rc;
}

void bk_local_detach(bk_local *l)
{
    MG_ASSERT(l->inflight == 0);
    if (l->answers != NULL)
        mg_queue_close(l->answers, NULL, queue_closed, l);
}
