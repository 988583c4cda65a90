/*
 * The offload object format, its writer and reader, and the asynchronous wrappers
 * (offload.h has the layout; docs/offload.md the reasons).
 *
 * The encoding is written here rather than with a serialisation library: the layout is a few
 * fixed little-endian records that must stay byte-for-byte stable across versions, and an
 * object-store driver will read the footer and index with ranged GETs at known offsets.
 *
 * Memory: a writer holds one block of raw entries (block_bytes, or one larger entry) and its
 * compressed copy, plus the index (40 bytes a block). A reader holds the index; a read holds the
 * raw blocks it covers, within its budget (at least one block).
 */
#include "offload/offload_int.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/crc32c.h"
#include "common/error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <zstd.h>

#define OF_MAGIC        "MGOFFLD"
#define OF_VERSION      1u
#define OF_FOOTER_BYTES 80u
#define OF_INDEX_HEAD   6u
#define OF_INDEX_REC    40u

int of__errf(struct of_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

bool of__name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > OF_NAME_BYTES_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- little-endian codec ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

struct of_block {
    int64_t first_entry_id;
    uint32_t entry_count;
    uint64_t offset;
    uint32_t compressed_bytes;
    uint32_t raw_bytes;
    uint32_t crc_compressed;
    uint32_t crc_raw;
};

/* ---- writer ---- */

enum of_writer_state { OF_W_OPEN, OF_W_FAILED };

struct of_writer {
    struct of_driver *driver;
    void *handle;
    enum of_writer_state state;
    int64_t ledger_id;
    uint32_t block_bytes;
    int zstd_level;
    ZSTD_CCtx *cctx;
    char object_id[OF_NAME_BYTES_MAX + 1];
    uint8_t metadata[OF_METADATA_BYTES_MAX];
    size_t metadata_bytes;
    /* the block being filled */
    uint8_t *raw;
    size_t raw_size, raw_cap;
    uint32_t raw_count;
    int64_t raw_first;
    uint8_t *comp;
    size_t comp_cap;
    /* what is written */
    struct of_block *blocks;
    size_t block_count, block_cap;
    uint64_t offset;
    uint64_t entry_count;
    uint64_t raw_total;
    int64_t first_entry_id, next_entry_id;
};

const char *of_writer_object_id(const struct of_writer *w)
{
    return w->object_id;
}

static void writer_free(struct of_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    mg_free(w->raw);
    mg_free(w->comp);
    mg_free(w->blocks);
    mg_free(w);
}

void of_writer_abort(struct of_writer *w)
{
    if (!w)
        return;
    if (w->handle)
        w->driver->ops->abort(w->driver->ctx, w->handle);
    writer_free(w);
}

/* Enters FAILED: the temporary goes at once, so a failed object takes no room. */
static int writer_fail(struct of_writer *w, int rc)
{
    if (w->handle) {
        w->driver->ops->abort(w->driver->ctx, w->handle);
        w->handle = NULL;
    }
    w->state = OF_W_FAILED;
    return rc;
}

int of_writer_begin(struct of_driver *driver, int64_t ledger_id, const struct of_writer_opts *opts,
                    struct of_writer **out, struct of_err *err)
{
    MG_ASSERT(driver && out);
    struct of_writer_opts o = { 0 };
    if (opts)
        o = *opts;
    if (o.block_bytes == 0)
        o.block_bytes = OF_BLOCK_BYTES_DEFAULT;
    if (o.zstd_level == 0)
        o.zstd_level = OF_ZSTD_LEVEL_DEFAULT;
    if (ledger_id < 0)
        return of__errf(err, MG_EINVAL, "offload: ledger id %" PRId64 " is negative", ledger_id);
    if (o.block_bytes < OF_BLOCK_BYTES_MIN || o.block_bytes > OF_BLOCK_BYTES_MAX)
        return of__errf(err, MG_EINVAL, "offload: block_bytes %u outside [%u, %u]", o.block_bytes,
                        OF_BLOCK_BYTES_MIN, OF_BLOCK_BYTES_MAX);
    if (o.zstd_level < OF_ZSTD_LEVEL_MIN || o.zstd_level > OF_ZSTD_LEVEL_MAX)
        return of__errf(err, MG_EINVAL, "offload: zstd level %d outside [%d, %d]", o.zstd_level,
                        OF_ZSTD_LEVEL_MIN, OF_ZSTD_LEVEL_MAX);
    if (o.metadata_bytes > OF_METADATA_BYTES_MAX)
        return of__errf(err, MG_ELIMIT, "offload: metadata of %zu bytes over %u", o.metadata_bytes,
                        OF_METADATA_BYTES_MAX);
    struct of_writer *w = mg_calloc(1, sizeof(*w));
    if (!w)
        return of__errf(err, MG_ENOMEM, "offload: out of memory");
    w->driver = driver;
    w->ledger_id = ledger_id;
    w->block_bytes = o.block_bytes;
    w->zstd_level = o.zstd_level;
    w->first_entry_id = -1;
    w->next_entry_id = -1;
    if (o.metadata_bytes > 0)
        memcpy(w->metadata, o.metadata, o.metadata_bytes);
    w->metadata_bytes = o.metadata_bytes;
    w->raw_cap = o.block_bytes + OF_ENTRY_HEADER_BYTES;
    w->raw = mg_malloc(w->raw_cap);
    w->cctx = ZSTD_createCCtx();
    if (!w->raw || !w->cctx) {
        writer_free(w);
        return of__errf(err, MG_ENOMEM, "offload: out of memory");
    }
    uint64_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        writer_free(w);
        return of__errf(err, MG_ESYS, "offload: getrandom failed");
    }
    snprintf(w->object_id, sizeof(w->object_id), "ledger-%" PRId64 "-%016" PRIx64, ledger_id, rnd);
    int rc = driver->ops->create(driver->ctx, w->object_id, &w->handle, err);
    if (rc != MG_OK) {
        w->handle = NULL;
        writer_free(w);
        return rc;
    }
    *out = w;
    return MG_OK;
}

/* Compresses and writes the block being filled, and records it in the index. */
static int writer_flush(struct of_writer *w, struct of_err *err)
{
    if (w->raw_count == 0)
        return MG_OK;
    if (w->block_count >= OF_BLOCKS_MAX)
        return writer_fail(w, of__errf(err, MG_ELIMIT, "offload object %s: over %u blocks",
                                       w->object_id, OF_BLOCKS_MAX));
    size_t bound = ZSTD_compressBound(w->raw_size);
    if (bound > w->comp_cap) {
        uint8_t *c = mg_realloc(w->comp, bound);
        if (!c)
            return writer_fail(
                w, of__errf(err, MG_ENOMEM, "offload object %s: out of memory", w->object_id));
        w->comp = c;
        w->comp_cap = bound;
    }
    if (w->block_count == w->block_cap) {
        size_t cap = w->block_cap ? w->block_cap * 2 : 16;
        struct of_block *b = mg_realloc(w->blocks, cap * sizeof(*b));
        if (!b)
            return writer_fail(
                w, of__errf(err, MG_ENOMEM, "offload object %s: out of memory", w->object_id));
        w->blocks = b;
        w->block_cap = cap;
    }
    size_t n = ZSTD_compressCCtx(w->cctx, w->comp, w->comp_cap, w->raw, w->raw_size, w->zstd_level);
    if (ZSTD_isError(n))
        return writer_fail(w, of__errf(err, MG_EIO, "offload object %s: zstd: %s", w->object_id,
                                       ZSTD_getErrorName(n)));
    int rc = w->driver->ops->append(w->driver->ctx, w->handle, w->comp, n, err);
    if (rc != MG_OK)
        return writer_fail(w, rc);
    struct of_block *b = &w->blocks[w->block_count++];
    b->first_entry_id = w->raw_first;
    b->entry_count = w->raw_count;
    b->offset = w->offset;
    b->compressed_bytes = (uint32_t)n;
    b->raw_bytes = (uint32_t)w->raw_size;
    b->crc_compressed = mg_crc32c(0, w->comp, n);
    b->crc_raw = mg_crc32c(0, w->raw, w->raw_size);
    w->offset += n;
    w->raw_size = 0;
    w->raw_count = 0;
    /* Buffers that grew for one large entry go back to a usual block's size (a failed shrink
     * keeps the larger buffer, which is still correct). */
    if (w->raw_cap > w->block_bytes + OF_ENTRY_HEADER_BYTES) {
        uint8_t *r = mg_realloc(w->raw, w->block_bytes + OF_ENTRY_HEADER_BYTES);
        if (r) {
            w->raw = r;
            w->raw_cap = w->block_bytes + OF_ENTRY_HEADER_BYTES;
        }
        size_t usual = ZSTD_compressBound(w->raw_cap);
        uint8_t *c = w->comp_cap > usual ? mg_realloc(w->comp, usual) : NULL;
        if (c) {
            w->comp = c;
            w->comp_cap = usual;
        }
    }
    return MG_OK;
}

int of_writer_add(struct of_writer *w, int64_t entry_id, const void *data, size_t size,
                  struct of_err *err)
{
    MG_ASSERT(w && (data || size == 0));
    if (w->state != OF_W_OPEN)
        return of__errf(err, MG_ESTATE, "offload object %s: writer failed earlier", w->object_id);
    if (size > OF_ENTRY_BYTES_MAX)
        return of__errf(err, MG_ELIMIT, "offload object %s: entry %" PRId64 " of %zu bytes over %u",
                        w->object_id, entry_id, size, OF_ENTRY_BYTES_MAX);
    if (w->next_entry_id < 0 ? entry_id < 0 : entry_id != w->next_entry_id)
        return of__errf(err, MG_EINVAL,
                        "offload object %s: entry %" PRId64 " out of order (expected %" PRId64 ")",
                        w->object_id, entry_id, w->next_entry_id);
    if (w->entry_count >= OF_ENTRIES_MAX)
        return of__errf(err, MG_ELIMIT, "offload object %s: over %llu entries", w->object_id,
                        (unsigned long long)OF_ENTRIES_MAX);
    size_t need = OF_ENTRY_HEADER_BYTES + size;
    if (w->raw_count > 0 && w->raw_size + need > w->block_bytes)
        MG_TRY(writer_flush(w, err));
    if (need > w->raw_cap) {
        uint8_t *r = mg_realloc(w->raw, need);
        if (!r)
            return writer_fail(
                w, of__errf(err, MG_ENOMEM, "offload object %s: out of memory", w->object_id));
        w->raw = r;
        w->raw_cap = need;
    }
    if (w->raw_count == 0)
        w->raw_first = entry_id;
    uint8_t *p = w->raw + w->raw_size;
    put64(p, (uint64_t)entry_id);
    put32(p + 8, (uint32_t)size);
    if (size > 0)
        memcpy(p + OF_ENTRY_HEADER_BYTES, data, size);
    w->raw_size += need;
    w->raw_count++;
    if (w->first_entry_id < 0)
        w->first_entry_id = entry_id;
    w->next_entry_id = entry_id + 1;
    w->entry_count++;
    w->raw_total += size;
    if (w->raw_size >= w->block_bytes)
        MG_TRY(writer_flush(w, err));
    return MG_OK;
}

int of_writer_finish(struct of_writer *w, char *object_id, struct of_err *err)
{
    MG_ASSERT(w);
    int rc = MG_OK;
    if (w->state != OF_W_OPEN) {
        rc = of__errf(err, MG_ESTATE, "offload object %s: writer failed earlier", w->object_id);
        goto out;
    }
    if (w->entry_count == 0) {
        rc = of__errf(err, MG_EINVAL, "offload object %s: no entries", w->object_id);
        goto out;
    }
    rc = writer_flush(w, err);
    if (rc != MG_OK)
        goto out;
    size_t index_bytes = OF_INDEX_HEAD + w->metadata_bytes + w->block_count * OF_INDEX_REC;
    uint8_t *ix = mg_malloc(index_bytes + OF_FOOTER_BYTES);
    if (!ix) {
        rc = of__errf(err, MG_ENOMEM, "offload object %s: out of memory", w->object_id);
        goto out;
    }
    put32(ix, (uint32_t)w->block_count);
    put16(ix + 4, (uint16_t)w->metadata_bytes);
    memcpy(ix + OF_INDEX_HEAD, w->metadata, w->metadata_bytes);
    uint8_t *p = ix + OF_INDEX_HEAD + w->metadata_bytes;
    for (size_t i = 0; i < w->block_count; i++, p += OF_INDEX_REC) {
        const struct of_block *b = &w->blocks[i];
        put64(p, (uint64_t)b->first_entry_id);
        put32(p + 8, b->entry_count);
        put32(p + 12, 0);
        put64(p + 16, b->offset);
        put32(p + 24, b->compressed_bytes);
        put32(p + 28, b->raw_bytes);
        put32(p + 32, b->crc_compressed);
        put32(p + 36, b->crc_raw);
    }
    uint8_t *f = ix + index_bytes;
    memcpy(f, OF_MAGIC, 8); /* with its NUL */
    put32(f + 8, OF_VERSION);
    put32(f + 12, 0);
    put64(f + 16, (uint64_t)w->ledger_id);
    put64(f + 24, w->entry_count);
    put64(f + 32, (uint64_t)w->first_entry_id);
    put64(f + 40, (uint64_t)(w->next_entry_id - 1));
    put64(f + 48, w->raw_total);
    put64(f + 56, w->offset);
    put32(f + 64, (uint32_t)index_bytes);
    put32(f + 68, mg_crc32c(0, ix, index_bytes));
    put32(f + 72, (uint32_t)w->block_count);
    put32(f + 76, mg_crc32c(0, f, 76));
    rc = w->driver->ops->append(w->driver->ctx, w->handle, ix, index_bytes + OF_FOOTER_BYTES, err);
    mg_free(ix);
    if (rc != MG_OK)
        goto out;
    void *h = w->handle;
    w->handle = NULL; /* complete frees it, whatever the result */
    rc = w->driver->ops->complete(w->driver->ctx, h, err);
    if (rc == MG_OK && object_id)
        memcpy(object_id, w->object_id, strlen(w->object_id) + 1);
out:
    of_writer_abort(w);
    return rc;
}

/* ---- reader ---- */

struct of_reader {
    struct of_driver *driver;
    char object_id[OF_NAME_BYTES_MAX + 1];
    struct of_info info;
    struct of_block *blocks;
};

const struct of_info *of_reader_info(const struct of_reader *r)
{
    return &r->info;
}

void of_reader_close(struct of_reader *r)
{
    if (!r)
        return;
    mg_free(r->blocks);
    mg_free(r);
}

#define CORRUPT(...) of__errf(err, MG_ECORRUPT, __VA_ARGS__)

static int parse_index(struct of_reader *r, const uint8_t *ix, size_t index_bytes,
                       uint64_t index_offset, struct of_err *err)
{
    const char *id = r->object_id;
    struct of_info *in = &r->info;
    if (index_bytes < OF_INDEX_HEAD || get32(ix) != in->block_count)
        return CORRUPT("offload object %s: corrupt index: block count disagrees with the footer",
                       id);
    uint16_t meta = get16(ix + 4);
    if (meta > OF_METADATA_BYTES_MAX ||
        index_bytes != OF_INDEX_HEAD + meta + (size_t)in->block_count * OF_INDEX_REC)
        return CORRUPT("offload object %s: corrupt index: its size disagrees with its contents",
                       id);
    in->metadata_bytes = meta;
    memcpy(in->metadata, ix + OF_INDEX_HEAD, meta);
    r->blocks = mg_calloc(in->block_count, sizeof(*r->blocks));
    if (!r->blocks)
        return of__errf(err, MG_ENOMEM, "offload object %s: out of memory", id);
    const uint8_t *p = ix + OF_INDEX_HEAD + meta;
    int64_t next = in->first_entry_id;
    uint64_t off = 0, count = 0, raw = 0;
    for (uint32_t i = 0; i < in->block_count; i++, p += OF_INDEX_REC) {
        struct of_block *b = &r->blocks[i];
        b->first_entry_id = (int64_t)get64(p);
        b->entry_count = get32(p + 8);
        b->offset = get64(p + 16);
        b->compressed_bytes = get32(p + 24);
        b->raw_bytes = get32(p + 28);
        b->crc_compressed = get32(p + 32);
        b->crc_raw = get32(p + 36);
        if (b->first_entry_id != next || b->entry_count == 0 || b->offset != off ||
            b->raw_bytes > OF_BLOCK_RAW_BYTES_MAX ||
            b->raw_bytes < (uint64_t)b->entry_count * OF_ENTRY_HEADER_BYTES ||
            b->compressed_bytes == 0)
            return CORRUPT("offload object %s: corrupt index: block %u does not follow the one "
                           "before",
                           id, i);
        next += b->entry_count;
        off += b->compressed_bytes;
        count += b->entry_count;
        raw += b->raw_bytes - (uint64_t)b->entry_count * OF_ENTRY_HEADER_BYTES;
    }
    if (off != index_offset || count != in->entry_count || raw != in->raw_bytes ||
        next - 1 != in->last_entry_id)
        return CORRUPT("offload object %s: corrupt index: blocks disagree with the footer", id);
    return MG_OK;
}

int of_reader_open(struct of_driver *driver, const char *object_id, struct of_reader **out,
                   struct of_err *err)
{
    MG_ASSERT(driver && out);
    if (!of__name_valid(object_id))
        return of__errf(err, MG_EINVAL, "offload: invalid object id");
    uint64_t size;
    MG_TRY(driver->ops->stat(driver->ctx, object_id, &size, err));
    if (size < OF_FOOTER_BYTES)
        return CORRUPT("offload object %s: truncated: %" PRIu64 " bytes, less than a footer",
                       object_id, size);
    uint8_t f[OF_FOOTER_BYTES];
    MG_TRY(driver->ops->read(driver->ctx, object_id, size - OF_FOOTER_BYTES, f, sizeof(f), err));
    if (memcmp(f, OF_MAGIC, 8) != 0)
        return CORRUPT("offload object %s: no footer magic (truncated or not an offload object)",
                       object_id);
    if (get32(f + 76) != mg_crc32c(0, f, 76))
        return CORRUPT("offload object %s: corrupt footer: checksum mismatch", object_id);
    if (get32(f + 8) != OF_VERSION)
        return CORRUPT("offload object %s: unknown format version %u", object_id, get32(f + 8));
    struct of_reader *r = mg_calloc(1, sizeof(*r));
    if (!r)
        return of__errf(err, MG_ENOMEM, "offload object %s: out of memory", object_id);
    r->driver = driver;
    snprintf(r->object_id, sizeof(r->object_id), "%s", object_id);
    struct of_info *in = &r->info;
    in->ledger_id = (int64_t)get64(f + 16);
    in->entry_count = get64(f + 24);
    in->first_entry_id = (int64_t)get64(f + 32);
    in->last_entry_id = (int64_t)get64(f + 40);
    in->raw_bytes = get64(f + 48);
    in->object_bytes = size;
    in->block_count = get32(f + 72);
    uint64_t index_offset = get64(f + 56);
    uint32_t index_bytes = get32(f + 64);
    uint32_t index_crc = get32(f + 68);
    int rc;
    if (in->entry_count == 0 || in->entry_count > OF_ENTRIES_MAX || in->first_entry_id < 0 ||
        in->last_entry_id - in->first_entry_id + 1 != (int64_t)in->entry_count ||
        in->block_count == 0 || in->block_count > OF_BLOCKS_MAX ||
        index_offset > size - OF_FOOTER_BYTES ||
        index_bytes != size - OF_FOOTER_BYTES - index_offset) {
        rc = CORRUPT("offload object %s: corrupt footer: fields do not add up to the object's "
                     "%" PRIu64 " bytes",
                     object_id, size);
        goto fail;
    }
    uint8_t *ix = mg_malloc(index_bytes);
    if (!ix) {
        rc = of__errf(err, MG_ENOMEM, "offload object %s: out of memory", object_id);
        goto fail;
    }
    rc = driver->ops->read(driver->ctx, object_id, index_offset, ix, index_bytes, err);
    if (rc == MG_OK && mg_crc32c(0, ix, index_bytes) != index_crc)
        rc = CORRUPT("offload object %s: corrupt index: checksum mismatch", object_id);
    if (rc == MG_OK)
        rc = parse_index(r, ix, index_bytes, index_offset, err);
    mg_free(ix);
    if (rc != MG_OK)
        goto fail;
    *out = r;
    return MG_OK;
fail:
    of_reader_close(r);
    return rc;
}

/* Reads block i, checks it and returns its raw bytes (the caller's, mg_free). */
static int read_block(struct of_reader *r, uint32_t i, uint8_t **raw_out, struct of_err *err)
{
    const struct of_block *b = &r->blocks[i];
    const char *id = r->object_id;
    int64_t last = b->first_entry_id + b->entry_count - 1;
    uint8_t *comp = mg_malloc(b->compressed_bytes);
    uint8_t *raw = mg_malloc(b->raw_bytes);
    int rc = MG_OK;
    if (!comp || !raw) {
        rc = of__errf(err, MG_ENOMEM, "offload object %s: out of memory", id);
        goto out;
    }
    rc = r->driver->ops->read(r->driver->ctx, id, b->offset, comp, b->compressed_bytes, err);
    if (rc != MG_OK)
        goto out;
    if (mg_crc32c(0, comp, b->compressed_bytes) != b->crc_compressed) {
        rc = CORRUPT("offload object %s: corrupt block %u (entries %" PRId64 "..%" PRId64
                     "): checksum of its compressed bytes mismatch",
                     id, i, b->first_entry_id, last);
        goto out;
    }
    size_t n = ZSTD_decompress(raw, b->raw_bytes, comp, b->compressed_bytes);
    if (ZSTD_isError(n) || n != b->raw_bytes) {
        rc = CORRUPT("offload object %s: corrupt block %u (entries %" PRId64 "..%" PRId64
                     "): does not decompress to its %u bytes",
                     id, i, b->first_entry_id, last, b->raw_bytes);
        goto out;
    }
    if (mg_crc32c(0, raw, b->raw_bytes) != b->crc_raw) {
        rc = CORRUPT("offload object %s: corrupt block %u (entries %" PRId64 "..%" PRId64
                     "): checksum of its raw bytes mismatch",
                     id, i, b->first_entry_id, last);
        goto out;
    }
    size_t pos = 0;
    for (uint32_t k = 0; k < b->entry_count; k++) {
        if (b->raw_bytes - pos < OF_ENTRY_HEADER_BYTES ||
            (int64_t)get64(raw + pos) != b->first_entry_id + k ||
            get32(raw + pos + 8) > b->raw_bytes - pos - OF_ENTRY_HEADER_BYTES) {
            rc = CORRUPT("offload object %s: corrupt block %u: entry %u disagrees with the index",
                         id, i, k);
            goto out;
        }
        pos += OF_ENTRY_HEADER_BYTES + get32(raw + pos + 8);
    }
    if (pos != b->raw_bytes)
        rc =
            CORRUPT("offload object %s: corrupt block %u: trailing bytes after its entries", id, i);
out:
    mg_free(comp);
    if (rc != MG_OK) {
        mg_free(raw);
        return rc;
    }
    *raw_out = raw;
    return MG_OK;
}

void of_entries_free(struct of_entries *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->block_count; i++)
        mg_free(e->blocks[i]);
    mg_free(e->blocks);
    mg_free(e->entries);
    memset(e, 0, sizeof(*e));
}

/* The block holding entry id e (which is within the object). */
static uint32_t find_block(const struct of_reader *r, int64_t e)
{
    uint32_t lo = 0, hi = r->info.block_count - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2;
        if (r->blocks[mid].first_entry_id <= e)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int of_reader_read(struct of_reader *r, int64_t first, int64_t last, size_t budget_bytes,
                   struct of_entries *out, struct of_err *err)
{
    MG_ASSERT(r && out);
    memset(out, 0, sizeof(*out));
    const struct of_info *in = &r->info;
    if (first > last || first < in->first_entry_id || last > in->last_entry_id)
        return of__errf(err, MG_EINVAL,
                        "offload object %s: range %" PRId64 "..%" PRId64
                        " outside its entries %" PRId64 "..%" PRId64,
                        r->object_id, first, last, in->first_entry_id, in->last_entry_id);
    uint32_t b0 = find_block(r, first), b1 = b0;
    size_t raw = r->blocks[b0].raw_bytes;
    while (b1 + 1 < in->block_count && r->blocks[b1 + 1].first_entry_id <= last &&
           raw + r->blocks[b1 + 1].raw_bytes <= budget_bytes) {
        b1++;
        raw += r->blocks[b1].raw_bytes;
    }
    int64_t end = r->blocks[b1].first_entry_id + r->blocks[b1].entry_count - 1;
    if (end > last)
        end = last;
    size_t count = (size_t)(end - first + 1);
    out->blocks = mg_calloc(b1 - b0 + 1, sizeof(*out->blocks));
    out->entries = mg_calloc(count, sizeof(*out->entries));
    if (!out->blocks || !out->entries) {
        of_entries_free(out);
        return of__errf(err, MG_ENOMEM, "offload object %s: out of memory", r->object_id);
    }
    for (uint32_t i = b0; i <= b1; i++) {
        uint8_t *rb;
        int rc = read_block(r, i, &rb, err);
        if (rc != MG_OK) {
            of_entries_free(out);
            return rc;
        }
        out->blocks[out->block_count++] = rb;
        const struct of_block *b = &r->blocks[i];
        size_t pos = 0;
        for (uint32_t k = 0; k < b->entry_count; k++) {
            int64_t e = b->first_entry_id + k;
            uint32_t size = get32(rb + pos + 8);
            if (e >= first && e <= end) {
                struct of_entry *oe = &out->entries[out->count++];
                oe->entry_id = e;
                oe->data = rb + pos + OF_ENTRY_HEADER_BYTES;
                oe->size = size;
            }
            pos += OF_ENTRY_HEADER_BYTES + size;
        }
    }
    MG_ASSERT(out->count == count);
    return MG_OK;
}

int of_verify(struct of_driver *driver, const char *object_id, struct of_info *info,
              struct of_err *err)
{
    struct of_reader *r;
    MG_TRY(of_reader_open(driver, object_id, &r, err));
    int rc = MG_OK;
    for (uint32_t i = 0; i < r->info.block_count && rc == MG_OK; i++) {
        uint8_t *raw;
        rc = read_block(r, i, &raw, err);
        if (rc == MG_OK)
            mg_free(raw);
    }
    if (rc == MG_OK && info)
        *info = r->info;
    of_reader_close(r);
    return rc;
}

int of_delete(struct of_driver *driver, const char *object_id, struct of_err *err)
{
    if (!of__name_valid(object_id))
        return of__errf(err, MG_EINVAL, "offload: invalid object id");
    return driver->ops->remove(driver->ctx, object_id, err);
}

void of_driver_destroy(struct of_driver *driver)
{
    if (driver)
        driver->ops->destroy(driver->ctx);
}

int of_driver_cleanup(struct of_driver *driver, size_t *removed_count, struct of_err *err)
{
    return driver->ops->cleanup(driver->ctx, removed_count, err);
}

/* ---- asynchronous wrappers ---- */

static void req_work(uv_work_t *work)
{
    struct of_req *q = work->data;
    switch (q->type) {
    case OF_REQ_ADD:
        q->status = of_writer_add(q->writer, q->entry_id, q->entry, q->size, &q->err);
        break;
    case OF_REQ_FINISH:
        q->status = of_writer_finish(q->writer, q->object_id, &q->err);
        break;
    case OF_REQ_OPEN:
        q->status = of_reader_open(q->driver, q->object_id, &q->reader, &q->err);
        break;
    case OF_REQ_READ:
        q->status = of_reader_read(q->reader, q->entry_id, q->last, q->size, &q->entries, &q->err);
        break;
    case OF_REQ_VERIFY:
        q->status = of_verify(q->driver, q->object_id, &q->info, &q->err);
        break;
    case OF_REQ_DELETE:
        q->status = of_delete(q->driver, q->object_id, &q->err);
        break;
    }
}

static void req_done(uv_work_t *work, int status)
{
    struct of_req *q = work->data;
    if (status == UV_ECANCELED && q->status == MG_OK)
        q->status = of__errf(&q->err, MG_ECANCELED, "offload: request canceled");
    q->cb(q, q->status);
}

static int req_queue(uv_loop_t *loop, struct of_req *q, enum of_req_type type, of_req_done_cb cb)
{
    MG_ASSERT(loop && q && cb);
    q->type = type;
    q->cb = cb;
    q->status = MG_OK;
    q->err.msg[0] = '\0';
    q->work.data = q;
    int rc = uv_queue_work(loop, &q->work, req_work, req_done);
    return rc == 0 ? MG_OK : mg_err_from_uv(rc);
}

static int req_name(struct of_req *q, const char *object_id)
{
    if (!of__name_valid(object_id))
        return of__errf(&q->err, MG_EINVAL, "offload: invalid object id");
    snprintf(q->object_id, sizeof(q->object_id), "%s", object_id);
    return MG_OK;
}

int of_writer_add_async(uv_loop_t *loop, struct of_req *req, struct of_writer *w, int64_t entry_id,
                        const void *data, size_t size, of_req_done_cb cb)
{
    req->writer = w;
    req->entry_id = entry_id;
    req->entry = data;
    req->size = size;
    return req_queue(loop, req, OF_REQ_ADD, cb);
}

int of_writer_finish_async(uv_loop_t *loop, struct of_req *req, struct of_writer *w,
                           of_req_done_cb cb)
{
    req->writer = w;
    req->object_id[0] = '\0';
    return req_queue(loop, req, OF_REQ_FINISH, cb);
}

int of_reader_open_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                         const char *object_id, of_req_done_cb cb)
{
    MG_TRY(req_name(req, object_id));
    req->driver = driver;
    req->reader = NULL;
    return req_queue(loop, req, OF_REQ_OPEN, cb);
}

int of_reader_read_async(uv_loop_t *loop, struct of_req *req, struct of_reader *r, int64_t first,
                         int64_t last, size_t budget_bytes, of_req_done_cb cb)
{
    req->reader = r;
    req->entry_id = first;
    req->last = last;
    req->size = budget_bytes;
    memset(&req->entries, 0, sizeof(req->entries));
    return req_queue(loop, req, OF_REQ_READ, cb);
}

int of_verify_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                    const char *object_id, of_req_done_cb cb)
{
    MG_TRY(req_name(req, object_id));
    req->driver = driver;
    return req_queue(loop, req, OF_REQ_VERIFY, cb);
}

int of_delete_async(uv_loop_t *loop, struct of_req *req, struct of_driver *driver,
                    const char *object_id, of_req_done_cb cb)
{
    MG_TRY(req_name(req, object_id));
    req->driver = driver;
    return req_queue(loop, req, OF_REQ_DELETE, cb);
}
