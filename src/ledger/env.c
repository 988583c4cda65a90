/*
 * The ledger environment (one per loop: the loop, its metadata and bookie clients, the quorum
 * settings and the module's metrics) and the codec shared by bookie and managed ledgers: the
 * in-memory LedgerMetadata.
 *
 * Invariant: env->objects counts every ledger handle, managed ledger and module operation that
 * still refers to the env; ml_env_destroy asserts it is zero (destroying an env under a live
 * ledger is a programmer error that would otherwise show up as a use after free much later).
 */
#include "ledger/ledger_int.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "ledger/limits.h"
#include "proto/ledger.pb-c.h"

#include <stdio.h>
#include <string.h>

/* --- environment -------------------------------------------------------------------------- */

int ml_env_create(uv_loop_t *loop, md_client *md, bk_client *bk, const ml_env_opts *opts,
                  ml_env **out)
{
    if (loop == NULL || md == NULL || bk == NULL || out == NULL)
        return MG_EINVAL;
    ml_env_opts o = { 0 };
    if (opts != NULL)
        o = *opts;
    int e = o.ensemble_size > 0 ? o.ensemble_size : 1;
    int w = o.write_quorum > 0 ? o.write_quorum : e;
    int a = o.ack_quorum > 0 ? o.ack_quorum : w;
    if (o.ensemble_size < 0 || o.write_quorum < 0 || o.ack_quorum < 0 || e > ML_ENSEMBLE_SIZE_MAX ||
        w > e || a > w)
        return MG_EINVAL;
    if (o.pending_adds_max > ML_PENDING_ADDS_HARD_MAX)
        return MG_EINVAL;
    ml_env *env = mg_calloc(1, sizeof(*env));
    if (env == NULL)
        return MG_ENOMEM;
    env->loop = loop;
    env->md = md;
    env->bk = bk;
    env->ensemble_size = e;
    env->write_quorum = w;
    env->ack_quorum = a;
    env->add_timeout_ms = o.add_timeout_ms ? o.add_timeout_ms : ML_DEFAULT_ADD_TIMEOUT_MS;
    env->pending_adds_max = o.pending_adds_max ? o.pending_adds_max : ML_DEFAULT_PENDING_ADDS_MAX;
    env->metrics = o.metrics;
    env->rng = uv_hrtime() ^ ((uint64_t)(uintptr_t)env << 16) ^ 0x9e3779b97f4a7c15ull;
    if (env->rng == 0)
        env->rng = 1;
    if (o.metrics != NULL) {
        env->m_add_latency = mg_metrics_unlabelled_histogram(
            o.metrics, "ml_add_latency_ms",
            "Managed-ledger add latency, from ml_add to its acknowledgement", 0.001);
        env->m_rollovers = mg_metrics_unlabelled_counter(
            o.metrics, "ml_ledger_rollovers_total", "Managed-ledger rollovers to a new ledger");
        env->m_ensemble_changes = mg_metrics_unlabelled_counter(
            o.metrics, "ml_ensemble_changes_total",
            "Ensemble changes: failed bookies replaced in a ledger being written");
        env->m_recoveries = mg_metrics_unlabelled_counter(
            o.metrics, "ml_recoveries_total",
            "Ledger recoveries: ledgers fenced and closed after their writer went away");
        env->m_lost_ledgers = mg_metrics_unlabelled_counter(
            o.metrics, "ml_lost_ledgers_total",
            "Ledgers of a topic's list found missing from the bookies or the metadata store "
            "(non-recoverable: their entries cannot be read)");
        env->m_lost_skipped = mg_metrics_unlabelled_counter(
            o.metrics, "ml_lost_entries_skipped_total",
            "Entries that cursors skipped because their ledger is lost");
    }
    *out = env;
    return MG_OK;
}

void ml_env_destroy(ml_env *env)
{
    if (env == NULL)
        return;
    MG_ASSERT(env->objects == 0);
    mg_freelist_clear(&env->op_pool);
    mg_free(env);
}

uv_loop_t *ml_env_loop(const ml_env *env)
{
    return env->loop;
}

md_client *ml_env_md(const ml_env *env)
{
    return env->md;
}

bk_client *ml_env_bk(const ml_env *env)
{
    return env->bk;
}

mg_metrics *ml_env_metrics(const ml_env *env)
{
    return env->metrics;
}

uint64_t ml__rand(ml_env *env)
{
    uint64_t x = env->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    env->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

void ml__ledger_path(int64_t ledger_id, char *buf, size_t buf_size)
{
    snprintf(buf, buf_size, "/ledgers/%lld", (long long)ledger_id);
}

/* --- ledger metadata ---------------------------------------------------------------------- */

void ml__meta_free(ml__meta *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->ensemble_count; i++) {
        for (int j = 0; j < ML_ENSEMBLE_SIZE_MAX; j++)
            mg_free(m->ensembles[i].bookies[j]);
    }
    mg_free(m->ensembles);
    memset(m, 0, sizeof(*m));
}

static char *ml__strdup(const char *s)
{
    size_t n = strlen(s);
    char *d = mg_malloc(n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

int ml__meta_decode(const void *data, size_t len, ml__meta *out)
{
    memset(out, 0, sizeof(*out));
    Magnetar__Ledger__LedgerMetadata *pb =
        magnetar__ledger__ledger_metadata__unpack(NULL, len, data);
    if (pb == NULL)
        return MG_ECORRUPT;
    int rc = MG_ECORRUPT;
    int e = pb->ensemble_size, w = pb->write_quorum, a = pb->ack_quorum;
    if (e < 1 || e > ML_ENSEMBLE_SIZE_MAX || w < 1 || w > e || a < 1 || a > w)
        goto done;
    if (pb->n_ensembles < 1 || pb->n_ensembles > ML_ENSEMBLES_MAX)
        goto done;
    if (pb->state != MAGNETAR__LEDGER__LEDGER_METADATA__STATE__OPEN &&
        pb->state != MAGNETAR__LEDGER__LEDGER_METADATA__STATE__IN_RECOVERY &&
        pb->state != MAGNETAR__LEDGER__LEDGER_METADATA__STATE__CLOSED)
        goto done;
    for (size_t i = 0; i < pb->n_ensembles; i++) {
        const Magnetar__Ledger__LedgerMetadata__Ensemble *en = pb->ensembles[i];
        if (en->n_bookies != (size_t)e)
            goto done;
        if (i == 0 ? en->first_entry_id != 0
                   : en->first_entry_id <= pb->ensembles[i - 1]->first_entry_id)
            goto done;
        for (size_t j = 0; j < en->n_bookies; j++) {
            size_t n = strlen(en->bookies[j]);
            if (n == 0 || n >= BK_ADDR_BYTES_MAX)
                goto done;
        }
    }
    rc = MG_ENOMEM;
    out->ensembles = mg_calloc(pb->n_ensembles, sizeof(*out->ensembles));
    if (out->ensembles == NULL)
        goto done;
    out->ensemble_count = pb->n_ensembles;
    out->ensemble_size = e;
    out->write_quorum = w;
    out->ack_quorum = a;
    out->state = (ml_ledger_state)pb->state;
    out->last_entry_id = pb->has_last_entry_id ? pb->last_entry_id : -1;
    out->length = pb->has_length ? pb->length : 0;
    out->ctime_ms = pb->has_ctime_ms ? pb->ctime_ms : 0;
    for (size_t i = 0; i < pb->n_ensembles; i++) {
        out->ensembles[i].first_entry_id = pb->ensembles[i]->first_entry_id;
        for (int j = 0; j < e; j++) {
            out->ensembles[i].bookies[j] = ml__strdup(pb->ensembles[i]->bookies[j]);
            if (out->ensembles[i].bookies[j] == NULL)
                goto done;
        }
    }
    if (out->state == ML_LEDGER_CLOSED && out->last_entry_id < -1) {
        rc = MG_ECORRUPT;
        goto done;
    }
    rc = MG_OK;
done:
    magnetar__ledger__ledger_metadata__free_unpacked(pb, NULL);
    if (rc != MG_OK)
        ml__meta_free(out);
    return rc;
}

int ml__meta_encode(const ml__meta *m, uint8_t **out, size_t *out_len)
{
    Magnetar__Ledger__LedgerMetadata pb = MAGNETAR__LEDGER__LEDGER_METADATA__INIT;
    pb.ensemble_size = m->ensemble_size;
    pb.write_quorum = m->write_quorum;
    pb.ack_quorum = m->ack_quorum;
    pb.state = (Magnetar__Ledger__LedgerMetadata__State)m->state;
    if (m->state == ML_LEDGER_CLOSED) {
        pb.has_last_entry_id = 1;
        pb.last_entry_id = m->last_entry_id;
        pb.has_length = 1;
        pb.length = m->length;
    }
    pb.has_ctime_ms = 1;
    pb.ctime_ms = m->ctime_ms;
    Magnetar__Ledger__LedgerMetadata__Ensemble *ens = mg_calloc(m->ensemble_count, sizeof(*ens));
    Magnetar__Ledger__LedgerMetadata__Ensemble **ptrs = mg_calloc(m->ensemble_count, sizeof(*ptrs));
    if (ens == NULL || ptrs == NULL) {
        mg_free(ens);
        mg_free(ptrs);
        return MG_ENOMEM;
    }
    for (size_t i = 0; i < m->ensemble_count; i++) {
        magnetar__ledger__ledger_metadata__ensemble__init(&ens[i]);
        ens[i].first_entry_id = m->ensembles[i].first_entry_id;
        ens[i].n_bookies = (size_t)m->ensemble_size;
        ens[i].bookies = (char **)m->ensembles[i].bookies;
        ptrs[i] = &ens[i];
    }
    pb.n_ensembles = m->ensemble_count;
    pb.ensembles = ptrs;
    size_t n = magnetar__ledger__ledger_metadata__get_packed_size(&pb);
    uint8_t *buf = mg_malloc(n);
    int rc = MG_ENOMEM;
    if (buf != NULL) {
        magnetar__ledger__ledger_metadata__pack(&pb, buf);
        *out = buf;
        *out_len = n;
        rc = MG_OK;
    }
    mg_free(ens);
    mg_free(ptrs);
    return rc;
}

int ml__meta_copy(const ml__meta *src, ml__meta *dst)
{
    *dst = *src;
    dst->ensembles = mg_calloc(src->ensemble_count, sizeof(*dst->ensembles));
    if (dst->ensembles == NULL) {
        memset(dst, 0, sizeof(*dst));
        return MG_ENOMEM;
    }
    for (size_t i = 0; i < src->ensemble_count; i++) {
        dst->ensembles[i].first_entry_id = src->ensembles[i].first_entry_id;
        for (int j = 0; j < src->ensemble_size; j++) {
            dst->ensembles[i].bookies[j] = ml__strdup(src->ensembles[i].bookies[j]);
            if (dst->ensembles[i].bookies[j] == NULL) {
                ml__meta_free(dst);
                return MG_ENOMEM;
            }
        }
    }
    return MG_OK;
}

size_t ml__meta_ensemble_of(const ml__meta *m, int64_t entry_id)
{
    /* Ensembles are few (one per bookie failure): a backwards scan finds the usual case, the
     * last one, at once. */
    size_t i = m->ensemble_count;
    while (i > 1 && m->ensembles[i - 1].first_entry_id > entry_id)
        i--;
    return i - 1;
}
