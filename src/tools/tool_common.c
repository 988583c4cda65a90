/* What the subcommands share: option parsing and its errors, the log level, the tables of
 * commands, the lock on a data directory and the end of a loop. */
#include "tools.h"

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

const char *const mg_tool_log_levels[] = { "trace", "debug", "info", "warn", "error", "off", NULL };
const char *const mg_tool_sub_types[] = { "Exclusive", "Shared", "Failover", "Key_Shared", NULL };
const char *const mg_tool_sub_positions[] = { "Latest", "Earliest", NULL };

int mg_tool_parse(const mg_cmd_spec *spec, void *opts, int argc, char **argv, mg_config_result *res)
{
    int rc = mg_config_parse(spec, opts, argc, argv, res);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", spec->name, res->error);
        fprintf(stderr, "Try '%s --help' for the options.\n", spec->name);
        mg_config_free(spec, opts);
        return MG_EXIT_USAGE;
    }
    if (res->help_shown) {
        mg_config_free(spec, opts);
        return MG_EXIT_OK;
    }
    for (size_t i = 0; i < spec->opt_count; i++) {
        const mg_opt *opt = &spec->opts[i];
        if (opt->choices == mg_tool_log_levels && strcmp(opt->name, "log-level") == 0)
            mg_log_set_level((mg_log_level) * (const int *)((const char *)opts + opt->offset));
    }
    return -1;
}

int mg_tool_usage_error(const mg_cmd_spec *spec, void *opts, const char *fmt, ...)
{
    fprintf(stderr, "%s: ", spec->name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    mg_config_free(spec, opts);
    return MG_EXIT_USAGE;
}

bool mg_tool_asks_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0;
}

int mg_tool_command_run(const mg_tool_command_table *t, int argc, char **argv)
{
    const char *name = argv[0];
    for (size_t i = 0; i < t->count; i++) {
        const mg_tool_command *c = &t->commands[i];
        if (strcmp(name, c->name) != 0)
            continue;
        if (c->run == NULL) {
            fprintf(stderr, "%s %s: this %s is not built yet%s\n", t->prefix, name, t->kind,
                    t->not_built_note);
            return MG_EXIT_FAILURE;
        }
        return c->run(argc, argv);
    }
    fprintf(stderr, "%s: unknown %s '%s'\n\n", t->prefix, t->kind, name);
    t->usage(stderr);
    return MG_EXIT_USAGE;
}

void mg_tool_command_list(FILE *out, const mg_tool_command_table *t, int name_width)
{
    for (size_t i = 0; i < t->count; i++)
        fprintf(out, "  %-*s %s%s\n", name_width, t->commands[i].name, t->commands[i].summary,
                t->commands[i].run ? "" : " (not built yet)");
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void mg_tool_loop_close(uv_loop_t *loop)
{
    uv_walk(loop, close_handle, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

/* Takes an exclusive lock on <dir>/LOCK so two processes never share one data directory. */
int mg_tool_lock_dir(const char *dir, int *fd_out)
{
    int rc = mg_mkdirs(dir);
    if (rc != MG_OK) {
        MG_ERROR("cannot create data directory %s: %s", dir, strerror(errno));
        return rc;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        MG_ERROR("cannot open %s: %s", path, strerror(errno));
        return mg_err_from_errno(errno);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        MG_ERROR("data directory %s is in use by another magnetar process (%s is locked)", dir,
                 path);
        close(fd);
        return e == EWOULDBLOCK ? MG_EAGAIN : mg_err_from_errno(e);
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || write(fd, pid, (size_t)n) != n)
        MG_WARN("cannot write the process id into %s: %s", path, strerror(errno));
    *fd_out = fd;
    return MG_OK;
}
