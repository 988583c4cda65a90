/*
 * A connection's output queue: frames waiting to be written on a libuv stream, and the writes in
 * flight. Frames are slices of reference-counted buffers (a command header built for this
 * connection, an entry's stored bytes shared with every other consumer of it), so queueing never
 * copies payload bytes.
 *
 * Slices are appended to a list of blocks, each an mg_chain of up to MG_CHAIN_SLICES_MAX slices
 * that one uv_write sends. Write coalescing: the owner calls mg_outq_flush after appending;
 * while a write is in flight it does nothing, and frames appended meanwhile go out together when
 * the owner flushes again from written_cb. queued_bytes (appended, not yet written) is what an
 * owner compares with its output limit to stop producing for a slow peer. An owner that budgets
 * the output of many queues together gives each the same total (mg_outq_set_total), which every
 * queue keeps equal to the sum of their queued_bytes.
 *
 * Embedded by value in its owner, which must stay alive until every write it started has called
 * written_cb (libuv cancels them with MG_ECANCELED when the stream is closed, before the close
 * callback). One loop thread; fields are private.
 */
#ifndef MG_COMMON_OUTQ_H
#define MG_COMMON_OUTQ_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct mg__outq_block mg__outq_block;
typedef struct mg_outq mg_outq;
struct mg_outq {
    mg__outq_block *head; /* blocks not yet handed to uv_write, in order */
    mg__outq_block *tail;
    uint32_t writes_inflight;
    size_t queued_bytes; /* appended and not yet completed by a write callback */
    size_t *total_bytes; /* NULL, or a sum of several queues' queued_bytes (the owner's) */
    /* Called once per completed uv_write with MG_OK or the converted error (MG_ECANCELED when
     * the stream was closed). The queue is not touched after it returns, so the callback may
     * free the owner once mg_outq_writes_inflight() is 0. */
    void (*written_cb)(mg_outq *q, int status);
    void *arg; /* for the owner */
};

void mg_outq_init(mg_outq *q, void (*written_cb)(mg_outq *q, int status), void *arg);

/* Adds this queue's queued_bytes, now and from now on, to *total (owned by the caller, shared
 * with other queues, and outliving this one's writes and discards); NULL stops that (the
 * queued bytes are taken back out of the previous total). */
void mg_outq_set_total(mg_outq *q, size_t *total);

/* Appends count slices (each len > 0 and inside its buffer's valid bytes), taking one new
 * reference per slice (the caller keeps its own). All or nothing: MG_OK, MG_EINVAL (a slice
 * outside its buffer), MG_ENOMEM. */
int mg_outq_push(mg_outq *q, const mg_slice *slices, size_t count);

/* Appends the whole of buf (a fresh frame), taking a new reference. As mg_outq_push. */
int mg_outq_push_buf(mg_outq *q, mg_buf *buf);

/* Starts writing every queued block on stream unless a write is in flight (the owner flushes
 * again from written_cb). Returns MG_OK, or the converted uv_write error (the blocks stay queued;
 * the owner closes the stream and calls mg_outq_discard). */
int mg_outq_flush(mg_outq *q, uv_stream_t *stream);

/* Drops every block not yet handed to uv_write (writes in flight are unaffected). */
void mg_outq_discard(mg_outq *q);

size_t mg_outq_queued_bytes(const mg_outq *q);
uint32_t mg_outq_writes_inflight(const mg_outq *q);

#endif
