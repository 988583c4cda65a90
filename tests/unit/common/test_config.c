/*
 * Tests for the option parser (common/config.h): precedence of defaults, config file and flags;
 * every flag form; every value type with exact values at each unit and at the 64-bit edge; the
 * exact error messages (they are the user interface); help text; argv reordering; and freeing
 * after failures (ASan in the sanitizer build catches leaks and double frees). Config files are
 * written into a fresh mkdtemp directory that each file test removes again.
 */
#include "common/config.h"
#include "common/error.h"
#include "common/limits.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(config, .timeout = 10);

/* Under ASan, LeakSanitizer reports leaks only at exit, after Criterion has already counted the
 * test as passed; asking it at the end of a test makes a leak fail that test. */
#if defined(__SANITIZE_ADDRESS__)
#define CFG_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CFG_TEST_LSAN 1
#endif
#endif
#ifdef CFG_TEST_LSAN
#include <sanitizer/lsan_interface.h>
#define EXPECT_NO_LEAKS() \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (report above)")
#else
#define EXPECT_NO_LEAKS() ((void)0)
#endif

typedef struct test_opts {
    char *name;
    char *data_dir;
    int64_t port;
    int64_t count;
    bool verbose;
    bool quiet;
    bool compress;
    int64_t cache_bytes;
    int64_t raw_bytes;
    int64_t timeout_ms;
    int64_t grace_ms;
    int64_t delay_ms;
    int log_level;
    int64_t write_cache_mb;
    int untouched; /* not an option: the parser must leave it alone */
} test_opts;

static const char *const levels[] = { "trace", "debug", "info", "warn", "error", "off", NULL };

static const mg_opt opts[] = {
    { .name = "name",
      .short_name = 'n',
      .type = MG_OPT_STRING,
      .offset = offsetof(test_opts, name),
      .default_value = "magnetar",
      .help = "cluster name" },
    { .name = "data-dir",
      .short_name = 'd',
      .type = MG_OPT_STRING,
      .offset = offsetof(test_opts, data_dir),
      .metavar = "DIR",
      .help = "where data lives" },
    { .name = "port",
      .short_name = 'p',
      .type = MG_OPT_INT,
      .offset = offsetof(test_opts, port),
      .default_value = "6650",
      .metavar = "PORT",
      .help = "Pulsar protocol port",
      .min = 1,
      .max = 65535 },
    { .name = "count",
      .short_name = 'c',
      .type = MG_OPT_INT,
      .offset = offsetof(test_opts, count),
      .help = "how many" },
    { .name = "verbose",
      .short_name = 'v',
      .type = MG_OPT_BOOL,
      .offset = offsetof(test_opts, verbose),
      .help = "say more" },
    { .name = "quiet",
      .short_name = 'q',
      .type = MG_OPT_BOOL,
      .offset = offsetof(test_opts, quiet),
      .help = "say less" },
    { .name = "compress",
      .type = MG_OPT_BOOL,
      .offset = offsetof(test_opts, compress),
      .default_value = "true",
      .help = "compress entries" },
    { .name = "cache-size",
      .short_name = 's',
      .type = MG_OPT_BYTES,
      .offset = offsetof(test_opts, cache_bytes),
      .default_value = "64MiB",
      .help = "read cache size",
      .min = INT64_C(1) << 20,
      .max = INT64_C(1) << 40 },
    { .name = "raw-bytes",
      .type = MG_OPT_BYTES,
      .offset = offsetof(test_opts, raw_bytes),
      .help = "a size without a range" },
    { .name = "timeout",
      .short_name = 't',
      .type = MG_OPT_DURATION,
      .offset = offsetof(test_opts, timeout_ms),
      .default_value = "10s",
      .help = "operation timeout",
      .min = 1,
      .max = 3600000 },
    { .name = "grace",
      .type = MG_OPT_DURATION,
      .offset = offsetof(test_opts, grace_ms),
      .default_value = "-1",
      .help = "grace, -1 = none",
      .min = -1,
      .max = 3600000 },
    { .name = "delay",
      .type = MG_OPT_DURATION,
      .offset = offsetof(test_opts, delay_ms),
      .help = "a duration without a range" },
    { .name = "log-level",
      .type = MG_OPT_ENUM,
      .offset = offsetof(test_opts, log_level),
      .default_value = "info",
      .metavar = "LEVEL",
      .help = "lowest level logged",
      .choices = levels },
    { .name = "write-cache-mb",
      .type = MG_OPT_INT,
      .offset = offsetof(test_opts, write_cache_mb),
      .default_value = "16",
      .help = "write cache in MiB",
      .min = 0,
      .max = 65536 },
};

#define OPT_COUNT (sizeof(opts) / sizeof(opts[0]))

static const mg_cmd_spec spec = {
    .name = "magnetar test",
    .usage = "[options]",
    .summary = "A subcommand used by the tests.",
    .opts = opts,
    .opt_count = OPT_COUNT,
    .positional_min = 0,
    .positional_max = 0,
};

static const mg_cmd_spec spec_topics = {
    .name = "magnetar produce",
    .usage = "[options] <topic> [<topic>]",
    .summary = "Takes one or two topics.",
    .opts = opts,
    .opt_count = OPT_COUNT,
    .positional_min = 1,
    .positional_max = 2,
};

static const mg_cmd_spec spec_any = {
    .name = "magnetar any",
    .usage = "[options] [<arg>...]",
    .summary = "Takes any number of arguments.",
    .opts = opts,
    .opt_count = OPT_COUNT,
    .positional_min = 0,
    .positional_max = -1,
};

/* Parses a NULL-terminated argv; argv[0] is the subcommand name. */
static int parse_with(const mg_cmd_spec *s, test_opts *o, mg_config_result *res, char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    memset(o, 0x5a, sizeof(*o)); /* garbage: the parser must not read or free it */
    o->untouched = 77;
    return mg_config_parse(s, o, argc, argv, res);
}

#define ARGV(...)          ((char *[]){ "magnetar test", __VA_ARGS__, NULL })
#define PARSE(o, res, ...) parse_with(&spec, (o), (res), ARGV(__VA_ARGS__))

/* Parses one flag expected to succeed and returns the options (the caller frees). */
static test_opts parse_ok(char **argv)
{
    test_opts o;
    mg_config_result res;
    int rc = parse_with(&spec, &o, &res, argv);
    cr_assert_eq(rc, MG_OK, "argv[1] '%s': rc %d: %s", argv[1], rc, res.error);
    cr_assert_str_eq(res.error, "");
    return o;
}

/* Parses argv expecting MG_EINVAL with exactly this message. */
static void expect_error(const mg_cmd_spec *s, char **argv, const char *message)
{
    test_opts o;
    mg_config_result res;
    int rc = parse_with(s, &o, &res, argv);
    cr_assert_eq(rc, MG_EINVAL, "argv[1] '%s': rc %d", argv[1], rc);
    cr_assert_str_eq(res.error, message);
    cr_assert_eq(o.untouched, 77);
    mg_config_free(s, &o);
}

Test(config, defaults_applied)
{
    test_opts o;
    mg_config_result res;
    cr_assert_eq(parse_with(&spec, &o, &res, (char *[]){ "magnetar test", NULL }), MG_OK);
    cr_assert_str_eq(o.name, "magnetar");
    cr_assert_null(o.data_dir);
    cr_assert_eq(o.port, 6650);
    cr_assert_eq(o.count, 0);
    cr_assert_eq(o.verbose, false);
    cr_assert_eq(o.quiet, false);
    cr_assert_eq(o.compress, true);
    cr_assert_eq(o.cache_bytes, 64 * 1024 * 1024);
    cr_assert_eq(o.raw_bytes, 0);
    cr_assert_eq(o.timeout_ms, 10000);
    cr_assert_eq(o.grace_ms, -1);
    cr_assert_eq(o.delay_ms, 0);
    cr_assert_eq(o.log_level, 2);
    cr_assert_eq(o.write_cache_mb, 16);
    cr_assert_eq(o.untouched, 77);
    cr_assert_eq(res.help_shown, false);
    cr_assert_eq(res.positional_count, 0);
    cr_assert_str_eq(res.error, "");
    mg_config_free(&spec, &o);
    cr_assert_null(o.name);
    mg_config_free(&spec, &o); /* twice: harmless */
    EXPECT_NO_LEAKS();
}

Test(config, long_and_short_forms)
{
    test_opts o = parse_ok(ARGV("--port=7001"));
    cr_assert_eq(o.port, 7001);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("--port", "7002"));
    cr_assert_eq(o.port, 7002);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("-p", "7003"));
    cr_assert_eq(o.port, 7003);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("-p7004"));
    cr_assert_eq(o.port, 7004);
    mg_config_free(&spec, &o);

    /* The last of repeated flags wins; strings replaced along the way are freed (ASan). */
    o = parse_ok(ARGV("--name", "a", "-n", "b", "--name=c=d", "--port", "1", "-p2"));
    cr_assert_str_eq(o.name, "c=d");
    cr_assert_eq(o.port, 2);
    mg_config_free(&spec, &o);

    /* A value-taking option takes the next argument even when it starts with '-'. */
    o = parse_ok(ARGV("--count", "-5", "-d", "--weird", "--name="));
    cr_assert_eq(o.count, -5);
    cr_assert_str_eq(o.data_dir, "--weird");
    cr_assert_str_eq(o.name, "");
    mg_config_free(&spec, &o);

    /* Grouped switches, and a value option ending a group. */
    o = parse_ok(ARGV("-vq"));
    cr_assert(o.verbose && o.quiet);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("-vp", "7005"));
    cr_assert(o.verbose);
    cr_assert_eq(o.port, 7005);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("-qvp7006"));
    cr_assert(o.verbose && o.quiet);
    cr_assert_eq(o.port, 7006);
    mg_config_free(&spec, &o);
    EXPECT_NO_LEAKS();
}

Test(config, bools)
{
    static const struct {
        const char *arg;
        bool verbose, compress;
    } cases[] = {
        { "--verbose", true, true },        { "-v", true, true },
        { "--no-compress", false, false },  { "--verbose=true", true, true },
        { "--verbose=false", false, true }, { "--verbose=1", true, true },
        { "--verbose=0", false, true },     { "--verbose=yes", true, true },
        { "--verbose=no", false, true },    { "--verbose=on", true, true },
        { "--verbose=off", false, true },   { "--verbose=TRUE", true, true },
        { "--compress=Off", false, false }, { "--no-verbose", false, true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        test_opts o = parse_ok(ARGV((char *)cases[i].arg));
        cr_assert_eq(o.verbose, cases[i].verbose, "%s", cases[i].arg);
        cr_assert_eq(o.compress, cases[i].compress, "%s", cases[i].arg);
        mg_config_free(&spec, &o);
    }
    /* A bool never takes the next argument as its value: "true" here is positional. */
    test_opts o;
    mg_config_result res;
    char **argv = ARGV("--verbose", "false"); /* outlives the assertion: res points into it */
    cr_assert_eq(parse_with(&spec_any, &o, &res, argv), MG_OK);
    cr_assert_eq(o.verbose, true);
    cr_assert_eq(res.positional_count, 1);
    cr_assert_str_eq(res.positional[0], "false");
    mg_config_free(&spec_any, &o);

    expect_error(&spec, ARGV("--verbose=maybe"),
                 "--verbose: 'maybe' is not a boolean (use true/false, yes/no, on/off or 1/0)");
    expect_error(&spec, ARGV("--verbose="),
                 "--verbose: '' is not a boolean (use true/false, yes/no, on/off or 1/0)");
    expect_error(&spec, ARGV("--no-verbose=true"), "--no-verbose takes no value");
    expect_error(&spec, ARGV("--no-port"),
                 "unknown option '--no-port': '--port' is not a switch, it takes a value "
                 "(--port PORT)");
    EXPECT_NO_LEAKS();
}

Test(config, bytes_each_suffix)
{
    static const struct {
        const char *text;
        int64_t bytes;
    } cases[] = {
        { "0", 0 },
        { "512", 512 },
        { "512B", 512 },
        { "512b", 512 },
        { "64k", 65536 },
        { "64K", 65536 },
        { "64KiB", 65536 },
        { "64kib", 65536 },
        { "64 KiB", 65536 },
        { "16M", 16777216 },
        { "16m", 16777216 },
        { "16MiB", 16777216 },
        { "2G", INT64_C(2147483648) },
        { "2GiB", INT64_C(2147483648) },
        { "3T", INT64_C(3298534883328) },
        { "3TiB", INT64_C(3298534883328) },
        { "+7", 7 },
        /* The 64-bit edge: 2^63 - 2^40 fits, 2^63 does not. */
        { "8388607T", INT64_C(9223370937343148032) },
        { "9223372036854775807", INT64_MAX },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "--raw-bytes=%s", cases[i].text);
        test_opts o = parse_ok(ARGV(arg));
        cr_assert_eq(o.raw_bytes, cases[i].bytes, "%s: got %lld", cases[i].text,
                     (long long)o.raw_bytes);
        mg_config_free(&spec, &o);
    }
    expect_error(&spec, ARGV("--raw-bytes=16MB"),
                 "--raw-bytes: '16MB' is ambiguous: write 16M or 16MiB (1024-based), or a plain "
                 "number of bytes");
    expect_error(&spec, ARGV("--raw-bytes=64kB"),
                 "--raw-bytes: '64kB' is ambiguous: write 64K or 64KiB (1024-based), or a plain "
                 "number of bytes");
    const char *not_size = "is not a byte size (a number with an optional unit: k/KiB, M/MiB, "
                           "G/GiB, T/TiB; all 1024-based)";
    const char *bad[] = { "12x", "1.5G", "G", "", "64 ", "64KiBs" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[64], want[256];
        snprintf(arg, sizeof(arg), "--raw-bytes=%s", bad[i]);
        snprintf(want, sizeof(want), "--raw-bytes: '%s' %s", bad[i], not_size);
        expect_error(&spec, ARGV(arg), want);
    }
    expect_error(&spec, ARGV("--raw-bytes=8388608T"),
                 "--raw-bytes: '8388608T' does not fit in a 64-bit integer");
    expect_error(&spec, ARGV("--raw-bytes=9223372036854775808"),
                 "--raw-bytes: '9223372036854775808' does not fit in a 64-bit integer");
    expect_error(&spec, ARGV("--raw-bytes=-1"), "--raw-bytes: '-1' must not be negative");
    /* Ranges are shown in the same units. */
    expect_error(&spec, ARGV("--cache-size=1048575"),
                 "--cache-size: '1048575' is out of range 1MiB..1TiB");
    expect_error(&spec, ARGV("-s", "2T"), "--cache-size: '2T' is out of range 1MiB..1TiB");
    test_opts o = parse_ok(ARGV("-s1TiB"));
    cr_assert_eq(o.cache_bytes, INT64_C(1) << 40);
    mg_config_free(&spec, &o);
}

Test(config, durations_each_suffix)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        { "0", 0 },
        { "250", 250 },
        { "250ms", 250 },
        { "250MS", 250 },
        { "10s", 10000 },
        { "10 s", 10000 },
        { "5m", 300000 },
        { "1h", 3600000 },
        { "2d", 172800000 },
        { "3H", 10800000 },
        { "106751991167d", INT64_C(9223372036828800000) },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char arg[64];
        snprintf(arg, sizeof(arg), "--delay=%s", cases[i].text);
        test_opts o = parse_ok(ARGV(arg));
        cr_assert_eq(o.delay_ms, cases[i].ms, "%s: got %lld", cases[i].text, (long long)o.delay_ms);
        mg_config_free(&spec, &o);
    }
    const char *not_dur = "is not a duration (a number with a unit: ms, s, m, h, d; a bare number "
                          "is milliseconds)";
    const char *bad[] = { "10x", "5 minutes", "1.5s", "s", "10us" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char arg[64], want[256];
        snprintf(arg, sizeof(arg), "--delay=%s", bad[i]);
        snprintf(want, sizeof(want), "--delay: '%s' %s", bad[i], not_dur);
        expect_error(&spec, ARGV(arg), want);
    }
    expect_error(&spec, ARGV("--delay=106751991168d"),
                 "--delay: '106751991168d' does not fit in a 64-bit integer");
    expect_error(&spec, ARGV("--delay=-5s"), "--delay: '-5s' must not be negative");
    /* A range that admits a negative value allows it. */
    test_opts o = parse_ok(ARGV("--grace=-1"));
    cr_assert_eq(o.grace_ms, -1);
    mg_config_free(&spec, &o);
    expect_error(&spec, ARGV("--grace=-2"), "--grace: '-2' is out of range -1ms..1h");
    expect_error(&spec, ARGV("-t", "0"), "--timeout: '0' is out of range 1ms..1h");
    expect_error(&spec, ARGV("-t", "61m"), "--timeout: '61m' is out of range 1ms..1h");
    o = parse_ok(ARGV("-t60m"));
    cr_assert_eq(o.timeout_ms, 3600000);
    mg_config_free(&spec, &o);
}

Test(config, ints_ranges_and_overflow)
{
    test_opts o = parse_ok(ARGV("--count=-9223372036854775808"));
    cr_assert_eq(o.count, INT64_MIN);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("--count=9223372036854775807", "--port=65535"));
    cr_assert_eq(o.count, INT64_MAX);
    cr_assert_eq(o.port, 65535);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("--port=1"));
    cr_assert_eq(o.port, 1);
    mg_config_free(&spec, &o);

    expect_error(&spec, ARGV("--port=70000"), "--port: '70000' is out of range 1..65535");
    expect_error(&spec, ARGV("-p", "0"), "--port: '0' is out of range 1..65535");
    expect_error(&spec, ARGV("--port=65536"), "--port: '65536' is out of range 1..65535");
    expect_error(&spec, ARGV("--write-cache-mb", "12x"), "--write-cache-mb: '12x' is not a number");
    expect_error(&spec, ARGV("--count="), "--count: '' is not a number");
    expect_error(&spec, ARGV("--count= 5"), "--count: ' 5' is not a number");
    expect_error(&spec, ARGV("--count=5k"), "--count: '5k' is not a number");
    expect_error(&spec, ARGV("--count=99999999999999999999"),
                 "--count: '99999999999999999999' does not fit in a 64-bit integer");
    expect_error(&spec, ARGV("--count=9223372036854775808"),
                 "--count: '9223372036854775808' does not fit in a 64-bit integer");
    expect_error(&spec, ARGV("--count=-9223372036854775809"),
                 "--count: '-9223372036854775809' does not fit in a 64-bit integer");
}

Test(config, long_values_are_cut_in_messages_and_bounded)
{
    /* A value longer than MG_CONFIG_VALUE_BYTES_MAX is refused; the message quotes only the
     * start of it. */
    char *big = malloc(MG_CONFIG_VALUE_BYTES_MAX + 16);
    cr_assert_not_null(big);
    memcpy(big, "--name=", 7);
    memset(big + 7, 'x', MG_CONFIG_VALUE_BYTES_MAX + 1);
    big[7 + MG_CONFIG_VALUE_BYTES_MAX + 1] = '\0';
    test_opts o;
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, big), MG_EINVAL);
    cr_assert(strncmp(res.error, "--name: value 'xxxx", 19) == 0, "%s", res.error);
    cr_assert_not_null(strstr(res.error, "...' is longer than 4096 bytes"), "%s", res.error);
    cr_assert_lt(strlen(res.error), 120);
    mg_config_free(&spec, &o);
    /* Exactly the limit is accepted. */
    big[7 + MG_CONFIG_VALUE_BYTES_MAX] = '\0';
    cr_assert_eq(PARSE(&o, &res, big), MG_OK, "%s", res.error);
    cr_assert_eq(strlen(o.name), MG_CONFIG_VALUE_BYTES_MAX);
    mg_config_free(&spec, &o);
    free(big);
    EXPECT_NO_LEAKS();
}

Test(config, enums)
{
    test_opts o = parse_ok(ARGV("--log-level=debug"));
    cr_assert_eq(o.log_level, 1);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("--log-level", "WARN"));
    cr_assert_eq(o.log_level, 3);
    mg_config_free(&spec, &o);
    o = parse_ok(ARGV("--log-level=off"));
    cr_assert_eq(o.log_level, 5);
    mg_config_free(&spec, &o);
    expect_error(&spec, ARGV("--log-level=loud"),
                 "--log-level: 'loud' is not one of trace, debug, info, warn, error, off");
}

Test(config, unknown_options)
{
    expect_error(&spec, ARGV("--prot", "1"), "unknown option '--prot'; did you mean '--port'?");
    expect_error(&spec, ARGV("--prt=1"), "unknown option '--prt'; did you mean '--port'?");
    expect_error(&spec, ARGV("--log_level=info"),
                 "unknown option '--log_level'; did you mean '--log-level'?");
    expect_error(&spec, ARGV("--confg", "x"), "unknown option '--confg'; did you mean '--config'?");
    expect_error(&spec, ARGV("--hlep"), "unknown option '--hlep'; did you mean '--help'?");
    expect_error(&spec, ARGV("--zzzzzz"), "unknown option '--zzzzzz' (see --help)");
    expect_error(&spec, ARGV("--=5"), "unknown option '--' (see --help)");
}

Test(config, unknown_short_and_missing_values)
{
    expect_error(&spec, ARGV("-x"), "unknown option '-x' (see --help)");
    expect_error(&spec, ARGV("-vx"), "unknown option '-x' (see --help)");
    /* A long name after one dash is refused, not read as "-c ompress". */
    expect_error(&spec, ARGV("-compress"),
                 "unknown option '-compress'; did you mean '--compress'?");
    expect_error(&spec, ARGV("-name=x"), "unknown option '-name=x'; did you mean '--name'?");
    expect_error(&spec, ARGV("-config", "x"), "unknown option '-config'; did you mean '--config'?");
    expect_error(&spec, ARGV("--port"), "--port: missing value (expected PORT)");
    expect_error(&spec, ARGV("-v", "-p"), "--port: missing value (expected PORT)");
    expect_error(&spec, ARGV("--count"), "--count: missing value (expected N)");
    expect_error(&spec, ARGV("--config"), "--config: missing value (expected FILE)");
    expect_error(&spec, ARGV("--config="), "--config: empty file name");
    expect_error(&spec, ARGV("--help=yes"), "--help takes no value");
}

Test(config, positional_counts_and_reordering)
{
    test_opts o;
    mg_config_result res;
    char *argv[] = { "magnetar produce", "a", "--port", "7000", "b", "-v", NULL };
    cr_assert_eq(parse_with(&spec_topics, &o, &res, argv), MG_OK, "%s", res.error);
    cr_assert_eq(o.port, 7000);
    cr_assert(o.verbose);
    cr_assert_eq(res.positional_count, 2);
    cr_assert_str_eq(res.positional[0], "a");
    cr_assert_str_eq(res.positional[1], "b");
    /* argv reordered: options first, in order, then the positional arguments. */
    cr_assert_str_eq(argv[0], "magnetar produce");
    cr_assert_str_eq(argv[1], "--port");
    cr_assert_str_eq(argv[2], "7000");
    cr_assert_str_eq(argv[3], "-v");
    cr_assert_eq(res.positional, &argv[4]);
    cr_assert_null(argv[6]);
    mg_config_free(&spec_topics, &o);

    /* "--" ends options; a lone "-" is positional. */
    char *argv2[] = { "magnetar produce", "-", "--", "-v", NULL };
    cr_assert_eq(parse_with(&spec_topics, &o, &res, argv2), MG_OK, "%s", res.error);
    cr_assert_eq(o.verbose, false);
    cr_assert_eq(res.positional_count, 2);
    cr_assert_str_eq(res.positional[0], "-");
    cr_assert_str_eq(res.positional[1], "-v");
    mg_config_free(&spec_topics, &o);

    /* Unbounded. */
    char *argv3[] = { "magnetar any", "1", "2", "3", "4", "5", NULL };
    cr_assert_eq(parse_with(&spec_any, &o, &res, argv3), MG_OK, "%s", res.error);
    cr_assert_eq(res.positional_count, 5);
    cr_assert_str_eq(res.positional[4], "5");
    mg_config_free(&spec_any, &o);

    expect_error(&spec_topics, ARGV("-v"),
                 "too few arguments: expected at least 1, got 0 (usage: magnetar produce "
                 "[options] <topic> [<topic>])");
    expect_error(&spec_topics, ARGV("a", "b", "c", "d"),
                 "too many arguments: expected at most 2, got 4, from 'c' on (usage: magnetar "
                 "produce [options] <topic> [<topic>])");
    expect_error(&spec, ARGV("stray"),
                 "unexpected argument 'stray' (usage: magnetar test [options])");
    expect_error(&spec, ARGV("stray", "two"),
                 "unexpected arguments 'stray'... (usage: magnetar test [options])");

    /* argv is left alone when the parse fails. */
    char *argv4[] = { "magnetar produce", "a", "--port", "0", NULL };
    cr_assert_eq(parse_with(&spec_topics, &o, &res, argv4), MG_EINVAL);
    cr_assert_str_eq(argv4[1], "a");
    cr_assert_str_eq(argv4[2], "--port");
    mg_config_free(&spec_topics, &o);
    EXPECT_NO_LEAKS();
}

Test(config, free_after_failed_parse)
{
    /* Strings set by defaults and flags, then a failure: free must release them all once. */
    test_opts o;
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, "--name", "x", "--data-dir", "y", "--port", "0"), MG_EINVAL);
    cr_assert_str_eq(o.name, "x");
    cr_assert_str_eq(o.data_dir, "y");
    mg_config_free(&spec, &o);
    cr_assert_null(o.name);
    cr_assert_null(o.data_dir);
    mg_config_free(&spec, &o);
    /* A failure in the argv scan, before any flag is applied. */
    cr_assert_eq(PARSE(&o, &res, "--data-dir", "y", "--nope"), MG_EINVAL);
    cr_assert_str_eq(o.name, "magnetar");
    cr_assert_null(o.data_dir);
    mg_config_free(&spec, &o);
    EXPECT_NO_LEAKS();
}

/* ---- format_value ---------------------------------------------------------------------- */

static const mg_opt *find_opt(const char *name)
{
    for (size_t i = 0; i < OPT_COUNT; i++) {
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    }
    cr_assert_fail("no option %s", name);
    return NULL;
}

static void expect_format(const test_opts *o, const char *name, const char *want)
{
    char buf[128];
    cr_assert_eq(mg_config_format_value(find_opt(name), o, buf, sizeof(buf)), MG_OK);
    cr_assert_str_eq(buf, want, "%s", name);
}

Test(config, format_value_round_trips)
{
    test_opts o = parse_ok(ARGV("--delay=90000", "--raw-bytes=1000", "--grace=-1"));
    expect_format(&o, "name", "magnetar");
    expect_format(&o, "data-dir", "");
    expect_format(&o, "port", "6650");
    expect_format(&o, "compress", "true");
    expect_format(&o, "verbose", "false");
    expect_format(&o, "cache-size", "64MiB");
    expect_format(&o, "raw-bytes", "1000");
    expect_format(&o, "timeout", "10s");
    expect_format(&o, "delay", "90s");
    expect_format(&o, "grace", "-1ms");
    expect_format(&o, "log-level", "info");
    o.delay_ms = 1500;
    expect_format(&o, "delay", "1500ms");
    o.delay_ms = 0;
    expect_format(&o, "delay", "0ms");
    o.delay_ms = 2 * 86400000;
    expect_format(&o, "delay", "2d");
    o.raw_bytes = INT64_C(3) << 40;
    expect_format(&o, "raw-bytes", "3TiB");
    o.raw_bytes = 1536;
    expect_format(&o, "raw-bytes", "1536"); /* 1.5 KiB: no exact unit */
    mg_config_free(&spec, &o);

    /* Every formatted value parses back to itself. */
    test_opts a = parse_ok(ARGV("--count=-42", "--raw-bytes=1536", "--delay=61s", "-s", "3G",
                                "--log-level=error", "--verbose", "-d", "/var/lib/x"));
    for (size_t i = 0; i < OPT_COUNT; i++) {
        char text[128], arg[160];
        cr_assert_eq(mg_config_format_value(&opts[i], &a, text, sizeof(text)), MG_OK);
        snprintf(arg, sizeof(arg), "--%s=%s", opts[i].name, text);
        test_opts b = parse_ok(ARGV(arg));
        char again[128];
        cr_assert_eq(mg_config_format_value(&opts[i], &b, again, sizeof(again)), MG_OK);
        cr_assert_str_eq(again, text, "%s", opts[i].name);
        mg_config_free(&spec, &b);
    }
    mg_config_free(&spec, &a);

    /* A buffer that is too small: cut, terminated, MG_ELIMIT. */
    test_opts c = parse_ok(ARGV("--name=abcdefgh"));
    char small[4];
    cr_assert_eq(mg_config_format_value(find_opt("name"), &c, small, sizeof(small)), MG_ELIMIT);
    cr_assert_str_eq(small, "abc");
    cr_assert_eq(mg_config_format_value(find_opt("cache-size"), &c, small, sizeof(small)),
                 MG_ELIMIT);
    cr_assert_str_eq(small, "64M");
    mg_config_free(&spec, &c);
    EXPECT_NO_LEAKS();
}

/* ---- help -------------------------------------------------------------------------------- */

static char *help_text(const mg_cmd_spec *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    mg_config_print_help(s, f);
    cr_assert_eq(fclose(f), 0);
    return text;
}

/* The column at which the help text of the entry whose line contains flag starts. */
static size_t text_column(const char *help, const char *flag, const char *text_start)
{
    const char *at = strstr(help, flag);
    cr_assert_not_null(at, "%s", flag);
    const char *line_start = at;
    while (line_start > help && line_start[-1] != '\n')
        line_start--;
    const char *t = strstr(at, text_start);
    cr_assert_not_null(t, "%s", text_start);
    const char *eol = strchr(at, '\n');
    cr_assert(t < eol, "%s: text not on the same line", flag);
    return (size_t)(t - line_start);
}

Test(config, help_lists_every_option_with_defaults)
{
    char *h = help_text(&spec);
    const char *start = "Usage: magnetar test [options]\n\nA subcommand used by the tests.\n\n"
                        "Options:\n";
    cr_assert(strncmp(h, start, strlen(start)) == 0, "%s", h);
    const char *must[] = {
        "  -n, --name VALUE",
        "cluster name (default: magnetar)",
        "  -d, --data-dir DIR",
        "where data lives\n",
        "  -p, --port PORT",
        "Pulsar protocol port (range: 1..65535; default: 6650)",
        "  -c, --count N",
        "  -v, --[no-]verbose",
        "      --[no-]compress",
        "compress entries (default: true)",
        "  -s, --cache-size SIZE",
        "read cache size (range: 1MiB..1TiB; default: 64MiB)",
        "      --raw-bytes SIZE",
        "  -t, --timeout DURATION",
        "operation timeout (range: 1ms..1h; default: 10s)",
        "grace, -1 = none (range: -1ms..1h; default: -1ms)",
        "      --log-level LEVEL",
        "lowest level logged (one of: trace, debug, info,\n", /* wrapped */
        "warn, error, off; default: info)\n",
        "write cache in MiB (range: 0..65536; default: 16)",
        "      --config FILE",
        "  -h, --help",
        "show this help and exit\n",
    };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        cr_assert_not_null(strstr(h, must[i]), "missing '%s' in:\n%s", must[i], h);

    /* The text column is aligned across entries, and no line is wider than 79 columns. */
    size_t col = text_column(h, "--port PORT", "Pulsar");
    cr_assert_eq(col, strlen("  -t, --timeout DURATION") + 2, "\n%s", h); /* the widest */
    cr_assert_eq(text_column(h, "--config FILE", "read options"), col, "\n%s", h);
    cr_assert_eq(text_column(h, "--help", "show this"), col, "\n%s", h);
    cr_assert_eq(text_column(h, "--[no-]compress", "compress entries"), col, "\n%s", h);
    for (const char *line = h; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        cr_assert_not_null(eol);
        cr_assert_leq((size_t)(eol - line), 79, "line too long: %.*s", (int)(eol - line), line);
        line = eol + 1;
    }
    /* The wrapped enum entry continues at the text column. */
    const char *lv = strstr(h, "lowest level logged");
    const char *nl = strchr(lv, '\n');
    for (size_t i = 0; i < col; i++)
        cr_assert_eq(nl[1 + i], ' ', "\n%s", h);
    cr_assert_neq(nl[1 + col], ' ', "\n%s", h);
    free(h);
}

static const mg_opt long_opt[] = {
    { .name = "a-rather-long-option-name-for-help",
      .type = MG_OPT_STRING,
      .offset = 0,
      .metavar = "SOMETHING",
      .help = "goes on the next line" },
};

Test(config, help_puts_text_of_wide_flags_on_next_line)
{
    const mg_cmd_spec s = { .name = "magnetar wide",
                            .usage = "",
                            .summary = "Wide.",
                            .opts = long_opt,
                            .opt_count = 1,
                            .positional_max = -1 };
    char *h = help_text(&s);
    cr_assert_not_null(strstr(h, "Usage: magnetar wide\n"), "%s", h);
    /* The column is set by the widest flag that fits, "      --config FILE". */
    char want[256];
    snprintf(want, sizeof(want),
             "      --a-rather-long-option-name-for-help SOMETHING\n%*sgoes on the next line\n",
             (int)strlen("      --config FILE") + 2, "");
    cr_assert_not_null(strstr(h, want), "%s", h);
    cr_assert_not_null(strstr(h, "\n      --config FILE  read options"), "%s", h);
    free(h);
}

static char *expected_help;

static void redirect_and_render(void)
{
    expected_help = help_text(&spec_topics);
    cr_redirect_stdout();
}

Test(config, help_flag_prints_help_and_sets_help_shown, .init = redirect_and_render)
{
    /* Help wins over missing positional arguments, later bad values and a missing file. */
    test_opts o;
    mg_config_result res;
    cr_assert_eq(parse_with(&spec_topics, &o, &res,
                            ARGV("-v", "--help", "--port=0", "--config=/nonexistent/x.conf")),
                 MG_OK);
    cr_assert(res.help_shown);
    cr_assert_eq(res.positional_count, 0);
    cr_assert_str_eq(res.error, "");
    cr_assert_str_eq(o.name, "magnetar"); /* defaults applied, nothing else */
    cr_assert_eq(o.verbose, false);
    mg_config_free(&spec_topics, &o);
    fflush(stdout);
    cr_assert_stdout_eq_str(expected_help);
    free(expected_help);
}

Test(config, short_help_in_a_group, .init = cr_redirect_stdout)
{
    test_opts o;
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, "-vh"), MG_OK);
    cr_assert(res.help_shown);
    mg_config_free(&spec, &o);
    cr_assert_eq(PARSE(&o, &res, "-h"), MG_OK);
    cr_assert(res.help_shown);
    mg_config_free(&spec, &o);
    /* An error before --help is still reported. */
    cr_assert_eq(PARSE(&o, &res, "--nope", "--help"), MG_EINVAL);
    cr_assert_eq(res.help_shown, false);
    mg_config_free(&spec, &o);
}

static const mg_opt bad_default_opt[] = {
    { .name = "port",
      .type = MG_OPT_INT,
      .offset = offsetof(test_opts, port),
      .default_value = "70000",
      .help = "bad default",
      .min = 1,
      .max = 65535 },
};

Test(config, bad_default_is_a_programmer_error, .signal = SIGABRT, .init = cr_redirect_stderr)
{
    const mg_cmd_spec s = {
        .name = "magnetar bad",
        .usage = "",
        .summary = "Bad.",
        .opts = bad_default_opt,
        .opt_count = 1,
    };
    test_opts o;
    mg_config_result res;
    parse_with(&s, &o, &res, ARGV("-v"));
}

/* ---- config files ------------------------------------------------------------------------ */

static char tmp_dir[64];

static void make_tmp_dir(void)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mg_config_test.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmp_dir, e->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    closedir(d);
    rmdir(tmp_dir);
}

TestSuite(config_file, .timeout = 10, .init = make_tmp_dir, .fini = remove_tmp_dir);

/* Writes len bytes into tmp_dir/name; returns the path in a static buffer (one per slot). */
static const char *write_file(const char *name, const char *data, size_t len)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 256, "%s/%s", tmp_dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

static void expect_file_error(const char *path, const char *message_after_path)
{
    char want[1024];
    snprintf(want, sizeof(want), "config file %s%s", path, message_after_path);
    char arg[512];
    snprintf(arg, sizeof(arg), "--config=%s", path);
    expect_error(&spec, ARGV(arg), want);
}

static const char *const sample_conf = "\xEF\xBB\xBF# Magnetar test config\n"
                                       "\n"
                                       "   # indented comment\n"
                                       "port = 6000\n"
                                       "name=from-file # not a comment\r\n"
                                       "\tdata_dir\t=\t/srv/magnetar  \n"
                                       "write_cache_mb=32\n"
                                       "verbose = yes\n"
                                       "compress=off\n"
                                       "cache-size = 128 MiB\n"
                                       "timeout=30s\n"
                                       "log-level=DEBUG"; /* no final newline */

Test(config_file, overrides_defaults)
{
    const char *path = write_text("m.conf", sample_conf);
    test_opts o;
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, "--config", (char *)path), MG_OK, "%s", res.error);
    cr_assert_eq(o.port, 6000);
    cr_assert_str_eq(o.name, "from-file # not a comment");
    cr_assert_str_eq(o.data_dir, "/srv/magnetar");
    cr_assert_eq(o.write_cache_mb, 32);
    cr_assert_eq(o.verbose, true);
    cr_assert_eq(o.compress, false);
    cr_assert_eq(o.cache_bytes, INT64_C(128) << 20);
    cr_assert_eq(o.timeout_ms, 30000);
    cr_assert_eq(o.log_level, 1);
    cr_assert_eq(o.count, 0);     /* not in the file: default */
    cr_assert_eq(o.grace_ms, -1); /* not in the file: default */
    mg_config_free(&spec, &o);
    EXPECT_NO_LEAKS();
}

Test(config_file, flags_override_file_wherever_config_appears)
{
    const char *path = write_text("m.conf", sample_conf);
    char arg[512];
    snprintf(arg, sizeof(arg), "--config=%s", path);
    char **argvs[] = {
        ARGV("--port", "7000", "--name=flag", "--compress", (char *)arg),
        ARGV((char *)arg, "--port", "7000", "--name=flag", "--compress"),
        ARGV("--port", "7000", "--config", (char *)path, "--name=flag", "--compress"),
    };
    for (size_t i = 0; i < 3; i++) {
        test_opts o;
        mg_config_result res;
        cr_assert_eq(parse_with(&spec, &o, &res, argvs[i]), MG_OK, "%s", res.error);
        cr_assert_eq(o.port, 7000, "order %zu", i);
        cr_assert_str_eq(o.name, "flag");
        cr_assert_eq(o.compress, true);
        cr_assert_str_eq(o.data_dir, "/srv/magnetar"); /* from the file */
        cr_assert_eq(o.write_cache_mb, 32);
        mg_config_free(&spec, &o);
    }
    EXPECT_NO_LEAKS();
}

Test(config_file, empty_file_and_empty_values)
{
    const char *path = write_text("empty.conf", "");
    test_opts o = parse_ok(ARGV("--config", (char *)path));
    cr_assert_eq(o.port, 6650);
    mg_config_free(&spec, &o);
    path = write_text("e.conf", "name=\ndata-dir =   \n");
    o = parse_ok(ARGV("--config", (char *)path));
    cr_assert_str_eq(o.name, "");
    cr_assert_str_eq(o.data_dir, "");
    mg_config_free(&spec, &o);
}

Test(config_file, unknown_key_names_file_and_line)
{
    const char *path = write_text("u.conf", "# c\nport=1\nprot=2\n");
    expect_file_error(path, " line 3: unknown option 'prot'; did you mean 'port'?");
    path = write_text("u2.conf", "\n\n\n\nzzzzzz = 1\n");
    expect_file_error(path, " line 5: unknown option 'zzzzzz'");
}

Test(config_file, bad_lines)
{
    expect_file_error(write_text("a.conf", "port=1\njust words\n"),
                      " line 2: expected key=value, got 'just words'");
    expect_file_error(write_text("b.conf", " = 5\n"), " line 1: missing key before '='");
    expect_file_error(write_text("c.conf", "port=1\nport = 2\n"),
                      " line 2: 'port' is already set on line 1");
    expect_file_error(write_text("d.conf", "write-cache-mb=1\nwrite_cache_mb=2\n"),
                      " line 2: 'write_cache_mb' is already set on line 1");
    expect_file_error(write_text("e.conf", "\nport=70000\n"),
                      " line 2: port: '70000' is out of range 1..65535");
    expect_file_error(write_text("f.conf", "log_level = loud\n"),
                      " line 1: log_level: 'loud' is not one of trace, debug, info, warn, "
                      "error, off");
    expect_file_error(write_text("g.conf", "count=99999999999999999999\n"),
                      " line 1: count: '99999999999999999999' does not fit in a 64-bit integer");
    expect_file_error(write_text("h.conf", "config=/etc/other.conf\n"),
                      " line 1: 'config' can only be given on the command line");
    expect_file_error(write_text("i.conf", "port=1\n\xC3\x28=1\n"), " line 2: is not valid UTF-8");
    static const char with_nul[] = "port=1\nname=a\0b\n";
    expect_file_error(write_file("j.conf", with_nul, sizeof(with_nul) - 1),
                      " line 2: contains a NUL byte (not a text file?)");
    /* Valid multibyte UTF-8 is fine in values. */
    test_opts o = parse_ok(ARGV("--config", (char *)write_text("k.conf", "name=Zürich ☃\n")));
    cr_assert_str_eq(o.name, "Zürich ☃");
    mg_config_free(&spec, &o);
    EXPECT_NO_LEAKS();
}

Test(config_file, limits)
{
    /* A line of MG_CONFIG_LINE_BYTES_MAX bytes is read; one byte more is refused. */
    size_t n = MG_CONFIG_LINE_BYTES_MAX;
    char *data = malloc(n + 2);
    cr_assert_not_null(data);
    memset(data, '#', n);
    data[n] = '\n';
    test_opts o = parse_ok(ARGV("--config", (char *)write_file("ok.conf", data, n + 1)));
    mg_config_free(&spec, &o);
    memset(data, '#', n + 1);
    data[n + 1] = '\n';
    char want[128];
    snprintf(want, sizeof(want), " line 1: line is longer than %d bytes", MG_CONFIG_LINE_BYTES_MAX);
    expect_file_error(write_file("long.conf", data, n + 2), want);
    free(data);

    /* A value over MG_CONFIG_VALUE_BYTES_MAX on a line within the line limit. */
    size_t vlen = MG_CONFIG_VALUE_BYTES_MAX + 1;
    char *line = malloc(vlen + 8);
    cr_assert_not_null(line);
    memcpy(line, "name=", 5);
    memset(line + 5, 'v', vlen);
    line[5 + vlen] = '\n';
    const char *path = write_file("v.conf", line, 5 + vlen + 1);
    char arg[512];
    snprintf(arg, sizeof(arg), "--config=%s", path);
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, arg), MG_EINVAL);
    cr_assert_not_null(strstr(res.error, " line 1: name: value 'vvvv"), "%s", res.error);
    cr_assert_not_null(strstr(res.error, "...' is longer than 4096 bytes"), "%s", res.error);
    mg_config_free(&spec, &o);
    free(line);

    /* A key over MG_CONFIG_KEY_BYTES_MAX. */
    char key[MG_CONFIG_KEY_BYTES_MAX + 8];
    memset(key, 'k', MG_CONFIG_KEY_BYTES_MAX + 1);
    memcpy(key + MG_CONFIG_KEY_BYTES_MAX + 1, "=1\n", 4);
    snprintf(want, sizeof(want), " line 1: key '%.48s...' is longer than %d bytes", key,
             MG_CONFIG_KEY_BYTES_MAX);
    expect_file_error(write_text("k.conf", key), want);

    /* A file over MG_CONFIG_FILE_BYTES_MAX, made of short comment lines. */
    size_t big = MG_CONFIG_FILE_BYTES_MAX + 1;
    char *file = malloc(big);
    cr_assert_not_null(file);
    for (size_t i = 0; i < big; i++)
        file[i] = (i % 64 == 63) ? '\n' : '#';
    snprintf(want, sizeof(want), ": larger than %d bytes", MG_CONFIG_FILE_BYTES_MAX);
    expect_file_error(write_file("big.conf", file, big), want);
    /* Exactly the limit is read. */
    o = parse_ok(ARGV("--config", (char *)write_file("max.conf", file, big - 1)));
    mg_config_free(&spec, &o);
    free(file);
    EXPECT_NO_LEAKS();
}

Test(config_file, missing_unreadable_and_twice)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmp_dir);
    expect_file_error(path, ": cannot open: No such file or directory");
    expect_file_error(tmp_dir, ": cannot read: Is a directory");
    const char *p = write_text("a.conf", "port=1\n");
    expect_error(&spec, ARGV("--config", (char *)p, "--config", (char *)p),
                 "--config: given more than once");
}

Test(config_file, free_after_failure_in_file)
{
    /* Strings from the defaults and from earlier lines, then a bad line. */
    const char *path = write_text("f.conf", "name=one\ndata-dir=two\nport=0\n");
    test_opts o;
    mg_config_result res;
    cr_assert_eq(PARSE(&o, &res, "--config", (char *)path), MG_EINVAL);
    cr_assert_str_eq(o.name, "one");
    cr_assert_str_eq(o.data_dir, "two");
    mg_config_free(&spec, &o);
    cr_assert_null(o.name);
    EXPECT_NO_LEAKS();
}
