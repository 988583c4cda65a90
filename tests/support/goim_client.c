/*
 * A blocking client of the chat gateway's client protocol (goim_client.h). Sockets are
 * non-blocking and every wait is a poll() up to the connection's deadline, so a read or write
 * never waits longer than timeout_ms whatever the peer does.
 */
#include "support/goim_client.h"

#include "common/error.h"

#include <arpa/inet.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HANDSHAKE_BYTES_MAX 8192u /* a handshake response, headers included */
#define WS_GUID             "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- time and sockets ------------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline: MG_OK, MG_ETIMEDOUT, MG_ECONNECTION. */
static int wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (int i = 0; i < 1000; i++) {
        int64_t left = deadline_ms - now_ms();
        if (left <= 0)
            return MG_ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return MG_OK;
        if (n < 0 && errno != EINTR)
            return MG_ECONNECTION;
    }
    return MG_ETIMEDOUT;
}

static int open_socket(goim_conn *c, uint16_t port, int timeout_ms, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return MG_ECONNECTION;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, now_ms() + timeout_ms) != MG_OK ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            close(fd);
            return MG_ECONNECTION;
        }
    }
    c->fd = fd;
    return MG_OK;
}

int goim_connect_tcp(goim_conn *c, uint16_t port, int timeout_ms, int rcvbuf)
{
    return open_socket(c, port, timeout_ms, rcvbuf);
}

void goim_close(goim_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->raw);
    free(c->last);
    c->in = c->raw = c->last = NULL;
    c->in_len = c->in_cap = c->raw_len = c->raw_cap = 0;
}

int goim_write_raw(goim_conn *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    int64_t deadline = now_ms() + c->timeout_ms;
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, b + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return MG_ECLOSED;
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

/* Reads into buf[*len, cap) until *len >= need, before deadline. */
static int fill(int fd, uint8_t *buf, size_t *len, size_t need, int64_t deadline)
{
    while (*len < need) {
        ssize_t r = recv(fd, buf + *len, need - *len, 0);
        if (r > 0) {
            *len += (size_t)r;
            continue;
        }
        if (r == 0)
            return MG_ECLOSED;
        if (errno == ECONNRESET)
            return MG_ECLOSED;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return MG_ECONNECTION;
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return MG_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return MG_ENOMEM;
    *buf = p;
    *cap = n;
    return MG_OK;
}

/* ---- packets ------------------------------------------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void goim_header(uint8_t dst[GOIM_HEADER_BYTES], uint32_t packet_len, uint16_t header_len,
                 uint16_t ver, uint32_t op, uint32_t seq)
{
    put32(dst, packet_len);
    dst[4] = (uint8_t)(header_len >> 8);
    dst[5] = (uint8_t)header_len;
    dst[6] = (uint8_t)(ver >> 8);
    dst[7] = (uint8_t)ver;
    put32(dst + 8, op);
    put32(dst + 12, seq);
}

int goim_packet_decode(const uint8_t *p, size_t n, goim_packet *out)
{
    if (n < GOIM_HEADER_BYTES || get32(p) != n || (p[4] << 8 | p[5]) != GOIM_HEADER_BYTES)
        return MG_EPROTO;
    out->packet_len = (uint32_t)n;
    out->ver = (uint16_t)(p[6] << 8 | p[7]);
    out->op = get32(p + 8);
    out->seq = get32(p + 12);
    out->body_len = (uint32_t)(n - GOIM_HEADER_BYTES);
    out->body = out->body_len ? p + GOIM_HEADER_BYTES : NULL;
    return MG_OK;
}

int goim_split(const uint8_t *body, size_t len, goim_packet *out, size_t cap, size_t *count)
{
    size_t off = 0, k = 0;
    while (off < len) {
        if (len - off < GOIM_HEADER_BYTES)
            return MG_EPROTO;
        uint32_t plen = get32(body + off);
        if (plen < GOIM_HEADER_BYTES || plen > len - off)
            return MG_EPROTO;
        if (k == cap)
            return MG_ELIMIT;
        int rc = goim_packet_decode(body + off, plen, &out[k]);
        if (rc != MG_OK)
            return rc;
        k++;
        off += plen;
    }
    *count = k;
    return MG_OK;
}

/* ---- WebSocket ------------------------------------------------------------------------------ */

/* The value of header name in the response head[0, n) (NUL-terminated), or NULL. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *end = strstr(v, "\r\n");
            *len = end ? (size_t)(end - v) : strlen(v);
            return v;
        }
    }
    return NULL;
}

int goim_connect_ws(goim_conn *c, uint16_t port, const char *path, int timeout_ms, int rcvbuf,
                    int *http_status)
{
    int rc = open_socket(c, port, timeout_ms, rcvbuf);
    if (rc != MG_OK)
        return rc;
    c->ws = true;
    uint8_t nonce[16];
    if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce))
        return MG_ECONNECTION;
    char key[BASE64_ENCODE_RAW_LENGTH(sizeof(nonce)) + 1];
    base64_encode_raw(key, sizeof(nonce), nonce);
    key[sizeof(key) - 1] = '\0';
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, (unsigned)port, key);
    if (n <= 0 || (size_t)n >= sizeof(req))
        return MG_EPROTO;
    rc = goim_write_raw(c, req, (size_t)n);
    if (rc != MG_OK)
        return rc;
    /* The response's head: read byte by byte up to the blank line, so frames after it stay in
     * the socket for the frame reader. */
    char head[HANDSHAKE_BYTES_MAX + 1];
    size_t len = 0;
    int64_t deadline = now_ms() + timeout_ms;
    while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        if (len == HANDSHAKE_BYTES_MAX)
            return MG_EPROTO;
        rc = fill(c->fd, (uint8_t *)head, &len, len + 1, deadline);
        if (rc != MG_OK)
            return rc;
    }
    head[len] = '\0';
    int status = 0;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1)
        return MG_EPROTO;
    if (http_status != NULL)
        *http_status = status;
    if (status != 101)
        return MG_EPROTO;
    char material[sizeof(key) + sizeof(WS_GUID)];
    snprintf(material, sizeof(material), "%s%s", key, WS_GUID);
    /* Sec-WebSocket-Accept: base64 of the SHA-1 of key and GUID (RFC 6455 §4.2.2), by nettle. */
    uint8_t digest[SHA1_DIGEST_SIZE];
    struct sha1_ctx sha;
    sha1_init(&sha);
    sha1_update(&sha, strlen(material), (const uint8_t *)material);
    sha1_digest(&sha, sizeof(digest), digest);
    char want[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    base64_encode_raw(want, sizeof(digest), digest);
    want[sizeof(want) - 1] = '\0';
    size_t vlen = 0;
    const char *got = header_value(head, "Sec-WebSocket-Accept", &vlen);
    if (got == NULL || vlen != strlen(want) || memcmp(got, want, vlen) != 0)
        return MG_EPROTO;
    return MG_OK;
}

int goim_ws_send_frame(goim_conn *c, unsigned opcode, const void *payload, size_t len, bool mask)
{
    uint8_t *f = malloc(14 + len);
    if (f == NULL)
        return MG_ENOMEM;
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        f[h++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        f[h++] = (uint8_t)(m | 126);
        f[h++] = (uint8_t)(len >> 8);
        f[h++] = (uint8_t)len;
    } else {
        f[h++] = (uint8_t)(m | 127);
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t key[4] = { 0 };
    if (mask) {
        if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
            free(f);
            return MG_ECONNECTION;
        }
        memcpy(f + h, key, 4);
        h += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        f[h + i] = mask ? (uint8_t)(p[i] ^ key[i % 4]) : p[i];
    int rc = goim_write_raw(c, f, h + len);
    free(f);
    return rc;
}

/* Reads one frame from the socket into c->raw: opcode, payload at c->raw + *off. */
static int ws_frame(goim_conn *c, unsigned *opcode, size_t *off, size_t *len, int64_t deadline)
{
    c->raw_len = 0;
    int rc = reserve(&c->raw, &c->raw_cap, 14);
    if (rc == MG_OK)
        rc = fill(c->fd, c->raw, &c->raw_len, 2, deadline);
    if (rc != MG_OK)
        return rc;
    bool masked = c->raw[1] & 0x80;
    uint64_t plen = c->raw[1] & 0x7F;
    size_t h = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0) + (masked ? 4 : 0);
    rc = fill(c->fd, c->raw, &c->raw_len, h, deadline);
    if (rc != MG_OK)
        return rc;
    if (plen == 126)
        plen = (uint64_t)c->raw[2] << 8 | c->raw[3];
    else if (plen == 127)
        plen = (uint64_t)get32(c->raw + 2) << 32 | get32(c->raw + 6);
    if (plen > GOIM_PACKET_BYTES_MAX)
        return MG_ELIMIT;
    rc = reserve(&c->raw, &c->raw_cap, h + plen);
    if (rc == MG_OK)
        rc = fill(c->fd, c->raw, &c->raw_len, h + (size_t)plen, deadline);
    if (rc != MG_OK)
        return rc;
    if (masked)
        for (size_t i = 0; i < plen; i++)
            c->raw[h + i] ^= c->raw[h - 4 + i % 4];
    *opcode = c->raw[0] & 0x0F;
    *off = h;
    *len = (size_t)plen;
    return MG_OK;
}

/* Reads frames until a data frame: close frames end the connection, pings are answered. */
static int ws_data_frame(goim_conn *c, unsigned *opcode, size_t *off, size_t *len, int64_t deadline)
{
    for (int i = 0; i < 1000; i++) {
        int rc = ws_frame(c, opcode, off, len, deadline);
        if (rc != MG_OK)
            return rc;
        if (*opcode == 0x8) {
            c->ws_close_code = *len >= 2 ? (uint16_t)(c->raw[*off] << 8 | c->raw[*off + 1]) : 1005;
            return MG_ECLOSED;
        }
        if (*opcode == 0x9) {
            rc = goim_ws_send_frame(c, 0xA, c->raw + *off, *len, true);
            if (rc != MG_OK)
                return rc;
            continue;
        }
        if (*opcode == 0xA)
            continue;
        return MG_OK;
    }
    return MG_EPROTO;
}

int goim_ws_read_frame(goim_conn *c, unsigned *opcode, const uint8_t **payload, size_t *len)
{
    if (!c->ws || c->fd < 0)
        return MG_EINVAL;
    size_t off = 0;
    int rc = ws_data_frame(c, opcode, &off, len, now_ms() + c->timeout_ms);
    if (rc != MG_OK)
        return rc;
    free(c->last);
    c->last = malloc(*len ? *len : 1);
    if (c->last == NULL)
        return MG_ENOMEM;
    memcpy(c->last, c->raw + off, *len);
    *payload = c->last;
    return MG_OK;
}

/* ---- reading packets ------------------------------------------------------------------------ */

/* Makes c->in hold at least need bytes. */
static int in_fill(goim_conn *c, size_t need, int64_t deadline)
{
    int rc = reserve(&c->in, &c->in_cap, need);
    if (rc != MG_OK)
        return rc;
    if (!c->ws)
        return fill(c->fd, c->in, &c->in_len, need, deadline);
    for (int i = 0; i < 100000 && c->in_len < need; i++) {
        unsigned opcode = 0;
        size_t off = 0, len = 0;
        rc = ws_data_frame(c, &opcode, &off, &len, deadline);
        if (rc != MG_OK)
            return rc;
        rc = reserve(&c->in, &c->in_cap, c->in_len + len);
        if (rc != MG_OK)
            return rc;
        memcpy(c->in + c->in_len, c->raw + off, len);
        c->in_len += len;
    }
    return c->in_len >= need ? MG_OK : MG_EPROTO;
}

int goim_read(goim_conn *c, goim_packet *out)
{
    if (c->fd < 0)
        return MG_ECLOSED;
    int64_t deadline = now_ms() + c->timeout_ms;
    int rc = in_fill(c, GOIM_HEADER_BYTES, deadline);
    if (rc != MG_OK)
        return rc;
    uint32_t plen = get32(c->in);
    if (plen < GOIM_HEADER_BYTES)
        return MG_EPROTO;
    if (plen > GOIM_PACKET_BYTES_MAX)
        return MG_ELIMIT;
    rc = in_fill(c, plen, deadline);
    if (rc != MG_OK)
        return rc;
    free(c->last);
    c->last = malloc(plen);
    if (c->last == NULL)
        return MG_ENOMEM;
    memcpy(c->last, c->in, plen);
    memmove(c->in, c->in + plen, c->in_len - plen);
    c->in_len -= plen;
    return goim_packet_decode(c->last, plen, out);
}

int goim_wait_closed(goim_conn *c, uint8_t *dst, size_t dst_capacity, size_t *len)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    uint8_t buf[4096];
    size_t kept = 0;
    if (len != NULL)
        *len = 0;
    for (int i = 0; i < 1000000; i++) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return MG_ECLOSED;
        if (r > 0) {
            size_t take = dst != NULL && kept < dst_capacity ? dst_capacity - kept : 0;
            take = take < (size_t)r ? take : (size_t)r;
            if (take > 0)
                memcpy(dst + kept, buf, take);
            kept += take;
            if (len != NULL)
                *len = kept;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return MG_ECONNECTION;
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc != MG_OK)
            return rc;
    }
    return MG_ETIMEDOUT;
}

int goim_read_exact(goim_conn *c, void *dst, size_t n)
{
    size_t got = 0;
    return fill(c->fd, dst, &got, n, now_ms() + c->timeout_ms);
}

/* ---- writing packets ------------------------------------------------------------------------ */

int goim_send(goim_conn *c, uint16_t ver, uint32_t op, uint32_t seq, const void *body,
              size_t body_len)
{
    uint8_t *p = malloc(GOIM_HEADER_BYTES + body_len);
    if (p == NULL)
        return MG_ENOMEM;
    goim_header(p, (uint32_t)(GOIM_HEADER_BYTES + body_len), GOIM_HEADER_BYTES, ver, op, seq);
    if (body_len)
        memcpy(p + GOIM_HEADER_BYTES, body, body_len);
    int rc = c->ws ? goim_ws_send_frame(c, 0x2, p, GOIM_HEADER_BYTES + body_len, true)
                   : goim_write_raw(c, p, GOIM_HEADER_BYTES + body_len);
    free(p);
    return rc;
}

int goim_auth(goim_conn *c, const char *body, goim_packet *reply)
{
    int rc = goim_send(c, 1, 7, 1, body, strlen(body));
    if (rc != MG_OK)
        return rc;
    rc = goim_read(c, reply);
    if (rc != MG_OK)
        return rc;
    return reply->op == 8 ? MG_OK : MG_EPROTO;
}
