/*
 * Small file-system helpers shared by the modules that own directories (the bookie's journal,
 * entry logs and index, the embedded metadata store, the tools' data directories).
 */
#ifndef MG_COMMON_FS_H
#define MG_COMMON_FS_H

/* Creates path and every missing parent (mkdir -p, mode 0755). An existing directory is
 * success. Returns MG_OK, MG_EINVAL (empty or longer than PATH_MAX), or the converted errno
 * (MG_EPERM, MG_ENOSPC, MG_EREADONLY, ...). Any thread. */
int mg_mkdirs(const char *path);

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Lists the ids of the files in dir whose names parse() accepts (it returns true and sets *id),
 * ascending. Bounded: more than max matching files is MG_ELIMIT. On MG_OK, *ids_out is an
 * mg_malloc'd array the caller frees (NULL when count is 0). Errors: the converted errno of
 * opendir/readdir, MG_ELIMIT, MG_ENOMEM. Any thread. */
int mg_list_ids(const char *dir, bool (*parse)(const char *name, uint64_t *id), size_t max,
                uint64_t **ids_out, size_t *count_out);

#endif
