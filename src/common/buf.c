/*
 * Reference-counted buffers and chains (see buf.h for the model and invariants).
 *
 * Reference counting: taking a reference needs no ordering (the taker already holds one, so the
 * buffer cannot die underneath it): relaxed increment. Dropping one is an acquire-release
 * decrement: release so that this holder's uses of the bytes happen before the count drops,
 * acquire so that the thread that takes it to zero sees all of them before freeing. (The usual
 * release decrement plus an acquire fence on the last drop is equivalent, but ThreadSanitizer
 * does not model fences; on x86 both compile to the same locked instruction.)
 *
 * Layout: the reference count is not in the first 16 bytes of the header. glibc reuses those
 * bytes of a freed block for its free-list links, so a double unref right after the free still
 * finds a count of 0 and MG_ASSERT fires rather than silently corrupting the heap. This is only
 * a best effort (the memory is freed); ASan reports every such case as a use after free.
 */
#include "common/buf.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/limits.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <uv.h>

struct mg_buf {
    uint8_t *data;                          /* inline_data, or the wrapped block */
    void (*free_fn)(void *data, void *arg); /* NULL for inline data and unowned blocks */
    _Atomic uint32_t refcount;
    size_t cap_bytes;
    size_t len_bytes;
    void *free_arg;
    alignas(max_align_t) uint8_t inline_data[];
};

_Static_assert(offsetof(struct mg_buf, refcount) >= 16, "see the layout note above");

/* uv_buf_t and struct iovec must be interchangeable (buf.h promises it). */
_Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec), "uv_buf_t is not an iovec");
_Static_assert(offsetof(uv_buf_t, base) == offsetof(struct iovec, iov_base), "uv_buf_t.base");
_Static_assert(offsetof(uv_buf_t, len) == offsetof(struct iovec, iov_len), "uv_buf_t.len");

mg_buf *mg_buf_new(size_t capacity)
{
    size_t total_bytes;
    if (__builtin_add_overflow(sizeof(struct mg_buf), capacity, &total_bytes))
        return NULL;
    mg_buf *buf = mg_malloc(total_bytes);
    if (buf == NULL)
        return NULL;
    buf->data = buf->inline_data;
    buf->free_fn = NULL;
    buf->free_arg = NULL;
    atomic_init(&buf->refcount, 1);
    buf->cap_bytes = capacity;
    buf->len_bytes = 0;
    return buf;
}

mg_buf *mg_buf_new_copy(const void *src, size_t src_size)
{
    MG_ASSERT(src != NULL || src_size == 0);
    mg_buf *buf = mg_buf_new(src_size);
    if (buf == NULL)
        return NULL;
    if (src_size > 0)
        memcpy(buf->data, src, src_size);
    buf->len_bytes = src_size;
    return buf;
}

static void mg__buf_free_aligned(void *data, void *arg)
{
    (void)arg;
    mg_free(data);
}

mg_buf *mg_buf_new_aligned(size_t align, size_t capacity)
{
    void *data = mg_aligned_alloc(align, capacity);
    if (data == NULL)
        return NULL;
    mg_buf *buf = mg_buf_wrap(data, capacity, mg__buf_free_aligned, NULL);
    if (buf == NULL) {
        mg_free(data);
        return NULL;
    }
    buf->len_bytes = 0;
    return buf;
}

mg_buf *mg_buf_wrap(void *data, size_t size, void (*free_fn)(void *data, void *arg), void *arg)
{
    MG_ASSERT(data != NULL || size == 0);
    mg_buf *buf = mg_malloc(sizeof(struct mg_buf));
    if (buf == NULL)
        return NULL;
    buf->data = data;
    buf->free_fn = free_fn;
    buf->free_arg = arg;
    atomic_init(&buf->refcount, 1);
    buf->cap_bytes = size;
    buf->len_bytes = size;
    return buf;
}

mg_buf *mg_buf_ref(mg_buf *buf)
{
    MG_ASSERT(buf != NULL);
    uint32_t old = atomic_fetch_add_explicit(&buf->refcount, 1, memory_order_relaxed);
    MG_ASSERT(old != 0);          /* a reference to a dead buffer */
    MG_ASSERT(old != UINT32_MAX); /* the count wrapped */
    return buf;
}

void mg_buf_unref(mg_buf *buf)
{
    if (buf == NULL)
        return;
    uint32_t old = atomic_fetch_sub_explicit(&buf->refcount, 1, memory_order_acq_rel);
    MG_ASSERT(old != 0); /* double unref */
    if (old != 1)
        return;
    if (buf->free_fn != NULL)
        buf->free_fn(buf->data, buf->free_arg);
    mg_free(buf);
}

uint8_t *mg_buf_data(mg_buf *buf)
{
    return buf->data;
}

size_t mg_buf_len(const mg_buf *buf)
{
    return buf->len_bytes;
}

size_t mg_buf_cap(const mg_buf *buf)
{
    return buf->cap_bytes;
}

void mg_buf_set_len(mg_buf *buf, size_t len)
{
    MG_ASSERT(len <= buf->cap_bytes);
    buf->len_bytes = len;
}

uint32_t mg_buf_refcount(const mg_buf *buf)
{
    return atomic_load_explicit(&buf->refcount, memory_order_relaxed);
}

void mg_chain_init(mg_chain *chain)
{
    chain->slice_count = 0;
    chain->len_bytes = 0;
}

void mg_chain_reset(mg_chain *chain)
{
    MG_ASSERT(chain->slice_count <= MG_CHAIN_SLICES_MAX);
    for (uint32_t i = 0; i < chain->slice_count; i++) {
        mg_buf_unref(chain->slices[i].buf);
        chain->slices[i].buf = NULL;
    }
    chain->slice_count = 0;
    chain->len_bytes = 0;
}

int mg_chain_append(mg_chain *chain, mg_buf *buf, size_t off, size_t len)
{
    MG_ASSERT(buf != NULL);
    if (off > buf->len_bytes || len > buf->len_bytes - off)
        return MG_EINVAL;
    if (len == 0)
        return MG_OK;
    if (chain->slice_count >= MG_CHAIN_SLICES_MAX)
        return MG_ELIMIT;
    chain->slices[chain->slice_count++] =
        (mg_slice){ .buf = mg_buf_ref(buf), .off = off, .len = len };
    chain->len_bytes += len;
    return MG_OK;
}

int mg_chain_append_copy(mg_chain *chain, const void *src, size_t src_size)
{
    if (src_size == 0)
        return MG_OK;
    if (chain->slice_count >= MG_CHAIN_SLICES_MAX)
        return MG_ELIMIT;
    mg_buf *buf = mg_buf_new_copy(src, src_size);
    if (buf == NULL)
        return MG_ENOMEM;
    /* The chain takes over the reference mg_buf_new_copy gave us. */
    chain->slices[chain->slice_count++] = (mg_slice){ .buf = buf, .off = 0, .len = src_size };
    chain->len_bytes += src_size;
    return MG_OK;
}

int mg_chain_append_chain(mg_chain *dst, const mg_chain *src)
{
    /* Snapshots, so that dst == src appends the original slices once. */
    uint32_t src_count = src->slice_count;
    size_t src_len_bytes = src->len_bytes;
    if (src_count > MG_CHAIN_SLICES_MAX - dst->slice_count)
        return MG_ELIMIT;
    for (uint32_t i = 0; i < src_count; i++) {
        mg_slice s = src->slices[i];
        s.buf = mg_buf_ref(s.buf);
        dst->slices[dst->slice_count++] = s;
    }
    dst->len_bytes += src_len_bytes;
    return MG_OK;
}

size_t mg_chain_len(const mg_chain *chain)
{
    return chain->len_bytes;
}

size_t mg_chain_slice_count(const mg_chain *chain)
{
    return chain->slice_count;
}

void mg_chain_consume(mg_chain *chain, size_t n)
{
    MG_ASSERT(n <= chain->len_bytes);
    uint32_t dropped = 0;
    while (n > 0) {
        MG_ASSERT(dropped < chain->slice_count);
        mg_slice *s = &chain->slices[dropped];
        if (n < s->len) {
            s->off += n;
            s->len -= n;
            chain->len_bytes -= n;
            break;
        }
        n -= s->len;
        chain->len_bytes -= s->len;
        mg_buf_unref(s->buf);
        s->buf = NULL;
        dropped++;
    }
    if (dropped > 0) {
        chain->slice_count -= dropped;
        memmove(&chain->slices[0], &chain->slices[dropped],
                chain->slice_count * sizeof(chain->slices[0]));
    }
}

size_t mg_chain_copy_out(const mg_chain *chain, size_t offset, void *dst, size_t dst_capacity)
{
    uint8_t *out = dst;
    size_t copied_bytes = 0;
    for (uint32_t i = 0; i < chain->slice_count && copied_bytes < dst_capacity; i++) {
        const mg_slice *s = &chain->slices[i];
        if (offset >= s->len) {
            offset -= s->len;
            continue;
        }
        size_t n = s->len - offset;
        if (n > dst_capacity - copied_bytes)
            n = dst_capacity - copied_bytes;
        memcpy(out + copied_bytes, s->buf->data + s->off + offset, n);
        copied_bytes += n;
        offset = 0;
    }
    return copied_bytes;
}

int mg_chain_peek(const mg_chain *chain, size_t offset, void *dst, size_t n)
{
    if (offset > chain->len_bytes || n > chain->len_bytes - offset)
        return MG_EAGAIN;
    size_t copied_bytes = mg_chain_copy_out(chain, offset, dst, n);
    MG_ASSERT(copied_bytes == n);
    return MG_OK;
}

size_t mg_chain_to_iovec(const mg_chain *chain, struct iovec *iov, size_t iov_capacity)
{
    size_t count = chain->slice_count < iov_capacity ? chain->slice_count : iov_capacity;
    for (size_t i = 0; i < count; i++) {
        const mg_slice *s = &chain->slices[i];
        iov[i].iov_base = s->buf->data + s->off;
        iov[i].iov_len = s->len;
    }
    return count;
}

mg_buf *mg_buf_fit(mg_buf *buf)
{
    size_t len = mg_buf_len(buf);
    size_t cap = mg_buf_cap(buf);
    if (cap - len <= cap / 4)
        return buf;
    mg_buf *copy = mg_buf_new_copy(mg_buf_data(buf), len);
    if (copy == NULL)
        return buf;
    mg_buf_unref(buf);
    return copy;
}
