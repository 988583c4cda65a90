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
 */
#ifndef MG_COMMON_LOG_H
#define MG_COMMON_LOG_H

#include <stdarg.h>

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

#endif
