/*
 * The bookie's file I/O layer with fault injection; see io.h.
 *
 * Paths are remembered per descriptor (a table indexed by fd, under a mutex taken only at
 * open, close, and when a fault is armed) so that a fault can target "files whose path contains
 * X". The hot path checks one atomic word, the armed-op mask, and does nothing more when it is
 * zero.
 */
#include "bookie/io.h"

#include "bookie/limits.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct bk_io_fault {
    bool armed;
    char path_substr[BK_IO_PATH_FILTER_BYTES_MAX];
    int64_t skip;
    int64_t times;
    int error;
    size_t short_bytes;
    uint64_t fired;
} bk_io_fault;

struct bk_io {
    unsigned armed_mask; /* atomic: bit per bk_io_op with a fault armed */
    pthread_mutex_t mu;
    bk_io_fault faults[BK_IO_OP_COUNT];
    char **paths; /* indexed by fd, under mu */
    size_t paths_cap;
};

int bk_io_create(bk_io **out)
{
    bk_io *io = mg_calloc(1, sizeof(*io));
    if (io == NULL)
        return MG_ENOMEM;
    pthread_mutex_init(&io->mu, NULL);
    *out = io;
    return MG_OK;
}

void bk_io_destroy(bk_io *io)
{
    if (io == NULL)
        return;
    for (size_t i = 0; i < io->paths_cap; i++)
        mg_free(io->paths[i]);
    mg_free(io->paths);
    pthread_mutex_destroy(&io->mu);
    mg_free(io);
}

void bk_io_fault_arm(bk_io *io, bk_io_op op, const char *path_substr, int64_t skip, int64_t times,
                     int error, size_t short_bytes)
{
    MG_ASSERT(op >= 0 && op < BK_IO_OP_COUNT);
    MG_ASSERT(error <= 0);
    pthread_mutex_lock(&io->mu);
    bk_io_fault *f = &io->faults[op];
    memset(f, 0, sizeof(*f));
    f->armed = times != 0;
    if (path_substr)
        strncpy(f->path_substr, path_substr, sizeof(f->path_substr) - 1);
    f->skip = skip;
    f->times = times;
    f->error = error;
    f->short_bytes = short_bytes;
    unsigned mask = __atomic_load_n(&io->armed_mask, __ATOMIC_RELAXED);
    mask = f->armed ? (mask | (1u << op)) : (mask & ~(1u << op));
    __atomic_store_n(&io->armed_mask, mask, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mu);
}

void bk_io_fault_clear(bk_io *io, bk_io_op op)
{
    pthread_mutex_lock(&io->mu);
    uint64_t fired = io->faults[op].fired;
    memset(&io->faults[op], 0, sizeof(io->faults[op]));
    io->faults[op].fired = fired;
    unsigned mask = __atomic_load_n(&io->armed_mask, __ATOMIC_RELAXED) & ~(1u << op);
    __atomic_store_n(&io->armed_mask, mask, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&io->mu);
}

uint64_t bk_io_fault_count(bk_io *io, bk_io_op op)
{
    pthread_mutex_lock(&io->mu);
    uint64_t n = io->faults[op].fired;
    pthread_mutex_unlock(&io->mu);
    return n;
}

/* Decides whether a call of kind op on fd (or path) fails. Returns 0, or the error; sets
 * *short_bytes for a short-read fault. */
static int check_fault(bk_io *io, bk_io_op op, int fd, const char *path, size_t *short_bytes)
{
    if ((__atomic_load_n(&io->armed_mask, __ATOMIC_ACQUIRE) & (1u << op)) == 0)
        return 0;
    int error = 0;
    pthread_mutex_lock(&io->mu);
    bk_io_fault *f = &io->faults[op];
    if (f->armed) {
        const char *p = path;
        if (p == NULL && fd >= 0 && (size_t)fd < io->paths_cap)
            p = io->paths[fd];
        bool match = f->path_substr[0] == '\0' || (p != NULL && strstr(p, f->path_substr));
        if (match && f->skip > 0) {
            f->skip--;
        } else if (match) {
            f->fired++;
            if (f->error == 0 && short_bytes)
                *short_bytes = f->short_bytes;
            error = f->error;
            if (f->times > 0 && --f->times == 0) {
                f->armed = false;
                __atomic_fetch_and(&io->armed_mask, ~(1u << op), __ATOMIC_RELEASE);
            }
            if (error == 0 && f->short_bytes == 0)
                error = MG_EIO; /* an armed fault with neither error nor short read */
        }
    }
    pthread_mutex_unlock(&io->mu);
    return error;
}

static void remember_path(bk_io *io, int fd, const char *path)
{
    if (fd < 0 || fd >= BK_IO_TRACKED_FDS_MAX)
        return;
    pthread_mutex_lock(&io->mu);
    if ((size_t)fd >= io->paths_cap) {
        size_t cap = io->paths_cap ? io->paths_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        char **p = mg_realloc(io->paths, cap * sizeof(*p));
        if (p == NULL) {
            pthread_mutex_unlock(&io->mu);
            return; /* untracked: path filters will not match this descriptor */
        }
        memset(p + io->paths_cap, 0, (cap - io->paths_cap) * sizeof(*p));
        io->paths = p;
        io->paths_cap = cap;
    }
    mg_free(io->paths[fd]);
    size_t len = strlen(path) + 1;
    io->paths[fd] = mg_malloc(len);
    if (io->paths[fd])
        memcpy(io->paths[fd], path, len);
    pthread_mutex_unlock(&io->mu);
}

int bk_io_open(bk_io *io, const char *path, int flags, mode_t mode, int *fd_out)
{
    int err = check_fault(io, BK_IO_OPEN, -1, path, NULL);
    if (err)
        return err;
    int fd;
    do {
        fd = open(path, flags | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return mg_err_from_errno(errno);
    remember_path(io, fd, path);
    *fd_out = fd;
    return MG_OK;
}

int bk_io_close(bk_io *io, int fd)
{
    if (fd >= 0 && fd < BK_IO_TRACKED_FDS_MAX) {
        pthread_mutex_lock(&io->mu);
        if ((size_t)fd < io->paths_cap) {
            mg_free(io->paths[fd]);
            io->paths[fd] = NULL;
        }
        pthread_mutex_unlock(&io->mu);
    }
    /* Linux closes the descriptor even when close fails; never retry. */
    return close(fd) == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_pwrite(bk_io *io, int fd, const void *buf, size_t size, uint64_t offset)
{
    int err = check_fault(io, BK_IO_PWRITE, fd, NULL, NULL);
    if (err)
        return err;
    const uint8_t *p = buf;
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mg_err_from_errno(errno);
        if (n == 0)
            return MG_EIO;
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    return MG_OK;
}

ssize_t bk_io_pread(bk_io *io, int fd, void *buf, size_t size, uint64_t offset)
{
    size_t short_bytes = 0;
    int err = check_fault(io, BK_IO_PREAD, fd, NULL, &short_bytes);
    if (err)
        return err;
    if (short_bytes > 0)
        size = short_bytes >= size ? 0 : size - short_bytes;
    uint8_t *p = buf;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, p + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return mg_err_from_errno(errno);
        if (n == 0)
            break; /* end of file */
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int bk_io_fdatasync(bk_io *io, int fd)
{
    int err = check_fault(io, BK_IO_SYNC, fd, NULL, NULL);
    if (err)
        return err;
    int rc;
    do {
        rc = fdatasync(fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_fsync_dir(bk_io *io, const char *dir)
{
    int err = check_fault(io, BK_IO_SYNC, -1, dir, NULL);
    if (err)
        return err;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return mg_err_from_errno(errno);
    int rc = fsync(fd) == 0 ? MG_OK : mg_err_from_errno(errno);
    close(fd);
    return rc;
}

int bk_io_allocate(bk_io *io, int fd, uint64_t offset, uint64_t size)
{
    int err = check_fault(io, BK_IO_ALLOCATE, fd, NULL, NULL);
    if (err)
        return err;
    int rc;
    do {
        rc = fallocate(fd, 0, (off_t)offset, (off_t)size);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
        /* A file system without fallocate: posix_fallocate writes the blocks instead. */
        rc = posix_fallocate(fd, (off_t)offset, (off_t)size);
        return rc == 0 ? MG_OK : mg_err_from_errno(rc);
    }
    return rc == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_truncate(bk_io *io, int fd, uint64_t size)
{
    int err = check_fault(io, BK_IO_PWRITE, fd, NULL, NULL);
    if (err)
        return err;
    return ftruncate(fd, (off_t)size) == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_unlink(bk_io *io, const char *path)
{
    return unlink(path) == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_rename(bk_io *io, const char *from, const char *to)
{
    int err = check_fault(io, BK_IO_PWRITE, -1, to, NULL);
    if (err)
        return err;
    return rename(from, to) == 0 ? MG_OK : mg_err_from_errno(errno);
}

int bk_io_read_fault(bk_io *io, int fd, size_t *short_bytes)
{
    *short_bytes = 0;
    return check_fault(io, BK_IO_PREAD, fd, NULL, short_bytes);
}
