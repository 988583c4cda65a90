/*
 * Entry logs; the format, invariants, state machine and threads are in entrylog.h.
 *
 * Design notes:
 *   - The table of logs is an array of pointers sorted by id (ids only grow, so the writer
 *     appends at the end and removal keeps the order). el->mu guards the table and each log's
 *     mutable fields except size_bytes (an atomic the writer stores and readers load). The mutex
 *     is never held across I/O.
 *   - A log is reference-counted under el->mu: the table holds one reference, every reader
 *     holds one for the duration of its call, and the writer holds one on the log finished by
 *     the last roll-over until a sync has fdatasynced it. The last reference closes the
 *     descriptors and frees the log, so a remove() never closes a descriptor under a pread.
 *   - The write buffer always holds the bytes [wbuf_offset, wbuf_offset + wbuf_len) of the
 *     current log, and wbuf_offset + wbuf_len == cur->size_bytes. A new log's header block is
 *     its first 4096 buffered bytes, so creating a log costs no write until the first flush.
 *   - The current log is written through a second descriptor opened with O_DIRECT (`wfd`),
 *     when the file system allows it: the page-cache copy of every flushed byte was the largest
 *     single cost of the flush thread (perf: 15 % of all CPU samples at ~320 MiB/s of
 *     produce on standalone), and the bookie reads with O_DIRECT anyway. O_DIRECT writes whole
 *     4096-byte blocks at aligned offsets, so wbuf_offset stays aligned: a flush writes the
 *     buffer rounded up to a block, zero-filled, and keeps the last partial block at the front
 *     of the buffer, to be written again, longer, by the next flush. The file may therefore
 *     end in zeros after the last record; a scan stops there, as at a torn tail. Rewriting a
 *     block that holds synced records is safe even if a crash tears the write: its synced
 *     bytes are written again unchanged, so every sector holds them, old or new. Where O_DIRECT
 *     is refused (tmpfs), wfd is the buffered descriptor and nothing is padded.
 *   - The writer's ledger map (ledger id -> record bytes in the current log) is an open-addressing
 *     hash table with linear probing, key -1 = empty (ledger ids are >= 0). At roll-over it is
 *     copied into the (just flushed, empty) write buffer, sorted and encoded in place: a
 *     roll-over allocates nothing.
 */
#include "bookie/entrylog.h"
#include "common/fs.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EL_MAGIC              "MGEL"
#define EL_HEADER_FIELDS      36u /* bytes covered by header_crc */
#define EL_MAP_ITEM_BYTES     16u
#define EL_NAME_BYTES         12u /* "%08x.log" */
#define EL_SCAN_CHUNK_BYTES   (1u << 20)
#define EL_MAP_CAP_MIN        64u
#define EL_BLOCK_BYTES        4096u /* O_DIRECT writes whole blocks at aligned offsets */
/* At roll-over the map's pairs are sorted here, in the second half of the write buffer, then
 * moved behind the partial block the buffer keeps. */
#define EL_MAP_SCRATCH_OFFSET (BK_ENTRYLOG_WRITE_BUFFER_BYTES / 2)

_Static_assert(EL_BLOCK_BYTES + BK_ENTRYLOG_LEDGERS_MAX * EL_MAP_ITEM_BYTES <=
                   EL_MAP_SCRATCH_OFFSET,
               "the ledger map is encoded in the write buffer, after a kept partial block");
_Static_assert(BK_ENTRYLOG_WRITE_BUFFER_BYTES % EL_BLOCK_BYTES == 0,
               "a full write buffer is whole blocks");
_Static_assert(BK_ENTRYLOG_HEADER_BYTES == EL_BLOCK_BYTES, "the header is one block");
_Static_assert(BK_ENTRYLOG_HEADER_BYTES <= BK_ENTRYLOG_WRITE_BUFFER_BYTES,
               "a new log's header is buffered");
_Static_assert(BK_ENTRYLOG_BYTES_MAX <= UINT32_MAX, "record offsets are u32");

typedef struct el_log {
    uint32_t id;
    uint32_t refs; /* under mu */
    bool current;  /* under mu */
    bool has_map;  /* under mu, with the three map fields */
    uint64_t map_offset;
    uint64_t map_len;
    uint32_t map_crc;
    uint64_t size_bytes; /* atomic: end of the records (see bk_entrylogs_log_size) */
    int fd;              /* under mu; -1 until opened (the writer's O_RDWR fd for a new log) */
    int direct_fd;       /* under mu; -1 until opened */
    char path[];
} el_log;

typedef struct el_map {
    int64_t *keys; /* -1: empty slot */
    uint64_t *vals;
    size_t cap; /* 0 or a power of two */
    size_t count;
} el_map;

typedef struct el_pair {
    int64_t ledger_id;
    uint64_t bytes;
} el_pair;

struct bk_entrylogs {
    bk_io *io;
    uint64_t log_bytes_max;
    pthread_mutex_t mu;
    el_log **logs; /* sorted by id, under mu */
    size_t log_count;
    size_t log_cap;
    uint32_t id_max; /* the highest id seen or created (writer; set at open) */
    /* Writer-thread state. */
    el_log *cur;
    el_log *unsynced; /* finished by the last roll-over, not yet fdatasynced (holds a ref) */
    bool dir_dirty;   /* a log was created since the last directory fsync */
    uint64_t synced_size;
    int error; /* sticky: 0 or the MG_E* code that put the writer in ERROR */
    uint8_t *wbuf;
    size_t wbuf_len;
    uint64_t wbuf_offset;
    int wfd;     /* the current log's write descriptor: O_DIRECT, or cur->fd (not owned) */
    bool direct; /* wfd is O_DIRECT: writes are whole blocks */
    el_map map;
    char dir[];
};

/* ---- byte order ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

/* ---- record codec ---- */

size_t bk_record_header_bytes(void)
{
    return BK_RECORD_HEADER_BYTES;
}

static void encode_record_header(uint8_t h[BK_RECORD_HEADER_BYTES], int64_t ledger_id,
                                 int64_t entry_id, const void *payload, size_t len)
{
    put_be32(h, (uint32_t)(BK_RECORD_HEADER_BYTES + len));
    put_be64(h + 8, (uint64_t)ledger_id);
    put_be64(h + 16, (uint64_t)entry_id);
    uint32_t crc = mg_crc32c(0, h + 8, 16);
    crc = mg_crc32c(crc, payload, len);
    put_be32(h + 4, crc);
}

int bk_record_parse(const uint8_t *p, size_t avail, bk_record *out)
{
    out->record_size = 0;
    if (avail < 4)
        return MG_EAGAIN;
    uint32_t len = get_be32(p);
    if (len < BK_RECORD_HEADER_BYTES || len - BK_RECORD_HEADER_BYTES > BK_ENTRY_BYTES_MAX)
        return MG_ECORRUPT;
    out->record_size = len;
    if (avail < len)
        return MG_EAGAIN;
    if (mg_crc32c(0, p + 8, len - 8) != get_be32(p + 4))
        return MG_ECORRUPT;
    out->ledger_id = (int64_t)get_be64(p + 8);
    out->entry_id = (int64_t)get_be64(p + 16);
    out->payload = p + BK_RECORD_HEADER_BYTES;
    out->payload_len = len - BK_RECORD_HEADER_BYTES;
    return MG_OK;
}

/* ---- header block ---- */

static void encode_header(uint8_t h[BK_ENTRYLOG_HEADER_BYTES], uint32_t id, uint64_t map_offset,
                          uint64_t map_len, uint32_t map_crc)
{
    memset(h, 0, BK_ENTRYLOG_HEADER_BYTES);
    memcpy(h, EL_MAGIC, 4);
    put_be32(h + 4, BK_ENTRYLOG_FORMAT_VERSION);
    put_be32(h + 8, id);
    put_be32(h + 12, 0);
    put_be64(h + 16, map_offset);
    put_be64(h + 24, map_len);
    put_be32(h + 32, map_crc);
    put_be32(h + 36, mg_crc32c(0, h, EL_HEADER_FIELDS));
}

/* Decodes a header read from a file of file_size bytes into log's map fields. Returns true when
 * the header checks (with or without a map), false when it does not. */
static bool decode_header(const uint8_t *h, size_t h_len, uint64_t file_size, el_log *log)
{
    log->has_map = false;
    if (h_len < BK_ENTRYLOG_HEADER_BYTES || memcmp(h, EL_MAGIC, 4) != 0)
        return false;
    if (get_be32(h + 36) != mg_crc32c(0, h, EL_HEADER_FIELDS))
        return false;
    if (get_be32(h + 4) != BK_ENTRYLOG_FORMAT_VERSION || get_be32(h + 8) != log->id)
        return false;
    uint64_t map_offset = get_be64(h + 16);
    uint64_t map_len = get_be64(h + 24);
    if (map_offset == 0)
        return true; /* never rolled over */
    if (map_offset < BK_ENTRYLOG_HEADER_BYTES || map_offset > BK_ENTRYLOG_BYTES_MAX ||
        map_len % EL_MAP_ITEM_BYTES != 0 ||
        map_len > (uint64_t)BK_ENTRYLOG_LEDGERS_MAX * EL_MAP_ITEM_BYTES ||
        map_offset + map_len > file_size)
        return false;
    log->has_map = true;
    log->map_offset = map_offset;
    log->map_len = map_len;
    log->map_crc = get_be32(h + 32);
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* ---- ledger map (hash table) ---- */

static size_t map_hash(int64_t key, size_t cap)
{
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static size_t map_find(const el_map *m, int64_t key)
{
    size_t i = map_hash(key, m->cap);
    while (m->keys[i] != -1 && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static bool map_contains(const el_map *m, int64_t key)
{
    return m->cap > 0 && m->keys[map_find(m, key)] == key;
}

/* Makes room so that key can be added without failing. MG_OK, MG_ENOMEM, or MG_ELIMIT past
 * BK_ENTRYLOG_LEDGERS_MAX keys. */
static int map_reserve(el_map *m, int64_t key)
{
    if (map_contains(m, key))
        return MG_OK;
    if (m->count >= BK_ENTRYLOG_LEDGERS_MAX)
        return MG_ELIMIT;
    if (m->cap > 0 && (m->count + 1) * 4 <= m->cap * 3)
        return MG_OK;
    size_t cap = m->cap ? m->cap * 2 : EL_MAP_CAP_MIN;
    int64_t *keys = mg_malloc(cap * sizeof(*keys));
    uint64_t *vals = mg_malloc(cap * sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        mg_free(keys);
        mg_free(vals);
        return MG_ENOMEM;
    }
    for (size_t i = 0; i < cap; i++)
        keys[i] = -1;
    el_map n = { .keys = keys, .vals = vals, .cap = cap, .count = m->count };
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == -1)
            continue;
        size_t j = map_find(&n, m->keys[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
    }
    mg_free(m->keys);
    mg_free(m->vals);
    *m = n;
    return MG_OK;
}

/* Adds bytes to key's total; map_reserve(key) must have succeeded since the last change. */
static void map_add(el_map *m, int64_t key, uint64_t bytes)
{
    MG_ASSERT(m->cap > 0);
    size_t i = map_find(m, key);
    if (m->keys[i] != key) {
        MG_ASSERT(m->keys[i] == -1 && (m->count + 1) * 4 <= m->cap * 3);
        m->keys[i] = key;
        m->vals[i] = 0;
        m->count++;
    }
    m->vals[i] += bytes;
}

static void map_clear(el_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        m->keys[i] = -1;
    m->count = 0;
}

static void map_free(el_map *m)
{
    mg_free(m->keys);
    mg_free(m->vals);
    memset(m, 0, sizeof(*m));
}

static int pair_cmp(const void *a, const void *b)
{
    const el_pair *x = a;
    const el_pair *y = b;
    return (x->ledger_id > y->ledger_id) - (x->ledger_id < y->ledger_id);
}

/* Copies the pairs into out[0, m->count), ascending by ledger id. */
static void map_sorted(const el_map *m, el_pair *out)
{
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] != -1)
            out[n++] = (el_pair){ m->keys[i], m->vals[i] };
    }
    MG_ASSERT(n == m->count);
    qsort(out, n, sizeof(*out), pair_cmp);
}

/* ---- the table of logs ---- */

static el_log *log_new(const bk_entrylogs *el, uint32_t id)
{
    size_t dir_len = strlen(el->dir);
    el_log *log = mg_calloc(1, sizeof(*log) + dir_len + 1 + EL_NAME_BYTES + 1);
    if (log == NULL)
        return NULL;
    log->id = id;
    log->refs = 1;
    log->fd = -1;
    log->direct_fd = -1;
    snprintf(log->path, dir_len + 1 + EL_NAME_BYTES + 1, "%s/%08x.log", el->dir, id);
    return log;
}

static void log_free(bk_entrylogs *el, el_log *log)
{
    if (log->fd >= 0)
        bk_io_close(el->io, log->fd);
    if (log->direct_fd >= 0)
        bk_io_close(el->io, log->direct_fd);
    mg_free(log);
}

/* Index of the first log with id >= id. Under mu. */
static size_t table_bisect(const bk_entrylogs *el, uint32_t id)
{
    size_t lo = 0;
    size_t hi = el->log_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (el->logs[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static el_log *table_find(const bk_entrylogs *el, uint32_t id)
{
    size_t i = table_bisect(el, id);
    return i < el->log_count && el->logs[i]->id == id ? el->logs[i] : NULL;
}

/* Adds log (with its table reference) at the end; ids must grow. Under mu. */
static int table_push(bk_entrylogs *el, el_log *log)
{
    if (el->log_count >= BK_ENTRYLOGS_MAX)
        return MG_ELIMIT;
    MG_ASSERT(el->log_count == 0 || el->logs[el->log_count - 1]->id < log->id);
    if (el->log_count == el->log_cap) {
        size_t cap = el->log_cap ? el->log_cap * 2 : 64;
        el_log **p = mg_realloc(el->logs, cap * sizeof(*p));
        if (p == NULL)
            return MG_ENOMEM;
        el->logs = p;
        el->log_cap = cap;
    }
    el->logs[el->log_count++] = log;
    return MG_OK;
}

/* Takes a reference on log id for a reader, or returns NULL. */
static el_log *log_acquire(bk_entrylogs *el, uint32_t id)
{
    pthread_mutex_lock(&el->mu);
    el_log *log = table_find(el, id);
    if (log)
        log->refs++;
    pthread_mutex_unlock(&el->mu);
    return log;
}

static void log_release(bk_entrylogs *el, el_log *log)
{
    pthread_mutex_lock(&el->mu);
    MG_ASSERT(log->refs > 0);
    bool last = --log->refs == 0;
    pthread_mutex_unlock(&el->mu);
    if (last)
        log_free(el, log);
}

static uint64_t log_size(const el_log *log)
{
    return __atomic_load_n(&log->size_bytes, __ATOMIC_ACQUIRE);
}

/* The descriptor in *slot (log->fd or log->direct_fd), opened with flags the first time. The
 * caller holds a reference on log. */
static int log_fd(bk_entrylogs *el, el_log *log, int *slot, int flags, int *fd)
{
    pthread_mutex_lock(&el->mu);
    int have = *slot;
    pthread_mutex_unlock(&el->mu);
    if (have >= 0) {
        *fd = have;
        return MG_OK;
    }
    int opened;
    int rc = bk_io_open(el->io, log->path, flags, 0, &opened);
    if (rc != MG_OK)
        return rc;
    pthread_mutex_lock(&el->mu);
    if (*slot < 0) {
        *slot = opened;
        opened = -1;
    }
    *fd = *slot;
    pthread_mutex_unlock(&el->mu);
    if (opened >= 0)
        bk_io_close(el->io, opened); /* another reader was faster */
    return MG_OK;
}

/* Reads exactly size bytes at offset unless the file ends first. Returns the bytes read or an
 * MG_E* error. Short transfers are continued; a read that returns 0 means end of file. */
static ssize_t read_full(bk_entrylogs *el, int fd, uint8_t *dst, size_t size, uint64_t offset)
{
    size_t got = 0;
    while (got < size) {
        ssize_t n = bk_io_pread(el->io, fd, dst + got, size - got, offset + got);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* ---- writer ---- */

static int set_error(bk_entrylogs *el, int rc, const char *what)
{
    MG_ASSERT(rc < 0);
    if (el->error == 0) {
        el->error = rc;
        MG_ERROR("entrylog: %s failed in %s: %s; entry logs refuse writes until reopened", what,
                 el->dir, mg_strerror(rc));
    }
    return el->error;
}

/* Syncs and releases the finished log that waits for its fdatasync, if there is one. */
static int sync_unsynced(bk_entrylogs *el)
{
    if (el->unsynced == NULL)
        return MG_OK;
    int rc = bk_io_fdatasync(el->io, el->unsynced->fd);
    if (rc != MG_OK)
        return set_error(el, rc, "fdatasync");
    log_release(el, el->unsynced);
    el->unsynced = NULL;
    return MG_OK;
}

/* Writes the buffered bytes of the current log. With O_DIRECT: rounded up to whole blocks
 * (zero-filled), and the last partial block stays at the front of the buffer, written again by
 * the next flush. */
static int flush_wbuf(bk_entrylogs *el)
{
    if (el->wbuf_len == 0)
        return MG_OK;
    size_t len = el->wbuf_len;
    size_t keep = 0;
    if (el->direct) {
        keep = len % EL_BLOCK_BYTES;
        if (keep > 0) {
            memset(el->wbuf + len, 0, EL_BLOCK_BYTES - keep);
            len += EL_BLOCK_BYTES - keep;
        }
    }
    int rc = bk_io_pwrite(el->io, el->wfd, el->wbuf, len, el->wbuf_offset);
    if (rc != MG_OK)
        return set_error(el, rc, "write");
    size_t whole = el->wbuf_len - keep;
    if (keep > 0)
        memmove(el->wbuf, el->wbuf + whole, keep);
    el->wbuf_offset += whole;
    el->wbuf_len = keep;
    return MG_OK;
}

/* Appends n bytes to the current log through the write buffer, writing it whenever it fills. */
static int wbuf_put(bk_entrylogs *el, const void *data, size_t n)
{
    const uint8_t *p = data;
    while (n > 0) {
        size_t k = BK_ENTRYLOG_WRITE_BUFFER_BYTES - el->wbuf_len;
        if (k > n)
            k = n;
        memcpy(el->wbuf + el->wbuf_len, p, k);
        el->wbuf_len += k;
        p += k;
        n -= k;
        if (el->wbuf_len == BK_ENTRYLOG_WRITE_BUFFER_BYTES)
            MG_TRY(flush_wbuf(el));
    }
    return MG_OK;
}

/* Closes the current log's O_DIRECT write descriptor, if it has one. */
static void close_wfd(bk_entrylogs *el)
{
    if (el->direct && el->wfd >= 0)
        bk_io_close(el->io, el->wfd);
    el->wfd = -1;
    el->direct = false;
}

/* Creates log id as the new current log: the file (O_EXCL), the table entry, the header
 * buffered. The write buffer must be empty. */
static int create_log(bk_entrylogs *el, uint32_t id)
{
    MG_ASSERT(el->wbuf_len == 0);
    el_log *log = log_new(el, id);
    if (log == NULL)
        return MG_ENOMEM;
    int rc = bk_io_open(el->io, log->path, O_RDWR | O_CREAT | O_EXCL, 0644, &log->fd);
    if (rc != MG_OK) {
        mg_free(log);
        return rc;
    }
    log->current = true;
    log->size_bytes = BK_ENTRYLOG_HEADER_BYTES;
    pthread_mutex_lock(&el->mu);
    rc = table_push(el, log);
    pthread_mutex_unlock(&el->mu);
    if (rc != MG_OK) {
        bk_io_close(el->io, log->fd);
        bk_io_unlink(el->io, log->path);
        mg_free(log);
        return rc;
    }
    /* Writes go through O_DIRECT where the file system takes it (see the design notes). */
    close_wfd(el);
    int dfd;
    if (bk_io_open(el->io, log->path, O_WRONLY | O_DIRECT, 0, &dfd) == MG_OK) {
        el->wfd = dfd;
        el->direct = true;
    } else {
        el->wfd = log->fd;
    }
    encode_header(el->wbuf, id, 0, 0, 0);
    el->wbuf_len = BK_ENTRYLOG_HEADER_BYTES;
    el->wbuf_offset = 0;
    el->cur = log;
    el->id_max = id;
    el->synced_size = 0;
    el->dir_dirty = true;
    return MG_OK;
}

/* Finishes the current log (ledger map and header written, fdatasync left to the next sync)
 * and starts the next one. Non-sticky MG_ELIMIT when no further log may exist; any I/O failure
 * is sticky. */
static int roll_over(bk_entrylogs *el)
{
    pthread_mutex_lock(&el->mu);
    bool full = el->log_count >= BK_ENTRYLOGS_MAX;
    pthread_mutex_unlock(&el->mu);
    if (full || el->id_max == UINT32_MAX)
        return MG_ELIMIT;

    el_log *old = el->cur;
    int rc = flush_wbuf(el);
    if (rc != MG_OK)
        return rc;

    /* The ledger map, sorted and encoded in place in the buffer's scratch half, then appended
     * behind the partial block the buffer may keep, and written with it. */
    uint64_t map_offset = log_size(old);
    MG_ASSERT(el->wbuf_offset + el->wbuf_len == map_offset);
    size_t n = el->map.count;
    uint8_t *scratch = el->wbuf + EL_MAP_SCRATCH_OFFSET;
    el_pair *pairs = (el_pair *)(void *)scratch;
    map_sorted(&el->map, pairs);
    for (size_t i = 0; i < n; i++) {
        el_pair p = pairs[i];
        put_be64(scratch + i * EL_MAP_ITEM_BYTES, (uint64_t)p.ledger_id);
        put_be64(scratch + i * EL_MAP_ITEM_BYTES + 8, p.bytes);
    }
    uint64_t map_len = (uint64_t)n * EL_MAP_ITEM_BYTES;
    uint32_t map_crc = mg_crc32c(0, scratch, (size_t)map_len);
    memmove(el->wbuf + el->wbuf_len, scratch, (size_t)map_len);
    el->wbuf_len += (size_t)map_len;
    rc = flush_wbuf(el);
    if (rc != MG_OK)
        return set_error(el, rc, "ledger map write");
    encode_header(el->wbuf, old->id, map_offset, map_len, map_crc);
    rc = bk_io_pwrite(el->io, el->wfd, el->wbuf, BK_ENTRYLOG_HEADER_BYTES, 0);
    if (rc != MG_OK)
        return set_error(el, rc, "header write");
    el->wbuf_len = 0;

    /* At most one finished log waits for its fdatasync. */
    rc = sync_unsynced(el);
    if (rc != MG_OK)
        return rc;
    pthread_mutex_lock(&el->mu);
    old->current = false;
    old->has_map = true;
    old->map_offset = map_offset;
    old->map_len = map_len;
    old->map_crc = map_crc;
    old->refs++; /* the writer's, until the next sync */
    pthread_mutex_unlock(&el->mu);
    el->unsynced = old;
    map_clear(&el->map);

    rc = create_log(el, el->id_max + 1);
    if (rc != MG_OK)
        return set_error(el, rc, "log creation");
    return MG_OK;
}

int bk_entrylogs_append(bk_entrylogs *el, int64_t ledger_id, int64_t entry_id, const void *payload,
                        size_t len, bk_location *out)
{
    MG_ASSERT(payload != NULL || len == 0);
    if (el->error != 0)
        return el->error;
    if (ledger_id < 0)
        return MG_EINVAL;
    if (len > BK_ENTRY_BYTES_MAX)
        return MG_ELIMIT;
    size_t rec = BK_RECORD_HEADER_BYTES + len;
    uint64_t at = log_size(el->cur);
    bool has_records = at > BK_ENTRYLOG_HEADER_BYTES;
    bool new_ledger = !map_contains(&el->map, ledger_id);
    if (has_records && (at + rec > el->log_bytes_max ||
                        (new_ledger && el->map.count >= BK_ENTRYLOG_LEDGERS_MAX))) {
        int rc = roll_over(el);
        if (rc != MG_OK)
            return rc;
        at = log_size(el->cur);
    }
    int rc = map_reserve(&el->map, ledger_id);
    if (rc != MG_OK)
        return rc;

    uint8_t h[BK_RECORD_HEADER_BYTES];
    encode_record_header(h, ledger_id, entry_id, payload, len);
    MG_ASSERT(el->wbuf_offset + el->wbuf_len == at);
    rc = wbuf_put(el, h, sizeof(h));
    if (rc == MG_OK && len > 0)
        rc = wbuf_put(el, payload, len);
    if (rc != MG_OK)
        return rc; /* sticky: flush_wbuf set the error */
    map_add(&el->map, ledger_id, rec);
    __atomic_store_n(&el->cur->size_bytes, at + rec, __ATOMIC_RELEASE);
    MG_ASSERT(at + rec <= UINT32_MAX);
    out->log_id = el->cur->id;
    out->offset = (uint32_t)at;
    out->size = (uint32_t)rec;
    return MG_OK;
}

int bk_entrylogs_sync(bk_entrylogs *el)
{
    if (el->error != 0)
        return el->error;
    int rc = flush_wbuf(el);
    if (rc != MG_OK)
        return rc;
    rc = sync_unsynced(el);
    if (rc != MG_OK)
        return rc;
    if (el->dir_dirty) {
        rc = bk_io_fsync_dir(el->io, el->dir);
        if (rc != MG_OK)
            return set_error(el, rc, "directory fsync");
        el->dir_dirty = false;
    }
    uint64_t size = log_size(el->cur);
    if (size != el->synced_size) {
        rc = bk_io_fdatasync(el->io, el->cur->fd);
        if (rc != MG_OK)
            return set_error(el, rc, "fdatasync");
        el->synced_size = size;
    }
    return MG_OK;
}

int bk_entrylogs_resume(bk_entrylogs *el)
{
    if (el->error == 0)
        return MG_OK;
    /* What the failed flush wrote is referenced by nothing (the index is written only after a
     * sync succeeds), and what earlier syncs covered is intact. The log being written stays as
     * it is, finished without a ledger map (readable, its map rebuilt by scanning, as after a
     * crash), and writing goes on in a new log: invariant 1 holds, nothing is appended after a
     * tail that a failed write may have torn. */
    if (el->unsynced != NULL) {
        log_release(el, el->unsynced);
        el->unsynced = NULL;
    }
    pthread_mutex_lock(&el->mu);
    el->cur->current = false;
    pthread_mutex_unlock(&el->mu);
    close_wfd(el);
    el->wbuf_len = 0;
    el->wbuf_offset = 0;
    map_clear(&el->map);
    pthread_mutex_lock(&el->mu);
    bool full = el->log_count >= BK_ENTRYLOGS_MAX;
    pthread_mutex_unlock(&el->mu);
    if (full || el->id_max == UINT32_MAX)
        return MG_ELIMIT;
    int rc = create_log(el, el->id_max + 1);
    if (rc != MG_OK)
        return rc; /* still in ERROR; el->cur is the old log, not current */
    MG_INFO("entrylog: %s: writable again, writing log %u", el->dir, el->cur->id);
    el->error = 0;
    return MG_OK;
}

uint32_t bk_entrylogs_current_id(const bk_entrylogs *el)
{
    return el->cur->id;
}

/* ---- open / close ---- */

/* Parses "<8 lower-case hex digits>.log"; ids are never 0. */
static bool parse_name(const char *name, uint32_t *id)
{
    if (strlen(name) != EL_NAME_BYTES || strcmp(name + 8, ".log") != 0)
        return false;
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = name[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else
            return false;
        v = (v << 4) | d;
    }
    *id = v;
    return v != 0;
}

static bool parse_name64(const char *name, uint64_t *id)
{
    uint32_t id32;
    if (!parse_name(name, &id32))
        return false;
    *id = id32;
    return true;
}

/* Lists the log ids in dir, ascending. [out] *ids (mg_free), *count. */
static int list_dir(const char *dir, uint32_t **ids_out, size_t *count_out)
{
    uint64_t *ids64 = NULL;
    size_t count = 0;
    MG_TRY(mg_list_ids(dir, parse_name64, BK_ENTRYLOGS_MAX, &ids64, &count));
    uint32_t *ids = NULL;
    if (count > 0) {
        ids = mg_malloc(count * sizeof(*ids));
        if (ids == NULL) {
            mg_free(ids64);
            return MG_ENOMEM;
        }
        for (size_t i = 0; i < count; i++)
            ids[i] = (uint32_t)ids64[i];
    }
    mg_free(ids64);
    *ids_out = ids;
    *count_out = count;
    return MG_OK;
}

/* Reads an existing log's header and size into a new table entry (no descriptor kept). */
static int load_log(bk_entrylogs *el, uint32_t id, uint8_t *hbuf)
{
    el_log *log = log_new(el, id);
    if (log == NULL)
        return MG_ENOMEM;
    int fd;
    int rc = bk_io_open(el->io, log->path, O_RDONLY, 0, &fd);
    if (rc != MG_OK) {
        mg_free(log);
        return rc;
    }
    struct stat st;
    ssize_t n = 0;
    if (fstat(fd, &st) != 0)
        rc = mg_err_from_errno(errno);
    else
        n = read_full(el, fd, hbuf, BK_ENTRYLOG_HEADER_BYTES, 0);
    bk_io_close(el->io, fd);
    if (rc == MG_OK && n < 0)
        rc = (int)n;
    if (rc != MG_OK) {
        mg_free(log);
        return rc;
    }
    uint64_t file_size = (uint64_t)st.st_size;
    if (decode_header(hbuf, (size_t)n, file_size, log)) {
        /* valid: with or without a map */
    } else if (!all_zero(hbuf, (size_t)n)) {
        MG_WARN("entrylog: %s: header does not check; its records are still read and its "
                "ledger map is rebuilt by scanning",
                log->path);
    }
    uint64_t size = log->has_map ? log->map_offset : file_size;
    log->size_bytes = size < BK_ENTRYLOG_HEADER_BYTES ? BK_ENTRYLOG_HEADER_BYTES : size;
    pthread_mutex_lock(&el->mu);
    rc = table_push(el, log);
    pthread_mutex_unlock(&el->mu);
    if (rc != MG_OK) {
        mg_free(log);
        return rc;
    }
    if (id > el->id_max)
        el->id_max = id;
    return MG_OK;
}

int bk_entrylogs_open(const char *dir, bk_io *io, uint64_t log_bytes_max, bk_entrylogs **out)
{
    if (log_bytes_max == 0)
        log_bytes_max = BK_ENTRYLOG_BYTES_DEFAULT;
    if (log_bytes_max < BK_ENTRYLOG_BYTES_MIN || log_bytes_max > BK_ENTRYLOG_BYTES_MAX)
        return MG_EINVAL;
    size_t dir_len = strlen(dir);
    if (dir_len == 0 || dir_len + 1 + EL_NAME_BYTES + 1 > PATH_MAX)
        return MG_EINVAL;
    bk_entrylogs *el = mg_calloc(1, sizeof(*el) + dir_len + 1);
    if (el == NULL)
        return MG_ENOMEM;
    memcpy(el->dir, dir, dir_len + 1);
    el->io = io;
    el->log_bytes_max = log_bytes_max;
    el->wfd = -1;
    pthread_mutex_init(&el->mu, NULL);
    el->wbuf = mg_aligned_alloc(4096, BK_ENTRYLOG_WRITE_BUFFER_BYTES);
    if (el->wbuf == NULL) {
        bk_entrylogs_close(el);
        return MG_ENOMEM;
    }

    uint32_t *ids = NULL;
    size_t count = 0;
    int rc = list_dir(dir, &ids, &count);
    for (size_t i = 0; rc == MG_OK && i < count; i++)
        rc = load_log(el, ids[i], el->wbuf);
    mg_free(ids);
    if (rc == MG_OK && el->id_max == UINT32_MAX)
        rc = MG_ELIMIT;
    if (rc == MG_OK)
        rc = create_log(el, el->id_max + 1);
    if (rc == MG_OK)
        rc = bk_io_fsync_dir(io, dir);
    if (rc != MG_OK) {
        bk_entrylogs_close(el);
        return rc;
    }
    el->dir_dirty = false;
    *out = el;
    return MG_OK;
}

void bk_entrylogs_close(bk_entrylogs *el)
{
    if (el == NULL)
        return;
    if (el->unsynced != NULL)
        log_release(el, el->unsynced);
    close_wfd(el);
    for (size_t i = 0; i < el->log_count; i++) {
        MG_ASSERT(el->logs[i]->refs == 1); /* no reader may be running */
        log_free(el, el->logs[i]);
    }
    mg_free(el->logs);
    map_free(&el->map);
    mg_free(el->wbuf);
    pthread_mutex_destroy(&el->mu);
    mg_free(el);
}

/* ---- readers ---- */

int bk_entrylogs_read_sync(bk_entrylogs *el, bk_location loc, uint8_t *dst, size_t dst_capacity,
                           bk_record *out)
{
    if (loc.size < BK_RECORD_HEADER_BYTES || loc.size - BK_RECORD_HEADER_BYTES > BK_ENTRY_BYTES_MAX)
        return MG_ECORRUPT;
    if (dst_capacity < loc.size)
        return MG_ELIMIT;
    el_log *log = log_acquire(el, loc.log_id);
    if (log == NULL)
        return MG_ENOTFOUND;
    int rc = MG_OK;
    if (loc.offset < BK_ENTRYLOG_HEADER_BYTES || (uint64_t)loc.offset + loc.size > log_size(log))
        rc = MG_ECORRUPT;
    int fd = -1;
    if (rc == MG_OK)
        rc = log_fd(el, log, &log->fd, O_RDONLY, &fd);
    if (rc == MG_OK) {
        ssize_t n = read_full(el, fd, dst, loc.size, loc.offset);
        if (n < 0)
            rc = (int)n;
        else if ((size_t)n < loc.size)
            rc = MG_ECORRUPT; /* the file ends inside the record */
    }
    if (rc == MG_OK) {
        rc = bk_record_parse(dst, loc.size, out);
        if (rc == MG_EAGAIN || (rc == MG_OK && out->record_size != loc.size))
            rc = MG_ECORRUPT;
    }
    log_release(el, log);
    return rc;
}

int bk_entrylogs_direct_fd(bk_entrylogs *el, uint32_t log_id, int *fd)
{
    el_log *log = log_acquire(el, log_id);
    if (log == NULL)
        return MG_ENOTFOUND;
    int rc = log_fd(el, log, &log->direct_fd, O_RDONLY | O_DIRECT, fd);
    log_release(el, log);
    return rc;
}

uint64_t bk_entrylogs_log_size(bk_entrylogs *el, uint32_t log_id)
{
    pthread_mutex_lock(&el->mu);
    el_log *log = table_find(el, log_id);
    uint64_t size = log ? log_size(log) : 0;
    pthread_mutex_unlock(&el->mu);
    return size;
}

size_t bk_entrylogs_list(bk_entrylogs *el, uint32_t *ids, size_t capacity)
{
    size_t n = 0;
    pthread_mutex_lock(&el->mu);
    for (size_t i = 0; i < el->log_count; i++) {
        if (el->logs[i]->current)
            continue;
        if (n < capacity)
            ids[n] = el->logs[i]->id;
        n++;
    }
    pthread_mutex_unlock(&el->mu);
    return n;
}

/* Scans log (referenced by the caller) from the first record to its end. */
static int scan_log(bk_entrylogs *el, el_log *log,
                    int (*fn)(const bk_record *rec, bk_location loc, void *arg), void *arg)
{
    pthread_mutex_lock(&el->mu);
    bool bounded = log->has_map;
    uint64_t end = log->map_offset;
    pthread_mutex_unlock(&el->mu);
    int fd;
    int rc = log_fd(el, log, &log->fd, O_RDONLY, &fd);
    if (rc != MG_OK)
        return rc;

    size_t cap = EL_SCAN_CHUNK_BYTES;
    uint8_t *buf = mg_malloc(cap);
    if (buf == NULL)
        return MG_ENOMEM;
    uint64_t buf_pos = BK_ENTRYLOG_HEADER_BYTES; /* file offset of buf[0] */
    size_t buf_len = 0;
    uint64_t pos = BK_ENTRYLOG_HEADER_BYTES;
    bool eof = false;
    rc = MG_OK;
    for (;;) {
        if (bounded && pos >= end)
            break;
        size_t have = buf_len - (size_t)(pos - buf_pos);
        bk_record rec;
        int prc = bk_record_parse(buf + (pos - buf_pos), have, &rec);
        if (prc == MG_OK) {
            MG_ASSERT(pos + rec.record_size <= UINT32_MAX);
            bk_location loc = { log->id, (uint32_t)pos, (uint32_t)rec.record_size };
            int frc = fn(&rec, loc, arg);
            if (frc != 0) {
                rc = frc < 0 ? frc : MG_OK;
                break;
            }
            pos += rec.record_size;
            continue;
        }
        if (prc == MG_ECORRUPT || eof) {
            if (prc == MG_ECORRUPT || have > 0)
                MG_DEBUG("entrylog: %s: scan stops at offset %llu (%s)", log->path,
                         (unsigned long long)pos, prc == MG_ECORRUPT ? "corrupt" : "truncated");
            break;
        }
        /* Need more bytes: keep the partial record at the front, grow for a large one. */
        size_t need = rec.record_size ? rec.record_size : BK_RECORD_HEADER_BYTES;
        memmove(buf, buf + (pos - buf_pos), have);
        buf_pos = pos;
        buf_len = have;
        if (need > cap) {
            uint8_t *p = mg_realloc(buf, need);
            if (p == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            buf = p;
            cap = need;
        }
        size_t want = cap - buf_len;
        uint64_t from = buf_pos + buf_len;
        if (bounded && from + want > end)
            want = (size_t)(end - from);
        ssize_t n = want > 0 ? read_full(el, fd, buf + buf_len, want, from) : 0;
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if ((size_t)n < want || n == 0)
            eof = true;
        buf_len += (size_t)n;
    }
    mg_free(buf);
    return rc;
}

int bk_entrylogs_scan(bk_entrylogs *el, uint32_t log_id,
                      int (*fn)(const bk_record *rec, bk_location loc, void *arg), void *arg)
{
    el_log *log = log_acquire(el, log_id);
    if (log == NULL)
        return MG_ENOTFOUND;
    int rc = scan_log(el, log, fn, arg);
    log_release(el, log);
    return rc;
}

static int map_scan_record(const bk_record *rec, bk_location loc, void *arg)
{
    el_map *m = arg;
    if (rec->ledger_id < 0)
        return 0; /* never written by append; not a ledger */
    int rc = map_reserve(m, rec->ledger_id);
    if (rc != MG_OK)
        return rc;
    map_add(m, rec->ledger_id, loc.size);
    return 0;
}

/* Reads and checks the stored map. Returns MG_OK with *pairs (mg_free) and *count, MG_ECORRUPT
 * when it does not check (the caller scans instead), or a read error. */
static int read_stored_map(bk_entrylogs *el, el_log *log, uint64_t offset, uint64_t len,
                           uint32_t crc, el_pair **pairs_out, size_t *count_out)
{
    int fd;
    int rc = log_fd(el, log, &log->fd, O_RDONLY, &fd);
    if (rc != MG_OK)
        return rc;
    size_t n = (size_t)(len / EL_MAP_ITEM_BYTES);
    uint8_t *raw = mg_malloc((size_t)len);
    el_pair *pairs = mg_malloc(n * sizeof(*pairs));
    if (raw == NULL || pairs == NULL) {
        mg_free(raw);
        mg_free(pairs);
        return MG_ENOMEM;
    }
    ssize_t got = read_full(el, fd, raw, (size_t)len, offset);
    if (got < 0)
        rc = (int)got;
    else if ((uint64_t)got != len || mg_crc32c(0, raw, (size_t)len) != crc)
        rc = MG_ECORRUPT;
    for (size_t i = 0; rc == MG_OK && i < n; i++) {
        pairs[i].ledger_id = (int64_t)get_be64(raw + i * EL_MAP_ITEM_BYTES);
        pairs[i].bytes = get_be64(raw + i * EL_MAP_ITEM_BYTES + 8);
        if (pairs[i].ledger_id < 0 || (i > 0 && pairs[i].ledger_id <= pairs[i - 1].ledger_id))
            rc = MG_ECORRUPT;
    }
    mg_free(raw);
    if (rc != MG_OK) {
        mg_free(pairs);
        return rc;
    }
    *pairs_out = pairs;
    *count_out = n;
    return MG_OK;
}

int bk_entrylogs_ledger_map(bk_entrylogs *el, uint32_t log_id,
                            void (*fn)(int64_t ledger_id, uint64_t bytes, void *arg), void *arg)
{
    el_log *log = log_acquire(el, log_id);
    if (log == NULL)
        return MG_ENOTFOUND;
    pthread_mutex_lock(&el->mu);
    bool current = log->current;
    bool has_map = log->has_map;
    uint64_t map_offset = log->map_offset;
    uint64_t map_len = log->map_len;
    uint32_t map_crc = log->map_crc;
    pthread_mutex_unlock(&el->mu);

    el_pair *pairs = NULL;
    size_t count = 0;
    int rc = current ? MG_ESTATE : MG_ECORRUPT;
    if (!current && has_map) {
        rc = read_stored_map(el, log, map_offset, map_len, map_crc, &pairs, &count);
        if (rc == MG_ECORRUPT)
            MG_WARN("entrylog: %s: stored ledger map does not check; scanning", log->path);
    }
    if (rc == MG_ECORRUPT) {
        el_map m = { 0 };
        rc = scan_log(el, log, map_scan_record, &m);
        if (rc == MG_OK && m.count > 0) {
            pairs = mg_malloc(m.count * sizeof(*pairs));
            if (pairs == NULL)
                rc = MG_ENOMEM;
            else
                map_sorted(&m, pairs);
            count = m.count;
        }
        map_free(&m);
    }
    log_release(el, log);
    if (rc == MG_OK) {
        for (size_t i = 0; i < count; i++)
            fn(pairs[i].ledger_id, pairs[i].bytes, arg);
    }
    mg_free(pairs);
    return rc;
}

int bk_entrylogs_remove(bk_entrylogs *el, uint32_t log_id)
{
    el_log *log = log_acquire(el, log_id);
    if (log == NULL)
        return MG_ENOTFOUND;
    pthread_mutex_lock(&el->mu);
    bool current = log->current;
    pthread_mutex_unlock(&el->mu);
    int rc = current ? MG_ESTATE : bk_io_unlink(el->io, log->path);
    if (rc == MG_OK) {
        pthread_mutex_lock(&el->mu);
        size_t i = table_bisect(el, log_id);
        if (i < el->log_count && el->logs[i] == log) {
            memmove(el->logs + i, el->logs + i + 1, (el->log_count - i - 1) * sizeof(*el->logs));
            el->log_count--;
            MG_ASSERT(log->refs >= 2);
            log->refs--; /* the table's; ours is dropped below */
        } else {
            rc = MG_ENOTFOUND; /* removed concurrently */
        }
        pthread_mutex_unlock(&el->mu);
    }
    log_release(el, log);
    return rc;
}
