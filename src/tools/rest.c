/* Blocking admin REST requests over libcurl (see rest.h). */
#include "rest.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct grow {
    char *data;
    size_t len, cap;
    bool too_large;
} grow;

static bool grow_add(grow *g, const char *p, size_t n)
{
    if (g->len + n + 1 > MG_REST_BODY_BYTES_MAX) {
        g->too_large = true;
        return false;
    }
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < g->len + n + 1)
            cap *= 2;
        char *d = realloc(g->data, cap);
        if (d == NULL)
            return false;
        g->data = d;
        g->cap = cap;
    }
    memcpy(g->data + g->len, p, n);
    g->len += n;
    g->data[g->len] = '\0';
    return true;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    return grow_add(arg, p, size * n) ? size * n : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    grow *g = arg;
    /* A redirect or a 100 Continue starts a new header block: keep the last one only. */
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        g->len = 0;
    return grow_add(g, p, size * n) ? size * n : 0;
}

int mg_rest_request(const char *base_url, const char *path, const mg_rest_request_opts *opts,
                    mg_rest_reply *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    static bool curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, err_size, "libcurl could not start");
            return -1;
        }
        curl_ready = true;
    }
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;
    size_t ulen = blen + strlen(path) + 1;
    char *url = malloc(ulen);
    CURL *h = curl_easy_init();
    if (url == NULL || h == NULL) {
        free(url);
        if (h != NULL)
            curl_easy_cleanup(h);
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    snprintf(url, ulen, "%.*s%s", (int)blen, base_url, path);

    grow body = { 0 }, headers = { 0 };
    struct curl_slist *hdrs = NULL;
    char ctype[160];
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, opts->method);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     (long)(opts->timeout_ms > 0 ? opts->timeout_ms : 30000));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "magnetar-admin");
    if (strcmp(opts->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (opts->body != NULL || strcmp(opts->method, "PUT") == 0 ||
        strcmp(opts->method, "POST") == 0) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s",
                 opts->content_type != NULL ? opts->content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ctype);
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, opts->body != NULL ? (const char *)opts->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(opts->body != NULL ? opts->body_len : 0));
    }

    CURLcode rc = curl_easy_perform(h);
    int result = 0;
    if (rc != CURLE_OK) {
        if (body.too_large)
            snprintf(err, err_size, "%s %s: the answer is larger than %u bytes", opts->method, url,
                     MG_REST_BODY_BYTES_MAX);
        else
            snprintf(err, err_size, "%s %s: %s", opts->method, url,
                     curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
        free(body.data);
        free(headers.data);
        result = -1;
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        if (body.data == NULL && !grow_add(&body, "", 0)) {
            snprintf(err, err_size, "out of memory");
            free(headers.data);
            result = -1;
        } else {
            out->body = body.data;
            out->len = body.len;
            out->headers = headers.data != NULL ? headers.data : strdup("");
        }
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    free(url);
    return result;
}

void mg_rest_reply_free(mg_rest_reply *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

bool mg_rest_header(const mg_rest_reply *r, const char *name, char *dst, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t llen = end != NULL ? (size_t)(end - line) : strlen(line);
        if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < line + llen && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(line + llen - v);
            while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
                vlen--;
            if (cap > 0)
                snprintf(dst, cap, "%.*s", (int)vlen, v);
            return true;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return false;
}

void mg_rest_reason(const mg_rest_reply *r, char *dst, size_t cap)
{
    json_t *j = r->len > 0 ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *reason = j != NULL ? json_string_value(json_object_get(j, "reason")) : NULL;
    if (reason != NULL) {
        snprintf(dst, cap, "%s", reason);
    } else if (r->len > 0 && r->len < 300 && memchr(r->body, '<', r->len) == NULL) {
        size_t n = r->len;
        while (n > 0 && isspace((unsigned char)r->body[n - 1]))
            n--;
        snprintf(dst, cap, "%.*s", (int)n, r->body);
    } else {
        const char *what = r->status == 400   ? "Bad Request"
                           : r->status == 401 ? "Unauthorized"
                           : r->status == 403 ? "Forbidden"
                           : r->status == 404 ? "Not Found"
                           : r->status == 405 ? "Method Not Allowed"
                           : r->status == 409 ? "Conflict"
                           : r->status == 412 ? "Precondition Failed"
                           : r->status == 500 ? "Internal Server Error"
                           : r->status == 503 ? "Service Unavailable"
                                              : "error";
        snprintf(dst, cap, "HTTP %ld %s", r->status, what);
    }
    json_decref(j);
}

bool mg_rest_escape(const char *s, char *dst, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
        if (o + (plain ? 1 : 3) >= cap)
            return false;
        if (plain) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (o >= cap)
        return false;
    dst[o] = '\0';
    return true;
}
