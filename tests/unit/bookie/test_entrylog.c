/*
 * Tests for bookie/entrylog.h: records of assorted sizes (empty, around 4 KiB, larger than the
 * write buffer) read back byte-identical; the on-disk format checked byte by byte against the
 * documented layout (record header, CRC, file header, ledger map); bk_record_parse on exact,
 * short, corrupt and oversized input; roll-over with a small log_bytes_max (list, exact ledger
 * maps, no record crossing the bound); early roll-over at BK_ENTRYLOG_LEDGERS_MAX ledgers;
 * reopening (new log id, old locations readable, the unfinished log's map rebuilt by scanning,
 * a broken header or map falling back to a scan); scans of truncated and corrupt logs; reads
 * past the end; remove; the sticky error state under injected ENOSPC and EIO; pread faults.
 *
 * Files live in a fresh directory under /var/tmp (a real disk: O_DIRECT needs one), removed by
 * the suite's fini.
 */
#include "bookie/entrylog.h"

#include "bookie/io.h"
#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/cr_util.h"

static char g_dir[256];
static bk_io *g_io;

static void suite_init(void)
{
    snprintf(g_dir, sizeof(g_dir), "/var/tmp/mg-elog-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp under /var/tmp failed");
    cr_assert_eq(bk_io_create(&g_io), MG_OK);
}

static void suite_fini(void)
{
    mg_alloc_fail_reset();
    mgt_rm_tree(g_dir);
    bk_io_destroy(g_io);
}

TestSuite(entrylog, .timeout = 60, .init = suite_init, .fini = suite_fini);

/* ---- helpers ---- */

static void log_path(uint32_t id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%08x.log", g_dir, id);
}

/* Deterministic payload bytes for (ledger, entry). */
static void fill(uint8_t *p, size_t len, int64_t ledger_id, int64_t entry_id)
{
    uint64_t x =
        (uint64_t)ledger_id * 0x9e3779b97f4a7c15ull ^ (uint64_t)entry_id * 0xc2b2ae3d27d4eb4full;
    x |= 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static uint8_t *payload_for(size_t len, int64_t ledger_id, int64_t entry_id)
{
    uint8_t *p = malloc(len ? len : 1);
    cr_assert_not_null(p);
    fill(p, len, ledger_id, entry_id);
    return p;
}

static bk_entrylogs *open_logs(uint64_t log_bytes_max)
{
    bk_entrylogs *el = NULL;
    int rc = bk_entrylogs_open(g_dir, g_io, log_bytes_max, &el);
    cr_assert_eq(rc, MG_OK, "open: %s", mg_err_name(rc));
    return el;
}

static bk_location append(bk_entrylogs *el, int64_t ledger_id, int64_t entry_id, size_t len)
{
    uint8_t *p = payload_for(len, ledger_id, entry_id);
    bk_location loc;
    int rc = bk_entrylogs_append(el, ledger_id, entry_id, p, len, &loc);
    cr_assert_eq(rc, MG_OK, "append: %s", mg_err_name(rc));
    free(p);
    cr_assert_eq(loc.size, BK_RECORD_HEADER_BYTES + len);
    return loc;
}

/* Reads loc and checks it holds (ledger, entry) with the expected payload of len bytes. */
static void expect_record(bk_entrylogs *el, bk_location loc, int64_t ledger_id, int64_t entry_id,
                          size_t len)
{
    uint8_t *dst = malloc(loc.size);
    cr_assert_not_null(dst);
    bk_record rec;
    int rc = bk_entrylogs_read_sync(el, loc, dst, loc.size, &rec);
    cr_assert_eq(rc, MG_OK, "read_sync log %u off %u size %u: %s", loc.log_id, loc.offset, loc.size,
                 mg_err_name(rc));
    cr_assert_eq(rec.ledger_id, ledger_id);
    cr_assert_eq(rec.entry_id, entry_id);
    cr_assert_eq(rec.payload_len, len);
    cr_assert_eq(rec.record_size, loc.size);
    cr_assert_eq(rec.payload, dst + BK_RECORD_HEADER_BYTES);
    uint8_t *want = payload_for(len, ledger_id, entry_id);
    cr_assert(memcmp(rec.payload, want, len) == 0, "payload of %lld/%lld differs",
              (long long)ledger_id, (long long)entry_id);
    free(want);
    free(dst);
}

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

/* Encodes a record by the documented format, independently of entrylog.c. */
static size_t encode_record(uint8_t *out, int64_t ledger_id, int64_t entry_id,
                            const uint8_t *payload, size_t len)
{
    put_be32(out, (uint32_t)(24 + len));
    put_be64(out + 8, (uint64_t)ledger_id);
    put_be64(out + 16, (uint64_t)entry_id);
    memcpy(out + 24, payload, len);
    put_be32(out + 4, mg_crc32c(0, out + 8, 16 + len));
    return 24 + len;
}

static void read_raw(uint32_t id, uint64_t off, uint8_t *dst, size_t len)
{
    char p[512];
    log_path(id, p, sizeof(p));
    int fd = open(p, O_RDONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, dst, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void write_raw(uint32_t id, uint64_t off, const void *src, size_t len)
{
    char p[512];
    log_path(id, p, sizeof(p));
    int fd = open(p, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, src, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void flip_byte(uint32_t id, uint64_t off)
{
    uint8_t b;
    read_raw(id, off, &b, 1);
    b ^= 0x40;
    write_raw(id, off, &b, 1);
}

/* Collects ledger maps. */
typedef struct map_seen {
    int64_t ledger[256];
    uint64_t bytes[256];
    size_t n;
} map_seen;

static void collect_map(int64_t ledger_id, uint64_t bytes, void *arg)
{
    map_seen *m = arg;
    cr_assert_lt(m->n, 256);
    if (m->n > 0)
        cr_assert_gt(ledger_id, m->ledger[m->n - 1], "ledger map not ascending");
    m->ledger[m->n] = ledger_id;
    m->bytes[m->n] = bytes;
    m->n++;
}

/* Collects scanned records. */
typedef struct scan_seen {
    int64_t ledger[512];
    int64_t entry[512];
    bk_location loc[512];
    size_t n;
    size_t stop_after; /* 0: never */
    int stop_value;
} scan_seen;

static int collect_scan(const bk_record *rec, bk_location loc, void *arg)
{
    scan_seen *s = arg;
    cr_assert_lt(s->n, 512);
    uint8_t *want = payload_for(rec->payload_len, rec->ledger_id, rec->entry_id);
    cr_assert(memcmp(want, rec->payload, rec->payload_len) == 0);
    free(want);
    cr_assert_eq(loc.size, rec->record_size);
    s->ledger[s->n] = rec->ledger_id;
    s->entry[s->n] = rec->entry_id;
    s->loc[s->n] = loc;
    s->n++;
    if (s->stop_after != 0 && s->n == s->stop_after)
        return s->stop_value;
    return 0;
}

/* ---- round trip and format ---- */

/* Syncs between appends: each sync writes the buffer up to a block boundary, and the next
 * flush writes that last block again with more records in it. Every record must survive the
 * rewrites, be read back byte for byte, also after a reopen, and a scan must find exactly them
 * (the zeros after the last one end it). With page_cache, the O_DIRECT open is refused (as
 * tmpfs refuses it) and the log is written through the page cache, exactly its bytes. */
static int count_record(const bk_record *rec, bk_location loc, void *arg)
{
    (void)rec;
    (void)loc;
    (*(int *)arg)++;
    return 0;
}

static void syncs_between_appends(bool page_cache)
{
    if (page_cache) /* the second open of the new log is the O_DIRECT one */
        bk_io_fault_arm(g_io, BK_IO_OPEN, ".log", 1, 1, MG_EINVAL, 0);
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    if (page_cache)
        cr_assert_eq(bk_io_fault_count(g_io, BK_IO_OPEN), 1);
    enum { N = 40 };
    bk_location locs[N];
    for (int e = 0; e < N; e++) {
        locs[e] = append(el, 77, e, 100 + (size_t)e * 37);
        if (e % 3 == 0)
            cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    }
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    for (int e = 0; e < N; e++)
        expect_record(el, locs[e], 77, e, 100 + (size_t)e * 37);
    bk_entrylogs_close(el);
    bk_io_fault_clear(g_io, BK_IO_OPEN);

    char p[512];
    log_path(id, p, sizeof(p));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    uint64_t end = (uint64_t)locs[N - 1].offset + locs[N - 1].size;
    if (page_cache)
        cr_assert_eq((uint64_t)st.st_size, end, "through the page cache: no padding");
    else
        cr_assert_eq((uint64_t)st.st_size, (end + 4095) / 4096 * 4096, "O_DIRECT: whole blocks");

    el = open_logs(0);
    for (int e = 0; e < N; e++)
        expect_record(el, locs[e], 77, e, 100 + (size_t)e * 37);
    int found = 0;
    cr_assert_eq(bk_entrylogs_scan(el, id, count_record, &found), MG_OK);
    cr_assert_eq(found, N);
    bk_entrylogs_close(el);
}

Test(entrylog, syncs_between_appends_rewrite_the_partial_block)
{
    syncs_between_appends(false);
}

Test(entrylog, written_through_the_page_cache_where_o_direct_is_refused)
{
    syncs_between_appends(true);
}

Test(entrylog, round_trip_assorted_sizes)
{
    static const size_t sizes[] = { 0,    1,     7,      100,      4071, 4072,
                                    4073, 65536, 300001, 1u << 20, 17,   5u * 1024 * 1024 + 3,
                                    2048 };
    const size_t n_sizes = sizeof(sizes) / sizeof(sizes[0]);
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    cr_assert_eq(id, 1, "the first log of an empty directory is 1");
    cr_assert_eq(bk_entrylogs_log_size(el, id), BK_ENTRYLOG_HEADER_BYTES);

    enum { LEDGERS = 4, ENTRIES = 13 };
    bk_location locs[LEDGERS][ENTRIES];
    uint64_t expect_off = BK_ENTRYLOG_HEADER_BYTES;
    for (int l = 0; l < LEDGERS; l++) {
        for (int e = 0; e < ENTRIES; e++) {
            size_t len = sizes[(size_t)(l * 5 + e) % n_sizes];
            locs[l][e] = append(el, 10 + l, e, len);
            cr_assert_eq(locs[l][e].log_id, id);
            cr_assert_eq(locs[l][e].offset, expect_off, "records are back to back");
            expect_off += locs[l][e].size;
            cr_assert_eq(bk_entrylogs_log_size(el, id), expect_off);
        }
    }
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK, "a sync with nothing new is fine");

    /* Read in reverse order, every one byte-identical. */
    for (int l = LEDGERS - 1; l >= 0; l--) {
        for (int e = ENTRIES - 1; e >= 0; e--)
            expect_record(el, locs[l][e], 10 + l, e, sizes[(size_t)(l * 5 + e) % n_sizes]);
    }

    /* The file holds the header block and the records, then at most one block's worth of
     * zeros: O_DIRECT writes whole blocks (entrylog.c), the page cache exactly the bytes. */
    char p[512];
    log_path(id, p, sizeof(p));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_geq((uint64_t)st.st_size, expect_off);
    cr_assert_lt((uint64_t)st.st_size, expect_off + 4096);
    int zfd = open(p, O_RDONLY);
    cr_assert_geq(zfd, 0);
    uint8_t tail[4096];
    size_t tail_len = (size_t)((uint64_t)st.st_size - expect_off);
    cr_assert_eq(pread(zfd, tail, tail_len, (off_t)expect_off), (ssize_t)tail_len);
    close(zfd);
    for (size_t i = 0; i < tail_len; i++)
        cr_assert_eq(tail[i], 0, "byte %zu after the last record is not zero", i);
    uint32_t none[4];
    cr_assert_eq(bk_entrylogs_list(el, none, 4), 0, "the current log is not listed");
    bk_entrylogs_close(el);
}

Test(entrylog, on_disk_format)
{
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    uint8_t payload[300];
    fill(payload, sizeof(payload), 0x0102030405060708ll, 42);
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, 0x0102030405060708ll, 42, payload, sizeof(payload), &loc),
                 MG_OK);
    cr_assert_eq(loc.offset, 4096);
    cr_assert_eq(loc.size, 324);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);

    uint8_t want[324];
    cr_assert_eq(encode_record(want, 0x0102030405060708ll, 42, payload, sizeof(payload)), 324);
    uint8_t got[324];
    read_raw(id, 4096, got, sizeof(got));
    cr_assert(memcmp(want, got, sizeof(got)) == 0, "record bytes follow the documented format");
    cr_assert_eq(got[0], 0);
    cr_assert_eq(got[3], 0x44); /* 324 = 0x144, big-endian */
    cr_assert_eq(got[8], 0x01);
    cr_assert_eq(got[15], 0x08);

    uint8_t h[BK_ENTRYLOG_HEADER_BYTES];
    read_raw(id, 0, h, sizeof(h));
    cr_assert(memcmp(h, "MGEL", 4) == 0);
    cr_assert_eq(get_be32(h + 4), 1);
    cr_assert_eq(get_be32(h + 8), id);
    cr_assert_eq(get_be64(h + 16), 0, "no ledger map before roll-over");
    cr_assert_eq(get_be64(h + 24), 0);
    cr_assert_eq(get_be32(h + 36), mg_crc32c(0, h, 36));
    for (size_t i = 40; i < sizeof(h); i++)
        cr_assert_eq(h[i], 0);
    bk_entrylogs_close(el);
}

Test(entrylog, record_parse)
{
    uint8_t payload[1000];
    fill(payload, sizeof(payload), 5, 6);
    uint8_t rec_bytes[1024 + 8];
    size_t size = encode_record(rec_bytes, 5, 6, payload, sizeof(payload));
    cr_assert_eq(bk_record_header_bytes(), 24);

    bk_record r;
    cr_assert_eq(bk_record_parse(rec_bytes, size, &r), MG_OK);
    cr_assert_eq(r.ledger_id, 5);
    cr_assert_eq(r.entry_id, 6);
    cr_assert_eq(r.payload, rec_bytes + 24);
    cr_assert_eq(r.payload_len, 1000);
    cr_assert_eq(r.record_size, 1024);
    /* Extra bytes after the record are not looked at. */
    memset(rec_bytes + size, 0xee, 8);
    cr_assert_eq(bk_record_parse(rec_bytes, size + 8, &r), MG_OK);
    cr_assert_eq(r.record_size, 1024);

    /* Too short: the needed size once the length field is there. */
    for (size_t avail = 0; avail < size; avail++) {
        memset(&r, 0x55, sizeof(r));
        cr_assert_eq(bk_record_parse(rec_bytes, avail, &r), MG_EAGAIN, "avail %zu", avail);
        cr_assert_eq(r.record_size, avail < 4 ? 0 : 1024, "avail %zu", avail);
    }

    /* A flipped payload byte, entry id byte, CRC byte. */
    uint8_t bad[1024];
    const size_t flips[] = { 24 + 500, 1023, 16, 8, 5 };
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        memcpy(bad, rec_bytes, size);
        bad[flips[i]] ^= 1;
        cr_assert_eq(bk_record_parse(bad, size, &r), MG_ECORRUPT, "flip at %zu", flips[i]);
    }

    /* Lengths out of bounds: huge, past the payload limit by one, below the header, zero. */
    const uint32_t lens[] = { 0xFFFFFFFFu, 24 + BK_ENTRY_BYTES_MAX + 1, 23, 0 };
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memcpy(bad, rec_bytes, size);
        put_be32(bad, lens[i]);
        cr_assert_eq(bk_record_parse(bad, size, &r), MG_ECORRUPT, "len %u", lens[i]);
        cr_assert_eq(bk_record_parse(bad, 4, &r), MG_ECORRUPT, "len %u, 4 bytes", lens[i]);
    }
    /* The largest allowed length is plausible: more bytes are needed. */
    put_be32(bad, 24 + BK_ENTRY_BYTES_MAX);
    cr_assert_eq(bk_record_parse(bad, size, &r), MG_EAGAIN);
    cr_assert_eq(r.record_size, 24 + BK_ENTRY_BYTES_MAX);

    /* An empty payload. */
    size = encode_record(rec_bytes, 0, -1, payload, 0);
    cr_assert_eq(size, 24);
    cr_assert_eq(bk_record_parse(rec_bytes, size, &r), MG_OK);
    cr_assert_eq(r.payload_len, 0);
    cr_assert_eq(r.entry_id, -1);
}

Test(entrylog, argument_errors)
{
    bk_entrylogs *el = NULL;
    cr_assert_eq(bk_entrylogs_open(g_dir, g_io, BK_ENTRYLOG_BYTES_MIN - 1, &el), MG_EINVAL);
    cr_assert_eq(bk_entrylogs_open(g_dir, g_io, BK_ENTRYLOG_BYTES_MAX + 1, &el), MG_EINVAL);
    cr_assert_eq(bk_entrylogs_open("/var/tmp/mg-elog-does-not-exist/x", g_io, 0, &el),
                 MG_ENOTFOUND);
    cr_assert_null(el);

    el = open_logs(0);
    uint8_t b[8] = { 0 };
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, -1, 0, b, 8, &loc), MG_EINVAL);
    cr_assert_eq(bk_entrylogs_append(el, 1, 0, b, (size_t)BK_ENTRY_BYTES_MAX + 1, &loc), MG_ELIMIT);
    /* Neither put the writer in its error state. */
    loc = append(el, 1, 0, 8);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    expect_record(el, loc, 1, 0, 8);
    bk_entrylogs_close(el);
}

/* ---- roll-over ---- */

enum { RO_LEDGERS = 7, RO_ENTRIES = 30, RO_LOGS_MAX = 64 };
#define RO_LOG_BYTES (256u * 1024)

static size_t ro_len(int l, int e)
{
    return 1000 + (size_t)((l * 7919 + e * 104729) % 15000);
}

typedef struct ro_state {
    bk_location locs[RO_LEDGERS][RO_ENTRIES];
    uint64_t bytes[RO_LOGS_MAX][RO_LEDGERS]; /* by log id */
    uint32_t first_id;
    uint32_t last_id;
} ro_state;

static void ro_write(bk_entrylogs *el, ro_state *st)
{
    memset(st, 0, sizeof(*st));
    st->first_id = bk_entrylogs_current_id(el);
    for (int l = 0; l < RO_LEDGERS; l++) {
        for (int e = 0; e < RO_ENTRIES; e++) {
            bk_location loc = append(el, 100 + l, e, ro_len(l, e));
            cr_assert_leq((uint64_t)loc.offset + loc.size, RO_LOG_BYTES,
                          "no record crosses log_bytes_max");
            cr_assert_lt(loc.log_id, RO_LOGS_MAX);
            st->locs[l][e] = loc;
            st->bytes[loc.log_id][l] += loc.size;
        }
    }
    st->last_id = bk_entrylogs_current_id(el);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
}

static void ro_check_map(bk_entrylogs *el, const ro_state *st, uint32_t id)
{
    map_seen m = { 0 };
    int rc = bk_entrylogs_ledger_map(el, id, collect_map, &m);
    cr_assert_eq(rc, MG_OK, "ledger_map %u: %s", id, mg_err_name(rc));
    size_t k = 0;
    for (int l = 0; l < RO_LEDGERS; l++) {
        if (st->bytes[id][l] == 0)
            continue;
        cr_assert_lt(k, m.n, "log %u: ledger %d missing", id, 100 + l);
        cr_assert_eq(m.ledger[k], 100 + l);
        cr_assert_eq(m.bytes[k], st->bytes[id][l], "log %u ledger %d", id, 100 + l);
        k++;
    }
    cr_assert_eq(m.n, k, "log %u: extra ledgers", id);
}

static void ro_check_reads(bk_entrylogs *el, const ro_state *st)
{
    for (int l = 0; l < RO_LEDGERS; l++) {
        for (int e = 0; e < RO_ENTRIES; e++)
            expect_record(el, st->locs[l][e], 100 + l, e, ro_len(l, e));
    }
}

Test(entrylog, roll_over_list_and_ledger_maps)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    ro_state *st = calloc(1, sizeof(*st));
    ro_write(el, st);
    cr_assert_eq(st->first_id, 1);
    cr_assert_geq(st->last_id, 6, "~1.7 MiB in 256 KiB logs rolls over several times");

    uint32_t ids[RO_LOGS_MAX];
    size_t n = bk_entrylogs_list(el, ids, RO_LOGS_MAX);
    cr_assert_eq(n, st->last_id - st->first_id);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], st->first_id + i, "finished logs ascending, current excluded");
    uint32_t two[2];
    cr_assert_eq(bk_entrylogs_list(el, two, 2), n, "the total even when capacity is smaller");
    cr_assert_eq(two[0], 1);
    cr_assert_eq(two[1], 2);

    for (size_t i = 0; i < n; i++) {
        ro_check_map(el, st, ids[i]);
        /* The header on disk names the map, and the map is what the test computed. */
        uint8_t h[40];
        read_raw(ids[i], 0, h, sizeof(h));
        cr_assert_eq(get_be32(h + 36), mg_crc32c(0, h, 36));
        uint64_t map_off = get_be64(h + 16);
        uint64_t map_len = get_be64(h + 24);
        cr_assert_eq(map_off, bk_entrylogs_log_size(el, ids[i]));
        size_t ledgers = 0;
        for (int l = 0; l < RO_LEDGERS; l++)
            ledgers += st->bytes[ids[i]][l] != 0;
        cr_assert_eq(map_len, 16 * ledgers);
        uint8_t first[16];
        read_raw(ids[i], map_off, first, 16);
        int l0 = 0;
        while (st->bytes[ids[i]][l0] == 0)
            l0++;
        cr_assert_eq(get_be64(first), (uint64_t)(100 + l0));
        cr_assert_eq(get_be64(first + 8), st->bytes[ids[i]][l0]);
    }
    map_seen m = { 0 };
    cr_assert_eq(bk_entrylogs_ledger_map(el, st->last_id, collect_map, &m), MG_ESTATE);
    cr_assert_eq(bk_entrylogs_ledger_map(el, 999, collect_map, &m), MG_ENOTFOUND);
    cr_assert_eq(m.n, 0);
    ro_check_reads(el, st);
    bk_entrylogs_close(el);
    free(st);
}

Test(entrylog, reopen_starts_a_new_log_and_scans_unfinished_maps)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    ro_state *st = calloc(1, sizeof(*st));
    ro_write(el, st);
    bk_entrylogs_close(el); /* the current log is left without a map, as after a crash */

    el = open_logs(RO_LOG_BYTES);
    cr_assert_eq(bk_entrylogs_current_id(el), st->last_id + 1);
    uint32_t ids[RO_LOGS_MAX];
    size_t n = bk_entrylogs_list(el, ids, RO_LOGS_MAX);
    cr_assert_eq(n, st->last_id, "every old log, the unfinished one included");
    ro_check_reads(el, st);
    for (uint32_t id = st->first_id; id <= st->last_id; id++)
        ro_check_map(el, st, id); /* the last one by scanning */

    /* New writes go to the new log. */
    bk_location loc = append(el, 500, 0, 1234);
    cr_assert_eq(loc.log_id, st->last_id + 1);
    cr_assert_eq(loc.offset, 4096);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    expect_record(el, loc, 500, 0, 1234);
    bk_entrylogs_close(el);

    /* A log created by an open that wrote nothing is empty, not broken. */
    el = open_logs(RO_LOG_BYTES);
    uint32_t cur = bk_entrylogs_current_id(el);
    cr_assert_eq(cur, st->last_id + 2);
    bk_entrylogs_close(el);
    el = open_logs(RO_LOG_BYTES);
    cr_assert_eq(bk_entrylogs_current_id(el), cur + 1);
    map_seen m = { 0 };
    cr_assert_eq(bk_entrylogs_ledger_map(el, cur, collect_map, &m), MG_OK);
    cr_assert_eq(m.n, 0);
    scan_seen *s = calloc(1, sizeof(*s));
    cr_assert_eq(bk_entrylogs_scan(el, cur, collect_scan, s), MG_OK);
    cr_assert_eq(s->n, 0);
    expect_record(el, loc, 500, 0, 1234);
    bk_entrylogs_close(el);
    free(s);
    free(st);
}

Test(entrylog, broken_header_or_map_falls_back_to_scan)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    ro_state *st = calloc(1, sizeof(*st));
    ro_write(el, st);
    cr_assert_geq(st->last_id, 3);
    /* Corrupt log 1's stored map (one byte of the first pair) while the logs are open. */
    uint64_t map_off = bk_entrylogs_log_size(el, 1);
    flip_byte(1, map_off + 10);
    ro_check_map(el, st, 1);
    bk_entrylogs_close(el);

    /* Corrupt log 2's header: it is kept, read, and scanned for its map. */
    flip_byte(2, 20);
    el = open_logs(RO_LOG_BYTES);
    ro_check_map(el, st, 1);
    ro_check_map(el, st, 2);
    ro_check_map(el, st, 3);
    ro_check_reads(el, st);
    bk_entrylogs_close(el);
    free(st);
}

/* Checks the ledger map of early_roll_over_at_ledger_limit: ledgers 0, 3, 6, ... with one
 * empty record each, ledger 0 with two. */
typedef struct ledger_acc {
    size_t n;
    int64_t next;
    uint64_t sum;
} ledger_acc;

static void collect_every_third(int64_t ledger_id, uint64_t bytes, void *arg)
{
    ledger_acc *a = arg;
    cr_assert_eq(ledger_id, a->next);
    cr_assert_eq(bytes, ledger_id == 0 ? 48u : 24u);
    a->next += 3;
    a->n++;
    a->sum += bytes;
}

Test(entrylog, early_roll_over_at_ledger_limit)
{
    bk_entrylogs *el = open_logs(0);
    uint8_t b = 0;
    bk_location loc;
    for (int64_t l = 0; l < BK_ENTRYLOG_LEDGERS_MAX; l++) {
        cr_assert_eq(bk_entrylogs_append(el, l * 3, 0, &b, 0, &loc), MG_OK);
        cr_assert_eq(loc.log_id, 1);
    }
    /* Another record of a known ledger still fits; a new ledger rolls over. */
    cr_assert_eq(bk_entrylogs_append(el, 0, 1, &b, 0, &loc), MG_OK);
    cr_assert_eq(loc.log_id, 1);
    cr_assert_eq(bk_entrylogs_append(el, 1, 0, &b, 0, &loc), MG_OK);
    cr_assert_eq(loc.log_id, 2);
    cr_assert_eq(loc.offset, 4096);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);

    ledger_acc a = { 0, 0, 0 };
    cr_assert_eq(bk_entrylogs_ledger_map(el, 1, collect_every_third, &a), MG_OK);
    cr_assert_eq(a.n, BK_ENTRYLOG_LEDGERS_MAX);
    cr_assert_eq(a.sum, (uint64_t)(BK_ENTRYLOG_LEDGERS_MAX + 1) * 24);
    bk_entrylogs_close(el);
}

/* ---- scans, truncation, corruption ---- */

Test(entrylog, scan_stops_at_truncated_record)
{
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    bk_location locs[10];
    for (int e = 0; e < 10; e++)
        locs[e] = append(el, 9, e, 1000 + (size_t)e);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);

    /* fn stopping the scan: positive -> MG_OK, negative -> that value. */
    scan_seen *s = calloc(1, sizeof(*s));
    s->stop_after = 3;
    s->stop_value = 1;
    cr_assert_eq(bk_entrylogs_scan(el, id, collect_scan, s), MG_OK);
    cr_assert_eq(s->n, 3);
    memset(s, 0, sizeof(*s));
    s->stop_after = 2;
    s->stop_value = MG_ECANCELED;
    cr_assert_eq(bk_entrylogs_scan(el, id, collect_scan, s), MG_ECANCELED);
    cr_assert_eq(s->n, 2);
    cr_assert_eq(bk_entrylogs_scan(el, 77, collect_scan, s), MG_ENOTFOUND);
    bk_entrylogs_close(el);

    /* Cut the file in the middle of record 7. */
    char p[512];
    log_path(id, p, sizeof(p));
    cr_assert_eq(truncate(p, (off_t)locs[7].offset + 500), 0);

    el = open_logs(0);
    memset(s, 0, sizeof(*s));
    cr_assert_eq(bk_entrylogs_scan(el, id, collect_scan, s), MG_OK);
    cr_assert_eq(s->n, 7);
    for (int e = 0; e < 7; e++) {
        cr_assert_eq(s->ledger[e], 9);
        cr_assert_eq(s->entry[e], e);
        cr_assert_eq(s->loc[e].log_id, id);
        cr_assert_eq(s->loc[e].offset, locs[e].offset);
        cr_assert_eq(s->loc[e].size, locs[e].size);
    }
    map_seen m = { 0 };
    cr_assert_eq(bk_entrylogs_ledger_map(el, id, collect_map, &m), MG_OK);
    cr_assert_eq(m.n, 1);
    cr_assert_eq(m.ledger[0], 9);
    cr_assert_eq(m.bytes[0], 7 * 1024 + (0 + 1 + 2 + 3 + 4 + 5 + 6));
    /* Reading the cut record, or one past the end, is corruption; the others still read. */
    uint8_t *dst = malloc(2048);
    bk_record rec;
    cr_assert_eq(bk_entrylogs_read_sync(el, locs[7], dst, 2048, &rec), MG_ECORRUPT);
    cr_assert_eq(bk_entrylogs_read_sync(el, locs[9], dst, 2048, &rec), MG_ECORRUPT);
    expect_record(el, locs[6], 9, 6, 1006);
    free(dst);
    bk_entrylogs_close(el);
    free(s);
}

Test(entrylog, scan_stops_at_corrupt_record)
{
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    bk_location locs[8];
    for (int e = 0; e < 8; e++)
        locs[e] = append(el, 4, e, 3000);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    flip_byte(id, locs[5].offset + 24 + 1500);

    scan_seen *s = calloc(1, sizeof(*s));
    cr_assert_eq(bk_entrylogs_scan(el, id, collect_scan, s), MG_OK);
    cr_assert_eq(s->n, 5);
    uint8_t *dst = malloc(4096);
    bk_record rec;
    cr_assert_eq(bk_entrylogs_read_sync(el, locs[5], dst, 4096, &rec), MG_ECORRUPT);
    expect_record(el, locs[6], 4, 6, 3000);
    free(dst);
    free(s);
    bk_entrylogs_close(el);
}

Test(entrylog, read_errors)
{
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    bk_location a = append(el, 1, 0, 100);
    bk_location b = append(el, 1, 1, 200);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    uint8_t dst[1024];
    bk_record rec;
    uint64_t end = bk_entrylogs_log_size(el, id);
    cr_assert_eq(end, 4096 + 124 + 224);

    bk_location past = { id, (uint32_t)end, 124 };
    cr_assert_eq(bk_entrylogs_read_sync(el, past, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location far = { id, 1u << 30, 124 };
    cr_assert_eq(bk_entrylogs_read_sync(el, far, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location over_end = { id, b.offset, b.size + 1 };
    cr_assert_eq(bk_entrylogs_read_sync(el, over_end, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location wrong_size = { id, a.offset, a.size + 10 };
    cr_assert_eq(bk_entrylogs_read_sync(el, wrong_size, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location in_header = { id, 0, 124 };
    cr_assert_eq(bk_entrylogs_read_sync(el, in_header, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location tiny = { id, a.offset, 23 };
    cr_assert_eq(bk_entrylogs_read_sync(el, tiny, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location mid = { id, a.offset + 4, 124 };
    cr_assert_eq(bk_entrylogs_read_sync(el, mid, dst, sizeof(dst), &rec), MG_ECORRUPT);
    bk_location unknown = { id + 5, a.offset, a.size };
    cr_assert_eq(bk_entrylogs_read_sync(el, unknown, dst, sizeof(dst), &rec), MG_ENOTFOUND);
    cr_assert_eq(bk_entrylogs_read_sync(el, b, dst, b.size - 1, &rec), MG_ELIMIT);
    cr_assert_eq(bk_entrylogs_log_size(el, id + 5), 0);
    expect_record(el, a, 1, 0, 100);
    expect_record(el, b, 1, 1, 200);
    bk_entrylogs_close(el);
}

Test(entrylog, read_past_end_of_a_shrunken_file)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    bk_location first = append(el, 1, 0, 100000);
    bk_location last = append(el, 1, 1, 100000);
    bk_location next = append(el, 1, 2, 100000); /* rolls over */
    cr_assert_eq(next.log_id, first.log_id + 1);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    /* The file loses its tail behind the logs' back: the location lies past the file end. */
    char p[512];
    log_path(first.log_id, p, sizeof(p));
    cr_assert_eq(truncate(p, (off_t)last.offset + 10), 0);
    uint8_t *dst = malloc(last.size);
    bk_record rec;
    cr_assert_eq(bk_entrylogs_read_sync(el, last, dst, last.size, &rec), MG_ECORRUPT);
    expect_record(el, first, 1, 0, 100000);
    free(dst);
    bk_entrylogs_close(el);
}

/* ---- readers on other threads while the writer appends and rolls over ---- */

enum { CONC_RECORDS = 3000, CONC_READERS = 3, CONC_LOGS_MAX = 256 };

typedef struct conc {
    bk_entrylogs *el;
    bk_location locs[CONC_RECORDS];
    atomic_uint published; /* locs[0, published) are synced */
    atomic_bool stop;
    atomic_uint reads;
    atomic_uint failures;
    atomic_int direct_fds[CONC_LOGS_MAX]; /* first descriptor seen per log id, -1 none */
} conc;

static size_t conc_len(unsigned i)
{
    return (size_t)(i * 2654435761u % 9000u);
}

static bool conc_check(conc *c, unsigned i, uint8_t *dst, size_t cap)
{
    bk_location loc = c->locs[i];
    bk_record rec;
    if (bk_entrylogs_read_sync(c->el, loc, dst, cap, &rec) != MG_OK)
        return false;
    size_t len = conc_len(i);
    if (rec.ledger_id != (int64_t)(i / 100) || rec.entry_id != (int64_t)(i % 100) ||
        rec.payload_len != len)
        return false;
    uint8_t *want = malloc(len ? len : 1);
    fill(want, len, rec.ledger_id, rec.entry_id);
    bool same = memcmp(want, rec.payload, len) == 0;
    free(want);
    if (!same)
        return false;
    int fd = -1;
    if (loc.log_id >= CONC_LOGS_MAX || bk_entrylogs_direct_fd(c->el, loc.log_id, &fd) != MG_OK)
        return false;
    int expected = -1;
    if (!atomic_compare_exchange_strong(&c->direct_fds[loc.log_id], &expected, fd))
        return expected == fd; /* every caller gets the one cached descriptor */
    return true;
}

static void *conc_reader(void *arg)
{
    conc *c = arg;
    uint8_t *dst = malloc(9000 + 24);
    uint64_t x = (uint64_t)(uintptr_t)&dst | 1;
    while (!atomic_load(&c->stop)) {
        unsigned n = atomic_load(&c->published);
        if (n == 0) {
            sched_yield();
            continue;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (!conc_check(c, (unsigned)(x % n), dst, 9000 + 24))
            atomic_fetch_add(&c->failures, 1);
        atomic_fetch_add(&c->reads, 1);
        uint32_t ids[8];
        (void)bk_entrylogs_list(c->el, ids, 8);
    }
    free(dst);
    return NULL;
}

Test(entrylog, readers_on_other_threads_during_roll_over)
{
    conc *c = calloc(1, sizeof(*c));
    for (int i = 0; i < CONC_LOGS_MAX; i++)
        atomic_init(&c->direct_fds[i], -1);
    c->el = open_logs(BK_ENTRYLOG_BYTES_MIN);
    pthread_t t[CONC_READERS];
    for (int i = 0; i < CONC_READERS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, conc_reader, c), 0);
    for (unsigned i = 0; i < CONC_RECORDS; i++) {
        size_t len = conc_len(i);
        uint8_t *p = payload_for(len, i / 100, i % 100);
        cr_assert_eq(bk_entrylogs_append(c->el, i / 100, i % 100, p, len, &c->locs[i]), MG_OK);
        free(p);
        if (i % 16 == 15 || i == CONC_RECORDS - 1) {
            cr_assert_eq(bk_entrylogs_sync(c->el), MG_OK);
            atomic_store(&c->published, i + 1);
        }
    }
    /* Let the readers see the last logs too, then stop them. */
    unsigned target = atomic_load(&c->reads) + 2000;
    for (unsigned spins = 0; atomic_load(&c->reads) < target && spins < 100000000u; spins++)
        sched_yield();
    atomic_store(&c->stop, true);
    for (int i = 0; i < CONC_READERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&c->failures), 0);
    cr_assert_geq(atomic_load(&c->reads), 2000);
    cr_assert_gt(bk_entrylogs_current_id(c->el), 100, "~13 MiB in 64 KiB logs");
    for (unsigned i = 0; i < CONC_RECORDS; i++) {
        uint8_t dst[9000 + 24];
        cr_assert(conc_check(c, i, dst, sizeof(dst)), "record %u", i);
    }
    bk_entrylogs_close(c->el);
    free(c);
}

/* ---- remove, direct descriptors ---- */

Test(entrylog, remove_deletes_the_file)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    ro_state *st = calloc(1, sizeof(*st));
    ro_write(el, st);
    uint32_t ids[RO_LOGS_MAX];
    size_t n = bk_entrylogs_list(el, ids, RO_LOGS_MAX);
    cr_assert_geq(n, 2);
    int dfd = -1;
    cr_assert_eq(bk_entrylogs_direct_fd(el, 2, &dfd), MG_OK);

    char p[512];
    log_path(2, p, sizeof(p));
    cr_assert_eq(access(p, F_OK), 0);
    cr_assert_eq(bk_entrylogs_remove(el, 2), MG_OK);
    cr_assert_eq(access(p, F_OK), -1, "the file is gone");
    cr_assert_eq(bk_entrylogs_list(el, ids, RO_LOGS_MAX), n - 1);
    cr_assert_eq(ids[0], 1);
    cr_assert_eq(ids[1], 3);
    cr_assert_eq(bk_entrylogs_remove(el, 2), MG_ENOTFOUND);
    cr_assert_eq(bk_entrylogs_remove(el, bk_entrylogs_current_id(el)), MG_ESTATE);
    cr_assert_eq(bk_entrylogs_log_size(el, 2), 0);
    map_seen m = { 0 };
    cr_assert_eq(bk_entrylogs_ledger_map(el, 2, collect_map, &m), MG_ENOTFOUND);
    cr_assert_eq(bk_entrylogs_direct_fd(el, 2, &dfd), MG_ENOTFOUND);
    for (int l = 0; l < RO_LEDGERS; l++) {
        for (int e = 0; e < RO_ENTRIES; e++) {
            bk_location loc = st->locs[l][e];
            if (loc.log_id != 2) {
                expect_record(el, loc, 100 + l, e, ro_len(l, e));
                continue;
            }
            uint8_t dst[32];
            bk_record rec;
            cr_assert_eq(bk_entrylogs_read_sync(el, loc, dst, sizeof(dst), &rec), MG_ELIMIT);
            uint8_t *big = malloc(loc.size);
            cr_assert_eq(bk_entrylogs_read_sync(el, loc, big, loc.size, &rec), MG_ENOTFOUND);
            free(big);
        }
    }
    bk_entrylogs_close(el);
    /* Reopening does not bring it back. */
    el = open_logs(RO_LOG_BYTES);
    n = bk_entrylogs_list(el, ids, RO_LOGS_MAX);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq(ids[i], 2);
    bk_entrylogs_close(el);
    free(st);
}

Test(entrylog, direct_fd_is_cached_and_o_direct)
{
    bk_entrylogs *el = open_logs(0);
    uint32_t id = bk_entrylogs_current_id(el);
    append(el, 1, 0, 10);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    int fd1 = -1;
    int fd2 = -1;
    int rc = bk_entrylogs_direct_fd(el, id, &fd1);
    cr_assert_eq(rc, MG_OK, "O_DIRECT open under %s: %s (needs a file system with O_DIRECT)", g_dir,
                 mg_err_name(rc));
    cr_assert_eq(bk_entrylogs_direct_fd(el, id, &fd2), MG_OK);
    cr_assert_eq(fd1, fd2);
    int fl = fcntl(fd1, F_GETFL);
    cr_assert(fl & O_DIRECT);
    cr_assert_eq(fl & O_ACCMODE, O_RDONLY);
    cr_assert_eq(bk_entrylogs_direct_fd(el, id + 1, &fd2), MG_ENOTFOUND);
    bk_entrylogs_close(el);
    cr_assert_eq(fcntl(fd1, F_GETFL), -1, "closed with the logs");
}

/* ---- faults ---- */

Test(entrylog, pwrite_enospc_is_sticky)
{
    bk_entrylogs *el = open_logs(0);
    bk_location ok = append(el, 1, 0, 100);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);

    bk_io_fault_arm(g_io, BK_IO_PWRITE, "mg-elog", 0, -1, MG_ENOSPC, 0);
    uint8_t b[100];
    fill(b, sizeof(b), 1, 1);
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, 1, 1, b, sizeof(b), &loc), MG_OK, "only buffered");
    cr_assert_eq(bk_entrylogs_sync(el), MG_ENOSPC);
    cr_assert_eq(bk_io_fault_count(g_io, BK_IO_PWRITE), 1);
    bk_io_fault_clear(g_io, BK_IO_PWRITE);
    cr_assert_eq(bk_entrylogs_append(el, 1, 2, b, sizeof(b), &loc), MG_ENOSPC, "sticky");
    cr_assert_eq(bk_entrylogs_sync(el), MG_ENOSPC, "sticky");
    expect_record(el, ok, 1, 0, 100); /* reads go on */
    bk_entrylogs_close(el);

    el = open_logs(0); /* reopening clears it */
    expect_record(el, ok, 1, 0, 100);
    loc = append(el, 1, 3, 100);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    expect_record(el, loc, 1, 3, 100);
    bk_entrylogs_close(el);
}

Test(entrylog, pwrite_enospc_on_a_direct_write)
{
    bk_entrylogs *el = open_logs(0);
    size_t len = BK_ENTRYLOG_WRITE_BUFFER_BYTES + 1;
    uint8_t *p = payload_for(len, 2, 0);
    bk_io_fault_arm(g_io, BK_IO_PWRITE, NULL, 0, 1, MG_ENOSPC, 0);
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, 2, 0, p, len, &loc), MG_ENOSPC);
    cr_assert_eq(bk_entrylogs_sync(el), MG_ENOSPC);
    free(p);
    bk_entrylogs_close(el);
}

Test(entrylog, fdatasync_eio)
{
    bk_entrylogs *el = open_logs(0);
    append(el, 1, 0, 100);
    bk_io_fault_arm(g_io, BK_IO_SYNC, NULL, 0, 1, MG_EIO, 0);
    cr_assert_eq(bk_entrylogs_sync(el), MG_EIO);
    cr_assert_eq(bk_io_fault_count(g_io, BK_IO_SYNC), 1);
    cr_assert_eq(bk_entrylogs_sync(el), MG_EIO, "sticky: the page cache state is unknown");
    uint8_t b = 0;
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, 1, 1, &b, 1, &loc), MG_EIO);
    bk_entrylogs_close(el);
}

Test(entrylog, roll_over_write_failure)
{
    bk_entrylogs *el = open_logs(RO_LOG_BYTES);
    append(el, 1, 0, 200000);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    /* The roll-over writes the ledger map: make that write fail. */
    bk_io_fault_arm(g_io, BK_IO_PWRITE, NULL, 0, 1, MG_EIO, 0);
    uint8_t *p = payload_for(100000, 1, 1);
    bk_location loc;
    cr_assert_eq(bk_entrylogs_append(el, 1, 1, p, 100000, &loc), MG_EIO);
    cr_assert_eq(bk_entrylogs_append(el, 1, 2, p, 10, &loc), MG_EIO);
    free(p);
    bk_entrylogs_close(el);
}

Test(entrylog, pread_faults)
{
    bk_entrylogs *el = open_logs(0);
    bk_location loc = append(el, 3, 0, 5000);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    uint8_t *dst = malloc(loc.size);
    bk_record rec;

    bk_io_fault_arm(g_io, BK_IO_PREAD, NULL, 0, 1, MG_EIO, 0);
    cr_assert_eq(bk_entrylogs_read_sync(el, loc, dst, loc.size, &rec), MG_EIO);
    cr_assert_eq(bk_io_fault_count(g_io, BK_IO_PREAD), 1);
    expect_record(el, loc, 3, 0, 5000); /* fired once */

    /* A short read is continued, not mistaken for the end of the file. */
    bk_io_fault_arm(g_io, BK_IO_PREAD, NULL, 0, 1, 0, 1000);
    expect_record(el, loc, 3, 0, 5000);
    cr_assert_eq(bk_io_fault_count(g_io, BK_IO_PREAD), 1, "arming again restarts the count");

    /* A fault filtered on another path does not fire. */
    bk_io_fault_arm(g_io, BK_IO_PREAD, "journal", 0, -1, MG_EIO, 0);
    expect_record(el, loc, 3, 0, 5000);
    bk_io_fault_clear(g_io, BK_IO_PREAD);

    /* Scans and ledger maps report read errors. */
    bk_io_fault_arm(g_io, BK_IO_PREAD, NULL, 0, 1, MG_EIO, 0);
    scan_seen *s = calloc(1, sizeof(*s));
    cr_assert_eq(bk_entrylogs_scan(el, loc.log_id, collect_scan, s), MG_EIO);
    cr_assert_eq(s->n, 0);
    free(s);
    free(dst);
    bk_entrylogs_close(el);
}

Test(entrylog, open_fault)
{
    bk_io_fault_arm(g_io, BK_IO_OPEN, NULL, 0, 1, MG_EIO, 0);
    bk_entrylogs *el = NULL;
    cr_assert_eq(bk_entrylogs_open(g_dir, g_io, 0, &el), MG_EIO);
    cr_assert_null(el);
    el = open_logs(0);
    bk_entrylogs_close(el);
}

Test(entrylog, allocation_failures_leave_nothing)
{
    /* Existing logs to load, then every allocation of open failing in turn: an error, nothing
     * leaked (ASan), until enough allocations are allowed. */
    bk_entrylogs *el = open_logs(0);
    append(el, 1, 0, 10);
    cr_assert_eq(bk_entrylogs_sync(el), MG_OK);
    bk_entrylogs_close(el);
    bool opened = false;
    for (int64_t k = 0; k < 32 && !opened; k++) {
        mg_alloc_fail_after(k);
        el = NULL;
        int rc = bk_entrylogs_open(g_dir, g_io, 0, &el);
        mg_alloc_fail_reset();
        if (rc == MG_OK) {
            opened = true;
            cr_assert_geq(k, 5, "open allocates at least the logs, buffer, ids, table, log");
            bk_entrylogs_close(el);
            break;
        }
        cr_assert_eq(rc, MG_ENOMEM, "k=%lld: %s", (long long)k, mg_err_name(rc));
    }
    cr_assert(opened);
}
