/*
 * HTTP/1.1 server on a libuv loop, built on GNU libmicrohttpd; see http.h for the API.
 *
 * WHY LIBMICROHTTPD. The protocol work (request-line and header parsing, keep-alive,
 * pipelining, chunked request bodies, 100-continue, header size limits, idle timeouts, connection
 * limits) is done by GNU libmicrohttpd 0.9.75 (Debian libmicrohttpd-dev), a maintained HTTP/1.1
 * server library deployed in many products. Writing our own parser would mean owning all of
 * those edge cases; Debian 12 has no llhttp package and nodejs/http-parser is archived. This file
 * adds routing, whole-body delivery, JSON errors and late replies on top.
 *
 * LIBUV INTEGRATION (no MHD thread). The daemon is started with MHD_USE_EPOLL and without
 * MHD_USE_INTERNAL_POLLING_THREAD ("external polling"), plus MHD_ALLOW_SUSPEND_RESUME (which
 * implies MHD_USE_ITC: MHD keeps an eventfd inside its epoll set and signals it on resume).
 * MHD_get_daemon_info(MHD_DAEMON_INFO_EPOLL_FD) gives MHD's epoll fd, which holds the listen
 * socket, the ITC and every connection. A uv_poll_t watches that fd for UV_READABLE (an epoll fd
 * is readable while it has ready events) and calls MHD_run(), which never blocks in this mode.
 * MHD's connection sockets are edge-triggered inside its epoll set, so work MHD leaves for later
 * does not make the fd readable again; MHD reports it through MHD_get_timeout() instead (0 ms
 * when it has buffered work), and the header requires MHD_run() again within that time. So after
 * every run a uv_timer_t is set from MHD_get_timeout(), or stopped when it says there is no
 * timeout. MHD_resume_connection() must be followed by MHD_run() (documented for external
 * polling), so a late reply "kicks" the timer to 0 ms (or, if it happens inside a run, the run
 * reschedules at 0 ms when it returns); the ITC makes the epoll fd readable as well. One more
 * case needs a kick that MHD_get_timeout() does not report: MHD puts its listen socket back into
 * its epoll set (after a connection freed a slot under MHD_OPTION_CONNECTION_LIMIT) only at the
 * start of an epoll pass, so when a run changes the number of connections, another run follows
 * at 0 ms; without it a client waiting in the backlog would wait for unrelated traffic. Hence
 * every MHD callback, and every handler, runs on the loop's thread.
 *
 * ROUTING. MHD is given an unescape callback that leaves the URL alone, so the access handler
 * sees the raw path: it is split on '/' first and each segment is percent-decoded afterwards,
 * so an encoded "%2F" inside a topic name stays inside its `{topic}` parameter. Query keys and
 * values (also raw) are decoded when they are copied into the request. Routes are tried in
 * registration order; the first whose pattern and method match wins. If patterns match but no
 * method does, the reply is 405 with an Allow header listing the methods of those routes.
 *
 * REQUEST LIFETIME. A request is allocated when MHD has read its headers (the first call of the
 * access handler) and has up to two owners:
 *   - MHD, from that first call until MHD's request-completed callback (MHD_OPTION_NOTIFY_
 *     COMPLETED), which fires when the response was sent, the client went away, the idle timeout
 *     hit, or the daemon stopped;
 *   - the application, from the handler call until mg_http_reply().
 * It is freed when both have let go. Copies of method, path, parameters, headers and query live
 * in an arena inside the request's own allocation, and the body in one growing buffer, so a
 * request stays readable after MHD has dropped its connection.
 *
 * Request states (flags in struct mg_http_request):
 *
 *   RECEIVING --body complete--> DISPATCHED (handler runs, app owns) --reply in handler--> QUEUED
 *       |                             |
 *       | routing error / 413         +--handler returned, no reply--> SUSPENDED (pending list)
 *       v                                                                   |
 *   QUEUED (error reply)                  REPLIED_LATE (response kept, resumed) <--reply--+
 *                                             |
 *                                 MHD calls the handler again --> QUEUED
 *
 *   Any state --MHD completed--> MHD no longer owns; if the app still does, the request is an
 *   orphan and its reply only frees it.
 *
 * Invariants:
 *   1. Everything runs on the loop's thread (asserted at the public entry points).
 *   2. A suspended connection is in srv->pending and has exactly one request, owned by both the
 *      app and MHD. MHD neither times out nor notices the disconnect of a suspended connection,
 *      so the request stays valid until the reply (or server close) resumes it.
 *   3. MHD_stop_daemon() is never called with a suspended connection (an API violation in MHD):
 *      close resumes them all first, runs MHD once, then stops it.
 *   4. MHD_run() is never re-entered: close only stops the uv handles; MHD_run() and
 *      MHD_stop_daemon() for the shutdown happen in the last close callback.
 *   5. srv->request_count counts requests MHD owns; it is 0 after MHD_stop_daemon().
 *   6. The epoll fd leaves libuv (uv_close on the poll handle) before MHD closes it.
 */
#include "common/http.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum http__seg_kind { HTTP__SEG_LITERAL, HTTP__SEG_PARAM, HTTP__SEG_REST };

/* One segment of a route pattern: literal text or a parameter name (not NUL-terminated). */
struct http__seg {
    const char *text;
    size_t text_len;
    enum http__seg_kind kind;
};

struct http__route {
    mg_http_handler_fn fn;
    void *arg;
    char method[MG_HTTP_METHOD_BYTES_MAX];
    unsigned seg_count;
    unsigned param_count;
    size_t param_names_bytes; /* sum of name lengths + NULs, reserved in each request's arena */
    struct http__seg segs[];  /* seg_count entries, then the pattern text they point into */
};

struct http__kv {
    const char *key;
    const char *value;
};

/* Where a request's headers and query arguments come from: MHD's connection, or the
 * {key, value} pairs given to mg_http_server_inject (conn NULL). */
struct http__source {
    struct MHD_Connection *conn;
    const char *const *headers;
    size_t header_count;
    const char *const *query;
    size_t query_count;
};

/* What mg_http_server_inject learns from the handler's reply. */
struct http__injected {
    int status;
    bool replied;
};

struct mg_http_request {
    mg_http_server *srv;         /* NULL once MHD no longer owns the request */
    struct MHD_Connection *conn; /* NULL once MHD no longer owns the request */
    const struct http__route *route;
    mg_http_request *pending_prev; /* srv->pending, while suspended */
    mg_http_request *pending_next;
    struct MHD_Response *response; /* a late reply waiting for the resumed connection */
    unsigned response_status;

    const char *method;
    const char *path;
    const char *param_names[MG_HTTP_PATH_PARAMS_MAX];
    const char *param_values[MG_HTTP_PATH_PARAMS_MAX];
    unsigned param_count;
    const struct http__kv *headers;
    unsigned header_count;
    const struct http__kv *query;
    unsigned query_count;

    unsigned char *body; /* body_cap + 1 bytes (room for the NUL), or NULL */
    size_t body_len;
    size_t body_cap;
    size_t body_discarded_bytes; /* after a 413 decided mid-body */

    unsigned error_status; /* 400/404/405/413/414 answered here; 0 = dispatch to the route */
    const char *error_reason;
    char *allow; /* for a 405: the Allow header value */
    bool has_body;

    bool mhd_owned;
    bool app_owned;
    bool handler_called;
    bool in_handler;
    bool suspended;
    bool replied;
    bool queued;
    bool reply_failed;
    struct http__injected *injected; /* mg_http_server_inject's result, while it runs */

    char *arena_next; /* bump allocation while the request is built */
    size_t arena_left;
    alignas(max_align_t) char arena[];
};

/* One connection, from MHD's STARTED to its CLOSED notification. An idle one (no request being
 * read or answered) sits in the server's idle list, oldest first, so that the connection
 * limit can close the one that waited longest when a new client arrives. */
typedef struct http__conn {
    struct MHD_Connection *conn;
    struct http__conn *idle_prev;
    struct http__conn *idle_next;
    bool idle;    /* in srv->idle_head list */
    bool evicted; /* shut down to make room; MHD closes it on its next run */
} http__conn;

struct mg_http_server {
    uv_loop_t *loop;
    uv_thread_t loop_thread;
    uv_timer_t timer; /* MHD timeouts and kicks after resume */
    uv_poll_t poll;   /* MHD's epoll fd */
    struct MHD_Daemon *daemon;

    char *host; /* NULL = all IPv4 addresses */
    uint16_t port_wanted;
    uint16_t port_bound;
    size_t body_bytes_max;
    unsigned connections_max;
    unsigned timeout_s;

    struct http__route *routes[MG_HTTP_ROUTES_MAX];
    unsigned route_count;
    size_t param_names_bytes_max; /* over all routes */

    mg_http_request *pending; /* suspended requests waiting for a late reply */
    unsigned pending_count;
    unsigned request_count; /* requests MHD owns */

    mg_listener *listener; /* accepts (with back-off) and hands sockets to MHD */
    http__conn *idle_head; /* idle connections, the longest idle first */
    http__conn *idle_tail;
    unsigned conn_count;     /* connections MHD holds (tracked ones) */
    unsigned evicting_count; /* shut down for room, not yet closed by MHD */
    mg_counter *m_evicted;   /* NULL without metrics */
    mg_counter *m_refused;

    unsigned handles_open; /* the timer, the poll handle and the listener, while open */
    bool poll_open;
    bool started;
    bool closing;
    bool in_run;
    bool kick;
    void (*closed_fn)(void *arg);
    void *closed_arg;
};

static void http__assert_loop_thread(const mg_http_server *srv)
{
    uv_thread_t self = uv_thread_self();
    MG_ASSERT(uv_thread_equal(&srv->loop_thread, &self));
}

/* ---- small text helpers ---------------------------------------------------------------- */

static int http__hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..src_len) into dst (which has room for src_len + 1 bytes) and
 * NUL-terminates it. A '%' not followed by two hex digits is kept as it is. Sets *has_nul when
 * "%00" appeared (the C string would be cut there). Returns the decoded length. */
static size_t http__pct_decode(char *dst, const char *src, size_t src_len, bool plus_is_space,
                               bool *has_nul)
{
    size_t o = 0;
    for (size_t i = 0; i < src_len; i++) {
        char c = src[i];
        if (c == '%' && i + 2 < src_len) {
            int hi = http__hex_value(src[i + 1]);
            int lo = http__hex_value(src[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                if (c == '\0' && has_nul != NULL)
                    *has_nul = true;
                i += 2;
            }
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        dst[o++] = c;
    }
    dst[o] = '\0';
    return o;
}

/* Builds {"reason":"..."} with reason JSON-escaped. Returns an mg_malloc'd string (length in
 * *len_out) or NULL when out of memory. */
static char *http__json_reason(const char *reason, size_t *len_out)
{
    static const char prefix[] = "{\"reason\":\"";
    static const char suffix[] = "\"}";
    size_t reason_len = strlen(reason);
    /* Worst case every byte becomes \u00XX. */
    size_t cap = sizeof(prefix) - 1 + reason_len * 6 + sizeof(suffix);
    char *out = mg_malloc(cap);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    memcpy(out, prefix, sizeof(prefix) - 1);
    o += sizeof(prefix) - 1;
    for (size_t i = 0; i < reason_len; i++) {
        unsigned char c = (unsigned char)reason[i];
        switch (c) {
        case '"':
            out[o++] = '\\';
            out[o++] = '"';
            break;
        case '\\':
            out[o++] = '\\';
            out[o++] = '\\';
            break;
        case '\b':
            out[o++] = '\\';
            out[o++] = 'b';
            break;
        case '\f':
            out[o++] = '\\';
            out[o++] = 'f';
            break;
        case '\n':
            out[o++] = '\\';
            out[o++] = 'n';
            break;
        case '\r':
            out[o++] = '\\';
            out[o++] = 'r';
            break;
        case '\t':
            out[o++] = '\\';
            out[o++] = 't';
            break;
        default:
            if (c < 0x20) {
                static const char hex[] = "0123456789abcdef";
                out[o++] = '\\';
                out[o++] = 'u';
                out[o++] = '0';
                out[o++] = '0';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 0xf];
            } else {
                out[o++] = (char)c; /* UTF-8 passes through */
            }
        }
    }
    memcpy(out + o, suffix, sizeof(suffix)); /* with its NUL */
    o += sizeof(suffix) - 1;
    MG_ASSERT(o < cap);
    *len_out = o;
    return out;
}

/* ---- route patterns ----------------------------------------------------------------------- */

static bool http__is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool http__method_valid(const char *method)
{
    size_t len = strlen(method);
    if (len == 0 || len >= MG_HTTP_METHOD_BYTES_MAX)
        return false;
    if (strcmp(method, "*") == 0)
        return true;
    for (size_t i = 0; i < len; i++) {
        char c = method[i];
        /* RFC 9110 token characters. */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c) != NULL))
            return false;
    }
    return true;
}

/* Splits pattern into segs (pointing into pattern). Errors: MG_EINVAL, MG_ELIMIT. */
static int http__parse_pattern(const char *pattern, struct http__seg *segs, unsigned *seg_count,
                               unsigned *param_count, size_t *names_bytes)
{
    unsigned n = 0, params = 0;
    size_t bytes = 0;
    if (pattern[0] != '/')
        return MG_EINVAL;
    const char *p = pattern + 1;
    if (*p != '\0') {
        for (;;) {
            const char *end = strchr(p, '/');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
            if (len == 0)
                return MG_EINVAL; /* "//" or a trailing '/' */
            if (n == MG_HTTP_PATH_SEGMENTS_MAX)
                return MG_ELIMIT;
            struct http__seg *s = &segs[n];
            if (p[0] == '{') {
                if (len < 3 || p[len - 1] != '}')
                    return MG_EINVAL;
                s->text = p + 1;
                s->text_len = len - 2;
                s->kind = HTTP__SEG_PARAM;
                if (s->text[s->text_len - 1] == '*') {
                    s->kind = HTTP__SEG_REST;
                    s->text_len--;
                    if (s->text_len == 0 || end != NULL)
                        return MG_EINVAL; /* {*} or {rest*} not last */
                }
                for (size_t i = 0; i < s->text_len; i++) {
                    if (!http__is_name_char(s->text[i]))
                        return MG_EINVAL;
                }
                for (unsigned j = 0; j < n; j++) {
                    if (segs[j].kind != HTTP__SEG_LITERAL && segs[j].text_len == s->text_len &&
                        memcmp(segs[j].text, s->text, s->text_len) == 0)
                        return MG_EINVAL; /* duplicate parameter name */
                }
                if (params == MG_HTTP_PATH_PARAMS_MAX)
                    return MG_ELIMIT;
                params++;
                bytes += s->text_len + 1;
            } else {
                for (size_t i = 0; i < len; i++) {
                    if (strchr("{}?#%", p[i]) != NULL)
                        return MG_EINVAL;
                }
                s->text = p;
                s->text_len = len;
                s->kind = HTTP__SEG_LITERAL;
            }
            n++;
            if (end == NULL)
                break;
            p = end + 1;
        }
    }
    *seg_count = n;
    *param_count = params;
    *names_bytes = bytes;
    return MG_OK;
}

/* ---- the request path, split into decoded segments ---------------------------------------- */

struct http__path {
    const char *raw; /* as received, starts with '/', no query */
    size_t raw_len;
    unsigned seg_count;
    const char *seg[MG_HTTP_PATH_SEGMENTS_MAX]; /* decoded, NUL-terminated, in the arena */
    size_t seg_len[MG_HTTP_PATH_SEGMENTS_MAX];
    size_t seg_raw_off[MG_HTTP_PATH_SEGMENTS_MAX]; /* where the raw segment starts */
};

/* Does route r match path pv? With req, also records the route's parameters in req. */
static bool http__route_match(const struct http__route *r, const struct http__path *pv,
                              mg_http_request *req)
{
    unsigned i;
    for (i = 0; i < r->seg_count; i++) {
        const struct http__seg *s = &r->segs[i];
        if (i >= pv->seg_count)
            return false;
        if (s->kind == HTTP__SEG_REST) {
            for (unsigned j = i; j < pv->seg_count; j++) {
                if (pv->seg_len[j] == 0)
                    return false;
            }
            if (req != NULL) {
                size_t off = pv->seg_raw_off[i];
                char *value = req->arena_next;
                MG_ASSERT(pv->raw_len - off + 1 <= req->arena_left); /* decoding only shrinks */
                size_t len = http__pct_decode(value, pv->raw + off, pv->raw_len - off, false, NULL);
                req->arena_next += len + 1;
                req->arena_left -= len + 1;
                req->param_values[req->param_count] = value;
            }
        } else if (s->kind == HTTP__SEG_PARAM) {
            if (pv->seg_len[i] == 0)
                return false;
            if (req != NULL)
                req->param_values[req->param_count] = pv->seg[i];
        } else if (pv->seg_len[i] != s->text_len || memcmp(pv->seg[i], s->text, s->text_len) != 0) {
            return false;
        }
        if (req != NULL && s->kind != HTTP__SEG_LITERAL) {
            MG_ASSERT(s->text_len + 1 <= req->arena_left);
            char *name = req->arena_next;
            memcpy(name, s->text, s->text_len);
            name[s->text_len] = '\0';
            req->arena_next += s->text_len + 1;
            req->arena_left -= s->text_len + 1;
            req->param_names[req->param_count++] = name;
        }
        if (s->kind == HTTP__SEG_REST)
            return true;
    }
    return i == pv->seg_count;
}

static bool http__method_matches(const struct http__route *r, const char *method)
{
    return strcmp(r->method, "*") == 0 || strcmp(r->method, method) == 0;
}

/* Appends method to the comma-separated list in buf unless it is already there. */
static void http__allow_add(char *buf, size_t cap, const char *method)
{
    size_t method_len = strlen(method);
    const char *p = buf;
    while (*p != '\0') {
        const char *end = strstr(p, ", ");
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == method_len && memcmp(p, method, len) == 0)
            return;
        if (end == NULL)
            break;
        p = end + 2;
    }
    size_t used = strlen(buf);
    size_t need = (used > 0 ? 2 : 0) + method_len + 1;
    MG_ASSERT(used + need <= cap);
    if (used > 0) {
        memcpy(buf + used, ", ", 2);
        used += 2;
    }
    memcpy(buf + used, method, method_len + 1);
}

/* ---- request construction ------------------------------------------------------------------ */

struct http__kv_measure {
    unsigned count;
    size_t bytes;
};

static enum MHD_Result http__kv_measure_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct http__kv_measure *m = cls;
    m->count++;
    m->bytes += (key != NULL ? strlen(key) : 0) + 1 + (value != NULL ? strlen(value) : 0) + 1;
    return MHD_YES;
}

struct http__kv_fill {
    mg_http_request *req;
    struct http__kv *kv;
    unsigned count;
    unsigned cap;
    bool decode;
};

static char *http__arena_copy(mg_http_request *req, const char *text, bool decode)
{
    size_t len = text != NULL ? strlen(text) : 0;
    MG_ASSERT(len + 1 <= req->arena_left);
    char *out = req->arena_next;
    if (decode) {
        len = http__pct_decode(out, text != NULL ? text : "", len, true, NULL);
    } else {
        if (len > 0)
            memcpy(out, text, len);
        out[len] = '\0';
    }
    /* Decoding only shrinks; the measured size is reserved either way. */
    size_t reserved = (text != NULL ? strlen(text) : 0) + 1;
    req->arena_next += reserved;
    req->arena_left -= reserved;
    return out;
}

static enum MHD_Result http__kv_fill_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct http__kv_fill *f = cls;
    if (f->count == f->cap)
        return MHD_NO; /* cannot happen: measured just before */
    struct http__kv *kv = &f->kv[f->count++];
    kv->key = http__arena_copy(f->req, key, f->decode);
    kv->value = http__arena_copy(f->req, value, f->decode);
    return MHD_YES;
}

static const char *http__kv_find(const struct http__kv *kv, unsigned count, const char *key,
                                 bool caseless)
{
    for (unsigned i = 0; i < count; i++) {
        if ((caseless ? strcasecmp(kv[i].key, key) : strcmp(kv[i].key, key)) == 0)
            return kv[i].value;
    }
    return NULL;
}

/* Parses a Content-Length value; false if it is not a plain decimal that fits. */
static bool http__parse_length(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return false;
    for (; *text != '\0'; text++) {
        if (*text < '0' || *text > '9')
            return false;
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*text - '0');
    }
    *out = v;
    return true;
}

static void http__request_free(mg_http_request *req)
{
    MG_ASSERT(!req->mhd_owned && !req->app_owned);
    MG_ASSERT(req->response == NULL);
    mg_free(req->body);
    mg_free(req->allow);
    mg_free(req);
}

/* Splits and decodes the raw path into pv and req->path; sets req->error_status on a bad
 * path. */
static void http__request_split_path(mg_http_request *req, const char *url, size_t url_len,
                                     struct http__path *pv)
{
    bool has_nul = false;
    char *path = req->arena_next;
    (void)http__pct_decode(path, url, url_len, false, &has_nul);
    req->arena_next += url_len + 1;
    req->arena_left -= url_len + 1;
    req->path = path;

    pv->raw = url;
    pv->raw_len = url_len;
    pv->seg_count = 0;
    if (url[0] != '/' || has_nul) {
        req->error_status = MHD_HTTP_BAD_REQUEST;
        req->error_reason = "invalid request path";
        return;
    }
    char *segs = req->arena_next;
    req->arena_next += url_len + 1;
    req->arena_left -= url_len + 1;
    if (url_len == 1)
        return; /* "/" */
    size_t pos = 1;
    for (;;) {
        const char *end = memchr(url + pos, '/', url_len - pos);
        size_t len = end != NULL ? (size_t)(end - (url + pos)) : url_len - pos;
        if (pv->seg_count == MG_HTTP_PATH_SEGMENTS_MAX) {
            req->error_status = MHD_HTTP_URI_TOO_LONG;
            req->error_reason = "request path has too many segments";
            return;
        }
        unsigned i = pv->seg_count++;
        pv->seg[i] = segs;
        pv->seg_len[i] = http__pct_decode(segs, url + pos, len, false, NULL);
        pv->seg_raw_off[i] = pos;
        segs += pv->seg_len[i] + 1;
        if (end == NULL)
            break;
        pos += len + 1;
    }
}

/* Calls it(cls, kind, key, value) for each header (MHD_HEADER_KIND) or query argument
 * (MHD_GET_ARGUMENT_KIND) of src, until it returns MHD_NO. */
static void http__source_each(const struct http__source *src, enum MHD_ValueKind kind,
                              MHD_KeyValueIterator it, void *cls)
{
    if (src->conn != NULL) {
        MHD_get_connection_values(src->conn, kind, it, cls);
        return;
    }
    bool headers = kind == MHD_HEADER_KIND;
    const char *const *kv = headers ? src->headers : src->query;
    size_t count = headers ? src->header_count : src->query_count;
    for (size_t i = 0; i < count; i++) {
        if (it(cls, kind, kv[2 * i], kv[2 * i + 1]) != MHD_YES)
            break;
    }
}

/* Allocates the request for a connection whose headers have arrived (or for
 * mg_http_server_inject), copies what it needs from src, and routes it. Errors: MG_ENOMEM. */
static int http__request_create(mg_http_server *srv, const struct http__source *src,
                                const char *url, const char *method, mg_http_request **out)
{
    struct http__kv_measure hm = { 0 }, qm = { 0 };
    http__source_each(src, MHD_HEADER_KIND, http__kv_measure_cb, &hm);
    http__source_each(src, MHD_GET_ARGUMENT_KIND, http__kv_measure_cb, &qm);
    size_t url_len = strlen(url);
    size_t method_len = strlen(method);
    /* kv arrays first (pointer-aligned), then strings: method, decoded path, decoded segments,
     * a {rest*} value, parameter names, headers, query. */
    size_t arena_bytes = (size_t)(hm.count + qm.count) * sizeof(struct http__kv) + method_len + 1 +
                         3 * (url_len + 1) + srv->param_names_bytes_max + hm.bytes + qm.bytes;
    mg_http_request *req = mg_malloc(sizeof(*req) + arena_bytes);
    if (req == NULL)
        return MG_ENOMEM;
    memset(req, 0, sizeof(*req));
    req->arena_next = req->arena;
    req->arena_left = arena_bytes;
    req->srv = srv;
    req->conn = src->conn;

    struct http__kv *headers = (struct http__kv *)(void *)req->arena_next;
    req->arena_next += hm.count * sizeof(struct http__kv);
    struct http__kv *query = (struct http__kv *)(void *)req->arena_next;
    req->arena_next += qm.count * sizeof(struct http__kv);
    req->arena_left -= (size_t)(hm.count + qm.count) * sizeof(struct http__kv);

    struct http__kv_fill hf = { .req = req, .kv = headers, .cap = hm.count, .decode = false };
    http__source_each(src, MHD_HEADER_KIND, http__kv_fill_cb, &hf);
    req->headers = headers;
    req->header_count = hf.count;
    struct http__kv_fill qf = { .req = req, .kv = query, .cap = qm.count, .decode = true };
    http__source_each(src, MHD_GET_ARGUMENT_KIND, http__kv_fill_cb, &qf);
    req->query = query;
    req->query_count = qf.count;
    req->method = http__arena_copy(req, method, false);

    struct http__path pv;
    http__request_split_path(req, url, url_len, &pv);
    if (req->error_status == 0) {
        const struct http__route *found = NULL;
        bool path_matched = false;
        for (unsigned i = 0; i < srv->route_count && found == NULL; i++) {
            const struct http__route *r = srv->routes[i];
            if (!http__route_match(r, &pv, NULL))
                continue;
            if (http__method_matches(r, method))
                found = r;
            else
                path_matched = true;
        }
        if (found != NULL) {
            req->route = found;
            bool matched = http__route_match(found, &pv, req); /* again, recording parameters */
            MG_ASSERT(matched);
        } else if (path_matched) {
            char allow[MG_HTTP_ROUTES_MAX * (MG_HTTP_METHOD_BYTES_MAX + 2)];
            allow[0] = '\0';
            for (unsigned i = 0; i < srv->route_count; i++) {
                if (http__route_match(srv->routes[i], &pv, NULL))
                    http__allow_add(allow, sizeof(allow), srv->routes[i]->method);
            }
            size_t allow_len = strlen(allow);
            req->allow = mg_malloc(allow_len + 1);
            if (req->allow == NULL) {
                http__request_free(req);
                return MG_ENOMEM;
            }
            memcpy(req->allow, allow, allow_len + 1);
            req->error_status = MHD_HTTP_METHOD_NOT_ALLOWED;
            req->error_reason = "method not allowed for this path";
        } else {
            req->error_status = MHD_HTTP_NOT_FOUND;
            req->error_reason = "no handler for this path";
        }
    }

    const char *te = http__kv_find(req->headers, req->header_count, "Transfer-Encoding", true);
    const char *cl = http__kv_find(req->headers, req->header_count, "Content-Length", true);
    uint64_t content_length = 0;
    bool have_length = cl != NULL && http__parse_length(cl, &content_length);
    req->has_body = te != NULL || (have_length && content_length > 0);
    if (req->error_status == 0 && have_length && content_length > srv->body_bytes_max) {
        req->error_status = MHD_HTTP_CONTENT_TOO_LARGE;
        req->error_reason = "request body is larger than the server accepts";
    }
    if (req->error_status == 0 && have_length && content_length > 0) {
        /* The declared size is known and within the limit: allocate it once. */
        req->body = mg_malloc((size_t)content_length + 1);
        if (req->body == NULL) {
            http__request_free(req);
            return MG_ENOMEM;
        }
        req->body_cap = (size_t)content_length;
    }
    *out = req;
    return MG_OK;
}

/* ---- responses ------------------------------------------------------------------------------ */

static struct MHD_Response *http__response_new(const char *content_type, const void *body,
                                               size_t body_len, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        body_len, (void *)(body != NULL ? body : ""), MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return NULL;
    if ((content_type != NULL &&
         MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) ||
        (allow != NULL && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

/* Queues a response on req's connection (inside the access handler). */
static enum MHD_Result http__queue(mg_http_request *req, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp); /* MHD holds its own reference */
    if (r == MHD_YES)
        req->queued = true;
    return r;
}

static enum MHD_Result http__queue_error(mg_http_request *req)
{
    size_t len;
    char *json = http__json_reason(req->error_reason, &len);
    if (json == NULL)
        return MHD_NO;
    struct MHD_Response *resp = http__response_new("application/json", json, len, req->allow);
    mg_free(json);
    if (resp == NULL)
        return MHD_NO;
    return http__queue(req, req->error_status, resp);
}

/* ---- the loop side ------------------------------------------------------------------------- */

static void http__on_timer(uv_timer_t *timer);

/* Sets the timer from MHD's next deadline (or to 0 ms after a resume). */
static void http__schedule(mg_http_server *srv)
{
    MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
    if (srv->kick) {
        srv->kick = false;
        uv_timer_start(&srv->timer, http__on_timer, 0, 0);
    } else if (MHD_get_timeout(srv->daemon, &timeout_ms) == MHD_YES) {
        uv_timer_start(&srv->timer, http__on_timer, (uint64_t)timeout_ms, 0);
    } else {
        uv_timer_stop(&srv->timer);
    }
}

static unsigned http__connection_count(mg_http_server *srv)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info != NULL ? info->num_connections : 0;
}

static void http__run(mg_http_server *srv)
{
    if (srv->closing)
        return;
    MG_ASSERT(!srv->in_run);
    srv->kick = false;
    srv->in_run = true;
    unsigned connections_before = http__connection_count(srv);
    if (MHD_run(srv->daemon) != MHD_YES)
        MG_WARN_LIMITED("http: MHD_run failed");
    /* MHD adds or removes its listen socket (connection limit) only at the start of a pass. */
    if (http__connection_count(srv) != connections_before)
        srv->kick = true;
    srv->in_run = false;
    if (!srv->closing)
        http__schedule(srv);
}

/* Makes MHD run soon (after MHD_resume_connection), never from inside MHD_run. */
static void http__kick(mg_http_server *srv)
{
    srv->kick = true;
    if (!srv->in_run)
        uv_timer_start(&srv->timer, http__on_timer, 0, 0);
}

static void http__on_timer(uv_timer_t *timer)
{
    http__run(timer->data);
}

static void http__on_poll(uv_poll_t *poll, int status, int events)
{
    mg_http_server *srv = poll->data;
    if (status < 0)
        MG_WARN_LIMITED("http: polling the MHD epoll fd failed: %s", uv_strerror(status));
    http__run(srv);
}

/* ---- connections and the connection limit ---------------------------------------------- */

static void http__idle_unlink(mg_http_server *srv, http__conn *hc)
{
    if (!hc->idle)
        return;
    if (hc->idle_prev != NULL)
        hc->idle_prev->idle_next = hc->idle_next;
    else
        srv->idle_head = hc->idle_next;
    if (hc->idle_next != NULL)
        hc->idle_next->idle_prev = hc->idle_prev;
    else
        srv->idle_tail = hc->idle_prev;
    hc->idle_prev = hc->idle_next = NULL;
    hc->idle = false;
}

static void http__idle_append(mg_http_server *srv, http__conn *hc)
{
    if (hc->idle || hc->evicted)
        return;
    hc->idle_prev = srv->idle_tail;
    hc->idle_next = NULL;
    if (srv->idle_tail != NULL)
        srv->idle_tail->idle_next = hc;
    else
        srv->idle_head = hc;
    srv->idle_tail = hc;
    hc->idle = true;
}

static http__conn *http__conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

static void http__on_connection_notify(void *cls, struct MHD_Connection *conn,
                                       void **socket_context,
                                       enum MHD_ConnectionNotificationCode code)
{
    mg_http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        http__conn *hc = mg_calloc(1, sizeof(*hc));
        *socket_context = hc;
        if (hc == NULL)
            return; /* untracked: never evicted, but served */
        hc->conn = conn;
        srv->conn_count++;
        http__idle_append(srv, hc);
        return;
    }
    http__conn *hc = *socket_context;
    if (hc == NULL)
        return;
    *socket_context = NULL;
    http__idle_unlink(srv, hc);
    if (hc->evicted) {
        MG_ASSERT(srv->evicting_count > 0);
        srv->evicting_count--;
    }
    MG_ASSERT(srv->conn_count > 0);
    srv->conn_count--;
    mg_free(hc);
}

/* Shuts down the connection idle the longest, if any; MHD sees the end of its stream and closes
 * it on its next run. Returns false when every connection is busy. */
static bool http__evict_idle(mg_http_server *srv)
{
    http__conn *hc = srv->idle_head;
    if (hc == NULL)
        return false;
    http__idle_unlink(srv, hc);
    hc->evicted = true;
    srv->evicting_count++;
    mg_counter_inc(srv->m_evicted);
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(hc->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info != NULL)
        (void)shutdown(info->connect_fd, SHUT_RDWR);
    MG_DEBUG("http: %u connections open (limit %u): closed the one idle the longest",
             srv->conn_count - srv->evicting_count, srv->connections_max);
    return true;
}

static void http__run(mg_http_server *srv);

/* The process ran out of descriptors: an idle connection gives its own back. */
static bool http__on_exhausted(void *arg)
{
    mg_http_server *srv = arg;
    if (srv->closing || !http__evict_idle(srv))
        return false;
    http__kick(srv);
    return true;
}

/* A socket from the listener. Past connections_max, the connection idle the longest makes room
 * (so a health check is answered while idle clients hold every slot); MHD's own limit is
 * connections_max + MG_HTTP_CONNECTIONS_RESERVE, the room for new connections while evicted
 * ones are still closing. */
static void http__on_accept(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    mg_http_server *srv = arg;
    if (srv->closing || srv->daemon == NULL) {
        close(fd);
        return;
    }
    if (srv->conn_count - srv->evicting_count >= srv->connections_max)
        (void)http__evict_idle(srv);
    if (srv->conn_count >= srv->connections_max + MG_HTTP_CONNECTIONS_RESERVE &&
        srv->evicting_count > 0)
        http__run(srv); /* lets MHD close the evicted connections now */
    if (srv->closing || srv->conn_count >= srv->connections_max + MG_HTTP_CONNECTIONS_RESERVE) {
        close(fd);
        mg_counter_inc(srv->m_refused);
        MG_WARN_LIMITED("http: %u connections, all busy (limit %u): refusing another",
                        srv->conn_count, srv->connections_max);
        return;
    }
    if (MHD_add_connection(srv->daemon, fd, addr, addr_len) != MHD_YES) {
        int e = errno; /* MHD closed the socket */
        mg_counter_inc(srv->m_refused);
        MG_WARN_LIMITED("http: libmicrohttpd did not take a connection: %s", strerror(e));
    }
    http__kick(srv); /* MHD reads what the client already sent */
}

static void http__pending_add(mg_http_server *srv, mg_http_request *req)
{
    MG_ASSERT(!req->suspended);
    req->suspended = true;
    req->pending_prev = NULL;
    req->pending_next = srv->pending;
    if (srv->pending != NULL)
        srv->pending->pending_prev = req;
    srv->pending = req;
    srv->pending_count++;
}

static void http__pending_remove(mg_http_server *srv, mg_http_request *req)
{
    MG_ASSERT(req->suspended && srv->pending_count > 0);
    if (req->pending_prev != NULL)
        req->pending_prev->pending_next = req->pending_next;
    else
        srv->pending = req->pending_next;
    if (req->pending_next != NULL)
        req->pending_next->pending_prev = req->pending_prev;
    req->pending_prev = req->pending_next = NULL;
    req->suspended = false;
    srv->pending_count--;
}

/* The app lets go of req (its reply was given). */
static void http__app_release(mg_http_request *req)
{
    MG_ASSERT(req->app_owned);
    req->app_owned = false;
    if (!req->mhd_owned)
        http__request_free(req);
}

/* ---- MHD callbacks ------------------------------------------------------------------------- */

static enum MHD_Result http__on_body(mg_http_server *srv, mg_http_request *req, const char *data,
                                     size_t *data_size)
{
    size_t n = *data_size;
    *data_size = 0; /* all consumed */
    if (req->error_status != 0) {
        /* A 413 found mid-body (chunked): read on, bounded, so the reply can still be sent. */
        req->body_discarded_bytes += n;
        return req->body_discarded_bytes <= srv->body_bytes_max ? MHD_YES : MHD_NO;
    }
    if (n > srv->body_bytes_max - req->body_len) {
        req->error_status = MHD_HTTP_CONTENT_TOO_LARGE;
        req->error_reason = "request body is larger than the server accepts";
        req->body_discarded_bytes = req->body_len + n;
        mg_free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return MHD_YES;
    }
    if (req->body_len + n > req->body_cap) {
        size_t cap = req->body_cap > 0 ? req->body_cap : 4096;
        while (cap < req->body_len + n)
            cap *= 2;
        if (cap > srv->body_bytes_max)
            cap = srv->body_bytes_max;
        unsigned char *body = mg_realloc(req->body, cap + 1);
        if (body == NULL) {
            MG_WARN_LIMITED("http: out of memory for a %zu-byte request body", req->body_len + n);
            return MHD_NO;
        }
        req->body = body;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    return MHD_YES;
}

static enum MHD_Result http__on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_data_size,
                                       void **req_cls)
{
    mg_http_server *srv = cls;
    mg_http_request *req = *req_cls;

    if (req == NULL) {
        /* Headers have arrived: the connection is busy until the request completes. */
        http__conn *hc = http__conn_of(conn);
        if (hc != NULL)
            http__idle_unlink(srv, hc);
        if (srv->closing)
            return MHD_NO;
        struct http__source src = { .conn = conn };
        int rc = http__request_create(srv, &src, url, method, &req);
        if (rc != MG_OK) {
            MG_WARN_LIMITED("http: dropping a %s request: %s", method, mg_strerror(rc));
            return MHD_NO;
        }
        req->mhd_owned = true;
        srv->request_count++;
        *req_cls = req;
        /* Answer an error before the body only when there is a body: MHD then skips it and
         * closes the connection; a bodiless request keeps its keep-alive connection. */
        if (req->error_status != 0 && req->has_body)
            return http__queue_error(req);
        return MHD_YES;
    }
    if (*upload_data_size != 0)
        return http__on_body(srv, req, upload_data, upload_data_size);

    /* The whole request is here, or the connection was resumed. */
    if (req->queued)
        return MHD_YES;
    if (req->response != NULL) {
        struct MHD_Response *resp = req->response;
        req->response = NULL;
        return http__queue(req, req->response_status, resp);
    }
    if (req->reply_failed || srv->closing)
        return MHD_NO;
    if (req->error_status != 0)
        return http__queue_error(req);
    if (req->handler_called)
        return MHD_NO; /* resumed without a reply: cannot happen outside close */

    if (req->body != NULL)
        req->body[req->body_len] = '\0';
    req->handler_called = true;
    req->app_owned = true;
    req->in_handler = true;
    req->route->fn(req, req->route->arg);
    req->in_handler = false;
    /* req is still valid: MHD owns it until the completed callback. */
    if (req->queued)
        return MHD_YES;
    if (req->replied || srv->closing)
        return MHD_NO; /* the reply failed, or the server is closing under the handler */
    MHD_suspend_connection(conn);
    http__pending_add(srv, req);
    return MHD_YES;
}

static void http__on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                               enum MHD_RequestTerminationCode toe)
{
    mg_http_server *srv = cls;
    mg_http_request *req = *req_cls;
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* Kept alive and idle until the next request (other endings close the connection). */
        http__conn *hc = http__conn_of(conn);
        if (hc != NULL)
            http__idle_append(srv, hc);
    }
    if (req == NULL)
        return;
    *req_cls = NULL;
    MG_ASSERT(req->mhd_owned && srv->request_count > 0);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        MG_DEBUG("http: %s %s ended early (MHD code %d)", req->method, req->path, (int)toe);
    if (req->suspended)
        http__pending_remove(srv, req);
    if (req->response != NULL) {
        MHD_destroy_response(req->response);
        req->response = NULL;
    }
    req->mhd_owned = false;
    req->conn = NULL;
    req->srv = NULL;
    srv->request_count--;
    if (!req->app_owned)
        http__request_free(req);
}

/* MHD leaves the URL and query as received; they are decoded segment by segment here. */
static size_t http__unescape_none(void *cls, struct MHD_Connection *conn, char *s)
{
    return strlen(s);
}

__attribute__((format(printf, 2, 0))) static void http__on_mhd_log(void *cls, const char *fmt,
                                                                   va_list ap)
{
    char text[512];
    vsnprintf(text, sizeof(text), fmt, ap);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    MG_WARN_LIMITED("http: libmicrohttpd: %s", text);
}

/* ---- public API ---------------------------------------------------------------------------- */

int mg_http_server_create(uv_loop_t *loop, const mg_http_options *opts, mg_http_server **out)
{
    static const mg_http_options defaults = { 0 };
    MG_ASSERT(loop != NULL && out != NULL);
    if (opts == NULL)
        opts = &defaults;
    if (opts->host != NULL && strlen(opts->host) >= MG_HTTP_HOST_BYTES_MAX)
        return MG_EINVAL;
    mg_http_server *srv = mg_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return MG_ENOMEM;
    if (opts->host != NULL) {
        size_t len = strlen(opts->host);
        srv->host = mg_malloc(len + 1);
        if (srv->host == NULL) {
            mg_free(srv);
            return MG_ENOMEM;
        }
        memcpy(srv->host, opts->host, len + 1);
    }
    srv->loop = loop;
    srv->loop_thread = uv_thread_self();
    srv->port_wanted = opts->port;
    srv->body_bytes_max = opts->body_bytes_max != 0 ? opts->body_bytes_max : MG_HTTP_BODY_BYTES_MAX;
    srv->connections_max =
        opts->connections_max != 0 ? opts->connections_max : MG_HTTP_CONNECTIONS_MAX;
    srv->timeout_s = opts->timeout_s != 0 ? opts->timeout_s : MG_HTTP_TIMEOUT_S;
    if (opts->metrics != NULL) {
        srv->m_evicted = mg_metrics_unlabelled_counter(
            opts->metrics, "magnetar_http_connections_closed_idle_total",
            "Idle admin HTTP connections closed to make room for a new one at the limit");
        srv->m_refused = mg_metrics_unlabelled_counter(
            opts->metrics, "magnetar_http_connections_refused_total",
            "Admin HTTP connections closed at accept: every slot was busy");
    }
    MG_ASSERT(uv_timer_init(loop, &srv->timer) == 0);
    srv->timer.data = srv;
    srv->handles_open = 1;
    *out = srv;
    return MG_OK;
}

int mg_http_server_route(mg_http_server *srv, const char *method, const char *pattern,
                         mg_http_handler_fn fn, void *arg)
{
    MG_ASSERT(srv != NULL);
    http__assert_loop_thread(srv);
    if (srv->started || srv->closing)
        return MG_ESTATE;
    if (method == NULL || pattern == NULL || fn == NULL || !http__method_valid(method))
        return MG_EINVAL;
    struct http__seg segs[MG_HTTP_PATH_SEGMENTS_MAX];
    unsigned seg_count, param_count;
    size_t names_bytes;
    MG_TRY(http__parse_pattern(pattern, segs, &seg_count, &param_count, &names_bytes));
    if (srv->route_count == MG_HTTP_ROUTES_MAX)
        return MG_ELIMIT;

    size_t pattern_len = strlen(pattern);
    size_t segs_bytes = seg_count * sizeof(struct http__seg);
    struct http__route *r = mg_malloc(sizeof(*r) + segs_bytes + pattern_len + 1);
    if (r == NULL)
        return MG_ENOMEM;
    char *text = (char *)r + sizeof(*r) + segs_bytes;
    memcpy(text, pattern, pattern_len + 1);
    for (unsigned i = 0; i < seg_count; i++) {
        r->segs[i] = segs[i];
        r->segs[i].text = text + (segs[i].text - pattern);
    }
    r->fn = fn;
    r->arg = arg;
    memcpy(r->method, method, strlen(method) + 1);
    r->seg_count = seg_count;
    r->param_count = param_count;
    r->param_names_bytes = names_bytes;
    srv->routes[srv->route_count++] = r;
    if (names_bytes > srv->param_names_bytes_max)
        srv->param_names_bytes_max = names_bytes;
    return MG_OK;
}

/* "host:port" or "[v6]:port" for log messages. */
static void http__addr_text(char *buf, size_t cap, const char *host, unsigned port)
{
    if (strchr(host, ':') != NULL)
        snprintf(buf, cap, "[%s]:%u", host, port);
    else
        snprintf(buf, cap, "%s:%u", host, port);
}

int mg_http_server_start(mg_http_server *srv)
{
    MG_ASSERT(srv != NULL);
    http__assert_loop_thread(srv);
    MG_ASSERT(!srv->started && !srv->closing);
    srv->started = true; /* even on failure: start is once */
    const char *host = srv->host != NULL ? srv->host : "0.0.0.0";
    int fd = -1;
    int rc = mg_listen_socket("http", host, srv->port_wanted, SOMAXCONN, &fd, &srv->port_bound);
    if (rc != MG_OK)
        return rc;
    char addr[MG_HTTP_HOST_BYTES_MAX + 16];
    http__addr_text(addr, sizeof(addr), host, srv->port_bound);

    /* MHD gets no listen socket: the listener accepts (backing off when descriptors run out,
     * where MHD would busy-wait) and hands each socket over with MHD_add_connection. */
    /* The logger goes first so that MHD reports option errors through it. */
    // clang-format off
    srv->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL,
        http__on_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, http__on_mhd_log, (void *)srv,
        MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)(srv->connections_max + MG_HTTP_CONNECTIONS_RESERVE),
        MHD_OPTION_NOTIFY_CONNECTION, http__on_connection_notify, (void *)srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, (MHD_RequestCompletedCallback)http__on_completed, (void *)srv,
        MHD_OPTION_UNESCAPE_CALLBACK, http__unescape_none, (void *)NULL,
        MHD_OPTION_END);
    // clang-format on
    if (srv->daemon == NULL) {
        close(fd);
        srv->port_bound = 0;
        MG_ERROR("http: libmicrohttpd refused to start on %s", addr);
        return MG_ESYS;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    int uv_rc = info != NULL ? uv_poll_init(srv->loop, &srv->poll, info->epoll_fd) : UV_EINVAL;
    if (uv_rc == 0) {
        srv->poll.data = srv;
        srv->handles_open++;
        srv->poll_open = true;
        uv_rc = uv_poll_start(&srv->poll, UV_READABLE, http__on_poll);
    }
    if (uv_rc != 0) {
        /* The poll handle, if initialised, is closed by mg_http_server_close(); the daemon is
         * stopped there as well, after the handle. */
        MG_ERROR("http: cannot poll the libmicrohttpd epoll fd for %s: %s", addr,
                 uv_strerror(uv_rc));
        srv->port_bound = 0;
        close(fd);
        return mg_err_from_uv(uv_rc);
    }
    rc = mg_listener_start(srv->loop, fd, "http", http__on_accept, srv, &srv->listener);
    if (rc != MG_OK) {
        MG_ERROR("http: cannot accept on %s: %s", addr, mg_strerror(rc));
        srv->port_bound = 0;
        return rc;
    }
    mg_listener_on_exhausted(srv->listener, http__on_exhausted);
    srv->handles_open++;
    MG_INFO("http: listening on %s (at most %u connections)", addr, srv->connections_max);
    http__schedule(srv);
    return MG_OK;
}

uint16_t mg_http_server_port(const mg_http_server *srv)
{
    return srv->port_bound;
}

/* One of the timer, the poll handle and the listener has closed; the last frees the server. */
static void http__handle_released(mg_http_server *srv)
{
    MG_ASSERT(srv->handles_open > 0);
    if (--srv->handles_open > 0)
        return;
    if (srv->daemon != NULL) {
        /* The resumed connections are processed (the access handler refuses them while closing)
         * so that none is still suspended when the daemon stops (invariant 3). */
        (void)MHD_run(srv->daemon);
        MHD_stop_daemon(srv->daemon);
        srv->daemon = NULL;
    }
    MG_ASSERT(srv->request_count == 0 && srv->pending == NULL);
    for (unsigned i = 0; i < srv->route_count; i++)
        mg_free(srv->routes[i]);
    void (*closed_fn)(void *) = srv->closed_fn;
    void *closed_arg = srv->closed_arg;
    mg_free(srv->host);
    mg_free(srv);
    if (closed_fn != NULL)
        closed_fn(closed_arg);
}

static void http__on_handle_closed(uv_handle_t *handle)
{
    http__handle_released(handle->data);
}

static void http__on_listener_closed(void *arg)
{
    http__handle_released(arg);
}

void mg_http_server_close(mg_http_server *srv, void (*closed_fn)(void *arg), void *arg)
{
    MG_ASSERT(srv != NULL);
    http__assert_loop_thread(srv);
    MG_ASSERT(!srv->closing);
    srv->closing = true;
    srv->closed_fn = closed_fn;
    srv->closed_arg = arg;
    /* MHD must not be stopped with suspended connections; their requests become orphans when
     * MHD completes them, and their owners' replies will only free them. */
    while (srv->pending != NULL) {
        mg_http_request *req = srv->pending;
        http__pending_remove(srv, req);
        MHD_resume_connection(req->conn);
    }
    if (srv->listener != NULL) {
        mg_listener_close(srv->listener, http__on_listener_closed, srv);
        srv->listener = NULL;
    }
    if (srv->poll_open) {
        uv_poll_stop(&srv->poll);
        uv_close((uv_handle_t *)&srv->poll, http__on_handle_closed);
    }
    uv_timer_stop(&srv->timer);
    uv_close((uv_handle_t *)&srv->timer, http__on_handle_closed);
}

int mg_http_server_inject(mg_http_server *srv, const char *method, const char *url,
                          const char *const *headers, size_t header_count, const char *const *query,
                          size_t query_count, const void *body, size_t body_len, int *status)
{
    http__assert_loop_thread(srv);
    MG_ASSERT(method != NULL && url != NULL && status != NULL);
    MG_ASSERT(body != NULL || body_len == 0);
    *status = 0;
    if (srv->closing)
        return MG_ESTATE;
    struct http__source src = { NULL, headers, header_count, query, query_count };
    mg_http_request *req;
    MG_TRY(http__request_create(srv, &src, url, method, &req));
    /* The body as MHD hands it over (http__on_access), here in one piece. */
    if (req->error_status == 0 && body_len > 0) {
        size_t n = body_len;
        if (http__on_body(srv, req, body, &n) != MHD_YES) {
            http__request_free(req);
            return MG_ENOMEM;
        }
    }
    if (req->error_status != 0) {
        *status = (int)req->error_status;
        http__request_free(req);
        return MG_OK;
    }
    if (req->body != NULL)
        req->body[req->body_len] = '\0';
    struct http__injected result = { 0, false };
    req->injected = &result;
    req->handler_called = true;
    req->app_owned = true;
    req->in_handler = true;
    req->route->fn(req, req->route->arg);
    if (!result.replied) {
        /* The handler keeps the request and replies later, to nobody. */
        req->in_handler = false;
        req->injected = NULL;
    }
    *status = result.status;
    return MG_OK;
}

const char *mg_http_request_method(const mg_http_request *req)
{
    return req->method;
}

const char *mg_http_request_path(const mg_http_request *req)
{
    return req->path;
}

const char *mg_http_request_param(const mg_http_request *req, const char *name)
{
    for (unsigned i = 0; i < req->param_count; i++) {
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    }
    return NULL;
}

const char *mg_http_request_query(const mg_http_request *req, const char *key)
{
    return http__kv_find(req->query, req->query_count, key, false);
}

const char *mg_http_request_header(const mg_http_request *req, const char *name)
{
    return http__kv_find(req->headers, req->header_count, name, true);
}

const void *mg_http_request_body(const mg_http_request *req, size_t *len)
{
    *len = req->body_len;
    return req->body_len > 0 ? (const void *)req->body : (const void *)"";
}

int mg_http_reply(mg_http_request *req, int status, const char *content_type, const void *body,
                  size_t body_len)
{
    return mg_http_reply_headers(req, status, content_type, NULL, 0, body, body_len);
}

int mg_http_reply_headers(mg_http_request *req, int status, const char *content_type,
                          const char *const *headers, size_t header_count, const void *body,
                          size_t body_len)
{
    MG_ASSERT(req != NULL);
    MG_ASSERT(req->app_owned && !req->replied); /* exactly one reply per request */
    MG_ASSERT(status >= 100 && status <= 599);
    MG_ASSERT(body != NULL || body_len == 0);
    MG_ASSERT(content_type == NULL || strpbrk(content_type, "\r\n") == NULL);
    req->replied = true;
    if (req->injected != NULL) {
        req->injected->status = status;
        req->injected->replied = true;
    }
    if (!req->mhd_owned || req->srv->closing) {
        /* The connection or the server is gone: nothing to send. */
        http__app_release(req);
        return MG_ECLOSED;
    }
    mg_http_server *srv = req->srv;
    http__assert_loop_thread(srv);
    int rc = MG_OK;
    struct MHD_Response *resp = http__response_new(content_type, body, body_len, NULL);
    for (size_t i = 0; resp != NULL && i < header_count; i++) {
        MG_ASSERT(strpbrk(headers[2 * i], "\r\n:") == NULL);
        MG_ASSERT(strpbrk(headers[2 * i + 1], "\r\n") == NULL);
        if (MHD_add_response_header(resp, headers[2 * i], headers[2 * i + 1]) != MHD_YES) {
            MHD_destroy_response(resp);
            resp = NULL;
        }
    }
    if (resp == NULL) {
        MG_WARN_LIMITED("http: out of memory for the reply to %s %s", req->method, req->path);
        req->reply_failed = true;
        rc = MG_ENOMEM;
    }
    if (req->in_handler) {
        if (resp != NULL && http__queue(req, (unsigned)status, resp) != MHD_YES) {
            req->reply_failed = true;
            rc = MG_ENOMEM;
        }
    } else {
        /* Late: the connection was suspended when the handler returned. MHD calls the access
         * handler again once resumed, which queues the response kept here. */
        MG_ASSERT(req->suspended);
        req->response = resp;
        req->response_status = (unsigned)status;
        http__pending_remove(srv, req);
        MHD_resume_connection(req->conn);
        http__kick(srv);
    }
    http__app_release(req);
    return rc;
}

int mg_http_reply_json_error(mg_http_request *req, int status, const char *reason)
{
    MG_ASSERT(reason != NULL);
    size_t len = 0;
    char *json = http__json_reason(reason, &len);
    if (json == NULL) {
        /* Still give the reply (the request must be answered once); without a body. */
        int rc = mg_http_reply(req, status, "application/json", "{}", 2);
        return rc == MG_OK ? MG_ENOMEM : rc;
    }
    int rc = mg_http_reply(req, status, "application/json", json, len);
    mg_free(json);
    return rc;
}
