/* The bookie RPC end to end: bk_client against bk_server over loopback TCP, backed by the real
 * storage engine in a temporary directory. Adds and reads (single and ranged, with an exact byte
 * cap), range reads from disk across several O_DIRECT chunks with every byte checked and a
 * corrupt record on disk never served, LAC, fencing, deletion, health, backpressure;
 * raw-socket fault injection (truncated
 * frame, huge length, garbage header, unknown op, missing or negative fields) while a
 * well-behaved connection keeps working; client timeouts against a socket that never answers;
 * connection loss failing every pending request and a later request reconnecting.
 *
 * Everything runs on one loop in the test thread. A repeating guard timer makes every
 * uv_run(UV_RUN_ONCE) return within a few milliseconds, and every wait is bounded (5 s).
 * Raw sockets are plain non-blocking POSIX sockets polled between loop turns. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bookie/client.h"
#include "bookie/entrylog.h"
#include "bookie/limits.h"
#include "bookie/protocol.h"
#include "bookie/bookie.h"
#include "common/error.h"
#include "common/metrics.h"
#include "support/cr_util.h"
#include "support/loop_wait.h"

TestSuite(bookie_rpc, .timeout = 10);

#define WAIT_NS_MAX (5ull * 1000 * 1000 * 1000)

/* Runs the loop until cond holds; fails the test after WAIT_NS_MAX. */
#define RUN_UNTIL(loopp, cond) MGT_RUN_UNTIL(loopp, cond, WAIT_NS_MAX)

/* ---- environment ------------------------------------------------------------------------- */

typedef struct env {
    uv_loop_t loop;
    uv_timer_t guard;
    char dir[64];
    bk_storage *storage;
    bk_server *server;
    bk_client *client;
    mg_metrics *metrics;
    uint16_t port;
    char addr[64];
    bool storage_closed;
    bool server_closed;
    bool client_closed;
} env;

static void storage_closed(int status, void *arg)
{
    (void)status;
    *(bool *)arg = true;
}

static void loop_start(env *e)
{
    memset(e, 0, sizeof(*e));
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    mgt_guard_start(&e->loop, &e->guard);
}

static void loop_finish(env *e)
{
    uv_close((uv_handle_t *)&e->guard, NULL);
    /* Bounded: nothing else is left on the loop; a few turns close the handles. */
    for (int i = 0; i < 100 && uv_loop_alive(&e->loop); i++)
        uv_run(&e->loop, UV_RUN_NOWAIT);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "handles left open on the loop");
}

static void server_start(env *e, uint16_t port, uint32_t inflight_max)
{
    bk_server_opts so = { .host = "127.0.0.1",
                          .port = port,
                          .inflight_max_per_conn = inflight_max,
                          .metrics = e->metrics };
    cr_assert_eq(bk_server_start(&e->loop, e->storage, &so, &e->server), MG_OK);
    e->port = bk_server_port(e->server);
    cr_assert_neq(e->port, 0);
    if (port != 0)
        cr_assert_eq(e->port, port);
    snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%u", (unsigned)e->port);
}

static void server_stop(env *e)
{
    e->server_closed = false;
    bk_server_close(e->server, mgt_set_flag, &e->server_closed);
    RUN_UNTIL(&e->loop, e->server_closed);
    e->server = NULL;
}

/* Opens the storage on <dir>/journal and <dir>/ledgers with so's other options. */
static void storage_open(env *e, bk_storage_opts so)
{
    char journal[128], ledgers[128];
    snprintf(journal, sizeof(journal), "%s/journal", e->dir);
    snprintf(ledgers, sizeof(ledgers), "%s/ledgers", e->dir);
    so.journal_dir = journal;
    so.ledger_dir = ledgers;
    cr_assert_eq(bk_storage_open(&e->loop, &so, &e->storage), MG_OK);
}

static void storage_close(env *e)
{
    e->storage_closed = false;
    bk_storage_close(e->storage, storage_closed, &e->storage_closed);
    RUN_UNTIL(&e->loop, e->storage_closed);
}

/* Storage in a fresh directory under /var/tmp (O_DIRECT needs a real file system), a server on
 * an ephemeral port, a client. */
static void env_open(env *e, uint32_t inflight_max)
{
    loop_start(e);
    snprintf(e->dir, sizeof(e->dir), "/var/tmp/mg-rpc-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir));
    cr_assert_eq(mg_metrics_create(&e->metrics), MG_OK);
    storage_open(e, (bk_storage_opts){ .write_cache_bytes = 8u * 1024 * 1024,
                                       .read_cache_bytes = 8u * 1024 * 1024,
                                       .journal_group_wait_us = 200 });
    server_start(e, 0, inflight_max);
    cr_assert_eq(bk_client_create(&e->loop, NULL, &e->client), MG_OK);
}

static void env_close(env *e)
{
    if (e->client != NULL) {
        bk_client_close(e->client, mgt_set_flag, &e->client_closed);
        RUN_UNTIL(&e->loop, e->client_closed);
    }
    if (e->server != NULL)
        server_stop(e);
    storage_close(e);
    loop_finish(e);
    mg_metrics_destroy(e->metrics);
    mgt_rm_tree(e->dir);
}

/* ---- results ----------------------------------------------------------------------------- */

#define RES_ENTRIES_MAX 256

typedef struct res {
    int calls;
    int status;
    int64_t ledger_id;
    int64_t entry_id;
    int64_t lac;
    size_t count;
    int64_t ids[RES_ENTRIES_MAX];
    size_t lens[RES_ENTRIES_MAX];
    char first[256]; /* the first entry's bytes, NUL-terminated */
    bool one_buffer; /* every entry a view of the same buffer */
} res;

static void add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->ledger_id = ledger_id;
    r->entry_id = entry_id;
}

static void read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    r->one_buffer = true;
    for (size_t i = 0; i < count && i < RES_ENTRIES_MAX; i++) {
        r->ids[i] = entries[i].entry_id;
        r->lens[i] = entries[i].len;
        if (entries[i].buf != entries[0].buf)
            r->one_buffer = false;
    }
    if (count > 0) {
        size_t n = entries[0].len < sizeof(r->first) - 1 ? entries[0].len : sizeof(r->first) - 1;
        memcpy(r->first, mg_buf_data(entries[0].buf) + entries[0].off, n);
        r->first[n] = '\0';
    }
}

static void lac_done(int status, int64_t last_entry_id, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
    r->lac = last_entry_id;
}

static void done(int status, void *arg)
{
    res *r = arg;
    r->calls++;
    r->status = status;
}

/* Counts many adds into the mgt_tally arg points to. */
static void tally_add(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    (void)ledger_id;
    (void)entry_id;
    mgt_tally_done(status, arg);
}

static int add_sync(env *e, int64_t ledger_id, int64_t entry_id, const char *text)
{
    mg_buf *b = mg_buf_new_copy(text, strlen(text));
    cr_assert_not_null(b);
    res r = { 0 };
    cr_assert_eq(
        bk_client_add(e->client, e->addr, ledger_id, entry_id, b, 0, strlen(text), add_done, &r),
        MG_OK);
    mg_buf_unref(b); /* the client holds its own reference until written */
    RUN_UNTIL(&e->loop, r.calls == 1);
    if (r.status == MG_OK) {
        cr_assert_eq(r.ledger_id, ledger_id);
        cr_assert_eq(r.entry_id, entry_id);
    }
    return r.status;
}

/* Adds entries 0..n-1 holding text to the ledger. */
static void add_n_sync(env *e, int64_t ledger_id, int n, const char *text)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(add_sync(e, ledger_id, i, text), MG_OK);
}

static int health_sync(env *e)
{
    res r = { 0 };
    cr_assert_eq(bk_client_health(e->client, e->addr, done, &r), MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r.status;
}

static res read_sync(env *e, int64_t ledger_id, int64_t entry_id)
{
    res r = { 0 };
    cr_assert_eq(bk_client_read(e->client, e->addr, ledger_id, entry_id, read_done, &r), MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r;
}

static res range_sync(env *e, int64_t ledger_id, int64_t first, int64_t last, uint32_t max_bytes)
{
    res r = { 0 };
    cr_assert_eq(
        bk_client_read_range(e->client, e->addr, ledger_id, first, last, max_bytes, read_done, &r),
        MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r;
}

/* The ledger's LAC, fencing it first when fence. */
static res lac_sync(env *e, int64_t ledger_id, bool fence)
{
    res r = { 0 };
    if (fence)
        cr_assert_eq(bk_client_fence(e->client, e->addr, ledger_id, lac_done, &r), MG_OK);
    else
        cr_assert_eq(bk_client_read_lac(e->client, e->addr, ledger_id, lac_done, &r), MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r;
}

static res delete_sync(env *e, int64_t ledger_id)
{
    res r = { 0 };
    cr_assert_eq(bk_client_delete(e->client, e->addr, ledger_id, done, &r), MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r;
}

/* ---- client <-> server <-> storage ------------------------------------------------------- */

Test(bookie_rpc, add_then_read)
{
    env e;
    env_open(&e, 0);
    cr_assert_eq(add_sync(&e, 1, 0, "hello bookie"), MG_OK);
    cr_assert_eq(add_sync(&e, 1, 1, "second entry"), MG_OK);

    res r = { 0 };
    cr_assert_eq(bk_client_read(e.client, e.addr, 1, 0, read_done, &r), MG_OK);
    cr_assert_eq(r.calls, 0, "callbacks never run inside the call");
    RUN_UNTIL(&e.loop, r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.ids[0], 0);
    cr_assert_str_eq(r.first, "hello bookie");

    res r2 = read_sync(&e, 1, 1);
    cr_assert_eq(r2.status, MG_OK);
    cr_assert_str_eq(r2.first, "second entry");

    res missing = read_sync(&e, 1, 5);
    cr_assert_eq(missing.status, MG_ENOTFOUND);
    cr_assert_eq(missing.count, 0);
    env_close(&e);
}

Test(bookie_rpc, pipelined_adds_then_capped_range)
{
    enum { N = 100, SIZE = 100 };
    env e;
    env_open(&e, 0);
    mgt_tally t = { 0 };
    for (int i = 0; i < N; i++) {
        mg_buf *b = mg_buf_new(SIZE);
        memset(mg_buf_data(b), 'a' + i % 26, SIZE);
        mg_buf_set_len(b, SIZE);
        cr_assert_eq(bk_client_add(e.client, e.addr, 2, i, b, 0, SIZE, tally_add, &t), MG_OK);
        mg_buf_unref(b);
    }
    RUN_UNTIL(&e.loop, t.calls == N);
    cr_assert_eq(t.ok, N, "last error %d", t.last_error);

    /* 1050 bytes hold exactly 10 entries of 100 (the 11th would pass the cap). */
    res r = range_sync(&e, 2, 0, N - 1, 1050);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 10);
    for (size_t i = 0; i < r.count; i++) {
        cr_assert_eq(r.ids[i], (int64_t)i);
        cr_assert_eq(r.lens[i], SIZE);
    }
    cr_assert(r.one_buffer, "a response arrives in one buffer");
    cr_assert_eq(r.first[0], 'a');

    /* A cap below one entry still returns one. */
    res one = range_sync(&e, 2, 5, N - 1, 1);
    cr_assert_eq(one.status, MG_OK);
    cr_assert_eq(one.count, 1);
    cr_assert_eq(one.ids[0], 5);

    /* No cap (0 = the server's): everything, in order. */
    res all = range_sync(&e, 2, 0, N - 1, 0);
    cr_assert_eq(all.status, MG_OK);
    cr_assert_eq(all.count, N);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(all.ids[i], (int64_t)i);

    /* The range stops at the first missing entry. */
    res tail = range_sync(&e, 2, 95, 200, 0);
    cr_assert_eq(tail.status, MG_OK);
    cr_assert_eq(tail.count, 5);
    cr_assert_eq(tail.ids[4], 99);

    /* Metrics counted every add. */
    const char *labels[] = { "op" };
    mg_metric_family *fam =
        mg_metrics_counter_family(e.metrics, "bookie_rpc_requests_total", NULL, 1, labels);
    const char *add_label[] = { "add" };
    const char *range_label[] = { "read_range" };
    cr_assert_eq(mg_counter_value(mg_metrics_counter(fam, add_label)), N);
    cr_assert_eq(mg_counter_value(mg_metrics_counter(fam, range_label)), 4);
    /* Two connections: adds on one, range reads on the other (no add answer waits behind a
     * range read's megabytes in the same socket). */
    cr_assert_eq(
        mg_gauge_value(mg_metrics_unlabelled_gauge(e.metrics, "bookie_rpc_connections", NULL)),
        2.0);
    env_close(&e);
}

Test(bookie_rpc, backpressure_with_two_in_flight)
{
    enum { N = 50 };
    env e;
    env_open(&e, 2); /* the server reads on only while fewer than 2 requests are in progress */
    mgt_tally t = { 0 };
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "entry %d", i);
        mg_buf *b = mg_buf_new_copy(text, strlen(text));
        cr_assert_eq(bk_client_add(e.client, e.addr, 3, i, b, 0, strlen(text), tally_add, &t),
                     MG_OK);
        mg_buf_unref(b);
    }
    RUN_UNTIL(&e.loop, t.calls == N);
    cr_assert_eq(t.ok, N, "last error %d", t.last_error);
    res r = range_sync(&e, 3, 0, N - 1, 0);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, N);
    cr_assert_str_eq(r.first, "entry 0");
    env_close(&e);
}

Test(bookie_rpc, large_entry_round_trip)
{
    /* Larger than a read buffer on both sides: written in pieces, decoded from one buffer. */
    size_t size = 3u * 1024 * 1024 + 17;
    env e;
    env_open(&e, 0);
    mg_buf *b = mg_buf_new(size);
    for (size_t i = 0; i < size; i++)
        mg_buf_data(b)[i] = (uint8_t)(i * 31 + 7);
    mg_buf_set_len(b, size);
    res a = { 0 };
    cr_assert_eq(bk_client_add(e.client, e.addr, 12, 0, b, 0, size, add_done, &a), MG_OK);
    RUN_UNTIL(&e.loop, a.calls == 1);
    cr_assert_eq(a.status, MG_OK);
    res r = read_sync(&e, 12, 0);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.lens[0], size);
    cr_assert_eq(memcmp(r.first, mg_buf_data(b), sizeof(r.first) - 1), 0);
    mg_buf_unref(b);
    env_close(&e);
}

/* ---- range reads from disk ---------------------------------------------------------------- */

#define DISK_ENTRY_BYTES 65536u /* 15 records per 1 MiB O_DIRECT chunk */

static uint8_t disk_byte(int64_t entry_id, size_t i)
{
    return (uint8_t)((uint64_t)entry_id * 131u + i * 7u + (i >> 8));
}

/* A range read whose every entry is checked against disk_byte. */
typedef struct disk_res {
    int calls;
    int status;
    size_t count;
    int64_t first_id;
    bool ids_consecutive;
    size_t bad_entries; /* wrong length or bytes */
} disk_res;

static void disk_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    disk_res *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    r->first_id = count > 0 ? entries[0].entry_id : -1;
    r->ids_consecutive = true;
    r->bad_entries = 0;
    for (size_t i = 0; i < count; i++) {
        const bk_entry *en = &entries[i];
        if (en->entry_id != r->first_id + (int64_t)i)
            r->ids_consecutive = false;
        bool ok = en->len == DISK_ENTRY_BYTES;
        const uint8_t *p = mg_buf_data(en->buf) + en->off;
        for (size_t b = 0; ok && b < en->len; b++)
            ok = p[b] == disk_byte(en->entry_id, b);
        if (!ok)
            r->bad_entries++;
    }
}

static disk_res disk_range_sync(env *e, int64_t ledger_id, int64_t first, int64_t last)
{
    disk_res r = { 0 };
    cr_assert_eq(
        bk_client_read_range(e->client, e->addr, ledger_id, first, last, 0, disk_read_done, &r),
        MG_OK);
    RUN_UNTIL(&e->loop, r.calls == 1);
    return r;
}

/* Asserts that the range [first, last] of the ledger reads back as count intact entries from
 * first on. */
static void expect_disk_range(env *e, int64_t ledger_id, int64_t first, int64_t last, size_t count)
{
    disk_res r = disk_range_sync(e, ledger_id, first, last);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.count, count);
    cr_assert_eq(r.first_id, first);
    cr_assert(r.ids_consecutive);
    cr_assert_eq(r.bad_entries, 0);
}

/* The largest entry log (every open starts a new, empty one). */
static char rpc_log_path[512];
static off_t rpc_log_bytes;

static int find_entry_log(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    size_t n = strlen(path);
    if (flag == FTW_F && n > 4 && strcmp(path + n - 4, ".log") == 0 && strstr(path, "entrylogs") &&
        sb->st_size > rpc_log_bytes) {
        snprintf(rpc_log_path, sizeof(rpc_log_path), "%s", path);
        rpc_log_bytes = sb->st_size;
    }
    return 0;
}

Test(bookie_rpc, disk_range_across_chunks_and_corrupt_record_not_served)
{
    enum { N = 40, BAD = 20 }; /* 40 records: three 1 MiB chunks; entry 20 in the second */
    env e;
    env_open(&e, 0);
    mgt_tally t = { 0 };
    for (int64_t i = 0; i < N; i++) {
        mg_buf *b = mg_buf_new(DISK_ENTRY_BYTES);
        for (size_t k = 0; k < DISK_ENTRY_BYTES; k++)
            mg_buf_data(b)[k] = disk_byte(i, k);
        mg_buf_set_len(b, DISK_ENTRY_BYTES);
        cr_assert_eq(bk_client_add(e.client, e.addr, 21, i, b, 0, DISK_ENTRY_BYTES, tally_add, &t),
                     MG_OK);
        mg_buf_unref(b);
    }
    RUN_UNTIL(&e.loop, t.calls == N);
    cr_assert_eq(t.ok, N, "last error %d", t.last_error);
    mgt_tally f = { 0 };
    cr_assert_eq(bk_storage_flush(e.storage, mgt_tally_done, &f), MG_OK);
    RUN_UNTIL(&e.loop, f.calls == 1);
    cr_assert_eq(f.ok, 1);

    /* Restart the storage so the entries come from the entry log, not the caches. */
    server_stop(&e);
    storage_close(&e);
    storage_open(&e, (bk_storage_opts){ 0 });
    server_start(&e, 0, 0);

    expect_disk_range(&e, 21, 0, N - 1, N);

    /* Flip one payload byte of entry BAD on disk, then restart again (no cached copy). */
    server_stop(&e);
    storage_close(&e);
    rpc_log_path[0] = '\0';
    rpc_log_bytes = 0;
    nftw(e.dir, find_entry_log, 16, FTW_PHYS);
    cr_assert_neq(rpc_log_path[0], '\0');
    int fd = open(rpc_log_path, O_RDWR);
    cr_assert_geq(fd, 0);
    off_t off = (off_t)BK_ENTRYLOG_HEADER_BYTES +
                (off_t)BAD * (BK_RECORD_HEADER_BYTES + DISK_ENTRY_BYTES) + BK_RECORD_HEADER_BYTES +
                1000;
    uint8_t byte;
    cr_assert_eq(pread(fd, &byte, 1, off), 1);
    cr_assert_eq(byte, disk_byte(BAD, 1000), "the layout is as computed");
    byte ^= 0x01;
    cr_assert_eq(pwrite(fd, &byte, 1, off), 1);
    close(fd);
    storage_open(&e, (bk_storage_opts){ 0 });
    server_start(&e, 0, 0);

    /* The range stops right before the corrupt record; what it returns is intact. */
    expect_disk_range(&e, 21, 0, N - 1, BAD);
    /* Asking for the corrupt record itself is an error, never its bytes. */
    disk_res bad = disk_range_sync(&e, 21, BAD, N - 1);
    cr_assert_eq(bad.status, MG_ECORRUPT);
    cr_assert_eq(bad.count, 0);
    /* The records after it are still served. */
    expect_disk_range(&e, 21, BAD + 1, N - 1, N - BAD - 1);
    env_close(&e);
}

/* Each read checks its own entry: answers that come back out of order must still reach the
 * request they belong to. */
typedef struct expect_read {
    int calls;
    int status;
    char want[32];
    bool match;
} expect_read;

static void expect_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    expect_read *x = arg;
    x->calls++;
    x->status = status;
    x->match = count == 1 && entries[0].len == strlen(x->want) &&
               memcmp(mg_buf_data(entries[0].buf) + entries[0].off, x->want, entries[0].len) == 0;
}

static int reads_done(const expect_read *reads, int n)
{
    int calls = 0;
    for (int i = 0; i < n; i++)
        calls += reads[i].calls;
    return calls;
}

Test(bookie_rpc, interleaved_reads_and_adds_match_their_requests)
{
    enum { N = 20 };
    env e;
    env_open(&e, 0);
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof(text), "ledger 13 entry %d", i);
        cr_assert_eq(add_sync(&e, 13, i, text), MG_OK);
    }
    expect_read reads[N];
    mgt_tally adds = { 0 };
    for (int i = 0; i < N; i++) {
        memset(&reads[i], 0, sizeof(reads[i]));
        snprintf(reads[i].want, sizeof(reads[i].want), "ledger 13 entry %d", i);
        cr_assert_eq(bk_client_read(e.client, e.addr, 13, i, expect_read_done, &reads[i]), MG_OK);
        char text[32];
        snprintf(text, sizeof(text), "ledger 14 entry %d", i);
        mg_buf *b = mg_buf_new_copy(text, strlen(text));
        cr_assert_eq(bk_client_add(e.client, e.addr, 14, i, b, 0, strlen(text), tally_add, &adds),
                     MG_OK);
        mg_buf_unref(b);
    }
    RUN_UNTIL(&e.loop, adds.calls == N && reads_done(reads, N) == N);
    cr_assert_eq(adds.ok, N, "last error %d", adds.last_error);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(reads[i].calls, 1);
        cr_assert_eq(reads[i].status, MG_OK);
        cr_assert(reads[i].match, "read %d got another entry's bytes", i);
    }
    env_close(&e);
}

Test(bookie_rpc, read_lac)
{
    env e;
    env_open(&e, 0);
    add_n_sync(&e, 4, 5, "x");
    res r = lac_sync(&e, 4, false);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_eq(r.lac, 4);

    res unknown = lac_sync(&e, 4444, false);
    cr_assert_eq(unknown.status, MG_ENOTFOUND);
    cr_assert_eq(unknown.lac, -1);
    env_close(&e);
}

Test(bookie_rpc, fence_then_add_is_refused_and_read_works)
{
    env e;
    env_open(&e, 0);
    add_n_sync(&e, 5, 3, "before fence");
    res f = lac_sync(&e, 5, true);
    cr_assert_eq(f.status, MG_OK);
    cr_assert_eq(f.lac, 2);

    cr_assert_eq(add_sync(&e, 5, 3, "after fence"), MG_EFENCED);

    res r = read_sync(&e, 5, 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_str_eq(r.first, "before fence");
    /* Other ledgers are not fenced. */
    cr_assert_eq(add_sync(&e, 6, 0, "elsewhere"), MG_OK);
    env_close(&e);
}

Test(bookie_rpc, delete_ledger)
{
    env e;
    env_open(&e, 0);
    cr_assert_eq(add_sync(&e, 7, 0, "doomed"), MG_OK);
    res d = delete_sync(&e, 7);
    cr_assert_eq(d.status, MG_OK);
    res r = read_sync(&e, 7, 0);
    cr_assert_eq(r.status, MG_ENOTFOUND);
    env_close(&e);
}

Test(bookie_rpc, health_and_name_resolution)
{
    env e;
    env_open(&e, 0);
    cr_assert_eq(health_sync(&e), MG_OK);
    /* "localhost" resolves (perhaps to ::1 first, where nothing listens: the next address is
     * tried). */
    res r = { 0 };
    char name_addr[64];
    snprintf(name_addr, sizeof(name_addr), "localhost:%u", (unsigned)e.port);
    cr_assert_eq(bk_client_health(e.client, name_addr, done, &r), MG_OK);
    RUN_UNTIL(&e.loop, r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    env_close(&e);
}

Test(bookie_rpc, synchronous_argument_errors)
{
    env e;
    env_open(&e, 0);
    res r = { 0 };
    cr_assert_eq(bk_client_health(e.client, "no-port", done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_health(e.client, "127.0.0.1:0", done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_health(e.client, "127.0.0.1:65536", done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_health(e.client, "::1:3181", done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_health(e.client, "[::1:3181", done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_read(e.client, e.addr, -1, 0, read_done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_read_range(e.client, e.addr, 1, 5, 4, 0, read_done, &r), MG_EINVAL);
    cr_assert_eq(bk_client_read_lac(e.client, e.addr, -2, lac_done, &r), MG_EINVAL);
    mg_buf *big = mg_buf_new((size_t)BK_ENTRY_BYTES_MAX + 1);
    cr_assert_not_null(big);
    mg_buf_set_len(big, (size_t)BK_ENTRY_BYTES_MAX + 1);
    cr_assert_eq(
        bk_client_add(e.client, e.addr, 1, 0, big, 0, (size_t)BK_ENTRY_BYTES_MAX + 1, add_done, &r),
        MG_ELIMIT);
    mg_buf_unref(big);
    /* A function that returns an error never calls its callback. */
    for (int i = 0; i < 5; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    cr_assert_eq(r.calls, 0);
    env_close(&e);
}

/* ---- raw sockets: bad input hurts only its own connection -------------------------------- */

static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Completes from the listen backlog; the server accepts on a later loop turn. */
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

static void raw_send(int fd, const void *data, size_t len)
{
    /* Small writes into an empty socket buffer: complete at once. */
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    cr_assert_eq(n, (ssize_t)len);
}

static void raw_send_request(int fd, const bk_request *req, const void *payload, size_t len)
{
    mg_buf *p = len > 0 ? mg_buf_new_copy(payload, len) : NULL;
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_request(req, p, 0, len, &chain), MG_OK);
    uint8_t bytes[512];
    size_t n = mg_chain_copy_out(&chain, 0, bytes, sizeof(bytes));
    cr_assert_eq(n, mg_chain_len(&chain));
    mg_chain_reset(&chain);
    mg_buf_unref(p);
    raw_send(fd, bytes, n);
}

/* Turns the loop until the server answered on fd; returns MG_OK with *out, or MG_ECLOSED when
 * the server closed the connection instead. */
static int raw_recv(env *e, int fd, bk_decoder *dec, bk_frame *out)
{
    uint64_t t0 = uv_hrtime();
    for (;;) {
        int rc = bk_decoder_next(dec, out);
        if (rc == MG_OK)
            return MG_OK;
        cr_assert_eq(rc, MG_EAGAIN);
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return MG_ECLOSED;
        if (n > 0) {
            cr_assert_eq(bk_decoder_feed(dec, buf, (size_t)n), MG_OK);
            continue;
        }
        cr_assert_lt(uv_hrtime() - t0, WAIT_NS_MAX, "no answer from the server");
        uv_run(&e->loop, UV_RUN_ONCE);
    }
}

static void raw_expect_status(env *e, int fd, const bk_request *req, int status)
{
    raw_send_request(fd, req, NULL, 0);
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_RESPONSE);
    bk_frame f;
    cr_assert_eq(raw_recv(e, fd, &dec, &f), MG_OK);
    cr_assert_eq(f.resp.request_id, req->request_id);
    cr_assert_eq(f.resp.op, req->op);
    cr_assert_eq(f.resp.status, status, "op %d: status %d, expected %d", (int)req->op,
                 (int)f.resp.status, status);
    bk_frame_release(&f);
    bk_decoder_destroy(&dec);
}

static void raw_expect_closed(env *e, int fd)
{
    bk_decoder dec;
    bk_decoder_init(&dec, BK_FRAME_RESPONSE);
    bk_frame f;
    cr_assert_eq(raw_recv(e, fd, &dec, &f), MG_ECLOSED);
    bk_decoder_destroy(&dec);
    close(fd);
}

static uint64_t protocol_errors(env *e)
{
    return mg_counter_value(
        mg_metrics_unlabelled_counter(e->metrics, "bookie_rpc_protocol_errors_total", NULL));
}

Test(bookie_rpc, bad_requests_get_error_replies)
{
    env e;
    env_open(&e, 0);
    cr_assert_eq(add_sync(&e, 8, 0, "good"), MG_OK);
    int fd = raw_connect(e.port);

    bk_request unknown = { .request_id = 1, .op = 99, .present = BK_HAS_LEDGER_ID, .ledger_id = 8 };
    raw_expect_status(&e, fd, &unknown, MG_ENOTSUP);
    bk_request no_fields = { .request_id = 2, .op = BK_OP_ADD };
    raw_expect_status(&e, fd, &no_fields, MG_EINVAL);
    bk_request no_entry = {
        .request_id = 3, .op = BK_OP_READ, .present = BK_HAS_LEDGER_ID, .ledger_id = 8
    };
    raw_expect_status(&e, fd, &no_entry, MG_EINVAL);
    bk_request negative = { .request_id = 4,
                            .op = BK_OP_READ,
                            .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                            .ledger_id = -8,
                            .entry_id = 0 };
    raw_expect_status(&e, fd, &negative, MG_EINVAL);
    bk_request backwards = { .request_id = 5,
                             .op = BK_OP_READ_RANGE,
                             .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID | BK_HAS_LAST_ENTRY_ID,
                             .ledger_id = 8,
                             .entry_id = 3,
                             .last_entry_id = 2 };
    raw_expect_status(&e, fd, &backwards, MG_EINVAL);
    bk_request lac_no_ledger = { .request_id = 6, .op = BK_OP_READ_LAC };
    raw_expect_status(&e, fd, &lac_no_ledger, MG_EINVAL);
    /* The same connection still serves good requests after all that. */
    bk_request health = { .request_id = 7, .op = BK_OP_HEALTH };
    raw_expect_status(&e, fd, &health, MG_OK);
    bk_request read = { .request_id = 8,
                        .op = BK_OP_READ,
                        .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                        .ledger_id = 8,
                        .entry_id = 0 };
    raw_expect_status(&e, fd, &read, MG_OK);
    cr_assert_eq(protocol_errors(&e), 0);
    close(fd);
    cr_assert_eq(health_sync(&e), MG_OK);
    env_close(&e);
}

Test(bookie_rpc, malformed_frames_close_only_their_connection)
{
    env e;
    env_open(&e, 0);
    cr_assert_eq(add_sync(&e, 9, 0, "survivor"), MG_OK);

    /* A huge length: closed at once, without waiting for 4 GiB. */
    int fd = raw_connect(e.port);
    uint8_t huge[8] = { 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 2 };
    raw_send(fd, huge, sizeof(huge));
    raw_expect_closed(&e, fd);
    cr_assert_eq(protocol_errors(&e), 1);
    cr_assert_eq(health_sync(&e), MG_OK);

    /* frame_len below 4. */
    fd = raw_connect(e.port);
    uint8_t tiny[4] = { 0, 0, 0, 3 };
    raw_send(fd, tiny, sizeof(tiny));
    raw_expect_closed(&e, fd);
    cr_assert_eq(protocol_errors(&e), 2);

    /* A header that is not a Request. */
    fd = raw_connect(e.port);
    uint8_t garbage[8 + 6] = { 0, 0, 0, 10, 0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    raw_send(fd, garbage, sizeof(garbage));
    raw_expect_closed(&e, fd);
    cr_assert_eq(protocol_errors(&e), 3);

    /* header_len beyond the frame. */
    fd = raw_connect(e.port);
    uint8_t overlong[8] = { 0, 0, 0, 8, 0, 0, 0, 9 };
    raw_send(fd, overlong, sizeof(overlong));
    raw_expect_closed(&e, fd);
    cr_assert_eq(protocol_errors(&e), 4);

    /* A truncated frame, then the client goes away: the server just drops the connection. */
    fd = raw_connect(e.port);
    bk_request read = { .request_id = 1,
                        .op = BK_OP_READ,
                        .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                        .ledger_id = 9,
                        .entry_id = 0 };
    mg_chain chain;
    mg_chain_init(&chain);
    cr_assert_eq(bk_encode_request(&read, NULL, 0, 0, &chain), MG_OK);
    uint8_t bytes[128];
    size_t n = mg_chain_copy_out(&chain, 0, bytes, sizeof(bytes));
    mg_chain_reset(&chain);
    raw_send(fd, bytes, n - 3);
    for (int i = 0; i < 5; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    close(fd);
    cr_assert_eq(protocol_errors(&e), 4); /* not a protocol error: just a peer leaving */

    /* A client that leaves with requests in the storage: the responses are dropped safely. */
    fd = raw_connect(e.port);
    for (int i = 0; i < 10; i++) {
        bk_request add = { .request_id = 100 + (uint64_t)i,
                           .op = BK_OP_ADD,
                           .present = BK_HAS_LEDGER_ID | BK_HAS_ENTRY_ID,
                           .ledger_id = 10,
                           .entry_id = i };
        raw_send_request(fd, &add, "abandoned", 9);
    }
    for (int i = 0; i < 3; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    close(fd);

    /* The well-behaved connection worked throughout. */
    res r = read_sync(&e, 9, 0);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_str_eq(r.first, "survivor");
    cr_assert_eq(add_sync(&e, 9, 1, "still here"), MG_OK);
    env_close(&e);
}

/* ---- client failures --------------------------------------------------------------------- */

Test(bookie_rpc, client_times_out_on_a_silent_server)
{
    env e;
    loop_start(&e);
    /* A listening socket nobody accepts from: connects succeed, nothing is ever answered. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 8), 0);
    socklen_t sa_len = sizeof(sa);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sa_len), 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));

    bk_client_opts opts = { .request_timeout_ms = 200,
                            .connect_timeout_ms = 1000,
                            .pending_max = 2 };
    bk_client *c;
    cr_assert_eq(bk_client_create(&e.loop, &opts, &c), MG_OK);
    res h = { 0 }, l = { 0 };
    cr_assert_eq(bk_client_health(c, addr, done, &h), MG_OK);
    cr_assert_eq(bk_client_read_lac(c, addr, 1, lac_done, &l), MG_OK);
    /* pending_max reached: refused at once */
    res refused = { 0 };
    cr_assert_eq(bk_client_health(c, addr, done, &refused), MG_EAGAIN);
    RUN_UNTIL(&e.loop, h.calls == 1 && l.calls == 1);
    cr_assert_eq(h.status, MG_ETIMEDOUT);
    cr_assert_eq(l.status, MG_ETIMEDOUT);
    cr_assert_eq(l.lac, -1);

    /* Closing the client completes what is still pending with MG_ECLOSED. */
    res pending = { 0 };
    cr_assert_eq(bk_client_health(c, addr, done, &pending), MG_OK);
    bk_client_close(c, mgt_set_flag, &e.client_closed);
    cr_assert_eq(pending.calls, 0);
    RUN_UNTIL(&e.loop, e.client_closed);
    cr_assert_eq(pending.calls, 1);
    cr_assert_eq(pending.status, MG_ECLOSED);
    close(lfd);
    loop_finish(&e);
}

Test(bookie_rpc, connection_refused)
{
    env e;
    loop_start(&e);
    char addr[64];
    mgt_closed_port_addr(addr, sizeof(addr));
    bk_client *c;
    cr_assert_eq(bk_client_create(&e.loop, NULL, &c), MG_OK);
    res r = { 0 };
    cr_assert_eq(bk_client_health(c, addr, done, &r), MG_OK);
    RUN_UNTIL(&e.loop, r.calls == 1);
    cr_assert_eq(r.status, MG_ECONNECTION);
    bk_client_close(c, mgt_set_flag, &e.client_closed);
    RUN_UNTIL(&e.loop, e.client_closed);
    loop_finish(&e);
}

Test(bookie_rpc, connection_loss_fails_pending_and_reconnects)
{
    enum { N = 5 };
    env e;
    env_open(&e, 0);
    cr_assert_eq(add_sync(&e, 11, 0, "kept"), MG_OK); /* connected */
    uint16_t port = e.port;

    /* Requests go out, then the server vanishes before it reads them. */
    mgt_tally t = { 0 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(bk_client_health(e.client, e.addr, mgt_tally_done, &t), MG_OK);
    e.server_closed = false;
    bk_server_close(e.server, mgt_set_flag, &e.server_closed);
    e.server = NULL;
    RUN_UNTIL(&e.loop, t.calls == N && e.server_closed);
    cr_assert_eq(t.ok, 0);
    cr_assert_eq(t.last_error, MG_ECONNECTION);

    /* Nobody listens: the reconnect attempt fails. */
    cr_assert_eq(health_sync(&e), MG_ECONNECTION);

    /* Back on the same port: the next request reconnects (after a short backoff). */
    server_start(&e, port, 0);
    cr_assert_eq(health_sync(&e), MG_OK);
    res r = read_sync(&e, 11, 0);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_str_eq(r.first, "kept");
    env_close(&e);
}
