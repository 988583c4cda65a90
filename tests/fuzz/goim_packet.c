/*
 * Fuzz target goim_packet: a chat client's byte stream as the gateway will read it from a TCP
 * connection or a WebSocket message (REFERENCE.md §4): cg_packet_size with GOIM's default body
 * bound, cg_packet_decode of every whole packet, and for an op 9 packet the split of its body
 * into the packets inside (what a client does with the gateway's batches).
 *
 * Checks beyond "no crash, no sanitizer report": every decoded packet encodes back to the same
 * bytes (cg_packet_encode); a batch that splits encodes back, with cg_batch_encode, to the same
 * op 9 packet, and the iterator agrees with cg_batch_split; bodies stay inside their packet.
 */
#include "chat_gateway/limits.h"
#include "chat_gateway/packet.h"
#include "common/error.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Packets decoded from one input at most: bounds the loop (each packet is at least 16 bytes, so
 * an input of libFuzzer's default 4096 bytes holds at most 256). */
#define PACKETS_PER_INPUT_MAX 1024u

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "goim_packet: invariant broken: %s\n", what);
        abort();
    }
}

static void reencode(const uint8_t *packet, const cg_packet *pk)
{
    uint8_t *out = malloc(pk->packet_len);
    check(out != NULL, "out of memory");
    size_t len = 0;
    check(cg_packet_encode(pk->ver, pk->op, pk->seq, pk->body, pk->body_len, out, pk->packet_len,
                           &len) == MG_OK,
          "a decoded packet does not encode");
    check(len == pk->packet_len && memcmp(out, packet, len) == 0,
          "a decoded packet encodes to other bytes");
    free(out);
}

static void split_batch(const uint8_t *packet, const cg_packet *outer)
{
    static cg_packet inner[CG_BATCH_PACKETS_MAX];
    size_t count = 0;
    int rc = cg_batch_split(outer->body, outer->body_len, inner, CG_BATCH_PACKETS_MAX, &count);

    cg_batch_iter it;
    cg_batch_iter_init(&it, outer->body, outer->body_len);
    cg_packet pk;
    size_t n = 0;
    int it_rc;
    while ((it_rc = cg_batch_next(&it, &pk)) == MG_OK) {
        check(pk.body_len == 0 ||
                  (pk.body > outer->body && pk.body + pk.body_len <= outer->body + outer->body_len),
              "an inner body outside the batch");
        n++;
    }
    check(cg_batch_next(&it, &pk) == it_rc, "the iterator's end or error is not sticky");
    if (rc != MG_OK) {
        check(it_rc == rc, "the iterator and the split disagree on an error");
        return;
    }
    check(it_rc == MG_ENOTFOUND && n == count, "the iterator and the split disagree");
    if (count == 0)
        return;
    size_t off = 0; /* inner packets lie back to back in the body */
    for (size_t i = 0; i < count; i++) {
        reencode(outer->body + off, &inner[i]);
        off += inner[i].packet_len;
    }
    check(off == outer->body_len, "the inner packets do not fill the batch");
    mg_buf *b = NULL;
    check(cg_batch_encode(outer->ver, outer->seq, inner, count, &b) == MG_OK,
          "a split batch does not encode");
    check(mg_buf_len(b) == outer->packet_len &&
              memcmp(mg_buf_data(b), packet, outer->packet_len) == 0,
          "a split batch encodes to another packet");
    check(cg_batch_encoded_len(inner, count) == mg_buf_len(b), "cg_batch_encoded_len is wrong");
    mg_buf_unref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    for (unsigned n = 0; n < PACKETS_PER_INPUT_MAX; n++) {
        size_t packet_len = 0;
        int rc = cg_packet_size(data + pos, size - pos, CG_PACKET_BODY_BYTES_DEFAULT, &packet_len);
        if (rc != MG_OK)
            break; /* MG_EAGAIN: the stream ends; any other: the gateway closes the connection */
        check(packet_len >= CG_PACKET_HEADER_BYTES &&
                  packet_len <= CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_DEFAULT,
              "a packet length outside its bounds");
        if (packet_len > size - pos)
            break; /* the rest of the packet never arrives */
        /* The packet in a buffer of its own size, so ASan sees any read past it. */
        uint8_t *packet = malloc(packet_len);
        if (packet == NULL)
            break;
        memcpy(packet, data + pos, packet_len);
        cg_packet pk;
        check(cg_packet_decode(packet, packet_len, &pk) == MG_OK,
              "a packet that cg_packet_size accepted does not decode");
        check(pk.packet_len == packet_len && pk.body_len + CG_PACKET_HEADER_BYTES == packet_len,
              "decoded lengths disagree");
        check(cg_op_name(pk.op) != NULL, "no op name");
        uint32_t online = 0;
        if (pk.op == CG_OP_HEARTBEAT_REPLY)
            (void)cg_heartbeat_reply_count(&pk, &online);
        reencode(packet, &pk);
        if (pk.op == CG_OP_RAW)
            split_batch(packet, &pk);
        free(packet);
        pos += packet_len;
    }
    return 0;
}
