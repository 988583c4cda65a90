/*
 * The managed-ledger suites' shared environment and helpers (see managed_util.h).
 */
#include "unit/ledger/managed_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mlh t;

void set_flag(void *arg)
{
    *(bool *)arg = true;
}

void setup_env(int bookies, int e, int w, int a, uint32_t pending_max)
{
    mlh_opts o = { .bookie_count = bookies,
                   .metrics = true,
                   .env = { .ensemble_size = e,
                            .write_quorum = w,
                            .ack_quorum = a,
                            .pending_adds_max = pending_max } };
    cr_assert_eq(mlh_start(&t, &o), MG_OK);
}

void teardown_env(void)
{
    cr_assert_eq(mlh_stop(&t), MG_OK, "handles left open on the loop");
}

uint64_t counter(const char *name)
{
    return mlh_counter(&t, name);
}

/* ---- managed ledgers ---------------------------------------------------------------------- */

void opened(int status, ml_managed *ml, void *arg)
{
    ores *r = arg;
    r->calls++;
    r->status = status;
    r->ml = ml;
}

ml_managed *open_ml(ml_env *env, const char *name, const ml_config *cfg, int expect)
{
    ores r = { 0 };
    cr_assert_eq(ml_open(env, name, cfg, opened, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, expect, "open: %s", mg_strerror(r.status));
    if (expect != MG_OK)
        cr_assert_null(r.ml);
    return r.ml;
}

void done_cb(int status, void *arg)
{
    dres *r = arg;
    r->calls++;
    r->status = status;
}

int close_ml(ml_managed *ml)
{
    dres r = { 0 };
    cr_assert_eq(ml_close(ml, done_cb, &r), MG_OK);
    cr_assert_eq(r.calls, 0);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}

size_t payload_len(int64_t k)
{
    return 12 + (size_t)((k * 13) % 90);
}

void payload_fill(int64_t k, uint8_t *dst)
{
    size_t n = payload_len(k);
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(k * 7 + (int64_t)i * 3);
}

int32_t batch_messages(int64_t k)
{
    return (int32_t)(1 + k % 4);
}

void add_done(int status, ml_position pos, int64_t index, void *arg)
{
    struct slot *s = arg;
    adds *a = s->a;
    if (s->k != a->next_cb)
        a->disorder = true;
    a->next_cb = s->k + 1;
    a->done++;
    a->status[s->k] = status;
    if (status == MG_OK) {
        a->ok++;
        a->pos[s->k] = pos;
        a->index[s->k] = index;
    } else {
        a->pos[s->k] = (ml_position){ -1, -1 };
        if (a->first_error == MG_OK)
            a->first_error = status;
    }
}

/* Issues batch k (the next one) without waiting. */
int add_one(ml_managed *ml, adds *a)
{
    int64_t k = a->issued;
    cr_assert_lt(k, ADDS_MAX);
    size_t n = payload_len(k);
    mg_buf *b = mg_buf_new(n + 5);
    cr_assert_not_null(b);
    memset(mg_buf_data(b), 0xAB, n + 5);
    payload_fill(k, mg_buf_data(b) + 5);
    mg_buf_set_len(b, n + 5);
    a->slots[k] = (struct slot){ a, k };
    int rc = ml_add(ml, b, 5, n, batch_messages(k), add_done, &a->slots[k]);
    mg_buf_unref(b);
    if (rc == MG_OK)
        a->issued++;
    return rc;
}

/* Adds count batches, up to window in flight, and waits for them all. */
void add_many(ml_managed *ml, adds *a, int64_t count, int window)
{
    int64_t end = a->issued + count;
    while (a->issued < end) {
        while (a->issued < end && a->issued - a->done < window)
            cr_assert_eq(add_one(ml, a), MG_OK);
        RUN_UNTIL(a->issued - a->done < window || a->done == a->issued);
    }
    RUN_UNTIL(a->done == a->issued);
}

/* Messages in batches [0, k). */
int64_t messages_before(int64_t k)
{
    int64_t m = 0;
    for (int64_t i = 0; i < k; i++)
        m += batch_messages(i);
    return m;
}

void second_clients(md_client **md, bk_client **bk)
{
    cr_assert_eq(md_client_create(bkh_md_store(t.h), &t.loop, md), MG_OK);
    cr_assert_eq(bk_client_create(&t.loop, NULL, bk), MG_OK);
}

void second_clients_close(md_client *md, bk_client *bk)
{
    bool x = false, y = false;
    md_client_close(md, set_flag, &x);
    bk_client_close(bk, set_flag, &y);
    RUN_UNTIL(x && y);
}

void retention_fixture(ml_config *cfg, ml_managed **out, adds *a)
{
    cfg->entries_per_ledger_max = 5;
    *out = open_ml(t.env, NAME, cfg, MG_OK);
    memset(a, 0, sizeof(*a));
    add_many(*out, a, 17, 1); /* L0..L2 closed with 5 entries, L3 current with 2 */
    cr_assert_eq(a->ok, 17);
}

/* ---- reads -------------------------------------------------------------------------------- */

void rres_free(rres *r)
{
    for (size_t i = 0; i < r->count && i < READ_MAX; i++)
        free(r->payload[i]);
    memset(r, 0, sizeof(*r));
}

void read_done(int status, const ml_entry *entries, size_t count, void *arg)
{
    rres *r = arg;
    r->calls++;
    r->status = status;
    r->count = count;
    r->prefix_ok = true;
    for (size_t i = 0; i < count && i < READ_MAX; i++) {
        const ml_entry *e = &entries[i];
        const uint8_t *raw = mg_buf_data(e->buf) + e->off;
        if (raw[0] != 0x0e || raw[1] != 0x02 || e->payload_off <= e->off ||
            e->payload_off + e->payload_len != e->off + e->len)
            r->prefix_ok = false;
        r->pos[i] = e->position;
        r->ts[i] = e->broker_timestamp_ms;
        r->index[i] = e->index;
        r->len[i] = e->payload_len;
        r->stored[i] = e->len;
        r->payload[i] = malloc(e->payload_len + 1);
        memcpy(r->payload[i], mg_buf_data(e->buf) + e->payload_off, e->payload_len);
    }
}

void read_ml(ml_managed *ml, ml_position from, int max_entries, uint32_t max_bytes, rres *r)
{
    memset(r, 0, sizeof(*r));
    cr_assert_eq(ml_read(ml, from, max_entries, max_bytes, read_done, r), MG_OK);
    cr_assert_eq(r->calls, 0); /* never inside the call */
    RUN_UNTIL(r->calls == 1);
}

/* Checks that read entry i is batch k as added. */
void check_entry(const rres *r, size_t i, const adds *a, int64_t k)
{
    cr_assert_eq(ml_position_cmp(r->pos[i], a->pos[k]), 0, "entry %zu: position", i);
    cr_assert_eq(r->index[i], a->index[k]);
    cr_assert_eq(r->len[i], payload_len(k));
    uint8_t want[128];
    payload_fill(k, want);
    cr_assert_eq(memcmp(r->payload[i], want, payload_len(k)), 0, "batch %lld payload",
                 (long long)k);
}

typedef struct fres {
    int calls;
    int status;
    ml_position pos;
} fres;

static void found(int status, ml_position pos, void *arg)
{
    fres *r = arg;
    r->calls++;
    r->status = status;
    r->pos = pos;
}

ml_position find_time(ml_managed *ml, int64_t ts)
{
    fres r = { 0 };
    cr_assert_eq(ml_find_by_time(ml, ts, found, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    return r.pos;
}

ml_position find_index(ml_managed *ml, int64_t index)
{
    fres r = { 0 };
    cr_assert_eq(ml_find_by_index(ml, index, found, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK, "%s", mg_strerror(r.status));
    return r.pos;
}

/* ---- metadata and bookies ----------------------------------------------------------------- */

typedef struct mres {
    int calls;
    int status;
    Magnetar__Ledger__ManagedLedgerInfo *info;
} mres;

static void info_got(int status, const void *value, size_t len, const md_stat *stat, void *arg)
{
    (void)stat;
    mres *r = arg;
    r->calls++;
    r->status = status;
    if (status == MG_OK)
        r->info = magnetar__ledger__managed_ledger_info__unpack(NULL, len, value);
}

Magnetar__Ledger__ManagedLedgerInfo *info_get(const char *name)
{
    mres r = { 0 };
    char path[256];
    snprintf(path, sizeof(path), "/managed-ledgers/%s", name);
    cr_assert_eq(md_get(bkh_md_client(t.h), path, info_got, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    cr_assert_eq(r.status, MG_OK);
    cr_assert_not_null(r.info);
    return r.info;
}

int node_status(const char *path)
{
    mres r = { 0 };
    cr_assert_eq(md_get(bkh_md_client(t.h), path, info_got, &r), MG_OK);
    RUN_UNTIL(r.calls == 1);
    if (r.info != NULL)
        magnetar__ledger__managed_ledger_info__free_unpacked(r.info, NULL);
    return r.status;
}

int ledger_node_status(int64_t ledger_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/ledgers/%lld", (long long)ledger_id);
    return node_status(path);
}

typedef struct bres {
    int calls;
    int status;
} bres;

static void bk_read_done(int status, const bk_entry *entries, size_t count, void *arg)
{
    (void)entries;
    (void)count;
    bres *r = arg;
    r->calls++;
    r->status = status;
}

int bookie_read(int i, int64_t ledger_id, int64_t entry_id)
{
    bres r = { 0 };
    cr_assert_eq(bk_client_read(bkh_bk_client(t.h), bkh_bookie_addr(t.h, i), ledger_id, entry_id,
                                bk_read_done, &r),
                 MG_OK);
    RUN_UNTIL(r.calls == 1);
    return r.status;
}
