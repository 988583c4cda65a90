/* The listener: accepts, and when the process has no descriptor left it pauses with a growing
 * delay instead of retrying at once, then accepts the waiting client once a descriptor is free.
 * Each test runs in its own process (Criterion), so lowering RLIMIT_NOFILE stays inside it. */
#include "bookie/limits.h"
#include "broker/limits.h"
#include "common/error.h"
#include "common/limits.h"
#include "common/listen.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

TestSuite(listen, .timeout = 10);

static struct {
    uv_loop_t loop;
    uv_timer_t stop;
    int accepted_fd;
    int accepted_count;
    bool closed;
} g;

static void on_accept(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    cr_assert_eq(addr->sa_family, AF_INET);
    cr_assert_geq(addr_len, sizeof(struct sockaddr_in));
    g.accepted_count++;
    if (g.accepted_fd >= 0)
        close(g.accepted_fd);
    g.accepted_fd = fd;
}

static void on_stop(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop for ms milliseconds of real time. */
static void run_for(uint64_t ms)
{
    uv_timer_start(&g.stop, on_stop, ms, 0);
    uv_run(&g.loop, UV_RUN_DEFAULT);
}

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
    return fd;
}

static void on_closed(void *arg)
{
    g.closed = true;
}

static mg_listener *start(uint16_t *port)
{
    g.accepted_fd = -1;
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    cr_assert_eq(uv_timer_init(&g.loop, &g.stop), 0);
    int fd = -1;
    cr_assert_eq(mg_listen_socket("test", "127.0.0.1", 0, 16, &fd, port), MG_OK);
    cr_assert_neq(*port, 0);
    mg_listener *l = NULL;
    cr_assert_eq(mg_listener_start(&g.loop, fd, "test", on_accept, NULL, &l), MG_OK);
    cr_assert_eq(mg_listener_port(l), *port);
    return l;
}

static void finish(mg_listener *l)
{
    mg_listener_close(l, on_closed, NULL);
    uv_close((uv_handle_t *)&g.stop, NULL);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_assert(g.closed);
    cr_assert_eq(uv_loop_close(&g.loop), 0);
}

Test(listen, accepts_clients)
{
    uint16_t port = 0;
    mg_listener *l = start(&port);
    int c1 = connect_to(port);
    int c2 = connect_to(port);
    for (int i = 0; i < 20 && g.accepted_count < 2; i++)
        run_for(10);
    cr_assert_eq(g.accepted_count, 2);
    cr_assert_eq(mg_listener_pause_count(l), 0);
    int flags = fcntl(g.accepted_fd, F_GETFL);
    cr_assert(flags & O_NONBLOCK, "accepted sockets are non-blocking");
    close(g.accepted_fd);
    close(c1);
    close(c2);
    finish(l);
}

Test(listen, backs_off_without_descriptors_then_accepts)
{
    uint16_t port = 0;
    mg_listener *l = start(&port);
    int client = connect_to(port); /* waits in the backlog until accepted */
    /* Take every descriptor under a low limit. */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = 64;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int held[64];
    int held_count = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            cr_assert_eq(errno, EMFILE);
            break;
        }
        cr_assert_lt(held_count, 64);
        held[held_count++] = fd;
    }
    cr_assert_gt(held_count, 0);
    /* 300 ms: pauses of 10, 20, 40, 80 and 160 ms fit, a spinning accept would count thousands. */
    run_for(300);
    uint64_t pauses = mg_listener_pause_count(l);
    cr_assert_eq(g.accepted_count, 0);
    cr_assert_geq(pauses, 3, "accept did not pause (%llu)", (unsigned long long)pauses);
    cr_assert_leq(pauses, 6, "accept retried too often (%llu pauses in 300 ms)",
                  (unsigned long long)pauses);
    /* A descriptor comes back: the client is accepted within the longest pause. */
    close(held[--held_count]);
    for (int i = 0; i < 30 && g.accepted_count == 0; i++)
        run_for(50);
    cr_assert_eq(g.accepted_count, 1);
    close(g.accepted_fd);
    while (held_count > 0)
        close(held[--held_count]);
    close(client);
    finish(l);
}

Test(listen, budget_shares_follow_the_limit)
{
    mg_fd_shares f;
    mg_fd_budget(1024, 1, 0, &f);
    cr_assert_eq(f.reserve, 256);
    cr_assert_eq(f.http_max, 96);
    cr_assert_eq(f.broker_max, 1024 - 256 - 96);
    cr_assert_eq(f.bookie_max, 0);
    /* A limit under the reserve still leaves each server a connection. */
    mg_fd_budget(16, 1, 1, &f);
    cr_assert_eq(f.reserve, MG_FD_RESERVE_MIN);
    cr_assert_eq(f.http_max, MG_FD_HTTP_MIN);
    cr_assert_geq(f.bookie_max, 1);
    cr_assert_geq(f.broker_max, 1);
    cr_assert_geq(mg_fd_limit(), 16);
}

Test(listen, budget_keeps_a_reserve)
{
    mg_fd_shares f;
    mg_fd_budget(256, 1, 1, &f);
    cr_assert_eq(f.reserve, MG_FD_RESERVE_MIN);
    cr_assert_geq(f.http_max, MG_FD_HTTP_MIN);
    cr_assert_gt(f.broker_max, 0);
    cr_assert_gt(f.bookie_max, 0);
    cr_assert_leq(f.reserve + f.http_max + MG_HTTP_CONNECTIONS_RESERVE + f.bookie_max +
                      f.broker_max,
                  256 + MG_HTTP_CONNECTIONS_RESERVE);
    mg_fd_budget(4096, 1, 0, &f);
    cr_assert_eq(f.reserve, 1024);
    cr_assert_eq(f.bookie_max, 0);
    cr_assert_eq(f.broker_max, 4096 - 1024 - f.http_max);
    mg_fd_budget(MG_FD_LIMIT_MAX, 1, 1, &f);
    cr_assert_eq(f.reserve, MG_FD_RESERVE_MAX);
    cr_assert_eq(f.http_max, MG_HTTP_CONNECTIONS_MAX);
    cr_assert_eq(f.broker_max, BR_CONNECTIONS_MAX);
    cr_assert_eq(f.bookie_max, BK_SERVER_CONNECTIONS_MAX);
    mg_fd_budget(100, 0, 1, &f); /* a bookie alone takes what the HTTP server leaves */
    cr_assert_eq(f.broker_max, 0);
    cr_assert_eq(f.bookie_max, 100 - MG_FD_RESERVE_MIN - MG_FD_HTTP_MIN);
}
