/* Logging; see log.h. */
#include "common/log.h"
#include "common/assert.h"
#include "common/clock.h"
#include "common/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_level = MG_LOG_INFO;
static int log_fd = 2;
static _Thread_local char thread_name[16];

static const char *const level_names[] = { "trace", "debug", "info", "warn", "error", "off" };
static const char *const level_tags[] = { "TRACE", "DEBUG", "INFO ", "WARN ", "ERROR", "OFF  " };

void mg_log_set_level(mg_log_level level)
{
    MG_ASSERT(level >= MG_LOG_TRACE && level <= MG_LOG_OFF);
    __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
}

mg_log_level mg_log_get_level(void)
{
    return (mg_log_level)__atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int mg_log_parse_level(const char *text, mg_log_level *out)
{
    for (int i = MG_LOG_TRACE; i <= MG_LOG_OFF; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (mg_log_level)i;
            return MG_OK;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *out = MG_LOG_WARN;
        return MG_OK;
    }
    return MG_EINVAL;
}

const char *mg_log_level_name(mg_log_level level)
{
    if (level < MG_LOG_TRACE || level > MG_LOG_OFF)
        return "?";
    return level_names[level];
}

void mg_log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

void mg_log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
    pthread_setname_np(pthread_self(), thread_name);
}

const char *mg_log_thread_name(void)
{
    if (thread_name[0] == '\0')
        snprintf(thread_name, sizeof(thread_name), "t%ld", (long)gettid());
    return thread_name;
}

/* Formats and writes one record; suffix (may be "") goes after the message. */
static void log__vwrite(mg_log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, level_tags[level], mg_log_thread_name());
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2; /* truncated: keep the line bounded */
        memcpy(line + len - 3, "...", 3);
    }
    size_t suffix_len = strlen(suffix);
    if (suffix_len > 0) {
        if (len + suffix_len > sizeof(line) - 2)
            len = sizeof(line) - 2 - suffix_len; /* the count matters more than the tail */
        memcpy(line + len, suffix, suffix_len);
        len += suffix_len;
    }
    line[len++] = '\n';
    ssize_t w = write(__atomic_load_n(&log_fd, __ATOMIC_RELAXED), line, len);
    (void)w; /* nowhere to report a failing log sink */
}

void mg_log_vwrite(mg_log_level level, const char *fmt, va_list ap)
{
    log__vwrite(level, "", fmt, ap);
}

bool mg_log_limit_admit(mg_log_limit *l, int64_t now_ms, uint64_t *suppressed_out)
{
    bool admit = false;
    pthread_mutex_lock(&l->mu);
    if (l->window_start_ms == 0 || now_ms - l->window_start_ms >= MG_LOG_LIMIT_WINDOW_MS ||
        now_ms < l->window_start_ms) {
        l->window_start_ms = now_ms != 0 ? now_ms : 1;
        l->lines_in_window = 0;
    }
    if (l->lines_in_window < MG_LOG_LIMIT_LINES) {
        l->lines_in_window++;
        *suppressed_out = l->suppressed_count;
        l->suppressed_count = 0;
        admit = true;
    } else {
        l->suppressed_count++;
    }
    pthread_mutex_unlock(&l->mu);
    return admit;
}

void mg_log_write_limited(mg_log_limit *l, mg_log_level level, const char *fmt, ...)
{
    int64_t now_ms = (int64_t)mg_clock_mono_ms();
    uint64_t suppressed = 0;
    if (!mg_log_limit_admit(l, now_ms, &suppressed))
        return;
    char suffix[64] = "";
    if (suppressed > 0)
        snprintf(suffix, sizeof(suffix), " (%llu similar lines suppressed)",
                 (unsigned long long)suppressed);
    va_list ap;
    va_start(ap, fmt);
    log__vwrite(level, suffix, fmt, ap);
    va_end(ap);
}

void mg_log_write(mg_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mg_log_vwrite(level, fmt, ap);
    va_end(ap);
}

void mg__assert_fail(const char *expr, const char *file, int line, const char *func)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "assertion failed: %s (%s:%d in %s) [%s]\n", expr, file,
                     line, func, mg_log_thread_name());
    ssize_t w = write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    (void)w;
    abort();
}
