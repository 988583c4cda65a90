/*
 * The bookie's file I/O layer: every system call that touches the journal, the entry logs or
 * their directories goes through a bk_io, so tests can inject the failures a disk produces
 * (EIO on read, ENOSPC or EIO on write, a failing fdatasync, a short read) and check that the
 * bookie reports them instead of lying (../shared/STYLE.md: fault injection through an I/O
 * vtable).
 *
 * A bk_io is the real POSIX calls plus a fault table. Faults are armed per operation kind with
 * an optional path filter and a countdown ("fail the 3rd pwrite to a file whose path contains
 * 'journal'"); the default bk_io has none armed and costs one relaxed atomic load per call.
 * Asynchronous reads (libaio in aio.c) consult the same table through bk_io_read_fault(), so
 * an injected EIO reaches the O_DIRECT path too.
 *
 * The handle and its fault injection (bk_io_create, bk_io_fault_arm, ...) are public, in
 * bookie/bookie.h; the system-call wrappers below are private to src/bookie.
 *
 * All functions return MG_OK / a byte count, or a negative MG_E* code (errno converted once
 * here). Thread-safe: the journal thread, the flush thread and the loop share one bk_io.
 */
#ifndef MG_BOOKIE_IO_H
#define MG_BOOKIE_IO_H

#include "bookie/bookie.h" /* bk_io, bk_io_op */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* open(2) with O_CLOEXEC added; records the path for fault filters. Returns MG_OK and *fd. */
int bk_io_open(bk_io *io, const char *path, int flags, mode_t mode, int *fd);
int bk_io_close(bk_io *io, int fd);
/* Full writes and reads: loop over partial transfers and EINTR. pwrite returns MG_OK when all
 * bytes were written; pread returns the bytes read (fewer only at end of file, or by a short
 * read fault). */
int bk_io_pwrite(bk_io *io, int fd, const void *buf, size_t size, uint64_t offset);
ssize_t bk_io_pread(bk_io *io, int fd, void *buf, size_t size, uint64_t offset);
int bk_io_fdatasync(bk_io *io, int fd);
int bk_io_fsync_dir(bk_io *io, const char *dir);
/* fallocate(2) mode 0 (extends the file, blocks reserved): preallocation. */
int bk_io_allocate(bk_io *io, int fd, uint64_t offset, uint64_t size);
int bk_io_truncate(bk_io *io, int fd, uint64_t size);
int bk_io_unlink(bk_io *io, const char *path);
int bk_io_rename(bk_io *io, const char *from, const char *to);

/* For asynchronous reads done outside this layer (libaio): returns 0 when no fault fires for a
 * read of fd, else the MG_E* error to report, or sets *short_bytes for a short read. Counts
 * as one BK_IO_PREAD call. */
int bk_io_read_fault(bk_io *io, int fd, size_t *short_bytes);

#endif
