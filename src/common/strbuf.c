/* The string builder; see strbuf.h. Invariant: data == NULL or data[len] == '\0', len < cap. */
#include "common/strbuf.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/limits.h"

#include <stdio.h>
#include <string.h>

void mg_strbuf_init(mg_strbuf *sb, size_t cap_max)
{
    memset(sb, 0, sizeof(*sb));
    sb->cap_max = cap_max != 0 ? cap_max : MG_STRBUF_BYTES_MAX_DEFAULT;
}

static int strbuf_reserve(mg_strbuf *sb, size_t extra)
{
    if (sb->status != MG_OK)
        return sb->status;
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap)
        return MG_OK;
    if (need > sb->cap_max) {
        sb->status = MG_ELIMIT;
        return sb->status;
    }
    size_t ncap = sb->cap == 0 ? 256 : sb->cap;
    while (ncap < need)
        ncap *= 2;
    if (ncap > sb->cap_max)
        ncap = sb->cap_max;
    char *nd = mg_realloc(sb->data, ncap);
    if (nd == NULL) {
        sb->status = MG_ENOMEM;
        return sb->status;
    }
    sb->data = nd;
    sb->cap = ncap;
    return MG_OK;
}

void mg_strbuf_append(mg_strbuf *sb, const char *s, size_t len)
{
    if (strbuf_reserve(sb, len) != MG_OK)
        return;
    memcpy(sb->data + sb->len, s, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

void mg_strbuf_puts(mg_strbuf *sb, const char *s)
{
    mg_strbuf_append(sb, s, strlen(s));
}

void mg_strbuf_printf(mg_strbuf *sb, const char *fmt, ...)
{
    if (sb->status != MG_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->status = MG_EINVAL;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        mg_strbuf_append(sb, small, (size_t)n);
        return;
    }
    if (strbuf_reserve(sb, (size_t)n) != MG_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void mg_strbuf_json_string(mg_strbuf *sb, const char *s)
{
    mg_strbuf_append(sb, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = { '\\', (char)*p };
            mg_strbuf_append(sb, esc, 2);
        } else if (*p < 0x20) {
            mg_strbuf_printf(sb, "\\u%04x", *p);
        } else {
            mg_strbuf_append(sb, (const char *)p, 1);
        }
    }
    mg_strbuf_append(sb, "\"", 1);
}

int mg_strbuf_status(const mg_strbuf *sb)
{
    return sb->status;
}

const char *mg_strbuf_str(const mg_strbuf *sb)
{
    return sb->data != NULL ? sb->data : "";
}

char *mg_strbuf_take(mg_strbuf *sb, size_t *len)
{
    char *d = sb->data;
    if (len != NULL)
        *len = sb->len;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return d;
}

void mg_strbuf_free(mg_strbuf *sb)
{
    mg_free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}
