/*
 * Fuzz target ws_frame: the bytes a client sends to the chat gateway's WebSocket port, as the
 * gateway will hand them to the engine (src/chat_gateway/ws.h): the HTTP Upgrade request read
 * with cg_ws_handshake_parse, then the frames after it fed to cg_ws_feed in chunks, the caller
 * keeping what each call did not consume, as a connection's input buffer does.
 *
 * Input: one flags byte, then the connection's bytes.
 *   bit 7     no handshake: every byte after the flags is frames
 *   bit 4     message bound 64 bytes (else CG_WS_MESSAGE_BYTES_DEFAULT)
 *   bits 0-3  chunk size: 1 << (bits 0-2) bytes a read, bit 3 adds 3 (uneven splits)
 *
 * Checks beyond "no crash, no sanitizer report": the handshake's results lie inside the input,
 * a request accepted at n bytes is accepted alike at exactly its own length, every refusal
 * builds a response; a feed never consumes more than it was given; every reply is a valid
 * server control frame (pong or close, unmasked, at most 125 bytes); messages respect the
 * bound; nothing is delivered after the close, which is reported once; and the chunked run
 * delivers exactly what a single feed of the same bytes delivers.
 */
#include "chat_gateway/limits.h"
#include "chat_gateway/ws.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "ws_frame: invariant broken: %s\n", what);
        abort();
    }
}

/* What one run saw, folded into a digest so two runs can be compared. */
typedef struct run {
    uint64_t digest;
    size_t message_count;
    size_t reply_count;
    size_t close_count;
    uint32_t message_bytes_max;
} run;

static void fold(run *r, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        r->digest = (r->digest ^ b[i]) * 0x100000001b3ull; /* FNV-1a */
}

static int on_message(void *user, unsigned opcode, uint8_t *data, size_t len)
{
    run *r = user;
    check(r->close_count == 0, "a message after the close");
    check(opcode == CG_WS_OP_TEXT || opcode == CG_WS_OP_BINARY, "a message of another opcode");
    check(len <= r->message_bytes_max, "a message over the bound");
    check(data != NULL || len == 0, "a message without its bytes");
    r->message_count++;
    uint8_t tag[2] = { 'm', (uint8_t)opcode };
    fold(r, tag, sizeof(tag));
    fold(r, &len, sizeof(len));
    if (len > 0)
        fold(r, data, len);
    return MG_OK;
}

static void on_reply(void *user, const uint8_t *frame, size_t len)
{
    run *r = user;
    check(r->close_count == 0, "a reply after the close");
    check(len >= 2 && len <= CG_WS_CONTROL_FRAME_BYTES_MAX, "a reply of a bad length");
    check(frame[0] == 0x80 + CG_WS_OP_PONG || frame[0] == 0x80 + CG_WS_OP_CLOSE,
          "a reply that is not a pong or a close");
    check(frame[1] == len - 2, "a reply whose length byte disagrees");
    if (frame[0] == 0x80 + CG_WS_OP_CLOSE)
        check(len == 2 || len >= 4, "a close reply of 1 payload byte");
    r->reply_count++;
    uint8_t tag = 'r';
    fold(r, &tag, 1);
    fold(r, frame, len);
}

static void on_close(void *user, uint16_t code, const char *reason, size_t reason_len, bool by_peer)
{
    run *r = user;
    check(r->close_count == 0, "a second close");
    check(reason != NULL || reason_len == 0, "a close reason without its bytes");
    check(reason_len <= CG_WS_CLOSE_REASON_BYTES_MAX, "a close reason too long");
    check(by_peer || code == CG_WS_CLOSE_PROTOCOL_ERROR || code == CG_WS_CLOSE_INVALID_PAYLOAD ||
              code == CG_WS_CLOSE_TOO_BIG || code == CG_WS_CLOSE_INTERNAL_ERROR,
          "the engine closed with an unexpected code");
    check(cg_ws_close_name(code) != NULL, "no close name");
    r->close_count++;
    uint8_t tag[2] = { 'c', by_peer };
    fold(r, tag, sizeof(tag));
    fold(r, &code, sizeof(code));
    if (reason_len > 0)
        fold(r, reason, reason_len);
}

static void handshake(const uint8_t *p, size_t n, size_t *frames_at)
{
    cg_ws_handshake hs;
    int rc = cg_ws_handshake_parse(p, n, &hs);
    uint8_t out[CG_WS_RESPONSE_BYTES_MAX];
    size_t len = 0;
    *frames_at = n; /* nothing after a request that is not accepted is a frame */
    switch (rc) {
    case MG_OK: {
        check(hs.request_bytes > 0 && hs.request_bytes <= n, "request_bytes outside the input");
        check(hs.path >= (const char *)p && hs.path + hs.path_len <= (const char *)p + n &&
                  hs.path_len > 0 && hs.path[0] == '/',
              "a path outside the input");
        check(hs.query == NULL || (hs.query == hs.path + hs.path_len + 1 &&
                                   hs.query + hs.query_len <= (const char *)p + hs.request_bytes),
              "a query outside the request");
        check(strlen(hs.accept) == CG_WS_ACCEPT_CHARS, "an accept value of another length");
        check(cg_ws_response_accept(&hs, out, sizeof(out), &len) == MG_OK,
              "an accepted request has no response");
        cg_ws_handshake again;
        check(cg_ws_handshake_parse(p, hs.request_bytes, &again) == MG_OK &&
                  again.request_bytes == hs.request_bytes && strcmp(again.accept, hs.accept) == 0,
              "the request alone is not accepted alike");
        *frames_at = hs.request_bytes;
        break;
    }
    case MG_EAGAIN:
        check(n < CG_WS_HANDSHAKE_BYTES_MAX, "MG_EAGAIN past the header bound");
        break;
    case MG_EPROTO:
    case MG_ELIMIT:
        check(hs.status == 400 || hs.status == 426, "a refusal of another status");
        check(cg_ws_response_refuse(hs.status, hs.reason, out, sizeof(out), &len) == MG_OK,
              "a refusal has no response");
        check(cg_ws_response_refuse(404, hs.reason, out, sizeof(out), &len) == MG_OK,
              "a 404 has no response");
        break;
    default:
        check(false, "an unexpected handshake result");
    }
}

/* Feeds p[0, n) in chunks of chunk bytes as a connection would, into a fresh connection. */
static void feed_chunked(const uint8_t *p, size_t n, size_t chunk, const cg_ws_config *config,
                         run *r)
{
    cg_ws_conn c;
    cg_ws_conn_init(&c, config, r);
    uint8_t *pending = malloc(n > 0 ? n : 1);
    check(pending != NULL, "out of memory");
    size_t pending_len = 0, pos = 0;
    for (size_t turn = 0; turn <= n && pos < n; turn++) { /* each turn reads at least a byte */
        size_t take = n - pos < chunk ? n - pos : chunk;
        memcpy(pending + pending_len, p + pos, take);
        pos += take;
        pending_len += take;
        /* The engine sees a buffer of exactly the pending bytes, so ASan sees a read past it. */
        uint8_t *exact = malloc(pending_len);
        check(exact != NULL, "out of memory");
        memcpy(exact, pending, pending_len);
        size_t consumed = 0;
        bool was_closed = cg_ws_conn_closed(&c);
        int rc = cg_ws_feed(&c, exact, pending_len, &consumed);
        check(consumed <= pending_len, "consumed more than given");
        if (was_closed)
            check(rc == MG_ECLOSED && consumed == pending_len, "bytes taken after the close");
        else
            check(rc == MG_OK, "an unexpected feed result");
        if (cg_ws_conn_closed(&c))
            check(consumed == pending_len && cg_ws_conn_held_bytes(&c) == 0,
                  "a closed connection keeps bytes");
        check(cg_ws_conn_held_bytes(&c) <= r->message_bytes_max,
              "a reassembly buffer over the bound");
        memmove(pending, exact + consumed, pending_len - consumed);
        pending_len -= consumed;
        free(exact);
    }
    /* A control frame (up to 6 + 125 bytes) may be longer than a data frame of a small bound. */
    size_t frame_max = CG_WS_CLIENT_HEADER_BYTES_MAX + r->message_bytes_max;
    if (frame_max < 6 + CG_WS_CONTROL_PAYLOAD_BYTES_MAX)
        frame_max = 6 + CG_WS_CONTROL_PAYLOAD_BYTES_MAX;
    check(pending_len < frame_max, "a partial frame longer than any acceptable frame");
    free(pending);
    cg_ws_conn_fini(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    size_t frames_at = 0;
    if ((flags & 0x80) == 0)
        handshake(p, n, &frames_at);
    const uint8_t *frames = p + frames_at;
    size_t frames_len = n - frames_at;

    cg_ws_config config = {
        .events = { .message_done = on_message, .reply_ready = on_reply, .close_done = on_close },
        .message_bytes_max = (flags & 0x10) != 0 ? 64u : CG_WS_MESSAGE_BYTES_DEFAULT,
    };
    size_t chunk = ((size_t)1 << (flags & 0x07)) + ((flags & 0x08) != 0 ? 3 : 0);

    run whole = { .digest = 0xcbf29ce484222325ull, .message_bytes_max = config.message_bytes_max };
    run split = whole;
    feed_chunked(frames, frames_len, frames_len > 0 ? frames_len : 1, &config, &whole);
    feed_chunked(frames, frames_len, chunk, &config, &split);
    check(whole.digest == split.digest && whole.message_count == split.message_count &&
              whole.reply_count == split.reply_count && whole.close_count == split.close_count,
          "reading in chunks changes what is delivered");
    return 0;
}
