/*
 * Logging: one line per record on stderr,
 *
 *     2026-11-22T10:15:02.123Z INFO  [loop-0] broker: ready on 6650
 *
 * with a UTC timestamp (milliseconds), the level, the name of the calling thread and the
 * message. A record is formatted into a stack buffer and written with one write(2), so lines
 * from different threads never interleave. The level and the sink are process-wide settings
 * (the one deliberate global besides const tables): they are set once at start-up from
 * --log-level, and read with relaxed atomics afterwards.
 *
 * RATE LIMITING. A line that can repeat once per request or connection (an accept failure, a
 * refused connection, a malformed frame) is written with MG_WARN_LIMITED and its kin: each call
 * site keeps an mg_log_limit (a static inside the macro, like the Linux kernel's
 * printk_ratelimited), which lets MG_LOG_LIMIT_LINES lines through per MG_LOG_LIMIT_WINDOW_MS
 * and counts the rest. The next line that passes after some were held back ends with
 * " (N similar lines suppressed)", so no count is lost, only deferred to the next occurrence. A
 * flood of connections therefore costs a few lines per window instead of one per connection.
 */
#ifndef MG_COMMON_LOG_H
#define MG_COMMON_LOG_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum mg_log_level {
    MG_LOG_TRACE = 0,
    MG_LOG_DEBUG = 1,
    MG_LOG_INFO = 2,
    MG_LOG_WARN = 3,
    MG_LOG_ERROR = 4,
    MG_LOG_OFF = 5,
} mg_log_level;

/* Sets the lowest level that is printed. Any thread. */
void mg_log_set_level(mg_log_level level);
mg_log_level mg_log_get_level(void);

/* Parses "trace", "debug", "info", "warn", "error", "off" (case-insensitive).
 * Returns MG_OK and sets *out, or MG_EINVAL. */
int mg_log_parse_level(const char *text, mg_log_level *out);
const char *mg_log_level_name(mg_log_level level);

/* Sends records to fd (default 2, stderr). Used by tests to capture output. */
void mg_log_set_fd(int fd);

/* Names the calling thread in log records (at most 15 characters are kept) and, on Linux, in
 * /proc (pthread_setname_np), so `top -H` shows the same name. */
void mg_log_set_thread_name(const char *name);
const char *mg_log_thread_name(void);

void mg_log_write(mg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mg_log_vwrite(mg_log_level level, const char *fmt, va_list ap);

/* The state of one rate-limited call site. Zero-initialised apart from the mutex (call sites
 * on several loop threads share it). */
typedef struct mg_log_limit {
    pthread_mutex_t mu;
    int64_t window_start_ms; /* CLOCK_MONOTONIC; 0 = no window yet */
    uint32_t lines_in_window;
    uint64_t suppressed_count; /* held back since the last line written */
} mg_log_limit;

#define MG_LOG_LIMIT_INIT                  \
    {                                      \
        PTHREAD_MUTEX_INITIALIZER, 0, 0, 0 \
    }

/* Lines one call site writes per window: enough to see what is happening and to which peers,
 * few enough that a flood of 5,000 connections a second costs under one line a second. */
#define MG_LOG_LIMIT_LINES     5
#define MG_LOG_LIMIT_WINDOW_MS 10000

/* Decides whether a line of the call site l goes out at now_ms (monotonic milliseconds).
 * Returns true and sets *suppressed_out to the lines held back since the previous one written
 * (then reset), or false and counts this line as held back. Any thread. */
bool mg_log_limit_admit(mg_log_limit *l, int64_t now_ms, uint64_t *suppressed_out);

/* Writes a record through the call site's limit l: as mg_log_write, unless the limit holds it
 * back; the first line after held-back ones ends with " (N similar lines suppressed)". */
void mg_log_write_limited(mg_log_limit *l, mg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define MG__LOG(level, ...)                     \
    do {                                        \
        if ((level) >= mg_log_get_level())      \
            mg_log_write((level), __VA_ARGS__); \
    } while (0)

#define MG_TRACE(...) MG__LOG(MG_LOG_TRACE, __VA_ARGS__)
#define MG_DEBUG(...) MG__LOG(MG_LOG_DEBUG, __VA_ARGS__)
#define MG_INFO(...)  MG__LOG(MG_LOG_INFO, __VA_ARGS__)
#define MG_WARN(...)  MG__LOG(MG_LOG_WARN, __VA_ARGS__)
#define MG_ERROR(...) MG__LOG(MG_LOG_ERROR, __VA_ARGS__)

#define MG__LOG_LIMITED(level, ...)                                      \
    do {                                                                 \
        static mg_log_limit mg__log_limit_ = MG_LOG_LIMIT_INIT;          \
        if ((level) >= mg_log_get_level())                               \
            mg_log_write_limited(&mg__log_limit_, (level), __VA_ARGS__); \
    } while (0)

#define MG_INFO_LIMITED(...)  MG__LOG_LIMITED(MG_LOG_INFO, __VA_ARGS__)
#define MG_WARN_LIMITED(...)  MG__LOG_LIMITED(MG_LOG_WARN, __VA_ARGS__)
#define MG_ERROR_LIMITED(...) MG__LOG_LIMITED(MG_LOG_ERROR, __VA_ARGS__)

#endif
