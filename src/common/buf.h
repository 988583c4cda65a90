/*
 * Reference-counted buffers and buffer chains: the unit of zero-copy fan-out.
 *
 * An entry read from a storage node is placed in one mg_buf and sent to every consumer that
 * needs it without a copy; a chat frame is encoded once and the same bytes go to all of its
 * recipients. Each holder (a chain queued on a socket, a cache slot, a pending request) owns one
 * reference; the memory is released when the last reference is dropped.
 *
 * mg_buf
 *   An opaque block with a capacity (bytes available) and a length (bytes valid, <= capacity).
 *   Its data either follows the header in the same allocation (mg_buf_new), or is an external
 *   block released by a free function when the buffer dies (mg_buf_wrap, mg_buf_new_aligned for
 *   O_DIRECT I/O). The reference count is atomic, so references may be taken and dropped on any
 *   thread. The *contents* are not synchronised: one owner fills the buffer and sets its length
 *   while it holds the only reference, and from the moment it is shared (through a queue, a lock
 *   or another hand-off that orders memory) the bytes [0, len) are read-only.
 *
 * mg_slice
 *   A view [off, off + len) of a buffer's valid bytes that holds one reference to it.
 *
 * mg_chain
 *   An ordered list of at most MG_CHAIN_SLICES_MAX slices with their total length, embedded by
 *   value in its owner (a connection's output queue, a frame being assembled): the chain itself
 *   never allocates. It is what writev(2)/uv_write() send and what a frame parser reads across
 *   slice boundaries. A chain belongs to one thread (its loop); only the buffers are shared.
 *
 * Invariants:
 *   1. refcount >= 1 for a live buffer; the drop from 1 to 0 frees it, exactly once. Dropping a
 *      reference that is not held (a double unref) is a programmer error: MG_ASSERT catches it
 *      while the freed header still reads 0 (best effort, see buf.c), ASan always reports it as
 *      a use after free.
 *   2. len <= cap.
 *   3. Every slice in a chain has len > 0, off + len <= its buffer's length at append time, and
 *      owns exactly one reference; chain length == sum of slice lengths.
 */
#ifndef MG_COMMON_BUF_H
#define MG_COMMON_BUF_H

#include "common/limits.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct mg_buf mg_buf;

/* Allocates a buffer with room for capacity bytes (header and data in one mg_malloc block, data
 * aligned for any object type), length 0, refcount 1. The caller owns the one reference.
 * Returns NULL when the allocation fails (or capacity is so large that the size overflows).
 * Any thread. */
mg_buf *mg_buf_new(size_t capacity);

/* As mg_buf_new(src_size), then copies src_size bytes from src and sets the length to src_size.
 * src may be NULL only when src_size is 0. Returns NULL on allocation failure. Any thread. */
mg_buf *mg_buf_new_copy(const void *src, size_t src_size);

/* Allocates a buffer whose data block is aligned to align (a power of two, multiple of
 * sizeof(void *); asserted) with room for capacity bytes, e.g. for O_DIRECT reads. Length 0,
 * refcount 1, owned by the caller. Two allocations (header, aligned data); returns NULL if either
 * fails, with nothing left allocated. Any thread. */
mg_buf *mg_buf_new_aligned(size_t align, size_t capacity);

/* Wraps an existing memory block of size bytes in a buffer (capacity and length both size,
 * refcount 1, owned by the caller). When the last reference is dropped, free_fn(data, arg) is
 * called exactly once, on whichever thread drops it; free_fn may be NULL for memory that needs no
 * release (static data). On success the buffer owns data. Returns NULL when the header cannot be
 * allocated; then free_fn is NOT called and data stays owned by the caller. Any thread. */
mg_buf *mg_buf_wrap(void *data, size_t size, void (*free_fn)(void *data, void *arg), void *arg);

/* Returns buf, or an exact-size copy of it (buf's reference dropped) when more than a quarter of
 * its capacity is unused: for a buffer grown by doubling that is kept afterwards. When the copy
 * cannot be allocated the roomy original is just as good and is returned. Any thread. */
mg_buf *mg_buf_fit(mg_buf *buf);

/* Takes one more reference on buf (which must be live) and returns buf, so that
 * `x->buf = mg_buf_ref(b)` reads naturally. The caller owns the new reference. Any thread. */
mg_buf *mg_buf_ref(mg_buf *buf);

/* Drops one reference; the last one frees the buffer (calling the wrap free function, if any).
 * NULL is a no-op. buf must not be used by this holder afterwards. Asserts (aborts) when the
 * reference count would go below zero (a double unref). Any thread. */
void mg_buf_unref(mg_buf *buf);

/* The first byte of the buffer's data (capacity bytes are addressable). Writing is allowed only
 * while the caller holds the only reference (see the header comment). Any thread. */
uint8_t *mg_buf_data(mg_buf *buf);

/* The number of valid bytes. Any thread. */
size_t mg_buf_len(const mg_buf *buf);

/* The number of bytes the data block can hold. Any thread. */
size_t mg_buf_cap(const mg_buf *buf);

/* Sets the number of valid bytes after filling the data; asserts len <= capacity. Only by the
 * owner of the only reference, before the buffer is shared. */
void mg_buf_set_len(mg_buf *buf, size_t len);

/* The current reference count, for tests and assertions; another thread may change it the next
 * moment. Any thread. */
uint32_t mg_buf_refcount(const mg_buf *buf);

/* A view of bytes [off, off + len) of buf, holding one reference to buf. */
typedef struct mg_slice {
    mg_buf *buf;
    size_t off;
    size_t len;
} mg_slice;

/* A bounded, ordered list of slices. Fields are private: use the functions below. */
typedef struct mg_chain {
    mg_slice slices[MG_CHAIN_SLICES_MAX]; /* slices[0 .. slice_count) in order */
    uint32_t slice_count;
    size_t len_bytes; /* sum of slices[i].len */
} mg_chain;

/* Makes chain empty. Call once before first use (a zeroed chain is also valid and empty). */
void mg_chain_init(mg_chain *chain);

/* Drops the references of all slices and leaves the chain empty and reusable. The owner thread
 * of the chain. */
void mg_chain_reset(mg_chain *chain);

/* Appends the view [off, off + len) of buf's valid bytes, taking a new reference on buf (the
 * caller keeps its own). An empty view (len 0) adds nothing and returns MG_OK.
 * Returns MG_OK, MG_EINVAL when the range is not inside [0, mg_buf_len(buf)), or MG_ELIMIT when
 * the chain already holds MG_CHAIN_SLICES_MAX slices; on error the chain and buf's refcount are
 * unchanged. The owner thread of the chain. */
int mg_chain_append(mg_chain *chain, mg_buf *buf, size_t off, size_t len);

/* Copies src_size bytes from src into a new buffer and appends all of it; the chain holds the
 * only reference to that buffer. src_size 0 adds nothing. Returns MG_OK, MG_ELIMIT when the chain
 * is full (checked before allocating), or MG_ENOMEM; on error the chain is unchanged and nothing
 * stays allocated. The owner thread of the chain. */
int mg_chain_append_copy(mg_chain *chain, const void *src, size_t src_size);

/* Appends every slice of src to dst, taking a new reference for each (src is unchanged and
 * keeps its references; dst == src doubles the chain). All or nothing: returns MG_ELIMIT, with
 * dst unchanged, when the slices do not all fit; otherwise MG_OK. The owner thread of both. */
int mg_chain_append_chain(mg_chain *dst, const mg_chain *src);

/* Total number of bytes in the chain. */
size_t mg_chain_len(const mg_chain *chain);

/* Number of slices in the chain. */
size_t mg_chain_slice_count(const mg_chain *chain);

/* Removes n bytes from the front (asserts n <= mg_chain_len), dropping the reference of every
 * slice that is consumed completely and shortening the first partly consumed one — what a
 * completed (possibly partial) socket write does. The owner thread of the chain. */
void mg_chain_consume(mg_chain *chain, size_t n);

/* Copies up to dst_capacity bytes of the chain, starting offset bytes from its front, into dst.
 * Returns the number of bytes copied: min(dst_capacity, len - offset), 0 when offset >= len.
 * The chain is unchanged. */
size_t mg_chain_copy_out(const mg_chain *chain, size_t offset, void *dst, size_t dst_capacity);

/* Copies exactly n bytes starting offset bytes from the front into dst, across slice
 * boundaries, for parsing a frame header that may be split. Returns MG_OK, or MG_EAGAIN (dst
 * untouched) when the chain holds fewer than offset + n bytes — wait for more input. */
int mg_chain_peek(const mg_chain *chain, size_t offset, void *dst, size_t n);

/* Fills iov[0 ..) with one entry per slice, in order, for writev(2) or uv_write(); at most
 * iov_capacity entries. Returns the number of entries filled (fewer than mg_chain_slice_count
 * when iov_capacity is smaller: write those, consume what was written, repeat). The entries point
 * into the buffers and stay valid while the chain holds those slices. On Unix uv_buf_t has the
 * same layout as struct iovec ({base, len}; checked at compile time in buf.c), so the array can
 * be passed to uv_write() as (uv_buf_t *)iov. */
size_t mg_chain_to_iovec(const mg_chain *chain, struct iovec *iov, size_t iov_capacity);

#endif
