/*
 * The metadata store: everything that coordinates brokers and bookies (ledger metadata,
 * managed-ledger ledger lists, cursor positions, topic ownership, live brokers and bookies;
 * layout in ../shared/ARCHITECTURE.md §8) lives here, in a ZooKeeper-like tree of nodes.
 *
 * Backends, chosen by URL as Pulsar's metadataStoreUrl:
 *   rocksdb:<dir>                          embedded (standalone); one process owns the directory;
 *                                          ephemeral nodes live as long as the store is open
 *   zk:host:port[,host:port...][/chroot]   a ZooKeeper ensemble through libzookeeper-mt;
 *                                          ephemeral nodes live as long as the ZK session
 *
 * Model (the same on both backends, so a conformance suite runs against each):
 *  - A node has a path ("/a/b"), a value (opaque bytes, at most MD_VALUE_BYTES_MAX) and a stat.
 *    Its data version starts at 0 on create and grows by one on every set. Set and delete take
 *    an expected version for compare-and-set; MD_VERSION_ANY skips the check.
 *  - A node's parent must exist (MG_ENOTFOUND otherwise), unless MD_CREATE_PARENTS is given,
 *    which creates missing parents as empty persistent nodes. A node with children cannot be
 *    deleted (MG_ENOTEMPTY). Ephemeral nodes cannot have children.
 *  - MD_SEQUENTIAL appends a 10-digit, zero-padded counter kept per parent (ZooKeeper's
 *    format) to the name and returns the created path.
 *  - Watches fire once, like ZooKeeper's: a node watch on the next create, change or delete of
 *    that node; a children watch on the next child created or deleted, or the node deleted.
 *    When a session expires, every outstanding watch fires with MD_EVENT_WATCH_LOST so its
 *    owner reads again.
 *
 * Threads: an md_store is shared by the whole process and is thread-safe. Each libuv loop
 * that uses it creates its own md_client; every callback of a client runs on that client's
 * loop. A call that returns an error never calls its callback (the libuv rule); a call that
 * returns MG_OK calls it exactly once, also when the client is closed meanwhile (with
 * MG_ECLOSED if the result could not be had).
 */
#ifndef MG_METADATA_METADATA_H
#define MG_METADATA_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct md_store md_store;
typedef struct md_client md_client;

/* Create flags. */
#define MD_EPHEMERAL      0x1
#define MD_SEQUENTIAL     0x2
#define MD_CREATE_PARENTS 0x4

#define MD_VERSION_ANY (-1)

typedef struct md_stat {
    int64_t version;    /* data version: 0 after create, +1 per set */
    int64_t created_ms; /* wall clock, milliseconds since the epoch */
    int64_t modified_ms;
    int64_t ephemeral_owner; /* session id owning an ephemeral node; 0 for a persistent one */
    int32_t child_count;
} md_stat;

typedef enum md_event_type {
    MD_EVENT_CREATED = 1,
    MD_EVENT_DELETED = 2,
    MD_EVENT_CHANGED = 3,
    MD_EVENT_CHILDREN = 4,
    MD_EVENT_WATCH_LOST = 5, /* the session expired or the client closed; read again */
} md_event_type;

typedef enum md_session_state {
    MD_SESSION_CONNECTED = 1,    /* operations are served */
    MD_SESSION_DISCONNECTED = 2, /* the connection is down; operations fail with MG_ECONNECTION
                                    until it is back; ephemerals and watches survive if it comes
                                    back within the session timeout */
    MD_SESSION_EXPIRED = 3,      /* the session is gone with its ephemerals and watches; the
                                    store opens a new session by itself */
} md_session_state;

typedef struct md_store_options {
    int32_t session_timeout_ms; /* ZooKeeper session timeout; 0 = 30000 (Pulsar's default) */
    bool read_only;             /* inspect only: create, set and delete fail with MG_EREADONLY;
                                   the embedded store opens without taking the directory's
                                   lock, so a running standalone can be inspected */
} md_store_options;

/* --- store --------------------------------------------------------------------------------- */

/* Opens the store named by url (see above). Synchronous: for rocksdb it opens the database
 * (creating the directory), for zk it starts connecting (operations issued before the session
 * is up wait for it). Call at start-up, not on a busy loop.
 * Errors: MG_EINVAL (bad URL; a message is logged), MG_EAGAIN (rocksdb directory locked by
 * another process), MG_EIO / MG_ECORRUPT (cannot open), MG_ENOMEM. */
int md_store_open(const char *url, const md_store_options *opts, md_store **out);

/* Closes the store: the ZooKeeper session ends (its ephemerals go), or the embedded database's
 * ephemeral nodes are deleted and the database is closed. Every client must be closed first.
 * Any thread; blocks until done. */
void md_store_close(md_store *store);

/* "rocksdb" or "zk". */
const char *md_store_backend(const md_store *store);

/* The current session id (changes after an expiry). */
int64_t md_store_session_id(md_store *store);

/* --- clients ------------------------------------------------------------------------------- */

typedef void (*md_session_cb)(md_session_state state, void *arg);

/* Creates a client whose callbacks run on loop. Call on the loop's thread. */
int md_client_create(md_store *store, uv_loop_t *loop, md_client **out);

/* Session state changes, delivered on the client's loop. NULL to stop. */
void md_client_on_session(md_client *client, md_session_cb cb, void *arg);

/* Closes the client: outstanding operations still get their callbacks (the result, or
 * MG_ECLOSED), outstanding watches fire with MD_EVENT_WATCH_LOST, then closed_cb runs and the
 * client's memory is freed. Call on the client's loop. */
void md_client_close(md_client *client, void (*closed_cb)(void *arg), void *arg);

/* --- operations (call on the client's loop) ------------------------------------------------ */
/* Common errors returned at once: MG_EINVAL (bad path: empty, not absolute, trailing or double
 * '/', "." or ".." segments, longer than MD_PATH_BYTES_MAX), MG_ELIMIT (value larger than
 * MD_VALUE_BYTES_MAX, or MD_CLIENT_INFLIGHT_MAX operations already pending: back off),
 * MG_ECLOSED (client closing). Errors delivered to callbacks: MG_ENOTFOUND, MG_EEXIST,
 * MG_EBADVERSION, MG_ENOTEMPTY, MG_ECONNECTION (session down), MG_EIO, MG_ECLOSED. */

typedef void (*md_done_cb)(int status, void *arg);
/* value is valid only during the callback. */
typedef void (*md_get_cb)(int status, const void *value, size_t value_len, const md_stat *stat,
                          void *arg);
typedef void (*md_stat_cb)(int status, const md_stat *stat, void *arg);
/* path is the created path (with the sequence suffix for MD_SEQUENTIAL). */
typedef void (*md_create_cb)(int status, const char *path, void *arg);
/* names are child names (not full paths), sorted bytewise; valid only during the callback. */
typedef void (*md_children_cb)(int status, const char *const *names, size_t count, void *arg);
typedef void (*md_watch_cb)(md_event_type type, const char *path, void *arg);
typedef void (*md_id_cb)(int status, int64_t id, void *arg);

int md_get(md_client *c, const char *path, md_get_cb cb, void *arg);

/* Creates a node. The value is copied. */
int md_create(md_client *c, const char *path, const void *value, size_t value_len, int flags,
              md_create_cb cb, void *arg);

/* Replaces a node's value if its version equals expected_version (or MD_VERSION_ANY);
 * MG_EBADVERSION otherwise. The stat passed to cb is the node's new stat. */
int md_set(md_client *c, const char *path, const void *value, size_t value_len,
           int64_t expected_version, md_stat_cb cb, void *arg);

int md_delete(md_client *c, const char *path, int64_t expected_version, md_done_cb cb, void *arg);

int md_children(md_client *c, const char *path, md_children_cb cb, void *arg);

/* Reads a node (MG_ENOTFOUND is a normal result here) and leaves a one-shot watch that fires
 * on its next create, change or delete. The watch is set even when the read reports
 * MG_ENOTFOUND; it is not set when the read fails otherwise. */
int md_get_watch(md_client *c, const char *path, md_watch_cb watch_cb, void *watch_arg,
                 md_get_cb cb, void *arg);

/* Lists children and leaves a one-shot watch on the next child created or deleted (or the
 * node deleted). The watch is set only when the listing succeeds. */
int md_children_watch(md_client *c, const char *path, md_watch_cb watch_cb, void *watch_arg,
                      md_children_cb cb, void *arg);

/* Allocates a unique 64-bit id (> 0) from the counter named name (a node under /counters),
 * never handed out twice, across restarts and across every process sharing the store.
 * Ids come in blocks reserved with compare-and-set, so most calls need no round trip; ids
 * from a block not used before a restart are skipped, never reused. */
int md_id_next(md_client *c, const char *name, md_id_cb cb, void *arg);

#endif
