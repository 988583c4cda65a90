/*
 * Compressed batches (declared in compress.h, which describes the format). zlib and brotli do
 * all the coding; this file only sizes buffers, bounds the output and maps errors.
 *
 * Design notes:
 *   1. Settings, chosen for speed because a batch is compressed on the push path, once per room
 *      and merge (GOIM's Job merges up to 20 messages or 1 s), and every recipient waits for it.
 *      Measured on a merged batch of 20 Bilibili-shaped DANMU_MSG packets (6953 bytes, one core):
 *      - zlib level 3 (CG_ZLIB_LEVEL): 1131 bytes in 18 us. Levels 1..3 use zlib's fast deflate
 *        strategy and 4..9 its lazy one; level 1 writes 1157 bytes in the same time, level 6
 *        1070 bytes in twice the time. Window and header are compress2's defaults (15 bits, a
 *        zlib header), which is what Bilibili's clients inflate.
 *      - brotli quality 5 (CG_BROTLI_QUALITY): 905 bytes in 51 us, the size qualities 6..9 reach
 *        (902..905 bytes) at 68 us to 18 ms; quality 3 writes 950 bytes in 23 us. Default window
 *        (22 bits); generic mode, as the inner packets mix binary headers and JSON.
 *   2. The encoder compresses into a scratch block of the codec's worst-case size, then
 *      cg_packet_encode_buf copies the result behind its header into an mg_buf of exactly the
 *      packet's length: the shared buffer lives as long as the slowest recipient's queue, so it
 *      should not carry the worst case's slack. The copy is of the compressed bytes only.
 *   3. The decoder grows its output by doubling, never past the caller's bound; at the bound it
 *      asks the codec for one more byte to tell "exactly the bound" from "more than the bound".
 *      Each step must consume input or produce output, so a stream that stalls is refused
 *      instead of looping. zlib's window is 32 KiB; brotli's ring buffer is at most 16 MiB
 *      (large windows stay disabled), so the codecs' own memory is bounded too.
 */
#include "chat_gateway/compress.h"

#include "chat_gateway/packet.h"
#include "common/alloc.h"
#include "common/assert.h"
#include "common/error.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <stdbool.h>
#include <string.h>
#include <zlib.h>

/* zlib level: see design note 1. */
#define CG_ZLIB_LEVEL         3
/* brotli quality: see design note 1. */
#define CG_BROTLI_QUALITY     5
/* First output size of the decoder, before doubling: a typical batch inflates 4 to 8 times. */
#define CG_DECODE_FIRST_BYTES (64u * 1024)

/* Checks that src[0, src_size) is whole packets back to back. */
static int cg__check_packets(const uint8_t *src, size_t src_size)
{
    cg_batch_iter it;
    cg_batch_iter_init(&it, src, src_size);
    for (;;) {
        cg_packet pk;
        int rc = cg_batch_next(&it, &pk);
        if (rc == MG_ENOTFOUND)
            return MG_OK;
        if (rc == MG_ELIMIT)
            return MG_ELIMIT;
        if (rc != MG_OK)
            return MG_EINVAL;
    }
}

int cg_compress_batch(uint16_t ver, const void *src, size_t src_size, uint32_t seq, mg_buf **out)
{
    *out = NULL;
    if ((ver != CG_VER_ZLIB && ver != CG_VER_BROTLI) || src == NULL || src_size == 0)
        return MG_EINVAL;
    if (src_size > CG_PACKET_BODY_BYTES_ABS_MAX)
        return MG_ELIMIT;
    MG_TRY(cg__check_packets(src, src_size));

    size_t bound = ver == CG_VER_ZLIB ? (size_t)compressBound((uLong)src_size)
                                      : BrotliEncoderMaxCompressedSize(src_size);
    MG_ASSERT(bound >= src_size);
    uint8_t *scratch = mg_malloc(bound);
    if (scratch == NULL)
        return MG_ENOMEM;
    size_t body_len = bound;
    int rc = MG_OK;
    if (ver == CG_VER_ZLIB) {
        uLongf n = (uLongf)bound;
        int zrc = compress2(scratch, &n, src, (uLong)src_size, CG_ZLIB_LEVEL);
        /* The destination has compressBound bytes, so only memory can fail. */
        if (zrc != Z_OK)
            rc = MG_ENOMEM;
        body_len = (size_t)n;
    } else {
        if (!BrotliEncoderCompress(CG_BROTLI_QUALITY, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC,
                                   src_size, src, &body_len, scratch))
            rc = MG_ENOMEM;
    }
    if (rc == MG_OK)
        rc = cg_packet_encode_buf(ver, CG_OP_SEND_MSG_REPLY, seq, scratch, body_len, out);
    mg_free(scratch);
    return rc;
}

/* The decoder's output: data[0, len) of cap bytes, never more than max. */
typedef struct cg__out {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
    uint8_t probe; /* the one byte asked for at the bound */
} cg__out;

/* Makes room for more output: *next and *avail describe where the codec writes next. At the
 * bound that is the probe byte. Returns MG_OK or MG_ENOMEM. */
static int cg__out_room(cg__out *o, uint8_t **next, size_t *avail)
{
    if (o->len == o->cap && o->cap < o->max) {
        size_t cap = o->cap == 0 ? CG_DECODE_FIRST_BYTES : o->cap * 2;
        if (cap > o->max)
            cap = o->max;
        uint8_t *data = mg_realloc(o->data, cap);
        if (data == NULL)
            return MG_ENOMEM;
        o->data = data;
        o->cap = cap;
    }
    if (o->len == o->cap) {
        *next = &o->probe;
        *avail = 1;
    } else {
        *next = o->data + o->len;
        *avail = o->cap - o->len;
    }
    return MG_OK;
}

/* Accounts for what the codec wrote after cg__out_room (avail is what it left unused). Returns
 * MG_OK, or MG_ELIMIT when the probe byte was written. */
static int cg__out_done(cg__out *o, size_t avail)
{
    if (o->len == o->cap)
        return avail == 0 ? MG_ELIMIT : MG_OK;
    o->len = o->cap - avail;
    return MG_OK;
}

static int cg__inflate_zlib(const uint8_t *src, size_t src_size, cg__out *o)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    int zrc = inflateInit(&zs);
    if (zrc != Z_OK)
        return zrc == Z_MEM_ERROR ? MG_ENOMEM : MG_EPROTO;
    zs.next_in = (Bytef *)src; /* zlib does not write through next_in */
    zs.avail_in = (uInt)src_size;
    int rc = MG_OK;
    for (;;) {
        uint8_t *next = NULL;
        size_t avail = 0;
        if ((rc = cg__out_room(o, &next, &avail)) != MG_OK)
            break;
        if (avail > UINT32_MAX)
            avail = UINT32_MAX;
        zs.next_out = next;
        zs.avail_out = (uInt)avail;
        uInt in_before = zs.avail_in;
        zrc = inflate(&zs, Z_NO_FLUSH);
        bool progress = zs.avail_in != in_before || zs.avail_out != avail;
        if ((rc = cg__out_done(o, zs.avail_out)) != MG_OK)
            break;
        if (zrc == Z_STREAM_END) {
            rc = zs.avail_in == 0 ? MG_OK : MG_EPROTO; /* trailing bytes */
            break;
        }
        if (zrc == Z_MEM_ERROR) {
            rc = MG_ENOMEM;
            break;
        }
        if ((zrc != Z_OK && zrc != Z_BUF_ERROR) || !progress) {
            rc = MG_EPROTO; /* corrupt, a dictionary asked for, or truncated */
            break;
        }
    }
    inflateEnd(&zs);
    return rc;
}

static int cg__inflate_brotli(const uint8_t *src, size_t src_size, cg__out *o)
{
    BrotliDecoderState *st = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (st == NULL)
        return MG_ENOMEM;
    const uint8_t *next_in = src;
    size_t avail_in = src_size;
    int rc = MG_OK;
    for (;;) {
        uint8_t *next = NULL;
        size_t avail = 0;
        if ((rc = cg__out_room(o, &next, &avail)) != MG_OK)
            break;
        size_t in_before = avail_in, out_before = avail;
        BrotliDecoderResult r =
            BrotliDecoderDecompressStream(st, &avail_in, &next_in, &avail, &next, NULL);
        bool progress = avail_in != in_before || avail != out_before;
        if ((rc = cg__out_done(o, avail)) != MG_OK)
            break;
        if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            rc = avail_in == 0 ? MG_OK : MG_EPROTO; /* trailing bytes */
            break;
        }
        if (r == BROTLI_DECODER_RESULT_ERROR) {
            BrotliDecoderErrorCode e = BrotliDecoderGetErrorCode(st);
            rc = e <= BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES &&
                         e >= BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES
                     ? MG_ENOMEM
                     : MG_EPROTO;
            break;
        }
        /* NEEDS_MORE_INPUT with all input given is a truncated stream. */
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT || !progress) {
            rc = MG_EPROTO;
            break;
        }
    }
    BrotliDecoderDestroyInstance(st);
    return rc;
}

static void cg__free_block(void *data, void *arg)
{
    (void)arg;
    mg_free(data);
}

int cg_compress_decode(uint16_t ver, const void *src, size_t src_size, size_t dst_bytes_max,
                       mg_buf **out)
{
    *out = NULL;
    if ((ver != CG_VER_ZLIB && ver != CG_VER_BROTLI) || src == NULL || src_size == 0)
        return MG_EINVAL;
    if (src_size > CG_PACKET_BODY_BYTES_ABS_MAX)
        return MG_ELIMIT;
    cg__out o = { .max = dst_bytes_max < CG_PACKET_BODY_BYTES_ABS_MAX
                             ? dst_bytes_max
                             : CG_PACKET_BODY_BYTES_ABS_MAX };
    int rc = ver == CG_VER_ZLIB ? cg__inflate_zlib(src, src_size, &o)
                                : cg__inflate_brotli(src, src_size, &o);
    if (rc == MG_OK && o.len == 0)
        rc = MG_EPROTO; /* a batch holds at least one packet */
    if (rc == MG_OK) {
        *out = mg_buf_wrap(o.data, o.len, cg__free_block, NULL);
        if (*out == NULL)
            rc = MG_ENOMEM;
    }
    if (rc != MG_OK)
        mg_free(o.data);
    return rc;
}
