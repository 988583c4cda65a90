/*
 * Tests for common/http.h: a server on a libuv loop in the test's thread, and a tiny raw HTTP/1.1
 * client on blocking sockets in a second thread (no curl). The client records what it received;
 * the test thread asserts after the loop has ended and the client thread was joined.
 *
 * Covered: exact status line, headers and body of a literal route; {name} and {name*} path
 * parameters with percent-decoding; query parameters and headers; request bodies sent in several
 * writes (Content-Length and chunked); 404, 405 with Allow, 413 (declared and chunked); keep-alive
 * and pipelining; late replies from a uv timer; a client that leaves before the late reply;
 * server close with a request still held (from outside and from inside a handler); a taken port;
 * route() errors; JSON escaping; allocation failures. Leaks are checked by the ASan build.
 *
 * Every socket has a 3 s receive timeout and every wait loop a bound, so a broken server makes a
 * test fail quickly instead of hanging.
 */
#include "common/alloc.h"
#include "common/error.h"
#include "common/http.h"
#include "common/limits.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

TestSuite(http, .timeout = 10);

/* ---- raw client ------------------------------------------------------------------------- */

#define CLIENT_BUF_BYTES 16384

struct client {
    int fd;
    char buf[CLIENT_BUF_BYTES];
    size_t len;
};

struct resp {
    bool ok; /* a full response was read */
    int status;
    char status_line[128];
    char headers[4096]; /* the header lines, "\r\n"-separated */
    char body[8192];
    size_t body_len;
};

static int client_connect(struct client *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = 3 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int client_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int client_send_str(struct client *c, const char *text)
{
    return client_send(c, text, strlen(text));
}

/* Reads more bytes into the buffer; 0 on EOF, -1 on error or timeout. */
static ssize_t client_fill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

/* The value of header name in r (case-insensitive), copied into out; NULL if absent. */
static const char *resp_header(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    const char *p = r->headers;
    while (*p != '\0') {
        const char *end = strstr(p, "\r\n");
        size_t line_len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (line_len > name_len && strncasecmp(p, name, name_len) == 0 && p[name_len] == ':') {
            const char *v = p + name_len + 1;
            while (*v == ' ')
                v++;
            size_t v_len = line_len - (size_t)(v - p);
            if (v_len >= cap)
                v_len = cap - 1;
            memcpy(out, v, v_len);
            out[v_len] = '\0';
            return out;
        }
        if (end == NULL)
            break;
        p = end + 2;
    }
    return NULL;
}

/* Reads one response (with Content-Length) from c into r. Leftover bytes stay buffered, so
 * pipelined responses can be read one after the other. */
static int client_read_response(struct client *c, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    char *head_end = NULL;
    for (int i = 0; i < 1000; i++) {
        c->buf[c->len < sizeof(c->buf) ? c->len : sizeof(c->buf) - 1] = '\0';
        head_end = c->len > 0 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (head_end != NULL)
            break;
        if (client_fill(c) <= 0)
            return -1;
    }
    if (head_end == NULL)
        return -1;
    size_t head_len = (size_t)(head_end - c->buf);
    const char *line_end = memmem(c->buf, head_len, "\r\n", 2);
    size_t line_len = line_end != NULL ? (size_t)(line_end - c->buf) : head_len;
    if (line_len >= sizeof(r->status_line))
        return -1;
    memcpy(r->status_line, c->buf, line_len);
    if (sscanf(r->status_line, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    size_t hdr_len = line_end != NULL ? head_len - line_len - 2 : 0;
    if (hdr_len >= sizeof(r->headers))
        return -1;
    if (hdr_len > 0)
        memcpy(r->headers, line_end + 2, hdr_len);
    char cl[32];
    if (resp_header(r, "Content-Length", cl, sizeof(cl)) == NULL)
        return -1;
    size_t body_len = (size_t)strtoul(cl, NULL, 10);
    if (body_len >= sizeof(r->body))
        return -1;
    size_t need = head_len + 4 + body_len;
    for (int i = 0; i < 1000 && c->len < need; i++) {
        if (client_fill(c) <= 0)
            return -1;
    }
    if (c->len < need)
        return -1;
    memcpy(r->body, c->buf + head_len + 4, body_len);
    r->body_len = body_len;
    memmove(c->buf, c->buf + need, c->len - need);
    c->len -= need;
    r->ok = true;
    return 0;
}

/* Sends request and reads one response on a fresh connection. */
static void client_exchange(uint16_t port, const char *request, struct resp *r)
{
    struct client c;
    memset(r, 0, sizeof(*r));
    if (client_connect(&c, port) != 0)
        return;
    if (client_send_str(&c, request) == 0)
        client_read_response(&c, r);
    client_close(&c);
}

/* True if the server closes the connection (EOF or reset) before sending anything more. */
static bool client_sees_close(struct client *c)
{
    char b[256];
    for (int i = 0; i < 100; i++) {
        ssize_t n = recv(c->fd, b, sizeof(b), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false; /* timeout */
    }
    return false;
}

/* ---- fixture: a server on a loop in this thread, a client in another ---------------------- */

#define FX_RESP_MAX 8

static struct {
    uv_loop_t loop;
    mg_http_server *srv;
    uv_async_t done;
    pthread_t thread;
    uint16_t port;
    void (*client)(void);
    void (*closed_fn)(void *arg); /* given to mg_http_server_close */
    bool done_sent;               /* client thread only */
    bool closed;
    bool client_done;
    int late_expected; /* the server is closed once this many late replies were given */
    int late_given;
    /* what the client saw */
    struct resp resp[FX_RESP_MAX];
    bool flag[FX_RESP_MAX];
    /* server side */
    uv_timer_t late_timer;
    mg_http_request *late_req;
    int late_rc;
    mg_http_request *held;
    atomic_int held_ready;
    atomic_int late_done;
    int held_rc;
} fx;

static void fx_on_closed(void *arg)
{
    fx.closed = true;
}

static void fx_maybe_close(void)
{
    if (fx.client_done && fx.late_given >= fx.late_expected && fx.srv != NULL) {
        mg_http_server_close(fx.srv, fx.closed_fn, NULL);
        fx.srv = NULL;
    }
}

static void fx_on_done(uv_async_t *async)
{
    fx.client_done = true;
    uv_close((uv_handle_t *)async, NULL);
    fx_maybe_close();
}

/* Client thread: asks the loop to close the server (once). */
static void fx_signal_done(void)
{
    if (!fx.done_sent) {
        fx.done_sent = true;
        uv_async_send(&fx.done);
    }
}

static void *fx_client_main(void *arg)
{
    fx.client();
    fx_signal_done();
    return NULL;
}

static void fx_init(const mg_http_options *opts)
{
    memset(&fx, 0, sizeof(fx));
    fx.late_rc = 1;
    fx.held_rc = 1;
    fx.closed_fn = fx_on_closed;
    cr_assert_eq(uv_loop_init(&fx.loop), 0);
    mg_http_options defaults = { .host = "127.0.0.1" };
    cr_assert_eq(mg_http_server_create(&fx.loop, opts != NULL ? opts : &defaults, &fx.srv), MG_OK);
}

static void fx_route(const char *method, const char *pattern, mg_http_handler_fn fn)
{
    cr_assert_eq(mg_http_server_route(fx.srv, method, pattern, fn, &fx), MG_OK, "%s %s", method,
                 pattern);
}

/* Starts the server, runs client() in a thread and the loop here until the server is closed. */
static void fx_run(void (*client)(void))
{
    cr_assert_eq(mg_http_server_start(fx.srv), MG_OK);
    fx.port = mg_http_server_port(fx.srv);
    cr_assert_neq(fx.port, 0);
    fx.client = client;
    cr_assert_eq(uv_async_init(&fx.loop, &fx.done, fx_on_done), 0);
    cr_assert_eq(pthread_create(&fx.thread, NULL, fx_client_main, NULL), 0);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    pthread_join(fx.thread, NULL);
    cr_assert(fx.closed, "closed_fn was not called");
    cr_assert_eq(uv_loop_close(&fx.loop), 0, "a handle is still open");
}

/* Waits (bounded, ~3 s) until *flag becomes non-zero. */
static bool wait_flag(atomic_int *flag)
{
    for (int i = 0; i < 3000; i++) {
        if (atomic_load(flag) != 0)
            return true;
        usleep(1000);
    }
    return false;
}

/* ---- handlers ------------------------------------------------------------------------------ */

static void h_metrics(mg_http_request *req, void *arg)
{
    static const char body[] = "mg_up 1\n";
    cr_assert_eq(mg_http_reply(req, 200, "text/plain; version=0.0.4", body, sizeof(body) - 1),
                 MG_OK);
}

static void reply_text(mg_http_request *req, const char *text)
{
    cr_assert_eq(mg_http_reply(req, 200, "text/plain", text, strlen(text)), MG_OK);
}

static const char *or_null(const char *s)
{
    return s != NULL ? s : "(null)";
}

static void h_stats(mg_http_request *req, void *arg)
{
    char out[512];
    snprintf(out, sizeof(out), "%s|%s|%s|%s|%s", or_null(mg_http_request_param(req, "tenant")),
             or_null(mg_http_request_param(req, "namespace")),
             or_null(mg_http_request_param(req, "topic")),
             or_null(mg_http_request_param(req, "nope")), mg_http_request_path(req));
    reply_text(req, out);
}

static void h_files(mg_http_request *req, void *arg)
{
    reply_text(req, or_null(mg_http_request_param(req, "path")));
}

static void h_query(mg_http_request *req, void *arg)
{
    char out[512];
    snprintf(out, sizeof(out), "a=%s;b=%s;flag=%s;c=%s;A=%s;h=%s;H=%s",
             or_null(mg_http_request_query(req, "a")), or_null(mg_http_request_query(req, "b")),
             or_null(mg_http_request_query(req, "flag")), or_null(mg_http_request_query(req, "c")),
             or_null(mg_http_request_query(req, "A")),
             or_null(mg_http_request_header(req, "x-test")),
             or_null(mg_http_request_header(req, "X-MISSING")));
    reply_text(req, out);
}

static void h_echo(mg_http_request *req, void *arg)
{
    size_t len = 99;
    const char *body = mg_http_request_body(req, &len);
    char out[4096];
    cr_assert_eq(body[len], '\0'); /* the NUL after the body */
    int n = snprintf(out, sizeof(out), "%s:%zu:", mg_http_request_method(req), len);
    cr_assert(n > 0 && (size_t)n + len < sizeof(out));
    memcpy(out + n, body, len);
    cr_assert_eq(mg_http_reply(req, 200, "application/octet-stream", out, (size_t)n + len), MG_OK);
}

static void h_first(mg_http_request *req, void *arg)
{
    reply_text(req, "first");
}

static void h_second(mg_http_request *req, void *arg)
{
    reply_text(req, "second");
}

static void h_json_error(mg_http_request *req, void *arg)
{
    cr_assert_eq(mg_http_reply_json_error(req, 409, "bad \"name\"\\ \n\t\x01 caf\xc3\xa9"), MG_OK);
}

static void h_empty(mg_http_request *req, void *arg)
{
    cr_assert_eq(mg_http_reply(req, 204, NULL, NULL, 0), MG_OK);
}

static void on_late_timer(uv_timer_t *timer)
{
    mg_http_request *req = fx.late_req;
    fx.late_req = NULL;
    fx.late_rc = mg_http_reply(req, 200, "text/plain", "late", 4);
    uv_close((uv_handle_t *)timer, NULL);
    fx.late_given++;
    atomic_store(&fx.late_done, 1);
    fx_maybe_close();
}

/* Replies 20 ms later, from a timer: the connection is suspended meanwhile. */
static void h_late(mg_http_request *req, void *arg)
{
    cr_assert_null(fx.late_req);
    fx.late_req = req;
    cr_assert_eq(uv_timer_init(&fx.loop, &fx.late_timer), 0);
    cr_assert_eq(uv_timer_start(&fx.late_timer, on_late_timer, 20, 0), 0);
}

/* Keeps the request without replying. */
static void h_hold(mg_http_request *req, void *arg)
{
    fx.held = req;
    atomic_store(&fx.held_ready, 1);
}

static void on_closed_reply_held(void *arg)
{
    fx.closed = true;
    /* The server is gone; the reply must only free the request. */
    cr_assert_str_eq(mg_http_request_path(fx.held), "/hold");
    fx.held_rc = mg_http_reply(fx.held, 200, "text/plain", "x", 1);
    fx.held = NULL;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void client_get_metrics(void)
{
    client_exchange(fx.port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[0]);
}

Test(http, get_literal_route)
{
    fx_init(NULL);
    fx_route("GET", "/metrics", h_metrics);
    fx_run(client_get_metrics);
    struct resp *r = &fx.resp[0];
    char v[128];
    cr_assert(r->ok);
    cr_assert_str_eq(r->status_line, "HTTP/1.1 200 OK");
    cr_assert_str_eq(resp_header(r, "Content-Type", v, sizeof(v)), "text/plain; version=0.0.4");
    cr_assert_str_eq(resp_header(r, "Content-Length", v, sizeof(v)), "8");
    cr_assert_eq(r->body_len, 8);
    cr_assert_eq(memcmp(r->body, "mg_up 1\n", 8), 0);
}

static void client_params(void)
{
    client_exchange(fx.port,
                    "GET /admin/v2/persistent/public/default/my-topic/stats HTTP/1.1\r\n"
                    "Host: t\r\n\r\n",
                    &fx.resp[0]);
    client_exchange(fx.port,
                    "GET /admin/v2/persistent/public/default/my%2Ftopic%20x/stats HTTP/1.1\r\n"
                    "Host: t\r\n\r\n",
                    &fx.resp[1]);
    client_exchange(fx.port, "GET /files/a/b%2Fc/d.txt HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[2]);
    client_exchange(fx.port, "GET /files HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[3]);
    client_exchange(fx.port, "GET /files/a//b HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[4]);
    client_exchange(fx.port, "GET /admin/v2/persistent/public//t/stats HTTP/1.1\r\nHost: t\r\n\r\n",
                    &fx.resp[5]);
    client_exchange(fx.port, "GET /metrics/ HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[6]);
}

Test(http, path_params)
{
    fx_init(NULL);
    fx_route("GET", "/metrics", h_metrics);
    fx_route("GET", "/admin/v2/persistent/{tenant}/{namespace}/{topic}/stats", h_stats);
    fx_route("GET", "/files/{path*}", h_files);
    fx_run(client_params);
    for (int i = 0; i < 7; i++)
        cr_assert(fx.resp[i].ok, "response %d", i);
    cr_assert_eq(fx.resp[0].status, 200);
    cr_assert_str_eq(
        fx.resp[0].body,
        "public|default|my-topic|(null)|/admin/v2/persistent/public/default/my-topic/stats");
    /* %2F stays inside its segment; the decoded path shows it as '/'. */
    cr_assert_str_eq(fx.resp[1].body, "public|default|my/topic x|(null)|"
                                      "/admin/v2/persistent/public/default/my/topic x/stats");
    cr_assert_eq(fx.resp[2].status, 200);
    cr_assert_str_eq(fx.resp[2].body, "a/b/c/d.txt");
    cr_assert_eq(fx.resp[3].status, 404); /* {path*} needs at least one segment */
    cr_assert_eq(fx.resp[4].status, 404); /* empty segments never match */
    cr_assert_eq(fx.resp[5].status, 404);
    cr_assert_eq(fx.resp[6].status, 404); /* trailing slash */
}

static void client_query(void)
{
    client_exchange(fx.port,
                    "GET /query?a=1&b=hello%20world+x&flag&a=2&A=up HTTP/1.1\r\nHost: t\r\n"
                    "X-Test: Some Value\r\n\r\n",
                    &fx.resp[0]);
    client_exchange(fx.port, "GET /query HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[1]);
}

Test(http, query_params_and_headers)
{
    fx_init(NULL);
    fx_route("GET", "/query", h_query);
    fx_run(client_query);
    cr_assert(fx.resp[0].ok);
    cr_assert_str_eq(fx.resp[0].body,
                     "a=1;b=hello world x;flag=;c=(null);A=up;h=Some Value;H=(null)");
    cr_assert(fx.resp[1].ok);
    cr_assert_str_eq(fx.resp[1].body,
                     "a=(null);b=(null);flag=(null);c=(null);A=(null);h=(null);H=(null)");
}

static void client_bodies(void)
{
    struct client c;
    /* Content-Length, the body in three writes. */
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 26\r\n\r\nabcdefgh");
    usleep(2000);
    client_send_str(&c, "ijklmnopq");
    usleep(2000);
    client_send_str(&c, "rstuvwxyz");
    client_read_response(&c, &fx.resp[0]);
    /* Chunked, on the same connection, in pieces. */
    client_send_str(&c, "PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n");
    usleep(2000);
    client_send_str(&c, "6\r\n world\r\n");
    usleep(2000);
    client_send_str(&c, "0\r\n\r\n");
    client_read_response(&c, &fx.resp[1]);
    /* Binary bytes, NULs included, exactly as sent. */
    static const char bin[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n"
                              "a\0b\r\0";
    client_send(&c, bin, sizeof(bin) - 1);
    client_read_response(&c, &fx.resp[2]);
    /* No body at all. */
    client_send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    client_read_response(&c, &fx.resp[3]);
    client_close(&c);
}

Test(http, request_bodies_delivered_exactly)
{
    fx_init(NULL);
    fx_route("POST", "/echo", h_echo);
    fx_route("PUT", "/echo", h_echo);
    fx_run(client_bodies);
    for (int i = 0; i < 4; i++)
        cr_assert(fx.resp[i].ok, "response %d", i);
    cr_assert_str_eq(fx.resp[0].body, "POST:26:abcdefghijklmnopqrstuvwxyz");
    cr_assert_str_eq(fx.resp[1].body, "PUT:11:hello world");
    cr_assert_eq(fx.resp[2].body_len, 12);
    cr_assert_eq(memcmp(fx.resp[2].body, "POST:5:a\0b\r\0", 12), 0);
    cr_assert_str_eq(fx.resp[3].body, "POST:0:");
}

static void client_errors(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /no/such/path HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[0]);
    /* A bodiless error keeps the connection. */
    client_send_str(&c, "DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[1]);
    client_send_str(&c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[2]);
    client_close(&c);
    /* 405 with a body on the way: answered at once, then the connection closes. */
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "PATCH /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n");
    client_read_response(&c, &fx.resp[3]);
    fx.flag[3] = client_sees_close(&c);
    client_close(&c);
    client_exchange(fx.port, "GET /bad%00path HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[4]);
}

Test(http, not_found_and_method_not_allowed)
{
    fx_init(NULL);
    fx_route("POST", "/echo", h_echo);
    fx_route("GET", "/metrics", h_metrics);
    fx_route("PUT", "/echo", h_echo);
    fx_route("POST", "/{any}", h_echo); /* matches /echo too: POST listed once */
    fx_run(client_errors);
    char v[128];
    for (int i = 0; i < 5; i++)
        cr_assert(fx.resp[i].ok, "response %d", i);
    cr_assert_eq(fx.resp[0].status, 404);
    cr_assert_str_eq(resp_header(&fx.resp[0], "Content-Type", v, sizeof(v)), "application/json");
    cr_assert_str_eq(fx.resp[0].body, "{\"reason\":\"no handler for this path\"}");
    cr_assert_eq(fx.resp[1].status, 405);
    cr_assert_str_eq(resp_header(&fx.resp[1], "Allow", v, sizeof(v)), "POST, PUT");
    cr_assert_str_eq(fx.resp[1].body, "{\"reason\":\"method not allowed for this path\"}");
    cr_assert_eq(fx.resp[2].status, 200);
    cr_assert_eq(fx.resp[3].status, 405);
    cr_assert_str_eq(resp_header(&fx.resp[3], "Allow", v, sizeof(v)), "POST, PUT");
    cr_assert(fx.flag[3], "connection stayed open after an early reply");
    cr_assert_eq(fx.resp[4].status, 400);
    cr_assert_str_eq(fx.resp[4].body, "{\"reason\":\"invalid request path\"}");
}

static void client_too_large(void)
{
    struct client c;
    /* Declared too large: 413 before the body is sent (a client would wait for 100). */
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n");
    client_read_response(&c, &fx.resp[0]);
    fx.flag[0] = client_sees_close(&c);
    client_close(&c);
    /* Exactly at the limit: accepted. */
    char req[256];
    char body[65];
    memset(body, 'x', 64);
    body[64] = '\0';
    snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 64\r\n\r\n%s",
             body);
    client_exchange(fx.port, req, &fx.resp[1]);
    /* Chunked, growing past the limit mid-body: 413 once the body has ended. */
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    snprintf(req, sizeof(req), "28\r\n%.40s\r\n", "0123456789012345678901234567890123456789");
    client_send_str(&c, req);
    usleep(2000);
    client_send_str(&c, req);
    client_send_str(&c, "0\r\n\r\n");
    client_read_response(&c, &fx.resp[2]);
    client_close(&c);
}

Test(http, body_over_limit_gets_413)
{
    mg_http_options opts = { .host = "127.0.0.1", .body_bytes_max = 64 };
    fx_init(&opts);
    fx_route("POST", "/echo", h_echo);
    fx_run(client_too_large);
    char v[64];
    cr_assert(fx.resp[0].ok);
    cr_assert_eq(fx.resp[0].status, 413);
    cr_assert_str_eq(resp_header(&fx.resp[0], "Content-Type", v, sizeof(v)), "application/json");
    cr_assert_str_eq(fx.resp[0].body,
                     "{\"reason\":\"request body is larger than the server accepts\"}");
    cr_assert(fx.flag[0]);
    cr_assert(fx.resp[1].ok);
    cr_assert_eq(fx.resp[1].status, 200);
    cr_assert_eq(fx.resp[1].body_len, 8 + 64);
    cr_assert(fx.resp[2].ok);
    cr_assert_eq(fx.resp[2].status, 413);
}

static void client_keep_alive(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[0]);
    client_send_str(&c, "GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[1]);
    /* Pipelined: three requests in one write, answered in order. */
    client_send_str(&c, "GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                        "DELETE /empty HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[2]);
    client_read_response(&c, &fx.resp[3]);
    /* 204 has no Content-Length line from every server; read its status line only. */
    for (int i = 0; i < 100 && memmem(c.buf, c.len, "\r\n\r\n", 4) == NULL; i++) {
        if (client_fill(&c) <= 0)
            break;
    }
    fx.flag[4] = c.len >= 12 && memcmp(c.buf, "HTTP/1.1 204", 12) == 0;
    client_close(&c);
}

Test(http, keep_alive_and_pipelining)
{
    fx_init(NULL);
    fx_route("GET", "/metrics", h_metrics);
    fx_route("GET", "/first", h_first);
    fx_route("GET", "/first", h_second); /* never reached: registration order */
    fx_route("*", "/empty", h_empty);
    fx_run(client_keep_alive);
    for (int i = 0; i < 4; i++)
        cr_assert(fx.resp[i].ok, "response %d", i);
    cr_assert_str_eq(fx.resp[0].body, "mg_up 1\n");
    cr_assert_str_eq(fx.resp[1].body, "first");
    cr_assert_str_eq(fx.resp[2].body, "first");
    cr_assert_str_eq(fx.resp[3].body, "mg_up 1\n");
    cr_assert(fx.flag[4], "no 204 for DELETE on a \"*\" route");
}

static void client_late(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[0]);
    /* The resumed connection keeps serving. */
    client_send_str(&c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&c, &fx.resp[1]);
    client_close(&c);
}

Test(http, async_reply_from_timer)
{
    fx_init(NULL);
    fx_route("GET", "/late", h_late);
    fx_route("GET", "/metrics", h_metrics);
    fx.late_expected = 1;
    fx_run(client_late);
    cr_assert_eq(fx.late_rc, MG_OK);
    cr_assert(fx.resp[0].ok);
    cr_assert_eq(fx.resp[0].status, 200);
    cr_assert_str_eq(fx.resp[0].body, "late");
    cr_assert(fx.resp[1].ok);
    cr_assert_str_eq(fx.resp[1].body, "mg_up 1\n");
}

static void client_leaves_early(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
    client_close(&c); /* gone before the reply */
    fx.flag[0] = wait_flag(&fx.late_done);
    client_exchange(fx.port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[1]);
}

Test(http, client_disconnects_before_async_reply)
{
    fx_init(NULL);
    fx_route("GET", "/late", h_late);
    fx_route("GET", "/metrics", h_metrics);
    fx.late_expected = 1;
    fx_run(client_leaves_early);
    cr_assert(fx.flag[0], "the late reply never ran");
    /* MHD does not watch a suspended connection, so the reply is still accepted and MHD
     * finds the peer gone when it writes. */
    cr_assert_eq(fx.late_rc, MG_OK);
    cr_assert(fx.resp[1].ok);
    cr_assert_eq(fx.resp[1].status, 200);
}

static void client_held_then_close(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    fx.flag[0] = wait_flag(&fx.held_ready);
    fx_signal_done(); /* the loop closes the server now */
    fx.flag[1] = client_sees_close(&c);
    client_close(&c);
}

Test(http, close_with_request_held)
{
    fx_init(NULL);
    fx_route("GET", "/hold", h_hold);
    fx.closed_fn = on_closed_reply_held;
    fx_run(client_held_then_close);
    cr_assert(fx.flag[0]);
    cr_assert(fx.flag[1], "the client's connection was not closed");
    cr_assert_eq(fx.held_rc, MG_ECLOSED);
}

static void h_close_inside(mg_http_request *req, void *arg)
{
    fx.held = req;
    mg_http_server_close(fx.srv, on_closed_reply_held, NULL);
    fx.srv = NULL;
}

static void client_close_inside(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    client_send_str(&c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    fx.flag[0] = client_sees_close(&c);
    client_close(&c);
}

Test(http, close_from_inside_a_handler)
{
    fx_init(NULL);
    fx_route("GET", "/hold", h_close_inside);
    fx_run(client_close_inside);
    cr_assert(fx.flag[0], "the client's connection was not closed");
    cr_assert_eq(fx.held_rc, MG_ECLOSED);
}

static void client_json_error(void)
{
    client_exchange(fx.port, "GET /err HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[0]);
}

Test(http, json_error_is_escaped)
{
    fx_init(NULL);
    fx_route("GET", "/err", h_json_error);
    fx_run(client_json_error);
    char v[64];
    cr_assert(fx.resp[0].ok);
    cr_assert_eq(fx.resp[0].status, 409);
    cr_assert_str_eq(resp_header(&fx.resp[0], "Content-Type", v, sizeof(v)), "application/json");
    cr_assert_str_eq(fx.resp[0].body,
                     "{\"reason\":\"bad \\\"name\\\"\\\\ \\n\\t\\u0001 caf\xc3\xa9\"}");
}

static void h_with_headers(mg_http_request *req, void *arg)
{
    static const char *const headers[] = { "X-Pulsar-Message-ID", "12:3", "X-Pulsar-PROPERTY-k",
                                           "a value: with colon" };
    cr_assert_eq(mg_http_reply_headers(req, 200, "application/octet-stream", headers, 2,
                                       "\x00\x01payload", 9),
                 MG_OK);
}

static void client_with_headers(void)
{
    client_exchange(fx.port, "GET /peek HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[0]);
}

Test(http, reply_with_headers)
{
    fx_init(NULL);
    fx_route("GET", "/peek", h_with_headers);
    fx_run(client_with_headers);
    char v[64];
    cr_assert(fx.resp[0].ok);
    cr_assert_eq(fx.resp[0].status, 200);
    cr_assert_str_eq(resp_header(&fx.resp[0], "Content-Type", v, sizeof(v)),
                     "application/octet-stream");
    cr_assert_str_eq(resp_header(&fx.resp[0], "X-Pulsar-Message-ID", v, sizeof(v)), "12:3");
    cr_assert_str_eq(resp_header(&fx.resp[0], "X-Pulsar-PROPERTY-k", v, sizeof(v)),
                     "a value: with colon");
    cr_assert_eq(fx.resp[0].body_len, 9);
    cr_assert_eq(memcmp(fx.resp[0].body, "\x00\x01payload", 9), 0);
}

static void on_closed_count(void *arg)
{
    (*(int *)arg)++;
}

Test(http, port_in_use_fails_with_eexist)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    mg_http_options opts = { .host = "127.0.0.1" };
    mg_http_server *a, *b;
    cr_assert_eq(mg_http_server_create(&loop, &opts, &a), MG_OK);
    cr_assert_eq(mg_http_server_start(a), MG_OK);
    opts.port = mg_http_server_port(a);
    cr_assert_eq(mg_http_server_create(&loop, &opts, &b), MG_OK);

    int fds[2];
    cr_assert_eq(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    mg_log_set_fd(fds[1]);
    int rc = mg_http_server_start(b);
    mg_log_set_fd(2);
    char log[2048] = { 0 };
    ssize_t n = read(fds[0], log, sizeof(log) - 1);
    close(fds[0]);
    close(fds[1]);
    cr_assert_eq(rc, MG_EEXIST, "got %s", mg_err_name(rc));
    cr_assert_eq(mg_http_server_port(b), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)opts.port);
    cr_assert(n > 0 && strstr(log, addr) != NULL, "log does not name %s: %s", addr, log);

    int closed = 0;
    mg_http_server_close(b, on_closed_count, &closed);
    mg_http_server_close(a, on_closed_count, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, 2);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

static void h_nop(mg_http_request *req, void *arg)
{
    mg_http_reply(req, 200, NULL, NULL, 0);
}

Test(http, route_errors)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    mg_http_server *srv;
    cr_assert_eq(mg_http_server_create(&loop, NULL, &srv), MG_OK);
    static const char *const bad[] = {
        "",         "metrics",   "/a//b", "/a/",   "//",     "/{",        "/{}",
        "/{a",      "/a}",       "/x{a}", "/{a}x", "/{a b}", "/{*}",      "/{a*}/b",
        "/{x}/{x}", "/{x}/{x*}", "/a?b",  "/a#b",  "/a%20b", "/{a}/{b}/", "/{a/b}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(mg_http_server_route(srv, "GET", bad[i], h_nop, NULL), MG_EINVAL, "'%s'",
                     bad[i]);
    cr_assert_eq(mg_http_server_route(srv, "", "/a", h_nop, NULL), MG_EINVAL);
    cr_assert_eq(mg_http_server_route(srv, "GE T", "/a", h_nop, NULL), MG_EINVAL);
    cr_assert_eq(mg_http_server_route(srv, "ABCDEFGHIJKLMNOP", "/a", h_nop, NULL), MG_EINVAL);
    cr_assert_eq(mg_http_server_route(srv, NULL, "/a", h_nop, NULL), MG_EINVAL);
    cr_assert_eq(mg_http_server_route(srv, "GET", NULL, h_nop, NULL), MG_EINVAL);
    cr_assert_eq(mg_http_server_route(srv, "GET", "/a", NULL, NULL), MG_EINVAL);

    /* Exactly MG_HTTP_PATH_PARAMS_MAX parameters fit; one more does not. */
    char pattern[512] = "";
    for (int i = 0; i < MG_HTTP_PATH_PARAMS_MAX; i++)
        snprintf(pattern + strlen(pattern), sizeof(pattern) - strlen(pattern), "/{p%d}", i);
    cr_assert_eq(mg_http_server_route(srv, "GET", pattern, h_nop, NULL), MG_OK);
    strcat(pattern, "/{extra}");
    cr_assert_eq(mg_http_server_route(srv, "GET", pattern, h_nop, NULL), MG_ELIMIT);
    /* Too many segments. */
    pattern[0] = '\0';
    for (int i = 0; i <= MG_HTTP_PATH_SEGMENTS_MAX; i++)
        strcat(pattern, "/s");
    cr_assert_eq(mg_http_server_route(srv, "GET", pattern, h_nop, NULL), MG_ELIMIT);

    /* Valid shapes. */
    cr_assert_eq(mg_http_server_route(srv, "GET", "/", h_nop, NULL), MG_OK);
    cr_assert_eq(mg_http_server_route(srv, "*", "/any/{rest*}", h_nop, NULL), MG_OK);
    cr_assert_eq(mg_http_server_route(srv, "M-SEARCH", "/a.b/{x-y_z.1}", h_nop, NULL), MG_OK);
    /* Fill the table: 4 routes so far. */
    for (int i = 4; i < MG_HTTP_ROUTES_MAX; i++)
        cr_assert_eq(mg_http_server_route(srv, "GET", "/fill", h_nop, NULL), MG_OK, "route %d", i);
    cr_assert_eq(mg_http_server_route(srv, "GET", "/more", h_nop, NULL), MG_ELIMIT);

    int closed = 0;
    mg_http_server_close(srv, on_closed_count, &closed); /* never started */
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, 1);

    /* After start: MG_ESTATE. */
    mg_http_options opts = { .host = "127.0.0.1" };
    cr_assert_eq(mg_http_server_create(&loop, &opts, &srv), MG_OK);
    cr_assert_eq(mg_http_server_start(srv), MG_OK);
    cr_assert_eq(mg_http_server_route(srv, "GET", "/late", h_nop, NULL), MG_ESTATE);
    mg_http_server_close(srv, on_closed_count, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed, 2);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(http, create_rejects_bad_options_and_survives_allocation_failures)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char host[MG_HTTP_HOST_BYTES_MAX + 1];
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    mg_http_options opts = { .host = host };
    mg_http_server *srv = (mg_http_server *)&loop; /* must stay untouched */
    cr_assert_eq(mg_http_server_create(&loop, &opts, &srv), MG_EINVAL);
    cr_assert_eq(srv, (mg_http_server *)&loop);

    /* Every allocation of create + route failing in turn: MG_ENOMEM, nothing leaked (ASan). */
    opts.host = "127.0.0.1";
    int n;
    for (n = 0; n < 20; n++) {
        mg_alloc_fail_after(n);
        int rc = mg_http_server_create(&loop, &opts, &srv);
        if (rc == MG_OK) {
            rc = mg_http_server_route(srv, "GET", "/admin/v2/{x}", h_nop, NULL);
            mg_alloc_fail_reset();
            mg_http_server_close(srv, NULL, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
            if (rc == MG_OK)
                break;
        }
        mg_alloc_fail_reset();
        cr_assert_eq(rc, MG_ENOMEM, "n=%d: %s", n, mg_err_name(rc));
    }
    cr_assert_eq(n, 3); /* server, host copy, route */
    cr_assert_eq(uv_loop_close(&loop), 0);
}

static void client_request_alloc_fails(void)
{
    struct client c;
    if (client_connect(&c, fx.port) != 0)
        return;
    /* The request's first allocation fails: the connection is dropped, no reply. */
    mg_alloc_fail_after(0);
    client_send_str(&c, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    fx.flag[0] = client_sees_close(&c);
    mg_alloc_fail_reset();
    client_close(&c);
    /* Then the server serves normally. */
    client_exchange(fx.port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", &fx.resp[1]);
}

Test(http, request_allocation_failure_drops_the_connection)
{
    fx_init(NULL);
    fx_route("GET", "/metrics", h_metrics);
    fx_run(client_request_alloc_fails);
    cr_assert(fx.flag[0]);
    cr_assert(fx.resp[1].ok);
    cr_assert_eq(fx.resp[1].status, 200);
}

static void client_limit(void)
{
    struct client a, b;
    if (client_connect(&a, fx.port) != 0)
        return;
    client_send_str(&a, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&a, &fx.resp[0]);
    /* A second connection is over the limit: the idle first one is closed to make room, and
     * the second is served at once (not left in the listen backlog until an idle timeout). */
    if (client_connect(&b, fx.port) != 0)
        return;
    client_send_str(&b, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&b, &fx.resp[1]);
    fx.flag[1] = client_sees_close(&a);
    client_close(&a);
    /* The second keeps its keep-alive connection. */
    client_send_str(&b, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&b, &fx.resp[2]);
    /* Closing the server drops the idle keep-alive connection. */
    fx_signal_done();
    fx.flag[4] = client_sees_close(&b);
    client_close(&b);
}

Test(http, connection_limit_closes_the_longest_idle_connection)
{
    mg_http_options opts = { .host = "127.0.0.1", .connections_max = 1 };
    fx_init(&opts);
    fx_route("GET", "/metrics", h_metrics);
    fx_run(client_limit);
    for (int i = 0; i < 3; i++) {
        cr_assert(fx.resp[i].ok, "response %d", i);
        cr_assert_eq(fx.resp[i].status, 200);
    }
    cr_assert(fx.flag[1], "the idle connection was not closed to make room");
    cr_assert(fx.flag[4], "the idle connection survived the server");
}

static void client_limit_busy(void)
{
    struct client a, b;
    if (client_connect(&a, fx.port) != 0)
        return;
    client_send_str(&a, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    fx.flag[0] = wait_flag(&fx.held_ready);
    /* Over the limit, but the only other connection is in the middle of a request: it stays,
     * and the new one is served from the reserve. */
    if (client_connect(&b, fx.port) != 0)
        return;
    client_send_str(&b, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    client_read_response(&b, &fx.resp[0]);
    struct pollfd pfd = { .fd = a.fd, .events = POLLIN };
    fx.flag[1] = poll(&pfd, 1, 100) == 0; /* neither answered nor closed */
    client_close(&b);
    fx_signal_done();
    fx.flag[2] = client_sees_close(&a);
    client_close(&a);
}

Test(http, connection_limit_keeps_busy_connections)
{
    mg_http_options opts = { .host = "127.0.0.1", .connections_max = 1 };
    fx_init(&opts);
    fx_route("GET", "/metrics", h_metrics);
    fx_route("GET", "/hold", h_hold);
    fx.closed_fn = on_closed_reply_held;
    fx_run(client_limit_busy);
    cr_assert(fx.flag[0]);
    cr_assert(fx.resp[0].ok);
    cr_assert_eq(fx.resp[0].status, 200);
    cr_assert(fx.flag[1], "the busy connection was closed or answered");
    cr_assert(fx.flag[2]);
    cr_assert_eq(fx.held_rc, MG_ECLOSED);
}

static void h_twice(mg_http_request *req, void *arg)
{
    reply_text(req, "once");
    mg_http_reply(req, 200, NULL, NULL, 0); /* a programmer error: MG_ASSERT aborts */
}

Test(http, second_reply_aborts, .signal = SIGABRT)
{
    fx_init(NULL);
    fx_route("GET", "/metrics", h_twice);
    fx_run(client_get_metrics);
}
