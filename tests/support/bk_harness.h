/*
 * Real bookies for tests: N bookie storage engines with their RPC servers, all in this process
 * and on the caller's libuv loop, plus an embedded metadata store (rocksdb:<dir>/metadata) in
 * which every running bookie is registered as the ephemeral node /bookies/127.0.0.1:<port>,
 * exactly as `magnetar bookie` registers itself. Nothing is mocked: ledgers written through
 * the harness go over loopback TCP to the real storage engine and its journal.
 *
 * Lifecycle of one bookie of the harness:
 *
 *     bkh_start --> RUNNING --bkh_kill_bookie--> KILLED --bkh_restart_bookie--> RUNNING
 *                     |  ^                          |                          (new port)
 *                     |  +--bkh_restart_bookie------+ (also from RUNNING: kill, then restart)
 *                     +------------- bkh_destroy (any state) --> gone
 *
 * KILLED: the server stopped listening and dropped every connection at once (clients see
 * MG_ECONNECTION for requests in flight and for new ones), the /bookies node is being deleted;
 * the storage stays open until a restart or bkh_destroy (no request can reach it).
 *
 * Invariants:
 *  1. Everything lives on the caller's loop; the harness never starts threads of its own (the
 *     storage engine and the metadata store have theirs).
 *  2. Every wait is bounded (BKH_WAIT_MS); a wait that times out fails the call with
 *     MG_ETIMEDOUT rather than hanging the test.
 *  3. The temporary directory is under /var/tmp (the journal and entry logs use O_DIRECT, which
 *     tmpfs refuses) and is removed by bkh_destroy.
 *
 * Process-wide: bkh_start sets SIGPIPE to SIG_IGN (a killed bookie leaves its peers writing into
 * closed sockets; they must see EPIPE, not die), as the magnetar executables do.
 *
 * Threads and reentrancy: one thread (the loop's) drives a harness. bkh_start, bkh_restart_bookie
 * and bkh_destroy run the loop until their work is done, so they must be called from outside
 * the loop's callbacks (the test's main flow). bkh_kill_bookie does not run the loop: it may be
 * called from a callback (an add completion, a timer), which is how "a bookie dies during
 * writes" is staged. The accessors never run the loop.
 */
#ifndef MG_TESTS_SUPPORT_BK_HARNESS_H
#define MG_TESTS_SUPPORT_BK_HARNESS_H

#include "bookie/bookie.h"
#include "bookie/client.h"
#include "metadata/metadata.h"

#include <uv.h>

/* Bookies of one harness: tests use 1-5, a benchmark a few more. */
#define BKH_BOOKIES_MAX 16
/* Any one wait of the harness (storage open, registration, closing): a loaded CI runner with
 * sanitizers needs well under a second for each; past this something is stuck. */
#define BKH_WAIT_MS     20000
/* Each bookie's write cache and read cache: small, so that several bookies per test process
 * stay cheap, yet larger than what a test writes between flushes. */
#define BKH_CACHE_BYTES (16u * 1024 * 1024)

typedef struct bkh bkh;

/* Creates the temporary directory, opens the metadata store rocksdb:<dir>/metadata, creates a
 * metadata client and a bookie client on loop, then starts bookie_count (1..BKH_BOOKIES_MAX)
 * bookies: each is bk_storage_open on <dir>/bookie-<i>/{journal,ledgers} plus bk_server_start on
 * 127.0.0.1, port 0, registered as ephemeral /bookies/127.0.0.1:<port>. Runs the loop until all
 * are registered. On success *out is owned by the caller (bkh_destroy). On failure nothing is
 * left running and the directory is removed. Errors: MG_EINVAL (bookie_count), MG_ESYS
 * (mkdtemp), MG_ETIMEDOUT, and the storage, server or metadata errors. */
int bkh_start(uv_loop_t *loop, int bookie_count, bkh **out);

/* The metadata store, shared by the process (create more clients on it, e.g. a second broker's
 * md_client). Owned by the harness. */
md_store *bkh_md_store(bkh *h);
/* A metadata client on the loop for the test's own use (owned by the harness). */
md_client *bkh_md_client(bkh *h);
/* A bookie client on the loop for the test's own use (owned by the harness). */
bk_client *bkh_bk_client(bkh *h);

int bkh_bookie_count(const bkh *h);
/* "127.0.0.1:<port>" of bookie i (its current port; it changes with bkh_restart_bookie). Valid
 * until the next restart of that bookie or bkh_destroy. */
const char *bkh_bookie_addr(const bkh *h, int i);
/* Bookie i's storage engine (NULL while killed and closed), e.g. to flush its write cache with
 * bk_storage_flush so that reads go to the entry logs on disk. */
bk_storage *bkh_bookie_storage(bkh *h, int i);
/* Bookie i's file I/O layer, for injecting disk faults (bk_io_fault_arm); kept across restarts. */
bk_io *bkh_bookie_io(bkh *h, int i);
/* Whether bookie i is running (not killed). */
bool bkh_bookie_running(const bkh *h, int i);

/* Kills bookie i: closes its server (connections drop at once, requests in flight on them fail
 * with MG_ECONNECTION on the clients) and starts deleting its /bookies node, without running the
 * loop (callable from a callback; the node is gone after a few loop turns). Errors: MG_EINVAL
 * (index), MG_ESTATE (already killed). */
int bkh_kill_bookie(bkh *h, int i);

/* Restarts bookie i (killing it first if it runs): waits for its server to be closed, closes
 * its storage, reopens it on the same directories (the journal is replayed), starts a server on
 * a new port and registers it again. Runs the loop (not from a callback). Errors: MG_EINVAL,
 * MG_ETIMEDOUT, the storage, server or metadata errors (the bookie is then left KILLED). */
int bkh_restart_bookie(bkh *h, int i);

/* Stops everything: the clients, the servers, the storages (flushed), the metadata store; runs
 * the loop until every handle of the harness is closed; removes the directory. Every object the
 * test created on the harness's clients or store (ledgers, extra md clients) must be closed
 * first. NULL is a no-op. */
void bkh_destroy(bkh *h);

#endif
