/*
 * A growable string for building replies (JSON for the admin API, Prometheus text). It grows
 * by doubling up to a cap given at init; past the cap, or when memory runs out, it enters a
 * sticky error state (every later append is a no-op) that mg_strbuf_status reports once at the
 * end, so builders need not check every append.
 */
#ifndef MG_COMMON_STRBUF_H
#define MG_COMMON_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mg_strbuf {
    char *data;     /* NUL-terminated; NULL until the first append */
    size_t len;     /* bytes, without the NUL */
    size_t cap;     /* allocated bytes */
    size_t cap_max; /* growth limit in bytes */
    int status;     /* MG_OK, or the sticky MG_ELIMIT / MG_ENOMEM */
} mg_strbuf;

/* An empty string that may grow to cap_max bytes (0 = 64 MiB). */
void mg_strbuf_init(mg_strbuf *sb, size_t cap_max);
void mg_strbuf_append(mg_strbuf *sb, const char *s, size_t len);
void mg_strbuf_puts(mg_strbuf *sb, const char *s);
void mg_strbuf_printf(mg_strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included (", \, control characters escaped). */
void mg_strbuf_json_string(mg_strbuf *sb, const char *s);
/* MG_OK, or the first error met. */
int mg_strbuf_status(const mg_strbuf *sb);
/* The string (never NULL: "" when empty) and its length. */
const char *mg_strbuf_str(const mg_strbuf *sb);
/* Hands the allocation to the caller (free with mg_free); the builder is left empty. */
char *mg_strbuf_take(mg_strbuf *sb, size_t *len);
void mg_strbuf_free(mg_strbuf *sb);

#endif
