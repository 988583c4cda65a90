/*
 * Tests of the WebSocket engine (src/chat_gateway/ws.c) against RFC 6455's own examples: the
 * handshake key of §1.3 and the request of §1.2, the frames of §5.7 byte for byte; then every
 * handshake refusal, frames split at every byte and several in one feed, every protocol error
 * with its close code, UTF-8 rejects (also split across fragments), the message bound, the
 * reassembly buffer's life, and the state after a close.
 */
#include "chat_gateway/ws.h"

#include "chat_gateway/limits.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(ws, .timeout = 10);

/* --- what the callbacks saw ------------------------------------------------------------------ */

#define REC_MESSAGES_MAX 16
#define REC_DATA_BYTES   (160u * 1024)

typedef struct rec {
    size_t message_count;
    unsigned opcode[REC_MESSAGES_MAX];
    size_t offset[REC_MESSAGES_MAX];
    size_t len[REC_MESSAGES_MAX];
    uint8_t data[REC_DATA_BYTES]; /* the messages back to back */
    size_t data_len;
    size_t reply_count;
    uint8_t reply[CG_WS_CONTROL_FRAME_BYTES_MAX]; /* the last reply */
    size_t reply_len;
    size_t close_count;
    uint16_t close_code;
    char close_reason[CG_WS_CONTROL_PAYLOAD_BYTES_MAX + 1];
    bool close_by_peer;
    int message_rc; /* what message_done returns */
} rec;

static rec g_rec;

static int rec_message(void *user, unsigned opcode, uint8_t *data, size_t len)
{
    rec *r = user;
    cr_assert_lt(r->message_count, REC_MESSAGES_MAX);
    cr_assert_leq(r->data_len + len, REC_DATA_BYTES);
    cr_assert(data != NULL || len == 0);
    r->opcode[r->message_count] = opcode;
    r->offset[r->message_count] = r->data_len;
    r->len[r->message_count] = len;
    if (len > 0)
        memcpy(r->data + r->data_len, data, len);
    r->data_len += len;
    r->message_count++;
    return r->message_rc;
}

static void rec_reply(void *user, const uint8_t *frame, size_t len)
{
    rec *r = user;
    cr_assert_leq(len, sizeof(r->reply));
    memcpy(r->reply, frame, len);
    r->reply_len = len;
    r->reply_count++;
}

static void rec_close(void *user, uint16_t code, const char *reason, size_t reason_len,
                      bool by_peer)
{
    rec *r = user;
    cr_assert_leq(reason_len, CG_WS_CONTROL_PAYLOAD_BYTES_MAX);
    r->close_count++;
    r->close_code = code;
    if (reason_len > 0)
        memcpy(r->close_reason, reason, reason_len);
    r->close_reason[reason_len] = '\0';
    r->close_by_peer = by_peer;
}

static cg_ws_config g_config;

/* A fresh connection with the given message bound, its callbacks recording into g_rec. */
static void conn_start(cg_ws_conn *c, uint32_t message_bytes_max)
{
    memset(&g_rec, 0, sizeof(g_rec));
    g_config.events.message_done = rec_message;
    g_config.events.reply_ready = rec_reply;
    g_config.events.close_done = rec_close;
    g_config.message_bytes_max = message_bytes_max;
    cg_ws_conn_init(c, &g_config, &g_rec);
}

static void assert_message(size_t i, unsigned opcode, const void *data, size_t len)
{
    cr_assert_gt(g_rec.message_count, i);
    cr_assert_eq(g_rec.opcode[i], opcode);
    cr_assert_eq(g_rec.len[i], len);
    if (len > 0)
        cr_assert_arr_eq(g_rec.data + g_rec.offset[i], data, len);
}

/* The engine closed the connection itself with code: its close frame went out, close_done said
 * so, and the connection ignores what follows. */
static void assert_failed(cg_ws_conn *c, uint16_t code)
{
    cr_assert_eq(g_rec.close_count, 1);
    cr_assert_eq(g_rec.close_code, code, "close code %u, expected %u", g_rec.close_code, code);
    cr_assert_not(g_rec.close_by_peer);
    cr_assert_geq(g_rec.reply_len, 4);
    cr_assert_eq(g_rec.reply[0], 0x88);
    cr_assert_eq(g_rec.reply[1], g_rec.reply_len - 2);
    cr_assert_eq(g_rec.reply[2] << 8 | g_rec.reply[3], code);
    cr_assert_arr_eq(g_rec.reply + 4, g_rec.close_reason, g_rec.reply_len - 4);
    cr_assert(cg_ws_conn_closed(c));
    cr_assert_eq(cg_ws_conn_held_bytes(c), 0);
    uint8_t more[] = { 0x81, 0x80, 1, 2, 3, 4 };
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(c, more, sizeof(more), &consumed), MG_ECLOSED);
    cr_assert_eq(consumed, sizeof(more));
    cr_assert_eq(g_rec.close_count, 1);
}

/* --- client frames --------------------------------------------------------------------------- */

static const uint8_t k_mask[4] = { 0x37, 0xfa, 0x21, 0x3d }; /* §5.7's mask */

/* Appends a client frame (first byte b0, payload masked with k_mask, length in the shortest form,
 * or unmasked when masked is false) to dst at *len. */
static void put_frame_ex(uint8_t *dst, size_t *len, uint8_t b0, const void *payload,
                         size_t payload_len, bool masked)
{
    uint8_t *p = dst + *len;
    size_t h = 0;
    p[h++] = b0;
    uint8_t mask_bit = masked ? 0x80 : 0;
    if (payload_len <= 125) {
        p[h++] = (uint8_t)(mask_bit | payload_len);
    } else if (payload_len <= 0xFFFF) {
        p[h++] = mask_bit | 126;
        p[h++] = (uint8_t)(payload_len >> 8);
        p[h++] = (uint8_t)payload_len;
    } else {
        p[h++] = mask_bit | 127;
        for (int i = 0; i < 8; i++)
            p[h++] = (uint8_t)((uint64_t)payload_len >> (56 - 8 * i));
    }
    if (masked) {
        memcpy(p + h, k_mask, 4);
        h += 4;
    }
    const uint8_t *src = payload;
    for (size_t i = 0; i < payload_len; i++)
        p[h + i] = masked ? (uint8_t)(src[i] ^ k_mask[i & 3]) : src[i];
    *len += h + payload_len;
}

static void put_frame(uint8_t *dst, size_t *len, uint8_t b0, const void *payload,
                      size_t payload_len)
{
    put_frame_ex(dst, len, b0, payload, payload_len, true);
}

/* Feeds a whole input and asserts that it was all consumed with MG_OK. */
static void feed_all(cg_ws_conn *c, uint8_t *p, size_t n)
{
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(c, p, n, &consumed), MG_OK);
    cr_assert_eq(consumed, n);
}

/* --- §5.7's examples ------------------------------------------------------------------------- */

Test(ws, rfc_single_frame_masked_hello)
{
    uint8_t frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    feed_all(&c, frame, sizeof(frame));
    cr_assert_eq(g_rec.message_count, 1);
    assert_message(0, CG_WS_OP_TEXT, "Hello", 5);
    cr_assert_arr_eq(frame + 6, "Hello", 5, "the payload is unmasked in place");
    cr_assert_eq(g_rec.reply_count, 0);
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0, "a whole frame needs no buffer");
    cg_ws_conn_fini(&c);
}

Test(ws, rfc_single_frame_unmasked_hello_is_what_the_server_writes)
{
    static const uint8_t expected[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    uint8_t h[CG_WS_SERVER_HEADER_BYTES_MAX];
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_TEXT, 5, h), 2);
    cr_assert_arr_eq(h, expected, 2);

    /* A client may not send it: unmasked. */
    uint8_t frame[sizeof(expected)];
    memcpy(frame, expected, sizeof(frame));
    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    feed_all(&c, frame, sizeof(frame));
    cr_assert_eq(g_rec.message_count, 0);
    assert_failed(&c, CG_WS_CLOSE_PROTOCOL_ERROR);
    cg_ws_conn_fini(&c);
}

Test(ws, rfc_fragmented_text)
{
    /* §5.7's "Hel" + "lo", masked as a client sends them. */
    uint8_t in[64];
    size_t n = 0;
    put_frame(in, &n, 0x01, "Hel", 3);
    size_t first = n;
    put_frame(in, &n, 0x80, "lo", 2);
    cr_assert_eq(in[0], 0x01);
    cr_assert_eq(in[1], 0x83);
    cr_assert_eq(in[first], 0x80);
    cr_assert_eq(in[first + 1], 0x82);

    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, first, &consumed), MG_OK);
    cr_assert_eq(consumed, first);
    cr_assert_eq(g_rec.message_count, 0);
    cr_assert_gt(cg_ws_conn_held_bytes(&c), 0, "a fragment is held while the message is open");
    cr_assert_eq(cg_ws_feed(&c, in + first, n - first, &consumed), MG_OK);
    cr_assert_eq(consumed, n - first);
    cr_assert_eq(g_rec.message_count, 1);
    assert_message(0, CG_WS_OP_TEXT, "Hello", 5);
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0, "the buffer is freed at the message's end");
    cg_ws_conn_fini(&c);
}

Test(ws, rfc_ping_and_pong)
{
    /* The engine's ping is §5.7's unmasked ping. */
    static const uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    uint8_t out[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t len = 0;
    cr_assert_eq(cg_ws_ping_frame("Hello", 5, out, sizeof(out), &len), MG_OK);
    cr_assert_eq(len, sizeof(ping));
    cr_assert_arr_eq(out, ping, sizeof(ping));

    /* A client's masked ping is answered with an unmasked pong of the same payload. */
    uint8_t in[] = { 0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    feed_all(&c, in, sizeof(in));
    static const uint8_t pong[] = { 0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
    cr_assert_eq(g_rec.reply_count, 1);
    cr_assert_eq(g_rec.reply_len, sizeof(pong));
    cr_assert_arr_eq(g_rec.reply, pong, sizeof(pong));
    cr_assert_eq(cg_ws_pong_frame("Hello", 5, out, sizeof(out), &len), MG_OK);
    cr_assert_arr_eq(out, pong, sizeof(pong));

    /* §5.7's masked pong (the client's answer to a ping) is taken and ignored. */
    uint8_t in_pong[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    feed_all(&c, in_pong, sizeof(in_pong));
    cr_assert_eq(g_rec.reply_count, 1);
    cr_assert_eq(g_rec.message_count, 0);
    cr_assert_not(cg_ws_conn_closed(&c));
    cg_ws_conn_fini(&c);
}

static void check_binary(size_t size)
{
    uint8_t *payload = malloc(size);
    uint8_t *in = malloc(size + CG_WS_CLIENT_HEADER_BYTES_MAX);
    cr_assert(payload != NULL && in != NULL);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t n = 0;
    put_frame(in, &n, 0x82, payload, size);
    cg_ws_conn c;
    conn_start(&c, 64 * 1024);
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, n - 1, &consumed), MG_OK);
    cr_assert_eq(consumed, 0, "a partial frame stays with the caller");
    cr_assert_eq(g_rec.message_count, 0);
    feed_all(&c, in, n);
    assert_message(0, CG_WS_OP_BINARY, payload, size);
    cg_ws_conn_fini(&c);
    free(payload);
    free(in);
}

Test(ws, rfc_binary_256_bytes)
{
    uint8_t h[CG_WS_SERVER_HEADER_BYTES_MAX];
    static const uint8_t expected[] = { 0x82, 0x7E, 0x01, 0x00 };
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 256, h), 4);
    cr_assert_arr_eq(h, expected, 4);
    check_binary(256);
}

Test(ws, rfc_binary_64_kib)
{
    uint8_t h[CG_WS_SERVER_HEADER_BYTES_MAX];
    static const uint8_t expected[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 };
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 65536, h), 10);
    cr_assert_arr_eq(h, expected, 10);
    check_binary(65536);
}

Test(ws, frame_header_length_forms)
{
    uint8_t h[CG_WS_SERVER_HEADER_BYTES_MAX];
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 0, h), 2);
    cr_assert_eq(h[1], 0);
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 125, h), 2);
    cr_assert_eq(h[1], 125);
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 126, h), 4);
    cr_assert_eq(h[1], 126);
    cr_assert_eq(h[3], 126);
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_BINARY, 65535, h), 4);
    cr_assert_eq(h[2], 0xFF);
    cr_assert_eq(h[3], 0xFF);
    cr_assert_eq(cg_ws_frame_header(CG_WS_OP_CLOSE, 0x0102030405ull, h), 10);
    static const uint8_t big[] = { 0x88, 127, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05 };
    cr_assert_arr_eq(h, big, 10);
}

/* --- several frames, split anywhere ---------------------------------------------------------- */

/* A session: a masked "Hello", a ping, "Hel" + (ping inside the message) + "lo", a 300-byte binary,
 * an empty binary. */
static size_t session(uint8_t *in, uint8_t *bin300)
{
    for (size_t i = 0; i < 300; i++)
        bin300[i] = (uint8_t)(255 - i);
    size_t n = 0;
    put_frame(in, &n, 0x81, "Hello", 5);
    put_frame(in, &n, 0x89, "p1", 2);
    put_frame(in, &n, 0x01, "Hel", 3);
    put_frame(in, &n, 0x89, "p2", 2);
    put_frame(in, &n, 0x80, "lo", 2);
    put_frame(in, &n, 0x82, bin300, 300);
    put_frame(in, &n, 0x82, NULL, 0);
    return n;
}

static void assert_session(const uint8_t *bin300)
{
    cr_assert_eq(g_rec.message_count, 4);
    assert_message(0, CG_WS_OP_TEXT, "Hello", 5);
    assert_message(1, CG_WS_OP_TEXT, "Hello", 5);
    assert_message(2, CG_WS_OP_BINARY, bin300, 300);
    assert_message(3, CG_WS_OP_BINARY, NULL, 0);
    cr_assert_eq(g_rec.reply_count, 2);
    static const uint8_t pong2[] = { 0x8a, 0x02, 'p', '2' };
    cr_assert_arr_eq(g_rec.reply, pong2, sizeof(pong2));
    cr_assert_eq(g_rec.close_count, 0);
}

Test(ws, several_frames_in_one_feed)
{
    uint8_t in[512], bin[300];
    size_t n = session(in, bin);
    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    feed_all(&c, in, n);
    assert_session(bin);
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0);
    cg_ws_conn_fini(&c);
}

Test(ws, split_at_every_byte)
{
    uint8_t in[512], bin[300];
    size_t n = session(in, bin);
    for (size_t k = 0; k <= n; k++) {
        uint8_t work[512];
        memcpy(work, in, n); /* unmasking happens in place: a fresh copy for each split */
        cg_ws_conn c;
        conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
        size_t consumed = 0;
        cr_assert_eq(cg_ws_feed(&c, work, k, &consumed), MG_OK);
        cr_assert_leq(consumed, k);
        /* The caller keeps work[consumed, k) and feeds it again with the rest. */
        size_t rest = n - consumed;
        size_t consumed2 = 0;
        cr_assert_eq(cg_ws_feed(&c, work + consumed, rest, &consumed2), MG_OK);
        cr_assert_eq(consumed2, rest, "split at %zu", k);
        assert_session(bin);
        cg_ws_conn_fini(&c);
    }
}

Test(ws, byte_by_byte)
{
    uint8_t in[512], bin[300];
    size_t n = session(in, bin);
    uint8_t pending[512];
    size_t pending_len = 0;
    cg_ws_conn c;
    conn_start(&c, CG_WS_MESSAGE_BYTES_DEFAULT);
    for (size_t i = 0; i < n; i++) {
        pending[pending_len++] = in[i];
        size_t consumed = 0;
        cr_assert_eq(cg_ws_feed(&c, pending, pending_len, &consumed), MG_OK);
        cr_assert_leq(consumed, pending_len);
        memmove(pending, pending + consumed, pending_len - consumed);
        pending_len -= consumed;
    }
    cr_assert_eq(pending_len, 0);
    assert_session(bin);
    cg_ws_conn_fini(&c);
}

/* --- protocol errors ------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    uint8_t bytes[24];
    size_t len;
    uint16_t code;
} bad_case;

static const bad_case k_bad[] = {
    { "rsv1", { 0xC1, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "rsv2", { 0xA1, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "rsv3", { 0x91, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "opcode 3", { 0x83, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "opcode 7", { 0x87, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "opcode 0xB", { 0x8B, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "opcode 0xF", { 0x8F, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "unmasked", { 0x82, 0x01, 'x' }, 3, 1002 },
    { "ping over 125", { 0x89, 0xFE, 0x00, 0x7E }, 4, 1002 },
    { "close over 125", { 0x88, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7E }, 10, 1002 },
    { "fragmented ping", { 0x09, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "fragmented close", { 0x08, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "continuation first", { 0x80, 0x80, 1, 2, 3, 4 }, 6, 1002 },
    { "text inside fragmented", { 0x01, 0x80, 1, 2, 3, 4, 0x81, 0x80, 1, 2, 3, 4 }, 12, 1002 },
    { "binary inside fragmented", { 0x02, 0x80, 1, 2, 3, 4, 0x02, 0x80, 1, 2, 3, 4 }, 12, 1002 },
    { "close of 1 byte", { 0x88, 0x81, 0, 0, 0, 0, 0x03 }, 7, 1002 },
    { "close code 999", { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE7 }, 8, 1002 },
    { "close code 1004", { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xEC }, 8, 1002 },
    { "close code 1005", { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xED }, 8, 1002 },
    { "close code 1006", { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xEE }, 8, 1002 },
    { "close code 1015", { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xF7 }, 8, 1002 },
    { "close code 2999", { 0x88, 0x82, 0, 0, 0, 0, 0x0B, 0xB7 }, 8, 1002 },
    { "close code 5000", { 0x88, 0x82, 0, 0, 0, 0, 0x13, 0x88 }, 8, 1002 },
    { "close code 0", { 0x88, 0x82, 0, 0, 0, 0, 0x00, 0x00 }, 8, 1002 },
    { "64-bit top bit", { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0 }, 10, 1002 },
    { "close reason not UTF-8", { 0x88, 0x83, 0, 0, 0, 0, 0x03, 0xE8, 0xFF }, 9, 1007 },
    { "text not UTF-8", { 0x81, 0x81, 0, 0, 0, 0, 0xFF }, 7, 1007 },
    { "over the bound, 16-bit", { 0x82, 0xFE, 0x04, 0x01 }, 4, 1009 },
    { "over the bound, 64-bit", { 0x82, 0xFF, 0, 0, 0, 0, 0x7F, 0, 0, 0 }, 10, 1009 },
};

Test(ws, every_protocol_error_closes_with_its_code)
{
    for (size_t i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
        const bad_case *b = &k_bad[i];
        uint8_t in[24];
        memcpy(in, b->bytes, b->len);
        cg_ws_conn c;
        conn_start(&c, 1024);
        size_t consumed = 0;
        cr_assert_eq(cg_ws_feed(&c, in, b->len, &consumed), MG_OK, "%s", b->name);
        cr_assert_eq(consumed, b->len, "%s", b->name);
        cr_assert_eq(g_rec.message_count, 0, "%s", b->name);
        cr_assert_eq(g_rec.close_count, 1, "%s: not closed", b->name);
        cr_assert_eq(g_rec.close_code, b->code, "%s: code %u", b->name, g_rec.close_code);
        cr_assert_gt(strlen(g_rec.close_reason), 0, "%s: a close says why", b->name);
        assert_failed(&c, b->code);
        cg_ws_conn_fini(&c);
    }
}

Test(ws, header_errors_are_found_before_the_payload)
{
    /* Only the 2 first bytes of a frame with a bad opcode, of a 4-byte header announcing a
     * message over the bound: refused at once, nothing left for the caller to buffer. */
    uint8_t op[] = { 0x83, 0xFE };
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, op, sizeof(op));
    assert_failed(&c, 1002);
    cg_ws_conn_fini(&c);

    uint8_t big[] = { 0x82, 0xFE, 0xFF, 0xFF };
    conn_start(&c, 1024);
    feed_all(&c, big, sizeof(big));
    assert_failed(&c, 1009);
    cg_ws_conn_fini(&c);
}

Test(ws, message_bound_counts_fragments_together)
{
    uint8_t part[600];
    memset(part, 'a', sizeof(part));
    uint8_t in[2048];
    size_t n = 0;
    put_frame(in, &n, 0x02, part, 600);
    size_t first = n;
    put_frame(in, &n, 0x80, part, 424); /* 1024: exactly the bound */
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    cr_assert_eq(g_rec.message_count, 1);
    cr_assert_eq(g_rec.len[0], 1024);
    cg_ws_conn_fini(&c);

    n = 0;
    put_frame(in, &n, 0x02, part, 600);
    put_frame(in, &n, 0x80, part, 425); /* 1025: one over */
    conn_start(&c, 1024);
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, first, &consumed), MG_OK);
    cr_assert_gt(cg_ws_conn_held_bytes(&c), 0);
    feed_all(&c, in + first, n - first);
    cr_assert_eq(g_rec.message_count, 0);
    assert_failed(&c, 1009);
    cg_ws_conn_fini(&c);
}

Test(ws, message_bound_is_capped_at_the_absolute_one)
{
    /* A 64-bit length just over the absolute bound with a configured bound of UINT32_MAX. */
    uint64_t len = (uint64_t)CG_WS_MESSAGE_BYTES_ABS_MAX + 1;
    uint8_t in[10] = { 0x82, 0xFF };
    for (int i = 0; i < 8; i++)
        in[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    cg_ws_conn c;
    conn_start(&c, UINT32_MAX);
    feed_all(&c, in, sizeof(in));
    assert_failed(&c, 1009);
    cg_ws_conn_fini(&c);
}

/* --- UTF-8 ----------------------------------------------------------------------------------- */

/* Feeds one text message made of the given fragments; returns true when it was delivered. */
static bool text_message(const uint8_t *const *frags, const size_t *lens, size_t count)
{
    uint8_t in[256];
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        uint8_t b0 = (uint8_t)((i == 0 ? 0x01 : 0x00) | (i + 1 == count ? 0x80 : 0x00));
        put_frame(in, &n, b0, frags[i], lens[i]);
    }
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    bool ok = g_rec.message_count == 1;
    if (!ok)
        assert_failed(&c, 1007);
    cg_ws_conn_fini(&c);
    return ok;
}

static bool text_one(const char *s, size_t len)
{
    const uint8_t *f[1] = { (const uint8_t *)s };
    return text_message(f, &len, 1);
}

Test(ws, utf8_valid_text)
{
    cr_assert(text_one("", 0));
    cr_assert(text_one("plain ascii", 11));
    cr_assert(text_one("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11)); /* "kosme" in Greek */
    cr_assert(text_one("\xe2\x82\xac", 3));                                  /* U+20AC */
    cr_assert(text_one("\xf0\x9d\x84\x9e", 4));                              /* U+1D11E */
    cr_assert(text_one("\xed\x9f\xbf", 3));                                  /* U+D7FF */
    cr_assert(text_one("\xee\x80\x80", 3));                                  /* U+E000 */
    cr_assert(text_one("\xf4\x8f\xbf\xbf", 4));                              /* U+10FFFF */
    cr_assert(text_one("\xc2\x80", 2));                                      /* U+0080 */
}

Test(ws, utf8_rejects)
{
    cr_assert_not(text_one("\xc0\x80", 2), "overlong NUL");
    cr_assert_not(text_one("\xc1\xbf", 2), "overlong 2-byte");
    cr_assert_not(text_one("\xe0\x80\x80", 3), "overlong 3-byte");
    cr_assert_not(text_one("\xe0\x9f\xbf", 3), "overlong 3-byte, highest");
    cr_assert_not(text_one("\xf0\x80\x80\x80", 4), "overlong 4-byte");
    cr_assert_not(text_one("\xf0\x8f\xbf\xbf", 4), "overlong 4-byte, highest");
    cr_assert_not(text_one("\xed\xa0\x80", 3), "surrogate U+D800");
    cr_assert_not(text_one("\xed\xbf\xbf", 3), "surrogate U+DFFF");
    cr_assert_not(text_one("\xf4\x90\x80\x80", 4), "U+110000");
    cr_assert_not(text_one("\xf5\x80\x80\x80", 4), "lead byte F5");
    cr_assert_not(text_one("\xff", 1), "byte FF");
    cr_assert_not(text_one("\x80", 1), "a lone continuation byte");
    cr_assert_not(text_one("a\xe2\x82", 3), "truncated at the end");
    cr_assert_not(text_one("\xe2\x28\xa1", 3), "a lead without its tail");
}

Test(ws, utf8_split_across_fragments)
{
    /* U+20AC cut in every place: accepted once completed. */
    const uint8_t euro[] = { 0xe2, 0x82, 0xac };
    for (size_t cut = 1; cut < 3; cut++) {
        const uint8_t *f[2] = { euro, euro + cut };
        size_t l[2] = { cut, 3 - cut };
        cr_assert(text_message(f, l, 2), "cut at %zu", cut);
        assert_message(0, CG_WS_OP_TEXT, euro, 3);
    }
    /* One byte per fragment, with an empty fragment in between. */
    const uint8_t *f4[4] = { euro, euro + 1, euro + 3, euro + 2 };
    size_t l4[4] = { 1, 1, 0, 1 };
    cr_assert(text_message(f4, l4, 4));

    /* A message that ends inside the character: refused at its last fragment. */
    const uint8_t *g[2] = { (const uint8_t *)"ab", euro };
    size_t gl[2] = { 2, 2 };
    cr_assert_not(text_message(g, gl, 2));

    /* An invalid byte in the first fragment fails at once, before the message ends. */
    uint8_t in[32];
    size_t n = 0;
    put_frame(in, &n, 0x01, "\xed\xa0", 2);
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    assert_failed(&c, 1007);
    cg_ws_conn_fini(&c);
}

Test(ws, binary_is_not_checked_as_utf8)
{
    uint8_t in[32];
    size_t n = 0;
    put_frame(in, &n, 0x82, "\xff\xc0\x80", 3);
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    assert_message(0, CG_WS_OP_BINARY, "\xff\xc0\x80", 3);
    cg_ws_conn_fini(&c);
}

/* --- close ----------------------------------------------------------------------------------- */

Test(ws, peer_close_is_echoed_and_ends_the_connection)
{
    uint8_t in[64];
    size_t n = 0;
    put_frame(in, &n, 0x88,
              "\x03\xe8"
              "bye",
              5);
    put_frame(in, &n, 0x81, "late", 4); /* after the close: ignored */
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    cr_assert_eq(g_rec.message_count, 0);
    cr_assert_eq(g_rec.close_count, 1);
    cr_assert_eq(g_rec.close_code, CG_WS_CLOSE_NORMAL);
    cr_assert_str_eq(g_rec.close_reason, "bye");
    cr_assert(g_rec.close_by_peer);
    static const uint8_t echo[] = { 0x88, 0x02, 0x03, 0xe8 };
    cr_assert_eq(g_rec.reply_len, sizeof(echo));
    cr_assert_arr_eq(g_rec.reply, echo, sizeof(echo));
    cr_assert(cg_ws_conn_closed(&c));
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, n, &consumed), MG_ECLOSED);
    cr_assert_eq(consumed, n);
    cr_assert_eq(g_rec.close_count, 1);
    cg_ws_conn_fini(&c);
}

Test(ws, peer_close_without_code)
{
    uint8_t in[] = { 0x88, 0x80, 1, 2, 3, 4 };
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, sizeof(in));
    cr_assert_eq(g_rec.close_code, CG_WS_CLOSE_NO_STATUS);
    cr_assert(g_rec.close_by_peer);
    static const uint8_t empty_close[] = { 0x88, 0x00 };
    cr_assert_eq(g_rec.reply_len, 2);
    cr_assert_arr_eq(g_rec.reply, empty_close, 2);
    cg_ws_conn_fini(&c);
}

Test(ws, peer_close_codes_accepted)
{
    static const uint16_t codes[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                      1010, 1011, 1012, 1013, 1014, 3000, 4999 };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        uint8_t payload[2] = { (uint8_t)(codes[i] >> 8), (uint8_t)codes[i] };
        uint8_t in[16];
        size_t n = 0;
        put_frame(in, &n, 0x88, payload, 2);
        cg_ws_conn c;
        conn_start(&c, 1024);
        feed_all(&c, in, n);
        cr_assert(g_rec.close_by_peer, "code %u", codes[i]);
        cr_assert_eq(g_rec.close_code, codes[i]);
        cr_assert_eq(g_rec.reply[2] << 8 | g_rec.reply[3], codes[i]);
        cg_ws_conn_fini(&c);
    }
}

Test(ws, peer_close_frees_a_partial_message)
{
    uint8_t in[64];
    size_t n = 0;
    put_frame(in, &n, 0x02, "part", 4);
    put_frame(in, &n, 0x88, "\x03\xe9", 2);
    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in, n);
    cr_assert_eq(g_rec.close_code, CG_WS_CLOSE_GOING_AWAY);
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0);
    cr_assert_eq(g_rec.message_count, 0);
    cg_ws_conn_fini(&c);
}

Test(ws, server_close)
{
    cg_ws_conn c;
    conn_start(&c, 1024);
    uint8_t in[32];
    size_t n = 0;
    put_frame(in, &n, 0x01, "ab", 2); /* a message left open, freed by the close */
    feed_all(&c, in, n);
    uint8_t out[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t len = 0;
    cr_assert_eq(cg_ws_close(&c, CG_WS_CLOSE_POLICY, "auth", 4, out, sizeof(out), &len), MG_OK);
    static const uint8_t expected[] = { 0x88, 0x06, 0x03, 0xf0, 'a', 'u', 't', 'h' };
    cr_assert_eq(len, sizeof(expected));
    cr_assert_arr_eq(out, expected, sizeof(expected));
    cr_assert(cg_ws_conn_closed(&c));
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0);
    cr_assert_eq(cg_ws_close(&c, 1000, NULL, 0, out, sizeof(out), &len), MG_ECLOSED);
    /* The peer's reply to our close is not answered again. */
    n = 0;
    put_frame(in, &n, 0x88, "\x03\xf0", 2);
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, n, &consumed), MG_ECLOSED);
    cr_assert_eq(consumed, n);
    cr_assert_eq(g_rec.reply_count, 0);
    cr_assert_eq(g_rec.close_count, 0);
    cg_ws_conn_fini(&c);
}

Test(ws, server_close_refuses_bad_arguments_and_stays_open)
{
    cg_ws_conn c;
    conn_start(&c, 1024);
    uint8_t out[CG_WS_CONTROL_FRAME_BYTES_MAX];
    char reason[CG_WS_CLOSE_REASON_BYTES_MAX + 1];
    memset(reason, 'r', sizeof(reason));
    size_t len = 0;
    cr_assert_eq(cg_ws_close(&c, 1000, reason, sizeof(reason), out, sizeof(out), &len), MG_EINVAL);
    cr_assert_eq(cg_ws_close(&c, 1000, "x", 1, out, 2, &len), MG_EINVAL);
    cr_assert_not(cg_ws_conn_closed(&c));
    cr_assert_eq(cg_ws_close(&c, 1000, reason, sizeof(reason) - 1, out, sizeof(out), &len), MG_OK);
    cr_assert_eq(len, CG_WS_CONTROL_FRAME_BYTES_MAX);
    cg_ws_conn_fini(&c);
}

/* --- the caller's callback ------------------------------------------------------------------- */

Test(ws, message_done_error_stops_the_feed)
{
    uint8_t in[64];
    size_t n = 0;
    put_frame(in, &n, 0x82, "one", 3);
    size_t first = n;
    put_frame(in, &n, 0x82, "two", 3);
    cg_ws_conn c;
    conn_start(&c, 1024);
    g_rec.message_rc = MG_EPROTO;
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, n, &consumed), MG_EPROTO);
    cr_assert_eq(consumed, first, "the frame that carried the message is consumed");
    cr_assert_eq(g_rec.message_count, 1);
    cr_assert_not(cg_ws_conn_closed(&c), "the caller decides how to close");
    g_rec.message_rc = MG_OK;
    feed_all(&c, in + first, n - first);
    assert_message(1, CG_WS_OP_BINARY, "two", 3);
    cg_ws_conn_fini(&c);
}

static int close_from_callback(void *user, unsigned opcode, uint8_t *data, size_t len)
{
    (void)opcode;
    (void)data;
    (void)len;
    cg_ws_conn *c = user;
    uint8_t out[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t written = 0;
    cr_assert_eq(cg_ws_close(c, CG_WS_CLOSE_POLICY, NULL, 0, out, sizeof(out), &written), MG_OK);
    return MG_OK;
}

Test(ws, close_from_inside_message_done)
{
    static cg_ws_config config;
    config.events.message_done = close_from_callback;
    config.events.reply_ready = rec_reply;
    config.events.close_done = rec_close;
    config.message_bytes_max = 1024;
    cg_ws_conn c;
    cg_ws_conn_init(&c, &config, &c);
    uint8_t in[64];
    size_t n = 0;
    put_frame(in, &n, 0x02, "fr", 2); /* fragmented: the buffer is freed by the close */
    put_frame(in, &n, 0x80, "ag", 2);
    put_frame(in, &n, 0x82, "after", 5);
    size_t consumed = 0;
    cr_assert_eq(cg_ws_feed(&c, in, n, &consumed), MG_OK);
    cr_assert_eq(consumed, n);
    cr_assert(cg_ws_conn_closed(&c));
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0);
    cg_ws_conn_fini(&c);
}

Test(ws, fini_frees_a_partial_message)
{
    uint8_t big[3000];
    memset(big, 'z', sizeof(big));
    uint8_t in[3100];
    size_t n = 0;
    put_frame(in, &n, 0x02, big, sizeof(big));
    cg_ws_conn c;
    conn_start(&c, 8192);
    feed_all(&c, in, n);
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 4096, "grown by powers of two");
    cg_ws_conn_fini(&c); /* ASan's leak check sees the buffer go */
    cr_assert_eq(cg_ws_conn_held_bytes(&c), 0);
}

Test(ws, empty_feed)
{
    cg_ws_conn c;
    conn_start(&c, 1024);
    size_t consumed = 1;
    cr_assert_eq(cg_ws_feed(&c, NULL, 0, &consumed), MG_OK);
    cr_assert_eq(consumed, 0);
    uint8_t one[] = { 0x82 };
    cr_assert_eq(cg_ws_feed(&c, one, 1, &consumed), MG_OK);
    cr_assert_eq(consumed, 0, "one byte is not a header");
    cr_assert_eq(g_rec.close_count + g_rec.message_count + g_rec.reply_count, 0);
    cg_ws_conn_fini(&c);
}

Test(ws, conn_is_small)
{
    cr_assert_leq(sizeof(cg_ws_conn), 32, "the state lives in every connection");
}

/* --- outgoing control frames ----------------------------------------------------------------- */

Test(ws, control_frames)
{
    uint8_t out[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t len = 0;
    cr_assert_eq(cg_ws_close_frame(1000, NULL, 0, out, sizeof(out), &len), MG_OK);
    static const uint8_t normal[] = { 0x88, 0x02, 0x03, 0xe8 };
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(out, normal, 4);
    cr_assert_eq(cg_ws_close_frame(0, NULL, 0, out, sizeof(out), &len), MG_OK);
    cr_assert_eq(len, 2);
    cr_assert_eq(cg_ws_close_frame(0, "x", 1, out, sizeof(out), &len), MG_EINVAL);
    cr_assert_eq(cg_ws_ping_frame(NULL, 0, out, sizeof(out), &len), MG_OK);
    cr_assert_eq(len, 2);
    cr_assert_eq(out[0], 0x89);
    cr_assert_eq(out[1], 0);
    uint8_t payload[126] = { 0 };
    cr_assert_eq(cg_ws_ping_frame(payload, 126, out, sizeof(out), &len), MG_EINVAL);
    cr_assert_eq(cg_ws_pong_frame(payload, 125, out, sizeof(out), &len), MG_OK);
    cr_assert_eq(len, CG_WS_CONTROL_FRAME_BYTES_MAX);
    cr_assert_eq(cg_ws_pong_frame(payload, 125, out, sizeof(out) - 1, &len), MG_EINVAL);
}

Test(ws, close_names_and_validity)
{
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_NORMAL), "NORMAL");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_GOING_AWAY), "GOING_AWAY");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_PROTOCOL_ERROR), "PROTOCOL_ERROR");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_UNSUPPORTED), "UNSUPPORTED_DATA");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_INVALID_PAYLOAD), "INVALID_PAYLOAD");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_POLICY), "POLICY_VIOLATION");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_TOO_BIG), "TOO_BIG");
    cr_assert_str_eq(cg_ws_close_name(CG_WS_CLOSE_INTERNAL_ERROR), "INTERNAL_ERROR");
    cr_assert_str_eq(cg_ws_close_name(3001), "REGISTERED");
    cr_assert_str_eq(cg_ws_close_name(4000), "PRIVATE");
    cr_assert_str_eq(cg_ws_close_name(2000), "UNKNOWN");
    cr_assert(cg_ws_close_code_valid(1000));
    cr_assert_not(cg_ws_close_code_valid(1005));
    cr_assert_not(cg_ws_close_code_valid(5000));
}

/* --- handshake ------------------------------------------------------------------------------- */

/* RFC 6455 §1.2's client handshake, with the version line it requires. */
static const char k_request[] = "GET /chat HTTP/1.1\r\n"
                                "Host: server.example.com\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Origin: http://example.com\r\n"
                                "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                                "Sec-WebSocket-Version: 13\r\n"
                                "\r\n";

static int parse(const char *s, cg_ws_handshake *hs)
{
    return cg_ws_handshake_parse((const uint8_t *)s, strlen(s), hs);
}

Test(ws, rfc_accept_key)
{
    char accept[CG_WS_ACCEPT_CHARS + 1];
    cg_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
    cr_assert_str_eq(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws, rfc_request_accepted)
{
    cg_ws_handshake hs;
    cr_assert_eq(parse(k_request, &hs), MG_OK);
    cr_assert_eq(hs.request_bytes, strlen(k_request));
    cr_assert_eq(hs.path_len, 5);
    cr_assert_arr_eq(hs.path, "/chat", 5);
    cr_assert_null(hs.query);
    cr_assert_str_eq(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    uint8_t out[CG_WS_RESPONSE_BYTES_MAX];
    size_t len = 0;
    cr_assert_eq(cg_ws_response_accept(&hs, out, sizeof(out), &len), MG_OK);
    static const char expected[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                   "\r\n";
    cr_assert_eq(len, strlen(expected));
    cr_assert_arr_eq(out, expected, len, "no subprotocol or extension is echoed");
    cr_assert_eq(cg_ws_response_accept(&hs, out, len - 1, &len), MG_EINVAL);
}

Test(ws, request_incremental_then_frames)
{
    /* The request as a browser sends it to the gateway, a frame right behind it. */
    char buf[1024];
    int req_len = snprintf(buf, sizeof(buf),
                           "GET /sub?room=live%%3A%%2F%%2F1000&x HTTP/1.1\r\n"
                           "host: 127.0.0.1:3102\r\n"
                           "connection: keep-alive, Upgrade\r\n"
                           "upgrade: WebSocket\r\n"
                           "sec-websocket-version:13\r\n"
                           "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n"
                           "\r\n");
    cr_assert_gt(req_len, 0);
    uint8_t in[1100];
    memcpy(in, buf, (size_t)req_len);
    size_t n = (size_t)req_len;
    put_frame(in, &n, 0x82, "goim", 4);
    cg_ws_handshake hs;
    for (size_t k = 0; k < (size_t)req_len; k++)
        cr_assert_eq(cg_ws_handshake_parse(in, k, &hs), MG_EAGAIN, "prefix of %zu", k);
    cr_assert_eq(cg_ws_handshake_parse(in, n, &hs), MG_OK);
    cr_assert_eq(hs.request_bytes, (size_t)req_len);
    cr_assert_eq(hs.path_len, 4);
    cr_assert_arr_eq(hs.path, "/sub", 4);
    cr_assert_eq(hs.query_len, strlen("room=live%3A%2F%2F1000&x"));
    cr_assert_arr_eq(hs.query, "room=live%3A%2F%2F1000&x", hs.query_len);
    cr_assert_str_eq(hs.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    cg_ws_conn c;
    conn_start(&c, 1024);
    feed_all(&c, in + hs.request_bytes, n - hs.request_bytes);
    assert_message(0, CG_WS_OP_BINARY, "goim", 4);
    cg_ws_conn_fini(&c);
}

Test(ws, request_with_bare_lf)
{
    cg_ws_handshake hs;
    const char *req = "GET /sub HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n";
    cr_assert_eq(parse(req, &hs), MG_OK);
    cr_assert_eq(hs.request_bytes, strlen(req));
}

typedef struct refusal {
    const char *name;
    const char *request;
    int status;
} refusal;

#define R_HOST    "Host: h\r\n"
#define R_UPGRADE "Upgrade: websocket\r\n"
#define R_CONN    "Connection: Upgrade\r\n"
#define R_KEY     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define R_VERSION "Sec-WebSocket-Version: 13\r\n"
#define R_LINE    "GET /sub HTTP/1.1\r\n"

static const refusal k_refusals[] = {
    { "POST", "POST /sub HTTP/1.1\r\n" R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "HTTP/1.0", "GET /sub HTTP/1.0\r\n" R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "no version", "GET /sub\r\n" R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "absolute target",
      "GET http://h/sub HTTP/1.1\r\n" R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "no Upgrade", R_LINE R_HOST R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "Upgrade: h2c", R_LINE R_HOST "Upgrade: h2c\r\n" R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "no Connection", R_LINE R_HOST R_UPGRADE R_KEY R_VERSION "\r\n", 400 },
    { "Connection: close",
      R_LINE R_HOST R_UPGRADE "Connection: close, upgraded\r\n" R_KEY R_VERSION "\r\n", 400 },
    { "version 8", R_LINE R_HOST R_UPGRADE R_CONN R_KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426 },
    { "version missing", R_LINE R_HOST R_UPGRADE R_CONN R_KEY "\r\n", 426 },
    { "two versions",
      R_LINE R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "Sec-WebSocket-Version: 7\r\n\r\n", 426 },
    { "no key", R_LINE R_HOST R_UPGRADE R_CONN R_VERSION "\r\n", 400 },
    { "key of 23 characters",
      R_LINE R_HOST R_UPGRADE R_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" R_VERSION
                                     "\r\n",
      400 },
    { "key of 18 bytes",
      R_LINE R_HOST R_UPGRADE R_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" R_VERSION
                                     "\r\n",
      400 },
    { "key not base64",
      R_LINE R_HOST R_UPGRADE R_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n" R_VERSION
                                     "\r\n",
      400 },
    { "key with a space",
      R_LINE R_HOST R_UPGRADE R_CONN "Sec-WebSocket-Key: dGhlIHNhbX BsZSBub25jZQ==\r\n" R_VERSION
                                     "\r\n",
      400 },
    { "key with padding bits", /* 'R' leaves non-zero bits after the 16th byte */
      R_LINE R_HOST R_UPGRADE R_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" R_VERSION
                                     "\r\n",
      400 },
    { "two keys", R_LINE R_HOST R_UPGRADE R_CONN R_KEY R_KEY R_VERSION "\r\n", 400 },
    { "no Host", R_LINE R_UPGRADE R_CONN R_KEY R_VERSION "\r\n", 400 },
    { "folded header", R_LINE R_HOST R_UPGRADE R_CONN R_KEY R_VERSION " folded\r\n\r\n", 400 },
    { "no colon", R_LINE R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "NoColon\r\n\r\n", 400 },
    { "space before colon", R_LINE R_HOST "Upgrade : websocket\r\n" R_CONN R_KEY R_VERSION "\r\n",
      400 },
    { "control character", R_LINE R_HOST R_UPGRADE R_CONN R_KEY R_VERSION "X: a\x01z\r\n\r\n",
      400 },
};

Test(ws, every_handshake_refusal)
{
    for (size_t i = 0; i < sizeof(k_refusals) / sizeof(k_refusals[0]); i++) {
        const refusal *r = &k_refusals[i];
        cg_ws_handshake hs;
        cr_assert_eq(parse(r->request, &hs), MG_EPROTO, "%s", r->name);
        cr_assert_eq(hs.status, r->status, "%s: status %d", r->name, hs.status);
        cr_assert_not_null(hs.reason, "%s", r->name);
        uint8_t out[CG_WS_RESPONSE_BYTES_MAX];
        size_t len = 0;
        cr_assert_eq(cg_ws_response_refuse(hs.status, hs.reason, out, sizeof(out), &len), MG_OK,
                     "%s", r->name);
    }
}

Test(ws, handshake_fails_fast_on_another_method)
{
    cg_ws_handshake hs;
    cr_assert_eq(cg_ws_handshake_parse((const uint8_t *)"G", 1, &hs), MG_EAGAIN);
    cr_assert_eq(cg_ws_handshake_parse(NULL, 0, &hs), MG_EAGAIN);
    cr_assert_eq(cg_ws_handshake_parse((const uint8_t *)"P", 1, &hs), MG_EPROTO);
    cr_assert_eq(hs.status, 400);
    /* A GOIM TCP client on the WebSocket port: its first byte is a packLen's high byte. */
    static const uint8_t goim[] = { 0x00, 0x00, 0x00, 0x1f };
    cr_assert_eq(cg_ws_handshake_parse(goim, sizeof(goim), &hs), MG_EPROTO);
}

Test(ws, handshake_header_bound)
{
    static uint8_t req[CG_WS_HANDSHAKE_BYTES_MAX + 64];
    static const char line[] = "GET /sub HTTP/1.1\r\nX-Pad: ";
    memcpy(req, line, strlen(line));
    memset(req + strlen(line), 'a', sizeof(req) - strlen(line));
    cg_ws_handshake hs;
    cr_assert_eq(cg_ws_handshake_parse(req, CG_WS_HANDSHAKE_BYTES_MAX - 1, &hs), MG_EAGAIN);
    cr_assert_eq(cg_ws_handshake_parse(req, CG_WS_HANDSHAKE_BYTES_MAX, &hs), MG_ELIMIT);
    cr_assert_eq(hs.status, 400);
    cr_assert_eq(cg_ws_handshake_parse(req, sizeof(req), &hs), MG_ELIMIT);

    /* A blank line just past the bound does not make it whole. */
    memcpy(req + CG_WS_HANDSHAKE_BYTES_MAX - 2, "\r\n\r\n", 4);
    cr_assert_eq(cg_ws_handshake_parse(req, sizeof(req), &hs), MG_ELIMIT);
}

static void assert_refusal(int status, const char *status_line, const char *reason, bool version)
{
    uint8_t out[CG_WS_RESPONSE_BYTES_MAX + 1];
    size_t len = 0;
    cr_assert_eq(cg_ws_response_refuse(status, reason, out, sizeof(out) - 1, &len), MG_OK);
    out[len] = '\0';
    const char *s = (const char *)out;
    cr_assert_eq(strncmp(s, status_line, strlen(status_line)), 0, "%s", s);
    cr_assert_not_null(strstr(s, "\r\nConnection: close\r\n"));
    cr_assert_eq(strstr(s, "\r\nSec-WebSocket-Version: 13\r\n") != NULL, version);
    const char *body = strstr(s, "\r\n\r\n");
    cr_assert_not_null(body);
    body += 4;
    char cl[64];
    snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(body));
    cr_assert_not_null(strstr(s, cl), "Content-Length matches the body");
    cr_assert_eq(strncmp(body, reason, strlen(reason)), 0);
}

Test(ws, refusal_responses)
{
    assert_refusal(400, "HTTP/1.1 400 Bad Request\r\n", "no Upgrade: websocket header", false);
    assert_refusal(404, "HTTP/1.1 404 Not Found\r\n", "no such path", false);
    assert_refusal(426, "HTTP/1.1 426 Upgrade Required\r\n", "Sec-WebSocket-Version must be 13",
                   true);
    uint8_t out[CG_WS_RESPONSE_BYTES_MAX];
    size_t len = 0;
    cr_assert_eq(cg_ws_response_refuse(500, "x", out, sizeof(out), &len), MG_EINVAL);
    cr_assert_eq(cg_ws_response_refuse(400, "x", out, 10, &len), MG_EINVAL);
    char reason[CG_WS_CLOSE_REASON_BYTES_MAX + 2];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    cr_assert_eq(cg_ws_response_refuse(400, reason, out, sizeof(out), &len), MG_EINVAL);
    reason[sizeof(reason) - 2] = '\0';
    cr_assert_eq(cg_ws_response_refuse(426, reason, out, sizeof(out), &len), MG_OK);
}
