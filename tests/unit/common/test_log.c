/* The log's rate limiter: a call site's lines per window, the count of what was held back, and
 * the suffix that reports it. */
#include "common/log.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TestSuite(log, .timeout = 10);

Test(log, limit_admits_lines_per_window_and_counts_the_rest)
{
    mg_log_limit l = MG_LOG_LIMIT_INIT;
    uint64_t suppressed = 99;
    int64_t t = 5000;
    for (int i = 0; i < MG_LOG_LIMIT_LINES; i++) {
        cr_assert(mg_log_limit_admit(&l, t + i, &suppressed), "line %d", i);
        cr_assert_eq(suppressed, 0);
    }
    for (int i = 0; i < 1000; i++)
        cr_assert_not(mg_log_limit_admit(&l, t + MG_LOG_LIMIT_WINDOW_MS - 1, &suppressed));
    /* A new window: the first line carries the count, the next ones none. */
    cr_assert(mg_log_limit_admit(&l, t + MG_LOG_LIMIT_WINDOW_MS, &suppressed));
    cr_assert_eq(suppressed, 1000);
    cr_assert(mg_log_limit_admit(&l, t + MG_LOG_LIMIT_WINDOW_MS + 1, &suppressed));
    cr_assert_eq(suppressed, 0);
    /* A clock that went back starts a new window rather than blocking forever. */
    for (int i = 0; i < MG_LOG_LIMIT_LINES; i++)
        (void)mg_log_limit_admit(&l, t + MG_LOG_LIMIT_WINDOW_MS + 2, &suppressed);
    cr_assert(mg_log_limit_admit(&l, 10, &suppressed));
}

/* Reads everything written to the log so far (the write end is non-blocking-safe: the lines are
 * few and short). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(log, limited_macro_writes_a_few_lines_of_a_flood)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    mg_log_set_fd(p[1]);
    for (int i = 0; i < 10000; i++)
        MG_WARN_LIMITED("refusing connection %d", i); /* one call site */
    char buf[65536];
    read_all(p[0], buf, sizeof(buf));
    cr_assert_eq(count_lines(buf, "refusing connection"), MG_LOG_LIMIT_LINES, "%s", buf);
    cr_assert_not_null(strstr(buf, "WARN  ["));
    cr_assert_not_null(strstr(buf, "refusing connection 0\n"));
    cr_assert_null(strstr(buf, "suppressed"));
    /* Below the level, nothing is written and nothing counted. */
    mg_log_set_level(MG_LOG_ERROR);
    MG_WARN_LIMITED("hidden");
    mg_log_set_level(MG_LOG_INFO);
    read_all(p[0], buf, sizeof(buf));
    cr_assert_str_eq(buf, "");
    mg_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}

Test(log, first_line_after_a_window_reports_the_suppressed_count)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK), 0);
    mg_log_set_fd(p[1]);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    /* A call site whose window ended with 7 lines held back. */
    mg_log_limit l = MG_LOG_LIMIT_INIT;
    l.window_start_ms = now_ms - MG_LOG_LIMIT_WINDOW_MS - 1;
    l.lines_in_window = MG_LOG_LIMIT_LINES;
    l.suppressed_count = 7;
    mg_log_write_limited(&l, MG_LOG_WARN, "accept failed: %s", "Too many open files");
    mg_log_write_limited(&l, MG_LOG_WARN, "accept failed: %s", "again");
    char buf[4096];
    read_all(p[0], buf, sizeof(buf));
    cr_assert_not_null(
        strstr(buf, "accept failed: Too many open files (7 similar lines suppressed)\n"), "%s",
        buf);
    cr_assert_not_null(strstr(buf, "accept failed: again\n"), "%s", buf);
    /* A message too long for a record keeps the count at its end. */
    char big[4000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    l.window_start_ms = now_ms - MG_LOG_LIMIT_WINDOW_MS - 1;
    l.lines_in_window = MG_LOG_LIMIT_LINES;
    l.suppressed_count = 3;
    mg_log_write_limited(&l, MG_LOG_WARN, "%s", big);
    read_all(p[0], buf, sizeof(buf));
    cr_assert_not_null(strstr(buf, "x (3 similar lines suppressed)\n"), "%s", buf);
    mg_log_set_fd(2);
    close(p[0]);
    close(p[1]);
}
