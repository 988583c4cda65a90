/*
 * `magnetar standalone`: every role in one process (../shared/ARCHITECTURE.md §2).
 *
 * What runs: the embedded metadata store (or ZooKeeper, with --metadata-url); one bookie
 * (storage under <data-dir>/bookie, RPC on --bookie-port, registered as /bookies/<addr>:<port>);
 * the broker speaking the Pulsar protocol on --broker-port, its topics stored through the
 * bookie client to that bookie (ensemble 1/1/1); and the HTTP server on --http-port with
 * GET /metrics (Prometheus text), GET /admin/v2/brokers/health ("ok", as Pulsar answers) and
 * the admin REST API. The process registers itself as a live broker (ephemeral
 * /brokers/<address>:<http port>). The chat gateway (TCP --chat-tcp-port, WebSocket --chat-ws-port,
 * Job pushes on --chat-push-port) and a chat Job worker run on threads of their own
 * (tools/chat.h, docs/chat_gateway.md), and the admin port serves the chat push API and the chat
 * page (/goim/..., /chat).
 *
 * Life cycle: parse options -> lock the data directory (one process per data directory) ->
 * metadata store -> bookie storage and RPC server (registered) -> bookie client, ledger
 * environment, broker -> HTTP server -> register in /brokers -> one "ready" line naming every
 * port -> run until SIGINT or SIGTERM -> stop in reverse order: HTTP, broker (topics closed:
 * cursors write their state, ledgers close), bookie client, bookie server, bookie storage
 * (write cache flushed), metadata client and store -> exit 0. A second signal while stopping
 * exits at once with status 1. Restart keeps all topics, messages and subscription positions.
 */
#include "tools.h"

#include "chat.h"
#include "node.h"

#include "chat_gateway/limits.h"

#include "common/error.h"
#include "common/log.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct standalone_opts {
    char *data_dir;
    char *metadata_url;
    char *bind_address;
    char *bookie_bind_address;
    char *advertised_address;
    int64_t http_port;
    int64_t broker_port;
    int64_t bookie_port;
    int64_t write_cache_mb;
    int64_t read_cache_mb;
    int64_t journal_segment_mb;
    mg_node_broker_tuning tuning;
    int chat_gateway, chat_job;
    int64_t chat_tcp_port, chat_ws_port, chat_push_port;
    int64_t chat_topics;
    int64_t chat_merge_max_messages, chat_merge_max_ms;
    int log_level;
} standalone_opts;

static const mg_opt standalone_opt_table[] = {
    { .name = "data-dir",
      .short_name = 'd',
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, data_dir),
      .default_value = "./data",
      .metavar = "DIR",
      .help = "directory for all stored data (created if missing; one process per directory)" },
    { .name = "metadata-url",
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, metadata_url),
      .default_value = NULL,
      .metavar = "URL",
      .help = "metadata store: rocksdb:<dir> or zk:host:port[,host:port...][/chroot] "
              "(default: rocksdb:<data-dir>/metadata)" },
    MG_NODE_OPT_BIND_ADDRESS(standalone_opts, bind_address),
    { .name = "bookie-bind-address",
      .type = MG_OPT_STRING,
      .offset = offsetof(standalone_opts, bookie_bind_address),
      .default_value = "127.0.0.1",
      .metavar = "ADDR",
      .help = "IPv4 address the embedded bookie's RPC listens on; the broker reaches the bookie "
              "in process, so by default only this machine can (tools such as `magnetar perf "
              "bookie`)" },
    MG_NODE_OPT_ADVERTISED_ADDRESS(standalone_opts, advertised_address),
    { .name = "broker-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, broker_port),
      .default_value = "6650",
      .metavar = "PORT",
      .help = "port of the Pulsar binary protocol (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "bookie-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, bookie_port),
      .default_value = "3181",
      .metavar = "PORT",
      .help = "port of the embedded bookie's RPC (0 picks a free port the first time and keeps "
              "it in <data-dir>/bookie/port: ledgers name their bookie by address)",
      .min = 0,
      .max = 65535 },
    MG_NODE_OPT_JOURNAL_SEGMENT_MB(standalone_opts, journal_segment_mb),
    { .name = "write-cache-mb",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, write_cache_mb),
      .default_value = "64",
      .metavar = "MB",
      .help = "bookie write cache, both halves together, in MiB",
      .min = 2,
      .max = 65536 },
    { .name = "read-cache-mb",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, read_cache_mb),
      .default_value = "64",
      .metavar = "MB",
      .help = "bookie read cache (read-ahead lands here), in MiB",
      .min = 1,
      .max = 65536 },
    MG_NODE_OPTS_BROKER_TUNING(standalone_opts, tuning),
    MG_NODE_OPT_HTTP_PORT(standalone_opts, http_port),
    { .name = "chat-gateway",
      .type = MG_OPT_ENUM,
      .offset = offsetof(standalone_opts, chat_gateway),
      .default_value = "on",
      .metavar = "on|off",
      .choices = mg_chat_on_off,
      .help = "run the chat gateway (GOIM packets over TCP and WebSocket)" },
    { .name = "chat-job",
      .type = MG_OPT_ENUM,
      .offset = offsetof(standalone_opts, chat_job),
      .default_value = "on",
      .metavar = "on|off",
      .choices = mg_chat_on_off,
      .help = "run a chat Job worker (chat topics to gateways); off when Jobs run as `magnetar "
              "job` processes" },
    { .name = "chat-tcp-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_tcp_port),
      .default_value = "3101",
      .metavar = "PORT",
      .help = "chat gateway: GOIM packets over TCP (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "chat-ws-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_ws_port),
      .default_value = "3102",
      .metavar = "PORT",
      .help = "chat gateway: GOIM packets over WebSocket, path /sub (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "chat-push-port",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_push_port),
      .default_value = "3109",
      .metavar = "PORT",
      .help = "chat gateway: the port Job workers push to (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "chat-topics",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_topics),
      .default_value = "4",
      .metavar = "N",
      .help = "chat topics rooms are spread over (persistent://public/default/chat-<i>)",
      .min = 1,
      .max = CG_CHAT_TOPICS_MAX },
    { .name = "chat-merge-max-messages",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_merge_max_messages),
      .default_value = "20",
      .metavar = "N",
      .help = "chat Job: a room's messages are pushed together once this many wait",
      .min = 1,
      .max = CG_BATCH_PACKETS_MAX },
    { .name = "chat-merge-max-ms",
      .type = MG_OPT_INT,
      .offset = offsetof(standalone_opts, chat_merge_max_ms),
      .default_value = "50",
      .metavar = "MS",
      .help = "chat Job: or once the first of them waited this long (milliseconds)",
      .min = 0,
      .max = 60000 },
    MG_TOOL_OPT_LOG_LEVEL(standalone_opts, log_level),
};

static const mg_cmd_spec standalone_spec = {
    .name = "magnetar standalone",
    .usage = "[options]",
    .summary = "Runs Magnetar in one process: metadata store, bookie, broker (Pulsar protocol) "
               "and HTTP admin, with all data under --data-dir. Stops cleanly on SIGINT or "
               "SIGTERM; a restart on the same --data-dir keeps topics, messages and "
               "subscription positions.",
    .opts = standalone_opt_table,
    .opt_count = sizeof(standalone_opt_table) / sizeof(standalone_opt_table[0]),
    .positional_min = 0,
    .positional_max = 0,
};

int mg_tool_standalone(int argc, char **argv)
{
    standalone_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&standalone_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;

    char url[4200];
    if (o.metadata_url != NULL && o.metadata_url[0] != '\0')
        snprintf(url, sizeof(url), "%s", o.metadata_url);
    else
        snprintf(url, sizeof(url), "rocksdb:%s/metadata", o.data_dir);
    mg_node_bookie_opts bo = {
        .data_dir = o.data_dir,
        .bind_address = o.bookie_bind_address,
        .advertised_address = o.advertised_address,
        .port = o.bookie_port,
        .write_cache_mb = o.write_cache_mb,
        .read_cache_mb = o.read_cache_mb,
        .journal_segment_mb = o.journal_segment_mb,
    };
    mg_chat_opts chat = {
        .gateway = o.chat_gateway == 0,
        .job = o.chat_job == 0,
        .bind_address = o.bind_address,
        .advertised_address = o.advertised_address,
        .tcp_port = o.chat_tcp_port,
        .ws_port = o.chat_ws_port,
        .push_port = o.chat_push_port,
        .topics = o.chat_topics,
        .merge_max_messages = o.chat_merge_max_messages,
        .merge_max_ms = o.chat_merge_max_ms,
    };
    mg_node_opts no = {
        .metadata_url = url,
        .bookie = &bo,
        .broker = { .bind_address = o.bind_address,
                    .advertised_address = o.advertised_address,
                    .port = o.broker_port,
                    .ensemble_size = 1,
                    .write_quorum = 1,
                    .ack_quorum = 1,
                    .cluster = "standalone",
                    .tuning = o.tuning },
        .http_port = o.http_port,
        .chat = &chat,
        .chat_api_topics = o.chat_topics,
    };
    int status = mg_node_serve(standalone_spec.name, &no);
    mg_config_free(&standalone_spec, &o);
    return status;
}
