/*
 * HTTP/1.1 server for Prometheus `/metrics` and the admin REST API (Pulsar-style
 * `/admin/v2/...`), running on one libuv loop.
 *
 * Why a library: the HTTP itself (request parsing, keep-alive, pipelining, chunked bodies,
 * 100-continue, header limits, idle timeouts) comes from GNU libmicrohttpd (MHD, Debian
 * libmicrohttpd-dev 0.9.75), a maintained and widely deployed HTTP/1.1 server library, instead of
 * a parser written here: Debian 12 packages no llhttp, and nodejs/http-parser is archived. This
 * module adds what MHD lacks: a route table with `{name}` path parameters, request bodies handed
 * over whole, JSON error replies in the shape Pulsar's admin API uses, and replies that may come
 * later than the handler's return.
 *
 * Threading: MHD runs WITHOUT a thread of its own. Every handler runs on the loop's thread, and
 * every function here must be called on that thread (the loop given to mg_http_server_create),
 * as everywhere in Magnetar: one libuv loop per thread, state touched only from its loop. The
 * integration is described in http.c.
 *
 * Lifetime of a server:   create --route*--> start --> ... --> close --(close callbacks)--> freed,
 * then closed_fn(arg). close may also follow create or a failed start directly.
 *
 * Lifetime of a request: the handler receives a request once its whole body has arrived. The
 * handler (or code it hands the request to) must call mg_http_reply() exactly once, either
 * before returning or later on the loop's thread; after the reply the request is invalid. Until
 * the reply, every accessor below may be used, even if the client has gone away or the server
 * was closed meanwhile (then the reply frees the request and sends nothing).
 */
#ifndef MG_COMMON_HTTP_H
#define MG_COMMON_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct mg_http_server mg_http_server;
typedef struct mg_http_request mg_http_request;

/* Called on the loop's thread with a complete request. req belongs to the handler until it is
 * passed to mg_http_reply() (now or later). arg is the pointer given to mg_http_server_route(). */
typedef void (*mg_http_handler_fn)(mg_http_request *req, void *arg);

typedef struct mg_http_options {
    const char *host;           /* bind address, e.g. "0.0.0.0" or "127.0.0.1"; NULL = all */
    uint16_t port;              /* 0 = an ephemeral port (tests) */
    size_t body_bytes_max;      /* 0 = MG_HTTP_BODY_BYTES_MAX */
    unsigned connections_max;   /* 0 = MG_HTTP_CONNECTIONS_MAX; past it the connection idle the
                                   longest is closed to make room (see http.c) */
    unsigned timeout_s;         /* idle connection timeout; 0 = MG_HTTP_TIMEOUT_S */
    struct mg_metrics *metrics; /* NULL = none; else magnetar_http_connections_closed_idle_total
                                   (idle connections closed to make room at connections_max) and
                                   magnetar_http_connections_refused_total (closed at accept:
                                   every slot busy) are registered in it; must outlive the
                                   server */
} mg_http_options;

/* Creates a server that will run on loop. Nothing is bound until mg_http_server_start().
 * [in] loop: the loop every callback runs on; must outlive the server.
 * [in] opts: copied (host included); NULL means all defaults.
 * [out] out: the server, owned by the caller; release with mg_http_server_close() (always, even
 *            if start was never called or failed), then run the loop until closed_fn.
 * Loop thread. Errors: MG_EINVAL (host longer than MG_HTTP_HOST_BYTES_MAX), MG_ENOMEM. On error
 * nothing is allocated and *out is untouched. */
int mg_http_server_create(uv_loop_t *loop, const mg_http_options *opts, mg_http_server **out);

/* Adds a route, tried in registration order. method is an HTTP method ("GET", case-sensitive)
 * or "*" for any. pattern starts with '/', and is made of literal segments and `{name}`
 * segments (each matching exactly one non-empty path segment, percent-decoded), optionally
 * ending with `{name*}` (the rest of the path: one or more non-empty segments, decoded, with
 * their '/' kept). "/" alone matches the root. Empty segments ("//", a trailing '/') are not
 * allowed in patterns and never match. Both strings are copied; fn(req, arg) is called for a
 * matching request.
 * Loop thread, before start. Errors: MG_EINVAL (bad method or pattern, duplicate parameter
 * name), MG_ELIMIT (more than MG_HTTP_ROUTES_MAX routes, MG_HTTP_PATH_PARAMS_MAX parameters or
 * MG_HTTP_PATH_SEGMENTS_MAX segments), MG_ESTATE (already started or closing), MG_ENOMEM. */
int mg_http_server_route(mg_http_server *srv, const char *method, const char *pattern,
                         mg_http_handler_fn fn, void *arg);

/* Binds opts->host:opts->port, listens, and starts serving on the loop.
 * Loop thread, once. Errors (logged with the address): MG_EEXIST when the address is already in
 * use, MG_EPERM (privileged port), other bind/listen errors through mg_err_from_errno(),
 * MG_EINVAL (host is not an address), MG_ESYS (MHD refused to start). After an error the server
 * must still be closed. */
int mg_http_server_start(mg_http_server *srv);

/* The bound port (useful with port 0) after a successful start; 0 before. Loop thread. */
uint16_t mg_http_server_port(const mg_http_server *srv);

/* Stops listening, drops open connections, closes the libuv handles and frees the server in
 * their close callbacks, then calls closed_fn(arg) (closed_fn may be NULL). srv is invalid once
 * this returns. Requests whose handler has not replied yet stay valid for their owner; replying
 * to them frees them (mg_http_reply returns MG_ECLOSED). May be called from inside a handler.
 * Loop thread, once. */
void mg_http_server_close(mg_http_server *srv, void (*closed_fn)(void *arg), void *arg);

/* Handles one request without a connection, as the server handles a request whose request line
 * and headers libmicrohttpd has parsed: the same routing (path split on '/' then
 * percent-decoded, parameters, 404/405), query decoding, Content-Length and body limits (413),
 * path checks (400/414), and the route's handler, called with the body. For tests and the fuzz
 * target (tests/fuzz/http.c), which reach the server's own parsing without a socket.
 * [in] method, url: as MHD passes them: url is the raw path, without the query string.
 * [in] headers, query: header_count (query_count) {key, value} pairs, 2 * count strings, raw
 *      as received (query values are percent-decoded here, as for a real request; a NULL value
 *      is a key given without '='). Either may be NULL when its count is 0.
 * [in] body: body_len bytes, the request body as MHD would deliver it (the caller gives a
 *      Content-Length or Transfer-Encoding header with it, as a client must).
 * [out] status: the status of the reply: the server's own error status, the one the handler
 *      replied with before returning, or 0 when the handler keeps the request to reply later
 *      (that reply then goes nowhere: mg_http_reply returns MG_ECLOSED).
 * Loop thread; the server need not be started. Returns MG_OK, MG_ESTATE (closing), MG_ENOMEM. */
int mg_http_server_inject(mg_http_server *srv, const char *method, const char *url,
                          const char *const *headers, size_t header_count, const char *const *query,
                          size_t query_count, const void *body, size_t body_len, int *status);

/* Request accessors. Every returned string lives in req and is valid until the reply. Loop
 * thread. */

/* The method as sent, e.g. "GET". */
const char *mg_http_request_method(const mg_http_request *req);

/* The percent-decoded path without the query string, e.g. "/admin/v2/clusters". */
const char *mg_http_request_path(const mg_http_request *req);

/* The value of the `{name}` (or `{name*}`) segment of the matched pattern, percent-decoded;
 * NULL if the pattern has no such parameter. */
const char *mg_http_request_param(const mg_http_request *req, const char *name);

/* The first value of query parameter key (case-sensitive), decoded as a form would ('+' is a
 * space); "" for a key given without '='; NULL if absent. */
const char *mg_http_request_query(const mg_http_request *req, const char *key);

/* The first value of request header name (case-insensitive), NULL if absent. */
const char *mg_http_request_header(const mg_http_request *req, const char *name);

/* The request body and its length in *len (0 and a pointer to "" when there is none). The body
 * is followed by a NUL byte not counted in *len, so text bodies can be read as strings. */
const void *mg_http_request_body(const mg_http_request *req, size_t *len);

/* Replies to req with status (100..599), a Content-Type (NULL for none) and body (copied;
 * body may be NULL when body_len is 0). Exactly once per request (asserted); req is invalid
 * afterwards, whatever the result. Called inside the handler, the reply is queued at once;
 * called later, it resumes the connection that was parked when the handler returned.
 * Loop thread. Returns MG_OK; MG_ECLOSED when the connection or the server is already gone
 * (nothing is sent, req is freed); MG_ENOMEM (the connection is closed instead). */
int mg_http_reply(mg_http_request *req, int status, const char *content_type, const void *body,
                  size_t body_len);

/* As mg_http_reply, with header_count more response headers: headers holds 2 * header_count
 * strings, name then value. A name must not hold ':', CR or LF, a value neither CR nor LF
 * (asserted: the caller cleans what came from outside). */
int mg_http_reply_headers(mg_http_request *req, int status, const char *content_type,
                          const char *const *headers, size_t header_count, const void *body,
                          size_t body_len);

/* Replies with status and the JSON body {"reason":"<reason, JSON-escaped>"} and Content-Type
 * application/json, as Pulsar's admin API answers errors. Same rules and results as
 * mg_http_reply(). */
int mg_http_reply_json_error(mg_http_request *req, int status, const char *reason);

#endif
