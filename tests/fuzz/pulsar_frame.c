/*
 * Fuzz target pulsar_frame: a Pulsar client's (or a broker's) byte stream as the broker and the
 * C client read it from a socket (broker/server.c conn_process, client/conn.c): pw_frame_size,
 * then pw_frame_decode of every whole frame, then what the handlers parse next: the topic name
 * of PRODUCER, SUBSCRIBE, LOOKUP and PARTITIONED_METADATA (pw_topic_name_parse) and the payload
 * of SEND and MESSAGE (pw_payload_parse with the checksum checked, pw_metadata_unpack).
 *
 * Checks beyond "no crash, no sanitizer report": a decoded command encodes again
 * (pw_command_encode, or pw_payload_head_encode for SEND and MESSAGE) and that frame decodes to
 * the same type, since the broker forwards and answers what it decoded; pw_frame_decode's
 * offsets stay inside the frame; pw_payload_parse's regions stay inside the payload.
 */
#include "pulsar/limits.h"
#include "pulsar/wire.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frames decoded from one input at most: bounds the loop (each frame is at least 8 bytes, so an
 * input of libFuzzer's default 4096 bytes holds at most 512). */
#define FRAMES_PER_INPUT_MAX 1024u

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "pulsar_frame: invariant broken: %s\n", what);
        abort();
    }
}

static void parse_topic(const char *topic)
{
    pw_topic_name tn;
    char err[128];
    if (topic != NULL && pw_topic_name_parse(topic, &tn, err, sizeof(err)) == MG_OK) {
        check(strlen(tn.full) <= MG_PULSAR_TOPIC_BYTES_MAX, "topic name longer than its limit");
        char ml[MG_PULSAR_TOPIC_BYTES_MAX + 16];
        (void)pw_topic_ml_name(&tn, ml, sizeof(ml));
        pw_topic_name part;
        if (tn.partition < 0)
            (void)pw_topic_partition_name(&tn, 3, &part);
    }
}

static void parse_payload(const uint8_t *p, size_t len)
{
    pw_payload pl;
    if (pw_payload_parse(p, len, true, &pl) != MG_OK)
        return;
    check(pl.client_off + pl.client_len == len, "client bytes do not end the payload");
    check(pl.data_off + pl.data_len == len, "data does not end the payload");
    check(pl.metadata_off + pl.metadata_len <= pl.data_off, "metadata overlaps the data");
    check(pl.producer_name != NULL, "no producer name after success");
    check(pl.num_messages >= 1 && pl.num_messages <= MG_PULSAR_BATCH_MESSAGES_MAX,
          "batch count out of range");
    Magnetar__Pulsar__MessageMetadata *md = NULL;
    if (pw_metadata_unpack(p, &pl, &md) == MG_OK) {
        check(md != NULL && md->producer_name != NULL, "unpacked metadata without producer");
        pw_metadata_free(md);
    }
}

static void reencode(const pw_frame *f)
{
    mg_buf *out = NULL;
    int rc;
    if (f->type == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND ||
        f->type == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE)
        rc = pw_payload_head_encode(f->cmd, 0, &out);
    else
        rc = pw_command_encode(f->cmd, &out);
    if (rc == MG_ELIMIT)
        return;
    check(rc == MG_OK, "a decoded command does not encode");
    size_t frame_len = 0;
    check(pw_frame_size(mg_buf_data(out), mg_buf_len(out), MG_PULSAR_FRAME_BYTES_MAX, &frame_len) ==
                  MG_OK &&
              frame_len == mg_buf_len(out),
          "an encoded frame's size field is wrong");
    pw_frame again;
    check(pw_frame_decode(mg_buf_data(out), frame_len, &again) == MG_OK,
          "a re-encoded command does not decode");
    check(again.type == f->type, "a re-encoded command changed type");
    pw_frame_free(&again);
    mg_buf_unref(out);
}

static void handle(const uint8_t *frame, const pw_frame *f)
{
    const Magnetar__Pulsar__BaseCommand *cmd = f->cmd;
    check(pw_command_body(cmd) != NULL, "decoded command without its body");
    check(pw_command_type_name(f->type) != NULL, "no type name");
    check(f->payload_off <= f->frame_len && f->payload_off + f->payload_len == f->frame_len,
          "payload region outside the frame");
    switch (f->type) {
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PRODUCER:
        parse_topic(cmd->producer->topic);
        break;
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SUBSCRIBE:
        parse_topic(cmd->subscribe->topic);
        break;
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__LOOKUP:
        parse_topic(cmd->lookup_topic->topic);
        break;
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PARTITIONED_METADATA:
        parse_topic(cmd->partition_metadata->topic);
        break;
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND:
    case MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE:
        parse_payload(frame + f->payload_off, f->payload_len);
        break;
    default:
        break;
    }
    reencode(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    for (unsigned n = 0; n < FRAMES_PER_INPUT_MAX; n++) {
        size_t frame_len = 0;
        int rc = pw_frame_size(data + pos, size - pos, MG_PULSAR_FRAME_BYTES_MAX, &frame_len);
        if (rc != MG_OK)
            break; /* MG_EAGAIN: the stream ends; any other: the connection is closed */
        check(frame_len >= 8, "a frame shorter than its two size fields");
        if (frame_len > size - pos)
            break; /* the rest of the frame never arrives */
        /* The frame in a buffer of its own size, so ASan sees any read past it. */
        uint8_t *frame = malloc(frame_len);
        if (frame == NULL)
            break;
        memcpy(frame, data + pos, frame_len);
        pw_frame f;
        rc = pw_frame_decode(frame, frame_len, &f);
        if (rc == MG_OK) {
            handle(frame, &f);
            pw_frame_free(&f);
            check(f.cmd == NULL, "pw_frame_free left the command");
        } else {
            check(f.cmd == NULL, "a failed decode left a command");
        }
        free(frame);
        if (rc != MG_OK && rc != MG_ENOTSUP)
            break; /* the broker closes the connection */
        pos += frame_len;
    }
    return 0;
}
