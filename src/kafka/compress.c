/*
 * The compression codecs of Kafka's RecordBatch (compress.h): gzip, snappy (raw and xerial),
 * lz4 frames and zstd frames, on Debian's zlib (zlib1g-dev), libsnappy (libsnappy-dev, its C API
 * snappy-c.h), liblz4 (liblz4-dev, its frame API lz4frame.h) and libzstd (libzstd-dev): the
 * reference implementations of the four formats, which librdkafka and Kafka's Java client (its
 * LZ4 frame code aside) also use, so the bytes are the ones both clients read and write. The
 * codec only frames and bounds: the formats themselves are the libraries'.
 *
 * FORMATS (Kafka's record batches of magic 2; the clients are librdkafka 2.0 and the Java one)
 *
 *   gzip    RFC 1952 members (zlib's inflate with windowBits 15 + 16: the gzip wrapper only,
 *           its CRC-32 and length trailer verified). Several members one after another decode
 *           to their concatenation, as gzip(1) and Java's GZIPInputStream read them; anything
 *           after a member that is not another member is corrupt. Written as one member at
 *           level 6, the default of both clients (Java's Deflater, librdkafka's
 *           compression.level -1).
 *   snappy  Two shapes, told apart by the first 8 bytes:
 *             raw      one snappy block (varint uncompressed length, then elements): what
 *                      librdkafka writes;
 *             xerial   snappy-java's stream, what Kafka's Java client writes (SnappyOutputStream)
 *                      and librdkafka also reads: the magic 82 'S' 'N' 'A' 'P' 'P' 'Y' 00, a
 *                      version i32 and a compatible version i32 (both 1, not checked, as
 *                      librdkafka does not), then chunks of [length i32, big-endian][raw snappy
 *                      block]. No chunk at all is the empty stream (16 bytes).
 *           Every block's declared length is summed and the block validated
 *           (snappy_validate_compressed_buffer, which decodes without writing) before anything
 *           is allocated, so a corrupt or oversized input costs no memory; then each block is
 *           decoded in place (snappy_uncompress). Written in the xerial shape, 32 KiB of input
 *           per chunk as SnappyOutputStream writes it.
 *   lz4     LZ4 frames (magic 04 22 4d 18; LZ4F_decompress in a loop, its header, block and
 *           content checksums verified when present; skippable frames skipped; frames one after
 *           another decode to their concatenation). Kafka wrote a wrong header checksum only at
 *           magic 0, never in a batch of magic 2. Written with LZ4F_compressFrame: 64 KiB
 *           independent blocks (Java's reader decodes each block alone), no content size and no
 *           checksums (the batch's CRC-32C covers the bytes).
 *   zstd    zstd frames (ZSTD_decompressStream in a loop: the Java client streams, so the
 *           content size is usually absent; frames one after another, skippable frames allowed,
 *           checksums verified when present). Written with ZSTD_compressCCtx at level 3, the
 *           default of both clients, content size included.
 *
 * DECODING TRUSTS NOTHING IN THE INPUT. The output grows by doubling, from a guess of four
 * times the input, up to out_max + 1 bytes: producing that last byte means the output would
 * exceed out_max (MG_ELIMIT). Sizes the input declares are used only to stop early (a zstd
 * frame, a snappy block declaring more than out_max) or, for snappy, to allocate exactly once
 * the whole input has been validated. The decoders' working memory is bounded by the formats or
 * by a setting: an lz4 block is at most 4 MiB (the decoder holds one in and one out, plus history),
 * a zstd window at most 8 MiB (KW__ZSTD_WINDOW_LOG_MAX), zlib's window 32 KiB. Input longer than a
 * Kafka frame (KW_FRAME_BYTES_MAX) cannot come from the wire and is refused (MG_ELIMIT), which also
 * keeps zlib's uInt counts from overflowing.
 *
 * MEMORY. Every result is a new mg_buf owned by the caller: decoders grow a block with mg_realloc
 * and hand it out wrapped (mg_buf_wrap), trimmed when more than a quarter of it is unused;
 * encoders write into a buffer of the codec's worst-case bound and copy out an exact-size buffer
 * on the same rule. zlib's state and liblz4's decoder come from mg_malloc (fault injection reaches
 * them), libzstd's contexts and libsnappy's scratch from their own allocators. Nothing is kept
 * between calls.
 */
#include "kafka/compress.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/zstream.h"
#include "kafka/limits.h"
#include "kafka/wire.h"

#include <limits.h>
#define LZ4F_STATIC_LINKING_ONLY /* LZ4F_getErrorCode, to tell an allocation failure */
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

/* zlib's windowBits for the gzip wrapper only (RFC 1952), the largest window. */
#define KW__GZIP_WINDOW_BITS    (15 + 16)
/* Both clients' default gzip level. */
#define KW__GZIP_LEVEL          6
/* Both clients' default zstd level. */
#define KW__ZSTD_LEVEL          3
/* The largest zstd window accepted: 8 MiB, which RFC 8878 (3.1.1.1.2) asks every decoder to
 * support and which levels 1 to 19 never exceed; Kafka's clients write level 3 (a 2 MiB window
 * at most). libzstd's default would let a frame header make the decoder allocate 128 MiB. */
#define KW__ZSTD_WINDOW_LOG_MAX 23
/* The xerial framing: magic, version, compatible version (snappy-java's SnappyCodec). */
#define KW__XERIAL_HEADER_BYTES 16u
#define KW__XERIAL_VERSION      1
/* Input bytes per xerial chunk, as SnappyOutputStream's default block size. */
#define KW__XERIAL_BLOCK_BYTES  (32u * 1024)
/* The first output guess of the streaming decoders, and the smallest. */
#define KW__GROW_BYTES_MIN      4096u

static const uint8_t kw__xerial_magic[8] = { 0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0 };

_Static_assert(KW_FRAME_BYTES_MAX < UINT_MAX, "zlib counts input in uInt");
_Static_assert(KW_DECOMPRESSED_BYTES_MAX < UINT_MAX / 2, "zlib's bound must fit a uInt");

static const char *const kw__names[] = {
    [KW_CODEC_NONE] = "none", [KW_CODEC_GZIP] = "gzip", [KW_CODEC_SNAPPY] = "snappy",
    [KW_CODEC_LZ4] = "lz4",   [KW_CODEC_ZSTD] = "zstd",
};

/* Stands in for a NULL source of length 0: the libraries want a pointer even then. */
static const uint8_t kw__empty_src[1];

/* --- The growing output of the streaming decoders ---------------------------------------- */

typedef struct kw__out {
    uint8_t *p;
    size_t len, cap;
    size_t max; /* out_max + 1: reaching it means the output is too long */
} kw__out;

static void kw__out_init(kw__out *o, size_t out_max)
{
    o->p = NULL;
    o->len = 0;
    o->cap = 0;
    o->max = out_max < SIZE_MAX ? out_max + 1 : SIZE_MAX;
}

/* Makes room for more output: MG_OK with cap > len, MG_ELIMIT when len already reached max (the
 * output is longer than out_max), MG_ENOMEM. */
static int kw__out_grow(kw__out *o, size_t src_len)
{
    if (o->len < o->cap)
        return MG_OK;
    if (o->cap >= o->max)
        return MG_ELIMIT;
    size_t want;
    if (o->cap == 0)
        want = src_len <= SIZE_MAX / 4 ? src_len * 4 : SIZE_MAX;
    else
        want = o->cap <= SIZE_MAX / 2 ? o->cap * 2 : SIZE_MAX;
    if (want < KW__GROW_BYTES_MIN)
        want = KW__GROW_BYTES_MIN;
    if (want > o->max)
        want = o->max;
    uint8_t *p = mg_realloc(o->p, want);
    if (p == NULL)
        return MG_ENOMEM;
    /* Zeroed, so that a decoder that copies from bytes it has not written (kw__lz4_decompress)
     * cannot hand out stale heap contents. */
    memset(p + o->cap, 0, want - o->cap);
    o->p = p;
    o->cap = want;
    return MG_OK;
}

static void kw__out_free_fn(void *data, void *arg)
{
    (void)arg;
    mg_free(data);
}

/* Hands the output out as an mg_buf (trimmed when more than a quarter is unused) or, on
 * failure, frees it. Returns MG_OK or MG_ENOMEM. */
static int kw__out_finish(kw__out *o, mg_buf **out)
{
    if (o->p == NULL) {
        /* Nothing was decoded (an empty stream): an empty buffer. */
        *out = mg_buf_new(0);
        return *out != NULL ? MG_OK : MG_ENOMEM;
    }
    if (o->cap - o->len > o->cap / 4) {
        uint8_t *p = mg_realloc(o->p, o->len);
        if (p != NULL) /* a failed trim keeps the roomy block, just as good */
            o->p = p;
    }
    mg_buf *b = mg_buf_wrap(o->p, o->len, kw__out_free_fn, NULL);
    if (b == NULL) {
        mg_free(o->p);
        o->p = NULL;
        return MG_ENOMEM;
    }
    o->p = NULL;
    *out = b;
    return MG_OK;
}

static void kw__out_drop(kw__out *o)
{
    mg_free(o->p);
    o->p = NULL;
}

/* --- gzip ---------------------------------------------------------------------------------- */

static int kw__gzip_decompress(const uint8_t *src, size_t src_len, kw__out *o)
{
    if (src_len == 0)
        return MG_ECORRUPT; /* not even one member */
    z_stream zs;
    mg_zstream_init(&zs);
    int rc = inflateInit2(&zs, KW__GZIP_WINDOW_BITS);
    if (rc != Z_OK) {
        MG_ASSERT(rc == Z_MEM_ERROR); /* Z_VERSION_ERROR: built against another zlib.h */
        return MG_ENOMEM;
    }
    zs.next_in = src;
    zs.avail_in = (uInt)src_len;
    int err = MG_OK;
    /* Each pass consumes input, produces output or grows the output; the output is bounded, and
     * so is the number of members (each takes at least 18 bytes of input). */
    for (;;) {
        err = kw__out_grow(o, src_len);
        if (err != MG_OK)
            break;
        size_t room = o->cap - o->len;
        zs.next_out = o->p + o->len;
        zs.avail_out = room < UINT_MAX ? (uInt)room : UINT_MAX;
        uInt avail_out_before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        o->len += avail_out_before - zs.avail_out;
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break; /* the last member ended with the input */
            /* Another member follows (or garbage, which its header check refuses). */
            if (inflateReset(&zs) != Z_OK) {
                err = MG_ECORRUPT;
                break;
            }
            continue;
        }
        if (rc == Z_OK)
            continue;
        if (rc == Z_BUF_ERROR && zs.avail_out == 0)
            continue; /* the output is full: grow it */
        /* Z_BUF_ERROR with room left: the input ended inside a member (truncated). */
        err = rc == Z_MEM_ERROR ? MG_ENOMEM : MG_ECORRUPT;
        break;
    }
    inflateEnd(&zs);
    return err;
}

static int kw__gzip_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    z_stream zs;
    mg_zstream_init(&zs);
    int rc =
        deflateInit2(&zs, KW__GZIP_LEVEL, Z_DEFLATED, KW__GZIP_WINDOW_BITS, 8, Z_DEFAULT_STRATEGY);
    if (rc == Z_MEM_ERROR)
        return MG_ENOMEM;
    MG_ASSERT(rc == Z_OK); /* Z_VERSION_ERROR would be a build against the wrong zlib.h */
    uLong bound = deflateBound(&zs, (uLong)src_len);
    MG_ASSERT(bound <= UINT_MAX);
    mg_buf *buf = mg_buf_new(bound);
    if (buf == NULL) {
        deflateEnd(&zs);
        return MG_ENOMEM;
    }
    zs.next_in = src;
    zs.avail_in = (uInt)src_len;
    zs.next_out = mg_buf_data(buf);
    zs.avail_out = (uInt)bound;
    rc = deflate(&zs, Z_FINISH);
    uLong written = zs.total_out;
    deflateEnd(&zs);
    /* deflateBound's room (gzip wrapper included) lets one Z_FINISH call write the whole member;
     * deflate allocates nothing after deflateInit2. */
    MG_ASSERT(rc == Z_STREAM_END && written <= bound);
    mg_buf_set_len(buf, written);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

/* --- snappy -------------------------------------------------------------------------------- */

static uint32_t kw__be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void kw__put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static bool kw__is_xerial(const uint8_t *src, size_t src_len)
{
    return src_len >= sizeof(kw__xerial_magic) &&
           memcmp(src, kw__xerial_magic, sizeof(kw__xerial_magic)) == 0;
}

/* Checks one raw snappy block completely (without writing anything) and adds its length to
 * *total, which must stay within out_max. */
static int kw__snappy_check_block(const uint8_t *p, size_t n, size_t out_max, size_t *total)
{
    size_t len;
    if (snappy_uncompressed_length((const char *)p, n, &len) != SNAPPY_OK)
        return MG_ECORRUPT;
    if (len > out_max - *total)
        return MG_ELIMIT;
    if (snappy_validate_compressed_buffer((const char *)p, n) != SNAPPY_OK)
        return MG_ECORRUPT;
    *total += len;
    return MG_OK;
}

/* Walks the xerial chunks: calls the check (dst NULL) or the decoding (dst non-NULL, room for
 * the total the check found) on each block. */
static int kw__xerial_walk(const uint8_t *src, size_t src_len, size_t out_max, size_t *total,
                           uint8_t *dst)
{
    if (src_len < KW__XERIAL_HEADER_BYTES)
        return MG_ECORRUPT;
    size_t pos = KW__XERIAL_HEADER_BYTES;
    size_t written = 0;
    /* Bounded: each chunk consumes at least 5 bytes (its length and a non-empty block). */
    while (pos < src_len) {
        if (src_len - pos < 4)
            return MG_ECORRUPT;
        uint32_t n = kw__be32(src + pos);
        pos += 4;
        if (n == 0 || n > INT32_MAX || n > src_len - pos)
            return MG_ECORRUPT;
        const uint8_t *block = src + pos;
        pos += n;
        if (dst == NULL) {
            MG_TRY(kw__snappy_check_block(block, n, out_max, total));
            continue;
        }
        size_t room = *total - written;
        if (snappy_uncompress((const char *)block, n, (char *)dst + written, &room) != SNAPPY_OK)
            return MG_ECORRUPT; /* validated before: not reached */
        written += room;
    }
    if (dst != NULL && written != *total)
        return MG_ECORRUPT;
    return MG_OK;
}

static int kw__snappy_decompress(const uint8_t *src, size_t src_len, size_t out_max, mg_buf **out)
{
    bool xerial = kw__is_xerial(src, src_len);
    size_t total = 0;
    if (xerial)
        MG_TRY(kw__xerial_walk(src, src_len, out_max, &total, NULL));
    else
        MG_TRY(kw__snappy_check_block(src, src_len, out_max, &total));
    mg_buf *buf = mg_buf_new(total);
    if (buf == NULL)
        return MG_ENOMEM;
    int err = MG_OK;
    if (xerial) {
        err = kw__xerial_walk(src, src_len, out_max, &total, mg_buf_data(buf));
    } else {
        size_t n = total;
        if (snappy_uncompress((const char *)src, src_len, (char *)mg_buf_data(buf), &n) !=
                SNAPPY_OK ||
            n != total)
            err = MG_ECORRUPT;
    }
    if (err != MG_OK) {
        mg_buf_unref(buf);
        return err;
    }
    mg_buf_set_len(buf, total);
    *out = buf;
    return MG_OK;
}

static int kw__snappy_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    size_t blocks = (src_len + KW__XERIAL_BLOCK_BYTES - 1) / KW__XERIAL_BLOCK_BYTES;
    size_t block_bound = snappy_max_compressed_length(KW__XERIAL_BLOCK_BYTES);
    MG_ASSERT(block_bound <= INT32_MAX);
    size_t bound = KW__XERIAL_HEADER_BYTES + blocks * (4 + block_bound);
    mg_buf *buf = mg_buf_new(bound);
    if (buf == NULL)
        return MG_ENOMEM;
    uint8_t *p = mg_buf_data(buf);
    memcpy(p, kw__xerial_magic, sizeof(kw__xerial_magic));
    kw__put_be32(p + 8, KW__XERIAL_VERSION);
    kw__put_be32(p + 12, KW__XERIAL_VERSION);
    size_t pos = KW__XERIAL_HEADER_BYTES;
    for (size_t off = 0; off < src_len; off += KW__XERIAL_BLOCK_BYTES) {
        size_t chunk =
            src_len - off < KW__XERIAL_BLOCK_BYTES ? src_len - off : KW__XERIAL_BLOCK_BYTES;
        size_t n = bound - pos - 4;
        snappy_status st = snappy_compress((const char *)src + off, chunk, (char *)p + pos + 4, &n);
        /* Fails only on a destination under snappy_max_compressed_length. */
        MG_ASSERT(st == SNAPPY_OK && n <= block_bound);
        kw__put_be32(p + pos, (uint32_t)n);
        pos += 4 + n;
    }
    mg_buf_set_len(buf, pos);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

/* --- lz4 ----------------------------------------------------------------------------------- */

static int kw__lz4_error(size_t rc)
{
    return LZ4F_getErrorCode(rc) == LZ4F_ERROR_allocation_failed ? MG_ENOMEM : MG_ECORRUPT;
}

/* liblz4's frame decoder allocates through these: zeroed memory from mg_calloc (see
 * kw__lz4_decompress). */
static void *kw__lz4_calloc(void *opaque, size_t size)
{
    (void)opaque;
    return mg_calloc(1, size);
}

static void kw__lz4_free(void *opaque, void *ptr)
{
    (void)opaque;
    mg_free(ptr);
}

static int kw__lz4_decompress(const uint8_t *src, size_t src_len, kw__out *o)
{
    if (src_len == 0)
        return MG_ECORRUPT; /* not even one frame */
    /* liblz4 1.9.4 accepts a match of offset 0, which the block format calls invalid, and
     * copies from the output position itself, bytes it has not written (src/client/compress.c
     * refuses such blocks in a first pass; a frame's blocks are not reachable that way). The
     * output grows zeroed (kw__out_grow) and the decoder's own buffers are allocated zeroed
     * here, so such a match can only repeat zeros or this input's own bytes, never stale heap
     * contents. */
    LZ4F_CustomMem mem = { kw__lz4_calloc, kw__lz4_calloc, kw__lz4_free, NULL };
    LZ4F_dctx *dctx = LZ4F_createDecompressionContext_advanced(mem, LZ4F_VERSION);
    if (dctx == NULL)
        return MG_ENOMEM;
    size_t pos = 0;
    size_t hint = 1; /* 0 once a frame has ended: the input may end there */
    int err = MG_OK;
    /* Each pass consumes input, produces output or grows the output; one that does none of
     * them with room to write means the input ended inside a frame. */
    for (;;) {
        err = kw__out_grow(o, src_len);
        if (err != MG_OK)
            break;
        size_t in_n = src_len - pos;
        size_t out_n = o->cap - o->len;
        size_t room = out_n;
        hint = LZ4F_decompress(dctx, o->p + o->len, &out_n, src + pos, &in_n, NULL);
        if (LZ4F_isError(hint)) {
            err = kw__lz4_error(hint);
            break;
        }
        pos += in_n;
        o->len += out_n;
        if (pos == src_len && hint == 0)
            break; /* the last frame ended with the input */
        if (pos == src_len && in_n == 0 && out_n < room) {
            err = MG_ECORRUPT; /* the input ended inside a frame */
            break;
        }
    }
    LZ4F_freeDecompressionContext(dctx);
    return err;
}

static int kw__lz4_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    size_t bound = LZ4F_compressFrameBound(src_len, &prefs);
    MG_ASSERT(!LZ4F_isError(bound));
    mg_buf *buf = mg_buf_new(bound);
    if (buf == NULL)
        return MG_ENOMEM;
    size_t n = LZ4F_compressFrame(mg_buf_data(buf), bound, src, src_len, &prefs);
    if (LZ4F_isError(n)) {
        mg_buf_unref(buf);
        /* With the bound's room, only an allocation inside liblz4 can fail. */
        return MG_ENOMEM;
    }
    mg_buf_set_len(buf, n);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

/* --- zstd ---------------------------------------------------------------------------------- */

static int kw__zstd_error(size_t rc)
{
    switch (ZSTD_getErrorCode(rc)) {
    case ZSTD_error_memory_allocation:
        return MG_ENOMEM;
    case ZSTD_error_frameParameter_windowTooLarge:
        return MG_ELIMIT;
    default:
        return MG_ECORRUPT;
    }
}

static int kw__zstd_decompress(const uint8_t *src, size_t src_len, size_t out_max, kw__out *o)
{
    if (src_len == 0)
        return MG_ECORRUPT; /* not even one frame */
    /* A first frame that says it is too long is refused before any work. */
    unsigned long long declared = ZSTD_getFrameContentSize(src, src_len);
    if (declared != ZSTD_CONTENTSIZE_ERROR && declared != ZSTD_CONTENTSIZE_UNKNOWN &&
        declared > out_max)
        return MG_ELIMIT;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (dctx == NULL)
        return MG_ENOMEM;
    size_t rc = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, KW__ZSTD_WINDOW_LOG_MAX);
    MG_ASSERT(!ZSTD_isError(rc));
    ZSTD_inBuffer in = { src, src_len, 0 };
    int err = MG_OK;
    /* As for lz4: every pass makes progress or the input ended inside a frame. */
    for (;;) {
        err = kw__out_grow(o, src_len);
        if (err != MG_OK)
            break;
        ZSTD_outBuffer ob = { o->p + o->len, o->cap - o->len, 0 };
        size_t in_before = in.pos;
        rc = ZSTD_decompressStream(dctx, &ob, &in);
        if (ZSTD_isError(rc)) {
            err = kw__zstd_error(rc);
            break;
        }
        o->len += ob.pos;
        if (in.pos == in.size && rc == 0)
            break; /* the last frame ended with the input */
        if (in.pos == in.size && in.pos == in_before && ob.pos < ob.size) {
            err = MG_ECORRUPT; /* the input ended inside a frame */
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    return err;
}

static int kw__zstd_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    size_t bound = ZSTD_compressBound(src_len);
    MG_ASSERT(!ZSTD_isError(bound));
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (cctx == NULL)
        return MG_ENOMEM;
    mg_buf *buf = mg_buf_new(bound);
    if (buf == NULL) {
        ZSTD_freeCCtx(cctx);
        return MG_ENOMEM;
    }
    size_t n = ZSTD_compressCCtx(cctx, mg_buf_data(buf), bound, src, src_len, KW__ZSTD_LEVEL);
    ZSTD_freeCCtx(cctx);
    if (ZSTD_isError(n)) {
        mg_buf_unref(buf);
        /* With ZSTD_compressBound's room, only the context's workspace can fail. */
        MG_ASSERT(ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation);
        return MG_ENOMEM;
    }
    mg_buf_set_len(buf, n);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

/* --- The API ------------------------------------------------------------------------------- */

static bool kw__codec_compressed(int codec)
{
    return codec >= KW_CODEC_GZIP && codec <= KW_CODEC_ZSTD;
}

int kw_decompress(int codec, const uint8_t *src, size_t src_len, size_t out_max, mg_buf **out)
{
    MG_ASSERT(out != NULL);
    MG_ASSERT(src != NULL || src_len == 0);
    *out = NULL;
    if (!kw__codec_compressed(codec))
        return MG_EINVAL;
    if (src_len > KW_FRAME_BYTES_MAX)
        return MG_ELIMIT;
    if (src == NULL)
        src = kw__empty_src;
    if (codec == KW_CODEC_SNAPPY)
        return kw__snappy_decompress(src, src_len, out_max, out);
    kw__out o;
    kw__out_init(&o, out_max);
    int err;
    switch (codec) {
    case KW_CODEC_GZIP:
        err = kw__gzip_decompress(src, src_len, &o);
        break;
    case KW_CODEC_LZ4:
        err = kw__lz4_decompress(src, src_len, &o);
        break;
    case KW_CODEC_ZSTD:
        err = kw__zstd_decompress(src, src_len, out_max, &o);
        break;
    default:
        MG_UNREACHABLE();
    }
    if (err == MG_OK && o.len > out_max)
        err = MG_ELIMIT; /* the spare byte was written */
    if (err != MG_OK) {
        kw__out_drop(&o);
        return err;
    }
    return kw__out_finish(&o, out);
}

int kw_compress(int codec, const uint8_t *src, size_t src_len, mg_buf **out)
{
    MG_ASSERT(out != NULL);
    MG_ASSERT(src != NULL || src_len == 0);
    *out = NULL;
    if (!kw__codec_compressed(codec))
        return MG_EINVAL;
    /* Nothing larger would be decompressed again by a default reader. */
    if (src_len > KW_DECOMPRESSED_BYTES_MAX)
        return MG_ELIMIT;
    if (src == NULL)
        src = kw__empty_src;
    switch (codec) {
    case KW_CODEC_GZIP:
        return kw__gzip_compress(src, src_len, out);
    case KW_CODEC_SNAPPY:
        return kw__snappy_compress(src, src_len, out);
    case KW_CODEC_LZ4:
        return kw__lz4_compress(src, src_len, out);
    case KW_CODEC_ZSTD:
        return kw__zstd_compress(src, src_len, out);
    default:
        MG_UNREACHABLE();
    }
}

/* --- Names --------------------------------------------------------------------------------- */

const char *kw_codec_name(int codec)
{
    return codec >= KW_CODEC_NONE && codec <= KW_CODEC_ZSTD ? kw__names[codec] : NULL;
}

int kw_codec_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int codec = KW_CODEC_NONE; codec <= KW_CODEC_ZSTD; codec++) {
        if (strcmp(name, kw__names[codec]) == 0)
            return codec;
    }
    return -1;
}
