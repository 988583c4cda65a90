/*
 * Tests of the Pulsar frame and payload codec (src/pulsar/wire.c): round trips of every command
 * type, stream reassembly at every split point, size and protocol errors, payload parsing with
 * and without checksum and broker entry metadata, and one frame written byte by byte from the
 * specification so the codec is checked against the format and not only against itself.
 */
#include "pulsar/wire.h"

#include "common/alloc.h"
#include "common/error.h"
#include "pulsar/limits.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(wire, .timeout = 10);

/* --- helpers --------------------------------------------------------------------------------- */

/* Allocations made while building test commands, released at the end of a test. */
#define TRACK_MAX 256
static void *tracked[TRACK_MAX];
static size_t tracked_count;

static void *track(void *p)
{
    cr_assert_not_null(p);
    cr_assert_lt(tracked_count, TRACK_MAX);
    tracked[tracked_count++] = p;
    return p;
}

static void track_release(void)
{
    for (size_t i = 0; i < tracked_count; i++)
        free(tracked[i]);
    tracked_count = 0;
}

static const uint8_t k_bytes[3] = { 0xde, 0xad, 0x01 };

/* Fills every required field of m, and every optional scalar, string and bytes field, with
 * values derived from the field number (seed varies them); sub-messages are filled to depth 2.
 * Repeated fields get one element when depth is 0. */
static void fill_message(ProtobufCMessage *m, unsigned seed, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char *slot = (char *)m + f->offset;
        uint64_t v = seed * 100u + f->id;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (depth > 0)
                continue;
            size_t *count = (size_t *)((char *)m + f->quantifier_offset);
            void *elem;
            switch (f->type) {
            case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessageDescriptor *sd = f->descriptor;
                ProtobufCMessage *sub = track(calloc(1, sd->sizeof_message));
                sd->message_init(sub);
                fill_message(sub, seed + 1, depth + 1);
                ProtobufCMessage **arr = track(calloc(1, sizeof(*arr)));
                arr[0] = sub;
                elem = arr;
                break;
            }
            case PROTOBUF_C_TYPE_STRING: {
                char **arr = track(calloc(1, sizeof(*arr)));
                arr[0] = "rep";
                elem = arr;
                break;
            }
            case PROTOBUF_C_TYPE_INT64: {
                int64_t *arr = track(calloc(1, sizeof(*arr)));
                arr[0] = -(int64_t)v;
                elem = arr;
                break;
            }
            default:
                continue; /* no other repeated types in PulsarApi.proto */
            }
            *count = 1;
            *(void **)slot = elem;
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
            depth >= 2)
            continue;
        bool has_flag = f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                        f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
            *(int32_t *)slot = (int32_t)v;
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            *(uint32_t *)slot = (uint32_t)v;
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
            *(int64_t *)slot = (int64_t)v;
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
            *(uint64_t *)slot = v;
            break;
        case PROTOBUF_C_TYPE_DOUBLE:
            *(double *)slot = (double)v + 0.5;
            break;
        case PROTOBUF_C_TYPE_FLOAT:
            *(float *)slot = (float)v;
            break;
        case PROTOBUF_C_TYPE_BOOL:
            *(protobuf_c_boolean *)slot = (v & 1) != 0;
            break;
        case PROTOBUF_C_TYPE_ENUM: {
            const ProtobufCEnumDescriptor *ed = f->descriptor;
            *(int *)slot = ed->values[v % ed->n_values].value;
            break;
        }
        case PROTOBUF_C_TYPE_STRING:
            *(const char **)slot = (f->id % 2) ? "text" : "other-text";
            break;
        case PROTOBUF_C_TYPE_BYTES: {
            ProtobufCBinaryData *b = (ProtobufCBinaryData *)slot;
            b->data = (uint8_t *)k_bytes;
            b->len = sizeof(k_bytes);
            break;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
            const ProtobufCMessageDescriptor *sd = f->descriptor;
            ProtobufCMessage *sub = track(calloc(1, sd->sizeof_message));
            sd->message_init(sub);
            fill_message(sub, seed + 1, depth + 1);
            *(ProtobufCMessage **)slot = sub;
            break;
        }
        default:
            cr_assert_fail("unexpected field type %d", (int)f->type);
        }
        if (has_flag)
            *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
    }
}

/* A BaseCommand of the given type with its sub-command filled by fill_message. */
static Magnetar__Pulsar__BaseCommand *build_command(int type)
{
    Magnetar__Pulsar__BaseCommand *cmd = track(calloc(1, sizeof(*cmd)));
    magnetar__pulsar__base_command__init(cmd);
    cmd->type = (Magnetar__Pulsar__BaseCommand__Type)type;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &magnetar__pulsar__base_command__descriptor, (unsigned)type);
    cr_assert_not_null(f, "BaseCommand has no field %d", type);
    cr_assert_eq(f->type, PROTOBUF_C_TYPE_MESSAGE);
    const ProtobufCMessageDescriptor *sd = f->descriptor;
    ProtobufCMessage *sub = track(calloc(1, sd->sizeof_message));
    sd->message_init(sub);
    fill_message(sub, (unsigned)type, 0);
    *(ProtobufCMessage **)((char *)cmd + f->offset) = sub;
    return cmd;
}

/* A valid MessageMetadata with the three required fields. */
static Magnetar__Pulsar__MessageMetadata test_metadata(void)
{
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = "producer-1";
    md.sequence_id = 42;
    md.publish_time = 1700000000123ull;
    return md;
}

static Magnetar__Pulsar__BaseCommand send_command(Magnetar__Pulsar__CommandSend *send)
{
    magnetar__pulsar__command_send__init(send);
    send->producer_id = 3;
    send->sequence_id = 42;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND;
    cmd.send = send;
    return cmd;
}

/* Packs a message into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len + 1);
    cr_assert_not_null(b);
    cr_assert_eq(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* A frame [total][cmd_len][cmd bytes][extra] built from raw command bytes. */
static size_t raw_frame(uint8_t *dst, const uint8_t *cmd, uint32_t cmd_len, const uint8_t *extra,
                        uint32_t extra_len)
{
    uint32_t total = 4 + cmd_len + extra_len;
    dst[0] = (uint8_t)(total >> 24);
    dst[1] = (uint8_t)(total >> 16);
    dst[2] = (uint8_t)(total >> 8);
    dst[3] = (uint8_t)total;
    dst[4] = (uint8_t)(cmd_len >> 24);
    dst[5] = (uint8_t)(cmd_len >> 16);
    dst[6] = (uint8_t)(cmd_len >> 8);
    dst[7] = (uint8_t)cmd_len;
    if (cmd_len > 0)
        memcpy(dst + 8, cmd, cmd_len);
    if (extra_len > 0)
        memcpy(dst + 8 + cmd_len, extra, extra_len);
    return 8 + cmd_len + extra_len;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* --- command types --------------------------------------------------------------------------- */

Test(wire, type_names)
{
    cr_assert_str_eq(pw_command_type_name(2), "CONNECT");
    cr_assert_str_eq(pw_command_type_name(6), "SEND");
    cr_assert_str_eq(pw_command_type_name(9), "MESSAGE");
    cr_assert_str_eq(pw_command_type_name(10), "ACK");
    cr_assert_str_eq(pw_command_type_name(20), "REDELIVER_UNACKNOWLEDGED_MESSAGES");
    cr_assert_str_eq(pw_command_type_name(38), "ACK_RESPONSE");
    cr_assert_str_eq(pw_command_type_name(40), "GET_OR_CREATE_SCHEMA_RESPONSE");
    cr_assert_str_eq(pw_command_type_name(0), "UNKNOWN");
    cr_assert_str_eq(pw_command_type_name(1), "UNKNOWN");
    cr_assert_str_eq(pw_command_type_name(41), "UNKNOWN");
    cr_assert_str_eq(pw_command_type_name(50), "UNKNOWN");
    cr_assert_str_eq(pw_command_type_name(-1), "UNKNOWN");
}

/* Every type 2..40 is known, and its sub-command is the BaseCommand field of the same number. */
Test(wire, every_type_has_its_field)
{
    for (int t = 2; t <= 40; t++) {
        cr_assert_str_neq(pw_command_type_name(t), "UNKNOWN", "type %d", t);
        Magnetar__Pulsar__BaseCommand *cmd = build_command(t);
        const ProtobufCMessage *body = pw_command_body(cmd);
        cr_assert_not_null(body, "type %d", t);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
            &magnetar__pulsar__base_command__descriptor, (unsigned)t);
        cr_assert_eq(body, *(ProtobufCMessage **)((char *)cmd + f->offset));
    }
    track_release();
}

/* --- round trips ----------------------------------------------------------------------------- */

/* Every command type, every scalar/string/bytes field and one element of each repeated field:
 * encode, frame-decode, and the decoded command packs to exactly the original bytes. */
Test(wire, round_trip_every_type)
{
    for (int t = 2; t <= 40; t++) {
        Magnetar__Pulsar__BaseCommand *cmd = build_command(t);
        mg_buf *b = NULL;
        int rc;
        bool payload = t == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND ||
                       t == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE;
        if (payload) {
            Magnetar__Pulsar__MessageMetadata md = test_metadata();
            rc = pw_payload_frame_encode(cmd, &md, "xy", 2, &b);
        } else {
            rc = pw_command_encode(cmd, &b);
        }
        cr_assert_eq(rc, MG_OK, "type %d (%s): %s", t, pw_command_type_name(t), mg_err_name(rc));
        const uint8_t *p = mg_buf_data(b);
        size_t n = mg_buf_len(b), frame_len = 0;
        cr_assert_eq(pw_frame_size(p, n, UINT32_MAX, &frame_len), MG_OK);
        cr_assert_eq(frame_len, n);

        pw_frame f;
        rc = pw_frame_decode(p, n, &f);
        cr_assert_eq(rc, MG_OK, "type %d: %s", t, mg_err_name(rc));
        cr_assert_eq(f.type, t);
        cr_assert_eq(f.frame_len, n);
        cr_assert_eq(f.payload_off, 8 + f.command_len);
        cr_assert_eq(f.payload_len, n - 8 - f.command_len);
        cr_assert_eq(f.payload_len > 0, payload, "type %d", t);

        size_t a_len, b_len;
        uint8_t *a = pack(&cmd->base, &a_len);
        uint8_t *d = pack(&f.cmd->base, &b_len);
        cr_assert_eq(a_len, b_len, "type %d", t);
        cr_assert_eq(a_len, f.command_len, "type %d", t);
        cr_assert_arr_eq(a, d, a_len, "type %d", t);
        cr_assert_arr_eq(a, p + 8, a_len, "type %d", t);
        free(a);
        free(d);
        pw_frame_free(&f);
        cr_assert_null(f.cmd);
        pw_frame_free(&f); /* second call is a no-op */
        mg_buf_unref(b);
    }
    track_release();
}

static pw_frame decode_buf(mg_buf *b)
{
    pw_frame f;
    int rc = pw_frame_decode(mg_buf_data(b), mg_buf_len(b), &f);
    cr_assert_eq(rc, MG_OK, "%s", mg_err_name(rc));
    return f;
}

Test(wire, connect_fields)
{
    Magnetar__Pulsar__FeatureFlags ff = MAGNETAR__PULSAR__FEATURE_FLAGS__INIT;
    ff.has_supports_broker_entry_metadata = true;
    ff.supports_broker_entry_metadata = true;
    Magnetar__Pulsar__CommandConnect c = MAGNETAR__PULSAR__COMMAND_CONNECT__INIT;
    c.client_version = "pulsar-flex 1.1.1";
    c.has_protocol_version = true;
    c.protocol_version = 17;
    c.auth_method_name = "token";
    c.has_auth_data = true;
    c.auth_data.data = (uint8_t *)"jwt";
    c.auth_data.len = 3;
    c.feature_flags = &ff;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__CONNECT;
    cmd.connect = &c;
    mg_buf *b;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_OK);
    pw_frame f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__CONNECT);
    cr_assert_str_eq(f.cmd->connect->client_version, "pulsar-flex 1.1.1");
    cr_assert_eq(f.cmd->connect->protocol_version, 17);
    cr_assert_str_eq(f.cmd->connect->auth_method_name, "token");
    cr_assert_eq(f.cmd->connect->auth_data.len, 3);
    cr_assert_arr_eq(f.cmd->connect->auth_data.data, "jwt", 3);
    cr_assert_not_null(f.cmd->connect->feature_flags);
    cr_assert(f.cmd->connect->feature_flags->supports_broker_entry_metadata);
    cr_assert_not(f.cmd->connect->feature_flags->supports_auth_refresh);
    pw_frame_free(&f);
    mg_buf_unref(b);
}

Test(wire, subscribe_defaults_and_key_shared)
{
    Magnetar__Pulsar__IntRange r0 = MAGNETAR__PULSAR__INT_RANGE__INIT, r1 = r0;
    r0.start = 0;
    r0.end = 32767;
    r1.start = 32768;
    r1.end = 65535;
    Magnetar__Pulsar__IntRange *ranges[2] = { &r0, &r1 };
    Magnetar__Pulsar__KeySharedMeta ks = MAGNETAR__PULSAR__KEY_SHARED_META__INIT;
    ks.key_shared_mode = MAGNETAR__PULSAR__KEY_SHARED_MODE__STICKY;
    ks.n_hash_ranges = 2;
    ks.hash_ranges = ranges;
    Magnetar__Pulsar__CommandSubscribe s = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
    s.topic = "persistent://public/default/t";
    s.subscription = "sub";
    s.sub_type = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__SUB_TYPE__Key_Shared;
    s.consumer_id = 7;
    s.request_id = 8;
    s.key_shared_meta = &ks;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SUBSCRIBE;
    cmd.subscribe = &s;
    mg_buf *b;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_OK);
    pw_frame f = decode_buf(b);
    Magnetar__Pulsar__CommandSubscribe *d = f.cmd->subscribe;
    cr_assert_str_eq(d->topic, "persistent://public/default/t");
    cr_assert_eq(d->sub_type, 3);
    cr_assert_eq(d->consumer_id, 7);
    cr_assert_eq(d->request_id, 8);
    /* Absent fields read as their protocol defaults. */
    cr_assert_not(d->has_initial_position);
    cr_assert_eq(d->initial_position,
                 MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Latest);
    cr_assert_eq(d->durable, 1);
    cr_assert_eq(d->force_topic_creation, 1);
    cr_assert_eq(d->key_shared_meta->key_shared_mode, 1);
    cr_assert_eq(d->key_shared_meta->n_hash_ranges, 2);
    cr_assert_eq(d->key_shared_meta->hash_ranges[1]->start, 32768);
    cr_assert_eq(d->key_shared_meta->hash_ranges[1]->end, 65535);
    cr_assert_not(d->key_shared_meta->allow_out_of_order_delivery);
    pw_frame_free(&f);
    mg_buf_unref(b);
}

Test(wire, ack_with_many_ids)
{
    Magnetar__Pulsar__MessageIdData ids[3];
    Magnetar__Pulsar__MessageIdData *idp[3];
    for (int i = 0; i < 3; i++) {
        magnetar__pulsar__message_id_data__init(&ids[i]);
        ids[i].ledger_id = 10;
        ids[i].entry_id = (uint64_t)i;
        idp[i] = &ids[i];
    }
    Magnetar__Pulsar__CommandAck a = MAGNETAR__PULSAR__COMMAND_ACK__INIT;
    a.consumer_id = 5;
    a.ack_type = MAGNETAR__PULSAR__COMMAND_ACK__ACK_TYPE__Individual;
    a.n_message_id = 3;
    a.message_id = idp;
    a.has_request_id = true;
    a.request_id = 99;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__ACK;
    cmd.ack = &a;
    mg_buf *b;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_OK);
    pw_frame f = decode_buf(b);
    cr_assert_eq(f.cmd->ack->n_message_id, 3);
    cr_assert_eq(f.cmd->ack->message_id[2]->entry_id, 2);
    cr_assert_eq(f.cmd->ack->message_id[2]->partition, -1);   /* default */
    cr_assert_eq(f.cmd->ack->message_id[2]->batch_index, -1); /* default */
    cr_assert(f.cmd->ack->has_request_id);
    cr_assert_eq(f.cmd->ack->request_id, 99);
    pw_frame_free(&f);
    mg_buf_unref(b);
}

Test(wire, reply_helpers)
{
    mg_buf *b;
    pw_frame f;

    cr_assert_eq(pw_encode_success(17, &b), MG_OK);
    f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SUCCESS);
    cr_assert_eq(f.cmd->success->request_id, 17);
    pw_frame_free(&f);
    mg_buf_unref(b);

    cr_assert_eq(
        pw_encode_error(18, MAGNETAR__PULSAR__SERVER_ERROR__TopicNotFound, "no such topic", &b),
        MG_OK);
    f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__ERROR);
    cr_assert_eq(f.cmd->error->request_id, 18);
    cr_assert_eq(f.cmd->error->error, 11);
    cr_assert_str_eq(f.cmd->error->message, "no such topic");
    pw_frame_free(&f);
    mg_buf_unref(b);

    cr_assert_eq(pw_encode_error(19, MAGNETAR__PULSAR__SERVER_ERROR__UnknownError, NULL, &b),
                 MG_OK);
    f = decode_buf(b);
    cr_assert_str_eq(f.cmd->error->message, "");
    pw_frame_free(&f);
    mg_buf_unref(b);

    /* PING and PONG are the smallest frames: type and an empty sub-message. */
    static const uint8_t ping[] = { 0, 0, 0, 9, 0, 0, 0, 5, 0x08, 18, 0x92, 0x01, 0x00 };
    static const uint8_t pong[] = { 0, 0, 0, 9, 0, 0, 0, 5, 0x08, 19, 0x9a, 0x01, 0x00 };
    cr_assert_eq(pw_encode_ping(&b), MG_OK);
    cr_assert_eq(mg_buf_len(b), sizeof(ping));
    cr_assert_arr_eq(mg_buf_data(b), ping, sizeof(ping));
    mg_buf_unref(b);
    cr_assert_eq(pw_encode_pong(&b), MG_OK);
    cr_assert_eq(mg_buf_len(b), sizeof(pong));
    cr_assert_arr_eq(mg_buf_data(b), pong, sizeof(pong));
    mg_buf_unref(b);

    cr_assert_eq(pw_encode_send_receipt(3, 42, 45, 100, 7, &b), MG_OK);
    f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND_RECEIPT);
    cr_assert_eq(f.cmd->send_receipt->producer_id, 3);
    cr_assert_eq(f.cmd->send_receipt->sequence_id, 42);
    cr_assert(f.cmd->send_receipt->has_highest_sequence_id);
    cr_assert_eq(f.cmd->send_receipt->highest_sequence_id, 45);
    cr_assert_eq(f.cmd->send_receipt->message_id->ledger_id, 100);
    cr_assert_eq(f.cmd->send_receipt->message_id->entry_id, 7);
    cr_assert_not(f.cmd->send_receipt->message_id->has_partition);
    pw_frame_free(&f);
    mg_buf_unref(b);

    cr_assert_eq(pw_encode_send_receipt(3, 43, -1, 100, 8, &b), MG_OK);
    f = decode_buf(b);
    cr_assert_not(f.cmd->send_receipt->has_highest_sequence_id);
    pw_frame_free(&f);
    mg_buf_unref(b);

    cr_assert_eq(pw_encode_send_error(3, 44, MAGNETAR__PULSAR__SERVER_ERROR__ChecksumError,
                                      "checksum mismatch", &b),
                 MG_OK);
    f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND_ERROR);
    cr_assert_eq(f.cmd->send_error->sequence_id, 44);
    cr_assert_eq(f.cmd->send_error->error, 9);
    cr_assert_str_eq(f.cmd->send_error->message, "checksum mismatch");
    pw_frame_free(&f);
    mg_buf_unref(b);
}

/* A MESSAGE head followed by a stored entry (here: one with a 0x0e02 prefix, sent whole) is one
 * valid frame whose payload region is exactly the entry. */
Test(wire, message_head_and_entry)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *entry;
    cr_assert_eq(pw_send_payload_encode(&md, "hello", 5, &entry), MG_OK);
    mg_buf *head;
    cr_assert_eq(pw_encode_message_head(9, 100, 7, 2, 1, mg_buf_len(entry), &head), MG_OK);
    size_t n = mg_buf_len(head) + mg_buf_len(entry);
    uint8_t *frame = malloc(n);
    memcpy(frame, mg_buf_data(head), mg_buf_len(head));
    memcpy(frame + mg_buf_len(head), mg_buf_data(entry), mg_buf_len(entry));

    size_t frame_len;
    cr_assert_eq(pw_frame_size(frame, n, UINT32_MAX, &frame_len), MG_OK);
    cr_assert_eq(frame_len, n);
    pw_frame f;
    cr_assert_eq(pw_frame_decode(frame, n, &f), MG_OK);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE);
    cr_assert_eq(f.cmd->message->consumer_id, 9);
    cr_assert_eq(f.cmd->message->message_id->ledger_id, 100);
    cr_assert_eq(f.cmd->message->message_id->entry_id, 7);
    cr_assert_eq(f.cmd->message->message_id->partition, 2);
    cr_assert_eq(f.cmd->message->redelivery_count, 1);
    cr_assert_eq(f.payload_off, mg_buf_len(head));
    cr_assert_eq(f.payload_len, mg_buf_len(entry));
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(frame + f.payload_off, f.payload_len, true, &pl), MG_OK);
    cr_assert_eq(pl.data_len, 5);
    cr_assert_arr_eq(frame + f.payload_off + pl.data_off, "hello", 5);
    pw_frame_free(&f);

    /* Without partition and redelivery count those fields are absent. */
    mg_buf *head2;
    cr_assert_eq(pw_encode_message_head(9, 100, 7, -1, 0, 0, &head2), MG_OK);
    /* payload_len 0: the head alone is a complete frame. */
    f = decode_buf(head2);
    cr_assert_not(f.cmd->message->message_id->has_partition);
    cr_assert_not(f.cmd->message->has_redelivery_count);
    cr_assert_eq(f.payload_len, 0);
    pw_frame_free(&f);
    mg_buf_unref(head2);
    free(frame);
    mg_buf_unref(head);
    mg_buf_unref(entry);
}

/* --- stream framing -------------------------------------------------------------------------- */

Test(wire, frame_size_at_every_split)
{
    Magnetar__Pulsar__CommandSend send;
    Magnetar__Pulsar__BaseCommand cmd = send_command(&send);
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *b;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, "payload", 7, &b), MG_OK);
    const uint8_t *p = mg_buf_data(b);
    size_t n = mg_buf_len(b);
    for (size_t k = 0; k <= n; k++) {
        size_t frame_len = 12345;
        int rc = pw_frame_size(k > 0 ? p : NULL, k, UINT32_MAX, &frame_len);
        if (k < 4) {
            cr_assert_eq(rc, MG_EAGAIN, "k=%zu", k);
            cr_assert_eq(frame_len, 12345, "untouched on EAGAIN");
        } else {
            cr_assert_eq(rc, MG_OK, "k=%zu", k);
            cr_assert_eq(frame_len, n);
        }
    }
    mg_buf_unref(b);
}

/* Two frames back to back arrive in two reads split at every possible point; a reader that
 * waits for pw_frame_size's length decodes both, in order, exactly once. */
Test(wire, stream_reassembly_at_every_split)
{
    Magnetar__Pulsar__CommandSend send;
    Magnetar__Pulsar__BaseCommand cmd = send_command(&send);
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *a, *c;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, "abc", 3, &a), MG_OK);
    cr_assert_eq(pw_encode_ping(&c), MG_OK);
    size_t na = mg_buf_len(a), nc = mg_buf_len(c), total = na + nc;
    uint8_t *stream = malloc(total);
    memcpy(stream, mg_buf_data(a), na);
    memcpy(stream + na, mg_buf_data(c), nc);

    uint8_t *acc = malloc(total);
    for (size_t split = 0; split <= total; split++) {
        size_t have = 0, used = 0;
        int seen[2] = { -1, -1 };
        unsigned decoded = 0;
        const size_t chunks[2][2] = { { 0, split }, { split, total } };
        for (int r = 0; r < 2; r++) {
            size_t from = chunks[r][0], to = chunks[r][1];
            memcpy(acc + have, stream + from, to - from);
            have += to - from;
            for (int guard = 0; guard < 4; guard++) {
                size_t frame_len;
                int rc = pw_frame_size(acc + used, have - used, UINT32_MAX, &frame_len);
                if (rc == MG_EAGAIN || (rc == MG_OK && have - used < frame_len))
                    break;
                cr_assert_eq(rc, MG_OK);
                pw_frame f;
                cr_assert_eq(pw_frame_decode(acc + used, frame_len, &f), MG_OK, "split %zu", split);
                cr_assert_lt(decoded, 2);
                seen[decoded++] = f.type;
                pw_frame_free(&f);
                used += frame_len;
            }
        }
        cr_assert_eq(decoded, 2, "split %zu", split);
        cr_assert_eq(seen[0], MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND);
        cr_assert_eq(seen[1], MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PING);
        cr_assert_eq(used, total);
    }
    free(acc);
    free(stream);
    mg_buf_unref(a);
    mg_buf_unref(c);
}

Test(wire, frame_size_limits)
{
    uint8_t h[4];
    size_t len = 0;
    /* 4 + total_size is bounded, exactly at the limit is fine. */
    put_u32(h, 1000 - 4);
    cr_assert_eq(pw_frame_size(h, 4, 1000, &len), MG_OK);
    cr_assert_eq(len, 1000);
    put_u32(h, 1000 - 3);
    len = 7;
    cr_assert_eq(pw_frame_size(h, 4, 1000, &len), MG_ELIMIT);
    cr_assert_eq(len, 7);
    put_u32(h, 0xffffffffu);
    cr_assert_eq(pw_frame_size(h, 4, 5u * 1024 * 1024 + 10240, &len), MG_ELIMIT);
    /* A caller's bound above the codec's hard limit is capped by it. */
    put_u32(h, MG_PULSAR_FRAME_BYTES_MAX - 4);
    cr_assert_eq(pw_frame_size(h, 4, UINT32_MAX, &len), MG_OK);
    cr_assert_eq(len, MG_PULSAR_FRAME_BYTES_MAX);
    put_u32(h, MG_PULSAR_FRAME_BYTES_MAX - 3);
    cr_assert_eq(pw_frame_size(h, 4, UINT32_MAX, &len), MG_ELIMIT);
    /* total_size must at least hold command_size. */
    for (uint32_t t = 0; t < 4; t++) {
        put_u32(h, t);
        cr_assert_eq(pw_frame_size(h, 4, 1000, &len), MG_EPROTO, "total %u", t);
    }
    put_u32(h, 4);
    cr_assert_eq(pw_frame_size(h, 4, 1000, &len), MG_OK);
    cr_assert_eq(len, 8);
}

/* --- frame decode errors --------------------------------------------------------------------- */

Test(wire, command_size_beyond_total)
{
    static const uint8_t ping_cmd[] = { 0x08, 18, 0x92, 0x01, 0x00 };
    uint8_t f[32];
    size_t n = raw_frame(f, ping_cmd, sizeof(ping_cmd), NULL, 0);
    pw_frame out;
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_OK);
    pw_frame_free(&out);
    put_u32(f + 4, sizeof(ping_cmd) + 1); /* command_size > total_size - 4 */
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    cr_assert_null(out.cmd);
    put_u32(f + 4, 0xffffffffu);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
}

Test(wire, garbage_command)
{
    static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    uint8_t f[64];
    pw_frame out;
    size_t n = raw_frame(f, garbage, sizeof(garbage), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    cr_assert_null(out.cmd);
    /* An empty command lacks the required type. */
    n = raw_frame(f, NULL, 0, NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    /* A length-delimited field running past the command. */
    static const uint8_t truncated[] = { 0x08, 18, 0x92, 0x01, 0x05, 0x00 };
    n = raw_frame(f, truncated, sizeof(truncated), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    /* A required field of the sub-command missing: FLOW without message_permits. */
    static const uint8_t flow_no_permits[] = { 0x08, 11, 0x5a, 0x02, 0x08, 0x01 };
    n = raw_frame(f, flow_no_permits, sizeof(flow_no_permits), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    static const uint8_t flow_ok[] = { 0x08, 11, 0x5a, 0x04, 0x08, 0x01, 0x10, 0x64 };
    n = raw_frame(f, flow_ok, sizeof(flow_ok), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_OK);
    cr_assert_eq(out.cmd->flow->consumer_id, 1);
    cr_assert_eq(out.cmd->flow->message_permits, 100);
    pw_frame_free(&out);
}

Test(wire, type_without_sub_command)
{
    uint8_t f[32];
    pw_frame out;
    /* type = PING, field 18 absent */
    static const uint8_t no_ping[] = { 0x08, 18 };
    size_t n = raw_frame(f, no_ping, sizeof(no_ping), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
    cr_assert_null(out.cmd);
    /* type = SEND but the sub-command present is PING's */
    static const uint8_t wrong[] = { 0x08, 6, 0x92, 0x01, 0x00 };
    n = raw_frame(f, wrong, sizeof(wrong), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO);
}

Test(wire, unknown_type_is_not_supported)
{
    uint8_t f[32];
    pw_frame out;
    /* NEW_TXN (50) with an empty body in field 50: a valid command this codec does not know. */
    static const uint8_t new_txn[] = { 0x08, 50, 0x92, 0x03, 0x02, 0x08, 0x01 };
    size_t n = raw_frame(f, new_txn, sizeof(new_txn), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_ENOTSUP);
    cr_assert_eq(out.type, 50);
    cr_assert_null(out.cmd);
    cr_assert_eq(out.frame_len, n);
    cr_assert_str_eq(pw_command_type_name(out.type), "UNKNOWN");
    /* type 1 is not a command either */
    static const uint8_t one[] = { 0x08, 1 };
    n = raw_frame(f, one, sizeof(one), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_ENOTSUP);
    cr_assert_eq(out.type, 1);
}

Test(wire, trailing_bytes_and_bad_lengths)
{
    static const uint8_t ping_cmd[] = { 0x08, 18, 0x92, 0x01, 0x00 };
    static const uint8_t extra[] = { 1, 2, 3 };
    uint8_t f[32];
    pw_frame out;
    size_t n = raw_frame(f, ping_cmd, sizeof(ping_cmd), extra, sizeof(extra));
    cr_assert_eq(pw_frame_decode(f, n, &out), MG_EPROTO, "PING carries no payload");
    cr_assert_null(out.cmd);
    n = raw_frame(f, ping_cmd, sizeof(ping_cmd), NULL, 0);
    cr_assert_eq(pw_frame_decode(f, n - 1, &out), MG_EINVAL, "frame_len disagrees");
    cr_assert_eq(pw_frame_decode(f, 7, &out), MG_EINVAL);
}

/* --- payloads -------------------------------------------------------------------------------- */

Test(wire, send_frame_payload_fields)
{
    Magnetar__Pulsar__CommandSend send;
    Magnetar__Pulsar__BaseCommand cmd = send_command(&send);
    send.has_num_messages = true;
    send.num_messages = 10;
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    md.partition_key = "key-1";
    md.has_ordering_key = true;
    md.ordering_key.data = (uint8_t *)"ord";
    md.ordering_key.len = 3;
    md.has_num_messages_in_batch = true;
    md.num_messages_in_batch = 10;
    md.has_highest_sequence_id = true;
    md.highest_sequence_id = 51;
    md.has_event_time = true;
    md.event_time = 1699999999000ull;
    md.has_compression = true;
    md.compression = MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD;
    md.has_uncompressed_size = true;
    md.uncompressed_size = 4096;
    static const char data[] = "batch-bytes";
    mg_buf *b;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, data, sizeof(data) - 1, &b), MG_OK);
    const uint8_t *p = mg_buf_data(b);
    pw_frame f = decode_buf(b);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND);
    cr_assert_eq(f.cmd->send->producer_id, 3);
    cr_assert_eq(f.cmd->send->num_messages, 10);
    cr_assert_eq(f.payload_off + f.payload_len, mg_buf_len(b));

    pw_payload pl;
    cr_assert_eq(pw_payload_parse(p + f.payload_off, f.payload_len, true, &pl), MG_OK);
    cr_assert_not(pl.has_broker_entry_metadata);
    cr_assert_eq(pl.bem_len, 0);
    cr_assert_eq(pl.index, -1);
    cr_assert_eq(pl.client_off, 0);
    cr_assert_eq(pl.client_len, f.payload_len);
    cr_assert(pl.has_checksum);
    cr_assert_eq(pl.metadata_off, 10);
    cr_assert_eq(pl.data_off, 10 + pl.metadata_len);
    cr_assert_eq(pl.data_len, sizeof(data) - 1);
    cr_assert_arr_eq(p + f.payload_off + pl.data_off, data, sizeof(data) - 1);
    cr_assert_eq(pl.num_messages, 10);
    cr_assert_eq(pl.sequence_id, 42);
    cr_assert_eq(pl.highest_sequence_id, 51);
    cr_assert_eq(pl.publish_time_ms, 1700000000123ull);
    cr_assert_eq(pl.event_time_ms, 1699999999000ull);
    cr_assert_eq(pl.compression, MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD);
    cr_assert_eq(pl.uncompressed_size, 4096);
    cr_assert_eq(pl.producer_name_len, strlen("producer-1"));
    cr_assert_arr_eq(pl.producer_name, "producer-1", pl.producer_name_len);
    cr_assert_eq(pl.partition_key_len, 5);
    cr_assert_arr_eq(pl.partition_key, "key-1", 5);
    cr_assert_eq(pl.ordering_key_len, 3);
    cr_assert_arr_eq(pl.ordering_key, "ord", 3);
    /* Pointers are into the caller's bytes. */
    cr_assert(pl.producer_name >= (const char *)p &&
              pl.producer_name < (const char *)p + mg_buf_len(b));

    /* Head and client bytes built separately are the same bytes. */
    mg_buf *payload, *head;
    cr_assert_eq(pw_send_payload_encode(&md, data, sizeof(data) - 1, &payload), MG_OK);
    cr_assert_eq(pw_payload_head_encode(&cmd, mg_buf_len(payload), &head), MG_OK);
    cr_assert_eq(mg_buf_len(head) + mg_buf_len(payload), mg_buf_len(b));
    cr_assert_arr_eq(mg_buf_data(head), p, mg_buf_len(head));
    cr_assert_arr_eq(mg_buf_data(payload), p + mg_buf_len(head), mg_buf_len(payload));
    mg_buf_unref(head);
    mg_buf_unref(payload);
    pw_frame_free(&f);
    mg_buf_unref(b);
}

Test(wire, defaults_when_absent)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *b;
    cr_assert_eq(pw_send_payload_encode(&md, NULL, 0, &b), MG_OK);
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(mg_buf_data(b), mg_buf_len(b), true, &pl), MG_OK);
    cr_assert_eq(pl.num_messages, 1);
    cr_assert_eq(pl.highest_sequence_id, -1);
    cr_assert_eq(pl.event_time_ms, 0);
    cr_assert_eq(pl.compression, MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE);
    cr_assert_null(pl.partition_key);
    cr_assert_eq(pl.partition_key_len, 0);
    cr_assert_null(pl.ordering_key);
    cr_assert_eq(pl.data_len, 0);
    cr_assert_eq(pl.data_off, mg_buf_len(b));
    mg_buf_unref(b);
}

Test(wire, flipped_byte_is_corrupt)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *b;
    cr_assert_eq(pw_send_payload_encode(&md, "some data", 9, &b), MG_OK);
    uint8_t *p = mg_buf_data(b);
    size_t n = mg_buf_len(b);
    pw_payload pl;
    /* Every byte from the checksum value on is covered (either the stored CRC or the data). */
    for (size_t i = 2; i < n; i++) {
        p[i] ^= 0x01;
        cr_assert_eq(pw_payload_parse(p, n, true, &pl), MG_ECORRUPT, "byte %zu", i);
        p[i] ^= 0x01;
    }
    /* Without verification a changed data byte goes unnoticed. */
    p[n - 1] ^= 0x20;
    cr_assert_eq(pw_payload_parse(p, n, false, &pl), MG_OK);
    cr_assert(pl.has_checksum);
    p[n - 1] ^= 0x20;
    cr_assert_eq(pw_payload_parse(p, n, true, &pl), MG_OK);
    mg_buf_unref(b);
}

Test(wire, payload_without_checksum)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    size_t md_len;
    uint8_t *mdb = pack(&md.base, &md_len);
    uint8_t buf[256];
    put_u32(buf, (uint32_t)md_len);
    memcpy(buf + 4, mdb, md_len);
    memcpy(buf + 4 + md_len, "xyz", 3);
    size_t n = 4 + md_len + 3;
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(buf, n, true, &pl), MG_OK);
    cr_assert_not(pl.has_checksum);
    cr_assert_eq(pl.metadata_off, 4);
    cr_assert_eq(pl.metadata_len, md_len);
    cr_assert_eq(pl.data_len, 3);
    cr_assert_arr_eq(buf + pl.data_off, "xyz", 3);
    cr_assert_eq(pl.sequence_id, 42);
    free(mdb);
}

/* A stored entry: [0x0e02][size][BrokerEntryMetadata] written by hand, then client bytes. */
Test(wire, broker_entry_metadata_prefix)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *client;
    cr_assert_eq(pw_send_payload_encode(&md, "data", 4, &client), MG_OK);
    /* broker_timestamp = 1700000000500, index = 300: 1 + 6 + 1 + 2 = 10 bytes of protobuf */
    static const uint8_t bem[] = { 0x0e, 0x02, 0,    0,    0,    10,   0x08, 0xf4,
                                   0xd3, 0x95, 0xff, 0xbc, 0x31, 0x10, 0xac, 0x02 };
    uint8_t buf[256];
    memcpy(buf, bem, sizeof(bem));
    memcpy(buf + sizeof(bem), mg_buf_data(client), mg_buf_len(client));
    size_t n = sizeof(bem) + mg_buf_len(client);
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(buf, n, true, &pl), MG_OK);
    cr_assert(pl.has_broker_entry_metadata);
    cr_assert(pl.has_broker_timestamp);
    cr_assert(pl.has_index);
    cr_assert_eq(pl.broker_timestamp_ms, 1700000000500ull);
    cr_assert_eq(pl.index, 300);
    cr_assert_eq(pl.bem_len, sizeof(bem));
    cr_assert_eq(pl.client_off, sizeof(bem));
    cr_assert_eq(pl.client_len, mg_buf_len(client));
    cr_assert_arr_eq(buf + pl.client_off, mg_buf_data(client), pl.client_len);
    cr_assert(pl.has_checksum);
    cr_assert_eq(pl.data_len, 4);
    cr_assert_arr_eq(buf + pl.data_off, "data", 4);

    /* Only the index present. */
    static const uint8_t bem_index[] = { 0x0e, 0x02, 0, 0, 0, 2, 0x10, 0x05 };
    memcpy(buf, bem_index, sizeof(bem_index));
    memcpy(buf + sizeof(bem_index), mg_buf_data(client), mg_buf_len(client));
    n = sizeof(bem_index) + mg_buf_len(client);
    cr_assert_eq(pw_payload_parse(buf, n, true, &pl), MG_OK);
    cr_assert_not(pl.has_broker_timestamp);
    cr_assert_eq(pl.broker_timestamp_ms, 0);
    cr_assert_eq(pl.index, 5);
    cr_assert_eq(pl.client_off, sizeof(bem_index));

    /* The prefix's size running past the entry, or past the bound, or a truncated prefix. */
    uint8_t bad[16] = { 0x0e, 0x02, 0, 0, 0, 200 };
    cr_assert_eq(pw_payload_parse(bad, sizeof(bad), true, &pl), MG_EPROTO);
    uint8_t big[128] = { 0x0e, 0x02, 0, 0, 0, MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX + 1 };
    cr_assert_eq(pw_payload_parse(big, sizeof(big), true, &pl), MG_EPROTO);
    cr_assert_eq(pw_payload_parse(bad, 5, true, &pl), MG_EPROTO);
    /* A prefix whose protobuf does not parse (varint never ends). */
    uint8_t junk[16] = { 0x0e, 0x02, 0, 0, 0, 3, 0x08, 0xff, 0xff };
    cr_assert_eq(pw_payload_parse(junk, sizeof(junk), true, &pl), MG_EPROTO);
    mg_buf_unref(client);
}

/* One SEND frame written byte by byte from the specification, checksum computed independently
 * (bitwise CRC32C, reflected polynomial 0x82F63B78, of bytes 22..35):
 *   total_size 32, command_size 8, BaseCommand{type SEND, send{producer_id 1, sequence_id 7}},
 *   0x0e01, crc32c 0x90bb0e5a, metadata_size 8,
 *   MessageMetadata{producer_name "p", sequence_id 7, publish_time 1000}, data "hi". */
static const uint8_t k_spec_frame[36] = {
    0x00, 0x00, 0x00, 0x20,                         /* total_size */
    0x00, 0x00, 0x00, 0x08,                         /* command_size */
    0x08, 0x06,                                     /* type = SEND */
    0x32, 0x04, 0x08, 0x01, 0x10, 0x07,             /* send {producer_id 1, sequence_id 7} */
    0x0e, 0x01,                                     /* checksum magic */
    0x90, 0xbb, 0x0e, 0x5a,                         /* crc32c */
    0x00, 0x00, 0x00, 0x08,                         /* metadata_size */
    0x0a, 0x01, 'p',  0x10, 0x07, 0x18, 0xe8, 0x07, /* producer_name, sequence_id, publish_time */
    'h',  'i',                                      /* data */
};

Test(wire, spec_frame_by_hand)
{
    const uint8_t *p = k_spec_frame;
    size_t frame_len;
    cr_assert_eq(pw_frame_size(p, sizeof(k_spec_frame), 5u * 1024 * 1024, &frame_len), MG_OK);
    cr_assert_eq(frame_len, 36);
    pw_frame f;
    cr_assert_eq(pw_frame_decode(p, frame_len, &f), MG_OK);
    cr_assert_eq(f.type, MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND);
    cr_assert_str_eq(pw_command_type_name(f.type), "SEND");
    cr_assert_eq(f.command_len, 8);
    cr_assert_eq(f.cmd->send->producer_id, 1);
    cr_assert_eq(f.cmd->send->sequence_id, 7);
    cr_assert_eq(f.cmd->send->num_messages, 1); /* default */
    cr_assert_eq(f.payload_off, 16);
    cr_assert_eq(f.payload_len, 20);

    pw_payload pl;
    cr_assert_eq(pw_payload_parse(p + f.payload_off, f.payload_len, true, &pl), MG_OK);
    cr_assert(pl.has_checksum);
    cr_assert_eq(pl.checksum, 0x90bb0e5a);
    cr_assert_eq(pl.metadata_off, 10);
    cr_assert_eq(pl.metadata_len, 8);
    cr_assert_eq(pl.data_off, 18);
    cr_assert_eq(pl.data_len, 2);
    cr_assert_arr_eq(p + f.payload_off + pl.data_off, "hi", 2);
    cr_assert_eq(pl.producer_name_len, 1);
    cr_assert_eq(pl.producer_name[0], 'p');
    cr_assert_eq(pl.sequence_id, 7);
    cr_assert_eq(pl.publish_time_ms, 1000);
    cr_assert_eq(pl.num_messages, 1);

    /* Our encoder writes exactly these bytes for the same content. */
    Magnetar__Pulsar__CommandSend send = MAGNETAR__PULSAR__COMMAND_SEND__INIT;
    send.producer_id = 1;
    send.sequence_id = 7;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND;
    cmd.send = &send;
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = "p";
    md.sequence_id = 7;
    md.publish_time = 1000;
    mg_buf *b;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, "hi", 2, &b), MG_OK);
    cr_assert_eq(mg_buf_len(b), sizeof(k_spec_frame));
    cr_assert_arr_eq(mg_buf_data(b), k_spec_frame, sizeof(k_spec_frame));
    mg_buf_unref(b);
    pw_frame_free(&f);
}

Test(wire, payload_errors)
{
    pw_payload pl;
    uint8_t buf[512] = { 0 };
    cr_assert_eq(pw_payload_parse(buf, 0, true, &pl), MG_EPROTO, "empty");
    cr_assert_eq(pw_payload_parse(NULL, 0, true, &pl), MG_EPROTO, "empty");
    /* 0x0e01 with a truncated checksum. */
    static const uint8_t trunc[] = { 0x0e, 0x01, 0x00, 0x00 };
    cr_assert_eq(pw_payload_parse(trunc, sizeof(trunc), false, &pl), MG_EPROTO);
    /* metadata_size past the end. */
    put_u32(buf, 100);
    memset(buf + 4, 0, 50);
    cr_assert_eq(pw_payload_parse(buf, 54, true, &pl), MG_EPROTO);
    /* metadata_size truncated. */
    cr_assert_eq(pw_payload_parse(buf, 3, true, &pl), MG_EPROTO);
    /* Metadata missing publish_time (required). */
    static const uint8_t no_publish[] = { 0x0a, 0x01, 'p', 0x10, 0x07 };
    put_u32(buf, sizeof(no_publish));
    memcpy(buf + 4, no_publish, sizeof(no_publish));
    cr_assert_eq(pw_payload_parse(buf, 4 + sizeof(no_publish), true, &pl), MG_EPROTO);
    /* Metadata that is not protobuf. */
    put_u32(buf, 4);
    memset(buf + 4, 0xff, 4);
    cr_assert_eq(pw_payload_parse(buf, 8, true, &pl), MG_EPROTO);
    /* num_messages_in_batch outside [1, MG_PULSAR_BATCH_MESSAGES_MAX]. */
    const int32_t counts[] = { 0, -1, MG_PULSAR_BATCH_MESSAGES_MAX + 1, 1,
                               MG_PULSAR_BATCH_MESSAGES_MAX };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        Magnetar__Pulsar__MessageMetadata md = test_metadata();
        md.has_num_messages_in_batch = true;
        md.num_messages_in_batch = counts[i];
        mg_buf *b;
        cr_assert_eq(pw_send_payload_encode(&md, NULL, 0, &b), MG_OK);
        int rc = pw_payload_parse(mg_buf_data(b), mg_buf_len(b), true, &pl);
        if (counts[i] >= 1 && counts[i] <= MG_PULSAR_BATCH_MESSAGES_MAX) {
            cr_assert_eq(rc, MG_OK, "count %d", counts[i]);
            cr_assert_eq(pl.num_messages, counts[i]);
        } else {
            cr_assert_eq(rc, MG_EPROTO, "count %d", counts[i]);
        }
        mg_buf_unref(b);
    }
}

/* Metadata larger than the stack arena (many properties) still parses, and the full unpack
 * gives every property back. */
Test(wire, large_metadata_and_full_unpack)
{
    enum { NPROP = 200 };
    Magnetar__Pulsar__KeyValue kv[NPROP];
    Magnetar__Pulsar__KeyValue *kvp[NPROP];
    char keys[NPROP][16], vals[NPROP][32];
    for (int i = 0; i < NPROP; i++) {
        magnetar__pulsar__key_value__init(&kv[i]);
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        snprintf(vals[i], sizeof(vals[i]), "value-number-%d", i);
        kv[i].key = keys[i];
        kv[i].value = vals[i];
        kvp[i] = &kv[i];
    }
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    md.n_properties = NPROP;
    md.properties = kvp;
    md.partition_key = "pk";
    mg_buf *b;
    cr_assert_eq(pw_send_payload_encode(&md, "d", 1, &b), MG_OK);
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(mg_buf_data(b), mg_buf_len(b), true, &pl), MG_OK);
    cr_assert_gt(pl.metadata_len, 4096);
    cr_assert_eq(pl.partition_key_len, 2);
    Magnetar__Pulsar__MessageMetadata *full;
    cr_assert_eq(pw_metadata_unpack(mg_buf_data(b), &pl, &full), MG_OK);
    cr_assert_eq(full->n_properties, NPROP);
    cr_assert_str_eq(full->properties[199]->key, "k199");
    cr_assert_str_eq(full->properties[199]->value, "value-number-199");
    pw_metadata_free(full);
    pw_metadata_free(NULL);
    mg_buf_unref(b);
}

/* --- encoder errors -------------------------------------------------------------------------- */

Test(wire, encode_rejects_inconsistent_commands)
{
    mg_buf *b = NULL;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PING; /* ping not set */
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_EINVAL);
    cr_assert_null(b);
    cmd.type = (Magnetar__Pulsar__BaseCommand__Type)50;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_EINVAL);
    cr_assert_eq(pw_command_encode(NULL, &b), MG_EINVAL);

    /* A required string missing. */
    Magnetar__Pulsar__CommandError err = MAGNETAR__PULSAR__COMMAND_ERROR__INIT;
    err.request_id = 1;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__ERROR;
    cmd.error = &err;
    cr_assert_eq(pw_command_encode(&cmd, &b), MG_EINVAL);

    /* SEND needs the payload encoders, PING cannot have a payload. */
    Magnetar__Pulsar__CommandSend send;
    Magnetar__Pulsar__BaseCommand scmd = send_command(&send);
    cr_assert_eq(pw_command_encode(&scmd, &b), MG_EINVAL);
    Magnetar__Pulsar__CommandPing ping = MAGNETAR__PULSAR__COMMAND_PING__INIT;
    Magnetar__Pulsar__BaseCommand pcmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    pcmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PING;
    pcmd.ping = &ping;
    cr_assert_eq(pw_payload_head_encode(&pcmd, 10, &b), MG_EINVAL);
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    cr_assert_eq(pw_payload_frame_encode(&pcmd, &md, "x", 1, &b), MG_EINVAL);

    /* Payload too large for any frame. */
    cr_assert_eq(pw_payload_head_encode(&scmd, MG_PULSAR_FRAME_BYTES_MAX, &b), MG_ELIMIT);
    cr_assert_null(b);

    /* Metadata without its required fields, or data missing. */
    Magnetar__Pulsar__MessageMetadata bad = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    cr_assert_eq(pw_send_payload_encode(&bad, "x", 1, &b), MG_EINVAL);
    cr_assert_eq(pw_send_payload_encode(&md, NULL, 1, &b), MG_EINVAL);
    cr_assert_eq(pw_payload_frame_encode(&scmd, &bad, "x", 1, &b), MG_EINVAL);
    cr_assert_null(b);
}

/* --- allocation failures --------------------------------------------------------------------- */

Test(wire, allocation_failures)
{
    Magnetar__Pulsar__CommandSend send;
    Magnetar__Pulsar__BaseCommand cmd = send_command(&send);
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    mg_buf *b;
    cr_assert_eq(pw_payload_frame_encode(&cmd, &md, "x", 1, &b), MG_OK);

    /* Decoding fails cleanly at each allocation it makes, then succeeds. */
    bool succeeded = false;
    for (int64_t k = 0; k < 16 && !succeeded; k++) {
        pw_frame f;
        mg_alloc_fail_after(k);
        int rc = pw_frame_decode(mg_buf_data(b), mg_buf_len(b), &f);
        mg_alloc_fail_reset();
        if (rc == MG_OK) {
            succeeded = true;
            pw_frame_free(&f);
        } else {
            cr_assert_eq(rc, MG_ENOMEM, "k=%lld", (long long)k);
            cr_assert_null(f.cmd);
        }
    }
    cr_assert(succeeded);

    mg_buf *x = NULL;
    mg_alloc_fail_after(0);
    cr_assert_eq(pw_encode_ping(&x), MG_ENOMEM);
    cr_assert_eq(pw_send_payload_encode(&md, "x", 1, &x), MG_ENOMEM);
    mg_alloc_fail_reset();
    cr_assert_null(x);

    /* Metadata too large for the stack arena spills to the heap, whose failure is reported. */
    enum { NPROP = 300 };
    Magnetar__Pulsar__KeyValue kv[NPROP];
    Magnetar__Pulsar__KeyValue *kvp[NPROP];
    for (int i = 0; i < NPROP; i++) {
        magnetar__pulsar__key_value__init(&kv[i]);
        kv[i].key = "a-property-key";
        kv[i].value = "a-property-value";
        kvp[i] = &kv[i];
    }
    md.n_properties = NPROP;
    md.properties = kvp;
    mg_buf *big;
    cr_assert_eq(pw_send_payload_encode(&md, NULL, 0, &big), MG_OK);
    pw_payload pl;
    mg_alloc_fail_after(0);
    int rc = pw_payload_parse(mg_buf_data(big), mg_buf_len(big), true, &pl);
    mg_alloc_fail_reset();
    cr_assert_eq(rc, MG_ENOMEM);
    cr_assert_eq(pw_payload_parse(mg_buf_data(big), mg_buf_len(big), true, &pl), MG_OK);
    mg_buf_unref(big);
    mg_buf_unref(b);
}

/* --- field number 0 (found by the pulsar_frame fuzz target) -------------------------------------
 * protobuf-c keeps a field numbered 0 as an unknown field when its tag is written in two bytes
 * (0x80 0x00), and would write it back as a one-byte 0 tag that it refuses itself; every other
 * protobuf implementation refuses field 0. The codec refuses it in commands (at any depth),
 * MessageMetadata and BrokerEntryMetadata. */

/* CONNECTED{server_version "magnetar", protocol_version 19} with, inside it, field 0 (overlong
 * tag 0x80 0x00, varint value 0): the shape of the fuzzer's input. */
static const uint8_t k_connected_field0[] = {
    0x08, 0x03,                                          /* type = CONNECTED */
    0x1a, 0x0f,                                          /* connected, 15 bytes */
    0x0a, 0x08, 'm',  'a', 'g', 'n', 'e', 't', 'a', 'r', /* server_version */
    0x10, 0x13,                                          /* protocol_version 19 */
    0x80, 0x00, 0x00,                                    /* field 0, varint 0 */
};

Test(wire, command_with_field_zero_is_malformed)
{
    uint8_t frame[64];
    size_t n = raw_frame(frame, k_connected_field0, sizeof(k_connected_field0), NULL, 0);
    pw_frame f;
    cr_assert_eq(pw_frame_decode(frame, n, &f), MG_EPROTO);
    cr_assert_null(f.cmd);
    /* The same command without the field decodes, and encodes back. */
    uint8_t good[sizeof(k_connected_field0)];
    memcpy(good, k_connected_field0, sizeof(good));
    good[3] = 0x0c; /* connected is 12 bytes now */
    n = raw_frame(frame, good, sizeof(good) - 3, NULL, 0);
    cr_assert_eq(pw_frame_decode(frame, n, &f), MG_OK);
    cr_assert_str_eq(f.cmd->connected->server_version, "magnetar");
    mg_buf *b = NULL;
    cr_assert_eq(pw_command_encode(f.cmd, &b), MG_OK);
    pw_frame again;
    cr_assert_eq(pw_frame_decode(mg_buf_data(b), mg_buf_len(b), &again), MG_OK);
    pw_frame_free(&again);
    mg_buf_unref(b);
    pw_frame_free(&f);
    /* A one-byte 0 tag was refused before: protobuf-c itself rejects it. */
    static const uint8_t plain0[] = { 0x08, 0x12, 0x92, 0x01, 0x00, 0x00, 0x00 };
    n = raw_frame(frame, plain0, sizeof(plain0), NULL, 0);
    cr_assert_eq(pw_frame_decode(frame, n, &f), MG_EPROTO);
}

Test(wire, metadata_with_field_zero_is_malformed)
{
    Magnetar__Pulsar__MessageMetadata md = test_metadata();
    size_t md_len;
    uint8_t *mdb = pack(&md.base, &md_len);
    uint8_t buf[256];
    /* The metadata with field 0 appended (overlong tag, varint value 5). */
    put_u32(buf, (uint32_t)md_len + 3);
    memcpy(buf + 4, mdb, md_len);
    buf[4 + md_len] = 0x80;
    buf[5 + md_len] = 0x00;
    buf[6 + md_len] = 0x05;
    memcpy(buf + 7 + md_len, "xyz", 3);
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(buf, 10 + md_len, false, &pl), MG_EPROTO);
    /* Without it, the same payload parses. */
    put_u32(buf, (uint32_t)md_len);
    memcpy(buf + 4 + md_len, "xyz", 3);
    cr_assert_eq(pw_payload_parse(buf, 7 + md_len, false, &pl), MG_OK);
    /* Field 0 inside BrokerEntryMetadata. */
    uint8_t stored[300];
    static const uint8_t bem[] = {
        0x0e, 0x02, 0x00, 0x00, 0x00, 0x05, 0x08, 0x01, 0x80, 0x00, 0x00
    }; /* broker_timestamp 1, f0 */
    memcpy(stored, bem, sizeof(bem));
    memcpy(stored + sizeof(bem), buf, 7 + md_len);
    cr_assert_eq(pw_payload_parse(stored, sizeof(bem) + 7 + md_len, false, &pl), MG_EPROTO);
    stored[5] = 0x02; /* only broker_timestamp: the entry parses */
    memmove(stored + 8, stored + sizeof(bem), 7 + md_len);
    cr_assert_eq(pw_payload_parse(stored, 8 + 7 + md_len, false, &pl), MG_OK);
    cr_assert(pl.has_broker_timestamp);
    free(mdb);
}
