/*
 * The generic layer of the metadata store: URL dispatch, argument checks, per-loop clients,
 * delivery of results to the right loop, the watch registry, and the id allocator. The
 * backends (rocksdb.c, zk.c) only execute operations; see md_int.h for the division of work.
 *
 * Delivery. Backends complete operations on their own threads. A completed op, a fired watch
 * and a session event all become an md_item appended, under the store's mutex, to the FIFO
 * queue of the client they belong to; the client's uv_async_t then wakes its loop, which
 * drains the queue in order and runs the callbacks. One FIFO per client keeps ZooKeeper's
 * ordering promise: a client sees a watch event before the results of operations that
 * completed after it.
 *
 * Locking. One mutex per store guards every queue and the watch registry. Metadata traffic is
 * low (ledger roll-overs, cursor persistence at a bounded rate, liveness), so one lock costs
 * nothing measurable and leaves no lock-ordering to get wrong.
 *
 * Watch states (all changes under the store mutex):
 *
 *     NEW --arm--> ARMED --event / session expired / client closing--> QUEUED --> delivered
 *      |              |                                                      |
 *      +--------------+--read failed--> DEAD <--read failed------------------+
 *
 * A watch is referenced by the op that reads (until that op is delivered) and by its own life
 * (until it is delivered from the queue, or dies without being queued); it is freed when both
 * are gone, so the two deliveries may come in either order.
 *
 * Bounds. A client has at most MD_CLIENT_INFLIGHT_MAX operations and MD_CLIENT_WATCHES_MAX
 * watches outstanding (calls past that return MG_ELIMIT); session events are queued one item
 * each and are rare.
 *
 * Client close: stop accepting calls, turn every armed watch into MD_EVENT_WATCH_LOST, wait
 * until every operation has come back from the backend and the queue is empty, then close the
 * uv_async_t and free the client in its close callback.
 */
#include "metadata/md_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ITEM_OP = 1, ITEM_WATCH = 2, ITEM_SESSION = 3, ITEM_ID = 4 };

enum { WATCH_NEW = 0, WATCH_ARMED = 1, WATCH_QUEUED = 2, WATCH_DEAD = 3 };

struct md_watch {
    md_item item;
    md_watch_kind kind;
    int state;
    int refs; /* loop thread only: one for the op that reads, one for the watch's life */
    md_event_type fired;
    char *path;
    md_client *client;
    md_watch_cb cb;
    void *arg;
    md_watch *prev, *next; /* the store's registry, while ARMED */
};

typedef struct md_session_item {
    md_item item;
    md_session_state state;
} md_session_item;

typedef struct md_id_req {
    md_item item; /* the client's queue once answered; the counter's wait list before */
    md_client *client;
    int status;
    int64_t id;
    md_id_cb cb;
    void *arg;
} md_id_req;

typedef struct md_id_counter {
    char name[MD_ID_NAME_BYTES_MAX];
    char path[MD_ID_NAME_BYTES_MAX + 16];
    md_client *client;
    int64_t next;     /* next id to hand out from the cached block */
    int64_t end;      /* one past the block */
    int64_t reserved; /* first id of the block being reserved */
    bool reserving;   /* a reservation is in flight */
    int retries;
    md_id_req *wait_head, *wait_tail;
} md_id_counter;

struct md_store {
    const md_backend_ops *ops;
    md_backend *backend;
    pthread_mutex_t mu;
    md_watch *watches; /* armed watches */
    md_client *clients;
    bool read_only;
};

struct md_client {
    md_store *store;
    uv_loop_t *loop;
    uv_async_t async;
    md_item *head, *tail; /* delivery queue, under store->mu */
    md_client *next;      /* store->clients, under store->mu */
    int inflight;         /* loop thread only: ops and id requests not yet delivered */
    int watch_count;      /* loop thread only: watches allocated */
    bool closing;
    bool async_closing;
    md_session_cb session_cb;
    void *session_arg;
    void (*closed_cb)(void *arg);
    void *closed_arg;
    md_id_counter counters[MD_ID_COUNTERS_MAX];
};

/* --- path helpers ---------------------------------------------------------------------- */

static int check_path(const char *path)
{
    if (path == NULL || path[0] != '/')
        return MG_EINVAL;
    size_t len = strnlen(path, MD_PATH_BYTES_MAX + 1);
    if (len > MD_PATH_BYTES_MAX)
        return MG_EINVAL;
    if (len == 1)
        return MG_OK; /* "/" */
    if (path[len - 1] == '/')
        return MG_EINVAL;
    const char *seg = path + 1;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0)
            return MG_EINVAL;
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return MG_EINVAL;
        if (!slash)
            break;
        seg = slash + 1;
    }
    return MG_OK;
}

size_t md__parent_len(const char *path)
{
    size_t len = strlen(path);
    if (len <= 1)
        return 0;
    const char *slash = strrchr(path, '/');
    return slash == path ? 1 : (size_t)(slash - path);
}

void md__format_sequence(int64_t seq, char *buf)
{
    snprintf(buf, MD_SEQUENTIAL_DIGITS + 1, "%0*" PRId64, MD_SEQUENTIAL_DIGITS, seq);
}

md_backend *md__store_backend(md_store *store)
{
    return store->backend;
}

/* --- store ------------------------------------------------------------------------------ */

int md_store_open(const char *url, const md_store_options *opts, md_store **out)
{
    static const md_store_options default_opts = { 0 };
    const md_backend_ops *ops = NULL;
    const char *target = NULL;
    if (url && strncmp(url, "rocksdb:", 8) == 0) {
        ops = &md_rocksdb_backend;
        target = url + 8;
    } else if (url && strncmp(url, "zk:", 3) == 0) {
        ops = &md_zk_backend;
        target = url + 3;
    }
    if (ops == NULL || target[0] == '\0') {
        MG_ERROR("metadata store URL '%s' is not rocksdb:<dir> or zk:host:port[,...][/chroot]",
                 url ? url : "(null)");
        return MG_EINVAL;
    }
    md_store *s = mg_calloc(1, sizeof(*s));
    if (s == NULL)
        return MG_ENOMEM;
    s->ops = ops;
    s->read_only = opts && opts->read_only;
    pthread_mutex_init(&s->mu, NULL);
    int rc = ops->open(s, target, opts ? opts : &default_opts, &s->backend);
    if (rc != MG_OK) {
        pthread_mutex_destroy(&s->mu);
        mg_free(s);
        return rc;
    }
    *out = s;
    return MG_OK;
}

void md_store_close(md_store *store)
{
    if (store == NULL)
        return;
    pthread_mutex_lock(&store->mu);
    MG_ASSERT(store->clients == NULL); /* close every client first */
    pthread_mutex_unlock(&store->mu);
    store->ops->close(store->backend);
    MG_ASSERT(store->watches == NULL);
    pthread_mutex_destroy(&store->mu);
    mg_free(store);
}

const char *md_store_backend(const md_store *store)
{
    return store->ops->name;
}

int64_t md_store_session_id(md_store *store)
{
    return store->ops->session_id(store->backend);
}

/* --- delivery ---------------------------------------------------------------------------- */

/* Appends to the client's queue and wakes its loop. Caller holds store->mu. */
static void enqueue_locked(md_client *c, md_item *item)
{
    item->next = NULL;
    if (c->tail)
        c->tail->next = item;
    else
        c->head = item;
    c->tail = item;
    uv_async_send(&c->async);
}

static void free_op(md_op *op)
{
    mg_free((void *)op->path);
    mg_free((void *)op->value);
    mg_free(op->data);
    mg_free(op->created_path);
    if (op->names) {
        for (size_t i = 0; i < op->name_count; i++)
            mg_free(op->names[i]);
        mg_free(op->names);
    }
    mg_free(op);
}

static void watch_unref(md_watch *w)
{
    MG_ASSERT(w->refs > 0);
    if (--w->refs > 0)
        return;
    w->client->watch_count--;
    mg_free(w->path);
    mg_free(w);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void unlink_watch_locked(md_store *s, md_watch *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        s->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void deliver_op(md_client *c, md_op *op)
{
    /* A watched read that failed leaves no watch behind. */
    md_watch *w = op->watch;
    if (w) {
        bool keep = op->status == MG_OK || (op->type == MD_OP_GET && op->status == MG_ENOTFOUND);
        bool never_queued = false;
        if (!keep) {
            md_store *s = c->store;
            pthread_mutex_lock(&s->mu);
            if (w->state == WATCH_ARMED)
                unlink_watch_locked(s, w);
            never_queued = w->state == WATCH_NEW || w->state == WATCH_ARMED;
            w->state = WATCH_DEAD; /* a queued one is skipped when drained */
            pthread_mutex_unlock(&s->mu);
        }
        if (never_queued)
            watch_unref(w); /* its life ends here */
        watch_unref(w);     /* the op's reference */
        op->watch = NULL;
    }
    switch (op->type) {
    case MD_OP_GET:
        ((md_get_cb)op->cb)(op->status, op->data, op->data_len, &op->stat, op->arg);
        break;
    case MD_OP_CREATE:
        ((md_create_cb)op->cb)(op->status, op->status == MG_OK ? op->created_path : NULL, op->arg);
        break;
    case MD_OP_SET:
        ((md_stat_cb)op->cb)(op->status, &op->stat, op->arg);
        break;
    case MD_OP_DELETE:
        ((md_done_cb)op->cb)(op->status, op->arg);
        break;
    case MD_OP_CHILDREN:
        if (op->status == MG_OK && op->name_count > 1)
            qsort(op->names, op->name_count, sizeof(op->names[0]), cmp_names);
        ((md_children_cb)op->cb)(op->status, (const char *const *)op->names,
                                 op->status == MG_OK ? op->name_count : 0, op->arg);
        break;
    }
    free_op(op);
}

static void id_deliver(md_id_req *req);

static void client_async_closed(uv_handle_t *h)
{
    md_client *c = h->data;
    void (*cb)(void *) = c->closed_cb;
    void *arg = c->closed_arg;
    mg_free(c);
    if (cb)
        cb(arg);
}

static void maybe_finish_close(md_client *c)
{
    if (!c->closing || c->async_closing || c->inflight > 0 || c->watch_count > 0)
        return;
    md_store *s = c->store;
    pthread_mutex_lock(&s->mu);
    bool empty = c->head == NULL;
    if (empty) {
        md_client **pp = &s->clients;
        while (*pp != c)
            pp = &(*pp)->next;
        *pp = c->next;
    }
    pthread_mutex_unlock(&s->mu);
    if (!empty)
        return;
    c->async_closing = true;
    uv_close((uv_handle_t *)&c->async, client_async_closed);
}

static void client_drain(uv_async_t *async)
{
    md_client *c = async->data;
    md_store *s = c->store;
    pthread_mutex_lock(&s->mu);
    md_item *item = c->head;
    c->head = c->tail = NULL;
    pthread_mutex_unlock(&s->mu);

    while (item) {
        md_item *next = item->next;
        switch (item->kind) {
        case ITEM_OP:
            c->inflight--;
            deliver_op(c, (md_op *)((char *)item - offsetof(md_op, item)));
            break;
        case ITEM_WATCH: {
            md_watch *w = (md_watch *)item;
            pthread_mutex_lock(&s->mu);
            bool dead = w->state == WATCH_DEAD;
            pthread_mutex_unlock(&s->mu);
            if (!dead)
                w->cb(w->fired, w->path, w->arg);
            watch_unref(w);
            break;
        }
        case ITEM_SESSION: {
            md_session_item *si = (md_session_item *)item;
            if (c->session_cb && !c->closing)
                c->session_cb(si->state, c->session_arg);
            mg_free(si);
            break;
        }
        case ITEM_ID:
            id_deliver((md_id_req *)item);
            break;
        default:
            MG_UNREACHABLE();
        }
        item = next;
    }
    maybe_finish_close(c);
}

void md__op_complete(md_op *op)
{
    md_store *s = op->store;
    pthread_mutex_lock(&s->mu);
    enqueue_locked(op->client, &op->item);
    pthread_mutex_unlock(&s->mu);
}

/* Moves an armed watch to its client's queue with the given event. Caller holds store->mu. */
static void fire_locked(md_store *s, md_watch *w, md_event_type type)
{
    unlink_watch_locked(s, w);
    w->state = WATCH_QUEUED;
    w->fired = type;
    enqueue_locked(w->client, &w->item);
}

void md__watch_arm(md_op *op)
{
    md_watch *w = op->watch;
    MG_ASSERT(w != NULL);
    md_store *s = op->store;
    pthread_mutex_lock(&s->mu);
    MG_ASSERT(w->state == WATCH_NEW);
    w->state = WATCH_ARMED;
    w->prev = NULL;
    w->next = s->watches;
    if (s->watches)
        s->watches->prev = w;
    s->watches = w;
    if (w->client->closing)
        fire_locked(s, w, MD_EVENT_WATCH_LOST);
    pthread_mutex_unlock(&s->mu);
}

void md__notify(md_store *s, const char *path, md_event_type type)
{
    pthread_mutex_lock(&s->mu);
    md_watch *w = s->watches;
    while (w) {
        md_watch *next = w->next;
        bool match = strcmp(w->path, path) == 0;
        if (match && w->kind == MD_WATCH_NODE)
            match =
                type == MD_EVENT_CREATED || type == MD_EVENT_CHANGED || type == MD_EVENT_DELETED;
        else if (match)
            match = type == MD_EVENT_CHILDREN || type == MD_EVENT_DELETED;
        if (match)
            fire_locked(s, w, type);
        w = next;
    }
    pthread_mutex_unlock(&s->mu);
}

void md__session_event(md_store *s, md_session_state state)
{
    pthread_mutex_lock(&s->mu);
    if (state == MD_SESSION_EXPIRED) {
        while (s->watches)
            fire_locked(s, s->watches, MD_EVENT_WATCH_LOST);
    }
    for (md_client *c = s->clients; c; c = c->next) {
        md_session_item *si = mg_malloc(sizeof(*si));
        if (si == NULL) {
            MG_WARN("metadata: out of memory, a session event (%d) is not delivered", state);
            continue;
        }
        si->item.kind = ITEM_SESSION;
        si->state = state;
        enqueue_locked(c, &si->item);
    }
    pthread_mutex_unlock(&s->mu);
}

/* --- clients ----------------------------------------------------------------------------- */

int md_client_create(md_store *store, uv_loop_t *loop, md_client **out)
{
    md_client *c = mg_calloc(1, sizeof(*c));
    if (c == NULL)
        return MG_ENOMEM;
    c->store = store;
    c->loop = loop;
    int rc = uv_async_init(loop, &c->async, client_drain);
    if (rc != 0) {
        mg_free(c);
        return mg_err_from_uv(rc);
    }
    c->async.data = c;
    pthread_mutex_lock(&store->mu);
    c->next = store->clients;
    store->clients = c;
    pthread_mutex_unlock(&store->mu);
    *out = c;
    return MG_OK;
}

void md_client_on_session(md_client *c, md_session_cb cb, void *arg)
{
    c->session_cb = cb;
    c->session_arg = arg;
}

void md_client_close(md_client *c, void (*closed_cb)(void *arg), void *arg)
{
    MG_ASSERT(!c->closing);
    c->closing = true;
    c->closed_cb = closed_cb;
    c->closed_arg = arg;
    md_store *s = c->store;
    pthread_mutex_lock(&s->mu);
    md_watch *w = s->watches;
    while (w) {
        md_watch *next = w->next;
        if (w->client == c)
            fire_locked(s, w, MD_EVENT_WATCH_LOST);
        w = next;
    }
    uv_async_send(&c->async); /* a drain pass finishes the close when nothing is left */
    pthread_mutex_unlock(&s->mu);
}

/* --- operations -------------------------------------------------------------------------- */

static int new_op(md_client *c, md_op_type type, const char *path, const void *value,
                  size_t value_len, void *cb, void *arg, md_op **out)
{
    if (c->closing)
        return MG_ECLOSED;
    MG_TRY(check_path(path));
    if (value_len > MD_VALUE_BYTES_MAX)
        return MG_ELIMIT;
    if (c->store->read_only && type != MD_OP_GET && type != MD_OP_CHILDREN)
        return MG_EREADONLY;
    if (c->inflight >= MD_CLIENT_INFLIGHT_MAX)
        return MG_ELIMIT;
    md_op *op = mg_calloc(1, sizeof(*op));
    if (op == NULL)
        return MG_ENOMEM;
    size_t plen = strlen(path) + 1;
    char *p = mg_malloc(plen);
    if (p == NULL) {
        mg_free(op);
        return MG_ENOMEM;
    }
    memcpy(p, path, plen);
    op->path = p;
    if (value_len > 0) {
        uint8_t *v = mg_malloc(value_len);
        if (v == NULL) {
            mg_free(p);
            mg_free(op);
            return MG_ENOMEM;
        }
        memcpy(v, value, value_len);
        op->value = v;
        op->value_len = value_len;
    }
    op->type = type;
    op->store = c->store;
    op->client = c;
    op->cb = cb;
    op->arg = arg;
    op->version = MD_VERSION_ANY;
    op->item.kind = ITEM_OP;
    *out = op;
    return MG_OK;
}

static int add_watch(md_client *c, md_op *op, md_watch_kind kind, md_watch_cb cb, void *arg)
{
    if (c->watch_count >= MD_CLIENT_WATCHES_MAX)
        return MG_ELIMIT;
    md_watch *w = mg_calloc(1, sizeof(*w));
    char *p = mg_malloc(strlen(op->path) + 1);
    if (w == NULL || p == NULL) {
        mg_free(w);
        mg_free(p);
        return MG_ENOMEM;
    }
    strcpy(p, op->path);
    w->item.kind = ITEM_WATCH;
    w->kind = kind;
    w->state = WATCH_NEW;
    w->path = p;
    w->client = c;
    w->cb = cb;
    w->arg = arg;
    w->refs = 2;
    c->watch_count++;
    op->watch = w;
    return MG_OK;
}

static void submit(md_client *c, md_op *op)
{
    c->inflight++;
    c->store->ops->submit(c->store->backend, op);
}

/* A read (MD_OP_GET or MD_OP_CHILDREN) that also sets a watch of the given kind, or none
 * (MD_WATCH_NONE). */
static int submit_read(md_client *c, md_op_type type, const char *path, md_watch_kind kind,
                       md_watch_cb watch_cb, void *watch_arg, void *cb, void *arg)
{
    md_op *op;
    MG_TRY(new_op(c, type, path, NULL, 0, cb, arg, &op));
    if (kind != MD_WATCH_NONE) {
        int rc = add_watch(c, op, kind, watch_cb, watch_arg);
        if (rc != MG_OK) {
            free_op(op);
            return rc;
        }
    }
    submit(c, op);
    return MG_OK;
}

int md_get(md_client *c, const char *path, md_get_cb cb, void *arg)
{
    return submit_read(c, MD_OP_GET, path, MD_WATCH_NONE, NULL, NULL, (void *)cb, arg);
}

int md_get_watch(md_client *c, const char *path, md_watch_cb watch_cb, void *watch_arg,
                 md_get_cb cb, void *arg)
{
    return submit_read(c, MD_OP_GET, path, MD_WATCH_NODE, watch_cb, watch_arg, (void *)cb, arg);
}

int md_create(md_client *c, const char *path, const void *value, size_t value_len, int flags,
              md_create_cb cb, void *arg)
{
    if (flags & ~(MD_EPHEMERAL | MD_SEQUENTIAL | MD_CREATE_PARENTS))
        return MG_EINVAL;
    if (path && strcmp(path, "/") == 0)
        return MG_EEXIST;
    md_op *op;
    MG_TRY(new_op(c, MD_OP_CREATE, path, value, value_len, (void *)cb, arg, &op));
    op->flags = flags;
    submit(c, op);
    return MG_OK;
}

int md_set(md_client *c, const char *path, const void *value, size_t value_len,
           int64_t expected_version, md_stat_cb cb, void *arg)
{
    if (expected_version < MD_VERSION_ANY || expected_version > INT32_MAX)
        return MG_EINVAL; /* ZooKeeper's versions are 32-bit */
    md_op *op;
    MG_TRY(new_op(c, MD_OP_SET, path, value, value_len, (void *)cb, arg, &op));
    op->version = expected_version;
    submit(c, op);
    return MG_OK;
}

int md_delete(md_client *c, const char *path, int64_t expected_version, md_done_cb cb, void *arg)
{
    if (expected_version < MD_VERSION_ANY || expected_version > INT32_MAX)
        return MG_EINVAL;
    if (path && strcmp(path, "/") == 0)
        return MG_EINVAL;
    md_op *op;
    MG_TRY(new_op(c, MD_OP_DELETE, path, NULL, 0, (void *)cb, arg, &op));
    op->version = expected_version;
    submit(c, op);
    return MG_OK;
}

int md_children(md_client *c, const char *path, md_children_cb cb, void *arg)
{
    return submit_read(c, MD_OP_CHILDREN, path, MD_WATCH_NONE, NULL, NULL, (void *)cb, arg);
}

int md_children_watch(md_client *c, const char *path, md_watch_cb watch_cb, void *watch_arg,
                      md_children_cb cb, void *arg)
{
    return submit_read(c, MD_OP_CHILDREN, path, MD_WATCH_CHILDREN, watch_cb, watch_arg, (void *)cb,
                       arg);
}

/* --- id allocator -------------------------------------------------------------------------
 * /counters/<name> holds the next id not yet reserved, as decimal text (readable with
 * `magnetar admin metadata get`). A reservation reads it and writes it + MD_ID_BLOCK with
 * compare-and-set on the version read; a conflict (another client or process reserved
 * meanwhile) reads again. A client runs at most one reservation per counter: requests that
 * arrive meanwhile wait on the counter and are served from the block it brings, so a burst of
 * requests costs one round trip per MD_ID_BLOCK ids, not a storm of conflicting writes. Every
 * request is answered through the client's queue, so no callback runs inside md_id_next. */

static void id_finish(md_id_req *req, int status, int64_t id)
{
    req->status = status;
    req->id = id;
    md_store *s = req->client->store;
    pthread_mutex_lock(&s->mu);
    enqueue_locked(req->client, &req->item);
    pthread_mutex_unlock(&s->mu);
}

static void id_reserve(md_id_counter *k);

/* Serves waiting requests from the cached block; reserves again if some are left. */
static void id_serve(md_id_counter *k)
{
    while (k->wait_head && k->next < k->end) {
        md_id_req *req = k->wait_head;
        k->wait_head = (md_id_req *)req->item.next;
        if (k->wait_head == NULL)
            k->wait_tail = NULL;
        id_finish(req, MG_OK, k->next++);
    }
    if (k->wait_head)
        id_reserve(k);
}

static void id_fail_all(md_id_counter *k, int status)
{
    k->reserving = false;
    while (k->wait_head) {
        md_id_req *req = k->wait_head;
        k->wait_head = (md_id_req *)req->item.next;
        id_finish(req, status, 0);
    }
    k->wait_tail = NULL;
}

static void id_got_block(md_id_counter *k, int64_t first)
{
    k->reserving = false;
    k->next = first;
    k->end = first + MD_ID_BLOCK;
    id_serve(k);
}

static void id_get_done(int status, const void *value, size_t len, const md_stat *stat, void *arg);

static void id_retry(md_id_counter *k)
{
    if (++k->retries > MD_ID_RETRIES_MAX) {
        MG_WARN("metadata: id counter %s: %d conflicting reservations in a row, giving up", k->path,
                MD_ID_RETRIES_MAX);
        id_fail_all(k, MG_EAGAIN);
        return;
    }
    int rc = md_get(k->client, k->path, id_get_done, k);
    if (rc != MG_OK)
        id_fail_all(k, rc);
}

static void id_set_done(int status, const md_stat *stat, void *arg)
{
    md_id_counter *k = arg;
    if (status == MG_OK)
        id_got_block(k, k->reserved);
    else if (status == MG_EBADVERSION)
        id_retry(k);
    else
        id_fail_all(k, status);
}

static void id_create_done(int status, const char *path, void *arg)
{
    md_id_counter *k = arg;
    if (status == MG_OK)
        id_got_block(k, 1);
    else if (status == MG_EEXIST)
        id_retry(k);
    else
        id_fail_all(k, status);
}

static void id_get_done(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    md_id_counter *k = arg;
    char text[32];
    if (status == MG_ENOTFOUND) {
        int n = snprintf(text, sizeof(text), "%d", 1 + MD_ID_BLOCK);
        int rc =
            md_create(k->client, k->path, text, (size_t)n, MD_CREATE_PARENTS, id_create_done, k);
        if (rc != MG_OK)
            id_fail_all(k, rc);
        return;
    }
    if (status != MG_OK) {
        id_fail_all(k, status);
        return;
    }
    int64_t next = 0;
    if (len == 0 || len >= sizeof(text)) {
        status = MG_ECORRUPT;
    } else {
        memcpy(text, value, len);
        text[len] = '\0';
        char *end;
        next = strtoll(text, &end, 10);
        if (*end != '\0' || next < 1 || next > INT64_MAX - MD_ID_BLOCK)
            status = MG_ECORRUPT;
    }
    if (status != MG_OK) {
        MG_ERROR("metadata: id counter %s holds no valid number", k->path);
        id_fail_all(k, status);
        return;
    }
    int n = snprintf(text, sizeof(text), "%" PRId64, next + MD_ID_BLOCK);
    k->reserved = next;
    int rc = md_set(k->client, k->path, text, (size_t)n, stat->version, id_set_done, k);
    if (rc != MG_OK)
        id_fail_all(k, rc);
}

static void id_reserve(md_id_counter *k)
{
    if (k->reserving)
        return;
    k->reserving = true;
    k->retries = 0;
    int rc = md_get(k->client, k->path, id_get_done, k);
    if (rc != MG_OK)
        id_fail_all(k, rc);
}

/* Runs on the loop when an id request's queue item is drained. */
static void id_deliver(md_id_req *req)
{
    md_client *c = req->client;
    c->inflight--;
    req->cb(req->status, req->status == MG_OK ? req->id : 0, req->arg);
    mg_free(req);
}

int md_id_next(md_client *c, const char *name, md_id_cb cb, void *arg)
{
    if (c->closing)
        return MG_ECLOSED;
    size_t n = name ? strnlen(name, MD_ID_NAME_BYTES_MAX) : 0;
    if (n == 0 || n >= MD_ID_NAME_BYTES_MAX || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return MG_EINVAL;
    if (c->inflight >= MD_CLIENT_INFLIGHT_MAX)
        return MG_ELIMIT;
    md_id_counter *k = NULL;
    for (int i = 0; i < MD_ID_COUNTERS_MAX && k == NULL; i++) {
        if (strcmp(c->counters[i].name, name) == 0)
            k = &c->counters[i];
    }
    for (int i = 0; i < MD_ID_COUNTERS_MAX && k == NULL; i++) {
        if (c->counters[i].name[0] == '\0') {
            k = &c->counters[i];
            memcpy(k->name, name, n + 1);
            snprintf(k->path, sizeof(k->path), "/counters/%s", name);
            k->client = c;
        }
    }
    if (k == NULL)
        return MG_ELIMIT;
    md_id_req *req = mg_calloc(1, sizeof(*req));
    if (req == NULL)
        return MG_ENOMEM;
    req->item.kind = ITEM_ID;
    req->client = c;
    req->cb = cb;
    req->arg = arg;
    c->inflight++;
    if (k->next < k->end && k->wait_head == NULL) {
        id_finish(req, MG_OK, k->next++);
        return MG_OK;
    }
    req->item.next = NULL;
    if (k->wait_tail)
        k->wait_tail->item.next = &req->item;
    else
        k->wait_head = req;
    k->wait_tail = req;
    id_reserve(k);
    return MG_OK;
}
