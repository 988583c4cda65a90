/* What the REST groups of `magnetar admin` share (admin_rest.h), and the small groups: brokers
 * and clusters. */
#include "admin_rest.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const adm_outputs[] = { "json", "table", NULL };

/* ---- groups and verbs ------------------------------------------------------------------------ */

void adm_group_usage(const adm_group *g, FILE *out)
{
    fprintf(out, "Usage: magnetar admin %s <command> [options] ...\n\n%s\n\nCommands:\n", g->name,
            g->summary);
    for (size_t i = 0; i < g->verb_count; i++) {
        const adm_verb *v = &g->verbs[i];
        fprintf(out, "  %-26s %s\n", v->name, v->spec.usage);
    }
    fprintf(out, "\nRun 'magnetar admin %s <command> --help' for a command's options.\n", g->name);
}

int adm_group_run(const adm_group *g, int argc, char **argv, char **globals, int globals_count)
{
    if (argc < 2) {
        fprintf(stderr, "magnetar admin %s: which command?\n\n", g->name);
        adm_group_usage(g, stderr);
        return MG_EXIT_USAGE;
    }
    if (mg_tool_asks_help(argv[1])) {
        adm_group_usage(g, stdout);
        return MG_EXIT_OK;
    }
    const adm_verb *v = NULL;
    for (size_t i = 0; i < g->verb_count && v == NULL; i++)
        if (strcmp(argv[1], g->verbs[i].name) == 0 ||
            (g->verbs[i].alias != NULL && strcmp(argv[1], g->verbs[i].alias) == 0))
            v = &g->verbs[i];
    if (v == NULL) {
        fprintf(stderr, "magnetar admin %s: unknown command '%s'\n\n", g->name, argv[1]);
        adm_group_usage(g, stderr);
        return MG_EXIT_USAGE;
    }
    /* argv for the verb: its name, the global flags given before the group, then its own. */
    int n = argc - 1 + globals_count;
    char **args = calloc((size_t)n + 1, sizeof(*args));
    if (args == NULL) {
        fprintf(stderr, "%s: out of memory\n", v->spec.name);
        return MG_EXIT_FAILURE;
    }
    args[0] = argv[1];
    for (int i = 0; i < globals_count; i++)
        args[1 + i] = globals[i];
    for (int i = 2; i < argc; i++) {
        /* pulsar-admin's multi-letter shorts, which common/config.h cannot express. */
        const char *a = argv[i];
        args[globals_count + i - 1] = strcmp(a, "-ttl") == 0  ? (char *)"--messageTTL"
                                      : strcmp(a, "-lt") == 0 ? (char *)"--limitTime"
                                                              : argv[i];
    }
    adm_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int status = mg_tool_parse(&v->spec, &o, n, args, &res);
    if (status < 0) {
        status = v->run(&v->spec, &o, res.positional, res.positional_count);
        mg_config_free(&v->spec, &o);
    }
    free(args);
    return status;
}

int adm_usage(const mg_cmd_spec *spec, const char *fmt, ...)
{
    fprintf(stderr, "%s: ", spec->name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for the options.\n", spec->name);
    return MG_EXIT_USAGE;
}

/* ---- requests -------------------------------------------------------------------------------- */

int adm_call_raw(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
                 const char *body, mg_rest_reply *reply)
{
    mg_rest_request_opts ro = { .method = method,
                                .body = body,
                                .body_len = body != NULL ? strlen(body) : 0,
                                .timeout_ms = o->timeout_ms };
    char err[MG_REST_ERR_BYTES];
    if (mg_rest_request(o->admin_url, path, &ro, reply, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: cannot reach the broker's admin API at %s: %s\n", spec->name,
                o->admin_url, err);
        return MG_EXIT_FAILURE;
    }
    if (reply->status >= 200 && reply->status < 300)
        return MG_EXIT_OK;
    char reason[512];
    mg_rest_reason(reply, reason, sizeof(reason));
    fprintf(stderr, "%s: HTTP %ld: %s\n", spec->name, reply->status, reason);
    long status = reply->status;
    mg_rest_reply_free(reply);
    reply->status = status; /* for the caller's hints; the rest is freed */
    return MG_EXIT_FAILURE;
}

int adm_call(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
             const json_t *body, mg_rest_reply *reply)
{
    char *text = NULL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            fprintf(stderr, "%s: out of memory\n", spec->name);
            return MG_EXIT_FAILURE;
        }
    }
    int status = adm_call_raw(spec, o, method, path, text, reply);
    free(text);
    return status;
}

json_t *adm_reply_json(const mg_cmd_spec *spec, const mg_rest_reply *reply)
{
    json_error_t jerr;
    json_t *j = json_loadb(reply->body, reply->len, JSON_DECODE_ANY, &jerr);
    if (j == NULL)
        fprintf(stderr, "%s: the broker's answer is not JSON: %s (line %d column %d)\n", spec->name,
                jerr.text, jerr.line, jerr.column);
    return j;
}

void adm_print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (text != NULL) {
        puts(text);
        free(text);
    }
}

int adm_call_print(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
                   const json_t *body, void (*table)(const json_t *j))
{
    mg_rest_reply reply;
    int status = adm_call(spec, o, method, path, body, &reply);
    if (status != MG_EXIT_OK)
        return status;
    size_t n = reply.len;
    while (n > 0 && isspace((unsigned char)reply.body[n - 1]))
        n--;
    if (n > 0) {
        json_t *j = adm_reply_json(spec, &reply);
        if (j == NULL) {
            status = MG_EXIT_FAILURE;
        } else {
            if (o->output == ADM_OUTPUT_TABLE)
                (table != NULL ? table : adm_print_fields)(j);
            else
                adm_print_json(j);
            json_decref(j);
        }
    }
    mg_rest_reply_free(&reply);
    return status;
}

/* ---- paths ----------------------------------------------------------------------------------- */

bool adm_path_add(char *dst, size_t cap, const char *s)
{
    size_t len = strlen(dst);
    if (len + 2 > cap)
        return false;
    dst[len] = '/';
    return mg_rest_escape(s, dst + len + 1, cap - len - 1);
}

/* Splits text at '/' into at most max parts (copied into parts, each PART_BYTES); returns the
 * count, or -1 when a part is empty or too long. */
#define PART_BYTES 512
static int split_name(const char *text, char parts[][PART_BYTES], int max)
{
    int n = 0;
    const char *p = text;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len >= PART_BYTES || n == max)
            return -1;
        memcpy(parts[n], p, len);
        parts[n][len] = '\0';
        n++;
        if (slash == NULL)
            return n;
        p = slash + 1;
    }
}

bool adm_topic_path(const mg_cmd_spec *spec, const char *topic, char *dst, size_t cap)
{
    const char *rest = topic;
    const char *scheme = strstr(topic, "://");
    if (scheme != NULL) {
        if (strncmp(topic, "persistent://", 13) != 0) {
            adm_usage(spec,
                      "'%s': only persistent topics (persistent://tenant/namespace/topic) "
                      "are served",
                      topic);
            return false;
        }
        rest = topic + 13;
    }
    char parts[3][PART_BYTES];
    int n = split_name(rest, parts, 3);
    if (n == 1 && scheme == NULL) {
        snprintf(parts[2], PART_BYTES, "%s", parts[0]);
        snprintf(parts[0], PART_BYTES, "public");
        snprintf(parts[1], PART_BYTES, "default");
        n = 3;
    }
    if (n != 3) {
        adm_usage(spec,
                  "'%s' is not a topic name: persistent://tenant/namespace/topic, "
                  "tenant/namespace/topic, or a short name (persistent://public/default/<name>)",
                  topic);
        return false;
    }
    snprintf(dst, cap, "/admin/v2/persistent");
    for (int i = 0; i < 3; i++)
        if (!adm_path_add(dst, cap, parts[i])) {
            adm_usage(spec, "the topic name '%s' is too long", topic);
            return false;
        }
    return true;
}

bool adm_namespace_path(const mg_cmd_spec *spec, const char *ns, const char *prefix, char *dst,
                        size_t cap)
{
    char parts[2][PART_BYTES];
    if (split_name(ns, parts, 2) != 2) {
        adm_usage(spec, "'%s' is not a namespace name: tenant/namespace", ns);
        return false;
    }
    snprintf(dst, cap, "%s", prefix);
    if (!adm_path_add(dst, cap, parts[0]) || !adm_path_add(dst, cap, parts[1])) {
        adm_usage(spec, "the namespace name '%s' is too long", ns);
        return false;
    }
    return true;
}

/* ---- values ---------------------------------------------------------------------------------- */

/* Reads text as a decimal count followed by one optional unit character from units (any case;
 * bare: factor[0]); -1 alone is accepted as -1. */
static bool parse_scaled(const char *text, const char *units, const int64_t *factors, int64_t *out)
{
    if (strcmp(text, "-1") == 0) {
        *out = -1;
        return true;
    }
    if (!isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (errno != 0)
        return false;
    int64_t factor = 1;
    if (*end != '\0') {
        const char *u = strchr(units, tolower((unsigned char)*end));
        if (u == NULL || end[1] != '\0')
            return false;
        factor = factors[u - units];
    }
    if (v > INT64_MAX / factor)
        return false;
    *out = (int64_t)v * factor;
    return true;
}

bool adm_parse_size(const char *text, int64_t *bytes)
{
    static const int64_t f[] = { 1024, 1024 * 1024, 1024 * 1024 * 1024,
                                 1024LL * 1024 * 1024 * 1024 };
    return parse_scaled(text, "kmgt", f, bytes);
}

bool adm_parse_time_s(const char *text, int64_t *seconds)
{
    static const int64_t f[] = { 1, 60, 3600, 86400, 7 * 86400, 365 * 86400 };
    return parse_scaled(text, "smhdwy", f, seconds);
}

/* ---- tables ---------------------------------------------------------------------------------- */

static void table_add(adm_table *t, va_list ap)
{
    if (t->rows * (size_t)t->columns + (size_t)t->columns > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        while (cap < t->rows * (size_t)t->columns + (size_t)t->columns)
            cap *= 2;
        char **c = realloc(t->cells, cap * sizeof(*c));
        if (c == NULL)
            return; /* the row is left out */
        t->cells = c;
        t->cap = cap;
    }
    for (int i = 0; i < t->columns; i++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->rows * (size_t)t->columns + (size_t)i] = strdup(s != NULL ? s : "");
    }
    t->rows++;
}

void adm_table_init(adm_table *t, int columns, ...)
{
    memset(t, 0, sizeof(*t));
    t->columns = columns;
    va_list ap;
    va_start(ap, columns);
    table_add(t, ap);
    va_end(ap);
}

void adm_table_row(adm_table *t, ...)
{
    va_list ap;
    va_start(ap, t);
    table_add(t, ap);
    va_end(ap);
}

void adm_table_print(adm_table *t)
{
    size_t width[ADM_TABLE_COLUMNS_MAX] = { 0 };
    for (size_t r = 0; r < t->rows; r++)
        for (int c = 0; c < t->columns && c < ADM_TABLE_COLUMNS_MAX; c++) {
            const char *s = t->cells[r * (size_t)t->columns + (size_t)c];
            size_t w = s != NULL ? strlen(s) : 0;
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->rows; r++) {
        for (int c = 0; c < t->columns; c++) {
            const char *s = t->cells[r * (size_t)t->columns + (size_t)c];
            if (c == t->columns - 1)
                printf("%s\n", s != NULL ? s : "");
            else
                printf("%-*s  ", (int)width[c], s != NULL ? s : "");
        }
    }
    for (size_t i = 0; i < t->rows * (size_t)t->columns; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

char *adm_cell(const json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_array(v)) {
        size_t cap = 1;
        for (size_t i = 0; i < json_array_size(v); i++) {
            char *c = adm_cell(json_array_get(v, i));
            cap += (c != NULL ? strlen(c) : 0) + 1;
            free(c);
        }
        char *out = calloc(1, cap);
        for (size_t i = 0; out != NULL && i < json_array_size(v); i++) {
            char *c = adm_cell(json_array_get(v, i));
            if (i > 0)
                strcat(out, ",");
            strcat(out, c != NULL ? c : "");
            free(c);
        }
        return out;
    }
    if (v == NULL)
        return strdup("");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

static void fields_add(adm_table *t, const char *prefix, const json_t *j)
{
    if (json_is_object(j) && json_object_size(j) > 0) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v)
        {
            char name[512];
            snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] != '\0' ? "." : "", key);
            fields_add(t, name, v);
        }
        return;
    }
    char *cell = adm_cell(j);
    adm_table_row(t, prefix[0] != '\0' ? prefix : "value", cell);
    free(cell);
}

void adm_print_fields(const json_t *j)
{
    adm_table t;
    adm_table_init(&t, 2, "FIELD", "VALUE");
    fields_add(&t, "", j);
    adm_table_print(&t);
}

void adm_print_list(const json_t *j, const char *header)
{
    if (!json_is_array(j)) {
        adm_print_fields(j);
        return;
    }
    adm_table t;
    adm_table_init(&t, 1, header);
    for (size_t i = 0; i < json_array_size(j); i++) {
        char *c = adm_cell(json_array_get(j, i));
        adm_table_row(&t, c);
        free(c);
    }
    adm_table_print(&t);
}

/* ---- brokers and clusters -------------------------------------------------------------------- */

static void brokers_table(const json_t *j)
{
    adm_print_list(j, "BROKER");
}

static void clusters_table(const json_t *j)
{
    adm_print_list(j, "CLUSTER");
}

static int brokers_list(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    char path[1024] = "/admin/v2/brokers";
    if (nargs == 1 && !adm_path_add(path, sizeof(path), args[0]))
        return adm_usage(spec, "the cluster name is too long");
    return adm_call_print(spec, o, "GET", path, NULL, brokers_table);
}

static int brokers_health(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)args;
    (void)nargs;
    mg_rest_reply reply;
    int status = adm_call(spec, o, "GET", "/admin/v2/brokers/health", NULL, &reply);
    if (status != MG_EXIT_OK)
        return status;
    size_t n = reply.len;
    while (n > 0 && isspace((unsigned char)reply.body[n - 1]))
        n--;
    if (o->output == ADM_OUTPUT_TABLE) {
        adm_table t;
        adm_table_init(&t, 2, "BROKER", "HEALTH");
        char health[256];
        snprintf(health, sizeof(health), "%.*s", (int)n, reply.body);
        adm_table_row(&t, o->admin_url, health);
        adm_table_print(&t);
    } else {
        printf("%.*s\n", (int)n, reply.body);
    }
    mg_rest_reply_free(&reply);
    return MG_EXIT_OK;
}

static int clusters_list(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)args;
    (void)nargs;
    return adm_call_print(spec, o, "GET", "/admin/v2/clusters", NULL, clusters_table);
}

static const mg_opt globals_only[] = { ADM_OPT_GLOBALS };
#define GLOBALS_ONLY \
    .opts = globals_only, .opt_count = sizeof(globals_only) / sizeof(globals_only[0])

static const adm_verb broker_verbs[] = {
    { .name = "list",
      .spec = { .name = "magnetar admin brokers list",
                .usage = "[options] [CLUSTER]",
                .summary = "Lists the live brokers (their web service addresses, host:port) of the "
                           "cluster, or of this broker's cluster when none is named. GET "
                           "/admin/v2/brokers/{cluster}.",
                GLOBALS_ONLY,
                .positional_min = 0,
                .positional_max = 1 },
      .run = brokers_list },
    { .name = "healthcheck",
      .alias = "health",
      .spec = { .name = "magnetar admin brokers healthcheck",
                .usage = "[options]",
                .summary = "Asks the broker whether it is healthy; prints its answer, 'ok'. GET "
                           "/admin/v2/brokers/health. 'health' is accepted for the same.",
                GLOBALS_ONLY,
                .positional_min = 0,
                .positional_max = 0 },
      .run = brokers_health },
};

const adm_group adm_group_brokers = {
    .name = "brokers",
    .summary = "Live brokers and their health.",
    .verbs = broker_verbs,
    .verb_count = sizeof(broker_verbs) / sizeof(broker_verbs[0]),
};

static const adm_verb cluster_verbs[] = {
    { .name = "list",
      .spec = { .name = "magnetar admin clusters list",
                .usage = "[options]",
                .summary = "Lists the clusters the broker knows: its own. GET /admin/v2/clusters.",
                GLOBALS_ONLY,
                .positional_min = 0,
                .positional_max = 0 },
      .run = clusters_list },
};

const adm_group adm_group_clusters = {
    .name = "clusters",
    .summary = "Clusters.",
    .verbs = cluster_verbs,
    .verb_count = sizeof(cluster_verbs) / sizeof(cluster_verbs[0]),
};
