/*
 * Fetch (v4-11) and ListOffsets (v0-2).
 *
 * READERS. A connection fetching a partition gets a reader of its topic: a non-durable cursor
 * read through the prefetcher (pf_reader), the same catch-up path a Pulsar subscription drains
 * a backlog by: readers behind the tail get windows of large range reads ahead of them, readers
 * at the tail are served from the tail cache. A reader remembers the offset its read position
 * stands for; a fetch at that offset reads on, a fetch elsewhere first finds the entry holding
 * the offset (ml_find_by_index) and moves the cursor there. Readers never hold back retention
 * (non-durable cursors, as Pulsar readers); one not used for KOP_READER_IDLE_MS is closed.
 *
 * LONG POLLING. A fetch that found fewer than min_bytes and asked to wait (max_wait_ms) waits on
 * the topics of its partitions: a new entry in any of them (kop_topic_entries_added) runs another
 * round for the partitions that had nothing; max_wait_ms (capped at KOP_FETCH_WAIT_MS_MAX) ends
 * the wait with what there is. An error in a partition answers at once, as Kafka does.
 *
 * READ AHEAD. A Kafka consumer has one fetch in flight per broker: the broker would idle while
 * the client takes in an answer, and the client while the broker converts the next one. So once
 * a fetch is answered and its reader is behind the high watermark (catching up), the reader at
 * once reads and converts as much as the fetch asked for, from where it stopped; the next fetch
 * at that offset is answered from it without waiting (a fetch elsewhere drops it). Read-ahead
 * memory is bounded by KOP_READ_AHEAD_BYTES_MAX over the whole server (past it readers do not
 * read ahead); only readers behind the tail read ahead.
 *
 * OFFSETS. The high watermark is ml_messages_total: messages whose add the bookies acknowledged.
 * A fetch past it is OFFSET_OUT_OF_RANGE; at it, nothing yet. An entry holding the asked offset
 * and earlier ones is sent whole (clients skip offsets below the one they asked for).
 * ListOffsets: latest = the high watermark; earliest = the first message offset still stored;
 * a timestamp = the first entry whose broker timestamp is at or after it (ml_find_by_time), or
 * -1 when there is none.
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"
#include "cursor/limits.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---- readers --------------------------------------------------------------------------------- */

struct kop_reader {
    kop_conn *c; /* valid until the reader is closed (it may outlive its connection) */
    kop_server *k;
    br_topic *t;
    mg_link conn_link;
    mg_link topic_link;
    mc_cursor *cursor;
    pf_reader *pf;
    int refs; /* the connection's (until closed) + fetches using it */
    bool open;
    bool closing;
    bool busy;           /* a find or read in flight */
    int64_t next_offset; /* the offset the read position stands for; -1 unknown */
    uint64_t used_ms;
    /* Waiting for the open: one fetch partition at a time (busy). */
    void (*opened_cb)(kop_reader *rd, int status, void *arg);
    void *opened_arg;
    /* READ AHEAD: the record batches of the next fetch, read and converted while the client
     * takes in the last answer (see "READ AHEAD" above). */
    kw_writer ahead;
    int64_t ahead_from; /* the offset they start at; -1: none */
    int64_t ahead_next; /* the offset after them */
    uint64_t ahead_records;
    uint32_t ahead_max;              /* bytes to read ahead: the last fetch's partition limit */
    bool ahead_reading;              /* a read ahead in flight (it holds a reference) */
    struct fetch_part *ahead_waiter; /* a fetch waiting for that read */
};

static void ahead_drop(kop_reader *rd)
{
    kop_server *k = rd->k;
    MG_ASSERT(k->ahead_bytes >= rd->ahead.len);
    k->ahead_bytes -= rd->ahead.len;
    kw_writer_free(&rd->ahead);
    kw_writer_init(&rd->ahead, KOP_FETCH_BYTES_MAX);
    if (rd->ahead_from >= 0)
        rd->next_offset = -1; /* the cursor stands after the dropped batches */
    rd->ahead_from = -1;
    rd->ahead_records = 0;
}

static void reader_free(kop_reader *rd)
{
    kop_server *k = rd->k;
    ahead_drop(rd);
    kw_writer_free(&rd->ahead);
    br_topic_unref(rd->t);
    mg_free(rd);
    MG_ASSERT(k->readers_open > 0);
    k->readers_open--;
    kop_server_maybe_closed(k);
}

static void ahead_start(kop_reader *rd);

static void reader_cursor_closed(int status, void *arg)
{
    (void)status;
    reader_free(arg);
}

static void reader_unref(kop_reader *rd)
{
    MG_ASSERT(rd->refs > 0);
    if (--rd->refs > 0)
        return;
    MG_ASSERT(rd->closing);
    if (rd->pf != NULL)
        pf_reader_close(rd->pf);
    if (rd->cursor != NULL && mc_cursor_close(rd->cursor, reader_cursor_closed, rd) == MG_OK)
        return;
    reader_free(rd);
}

/* Detaches the reader from its connection and topic; freed once no fetch uses it. */
static void reader_close(kop_reader *rd)
{
    if (rd->closing)
        return;
    rd->closing = true;
    mg_list_remove(&rd->conn_link);
    mg_list_remove(&rd->topic_link);
    rd->c->reader_count--;
    if (!rd->open)
        return; /* the open's callback drops the last reference */
    reader_unref(rd);
}

void kop_conn_readers_close(kop_conn *c)
{
    while (!mg_list_empty(&c->readers))
        reader_close(MG_CONTAINER_OF(c->readers.next, kop_reader, conn_link));
}

static void reader_opened(int status, mc_cursor *cursor, void *arg)
{
    kop_reader *rd = arg;
    rd->cursor = cursor;
    if (status == MG_OK && !rd->closing) {
        /* Active (reading ahead) from the first seek on. */
        status = pf_reader_open(rd->t->pf, cursor, &rd->pf);
    }
    if (status == MG_OK && rd->closing)
        status = MG_ECLOSED;
    rd->open = true;
    void (*cb)(kop_reader *, int, void *) = rd->opened_cb;
    void *cb_arg = rd->opened_arg;
    rd->opened_cb = NULL;
    if (status != MG_OK && !rd->closing)
        reader_close(rd); /* drops the connection's reference below */
    else if (rd->closing)
        rd->refs--; /* the connection's, given up while opening */
    cb(rd, status, cb_arg);
}

/* Finds or opens c's reader of t; cb gets it with a reference (or an error and the reader,
 * whose reference the callee still drops). */
static void reader_get(kop_conn *c, br_topic *t, void (*cb)(kop_reader *rd, int status, void *arg),
                       void *arg)
{
    if (c->closing) {
        /* Its readers were closed with it: no new one (it would outlive the connection). */
        cb(NULL, MG_ECLOSED, arg);
        return;
    }
    kop_topic *kt = kop_topic_of(t);
    if (kt == NULL) {
        cb(NULL, MG_ENOMEM, arg);
        return;
    }
    for (mg_link *l = c->readers.next; l != &c->readers; l = l->next) {
        kop_reader *rd = MG_CONTAINER_OF(l, kop_reader, conn_link);
        if (rd->t == t) {
            if (rd->busy || !rd->open || rd->ahead_waiter != NULL) {
                cb(NULL, MG_EAGAIN, arg);
                return;
            }
            rd->refs++;
            rd->used_ms = uv_now(c->k->loop);
            cb(rd, MG_OK, arg);
            return;
        }
    }
    if (c->reader_count >= KOP_CONN_READERS_MAX) {
        cb(NULL, MG_ELIMIT, arg);
        return;
    }
    kop_reader *rd = mg_calloc(1, sizeof(*rd));
    if (rd == NULL) {
        cb(NULL, MG_ENOMEM, arg);
        return;
    }
    rd->c = c;
    rd->k = c->k;
    c->k->readers_open++;
    rd->t = t;
    rd->refs = 2; /* the connection's and the caller's */
    rd->next_offset = -1;
    rd->ahead_from = -1;
    kw_writer_init(&rd->ahead, KOP_FETCH_BYTES_MAX);
    rd->busy = true;
    rd->used_ms = uv_now(c->k->loop);
    rd->opened_cb = cb;
    rd->opened_arg = arg;
    br_topic_ref(t);
    mg_list_push(&c->readers, &rd->conn_link);
    mg_list_push(&kt->readers, &rd->topic_link);
    c->reader_count++;
    char name[64];
    snprintf(name, sizeof(name), "kafka-reader-%" PRIu64 "-%" PRIu64, c->id,
             (uint64_t)(uintptr_t)rd);
    /* At the start of the log: a reader never acknowledges, so its mark-delete position stays
     * before every entry and a seek may go anywhere (mc_seek never goes below it). */
    int rc = mc_cursor_open(t->ml, name, false, MC_INITIAL_EARLIEST, NULL, reader_opened, rd);
    if (rc != MG_OK) {
        rd->open = true;
        rd->busy = false;
        reader_close(rd); /* drops the connection's reference */
        reader_unref(rd); /* and the caller's, never handed over: freed */
        cb(NULL, rc, arg);
    }
}

/* ---- fetch ----------------------------------------------------------------------------------- */

typedef struct fetch_ctx fetch_ctx;

typedef struct fetch_part {
    fetch_ctx *x;
    kw_str topic;
    int32_t partition;
    int64_t offset;
    int32_t max_bytes;
    int16_t error;
    int64_t hw;
    int64_t log_start;
    br_topic *t; /* a reference while the fetch lives */
    kop_reader *rd;
    kw_writer recs;
    bool has_data;
    bool waiting; /* in the topic's waiters */
    mg_link wait_link;
} fetch_part;

struct fetch_ctx {
    kop_req *q;
    fetch_part *parts;
    size_t count;
    int32_t min_bytes, max_bytes, max_wait_ms;
    size_t total;
    uint32_t pending;
    uv_timer_t timer;
    bool timer_started;
    bool expired;
    bool answered;
    bool in_round;
    bool again; /* woken during a round: run another */
};

static void fetch_round(fetch_ctx *x);

static void fetch_unwait(fetch_ctx *x)
{
    for (size_t i = 0; i < x->count; i++) {
        fetch_part *p = &x->parts[i];
        if (p->waiting) {
            mg_list_remove(&p->wait_link);
            p->waiting = false;
        }
    }
}

static void fetch_timer_closed(uv_handle_t *h)
{
    fetch_ctx *x = h->data;
    mg_free(x->parts);
    mg_free(x);
}

static void free_writer_buf(void *data, void *arg)
{
    (void)arg;
    mg_free(data);
}

/* Moves w's bytes into a buffer of their own (NULL when out of memory, or w failed). */
static mg_buf *writer_take(kw_writer *w)
{
    if (w->error != MG_OK || w->len == 0)
        return NULL;
    mg_buf *b = mg_buf_wrap(w->buf, w->len, free_writer_buf, NULL);
    if (b != NULL)
        w->buf = NULL;
    kw_writer_free(w);
    return b;
}

/* The answer goes out in pieces: the fields between record sets are written to small buffers,
 * each partition's record batches are sent from the buffer they were converted into. */
static void fetch_reply(fetch_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    x->answered = true;
    fetch_unwait(x);
    size_t max_parts = 2 * x->count + 1;
    mg_buf **parts = mg_calloc(max_parts, sizeof(*parts));
    size_t n = 0;
    bool failed = parts == NULL;
    kw_writer w;
    kop_reply_begin(q, &w);
    kw_write_i32(&w, 0); /* throttle_time_ms */
    if (q->version >= 7) {
        kw_write_i16(&w, KE_NONE);
        kw_write_i32(&w, 0); /* session_id: no fetch sessions, every fetch is a full one */
    }
    size_t topics = 0;
    for (size_t j = 0; j < x->count; j++)
        if (j == 0 || x->parts[j].topic.ptr != x->parts[j - 1].topic.ptr)
            topics++;
    kw_write_i32(&w, (int32_t)topics);
    size_t i = 0;
    while (i < x->count && !failed) {
        size_t end = i + 1;
        while (end < x->count && x->parts[end].topic.ptr == x->parts[i].topic.ptr)
            end++;
        kw_write_i16(&w, (int16_t)x->parts[i].topic.len);
        kw_write_bytes(&w, x->parts[i].topic.ptr, (size_t)x->parts[i].topic.len);
        kw_write_i32(&w, (int32_t)(end - i));
        for (size_t j = i; j < end && !failed; j++) {
            fetch_part *p = &x->parts[j];
            kw_write_i32(&w, p->partition);
            kw_write_i16(&w, p->error);
            kop_req_error(q, p->error);
            kw_write_i64(&w, p->hw);
            kw_write_i64(&w, p->hw); /* last_stable_offset: no transactions */
            if (q->version >= 5)
                kw_write_i64(&w, p->log_start);
            kw_write_i32(&w, -1); /* aborted_transactions: null */
            if (q->version >= 11)
                kw_write_i32(&w, -1); /* preferred_read_replica */
            kw_write_i32(&w, (int32_t)p->recs.len);
            if (p->recs.len == 0)
                continue;
            mg_buf *head = writer_take(&w);
            mg_buf *recs = writer_take(&p->recs);
            failed = head == NULL || recs == NULL;
            if (head != NULL)
                parts[n++] = head;
            if (recs != NULL)
                parts[n++] = recs;
            kw_writer_init(&w, KW_FRAME_BYTES_MAX);
        }
        i = end;
    }
    /* What the writer holds after the last record set (or all of it, with none). */
    if (!failed && w.len > 0) {
        mg_buf *tail = writer_take(&w);
        failed = tail == NULL;
        if (tail != NULL)
            parts[n++] = tail;
    }
    kw_writer_free(&w);
    if (!failed) {
        /* The size counts everything after itself, over every piece. */
        size_t size = 0;
        for (size_t k = 0; k < n; k++)
            size += mg_buf_len(parts[k]);
        uint8_t *d = mg_buf_data(parts[0]);
        uint32_t v = (uint32_t)(size - 4);
        d[0] = (uint8_t)(v >> 24);
        d[1] = (uint8_t)(v >> 16);
        d[2] = (uint8_t)(v >> 8);
        d[3] = (uint8_t)v;
        kop_reply_parts(q, parts, n);
    } else {
        for (size_t k = 0; k < n; k++)
            mg_buf_unref(parts[k]);
        mg_free(parts);
        kop_conn_close(conn, "out of memory for a fetch answer");
        kop_reply_none(q);
    }
    for (size_t j = 0; j < x->count; j++) {
        fetch_part *p = &x->parts[j];
        kw_writer_free(&p->recs);
        if (p->t != NULL)
            br_topic_unref(p->t);
        p->t = NULL;
    }
    kop_conn_unref(conn);
    if (x->timer_started) {
        uv_timer_stop(&x->timer);
        uv_close((uv_handle_t *)&x->timer, fetch_timer_closed);
    } else {
        mg_free(x->parts);
        mg_free(x);
    }
}

static void fetch_timeout(uv_timer_t *t)
{
    fetch_ctx *x = t->data;
    x->expired = true;
    if (!x->in_round)
        fetch_reply(x);
}

static bool fetch_any_error(const fetch_ctx *x)
{
    for (size_t i = 0; i < x->count; i++)
        if (x->parts[i].error != KE_NONE)
            return true;
    return false;
}

static void fetch_round_done(fetch_ctx *x)
{
    MG_ASSERT(x->pending > 0);
    if (--x->pending > 0)
        return;
    x->in_round = false;
    if (x->answered)
        return;
    if (x->again && !x->expired) {
        x->again = false;
        fetch_round(x);
        return;
    }
    if (x->total >= (size_t)(x->min_bytes > 0 ? x->min_bytes : 1) || x->max_wait_ms <= 0 ||
        x->expired || fetch_any_error(x) || x->q->c->closing) {
        fetch_reply(x);
        return;
    }
    /* Wait for entries in any of the partitions that had none. */
    for (size_t i = 0; i < x->count; i++) {
        fetch_part *p = &x->parts[i];
        if (p->t == NULL || p->waiting || p->has_data || p->t->state != BR_TOPIC_OPEN)
            continue;
        kop_topic *kt = kop_topic_of(p->t);
        if (kt == NULL)
            continue;
        mg_list_push(&kt->waiters, &p->wait_link);
        p->waiting = true;
    }
    if (!x->timer_started) {
        uv_timer_init(x->q->c->k->loop, &x->timer);
        x->timer.data = x;
        x->timer_started = true;
        uv_timer_start(&x->timer, fetch_timeout, (uint64_t)x->max_wait_ms, 0);
    }
}

static void part_finish(fetch_part *p)
{
    if (p->rd != NULL) {
        p->rd->busy = false;
        reader_unref(p->rd);
        p->rd = NULL;
    }
    fetch_round_done(p->x);
}

static void part_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    fetch_part *p = arg;
    fetch_ctx *x = p->x;
    kop_reader *rd = p->rd;
    kop_server *k = x->q->c->k;
    if (status == MG_OK || (status == MG_EAGAIN && count == 0)) {
        uint64_t records = 0;
        for (size_t i = 0; i < count; i++) {
            const ml_entry *e = &entries[i];
            int32_t n = 0;
            if (x->total + p->recs.len >= (size_t)x->max_bytes && p->recs.len > 0) {
                /* The answer is full: the rest is read again by the next fetch. */
                rd->next_offset = -1;
                break;
            }
            size_t before = p->recs.len;
            int rc = kop_entry_to_batch(e, &p->recs, &n);
            if (rc != MG_OK) {
                p->recs.error = MG_OK;
                p->recs.len = before;
                rd->next_offset = -1;
                break;
            }
            rd->next_offset = e->index + 1;
            records += (uint64_t)n;
        }
        if (p->recs.len > 0) {
            p->has_data = true;
            x->total += p->recs.len;
            if (k->m_records_out)
                mg_counter_add(k->m_records_out, records);
            br_topic *t = p->t;
            t->msg_out += records;
            t->bytes_out += p->recs.len;
        }
        if (p->recs.len > 0)
            ahead_start(rd);
    } else if (status != MG_ECLOSED) {
        MG_WARN_LIMITED("kafka: reading %s for a fetch failed: %s", p->t->name.full,
                        mg_strerror(status));
        rd->next_offset = -1;
        p->error = KE_KAFKA_STORAGE_ERROR;
    }
    part_finish(p);
}

static void part_read_start(fetch_part *p)
{
    kop_reader *rd = p->rd;
    uint32_t max = p->max_bytes > 0 ? (uint32_t)p->max_bytes : 1;
    int rc = pf_read_entries(rd->pf, KOP_FETCH_ENTRIES_MAX, max, part_read, p);
    if (rc != MG_OK) {
        if (rc != MG_EAGAIN) {
            p->error = KE_KAFKA_STORAGE_ERROR;
            rd->next_offset = -1;
        }
        part_finish(p);
    }
}

static void part_found(int status, ml_position pos, void *arg)
{
    fetch_part *p = arg;
    kop_reader *rd = p->rd;
    if (status != MG_OK || rd->closing) {
        if (status != MG_OK && status != MG_ECLOSED) {
            MG_WARN_LIMITED("kafka: finding offset %" PRId64 " of %s failed: %s", p->offset,
                            p->t->name.full, mg_strerror(status));
            p->error = KE_KAFKA_STORAGE_ERROR;
        }
        part_finish(p);
        return;
    }
    if (mc_seek(rd->cursor, pos) != MG_OK) {
        p->error = KE_UNKNOWN_SERVER_ERROR;
        part_finish(p);
        return;
    }
    pf_reader_reset(rd->pf);
    pf_reader_set_active(rd->pf, true);
    rd->next_offset = p->offset;
    part_read_start(p);
}

static void part_read_start(fetch_part *p);
static void part_seek(fetch_part *p);

/* Moves the read-ahead batches into the fetch's answer. */
static void ahead_take(fetch_part *p)
{
    kop_reader *rd = p->rd;
    fetch_ctx *x = p->x;
    kop_server *k = x->q->c->k;
    MG_ASSERT(k->ahead_bytes >= rd->ahead.len);
    k->ahead_bytes -= rd->ahead.len;
    kw_writer tmp = p->recs;
    p->recs = rd->ahead;
    rd->ahead = tmp;
    rd->next_offset = rd->ahead_next;
    if (p->recs.len > 0) {
        p->has_data = true;
        x->total += p->recs.len;
        if (k->m_records_out)
            mg_counter_add(k->m_records_out, rd->ahead_records);
        p->t->msg_out += rd->ahead_records;
        p->t->bytes_out += p->recs.len;
    }
    rd->ahead_from = -1;
    rd->ahead_records = 0;
}

static void ahead_read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    kop_reader *rd = arg;
    kop_server *k = rd->k;
    rd->ahead_reading = false;
    if (!rd->closing && (status == MG_OK || status == MG_EAGAIN)) {
        for (size_t i = 0; i < count; i++) {
            int32_t n = 0;
            size_t before = rd->ahead.len;
            if (kop_entry_to_batch(&entries[i], &rd->ahead, &n) != MG_OK) {
                rd->ahead.error = MG_OK;
                rd->ahead.len = before;
                rd->next_offset = -1; /* the cursor read past what is kept */
                break;
            }
            rd->ahead_next = entries[i].index + 1;
            rd->ahead_records += (uint64_t)n;
        }
        if (rd->ahead.len > 0 && rd->next_offset >= 0) {
            k->ahead_bytes += rd->ahead.len;
        } else {
            rd->ahead.len = 0;
            rd->ahead_records = 0;
            rd->ahead_from = -1;
        }
    } else {
        rd->ahead.len = 0;
        rd->ahead_from = -1;
        rd->next_offset = -1;
    }
    fetch_part *p = rd->ahead_waiter;
    rd->ahead_waiter = NULL;
    if (p != NULL) {
        if (rd->ahead_from >= 0 && rd->ahead_from == p->offset) {
            ahead_take(p);
            ahead_start(rd);
            part_finish(p);
        } else {
            if (rd->ahead_from >= 0)
                ahead_drop(rd);
            part_seek(p);
        }
    }
    reader_unref(rd);
}

/* Starts reading ahead from the reader's position when it is behind the tail and the server's
 * read-ahead budget has room. */
static void ahead_start(kop_reader *rd)
{
    kop_server *k = rd->k;
    if (rd->closing || rd->ahead_reading || rd->ahead_from >= 0 || rd->next_offset < 0 ||
        rd->t->state != BR_TOPIC_OPEN || rd->next_offset >= ml_messages_total(rd->t->ml) ||
        k->ahead_bytes + rd->ahead_max > KOP_READ_AHEAD_BYTES_MAX || rd->ahead_max == 0)
        return;
    rd->ahead.len = 0;
    rd->ahead_records = 0;
    int rc = pf_read_entries(rd->pf, KOP_FETCH_ENTRIES_MAX, rd->ahead_max, ahead_read_done, rd);
    if (rc != MG_OK)
        return;
    rd->ahead_from = rd->next_offset;
    rd->ahead_next = rd->next_offset;
    rd->ahead_reading = true;
    rd->refs++;
}

/* The fetch reads at another offset than the reader stands at: find it, then read. */
static void part_seek(fetch_part *p)
{
    kop_reader *rd = p->rd;
    if (rd->next_offset == p->offset) {
        part_read_start(p);
        return;
    }
    int rc = ml_find_by_index(p->t->ml, p->offset, part_found, p);
    if (rc != MG_OK)
        part_found(rc, (ml_position){ -1, -1 }, p);
}

static void part_reader(kop_reader *rd, int status, void *arg)
{
    fetch_part *p = arg;
    if (status != MG_OK) {
        if (rd != NULL)
            reader_unref(rd);
        if (status != MG_EAGAIN && status != MG_ECLOSED)
            p->error = status == MG_ELIMIT ? KE_INVALID_REQUEST : KE_UNKNOWN_SERVER_ERROR;
        fetch_round_done(p->x);
        return;
    }
    p->rd = rd;
    rd->busy = true;
    rd->ahead_max = p->max_bytes > 0 ? (uint32_t)p->max_bytes : 1;
    if (rd->ahead_reading) {
        rd->ahead_waiter = p; /* ahead_read_done goes on */
        return;
    }
    if (rd->ahead_from >= 0) {
        if (rd->ahead_from == p->offset) {
            ahead_take(p);
            ahead_start(rd);
            part_finish(p);
            return;
        }
        ahead_drop(rd);
    }
    part_seek(p);
}

static void part_read_topic(fetch_part *p);

/* The first entry's first offset: the log start offset. */
static void log_start_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    fetch_part *p = arg;
    kop_topic *kt = p->t->kop;
    if (kt != NULL && status == MG_OK && count > 0) {
        pw_payload pl;
        int32_t n = 1;
        const ml_entry *e = &entries[0];
        if (pw_payload_parse(mg_buf_data(e->buf) + e->payload_off, e->payload_len, false, &pl) ==
            MG_OK)
            n = pl.num_messages;
        kt->log_start = e->index - n + 1;
        kt->log_start_pos = e->position;
        kt->log_start_known = true;
    } else if (kt != NULL && status == MG_OK) {
        /* Nothing stored any more: the log starts at the high watermark. */
        kt->log_start = ml_messages_total(p->t->ml);
        kt->log_start_pos = ml_first_position(p->t->ml);
        kt->log_start_known = true;
    }
    part_read_topic(p);
}

static void part_with_topic(fetch_part *p)
{
    br_topic *t = p->t;
    if (t->state != BR_TOPIC_OPEN) {
        p->error = KE_NOT_LEADER_OR_FOLLOWER;
        fetch_round_done(p->x);
        return;
    }
    kop_topic *kt = kop_topic_of(t);
    ml_position first = ml_first_position(t->ml);
    if (kt != NULL && ml_entries_total(t->ml) > 0 &&
        (!kt->log_start_known || ml_position_cmp(first, kt->log_start_pos) != 0)) {
        if (pf_read(t->pf, first, 1, 1, log_start_read, p) == MG_OK)
            return;
    }
    part_read_topic(p);
}

static void part_read_topic(fetch_part *p)
{
    br_topic *t = p->t;
    if (t->state != BR_TOPIC_OPEN) {
        p->error = KE_NOT_LEADER_OR_FOLLOWER;
        fetch_round_done(p->x);
        return;
    }
    kop_topic *kt = t->kop;
    p->hw = ml_messages_total(t->ml);
    p->log_start = kt != NULL && kt->log_start_known ? kt->log_start : 0;
    if (ml_entries_total(t->ml) == 0)
        p->log_start = p->hw;
    if (p->offset < 0 || p->offset > p->hw) {
        p->error = KE_OFFSET_OUT_OF_RANGE;
        fetch_round_done(p->x);
        return;
    }
    if (p->offset == p->hw || p->x->total >= (size_t)p->x->max_bytes) {
        fetch_round_done(p->x); /* nothing new yet, or the answer is full */
        return;
    }
    reader_get(p->x->q->c, t, part_reader, p);
}

static void part_opened(int16_t error, br_topic *t, void *arg)
{
    fetch_part *p = arg;
    if (error != KE_NONE) {
        p->error = error;
        fetch_round_done(p->x);
        return;
    }
    br_topic_ref(t);
    p->t = t;
    part_with_topic(p);
}

static void fetch_round(fetch_ctx *x)
{
    x->in_round = true;
    x->pending = 1;
    for (size_t i = 0; i < x->count; i++) {
        fetch_part *p = &x->parts[i];
        if (p->error != KE_NONE || p->has_data)
            continue;
        x->pending++;
        if (p->t == NULL)
            kop_partition_open(x->q->c->k, p->topic.ptr, (size_t)p->topic.len, p->partition, false,
                               part_opened, p);
        else
            part_with_topic(p);
    }
    fetch_round_done(x);
}

void kop_topic_entries_added(br_topic *t)
{
    kop_topic *kt = t->kop;
    if (kt == NULL)
        return;
    while (!mg_list_empty(&kt->waiters)) {
        fetch_part *p = MG_CONTAINER_OF(kt->waiters.next, fetch_part, wait_link);
        fetch_ctx *x = p->x;
        fetch_unwait(x);
        if (x->in_round)
            x->again = true;
        else
            fetch_round(x);
    }
}

void kop_topic_closing(br_topic *t)
{
    kop_topic *kt = t->kop;
    if (kt == NULL)
        return;
    while (!mg_list_empty(&kt->readers))
        reader_close(MG_CONTAINER_OF(kt->readers.next, kop_reader, topic_link));
    /* Waiting fetches answer now (their partition of t says it moved). */
    while (!mg_list_empty(&kt->waiters)) {
        fetch_part *p = MG_CONTAINER_OF(kt->waiters.next, fetch_part, wait_link);
        fetch_ctx *x = p->x;
        fetch_unwait(x);
        p->error = KE_NOT_LEADER_OR_FOLLOWER;
        if (!x->in_round)
            fetch_reply(x);
    }
    mg_free(kt->producers);
    mg_free(kt);
    t->kop = NULL;
}

void kop_readers_sweep(kop_server *k)
{
    uint64_t now = uv_now(k->loop);
    for (mg_link *l = k->conns.next; l != &k->conns; l = l->next) {
        kop_conn *c = MG_CONTAINER_OF(l, kop_conn, link);
        for (mg_link *m = c->readers.next; m != &c->readers;) {
            kop_reader *rd = MG_CONTAINER_OF(m, kop_reader, conn_link);
            m = m->next;
            if (!rd->busy && rd->open && !rd->ahead_reading &&
                now - rd->used_ms >= KOP_READER_IDLE_MS)
                reader_close(rd);
        }
    }
}

static void fetch_part_read(void *el, kw_str topic, kw_reader *r, void *arg)
{
    fetch_part *p = el;
    fetch_ctx *x = arg;
    p->x = x;
    p->topic = topic;
    p->partition = kw_read_i32(r);
    if (x->q->version >= 9)
        kw_read_i32(r); /* current_leader_epoch */
    p->offset = kw_read_i64(r);
    if (x->q->version >= 5)
        kw_read_i64(r); /* log_start_offset (of a follower) */
    p->max_bytes = kw_read_i32(r);
    p->hw = -1;
    p->log_start = -1;
    kw_writer_init(&p->recs, KOP_FETCH_BYTES_MAX);
}

void kop_handle_fetch(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    kw_read_i32(r); /* replica_id */
    int32_t max_wait = kw_read_i32(r);
    int32_t min_bytes = kw_read_i32(r);
    int32_t max_bytes = kw_read_i32(r);
    kw_read_i8(r); /* isolation_level: no transactions, both levels read the same */
    if (q->version >= 7) {
        kw_read_i32(r); /* session_id */
        kw_read_i32(r); /* session_epoch */
    }
    int32_t topics = kw_read_i32(r);
    if (kw_reader_error(r) != MG_OK || topics < 0 || topics > 100000) {
        kop_conn_proto_error(c, "bad_request", "malformed Fetch request");
        kop_reply_none(q);
        return;
    }
    fetch_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    x->min_bytes = min_bytes;
    x->max_bytes = max_bytes <= 0 || (uint32_t)max_bytes > KOP_FETCH_BYTES_MAX
                       ? (int32_t)KOP_FETCH_BYTES_MAX
                       : max_bytes;
    x->max_wait_ms = max_wait > KOP_FETCH_WAIT_MS_MAX ? KOP_FETCH_WAIT_MS_MAX : max_wait;
    size_t cap = 0;
    kop_read_partitions(r, topics, (void **)&x->parts, &x->count, &cap, sizeof(fetch_part), 100000,
                        fetch_part_read, x);
    if (q->version >= 7 && kw_reader_error(r) == MG_OK) {
        int32_t forgotten = kw_read_i32(r);
        for (int32_t i = 0; i < forgotten && kw_reader_error(r) == MG_OK; i++) {
            kw_read_string(r);
            int32_t n = kw_read_i32(r);
            for (int32_t j = 0; j < n && kw_reader_error(r) == MG_OK; j++)
                kw_read_i32(r);
        }
    }
    if (q->version >= 11)
        kw_read_string(r); /* rack_id */
    if (kw_reader_error(r) != MG_OK) {
        bool oom = r->error == MG_ENOMEM;
        for (size_t i = 0; i < x->count; i++)
            kw_writer_free(&x->parts[i].recs);
        mg_free(x->parts);
        mg_free(x);
        if (oom)
            kop_conn_close(c, "out of memory");
        else
            kop_conn_proto_error(c, "bad_request", "malformed Fetch request");
        kop_reply_none(q);
        return;
    }
    /* Partitions of one topic must be contiguous for the answer's grouping: they are, as read. */
    kop_conn_ref(c);
    fetch_round(x);
}

/* ---- ListOffsets ----------------------------------------------------------------------------- */

typedef struct lo_part {
    struct lo_ctx *x;
    kw_str topic;
    int32_t partition;
    int64_t timestamp;
    int16_t error;
    int64_t offset;
    int64_t found_ts;
    br_topic *t;
} lo_part;

typedef struct lo_ctx {
    kop_req *q;
    lo_part *parts;
    size_t count;
    uint32_t pending;
} lo_ctx;

static void lo_reply(lo_ctx *x)
{
    kop_req *q = x->q;
    kop_conn *conn = q->c; /* q is freed once answered */
    kw_writer w;
    kop_reply_begin(q, &w);
    if (q->version >= 2)
        kw_write_i32(&w, 0);
    size_t topics = 0;
    for (size_t j = 0; j < x->count; j++)
        if (j == 0 || x->parts[j].topic.ptr != x->parts[j - 1].topic.ptr)
            topics++;
    kw_write_i32(&w, (int32_t)topics);
    size_t i = 0;
    while (i < x->count) {
        size_t end = i + 1;
        while (end < x->count && x->parts[end].topic.ptr == x->parts[i].topic.ptr)
            end++;
        kw_write_i16(&w, (int16_t)x->parts[i].topic.len);
        kw_write_bytes(&w, x->parts[i].topic.ptr, (size_t)x->parts[i].topic.len);
        kw_write_i32(&w, (int32_t)(end - i));
        for (size_t j = i; j < end; j++) {
            lo_part *p = &x->parts[j];
            kw_write_i32(&w, p->partition);
            kw_write_i16(&w, p->error);
            kop_req_error(q, p->error);
            if (q->version == 0) {
                if (p->error == KE_NONE && p->offset >= 0) {
                    kw_write_i32(&w, 1);
                    kw_write_i64(&w, p->offset);
                } else {
                    kw_write_i32(&w, 0);
                }
            } else {
                kw_write_i64(&w, p->error == KE_NONE ? p->found_ts : -1);
                kw_write_i64(&w, p->error == KE_NONE ? p->offset : -1);
            }
            if (p->t != NULL)
                br_topic_unref(p->t);
        }
        i = end;
    }
    kop_reply_end(q, &w);
    kop_conn_unref(conn);
    mg_free(x->parts);
    mg_free(x);
}

static void lo_done(lo_ctx *x)
{
    MG_ASSERT(x->pending > 0);
    if (--x->pending == 0)
        lo_reply(x);
}

/* The first entry at or after a position: its first offset and time. */
static void lo_entry_read(int status, const ml_entry *entries, size_t count, void *arg)
{
    lo_part *p = arg;
    if (status == MG_OK && count > 0) {
        const ml_entry *e = &entries[0];
        pw_payload pl;
        int32_t n = 1;
        int64_t ts = e->broker_timestamp_ms;
        if (pw_payload_parse(mg_buf_data(e->buf) + e->payload_off, e->payload_len, false, &pl) ==
            MG_OK)
            n = pl.num_messages;
        p->offset = e->index - n + 1;
        p->found_ts = p->timestamp >= 0 ? ts : -1;
    } else if (status == MG_OK) {
        /* Past the end. */
        if (p->timestamp >= 0) {
            p->offset = -1;
            p->found_ts = -1;
        } else {
            p->offset = ml_messages_total(p->t->ml);
        }
    } else {
        MG_WARN_LIMITED("kafka: ListOffsets on %s: %s", p->t->name.full, mg_strerror(status));
        p->error = KE_KAFKA_STORAGE_ERROR;
    }
    lo_done(p->x);
}

static void lo_found(int status, ml_position pos, void *arg)
{
    lo_part *p = arg;
    if (status != MG_OK) {
        p->error = KE_KAFKA_STORAGE_ERROR;
        lo_done(p->x);
        return;
    }
    int rc = pf_read(p->t->pf, pos, 1, 1, lo_entry_read, p);
    if (rc != MG_OK)
        lo_entry_read(rc, NULL, 0, p);
}

static void lo_opened(int16_t error, br_topic *t, void *arg)
{
    lo_part *p = arg;
    if (error != KE_NONE) {
        p->error = error;
        lo_done(p->x);
        return;
    }
    br_topic_ref(t);
    p->t = t;
    p->found_ts = -1;
    if (p->timestamp == -1) { /* latest */
        p->offset = ml_messages_total(t->ml);
        lo_done(p->x);
        return;
    }
    if (p->timestamp == -2) { /* earliest */
        ml_position first = ml_first_position(t->ml);
        if (ml_entries_total(t->ml) == 0 ||
            ml_position_cmp(first, ml_next_position(t->ml, ml_last_position(t->ml))) >= 0) {
            p->offset = ml_messages_total(t->ml);
            lo_done(p->x);
            return;
        }
        lo_found(MG_OK, first, p);
        return;
    }
    if (p->timestamp < 0) {
        p->error = KE_INVALID_REQUEST;
        lo_done(p->x);
        return;
    }
    int rc = ml_find_by_time(t->ml, p->timestamp, lo_found, p);
    if (rc != MG_OK)
        lo_found(rc, (ml_position){ -1, -1 }, p);
}

static void lo_part_read(void *el, kw_str topic, kw_reader *r, void *arg)
{
    lo_part *p = el;
    lo_ctx *x = arg;
    p->x = x;
    p->topic = topic;
    p->partition = kw_read_i32(r);
    p->timestamp = kw_read_i64(r);
    if (x->q->version == 0)
        kw_read_i32(r); /* max_num_offsets: one is answered */
}

void kop_handle_list_offsets(kop_req *q, kw_reader *r)
{
    kop_conn *c = q->c;
    kw_read_i32(r); /* replica_id */
    if (q->version >= 2)
        kw_read_i8(r); /* isolation_level */
    int32_t topics = kw_read_i32(r);
    if (kw_reader_error(r) != MG_OK || topics < 0 || topics > 100000) {
        kop_conn_proto_error(c, "bad_request", "malformed ListOffsets request");
        kop_reply_none(q);
        return;
    }
    lo_ctx *x = mg_calloc(1, sizeof(*x));
    if (x == NULL) {
        kop_conn_close(c, "out of memory");
        kop_reply_none(q);
        return;
    }
    x->q = q;
    size_t cap = 0;
    kop_read_partitions(r, topics, (void **)&x->parts, &x->count, &cap, sizeof(lo_part), 100000,
                        lo_part_read, x);
    if (kw_reader_error(r) != MG_OK) {
        mg_free(x->parts);
        mg_free(x);
        kop_conn_proto_error(c, "bad_request", "malformed ListOffsets request");
        kop_reply_none(q);
        return;
    }
    kop_conn_ref(c);
    x->pending = 1;
    for (size_t i = 0; i < x->count; i++) {
        lo_part *p = &x->parts[i];
        x->pending++;
        kop_partition_open(c->k, p->topic.ptr, (size_t)p->topic.len, p->partition, false, lo_opened,
                           p);
    }
    lo_done(x);
}
