/*
 * The push protocol's framing (declared in push.h, which describes the format).
 *
 * Design notes:
 *   1. The length prefix is checked against CG_PUSH_FRAME_BYTES_MAX as soon as its 4 bytes are
 *      there, before anything is allocated for the frame, so a hostile peer costs at most the
 *      bound, and only by sending that many bytes.
 *   2. A frame whole in the fed bytes is unpacked in place; the decoder copies only when a
 *      frame straddles reads. So between frames the decoder holds nothing (part_len == 0), and
 *      while it holds part of a frame it holds no more than that frame (invariant: part_len <
 *      CG_PUSH_LENGTH_BYTES + frame_len once the prefix is whole).
 *   3. Every loop step consumes fed bytes or returns, so decoding a feed ends.
 */
#include "chat_gateway/push.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <string.h>

static uint32_t cg__get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

size_t cg_push_frame_encoded_len(const Magnetar__Chat__ChatFrame *f)
{
    return CG_PUSH_LENGTH_BYTES + magnetar__chat__chat_frame__get_packed_size(f);
}

int cg_push_frame_encode(const Magnetar__Chat__ChatFrame *f, mg_buf **out)
{
    *out = NULL;
    if (f == NULL)
        return MG_EINVAL;
    size_t packed = magnetar__chat__chat_frame__get_packed_size(f);
    if (packed > CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_LENGTH_BYTES)
        return MG_ELIMIT;
    mg_buf *b = mg_buf_new(CG_PUSH_LENGTH_BYTES + packed);
    if (b == NULL)
        return MG_ENOMEM;
    uint8_t *p = mg_buf_data(b);
    p[0] = (uint8_t)(packed >> 24);
    p[1] = (uint8_t)(packed >> 16);
    p[2] = (uint8_t)(packed >> 8);
    p[3] = (uint8_t)packed;
    size_t n = magnetar__chat__chat_frame__pack(f, p + CG_PUSH_LENGTH_BYTES);
    MG_ASSERT(n == packed);
    mg_buf_set_len(b, CG_PUSH_LENGTH_BYTES + packed);
    *out = b;
    return MG_OK;
}

void cg_push_decoder_init(cg_push_decoder *d)
{
    memset(d, 0, sizeof(*d));
}

void cg_push_decoder_free(cg_push_decoder *d)
{
    mg_free(d->part);
    memset(d, 0, sizeof(*d));
}

void cg_push_decoder_feed(cg_push_decoder *d, const uint8_t *src, size_t src_size)
{
    MG_ASSERT(d->src_pos == d->src_size); /* the previous feed was used up */
    MG_ASSERT(src != NULL || src_size == 0);
    d->src = src;
    d->src_size = src_size;
    d->src_pos = 0;
}

size_t cg_push_decoder_buffered(const cg_push_decoder *d)
{
    return d->part_len;
}

/* Checks a frame length read from the wire (note 1). */
static int cg__check_len(uint32_t frame_len)
{
    return frame_len > CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_LENGTH_BYTES ? MG_ELIMIT : MG_OK;
}

/* Unpacks len bytes at p into *out. */
static int cg__unpack(const uint8_t *p, size_t len, Magnetar__Chat__ChatFrame **out)
{
    *out = magnetar__chat__chat_frame__unpack(NULL, len, p);
    return *out == NULL ? MG_EPROTO : MG_OK;
}

/* Completes the held incomplete frame from the fed bytes (note 2). MG_OK with a frame, MG_EAGAIN
 * when the fed bytes ran out first, or the error. */
static int cg__next_held(cg_push_decoder *d, Magnetar__Chat__ChatFrame **out)
{
    size_t avail = d->src_size - d->src_pos;
    if (d->part_len < CG_PUSH_LENGTH_BYTES) {
        size_t take = CG_PUSH_LENGTH_BYTES - d->part_len;
        if (take > avail)
            take = avail;
        memcpy(d->head + d->part_len, d->src + d->src_pos, take);
        d->part_len += take;
        d->src_pos += take;
        avail -= take;
        if (d->part_len < CG_PUSH_LENGTH_BYTES)
            return MG_EAGAIN;
        d->frame_len = cg__get_u32(d->head);
        int rc = cg__check_len(d->frame_len);
        if (rc != MG_OK)
            return rc;
        size_t need = CG_PUSH_LENGTH_BYTES + (size_t)d->frame_len;
        if (need > d->part_cap) {
            uint8_t *p = mg_realloc(d->part, need);
            if (p == NULL)
                return MG_ENOMEM;
            d->part = p;
            d->part_cap = need;
        }
        memcpy(d->part, d->head, CG_PUSH_LENGTH_BYTES);
    }
    size_t need = CG_PUSH_LENGTH_BYTES + (size_t)d->frame_len;
    size_t take = need - d->part_len;
    if (take > avail)
        take = avail;
    if (take > 0)
        memcpy(d->part + d->part_len, d->src + d->src_pos, take);
    d->part_len += take;
    d->src_pos += take;
    if (d->part_len < need)
        return MG_EAGAIN;
    int rc = cg__unpack(d->part + CG_PUSH_LENGTH_BYTES, d->frame_len, out);
    /* The frame is done: release its bytes so an idle link holds nothing. */
    mg_free(d->part);
    d->part = NULL;
    d->part_cap = 0;
    d->part_len = 0;
    d->frame_len = 0;
    return rc;
}

int cg_push_decoder_next(cg_push_decoder *d, Magnetar__Chat__ChatFrame **out)
{
    *out = NULL;
    if (d->error != MG_OK)
        return d->error;
    int rc;
    if (d->part_len > 0) {
        rc = cg__next_held(d, out);
    } else {
        size_t avail = d->src_size - d->src_pos;
        if (avail == 0)
            return MG_EAGAIN;
        if (avail >= CG_PUSH_LENGTH_BYTES) {
            const uint8_t *p = d->src + d->src_pos;
            uint32_t frame_len = cg__get_u32(p);
            rc = cg__check_len(frame_len);
            if (rc == MG_OK && avail - CG_PUSH_LENGTH_BYTES >= frame_len) {
                /* Whole in the fed bytes: unpacked in place. */
                d->src_pos += CG_PUSH_LENGTH_BYTES + (size_t)frame_len;
                rc = cg__unpack(p + CG_PUSH_LENGTH_BYTES, frame_len, out);
            } else if (rc == MG_OK) {
                rc = cg__next_held(d, out);
            }
        } else {
            rc = cg__next_held(d, out);
        }
    }
    if (rc != MG_OK && rc != MG_EAGAIN) {
        d->error = rc;
        d->src_pos = d->src_size; /* nothing more is read from this feed */
    }
    return rc;
}
