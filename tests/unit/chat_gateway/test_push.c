/*
 * Tests of the push protocol's framing (src/chat_gateway/push.c) and of the chat topic naming
 * rule (topics.c): every frame kind encoded and decoded back, a length prefix checked against
 * bytes written by hand, a stream fed byte by byte and several frames in one feed, a length over
 * the bound refused as soon as its four bytes arrive, garbage refused with a sticky error; the
 * FNV-1a test vectors published with the hash, and chat topic names.
 */
#include "chat_gateway/push.h"

#include "chat_gateway/limits.h"
#include "chat_gateway/topics.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

TestSuite(push, .timeout = 10);

/* --- frames of every kind -------------------------------------------------------------------- */

#define KINDS 6

/* Builds the frame of kind k (0..KINDS-1) into f, with the sub-messages in the caller's
 * storage (every pointer stays valid while st lives). */
typedef struct frame_store {
    Magnetar__Chat__ChatFrame f;
    Magnetar__Chat__ChatHello hello;
    Magnetar__Chat__ChatPush push;
    Magnetar__Chat__ChatMessage msg[2];
    Magnetar__Chat__ChatMessage *msgp[2];
    Magnetar__Chat__ChatPosition pos[2];
    Magnetar__Chat__ChatPushAck ack;
    Magnetar__Chat__ChatRooms rooms;
    char *joined[2];
    char *left[1];
    Magnetar__Chat__ChatPing ping;
    char *keys[2];
    int64_t mids[3];
} frame_store;

static void build(frame_store *st, int k)
{
    memset(st, 0, sizeof(*st));
    magnetar__chat__chat_frame__init(&st->f);
    switch (k) {
    case 0:
        magnetar__chat__chat_hello__init(&st->hello);
        st->hello.id = "job-1";
        st->f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO;
        st->f.hello = &st->hello;
        break;
    case 1:
        magnetar__chat__chat_push__init(&st->push);
        st->push.push_id = 77;
        st->push.kind = MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM;
        st->push.room = "live://1000";
        st->push.topic = "persistent://public/default/chat-1";
        for (int i = 0; i < 2; i++) {
            magnetar__chat__chat_message__init(&st->msg[i]);
            magnetar__chat__chat_position__init(&st->pos[i]);
            st->pos[i].ledger_id = 5;
            st->pos[i].entry_id = 10 + i;
            st->pos[i].has_batch_index = 1;
            st->pos[i].batch_index = i;
            st->msg[i].body.data = (uint8_t *)(i == 0 ? "hello" : "world!");
            st->msg[i].body.len = i == 0 ? 5 : 6;
            st->msg[i].position = &st->pos[i];
            st->msg[i].has_publish_time_ms = 1;
            st->msg[i].publish_time_ms = 1700000000000 + i;
            st->msgp[i] = &st->msg[i];
        }
        st->push.n_messages = 2;
        st->push.messages = st->msgp;
        st->f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH;
        st->f.push = &st->push;
        break;
    case 2:
        magnetar__chat__chat_push_ack__init(&st->ack);
        st->ack.push_id = 77;
        st->ack.has_status = 1;
        st->ack.status = MG_ELIMIT;
        st->f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ACK;
        st->f.ack = &st->ack;
        break;
    case 3:
        magnetar__chat__chat_rooms__init(&st->rooms);
        st->rooms.has_reset = 1;
        st->rooms.reset = 1;
        st->joined[0] = "live://1000";
        st->joined[1] = "live://1001";
        st->left[0] = "live://7";
        st->rooms.n_joined = 2;
        st->rooms.joined = st->joined;
        st->rooms.n_left = 1;
        st->rooms.left = st->left;
        st->f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_ROOMS;
        st->f.rooms = &st->rooms;
        break;
    case 4:
    case 5:
        magnetar__chat__chat_ping__init(&st->ping);
        st->ping.has_nonce = 1;
        st->ping.nonce = 0x1122334455667788ull;
        st->f.kind_case =
            k == 4 ? MAGNETAR__CHAT__CHAT_FRAME__KIND_PING : MAGNETAR__CHAT__CHAT_FRAME__KIND_PONG;
        if (k == 4)
            st->f.ping = &st->ping;
        else
            st->f.pong = &st->ping;
        break;
    default:
        cr_assert_fail("no kind %d", k);
    }
}

/* Checks that the decoded frame g is the frame of kind k. */
static void check(const Magnetar__Chat__ChatFrame *g, int k)
{
    frame_store st;
    build(&st, k);
    cr_assert_eq(g->kind_case, st.f.kind_case, "kind %d", k);
    switch (k) {
    case 0:
        cr_assert_str_eq(g->hello->id, "job-1");
        cr_assert_eq(g->hello->version, 1); /* the proto default */
        break;
    case 1:
        cr_assert_eq(g->push->push_id, 77);
        cr_assert_eq(g->push->kind, MAGNETAR__CHAT__CHAT_PUSH_KIND__CHAT_PUSH_ROOM);
        cr_assert_str_eq(g->push->room, "live://1000");
        cr_assert_str_eq(g->push->topic, "persistent://public/default/chat-1");
        cr_assert_eq(g->push->n_messages, 2);
        for (int i = 0; i < 2; i++) {
            const Magnetar__Chat__ChatMessage *m = g->push->messages[i];
            cr_assert_eq(m->body.len, st.msg[i].body.len);
            cr_assert_arr_eq(m->body.data, st.msg[i].body.data, m->body.len);
            cr_assert_eq(m->op, 5); /* the proto default */
            cr_assert_eq(m->position->ledger_id, 5);
            cr_assert_eq(m->position->entry_id, 10 + i);
            cr_assert_eq(m->position->batch_index, i);
            cr_assert_eq(m->publish_time_ms, 1700000000000 + i);
        }
        break;
    case 2:
        cr_assert_eq(g->ack->push_id, 77);
        cr_assert_eq(g->ack->status, MG_ELIMIT);
        break;
    case 3:
        cr_assert(g->rooms->reset);
        cr_assert_eq(g->rooms->n_joined, 2);
        cr_assert_str_eq(g->rooms->joined[1], "live://1001");
        cr_assert_eq(g->rooms->n_left, 1);
        cr_assert_str_eq(g->rooms->left[0], "live://7");
        break;
    case 4:
        cr_assert_eq(g->ping->nonce, 0x1122334455667788ull);
        break;
    case 5:
        cr_assert_eq(g->pong->nonce, 0x1122334455667788ull);
        break;
    }
}

static mg_buf *encode_kind(int k)
{
    frame_store st;
    build(&st, k);
    mg_buf *b = NULL;
    cr_assert_eq(cg_push_frame_encode(&st.f, &b), MG_OK, "kind %d", k);
    cr_assert_eq(mg_buf_len(b), cg_push_frame_encoded_len(&st.f));
    return b;
}

Test(push, round_trip_every_kind)
{
    for (int k = 0; k < KINDS; k++) {
        mg_buf *b = encode_kind(k);
        const uint8_t *p = mg_buf_data(b);
        /* The prefix is the big-endian length of the rest. */
        uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        cr_assert_eq((size_t)len + 4, mg_buf_len(b));
        cg_push_decoder d;
        cg_push_decoder_init(&d);
        cg_push_decoder_feed(&d, p, mg_buf_len(b));
        Magnetar__Chat__ChatFrame *g = NULL;
        cr_assert_eq(cg_push_decoder_next(&d, &g), MG_OK);
        check(g, k);
        magnetar__chat__chat_frame__free_unpacked(g, NULL);
        cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EAGAIN);
        cr_assert_null(g);
        cr_assert_eq(cg_push_decoder_buffered(&d), 0);
        cg_push_decoder_free(&d);
        mg_buf_unref(b);
    }
}

Test(push, hello_bytes_by_hand)
{
    /* ChatFrame{hello = ChatHello{id = "j"}}: field 1, length-delimited (0x0a), 3 bytes holding
     * field 1 of ChatHello (0x0a), 1 byte, 'j'. */
    static const uint8_t want[] = { 0, 0, 0, 5, 0x0a, 0x03, 0x0a, 0x01, 'j' };
    Magnetar__Chat__ChatHello h = MAGNETAR__CHAT__CHAT_HELLO__INIT;
    h.id = "j";
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_HELLO;
    f.hello = &h;
    mg_buf *b = NULL;
    cr_assert_eq(cg_push_frame_encode(&f, &b), MG_OK);
    cr_assert_eq(mg_buf_len(b), sizeof(want));
    cr_assert_arr_eq(mg_buf_data(b), want, sizeof(want));
    mg_buf_unref(b);
}

/* Every kind back to back in one stream. */
static uint8_t *stream_of_all(size_t *len)
{
    uint8_t *s = NULL;
    *len = 0;
    for (int k = 0; k < KINDS; k++) {
        mg_buf *b = encode_kind(k);
        s = realloc(s, *len + mg_buf_len(b));
        cr_assert_not_null(s);
        memcpy(s + *len, mg_buf_data(b), mg_buf_len(b));
        *len += mg_buf_len(b);
        mg_buf_unref(b);
    }
    return s;
}

Test(push, byte_by_byte)
{
    size_t len = 0;
    uint8_t *s = stream_of_all(&len);
    cg_push_decoder d;
    cg_push_decoder_init(&d);
    int got = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t one = s[i]; /* a fresh buffer per read, as a socket gives */
        cg_push_decoder_feed(&d, &one, 1);
        Magnetar__Chat__ChatFrame *g = NULL;
        int rc = cg_push_decoder_next(&d, &g);
        if (rc == MG_OK) {
            check(g, got++);
            magnetar__chat__chat_frame__free_unpacked(g, NULL);
            cr_assert_eq(cg_push_decoder_buffered(&d), 0, "nothing held between frames");
            rc = cg_push_decoder_next(&d, &g);
        } else {
            cr_assert_gt(cg_push_decoder_buffered(&d), 0);
        }
        cr_assert_eq(rc, MG_EAGAIN);
    }
    cr_assert_eq(got, KINDS);
    cg_push_decoder_free(&d);
    free(s);
}

Test(push, several_in_one_feed_and_every_split)
{
    size_t len = 0;
    uint8_t *s = stream_of_all(&len);
    for (size_t cut = 0; cut <= len; cut++) {
        cg_push_decoder d;
        cg_push_decoder_init(&d);
        int got = 0;
        size_t pieces[2][2] = { { 0, cut }, { cut, len } };
        for (int p = 0; p < 2; p++) {
            cg_push_decoder_feed(&d, s + pieces[p][0], pieces[p][1] - pieces[p][0]);
            Magnetar__Chat__ChatFrame *g = NULL;
            int rc;
            for (int guard = 0; guard <= KINDS && (rc = cg_push_decoder_next(&d, &g)) == MG_OK;
                 guard++) {
                check(g, got++);
                magnetar__chat__chat_frame__free_unpacked(g, NULL);
            }
            cr_assert_eq(rc, MG_EAGAIN, "cut %zu", cut);
        }
        cr_assert_eq(got, KINDS, "cut %zu", cut);
        cr_assert_eq(cg_push_decoder_buffered(&d), 0);
        cg_push_decoder_free(&d);
    }
    free(s);
}

Test(push, length_over_bound_refused_at_once)
{
    uint32_t over = CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_LENGTH_BYTES + 1;
    uint8_t p[4] = { (uint8_t)(over >> 24), (uint8_t)(over >> 16), (uint8_t)(over >> 8),
                     (uint8_t)over };
    /* Arriving in two reads: refused once the fourth byte is there, nothing allocated. */
    cg_push_decoder d;
    cg_push_decoder_init(&d);
    Magnetar__Chat__ChatFrame *g = NULL;
    cg_push_decoder_feed(&d, p, 2);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EAGAIN);
    cg_push_decoder_feed(&d, p + 2, 2);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_ELIMIT);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_ELIMIT, "sticky");
    cg_push_decoder_free(&d);
    /* In one read. */
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, p, 4);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_ELIMIT);
    cg_push_decoder_free(&d);
    /* The largest length allowed is only waited for. */
    uint32_t max = CG_PUSH_FRAME_BYTES_MAX - CG_PUSH_LENGTH_BYTES;
    uint8_t q[4] = { (uint8_t)(max >> 24), (uint8_t)(max >> 16), (uint8_t)(max >> 8),
                     (uint8_t)max };
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, q, 4);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EAGAIN);
    cg_push_decoder_free(&d);
}

Test(push, encode_over_bound_refused)
{
    size_t big = CG_PUSH_FRAME_BYTES_MAX; /* a body alone as long as the bound */
    uint8_t *body = calloc(1, big);
    cr_assert_not_null(body);
    Magnetar__Chat__ChatMessage m = MAGNETAR__CHAT__CHAT_MESSAGE__INIT;
    m.body.data = body;
    m.body.len = big;
    Magnetar__Chat__ChatMessage *mp = &m;
    Magnetar__Chat__ChatPush push = MAGNETAR__CHAT__CHAT_PUSH__INIT;
    push.topic = "t";
    push.n_messages = 1;
    push.messages = &mp;
    Magnetar__Chat__ChatFrame f = MAGNETAR__CHAT__CHAT_FRAME__INIT;
    f.kind_case = MAGNETAR__CHAT__CHAT_FRAME__KIND_PUSH;
    f.push = &push;
    mg_buf *b = (mg_buf *)&f; /* must be reset to NULL */
    cr_assert_eq(cg_push_frame_encode(&f, &b), MG_ELIMIT);
    cr_assert_null(b);
    cr_assert_gt(cg_push_frame_encoded_len(&f), CG_PUSH_FRAME_BYTES_MAX);
    cr_assert_eq(cg_push_frame_encode(NULL, &b), MG_EINVAL);
    free(body);
}

Test(push, garbage_refused_sticky)
{
    /* A length of 3, then bytes that are no protobuf message (field 0 is invalid). */
    static const uint8_t bad[] = { 0, 0, 0, 3, 0x00, 0xff, 0xff };
    cg_push_decoder d;
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, bad, sizeof(bad));
    Magnetar__Chat__ChatFrame *g = NULL;
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EPROTO);
    cr_assert_null(g);
    mg_buf *ok = encode_kind(0);
    cg_push_decoder_feed(&d, mg_buf_data(ok), mg_buf_len(ok));
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EPROTO, "no frame after an error");
    cg_push_decoder_free(&d);
    /* The same bytes split, so they are completed in the decoder's own buffer. */
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, bad, 5);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EAGAIN);
    cg_push_decoder_feed(&d, bad + 5, sizeof(bad) - 5);
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EPROTO);
    cg_push_decoder_free(&d);
    /* A Push missing its required fields (field 2 of ChatFrame, empty). */
    static const uint8_t no_required[] = { 0, 0, 0, 2, 0x12, 0x00 };
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, no_required, sizeof(no_required));
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_EPROTO);
    cg_push_decoder_free(&d);
    mg_buf_unref(ok);
}

Test(push, empty_frame_is_valid)
{
    static const uint8_t empty[] = { 0, 0, 0, 0 };
    cg_push_decoder d;
    cg_push_decoder_init(&d);
    cg_push_decoder_feed(&d, empty, sizeof(empty));
    Magnetar__Chat__ChatFrame *g = NULL;
    cr_assert_eq(cg_push_decoder_next(&d, &g), MG_OK);
    cr_assert_eq(g->kind_case, MAGNETAR__CHAT__CHAT_FRAME__KIND__NOT_SET);
    magnetar__chat__chat_frame__free_unpacked(g, NULL);
    cg_push_decoder_free(&d);
}

/* --- chat topics ----------------------------------------------------------------------------- */

Test(push, fnv1a32_vectors)
{
    cr_assert_eq(cg_fnv1a32("", 0), 0x811c9dc5u);
    cr_assert_eq(cg_fnv1a32(NULL, 0), 0x811c9dc5u);
    cr_assert_eq(cg_fnv1a32("a", 1), 0xe40c292cu);
    cr_assert_eq(cg_fnv1a32("foobar", 6), 0xbf9cf968u);
}

Test(push, chat_topic_index_and_name)
{
    cr_assert_eq(cg_chat_topic_index("foobar", 4), 0xbf9cf968u % 4);
    cr_assert_eq(cg_chat_topic_index("a", 1), 0);
    for (uint32_t n = 1; n <= 16; n++)
        cr_assert_lt(cg_chat_topic_index("live://1000", n), n);
    char name[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    cr_assert_eq(cg_chat_topic_name(3, name, sizeof(name)), MG_OK);
    cr_assert_str_eq(name, "persistent://public/default/chat-3");
    cr_assert_eq(cg_chat_topic_name(UINT32_MAX, name, sizeof(name)), MG_OK);
    cr_assert_str_eq(name, "persistent://public/default/chat-4294967295");
    char small[10];
    cr_assert_eq(cg_chat_topic_name(3, small, sizeof(small)), MG_EINVAL);
    cr_assert_str_eq(small, "");
}
