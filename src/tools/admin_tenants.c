/*
 * `magnetar admin tenants ...` and `magnetar admin namespaces ...`: pulsar-admin's tenant and
 * namespace commands over /admin/v2/tenants and /admin/v2/namespaces.
 *
 * Sizes and times take pulsar-admin's forms (adm_parse_size, adm_parse_time_s) and are sent in
 * the units of Pulsar's JSON: retention as minutes and megabytes, the message TTL and a backlog
 * quota's time limit as seconds, a backlog quota's size limit as bytes; -1 is unlimited.
 * pulsar-admin's multi-letter short flags (-ttl, -lt) are not single letters, which the option
 * parser (common/config.h) does not have: they are rewritten to their long forms before parsing.
 */
#include "admin_rest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_BYTES 2048
#define TENANTS    "/admin/v2/tenants"
#define NAMESPACES "/admin/v2/namespaces"

/* ---- options --------------------------------------------------------------------------------- */

static const mg_opt o_plain[] = { ADM_OPT_GLOBALS };
static const mg_opt o_tenant_create[] = {
    ADM_OPT_GLOBALS,
    { .name = "admin-roles",
      .short_name = 'r',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, admin_roles),
      .metavar = "R1,R2",
      .help = "the tenant's admin roles, comma-separated" },
    { .name = "allowed-clusters",
      .short_name = 'c',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, allowed_clusters),
      .metavar = "C1,C2",
      .help = "the clusters the tenant may use, comma-separated (default: every cluster the "
              "broker knows)" },
};
static const mg_opt o_ns_delete[] = {
    ADM_OPT_GLOBALS,
    { .name = "force",
      .short_name = 'f',
      .type = MG_OPT_BOOL,
      .offset = offsetof(adm_opts, force),
      .default_value = "false",
      .help = "delete its topics first" },
};
static const mg_opt o_retention[] = {
    ADM_OPT_GLOBALS,
    { .name = "size",
      .short_name = 's',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, size),
      .metavar = "SIZE",
      .help = "keep consumed data up to this size: 100M, 10G, 0 none, -1 unlimited (required)" },
    { .name = "time",
      .short_name = 't',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, time),
      .metavar = "TIME",
      .help = "keep consumed data this long: 100m, 3h, 2d, 1w, 0 none, -1 unlimited (required)" },
};
static const mg_opt o_ttl[] = {
    ADM_OPT_GLOBALS,
    { .name = "messageTTL",
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, ttl),
      .metavar = "SECONDS",
      .help = "messages older than this are acknowledged for every subscription: seconds, or "
              "1h, 2d... (required; pulsar-admin's -ttl is accepted)" },
};
static const char *const quota_types[] = { "destination_storage", "message_age", NULL };
static const mg_opt o_quota[] = {
    ADM_OPT_GLOBALS,
    { .name = "limit",
      .short_name = 'l',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, limit),
      .metavar = "SIZE",
      .help = "backlog size limit: 2G, 500M, -1 none (destination_storage)" },
    { .name = "limitTime",
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, limit_time),
      .metavar = "TIME",
      .help = "backlog age limit: seconds or 3h, 2d... (message_age; pulsar-admin's -lt is "
              "accepted)" },
    { .name = "policy",
      .short_name = 'p',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, policy),
      .metavar = "POLICY",
      .help = "what happens past the limit: producer_request_hold, producer_exception or "
              "consumer_backlog_eviction (required)" },
    { .name = "type",
      .short_name = 't',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, type),
      .default_value = "destination_storage",
      .metavar = "TYPE",
      .help = "destination_storage (a size limit) or message_age (a time limit)" },
};
static const mg_opt o_quota_remove[] = {
    ADM_OPT_GLOBALS,
    { .name = "type",
      .short_name = 't',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, type),
      .default_value = "destination_storage",
      .metavar = "TYPE",
      .help = "destination_storage or message_age" },
};

#define OPTS(t) .opts = t, .opt_count = sizeof(t) / sizeof(t[0])

/* ---- tenants --------------------------------------------------------------------------------- */

static void tenants_table(const json_t *j)
{
    adm_print_list(j, "TENANT");
}

static void namespaces_table(const json_t *j)
{
    adm_print_list(j, "NAMESPACE");
}

static bool tenant_path(const mg_cmd_spec *spec, const char *tenant, char *path, size_t cap)
{
    snprintf(path, cap, TENANTS);
    if (strchr(tenant, '/') != NULL || tenant[0] == '\0' || !adm_path_add(path, cap, tenant)) {
        adm_usage(spec, "'%s' is not a tenant name", tenant);
        return false;
    }
    return true;
}

static int tn_list(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)args;
    (void)nargs;
    return adm_call_print(spec, o, "GET", TENANTS, NULL, tenants_table);
}

static int tn_get(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!tenant_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    return adm_call_print(spec, o, "GET", path, NULL, NULL);
}

static int tn_delete(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!tenant_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    return adm_call_print(spec, o, "DELETE", path, NULL, NULL);
}

/* "a,b,c" as a JSON array of its non-empty parts. */
static json_t *comma_list(const char *text)
{
    json_t *a = json_array();
    const char *p = text;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (len > 0)
            json_array_append_new(a, json_stringn(p, len));
        p = comma != NULL ? comma + 1 : NULL;
    }
    return a;
}

static int tn_create(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!tenant_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    json_t *clusters = NULL;
    if (o->allowed_clusters != NULL) {
        clusters = comma_list(o->allowed_clusters);
    } else {
        /* As pulsar-admin: every cluster the broker knows. */
        mg_rest_reply r;
        int status = adm_call(spec, o, "GET", "/admin/v2/clusters", NULL, &r);
        if (status != MG_EXIT_OK)
            return status;
        clusters = adm_reply_json(spec, &r);
        mg_rest_reply_free(&r);
        if (!json_is_array(clusters)) {
            json_decref(clusters);
            fprintf(stderr, "%s: the broker's cluster list is not a JSON array\n", spec->name);
            return MG_EXIT_FAILURE;
        }
    }
    json_t *body = json_pack("{s:o,s:o}", "adminRoles",
                             comma_list(o->admin_roles != NULL ? o->admin_roles : ""),
                             "allowedClusters", clusters);
    int status = adm_call_print(spec, o, "PUT", path, body, NULL);
    json_decref(body);
    return status;
}

#define VERB(g, n, u, s, o, min, max, fn)            \
    {                                                \
        .name = n,                                   \
        .spec = { .name = "magnetar admin " g " " n, \
                  .usage = u,                        \
                  .summary = s,                      \
                  OPTS(o),                           \
                  .positional_min = min,             \
                  .positional_max = max },           \
        .run = fn                                    \
    }

static const adm_verb tenant_verbs[] = {
    VERB("tenants", "list", "[options]", "Lists the tenants. GET /admin/v2/tenants.", o_plain, 0, 0,
         tn_list),
    VERB("tenants", "get", "[options] TENANT",
         "The tenant's admin roles and allowed clusters. GET /admin/v2/tenants/{tenant}.", o_plain,
         1, 1, tn_get),
    VERB("tenants", "create", "[options] TENANT [--admin-roles R1,R2] [--allowed-clusters C1,C2]",
         "Creates a tenant. PUT /admin/v2/tenants/{tenant}.", o_tenant_create, 1, 1, tn_create),
    VERB("tenants", "delete", "[options] TENANT",
         "Deletes a tenant; refused while it has namespaces. DELETE /admin/v2/tenants/{tenant}.",
         o_plain, 1, 1, tn_delete),
};

const adm_group adm_group_tenants = {
    .name = "tenants",
    .summary = "Tenants.",
    .verbs = tenant_verbs,
    .verb_count = sizeof(tenant_verbs) / sizeof(tenant_verbs[0]),
};

/* ---- namespaces ------------------------------------------------------------------------------ */

/* The namespace's path with suffix appended. */
static bool ns_path(const mg_cmd_spec *spec, const char *ns, const char *suffix, char *path,
                    size_t cap)
{
    if (!adm_namespace_path(spec, ns, NAMESPACES, path, cap))
        return false;
    strncat(path, suffix, cap - strlen(path) - 1);
    return true;
}

static int ns_list(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    snprintf(path, sizeof(path), NAMESPACES);
    if (strchr(args[0], '/') != NULL || !adm_path_add(path, sizeof(path), args[0]))
        return adm_usage(spec, "'%s' is not a tenant name", args[0]);
    return adm_call_print(spec, o, "GET", path, NULL, namespaces_table);
}

/* method on the namespace's path + suffix, no body, printed. */
static int ns_simple(const mg_cmd_spec *spec, adm_opts *o, const char *ns, const char *method,
                     const char *suffix)
{
    char path[PATH_BYTES];
    if (!ns_path(spec, ns, suffix, path, sizeof(path)))
        return MG_EXIT_USAGE;
    return adm_call_print(spec, o, method, path, NULL, NULL);
}

static int ns_create(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "PUT", "");
}

static int ns_delete(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "DELETE", o->force ? "?force=true" : "");
}

static int ns_policies(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "GET", "");
}

static int ns_set_retention(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    if (o->size == NULL || o->time == NULL)
        return adm_usage(spec, "--size (-s) and --time (-t) are both required");
    int64_t bytes = 0, secs = 0;
    if (!adm_parse_size(o->size, &bytes))
        return adm_usage(spec, "--size: '%s' is not a size such as 100M, 10G or -1", o->size);
    if (!adm_parse_time_s(o->time, &secs))
        return adm_usage(spec, "--time: '%s' is not a time such as 100m, 3h, 2d or -1", o->time);
    int64_t mb = bytes < 0 ? -1 : bytes / (1024 * 1024);
    int64_t minutes = secs < 0 ? -1 : secs / 60;
    if (bytes > 0 && mb == 0)
        return adm_usage(spec, "--size: '%s' is less than the 1 MiB unit retention is kept in",
                         o->size);
    if (secs > 0 && minutes == 0)
        return adm_usage(spec, "--time: '%s' is less than the 1 minute unit retention is kept in",
                         o->time);
    char path[PATH_BYTES];
    if (!ns_path(spec, args[0], "/retention", path, sizeof(path)))
        return MG_EXIT_USAGE;
    json_t *body = json_pack("{s:I,s:I}", "retentionTimeInMinutes", (json_int_t)minutes,
                             "retentionSizeInMB", (json_int_t)mb);
    int status = adm_call_print(spec, o, "POST", path, body, NULL);
    json_decref(body);
    return status;
}

static int ns_get_retention(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "GET", "/retention");
}

static int ns_remove_retention(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "DELETE", "/retention");
}

static int ns_set_ttl(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    int64_t secs = 0;
    if (o->ttl == NULL)
        return adm_usage(spec, "--messageTTL (-ttl) is required");
    if (!adm_parse_time_s(o->ttl, &secs) || secs < 0 || secs > INT32_MAX)
        return adm_usage(spec, "--messageTTL: '%s' is not a number of seconds (or 1h, 2d...)",
                         o->ttl);
    char path[PATH_BYTES];
    if (!ns_path(spec, args[0], "/messageTTL", path, sizeof(path)))
        return MG_EXIT_USAGE;
    json_t *body = json_integer(secs);
    int status = adm_call_print(spec, o, "POST", path, body, NULL);
    json_decref(body);
    return status;
}

static int ns_get_ttl(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "GET", "/messageTTL");
}

static int ns_remove_ttl(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "DELETE", "/messageTTL");
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static const char *const quota_policies[] = { "producer_request_hold", "producer_exception",
                                              "consumer_backlog_eviction", NULL };

static int ns_set_quota(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    if (o->policy == NULL || !in_list(o->policy, quota_policies))
        return adm_usage(spec,
                         "--policy (-p) is required: producer_request_hold, producer_exception "
                         "or consumer_backlog_eviction");
    if (!in_list(o->type, quota_types))
        return adm_usage(spec, "--type: '%s' is neither destination_storage nor message_age",
                         o->type);
    int64_t bytes = -1, secs = -1;
    if (o->limit != NULL && !adm_parse_size(o->limit, &bytes))
        return adm_usage(spec, "--limit: '%s' is not a size such as 2G, 500M or -1", o->limit);
    if (o->limit_time != NULL && !adm_parse_time_s(o->limit_time, &secs))
        return adm_usage(spec, "--limitTime: '%s' is not a time such as 3600, 3h or -1",
                         o->limit_time);
    bool age = strcmp(o->type, "message_age") == 0;
    if (!age && o->limit == NULL)
        return adm_usage(spec, "--limit (-l) is required for a destination_storage quota");
    if (age && o->limit_time == NULL)
        return adm_usage(spec, "--limitTime (-lt) is required for a message_age quota");
    char path[PATH_BYTES];
    if (!ns_path(spec, args[0], "/backlogQuota?backlogQuotaType=", path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, o->type, sizeof(path) - strlen(path) - 1);
    json_t *body = json_pack("{s:I,s:I,s:s}", "limitSize", (json_int_t)bytes, "limitTime",
                             (json_int_t)secs, "policy", o->policy);
    int status = adm_call_print(spec, o, "POST", path, body, NULL);
    json_decref(body);
    return status;
}

static int ns_get_quotas(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return ns_simple(spec, o, args[0], "GET", "/backlogQuotaMap");
}

static int ns_remove_quota(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    if (!in_list(o->type, quota_types))
        return adm_usage(spec, "--type: '%s' is neither destination_storage nor message_age",
                         o->type);
    char suffix[96];
    snprintf(suffix, sizeof(suffix), "/backlogQuota?backlogQuotaType=%s", o->type);
    return ns_simple(spec, o, args[0], "DELETE", suffix);
}

static const adm_verb namespace_verbs[] = {
    VERB("namespaces", "list", "[options] TENANT",
         "Lists the tenant's namespaces. GET /admin/v2/namespaces/{tenant}.", o_plain, 1, 1,
         ns_list),
    VERB("namespaces", "create", "[options] TENANT/NAMESPACE",
         "Creates a namespace. PUT /admin/v2/namespaces/{tenant}/{namespace}.", o_plain, 1, 1,
         ns_create),
    VERB("namespaces", "delete", "[options] TENANT/NAMESPACE",
         "Deletes a namespace; refused while it has topics unless --force, which deletes them "
         "first. DELETE /admin/v2/namespaces/{tenant}/{namespace}.",
         o_ns_delete, 1, 1, ns_delete),
    VERB("namespaces", "policies", "[options] TENANT/NAMESPACE",
         "The namespace's policies. GET /admin/v2/namespaces/{tenant}/{namespace}.", o_plain, 1, 1,
         ns_policies),
    VERB("namespaces", "set-retention", "[options] TENANT/NAMESPACE --size SIZE --time TIME",
         "Sets how much consumed data is kept, by size and by time (-1: unlimited). POST "
         ".../retention.",
         o_retention, 1, 1, ns_set_retention),
    VERB("namespaces", "get-retention", "[options] TENANT/NAMESPACE",
         "The namespace's retention. GET .../retention.", o_plain, 1, 1, ns_get_retention),
    VERB("namespaces", "remove-retention", "[options] TENANT/NAMESPACE",
         "Removes the namespace's retention (the broker's default applies). DELETE "
         ".../retention.",
         o_plain, 1, 1, ns_remove_retention),
    VERB("namespaces", "set-message-ttl", "[options] TENANT/NAMESPACE --messageTTL SECONDS",
         "Sets the message time to live. POST .../messageTTL.", o_ttl, 1, 1, ns_set_ttl),
    VERB("namespaces", "get-message-ttl", "[options] TENANT/NAMESPACE",
         "The message time to live, in seconds. GET .../messageTTL.", o_plain, 1, 1, ns_get_ttl),
    VERB("namespaces", "remove-message-ttl", "[options] TENANT/NAMESPACE",
         "Removes the message time to live. DELETE .../messageTTL.", o_plain, 1, 1, ns_remove_ttl),
    VERB("namespaces", "set-backlog-quota",
         "[options] TENANT/NAMESPACE --limit SIZE [--limitTime TIME] --policy POLICY [--type T]",
         "Sets a backlog quota: a size limit (destination_storage) or an age limit "
         "(message_age), and what happens past it. POST "
         ".../backlogQuota?backlogQuotaType={type}.",
         o_quota, 1, 1, ns_set_quota),
    VERB("namespaces", "get-backlog-quotas", "[options] TENANT/NAMESPACE",
         "The namespace's backlog quotas. GET .../backlogQuotaMap.", o_plain, 1, 1, ns_get_quotas),
    VERB("namespaces", "remove-backlog-quota", "[options] TENANT/NAMESPACE [--type T]",
         "Removes a backlog quota. DELETE .../backlogQuota?backlogQuotaType={type}.",
         o_quota_remove, 1, 1, ns_remove_quota),
};

const adm_group adm_group_namespaces = {
    .name = "namespaces",
    .summary = "Namespaces and their policies (retention, message TTL, backlog quotas).",
    .verbs = namespace_verbs,
    .verb_count = sizeof(namespace_verbs) / sizeof(namespace_verbs[0]),
};
