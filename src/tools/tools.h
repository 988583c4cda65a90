/*
 * The subcommands of the magnetar executable. Each takes the arguments after `magnetar`
 * (argv[0] is the subcommand's own name) and returns the process exit status:
 * 0 success, 1 failure at run time, 2 bad usage.
 */
#ifndef MG_TOOLS_TOOLS_H
#define MG_TOOLS_TOOLS_H

#include "common/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <uv.h>

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
/* `magnetar replay` (replay.c): drains a topic from a position or a time (docs/replay.md). */
int mg_tool_replay(int argc, char **argv);

/* Parses a subcommand's options and prints errors and help.
 * Returns -1 when parsing succeeded and the tool should go on, else the exit status to return
 * at once (0 after --help, 2 after a usage error); in that case the options are already freed.
 * On success the --log-level of the table (an ENUM option named "log-level" with the choices
 * mg_tool_log_levels) is already applied with mg_log_set_level(). */
int mg_tool_parse(const mg_cmd_spec *spec, void *opts, int argc, char **argv,
                  mg_config_result *res);

/* A usage error found after parsing (a missing or inconsistent option): prints
 * "<spec->name>: <message>" on stderr, frees the options and returns MG_EXIT_USAGE. */
int mg_tool_usage_error(const mg_cmd_spec *spec, void *opts, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A command that dispatches to others (`magnetar`, `magnetar perf`) keeps them in a table. */
typedef struct mg_tool_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* NULL: not built yet */
} mg_tool_command;

typedef struct mg_tool_command_table {
    const char *prefix;         /* the dispatching command, "magnetar perf": starts its errors */
    const char *kind;           /* what its commands are called in them: "workload" */
    const char *not_built_note; /* ends the error for a command not built yet ("" for none) */
    const mg_tool_command *commands;
    size_t count;
    void (*usage)(FILE *out); /* printed after an unknown name */
} mg_tool_command_table;

/* True for an argument asking a dispatching command for its help: --help, -h or help. */
bool mg_tool_asks_help(const char *arg);
/* Runs the command of t named argv[0], giving it argc and argv (argv[0] its own name), and
 * returns its exit status. An unknown name: "<prefix>: unknown <kind> '<name>'", a blank line
 * and t->usage on stderr, MG_EXIT_USAGE. A command not built yet: "<prefix> <name>: this <kind>
 * is not built yet<note>" on stderr, MG_EXIT_FAILURE. */
int mg_tool_command_run(const mg_tool_command_table *t, int argc, char **argv);
/* Lists the commands of t on out, one "  <name> <summary>" line each, names padded to
 * name_width and the commands not built yet marked so. */
void mg_tool_command_list(FILE *out, const mg_tool_command_table *t, int name_width);

/* Closes every handle still open on loop, runs it until their close callbacks ran, then closes
 * the loop: the end of a tool's loop once what needed an orderly stop has stopped. */
void mg_tool_loop_close(uv_loop_t *loop);

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

/* Options that the Pulsar client tools (`client`, `perf produce|consume`) share, with the names,
 * defaults and help of pulsar-client and pulsar-perf. */
#define MG_TOOL_OPT_SERVICE_URL(opts_type, field)                                         \
    {                                                                                     \
        .name = "service-url", .short_name = 'u', .type = MG_OPT_STRING,                  \
        .offset = offsetof(opts_type, field), .default_value = "pulsar://127.0.0.1:6650", \
        .metavar = "URL", .help = "broker to connect to",                                 \
    }
/* The choices of --subscription-type and --subscription-position, in the order of
 * pc_sub_type and pc_initial_position (client/client.h). */
extern const char *const mg_tool_sub_types[];
extern const char *const mg_tool_sub_positions[];
#define MG_TOOL_OPT_SUB_TYPE(opts_type, field, short_flag)                                     \
    {                                                                                          \
        .name = "subscription-type", .short_name = short_flag, .type = MG_OPT_ENUM,            \
        .offset = offsetof(opts_type, field), .default_value = "Exclusive", .metavar = "TYPE", \
        .help = "subscription type", .choices = mg_tool_sub_types,                             \
    }
#define MG_TOOL_OPT_SUB_POSITION(opts_type, field, short_flag)                             \
    {                                                                                      \
        .name = "subscription-position", .short_name = short_flag, .type = MG_OPT_ENUM,    \
        .offset = offsetof(opts_type, field), .default_value = "Latest", .metavar = "POS", \
        .help = "where a new subscription starts", .choices = mg_tool_sub_positions,       \
    }

#endif
