/*
 * The location index on RocksDB: key/value encoding, the single-writer guard, and the bounded
 * iterators behind seek, seek_run and the ledger walk. Layout, invariants and thread rules are
 * in index.h.
 *
 * Every read that iterates builds its own rocksdb_readoptions with an iterate_upper_bound (the
 * C API keeps only a pointer to the bound's bytes, so the bound lives on the caller's stack for
 * as long as the iterator), so concurrent readers share nothing mutable; point lookups share
 * one read-only readoptions.
 *
 * Errors from RocksDB are logged once here and converted: a message starting "Corruption" to
 * MG_ECORRUPT, anything else to MG_EIO. A value that does not decode is MG_ECORRUPT, logged with
 * its ledger and entry.
 */
#include "bookie/index.h"
#include "common/fs.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define IX_FORMAT_VERSION   1
#define IX_TAG_ENTRY        'e'
#define IX_TAG_LEDGER       'l'
#define IX_TAG_LEDGER_END   'm' /* upper bound of every 'l' key */
#define IX_TAG_FORMAT       'v'
#define IX_ENTRY_KEY_BYTES  17
#define IX_LEDGER_KEY_BYTES 9
#define IX_LOC_BYTES        12
#define IX_INFO_BYTES       10
#define IX_INFO_VERSION     1
#define IX_INFO_FENCED      0x01u

struct bk_index {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_readoptions_t *read_opts; /* point lookups; never modified after open */
    rocksdb_writeoptions_t *write_sync;
    rocksdb_writeoptions_t *write_nosync;
    atomic_bool writing; /* the single-writer guard: true while a write runs */
    char *dir;
};

/* --- encoding ----------------------------------------------------------------------------- */

static void ix_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t ix_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void ix_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t ix_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* tag + id (9 bytes): a ledger's info key, or with IX_TAG_ENTRY the start of its entries (and,
 * with id + 1, their exclusive end). id may be INT64_MAX + 1 for that end. */
static void ix_key9(uint8_t key[IX_LEDGER_KEY_BYTES], char tag, uint64_t id)
{
    key[0] = (uint8_t)tag;
    ix_put_be64(key + 1, id);
}

/* 'e' + ledger + entry (17 bytes). entry may be INT64_MAX + 1 (an exclusive upper bound). */
static void ix_entry_key(uint8_t key[IX_ENTRY_KEY_BYTES], uint64_t ledger_id, uint64_t entry_id)
{
    key[0] = IX_TAG_ENTRY;
    ix_put_be64(key + 1, ledger_id);
    ix_put_be64(key + 9, entry_id);
}

static void ix_encode_loc(uint8_t v[IX_LOC_BYTES], const bk_location *loc)
{
    ix_put_le32(v, loc->log_id);
    ix_put_le32(v + 4, loc->offset);
    ix_put_le32(v + 8, loc->size);
}

static int ix_decode_loc(const char *v, size_t len, bk_location *out)
{
    if (v == NULL || len != IX_LOC_BYTES)
        return MG_ECORRUPT;
    const uint8_t *p = (const uint8_t *)v;
    out->log_id = ix_get_le32(p);
    out->offset = ix_get_le32(p + 4);
    out->size = ix_get_le32(p + 8);
    return MG_OK;
}

static void ix_encode_info(uint8_t v[IX_INFO_BYTES], const bk_ledger_info *info)
{
    v[0] = IX_INFO_VERSION;
    v[1] = info->fenced ? IX_INFO_FENCED : 0;
    ix_put_be64(v + 2, (uint64_t)info->last_entry_id);
}

static int ix_decode_info(const char *v, size_t len, bk_ledger_info *out)
{
    if (v == NULL || len != IX_INFO_BYTES)
        return MG_ECORRUPT;
    const uint8_t *p = (const uint8_t *)v;
    if (p[0] != IX_INFO_VERSION || (p[1] & ~IX_INFO_FENCED) != 0)
        return MG_ECORRUPT;
    uint64_t last = ix_get_be64(p + 2);
    /* -1 (all ones) or a valid id */
    if (last != UINT64_MAX && last > (uint64_t)INT64_MAX)
        return MG_ECORRUPT;
    out->exists = true;
    out->fenced = (p[1] & IX_INFO_FENCED) != 0;
    out->last_entry_id = last == UINT64_MAX ? -1 : (int64_t)last;
    return MG_OK;
}

static bool ix_loc_equal(const bk_location *a, const bk_location *b)
{
    return a->log_id == b->log_id && a->offset == b->offset && a->size == b->size;
}

/* --- helpers -------------------------------------------------------------------------------- */

/* Logs a RocksDB error, frees err, returns MG_ECORRUPT or MG_EIO. */
static int ix_rocks_error(const bk_index *ix, const char *what, char *err)
{
    int rc = strncmp(err, "Corruption", 10) == 0 ? MG_ECORRUPT : MG_EIO;
    MG_ERROR("bookie index: %s in %s failed: %s", what, ix->dir, err);
    rocksdb_free(err);
    return rc;
}

/* Logs a value or key that does not decode; ids < 0 are "not known" and left out. */
static int ix_corrupt(const bk_index *ix, const char *what, int64_t ledger_id, int64_t entry_id)
{
    if (entry_id >= 0)
        MG_ERROR("bookie index: corrupt %s in %s (ledger %" PRId64 ", entry %" PRId64 ")", what,
                 ix->dir, ledger_id, entry_id);
    else if (ledger_id >= 0)
        MG_ERROR("bookie index: corrupt %s in %s (ledger %" PRId64 ")", what, ix->dir, ledger_id);
    else
        MG_ERROR("bookie index: corrupt %s in %s", what, ix->dir);
    return MG_ECORRUPT;
}

/* The single-writer rule (index.h): overlapping writes are a programmer error. */
static void ix_writer_enter(bk_index *ix)
{
    bool was_writing = atomic_exchange(&ix->writing, true);
    MG_ASSERT(!was_writing);
}

static void ix_writer_leave(bk_index *ix)
{
    atomic_store(&ix->writing, false);
}

static int ix_write(bk_index *ix, rocksdb_writebatch_t *batch, bool sync, const char *what)
{
    char *err = NULL;
    rocksdb_write(ix->db, sync ? ix->write_sync : ix->write_nosync, batch, &err);
    if (err != NULL)
        return ix_rocks_error(ix, what, err);
    return MG_OK;
}

/* Reads ledger_id's info; an unknown ledger gives exists = false, last_entry_id = -1. */
static int ix_read_info(bk_index *ix, int64_t ledger_id, bk_ledger_info *out)
{
    uint8_t key[IX_LEDGER_KEY_BYTES];
    ix_key9(key, IX_TAG_LEDGER, (uint64_t)ledger_id);
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(ix->db, ix->read_opts, (const char *)key, sizeof(key), &vlen, &err);
    if (err != NULL)
        return ix_rocks_error(ix, "ledger info read", err);
    if (v == NULL) {
        *out = (bk_ledger_info){ .exists = false, .fenced = false, .last_entry_id = -1 };
        return MG_OK;
    }
    int rc = ix_decode_info(v, vlen, out);
    rocksdb_free(v);
    if (rc != MG_OK)
        return ix_corrupt(ix, "ledger info", ledger_id, -1);
    return MG_OK;
}

/* An iterator over keys < upper[0, upper_len); upper must outlive the iterator. */
typedef struct ix_iter {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} ix_iter;

static void ix_iter_open(bk_index *ix, const uint8_t *upper, size_t upper_len, ix_iter *iter)
{
    iter->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(iter->ro, (const char *)upper, upper_len);
    iter->it = rocksdb_create_iterator(ix->db, iter->ro);
}

/* Destroys the iterator; returns MG_OK or the iterator's error (logged). */
static int ix_iter_close(bk_index *ix, ix_iter *iter, const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(iter->it, &err);
    rocksdb_iter_destroy(iter->it);
    rocksdb_readoptions_destroy(iter->ro);
    if (err != NULL)
        return ix_rocks_error(ix, what, err);
    return MG_OK;
}

/* Parses the iterator's current key as an entry key of ledger_id, and its value. */
static int ix_iter_entry(bk_index *ix, rocksdb_iterator_t *it, int64_t ledger_id, int64_t *entry_id,
                         bk_location *loc)
{
    size_t klen = 0, vlen = 0;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
    if (klen != IX_ENTRY_KEY_BYTES || k[0] != IX_TAG_ENTRY ||
        ix_get_be64(k + 1) != (uint64_t)ledger_id || ix_get_be64(k + 9) > (uint64_t)INT64_MAX)
        return ix_corrupt(ix, "entry key", ledger_id, -1);
    *entry_id = (int64_t)ix_get_be64(k + 9);
    const char *v = rocksdb_iter_value(it, &vlen);
    if (ix_decode_loc(v, vlen, loc) != MG_OK)
        return ix_corrupt(ix, "entry location", ledger_id, *entry_id);
    return MG_OK;
}

/* Checks the format version, writing it into a new index. */
static int ix_check_format(bk_index *ix)
{
    const char key = IX_TAG_FORMAT;
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(ix->db, ix->read_opts, &key, 1, &vlen, &err);
    if (err != NULL)
        return ix_rocks_error(ix, "format read", err);
    if (v != NULL) {
        int version = vlen == 1 ? (uint8_t)v[0] : -1;
        rocksdb_free(v);
        if (version != IX_FORMAT_VERSION) {
            MG_ERROR("bookie index: %s has format %d; this build reads format %d", ix->dir, version,
                     IX_FORMAT_VERSION);
            return MG_ECORRUPT;
        }
        return MG_OK;
    }
    const char version = IX_FORMAT_VERSION;
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_writebatch_put(batch, &key, 1, &version, 1);
    int rc = ix_write(ix, batch, true, "format write");
    rocksdb_writebatch_destroy(batch);
    return rc;
}

/* --- open / close --------------------------------------------------------------------------- */

void bk_index_close(bk_index *ix)
{
    if (ix == NULL)
        return;
    MG_ASSERT(!atomic_load(&ix->writing));
    if (ix->db != NULL)
        rocksdb_close(ix->db);
    if (ix->read_opts != NULL)
        rocksdb_readoptions_destroy(ix->read_opts);
    if (ix->write_sync != NULL)
        rocksdb_writeoptions_destroy(ix->write_sync);
    if (ix->write_nosync != NULL)
        rocksdb_writeoptions_destroy(ix->write_nosync);
    if (ix->options != NULL)
        rocksdb_options_destroy(ix->options);
    mg_free(ix->dir);
    mg_free(ix);
}

int bk_index_open(const char *dir, bk_index **out)
{
    MG_ASSERT(dir != NULL && out != NULL);
    *out = NULL;
    bk_index *ix = mg_calloc(1, sizeof(*ix));
    if (ix == NULL)
        return MG_ENOMEM;
    atomic_init(&ix->writing, false);
    size_t dir_len = strlen(dir);
    ix->dir = mg_malloc(dir_len + 1);
    if (ix->dir == NULL) {
        mg_free(ix);
        return MG_ENOMEM;
    }
    memcpy(ix->dir, dir, dir_len + 1);
    int rc = mg_mkdirs(ix->dir);
    if (rc != MG_OK) {
        bk_index_close(ix);
        return rc;
    }

    ix->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(ix->options, 1);
    rocksdb_options_set_keep_log_file_num(ix->options, BK_INDEX_INFO_LOG_FILES_MAX);
    rocksdb_options_set_max_log_file_size(ix->options, BK_INDEX_INFO_LOG_BYTES_MAX);
    /* The table options are copied into the factory; the filter policy is owned by them. */
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(
        table, rocksdb_filterpolicy_create_bloom_full(BK_INDEX_BLOOM_BITS_PER_KEY));
    rocksdb_options_set_block_based_table_factory(ix->options, table);
    rocksdb_block_based_options_destroy(table);
    ix->read_opts = rocksdb_readoptions_create();
    ix->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(ix->write_sync, 1);
    ix->write_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(ix->write_nosync, 0);

    char *err = NULL;
    ix->db = rocksdb_open(ix->options, ix->dir, &err);
    if (err != NULL) {
        if (strstr(err, "While lock file") != NULL ||
            strstr(err, "lock hold by current process") != NULL) {
            MG_ERROR("bookie index: %s is locked by another open index (another bookie process, "
                     "or one already open here): %s",
                     ix->dir, err);
            rc = MG_EAGAIN;
        } else if (strstr(err, "Corruption") != NULL) {
            MG_ERROR("bookie index: %s is corrupt: %s", ix->dir, err);
            rc = MG_ECORRUPT;
        } else {
            MG_ERROR("bookie index: cannot open %s: %s", ix->dir, err);
            rc = MG_EIO;
        }
        rocksdb_free(err);
        ix->db = NULL;
        bk_index_close(ix);
        return rc;
    }
    rc = ix_check_format(ix);
    if (rc != MG_OK) {
        bk_index_close(ix);
        return rc;
    }
    *out = ix;
    return MG_OK;
}

/* --- writes (writer thread) ----------------------------------------------------------------- */

/* One ledger touched by a batch and the largest entry id the batch has for it. */
typedef struct ix_ledger_max {
    int64_t ledger_id;
    int64_t entry_id_max;
} ix_ledger_max;

static int ix_ledger_max_cmp(const void *a, const void *b)
{
    int64_t x = ((const ix_ledger_max *)a)->ledger_id;
    int64_t y = ((const ix_ledger_max *)b)->ledger_id;
    return (x > y) - (x < y);
}

int bk_index_put_batch(bk_index *ix, const bk_index_put *puts, size_t n)
{
    if (n == 0)
        return MG_OK;
    if (n > BK_INDEX_PUT_BATCH_MAX)
        return MG_ELIMIT;
    MG_ASSERT(puts != NULL);
    for (size_t i = 0; i < n; i++)
        if (puts[i].ledger_id < 0 || puts[i].entry_id < 0)
            return MG_EINVAL;

    /* Runs of one ledger (a flushed half is sorted, so usually one run per ledger), then sorted
     * and merged so each ledger's info is read and written once. */
    size_t run_count = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || puts[i].ledger_id != puts[i - 1].ledger_id)
            run_count++;
    ix_ledger_max *runs = mg_malloc(run_count * sizeof(*runs));
    if (runs == NULL)
        return MG_ENOMEM;
    size_t r = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || puts[i].ledger_id != puts[i - 1].ledger_id)
            runs[r++] = (ix_ledger_max){ puts[i].ledger_id, puts[i].entry_id };
        else if (puts[i].entry_id > runs[r - 1].entry_id_max)
            runs[r - 1].entry_id_max = puts[i].entry_id;
    }
    MG_ASSERT(r == run_count);
    qsort(runs, run_count, sizeof(*runs), ix_ledger_max_cmp);
    size_t ledger_count = 0;
    for (size_t i = 0; i < run_count; i++) {
        if (ledger_count > 0 && runs[ledger_count - 1].ledger_id == runs[i].ledger_id) {
            if (runs[i].entry_id_max > runs[ledger_count - 1].entry_id_max)
                runs[ledger_count - 1].entry_id_max = runs[i].entry_id_max;
        } else {
            runs[ledger_count++] = runs[i];
        }
    }

    ix_writer_enter(ix);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++) {
        uint8_t key[IX_ENTRY_KEY_BYTES];
        uint8_t val[IX_LOC_BYTES];
        ix_entry_key(key, (uint64_t)puts[i].ledger_id, (uint64_t)puts[i].entry_id);
        ix_encode_loc(val, &puts[i].loc);
        rocksdb_writebatch_put(batch, (const char *)key, sizeof(key), (const char *)val,
                               sizeof(val));
    }
    int rc = MG_OK;
    for (size_t i = 0; i < ledger_count && rc == MG_OK; i++) {
        bk_ledger_info info;
        rc = ix_read_info(ix, runs[i].ledger_id, &info);
        if (rc != MG_OK)
            break;
        info.exists = true;
        if (runs[i].entry_id_max > info.last_entry_id)
            info.last_entry_id = runs[i].entry_id_max;
        uint8_t key[IX_LEDGER_KEY_BYTES];
        uint8_t val[IX_INFO_BYTES];
        ix_key9(key, IX_TAG_LEDGER, (uint64_t)runs[i].ledger_id);
        ix_encode_info(val, &info);
        rocksdb_writebatch_put(batch, (const char *)key, sizeof(key), (const char *)val,
                               sizeof(val));
    }
    if (rc == MG_OK)
        rc = ix_write(ix, batch, true, "put batch");
    rocksdb_writebatch_destroy(batch);
    ix_writer_leave(ix);
    mg_free(runs);
    return rc;
}

int bk_index_ledger_set_fenced(bk_index *ix, int64_t ledger_id)
{
    if (ledger_id < 0)
        return MG_EINVAL;
    ix_writer_enter(ix);
    bk_ledger_info info;
    int rc = ix_read_info(ix, ledger_id, &info);
    if (rc == MG_OK && !(info.exists && info.fenced)) {
        info.exists = true;
        info.fenced = true;
        uint8_t key[IX_LEDGER_KEY_BYTES];
        uint8_t val[IX_INFO_BYTES];
        ix_key9(key, IX_TAG_LEDGER, (uint64_t)ledger_id);
        ix_encode_info(val, &info);
        rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
        rocksdb_writebatch_put(batch, (const char *)key, sizeof(key), (const char *)val,
                               sizeof(val));
        rc = ix_write(ix, batch, true, "fence");
        rocksdb_writebatch_destroy(batch);
    }
    ix_writer_leave(ix);
    return rc;
}

int bk_index_delete_ledger(bk_index *ix, int64_t ledger_id)
{
    if (ledger_id < 0)
        return MG_EINVAL;
    uint8_t begin[IX_LEDGER_KEY_BYTES], end[IX_LEDGER_KEY_BYTES], info_key[IX_LEDGER_KEY_BYTES];
    ix_key9(begin, IX_TAG_ENTRY, (uint64_t)ledger_id);
    ix_key9(end, IX_TAG_ENTRY, (uint64_t)ledger_id + 1); /* <= 2^63: no wrap */
    ix_key9(info_key, IX_TAG_LEDGER, (uint64_t)ledger_id);
    ix_writer_enter(ix);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_range(batch, (const char *)begin, sizeof(begin), (const char *)end,
                                    sizeof(end));
    rocksdb_writebatch_delete(batch, (const char *)info_key, sizeof(info_key));
    int rc = ix_write(ix, batch, true, "delete ledger");
    rocksdb_writebatch_destroy(batch);
    ix_writer_leave(ix);
    return rc;
}

int bk_index_relocate(bk_index *ix, int64_t ledger_id, int64_t entry_id, bk_location from,
                      bk_location to)
{
    if (ledger_id < 0 || entry_id < 0)
        return MG_EINVAL;
    uint8_t key[IX_ENTRY_KEY_BYTES];
    ix_entry_key(key, (uint64_t)ledger_id, (uint64_t)entry_id);
    ix_writer_enter(ix);
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(ix->db, ix->read_opts, (const char *)key, sizeof(key), &vlen, &err);
    int rc = MG_OK;
    bk_location cur;
    if (err != NULL) {
        rc = ix_rocks_error(ix, "relocate read", err);
    } else if (v == NULL) {
        rc = MG_ENOTFOUND;
    } else {
        rc = ix_decode_loc(v, vlen, &cur);
        rocksdb_free(v);
        if (rc != MG_OK)
            rc = ix_corrupt(ix, "entry location", ledger_id, entry_id);
        else if (!ix_loc_equal(&cur, &from))
            rc = MG_ENOTFOUND;
    }
    if (rc == MG_OK) {
        uint8_t val[IX_LOC_BYTES];
        ix_encode_loc(val, &to);
        rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
        rocksdb_writebatch_put(batch, (const char *)key, sizeof(key), (const char *)val,
                               sizeof(val));
        rc = ix_write(ix, batch, false, "relocate");
        rocksdb_writebatch_destroy(batch);
    }
    ix_writer_leave(ix);
    return rc;
}

int bk_index_sync(bk_index *ix)
{
    ix_writer_enter(ix);
    char *err = NULL;
    rocksdb_flush_wal(ix->db, 1, &err);
    int rc = err != NULL ? ix_rocks_error(ix, "sync", err) : MG_OK;
    ix_writer_leave(ix);
    return rc;
}

/* --- reads (any thread) --------------------------------------------------------------------- */

int bk_index_get(bk_index *ix, int64_t ledger_id, int64_t entry_id, bk_location *out)
{
    if (ledger_id < 0 || entry_id < 0)
        return MG_EINVAL;
    uint8_t key[IX_ENTRY_KEY_BYTES];
    ix_entry_key(key, (uint64_t)ledger_id, (uint64_t)entry_id);
    char *err = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get(ix->db, ix->read_opts, (const char *)key, sizeof(key), &vlen, &err);
    if (err != NULL)
        return ix_rocks_error(ix, "get", err);
    if (v == NULL)
        return MG_ENOTFOUND;
    int rc = ix_decode_loc(v, vlen, out);
    rocksdb_free(v);
    if (rc != MG_OK)
        return ix_corrupt(ix, "entry location", ledger_id, entry_id);
    return MG_OK;
}

int bk_index_seek(bk_index *ix, int64_t ledger_id, int64_t entry_id, int64_t *found_entry_id,
                  bk_location *out)
{
    if (ledger_id < 0 || entry_id < 0)
        return MG_EINVAL;
    uint8_t start[IX_ENTRY_KEY_BYTES], upper[IX_LEDGER_KEY_BYTES];
    ix_entry_key(start, (uint64_t)ledger_id, (uint64_t)entry_id);
    ix_key9(upper, IX_TAG_ENTRY, (uint64_t)ledger_id + 1);
    ix_iter iter;
    ix_iter_open(ix, upper, sizeof(upper), &iter);
    rocksdb_iter_seek(iter.it, (const char *)start, sizeof(start));
    int rc = MG_ENOTFOUND;
    if (rocksdb_iter_valid(iter.it))
        rc = ix_iter_entry(ix, iter.it, ledger_id, found_entry_id, out);
    int close_rc = ix_iter_close(ix, &iter, "seek");
    return close_rc != MG_OK ? close_rc : rc;
}

int bk_index_seek_run(bk_index *ix, int64_t ledger_id, int64_t first_entry_id,
                      int64_t last_entry_id, bk_index_put *out, size_t capacity, size_t *count)
{
    MG_ASSERT(count != NULL);
    *count = 0;
    if (ledger_id < 0 || first_entry_id < 0 || last_entry_id < first_entry_id || capacity == 0)
        return MG_EINVAL;
    MG_ASSERT(out != NULL);
    uint8_t start[IX_ENTRY_KEY_BYTES], upper[IX_ENTRY_KEY_BYTES];
    ix_entry_key(start, (uint64_t)ledger_id, (uint64_t)first_entry_id);
    ix_entry_key(upper, (uint64_t)ledger_id, (uint64_t)last_entry_id + 1); /* <= 2^63 */
    ix_iter iter;
    ix_iter_open(ix, upper, sizeof(upper), &iter);
    size_t found = 0;
    int rc = MG_OK;
    for (rocksdb_iter_seek(iter.it, (const char *)start, sizeof(start));
         found < capacity && rocksdb_iter_valid(iter.it); rocksdb_iter_next(iter.it)) {
        int64_t entry_id;
        bk_location loc;
        rc = ix_iter_entry(ix, iter.it, ledger_id, &entry_id, &loc);
        if (rc != MG_OK)
            break;
        if (entry_id != first_entry_id + (int64_t)found)
            break; /* a gap */
        out[found++] = (bk_index_put){ .ledger_id = ledger_id, .entry_id = entry_id, .loc = loc };
    }
    int close_rc = ix_iter_close(ix, &iter, "seek run");
    if (close_rc != MG_OK)
        return close_rc;
    if (rc != MG_OK)
        return rc;
    if (found == 0)
        return MG_ENOTFOUND;
    *count = found;
    return MG_OK;
}

int bk_index_ledger_get(bk_index *ix, int64_t ledger_id, bk_ledger_info *out)
{
    if (ledger_id < 0)
        return MG_EINVAL;
    return ix_read_info(ix, ledger_id, out);
}

int bk_index_ledgers(bk_index *ix,
                     int (*fn)(int64_t ledger_id, const bk_ledger_info *info, void *arg), void *arg)
{
    MG_ASSERT(fn != NULL);
    const uint8_t start = IX_TAG_LEDGER, upper = IX_TAG_LEDGER_END;
    ix_iter iter;
    ix_iter_open(ix, &upper, 1, &iter);
    int rc = MG_OK;
    for (rocksdb_iter_seek(iter.it, (const char *)&start, 1); rocksdb_iter_valid(iter.it);
         rocksdb_iter_next(iter.it)) {
        size_t klen = 0, vlen = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(iter.it, &klen);
        if (klen != IX_LEDGER_KEY_BYTES || ix_get_be64(k + 1) > (uint64_t)INT64_MAX) {
            rc = ix_corrupt(ix, "ledger key", -1, -1);
            break;
        }
        int64_t ledger_id = (int64_t)ix_get_be64(k + 1);
        const char *v = rocksdb_iter_value(iter.it, &vlen);
        bk_ledger_info info;
        if (ix_decode_info(v, vlen, &info) != MG_OK) {
            rc = ix_corrupt(ix, "ledger info", ledger_id, -1);
            break;
        }
        rc = fn(ledger_id, &info, arg);
        if (rc != MG_OK)
            break;
    }
    int close_rc = ix_iter_close(ix, &iter, "ledger walk");
    return rc != MG_OK ? rc : close_rc;
}
