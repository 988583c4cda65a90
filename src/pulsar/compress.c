/*
 * Pulsar's compression codecs (compress.h): NONE, LZ4, ZLIB, ZSTD and SNAPPY over a whole batch
 * payload, in the byte formats of Pulsar's Java and C++ clients, on Debian's liblz4, zlib,
 * libzstd and libsnappy.
 *
 * FORMATS, as Pulsar's clients write and read them (apache/pulsar:
 * pulsar-common/src/main/java/org/apache/pulsar/common/compression/CompressionCodecLZ4.java,
 * CompressionCodecZLib.java, CompressionCodecZstd.java, CompressionCodecSnappy.java;
 * apache/pulsar-client-cpp: lib/CompressionCodecLZ4.cc, CompressionCodecZLib.cc,
 * CompressionCodecSnappy.cc; the C++ ZSTD codec as pulsar-client-cpp/lib/CompressionCodecZstd.cc
 * in apache/pulsar, before the C++ client got its own repository). Nothing is added around the
 * compressed bytes by any codec: MessageMetadata.uncompressed_size carries the length.
 *
 *   LZ4     The raw LZ4 block format: no frame header, no magic, no length prefix. Java uses
 *           aircompressor's Lz4RawCompressor / Lz4RawDecompressor into a buffer of exactly
 *           uncompressed_size bytes; C++ writes with LZ4_compress_default and reads with
 *           LZ4_decompress_fast(uncompressed_size) (the unchecked decoder). Here:
 *           LZ4_compress_default, and LZ4_decompress_safe bounded by both lengths.
 *   ZLIB    The zlib-wrapped deflate stream (RFC 1950: 2-byte header, deflate, Adler-32), not raw
 *           deflate and not gzip. Java compresses with a default java.util.zip.Deflater (level 6,
 *           zlib wrapper), drained with SYNC_FLUSH and never finished: its streams end with the
 *           empty stored block 00 00 ff ff, with no final block and no Adler-32 trailer, and an
 *           empty payload compresses to zero bytes. Java reads with Inflater.inflate into
 *           uncompressed_size bytes and checks the count. C++ writes complete streams (zlib's
 *           compress(), default level) and reads with inflateInit2(MAX_WBITS) + inflate
 *           (Z_PARTIAL_FLUSH), accepting Z_OK as well as Z_STREAM_END, so both clients read both
 *           shapes. Here: complete streams at Z_DEFAULT_COMPRESSION are written; both shapes are
 *           read (rules below).
 *   ZSTD    A standard zstd frame (magic 28 b5 2f fd), compressed at level 3 by both clients
 *           (Java: ZSTD_COMPRESSION_LEVEL = 3 with aircompressor; C++: COMPRESSION_LEVEL = 3 with
 *           ZSTD_compress). C++ reads with ZSTD_decompress and requires exactly
 *           uncompressed_size bytes. Here: ZSTD_compressCCtx at level 3 (frame content size
 *           written, no checksum, as ZSTD_compress does); any standard frame is read, its
 *           checksum verified when it has one.
 *   SNAPPY  The raw snappy format (varint uncompressed length, then literal and copy elements),
 *           not the framing format (no stream identifier chunk, no CRCs). Java uses
 *           aircompressor's SnappyRawCompressor / SnappyRawDecompressor, C++ snappy::Compress /
 *           snappy::Uncompress. Here: snappy_compress / snappy_uncompress.
 *
 * DECODING TRUSTS NOTHING IN THE INPUT. uncompressed_len (from the metadata) is checked against
 * MG_PULSAR_UNCOMPRESSED_BYTES_MAX before anything is allocated; the output buffer holds exactly
 * that many bytes (ZLIB: one more, to see a stream that would go on) and only the bounded
 * decoders are used. The result is MG_ECORRUPT unless the data decodes to exactly
 * uncompressed_len bytes:
 *   NONE    src_len must equal uncompressed_len.
 *   LZ4     A first pass over the sequences refuses offset 0 (LZ4_decompress_safe would copy
 *           not-yet-written output bytes); then LZ4_decompress_safe must return exactly
 *           uncompressed_len (it fails on a block that reads past its end, writes past the
 *           output or reaches before its start).
 *   ZLIB    inflate (windowBits 15: the zlib header is required, so gzip and raw deflate fail
 *           its check) must produce exactly uncompressed_len bytes, and then either the stream
 *           ended (Adler-32 verified) with no byte left over, or the input ran out at a block
 *           boundary of a stream whose last block was not marked final (Java's flushed streams).
 *           A stream whose final block was seen but whose trailer is missing is truncated.
 *           Empty input is the empty payload only (Java's encoding of it).
 *   ZSTD    The first frame's declared content size, when present, must equal uncompressed_len;
 *           ZSTD_decompressDCtx into exactly uncompressed_len bytes must fill them.
 *   SNAPPY  The varint length at the front must equal uncompressed_len, and snappy_uncompress
 *           (which checks every element against both buffers) must succeed.
 * Compressed input longer than the libraries' int (LZ4) or uInt (zlib) counts is corrupt: no
 * Pulsar frame is that long (MG_PULSAR_FRAME_BYTES_MAX).
 *
 * MEMORY. Every result is a new mg_buf owned by the caller. Compression writes into a buffer of
 * the codec's worst-case bound and, when more than a quarter of it stays unused, hands out an
 * exact-size copy instead (a compressed batch waits in the producer's queue until acknowledged).
 * zlib's state comes from mg_malloc (fault injection reaches it); LZ4's compression state lives
 * on the stack (16 KiB); zstd's contexts are allocated by libzstd (a failure is MG_ENOMEM) and
 * snappy's scratch by libsnappy's C++ allocator (which cannot report failure through its C API).
 * Nothing is kept between calls, so every function is reentrant.
 */
#include "pulsar/compress.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"
#include "common/zstream.h"
#include "pulsar/limits.h"

#include <limits.h>
#include <lz4.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <zstd.h>
#include <zstd_errors.h>

/* Pulsar's Java and C++ clients both compress ZSTD at level 3. */
#define PW__ZSTD_LEVEL 3

/* zlib's data_type bits after inflate (zlib.h): the last block is being (or was) decoded; the
 * stream stopped at a block boundary. */
#define PW__ZLIB_LAST_BLOCK     64
#define PW__ZLIB_BLOCK_BOUNDARY 128

_Static_assert(MG_PULSAR_UNCOMPRESSED_BYTES_MAX <= LZ4_MAX_INPUT_SIZE, "LZ4 counts in int");
_Static_assert(MG_PULSAR_UNCOMPRESSED_BYTES_MAX < UINT_MAX / 2,
               "zlib counts in uInt, and its bounds and the spare output byte must fit");

static const char *const pw__names[] = {
    [MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE] = "NONE",
    [MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4] = "LZ4",
    [MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB] = "ZLIB",
    [MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD] = "ZSTD",
    [MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY] = "SNAPPY",
};

/* Stands in for a NULL source of length 0: the libraries want a pointer even then. */
static const uint8_t pw__empty_src[1];

static bool pw__codec_valid(int codec)
{
    return codec >= MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE &&
           codec <= MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY;
}

/* --- compression -------------------------------------------------------------------------- */

static int pw__lz4_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    int bound = LZ4_compressBound((int)src_len);
    MG_ASSERT(bound > 0);
    mg_buf *buf = mg_buf_new((size_t)bound);
    if (buf == NULL)
        return MG_ENOMEM;
    int n = LZ4_compress_default((const char *)src, (char *)mg_buf_data(buf), (int)src_len, bound);
    /* Cannot fail: the destination has the bound's room and the state is on the stack. */
    MG_ASSERT(n > 0 && n <= bound);
    mg_buf_set_len(buf, (size_t)n);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

static int pw__zlib_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    z_stream zs;
    mg_zstream_init(&zs);
    int rc = deflateInit(&zs, Z_DEFAULT_COMPRESSION);
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
    /* deflateBound's room lets one Z_FINISH call write the whole stream; deflate allocates
     * nothing after deflateInit. */
    MG_ASSERT(rc == Z_STREAM_END && written <= bound);
    mg_buf_set_len(buf, written);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

static int pw__zstd_compress(const uint8_t *src, size_t src_len, mg_buf **out)
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
    size_t n = ZSTD_compressCCtx(cctx, mg_buf_data(buf), bound, src, src_len, PW__ZSTD_LEVEL);
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

static int pw__snappy_compress(const uint8_t *src, size_t src_len, mg_buf **out)
{
    size_t bound = snappy_max_compressed_length(src_len);
    mg_buf *buf = mg_buf_new(bound);
    if (buf == NULL)
        return MG_ENOMEM;
    size_t n = bound;
    snappy_status st = snappy_compress((const char *)src, src_len, (char *)mg_buf_data(buf), &n);
    MG_ASSERT(st == SNAPPY_OK && n <= bound); /* fails only on a too small destination */
    mg_buf_set_len(buf, n);
    *out = mg_buf_fit(buf);
    return MG_OK;
}

int pw_compress(int codec, const uint8_t *src, size_t src_len, mg_buf **out)
{
    MG_ASSERT(out != NULL);
    MG_ASSERT(src != NULL || src_len == 0);
    *out = NULL;
    if (!pw__codec_valid(codec))
        return MG_EINVAL;
    /* Nothing larger could be decompressed again (by pw_decompress). */
    if (src_len > MG_PULSAR_UNCOMPRESSED_BYTES_MAX)
        return MG_ELIMIT;
    if (src == NULL)
        src = pw__empty_src;
    switch (codec) {
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE:
        *out = mg_buf_new_copy(src, src_len);
        return *out != NULL ? MG_OK : MG_ENOMEM;
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4:
        return pw__lz4_compress(src, src_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB:
        return pw__zlib_compress(src, src_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD:
        return pw__zstd_compress(src, src_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY:
        return pw__snappy_compress(src, src_len, out);
    default:
        MG_UNREACHABLE();
    }
}

/* --- decompression ------------------------------------------------------------------------ */

/* Reads an LZ4 length extension: bytes added to the 4-bit field while they are 255. Returns
 * false when the block ends inside it. The sum stays below 256 * src_len, no overflow. */
static bool pw__lz4_skip_length(const uint8_t **p, const uint8_t *end, size_t *length)
{
    uint8_t b;
    do {
        if (*p == end)
            return false;
        b = *(*p)++;
        *length += b;
    } while (b == 255);
    return true;
}

/* Walks the sequences of an LZ4 block (token; literal length and its extension; literals;
 * 2-byte little-endian offset; match length extension) and refuses offset 0, which the block
 * format calls invalid but LZ4_decompress_safe (1.9.4) accepts: it copies from the output
 * position itself, i.e. bytes not yet written, leaking stale heap contents into the payload.
 * Everything else (offsets reaching before the output, lengths past either end) is left to
 * the safe decoder. Returns false on offset 0 or a block that ends inside a sequence header. */
static bool pw__lz4_offsets_valid(const uint8_t *src, size_t src_len)
{
    const uint8_t *p = src;
    const uint8_t *end = src + src_len;
    while (p < end) {
        uint8_t token = *p++;
        size_t literal_len = token >> 4;
        if (literal_len == 15 && !pw__lz4_skip_length(&p, end, &literal_len))
            return false;
        if (literal_len > (size_t)(end - p))
            return false;
        p += literal_len;
        if (p == end)
            return true; /* the last sequence has literals only */
        if (end - p < 2)
            return false;
        uint16_t offset = (uint16_t)(p[0] | p[1] << 8);
        p += 2;
        if (offset == 0)
            return false;
        size_t match_len = token & 15;
        if (match_len == 15 && !pw__lz4_skip_length(&p, end, &match_len))
            return false;
    }
    return false; /* empty input: not even the final token */
}

static int pw__lz4_decompress(const uint8_t *src, size_t src_len, size_t len, mg_buf **out)
{
    if (src_len > INT_MAX || !pw__lz4_offsets_valid(src, src_len))
        return MG_ECORRUPT;
    mg_buf *buf = mg_buf_new(len);
    if (buf == NULL)
        return MG_ENOMEM;
    int n =
        LZ4_decompress_safe((const char *)src, (char *)mg_buf_data(buf), (int)src_len, (int)len);
    if (n < 0 || (size_t)n != len) {
        mg_buf_unref(buf);
        return MG_ECORRUPT;
    }
    mg_buf_set_len(buf, len);
    *out = buf;
    return MG_OK;
}

/* The verdict on one inflate(Z_FINISH) call over the whole input (see the header comment). */
static int pw__zlib_verdict(int rc, uLong produced, size_t len, uInt input_left, int data_type)
{
    if (rc == Z_MEM_ERROR)
        return MG_ENOMEM;
    if (produced != len)
        return MG_ECORRUPT;
    if (rc == Z_STREAM_END)
        return input_left == 0 ? MG_OK : MG_ECORRUPT;
    /* Not ended: acceptable only as a flushed, unfinished stream (Pulsar's Java client). */
    if (rc == Z_BUF_ERROR && input_left == 0 && (data_type & PW__ZLIB_LAST_BLOCK) == 0 &&
        (data_type & PW__ZLIB_BLOCK_BOUNDARY) != 0)
        return MG_OK;
    return MG_ECORRUPT;
}

static int pw__zlib_decompress(const uint8_t *src, size_t src_len, size_t len, mg_buf **out)
{
    if (src_len == 0) {
        /* Pulsar's Java client writes no bytes at all for an empty payload. */
        if (len != 0)
            return MG_ECORRUPT;
        *out = mg_buf_new(0);
        return *out != NULL ? MG_OK : MG_ENOMEM;
    }
    if (src_len > UINT_MAX)
        return MG_ECORRUPT;
    /* One spare byte: a stream holding more than len bytes fills it. */
    mg_buf *buf = mg_buf_new(len + 1);
    if (buf == NULL)
        return MG_ENOMEM;
    z_stream zs;
    mg_zstream_init(&zs);
    zs.next_in = src;
    zs.avail_in = (uInt)src_len;
    int rc = inflateInit(&zs);
    if (rc != Z_OK) {
        mg_buf_unref(buf);
        MG_ASSERT(rc == Z_MEM_ERROR); /* Z_VERSION_ERROR would be a build against the wrong
                                         zlib.h */
        return MG_ENOMEM;
    }
    zs.next_out = mg_buf_data(buf);
    zs.avail_out = (uInt)(len + 1);
    rc = inflate(&zs, Z_FINISH);
    int err = pw__zlib_verdict(rc, zs.total_out, len, zs.avail_in, zs.data_type);
    inflateEnd(&zs);
    if (err != MG_OK) {
        mg_buf_unref(buf);
        return err;
    }
    mg_buf_set_len(buf, len);
    *out = buf;
    return MG_OK;
}

static int pw__zstd_decompress(const uint8_t *src, size_t src_len, size_t len, mg_buf **out)
{
    unsigned long long declared = ZSTD_getFrameContentSize(src, src_len);
    if (declared == ZSTD_CONTENTSIZE_ERROR)
        return MG_ECORRUPT;
    if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != len)
        return MG_ECORRUPT;
    mg_buf *buf = mg_buf_new(len);
    if (buf == NULL)
        return MG_ENOMEM;
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (dctx == NULL) {
        mg_buf_unref(buf);
        return MG_ENOMEM;
    }
    size_t n = ZSTD_decompressDCtx(dctx, mg_buf_data(buf), len, src, src_len);
    ZSTD_freeDCtx(dctx);
    int err = MG_OK;
    if (ZSTD_isError(n))
        err = ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? MG_ENOMEM : MG_ECORRUPT;
    else if (n != len)
        err = MG_ECORRUPT;
    if (err != MG_OK) {
        mg_buf_unref(buf);
        return err;
    }
    mg_buf_set_len(buf, len);
    *out = buf;
    return MG_OK;
}

static int pw__snappy_decompress(const uint8_t *src, size_t src_len, size_t len, mg_buf **out)
{
    size_t declared;
    if (snappy_uncompressed_length((const char *)src, src_len, &declared) != SNAPPY_OK ||
        declared != len)
        return MG_ECORRUPT;
    mg_buf *buf = mg_buf_new(len);
    if (buf == NULL)
        return MG_ENOMEM;
    size_t n = len;
    if (snappy_uncompress((const char *)src, src_len, (char *)mg_buf_data(buf), &n) != SNAPPY_OK ||
        n != len) {
        mg_buf_unref(buf);
        return MG_ECORRUPT;
    }
    mg_buf_set_len(buf, len);
    *out = buf;
    return MG_OK;
}

int pw_decompress(int codec, const uint8_t *src, size_t src_len, size_t uncompressed_len,
                  mg_buf **out)
{
    MG_ASSERT(out != NULL);
    MG_ASSERT(src != NULL || src_len == 0);
    *out = NULL;
    if (!pw__codec_valid(codec))
        return MG_EINVAL;
    if (uncompressed_len > MG_PULSAR_UNCOMPRESSED_BYTES_MAX)
        return MG_ELIMIT;
    if (src == NULL)
        src = pw__empty_src;
    switch (codec) {
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE:
        if (src_len != uncompressed_len)
            return MG_ECORRUPT;
        *out = mg_buf_new_copy(src, src_len);
        return *out != NULL ? MG_OK : MG_ENOMEM;
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4:
        return pw__lz4_decompress(src, src_len, uncompressed_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB:
        return pw__zlib_decompress(src, src_len, uncompressed_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD:
        return pw__zstd_decompress(src, src_len, uncompressed_len, out);
    case MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY:
        return pw__snappy_decompress(src, src_len, uncompressed_len, out);
    default:
        MG_UNREACHABLE();
    }
}

/* --- names -------------------------------------------------------------------------------- */

const char *pw_compression_name(int codec)
{
    return pw__codec_valid(codec) ? pw__names[codec] : NULL;
}

int pw_compression_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int codec = MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE;
         codec <= MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY; codec++) {
        if (strcasecmp(name, pw__names[codec]) == 0)
            return codec;
    }
    return -1;
}
