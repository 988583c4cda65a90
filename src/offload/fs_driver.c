/*
 * The filesystem driver: objects are files in one directory (docs/offload.md, "Crash safety").
 *
 * Writing: ".tmp-<name>" is created with O_EXCL, appended to, fdatasync'd, closed and renamed
 * to <name> with RENAME_NOREPLACE, then the directory is fsync'd so the rename survives a
 * crash. Any failure unlinks the temporary and returns the error; nothing else is touched.
 * Invariants: a file named <name> (no leading '.') is always a whole object; a crash leaves at
 * most temporaries, recognisable by their prefix, which cleanup removes. The driver keeps an open
 * descriptor of its directory and no other state, so every operation may run on any thread.
 */
#include "offload/offload_int.h"

#include "common/alloc.h"
#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OF_FS_TMP_MARK ".tmp-"

struct of_fs {
    struct of_driver driver;
    int dir_fd;
    char dir[OF_DIR_BYTES_MAX + 1];
};

struct of_fs_handle {
    int fd;
    char name[OF_NAME_BYTES_MAX + 1];
    char tmp[OF_NAME_BYTES_MAX + sizeof(OF_FS_TMP_MARK)];
};

/* Write errors that mean "no room": a full disk, a quota or a file-size limit. */
static int fs_errno(int e)
{
    if (e == ENOSPC || e == EDQUOT || e == EFBIG)
        return MG_ENOSPC;
    return mg_err_from_errno(e);
}

static int fs_sync_dir(struct of_fs *fs, const char *what, const char *name, struct of_err *err)
{
    if (fsync(fs->dir_fd) != 0) {
        int e = errno;
        return of__errf(err, fs_errno(e), "offload dir %s: fsync after %s %s: %s", fs->dir, what,
                        name, strerror(e));
    }
    return MG_OK;
}

static int fs_create(void *ctx, const char *name, void **handle, struct of_err *err)
{
    struct of_fs *fs = ctx;
    if (!of__name_valid(name))
        return of__errf(err, MG_EINVAL, "offload: invalid object name");
    struct of_fs_handle *h = mg_calloc(1, sizeof(*h));
    if (!h)
        return of__errf(err, MG_ENOMEM, "offload object %s: out of memory", name);
    snprintf(h->name, sizeof(h->name), "%s", name);
    snprintf(h->tmp, sizeof(h->tmp), OF_FS_TMP_MARK "%s", name);
    struct stat st;
    if (fstatat(fs->dir_fd, name, &st, 0) == 0) {
        mg_free(h);
        return of__errf(err, MG_EEXIST, "offload object %s already exists in %s", name, fs->dir);
    }
    h->fd = openat(fs->dir_fd, h->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (h->fd < 0) {
        int e = errno;
        mg_free(h);
        return of__errf(err, fs_errno(e), "offload object %s: create %s/" OF_FS_TMP_MARK "%s: %s",
                        name, fs->dir, name, strerror(e));
    }
    *handle = h;
    return MG_OK;
}

static int fs_append(void *ctx, void *handle, const void *data, size_t size, struct of_err *err)
{
    struct of_fs *fs = ctx;
    struct of_fs_handle *h = handle;
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = write(h->fd, p, size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return of__errf(err, fs_errno(e), "offload object %s: write to %s/%s: %s", h->name,
                            fs->dir, h->tmp, strerror(e));
        }
        p += n;
        size -= (size_t)n;
    }
    return MG_OK;
}

static void fs_abort(void *ctx, void *handle)
{
    struct of_fs *fs = ctx;
    struct of_fs_handle *h = handle;
    if (h->fd >= 0)
        close(h->fd);
    unlinkat(fs->dir_fd, h->tmp, 0);
    mg_free(h);
}

static int fs_complete(void *ctx, void *handle, struct of_err *err)
{
    struct of_fs *fs = ctx;
    struct of_fs_handle *h = handle;
    int rc = MG_OK;
    if (fdatasync(h->fd) != 0) {
        int e = errno;
        rc = of__errf(err, fs_errno(e), "offload object %s: fdatasync %s/%s: %s", h->name, fs->dir,
                      h->tmp, strerror(e));
    }
    int fd = h->fd;
    h->fd = -1;
    if (close(fd) != 0 && rc == MG_OK) {
        int e = errno;
        rc = of__errf(err, fs_errno(e), "offload object %s: close %s/%s: %s", h->name, fs->dir,
                      h->tmp, strerror(e));
    }
    if (rc == MG_OK && renameat2(fs->dir_fd, h->tmp, fs->dir_fd, h->name, RENAME_NOREPLACE) != 0) {
        int e = errno;
        rc = of__errf(err, e == EEXIST ? MG_EEXIST : fs_errno(e),
                      "offload object %s: rename %s/%s: %s", h->name, fs->dir, h->tmp, strerror(e));
    }
    if (rc != MG_OK) {
        fs_abort(ctx, h);
        return rc;
    }
    /* The rename is durable only once the directory is: an error here leaves a whole object
     * that may or may not survive a crash, so it is reported and the object removed. */
    rc = fs_sync_dir(fs, "renaming", h->name, err);
    if (rc != MG_OK)
        unlinkat(fs->dir_fd, h->name, 0);
    mg_free(h);
    return rc;
}

static int fs_read(void *ctx, const char *name, uint64_t offset, void *dst, size_t size,
                   struct of_err *err)
{
    struct of_fs *fs = ctx;
    if (!of__name_valid(name))
        return of__errf(err, MG_EINVAL, "offload: invalid object name");
    int fd = openat(fs->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return of__errf(err, mg_err_from_errno(e), "offload object %s: open in %s: %s", name,
                        fs->dir, strerror(e));
    }
    uint8_t *p = dst;
    int rc = MG_OK;
    while (size > 0) {
        ssize_t n = pread(fd, p, size, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            rc = of__errf(err, mg_err_from_errno(e), "offload object %s: read at %llu: %s", name,
                          (unsigned long long)offset, strerror(e));
            break;
        }
        if (n == 0) {
            rc = of__errf(err, MG_ECORRUPT,
                          "offload object %s: truncated: read at %llu past its end", name,
                          (unsigned long long)offset);
            break;
        }
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    close(fd);
    return rc;
}

static int fs_stat(void *ctx, const char *name, uint64_t *size_bytes, struct of_err *err)
{
    struct of_fs *fs = ctx;
    if (!of__name_valid(name))
        return of__errf(err, MG_EINVAL, "offload: invalid object name");
    struct stat st;
    if (fstatat(fs->dir_fd, name, &st, 0) != 0) {
        int e = errno;
        return of__errf(err, mg_err_from_errno(e), "offload object %s: stat in %s: %s", name,
                        fs->dir, strerror(e));
    }
    if (!S_ISREG(st.st_mode))
        return of__errf(err, MG_ECORRUPT, "offload object %s: not a regular file", name);
    *size_bytes = (uint64_t)st.st_size;
    return MG_OK;
}

static int fs_remove(void *ctx, const char *name, struct of_err *err)
{
    struct of_fs *fs = ctx;
    if (!of__name_valid(name))
        return of__errf(err, MG_EINVAL, "offload: invalid object name");
    if (unlinkat(fs->dir_fd, name, 0) != 0) {
        int e = errno;
        return of__errf(err, mg_err_from_errno(e), "offload object %s: delete from %s: %s", name,
                        fs->dir, strerror(e));
    }
    return fs_sync_dir(fs, "deleting", name, err);
}

/* Walks the directory, calling fn on every entry (fn decides). */
static int fs_walk(struct of_fs *fs, int (*fn)(struct of_fs *fs, const char *name, void *arg),
                   void *arg, struct of_err *err)
{
    int fd = openat(fs->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return of__errf(err, mg_err_from_errno(e), "offload dir %s: open: %s", fs->dir,
                        strerror(e));
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return of__errf(err, mg_err_from_errno(e), "offload dir %s: opendir: %s", fs->dir,
                        strerror(e));
    }
    int rc = MG_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        rc = fn(fs, de->d_name, arg);
        if (rc != 0)
            break;
    }
    closedir(d);
    return rc;
}

struct fs_list_arg {
    int (*fn)(void *arg, const char *name);
    void *arg;
};

static int fs_list_one(struct of_fs *fs, const char *name, void *arg)
{
    (void)fs;
    struct fs_list_arg *la = arg;
    if (!of__name_valid(name))
        return 0;
    return la->fn(la->arg, name);
}

static int fs_list(void *ctx, int (*fn)(void *arg, const char *name), void *arg, struct of_err *err)
{
    struct fs_list_arg la = { fn, arg };
    return fs_walk(ctx, fs_list_one, &la, err);
}

struct fs_cleanup_arg {
    size_t removed;
    struct of_err *err;
};

static int fs_cleanup_one(struct of_fs *fs, const char *name, void *arg)
{
    struct fs_cleanup_arg *ca = arg;
    if (strncmp(name, OF_FS_TMP_MARK, strlen(OF_FS_TMP_MARK)) != 0)
        return 0;
    if (unlinkat(fs->dir_fd, name, 0) != 0 && errno != ENOENT) {
        int e = errno;
        return of__errf(ca->err, mg_err_from_errno(e), "offload dir %s: remove temporary %s: %s",
                        fs->dir, name, strerror(e));
    }
    ca->removed++;
    return 0;
}

static int fs_cleanup(void *ctx, size_t *removed_count, struct of_err *err)
{
    struct fs_cleanup_arg ca = { 0, err };
    int rc = fs_walk(ctx, fs_cleanup_one, &ca, err);
    if (removed_count)
        *removed_count = ca.removed;
    if (rc == MG_OK && ca.removed > 0)
        rc = fs_sync_dir(ctx, "removing", "temporaries", err);
    return rc;
}

static void fs_destroy(void *ctx)
{
    struct of_fs *fs = ctx;
    close(fs->dir_fd);
    mg_free(fs);
}

static const struct of_driver_ops of_fs_ops = {
    .create = fs_create,
    .append = fs_append,
    .complete = fs_complete,
    .abort = fs_abort,
    .read = fs_read,
    .stat = fs_stat,
    .remove = fs_remove,
    .list = fs_list,
    .cleanup = fs_cleanup,
    .destroy = fs_destroy,
};

int of_fs_driver_create(const char *dir, struct of_driver **out, struct of_err *err)
{
    size_t len = dir ? strlen(dir) : 0;
    if (len == 0 || len > OF_DIR_BYTES_MAX)
        return of__errf(err, MG_EINVAL, "offload dir: path empty or over %u bytes",
                        OF_DIR_BYTES_MAX);
    struct of_fs *fs = mg_calloc(1, sizeof(*fs));
    if (!fs)
        return of__errf(err, MG_ENOMEM, "offload dir %s: out of memory", dir);
    memcpy(fs->dir, dir, len + 1);
    fs->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fs->dir_fd < 0) {
        int e = errno;
        mg_free(fs);
        return of__errf(err, mg_err_from_errno(e), "offload dir %s: open: %s", dir, strerror(e));
    }
    fs->driver.ops = &of_fs_ops;
    fs->driver.ctx = fs;
    *out = &fs->driver;
    return MG_OK;
}
