/*
 * Configuration for every `magnetar` subcommand: one table of options per subcommand
 * (mg_cmd_spec) drives the command-line parser, the config-file reader, --help and the
 * "effective configuration" log line, so the four can never disagree.
 *
 * Precedence, lowest first:
 *
 *     built-in defaults  <  the file named by --config FILE  <  flags on the command line
 *
 * mg_config_parse always applies all three in that order, whatever the position of --config on
 * the command line: it first walks argv once to check its shape and find --config and --help,
 * then applies the defaults, then the file, then walks argv again to apply the flags.
 *
 * Command line. argv[0] (the subcommand name) is skipped. Long options are `--name value` or
 * `--name=value`; short options are `-p value`, `-pvalue`, and switches (bools) can be grouped,
 * `-vq`. A bool is set with `--name` and cleared with `--no-name`, or given a value with
 * `--name=true|false|1|0|yes|no|on|off` (never from the next argument, so a bool can never
 * swallow a positional argument). A value-taking option always takes the next argument as its
 * value, even when it starts with '-' (`--offset -5`). Names are matched exactly; there are no
 * abbreviations. `--` ends the options; an argument not starting with '-', or a lone "-", is
 * positional. When an option is given twice on the command line the last one wins.
 * Built-ins: `--config FILE` (at most once) and `--help`/`-h` (help is printed as soon as it is
 * seen, the rest of argv is ignored).
 *
 * Config file. UTF-8 text (a leading byte-order mark is skipped), one `key=value` per line;
 * spaces and tabs around key and value are trimmed; a line whose first non-blank character is
 * '#' is a comment; blank lines are skipped; CRLF line ends are accepted. '#' elsewhere is part
 * of the value (paths may contain it) and quotes are not removed. Keys are the long option
 * names, with '_' accepted for '-' (`write_cache_mb` = `write-cache-mb`). A key may appear once
 * per file. `config` and `help` cannot be set from a file. Limits (common/limits.h): the file
 * is at most MG_CONFIG_FILE_BYTES_MAX bytes, a line MG_CONFIG_LINE_BYTES_MAX, a key
 * MG_CONFIG_KEY_BYTES_MAX and any value (also on the command line) MG_CONFIG_VALUE_BYTES_MAX.
 *
 * Value syntax by type:
 *   STRING    any text up to MG_CONFIG_VALUE_BYTES_MAX bytes, the empty string included.
 *   INT       decimal with an optional sign: "-5", "+7", "6650".
 *   BOOL      true/false, 1/0, yes/no, on/off (any case).
 *   BYTES     a decimal count with an optional unit (any case, spaces allowed before it):
 *             none or B = bytes, k/KiB = 1024, M/MiB = 1024^2, G/GiB = 1024^3, T/TiB = 1024^4.
 *             "kB", "MB", "GB", "TB" are REFUSED as ambiguous (SI says 1000, most people mean
 *             1024); nothing here is ever 1000-based. No fractions ("1.5G").
 *   DURATION  a decimal count with an optional unit: ms, s, m, h, d (any case); a bare number
 *             is milliseconds. Stored as milliseconds.
 *   ENUM      one of the choices (any case); stored as the index into choices.
 * BYTES and DURATION refuse a negative value unless the option's range admits one (min < 0).
 * Every arithmetic step is checked: a value that does not fit in int64_t is refused.
 *
 * Errors. Every refusal returns MG_EINVAL and writes one line into res->error naming the
 * option (`--port: '70000' is out of range 1..65535`) and, for the file, the file and line
 * (`config file /etc/magnetar.conf line 3: unknown option 'prot'; did you mean 'port'?`).
 *
 * Invariants:
 *   1. Before mg_config_parse can fail, every STRING field of dst is NULL or owned by dst, so
 *      mg_config_free(spec, dst) is safe after any return, success or failure.
 *   2. A value that fails to parse leaves its field unchanged.
 *   3. The spec is checked with MG_ASSERT on every parse (names unique, no "config"/"help",
 *      no -h, every option documented, defaults valid): a bad table is a programmer error.
 *
 * Threading: no global state. A parse touches only spec (read), dst, argv and res, so it may
 * run on any thread; in practice it runs once in main() before any loop starts.
 */
#ifndef MG_COMMON_CONFIG_H
#define MG_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum mg_opt_type {
    MG_OPT_STRING,   /* char * (owned by the struct after parse; freed by mg_config_free) */
    MG_OPT_INT,      /* int64_t */
    MG_OPT_BOOL,     /* bool: "--name", "--no-name", "--name=true|false|1|0|yes|no|on|off" */
    MG_OPT_BYTES,    /* int64_t bytes: "512", "64k", "64KiB", "16M", "16MiB", "2G", "2GiB";
                      * all units 1024-based; "kB"/"MB"/"GB"/"TB" refused as ambiguous */
    MG_OPT_DURATION, /* int64_t milliseconds: "250ms", "10s", "5m", "1h", "2d", bare = ms */
    MG_OPT_ENUM,     /* int: index into choices */
} mg_opt_type;

typedef struct mg_opt {
    const char *name;           /* long flag without "--"; also the key in the config file */
    char short_name;            /* e.g. 'p' for -p; 0 = none; 'h' is reserved for --help */
    mg_opt_type type;           /* decides the type of the field at offset */
    size_t offset;              /* offsetof(the caller's struct, field) */
    const char *default_value;  /* parsed like any value; NULL = zero/NULL (ENUM: index 0) */
    const char *metavar;        /* shown in help, e.g. "PORT"; NULL = derived from type */
    const char *help;           /* required: every option is documented */
    int64_t min, max;           /* for INT/BYTES/DURATION when min < max: inclusive range */
    const char *const *choices; /* for ENUM: NULL-terminated */
} mg_opt;

typedef struct mg_cmd_spec {
    const char *name;    /* e.g. "magnetar standalone" */
    const char *usage;   /* e.g. "[options]" or "[options] <topic>" */
    const char *summary; /* one paragraph shown in --help ('\n' forces a line break) */
    const mg_opt *opts;  /* at most MG_CONFIG_OPTIONS_MAX */
    size_t opt_count;
    int positional_min, positional_max; /* -1 max = unbounded */
} mg_cmd_spec;

typedef struct mg_config_result {
    bool help_shown;      /* --help/-h was given: help was printed to stdout; the caller exits 0 */
    char **positional;    /* pointers into argv (see mg_config_parse) */
    int positional_count; /* at least positional_min, at most positional_max */
    char error[512];      /* set when parse fails; "" otherwise */
} mg_config_result;

/*
 * Fills the option fields of dst (the caller's struct described by spec->opts) from defaults,
 * the --config file and argv, in that order of precedence (see the top of this file).
 *
 * [in]  spec   the subcommand's table; checked with MG_ASSERT.
 * [out] dst    the caller's struct. Its option fields are overwritten without being read, so
 *              a dst already filled by a previous parse must be passed to mg_config_free first.
 *              Other fields are untouched. After any return, STRING fields are NULL or strings
 *              owned by dst: release them with mg_config_free.
 * [in]  argc, argv  as given to main, argv[0] being the subcommand name. On success argv is
 *              reordered as GNU getopt does: argv[0], then the options and their values, then
 *              the positional arguments in their original order, which res->positional points
 *              at. argv is not reordered when the parse fails or help is shown.
 * [out] res    help_shown, positional, positional_count and error; zeroed first.
 *
 * With --help/-h: prints help to stdout, sets res->help_shown, applies only the defaults and
 * returns MG_OK (the caller exits 0).
 *
 * Returns MG_OK; MG_EINVAL for any bad argument, option, value or config file, with a message
 * in res->error; MG_ENOMEM when an allocation fails. Any thread, see the top of this file.
 */
int mg_config_parse(const mg_cmd_spec *spec, void *dst, int argc, char **argv,
                    mg_config_result *res);

/* Frees the strings that mg_config_parse stored in dst and sets those fields to NULL, so a
 * second call is harmless. Safe after a failed parse. */
void mg_config_free(const mg_cmd_spec *spec, void *dst);

/*
 * Prints the help text: "Usage: <name> <usage>", a blank line, the summary, a blank line,
 * "Options:", then one aligned entry per option (two lines when the flag column is too wide),
 * with enum choices, ranges and defaults, followed by --config and --help. Wrapped to 80
 * columns. Write errors on out are ignored (there is nowhere to report them).
 */
void mg_config_print_help(const mg_cmd_spec *spec, FILE *out);

/*
 * Writes the current value of opt in the struct at src as text that parses back to the same
 * value, for logging the effective configuration: INT as decimal, BOOL as "true"/"false",
 * BYTES in the largest exact binary unit ("64MiB", "1000"), DURATION in the largest exact unit
 * ("90s", "250ms", "0ms"), ENUM as its choice, STRING as is (a NULL string as "").
 *
 * Always NUL-terminates buf (buf_size must be > 0). Returns MG_OK, or MG_ELIMIT when the text
 * did not fit and was cut.
 */
int mg_config_format_value(const mg_opt *opt, const void *src, char *buf, size_t buf_size);

#endif
