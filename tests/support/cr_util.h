/*
 * Small pieces the Criterion tests of loops, servers and storage share: callbacks that raise a
 * flag or count completions, the guard timer that keeps a test's loop turning, removing a test's
 * directory tree and a loopback address where nothing listens. Header-only, for Criterion tests
 * (criterion.h included first): the helpers fail the running test on a broken precondition. Waiting
 * for a condition is MGT_RUN_UNTIL (support/loop_wait.h).
 */
#ifndef MG_TESTS_SUPPORT_CR_UTIL_H
#define MG_TESTS_SUPPORT_CR_UTIL_H

#include "common/error.h"
#include "support/rm_tree.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* A done callback (void (*)(void *)) that sets the bool arg points to. */
static inline void mgt_set_flag(void *arg)
{
    *(bool *)arg = true;
}

/* Counts many completions: all of them, the MG_OK ones, and the status of the last other one. */
typedef struct mgt_tally {
    int calls;
    int ok;
    int last_error;
} mgt_tally;

/* A done callback (void (*)(int status, void *)) counting into the mgt_tally arg points to. */
static inline void mgt_tally_done(int status, void *arg)
{
    mgt_tally *t = arg;
    t->calls++;
    if (status == MG_OK)
        t->ok++;
    else
        t->last_error = status;
}

static inline void mgt_guard_tick(uv_timer_t *t)
{
    (void)t;
}

/* Starts guard, a timer repeating every 5 ms on loop, so that each uv_run(UV_RUN_ONCE) returns
 * within a few milliseconds even when nothing else happens. Close it before the loop. */
static inline void mgt_guard_start(uv_loop_t *loop, uv_timer_t *guard)
{
    cr_assert_eq(uv_timer_init(loop, guard), 0);
    cr_assert_eq(uv_timer_start(guard, mgt_guard_tick, 5, 5), 0);
}

/* "127.0.0.1:<port>" of a loopback port where nothing listens: bound, then closed. */
static inline void mgt_closed_port_addr(char *addr, size_t addr_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sa_len = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sa_len), 0);
    close(fd);
    snprintf(addr, addr_size, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
}

#endif
