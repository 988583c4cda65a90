/*
 * Listening sockets that survive running out of file descriptors, and the process's descriptor
 * budget.
 *
 * WHY NOT uv_listen. When accept(2) fails with EMFILE or ENFILE, libuv closes a spare
 * descriptor, accepts and drops the waiting connections, and reopens the spare; if the spare
 * cannot be reopened (another thread took the descriptor), it calls the connection callback
 * with the error in a loop that only ends when the listener is closed. libmicrohttpd busy-waits
 * on its listen socket in the same situation ("Hit process or system resource limit at FIRST
 * connection ... Will try busy waiting"). An mg_listener owns the listening socket and accepts
 * itself (uv_poll_t on the socket, accept4 in a bounded batch); when accept fails for lack of
 * descriptors or memory it stops polling the socket for a delay that starts at
 * MG_LISTEN_BACKOFF_MS_MIN and doubles up to MG_LISTEN_BACKOFF_MS_MAX, resetting after a
 * successful accept. Waiting clients stay in the kernel's backlog meanwhile; nothing spins and
 * the warning goes through the rate-limited log.
 *
 * DESCRIPTOR BUDGET. mg_fd_limit_raise() raises RLIMIT_NOFILE's soft limit to the hard limit at
 * start (as nginx's worker_rlimit_nofile and most servers do) and logs the result once.
 * mg_fd_budget() splits that limit into a reserve (files, internal sockets, the admin port) and
 * what the servers' connections may take; each server refuses connections past its share, so
 * the reserve is still there for the health endpoint when clients open every socket they can.
 *
 * Threading: a listener lives on one loop and every call is made on that loop's thread; the
 * accept callback runs there. The fd-limit functions may be called from any thread.
 */
#ifndef MG_COMMON_LISTEN_H
#define MG_COMMON_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct mg_listener mg_listener;

/* Called with a newly accepted socket (non-blocking, close-on-exec), which the callee owns from
 * then on (it must close it, or hand it to uv_tcp_open). addr is the peer's address. */
typedef void (*mg_listener_accept_fn)(void *arg, int fd, const struct sockaddr *addr,
                                      socklen_t addr_len);

/* Creates a listening TCP socket (non-blocking, close-on-exec, SO_REUSEADDR) bound to
 * host:port (a numeric IPv4 or IPv6 address; NULL = "0.0.0.0"; port 0 = ephemeral).
 * [in] what: the name used in error messages, e.g. "broker".
 * [out] fd_out: the socket; port_out (may be NULL): the bound port.
 * Errors (logged with the address): MG_EINVAL (host is not an address), MG_EEXIST (address in
 * use), MG_EPERM, others through mg_err_from_errno(). */
int mg_listen_socket(const char *what, const char *host, uint16_t port, int backlog, int *fd_out,
                     uint16_t *port_out);

/* Starts accepting on the listening socket fd, which the listener owns from then on (also on
 * error: it is closed). name (copied, at most 31 bytes kept) appears in log lines. fn(arg, ...)
 * is called for each accepted socket. Loop thread. Errors: MG_ENOMEM, a libuv error converted
 * (polling the socket failed). On error *out is untouched and nothing needs closing. */
int mg_listener_start(uv_loop_t *loop, int fd, const char *name, mg_listener_accept_fn fn,
                      void *arg, mg_listener **out);

/* Sets fn(arg), called when accept fails for lack of descriptors, before accepting pauses: it
 * may give descriptors back (the HTTP server closes its longest idle connection) and returns
 * true when it did; the pause is then the shortest, so the next client gets the freed
 * descriptor. The arg is the one given to mg_listener_start. Loop thread. */
void mg_listener_on_exhausted(mg_listener *l, bool (*fn)(void *arg));

/* Writes addr as "a.b.c.d:port" (IPv4) or "v6addr:port" (IPv6) into dst, which has room for cap
 * bytes (MG_SOCKADDR_TEXT_BYTES always suffices), NUL-terminated and cut to fit; "?" for NULL or
 * another family. For log lines naming a peer. Any thread. */
#define MG_SOCKADDR_TEXT_BYTES 56
void mg_sockaddr_format(const struct sockaddr *addr, char *dst, size_t cap);

/* The bound port. Loop thread. */
uint16_t mg_listener_port(const mg_listener *l);

/* How many times accepting paused for lack of descriptors or memory. Loop thread. */
uint64_t mg_listener_pause_count(const mg_listener *l);

/* Stops accepting, closes the socket and frees the listener once its handles have closed, then
 * calls closed_fn(arg) (may be NULL). l is invalid on return. Loop thread, once. */
void mg_listener_close(mg_listener *l, void (*closed_fn)(void *arg), void *arg);

/* Raises the soft RLIMIT_NOFILE to the hard limit (capped at MG_FD_LIMIT_MAX) and logs the
 * limit in force once at info level ("descriptors: limit N"). Returns the soft limit now in
 * force. A refusal is logged as a warning and the current limit returned. Any thread; called
 * once at start by every role. */
uint64_t mg_fd_limit_raise(void);

/* The soft RLIMIT_NOFILE now in force (MG_FD_LIMIT_MAX when unlimited or larger). */
uint64_t mg_fd_limit(void);

/* How a descriptor limit is shared out. */
typedef struct mg_fd_shares {
    uint64_t limit;      /* the soft limit it was computed from */
    uint64_t reserve;    /* kept for files, internal sockets and the admin port */
    uint32_t http_max;   /* admin HTTP connections */
    uint32_t bookie_max; /* bookie RPC connections (0 when the process has no bookie) */
    uint32_t broker_max; /* Pulsar protocol connections (0 when it has no broker) */
} mg_fd_shares;

/* Shares limit out: reserve = limit / 4 within [MG_FD_RESERVE_MIN, MG_FD_RESERVE_MAX]; of the
 * rest, the HTTP server gets an eighth (at least MG_FD_HTTP_MIN, at most
 * MG_HTTP_CONNECTIONS_MAX), a bookie sharing the process with a broker an eighth (a bookie
 * alone: all of it), and the broker what remains; each capped at its module's maximum. */
void mg_fd_budget(uint64_t limit, int has_broker, int has_bookie, mg_fd_shares *out);

#endif
