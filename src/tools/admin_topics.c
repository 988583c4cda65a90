/*
 * `magnetar admin topics ...`: pulsar-admin's topic commands over the broker's
 * /admin/v2/persistent/... routes (src/broker/admin.c). TOPIC is persistent://tenant/ns/name,
 * tenant/ns/name or a short name (persistent://public/default/name).
 *
 * peek-messages asks for positions 1..count (GET .../subscription/{sub}/position/{n}) as
 * pulsar-admin does, and splits batch entries into their messages itself (src/pulsar's batch
 * reader); it stops early, without error, when the backlog holds fewer entries.
 * offload computes the message id to offload up to from the internal stats (every ledger but
 * the newest ones holding --size-threshold bytes), as pulsar-admin does, then asks the broker.
 */
#include "admin_rest.h"

#include "pulsar/wire.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH_BYTES 2048

/* ---- options --------------------------------------------------------------------------------- */

#define OPT_SUB                                                           \
    {                                                                     \
        .name = "subscription", .short_name = 's', .type = MG_OPT_STRING, \
        .offset = offsetof(adm_opts, subscription), .metavar = "NAME",    \
        .help = "the subscription (required)"                             \
    }
#define OPT_FORCE(what)                                                             \
    {                                                                               \
        .name = "force", .short_name = 'f', .type = MG_OPT_BOOL,                    \
        .offset = offsetof(adm_opts, force), .default_value = "false", .help = what \
    }
#define OPT_COUNT(def, what)                                                                     \
    {                                                                                            \
        .name = "count", .short_name = 'n', .type = MG_OPT_INT,                                  \
        .offset = offsetof(adm_opts, count), .default_value = def, .metavar = "N", .help = what, \
        .min = -1, .max = INT64_MAX                                                              \
    }

static const mg_opt o_plain[] = { ADM_OPT_GLOBALS };
static const mg_opt o_delete[] = {
    ADM_OPT_GLOBALS, OPT_FORCE("delete even while producers or consumers are connected")
};
static const mg_opt o_partitioned[] = {
    ADM_OPT_GLOBALS,
    { .name = "partitions",
      .short_name = 'p',
      .type = MG_OPT_INT,
      .offset = offsetof(adm_opts, partitions),
      .default_value = "0",
      .metavar = "N",
      .help = "the number of partitions (required, at least 1)" },
};
static const mg_opt o_create_sub[] = {
    ADM_OPT_GLOBALS,
    OPT_SUB,
    { .name = "messageId",
      .short_name = 'm',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, message_id),
      .default_value = "latest",
      .metavar = "ID",
      .help = "where it starts: latest, earliest or ledgerId:entryId (the first message read)" },
};
static const mg_opt o_unsubscribe[] = { ADM_OPT_GLOBALS, OPT_SUB,
                                        OPT_FORCE("delete even while consumers are connected") };
static const mg_opt o_reset[] = {
    ADM_OPT_GLOBALS,
    OPT_SUB,
    { .name = "time",
      .short_name = 't',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, time),
      .metavar = "TIME",
      .help = "go back this far in time: 10m, 3h, 2d, 1w (bare: minutes, as pulsar-admin)" },
    { .name = "messageId",
      .short_name = 'm',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, message_id),
      .metavar = "ID",
      .help = "go to this message, ledgerId:entryId (or earliest, latest)" },
};
static const mg_opt o_skip[] = { ADM_OPT_GLOBALS, OPT_SUB,
                                 OPT_COUNT("-1", "the number of messages to skip (required)") };
static const mg_opt o_sub_only[] = { ADM_OPT_GLOBALS, OPT_SUB };
static const mg_opt o_peek[] = { ADM_OPT_GLOBALS, OPT_SUB,
                                 OPT_COUNT("1", "the number of entries to peek at") };
static const mg_opt o_offload[] = {
    ADM_OPT_GLOBALS,
    { .name = "size-threshold",
      .short_name = 's',
      .type = MG_OPT_STRING,
      .offset = offsetof(adm_opts, size_threshold),
      .metavar = "SIZE",
      .help = "keep this much of the newest data on the bookies and offload the rest: 10M, 1G "
              "(required)" },
};

#define OPTS(t) .opts = t, .opt_count = sizeof(t) / sizeof(t[0])

/* ---- helpers --------------------------------------------------------------------------------- */

/* The topic path, plus "/subscription/<sub>" when sub is not NULL. Prints why on failure. */
static bool topic_sub_path(const mg_cmd_spec *spec, const char *topic, const char *sub, char *path,
                           size_t cap)
{
    if (!adm_topic_path(spec, topic, path, cap))
        return false;
    if (sub != NULL) {
        size_t len = strlen(path);
        snprintf(path + len, cap - len, "/subscription");
        if (!adm_path_add(path, cap, sub)) {
            adm_usage(spec, "the subscription name is too long");
            return false;
        }
    }
    return true;
}

static bool need_sub(const mg_cmd_spec *spec, const adm_opts *o)
{
    if (o->subscription != NULL && o->subscription[0] != '\0')
        return true;
    adm_usage(spec, "--subscription (-s) is required");
    return false;
}

/* Parses latest, earliest or L:E into a MessageIdImpl JSON object; NULL (reason printed) when
 * it is none of them. */
static json_t *message_id_json(const mg_cmd_spec *spec, const char *text)
{
    int64_t l, e;
    if (strcmp(text, "latest") == 0) {
        l = INT64_MAX;
        e = INT64_MAX;
    } else if (strcmp(text, "earliest") == 0) {
        l = -1;
        e = -1;
    } else {
        char tail;
        if (sscanf(text, "%" SCNd64 ":%" SCNd64 "%c", &l, &e, &tail) != 2 || l < 0 || e < 0) {
            adm_usage(spec, "'%s' is not a message id: latest, earliest or ledgerId:entryId", text);
            return NULL;
        }
    }
    return json_pack("{s:I,s:I,s:i}", "ledgerId", (json_int_t)l, "entryId", (json_int_t)e,
                     "partitionIndex", -1);
}

/* ---- tables ---------------------------------------------------------------------------------- */

static void topics_table(const json_t *j)
{
    adm_print_list(j, "TOPIC");
}

static void subs_table(const json_t *j)
{
    adm_print_list(j, "SUBSCRIPTION");
}

static char *num_cell(const json_t *o, const char *key)
{
    return adm_cell(json_object_get(o, key));
}

/* Stats: the topic's counters as FIELD/VALUE, then its publishers and subscriptions. */
static void stats_table(const json_t *j)
{
    adm_table t;
    adm_table_init(&t, 2, "FIELD", "VALUE");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (json_is_array(v)) {
            char n[32];
            snprintf(n, sizeof(n), "%zu", json_array_size(v));
            adm_table_row(&t, key, n);
        } else if (json_is_object(v)) {
            char n[32];
            snprintf(n, sizeof(n), "%zu", json_object_size(v));
            adm_table_row(&t, key, n);
        } else {
            char *c = adm_cell(v);
            adm_table_row(&t, key, c);
            free(c);
        }
    }
    adm_table_print(&t);
    json_t *pubs = json_object_get(j, "publishers");
    if (json_array_size(pubs) > 0) {
        printf("\n");
        adm_table_init(&t, 4, "PRODUCER", "ADDRESS", "MSG_IN", "RATE_IN");
        for (size_t i = 0; i < json_array_size(pubs); i++) {
            json_t *p = json_array_get(pubs, i);
            char *name = num_cell(p, "producerName"), *addr = num_cell(p, "address"),
                 *in = num_cell(p, "msgInCounter"), *rate = num_cell(p, "msgRateIn");
            adm_table_row(&t, name, addr, in, rate);
            free(name);
            free(addr);
            free(in);
            free(rate);
        }
        adm_table_print(&t);
    }
    json_t *subs = json_object_get(j, "subscriptions");
    if (json_object_size(subs) > 0) {
        printf("\n");
        adm_table_init(&t, 6, "SUBSCRIPTION", "TYPE", "BACKLOG", "UNACKED", "CONSUMERS",
                       "RATE_OUT");
        json_object_foreach(subs, key, v)
        {
            char *type = num_cell(v, "type"), *backlog = num_cell(v, "msgBacklog"),
                 *unacked = num_cell(v, "unackedMessages"), *rate = num_cell(v, "msgRateOut");
            char consumers[32];
            snprintf(consumers, sizeof(consumers), "%zu",
                     json_array_size(json_object_get(v, "consumers")));
            adm_table_row(&t, key, type, backlog, unacked, consumers, rate);
            free(type);
            free(backlog);
            free(unacked);
            free(rate);
        }
        adm_table_print(&t);
    }
}

/* Internal stats: the ledger's fields, then its ledgers and cursors. */
static void internal_stats_table(const json_t *j)
{
    adm_table t;
    adm_table_init(&t, 2, "FIELD", "VALUE");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (json_is_array(v) || json_is_object(v))
            continue;
        char *c = adm_cell(v);
        adm_table_row(&t, key, c);
        free(c);
    }
    adm_table_print(&t);
    json_t *ledgers = json_object_get(j, "ledgers");
    if (json_array_size(ledgers) > 0) {
        printf("\n");
        adm_table_init(&t, 3, "LEDGER", "ENTRIES", "SIZE");
        for (size_t i = 0; i < json_array_size(ledgers); i++) {
            json_t *l = json_array_get(ledgers, i);
            char *id = num_cell(l, "ledgerId"), *n = num_cell(l, "entries"),
                 *size = num_cell(l, "size");
            adm_table_row(&t, id, n, size);
            free(id);
            free(n);
            free(size);
        }
        adm_table_print(&t);
    }
    json_t *cursors = json_object_get(j, "cursors");
    if (json_object_size(cursors) > 0) {
        printf("\n");
        adm_table_init(&t, 4, "CURSOR", "MARK_DELETE", "READ_POSITION", "ACKED_RANGES");
        json_object_foreach(cursors, key, v)
        {
            char *md = num_cell(v, "markDeletePosition"), *rd = num_cell(v, "readPosition"),
                 *ranges = num_cell(v, "individuallyDeletedMessages");
            adm_table_row(&t, key, md, rd, ranges);
            free(md);
            free(rd);
            free(ranges);
        }
        adm_table_print(&t);
    }
}

static void message_id_table(const json_t *j)
{
    adm_table t;
    adm_table_init(&t, 1, "MESSAGE_ID");
    char id[64];
    snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(j, "ledgerId")),
             json_integer_value(json_object_get(j, "entryId")));
    adm_table_row(&t, id);
    adm_table_print(&t);
}

/* ---- commands -------------------------------------------------------------------------------- */

static int t_list(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_namespace_path(spec, args[0], "/admin/v2/persistent", path, sizeof(path)))
        return MG_EXIT_USAGE;
    return adm_call_print(spec, o, "GET", path, NULL, topics_table);
}

static int t_create(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    return adm_call_print(spec, o, "PUT", path, NULL, NULL);
}

static int t_create_partitioned(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (o->partitions < 1)
        return adm_usage(spec, "--partitions (-p) is required and must be at least 1");
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, "/partitions", sizeof(path) - strlen(path) - 1);
    json_t *n = json_integer(o->partitions);
    int status = adm_call_print(spec, o, "PUT", path, n, NULL);
    json_decref(n);
    return status;
}

static int t_delete(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    if (o->force)
        strncat(path, "?force=true", sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "DELETE", path, NULL, NULL);
}

static int t_delete_partitioned(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, o->force ? "/partitions?force=true" : "/partitions",
            sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "DELETE", path, NULL, NULL);
}

/* GET <topic path><suffix>, printed with table. */
static int topic_get(const mg_cmd_spec *spec, adm_opts *o, const char *topic, const char *suffix,
                     void (*table)(const json_t *j))
{
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, topic, path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, suffix, sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "GET", path, NULL, table);
}

static int t_stats(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return topic_get(spec, o, args[0], "/stats", stats_table);
}

static int t_stats_internal(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return topic_get(spec, o, args[0], "/internalStats", internal_stats_table);
}

static int t_subscriptions(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    return topic_get(spec, o, args[0], "/subscriptions", subs_table);
}

/* After a refused offload request: a broker without tiered storage has no such route. */
static void offload_hint(const mg_cmd_spec *spec, const mg_rest_reply *r)
{
    if (r->status == 404 || r->status == 405)
        fprintf(stderr,
                "%s: this broker does not serve offload requests (they come with tiered "
                "storage)\n",
                spec->name);
}

static int t_offload_status(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, "/offload", sizeof(path) - strlen(path) - 1);
    mg_rest_reply r;
    int status = adm_call(spec, o, "GET", path, NULL, &r);
    if (status != MG_EXIT_OK) {
        offload_hint(spec, &r);
        return status;
    }
    json_t *j = r.len > 0 ? adm_reply_json(spec, &r) : NULL;
    if (j != NULL) {
        if (o->output == ADM_OUTPUT_TABLE)
            adm_print_fields(j);
        else
            adm_print_json(j);
        json_decref(j);
    } else if (r.len > 0) {
        status = MG_EXIT_FAILURE;
    }
    mg_rest_reply_free(&r);
    return status;
}

static int t_create_sub(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o) || !topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    json_t *id = message_id_json(spec, o->message_id);
    if (id == NULL)
        return MG_EXIT_USAGE;
    int status = adm_call_print(spec, o, "PUT", path, id, NULL);
    json_decref(id);
    return status;
}

static int t_unsubscribe(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o) || !topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    if (o->force)
        strncat(path, "?force=true", sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "DELETE", path, NULL, NULL);
}

static int t_reset_cursor(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o))
        return MG_EXIT_USAGE;
    if ((o->time == NULL) == (o->message_id == NULL))
        return adm_usage(spec, "give exactly one of --time (-t) and --messageId (-m)");
    if (!topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    size_t len = strlen(path);
    if (o->time != NULL) {
        /* pulsar-admin reads a bare number as minutes here. */
        int64_t back_s = 0;
        bool bare = o->time[0] != '\0' && isdigit((unsigned char)o->time[strlen(o->time) - 1]);
        if (!adm_parse_time_s(o->time, &back_s) || back_s < 0)
            return adm_usage(spec, "--time: '%s' is not a time such as 10m, 3h, 2d or 1w", o->time);
        if (bare)
            back_s *= 60;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ts_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - back_s * 1000;
        snprintf(path + len, sizeof(path) - len, "/resetcursor/%" PRId64, ts_ms < 0 ? 0 : ts_ms);
        return adm_call_print(spec, o, "POST", path, NULL, NULL);
    }
    json_t *id = message_id_json(spec, o->message_id);
    if (id == NULL)
        return MG_EXIT_USAGE;
    snprintf(path + len, sizeof(path) - len, "/resetcursor");
    int status = adm_call_print(spec, o, "POST", path, id, NULL);
    json_decref(id);
    return status;
}

static int t_skip(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o))
        return MG_EXIT_USAGE;
    if (o->count < 0)
        return adm_usage(spec, "--count (-n) is required");
    if (!topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    size_t len = strlen(path);
    snprintf(path + len, sizeof(path) - len, "/skip/%" PRId64, o->count);
    return adm_call_print(spec, o, "POST", path, NULL, NULL);
}

static int t_skip_all(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o) || !topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, "/skip_all", sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "POST", path, NULL, NULL);
}

static int t_terminate(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    strncat(path, "/terminate", sizeof(path) - strlen(path) - 1);
    return adm_call_print(spec, o, "POST", path, NULL, message_id_table);
}

/* ---- peek ------------------------------------------------------------------------------------ */

/* A payload as a JSON string: itself when it is UTF-8 text, else "0x" and its hex digits. */
static json_t *payload_json(const uint8_t *p, size_t len)
{
    bool text = true;
    for (size_t i = 0; i < len && text; i++)
        if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
            text = false;
    json_t *s = text ? json_stringn((const char *)p, len) : NULL;
    if (s != NULL)
        return s;
    char *hex = malloc(2 * len + 3);
    if (hex == NULL)
        return NULL;
    memcpy(hex, "0x", 2);
    for (size_t i = 0; i < len; i++)
        snprintf(hex + 2 + 2 * i, 3, "%02x", p[i]);
    s = json_string(hex);
    free(hex);
    return s;
}

/* The X-Pulsar-PROPERTY-* headers of a reply as an object. */
static json_t *header_properties(const mg_rest_reply *r)
{
    json_t *props = json_object();
    static const char prefix[] = "X-Pulsar-PROPERTY-";
    size_t plen = sizeof(prefix) - 1;
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t llen = end != NULL ? (size_t)(end - line) : strlen(line);
        const char *colon = memchr(line, ':', llen);
        if (colon != NULL && (size_t)(colon - line) > plen &&
            strncasecmp(line, prefix, plen) == 0) {
            const char *v = colon + 1;
            while (v < line + llen && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(line + llen - v);
            while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
                vlen--;
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(colon - line - (ptrdiff_t)plen), line + plen);
            json_object_set_new(props, key, json_stringn(v, vlen));
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return props;
}

/* Adds the messages of one peeked entry to out. */
static void peek_add(const mg_cmd_spec *spec, const mg_rest_reply *r, json_t *out)
{
    char id[64] = "", publish[64] = "", producer[256] = "", batch[32] = "";
    mg_rest_header(r, "X-Pulsar-Message-ID", id, sizeof(id));
    mg_rest_header(r, "X-Pulsar-publish-time", publish, sizeof(publish));
    mg_rest_header(r, "X-Pulsar-producer-name", producer, sizeof(producer));
    bool batched = mg_rest_header(r, "X-Pulsar-num-batch-message", batch, sizeof(batch));
    if (!batched) {
        json_t *m = json_pack("{s:s,s:s,s:s,s:o,s:o}", "messageId", id, "publishTime", publish,
                              "producerName", producer, "properties", header_properties(r),
                              "payload", payload_json((const uint8_t *)r->body, r->len));
        json_array_append_new(out, m);
        return;
    }
    size_t pos = 0;
    for (int index = 0; pos < r->len; index++) {
        pw_batch_msg m;
        if (pw_batch_next((const uint8_t *)r->body, r->len, &pos, &m) != 0) {
            fprintf(stderr, "%s: entry %s: message %d of the batch does not parse\n", spec->name,
                    id, index);
            return;
        }
        json_t *props = json_object();
        for (size_t i = 0; i < m.smm->n_properties; i++)
            json_object_set_new(props, m.smm->properties[i]->key,
                                json_string(m.smm->properties[i]->value));
        char mid[96];
        snprintf(mid, sizeof(mid), "%s:%d", id, index);
        json_t *o = json_pack("{s:s,s:i,s:s,s:s,s:o,s:o}", "messageId", mid, "batchIndex", index,
                              "publishTime", publish, "producerName", producer, "properties", props,
                              "payload", payload_json(m.payload, m.payload_len));
        if (m.smm->partition_key != NULL)
            json_object_set_new(o, "key", json_string(m.smm->partition_key));
        json_array_append_new(out, o);
        pw_batch_msg_free(&m);
    }
}

static void peek_table(const json_t *msgs)
{
    adm_table t;
    adm_table_init(&t, 4, "MESSAGE_ID", "PUBLISH_TIME", "PROPERTIES", "PAYLOAD");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        char *props = adm_cell(json_object_get(m, "properties"));
        adm_table_row(&t, json_string_value(json_object_get(m, "messageId")),
                      json_string_value(json_object_get(m, "publishTime")), props,
                      json_string_value(json_object_get(m, "payload")));
        free(props);
    }
    adm_table_print(&t);
}

static int t_peek(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    char path[PATH_BYTES];
    if (!need_sub(spec, o) || !topic_sub_path(spec, args[0], o->subscription, path, sizeof(path)))
        return MG_EXIT_USAGE;
    if (o->count < 1)
        return adm_usage(spec, "--count (-n) must be at least 1");
    size_t len = strlen(path);
    json_t *msgs = json_array();
    int status = MG_EXIT_OK;
    for (int64_t n = 1; n <= o->count; n++) {
        snprintf(path + len, sizeof(path) - len, "/position/%" PRId64, n);
        mg_rest_request_opts ro = { .method = "GET", .timeout_ms = o->timeout_ms };
        mg_rest_reply r;
        char err[MG_REST_ERR_BYTES];
        if (mg_rest_request(o->admin_url, path, &ro, &r, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: cannot reach the broker's admin API at %s: %s\n", spec->name,
                    o->admin_url, err);
            status = MG_EXIT_FAILURE;
            break;
        }
        if (r.status == 404 && n > 1 && strstr(r.body, "Message not found") != NULL) {
            mg_rest_reply_free(&r); /* the backlog holds fewer entries: what there is is shown */
            break;
        }
        if (r.status != 200) {
            char reason[512];
            mg_rest_reason(&r, reason, sizeof(reason));
            fprintf(stderr, "%s: HTTP %ld: %s\n", spec->name, r.status, reason);
            mg_rest_reply_free(&r);
            status = MG_EXIT_FAILURE;
            break;
        }
        peek_add(spec, &r, msgs);
        mg_rest_reply_free(&r);
    }
    if (status == MG_EXIT_OK) {
        if (o->output == ADM_OUTPUT_TABLE)
            peek_table(msgs);
        else
            adm_print_json(msgs);
    }
    json_decref(msgs);
    return status;
}

/* ---- offload --------------------------------------------------------------------------------- */

static int t_offload(const mg_cmd_spec *spec, adm_opts *o, char **args, int nargs)
{
    (void)nargs;
    int64_t threshold = 0;
    if (o->size_threshold == NULL)
        return adm_usage(spec, "--size-threshold (-s) is required");
    if (!adm_parse_size(o->size_threshold, &threshold) || threshold < 0)
        return adm_usage(spec, "--size-threshold: '%s' is not a size such as 10M or 1G",
                         o->size_threshold);
    char path[PATH_BYTES];
    if (!adm_topic_path(spec, args[0], path, sizeof(path)))
        return MG_EXIT_USAGE;
    size_t len = strlen(path);
    snprintf(path + len, sizeof(path) - len, "/internalStats");
    mg_rest_reply r;
    int status = adm_call(spec, o, "GET", path, NULL, &r);
    if (status != MG_EXIT_OK)
        return status;
    json_t *stats = adm_reply_json(spec, &r);
    mg_rest_reply_free(&r);
    if (stats == NULL)
        return MG_EXIT_FAILURE;
    /* Walk the ledgers newest first; once threshold bytes are kept, everything up to the end
     * of the next older ledger goes. */
    json_t *ledgers = json_object_get(stats, "ledgers");
    int64_t kept = 0;
    json_t *last = NULL;
    for (size_t i = json_array_size(ledgers); i-- > 0;) {
        json_t *l = json_array_get(ledgers, i);
        if (kept >= threshold) {
            last = l;
            break;
        }
        kept += json_integer_value(json_object_get(l, "size"));
    }
    if (last == NULL || json_integer_value(json_object_get(last, "entries")) < 1) {
        json_decref(stats);
        printf("Nothing to offload\n");
        return MG_EXIT_OK;
    }
    json_t *id = json_pack(
        "{s:I,s:I,s:i}", "ledgerId", json_integer_value(json_object_get(last, "ledgerId")),
        "entryId", json_integer_value(json_object_get(last, "entries")) - 1, "partitionIndex", -1);
    json_decref(stats);
    snprintf(path + len, sizeof(path) - len, "/offload");
    status = adm_call(spec, o, "PUT", path, id, &r);
    offload_hint(spec, &r);
    if (status == MG_EXIT_OK) {
        printf("Offload triggered for %s for messages before %" JSON_INTEGER_FORMAT
               ":%" JSON_INTEGER_FORMAT "\n",
               args[0], json_integer_value(json_object_get(id, "ledgerId")),
               json_integer_value(json_object_get(id, "entryId")));
        mg_rest_reply_free(&r);
    }
    json_decref(id);
    return status;
}

/* ---- the group ------------------------------------------------------------------------------- */

#define VERB(n, u, s, o, min, max, fn)                \
    {                                                 \
        .name = n,                                    \
        .spec = { .name = "magnetar admin topics " n, \
                  .usage = u,                         \
                  .summary = s,                       \
                  OPTS(o),                            \
                  .positional_min = min,              \
                  .positional_max = max },            \
        .run = fn                                     \
    }

static const adm_verb topic_verbs[] = {
    VERB("list", "[options] TENANT/NAMESPACE",
         "Lists the namespace's topics (partitions included). GET "
         "/admin/v2/persistent/{tenant}/{namespace}.",
         o_plain, 1, 1, t_list),
    VERB("create", "[options] TOPIC",
         "Creates a non-partitioned topic. PUT /admin/v2/persistent/{tenant}/{namespace}/{topic}.",
         o_plain, 1, 1, t_create),
    VERB("create-partitioned-topic", "[options] TOPIC --partitions N",
         "Creates a partitioned topic of N partitions. PUT .../{topic}/partitions.", o_partitioned,
         1, 1, t_create_partitioned),
    VERB("delete", "[options] TOPIC",
         "Deletes a topic and its data; refused while producers or consumers are connected "
         "unless --force. DELETE .../{topic}.",
         o_delete, 1, 1, t_delete),
    VERB("delete-partitioned-topic", "[options] TOPIC",
         "Deletes a partitioned topic and every partition's data. DELETE .../{topic}/partitions.",
         o_delete, 1, 1, t_delete_partitioned),
    VERB("stats", "[options] TOPIC",
         "The topic's stats: rates, counters, storage and backlog sizes, publishers, "
         "subscriptions. GET .../{topic}/stats.",
         o_plain, 1, 1, t_stats),
    VERB("stats-internal", "[options] TOPIC",
         "The topic's internal stats: its ledgers and its cursors' positions. GET "
         ".../{topic}/internalStats.",
         o_plain, 1, 1, t_stats_internal),
    VERB("subscriptions", "[options] TOPIC",
         "Lists the topic's durable subscriptions. GET .../{topic}/subscriptions.", o_plain, 1, 1,
         t_subscriptions),
    VERB("create-subscription", "[options] TOPIC --subscription S [--messageId ID]",
         "Creates a durable subscription at latest (the default), earliest or a message id "
         "(ledgerId:entryId: the first message it reads). PUT .../{topic}/subscription/{sub}.",
         o_create_sub, 1, 1, t_create_sub),
    VERB("unsubscribe", "[options] TOPIC --subscription S",
         "Deletes a subscription; refused while consumers are connected unless --force. "
         "DELETE .../{topic}/subscription/{sub}.",
         o_unsubscribe, 1, 1, t_unsubscribe),
    VERB("reset-cursor", "[options] TOPIC --subscription S (--time T | --messageId ID)",
         "Moves a subscription back (or forward) to a time ago or to a message id; what follows "
         "is delivered again. POST .../subscription/{sub}/resetcursor/{timestamp} or "
         ".../resetcursor with a message id.",
         o_reset, 1, 1, t_reset_cursor),
    VERB("skip", "[options] TOPIC --subscription S --count N",
         "Acknowledges the subscription's next N messages without delivering them. POST "
         ".../subscription/{sub}/skip/{n}.",
         o_skip, 1, 1, t_skip),
    VERB("skip-all", "[options] TOPIC --subscription S",
         "Acknowledges the subscription's whole backlog. POST .../subscription/{sub}/skip_all.",
         o_sub_only, 1, 1, t_skip_all),
    VERB("peek-messages", "[options] TOPIC --subscription S [--count N]",
         "Shows the next N entries after the subscription's acknowledged position without "
         "consuming them (a batch shows each of its messages). GET "
         ".../subscription/{sub}/position/{n}.",
         o_peek, 1, 1, t_peek),
    VERB("terminate", "[options] TOPIC",
         "Terminates the topic: no message can be published to it again. Prints the last "
         "message id. POST .../{topic}/terminate.",
         o_plain, 1, 1, t_terminate),
    VERB("offload", "[options] TOPIC --size-threshold SIZE",
         "Asks the broker to move the topic's older ledgers to the cold tier, keeping the "
         "newest SIZE on the bookies. PUT .../{topic}/offload. Needs a broker with tiered "
         "storage: otherwise the broker's refusal is printed.",
         o_offload, 1, 1, t_offload),
    VERB("offload-status", "[options] TOPIC",
         "The state of the topic's last offload. GET .../{topic}/offload. Needs a broker with "
         "tiered storage: otherwise the broker's refusal is printed.",
         o_plain, 1, 1, t_offload_status),
};

const adm_group adm_group_topics = {
    .name = "topics",
    .summary = "Topics and their subscriptions.",
    .verbs = topic_verbs,
    .verb_count = sizeof(topic_verbs) / sizeof(topic_verbs[0]),
};
