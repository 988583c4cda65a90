/*
 * Message sets of magic 0 and 1 (Kafka before 0.11), read into the records of a batch of magic 2,
 * for Produce v0-v2 (kw_message_set_to_records in wire.h).
 *
 * Why the shim reads them at all: librdkafka up to 2.11 only compresses with gzip, snappy or lz4
 * when the broker's Produce versions start at 0 (it asks whether Produce [0, 0] is served), so
 * a broker that advertised Produce 3-7 would only ever receive uncompressed batches from it.
 * Advertising Produce 0-7 means serving v0-v2 and their message sets too.
 *
 *   message set: { offset i64, message_size i32, message }*
 *   message:     crc u32 (CRC-32, the zlib one, over magic to the end), magic i8 (0 or 1),
 *                attributes i8 (bits 0-2: codec; bit 3, magic 1: LogAppendTime),
 *                timestamp i64 (magic 1 only), key bytes (i32 length, -1 null),
 *                value bytes (i32 length, -1 null)
 *
 * A compressed message's value is itself a message set of the inner messages (one level deep,
 * as Kafka writes them); its codec is gzip, snappy or lz4 (magic 0's lz4 framing had a wrong
 * header checksum, KAFKA-3160: such data does not decompress and is refused as corrupt).
 */
#include "kafka/compress.h"
#include "kafka/wire.h"

#include "common/buf.h"
#include "common/error.h"

#include <string.h>
#include <zlib.h>

/* The smallest message: crc, magic, attributes, key length, value length. */
#define LEGACY_MESSAGE_BYTES_MIN 14u

typedef struct legacy_out {
    kw_writer *w;
    int32_t count;
    int64_t base_ts;
    int64_t max_ts;
    size_t out_max;
} legacy_out;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int read_set(const uint8_t *p, size_t n, legacy_out *o, int depth)
{
    kw_reader r;
    kw_reader_init(&r, p, n);
    while (kw_reader_left(&r) > 0) {
        if (kw_reader_left(&r) < 12)
            return MG_EPROTO; /* a trailing partial message */
        kw_read_i64(&r);      /* offset: the broker assigns offsets */
        int32_t size = kw_read_i32(&r);
        if (size < (int32_t)LEGACY_MESSAGE_BYTES_MIN || (size_t)size > kw_reader_left(&r))
            return MG_EPROTO;
        const uint8_t *m = r.p + r.pos;
        r.pos += (size_t)size;
        uint32_t crc = be32(m);
        if ((uint32_t)crc32(0, m + 4, (uInt)(size - 4)) != crc)
            return MG_ECORRUPT;
        kw_reader mr;
        kw_reader_init(&mr, m + 4, (size_t)size - 4);
        int8_t magic = kw_read_i8(&mr);
        int8_t attributes = kw_read_i8(&mr);
        if (magic != 0 && magic != 1)
            return MG_EPROTO;
        int64_t ts = magic == 1 ? kw_read_i64(&mr) : -1;
        int32_t klen = kw_read_i32(&mr);
        const uint8_t *key = mr.p + mr.pos;
        if (klen > 0 && (size_t)klen <= kw_reader_left(&mr))
            mr.pos += (size_t)klen;
        else if (klen > 0 || klen < -1)
            return MG_EPROTO;
        int32_t vlen = kw_read_i32(&mr);
        const uint8_t *value = mr.p + mr.pos;
        if (vlen > 0 && (size_t)vlen <= kw_reader_left(&mr))
            mr.pos += (size_t)vlen;
        else if (vlen > 0 || vlen < -1)
            return MG_EPROTO;
        if (kw_reader_error(&mr) != MG_OK || kw_reader_left(&mr) != 0)
            return MG_EPROTO;
        int codec = attributes & 0x7;
        if (codec != KW_CODEC_NONE) {
            if (depth > 0 || codec > KW_CODEC_LZ4 || vlen <= 0)
                return MG_EPROTO;
            mg_buf *inner = NULL;
            int rc = kw_decompress(codec, value, (size_t)vlen, o->out_max, &inner);
            if (rc != MG_OK)
                return rc;
            rc = read_set(mg_buf_data(inner), mg_buf_len(inner), o, depth + 1);
            mg_buf_unref(inner);
            if (rc != MG_OK)
                return rc;
            continue;
        }
        if (o->count == KW_RECORDS_MAX)
            return MG_ELIMIT;
        if (o->count == 0)
            o->base_ts = ts;
        if (ts > o->max_ts)
            o->max_ts = ts;
        kw_write_record(o->w, ts - o->base_ts, o->count, klen >= 0 ? key : NULL, klen,
                        vlen >= 0 ? value : NULL, vlen, NULL, 0);
        if (o->w->error != MG_OK)
            return o->w->error;
        o->count++;
    }
    return kw_reader_error(&r) != MG_OK ? MG_EPROTO : MG_OK;
}

int kw_message_set_to_records(const uint8_t *p, size_t n, size_t out_max, kw_writer *records,
                              kw_record_batch *out)
{
    legacy_out o = { records, 0, -1, -1, out_max };
    int rc = read_set(p, n, &o, 0);
    if (rc != MG_OK)
        return rc;
    if (o.count == 0)
        return MG_EPROTO;
    memset(out, 0, sizeof(*out));
    out->base_offset = 0;
    out->attributes = 0;
    out->last_offset_delta = o.count - 1;
    out->base_timestamp = o.base_ts;
    out->max_timestamp = o.max_ts;
    out->producer_id = -1;
    out->producer_epoch = -1;
    out->base_sequence = -1;
    out->records_count = o.count;
    out->records = records->buf;
    out->records_len = records->len;
    return MG_OK;
}
