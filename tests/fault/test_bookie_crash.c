/*
 * Crash safety of the bookie, with the real process: `magnetar bookie` is started, a client
 * adds entries as fast as the bookie acknowledges them (pipelined), the bookie is killed with
 * SIGKILL at a random moment, restarted on the same directories, and every entry is read back:
 *   - every acknowledged entry is there, byte-identical;
 *   - an entry that was not acknowledged is either absent or whole (its exact bytes), never
 *     half an entry;
 *   - entries of earlier rounds are still there.
 * Several rounds; each writes a new ledger. The magnetar binary comes from MG_BIN.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "bookie/client.h"
#include "common/error.h"

#define ROUNDS      6
#define ENTRIES_MAX 200000
#define INFLIGHT    256
#define TIMEOUT_MS  20000

static char dir[256];
static uv_loop_t loop;
static bk_client *client;
static pid_t bookie_pid = -1;
static char addr[64];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static size_t payload_of(int64_t ledger, int64_t entry, uint8_t *out)
{
    size_t len = 64 + (size_t)((entry * 131 + ledger) % 1500);
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(entry * 13 + ledger * 7 + (int64_t)i * 3);
    return len;
}

/* Starts the bookie on a free port; its log goes to dir/bookie-<n>.log. */
static void start_bookie(int n)
{
    const char *bin = getenv("MG_BIN");
    cr_assert_not_null(bin, "MG_BIN must name the magnetar binary");
    char log[300], jdir[300], ldir[300], md[300];
    snprintf(log, sizeof(log), "%s/bookie-%d.log", dir, n);
    snprintf(jdir, sizeof(jdir), "%s/journal", dir);
    snprintf(ldir, sizeof(ldir), "%s/ledgers", dir);
    snprintf(md, sizeof(md), "rocksdb:%s/metadata", dir);
    bookie_pid = fork();
    cr_assert_neq(bookie_pid, -1);
    if (bookie_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin, bin, "bookie", "--port", "0", "--http-port", "0", "--bind-address", "127.0.0.1",
              "--journal-dir", jdir, "--ledger-dirs", ldir, "--metadata-url", md,
              "--write-cache-mb", "8", (char *)NULL);
        _exit(127);
    }
    /* Wait (bounded) for the ready line and take the RPC port from it. */
    addr[0] = '\0';
    for (int i = 0; i < 300 && addr[0] == '\0'; i++) {
        usleep(50000);
        FILE *f = fopen(log, "r");
        char line[1024];
        while (f && fgets(line, sizeof(line), f)) {
            char *p = strstr(line, "ready: rpc ");
            unsigned port;
            if (p && sscanf(p, "ready: rpc 127.0.0.1:%u", &port) == 1)
                snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
        }
        if (f)
            fclose(f);
    }
    cr_assert_neq(addr[0], '\0', "bookie did not become ready; see %s", log);
}

typedef struct round_state {
    int64_t ledger;
    int64_t next;
    int inflight;
    bool stop;
    uint8_t *acked; /* per entry: acknowledged */
    int64_t last_acked;
    int64_t out_of_order;
    uv_timer_t *kill_timer; /* started at the first acknowledgement */
    bool kill_armed;
    int64_t acked_count;
    int64_t failed;
} round_state;

static void issue(round_state *r);
static void kill_timer_cb(uv_timer_t *t);

static void add_done(int status, int64_t ledger_id, int64_t entry_id, void *arg)
{
    round_state *r = arg;
    r->inflight--;
    if (status == MG_OK) {
        if (entry_id < r->last_acked)
            r->out_of_order++; /* adds on one connection are acknowledged in order */
        r->last_acked = entry_id;
        r->acked[entry_id] = 1;
        if (!r->kill_armed) {
            /* Kill at a random moment while acknowledged adds keep flowing. */
            r->kill_armed = true;
            uv_timer_start(r->kill_timer, kill_timer_cb, 20 + (uint64_t)(rand() % 600), 0);
        }
        r->acked_count++;
    } else {
        if (!r->stop)
            cr_log_info("entry %ld failed before the kill: %s", (long)entry_id,
                        mg_strerror(status));
        r->failed++;
    }
    issue(r);
}

static void issue(round_state *r)
{
    while (!r->stop && r->inflight < INFLIGHT && r->next < ENTRIES_MAX) {
        uint8_t tmp[2048];
        size_t len = payload_of(r->ledger, r->next, tmp);
        mg_buf *b = mg_buf_new_copy(tmp, len);
        int rc = bk_client_add(client, addr, r->ledger, r->next, b, 0, len, add_done, r);
        mg_buf_unref(b);
        if (rc != MG_OK)
            return;
        r->inflight++;
        r->next++;
    }
}

static void kill_timer_cb(uv_timer_t *t)
{
    round_state *r = t->data;
    cr_assert_gt(bookie_pid, 0); /* never kill(-1, ...) */
    kill(bookie_pid, SIGKILL);
    int status;
    waitpid(bookie_pid, &status, 0);
    bookie_pid = -1;
    r->stop = true;
}

typedef struct verify {
    int64_t ledger;
    int done;
    int status;
    int64_t got_last;
    int64_t bad;
    int64_t present;
    const uint8_t *acked;
} verify;

static void verify_cb(int status, const bk_entry *entries, size_t count, void *arg)
{
    verify *v = arg;
    v->status = status;
    for (size_t i = 0; i < count; i++) {
        uint8_t want[2048];
        size_t len = payload_of(v->ledger, entries[i].entry_id, want);
        if (entries[i].len != len ||
            memcmp(mg_buf_data(entries[i].buf) + entries[i].off, want, len) != 0)
            v->bad++;
        v->present++;
        v->got_last = entries[i].entry_id;
    }
    v->done++;
}

static void wait_flag(const int *flag, int target)
{
    uint64_t deadline = uv_now(&loop) + TIMEOUT_MS;
    while (*flag < target && uv_now(&loop) < deadline) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(200);
        uv_update_time(&loop);
    }
    cr_assert_geq(*flag, target, "timed out waiting for the bookie");
}

/* Reads entries 0..last of a ledger with range reads and checks their bytes. A missing entry
 * is allowed only if it was never acknowledged (the adds in flight at the kill); the reading
 * goes on past it. Returns how many entries came back. */
static int64_t verify_ledger(int64_t ledger, int64_t last, const uint8_t *acked)
{
    int64_t next = 0, present = 0, gaps = 0;
    while (next <= last) {
        verify v = { .ledger = ledger, .got_last = -1 };
        int rc = bk_client_read_range(client, addr, ledger, next, last, 4u << 20, verify_cb, &v);
        cr_assert_eq(rc, MG_OK);
        wait_flag(&v.done, 1);
        cr_assert_eq(v.bad, 0, "ledger %ld: %ld entries with wrong bytes", (long)ledger,
                     (long)v.bad);
        if (v.status == MG_ENOTFOUND || v.present == 0) {
            cr_assert(!acked[next], "ledger %ld entry %ld was acknowledged but is missing",
                      (long)ledger, (long)next);
            cr_assert_lt(++gaps, INFLIGHT * 2, "more gaps than adds in flight");
            next++;
            continue;
        }
        cr_assert_eq(v.status, MG_OK, "read_range: %s", mg_strerror(v.status));
        present += v.present;
        next = v.got_last + 1;
    }
    return present;
}

static void closed_cb(void *arg)
{
    (*(int *)arg)++;
}

Test(bookie_crash, sigkill_during_adds_loses_nothing_acknowledged, .timeout = 600)
{
    snprintf(dir, sizeof(dir), "/var/tmp/magnetar-crash-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    uv_loop_init(&loop);
    bk_client_opts co = { .request_timeout_ms = 5000 };
    cr_assert_eq(bk_client_create(&loop, &co, &client), MG_OK);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    static uint8_t acked[ROUNDS][ENTRIES_MAX];
    static int64_t issued[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        start_bookie(round);
        round_state r = { .ledger = 1000 + round, .acked = acked[round], .last_acked = -1 };
        uv_timer_t kt;
        uv_timer_init(&loop, &kt);
        kt.data = &r;
        r.kill_timer = &kt;
        issue(&r);
        uint64_t deadline = uv_now(&loop) + TIMEOUT_MS;
        while ((!r.stop || r.inflight > 0) && uv_now(&loop) < deadline) {
            uv_run(&loop, UV_RUN_NOWAIT);
            usleep(100);
            uv_update_time(&loop);
        }
        uv_close((uv_handle_t *)&kt, NULL);
        cr_assert_eq(r.inflight, 0, "requests still pending after the kill");
        cr_assert_eq(r.out_of_order, 0, "round %d: %ld acknowledgements out of order", round,
                     (long)r.out_of_order);
        cr_assert_gt(r.acked_count, 0, "round %d: nothing was acknowledged before the kill", round);
        issued[round] = r.next;
        cr_log_info("round %d: %ld issued, %ld acknowledged before SIGKILL", round, (long)r.next,
                    (long)r.acked_count);

        /* Restart on the same directories and check this round and every earlier one. */
        start_bookie(100 + round);
        for (int k = 0; k <= round; k++) {
            int64_t present = verify_ledger(1000 + k, issued[k] - 1, acked[k]);
            int64_t acked_n = 0;
            for (int64_t e = 0; e < issued[k]; e++)
                acked_n += acked[k][e];
            cr_assert_geq(present, acked_n);
        }
        cr_assert_gt(bookie_pid, 0);
        kill(bookie_pid, SIGTERM);
        int status;
        waitpid(bookie_pid, &status, 0);
        bookie_pid = -1;
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bookie exit status %d", status);
    }
    int closed = 0;
    bk_client_close(client, closed_cb, &closed);
    wait_flag(&closed, 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
