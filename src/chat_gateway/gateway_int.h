/*
 * The chat gateway's private structures, shared by its files: gateway.c (connections, rooms,
 * buckets, queues), fanout.c (Job links and the fan-out of pushes), online.c (registration and
 * online counts in the metadata store) and resume.c (replaying what a reconnecting client
 * missed). Everything here runs on the gateway's loop.
 */
#ifndef MG_CHAT_GATEWAY_GATEWAY_INT_H
#define MG_CHAT_GATEWAY_GATEWAY_INT_H

#include "chat_gateway/auth.h"
#include "chat_gateway/gateway.h"
#include "chat_gateway/limits.h"
#include "chat_gateway/push.h"
#include "chat_gateway/ws.h"
#include "common/buf.h"
#include "common/freelist.h"
#include "common/list.h"
#include "common/listen.h"
#include "common/metrics.h"
#include "common/outq.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Why a connection was closed: the label of magnetar_chat_gateway_closed_total. */
enum {
    CG__REASON_PEER_CLOSED,
    CG__REASON_READ_ERROR,
    CG__REASON_WRITE_ERROR,
    CG__REASON_BAD_PACKET,
    CG__REASON_OVERSIZED,
    CG__REASON_NO_AUTH,
    CG__REASON_AUTH_REFUSED,
    CG__REASON_NOT_AUTH_FIRST,
    CG__REASON_UNKNOWN_OP,
    CG__REASON_BAD_WEBSOCKET,
    CG__REASON_BAD_HANDSHAKE,
    CG__REASON_IDLE,
    CG__REASON_SLOW_CONSUMER,
    CG__REASON_REPLACED,
    CG__REASON_RESUME_FAILED,
    CG__REASON_SHUTDOWN,
    CG__REASON_NO_MEMORY,
    CG__REASON_COUNT
};

enum { CG__TCP = 0, CG__WS = 1 };
enum { CG__HANDSHAKE, CG__AUTH, CG__LIVE, CG__RESUMING, CG__CLOSING };

typedef struct cg__room cg__room;
typedef struct cg__conn cg__conn;
typedef struct cg__resume cg__resume;

struct cg__room {
    cg__room *hnext; /* hash chain */
    uint32_t hash;
    uint32_t count;  /* members */
    mg_link members; /* cg__conn.room_link */
    mg_link dirty_link;
    bool announced; /* Job links were told it has members here */
    bool has_last;
    cg_position last; /* the last position delivered to this room (duplicates) */
    char name[];
};

struct cg__conn {
    uv_tcp_t tcp;
    cg_gateway *gw;
    mg_link wait_link;   /* gw->waiting or gw->live (invariant 1 of gateway.c) */
    mg_link room_link;   /* room->members */
    mg_link bucket_link; /* bucket->conns */
    cg__room *room;
    cg__conn *key_next; /* bucket key chain */
    char *key;
    uint32_t *accepts;
    cg__resume *resume; /* while RESUMING */
    cg_position floor;  /* after a resume: room messages at or before it were replayed */
    uint8_t *in;        /* the bytes of an incomplete packet or frame */
    int64_t mid;
    int64_t last_rx_ms;
    uint32_t key_hash;
    uint32_t in_len, in_cap;
    uint32_t q_off;   /* bytes of the first entry already written */
    uint32_t q_bytes; /* queued bytes not yet written */
    uint32_t ip4;     /* the peer's IPv4 address, network order (online ip_count) */
    uint32_t refs;    /* the handle, a write in flight, a handler running */
    uint16_t accept_count;
    uint16_t q_drop_mask; /* droppable entries, by ring index */
    uint8_t q_head, q_count, q_inflight;
    uint8_t kind, state, dialect, protover;
    uint8_t positions, accept_all, in_bucket, has_floor;
    cg_ws_conn ws; /* after the handshake */
    mg_buf *q[CG_QUEUE_SLOTS];
    char peer[24]; /* "a.b.c.d:port" for logs */
};

typedef struct cg__bucket {
    cg__conn **keys; /* hash table of connections by key (chained) */
    uint32_t key_cap, key_count;
    mg_link conns;
} cg__bucket;

/* The last position delivered per topic, for pushes that are not room pushes. */
typedef struct cg__stream {
    char topic[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    cg_position last;
} cg__stream;

/* A Job worker's link to the push port. */
typedef struct cg__link {
    uv_tcp_t tcp;
    cg_gateway *gw;
    mg_link link;
    cg_push_decoder dec;
    mg_outq out;
    int64_t last_rx_ms, last_tx_ms;
    uint32_t refs;
    bool hello, closing;
    char name[64];
    char peer[48];
} cg__link;

struct cg_gateway {
    uv_loop_t *loop;
    char bind[64];
    char advertised[64];
    char id[128];
    char *service_url;
    uint16_t ports[3]; /* tcp, ws, push */
    mg_listener *listeners[3];
    struct md_client *mdc;
    uint32_t topics;
    uint32_t auth_timeout_ms, idle_timeout_ms, body_bytes_max;
    uint32_t soft_bytes, hard_bytes;
    uint32_t connections_max;
    uint32_t online_interval_ms;
    uint8_t *rbuf; /* CG_READ_BUFFER_BYTES, every read of the loop */
    cg__bucket *buckets;
    uint32_t bucket_count;
    cg__room **room_table;
    uint32_t room_cap, room_count;
    mg_link dirty_rooms;
    cg__stream *streams;
    uint32_t stream_count;
    mg_link waiting; /* HANDSHAKE, AUTH: by accept time */
    mg_link live;    /* LIVE, RESUMING: by last packet */
    mg_link links;   /* cg__link */
    uint32_t link_count;
    uint32_t conn_count, live_count;
    uint32_t conns_by_kind[2];
    uint64_t key_counter;
    uint64_t writes_direct, dropped, packets_in;
    mg_freelist write_reqs;
    struct cg__msg *merge_msgs; /* CG_FANOUT_MERGE_MESSAGES_MAX, for merged room pushes */
    cg_auth auth_scratch;
    uv_timer_t sweep;
    uv_check_t check;
    bool started, closing;
    bool resume_enabled;
    uint32_t handles_open, listeners_open, conn_handles, link_handles, side_pending;
    void (*closed)(void *arg);
    void *closed_arg;
    /* online.c */
    void *online;
    /* resume.c */
    void *resume_env;
    /* metrics (NULL when the gateway has no registry) */
    mg_gauge *m_conns[2];
    mg_counter *m_accepted[2];
    mg_counter *m_closed[CG__REASON_COUNT];
    mg_counter *m_auth_ok[2];
    mg_counter *m_auth_refused, *m_heartbeats, *m_ignored_ops, *m_dropped, *m_delivered;
    mg_counter *m_duplicates, *m_pushes, *m_refused_full;
    mg_gauge *m_links;
};

/* gateway.c */
extern const cg_ws_config cg__ws_config;
const char *cg__reason_name(int reason);
cg__room *cg__room_find(cg_gateway *gw, const char *name);
/* Frees a room with no members (fanout.c, once Jobs were told). */
void cg__room_free(cg_gateway *gw, cg__room *r);
/* The connection holding key, or NULL. */
cg__conn *cg__key_find(cg_gateway *gw, const char *key);
int cg__conn_join(cg__conn *c, const char *room);
void cg__conn_leave(cg__conn *c);
void cg__conn_close(cg__conn *c, int reason);
bool cg__conn_send(cg__conn *c, mg_buf *frame, bool droppable);
bool cg__conn_reply(cg__conn *c, uint32_t op, uint16_t ver, uint32_t seq, const void *body,
                    size_t body_len);
bool cg__conn_send_raw(cg__conn *c, const void *bytes, size_t len);
uint32_t cg__room_online(cg_gateway *gw, const cg__room *r);
void cg__gateway_maybe_closed(cg_gateway *gw);

/* fanout.c */
void cg__on_link(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len);
void cg__links_sweep(cg_gateway *gw, int64_t now_ms);
void cg__links_close_all(cg_gateway *gw);
void cg__rooms_flush(uv_check_t *check);
struct Magnetar__Chat__ChatFrame;
void cg__link_send(cg__link *k, const struct Magnetar__Chat__ChatFrame *f);
/* One message as the fan-out sees it: body, op, position. */
typedef struct cg__msg {
    const uint8_t *body;
    size_t body_len;
    uint32_t op;
    cg_position pos;
} cg__msg;
/* Sends msgs to c alone, in c's form (resume.c: replayed messages and the ones held meanwhile). */
bool cg__deliver_to(cg__conn *c, const cg__msg *msgs, size_t count, bool room_batch);

/* online.c */
int cg__online_start(cg_gateway *gw);
void cg__online_stop(cg_gateway *gw);
uint32_t cg__online_remote(cg_gateway *gw, const char *room);

/* resume.c */
int cg__resume_env_start(cg_gateway *gw);
void cg__resume_env_stop(cg_gateway *gw);
void cg__resume_start(cg__conn *c, const cg_position *after, uint32_t seq);
/* Stops c's replay; with reply, the auth reply it had not sent yet goes out ("recovered":false). */
void cg__resume_cancel(cg__conn *c, bool reply);
/* A live push for c's room while c is RESUMING: held until the replay reaches it. */
void cg__resume_hold(cg__conn *c, const cg__msg *msgs, size_t count);

#endif
