/*
 * The subcommands of the magnetar executable. Each takes the arguments after `magnetar`
 * (argv[0] is the subcommand's own name) and returns the process exit status:
 * 0 success, 1 failure at run time, 2 bad usage.
 */
#ifndef MG_TOOLS_TOOLS_H
#define MG_TOOLS_TOOLS_H

#include "common/config.h"

#define MG_EXIT_OK      0
#define MG_EXIT_FAILURE 1
#define MG_EXIT_USAGE   2

int mg_tool_standalone(int argc, char **argv);
int mg_tool_admin(int argc, char **argv);
int mg_tool_bookie(int argc, char **argv);
int mg_tool_broker(int argc, char **argv);
int mg_tool_client(int argc, char **argv);
/* `magnetar perf produce` and `magnetar perf consume` (perf_pulsar.c). */
int mg_perf_produce(int argc, char **argv);
int mg_perf_consume(int argc, char **argv);
int mg_tool_perf(int argc, char **argv);

/* Parses a subcommand's options and prints errors and help.
 * Returns -1 when parsing succeeded and the tool should go on, else the exit status to return
 * at once (0 after --help, 2 after a usage error); in that case the options are already freed.
 * The caller then applies its --log-level with mg_log_set_level(). */
int mg_tool_parse(const mg_cmd_spec *spec, void *opts, int argc, char **argv,
                  mg_config_result *res);

/* Creates dir if needed and takes an exclusive lock on dir/LOCK (holding the process id), so two
 * processes never share one data directory. Logs why on failure: MG_EAGAIN when another process
 * holds it. On success *fd_out keeps the lock until closed. */
int mg_tool_lock_dir(const char *dir, int *fd_out);

/* The --log-level option, shared by every subcommand's option table. */
extern const char *const mg_tool_log_levels[];
#define MG_TOOL_OPT_LOG_LEVEL(opts_type, field)                                                  \
    {                                                                                            \
        .name = "log-level", .type = MG_OPT_ENUM, .offset = offsetof(opts_type, field),          \
        .default_value = "info", .metavar = "LEVEL", .help = "lowest level of log line printed", \
        .choices = mg_tool_log_levels,                                                           \
    }

#endif
