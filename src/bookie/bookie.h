/*
 * The bookie storage node: the module's public header for whatever runs a bookie (`magnetar
 * bookie`, `magnetar standalone`, the test harnesses). Target mg_bookie. It exports:
 *
 *   bk_io       the file I/O layer's handle, with fault injection (tests arm disk faults)
 *   bk_storage  the storage engine: open, add, read, fence, delete, flush, gc, close; its
 *               counters, and the read-only error state that health checks read and
 *               bk_storage_resume clears; metrics through bk_storage_opts.metrics
 *   bk_server   the RPC server in front of a storage (its metrics through bk_server_opts)
 *   bk_local    the in-process path from a bk_client to a storage of the same process
 *
 * The RPC client is bookie/client.h, included here for bk_entry and bk_client. Every other
 * header of src/bookie is private to the module.
 */
#ifndef MG_BOOKIE_BOOKIE_H
#define MG_BOOKIE_BOOKIE_H

#include "bookie/client.h"
#include "common/buf.h"
#include "common/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ---- file I/O ---------------------------------------------------------------------------- */
/*
 * The bookie's file I/O layer: every system call that touches the journal, the entry logs or
 * their directories goes through a bk_io, so tests can inject the failures a disk produces
 * (EIO on read, ENOSPC or EIO on write, a failing fdatasync, a short read) and check that the
 * bookie reports them instead of lying. A storage uses the bk_io of its options, or a plain one
 * of its own. Thread-safe: the journal thread, the flush thread and the loop share one bk_io.
 */

typedef struct bk_io bk_io;

typedef enum bk_io_op {
    BK_IO_OPEN = 0,
    BK_IO_PREAD = 1, /* also the asynchronous (libaio) reads */
    BK_IO_PWRITE = 2,
    BK_IO_SYNC = 3, /* fdatasync and fsync */
    BK_IO_ALLOCATE = 4,
    BK_IO_OP_COUNT = 5,
} bk_io_op;

/* Creates a bk_io with no faults armed. Returns MG_OK or MG_ENOMEM. */
int bk_io_create(bk_io **out);
void bk_io_destroy(bk_io *io);

/* Arms a fault: the (skip + 1)-th call of kind op on a file whose path contains path_substr
 * (NULL: any file) fails with error (an MG_E* code, e.g. MG_EIO or MG_ENOSPC), and so does every
 * later one while times != 0 (times < 0: forever; times > 0: that many failures). For
 * BK_IO_PREAD, error == 0 with short_bytes > 0 makes the read return short_bytes fewer bytes
 * instead (a short read). One fault per op kind; arming again replaces it. Any thread. */
void bk_io_fault_arm(bk_io *io, bk_io_op op, const char *path_substr, int64_t skip, int64_t times,
                     int error, size_t short_bytes);
void bk_io_fault_clear(bk_io *io, bk_io_op op);
/* How many faults of this kind fired so far. */
uint64_t bk_io_fault_count(bk_io *io, bk_io_op op);

/* ---- storage engine ---------------------------------------------------------------------- */
/*
 * The bookie's storage engine: BookKeeper's DbLedgerStorage design (journal, double-buffered
 * write cache, ledger-sorted entry logs, RocksDB location index, read cache), improved for
 * sequential catch-up reads (range reads found with one index seek and served by a few large
 * O_DIRECT reads; an asynchronous read-ahead). ../shared/ARCHITECTURE.md §4-6 and
 * ../shared/REFERENCE.md §2.
 *
 * Threads: a bk_storage belongs to one libuv loop (the bookie's), and every function here is
 * called on that loop; every callback runs on it. Disk work happens elsewhere: the journal
 * thread (append + group-commit fdatasync), the flush thread (write cache -> entry log + index)
 * and libaio (entry-log reads, completions polled on the loop). Nothing here blocks the loop
 * on a disk.
 *
 * Payload ownership: an add takes a reference to the caller's mg_buf range; a read hands out
 * entries as (mg_buf, offset, length) views valid during the callback (take a reference with
 * mg_buf_ref to keep one), so an entry is sent to the network without a copy.
 *
 * Errors: MG_EFENCED (add to a fenced ledger), MG_ENOTFOUND (no such entry or ledger),
 * MG_ECORRUPT (the stored bytes fail their checksum or point outside a file: reported for that
 * entry, never served), MG_EREADONLY (the storage hit an I/O error on write or sync and refuses
 * adds until bk_storage_resume or a restart; reads go on), MG_ENOSPC (the same read-only state,
 * entered because the disk was full: adds are refused with it so that the writer learns why),
 * MG_EAGAIN (a bounded queue is full: retry later), MG_ECLOSED.
 */

typedef struct bk_storage bk_storage;

typedef struct bk_storage_opts {
    const char *journal_dir;
    const char *ledger_dir;           /* entry logs and the location index */
    size_t write_cache_bytes;         /* both halves together; 0 = 64 MiB */
    size_t read_cache_bytes;          /* 0 = 64 MiB */
    uint32_t journal_group_wait_us;   /* 0 = 1000 */
    uint32_t journal_group_bytes_max; /* 0 = 4 MiB (BK_JOURNAL_GROUP_BYTES_MAX_DEFAULT) */
    uint64_t journal_segment_bytes;   /* 0 = 256 MiB */
    uint64_t entrylog_bytes_max;      /* 0 = 1 GiB */
    bool readahead;                   /* asynchronous read-ahead on (default on: set false to
                                         disable for comparisons) */
    size_t readahead_bytes;           /* one read-ahead window; 0 = 4 MiB */
    unsigned aio_depth;               /* in-flight O_DIRECT reads; 0 = 32 */
    bk_io *io;                        /* NULL = a plain one owned by the storage */
    mg_metrics *metrics;              /* NULL = no metrics */
} bk_storage_opts;

typedef void (*bk_add_done_cb)(int status, int64_t ledger_id, int64_t entry_id, void *arg);
/* entries[0..count) in entry order; valid during the callback only. */
typedef void (*bk_read_done_cb)(int status, const bk_entry *entries, size_t count, void *arg);
typedef void (*bk_lac_done_cb)(int status, int64_t last_entry_id, void *arg);
typedef void (*bk_done_cb)(int status, void *arg);

/* Opens the storage (creating directories), replays the journal into the write cache, starts
 * the threads. Synchronous (start-up). Errors: MG_EIO, MG_ECORRUPT, MG_ENOMEM, MG_EAGAIN
 * (directories locked by another bookie). */
int bk_storage_open(uv_loop_t *loop, const bk_storage_opts *opts, bk_storage **out);

/* Stops accepting work, completes what is in flight, flushes the write cache, closes. */
void bk_storage_close(bk_storage *s, bk_done_cb closed_cb, void *arg);

/* Adds an entry: payload[off, off + len) of buf (a reference is taken). done runs once the
 * journal record is on disk. Entry ids of a ledger need not arrive in order. */
int bk_storage_add(bk_storage *s, int64_t ledger_id, int64_t entry_id, mg_buf *buf, size_t off,
                   size_t len, bk_add_done_cb done, void *arg);

/* Reads one entry. */
int bk_storage_read(bk_storage *s, int64_t ledger_id, int64_t entry_id, bk_read_done_cb done,
                    void *arg);

/* Reads entries first..last of a ledger, stopping early at max_bytes (at least one entry is
 * returned if the first exists) or at the first missing entry. */
int bk_storage_read_range(bk_storage *s, int64_t ledger_id, int64_t first_entry_id,
                          int64_t last_entry_id, size_t max_bytes, bk_read_done_cb done, void *arg);

/* The highest entry id stored for the ledger (-1 if none; MG_ENOTFOUND if the ledger is
 * unknown). */
int bk_storage_read_lac(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg);

/* Fences a ledger durably: later adds fail with MG_EFENCED, reads still work. done gets the
 * last entry id stored. */
int bk_storage_fence(bk_storage *s, int64_t ledger_id, bk_lac_done_cb done, void *arg);

/* Deletes a ledger: its index entries go at once, its bytes when garbage collection compacts
 * the entry logs that hold them. */
int bk_storage_delete(bk_storage *s, int64_t ledger_id, bk_done_cb done, void *arg);

/* Flushes the write cache now: done runs once every entry added before the call is in an entry
 * log and the index (and the journal checkpoint has moved past it), or with the error that
 * stopped the flush. */
int bk_storage_flush(bk_storage *s, bk_done_cb done, void *arg);

/* Runs a garbage-collection pass now (normally one runs every minute): entry logs with no live
 * entries are removed, those whose live share fell below half are compacted. done runs when
 * the pass is over. */
int bk_storage_gc(bk_storage *s, bk_done_cb done, void *arg);

typedef struct bk_storage_stats {
    uint64_t adds;
    uint64_t reads_write_cache; /* entries served from each source */
    uint64_t reads_read_cache;
    uint64_t reads_disk;
    uint64_t disk_reads; /* O_DIRECT reads issued, foreground and read-ahead */
    uint64_t disk_read_bytes;
    uint64_t disk_walks; /* of those, stretches found by a walk (two index look-ups) */
    uint64_t readahead_windows;
    uint64_t readahead_bytes;      /* read into the read cache by read-ahead */
    uint64_t readahead_used_bytes; /* of those, served to readers */
    uint64_t flushes;
    uint64_t gc_logs_removed;
    uint64_t gc_bytes_compacted;
} bk_storage_stats;

/* Counters since open. Loop thread. */
void bk_storage_stats_get(const bk_storage *s, bk_storage_stats *out);

/* True once an I/O error put the storage in its read-only error state. Loop thread. */
bool bk_storage_read_only(const bk_storage *s);

/* 0 while writable, else the error that made the storage read-only (MG_ENOSPC: the disk was
 * full; MG_EIO or another code: an I/O error). Any thread (an atomic read), for health checks. */
int bk_storage_state(const bk_storage *s);

/* Makes a read-only storage writable again once the cause is gone (storage.c, "Error state"):
 * probes that both directories take a write and an fdatasync, resumes the journal and the entry
 * logs, runs the failed flush again. done(MG_OK) once writable (also when it was not
 * read-only); else done gets why it stays read-only: MG_ENOSPC (still full), MG_EIO,
 * MG_EREADONLY (a journal fdatasync had failed: only a restart recovers). done never runs inside
 * the call. Returns MG_OK, MG_EAGAIN (a flush is finishing: ask again), MG_ECLOSED, MG_ENOMEM.
 * Loop thread. */
int bk_storage_resume(bk_storage *s, bk_done_cb done, void *arg);

/* ---- RPC server -------------------------------------------------------------------------- */
/*
 * The bookie RPC server: accepts connections on TCP (port 3181 by default), decodes the frames
 * of the bookie RPC (src/bookie/protocol.h), hands each request to the storage engine and
 * answers, in completion order.
 *
 * One server belongs to one libuv loop, the storage engine's; every function is called on it.
 * Reads are served without a copy: a response references the entries' buffers and uv_write
 * sends them from there. Bad input harms only the connection it came on: an unknown op is
 * answered MG_ENOTSUP, missing fields or negative ids MG_EINVAL, a malformed frame closes that
 * connection (metric bookie_rpc_protocol_errors_total).
 *
 * Metrics (when opts.metrics is set): bookie_rpc_requests_total{op},
 * bookie_rpc_request_latency_ms{op} (summary, from decoding to queueing the response),
 * bookie_rpc_connections, bookie_rpc_protocol_errors_total.
 */

typedef struct bk_server bk_server;

typedef struct bk_server_opts {
    const char *host;               /* numeric IPv4 or IPv6 address to bind; NULL = "0.0.0.0" */
    uint16_t port;                  /* 0 = ephemeral (see bk_server_port); the usual is
                                       BK_RPC_PORT_DEFAULT */
    uint32_t inflight_max_per_conn; /* 0 = BK_SERVER_INFLIGHT_DEFAULT (1000): a connection with
                                       this many requests in progress is not read from until
                                       one completes (backpressure); at most
                                       BK_SERVER_INFLIGHT_MAX */
    uint32_t range_bytes_max;       /* cap on READ_RANGE max_bytes; 0 = BK_RANGE_BYTES_MAX
                                       (16 MiB), which is also the largest accepted */
    mg_metrics *metrics;            /* NULL = no metrics; must outlive the server */
    uint32_t connections_max;       /* connections served at once; past it a new one is closed
                                       at accept (bookie_rpc_connections_refused_total); 0 =
                                       BK_SERVER_CONNECTIONS_MAX; the roles pass their share of
                                       the descriptor limit (mg_fd_budget) */
} bk_server_opts;

/* Binds, listens and starts accepting on loop. storage is borrowed: it must stay open until
 * bk_server_close's callback has run (requests in progress complete into it). On success *out
 * is the server, owned by the caller until bk_server_close. Returns MG_OK, MG_EINVAL (bad host
 * or option), MG_ENOMEM, or the converted bind/listen error (e.g. the port is taken); on error
 * nothing is left listening, but the loop must run once more to release the handle's memory. */
int bk_server_start(uv_loop_t *loop, bk_storage *storage, const bk_server_opts *opts,
                    bk_server **out);

/* The port listened on (the ephemeral one when opts.port was 0). */
uint16_t bk_server_port(const bk_server *s);

/* Stops listening and closes every connection (responses not yet written are dropped). Once
 * every request handed to the storage has called back and every handle is closed, closed(arg)
 * runs (may be NULL) and the server is freed. Call once. */
void bk_server_close(bk_server *s, void (*closed)(void *arg), void *arg);

/* ---- in-process transport ---------------------------------------------------------------- */
/*
 * The in-process path between a bk_client and a bk_storage of the same process
 * (../shared/ARCHITECTURE.md §4, §6: standalone's broker reaches its bookie without loopback
 * TCP). The storage stays on its own loop and thread; requests cross to it through one bounded
 * queue and answers come back through another (common/queue.h), so neither loop ever waits for
 * the other. The bytes never move: an add hands the storage a reference to the writer's payload
 * (with the small prefix in front of it, the one copy, made on the storage's thread), and a read
 * hands the client references to the storage's buffers.
 *
 * Life cycle (the order `magnetar standalone` follows):
 *
 *     bk_local_create (storage thread) --> bk_local_attach (client thread) --> serving
 *        --> the client closes (every request answered) --> bk_local_detach (client thread)
 *        --> bk_local_close (storage thread, before the storage closes) --> freed once both
 *            queues are closed
 *
 * Bounds: at most BK_LOCAL_INFLIGHT_MAX requests are in flight (past it the client's call
 * returns MG_EAGAIN, as a full connection would); the answer queue is as large, so an answer
 * always finds room.
 */

/* Requests in flight: as many as a client keeps pending on one connection. */
#define BK_LOCAL_INFLIGHT_MAX 65536u

typedef struct bk_local bk_local;

/* Creates the transport for storage, whose loop is storage_loop; call on that loop's thread.
 * MG_ENOMEM, or the queue's errors. */
int bk_local_create(uv_loop_t *storage_loop, bk_storage *storage, bk_local **out);

/* Routes client's requests for addr (the bookie's advertised "host:port") to the storage. Call
 * on client_loop's thread, once. MG_EINVAL, MG_ENOMEM. */
int bk_local_attach(bk_local *l, uv_loop_t *client_loop, bk_client *client, const char *addr);

/* The client side is done (its client closed: nothing in flight). Call on the client loop's
 * thread, then run that loop until its handles closed. */
void bk_local_detach(bk_local *l);

/* The storage side is done; call on the storage loop's thread before the storage closes. The
 * transport is freed once both sides are closed. */
void bk_local_close(bk_local *l);

#endif
