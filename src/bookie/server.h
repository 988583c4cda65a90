/*
 * The bookie RPC server: accepts connections on TCP (port 3181 by default), decodes the frames
 * of protocol.h, hands each request to the storage engine and answers, in completion order.
 *
 * One server belongs to one libuv loop, the storage engine's; every function is called on it.
 * Reads are served without a copy: a response references the entries' buffers and uv_write
 * sends them from there. Bad input harms only the connection it came on: an unknown op is
 * answered MG_ENOTSUP, missing fields or negative ids MG_EINVAL, a malformed frame closes that
 * connection (metric bookie_rpc_protocol_errors_total).
 *
 * Metrics (when opts.metrics is set): bookie_rpc_requests_total{op},
 * bookie_rpc_request_latency_ms{op} (summary, from decoding to queueing the response),
 * bookie_rpc_connections, bookie_rpc_protocol_errors_total.
 */
#ifndef MG_BOOKIE_SERVER_H
#define MG_BOOKIE_SERVER_H

#include "bookie/storage.h"
#include "common/metrics.h"

#include <stdint.h>
#include <uv.h>

typedef struct bk_server bk_server;

typedef struct bk_server_opts {
    const char *host;               /* numeric IPv4 or IPv6 address to bind; NULL = "0.0.0.0" */
    uint16_t port;                  /* 0 = ephemeral (see bk_server_port); the usual is
                                       BK_RPC_PORT_DEFAULT */
    uint32_t inflight_max_per_conn; /* 0 = BK_SERVER_INFLIGHT_DEFAULT (1000): a connection with
                                       this many requests in progress is not read from until
                                       one completes (backpressure); at most
                                       BK_SERVER_INFLIGHT_MAX */
    uint32_t range_bytes_max;       /* cap on READ_RANGE max_bytes; 0 = BK_RANGE_BYTES_MAX
                                       (16 MiB), which is also the largest accepted */
    mg_metrics *metrics;            /* NULL = no metrics; must outlive the server */
    uint32_t connections_max;       /* connections served at once; past it a new one is closed
                                       at accept (bookie_rpc_connections_refused_total); 0 =
                                       BK_SERVER_CONNECTIONS_MAX; the roles pass their share of
                                       the descriptor limit (mg_fd_budget) */
} bk_server_opts;

/* Binds, listens and starts accepting on loop. storage is borrowed: it must stay open until
 * bk_server_close's callback has run (requests in progress complete into it). On success *out
 * is the server, owned by the caller until bk_server_close. Returns MG_OK, MG_EINVAL (bad host
 * or option), MG_ENOMEM, or the converted bind/listen error (e.g. the port is taken); on error
 * nothing is left listening, but the loop must run once more to release the handle's memory. */
int bk_server_start(uv_loop_t *loop, bk_storage *storage, const bk_server_opts *opts,
                    bk_server **out);

/* The port listened on (the ephemeral one when opts.port was 0). */
uint16_t bk_server_port(const bk_server *s);

/* Stops listening and closes every connection (responses not yet written are dropped). Once
 * every request handed to the storage has called back and every handle is closed, closed(arg)
 * runs (may be NULL) and the server is freed. Call once. */
void bk_server_close(bk_server *s, void (*closed)(void *arg), void *arg);

#endif
