/* File-system helpers; see fs.h. */
#include "common/fs.h"

#include "common/alloc.h"
#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int mg_mkdirs(const char *path)
{
    char buf[PATH_MAX];
    size_t len = path ? strlen(path) : 0;
    if (len == 0 || len >= sizeof(buf))
        return MG_EINVAL;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return mg_err_from_errno(errno);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return mg_err_from_errno(errno);
    struct stat st;
    if (stat(buf, &st) != 0)
        return mg_err_from_errno(errno);
    return S_ISDIR(st.st_mode) ? MG_OK : mg_err_from_errno(ENOTDIR);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int mg_list_ids(const char *dir, bool (*parse)(const char *name, uint64_t *id), size_t max,
                uint64_t **ids_out, size_t *count_out)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return mg_err_from_errno(errno);
    uint64_t *ids = NULL;
    size_t count = 0, cap = 0;
    int rc = MG_OK;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                rc = mg_err_from_errno(errno);
            break;
        }
        uint64_t id;
        if (!parse(de->d_name, &id))
            continue;
        if (count >= max) {
            rc = MG_ELIMIT;
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *p = mg_realloc(ids, ncap * sizeof(*p));
            if (p == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            ids = p;
            cap = ncap;
        }
        ids[count++] = id;
    }
    closedir(d);
    if (rc != MG_OK) {
        mg_free(ids);
        return rc;
    }
    if (count > 1)
        qsort(ids, count, sizeof(*ids), cmp_u64);
    *ids_out = ids;
    *count_out = count;
    return MG_OK;
}
