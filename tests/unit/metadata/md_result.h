/*
 * The outcome of one metadata-store call, for the metadata tests (conformance.h, test_zk.c): pass
 * a reset mdt_result as the callback's argument and run the loop until `done`; watches count
 * their events in an mdt_watch. Header-only, for Criterion tests (criterion.h included first).
 */
#ifndef MG_TESTS_METADATA_MD_RESULT_H
#define MG_TESTS_METADATA_MD_RESULT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "metadata/limits.h"
#include "metadata/metadata.h"

/* Children names kept of one md_children answer (count says how many there were). */
#define MDT_NAMES_MAX 64

typedef struct mdt_result {
    bool done;
    int status;
    uint8_t *value; /* malloc'd copy, NUL-terminated */
    size_t len;
    md_stat stat;
    char path[MD_PATH_BYTES_MAX + 1];
    char *names[MDT_NAMES_MAX]; /* strdup'd, the first MDT_NAMES_MAX of count */
    size_t count;
    int64_t id;
} mdt_result;

typedef struct mdt_watch {
    int fired;
    md_event_type type;
    char path[MD_PATH_BYTES_MAX + 1];
} mdt_watch;

/* Frees what r holds and clears it for the next call. */
static inline void mdt_reset(mdt_result *r)
{
    free(r->value);
    for (size_t i = 0; i < r->count && i < MDT_NAMES_MAX; i++)
        free(r->names[i]);
    memset(r, 0, sizeof(*r));
}

static inline void mdt_get_done(int status, const void *value, size_t len, const md_stat *stat,
                                void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    if (status == MG_OK) {
        r->value = malloc(len + 1);
        cr_assert_not_null(r->value);
        if (len > 0)
            memcpy(r->value, value, len);
        r->value[len] = 0;
        r->len = len;
        r->stat = *stat;
    }
    r->done = true;
}

static inline void mdt_stat_done(int status, const md_stat *stat, void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    if (status == MG_OK)
        r->stat = *stat;
    r->done = true;
}

static inline void mdt_create_done(int status, const char *path, void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    if (status == MG_OK)
        snprintf(r->path, sizeof(r->path), "%s", path);
    r->done = true;
}

static inline void mdt_done(int status, void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    r->done = true;
}

static inline void mdt_children_done(int status, const char *const *names, size_t count, void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    for (size_t i = 0; i < count && i < MDT_NAMES_MAX; i++)
        r->names[i] = strdup(names[i]);
    r->count = count;
    r->done = true;
}

static inline void mdt_id_done(int status, int64_t id, void *arg)
{
    mdt_result *r = arg;
    r->status = status;
    r->id = id;
    r->done = true;
}

static inline void mdt_watch_fired(md_event_type type, const char *path, void *arg)
{
    mdt_watch *w = arg;
    w->fired++;
    w->type = type;
    snprintf(w->path, sizeof(w->path), "%s", path);
}

#endif
