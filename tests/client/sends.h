/*
 * The client tests' record of each pc_send: its callback's status, message id and completion
 * order, and a wait until a whole array of them completed. Shared by test_client.c and
 * test_client_proto.c, each of which includes it once (static functions, one copy per test
 * program).
 */
#ifndef MG_TESTS_CLIENT_SENDS_H
#define MG_TESTS_CLIENT_SENDS_H

#include "client/client.h"
#include "support/loop_wait.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sendrec {
    bool done;
    int status;
    int order;
    pc_message_id id;
} sendrec;

/* Completion order across all sends; a test resets it to 0 when it compares orders. */
static int g_send_order;

/* pc_send's callback; arg is the message's sendrec. */
static inline void sent_cb(int status, const pc_message_id *id, void *arg)
{
    sendrec *r = arg;
    cr_assert(!r->done, "a send callback ran twice");
    r->done = true;
    r->status = status;
    r->order = g_send_order++;
    if (id != NULL)
        r->id = *id;
}

typedef struct sends_all {
    sendrec *recs;
    size_t n;
} sends_all;

static inline bool sends_all_done(void *arg)
{
    sends_all *a = arg;
    for (size_t i = 0; i < a->n; i++)
        if (!a->recs[i].done)
            return false;
    return true;
}

/* Runs loop until recs[0, n) all completed; fails the test after timeout_ms. */
static inline void sends_wait(uv_loop_t *loop, sendrec *recs, size_t n, int timeout_ms)
{
    sends_all a = { recs, n };
    cr_assert(mgt_run_until(loop, sends_all_done, &a, timeout_ms), "sends not completed");
}

#endif
