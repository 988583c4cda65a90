/*
 * The REST groups of `magnetar admin` (tenants, namespaces, topics, brokers, clusters): what
 * they share. Every subcommand is one verb of a group, with pulsar-admin's name and flags, and
 * its own option table (so `--help` shows its flags and an unknown flag is a usage error). The
 * options of all verbs live in one struct, adm_opts; a verb's table lists the ones it takes.
 *
 * A verb sends one or a few blocking requests (rest.h) and prints the answer: with
 * --output json the broker's JSON, pretty-printed, as it came; with --output table an aligned
 * table made for the verb. Errors: "<command>: HTTP <status>: <reason>" on stderr and exit
 * status 1; a broker that cannot be reached is named with the cause; usage errors exit 2.
 * docs/admin.md lists every verb.
 */
#ifndef MG_TOOLS_ADMIN_REST_H
#define MG_TOOLS_ADMIN_REST_H

#include "rest.h"
#include "tools.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum { ADM_OUTPUT_JSON = 0, ADM_OUTPUT_TABLE = 1 };

/* Every option of every verb (each verb's table names the ones it takes). */
typedef struct adm_opts {
    char *admin_url;
    int output;
    int64_t timeout_ms;
    char *subscription;
    char *message_id;
    char *time;
    int64_t count;
    bool force;
    int64_t partitions;
    char *size_threshold;
    char *admin_roles;
    char *allowed_clusters;
    char *size;
    char *ttl;
    char *limit;
    char *limit_time;
    char *policy;
    char *type;
} adm_opts;

extern const char *const adm_outputs[];

/* The options every verb takes: --admin-url, --output, --timeout. */
#define ADM_OPT_GLOBALS                                                                        \
    { .name = "admin-url",                                                                     \
      .type = MG_OPT_STRING,                                                                   \
      .offset = offsetof(adm_opts, admin_url),                                                 \
      .default_value = "http://127.0.0.1:8080",                                                \
      .metavar = "URL",                                                                        \
      .help = "the broker's admin REST address (pulsar-admin's --admin-url)" },                \
        { .name = "output",                                                                    \
          .type = MG_OPT_ENUM,                                                                 \
          .offset = offsetof(adm_opts, output),                                                \
          .default_value = "json",                                                             \
          .metavar = "FORMAT",                                                                 \
          .help = "json: the broker's JSON, pretty-printed; table: an aligned table",          \
          .choices = adm_outputs },                                                            \
    {                                                                                          \
        .name = "timeout", .type = MG_OPT_DURATION, .offset = offsetof(adm_opts, timeout_ms),  \
        .default_value = "30s", .metavar = "DURATION",                                         \
        .help = "give up on a request the broker has not answered within this time", .min = 1, \
        .max = 3600 * 1000                                                                     \
    }

/* One verb of a group. */
typedef struct adm_verb {
    const char *name;
    const char *alias; /* another name accepted for it, or NULL */
    mg_cmd_spec spec;  /* spec.name is "magnetar admin <group> <verb>" */
    /* Runs with the parsed options and the positional arguments; returns the exit status. */
    int (*run)(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs);
} adm_verb;

typedef struct adm_group {
    const char *name;    /* "topics" */
    const char *summary; /* one line for `magnetar admin --help` */
    const adm_verb *verbs;
    size_t verb_count;
} adm_group;

extern const adm_group adm_group_tenants;
extern const adm_group adm_group_namespaces;
extern const adm_group adm_group_topics;
extern const adm_group adm_group_brokers;
extern const adm_group adm_group_clusters;

/* Runs group g with argv[0] = the group's name, argv[1] = the verb; globals (argc_g of them,
 * flags given before the group) are inserted before the verb's own flags, so these win. */
int adm_group_run(const adm_group *g, int argc, char **argv, char **globals, int globals_count);

/* Lists g's verbs on out. */
void adm_group_usage(const adm_group *g, FILE *out);

/* ---- requests -------------------------------------------------------------------------------- */

/* Sends method path with body (NULL for none; a JSON body is dumped compactly) and fills *reply.
 * Returns MG_EXIT_OK when the broker answered 2xx; otherwise prints
 * "<spec->name>: HTTP <status>: <reason>" (or why the broker could not be reached) on stderr,
 * frees reply (keeping reply->status: 0 when no answer came) and returns MG_EXIT_FAILURE. The
 * caller frees reply after success. */
int adm_call(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
             const json_t *body, mg_rest_reply *reply);

/* As adm_call with a body given as raw JSON text (a bare number). */
int adm_call_raw(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
                 const char *body, mg_rest_reply *reply);

/* adm_call, then prints the answer: nothing for an empty body, the JSON pretty-printed with
 * --output json, or table(json) with --output table (table NULL: adm_print_fields). */
int adm_call_print(const mg_cmd_spec *spec, const adm_opts *o, const char *method, const char *path,
                   const json_t *body, void (*table)(const json_t *j));

/* Parses reply's body as JSON (any value); prints why not and returns NULL. */
json_t *adm_reply_json(const mg_cmd_spec *spec, const mg_rest_reply *reply);

/* Prints j as indented JSON, keys in the broker's order, and a newline. */
void adm_print_json(const json_t *j);

/* ---- paths ----------------------------------------------------------------------------------- */

/* Writes "/admin/v2/persistent/<tenant>/<ns>/<local>" for topic (persistent://t/ns/x, t/ns/x or
 * a short name x = persistent://public/default/x) into dst. False (with the reason printed as a
 * usage error) when it is not such a name. */
bool adm_topic_path(const mg_cmd_spec *spec, const char *topic, char *dst, size_t cap);

/* Writes "<prefix>/<tenant>/<ns>" for ns ("tenant/namespace") into dst. False (reason printed)
 * when it is not one. */
bool adm_namespace_path(const mg_cmd_spec *spec, const char *ns, const char *prefix, char *dst,
                        size_t cap);

/* Appends "/" and s percent-encoded to dst (holding len bytes, cap in all). False when it does
 * not fit. */
bool adm_path_add(char *dst, size_t cap, const char *s);

/* ---- values ---------------------------------------------------------------------------------- */

/* pulsar-admin's sizes: a count with an optional unit k, m, g, t (any case; 1024-based) or -1.
 * False when text is not one. */
bool adm_parse_size(const char *text, int64_t *bytes);
/* pulsar-admin's relative times: a count with an optional unit s, m, h, d, w, y (bare: seconds),
 * or -1. False when text is not one. */
bool adm_parse_time_s(const char *text, int64_t *seconds);

/* A usage error of a verb: "<spec->name>: <message>", exit status 2. */
int adm_usage(const mg_cmd_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- tables ---------------------------------------------------------------------------------- */

#define ADM_TABLE_COLUMNS_MAX 8

typedef struct adm_table {
    int columns;
    char **cells; /* rows * columns strings, row 0 the header */
    size_t rows, cap;
} adm_table;

void adm_table_init(adm_table *t, int columns, ...);
/* Adds a row of t->columns strings (copied). */
void adm_table_row(adm_table *t, ...);
/* Prints t aligned (columns padded to their widest cell, two spaces apart) and frees it. */
void adm_table_print(adm_table *t);

/* A JSON value as one cell: strings bare, numbers and booleans as JSON, arrays joined with
 * ',', objects and null as compact JSON. The caller frees the result. */
char *adm_cell(const json_t *v);

/* The generic table: one row per field (FIELD, VALUE), nested objects flattened with '.'
 * between the keys; a bare value as one VALUE row; an array of scalars one row each. */
void adm_print_fields(const json_t *j);

/* A list of names as a one-column table headed header. */
void adm_print_list(const json_t *j, const char *header);

#endif
