/*
 * Tests of the GOIM packet codec (src/chat_gateway/packet.c): round trips of every op, packets
 * written byte by byte from the format (a Bilibili heartbeat and an auth reply) so the codec is
 * checked against the format and not only against itself, stream reassembly, every refusal, and
 * op 9 raw batches split and built.
 */
#include "chat_gateway/packet.h"

#include "chat_gateway/limits.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

TestSuite(packet, .timeout = 10);

/* Bilibili's web client sends this body with every heartbeat (a JavaScript object stringified). */
static const char k_hb_body[] = "[object Object]";

/* The heartbeat as Bilibili's web client sends it: packLen 31, headerLen 16, ver 1, op 2, seq 1. */
static const uint8_t k_heartbeat[] = {
    0x00, 0x00, 0x00, 0x1f, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01,
    '[',  'o',  'b',  'j',  'e',  'c',  't',  ' ',  'O',  'b',  'j',  'e',  'c',  't',  ']',
};

/* The auth reply: op 8, ver 1, seq 1, body {"code":0}; packLen 26. */
static const uint8_t k_auth_reply[] = {
    0x00, 0x00, 0x00, 0x1a, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0x08, 0x00,
    0x00, 0x00, 0x01, '{',  '"',  'c',  'o',  'd',  'e',  '"',  ':',  '0',  '}',
};

static void put_header(uint8_t *p, uint32_t pack_len, uint16_t header_len, uint16_t ver,
                       uint32_t op, uint32_t seq)
{
    p[0] = (uint8_t)(pack_len >> 24);
    p[1] = (uint8_t)(pack_len >> 16);
    p[2] = (uint8_t)(pack_len >> 8);
    p[3] = (uint8_t)pack_len;
    p[4] = (uint8_t)(header_len >> 8);
    p[5] = (uint8_t)header_len;
    p[6] = (uint8_t)(ver >> 8);
    p[7] = (uint8_t)ver;
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (uint8_t)(op >> (24 - 8 * i));
        p[12 + i] = (uint8_t)(seq >> (24 - 8 * i));
    }
}

/* --- golden bytes ---------------------------------------------------------------------------- */

Test(packet, bilibili_heartbeat_golden)
{
    uint8_t out[64];
    size_t len = 0;
    cr_assert_eq(cg_packet_encode(CG_VER_INT, CG_OP_HEARTBEAT, 1, k_hb_body, strlen(k_hb_body), out,
                                  sizeof(out), &len),
                 MG_OK);
    cr_assert_eq(len, sizeof(k_heartbeat));
    cr_assert_arr_eq(out, k_heartbeat, sizeof(k_heartbeat));

    size_t plen = 0;
    cr_assert_eq(
        cg_packet_size(k_heartbeat, sizeof(k_heartbeat), CG_PACKET_BODY_BYTES_DEFAULT, &plen),
        MG_OK);
    cr_assert_eq(plen, 31);
    cg_packet pk;
    cr_assert_eq(cg_packet_decode(k_heartbeat, plen, &pk), MG_OK);
    cr_assert_eq(pk.packet_len, 31);
    cr_assert_eq(pk.ver, CG_VER_INT);
    cr_assert_eq(pk.op, CG_OP_HEARTBEAT);
    cr_assert_eq(pk.seq, 1);
    cr_assert_eq(pk.body_len, 15);
    cr_assert_eq(pk.body, k_heartbeat + 16, "the body is a view, not a copy");
    cr_assert_arr_eq(pk.body, k_hb_body, 15);
}

Test(packet, auth_reply_golden)
{
    mg_buf *b = NULL;
    cr_assert_eq(cg_packet_encode_buf(CG_VER_INT, CG_OP_AUTH_REPLY, 1, "{\"code\":0}", 10, &b),
                 MG_OK);
    cr_assert_eq(mg_buf_len(b), sizeof(k_auth_reply));
    cr_assert_arr_eq(mg_buf_data(b), k_auth_reply, sizeof(k_auth_reply));
    mg_buf_unref(b);
    cg_packet pk;
    cr_assert_eq(cg_packet_decode(k_auth_reply, sizeof(k_auth_reply), &pk), MG_OK);
    cr_assert_eq(pk.op, CG_OP_AUTH_REPLY);
    cr_assert_str_eq(cg_op_name(pk.op), "AUTH_REPLY");
}

Test(packet, heartbeat_reply)
{
    uint8_t body[CG_HEARTBEAT_REPLY_BODY_BYTES];
    cg_heartbeat_reply_body(0x01020304u, body);
    const uint8_t want_body[] = { 1, 2, 3, 4 };
    cr_assert_arr_eq(body, want_body, 4);
    uint8_t out[32];
    size_t len = 0;
    cr_assert_eq(cg_packet_encode(CG_VER_INT, CG_OP_HEARTBEAT_REPLY, 7, body, sizeof(body), out,
                                  sizeof(out), &len),
                 MG_OK);
    const uint8_t want[] = { 0, 0, 0, 20, 0, 16, 0, 1, 0, 0, 0, 3, 0, 0, 0, 7, 1, 2, 3, 4 };
    cr_assert_eq(len, sizeof(want));
    cr_assert_arr_eq(out, want, sizeof(want));
    cg_packet pk;
    cr_assert_eq(cg_packet_decode(out, len, &pk), MG_OK);
    uint32_t count = 0;
    cr_assert_eq(cg_heartbeat_reply_count(&pk, &count), MG_OK);
    cr_assert_eq(count, 0x01020304u);
    cr_assert_eq(cg_packet_decode(k_heartbeat, sizeof(k_heartbeat), &pk), MG_OK);
    cr_assert_eq(cg_heartbeat_reply_count(&pk, &count), MG_EPROTO);
}

/* --- round trips ----------------------------------------------------------------------------- */

Test(packet, round_trip_every_op)
{
    static const char *const names[] = {
        "HANDSHAKE",
        "HANDSHAKE_REPLY",
        "HEARTBEAT",
        "HEARTBEAT_REPLY",
        "SEND_MSG",
        "SEND_MSG_REPLY",
        "DISCONNECT_REPLY",
        "AUTH",
        "AUTH_REPLY",
        "RAW",
        "PROTO_READY",
        "PROTO_FINISH",
        "CHANGE_ROOM",
        "CHANGE_ROOM_REPLY",
        "SUB",
        "SUB_REPLY",
        "UNSUB",
        "UNSUB_REPLY",
    };
    cr_assert_eq(sizeof(names) / sizeof(names[0]), CG_OP_COUNT);
    uint8_t body[300];
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = (uint8_t)(i * 7);
    for (uint32_t op = 0; op < CG_OP_COUNT; op++) {
        for (uint16_t ver = CG_VER_JSON; ver <= CG_VER_BROTLI; ver++) {
            size_t body_len = (op * 37u + ver) % sizeof(body);
            uint32_t seq = 0xfffffff0u + op;
            mg_buf *b = NULL;
            cr_assert_eq(cg_packet_encode_buf(ver, op, seq, body, body_len, &b), MG_OK);
            size_t plen = 0;
            cr_assert_eq(
                cg_packet_size(mg_buf_data(b), mg_buf_len(b), CG_PACKET_BODY_BYTES_DEFAULT, &plen),
                MG_OK);
            cr_assert_eq(plen, mg_buf_len(b));
            cr_assert_eq(plen, CG_PACKET_HEADER_BYTES + body_len);
            cg_packet pk;
            cr_assert_eq(cg_packet_decode(mg_buf_data(b), plen, &pk), MG_OK);
            cr_assert_eq(pk.op, op);
            cr_assert_eq(pk.ver, ver);
            cr_assert_eq(pk.seq, seq);
            cr_assert_eq(pk.body_len, body_len);
            if (body_len > 0)
                cr_assert_arr_eq(pk.body, body, body_len);
            else
                cr_assert_null(pk.body);
            cr_assert_str_eq(cg_op_name(op), names[op]);
            mg_buf_unref(b);
        }
    }
    cr_assert_str_eq(cg_op_name(CG_OP_COUNT), "UNKNOWN");
    cr_assert_str_eq(cg_op_name(0xffffffffu), "UNKNOWN");
}

Test(packet, encode_bounds)
{
    uint8_t out[20];
    size_t len = 99;
    cr_assert_eq(cg_packet_encode(CG_VER_JSON, CG_OP_SEND_MSG, 1, "hello", 5, out, 20, &len),
                 MG_EINVAL, "destination too small");
    cr_assert_eq(len, 99);
    cr_assert_eq(cg_packet_encode(CG_VER_JSON, CG_OP_SEND_MSG, 1, "abcd", 4, out, 20, &len), MG_OK);
    cr_assert_eq(len, 20);
    mg_buf *b = NULL;
    size_t big = CG_PACKET_BODY_BYTES_ABS_MAX + 1u;
    uint8_t *body = calloc(1, big);
    cr_assert_not_null(body);
    cr_assert_eq(cg_packet_encode_buf(CG_VER_JSON, CG_OP_SEND_MSG, 1, body, big, &b), MG_ELIMIT);
    cr_assert_null(b);
    cr_assert_eq(cg_packet_encode_buf(CG_VER_JSON, CG_OP_SEND_MSG, 1, body, big - 1, &b), MG_OK);
    cr_assert_eq(mg_buf_len(b), CG_PACKET_HEADER_BYTES + big - 1);
    mg_buf_unref(b);
    free(body);
}

/* --- streams --------------------------------------------------------------------------------- */

Test(packet, byte_by_byte)
{
    for (size_t n = 0; n < sizeof(k_heartbeat); n++) {
        size_t plen = 12345;
        int rc =
            cg_packet_size(n == 0 ? NULL : k_heartbeat, n, CG_PACKET_BODY_BYTES_DEFAULT, &plen);
        if (n < CG_PACKET_HEADER_BYTES) {
            cr_assert_eq(rc, MG_EAGAIN, "n = %zu", n);
            cr_assert_eq(plen, 12345, "packet_len set without MG_OK");
        } else {
            cr_assert_eq(rc, MG_OK, "n = %zu", n);
            cr_assert_eq(plen, sizeof(k_heartbeat), "the caller waits for the whole packet");
        }
    }
}

Test(packet, back_to_back)
{
    uint8_t stream[512];
    size_t len = 0, w = 0;
    const char *bodies[] = { "", "a", "{\"roomid\":7}", "" };
    for (uint32_t i = 0; i < 4; i++) {
        cr_assert_eq(cg_packet_encode(CG_VER_JSON, CG_OP_SEND_MSG_REPLY, i, bodies[i],
                                      strlen(bodies[i]), stream + len, sizeof(stream) - len, &w),
                     MG_OK);
        len += w;
    }
    /* The stream fed in every split: consume whole packets, keep the rest. */
    for (size_t split = 0; split <= len; split++) {
        size_t pos = 0, have = split;
        uint32_t seen = 0;
        for (int round = 0; round < 2; round++) {
            for (;;) {
                size_t plen = 0;
                int rc =
                    cg_packet_size(stream + pos, have - pos, CG_PACKET_BODY_BYTES_DEFAULT, &plen);
                if (rc == MG_EAGAIN || (rc == MG_OK && plen > have - pos))
                    break;
                cr_assert_eq(rc, MG_OK);
                cg_packet pk;
                cr_assert_eq(cg_packet_decode(stream + pos, plen, &pk), MG_OK);
                cr_assert_eq(pk.seq, seen);
                cr_assert_eq(pk.body_len, strlen(bodies[seen]));
                seen++;
                pos += plen;
            }
            have = len;
        }
        cr_assert_eq(seen, 4, "split %zu", split);
        cr_assert_eq(pos, len);
    }
}

/* --- refusals -------------------------------------------------------------------------------- */

Test(packet, refusals)
{
    uint8_t h[CG_PACKET_HEADER_BYTES];
    size_t plen = 0;

    put_header(h, 31, 18, 1, 2, 1);
    cr_assert_eq(cg_packet_size(h, 5, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_EAGAIN);
    cr_assert_eq(cg_packet_size(h, 6, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_EPROTO,
                 "headerLen 18, refused as soon as it is there");
    put_header(h, 31, 0, 1, 2, 1);
    cr_assert_eq(cg_packet_size(h, 16, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_EPROTO);

    put_header(h, 15, 16, 1, 2, 1);
    cr_assert_eq(cg_packet_size(h, 4, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_EPROTO,
                 "packLen 15 < 16");
    put_header(h, 0, 16, 1, 2, 1);
    cr_assert_eq(cg_packet_size(h, 16, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_EPROTO);

    put_header(h, 16 + 4096, 16, 0, 5, 1);
    cr_assert_eq(cg_packet_size(h, 16, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_OK);
    put_header(h, 16 + 4097, 16, 0, 5, 1);
    cr_assert_eq(cg_packet_size(h, 4, CG_PACKET_BODY_BYTES_DEFAULT, &plen), MG_ELIMIT,
                 "body over GOIM's 4096");
    cr_assert_eq(cg_packet_size(h, 16, 8192, &plen), MG_OK, "a larger configured bound");
    put_header(h, 16 + 100, 16, 0, 5, 1);
    cr_assert_eq(cg_packet_size(h, 16, 99, &plen), MG_ELIMIT);
    put_header(h, 0xffffffffu, 16, 0, 5, 1);
    cr_assert_eq(cg_packet_size(h, 16, 0xffffffffu, &plen), MG_ELIMIT,
                 "the absolute bound caps a configured one");
    put_header(h, 16 + CG_PACKET_BODY_BYTES_ABS_MAX, 16, 0, 5, 1);
    cr_assert_eq(cg_packet_size(h, 16, 0xffffffffu, &plen), MG_OK);
    cr_assert_eq(plen, 16 + CG_PACKET_BODY_BYTES_ABS_MAX);

    /* decode: lengths that disagree are the caller's mistake, a bad headerLen is the peer's. */
    cg_packet pk;
    cr_assert_eq(cg_packet_decode(k_heartbeat, sizeof(k_heartbeat) - 1, &pk), MG_EINVAL);
    cr_assert_eq(cg_packet_decode(k_heartbeat, 15, &pk), MG_EINVAL);
    cr_assert_eq(cg_packet_decode(NULL, 16, &pk), MG_EINVAL);
    put_header(h, 16, 12, 1, 2, 1);
    cr_assert_eq(cg_packet_decode(h, 16, &pk), MG_EPROTO);
}

/* --- op 9 raw batches ------------------------------------------------------------------------ */

Test(packet, batch_round_trip)
{
    cg_packet in[3] = {
        { .ver = CG_VER_JSON,
          .op = CG_OP_SEND_MSG_REPLY,
          .seq = 0,
          .body = (const uint8_t *)"{\"cmd\":\"DANMU_MSG\"}",
          .body_len = 19 },
        { .ver = CG_VER_INT,
          .op = CG_OP_HEARTBEAT_REPLY,
          .seq = 0,
          .body = (const uint8_t *)"\0\0\0\x2a",
          .body_len = 4 },
        { .ver = CG_VER_JSON, .op = CG_OP_SEND_MSG_REPLY, .seq = 9, .body = NULL, .body_len = 0 },
    };
    mg_buf *b = NULL;
    cr_assert_eq(cg_batch_encode(CG_VER_INT, 5, in, 3, &b), MG_OK);
    cr_assert_eq(mg_buf_len(b), cg_batch_encoded_len(in, 3));
    cr_assert_eq(mg_buf_len(b), 16 + 3 * 16 + 19 + 4);

    cg_packet outer;
    cr_assert_eq(cg_packet_decode(mg_buf_data(b), mg_buf_len(b), &outer), MG_OK);
    cr_assert_eq(outer.op, CG_OP_RAW);
    cr_assert_eq(outer.ver, CG_VER_INT);
    cr_assert_eq(outer.seq, 5);

    cg_packet out[CG_BATCH_PACKETS_MAX];
    size_t count = 0;
    cr_assert_eq(cg_batch_split(outer.body, outer.body_len, out, 3, &count), MG_OK);
    cr_assert_eq(count, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(out[i].ver, in[i].ver);
        cr_assert_eq(out[i].op, in[i].op);
        cr_assert_eq(out[i].seq, in[i].seq);
        cr_assert_eq(out[i].body_len, in[i].body_len);
        cr_assert_eq(out[i].packet_len, 16 + in[i].body_len);
        if (in[i].body_len > 0)
            cr_assert_arr_eq(out[i].body, in[i].body, in[i].body_len);
    }
    uint32_t online = 0;
    cr_assert_eq(cg_heartbeat_reply_count(&out[1], &online), MG_OK);
    cr_assert_eq(online, 42);
    cr_assert_eq(cg_batch_split(outer.body, outer.body_len, out, 2, &count), MG_ELIMIT,
                 "more packets than the caller's array");

    /* The iterator reports the end, and keeps reporting it. */
    cg_batch_iter it;
    cg_batch_iter_init(&it, outer.body, outer.body_len);
    cg_packet pk;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cg_batch_next(&it, &pk), MG_OK);
    cr_assert_eq(cg_batch_next(&it, &pk), MG_ENOTFOUND);
    cr_assert_eq(cg_batch_next(&it, &pk), MG_ENOTFOUND);
    mg_buf_unref(b);

    cr_assert_eq(cg_batch_split(NULL, 0, out, 1, &count), MG_OK, "an empty batch");
    cr_assert_eq(count, 0);
    cr_assert_eq(cg_batch_encode(CG_VER_INT, 0, in, 0, &b), MG_EINVAL);
    cr_assert_null(b);
}

Test(packet, batch_limits)
{
    static cg_packet many[CG_BATCH_PACKETS_MAX + 1];
    for (size_t i = 0; i <= CG_BATCH_PACKETS_MAX; i++)
        many[i] = (cg_packet){ .ver = CG_VER_JSON, .op = CG_OP_SEND_MSG_REPLY, .seq = (uint32_t)i };
    mg_buf *b = NULL;
    cr_assert_eq(cg_batch_encode(CG_VER_INT, 0, many, CG_BATCH_PACKETS_MAX + 1, &b), MG_ELIMIT);
    cr_assert_eq(cg_batch_encode(CG_VER_INT, 0, many, CG_BATCH_PACKETS_MAX, &b), MG_OK);
    cg_packet outer;
    cr_assert_eq(cg_packet_decode(mg_buf_data(b), mg_buf_len(b), &outer), MG_OK);
    static cg_packet out[CG_BATCH_PACKETS_MAX + 1];
    size_t count = 0;
    cr_assert_eq(cg_batch_split(outer.body, outer.body_len, out, CG_BATCH_PACKETS_MAX + 1, &count),
                 MG_OK);
    cr_assert_eq(count, CG_BATCH_PACKETS_MAX);
    mg_buf_unref(b);

    /* One packet more than the bound, built by hand. */
    size_t len = (CG_BATCH_PACKETS_MAX + 1) * CG_PACKET_HEADER_BYTES;
    uint8_t *body = calloc(1, len);
    cr_assert_not_null(body);
    for (size_t i = 0; i <= CG_BATCH_PACKETS_MAX; i++)
        put_header(body + i * 16, 16, 16, 0, 5, (uint32_t)i);
    cr_assert_eq(cg_batch_split(body, len, out, CG_BATCH_PACKETS_MAX + 1, &count), MG_ELIMIT);
    free(body);
}

Test(packet, batch_refusals)
{
    uint8_t body[64];
    cg_packet out[4];
    size_t count = 77;

    /* A batch that ends inside a header. */
    put_header(body, 20, 16, 0, 5, 1);
    memcpy(body + 16, "abcd", 4);
    put_header(body + 20, 16, 16, 0, 5, 2);
    cr_assert_eq(cg_batch_split(body, 20, out, 4, &count), MG_OK);
    cr_assert_eq(count, 1);
    cr_assert_eq(cg_batch_split(body, 30, out, 4, &count), MG_EPROTO, "truncated header");
    cr_assert_eq(count, 1, "count untouched on error");

    /* A packet whose packLen runs past the batch. */
    put_header(body + 20, 40, 16, 0, 5, 2);
    cr_assert_eq(cg_batch_split(body, 36, out, 4, &count), MG_EPROTO, "packLen past the batch");
    cr_assert_eq(cg_batch_split(body, 60, out, 4, &count), MG_OK, "the same, whole");
    cr_assert_eq(count, 2);

    /* A bad headerLen and a packLen below 16 inside a batch. */
    put_header(body + 20, 16, 20, 0, 5, 2);
    cr_assert_eq(cg_batch_split(body, 36, out, 4, &count), MG_EPROTO);
    put_header(body + 20, 8, 16, 0, 5, 2);
    cr_assert_eq(cg_batch_split(body, 36, out, 4, &count), MG_EPROTO);

    /* The iterator's error is sticky: the first packet came out, then the error, again. */
    cg_batch_iter it;
    cg_batch_iter_init(&it, body, 36);
    cg_packet pk;
    cr_assert_eq(cg_batch_next(&it, &pk), MG_OK);
    cr_assert_eq(pk.seq, 1);
    cr_assert_eq(cg_batch_next(&it, &pk), MG_EPROTO);
    cr_assert_eq(cg_batch_next(&it, &pk), MG_EPROTO);
}
