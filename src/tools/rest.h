/*
 * Blocking HTTP requests to a broker's admin REST API, for the command-line tools
 * (`magnetar admin`, `magnetar replay`). Built on libcurl (Debian libcurl4-openssl-dev): the
 * tools make a few requests each, one at a time, so a blocking call keeps them simple, and
 * libcurl brings redirects, timeouts, IPv6 and TLS (https:// admin URLs) that a hand-written
 * client would have to grow.
 */
#ifndef MG_TOOLS_REST_H
#define MG_TOOLS_REST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest error text mg_rest_request writes. */
#define MG_REST_ERR_BYTES 512

/* Largest response body kept; a longer one fails the request (an admin answer is small; a
 * peeked message is at most the broker's largest message). */
#define MG_REST_BODY_BYTES_MAX (64u << 20)

typedef struct mg_rest_reply {
    long status; /* HTTP status, e.g. 200, 204, 404 */
    char *body;  /* the body, NUL-terminated (len excludes the NUL); never NULL on success */
    size_t len;
    char *headers; /* the response's header lines ("Name: value\r\n" each), NUL-terminated */
} mg_rest_reply;

typedef struct mg_rest_request_opts {
    const char *method;       /* "GET", "PUT", "POST", "DELETE" */
    const char *content_type; /* of body; NULL: "application/json" when there is a body */
    const void *body;         /* may be NULL */
    size_t body_len;
    int64_t timeout_ms; /* the whole request; 0 = 30 s */
} mg_rest_request_opts;

/* Sends method base_url + path (path starts with '/'; base_url may end with '/', which is
 * dropped) and fills *out. Returns 0 when an HTTP answer arrived, whatever its status;
 * otherwise -1 with the reason in err (at most err_size bytes: could not connect, timed out,
 * body too large...) and *out zeroed. Free out with mg_rest_reply_free. */
int mg_rest_request(const char *base_url, const char *path, const mg_rest_request_opts *opts,
                    mg_rest_reply *out, char *err, size_t err_size);

void mg_rest_reply_free(mg_rest_reply *r);

/* The value of header name (case-insensitive) in r, copied into dst (at most cap bytes, NUL
 * included, trailing spaces removed). False when there is no such header. */
bool mg_rest_header(const mg_rest_reply *r, const char *name, char *dst, size_t cap);

/* The reason of an error answer: Pulsar's {"reason": "..."} body, else the body itself when it
 * is short text, else the HTTP status line's meaning. Written into dst (cap bytes). */
void mg_rest_reason(const mg_rest_reply *r, char *dst, size_t cap);

/* Percent-encodes s as one path segment (everything except RFC 3986 unreserved characters)
 * into dst. Returns false when it does not fit in cap bytes (NUL included). */
bool mg_rest_escape(const char *s, char *dst, size_t cap);

#endif
