/*
 * Internals of the C Pulsar client (client.h), shared by its files:
 *
 *   client.c    the client: options, service URL, the timer heap, housekeeping (request and
 *               send timeouts, keep-alive), the id map, message ids, close
 *   conn.c      connections: the pool keyed by "host:port", CONNECT/CONNECTED, frame reading,
 *               requests by id, PING/PONG, dispatch of frames to producers and consumers
 *   part.c      lookups (LOOKUP, PARTITIONED_METADATA) and the life cycle shared by every
 *               producer and consumer of one (partition) topic: lookup, connect, register,
 *               reconnect with backoff
 *   handle.c    the life cycle shared by every pc_producer and pc_consumer: partitioned
 *               metadata with backoff, making and starting the parts, creation, closing the
 *               parts, the deferred free, client close
 *   producer.c  producers: batching, compression, pending limits, receipts, resends
 *   consumer.c  consumers and readers: flow permits, delivery, acks, nacks, seek
 *
 * OBJECTS
 *   A pc_producer or pc_consumer (the "parent" the application holds) owns one part per
 *   partition (one part, partition -1, for a topic that is not partitioned). A part is a
 *   producer or consumer registered with one broker: the unit that connects, reconnects and
 *   receives frames. Parts have client-wide unique ids (producer_id / consumer_id on the wire),
 *   found through the client's id map when a frame names them.
 *   As libuv's handle types all begin with the same fields, both levels begin with a shared
 *   struct: a pc_producer or pc_consumer with a pc__handle, a pc__prod or pc__cons with a
 *   pc__part. The shared life cycles (handle.c, part.c) work on those; the type-specific steps
 *   come from a small table of functions (pc__handle_ops, pc__part_ops).
 *
 * TIMERS
 *   One uv_timer per client drives a min-heap of pc__timer nodes embedded in the objects, so no
 *   object but a connection owns a libuv handle and everything else is freed synchronously. A
 *   node is registered (its heap slot reserved, which may fail with MG_ENOMEM) when its object
 *   is created, so starting it never fails.
 *
 * REENTRANCY RULES (why nothing is freed in the middle of a call)
 *   1. Application callbacks run only from libuv callbacks (a read, a timer, a close), never
 *      inside an API call: work an API call must report is deferred to a zero-delay timer.
 *   2. Objects are freed only from a timer callback (a deferred free) or a close callback, so
 *      an object that called the application is still valid when the call returns: it checks
 *      its state then (closing, paused, queue cleared) before going on.
 *   3. A connection is closed through a deferred step as well (pc__conn_close), so frame
 *      processing and writes never see their connection vanish under them.
 */
#ifndef MG_CLIENT_CLIENT_INT_H
#define MG_CLIENT_CLIENT_INT_H

#include "client/limits.h"
#include "pulsar/limits.h"
#include "pulsar/wire.h"
#include "client/client.h"
#include "proto/PulsarApi.pb-c.h"
#include "common/buf.h"
#include "common/list.h"
#include "common/outq.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define PC__T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define PC__ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

/* Protocol version this client speaks (REFERENCE.md §1: v19 is the newest common one). */
#define PC__PROTOCOL_VERSION 19

typedef struct pc__conn pc__conn;
typedef struct pc__part pc__part;
typedef struct pc__handle pc__handle;
typedef struct pc__prod pc__prod;
typedef struct pc__cons pc__cons;

/* --- timers (client.c) ---------------------------------------------------------------------- */

typedef struct pc__timer pc__timer;
struct pc__timer {
    uint64_t due_ms;     /* uv_now() time it fires at */
    uint32_t heap_index; /* UINT32_MAX when not armed */
    bool registered;
    void (*cb)(pc__timer *t);
};

/* Registers t (reserving its heap slot): MG_OK or MG_ENOMEM. */
int pc__timer_register(pc_client *c, pc__timer *t, void (*cb)(pc__timer *t));
/* Stops and unregisters t (a no-op when it was never registered). */
void pc__timer_unregister(pc_client *c, pc__timer *t);
/* Arms t delay_ms from now (re-arms an armed one). 0 = at the next turn of the loop. */
void pc__timer_start(pc_client *c, pc__timer *t, uint64_t delay_ms);
/* Arms t at due_ms unless it is armed earlier already. */
void pc__timer_start_by(pc_client *c, pc__timer *t, uint64_t due_ms);
void pc__timer_stop(pc_client *c, pc__timer *t);
static inline bool pc__timer_armed(const pc__timer *t)
{
    return t->heap_index != UINT32_MAX;
}

/* --- requests and connections (conn.c) ---------------------------------------------------- */

typedef struct pc__req pc__req;
/* status: MG_OK with the answer; MG_EPERM with an ERROR answer (cmd->error); MG_ETIMEDOUT
 * (cmd NULL); MG_ECONNECTION (the connection was lost; cmd NULL); MG_ECLOSED (client closing).
 * The request is freed after the callback returns. */
typedef void (*pc__req_cb)(pc__req *r, int status, const Magnetar__Pulsar__BaseCommand *cmd);
struct pc__req {
    mg_link link; /* in its connection's list, in deadline order */
    pc__conn *conn;
    uint64_t request_id;
    uint64_t deadline_ms;
    pc__req_cb cb;
    void *arg;
};

/* Somebody waiting for a connection to become ready. */
typedef struct pc__wait pc__wait;
struct pc__wait {
    mg_link link;
    pc__conn *conn; /* NULL when not waiting */
    /* MG_OK with the ready connection, or the error that closed it (conn NULL). */
    void (*cb)(pc__wait *w, int status, pc__conn *conn);
};

typedef enum pc__conn_state {
    PC__CONN_RESOLVING = 0,
    PC__CONN_CONNECTING,
    PC__CONN_HANDSHAKE, /* CONNECT sent */
    PC__CONN_READY,
    PC__CONN_CLOSING,
} pc__conn_state;

struct pc__conn {
    pc_client *c;
    mg_link link; /* client's pool */
    char addr[PC_ADDR_BYTES_MAX + 1];
    char host[PC_ADDR_BYTES_MAX + 1];
    char port[8];
    pc__conn_state state;
    struct sockaddr_storage addrs[PC_RESOLVED_ADDRS_MAX];
    uint32_t addr_count;
    uint32_t addr_next;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai_req;
    bool tcp_open;   /* initialised and not yet closed */
    bool gai_active; /* a getaddrinfo not yet called back */
    uint32_t handles_open;
    mg_outq out;
    mg_buf *rbuf; /* receive buffer: bytes [rpos, len) not parsed yet */
    size_t rpos;
    size_t rwant;
    uint32_t max_message_size;
    int32_t protocol_version;
    uint64_t connect_deadline_ms;
    uint64_t last_in_ms;
    bool ping_sent;
    mg_link reqs;
    uint32_t req_count;
    mg_link waiters;
    mg_link parts; /* producers and consumers registered (or registering) on it */
    pc__timer close_timer;
    int close_status;
    char close_reason[PC_ERROR_TEXT_BYTES_MAX];
};

/* The ready connection to addr ("host:port"), or MG_EAGAIN with w queued to hear when it is
 * (or fails). Errors: MG_ELIMIT (pool full), MG_ENOMEM, MG_EINVAL (bad address). */
int pc__conn_get(pc_client *c, const char *addr, pc__wait *w, pc__conn **ready);
void pc__wait_cancel(pc__wait *w);
/* Encodes and queues a command (no payload) and flushes. MG_ECLOSED when closing; errors close
 * the connection (deferred). */
int pc__conn_send_cmd(pc__conn *conn, const Magnetar__Pulsar__BaseCommand *cmd);
/* Queues slices (a SEND frame: head and payload) without flushing; pc__conn_flush after. */
int pc__conn_queue(pc__conn *conn, const mg_slice *slices, size_t count);
void pc__conn_flush(pc__conn *conn);
/* Sends cmd, which carries request_id, and waits for its answer (at most operation_timeout_ms).
 * *out (may be NULL) names the request for pc__req_cancel. Errors (nothing sent, cb never
 * called): MG_ECLOSED, MG_ELIMIT (too many requests), MG_ENOMEM, encoding errors. */
int pc__conn_request(pc__conn *conn, const Magnetar__Pulsar__BaseCommand *cmd, uint64_t request_id,
                     pc__req_cb cb, void *arg, pc__req **out);
/* Forgets a request: its callback will not be called. */
void pc__req_cancel(pc__req *r);
/* Closes the connection at the next turn of the loop: waiters, requests and parts hear of it
 * then. status: MG_ECONNECTION (lost), MG_ETIMEDOUT, MG_EPROTO, MG_EPERM... */
void pc__conn_close(pc__conn *conn, int status, const char *reason);
/* Fails requests past their deadline, pings idle connections, drops silent ones. */
void pc__conn_housekeeping(pc__conn *conn, uint64_t now_ms);
/* Immediately closes the handles (client close); the memory goes in the close callbacks. */
void pc__conn_abort(pc__conn *conn);
void pc__conn_attach(pc__conn *conn, pc__part *p);
void pc__conn_detach(pc__part *p);

/* --- lookups (part.c) ----------------------------------------------------------------------- */

typedef struct pc__lookup pc__lookup;
struct pc__lookup {
    pc_client *c;
    bool partitioned; /* PARTITIONED_METADATA instead of LOOKUP */
    bool active;
    char topic[MG_PULSAR_TOPIC_BYTES_MAX + 1];
    char target[PC_ADDR_BYTES_MAX + 1];
    bool authoritative;
    uint32_t redirects;
    pc__wait wait;
    pc__req *req;
    /* status: MG_OK (result below), MG_EPERM (Failed: the text is in pc_last_error),
     * MG_ECONNECTION, MG_ETIMEDOUT, MG_ELIMIT (too many redirects), MG_EPROTO. Fatal tells
     * whether retrying is pointless. */
    void (*cb)(pc__lookup *l, int status, bool fatal);
    char broker[PC_ADDR_BYTES_MAX + 1]; /* LOOKUP: the owner's "host:port" */
    uint32_t partitions;                /* PARTITIONED_METADATA: 0 = not partitioned */
};

void pc__lookup_init(pc__lookup *l, pc_client *c, bool partitioned,
                     void (*cb)(pc__lookup *l, int status, bool fatal));
/* Starts (or restarts) a lookup of topic on the service URL. Errors returned (MG_ENOMEM,
 * MG_ELIMIT...) mean the callback will not run; otherwise it runs once, possibly inside this
 * call when the request cannot even be sent, so callers start lookups from timer callbacks. */
int pc__lookup_start(pc__lookup *l, const char *topic);
void pc__lookup_cancel(pc__lookup *l);

/* "pulsar://host:port" -> "host:port" in dst. MG_EINVAL for anything else. */
int pc__parse_broker_url(const char *url, char *dst, size_t cap);

/* --- parts (part.c) --------------------------------------------------------------------------
 *
 *   PART STATES
 *                 start                lookup done          connection ready
 *     INIT ------------------> LOOKUP -------------> CONNECTING -------------> REGISTERING
 *                                ^                                                 |
 *                                | backoff elapsed                 PRODUCER_SUCCESS | SUCCESS
 *                                |                                                 v
 *                             BACKOFF <---- failure (retriable), connection lost --- READY
 *                                                   broker's CLOSE_*
 *   A failure before the first READY that is not retriable, or past the creation deadline,
 *   ends the part (CLOSED) and is reported to the parent through ops->created. pc__part_stop
 *   moves any state to CLOSED without callbacks.
 */

typedef enum pc__part_state {
    PC__PART_INIT = 0,
    PC__PART_LOOKUP,
    PC__PART_CONNECTING,
    PC__PART_REGISTERING,
    PC__PART_READY,
    PC__PART_BACKOFF,
    PC__PART_CLOSED,
} pc__part_state;

typedef enum pc__part_kind {
    PC__KIND_PRODUCER = 1,
    PC__KIND_CONSUMER = 2,
} pc__part_kind;

typedef struct pc__part_ops {
    /* Sends PRODUCER / SUBSCRIBE on p->conn (state REGISTERING) and keeps the request in
     * p->req; its answer ends in pc__part_ready or pc__part_failed. Returns an error to fail
     * at once (retried). */
    int (*register_on)(pc__part *p);
    /* The part left its connection (lost, closed by the broker, failed): forget what was in
     * flight on it. */
    void (*detached)(pc__part *p);
    /* The first registration ended: MG_OK, or the error that ends the part. */
    void (*created)(pc__part *p, int status);
} pc__part_ops;

struct pc__part {
    pc_client *c;
    pc__part_kind kind;
    const pc__part_ops *ops;
    uint64_t id;
    int32_t partition; /* -1: not a partition */
    char topic[MG_PULSAR_TOPIC_BYTES_MAX + 1];
    pc__part_state state;
    pc__conn *conn; /* REGISTERING and READY */
    mg_link conn_link;
    pc__lookup lookup;
    pc__wait wait;
    pc__req *req; /* PRODUCER / SUBSCRIBE in flight */
    pc__timer backoff_timer;
    uint32_t backoff_ms;
    uint64_t create_deadline_ms;
    bool created; /* READY at least once */
    int last_status;
    pc__handle *handle; /* the producer or consumer it belongs to */
    pc__req *close_req; /* CLOSE_PRODUCER / CLOSE_CONSUMER of its handle's close, in flight */
};

/* Sets the part up (id, topic, timers registered): MG_OK, MG_ENOMEM, MG_ELIMIT (id map). */
int pc__part_init(pc__part *p, pc_client *c, pc__part_kind kind, const pc__part_ops *ops,
                  const char *topic, int32_t partition);
/* Allocates size bytes (a pc__prod or pc__cons, whose first member is the part) and initialises
 * the part for partition i of topic (partitions 0: the topic itself). Freed by its owner.
 * MG_EINVAL (name), MG_ENOMEM, pc__part_init's errors. */
int pc__part_new(pc_client *c, size_t size, pc__part_kind kind, const pc__part_ops *ops,
                 const char *topic, uint32_t partitions, uint32_t i, pc__part **out);
/* Releases what pc__part_init took (after pc__part_stop). */
void pc__part_fini(pc__part *p);
/* Starts the first lookup; created() runs later (never inside this call). */
void pc__part_start(pc__part *p);
/* The registration succeeded: READY, backoff reset, created(MG_OK) the first time. */
/* The topic of part i of a handle on topic with `partitions` partitions (0: not partitioned):
 * topic itself, or its "-partition-i" name written into *scratch. MG_EINVAL (bad name). */
int pc__part_topic(const char *topic, uint32_t partitions, uint32_t i, pw_topic_name *scratch,
                   const char **out);
void pc__part_ready(pc__part *p);
/* The registration failed or the part must reconnect: detach, then retry after the backoff
 * or, before the first READY only, end (not retriable, or past the creation deadline).
 * A part the broker closed comes back after the minimum backoff (pc__part_reconnect). */
void pc__part_failed(pc__part *p, int status, bool retriable);
/* The answer to PRODUCER / SUBSCRIBE (pc__req_cb's status and cmd): true when it is
 * success_type (the caller goes on to pc__part_ready); otherwise the part failed (a refusal
 * records the broker's text for pc_last_error) and false. */
bool pc__part_register_answered(pc__part *p, int status, const Magnetar__Pulsar__BaseCommand *cmd,
                                int success_type);
/* The broker closed the part (CLOSE_PRODUCER / CLOSE_CONSUMER): it looks its topic up again
 * after the minimum backoff. */
void pc__part_reconnect(pc__part *p);
/* The connection is gone (called by conn.c for every attached part). */
void pc__part_conn_lost(pc__part *p, int status);
/* Stops everything in flight; state CLOSED; no callback. */
void pc__part_stop(pc__part *p);
/* As pc__part_stop, telling the broker first (CLOSE_PRODUCER / CLOSE_CONSUMER, answer ignored)
 * when the part is registered: for parts given up without a close of their own (a partitioned
 * producer or consumer whose creation failed on another partition). */
void pc__part_release(pc__part *p);
/* Sends CLOSE_PRODUCER / CLOSE_CONSUMER for p (READY) with a new request id, answered to cb.
 * pc__conn_request's errors. */
int pc__part_close_request(pc__part *p, pc__req_cb cb, void *arg, pc__req **out);
/* Whether an ERROR's ServerError is worth retrying (else the broker refused for good). */
bool pc__server_error_retriable(int server_error);
/* Records the broker's text of a refusal for pc_last_error. */
void pc__set_last_error(pc_client *c, const char *text);

/* --- handles (handle.c) -----------------------------------------------------------------------
 *
 *   HANDLE STATES (a pc_producer or pc_consumer)
 *              partitioned metadata, parts made           every part READY
 *     META ---------------------------------> CREATING -----------------------> READY
 *       |  (retried with backoff until             |                              |
 *       |   operation_timeout_ms)                  | a part failed                | close,
 *       | fatal, or past the deadline              |                              | unsubscribe
 *       v                                          v                              v
 *     DEAD <------------------------------------------------------------------ CLOSING
 *   A creation failure reports through ops->report_created(status) and goes to DEAD. DEAD is
 *   freed from the handle's zero-delay timer (ops->dead). Client close (pc__handles_abort)
 *   takes any state to DEAD and frees at once.
 */

typedef enum pc__handle_state {
    PC__HANDLE_META = 0,
    PC__HANDLE_CREATING,
    PC__HANDLE_READY,
    PC__HANDLE_CLOSING,
    PC__HANDLE_DEAD,
} pc__handle_state;

typedef struct pc__handle_ops {
    pc__part_kind part_kind;
    size_t part_size; /* sizeof(pc__prod) or sizeof(pc__cons): the part comes first in it */
    const pc__part_ops *part_ops;
    /* Sets up a part just made and put in h->parts (its own fields and timers): MG_OK or
     * MG_ENOMEM (the handle's creation fails; part_free frees it). */
    int (*part_setup)(pc__handle *h, pc__part *part);
    /* Frees a part (pc__part_fini, its own timers and memory). */
    void (*part_free)(pc__part *part);
    /* Stops a part when the handle dies: release tells the broker (pc__part_release), except
     * on client close. */
    void (*part_stop)(pc__part *part, bool release);
    /* Before its CLOSE goes (or the part stops, when it is not READY): what the part sends or
     * drops first. NULL: nothing. */
    void (*part_closing)(pc__part *part);
    /* The application's creation callback: status MG_OK (the handle), or the error (NULL). */
    void (*report_created)(pc__handle *h, int status);
    /* Every part answered its CLOSE or stopped: the handle dies (pc__handle_kill). */
    void (*closed)(pc__handle *h);
    /* DEAD, from the zero-delay timer: fails what it holds, pc__handle_free, reports. */
    void (*dead)(pc__handle *h);
    /* Client close, after the parts stopped and the creation was reported: fails what it
     * holds, pc__handle_free, reports; was is the state before the abort. */
    void (*aborted)(pc__handle *h, pc__handle_state was);
} pc__handle_ops;

struct pc__handle {
    pc_client *c;
    const pc__handle_ops *ops;
    mg_link link; /* the client's producers or consumers */
    pc__handle_state state;
    char topic[MG_PULSAR_TOPIC_BYTES_MAX + 1];
    pc__lookup meta; /* PARTITIONED_METADATA */
    pc__timer timer; /* META start and retries; the deferred free when DEAD */
    uint32_t meta_backoff_ms;
    uint64_t create_deadline_ms;
    bool create_reported;
    uint32_t nparts;
    pc__part **parts; /* nparts of them, made in META */
    uint32_t parts_created;
    uint32_t close_waiting; /* CLOSE_* answers awaited */
    int final_status;       /* what the handle reports when DEAD */
};

/* Checks what creating a handle on topic needs: MG_ECLOSED (client closing), MG_EINVAL (bad
 * topic name, explained in pc_last_error); *tn is the parsed name on MG_OK. */
int pc__handle_check(pc_client *c, const char *topic, pw_topic_name *tn);
/* Sets up h (the first member of an object allocated zeroed) on topic, a full name, and starts
 * its life cycle: h joins list (the client's producers or consumers), and the partitioned
 * metadata lookup starts from a zero-delay timer. MG_ENOMEM (nothing to undo but the object's
 * memory). */
int pc__handle_start(pc__handle *h, pc_client *c, const pc__handle_ops *ops, const char *topic,
                     mg_link *list);
/* Frees the parts (ops->part_free), the timer, unlinks h and frees the object h begins. */
void pc__handle_free(pc__handle *h);
/* DEAD with status: the lookup and every part stopped (released to the broker); the
 * zero-delay timer runs ops->dead. */
void pc__handle_kill(pc__handle *h, int status);
/* The first registration of a part ended (it serves as pc__part_ops.created): its handle is
 * READY and ops->report_created(MG_OK) runs once every part is created; the handle's creation
 * fails on the first error. */
void pc__handle_part_created(pc__part *part, int status);
/* Closes every part: ops->part_closing, then CLOSE_* on each READY one, the others stopped;
 * ops->closed when all answered or left (at once when none was sent). */
void pc__handle_close_parts(pc__handle *h);
/* Client close: every handle of list (the client's producers or consumers) fails what it holds
 * with MG_ECLOSED (callbacks in order), reports its pending creation, close or unsubscribe, and
 * is freed (no round trips). */
void pc__handles_abort(mg_link *list);

/* --- the client (client.c) -------------------------------------------------------------------- */

struct pc_client {
    uv_loop_t *loop;
    uv_timer_t uv_timer;
    bool uv_timer_open;
    pc__timer **heap;
    uint32_t heap_count;
    uint32_t heap_cap; /* >= registered timers */
    uint32_t timers_registered;
    pc__timer housekeeping;
    uint32_t op_timeout_ms;
    uint32_t keepalive_ms;
    char *auth_method_name;
    char *auth_data;
    char *client_version;
    char service[PC_SERVICE_HOSTS_MAX][PC_ADDR_BYTES_MAX + 1];
    uint32_t service_count;
    uint32_t service_next;
    mg_link conns;
    uint32_t conn_count;
    mg_link producers; /* pc_producer, live ones */
    mg_link consumers; /* pc_consumer */
    pc__part **idmap;  /* open addressing by id; NULL = empty */
    size_t idmap_cap;
    size_t idmap_count;
    uint64_t next_id;
    uint64_t next_request_id;
    uint64_t rng;
    char last_error[PC_ERROR_TEXT_BYTES_MAX];
    bool closing;
    bool closed_done;
    uint32_t handles_open; /* uv handles of the client and its connections */
    void (*closed_cb)(void *arg);
    void *closed_arg;
    pc__timer close_timer;
};

/* The loop's time: as of this loop turn (pc__now_ms), or brought up to date for a call from the
 * application (pc__call_now_ms). */
uint64_t pc__now_ms(const pc_client *c);
uint64_t pc__call_now_ms(pc_client *c);
uint64_t pc__next_request_id(pc_client *c);
uint64_t pc__random(pc_client *c);
/* The client's service addresses, round robin; pc__service_failed moves past one. */
const char *pc__service_addr(pc_client *c);
void pc__service_failed(pc_client *c, const char *addr);
int pc__idmap_put(pc_client *c, pc__part *p);
void pc__idmap_del(pc_client *c, pc__part *p);
pc__part *pc__idmap_get(pc_client *c, uint64_t id);
/* Arms housekeeping (idempotent) while there is anything to watch. */
void pc__housekeeping_arm(pc_client *c);
/* Called when a connection's last handle closed during client close. */
void pc__client_maybe_freed(pc_client *c);
/* Backoff with jitter: the delay to wait now, and *backoff_ms doubled for the next time. */
uint32_t pc__backoff_next(pc_client *c, uint32_t *backoff_ms);

/* --- producers (producer.c) and consumers (consumer.c) ------------------------------------------
 * Frames for a part, dispatched by conn.c after checking that the part is attached to that
 * connection. */
void pc__prod_on_frame(pc__part *p, const Magnetar__Pulsar__BaseCommand *cmd);
void pc__cons_on_frame(pc__part *p, const Magnetar__Pulsar__BaseCommand *cmd);
/* A MESSAGE: the payload is buf[off, off + len) (the connection's receive buffer; the consumer
 * takes a reference when it keeps it). */
void pc__cons_on_message(pc__part *p, const Magnetar__Pulsar__CommandMessage *m, mg_buf *buf,
                         size_t off, size_t len);
/* Send timeouts of every producer (housekeeping). */
void pc__producers_housekeeping(pc_client *c, uint64_t now_ms);
bool pc__producers_any(const pc_client *c);

#endif
