/*
 * zlib streams whose state comes from mg_malloc, for the codecs that use zlib (src/pulsar and
 * src/kafka compress.c): header only, so that common itself does not link zlib; the includer
 * does.
 */
#ifndef MG_COMMON_ZSTREAM_H
#define MG_COMMON_ZSTREAM_H

#include "common/alloc.h"

#include <string.h>
/* next_in is const: the codecs never write their input. */
#ifndef ZLIB_CONST
#define ZLIB_CONST
#endif
#include <zlib.h>

static inline voidpf mg__zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t bytes;
    if (__builtin_mul_overflow((size_t)items, (size_t)size, &bytes))
        return Z_NULL;
    return mg_malloc(bytes);
}

static inline void mg__zfree(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    mg_free(ptr);
}

/* Zeroes zs and sets its allocator hooks, before deflateInit2 or inflateInit2. */
static inline void mg_zstream_init(z_stream *zs)
{
    memset(zs, 0, sizeof(*zs));
    zs->zalloc = mg__zalloc;
    zs->zfree = mg__zfree;
    zs->opaque = Z_NULL;
}

#endif
