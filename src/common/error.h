/*
 * Magnetar's error codes.
 *
 * Every function that can fail returns an int: MG_OK (0) or one of the negative codes below,
 * and passes results out through pointers. errno is converted once, at the system call, with
 * mg_err_from_errno(). The list is an X-macro so that the enum, the names and the messages can
 * never drift apart.
 *
 * Operating errors (bad input, full disk, dead peer) are returned; programmer errors are caught
 * by MG_ASSERT (common/assert.h), which is always on.
 */
#ifndef MG_COMMON_ERROR_H
#define MG_COMMON_ERROR_H

/* X(name, value, message) */
#define MG_ERROR_LIST(X)                                                     \
    X(OK, 0, "success")                                                      \
    X(EAGAIN, -1, "resource full or busy, try again later")                  \
    X(ETIMEDOUT, -2, "operation timed out")                                  \
    X(ECLOSED, -3, "object is closed")                                       \
    X(ENOSPC, -4, "no space left on device")                                 \
    X(ECORRUPT, -5, "data is corrupt")                                       \
    X(EPROTO, -6, "protocol error")                                          \
    X(ELIMIT, -7, "a size or count limit was exceeded")                      \
    X(EFENCED, -8, "ledger is fenced")                                       \
    X(ENOTFOUND, -9, "not found")                                            \
    X(EEXIST, -10, "already exists")                                         \
    X(EINVAL, -11, "invalid argument")                                       \
    X(ENOMEM, -12, "out of memory")                                          \
    X(EIO, -13, "input/output error")                                        \
    X(EBADVERSION, -14, "version does not match (compare-and-set conflict)") \
    X(ENOTEMPTY, -15, "node has children")                                   \
    X(ECONNECTION, -16, "connection failed or was lost")                     \
    X(ESTATE, -17, "object is in a state that refuses this operation")       \
    X(ECANCELED, -18, "operation was canceled")                              \
    X(ENOTSUP, -19, "operation is not supported")                            \
    X(EREADONLY, -20, "storage is read-only after an error")                 \
    X(EPERM, -21, "permission denied")                                       \
    X(ESYS, -22, "system call failed")

enum mg_error {
#define MG__ERROR_ENUM(name, value, msg) MG_##name = (value),
    MG_ERROR_LIST(MG__ERROR_ENUM)
#undef MG__ERROR_ENUM
};

/* The message for an error code ("unknown error" for a value not in the list). Thread-safe. */
const char *mg_strerror(int err);

/* The symbolic name, e.g. "MG_ENOSPC" ("MG_UNKNOWN" for a value not in the list). */
const char *mg_err_name(int err);

/* Converts an errno value (positive) into the closest Magnetar error code. */
int mg_err_from_errno(int errno_value);

/* Converts a libuv status code (negative errno on Unix) into a Magnetar error code. */
int mg_err_from_uv(int uv_status);

/* Propagation helper in the style of zstd's FORWARD_IF_ERROR. */
#define MG_TRY(expr)         \
    do {                     \
        int mg__rc = (expr); \
        if (mg__rc < 0)      \
            return mg__rc;   \
    } while (0)

#endif
