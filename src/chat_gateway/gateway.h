/*
 * The chat gateway (GOIM's "comet"): it holds chat clients' connections over TCP and WebSocket,
 * puts each in a room, answers heartbeats with the room's online count, and fans out the
 * messages Job workers push to it (../shared/ARCHITECTURE.md §10, docs/chat_gateway.md).
 *
 * One gateway runs on one libuv loop, given by the caller (`magnetar gateway` runs it on its main
 * loop, `standalone` on a thread of its own named "cg-gateway"). Every function here is called
 * on that loop's thread. It listens on three ports: clients over TCP (3101) and WebSocket (3102,
 * path /sub), and Job workers on the push port (3109, proto/chat.proto). It registers itself in
 * the metadata store (/chat/gateways/<id>, ephemeral) so Jobs find it, and writes its rooms'
 * online counts to /chat/online/<id> every online_interval_ms.
 *
 * Life cycle: cg_gateway_create -> cg_gateway_start -> ... -> cg_gateway_close (-> closed
 * callback, after every handle closed and every connection was freed).
 */
#ifndef MG_CHAT_GATEWAY_GATEWAY_H
#define MG_CHAT_GATEWAY_GATEWAY_H

#include "chat_gateway/limits.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cg_gateway cg_gateway;
struct md_client;
struct mg_metrics;

typedef struct cg_gateway_opts {
    const char *bind_address;       /* NULL = "0.0.0.0" */
    const char *advertised_address; /* how Jobs reach the push port; NULL = "127.0.0.1" */
    uint16_t tcp_port;              /* 0 = an ephemeral port (tests) */
    uint16_t ws_port;
    uint16_t push_port;
    const char *id;            /* NULL = "<advertised_address>:<push port>" */
    struct md_client *mdc;     /* registration and online counts; NULL = neither */
    const char *service_url;   /* the broker, for resume reads; NULL = no resume */
    uint32_t topics;           /* chat topics (docs/chat_gateway.md); 0 = CG_CHAT_TOPICS_DEFAULT */
    uint32_t auth_timeout_ms;  /* 0 = CG_AUTH_TIMEOUT_MS_DEFAULT */
    uint32_t idle_timeout_ms;  /* 0 = CG_IDLE_TIMEOUT_MS_DEFAULT */
    uint32_t body_bytes_max;   /* a client packet's body; 0 = CG_PACKET_BODY_BYTES_DEFAULT */
    uint32_t queue_soft_bytes; /* 0 = CG_QUEUE_SOFT_BYTES_DEFAULT */
    uint32_t queue_hard_bytes; /* 0 = CG_QUEUE_HARD_BYTES_DEFAULT */
    uint32_t buckets;          /* 0 = CG_BUCKETS_DEFAULT */
    uint32_t connections_max;  /* 0 = CG_CONNECTIONS_MAX */
    uint32_t online_interval_ms; /* 0 = CG_ONLINE_INTERVAL_MS_DEFAULT */
    struct mg_metrics *metrics;  /* NULL = none; must outlive the gateway */
} cg_gateway_opts;

/* Creates a gateway on loop; nothing is bound until cg_gateway_start. opts is copied (strings
 * too). Errors: MG_EINVAL (a bad option), MG_ENOMEM. On error nothing is allocated. Loop thread. */
int cg_gateway_create(uv_loop_t *loop, const cg_gateway_opts *opts, cg_gateway **out);

/* Binds the three ports, starts accepting, and registers in the metadata store (asynchronously:
 * a failed registration is logged and retried). Errors (logged with the address): MG_EEXIST
 * (address in use), MG_EPERM, others through mg_err_from_errno(); the gateway must still be
 * closed. Loop thread, once. */
int cg_gateway_start(cg_gateway *gw);

/* The bound ports after a successful start (0 before). Loop thread. */
uint16_t cg_gateway_tcp_port(const cg_gateway *gw);
uint16_t cg_gateway_ws_port(const cg_gateway *gw);
uint16_t cg_gateway_push_port(const cg_gateway *gw);

/* Connections open now (clients, not Job links). Loop thread. */
uint32_t cg_gateway_connection_count(const cg_gateway *gw);

/* Stops listening, closes every connection and Job link, removes the registration, frees the
 * gateway once every handle has closed, then calls closed(arg) (may be NULL). gw is invalid on
 * return. Loop thread, once. */
void cg_gateway_close(cg_gateway *gw, void (*closed)(void *arg), void *arg);

#endif
