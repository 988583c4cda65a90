/* Listening sockets with accept back-off, and the descriptor budget; see listen.h.
 *
 * Listener states:   POLLING --accept: EMFILE/ENFILE/ENOBUFS/ENOMEM--> PAUSED (timer)
 *                    PAUSED --timer--> POLLING;  any --close--> CLOSING --handles closed--> freed
 * Invariants: the poll handle is active only in POLLING; backoff_ms is 0 after a successful
 * accept and within [MG_LISTEN_BACKOFF_MS_MIN, MG_LISTEN_BACKOFF_MS_MAX] while failures go on. */
#include "common/listen.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"
#include "common/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

struct mg_listener {
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    uint16_t port;
    char name[32];
    mg_listener_accept_fn fn;
    bool (*exhausted_fn)(void *arg);
    void *arg;
    uint64_t backoff_ms;
    uint64_t pause_count;
    unsigned handles_open;
    bool closing;
    void (*closed_fn)(void *arg);
    void *closed_arg;
};

static void listen__addr_text(char *buf, size_t cap, const char *host, unsigned port)
{
    if (strchr(host, ':') != NULL)
        snprintf(buf, cap, "[%s]:%u", host, port);
    else
        snprintf(buf, cap, "%s:%u", host, port);
}

int mg_listen_socket(const char *what, const char *host, uint16_t port, int backlog, int *fd_out,
                     uint16_t *port_out)
{
    if (host == NULL)
        host = "0.0.0.0";
    char port_text[8];
    char addr[300];
    snprintf(port_text, sizeof(port_text), "%u", (unsigned)port);
    listen__addr_text(addr, sizeof(addr), host, port);

    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port_text, &hints, &ai);
    if (gai != 0) {
        MG_ERROR("%s: cannot listen on %s: %s", what, addr, gai_strerror(gai));
        return MG_EINVAL;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0)
            e = errno;
    }
    freeaddrinfo(ai);
    if (e != 0) {
        MG_ERROR("%s: cannot listen on %s: %s", what, addr, strerror(e));
        if (fd >= 0)
            close(fd);
        return mg_err_from_errno(e); /* EADDRINUSE is MG_EEXIST */
    }
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) != 0) {
        e = errno;
        close(fd);
        MG_ERROR("%s: getsockname on %s failed: %s", what, addr, strerror(e));
        return mg_err_from_errno(e);
    }
    if (port_out != NULL)
        *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return MG_OK;
}

static void listen__on_poll(uv_poll_t *poll, int status, int events);

static void listen__on_timer(uv_timer_t *timer)
{
    mg_listener *l = timer->data;
    if (l->closing)
        return;
    int rc = uv_poll_start(&l->poll, UV_READABLE, listen__on_poll);
    if (rc != 0) {
        MG_WARN_LIMITED("%s: cannot poll the listening socket again: %s", l->name, uv_strerror(rc));
        uv_timer_start(&l->timer, listen__on_timer, MG_LISTEN_BACKOFF_MS_MAX, 0);
    }
}

/* Stops accepting for the current back-off delay (doubled from the last one). */
static void listen__pause(mg_listener *l, int e)
{
    bool released =
        (e == EMFILE || e == ENFILE) && l->exhausted_fn != NULL && l->exhausted_fn(l->arg);
    l->backoff_ms = l->backoff_ms == 0 || released ? MG_LISTEN_BACKOFF_MS_MIN : l->backoff_ms * 2;
    if (l->backoff_ms > MG_LISTEN_BACKOFF_MS_MAX)
        l->backoff_ms = MG_LISTEN_BACKOFF_MS_MAX;
    l->pause_count++;
    MG_WARN_LIMITED("%s: cannot accept a connection: %s; not accepting for %llu ms "
                    "(descriptor limit %llu)",
                    l->name, strerror(e), (unsigned long long)l->backoff_ms,
                    (unsigned long long)mg_fd_limit());
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->timer, listen__on_timer, l->backoff_ms, 0);
}

static void listen__on_poll(uv_poll_t *poll, int status, int events)
{
    (void)events;
    mg_listener *l = poll->data;
    if (status < 0) {
        MG_WARN_LIMITED("%s: polling the listening socket failed: %s", l->name,
                        uv_strerror(status));
        listen__pause(l, EIO);
        return;
    }
    /* A bounded batch: the poll is level-triggered, so what is left comes back next turn. */
    for (unsigned i = 0; i < MG_LISTEN_ACCEPT_BATCH_MAX && !l->closing; i++) {
        struct sockaddr_storage ss;
        socklen_t ss_len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &ss_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            l->backoff_ms = 0;
            l->fn(l->arg, fd, (const struct sockaddr *)&ss, ss_len);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return;
        if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM)
            continue; /* that client is gone (or a firewall said no); the next may be fine */
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected: retrying at once would spin. */
        listen__pause(l, e);
        return;
    }
}

int mg_listener_start(uv_loop_t *loop, int fd, const char *name, mg_listener_accept_fn fn,
                      void *arg, mg_listener **out)
{
    mg_listener *l = mg_calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return MG_ENOMEM;
    }
    l->loop = loop;
    l->fd = fd;
    l->fn = fn;
    l->arg = arg;
    snprintf(l->name, sizeof(l->name), "%s", name);
    struct sockaddr_storage ss;
    socklen_t ss_len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &ss_len) == 0)
        l->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    int rc = uv_poll_init_socket(loop, &l->poll, fd);
    if (rc != 0) {
        close(fd);
        mg_free(l);
        return mg_err_from_uv(rc);
    }
    MG_ASSERT(uv_timer_init(loop, &l->timer) == 0);
    l->poll.data = l->timer.data = l;
    l->handles_open = 2;
    rc = uv_poll_start(&l->poll, UV_READABLE, listen__on_poll);
    if (rc != 0) {
        mg_listener_close(l, NULL, NULL);
        return mg_err_from_uv(rc);
    }
    *out = l;
    return MG_OK;
}

void mg_listener_on_exhausted(mg_listener *l, bool (*fn)(void *arg))
{
    l->exhausted_fn = fn;
}

uint16_t mg_listener_port(const mg_listener *l)
{
    return l->port;
}

uint64_t mg_listener_pause_count(const mg_listener *l)
{
    return l->pause_count;
}

static void listen__on_closed(uv_handle_t *h)
{
    mg_listener *l = h->data;
    MG_ASSERT(l->handles_open > 0);
    if (--l->handles_open > 0)
        return;
    close(l->fd); /* after the poll handle let go of it */
    void (*fn)(void *) = l->closed_fn;
    void *arg = l->closed_arg;
    mg_free(l);
    if (fn != NULL)
        fn(arg);
}

void mg_listener_close(mg_listener *l, void (*closed_fn)(void *arg), void *arg)
{
    MG_ASSERT(!l->closing);
    l->closing = true;
    l->closed_fn = closed_fn;
    l->closed_arg = arg;
    uv_close((uv_handle_t *)&l->poll, listen__on_closed);
    uv_close((uv_handle_t *)&l->timer, listen__on_closed);
}

/* ---- the descriptor budget ------------------------------------------------------------------ */

uint64_t mg_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024; /* the traditional default; getrlimit does not fail on Linux */
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > MG_FD_LIMIT_MAX)
        return MG_FD_LIMIT_MAX;
    return (uint64_t)rl.rlim_cur;
}

uint64_t mg_fd_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = rl.rlim_max;
        if (want == RLIM_INFINITY || want > MG_FD_LIMIT_MAX)
            want = MG_FD_LIMIT_MAX;
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
            rlim_t was = rl.rlim_cur;
            rl.rlim_cur = want;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                MG_WARN("descriptors: cannot raise the limit from %llu to %llu: %s",
                        (unsigned long long)was, (unsigned long long)want, strerror(errno));
        }
    }
    uint64_t limit = mg_fd_limit();
    MG_INFO("descriptors: limit %llu (RLIMIT_NOFILE)", (unsigned long long)limit);
    return limit;
}

static uint32_t listen__min_u64(uint64_t a, uint64_t b)
{
    return (uint32_t)(a < b ? a : b);
}

void mg_fd_budget(uint64_t limit, int has_broker, int has_bookie, mg_fd_shares *out)
{
    memset(out, 0, sizeof(*out));
    out->limit = limit;
    uint64_t reserve = limit / 4;
    if (reserve < MG_FD_RESERVE_MIN)
        reserve = MG_FD_RESERVE_MIN;
    if (reserve > MG_FD_RESERVE_MAX)
        reserve = MG_FD_RESERVE_MAX;
    out->reserve = reserve;
    uint64_t rest = limit > reserve ? limit - reserve : 0;
    uint64_t http = rest / 8;
    if (http < MG_FD_HTTP_MIN)
        http = MG_FD_HTTP_MIN;
    out->http_max = listen__min_u64(http, MG_HTTP_CONNECTIONS_MAX);
    rest = rest > out->http_max ? rest - out->http_max : 0;
    if (has_bookie) {
        uint64_t bookie = has_broker ? rest / 8 : rest;
        out->bookie_max = listen__min_u64(bookie > 0 ? bookie : 1, MG_FD_BOOKIE_MAX);
        rest = rest > out->bookie_max ? rest - out->bookie_max : 0;
    }
    if (has_broker)
        out->broker_max = listen__min_u64(rest > 0 ? rest : 1, MG_FD_BROKER_MAX);
}

void mg_sockaddr_format(const struct sockaddr *addr, char *dst, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (addr != NULL && addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        uv_ip4_name(sin, ip, sizeof(ip));
        port = ntohs(sin->sin_port);
    } else if (addr != NULL && addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
        uv_ip6_name(sin6, ip, sizeof(ip));
        port = ntohs(sin6->sin6_port);
    } else {
        snprintf(dst, cap, "?");
        return;
    }
    snprintf(dst, cap, "%s:%d", ip, port);
}
