/*
 * Fuzz target config: the configuration a `magnetar` subcommand reads (common/config.h), through
 * mg_config_parse as main() calls it, with a table holding every option type (string, int with
 * and without a range, bool, bytes, duration with a negative range, enum) and short names.
 * The first input byte chooses what the rest is:
 *   even: a config file's contents, given as `--config FILE` (FILE is a memfd reached through
 *         /proc/self/fd, so nothing touches the disk);
 *   odd:  the command line, arguments separated by NUL bytes (at most ARGS_MAX).
 *
 * Checks beyond "no crash, no sanitizer report": after a successful parse, every option's value
 * formatted by mg_config_format_value parses back (as `--name=value`) to the same value, which
 * the effective-configuration log line promises; mg_config_free leaves no string behind (ASan's
 * leak check).
 */
#include "common/config.h"
#include "common/error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Command-line arguments taken from one input at most (bounds argv). */
#define ARGS_MAX 64

typedef struct fz_opts {
    char *name;
    char *path;
    int64_t port;
    int64_t offset;
    bool verbose;
    bool quiet;
    int64_t cache_bytes;
    int64_t limit_bytes;
    int64_t timeout_ms;
    int64_t skew_ms;
    int mode;
} fz_opts;

static const char *const fz_modes[] = { "fast", "safe", "off", NULL };

static const mg_opt fz_opt_table[] = {
    { "name", 'n', MG_OPT_STRING, offsetof(fz_opts, name), "magnetar", NULL, "a name", 0, 0, NULL },
    { "data-dir", 0, MG_OPT_STRING, offsetof(fz_opts, path), NULL, "DIR", "a path", 0, 0, NULL },
    { "port", 'p', MG_OPT_INT, offsetof(fz_opts, port), "6650", NULL, "a port", 1, 65535, NULL },
    { "offset", 'o', MG_OPT_INT, offsetof(fz_opts, offset), "0", NULL, "any integer", 0, 0, NULL },
    { "verbose", 'v', MG_OPT_BOOL, offsetof(fz_opts, verbose), "false", NULL, "a switch", 0, 0,
      NULL },
    { "quiet", 'q', MG_OPT_BOOL, offsetof(fz_opts, quiet), NULL, NULL, "a switch", 0, 0, NULL },
    { "cache-size", 'c', MG_OPT_BYTES, offsetof(fz_opts, cache_bytes), "64MiB", NULL,
      "a size in a range", 0, (int64_t)1 << 40, NULL },
    { "limit", 0, MG_OPT_BYTES, offsetof(fz_opts, limit_bytes), "0", NULL, "any size", 0, 0, NULL },
    { "timeout", 't', MG_OPT_DURATION, offsetof(fz_opts, timeout_ms), "10s", NULL, "a duration", 0,
      0, NULL },
    { "skew", 0, MG_OPT_DURATION, offsetof(fz_opts, skew_ms), "0ms", NULL,
      "a duration that may be negative", -86400000, 86400000, NULL },
    { "mode", 'm', MG_OPT_ENUM, offsetof(fz_opts, mode), "fast", NULL, "a choice", 0, 0, fz_modes },
};

static const mg_cmd_spec fz_spec = {
    .name = "magnetar fuzz",
    .usage = "[options] [args...]",
    .summary = "Every option type, for the config fuzz target.",
    .opts = fz_opt_table,
    .opt_count = sizeof(fz_opt_table) / sizeof(fz_opt_table[0]),
    .positional_min = 0,
    .positional_max = -1,
};

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "config: invariant broken: %s\n", what);
        abort();
    }
}

static int config_fd = -1;

/* Formats every value of a and parses the texts back: the result must equal a. */
static void roundtrip(const fz_opts *a)
{
    enum { N = sizeof(fz_opt_table) / sizeof(fz_opt_table[0]) };
    char *args[N + 1];
    args[0] = (char *)"fuzz";
    for (size_t i = 0; i < N; i++) {
        const mg_opt *o = &fz_opt_table[i];
        char value[4200];
        int rc = mg_config_format_value(o, a, value, sizeof(value));
        check(rc == MG_OK, "a parsed value does not format");
        size_t len = strlen(o->name) + strlen(value) + 4;
        args[i + 1] = malloc(len);
        check(args[i + 1] != NULL, "out of memory");
        snprintf(args[i + 1], len, "--%s=%s", o->name, value);
    }
    fz_opts b;
    mg_config_result res;
    int rc = mg_config_parse(&fz_spec, &b, N + 1, args, &res);
    if (rc != MG_OK)
        fprintf(stderr, "config: %s\n", res.error);
    check(rc == MG_OK, "a formatted value does not parse back");
    check(b.port == a->port && b.offset == a->offset && b.verbose == a->verbose &&
              b.quiet == a->quiet && b.cache_bytes == a->cache_bytes &&
              b.limit_bytes == a->limit_bytes && b.timeout_ms == a->timeout_ms &&
              b.skew_ms == a->skew_ms && b.mode == a->mode,
          "a value changed through format and parse");
    check(strcmp(b.name != NULL ? b.name : "", a->name != NULL ? a->name : "") == 0 &&
              strcmp(b.path != NULL ? b.path : "", a->path != NULL ? a->path : "") == 0,
          "a string changed through format and parse");
    mg_config_free(&fz_spec, &b);
    for (size_t i = 0; i < N; i++)
        free(args[i + 1]);
}

static void parse(int argc, char **argv)
{
    fz_opts o;
    mg_config_result res;
    int rc = mg_config_parse(&fz_spec, &o, argc, argv, &res);
    if (rc == MG_OK && !res.help_shown) {
        check(res.error[0] == '\0', "an error message after success");
        check(res.positional_count >= 0 && res.positional_count < argc,
              "positional count out of range");
        roundtrip(&o);
    } else if (rc != MG_OK) {
        check(rc == MG_EINVAL || rc == MG_ENOMEM, "unexpected error code");
        check(res.error[0] != '\0', "a refusal without a message");
    }
    mg_config_free(&fz_spec, &o);
}

static void parse_file(const uint8_t *data, size_t size)
{
    if (config_fd < 0) {
        config_fd = memfd_create("magnetar-fuzz-config", MFD_CLOEXEC);
        check(config_fd >= 0, "memfd_create failed");
    }
    /* Written over the previous file, then cut to size: the memfd keeps its pages (truncating
     * to 0 first freed and faulted them in again for every input). */
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(config_fd, data + done, size - done, (off_t)done);
        check(n > 0, "pwrite failed");
        done += (size_t)n;
    }
    check(ftruncate(config_fd, (off_t)size) == 0, "ftruncate failed");
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", config_fd);
    char *argv[] = { (char *)"fuzz", (char *)"--config", path, NULL };
    parse(3, argv);
}

static void parse_args(const uint8_t *data, size_t size)
{
    /* A NUL-terminated copy: arguments are the NUL-separated pieces. */
    char *text = malloc(size + 1);
    check(text != NULL, "out of memory");
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[ARGS_MAX + 2];
    int argc = 0;
    argv[argc++] = (char *)"fuzz";
    size_t pos = 0;
    while (pos <= size && argc <= ARGS_MAX) {
        argv[argc++] = text + pos;
        pos += strlen(text + pos) + 1;
    }
    argv[argc] = NULL;
    parse(argc, argv);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        parse_args(data + 1, size - 1);
    else
        parse_file(data + 1, size - 1);
    return 0;
}
