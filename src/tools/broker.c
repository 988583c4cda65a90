/*
 * `magnetar broker`: a stateless broker (../shared/ARCHITECTURE.md §2, §9). It keeps nothing on
 * local disk: topics live in ledgers on the bookies registered under /bookies in the shared
 * metadata store (ZooKeeper in a cluster), and ownership of topic bundles is claimed there
 * with ephemeral nodes, so a LOOKUP on any broker answers Connect (it owns the topic's bundle)
 * or Redirect (to the broker that does). Serves the Pulsar protocol on --port and /metrics,
 * health and the admin API on --http-port; registered as /brokers/<address>:<http port>.
 * Stops cleanly on SIGINT or SIGTERM (topics closed, cursors written, ownership released).
 */
#include "node.h"

#include "common/error.h"
#include "common/log.h"
#include "tools.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct broker_opts {
    char *metadata_url;
    char *bind_address;
    char *advertised_address;
    int64_t port;
    int64_t http_port;
    int64_t ensemble_size;
    int64_t write_quorum;
    int64_t ack_quorum;
    mg_node_broker_tuning tuning;
    char *cluster;
    int log_level;
} broker_opts;

static const mg_opt broker_opt_table[] = {
    { .name = "metadata-url",
      .type = MG_OPT_STRING,
      .offset = offsetof(broker_opts, metadata_url),
      .default_value = NULL,
      .metavar = "URL",
      .help = "metadata store shared with the bookies and the other brokers: "
              "zk:host:port[,host:port...][/chroot] (or rocksdb:<dir> for a single machine); "
              "required" },
    MG_NODE_OPT_BIND_ADDRESS(broker_opts, bind_address),
    MG_NODE_OPT_ADVERTISED_ADDRESS(broker_opts, advertised_address),
    { .name = "port",
      .short_name = 'p',
      .type = MG_OPT_INT,
      .offset = offsetof(broker_opts, port),
      .default_value = "6650",
      .metavar = "PORT",
      .help = "port of the Pulsar binary protocol (0 picks a free port)",
      .min = 0,
      .max = 65535 },
    MG_NODE_OPT_HTTP_PORT(broker_opts, http_port),
    { .name = "ensemble-size",
      .type = MG_OPT_INT,
      .offset = offsetof(broker_opts, ensemble_size),
      .default_value = "3",
      .metavar = "N",
      .help = "bookies each ledger is striped over",
      .min = 1,
      .max = 64 },
    { .name = "write-quorum",
      .type = MG_OPT_INT,
      .offset = offsetof(broker_opts, write_quorum),
      .default_value = "3",
      .metavar = "N",
      .help = "bookies each entry is written to (at most --ensemble-size)",
      .min = 1,
      .max = 64 },
    { .name = "ack-quorum",
      .type = MG_OPT_INT,
      .offset = offsetof(broker_opts, ack_quorum),
      .default_value = "2",
      .metavar = "N",
      .help = "bookies that must confirm an entry before the producer is answered (at most "
              "--write-quorum)",
      .min = 1,
      .max = 64 },
    MG_NODE_OPTS_BROKER_TUNING(broker_opts, tuning),
    { .name = "cluster",
      .type = MG_OPT_STRING,
      .offset = offsetof(broker_opts, cluster),
      .default_value = "magnetar",
      .metavar = "NAME",
      .help = "cluster name, the `cluster` label of the metrics" },
    MG_TOOL_OPT_LOG_LEVEL(broker_opts, log_level),
};

static const mg_cmd_spec broker_spec = {
    .name = "magnetar broker",
    .usage = "--metadata-url URL [options]",
    .summary = "Runs a stateless broker: the Pulsar protocol and the admin API, with topics "
               "stored on the bookies registered in the metadata store. Stops cleanly on "
               "SIGINT or SIGTERM.",
    .opts = broker_opt_table,
    .opt_count = sizeof(broker_opt_table) / sizeof(broker_opt_table[0]),
    .positional_min = 0,
    .positional_max = 0,
};

int mg_tool_broker(int argc, char **argv)
{
    broker_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&broker_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    if (o.metadata_url == NULL || o.metadata_url[0] == '\0')
        return mg_tool_usage_error(&broker_spec, &o,
                                   "--metadata-url is required (e.g. zk:127.0.0.1:2181)");
    if (o.write_quorum > o.ensemble_size || o.ack_quorum > o.write_quorum)
        return mg_tool_usage_error(
            &broker_spec, &o,
            "need ack-quorum <= write-quorum <= ensemble-size (got %lld/%lld/%lld)",
            (long long)o.ensemble_size, (long long)o.write_quorum, (long long)o.ack_quorum);
    mg_node_opts no = {
        .metadata_url = o.metadata_url,
        .broker = { .bind_address = o.bind_address,
                    .advertised_address = o.advertised_address,
                    .port = o.port,
                    .ensemble_size = (int)o.ensemble_size,
                    .write_quorum = (int)o.write_quorum,
                    .ack_quorum = (int)o.ack_quorum,
                    .cluster = o.cluster,
                    .tuning = o.tuning },
        .http_port = o.http_port,
    };
    int status = mg_node_serve(broker_spec.name, &no);
    mg_config_free(&broker_spec, &o);
    return status;
}
