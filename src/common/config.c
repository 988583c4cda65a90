/*
 * Configuration parser, config-file reader and help printer; the rules are in config.h.
 *
 * A parse runs in five steps, each of which may stop it with an error in res->error:
 *
 *   1. check the spec (MG_ASSERT) and set every STRING field to NULL, so that from here on
 *      mg_config_free is safe whatever happens;
 *   2. apply the defaults;
 *   3. scan argv: check its shape (unknown options, missing values), find --config and --help,
 *      count the positional arguments; nothing is applied;
 *   4. read the config file, if any, and apply it line by line;
 *   5. walk argv again, exactly as in step 3, applying every flag, and reorder argv so the
 *      positional arguments end it.
 *
 * Steps 3 and 5 share one walker (cfg_walk_argv), so they cannot disagree on which argument
 * is the value of which option. Values are parsed into a local first and stored only when
 * valid; a replaced string is freed at once, so a field owns at most one allocation.
 */
#include "common/config.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* How much of a bad value or unknown name is quoted back in a message, so one long value cannot
 * push the option name and the reason out of the 512-byte error buffer. */
#define CFG_SHOW_BYTES           48
/* Help is wrapped to fit an 80-column terminal. */
#define CFG_HELP_WIDTH           79
/* A flag column wider than this puts the option's text on the line below. */
#define CFG_HELP_FLAG_COLUMN_MAX 30
/* Room for the reason part of a message, before the option name and file prefix are added. */
#define CFG_WHY_BYTES            384
/* A suggestion is offered for an unknown name at most this many edits from a real one. */
#define CFG_SUGGEST_DISTANCE_MAX 2

/* ---- small text helpers ---------------------------------------------------------------- */

/* Appends formatted text to a fixed buffer, cutting (and remembering the cut) when it is full. */
typedef struct cfg_buf {
    char *p;
    size_t cap;
    size_t len;
    bool cut;
} cfg_buf;

static void cfg_buf_init(cfg_buf *b, char *p, size_t cap)
{
    MG_ASSERT(p != NULL && cap > 0);
    b->p = p;
    b->cap = cap;
    b->len = 0;
    b->cut = false;
    p[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static void cfg_buf_add(cfg_buf *b, const char *fmt, ...)
{
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->p[b->len] = '\0';
        b->cut = true;
    } else if ((size_t)n >= room) {
        b->len = b->cap - 1;
        b->cut = true;
    } else {
        b->len += (size_t)n;
    }
}

/* Writes the message into res->error and returns rc (MG_EINVAL or MG_ENOMEM). */
__attribute__((format(printf, 3, 4))) static int cfg_fail(mg_config_result *res, int rc,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
    (void)n; /* a cut message is still the right message */
    return rc;
}

/* Copies len bytes of text into out, cut at a UTF-8 character boundary with "..." when longer
 * than CFG_SHOW_BYTES. Returns out. */
static const char *cfg_show_n(const char *text, size_t len, char out[static CFG_SHOW_BYTES + 4])
{
    if (len <= CFG_SHOW_BYTES) {
        memcpy(out, text, len);
        out[len] = '\0';
        return out;
    }
    size_t cut = CFG_SHOW_BYTES;
    while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
        cut--;
    memcpy(out, text, cut);
    memcpy(out + cut, "...", 4);
    return out;
}

static const char *cfg_show(const char *text, char out[static CFG_SHOW_BYTES + 4])
{
    return cfg_show_n(text, strlen(text), out);
}

static bool cfg_is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Option names compare with '_' and '-' as the same character (config-file keys). */
static char cfg_key_char(char c)
{
    return c == '_' ? '-' : c;
}

static bool cfg_key_eq(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        if (cfg_key_char(*a) != cfg_key_char(*b))
            return false;
    }
    return *a == *b;
}

static bool cfg_name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

static void *cfg_field(void *base, const mg_opt *opt)
{
    return (char *)base + opt->offset;
}

static const void *cfg_cfield(const void *base, const mg_opt *opt)
{
    return (const char *)base + opt->offset;
}

/* ---- numbers ----------------------------------------------------------------------------- */

typedef struct cfg_unit {
    const char *name;
    uint64_t factor;
} cfg_unit;

/* Parsed case-insensitively; every unit is 1024-based (see config.h for why "MB" is refused). */
static const cfg_unit cfg_byte_units[] = {
    { "", 1 },
    { "b", 1 },
    { "k", UINT64_C(1) << 10 },
    { "kib", UINT64_C(1) << 10 },
    { "m", UINT64_C(1) << 20 },
    { "mib", UINT64_C(1) << 20 },
    { "g", UINT64_C(1) << 30 },
    { "gib", UINT64_C(1) << 30 },
    { "t", UINT64_C(1) << 40 },
    { "tib", UINT64_C(1) << 40 },
};
static const char *const cfg_ambiguous_byte_units[] = { "kb", "mb", "gb", "tb" };

/* Largest first, for formatting. */
static const cfg_unit cfg_byte_units_out[] = {
    { "TiB", UINT64_C(1) << 40 },
    { "GiB", UINT64_C(1) << 30 },
    { "MiB", UINT64_C(1) << 20 },
    { "KiB", UINT64_C(1) << 10 },
};

static const cfg_unit cfg_duration_units[] = {
    { "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
};

/* Largest first, for formatting. */
static const cfg_unit cfg_duration_units_out[] = {
    { "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
};

#define CFG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

enum { CFG_NUM_OK, CFG_NUM_NONE, CFG_NUM_OVERFLOW };

/* Reads an optional sign and decimal digits from s; *end is set after the digits. The
 * magnitude saturates; CFG_NUM_OVERFLOW says it did not fit in 64 bits. */
static int cfg_scan_digits(const char *s, const char **end, bool *neg, uint64_t *mag)
{
    const char *p = s;
    *neg = false;
    if (*p == '+' || *p == '-') {
        *neg = *p == '-';
        p++;
    }
    if (*p < '0' || *p > '9')
        return CFG_NUM_NONE;
    uint64_t v = 0;
    bool over = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    *end = p;
    *mag = v;
    return over ? CFG_NUM_OVERFLOW : CFG_NUM_OK;
}

/* *out = ±mag * factor, or false when that does not fit in int64_t. */
static bool cfg_combine(bool neg, uint64_t mag, uint64_t factor, int64_t *out)
{
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (mag > limit / factor)
        return false;
    uint64_t m = mag * factor;
    if (!neg)
        *out = (int64_t)m;
    else if (m == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)m;
    return true;
}

static const cfg_unit *cfg_find_unit(const cfg_unit *units, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcasecmp(units[i].name, name) == 0)
            return &units[i];
    }
    return NULL;
}

/* Formats v of the given type (INT, BYTES or DURATION) as text that parses back to v. */
static void cfg_format_number(cfg_buf *b, mg_opt_type type, int64_t v)
{
    const cfg_unit *units = NULL;
    size_t count = 0;
    if (type == MG_OPT_BYTES) {
        units = cfg_byte_units_out;
        count = CFG_COUNT(cfg_byte_units_out);
    } else if (type == MG_OPT_DURATION) {
        units = cfg_duration_units_out;
        count = CFG_COUNT(cfg_duration_units_out);
    }
    if (v == 0) {
        cfg_buf_add(b, "%s", type == MG_OPT_DURATION ? "0ms" : "0");
        return;
    }
    uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
    for (size_t i = 0; i < count; i++) {
        if (mag % units[i].factor == 0) {
            cfg_buf_add(b, "%s%" PRIu64 "%s", v < 0 ? "-" : "", mag / units[i].factor,
                        units[i].name);
            return;
        }
    }
    cfg_buf_add(b, "%" PRId64, v);
}

static void cfg_format_range(cfg_buf *b, const mg_opt *opt)
{
    cfg_format_number(b, opt->type, opt->min);
    cfg_buf_add(b, "..");
    cfg_format_number(b, opt->type, opt->max);
}

static bool cfg_has_range(const mg_opt *opt)
{
    return (opt->type == MG_OPT_INT || opt->type == MG_OPT_BYTES || opt->type == MG_OPT_DURATION) &&
           opt->min < opt->max;
}

/* Parses an INT, BYTES or DURATION value. Returns MG_OK or MG_EINVAL with the reason in why. */
static int cfg_parse_number(const mg_opt *opt, const char *text, int64_t *out, cfg_buf *why)
{
    char shown[CFG_SHOW_BYTES + 4];
    cfg_show(text, shown);
    const char *what = opt->type == MG_OPT_BYTES      ? "is not a byte size (a number with an "
                                                        "optional unit: k/KiB, M/MiB, G/GiB, "
                                                        "T/TiB; all 1024-based)"
                       : opt->type == MG_OPT_DURATION ? "is not a duration (a number with a "
                                                        "unit: ms, s, m, h, d; a bare number is "
                                                        "milliseconds)"
                                                      : "is not a number";
    const char *end = NULL;
    bool neg = false;
    uint64_t mag = 0;
    int scan = cfg_scan_digits(text, &end, &neg, &mag);
    if (scan == CFG_NUM_NONE) {
        cfg_buf_add(why, "'%s' %s", shown, what);
        return MG_EINVAL;
    }

    uint64_t factor = 1;
    if (opt->type == MG_OPT_INT) {
        if (*end != '\0') {
            cfg_buf_add(why, "'%s' %s", shown, what);
            return MG_EINVAL;
        }
    } else {
        const char *u = end;
        while (*u == ' ' || *u == '\t')
            u++;
        const cfg_unit *unit = NULL;
        if (*u != '\0' || u == end) {
            if (opt->type == MG_OPT_BYTES)
                unit = cfg_find_unit(cfg_byte_units, CFG_COUNT(cfg_byte_units), u);
            else
                unit = cfg_find_unit(cfg_duration_units, CFG_COUNT(cfg_duration_units), u);
        }
        if (unit == NULL) {
            for (size_t i = 0; opt->type == MG_OPT_BYTES && i < CFG_COUNT(cfg_ambiguous_byte_units);
                 i++) {
                if (strcasecmp(u, cfg_ambiguous_byte_units[i]) == 0) {
                    /* Name both accepted spellings with the user's own number. */
                    int digits = (int)(end - text);
                    char up = (char)(u[0] & ~0x20);
                    cfg_buf_add(why,
                                "'%s' is ambiguous: write %.*s%c or %.*s%ciB (1024-based), "
                                "or a plain number of bytes",
                                shown, digits, text, up, digits, text, up);
                    return MG_EINVAL;
                }
            }
            cfg_buf_add(why, "'%s' %s", shown, what);
            return MG_EINVAL;
        }
        factor = unit->factor;
    }

    int64_t v = 0;
    if (scan == CFG_NUM_OVERFLOW || !cfg_combine(neg, mag, factor, &v)) {
        cfg_buf_add(why, "'%s' does not fit in a 64-bit integer", shown);
        return MG_EINVAL;
    }
    bool negative_ok = opt->type == MG_OPT_INT || (cfg_has_range(opt) && opt->min < 0);
    if (v < 0 && !negative_ok) {
        cfg_buf_add(why, "'%s' must not be negative", shown);
        return MG_EINVAL;
    }
    if (cfg_has_range(opt) && (v < opt->min || v > opt->max)) {
        cfg_buf_add(why, "'%s' is out of range ", shown);
        cfg_format_range(why, opt);
        return MG_EINVAL;
    }
    *out = v;
    return MG_OK;
}

/* ---- values ------------------------------------------------------------------------------ */

static const char *const cfg_true_words[] = { "true", "1", "yes", "on" };
static const char *const cfg_false_words[] = { "false", "0", "no", "off" };

static int cfg_parse_bool(const char *text, bool *out)
{
    for (size_t i = 0; i < CFG_COUNT(cfg_true_words); i++) {
        if (strcasecmp(text, cfg_true_words[i]) == 0) {
            *out = true;
            return MG_OK;
        }
        if (strcasecmp(text, cfg_false_words[i]) == 0) {
            *out = false;
            return MG_OK;
        }
    }
    return MG_EINVAL;
}

static void cfg_add_choices(cfg_buf *b, const mg_opt *opt)
{
    for (size_t i = 0; opt->choices[i] != NULL; i++)
        cfg_buf_add(b, "%s%s", i == 0 ? "" : ", ", opt->choices[i]);
}

/* Parses text as opt's type and stores it in opt's field of base; the field is unchanged on
 * failure and a replaced string is freed. Returns MG_OK, MG_EINVAL or MG_ENOMEM with the reason
 * (without the option name) in why. */
static int cfg_set(const mg_opt *opt, const char *text, void *base, cfg_buf *why)
{
    char shown[CFG_SHOW_BYTES + 4];
    size_t len = strlen(text);
    if (len > MG_CONFIG_VALUE_BYTES_MAX) {
        cfg_buf_add(why, "value '%s' is longer than %d bytes", cfg_show(text, shown),
                    MG_CONFIG_VALUE_BYTES_MAX);
        return MG_EINVAL;
    }
    void *field = cfg_field(base, opt);
    switch (opt->type) {
    case MG_OPT_STRING: {
        char *copy = malloc(len + 1);
        if (copy == NULL) {
            cfg_buf_add(why, "out of memory");
            return MG_ENOMEM;
        }
        memcpy(copy, text, len + 1);
        char **slot = field;
        free(*slot);
        *slot = copy;
        return MG_OK;
    }
    case MG_OPT_BOOL: {
        bool v = false;
        if (cfg_parse_bool(text, &v) != MG_OK) {
            cfg_buf_add(why, "'%s' is not a boolean (use true/false, yes/no, on/off or 1/0)",
                        cfg_show(text, shown));
            return MG_EINVAL;
        }
        *(bool *)field = v;
        return MG_OK;
    }
    case MG_OPT_ENUM:
        for (int i = 0; opt->choices[i] != NULL; i++) {
            if (strcasecmp(text, opt->choices[i]) == 0) {
                *(int *)field = i;
                return MG_OK;
            }
        }
        cfg_buf_add(why, "'%s' is not one of ", cfg_show(text, shown));
        cfg_add_choices(why, opt);
        return MG_EINVAL;
    case MG_OPT_INT:
    case MG_OPT_BYTES:
    case MG_OPT_DURATION: {
        int64_t v = 0;
        int rc = cfg_parse_number(opt, text, &v, why);
        if (rc != MG_OK)
            return rc;
        *(int64_t *)field = v;
        return MG_OK;
    }
    }
    MG_UNREACHABLE();
}

static const char *cfg_metavar(const mg_opt *opt)
{
    if (opt->metavar != NULL)
        return opt->metavar;
    switch (opt->type) {
    case MG_OPT_STRING:
        return "VALUE";
    case MG_OPT_INT:
        return "N";
    case MG_OPT_BOOL:
        return "BOOL";
    case MG_OPT_BYTES:
        return "SIZE";
    case MG_OPT_DURATION:
        return "DURATION";
    case MG_OPT_ENUM:
        return "CHOICE";
    }
    MG_UNREACHABLE();
}

/* ---- the spec ---------------------------------------------------------------------------- */

/* A bad table is a programmer error: it aborts in the first test that parses it. */
static void cfg_check_spec(const mg_cmd_spec *spec)
{
    MG_ASSERT(spec != NULL && spec->name != NULL && spec->usage != NULL && spec->summary != NULL);
    MG_ASSERT(spec->opt_count <= MG_CONFIG_OPTIONS_MAX);
    MG_ASSERT(spec->opt_count == 0 || spec->opts != NULL);
    MG_ASSERT(spec->positional_min >= 0);
    MG_ASSERT(spec->positional_max == -1 || spec->positional_max >= spec->positional_min);
    for (size_t i = 0; i < spec->opt_count; i++) {
        const mg_opt *opt = &spec->opts[i];
        MG_ASSERT(opt->name != NULL && opt->help != NULL);
        size_t len = strlen(opt->name);
        MG_ASSERT(len > 0 && len <= MG_CONFIG_KEY_BYTES_MAX);
        MG_ASSERT(opt->name[0] != '-' && strchr(opt->name, '=') == NULL);
        MG_ASSERT(strncmp(opt->name, "no-", 3) != 0); /* would clash with --no-<bool> */
        MG_ASSERT(!cfg_key_eq(opt->name, "config") && !cfg_key_eq(opt->name, "help"));
        MG_ASSERT(opt->short_name != 'h' && opt->short_name != '-');
        MG_ASSERT(opt->type >= MG_OPT_STRING && opt->type <= MG_OPT_ENUM);
        MG_ASSERT(opt->type != MG_OPT_ENUM || (opt->choices != NULL && opt->choices[0] != NULL));
        for (size_t j = 0; j < i; j++) {
            MG_ASSERT(!cfg_key_eq(opt->name, spec->opts[j].name));
            MG_ASSERT(opt->short_name == 0 || opt->short_name != spec->opts[j].short_name);
        }
    }
}

static const mg_opt *cfg_find_long(const mg_cmd_spec *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->opt_count; i++) {
        if (cfg_name_is(name, len, spec->opts[i].name))
            return &spec->opts[i];
    }
    return NULL;
}

static const mg_opt *cfg_find_short(const mg_cmd_spec *spec, char c)
{
    for (size_t i = 0; i < spec->opt_count; i++) {
        if (spec->opts[i].short_name != 0 && spec->opts[i].short_name == c)
            return &spec->opts[i];
    }
    return NULL;
}

static const mg_opt *cfg_find_key(const mg_cmd_spec *spec, const char *key)
{
    for (size_t i = 0; i < spec->opt_count; i++) {
        if (cfg_key_eq(key, spec->opts[i].name))
            return &spec->opts[i];
    }
    return NULL;
}

static char cfg_fold(char c)
{
    c = cfg_key_char(c);
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* Optimal-string-alignment distance (Levenshtein plus adjacent transposition, so "prot" is one
 * edit from "port"), ignoring case and '_' vs '-'. Both lengths are at most
 * MG_CONFIG_KEY_BYTES_MAX; longer names are never close enough to suggest. */
static size_t cfg_distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t rows[3][MG_CONFIG_KEY_BYTES_MAX + 1];
    MG_ASSERT(an <= MG_CONFIG_KEY_BYTES_MAX && bn <= MG_CONFIG_KEY_BYTES_MAX);
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= bn; j++)
        prev[j] = j;
    for (size_t i = 1; i <= an; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t cost = cfg_fold(a[i - 1]) == cfg_fold(b[j - 1]) ? 0 : 1;
            size_t d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (prev[j - 1] + cost < d)
                d = prev[j - 1] + cost;
            if (i > 1 && j > 1 && cfg_fold(a[i - 1]) == cfg_fold(b[j - 2]) &&
                cfg_fold(a[i - 2]) == cfg_fold(b[j - 1]) && prev2[j - 2] + 1 < d)
                d = prev2[j - 2] + 1;
            cur[j] = d;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[bn];
}

/* The option name closest to name (within CFG_SUGGEST_DISTANCE_MAX edits and fewer edits than
 * name has characters), or NULL. The first of equally close names wins. */
static const char *cfg_suggest(const mg_cmd_spec *spec, const char *name, size_t len, bool builtins)
{
    if (len > MG_CONFIG_KEY_BYTES_MAX)
        return NULL;
    const char *best = NULL;
    size_t best_d = CFG_SUGGEST_DISTANCE_MAX + 1;
    size_t total = spec->opt_count + (builtins ? 2 : 0);
    for (size_t i = 0; i < total; i++) {
        const char *cand = i < spec->opt_count    ? spec->opts[i].name
                           : i == spec->opt_count ? "config"
                                                  : "help";
        size_t d = cfg_distance(name, len, cand, strlen(cand));
        if (d < best_d && d < len) {
            best = cand;
            best_d = d;
        }
    }
    return best;
}

/* ---- defaults and free -------------------------------------------------------------------- */

static int cfg_apply_defaults(const mg_cmd_spec *spec, void *dst, mg_config_result *res)
{
    for (size_t i = 0; i < spec->opt_count; i++) {
        const mg_opt *opt = &spec->opts[i];
        void *field = cfg_field(dst, opt);
        if (opt->default_value == NULL) {
            switch (opt->type) {
            case MG_OPT_STRING:
                break; /* already NULL */
            case MG_OPT_BOOL:
                *(bool *)field = false;
                break;
            case MG_OPT_ENUM:
                *(int *)field = 0;
                break;
            case MG_OPT_INT:
            case MG_OPT_BYTES:
            case MG_OPT_DURATION:
                *(int64_t *)field = 0;
                break;
            }
            continue;
        }
        char why_text[CFG_WHY_BYTES];
        cfg_buf why;
        cfg_buf_init(&why, why_text, sizeof(why_text));
        int rc = cfg_set(opt, opt->default_value, dst, &why);
        if (rc == MG_ENOMEM)
            return cfg_fail(res, rc, "--%s: %s", opt->name, why_text);
        if (rc != MG_OK)
            fprintf(stderr, "%s: bad default for --%s: %s\n", spec->name, opt->name, why_text);
        MG_ASSERT(rc == MG_OK && "an option's default_value must be a valid value");
    }
    return MG_OK;
}

void mg_config_free(const mg_cmd_spec *spec, void *dst)
{
    MG_ASSERT(spec != NULL && dst != NULL);
    MG_ASSERT(spec->opt_count == 0 || spec->opts != NULL);
    for (size_t i = 0; i < spec->opt_count; i++) {
        if (spec->opts[i].type != MG_OPT_STRING)
            continue;
        char **slot = cfg_field(dst, &spec->opts[i]);
        free(*slot);
        *slot = NULL;
    }
}

/* ---- the command line --------------------------------------------------------------------- */

typedef struct cfg_walk {
    const mg_cmd_spec *spec;
    mg_config_result *res;
    void *dst;          /* apply pass: where values go; NULL in the scan pass */
    char **order;       /* apply pass: argv reordered, options first; NULL in the scan pass */
    int order_opt_next; /* next slot for an option or option value in order */
    int order_pos_next; /* next slot for a positional argument in order */
    /* Scan pass results. */
    const char *config_path;
    const char *first_extra; /* the first positional argument beyond positional_max */
    int positional_count;
    bool help;
} cfg_walk;

static void cfg_keep(cfg_walk *w, char *arg, bool positional)
{
    if (positional) {
        if (w->spec->positional_max >= 0 && w->positional_count == w->spec->positional_max)
            w->first_extra = w->first_extra != NULL ? w->first_extra : arg;
        w->positional_count++;
    }
    if (w->order != NULL) {
        if (positional)
            w->order[w->order_pos_next++] = arg;
        else
            w->order[w->order_opt_next++] = arg;
    }
}

static int cfg_apply_flag(cfg_walk *w, const mg_opt *opt, const char *value)
{
    if (w->dst == NULL)
        return MG_OK; /* scan pass: values are checked when applied, after the file */
    char why_text[CFG_WHY_BYTES];
    cfg_buf why;
    cfg_buf_init(&why, why_text, sizeof(why_text));
    int rc = cfg_set(opt, value, w->dst, &why);
    if (rc != MG_OK)
        return cfg_fail(w->res, rc, "--%s: %s", opt->name, why_text);
    return MG_OK;
}

static int cfg_fail_unknown_long(cfg_walk *w, const char *name, size_t len)
{
    char shown[CFG_SHOW_BYTES + 4];
    cfg_show_n(name, len, shown);
    const char *near = cfg_suggest(w->spec, name, len, true);
    if (near != NULL)
        return cfg_fail(w->res, MG_EINVAL, "unknown option '--%s'; did you mean '--%s'?", shown,
                        near);
    return cfg_fail(w->res, MG_EINVAL, "unknown option '--%s' (see --help)", shown);
}

/* Takes the next argument as the value of an option given without "=value". */
static int cfg_next_value(cfg_walk *w, int argc, char **argv, int *i, const char *opt_name,
                          const char *metavar, const char **value)
{
    if (*i + 1 >= argc)
        return cfg_fail(w->res, MG_EINVAL, "--%s: missing value (expected %s)", opt_name, metavar);
    *i += 1;
    *value = argv[*i];
    cfg_keep(w, argv[*i], false);
    return MG_OK;
}

/* argv[*i] is "--name" or "--name=value"; may consume argv[*i + 1]. */
static int cfg_walk_long(cfg_walk *w, int argc, char **argv, int *i)
{
    const char *name = argv[*i] + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    const char *value = eq != NULL ? eq + 1 : NULL;

    if (cfg_name_is(name, len, "help")) {
        if (value != NULL)
            return cfg_fail(w->res, MG_EINVAL, "--help takes no value");
        w->help = true;
        return MG_OK;
    }
    if (cfg_name_is(name, len, "config")) {
        if (value == NULL)
            MG_TRY(cfg_next_value(w, argc, argv, i, "config", "FILE", &value));
        if (w->dst != NULL)
            return MG_OK; /* applied before the flags */
        if (w->config_path != NULL)
            return cfg_fail(w->res, MG_EINVAL, "--config: given more than once");
        if (value[0] == '\0')
            return cfg_fail(w->res, MG_EINVAL, "--config: empty file name");
        w->config_path = value;
        return MG_OK;
    }

    const mg_opt *opt = cfg_find_long(w->spec, name, len);
    bool negate = false;
    if (opt == NULL && len > 3 && memcmp(name, "no-", 3) == 0) {
        const mg_opt *base = cfg_find_long(w->spec, name + 3, len - 3);
        if (base != NULL && base->type != MG_OPT_BOOL)
            return cfg_fail(w->res, MG_EINVAL,
                            "unknown option '--no-%s': '--%s' is not a switch, it takes a value "
                            "(--%s %s)",
                            base->name, base->name, base->name, cfg_metavar(base));
        opt = base;
        negate = base != NULL;
    }
    if (opt == NULL)
        return cfg_fail_unknown_long(w, name, len);

    if (opt->type == MG_OPT_BOOL) {
        if (negate && value != NULL)
            return cfg_fail(w->res, MG_EINVAL, "--no-%s takes no value", opt->name);
        if (value == NULL)
            value = negate ? "false" : "true";
    } else if (value == NULL) {
        MG_TRY(cfg_next_value(w, argc, argv, i, opt->name, cfg_metavar(opt), &value));
    }
    return cfg_apply_flag(w, opt, value);
}

/* argv[*i] is "-x", a group of switches "-vq", or "-pvalue"; may consume argv[*i + 1]. */
static int cfg_walk_short(cfg_walk *w, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    /* "-port" for "--port" is a common slip; read as "-p ort" it could set the wrong option
     * silently (a string would take "ort"), so refuse it. */
    size_t name_len = strcspn(arg + 1, "=");
    if (name_len > 1 && (cfg_find_long(w->spec, arg + 1, name_len) != NULL ||
                         cfg_name_is(arg + 1, name_len, "config"))) {
        char shown[CFG_SHOW_BYTES + 4];
        return cfg_fail(w->res, MG_EINVAL, "unknown option '%s'; did you mean '--%.*s'?",
                        cfg_show(arg, shown), (int)name_len, arg + 1);
    }
    for (size_t j = 1; arg[j] != '\0'; j++) {
        char c = arg[j];
        if (c == 'h') {
            w->help = true;
            return MG_OK;
        }
        const mg_opt *opt = cfg_find_short(w->spec, c);
        if (opt == NULL) {
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                return cfg_fail(w->res, MG_EINVAL, "unknown option '-\\x%02x' (see --help)",
                                (unsigned char)c);
            return cfg_fail(w->res, MG_EINVAL, "unknown option '-%c' (see --help)", c);
        }
        if (opt->type == MG_OPT_BOOL) {
            MG_TRY(cfg_apply_flag(w, opt, "true"));
            continue;
        }
        const char *value = NULL;
        if (arg[j + 1] != '\0')
            value = &arg[j + 1];
        else
            MG_TRY(cfg_next_value(w, argc, argv, i, opt->name, cfg_metavar(opt), &value));
        return cfg_apply_flag(w, opt, value);
    }
    return MG_OK;
}

/* One walk over argv; the scan pass and the apply pass differ only in w->dst and w->order.
 * Stops at the first error or at --help. */
static int cfg_walk_argv(cfg_walk *w, int argc, char **argv)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            cfg_keep(w, arg, true);
            continue;
        }
        cfg_keep(w, arg, false);
        if (arg[1] == '-' && arg[2] == '\0') {
            options_done = true;
            continue;
        }
        int rc =
            arg[1] == '-' ? cfg_walk_long(w, argc, argv, &i) : cfg_walk_short(w, argc, argv, &i);
        if (rc != MG_OK || w->help)
            return rc;
    }
    return MG_OK;
}

static int cfg_check_positional(const mg_cmd_spec *spec, const cfg_walk *w, mg_config_result *res)
{
    int n = w->positional_count;
    const char *s = n == 1 ? "" : "s";
    if (n < spec->positional_min) {
        if (spec->positional_min == spec->positional_max)
            return cfg_fail(res, MG_EINVAL, "too few arguments: expected %d, got %d (usage: %s %s)",
                            spec->positional_min, n, spec->name, spec->usage);
        return cfg_fail(res, MG_EINVAL,
                        "too few arguments: expected at least %d, got %d (usage: %s %s)",
                        spec->positional_min, n, spec->name, spec->usage);
    }
    if (spec->positional_max >= 0 && n > spec->positional_max) {
        char shown[CFG_SHOW_BYTES + 4];
        cfg_show(w->first_extra, shown);
        if (spec->positional_max == 0)
            return cfg_fail(res, MG_EINVAL, "unexpected argument%s '%s'%s (usage: %s %s)", s, shown,
                            n > 1 ? "..." : "", spec->name, spec->usage);
        return cfg_fail(res, MG_EINVAL,
                        "too many arguments: expected at most %d, got %d, from '%s' on "
                        "(usage: %s %s)",
                        spec->positional_max, n, shown, spec->name, spec->usage);
    }
    return MG_OK;
}

/* ---- the config file ---------------------------------------------------------------------- */

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool cfg_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min_cp;
        if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
            min_cp = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
            min_cp = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
            min_cp = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            unsigned b = s[i + k];
            if ((b & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (b & 0x3F);
        }
        if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

/* Reads the whole file (at most MG_CONFIG_FILE_BYTES_MAX bytes) into a NUL-terminated heap
 * buffer that the caller frees. Works on pipes too (`--config <(...)`), so it does not trust
 * fstat's size. */
static int cfg_read_file(const char *path, char **out, size_t *out_len, mg_config_result *res)
{
    char eb[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cfg_fail(res, MG_EINVAL, "config file %s: cannot open: %s", path,
                        strerror_r(errno, eb, sizeof(eb)));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = MG_OK;
    if (buf == NULL) {
        rc = cfg_fail(res, MG_ENOMEM, "config file %s: out of memory", path);
        goto out;
    }
    for (;;) {
        if (len == cap) {
            /* len <= MG_CONFIG_FILE_BYTES_MAX here, so one more byte must fit to see EOF. */
            size_t ncap =
                cap * 2 > MG_CONFIG_FILE_BYTES_MAX + 1 ? MG_CONFIG_FILE_BYTES_MAX + 1 : cap * 2;
            char *nbuf = realloc(buf, ncap);
            if (nbuf == NULL) {
                rc = cfg_fail(res, MG_ENOMEM, "config file %s: out of memory", path);
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cfg_fail(res, MG_EINVAL, "config file %s: cannot read: %s", path,
                          strerror_r(errno, eb, sizeof(eb)));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > MG_CONFIG_FILE_BYTES_MAX) {
            rc = cfg_fail(res, MG_EINVAL, "config file %s: larger than %d bytes", path,
                          MG_CONFIG_FILE_BYTES_MAX);
            goto out;
        }
    }
    if (len == cap) {
        char *nbuf = realloc(buf, cap + 1);
        if (nbuf == NULL) {
            rc = cfg_fail(res, MG_ENOMEM, "config file %s: out of memory", path);
            goto out;
        }
        buf = nbuf;
    }
    buf[len] = '\0';
out:
    close(fd);
    if (rc != MG_OK) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return MG_OK;
}

/* Applies one "key=value" line (NUL-terminated, already checked for length and encoding). */
static int cfg_apply_line(const mg_cmd_spec *spec, void *dst, const char *path, size_t line_no,
                          char *line, size_t seen_line[], mg_config_result *res)
{
    char shown[CFG_SHOW_BYTES + 4];
    char *key = line;
    while (cfg_is_blank(*key))
        key++;
    if (*key == '\0' || *key == '#')
        return MG_OK;
    char *eq = strchr(key, '=');
    if (eq == NULL)
        return cfg_fail(res, MG_EINVAL, "config file %s line %zu: expected key=value, got '%s'",
                        path, line_no, cfg_show(key, shown));
    char *key_end = eq;
    while (key_end > key && cfg_is_blank(key_end[-1]))
        key_end--;
    *key_end = '\0';
    char *value = eq + 1;
    while (cfg_is_blank(*value))
        value++;
    char *value_end = value + strlen(value);
    while (value_end > value && cfg_is_blank(value_end[-1]))
        value_end--;
    *value_end = '\0';

    size_t key_len = (size_t)(key_end - key);
    if (key_len == 0)
        return cfg_fail(res, MG_EINVAL, "config file %s line %zu: missing key before '='", path,
                        line_no);
    if (key_len > MG_CONFIG_KEY_BYTES_MAX)
        return cfg_fail(res, MG_EINVAL, "config file %s line %zu: key '%s' is longer than %d bytes",
                        path, line_no, cfg_show(key, shown), MG_CONFIG_KEY_BYTES_MAX);
    if (cfg_key_eq(key, "config") || cfg_key_eq(key, "help"))
        return cfg_fail(res, MG_EINVAL,
                        "config file %s line %zu: '%s' can only be given on the command line", path,
                        line_no, key);
    const mg_opt *opt = cfg_find_key(spec, key);
    if (opt == NULL) {
        const char *near = cfg_suggest(spec, key, key_len, false);
        if (near != NULL)
            return cfg_fail(res, MG_EINVAL,
                            "config file %s line %zu: unknown option '%s'; did you mean '%s'?",
                            path, line_no, key, near);
        return cfg_fail(res, MG_EINVAL, "config file %s line %zu: unknown option '%s'", path,
                        line_no, key);
    }
    size_t idx = (size_t)(opt - spec->opts);
    if (seen_line[idx] != 0)
        return cfg_fail(res, MG_EINVAL, "config file %s line %zu: '%s' is already set on line %zu",
                        path, line_no, key, seen_line[idx]);
    seen_line[idx] = line_no;

    char why_text[CFG_WHY_BYTES];
    cfg_buf why;
    cfg_buf_init(&why, why_text, sizeof(why_text));
    int rc = cfg_set(opt, value, dst, &why);
    if (rc != MG_OK)
        return cfg_fail(res, rc, "config file %s line %zu: %s: %s", path, line_no, key, why_text);
    return MG_OK;
}

static int cfg_apply_file(const mg_cmd_spec *spec, void *dst, const char *path,
                          mg_config_result *res)
{
    char *buf = NULL;
    size_t len = 0;
    MG_TRY(cfg_read_file(path, &buf, &len, res));

    size_t seen_line[MG_CONFIG_OPTIONS_MAX] = { 0 }; /* line that set each option, 0 = none */
    size_t pos = 0, line_no = 0;
    int rc = MG_OK;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        pos = 3; /* UTF-8 byte-order mark */
    while (pos < len && rc == MG_OK) {
        line_no++;
        char *line = buf + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl != NULL ? (size_t)(nl - line) : len - pos;
        pos += line_len + (nl != NULL ? 1 : 0);
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        if (line_len > MG_CONFIG_LINE_BYTES_MAX)
            rc = cfg_fail(res, MG_EINVAL, "config file %s line %zu: line is longer than %d bytes",
                          path, line_no, MG_CONFIG_LINE_BYTES_MAX);
        else if (memchr(line, '\0', line_len) != NULL)
            rc = cfg_fail(res, MG_EINVAL,
                          "config file %s line %zu: contains a NUL byte (not a text file?)", path,
                          line_no);
        else if (!cfg_utf8_valid((const unsigned char *)line, line_len))
            rc = cfg_fail(res, MG_EINVAL, "config file %s line %zu: is not valid UTF-8", path,
                          line_no);
        if (rc != MG_OK)
            break;
        line[line_len] = '\0'; /* was '\r', '\n' or the terminating NUL */
        rc = cfg_apply_line(spec, dst, path, line_no, line, seen_line, res);
    }
    free(buf);
    return rc;
}

/* ---- parse ------------------------------------------------------------------------------- */

int mg_config_parse(const mg_cmd_spec *spec, void *dst, int argc, char **argv,
                    mg_config_result *res)
{
    MG_ASSERT(res != NULL && dst != NULL && argc >= 0 && (argc == 0 || argv != NULL));
    memset(res, 0, sizeof(*res));
    cfg_check_spec(spec);

    /* Step 1: from here on mg_config_free(spec, dst) is safe. */
    for (size_t i = 0; i < spec->opt_count; i++) {
        if (spec->opts[i].type == MG_OPT_STRING)
            *(char **)cfg_field(dst, &spec->opts[i]) = NULL;
    }
    MG_TRY(cfg_apply_defaults(spec, dst, res));

    cfg_walk scan = { .spec = spec, .res = res };
    MG_TRY(cfg_walk_argv(&scan, argc, argv));
    if (scan.help) {
        mg_config_print_help(spec, stdout);
        fflush(stdout);
        res->help_shown = true;
        return MG_OK;
    }
    MG_TRY(cfg_check_positional(spec, &scan, res));
    if (scan.config_path != NULL)
        MG_TRY(cfg_apply_file(spec, dst, scan.config_path, res));

    int k = scan.positional_count;
    char **order = NULL;
    if (argc > 0) {
        order = malloc((size_t)argc * sizeof(*order));
        if (order == NULL)
            return cfg_fail(res, MG_ENOMEM, "out of memory");
        order[0] = argv[0];
    }
    cfg_walk apply = {
        .spec = spec,
        .res = res,
        .dst = dst,
        .order = order,
        .order_opt_next = 1,
        .order_pos_next = argc - k,
    };
    int rc = cfg_walk_argv(&apply, argc, argv);
    if (rc == MG_OK) {
        MG_ASSERT(!apply.help && apply.positional_count == k);
        MG_ASSERT(argc == 0 || (apply.order_opt_next == argc - k && apply.order_pos_next == argc));
        if (argc > 0)
            memcpy(argv, order, (size_t)argc * sizeof(*order));
        res->positional = argv != NULL ? argv + (argc - k) : NULL;
        res->positional_count = k;
    }
    free(order);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

/* Writes the value of opt in the struct at base (offset applied) into b. */
static void cfg_format(cfg_buf *b, const mg_opt *opt, const void *base)
{
    const void *field = cfg_cfield(base, opt);
    switch (opt->type) {
    case MG_OPT_STRING: {
        const char *s = *(char *const *)field;
        cfg_buf_add(b, "%s", s != NULL ? s : "");
        return;
    }
    case MG_OPT_BOOL:
        cfg_buf_add(b, "%s", *(const bool *)field ? "true" : "false");
        return;
    case MG_OPT_ENUM: {
        int idx = *(const int *)field;
        int count = 0;
        while (opt->choices[count] != NULL)
            count++;
        if (idx >= 0 && idx < count)
            cfg_buf_add(b, "%s", opt->choices[idx]);
        else
            cfg_buf_add(b, "?%d", idx); /* the caller stored something outside choices */
        return;
    }
    case MG_OPT_INT:
    case MG_OPT_BYTES:
    case MG_OPT_DURATION:
        cfg_format_number(b, opt->type, *(const int64_t *)field);
        return;
    }
    MG_UNREACHABLE();
}

int mg_config_format_value(const mg_opt *opt, const void *src, char *buf, size_t buf_size)
{
    MG_ASSERT(opt != NULL && src != NULL);
    cfg_buf b;
    cfg_buf_init(&b, buf, buf_size);
    cfg_format(&b, opt, src);
    return b.cut ? MG_ELIMIT : MG_OK;
}

static void cfg_pad(FILE *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc(' ', out);
}

/* Prints text word by word from column col, breaking lines before CFG_HELP_WIDTH and starting
 * continuation lines at column indent; '\n' in text forces a break. Ends with a newline. */
static void cfg_wrap(FILE *out, const char *text, size_t indent, size_t col)
{
    bool line_has_word = false;
    const char *p = text;
    while (*p != '\0') {
        if (*p == '\n') {
            fputc('\n', out);
            cfg_pad(out, indent);
            col = indent;
            line_has_word = false;
            p++;
            continue;
        }
        if (*p == ' ') {
            p++;
            continue;
        }
        size_t wl = strcspn(p, " \n");
        if (line_has_word) {
            if (col + 1 + wl > CFG_HELP_WIDTH) {
                fputc('\n', out);
                cfg_pad(out, indent);
                col = indent;
            } else {
                fputc(' ', out);
                col++;
            }
        }
        fwrite(p, 1, wl, out);
        col += wl;
        line_has_word = true;
        p += wl;
    }
    fputc('\n', out);
}

/* The flag column of one option: "  -p, --port PORT", "      --[no-]verbose". */
static void cfg_flag_column(cfg_buf *b, char short_name, const char *name, bool is_bool,
                            const char *metavar)
{
    if (short_name != 0)
        cfg_buf_add(b, "  -%c, ", short_name);
    else
        cfg_buf_add(b, "      ");
    cfg_buf_add(b, "--%s%s", is_bool ? "[no-]" : "", name);
    if (metavar != NULL)
        cfg_buf_add(b, " %s", metavar);
}

/* The text of one option: its help, then "(one of: ...; range: ...; default: ...)". */
static void cfg_describe(cfg_buf *b, const mg_opt *opt)
{
    cfg_buf_add(b, "%s", opt->help);
    const char *sep = " (";
    if (opt->type == MG_OPT_ENUM) {
        cfg_buf_add(b, "%sone of: ", sep);
        cfg_add_choices(b, opt);
        sep = "; ";
    }
    if (cfg_has_range(opt)) {
        cfg_buf_add(b, "%srange: ", sep);
        cfg_format_range(b, opt);
        sep = "; ";
    }
    if (opt->default_value != NULL) {
        cfg_buf_add(b, "%sdefault: ", sep);
        if (opt->type == MG_OPT_STRING) {
            cfg_buf_add(b, "%s", opt->default_value[0] != '\0' ? opt->default_value : "\"\"");
        } else {
            /* Show the default in canonical form ("65536" as "64KiB"): parse it into a scratch
             * field. Non-string types allocate nothing. */
            union {
                int64_t i;
                bool b;
                int e;
            } scratch = { 0 };
            mg_opt at0 = *opt;
            at0.offset = 0;
            char why_text[CFG_WHY_BYTES];
            cfg_buf why;
            cfg_buf_init(&why, why_text, sizeof(why_text));
            if (cfg_set(&at0, opt->default_value, &scratch, &why) == MG_OK)
                cfg_format(b, &at0, &scratch);
            else
                cfg_buf_add(b, "%s", opt->default_value); /* mg_config_parse asserts on it */
        }
        sep = "; ";
    }
    if (sep[0] == ';')
        cfg_buf_add(b, ")");
}

static void cfg_print_entry(FILE *out, const char *flags, const char *text, size_t column)
{
    size_t flags_len = strlen(flags);
    fputs(flags, out);
    if (flags_len + 2 <= column) {
        cfg_pad(out, column - flags_len);
    } else {
        fputc('\n', out);
        cfg_pad(out, column);
    }
    cfg_wrap(out, text, column, column);
}

/* The flag column of opt ("-p, --port PORT") into flags, over the storage text[0, text_bytes). */
static void cfg_opt_flag_column(cfg_buf *flags, char *text, size_t text_bytes, const mg_opt *opt)
{
    bool is_bool = opt->type == MG_OPT_BOOL;
    cfg_buf_init(flags, text, text_bytes);
    cfg_flag_column(flags, opt->short_name, opt->name, is_bool, is_bool ? NULL : cfg_metavar(opt));
}

void mg_config_print_help(const mg_cmd_spec *spec, FILE *out)
{
    cfg_check_spec(spec);
    MG_ASSERT(out != NULL);
    char flags_text[MG_CONFIG_KEY_BYTES_MAX + 128];
    cfg_buf flags;

    /* The flag column is as wide as the widest entry, up to CFG_HELP_FLAG_COLUMN_MAX. */
    size_t widest = strlen("  -h, --help");
    for (size_t i = 0; i < spec->opt_count; i++) {
        cfg_opt_flag_column(&flags, flags_text, sizeof(flags_text), &spec->opts[i]);
        if (flags.len > widest && flags.len <= CFG_HELP_FLAG_COLUMN_MAX)
            widest = flags.len;
    }
    cfg_buf_init(&flags, flags_text, sizeof(flags_text));
    cfg_flag_column(&flags, 0, "config", false, "FILE");
    if (flags.len > widest)
        widest = flags.len;
    size_t column = widest + 2;

    if (spec->usage[0] != '\0')
        fprintf(out, "Usage: %s %s\n\n", spec->name, spec->usage);
    else
        fprintf(out, "Usage: %s\n\n", spec->name);
    cfg_wrap(out, spec->summary, 0, 0);
    fputs("\nOptions:\n", out);

    char text_buf[4096];
    cfg_buf text;
    for (size_t i = 0; i < spec->opt_count; i++) {
        const mg_opt *opt = &spec->opts[i];
        cfg_opt_flag_column(&flags, flags_text, sizeof(flags_text), opt);
        cfg_buf_init(&text, text_buf, sizeof(text_buf));
        cfg_describe(&text, opt);
        cfg_print_entry(out, flags_text, text_buf, column);
    }
    cfg_buf_init(&flags, flags_text, sizeof(flags_text));
    cfg_flag_column(&flags, 0, "config", false, "FILE");
    cfg_print_entry(out, flags_text,
                    "read options from FILE: one key=value per line, keys being the option "
                    "names without \"--\", '#' starting a comment line; flags on the command "
                    "line override the file",
                    column);
    cfg_buf_init(&flags, flags_text, sizeof(flags_text));
    cfg_flag_column(&flags, 'h', "help", false, NULL);
    cfg_print_entry(out, flags_text, "show this help and exit", column);
}
