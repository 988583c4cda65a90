/*
 * Gap-free resume: a client that reconnects with the position of the last message it saw
 * (`"last_id"` in its auth body) gets what its room received since, read back from the room's
 * chat topic, then goes live with no gap and no duplicate at the seam (docs/chat_gateway.md
 * "Resume").
 *
 * HOW
 *   1. At auth the connection joins its room at once, in state RESUMING: live pushes for the
 *      room reach it from then on, and are held (copied, bounded by CG_RESUME_HOLD_BYTES_MAX)
 *      instead of sent.
 *   2. A reader (a non-durable subscription: it moves no one's cursor) opens on the room's chat
 *      topic at last_id, inclusive, and the topic's last message id is asked for: that is the
 *      end of the replay. Messages of other rooms in the same topic are skipped.
 *   3. The first message read says whether last_id is still in the log: it is that message
 *      itself when it is; anything later means the log no longer reaches back to it (retention
 *      removed it) and the reply says `"recovered":false` (what the log still has is replayed).
 *      The auth reply (op 8) goes out then, before any replayed message.
 *   4. Messages after last_id up to the end are sent in order; then the held live messages whose
 *      position is after the last one sent, and the connection is LIVE with a floor: the Job may
 *      be behind the replay, and what it pushes at or before the last position sent is skipped
 *      for this connection (fanout.c). Live messages are positions the Job read from the same
 *      topic, so "after" is the topic's order: nothing is sent twice and, since the connection
 *      joined before the end was asked for, nothing stored before the end is missed, and nothing
 *      after it either (it comes live).
 *   The Job learns that this gateway holds the room within the loop iteration of the join
 *   (ChatRooms), before the reader is even subscribed, so a message stored after the end reaches
 *   this gateway live.
 *
 * BOUNDS. At most CG_RESUMES_MAX replays run at once (past it a client gets
 * `"recovered":false` at once and goes live); a replay that has not reached its end within
 * CG_RESUME_TIMEOUT_MS, or whose held messages pass CG_RESUME_HOLD_BYTES_MAX, closes the
 * connection (reason resume_failed): the client reconnects with the same last_id and tries again.
 *
 * A cg__resume outlives its connection when the connection closes mid-replay: conn is then NULL
 * and the reader is closed; the callbacks still to come find it detached and free it.
 */
#include "chat_gateway/gateway_int.h"
#include "chat_gateway/packet.h"
#include "chat_gateway/topics.h"
#include "client/client.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/list.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct held_msg {
    struct held_msg *next;
    cg__msg m;
    uint8_t body[];
} held_msg;

struct cg__resume {
    cg__conn *conn; /* NULL once detached */
    cg_gateway *gw;
    pc_consumer *reader;
    cg_position after; /* the client's last_id */
    cg_position last_sent;
    cg_position end;
    cg_position last_read; /* the last message read, of any room */
    bool last_read_whole;  /* it was the last message of its entry */
    bool has_read;
    bool has_end, end_empty;
    bool replied, recovered;
    bool subscribed, closing_reader;
    uint32_t seq;
    uint32_t callbacks_pending;
    int64_t started_ms;
    held_msg *held, **held_tail;
    size_t held_bytes;
    mg_link link; /* env->active */
};

typedef struct cg__resume_env {
    pc_client *client;
    mg_link active;
    uint32_t count;
    uv_timer_t timer;
    bool closing;
} cg__resume_env;

static cg__resume_env *env_of(cg_gateway *gw)
{
    return gw->resume_env;
}

static cg_position pos_of(const pc_message_id *id)
{
    return (cg_position){ id->ledger_id, id->entry_id, id->batch_index };
}

/* Orders entries (ledger, entry), ignoring batch indexes. */
static int entry_cmp(const cg_position *a, const cg_position *b)
{
    if (a->ledger_id != b->ledger_id)
        return a->ledger_id < b->ledger_id ? -1 : 1;
    if (a->entry_id != b->entry_id)
        return a->entry_id < b->entry_id ? -1 : 1;
    return 0;
}

/* Whether the replay has read everything up to its end. */
static bool reached_end(const cg__resume *r)
{
    if (!r->has_end || !r->has_read)
        return false;
    int c = entry_cmp(&r->last_read, &r->end);
    return c > 0 || (c == 0 && r->last_read_whole);
}

static void resume_free_if_done(cg__resume *r)
{
    if (r->conn != NULL || r->callbacks_pending > 0)
        return;
    held_msg *h = r->held;
    while (h != NULL) {
        held_msg *next = h->next;
        mg_free(h);
        h = next;
    }
    cg_gateway *gw = r->gw;
    mg_free(r);
    MG_ASSERT(gw->side_pending > 0);
    gw->side_pending--;
    cg__gateway_maybe_closed(gw);
}

static void reader_closed(int status, void *arg)
{
    (void)status;
    cg__resume *r = arg;
    r->callbacks_pending--;
    resume_free_if_done(r);
}

/* Detaches r from its connection and closes the reader; r is freed once its callbacks ran. */
static void resume_detach(cg__resume *r)
{
    cg_gateway *gw = r->gw;
    cg__resume_env *env = env_of(gw);
    if (r->conn != NULL) {
        r->conn->resume = NULL;
        r->conn = NULL;
        mg_list_remove(&r->link);
        if (env != NULL)
            env->count--;
    }
    if (r->reader != NULL && !r->closing_reader) {
        r->closing_reader = true;
        r->callbacks_pending++;
        pc_consumer_close(r->reader, reader_closed, r);
        r->reader = NULL;
    }
    resume_free_if_done(r);
}

static void send_auth_reply(cg__resume *r, bool recovered)
{
    if (r->replied || r->conn == NULL)
        return;
    r->replied = true;
    r->recovered = recovered;
    char body[CG_AUTH_REPLY_BODY_BYTES];
    size_t n = 0;
    if (cg_auth_reply_recovered(recovered, body, sizeof(body), &n) == MG_OK)
        cg__conn_reply(r->conn, CG_OP_AUTH_REPLY, CG_VER_INT, r->seq, body, n);
}

/* The replay reached its end: the held live messages, then LIVE. */
static void resume_finish(cg__resume *r)
{
    cg__conn *c = r->conn;
    if (c == NULL)
        return;
    send_auth_reply(r, r->recovered || !r->replied);
    for (held_msg *h = r->held; h != NULL && c->state != CG__CLOSING; h = h->next) {
        if (cg_position_cmp(&h->m.pos, &r->last_sent) <= 0)
            continue;
        r->last_sent = h->m.pos;
        cg__deliver_to(c, &h->m, 1, true);
    }
    if (c->state == CG__RESUMING) {
        c->state = CG__LIVE;
        /* The Job may still be behind the replay: what it pushes up to here was sent, or the
         * client had it. A last_id past the log's end (a client of another log) is not a floor:
         * the log's end is. */
        c->floor = r->last_sent;
        if (r->has_end && !r->end_empty && entry_cmp(&r->end, &c->floor) < 0)
            c->floor = (cg_position){ r->end.ledger_id, r->end.entry_id, INT32_MAX };
        c->has_floor = !(r->has_end && r->end_empty);
    }
    resume_detach(r);
}

static bool prop_is(const pc_received *m, const char *key, const char *value)
{
    for (size_t i = 0; i < m->property_count; i++)
        if (strcmp(m->properties[i].key, key) == 0)
            return strcmp(m->properties[i].value, value) == 0;
    return false;
}

static uint32_t prop_op(const pc_received *m)
{
    for (size_t i = 0; i < m->property_count; i++) {
        if (strcmp(m->properties[i].key, "chat.op") == 0) {
            char *end = NULL;
            unsigned long v = strtoul(m->properties[i].value, &end, 10);
            if (end != m->properties[i].value && *end == '\0' && v <= UINT32_MAX)
                return (uint32_t)v;
        }
    }
    return CG_OP_SEND_MSG_REPLY;
}

static void on_replayed(pc_consumer *k, const pc_received *m, void *arg)
{
    (void)k;
    cg__resume *r = arg;
    cg__conn *c = r->conn;
    if (c == NULL)
        return;
    cg_position p = pos_of(&m->id);
    if (!r->replied)
        send_auth_reply(r, p.ledger_id == r->after.ledger_id && p.entry_id == r->after.entry_id);
    if (cg_position_cmp(&p, &r->after) > 0 && cg_position_cmp(&p, &r->last_sent) > 0 &&
        prop_is(m, "chat.kind", "room") && prop_is(m, "chat.room", c->room ? c->room->name : "")) {
        cg__msg msg = { m->payload, m->payload_len, prop_op(m), p };
        r->last_sent = p;
        if (!cg__deliver_to(c, &msg, 1, true))
            return; /* closed: cg__resume_cancel detached r */
    }
    r->last_read = p;
    r->last_read_whole = m->id.batch_index < 0 || m->id.batch_index >= m->id.batch_size - 1;
    r->has_read = true;
    if (reached_end(r))
        resume_finish(r);
}

static void got_end(int status, const pc_message_id *id, void *arg)
{
    cg__resume *r = arg;
    r->callbacks_pending--;
    if (r->conn == NULL) {
        resume_free_if_done(r);
        return;
    }
    if (status != MG_OK) {
        MG_WARN_LIMITED("chat gateway: resume of %s: cannot read the topic's end: %s",
                        r->conn->peer, mg_strerror(status));
        cg__conn_close(r->conn, CG__REASON_RESUME_FAILED);
        return;
    }
    r->has_end = true;
    r->end = pos_of(id);
    r->end_empty = id->ledger_id < 0 || id->entry_id < 0;
    /* The log ends before last_id's entry: nothing to replay, and last_id is not in it. */
    if (r->end_empty || entry_cmp(&r->end, &r->after) < 0) {
        send_auth_reply(r, false);
        resume_finish(r);
        return;
    }
    if (reached_end(r))
        resume_finish(r);
}

static void subscribed(int status, pc_consumer *k, void *arg)
{
    cg__resume *r = arg;
    r->callbacks_pending--;
    if (r->conn == NULL) {
        if (status == MG_OK && k != NULL) {
            r->callbacks_pending++;
            pc_consumer_close(k, reader_closed, r);
        }
        resume_free_if_done(r);
        return;
    }
    if (status != MG_OK) {
        MG_WARN_LIMITED("chat gateway: resume of %s: cannot read the room's topic: %s",
                        r->conn->peer, mg_strerror(status));
        cg__conn_close(r->conn, CG__REASON_RESUME_FAILED);
        return;
    }
    r->reader = k;
    r->subscribed = true;
    if (pc_get_last_message_id(k, got_end, r) == MG_OK) {
        r->callbacks_pending++;
    } else {
        cg__conn_close(r->conn, CG__REASON_RESUME_FAILED);
    }
}

void cg__resume_start(cg__conn *c, const cg_position *after, uint32_t seq)
{
    cg_gateway *gw = c->gw;
    cg__resume_env *env = env_of(gw);
    if (env == NULL || env->count >= CG_RESUMES_MAX || c->room == NULL) {
        /* No replay possible now: the client is told, and goes live. */
        char body[CG_AUTH_REPLY_BODY_BYTES];
        size_t n = 0;
        c->state = CG__LIVE;
        if (cg_auth_reply_recovered(false, body, sizeof(body), &n) == MG_OK)
            cg__conn_reply(c, CG_OP_AUTH_REPLY, CG_VER_INT, seq, body, n);
        return;
    }
    cg__resume *r = mg_calloc(1, sizeof(*r));
    if (r == NULL) {
        cg__conn_close(c, CG__REASON_NO_MEMORY);
        return;
    }
    r->conn = c;
    r->gw = gw;
    r->after = *after;
    r->last_sent = *after;
    r->seq = seq;
    r->started_ms = (int64_t)uv_now(gw->loop);
    r->held_tail = &r->held;
    c->resume = r;
    gw->side_pending++;
    mg_list_push(&env->active, &r->link);
    env->count++;
    char topic[CG_CHAT_TOPIC_NAME_BYTES_MAX];
    cg_chat_topic_name(cg_chat_topic_index(c->room->name, gw->topics), topic, sizeof(topic));
    pc_consumer_opts o = {
        .topic = topic,
        .type = PC_SUB_EXCLUSIVE,
        .reader = true,
        .start_id = { after->ledger_id, after->entry_id, after->batch_index, 0, -1 },
        .start_inclusive = true,
        .receiver_queue_size = 1000,
        .on_message = on_replayed,
        .arg = r,
    };
    int rc = pc_subscribe(env->client, &o, subscribed, r);
    if (rc != MG_OK) {
        MG_WARN_LIMITED("chat gateway: resume of %s: cannot open a reader on %s: %s", c->peer,
                        topic, mg_strerror(rc));
        cg__conn_close(c, CG__REASON_RESUME_FAILED);
        return;
    }
    r->callbacks_pending++;
}

void cg__resume_cancel(cg__conn *c, bool reply)
{
    cg__resume *r = c->resume;
    if (r == NULL)
        return;
    if (reply)
        send_auth_reply(r, false); /* the client moved on before the replay told it anything */
    resume_detach(r);
}

void cg__resume_hold(cg__conn *c, const cg__msg *msgs, size_t count)
{
    cg__resume *r = c->resume;
    if (r == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        size_t need = sizeof(held_msg) + msgs[i].body_len;
        if (r->held_bytes + need > CG_RESUME_HOLD_BYTES_MAX) {
            MG_WARN_LIMITED("chat gateway: resume of %s: live messages held past the bound "
                            "while replaying",
                            c->peer);
            cg__conn_close(c, CG__REASON_RESUME_FAILED);
            return;
        }
        held_msg *h = mg_malloc(need);
        if (h == NULL) {
            cg__conn_close(c, CG__REASON_NO_MEMORY);
            return;
        }
        h->next = NULL;
        h->m = msgs[i];
        memcpy(h->body, msgs[i].body, msgs[i].body_len);
        h->m.body = h->body;
        *r->held_tail = h;
        r->held_tail = &h->next;
        r->held_bytes += need;
    }
}

/* ---- the environment: one client per gateway, a timer for overdue replays ---------------- */

static void on_resume_timer(uv_timer_t *t)
{
    cg_gateway *gw = t->data;
    cg__resume_env *env = env_of(gw);
    int64_t now = (int64_t)uv_now(gw->loop);
    mg_link *l = env->active.next;
    for (uint32_t i = 0; l != &env->active && i < CG_RESUMES_MAX; i++) {
        mg_link *next = l->next;
        cg__resume *r = MG_CONTAINER_OF(l, cg__resume, link);
        if (r->conn != NULL && now - r->started_ms >= (int64_t)CG_RESUME_TIMEOUT_MS) {
            MG_WARN_LIMITED("chat gateway: resume of %s did not reach the end of its replay in "
                            "%u ms",
                            r->conn->peer, (unsigned)CG_RESUME_TIMEOUT_MS);
            cg__conn_close(r->conn, CG__REASON_RESUME_FAILED);
        }
        l = next;
    }
}

int cg__resume_env_start(cg_gateway *gw)
{
    cg__resume_env *env = mg_calloc(1, sizeof(*env));
    if (env == NULL)
        return MG_ENOMEM;
    pc_client_opts o = { .service_url = gw->service_url,
                         .client_version = "magnetar-chat-gateway" };
    int rc = pc_client_create(gw->loop, &o, &env->client);
    if (rc != MG_OK) {
        MG_ERROR("chat gateway: cannot create the client for resume reads (%s): %s",
                 gw->service_url, mg_strerror(rc));
        mg_free(env);
        return rc;
    }
    mg_list_init(&env->active);
    uv_timer_init(gw->loop, &env->timer);
    env->timer.data = gw;
    gw->handles_open++;
    uv_timer_start(&env->timer, on_resume_timer, 1000, 1000);
    gw->resume_env = env;
    return MG_OK;
}

static void env_timer_closed(uv_handle_t *h)
{
    cg__resume_env *env = MG_CONTAINER_OF(h, cg__resume_env, timer);
    cg_gateway *gw = h->data;
    mg_free(env); /* the timer lives in it */
    gw->handles_open--;
    cg__gateway_maybe_closed(gw);
}

static void env_client_closed(void *arg)
{
    cg_gateway *gw = arg;
    gw->side_pending--;
    cg__gateway_maybe_closed(gw);
}

void cg__resume_env_stop(cg_gateway *gw)
{
    cg__resume_env *env = env_of(gw);
    if (env == NULL)
        return;
    /* Connections were closed first (cg_gateway_close), which detached every replay. */
    uv_close((uv_handle_t *)&env->timer, env_timer_closed);
    gw->side_pending++;
    pc_client_close(env->client, env_client_closed, gw);
    gw->resume_env = NULL; /* freed when its timer has closed */
}
