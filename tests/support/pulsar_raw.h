/*
 * A blocking Pulsar client over raw sockets, for tests that must say on the wire what no real
 * client would (frames before CONNECT, lying sizes, frames sent byte by byte, consumers that
 * never read): connections to a broker on 127.0.0.1, frames written as given and read back
 * whole, decoded with src/pulsar (pw_*). One test thread drives it; nothing runs behind it.
 *
 * Invariants:
 *  1. Every wait is bounded: a send by prw_client.timeout_ms (SO_SNDTIMEO and a deadline), a
 *     read by the deadline or timeout its caller gives.
 *  2. A connection holds at most one frame read (prw_conn.f and raw, freed by the next read and
 *     by prw_close).
 *  3. Unlike the other harnesses, what is not a normal outcome fails the running Criterion test
 *     at once (a socket error, a frame that does not decode, a send that does not finish): the
 *     callers are Criterion tests, and the assertion names the call that failed. A peer that
 *     closes or stays silent is a normal outcome (PRW_EOF, PRW_TIMEOUT).
 *
 * A side connection (prw_client.side): while a read waits on any other connection of the
 * client, the side connection is watched as well, and side_ready is called when it has bytes,
 * e.g. to answer the broker's PINGs on a connection that must stay healthy throughout a test.
 */
#ifndef MG_TESTS_SUPPORT_PULSAR_RAW_H
#define MG_TESTS_SUPPORT_PULSAR_RAW_H

#include "common/buf.h"
#include "pulsar/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest frame read: the broker's largest is its max message size and a few KiB. */
#define PRW_FRAME_BYTES_MAX (1u << 24)
/* PINGs prw_next answers in a row before it gives up on the connection. */
#define PRW_PINGS_MAX       1000

typedef enum prw_result {
    PRW_FRAME = 1,   /* a frame (or the bytes asked for) was read */
    PRW_EOF = 0,     /* the peer closed (or reset) the connection */
    PRW_TIMEOUT = -1 /* nothing (complete) before the deadline */
} prw_result;

typedef struct prw_conn prw_conn;

typedef struct prw_client {
    uint16_t port;  /* the broker's, on 127.0.0.1 */
    int timeout_ms; /* bounds each send and prw_expect's wait */
    bool auto_pong; /* prw_conn.auto_pong of the connections prw_open makes */
    prw_conn *side; /* NULL, or watched while a read waits on another connection */
    void (*side_ready)(prw_conn *side); /* side has bytes to read */
    int side_poll_ms;                   /* how often a wait looks at side (> 0 when side is set) */
} prw_client;

struct prw_conn {
    const prw_client *cl;
    int fd;              /* -1 when closed */
    bool auto_pong;      /* prw_next answers the broker's PINGs without handing them over */
    unsigned pongs_sent; /* PONGs prw_send_pong sent on it */
    uint8_t *raw;        /* the last frame read, as it came (malloc'd) */
    size_t raw_len;
    pw_frame f; /* the last frame, decoded (f.cmd NULL when none) */
};

/* A connection to cl's broker with TCP_NODELAY; rcvbuf > 0 sets SO_RCVBUF before connecting (a
 * consumer that takes almost nothing into its kernel buffer). cl must outlive it. Fails the
 * test when the socket cannot connect. */
prw_conn prw_open(const prw_client *cl, int rcvbuf);

/* Closes the connection and frees its frame; harmless on a closed one. */
void prw_close(prw_conn *c);

/* Frees the last frame read (the next read does it too). */
void prw_forget_frame(prw_conn *c);

/* Writes all n bytes, within the client's timeout (else the test fails). */
void prw_write(prw_conn *c, const void *p, size_t n);
void prw_write_buf(prw_conn *c, mg_buf *b);

/* Writes up to n bytes without blocking (what the socket takes now); returns the count. An error
 * (the broker closed the connection) ends it quietly. */
size_t prw_write_some(prw_conn *c, const void *p, size_t n);

/* Encodes and writes a command frame; a PONG (counted in c->pongs_sent); a PING. */
void prw_send_cmd(prw_conn *c, const Magnetar__Pulsar__BaseCommand *cmd);
void prw_send_pong(prw_conn *c);
void prw_send_ping(prw_conn *c);

/* Reads exactly n bytes before deadline_ms (sah_now_ms's clock); while waiting, serves the
 * client's side connection. */
prw_result prw_read_exact(prw_conn *c, uint8_t *dst, size_t n, int64_t deadline_ms);

/* Reads one whole frame into c->raw and decodes it into c->f (the broker's frames must decode;
 * a connection closed inside a frame fails the test). */
prw_result prw_read_frame(prw_conn *c, int64_t deadline_ms);

/* The next frame within timeout_ms, the broker's PINGs answered when c->auto_pong. */
prw_result prw_next(prw_conn *c, int timeout_ms);

/* The next frame must be of the given type, within the client's timeout; returns its command
 * (valid until the next read on c). */
const Magnetar__Pulsar__BaseCommand *prw_expect(prw_conn *c, int type);

/* Sends PRODUCER for producer_id on topic (the answer is left to the caller). */
void prw_send_producer(prw_conn *c, const char *topic, uint64_t producer_id, uint64_t request_id);

/* An Exclusive subscription sub on topic (from the earliest message when earliest, else the
 * broker's default, the latest): SUBSCRIBE, its SUCCESS for request_id awaited, then FLOW with
 * permits. */
void prw_subscribe(prw_conn *c, const char *topic, const char *sub, uint64_t consumer_id,
                   uint64_t request_id, bool earliest, uint32_t permits);

/* A CONNECT frame with client_version and protocol version. */
mg_buf *prw_encode_connect(const char *client_version, int version);

/* A whole SEND frame of producer_id's message sequence_id (published now), with a checksummed
 * payload of len bytes from data and producer_name in its metadata. */
mg_buf *prw_encode_send(uint64_t producer_id, uint64_t sequence_id, const char *producer_name,
                        const void *data, size_t len);

#endif
