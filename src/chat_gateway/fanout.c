/*
 * The chat gateway's push port and fan-out (gateway.c has the design notes): Job workers' links
 * (proto/chat.proto), the rooms announced to them, and the frames a push becomes.
 *
 * A LINK speaks the push protocol: frames are read with the cg_push decoder and answered at once,
 * on this loop. Hello gets the rooms with members here (ChatRooms reset); a Push is fanned out
 * to the recipients' queues and acknowledged (PushAck) before the next frame is read, so a Job
 * that saw the ack knows every recipient's queue holds the messages. Ping gets Pong. A link
 * silent CG_PUSH_PING_IDLE_MS gets a Ping, and one silent CG_PUSH_DEAD_MS is closed; a protocol
 * error closes it too. Rooms crossing zero members are sent to every link that said Hello, once
 * per loop iteration (cg__rooms_flush, a uv_check).
 *
 * FRAMES. A push's messages become, per form a recipient needs, one mg_buf: the form is the
 * client's dialect and protover (GOIM: an op 9 batch for room pushes, the packets themselves
 * otherwise; Bilibili: packets back to back, or one op 5 packet whose body is their zlib (ver 2)
 * or brotli (ver 3) compression), whether it asked for positions (a position packet, op 20,
 * before each message), and its transport (WebSocket: a frame header in front; the server does
 * not mask, so every WebSocket recipient gets the same bytes). At most 2 x 4 x 2 frames are built
 * per push, each once, whatever the number of recipients.
 */
#include "chat_gateway/auth.h"
#include "chat_gateway/compress.h"
#include "chat_gateway/gateway_int.h"
#include "chat_gateway/packet.h"
#include "chat_gateway/push.h"
#include "chat_gateway/ws.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "proto/chat.pb-c.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- frames --------------------------------------------------------------------------------- */

enum { FORM_GOIM = 0, FORM_BILI = 1, FORM_BILI_ZLIB = 2, FORM_BILI_BROTLI = 3, FORM_COUNT = 4 };

typedef struct fan_ctx {
    const cg__msg *msgs;
    size_t count;
    bool room_batch;
    mg_buf *payload[FORM_COUNT * 2]; /* form * 2 + positions */
    mg_buf *frame[2 * FORM_COUNT * 2];
    bool failed[2 * FORM_COUNT * 2];
} fan_ctx;

static int form_of(const cg__conn *c)
{
    if (c->dialect != CG_DIALECT_BILIBILI)
        return FORM_GOIM;
    return c->protover == 2 ? FORM_BILI_ZLIB : c->protover == 3 ? FORM_BILI_BROTLI : FORM_BILI;
}

/* The inner packets: [position packet] message packet, for each message. */
static mg_buf *build_inner(const fan_ctx *x, uint16_t ver, bool positions)
{
    size_t total = 0;
    for (size_t i = 0; i < x->count; i++) {
        total += CG_PACKET_HEADER_BYTES + x->msgs[i].body_len;
        if (positions)
            total += CG_PACKET_HEADER_BYTES + CG_POSITION_TEXT_BYTES;
    }
    mg_buf *b = mg_buf_new(total);
    if (b == NULL)
        return NULL;
    uint8_t *p = mg_buf_data(b);
    size_t off = 0;
    for (size_t i = 0; i < x->count; i++) {
        const cg__msg *m = &x->msgs[i];
        size_t w = 0;
        if (positions && m->pos.ledger_id >= 0) {
            char text[CG_POSITION_TEXT_BYTES];
            size_t n = cg_position_format(&m->pos, text, sizeof(text));
            if (cg_packet_encode(CG_VER_JSON, CG_OP_POSITION, 0, text, n, p + off, total - off,
                                 &w) != MG_OK)
                goto fail;
            off += w;
        }
        if (cg_packet_encode(ver, m->op, 0, m->body, m->body_len, p + off, total - off, &w) !=
            MG_OK)
            goto fail;
        off += w;
    }
    mg_buf_set_len(b, off);
    return b;
fail:
    mg_buf_unref(b);
    return NULL;
}

static mg_buf *build_payload(const fan_ctx *x, int form, bool positions)
{
    mg_buf *inner = build_inner(x, form == FORM_GOIM ? CG_VER_INT : CG_VER_JSON, positions);
    if (inner == NULL)
        return NULL;
    mg_buf *out = NULL;
    switch (form) {
    case FORM_GOIM:
        if (!x->room_batch)
            return inner;
        if (cg_packet_encode_buf(CG_VER_INT, CG_OP_RAW, 0, mg_buf_data(inner), mg_buf_len(inner),
                                 &out) != MG_OK)
            out = NULL;
        break;
    case FORM_BILI:
        return inner;
    case FORM_BILI_ZLIB:
        if (cg_compress_batch(CG_VER_ZLIB, mg_buf_data(inner), mg_buf_len(inner), 0, &out) != MG_OK)
            out = NULL;
        break;
    default:
        if (cg_compress_batch(CG_VER_BROTLI, mg_buf_data(inner), mg_buf_len(inner), 0, &out) !=
            MG_OK)
            out = NULL;
        break;
    }
    mg_buf_unref(inner);
    return out;
}

static mg_buf *frame_for(fan_ctx *x, const cg__conn *c)
{
    int form = form_of(c);
    int pi = form * 2 + (c->positions ? 1 : 0);
    int fi = c->kind * FORM_COUNT * 2 + pi;
    if (x->frame[fi] != NULL || x->failed[fi])
        return x->frame[fi];
    if (x->payload[pi] == NULL) {
        x->payload[pi] = build_payload(x, form, c->positions);
        if (x->payload[pi] == NULL) {
            x->failed[fi] = true;
            MG_WARN_LIMITED("chat gateway: cannot build a frame (out of memory or over the bound)");
            return NULL;
        }
    }
    mg_buf *pl = x->payload[pi];
    if (c->kind == CG__TCP) {
        x->frame[fi] = mg_buf_ref(pl);
        return x->frame[fi];
    }
    size_t len = mg_buf_len(pl);
    uint8_t head[CG_WS_SERVER_HEADER_BYTES_MAX];
    size_t hdr = cg_ws_frame_header(CG_WS_OP_BINARY, len, head);
    mg_buf *f = mg_buf_new(hdr + len);
    if (f == NULL) {
        x->failed[fi] = true;
        return NULL;
    }
    memcpy(mg_buf_data(f), head, hdr);
    memcpy(mg_buf_data(f) + hdr, mg_buf_data(pl), len);
    mg_buf_set_len(f, hdr + len);
    x->frame[fi] = f;
    return f;
}

static void fan_release(fan_ctx *x)
{
    for (size_t i = 0; i < sizeof(x->payload) / sizeof(x->payload[0]); i++)
        if (x->payload[i] != NULL)
            mg_buf_unref(x->payload[i]);
    for (size_t i = 0; i < sizeof(x->frame) / sizeof(x->frame[0]); i++)
        if (x->frame[i] != NULL)
            mg_buf_unref(x->frame[i]);
}

static void fan_to(fan_ctx *x, cg__conn *c)
{
    mg_buf *f = frame_for(x, c);
    if (f == NULL)
        return;
    if (cg__conn_send(c, f, true))
        mg_counter_add(c->gw->m_delivered, x->count);
}

bool cg__deliver_to(cg__conn *c, const cg__msg *msgs, size_t count, bool room_batch)
{
    if (count == 0)
        return c->state != CG__CLOSING;
    fan_ctx x = { .msgs = msgs, .count = count, .room_batch = room_batch };
    fan_to(&x, c);
    fan_release(&x);
    return c->state != CG__CLOSING;
}

static bool accepts_op(const cg__conn *c, uint32_t op)
{
    if (c->accept_all)
        return true;
    for (uint32_t i = 0; i < c->accept_count; i++)
        if (c->accepts[i] == op)
            return true;
    return false;
}

/* ---- pushes --------------------------------------------------------------------------------- */

static bool pos_after(const cg_position *a, const cg_position *b)
{
    return cg_position_cmp(a, b) > 0;
}

static cg__stream *stream_get(cg_gateway *gw, const char *topic)
{
    for (uint32_t i = 0; i < gw->stream_count; i++)
        if (strcmp(gw->streams[i].topic, topic) == 0)
            return &gw->streams[i];
    if (strlen(topic) >= CG_CHAT_TOPIC_NAME_BYTES_MAX || gw->stream_count >= CG_CHAT_TOPICS_MAX)
        return NULL;
    cg__stream *s = mg_realloc(gw->streams, (gw->stream_count + 1) * sizeof(*s));
    if (s == NULL)
        return NULL;
    gw->streams = s;
    cg__stream *n = &s[gw->stream_count++];
    memset(n, 0, sizeof(*n));
    snprintf(n->topic, sizeof(n->topic), "%s", topic);
    n->last = (cg_position){ -1, -1, -1 };
    return n;
}

/* Drops messages not after *last (a redelivery); advances *last. Returns the kept count. */
static size_t dedupe(cg_gateway *gw, cg__msg *msgs, size_t count, cg_position *last, bool *has_last)
{
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        bool known = msgs[i].pos.ledger_id >= 0;
        if (known && *has_last && !pos_after(&msgs[i].pos, last)) {
            mg_counter_inc(gw->m_duplicates);
            continue;
        }
        if (known) {
            *last = msgs[i].pos;
            *has_last = true;
        }
        msgs[kept++] = msgs[i];
    }
    return kept;
}

static void push_room(cg_gateway *gw, const char *name, cg__msg *msgs, size_t count)
{
    cg__room *r = cg__room_find(gw, name);
    if (r == NULL || r->count == 0)
        return;
    count = dedupe(gw, msgs, count, &r->last, &r->has_last);
    if (count == 0)
        return;
    fan_ctx x = { .msgs = msgs, .count = count, .room_batch = true };
    /* A member closed while sending (slow consumer, write error) leaves the list: walk with the
     * next pointer taken first. Members are bounded by the connection count. */
    mg_link *l = r->members.next;
    for (uint32_t i = 0; l != &r->members && i < CG_CONNECTIONS_MAX; i++) {
        mg_link *next = l->next;
        cg__conn *c = MG_CONTAINER_OF(l, cg__conn, room_link);
        if (c->state == CG__RESUMING) {
            cg__resume_hold(c, msgs, count);
        } else if (c->has_floor) {
            /* Just resumed: the replay may have run ahead of the Job, so skip the prefix it sent
             * (positions only grow in a room); the first message after it ends the floor. */
            size_t k = 0;
            while (k < count && msgs[k].pos.ledger_id >= 0 && !pos_after(&msgs[k].pos, &c->floor))
                k++;
            if (k < count) {
                c->has_floor = false;
                if (k == 0) {
                    fan_to(&x, c);
                } else {
                    fan_ctx y = { .msgs = msgs + k, .count = count - k, .room_batch = true };
                    fan_to(&y, c);
                    fan_release(&y);
                }
            }
        } else {
            fan_to(&x, c);
        }
        l = next;
    }
    fan_release(&x);
}

/* Keys, mids, all: each message on its own (its op decides who takes it). */
static void push_each(cg_gateway *gw, const Magnetar__Chat__ChatPush *p, cg__msg *msgs,
                      size_t count)
{
    cg__stream *s = stream_get(gw, p->topic ? p->topic : "");
    if (s != NULL) {
        bool has = s->last.ledger_id >= 0;
        count = dedupe(gw, msgs, count, &s->last, &has);
    }
    for (size_t m = 0; m < count; m++) {
        fan_ctx x = { .msgs = &msgs[m], .count = 1, .room_batch = false };
        uint32_t op = msgs[m].op;
        if (p->kind == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_KEYS) {
            for (size_t k = 0; k < p->n_keys; k++) {
                cg__conn *c = cg__key_find(gw, p->keys[k]);
                if (c != NULL && c->state == CG__LIVE && accepts_op(c, op))
                    fan_to(&x, c);
            }
        } else {
            bool all = p->kind == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ALL;
            for (uint32_t b = 0; b < gw->bucket_count; b++) {
                mg_link *l = gw->buckets[b].conns.next;
                for (uint32_t i = 0; l != &gw->buckets[b].conns && i < CG_CONNECTIONS_MAX; i++) {
                    mg_link *next = l->next;
                    cg__conn *c = MG_CONTAINER_OF(l, cg__conn, bucket_link);
                    bool to = all;
                    for (size_t j = 0; !to && j < p->n_mids; j++)
                        to = p->mids[j] == c->mid;
                    if (to && c->state == CG__LIVE && accepts_op(c, op))
                        fan_to(&x, c);
                    l = next;
                }
            }
        }
        fan_release(&x);
    }
}

static void msg_of(const Magnetar__Chat__ChatMessage *m, cg__msg *out)
{
    out->body = m->body.data;
    out->body_len = m->body.len;
    out->op = m->op;
    if (m->position != NULL)
        out->pos = (cg_position){ m->position->ledger_id, m->position->entry_id,
                                  m->position->batch_index };
    else
        out->pos = (cg_position){ -1, -1, -1 };
}

static void send_ack(cg__link *k, uint64_t push_id, int status)
{
    Magnetar__Chat__ChatPushAck ack = MAGNETAR__CHAT__CHAT_PUSH_ACK__INIT;
    ack.push_id = push_id;
    ack.has_status = status != MG_OK;
    ack.status = status;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK;
    f.ack = &ack;
    cg__link_send(k, &f);
}

/* A keys, mids or all push: fanned out, then acknowledged. */
static void handle_push(cg__link *k, const Magnetar__Chat__ChatPush *p)
{
    cg_gateway *gw = k->gw;
    mg_counter_inc(gw->m_pushes);
    size_t n = p->n_messages;
    cg__msg stack[64];
    cg__msg *msgs = n <= 64 ? stack : mg_malloc(n * sizeof(*msgs));
    int status = MG_OK;
    if (msgs == NULL) {
        status = MG_ENOMEM;
    } else {
        for (size_t i = 0; i < n; i++)
            msg_of(p->messages[i], &msgs[i]);
        push_each(gw, p, msgs, n);
        if (msgs != stack)
            mg_free(msgs);
    }
    send_ack(k, p->push_id, status);
}

static bool is_room_push(const Magnetar__Chat__ChatFrame *f)
{
    return f->kind_case == MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH &&
           f->push->kind == MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM && f->push->room != NULL;
}

/* Room pushes of one read, room by room: the pushes for frames[i]'s room among frames[i, n) not
 * yet fanned out (done[j] false) are fanned out as one batch, in their order, up to
 * CG_FANOUT_MERGE_MESSAGES_MAX messages (the rest at the next call). A gateway keeping up reads
 * one push at a time and this is that push; one that fell behind finds several of a busy room
 * waiting, and writes them to each member at once: the cost of a fan-out is per write, not per
 * message. Returns the status for the acks. */
static int push_room_merged(cg__link *k, Magnetar__Chat__ChatFrame **frames, size_t n, size_t i,
                            bool *done)
{
    cg_gateway *gw = k->gw;
    const char *room = frames[i]->push->room;
    cg__msg *msgs = gw->merge_msgs;
    size_t count = 0;
    for (size_t j = i; j < n; j++) {
        if (done[j] || !is_room_push(frames[j]) || strcmp(frames[j]->push->room, room) != 0)
            continue;
        const Magnetar__Chat__ChatPush *p = frames[j]->push;
        if (j > i && count + p->n_messages > CG_FANOUT_MERGE_MESSAGES_MAX)
            break;
        if (p->n_messages > CG_FANOUT_MERGE_MESSAGES_MAX - count) {
            /* One push larger than the merge bound (a Job's larger merge setting): alone. */
            cg__msg *own = mg_malloc(p->n_messages * sizeof(*own));
            if (own == NULL)
                return MG_ENOMEM;
            for (size_t m = 0; m < p->n_messages; m++)
                msg_of(p->messages[m], &own[m]);
            push_room(gw, room, own, p->n_messages);
            mg_free(own);
            mg_counter_inc(gw->m_pushes);
            done[j] = true;
            return MG_OK;
        }
        for (size_t m = 0; m < p->n_messages; m++)
            msg_of(p->messages[m], &msgs[count++]);
        mg_counter_inc(gw->m_pushes);
        done[j] = true;
    }
    if (count > 0)
        push_room(gw, room, msgs, count);
    return MG_OK;
}

/* ---- links ---------------------------------------------------------------------------------- */

static void link_unref(cg__link *k)
{
    MG_ASSERT(k->refs > 0);
    if (--k->refs > 0)
        return;
    cg_gateway *gw = k->gw;
    cg_push_decoder_free(&k->dec);
    mg_free(k);
    gw->link_handles--;
    cg__gateway_maybe_closed(gw);
}

static void link_closed(uv_handle_t *h)
{
    link_unref(h->data);
}

static void link_close(cg__link *k, const char *why)
{
    if (k->closing)
        return;
    k->closing = true;
    cg_gateway *gw = k->gw;
    mg_list_remove(&k->link);
    gw->link_count--;
    mg_gauge_set(gw->m_links, (double)gw->link_count);
    if (why != NULL)
        MG_WARN_LIMITED("chat gateway: closing the link of Job %s (%s): %s",
                        k->name[0] ? k->name : "?", k->peer, why);
    mg_outq_discard(&k->out);
    uv_close((uv_handle_t *)&k->tcp, link_closed);
}

static void link_written(mg_outq *q, int status)
{
    cg__link *k = q->arg;
    if (!k->closing) {
        uint32_t before = mg_outq_writes_inflight(q);
        if (status != MG_OK || mg_outq_flush(q, (uv_stream_t *)&k->tcp) != MG_OK)
            link_close(k, "write failed");
        else
            k->refs += mg_outq_writes_inflight(q) - before; /* each write holds the link */
    }
    link_unref(k);
}

void cg__link_send(cg__link *k, const Magnetar__Chat__ChatFrame *f)
{
    if (k->closing)
        return;
    mg_buf *b = NULL;
    if (cg_push_frame_encode(f, &b) != MG_OK) {
        link_close(k, "cannot encode a frame");
        return;
    }
    int rc = mg_outq_push_buf(&k->out, b);
    mg_buf_unref(b);
    if (rc != MG_OK) {
        link_close(k, "out of memory");
        return;
    }
    uint32_t before = mg_outq_writes_inflight(&k->out);
    if (mg_outq_flush(&k->out, (uv_stream_t *)&k->tcp) != MG_OK) {
        link_close(k, "write failed");
        return;
    }
    k->refs += mg_outq_writes_inflight(&k->out) - before;
    k->last_tx_ms = (int64_t)uv_now(k->gw->loop);
}

/* Sends the rooms with members here to k, as a reset. */
static void link_send_reset(cg__link *k)
{
    cg_gateway *gw = k->gw;
    size_t n = 0;
    char **names = gw->room_count ? mg_malloc(gw->room_count * sizeof(char *)) : NULL;
    if (gw->room_count && names == NULL) {
        link_close(k, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < gw->room_cap; i++)
        for (cg__room *r = gw->room_table[i]; r != NULL; r = r->hnext)
            if (r->count > 0 && n < gw->room_count)
                names[n++] = r->name;
    Magnetar__Chat__ChatRooms rooms = MAGNETAR__CHAT__CHAT_ROOMS__INIT;
    rooms.has_reset = true;
    rooms.reset = true;
    rooms.n_joined = n;
    rooms.joined = names;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS;
    f.rooms = &rooms;
    cg__link_send(k, &f);
    mg_free(names);
}

static void link_frame(cg__link *k, Magnetar__Chat__ChatFrame *f)
{
    switch (f->kind_case) {
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO:
        snprintf(k->name, sizeof(k->name), "%s", f->hello->id ? f->hello->id : "?");
        if (!k->hello)
            MG_INFO("chat gateway: Job %s linked from %s", k->name, k->peer);
        k->hello = true;
        link_send_reset(k);
        break;
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH:
        if (!k->hello) {
            link_close(k, "a push before hello");
            return;
        }
        handle_push(k, f->push); /* room pushes are handled in link_frames */
        break;
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_PING: {
        Magnetar__Chat__ChatPing pong = MAGNETAR__CHAT__CHAT_PING__INIT;
        pong.has_nonce = f->ping->has_nonce;
        pong.nonce = f->ping->nonce;
        Magnetar__Chat__ChatFrame r = MAGNETAR__CHAT__CHAT_FRAME__INIT;
        r.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG;
        r.pong = &pong;
        cg__link_send(k, &r);
        break;
    }
    case MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG:
    case MAGNETAR__CHAT__CHAT_FRAME__KIND__NOT_SET:
        /* An empty frame means nothing (push.h), as does a newer Job's kind unknown here. */
        break;
    default:
        link_close(k, "a frame a Job does not send");
        break;
    }
}

/* The frames of one read, in order; room pushes room by room (push_room_merged), each push
 * acknowledged in its place in the order. */
static void link_frames(cg__link *k, Magnetar__Chat__ChatFrame **frames, size_t n)
{
    bool done[CG_LINK_READ_FRAMES_MAX] = { false };
    int status[CG_LINK_READ_FRAMES_MAX];
    MG_ASSERT(n <= CG_LINK_READ_FRAMES_MAX);
    for (size_t i = 0; i < n && !k->closing; i++) {
        if (!is_room_push(frames[i])) {
            link_frame(k, frames[i]);
            continue;
        }
        if (!k->hello) {
            link_close(k, "a push before hello");
            return;
        }
        if (!done[i]) {
            size_t first = i;
            int rc = push_room_merged(k, frames, n, first, done);
            for (size_t j = first; j < n; j++)
                if (done[j] && is_room_push(frames[j]) &&
                    strcmp(frames[j]->push->room, frames[first]->push->room) == 0)
                    status[j] = rc;
            if (!done[i]) { /* out of memory before it */
                done[i] = true;
                status[i] = rc;
            }
        }
        send_ack(k, frames[i]->push->push_id, status[i]);
    }
}

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    cg__link *k = h->data;
    *buf = uv_buf_init((char *)k->gw->rbuf, CG_READ_BUFFER_BYTES);
}

static void link_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cg__link *k = s->data;
    if (nread == 0 || k->closing)
        return;
    if (nread < 0) {
        link_close(k, nread == UV_EOF ? NULL : uv_strerror((int)nread));
        return;
    }
    k->last_rx_ms = (int64_t)uv_now(k->gw->loop);
    k->refs++;
    cg_push_decoder_feed(&k->dec, (const uint8_t *)buf->base, (size_t)nread);
    Magnetar__Chat__ChatFrame *frames[CG_LINK_READ_FRAMES_MAX];
    size_t n = 0;
    for (;;) {
        Magnetar__Chat__ChatFrame *f = NULL;
        int rc = cg_push_decoder_next(&k->dec, &f);
        if (rc == MG_OK)
            frames[n++] = f;
        if (n > 0 && (rc != MG_OK || n == CG_LINK_READ_FRAMES_MAX)) {
            if (!k->closing)
                link_frames(k, frames, n);
            for (size_t i = 0; i < n; i++)
                magnetar__chat__chat_frame__free_unpacked(frames[i], NULL);
            n = 0;
            if (k->closing)
                break;
        }
        if (rc == MG_EAGAIN)
            break;
        if (rc != MG_OK) {
            link_close(k, rc == MG_ELIMIT ? "a frame over the bound" : "a malformed frame");
            break;
        }
    }
    link_unref(k);
}

void cg__on_link(void *arg, int fd, const struct sockaddr *addr, socklen_t addr_len)
{
    (void)addr_len;
    cg_gateway *gw = arg;
    if (gw->closing || gw->link_count >= CG_PUSH_LINKS_MAX) {
        close(fd);
        MG_WARN_LIMITED("chat gateway: %u Job links open, the limit: refusing another",
                        (unsigned)gw->link_count);
        return;
    }
    cg__link *k = mg_calloc(1, sizeof(*k));
    if (k == NULL) {
        close(fd);
        return;
    }
    k->gw = gw;
    k->refs = 1;
    cg_push_decoder_init(&k->dec);
    mg_outq_init(&k->out, link_written, k);
    uv_tcp_init(gw->loop, &k->tcp);
    k->tcp.data = k;
    gw->link_handles++;
    mg_list_push(&gw->links, &k->link);
    gw->link_count++;
    mg_gauge_set(gw->m_links, (double)gw->link_count);
    k->last_rx_ms = k->last_tx_ms = (int64_t)uv_now(gw->loop);
    mg_sockaddr_format(addr, k->peer, sizeof(k->peer));
    if (uv_tcp_open(&k->tcp, fd) != 0) {
        close(fd);
        link_close(k, "cannot use the socket");
        return;
    }
    uv_tcp_nodelay(&k->tcp, 1);
    if (uv_read_start((uv_stream_t *)&k->tcp, link_alloc, link_read) != 0)
        link_close(k, "cannot read the socket");
}

void cg__links_sweep(cg_gateway *gw, int64_t now_ms)
{
    mg_link *l = gw->links.next;
    for (uint32_t i = 0; l != &gw->links && i < CG_PUSH_LINKS_MAX; i++) {
        mg_link *next = l->next;
        cg__link *k = MG_CONTAINER_OF(l, cg__link, link);
        if (now_ms - k->last_rx_ms >= (int64_t)CG_PUSH_DEAD_MS) {
            link_close(k, "silent too long");
        } else if (now_ms - k->last_tx_ms >= (int64_t)CG_PUSH_PING_IDLE_MS) {
            Magnetar__Chat__ChatPing ping = MAGNETAR__CHAT__CHAT_PING__INIT;
            Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
            f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PING;
            f.ping = &ping;
            cg__link_send(k, &f);
        }
        l = next;
    }
}

void cg__links_close_all(cg_gateway *gw)
{
    for (uint32_t i = 0; i < CG_PUSH_LINKS_MAX && !mg_list_empty(&gw->links); i++)
        link_close(MG_CONTAINER_OF(gw->links.next, cg__link, link), NULL);
}

/* ---- rooms announced to Jobs ----------------------------------------------------------------- */

void cg__rooms_flush(uv_check_t *check)
{
    cg_gateway *gw = check->data;
    if (mg_list_empty(&gw->dirty_rooms))
        return;
    size_t cap = 0;
    for (mg_link *l = gw->dirty_rooms.next; l != &gw->dirty_rooms && cap < gw->room_count;
         l = l->next)
        cap++;
    char **joined = mg_malloc((cap + 1) * sizeof(char *));
    char **left = mg_malloc((cap + 1) * sizeof(char *));
    size_t nj = 0, nl = 0;
    /* Rooms left empty are freed after the frame went out: keep them until then. */
    cg__room **empty = mg_malloc((cap + 1) * sizeof(cg__room *));
    size_t ne = 0;
    if (joined == NULL || left == NULL || empty == NULL) {
        mg_free(joined);
        mg_free(left);
        mg_free(empty);
        return; /* tried again next iteration */
    }
    for (size_t i = 0; i < cap && !mg_list_empty(&gw->dirty_rooms); i++) {
        cg__room *r = MG_CONTAINER_OF(gw->dirty_rooms.next, cg__room, dirty_link);
        mg_list_remove(&r->dirty_link);
        bool want = r->count > 0;
        if (want && !r->announced)
            joined[nj++] = r->name;
        else if (!want && r->announced)
            left[nl++] = r->name;
        r->announced = want;
        if (!want)
            empty[ne++] = r;
    }
    if ((nj > 0 || nl > 0) && !mg_list_empty(&gw->links)) {
        Magnetar__Chat__ChatRooms rooms = MAGNETAR__CHAT__CHAT_ROOMS__INIT;
        rooms.n_joined = nj;
        rooms.joined = joined;
        rooms.n_left = nl;
        rooms.left = left;
        Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
        f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS;
        f.rooms = &rooms;
        mg_link *l = gw->links.next;
        for (uint32_t i = 0; l != &gw->links && i < CG_PUSH_LINKS_MAX; i++) {
            mg_link *next = l->next;
            cg__link *k = MG_CONTAINER_OF(l, cg__link, link);
            if (k->hello)
                cg__link_send(k, &f);
            l = next;
        }
    }
    for (size_t i = 0; i < ne; i++)
        cg__room_free(gw, empty[i]);
    mg_free(joined);
    mg_free(left);
    mg_free(empty);
}
