/*
 * The C client driven synchronously from a Criterion test: each call runs the test's loop until
 * the client answers (bounded by wait_ms, mgt_run_until) and fails the test otherwise.
 * Header-only; the test links the client and the support library (loop_wait.c).
 */
#ifndef MG_TESTS_SUPPORT_CLIENT_SYNC_H
#define MG_TESTS_SUPPORT_CLIENT_SYNC_H

#include "client/client.h"
#include "common/error.h"
#include "support/created.h"
#include "support/loop_wait.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

/* Callbacks: a flag set, a status stored into an int that starts at 1 (cs_status_known). */
static inline void cs_flag_cb(void *arg)
{
    *(bool *)arg = true;
}

static inline void cs_status_cb(int status, void *arg)
{
    *(int *)arg = status;
}

static inline bool cs_status_known(void *arg)
{
    return *(int *)arg != 1;
}

/* A client of the broker on 127.0.0.1:port, its operation timeout wait_ms. */
static inline pc_client *cs_client_open(uv_loop_t *loop, uint16_t port, int wait_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", port);
    pc_client_opts o = { .service_url = url, .operation_timeout_ms = (uint32_t)wait_ms };
    pc_client *c = NULL;
    cr_assert_eq(pc_client_create(loop, &o, &c), MG_OK);
    return c;
}

static inline void cs_client_close(uv_loop_t *loop, pc_client *c, int wait_ms)
{
    bool closed = false;
    pc_client_close(c, cs_flag_cb, &closed);
    cr_assert(mgt_run_until(loop, mgt_flag_set, &closed, wait_ms), "the client did not close");
}

static inline pc_producer *cs_producer_open(uv_loop_t *loop, pc_client *client,
                                            const pc_producer_opts *o, int wait_ms)
{
    created c = { 0 };
    cr_assert_eq(pc_producer_create(client, o, producer_created, &c), MG_OK);
    cr_assert(mgt_run_until(loop, mgt_flag_set, &c.done, wait_ms), "producer not created");
    cr_assert_eq(c.status, MG_OK, "producer: %s (%s)", mg_strerror(c.status),
                 pc_last_error(client));
    return c.obj;
}

/* Closes p and requires MG_OK. */
static inline void cs_producer_close(uv_loop_t *loop, pc_producer *p, int wait_ms)
{
    int st = 1;
    pc_producer_close(p, cs_status_cb, &st);
    cr_assert_eq(st, 1, "pc_producer_close called back inside the call");
    cr_assert(mgt_run_until(loop, cs_status_known, &st, wait_ms), "producer not closed");
    cr_assert_eq(st, MG_OK, "producer close: %s", mg_strerror(st));
}

/* Closes k and returns the status it closed with (the caller decides whether it must be MG_OK). */
static inline int cs_consumer_close(uv_loop_t *loop, pc_consumer *k, int wait_ms)
{
    int st = 1;
    pc_consumer_close(k, cs_status_cb, &st);
    cr_assert(mgt_run_until(loop, cs_status_known, &st, wait_ms), "consumer not closed");
    return st;
}

#endif
