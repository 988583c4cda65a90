/*
 * The GOIM packet codec (declared in packet.h, which describes the format).
 *
 * Design notes:
 *   1. Lengths come from the network, so each is checked against what is left before it is
 *      used, in 64-bit arithmetic (no sum of a u32 and a size can wrap).
 *   2. A batch's inner packets are checked like a stream's, but against the batch: a packLen
 *      that runs past the end of the batch is malformed (not "wait for more"), since the batch
 *      is whole.
 *   3. The iterator's error is sticky, so a caller that loops until something other than MG_OK
 *      cannot walk past a bad packet.
 */
#include "chat_gateway/packet.h"

#include "common/assert.h"
#include "common/error.h"

#include <string.h>

static uint32_t cg__get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint16_t cg__get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | (unsigned)p[1]);
}

static void cg__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void cg__put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int cg_packet_size(const uint8_t *p, size_t n, uint32_t body_max_bytes, size_t *packet_len)
{
    if (n < 4)
        return MG_EAGAIN;
    uint64_t max = body_max_bytes < CG_PACKET_BODY_BYTES_ABS_MAX ? body_max_bytes
                                                                 : CG_PACKET_BODY_BYTES_ABS_MAX;
    uint64_t pack_len = cg__get_u32(p);
    if (pack_len < CG_PACKET_HEADER_BYTES)
        return MG_EPROTO;
    if (pack_len - CG_PACKET_HEADER_BYTES > max)
        return MG_ELIMIT;
    if (n < 6)
        return MG_EAGAIN;
    if (cg__get_u16(p + 4) != CG_PACKET_HEADER_BYTES)
        return MG_EPROTO;
    if (n < CG_PACKET_HEADER_BYTES)
        return MG_EAGAIN;
    *packet_len = (size_t)pack_len;
    return MG_OK;
}

/* Fills *out from the header at p and the body after it; the caller checked packLen. */
static void cg__header(const uint8_t *p, cg_packet *out)
{
    out->packet_len = cg__get_u32(p);
    out->ver = cg__get_u16(p + 6);
    out->op = cg__get_u32(p + 8);
    out->seq = cg__get_u32(p + 12);
    out->body_len = out->packet_len - CG_PACKET_HEADER_BYTES;
    out->body = out->body_len > 0 ? p + CG_PACKET_HEADER_BYTES : NULL;
}

int cg_packet_decode(const uint8_t *p, size_t packet_len, cg_packet *out)
{
    memset(out, 0, sizeof(*out));
    if (p == NULL || packet_len < CG_PACKET_HEADER_BYTES ||
        packet_len - CG_PACKET_HEADER_BYTES > CG_PACKET_BODY_BYTES_ABS_MAX ||
        cg__get_u32(p) != packet_len)
        return MG_EINVAL;
    if (cg__get_u16(p + 4) != CG_PACKET_HEADER_BYTES)
        return MG_EPROTO;
    cg__header(p, out);
    return MG_OK;
}

/* Writes the header of a packet with a body of body_len bytes (within the absolute bound). */
static void cg__put_header(uint8_t *dst, uint16_t ver, uint32_t op, uint32_t seq, size_t body_len)
{
    MG_ASSERT(body_len <= CG_PACKET_BODY_BYTES_ABS_MAX);
    cg__put_u32(dst, (uint32_t)(CG_PACKET_HEADER_BYTES + body_len));
    cg__put_u16(dst + 4, CG_PACKET_HEADER_BYTES);
    cg__put_u16(dst + 6, ver);
    cg__put_u32(dst + 8, op);
    cg__put_u32(dst + 12, seq);
}

int cg_packet_encode(uint16_t ver, uint32_t op, uint32_t seq, const void *body, size_t body_len,
                     uint8_t *dst, size_t dst_capacity, size_t *written)
{
    MG_ASSERT(body != NULL || body_len == 0);
    if (body_len > CG_PACKET_BODY_BYTES_ABS_MAX)
        return MG_ELIMIT;
    if (dst == NULL || dst_capacity < CG_PACKET_HEADER_BYTES + body_len)
        return MG_EINVAL;
    cg__put_header(dst, ver, op, seq, body_len);
    if (body_len > 0)
        memcpy(dst + CG_PACKET_HEADER_BYTES, body, body_len);
    *written = CG_PACKET_HEADER_BYTES + body_len;
    return MG_OK;
}

int cg_packet_encode_buf(uint16_t ver, uint32_t op, uint32_t seq, const void *body, size_t body_len,
                         mg_buf **out)
{
    *out = NULL;
    if (body_len > CG_PACKET_BODY_BYTES_ABS_MAX)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(CG_PACKET_HEADER_BYTES + body_len);
    if (b == NULL)
        return MG_ENOMEM;
    size_t len = 0;
    int rc = cg_packet_encode(ver, op, seq, body, body_len, mg_buf_data(b), mg_buf_cap(b), &len);
    MG_ASSERT(rc == MG_OK);
    mg_buf_set_len(b, len);
    *out = b;
    return MG_OK;
}

static const char *const cg__op_names[CG_OP_COUNT] = {
    [CG_OP_HANDSHAKE] = "HANDSHAKE",
    [CG_OP_HANDSHAKE_REPLY] = "HANDSHAKE_REPLY",
    [CG_OP_HEARTBEAT] = "HEARTBEAT",
    [CG_OP_HEARTBEAT_REPLY] = "HEARTBEAT_REPLY",
    [CG_OP_SEND_MSG] = "SEND_MSG",
    [CG_OP_SEND_MSG_REPLY] = "SEND_MSG_REPLY",
    [CG_OP_DISCONNECT_REPLY] = "DISCONNECT_REPLY",
    [CG_OP_AUTH] = "AUTH",
    [CG_OP_AUTH_REPLY] = "AUTH_REPLY",
    [CG_OP_RAW] = "RAW",
    [CG_OP_PROTO_READY] = "PROTO_READY",
    [CG_OP_PROTO_FINISH] = "PROTO_FINISH",
    [CG_OP_CHANGE_ROOM] = "CHANGE_ROOM",
    [CG_OP_CHANGE_ROOM_REPLY] = "CHANGE_ROOM_REPLY",
    [CG_OP_SUB] = "SUB",
    [CG_OP_SUB_REPLY] = "SUB_REPLY",
    [CG_OP_UNSUB] = "UNSUB",
    [CG_OP_UNSUB_REPLY] = "UNSUB_REPLY",
};

const char *cg_op_name(uint32_t op)
{
    return op < CG_OP_COUNT ? cg__op_names[op] : "UNKNOWN";
}

void cg_heartbeat_reply_body(uint32_t online_count, uint8_t body[CG_HEARTBEAT_REPLY_BODY_BYTES])
{
    cg__put_u32(body, online_count);
}

int cg_heartbeat_reply_count(const cg_packet *reply, uint32_t *online_count)
{
    if (reply->body_len != CG_HEARTBEAT_REPLY_BODY_BYTES)
        return MG_EPROTO;
    *online_count = cg__get_u32(reply->body);
    return MG_OK;
}

void cg_batch_iter_init(cg_batch_iter *it, const uint8_t *body, size_t body_len)
{
    MG_ASSERT(body != NULL || body_len == 0);
    it->body = body;
    it->body_len = body_len;
    it->pos = 0;
    it->packet_count = 0;
    it->error = MG_OK;
}

int cg_batch_next(cg_batch_iter *it, cg_packet *out)
{
    memset(out, 0, sizeof(*out));
    if (it->error != MG_OK)
        return it->error;
    size_t left = it->body_len - it->pos;
    if (left == 0)
        return MG_ENOTFOUND;
    int rc = MG_OK;
    const uint8_t *p = it->body + it->pos;
    if (it->packet_count >= CG_BATCH_PACKETS_MAX)
        rc = MG_ELIMIT;
    else if (left < CG_PACKET_HEADER_BYTES)
        rc = MG_EPROTO;
    else if (cg__get_u32(p) < CG_PACKET_HEADER_BYTES || cg__get_u32(p) > left ||
             cg__get_u16(p + 4) != CG_PACKET_HEADER_BYTES)
        rc = MG_EPROTO;
    if (rc != MG_OK) {
        it->error = rc;
        return rc;
    }
    cg__header(p, out);
    it->pos += out->packet_len;
    it->packet_count++;
    return MG_OK;
}

int cg_batch_split(const uint8_t *body, size_t body_len, cg_packet *out, size_t out_capacity,
                   size_t *count)
{
    cg_batch_iter it;
    cg_batch_iter_init(&it, body, body_len);
    size_t n = 0;
    for (;;) {
        cg_packet pk;
        int rc = cg_batch_next(&it, &pk);
        if (rc == MG_ENOTFOUND)
            break;
        if (rc != MG_OK)
            return rc;
        if (n >= out_capacity)
            return MG_ELIMIT;
        out[n++] = pk;
    }
    *count = n;
    return MG_OK;
}

size_t cg_batch_encoded_len(const cg_packet *packets, size_t count)
{
    size_t len = CG_PACKET_HEADER_BYTES;
    for (size_t i = 0; i < count; i++)
        len += CG_PACKET_HEADER_BYTES + (size_t)packets[i].body_len;
    return len;
}

int cg_batch_encode(uint16_t ver, uint32_t seq, const cg_packet *packets, size_t count,
                    mg_buf **out)
{
    *out = NULL;
    if (count == 0)
        return MG_EINVAL;
    if (count > CG_BATCH_PACKETS_MAX)
        return MG_ELIMIT;
    uint64_t body_len = 0;
    for (size_t i = 0; i < count; i++) {
        MG_ASSERT(packets[i].body != NULL || packets[i].body_len == 0);
        body_len += CG_PACKET_HEADER_BYTES + (uint64_t)packets[i].body_len;
    }
    if (body_len > CG_PACKET_BODY_BYTES_ABS_MAX)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(CG_PACKET_HEADER_BYTES + (size_t)body_len);
    if (b == NULL)
        return MG_ENOMEM;
    uint8_t *dst = mg_buf_data(b);
    cg__put_header(dst, ver, CG_OP_RAW, seq, (size_t)body_len);
    size_t pos = CG_PACKET_HEADER_BYTES;
    for (size_t i = 0; i < count; i++) {
        const cg_packet *pk = &packets[i];
        cg__put_header(dst + pos, pk->ver, pk->op, pk->seq, pk->body_len);
        pos += CG_PACKET_HEADER_BYTES;
        if (pk->body_len > 0)
            memcpy(dst + pos, pk->body, pk->body_len);
        pos += pk->body_len;
    }
    MG_ASSERT(pos == CG_PACKET_HEADER_BYTES + body_len);
    mg_buf_set_len(b, pos);
    *out = b;
    return MG_OK;
}
