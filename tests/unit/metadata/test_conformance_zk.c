/* The metadata conformance suite on the ZooKeeper backend, against a real ZooKeeper server
 * (Debian's zookeeper package) started once for the whole run on a free loopback port. The
 * server's URL reaches the test processes through MG_TEST_ZK_URL; a URL already set there
 * (an operator's own server) is used as is. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/zk_harness.h"

static zkh conf_server;
static bool conf_server_started;

ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    if (getenv("MG_TEST_ZK_URL") != NULL)
        return;
    if (zkh_start(&conf_server) != 0) {
        fprintf(stderr, "test_conformance_zk: cannot start a ZooKeeper server\n");
        return; /* every test then fails in conf_url */
    }
    conf_server_started = true;
    setenv("MG_TEST_ZK_URL", zkh_url(&conf_server), 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    if (conf_server_started)
        zkh_destroy(&conf_server);
}

static int conf_url(char *buf, size_t size)
{
    const char *url = getenv("MG_TEST_ZK_URL");
    if (url == NULL)
        return -1;
    snprintf(buf, size, "%s", url);
    return 0;
}

static void conf_cleanup(void)
{
    /* The server's data directory goes with the server. */
}

#define CONF_SUITE md_conformance_zk
#include "conformance.h"
