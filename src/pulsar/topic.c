/*
 * Topic names (declared in wire.h): parsing the forms Pulsar clients write, partition names and
 * managed-ledger names.
 *
 * Rules, following Pulsar's TopicName and NamedEntity where they are defined, and stricter where
 * Pulsar is loose:
 *   1. Forms: "<topic>" (tenant public, namespace default), "<tenant>/<namespace>/<topic>", and
 *      "<domain>://<tenant>/<namespace>/<topic>" with domain persistent or non-persistent.
 *      Pulsar's legacy form with a cluster segment is refused, as is any other part count.
 *   2. Every part is non-empty and made of [A-Za-z0-9_=:.-] (Pulsar's named-entity characters).
 *      Pulsar accepts anything in the topic part and percent-encodes it for storage; refusing
 *      '/', '%' and the rest instead means a managed-ledger name never needs escaping.
 *   3. Lengths are bounded by the MG_PULSAR_*_BYTES_MAX limits, so all fields are fixed arrays.
 *   5. A part is not "." and does not start with "..": such names would read as the current or
 *      parent directory in metadata paths and file names built from them (Pulsar's pattern
 *      allows them; its ZooKeeper store then refuses "." and ".." path segments).
 *   4. "-partition-N" at the end of the topic part names partition N when N is canonical
 *      decimal (no sign, no leading zero) below MG_PULSAR_TOPIC_PARTITIONS_MAX; any other text
 *      after the last "-partition-" leaves an ordinary topic, as in Pulsar. A canonical N past
 *      the limit, or nothing before the suffix, is refused.
 */
#include "pulsar/wire.h"

#include "common/assert.h"
#include "common/error.h"
#include "pulsar/limits.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BR__PARTITION_SUFFIX     "-partition-"
#define BR__PARTITION_SUFFIX_LEN (sizeof(BR__PARTITION_SUFFIX) - 1)
#define BR__PERSISTENT           "persistent"
#define BR__NON_PERSISTENT       "non-persistent"

_Static_assert(sizeof(BR__NON_PERSISTENT) - 1 <= MG_PULSAR_DOMAIN_BYTES_MAX,
               "MG_PULSAR_DOMAIN_BYTES_MAX too small");

/* Writes a formatted reason into err (if there is room) and returns MG_EINVAL. */
__attribute__((format(printf, 3, 4))) static int br__fail(char *err, size_t err_size,
                                                          const char *fmt, ...)
{
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return MG_EINVAL;
}

static bool br__name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '=' || c == ':' || c == '.';
}

/* Checks one part s[0, n) named what ("tenant", "namespace", "topic"); shown is the whole
 * name, printable, for the message. */
static int br__check_part(const char *s, size_t n, size_t max, const char *what, const char *shown,
                          char *err, size_t err_size)
{
    if (n == 0)
        return br__fail(err, err_size, "topic name '%s' has an empty %s", shown, what);
    if (n > max)
        return br__fail(err, err_size, "topic name '%s' has a %s longer than %zu bytes", shown,
                        what, max);
    if ((n == 1 && s[0] == '.') || (n >= 2 && s[0] == '.' && s[1] == '.'))
        return br__fail(err, err_size,
                        "topic name '%s' has a %s '%.*s': a name may not be '.' or start with '..'",
                        shown, what, (int)n, s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (br__name_char(c))
            continue;
        if (c >= 0x20 && c < 0x7f)
            return br__fail(err, err_size,
                            "topic name '%s' has an invalid character '%c' in its %s", shown, c,
                            what);
        return br__fail(err, err_size, "topic name '%s' has an invalid character 0x%02x in its %s",
                        shown, c, what);
    }
    return MG_OK;
}

/* The partition of the topic part local[0, n): N, -1 for an ordinary name, or MG_EINVAL (with
 * err written) for a refused suffix. */
static int br__partition_of(const char *local, size_t n, const char *shown, int *partition,
                            char *err, size_t err_size)
{
    *partition = -1;
    const char *suffix = NULL;
    for (const char *p = local; (p = strstr(p, BR__PARTITION_SUFFIX)) != NULL; p++)
        suffix = p; /* the last occurrence */
    if (suffix == NULL)
        return MG_OK;
    const char *digits = suffix + BR__PARTITION_SUFFIX_LEN;
    size_t nd = n - (size_t)(digits - local);
    if (nd == 0 || (digits[0] == '0' && nd > 1))
        return MG_OK;
    for (size_t i = 0; i < nd; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            return MG_OK;
    }
    long v = 0;
    for (size_t i = 0; i < nd && v < MG_PULSAR_TOPIC_PARTITIONS_MAX; i++)
        v = v * 10 + (digits[i] - '0');
    if (v >= MG_PULSAR_TOPIC_PARTITIONS_MAX)
        return br__fail(err, err_size,
                        "topic name '%s' has a partition index above the limit of %d", shown,
                        MG_PULSAR_TOPIC_PARTITIONS_MAX - 1);
    if (suffix == local)
        return br__fail(err, err_size, "topic name '%s' has an empty topic before '%s'", shown,
                        BR__PARTITION_SUFFIX);
    *partition = (int)v;
    return MG_OK;
}

/* Fills full and base from the other fields. */
static void br__compose(pw_topic_name *t)
{
    int n =
        snprintf(t->full, sizeof(t->full), "%s://%s/%s/%s", t->domain, t->tenant, t->ns, t->local);
    MG_ASSERT(n > 0 && (size_t)n < sizeof(t->full));
    memcpy(t->base, t->full, (size_t)n + 1);
    if (t->partition >= 0) {
        char *suffix = strrchr(t->base, '-');
        /* base ends in "-partition-N": cut at the dash before "partition". */
        size_t digits = strlen(suffix + 1);
        size_t cut = (size_t)n - digits - BR__PARTITION_SUFFIX_LEN;
        MG_ASSERT(strncmp(t->base + cut, BR__PARTITION_SUFFIX, BR__PARTITION_SUFFIX_LEN) == 0);
        t->base[cut] = '\0';
    }
}

int pw_topic_name_parse(const char *s, pw_topic_name *out, char *err, size_t err_size)
{
    if (err != NULL && err_size > 0)
        err[0] = '\0';
    if (s == NULL || s[0] == '\0')
        return br__fail(err, err_size, "topic name is empty");
    size_t len = strnlen(s, MG_PULSAR_TOPIC_BYTES_MAX + 1);
    if (len > MG_PULSAR_TOPIC_BYTES_MAX)
        return br__fail(err, err_size, "topic name is longer than %d bytes",
                        MG_PULSAR_TOPIC_BYTES_MAX);

    /* The name as shown in messages: non-printable bytes become '?'. */
    char shown[MG_PULSAR_TOPIC_BYTES_MAX + 1];
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = (unsigned char)s[i];
        shown[i] = (c == '\0' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
    }

    pw_topic_name t;
    memset(&t, 0, sizeof(t));
    const char *rest = s;
    bool full_form = false;
    const char *sep = strstr(s, "://");
    if (sep != NULL) {
        size_t dlen = (size_t)(sep - s);
        if (dlen == sizeof(BR__PERSISTENT) - 1 && memcmp(s, BR__PERSISTENT, dlen) == 0) {
            t.persistent = true;
        } else if (dlen == sizeof(BR__NON_PERSISTENT) - 1 &&
                   memcmp(s, BR__NON_PERSISTENT, dlen) == 0) {
            t.persistent = false;
        } else {
            return br__fail(err, err_size,
                            "topic name '%s' has an unknown domain '%.*s' (expected persistent or "
                            "non-persistent)",
                            shown, (int)dlen, shown);
        }
        memcpy(t.domain, s, dlen);
        rest = sep + 3;
        full_form = true;
    } else {
        memcpy(t.domain, BR__PERSISTENT, sizeof(BR__PERSISTENT));
        t.persistent = true;
    }

    /* Split rest at '/'. */
    const char *part[3];
    size_t part_len[3];
    unsigned count = 0;
    const char *p = rest, *end = s + len;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash != NULL ? slash : end;
        if (count < 3) {
            part[count] = p;
            part_len[count] = (size_t)(stop - p);
        }
        count++;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    if (full_form && count != 3)
        return br__fail(err, err_size,
                        "topic name '%s' has %u parts after '://' (expected "
                        "<tenant>/<namespace>/<topic>)",
                        shown, count);
    if (!full_form && count != 1 && count != 3)
        return br__fail(err, err_size,
                        "topic name '%s' has %u parts (expected <topic> or "
                        "<tenant>/<namespace>/<topic>)",
                        shown, count);

    const char *local;
    size_t local_len;
    if (count == 1) {
        memcpy(t.tenant, "public", sizeof("public"));
        memcpy(t.ns, "default", sizeof("default"));
        local = part[0];
        local_len = part_len[0];
    } else {
        MG_TRY(br__check_part(part[0], part_len[0], MG_PULSAR_TENANT_BYTES_MAX, "tenant", shown,
                              err, err_size));
        MG_TRY(br__check_part(part[1], part_len[1], MG_PULSAR_NAMESPACE_BYTES_MAX, "namespace",
                              shown, err, err_size));
        memcpy(t.tenant, part[0], part_len[0]);
        memcpy(t.ns, part[1], part_len[1]);
        local = part[2];
        local_len = part_len[2];
    }
    MG_TRY(br__check_part(local, local_len, MG_PULSAR_TOPIC_LOCAL_BYTES_MAX, "topic", shown, err,
                          err_size));
    memcpy(t.local, local, local_len);
    MG_TRY(br__partition_of(t.local, local_len, shown, &t.partition, err, err_size));
    br__compose(&t);
    *out = t;
    return MG_OK;
}

int pw_topic_partition_name(const pw_topic_name *base, int partition, pw_topic_name *out)
{
    MG_ASSERT(base != out);
    if (base->partition != -1 || partition < 0 || partition >= MG_PULSAR_TOPIC_PARTITIONS_MAX)
        return MG_EINVAL;
    pw_topic_name t = *base;
    int n =
        snprintf(t.local, sizeof(t.local), "%s" BR__PARTITION_SUFFIX "%d", base->local, partition);
    if (n < 0 || (size_t)n >= sizeof(t.local))
        return MG_ELIMIT;
    t.partition = partition;
    br__compose(&t);
    *out = t;
    return MG_OK;
}

int pw_topic_ml_name(const pw_topic_name *t, char *dst, size_t cap)
{
    if (!t->persistent)
        return MG_EINVAL;
    int n = snprintf(dst, cap, "%s/%s/%s/%s", t->tenant, t->ns, t->domain, t->local);
    if (n < 0 || (size_t)n >= cap)
        return MG_ELIMIT;
    return MG_OK;
}
