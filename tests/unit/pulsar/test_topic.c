/*
 * Tests of topic-name parsing (src/pulsar/topic.c): the three accepted forms, partition
 * suffixes, every rejection with its exact message, partition names and managed-ledger names.
 */
#include "pulsar/wire.h"

#include "common/error.h"
#include "ledger/limits.h"
#include "pulsar/limits.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

TestSuite(pulsar_topic, .timeout = 10);

static pw_topic_name parse_ok(const char *s)
{
    pw_topic_name t;
    char err[256] = "untouched";
    int rc = pw_topic_name_parse(s, &t, err, sizeof(err));
    cr_assert_eq(rc, MG_OK, "'%s': %s", s, err);
    cr_assert_str_eq(err, "", "err is cleared on success");
    return t;
}

static void parse_fails(const char *s, const char *expected)
{
    pw_topic_name t;
    memset(&t, 0x5a, sizeof(t));
    char err[512];
    int rc = pw_topic_name_parse(s, &t, err, sizeof(err));
    cr_assert_eq(rc, MG_EINVAL, "'%s' was accepted", s);
    cr_assert_str_eq(err, expected);
    cr_assert_eq(t.tenant[0], 0x5a, "out untouched on error");
}

/* A string of n copies of c. */
static char *repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

Test(pulsar_topic, short_name)
{
    pw_topic_name t = parse_ok("my-topic");
    cr_assert_str_eq(t.domain, "persistent");
    cr_assert(t.persistent);
    cr_assert_str_eq(t.tenant, "public");
    cr_assert_str_eq(t.ns, "default");
    cr_assert_str_eq(t.local, "my-topic");
    cr_assert_eq(t.partition, -1);
    cr_assert_str_eq(t.full, "persistent://public/default/my-topic");
    cr_assert_str_eq(t.base, "persistent://public/default/my-topic");
}

Test(pulsar_topic, tenant_namespace_form)
{
    pw_topic_name t = parse_ok("acme/orders/new_order.v2");
    cr_assert_str_eq(t.domain, "persistent");
    cr_assert_str_eq(t.tenant, "acme");
    cr_assert_str_eq(t.ns, "orders");
    cr_assert_str_eq(t.local, "new_order.v2");
    cr_assert_str_eq(t.full, "persistent://acme/orders/new_order.v2");
}

Test(pulsar_topic, full_forms)
{
    pw_topic_name t = parse_ok("persistent://t1/ns1/a=b:c");
    cr_assert(t.persistent);
    cr_assert_str_eq(t.tenant, "t1");
    cr_assert_str_eq(t.ns, "ns1");
    cr_assert_str_eq(t.local, "a=b:c");
    cr_assert_str_eq(t.full, "persistent://t1/ns1/a=b:c");

    t = parse_ok("non-persistent://t1/ns1/live");
    cr_assert_not(t.persistent);
    cr_assert_str_eq(t.domain, "non-persistent");
    cr_assert_str_eq(t.full, "non-persistent://t1/ns1/live");
    cr_assert_str_eq(t.base, t.full);

    /* Parsing a full name again gives the same result. */
    pw_topic_name a = parse_ok("x/y/z-partition-4");
    pw_topic_name b = parse_ok(a.full);
    cr_assert_eq(memcmp(&a, &b, sizeof(a)), 0);
}

Test(pulsar_topic, partitions)
{
    pw_topic_name t = parse_ok("persistent://t/n/x-partition-3");
    cr_assert_eq(t.partition, 3);
    cr_assert_str_eq(t.local, "x-partition-3");
    cr_assert_str_eq(t.full, "persistent://t/n/x-partition-3");
    cr_assert_str_eq(t.base, "persistent://t/n/x");

    t = parse_ok("x-partition-0");
    cr_assert_eq(t.partition, 0);
    cr_assert_str_eq(t.base, "persistent://public/default/x");

    t = parse_ok("x-partition-65535");
    cr_assert_eq(t.partition, MG_PULSAR_TOPIC_PARTITIONS_MAX - 1);

    /* The last suffix counts. */
    t = parse_ok("a-partition-1-partition-2");
    cr_assert_eq(t.partition, 2);
    cr_assert_str_eq(t.base, "persistent://public/default/a-partition-1");

    /* Not canonical decimal: an ordinary topic whose name contains "-partition-". */
    const char *ordinary[] = { "x-partition-01", "x-partition-",   "x-partition-abc",
                               "x-partition--1", "x-partition-1a", "x-partition-partition" };
    for (size_t i = 0; i < sizeof(ordinary) / sizeof(ordinary[0]); i++) {
        t = parse_ok(ordinary[i]);
        cr_assert_eq(t.partition, -1, "%s", ordinary[i]);
        cr_assert_str_eq(t.base, t.full, "%s", ordinary[i]);
        cr_assert_str_eq(t.local, ordinary[i]);
    }
    /* "partition-3" without the leading dash is no suffix. */
    t = parse_ok("xpartition-3");
    cr_assert_eq(t.partition, -1);
}

Test(pulsar_topic, rejections)
{
    parse_fails("", "topic name is empty");
    parse_fails(NULL, "topic name is empty");
    parse_fails("a/b", "topic name 'a/b' has 2 parts (expected <topic> or "
                       "<tenant>/<namespace>/<topic>)");
    parse_fails("a/b/c/d", "topic name 'a/b/c/d' has 4 parts (expected <topic> or "
                           "<tenant>/<namespace>/<topic>)");
    parse_fails("/t", "topic name '/t' has 2 parts (expected <topic> or "
                      "<tenant>/<namespace>/<topic>)");
    parse_fails("persistent://t/n", "topic name 'persistent://t/n' has 2 parts after '://' "
                                    "(expected <tenant>/<namespace>/<topic>)");
    parse_fails("persistent://t/cluster/n/x",
                "topic name 'persistent://t/cluster/n/x' has 4 parts after '://' "
                "(expected <tenant>/<namespace>/<topic>)");
    parse_fails("persistent://x", "topic name 'persistent://x' has 1 parts after '://' "
                                  "(expected <tenant>/<namespace>/<topic>)");
    parse_fails("foo://t/n/x", "topic name 'foo://t/n/x' has an unknown domain 'foo' "
                               "(expected persistent or non-persistent)");
    parse_fails("://t/n/x", "topic name '://t/n/x' has an unknown domain '' "
                            "(expected persistent or non-persistent)");
    parse_fails("Persistent://t/n/x", "topic name 'Persistent://t/n/x' has an unknown domain "
                                      "'Persistent' (expected persistent or non-persistent)");
    parse_fails("/n/x", "topic name '/n/x' has an empty tenant");
    parse_fails("t//x", "topic name 't//x' has an empty namespace");
    parse_fails("t/n/", "topic name 't/n/' has an empty topic");
    parse_fails("persistent:///n/x", "topic name 'persistent:///n/x' has an empty tenant");
    parse_fails("persistent://t/n/", "topic name 'persistent://t/n/' has an empty topic");
    parse_fails("t/n/a%20b", "topic name 't/n/a%20b' has an invalid character '%' in its topic");
    parse_fails("my topic", "topic name 'my topic' has an invalid character ' ' in its topic");
    parse_fails("t/n s/x", "topic name 't/n s/x' has an invalid character ' ' in its namespace");
    parse_fails("t#/n/x", "topic name 't#/n/x' has an invalid character '#' in its tenant");
    parse_fails("t\x01/n/x", "topic name 't?/n/x' has an invalid character 0x01 in its tenant");
    parse_fails("t/n/caf\xc3\xa9", "topic name 't/n/caf?"
                                   "?' has an invalid character 0xc3 in its topic");
    parse_fails("-partition-3",
                "topic name '-partition-3' has an empty topic before '-partition-'");
    parse_fails("x-partition-65536",
                "topic name 'x-partition-65536' has a partition index above the limit of 65535");
    parse_fails("x-partition-99999999999999999999", "topic name 'x-partition-99999999999999999999' "
                                                    "has a partition index above the limit of "
                                                    "65535");
}

/* "." and names starting with ".." would read as directories in the paths built from them. */
Test(pulsar_topic, dot_names)
{
    parse_fails("persistent://..x/ns/t", "topic name 'persistent://..x/ns/t' has a tenant '..x': a "
                                         "name may not be '.' or start with '..'");
    parse_fails("t/../x", "topic name 't/../x' has a namespace '..': a name may not be '.' or "
                          "start with '..'");
    parse_fails("t/n/.", "topic name 't/n/.' has a topic '.': a name may not be '.' or start "
                         "with '..'");
    parse_fails("..", "topic name '..' has a topic '..': a name may not be '.' or start with '..'");
    pw_topic_name t;
    cr_assert_eq(pw_topic_name_parse(".t/n.../x..", &t, NULL, 0), MG_OK);
    cr_assert_str_eq(t.tenant, ".t");
    cr_assert_str_eq(t.ns, "n...");
    cr_assert_eq(pw_topic_name_parse("t/n/a..b", &t, NULL, 0), MG_OK);
}

Test(pulsar_topic, length_limits)
{
    char part[512], name[1024], expected[1024];

    /* Exactly at each limit is accepted. */
    snprintf(name, sizeof(name), "%s/n/x", repeat(part, 't', MG_PULSAR_TENANT_BYTES_MAX));
    pw_topic_name t = parse_ok(name);
    cr_assert_eq(strlen(t.tenant), MG_PULSAR_TENANT_BYTES_MAX);
    snprintf(name, sizeof(name), "t/%s/x", repeat(part, 'n', MG_PULSAR_NAMESPACE_BYTES_MAX));
    t = parse_ok(name);
    cr_assert_eq(strlen(t.ns), MG_PULSAR_NAMESPACE_BYTES_MAX);
    snprintf(name, sizeof(name), "t/n/%s", repeat(part, 'x', MG_PULSAR_TOPIC_LOCAL_BYTES_MAX));
    t = parse_ok(name);
    cr_assert_eq(strlen(t.local), MG_PULSAR_TOPIC_LOCAL_BYTES_MAX);

    /* The longest full name fits every array. */
    char tenant[128], ns[128], local[512];
    repeat(tenant, 't', MG_PULSAR_TENANT_BYTES_MAX);
    repeat(ns, 'n', MG_PULSAR_NAMESPACE_BYTES_MAX);
    repeat(local, 'x', MG_PULSAR_TOPIC_LOCAL_BYTES_MAX);
    snprintf(name, sizeof(name), "non-persistent://%s/%s/%s", tenant, ns, local);
    cr_assert_eq(strlen(name), MG_PULSAR_TOPIC_BYTES_MAX);
    t = parse_ok(name);
    cr_assert_str_eq(t.full, name);

    /* One past. */
    snprintf(name, sizeof(name), "%s/n/x", repeat(part, 't', MG_PULSAR_TENANT_BYTES_MAX + 1));
    snprintf(expected, sizeof(expected), "topic name '%s' has a tenant longer than 64 bytes", name);
    parse_fails(name, expected);
    snprintf(name, sizeof(name), "t/%s/x", repeat(part, 'n', MG_PULSAR_NAMESPACE_BYTES_MAX + 1));
    snprintf(expected, sizeof(expected), "topic name '%s' has a namespace longer than 64 bytes",
             name);
    parse_fails(name, expected);
    snprintf(name, sizeof(name), "t/n/%s", repeat(part, 'x', MG_PULSAR_TOPIC_LOCAL_BYTES_MAX + 1));
    snprintf(expected, sizeof(expected), "topic name '%s' has a topic longer than 255 bytes", name);
    parse_fails(name, expected);
    parse_fails(repeat(part, 'x', MG_PULSAR_TOPIC_BYTES_MAX + 1),
                "topic name is longer than 402 bytes");
}

Test(pulsar_topic, error_buffer_handling)
{
    pw_topic_name t;
    char err[12];
    cr_assert_eq(pw_topic_name_parse("a/b", &t, err, sizeof(err)), MG_EINVAL);
    cr_assert_str_eq(err, "topic name "); /* cut to the buffer, NUL-terminated */
    cr_assert_eq(pw_topic_name_parse("a/b", &t, NULL, 0), MG_EINVAL);
    cr_assert_eq(pw_topic_name_parse("ok", &t, NULL, 0), MG_OK);
}

Test(pulsar_topic, partition_name)
{
    pw_topic_name base = parse_ok("persistent://t/n/orders");
    pw_topic_name p;
    cr_assert_eq(pw_topic_partition_name(&base, 5, &p), MG_OK);
    cr_assert_eq(p.partition, 5);
    cr_assert_str_eq(p.local, "orders-partition-5");
    cr_assert_str_eq(p.full, "persistent://t/n/orders-partition-5");
    cr_assert_str_eq(p.base, "persistent://t/n/orders");
    cr_assert_str_eq(p.tenant, "t");
    /* Same as parsing the name. */
    pw_topic_name q = parse_ok(p.full);
    cr_assert_eq(memcmp(&p, &q, sizeof(p)), 0);

    cr_assert_eq(pw_topic_partition_name(&base, 0, &p), MG_OK);
    cr_assert_str_eq(p.full, "persistent://t/n/orders-partition-0");
    cr_assert_eq(pw_topic_partition_name(&base, MG_PULSAR_TOPIC_PARTITIONS_MAX - 1, &p), MG_OK);

    cr_assert_eq(pw_topic_partition_name(&base, -1, &p), MG_EINVAL);
    cr_assert_eq(pw_topic_partition_name(&base, MG_PULSAR_TOPIC_PARTITIONS_MAX, &p), MG_EINVAL);
    pw_topic_name part = parse_ok("orders-partition-2");
    cr_assert_eq(pw_topic_partition_name(&part, 1, &p), MG_EINVAL);

    /* A long base name whose suffixed form no longer fits. */
    char local[512], name[600];
    memset(local, 'x', MG_PULSAR_TOPIC_LOCAL_BYTES_MAX - 12);
    local[MG_PULSAR_TOPIC_LOCAL_BYTES_MAX - 12] = '\0';
    snprintf(name, sizeof(name), "t/n/%s", local);
    pw_topic_name longb = parse_ok(name);
    cr_assert_eq(pw_topic_partition_name(&longb, 7, &p), MG_OK); /* 12 + 1 bytes: fits */
    cr_assert_eq(strlen(p.local), MG_PULSAR_TOPIC_LOCAL_BYTES_MAX);
    cr_assert_eq(pw_topic_partition_name(&longb, 10, &p), MG_ELIMIT);
}

Test(pulsar_topic, ml_name)
{
    char dst[ML_NAME_BYTES_MAX];
    pw_topic_name t = parse_ok("persistent://acme/orders/x-partition-2");
    cr_assert_eq(pw_topic_ml_name(&t, dst, sizeof(dst)), MG_OK);
    cr_assert_str_eq(dst, "acme/orders/persistent/x-partition-2");
    t = parse_ok("y");
    cr_assert_eq(pw_topic_ml_name(&t, dst, sizeof(dst)), MG_OK);
    cr_assert_str_eq(dst, "public/default/persistent/y");
    /* Exactly enough room, and one byte short. */
    size_t need = strlen("public/default/persistent/y") + 1;
    cr_assert_eq(pw_topic_ml_name(&t, dst, need), MG_OK);
    cr_assert_eq(pw_topic_ml_name(&t, dst, need - 1), MG_ELIMIT);
    t = parse_ok("non-persistent://a/b/c");
    cr_assert_eq(pw_topic_ml_name(&t, dst, sizeof(dst)), MG_EINVAL);
}
