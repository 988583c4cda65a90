/*
 * `magnetar client produce` and `magnetar client consume`: a command-line producer and consumer
 * with the flags and output of `pulsar-client` (../shared/REFERENCE.md §1), on Magnetar's C
 * client (client/client.h).
 *
 *   magnetar client produce TOPIC -m msg[,msg...] [-n N] [-r rate] [-p k=v]... [-k key]
 *     sends every message of -m, N times over, at most rate messages per second (0: no limit);
 *     prints "N messages successfully produced" (or the error) as pulsar-client does.
 *   magnetar client consume TOPIC -s sub [-t Exclusive|Shared|Failover|Key_Shared]
 *     [-p Earliest|Latest] [-n N]
 *     receives N messages (0: until SIGINT), acknowledging each, and prints for each
 *       ----- got message -----
 *       key:[k], properties:[a=1, b=2], content:payload
 *     then "N messages successfully consumed".
 * Every wait is bounded by --timeout (subscribe, lookup, sends) unless N is 0 for consume.
 */
#include "client/client.h"
#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "tools.h"
#include "tools/limits.h"

#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- produce ---------------------------------------------------------------------------------- */

typedef struct cli_produce_opts {
    char *service_url;
    char *messages;
    int64_t num_produce;
    int64_t rate;
    char *properties;
    char *key;
    int64_t timeout_ms;
    int log_level;
} cli_produce_opts;

static const mg_opt cli_produce_opt_table[] = {
    MG_TOOL_OPT_SERVICE_URL(cli_produce_opts, service_url),
    { .name = "messages",
      .short_name = 'm',
      .type = MG_OPT_STRING,
      .offset = offsetof(cli_produce_opts, messages),
      .default_value = NULL,
      .metavar = "MSG[,MSG...]",
      .help = "comma-separated messages to send (required)" },
    { .name = "num-produce",
      .short_name = 'n',
      .type = MG_OPT_INT,
      .offset = offsetof(cli_produce_opts, num_produce),
      .default_value = "1",
      .metavar = "N",
      .help = "send the messages this many times",
      .min = 1,
      .max = 100000000 },
    { .name = "rate",
      .short_name = 'r',
      .type = MG_OPT_INT,
      .offset = offsetof(cli_produce_opts, rate),
      .default_value = "0",
      .metavar = "MSG/S",
      .help = "messages per second at most (0: no limit)",
      .min = 0,
      .max = 10000000 },
    { .name = "property",
      .short_name = 'p',
      .type = MG_OPT_STRING,
      .offset = offsetof(cli_produce_opts, properties),
      .default_value = NULL,
      .metavar = "K=V[,K=V...]",
      .help = "properties of every message" },
    { .name = "key",
      .short_name = 'k',
      .type = MG_OPT_STRING,
      .offset = offsetof(cli_produce_opts, key),
      .default_value = NULL,
      .metavar = "KEY",
      .help = "partition key of every message" },
    { .name = "timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(cli_produce_opts, timeout_ms),
      .default_value = "30s",
      .metavar = "DURATION",
      .help = "give up when the broker does not answer within this",
      .min = 100,
      .max = 3600000 },
    MG_TOOL_OPT_LOG_LEVEL(cli_produce_opts, log_level),
};

static const mg_cmd_spec cli_produce_spec = {
    .name = "magnetar client produce",
    .usage = "TOPIC -m MSG[,MSG...] [options]",
    .summary = "Sends messages to a topic, as pulsar-client produce.",
    .opts = cli_produce_opt_table,
    .opt_count = sizeof(cli_produce_opt_table) / sizeof(cli_produce_opt_table[0]),
    .positional_min = 1,
    .positional_max = 1,
};

/* --- consume ---------------------------------------------------------------------------------- */

typedef struct cli_consume_opts {
    char *service_url;
    char *subscription;
    int sub_type;
    int position;
    int64_t num_messages;
    int64_t timeout_ms;
    int log_level;
} cli_consume_opts;

static const mg_opt cli_consume_opt_table[] = {
    MG_TOOL_OPT_SERVICE_URL(cli_consume_opts, service_url),
    { .name = "subscription-name",
      .short_name = 's',
      .type = MG_OPT_STRING,
      .offset = offsetof(cli_consume_opts, subscription),
      .default_value = NULL,
      .metavar = "SUB",
      .help = "subscription name (required)" },
    MG_TOOL_OPT_SUB_TYPE(cli_consume_opts, sub_type, 't'),
    MG_TOOL_OPT_SUB_POSITION(cli_consume_opts, position, 'p'),
    { .name = "num-messages",
      .short_name = 'n',
      .type = MG_OPT_INT,
      .offset = offsetof(cli_consume_opts, num_messages),
      .default_value = "1",
      .metavar = "N",
      .help = "messages to receive (0: until interrupted)",
      .min = 0,
      .max = 100000000 },
    { .name = "timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(cli_consume_opts, timeout_ms),
      .default_value = "30s",
      .metavar = "DURATION",
      .help = "give up when subscribing, or waiting for the next message, takes longer (not "
              "with -n 0)",
      .min = 100,
      .max = 86400000 },
    MG_TOOL_OPT_LOG_LEVEL(cli_consume_opts, log_level),
};

static const mg_cmd_spec cli_consume_spec = {
    .name = "magnetar client consume",
    .usage = "TOPIC -s SUB [options]",
    .summary = "Receives and acknowledges messages of a topic, printing each, as pulsar-client "
               "consume.",
    .opts = cli_consume_opt_table,
    .opt_count = sizeof(cli_consume_opt_table) / sizeof(cli_consume_opt_table[0]),
    .positional_min = 1,
    .positional_max = 1,
};

/* --- shared
 * ---------------------------------------------------------------------------------------- */

typedef struct cli_run {
    uv_loop_t loop;
    uv_timer_t timer;
    uv_signal_t sigint;
    pc_client *client;
    pc_producer *producer;
    pc_consumer *consumer;
    int status;
    bool done;
    /* produce */
    char *msgs[CLI_MESSAGES_MAX];
    size_t msg_count;
    pc_property props[CLI_PROPERTIES_MAX];
    size_t prop_count;
    const cli_produce_opts *po;
    int64_t to_send, issued, acked, failed;
    uint64_t start_ms;
    /* consume */
    const cli_consume_opts *co;
    int64_t received;
    uint64_t last_activity_ms;
} cli_run;

static void cli_client_closed(void *arg)
{
    cli_run *r = arg;
    r->client = NULL;
    uv_close((uv_handle_t *)&r->timer, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
}

static void cli_handle_closed(int status, void *arg)
{
    (void)status;
    cli_run *r = arg;
    if (r->client != NULL)
        pc_client_close(r->client, cli_client_closed, r);
}

static void cli_finish(cli_run *r, int status)
{
    if (r->done)
        return;
    r->done = true;
    r->status = status;
    uv_timer_stop(&r->timer);
    if (r->producer != NULL) {
        pc_producer_close(r->producer, cli_handle_closed, r);
        r->producer = NULL;
    } else if (r->consumer != NULL) {
        pc_consumer_close(r->consumer, cli_handle_closed, r);
        r->consumer = NULL;
    } else if (r->client != NULL) {
        pc_client_close(r->client, cli_client_closed, r);
    }
}

static void cli_on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    cli_run *r = h->data;
    cli_finish(r, r->co != NULL ? MG_OK : MG_ECANCELED);
}

static int cli_setup(cli_run *r, const char *url)
{
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->timer);
    uv_signal_init(&r->loop, &r->sigint);
    r->timer.data = r->sigint.data = r;
    uv_signal_start(&r->sigint, cli_on_sigint, SIGINT);
    pc_client_opts co = { .service_url = url };
    int rc = pc_client_create(&r->loop, &co, &r->client);
    if (rc != MG_OK)
        fprintf(stderr, "cannot create a client for %s: %s\n", url, mg_strerror(rc));
    return rc;
}

static void cli_teardown(cli_run *r)
{
    if (r->client != NULL && !r->done)
        cli_finish(r, r->status);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    mg_tool_loop_close(&r->loop);
}

/* Splits s at commas in place into out[0 .. max); returns the count, or -1 when more. */
static int split_commas(char *s, char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n == max)
            return -1;
        out[n++] = tok;
    }
    return (int)n;
}

/* --- produce ------------------------------------------------------------------------------------
 */

static void cli_pump(cli_run *r);

static void cli_sent(int status, const pc_message_id *id, void *arg)
{
    (void)id;
    cli_run *r = arg;
    if (status == MG_OK) {
        r->acked++;
    } else {
        r->failed++;
        if (r->failed == 1)
            fprintf(stderr, "a message was not produced: %s%s%s\n", mg_strerror(status),
                    r->client && pc_last_error(r->client)[0] ? ": " : "",
                    r->client ? pc_last_error(r->client) : "");
    }
    if (r->acked + r->failed == r->to_send)
        cli_finish(r, r->failed == 0 ? MG_OK : MG_EIO);
    else
        cli_pump(r);
}

static void cli_pump(cli_run *r)
{
    if (r->done || r->producer == NULL)
        return;
    int64_t allowed = r->to_send;
    if (r->po->rate > 0) {
        uint64_t elapsed = uv_now(&r->loop) - r->start_ms;
        allowed = (int64_t)((double)elapsed * (double)r->po->rate / 1000.0) + 1;
        if (allowed > r->to_send)
            allowed = r->to_send;
    }
    while (r->issued < allowed) {
        const char *m = r->msgs[(size_t)(r->issued % (int64_t)r->msg_count)];
        pc_message msg = { .payload = m,
                           .payload_len = strlen(m),
                           .key = r->po->key,
                           .properties = r->props,
                           .property_count = r->prop_count };
        int rc = pc_send(r->producer, &msg, cli_sent, r);
        if (rc == MG_EAGAIN)
            break; /* the pending queue is full: the next callback pumps again */
        if (rc != MG_OK) {
            fprintf(stderr, "cannot send: %s\n", mg_strerror(rc));
            cli_finish(r, rc);
            return;
        }
        r->issued++;
    }
}

static void cli_produce_tick(uv_timer_t *t)
{
    cli_run *r = t->data;
    cli_pump(r);
}

static void cli_producer_created(int status, pc_producer *p, void *arg)
{
    cli_run *r = arg;
    if (status != MG_OK) {
        fprintf(stderr, "cannot create a producer on the topic: %s%s%s\n", mg_strerror(status),
                pc_last_error(r->client)[0] ? ": " : "", pc_last_error(r->client));
        cli_finish(r, status);
        return;
    }
    r->producer = p;
    r->start_ms = uv_now(&r->loop);
    if (r->po->rate > 0)
        uv_timer_start(&r->timer, cli_produce_tick, 1, 1);
    cli_pump(r);
}

int mg_client_produce(int argc, char **argv);
int mg_client_produce(int argc, char **argv)
{
    cli_produce_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&cli_produce_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    if (o.messages == NULL || o.messages[0] == '\0')
        return mg_tool_usage_error(&cli_produce_spec, &o, "-m/--messages is required");
    cli_run *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_EXIT_FAILURE;
    int status = MG_EXIT_USAGE;
    r->po = &o;
    char *props_copy = NULL;
    int n = split_commas(o.messages, r->msgs, CLI_MESSAGES_MAX);
    if (n <= 0) {
        fprintf(stderr, "magnetar client produce: -m needs 1 to %d non-empty messages\n",
                CLI_MESSAGES_MAX);
        goto out_free;
    }
    r->msg_count = (size_t)n;
    if (o.properties != NULL) {
        char *kv[CLI_PROPERTIES_MAX];
        int pn = split_commas(o.properties, kv, CLI_PROPERTIES_MAX);
        if (pn < 0) {
            fprintf(stderr, "magnetar client produce: at most %d properties\n", CLI_PROPERTIES_MAX);
            goto out_free;
        }
        for (int i = 0; i < pn; i++) {
            char *eq = strchr(kv[i], '=');
            if (eq == NULL || eq == kv[i]) {
                fprintf(stderr, "magnetar client produce: property '%s' is not key=value\n", kv[i]);
                goto out_free;
            }
            *eq = '\0';
            r->props[r->prop_count].key = kv[i];
            r->props[r->prop_count].value = eq + 1;
            r->prop_count++;
        }
    }
    r->to_send = o.num_produce * (int64_t)r->msg_count;
    status = MG_EXIT_FAILURE;
    if (cli_setup(r, o.service_url) != MG_OK)
        goto out;
    pc_producer_opts po = { .topic = res.positional[0], .send_timeout_ms = (uint32_t)o.timeout_ms };
    int rc = pc_producer_create(r->client, &po, cli_producer_created, r);
    if (rc != MG_OK) {
        if (rc == MG_EINVAL)
            fprintf(stderr, "cannot create a producer: '%s' is not a valid topic name\n",
                    res.positional[0]);
        else
            fprintf(stderr, "cannot create a producer on '%s': %s\n", res.positional[0],
                    mg_strerror(rc));
        cli_finish(r, rc);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (r->status == MG_OK)
        printf("%" PRId64 " messages successfully produced\n", r->acked);
    else
        fprintf(stderr, "%" PRId64 " messages produced, %" PRId64 " failed\n", r->acked,
                r->to_send - r->acked);
    status = r->status == MG_OK ? MG_EXIT_OK : MG_EXIT_FAILURE;
out:
    cli_teardown(r);
out_free:
    mg_free(props_copy);
    mg_free(r);
    mg_config_free(&cli_produce_spec, &o);
    return status;
}

/* --- consume ------------------------------------------------------------------------------------
 */

static void print_bytes(const void *p, size_t len)
{
    fwrite(p, 1, len, stdout);
}

static void cli_on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    cli_run *r = arg;
    if (r->done)
        return;
    r->last_activity_ms = uv_now(&r->loop);
    printf("----- got message -----\nkey:[");
    if (m->key != NULL)
        print_bytes(m->key, m->key_len);
    else
        printf("null");
    printf("], properties:[");
    for (size_t i = 0; i < m->property_count; i++)
        printf("%s%s=%s", i ? ", " : "", m->properties[i].key, m->properties[i].value);
    printf("], content:");
    print_bytes(m->payload, m->payload_len);
    printf("\n");
    fflush(stdout);
    int rc = pc_ack(k, &m->id);
    if (rc != MG_OK)
        fprintf(stderr, "cannot acknowledge: %s\n", mg_strerror(rc));
    r->received++;
    if (r->co->num_messages > 0 && r->received >= r->co->num_messages)
        cli_finish(r, MG_OK);
}

static void cli_consume_tick(uv_timer_t *t)
{
    cli_run *r = t->data;
    if (r->co->num_messages > 0 &&
        uv_now(&r->loop) - r->last_activity_ms >= (uint64_t)r->co->timeout_ms) {
        fprintf(stderr, "no message within %" PRId64 " ms\n", r->co->timeout_ms);
        cli_finish(r, MG_ETIMEDOUT);
    }
}

static void cli_subscribed(int status, pc_consumer *k, void *arg)
{
    cli_run *r = arg;
    if (status != MG_OK) {
        fprintf(stderr, "cannot subscribe: %s%s%s\n", mg_strerror(status),
                pc_last_error(r->client)[0] ? ": " : "", pc_last_error(r->client));
        cli_finish(r, status);
        return;
    }
    r->consumer = k;
    r->last_activity_ms = uv_now(&r->loop);
    uv_timer_start(&r->timer, cli_consume_tick, 100, 100);
}

int mg_client_consume(int argc, char **argv);
int mg_client_consume(int argc, char **argv)
{
    cli_consume_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&cli_consume_spec, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    if (o.subscription == NULL || o.subscription[0] == '\0')
        return mg_tool_usage_error(&cli_consume_spec, &o, "-s/--subscription-name is required");
    cli_run *r = mg_calloc(1, sizeof(*r));
    if (r == NULL)
        return MG_EXIT_FAILURE;
    r->co = &o;
    int status = MG_EXIT_FAILURE;
    if (cli_setup(r, o.service_url) != MG_OK)
        goto out;
    pc_consumer_opts co = {
        .topic = res.positional[0],
        .subscription = o.subscription,
        .type = (pc_sub_type)o.sub_type,
        .initial_position = (pc_initial_position)o.position,
        .on_message = cli_on_message,
        .arg = r,
    };
    int rc = pc_subscribe(r->client, &co, cli_subscribed, r);
    if (rc != MG_OK) {
        if (rc == MG_EINVAL)
            fprintf(stderr,
                    "cannot subscribe: '%s' is not a valid topic name, or '%s' not a "
                    "valid subscription name\n",
                    res.positional[0], o.subscription);
        else
            fprintf(stderr, "cannot subscribe to '%s': %s\n", res.positional[0], mg_strerror(rc));
        cli_finish(r, rc);
    } else {
        /* Subscribing itself is bounded too. */
        r->last_activity_ms = uv_now(&r->loop);
        uv_timer_start(&r->timer, cli_consume_tick, 100, 100);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (r->status == MG_OK)
        printf("%" PRId64 " messages successfully consumed\n", r->received);
    status = r->status == MG_OK ? MG_EXIT_OK : MG_EXIT_FAILURE;
out:
    cli_teardown(r);
    mg_free(r);
    mg_config_free(&cli_consume_spec, &o);
    return status;
}

/* --- dispatch
 * ------------------------------------------------------------------------------------- */

int mg_tool_client(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "Usage: magnetar client produce|consume TOPIC [options]\n\n"
                     "Command-line producer and consumer, as pulsar-client:\n"
                     "  produce   send messages (-m msg[,msg] -n N -r rate -p k=v -k key)\n"
                     "  consume   receive and acknowledge messages (-s sub -t type -p position "
                     "-n N)\n\n"
                     "'magnetar client <action> --help' lists every option.\n");
        return argc < 2 ? MG_EXIT_USAGE : MG_EXIT_OK;
    }
    if (strcmp(argv[1], "produce") == 0)
        return mg_client_produce(argc - 1, argv + 1);
    if (strcmp(argv[1], "consume") == 0)
        return mg_client_consume(argc - 1, argv + 1);
    fprintf(stderr, "magnetar client: unknown action '%s' (produce or consume)\n", argv[1]);
    return MG_EXIT_USAGE;
}
