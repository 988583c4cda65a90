/* File-system helpers; see fs.h. */
#include "common/fs.h"

#include "common/error.h"

#include <errno.h>
#include <limits.h>
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
