/*
 * Tests for offload/offload.h: objects written to and read from a real directory (a mkdtemp
 * directory under /var/tmp, removed after each test) through the filesystem driver.
 *
 * 1. Round trips of entries of mixed sizes (empty, small, exactly a block, larger than a block),
 *    full scans, range reads across block boundaries, point reads (one block each), reads with a
 *    small budget (one block each), the footer and index checked byte by byte from the file.
 * 2. The asynchronous API on a real uv loop: add, finish, open, read, verify, delete.
 * 3. Crash safety: a child process that dies mid-object leaves only a temporary, which open does
 *    not see as an object and cleanup removes.
 * 4. Corruption: a flipped byte in a block, the index, the footer, and truncated objects give
 *    MG_ECORRUPT with a message naming the object and the part, and no data.
 * 5. No space: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails the object with
 *    MG_ENOSPC and leaves nothing; a read-only directory fails begin.
 * 6. Delete, list, unknown and invalid ids, and every limit; a footer whose fields do not add up
 *    under a valid checksum; allocation failures at every point of a write and a read give
 *    MG_ENOMEM and leave no temporary (the ASan build checks that nothing leaks).
 */
#include "offload/offload.h"

#include "common/alloc.h"
#include "common/crc32c.h"
#include "common/error.h"
#include "offload/limits.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

static char g_dir[64];
static struct of_driver *g_drv;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/var/tmp/mg_offload_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    struct of_err err;
    cr_assert_eq(of_fs_driver_create(g_dir, &g_drv, &err), MG_OK, "%s", err.msg);
}

static void teardown(void)
{
    of_driver_destroy(g_drv);
    g_drv = NULL;
    chmod(g_dir, 0755);
    nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(offload, .init = setup, .fini = teardown, .timeout = 60);

/* ---- entries: sizes and contents fixed by the entry id ---- */

#define BLOCK (1u * 1024 * 1024)

static size_t entry_size(int64_t id)
{
    switch (id % 23) {
    case 0:
        return 0;
    case 5:
        return 10 * 1024;
    case 11:
        return 100 * 1024;
    default:
        break;
    }
    if (id == 101)
        return BLOCK; /* exactly block_bytes of data: a block of its own, past the bound */
    if (id == 150)
        return BLOCK - 12; /* exactly a block with its header */
    if (id == 200)
        return BLOCK + BLOCK / 2; /* larger than a block */
    return (size_t)(id * 37 % 3000);
}

static void fill(int64_t id, uint8_t *p, size_t n)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 64 < 32) { /* half random, half text-like: compressible but not trivially */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[i] = (uint8_t)x;
        } else {
            p[i] = (uint8_t)('a' + (id + i) % 26);
        }
    }
}

static void check_entry(const struct of_entry *e)
{
    size_t n = entry_size(e->entry_id);
    cr_assert_eq(e->size, n, "entry %lld size %zu, expected %zu", (long long)e->entry_id, e->size,
                 n);
    uint8_t *want = malloc(n + 1);
    fill(e->entry_id, want, n);
    cr_assert(n == 0 || memcmp(e->data, want, n) == 0, "entry %lld differs",
              (long long)e->entry_id);
    free(want);
}

#define N_ENTRIES 260

static void write_object(int64_t ledger_id, int64_t n, char *id)
{
    struct of_writer_opts o = { .block_bytes = BLOCK,
                                .metadata = "tenant/ns/persistent/topic",
                                .metadata_bytes = 26 };
    struct of_writer *w;
    struct of_err err;
    cr_assert_eq(of_writer_begin(g_drv, ledger_id, &o, &w, &err), MG_OK, "%s", err.msg);
    uint8_t *buf = malloc(2 * BLOCK);
    for (int64_t e = 0; e < n; e++) {
        size_t sz = entry_size(e);
        fill(e, buf, sz);
        cr_assert_eq(of_writer_add(w, e, buf, sz, &err), MG_OK, "%s", err.msg);
    }
    free(buf);
    cr_assert_eq(of_writer_finish(w, id, &err), MG_OK, "%s", err.msg);
}

static size_t count_files(const char *prefix)
{
    DIR *d = opendir(g_dir);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (!prefix || strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void path_of(const char *id, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", g_dir, id);
}

/* ---- 1. round trips ---- */

Test(offload, round_trip_full_scan)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(42, N_ENTRIES, id);
    cr_assert_eq(strncmp(id, "ledger-42-", 10), 0, "%s", id);
    cr_assert_eq(count_files(NULL), 1);

    struct of_err err;
    struct of_info info;
    cr_assert_eq(of_verify(g_drv, id, &info, &err), MG_OK, "%s", err.msg);
    struct of_reader *r;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_OK, "%s", err.msg);
    const struct of_info *in = of_reader_info(r);
    cr_assert_eq(in->ledger_id, 42);
    cr_assert_eq(in->entry_count, N_ENTRIES);
    cr_assert_eq(in->first_entry_id, 0);
    cr_assert_eq(in->last_entry_id, N_ENTRIES - 1);
    cr_assert_eq(in->metadata_bytes, 26);
    cr_assert_eq(memcmp(in->metadata, "tenant/ns/persistent/topic", 26), 0);
    cr_assert_gt(in->block_count, 4);
    cr_assert_eq(info.block_count, in->block_count);
    uint64_t raw = 0;
    for (int64_t e = 0; e < N_ENTRIES; e++)
        raw += entry_size(e);
    cr_assert_eq(in->raw_bytes, raw);

    int64_t next = 0;
    while (next < N_ENTRIES) {
        struct of_entries out;
        cr_assert_eq(of_reader_read(r, next, N_ENTRIES - 1, SIZE_MAX, &out, &err), MG_OK, "%s",
                     err.msg);
        for (size_t i = 0; i < out.count; i++) {
            cr_assert_eq(out.entries[i].entry_id, next + (int64_t)i);
            check_entry(&out.entries[i]);
        }
        next += (int64_t)out.count;
        of_entries_free(&out);
    }
    of_reader_close(r);
}

Test(offload, range_point_and_budget_reads)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(7, N_ENTRIES, id);
    struct of_err err;
    struct of_reader *r;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_OK, "%s", err.msg);
    uint32_t blocks = of_reader_info(r)->block_count;

    /* Point reads: one entry, one block. */
    for (int64_t e = 0; e < N_ENTRIES; e += 13) {
        struct of_entries out;
        cr_assert_eq(of_reader_read(r, e, e, SIZE_MAX, &out, &err), MG_OK, "%s", err.msg);
        cr_assert_eq(out.count, 1);
        cr_assert_eq(out.block_count, 1);
        cr_assert_eq(out.entries[0].entry_id, e);
        check_entry(&out.entries[0]);
        of_entries_free(&out);
    }

    /* A range across block boundaries, with a budget for all of it. */
    struct of_entries out;
    cr_assert_eq(of_reader_read(r, 90, 210, SIZE_MAX, &out, &err), MG_OK, "%s", err.msg);
    cr_assert_eq(out.count, 121);
    cr_assert_gt(out.block_count, 2);
    for (size_t i = 0; i < out.count; i++) {
        cr_assert_eq(out.entries[i].entry_id, 90 + (int64_t)i);
        check_entry(&out.entries[i]);
    }
    of_entries_free(&out);

    /* A budget of one byte: one block per read, the scan continues where each stops. */
    int64_t next = 0;
    uint32_t reads = 0;
    while (next < N_ENTRIES) {
        cr_assert_eq(of_reader_read(r, next, N_ENTRIES - 1, 1, &out, &err), MG_OK, "%s", err.msg);
        cr_assert_eq(out.block_count, 1);
        cr_assert_gt(out.count, 0);
        for (size_t i = 0; i < out.count; i++)
            check_entry(&out.entries[i]);
        next += (int64_t)out.count;
        reads++;
        of_entries_free(&out);
    }
    cr_assert_eq(reads, blocks);

    /* A budget of two full blocks: more than one block, their raw bytes within it. */
    cr_assert_eq(of_reader_read(r, 0, N_ENTRIES - 1, 2 * BLOCK, &out, &err), MG_OK);
    cr_assert_gt(out.block_count, 1);
    size_t raw = 0;
    for (size_t i = 0; i < out.count; i++)
        raw += 12 + out.entries[i].size;
    cr_assert_leq(raw, 2 * BLOCK);
    of_entries_free(&out);

    /* Outside the object. */
    cr_assert_eq(of_reader_read(r, 0, N_ENTRIES, SIZE_MAX, &out, &err), MG_EINVAL);
    cr_assert_eq(out.count, 0);
    cr_assert_eq(of_reader_read(r, 5, 4, SIZE_MAX, &out, &err), MG_EINVAL);
    of_reader_close(r);
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

Test(offload, footer_and_index_on_disk)
{
    char id[OF_NAME_BYTES_MAX + 1], path[256];
    write_object(9, 40, id);
    path_of(id, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    uint8_t ft[80];
    fseek(f, size - 80, SEEK_SET);
    cr_assert_eq(fread(ft, 1, 80, f), 80);
    cr_assert_eq(memcmp(ft, "MGOFFLD\0", 8), 0);
    cr_assert_eq(le(ft + 8, 4), 1);
    cr_assert_eq(le(ft + 16, 8), 9);
    cr_assert_eq(le(ft + 24, 8), 40);
    cr_assert_eq(le(ft + 32, 8), 0);
    cr_assert_eq(le(ft + 40, 8), 39);
    uint64_t index_offset = le(ft + 56, 8), index_bytes = le(ft + 64, 4);
    cr_assert_eq(index_offset + index_bytes + 80, (uint64_t)size);
    uint8_t ix[4096];
    cr_assert_leq(index_bytes, sizeof(ix));
    fseek(f, (long)index_offset, SEEK_SET);
    cr_assert_eq(fread(ix, 1, index_bytes, f), index_bytes);
    fclose(f);
    uint32_t blocks = (uint32_t)le(ix, 4);
    cr_assert_eq(blocks, le(ft + 72, 4));
    cr_assert_eq(le(ix + 4, 2), 26);
    cr_assert_eq(index_bytes, 6 + 26 + 40 * blocks);
    /* The first block starts at 0 with entry 0; blocks follow each other up to the index. */
    const uint8_t *rec = ix + 6 + 26;
    uint64_t off = 0, entries = 0;
    for (uint32_t i = 0; i < blocks; i++, rec += 40) {
        cr_assert_eq(le(rec, 8), entries);
        cr_assert_eq(le(rec + 16, 8), off);
        entries += le(rec + 8, 4);
        off += le(rec + 24, 4);
    }
    cr_assert_eq(entries, 40);
    cr_assert_eq(off, index_offset);
}

/* ---- 2. asynchronous API ---- */

struct async_state {
    uv_loop_t loop;
    struct of_req req;
    struct of_writer *w;
    int64_t next;
    uint8_t buf[4096];
    int step;
    char id[OF_NAME_BYTES_MAX + 1];
    struct of_reader *r;
    int done;
    uv_thread_t loop_thread;
};

static void async_step(struct of_req *req, int status);

static void async_add_next(struct async_state *s)
{
    size_t sz = (size_t)(s->next * 53 % 4096);
    fill(s->next, s->buf, sz);
    cr_assert_eq(of_writer_add_async(&s->loop, &s->req, s->w, s->next, s->buf, sz, async_step),
                 MG_OK);
}

static void async_step(struct of_req *req, int status)
{
    struct async_state *s = req->data;
    cr_assert_eq(status, MG_OK, "step %d: %s", s->step, req->err.msg);
    uv_thread_t self = uv_thread_self();
    cr_assert(uv_thread_equal(&self, &s->loop_thread), "callback off the loop's thread");
    switch (s->step) {
    case 0: /* adds */
        if (++s->next < 2000) {
            async_add_next(s);
            return;
        }
        s->step = 1;
        cr_assert_eq(of_writer_finish_async(&s->loop, &s->req, s->w, async_step), MG_OK);
        return;
    case 1:
        snprintf(s->id, sizeof(s->id), "%s", req->object_id);
        s->step = 2;
        cr_assert_eq(of_reader_open_async(&s->loop, &s->req, g_drv, s->id, async_step), MG_OK);
        return;
    case 2:
        s->r = req->reader;
        cr_assert_eq(of_reader_info(s->r)->entry_count, 2000);
        s->step = 3;
        cr_assert_eq(
            of_reader_read_async(&s->loop, &s->req, s->r, 1234, 1234, SIZE_MAX, async_step), MG_OK);
        return;
    case 3: {
        cr_assert_eq(req->entries.count, 1);
        const struct of_entry *e = &req->entries.entries[0];
        cr_assert_eq(e->entry_id, 1234);
        uint8_t want[4096];
        fill(1234, want, 1234 * 53 % 4096);
        cr_assert_eq(e->size, 1234 * 53 % 4096);
        cr_assert_eq(memcmp(e->data, want, e->size), 0);
        of_entries_free(&req->entries);
        of_reader_close(s->r);
        s->step = 4;
        cr_assert_eq(of_verify_async(&s->loop, &s->req, g_drv, s->id, async_step), MG_OK);
        return;
    }
    case 4:
        cr_assert_eq(req->info.entry_count, 2000);
        s->step = 5;
        cr_assert_eq(of_delete_async(&s->loop, &s->req, g_drv, s->id, async_step), MG_OK);
        return;
    case 5:
        s->done = 1;
        return;
    }
}

Test(offload, async_on_a_loop)
{
    struct async_state *s = calloc(1, sizeof(*s));
    cr_assert_eq(uv_loop_init(&s->loop), 0);
    s->req.data = s;
    s->loop_thread = uv_thread_self();
    struct of_err err;
    cr_assert_eq(of_writer_begin(g_drv, 3, NULL, &s->w, &err), MG_OK, "%s", err.msg);
    async_add_next(s);
    cr_assert_eq(uv_run(&s->loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(s->done, 1);
    cr_assert_eq(count_files(NULL), 0);
    /* An error found before queueing is returned and the callback never runs. */
    cr_assert_eq(of_verify_async(&s->loop, &s->req, g_drv, "../x", async_step), MG_EINVAL);
    cr_assert_eq(uv_loop_close(&s->loop), 0);
    free(s);
}

/* ---- 3. crash safety ---- */

Test(offload, abandoned_writer_leaves_only_a_temporary)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        struct of_writer *w;
        if (of_writer_begin(g_drv, 5, NULL, &w, NULL) != MG_OK)
            _exit(1);
        uint8_t *buf = malloc(BLOCK);
        for (int64_t e = 0; e < 100; e++) {
            fill(e, buf, 30000);
            if (of_writer_add(w, e, buf, 30000, NULL) != MG_OK)
                _exit(1);
        }
        _exit(0); /* dies mid-object: no finish, no abort */
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert_eq(count_files(NULL), 1);
    cr_assert_eq(count_files(".tmp-ledger-5-"), 1);

    /* The temporary is not an object: not listed, not openable by its would-be id. */
    DIR *d = opendir(g_dir);
    struct dirent *de;
    char id[OF_NAME_BYTES_MAX + 1] = "";
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".tmp-", 5) == 0)
            snprintf(id, sizeof(id), "%s", de->d_name + 5);
    closedir(d);
    struct of_err err;
    struct of_reader *r;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_ENOTFOUND);
    cr_assert_eq(of_reader_open(g_drv, ".tmp-x", &r, &err), MG_EINVAL);

    size_t removed = 0;
    cr_assert_eq(of_driver_cleanup(g_drv, &removed, &err), MG_OK, "%s", err.msg);
    cr_assert_eq(removed, 1);
    cr_assert_eq(count_files(NULL), 0);
}

/* ---- 4. corruption ---- */

static void flip(const char *id, long where_from_end_or_start, int from_end)
{
    char path[256];
    path_of(id, path, sizeof(path));
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    struct stat st;
    fstat(fd, &st);
    off_t at = from_end ? st.st_size - where_from_end_or_start : where_from_end_or_start;
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void expect_open_corrupt(const char *id, const char *what)
{
    struct of_err err;
    struct of_reader *r = NULL;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_ECORRUPT);
    cr_assert_null(r);
    cr_assert_not_null(strstr(err.msg, id), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, what), "%s", err.msg);
    cr_assert_eq(of_verify(g_drv, id, NULL, &err), MG_ECORRUPT);
}

Test(offload, flipped_byte_in_a_block)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(11, N_ENTRIES, id);
    flip(id, 100, 0); /* inside block 0 */
    struct of_err err;
    struct of_reader *r;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_OK, "%s", err.msg);
    struct of_entries out;
    cr_assert_eq(of_reader_read(r, 0, 0, SIZE_MAX, &out, &err), MG_ECORRUPT);
    cr_assert_eq(out.count, 0);
    cr_assert_null(out.entries);
    cr_assert_not_null(strstr(err.msg, id), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "corrupt block 0"), "%s", err.msg);
    /* Other blocks still read. */
    cr_assert_eq(of_reader_read(r, N_ENTRIES - 1, N_ENTRIES - 1, SIZE_MAX, &out, &err), MG_OK);
    check_entry(&out.entries[0]);
    of_entries_free(&out);
    of_reader_close(r);
    cr_assert_eq(of_verify(g_drv, id, NULL, &err), MG_ECORRUPT);
    cr_assert_not_null(strstr(err.msg, "corrupt block 0"), "%s", err.msg);
}

Test(offload, flipped_byte_in_the_index)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(12, N_ENTRIES, id);
    flip(id, 80 + 20, 1);
    expect_open_corrupt(id, "corrupt index");
}

Test(offload, flipped_byte_in_the_footer)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(13, N_ENTRIES, id);
    flip(id, 80 - 20, 1);
    expect_open_corrupt(id, "corrupt footer");
}

Test(offload, truncated_objects)
{
    char id[OF_NAME_BYTES_MAX + 1], path[256];
    write_object(14, N_ENTRIES, id);
    path_of(id, path, sizeof(path));
    struct stat st;
    stat(path, &st);
    cr_assert_eq(truncate(path, st.st_size - 1), 0);
    expect_open_corrupt(id, "no footer magic");
    cr_assert_eq(truncate(path, 40), 0);
    expect_open_corrupt(id, "truncated");
    cr_assert_eq(truncate(path, 0), 0);
    expect_open_corrupt(id, "truncated");
}

/* ---- 5. no space ---- */

Test(offload, file_size_limit_fails_the_object_cleanly)
{
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 3 * BLOCK;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

    struct of_writer *w;
    struct of_err err;
    cr_assert_eq(of_writer_begin(g_drv, 20, NULL, &w, &err), MG_OK, "%s", err.msg);
    uint8_t *buf = malloc(65536);
    int rc = MG_OK;
    int64_t e;
    for (e = 0; e < 200 && rc == MG_OK; e++) {
        for (size_t i = 0; i < 65536; i++)
            buf[i] = (uint8_t)rand(); /* incompressible */
        rc = of_writer_add(w, e, buf, 65536, &err);
    }
    cr_assert_eq(rc, MG_ENOSPC, "%s", mg_err_name(rc));
    cr_assert_not_null(strstr(err.msg, of_writer_object_id(w)), "%s", err.msg);
    cr_assert_not_null(strstr(err.msg, "write"), "%s", err.msg);
    cr_assert_eq(count_files(NULL), 0); /* the temporary went at once */
    cr_assert_eq(of_writer_add(w, e, buf, 10, &err), MG_ESTATE);
    char id[OF_NAME_BYTES_MAX + 1];
    cr_assert_eq(of_writer_finish(w, id, &err), MG_ESTATE);
    free(buf);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_assert_eq(count_files(NULL), 0);
}

Test(offload, read_only_directory)
{
    if (geteuid() == 0) {
        teardown(); /* a skipped test's fini does not run */
        cr_skip_test("root writes to read-only directories");
    }
    cr_assert_eq(chmod(g_dir, 0555), 0);
    struct of_writer *w;
    struct of_err err;
    int rc = of_writer_begin(g_drv, 21, NULL, &w, &err);
    cr_assert_eq(rc, MG_EPERM, "%s: %s", mg_err_name(rc), err.msg);
    cr_assert_not_null(strstr(err.msg, "ledger-21-"), "%s", err.msg);
    chmod(g_dir, 0755);
    cr_assert_eq(count_files(NULL), 0);
}

/* ---- 6. delete, unknown ids, limits ---- */

Test(offload, delete_and_unknown_ids)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(30, 10, id);
    struct of_err err;
    cr_assert_eq(of_delete(g_drv, id, &err), MG_OK, "%s", err.msg);
    cr_assert_eq(count_files(NULL), 0);
    struct of_reader *r;
    cr_assert_eq(of_reader_open(g_drv, id, &r, &err), MG_ENOTFOUND);
    cr_assert_not_null(strstr(err.msg, id), "%s", err.msg);
    cr_assert_eq(of_delete(g_drv, id, &err), MG_ENOTFOUND);
    cr_assert_eq(of_verify(g_drv, "ledger-1-0000000000000000", NULL, &err), MG_ENOTFOUND);
    cr_assert_eq(of_reader_open(g_drv, "../etc/passwd", &r, &err), MG_EINVAL);
    cr_assert_eq(of_delete(g_drv, "", &err), MG_EINVAL);
}

Test(offload, limits_are_checked)
{
    struct of_writer *w;
    struct of_err err;
    struct of_writer_opts o = { .block_bytes = OF_BLOCK_BYTES_MIN - 1 };
    cr_assert_eq(of_writer_begin(g_drv, 1, &o, &w, &err), MG_EINVAL);
    o.block_bytes = OF_BLOCK_BYTES_MAX + 1;
    cr_assert_eq(of_writer_begin(g_drv, 1, &o, &w, &err), MG_EINVAL);
    o.block_bytes = 0;
    o.zstd_level = OF_ZSTD_LEVEL_MAX + 1;
    cr_assert_eq(of_writer_begin(g_drv, 1, &o, &w, &err), MG_EINVAL);
    o.zstd_level = 0;
    o.metadata_bytes = OF_METADATA_BYTES_MAX + 1;
    o.metadata = calloc(1, o.metadata_bytes);
    cr_assert_eq(of_writer_begin(g_drv, 1, &o, &w, &err), MG_ELIMIT);
    free((void *)o.metadata);
    cr_assert_eq(of_writer_begin(g_drv, -1, NULL, &w, &err), MG_EINVAL);
    cr_assert_eq(count_files(NULL), 0);

    cr_assert_eq(of_writer_begin(g_drv, 1, NULL, &w, &err), MG_OK, "%s", err.msg);
    uint8_t *big = calloc(1, OF_ENTRY_BYTES_MAX + 1);
    cr_assert_eq(of_writer_add(w, 0, big, OF_ENTRY_BYTES_MAX + 1, &err), MG_ELIMIT);
    cr_assert_eq(of_writer_add(w, 0, big, OF_ENTRY_BYTES_MAX, &err), MG_OK, "%s", err.msg);
    cr_assert_eq(of_writer_add(w, 2, big, 1, &err), MG_EINVAL);
    cr_assert_not_null(strstr(err.msg, "out of order"), "%s", err.msg);
    char id[OF_NAME_BYTES_MAX + 1];
    cr_assert_eq(of_writer_finish(w, id, &err), MG_OK, "%s", err.msg);
    free(big);
    cr_assert_eq(of_verify(g_drv, id, NULL, &err), MG_OK, "%s", err.msg);

    /* No entries: refused, nothing left. */
    cr_assert_eq(of_writer_begin(g_drv, 2, NULL, &w, &err), MG_OK);
    cr_assert_eq(of_writer_finish(w, id, &err), MG_EINVAL);
    cr_assert_eq(count_files(NULL), 1);
    /* Abort leaves nothing. */
    cr_assert_eq(of_writer_begin(g_drv, 3, NULL, &w, &err), MG_OK);
    cr_assert_eq(of_writer_add(w, 0, "x", 1, &err), MG_OK);
    of_writer_abort(w);
    cr_assert_eq(count_files(NULL), 1);
}

static int list_count(void *arg, const char *name)
{
    (void)name;
    (*(int *)arg)++;
    return 0;
}

Test(offload, list_sees_only_whole_objects)
{
    char id[OF_NAME_BYTES_MAX + 1];
    write_object(31, 5, id);
    write_object(32, 5, id);
    struct of_writer *w;
    struct of_err err;
    cr_assert_eq(of_writer_begin(g_drv, 33, NULL, &w, &err), MG_OK);
    int n = 0;
    cr_assert_eq(g_drv->ops->list(g_drv->ctx, list_count, &n, &err), MG_OK, "%s", err.msg);
    cr_assert_eq(n, 2);
    of_writer_abort(w);
}

Test(offload, footer_fields_that_do_not_add_up)
{
    char id[OF_NAME_BYTES_MAX + 1], path[256];
    write_object(15, 20, id);
    path_of(id, path, sizeof(path));
    int fd = open(path, O_RDWR);
    struct stat st;
    fstat(fd, &st);
    uint8_t f[80];
    cr_assert_eq(pread(fd, f, 80, st.st_size - 80), 80);
    for (int i = 0; i < 8; i++) /* index offset far past the end, checksum made right */
        f[56 + i] = 0xF0;
    uint32_t crc = mg_crc32c(0, f, 76);
    for (int i = 0; i < 4; i++)
        f[76 + i] = (uint8_t)(crc >> (8 * i));
    cr_assert_eq(pwrite(fd, f, 80, st.st_size - 80), 80);
    close(fd);
    expect_open_corrupt(id, "corrupt footer: fields do not add up");
}

Test(offload, allocation_failures)
{
    uint8_t buf[5000];
    for (int64_t n = 0;; n++) {
        struct of_err err;
        struct of_writer *w = NULL;
        char id[OF_NAME_BYTES_MAX + 1];
        mg_alloc_fail_after(n);
        int rc = of_writer_begin(g_drv, 40, NULL, &w, &err);
        for (int64_t e = 0; rc == MG_OK && e < 600; e++) {
            fill(e, buf, sizeof(buf));
            rc = of_writer_add(w, e, buf, sizeof(buf), &err);
        }
        if (rc == MG_OK)
            rc = of_writer_finish(w, id, &err);
        else if (w)
            of_writer_abort(w);
        struct of_reader *r = NULL;
        if (rc == MG_OK)
            rc = of_reader_open(g_drv, id, &r, &err);
        struct of_entries out = { 0 };
        if (rc == MG_OK)
            rc = of_reader_read(r, 0, 599, SIZE_MAX, &out, &err);
        mg_alloc_fail_reset();
        of_entries_free(&out);
        of_reader_close(r);
        cr_assert_eq(count_files(".tmp-"), 0);
        if (rc == MG_OK) {
            cr_assert_gt(n, 3);
            break;
        }
        cr_assert_eq(rc, MG_ENOMEM, "after %lld: %s %s", (long long)n, mg_err_name(rc), err.msg);
        cr_assert_not_null(strstr(err.msg, "out of memory"), "%s", err.msg);
        size_t removed;
        cr_assert_eq(of_driver_cleanup(g_drv, &removed, &err), MG_OK);
        DIR *d = opendir(g_dir);
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.')
                of_delete(g_drv, de->d_name, &err);
        closedir(d);
    }
}
