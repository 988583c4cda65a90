/*
 * Tests of Bilibili's compressed batches (src/chat_gateway/compress.c): round trips of 1, 20 and
 * 1024 packets with zlib and brotli, the outer packet's header, a zlib stream written by another
 * implementation (Python's zlib) decoded right, corrupt, truncated and trailing input, the
 * decompression bound against a bomb, the refusals of the encoder, and every allocation failing
 * in turn.
 */
#include "chat_gateway/compress.h"

#include "chat_gateway/limits.h"
#include "chat_gateway/packet.h"
#include "common/alloc.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(compress, .timeout = 10);

/* Two packets, op 5 ver 0 seq 0: {"cmd":"DANMU_MSG","info":"hi"} then
 * {"cmd":"ONLINE_RANK_COUNT","data":{"count":42}}, compressed by Python 3's zlib:
 *   zlib.compress(packets, 9)
 * (a zlib header 78 da, the deflate stream, an Adler-32 trailer). */
static const uint8_t k_python_zlib[] = {
    0x78, 0xda, 0x63, 0x60, 0x60, 0xd0, 0x67, 0x10, 0x60, 0x00, 0x01, 0x56, 0x10, 0x51, 0xad, 0x94,
    0x9c, 0x9b, 0xa2, 0x64, 0xa5, 0xe4, 0xe2, 0xe8, 0xe7, 0x1b, 0x1a, 0xef, 0x1b, 0xec, 0xae, 0xa4,
    0xa3, 0x94, 0x99, 0x97, 0x96, 0x0f, 0x14, 0xca, 0xc8, 0x54, 0xaa, 0x05, 0xaa, 0xb0, 0xc7, 0xa6,
    0xdc, 0xdf, 0xcf, 0xc7, 0xd3, 0xcf, 0x35, 0x3e, 0xc8, 0xd1, 0xcf, 0x3b, 0xde, 0xd9, 0x3f, 0xd4,
    0x2f, 0x04, 0xa8, 0x2d, 0x25, 0xb1, 0x24, 0x51, 0xc9, 0x0a, 0xa8, 0x22, 0xbf, 0x34, 0xaf, 0x44,
    0xc9, 0xca, 0xc4, 0xa8, 0xb6, 0x16, 0x00, 0x4e, 0x1e, 0x18, 0x1c,
};
static const char k_python_body0[] = "{\"cmd\":\"DANMU_MSG\",\"info\":\"hi\"}";
static const char k_python_body1[] = "{\"cmd\":\"ONLINE_RANK_COUNT\",\"data\":{\"count\":42}}";

/* Builds count packets back to back (op 5, ver 0, seq i, a JSON body that varies with i) into a
 * new malloc'd block; *size is its length. */
static uint8_t *make_packets(size_t count, size_t *size)
{
    size_t cap = count * (CG_PACKET_HEADER_BYTES + 128);
    uint8_t *p = malloc(cap);
    cr_assert_not_null(p);
    size_t len = 0;
    for (size_t i = 0; i < count; i++) {
        char body[128];
        int n = snprintf(body, sizeof(body),
                         "{\"cmd\":\"DANMU_MSG\",\"info\":[%zu,\"message %zu\",[%zu,\"user%zu\"]]}",
                         i, i * 7919 % 1000, i * 31, i % 97);
        size_t w = 0;
        cr_assert_eq(cg_packet_encode(CG_VER_JSON, CG_OP_SEND_MSG_REPLY, (uint32_t)i, body,
                                      (size_t)n, p + len, cap - len, &w),
                     MG_OK);
        len += w;
    }
    *size = len;
    return p;
}

/* Compresses count packets with ver, checks the outer packet, decodes it and checks the inner
 * packets against the original. */
static void round_trip(uint16_t ver, size_t count)
{
    size_t size = 0;
    uint8_t *src = make_packets(count, &size);
    mg_buf *b = NULL;
    cr_assert_eq(cg_compress_batch(ver, src, size, 0xabcdef01u, &b), MG_OK, "ver %u count %zu", ver,
                 count);
    cr_assert_eq(mg_buf_refcount(b), 1);

    size_t plen = 0;
    cr_assert_eq(cg_packet_size(mg_buf_data(b), mg_buf_len(b), CG_PACKET_BODY_BYTES_ABS_MAX, &plen),
                 MG_OK);
    cr_assert_eq(plen, mg_buf_len(b), "the buffer is exactly one packet");
    cg_packet outer;
    cr_assert_eq(cg_packet_decode(mg_buf_data(b), plen, &outer), MG_OK);
    cr_assert_eq(outer.op, CG_OP_SEND_MSG_REPLY);
    cr_assert_eq(outer.ver, ver);
    cr_assert_eq(outer.seq, 0xabcdef01u);
    if (count >= 20)
        cr_assert_lt(outer.body_len, size / 2, "a batch of similar JSON compresses");
    if (ver == CG_VER_ZLIB) {
        cr_assert_eq(outer.body[0], 0x78, "a zlib header: deflate, 32 KiB window");
        cr_assert_eq(((unsigned)outer.body[0] << 8 | outer.body[1]) % 31, 0, "header check bits");
    }

    mg_buf *inner = NULL;
    cr_assert_eq(cg_compress_decode(ver, outer.body, outer.body_len, size, &inner), MG_OK);
    cr_assert_eq(mg_buf_len(inner), size);
    cr_assert_arr_eq(mg_buf_data(inner), src, size);
    cg_packet *pks = calloc(count, sizeof(*pks));
    cr_assert_not_null(pks);
    size_t n = 0;
    cr_assert_eq(cg_batch_split(mg_buf_data(inner), mg_buf_len(inner), pks, count, &n), MG_OK);
    cr_assert_eq(n, count);
    cr_assert_eq(pks[count - 1].seq, count - 1);
    cr_assert_eq(pks[count - 1].op, CG_OP_SEND_MSG_REPLY);
    free(pks);

    /* One byte short of the output is over the bound. */
    mg_buf *none = (mg_buf *)&n;
    cr_assert_eq(cg_compress_decode(ver, outer.body, outer.body_len, size - 1, &none), MG_ELIMIT);
    cr_assert_null(none);

    mg_buf_unref(inner);
    mg_buf_unref(b);
    free(src);
}

Test(compress, round_trip_zlib)
{
    round_trip(CG_VER_ZLIB, 1);
    round_trip(CG_VER_ZLIB, 20);
    round_trip(CG_VER_ZLIB, CG_BATCH_PACKETS_MAX);
}

Test(compress, round_trip_brotli)
{
    round_trip(CG_VER_BROTLI, 1);
    round_trip(CG_VER_BROTLI, 20);
    round_trip(CG_VER_BROTLI, CG_BATCH_PACKETS_MAX);
}

Test(compress, python_zlib_decodes)
{
    mg_buf *b = NULL;
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, k_python_zlib, sizeof(k_python_zlib),
                                    CG_PACKET_BODY_BYTES_DEFAULT, &b),
                 MG_OK);
    cg_packet pks[4];
    size_t n = 0;
    cr_assert_eq(cg_batch_split(mg_buf_data(b), mg_buf_len(b), pks, 4, &n), MG_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(pks[0].op, CG_OP_SEND_MSG_REPLY);
    cr_assert_eq(pks[0].ver, CG_VER_JSON);
    cr_assert_eq(pks[0].body_len, strlen(k_python_body0));
    cr_assert_arr_eq(pks[0].body, k_python_body0, pks[0].body_len);
    cr_assert_eq(pks[1].body_len, strlen(k_python_body1));
    cr_assert_arr_eq(pks[1].body, k_python_body1, pks[1].body_len);
    cr_assert_eq(mg_buf_len(b), 2 * CG_PACKET_HEADER_BYTES + pks[0].body_len + pks[1].body_len);
    mg_buf_unref(b);

    /* The stream is whole: a bound of exactly its output is enough. */
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, k_python_zlib, sizeof(k_python_zlib), 110, &b),
                 MG_OK);
    cr_assert_eq(mg_buf_len(b), 110);
    mg_buf_unref(b);
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, k_python_zlib, sizeof(k_python_zlib), 109, &b),
                 MG_ELIMIT);
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, k_python_zlib, sizeof(k_python_zlib), 0, &b),
                 MG_ELIMIT);

    /* The same bytes are not a brotli stream. */
    cr_assert_eq(cg_compress_decode(CG_VER_BROTLI, k_python_zlib, sizeof(k_python_zlib),
                                    CG_PACKET_BODY_BYTES_DEFAULT, &b),
                 MG_EPROTO);
    cr_assert_null(b);
}

Test(compress, broken_streams)
{
    for (uint16_t ver = CG_VER_ZLIB; ver <= CG_VER_BROTLI; ver++) {
        size_t size = 0;
        uint8_t *src = make_packets(20, &size);
        mg_buf *b = NULL;
        cr_assert_eq(cg_compress_batch(ver, src, size, 1, &b), MG_OK);
        const uint8_t *body = mg_buf_data(b) + CG_PACKET_HEADER_BYTES;
        size_t body_len = mg_buf_len(b) - CG_PACKET_HEADER_BYTES;
        mg_buf *out = NULL;

        /* Truncated at every length. */
        for (size_t cut = 1; cut < body_len; cut++)
            cr_assert_eq(cg_compress_decode(ver, body, cut, size, &out), MG_EPROTO,
                         "ver %u cut %zu", ver, cut);

        /* Trailing bytes after a whole stream. */
        uint8_t *more = malloc(body_len + 3);
        cr_assert_not_null(more);
        memcpy(more, body, body_len);
        memcpy(more + body_len, "xyz", 3);
        cr_assert_eq(cg_compress_decode(ver, more, body_len + 3, size, &out), MG_EPROTO);
        cr_assert_null(out);

        /* A flipped byte in the middle: corrupt, or caught by the trailer. */
        memcpy(more, body, body_len);
        more[body_len / 2] ^= 0x55;
        int rc = cg_compress_decode(ver, more, body_len, size, &out);
        if (rc == MG_OK) {
            cr_assert(mg_buf_len(out) != size || memcmp(mg_buf_data(out), src, size) != 0);
            mg_buf_unref(out);
        } else {
            cr_assert(rc == MG_EPROTO || rc == MG_ELIMIT, "ver %u rc %d", ver, rc);
        }
        free(more);
        mg_buf_unref(b);
        free(src);
    }
}

Test(compress, bomb_bounded)
{
    /* One packet of 8 MiB with an all-zero body compresses to a few KiB, and inflates far past
     * a small bound. */
    size_t size = CG_PACKET_BODY_BYTES_ABS_MAX;
    uint8_t *zero_body = calloc(1, size - CG_PACKET_HEADER_BYTES);
    uint8_t *zeros = malloc(size);
    cr_assert_not_null(zero_body);
    cr_assert_not_null(zeros);
    size_t w = 0;
    cr_assert_eq(cg_packet_encode(CG_VER_JSON, CG_OP_SEND_MSG_REPLY, 0, zero_body,
                                  size - CG_PACKET_HEADER_BYTES, zeros, size, &w),
                 MG_OK);
    cr_assert_eq(w, size);
    free(zero_body);
    for (uint16_t ver = CG_VER_ZLIB; ver <= CG_VER_BROTLI; ver++) {
        mg_buf *b = NULL;
        cr_assert_eq(cg_compress_batch(ver, zeros, size, 0, &b), MG_OK);
        const uint8_t *body = mg_buf_data(b) + CG_PACKET_HEADER_BYTES;
        size_t body_len = mg_buf_len(b) - CG_PACKET_HEADER_BYTES;
        cr_assert_lt(body_len, 64 * 1024, "ver %u: %zu bytes", ver, body_len);
        mg_buf *out = NULL;
        cr_assert_eq(cg_compress_decode(ver, body, body_len, 1024 * 1024, &out), MG_ELIMIT);
        cr_assert_null(out);
        cr_assert_eq(cg_compress_decode(ver, body, body_len, size - 1, &out), MG_ELIMIT);
        /* A bound over the absolute one is the absolute one, which this output fits exactly. */
        cr_assert_eq(cg_compress_decode(ver, body, body_len, SIZE_MAX, &out), MG_OK);
        cr_assert_eq(mg_buf_len(out), size);
        cr_assert_arr_eq(mg_buf_data(out), zeros, size);
        mg_buf_unref(out);
        mg_buf_unref(b);
    }
    free(zeros);
}

Test(compress, refusals)
{
    size_t size = 0;
    uint8_t *src = make_packets(3, &size);
    mg_buf *b = (mg_buf *)&size;
    /* Empty input, in both directions. */
    cr_assert_eq(cg_compress_batch(CG_VER_ZLIB, src, 0, 0, &b), MG_EINVAL);
    cr_assert_null(b);
    cr_assert_eq(cg_compress_batch(CG_VER_BROTLI, NULL, 0, 0, &b), MG_EINVAL);
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, src, 0, 4096, &b), MG_EINVAL);
    cr_assert_eq(cg_compress_decode(CG_VER_BROTLI, NULL, 0, 4096, &b), MG_EINVAL);
    /* A ver that is not a codec. */
    for (uint16_t ver = 0; ver < 6; ver++) {
        if (ver == CG_VER_ZLIB || ver == CG_VER_BROTLI)
            continue;
        cr_assert_eq(cg_compress_batch(ver, src, size, 0, &b), MG_EINVAL, "ver %u", ver);
        cr_assert_eq(cg_compress_decode(ver, src, size, 4096, &b), MG_EINVAL, "ver %u", ver);
    }
    /* Input that is not whole packets: cut in a packet, or a bad header. */
    cr_assert_eq(cg_compress_batch(CG_VER_ZLIB, src, size - 1, 0, &b), MG_EINVAL);
    cr_assert_eq(cg_compress_batch(CG_VER_BROTLI, src, 10, 0, &b), MG_EINVAL);
    src[5] = 17; /* headerLen 17 */
    cr_assert_eq(cg_compress_batch(CG_VER_ZLIB, src, size, 0, &b), MG_EINVAL);
    cr_assert_null(b);
    free(src);

    /* More packets than a batch holds, and more bytes than a body holds. */
    src = make_packets(CG_BATCH_PACKETS_MAX + 1, &size);
    cr_assert_eq(cg_compress_batch(CG_VER_ZLIB, src, size, 0, &b), MG_ELIMIT);
    free(src);
    size = CG_PACKET_BODY_BYTES_ABS_MAX + 1;
    src = calloc(1, size);
    cr_assert_not_null(src);
    cr_assert_eq(cg_compress_batch(CG_VER_BROTLI, src, size, 0, &b), MG_ELIMIT);
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, src, size, 4096, &b), MG_ELIMIT);
    cr_assert_null(b);
    free(src);
}

Test(compress, empty_stream_refused)
{
    /* A valid zlib stream of nothing (Python: zlib.compress(b"")): no packet inside. */
    static const uint8_t empty[] = { 0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01 };
    mg_buf *b = NULL;
    cr_assert_eq(cg_compress_decode(CG_VER_ZLIB, empty, sizeof(empty), 4096, &b), MG_EPROTO);
    cr_assert_null(b);
}

Test(compress, allocation_failures)
{
    /* Each allocation of the encoder and the decoder fails in turn: MG_ENOMEM, *out NULL, nothing
     * leaked (the sanitizer build checks), until the budget is large enough to succeed. */
    size_t size = 0;
    uint8_t *src = make_packets(CG_BATCH_PACKETS_MAX, &size);
    for (uint16_t ver = CG_VER_ZLIB; ver <= CG_VER_BROTLI; ver++) {
        mg_buf *b = NULL;
        int64_t n = 0;
        for (;; n++) {
            mg_alloc_fail_after(n);
            int rc = cg_compress_batch(ver, src, size, 0, &b);
            mg_alloc_fail_reset();
            if (rc == MG_OK)
                break;
            cr_assert_eq(rc, MG_ENOMEM, "ver %u budget %lld", ver, (long long)n);
            cr_assert_null(b);
            cr_assert_lt(n, 16, "the encoder allocates a bounded number of times");
        }
        cr_assert_gt(n, 0, "the encoder allocates");
        const uint8_t *body = mg_buf_data(b) + CG_PACKET_HEADER_BYTES;
        size_t body_len = mg_buf_len(b) - CG_PACKET_HEADER_BYTES;
        mg_buf *out = NULL;
        for (n = 0;; n++) {
            mg_alloc_fail_after(n);
            int rc = cg_compress_decode(ver, body, body_len, size, &out);
            mg_alloc_fail_reset();
            if (rc == MG_OK)
                break;
            cr_assert_eq(rc, MG_ENOMEM, "ver %u budget %lld", ver, (long long)n);
            cr_assert_null(out);
            cr_assert_lt(n, 64, "the decoder allocates a bounded number of times");
        }
        cr_assert_gt(n, 1, "the output grows, then is wrapped");
        cr_assert_eq(mg_buf_len(out), size);
        cr_assert_arr_eq(mg_buf_data(out), src, size);
        mg_buf_unref(out);
        mg_buf_unref(b);
    }
    free(src);
}
