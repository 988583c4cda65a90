/*
 * The chat roles of a `magnetar` process (docs/chat_gateway.md): the gateway and the Job worker,
 * each on a loop and thread of its own ("cg-gateway", "cg-job"), so that a busy fan-out never
 * delays the broker's loop and the gateway can be pinned to a core of its own (perf/chat.sh).
 * `standalone` runs both next to its broker; `magnetar gateway` and `magnetar job` run one each.
 *
 * Life cycle: mg_chat_start (starts each role on its thread and waits until it is serving or
 * has failed; errors are logged) -> ... -> mg_chat_stop (asks each thread to close its role and
 * joins it; blocks the caller for as long as that takes, only while stopping). mg_chat_stop is
 * also right after a failed mg_chat_start.
 */
#ifndef MG_TOOLS_CHAT_H
#define MG_TOOLS_CHAT_H

#include "metadata/metadata.h"
#include "common/metrics.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct mg_chat_opts {
    bool gateway;
    bool job;
    const char *bind_address;       /* the gateway's client and push ports */
    const char *advertised_address; /* how Jobs reach the gateway's push port */
    int64_t tcp_port, ws_port, push_port;
    const char *service_url; /* the broker: the Job consumes and the gateway resumes through it */
    int64_t topics;
    int64_t merge_max_messages;
    int64_t merge_max_ms;
    int64_t auth_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t queue_soft_bytes, queue_hard_bytes;
    int64_t buckets;
    const char *subscription; /* the Job's; NULL = the default */
    const char *job_name;     /* NULL = made from the host and process id */
} mg_chat_opts;

typedef struct mg_chat_role {
    uv_loop_t loop;
    bool loop_ready;
    uv_thread_t thread;
    bool thread_running;
    uv_async_t stop;
    uv_sem_t started;
    int status;
    int ended; /* atomic: the thread returned */
    bool stop_sent;
    int kind; /* MG_CHAT_GATEWAY or MG_CHAT_JOB */
    md_store *store;
    md_client *mdc;
    mg_metrics *metrics;
    const mg_chat_opts *o;
    void *obj; /* the cg_gateway or cg_job */
    uint16_t ports[3];
} mg_chat_role;

enum { MG_CHAT_GATEWAY = 0, MG_CHAT_JOB = 1 };

typedef struct mg_chat {
    mg_chat_role roles[2];
} mg_chat;

/* The on|off choices of --chat-gateway and --chat-job. */
extern const char *const mg_chat_on_off[];

/* Starts the roles o asks for. store: the metadata store the roles register in and look each
 * other up in (each role makes its own client of it on its loop); metrics: the process's registry
 * (may be NULL). o must outlive the roles. Returns MG_OK or the first role's error (logged). */
int mg_chat_start(mg_chat *ch, md_store *store, mg_metrics *metrics, const mg_chat_opts *o);

/* The gateway's bound ports (tcp, ws, push) once started, else 0. */
uint16_t mg_chat_gateway_port(const mg_chat *ch, int which);

/* Stops every role started, in the order Job, gateway, and frees their loops. Blocks until the
 * threads have ended: a caller whose loop serves the roles (a standalone's broker) asks first
 * with mg_chat_request_stop and calls this once mg_chat_done says they have ended. */
void mg_chat_stop(mg_chat *ch);

/* Asks every role's thread to close its role and end, without waiting. Any thread. */
void mg_chat_request_stop(mg_chat *ch);

/* Whether every role's thread has ended (or never ran). Any thread. */
bool mg_chat_done(const mg_chat *ch);

/* `magnetar gateway` and `magnetar job`. */
int mg_tool_gateway(int argc, char **argv);
int mg_tool_job(int argc, char **argv);

#endif
