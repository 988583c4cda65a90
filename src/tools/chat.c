/*
 * The chat roles of a process, each on its own loop and thread (chat.h), and the commands
 * `magnetar gateway` and `magnetar job`.
 *
 * A role's thread makes its own metadata client of the process's store, creates and starts its
 * role on its loop, tells the starting thread how that went (a semaphore), and runs its loop
 * until mg_chat_stop wakes it (uv_async) to close the role and the client; the loop then ends
 * and the thread returns.
 */
#include "chat.h"

#include "node.h"
#include "tools.h"

#include "chat_gateway/gateway.h"
#include "chat_gateway/job.h"
#include "common/error.h"
#include "common/listen.h"
#include "common/log.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *const mg_chat_on_off[] = { "on", "off", NULL };

static const char *const role_names[] = { "cg-gateway", "cg-job" };

static void role_mdc_closed(void *arg)
{
    mg_chat_role *r = arg;
    r->mdc = NULL;
    uv_close((uv_handle_t *)&r->stop, NULL);
}

static void role_closed(void *arg)
{
    mg_chat_role *r = arg;
    r->obj = NULL;
    if (r->mdc != NULL)
        md_client_close(r->mdc, role_mdc_closed, r);
    else
        role_mdc_closed(r);
}

static void role_stop_requested(uv_async_t *h)
{
    mg_chat_role *r = h->data;
    if (r->obj == NULL) {
        role_closed(r);
        return;
    }
    if (r->kind == MG_CHAT_GATEWAY)
        cg_gateway_close(r->obj, role_closed, r);
    else
        cg_job_close(r->obj, role_closed, r);
}

static int gateway_start(mg_chat_role *r)
{
    const mg_chat_opts *o = r->o;
    uint64_t limit = mg_fd_limit();
    cg_gateway_opts go = {
        .bind_address = o->bind_address,
        .advertised_address = o->advertised_address,
        .tcp_port = (uint16_t)o->tcp_port,
        .ws_port = (uint16_t)o->ws_port,
        .push_port = (uint16_t)o->push_port,
        .mdc = r->mdc,
        .service_url = o->service_url,
        .topics = (uint32_t)o->topics,
        .auth_timeout_ms = (uint32_t)o->auth_timeout_ms,
        .idle_timeout_ms = (uint32_t)o->idle_timeout_ms,
        .queue_soft_bytes = (uint32_t)o->queue_soft_bytes,
        .queue_hard_bytes = (uint32_t)o->queue_hard_bytes,
        .buckets = (uint32_t)o->buckets,
        /* Descriptors beyond a reserve for files, the broker and the admin port; past it the
         * listener's backoff (common/listen.h) keeps accept from spinning. */
        .connections_max = limit > 2048 ? (uint32_t)(limit - 1024) : (uint32_t)(limit / 2),
        .metrics = r->metrics,
    };
    cg_gateway *gw = NULL;
    int rc = cg_gateway_create(&r->loop, &go, &gw);
    if (rc != MG_OK) {
        MG_ERROR("cannot create the chat gateway: %s", mg_strerror(rc));
        return rc;
    }
    r->obj = gw;
    rc = cg_gateway_start(gw);
    if (rc != MG_OK) {
        MG_ERROR("cannot start the chat gateway: %s", mg_strerror(rc));
        return rc;
    }
    r->ports[0] = cg_gateway_tcp_port(gw);
    r->ports[1] = cg_gateway_ws_port(gw);
    r->ports[2] = cg_gateway_push_port(gw);
    return MG_OK;
}

static int job_start(mg_chat_role *r)
{
    const mg_chat_opts *o = r->o;
    char name[128];
    if (o->job_name != NULL && o->job_name[0] != '\0') {
        snprintf(name, sizeof(name), "%s", o->job_name);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(name, sizeof(name), "job-%s-%d", host, (int)getpid());
    }
    cg_job_opts jo = {
        .service_url = o->service_url,
        .md = r->mdc,
        .topics = (uint32_t)o->topics,
        .subscription = o->subscription,
        .merge_max_messages = (uint32_t)o->merge_max_messages,
        .merge_max_ms = (uint32_t)o->merge_max_ms,
        .name = name,
        .metrics = r->metrics,
    };
    cg_job *job = NULL;
    int rc = cg_job_create(&r->loop, &jo, &job);
    if (rc != MG_OK) {
        MG_ERROR("cannot create the chat Job worker: %s", mg_strerror(rc));
        return rc;
    }
    r->obj = job;
    rc = cg_job_start(job);
    if (rc != MG_OK)
        MG_ERROR("cannot start the chat Job worker: %s", mg_strerror(rc));
    return rc;
}

static void role_thread_main(void *arg)
{
    mg_chat_role *r = arg;
    mg_log_set_thread_name(role_names[r->kind]);
    int rc = md_client_create(r->store, &r->loop, &r->mdc);
    if (rc != MG_OK)
        MG_ERROR("%s: cannot create a metadata client: %s", role_names[r->kind], mg_strerror(rc));
    if (rc == MG_OK)
        rc = r->kind == MG_CHAT_GATEWAY ? gateway_start(r) : job_start(r);
    if (rc != MG_OK) {
        /* Close what opened, on this thread, before telling the starting thread. */
        role_stop_requested(&r->stop);
        uv_run(&r->loop, UV_RUN_DEFAULT);
    }
    r->status = rc;
    uv_sem_post(&r->started);
    if (rc == MG_OK) {
        uv_run(&r->loop, UV_RUN_DEFAULT);
        __atomic_store_n(&r->ended, 1, __ATOMIC_RELEASE);
    }
}

static int role_start(mg_chat_role *r, int kind, md_store *store, mg_metrics *metrics,
                      const mg_chat_opts *o)
{
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->store = store;
    r->metrics = metrics;
    r->o = o;
    if (uv_loop_init(&r->loop) != 0)
        return MG_ENOMEM;
    r->loop_ready = true;
    if (uv_async_init(&r->loop, &r->stop, role_stop_requested) != 0)
        return MG_ENOMEM;
    r->stop.data = r;
    if (uv_sem_init(&r->started, 0) != 0)
        return MG_ENOMEM;
    if (uv_thread_create(&r->thread, role_thread_main, r) != 0) {
        uv_sem_destroy(&r->started);
        MG_ERROR("cannot start the %s thread", role_names[kind]);
        return MG_ENOMEM;
    }
    uv_sem_wait(&r->started);
    uv_sem_destroy(&r->started);
    if (r->status != MG_OK) {
        uv_thread_join(&r->thread);
        return r->status;
    }
    r->thread_running = true;
    return MG_OK;
}

int mg_chat_start(mg_chat *ch, md_store *store, mg_metrics *metrics, const mg_chat_opts *o)
{
    memset(ch, 0, sizeof(*ch));
    int rc = MG_OK;
    if (o->gateway)
        rc = role_start(&ch->roles[MG_CHAT_GATEWAY], MG_CHAT_GATEWAY, store, metrics, o);
    if (rc == MG_OK && o->job)
        rc = role_start(&ch->roles[MG_CHAT_JOB], MG_CHAT_JOB, store, metrics, o);
    return rc;
}

uint16_t mg_chat_gateway_port(const mg_chat *ch, int which)
{
    return which >= 0 && which < 3 ? ch->roles[MG_CHAT_GATEWAY].ports[which] : 0;
}

static void role_request_stop(mg_chat_role *r)
{
    if (r->thread_running && !r->stop_sent) {
        r->stop_sent = true;
        uv_async_send(&r->stop);
    }
}

void mg_chat_request_stop(mg_chat *ch)
{
    role_request_stop(&ch->roles[MG_CHAT_JOB]);
    role_request_stop(&ch->roles[MG_CHAT_GATEWAY]);
}

bool mg_chat_done(const mg_chat *ch)
{
    for (int i = 0; i < 2; i++)
        if (ch->roles[i].thread_running && !__atomic_load_n(&ch->roles[i].ended, __ATOMIC_ACQUIRE))
            return false;
    return true;
}

static void role_stop(mg_chat_role *r)
{
    if (r->thread_running) {
        role_request_stop(r);
        uv_thread_join(&r->thread);
        r->thread_running = false;
    }
    if (r->loop_ready) {
        mg_tool_loop_close(&r->loop);
        r->loop_ready = false;
    }
}

void mg_chat_stop(mg_chat *ch)
{
    role_stop(&ch->roles[MG_CHAT_JOB]);
    role_stop(&ch->roles[MG_CHAT_GATEWAY]);
}
