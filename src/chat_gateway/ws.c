/*
 * The WebSocket protocol engine (declared in ws.h, which describes the API and its states).
 *
 * WHY NOT WSLAY
 *   Debian's libwslay (1.1.1) was measured before this file was written (mallinfo2 deltas over
 *   1000 contexts, x86-64): a server context from wslay_event_context_server_init costs 8785
 *   bytes idle, and even its bare frame context (wslay_frame_context_init) 4273 bytes, both
 *   mostly a fixed input buffer, against the gateway's budget of 4 KiB per connection for
 *   everything. Its event API also copies each queued message into the context: queueing one
 *   1000-byte message on 1000 contexts allocated 1088 bytes per context, where the gateway
 *   writes one shared buffer to every recipient. So the frame parser is written here: its
 *   whole per-connection state is a 32-byte cg_ws_conn, and a partial frame stays in the
 *   caller's input buffer. SHA-1 and base64 of the handshake come from nettle.
 *
 * WHY A HAND-WRITTEN UTF-8 CHECK
 *   A text message's fragments must be checked as they arrive, with the state carried between
 *   frames in one byte (RFC 6455 §8.1 lets an endpoint fail as soon as the text is invalid).
 *   The library checks at hand, libunistring's u8_check and glib's g_utf8_validate, only take
 *   whole buffers, and a character may be split across fragments. The check is the RFC 3629 §4
 *   grammar as a nine-state machine (cg__utf8_step); it refuses overlong forms, surrogates and
 *   code points past U+10FFFF.
 *
 * Design notes:
 *   1. Frames are consumed whole. A header is checked as soon as its bytes are there (a bad
 *      opcode after 2 bytes, a message over the bound once its length is), so a hostile peer
 *      cannot make the caller buffer a frame the engine will refuse.
 *   2. Payload lengths come from the network as u64: each is compared with what is left before
 *      any arithmetic (no sum can wrap), and with the message bound before any allocation.
 *   3. c->msg_opcode != 0 exactly while a fragmented message is being reassembled; c->msg is
 *      then NULL or a buffer of cg__msg_capacity(c->msg_len) bytes, and NULL otherwise.
 *   4. c->closed is sticky: every path that closes frees the reassembly buffer, and nothing
 *      after a close frame is parsed.
 *   5. The engine never writes to the socket: replies go out through reply_ready, built in a
 *      stack buffer of CG_WS_CONTROL_FRAME_BYTES_MAX bytes.
 */
#include "chat_gateway/ws.h"

#include "common/assert.h"
#include "common/error.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The GUID every server appends to the client's key (RFC 6455 §1.3). */
static const char k_ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Bytes of the base64 of a 16-byte key: 22 characters and "==". */
#define CG__KEY_CHARS  24u
#define CG__KEY_BYTES  16u
#define CG__MASK_BYTES 4u

/* --- UTF-8 ----------------------------------------------------------------------------------- */

/* States of the UTF-8 check: what the next byte must be. */
enum {
    CG__UTF8_ACCEPT = 0, /* between characters */
    CG__UTF8_TAIL1,      /* one more 80..BF */
    CG__UTF8_TAIL2,      /* two more 80..BF */
    CG__UTF8_TAIL3,      /* three more 80..BF */
    CG__UTF8_E0,         /* A0..BF, then one tail (no overlong 3-byte form) */
    CG__UTF8_ED,         /* 80..9F, then one tail (no surrogate) */
    CG__UTF8_F0,         /* 90..BF, then two tails (no overlong 4-byte form) */
    CG__UTF8_F4,         /* 80..8F, then two tails (nothing past U+10FFFF) */
    CG__UTF8_REJECT,     /* invalid; sticky */
};

static uint8_t cg__utf8_lead(uint8_t b)
{
    if (b < 0x80)
        return CG__UTF8_ACCEPT;
    if (b < 0xC2) /* a tail byte, or C0/C1: an overlong 2-byte form */
        return CG__UTF8_REJECT;
    if (b < 0xE0)
        return CG__UTF8_TAIL1;
    if (b == 0xE0)
        return CG__UTF8_E0;
    if (b == 0xED)
        return CG__UTF8_ED;
    if (b < 0xF0)
        return CG__UTF8_TAIL2;
    if (b == 0xF0)
        return CG__UTF8_F0;
    if (b < 0xF4)
        return CG__UTF8_TAIL3;
    if (b == 0xF4)
        return CG__UTF8_F4;
    return CG__UTF8_REJECT;
}

static uint8_t cg__utf8_step(uint8_t state, uint8_t b)
{
    switch (state) {
    case CG__UTF8_ACCEPT:
        return cg__utf8_lead(b);
    case CG__UTF8_TAIL1:
        return (b & 0xC0) == 0x80 ? CG__UTF8_ACCEPT : CG__UTF8_REJECT;
    case CG__UTF8_TAIL2:
        return (b & 0xC0) == 0x80 ? CG__UTF8_TAIL1 : CG__UTF8_REJECT;
    case CG__UTF8_TAIL3:
        return (b & 0xC0) == 0x80 ? CG__UTF8_TAIL2 : CG__UTF8_REJECT;
    case CG__UTF8_E0:
        return b >= 0xA0 && b <= 0xBF ? CG__UTF8_TAIL1 : CG__UTF8_REJECT;
    case CG__UTF8_ED:
        return b >= 0x80 && b <= 0x9F ? CG__UTF8_TAIL1 : CG__UTF8_REJECT;
    case CG__UTF8_F0:
        return b >= 0x90 && b <= 0xBF ? CG__UTF8_TAIL2 : CG__UTF8_REJECT;
    case CG__UTF8_F4:
        return b >= 0x80 && b <= 0x8F ? CG__UTF8_TAIL2 : CG__UTF8_REJECT;
    default:
        return CG__UTF8_REJECT;
    }
}

/* Runs the check over p[0, n) from state and returns the state after it (REJECT at once). */
static uint8_t cg__utf8_run(uint8_t state, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (state == CG__UTF8_ACCEPT && p[i] < 0x80)
            continue;
        state = cg__utf8_step(state, p[i]);
        if (state == CG__UTF8_REJECT)
            return state;
    }
    return state;
}

/* --- Handshake ------------------------------------------------------------------------------- */

static int cg__refuse(cg_ws_handshake *out, int rc, int status, const char *reason)
{
    out->status = status;
    out->reason = reason;
    return rc;
}

static char cg__lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* True when s[0, n) equals the lower-case word, ignoring case. */
static bool cg__equals_ci(const char *s, size_t n, const char *word)
{
    size_t len = strlen(word);
    if (n != len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (cg__lower(s[i]) != word[i])
            return false;
    return true;
}

static bool cg__is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* True when the comma-separated list s[0, n) has the lower-case token word (RFC 7230 §7). */
static bool cg__list_has(const char *s, size_t n, const char *word)
{
    size_t pos = 0;
    while (pos <= n) { /* each turn moves pos past a comma or past n */
        const char *comma = memchr(s + pos, ',', n - pos);
        size_t end = comma != NULL ? (size_t)(comma - s) : n;
        size_t a = pos, b = end;
        while (a < b && cg__is_ows(s[a]))
            a++;
        while (b > a && cg__is_ows(s[b - 1]))
            b--;
        if (cg__equals_ci(s + a, b - a, word))
            return true;
        pos = end + 1;
    }
    return false;
}

/* A header name's characters: RFC 7230 §3.2.6 tchar. */
static bool cg__is_tchar(char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Finds the blank line that ends the request within p[0, n): returns the request's length
 * (through the blank line's LF) or 0 when it is not there yet. */
static size_t cg__request_end(const uint8_t *p, size_t n)
{
    size_t pos = 0;
    while (pos < n) { /* each turn moves pos past a LF */
        const uint8_t *lf = memchr(p + pos, '\n', n - pos);
        if (lf == NULL)
            return 0;
        size_t line_len = (size_t)(lf - (p + pos));
        if (pos > 0 && (line_len == 0 || (line_len == 1 && p[pos] == '\r')))
            return (size_t)(lf - p) + 1;
        pos = (size_t)(lf - p) + 1;
    }
    return 0;
}

/* True when key[0, key_len) is the canonical base64 of 16 bytes: it decodes to 16 bytes (with
 * nettle) and those encode back to the same characters, which refuses stray whitespace and
 * non-zero padding bits that a decoder alone would let through. */
static bool cg__key_valid(const char *key, size_t key_len)
{
    if (key_len != CG__KEY_CHARS)
        return false;
    struct base64_decode_ctx ctx;
    uint8_t raw[BASE64_DECODE_LENGTH(CG__KEY_CHARS)];
    size_t raw_len = sizeof(raw);
    base64_decode_init(&ctx);
    if (!base64_decode_update(&ctx, &raw_len, raw, key_len, key) || !base64_decode_final(&ctx) ||
        raw_len != CG__KEY_BYTES)
        return false;
    char again[BASE64_ENCODE_RAW_LENGTH(CG__KEY_BYTES)];
    _Static_assert(sizeof(again) == CG__KEY_CHARS, "24 characters hold 16 bytes");
    base64_encode_raw(again, CG__KEY_BYTES, raw);
    return memcmp(again, key, CG__KEY_CHARS) == 0;
}

void cg_ws_accept_key(const char *key, size_t key_len, char accept[CG_WS_ACCEPT_CHARS + 1])
{
    struct sha1_ctx ctx;
    uint8_t digest[SHA1_DIGEST_SIZE];
    _Static_assert(BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) == CG_WS_ACCEPT_CHARS,
                   "the accept value is base64 of a SHA-1");
    sha1_init(&ctx);
    sha1_update(&ctx, key_len, (const uint8_t *)key);
    sha1_update(&ctx, sizeof(k_ws_guid) - 1, (const uint8_t *)k_ws_guid);
    sha1_digest(&ctx, sizeof(digest), digest);
    base64_encode_raw(accept, sizeof(digest), digest);
    accept[CG_WS_ACCEPT_CHARS] = '\0';
}

/* What the headers said, gathered before the request is judged. */
typedef struct cg__headers {
    bool host;
    bool upgrade_websocket;
    bool connection_upgrade;
    bool version_13;
    bool version_other;
    int key_count;
    const char *key;
    size_t key_len;
} cg__headers;

static void cg__header(cg__headers *h, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    if (cg__equals_ci(name, name_len, "host")) {
        h->host = true;
    } else if (cg__equals_ci(name, name_len, "upgrade")) {
        h->upgrade_websocket |= cg__list_has(value, value_len, "websocket");
    } else if (cg__equals_ci(name, name_len, "connection")) {
        h->connection_upgrade |= cg__list_has(value, value_len, "upgrade");
    } else if (cg__equals_ci(name, name_len, "sec-websocket-version")) {
        if (value_len == 2 && memcmp(value, "13", 2) == 0)
            h->version_13 = true;
        else
            h->version_other = true;
    } else if (cg__equals_ci(name, name_len, "sec-websocket-key")) {
        h->key_count++;
        h->key = value;
        h->key_len = value_len;
    }
    /* Sec-WebSocket-Protocol and -Extensions are not negotiated: nothing is echoed. */
}

/* Parses the request line s[0, n) (without its line end) into out's path and query. */
static int cg__request_line(const char *s, size_t n, cg_ws_handshake *out)
{
    if (n < 4 || memcmp(s, "GET ", 4) != 0)
        return cg__refuse(out, MG_EPROTO, 400, "the method is not GET");
    const char *target = s + 4;
    const char *sp = memchr(target, ' ', n - 4);
    if (sp == NULL || sp == target)
        return cg__refuse(out, MG_EPROTO, 400, "malformed request line");
    size_t target_len = (size_t)(sp - target);
    size_t version_len = n - 4 - target_len - 1;
    if (version_len != 8 || memcmp(sp + 1, "HTTP/1.1", 8) != 0)
        return cg__refuse(out, MG_EPROTO, 400, "the HTTP version is not 1.1");
    if (target[0] != '/')
        return cg__refuse(out, MG_EPROTO, 400, "the request target is not a path");
    for (size_t i = 0; i < target_len; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] == 0x7F)
            return cg__refuse(out, MG_EPROTO, 400, "a control character in the request target");
    const char *q = memchr(target, '?', target_len);
    out->path = target;
    out->path_len = q != NULL ? (size_t)(q - target) : target_len;
    out->query = q != NULL ? q + 1 : NULL;
    out->query_len = q != NULL ? target_len - out->path_len - 1 : 0;
    return MG_OK;
}

int cg_ws_handshake_parse(const uint8_t *p, size_t n, cg_ws_handshake *out)
{
    MG_ASSERT(p != NULL || n == 0);
    memset(out, 0, sizeof(*out));
    if (n == 0)
        return MG_EAGAIN;
    if (memcmp(p, "GET ", n < 4 ? n : 4) != 0)
        return cg__refuse(out, MG_EPROTO, 400, "the method is not GET");
    size_t scan = n < CG_WS_HANDSHAKE_BYTES_MAX ? n : CG_WS_HANDSHAKE_BYTES_MAX;
    size_t end = cg__request_end(p, scan);
    if (end == 0) {
        if (n >= CG_WS_HANDSHAKE_BYTES_MAX)
            return cg__refuse(out, MG_ELIMIT, 400, "request headers over the size bound");
        return MG_EAGAIN;
    }

    cg__headers h = { 0 };
    const char *s = (const char *)p;
    size_t pos = 0;
    bool first = true;
    while (pos < end) { /* each turn moves pos past a LF; the blank line is within end */
        const char *lf = memchr(s + pos, '\n', end - pos);
        MG_ASSERT(lf != NULL);
        size_t line_end = (size_t)(lf - s);
        size_t next = line_end + 1;
        if (line_end > pos && s[line_end - 1] == '\r')
            line_end--;
        const char *line = s + pos;
        size_t len = line_end - pos;
        pos = next;
        if (first) {
            first = false;
            MG_TRY(cg__request_line(line, len, out));
            continue;
        }
        if (len == 0)
            break; /* the blank line */
        for (size_t i = 0; i < len; i++)
            if (((unsigned char)line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7F)
                return cg__refuse(out, MG_EPROTO, 400, "a control character in a header");
        if (cg__is_ows(line[0]))
            return cg__refuse(out, MG_EPROTO, 400, "a folded header line");
        const char *colon = memchr(line, ':', len);
        if (colon == NULL || colon == line)
            return cg__refuse(out, MG_EPROTO, 400, "a header line without a name and colon");
        size_t name_len = (size_t)(colon - line);
        for (size_t i = 0; i < name_len; i++)
            if (!cg__is_tchar(line[i]))
                return cg__refuse(out, MG_EPROTO, 400, "a malformed header name");
        size_t a = name_len + 1, b = len;
        while (a < b && cg__is_ows(line[a]))
            a++;
        while (b > a && cg__is_ows(line[b - 1]))
            b--;
        cg__header(&h, line, name_len, line + a, b - a);
    }

    if (!h.upgrade_websocket)
        return cg__refuse(out, MG_EPROTO, 400, "no Upgrade: websocket header");
    if (!h.connection_upgrade)
        return cg__refuse(out, MG_EPROTO, 400, "no Connection: Upgrade header");
    if (!h.version_13 || h.version_other)
        return cg__refuse(out, MG_EPROTO, 426, "Sec-WebSocket-Version must be 13");
    if (h.key_count == 0)
        return cg__refuse(out, MG_EPROTO, 400, "no Sec-WebSocket-Key header");
    if (h.key_count > 1)
        return cg__refuse(out, MG_EPROTO, 400, "more than one Sec-WebSocket-Key header");
    if (!cg__key_valid(h.key, h.key_len))
        return cg__refuse(out, MG_EPROTO, 400, "Sec-WebSocket-Key is not base64 of 16 bytes");
    if (!h.host)
        return cg__refuse(out, MG_EPROTO, 400, "no Host header");
    cg_ws_accept_key(h.key, h.key_len, out->accept);
    out->request_bytes = end;
    return MG_OK;
}

/* Copies the formatted response of len bytes (snprintf's result) from tmp into dst. */
static int cg__put_response(const char *tmp, int len, uint8_t *dst, size_t dst_capacity,
                            size_t *written)
{
    MG_ASSERT(len > 0 && (size_t)len < CG_WS_RESPONSE_BYTES_MAX);
    if (dst == NULL || dst_capacity < (size_t)len)
        return MG_EINVAL;
    memcpy(dst, tmp, (size_t)len);
    *written = (size_t)len;
    return MG_OK;
}

int cg_ws_response_accept(const cg_ws_handshake *hs, uint8_t *dst, size_t dst_capacity,
                          size_t *written)
{
    MG_ASSERT(strlen(hs->accept) == CG_WS_ACCEPT_CHARS);
    char tmp[CG_WS_RESPONSE_BYTES_MAX];
    int len = snprintf(tmp, sizeof(tmp),
                       "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n"
                       "\r\n",
                       hs->accept);
    return cg__put_response(tmp, len, dst, dst_capacity, written);
}

int cg_ws_response_refuse(int status, const char *reason, uint8_t *dst, size_t dst_capacity,
                          size_t *written)
{
    const char *text = NULL;
    const char *extra = "";
    switch (status) {
    case 400:
        text = "Bad Request";
        break;
    case 404:
        text = "Not Found";
        break;
    case 426:
        text = "Upgrade Required";
        /* RFC 6455 §4.2.2 asks for the versions understood; RFC 7231 §6.5.15 for Upgrade. */
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
        break;
    default:
        return MG_EINVAL;
    }
    size_t reason_len = strlen(reason);
    if (reason_len > CG_WS_CLOSE_REASON_BYTES_MAX)
        return MG_EINVAL;
    char tmp[CG_WS_RESPONSE_BYTES_MAX];
    int len = snprintf(tmp, sizeof(tmp),
                       "HTTP/1.1 %d %s\r\n"
                       "Connection: close\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: %zu\r\n"
                       "%s"
                       "\r\n"
                       "%s\n",
                       status, text, reason_len + 1, extra, reason);
    return cg__put_response(tmp, len, dst, dst_capacity, written);
}

/* --- Outgoing frames ------------------------------------------------------------------------- */

size_t cg_ws_frame_header(unsigned opcode, uint64_t payload_len,
                          uint8_t dst[CG_WS_SERVER_HEADER_BYTES_MAX])
{
    MG_ASSERT(opcode <= 0xF);
    MG_ASSERT(payload_len >> 63 == 0);
    dst[0] = (uint8_t)(0x80 | opcode);
    if (payload_len <= 125) {
        dst[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        dst[1] = 126;
        dst[2] = (uint8_t)(payload_len >> 8);
        dst[3] = (uint8_t)payload_len;
        return 4;
    }
    dst[1] = 127;
    for (int i = 0; i < 8; i++)
        dst[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return CG_WS_SERVER_HEADER_BYTES_MAX;
}

static int cg__control_frame(unsigned opcode, const void *payload, size_t payload_len, uint8_t *dst,
                             size_t dst_capacity, size_t *written)
{
    MG_ASSERT(payload != NULL || payload_len == 0);
    if (payload_len > CG_WS_CONTROL_PAYLOAD_BYTES_MAX || dst == NULL ||
        dst_capacity < 2 + payload_len)
        return MG_EINVAL;
    dst[0] = (uint8_t)(0x80 | opcode);
    dst[1] = (uint8_t)payload_len;
    if (payload_len > 0)
        memcpy(dst + 2, payload, payload_len);
    *written = 2 + payload_len;
    return MG_OK;
}

int cg_ws_ping_frame(const void *payload, size_t payload_len, uint8_t *dst, size_t dst_capacity,
                     size_t *written)
{
    return cg__control_frame(CG_WS_OP_PING, payload, payload_len, dst, dst_capacity, written);
}

int cg_ws_pong_frame(const void *payload, size_t payload_len, uint8_t *dst, size_t dst_capacity,
                     size_t *written)
{
    return cg__control_frame(CG_WS_OP_PONG, payload, payload_len, dst, dst_capacity, written);
}

int cg_ws_close_frame(uint16_t code, const char *reason, size_t reason_len, uint8_t *dst,
                      size_t dst_capacity, size_t *written)
{
    MG_ASSERT(reason != NULL || reason_len == 0);
    if (reason_len > CG_WS_CLOSE_REASON_BYTES_MAX || (code == 0 && reason_len > 0))
        return MG_EINVAL;
    if (code == 0)
        return cg__control_frame(CG_WS_OP_CLOSE, NULL, 0, dst, dst_capacity, written);
    uint8_t payload[CG_WS_CONTROL_PAYLOAD_BYTES_MAX];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (reason_len > 0)
        memcpy(payload + 2, reason, reason_len);
    return cg__control_frame(CG_WS_OP_CLOSE, payload, 2 + reason_len, dst, dst_capacity, written);
}

/* --- Close codes ----------------------------------------------------------------------------- */

bool cg_ws_close_code_valid(uint16_t code)
{
    /* 1004 is reserved, 1005 and 1006 are never sent (§7.4.1), 1015 is TLS's and never sent;
     * 1012-1014 were registered after the RFC (IANA "WebSocket Close Code Number Registry"). */
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

const char *cg_ws_close_name(uint16_t code)
{
    switch (code) {
    case 1000:
        return "NORMAL";
    case 1001:
        return "GOING_AWAY";
    case 1002:
        return "PROTOCOL_ERROR";
    case 1003:
        return "UNSUPPORTED_DATA";
    case 1005:
        return "NO_STATUS";
    case 1006:
        return "ABNORMAL";
    case 1007:
        return "INVALID_PAYLOAD";
    case 1008:
        return "POLICY_VIOLATION";
    case 1009:
        return "TOO_BIG";
    case 1010:
        return "MANDATORY_EXTENSION";
    case 1011:
        return "INTERNAL_ERROR";
    case 1012:
        return "SERVICE_RESTART";
    case 1013:
        return "TRY_AGAIN_LATER";
    case 1014:
        return "BAD_GATEWAY";
    case 1015:
        return "TLS_HANDSHAKE";
    default:
        break;
    }
    if (code >= 3000 && code <= 3999)
        return "REGISTERED";
    if (code >= 4000 && code <= 4999)
        return "PRIVATE";
    return "UNKNOWN";
}

/* --- Incoming frames ------------------------------------------------------------------------- */

void cg_ws_conn_init(cg_ws_conn *c, const cg_ws_config *config, void *user)
{
    MG_ASSERT(config != NULL && config->events.message_done != NULL &&
              config->events.reply_ready != NULL && config->events.close_done != NULL);
    memset(c, 0, sizeof(*c));
    c->config = config;
    c->user = user;
}

static void cg__msg_free(cg_ws_conn *c)
{
    free(c->msg);
    c->msg = NULL;
    c->msg_len = 0;
    c->msg_opcode = 0;
    c->utf8_state = CG__UTF8_ACCEPT;
}

void cg_ws_conn_fini(cg_ws_conn *c)
{
    cg__msg_free(c);
    c->closed = 1;
}

bool cg_ws_conn_closed(const cg_ws_conn *c)
{
    return c->closed != 0;
}

static uint32_t cg__message_max(const cg_ws_conn *c)
{
    uint32_t max = c->config->message_bytes_max;
    return max < CG_WS_MESSAGE_BYTES_ABS_MAX ? max : CG_WS_MESSAGE_BYTES_ABS_MAX;
}

/* The reassembly buffer's size for len bytes: a power of two from CG_WS_REASSEMBLY_BYTES_MIN,
 * capped at the message bound (len never exceeds it), 0 for none. Derived rather than stored,
 * which keeps cg_ws_conn at 32 bytes. */
static uint32_t cg__msg_capacity(const cg_ws_conn *c, uint32_t len)
{
    if (len == 0)
        return 0;
    uint32_t max = cg__message_max(c);
    MG_ASSERT(len <= max);
    uint32_t cap = CG_WS_REASSEMBLY_BYTES_MIN;
    for (int i = 0; i < 32 && cap < len; i++) /* the limits keep cap * 2 within a u32 */
        cap *= 2;
    return cap < max ? cap : max;
}

size_t cg_ws_conn_held_bytes(const cg_ws_conn *c)
{
    return c->msg != NULL ? cg__msg_capacity(c, c->msg_len) : 0;
}

/* Closes the connection from the engine's side: the close frame goes out through reply_ready,
 * then close_done reports it. */
static void cg__fail(cg_ws_conn *c, uint16_t code, const char *reason)
{
    uint8_t frame[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t len = 0;
    size_t reason_len = strlen(reason);
    int rc = cg_ws_close_frame(code, reason, reason_len, frame, sizeof(frame), &len);
    MG_ASSERT(rc == MG_OK);
    cg__msg_free(c);
    c->closed = 1;
    c->config->events.reply_ready(c->user, frame, len);
    c->config->events.close_done(c->user, code, reason, reason_len, false);
}

/* A frame's header, once checked. */
typedef struct cg__frame {
    bool fin;
    unsigned opcode;
    size_t header_len; /* through the mask */
    uint64_t payload_len;
    uint16_t fail_code; /* on MG_EPROTO: the close code to send, and why */
    const char *fail_reason;
} cg__frame;

static int cg__bad(cg__frame *f, uint16_t code, const char *reason)
{
    f->fail_code = code;
    f->fail_reason = reason;
    return MG_EPROTO;
}

/* Checks the header of the frame at p[0, n): MG_OK with *f filled once the whole header is
 * there, MG_EAGAIN while it is not and nothing is wrong yet, MG_EPROTO with the close to send. */
static int cg__frame_header(const cg_ws_conn *c, const uint8_t *p, size_t n, cg__frame *f)
{
    if (n < 2)
        return MG_EAGAIN;
    f->fin = (p[0] & 0x80) != 0;
    f->opcode = p[0] & 0x0Fu;
    unsigned len7 = p[1] & 0x7Fu;
    if ((p[0] & 0x70) != 0) /* no extension is negotiated (§5.2) */
        return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "reserved bits set");
    switch (f->opcode) {
    case CG_WS_OP_CONTINUATION:
        if (c->msg_opcode == 0)
            return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a continuation without a message");
        break;
    case CG_WS_OP_TEXT:
    case CG_WS_OP_BINARY:
        if (c->msg_opcode != 0)
            return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one");
        break;
    case CG_WS_OP_CLOSE:
    case CG_WS_OP_PING:
    case CG_WS_OP_PONG:
        if (!f->fin)
            return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a fragmented control frame");
        if (len7 > CG_WS_CONTROL_PAYLOAD_BYTES_MAX)
            return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a control frame over 125 bytes");
        break;
    default:
        return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "an unknown opcode");
    }
    if ((p[1] & 0x80) == 0) /* §5.1: a client masks every frame */
        return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a client frame without a mask");
    size_t len_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (n < 2 + len_bytes)
        return MG_EAGAIN;
    uint64_t len = len7;
    if (len_bytes > 0) {
        len = 0;
        for (size_t i = 0; i < len_bytes; i++)
            len = len << 8 | p[2 + i];
    }
    if (len >> 63 != 0)
        return cg__bad(f, CG_WS_CLOSE_PROTOCOL_ERROR, "a 64-bit length with the top bit set");
    if (f->opcode < CG_WS_OP_CLOSE && len > (uint64_t)(cg__message_max(c) - c->msg_len))
        return cg__bad(f, CG_WS_CLOSE_TOO_BIG, "a message over the size bound");
    f->header_len = 2 + len_bytes + CG__MASK_BYTES;
    f->payload_len = len;
    return n < f->header_len ? MG_EAGAIN : MG_OK;
}

static void cg__unmask(uint8_t *payload, size_t len, const uint8_t mask[CG__MASK_BYTES])
{
    for (size_t i = 0; i < len; i++)
        payload[i] ^= mask[i & 3];
}

/* A close frame from the peer: validate it, reply, report. */
static void cg__peer_close(cg_ws_conn *c, const uint8_t *payload, size_t len)
{
    if (len == 1) {
        cg__fail(c, CG_WS_CLOSE_PROTOCOL_ERROR, "a close payload of 1 byte");
        return;
    }
    uint16_t code = CG_WS_CLOSE_NO_STATUS;
    const char *reason = NULL;
    size_t reason_len = 0;
    if (len >= 2) {
        code = (uint16_t)((unsigned)payload[0] << 8 | payload[1]);
        if (!cg_ws_close_code_valid(code)) {
            cg__fail(c, CG_WS_CLOSE_PROTOCOL_ERROR, "an invalid close code");
            return;
        }
        reason = (const char *)payload + 2;
        reason_len = len - 2;
        if (cg__utf8_run(CG__UTF8_ACCEPT, payload + 2, reason_len) != CG__UTF8_ACCEPT) {
            cg__fail(c, CG_WS_CLOSE_INVALID_PAYLOAD, "a close reason that is not UTF-8");
            return;
        }
    }
    uint8_t frame[CG_WS_CONTROL_FRAME_BYTES_MAX];
    size_t frame_len = 0;
    uint16_t echo = code == CG_WS_CLOSE_NO_STATUS ? 0 : code; /* §5.5.1: echo the code */
    int rc = cg_ws_close_frame(echo, NULL, 0, frame, sizeof(frame), &frame_len);
    MG_ASSERT(rc == MG_OK);
    cg__msg_free(c);
    c->closed = 1;
    c->config->events.reply_ready(c->user, frame, frame_len);
    c->config->events.close_done(c->user, code, reason, reason_len, true);
}

/* Appends a fragment to the reassembly buffer, growing it to its next capacity. The header
 * check bounded msg_len + len by the message bound. */
static int cg__msg_append(cg_ws_conn *c, const uint8_t *p, size_t len)
{
    if (len == 0)
        return MG_OK;
    uint32_t new_len = c->msg_len + (uint32_t)len;
    uint32_t cap = cg__msg_capacity(c, new_len);
    if (c->msg == NULL || cap != cg__msg_capacity(c, c->msg_len)) {
        uint8_t *m = realloc(c->msg, cap);
        if (m == NULL)
            return MG_ENOMEM;
        c->msg = m;
    }
    memcpy(c->msg + c->msg_len, p, len);
    c->msg_len = new_len;
    return MG_OK;
}

/* A data frame with its unmasked payload. Returns MG_OK (the connection may have closed), or
 * MG_ENOMEM or message_done's error. */
static int cg__data(cg_ws_conn *c, const cg__frame *f, uint8_t *payload, size_t len)
{
    const cg_ws_events *ev = &c->config->events;
    if (f->opcode != CG_WS_OP_CONTINUATION && f->fin) { /* whole: deliver in place */
        if (f->opcode == CG_WS_OP_TEXT &&
            cg__utf8_run(CG__UTF8_ACCEPT, payload, len) != CG__UTF8_ACCEPT) {
            cg__fail(c, CG_WS_CLOSE_INVALID_PAYLOAD, "text that is not UTF-8");
            return MG_OK;
        }
        return ev->message_done(c->user, f->opcode, len > 0 ? payload : NULL, len);
    }
    if (f->opcode != CG_WS_OP_CONTINUATION) {
        MG_ASSERT(c->msg == NULL && c->msg_len == 0);
        c->msg_opcode = (uint8_t)f->opcode;
        c->utf8_state = CG__UTF8_ACCEPT;
    }
    if (c->msg_opcode == CG_WS_OP_TEXT) {
        c->utf8_state = cg__utf8_run(c->utf8_state, payload, len);
        if (c->utf8_state == CG__UTF8_REJECT) {
            cg__fail(c, CG_WS_CLOSE_INVALID_PAYLOAD, "text that is not UTF-8");
            return MG_OK;
        }
    }
    if (cg__msg_append(c, payload, len) != MG_OK) {
        cg__fail(c, CG_WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return MG_ENOMEM;
    }
    if (!f->fin)
        return MG_OK;
    if (c->msg_opcode == CG_WS_OP_TEXT && c->utf8_state != CG__UTF8_ACCEPT) {
        cg__fail(c, CG_WS_CLOSE_INVALID_PAYLOAD, "text that ends inside a character");
        return MG_OK;
    }
    int rc = ev->message_done(c->user, c->msg_opcode, c->msg_len > 0 ? c->msg : NULL, c->msg_len);
    cg__msg_free(c);
    return rc;
}

int cg_ws_feed(cg_ws_conn *c, uint8_t *p, size_t n, size_t *consumed)
{
    MG_ASSERT(p != NULL || n == 0);
    if (c->closed) {
        *consumed = n;
        return MG_ECLOSED;
    }
    if (n == 0) {
        *consumed = 0;
        return MG_OK;
    }
    size_t pos = 0;
    /* Every frame is at least 2 bytes, so n / 2 + 1 turns see every frame and the end. */
    for (size_t turn = 0; turn <= n / 2 && !c->closed; turn++) {
        cg__frame f = { 0 };
        int rc = cg__frame_header(c, p + pos, n - pos, &f);
        if (rc == MG_EAGAIN)
            break;
        if (rc == MG_EPROTO) {
            cg__fail(c, f.fail_code, f.fail_reason);
            break;
        }
        if (f.payload_len > (uint64_t)(n - pos - f.header_len))
            break; /* the payload is not all there: the caller keeps the frame */
        uint8_t *payload = p + pos + f.header_len;
        size_t len = (size_t)f.payload_len;
        cg__unmask(payload, len, payload - CG__MASK_BYTES);
        pos += f.header_len + len;
        switch (f.opcode) {
        case CG_WS_OP_PING: {
            uint8_t frame[CG_WS_CONTROL_FRAME_BYTES_MAX];
            size_t frame_len = 0;
            int pong_rc = cg_ws_pong_frame(payload, len, frame, sizeof(frame), &frame_len);
            MG_ASSERT(pong_rc == MG_OK);
            c->config->events.reply_ready(c->user, frame, frame_len);
            break;
        }
        case CG_WS_OP_PONG: /* an unsolicited pong needs no answer (§5.5.3) */
            break;
        case CG_WS_OP_CLOSE:
            cg__peer_close(c, payload, len);
            break;
        default:
            rc = cg__data(c, &f, payload, len);
            if (rc != MG_OK) {
                *consumed = c->closed ? n : pos;
                return rc;
            }
            break;
        }
    }
    *consumed = c->closed ? n : pos;
    return MG_OK;
}

int cg_ws_close(cg_ws_conn *c, uint16_t code, const char *reason, size_t reason_len, uint8_t *dst,
                size_t dst_capacity, size_t *written)
{
    if (c->closed)
        return MG_ECLOSED;
    MG_TRY(cg_ws_close_frame(code, reason, reason_len, dst, dst_capacity, written));
    cg__msg_free(c);
    c->closed = 1;
    return MG_OK;
}
