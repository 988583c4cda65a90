/* Option handling shared by the subcommands: parse, report, set the log level. */
#include "tools.h"

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

const char *const mg_tool_log_levels[] = { "trace", "debug", "info", "warn", "error", "off", NULL };

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
    return -1;
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
