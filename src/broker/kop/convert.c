/*
 * A Kafka record batch <-> a Pulsar batch payload, so that both protocols read one log
 * (kop_int.h, "ONE LOG"; docs/kafka.md, "Records and messages").
 *
 *   Kafka record                     Pulsar message (SingleMessageMetadata of a batch)
 *   key (bytes, or null)             partition_key (base64 with partition_key_b64_encoded when
 *                                    the key holds a NUL byte or is not valid text; absent: null)
 *   value (bytes, or null)           the payload (null_value for a null value)
 *   timestamp (CreateTime)           event_time (LogAppendTime batches: the broker's time)
 *   headers (string key, bytes)      properties (string key, string value: a value is cut at its
 *                                    first NUL byte, as a Pulsar property cannot hold one)
 *
 * One Kafka batch is one entry: a Pulsar batch of its records, whose MessageMetadata names the
 * producer ("kafka-<producer id>" for an idempotent producer, else "kafka-<client id>") and the
 * batch's sequence. A compressed Kafka batch is stored compressed with the same codec family on
 * the Pulsar side (gzip -> ZLIB, snappy -> SNAPPY, lz4 -> LZ4, zstd -> ZSTD), so Pulsar
 * consumers decompress it as any Pulsar batch.
 *
 * The other way, an entry becomes one uncompressed record batch whose base offset is the
 * entry's first message offset (index - messages + 1): every record offset delta is its place
 * in the entry. Kafka clients accept uncompressed batches whatever they produced.
 */
#include "broker/kop/kop_int.h"

#include "common/alloc.h"
#include "common/error.h"
#include "common/log.h"
#include "kafka/compress.h"
#include "pulsar/compress.h"
#include "pulsar/limits.h"

#include <nettle/base64.h>
#include <string.h>

static int pulsar_codec_of(int kafka_codec)
{
    switch (kafka_codec) {
    case KW_CODEC_GZIP:
        return MAGNETAR__PULSAR__COMPRESSION_TYPE__ZLIB;
    case KW_CODEC_SNAPPY:
        return MAGNETAR__PULSAR__COMPRESSION_TYPE__SNAPPY;
    case KW_CODEC_LZ4:
        return MAGNETAR__PULSAR__COMPRESSION_TYPE__LZ4;
    case KW_CODEC_ZSTD:
        return MAGNETAR__PULSAR__COMPRESSION_TYPE__ZSTD;
    default:
        return MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE;
    }
}

/* A growing scratch area for the NUL-terminated copies protobuf-c strings need. */
typedef struct scratch {
    char *p;
    size_t len, cap;
} scratch;

static char *scratch_copy(scratch *s, const void *src, size_t n)
{
    if (s->len + n + 1 > s->cap)
        return NULL;
    char *d = s->p + s->len;
    if (n > 0)
        memcpy(d, src, n);
    d[n] = '\0';
    s->len += n + 1;
    return d;
}

static bool key_is_text(const char *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (k[i] == '\0')
            return false;
    return true;
}

int kop_batch_to_entry(const kw_record_batch *kb, const char *producer_name, int64_t sequence_id,
                       int64_t now_ms, mg_buf **out, int32_t *count)
{
    *out = NULL;
    int codec = kb->attributes & 0x7;
    bool log_append_time = (kb->attributes & 0x8) != 0;
    if (codec > KW_CODEC_ZSTD)
        return MG_EPROTO;
    mg_buf *plain = NULL;
    const uint8_t *recs = kb->records;
    size_t recs_len = kb->records_len;
    if (codec != KW_CODEC_NONE) {
        int rc =
            kw_decompress(codec, kb->records, kb->records_len, KW_DECOMPRESSED_BYTES_MAX, &plain);
        if (rc != MG_OK)
            return rc == MG_ELIMIT ? MG_ELIMIT : rc == MG_ENOMEM ? MG_ENOMEM : MG_ECORRUPT;
        recs = mg_buf_data(plain);
        recs_len = mg_buf_len(plain);
    }
    int32_t n = kb->records_count;
    if (n < 1 || n > MG_PULSAR_BATCH_MESSAGES_MAX) {
        mg_buf_unref(plain);
        return n < 1 ? MG_EPROTO : MG_ELIMIT;
    }
    /* The batch is at most the records plus per-record metadata: sized once, generously. */
    size_t cap = recs_len + (size_t)n * 48 + 64;
    uint8_t *batch = mg_malloc(cap);
    /* Copies of keys and header strings: never more than the records' bytes plus NULs, and
     * base64 keys 4/3 of theirs. */
    scratch sc = { mg_malloc(recs_len * 2 + (size_t)n * 4 + 64), 0,
                   recs_len * 2 + (size_t)n * 4 + 64 };
    Magnetar__Pulsar__KeyValue *kvs = NULL;
    Magnetar__Pulsar__KeyValue **kvp = NULL;
    size_t kv_cap = 0;
    int rc = batch != NULL && sc.p != NULL ? MG_OK : MG_ENOMEM;
    size_t blen = 0;
    kw_reader r;
    kw_reader_init(&r, recs, recs_len);
    for (int32_t i = 0; i < n && rc == MG_OK; i++) {
        kw_record rec;
        kw_read_record(&r, &rec);
        if (kw_reader_error(&r) != MG_OK) {
            rc = MG_EPROTO;
            break;
        }
        if (rec.header_count > kv_cap) {
            size_t nc = rec.header_count;
            Magnetar__Pulsar__KeyValue *a = mg_realloc(kvs, nc * sizeof(*a));
            if (a != NULL)
                kvs = a;
            Magnetar__Pulsar__KeyValue **b = mg_realloc(kvp, nc * sizeof(*b));
            if (b != NULL)
                kvp = b;
            if (a == NULL || b == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            kv_cap = nc;
        }
        size_t mark = sc.len;
        Magnetar__Pulsar__SingleMessageMetadata smm =
            MAGNETAR__PULSAR__SINGLE_MESSAGE_METADATA__INIT;
        kw_reader hr;
        kw_reader_init(&hr, rec.headers, rec.headers_len);
        for (uint32_t h = 0; h < rec.header_count; h++) {
            kw_str hk, hv;
            kw_read_record_header(&hr, &hk, &hv);
            if (kw_reader_error(&hr) != MG_OK || hk.len < 0) {
                rc = MG_EPROTO;
                break;
            }
            Magnetar__Pulsar__KeyValue kv = MAGNETAR__PULSAR__KEY_VALUE__INIT;
            kv.key = scratch_copy(&sc, hk.ptr, (size_t)hk.len);
            kv.value = scratch_copy(&sc, hv.ptr, hv.len > 0 ? (size_t)hv.len : 0);
            if (kv.key == NULL || kv.value == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            kvs[h] = kv;
            kvp[h] = &kvs[h];
        }
        if (rc != MG_OK)
            break;
        smm.n_properties = rec.header_count;
        smm.properties = rec.header_count > 0 ? kvp : NULL;
        if (rec.key.len >= 0) {
            if (key_is_text(rec.key.ptr, (size_t)rec.key.len)) {
                smm.partition_key = scratch_copy(&sc, rec.key.ptr, (size_t)rec.key.len);
            } else {
                size_t b64 = BASE64_ENCODE_RAW_LENGTH((size_t)rec.key.len);
                char *d = scratch_copy(&sc, NULL, 0);
                if (d != NULL && sc.len + b64 + 1 <= sc.cap) {
                    sc.len--; /* reuse the NUL just written */
                    base64_encode_raw(d, (size_t)rec.key.len, (const uint8_t *)rec.key.ptr);
                    d[b64] = '\0';
                    sc.len += b64 + 1;
                    smm.partition_key = d;
                    smm.has_partition_key_b64_encoded = 1;
                    smm.partition_key_b64_encoded = 1;
                }
            }
            if (smm.partition_key == NULL) {
                rc = MG_ENOMEM;
                break;
            }
        }
        int64_t ts = log_append_time ? now_ms : kb->base_timestamp + rec.timestamp_delta;
        if (ts > 0) {
            smm.has_event_time = 1;
            smm.event_time = (uint64_t)ts;
        }
        size_t vlen = rec.value.len > 0 ? (size_t)rec.value.len : 0;
        if (rec.value.len < 0) {
            smm.has_null_value = 1;
            smm.null_value = 1;
        }
        smm.payload_size = (int32_t)vlen;
        size_t need = pw_batch_msg_size(&smm);
        if (blen + need > cap) {
            size_t ncap = (blen + need) * 2;
            uint8_t *nb = mg_realloc(batch, ncap);
            if (nb == NULL) {
                rc = MG_ENOMEM;
                break;
            }
            batch = nb;
            cap = ncap;
        }
        size_t wrote;
        rc = pw_batch_put(batch + blen, cap - blen, &smm, rec.value.ptr, vlen, &wrote);
        blen += wrote;
        sc.len = mark; /* the copies are packed into the batch now */
    }
    if (rc == MG_OK && kw_reader_left(&r) != 0)
        rc = MG_EPROTO; /* more bytes than records_count records */
    mg_free(kvs);
    mg_free(kvp);
    mg_free(sc.p);
    mg_buf_unref(plain);
    if (rc != MG_OK) {
        mg_free(batch);
        return rc;
    }
    Magnetar__Pulsar__MessageMetadata md = MAGNETAR__PULSAR__MESSAGE_METADATA__INIT;
    md.producer_name = (char *)producer_name;
    md.sequence_id = (uint64_t)(sequence_id >= 0 ? sequence_id : 0);
    md.publish_time = (uint64_t)now_ms;
    md.has_num_messages_in_batch = 1;
    md.num_messages_in_batch = n;
    if (sequence_id >= 0 && n > 1) {
        md.has_highest_sequence_id = 1;
        md.highest_sequence_id = (uint64_t)(sequence_id + n - 1);
    }
    const uint8_t *data = batch;
    size_t data_len = blen;
    mg_buf *packed = NULL;
    int pcodec = pulsar_codec_of(codec);
    if (pcodec != MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE) {
        rc = pw_compress(pcodec, batch, blen, &packed);
        if (rc == MG_OK) {
            md.has_compression = 1;
            md.compression = pcodec;
            md.has_uncompressed_size = 1;
            md.uncompressed_size = (uint32_t)blen;
            data = mg_buf_data(packed);
            data_len = mg_buf_len(packed);
        }
    }
    rc = pw_send_payload_encode(&md, data, data_len, out);
    mg_buf_unref(packed);
    mg_free(batch);
    if (rc == MG_OK)
        *count = n;
    return rc;
}

/* ---- entry -> record batch ------------------------------------------------------------------- */

/* The properties of a message as record headers: NUL-terminated key, value pairs. */
static const char **headers_of(Magnetar__Pulsar__KeyValue **kv, size_t n, const char **stack,
                               size_t stack_cap)
{
    const char **h = n <= stack_cap / 2 ? stack : mg_malloc(2 * n * sizeof(char *));
    if (h == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        h[2 * i] = kv[i]->key != NULL ? kv[i]->key : "";
        h[2 * i + 1] = kv[i]->value != NULL ? kv[i]->value : "";
    }
    return h;
}

/* Writes one record; a base64 key is decoded. */
static void put_record(kw_writer *rw, int64_t ts_delta, int32_t offset_delta, const char *key,
                       bool key_b64, const uint8_t *value, size_t value_len, bool null_value,
                       Magnetar__Pulsar__KeyValue **props, size_t prop_count)
{
    const char *stack[32];
    const char **h = headers_of(props, prop_count, stack, 32);
    if (h == NULL && prop_count > 0) {
        rw->error = MG_ENOMEM;
        return;
    }
    uint8_t kbuf[256];
    uint8_t *k = (uint8_t *)key;
    size_t klen = key != NULL ? strlen(key) : 0;
    if (key != NULL && key_b64) {
        size_t max = BASE64_DECODE_LENGTH(klen);
        k = max <= sizeof(kbuf) ? kbuf : mg_malloc(max);
        struct base64_decode_ctx ctx;
        base64_decode_init(&ctx);
        size_t got = max;
        if (k == NULL || !base64_decode_update(&ctx, &got, k, klen, key) ||
            !base64_decode_final(&ctx)) {
            /* Not base64 after all: the key as stored. */
            if (k != kbuf && k != (uint8_t *)key)
                mg_free(k);
            k = (uint8_t *)key;
        } else {
            klen = got;
        }
    }
    kw_write_record(rw, ts_delta, offset_delta, key != NULL ? k : NULL, (int32_t)klen,
                    null_value ? NULL : value, (int32_t)value_len, h, (uint32_t)prop_count);
    if (k != kbuf && k != (uint8_t *)key)
        mg_free(k);
    if (h != stack)
        mg_free((void *)h);
}

/* An entry that cannot be read as messages: an empty batch over its n offsets from base (n 1
 * when even the count cannot be read: the entry's index alone is skipped past). */
static int empty_batch(int64_t base, int32_t n, kw_writer *w)
{
    kw_record_batch kb = { 0 };
    kb.base_offset = base;
    kb.producer_id = -1;
    kb.producer_epoch = -1;
    kb.base_sequence = -1;
    kb.last_offset_delta = n - 1;
    kw_write_record_batch(w, &kb, NULL, 0);
    return w->error;
}

int kop_entry_to_batch(const ml_entry *e, kw_writer *w, int32_t *records)
{
    *records = 0;
    const uint8_t *p = mg_buf_data(e->buf) + e->payload_off;
    pw_payload pl;
    if (pw_payload_parse(p, e->payload_len, false, &pl) != MG_OK || pl.has_broker_entry_metadata) {
        MG_WARN_LIMITED("kafka: entry %lld:%lld is not a Pulsar message: skipped",
                        (long long)e->position.ledger_id, (long long)e->position.entry_id);
        return empty_batch(e->index, 1, w);
    }
    const uint8_t *data = p + pl.data_off;
    size_t data_len = pl.data_len;
    mg_buf *plain = NULL;
    if (pl.compression != MAGNETAR__PULSAR__COMPRESSION_TYPE__NONE) {
        if (pw_decompress(pl.compression, data, data_len, pl.uncompressed_size, &plain) != MG_OK) {
            MG_WARN_LIMITED("kafka: entry %lld:%lld does not decompress: skipped",
                            (long long)e->position.ledger_id, (long long)e->position.entry_id);
            return empty_batch(e->index - pl.num_messages + 1, pl.num_messages, w);
        }
        data = mg_buf_data(plain);
        data_len = mg_buf_len(plain);
    }
    int32_t n = pl.num_messages;
    int64_t base_offset = e->index - n + 1;
    int64_t base_ts =
        pl.event_time_ms != 0 ? (int64_t)pl.event_time_ms : (int64_t)pl.publish_time_ms;
    int64_t max_ts = base_ts;
    /* The records go straight into w, after a header written once they are known. */
    size_t at = kw_record_batch_begin(w);
    kw_writer_reserve(w, data_len + (size_t)n * 16);
    kw_writer *rw = w;
    int32_t written = 0;
    if (pl.batched) {
        size_t pos = 0;
        for (int32_t i = 0; i < n; i++) {
            pw_batch_msg m;
            if (pw_batch_next(data, data_len, &pos, &m) != MG_OK)
                break;
            const Magnetar__Pulsar__SingleMessageMetadata *smm = m.smm;
            int64_t ts = smm->has_event_time && smm->event_time != 0 ? (int64_t)smm->event_time
                                                                     : (int64_t)pl.publish_time_ms;
            if (i == 0) {
                base_ts = ts;
                max_ts = ts;
            }
            if (ts > max_ts)
                max_ts = ts;
            put_record(rw, ts - base_ts, i, smm->partition_key,
                       smm->has_partition_key_b64_encoded && smm->partition_key_b64_encoded,
                       m.payload, m.payload_len, smm->has_null_value && smm->null_value,
                       smm->properties, smm->n_properties);
            pw_batch_msg_free(&m);
            written++;
        }
    } else {
        Magnetar__Pulsar__MessageMetadata *md = NULL;
        if (pw_metadata_unpack(p, &pl, &md) == MG_OK) {
            put_record(rw, 0, 0, md->partition_key,
                       md->has_partition_key_b64_encoded && md->partition_key_b64_encoded, data,
                       data_len, md->has_null_value && md->null_value, md->properties,
                       md->n_properties);
            pw_metadata_free(md);
            written = 1;
        }
    }
    mg_buf_unref(plain);
    int rc = w->error;
    if (rc == MG_OK) {
        /* The offsets the entry holds are all accounted for (last_offset_delta n - 1) even when
         * a message could not be read, so a consumer moves past them; an entry that cannot be
         * read at all is an empty batch, as compaction leaves them. */
        kw_record_batch kb = { 0 };
        kb.base_offset = base_offset;
        kb.partition_leader_epoch = 0;
        kb.attributes = 0;
        kb.last_offset_delta = n - 1;
        kb.base_timestamp = base_ts;
        kb.max_timestamp = max_ts;
        kb.producer_id = -1;
        kb.producer_epoch = -1;
        kb.base_sequence = -1;
        kb.records_count = written;
        kw_record_batch_end(w, at, &kb);
        rc = w->error;
        *records = written;
    }
    return rc;
}
