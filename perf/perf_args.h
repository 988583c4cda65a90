/*
 * Command-line parsing the stand-alone benchmark programs share (perf_chat_load, perf_nats_drain):
 * they link nothing of Magnetar, so this is a header of static functions rather than a library.
 */
#ifndef MG_PERF_ARGS_H
#define MG_PERF_ARGS_H

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads option name's value v as a decimal integer in [min, max] into *out; otherwise says so on
 * stderr, prefixed with the program's name prog, and returns false. */
static inline bool perf_parse_int(const char *prog, const char *name, const char *v, int64_t min,
                                  int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long x = v != NULL ? strtoll(v, &end, 10) : 0;
    if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || x < min || x > max) {
        fprintf(stderr, "%s: %s needs an integer in %" PRId64 "..%" PRId64 "\n", prog, name, min,
                max);
        return false;
    }
    *out = (int64_t)x;
    return true;
}

#endif
