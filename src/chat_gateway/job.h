/*
 * The chat Job worker (GOIM's "job", ../shared/ARCHITECTURE.md §10): it consumes the chat topics
 * (topics.h) and pushes every chat message to the gateways that hold its recipients, over the
 * push protocol (push.h). A Job runs on one libuv loop, the caller's, with its own pc_client; it
 * finds the gateways in the metadata store (/chat/gateways/<id>, ephemeral, JSON value with the
 * "push" address) through the caller's md_client on the same loop.
 *
 * A CHAT MESSAGE is a Pulsar message whose payload is the body clients receive, with properties
 * chat.kind = room | keys | mids | all, chat.room (kind room: "type://id"), chat.keys (kind keys:
 * comma-separated), chat.mids (kind mids: comma-separated decimal member ids), chat.op (decimal,
 * default 5). A message with a missing or bad property is logged (rate-limited), counted as
 * malformed and acknowledged, so it never blocks its subscription.
 *
 * WHAT IT DOES
 *   - Subscribes to chat-0 .. chat-<topics-1> with one Failover subscription (initial position
 *     earliest: nothing produced before the first Job ran is lost), once the gateway registry
 *     has been read, so no message is judged against an unknown set of gateways.
 *   - Merges room messages per room: a room's batch is pushed when it holds merge_max_messages
 *     messages or its first message has waited merge_max_ms. Keys, mids and all messages are
 *     pushed at once, each alone. A push holds its messages in the topic's order, each with its
 *     position and publish time.
 *   - Keeps one TCP link per registered gateway: Hello first, then the gateway's Rooms (reset)
 *     before any push goes out on it; room pushes go only to gateways whose room set holds the
 *     room, the others to every gateway. Ping after CG_PUSH_PING_IDLE_MS without a frame from
 *     the gateway; a link silent CG_PUSH_DEAD_MS is dead and reconnected with backoff.
 *   - Acknowledges a message only when every gateway its push went to answered PushAck status 0
 *     or left the registry. A push whose link failed is sent again on the next link, before
 *     anything newer: the gateway drops what it already delivered (by position), so the Job
 *     resends freely, and after a Job restart the subscription redelivers what was not
 *     acknowledged.
 *
 * BOUNDS: what is in flight (received and not yet acknowledged: open batches and pushes waiting
 *   for acks) is bounded by CG_JOB_UNACKED_MESSAGES_MAX: at that count the Job pauses its
 *   consumers and resumes them at half. Above that, each consumer's receiver queue
 *   (CG_JOB_RECEIVER_QUEUE_MESSAGES flow permits) bounds what the client holds for it.
 *
 * THREADING: every function is called on the loop's thread and every callback runs on it. A call
 * that returns an error never calls its callback.
 */
#ifndef MG_CHAT_GATEWAY_JOB_H
#define MG_CHAT_GATEWAY_JOB_H

#include "common/metrics.h"
#include "metadata/metadata.h"

#include <stdint.h>
#include <uv.h>

typedef struct cg_job cg_job;

/* The subscription every Job of a deployment shares (Failover: one active Job per topic). */
#define CG_JOB_SUBSCRIPTION_DEFAULT "magnetar-chat-job"
/* Where gateways register (persistent parent of ephemeral /chat/gateways/<gateway-id>). */
#define CG_GATEWAYS_PATH            "/chat/gateways"

typedef struct cg_job_opts {
    const char *service_url;     /* "pulsar://host:port"; required; copied */
    md_client *md;               /* on the same loop; required; must outlive the Job */
    uint32_t topics;             /* chat topics; 0 = CG_CHAT_TOPICS_DEFAULT, at most
                                    CG_CHAT_TOPICS_MAX */
    const char *subscription;    /* NULL = CG_JOB_SUBSCRIPTION_DEFAULT; copied */
    uint32_t merge_max_messages; /* 0 = CG_JOB_MERGE_MESSAGES_DEFAULT, at most
                                    CG_BATCH_PACKETS_MAX */
    uint32_t merge_max_ms;       /* 0 = CG_JOB_MERGE_MS_DEFAULT, at most CG_JOB_MERGE_MS_MAX */
    const char *name;            /* in Hello and in logs; NULL = "job"; copied */
    mg_metrics *metrics;         /* magnetar_chat_job_* metrics go here; NULL = none; must
                                    outlive the Job */
} cg_job_opts;

/* What a Job has done so far (also exported as metrics), for tests and status pages. */
typedef struct cg_job_stats {
    uint64_t received_count;   /* chat messages received */
    uint64_t pushed_count;     /* messages put into pushes (once each, whatever the gateways) */
    uint64_t acked_count;      /* messages acknowledged after their push completed */
    uint64_t malformed_count;  /* messages refused (and acknowledged) for their properties */
    uint32_t pushes_inflight;  /* pushes waiting for a PushAck */
    uint32_t links_up;         /* gateway links past Hello and Rooms */
    uint32_t gateways;         /* gateways registered and followed */
    uint32_t unacked_messages; /* received and not yet acknowledged */
} cg_job_stats;

/* Creates a Job on loop (nothing runs before cg_job_start). opts are copied. [in] loop, opts;
 * [out] *out the Job, owned by the caller until cg_job_close. Errors: MG_EINVAL (no service URL
 * or md_client, a count over its bound, a name longer than CG_JOB_NAME_BYTES_MAX), MG_ENOMEM,
 * or pc_client_create's error; *out is NULL then. Loop thread. */
int cg_job_create(uv_loop_t *loop, const cg_job_opts *opts, cg_job **out);

/* Starts following the gateways and, once they are read, consuming. Errors: MG_ESTATE (started
 * or closing), MG_ENOMEM. Failures after this (registry unreadable, broker unreachable, gateway
 * down) are retried by the Job and logged. Loop thread. */
int cg_job_start(cg_job *j);

/* Closes the Job: timers and gateway links are closed, open batches and unacknowledged pushes
 * are dropped unacknowledged (the subscription delivers them again to the next Job), the client
 * is closed; then closed_cb(arg) runs (from the loop, never inside this call; may be NULL) and
 * the Job's memory is freed. The md_client may be closed only after closed_cb. Call it once,
 * started or not. Loop thread. */
void cg_job_close(cg_job *j, void (*closed_cb)(void *arg), void *arg);

/* Copies the Job's counters into *out. Loop thread. */
void cg_job_stats_get(const cg_job *j, cg_job_stats *out);

#endif
