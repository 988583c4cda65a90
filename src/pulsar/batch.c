/*
 * Batch payloads (declared in wire.h, which describes the layout): splitting an uncompressed
 * batch into its messages and appending a message to one. The producer of the C client builds
 * batches with pw_batch_put, its consumer splits them with pw_batch_next, and a Kafka shim that
 * converts record batches goes through the same two functions.
 *
 * Design notes:
 *   1. Every size comes from the network: each is checked against the bytes left before use.
 *   2. The metadata is unpacked with protobuf-c through mg_malloc, so that fault injection
 *      reaches it and an allocation failure is told apart from bad input; the payload is never
 *      copied.
 */
#include "pulsar/wire.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <string.h>

typedef struct pw__heap {
    bool failed;
} pw__heap;

static void *pw__heap_alloc(void *data, size_t size)
{
    void *p = mg_malloc(size);
    if (p == NULL && data != NULL)
        ((pw__heap *)data)->failed = true;
    return p;
}

static void pw__heap_free(void *data, void *ptr)
{
    (void)data;
    mg_free(ptr);
}

int pw_batch_next(const uint8_t *batch, size_t batch_len, size_t *pos, pw_batch_msg *out)
{
    MG_ASSERT(pos != NULL && out != NULL && *pos <= batch_len);
    out->smm = NULL;
    size_t left = batch_len - *pos;
    if (left < 4)
        return MG_EPROTO;
    const uint8_t *p = batch + *pos;
    uint32_t size = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    if (size > left - 4)
        return MG_EPROTO;
    pw__heap heap = { false };
    ProtobufCAllocator alloc = { pw__heap_alloc, pw__heap_free, &heap };
    Magnetar__Pulsar__SingleMessageMetadata *smm =
        magnetar__pulsar__single_message_metadata__unpack(&alloc, size, p + 4);
    if (smm == NULL)
        return heap.failed ? MG_ENOMEM : MG_EPROTO;
    if (smm->payload_size < 0 || (size_t)smm->payload_size > left - 4 - size ||
        pw_has_field_zero(&smm->base)) {
        magnetar__pulsar__single_message_metadata__free_unpacked(smm, &alloc);
        return MG_EPROTO;
    }
    out->smm = smm;
    out->payload = p + 4 + size;
    out->payload_len = (size_t)smm->payload_size;
    *pos += 4 + size + out->payload_len;
    return MG_OK;
}

void pw_batch_msg_free(pw_batch_msg *m)
{
    if (m == NULL || m->smm == NULL)
        return;
    ProtobufCAllocator alloc = { pw__heap_alloc, pw__heap_free, NULL };
    magnetar__pulsar__single_message_metadata__free_unpacked(m->smm, &alloc);
    m->smm = NULL;
}

size_t pw_batch_msg_size(const Magnetar__Pulsar__SingleMessageMetadata *smm)
{
    MG_ASSERT(smm != NULL && smm->payload_size >= 0);
    return 4 + magnetar__pulsar__single_message_metadata__get_packed_size(smm) +
           (size_t)smm->payload_size;
}

int pw_batch_put(uint8_t *dst, size_t dst_capacity,
                 const Magnetar__Pulsar__SingleMessageMetadata *smm, const void *payload,
                 size_t payload_len, size_t *written)
{
    if (smm == NULL ||
        smm->base.descriptor != &magnetar__pulsar__single_message_metadata__descriptor ||
        written == NULL || (payload == NULL && payload_len > 0) ||
        (dst == NULL && dst_capacity > 0))
        return MG_EINVAL;
    if (payload_len > INT32_MAX)
        return MG_ELIMIT;
    if (smm->payload_size != (int32_t)payload_len || !protobuf_c_message_check(&smm->base))
        return MG_EINVAL;
    size_t sz = magnetar__pulsar__single_message_metadata__get_packed_size(smm);
    if (sz > UINT32_MAX || dst_capacity < 4 || sz > dst_capacity - 4 ||
        payload_len > dst_capacity - 4 - sz)
        return MG_ELIMIT;
    dst[0] = (uint8_t)(sz >> 24);
    dst[1] = (uint8_t)(sz >> 16);
    dst[2] = (uint8_t)(sz >> 8);
    dst[3] = (uint8_t)sz;
    size_t n = magnetar__pulsar__single_message_metadata__pack(smm, dst + 4);
    MG_ASSERT(n == sz);
    if (payload_len > 0)
        memcpy(dst + 4 + sz, payload, payload_len);
    *written = 4 + sz + payload_len;
    return MG_OK;
}
