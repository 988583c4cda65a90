/*
 * Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/), built with the
 * project's own encoders, so the seeds are the bytes the real client, broker and bookie put on
 * the wire: Pulsar frames as the C client and the broker send them, message payloads and
 * batches (every compression codec) as the producer builds them, bookie requests and responses,
 * admin HTTP requests, config files and command lines, GOIM / Bilibili chat packets, and Kafka
 * record batches (every codec) and request headers.
 *
 *   fuzz_make_seeds DIR     writes DIR/<target>/<name> for every target (DIR is usually
 *                           tests/fuzz/corpus); existing files of the same name are replaced.
 *
 * The committed corpus is this program's output; run it again after a wire format change.
 */
#include "bookie/protocol.h"
#include "pulsar/wire.h"
#include "pulsar/compress.h"
#include "chat_gateway/packet.h"
#include "common/error.h"
#include "kafka/compress.h"
#include "kafka/wire.h"

#include <errno.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define P(name) MAGNETAR__PULSAR__##name
#define TYPE(t) MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##t

static const char *out_dir;
static int written;

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s\n", what);
    exit(1);
}

static void write_seed(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        die("cannot create a target directory");
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die("cannot write a seed file");
    written++;
}

/* A growing byte string for seeds made of several pieces. */
typedef struct bytes {
    uint8_t *p;
    size_t len;
} bytes;

static void put(bytes *b, const void *data, size_t len)
{
    b->p = realloc(b->p, b->len + len + 1);
    if (b->p == NULL)
        die("out of memory");
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void put_buf(bytes *b, mg_buf *m)
{
    put(b, mg_buf_data(m), mg_buf_len(m));
    mg_buf_unref(m);
}

static void put_u32(bytes *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    put(b, x, 4);
}

/* ---- Pulsar -----------------------------------------------------------------------------------
 */

static const char *const TOPIC = "persistent://public/default/orders";

static mg_buf *cmd_frame(Magnetar__Pulsar__BaseCommand *cmd)
{
    mg_buf *out = NULL;
    if (pw_command_encode(cmd, &out) != MG_OK)
        die("pw_command_encode failed");
    return out;
}

/* Makes *cmd a command of type t (TYPE(t)) carrying msg in its field, every other field clear. */
#define SET_CMD(cmd, t, field, msg)                \
    do {                                           \
        magnetar__pulsar__base_command__init(cmd); \
        (cmd)->type = TYPE(t);                     \
        (cmd)->field = (msg);                      \
    } while (0)

/* Writes the bytes of b as a seed of target (b stays the caller's). */
static void seed_buf(const char *target, const char *name, mg_buf *b)
{
    write_seed(target, name, mg_buf_data(b), mg_buf_len(b));
}

/* Writes the frame of cmd as a seed of target and returns it (the caller's, e.g. for a stream of
 * frames). */
static mg_buf *seed_frame(const char *target, const char *name, Magnetar__Pulsar__BaseCommand *cmd)
{
    mg_buf *b = cmd_frame(cmd);
    seed_buf(target, name, b);
    return b;
}

/* Writes the frame of cmd as a seed of target. */
static void seed_cmd(const char *target, const char *name, Magnetar__Pulsar__BaseCommand *cmd)
{
    mg_buf_unref(seed_frame(target, name, cmd));
}

static Magnetar__Pulsar__MessageMetadata metadata(uint64_t seq)
{
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = "standalone-0-1";
    md.sequence_id = seq;
    md.publish_time = 1765000000000ull + seq;
    return md;
}

/* A batch of n messages as the producer builds it: [size][SingleMessageMetadata][payload]... */
static bytes batch(int n, bool keys)
{
    bytes b = { 0 };
    for (int i = 0; i < n; i++) {
        char payload[32];
        int plen = snprintf(payload, sizeof(payload), "message-%d", i);
        Magnetar__Pulsar__SingleMessageMetadata smm =
            MAGNETAR__PULSAR__SINGLE_MESSAGE_METADATA__INIT;
        smm.payload_size = plen;
        Magnetar__Pulsar__KeyValue kv = MAGNETAR__PULSAR__KEY_VALUE__INIT;
        Magnetar__Pulsar__KeyValue *kvs[1] = { &kv };
        char key[16];
        if (keys) {
            snprintf(key, sizeof(key), "key-%d", i % 3);
            smm.partition_key = key;
            kv.key = "origin";
            kv.value = "fuzz";
            smm.properties = kvs;
            smm.n_properties = 1;
            smm.has_event_time = true;
            smm.event_time = 1765000000000ull;
        }
        size_t size = magnetar__pulsar__single_message_metadata__get_packed_size(&smm);
        uint8_t *packed = malloc(size);
        magnetar__pulsar__single_message_metadata__pack(&smm, packed);
        put_u32(&b, (uint32_t)size);
        put(&b, packed, size);
        put(&b, payload, (size_t)plen);
        free(packed);
    }
    return b;
}

/* The client bytes of a SEND: the payload alone (as stored and sent back in MESSAGE). */
static mg_buf *payload(int codec, int batch_n, bool keys, uint64_t seq)
{
    Magnetar__Pulsar__MessageMetadata md = metadata(seq);
    bytes data = { 0 };
    if (batch_n > 0) {
        data = batch(batch_n, keys);
        md.has_num_messages_in_batch = true;
        md.num_messages_in_batch = batch_n;
    } else {
        put(&data, "hello, magnetar", 15);
        if (keys) {
            md.partition_key = "customer-42";
            md.ordering_key.data = (uint8_t *)"order-7";
            md.ordering_key.len = 7;
            md.has_ordering_key = true;
        }
    }
    mg_buf *compressed = NULL;
    if (codec != P(COMPRESSION_TYPE__NONE)) {
        if (pw_compress(codec, data.p, data.len, &compressed) != MG_OK)
            die("pw_compress failed");
        md.has_compression = true;
        md.compression = codec;
        md.has_uncompressed_size = true;
        md.uncompressed_size = (uint32_t)data.len;
    }
    mg_buf *out = NULL;
    const void *bytes_p = compressed != NULL ? mg_buf_data(compressed) : data.p;
    size_t bytes_len = compressed != NULL ? mg_buf_len(compressed) : data.len;
    if (pw_send_payload_encode(&md, bytes_p, bytes_len, &out) != MG_OK)
        die("pw_send_payload_encode failed");
    mg_buf_unref(compressed);
    free(data.p);
    return out;
}

/* [0x0e02][size][BrokerEntryMetadata] + client bytes: a stored entry as a broker keeps it. */
static bytes with_bem(mg_buf *client)
{
    Magnetar__Pulsar__BrokerEntryMetadata bem = MAGNETAR__PULSAR__BROKER_ENTRY_METADATA__INIT;
    bem.has_broker_timestamp = true;
    bem.broker_timestamp = 1765000000123ull;
    bem.has_index = true;
    bem.index = 41;
    uint8_t packed[64];
    size_t size = magnetar__pulsar__broker_entry_metadata__pack(&bem, packed);
    bytes b = { 0 };
    uint8_t magic[2] = { 0x0e, 0x02 };
    put(&b, magic, 2);
    put_u32(&b, (uint32_t)size);
    put(&b, packed, size);
    put_buf(&b, client);
    return b;
}

static void pulsar_seeds(void)
{
    const char *T = "pulsar_frame";
    Magnetar__Pulsar__BaseCommand cmd;

    Magnetar__Pulsar__CommandConnect connect = MAGNETAR__PULSAR__COMMAND_CONNECT__INIT;
    connect.client_version = "magnetar-c 0.1.0";
    connect.has_protocol_version = true;
    connect.protocol_version = 19;
    SET_CMD(&cmd, CONNECT, connect, &connect);
    mg_buf *f_connect = cmd_frame(&cmd);

    Magnetar__Pulsar__CommandConnected connected = MAGNETAR__PULSAR__COMMAND_CONNECTED__INIT;
    connected.server_version = "magnetar 0.1.0";
    connected.has_protocol_version = true;
    connected.protocol_version = 19;
    connected.has_max_message_size = true;
    connected.max_message_size = 5 * 1024 * 1024;
    SET_CMD(&cmd, CONNECTED, connected, &connected);
    mg_buf *f_connected = seed_frame(T, "connected", &cmd);

    Magnetar__Pulsar__CommandProducer producer = MAGNETAR__PULSAR__COMMAND_PRODUCER__INIT;
    producer.topic = (char *)TOPIC;
    producer.producer_id = 1;
    producer.request_id = 2;
    SET_CMD(&cmd, PRODUCER, producer, &producer);
    mg_buf *f_producer = seed_frame(T, "producer", &cmd);

    Magnetar__Pulsar__CommandProducerSuccess ps = MAGNETAR__PULSAR__COMMAND_PRODUCER_SUCCESS__INIT;
    ps.request_id = 2;
    ps.producer_name = "standalone-0-1";
    SET_CMD(&cmd, PRODUCER_SUCCESS, producer_success, &ps);
    seed_cmd(T, "producer_success", &cmd);

    Magnetar__Pulsar__KeySharedMeta ksm = MAGNETAR__PULSAR__KEY_SHARED_META__INIT;
    ksm.key_shared_mode = P(KEY_SHARED_MODE__AUTO_SPLIT);
    const struct {
        const char *name;
        int type;
        const char *topic;
    } subs[] = {
        { "subscribe_shared", P(COMMAND_SUBSCRIBE__SUB_TYPE__Shared), TOPIC },
        { "subscribe_key_shared", P(COMMAND_SUBSCRIBE__SUB_TYPE__Key_Shared),
          "persistent://tenant-a/ns-1/topic-partition-3" },
        { "subscribe_failover_short", P(COMMAND_SUBSCRIBE__SUB_TYPE__Failover), "my-topic" },
    };
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        Magnetar__Pulsar__CommandSubscribe sub = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
        sub.topic = (char *)subs[i].topic;
        sub.subscription = "orders-sub";
        sub.sub_type = subs[i].type;
        sub.consumer_id = 7;
        sub.request_id = 3;
        sub.consumer_name = "c-1";
        sub.has_initial_position = true;
        sub.initial_position = P(COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest);
        if (subs[i].type == P(COMMAND_SUBSCRIBE__SUB_TYPE__Key_Shared))
            sub.key_shared_meta = &ksm;
        SET_CMD(&cmd, SUBSCRIBE, subscribe, &sub);
        seed_cmd(T, subs[i].name, &cmd);
    }

    Magnetar__Pulsar__CommandLookupTopic lookup = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC__INIT;
    lookup.topic = "non-persistent://public/default/events";
    lookup.request_id = 4;
    SET_CMD(&cmd, LOOKUP, lookup_topic, &lookup);
    seed_cmd(T, "lookup", &cmd);

    Magnetar__Pulsar__CommandLookupTopicResponse lr =
        MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__INIT;
    lr.broker_service_url = "pulsar://127.0.0.1:6650";
    lr.has_response = true;
    lr.response = P(COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    lr.request_id = 4;
    SET_CMD(&cmd, LOOKUP_RESPONSE, lookup_topic_response, &lr);
    seed_cmd(T, "lookup_response", &cmd);

    Magnetar__Pulsar__CommandPartitionedTopicMetadata pm =
        MAGNETAR__PULSAR__COMMAND_PARTITIONED_TOPIC_METADATA__INIT;
    pm.topic = "persistent://public/default/partitioned";
    pm.request_id = 5;
    SET_CMD(&cmd, PARTITIONED_METADATA, partition_metadata, &pm);
    seed_cmd(T, "partitioned_metadata", &cmd);

    Magnetar__Pulsar__CommandFlow flow = MAGNETAR__PULSAR__COMMAND_FLOW__INIT;
    flow.consumer_id = 7;
    flow.message_permits = 1000;
    SET_CMD(&cmd, FLOW, flow, &flow);
    mg_buf *f_flow = seed_frame(T, "flow", &cmd);

    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = 12;
    id.entry_id = 345;
    int64_t ack_set[1] = { 0x7ffffffffffffffe };
    Magnetar__Pulsar__MessageIdData id2 = id;
    id2.ack_set = ack_set;
    id2.n_ack_set = 1;
    id2.has_batch_index = true;
    id2.batch_index = 0;
    id2.has_batch_size = true;
    id2.batch_size = 10;
    Magnetar__Pulsar__MessageIdData *ids[2] = { &id, &id2 };
    Magnetar__Pulsar__CommandAck ack = MAGNETAR__PULSAR__COMMAND_ACK__INIT;
    ack.consumer_id = 7;
    ack.ack_type = P(COMMAND_ACK__ACK_TYPE__Individual);
    ack.message_id = ids;
    ack.n_message_id = 2;
    SET_CMD(&cmd, ACK, ack, &ack);
    seed_cmd(T, "ack_individual_batch", &cmd);
    ack.ack_type = P(COMMAND_ACK__ACK_TYPE__Cumulative);
    ack.n_message_id = 1;
    seed_cmd(T, "ack_cumulative", &cmd);

    Magnetar__Pulsar__CommandSeek seek = MAGNETAR__PULSAR__COMMAND_SEEK__INIT;
    seek.consumer_id = 7;
    seek.request_id = 9;
    seek.message_id = &id;
    SET_CMD(&cmd, SEEK, seek, &seek);
    seed_cmd(T, "seek", &cmd);

    Magnetar__Pulsar__CommandRedeliverUnacknowledgedMessages rd =
        MAGNETAR__PULSAR__COMMAND_REDELIVER_UNACKNOWLEDGED_MESSAGES__INIT;
    rd.consumer_id = 7;
    rd.message_ids = ids;
    rd.n_message_ids = 1;
    SET_CMD(&cmd, REDELIVER_UNACKNOWLEDGED_MESSAGES, redeliver_unacknowledged_messages, &rd);
    seed_cmd(T, "redeliver", &cmd);

    Magnetar__Pulsar__CommandGetTopicsOfNamespace gt =
        MAGNETAR__PULSAR__COMMAND_GET_TOPICS_OF_NAMESPACE__INIT;
    gt.request_id = 10;
    gt.namespace_ = "public/default";
    SET_CMD(&cmd, GET_TOPICS_OF_NAMESPACE, get_topics_of_namespace, &gt);
    seed_cmd(T, "get_topics_of_namespace", &cmd);

    Magnetar__Pulsar__CommandCloseProducer cp = MAGNETAR__PULSAR__COMMAND_CLOSE_PRODUCER__INIT;
    cp.producer_id = 1;
    cp.request_id = 11;
    SET_CMD(&cmd, CLOSE_PRODUCER, close_producer, &cp);
    seed_cmd(T, "close_producer", &cmd);

    mg_buf *bb = NULL;
    if (pw_encode_ping(&bb) != MG_OK)
        die("ping");
    seed_buf(T, "ping", bb);
    mg_buf_unref(bb);
    if (pw_encode_error(3, P(SERVER_ERROR__TopicNotFound), "topic not found", &bb) != MG_OK)
        die("error");
    seed_buf(T, "error", bb);
    mg_buf_unref(bb);
    if (pw_encode_send_receipt(1, 5, 9, 12, 345, &bb) != MG_OK)
        die("receipt");
    seed_buf(T, "send_receipt", bb);
    mg_buf_unref(bb);

    /* SEND frames as the producer sends them: single, keyed, batches, compressed. */
    Magnetar__Pulsar__CommandSend send = MAGNETAR__PULSAR__COMMAND_SEND__INIT;
    send.producer_id = 1;
    const struct {
        const char *name;
        int codec, batch_n;
        bool keys;
    } sends[] = {
        { "send_single", P(COMPRESSION_TYPE__NONE), 0, false },
        { "send_keyed", P(COMPRESSION_TYPE__NONE), 0, true },
        { "send_batch", P(COMPRESSION_TYPE__NONE), 4, true },
        { "send_batch_lz4", P(COMPRESSION_TYPE__LZ4), 3, false },
        { "send_batch_zstd", P(COMPRESSION_TYPE__ZSTD), 3, true },
    };
    bytes stream = { 0 };
    put(&stream, mg_buf_data(f_connect), mg_buf_len(f_connect));
    put(&stream, mg_buf_data(f_producer), mg_buf_len(f_producer));
    for (size_t i = 0; i < sizeof(sends) / sizeof(sends[0]); i++) {
        mg_buf *pl = payload(sends[i].codec, sends[i].batch_n, sends[i].keys, i);
        send.sequence_id = i;
        send.has_num_messages = sends[i].batch_n > 0;
        send.num_messages = sends[i].batch_n;
        SET_CMD(&cmd, SEND, send, &send);
        mg_buf *head = NULL;
        if (pw_payload_head_encode(&cmd, mg_buf_len(pl), &head) != MG_OK)
            die("pw_payload_head_encode");
        bytes frame = { 0 };
        put(&frame, mg_buf_data(head), mg_buf_len(head));
        put(&frame, mg_buf_data(pl), mg_buf_len(pl));
        write_seed(T, sends[i].name, frame.p, frame.len);
        if (i < 2)
            put(&stream, frame.p, frame.len);
        free(frame.p);
        mg_buf_unref(head);
        mg_buf_unref(pl);
    }
    write_seed(T, "stream_connect_producer_send", stream.p, stream.len);
    free(stream.p);

    /* MESSAGE frames as the broker sends them, with and without broker entry metadata. */
    for (int with_prefix = 0; with_prefix < 2; with_prefix++) {
        mg_buf *pl = payload(P(COMPRESSION_TYPE__NONE), 2, true, 77);
        bytes body = { 0 };
        if (with_prefix)
            body = with_bem(pl);
        else
            put_buf(&body, pl);
        mg_buf *head = NULL;
        if (pw_encode_message_head(7, 12, 345, with_prefix ? 3 : -1, with_prefix, body.len,
                                   &head) != MG_OK)
            die("pw_encode_message_head");
        bytes frame = { 0 };
        put_buf(&frame, head);
        put(&frame, body.p, body.len);
        write_seed(T, with_prefix ? "message_bem" : "message", frame.p, frame.len);
        free(frame.p);
        free(body.p);
    }
    bytes s2 = { 0 };
    put(&s2, mg_buf_data(f_connected), mg_buf_len(f_connected));
    put(&s2, mg_buf_data(f_flow), mg_buf_len(f_flow));
    write_seed(T, "stream_connected_flow", s2.p, s2.len);
    free(s2.p);
    seed_buf(T, "connect", f_connect);
    mg_buf_unref(f_connect);
    mg_buf_unref(f_connected);
    mg_buf_unref(f_producer);
    mg_buf_unref(f_flow);

    /* Payloads alone. */
    const char *U = "pulsar_payload";
    const struct {
        const char *name;
        int codec, batch_n;
        bool keys, bem;
    } pls[] = {
        { "single", P(COMPRESSION_TYPE__NONE), 0, false, false },
        { "keyed", P(COMPRESSION_TYPE__NONE), 0, true, false },
        { "batch", P(COMPRESSION_TYPE__NONE), 5, true, false },
        { "batch_lz4", P(COMPRESSION_TYPE__LZ4), 4, true, false },
        { "batch_zlib", P(COMPRESSION_TYPE__ZLIB), 4, false, false },
        { "batch_zstd", P(COMPRESSION_TYPE__ZSTD), 4, true, false },
        { "batch_snappy", P(COMPRESSION_TYPE__SNAPPY), 4, false, false },
        { "single_lz4", P(COMPRESSION_TYPE__LZ4), 0, false, false },
        { "stored_bem_batch", P(COMPRESSION_TYPE__NONE), 3, true, true },
        { "stored_bem_zstd", P(COMPRESSION_TYPE__ZSTD), 2, false, true },
    };
    for (size_t i = 0; i < sizeof(pls) / sizeof(pls[0]); i++) {
        mg_buf *pl = payload(pls[i].codec, pls[i].batch_n, pls[i].keys, 100 + i);
        bytes out = { 0 };
        if (pls[i].bem)
            out = with_bem(pl);
        else
            put_buf(&out, pl);
        write_seed(U, pls[i].name, out.p, out.len);
        free(out.p);
    }
}

/* ---- bookie RPC ------------------------------------------------------------------------------ */

static void bookie_seeds(void)
{
    const char *T = "bookie_rpc";
    /* The first byte: bit 0 the side (0 requests, 1 responses), the rest and the second byte
     * seed the read sizes (0: all at once). */
    const struct {
        const char *name;
        bk_request req;
        size_t payload;
    } reqs[] = {
        { "req_add", { 1, BK_OP_ADD, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 12, 0, 0, 0, 0 }, 24 },
        { "req_read", { 2, BK_OP_READ, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 12, 5, 0, 0, 0 }, 0 },
        { "req_read_range",
          { 3, BK_OP_READ_RANGE,
            BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID | BK_HAS_LAST_ENTRY_ID | BK_HAS_MAX_BYTES, 12, 0, 99,
            65536, 0 },
          0 },
        { "req_read_lac", { 4, BK_OP_READ_LAC, BK_HAS_LEDGER_ID, 12, 0, 0, 0, 0 }, 0 },
        { "req_fence", { 5, BK_OP_FENCE, BK_HAS_LEDGER_ID, 12, 0, 0, 0, 0 }, 0 },
        { "req_delete", { 6, BK_OP_DELETE, BK_HAS_LEDGER_ID, 12, 0, 0, 0, 0 }, 0 },
        { "req_health", { 7, BK_OP_HEALTH, 0, 0, 0, 0, 0, 0 }, 0 },
    };
    bytes all = { 0 };
    uint8_t sides[2] = { 0x00, 0x00 };
    put(&all, sides, 2);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        mg_buf *head = NULL;
        if (bk_encode_request_head(&reqs[i].req, reqs[i].payload, &head) != MG_OK)
            die("bk_encode_request_head");
        bytes f = { 0 };
        uint8_t pre[2] = { (uint8_t)(i % 2 ? 0x00 : 0x2a), (uint8_t)i };
        put(&f, pre, 2);
        put(&f, mg_buf_data(head), mg_buf_len(head));
        put(&all, mg_buf_data(head), mg_buf_len(head));
        for (size_t k = 0; k < reqs[i].payload; k++) {
            uint8_t c = (uint8_t)('a' + k % 26);
            put(&f, &c, 1);
            put(&all, &c, 1);
        }
        write_seed(T, reqs[i].name, f.p, f.len);
        free(f.p);
        mg_buf_unref(head);
    }
    write_seed(T, "req_pipeline", all.p, all.len);
    free(all.p);

    /* Responses: status only, LAC, one entry, a compact range, a general list. */
    mg_buf *data = mg_buf_new_copy("entry-0entry-one..entry-2", 25);
    bk_entry consecutive[3] = { { 10, data, 0, 7 }, { 11, data, 7, 11 }, { 12, data, 18, 7 } };
    bk_entry scattered[2] = { { 40, data, 0, 7 }, { 3, data, 7, 11 } };
    const struct {
        const char *name;
        bk_response resp;
        const bk_entry *entries;
        size_t count;
    } resps[] = {
        { "resp_add",
          { 1, BK_OP_ADD, MG_OK, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 12, 0, 0, "" },
          NULL,
          0 },
        { "resp_error", { 2, BK_OP_READ, MG_ENOTFOUND, 0, 0, 0, 0, "no such entry" }, NULL, 0 },
        { "resp_lac", { 4, BK_OP_READ_LAC, MG_OK, BK_HAS_LAST_ENTRY_ID, 0, 0, 99, "" }, NULL, 0 },
        { "resp_read", { 2, BK_OP_READ, MG_OK, BK_HAS_LEDGER_ID, 12, 0, 0, "" }, consecutive, 1 },
        { "resp_range_compact",
          { 3, BK_OP_READ_RANGE, MG_OK, BK_HAS_LEDGER_ID, 12, 0, 0, "" },
          consecutive,
          3 },
        { "resp_range_general",
          { 3, BK_OP_READ_RANGE, MG_OK, BK_HAS_LEDGER_ID, 12, 0, 0, "" },
          scattered,
          2 },
    };
    bytes rall = { 0 };
    uint8_t rsides[2] = { 0x01, 0x00 };
    put(&rall, rsides, 2);
    for (size_t i = 0; i < sizeof(resps) / sizeof(resps[0]); i++) {
        mg_buf *head = NULL;
        if (bk_encode_response_head(&resps[i].resp, resps[i].entries, resps[i].count, &head) !=
            MG_OK)
            die("bk_encode_response_head");
        bytes f = { 0 };
        uint8_t pre[2] = { (uint8_t)(i % 2 ? 0x01 : 0x55), (uint8_t)(3 * i) };
        put(&f, pre, 2);
        put(&f, mg_buf_data(head), mg_buf_len(head));
        put(&rall, mg_buf_data(head), mg_buf_len(head));
        for (size_t k = 0; k < resps[i].count; k++) {
            const bk_entry *e = &resps[i].entries[k];
            put(&f, mg_buf_data(e->buf) + e->off, e->len);
            put(&rall, mg_buf_data(e->buf) + e->off, e->len);
        }
        write_seed(T, resps[i].name, f.p, f.len);
        free(f.p);
        mg_buf_unref(head);
    }
    write_seed(T, "resp_pipeline", rall.p, rall.len);
    free(rall.p);
    mg_buf_unref(data);
}

/* ---- HTTP and config ------------------------------------------------------------------------ */

static void text_seed(const char *target, const char *name, const char *text)
{
    write_seed(target, name, text, strlen(text));
}

static void http_seeds(void)
{
    const char *T = "http";
#define BASE "/admin/v2/persistent/public/default"
    text_seed(T, "list", "GET " BASE " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
    text_seed(T, "list_partitioned", "GET " BASE "/partitioned HTTP/1.1\r\nHost: x\r\n\r\n");
    text_seed(T, "create", "PUT " BASE "/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    text_seed(T, "delete_force", "DELETE " BASE "/orders?force=true HTTP/1.1\r\nHost: x\r\n\r\n");
    text_seed(T, "partitions_create",
              "PUT " BASE "/orders/partitions HTTP/1.1\r\nHost: x\r\n"
              "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n16");
    text_seed(T, "partitions_get", "GET " BASE "/orders/partitions HTTP/1.1\r\n\r\n");
    text_seed(T, "stats", "GET " BASE "/orders-partition-2/stats HTTP/1.1\r\n\r\n");
    text_seed(T, "internal_stats", "GET " BASE "/orders/internalStats HTTP/1.1\r\n\r\n");
    text_seed(T, "last_message_id", "GET " BASE "/orders/lastMessageId HTTP/1.1\r\n\r\n");
    text_seed(T, "sub_create", "PUT " BASE "/orders/subscription/my%2Dsub HTTP/1.1\r\n\r\n");
    text_seed(T, "sub_delete",
              "DELETE " BASE "/orders/subscription/my-sub?force=true&x HTTP/1.1\r\n\r\n");
    text_seed(T, "skip",
              "POST " BASE "/orders/subscription/s/skip/10 HTTP/1.1\r\n"
              "Content-Length: 0\r\n\r\n");
    text_seed(T, "skip_all", "POST " BASE "/orders/subscription/s/skip_all HTTP/1.1\r\n\r\n");
    text_seed(T, "reset",
              "POST " BASE "/orders/subscription/s/resetcursor/1765000000000 "
              "HTTP/1.1\r\n\r\n");
    text_seed(T, "terminate", "POST " BASE "/orders/terminate HTTP/1.1\r\n\r\n");
    text_seed(T, "peek", "GET " BASE "/orders/subscription/s/position/3 HTTP/1.1\r\n\r\n");
    text_seed(T, "reset_message_id",
              "POST " BASE "/orders/subscription/s/resetcursor HTTP/1.1\r\n"
              "Content-Type: application/json\r\nContent-Length: 45\r\n\r\n"
              "{\"ledgerId\":12,\"entryId\":3,\"isExcluded\":true}");
    text_seed(T, "sub_create_at_id",
              "PUT " BASE "/orders/subscription/s HTTP/1.1\r\n"
              "Content-Type: application/json\r\nContent-Length: 48\r\n\r\n"
              "{\"ledgerId\":-1,\"entryId\":-1,\"partitionIndex\":-1}");
    text_seed(T, "metrics", "GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n");
    text_seed(T, "health", "GET /admin/v2/brokers/health HTTP/1.1\r\n\r\n");
    text_seed(T, "method_not_allowed", "PATCH " BASE "/orders HTTP/1.1\r\n\r\n");
    text_seed(T, "chunked",
              "PUT " BASE "/orders/partitions HTTP/1.1\r\n"
              "Transfer-Encoding: chunked\r\n\r\n4\n");
    text_seed(T, "partitions_stored_json",
              "PUT " BASE "/t/partitions HTTP/1.1\r\nContent-Length: 16\r\n\r\n"
              "{\"partitions\":4}");
#undef BASE
    const char *C = "config";
    /* First byte even: a config file follows; odd: NUL-separated command-line arguments. */
    text_seed(C, "file_all_types",
              "\xef\xbb\xbf# magnetar.conf\n"
              "name = broker-1\n"
              "data_dir=/var/lib/magnetar#1\r\n"
              "port=6651\n"
              "offset = -5\n"
              "verbose=yes\n"
              "cache-size = 256 MiB\n"
              "limit=2G\n"
              "timeout=1500ms\n"
              "skew=-2s\n"
              "mode=SAFE\n"
              "\n");
    text_seed(C, "file_units", "\x02limit=64k\ncache_size=1TiB\ntimeout=2d\nskew=90m\n");
    text_seed(C, "file_bad_key", "\x04prot=6650\n");
    text_seed(C, "file_ambiguous_unit", "\x06limit=5MB\n");
    static const char args1[] = "\x01--port\0"
                                "7000\0-vq\0--cache-size=16M\0pos1\0--\0-x";
    write_seed(C, "args_mixed", args1, sizeof(args1) - 1);
    static const char args2[] = "\x03-p6652\0--no-verbose\0--offset\0-9\0--mode=off\0--timeout=5s";
    write_seed(C, "args_short_long", args2, sizeof(args2) - 1);
    static const char args3[] = "\x05--name=\0--skew=-1h\0--limit\0"
                                "0\0--verbose=on";
    write_seed(C, "args_edges", args3, sizeof(args3) - 1);
}

/* ---- GOIM / Bilibili chat packets ----------------------------------------------------------- */

static void goim_put_packet(bytes *b, uint16_t ver, uint32_t op, uint32_t seq, const char *body)
{
    mg_buf *m = NULL;
    if (cg_packet_encode_buf(ver, op, seq, body, strlen(body), &m) != MG_OK)
        die("cg_packet_encode_buf");
    put_buf(b, m);
}

static void goim_seed(const char *name, uint16_t ver, uint32_t op, uint32_t seq, const char *body)
{
    bytes b = { 0 };
    goim_put_packet(&b, ver, op, seq, body);
    write_seed("goim_packet", name, b.p, b.len);
    free(b.p);
}

static void goim_seeds(void)
{
    const char *T = "goim_packet";
    const char *goim_auth = "{\"mid\":123,\"key\":\"k-1\",\"room_id\":\"live://1000\","
                            "\"platform\":\"web\",\"accepts\":[1000,1001]}";
    const char *bili_auth = "{\"uid\":0,\"roomid\":21452505,\"protover\":3,"
                            "\"platform\":\"web\",\"type\":2,\"key\":\"abc\"}";
    goim_seed("auth_goim", CG_VER_INT, CG_OP_AUTH, 1, goim_auth);
    goim_seed("auth_bilibili", CG_VER_INT, CG_OP_AUTH, 1, bili_auth);
    goim_seed("auth_reply", CG_VER_INT, CG_OP_AUTH_REPLY, 1, "{\"code\":0}");
    goim_seed("heartbeat_bilibili", CG_VER_INT, CG_OP_HEARTBEAT, 1, "[object Object]");
    uint8_t online[CG_HEARTBEAT_REPLY_BODY_BYTES];
    cg_heartbeat_reply_body(1234567, online);
    mg_buf *m = NULL;
    if (cg_packet_encode_buf(CG_VER_INT, CG_OP_HEARTBEAT_REPLY, 2, online, sizeof(online), &m) !=
        MG_OK)
        die("cg_packet_encode_buf");
    seed_buf(T, "heartbeat_reply", m);
    mg_buf_unref(m);
    goim_seed("send_msg", CG_VER_JSON, CG_OP_SEND_MSG, 3, "{\"msg\":\"hello\"}");
    goim_seed("change_room", CG_VER_INT, CG_OP_CHANGE_ROOM, 4, "live://1001");
    goim_seed("sub", CG_VER_INT, CG_OP_SUB, 5, "1000,1001");

    /* A session: auth, then heartbeats and room messages back to back. */
    bytes s = { 0 };
    goim_put_packet(&s, CG_VER_INT, CG_OP_AUTH, 1, bili_auth);
    goim_put_packet(&s, CG_VER_INT, CG_OP_HEARTBEAT, 2, "[object Object]");
    goim_put_packet(&s, CG_VER_JSON, CG_OP_SEND_MSG, 3, "{\"cmd\":\"DANMU_MSG\"}");
    goim_put_packet(&s, CG_VER_INT, CG_OP_HEARTBEAT, 4, "");
    write_seed(T, "stream", s.p, s.len);
    free(s.p);

    /* An op 9 raw batch as the gateway sends a merged room batch. */
    cg_packet inner[3] = {
        { .ver = CG_VER_JSON,
          .op = CG_OP_SEND_MSG_REPLY,
          .body = (const uint8_t *)"{\"a\":1}",
          .body_len = 7 },
        { .ver = CG_VER_JSON,
          .op = CG_OP_SEND_MSG_REPLY,
          .body = (const uint8_t *)"{\"b\":2}",
          .body_len = 7 },
        { .ver = CG_VER_JSON, .op = CG_OP_SEND_MSG_REPLY, .seq = 0, .body = NULL, .body_len = 0 },
    };
    if (cg_batch_encode(CG_VER_INT, 0, inner, 3, &m) != MG_OK)
        die("cg_batch_encode");
    seed_buf(T, "raw_batch", m);
    /* Refused forms, for the replay to reach the refusals: a batch whose first packet runs past
     * the batch, and a packet with headerLen 18. */
    bytes bad = { 0 };
    put(&bad, mg_buf_data(m), mg_buf_len(m));
    bad.p[CG_PACKET_HEADER_BYTES + 3] = 0x7f;
    write_seed(T, "raw_batch_overrun", bad.p, bad.len);
    bad.p[CG_PACKET_HEADER_BYTES + 3] = mg_buf_data(m)[CG_PACKET_HEADER_BYTES + 3];
    bad.p[5] = 18;
    write_seed(T, "header_len_18", bad.p, bad.len);
    free(bad.p);
    mg_buf_unref(m);
}

/* ---- Kafka record batches and request headers --------------------------------------------- */

/* The records of a producer's batch: a keyed record with two headers, a record with a null key,
 * a tombstone (null value), and a larger value that compresses. */
static void kafka_records(kw_writer *w)
{
    const char *const hdrs[4] = { "trace-id", "4bf92f35", "content-type", "application/json" };
    kw_write_record(w, 0, 0, "order-17", 8, "{\"qty\":3,\"sku\":\"A-1\"}", 23, hdrs, 2);
    kw_write_record(w, 3, 1, NULL, 0, "no key here", 11, NULL, 0);
    kw_write_record(w, 5, 2, "order-17", 8, NULL, 0, NULL, 0);
    char big[600];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = "kafka records compress well "[i % 28];
    kw_write_record(w, 9, 3, "bulk", 4, big, (int32_t)sizeof(big), hdrs + 2, 1);
    if (kw_writer_error(w) != MG_OK)
        die("kw_write_record");
}

/* Writes a batch of the records (compressed as codec says, or records_override as they are)
 * as a seed. */
static void kafka_batch_seed(const char *name, int codec, const uint8_t *records_override,
                             size_t override_len)
{
    kw_writer recs;
    kw_writer_init(&recs, 0);
    kafka_records(&recs);
    const void *body = recs.buf;
    size_t body_len = recs.len;
    mg_buf *c = NULL;
    if (records_override != NULL) {
        body = records_override;
        body_len = override_len;
    } else if (codec != KW_CODEC_NONE) {
        if (kw_compress(codec, recs.buf, recs.len, &c) != MG_OK)
            die("kw_compress");
        body = mg_buf_data(c);
        body_len = mg_buf_len(c);
    }
    kw_record_batch b = { .base_offset = 0,
                          .partition_leader_epoch = -1,
                          .attributes = (int16_t)codec,
                          .last_offset_delta = 3,
                          .base_timestamp = 1765000000000,
                          .max_timestamp = 1765000000009,
                          .producer_id = -1,
                          .producer_epoch = -1,
                          .base_sequence = -1,
                          .records_count = 4 };
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_record_batch(&w, &b, body, body_len);
    if (kw_writer_error(&w) != MG_OK)
        die("kw_write_record_batch");
    write_seed("kafka_records", name, w.buf, w.len);
    kw_writer_free(&w);
    mg_buf_unref(c);
    kw_writer_free(&recs);
}

static void kafka_seeds(void)
{
    kafka_batch_seed("batch_none", KW_CODEC_NONE, NULL, 0);
    kafka_batch_seed("batch_gzip", KW_CODEC_GZIP, NULL, 0);
    kafka_batch_seed("batch_snappy_xerial", KW_CODEC_SNAPPY, NULL, 0);
    kafka_batch_seed("batch_lz4", KW_CODEC_LZ4, NULL, 0);
    kafka_batch_seed("batch_zstd", KW_CODEC_ZSTD, NULL, 0);
    /* librdkafka's snappy: one raw block, no framing. */
    kw_writer recs;
    kw_writer_init(&recs, 0);
    kafka_records(&recs);
    size_t raw_len = snappy_max_compressed_length(recs.len);
    uint8_t *raw = malloc(raw_len);
    if (raw == NULL ||
        snappy_compress((const char *)recs.buf, recs.len, (char *)raw, &raw_len) != SNAPPY_OK)
        die("snappy_compress");
    kafka_batch_seed("batch_snappy_raw", KW_CODEC_SNAPPY, raw, raw_len);
    free(raw);
    kw_writer_free(&recs);

    /* Request mode (first byte 0xff): librdkafka's ApiVersions v3 request body (flexible
     * header) and a Produce v7 request body (header v1, then transactional_id, acks, timeout,
     * one topic). */
    kw_writer w;
    kw_writer_init(&w, 0);
    kw_write_i8(&w, (int8_t)0xff);
    kw_write_i16(&w, KW_API_API_VERSIONS);
    kw_write_i16(&w, 3);
    kw_write_i32(&w, 1);
    kw_write_string(&w, "rdkafka");
    kw_write_empty_tagged_fields(&w);
    kw_write_compact_string(&w, "librdkafka");
    kw_write_compact_string(&w, "2.0.2");
    kw_write_empty_tagged_fields(&w);
    write_seed("kafka_records", "request_api_versions_v3", w.buf, w.len);
    kw_writer_free(&w);
    kw_writer_init(&w, 0);
    kw_write_i8(&w, (int8_t)0xff);
    kw_write_i16(&w, KW_API_PRODUCE);
    kw_write_i16(&w, 7);
    kw_write_i32(&w, 42);
    kw_write_string(&w, "producer-1");
    kw_write_string(&w, NULL);
    kw_write_i16(&w, -1);
    kw_write_i32(&w, 30000);
    kw_write_i32(&w, 1);
    kw_write_string(&w, "orders");
    kw_write_i32(&w, 1);
    kw_write_i32(&w, 0);
    write_seed("kafka_records", "request_produce_v7", w.buf, w.len);
    kw_writer_free(&w);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR   (writes DIR/<target>/<seed>)\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    pulsar_seeds();
    bookie_seeds();
    http_seeds();
    goim_seeds();
    kafka_seeds();
    printf("make_seeds: %d seed files written under %s\n", written, out_dir);
    return 0;
}
