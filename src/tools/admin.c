/*
 * `magnetar admin`: operator commands.
 *
 *   magnetar admin metadata get <path>   a node's value and stat
 *   magnetar admin metadata ls <path>    a node's children, one per line
 *   magnetar admin tenants|namespaces|topics|brokers|clusters <command> ...
 *                                        pulsar-admin's commands over the admin REST API
 *                                        (admin_rest.h, admin_tenants.c, admin_topics.c)
 *
 * The metadata commands talk to the metadata store directly (ZooKeeper, or the embedded
 * RocksDB store opened read-only, so a running standalone can be inspected); they are for
 * operators and for debugging. Values are printed as text when they are printable UTF-8/ASCII,
 * else as a hex dump, so binary (protobuf) values are still readable.
 */
#include "admin_rest.h"
#include "tools.h"

#include "common/error.h"
#include "common/log.h"
#include "metadata/metadata.h"

#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

typedef struct admin_md_opts {
    char *metadata_url;
    bool stat;
    int64_t timeout_ms;
    int log_level;
} admin_md_opts;

static const mg_opt admin_md_opt_table[] = {
    { .name = "metadata-url",
      .short_name = 'u',
      .type = MG_OPT_STRING,
      .offset = offsetof(admin_md_opts, metadata_url),
      .default_value = "rocksdb:./data/metadata",
      .metavar = "URL",
      .help = "metadata store: rocksdb:<dir> or zk:host:port[,host:port...][/chroot]" },
    { .name = "stat",
      .short_name = 's',
      .type = MG_OPT_BOOL,
      .offset = offsetof(admin_md_opts, stat),
      .default_value = "false",
      .help = "get: also print the node's version, times, owner and child count" },
    { .name = "timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(admin_md_opts, timeout_ms),
      .default_value = "10s",
      .metavar = "DURATION",
      .help = "give up when the store has not answered within this time",
      .min = 1,
      .max = 3600 * 1000 },
    { .name = "log-level",
      .type = MG_OPT_ENUM,
      .offset = offsetof(admin_md_opts, log_level),
      .default_value = "warn",
      .metavar = "LEVEL",
      .help = "lowest level of log line printed",
      .choices = mg_tool_log_levels },
};

static const mg_cmd_spec admin_md_spec = {
    .name = "magnetar admin metadata",
    .usage = "[options] get|ls <path>",
    .summary = "Inspects the metadata store: 'get' prints a node's value (text, or a hex dump "
               "for binary values), 'ls' lists its children. The embedded store is opened "
               "read-only, so it can be inspected while magnetar standalone runs.",
    .opts = admin_md_opt_table,
    .opt_count = sizeof(admin_md_opt_table) / sizeof(admin_md_opt_table[0]),
    .positional_min = 2,
    .positional_max = 2,
};

typedef struct admin_md_run {
    uv_loop_t loop;
    uv_timer_t timer;
    md_store *store;
    md_client *client;
    bool stat;
    bool done;
    bool timed_out;
    int status;
    const char *path;
} admin_md_run;

static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
            return false;
        if (p[i] == 0x7f)
            return false;
    }
    return true;
}

static void hex_dump(const uint8_t *p, size_t n)
{
    for (size_t off = 0; off < n; off += 16) {
        printf("%08zx ", off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < n)
                printf(" %02x", p[off + i]);
            else
                printf("   ");
        }
        printf("  |");
        for (size_t i = 0; i < 16 && off + i < n; i++)
            putchar(isprint(p[off + i]) ? p[off + i] : '.');
        printf("|\n");
    }
}

static void print_time(const char *label, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[64];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%-16s %s.%03dZ\n", label, buf, (int)(ms % 1000));
}

static void get_done(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    admin_md_run *r = arg;
    r->status = status;
    r->done = true;
    if (status != MG_OK)
        return;
    const uint8_t *v = value;
    if (len == 0) {
        /* nothing to print */
    } else if (printable(v, len)) {
        fwrite(v, 1, len, stdout);
        if (v[len - 1] != '\n')
            putchar('\n');
    } else {
        hex_dump(v, len);
    }
    if (r->stat) {
        printf("%-16s %" PRId64 "\n", "version", stat->version);
        print_time("created", stat->created_ms);
        print_time("modified", stat->modified_ms);
        printf("%-16s %zu\n", "value_bytes", len);
        printf("%-16s %d\n", "children", stat->child_count);
        if (stat->ephemeral_owner != 0)
            printf("%-16s ephemeral, session 0x%" PRIx64 "\n", "lifetime",
                   (uint64_t)stat->ephemeral_owner);
        else
            printf("%-16s persistent\n", "lifetime");
    }
}

static void ls_done(int status, const char *const *names, size_t count, void *arg)
{
    admin_md_run *r = arg;
    r->status = status;
    r->done = true;
    for (size_t i = 0; i < count; i++)
        printf("%s\n", names[i]);
}

static void timeout_cb(uv_timer_t *t)
{
    admin_md_run *r = t->data;
    r->timed_out = true;
}

static void client_closed(void *arg)
{
    *(bool *)arg = true;
}

static int admin_metadata(int argc, char **argv)
{
    admin_md_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&admin_md_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;

    const char *verb = res.positional[0];
    const char *path = res.positional[1];
    if (strcmp(verb, "get") != 0 && strcmp(verb, "ls") != 0)
        return mg_tool_usage_error(&admin_md_spec, &o, "unknown action '%s' (use get or ls)", verb);

    admin_md_run r;
    memset(&r, 0, sizeof(r));
    r.stat = o.stat;
    r.path = path;
    int status = MG_EXIT_FAILURE;
    md_store_options so = { .read_only = true };
    int rc = md_store_open(o.metadata_url, &so, &r.store);
    if (rc != MG_OK) {
        fprintf(stderr, "%s: cannot open the metadata store %s: %s\n", admin_md_spec.name,
                o.metadata_url, mg_strerror(rc));
        mg_config_free(&admin_md_spec, &o);
        return rc == MG_EINVAL ? MG_EXIT_USAGE : MG_EXIT_FAILURE;
    }
    uv_loop_init(&r.loop);
    uv_timer_init(&r.loop, &r.timer);
    r.timer.data = &r;
    uv_timer_start(&r.timer, timeout_cb, (uint64_t)o.timeout_ms, 0);
    rc = md_client_create(r.store, &r.loop, &r.client);
    if (rc == MG_OK) {
        rc = strcmp(verb, "get") == 0 ? md_get(r.client, path, get_done, &r)
                                      : md_children(r.client, path, ls_done, &r);
    }
    if (rc == MG_OK) {
        while (!r.done && !r.timed_out)
            uv_run(&r.loop, UV_RUN_ONCE);
        rc = r.done ? r.status : MG_ETIMEDOUT;
    }
    if (rc == MG_OK) {
        status = MG_EXIT_OK;
    } else if (rc == MG_EINVAL) {
        fprintf(stderr,
                "%s: '%s' is not a valid path (absolute, no trailing '/', no empty, "
                "'.' or '..' segments)\n",
                admin_md_spec.name, path);
        status = MG_EXIT_USAGE;
    } else if (rc == MG_ENOTFOUND) {
        fprintf(stderr, "%s: %s: no such node\n", admin_md_spec.name, path);
    } else if (rc == MG_ETIMEDOUT) {
        fprintf(stderr, "%s: the metadata store %s did not answer within %lld ms\n",
                admin_md_spec.name, o.metadata_url, (long long)o.timeout_ms);
    } else {
        fprintf(stderr, "%s: %s: %s\n", admin_md_spec.name, path, mg_strerror(rc));
    }
    uv_close((uv_handle_t *)&r.timer, NULL);
    if (r.client) {
        bool closed = false;
        md_client_close(r.client, client_closed, &closed);
        while (!closed)
            uv_run(&r.loop, UV_RUN_ONCE);
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    md_store_close(r.store);
    mg_config_free(&admin_md_spec, &o);
    return status;
}

static const adm_group *const admin_groups[] = {
    &adm_group_tenants, &adm_group_namespaces, &adm_group_topics,
    &adm_group_brokers, &adm_group_clusters,
};

static void admin_usage(FILE *out)
{
    fprintf(out, "Usage: magnetar admin [--admin-url URL] [--output json|table] [--timeout D] "
                 "<group> <command> ...\n\n"
                 "Groups:\n"
                 "  metadata     inspect the metadata store (get, ls)\n");
    for (size_t i = 0; i < sizeof(admin_groups) / sizeof(admin_groups[0]); i++)
        fprintf(out, "  %-12s %s\n", admin_groups[i]->name, admin_groups[i]->summary);
    fprintf(out, "\nThe REST groups take --admin-url, --output and --timeout before the group or "
                 "after the command.\n"
                 "Run 'magnetar admin <group> --help' for a group's commands.\n");
}

/* Whether arg is a global flag of the REST groups given before the group; *takes_value: it is
 * "--name" and the next argument is its value. */
static bool global_flag(const char *arg, bool *takes_value)
{
    static const char *const names[] = { "--admin-url", "--output", "--timeout" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = strlen(names[i]);
        if (strncmp(arg, names[i], n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
            *takes_value = arg[n] == '\0';
            return true;
        }
    }
    return false;
}

int mg_tool_admin(int argc, char **argv)
{
    int first = 1;
    bool takes_value = false;
    while (first < argc && global_flag(argv[first], &takes_value))
        first += takes_value ? 2 : 1;
    if (first > argc) {
        fprintf(stderr, "magnetar admin: %s needs a value\n", argv[argc - 1]);
        return MG_EXIT_USAGE;
    }
    if (first >= argc) {
        admin_usage(stderr);
        return MG_EXIT_USAGE;
    }
    const char *group = argv[first];
    if (strcmp(group, "--help") == 0 || strcmp(group, "-h") == 0 || strcmp(group, "help") == 0) {
        admin_usage(stdout);
        return MG_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(admin_groups) / sizeof(admin_groups[0]); i++)
        if (strcmp(group, admin_groups[i]->name) == 0)
            return adm_group_run(admin_groups[i], argc - first, argv + first, argv + 1, first - 1);
    if (strcmp(group, "metadata") == 0) {
        if (first == 1)
            return admin_metadata(argc - 1, argv + 1);
        fprintf(stderr, "magnetar admin: --admin-url, --output and --timeout before the group are "
                        "for the REST groups; 'metadata' takes its own options after it (see "
                        "'magnetar admin metadata --help')\n");
        return MG_EXIT_USAGE;
    }
    fprintf(stderr, "magnetar admin: unknown group '%s'\n\n", group);
    admin_usage(stderr);
    return MG_EXIT_USAGE;
}
