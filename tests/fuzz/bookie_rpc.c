/*
 * Fuzz target bookie_rpc: bytes arriving on a bookie RPC connection (port 3181), decoded as the
 * bookie server reads requests and the broker's bookie client reads responses
 * (bookie/protocol.h). The first input byte chooses the side (bit 0: 0 = requests, as
 * bookie/server.c decodes them; 1 = responses, as bookie/client.c does) and seeds the sizes of
 * the "reads" (bytes 1..): the rest of the input is delivered through bk_decoder_alloc and
 * bk_decoder_commit in pieces of those sizes, as libuv's read callbacks deliver it, and
 * bk_decoder_next is called after each piece until it needs more bytes, so every buffering path
 * of the decoder (frames split across reads, buffers still referenced by earlier frames) runs.
 * Decoded frames are held a few at a time before release, as a server holds an ADD's payload
 * while storing it. A request then goes through the server's field checks (bk_request_check).
 *
 * Checks: every entry view and payload lies inside the frame's buffer (the bytes are read, so
 * ASan sees them); entry sizes add up to the payload; a decoded header encodes again and the
 * result decodes to the same header; MG_EPROTO is sticky.
 */
#include "bookie/limits.h"
#include "bookie/protocol.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Frames kept alive at once before the oldest is released. */
#define HELD_FRAMES          4u
/* Reads one input is cut into at most: bounds the loop. */
#define READS_MAX            4096u
/* A frame announced larger than this ends the input before the decoder allocates room for it.
 * Such a frame can never complete from an input of a few KiB anyway, and under ASan each
 * allocation of up to BK_FRAME_BYTES_MAX (poisoning its shadow) would cost more than everything
 * else: the fuzzer ran at about 1,000 inputs/s instead of tens of thousands. Announcements above
 * BK_READ_BUF_BYTES and up to this bound still take the decoder's large-frame paths, and those
 * above BK_FRAME_BYTES_MAX its refusal. */
#define FRAME_BYTES_FUZZ_MAX (4u * BK_READ_BUF_BYTES)

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "bookie_rpc: invariant broken: %s\n", what);
        abort();
    }
}

static volatile uint8_t sink;

static void touch(mg_buf *buf, size_t off, size_t len)
{
    check(off <= mg_buf_len(buf) && len <= mg_buf_len(buf) - off, "a view outside its buffer");
    const uint8_t *p = mg_buf_data(buf) + off;
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= p[i];
    sink = x;
}

/* Encodes the decoded header again and decodes the result with dec (one decoder for every
 * frame of an input, empty between frames: a fresh one per frame made its 64 KiB read buffer
 * the largest cost of the target under ASan): it must give the same header. */
static void roundtrip(bk_decoder *dec, bk_frame_kind kind, const bk_frame *f)
{
    mg_buf *head = NULL;
    int rc = kind == BK_FRAME_REQUEST
                 ? bk_encode_request_head(&f->req, f->payload_len, &head)
                 : bk_encode_response_head(&f->resp, f->entries, f->entry_count, &head);
    if (rc == MG_ELIMIT)
        return;
    check(rc == MG_OK, "a decoded header does not encode");
    check(bk_decoder_buffered(dec) == 0, "the round-trip decoder is not empty");
    check(bk_decoder_feed(dec, mg_buf_data(head), mg_buf_len(head)) == MG_OK, "feed failed");
    if (f->payload_len > 0)
        check(bk_decoder_feed(dec, mg_buf_data(f->buf) + f->payload_off, f->payload_len) == MG_OK,
              "feed failed");
    bk_frame g;
    check(bk_decoder_next(dec, &g) == MG_OK, "a re-encoded frame does not decode");
    check(g.payload_len == f->payload_len, "payload length changed");
    if (kind == BK_FRAME_REQUEST) {
        check(memcmp(&g.req, &f->req, sizeof(g.req)) == 0, "request header changed");
    } else {
        check(g.resp.request_id == f->resp.request_id && g.resp.op == f->resp.op &&
                  g.resp.status == f->resp.status && g.resp.present == f->resp.present &&
                  strcmp(g.resp.message, f->resp.message) == 0,
              "response header changed");
        check(g.entry_count == f->entry_count, "entry count changed");
        for (size_t i = 0; i < g.entry_count; i++)
            check(g.entries[i].entry_id == f->entries[i].entry_id &&
                      g.entries[i].len == f->entries[i].len,
                  "entry list changed");
    }
    bk_frame_release(&g);
    check(bk_decoder_buffered(dec) == 0, "bytes left after the re-encoded frame");
    mg_buf_unref(head);
}

static void inspect(bk_decoder *again, bk_frame_kind kind, const bk_frame *f)
{
    check(f->buf != NULL, "a decoded frame without its buffer");
    touch(f->buf, f->payload_off, f->payload_len);
    if (kind == BK_FRAME_REQUEST) {
        char why[96];
        (void)bk_request_check(&f->req, f->payload_len, why, sizeof(why));
        check(f->entry_count == 0, "a request with entries");
    } else {
        check(memchr(f->resp.message, '\0', sizeof(f->resp.message)) != NULL,
              "message not terminated");
        size_t sum = 0, off = f->payload_off;
        for (size_t i = 0; i < f->entry_count; i++) {
            const bk_entry *e = &f->entries[i];
            check(e->buf == f->buf && e->off == off, "entries not contiguous in the frame");
            touch(e->buf, e->off, e->len);
            sum += e->len;
            off += e->len;
        }
        check(sum == f->payload_len, "entry sizes do not add up to the payload");
    }
    roundtrip(again, kind, f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bk_frame_kind kind = (data[0] & 1) ? BK_FRAME_RESPONSE : BK_FRAME_REQUEST;
    uint32_t seed = data[0] >> 1 | (uint32_t)data[1] << 7;
    data += 2;
    size -= 2;

    bk_decoder dec, again;
    bk_decoder_init(&dec, kind);
    bk_decoder_init(&again, kind);
    bk_frame held[HELD_FRAMES];
    memset(held, 0, sizeof(held));
    unsigned next_slot = 0;
    bool broken = false;
    size_t pos = 0;
    for (unsigned reads = 0; pos < size && !broken && reads < READS_MAX; reads++) {
        if (bk_decoder_buffered(&dec) >= 4) {
            const uint8_t *p = mg_buf_data(dec.buf) + dec.pos;
            uint32_t frame_len =
                ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
            if (frame_len > FRAME_BYTES_FUZZ_MAX && frame_len <= BK_FRAME_BYTES_MAX)
                break;
        }
        uv_buf_t space;
        if (bk_decoder_alloc(&dec, &space) != MG_OK)
            break;
        /* Read sizes: seed == 0 delivers everything at once; otherwise 1..64 bytes or the
         * whole rest, chosen by a small LCG. */
        size_t want = size - pos;
        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) & 0x7f;
            if (r < 64)
                want = (size_t)r + 1;
        }
        size_t n = want < space.len ? want : space.len;
        if (n > size - pos)
            n = size - pos;
        memcpy(space.base, data + pos, n);
        bk_decoder_commit(&dec, n);
        pos += n;
        for (;;) {
            bk_frame f;
            int rc = bk_decoder_next(&dec, &f);
            if (rc == MG_EAGAIN)
                break;
            if (rc != MG_OK) {
                check(rc == MG_EPROTO, "unexpected decoder error");
                check(bk_decoder_next(&dec, &f) == MG_EPROTO, "MG_EPROTO is not sticky");
                broken = true;
                break;
            }
            inspect(&again, kind, &f);
            bk_frame_release(&held[next_slot]);
            held[next_slot] = f;
            next_slot = (next_slot + 1) % HELD_FRAMES;
        }
    }
    for (unsigned i = 0; i < HELD_FRAMES; i++) {
        if (held[i].buf != NULL)
            touch(held[i].buf, held[i].payload_off, held[i].payload_len);
        bk_frame_release(&held[i]);
    }
    bk_decoder_destroy(&dec);
    bk_decoder_destroy(&again);
    return 0;
}
