/* The bookie RPC wire format: encode/decode round trips for every op, the incremental decoder
 * fed in every kind of split, zero-copy payloads, malformed frames refused with MG_EPROTO, the
 * two forms of a response's entry list (compact for consecutive ids, EntryRefs otherwise, both
 * decoded the same; malformed compact lists refused), and the output queue writing a
 * many-entry response through a real libuv stream. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bookie/limits.h"
#include "bookie/protocol.h"
#include "common/error.h"
#include "common/limits.h"
#include "proto/bookie.pb-c.h"

TestSuite(bookie_protocol, .timeout = 10);

/* ---- helpers ----------------------------------------------------------------------------- */

static uint8_t *flatten(const mg_chain *chain, size_t *len_out)
{
    size_t len = mg_chain_len(chain);
    uint8_t *bytes = malloc(len > 0 ? len : 1);
    cr_assert_not_null(bytes);
    cr_assert_eq(mg_chain_copy_out(chain, 0, bytes, len), len);
    *len_out = len;
    return bytes;
}

/* The bytes bk_encode_request writes for req (with payload[payload_off, +payload_len)). */
static uint8_t *request_bytes(const bk_request *req, mg_buf *payload, size_t payload_off,
                              size_t payload_len, size_t *len_out)
{
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_request(req, payload, payload_off, payload_len, &chain), MG_OK);
    uint8_t *bytes = flatten(&chain, len_out);
    mg_chain_reset(&chain);
    return bytes;
}

/* The bytes bk_encode_response writes for resp and entries[0, count). */
static uint8_t *response_bytes(const bk_response *resp, const bk_entry *entries, size_t count,
                               size_t *len_out)
{
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_response(resp, entries, count, &chain), MG_OK);
    uint8_t *bytes = flatten(&chain, len_out);
    mg_chain_reset(&chain);
    return bytes;
}

static mg_buf *buf_of(const char *text)
{
    mg_buf *b = mg_buf_new_copy(text, strlen(text));
    cr_assert_not_null(b);
    return b;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void assert_request_eq(const bk_request *a, const bk_request *b)
{
    cr_assert_eq(a->request_id, b->request_id);
    cr_assert_eq(a->op, b->op);
    cr_assert_eq(a->present, b->present);
    cr_assert_eq(a->ledger_id, b->ledger_id);
    cr_assert_eq(a->entry_id, b->entry_id);
    cr_assert_eq(a->last_entry_id, b->last_entry_id);
    cr_assert_eq(a->max_bytes, b->max_bytes);
    cr_assert_eq(a->flags, b->flags);
}

static const uint8_t *payload_of(const bk_frame *f)
{
    return mg_buf_data(f->buf) + f->payload_off;
}

/* ---- requests ---------------------------------------------------------------------------- */

Test(bookie_protocol, request_round_trip_every_op)
{
    bk_request reqs[] = {
        { 1, BK_OP_ADD, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 7, 0, 0, 0, 0 },
        { 2, BK_OP_READ, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 7, 123456789012345LL, 0, 0, 0 },
        { 3, BK_OP_READ_RANGE,
          BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID | BK_HAS_LAST_ENTRY_ID | BK_HAS_MAX_BYTES, 8, 10, 99,
          4096, 0 },
        { 4, BK_OP_READ_LAC, BK_HAS_LEDGER_ID, INT64_MAX, 0, 0, 0, 0 },
        { 5, BK_OP_FENCE, BK_HAS_LEDGER_ID | BK_HAS_FLAGS, 9, 0, 0, 0, 3 },
        { 6, BK_OP_DELETE, BK_HAS_LEDGER_ID, 10, 0, 0, 0, 0 },
        { UINT64_MAX, BK_OP_HEALTH, 0, 0, 0, 0, 0, 0 },
    };
    mg_buf *payload = buf_of("xxhello bookiexx");
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        mg_chain chain;
        mg_chain_init(&chain);
        bool add = reqs[i].op == BK_OP_ADD;
        cr_assert_eq(
            bk_encode_request(&reqs[i], add ? payload : NULL, add ? 2 : 0, add ? 12 : 0, &chain),
            MG_OK);
        cr_assert_eq(mg_chain_slice_count(&chain), add ? 2u : 1u);
        size_t len;
        uint8_t *bytes = flatten(&chain, &len);
        mg_chain_reset(&chain);

        bk_decoder dec;
        bk_decoder_init(&dec, BK_FRAME_REQUEST);
        cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
        bk_frame f;
        cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
        assert_request_eq(&f.req, &reqs[i]);
        if (add) {
            cr_assert_eq(f.payload_len, 12);
            cr_assert_eq(memcmp(payload_of(&f), "hello bookie", 12), 0);
        } else {
            cr_assert_eq(f.payload_len, 0);
        }
        /* frame_len counts everything after itself */
        cr_assert_eq(((uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 |
                      (uint32_t)bytes[2] << 8 | bytes[3]),
                     len - 4);
        bk_frame_release(&f);
        cr_assert_eq(bk_decoder_next(&dec, &f), MG_EAGAIN);
        cr_assert_eq(bk_decoder_buffered(&dec), 0);
        bk_decoder_destroy(&dec);
        free(bytes);
    }
    cr_assert_eq(mg_buf_refcount(payload), 1);
    mg_buf_unref(payload);
}

Test(bookie_protocol, unknown_op_parses)
{
    bk_request req = { .request_id = 42, .op = 99, .present = BK_HAS_LEDGER_ID, .ledger_id = 1 };
    size_t len;
    uint8_t *bytes = request_bytes(&req, NULL, 0, 0, &len);
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_REQUEST);
    cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
    bk_frame f;
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    cr_assert_eq(f.req.op, 99);
    cr_assert_eq(f.req.request_id, 42);
    bk_frame_release(&f);
    bk_decoder_destroy(&dec);
    free(bytes);

    /* A response echoing an unknown op parses too (negative values as well). */
    bk_response resp = { .request_id = 43, .op = -5, .status = MG_ENOTSUP };
    snprintf(resp.message, sizeof(resp.message), "unknown op -5");
    bytes = response_bytes(&resp, NULL, 0, &len);
    bk_decoder_init(&dec, BK_FRAME_RESPONSE);
    cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    cr_assert_eq(f.resp.op, -5);
    cr_assert_eq(f.resp.status, MG_ENOTSUP);
    cr_assert_str_eq(f.resp.message, "unknown op -5");
    bk_frame_release(&f);
    bk_decoder_destroy(&dec);
    free(bytes);

    cr_assert_str_eq(bk_op_name(99), "unknown");
    cr_assert_str_eq(bk_op_name(BK_OP_READ_RANGE), "read_range");
    cr_assert_str_eq(bk_op_name(BK_OP_HEALTH), "health");
}

/* ---- responses --------------------------------------------------------------------------- */

Test(bookie_protocol, response_round_trip_every_op)
{
    mg_buf *a = buf_of("AAAAentry-one");
    mg_buf *b = buf_of("entry-two!");
    bk_entry entries[3] = {
        { 10, a, 4, 9 },  /* "entry-one" */
        { 11, b, 0, 10 }, /* "entry-two!" */
        { 12, a, 0, 4 },  /* "AAAA" */
    };
    for (int32_t op = BK_OP_ADD; op <= BK_OP_HEALTH; op++) {
        bk_response resp;
        memset(&resp, 0, sizeof(resp));
        resp.request_id = 1000 + (uint64_t)op;
        resp.op = op;
        resp.status = op == BK_OP_DELETE ? MG_ENOTFOUND : MG_OK;
        resp.present = BK_HAS_LEDGER_ID;
        resp.ledger_id = 77;
        size_t n = 0;
        if (op == BK_OP_ADD) {
            resp.present |= BK_HAS_ENTRY_ID;
            resp.entry_id = 5;
        } else if (op == BK_OP_READ) {
            n = 1;
        } else if (op == BK_OP_READ_RANGE) {
            n = 3;
        } else if (op == BK_OP_READ_LAC || op == BK_OP_FENCE) {
            resp.present |= BK_HAS_LAST_ENTRY_ID;
            resp.last_entry_id = -1;
        }
        if (op == BK_OP_DELETE)
            snprintf(resp.message, sizeof(resp.message), "no such ledger");
        mg_chain chain;
        mg_chain_init(&chain);
        cr_assert_eq(bk_encode_response(&resp, entries, n, &chain), MG_OK);
        cr_assert_eq(mg_chain_slice_count(&chain), 1 + n);
        size_t len;
        uint8_t *bytes = flatten(&chain, &len);
        mg_chain_reset(&chain);

        bk_decoder dec;
        bk_decoder_init(&dec, BK_FRAME_RESPONSE);
        cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
        bk_frame f;
        cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
        cr_assert_eq(f.resp.request_id, resp.request_id);
        cr_assert_eq(f.resp.op, op);
        cr_assert_eq(f.resp.status, resp.status);
        cr_assert_eq(f.resp.present, resp.present);
        cr_assert_eq(f.resp.ledger_id, 77);
        cr_assert_eq(f.resp.entry_id, resp.entry_id);
        cr_assert_eq(f.resp.last_entry_id, resp.last_entry_id);
        cr_assert_str_eq(f.resp.message, resp.message);
        cr_assert_eq(f.entry_count, n);
        const char *want[] = { "entry-one", "entry-two!", "AAAA" };
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(f.entries[i].entry_id, 10 + (int64_t)i);
            cr_assert_eq(f.entries[i].buf, f.buf);
            cr_assert_eq(f.entries[i].len, strlen(want[i]));
            cr_assert_eq(
                memcmp(mg_buf_data(f.entries[i].buf) + f.entries[i].off, want[i], f.entries[i].len),
                0);
            total += f.entries[i].len;
        }
        cr_assert_eq(f.payload_len, total);
        bk_frame_release(&f);
        bk_decoder_destroy(&dec);
        free(bytes);
    }
    cr_assert_eq(mg_buf_refcount(a), 1);
    cr_assert_eq(mg_buf_refcount(b), 1);
    mg_buf_unref(a);
    mg_buf_unref(b);
}

Test(bookie_protocol, adjacent_entries_share_a_slice_and_full_chain_is_refused)
{
    mg_buf *a = buf_of("0123456789");
    bk_entry entries[3] = { { 1, a, 0, 3 }, { 2, a, 3, 3 }, { 3, a, 7, 3 } };
    bk_response resp = { .request_id = 1, .op = BK_OP_READ_RANGE };
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_response(&resp, entries, 3, &chain), MG_OK);
    /* head + "012345" (two adjacent views) + "789" */
    cr_assert_eq(mg_chain_slice_count(&chain), 3);
    cr_assert_eq(mg_buf_refcount(a), 3);
    size_t before = mg_chain_len(&chain);

    /* Fill the chain to one free slot: a frame needing two is refused, chain unchanged. */
    while (mg_chain_slice_count(&chain) < MG_CHAIN_SLICES_MAX - 1)
        cr_assert_eq(mg_chain_append(&chain, a, 0, 1), MG_OK);
    size_t len_full = mg_chain_len(&chain);
    uint32_t refs = mg_buf_refcount(a);
    cr_assert_eq(bk_encode_request(&(bk_request){ .op = BK_OP_ADD }, a, 0, 2, &chain), MG_ELIMIT);
    cr_assert_eq(mg_chain_len(&chain), len_full);
    cr_assert_eq(mg_buf_refcount(a), refs);
    cr_assert(before < len_full);
    /* A view outside the buffer is refused. */
    mg_chain_reset(&chain);
    cr_assert_eq(bk_encode_request(&(bk_request){ .op = BK_OP_ADD }, a, 5, 6, &chain), MG_EINVAL);
    cr_assert_eq(mg_chain_len(&chain), 0);
    cr_assert_eq(mg_buf_refcount(a), 1);
    mg_buf_unref(a);
}

/* ---- incremental decoding ---------------------------------------------------------------- */

#define STREAM_FRAMES 40

/* Encodes STREAM_FRAMES requests (every third an ADD with a payload of varying size, one of
 * them larger than a read buffer) into one byte string. */
static uint8_t *make_stream(bk_request *reqs, size_t *len_out)
{
    size_t cap = 1 << 20, len = 0;
    uint8_t *out = malloc(cap);
    cr_assert_not_null(out);
    for (int i = 0; i < STREAM_FRAMES; i++) {
        bk_request *r = &reqs[i];
        memset(r, 0, sizeof(*r));
        r->request_id = 100 + (uint64_t)i;
        r->op = (i % 3 == 0) ? BK_OP_ADD : (i % 3 == 1 ? BK_OP_READ : BK_OP_READ_RANGE);
        r->present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID;
        r->ledger_id = i;
        r->entry_id = 2 * i;
        if (r->op == BK_OP_READ_RANGE) {
            r->present |= BK_HAS_LAST_ENTRY_ID | BK_HAS_MAX_BYTES;
            r->last_entry_id = 3 * i;
            r->max_bytes = (uint32_t)i * 100;
        }
        size_t plen = r->op == BK_OP_ADD ? (i == 9 ? 100000 : (size_t)i * 37) : 0;
        mg_buf *p = mg_buf_new(plen);
        for (size_t k = 0; k < plen; k++)
            mg_buf_data(p)[k] = (uint8_t)(i + k);
        mg_buf_set_len(p, plen);
        mg_chain chain;
        mg_chain_init(&chain);
        cr_assert_eq(bk_encode_request(r, p, 0, plen, &chain), MG_OK);
        cr_assert_leq(len + mg_chain_len(&chain), cap);
        len += mg_chain_copy_out(&chain, 0, out + len, cap - len);
        mg_chain_reset(&chain);
        mg_buf_unref(p);
    }
    *len_out = len;
    return out;
}

static void check_frame(const bk_frame *f, const bk_request *want, int i)
{
    assert_request_eq(&f->req, want);
    size_t plen = want->op == BK_OP_ADD ? (i == 9 ? 100000 : (size_t)i * 37) : 0;
    cr_assert_eq(f->payload_len, plen);
    const uint8_t *p = payload_of(f);
    for (size_t k = 0; k < plen; k++)
        cr_assert_eq(p[k], (uint8_t)(i + k), "frame %d byte %zu", i, k);
}

/* Feeds the stream in chunks chosen by next_chunk and checks every frame comes out intact. */
static void feed_in_chunks(size_t (*next_chunk)(size_t remaining))
{
    bk_request reqs[STREAM_FRAMES];
    size_t len;
    uint8_t *stream = make_stream(reqs, &len);
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_REQUEST);
    int got = 0;
    size_t off = 0;
    while (off < len) {
        size_t n = next_chunk(len - off);
        cr_assert_eq(bk_decoder_feed(&dec, stream + off, n), MG_OK);
        off += n;
        bk_frame f;
        int rc;
        while ((rc = bk_decoder_next(&dec, &f)) == MG_OK) {
            cr_assert_lt(got, STREAM_FRAMES);
            check_frame(&f, &reqs[got], got);
            got++;
            bk_frame_release(&f);
        }
        cr_assert_eq(rc, MG_EAGAIN);
    }
    cr_assert_eq(got, STREAM_FRAMES);
    cr_assert_eq(bk_decoder_buffered(&dec), 0);
    bk_decoder_destroy(&dec);
    free(stream);
}

static size_t chunk_one(size_t remaining)
{
    (void)remaining;
    return 1;
}

static size_t chunk_random(size_t remaining)
{
    size_t n = 1 + (size_t)(rng() % 3000);
    return n < remaining ? n : remaining;
}

static size_t chunk_all(size_t remaining)
{
    return remaining;
}

Test(bookie_protocol, decoder_byte_by_byte)
{
    feed_in_chunks(chunk_one);
}

Test(bookie_protocol, decoder_random_splits)
{
    for (int round = 0; round < 20; round++)
        feed_in_chunks(chunk_random);
}

Test(bookie_protocol, decoder_many_frames_per_chunk)
{
    feed_in_chunks(chunk_all);
}

Test(bookie_protocol, payload_is_zero_copy_when_contiguous)
{
    mg_buf *payload = buf_of("zero-copy payload");
    bk_request req = { .request_id = 9,
                       .op = BK_OP_ADD,
                       .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                       .ledger_id = 1,
                       .entry_id = 2 };
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_request(&req, payload, 0, mg_buf_len(payload), &chain), MG_OK);
    /* The encoder referenced the payload instead of copying it. */
    cr_assert_eq(mg_buf_refcount(payload), 2);
    struct iovec iov[2];
    cr_assert_eq(mg_chain_to_iovec(&chain, iov, 2), 2);
    cr_assert_eq(iov[1].iov_base, (void *)mg_buf_data(payload));
    size_t len;
    uint8_t *bytes = flatten(&chain, &len);
    mg_chain_reset(&chain);
    cr_assert_eq(mg_buf_refcount(payload), 1);

    /* Two frames received by one read: both payloads are views of the read buffer. */
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_REQUEST);
    uv_buf_t space;
    cr_assert_eq(bk_decoder_alloc(&dec, &space), MG_OK);
    cr_assert_geq(space.len, 2 * len);
    memcpy(space.base, bytes, len);
    memcpy(space.base + len, bytes, len);
    bk_decoder_commit(&dec, 2 * len);
    bk_frame f1, f2;
    cr_assert_eq(bk_decoder_next(&dec, &f1), MG_OK);
    cr_assert_eq(bk_decoder_next(&dec, &f2), MG_OK);
    cr_assert_eq(f1.buf, f2.buf);
    cr_assert_eq(mg_buf_refcount(f1.buf), 3); /* decoder + two frames */
    size_t header_len = len - 8 - mg_buf_len(payload);
    cr_assert_eq((const char *)payload_of(&f1), space.base + 8 + header_len);
    cr_assert_eq((const char *)payload_of(&f2), space.base + len + 8 + header_len);
    cr_assert_eq(memcmp(payload_of(&f2), "zero-copy payload", 17), 0);

    /* The next read continues in the same (shared) buffer; earlier views keep their bytes. */
    uv_buf_t space2;
    cr_assert_eq(bk_decoder_alloc(&dec, &space2), MG_OK);
    cr_assert_eq(space2.base, space.base + 2 * len);
    mg_buf *held = mg_buf_ref(f1.buf);
    bk_frame_release(&f1);
    bk_frame_release(&f2);
    cr_assert_eq(mg_buf_refcount(held), 2);
    bk_decoder_destroy(&dec);
    cr_assert_eq(mg_buf_refcount(held), 1);
    mg_buf_unref(held);
    mg_buf_unref(payload);
    free(bytes);
}

Test(bookie_protocol, large_frame_gets_one_buffer)
{
    /* A frame larger than a read buffer, arriving in 4 KiB reads, ends up whole in one buffer. */
    size_t plen = 3 * BK_READ_BUF_BYTES + 123;
    mg_buf *payload = mg_buf_new(plen);
    for (size_t i = 0; i < plen; i++)
        mg_buf_data(payload)[i] = (uint8_t)(i * 7);
    mg_buf_set_len(payload, plen);
    bk_request req = { .request_id = 1,
                       .op = BK_OP_ADD,
                       .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID };
    size_t len;
    uint8_t *bytes = request_bytes(&req, payload, 0, plen, &len);

    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_REQUEST);
    bk_frame f;
    size_t off = 0;
    while (off < len) {
        uv_buf_t space;
        cr_assert_eq(bk_decoder_alloc(&dec, &space), MG_OK);
        size_t n = len - off < 4096 ? len - off : 4096;
        n = n < space.len ? n : space.len;
        memcpy(space.base, bytes + off, n);
        bk_decoder_commit(&dec, n);
        off += n;
        if (off < len)
            cr_assert_eq(bk_decoder_next(&dec, &f), MG_EAGAIN);
    }
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    cr_assert_eq(f.payload_len, plen);
    cr_assert_eq(memcmp(payload_of(&f), mg_buf_data(payload), plen), 0);
    cr_assert_eq(mg_buf_cap(f.buf), len); /* a buffer of exactly the frame's size */
    bk_frame_release(&f);
    /* Once consumed, the big buffer is dropped for a standard one. */
    uv_buf_t space;
    cr_assert_eq(bk_decoder_alloc(&dec, &space), MG_OK);
    cr_assert_eq(space.len, BK_READ_BUF_BYTES);
    bk_decoder_destroy(&dec);
    mg_buf_unref(payload);
    free(bytes);
}

/* ---- malformed input --------------------------------------------------------------------- */

static int decode_raw(bk_frame_kind kind, const uint8_t *bytes, size_t len)
{
    bk_decoder dec;
    bk_decoder_init(&dec, kind);
    cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
    bk_frame f;
    int rc = bk_decoder_next(&dec, &f);
    if (rc == MG_OK)
        bk_frame_release(&f);
    /* Errors are sticky. */
    if (rc == MG_EPROTO)
        cr_assert_eq(bk_decoder_next(&dec, &f), MG_EPROTO);
    bk_decoder_destroy(&dec);
    return rc;
}

Test(bookie_protocol, bad_frame_lengths)
{
    uint8_t b[16] = { 0 };
    put_u32(b, 0);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 4), MG_EPROTO);
    put_u32(b, 3);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 4), MG_EPROTO);
    put_u32(b, BK_FRAME_BYTES_MAX + 1);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 4), MG_EPROTO); /* refused at once */
    put_u32(b, UINT32_MAX);
    cr_assert_eq(decode_raw(BK_FRAME_RESPONSE, b, 4), MG_EPROTO);
    /* The largest legal length only waits for more bytes. */
    put_u32(b, BK_FRAME_BYTES_MAX);
    put_u32(b + 4, 2);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 8), MG_EAGAIN);
    /* header_len larger than the frame */
    put_u32(b, 8);
    put_u32(b + 4, 5);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 8), MG_EPROTO);
    put_u32(b + 4, UINT32_MAX);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 8), MG_EPROTO);
    /* An empty header lacks the required fields. */
    put_u32(b, 4);
    put_u32(b + 4, 0);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, 8), MG_EPROTO);
}

Test(bookie_protocol, garbage_header)
{
    uint8_t b[8 + 6];
    put_u32(b, 4 + 6);
    put_u32(b + 4, 6);
    memcpy(b + 8, "\xff\xff\xff\xff\xff\xff", 6); /* a field tag that never ends */
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, b, sizeof(b)), MG_EPROTO);
    cr_assert_eq(decode_raw(BK_FRAME_RESPONSE, b, sizeof(b)), MG_EPROTO);
    /* A valid Request is not a valid Response (status missing). */
    bk_request req = { .request_id = 1, .op = BK_OP_HEALTH };
    size_t len;
    uint8_t *bytes = request_bytes(&req, NULL, 0, 0, &len);
    cr_assert_eq(decode_raw(BK_FRAME_REQUEST, bytes, len), MG_OK);
    cr_assert_eq(decode_raw(BK_FRAME_RESPONSE, bytes, len), MG_EPROTO);
    free(bytes);
}

Test(bookie_protocol, response_sizes_must_match_payload)
{
    mg_buf *a = buf_of("abcdef");
    bk_entry e = { 1, a, 0, 6 };
    bk_response resp = { .request_id = 1, .op = BK_OP_READ };
    size_t len;
    uint8_t *bytes = response_bytes(&resp, &e, 1, &len);
    /* Append one stray payload byte and fix up frame_len: sizes no longer add up. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, bytes, len);
    longer[len] = 'x';
    put_u32(longer, (uint32_t)(len + 1 - 4));
    cr_assert_eq(decode_raw(BK_FRAME_RESPONSE, bytes, len), MG_OK);
    cr_assert_eq(decode_raw(BK_FRAME_RESPONSE, longer, len + 1), MG_EPROTO);
    free(longer);
    free(bytes);
    mg_buf_unref(a);
}

Test(bookie_protocol, encoder_limits)
{
    mg_buf *head = NULL;
    bk_request req = { .op = BK_OP_ADD };
    cr_assert_eq(bk_encode_request_head(&req, BK_FRAME_BYTES_MAX, &head), MG_ELIMIT);
    cr_assert_null(head);
    cr_assert_eq(bk_encode_request_head(&req, BK_ENTRY_BYTES_MAX, &head), MG_OK);
    cr_assert_not_null(head);
    mg_buf_unref(head);
    head = NULL;
    bk_response resp = { .op = BK_OP_READ_RANGE };
    bk_entry e = { 0, NULL, 0, 0 };
    cr_assert_eq(bk_encode_response_head(&resp, &e, BK_RANGE_ENTRIES_MAX + 1, &head), MG_ELIMIT);
    cr_assert_null(head);
}

/* ---- entry list forms -------------------------------------------------------------------- */

/* The header of an encoded response frame, unpacked (free with ..._free_unpacked). */
static Magnetar__Bookie__Response *encoded_header(const bk_response *resp, const bk_entry *entries,
                                                  size_t count)
{
    mg_buf *head = NULL;
    cr_assert_eq(bk_encode_response_head(resp, entries, count, &head), MG_OK);
    const uint8_t *p = mg_buf_data(head);
    size_t header_len = ((size_t)p[4] << 24) | ((size_t)p[5] << 16) | ((size_t)p[6] << 8) | p[7];
    cr_assert_eq(header_len + 8, mg_buf_len(head));
    Magnetar__Bookie__Response *m = magnetar__bookie__response__unpack(NULL, header_len, p + 8);
    cr_assert_not_null(m);
    mg_buf_unref(head);
    return m;
}

/* A response frame with the header m and payload_len bytes of payload ('p'). */
static uint8_t *raw_response(const Magnetar__Bookie__Response *m, size_t payload_len,
                             size_t *len_out)
{
    size_t header_len = protobuf_c_message_get_packed_size(&m->base);
    size_t len = 8 + header_len + payload_len;
    uint8_t *bytes = malloc(len);
    cr_assert_not_null(bytes);
    put_u32(bytes, (uint32_t)(len - 4));
    put_u32(bytes + 4, (uint32_t)header_len);
    cr_assert_eq(protobuf_c_message_pack(&m->base, bytes + 8), header_len);
    memset(bytes + 8 + header_len, 'p', payload_len);
    *len_out = len;
    return bytes;
}

/* Decodes one response frame into *f (MG_OK) or returns the error. */
static int decode_response(const uint8_t *bytes, size_t len, bk_frame *f)
{
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_RESPONSE);
    cr_assert_eq(bk_decoder_feed(&dec, bytes, len), MG_OK);
    int rc = bk_decoder_next(&dec, f);
    bk_decoder_destroy(&dec); /* the frame keeps its own reference */
    return rc;
}

Test(bookie_protocol, consecutive_entries_use_the_compact_form)
{
    mg_buf *a = buf_of("0123456789");
    bk_entry entries[3] = { { 10, a, 0, 3 }, { 11, a, 3, 0 }, { 12, a, 3, 7 } };
    bk_response resp = { .request_id = 9, .op = BK_OP_READ_RANGE };
    Magnetar__Bookie__Response *m = encoded_header(&resp, entries, 3);
    cr_assert(m->has_first_entry_id);
    cr_assert_eq(m->first_entry_id, 10);
    cr_assert_eq(m->n_entry_sizes, 3);
    cr_assert_eq(m->entry_sizes[0], 3);
    cr_assert_eq(m->entry_sizes[1], 0);
    cr_assert_eq(m->entry_sizes[2], 7);
    cr_assert_eq(m->n_entries, 0);
    magnetar__bookie__response__free_unpacked(m, NULL);

    /* One entry (READ) too, and the largest ids. */
    bk_entry top[2] = { { INT64_MAX - 1, a, 0, 4 }, { INT64_MAX, a, 4, 6 } };
    m = encoded_header(&resp, top, 2);
    cr_assert(m->has_first_entry_id);
    cr_assert_eq(m->first_entry_id, INT64_MAX - 1);
    cr_assert_eq(m->n_entry_sizes, 2);
    cr_assert_eq(m->n_entries, 0);
    magnetar__bookie__response__free_unpacked(m, NULL);
    m = encoded_header(&resp, &top[1], 1);
    cr_assert_eq(m->first_entry_id, INT64_MAX);
    cr_assert_eq(m->n_entry_sizes, 1);
    magnetar__bookie__response__free_unpacked(m, NULL);

    /* No entries: neither form. */
    m = encoded_header(&resp, NULL, 0);
    cr_assert(!m->has_first_entry_id);
    cr_assert_eq(m->n_entry_sizes, 0);
    cr_assert_eq(m->n_entries, 0);
    magnetar__bookie__response__free_unpacked(m, NULL);

    /* Round trip of the top ids through the decoder. */
    size_t len;
    uint8_t *bytes = response_bytes(&resp, top, 2, &len);
    bk_frame f;
    cr_assert_eq(decode_response(bytes, len, &f), MG_OK);
    cr_assert_eq(f.entry_count, 2);
    cr_assert_eq(f.entries[0].entry_id, INT64_MAX - 1);
    cr_assert_eq(f.entries[1].entry_id, INT64_MAX);
    cr_assert_eq(memcmp(mg_buf_data(f.buf) + f.entries[0].off, "0123", 4), 0);
    cr_assert_eq(f.entries[1].off, f.entries[0].off + 4);
    cr_assert_eq(memcmp(mg_buf_data(f.buf) + f.entries[1].off, "456789", 6), 0);
    bk_frame_release(&f);
    free(bytes);
    mg_buf_unref(a);
}

Test(bookie_protocol, other_ids_use_entry_refs_and_decode_the_same)
{
    mg_buf *a = buf_of("aabbbcccc");
    /* Out of order, a gap, a repeat, a negative id: all sent as EntryRefs. */
    static const int64_t id_sets[][3] = { { 5, 7, 6 }, { 5, 6, 8 }, { 5, 5, 6 }, { -1, 0, 1 } };
    bk_response resp = { .request_id = 3, .op = BK_OP_READ_RANGE };
    for (size_t s = 0; s < sizeof(id_sets) / sizeof(id_sets[0]); s++) {
        bk_entry entries[3] = { { id_sets[s][0], a, 0, 2 },
                                { id_sets[s][1], a, 2, 3 },
                                { id_sets[s][2], a, 5, 4 } };
        Magnetar__Bookie__Response *m = encoded_header(&resp, entries, 3);
        cr_assert(!m->has_first_entry_id, "set %zu", s);
        cr_assert_eq(m->n_entry_sizes, 0);
        cr_assert_eq(m->n_entries, 3);
        magnetar__bookie__response__free_unpacked(m, NULL);

        size_t len;

        uint8_t *bytes = response_bytes(&resp, entries, 3, &len);
        bk_frame f;
        cr_assert_eq(decode_response(bytes, len, &f), MG_OK);
        cr_assert_eq(f.entry_count, 3);
        const char *want[3] = { "aa", "bbb", "cccc" };
        for (size_t i = 0; i < 3; i++) {
            cr_assert_eq(f.entries[i].entry_id, id_sets[s][i]);
            cr_assert_eq(f.entries[i].buf, f.buf);
            cr_assert_eq(f.entries[i].len, strlen(want[i]));
            cr_assert_eq(memcmp(mg_buf_data(f.buf) + f.entries[i].off, want[i], strlen(want[i])),
                         0);
        }
        bk_frame_release(&f);
        free(bytes);
    }
    mg_buf_unref(a);
}

Test(bookie_protocol, entry_refs_for_consecutive_ids_still_decode)
{
    /* The form every response used before the compact one: consecutive ids as EntryRefs. */
    Magnetar__Bookie__EntryRef r0 = MAGNETAR__BOOKIE__ENTRY_REF__INIT;
    Magnetar__Bookie__EntryRef r1 = MAGNETAR__BOOKIE__ENTRY_REF__INIT;
    r0.entry_id = 40;
    r0.size = 3;
    r1.entry_id = 41;
    r1.size = 5;
    Magnetar__Bookie__EntryRef *refs[2] = { &r0, &r1 };
    Magnetar__Bookie__Response m = MAGNETAR__BOOKIE__RESPONSE__INIT;
    m.request_id = 77;
    m.op = BK_OP_READ_RANGE;
    m.status = MG_OK;
    m.n_entries = 2;
    m.entries = refs;
    size_t len;
    uint8_t *bytes = raw_response(&m, 8, &len);
    bk_frame f;
    cr_assert_eq(decode_response(bytes, len, &f), MG_OK);
    cr_assert_eq(f.resp.request_id, 77);
    cr_assert_eq(f.entry_count, 2);
    cr_assert_eq(f.entries[0].entry_id, 40);
    cr_assert_eq(f.entries[0].len, 3);
    cr_assert_eq(f.entries[0].off, f.payload_off);
    cr_assert_eq(f.entries[1].entry_id, 41);
    cr_assert_eq(f.entries[1].len, 5);
    cr_assert_eq(f.entries[1].off, f.payload_off + 3);
    bk_frame_release(&f);
    free(bytes);
}

/* Decodes a compact-form header with the given fields and payload length. */
static int decode_compact(bool has_first, int64_t first, const uint32_t *sizes, size_t n,
                          bool with_ref, size_t payload_len)
{
    Magnetar__Bookie__EntryRef r = MAGNETAR__BOOKIE__ENTRY_REF__INIT;
    r.entry_id = 1;
    r.size = 0;
    Magnetar__Bookie__EntryRef *refs[1] = { &r };
    Magnetar__Bookie__Response m = MAGNETAR__BOOKIE__RESPONSE__INIT;
    m.request_id = 1;
    m.op = BK_OP_READ_RANGE;
    m.has_first_entry_id = has_first;
    m.first_entry_id = first;
    m.n_entry_sizes = n;
    m.entry_sizes = (uint32_t *)sizes;
    if (with_ref) {
        m.n_entries = 1;
        m.entries = refs;
    }
    size_t len;
    uint8_t *bytes = raw_response(&m, payload_len, &len);
    int rc = decode_raw(BK_FRAME_RESPONSE, bytes, len);
    free(bytes);
    return rc;
}

Test(bookie_protocol, malformed_compact_lists_are_refused)
{
    uint32_t sizes[2] = { 3, 4 };
    cr_assert_eq(decode_compact(true, 0, sizes, 2, false, 7), MG_OK);
    cr_assert_eq(decode_compact(true, INT64_MAX - 1, sizes, 2, false, 7), MG_OK);
    cr_assert_eq(decode_compact(true, INT64_MAX, sizes, 1, false, 3), MG_OK);
    /* The last id would pass INT64_MAX. */
    cr_assert_eq(decode_compact(true, INT64_MAX, sizes, 2, false, 7), MG_EPROTO);
    cr_assert_eq(decode_compact(true, -1, sizes, 2, false, 7), MG_EPROTO);
    cr_assert_eq(decode_compact(true, INT64_MIN, sizes, 1, false, 3), MG_EPROTO);
    /* One field without the other. */
    cr_assert_eq(decode_compact(false, 0, sizes, 2, false, 7), MG_EPROTO);
    cr_assert_eq(decode_compact(true, 5, NULL, 0, false, 0), MG_EPROTO);
    /* Both forms at once. */
    cr_assert_eq(decode_compact(true, 5, sizes, 2, true, 7), MG_EPROTO);
    /* Sizes that do not add up to the payload. */
    cr_assert_eq(decode_compact(true, 5, sizes, 2, false, 6), MG_EPROTO);
    cr_assert_eq(decode_compact(true, 5, sizes, 2, false, 8), MG_EPROTO);
    /* More entries than a response may carry (each of size 0, so the payload is empty). */
    static uint32_t zeros[BK_RANGE_ENTRIES_MAX + 1];
    cr_assert_eq(decode_compact(true, 0, zeros, BK_RANGE_ENTRIES_MAX, false, 0), MG_OK);
    cr_assert_eq(decode_compact(true, 0, zeros, BK_RANGE_ENTRIES_MAX + 1, false, 0), MG_EPROTO);
}

/* ---- output queue ------------------------------------------------------------------------ */

typedef struct outq_ctx {
    int written;
    int last_status;
} outq_ctx;

static void outq_written(bk_outq *q, int status)
{
    outq_ctx *ctx = q->arg;
    ctx->written++;
    ctx->last_status = status;
}

/* A loop and a socket pair: pipe wraps fds[0] (written through the loop), fds[1] is read
 * directly. */
static void pipe_pair_open(uv_loop_t *loop, uv_pipe_t *pipe, int fds[2])
{
    cr_assert_eq(uv_loop_init(loop), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    cr_assert_eq(uv_pipe_init(loop, pipe, 0), 0);
    cr_assert_eq(uv_pipe_open(pipe, fds[0]), 0);
}

static void pipe_pair_close(uv_loop_t *loop, uv_pipe_t *pipe, int fds[2])
{
    uv_close((uv_handle_t *)pipe, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(loop), 0);
    close(fds[1]);
}

/* Reads exactly n bytes from fd and feeds them to a new decoder of kind. */
static void read_into_decoder(int fd, size_t n, bk_frame_kind kind, bk_decoder *dec)
{
    uint8_t *bytes = malloc(n);
    cr_assert_not_null(bytes);
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, bytes + got, n - got);
        cr_assert_gt(r, 0);
        got += (size_t)r;
    }
    bk_decoder_init(dec, kind);
    cr_assert_eq(bk_decoder_feed(dec, bytes, got), MG_OK);
    free(bytes);
}

Test(bookie_protocol, outq_writes_many_entry_response_over_blocks)
{
    enum { N = 200 };
    uv_loop_t loop;
    uv_pipe_t pipe;
    int fds[2];
    pipe_pair_open(&loop, &pipe, fds);

    /* N entries, each its own buffer: N + 1 slices, four blocks. */
    mg_buf *bufs[N];
    bk_entry entries[N];
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "entry %d", i);
        bufs[i] = buf_of(text);
        entries[i] = (bk_entry){ i, bufs[i], 0, strlen(text) };
    }
    outq_ctx ctx = { 0, 1 };
    bk_outq q;
    mg_outq_init(&q, outq_written, &ctx);
    bk_response resp = { .request_id = 5, .op = BK_OP_READ_RANGE };
    cr_assert_eq(bk_outq_push_response(&q, &resp, entries, N), MG_OK);
    /* A second, small frame coalesces into the last block. */
    bk_response health = { .request_id = 6, .op = BK_OP_HEALTH, .status = MG_EREADONLY };
    cr_assert_eq(bk_outq_push_response(&q, &health, NULL, 0), MG_OK);
    size_t queued = mg_outq_queued_bytes(&q);
    cr_assert_gt(queued, 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(mg_buf_refcount(bufs[i]), 2); /* referenced, not copied */
    cr_assert_eq(mg_outq_flush(&q, (uv_stream_t *)&pipe), MG_OK);
    cr_assert_eq(mg_outq_writes_inflight(&q), 4);
    cr_assert_eq(mg_outq_flush(&q, (uv_stream_t *)&pipe), MG_OK); /* no-op while in flight */
    for (int spins = 0; spins < 100 && mg_outq_writes_inflight(&q) > 0; spins++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(ctx.written, 4);
    cr_assert_eq(ctx.last_status, MG_OK);
    cr_assert_eq(mg_outq_queued_bytes(&q), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(mg_buf_refcount(bufs[i]), 1);

    /* Read back what was written and decode it. */
    bk_decoder dec;
    read_into_decoder(fds[1], queued, BK_FRAME_RESPONSE, &dec);
    bk_frame f;
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    cr_assert_eq(f.resp.request_id, 5);
    cr_assert_eq(f.entry_count, N);
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "entry %d", i);
        cr_assert_eq(f.entries[i].entry_id, i);
        cr_assert_eq(f.entries[i].len, strlen(text));
        cr_assert_eq(memcmp(mg_buf_data(f.buf) + f.entries[i].off, text, strlen(text)), 0);
    }
    bk_frame_release(&f);
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    cr_assert_eq(f.resp.request_id, 6);
    cr_assert_eq(f.resp.status, MG_EREADONLY);
    bk_frame_release(&f);
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_EAGAIN);
    bk_decoder_destroy(&dec);

    /* Discarding drops queued frames and their references. */
    cr_assert_eq(bk_outq_push_response(&q, &resp, entries, 3), MG_OK);
    cr_assert_eq(mg_buf_refcount(bufs[0]), 2);
    mg_outq_discard(&q);
    cr_assert_eq(mg_buf_refcount(bufs[0]), 1);
    cr_assert_eq(mg_outq_queued_bytes(&q), 0);

    for (int i = 0; i < N; i++)
        mg_buf_unref(bufs[i]);
    pipe_pair_close(&loop, &pipe, fds);
}

/* An ADD with a prefix: the frame's payload is prefix || payload, the prefix travels in the
 * head buffer, the payload as a reference (not copied); too long a prefix is refused. */
Test(bookie_protocol, prefixed_add_request_carries_prefix_then_payload)
{
    mg_buf *payload = buf_of("xxthe message itselfxx");
    static const uint8_t prefix[] = { 0x0e, 0x02, 0, 0, 0, 3, 'b', 'e', 'm' };
    outq_ctx ctx = { 0, 1 };
    bk_outq q;
    mg_outq_init(&q, outq_written, &ctx);
    bk_request req = { 9, BK_OP_ADD, BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID, 4, 17, 0, 0, 0 };
    uint8_t big[BK_REQUEST_PREFIX_BYTES_MAX + 1] = { 0 };
    cr_assert_eq(bk_outq_push_request_prefixed(&q, &req, big, sizeof(big), payload, 2, 20),
                 MG_EINVAL);
    cr_assert_eq(mg_outq_queued_bytes(&q), 0, "a refused frame queues nothing");
    cr_assert_eq(bk_outq_push_request_prefixed(&q, &req, prefix, sizeof(prefix), payload, 2, 20),
                 MG_OK);
    cr_assert_eq(mg_buf_refcount(payload), 2, "the payload is referenced, not copied");

    uv_loop_t loop;
    uv_pipe_t pipe;
    int fds[2];
    pipe_pair_open(&loop, &pipe, fds);
    size_t queued = mg_outq_queued_bytes(&q);
    cr_assert_eq(mg_outq_flush(&q, (uv_stream_t *)&pipe), MG_OK);
    for (int spins = 0; spins < 100 && mg_outq_writes_inflight(&q) > 0; spins++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(ctx.last_status, MG_OK);
    bk_decoder dec;
    read_into_decoder(fds[1], queued, BK_FRAME_REQUEST, &dec);
    cr_assert_eq(mg_buf_refcount(payload), 1, "written: the queue let go of the payload");
    bk_frame f;
    cr_assert_eq(bk_decoder_next(&dec, &f), MG_OK);
    assert_request_eq(&f.req, &req);
    cr_assert_eq(f.payload_len, sizeof(prefix) + 20);
    const uint8_t *p = payload_of(&f);
    cr_assert_eq(memcmp(p, prefix, sizeof(prefix)), 0);
    cr_assert_eq(memcmp(p + sizeof(prefix), "the message itself", 18), 0);
    bk_frame_release(&f);
    bk_decoder_destroy(&dec);
    mg_buf_unref(payload);
    pipe_pair_close(&loop, &pipe, fds);
}
