/*
 * Tests of the batch payload codec (src/pulsar/batch.c): one message written byte by byte from
 * the format, round trips of several messages with every metadata field the client uses,
 * truncated and malformed batches refused with MG_EPROTO and the position left alone, the
 * encoder's limits, and allocation failures.
 */
#include "pulsar/wire.h"

#include "common/alloc.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

TestSuite(batch, .timeout = 10);

/* [size 4][SingleMessageMetadata{payload_size 2, sequence_id 7}]["hi"] */
static const uint8_t k_one[] = { 0x00, 0x00, 0x00, 0x04, 0x18, 0x02, 0x40, 0x07, 'h', 'i' };

static Magnetar__Pulsar__SingleMessageMetadata small_smm(int32_t payload_size, uint64_t seq)
{
    Magnetar__Pulsar__SingleMessageMetadata smm = MAGNETAR__PULSAR__SINGLE_MESSAGE_METADATA__INIT;
    smm.payload_size = payload_size;
    smm.has_sequence_id = 1;
    smm.sequence_id = seq;
    return smm;
}

Test(batch, one_message_by_hand)
{
    Magnetar__Pulsar__SingleMessageMetadata smm = small_smm(2, 7);
    cr_assert_eq(pw_batch_msg_size(&smm), sizeof(k_one));
    uint8_t dst[sizeof(k_one)];
    size_t n = 0;
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &smm, "hi", 2, &n), MG_OK);
    cr_assert_eq(n, sizeof(k_one));
    cr_assert_arr_eq(dst, k_one, sizeof(k_one));

    size_t pos = 0;
    pw_batch_msg m;
    cr_assert_eq(pw_batch_next(k_one, sizeof(k_one), &pos, &m), MG_OK);
    cr_assert_eq(pos, sizeof(k_one));
    cr_assert_eq(m.payload, k_one + 8, "the payload is not copied");
    cr_assert_eq(m.payload_len, 2);
    cr_assert(m.smm->has_sequence_id);
    cr_assert_eq(m.smm->sequence_id, 7);
    cr_assert_null(m.smm->partition_key);
    cr_assert_eq(m.smm->n_properties, 0);
    pw_batch_msg_free(&m);
    cr_assert_null(m.smm);
    pw_batch_msg_free(&m); /* again: a no-op */

    /* Nothing left: the end of the batch is not a message. */
    cr_assert_eq(pw_batch_next(k_one, sizeof(k_one), &pos, &m), MG_EPROTO);
    cr_assert_null(m.smm);
    cr_assert_eq(pos, sizeof(k_one));
}

Test(batch, round_trip)
{
    enum { COUNT = 4 };
    static const char *payloads[COUNT] = { "first", "", "third message", "4" };
    static const char *keys[COUNT] = { "k1", NULL, "", "key-4" };
    Magnetar__Pulsar__KeyValue kv[2];
    Magnetar__Pulsar__KeyValue *kvp[2] = { &kv[0], &kv[1] };
    magnetar__pulsar__key_value__init(&kv[0]);
    magnetar__pulsar__key_value__init(&kv[1]);
    kv[0].key = "a";
    kv[0].value = "1";
    kv[1].key = "b";
    kv[1].value = "";

    uint8_t batch[1024];
    size_t len = 0;
    for (int i = 0; i < COUNT; i++) {
        Magnetar__Pulsar__SingleMessageMetadata smm =
            small_smm((int32_t)strlen(payloads[i]), 100u + (uint64_t)i);
        smm.partition_key = (char *)keys[i];
        smm.n_properties = (size_t)(i % 3);
        smm.properties = kvp;
        if (i % 2 == 0) {
            smm.has_event_time = 1;
            smm.event_time = 1700000000000ull + (uint64_t)i;
        }
        if (i == 3) {
            smm.has_compacted_out = 1;
            smm.compacted_out = 1;
        }
        size_t n = 0;
        cr_assert_eq(pw_batch_put(batch + len, sizeof(batch) - len, &smm, payloads[i],
                                  strlen(payloads[i]), &n),
                     MG_OK);
        cr_assert_eq(n, pw_batch_msg_size(&smm));
        len += n;
    }

    size_t pos = 0;
    for (int i = 0; i < COUNT; i++) {
        size_t before = pos;
        pw_batch_msg m;
        cr_assert_eq(pw_batch_next(batch, len, &pos, &m), MG_OK, "message %d", i);
        cr_assert_gt(pos, before);
        cr_assert_eq(m.payload + m.payload_len, batch + pos, "message %d not where it ends", i);
        cr_assert_eq(m.payload_len, strlen(payloads[i]));
        cr_assert_arr_eq(m.payload, payloads[i], m.payload_len);
        cr_assert_eq(m.smm->sequence_id, 100u + (uint64_t)i);
        if (keys[i] == NULL)
            cr_assert_null(m.smm->partition_key);
        else
            cr_assert_str_eq(m.smm->partition_key, keys[i]);
        cr_assert_eq(m.smm->n_properties, (size_t)(i % 3));
        for (size_t k = 0; k < m.smm->n_properties; k++) {
            cr_assert_str_eq(m.smm->properties[k]->key, kv[k].key);
            cr_assert_str_eq(m.smm->properties[k]->value, kv[k].value);
        }
        cr_assert_eq(m.smm->has_event_time, i % 2 == 0);
        if (i % 2 == 0)
            cr_assert_eq(m.smm->event_time, 1700000000000ull + (uint64_t)i);
        cr_assert_eq(m.smm->has_compacted_out && m.smm->compacted_out, i == 3);
        pw_batch_msg_free(&m);
    }
    cr_assert_eq(pos, len);
}

Test(batch, truncated_refused)
{
    uint8_t two[2 * sizeof(k_one)];
    memcpy(two, k_one, sizeof(k_one));
    memcpy(two + sizeof(k_one), k_one, sizeof(k_one));
    /* Every cut inside the second message: the first still reads, the second is refused. */
    for (size_t n = sizeof(k_one); n < sizeof(two); n++) {
        size_t pos = 0;
        pw_batch_msg m;
        cr_assert_eq(pw_batch_next(two, n, &pos, &m), MG_OK, "cut %zu", n);
        pw_batch_msg_free(&m);
        cr_assert_eq(pw_batch_next(two, n, &pos, &m), MG_EPROTO, "cut %zu", n);
        cr_assert_null(m.smm);
        cr_assert_eq(pos, sizeof(k_one), "a refused message moved the position");
    }
}

Test(batch, garbage_refused)
{
    static const struct {
        const char *what;
        size_t len;
        uint8_t bytes[24];
    } cases[] = {
        { "size past the end", 10, { 0, 0, 0, 9, 0x18, 0x02, 0x40, 0x07, 'h', 'i' } },
        { "size of 4 GiB", 10, { 0xff, 0xff, 0xff, 0xff, 0x18, 0x02, 0x40, 0x07, 'h', 'i' } },
        { "payload past the end", 10, { 0, 0, 0, 4, 0x18, 0x03, 0x40, 0x07, 'h', 'i' } },
        { "negative payload_size",
          19,
          { 0, 0, 0, 13, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x40,
            0x07, 'h', 'i' } },
        { "no payload_size (required)", 8, { 0, 0, 0, 2, 0x40, 0x07, 'h', 'i' } },
        { "metadata that does not parse", 8, { 0, 0, 0, 2, 0x18, 0xff, 'h', 'i' } },
        { "a field numbered 0", 11, { 0, 0, 0, 5, 0x18, 0x02, 0x80, 0x00, 0x01, 'h', 'i' } },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t pos = 0;
        pw_batch_msg m;
        cr_assert_eq(pw_batch_next(cases[i].bytes, cases[i].len, &pos, &m), MG_EPROTO, "%s",
                     cases[i].what);
        cr_assert_null(m.smm, "%s", cases[i].what);
        cr_assert_eq(pos, 0, "%s", cases[i].what);
    }
}

Test(batch, put_limits)
{
    Magnetar__Pulsar__SingleMessageMetadata smm = small_smm(2, 7);
    uint8_t dst[sizeof(k_one) + 1];
    size_t n = 99;
    /* Every capacity below the message's size: refused, nothing written. */
    for (size_t cap = 0; cap < sizeof(k_one); cap++) {
        memset(dst, 0xa5, sizeof(dst));
        cr_assert_eq(pw_batch_put(dst, cap, &smm, "hi", 2, &n), MG_ELIMIT, "capacity %zu", cap);
        for (size_t k = 0; k < sizeof(dst); k++)
            cr_assert_eq(dst[k], 0xa5, "capacity %zu: byte %zu written", cap, k);
        cr_assert_eq(n, 99);
    }
    /* payload_size disagreeing with the payload */
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &smm, "h", 1, &n), MG_EINVAL);
    /* a payload too long for the int32 payload_size (checked before the bytes are touched) */
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &smm, "hi", (size_t)INT32_MAX + 1, &n), MG_ELIMIT);
    /* bytes missing, or metadata that is not complete (a property without its value) */
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &smm, NULL, 2, &n), MG_EINVAL);
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), NULL, "hi", 2, &n), MG_EINVAL);
    Magnetar__Pulsar__KeyValue kv;
    magnetar__pulsar__key_value__init(&kv);
    kv.key = "a";
    Magnetar__Pulsar__KeyValue *kvp = &kv;
    smm.n_properties = 1;
    smm.properties = &kvp;
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &smm, "hi", 2, &n), MG_EINVAL);
    cr_assert_eq(n, 99);
    /* An empty payload with payload_size 0 is a message. */
    Magnetar__Pulsar__SingleMessageMetadata empty = small_smm(0, 1);
    cr_assert_eq(pw_batch_put(dst, sizeof(dst), &empty, NULL, 0, &n), MG_OK);
    cr_assert_eq(n, pw_batch_msg_size(&empty));
}

Test(batch, allocation_failures)
{
    bool succeeded = false;
    for (int64_t k = 0; k < 8 && !succeeded; k++) {
        size_t pos = 0;
        pw_batch_msg m;
        mg_alloc_fail_after(k);
        int rc = pw_batch_next(k_one, sizeof(k_one), &pos, &m);
        mg_alloc_fail_reset();
        if (rc == MG_OK) {
            succeeded = true;
            pw_batch_msg_free(&m);
        } else {
            cr_assert_eq(rc, MG_ENOMEM, "k=%lld", (long long)k);
            cr_assert_null(m.smm);
            cr_assert_eq(pos, 0);
        }
    }
    cr_assert(succeeded);
}
