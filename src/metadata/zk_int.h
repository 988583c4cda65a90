/*
 * Test hooks of the ZooKeeper backend (zk.c). Only tests include this header; production code
 * never calls these functions.
 */
#ifndef MG_METADATA_ZK_INT_H
#define MG_METADATA_ZK_INT_H

#include "metadata/metadata.h"

/* Makes the ZooKeeper server expire the store's current session, the way a long network
 * partition would: a second handle takes the session over with the same id and password and
 * closes it, which ends the session on the server (its ephemeral nodes go, other sessions'
 * watches on them fire). The store then sees the expiry, reports MD_SESSION_EXPIRED (every
 * outstanding watch fires MD_EVENT_WATCH_LOST) and opens a new session by itself.
 *
 * Blocks until the store has reported the expiry (not until the new session is up); retries if
 * the store won the session back in between. Call from a test's thread, never from a loop that
 * must keep running meanwhile (the loop's callbacks are only queued while this blocks).
 * Errors: MG_EINVAL (not a zk store), MG_ESTATE (no connected session within the wait),
 * MG_ETIMEDOUT (the server did not expire it), MG_ENOMEM. */
int md_zk_expire_session_for_test(md_store *store);

#endif
