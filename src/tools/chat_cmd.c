/*
 * `magnetar gateway` and `magnetar job`: a chat gateway, or a chat Job worker, as a process of
 * its own (docs/chat_gateway.md). Both find each other through a shared metadata store
 * (--metadata-url: ZooKeeper, or the RocksDB directory of a process on the same machine is not
 * shareable: use ZooKeeper) and reach the broker with --service-url. Each serves /metrics and a
 * health check on --http-port when one is given. Stops cleanly on SIGINT or SIGTERM.
 */
#include "chat.h"
#include "node.h"
#include "tools.h"

#include "chat_gateway/limits.h"
#include "common/error.h"
#include "common/log.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct chat_cmd_opts {
    char *metadata_url;
    char *service_url;
    char *bind_address;
    char *advertised_address;
    int64_t tcp_port, ws_port, push_port;
    int64_t topics;
    int64_t auth_timeout_ms, idle_timeout_ms;
    int64_t queue_soft_bytes, queue_hard_bytes;
    int64_t buckets;
    int64_t merge_max_messages, merge_max_ms;
    char *subscription;
    char *name;
    int64_t http_port;
    int log_level;
} chat_cmd_opts;

#define OPT_METADATA_URL                                                                     \
    {                                                                                        \
        .name = "metadata-url", .type = MG_OPT_STRING,                                       \
        .offset = offsetof(chat_cmd_opts, metadata_url), .metavar = "URL",                   \
        .help = "metadata store shared with the brokers, gateways and Jobs: "                \
                "zk:host:port[,host:port...][/chroot] (or rocksdb:<dir>, one process only)", \
    }
#define OPT_TOPICS                                                                            \
    {                                                                                         \
        .name = "chat-topics", .type = MG_OPT_INT, .offset = offsetof(chat_cmd_opts, topics), \
        .default_value = "4", .metavar = "N",                                                 \
        .help = "chat topics rooms are spread over (persistent://public/default/chat-<i>); "  \
                "the same on every gateway, Job and broker",                                  \
        .min = 1, .max = CG_CHAT_TOPICS_MAX,                                                  \
    }
#define OPT_METRICS_PORT                                                                        \
    {                                                                                           \
        .name = "http-port", .type = MG_OPT_INT, .offset = offsetof(chat_cmd_opts, http_port),  \
        .default_value = "0", .metavar = "PORT",                                                \
        .help = "serve /metrics and /admin/v2/brokers/health on this port (0: none)", .min = 0, \
        .max = 65535,                                                                           \
    }

static const mg_opt gateway_opt_table[] = {
    OPT_METADATA_URL,
    MG_TOOL_OPT_SERVICE_URL(chat_cmd_opts, service_url),
    MG_NODE_OPT_BIND_ADDRESS(chat_cmd_opts, bind_address),
    MG_NODE_OPT_ADVERTISED_ADDRESS(chat_cmd_opts, advertised_address),
    { .name = "tcp-port",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, tcp_port),
      .default_value = "3101",
      .metavar = "PORT",
      .help = "port of GOIM packets over TCP (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "ws-port",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, ws_port),
      .default_value = "3102",
      .metavar = "PORT",
      .help = "port of GOIM packets over WebSocket, path /sub (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    { .name = "push-port",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, push_port),
      .default_value = "3109",
      .metavar = "PORT",
      .help = "port Job workers push to (proto/chat.proto; 0 picks a free port)",
      .min = 0,
      .max = 65535 },
    OPT_TOPICS,
    { .name = "auth-timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(chat_cmd_opts, auth_timeout_ms),
      .default_value = "5s",
      .metavar = "DURATION",
      .help = "a connection must authenticate (op 7) within this",
      .min = 100,
      .max = 600000 },
    { .name = "idle-timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(chat_cmd_opts, idle_timeout_ms),
      .default_value = "90s",
      .metavar = "DURATION",
      .help = "a connection silent this long (no heartbeat) is closed",
      .min = 1000,
      .max = 86400000 },
    { .name = "queue-soft-bytes",
      .type = MG_OPT_BYTES,
      .offset = offsetof(chat_cmd_opts, queue_soft_bytes),
      .default_value = "256KiB",
      .metavar = "BYTES",
      .help = "per connection: past this many queued bytes the oldest chat messages are dropped",
      .min = 4096,
      .max = 1073741824 },
    { .name = "queue-hard-bytes",
      .type = MG_OPT_BYTES,
      .offset = offsetof(chat_cmd_opts, queue_hard_bytes),
      .default_value = "1MiB",
      .metavar = "BYTES",
      .help = "per connection: past this many queued bytes that cannot be dropped, the "
              "connection is closed (larger than --queue-soft-bytes)",
      .min = 8192,
      .max = 2147483647 },
    { .name = "buckets",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, buckets),
      .default_value = "32",
      .metavar = "N",
      .help = "buckets connections are sharded into by key",
      .min = 1,
      .max = CG_BUCKETS_MAX },
    OPT_METRICS_PORT,
    MG_TOOL_OPT_LOG_LEVEL(chat_cmd_opts, log_level),
};

static const mg_opt job_opt_table[] = {
    OPT_METADATA_URL,
    MG_TOOL_OPT_SERVICE_URL(chat_cmd_opts, service_url),
    OPT_TOPICS,
    { .name = "merge-max-messages",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, merge_max_messages),
      .default_value = "20",
      .metavar = "N",
      .help = "a room's messages are pushed together once this many are waiting",
      .min = 1,
      .max = CG_BATCH_PACKETS_MAX },
    { .name = "merge-max-ms",
      .type = MG_OPT_INT,
      .offset = offsetof(chat_cmd_opts, merge_max_ms),
      .default_value = "50",
      .metavar = "MS",
      .help = "or once the first of them has waited this long (milliseconds)",
      .min = 0,
      .max = 60000 },
    { .name = "subscription",
      .type = MG_OPT_STRING,
      .offset = offsetof(chat_cmd_opts, subscription),
      .default_value = "magnetar-chat-job",
      .metavar = "NAME",
      .help = "the Failover subscription the Jobs share on every chat topic" },
    { .name = "name",
      .type = MG_OPT_STRING,
      .offset = offsetof(chat_cmd_opts, name),
      .default_value = NULL,
      .metavar = "NAME",
      .help = "this Job's name in logs and on the gateways (default: job-<host>-<pid>)" },
    OPT_METRICS_PORT,
    MG_TOOL_OPT_LOG_LEVEL(chat_cmd_opts, log_level),
};

static const mg_cmd_spec gateway_spec = {
    .name = "magnetar gateway",
    .usage = "--metadata-url URL [options]",
    .summary = "Runs a chat gateway: holds chat clients' connections (GOIM packets over TCP "
               "and WebSocket, GOIM's and Bilibili's auth), rooms and heartbeats, and delivers "
               "what Job workers push to it. Registers in the metadata store so Jobs find it.",
    .opts = gateway_opt_table,
    .opt_count = sizeof(gateway_opt_table) / sizeof(gateway_opt_table[0]),
};

static const mg_cmd_spec job_spec = {
    .name = "magnetar job",
    .usage = "--metadata-url URL [options]",
    .summary = "Runs a chat Job worker: consumes the chat topics (Failover subscription), merges "
               "messages per room and pushes them to the gateways holding the room's members; a "
               "message is acknowledged once every gateway took it.",
    .opts = job_opt_table,
    .opt_count = sizeof(job_opt_table) / sizeof(job_opt_table[0]),
};

static int chat_cmd_run(const mg_cmd_spec *spec, chat_cmd_opts *o, bool gateway)
{
    mg_chat_opts co = {
        .gateway = gateway,
        .job = !gateway,
        .bind_address = o->bind_address,
        .advertised_address = o->advertised_address,
        .tcp_port = o->tcp_port,
        .ws_port = o->ws_port,
        .push_port = o->push_port,
        .service_url = o->service_url,
        .topics = o->topics,
        .merge_max_messages = o->merge_max_messages,
        .merge_max_ms = o->merge_max_ms,
        .auth_timeout_ms = o->auth_timeout_ms,
        .idle_timeout_ms = o->idle_timeout_ms,
        .queue_soft_bytes = o->queue_soft_bytes,
        .queue_hard_bytes = o->queue_hard_bytes,
        .buckets = o->buckets,
        .subscription = o->subscription,
        .job_name = o->name,
    };
    if (o->metadata_url == NULL || o->metadata_url[0] == '\0')
        return mg_tool_usage_error(spec, o,
                                   "--metadata-url is required: the store the brokers, "
                                   "gateways and Jobs share");
    if (gateway && o->queue_soft_bytes >= o->queue_hard_bytes)
        return mg_tool_usage_error(spec, o,
                                   "--queue-hard-bytes must be larger than "
                                   "--queue-soft-bytes");
    mg_node n;
    mg_chat chat;
    memset(&chat, 0, sizeof(chat));
    int status = MG_EXIT_FAILURE;
    if (mg_node_init(&n) != MG_OK || mg_node_open_metadata(&n, o->metadata_url) != MG_OK ||
        (o->http_port > 0 &&
         mg_node_start_http(&n, gateway ? o->bind_address : "0.0.0.0", o->http_port) != MG_OK))
        goto out;
    n.chat = &chat;
    if (mg_chat_start(&chat, n.md, n.metrics, &co) != MG_OK)
        goto out;
    if (gateway)
        MG_INFO("%s %s ready: TCP %s:%u, WebSocket ws://%s:%u/sub, push %s:%u", spec->name,
                MG_VERSION, o->bind_address, (unsigned)mg_chat_gateway_port(&chat, 0),
                o->advertised_address, (unsigned)mg_chat_gateway_port(&chat, 1),
                o->advertised_address, (unsigned)mg_chat_gateway_port(&chat, 2));
    else
        MG_INFO("%s %s ready: consuming %lld chat topics from %s", spec->name, MG_VERSION,
                (long long)o->topics, o->service_url);
    mg_node_run(&n);
    MG_INFO("%s stopped", spec->name);
    status = MG_EXIT_OK;
out:
    mg_chat_stop(&chat);
    n.chat = NULL;
    mg_node_cleanup(&n);
    return status;
}

int mg_tool_gateway(int argc, char **argv)
{
    chat_cmd_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&gateway_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    int status = chat_cmd_run(&gateway_spec, &o, true);
    mg_config_free(&gateway_spec, &o);
    return status;
}

int mg_tool_job(int argc, char **argv)
{
    chat_cmd_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&job_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    int status = chat_cmd_run(&job_spec, &o, false);
    mg_config_free(&job_spec, &o);
    return status;
}
