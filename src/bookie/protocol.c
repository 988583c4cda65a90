/*
 * The bookie RPC wire format: encoder, incremental decoder and output queue (see protocol.h for
 * the frame layout, the operations and the buffer ownership).
 *
 * Decoder buffer policy (bk_decoder_alloc), with need = the bytes of the current frame from its
 * start when its length is known, else 8 (the two lengths), but at least one more than the
 * bytes buffered:
 *   1. no buffer                                   -> new buffer of max(BK_READ_BUF_BYTES, need)
 *   2. everything consumed, buffer not shared and  -> rewind to 0 and reuse it
 *      of the standard size
 *   3. the frame fits between pos and the end,     -> read into the free tail (also when the
 *      and there is free space                        buffer is shared: see protocol.h)
 *   4. everything consumed, otherwise              -> drop it, new standard buffer
 *   5. buffer not shared, of the standard size,    -> move the partial frame to the front
 *      and need fits in it
 *   6. otherwise                                   -> new buffer of max(BK_READ_BUF_BYTES, need),
 *                                                     copy the partial frame (the one copy)
 * Invariants:
 *   1. pos <= fill <= capacity, and the buffer's length equals its capacity.
 *   2. Bytes [0, fill) never change while any reference other than the decoder's exists
 *      (rules 2 and 5 require refcount 1; rule 3 writes only at fill and beyond).
 *   3. A frame is returned only when all of its bytes are in one buffer, so payload views are
 *      always a single slice.
 *   4. A read buffer is at most max(BK_READ_BUF_BYTES, 4 + BK_FRAME_BYTES_MAX) bytes, and a
 *      buffer larger than BK_READ_BUF_BYTES is kept only while a frame needs it.
 */
#include "bookie/protocol.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"
#include "proto/bookie.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The proto enum and bk_op must agree. */
_Static_assert((int)MAGNETAR__BOOKIE__OP__ADD == (int)BK_OP_ADD, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__READ == (int)BK_OP_READ, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__READ_RANGE == (int)BK_OP_READ_RANGE, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__READ_LAC == (int)BK_OP_READ_LAC, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__FENCE == (int)BK_OP_FENCE, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__DELETE == (int)BK_OP_DELETE, "op");
_Static_assert((int)MAGNETAR__BOOKIE__OP__HEALTH == (int)BK_OP_HEALTH, "op");

#define BK__PREFIX_BYTES 8 /* frame_len + header_len */

const char *bk_op_name(int32_t op)
{
    switch (op) {
    case BK_OP_ADD:
        return "add";
    case BK_OP_READ:
        return "read";
    case BK_OP_READ_RANGE:
        return "read_range";
    case BK_OP_READ_LAC:
        return "read_lac";
    case BK_OP_FENCE:
        return "fence";
    case BK_OP_DELETE:
        return "delete";
    case BK_OP_HEALTH:
        return "health";
    default:
        return "unknown";
    }
}

/* protobuf-c allocates through the project allocator, so fault injection reaches it. */
static void *bk__pb_alloc(void *data, size_t size)
{
    (void)data;
    return mg_malloc(size);
}

static void bk__pb_free(void *data, void *ptr)
{
    (void)data;
    mg_free(ptr);
}

static ProtobufCAllocator bk__pb_allocator = {
    .alloc = bk__pb_alloc,
    .free = bk__pb_free,
    .allocator_data = NULL,
};

static void bk__put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t bk__get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void bk_frame_release(bk_frame *frame)
{
    if (frame == NULL)
        return;
    mg_buf_unref(frame->buf);
    mg_free(frame->entries);
    memset(frame, 0, sizeof(*frame));
}

/* ---- Encoding ---------------------------------------------------------------------------- */

/* Writes the prefix and the packed header into a new buffer. */
/* Encodes the frame's lengths and header; room for `room` more bytes is left after them (the
 * caller appends the start of the payload there). */
static int bk__encode_head_room(const ProtobufCMessage *msg, size_t payload_len, size_t room,
                                mg_buf **out)
{
    size_t header_len = protobuf_c_message_get_packed_size(msg);
    if (header_len > BK_HEADER_BYTES_MAX || payload_len > BK_FRAME_BYTES_MAX ||
        4 + header_len + payload_len > BK_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    mg_buf *head = mg_buf_new(BK__PREFIX_BYTES + header_len + room);
    if (head == NULL)
        return MG_ENOMEM;
    uint8_t *p = mg_buf_data(head);
    bk__put_u32(p, (uint32_t)(4 + header_len + payload_len));
    bk__put_u32(p + 4, (uint32_t)header_len);
    size_t packed = protobuf_c_message_pack(msg, p + BK__PREFIX_BYTES);
    MG_ASSERT(packed == header_len);
    mg_buf_set_len(head, BK__PREFIX_BYTES + header_len);
    *out = head;
    return MG_OK;
}

static int bk__encode_head(const ProtobufCMessage *msg, size_t payload_len, mg_buf **out)
{
    return bk__encode_head_room(msg, payload_len, 0, out);
}

/* An optional header field between bk_request or bk_response (a bit in present, the value) and
 * its protobuf message (has_<field>, <field>), so each direction names each field once. */
#define BK__FIELD_TO_MSG(h, m, field, bit)              \
    do {                                                \
        (m)->has_##field = ((h)->present & (bit)) != 0; \
        (m)->field = (h)->field;                        \
    } while (0)
#define BK__FIELD_FROM_MSG(m, h, field, bit) \
    do {                                     \
        if ((m)->has_##field) {              \
            (h)->present |= (bit);           \
            (h)->field = (m)->field;         \
        }                                    \
    } while (0)

/* The request's protobuf header (fields from req). */
static void bk__request_msg(const bk_request *req, Magnetar__Bookie__Request *m);

int bk_encode_request_head(const bk_request *req, size_t payload_len, mg_buf **out)
{
    Magnetar__Bookie__Request m;
    bk__request_msg(req, &m);
    return bk__encode_head(&m.base, payload_len, out);
}

static void bk__request_msg(const bk_request *req, Magnetar__Bookie__Request *out)
{
    Magnetar__Bookie__Request m = MAGNETAR__BOOKIE__REQUEST__INIT;
    m.request_id = req->request_id;
    m.op = req->op;
    BK__FIELD_TO_MSG(req, &m, ledger_id, BK_HAS_LEDGER_ID);
    BK__FIELD_TO_MSG(req, &m, entry_id, BK_HAS_ENTRY_ID);
    BK__FIELD_TO_MSG(req, &m, last_entry_id, BK_HAS_LAST_ENTRY_ID);
    BK__FIELD_TO_MSG(req, &m, max_bytes, BK_HAS_MAX_BYTES);
    BK__FIELD_TO_MSG(req, &m, flags, BK_HAS_FLAGS);
    *out = m;
}

/* Entry lists up to this long are built on the stack. */
#define BK__STACK_ENTRIES 16

/* True when the ids are first, first + 1, ... with first >= 0: the compact form applies. */
static bool bk__entries_consecutive(const bk_entry *entries, size_t count)
{
    if (count == 0 || entries[0].entry_id < 0)
        return false;
    for (size_t i = 1; i < count; i++) {
        if (entries[i - 1].entry_id == INT64_MAX ||
            entries[i].entry_id != entries[i - 1].entry_id + 1)
            return false;
    }
    return true;
}

int bk_encode_response_head(const bk_response *resp, const bk_entry *entries, size_t entry_count,
                            mg_buf **out)
{
    if (entry_count > BK_RANGE_ENTRIES_MAX)
        return MG_ELIMIT;
    size_t payload_len = 0;
    for (size_t i = 0; i < entry_count; i++) {
        if (entries[i].len > UINT32_MAX || entries[i].len > BK_FRAME_BYTES_MAX)
            return MG_ELIMIT;
        payload_len += entries[i].len; /* no overflow: 32768 * 17 MiB < 2^64 */
    }
    if (payload_len > BK_FRAME_BYTES_MAX)
        return MG_ELIMIT;

    Magnetar__Bookie__Response m = MAGNETAR__BOOKIE__RESPONSE__INIT;
    void *block = NULL;
    /* Compact form (first id + packed sizes) for consecutive ids, the general one otherwise. */
    uint32_t sizes_stack[BK__STACK_ENTRIES];
    Magnetar__Bookie__EntryRef refs_stack[BK__STACK_ENTRIES];
    Magnetar__Bookie__EntryRef *ptrs_stack[BK__STACK_ENTRIES];
    if (bk__entries_consecutive(entries, entry_count)) {
        uint32_t *sizes = sizes_stack;
        if (entry_count > BK__STACK_ENTRIES) {
            block = mg_malloc(entry_count * sizeof(*sizes));
            if (block == NULL)
                return MG_ENOMEM;
            sizes = block;
        }
        for (size_t i = 0; i < entry_count; i++)
            sizes[i] = (uint32_t)entries[i].len;
        m.has_first_entry_id = true;
        m.first_entry_id = entries[0].entry_id;
        m.n_entry_sizes = entry_count;
        m.entry_sizes = sizes;
    } else if (entry_count > 0) {
        Magnetar__Bookie__EntryRef *refs = refs_stack;
        Magnetar__Bookie__EntryRef **ptrs = ptrs_stack;
        if (entry_count > BK__STACK_ENTRIES) {
            block = mg_calloc(entry_count, sizeof(*refs) + sizeof(*ptrs));
            if (block == NULL)
                return MG_ENOMEM;
            refs = block;
            ptrs = (Magnetar__Bookie__EntryRef **)(refs + entry_count);
        }
        for (size_t i = 0; i < entry_count; i++) {
            Magnetar__Bookie__EntryRef init = MAGNETAR__BOOKIE__ENTRY_REF__INIT;
            refs[i] = init;
            refs[i].entry_id = entries[i].entry_id;
            refs[i].size = (uint32_t)entries[i].len;
            ptrs[i] = &refs[i];
        }
        m.n_entries = entry_count;
        m.entries = ptrs;
    }

    m.request_id = resp->request_id;
    m.op = resp->op;
    m.status = resp->status;
    BK__FIELD_TO_MSG(resp, &m, ledger_id, BK_HAS_LEDGER_ID);
    BK__FIELD_TO_MSG(resp, &m, entry_id, BK_HAS_ENTRY_ID);
    BK__FIELD_TO_MSG(resp, &m, last_entry_id, BK_HAS_LAST_ENTRY_ID);
    /* The message is cut at the array's end even if the caller forgot the terminator. */
    char message[BK_MESSAGE_BYTES_MAX];
    size_t message_len = strnlen(resp->message, sizeof(message) - 1);
    memcpy(message, resp->message, message_len);
    message[message_len] = '\0';
    m.message = message_len > 0 ? message : NULL;

    int rc = bk__encode_head(&m.base, payload_len, out);
    mg_free(block);
    return rc;
}

/* A frame's payload as merged slices: adjacent views of one buffer become one slice. */
static size_t bk__merged_count(const bk_entry *entries, size_t count)
{
    size_t n = 0;
    const bk_entry *prev = NULL;
    for (size_t i = 0; i < count; i++) {
        const bk_entry *e = &entries[i];
        if (e->len == 0)
            continue;
        if (prev != NULL && prev->buf == e->buf && prev->off + prev->len == e->off) {
            prev = e;
            continue;
        }
        n++;
        prev = e;
    }
    return n;
}

static int bk__check_views(const bk_entry *entries, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const bk_entry *e = &entries[i];
        if (e->len == 0)
            continue;
        if (e->buf == NULL || e->off > mg_buf_len(e->buf) || e->len > mg_buf_len(e->buf) - e->off)
            return MG_EINVAL;
    }
    return MG_OK;
}

/* Calls fn(slice) for each merged slice of the payload, in order. */
typedef struct bk__slice_iter {
    const bk_entry *entries;
    size_t count;
    size_t i;
} bk__slice_iter;

static bool bk__slice_next(bk__slice_iter *it, mg_slice *out)
{
    while (it->i < it->count && it->entries[it->i].len == 0)
        it->i++;
    if (it->i >= it->count)
        return false;
    const bk_entry *first = &it->entries[it->i++];
    out->buf = first->buf;
    out->off = first->off;
    out->len = first->len;
    while (it->i < it->count) {
        const bk_entry *e = &it->entries[it->i];
        if (e->len == 0) {
            it->i++;
            continue;
        }
        if (e->buf != out->buf || out->off + out->len != e->off)
            break;
        out->len += e->len;
        it->i++;
    }
    return true;
}

/* Appends head + payload to one chain; the caller checked the room and the views. */
static void bk__chain_put(mg_chain *out, mg_buf *head, const bk_entry *entries, size_t count)
{
    int rc = mg_chain_append(out, head, 0, mg_buf_len(head));
    MG_ASSERT(rc == MG_OK);
    bk__slice_iter it = { entries, count, 0 };
    mg_slice s;
    while (bk__slice_next(&it, &s)) {
        rc = mg_chain_append(out, s.buf, s.off, s.len);
        MG_ASSERT(rc == MG_OK);
    }
}

static size_t bk__chain_room(const mg_chain *chain)
{
    return MG_CHAIN_SLICES_MAX - mg_chain_slice_count(chain);
}

int bk_encode_request(const bk_request *req, mg_buf *payload, size_t off, size_t len, mg_chain *out)
{
    bk_entry e = { 0, payload, off, len };
    MG_TRY(bk__check_views(&e, 1));
    if (bk__chain_room(out) < 1 + bk__merged_count(&e, 1))
        return MG_ELIMIT;
    mg_buf *head;
    MG_TRY(bk_encode_request_head(req, len, &head));
    bk__chain_put(out, head, &e, 1);
    mg_buf_unref(head);
    return MG_OK;
}

int bk_encode_response(const bk_response *resp, const bk_entry *entries, size_t entry_count,
                       mg_chain *out)
{
    MG_TRY(bk__check_views(entries, entry_count));
    if (bk__chain_room(out) < 1 + bk__merged_count(entries, entry_count))
        return MG_ELIMIT;
    mg_buf *head;
    MG_TRY(bk_encode_response_head(resp, entries, entry_count, &head));
    bk__chain_put(out, head, entries, entry_count);
    mg_buf_unref(head);
    return MG_OK;
}

/* ---- Decoding ---------------------------------------------------------------------------- */

void bk_decoder_init(bk_decoder *dec, bk_frame_kind kind)
{
    memset(dec, 0, sizeof(*dec));
    dec->kind = kind;
}

void bk_decoder_destroy(bk_decoder *dec)
{
    mg_buf_unref(dec->buf);
    dec->buf = NULL;
    dec->pos = 0;
    dec->fill = 0;
}

size_t bk_decoder_buffered(const bk_decoder *dec)
{
    return dec->fill - dec->pos;
}

/* The bytes the frame at pos occupies (prefix included) when its length is known and valid,
 * else the prefix length. */
static size_t bk__frame_need(const bk_decoder *dec)
{
    if (dec->buf == NULL || dec->fill - dec->pos < 4)
        return BK__PREFIX_BYTES;
    uint32_t frame_len = bk__get_u32(mg_buf_data(dec->buf) + dec->pos);
    if (frame_len < 4 || frame_len > BK_FRAME_BYTES_MAX)
        return BK__PREFIX_BYTES; /* bk_decoder_next reports it */
    return 4 + (size_t)frame_len;
}

static mg_buf *bk__read_buf_new(size_t need)
{
    size_t cap = need > BK_READ_BUF_BYTES ? need : BK_READ_BUF_BYTES;
    mg_buf *buf = mg_buf_new(cap);
    if (buf != NULL)
        mg_buf_set_len(buf, cap); /* see the header: the length is fixed while we are sole owner */
    return buf;
}

int bk_decoder_alloc(bk_decoder *dec, uv_buf_t *out)
{
    out->base = NULL;
    out->len = 0;
    /* Room for the current frame, and for at least one byte more than is buffered (frames
     * already complete but not yet taken must not leave zero space). */
    size_t need = bk__frame_need(dec);
    if (bk_decoder_buffered(dec) + 1 > need)
        need = bk_decoder_buffered(dec) + 1;
    if (dec->buf != NULL) {
        size_t cap = mg_buf_cap(dec->buf);
        bool sole = mg_buf_refcount(dec->buf) == 1;
        bool standard = cap == BK_READ_BUF_BYTES;
        if (dec->pos == dec->fill && sole && standard) {
            dec->pos = dec->fill = 0; /* rule 2 */
        } else if (dec->pos + need <= cap && dec->fill < cap) {
            /* rule 3: read into the free tail */
        } else if (dec->pos == dec->fill) {
            mg_buf_unref(dec->buf); /* rule 4 */
            dec->buf = NULL;
            dec->pos = dec->fill = 0;
        } else if (sole && standard && need <= cap) {
            size_t have = dec->fill - dec->pos; /* rule 5 */
            memmove(mg_buf_data(dec->buf), mg_buf_data(dec->buf) + dec->pos, have);
            dec->pos = 0;
            dec->fill = have;
        } else {
            mg_buf *fresh = bk__read_buf_new(need); /* rule 6 */
            if (fresh == NULL)
                return MG_ENOMEM;
            size_t have = dec->fill - dec->pos;
            memcpy(mg_buf_data(fresh), mg_buf_data(dec->buf) + dec->pos, have);
            mg_buf_unref(dec->buf);
            dec->buf = fresh;
            dec->pos = 0;
            dec->fill = have;
        }
    }
    if (dec->buf == NULL) {
        dec->buf = bk__read_buf_new(need); /* rule 1 */
        if (dec->buf == NULL)
            return MG_ENOMEM;
        dec->pos = dec->fill = 0;
    }
    MG_ASSERT(dec->fill < mg_buf_cap(dec->buf));
    out->base = (char *)mg_buf_data(dec->buf) + dec->fill;
    out->len = mg_buf_cap(dec->buf) - dec->fill;
    return MG_OK;
}

void bk_decoder_commit(bk_decoder *dec, size_t nread)
{
    MG_ASSERT(dec->buf != NULL);
    MG_ASSERT(nread <= mg_buf_cap(dec->buf) - dec->fill);
    dec->fill += nread;
}

int bk_decoder_feed(bk_decoder *dec, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        uv_buf_t space;
        MG_TRY(bk_decoder_alloc(dec, &space));
        size_t n = size < space.len ? size : space.len;
        memcpy(space.base, p, n);
        bk_decoder_commit(dec, n);
        p += n;
        size -= n;
    }
    return MG_OK;
}

static void bk__copy_request(const Magnetar__Bookie__Request *m, bk_request *r)
{
    memset(r, 0, sizeof(*r));
    r->request_id = m->request_id;
    r->op = m->op;
    BK__FIELD_FROM_MSG(m, r, ledger_id, BK_HAS_LEDGER_ID);
    BK__FIELD_FROM_MSG(m, r, entry_id, BK_HAS_ENTRY_ID);
    BK__FIELD_FROM_MSG(m, r, last_entry_id, BK_HAS_LAST_ENTRY_ID);
    BK__FIELD_FROM_MSG(m, r, max_bytes, BK_HAS_MAX_BYTES);
    BK__FIELD_FROM_MSG(m, r, flags, BK_HAS_FLAGS);
}

static void bk__copy_response(const Magnetar__Bookie__Response *m, bk_response *r)
{
    memset(r, 0, sizeof(*r));
    r->request_id = m->request_id;
    r->op = m->op;
    r->status = m->status;
    BK__FIELD_FROM_MSG(m, r, ledger_id, BK_HAS_LEDGER_ID);
    BK__FIELD_FROM_MSG(m, r, entry_id, BK_HAS_ENTRY_ID);
    BK__FIELD_FROM_MSG(m, r, last_entry_id, BK_HAS_LAST_ENTRY_ID);
    if (m->message != NULL) {
        size_t n = strnlen(m->message, sizeof(r->message) - 1);
        memcpy(r->message, m->message, n);
        r->message[n] = '\0';
    }
}

/* Decodes the header of the frame at pos; fills out (header fields and entries). */
static int bk__decode_header(bk_decoder *dec, const uint8_t *header, size_t header_len,
                             size_t payload_off, size_t payload_len, bk_frame *out)
{
    if (dec->kind == BK_FRAME_REQUEST) {
        Magnetar__Bookie__Request *m =
            magnetar__bookie__request__unpack(&bk__pb_allocator, header_len, header);
        if (m == NULL)
            return MG_EPROTO; /* also on allocation failure: protobuf-c cannot tell them apart */
        bk__copy_request(m, &out->req);
        magnetar__bookie__request__free_unpacked(m, &bk__pb_allocator);
        return MG_OK;
    }
    Magnetar__Bookie__Response *m =
        magnetar__bookie__response__unpack(&bk__pb_allocator, header_len, header);
    if (m == NULL)
        return MG_EPROTO;
    int rc = MG_OK;
    /* The entry list, in the compact form (first id + sizes) or the general one (EntryRefs),
     * never both; a compact list needs both of its fields and ids that do not overflow. */
    bool compact = m->has_first_entry_id || m->n_entry_sizes > 0;
    size_t count = compact ? m->n_entry_sizes : m->n_entries;
    if (compact && (m->n_entries > 0 || !m->has_first_entry_id || m->n_entry_sizes == 0 ||
                    m->first_entry_id < 0 ||
                    m->first_entry_id > INT64_MAX - ((int64_t)m->n_entry_sizes - 1))) {
        rc = MG_EPROTO;
        goto done;
    }
    if (count > BK_RANGE_ENTRIES_MAX) {
        rc = MG_EPROTO;
        goto done;
    }
    size_t sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += compact ? m->entry_sizes[i] : m->entries[i]->size; /* < 2^15 * 2^32 */
    if (sum != payload_len) {
        rc = MG_EPROTO;
        goto done;
    }
    if (count > 0) {
        out->entries = mg_malloc(count * sizeof(bk_entry));
        if (out->entries == NULL) {
            rc = MG_ENOMEM;
            goto done;
        }
        size_t off = payload_off;
        for (size_t i = 0; i < count; i++) {
            bk_entry *e = &out->entries[i];
            if (compact) {
                e->entry_id = m->first_entry_id + (int64_t)i;
                e->len = m->entry_sizes[i];
            } else {
                e->entry_id = m->entries[i]->entry_id;
                e->len = m->entries[i]->size;
            }
            e->buf = dec->buf;
            e->off = off;
            off += e->len;
        }
        out->entry_count = count;
    }
    bk__copy_response(m, &out->resp);
done:
    magnetar__bookie__response__free_unpacked(m, &bk__pb_allocator);
    return rc;
}

int bk_decoder_next(bk_decoder *dec, bk_frame *out)
{
    memset(out, 0, sizeof(*out));
    if (dec->error != MG_OK)
        return dec->error;
    size_t have = dec->fill - dec->pos;
    if (have < 4)
        return MG_EAGAIN;
    const uint8_t *p = mg_buf_data(dec->buf) + dec->pos;
    uint32_t frame_len = bk__get_u32(p);
    if (frame_len < 4 || frame_len > BK_FRAME_BYTES_MAX) {
        dec->error = MG_EPROTO;
        return MG_EPROTO;
    }
    if (have < BK__PREFIX_BYTES)
        return MG_EAGAIN;
    uint32_t header_len = bk__get_u32(p + 4);
    if (header_len > frame_len - 4 || header_len > BK_HEADER_BYTES_MAX) {
        dec->error = MG_EPROTO;
        return MG_EPROTO;
    }
    if (have < 4 + (size_t)frame_len)
        return MG_EAGAIN;
    size_t payload_off = dec->pos + BK__PREFIX_BYTES + header_len;
    size_t payload_len = (size_t)frame_len - 4 - header_len;
    int rc =
        bk__decode_header(dec, p + BK__PREFIX_BYTES, header_len, payload_off, payload_len, out);
    if (rc != MG_OK) {
        mg_free(out->entries);
        memset(out, 0, sizeof(*out));
        if (rc == MG_EPROTO)
            dec->error = MG_EPROTO;
        return rc;
    }
    out->buf = mg_buf_ref(dec->buf);
    out->payload_off = payload_off;
    out->payload_len = payload_len;
    dec->pos += 4 + (size_t)frame_len;
    return MG_OK;
}

static bool bk__has(const bk_request *r, uint32_t fields)
{
    return (r->present & fields) == fields;
}

static int bk__refuse(int rc, char *why, size_t why_size, const char *reason)
{
    if (why_size > 0)
        snprintf(why, why_size, "%s", reason);
    return rc;
}

int bk_request_check(const bk_request *r, size_t payload_len, char *why, size_t why_size)
{
    uint32_t need = 0;
    switch (r->op) {
    case BK_OP_ADD:
    case BK_OP_READ:
        need = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID;
        break;
    case BK_OP_READ_RANGE:
        need = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID | BK_HAS_LAST_ENTRY_ID;
        break;
    case BK_OP_READ_LAC:
    case BK_OP_FENCE:
    case BK_OP_DELETE:
        need = BK_HAS_LEDGER_ID;
        break;
    case BK_OP_HEALTH:
        break;
    default:
        if (why_size > 0)
            snprintf(why, why_size, "unknown op %" PRId32, r->op);
        return MG_ENOTSUP;
    }
    if (!bk__has(r, need))
        return bk__refuse(MG_EINVAL, why, why_size, "a field the op needs is missing");
    if (((need & BK_HAS_LEDGER_ID) && r->ledger_id < 0) ||
        ((need & BK_HAS_ENTRY_ID) && r->entry_id < 0) ||
        ((need & BK_HAS_LAST_ENTRY_ID) && r->last_entry_id < 0))
        return bk__refuse(MG_EINVAL, why, why_size, "ids must be >= 0");
    if (r->op == BK_OP_READ_RANGE && r->last_entry_id < r->entry_id)
        return bk__refuse(MG_EINVAL, why, why_size, "last_entry_id < entry_id");
    if (r->op != BK_OP_ADD && payload_len > 0)
        return bk__refuse(MG_EINVAL, why, why_size, "only ADD carries a payload");
    if (r->op == BK_OP_ADD && payload_len > BK_ENTRY_BYTES_MAX)
        return bk__refuse(MG_ELIMIT, why, why_size, "entry larger than BK_ENTRY_BYTES_MAX");
    if (why_size > 0)
        why[0] = '\0';
    return MG_OK;
}

/* ---- Output queue ------------------------------------------------------------------------ */

/* Appends head and the payload views as one all-or-nothing push (the slice array is on the stack
 * for small frames, allocated for a range of many entries). */
static int bk__outq_put(mg_outq *q, mg_buf *head, const bk_entry *entries, size_t count)
{
    size_t slices = 1 + bk__merged_count(entries, count);
    mg_slice small[16];
    mg_slice *v = slices <= 16 ? small : mg_malloc(slices * sizeof(*v));
    if (v == NULL)
        return MG_ENOMEM;
    size_t n = 0;
    v[n++] = (mg_slice){ head, 0, mg_buf_len(head) };
    bk__slice_iter it = { entries, count, 0 };
    mg_slice s;
    while (bk__slice_next(&it, &s))
        v[n++] = s;
    MG_ASSERT(n == slices);
    int rc = mg_outq_push(q, v, n);
    if (v != small)
        mg_free(v);
    return rc;
}

int bk_outq_push_request(mg_outq *q, const bk_request *req, mg_buf *payload, size_t off, size_t len)
{
    return bk_outq_push_request_prefixed(q, req, NULL, 0, payload, off, len);
}

int bk_outq_push_request_prefixed(mg_outq *q, const bk_request *req, const uint8_t *prefix,
                                  size_t prefix_len, mg_buf *payload, size_t off, size_t len)
{
    if (prefix_len > BK_REQUEST_PREFIX_BYTES_MAX || (prefix == NULL && prefix_len > 0))
        return MG_EINVAL;
    bk_entry e = { 0, payload, off, len };
    MG_TRY(bk__check_views(&e, 1));
    Magnetar__Bookie__Request m;
    bk__request_msg(req, &m);
    mg_buf *head;
    MG_TRY(bk__encode_head_room(&m.base, prefix_len + len, prefix_len, &head));
    if (prefix_len > 0) {
        memcpy(mg_buf_data(head) + mg_buf_len(head), prefix, prefix_len);
        mg_buf_set_len(head, mg_buf_len(head) + prefix_len);
    }
    int rc = bk__outq_put(q, head, &e, 1);
    mg_buf_unref(head);
    return rc;
}

int bk_outq_push_response(mg_outq *q, const bk_response *resp, const bk_entry *entries,
                          size_t entry_count)
{
    MG_TRY(bk__check_views(entries, entry_count));
    mg_buf *head;
    MG_TRY(bk_encode_response_head(resp, entries, entry_count, &head));
    int rc = bk__outq_put(q, head, entries, entry_count);
    mg_buf_unref(head);
    return rc;
}
