/* The positions of `magnetar replay`: parsing and formatting (replay.h). */
#include "replay.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Reads a decimal integer (optional '-' when allow_negative) from *p, advancing it. */
static bool read_i64(const char **p, bool allow_negative, int64_t *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)s[0]) &&
        !(allow_negative && s[0] == '-' && isdigit((unsigned char)s[1])))
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    *out = (int64_t)v;
    *p = end;
    return true;
}

/* Reads exactly n digits from *p as a number. */
static bool read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *out = v;
    *p += n;
    return true;
}

static int parse_rfc3339(const char *s, int64_t *ms_out)
{
    int year, mon, day, hour, min, sec;
    const char *p = s;
    if (!read_digits(&p, 4, &year) || *p++ != '-' || !read_digits(&p, 2, &mon) || *p++ != '-' ||
        !read_digits(&p, 2, &day))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (!read_digits(&p, 2, &hour) || *p++ != ':' || !read_digits(&p, 2, &min) || *p++ != ':' ||
        !read_digits(&p, 2, &sec))
        return -1;
    int64_t frac_ms = 0;
    if (*p == '.') {
        p++;
        int digits = 0, scale = 100;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3)
                frac_ms += (*p - '0') * scale;
            scale /= 10;
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (!read_digits(&p, 2, &oh) || *p++ != ':' || !read_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return -1;
        offset_s = sign * (oh * 3600 + om * 60);
    } else {
        return -1; /* RFC 3339 requires the offset */
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return -1;
    struct tm tm = { 0 };
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second reads as the second before it */
    time_t t = timegm(&tm);
    if (tm.tm_mday != day || tm.tm_mon != mon - 1) /* 2026-02-30 */
        return -1;
    *ms_out = ((int64_t)t - offset_s) * 1000 + frac_ms;
    return 0;
}

static int parse_relative(const char *s, int64_t now_ms, int64_t *ms_out)
{
    if (s[0] != '-' || !isdigit((unsigned char)s[1]))
        return -1;
    const char *p = s + 1;
    int64_t n;
    if (!read_i64(&p, false, &n))
        return -1;
    int64_t unit;
    if (strcmp(p, "ms") == 0)
        unit = 1;
    else if (strcmp(p, "s") == 0)
        unit = 1000;
    else if (strcmp(p, "m") == 0)
        unit = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        unit = 3600 * 1000;
    else if (strcmp(p, "d") == 0)
        unit = 86400 * 1000;
    else
        return -1;
    if (n > now_ms / unit)
        return -1; /* before the epoch */
    *ms_out = now_ms - n * unit;
    return 0;
}

int rp_time_parse(const char *s, int64_t now_ms, int64_t *ms_out)
{
    if (parse_relative(s, now_ms, ms_out) == 0)
        return 0;
    return parse_rfc3339(s, ms_out);
}

/* L:E[:B], all of s. */
static bool parse_id(const char *s, rp_pos *out)
{
    const char *p = s;
    int64_t l, e, b = -1;
    if (!read_i64(&p, false, &l) || *p++ != ':' || !read_i64(&p, false, &e))
        return false;
    if (*p == ':') {
        p++;
        if (!read_i64(&p, true, &b) || b < -1 || b > INT32_MAX)
            return false;
    }
    if (*p != '\0')
        return false;
    out->kind = RP_POS_ID;
    out->ledger_id = l;
    out->entry_id = e;
    out->batch_index = (int32_t)b;
    return true;
}

static int parse_one(const char *s, int64_t now_ms, rp_pos *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof(*out));
    out->batch_index = -1;
    if (strcasecmp(s, "earliest") == 0) {
        out->kind = RP_POS_EARLIEST;
        return 0;
    }
    if (strcasecmp(s, "latest") == 0) {
        out->kind = RP_POS_LATEST;
        return 0;
    }
    if (strncasecmp(s, "after:", 6) == 0) {
        if (!parse_id(s + 6, out)) {
            snprintf(err, err_size, "'%s' is not after:LEDGER:ENTRY[:BATCH]", s);
            return -1;
        }
        out->after = true;
        return 0;
    }
    if (parse_id(s, out))
        return 0;
    if (rp_time_parse(s, now_ms, &out->time_ms) == 0) {
        out->kind = RP_POS_TIME;
        return 0;
    }
    snprintf(err, err_size,
             "'%s' is not a position: earliest, latest, LEDGER:ENTRY[:BATCH], "
             "after:LEDGER:ENTRY[:BATCH], an RFC 3339 time (2026-12-07T10:00:00Z) or a relative "
             "time (-2h, -30m, -90s)",
             s);
    return -1;
}

int rp_spec_parse(const char *s, int64_t now_ms, rp_spec *out, char *err, size_t err_size)
{
    out->multi = false;
    out->count = 0;
    if (s[0] == '\0') {
        snprintf(err, err_size, "the position is empty");
        return -1;
    }
    if (strchr(s, '=') == NULL)
        return parse_one(s, now_ms, &out->one, err, err_size);
    out->multi = true;
    char *copy = strdup(s);
    if (copy == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *p = tok;
        int64_t part;
        if (eq == NULL || !read_i64(&p, false, &part) || p != eq) {
            snprintf(err, err_size,
                     "'%s' is not PARTITION=POSITION (as in 0=12:5:-1,1=after:13:0:-1)", tok);
            rc = -1;
            break;
        }
        if (part >= RP_PARTITIONS_MAX) {
            snprintf(err, err_size, "partition %" PRId64 " is past the limit of %d partitions",
                     part, RP_PARTITIONS_MAX);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < out->count; i++) {
            if (out->parts[i] == (int32_t)part) {
                snprintf(err, err_size, "partition %" PRId64 " is given twice", part);
                rc = -1;
                break;
            }
        }
        if (rc != 0)
            break;
        if (parse_one(eq + 1, now_ms, &out->pos[out->count], err, err_size) != 0) {
            rc = -1;
            break;
        }
        out->parts[out->count++] = (int32_t)part;
    }
    if (rc == 0 && out->count == 0) {
        snprintf(err, err_size, "'%s' names no partition", s);
        rc = -1;
    }
    free(copy);
    return rc;
}

void rp_pos_format(const rp_pos *p, char *dst, size_t cap)
{
    switch (p->kind) {
    case RP_POS_EARLIEST:
        snprintf(dst, cap, "earliest");
        break;
    case RP_POS_LATEST:
        snprintf(dst, cap, "latest");
        break;
    case RP_POS_ID:
        snprintf(dst, cap, "%s%" PRId64 ":%" PRId64 ":%d", p->after ? "after:" : "", p->ledger_id,
                 p->entry_id, (int)p->batch_index);
        break;
    case RP_POS_TIME: {
        time_t t = (time_t)(p->time_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(dst, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(p->time_ms % 1000));
        break;
    }
    }
}

int rp_id_cmp(int64_t l1, int64_t e1, int32_t b1, int64_t l2, int64_t e2, int32_t b2)
{
    if (l1 != l2)
        return l1 < l2 ? -1 : 1;
    if (e1 != e2)
        return e1 < e2 ? -1 : 1;
    if (b1 != b2)
        return b1 < b2 ? -1 : 1;
    return 0;
}
