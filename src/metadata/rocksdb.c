/*
 * The embedded metadata backend ("rocksdb:<dir>"), used by `magnetar standalone`: the node tree
 * of metadata.h kept in one RocksDB database that a single process owns.
 *
 * Key layout. One key per node, built from its parent's path and its own name:
 *
 *     "r"                                   the root "/" (always present, made on first open)
 *     "n" <parent path> '\0' <name>         every other node: "/a" -> "n/\0a",
 *                                           "/a/b" -> "n/a\0b", "/a/b/c" -> "n/a/b\0c"
 *     "mlayout"                             one byte: the layout version of this file (1)
 *
 * Names never contain '/' or '\0', so the children of P are exactly the keys starting with
 * "n" P '\0', one prefix scan in name order. A grandchild's key continues P with '/' instead
 * of '\0' and falls outside the prefix, as does a sibling whose name merely starts with P's
 * name ("/ab" under "/" is "n/\0ab"; the children of "/a" start "n/a\0").
 *
 * Value format (integers big-endian, so a hex dump reads naturally):
 *
 *     offset  size  field
 *          0     1  format version (1); any other value makes the node MG_ECORRUPT
 *          1     8  data version (0 after create, +1 per set)
 *          9     8  created_ms (wall clock)
 *         17     8  modified_ms
 *         25     8  ephemeral_owner (session id; 0 for a persistent node)
 *         33     8  sequence: next counter for MD_SEQUENTIAL children of this node
 *         41     4  child_count
 *         45     .  the user's value (at most MD_VALUE_BYTES_MAX bytes)
 *
 * A record shorter than the header, with an unknown format version or with a negative count
 * is reported as MG_ECORRUPT for that node only (logged with its path); nothing asserts on
 * stored bytes. The sequence counter lives in the parent's record and is written in the same
 * batch as the child it named, so a number is never handed out twice, restarts included.
 *
 * Thread model. One worker thread per store owns the database after open: submit() appends
 * the op to an intrusive FIFO (op->next, free for the backend by md_int.h) under a mutex and
 * signals a condvar; the worker takes the whole list and executes the ops in submission order,
 * each to completion: read, mutate, notify, md__op_complete. The list needs no bound of its
 * own: every op in it is counted against its client's MD_CLIENT_INFLIGHT_MAX by the generic
 * layer, and clients are few (one per loop). Because reads and writes run on the same thread
 * the store is linearizable within the process: a read sees every write submitted before it.
 * For the same reason a watched read arms its watch right after reading (and only when the
 * read succeeded, or found nothing on a get): no write can run between the read and the arm,
 * so no event is lost and none from an earlier write fires it. Every mutation is a single
 * rocksdb_writebatch (the node plus its parent's child_count and sequence counter, plus any
 * parents made by MD_CREATE_PARENTS), so a crash never leaves counts and nodes disagreeing.
 * Events go to md__notify only after the batch is written.
 *
 * Ephemeral lifetime. Each open store draws a random non-zero session id; its ephemeral nodes
 * carry it as ephemeral_owner. Only one process can hold the database (RocksDB's LOCK file;
 * a second open gets MG_EAGAIN), so on open every ephemeral node found belongs to an earlier
 * process that did not close cleanly (a crash) and is deleted: a crash never keeps an ephemeral
 * alive past the next start. close() finishes the queue, then scans for this session's
 * ephemerals and deletes them. Both scans walk the node keys with an iterator instead of
 * keeping an in-memory index, so memory stays bounded whatever the number of ephemerals; a
 * scan costs one pass over the metadata, at start-up and shutdown only. No events are sent for
 * these deletions: at open no client exists yet, at close every client is already closed.
 *
 * Durability. Operations write with WriteOptions.sync = true: an acknowledged metadata write
 * (a ledger's CLOSED state, a cursor position, a ledger list) survives a power loss, which the
 * broker's correctness rests on. Metadata writes are rare (ledger roll-over, throttled cursor
 * persistence), so one fsync each costs little. The ephemeral clean-ups at open and close
 * write without sync: if they are lost, the next open simply deletes the same nodes again.
 *
 * Errors. A RocksDB read or write error fails that op with MG_EIO and logs RocksDB's text once
 * for that op; nothing aborts on I/O errors. (RocksDB itself turns later writes into errors
 * after a background failure; they are reported the same way.)
 */
#include "metadata/md_int.h"
#include "common/clock.h"
#include "common/fs.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "metadata/limits.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RDB_LAYOUT_VERSION 1
#define RDB_FORMAT_VERSION 1
#define RDB_HEADER_BYTES   45
/* A key is at most the path plus 2 bytes ("n" and the '\0' added after a root parent). */
#define RDB_KEY_BYTES_MAX  (MD_PATH_BYTES_MAX + 8)
/* The largest counter that fits in MD_SEQUENTIAL_DIGITS digits. */
#define RDB_SEQUENCE_MAX   INT64_C(9999999999)

static const char rdb_layout_key[] = "mlayout";

struct md_backend {
    md_store *store;
    char *dir;
    int64_t session_id;
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_readoptions_t *read_opts;
    rocksdb_writeoptions_t *write_sync;   /* operations */
    rocksdb_writeoptions_t *write_nosync; /* ephemeral clean-up at open and close */

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    md_op *head, *tail; /* pending ops in submission order, under mu */
    bool closing;       /* under mu: the worker exits once the list is empty */
    bool read_only;     /* opened without the lock: reads only, no ephemeral clean-up */
};

/* A node as read from the database. raw is RocksDB's buffer (writable, rocksdb_free). */
typedef struct rdb_node {
    char *raw;
    size_t raw_len;
    md_stat stat;
    int64_t sequence;
} rdb_node;

/* --- encoding ------------------------------------------------------------------------------ */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void rdb_encode_header(uint8_t *out, const md_stat *stat, int64_t sequence)
{
    out[0] = RDB_FORMAT_VERSION;
    put_be64(out + 1, (uint64_t)stat->version);
    put_be64(out + 9, (uint64_t)stat->created_ms);
    put_be64(out + 17, (uint64_t)stat->modified_ms);
    put_be64(out + 25, (uint64_t)stat->ephemeral_owner);
    put_be64(out + 33, (uint64_t)sequence);
    put_be32(out + 41, (uint32_t)stat->child_count);
}

/* Decodes a record's header. MG_ECORRUPT for anything this code did not write. */
static int rdb_decode(const char *raw, size_t len, md_stat *stat, int64_t *sequence)
{
    const uint8_t *p = (const uint8_t *)raw;
    if (len < RDB_HEADER_BYTES || p[0] != RDB_FORMAT_VERSION ||
        len - RDB_HEADER_BYTES > MD_VALUE_BYTES_MAX)
        return MG_ECORRUPT;
    stat->version = (int64_t)get_be64(p + 1);
    stat->created_ms = (int64_t)get_be64(p + 9);
    stat->modified_ms = (int64_t)get_be64(p + 17);
    stat->ephemeral_owner = (int64_t)get_be64(p + 25);
    *sequence = (int64_t)get_be64(p + 33);
    stat->child_count = (int32_t)get_be32(p + 41);
    if (stat->version < 0 || *sequence < 0 || stat->child_count < 0)
        return MG_ECORRUPT;
    return MG_OK;
}

/* --- keys ---------------------------------------------------------------------------------- */

/* Length of the parent of path[0, len): 1 for "/a", 2 for "/a/b". len > 1. */
static size_t rdb_parent_len(const char *path, size_t len)
{
    MG_ASSERT(len > 1 && path[0] == '/');
    size_t i = len - 1;
    while (path[i] != '/')
        i--;
    return i == 0 ? 1 : i;
}

/* Writes the key of the node path[0, len) into key (RDB_KEY_BYTES_MAX); returns its length. */
static size_t rdb_key(char *key, const char *path, size_t len)
{
    MG_ASSERT(len >= 1 && len <= MD_PATH_BYTES_MAX && path[0] == '/');
    if (len == 1) {
        key[0] = 'r';
        return 1;
    }
    size_t slash = rdb_parent_len(path, len);
    if (slash == 1)
        slash = 0; /* the parent is "/": keep it, the '\0' goes after it */
    key[0] = 'n';
    if (slash == 0) {
        key[1] = '/';
        key[2] = '\0';
        memcpy(key + 3, path + 1, len - 1);
        return len + 2;
    }
    memcpy(key + 1, path, slash);
    key[1 + slash] = '\0';
    memcpy(key + 2 + slash, path + slash + 1, len - slash - 1);
    return len + 1;
}

/* The prefix shared by the keys of path[0, len)'s children; returns its length. */
static size_t rdb_children_prefix(char *key, const char *path, size_t len)
{
    MG_ASSERT(len >= 1 && len <= MD_PATH_BYTES_MAX);
    key[0] = 'n';
    memcpy(key + 1, path, len);
    key[1 + len] = '\0';
    return len + 2;
}

/* Rebuilds a node's path from its "n" key into path (MD_PATH_BYTES_MAX + 1 bytes).
 * MG_ECORRUPT for a key this file did not write. */
static int rdb_path_of_key(const char *key, size_t klen, char *path)
{
    if (klen < 4 || key[0] != 'n' || key[1] != '/')
        return MG_ECORRUPT;
    const char *zero = memchr(key + 1, '\0', klen - 1);
    if (zero == NULL || (size_t)(zero - key) + 1 >= klen)
        return MG_ECORRUPT;
    size_t parent_len = (size_t)(zero - key) - 1;
    size_t name_len = klen - parent_len - 2;
    if (memchr(zero + 1, '\0', name_len) != NULL || memchr(zero + 1, '/', name_len) != NULL)
        return MG_ECORRUPT;
    size_t len = parent_len == 1 ? 1 + name_len : parent_len + 1 + name_len;
    if (len > MD_PATH_BYTES_MAX)
        return MG_ECORRUPT;
    memcpy(path, key + 1, parent_len);
    size_t at = parent_len == 1 ? 1 : parent_len + 1;
    path[at - 1] = '/';
    memcpy(path + at, zero + 1, name_len);
    path[len] = '\0';
    return MG_OK;
}

/* --- database access (worker thread, or open/close while no worker runs) ------------------- */

/* Logs a RocksDB error for an operation on path, frees err, returns MG_EIO. */
static int rdb_io_error(md_backend *b, const char *what, const char *path, size_t len, char *err)
{
    MG_ERROR("metadata: rocksdb %s of %.*s in %s failed: %s", what, (int)len, path, b->dir, err);
    rocksdb_free(err);
    return MG_EIO;
}

/* Fetches the raw record of path[0, len): MG_OK with *raw NULL when there is none, else a record
 * of *vlen bytes to release with rocksdb_free; MG_EIO (logged). */
static int rdb_get_raw(md_backend *b, const char *path, size_t len, char **raw, size_t *vlen)
{
    char key[RDB_KEY_BYTES_MAX];
    size_t klen = rdb_key(key, path, len);
    char *err = NULL;
    *vlen = 0;
    *raw = rocksdb_get(b->db, b->read_opts, key, klen, vlen, &err);
    if (err != NULL)
        return rdb_io_error(b, "read", path, len, err);
    return MG_OK;
}

/* Reads the node path[0, len). MG_OK fills *n (release with rdb_node_release); MG_ENOTFOUND,
 * MG_ECORRUPT (logged) and MG_EIO (logged) leave nothing to release. */
static int rdb_read(md_backend *b, const char *path, size_t len, rdb_node *n)
{
    char *raw;
    size_t vlen;
    MG_TRY(rdb_get_raw(b, path, len, &raw, &vlen));
    if (raw == NULL)
        return MG_ENOTFOUND;
    int rc = rdb_decode(raw, vlen, &n->stat, &n->sequence);
    if (rc != MG_OK) {
        MG_ERROR("metadata: node %.*s in %s has a corrupt record (%zu bytes, format %d)", (int)len,
                 path, b->dir, vlen, vlen > 0 ? (int)(uint8_t)raw[0] : -1);
        rocksdb_free(raw);
        return rc;
    }
    n->raw = raw;
    n->raw_len = vlen;
    return MG_OK;
}

static void rdb_node_release(rdb_node *n)
{
    if (n->raw != NULL)
        rocksdb_free(n->raw);
    n->raw = NULL;
}

/* MG_OK if path[0, len) has no record, MG_EEXIST if it has one (valid or not), MG_EIO. */
static int rdb_check_absent(md_backend *b, const char *path, size_t len)
{
    char *raw;
    size_t vlen;
    MG_TRY(rdb_get_raw(b, path, len, &raw, &vlen));
    if (raw == NULL)
        return MG_OK;
    rocksdb_free(raw);
    return MG_EEXIST;
}

static int rdb_write(md_backend *b, rocksdb_writebatch_t *batch, const rocksdb_writeoptions_t *wo,
                     const char *path, size_t len)
{
    char *err = NULL;
    rocksdb_write(b->db, wo, batch, &err);
    if (err != NULL)
        return rdb_io_error(b, "write", path, len, err);
    return MG_OK;
}

/* Deletes the leaf node path[0, len) and decrements its parent's child count in one batch.
 * expected_version as md_delete. Does not notify. */
static int rdb_remove(md_backend *b, const char *path, size_t len, int64_t expected_version,
                      const rocksdb_writeoptions_t *wo, rdb_node *node)
{
    int rc = rdb_read(b, path, len, node);
    if (rc != MG_OK)
        return rc;
    if (expected_version != MD_VERSION_ANY && expected_version != node->stat.version)
        return MG_EBADVERSION;
    if (node->stat.child_count > 0)
        return MG_ENOTEMPTY;
    size_t plen = rdb_parent_len(path, len);
    rdb_node parent = { 0 };
    rc = rdb_read(b, path, plen, &parent);
    if (rc == MG_ENOTFOUND) {
        MG_ERROR("metadata: node %.*s in %s has no parent record", (int)len, path, b->dir);
        return MG_ECORRUPT;
    }
    if (rc != MG_OK)
        return rc;
    if (parent.stat.child_count > 0) {
        parent.stat.child_count--;
    } else {
        MG_WARN("metadata: parent of %.*s in %s counts no children; keeping 0", (int)len, path,
                b->dir);
    }
    rdb_encode_header((uint8_t *)parent.raw, &parent.stat, parent.sequence);

    char key[RDB_KEY_BYTES_MAX];
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    size_t klen = rdb_key(key, path, len);
    rocksdb_writebatch_delete(batch, key, klen);
    klen = rdb_key(key, path, plen);
    rocksdb_writebatch_put(batch, key, klen, parent.raw, parent.raw_len);
    rc = rdb_write(b, batch, wo, path, len);
    rocksdb_writebatch_destroy(batch);
    rdb_node_release(&parent);
    return rc;
}

/* Deletes every ephemeral node whose owner is owner (any owner when 0), counting them in
 * *deleted. Open and close only (no worker running). Returns MG_EIO if the scan or a write
 * failed; a node that cannot be deleted for another reason (a corrupt parent) is logged and
 * left, so one bad record does not keep the store from opening. */
static int rdb_drop_ephemerals(md_backend *b, int64_t owner, int64_t *deleted)
{
    *deleted = 0;
    int failures = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator(b->db, b->read_opts);
    char path[MD_PATH_BYTES_MAX + 1];
    for (rocksdb_iter_seek(it, "n", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen == 0 || key[0] != 'n')
            break;
        const char *raw = rocksdb_iter_value(it, &vlen);
        md_stat stat;
        int64_t sequence;
        if (rdb_decode(raw, vlen, &stat, &sequence) != MG_OK || stat.ephemeral_owner == 0)
            continue; /* a corrupt record is reported when someone reads it */
        if (owner != 0 && stat.ephemeral_owner != owner)
            continue;
        if (rdb_path_of_key(key, klen, path) != MG_OK) {
            MG_WARN("metadata: skipping a malformed node key (%zu bytes) in %s", klen, b->dir);
            continue;
        }
        rdb_node node = { 0 };
        int rc = rdb_remove(b, path, strlen(path), MD_VERSION_ANY, b->write_nosync, &node);
        rdb_node_release(&node);
        if (rc == MG_OK) {
            (*deleted)++;
        } else {
            if (rc == MG_EIO)
                failures++; /* the database is failing: report it to the caller */
            MG_WARN("metadata: could not delete ephemeral node %s in %s: %s", path, b->dir,
                    mg_strerror(rc));
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL)
        return rdb_io_error(b, "scan for ephemeral nodes", "/", 1, err);
    return failures > 0 ? MG_EIO : MG_OK;
}

/* --- operations (worker thread) ------------------------------------------------------------ */

static int rdb_do_get(md_backend *b, md_op *op)
{
    size_t len = strlen(op->path);
    rdb_node n = { 0 };
    int rc = rdb_read(b, op->path, len, &n);
    if (op->watch != NULL && (rc == MG_OK || rc == MG_ENOTFOUND))
        md__watch_arm(op);
    if (rc != MG_OK)
        return rc;
    size_t vlen = n.raw_len - RDB_HEADER_BYTES;
    if (vlen > 0) {
        op->data = mg_malloc(vlen);
        if (op->data == NULL) {
            rdb_node_release(&n);
            return MG_ENOMEM;
        }
        memcpy(op->data, n.raw + RDB_HEADER_BYTES, vlen);
    }
    op->data_len = vlen;
    op->stat = n.stat;
    rdb_node_release(&n);
    return MG_OK;
}

/* Index of the first '/' in path[from, end), or end. */
static size_t rdb_next_slash(const char *path, size_t from, size_t end)
{
    const char *s = from < end ? memchr(path + from, '/', end - from) : NULL;
    return s ? (size_t)(s - path) : end;
}

/* Sends an event for path[0, len) (path is writable; restored on return). */
static void rdb_notify_prefix(md_backend *b, char *path, size_t len, md_event_type type)
{
    char saved = path[len];
    path[len] = '\0';
    md__notify(b->store, path, type);
    path[len] = saved;
}

static int rdb_do_create(md_backend *b, md_op *op)
{
    size_t len = strlen(op->path);
    if (len <= 1)
        return MG_EEXIST; /* the root always exists */
    size_t plen = rdb_parent_len(op->path, len);
    bool sequential = (op->flags & MD_SEQUENTIAL) != 0;

    /* top: the deepest existing ancestor; the direct parent unless parents are made. */
    rdb_node top = { 0 };
    size_t top_len = plen;
    int rc = rdb_read(b, op->path, plen, &top);
    if (rc == MG_ENOTFOUND && (op->flags & MD_CREATE_PARENTS)) {
        while (rc == MG_ENOTFOUND && top_len > 1) {
            top_len = rdb_parent_len(op->path, top_len);
            rc = rdb_read(b, op->path, top_len, &top);
        }
        if (rc == MG_ENOTFOUND) {
            MG_ERROR("metadata: the root record of %s is missing", b->dir);
            rc = MG_ECORRUPT;
        }
    }
    if (rc != MG_OK)
        return rc;
    bool parent_exists = top_len == plen;
    char *created = NULL;
    uint8_t *record = NULL;
    rocksdb_writebatch_t *batch = NULL;
    if (top.stat.ephemeral_owner != 0) {
        rc = MG_EINVAL; /* ephemeral nodes cannot have children */
        goto out;
    }
    if (top.stat.child_count == INT32_MAX) {
        rc = MG_ELIMIT;
        goto out;
    }

    char full[MD_PATH_BYTES_MAX + MD_SEQUENTIAL_DIGITS + 1];
    memcpy(full, op->path, len);
    size_t full_len = len;
    if (sequential) {
        int64_t seq = parent_exists ? top.sequence : 0;
        if (seq > RDB_SEQUENCE_MAX || len + MD_SEQUENTIAL_DIGITS > MD_PATH_BYTES_MAX) {
            rc = MG_ELIMIT;
            goto out;
        }
        md__format_sequence(seq, full + len);
        full_len += MD_SEQUENTIAL_DIGITS;
    }
    full[full_len] = '\0';
    if (parent_exists) {
        rc = rdb_check_absent(b, full, full_len);
        if (rc != MG_OK)
            goto out;
    }

    created = mg_malloc(full_len + 1);
    record = mg_malloc(RDB_HEADER_BYTES + op->value_len);
    if (created == NULL || record == NULL) {
        rc = MG_ENOMEM;
        goto out;
    }
    memcpy(created, full, full_len + 1);

    int64_t now = mg_clock_wall_ms();
    char key[RDB_KEY_BYTES_MAX];
    size_t klen;
    batch = rocksdb_writebatch_create();

    top.stat.child_count++;
    if (parent_exists && sequential)
        top.sequence++;
    rdb_encode_header((uint8_t *)top.raw, &top.stat, top.sequence);
    klen = rdb_key(key, full, top_len);
    rocksdb_writebatch_put(batch, key, klen, top.raw, top.raw_len);

    uint8_t header[RDB_HEADER_BYTES];
    for (size_t cur = top_len; cur < plen;) {
        size_t end = rdb_next_slash(full, cur + 1, plen);
        md_stat st = { .created_ms = now, .modified_ms = now, .child_count = 1 };
        rdb_encode_header(header, &st, end == plen && sequential ? 1 : 0);
        klen = rdb_key(key, full, end);
        rocksdb_writebatch_put(batch, key, klen, (const char *)header, sizeof(header));
        cur = end;
    }

    md_stat node_stat = {
        .created_ms = now,
        .modified_ms = now,
        .ephemeral_owner = (op->flags & MD_EPHEMERAL) ? b->session_id : 0,
    };
    rdb_encode_header(record, &node_stat, 0);
    if (op->value_len > 0)
        memcpy(record + RDB_HEADER_BYTES, op->value, op->value_len);
    klen = rdb_key(key, full, full_len);
    rocksdb_writebatch_put(batch, key, klen, (const char *)record,
                           RDB_HEADER_BYTES + op->value_len);

    rc = rdb_write(b, batch, b->write_sync, full, full_len);
    if (rc != MG_OK)
        goto out;

    for (size_t cur = top_len; cur < plen;) {
        size_t end = rdb_next_slash(full, cur + 1, plen);
        rdb_notify_prefix(b, full, end, MD_EVENT_CREATED);
        rdb_notify_prefix(b, full, cur, MD_EVENT_CHILDREN);
        cur = end;
    }
    md__notify(b->store, full, MD_EVENT_CREATED);
    rdb_notify_prefix(b, full, plen, MD_EVENT_CHILDREN);
    op->created_path = created;
    created = NULL;
    op->stat = node_stat;

out:
    if (batch != NULL)
        rocksdb_writebatch_destroy(batch);
    mg_free(record);
    mg_free(created);
    rdb_node_release(&top);
    return rc;
}

static int rdb_do_set(md_backend *b, md_op *op)
{
    size_t len = strlen(op->path);
    rdb_node n = { 0 };
    int rc = rdb_read(b, op->path, len, &n);
    if (rc != MG_OK)
        return rc;
    uint8_t *record = NULL;
    if (op->version != MD_VERSION_ANY && op->version != n.stat.version) {
        rc = MG_EBADVERSION;
        goto out;
    }
    record = mg_malloc(RDB_HEADER_BYTES + op->value_len);
    if (record == NULL) {
        rc = MG_ENOMEM;
        goto out;
    }
    n.stat.version++;
    n.stat.modified_ms = mg_clock_wall_ms();
    rdb_encode_header(record, &n.stat, n.sequence);
    if (op->value_len > 0)
        memcpy(record + RDB_HEADER_BYTES, op->value, op->value_len);

    char key[RDB_KEY_BYTES_MAX];
    size_t klen = rdb_key(key, op->path, len);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_writebatch_put(batch, key, klen, (const char *)record,
                           RDB_HEADER_BYTES + op->value_len);
    rc = rdb_write(b, batch, b->write_sync, op->path, len);
    rocksdb_writebatch_destroy(batch);
    if (rc != MG_OK)
        goto out;
    md__notify(b->store, op->path, MD_EVENT_CHANGED);
    op->stat = n.stat;
out:
    mg_free(record);
    rdb_node_release(&n);
    return rc;
}

static int rdb_do_delete(md_backend *b, md_op *op)
{
    size_t len = strlen(op->path);
    if (len <= 1)
        return MG_EINVAL; /* the root cannot be deleted */
    rdb_node n = { 0 };
    int rc = rdb_remove(b, op->path, len, op->version, b->write_sync, &n);
    rdb_node_release(&n);
    if (rc != MG_OK)
        return rc;
    char parent[MD_PATH_BYTES_MAX + 1];
    memcpy(parent, op->path, len + 1);
    md__notify(b->store, op->path, MD_EVENT_DELETED);
    rdb_notify_prefix(b, parent, rdb_parent_len(parent, len), MD_EVENT_CHILDREN);
    return MG_OK;
}

static void rdb_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        mg_free(names[i]);
    mg_free(names);
}

/* Lists the children with one prefix scan. The count is whatever the callers created: the
 * list is as large as the node's child set (ZooKeeper bounds it only by its packet size). */
static int rdb_do_children(md_backend *b, md_op *op)
{
    size_t len = strlen(op->path);
    rdb_node n = { 0 };
    int rc = rdb_read(b, op->path, len, &n);
    rdb_node_release(&n);
    if (rc != MG_OK)
        return rc;

    char prefix[RDB_KEY_BYTES_MAX];
    size_t prefix_len = rdb_children_prefix(prefix, op->path, len);
    char **names = NULL;
    size_t count = 0, capacity = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator(b->db, b->read_opts);
    for (rocksdb_iter_seek(it, prefix, prefix_len); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0;
        const char *key = rocksdb_iter_key(it, &klen);
        if (klen <= prefix_len || memcmp(key, prefix, prefix_len) != 0)
            break;
        if (count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            char **bigger = mg_realloc(names, grown * sizeof(*names));
            if (bigger == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            names = bigger;
            capacity = grown;
        }
        size_t name_len = klen - prefix_len;
        char *name = mg_malloc(name_len + 1);
        if (name == NULL) {
            rc = MG_ENOMEM;
            break;
        }
        memcpy(name, key + prefix_len, name_len);
        name[name_len] = '\0';
        names[count++] = name;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL)
        rc = rdb_io_error(b, "children scan", op->path, len, err);
    if (rc != MG_OK) {
        rdb_free_names(names, count);
        return rc;
    }
    if (op->watch != NULL)
        md__watch_arm(op);
    op->names = names;
    op->name_count = count;
    return MG_OK;
}

static void rdb_execute(md_backend *b, md_op *op)
{
    int rc;
    switch (op->type) {
    case MD_OP_GET:
        rc = rdb_do_get(b, op);
        break;
    case MD_OP_CREATE:
        rc = rdb_do_create(b, op);
        break;
    case MD_OP_SET:
        rc = rdb_do_set(b, op);
        break;
    case MD_OP_DELETE:
        rc = rdb_do_delete(b, op);
        break;
    case MD_OP_CHILDREN:
        rc = rdb_do_children(b, op);
        break;
    default:
        MG_UNREACHABLE();
    }
    op->status = rc;
}

static void *rdb_worker(void *arg)
{
    md_backend *b = arg;
    mg_log_set_thread_name("md-rocksdb");
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->head == NULL && !b->closing)
            pthread_cond_wait(&b->cond, &b->mu);
        md_op *op = b->head;
        if (op == NULL)
            break; /* closing, and every submitted op is done */
        b->head = b->tail = NULL;
        pthread_mutex_unlock(&b->mu);
        while (op != NULL) {
            md_op *next = op->next;
            op->next = NULL;
            rdb_execute(b, op);
            md__op_complete(op); /* op belongs to the generic layer from here */
            op = next;
        }
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* --- backend interface --------------------------------------------------------------------- */

static void rdb_submit(md_backend *b, md_op *op)
{
    op->next = NULL;
    pthread_mutex_lock(&b->mu);
    MG_ASSERT(!b->closing); /* the generic layer closes every client before the store */
    if (b->tail != NULL)
        b->tail->next = op;
    else
        b->head = op;
    b->tail = op;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static int64_t rdb_new_session_id(void)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t v = 0;
        if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
            break;
        v &= INT64_MAX; /* positive: readable in logs, like ZooKeeper's */
        if (v != 0)
            return (int64_t)v;
    }
    /* No entropy source: time and pid still differ from any earlier process's. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    v &= INT64_MAX;
    return v != 0 ? (int64_t)v : 1;
}

static void rdb_free(md_backend *b)
{
    if (b->db != NULL)
        rocksdb_close(b->db);
    if (b->read_opts != NULL)
        rocksdb_readoptions_destroy(b->read_opts);
    if (b->write_sync != NULL)
        rocksdb_writeoptions_destroy(b->write_sync);
    if (b->write_nosync != NULL)
        rocksdb_writeoptions_destroy(b->write_nosync);
    if (b->options != NULL)
        rocksdb_options_destroy(b->options);
    mg_free(b->dir);
    mg_free(b);
}

/* Checks the layout version and makes the root on first open. */
static int rdb_prepare(md_backend *b)
{
    char *err = NULL;
    size_t vlen = 0;
    char *layout =
        rocksdb_get(b->db, b->read_opts, rdb_layout_key, sizeof(rdb_layout_key) - 1, &vlen, &err);
    if (err != NULL)
        return rdb_io_error(b, "read", "/", 1, err);
    bool has_layout = layout != NULL;
    if (has_layout) {
        int version = vlen == 1 ? (uint8_t)layout[0] : -1;
        rocksdb_free(layout);
        if (version != RDB_LAYOUT_VERSION) {
            MG_ERROR("metadata: %s has layout version %d; this build reads version %d", b->dir,
                     version, RDB_LAYOUT_VERSION);
            return MG_ECORRUPT;
        }
    }
    int rc = rdb_check_absent(b, "/", 1);
    if (rc == MG_EEXIST && has_layout)
        return MG_OK;
    if (rc != MG_OK && rc != MG_EEXIST)
        return rc;

    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    const char version = RDB_LAYOUT_VERSION;
    rocksdb_writebatch_put(batch, rdb_layout_key, sizeof(rdb_layout_key) - 1, &version, 1);
    if (rc == MG_OK) {
        int64_t now = mg_clock_wall_ms();
        md_stat st = { .created_ms = now, .modified_ms = now };
        uint8_t header[RDB_HEADER_BYTES];
        rdb_encode_header(header, &st, 0);
        rocksdb_writebatch_put(batch, "r", 1, (const char *)header, sizeof(header));
    }
    rc = rdb_write(b, batch, b->write_sync, "/", 1);
    rocksdb_writebatch_destroy(batch);
    return rc;
}

static int rdb_open(md_store *store, const char *target, const md_store_options *opts,
                    md_backend **out)
{
    /* The session timeout is ZooKeeper's; the embedded session is the process. */
    md_backend *b = mg_calloc(1, sizeof(*b));
    if (b == NULL)
        return MG_ENOMEM;
    b->store = store;
    b->read_only = opts->read_only;
    size_t dir_len = strlen(target);
    b->dir = mg_malloc(dir_len + 1);
    if (b->dir == NULL) {
        mg_free(b);
        return MG_ENOMEM;
    }
    memcpy(b->dir, target, dir_len + 1);
    struct stat st;
    int rc = b->read_only ? (stat(b->dir, &st) == 0 ? MG_OK : MG_ENOTFOUND) : mg_mkdirs(b->dir);
    if (rc != MG_OK && rc != MG_ENOTFOUND) {
        MG_ERROR("metadata: cannot create the directory %s: %s", b->dir, mg_strerror(rc));
        rc = MG_EIO;
    }
    if (rc != MG_OK) {
        if (rc == MG_ENOTFOUND)
            MG_ERROR("metadata: %s does not exist", b->dir);
        rdb_free(b);
        return rc;
    }

    b->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(b->options, 1);
    rocksdb_options_set_keep_log_file_num(b->options, MD_ROCKSDB_INFO_LOG_FILES_MAX);
    rocksdb_options_set_max_log_file_size(b->options, MD_ROCKSDB_INFO_LOG_BYTES_MAX);
    rocksdb_options_set_write_buffer_size(b->options, MD_ROCKSDB_WRITE_BUFFER_BYTES);
    b->read_opts = rocksdb_readoptions_create();
    b->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(b->write_sync, 1);
    b->write_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(b->write_nosync, 0);

    char *err = NULL;
    /* Read-only: no lock is taken, so a store another process has open can be inspected; the
     * view is the database as of this open (its log replayed in memory). */
    if (b->read_only)
        b->db = rocksdb_open_for_read_only(b->options, b->dir, 0, &err);
    else
        b->db = rocksdb_open(b->options, b->dir, &err);
    if (err != NULL) {
        if (strstr(err, "While lock file") != NULL ||
            strstr(err, "lock hold by current process") != NULL) {
            MG_ERROR("metadata: rocksdb directory %s is locked by another metadata store "
                     "(another process, or one already open here): %s",
                     b->dir, err);
            rc = MG_EAGAIN;
        } else if (strstr(err, "Corruption") != NULL) {
            MG_ERROR("metadata: rocksdb directory %s is corrupt: %s", b->dir, err);
            rc = MG_ECORRUPT;
        } else {
            MG_ERROR("metadata: cannot open rocksdb directory %s: %s", b->dir, err);
            rc = MG_EIO;
        }
        rocksdb_free(err);
        b->db = NULL;
        rdb_free(b);
        return rc;
    }
    rc = b->read_only ? MG_OK : rdb_prepare(b);
    if (rc != MG_OK) {
        rdb_free(b);
        return rc;
    }

    b->session_id = rdb_new_session_id();
    int64_t stale = 0;
    rc = b->read_only ? MG_OK : rdb_drop_ephemerals(b, 0, &stale);
    if (rc != MG_OK) {
        MG_ERROR("metadata: cannot remove the ephemeral nodes of an earlier process in %s", b->dir);
        rdb_free(b);
        return rc;
    }
    if (stale > 0)
        MG_INFO("metadata: removed %" PRId64 " ephemeral node(s) left by an earlier process in %s",
                stale, b->dir);

    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    int err_no = pthread_create(&b->thread, NULL, rdb_worker, b);
    if (err_no != 0) {
        MG_ERROR("metadata: cannot start the rocksdb worker thread: %s", strerror(err_no));
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->mu);
        rdb_free(b);
        return err_no == EAGAIN ? MG_EAGAIN : MG_ESYS;
    }
    MG_INFO("metadata: opened rocksdb:%s%s, session 0x%" PRIx64, b->dir,
            b->read_only ? " read-only" : "", (uint64_t)b->session_id);
    *out = b;
    md__session_event(store, MD_SESSION_CONNECTED);
    return MG_OK;
}

static void rdb_close(md_backend *b)
{
    pthread_mutex_lock(&b->mu);
    b->closing = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL); /* every submitted op has completed */
    MG_ASSERT(b->head == NULL);

    int64_t dropped = 0;
    int rc = b->read_only ? MG_OK : rdb_drop_ephemerals(b, b->session_id, &dropped);
    if (rc != MG_OK)
        MG_WARN("metadata: some ephemeral nodes of session 0x%" PRIx64
                " stay in %s until its next open",
                (uint64_t)b->session_id, b->dir);
    MG_INFO("metadata: closing rocksdb:%s, %" PRId64 " ephemeral node(s) deleted", b->dir, dropped);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
    rdb_free(b);
}

static int64_t rdb_session_id(md_backend *b)
{
    return b->session_id; /* fixed for the store's life */
}

const md_backend_ops md_rocksdb_backend = {
    .name = "rocksdb",
    .open = rdb_open,
    .submit = rdb_submit,
    .close = rdb_close,
    .session_id = rdb_session_id,
};
