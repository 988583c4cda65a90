/*
 * Fuzz target pulsar_payload: the payload of a SEND or MESSAGE frame, or a stored entry, as the
 * broker and the C client read it:
 *   - the broker: pw_payload_parse with the checksum checked (a producer's SEND, broker/topic.c)
 *     and without (dispatch of a stored entry, broker/sub.c, which then hashes the ordering or
 *     partition key for Key_Shared);
 *   - the client (client/consumer.c entry_parse and deliver_one): pw_payload_parse,
 *     pw_metadata_unpack, pw_decompress of a compressed batch to its uncompressed_size, then
 *     each message of the batch split off with pw_batch_next (SingleMessageMetadata and its
 *     payload), its properties and key read.
 *
 * Checks beyond "no crash, no sanitizer report": every region pw_payload_parse reports lies
 * inside the payload; the keys it locates agree with what protobuf-c unpacked; a batch never
 * yields more messages than its count and each message lies inside the batch; NONE
 * decompression returns the bytes unchanged.
 */
#include "pulsar/wire.h"
#include "pulsar/compress.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "pulsar_payload: invariant broken: %s\n", what);
        abort();
    }
}

static volatile uint8_t sink;

static void touch(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= b[i];
    sink = x;
}

static void broker_side(const uint8_t *p, size_t len)
{
    pw_payload pl;
    if (pw_payload_parse(p, len, false, &pl) != MG_OK)
        return;
    check(pl.bem_len == pl.client_off && pl.client_off + pl.client_len == len,
          "client bytes outside the payload");
    check(pl.metadata_off >= pl.client_off && pl.metadata_off + pl.metadata_len <= pl.data_off &&
              pl.data_off + pl.data_len == len,
          "metadata or data outside the payload");
    const uint8_t *end = p + len;
    check(pl.producer_name >= (const char *)p &&
              pl.producer_name_len <= (size_t)(end - (const uint8_t *)pl.producer_name),
          "producer name outside the payload");
    if (pl.ordering_key != NULL) {
        check(pl.ordering_key >= p && pl.ordering_key_len <= (size_t)(end - pl.ordering_key),
              "ordering key outside the payload");
        touch(pl.ordering_key, pl.ordering_key_len);
    }
    if (pl.partition_key != NULL) {
        check(pl.partition_key >= p && pl.partition_key_len <= (size_t)(end - pl.partition_key),
              "partition key outside the payload");
        touch(pl.partition_key, pl.partition_key_len);
    }
    touch(pl.producer_name, pl.producer_name_len);
}

static void client_side(const uint8_t *p, size_t len)
{
    pw_payload pl;
    int rc = pw_payload_parse(p, len, true, &pl);
    if (rc != MG_OK)
        return;
    Magnetar__Pulsar__MessageMetadata *md = NULL;
    if (pw_metadata_unpack(p, &pl, &md) != MG_OK)
        return;
    check(strlen(md->producer_name) <= pl.producer_name_len, "producer name longer than found");
    check((md->partition_key != NULL) == (pl.partition_key != NULL),
          "partition key located differently from protobuf-c");
    const uint8_t *dp = p + pl.data_off;
    size_t dlen = pl.data_len;
    mg_buf *inflated = NULL;
    if (md->has_compression && md->compression != MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE) {
        rc = pw_decompress((int)md->compression, dp, dlen, md->uncompressed_size, &inflated);
        if (rc != MG_OK) {
            check(inflated == NULL, "a failed decompression left a buffer");
            pw_metadata_free(md);
            return;
        }
        check(mg_buf_len(inflated) == md->uncompressed_size, "decompressed to another size");
        dp = mg_buf_data(inflated);
        dlen = mg_buf_len(inflated);
    } else {
        rc = pw_decompress(MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE, dp, dlen, dlen, &inflated);
        check(rc == MG_OK || rc == MG_ENOMEM, "NONE refused its own length");
        if (rc == MG_OK) {
            check(mg_buf_len(inflated) == dlen && memcmp(mg_buf_data(inflated), dp, dlen) == 0,
                  "NONE changed the bytes");
            mg_buf_unref(inflated);
            inflated = NULL;
        }
    }
    touch(dp, dlen);
    if (md->has_num_messages_in_batch) {
        int32_t count = md->num_messages_in_batch < 1 ? 1 : md->num_messages_in_batch;
        size_t pos = 0;
        for (int32_t i = 0; i < count; i++) {
            pw_batch_msg m;
            size_t before = pos;
            if (pw_batch_next(dp, dlen, &pos, &m) != MG_OK) {
                check(m.smm == NULL && pos == before, "a failed split moved on or left metadata");
                break;
            }
            const Magnetar__Pulsar__SingleMessageMetadata *smm = m.smm;
            check(pos > before && pos <= dlen, "a split did not move inside the batch");
            check(m.payload >= dp && m.payload + m.payload_len == dp + pos,
                  "a message outside its batch");
            touch(m.payload, m.payload_len);
            for (size_t k = 0; k < smm->n_properties; k++)
                check(smm->properties[k]->key != NULL && smm->properties[k]->value != NULL,
                      "a property without key or value");
            if (smm->partition_key != NULL)
                touch(smm->partition_key, strlen(smm->partition_key));
            pw_batch_msg_free(&m);
        }
    }
    mg_buf_unref(inflated);
    pw_metadata_free(md);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input's size, so ASan sees any read past the payload. */
    uint8_t *p = malloc(size > 0 ? size : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    broker_side(p, size);
    client_side(p, size);
    free(p);
    return 0;
}
