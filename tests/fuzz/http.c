/*
 * Fuzz target http: a request to the admin HTTP server, as text ("METHOD URL[?QUERY]
 * [VERSION]\r\n" + "Name: value\r\n" lines + "\r\n" + body). The HTTP syntax itself is
 * libmicrohttpd's (common/http.c); this target splits the text the way MHD hands a request to
 * the server (method, raw URL without the query, raw headers, raw query arguments split on '&'
 * and '=', the body only when a Content-Length or Transfer-Encoding header announces one) and
 * passes it to mg_http_server_inject, which runs the server's own code on it: path splitting and
 * percent-decoding, route matching with {name} parameters, 404/405 with Allow, Content-Length
 * and body limits (413), query decoding. The routes are the broker's admin routes
 * (br_admin_route) plus the /metrics and health routes of the nodes; an admin route's handler
 * here runs the real handlers' argument parsing (br_admin_args_parse: topic name, subscription,
 * force, skip count, timestamp, peek position, partition-count and message-id bodies) and
 * answers with its status instead of
 * going on to the broker. The body is also read as a stored {"partitions": N} value
 * (br_partitions_parse), the one JSON document the broker parses.
 *
 * Checks beyond "no crash, no sanitizer report": every request is answered with a status the
 * server may give (a handler's 204/400/412, or 404, 405, 413, 414); a matched route's
 * parameters are present and non-empty; the path is a C string starting with '/'.
 */
#include "broker/broker_int.h"
#include "common/error.h"
#include "common/http.h"
#include "pulsar/limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int br_partitions_parse(const void *value, size_t len);

/* Header lines and query arguments taken from one input at most (bounds the arrays). */
#define HEADERS_MAX 64
#define QUERY_MAX   64

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "http: invariant broken: %s\n", what);
        abort();
    }
}

static void admin_handler(mg_http_request *req, void *arg)
{
    int op = *(const int *)arg;
    const char *path = mg_http_request_path(req);
    check(path != NULL && path[0] == '/', "a routed path that does not start with '/'");
    static const char *const names[] = { "tenant", "namespace", "topic", "sub", "n", "timestamp" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = mg_http_request_param(req, names[i]);
        check(v == NULL || v[0] != '\0', "an empty path parameter");
    }
    check(mg_http_request_param(req, "tenant") != NULL, "an admin route without {tenant}");
    br_admin_args a;
    char err[256];
    int status = br_admin_args_parse(req, op, &a, err, sizeof(err));
    if (status != 0) {
        check((status == 400 || status == 412) && err[0] != '\0',
              "a refusal that is not 400 (a number) or 412 with a reason");
        mg_http_reply_json_error(req, status, err);
        return;
    }
    check(a.tn.full[0] != '\0' && a.tn.persistent, "an accepted topic without a name");
    mg_http_reply(req, 204, NULL, NULL, 0);
}

static void plain_handler(mg_http_request *req, void *arg)
{
    (void)arg;
    mg_http_reply(req, 200, "text/plain", "ok\n", 3);
}

static uv_loop_t loop;
static mg_http_server *srv;
static int ops[64];

static void setup(void)
{
    check(uv_loop_init(&loop) == 0, "uv_loop_init failed");
    mg_http_options opts = { .host = "127.0.0.1", .body_bytes_max = 1024 };
    check(mg_http_server_create(&loop, &opts, &srv) == MG_OK, "mg_http_server_create failed");
    const char *method, *pattern;
    size_t i;
    for (i = 0; br_admin_route(i, &method, &pattern, &ops[i]); i++) {
        check(i < sizeof(ops) / sizeof(ops[0]), "more admin routes than ops[]");
        check(mg_http_server_route(srv, method, pattern, admin_handler, &ops[i]) == MG_OK,
              "an admin route does not register");
    }
    check(i > 0, "no admin routes");
    check(mg_http_server_route(srv, "GET", "/metrics", plain_handler, NULL) == MG_OK &&
              mg_http_server_route(srv, "GET", "/admin/v2/brokers/health", plain_handler, NULL) ==
                  MG_OK &&
              mg_http_server_route(srv, "GET", "/admin/v2/bookies/health", plain_handler, NULL) ==
                  MG_OK,
          "a node route does not register");
}

/* Cuts text at the first occurrence of sep: returns the rest after it, or NULL. */
static char *cut(char *text, const char *sep)
{
    char *p = strstr(text, sep);
    if (p == NULL)
        return NULL;
    *p = '\0';
    return p + strlen(sep);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL)
        setup();
    /* The head is text up to "\r\n\r\n"; the body is the bytes after it, binary allowed. */
    const uint8_t *end_of_head = memmem(data, size, "\r\n\r\n", 4);
    size_t head_len = end_of_head != NULL ? (size_t)(end_of_head - data) : size;
    const uint8_t *body = end_of_head != NULL ? end_of_head + 4 : data + size;
    size_t body_len = (size_t)(data + size - body);
    if (memchr(data, '\0', head_len) != NULL)
        return 0; /* MHD refuses a NUL in the head */
    char *head = malloc(head_len + 1);
    if (head == NULL)
        return 0;
    memcpy(head, data, head_len);
    head[head_len] = '\0';

    char *lines = cut(head, "\r\n");
    char *line = head;
    /* Request line: METHOD SP target [SP version] */
    char *target = cut(line, " ");
    if (target == NULL || line[0] == '\0') {
        free(head);
        return 0;
    }
    char *method = line;
    (void)cut(target, " ");
    char *query_text = cut(target, "?");
    if (target[0] == '\0') {
        free(head);
        return 0;
    }
    const char *query[2 * QUERY_MAX];
    size_t query_count = 0;
    while (query_text != NULL && query_count < QUERY_MAX) {
        char *next = cut(query_text, "&");
        if (query_text[0] != '\0') {
            char *value = cut(query_text, "=");
            query[2 * query_count] = query_text;
            query[2 * query_count + 1] = value; /* NULL: a key without '=' */
            query_count++;
        }
        query_text = next;
    }
    const char *headers[2 * HEADERS_MAX];
    size_t header_count = 0;
    bool announces_body = false;
    while (lines != NULL && lines[0] != '\0' && header_count < HEADERS_MAX) {
        char *next = cut(lines, "\r\n");
        char *value = cut(lines, ":");
        if (value != NULL && lines[0] != '\0') {
            char *name = lines;
            value = trim(value);
            headers[2 * header_count] = name;
            headers[2 * header_count + 1] = value;
            header_count++;
            if (strcasecmp(name, "Content-Length") == 0 ||
                strcasecmp(name, "Transfer-Encoding") == 0)
                announces_body = true;
        }
        lines = next;
    }
    int status = -1;
    int rc =
        mg_http_server_inject(srv, method, target, headers, header_count, query, query_count,
                              announces_body ? body : NULL, announces_body ? body_len : 0, &status);
    check(rc == MG_OK || rc == MG_ENOMEM, "inject failed");
    if (rc == MG_OK)
        check(status == 200 || status == 204 || status == 400 || status == 404 || status == 405 ||
                  status == 412 || status == 413 || status == 414,
              "a status the server never gives");
    int n = br_partitions_parse(body, body_len);
    check(n >= -1 && n <= MG_PULSAR_TOPIC_PARTITIONS_MAX, "partition count out of range");
    free(head);
    return 0;
}
