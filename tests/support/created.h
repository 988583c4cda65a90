/*
 * The outcome of a client creation (pc_producer_create, pc_subscribe) for tests that wait for
 * it on their loop: pass a zeroed `created` as the callback's argument and run the loop until
 * `done` (mgt_run_until with mgt_flag_set). Header-only; the test links the client.
 */
#ifndef MG_TESTS_SUPPORT_CREATED_H
#define MG_TESTS_SUPPORT_CREATED_H

#include "client/client.h"

#include <stdbool.h>

typedef struct created {
    bool done;
    int status;
    void *obj; /* the producer or consumer, NULL on failure */
} created;

static inline void producer_created(int status, pc_producer *p, void *arg)
{
    created *c = arg;
    c->done = true;
    c->status = status;
    c->obj = p;
}

static inline void consumer_created(int status, pc_consumer *k, void *arg)
{
    created *c = arg;
    c->done = true;
    c->status = status;
    c->obj = k;
}

#endif
