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

#endif
