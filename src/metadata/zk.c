/*
 * ZooKeeper backend of the metadata store: URLs "zk:host:port[,host:port...][/chroot]", served
 * through the multi-threaded ZooKeeper C client (libzookeeper-mt 3.8). The target string goes to
 * zookeeper_init() as is; with a chroot every path the client sees is relative to it (ZooKeeper
 * prepends and strips it), events and created paths included.
 *
 * THREADS
 *  - Each zhandle_t runs two threads of its own. The IO thread owns the socket (connects,
 *    handshakes, pings, timeouts, reconnects); the completion thread calls every completion and
 *    the global watcher, one at a time, in the order the server's replies and events arrived.
 *    So every callback below (zk_*_done, zk_watcher) runs on the completion thread of the handle
 *    that issued the request, never on a libuv loop, and never with a ZooKeeper lock held.
 *  - submit() runs on client loops (any thread): it issues the asynchronous call and returns.
 *    Results go back with md__op_complete(), which hands them to the client's loop.
 *  - Our helper thread ("md-zk") replaces the handle after an expiry. zookeeper_close() joins
 *    the handle's threads, so it must never run on them; the helper (or close()) does it.
 *
 * LOCKING
 * b->mu guards the current handle b->zh, the session state and the list of pending requests.
 * Invariants:
 *  1. Every zoo_a*() call is made with b->mu held, on b->zh. A handle is closed only after it
 *     was taken out of b->zh, so no call ever races with zookeeper_close() of its handle.
 *  2. zookeeper_close() runs without b->mu: it waits for the handle's completion thread, which
 *     may be waiting for b->mu.
 *  3. md__* functions are never called with b->mu held (the generic layer has its own locks and
 *     may call submit() while holding them).
 *  4. A request is completed exactly once: by its own completion (which unlinks it under b->mu),
 *     or, once zookeeper_close() of its handle has returned and no completion can run any more,
 *     by whoever closed the handle. (ZooKeeper 3.8's close may drop the ZCLOSING completions of
 *     requests still in flight: the completion thread can exit before running them.)
 *
 * SESSION STATE MACHINE (reported through md__session_event, each change once)
 *
 *     CONNECTING --connected--> CONNECTED --connection lost--> DISCONNECTED
 *        ^                        ^   |                            |
 *        |                        |   +----server says expired-----+---> EXPIRED
 *        |                        +-------reconnected in time------+        |
 *        +----------- the helper installs a new handle (new session) -------+
 *
 * CONNECTING (a handle that has never been connected) is not reported. EXPIRED comes from the
 * server when the client reconnects after the session timeout (or after another handle closed
 * the session): the handle is then dead for good. The watcher reports EXPIRED, then wakes the
 * helper, which creates a new handle, installs it and closes the dead one, so a new session's
 * CONNECTED can never be reported before the old session's EXPIRED. The generic layer fires
 * MD_EVENT_WATCH_LOST for every watch on EXPIRED; ZooKeeper drops its own watches with the
 * session. While DISCONNECTED, ZooKeeper keeps both the session and the watches and re-registers
 * the watches on reconnect (changes missed meanwhile fire at once).
 *
 * REQUESTS
 * Requests issued while a handle is connecting wait in ZooKeeper's send queue (it sends nothing
 * before the handshake is done); if the connect attempt fails (server down: refused at once;
 * unreachable: after 2/3 of the session timeout) ZooKeeper fails every queued and sent request
 * with ZCONNECTIONLOSS or ZOPERATIONTIMEOUT, and reconnects. So with the server down operations
 * fail with MG_ECONNECTION within one connect attempt. On a dead (expired) handle, and in the
 * short window before the helper installs the new one, calls fail at once with ZINVALIDSTATE
 * (MG_ECONNECTION): we do not queue them ourselves, the caller retries like after any
 * connection error.
 *  - GET: zoo_aget (watch flag). On ZNONODE with a watch, zoo_aexists(watch) leaves a watch
 *    that fires when the node is created; if exists finds the node (created meanwhile), the
 *    get is issued again (at most MD_ZK_GET_ROUNDS_MAX rounds).
 *  - CREATE: zoo_acreate2 with the open ACL. MD_CREATE_PARENTS: on ZNONODE create every
 *    ancestor top-down as an empty persistent node (ZNODEEXISTS is fine) and create again.
 *  - SET / DELETE: zoo_aset / zoo_adelete with the expected version (MD_VERSION_ANY is
 *    ZooKeeper's -1). ZooKeeper versions are 32-bit; a larger expected version cannot match.
 *  - CHILDREN: zoo_aget_children (watch flag).
 * md__watch_arm() is called in the completion of the read that set the ZooKeeper watch, just
 * before md__op_complete(). That is where the read takes effect for this client: the server
 * sends a read's reply before any event that a later write causes, and the completion thread
 * delivers replies and events in arrival order, so the record is armed before its event can be
 * delivered, and no event of a write ordered before the read can fire it. A failed read never
 * arms. Node events map ZOO_CREATED/CHANGED/DELETED/CHILD_EVENT to MD_EVENT_* and go to
 * md__notify(); ZooKeeper keeps one watch per path and kind, the generic registry fires every
 * record of that path, which matches.
 *
 * ERRORS (ZooKeeper -> Magnetar)
 *   ZNONODE -> MG_ENOTFOUND, ZNODEEXISTS -> MG_EEXIST, ZBADVERSION -> MG_EBADVERSION,
 *   ZNOTEMPTY -> MG_ENOTEMPTY, ZNOCHILDRENFOREPHEMERALS -> MG_EINVAL, ZBADARGUMENTS -> MG_EINVAL,
 *   ZCONNECTIONLOSS, ZOPERATIONTIMEOUT, ZSESSIONEXPIRED, ZINVALIDSTATE -> MG_ECONNECTION,
 *   ZCLOSING -> MG_ECLOSED, anything else -> MG_EIO (logged with zerror()).
 *
 * CLOSE
 * close() refuses new requests (MG_ECLOSED), waits up to MD_ZK_CLOSE_DRAIN_MS for the pending
 * ones to finish, stops the helper, closes the handle (a connected handle sends closeSession,
 * so the server removes our ephemeral nodes at once) and fails whatever is left with MG_ECLOSED.
 *
 * LOGGING
 * ZooKeeper's log goes to ours through a per-handle callback, one level down (ZooKeeper logs
 * every refused connect attempt as an error; we report those as session states instead):
 * ERROR -> warn, WARN -> info, INFO -> debug, DEBUG -> trace.
 */
#include "metadata/zk_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"
#include "metadata/md_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

typedef enum zk_step {
    ZK_STEP_MAIN = 0,   /* the op's own request */
    ZK_STEP_EXISTS = 1, /* get with a watch on a missing node: exists with a watch */
    ZK_STEP_PARENT = 2, /* create with parents: creating the ancestor path[0, parent_len) */
} zk_step;

typedef struct zk_req zk_req;

/* One md_op in flight, with the state of its multi-step requests. Lives on b->pending from
 * submit() to completion. */
struct zk_req {
    md_backend *b;
    md_op *op;
    zhandle_t *zh; /* the handle its requests run on */
    zk_step step;
    size_t parent_len; /* ZK_STEP_PARENT: length of the ancestor being created */
    int rounds;        /* get: exists rounds; create: ancestor rounds */
    char *ancestor;    /* scratch for ancestor paths (MD_CREATE_PARENTS), mg_malloc'd at submit */
    zk_req *prev;
    zk_req *next;
};

typedef enum zk_state {
    ZK_STATE_CONNECTING = 0,
    ZK_STATE_CONNECTED = 1,
    ZK_STATE_DISCONNECTED = 2,
    ZK_STATE_EXPIRED = 3,
} zk_state;

struct md_backend {
    md_store *store;
    char *hosts; /* the target, handed to zookeeper_init */
    int32_t session_timeout_ms;
    pthread_t helper;

    pthread_mutex_t mu;
    pthread_cond_t cond; /* (monotonic) any change below */
    zhandle_t *zh;       /* current handle; NULL once close() took it */
    zk_state state;      /* last state reported (CONNECTING: nothing reported on this handle) */
    int64_t session_id;  /* current session once connected, else 0 */
    uint64_t expiry_count;
    bool replace;  /* the current handle's session expired: the helper must replace it */
    bool stopping; /* the helper must exit */
    bool closing;  /* new requests fail with MG_ECLOSED */
    zk_req *pending;
    size_t pending_count;
};

/* --- small helpers ------------------------------------------------------------------------ */

/* A monotonic deadline ms from now as a timespec, the form pthread_cond_timedwait takes (so not
 * common/clock.h, which gives plain numbers). */
static void zk_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec += 1;
        ts->tv_nsec -= 1000000000L;
    }
}

static char *zk_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mg_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static int zk_err(int rc, const char *what, const char *path)
{
    switch (rc) {
    case ZOK:
        return MG_OK;
    case ZNONODE:
        return MG_ENOTFOUND;
    case ZNODEEXISTS:
        return MG_EEXIST;
    case ZBADVERSION:
        return MG_EBADVERSION;
    case ZNOTEMPTY:
        return MG_ENOTEMPTY;
    case ZNOCHILDRENFOREPHEMERALS:
    case ZBADARGUMENTS:
        return MG_EINVAL;
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
        return MG_ECONNECTION;
    case ZCLOSING:
        return MG_ECLOSED;
    default:
        MG_WARN("metadata zk: %s %s failed: %s (%d)", what, path, zerror(rc), rc);
        return MG_EIO;
    }
}

static void zk_fill_stat(md_stat *out, const struct Stat *st)
{
    if (st == NULL)
        return;
    out->version = st->version;
    out->created_ms = st->ctime;
    out->modified_ms = st->mtime;
    out->ephemeral_owner = st->ephemeralOwner;
    out->child_count = st->numChildren;
}

static int zk_mode(int flags)
{
    bool eph = (flags & MD_EPHEMERAL) != 0;
    bool seq = (flags & MD_SEQUENTIAL) != 0;
    if (eph)
        return seq ? ZOO_EPHEMERAL_SEQUENTIAL : ZOO_EPHEMERAL;
    return seq ? ZOO_PERSISTENT_SEQUENTIAL : ZOO_PERSISTENT;
}

/* Length of the next ancestor of path longer than len ("/a/b/c": 0 -> 2, 2 -> 4), or 0 when the
 * next one is path itself. */
static size_t zk_next_ancestor(const char *path, size_t len)
{
    const char *slash = strchr(path + len + 1, '/');
    return slash == NULL ? 0 : (size_t)(slash - path);
}

/* ZooKeeper's log, routed to ours one level down (see the header). */
static void zk_log(const char *message)
{
    static const struct {
        const char *tag;
        mg_log_level level;
    } levels[] = {
        { ":ZOO_ERROR@", MG_LOG_WARN },
        { ":ZOO_WARN@", MG_LOG_INFO },
        { ":ZOO_INFO@", MG_LOG_DEBUG },
        { ":ZOO_DEBUG@", MG_LOG_TRACE },
    };
    mg_log_level level = MG_LOG_INFO;
    const char *text = message;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        const char *at = strstr(message, levels[i].tag);
        if (at != NULL) {
            level = levels[i].level;
            text = at + strlen(levels[i].tag);
            break;
        }
    }
    if (level < mg_log_get_level())
        return;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    mg_log_write(level, "zookeeper: %.*s", (int)len, text);
}

static void zk_set_library_log_level(void)
{
    mg_log_level lv = mg_log_get_level();
    ZooLogLevel zl = ZOO_LOG_LEVEL_ERROR;
    if (lv <= MG_LOG_TRACE)
        zl = ZOO_LOG_LEVEL_DEBUG;
    else if (lv <= MG_LOG_DEBUG)
        zl = ZOO_LOG_LEVEL_INFO;
    else if (lv <= MG_LOG_INFO)
        zl = ZOO_LOG_LEVEL_WARN;
    zoo_set_debug_level(zl);
}

/* --- URL ---------------------------------------------------------------------------------- */

static bool zk_valid_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    long port = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

static bool zk_valid_host(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

/* "/" (no chroot) or a node path: no trailing or double '/', no "." or ".." segment. */
static bool zk_valid_chroot(const char *s)
{
    size_t n = strlen(s);
    if (n == 1)
        return true;
    if (s[n - 1] == '/')
        return false;
    const char *seg = s + 1;
    for (;;) {
        const char *end = strchr(seg, '/');
        size_t len = end == NULL ? strlen(seg) : (size_t)(end - seg);
        if (len == 0)
            return false;
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < ' ' || c == 0x7f)
                return false;
        }
        if (end == NULL)
            return true;
        seg = end + 1;
    }
}

static int zk_check_target(const char *target)
{
    size_t n = strnlen(target, MD_ZK_TARGET_BYTES_MAX + 1);
    if (n == 0) {
        MG_ERROR("metadata zk: empty URL, expected zk:host:port[,host:port...][/chroot]");
        return MG_EINVAL;
    }
    if (n > MD_ZK_TARGET_BYTES_MAX) {
        MG_ERROR("metadata zk: URL longer than %d bytes", MD_ZK_TARGET_BYTES_MAX);
        return MG_EINVAL;
    }
    const char *chroot = strchr(target, '/');
    size_t hosts_len = chroot == NULL ? n : (size_t)(chroot - target);
    size_t host_count = 0;
    size_t pos = 0;
    while (pos <= hosts_len) {
        const char *item = target + pos;
        const char *comma = memchr(item, ',', hosts_len - pos);
        size_t len = comma == NULL ? hosts_len - pos : (size_t)(comma - item);
        const char *colon = NULL;
        for (size_t i = len; i > 0; i--) {
            if (item[i - 1] == ':') {
                colon = item + i - 1;
                break;
            }
        }
        if (colon == NULL || !zk_valid_host(item, (size_t)(colon - item)) ||
            !zk_valid_port(colon + 1, len - (size_t)(colon - item) - 1)) {
            MG_ERROR("metadata zk: bad server \"%.*s\" in \"%s\", expected host:port with a "
                     "port from 1 to 65535",
                     (int)len, item, target);
            return MG_EINVAL;
        }
        if (++host_count > MD_ZK_HOSTS_MAX) {
            MG_ERROR("metadata zk: more than %d servers in \"%s\"", MD_ZK_HOSTS_MAX, target);
            return MG_EINVAL;
        }
        pos += len + 1;
    }
    if (chroot != NULL && !zk_valid_chroot(chroot)) {
        MG_ERROR("metadata zk: bad chroot path \"%s\" in \"%s\"", chroot, target);
        return MG_EINVAL;
    }
    return MG_OK;
}

/* --- pending requests ---------------------------------------------------------------------- */

/* b->mu held. */
static void zk_link(md_backend *b, zk_req *r)
{
    r->prev = NULL;
    r->next = b->pending;
    if (b->pending != NULL)
        b->pending->prev = r;
    b->pending = r;
    b->pending_count++;
}

/* b->mu held. */
static void zk_unlink(md_backend *b, zk_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        b->pending = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    MG_ASSERT(b->pending_count > 0);
    if (--b->pending_count == 0)
        pthread_cond_broadcast(&b->cond);
}

/* b->mu not held; r is already unlinked. Frees r. */
static void zk_complete(zk_req *r, int status)
{
    md_op *op = r->op;
    op->status = status;
    mg_free(r->ancestor);
    mg_free(r);
    md__op_complete(op);
}

static void zk_finish(zk_req *r, int status)
{
    md_backend *b = r->b;
    pthread_mutex_lock(&b->mu);
    zk_unlink(b, r);
    pthread_mutex_unlock(&b->mu);
    zk_complete(r, status);
}

/* Completes every pending request of handle zh (NULL: of any handle) with status. Only after
 * zookeeper_close(zh) returned: no completion of that handle can run any more. */
static void zk_fail_handle(md_backend *b, const zhandle_t *zh, int status)
{
    zk_req *list = NULL;
    pthread_mutex_lock(&b->mu);
    zk_req *r = b->pending;
    while (r != NULL) {
        zk_req *next = r->next;
        if (zh == NULL || r->zh == zh) {
            zk_unlink(b, r);
            r->next = list;
            list = r;
        }
        r = next;
    }
    pthread_mutex_unlock(&b->mu);
    while (list != NULL) {
        zk_req *next = list->next;
        zk_complete(list, status);
        list = next;
    }
}

/* --- issuing requests ---------------------------------------------------------------------- */

static void zk_get_done(int rc, const char *value, int value_len, const struct Stat *stat,
                        const void *data);
static void zk_exists_done(int rc, const struct Stat *stat, const void *data);
static void zk_create_done(int rc, const char *path, const struct Stat *stat, const void *data);
static void zk_parent_done(int rc, const char *path, const struct Stat *stat, const void *data);
static void zk_set_done(int rc, const struct Stat *stat, const void *data);
static void zk_delete_done(int rc, const void *data);
static void zk_children_done(int rc, const struct String_vector *strings, const void *data);

/* b->mu held, r->zh == b->zh. Returns ZooKeeper's synchronous result. */
static int zk_issue(zk_req *r)
{
    md_op *op = r->op;
    zhandle_t *zh = r->zh;
    int watch = op->watch != NULL;
    const char *value = op->value != NULL ? (const char *)op->value : "";
    switch (op->type) {
    case MD_OP_GET:
        if (r->step == ZK_STEP_EXISTS)
            return zoo_aexists(zh, op->path, 1, zk_exists_done, r);
        return zoo_aget(zh, op->path, watch, zk_get_done, r);
    case MD_OP_CREATE:
        if (r->step == ZK_STEP_PARENT) {
            memcpy(r->ancestor, op->path, r->parent_len);
            r->ancestor[r->parent_len] = '\0';
            return zoo_acreate2(zh, r->ancestor, "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT,
                                zk_parent_done, r);
        }
        return zoo_acreate2(zh, op->path, value, (int)op->value_len, &ZOO_OPEN_ACL_UNSAFE,
                            zk_mode(op->flags), zk_create_done, r);
    case MD_OP_SET:
        return zoo_aset(zh, op->path, value, (int)op->value_len, (int)op->version, zk_set_done, r);
    case MD_OP_DELETE:
        return zoo_adelete(zh, op->path, (int)op->version, zk_delete_done, r);
    case MD_OP_CHILDREN:
        return zoo_aget_children(zh, op->path, watch, zk_children_done, r);
    }
    MG_UNREACHABLE();
}

static const char *zk_op_name(const md_op *op)
{
    switch (op->type) {
    case MD_OP_GET:
        return "get";
    case MD_OP_CREATE:
        return "create";
    case MD_OP_SET:
        return "set";
    case MD_OP_DELETE:
        return "delete";
    case MD_OP_CHILDREN:
        return "children";
    }
    return "op";
}

/* Issues the next step of r from one of its completions (so on the completion thread of r->zh:
 * its own completion cannot run before this returns). Completes r if that is not possible. */
static void zk_continue(zk_req *r, zk_step step)
{
    md_backend *b = r->b;
    int status = MG_OK;
    pthread_mutex_lock(&b->mu);
    if (r->zh != b->zh) {
        /* The handle was replaced after an expiry, or close() took it. */
        status = b->closing ? MG_ECLOSED : MG_ECONNECTION;
    } else {
        r->step = step;
        int rc = zk_issue(r);
        if (rc != ZOK)
            status = zk_err(rc, zk_op_name(r->op), r->op->path);
    }
    if (status != MG_OK)
        zk_unlink(b, r);
    pthread_mutex_unlock(&b->mu);
    if (status != MG_OK)
        zk_complete(r, status);
}

static void zk_submit(md_backend *b, md_op *op)
{
    MG_ASSERT(b != NULL && op != NULL && op->path != NULL);
    if ((op->type == MD_OP_SET || op->type == MD_OP_DELETE) &&
        (op->version < MD_VERSION_ANY || op->version > INT32_MAX)) {
        /* ZooKeeper versions are 32-bit: no node can have this one. */
        op->status = MG_EBADVERSION;
        md__op_complete(op);
        return;
    }
    if (op->value_len > MD_VALUE_BYTES_MAX) {
        op->status = MG_EINVAL; /* the generic layer refuses these already */
        md__op_complete(op);
        return;
    }
    zk_req *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        op->status = MG_ENOMEM;
        md__op_complete(op);
        return;
    }
    r->b = b;
    r->op = op;
    r->step = ZK_STEP_MAIN;
    if (op->type == MD_OP_CREATE && (op->flags & MD_CREATE_PARENTS) != 0) {
        r->ancestor = mg_malloc(strlen(op->path) + 1);
        if (r->ancestor == NULL) {
            mg_free(r);
            op->status = MG_ENOMEM;
            md__op_complete(op);
            return;
        }
    }

    int status = MG_OK;
    pthread_mutex_lock(&b->mu);
    if (b->closing || b->zh == NULL) {
        status = MG_ECLOSED;
    } else {
        r->zh = b->zh;
        zk_link(b, r);
        int rc = zk_issue(r);
        if (rc != ZOK) {
            zk_unlink(b, r);
            status = zk_err(rc, zk_op_name(op), op->path);
        }
    }
    pthread_mutex_unlock(&b->mu);
    /* From here on r belongs to its completion unless the call failed. */
    if (status != MG_OK)
        zk_complete(r, status);
}

/* --- completions (ZooKeeper's completion thread) ------------------------------------------ */

static void zk_get_done(int rc, const char *value, int value_len, const struct Stat *stat,
                        const void *data)
{
    zk_req *r = (zk_req *)data;
    md_op *op = r->op;
    if (rc == ZOK) {
        int status = MG_OK;
        if (value != NULL && value_len > 0) {
            op->data = mg_malloc((size_t)value_len);
            if (op->data == NULL) {
                status = MG_ENOMEM;
            } else {
                memcpy(op->data, value, (size_t)value_len);
                op->data_len = (size_t)value_len;
            }
        }
        if (status == MG_OK) {
            zk_fill_stat(&op->stat, stat);
            if (op->watch != NULL)
                md__watch_arm(op);
        }
        zk_finish(r, status);
        return;
    }
    if (rc == ZNONODE && op->watch != NULL) {
        /* getData leaves no watch on a missing node; exists does, and fires on its create. */
        zk_continue(r, ZK_STEP_EXISTS);
        return;
    }
    zk_finish(r, zk_err(rc, "get", op->path));
}

static void zk_exists_done(int rc, const struct Stat *stat, const void *data)
{
    (void)stat;
    zk_req *r = (zk_req *)data;
    md_op *op = r->op;
    if (rc == ZNONODE) {
        md__watch_arm(op);
        zk_finish(r, MG_ENOTFOUND);
        return;
    }
    if (rc == ZOK) {
        /* Created since the get: read it (again with a watch). */
        if (++r->rounds >= MD_ZK_GET_ROUNDS_MAX) {
            MG_WARN("metadata zk: get %s: node created and deleted %d times during the read",
                    op->path, r->rounds);
            zk_finish(r, MG_EIO);
            return;
        }
        zk_continue(r, ZK_STEP_MAIN);
        return;
    }
    zk_finish(r, zk_err(rc, "exists", op->path));
}

static void zk_create_done(int rc, const char *path, const struct Stat *stat, const void *data)
{
    zk_req *r = (zk_req *)data;
    md_op *op = r->op;
    if (rc == ZOK) {
        op->created_path = zk_strdup(path != NULL ? path : op->path);
        zk_fill_stat(&op->stat, stat);
        zk_finish(r, op->created_path != NULL ? MG_OK : MG_ENOMEM);
        return;
    }
    if (rc == ZNONODE && (op->flags & MD_CREATE_PARENTS) != 0 &&
        r->rounds < MD_ZK_PARENT_ROUNDS_MAX) {
        size_t first = zk_next_ancestor(op->path, 0);
        if (first > 0) {
            r->rounds++;
            r->parent_len = first;
            zk_continue(r, ZK_STEP_PARENT);
            return;
        }
    }
    zk_finish(r, zk_err(rc, "create", op->path));
}

static void zk_parent_done(int rc, const char *path, const struct Stat *stat, const void *data)
{
    (void)path;
    (void)stat;
    zk_req *r = (zk_req *)data;
    md_op *op = r->op;
    if (rc == ZOK || rc == ZNODEEXISTS) {
        size_t next = zk_next_ancestor(op->path, r->parent_len);
        if (next > 0) {
            r->parent_len = next;
            zk_continue(r, ZK_STEP_PARENT);
        } else {
            zk_continue(r, ZK_STEP_MAIN);
        }
        return;
    }
    if (rc == ZNONODE && r->rounds < MD_ZK_PARENT_ROUNDS_MAX) {
        /* An ancestor above was deleted meanwhile: start again from the top. */
        r->rounds++;
        r->parent_len = zk_next_ancestor(op->path, 0);
        zk_continue(r, ZK_STEP_PARENT);
        return;
    }
    zk_finish(r, zk_err(rc, "create parent of", op->path));
}

static void zk_set_done(int rc, const struct Stat *stat, const void *data)
{
    zk_req *r = (zk_req *)data;
    if (rc == ZOK)
        zk_fill_stat(&r->op->stat, stat);
    zk_finish(r, zk_err(rc, "set", r->op->path));
}

static void zk_delete_done(int rc, const void *data)
{
    zk_req *r = (zk_req *)data;
    zk_finish(r, zk_err(rc, "delete", r->op->path));
}

static int zk_copy_names(md_op *op, const struct String_vector *strings)
{
    if (strings == NULL || strings->count <= 0)
        return MG_OK;
    size_t count = (size_t)strings->count;
    char **names = mg_calloc(count, sizeof(*names));
    if (names == NULL)
        return MG_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        names[i] = zk_strdup(strings->data[i]);
        if (names[i] == NULL) {
            for (size_t j = 0; j < i; j++)
                mg_free(names[j]);
            mg_free(names);
            return MG_ENOMEM;
        }
    }
    op->names = names;
    op->name_count = count;
    return MG_OK;
}

static void zk_children_done(int rc, const struct String_vector *strings, const void *data)
{
    zk_req *r = (zk_req *)data;
    md_op *op = r->op;
    if (rc == ZOK) {
        int status = zk_copy_names(op, strings);
        if (status == MG_OK && op->watch != NULL)
            md__watch_arm(op);
        zk_finish(r, status);
        return;
    }
    zk_finish(r, zk_err(rc, "children", op->path));
}

/* --- session and node events (ZooKeeper's completion thread) ------------------------------ */

static void zk_session_event(md_backend *b, zhandle_t *zh, int state)
{
    md_session_state report = 0;
    bool expired = false;
    pthread_mutex_lock(&b->mu);
    if (zh != b->zh) {
        /* A handle already replaced or being closed. */
        pthread_mutex_unlock(&b->mu);
        return;
    }
    if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
        b->session_id = zoo_client_id(zh)->client_id;
        if (b->state != ZK_STATE_CONNECTED) {
            b->state = ZK_STATE_CONNECTED;
            report = MD_SESSION_CONNECTED;
        }
    } else if (state == ZOO_CONNECTING_STATE) {
        if (b->state == ZK_STATE_CONNECTED) {
            b->state = ZK_STATE_DISCONNECTED;
            report = MD_SESSION_DISCONNECTED;
        }
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
        /* Either way the handle is dead for good (is_unrecoverable): start a new session. */
        if (b->state != ZK_STATE_EXPIRED) {
            if (state == ZOO_AUTH_FAILED_STATE)
                MG_WARN("metadata zk: authentication failed, opening a new session");
            b->state = ZK_STATE_EXPIRED;
            b->session_id = 0;
            report = MD_SESSION_EXPIRED;
            expired = true;
        }
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);

    if (report != 0) {
        MG_INFO("metadata zk: session %s", report == MD_SESSION_CONNECTED      ? "connected"
                                           : report == MD_SESSION_DISCONNECTED ? "disconnected"
                                                                               : "expired");
        md__session_event(b->store, report);
    }
    if (expired) {
        /* Only now may the helper start the new session: its CONNECTED must come after this
         * EXPIRED. */
        pthread_mutex_lock(&b->mu);
        b->expiry_count++;
        if (zh == b->zh)
            b->replace = true;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->mu);
    }
}

static void zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    md_backend *b = ctx;
    if (type == ZOO_SESSION_EVENT) {
        zk_session_event(b, zh, state);
        return;
    }
    md_event_type event;
    if (type == ZOO_CREATED_EVENT)
        event = MD_EVENT_CREATED;
    else if (type == ZOO_CHANGED_EVENT)
        event = MD_EVENT_CHANGED;
    else if (type == ZOO_DELETED_EVENT)
        event = MD_EVENT_DELETED;
    else if (type == ZOO_CHILD_EVENT)
        event = MD_EVENT_CHILDREN;
    else
        return; /* ZOO_NOTWATCHING_EVENT: we never remove watches */
    if (path == NULL || path[0] != '/')
        return;
    pthread_mutex_lock(&b->mu);
    bool current = zh == b->zh;
    pthread_mutex_unlock(&b->mu);
    if (current)
        md__notify(b->store, path, event);
}

/* b->mu held (so that the handle's first callbacks wait until it is installed). */
static zhandle_t *zk_new_handle(md_backend *b)
{
    return zookeeper_init2(b->hosts, zk_watcher, b->session_timeout_ms, NULL, b,
                           ZOO_NO_LOG_CLIENTENV, zk_log);
}

/* The helper: replaces the handle after an expiry, away from ZooKeeper's threads. */
static void *zk_helper_main(void *arg)
{
    md_backend *b = arg;
    mg_log_set_thread_name("md-zk");
    pthread_mutex_lock(&b->mu);
    while (!b->stopping) {
        if (!b->replace) {
            pthread_cond_wait(&b->cond, &b->mu);
            continue;
        }
        zhandle_t *dead = b->zh;
        zhandle_t *fresh = zk_new_handle(b);
        if (fresh == NULL) {
            MG_WARN("metadata zk: cannot open a new session to %s: %s; retrying in %d ms", b->hosts,
                    strerror(errno), MD_ZK_REINIT_RETRY_MS);
            struct timespec until;
            zk_deadline(&until, MD_ZK_REINIT_RETRY_MS);
            while (!b->stopping && pthread_cond_timedwait(&b->cond, &b->mu, &until) == 0) {
            }
            continue;
        }
        b->zh = fresh;
        b->state = ZK_STATE_CONNECTING;
        b->session_id = 0;
        b->replace = false;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->mu);

        zookeeper_close(dead);
        zk_fail_handle(b, dead, MG_ECONNECTION);

        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* --- backend operations -------------------------------------------------------------------- */

static int zk_open(md_store *store, const char *target, const md_store_options *opts,
                   md_backend **out)
{
    MG_ASSERT(store != NULL && target != NULL && out != NULL);
    *out = NULL;
    MG_TRY(zk_check_target(target));
    int32_t timeout_ms = MD_ZK_SESSION_TIMEOUT_MS_DEFAULT;
    if (opts != NULL && opts->session_timeout_ms != 0) {
        if (opts->session_timeout_ms < 0) {
            MG_ERROR("metadata zk: negative session timeout %" PRId32 " ms",
                     opts->session_timeout_ms);
            return MG_EINVAL;
        }
        timeout_ms = opts->session_timeout_ms;
    }

    md_backend *b = mg_calloc(1, sizeof(*b));
    if (b == NULL)
        return MG_ENOMEM;
    b->store = store;
    b->session_timeout_ms = timeout_ms;
    b->hosts = zk_strdup(target);
    if (b->hosts == NULL) {
        mg_free(b);
        return MG_ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&b->mu, NULL);

    zk_set_library_log_level();
    int rc = MG_OK;
    pthread_mutex_lock(&b->mu);
    b->zh = zk_new_handle(b);
    if (b->zh == NULL) {
        int e = errno;
        MG_ERROR("metadata zk: cannot open a session to %s: %s", target, strerror(e));
        rc = e == ENOMEM ? MG_ENOMEM : MG_EINVAL;
    }
    pthread_mutex_unlock(&b->mu);
    if (rc == MG_OK) {
        int e = pthread_create(&b->helper, NULL, zk_helper_main, b);
        if (e != 0) {
            MG_ERROR("metadata zk: cannot start the session thread: %s", strerror(e));
            zookeeper_close(b->zh);
            rc = MG_ENOMEM;
        }
    }
    if (rc != MG_OK) {
        pthread_mutex_destroy(&b->mu);
        pthread_cond_destroy(&b->cond);
        mg_free(b->hosts);
        mg_free(b);
        return rc;
    }
    MG_DEBUG("metadata zk: connecting to %s (session timeout %" PRId32 " ms)", target, timeout_ms);
    *out = b;
    return MG_OK;
}

static void zk_close(md_backend *b)
{
    pthread_mutex_lock(&b->mu);
    b->closing = true;
    struct timespec until;
    zk_deadline(&until, MD_ZK_CLOSE_DRAIN_MS);
    while (b->pending_count > 0 && pthread_cond_timedwait(&b->cond, &b->mu, &until) == 0) {
    }
    if (b->pending_count > 0)
        MG_WARN("metadata zk: closing with %zu requests still pending", b->pending_count);
    b->stopping = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);

    pthread_join(b->helper, NULL);

    pthread_mutex_lock(&b->mu);
    zhandle_t *zh = b->zh;
    b->zh = NULL;
    pthread_mutex_unlock(&b->mu);
    if (zh != NULL)
        zookeeper_close(zh);
    zk_fail_handle(b, NULL, MG_ECLOSED);

    MG_ASSERT(b->pending == NULL && b->pending_count == 0);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    mg_free(b->hosts);
    mg_free(b);
}

static int64_t zk_session_id(md_backend *b)
{
    pthread_mutex_lock(&b->mu);
    int64_t id = b->session_id;
    pthread_mutex_unlock(&b->mu);
    return id;
}

const md_backend_ops md_zk_backend = {
    .name = "zk",
    .open = zk_open,
    .submit = zk_submit,
    .close = zk_close,
    .session_id = zk_session_id,
};

/* --- test hook ----------------------------------------------------------------------------- */

/* How the hook expires a session: a second handle connects with the session's id and password
 * (the server then drops the store's connection) and closes, which ends the session; the store's
 * next reconnect is told the session expired. The race: a handle reconnects at once after its
 * first disconnect (later ones wait session_timeout / 60), so the store may take the session
 * back before the second handle's closeSession arrives. Hence the second handle closes only
 * after it has held the session undisturbed for a moment, and a failed attempt (no expiry seen
 * within a connect delay plus a margin) is retried. */
#define MD_ZK_TEST_STEP_WAIT_MS     10000
#define MD_ZK_TEST_EXPIRY_MARGIN_MS 2000
#define MD_ZK_TEST_ATTEMPTS         8

typedef struct zk_probe {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool connected;
    bool dead;
    int64_t connected_at_ms;
} zk_probe;

static void zk_probe_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    (void)zh;
    (void)path;
    zk_probe *p = ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    pthread_mutex_lock(&p->mu);
    if (state == ZOO_CONNECTED_STATE) {
        if (!p->connected)
            p->connected_at_ms = (int64_t)mg_clock_mono_ms();
        p->connected = true;
    } else if (state == ZOO_CONNECTING_STATE) {
        p->connected = false;
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
        p->dead = true;
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

/* Takes the session over with a second handle, holds it for stable_ms, and closes it. */
static void zk_steal_and_close(md_backend *b, const clientid_t *cid)
{
    int64_t stable_ms = b->session_timeout_ms / 120;
    stable_ms = stable_ms < 5 ? 5 : stable_ms > 50 ? 50 : stable_ms;
    zk_probe p = { .connected = false, .dead = false, .connected_at_ms = 0 };
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p.cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p.mu, NULL);

    zhandle_t *zh = zookeeper_init2(b->hosts, zk_probe_watcher, b->session_timeout_ms, cid, &p,
                                    ZOO_NO_LOG_CLIENTENV, zk_log);
    if (zh != NULL) {
        int64_t deadline_ms = (int64_t)mg_clock_mono_ms() + MD_ZK_TEST_STEP_WAIT_MS;
        pthread_mutex_lock(&p.mu);
        for (;;) {
            int64_t now_ms = (int64_t)mg_clock_mono_ms();
            if (p.dead || now_ms >= deadline_ms)
                break;
            if (p.connected && now_ms - p.connected_at_ms >= stable_ms)
                break;
            int64_t wait_ms = deadline_ms - now_ms;
            if (p.connected && p.connected_at_ms + stable_ms - now_ms < wait_ms)
                wait_ms = p.connected_at_ms + stable_ms - now_ms;
            struct timespec until;
            zk_deadline(&until, wait_ms);
            pthread_cond_timedwait(&p.cond, &p.mu, &until);
        }
        pthread_mutex_unlock(&p.mu);
        zookeeper_close(zh);
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cond);
}

int md_zk_expire_session_for_test(md_store *store)
{
    if (store == NULL || strcmp(md_store_backend(store), "zk") != 0)
        return MG_EINVAL;
    md_backend *b = md__store_backend(store);
    MG_ASSERT(b != NULL);
    int64_t expiry_wait_ms = MD_ZK_TEST_EXPIRY_MARGIN_MS + b->session_timeout_ms / 30;
    for (int attempt = 0; attempt < MD_ZK_TEST_ATTEMPTS; attempt++) {
        struct timespec until;
        zk_deadline(&until, MD_ZK_TEST_STEP_WAIT_MS);
        pthread_mutex_lock(&b->mu);
        while (!b->closing && b->state != ZK_STATE_CONNECTED &&
               pthread_cond_timedwait(&b->cond, &b->mu, &until) == 0) {
        }
        if (b->closing || b->zh == NULL || b->state != ZK_STATE_CONNECTED) {
            pthread_mutex_unlock(&b->mu);
            return MG_ESTATE;
        }
        clientid_t cid = *zoo_client_id(b->zh);
        uint64_t expiries = b->expiry_count;
        pthread_mutex_unlock(&b->mu);

        zk_steal_and_close(b, &cid);

        zk_deadline(&until, expiry_wait_ms);
        pthread_mutex_lock(&b->mu);
        while (b->expiry_count == expiries &&
               pthread_cond_timedwait(&b->cond, &b->mu, &until) == 0) {
        }
        bool expired = b->expiry_count != expiries;
        pthread_mutex_unlock(&b->mu);
        if (expired)
            return MG_OK;
        MG_INFO("metadata zk: session 0x%" PRIx64 " survived attempt %d to expire it",
                (uint64_t)cid.client_id, attempt + 1);
    }
    return MG_ETIMEDOUT;
}
