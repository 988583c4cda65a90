/*
 * Metrics registry; see metrics.h for the model and the threading rules.
 *
 * Structure: the registry keeps its families in a singly linked list in registration order
 * (families are few; lookup by name is a linear scan at setup time). Each family keeps its
 * children twice: in a linked list in creation order (for rendering) and in a chained hash
 * table keyed by the label values (for lookup). A child is one allocation: the typed struct
 * (mg_counter / mg_gauge / mg_histogram, each starting with struct metrics_child), then its key
 * (the label values joined by NUL bytes) and its rendered, escaped label text `a="x",b="y"`.
 *
 * Invariants:
 *   1. reg->lock protects the family list, every family's child list and hash table, and the
 *      counts; sample values are not protected by it (they are updated with atomics).
 *   2. series_count == number of children of all families + number of callback metrics, and a
 *      new series is created only while series_count < series_max.
 *   3. Nothing is freed before mg_metrics_destroy, so handles given out stay valid.
 *   4. A child's label text is built once, at creation, so rendering never escapes values.
 */
#include "common/metrics.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
    METRICS_GAUGE_FN,
    METRICS_COUNTER_FN,
} metrics_type;

struct metrics_child {
    struct metrics_child *hash_next;
    struct metrics_child *order_next;
    uint64_t hash;
    const char *key; /* label values joined by '\0', key_len bytes */
    size_t key_len;
    const char *labels; /* escaped `name="value",...`, "" without labels */
};

struct mg_counter {
    struct metrics_child base;
    uint64_t value;
};

struct mg_gauge {
    struct metrics_child base;
    uint64_t bits; /* the double's bit pattern, so plain integer atomics apply */
};

struct mg_histogram {
    struct metrics_child base;
    mg_hist hist;
};

struct mg_metric_family {
    mg_metric_family *next;
    mg_metrics *reg;
    metrics_type type;
    char *name;
    char *help; /* NULL: no HELP line */
    size_t label_count;
    char *label_names[MG_METRICS_LABELS_MAX];
    double scale;         /* histograms */
    double (*fn)(void *); /* callback metrics */
    void *fn_arg;
    struct metrics_child **table; /* table_size buckets, a power of two */
    size_t table_size;
    size_t child_count;
    struct metrics_child *first, *last;
};

struct mg_metrics {
    pthread_mutex_t lock;
    mg_metric_family *first, *last;
    size_t family_count;
    size_t series_count;
    size_t series_max;
    bool limit_warned;
    bool process_registered;
    double process_start_time_s;
};

#define METRICS_TABLE_SIZE_INITIAL 16
#define METRICS_KEY_BYTES_MAX      (MG_METRICS_LABELS_MAX * (MG_METRICS_LABEL_VALUE_BYTES_MAX + 1))

/* ---- a growable output string ---------------------------------------------------------- */

typedef struct metrics_buf {
    char *data;
    size_t len, cap;
    bool failed; /* sticky: once an allocation failed, appends are ignored */
} metrics_buf;

static void buf_reserve(metrics_buf *b, size_t extra)
{
    if (b->failed)
        return;
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = true;
        return;
    }
    b->data = data;
    b->cap = cap;
    b->data[b->len] = '\0';
}

static void buf_append(metrics_buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(metrics_buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

static void buf_putc(metrics_buf *b, char c)
{
    buf_append(b, &c, 1);
}

/* Label values escape backslash, double quote and newline; HELP text only backslash and
 * newline (format 0.0.4). */
static void buf_escaped(metrics_buf *b, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            buf_append(b, "\\\\", 2);
        else if (*s == '\n')
            buf_append(b, "\\n", 2);
        else if (quote && *s == '"')
            buf_append(b, "\\\"", 2);
        else
            buf_putc(b, *s);
    }
}

static void buf_u64(metrics_buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    buf_append(b, tmp, (size_t)n);
}

/* Shortest of %.15g and %.17g that reads back as the same double; NaN and infinities as the
 * format spells them. */
static void buf_double(metrics_buf *b, double v)
{
    if (isnan(v)) {
        buf_puts(b, "NaN");
        return;
    }
    if (isinf(v)) {
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    int n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    buf_append(b, tmp, (size_t)n);
}

/* ---- validation ------------------------------------------------------------------------ */

static bool valid_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MG_METRICS_NAME_BYTES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool valid_label_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MG_METRICS_NAME_BYTES_MAX)
        return false;
    if (n >= 2 && s[0] == '_' && s[1] == '_')
        return false; /* reserved for Prometheus' own labels */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i - 1 < extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            unsigned d = s[i + k];
            if ((d & 0xC0u) != 0x80u)
                return false;
            cp = (cp << 6) | (d & 0x3Fu);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += extra + 1;
    }
    return true;
}

/* ---- registry -------------------------------------------------------------------------- */

int mg_metrics_create(mg_metrics **out)
{
    MG_ASSERT(out != NULL);
    *out = NULL;
    mg_metrics *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return MG_ENOMEM;
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        free(reg);
        return MG_ENOMEM;
    }
    reg->series_max = MG_METRICS_SERIES_MAX;
    *out = reg;
    return MG_OK;
}

static void family_free(mg_metric_family *fam)
{
    struct metrics_child *c = fam->first;
    while (c != NULL) {
        struct metrics_child *next = c->order_next;
        if (fam->type == METRICS_HISTOGRAM)
            mg_hist_destroy(&((mg_histogram *)c)->hist);
        free(c);
        c = next;
    }
    for (size_t i = 0; i < fam->label_count; i++)
        free(fam->label_names[i]);
    free(fam->table);
    free(fam->name);
    free(fam->help);
    free(fam);
}

void mg_metrics_destroy(mg_metrics *reg)
{
    if (reg == NULL)
        return;
    mg_metric_family *fam = reg->first;
    while (fam != NULL) {
        mg_metric_family *next = fam->next;
        family_free(fam);
        fam = next;
    }
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

int mg_metrics_set_series_max(mg_metrics *reg, size_t series_max)
{
    if (series_max < 1 || series_max > MG_METRICS_SERIES_MAX)
        return MG_EINVAL;
    pthread_mutex_lock(&reg->lock);
    reg->series_max = series_max;
    reg->limit_warned = false;
    pthread_mutex_unlock(&reg->lock);
    return MG_OK;
}

size_t mg_metrics_series_count(mg_metrics *reg)
{
    pthread_mutex_lock(&reg->lock);
    size_t n = reg->series_count;
    pthread_mutex_unlock(&reg->lock);
    return n;
}

static const char *type_name(metrics_type type)
{
    switch (type) {
    case METRICS_COUNTER:
    case METRICS_COUNTER_FN:
        return "counter";
    case METRICS_GAUGE:
    case METRICS_GAUGE_FN:
        return "gauge";
    case METRICS_HISTOGRAM:
        return "summary";
    }
    MG_UNREACHABLE();
}

static mg_metric_family *family_find(mg_metrics *reg, const char *name)
{
    for (mg_metric_family *f = reg->first; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static bool family_matches(const mg_metric_family *f, metrics_type type, size_t label_count,
                           const char *const *label_names, double scale)
{
    if (f->type != type || f->label_count != label_count)
        return false;
    if (type == METRICS_HISTOGRAM && f->scale != scale)
        return false;
    for (size_t i = 0; i < label_count; i++)
        if (strcmp(f->label_names[i], label_names[i]) != 0)
            return false;
    return true;
}

/* Validates the arguments of a registration; on failure logs why and returns MG_EINVAL. */
static int family_check_args(metrics_type type, const char *name, const char *help,
                             size_t label_count, const char *const *label_names, double scale)
{
    if (name == NULL || !valid_metric_name(name)) {
        MG_WARN("metrics: invalid metric name \"%s\"", name ? name : "(null)");
        return MG_EINVAL;
    }
    if (help != NULL && strlen(help) > MG_METRICS_HELP_BYTES_MAX) {
        MG_WARN("metrics: %s: help text longer than %d bytes", name, MG_METRICS_HELP_BYTES_MAX);
        return MG_EINVAL;
    }
    if (label_count > MG_METRICS_LABELS_MAX) {
        MG_WARN("metrics: %s: %zu labels, at most %d", name, label_count, MG_METRICS_LABELS_MAX);
        return MG_EINVAL;
    }
    MG_ASSERT(label_count == 0 || label_names != NULL);
    for (size_t i = 0; i < label_count; i++) {
        const char *l = label_names[i];
        if (l == NULL || !valid_label_name(l) ||
            (type == METRICS_HISTOGRAM && strcmp(l, "quantile") == 0)) {
            MG_WARN("metrics: %s: invalid label name \"%s\"", name, l ? l : "(null)");
            return MG_EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(label_names[j], l) == 0) {
                MG_WARN("metrics: %s: label \"%s\" given twice", name, l);
                return MG_EINVAL;
            }
        }
    }
    if (type == METRICS_HISTOGRAM && !(scale > 0.0 && isfinite(scale))) {
        MG_WARN("metrics: %s: histogram scale must be positive and finite", name);
        return MG_EINVAL;
    }
    return MG_OK;
}

/* Creates a family; the caller holds reg->lock and has checked the arguments and that the name
 * is free. Returns NULL when out of memory. */
static mg_metric_family *family_new(mg_metrics *reg, metrics_type type, const char *name,
                                    const char *help, size_t label_count,
                                    const char *const *label_names, double scale)
{
    mg_metric_family *fam = calloc(1, sizeof(*fam));
    if (fam == NULL)
        return NULL;
    fam->reg = reg;
    fam->type = type;
    fam->scale = scale;
    fam->name = strdup(name);
    fam->help = help != NULL ? strdup(help) : NULL;
    bool ok = fam->name != NULL && (help == NULL || fam->help != NULL);
    for (size_t i = 0; i < label_count; i++) {
        fam->label_names[i] = strdup(label_names[i]);
        fam->label_count = i + 1; /* so family_free releases what was copied */
        ok = ok && fam->label_names[i] != NULL;
    }
    if (type == METRICS_COUNTER || type == METRICS_GAUGE || type == METRICS_HISTOGRAM) {
        fam->table = calloc(METRICS_TABLE_SIZE_INITIAL, sizeof(*fam->table));
        fam->table_size = METRICS_TABLE_SIZE_INITIAL;
        ok = ok && fam->table != NULL;
    }
    if (!ok) {
        family_free(fam);
        return NULL;
    }
    return fam;
}

static void family_link(mg_metrics *reg, mg_metric_family *fam)
{
    if (reg->last == NULL)
        reg->first = fam;
    else
        reg->last->next = fam;
    reg->last = fam;
    reg->family_count++;
}

static mg_metric_family *family_register(mg_metrics *reg, metrics_type type, const char *name,
                                         const char *help, size_t label_count,
                                         const char *const *label_names, double scale)
{
    MG_ASSERT(reg != NULL);
    if (family_check_args(type, name, help, label_count, label_names, scale) != MG_OK)
        return NULL;
    pthread_mutex_lock(&reg->lock);
    mg_metric_family *fam = family_find(reg, name);
    if (fam != NULL) {
        if (!family_matches(fam, type, label_count, label_names, scale)) {
            MG_WARN("metrics: %s is already registered with another type, labels or scale", name);
            fam = NULL;
        }
    } else if (reg->family_count >= MG_METRICS_FAMILIES_MAX) {
        MG_WARN("metrics: %s: registry already has %d families", name, MG_METRICS_FAMILIES_MAX);
    } else {
        fam = family_new(reg, type, name, help, label_count, label_names, scale);
        if (fam == NULL)
            MG_WARN("metrics: %s: out of memory", name);
        else
            family_link(reg, fam);
    }
    pthread_mutex_unlock(&reg->lock);
    return fam;
}

mg_metric_family *mg_metrics_counter_family(mg_metrics *reg, const char *name, const char *help,
                                            size_t label_count, const char *const *label_names)
{
    return family_register(reg, METRICS_COUNTER, name, help, label_count, label_names, 1.0);
}

mg_metric_family *mg_metrics_gauge_family(mg_metrics *reg, const char *name, const char *help,
                                          size_t label_count, const char *const *label_names)
{
    return family_register(reg, METRICS_GAUGE, name, help, label_count, label_names, 1.0);
}

mg_metric_family *mg_metrics_histogram_family(mg_metrics *reg, const char *name, const char *help,
                                              size_t label_count, const char *const *label_names,
                                              double scale)
{
    return family_register(reg, METRICS_HISTOGRAM, name, help, label_count, label_names, scale);
}

static int fn_register(mg_metrics *reg, metrics_type type, const char *name, const char *help,
                       double (*fn)(void *), void *arg)
{
    MG_ASSERT(reg != NULL && fn != NULL);
    int rc = family_check_args(type, name, help, 0, NULL, 1.0);
    if (rc != MG_OK)
        return rc;
    pthread_mutex_lock(&reg->lock);
    mg_metric_family *fam = NULL;
    if (family_find(reg, name) != NULL) {
        MG_WARN("metrics: %s is already registered", name);
        rc = MG_EEXIST;
    } else if (reg->family_count >= MG_METRICS_FAMILIES_MAX ||
               reg->series_count >= reg->series_max) {
        MG_WARN("metrics: %s: family or series limit reached", name);
        rc = MG_ELIMIT;
    } else if ((fam = family_new(reg, type, name, help, 0, NULL, 1.0)) == NULL) {
        rc = MG_ENOMEM;
    } else {
        fam->fn = fn;
        fam->fn_arg = arg;
        family_link(reg, fam);
        reg->series_count++;
    }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

int mg_metrics_gauge_fn(mg_metrics *reg, const char *name, const char *help,
                        double (*fn)(void *arg), void *arg)
{
    return fn_register(reg, METRICS_GAUGE_FN, name, help, fn, arg);
}

int mg_metrics_counter_fn(mg_metrics *reg, const char *name, const char *help,
                          double (*fn)(void *arg), void *arg)
{
    return fn_register(reg, METRICS_COUNTER_FN, name, help, fn, arg);
}

/* ---- children -------------------------------------------------------------------------- */

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Doubles the hash table when it is full. A failed allocation keeps the old table: lookups
 * stay correct, only longer. */
static void family_grow(mg_metric_family *fam)
{
    if (fam->child_count < fam->table_size)
        return;
    size_t size = fam->table_size * 2;
    struct metrics_child **table = calloc(size, sizeof(*table));
    if (table == NULL)
        return;
    for (struct metrics_child *c = fam->first; c != NULL; c = c->order_next) {
        size_t slot = (size_t)c->hash & (size - 1);
        c->hash_next = table[slot];
        table[slot] = c;
    }
    free(fam->table);
    fam->table = table;
    fam->table_size = size;
}

/* Renders `name="value",...` for the child's label text. */
static void labels_render(metrics_buf *b, const mg_metric_family *fam,
                          const char *const *label_values)
{
    for (size_t i = 0; i < fam->label_count; i++) {
        if (i > 0)
            buf_putc(b, ',');
        buf_puts(b, fam->label_names[i]);
        buf_append(b, "=\"", 2);
        buf_escaped(b, label_values[i], true);
        buf_putc(b, '"');
    }
}

static struct metrics_child *child_get(mg_metric_family *fam, metrics_type type,
                                       const char *const *label_values)
{
    if (fam == NULL)
        return NULL;
    if (fam->type != type) {
        MG_WARN("metrics: %s is a %s, not the type asked for", fam->name, type_name(fam->type));
        return NULL;
    }
    MG_ASSERT(fam->label_count == 0 || label_values != NULL);

    /* The key is the values joined by NUL bytes; checking lengths first bounds it. */
    char key[METRICS_KEY_BYTES_MAX];
    size_t key_len = 0;
    for (size_t i = 0; i < fam->label_count; i++) {
        const char *v = label_values[i];
        size_t n = v != NULL ? strlen(v) : 0;
        if (v == NULL || n > MG_METRICS_LABEL_VALUE_BYTES_MAX ||
            !valid_utf8((const unsigned char *)v, n)) {
            MG_WARN("metrics: %s: value of label %s is missing, too long or not UTF-8", fam->name,
                    fam->label_names[i]);
            return NULL;
        }
        memcpy(key + key_len, v, n);
        key_len += n;
        key[key_len++] = '\0';
    }
    uint64_t hash = key_hash(key, key_len);

    mg_metrics *reg = fam->reg;
    pthread_mutex_lock(&reg->lock);
    struct metrics_child *c = fam->table[(size_t)hash & (fam->table_size - 1)];
    while (c != NULL &&
           !(c->hash == hash && c->key_len == key_len && memcmp(c->key, key, key_len) == 0))
        c = c->hash_next;
    if (c != NULL)
        goto done;

    if (reg->series_count >= reg->series_max) {
        if (!reg->limit_warned)
            MG_WARN("metrics: series limit %zu reached (at %s); new series are dropped",
                    reg->series_max, fam->name);
        reg->limit_warned = true;
        goto done;
    }

    metrics_buf labels = { 0 };
    labels_render(&labels, fam, label_values);
    if (labels.failed)
        goto nomem;
    size_t struct_size = type == METRICS_COUNTER ? sizeof(mg_counter)
                         : type == METRICS_GAUGE ? sizeof(mg_gauge)
                                                 : sizeof(mg_histogram);
    char *mem = calloc(1, struct_size + key_len + labels.len + 1);
    if (mem == NULL)
        goto nomem;
    c = (struct metrics_child *)mem;
    if (type == METRICS_HISTOGRAM &&
        mg_hist_init(&((mg_histogram *)c)->hist, MG_METRICS_HIST_PRECISION_BITS,
                     MG_METRICS_HIST_VALUE_MAX) != MG_OK) {
        free(mem);
        c = NULL;
        goto nomem;
    }
    char *k = mem + struct_size;
    if (key_len > 0)
        memcpy(k, key, key_len);
    char *l = k + key_len;
    if (labels.len > 0)
        memcpy(l, labels.data, labels.len);
    l[labels.len] = '\0';
    free(labels.data);
    c->hash = hash;
    c->key = k;
    c->key_len = key_len;
    c->labels = l;
    if (fam->last == NULL)
        fam->first = c;
    else
        fam->last->order_next = c;
    fam->last = c;
    fam->child_count++;
    size_t slot = (size_t)hash & (fam->table_size - 1);
    c->hash_next = fam->table[slot];
    fam->table[slot] = c;
    reg->series_count++;
    family_grow(fam);
    goto done;

nomem:
    free(labels.data);
    MG_WARN("metrics: %s: out of memory creating a series", fam->name);
done:
    pthread_mutex_unlock(&reg->lock);
    return c;
}

mg_counter *mg_metrics_counter(mg_metric_family *fam, const char *const *label_values)
{
    return (mg_counter *)child_get(fam, METRICS_COUNTER, label_values);
}

mg_gauge *mg_metrics_gauge(mg_metric_family *fam, const char *const *label_values)
{
    return (mg_gauge *)child_get(fam, METRICS_GAUGE, label_values);
}

mg_histogram *mg_metrics_histogram(mg_metric_family *fam, const char *const *label_values)
{
    return (mg_histogram *)child_get(fam, METRICS_HISTOGRAM, label_values);
}

mg_counter *mg_metrics_unlabelled_counter(mg_metrics *reg, const char *name, const char *help)
{
    return mg_metrics_counter(mg_metrics_counter_family(reg, name, help, 0, NULL), NULL);
}

mg_gauge *mg_metrics_unlabelled_gauge(mg_metrics *reg, const char *name, const char *help)
{
    return mg_metrics_gauge(mg_metrics_gauge_family(reg, name, help, 0, NULL), NULL);
}

mg_histogram *mg_metrics_unlabelled_histogram(mg_metrics *reg, const char *name, const char *help,
                                              double scale)
{
    return mg_metrics_histogram(mg_metrics_histogram_family(reg, name, help, 0, NULL, scale), NULL);
}

/* ---- updates --------------------------------------------------------------------------- */

void mg_counter_add(mg_counter *c, uint64_t delta)
{
    if (c != NULL)
        __atomic_fetch_add(&c->value, delta, __ATOMIC_RELAXED);
}

void mg_counter_inc(mg_counter *c)
{
    mg_counter_add(c, 1);
}

uint64_t mg_counter_value(const mg_counter *c)
{
    return c != NULL ? __atomic_load_n(&c->value, __ATOMIC_RELAXED) : 0;
}

static uint64_t double_bits(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

static double bits_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

void mg_gauge_set(mg_gauge *g, double value)
{
    if (g != NULL)
        __atomic_store_n(&g->bits, double_bits(value), __ATOMIC_RELAXED);
}

void mg_gauge_add(mg_gauge *g, double delta)
{
    if (g == NULL)
        return;
    /* Each failed exchange means another thread changed the gauge; the loop ends as soon as
     * this thread is the one that got in, at most once per concurrent updater. */
    uint64_t old = __atomic_load_n(&g->bits, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&g->bits, &old, double_bits(bits_double(old) + delta), true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

double mg_gauge_value(const mg_gauge *g)
{
    return g != NULL ? bits_double(__atomic_load_n(&g->bits, __ATOMIC_RELAXED)) : 0.0;
}

void mg_histogram_observe(mg_histogram *h, uint64_t value)
{
    if (h != NULL)
        mg_hist_record_atomic(&h->hist, value);
}

int mg_histogram_snapshot(const mg_histogram *h, mg_hist *dst)
{
    if (h == NULL)
        return MG_EINVAL;
    return mg_hist_snapshot(&h->hist, dst);
}

/* ---- rendering ------------------------------------------------------------------------- */

static const struct {
    const char *label;
    double percentile;
} summary_quantiles[] = {
    { "0.5", 50.0 },   { "0.75", 75.0 },    { "0.95", 95.0 }, { "0.99", 99.0 },
    { "0.999", 99.9 }, { "0.9999", 99.99 }, { "1.0", 100.0 },
};

/* Converts a recorded value to the rendered unit. When 1/scale is a whole number (0.001 ->
 * 1000) the value is divided by it, which rounds correctly, so 1007 us renders as 1.007 and not
 * as 1.0070000000000001. */
static double scaled(const mg_metric_family *fam, double v)
{
    if (fam->scale == 1.0)
        return v;
    double inv = 1.0 / fam->scale;
    double inv_whole = round(inv);
    if (inv_whole >= 1.0 && fabs(inv - inv_whole) <= 1e-9 * inv_whole)
        return v / inv_whole;
    return v * fam->scale;
}

/* name{labels[,extra]} with the braces left out when there is nothing inside. */
static void sample_start(metrics_buf *b, const char *name, const char *suffix, const char *labels,
                         const char *extra)
{
    buf_puts(b, name);
    buf_puts(b, suffix);
    bool has_labels = labels[0] != '\0';
    if (has_labels || extra != NULL) {
        buf_putc(b, '{');
        buf_puts(b, labels);
        if (extra != NULL) {
            if (has_labels)
                buf_putc(b, ',');
            buf_puts(b, extra);
        }
        buf_putc(b, '}');
    }
    buf_putc(b, ' ');
}

static void render_summary(metrics_buf *b, const mg_metric_family *fam,
                           const struct metrics_child *c, mg_hist *scratch)
{
    int rc = mg_hist_snapshot(&((const mg_histogram *)c)->hist, scratch);
    MG_ASSERT(rc == MG_OK); /* every metrics histogram has the scratch layout */
    char extra[32];
    for (size_t q = 0; q < sizeof(summary_quantiles) / sizeof(summary_quantiles[0]); q++) {
        snprintf(extra, sizeof(extra), "quantile=\"%s\"", summary_quantiles[q].label);
        sample_start(b, fam->name, "", c->labels, extra);
        if (mg_hist_count(scratch) == 0)
            buf_puts(b, "NaN");
        else
            buf_double(b, scaled(fam, (double)mg_hist_percentile(scratch,
                                                                 summary_quantiles[q].percentile)));
        buf_putc(b, '\n');
    }
    sample_start(b, fam->name, "_sum", c->labels, NULL);
    buf_double(b, scaled(fam, (double)mg_hist_sum(scratch)));
    buf_putc(b, '\n');
    sample_start(b, fam->name, "_count", c->labels, NULL);
    buf_u64(b, mg_hist_count(scratch));
    buf_putc(b, '\n');
}

static void render_family(metrics_buf *b, const mg_metric_family *fam, mg_hist *scratch)
{
    if (fam->help != NULL) {
        buf_puts(b, "# HELP ");
        buf_puts(b, fam->name);
        buf_putc(b, ' ');
        buf_escaped(b, fam->help, false);
        buf_putc(b, '\n');
    }
    buf_puts(b, "# TYPE ");
    buf_puts(b, fam->name);
    buf_putc(b, ' ');
    buf_puts(b, type_name(fam->type));
    buf_putc(b, '\n');
    if (fam->type == METRICS_GAUGE_FN || fam->type == METRICS_COUNTER_FN) {
        sample_start(b, fam->name, "", "", NULL);
        buf_double(b, fam->fn(fam->fn_arg));
        buf_putc(b, '\n');
        return;
    }
    for (const struct metrics_child *c = fam->first; c != NULL; c = c->order_next) {
        if (fam->type == METRICS_HISTOGRAM) {
            render_summary(b, fam, c, scratch);
            continue;
        }
        sample_start(b, fam->name, "", c->labels, NULL);
        if (fam->type == METRICS_COUNTER)
            buf_u64(b, mg_counter_value((const mg_counter *)c));
        else
            buf_double(b, mg_gauge_value((const mg_gauge *)c));
        buf_putc(b, '\n');
    }
}

int mg_metrics_render(mg_metrics *reg, char **out, size_t *out_len)
{
    MG_ASSERT(reg != NULL && out != NULL);
    *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    metrics_buf b = { 0 };
    buf_reserve(&b, 0); /* an empty registry still renders as "" */
    mg_hist scratch = { 0 };
    bool scratch_ready = false;

    pthread_mutex_lock(&reg->lock);
    for (const mg_metric_family *fam = reg->first; fam != NULL && !b.failed; fam = fam->next) {
        if (fam->type == METRICS_HISTOGRAM && fam->first != NULL && !scratch_ready) {
            if (mg_hist_init(&scratch, MG_METRICS_HIST_PRECISION_BITS, MG_METRICS_HIST_VALUE_MAX) !=
                MG_OK) {
                b.failed = true;
                break;
            }
            scratch_ready = true;
        }
        render_family(&b, fam, &scratch);
    }
    pthread_mutex_unlock(&reg->lock);

    mg_hist_destroy(&scratch);
    if (b.failed) {
        free(b.data);
        return MG_ENOMEM;
    }
    *out = b.data;
    if (out_len != NULL)
        *out_len = b.len;
    return MG_OK;
}

/* ---- process metrics ------------------------------------------------------------------- */

/* Reads a small /proc file into buf (NUL-terminated). Returns its length or -1. */
static ssize_t proc_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* Field `field` (1-based, as in proc(5)) of /proc/self/stat, read as an unsigned number. The
 * command name (field 2) may hold spaces and parentheses, so counting starts after the last
 * ')'. */
static bool proc_stat_field(int field, unsigned long long *out)
{
    char buf[1024];
    if (proc_read("/proc/self/stat", buf, sizeof(buf)) <= 0)
        return false;
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return false;
    p++;
    for (int f = 3; f <= field; f++) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return false;
        if (f == field) {
            char *end;
            errno = 0;
            *out = strtoull(p, &end, 10);
            return end != p && errno == 0;
        }
        while (*p != ' ' && *p != '\0')
            p++;
    }
    return false;
}

static double process_cpu_seconds(void *arg)
{
    (void)arg;
    unsigned long long utime, stime;
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0 || !proc_stat_field(14, &utime) || !proc_stat_field(15, &stime))
        return NAN;
    return (double)(utime + stime) / (double)ticks;
}

/* /proc/self/statm: size and resident, in pages. */
static double process_statm(int which)
{
    char buf[256];
    unsigned long long size, resident;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || proc_read("/proc/self/statm", buf, sizeof(buf)) <= 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return NAN;
    return (double)(which == 0 ? size : resident) * (double)page;
}

static double process_virtual_bytes(void *arg)
{
    (void)arg;
    return process_statm(0);
}

static double process_resident_bytes(void *arg)
{
    (void)arg;
    return process_statm(1);
}

static double process_open_fds(void *arg)
{
    (void)arg;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return NAN;
    /* Bounded by the process's descriptor table, which the kernel bounds (RLIMIT_NOFILE). */
    double n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n > 0 ? n - 1 : 0; /* not counting the descriptor that reads the directory */
}

static double process_max_fds(void *arg)
{
    (void)arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return NAN;
    return rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
}

static double process_start_time(void *arg)
{
    return *(const double *)arg;
}

/* Boot time (btime in /proc/stat) plus the process's start (field 22, in clock ticks after
 * boot). /proc/stat has long lines (intr), so it is scanned in chunks and only a chunk that
 * begins a line is checked for "btime ". */
static double process_start_time_compute(void)
{
    unsigned long long start_ticks, btime = 0;
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0 || !proc_stat_field(22, &start_ticks))
        return NAN;
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return NAN;
    char chunk[256];
    bool line_start = true, found = false;
    for (int i = 0; i < (1 << 16) && !found && fgets(chunk, sizeof(chunk), f) != NULL; i++) {
        if (line_start && strncmp(chunk, "btime ", 6) == 0)
            found = sscanf(chunk + 6, "%llu", &btime) == 1;
        line_start = strchr(chunk, '\n') != NULL;
    }
    fclose(f);
    if (!found)
        return NAN;
    return (double)btime + (double)start_ticks / (double)ticks;
}

int mg_metrics_register_process(mg_metrics *reg)
{
    MG_ASSERT(reg != NULL);
    pthread_mutex_lock(&reg->lock);
    bool already = reg->process_registered;
    reg->process_registered = true;
    if (!already)
        reg->process_start_time_s = process_start_time_compute();
    pthread_mutex_unlock(&reg->lock);
    if (already)
        return MG_OK;
    int rc = mg_metrics_counter_fn(reg, "process_cpu_seconds_total",
                                   "User and system CPU time of the process, in seconds.",
                                   process_cpu_seconds, NULL);
    int r = mg_metrics_gauge_fn(reg, "process_resident_memory_bytes",
                                "Resident set size of the process, in bytes.",
                                process_resident_bytes, NULL);
    rc = rc != MG_OK ? rc : r;
    r = mg_metrics_gauge_fn(reg, "process_virtual_memory_bytes",
                            "Virtual address space size of the process, in bytes.",
                            process_virtual_bytes, NULL);
    rc = rc != MG_OK ? rc : r;
    r = mg_metrics_gauge_fn(reg, "process_open_fds", "Open file descriptors of the process.",
                            process_open_fds, NULL);
    rc = rc != MG_OK ? rc : r;
    r = mg_metrics_gauge_fn(reg, "process_max_fds",
                            "Limit on open file descriptors (soft RLIMIT_NOFILE).", process_max_fds,
                            NULL);
    rc = rc != MG_OK ? rc : r;
    r = mg_metrics_gauge_fn(reg, "process_start_time_seconds",
                            "Start time of the process, in seconds since the Unix epoch.",
                            process_start_time, &reg->process_start_time_s);
    rc = rc != MG_OK ? rc : r;
    return rc;
}
