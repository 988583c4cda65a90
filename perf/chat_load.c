/*
 * perf_chat_load: the load client of the chat fan-out benchmark (perf/chat.sh,
 * ../shared/BENCHMARKS.md workload 5). It opens --connections WebSocket subscribers to one
 * server, pushes messages at a fixed rate through the server's HTTP push API, and measures
 * what arrives: deliveries per second against the ideal (connections x rate), the delivery
 * latency from the pusher's timestamp, and drops. Two servers are spoken to:
 *
 *   magnetar  the chat gateway (ARCHITECTURE.md §10): after the HTTP 101, a masked binary frame
 *             with an auth packet (op 7, {"mid":i,"key":"k<i>","room_id":"live://R",...}), which
 *             the gateway answers with op 8; a heartbeat (op 2) every 30 s, answered with op 3.
 *             Every binary message holds whole GOIM packets ([packLen u32][headerLen u16 = 16]
 *             [ver u16][op u32][seq u32][body], big-endian); a room message is an op 5 packet,
 *             alone or among others inside an op 9 batch. Pushes are
 *             POST /goim/push/room?type=live&room=R on the admin port.
 *   nchan     nginx's nchan module: every WebSocket message is one published message. Pushes
 *             are POST /pub?id=roomR.
 *
 * A pushed body is JSON text, {"ts":<wall clock µs>,"n":<per-room sequence>,"room":R,"pad":...}
 * padded to --body-bytes. Each delivery costs one latency sample, now - ts, in a log-linear
 * histogram (16 buckets per power of two: under 6.3 % error), and moves its connection's
 * highest n seen. A connection's drops are the pushes its room had acknowledged (HTTP 2xx) that
 * it never received.
 *
 * PHASES (each bounded in time)
 *   1. connect  connections are opened at --connect-rate per second with at most
 *               --handshakes-max handshakes in flight, spread round-robin over the source
 *               addresses 127.0.0.1 .. 127.0.0.K (bind() before connect(), with
 *               IP_BIND_ADDRESS_NO_PORT so the port is picked per destination), K chosen so no
 *               address carries more than --per-source connections, itself kept below the
 *               ephemeral port range; the phase ends when every connection is open or failed,
 *               or after --connect-timeout-s.
 *   2. hold     with --ready-file, the connect figures are written there and the client waits
 *               for SIGUSR1 (at most --hold-max-s) while the connections sit idle: perf/chat.sh
 *               reads the server's RSS meanwhile.
 *   3. push     a second thread pushes --rate messages per second for --duration seconds over
 *               --push-conns keep-alive HTTP/1.1 connections, one request in flight on each; a
 *               push that finds every connection busy waits in a bounded queue (counted late
 *               when it leaves over CL_PUSH_LATE_MS after it was due). Rooms take turns; n
 *               counts per room. With several pushes in flight a room's messages may be stored
 *               out of order: each connection tracks the n it received in a window above the
 *               highest n below which it has all (seen_add), so reordering is no drop and a
 *               message received twice is counted once (as a duplicate).
 *   4. drain    until every acknowledged push reached every open connection, or --drain-s.
 *
 * SIGUSR2 sets a mark (at most CL_MARKS_MAX): the highest acknowledged n of every room at that
 * moment is the mark's target, and the client reports when every open connection had received
 * its room's target, with the latency of the deliveries meanwhile. perf/chat.sh marks the
 * restart of a killed Job worker this way. SIGINT and SIGTERM end the run early; the result is
 * still printed.
 *
 * Output: one JSON object on stdout at the end; a progress line on stderr every second; with
 * --timeline FILE a line per second (see timeline_write). A connection the server closes is
 * counted, never fatal. --self-test feeds constructed frames and packets through the parsers,
 * split at every byte boundary, and exits 0 when they agree with what was built.
 *
 * THREADS: the main thread owns every subscriber connection, the histograms and the marks; the
 * pusher thread owns its HTTP connections. They share only the per-room counters of
 * acknowledged pushes (atomics) and the pusher's totals.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "perf_args.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CL_CONNECTIONS_MAX    1000000
#define CL_SOURCES_MAX        250 /* 127.0.0.1 .. 127.0.0.250 */
#define CL_ROOMS_MAX          100000
#define CL_PUSH_CONNS_MAX     64
#define CL_PUSH_QUEUE_MAX     4096 /* due pushes waiting for their HTTP connection */
#define CL_MARKS_MAX          8
#define CL_HEARTBEAT_S        30   /* GOIM clients send op 2 every 30 s */
#define CL_EVENTS_MAX         1024 /* epoll events per wait */
#define CL_SCRATCH_BYTES      (256 * 1024)
#define CL_MESSAGE_BYTES_MAX  (1024 * 1024) /* a WebSocket message; more is a broken server */
#define CL_RESPONSE_BYTES_MAX 8192          /* an HTTP response head (101, push reply) */
#define CL_BODY_BYTES_MAX     65536
#define CL_PATH_BYTES_MAX     512
#define CL_PORT_MARGIN        1000  /* ports left free per source address for everything else */
#define CL_PUSH_TIMEOUT_MS    10000 /* one push request; then its connection is reopened */
#define CL_PUSH_CONNECT_MS    2000
#define CL_PUSH_LATE_MS       10    /* a push sent this long after it was due counts as late */
#define CL_PUSH_STOP_GRACE_MS 10000 /* answers awaited after the last push */
#define CL_DURATION_S_MAX     86400
#define CL_HIST_SUB           16 /* buckets per power of two */
#define CL_HIST_EXP_MAX       40 /* 2^40 µs, 12.7 days: everything above lands in the top */
#define CL_HIST_BUCKETS       ((CL_HIST_EXP_MAX - 3) * CL_HIST_SUB + CL_HIST_SUB)
#define CL_GOIM_HEADER_BYTES  16
#define CL_OP_HEARTBEAT       2u
#define CL_OP_HEARTBEAT_REPLY 3u
#define CL_OP_SEND_MSG_REPLY  5u
#define CL_OP_AUTH            7u
#define CL_OP_AUTH_REPLY      8u
#define CL_OP_RAW             9u
#define CL_BATCH_DEPTH_MAX    2  /* an op 9 inside an op 9 is split once more, no further */
#define CL_SEEN_WINDOW        64 /* sequence numbers tracked above a connection's base */

/* --- Options ------------------------------------------------------------------------------- */

typedef struct cl_opts {
    bool magnetar; /* --mode magnetar, else nchan */
    char host[64];
    int port;
    const char *path; /* may hold {room} */
    int64_t connections;
    int64_t rooms;
    int64_t per_source;
    int64_t connect_rate;
    int64_t handshakes_max;
    int64_t connect_timeout_s;
    int64_t handshake_timeout_s;
    const char *ready_file;
    int64_t hold_max_s;
    char push_host[64];
    int push_port;
    const char *push_path; /* may hold {room} */
    bool push;
    int64_t rate;
    int64_t duration_s;
    int64_t drain_s;
    int64_t body_bytes;
    int64_t push_conns;
    const char *timeline;
    bool progress;
    bool self_test;
} cl_opts;

/* --- Histogram ----------------------------------------------------------------------------- */

typedef struct cl_hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t buckets[CL_HIST_BUCKETS];
} cl_hist;

static int hist_index(uint64_t v_us)
{
    if (v_us < CL_HIST_SUB)
        return (int)v_us;
    int e = 63 - __builtin_clzll(v_us);
    if (e > CL_HIST_EXP_MAX) {
        e = CL_HIST_EXP_MAX;
        v_us = (2ull << CL_HIST_EXP_MAX) - 1;
    }
    return (e - 3) * CL_HIST_SUB + (int)((v_us >> (e - 4)) & (CL_HIST_SUB - 1));
}

/* The middle of bucket i, in µs. */
static double hist_value_us(int i)
{
    if (i < CL_HIST_SUB)
        return i;
    int e = i / CL_HIST_SUB + 3;
    uint64_t width = 1ull << (e - 4);
    uint64_t low = (uint64_t)(CL_HIST_SUB + i % CL_HIST_SUB) << (e - 4);
    return (double)low + (double)(width - 1) / 2.0;
}

static void hist_add(cl_hist *h, int64_t v_us)
{
    uint64_t v = v_us < 0 ? 0 : (uint64_t)v_us;
    h->buckets[hist_index(v)]++;
    h->count++;
    if (v > h->max_us)
        h->max_us = v;
}

/* The q-quantile in ms (0 when empty); the maximum is exact. */
static double hist_quantile_ms(const cl_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count)
        rank = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < CL_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > rank) {
            double v = hist_value_us(i);
            return (v > (double)h->max_us ? (double)h->max_us : v) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

static void hist_json(FILE *f, const cl_hist *h)
{
    fprintf(f,
            "{\"count\":%" PRIu64 ",\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
            "\"max\":%.3f}",
            h->count, hist_quantile_ms(h, 0.5), hist_quantile_ms(h, 0.9), hist_quantile_ms(h, 0.99),
            hist_quantile_ms(h, 0.999), (double)h->max_us / 1000.0);
}

/* --- Clocks -------------------------------------------------------------------------------- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- Shared state -------------------------------------------------------------------------- */

enum cl_state {
    CL_WAITING = 0, /* not started yet */
    CL_CONNECTING,  /* TCP connect in progress */
    CL_UPGRADING,   /* handshake sent, waiting for the 101 */
    CL_AUTHING,     /* magnetar: auth sent, waiting for op 8 */
    CL_OPEN,
    CL_CLOSED, /* was open, then closed (by the server or an error) */
    CL_FAILED, /* never opened */
};

typedef struct cl_conn {
    int fd;
    uint8_t state;
    uint8_t source;
    bool want_out;      /* EPOLLOUT registered */
    uint32_t room;      /* 1-based */
    int64_t last_n;     /* highest n received */
    int64_t unique;     /* distinct n received */
    int64_t seen_base;  /* every n <= seen_base was received or given up on */
    uint64_t seen_mask; /* bit i: n = seen_base + 1 + i was received */
    int64_t start_us;   /* connect() time, for the handshake timeout */
    uint8_t *in;        /* bytes of an incomplete frame or response head */
    uint32_t in_len;
    uint8_t *msg; /* a fragmented WebSocket message being assembled */
    uint32_t msg_len;
    uint8_t *out; /* bytes the socket did not take yet */
    uint32_t out_len;
} cl_conn;

typedef struct cl_mark {
    int64_t at_us; /* monotonic */
    int64_t wall_at_us;
    int64_t *target;      /* per room: the highest acknowledged n at the mark */
    int64_t pending;      /* open connections still below their room's target */
    int64_t caught_up_us; /* 0 until pending reaches 0 */
    int64_t lag_max;      /* the largest per-second lag seen while pending */
    cl_hist hist;         /* deliveries between the mark and catching up */
} cl_mark;

typedef struct cl_pusher_stats {
    atomic_int_fast64_t sent;
    atomic_int_fast64_t acked;
    atomic_int_fast64_t failed;
    atomic_int_fast64_t late;
    atomic_int_fast64_t skipped;
    atomic_int_fast64_t reconnects;
    atomic_int_fast64_t unanswered; /* in flight when the pusher's time ran out */
    atomic_bool done;
} cl_pusher_stats;

typedef struct cl_ctx {
    cl_opts o;
    cl_conn *conns;
    int64_t sources;
    int ep;
    int sig_fd;
    uint8_t *scratch;
    /* counters */
    int64_t started, opened, failed, closed, in_flight;
    int64_t failed_refused, failed_timeout, failed_other, failed_handshake;
    int64_t deliveries, deliveries_in_push, unparsed, wrong_room, out_of_order, duplicates;
    int64_t heartbeats_sent, heartbeat_replies, proto_errors, unknown_packets, closes_by_server;
    int64_t first_connect_us, last_open_us;
    int64_t push_start_us, last_delivery_us, first_delivery_us;
    int64_t recv_mono_us; /* when the bytes being parsed were received: one clock read per */
    int64_t recv_wall_us; /* recv(), not per message */
    cl_hist hist;         /* deliveries during the push and drain phases */
    cl_hist hist_second;  /* the current second, for progress and the timeline */
    int64_t second_deliveries;
    /* rooms: counts of acknowledged pushes and the highest acknowledged n (pusher writes) */
    atomic_int_fast64_t *room_acked;
    atomic_int_fast64_t *room_acked_max_n;
    int64_t *room_members; /* open connections per room, counted after the connect phase */
    cl_mark marks[CL_MARKS_MAX];
    int mark_count;
    cl_pusher_stats ps;
    cl_hist push_hist; /* push request round trips, written by the pusher thread only */
    atomic_bool stop;
    FILE *timeline;
    bool pushing; /* the push or drain phase: deliveries are measured */
} cl_ctx;

/* --- Small helpers ------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Writes a GOIM packet into dst (capacity checked by the caller): 16 + body_len bytes. */
static size_t goim_encode(uint8_t *dst, uint16_t ver, uint32_t op, uint32_t seq, const void *body,
                          size_t body_len)
{
    put_be32(dst, (uint32_t)(CL_GOIM_HEADER_BYTES + body_len));
    dst[4] = 0;
    dst[5] = CL_GOIM_HEADER_BYTES;
    dst[6] = (uint8_t)(ver >> 8);
    dst[7] = (uint8_t)ver;
    put_be32(dst + 8, op);
    put_be32(dst + 12, seq);
    if (body_len > 0)
        memcpy(dst + CL_GOIM_HEADER_BYTES, body, body_len);
    return CL_GOIM_HEADER_BYTES + body_len;
}

/* Writes a WebSocket frame (FIN set) into dst, masked when mask is true: at most len + 14
 * bytes. */
static size_t ws_encode(uint8_t *dst, uint8_t opcode, const uint8_t *payload, size_t len, bool mask)
{
    size_t h = 0;
    dst[h++] = (uint8_t)(0x80 | opcode);
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        dst[h++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        dst[h++] = (uint8_t)(m | 126);
        dst[h++] = (uint8_t)(len >> 8);
        dst[h++] = (uint8_t)len;
    } else {
        dst[h++] = (uint8_t)(m | 127);
        for (int i = 7; i >= 0; i--)
            dst[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t key[4] = { 0, 0, 0, 0 };
    if (mask) {
        uint64_t r = rng_next();
        memcpy(key, &r, 4);
        memcpy(dst + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < len; i++)
        dst[h + i] = mask ? (uint8_t)(payload[i] ^ key[i & 3]) : payload[i];
    return h + len;
}

static void base64_16(const uint8_t in[16], char out[25])
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int o = 0;
    for (int i = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        out[o++] = a[v >> 6 & 63];
        out[o++] = a[v & 63];
    }
    uint32_t v = (uint32_t)in[15] << 16;
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    out[o++] = '=';
    out[o++] = '=';
    out[o] = '\0';
}

/* Copies template t into dst with every "{room}" replaced by room. Returns false when it does
 * not fit. */
static bool expand_room(char *dst, size_t cap, const char *t, uint32_t room)
{
    size_t o = 0;
    for (size_t i = 0; t[i] != '\0'; i++) {
        if (strncmp(t + i, "{room}", 6) == 0) {
            int n = snprintf(dst + o, cap - o, "%" PRIu32, room);
            if (n < 0 || (size_t)n >= cap - o)
                return false;
            o += (size_t)n;
            i += 5;
        } else {
            if (o + 1 >= cap)
                return false;
            dst[o++] = t[i];
        }
    }
    dst[o] = '\0';
    return true;
}

/* Finds "key": followed by an integer in a body of len bytes. */
static bool json_int(const uint8_t *body, size_t len, const char *key, int64_t *out)
{
    size_t kl = strlen(key);
    const uint8_t *end = body + len;
    const uint8_t *p = body;
    for (int guard = 0; guard < 64 && p < end; guard++) {
        const uint8_t *hit = memmem(p, (size_t)(end - p), key, kl);
        if (hit == NULL)
            return false;
        const uint8_t *q = hit + kl;
        while (q < end && (*q == ' ' || *q == ':'))
            q++;
        if (q < end && *q >= '0' && *q <= '9') {
            int64_t v = 0;
            for (int d = 0; q < end && *q >= '0' && *q <= '9' && d < 19; d++, q++)
                v = v * 10 + (*q - '0');
            *out = v;
            return true;
        }
        p = hit + kl;
    }
    return false;
}

/* --- Deliveries ---------------------------------------------------------------------------- */

/* Records n in k's window of CL_SEEN_WINDOW sequence numbers above seen_base; returns false for
 * one already received. An n beyond the window slides it, giving up on the oldest missing ones
 * (they count as drops at the end). Pushes may be stored out of order when several are in
 * flight, and a restarted Job worker may deliver again what it had delivered. */
static bool seen_add(cl_conn *k, int64_t n)
{
    if (n <= k->seen_base)
        return false;
    int64_t d = n - k->seen_base - 1;
    if (d >= CL_SEEN_WINDOW) {
        int64_t shift = d - (CL_SEEN_WINDOW - 1);
        k->seen_mask = shift >= CL_SEEN_WINDOW ? 0 : k->seen_mask >> shift;
        k->seen_base += shift;
        d = CL_SEEN_WINDOW - 1;
    }
    if (k->seen_mask & (1ull << d))
        return false;
    k->seen_mask |= 1ull << d;
    for (int i = 0; i < CL_SEEN_WINDOW && (k->seen_mask & 1); i++) {
        k->seen_mask >>= 1;
        k->seen_base++;
    }
    return true;
}

/* One message as pushed: its latency, its connection's sequence, the marks. */
static void delivery_record(cl_ctx *c, cl_conn *k, const uint8_t *body, size_t len)
{
    int64_t ts = 0, n = 0, room = 0;
    if (!json_int(body, len, "\"ts\"", &ts) || !json_int(body, len, "\"n\"", &n)) {
        c->unparsed++;
        return;
    }
    int64_t now = c->recv_mono_us;
    int64_t lat = c->recv_wall_us - ts;
    c->deliveries++;
    if (c->first_delivery_us == 0)
        c->first_delivery_us = now;
    c->last_delivery_us = now;
    if (c->pushing) {
        c->deliveries_in_push++;
        hist_add(&c->hist, lat);
    }
    hist_add(&c->hist_second, lat);
    c->second_deliveries++;
    if (json_int(body, len, "\"room\"", &room) && room != (int64_t)k->room)
        c->wrong_room++;
    if (!seen_add(k, n)) {
        c->duplicates++;
        return;
    }
    k->unique++;
    int64_t before = k->last_n;
    if (n < before) {
        c->out_of_order++;
        return;
    }
    k->last_n = n;
    for (int m = 0; m < c->mark_count; m++) {
        cl_mark *mk = &c->marks[m];
        if (mk->caught_up_us != 0)
            continue;
        hist_add(&mk->hist, lat);
        int64_t t = mk->target[k->room];
        if (before < t && n >= t && --mk->pending == 0)
            mk->caught_up_us = now;
    }
}

/* A connection leaves: it no longer holds up a mark. */
static void marks_forget(cl_ctx *c, const cl_conn *k)
{
    for (int m = 0; m < c->mark_count; m++) {
        cl_mark *mk = &c->marks[m];
        if (mk->caught_up_us == 0 && k->last_n < mk->target[k->room] && --mk->pending == 0)
            mk->caught_up_us = mono_us();
    }
}

/* --- GOIM packets (magnetar mode) ---------------------------------------------------------- */

static void conn_send(cl_ctx *c, cl_conn *k, const uint8_t *p, size_t len);
static void conn_close(cl_ctx *c, cl_conn *k);

/* Splits len bytes of whole packets; depth bounds op 9 nesting. Returns false on a malformed
 * packet (the rest of the bytes are skipped). */
static bool goim_packets(cl_ctx *c, cl_conn *k, const uint8_t *p, size_t len, int depth)
{
    size_t off = 0;
    while (off < len) {
        if (len - off < CL_GOIM_HEADER_BYTES)
            return false;
        uint32_t pack_len = get_be32(p + off);
        uint16_t header_len = get_be16(p + off + 4);
        if (header_len != CL_GOIM_HEADER_BYTES || pack_len < CL_GOIM_HEADER_BYTES ||
            pack_len > len - off)
            return false;
        uint32_t op = get_be32(p + off + 8);
        const uint8_t *body = p + off + CL_GOIM_HEADER_BYTES;
        size_t body_len = pack_len - CL_GOIM_HEADER_BYTES;
        if (op == CL_OP_SEND_MSG_REPLY) {
            delivery_record(c, k, body, body_len);
        } else if (op == CL_OP_RAW && depth < CL_BATCH_DEPTH_MAX) {
            if (!goim_packets(c, k, body, body_len, depth + 1))
                return false;
        } else if (op == CL_OP_AUTH_REPLY && k->state == CL_AUTHING) {
            int64_t code = -1;
            if (!json_int(body, body_len, "\"code\"", &code) || code != 0) {
                c->failed_handshake++;
                return false;
            }
            k->state = CL_OPEN;
            c->opened++;
            c->in_flight--;
            c->last_open_us = mono_us();
        } else if (op == CL_OP_HEARTBEAT_REPLY) {
            c->heartbeat_replies++;
        } else {
            c->unknown_packets++;
        }
        off += pack_len;
    }
    return true;
}

/* One whole WebSocket message. */
static void ws_message(cl_ctx *c, cl_conn *k, const uint8_t *p, size_t len)
{
    if (!c->o.magnetar) {
        delivery_record(c, k, p, len);
        return;
    }
    if (!goim_packets(c, k, p, len, 0))
        c->proto_errors++;
}

/* Parses frames from p; returns the bytes consumed (a partial frame stays), or -1 when the
 * connection was closed. */
static ssize_t ws_frames(cl_ctx *c, cl_conn *k, uint8_t *p, size_t len)
{
    size_t off = 0;
    while (off < len && k->state != CL_CLOSED && k->state != CL_FAILED) {
        size_t avail = len - off;
        if (avail < 2)
            break;
        const uint8_t *f = p + off;
        bool fin = (f[0] & 0x80) != 0;
        uint8_t opcode = f[0] & 0x0F;
        bool masked = (f[1] & 0x80) != 0;
        uint64_t plen = f[1] & 0x7F;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = get_be16(f + 2);
            h = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = (uint64_t)get_be32(f + 2) << 32 | get_be32(f + 6);
            h = 10;
        }
        if (plen > CL_MESSAGE_BYTES_MAX) {
            c->proto_errors++;
            conn_close(c, k);
            return -1;
        }
        size_t mh = masked ? 4 : 0;
        if (avail < h + mh + plen)
            break;
        uint8_t *payload = p + off + h + mh;
        if (masked)
            for (size_t i = 0; i < plen; i++)
                payload[i] ^= f[h + (i & 3)];
        off += h + mh + plen;
        if (opcode == 0x8) {
            c->closes_by_server++;
            conn_close(c, k);
            return -1;
        } else if (opcode == 0x9) {
            uint8_t pong[14 + 125];
            size_t n = ws_encode(pong, 0xA, payload, plen > 125 ? 125 : plen, true);
            conn_send(c, k, pong, n);
        } else if (opcode == 0xA) {
            continue;
        } else if (opcode == 0x1 || opcode == 0x2) {
            if (k->msg != NULL) {
                c->proto_errors++;
                free(k->msg);
                k->msg = NULL;
                k->msg_len = 0;
            }
            if (fin) {
                ws_message(c, k, payload, plen);
            } else {
                k->msg = malloc(plen > 0 ? plen : 1);
                if (k->msg == NULL) {
                    conn_close(c, k);
                    return -1;
                }
                memcpy(k->msg, payload, plen);
                k->msg_len = (uint32_t)plen;
            }
        } else if (opcode == 0x0 && k->msg != NULL) {
            if (k->msg_len + plen > CL_MESSAGE_BYTES_MAX) {
                c->proto_errors++;
                conn_close(c, k);
                return -1;
            }
            uint8_t *m = realloc(k->msg, k->msg_len + plen + 1);
            if (m == NULL) {
                conn_close(c, k);
                return -1;
            }
            memcpy(m + k->msg_len, payload, plen);
            k->msg = m;
            k->msg_len += (uint32_t)plen;
            if (fin) {
                ws_message(c, k, k->msg, k->msg_len);
                free(k->msg);
                k->msg = NULL;
                k->msg_len = 0;
            }
        } else {
            c->proto_errors++;
        }
    }
    return (ssize_t)off;
}

/* --- Subscriber connections ---------------------------------------------------------------- */

static void conn_want_out(cl_ctx *c, cl_conn *k, bool want, uint32_t index)
{
    if (k->want_out == want)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = index };
    if (epoll_ctl(c->ep, EPOLL_CTL_MOD, k->fd, &ev) == 0)
        k->want_out = want;
}

static void conn_free_buffers(cl_conn *k)
{
    free(k->in);
    free(k->msg);
    free(k->out);
    k->in = k->msg = k->out = NULL;
    k->in_len = k->msg_len = k->out_len = 0;
}

static void conn_close(cl_ctx *c, cl_conn *k)
{
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    conn_free_buffers(k);
    if (k->state == CL_OPEN) {
        k->state = CL_CLOSED;
        c->closed++;
        marks_forget(c, k);
    } else if (k->state != CL_CLOSED && k->state != CL_FAILED) {
        k->state = CL_FAILED;
        c->failed++;
        c->in_flight--;
    }
}

static void conn_fail(cl_ctx *c, cl_conn *k, int err)
{
    if (k->state == CL_CONNECTING || k->state == CL_UPGRADING || k->state == CL_AUTHING) {
        if (err == ECONNREFUSED)
            c->failed_refused++;
        else if (err == ETIMEDOUT)
            c->failed_timeout++;
        else if (err == EPROTO)
            c->failed_handshake++;
        else
            c->failed_other++;
    }
    conn_close(c, k);
}

static void conn_send(cl_ctx *c, cl_conn *k, const uint8_t *p, size_t len)
{
    if (k->fd < 0)
        return;
    size_t done = 0;
    if (k->out_len == 0) {
        ssize_t n = send(k->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_fail(c, k, errno);
            return;
        }
        done = n > 0 ? (size_t)n : 0;
        if (done == len)
            return;
    }
    if (k->out_len + (len - done) > CL_MESSAGE_BYTES_MAX) {
        conn_fail(c, k, ENOBUFS);
        return;
    }
    uint8_t *o = realloc(k->out, k->out_len + (len - done));
    if (o == NULL) {
        conn_fail(c, k, ENOMEM);
        return;
    }
    memcpy(o + k->out_len, p + done, len - done);
    k->out = o;
    k->out_len += (uint32_t)(len - done);
    conn_want_out(c, k, true, (uint32_t)(k - c->conns));
}

static void conn_flush(cl_ctx *c, cl_conn *k)
{
    if (k->out_len == 0) {
        conn_want_out(c, k, false, (uint32_t)(k - c->conns));
        return;
    }
    ssize_t n = send(k->fd, k->out, k->out_len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            conn_fail(c, k, errno);
        return;
    }
    memmove(k->out, k->out + n, k->out_len - (size_t)n);
    k->out_len -= (uint32_t)n;
    if (k->out_len == 0) {
        free(k->out);
        k->out = NULL;
        conn_want_out(c, k, false, (uint32_t)(k - c->conns));
    }
}

static void conn_send_handshake(cl_ctx *c, cl_conn *k, uint32_t index)
{
    char path[CL_PATH_BYTES_MAX];
    if (!expand_room(path, sizeof(path), c->o.path, k->room)) {
        conn_fail(c, k, EINVAL);
        return;
    }
    uint8_t key_bytes[16];
    uint64_t r1 = rng_next(), r2 = rng_next() ^ index;
    memcpy(key_bytes, &r1, 8);
    memcpy(key_bytes + 8, &r2, 8);
    char key[25];
    base64_16(key_bytes, key);
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, c->o.host, c->o.port, key);
    k->state = CL_UPGRADING;
    conn_send(c, k, (const uint8_t *)req, (size_t)n);
}

static void conn_send_auth(cl_ctx *c, cl_conn *k, uint32_t index)
{
    char body[256];
    int bl = snprintf(body, sizeof(body),
                      "{\"mid\":%" PRIu32 ",\"key\":\"k%" PRIu32 "\",\"room_id\":\"live://%" PRIu32
                      "\",\"platform\":\"web\",\"accepts\":[5]}",
                      index, index, k->room);
    uint8_t packet[CL_GOIM_HEADER_BYTES + 256];
    size_t pl = goim_encode(packet, 1, CL_OP_AUTH, 1, body, (size_t)bl);
    uint8_t frame[sizeof(packet) + 14];
    size_t fl = ws_encode(frame, 0x2, packet, pl, true);
    k->state = CL_AUTHING;
    conn_send(c, k, frame, fl);
}

static void conn_send_heartbeat(cl_ctx *c, cl_conn *k)
{
    uint8_t packet[CL_GOIM_HEADER_BYTES];
    size_t pl = goim_encode(packet, 1, CL_OP_HEARTBEAT, 2, NULL, 0);
    uint8_t frame[CL_GOIM_HEADER_BYTES + 14];
    size_t fl = ws_encode(frame, 0x2, packet, pl, true);
    conn_send(c, k, frame, fl);
    c->heartbeats_sent++;
}

/* The handshake response head has arrived in full (ends at head_len); the rest are frames. */
static bool conn_upgraded(cl_ctx *c, cl_conn *k, uint32_t index, const uint8_t *p, size_t head_len)
{
    if (head_len < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        conn_fail(c, k, EPROTO);
        return false;
    }
    if (c->o.magnetar) {
        conn_send_auth(c, k, index);
    } else {
        k->state = CL_OPEN;
        c->opened++;
        c->in_flight--;
        c->last_open_us = mono_us();
    }
    return k->state != CL_FAILED;
}

/* Appends n bytes to k->in (bounded). */
static bool conn_keep(cl_conn *k, const uint8_t *p, size_t n)
{
    if (n == 0)
        return true;
    if ((size_t)k->in_len + n > CL_MESSAGE_BYTES_MAX + 16)
        return false;
    uint8_t *b = realloc(k->in, k->in_len + n);
    if (b == NULL)
        return false;
    memcpy(b + k->in_len, p, n);
    k->in = b;
    k->in_len += (uint32_t)n;
    return true;
}

/* Handles received bytes p[0..n) of connection k: the 101 head first, then frames. A partial
 * head or frame is kept in k->in. */
static void conn_bytes(cl_ctx *c, cl_conn *k, uint32_t index, uint8_t *p, size_t n)
{
    uint8_t *buf = p;
    size_t len = n;
    bool owned = false;
    if (k->in_len > 0) {
        if (!conn_keep(k, p, n)) {
            c->proto_errors++;
            conn_fail(c, k, ENOBUFS);
            return;
        }
        buf = k->in;
        len = k->in_len;
        k->in = NULL;
        k->in_len = 0;
        owned = true;
    }
    size_t off = 0;
    if (k->state == CL_UPGRADING) {
        const uint8_t *end = memmem(buf, len, "\r\n\r\n", 4);
        if (end == NULL) {
            if (len > CL_RESPONSE_BYTES_MAX || !conn_keep(k, buf, len))
                conn_fail(c, k, EPROTO);
            goto out;
        }
        size_t head = (size_t)(end - buf) + 4;
        if (!conn_upgraded(c, k, index, buf, head))
            goto out;
        off = head;
    }
    ssize_t used = ws_frames(c, k, buf + off, len - off);
    if (used >= 0 && !conn_keep(k, buf + off + used, len - off - (size_t)used)) {
        c->proto_errors++;
        conn_fail(c, k, ENOBUFS);
    }
out:
    if (owned)
        free(buf);
}

static void conn_readable(cl_ctx *c, cl_conn *k, uint32_t index)
{
    ssize_t n = recv(k->fd, c->scratch, CL_SCRATCH_BYTES, 0);
    if (n == 0) {
        if (k->state == CL_OPEN)
            c->closes_by_server++;
        conn_fail(c, k, ECONNRESET);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_fail(c, k, errno);
        return;
    }
    c->recv_mono_us = mono_us();
    c->recv_wall_us = wall_us();
    conn_bytes(c, k, index, c->scratch, (size_t)n);
}

static void conn_event(cl_ctx *c, uint32_t index, uint32_t events)
{
    cl_conn *k = &c->conns[index];
    if (k->fd < 0)
        return;
    if (k->state == CL_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_fail(c, k, err);
            return;
        }
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0)
            return;
        k->want_out = true;
        conn_want_out(c, k, false, index);
        conn_send_handshake(c, k, index);
        return;
    }
    if (events & EPOLLOUT)
        conn_flush(c, k);
    if (k->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        conn_readable(c, k, index);
}

/* Starts connection index: socket, bind to its source address, non-blocking connect. */
static void conn_start(cl_ctx *c, uint32_t index)
{
    cl_conn *k = &c->conns[index];
    k->start_us = mono_us();
    if (c->first_connect_us == 0)
        c->first_connect_us = k->start_us;
    c->started++;
    c->in_flight++;
    k->state = CL_CONNECTING;
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        conn_fail(c, k, errno);
        return;
    }
    int one = 1;
    setsockopt(k->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in src = { .sin_family = AF_INET };
    src.sin_addr.s_addr = htonl(0x7F000001u + k->source);
    if (bind(k->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        conn_fail(c, k, errno);
        return;
    }
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->o.port) };
    inet_pton(AF_INET, c->o.host, &dst.sin_addr);
    int r = connect(k->fd, (struct sockaddr *)&dst, sizeof(dst));
    if (r != 0 && errno != EINPROGRESS) {
        conn_fail(c, k, errno);
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = index };
    if (epoll_ctl(c->ep, EPOLL_CTL_ADD, k->fd, &ev) != 0) {
        conn_fail(c, k, errno);
        return;
    }
    k->want_out = true;
}

/* --- The pusher thread --------------------------------------------------------------------- */

typedef struct cl_push_item {
    uint32_t room;
    int64_t due_us;
} cl_push_item;

typedef struct cl_push_conn {
    int fd;
    bool busy;
    uint32_t room; /* of the request in flight */
    int64_t n;
    int64_t sent_us;
    char in[CL_RESPONSE_BYTES_MAX];
    size_t in_len;
} cl_push_conn;

/* Pushes that are due and wait for a free HTTP connection, oldest first. */
typedef struct cl_push_queue {
    cl_push_item items[CL_PUSH_QUEUE_MAX];
    size_t head, len;
} cl_push_queue;

static int push_connect(const cl_ctx *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = CL_PUSH_CONNECT_MS / 1000, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)c->o.push_port) };
    inet_pton(AF_INET, c->o.push_host, &dst.sin_addr);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void push_drop_conn(cl_ctx *c, cl_push_conn *pc, int ep)
{
    if (pc->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, pc->fd, NULL);
        close(pc->fd);
        atomic_fetch_add(&c->ps.reconnects, 1);
    }
    pc->fd = -1;
    pc->in_len = 0;
    if (pc->busy) {
        pc->busy = false;
        atomic_fetch_add(&c->ps.failed, 1);
    }
}

/* Sends the oldest queued push over pc. The body's ts is taken now, when it leaves. */
static void push_send(cl_ctx *c, cl_push_conn *pc, int ep, cl_push_queue *q, int64_t *room_next_n,
                      uint32_t index)
{
    cl_push_item it = q->items[q->head];
    q->head = (q->head + 1) % CL_PUSH_QUEUE_MAX;
    q->len--;
    if (pc->fd < 0) {
        pc->fd = push_connect(c);
        if (pc->fd < 0) {
            atomic_fetch_add(&c->ps.failed, 1);
            return;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = index };
        epoll_ctl(ep, EPOLL_CTL_ADD, pc->fd, &ev);
    }
    int64_t now = mono_us();
    if (now - it.due_us > CL_PUSH_LATE_MS * 1000)
        atomic_fetch_add(&c->ps.late, 1);
    int64_t n = ++room_next_n[it.room];
    char body[CL_BODY_BYTES_MAX + 1];
    int bl = snprintf(body, sizeof(body), "{\"ts\":%" PRId64 ",\"n\":%" PRId64 ",\"room\":%" PRIu32,
                      wall_us(), n, it.room);
    const char *tail = "\"}";
    if (bl + 9 + 2 < c->o.body_bytes) {
        bl += snprintf(body + bl, sizeof(body) - (size_t)bl, ",\"pad\":\"");
        int pad = (int)c->o.body_bytes - bl - 2;
        memset(body + bl, 'x', (size_t)pad);
        bl += pad;
        memcpy(body + bl, tail, 3);
        bl += 2;
    } else {
        body[bl++] = '}';
        body[bl] = '\0';
    }
    char path[CL_PATH_BYTES_MAX];
    expand_room(path, sizeof(path), c->o.push_path, it.room);
    char req[CL_BODY_BYTES_MAX + 1024];
    int rl = snprintf(req, sizeof(req),
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      path, c->o.push_host, c->o.push_port, bl, body);
    /* A request is a few hundred bytes into an idle keep-alive socket: it fits the send buffer
     * unless the server stopped reading, which the request timeout catches. */
    ssize_t w = send(pc->fd, req, (size_t)rl, MSG_NOSIGNAL);
    pc->busy = true;
    pc->room = it.room;
    pc->n = n;
    pc->sent_us = now;
    atomic_fetch_add(&c->ps.sent, 1);
    if (w != rl)
        push_drop_conn(c, pc, ep);
}

/* Reads an answer; when whole, counts it and frees the connection for the next push. */
static void push_readable(cl_ctx *c, cl_push_conn *pc, int ep)
{
    ssize_t n = recv(pc->fd, pc->in + pc->in_len, sizeof(pc->in) - 1 - pc->in_len, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        push_drop_conn(c, pc, ep);
        return;
    }
    pc->in_len += (size_t)n;
    pc->in[pc->in_len] = '\0';
    char *head_end = strstr(pc->in, "\r\n\r\n");
    if (head_end == NULL) {
        if (pc->in_len >= sizeof(pc->in) - 1)
            push_drop_conn(c, pc, ep);
        return;
    }
    size_t head = (size_t)(head_end - pc->in) + 4;
    size_t body_len = 0;
    bool chunked = false, close_after = false;
    for (char *line = strstr(pc->in, "\r\n"); line != NULL && line < head_end;
         line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "Content-Length:", 15) == 0)
            body_len = (size_t)strtoul(h + 15, NULL, 10);
        else if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strstr(h, "chunked") != NULL)
            chunked = true;
        else if (strncasecmp(h, "Connection:", 11) == 0 &&
                 strncasecmp(h + 11 + strspn(h + 11, " "), "close", 5) == 0)
            close_after = true;
    }
    size_t total;
    if (chunked) {
        char *end = strstr(pc->in + head, "0\r\n\r\n");
        if (end == NULL) {
            if (pc->in_len >= sizeof(pc->in) - 1)
                push_drop_conn(c, pc, ep);
            return;
        }
        total = (size_t)(end - pc->in) + 5;
    } else {
        total = head + body_len;
        if (pc->in_len < total) {
            if (total >= sizeof(pc->in))
                push_drop_conn(c, pc, ep);
            return;
        }
    }
    int status = atoi(pc->in + 9);
    if (pc->busy) {
        pc->busy = false;
        hist_add(&c->push_hist, mono_us() - pc->sent_us);
        if (status >= 200 && status < 300) {
            atomic_fetch_add(&c->ps.acked, 1);
            atomic_fetch_add(&c->room_acked[pc->room], 1);
            /* This thread is the only writer: no compare-and-swap needed. */
            if (pc->n > atomic_load(&c->room_acked_max_n[pc->room]))
                atomic_store(&c->room_acked_max_n[pc->room], pc->n);
        } else {
            atomic_fetch_add(&c->ps.failed, 1);
        }
    }
    memmove(pc->in, pc->in + total, pc->in_len - total);
    pc->in_len -= total;
    if (close_after)
        push_drop_conn(c, pc, ep);
}

static void *pusher_main(void *arg)
{
    cl_ctx *c = arg;
    const int64_t conns_n = c->o.push_conns;
    cl_push_conn *pcs = calloc((size_t)conns_n, sizeof(*pcs));
    int64_t *room_next_n = calloc((size_t)c->o.rooms + 1, sizeof(*room_next_n));
    cl_push_queue *q = calloc(1, sizeof(*q));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (pcs == NULL || room_next_n == NULL || q == NULL || ep < 0) {
        fprintf(stderr, "perf_chat_load: the pusher could not start\n");
        free(pcs);
        free(room_next_n);
        free(q);
        atomic_store(&c->ps.done, true);
        return NULL;
    }
    for (int64_t i = 0; i < conns_n; i++)
        pcs[i].fd = -1;
    const int64_t start = mono_us();
    const int64_t total = c->o.rate * c->o.duration_s;
    const int64_t hard_end = start + c->o.duration_s * 1000000 + CL_PUSH_STOP_GRACE_MS * 1000;
    int64_t issued = 0;
    for (;;) { /* ends at hard_end at the latest */
        int64_t now = mono_us();
        if (atomic_load(&c->stop) || now >= hard_end)
            break;
        /* Due pushes join the queue; a full queue skips them (counted). */
        while (issued < total && start + issued * 1000000 / c->o.rate <= now) {
            uint32_t room = (uint32_t)(issued % c->o.rooms) + 1;
            if (q->len == CL_PUSH_QUEUE_MAX) {
                atomic_fetch_add(&c->ps.skipped, 1);
            } else {
                q->items[(q->head + q->len) % CL_PUSH_QUEUE_MAX] =
                    (cl_push_item){ .room = room, .due_us = start + issued * 1000000 / c->o.rate };
                q->len++;
            }
            issued++;
        }
        bool idle = issued == total && q->len == 0;
        for (int64_t i = 0; i < conns_n; i++) {
            cl_push_conn *pc = &pcs[i];
            if (pc->busy && now - pc->sent_us > CL_PUSH_TIMEOUT_MS * 1000)
                push_drop_conn(c, pc, ep);
            if (!pc->busy && q->len > 0)
                push_send(c, pc, ep, q, room_next_n, (uint32_t)i);
            if (pc->busy)
                idle = false;
        }
        if (idle)
            break;
        int64_t next_due = issued < total ? start + issued * 1000000 / c->o.rate : now + 5000;
        int wait_ms = (int)((next_due - now + 999) / 1000);
        if (wait_ms > 5)
            wait_ms = 5;
        if (wait_ms < 0)
            wait_ms = 0;
        struct epoll_event evs[CL_PUSH_CONNS_MAX];
        int got = epoll_wait(ep, evs, CL_PUSH_CONNS_MAX, wait_ms);
        for (int i = 0; i < got; i++) {
            cl_push_conn *pc = &pcs[evs[i].data.u32];
            if (pc->fd >= 0)
                push_readable(c, pc, ep);
        }
    }
    for (int64_t i = 0; i < conns_n; i++) {
        if (pcs[i].busy) {
            pcs[i].busy = false;
            atomic_fetch_add(&c->ps.unanswered, 1);
        }
        if (pcs[i].fd >= 0)
            close(pcs[i].fd);
    }
    atomic_fetch_add(&c->ps.skipped, (int_fast64_t)q->len);
    close(ep);
    free(pcs);
    free(room_next_n);
    free(q);
    atomic_store(&c->ps.done, true);
    return NULL;
}

/* --- Main loop ----------------------------------------------------------------------------- */

/* Messages acknowledged for their room but not yet received, over the open connections. */
static int64_t lag_now(cl_ctx *c)
{
    int64_t lag = 0;
    for (int64_t i = 0; i < c->o.connections; i++) {
        const cl_conn *k = &c->conns[i];
        if (k->state != CL_OPEN)
            continue;
        int64_t want = atomic_load(&c->room_acked[k->room]);
        if (want > k->unique)
            lag += want - k->unique;
    }
    return lag;
}

/* Once a second: heartbeats for a thirtieth of the connections, handshake timeouts, progress
 * and the timeline line ("t_s wall_s deliveries p50_ms p99_ms max_ms lag_msgs acked open"). */
static void tick_second(cl_ctx *c, int64_t second, const char *phase)
{
    int64_t now = mono_us();
    for (int64_t i = 0; i < c->o.connections; i++) {
        cl_conn *k = &c->conns[i];
        if (k->state == CL_OPEN && c->o.magnetar && i % CL_HEARTBEAT_S == second % CL_HEARTBEAT_S)
            conn_send_heartbeat(c, k);
        else if ((k->state == CL_CONNECTING || k->state == CL_UPGRADING ||
                  k->state == CL_AUTHING) &&
                 now - k->start_us > c->o.handshake_timeout_s * 1000000)
            conn_fail(c, k, ETIMEDOUT);
    }
    int64_t lag = c->push_start_us != 0 ? lag_now(c) : 0;
    for (int m = 0; m < c->mark_count; m++)
        if (c->marks[m].caught_up_us == 0 && lag > c->marks[m].lag_max)
            c->marks[m].lag_max = lag;
    double p50 = hist_quantile_ms(&c->hist_second, 0.5);
    double p99 = hist_quantile_ms(&c->hist_second, 0.99);
    double mx = (double)c->hist_second.max_us / 1000.0;
    int64_t acked = atomic_load(&c->ps.acked);
    int64_t open = c->opened - c->closed;
    if (c->o.progress)
        fprintf(stderr,
                "perf_chat_load: %s t=%" PRId64 "s open %" PRId64 "/%" PRId64 " failed %" PRId64
                " closed %" PRId64 " | pushes acked %" PRId64 " | %" PRId64
                " deliveries/s p50 %.2f ms p99 %.2f ms max %.2f ms | lag %" PRId64 "\n",
                phase, second, open, c->o.connections, c->failed, c->closed, acked,
                c->second_deliveries, p50, p99, mx, lag);
    if (c->timeline != NULL && c->push_start_us != 0) {
        fprintf(c->timeline,
                "%.3f %.3f %" PRId64 " %.3f %.3f %.3f %" PRId64 " %" PRId64 " %" PRId64 "\n",
                (double)(now - c->push_start_us) / 1e6, (double)wall_us() / 1e6,
                c->second_deliveries, p50, p99, mx, lag, acked, open);
        fflush(c->timeline);
    }
    memset(&c->hist_second, 0, sizeof(c->hist_second));
    c->second_deliveries = 0;
}

static void mark_set(cl_ctx *c)
{
    if (c->mark_count == CL_MARKS_MAX)
        return;
    cl_mark *mk = &c->marks[c->mark_count];
    memset(mk, 0, sizeof(*mk));
    mk->target = calloc((size_t)c->o.rooms + 1, sizeof(*mk->target));
    if (mk->target == NULL)
        return;
    mk->at_us = mono_us();
    mk->wall_at_us = wall_us();
    for (int64_t r = 1; r <= c->o.rooms; r++)
        mk->target[r] = atomic_load(&c->room_acked_max_n[r]);
    for (int64_t i = 0; i < c->o.connections; i++) {
        const cl_conn *k = &c->conns[i];
        if (k->state == CL_OPEN && k->last_n < mk->target[k->room])
            mk->pending++;
    }
    mk->lag_max = lag_now(c); /* a catch-up shorter than a second never meets a tick */
    if (mk->pending == 0)
        mk->caught_up_us = mk->at_us;
    fprintf(stderr, "perf_chat_load: mark %d set, %" PRId64 " connections below its target\n",
            c->mark_count + 1, mk->pending);
    c->mark_count++;
}

enum { CL_SIG_NONE, CL_SIG_GO, CL_SIG_STOP };

/* Handles a pending signal: SIGUSR1 -> GO, SIGUSR2 -> a mark, SIGINT/SIGTERM -> STOP. */
static int signal_read(cl_ctx *c)
{
    struct signalfd_siginfo si;
    int result = CL_SIG_NONE;
    for (int i = 0; i < 16 && read(c->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si); i++) {
        if (si.ssi_signo == SIGUSR1)
            result = result == CL_SIG_STOP ? result : CL_SIG_GO;
        else if (si.ssi_signo == SIGUSR2)
            mark_set(c);
        else
            result = CL_SIG_STOP;
    }
    return result;
}

/* Runs epoll until deadline_us (monotonic), calling tick_second on every whole second since
 * base_us. Returns CL_SIG_* seen, or CL_SIG_NONE when until() said stop or the time ran out. */
static int loop_until(cl_ctx *c, int64_t deadline_us, int64_t base_us, const char *phase,
                      bool (*until)(cl_ctx *), int64_t *next_tick_us, int64_t *second)
{
    struct epoll_event evs[CL_EVENTS_MAX];
    for (;;) { /* ends at deadline_us at the latest */
        int64_t now = mono_us();
        if (now >= *next_tick_us) {
            tick_second(c, *second, phase);
            (*second)++;
            *next_tick_us = base_us + *second * 1000000;
        }
        if (until != NULL && until(c))
            return CL_SIG_NONE;
        if (now >= deadline_us)
            return CL_SIG_NONE;
        /* The connect phase starts connections at a steady pace: wake every millisecond. */
        int wait_ms = (int)((*next_tick_us - now) / 1000);
        if (wait_ms > 1 && strcmp(phase, "connect") == 0)
            wait_ms = 1;
        if (wait_ms > 100)
            wait_ms = 100;
        if (wait_ms < 0)
            wait_ms = 0;
        int got = epoll_wait(c->ep, evs, CL_EVENTS_MAX, wait_ms);
        for (int i = 0; i < got; i++) {
            if (evs[i].data.u32 == UINT32_MAX) {
                int s = signal_read(c);
                if (s != CL_SIG_NONE)
                    return s;
                continue;
            }
            conn_event(c, evs[i].data.u32, evs[i].events);
        }
    }
}

/* Connect phase condition: start what the ramp allows; done when nothing is left to start and
 * nothing is in flight. */
static bool connect_step(cl_ctx *c)
{
    int64_t now = mono_us();
    int64_t allowed = (now - c->first_connect_us) * c->o.connect_rate / 1000000 + 1;
    if (c->first_connect_us == 0)
        allowed = 1;
    for (int guard = 0; guard < 10000 && c->started < c->o.connections && c->started < allowed &&
                        c->in_flight < c->o.handshakes_max;
         guard++)
        conn_start(c, (uint32_t)c->started);
    return c->started == c->o.connections && c->in_flight == 0;
}

/* Every acknowledged push has reached every open connection. Checked at most every 100 ms:
 * it walks every connection. */
static bool drained(cl_ctx *c)
{
    static int64_t checked_us;
    int64_t now = mono_us();
    if (!atomic_load(&c->ps.done) || now - checked_us < 100000)
        return false;
    checked_us = now;
    return lag_now(c) == 0;
}

static bool pusher_done(cl_ctx *c)
{
    return atomic_load(&c->ps.done);
}

/* --- Result -------------------------------------------------------------------------------- */

static void result_print(cl_ctx *c, int64_t push_end_us, int64_t drain_end_us)
{
    int64_t drops = 0, missed = 0, open = 0, expected = 0, unique = 0;
    for (int64_t i = 0; i < c->o.connections; i++) {
        const cl_conn *k = &c->conns[i];
        if (k->state != CL_OPEN)
            continue;
        open++;
        int64_t want = atomic_load(&c->room_acked[k->room]);
        expected += want;
        unique += k->unique;
        if (want > k->unique) {
            drops += want - k->unique;
            missed++;
        }
    }
    double connect_s = c->last_open_us > c->first_connect_us
                           ? (double)(c->last_open_us - c->first_connect_us) / 1e6
                           : 0;
    double push_s =
        push_end_us > c->push_start_us ? (double)(push_end_us - c->push_start_us) / 1e6 : 0;
    double span_s = c->last_delivery_us > c->push_start_us && c->push_start_us != 0
                        ? (double)(c->last_delivery_us - c->push_start_us) / 1e6
                        : 0;
    int64_t acked = atomic_load(&c->ps.acked);
    double rate_acked = push_s > 0 ? (double)acked / push_s : 0;
    FILE *f = stdout;
    fprintf(f, "{\"mode\":\"%s\",\"target\":\"%s:%d\",\"path\":\"%s\",",
            c->o.magnetar ? "magnetar" : "nchan", c->o.host, c->o.port, c->o.path);
    fprintf(f,
            "\"connections\":{\"wanted\":%" PRId64 ",\"opened\":%" PRId64 ",\"failed\":%" PRId64
            ",\"failed_refused\":%" PRId64 ",\"failed_timeout\":%" PRId64
            ",\"failed_handshake\":%" PRId64 ",\"failed_other\":%" PRId64 ",\"closed\":%" PRId64
            ",\"closed_by_server\":%" PRId64 ",\"open_at_end\":%" PRId64 ",\"sources\":%" PRId64
            ",\"connect_s\":%.3f},",
            c->o.connections, c->opened, c->failed, c->failed_refused, c->failed_timeout,
            c->failed_handshake, c->failed_other, c->closed, c->closes_by_server, open, c->sources,
            connect_s);
    fprintf(f,
            "\"rooms\":%" PRId64 ",\"rate\":%" PRId64 ",\"duration_s\":%" PRId64
            ",\"body_bytes\":%" PRId64 ",",
            c->o.rooms, c->o.rate, c->o.duration_s, c->o.body_bytes);
    fprintf(f,
            "\"pushes\":{\"sent\":%" PRId64 ",\"acked\":%" PRId64 ",\"failed\":%" PRId64
            ",\"late\":%" PRId64 ",\"skipped\":%" PRId64 ",\"reconnects\":%" PRId64
            ",\"unanswered\":%" PRId64 ",\"push_s\":%.3f,\"acked_per_s\":%.2f,\"latency_ms\":",
            (int64_t)atomic_load(&c->ps.sent), acked, (int64_t)atomic_load(&c->ps.failed),
            (int64_t)atomic_load(&c->ps.late), (int64_t)atomic_load(&c->ps.skipped),
            (int64_t)atomic_load(&c->ps.reconnects), (int64_t)atomic_load(&c->ps.unanswered),
            push_s, rate_acked);
    hist_json(f, &c->push_hist);
    /* With one room every open connection should get every acknowledged push: the ideal is
     * connections x acknowledged pushes per second; with several, each connection gets its
     * room's share. */
    double ideal_per_s = push_s > 0 ? (double)expected / push_s : 0;
    fprintf(
        f,
        "},\"deliveries\":%" PRId64 ",\"deliveries_in_push\":%" PRId64 ",\"unique\":%" PRId64
        ",\"expected\":%" PRId64 ",\"span_s\":%.3f,"
        "\"deliveries_per_s\":%.1f,\"ideal_per_s\":%.1f,\"ideal_nominal_per_s\":%" PRId64
        ",\"drops\":%" PRId64 ",\"connections_missing_any\":%" PRId64 ",\"out_of_order\":%" PRId64
        ",\"duplicates\":%" PRId64 ",\"wrong_room\":%" PRId64 ",\"unparsed\":%" PRId64
        ",\"proto_errors\":%" PRId64 ",\"unknown_packets\":%" PRId64 ",\"heartbeats_sent\":%" PRId64
        ",\"heartbeat_replies\":%" PRId64 ",\"drain_s\":%.3f,\"latency_ms\":",
        c->deliveries, c->deliveries_in_push, unique, expected, span_s,
        span_s > 0 ? (double)c->deliveries_in_push / span_s : 0, ideal_per_s,
        c->o.connections * c->o.rate, drops, missed, c->out_of_order, c->duplicates, c->wrong_room,
        c->unparsed, c->proto_errors, c->unknown_packets, c->heartbeats_sent, c->heartbeat_replies,
        drain_end_us > push_end_us ? (double)(drain_end_us - push_end_us) / 1e6 : 0);
    hist_json(f, &c->hist);
    fprintf(f, ",\"marks\":[");
    for (int m = 0; m < c->mark_count; m++) {
        const cl_mark *mk = &c->marks[m];
        fprintf(f, "%s{\"at_s\":%.3f,\"wall_s\":%.3f,\"caught_up\":%s,\"caught_up_after_s\":",
                m > 0 ? "," : "", (double)(mk->at_us - c->push_start_us) / 1e6,
                (double)mk->wall_at_us / 1e6, mk->caught_up_us != 0 ? "true" : "false");
        if (mk->caught_up_us != 0)
            fprintf(f, "%.3f", (double)(mk->caught_up_us - mk->at_us) / 1e6);
        else
            fprintf(f, "null");
        fprintf(f, ",\"pending_at_end\":%" PRId64 ",\"lag_max\":%" PRId64 ",\"latency_ms\":",
                mk->pending, mk->lag_max);
        hist_json(f, &mk->hist);
        fprintf(f, "}");
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(f, "],\"client_cpu_s\":%.2f}\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    fflush(f);
}

/* --- Self test ----------------------------------------------------------------------------- */

/* Builds a server byte stream (the 101 head, then frames of every length form, a fragmented
 * message, a ping, op 8, op 3, bare op 5 and op 9 batches), feeds it to one connection split at
 * every byte boundary (and in 1-byte pieces), and checks what was counted. */
static int self_test(void)
{
    static uint8_t stream[1 << 20];
    size_t sl = 0;
    const char *head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
    memcpy(stream, head, strlen(head));
    sl += strlen(head);
    static uint8_t msg[200000];
    static uint8_t pk[200000];
    size_t ml;
    /* op 8 auth reply, alone in a message */
    ml = goim_encode(msg, 1, CL_OP_AUTH_REPLY, 1, "{\"code\":0}", 10);
    sl += ws_encode(stream + sl, 0x2, msg, ml, false);
    /* op 3 heartbeat reply and a bare op 5 in one message */
    uint8_t cnt[4] = { 0, 0, 0, 7 };
    ml = goim_encode(msg, 1, CL_OP_HEARTBEAT_REPLY, 2, cnt, 4);
    const char *m1 = "{\"ts\":1,\"n\":1,\"room\":1,\"pad\":\"xx\"}";
    ml += goim_encode(msg + ml, 1, CL_OP_SEND_MSG_REPLY, 0, m1, strlen(m1));
    sl += ws_encode(stream + sl, 0x2, msg, ml, false);
    /* an op 9 batch of 3 (n 2..4), 16-bit length form */
    size_t pl = 0;
    for (int n = 2; n <= 4; n++) {
        char b[200];
        int bl = snprintf(b, sizeof(b), "{\"ts\":1,\"n\":%d,\"room\":1,\"pad\":\"%0100d\"}", n, 0);
        pl += goim_encode(pk + pl, 1, CL_OP_SEND_MSG_REPLY, 0, b, (size_t)bl);
    }
    ml = goim_encode(msg, 1, CL_OP_RAW, 0, pk, pl);
    sl += ws_encode(stream + sl, 0x2, msg, ml, false);
    /* a ping */
    sl += ws_encode(stream + sl, 0x9, (const uint8_t *)"hi", 2, false);
    /* an op 9 of 600 packets (n 5..604), 64-bit length form, plus an op 5 (n 605) after it */
    pl = 0;
    for (int n = 5; n <= 604; n++) {
        char b[200];
        int bl = snprintf(b, sizeof(b), "{\"ts\":1,\"n\":%d,\"room\":1,\"pad\":\"%0100d\"}", n, 0);
        pl += goim_encode(pk + pl, 1, CL_OP_SEND_MSG_REPLY, 0, b, (size_t)bl);
    }
    ml = goim_encode(msg, 1, CL_OP_RAW, 0, pk, pl);
    const char *m2 = "{\"ts\":1,\"n\":605,\"room\":1}";
    ml += goim_encode(msg + ml, 1, CL_OP_SEND_MSG_REPLY, 0, m2, strlen(m2));
    sl += ws_encode(stream + sl, 0x2, msg, ml, false);
    /* a message in two fragments: op 5 n 606 split in its header */
    const char *m3 = "{\"ts\":1,\"n\":606,\"room\":1}";
    ml = goim_encode(msg, 1, CL_OP_SEND_MSG_REPLY, 0, m3, strlen(m3));
    size_t f1 = ws_encode(stream + sl, 0x2, msg, 7, false);
    stream[sl] &= 0x7F; /* FIN off */
    sl += f1;
    sl += ws_encode(stream + sl, 0x0, msg + 7, ml - 7, false);
    const int64_t want_deliveries = 606, want_last = 606;

    int failures = 0;
    for (size_t split = 0; split <= sl; split += (split < 400 || split + 400 > sl) ? 1 : 97) {
        for (int piece_mode = 0; piece_mode < (split == 0 ? 2 : 1); piece_mode++) {
            cl_ctx c;
            memset(&c, 0, sizeof(c));
            c.o.magnetar = true;
            c.o.rooms = 1;
            c.ep = -1;
            cl_conn k;
            memset(&k, 0, sizeof(k));
            k.fd = -1; /* sends (the pong) go nowhere */
            k.room = 1;
            k.state = CL_UPGRADING;
            c.in_flight = 1;
            /* the 101 is fed, then auth is "sent": emulate by moving to AUTHING */
            static uint8_t copy[1 << 20];
            memcpy(copy, stream, sl);
            size_t hl = strlen(head);
            if (piece_mode == 1) {
                k.state = CL_AUTHING;
                for (size_t i = hl; i < sl; i++)
                    conn_bytes(&c, &k, 0, copy + i, 1);
            } else {
                size_t a = split < hl ? hl : split;
                k.state = CL_AUTHING;
                conn_bytes(&c, &k, 0, copy + hl, a - hl);
                conn_bytes(&c, &k, 0, copy + a, sl - a);
            }
            bool ok = c.deliveries == want_deliveries && k.last_n == want_last &&
                      k.state == CL_OPEN && c.heartbeat_replies == 1 && c.proto_errors == 0 &&
                      c.unknown_packets == 0 && c.unparsed == 0 && k.in_len == 0 &&
                      c.out_of_order == 0;
            if (!ok) {
                failures++;
                if (failures < 5)
                    fprintf(stderr,
                            "self-test: split %zu mode %d: deliveries %" PRId64 " last_n %" PRId64
                            " state %d hb %" PRId64 " proto %" PRId64 " unknown %" PRId64
                            " unparsed %" PRId64 " left %u\n",
                            split, piece_mode, c.deliveries, k.last_n, k.state, c.heartbeat_replies,
                            c.proto_errors, c.unknown_packets, c.unparsed, k.in_len);
            }
            conn_free_buffers(&k);
        }
    }
    /* nchan mode: each frame is one message */
    {
        cl_ctx c;
        memset(&c, 0, sizeof(c));
        c.o.rooms = 1;
        cl_conn k;
        memset(&k, 0, sizeof(k));
        k.fd = -1;
        k.room = 1;
        k.state = CL_OPEN;
        uint8_t s2[4096];
        size_t l2 = 0;
        for (int n = 1; n <= 10; n++) {
            char b[100];
            int bl = snprintf(b, sizeof(b), "{\"ts\":%" PRId64 ",\"n\":%d}", wall_us() - 1000, n);
            l2 += ws_encode(s2 + l2, 0x1, (const uint8_t *)b, (size_t)bl, false);
        }
        c.pushing = true;
        c.recv_wall_us = wall_us();
        for (size_t i = 0; i < l2; i++)
            conn_bytes(&c, &k, 0, s2 + i, 1);
        if (c.deliveries != 10 || k.last_n != 10 || c.hist.count != 10 ||
            hist_quantile_ms(&c.hist, 0.5) < 0.9 || hist_quantile_ms(&c.hist, 0.5) > 200) {
            failures++;
            fprintf(stderr, "self-test: nchan mode: deliveries %" PRId64 " p50 %.3f ms\n",
                    c.deliveries, hist_quantile_ms(&c.hist, 0.5));
        }
    }
    /* malformed: headerLen 12 must count a protocol error and no delivery */
    {
        cl_ctx c;
        memset(&c, 0, sizeof(c));
        c.o.magnetar = true;
        c.o.rooms = 1;
        cl_conn k;
        memset(&k, 0, sizeof(k));
        k.fd = -1;
        k.room = 1;
        k.state = CL_OPEN;
        ml = goim_encode(msg, 1, CL_OP_SEND_MSG_REPLY, 0, m1, strlen(m1));
        msg[5] = 12;
        uint8_t s3[256];
        size_t l3 = ws_encode(s3, 0x2, msg, ml, false);
        conn_bytes(&c, &k, 0, s3, l3);
        if (c.proto_errors != 1 || c.deliveries != 0) {
            failures++;
            fprintf(stderr, "self-test: malformed packet not refused\n");
        }
    }
    /* the sequence window: reordering is no drop, a repeat is refused, a jump slides it */
    {
        cl_conn k;
        memset(&k, 0, sizeof(k));
        const int64_t ns[] = { 1, 3, 2, 2, 4, 200, 5, 150, 199, 137 };
        const bool want[] = { true, true, true, false, true, true, false, true, true, true };
        for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
            if (seen_add(&k, ns[i]) != want[i]) {
                failures++;
                fprintf(stderr, "self-test: window: n %" PRId64 " wrongly %s\n", ns[i],
                        want[i] ? "refused" : "accepted");
            }
        }
        if (k.seen_base != 137) {
            failures++;
            fprintf(stderr, "self-test: window base %" PRId64 ", want 137\n", k.seen_base);
        }
    }
    /* histogram: quantiles of 1..100000 µs within the bucket error */
    {
        static cl_hist h;
        memset(&h, 0, sizeof(h));
        for (int64_t v = 1; v <= 100000; v++)
            hist_add(&h, v);
        double p50 = hist_quantile_ms(&h, 0.5), p99 = hist_quantile_ms(&h, 0.99);
        if (p50 < 50 * 0.93 || p50 > 50 * 1.07 || p99 < 99 * 0.93 || p99 > 99 * 1.07 ||
            h.max_us != 100000) {
            failures++;
            fprintf(stderr, "self-test: histogram p50 %.3f p99 %.3f\n", p50, p99);
        }
    }
    /* the parsing cost per delivery: op 9 batches of 20 messages of 100 bytes, one message per
     * WebSocket frame, and nchan's one message per frame */
    for (int mode = 0; mode < 2; mode++) {
        static cl_ctx c;
        memset(&c, 0, sizeof(c));
        c.o.magnetar = mode == 0;
        c.o.rooms = 1;
        c.pushing = true;
        cl_conn k;
        memset(&k, 0, sizeof(k));
        k.fd = -1;
        k.room = 1;
        k.state = CL_OPEN;
        static uint8_t buf[1 << 20], work[1 << 20];
        size_t bl = 0;
        int64_t n = 1;
        const int per_frame = mode == 0 ? 20 : 1;
        while (bl + 64 * 1024 < sizeof(buf)) {
            char b[200];
            pl = 0;
            for (int i = 0; i < per_frame; i++, n++) {
                int len =
                    snprintf(b, sizeof(b),
                             "{\"ts\":%" PRId64 ",\"n\":%" PRId64 ",\"room\":1,\"pad\":\"%040d\"}",
                             wall_us(), n, 0);
                if (mode == 0) {
                    pl += goim_encode(pk + pl, 1, CL_OP_SEND_MSG_REPLY, 0, b, (size_t)len);
                } else {
                    memcpy(pk + pl, b, (size_t)len);
                    pl += (size_t)len;
                }
            }
            if (mode == 0) {
                ml = goim_encode(msg, 1, CL_OP_RAW, 0, pk, pl);
            } else {
                memcpy(msg, pk, pl);
                ml = pl;
            }
            bl += ws_encode(buf + bl, mode == 0 ? 0x2 : 0x1, msg, ml, false);
        }
        const int rounds = 200;
        int64_t t0 = mono_us();
        for (int r = 0; r < rounds; r++) {
            memcpy(work, buf, bl);
            k.last_n = k.seen_base = 0;
            k.seen_mask = 0;
            c.recv_mono_us = mono_us();
            c.recv_wall_us = wall_us();
            for (size_t off = 0; off < bl; off += 65536)
                conn_bytes(&c, &k, 0, work + off, bl - off < 65536 ? bl - off : 65536);
        }
        double s = (double)(mono_us() - t0) / 1e6;
        printf("perf_chat_load self-test: %s: %.2f M deliveries/s parsed on one core (%" PRId64
               " in %.2f s, 64 KiB reads)\n",
               mode == 0 ? "op 9 batches of 20" : "one message per frame",
               (double)c.deliveries / s / 1e6, c.deliveries, s);
        if (c.proto_errors != 0 || c.unparsed != 0 || c.deliveries != rounds * (n - 1)) {
            failures++;
            fprintf(stderr,
                    "self-test: throughput stream: %" PRId64 " deliveries, %" PRId64
                    " protocol errors\n",
                    c.deliveries, c.proto_errors);
        }
        conn_free_buffers(&k);
    }
    printf("perf_chat_load self-test: %s (%d failures)\n", failures == 0 ? "ok" : "FAILED",
           failures);
    return failures == 0 ? 0 : 1;
}

/* --- Options and main ---------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: perf_chat_load --mode magnetar|nchan --target HOST:PORT --push-url URL [options]\n"
        "       perf_chat_load --self-test\n"
        "\n"
        "Opens --connections WebSocket subscribers and pushes --rate messages/s for\n"
        "--duration seconds through the HTTP push URL; prints one JSON object at the end.\n"
        "\n"
        "Options:\n"
        "  --mode magnetar|nchan   server protocol (see the file header)\n"
        "  --target HOST:PORT      WebSocket server (IPv4)\n"
        "  --path PATH             WebSocket path, {room} replaced (default /sub for magnetar,\n"
        "                          /sub?id=room{room} for nchan)\n"
        "  --push-url URL          http://HOST:PORT/PATH, {room} replaced (magnetar:\n"
        "                          .../goim/push/room?type=live&room={room}; nchan:\n"
        "                          .../pub?id=room{room}); without it nothing is pushed\n"
        "  --connections N         subscribers (default 1000)\n"
        "  --rooms R               rooms; connection i is in room i mod R + 1 (default 1)\n"
        "  --per-source N          connections per source address 127.0.0.x (default 20000,\n"
        "                          at most the ephemeral port range less %d)\n"
        "  --connect-rate N        connections started per second (default 5000)\n"
        "  --handshakes-max N      handshakes in flight (default 1000)\n"
        "  --connect-timeout-s S   bound on the connect phase (default 180)\n"
        "  --handshake-timeout-s S bound on one connection's handshake (default 30)\n"
        "  --ready-file FILE       write the connect figures there, then wait for SIGUSR1\n"
        "  --hold-max-s S          longest wait for SIGUSR1 (default 120)\n"
        "  --rate N                pushes per second, over all rooms (default 40)\n"
        "  --duration S            seconds of pushing (default 30)\n"
        "  --drain-s S             longest wait for deliveries after the last push (default 15)\n"
        "  --body-bytes N          pushed body size (default 100)\n"
        "  --push-conns N          keep-alive HTTP connections of the pusher (default 8)\n"
        "  --timeline FILE         a line per second from the first push: t_s wall_s\n"
        "                          deliveries p50_ms p99_ms max_ms lag_msgs acked open\n"
        "  --quiet                 no progress lines on stderr\n"
        "  --self-test             check the frame and packet parsers, then exit\n"
        "\n"
        "Signals: SIGUSR1 ends the hold, SIGUSR2 sets a catch-up mark, SIGINT/SIGTERM end\n"
        "the run early (the result is still printed). Exit status 0 when the run finished,\n"
        "1 on an error, 2 for a usage error.\n",
        CL_PORT_MARGIN);
}

static bool parse_int(const char *name, const char *v, int64_t min, int64_t max, int64_t *out)
{
    return perf_parse_int("perf_chat_load", name, v, min, max, out);
}

static bool parse_host_port(const char *v, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || (size_t)(colon - v) >= cap)
        return false;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    struct in_addr a;
    int64_t p;
    if (inet_pton(AF_INET, host, &a) != 1 || !parse_int("port", colon + 1, 1, 65535, &p))
        return false;
    *port = (int)p;
    return true;
}

/* http://HOST:PORT/PATH: host and port into o, the path (kept in v) into o->push_path. */
static bool parse_push_url(cl_opts *o, const char *v)
{
    if (strncmp(v, "http://", 7) != 0)
        return false;
    const char *hp = v + 7;
    const char *slash = strchr(hp, '/');
    if (slash == NULL || (size_t)(slash - hp) >= 80)
        return false;
    char buf[80];
    memcpy(buf, hp, (size_t)(slash - hp));
    buf[slash - hp] = '\0';
    if (!parse_host_port(buf, o->push_host, sizeof(o->push_host), &o->push_port))
        return false;
    o->push_path = slash;
    o->push = true;
    return true;
}

/* Returns 0 to run, 1 to exit 0 (--help), 2 on a usage error. */
static int parse_args(int argc, char **argv, cl_opts *o)
{
    *o = (cl_opts){ .connections = 1000,
                    .rooms = 1,
                    .per_source = 20000,
                    .connect_rate = 5000,
                    .handshakes_max = 1000,
                    .connect_timeout_s = 180,
                    .handshake_timeout_s = 30,
                    .hold_max_s = 120,
                    .rate = 40,
                    .duration_s = 30,
                    .drain_s = 15,
                    .body_bytes = 100,
                    .push_conns = 8,
                    .progress = true };
    const char *mode = NULL;
    bool have_target = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--self-test") == 0) {
            o->self_test = true;
            continue;
        } else if (strcmp(a, "--quiet") == 0) {
            o->progress = false;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "perf_chat_load: %s needs a value (see --help)\n", a);
            return 2;
        } else if (strcmp(a, "--mode") == 0) {
            mode = v;
        } else if (strcmp(a, "--target") == 0) {
            ok = have_target = parse_host_port(v, o->host, sizeof(o->host), &o->port);
        } else if (strcmp(a, "--path") == 0) {
            o->path = v;
        } else if (strcmp(a, "--push-url") == 0) {
            ok = parse_push_url(o, v);
        } else if (strcmp(a, "--ready-file") == 0) {
            o->ready_file = v;
        } else if (strcmp(a, "--timeline") == 0) {
            o->timeline = v;
        } else if (strcmp(a, "--connections") == 0) {
            ok = parse_int(a, v, 1, CL_CONNECTIONS_MAX, &o->connections);
        } else if (strcmp(a, "--rooms") == 0) {
            ok = parse_int(a, v, 1, CL_ROOMS_MAX, &o->rooms);
        } else if (strcmp(a, "--per-source") == 0) {
            ok = parse_int(a, v, 1, 65535, &o->per_source);
        } else if (strcmp(a, "--connect-rate") == 0) {
            ok = parse_int(a, v, 1, 1000000, &o->connect_rate);
        } else if (strcmp(a, "--handshakes-max") == 0) {
            ok = parse_int(a, v, 1, 100000, &o->handshakes_max);
        } else if (strcmp(a, "--connect-timeout-s") == 0) {
            ok = parse_int(a, v, 1, CL_DURATION_S_MAX, &o->connect_timeout_s);
        } else if (strcmp(a, "--handshake-timeout-s") == 0) {
            ok = parse_int(a, v, 1, 3600, &o->handshake_timeout_s);
        } else if (strcmp(a, "--hold-max-s") == 0) {
            ok = parse_int(a, v, 0, CL_DURATION_S_MAX, &o->hold_max_s);
        } else if (strcmp(a, "--rate") == 0) {
            ok = parse_int(a, v, 1, 1000000, &o->rate);
        } else if (strcmp(a, "--duration") == 0) {
            ok = parse_int(a, v, 1, CL_DURATION_S_MAX, &o->duration_s);
        } else if (strcmp(a, "--drain-s") == 0) {
            ok = parse_int(a, v, 0, CL_DURATION_S_MAX, &o->drain_s);
        } else if (strcmp(a, "--body-bytes") == 0) {
            ok = parse_int(a, v, 16, CL_BODY_BYTES_MAX - 16, &o->body_bytes);
        } else if (strcmp(a, "--push-conns") == 0) {
            ok = parse_int(a, v, 1, CL_PUSH_CONNS_MAX, &o->push_conns);
        } else {
            fprintf(stderr, "perf_chat_load: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "perf_chat_load: bad value for %s: '%s'\n", a, v);
            return 2;
        }
        i++;
    }
    if (o->self_test)
        return 0;
    if (mode == NULL || (strcmp(mode, "magnetar") != 0 && strcmp(mode, "nchan") != 0)) {
        fprintf(stderr, "perf_chat_load: --mode is magnetar or nchan\n");
        return 2;
    }
    o->magnetar = strcmp(mode, "magnetar") == 0;
    if (!have_target) {
        fprintf(stderr, "perf_chat_load: --target HOST:PORT is needed (IPv4)\n");
        return 2;
    }
    if (o->path == NULL)
        o->path = o->magnetar ? "/sub" : "/sub?id=room{room}";
    return 0;
}

/* The ephemeral port range's size, from /proc (28232 on a default Linux). */
static int64_t ephemeral_ports(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    long lo = 32768, hi = 60999;
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &lo, &hi) != 2) {
            lo = 32768;
            hi = 60999;
        }
        fclose(f);
    }
    return hi >= lo ? hi - lo + 1 : 0;
}

static int setup(cl_ctx *c)
{
    int64_t ports = ephemeral_ports();
    if (c->o.per_source > ports - CL_PORT_MARGIN)
        c->o.per_source = ports - CL_PORT_MARGIN;
    if (c->o.per_source < 1) {
        fprintf(stderr, "perf_chat_load: the ephemeral port range holds only %" PRId64 " ports\n",
                ports);
        return 1;
    }
    c->sources = (c->o.connections + c->o.per_source - 1) / c->o.per_source;
    if (c->sources > CL_SOURCES_MAX) {
        fprintf(stderr,
                "perf_chat_load: %" PRId64 " connections need %" PRId64
                " source addresses, more than %d\n",
                c->o.connections, c->sources, CL_SOURCES_MAX);
        return 1;
    }
    rlim_t want = (rlim_t)c->o.connections + 1024;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        struct rlimit nl = { .rlim_cur = want,
                             .rlim_max = rl.rlim_max > want ? rl.rlim_max : want };
        if (setrlimit(RLIMIT_NOFILE, &nl) != 0) {
            nl.rlim_cur = rl.rlim_max;
            nl.rlim_max = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &nl);
            fprintf(
                stderr,
                "perf_chat_load: could not raise the open-file limit to %llu (%s); it is %llu\n",
                (unsigned long long)want, strerror(errno), (unsigned long long)nl.rlim_cur);
        }
    }
    c->conns = calloc((size_t)c->o.connections, sizeof(*c->conns));
    c->scratch = malloc(CL_SCRATCH_BYTES);
    c->room_acked = calloc((size_t)c->o.rooms + 1, sizeof(*c->room_acked));
    c->room_acked_max_n = calloc((size_t)c->o.rooms + 1, sizeof(*c->room_acked_max_n));
    if (c->conns == NULL || c->scratch == NULL || c->room_acked == NULL ||
        c->room_acked_max_n == NULL)
        return 1;
    for (int64_t i = 0; i < c->o.connections; i++) {
        c->conns[i].fd = -1;
        c->conns[i].room = (uint32_t)(i % c->o.rooms) + 1;
        c->conns[i].source = (uint8_t)(i % c->sources);
    }
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    c->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = UINT32_MAX };
    if (c->ep < 0 || c->sig_fd < 0 || epoll_ctl(c->ep, EPOLL_CTL_ADD, c->sig_fd, &ev) != 0)
        return 1;
    if (c->o.timeline != NULL) {
        c->timeline = fopen(c->o.timeline, "w");
        if (c->timeline == NULL) {
            fprintf(stderr, "perf_chat_load: cannot write %s: %s\n", c->o.timeline,
                    strerror(errno));
            return 1;
        }
        fprintf(c->timeline, "# t_s wall_s deliveries p50_ms p99_ms max_ms lag_msgs acked open\n");
    }
    return 0;
}

static void ready_write(cl_ctx *c)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->o.ready_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "perf_chat_load: cannot write %s: %s\n", tmp, strerror(errno));
        return;
    }
    fprintf(f,
            "{\"wanted\":%" PRId64 ",\"opened\":%" PRId64 ",\"failed\":%" PRId64
            ",\"connect_s\":%.3f,\"pid\":%d}\n",
            c->o.connections, c->opened, c->failed,
            c->last_open_us > c->first_connect_us
                ? (double)(c->last_open_us - c->first_connect_us) / 1e6
                : 0,
            (int)getpid());
    fclose(f);
    rename(tmp, c->o.ready_file);
}

int main(int argc, char **argv)
{
    static cl_ctx ctx;
    cl_ctx *c = &ctx;
    int pr = parse_args(argc, argv, &c->o);
    if (pr != 0)
        return pr == 1 ? 0 : 2;
    if (c->o.self_test)
        return self_test();
    rng_state ^= (uint64_t)wall_us() * 0x2545F4914F6CDD1Dull;
    if (setup(c) != 0) {
        fprintf(stderr, "perf_chat_load: setup failed\n");
        return 1;
    }
    int64_t next_tick = mono_us() + 1000000;
    int64_t second = 1;
    int64_t base = next_tick - 1000000;
    bool stop = false;
    /* 1. connect */
    int s = loop_until(c, base + c->o.connect_timeout_s * 1000000, base, "connect", connect_step,
                       &next_tick, &second);
    stop = s == CL_SIG_STOP;
    for (int64_t i = 0; i < c->o.connections; i++) {
        cl_conn *k = &c->conns[i];
        if (k->state == CL_WAITING) {
            k->state = CL_FAILED;
            c->failed++;
            c->failed_timeout++;
        } else if (k->state == CL_CONNECTING || k->state == CL_UPGRADING ||
                   k->state == CL_AUTHING) {
            conn_fail(c, k, ETIMEDOUT);
        }
    }
    fprintf(stderr,
            "perf_chat_load: connected %" PRId64 "/%" PRId64 " in %.2f s (%" PRId64
            " failed) over %" PRId64 " source addresses\n",
            c->opened, c->o.connections,
            c->last_open_us > c->first_connect_us
                ? (double)(c->last_open_us - c->first_connect_us) / 1e6
                : 0,
            c->failed, c->sources);
    /* 2. hold */
    if (!stop && c->o.ready_file != NULL) {
        ready_write(c);
        s = loop_until(c, mono_us() + c->o.hold_max_s * 1000000, base, "hold", NULL, &next_tick,
                       &second);
        stop = s == CL_SIG_STOP;
        if (s != CL_SIG_GO && !stop)
            fprintf(stderr, "perf_chat_load: no SIGUSR1 within %" PRId64 " s: pushing anyway\n",
                    c->o.hold_max_s);
    }
    /* 3. push */
    int64_t push_end = 0, drain_end = 0;
    pthread_t pusher;
    bool pusher_started = false;
    if (!stop && c->o.push) {
        c->pushing = true;
        c->push_start_us = mono_us();
        memset(&c->hist_second, 0, sizeof(c->hist_second));
        c->second_deliveries = 0;
        pusher_started = pthread_create(&pusher, NULL, pusher_main, c) == 0;
        if (!pusher_started) {
            fprintf(stderr, "perf_chat_load: cannot start the pusher thread\n");
            atomic_store(&c->ps.done, true);
        }
        int64_t push_deadline =
            c->push_start_us + c->o.duration_s * 1000000 + CL_PUSH_STOP_GRACE_MS * 1000 + 1000000;
        for (int round = 0; round < 1000 && !stop && !atomic_load(&c->ps.done); round++) {
            s = loop_until(c, push_deadline, base, "push", pusher_done, &next_tick, &second);
            stop = s == CL_SIG_STOP;
            if (s == CL_SIG_NONE)
                break;
        }
        push_end = mono_us();
        /* 4. drain */
        if (!stop) {
            s = loop_until(c, push_end + c->o.drain_s * 1000000, base, "drain", drained, &next_tick,
                           &second);
            stop = s == CL_SIG_STOP;
        }
        drain_end = mono_us();
        atomic_store(&c->stop, true);
        if (pusher_started)
            pthread_join(pusher, NULL);
    }
    result_print(c, push_end, drain_end);
    for (int64_t i = 0; i < c->o.connections; i++)
        if (c->conns[i].fd >= 0)
            close(c->conns[i].fd);
    if (c->timeline != NULL)
        fclose(c->timeline);
    return 0;
}
