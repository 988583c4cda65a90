/*
 * The Pulsar frame and payload codec (declared in wire.h, which describes the formats).
 *
 * Design notes:
 *   1. Sizes are read from the network, so every one is checked against what is left before it
 *      is used, in 64-bit arithmetic (no sum of two u32 values can wrap).
 *   2. Commands are unpacked with protobuf-c through an allocator built on mg_malloc, so that
 *      fault injection reaches them and an allocation failure is told apart from bad input.
 *   3. The table of command types is the protobuf enum itself: a type is known when the
 *      BaseCommand.Type descriptor has it, and its sub-command is the BaseCommand field with the
 *      same number (Pulsar numbers them so). Nothing here can drift from the .proto file.
 *   4. MessageMetadata is parsed on every dispatched entry. It is unpacked into a stack arena
 *      (heap only past BR__ARENA_BYTES), the needed scalars are copied out, and the strings the
 *      caller wants (producer name, keys) are located in the caller's own bytes by one scan of
 *      the top-level protobuf fields, so the result holds no allocation at all. Unless the arena
 *      spilled, the unpacked message is dropped without protobuf-c's freeing walk.
 */
#include "pulsar/wire.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "pulsar/limits.h"

#include <stdalign.h>
#include <stddef.h>
#include <string.h>

/* Scratch memory for one MessageMetadata or BrokerEntryMetadata unpack: the message struct
 * (~300 bytes) plus strings and a few properties fit; larger metadata spills to the heap. */
#define BR__ARENA_BYTES 4096

/* --- Byte order ------------------------------------------------------------------------------ */

static uint32_t br__get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint16_t br__get_u16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static void br__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void br__put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* --- Allocators ------------------------------------------------------------------------------ */

/* Heap allocator for commands: mg_malloc, remembering whether an allocation failed. */
typedef struct br__heap {
    bool failed;
} br__heap;

static void *br__heap_alloc(void *data, size_t size)
{
    void *p = mg_malloc(size);
    if (p == NULL && data != NULL)
        ((br__heap *)data)->failed = true;
    return p;
}

static void br__heap_free(void *data, void *ptr)
{
    (void)data;
    mg_free(ptr);
}

/* Bump allocator over caller memory, spilling to mg_malloc; frees of arena memory are no-ops. */
typedef struct br__arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    size_t spilled; /* live heap blocks: while 0, the unpacked message needs no freeing */
    bool failed;
} br__arena;

static void *br__arena_alloc(void *data, size_t size)
{
    br__arena *a = data;
    /* Round to 16 (max_align_t on x86-64 and arm64); never hand out 0 bytes, so that every
     * returned pointer lies strictly inside the arena and free can tell it apart. */
    size_t need = size == 0 ? 16 : (size + 15) & ~(size_t)15;
    if (need >= size && a->cap - a->used >= need) {
        void *p = a->base + a->used;
        a->used += need;
        return p;
    }
    void *p = mg_malloc(size);
    if (p == NULL)
        a->failed = true;
    else
        a->spilled++;
    return p;
}

static void br__arena_free(void *data, void *ptr)
{
    br__arena *a = data;
    uintptr_t u = (uintptr_t)ptr, lo = (uintptr_t)a->base;
    if (ptr == NULL || (u >= lo && u < lo + a->cap))
        return;
    MG_ASSERT(a->spilled > 0);
    a->spilled--;
    mg_free(ptr);
}

/* --- Command types --------------------------------------------------------------------------- */

static const ProtobufCFieldDescriptor *br__type_field(int type)
{
    if (protobuf_c_enum_descriptor_get_value(&magnetar__pulsar__base_command__type__descriptor,
                                             type) == NULL)
        return NULL;
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &magnetar__pulsar__base_command__descriptor, (unsigned)type);
    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_OPTIONAL)
        return NULL;
    return f;
}

const ProtobufCMessage *pw_command_body(const Magnetar__Pulsar__BaseCommand *cmd)
{
    if (cmd == NULL || cmd->type < 0)
        return NULL;
    const ProtobufCFieldDescriptor *f = br__type_field((int)cmd->type);
    if (f == NULL)
        return NULL;
    const ProtobufCMessage *const *slot =
        (const ProtobufCMessage *const *)((const char *)cmd + f->offset);
    return *slot;
}

const char *pw_command_type_name(int type)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &magnetar__pulsar__base_command__type__descriptor, type);
    return v != NULL ? v->name : "UNKNOWN";
}

bool pw_has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        if (m->unknown_fields[i].tag == 0)
            return true;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *member = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)((const char *)m + f->quantifier_offset);
            const ProtobufCMessage *const *items =
                *(const ProtobufCMessage *const *const *)(const void *)member;
            for (size_t k = 0; k < n; k++) {
                if (pw_has_field_zero(items[k]))
                    return true;
            }
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)(const void *)member;
            if (sub != NULL && pw_has_field_zero(sub))
                return true;
        }
    }
    return false;
}

static bool br__has_payload(int type)
{
    return type == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND ||
           type == MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE;
}

/* --- Frames ---------------------------------------------------------------------------------- */

int pw_frame_size(const uint8_t *p, size_t n, uint32_t frame_max_bytes, size_t *frame_len)
{
    if (n < 4)
        return MG_EAGAIN;
    uint64_t max =
        frame_max_bytes < MG_PULSAR_FRAME_BYTES_MAX ? frame_max_bytes : MG_PULSAR_FRAME_BYTES_MAX;
    uint64_t total = br__get_u32(p);
    if (total < 4)
        return MG_EPROTO;
    if (total + 4 > max)
        return MG_ELIMIT;
    *frame_len = (size_t)(total + 4);
    return MG_OK;
}

int pw_frame_decode(const uint8_t *p, size_t frame_len, pw_frame *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL || frame_len < PW_FRAME_HEADER_BYTES || frame_len > MG_PULSAR_FRAME_BYTES_MAX ||
        (uint64_t)br__get_u32(p) + 4 != frame_len)
        return MG_EINVAL;
    uint64_t total = br__get_u32(p);
    uint64_t cmd_len = br__get_u32(p + 4);
    if (cmd_len > total - 4)
        return MG_EPROTO;

    br__heap heap = { false };
    ProtobufCAllocator alloc = { br__heap_alloc, br__heap_free, &heap };
    Magnetar__Pulsar__BaseCommand *cmd =
        magnetar__pulsar__base_command__unpack(&alloc, (size_t)cmd_len, p + PW_FRAME_HEADER_BYTES);
    if (cmd == NULL)
        return heap.failed ? MG_ENOMEM : MG_EPROTO;

    out->type = (int)cmd->type;
    out->frame_len = (uint32_t)frame_len;
    out->command_len = (uint32_t)cmd_len;
    out->payload_off = (uint32_t)(PW_FRAME_HEADER_BYTES + cmd_len);
    out->payload_len = (uint32_t)(frame_len - out->payload_off);

    int rc = MG_OK;
    if (pw_has_field_zero(&cmd->base))
        rc = MG_EPROTO;
    else if (br__type_field(out->type) == NULL)
        rc = MG_ENOTSUP;
    else if (pw_command_body(cmd) == NULL)
        rc = MG_EPROTO;
    else if (out->payload_len > 0 && !br__has_payload(out->type))
        rc = MG_EPROTO;
    if (rc != MG_OK) {
        magnetar__pulsar__base_command__free_unpacked(cmd, &alloc);
        return rc;
    }
    out->cmd = cmd;
    return MG_OK;
}

void pw_frame_free(pw_frame *f)
{
    if (f == NULL || f->cmd == NULL)
        return;
    ProtobufCAllocator alloc = { br__heap_alloc, br__heap_free, NULL };
    magnetar__pulsar__base_command__free_unpacked(f->cmd, &alloc);
    f->cmd = NULL;
}

/* --- Payloads -------------------------------------------------------------------------------- */

/* Reads a varint from p[*pos, end); false when malformed or truncated. */
static bool br__varint(const uint8_t *p, size_t end, size_t *pos, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (*pos >= end)
            return false;
        uint8_t b = p[(*pos)++];
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* Finds the last occurrence of length-delimited fields 1 (producer_name), 6 (partition_key) and
 * 18 (ordering_key) in the MessageMetadata p[off, off + len), which protobuf-c has already
 * accepted; any inconsistency still fails safely with MG_EPROTO. */
static int br__locate_keys(const uint8_t *p, size_t off, size_t len, pw_payload *out)
{
    size_t pos = off, end = off + len;
    while (pos < end) {
        uint64_t key, n;
        if (!br__varint(p, end, &pos, &key))
            return MG_EPROTO;
        uint64_t field = key >> 3;
        if (field == 0)
            return MG_EPROTO; /* see pw_has_field_zero */
        switch (key & 7) {
        case 0:
            if (!br__varint(p, end, &pos, &n))
                return MG_EPROTO;
            break;
        case 1:
            if (end - pos < 8)
                return MG_EPROTO;
            pos += 8;
            break;
        case 5:
            if (end - pos < 4)
                return MG_EPROTO;
            pos += 4;
            break;
        case 2:
            if (!br__varint(p, end, &pos, &n) || n > end - pos)
                return MG_EPROTO;
            if (field == 1) {
                out->producer_name = (const char *)(p + pos);
                out->producer_name_len = (size_t)n;
            } else if (field == 6) {
                out->partition_key = p + pos;
                out->partition_key_len = (size_t)n;
            } else if (field == 18) {
                out->ordering_key = p + pos;
                out->ordering_key_len = (size_t)n;
            }
            pos += (size_t)n;
            break;
        default:
            return MG_EPROTO;
        }
    }
    return out->producer_name != NULL ? MG_OK : MG_EPROTO;
}

/* --- BrokerEntryMetadata --------------------------------------------------------------------- */

/* protobuf-c packs a message's set fields in field-number order, a uint64 as its plain varint:
 * with both has_ flags set this is exactly 0x08 <varint ts> 0x10 <varint index>, the bytes
 * stored entries have always carried (the golden tests in tests/unit/pulsar pin them). */
size_t pw_bem_encode(int64_t broker_timestamp_ms, int64_t index, uint8_t *dst)
{
    Magnetar__Pulsar__BrokerEntryMetadata bem = MAGNETAR__PULSAR__BROKER_ENTRY_METADATA__INIT;
    bem.has_broker_timestamp = true;
    bem.broker_timestamp = (uint64_t)broker_timestamp_ms;
    bem.has_index = true;
    bem.index = (uint64_t)index;
    size_t n = magnetar__pulsar__broker_entry_metadata__pack(&bem, dst + 6);
    MG_ASSERT(n <= PW_BEM_PREFIX_BYTES_MAX - 6);
    br__put_u16(dst, PW_MAGIC_BROKER_ENTRY_METADATA);
    br__put_u32(dst + 2, (uint32_t)n);
    return 6 + n;
}

int pw_bem_parse(const uint8_t *p, size_t len, pw_bem *out)
{
    if (p == NULL || len < 6 || br__get_u16(p) != PW_MAGIC_BROKER_ENTRY_METADATA)
        return MG_EPROTO;
    uint32_t size = br__get_u32(p + 2);
    if (size > MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX || size > len - 6)
        return MG_EPROTO;
    alignas(16) uint8_t mem[512];
    br__arena arena = { mem, sizeof(mem), 0, 0, false };
    ProtobufCAllocator alloc = { br__arena_alloc, br__arena_free, &arena };
    Magnetar__Pulsar__BrokerEntryMetadata *bem =
        magnetar__pulsar__broker_entry_metadata__unpack(&alloc, size, p + 6);
    if (bem == NULL)
        return arena.failed ? MG_ENOMEM : MG_EPROTO;
    if (pw_has_field_zero(&bem->base)) {
        if (arena.spilled > 0)
            magnetar__pulsar__broker_entry_metadata__free_unpacked(bem, &alloc);
        return MG_EPROTO;
    }
    out->len = 6 + (size_t)size;
    out->has_broker_timestamp = bem->has_broker_timestamp;
    out->broker_timestamp_ms = bem->has_broker_timestamp ? bem->broker_timestamp : 0;
    out->has_index = bem->has_index;
    out->index = bem->has_index ? (int64_t)bem->index : -1;
    if (arena.spilled > 0)
        magnetar__pulsar__broker_entry_metadata__free_unpacked(bem, &alloc);
    return MG_OK;
}

int pw_payload_parse(const uint8_t *p, size_t len, bool verify_checksum, pw_payload *out)
{
    memset(out, 0, sizeof(*out));
    out->index = -1;
    if (p == NULL && len > 0)
        return MG_EINVAL;

    size_t pos = 0;
    if (len >= 2 && br__get_u16(p) == PW_MAGIC_BROKER_ENTRY_METADATA) {
        pw_bem bem;
        MG_TRY(pw_bem_parse(p, len, &bem));
        out->has_broker_entry_metadata = true;
        out->bem_len = bem.len;
        out->has_broker_timestamp = bem.has_broker_timestamp;
        out->broker_timestamp_ms = bem.broker_timestamp_ms;
        out->has_index = bem.has_index;
        out->index = bem.index;
        pos = out->bem_len;
    }
    out->client_off = pos;
    out->client_len = len - pos;

    if (len - pos >= 2 && br__get_u16(p + pos) == PW_MAGIC_CHECKSUM) {
        if (len - pos < 6)
            return MG_EPROTO;
        out->has_checksum = true;
        out->checksum = br__get_u32(p + pos + 2);
        pos += 6;
        if (verify_checksum && mg_crc32c(0, p + pos, len - pos) != out->checksum)
            return MG_ECORRUPT;
    }

    if (len - pos < 4)
        return MG_EPROTO;
    uint32_t md_len = br__get_u32(p + pos);
    pos += 4;
    if (md_len > len - pos)
        return MG_EPROTO;
    out->metadata_off = pos;
    out->metadata_len = md_len;
    out->data_off = pos + md_len;
    out->data_len = len - out->data_off;

    alignas(16) uint8_t mem[BR__ARENA_BYTES];
    br__arena arena = { mem, sizeof(mem), 0, 0, false };
    ProtobufCAllocator alloc = { br__arena_alloc, br__arena_free, &arena };
    Magnetar__Pulsar__MessageMetadata *md =
        magnetar__pulsar__message_metadata__unpack(&alloc, md_len, p + pos);
    if (md == NULL)
        return arena.failed ? MG_ENOMEM : MG_EPROTO;

    int rc = MG_OK;
    int32_t num = md->has_num_messages_in_batch ? md->num_messages_in_batch : 1;
    if (pw_has_field_zero(&md->base) || num < 1 || num > MG_PULSAR_BATCH_MESSAGES_MAX) {
        rc = MG_EPROTO;
    } else {
        out->num_messages = num;
        out->batched = md->has_num_messages_in_batch;
        out->sequence_id = (int64_t)md->sequence_id;
        out->highest_sequence_id =
            md->has_highest_sequence_id ? (int64_t)md->highest_sequence_id : -1;
        out->publish_time_ms = md->publish_time;
        out->event_time_ms = md->has_event_time ? md->event_time : 0;
        out->compression = (int)md->compression;
        out->uncompressed_size = md->uncompressed_size;
    }
    /* The arena is this function's stack; only spilled blocks need the walk that frees them. */
    if (arena.spilled > 0)
        magnetar__pulsar__message_metadata__free_unpacked(md, &alloc);
    if (rc != MG_OK)
        return rc;
    return br__locate_keys(p, out->metadata_off, out->metadata_len, out);
}

int pw_metadata_unpack(const uint8_t *p, const pw_payload *pl,
                       Magnetar__Pulsar__MessageMetadata **out)
{
    if (p == NULL || pl == NULL || out == NULL)
        return MG_EINVAL;
    br__heap heap = { false };
    ProtobufCAllocator alloc = { br__heap_alloc, br__heap_free, &heap };
    Magnetar__Pulsar__MessageMetadata *md =
        magnetar__pulsar__message_metadata__unpack(&alloc, pl->metadata_len, p + pl->metadata_off);
    if (md == NULL)
        return heap.failed ? MG_ENOMEM : MG_EPROTO;
    *out = md;
    return MG_OK;
}

void pw_metadata_free(Magnetar__Pulsar__MessageMetadata *md)
{
    if (md == NULL)
        return;
    ProtobufCAllocator alloc = { br__heap_alloc, br__heap_free, NULL };
    magnetar__pulsar__message_metadata__free_unpacked(md, &alloc);
}

/* --- Encoding -------------------------------------------------------------------------------- */

/* Checks a command to encode; payload tells whether the frame will carry a payload. */
static int br__check_command(const Magnetar__Pulsar__BaseCommand *cmd, bool payload)
{
    if (cmd == NULL || cmd->base.descriptor != &magnetar__pulsar__base_command__descriptor)
        return MG_EINVAL;
    if (pw_command_body(cmd) == NULL || br__has_payload((int)cmd->type) != payload)
        return MG_EINVAL;
    if (!protobuf_c_message_check(&cmd->base))
        return MG_EINVAL;
    return MG_OK;
}

/* Writes [total_size][command_size][cmd] at dst (room checked by the caller). */
static size_t br__put_head(uint8_t *dst, const Magnetar__Pulsar__BaseCommand *cmd, size_t cmd_len,
                           size_t payload_len)
{
    br__put_u32(dst, (uint32_t)(4 + cmd_len + payload_len));
    br__put_u32(dst + 4, (uint32_t)cmd_len);
    size_t n = magnetar__pulsar__base_command__pack(cmd, dst + PW_FRAME_HEADER_BYTES);
    MG_ASSERT(n == cmd_len);
    return PW_FRAME_HEADER_BYTES + n;
}

/* Writes [0x0e01][crc][md_size][md][data] at dst (room checked by the caller). */
static size_t br__put_send_payload(uint8_t *dst, const Magnetar__Pulsar__MessageMetadata *md,
                                   size_t md_len, const void *data, size_t data_len)
{
    br__put_u16(dst, PW_MAGIC_CHECKSUM);
    uint8_t *body = dst + 6;
    br__put_u32(body, (uint32_t)md_len);
    size_t n = magnetar__pulsar__message_metadata__pack(md, body + 4);
    MG_ASSERT(n == md_len);
    if (data_len > 0)
        memcpy(body + 4 + md_len, data, data_len);
    size_t body_len = 4 + md_len + data_len;
    br__put_u32(dst + 2, mg_crc32c(0, body, body_len));
    return 6 + body_len;
}

static int br__check_metadata(const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                              size_t data_len)
{
    if (md == NULL || md->base.descriptor != &magnetar__pulsar__message_metadata__descriptor ||
        (data == NULL && data_len > 0))
        return MG_EINVAL;
    if (!protobuf_c_message_check(&md->base))
        return MG_EINVAL;
    return MG_OK;
}

/* pw_command_encode without the checks, for commands built correctly here. */
static int br__encode_simple(const Magnetar__Pulsar__BaseCommand *cmd, mg_buf **out)
{
    size_t cmd_len = magnetar__pulsar__base_command__get_packed_size(cmd);
    if (cmd_len > MG_PULSAR_FRAME_BYTES_MAX - PW_FRAME_HEADER_BYTES)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(PW_FRAME_HEADER_BYTES + cmd_len);
    if (b == NULL)
        return MG_ENOMEM;
    mg_buf_set_len(b, br__put_head(mg_buf_data(b), cmd, cmd_len, 0));
    *out = b;
    return MG_OK;
}

int pw_command_encode(const Magnetar__Pulsar__BaseCommand *cmd, mg_buf **out)
{
    MG_TRY(br__check_command(cmd, false));
    return br__encode_simple(cmd, out);
}

/* pw_payload_head_encode without the checks, for commands built correctly here. */
static int br__encode_head(const Magnetar__Pulsar__BaseCommand *cmd, size_t payload_len,
                           mg_buf **out)
{
    size_t cmd_len = magnetar__pulsar__base_command__get_packed_size(cmd);
    if (cmd_len > MG_PULSAR_FRAME_BYTES_MAX - PW_FRAME_HEADER_BYTES ||
        payload_len > MG_PULSAR_FRAME_BYTES_MAX - PW_FRAME_HEADER_BYTES - cmd_len)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(PW_FRAME_HEADER_BYTES + cmd_len);
    if (b == NULL)
        return MG_ENOMEM;
    mg_buf_set_len(b, br__put_head(mg_buf_data(b), cmd, cmd_len, payload_len));
    *out = b;
    return MG_OK;
}

int pw_payload_head_encode(const Magnetar__Pulsar__BaseCommand *cmd, size_t payload_len,
                           mg_buf **out)
{
    MG_TRY(br__check_command(cmd, true));
    return br__encode_head(cmd, payload_len, out);
}

int pw_payload_head_encode_prefixed(const Magnetar__Pulsar__BaseCommand *cmd, const uint8_t *prefix,
                                    size_t prefix_len, size_t payload_len, mg_buf **out)
{
    MG_TRY(br__check_command(cmd, true));
    if (prefix_len > MG_PULSAR_FRAME_BYTES_MAX || payload_len > MG_PULSAR_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    size_t cmd_len = magnetar__pulsar__base_command__get_packed_size(cmd);
    if (PW_FRAME_HEADER_BYTES + (uint64_t)cmd_len + prefix_len + payload_len >
        MG_PULSAR_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(PW_FRAME_HEADER_BYTES + cmd_len + prefix_len);
    if (b == NULL)
        return MG_ENOMEM;
    uint8_t *dst = mg_buf_data(b);
    size_t n = br__put_head(dst, cmd, cmd_len, prefix_len + payload_len);
    memcpy(dst + n, prefix, prefix_len);
    mg_buf_set_len(b, n + prefix_len);
    *out = b;
    return MG_OK;
}

int pw_send_payload_encode(const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                           size_t data_len, mg_buf **out)
{
    MG_TRY(br__check_metadata(md, data, data_len));
    size_t md_len = magnetar__pulsar__message_metadata__get_packed_size(md);
    if (md_len > MG_PULSAR_FRAME_BYTES_MAX || data_len > MG_PULSAR_FRAME_BYTES_MAX - md_len ||
        10 + md_len + data_len > MG_PULSAR_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(10 + md_len + data_len);
    if (b == NULL)
        return MG_ENOMEM;
    mg_buf_set_len(b, br__put_send_payload(mg_buf_data(b), md, md_len, data, data_len));
    *out = b;
    return MG_OK;
}

int pw_payload_frame_encode(const Magnetar__Pulsar__BaseCommand *cmd,
                            const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                            size_t data_len, mg_buf **out)
{
    MG_TRY(br__check_command(cmd, true));
    MG_TRY(br__check_metadata(md, data, data_len));
    size_t cmd_len = magnetar__pulsar__base_command__get_packed_size(cmd);
    size_t md_len = magnetar__pulsar__message_metadata__get_packed_size(md);
    uint64_t payload_len = 10 + (uint64_t)md_len + data_len;
    if (PW_FRAME_HEADER_BYTES + (uint64_t)cmd_len + payload_len > MG_PULSAR_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(PW_FRAME_HEADER_BYTES + cmd_len + (size_t)payload_len);
    if (b == NULL)
        return MG_ENOMEM;
    uint8_t *dst = mg_buf_data(b);
    size_t n = br__put_head(dst, cmd, cmd_len, (size_t)payload_len);
    n += br__put_send_payload(dst + n, md, md_len, data, data_len);
    mg_buf_set_len(b, n);
    *out = b;
    return MG_OK;
}

/* --- Common replies -------------------------------------------------------------------------- */

int pw_encode_success(uint64_t request_id, mg_buf **out)
{
    Magnetar__Pulsar__CommandSuccess success = MAGNETAR__PULSAR__COMMAND_SUCCESS__INIT;
    success.request_id = request_id;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SUCCESS;
    cmd.success = &success;
    return br__encode_simple(&cmd, out);
}

int pw_encode_error(uint64_t request_id, int server_error, const char *message, mg_buf **out)
{
    Magnetar__Pulsar__CommandError error = MAGNETAR__PULSAR__COMMAND_ERROR__INIT;
    error.request_id = request_id;
    error.error = (Magnetar__Pulsar__ServerError)server_error;
    error.message = (char *)(message != NULL ? message : "");
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__ERROR;
    cmd.error = &error;
    return br__encode_simple(&cmd, out);
}

int pw_encode_ping(mg_buf **out)
{
    Magnetar__Pulsar__CommandPing ping = MAGNETAR__PULSAR__COMMAND_PING__INIT;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PING;
    cmd.ping = &ping;
    return br__encode_simple(&cmd, out);
}

int pw_encode_pong(mg_buf **out)
{
    Magnetar__Pulsar__CommandPong pong = MAGNETAR__PULSAR__COMMAND_PONG__INIT;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__PONG;
    cmd.pong = &pong;
    return br__encode_simple(&cmd, out);
}

int pw_encode_send_receipt(uint64_t producer_id, int64_t sequence_id, int64_t highest_sequence_id,
                           int64_t ledger_id, int64_t entry_id, mg_buf **out)
{
    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = (uint64_t)ledger_id;
    id.entry_id = (uint64_t)entry_id;
    Magnetar__Pulsar__CommandSendReceipt receipt = MAGNETAR__PULSAR__COMMAND_SEND_RECEIPT__INIT;
    receipt.producer_id = producer_id;
    receipt.sequence_id = (uint64_t)sequence_id;
    receipt.message_id = &id;
    if (highest_sequence_id >= 0) {
        receipt.has_highest_sequence_id = true;
        receipt.highest_sequence_id = (uint64_t)highest_sequence_id;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND_RECEIPT;
    cmd.send_receipt = &receipt;
    return br__encode_simple(&cmd, out);
}

int pw_encode_send_error(uint64_t producer_id, int64_t sequence_id, int server_error,
                         const char *message, mg_buf **out)
{
    Magnetar__Pulsar__CommandSendError error = MAGNETAR__PULSAR__COMMAND_SEND_ERROR__INIT;
    error.producer_id = producer_id;
    error.sequence_id = (uint64_t)sequence_id;
    error.error = (Magnetar__Pulsar__ServerError)server_error;
    error.message = (char *)(message != NULL ? message : "");
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__SEND_ERROR;
    cmd.send_error = &error;
    return br__encode_simple(&cmd, out);
}

int pw_encode_message_head(uint64_t consumer_id, int64_t ledger_id, int64_t entry_id,
                           int32_t partition, uint32_t redelivery_count, size_t payload_len,
                           mg_buf **out)
{
    Magnetar__Pulsar__MessageIdData id = MAGNETAR__PULSAR__MESSAGE_ID_DATA__INIT;
    id.ledger_id = (uint64_t)ledger_id;
    id.entry_id = (uint64_t)entry_id;
    if (partition >= 0) {
        id.has_partition = true;
        id.partition = partition;
    }
    Magnetar__Pulsar__CommandMessage msg = MAGNETAR__PULSAR__COMMAND_MESSAGE__INIT;
    msg.consumer_id = consumer_id;
    msg.message_id = &id;
    if (redelivery_count > 0) {
        msg.has_redelivery_count = true;
        msg.redelivery_count = redelivery_count;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = MAGNETAR__PULSAR__BASE_COMMAND__TYPE__MESSAGE;
    cmd.message = &msg;
    return br__encode_head(&cmd, payload_len, out);
}
