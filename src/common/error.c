/* Error names and messages, generated from MG_ERROR_LIST. */
#include "common/error.h"

#include <errno.h>

const char *mg_strerror(int err)
{
    switch (err) {
#define MG__ERROR_MSG(name, value, msg) \
    case value:                         \
        return msg;
        MG_ERROR_LIST(MG__ERROR_MSG)
#undef MG__ERROR_MSG
    }
    return "unknown error";
}

const char *mg_err_name(int err)
{
    switch (err) {
#define MG__ERROR_NAME(name, value, msg) \
    case value:                          \
        return "MG_" #name;
        MG_ERROR_LIST(MG__ERROR_NAME)
#undef MG__ERROR_NAME
    }
    return "MG_UNKNOWN";
}

int mg_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return MG_OK;
    case EAGAIN:
        return MG_EAGAIN;
    case ETIMEDOUT:
        return MG_ETIMEDOUT;
    case ENOSPC:
    case EDQUOT:
        return MG_ENOSPC;
    case ENOENT:
        return MG_ENOTFOUND;
    case EEXIST:
    case EADDRINUSE:
        return MG_EEXIST;
    case EINVAL:
        return MG_EINVAL;
    case ENOMEM:
        return MG_ENOMEM;
    case EIO:
        return MG_EIO;
    case ENOTEMPTY:
        return MG_ENOTEMPTY;
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return MG_ECONNECTION;
    case ECANCELED:
        return MG_ECANCELED;
    case ENOTSUP:
        return MG_ENOTSUP;
    case EROFS:
        return MG_EREADONLY;
    case EPERM:
    case EACCES:
        return MG_EPERM;
    case EMSGSIZE:
    case E2BIG:
    case EFBIG:
        return MG_ELIMIT;
    case EPROTO:
        return MG_EPROTO;
    default:
        return MG_ESYS;
    }
}

int mg_err_from_uv(int uv_status)
{
    if (uv_status >= 0)
        return MG_OK;
    if (uv_status == -ECANCELED)
        return MG_ECANCELED;
    if (uv_status == -4095) /* UV_EOF */
        return MG_ECLOSED;
    return mg_err_from_errno(-uv_status);
}
