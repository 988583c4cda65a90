/*
 * Protocol faults against the real broker: every test starts `magnetar standalone` (binary from
 * MG_BIN) on free loopback ports with its data under a fresh directory in /var/tmp, talks to it
 * with a small blocking client over raw sockets, and stops it at the end (SIGTERM, and a clean
 * exit is required; the suite's fini kills it with SIGKILL whatever happened and removes the
 * directory). Every wait is bounded by a deadline.
 *
 * Rule checked throughout: bad input from one connection is either answered with the error the
 * protocol defines (ERROR, SEND_ERROR, LOOKUP_RESPONSE Failed) or closes that connection, and
 * never harms another. A healthy connection (CONNECTed, with a producer on its own topic) stays
 * open during every test; whenever the client waits on another connection it also answers the
 * broker's PINGs on the healthy one, and at the end of each case the healthy producer must still
 * get a SEND_RECEIPT for the next entry of its topic.
 *
 * Cases: a command before CONNECT; version negotiation and max_message_size; CONNECT twice;
 * garbage commands; oversized frames (only the 4-byte header is sent); command_size past the
 * frame; total_size below 4; unknown and unsupported command types (ERROR, connection kept);
 * SEND without PRODUCER and with malformed metadata; wrong checksum (SEND_ERROR ChecksumError,
 * nothing stored, a consumer gets only the good messages, byte-identical); frames trickled one
 * byte at a time and several frames in one write; PING/PONG and the broker's keep-alive
 * (--keepalive-s 1); a socket trickling bytes without CONNECT closed at the CONNECT deadline;
 * LOOKUP of bad and good names; BrokerEntryMetadata to a consumer that asked for it, rebuilt for
 * entries from the tail cache and read as stored after a restart, the same bytes both ways;
 * finally the per-reason counters of
 * magnetar_broker_protocol_errors_total on /metrics, exactly as many as the cases caused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "broker/limits.h"
#include "pulsar/wire.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/limits.h"
#include "support/pulsar_raw.h"
#include "support/sa_harness.h"

#define T(x)   MAGNETAR__PULSAR__BASE_COMMAND__TYPE__##x
#define ERR(x) MAGNETAR__PULSAR__SERVER_ERROR__##x

/* The wire values the protocol fixes (REFERENCE.md §1): the asserts below name them. */
_Static_assert(ERR(ChecksumError) == 9, "ServerError ChecksumError is 9 on the wire");
_Static_assert(ERR(InvalidTopicName) == 17, "ServerError InvalidTopicName is 17 on the wire");
_Static_assert(ERR(NotAllowedError) == 22, "ServerError NotAllowedError is 22 on the wire");
_Static_assert(MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed == 2,
               "LookupType Failed is 2 on the wire");

#define MAX_MESSAGE_BYTES   65536u     /* given as --max-message-size */
#define FRAME_PADDING_BYTES 10240u     /* what the broker allows on top of it */
#define REPLY_TIMEOUT_MS    10000      /* an answer (PRODUCER may create a ledger first) */
#define CLOSE_TIMEOUT_MS    5000       /* a connection the broker must close */
#define HEALTHY_POLL_MS     50         /* slice in which waits also serve the healthy conn */
#define METRICS_BYTES_MAX   (4u << 20) /* largest /metrics answer read */
#define TRICKLE_FRAME_BYTES 100        /* bound of the frames sent one byte at a time */
#define TRICKLE_DELAY_US    2000

#define HEALTHY_TOPIC "persistent://public/default/healthy"

/* ---- the standalone process ---------------------------------------------------------------- */

static sah_standalone g_sa; /* the standalone of the running test (support/sa_harness.h) */
static bool g_passed;       /* set at the end of a test body: fini shows the log otherwise */

/* The raw client (support/pulsar_raw.h) and the healthy connection it serves while it waits. */
static prw_conn g_healthy = { .fd = -1 }; /* its pongs_sent: broker PINGs it answered */
static uint64_t g_healthy_seq;            /* next sequence id of the healthy producer */
static int64_t g_healthy_ledger;          /* where its entries go */
static int64_t g_healthy_entry;           /* its last entry */

/* Reads a frame on the healthy connection that poll found readable: it must be the broker's
 * PING (nothing else is sent to it unasked), answered with PONG. */
static void healthy_serve(prw_conn *h)
{
    prw_result r = prw_read_frame(h, sah_now_ms() + REPLY_TIMEOUT_MS);
    cr_assert_eq(r, PRW_FRAME, "the healthy connection was closed (result %d)", r);
    cr_assert_eq(h->f.type, T(PING), "unasked frame of type %d on the healthy connection",
                 h->f.type);
    prw_send_pong(h);
}

/* The client of every connection (its port set by sa_start): while it waits on another
 * connection it serves the healthy one. */
static prw_client g_cl = { .timeout_ms = REPLY_TIMEOUT_MS,
                           .side = &g_healthy,
                           .side_ready = healthy_serve,
                           .side_poll_ms = HEALTHY_POLL_MS };

/* Starts `magnetar standalone` with every port picked free on 127.0.0.1 and waits (bounded) for
 * its ready line, which names the broker and HTTP ports. */
static void sa_start(unsigned keepalive_s)
{
    char max[32], ka[32];
    snprintf(max, sizeof(max), "%u", MAX_MESSAGE_BYTES);
    snprintf(ka, sizeof(ka), "%u", keepalive_s);
    const char *const extra[] = { "--max-message-size", max, "--keepalive-s", ka, NULL };
    int rc = sah_start(&g_sa, extra);
    cr_assert_eq(rc, MG_OK, "standalone not started: %s", mg_strerror(rc));
    g_cl.port = g_sa.broker_port;
}

/* Stops the standalone with SIGTERM and requires a clean exit (status 0) within the bound:
 * nothing the cases sent may have broken its shutdown. */
static void sa_stop_clean(void)
{
    int status = 0;
    int rc = sah_stop(&g_sa, &status);
    cr_assert_eq(rc, MG_OK, "standalone stop: %s (wait status %d)", mg_strerror(rc), status);
}

/* ---- a blocking raw client ------------------------------------------------------------------- */

/* The broker must close the connection within CLOSE_TIMEOUT_MS without sending anything. */
static void rc_expect_closed(prw_conn *c, const char *what)
{
    prw_result r = prw_next(c, CLOSE_TIMEOUT_MS);
    if (r == PRW_FRAME)
        cr_assert_fail("%s: expected the connection closed, got a %s frame", what,
                       pw_command_type_name(c->f.type));
    cr_assert_eq(r, PRW_EOF, "%s: the connection was not closed within %d ms", what,
                 CLOSE_TIMEOUT_MS);
    prw_close(c);
}

/* ---- commands ----------------------------------------------------------------------------------
 */

static mg_buf *encode_connect(int version)
{
    return prw_encode_connect("magnetar-fault-test", version);
}

/* CONNECT with the given protocol version; returns the CONNECTED answer (valid until the next
 * read on c) after checking what every CONNECTED must carry. */
static const Magnetar__Pulsar__CommandConnected *rc_handshake(prw_conn *c, int version)
{
    mg_buf *b = encode_connect(version);
    prw_write_buf(c, b);
    mg_buf_unref(b);
    const Magnetar__Pulsar__CommandConnected *ok = prw_expect(c, T(CONNECTED))->connected;
    cr_assert_not_null(ok->server_version);
    cr_assert(ok->has_protocol_version);
    cr_assert(ok->has_max_message_size);
    cr_assert_eq(ok->max_message_size, (int32_t)MAX_MESSAGE_BYTES);
    return ok;
}

static void rc_create_producer(prw_conn *c, const char *topic, uint64_t producer_id,
                               uint64_t request_id)
{
    prw_send_producer(c, topic, producer_id, request_id);
    const Magnetar__Pulsar__CommandProducerSuccess *ok =
        prw_expect(c, T(PRODUCER_SUCCESS))->producer_success;
    cr_assert_eq(ok->request_id, request_id);
    cr_assert_not_null(ok->producer_name);
}

/* A whole SEND frame with a checksummed payload. */
static mg_buf *encode_send(uint64_t producer_id, uint64_t sequence_id, const void *data, size_t len)
{
    return prw_encode_send(producer_id, sequence_id, "fault-test-producer", data, len);
}

/* The bytes after the command of a SEND frame this client encoded: what a consumer must get. */
static void send_payload(mg_buf *frame, const uint8_t **p, size_t *len)
{
    pw_frame f;
    cr_assert_eq(pw_frame_decode(mg_buf_data(frame), mg_buf_len(frame), &f), MG_OK);
    *p = mg_buf_data(frame) + f.payload_off;
    *len = f.payload_len;
    pw_frame_free(&f);
}

/* The next frame must be the SEND_RECEIPT of (producer_id, sequence_id); returns its id. */
static void rc_expect_receipt(prw_conn *c, uint64_t producer_id, uint64_t sequence_id,
                              int64_t *ledger_id, int64_t *entry_id)
{
    const Magnetar__Pulsar__CommandSendReceipt *r = prw_expect(c, T(SEND_RECEIPT))->send_receipt;
    cr_assert_eq(r->producer_id, producer_id);
    cr_assert_eq(r->sequence_id, sequence_id);
    cr_assert_not_null(r->message_id, "SEND_RECEIPT without message_id");
    *ledger_id = (int64_t)r->message_id->ledger_id;
    *entry_id = (int64_t)r->message_id->entry_id;
    cr_assert_geq(*ledger_id, 0);
    cr_assert_geq(*entry_id, 0);
}

static void rc_ping_pong(prw_conn *c)
{
    prw_send_ping(c);
    prw_expect(c, T(PONG));
}

/* A frame [total_size][command_size][body] with sizes as given (they may lie). */
static size_t raw_frame(uint8_t *dst, uint32_t total, uint32_t command_size, const void *body,
                        size_t body_len)
{
    const uint32_t v[2] = { total, command_size };
    for (int i = 0; i < 2; i++) {
        dst[i * 4 + 0] = (uint8_t)(v[i] >> 24);
        dst[i * 4 + 1] = (uint8_t)(v[i] >> 16);
        dst[i * 4 + 2] = (uint8_t)(v[i] >> 8);
        dst[i * 4 + 3] = (uint8_t)v[i];
    }
    memcpy(dst + 8, body, body_len);
    return 8 + body_len;
}

static char *fetch_metrics(void); /* GET /metrics (below, with the metric readers) */

/* ---- the healthy connection
 * ---------------------------------------------------------------------- */

static void healthy_open(void)
{
    g_healthy = prw_open(&g_cl, 0);
    g_healthy.auto_pong = true;
    rc_handshake(&g_healthy, 19);
    rc_create_producer(&g_healthy, HEALTHY_TOPIC, 1, 1);
    g_healthy_seq = 0;
    mg_buf *b = encode_send(1, g_healthy_seq, "healthy", 7);
    prw_write_buf(&g_healthy, b);
    mg_buf_unref(b);
    rc_expect_receipt(&g_healthy, 1, g_healthy_seq, &g_healthy_ledger, &g_healthy_entry);
    g_healthy_seq++;
}

/* The healthy producer still publishes: its next message is the next entry of its ledger. */
static void healthy_check(const char *after)
{
    cr_assert_geq(g_healthy.fd, 0);
    mg_buf *b = encode_send(1, g_healthy_seq, "healthy", 7);
    prw_write_buf(&g_healthy, b);
    mg_buf_unref(b);
    prw_result r = prw_next(&g_healthy, REPLY_TIMEOUT_MS);
    cr_assert_eq(r, PRW_FRAME, "after %s the healthy connection %s", after,
                 r == PRW_EOF ? "was closed" : "got no SEND_RECEIPT");
    cr_assert_eq(g_healthy.f.type, T(SEND_RECEIPT), "after %s the healthy connection got %s", after,
                 pw_command_type_name(g_healthy.f.type));
    const Magnetar__Pulsar__CommandSendReceipt *rc = g_healthy.f.cmd->send_receipt;
    cr_assert_eq(rc->producer_id, 1);
    cr_assert_eq(rc->sequence_id, g_healthy_seq);
    cr_assert_not_null(rc->message_id);
    cr_assert_eq((int64_t)rc->message_id->ledger_id, g_healthy_ledger);
    cr_assert_eq((int64_t)rc->message_id->entry_id, g_healthy_entry + 1);
    g_healthy_entry++;
    g_healthy_seq++;
}

/* ---- suite set-up -------------------------------------------------------------------------------
 */

static void suite_fini(void)
{
    if (!g_passed)
        sah_dump_log(&g_sa);
    prw_close(&g_healthy);
    sah_destroy(&g_sa);
}

TestSuite(broker_protocol, .fini = suite_fini, .timeout = 90);

/* ---- the cases ----------------------------------------------------------------------------------
 */

/* 1. Anything but CONNECT (or PING/PONG) first closes the connection. PING is allowed. */
static void case_before_connect(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_ping_pong(&c);
    prw_send_producer(&c, "persistent://public/default/early", 1, 1);
    rc_expect_closed(&c, "PRODUCER before CONNECT");
}

/* 2. CONNECTED carries min(19, client's version) and the configured max_message_size; a second
 * CONNECT on a connected connection closes it. */
static void case_connect_versions(void)
{
    prw_conn a = prw_open(&g_cl, 0), b = prw_open(&g_cl, 0);
    cr_assert_eq(rc_handshake(&a, 10)->protocol_version, 10);
    cr_assert_eq(rc_handshake(&b, 21)->protocol_version, 19);
    rc_ping_pong(&a);
    rc_ping_pong(&b);
    mg_buf *again = encode_connect(19);
    prw_write_buf(&a, again);
    mg_buf_unref(again);
    rc_expect_closed(&a, "a second CONNECT");
    rc_ping_pong(&b);
    prw_close(&b);
}

/* 3. Command bytes that are not a BaseCommand close the connection. */
static void case_garbage(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x42, 0x13, 0x37, 0x00, 0xfe };
    uint8_t f[64];
    size_t n = raw_frame(f, 4 + sizeof(junk), sizeof(junk), junk, sizeof(junk));
    prw_write(&c, f, n);
    rc_expect_closed(&c, "a BaseCommand that does not parse");
}

/* 4. A total_size past max_message_size + padding closes the connection at the header: only the
 * 4 size bytes are sent, so the close proves the body was never awaited. */
static void case_frame_too_large(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    uint32_t total = MAX_MESSAGE_BYTES + FRAME_PADDING_BYTES + 1;
    uint8_t head[4] = { (uint8_t)(total >> 24), (uint8_t)(total >> 16), (uint8_t)(total >> 8),
                        (uint8_t)total };
    prw_write(&c, head, sizeof(head));
    rc_expect_closed(&c, "total_size above the frame limit (header only)");
}

/* 5. command_size > total_size - 4, and total_size < 4, close the connection. */
static void case_bad_sizes(void)
{
    /* A PING command whose command_size claims more than the frame holds. */
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    static const uint8_t ping[] = { 0x08, 18, 0x92, 0x01, 0x00 };
    uint8_t f[64];
    size_t n = raw_frame(f, 4 + sizeof(ping), sizeof(ping) + 1, ping, sizeof(ping));
    prw_write(&c, f, n);
    rc_expect_closed(&c, "command_size > total_size - 4");

    prw_conn d = prw_open(&g_cl, 0);
    rc_handshake(&d, 19);
    static const uint8_t tiny[] = { 0, 0, 0, 2, 0, 0 };
    prw_write(&d, tiny, sizeof(tiny));
    rc_expect_closed(&d, "total_size 2");
}

/* 6. A valid BaseCommand of a type the broker does not know (50, without a sub-command) or
 * does not serve (CONSUMER_STATS) is answered with ERROR; the connection stays. */
static void case_unknown_command(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    static const uint8_t type50[] = { 0x08, 50 };
    uint8_t f[64];
    size_t n = raw_frame(f, 4 + sizeof(type50), sizeof(type50), type50, sizeof(type50));
    prw_write(&c, f, n);
    const Magnetar__Pulsar__CommandError *e = prw_expect(&c, T(ERROR))->error;
    cr_assert_eq(e->request_id, 0);
    cr_assert_eq(e->error, ERR(NotAllowedError));
    rc_ping_pong(&c);

    Magnetar__Pulsar__CommandConsumerStats cs = MAGNETAR__PULSAR__COMMAND_CONSUMER_STATS__INIT;
    cs.request_id = 7;
    cs.consumer_id = 1;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(CONSUMER_STATS);
    cmd.consumer_stats = &cs;
    prw_send_cmd(&c, &cmd);
    e = prw_expect(&c, T(ERROR))->error;
    cr_assert_eq(e->error, ERR(NotAllowedError));
    cr_assert_eq(e->request_id, 7, "the ERROR names the refused request");
    rc_ping_pong(&c);
    prw_close(&c);
}

/* 7. SEND for a producer id never created closes the connection; so does a SEND whose message
 * metadata is malformed (the checksum, absent here, cannot vouch for it). */
static void case_send_without_producer(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    mg_buf *s = encode_send(777, 0, "orphan", 6);
    prw_write_buf(&c, s);
    mg_buf_unref(s);
    rc_expect_closed(&c, "SEND before PRODUCER");

    prw_conn d = prw_open(&g_cl, 0);
    rc_handshake(&d, 19);
    rc_create_producer(&d, "persistent://public/default/bad-metadata", 1, 1);
    /* [metadata_size 1000][3 bytes]: the metadata runs past the payload. */
    static const uint8_t payload[] = { 0x00, 0x00, 0x03, 0xe8, 'x', 'y', 'z' };
    Magnetar__Pulsar__CommandSend sc = MAGNETAR__PULSAR__COMMAND_SEND__INIT;
    sc.producer_id = 1;
    sc.sequence_id = 0;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SEND);
    cmd.send = &sc;
    mg_buf *head = NULL;
    cr_assert_eq(pw_payload_head_encode(&cmd, sizeof(payload), &head), MG_OK);
    prw_write_buf(&d, head);
    prw_write(&d, payload, sizeof(payload));
    mg_buf_unref(head);
    rc_expect_closed(&d, "SEND with malformed metadata");
}

/* 8. A wrong checksum is SEND_ERROR ChecksumError for that sequence id and stores nothing; the
 * connection keeps publishing, and a consumer from Earliest gets exactly the good messages. */
static void case_checksum(void)
{
    static const char topic[] = "persistent://public/default/checksum";
    prw_conn p = prw_open(&g_cl, 0);
    rc_handshake(&p, 19);
    rc_create_producer(&p, topic, 3, 1);

    mg_buf *bad = encode_send(3, 10, "corrupted", 9);
    uint8_t *last = mg_buf_data(bad) + mg_buf_len(bad) - 1;
    *last ^= 0x01; /* a data byte: the checksum no longer matches */
    prw_write_buf(&p, bad);
    mg_buf_unref(bad);
    const Magnetar__Pulsar__CommandSendError *se = prw_expect(&p, T(SEND_ERROR))->send_error;
    cr_assert_eq(se->producer_id, 3);
    cr_assert_eq(se->sequence_id, 10);
    cr_assert_eq(se->error, ERR(ChecksumError));

    static const char data1[] = "the first good message";
    static const char data2[] = "the second good message, after the bad one";
    mg_buf *good1 = encode_send(3, 11, data1, sizeof(data1) - 1);
    mg_buf *good2 = encode_send(3, 12, data2, sizeof(data2) - 1);
    int64_t ledger1, entry1, ledger2, entry2;
    prw_write_buf(&p, good1);
    rc_expect_receipt(&p, 3, 11, &ledger1, &entry1);
    cr_assert_eq(entry1, 0, "the corrupted message must not have been stored");
    prw_write_buf(&p, good2);
    rc_expect_receipt(&p, 3, 12, &ledger2, &entry2);
    cr_assert_eq(ledger2, ledger1);
    cr_assert_eq(entry2, entry1 + 1);

    prw_conn k = prw_open(&g_cl, 0);
    rc_handshake(&k, 19);
    prw_subscribe(&k, topic, "checksum-sub", 5, 2, true, 10);

    mg_buf *goods[2] = { good1, good2 };
    int64_t entries[2] = { entry1, entry2 };
    for (int i = 0; i < 2; i++) {
        const Magnetar__Pulsar__CommandMessage *m = prw_expect(&k, T(MESSAGE))->message;
        cr_assert_eq(m->consumer_id, 5);
        cr_assert_not_null(m->message_id);
        cr_assert_eq((int64_t)m->message_id->ledger_id, ledger1);
        cr_assert_eq((int64_t)m->message_id->entry_id, entries[i], "message %d", i);
        const uint8_t *want;
        size_t want_len;
        send_payload(goods[i], &want, &want_len);
        cr_assert_eq(k.f.payload_len, want_len, "message %d: payload length", i);
        cr_assert(memcmp(k.raw + k.f.payload_off, want, want_len) == 0,
                  "message %d: payload differs from what was sent", i);
    }
    mg_buf_unref(good1);
    mg_buf_unref(good2);
    rc_ping_pong(&p);
    prw_close(&p);
    prw_close(&k);
}

/* BrokerEntryMetadata to a consumer that asked for it (protocol 19 and the feature flag): a
 * subscription at the tail gets the entries from the tail cache, which holds them without the
 * prefix, so the broker rebuilds it; after a restart (empty tail cache) a subscription from the
 * earliest entry gets the prefixes as stored. Both must be [0x0e02][BrokerEntryMetadata] with
 * the entry's index and timestamp before the client's bytes, and byte for byte the same. */
#define BEM_TOPIC   "persistent://public/default/bem"
#define BEM_ENTRIES 3

static uint8_t g_bem_seen[BEM_ENTRIES][PW_BEM_PREFIX_BYTES_MAX]; /* prefixes from the tail */
static size_t g_bem_seen_len[BEM_ENTRIES];
static uint8_t g_bem_client[BEM_ENTRIES][256]; /* the client bytes sent */
static size_t g_bem_client_len[BEM_ENTRIES];

static void bem_subscribe(prw_conn *k, const char *subscription, uint64_t consumer_id,
                          bool earliest)
{
    mg_buf *b = NULL;
    Magnetar__Pulsar__FeatureFlags ff = MAGNETAR__PULSAR__FEATURE_FLAGS__INIT;
    ff.has_supports_broker_entry_metadata = 1;
    ff.supports_broker_entry_metadata = 1;
    Magnetar__Pulsar__CommandConnect cc = MAGNETAR__PULSAR__COMMAND_CONNECT__INIT;
    cc.client_version = (char *)"magnetar-fault-test";
    cc.has_protocol_version = 1;
    cc.protocol_version = 19;
    cc.feature_flags = &ff;
    Magnetar__Pulsar__BaseCommand connect = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    connect.type = T(CONNECT);
    connect.connect = &cc;
    cr_assert_eq(pw_command_encode(&connect, &b), MG_OK);
    prw_write_buf(k, b);
    mg_buf_unref(b);
    prw_expect(k, T(CONNECTED));

    Magnetar__Pulsar__CommandSubscribe sub = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INIT;
    sub.topic = (char *)BEM_TOPIC;
    sub.subscription = (char *)subscription;
    sub.sub_type = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__SUB_TYPE__Exclusive;
    sub.consumer_id = consumer_id;
    sub.request_id = 1;
    if (earliest) {
        sub.has_initial_position = 1;
        sub.initial_position = MAGNETAR__PULSAR__COMMAND_SUBSCRIBE__INITIAL_POSITION__Earliest;
    }
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(SUBSCRIBE);
    cmd.subscribe = &sub;
    prw_send_cmd(k, &cmd);
    cr_assert_eq(prw_expect(k, T(SUCCESS))->success->request_id, 1);
    Magnetar__Pulsar__CommandFlow flow = MAGNETAR__PULSAR__COMMAND_FLOW__INIT;
    flow.consumer_id = consumer_id;
    flow.message_permits = 10;
    Magnetar__Pulsar__BaseCommand fc = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    fc.type = T(FLOW);
    fc.flow = &flow;
    prw_send_cmd(k, &fc);
}

/* The next MESSAGE on k must be entry i: the prefix (index i, a timestamp in [ts_min, ts_max])
 * then the client bytes g_bem_client[i]; returns the prefix's length, its bytes left in prefix. */
static size_t bem_expect(prw_conn *k, int i, uint64_t ts_min, uint64_t ts_max, uint8_t *prefix)
{
    prw_expect(k, T(MESSAGE));
    const uint8_t *p = k->raw + k->f.payload_off;
    pw_payload pl;
    cr_assert_eq(pw_payload_parse(p, k->f.payload_len, true, &pl), MG_OK, "message %d", i);
    cr_assert(pl.has_broker_entry_metadata, "message %d without BrokerEntryMetadata", i);
    cr_assert(pl.has_broker_timestamp && pl.has_index, "message %d: a field missing", i);
    cr_assert_eq(pl.index, i, "message %d: index %lld", i, (long long)pl.index);
    cr_assert(pl.broker_timestamp_ms >= ts_min && pl.broker_timestamp_ms <= ts_max,
              "message %d: broker timestamp %llu outside [%llu, %llu]", i,
              (unsigned long long)pl.broker_timestamp_ms, (unsigned long long)ts_min,
              (unsigned long long)ts_max);
    cr_assert_leq(pl.bem_len, PW_BEM_PREFIX_BYTES_MAX);
    uint8_t want[PW_BEM_PREFIX_BYTES_MAX];
    size_t want_len = pw_bem_encode((int64_t)pl.broker_timestamp_ms, pl.index, want);
    cr_assert(pl.bem_len == want_len && memcmp(p, want, want_len) == 0,
              "message %d: the prefix is not the codec's encoding of its own fields", i);
    cr_assert(pl.client_len == g_bem_client_len[i] &&
                  memcmp(p + pl.client_off, g_bem_client[i], pl.client_len) == 0,
              "message %d: the client bytes differ from what was sent", i);
    memcpy(prefix, p, pl.bem_len);
    return pl.bem_len;
}

static void case_bem_from_tail(void)
{
    prw_conn k = prw_open(&g_cl, 0);
    bem_subscribe(&k, "bem-tail", 7, false);
    prw_conn p = prw_open(&g_cl, 0);
    rc_handshake(&p, 19);
    rc_create_producer(&p, BEM_TOPIC, 8, 1);
    uint64_t ts_min = (uint64_t)sah_wall_ms();
    for (int i = 0; i < BEM_ENTRIES; i++) {
        char data[32];
        int n = snprintf(data, sizeof(data), "entry %d", i);
        mg_buf *sent = encode_send(8, (uint64_t)i, data, (size_t)n);
        const uint8_t *client;
        send_payload(sent, &client, &g_bem_client_len[i]);
        cr_assert_leq(g_bem_client_len[i], sizeof(g_bem_client[i]));
        memcpy(g_bem_client[i], client, g_bem_client_len[i]);
        prw_write_buf(&p, sent);
        mg_buf_unref(sent);
        int64_t ledger, entry;
        rc_expect_receipt(&p, 8, (uint64_t)i, &ledger, &entry);
    }
    uint64_t ts_max = (uint64_t)sah_wall_ms();
    for (int i = 0; i < BEM_ENTRIES; i++)
        g_bem_seen_len[i] = bem_expect(&k, i, ts_min, ts_max, g_bem_seen[i]);
    prw_close(&p);
    prw_close(&k);
}

static void case_bem_stored(void)
{
    prw_conn k = prw_open(&g_cl, 0);
    bem_subscribe(&k, "bem-earliest", 9, true);
    for (int i = 0; i < BEM_ENTRIES; i++) {
        uint8_t prefix[PW_BEM_PREFIX_BYTES_MAX];
        size_t n = bem_expect(&k, i, 0, UINT64_MAX, prefix);
        cr_assert(n == g_bem_seen_len[i] && memcmp(prefix, g_bem_seen[i], n) == 0,
                  "entry %d: the stored prefix differs from the one rebuilt at the tail", i);
    }
    prw_close(&k);
}

/* Terminating a topic: its producer is closed by the broker, a new producer and a SEND are
 * refused with TopicTerminatedError, and a consumer that read everything is told
 * REACHED_END_OF_TOPIC. */
static void case_terminate(void)
{
    static const char topic[] = "persistent://public/default/terminated";
    prw_conn p = prw_open(&g_cl, 0);
    rc_handshake(&p, 19);
    rc_create_producer(&p, topic, 4, 1);
    prw_conn k = prw_open(&g_cl, 0);
    rc_handshake(&k, 19);
    prw_subscribe(&k, topic, "to-the-end", 6, 3, false, 10);

    int64_t ledger, entry;
    mg_buf *m = encode_send(4, 0, "last words", 10);
    prw_write_buf(&p, m);
    mg_buf_unref(m);
    rc_expect_receipt(&p, 4, 0, &ledger, &entry);
    const Magnetar__Pulsar__CommandMessage *msg = prw_expect(&k, T(MESSAGE))->message;
    cr_assert_eq((int64_t)msg->message_id->entry_id, entry);

    char body[512], want[128];
    int status = sah_http(&g_sa, "POST", "/admin/v2/persistent/public/default/terminated/terminate",
                          NULL, body, sizeof(body));
    cr_assert_eq(status, 200, "terminate: HTTP %d %s", status, body);
    snprintf(want, sizeof(want), "{\"ledgerId\":%lld,\"entryId\":%lld,\"partitionIndex\":-1}",
             (long long)ledger, (long long)entry);
    cr_assert_str_eq(body, want);
    cr_assert_eq(prw_expect(&p, T(CLOSE_PRODUCER))->close_producer->producer_id, 4);
    cr_assert_eq(prw_expect(&k, T(REACHED_END_OF_TOPIC))->reached_end_of_topic->consumer_id, 6);

    /* The client comes back: refused. */
    prw_send_producer(&p, topic, 7, 8);
    const Magnetar__Pulsar__CommandError *e = prw_expect(&p, T(ERROR))->error;
    cr_assert_eq(e->request_id, 8);
    cr_assert_eq(e->error, ERR(TopicTerminatedError));
    /* Terminating again answers the same last message id. */
    status = sah_http(&g_sa, "POST", "/admin/v2/persistent/public/default/terminated/terminate",
                      NULL, body, sizeof(body));
    cr_assert_eq(status, 200);
    cr_assert_str_eq(body, want);
    rc_ping_pong(&p);
    prw_close(&p);
    prw_close(&k);
}

/* 9. Frames trickled one byte at a time are decoded, and so are several frames in one write. */
static void case_trickle(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    mg_buf *b = encode_connect(19);
    size_t n = mg_buf_len(b);
    cr_assert_leq(n, TRICKLE_FRAME_BYTES);
    for (size_t i = 0; i < n; i++) {
        prw_write(&c, mg_buf_data(b) + i, 1);
        usleep(TRICKLE_DELAY_US);
    }
    mg_buf_unref(b);
    const Magnetar__Pulsar__CommandConnected *ok = prw_expect(&c, T(CONNECTED))->connected;
    cr_assert_eq(ok->protocol_version, 19);
    cr_assert_eq(ok->max_message_size, (int32_t)MAX_MESSAGE_BYTES);

    mg_buf *ping = NULL;
    cr_assert_eq(pw_encode_ping(&ping), MG_OK);
    for (size_t i = 0; i < mg_buf_len(ping); i++) {
        prw_write(&c, mg_buf_data(ping) + i, 1);
        usleep(TRICKLE_DELAY_US);
    }
    prw_expect(&c, T(PONG));
    uint8_t three[3 * 16];
    size_t pl = mg_buf_len(ping);
    cr_assert_leq(3 * pl, sizeof(three));
    for (int i = 0; i < 3; i++)
        memcpy(three + (size_t)i * pl, mg_buf_data(ping), pl);
    prw_write(&c, three, 3 * pl);
    mg_buf_unref(ping);
    for (int i = 0; i < 3; i++)
        prw_expect(&c, T(PONG));
    prw_close(&c);
}

/* 10. PING is answered with PONG; with --keepalive-s 1 an idle connection is PINGed and closed
 * when it does not answer, a connection that never sends CONNECT is closed too, and one that
 * answers (the healthy one) stays. */
static void case_keepalive(void)
{
    rc_ping_pong(&g_healthy);
    prw_conn idle = prw_open(&g_cl, 0);
    prw_conn mute = prw_open(&g_cl, 0);
    rc_handshake(&idle, 19);
    prw_result r = prw_next(&idle, 3000); /* the PING is due after 1 to 1.5 s of silence */
    cr_assert_eq(r, PRW_FRAME, "no PING on an idle connection (result %d)", r);
    cr_assert_eq(idle.f.type, T(PING), "got %s", pw_command_type_name(idle.f.type));
    rc_expect_closed(&idle, "no PONG for the broker's PING");
    rc_expect_closed(&mute, "no CONNECT within the keep-alive period");
    cr_assert_geq(g_healthy.pongs_sent, 1, "the healthy connection was never PINGed");
}

/* 10b. A socket that never completes CONNECT is closed BR_CONNECT_TIMEOUT_MS after its accept
 * (within one more timer period), however it keeps trickling bytes of a frame: the keep-alive
 * alone, which counts from the last byte in, would keep it forever. Counted on /metrics. */
static void case_connect_deadline(void)
{
    prw_conn t = prw_open(&g_cl, 0);
    int64_t start = sah_now_ms();
    static const uint8_t header[4] = { 0, 0, 0, 64 }; /* a 64-byte frame, a byte a second */
    bool closed = false;
    for (int i = 0; !closed && sah_now_ms() - start < 25000; i++) {
        uint8_t b = i < 4 ? header[i] : 0;
        if (send(t.fd, &b, 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd pfd = { .fd = t.fd, .events = POLLIN };
        if (poll(&pfd, 1, 1000) == 1) {
            uint8_t junk[16];
            closed = recv(t.fd, junk, sizeof(junk), 0) <= 0;
        }
    }
    int64_t elapsed_ms = sah_now_ms() - start;
    prw_close(&t);
    cr_assert_geq(elapsed_ms, (int64_t)BR_CONNECT_TIMEOUT_MS - 1000,
                  "closed after %lld ms, before the CONNECT deadline", (long long)elapsed_ms);
    cr_assert_leq(elapsed_ms, (int64_t)BR_CONNECT_TIMEOUT_MS + 16000,
                  "a trickling socket without CONNECT still open after %lld ms",
                  (long long)elapsed_ms);
    char *text = fetch_metrics();
    cr_assert_not_null(
        strstr(text, "magnetar_broker_refused_total{reason=\"connect_timeout\"} 1\n"),
        "the connect_timeout refusal is not counted once");
    free(text);
}

/* 11. LOOKUP of a bad name is a LOOKUP_RESPONSE Failed (not ERROR); a good name is Connect to
 * this broker's service URL. */
static void case_lookup(void)
{
    prw_conn c = prw_open(&g_cl, 0);
    rc_handshake(&c, 19);
    Magnetar__Pulsar__CommandLookupTopic lt = MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC__INIT;
    lt.topic = (char *)"a//b";
    lt.request_id = 41;
    Magnetar__Pulsar__BaseCommand cmd = MAGNETAR__PULSAR__BASE_COMMAND__INIT;
    cmd.type = T(LOOKUP);
    cmd.lookup_topic = &lt;
    prw_send_cmd(&c, &cmd);
    const Magnetar__Pulsar__CommandLookupTopicResponse *r =
        prw_expect(&c, T(LOOKUP_RESPONSE))->lookup_topic_response;
    cr_assert_eq(r->request_id, 41);
    cr_assert(r->has_response);
    cr_assert_eq(r->response, MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed);
    cr_assert(r->has_error);
    cr_assert_eq(r->error, ERR(InvalidTopicName));

    lt.topic = (char *)"persistent://public/default/lookup-ok";
    lt.request_id = 42;
    prw_send_cmd(&c, &cmd);
    r = prw_expect(&c, T(LOOKUP_RESPONSE))->lookup_topic_response;
    cr_assert_eq(r->request_id, 42);
    cr_assert(r->has_response);
    cr_assert_eq(r->response,
                 MAGNETAR__PULSAR__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Connect);
    char url[64];
    snprintf(url, sizeof(url), "pulsar://127.0.0.1:%u", g_sa.broker_port);
    cr_assert_not_null(r->broker_service_url);
    cr_assert_str_eq(r->broker_service_url, url);
    prw_close(&c);
}

/* ---- metrics
 * ------------------------------------------------------------------------------------- */

/* GET /metrics; returns a malloc'd NUL-terminated body. */
static char *fetch_metrics(void)
{
    char *text = NULL;
    int status = sah_metrics_get(&g_sa, METRICS_BYTES_MAX + 1, &text);
    cr_assert_eq(status, 200, "GET /metrics: %d %s", status, status < 0 ? mg_strerror(status) : "");
    return text;
}

/* The value of magnetar_broker_protocol_errors_total{reason="<reason>"}, or -1 when absent. */
static double proto_errors(const char *text, const char *reason)
{
    char label[96];
    snprintf(label, sizeof(label), "reason=\"%s\"", reason);
    return sah_metric(text, "magnetar_broker_protocol_errors_total", label);
}

/* ---- the tests
 * ----------------------------------------------------------------------------------- */

typedef struct named_case {
    const char *name;
    void (*run)(void);
} named_case;

/* Runs one case on a fresh standalone, with the healthy connection checked before and after. */
static void run_case(const named_case *c, unsigned keepalive_s)
{
    sa_start(keepalive_s);
    healthy_open();
    c->run();
    healthy_check(c->name);
    prw_close(&g_healthy);
    sa_stop_clean();
    g_passed = true;
}

#define CASE(fn) (&(const named_case){ #fn, fn })

Test(broker_protocol, command_before_connect_closes)
{
    run_case(CASE(case_before_connect), 30);
}

Test(broker_protocol, connect_negotiates_version_and_max_message_size)
{
    run_case(CASE(case_connect_versions), 30);
}

Test(broker_protocol, garbage_command_closes)
{
    run_case(CASE(case_garbage), 30);
}

Test(broker_protocol, frame_too_large_closes_at_the_header)
{
    run_case(CASE(case_frame_too_large), 30);
}

Test(broker_protocol, bad_frame_sizes_close)
{
    run_case(CASE(case_bad_sizes), 30);
}

Test(broker_protocol, unknown_command_is_answered_with_error)
{
    run_case(CASE(case_unknown_command), 30);
}

Test(broker_protocol, send_without_producer_closes)
{
    run_case(CASE(case_send_without_producer), 30);
}

Test(broker_protocol, wrong_checksum_is_send_error_and_not_stored)
{
    run_case(CASE(case_checksum), 30);
}

Test(broker_protocol, frames_split_into_single_bytes_decode)
{
    run_case(CASE(case_trickle), 30);
}

Test(broker_protocol, keepalive_pings_idle_and_closes_silent)
{
    run_case(CASE(case_keepalive), 1);
}

Test(broker_protocol, terminate_refuses_producers_and_ends_consumers)
{
    run_case(CASE(case_terminate), 30);
}

Test(broker_protocol, no_connect_within_the_deadline_closes)
{
    run_case(CASE(case_connect_deadline), 30);
}

Test(broker_protocol, lookup_of_bad_name_fails_with_lookup_response)
{
    run_case(CASE(case_lookup), 30);
}

Test(broker_protocol, broker_entry_metadata_rebuilt_from_the_tail_equals_the_stored_prefix)
{
    sa_start(30);
    healthy_open();
    case_bem_from_tail();
    healthy_check("case_bem_from_tail");
    prw_close(&g_healthy);
    sa_stop_clean();
    int rc = sah_restart(&g_sa);
    cr_assert_eq(rc, MG_OK, "restart: %s", mg_strerror(rc));
    g_cl.port = g_sa.broker_port;
    healthy_open();
    case_bem_stored();
    healthy_check("case_bem_stored");
    prw_close(&g_healthy);
    sa_stop_clean();
    g_passed = true;
}

/* 12. Every case on one broker, the healthy connection checked after each, then the counters
 * on /metrics: exactly as many of each reason as the cases caused. */
Test(broker_protocol, metrics_count_every_protocol_error)
{
    static const named_case cases[] = {
        { "case_before_connect", case_before_connect },
        { "case_connect_versions", case_connect_versions },
        { "case_garbage", case_garbage },
        { "case_frame_too_large", case_frame_too_large },
        { "case_bad_sizes", case_bad_sizes },
        { "case_unknown_command", case_unknown_command },
        { "case_send_without_producer", case_send_without_producer },
        { "case_checksum", case_checksum },
        { "case_trickle", case_trickle },
        { "case_lookup", case_lookup },
    };
    sa_start(30);
    healthy_open();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cases[i].run();
        healthy_check(cases[i].name);
    }
    char *text = fetch_metrics();
    static const struct {
        const char *reason;
        double count;
    } want[] = {
        { "not_connected", 1 },         /* case 1 */
        { "connect_twice", 1 },         /* case 2 */
        { "bad_command", 2 },           /* cases 3 and 5 (command_size) */
        { "frame_too_large", 1 },       /* case 4 */
        { "bad_frame", 1 },             /* case 5 (total_size < 4) */
        { "unknown_command", 1 },       /* case 6, type 50 */
        { "unsupported_command", 1 },   /* case 6, CONSUMER_STATS */
        { "send_without_producer", 1 }, /* case 7 */
        { "bad_message_metadata", 1 },  /* case 7 */
        { "checksum", 1 },              /* case 8 */
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        double got = proto_errors(text, want[i].reason);
        cr_expect_eq(got, want[i].count, "magnetar_broker_protocol_errors_total{reason=\"%s\"}: %g",
                     want[i].reason, got);
    }
    free(text);
    healthy_check("fetching /metrics");
    prw_close(&g_healthy);
    sa_stop_clean();
    g_passed = true;
}
