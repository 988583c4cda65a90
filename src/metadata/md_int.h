/*
 * Internals of the metadata store shared by the generic layer (metadata.c) and the backends
 * (rocksdb.c, zk.c).
 *
 * Division of work:
 *  - metadata.c validates arguments, allocates an md_op per call, hands it to the backend's
 *    submit(), and delivers the completed op to the client's loop (a mutex-protected list plus
 *    a uv_async_t per client). It owns the watch registry: backends never keep callbacks, they
 *    only report "this path had this event" with md__notify(), from any thread.
 *  - A backend performs an op asynchronously (its own thread, or ZooKeeper's completion
 *    thread), fills the result fields and calls md__op_complete(op) exactly once, from any
 *    thread. It must not touch the op afterwards.
 *
 * Watches: an op with op->watch != NULL asks for a one-shot watch. The backend calls
 * md__watch_arm(op) at the point where its read takes effect (so an event produced by a write
 * that was ordered before the read never fires it), and before md__op_complete. For a read that
 * fails (other than MG_ENOTFOUND on a get), the backend does not arm it and the generic layer
 * discards it. Events: a node watch fires on MD_EVENT_CREATED, MD_EVENT_CHANGED and
 * MD_EVENT_DELETED of its path; a children watch on MD_EVENT_CHILDREN and MD_EVENT_DELETED of
 * its path. A backend reports a create of /a/b as (/a/b, CREATED) and (/a, CHILDREN); a delete
 * as (/a/b, DELETED) and (/a, CHILDREN); a set as (/a/b, CHANGED).
 */
#ifndef MG_METADATA_MD_INT_H
#define MG_METADATA_MD_INT_H

#include "metadata/metadata.h"

#include <pthread.h>

/* Digits of the counter a sequential node's name ends with (as ZooKeeper's %010d). */
#define MD_SEQUENTIAL_DIGITS 10

typedef enum md_op_type {
    MD_OP_GET = 1,
    MD_OP_CREATE = 2,
    MD_OP_SET = 3,
    MD_OP_DELETE = 4,
    MD_OP_CHILDREN = 5,
} md_op_type;

typedef enum md_watch_kind {
    MD_WATCH_NONE = 0, /* a read that sets no watch */
    MD_WATCH_NODE = 1,
    MD_WATCH_CHILDREN = 2,
} md_watch_kind;

typedef struct md_watch md_watch;

/* An entry in a client's delivery queue (generic layer only). */
typedef struct md_item {
    int kind;
    struct md_item *next;
} md_item;

typedef struct md_op {
    /* request (read-only for the backend) */
    md_op_type type;
    const char *path;     /* NUL-terminated, validated; owned by the op */
    const uint8_t *value; /* create, set; owned by the op */
    size_t value_len;
    int flags;       /* create: MD_EPHEMERAL | MD_SEQUENTIAL | MD_CREATE_PARENTS */
    int64_t version; /* set, delete: expected version or MD_VERSION_ANY */
    md_watch *watch; /* get, children: arm with md__watch_arm(), or NULL */
    md_store *store;

    /* result (written by the backend before md__op_complete) */
    int status;    /* MG_OK or an MG_E* code */
    md_stat stat;  /* get, set, create (when known) */
    uint8_t *data; /* get: the value, allocated with mg_malloc (NULL if empty) */
    size_t data_len;
    char *created_path; /* create: allocated with mg_malloc */
    char **names;       /* children: mg_malloc'd array of mg_malloc'd names, any order */
    size_t name_count;

    /* free for the backend's own use (e.g. its queue) while it holds the op */
    struct md_op *next;

    /* generic layer only */
    md_item item;
    md_client *client;
    void *cb;
    void *arg;
    void *watch_cb;
    void *watch_arg;
} md_op;

typedef struct md_backend md_backend;

typedef struct md_backend_ops {
    const char *name;
    /* target is the URL after "rocksdb:" or "zk:". Synchronous. On error, logs why. */
    int (*open)(md_store *store, const char *target, const md_store_options *opts,
                md_backend **out);
    /* Takes the op; completes it later with md__op_complete (possibly before returning, from
     * the calling thread: the generic layer copes). Never fails synchronously. */
    void (*submit)(md_backend *b, md_op *op);
    /* Completes every pending op (MG_ECLOSED if not done), ends the session (deleting this
     * store's ephemeral nodes), frees the backend. Synchronous; no md__* call after it returns. */
    void (*close)(md_backend *b);
    int64_t (*session_id)(md_backend *b);
} md_backend_ops;

extern const md_backend_ops md_rocksdb_backend;
extern const md_backend_ops md_zk_backend;

/* Called by backends, from any thread. */
void md__op_complete(md_op *op);
void md__watch_arm(md_op *op);
void md__notify(md_store *store, const char *path, md_event_type type);
void md__session_event(md_store *store, md_session_state state);

/* The store's backend object (for backend-specific test hooks). */
md_backend *md__store_backend(md_store *store);

/* Path helpers shared by the backends. */

/* Length of the parent's path: 2 for "/a/b" (parent "/a"), 1 for "/a" (parent "/"), 0 for "/". */
size_t md__parent_len(const char *path);
/* Formats the sequential suffix: writes "%010lld" of seq into buf (at least 11 bytes). */
void md__format_sequence(int64_t seq, char *buf);

#endif
