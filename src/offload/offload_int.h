/*
 * Private helpers shared by the offload module's files.
 */
#ifndef MG_OFFLOAD_OFFLOAD_INT_H
#define MG_OFFLOAD_OFFLOAD_INT_H

#include "offload/offload.h"

#include <stdbool.h>

/* Formats err->msg (when err is not NULL) and returns code. */
int of__errf(struct of_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when name is 1..OF_NAME_BYTES_MAX bytes of [A-Za-z0-9._-] not starting with '.'. */
bool of__name_valid(const char *name);

#endif
