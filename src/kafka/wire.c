/*
 * The Kafka protocol codec (wire.h): frames, primitives, headers, ApiVersions.
 *
 * Written here rather than taken from a library: Debian's librdkafka is a client (it encodes
 * requests and decodes responses, the opposite of a broker, and exposes neither), and no
 * maintained C library of the broker side is packaged. The format is small and fixed (Kafka's
 * protocol guide); every read is bounds-checked through one reader with a sticky error.
 */
#include "kafka/wire.h"

#include "common/alloc.h"
#include "common/assert.h"
#include "common/crc32c.h"
#include "common/error.h"

#include <string.h>

/* --- Frames ---------------------------------------------------------------------------------- */

int kw_frame_size(const uint8_t *p, size_t n, size_t frame_bytes_max, size_t *frame_len)
{
    if (n < 4)
        return MG_EAGAIN;
    int32_t size = (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
                             (uint32_t)p[3]);
    if (size < (int32_t)KW_REQUEST_HEADER_BYTES_MIN)
        return MG_EPROTO;
    if (frame_bytes_max == 0 || frame_bytes_max > KW_FRAME_BYTES_MAX)
        frame_bytes_max = KW_FRAME_BYTES_MAX;
    if ((size_t)size + 4 > frame_bytes_max)
        return MG_ELIMIT;
    *frame_len = (size_t)size + 4;
    return MG_OK;
}

/* --- Reading --------------------------------------------------------------------------------- */

void kw_reader_init(kw_reader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->error = MG_OK;
}

int kw_reader_error(const kw_reader *r)
{
    return r->error;
}

size_t kw_reader_left(const kw_reader *r)
{
    return r->error != MG_OK ? 0 : r->len - r->pos;
}

/* The next n bytes, or NULL (and the sticky error) when they are not there. */
static const uint8_t *take(kw_reader *r, size_t n)
{
    if (r->error != MG_OK || r->len - r->pos < n) {
        r->error = MG_EPROTO;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

static uint64_t read_be(kw_reader *r, size_t n)
{
    const uint8_t *q = take(r, n);
    uint64_t v = 0;
    for (size_t i = 0; q != NULL && i < n; i++)
        v = v << 8 | q[i];
    return v;
}

int8_t kw_read_i8(kw_reader *r)
{
    return (int8_t)read_be(r, 1);
}

int16_t kw_read_i16(kw_reader *r)
{
    return (int16_t)read_be(r, 2);
}

int32_t kw_read_i32(kw_reader *r)
{
    return (int32_t)read_be(r, 4);
}

int64_t kw_read_i64(kw_reader *r)
{
    return (int64_t)read_be(r, 8);
}

/* An unsigned LEB128 of at most max_bytes bytes. */
static uint64_t read_leb(kw_reader *r, size_t max_bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < max_bytes; i++) {
        const uint8_t *q = take(r, 1);
        if (q == NULL)
            return 0;
        v |= (uint64_t)(*q & 0x7f) << (7 * i);
        if ((*q & 0x80) == 0)
            return v;
    }
    r->error = MG_EPROTO; /* longer than its type */
    return 0;
}

uint32_t kw_read_uvarint(kw_reader *r)
{
    uint64_t v = read_leb(r, 5);
    if (v > UINT32_MAX) {
        r->error = MG_EPROTO;
        return 0;
    }
    return (uint32_t)v;
}

int32_t kw_read_varint(kw_reader *r)
{
    uint32_t u = kw_read_uvarint(r);
    return (int32_t)((u >> 1) ^ (~(u & 1) + 1));
}

int64_t kw_read_varlong(kw_reader *r)
{
    uint64_t u = read_leb(r, 10);
    return (int64_t)((u >> 1) ^ (~(u & 1) + 1));
}

static kw_str read_str(kw_reader *r, int64_t len)
{
    kw_str s = { NULL, -1 };
    if (r->error != MG_OK || len < -1 || len > INT32_MAX) {
        r->error = MG_EPROTO;
        return s;
    }
    if (len == -1)
        return s;
    const uint8_t *q = take(r, (size_t)len);
    if (q == NULL)
        return s;
    s.ptr = (const char *)q;
    s.len = (int32_t)len;
    return s;
}

kw_str kw_read_string(kw_reader *r)
{
    int16_t len = kw_read_i16(r);
    return read_str(r, len);
}

kw_str kw_read_compact_string(kw_reader *r)
{
    uint32_t len1 = kw_read_uvarint(r);
    return read_str(r, (int64_t)len1 - 1);
}

void kw_skip_tagged_fields(kw_reader *r)
{
    uint32_t count = kw_read_uvarint(r);
    /* Each field takes at least 2 bytes, so the count is bounded by what is left. */
    if (count > kw_reader_left(r) / 2) {
        r->error = MG_EPROTO;
        return;
    }
    for (uint32_t i = 0; i < count && r->error == MG_OK; i++) {
        (void)kw_read_uvarint(r); /* tag */
        uint32_t size = kw_read_uvarint(r);
        (void)take(r, size);
    }
}

/* --- Writing --------------------------------------------------------------------------------- */

void kw_writer_init(kw_writer *w, size_t max)
{
    memset(w, 0, sizeof(*w));
    w->max = max == 0 || max > KW_FRAME_BYTES_MAX ? KW_FRAME_BYTES_MAX : max;
}

void kw_writer_free(kw_writer *w)
{
    mg_free(w->buf);
    memset(w, 0, sizeof(*w));
}

int kw_writer_error(const kw_writer *w)
{
    return w->error;
}

/* Room for n more bytes, or NULL (and the sticky error). */
static uint8_t *room(kw_writer *w, size_t n)
{
    if (w->error != MG_OK)
        return NULL;
    if (n > w->max - w->len) {
        w->error = MG_ELIMIT;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        if (cap > w->max)
            cap = w->max;
        uint8_t *b = mg_realloc(w->buf, cap);
        if (b == NULL) {
            w->error = MG_ENOMEM;
            return NULL;
        }
        w->buf = b;
        w->cap = cap;
    }
    uint8_t *q = w->buf + w->len;
    w->len += n;
    return q;
}

static void write_be(kw_writer *w, uint64_t v, size_t n)
{
    uint8_t *q = room(w, n);
    for (size_t i = 0; q != NULL && i < n; i++)
        q[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

void kw_write_i8(kw_writer *w, int8_t v)
{
    write_be(w, (uint8_t)v, 1);
}

void kw_write_i16(kw_writer *w, int16_t v)
{
    write_be(w, (uint16_t)v, 2);
}

void kw_write_i32(kw_writer *w, int32_t v)
{
    write_be(w, (uint32_t)v, 4);
}

void kw_write_i64(kw_writer *w, int64_t v)
{
    write_be(w, (uint64_t)v, 8);
}

static void write_leb(kw_writer *w, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        tmp[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v != 0 && n < sizeof(tmp));
    kw_write_bytes(w, tmp, n);
}

void kw_write_uvarint(kw_writer *w, uint32_t v)
{
    write_leb(w, v);
}

void kw_write_varint(kw_writer *w, int32_t v)
{
    write_leb(w, (uint32_t)(((uint32_t)v << 1) ^ (uint32_t)(v >> 31)));
}

void kw_write_varlong(kw_writer *w, int64_t v)
{
    write_leb(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void kw_write_bytes(kw_writer *w, const void *p, size_t n)
{
    uint8_t *q = room(w, n);
    if (q != NULL && n > 0)
        memcpy(q, p, n);
}

void kw_write_string(kw_writer *w, const char *s)
{
    if (s == NULL) {
        kw_write_i16(w, -1);
        return;
    }
    size_t n = strlen(s);
    if (n > INT16_MAX) {
        w->error = w->error != MG_OK ? w->error : MG_ELIMIT;
        return;
    }
    kw_write_i16(w, (int16_t)n);
    kw_write_bytes(w, s, n);
}

void kw_write_compact_string(kw_writer *w, const char *s)
{
    if (s == NULL) {
        kw_write_uvarint(w, 0);
        return;
    }
    size_t n = strlen(s);
    if (n >= UINT32_MAX) {
        w->error = w->error != MG_OK ? w->error : MG_ELIMIT;
        return;
    }
    kw_write_uvarint(w, (uint32_t)n + 1);
    kw_write_bytes(w, s, n);
}

void kw_write_empty_tagged_fields(kw_writer *w)
{
    kw_write_uvarint(w, 0);
}

void kw_writer_patch_size(kw_writer *w, size_t at)
{
    if (w->error != MG_OK)
        return;
    MG_ASSERT(at + 4 <= w->len);
    uint32_t size = (uint32_t)(w->len - at - 4);
    w->buf[at] = (uint8_t)(size >> 24);
    w->buf[at + 1] = (uint8_t)(size >> 16);
    w->buf[at + 2] = (uint8_t)(size >> 8);
    w->buf[at + 3] = (uint8_t)size;
}

/* --- Headers --------------------------------------------------------------------------------- */

int kw_request_header_version(int16_t api_key, int16_t api_version)
{
    if (api_key == KW_API_API_VERSIONS)
        return api_version >= 3 ? 2 : 1;
    return 1;
}

void kw_read_request_header(kw_reader *r, kw_request_header *out)
{
    memset(out, 0, sizeof(*out));
    out->api_key = kw_read_i16(r);
    out->api_version = kw_read_i16(r);
    out->correlation_id = kw_read_i32(r);
    out->client_id = kw_read_string(r);
    if (kw_request_header_version(out->api_key, out->api_version) >= 2)
        kw_skip_tagged_fields(r);
}

/* --- ApiVersions ----------------------------------------------------------------------------- */

void kw_write_api_versions_response(kw_writer *w, int32_t correlation_id, int16_t version,
                                    int16_t error_code, const kw_api_range *ranges, size_t count)
{
    MG_ASSERT(version >= 0 && version <= KW_API_VERSIONS_MAX_VERSION);
    size_t at = w->len;
    kw_write_i32(w, 0);              /* the size, patched below */
    kw_write_i32(w, correlation_id); /* response header v0 at every version */
    kw_write_i16(w, error_code);
    bool flexible = version >= 3;
    if (flexible)
        kw_write_uvarint(w, (uint32_t)count + 1);
    else
        kw_write_i32(w, (int32_t)count);
    for (size_t i = 0; i < count; i++) {
        kw_write_i16(w, ranges[i].api_key);
        kw_write_i16(w, ranges[i].min_version);
        kw_write_i16(w, ranges[i].max_version);
        if (flexible)
            kw_write_empty_tagged_fields(w);
    }
    if (version >= 1)
        kw_write_i32(w, 0); /* throttle_time_ms */
    if (flexible)
        kw_write_empty_tagged_fields(w);
    kw_writer_patch_size(w, at);
}

/* --- Record batches ------------------------------------------------------------------------- */

/* Offset of attributes in a batch: what the CRC covers starts there. */
#define BATCH_CRC_FROM 21u

int kw_record_batch_parse(const uint8_t *p, size_t n, kw_record_batch *out, size_t *batch_len)
{
    memset(out, 0, sizeof(*out));
    if (n < KW_RECORD_BATCH_HEADER_BYTES)
        return MG_EPROTO;
    kw_reader r;
    kw_reader_init(&r, p, n);
    out->base_offset = kw_read_i64(&r);
    int32_t length = kw_read_i32(&r);
    out->partition_leader_epoch = kw_read_i32(&r);
    int8_t magic = kw_read_i8(&r);
    out->crc = (uint32_t)kw_read_i32(&r);
    out->attributes = kw_read_i16(&r);
    out->last_offset_delta = kw_read_i32(&r);
    out->base_timestamp = kw_read_i64(&r);
    out->max_timestamp = kw_read_i64(&r);
    out->producer_id = kw_read_i64(&r);
    out->producer_epoch = kw_read_i16(&r);
    out->base_sequence = kw_read_i32(&r);
    out->records_count = kw_read_i32(&r);
    if (kw_reader_error(&r) != MG_OK || magic != 2 ||
        length < (int32_t)(KW_RECORD_BATCH_HEADER_BYTES - 12) || (size_t)length > n - 12)
        return MG_EPROTO;
    size_t total = (size_t)length + 12;
    /* The checksum before the fields it covers: a damaged batch is CORRUPT_MESSAGE. */
    if (mg_crc32c(0, p + BATCH_CRC_FROM, total - BATCH_CRC_FROM) != out->crc)
        return MG_ECORRUPT;
    if (out->records_count < 0 || out->records_count > KW_RECORDS_MAX)
        return MG_EPROTO;
    out->records = p + KW_RECORD_BATCH_HEADER_BYTES;
    out->records_len = total - KW_RECORD_BATCH_HEADER_BYTES;
    *batch_len = total;
    return MG_OK;
}

static kw_str read_varint_bytes(kw_reader *r)
{
    int32_t len = kw_read_varint(r);
    return read_str(r, len);
}

void kw_read_record(kw_reader *r, kw_record *out)
{
    memset(out, 0, sizeof(*out));
    int32_t length = kw_read_varint(r);
    if (length < 0 || (size_t)length > kw_reader_left(r)) {
        r->error = MG_EPROTO;
        return;
    }
    size_t end = r->pos + (size_t)length;
    out->attributes = kw_read_i8(r);
    out->timestamp_delta = kw_read_varlong(r);
    out->offset_delta = kw_read_varint(r);
    out->key = read_varint_bytes(r);
    out->value = read_varint_bytes(r);
    int32_t headers = kw_read_varint(r);
    if (r->error != MG_OK || headers < 0 || r->pos > end || (size_t)headers > (end - r->pos) / 2) {
        r->error = MG_EPROTO;
        return;
    }
    out->header_count = (uint32_t)headers;
    out->headers = r->p + r->pos;
    out->headers_len = end - r->pos;
    /* The headers are read by kw_read_record_header; here they are only checked to end where
     * the record's length says. */
    kw_reader h;
    kw_reader_init(&h, out->headers, out->headers_len);
    for (uint32_t i = 0; i < out->header_count && h.error == MG_OK; i++) {
        kw_str k, v;
        kw_read_record_header(&h, &k, &v);
    }
    if (h.error != MG_OK || kw_reader_left(&h) != 0) {
        r->error = MG_EPROTO;
        return;
    }
    r->pos = end;
}

void kw_read_record_header(kw_reader *r, kw_str *key, kw_str *value)
{
    *key = read_varint_bytes(r);
    if (key->len < 0)
        r->error = MG_EPROTO; /* a header's key is never null */
    *value = read_varint_bytes(r);
}

void kw_writer_reserve(kw_writer *w, size_t n)
{
    size_t len = w->len;
    if (room(w, n) != NULL)
        w->len = len;
}

size_t kw_record_batch_begin(kw_writer *w)
{
    size_t at = w->len;
    uint8_t *q = room(w, KW_RECORD_BATCH_HEADER_BYTES);
    if (q != NULL)
        memset(q, 0, KW_RECORD_BATCH_HEADER_BYTES);
    return at;
}

void kw_record_batch_end(kw_writer *w, size_t at, const kw_record_batch *b)
{
    if (w->error != MG_OK)
        return;
    MG_ASSERT(at + KW_RECORD_BATCH_HEADER_BYTES <= w->len);
    /* The header, written over the placeholder: the writer's length is where the records end. */
    size_t end = w->len;
    w->len = at;
    kw_write_i64(w, b->base_offset);
    kw_write_i32(w, 0); /* batchLength, patched below */
    kw_write_i32(w, b->partition_leader_epoch);
    kw_write_i8(w, 2);
    kw_write_i32(w, 0); /* crc, computed below */
    kw_write_i16(w, b->attributes);
    kw_write_i32(w, b->last_offset_delta);
    kw_write_i64(w, b->base_timestamp);
    kw_write_i64(w, b->max_timestamp);
    kw_write_i64(w, b->producer_id);
    kw_write_i16(w, b->producer_epoch);
    kw_write_i32(w, b->base_sequence);
    kw_write_i32(w, b->records_count);
    w->len = end;
    kw_writer_patch_size(w, at + 8);
    uint32_t crc = mg_crc32c(0, w->buf + at + BATCH_CRC_FROM, w->len - at - BATCH_CRC_FROM);
    uint8_t *q = w->buf + at + 17;
    q[0] = (uint8_t)(crc >> 24);
    q[1] = (uint8_t)(crc >> 16);
    q[2] = (uint8_t)(crc >> 8);
    q[3] = (uint8_t)crc;
}

void kw_write_record_batch(kw_writer *w, const kw_record_batch *b, const void *records,
                           size_t records_len)
{
    size_t at = kw_record_batch_begin(w);
    kw_write_bytes(w, records, records_len);
    kw_record_batch_end(w, at, b);
}

/* The body of a record, which its varint length precedes. */
static void write_record_body(kw_writer *w, int64_t timestamp_delta, int32_t offset_delta,
                              const void *key, int32_t key_len, const void *value,
                              int32_t value_len, const char *const *headers, uint32_t count)
{
    kw_write_i8(w, 0);
    kw_write_varlong(w, timestamp_delta);
    kw_write_varint(w, offset_delta);
    kw_write_varint(w, key == NULL ? -1 : key_len);
    if (key != NULL)
        kw_write_bytes(w, key, (size_t)key_len);
    kw_write_varint(w, value == NULL ? -1 : value_len);
    if (value != NULL)
        kw_write_bytes(w, value, (size_t)value_len);
    kw_write_varint(w, (int32_t)count);
    for (uint32_t i = 0; i < count; i++) {
        for (int j = 0; j < 2; j++) {
            const char *s = headers[2 * i + (uint32_t)j];
            size_t n = strlen(s);
            kw_write_varint(w, (int32_t)n);
            kw_write_bytes(w, s, n);
        }
    }
}

/* Bytes of v as a zigzag varint (64-bit). */
static size_t zigzag_size(int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

void kw_write_record(kw_writer *w, int64_t timestamp_delta, int32_t offset_delta, const void *key,
                     int32_t key_len, const void *value, int32_t value_len,
                     const char *const *headers, uint32_t header_count)
{
    /* The length comes first: computed from the fields, so nothing is written twice. */
    int32_t kl = key == NULL ? -1 : key_len;
    int32_t vl = value == NULL ? -1 : value_len;
    size_t len = 1 + zigzag_size(timestamp_delta) + zigzag_size(offset_delta) + zigzag_size(kl) +
                 (kl > 0 ? (size_t)kl : 0) + zigzag_size(vl) + (vl > 0 ? (size_t)vl : 0) +
                 zigzag_size((int64_t)header_count);
    for (uint32_t i = 0; i < 2 * header_count; i++) {
        size_t n = strlen(headers[i]);
        len += zigzag_size((int64_t)n) + n;
    }
    if (len > INT32_MAX) {
        if (w->error == MG_OK)
            w->error = MG_ELIMIT;
        return;
    }
    kw_write_varint(w, (int32_t)len);
    write_record_body(w, timestamp_delta, offset_delta, key, key_len, value, value_len, headers,
                      header_count);
}

const char *kw_api_name(int16_t api_key)
{
    switch (api_key) {
    case KW_API_PRODUCE:
        return "Produce";
    case KW_API_FETCH:
        return "Fetch";
    case KW_API_LIST_OFFSETS:
        return "ListOffsets";
    case KW_API_METADATA:
        return "Metadata";
    case KW_API_OFFSET_COMMIT:
        return "OffsetCommit";
    case KW_API_OFFSET_FETCH:
        return "OffsetFetch";
    case KW_API_FIND_COORDINATOR:
        return "FindCoordinator";
    case KW_API_JOIN_GROUP:
        return "JoinGroup";
    case KW_API_HEARTBEAT:
        return "Heartbeat";
    case KW_API_LEAVE_GROUP:
        return "LeaveGroup";
    case KW_API_SYNC_GROUP:
        return "SyncGroup";
    case KW_API_DESCRIBE_GROUPS:
        return "DescribeGroups";
    case KW_API_LIST_GROUPS:
        return "ListGroups";
    case KW_API_API_VERSIONS:
        return "ApiVersions";
    case KW_API_CREATE_TOPICS:
        return "CreateTopics";
    case KW_API_DELETE_TOPICS:
        return "DeleteTopics";
    case KW_API_INIT_PRODUCER_ID:
        return "InitProducerId";
    default:
        return "Unknown";
    }
}
