/*
 * What the managed-ledger suites (test_managed_*.c) share: their environment (support/ml_harness
 * with metrics: one loop in the test thread, real bookies, the real embedded metadata store),
 * opening and closing managed ledgers, numbered message batches added and read back byte for
 * byte, finds, and the stored metadata (the ledger list, ledger nodes, bookie reads).
 *
 * Every helper runs the loop of t until its callback came, bounded by WAIT_NS_MAX, and fails the
 * test (Criterion assertions) on anything unexpected; call them from the test's main flow.
 */
#ifndef MG_TESTS_UNIT_LEDGER_MANAGED_UTIL_H
#define MG_TESTS_UNIT_LEDGER_MANAGED_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "common/error.h"
#include "common/metrics.h"
#include "ledger/ledger.h"
#include "proto/ledger.pb-c.h"
#include "support/bk_harness.h"
#include "support/ml_harness.h"

#define WAIT_NS_MAX (20ull * 1000 * 1000 * 1000)

#define RUN_UNTIL(cond) MLH_RUN_UNTIL(&t.loop, cond, WAIT_NS_MAX)

#define NAME "tenant/ns/persistent/topic"

/* ---- environment -------------------------------------------------------------------------- */

/* The running test's environment (setup_env to teardown_env). */
extern mlh t;

/* bookies bookies, ledgers of ensemble e, write quorum w, ack quorum a; pending_max adds per
 * ledger at most (0: the default). */
void setup_env(int bookies, int e, int w, int a, uint32_t pending_max);
void teardown_env(void);
uint64_t counter(const char *name);
/* A done callback for the harness's clients: sets the bool arg points to. */
void set_flag(void *arg);

/* ---- managed ledgers ---------------------------------------------------------------------- */

typedef struct ores {
    int calls;
    int status;
    ml_managed *ml;
} ores;

void opened(int status, ml_managed *ml, void *arg);
/* Opens name on env; the open's outcome must be expect (no managed ledger unless MG_OK). */
ml_managed *open_ml(ml_env *env, const char *name, const ml_config *cfg, int expect);

typedef struct dres {
    int calls;
    int status;
} dres;

void done_cb(int status, void *arg);
/* Closes ml (never calling back inside the call); returns the close's status. */
int close_ml(ml_managed *ml);

/* A second metadata client and bookie client on t's loop and store (a second broker's), and
 * their closing. */
void second_clients(md_client **md, bk_client **bk);
void second_clients_close(md_client *md, bk_client *bk);

/* ---- message batches ---------------------------------------------------------------------- */

/* The payload of message batch k and its message count. */
size_t payload_len(int64_t k);
void payload_fill(int64_t k, uint8_t *dst);
int32_t batch_messages(int64_t k);
/* Messages in batches [0, k). */
int64_t messages_before(int64_t k);

#define ADDS_MAX 512

/* Adds and what they got, indexed by batch number k. */
typedef struct adds {
    int64_t issued;
    int64_t done;
    int64_t ok;
    int first_error;
    bool disorder;
    int64_t next_cb; /* callbacks must come in call order */
    ml_position pos[ADDS_MAX];
    int64_t index[ADDS_MAX];
    int status[ADDS_MAX];
    struct slot {
        struct adds *a;
        int64_t k;
    } slots[ADDS_MAX];
} adds;

void add_done(int status, ml_position pos, int64_t index, void *arg);
/* Issues batch k (the next one) without waiting; returns ml_add's result. */
int add_one(ml_managed *ml, adds *a);
/* Adds count batches, up to window in flight, and waits for them all. */
void add_many(ml_managed *ml, adds *a, int64_t count, int window);

/* Opens NAME with cfg (entries_per_ledger_max set to 5) and adds 17 batches one at a time:
 * L0..L2 closed with 5 entries, L3 current with 2. */
void retention_fixture(ml_config *cfg, ml_managed **out, adds *a);

/* ---- reads -------------------------------------------------------------------------------- */

#define READ_MAX 512

typedef struct rres {
    int calls;
    int status;
    size_t count;
    ml_position pos[READ_MAX];
    int64_t ts[READ_MAX];
    int64_t index[READ_MAX];
    size_t len[READ_MAX];
    size_t stored[READ_MAX];    /* the whole stored entry, prefix included */
    uint8_t *payload[READ_MAX]; /* copies */
    bool prefix_ok;
} rres;

void rres_free(rres *r);
void read_done(int status, const ml_entry *entries, size_t count, void *arg);
/* Reads from from (never calling back inside the call) into r, overwritten. */
void read_ml(ml_managed *ml, ml_position from, int max_entries, uint32_t max_bytes, rres *r);
/* Checks that read entry i is batch k as added. */
void check_entry(const rres *r, size_t i, const adds *a, int64_t k);
/* ml_find_by_time and ml_find_by_index, which must succeed. */
ml_position find_time(ml_managed *ml, int64_t ts);
ml_position find_index(ml_managed *ml, int64_t index);

/* ---- metadata and bookies ----------------------------------------------------------------- */

/* The stored list of name (free with magnetar__ledger__managed_ledger_info__free_unpacked). */
Magnetar__Ledger__ManagedLedgerInfo *info_get(const char *name);
/* md_get's status for path, and for /ledgers/<ledger_id>. */
int node_status(const char *path);
int ledger_node_status(int64_t ledger_id);
/* The status of a read of ledger_id:entry_id straight from bookie i. */
int bookie_read(int i, int64_t ledger_id, int64_t entry_id);

#endif
