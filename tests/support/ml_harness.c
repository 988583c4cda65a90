/*
 * The ledger-level test environment (see ml_harness.h): the loop and its guard timer, the
 * bookies, the metrics registry and the env, set up and torn down in that order and its
 * reverse.
 */
#include "support/ml_harness.h"

#include "common/error.h"
#include "support/loop_wait.h"

#include <string.h>

static void mlh_guard_tick(uv_timer_t *timer)
{
    (void)timer;
}

/* Closes what mlh_start made so far (the env is never among it) and the loop. */
static int mlh_unwind(mlh *m)
{
    if (m->h != NULL)
        bkh_destroy(m->h);
    uv_close((uv_handle_t *)&m->guard, NULL);
    for (int i = 0; i < MLH_DRAIN_TURNS && uv_loop_alive(&m->loop); i++)
        uv_run(&m->loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&m->loop) == 0 ? MG_OK : MG_ESTATE;
    mg_metrics_destroy(m->metrics);
    memset(m, 0, sizeof(*m));
    return rc;
}

int mlh_start(mlh *m, const mlh_opts *o)
{
    memset(m, 0, sizeof(*m));
    if (uv_loop_init(&m->loop) != 0)
        return MG_ESYS;
    if (uv_timer_init(&m->loop, &m->guard) != 0 ||
        uv_timer_start(&m->guard, mlh_guard_tick, MLH_GUARD_MS, MLH_GUARD_MS) != 0) {
        uv_loop_close(&m->loop);
        return MG_ESYS;
    }
    int rc = bkh_start(&m->loop, o->bookie_count > 0 ? o->bookie_count : 1, &m->h);
    if (rc == MG_OK && o->metrics)
        rc = mg_metrics_create(&m->metrics);
    ml_env_opts eo = o->env;
    eo.metrics = m->metrics;
    if (rc == MG_OK)
        rc = ml_env_create(&m->loop, bkh_md_client(m->h), bkh_bk_client(m->h), &eo, &m->env);
    if (rc != MG_OK)
        mlh_unwind(m);
    return rc;
}

int mlh_stop(mlh *m)
{
    ml_env_destroy(m->env);
    m->env = NULL;
    return mlh_unwind(m);
}

uint64_t mlh_counter(mlh *m, const char *name)
{
    return mg_counter_value(mg_metrics_unlabelled_counter(m->metrics, name, NULL));
}

typedef struct mlh_res {
    bool done;
    int status;
    ml_managed *ml;
} mlh_res;

static void mlh_opened(int status, ml_managed *ml, void *arg)
{
    mlh_res *r = arg;
    r->done = true;
    r->status = status;
    r->ml = ml;
}

static void mlh_closed(int status, void *arg)
{
    mlh_res *r = arg;
    r->done = true;
    r->status = status;
}

int mlh_open_ml(mlh *m, ml_env *env, const char *name, const ml_config *cfg, ml_managed **out)
{
    mlh_res r = { 0 };
    int rc = ml_open(env, name, cfg, mlh_opened, &r);
    if (rc != MG_OK)
        return rc;
    if (!mgt_run_until(&m->loop, mgt_flag_set, &r.done, MLH_WAIT_MS))
        return MG_ETIMEDOUT;
    if (r.status == MG_OK)
        *out = r.ml;
    return r.status;
}

int mlh_close_ml(mlh *m, ml_managed *ml, int *status)
{
    mlh_res r = { 0 };
    int rc = ml_close(ml, mlh_closed, &r);
    if (rc != MG_OK)
        return rc;
    if (!mgt_run_until(&m->loop, mgt_flag_set, &r.done, MLH_WAIT_MS))
        return MG_ETIMEDOUT;
    if (status != NULL)
        *status = r.status;
    return MG_OK;
}

void mlh_read_collect(int status, const ml_entry *e, size_t count, void *arg)
{
    mlh_read *r = arg;
    r->calls++;
    r->status = status;
    for (size_t i = 0; i < count && r->n < MLH_READ_ENTRIES_MAX; i++) {
        r->ts[r->n] = e[i].broker_timestamp_ms;
        r->got[r->n++] = e[i].position;
    }
}
