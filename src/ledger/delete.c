/*
 * Deleting a managed ledger that is not open (ml_delete_stored, see ledger.h): its node
 * /managed-ledgers/<name>, the cursor nodes below it and every ledger of its list.
 *
 * STEPS (one metadata or ledger operation in flight at a time; each callback starts the next)
 *
 *     READ --> FENCE --> LIST_CURSORS --> CURSORS --> LEDGERS --> NODE --> done
 *      |         |            |              |           |          |
 *      +---------+------------+--------------+-----------+----------+--> done with the error
 *
 *   READ          md_get of the node: the version, the ledger ids (validated as the open path
 *                 validates them; a list that does not parse stops everything).
 *   FENCE         md_set of the same bytes with CAS on that version: a list write by another
 *                 owner after our read makes this fail before anything is deleted, and an
 *                 owner that read the list before us fails its next list write.
 *   LIST_CURSORS  md_children of the node; the full child paths are copied.
 *   CURSORS       md_delete of each child (any version), in name order.
 *   LEDGERS       ml_ledger_delete of each listed ledger, oldest first.
 *   NODE          md_delete of the node with CAS on the version FENCE wrote.
 *
 * Invariants:
 *  1. At most one operation of a deletion is in flight, so a deletion never holds more than one
 *     of the metadata client's in-flight slots, and a topic with thousands of ledgers does not
 *     crowd out the loop's other traffic (deleting a topic is rare and not latency-critical).
 *  2. "Already gone" (MG_ENOTFOUND) from a cursor, a ledger or the node at the last step counts
 *     as deleted, so a deletion that stopped on an error is finished by calling again.
 *  3. The env's object count includes each deletion from the call until just before its
 *     callback; the callback runs from a metadata or ledger callback, never inside the call.
 */
#include "ledger/ledger_int.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "ledger/limits.h"
#include "proto/ledger.pb-c.h"

#include <string.h>

typedef struct ml__mdel {
    ml_env *env;
    ml_done_cb cb;
    void *arg;
    char name[ML_NAME_BYTES_MAX];
    char path[ML__MANAGED_PATH_BYTES];
    int64_t version;
    uint8_t *value; /* the list as read, written back by FENCE */
    size_t value_len;
    int64_t *ledgers; /* ids in list order */
    size_t ledger_count, next_ledger;
    char **children; /* full paths of the cursor nodes */
    size_t child_count, next_child;
} ml__mdel;

static void ml__mdel_finish(ml__mdel *d, int status)
{
    if (status == MG_OK)
        MG_INFO("managed ledger %s: deleted with %zu cursors and %zu ledgers", d->name,
                d->child_count, d->ledger_count);
    else if (status == MG_ENOTFOUND)
        MG_DEBUG("managed ledger %s: nothing to delete", d->name);
    else
        MG_WARN("managed ledger %s: deletion stopped: %s (cursors deleted %zu of %zu, ledgers "
                "%zu of %zu)",
                d->name, mg_strerror(status), d->next_child, d->child_count, d->next_ledger,
                d->ledger_count);
    ml_done_cb cb = d->cb;
    void *arg = d->arg;
    d->env->objects--;
    for (size_t i = 0; i < d->child_count; i++)
        mg_free(d->children[i]);
    mg_free(d->children);
    mg_free(d->ledgers);
    mg_free(d->value);
    mg_free(d);
    cb(status, arg);
}

/* --- NODE ------------------------------------------------------------------------------------ */

static void ml__mdel_node_done(int status, void *arg)
{
    /* Gone already: a concurrent deletion got there first; the managed ledger is gone. */
    ml__mdel_finish(arg, status == MG_ENOTFOUND ? MG_OK : status);
}

static void ml__mdel_node(ml__mdel *d)
{
    int rc = md_delete(d->env->md, d->path, d->version, ml__mdel_node_done, d);
    if (rc != MG_OK)
        ml__mdel_finish(d, rc);
}

/* --- LEDGERS --------------------------------------------------------------------------------- */

static void ml__mdel_next_ledger(ml__mdel *d);

static void ml__mdel_ledger_done(int status, void *arg)
{
    ml__mdel *d = arg;
    if (status != MG_OK && status != MG_ENOTFOUND) {
        ml__mdel_finish(d, status);
        return;
    }
    d->next_ledger++;
    ml__mdel_next_ledger(d);
}

static void ml__mdel_next_ledger(ml__mdel *d)
{
    if (d->next_ledger == d->ledger_count) {
        ml__mdel_node(d);
        return;
    }
    int rc = ml_ledger_delete(d->env, d->ledgers[d->next_ledger], ml__mdel_ledger_done, d);
    if (rc != MG_OK)
        ml__mdel_finish(d, rc);
}

/* --- CURSORS --------------------------------------------------------------------------------- */

static void ml__mdel_next_child(ml__mdel *d);

static void ml__mdel_child_done(int status, void *arg)
{
    ml__mdel *d = arg;
    if (status != MG_OK && status != MG_ENOTFOUND) {
        ml__mdel_finish(d, status);
        return;
    }
    d->next_child++;
    ml__mdel_next_child(d);
}

static void ml__mdel_next_child(ml__mdel *d)
{
    if (d->next_child == d->child_count) {
        ml__mdel_next_ledger(d);
        return;
    }
    int rc =
        md_delete(d->env->md, d->children[d->next_child], MD_VERSION_ANY, ml__mdel_child_done, d);
    if (rc != MG_OK)
        ml__mdel_finish(d, rc);
}

/* --- LIST_CURSORS ---------------------------------------------------------------------------- */

static void ml__mdel_children_got(int status, const char *const *names, size_t count, void *arg)
{
    ml__mdel *d = arg;
    if (status != MG_OK) {
        ml__mdel_finish(d, status);
        return;
    }
    if (count > 0) {
        d->children = mg_calloc(count, sizeof(*d->children));
        if (d->children == NULL) {
            ml__mdel_finish(d, MG_ENOMEM);
            return;
        }
    }
    size_t base = strlen(d->path);
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        char *p = mg_malloc(base + 1 + n + 1);
        if (p == NULL) {
            ml__mdel_finish(d, MG_ENOMEM);
            return;
        }
        memcpy(p, d->path, base);
        p[base] = '/';
        memcpy(p + base + 1, names[i], n + 1);
        d->children[d->child_count++] = p;
    }
    ml__mdel_next_child(d);
}

/* --- FENCE ----------------------------------------------------------------------------------- */

static void ml__mdel_fenced(int status, const md_stat *stat, void *arg)
{
    ml__mdel *d = arg;
    if (status != MG_OK) {
        if (status == MG_EBADVERSION)
            MG_WARN("managed ledger %s: its list changed while it was being deleted (another "
                    "owner); nothing deleted",
                    d->name);
        ml__mdel_finish(d, status);
        return;
    }
    d->version = stat->version;
    mg_free(d->value);
    d->value = NULL;
    int rc = md_children(d->env->md, d->path, ml__mdel_children_got, d);
    if (rc != MG_OK)
        ml__mdel_finish(d, rc);
}

/* --- READ ------------------------------------------------------------------------------------ */

/* The ledger ids of a ManagedLedgerInfo, validated as the open path does (ml__info_unpack).
 * MG_ECORRUPT or MG_ENOMEM. */
static int ml__mdel_decode(ml__mdel *d, const void *value, size_t len)
{
    void *unpacked;
    MG_TRY(ml__info_unpack(value, len, &unpacked));
    Magnetar__Ledger__ManagedLedgerInfo *pb = unpacked;
    int rc = MG_OK;
    if (pb->n_ledgers > 0) {
        d->ledgers = mg_calloc(pb->n_ledgers, sizeof(*d->ledgers));
        if (d->ledgers == NULL)
            rc = MG_ENOMEM;
    }
    for (size_t i = 0; rc == MG_OK && i < pb->n_ledgers; i++)
        d->ledgers[d->ledger_count++] = pb->ledgers[i]->ledger_id;
    magnetar__ledger__managed_ledger_info__free_unpacked(pb, NULL);
    return rc;
}

static void ml__mdel_got(int status, const void *value, size_t value_len, const md_stat *stat,
                         void *arg)
{
    ml__mdel *d = arg;
    if (status != MG_OK) {
        ml__mdel_finish(d, status);
        return;
    }
    /* A managed ledger's node always holds at least the message-count property; an empty node
     * is a parent created on the way (".../persistent"), whose children are other topics. */
    if (value_len == 0) {
        ml__mdel_finish(d, MG_ENOTFOUND);
        return;
    }
    int rc = ml__mdel_decode(d, value, value_len);
    if (rc != MG_OK) {
        if (rc == MG_ECORRUPT)
            MG_ERROR("managed ledger %s: its ledger list does not parse; not deleted", d->name);
        ml__mdel_finish(d, rc);
        return;
    }
    d->version = stat->version;
    d->value = mg_malloc(value_len);
    if (d->value == NULL) {
        ml__mdel_finish(d, MG_ENOMEM);
        return;
    }
    memcpy(d->value, value, value_len);
    d->value_len = value_len;
    rc = md_set(d->env->md, d->path, d->value, d->value_len, d->version, ml__mdel_fenced, d);
    if (rc != MG_OK)
        ml__mdel_finish(d, rc);
}

int ml_delete_stored(ml_env *env, const char *name, ml_done_cb cb, void *arg)
{
    if (env == NULL || name == NULL || cb == NULL)
        return MG_EINVAL;
    ml__mdel *d = mg_calloc(1, sizeof(*d));
    if (d == NULL)
        return MG_ENOMEM;
    if (ml__managed_path(name, d->path, sizeof(d->path)) != MG_OK) {
        mg_free(d);
        return MG_EINVAL;
    }
    memcpy(d->name, name, strlen(name) + 1);
    d->env = env;
    d->cb = cb;
    d->arg = arg;
    int rc = md_get(env->md, d->path, ml__mdel_got, d);
    if (rc != MG_OK) {
        mg_free(d);
        return rc;
    }
    env->objects++;
    return MG_OK;
}
