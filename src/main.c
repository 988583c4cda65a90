/*
 * magnetar: one executable with subcommands, like Pulsar's bin/pulsar
 * (../shared/ARCHITECTURE.md §2). This file only dispatches; each subcommand lives in
 * src/tools/ and parses its own options (common/config.h), so `magnetar <command> --help`
 * documents every option of that command.
 */
#include "tools/chat.h"
#include "tools/tools.h"

#include "common/log.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out);

static const mg_tool_command commands[] = {
    { "standalone", "run everything in one process: metadata, bookie, broker, HTTP admin",
      mg_tool_standalone },
    { "bookie", "run a storage node (port 3181)", mg_tool_bookie },
    { "broker", "run a stateless broker (ports 6650, 8080)", mg_tool_broker },
    { "gateway", "run a chat gateway (ports 3101 TCP, 3102 WebSocket)", mg_tool_gateway },
    { "job", "run a chat Job worker (topics to gateways)", mg_tool_job },
    { "client", "produce or consume messages from the command line", mg_tool_client },
    { "perf", "load generators: produce, consume, catchup", mg_tool_perf },
    { "replay", "drain a backlog from a position or a time", mg_tool_replay },
    { "admin", "administer topics, subscriptions and metadata", mg_tool_admin },
};

static const mg_tool_command_table command_table = {
    .prefix = "magnetar",
    .kind = "command",
    .not_built_note = " in magnetar " MG_VERSION,
    .commands = commands,
    .count = sizeof(commands) / sizeof(commands[0]),
    .usage = print_usage,
};

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: magnetar <command> [options]\n"
                 "       magnetar <command> --help\n"
                 "       magnetar --version\n\n"
                 "Magnetar is a Pulsar-compatible, tiered log broker built for catch-up reads.\n\n"
                 "Commands:\n");
    mg_tool_command_list(out, &command_table, 12);
    fprintf(out, "\nOptions:\n"
                 "  -h, --help     show this help\n"
                 "  -V, --version  show the version\n");
}

/* Large buffers (the bookie's 1 MiB O_DIRECT read chunks, range responses, write-cache halves'
 * flush buffers) come and go thousands of times a second. glibc serves allocations above its
 * mmap threshold with a fresh mmap each time: page faults and zeroing on first touch (inside
 * io_submit for O_DIRECT reads) and an munmap on free, measured at about a third of the bookie
 * loop thread's time during a cold range read. Keeping them in the heap up to 32 MiB, and
 * returning memory to the system only past 256 MiB of free heap top, lets freed chunks be
 * reused as they are. */
#define MAIN_MMAP_THRESHOLD_BYTES (32 * 1024 * 1024)
#define MAIN_TRIM_THRESHOLD_BYTES (256 * 1024 * 1024)

int main(int argc, char **argv)
{
    mallopt(M_MMAP_THRESHOLD, MAIN_MMAP_THRESHOLD_BYTES);
    mallopt(M_TRIM_THRESHOLD, MAIN_TRIM_THRESHOLD_BYTES);
    mg_log_set_thread_name("main");
    if (argc < 2) {
        print_usage(stderr);
        return MG_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (mg_tool_asks_help(cmd)) {
        print_usage(stdout);
        return MG_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        printf("magnetar %s\n", MG_VERSION);
        return MG_EXIT_OK;
    }
    return mg_tool_command_run(&command_table, argc - 1, argv + 1);
}
