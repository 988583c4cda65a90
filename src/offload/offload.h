/*
 * Offload: the cold tier's object format (docs/offload.md). A closed ledger's entries are written
 * as one object: zstd-compressed blocks of entries, an index of the blocks and a fixed-size
 * footer. Objects live behind a driver (a table of operations), so an object-store driver can
 * come after the filesystem one without touching callers.
 *
 * Object layout (all integers little-endian):
 *
 *   block 0 .. block n-1    each a zstd frame of its raw bytes; raw bytes are entries, each
 *                           u64 entry_id, u32 size, then size bytes, in entry-id order
 *   index                   u32 block_count, u16 metadata_bytes, metadata, then per block
 *                           (40 bytes): i64 first_entry_id, u32 entry_count, u32 reserved (0),
 *                           u64 offset, u32 compressed_bytes, u32 raw_bytes,
 *                           u32 crc32c of the compressed bytes, u32 crc32c of the raw bytes
 *   footer (80 bytes)       8 bytes magic "MGOFFLD\0", u32 version (1), u32 flags (0),
 *                           i64 ledger_id, u64 entry_count, i64 first_entry_id,
 *                           i64 last_entry_id, u64 raw_bytes (sum of the entries' sizes),
 *                           u64 index_offset, u32 index_bytes, u32 index crc32c,
 *                           u32 block_count, u32 crc32c of the footer's first 76 bytes
 *
 * Invariants: entries are contiguous (entry_id = first_entry_id + i), an object holds at least
 * one entry; blocks follow each other from offset 0; the index follows the last block and the
 * footer the index, ending the object. Every check a reader makes names the object and the part
 * that failed (struct of_err), and a block whose checksum fails is never served.
 *
 * Threads: the synchronous functions block (file I/O, compression) and may run on any thread,
 * one call at a time per writer; a reader is immutable once open, so reads on one reader may
 * run concurrently. The *_async functions run the same work on libuv's thread pool and call back
 * on the loop: a function that returns an error never calls its callback.
 *
 * Writer states: OPEN --add/finish ok--> OPEN/DONE; any failure --> FAILED (sticky: the
 * temporary is removed, every later call returns MG_ESTATE); abort from OPEN or FAILED.
 */
#ifndef MG_OFFLOAD_OFFLOAD_H
#define MG_OFFLOAD_OFFLOAD_H

#include "offload/limits.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* An error's message: which object and what went wrong. Every function taking one may be given
 * NULL; on failure msg is set (NUL-terminated), on success it is left untouched. */
struct of_err {
    char msg[OF_ERR_MSG_BYTES];
};

/* ---- Drivers --------------------------------------------------------------------------------
 * A driver stores named objects. Names are 1..OF_NAME_BYTES_MAX bytes of [A-Za-z0-9._-], not
 * starting with '.'. An object being written is invisible (not listed, not readable) until
 * complete() makes it whole atomically. All operations may be called from any thread at once
 * (on different write handles). Errors: MG_EINVAL (bad name), MG_ENOTFOUND, MG_EEXIST,
 * MG_ENOSPC (no space or a file-size limit), MG_EIO / MG_EPERM / MG_ESYS, MG_ENOMEM. */
struct of_driver_ops {
    /* Starts object `name` for writing; *handle is passed to append/complete/abort. */
    int (*create)(void *ctx, const char *name, void **handle, struct of_err *err);
    /* Appends size bytes. On failure the caller still calls abort. */
    int (*append)(void *ctx, void *handle, const void *data, size_t size, struct of_err *err);
    /* Makes the object durable and visible under its name; frees the handle, even on failure
     * (then nothing is left behind). */
    int (*complete)(void *ctx, void *handle, struct of_err *err);
    /* Drops an object being written, leaving nothing behind; frees the handle. */
    void (*abort)(void *ctx, void *handle);
    /* Reads exactly size bytes at offset of a complete object; past its end is MG_ECORRUPT. */
    int (*read)(void *ctx, const char *name, uint64_t offset, void *dst, size_t size,
                struct of_err *err);
    /* The size of a complete object. */
    int (*stat)(void *ctx, const char *name, uint64_t *size_bytes, struct of_err *err);
    /* Deletes a complete object (durably). */
    int (*remove)(void *ctx, const char *name, struct of_err *err);
    /* Calls fn for each complete object; a non-zero return from fn stops and is returned. */
    int (*list)(void *ctx, int (*fn)(void *arg, const char *name), void *arg, struct of_err *err);
    /* Removes what writers left behind in a crash; *removed_count counts them. Call at start,
     * before any writer. */
    int (*cleanup)(void *ctx, size_t *removed_count, struct of_err *err);
    void (*destroy)(void *ctx);
};

struct of_driver {
    const struct of_driver_ops *ops;
    void *ctx;
};

/* Creates the filesystem driver on directory `dir` (which must exist and be a directory). Each
 * object is a file named after it; a writer writes ".tmp-<name>", fdatasyncs it, renames it and
 * fsyncs the directory, so a crash leaves only a temporary, which cleanup removes.
 * [out] *out: owned by the caller, released with of_driver_destroy. Errors: MG_EINVAL (dir
 * empty or over OF_DIR_BYTES_MAX), MG_ENOTFOUND, MG_EPERM, MG_ENOMEM, MG_ESYS. Any thread. */
int of_fs_driver_create(const char *dir, struct of_driver **out, struct of_err *err);

/* Releases a driver; no operation may be running on it. NULL is a no-op. */
void of_driver_destroy(struct of_driver *driver);

/* Removes temporaries left by a crash (driver->ops->cleanup). */
int of_driver_cleanup(struct of_driver *driver, size_t *removed_count, struct of_err *err);

/* ---- Writer ---------------------------------------------------------------------------------*/

struct of_writer_opts {
    uint32_t block_bytes; /* 0: OF_BLOCK_BYTES_DEFAULT; else within [MIN, MAX] */
    int zstd_level;       /* 0: OF_ZSTD_LEVEL_DEFAULT; else within [MIN, MAX] */
    const void *metadata; /* copied; up to OF_METADATA_BYTES_MAX bytes */
    size_t metadata_bytes;
};

struct of_writer;

/* Begins an object for ledger `ledger_id` (>= 0) on `driver` (which must outlive the writer).
 * opts may be NULL (defaults). The object's id is chosen here: "ledger-<id>-<16 hex>".
 * [out] *out: released by of_writer_finish or of_writer_abort. Errors: MG_EINVAL (options out of
 * range), MG_ELIMIT (metadata too long), MG_ENOMEM, the driver's create errors. */
int of_writer_begin(struct of_driver *driver, int64_t ledger_id, const struct of_writer_opts *opts,
                    struct of_writer **out, struct of_err *err);

/* Adds one entry (copied): entry ids are contiguous, the first one >= 0. May compress and write
 * a block. Errors: MG_EINVAL (id out of order), MG_ELIMIT (size over OF_ENTRY_BYTES_MAX, or
 * too many entries or blocks), MG_ENOSPC / MG_EIO (the writer is then FAILED), MG_ESTATE. */
int of_writer_add(struct of_writer *w, int64_t entry_id, const void *data, size_t size,
                  struct of_err *err);

/* Writes the last block, the index and the footer and completes the object. On success copies
 * the object's id into object_id (capacity OF_NAME_BYTES_MAX + 1). The writer is released
 * whatever the result; on failure nothing of the object is left. Errors: MG_EINVAL (no entries),
 * the driver's errors. */
int of_writer_finish(struct of_writer *w, char *object_id, struct of_err *err);

/* Drops the object being written (nothing is left) and releases the writer. NULL is a no-op. */
void of_writer_abort(struct of_writer *w);

/* The object id the writer will complete (valid until finish or abort). */
const char *of_writer_object_id(const struct of_writer *w);

/* ---- Reader ---------------------------------------------------------------------------------*/

/* What an object's footer says. */
struct of_info {
    int64_t ledger_id;
    uint64_t entry_count;
    int64_t first_entry_id;
    int64_t last_entry_id;
    uint64_t raw_bytes;
    uint64_t object_bytes;
    uint32_t block_count;
    uint32_t metadata_bytes;
    uint8_t metadata[OF_METADATA_BYTES_MAX];
};

struct of_entry {
    int64_t entry_id;
    const uint8_t *data; /* points into the result's blocks */
    size_t size;
};

/* The result of a read: entries from the first asked for to the last that the budget allowed.
 * Owned by the caller; release with of_entries_free. */
struct of_entries {
    size_t count;
    struct of_entry *entries;
    /* private */
    uint8_t **blocks;
    size_t block_count;
};

struct of_reader;

/* Opens object `object_id`: reads and checks its footer and index. [out] *out: released with
 * of_reader_close. Errors: MG_ENOTFOUND, MG_EINVAL (bad name), MG_ECORRUPT (truncated, wrong
 * magic or version, a checksum or a field that does not add up; the message says which),
 * MG_ENOMEM, the driver's read errors. */
int of_reader_open(struct of_driver *driver, const char *object_id, struct of_reader **out,
                   struct of_err *err);

const struct of_info *of_reader_info(const struct of_reader *r);

/* Reads entries [first, last] (within the object): the block holding `first`, then following
 * blocks while their raw bytes stay within budget_bytes in total (at least one block is always
 * read, so a point read costs one block). out->entries end at `last` or at the last block read;
 * the caller continues from the entry after. Each block is checked (checksums of its compressed
 * and raw bytes, its entries against the index) before anything is served. Errors: MG_EINVAL
 * (range outside the object), MG_ECORRUPT, MG_ENOMEM, the driver's read errors; on error out
 * holds nothing. */
int of_reader_read(struct of_reader *r, int64_t first, int64_t last, size_t budget_bytes,
                   struct of_entries *out, struct of_err *err);

void of_reader_close(struct of_reader *r);

void of_entries_free(struct of_entries *e);

/* Reads every block back and checks everything (what the managed ledger does before deleting the
 * bookie copy): holds one block at a time. info may be NULL. Errors as of_reader_open and
 * of_reader_read. */
int of_verify(struct of_driver *driver, const char *object_id, struct of_info *info,
              struct of_err *err);

/* Deletes an object. Errors: MG_ENOTFOUND, MG_EINVAL, the driver's errors. */
int of_delete(struct of_driver *driver, const char *object_id, struct of_err *err);

/* ---- Asynchronous API -----------------------------------------------------------------------
 * Each call queues the blocking work on libuv's thread pool (uv_queue_work) and calls cb on
 * `loop` with the result. The request is the caller's memory and must stay valid until cb; its
 * inputs (entry data included) too. One request at a time per writer. Call from the loop's
 * thread. Returns MG_OK (cb will be called) or an error from uv_queue_work (cb never called). */

enum of_req_type {
    OF_REQ_ADD,
    OF_REQ_FINISH,
    OF_REQ_OPEN,
    OF_REQ_READ,
    OF_REQ_VERIFY,
    OF_REQ_DELETE
};

struct of_req;
typedef void (*of_req_done_cb)(struct of_req *req, int status);

struct of_req {
    void *data; /* the caller's */
    /* results, valid in cb: err on failure, and per type: object_id (FINISH), reader (OPEN, now
     * the caller's), entries (READ, the caller's), info (VERIFY) */
    struct of_err err;
    char object_id[OF_NAME_BYTES_MAX + 1];
    struct of_reader *reader;
    struct of_entries entries;
    struct of_info info;
    /* private */
    uv_work_t work;
    enum of_req_type type;
    of_req_done_cb cb;
    int status;
    struct of_driver *driver;
    struct of_writer *writer;
    int64_t entry_id;
    int64_t last;
    const void *entry;
    size_t size;
};

int of_writer_add_async(uv_loop_t *loop, struct of_req *req, struct of_writer *w, int64_t entry_id,
                        const void *data, size_t size, of_req_done_cb cb);
int of_writer_finish_async(uv_loop_t *loop, struct of_req *req, struct of_writer *w,
                           of_req_done_cb cb);
int of_reader_open_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                         const char *object_id, of_req_done_cb cb);
int of_reader_read_async(uv_loop_t *loop, struct of_req *req, struct of_reader *r, int64_t first,
                         int64_t last, size_t budget_bytes, of_req_done_cb cb);
int of_verify_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                    const char *object_id, of_req_done_cb cb);
int of_delete_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                    const char *object_id, of_req_done_cb cb);

#endif
