/*
 * `magnetar replay TOPIC --from POS [--until POS] [--to DEST] [--format json|raw] [--rate R]`:
 * drains a topic's messages between two positions (replay.h) to stdout, a file or another topic,
 * at most R messages a second, showing how far it is. docs/replay.md is the user's manual.
 *
 * HOW IT READS
 *   Before anything is read, the admin REST API (--admin-url, blocking calls through rest.h)
 *   says whether the topic exists and how many partitions it has (.../partitions, then
 *   .../internalStats, which 404s on a missing topic: nothing is ever created), where each
 *   partition ends now (.../lastMessageId: the end of a replay without --until or --follow),
 *   which ledgers it keeps (internalStats: the first position kept, to refuse a --from that
 *   retention deleted; the entry counts, for "time left") and, for times, which message was
 *   the first published at or after it (.../messageid/{ms}). Then one non-durable reader per
 *   partition (pc_subscribe with reader = true on the partition's own topic, each with its own
 *   start id) reads through the broker's catch-up path; no cursor of anyone moves.
 *
 * BOUNDS
 *   Memory: each reader's receive queue (RP_RECEIVER_QUEUE), the output buffer (RP_SINK_BYTES,
 *   RP_SINK_RECORDS), or the producer's pending messages (RP_PENDING_MAX): the readers are
 *   paused (pc_consumer_pause) while the producer holds RP_PENDING_MAX messages or --rate has no
 *   token left, and resumed when it does. Writes to stdout and files block: a slow destination
 *   slows the replay. Time: every REST call and broker operation is bounded by --timeout, and so
 *   is a wait for the next message when the end is known.
 *
 * RATE
 *   A token bucket: R tokens a second, at most RP_BURST(R) = max(1, R / 10) held; a message
 *   takes one and the readers pause when none is left. So in any window of t seconds at most
 *   burst + R * t messages are written.
 *
 * WHAT "WRITTEN" MEANS (the last position, the resume position, the counts)
 *   stdout and file: the line went through write(2) whole (the buffer keeps which message ends
 *   where; after a failed write a regular file is cut back to the last whole line); a topic:
 *   the broker acknowledged the copy (acknowledgements arrive in order; after a failed one
 *   nothing later counts). The resume position is the one after the last message written in
 *   each partition ("after:L:E:B"; B -1 once a whole entry is written), or where the partition
 *   was to start when none was.
 *
 * THE JSON LINES are written by this file's own encoder (the "formats" section), not by
 *   building a jansson object and calling json_dumps per message: that way cost ten times the
 *   CPU of the whole drain (perf/replay.sh measured json at 0.11x the drain of `magnetar perf
 *   consume`; with the encoder 1.00x, perf/README.md "Replay drain"). It writes exactly the
 *   text json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) gives for the same object. Everything
 *   that parses JSON (the REST answers) still goes through jansson.
 *
 * STOPPING: every partition past its end (or --until), SIGINT/SIGTERM, or an error. Then the
 *   readers are paused and closed, the output flushed, the producer closed (it waits for its
 *   acknowledgements), the client closed; then the summary.
 */
#include "client/client.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/log.h"
#include "replay.h"
#include "rest.h"
#include "tools.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Flow permits of each partition's reader: the messages it may hold received and not yet
 * written. */
#define RP_RECEIVER_QUEUE 1000
/* Messages re-published and not yet acknowledged at which the readers pause (also the
 * producer's max_pending_messages). */
#define RP_PENDING_MAX    1000
/* The output buffer for stdout and files, and the messages it may hold. */
#define RP_SINK_BYTES     (256u * 1024)
#define RP_SINK_RECORDS   4096
/* Buffered output is written at least this often (so a file grows while one watches). */
#define RP_FLUSH_MS       200
/* The housekeeping timer: flushes, progress, the wait for the next message. */
#define RP_TICK_MS        100
/* The terminal progress bar is redrawn this often. */
#define RP_BAR_MS         250
/* internalStats lists at most this many ledgers per topic (broker/admin.c). */
#define RP_LEDGERS_MAX    64
/* A topic name and the admin path built from it. */
#define RP_TOPIC_BYTES    1024
#define RP_PATH_BYTES     (3 * RP_TOPIC_BYTES + 64)
/* The rate limiter's burst: a tenth of a second of messages, at least one. */
#define RP_BURST(rate)    ((rate) / 10 >= 1 ? floor((rate) / 10) : 1.0)

/* --- options -------------------------------------------------------------------------------- */

typedef struct rp_opts {
    char *service_url;
    char *admin_url;
    char *from;
    char *until;
    char *to;
    int format;
    char *rate;
    bool follow;
    bool append;
    int64_t interval_ms;
    char *json;
    int64_t timeout_ms;
    int log_level;
} rp_opts;

static const char *const rp_formats[] = { "json", "raw", NULL };
enum { RP_FORMAT_JSON, RP_FORMAT_RAW };

static const mg_opt rp_opt_table[] = {
    MG_TOOL_OPT_SERVICE_URL(rp_opts, service_url),
    { .name = "admin-url",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, admin_url),
      .default_value = "http://127.0.0.1:8080",
      .metavar = "URL",
      .help = "the broker's admin REST API (topic metadata, ends, times to ids)" },
    { .name = "from",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, from),
      .default_value = NULL,
      .metavar = "POS",
      .help = "where to start (required): earliest, latest, LEDGER:ENTRY[:BATCH], "
              "after:LEDGER:ENTRY[:BATCH], an RFC 3339 time, -2h/-30m/-90s, or P=POS,... per "
              "partition (the resume form)" },
    { .name = "until",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, until),
      .default_value = NULL,
      .metavar = "POS",
      .help = "where to stop, inclusive: an id (that message is the last), a time (the last "
              "message published at or before it), latest, or P=POS,...; default: the end as "
              "it was when the replay began" },
    { .name = "to",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, to),
      .default_value = "stdout",
      .metavar = "DEST",
      .help = "stdout, file:PATH or topic:NAME (re-publish with keys, properties and event "
              "times)" },
    { .name = "format",
      .type = MG_OPT_ENUM,
      .offset = offsetof(rp_opts, format),
      .default_value = "json",
      .metavar = "F",
      .help = "json: one object per message and line; raw: payloads only, one per line",
      .choices = rp_formats },
    { .name = "rate",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, rate),
      .default_value = NULL,
      .metavar = "MSG/S",
      .help = "write at most this many messages a second (a number > 0; default: as fast as "
              "the destination takes)" },
    { .name = "follow",
      .type = MG_OPT_BOOL,
      .offset = offsetof(rp_opts, follow),
      .default_value = "false",
      .help = "do not stop at the end: go on with new messages until --until or interrupted" },
    { .name = "append",
      .type = MG_OPT_BOOL,
      .offset = offsetof(rp_opts, append),
      .default_value = "false",
      .help = "file:PATH: append instead of replacing the file (to resume into it)" },
    { .name = "stats-interval",
      .type = MG_OPT_DURATION,
      .offset = offsetof(rp_opts, interval_ms),
      .default_value = "10s",
      .metavar = "DURATION",
      .help = "time between two progress lines when stderr is not a terminal",
      .min = 100,
      .max = 3600000 },
    { .name = "json",
      .type = MG_OPT_STRING,
      .offset = offsetof(rp_opts, json),
      .default_value = NULL,
      .metavar = "FILE",
      .help = "also write the summary as a JSON object to FILE" },
    { .name = "timeout",
      .type = MG_OPT_DURATION,
      .offset = offsetof(rp_opts, timeout_ms),
      .default_value = "30s",
      .metavar = "DURATION",
      .help = "give up when the broker does not answer, or no message comes while the end is "
              "not reached, within this",
      .min = 100,
      .max = 86400000 },
    { .name = "log-level",
      .type = MG_OPT_ENUM,
      .offset = offsetof(rp_opts, log_level),
      .default_value = "warn",
      .metavar = "LEVEL",
      .help = "lowest level of log line printed",
      .choices = mg_tool_log_levels },
};

static const mg_cmd_spec rp_spec_cmd = {
    .name = "magnetar replay",
    .usage = "TOPIC --from POS [--until POS] [--to DEST] [--format json|raw] [--rate MSG/S] "
             "[options]",
    .summary = "Reads a topic's messages from a position or a time with a non-durable reader "
               "(no subscription's cursor moves) and writes them to stdout, a file or another "
               "topic, as fast as the destination takes or at --rate. Progress and the summary "
               "go to stderr; on SIGINT or SIGTERM it stops cleanly and prints the position to "
               "resume from. TOPIC is a short name (persistent://public/default/NAME) or a "
               "full one. Exit: 0 done, 1 failed, 2 bad usage, 130/143 interrupted.",
    .opts = rp_opt_table,
    .opt_count = sizeof(rp_opt_table) / sizeof(rp_opt_table[0]),
    .positional_min = 1,
    .positional_max = 1,
};

/* --- state ---------------------------------------------------------------------------------- */

typedef enum rp_dest {
    RP_DEST_STDOUT,
    RP_DEST_FILE,
    RP_DEST_TOPIC,
} rp_dest;

typedef enum rp_why {
    RP_WHY_NONE,
    RP_WHY_END,
    RP_WHY_UNTIL,
    RP_WHY_INTERRUPTED,
    RP_WHY_ERROR,
} rp_why;

/* Where a partition stops: after id (inclusive) or before it (exclusive); batch -1 = the whole
 * entry. */
typedef struct rp_stop {
    bool set;
    int64_t ledger_id, entry_id;
    int32_t batch_index;
    bool inclusive;
} rp_stop;

struct rp_run;

typedef struct rp_part {
    struct rp_run *run;
    int32_t index; /* partition; -1: not a partitioned topic */
    char topic[RP_TOPIC_BYTES];
    char rest[RP_PATH_BYTES]; /* the admin path of the topic, without the operation */
    bool exists;
    /* as the replay began */
    bool empty;
    int64_t end_ledger, end_entry;
    bool has_first;
    int64_t first_ledger;
    size_t ledger_count;
    int64_t ledger_ids[RP_LEDGERS_MAX], ledger_entries[RP_LEDGERS_MAX];
    /* where it starts */
    bool start_earliest;
    pc_message_id start;
    bool start_inclusive;
    rp_pos start_pos; /* printed as its resume position while nothing is written */
    /* where it stops */
    rp_stop until, end;
    bool until_time; /* --follow and --until TIME past the last message: by publish time */
    int64_t until_time_ms;
    bool done;
    pc_consumer *reader;
    /* progress */
    bool written;
    pc_message_id last; /* the last message written */
    int64_t entries_total;
} rp_part;

typedef struct rp_rec {
    size_t end; /* offset in the buffer after this message's line */
    rp_part *part;
    pc_message_id id;
    size_t payload_bytes;
} rp_rec;

typedef struct rp_run {
    uv_loop_t loop;
    uv_timer_t tick, rate_timer;
    uv_signal_t sigint, sigterm;
    const rp_opts *o;
    char topic[RP_TOPIC_BYTES];
    char dest_text[RP_TOPIC_BYTES + 16];
    bool partitioned;
    rp_part *parts;
    size_t part_count;
    pc_client *client;
    pc_producer *producer;
    rp_dest dest;
    const char *dest_arg; /* the path or the topic */
    int format;
    /* output buffer (stdout, file) */
    int fd;
    bool fd_regular, fd_owned;
    off_t fd_base; /* file offset of buf[0] (regular files) */
    char *buf;
    size_t len;
    rp_rec *recs;
    char *line; /* the json line being built, kept for the next one */
    size_t line_len, line_cap;
    size_t rec_count;
    uint64_t flushed_ms;
    /* rate */
    double rate, burst, tokens;
    uint64_t refill_us;
    bool rate_blocked;
    bool paused;
    /* stopping */
    bool stopping;
    bool client_closing;
    int outstanding; /* subscribes, producer creation, closes in flight */
    rp_why why;
    int signal_no;
    char error[768];
    bool send_failed;
    /* counts */
    int64_t messages, bytes;
    bool have_first;
    rp_part *first_part, *last_part;
    pc_message_id first_id, last_id;
    uint64_t start_ms, last_activity_ms, last_progress_ms;
    int64_t progress_messages;
    bool tty, bar_drawn;
} rp_run;

static void rp_stop_run(rp_run *r, rp_why why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- small helpers -------------------------------------------------------------------------- */

/* snprintf for texts that may be cut (names and reasons in messages, paths sized for the
 * longest topic name). */
static void rp_fmt(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rp_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static void id_text(const pc_message_id *id, bool after, char *dst, size_t cap)
{
    rp_fmt(dst, cap, "%s%" PRId64 ":%" PRId64 ":%d", after ? "after:" : "", id->ledger_id,
           id->entry_id, (int)id->batch_index);
}

/* A message id with its partition prefix on a partitioned topic ("3=12:5:-1"). */
static void part_id_text(const rp_run *r, const rp_part *p, const pc_message_id *id, char *dst,
                         size_t cap)
{
    char t[RP_POS_BYTES];
    id_text(id, false, t, sizeof(t));
    if (r->partitioned)
        rp_fmt(dst, cap, "%d=%s", (int)p->index, t);
    else
        rp_fmt(dst, cap, "%s", t);
}

/* Where the partition resumes: after its last message written (a whole entry as -1), else its
 * start. */
static void part_resume_text(const rp_part *p, char *dst, size_t cap)
{
    if (p->written) {
        pc_message_id id = p->last;
        if (id.batch_index >= 0 && id.batch_size > 0 && id.batch_index >= id.batch_size - 1)
            id.batch_index = -1;
        id_text(&id, true, dst, cap);
    } else {
        rp_pos_format(&p->start_pos, dst, cap);
    }
}

static char *resume_text(const rp_run *r)
{
    size_t cap = r->part_count * (RP_POS_BYTES + 16) + 16;
    char *s = mg_calloc(1, cap);
    if (s == NULL)
        return NULL;
    size_t off = 0;
    for (size_t i = 0; i < r->part_count; i++) {
        char t[RP_POS_BYTES];
        part_resume_text(&r->parts[i], t, sizeof(t));
        if (r->partitioned)
            off += (size_t)snprintf(s + off, cap - off, "%s%d=%s", i ? "," : "",
                                    (int)r->parts[i].index, t);
        else
            off += (size_t)snprintf(s + off, cap - off, "%s", t);
    }
    return s;
}

/* Entries of the partition's ledger list from (al, ae) to (bl, be), both inclusive. */
static int64_t part_entries_between(const rp_part *p, int64_t al, int64_t ae, int64_t bl,
                                    int64_t be)
{
    int64_t n = 0;
    for (size_t i = 0; i < p->ledger_count; i++) {
        int64_t id = p->ledger_ids[i], entries = p->ledger_entries[i];
        if (id < al || id > bl || entries == 0)
            continue;
        int64_t lo = id == al ? (ae < 0 ? 0 : ae) : 0;
        int64_t hi = id == bl ? be : entries - 1;
        if (hi > entries - 1)
            hi = entries - 1;
        if (hi >= lo)
            n += hi - lo + 1;
    }
    return n;
}

static void part_start_entry(const rp_part *p, int64_t *l, int64_t *e)
{
    if (p->start_earliest) {
        *l = p->has_first ? p->first_ledger : 0;
        *e = 0;
    } else {
        *l = p->start.ledger_id;
        *e = p->start.entry_id + (!p->start_inclusive && p->start.batch_index < 0 ? 1 : 0);
    }
}

static void fmt_duration(double s, char *dst, size_t cap)
{
    if (s < 0 || !isfinite(s))
        rp_fmt(dst, cap, "?");
    else if (s < 60)
        rp_fmt(dst, cap, "%.0fs", s);
    else if (s < 3600)
        rp_fmt(dst, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        rp_fmt(dst, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

/* --- output buffer (stdout, file) ----------------------------------------------------------- */

static void commit(rp_run *r, rp_part *p, const pc_message_id *id, size_t payload_bytes)
{
    p->written = true;
    p->last = *id;
    r->messages++;
    r->bytes += (int64_t)payload_bytes;
    if (!r->have_first) {
        r->have_first = true;
        r->first_part = p;
        r->first_id = *id;
    }
    r->last_part = p;
    r->last_id = *id;
}

/* Writes all of data, waiting for a non-blocking descriptor; returns the bytes written (less
 * than len after an error, errno set). */
static size_t write_all(int fd, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            (void)poll(&pfd, 1, 1000);
        } else {
            if (n == 0)
                errno = EIO;
            break;
        }
    }
    return done;
}

static const char *dest_name(const rp_run *r)
{
    return r->dest_text;
}

/* Writes the buffer; commits the messages whose lines went out whole. After a failure a
 * regular file is cut back to its last whole line. Returns 0 or -1 (the run is stopping). */
static int sink_flush(rp_run *r)
{
    r->flushed_ms = mg_clock_mono_ms();
    if (r->len == 0)
        return 0;
    size_t w = write_all(r->fd, r->buf, r->len);
    int e = errno;
    size_t whole = 0;
    for (size_t i = 0; i < r->rec_count && r->recs[i].end <= w; i++) {
        commit(r, r->recs[i].part, &r->recs[i].id, r->recs[i].payload_bytes);
        whole = r->recs[i].end;
    }
    if (w < r->len) {
        bool cut = false;
        if (r->fd_regular && w > whole)
            cut = ftruncate(r->fd, r->fd_base + (off_t)whole) == 0;
        r->len = 0;
        r->rec_count = 0;
        rp_stop_run(r, RP_WHY_ERROR, "cannot write to %s: %s%s", dest_name(r), strerror(e),
                    cut ? " (the partly written line was removed)" : "");
        return -1;
    }
    r->fd_base += (off_t)r->len;
    r->len = 0;
    r->rec_count = 0;
    return 0;
}

/* Adds one message's line (a then b) to the buffer, writing it out first when full. */
static int sink_put(rp_run *r, rp_part *p, const pc_message_id *id, size_t payload_bytes,
                    const char *a, size_t alen, const char *b, size_t blen)
{
    size_t need = alen + blen;
    if (r->len + need > RP_SINK_BYTES || r->rec_count == RP_SINK_RECORDS) {
        if (sink_flush(r) != 0)
            return -1;
    }
    if (need > RP_SINK_BYTES) {
        /* A line larger than the buffer goes out by itself. */
        size_t w = write_all(r->fd, a, alen);
        if (w == alen)
            w += write_all(r->fd, b, blen);
        if (w < need) {
            int e = errno;
            bool cut = r->fd_regular && w > 0 && ftruncate(r->fd, r->fd_base) == 0;
            rp_stop_run(r, RP_WHY_ERROR, "cannot write to %s: %s%s", dest_name(r), strerror(e),
                        cut ? " (the partly written line was removed)" : "");
            return -1;
        }
        r->fd_base += (off_t)need;
        commit(r, p, id, payload_bytes);
        return 0;
    }
    memcpy(r->buf + r->len, a, alen);
    memcpy(r->buf + r->len + alen, b, blen);
    r->len += need;
    r->recs[r->rec_count++] = (rp_rec){ r->len, p, *id, payload_bytes };
    return 0;
}

/* --- formats -------------------------------------------------------------------------------- */

/* A json line is built in r->line, which grows as needed and is kept for the next message (no
 * allocation per message), then copied to the output buffer. The text is the one jansson's
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) gives for the same object, byte for byte: ",
 * \ and control characters escaped (\b \f \n \r \t, else \u00XX in upper-case hex), every other
 * byte as it is. */

static int line_reserve(rp_run *r, size_t more)
{
    if (more <= r->line_cap - r->line_len)
        return 0;
    size_t cap = r->line_cap > 0 ? r->line_cap : 4096;
    while (cap - r->line_len < more) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *b = mg_realloc(r->line, cap);
    if (b == NULL)
        return -1;
    r->line = b;
    r->line_cap = cap;
    return 0;
}

static int line_put(rp_run *r, const char *s, size_t n)
{
    if (line_reserve(r, n) != 0)
        return -1;
    memcpy(r->line + r->line_len, s, n);
    r->line_len += n;
    return 0;
}

static int line_lit(rp_run *r, const char *s)
{
    return line_put(r, s, strlen(s));
}

static int line_int(rp_run *r, int64_t v)
{
    char t[24];
    size_t n = sizeof(t);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        t[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        t[--n] = '-';
    return line_put(r, t + n, sizeof(t) - n);
}

/* Whether s[0..n) is UTF-8 as jansson accepts it: no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000))
            return false;
        i += len;
    }
    return true;
}

/* s[0..n) as a JSON string literal, quotes included. */
static int line_str(rp_run *r, const uint8_t *s, size_t n)
{
    if (n > (SIZE_MAX - 2) / 6 || line_reserve(r, 6 * n + 2) != 0)
        return -1;
    char *o = r->line + r->line_len;
    *o++ = '"';
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < n; i++) {
        /* Eight bytes at a time while none is below 0x20, " or \ (the "has a byte less than"
         * and "has a zero byte" word tests, exact as to whether there is one). */
        while (i + 8 <= n) {
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t w, q, b;
            memcpy(&w, s + i, 8);
            q = w ^ (ones * '"');
            b = w ^ (ones * '\\');
            if (((w - ones * 0x20) & ~w & highs) | ((q - ones) & ~q & highs) |
                ((b - ones) & ~b & highs))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        memcpy(o, s + run, i - run);
        o += i - run;
        run = i + 1;
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default: {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        }
    }
    memcpy(o, s + run, n - run);
    o += n - run;
    *o++ = '"';
    r->line_len = (size_t)(o - r->line);
    return 0;
}

/* s[0..n) in base64, as a JSON string literal. */
static int line_base64(rp_run *r, const uint8_t *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (n > SIZE_MAX / 2 || line_reserve(r, 4 * ((n + 2) / 3) + 2) != 0)
        return -1;
    char *o = r->line + r->line_len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        *o++ = tab[(v >> 18) & 63];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o++ = '"';
    r->line_len = (size_t)(o - r->line);
    return 0;
}

/* The bytes as a JSON string when they are UTF-8, else in base64; *utf8 says which. */
static int line_bytes(rp_run *r, const void *p, size_t n, bool *utf8)
{
    *utf8 = utf8_valid(p, n);
    return *utf8 ? line_str(r, p, n) : line_base64(r, p, n);
}

/* The properties as a JSON object, as jansson built it: a property whose name is not UTF-8 is
 * left out, and a name given twice keeps its first place and its last value. */
static int line_properties(rp_run *r, const pc_received *m)
{
    int rc = line_put(r, "{", 1);
    bool first = true;
    for (size_t i = 0; i < m->property_count && rc == 0; i++) {
        const char *k = m->properties[i].key;
        if (k == NULL || !utf8_valid((const uint8_t *)k, strlen(k)))
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = m->properties[j].key != NULL && strcmp(m->properties[j].key, k) == 0;
        if (seen)
            continue;
        size_t last = i;
        for (size_t j = i + 1; j < m->property_count; j++) {
            if (m->properties[j].key != NULL && strcmp(m->properties[j].key, k) == 0)
                last = j;
        }
        const char *v = m->properties[last].value != NULL ? m->properties[last].value : "";
        bool utf8;
        if (!first)
            rc |= line_put(r, ",", 1);
        first = false;
        rc |= line_str(r, (const uint8_t *)k, strlen(k));
        rc |= line_put(r, ":", 1);
        rc |= line_bytes(r, v, strlen(v), &utf8);
    }
    return rc | line_put(r, "}", 1);
}

static int write_json_line(rp_run *r, rp_part *p, const pc_received *m, const pc_message_id *id)
{
    bool utf8;
    r->line_len = 0;
    /* The id as id_text writes it: "L:E:B". */
    int rc = line_lit(r, "{\"messageId\":\"");
    rc |= line_int(r, id->ledger_id);
    rc |= line_put(r, ":", 1);
    rc |= line_int(r, id->entry_id);
    rc |= line_put(r, ":", 1);
    rc |= line_int(r, id->batch_index);
    rc |= line_put(r, "\"", 1);
    if (r->partitioned) {
        rc |= line_lit(r, ",\"partition\":");
        rc |= line_int(r, p->index);
    }
    rc |= line_lit(r, ",\"publishTime\":");
    rc |= line_int(r, m->publish_time_ms);
    rc |= line_lit(r, ",\"eventTime\":");
    rc |= m->event_time_ms != 0 ? line_int(r, m->event_time_ms) : line_lit(r, "null");
    rc |= line_lit(r, ",\"key\":");
    if (m->key == NULL) {
        rc |= line_lit(r, "null");
    } else {
        rc |= line_bytes(r, m->key, m->key_len, &utf8);
        if (!utf8)
            rc |= line_lit(r, ",\"keyEncoding\":\"base64\"");
    }
    rc |= line_lit(r, ",\"properties\":");
    rc |= line_properties(r, m);
    rc |= line_lit(r, ",\"payload\":");
    rc |= line_bytes(r, m->payload, m->payload_len, &utf8);
    rc |= line_lit(r, utf8 ? ",\"payloadEncoding\":\"utf8\"}" : ",\"payloadEncoding\":\"base64\"}");
    if (rc != 0) {
        char idt[RP_POS_BYTES];
        id_text(id, false, idt, sizeof(idt));
        rp_stop_run(r, RP_WHY_ERROR, "cannot encode message %s as JSON: out of memory", idt);
        return -1;
    }
    return sink_put(r, p, id, m->payload_len, r->line, r->line_len, "\n", 1);
}

/* --- re-publishing -------------------------------------------------------------------------- */

typedef struct rp_send {
    rp_run *run;
    rp_part *part;
    pc_message_id id;
    size_t payload_bytes;
} rp_send;

static void flow_update(rp_run *r);

static void sent(int status, const pc_message_id *id, void *arg)
{
    (void)id;
    rp_send *s = arg;
    rp_run *r = s->run;
    if (status == MG_OK && !r->send_failed) {
        commit(r, s->part, &s->id, s->payload_bytes);
    } else if (status != MG_OK && !r->send_failed) {
        r->send_failed = true;
        char t[RP_POS_BYTES + 16];
        part_id_text(r, s->part, &s->id, t, sizeof(t));
        const char *why = r->client != NULL ? pc_last_error(r->client) : "";
        rp_stop_run(r, RP_WHY_ERROR, "message %s was not re-published to %s: %s%s%s", t,
                    r->dest_arg, mg_strerror(status), why[0] ? ": " : "", why);
    }
    mg_free(s);
    flow_update(r);
}

static int write_topic(rp_run *r, rp_part *p, const pc_received *m, const pc_message_id *id)
{
    rp_send *s = mg_calloc(1, sizeof(*s));
    if (s == NULL) {
        rp_stop_run(r, RP_WHY_ERROR, "out of memory");
        return -1;
    }
    *s = (rp_send){ r, p, *id, m->payload_len };
    pc_message msg = {
        .payload = m->payload,
        .payload_len = m->payload_len,
        .key = m->key,
        .properties = m->properties,
        .property_count = m->property_count,
        .event_time_ms = m->event_time_ms,
    };
    int rc = pc_send(r->producer, &msg, sent, s);
    if (rc != MG_OK) {
        mg_free(s);
        rp_stop_run(r, RP_WHY_ERROR, "cannot re-publish to %s: %s", r->dest_arg, mg_strerror(rc));
        return -1;
    }
    return 0;
}

/* --- reading -------------------------------------------------------------------------------- */

static void set_paused(rp_run *r, bool pause)
{
    for (size_t i = 0; i < r->part_count; i++) {
        rp_part *p = &r->parts[i];
        if (p->reader == NULL)
            continue;
        if (pause || p->done)
            pc_consumer_pause(p->reader);
        else
            pc_consumer_resume(p->reader);
    }
}

static void flow_update(rp_run *r)
{
    bool full = r->producer != NULL && pc_producer_pending(r->producer) >= RP_PENDING_MAX;
    bool want = r->stopping || r->rate_blocked || full;
    if (want != r->paused) {
        r->paused = want;
        set_paused(r, want);
        if (!want)
            r->last_activity_ms = mg_clock_mono_ms(); /* the wait for a message starts again */
    }
}

static void refill(rp_run *r)
{
    if (r->rate <= 0)
        return;
    uint64_t now = mg_clock_mono_us();
    r->tokens += (double)(now - r->refill_us) * r->rate / 1e6;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    r->refill_us = now;
}

static void rate_fired(uv_timer_t *t)
{
    rp_run *r = t->data;
    refill(r);
    if (r->tokens >= 1.0) {
        r->rate_blocked = false;
        flow_update(r);
        return;
    }
    uint64_t wait_ms = (uint64_t)ceil((1.0 - r->tokens) * 1000.0 / r->rate);
    uv_timer_start(&r->rate_timer, rate_fired, wait_ms > 0 ? wait_ms : 1, 0);
}

/* Whether id (of a message of a batch of size batch_size) is past the stop. */
static bool past_stop(const rp_stop *s, const pc_message_id *id)
{
    if (!s->set)
        return false;
    int c = rp_id_cmp(id->ledger_id, id->entry_id, 0, s->ledger_id, s->entry_id, 0);
    if (c != 0)
        return c > 0;
    if (s->batch_index < 0)
        return !s->inclusive;
    return s->inclusive ? id->batch_index > s->batch_index : id->batch_index >= s->batch_index;
}

/* Whether id is the last message before an inclusive stop. */
static bool at_stop(const rp_stop *s, const pc_message_id *id)
{
    if (!s->set || !s->inclusive || id->ledger_id != s->ledger_id || id->entry_id != s->entry_id)
        return false;
    if (s->batch_index >= 0)
        return id->batch_index >= s->batch_index;
    return id->batch_index < 0 || id->batch_index >= id->batch_size - 1;
}

static void all_done_check(rp_run *r)
{
    bool until = false;
    for (size_t i = 0; i < r->part_count; i++) {
        if (!r->parts[i].done)
            return;
    }
    for (size_t i = 0; i < r->part_count; i++)
        until |= r->parts[i].until.set || r->parts[i].until_time;
    rp_stop_run(r, until ? RP_WHY_UNTIL : RP_WHY_END, NULL);
}

static void part_done(rp_part *p)
{
    if (p->done)
        return;
    p->done = true;
    if (p->reader != NULL)
        pc_consumer_pause(p->reader);
    all_done_check(p->run);
}

static void on_message(pc_consumer *k, const pc_received *m, void *arg)
{
    (void)k;
    rp_part *p = arg;
    rp_run *r = p->run;
    if (r->stopping || p->done)
        return;
    r->last_activity_ms = mg_clock_mono_ms();
    pc_message_id id = m->id;
    id.partition = p->index;
    if (past_stop(&p->until, &id) || past_stop(&p->end, &id) ||
        (p->until_time && m->publish_time_ms > p->until_time_ms)) {
        part_done(p);
        return;
    }
    int rc =
        r->dest == RP_DEST_TOPIC ? write_topic(r, p, m, &id)
        : r->format == RP_FORMAT_RAW
            ? sink_put(r, p, &id, m->payload_len, (const char *)m->payload, m->payload_len, "\n", 1)
            : write_json_line(r, p, m, &id);
    if (rc != 0)
        return;
    if (r->rate > 0) {
        refill(r);
        r->tokens -= 1.0;
        if (r->tokens < 1.0 && !r->rate_blocked) {
            r->rate_blocked = true;
            rate_fired(&r->rate_timer);
        }
    }
    if (at_stop(&p->until, &id) || at_stop(&p->end, &id))
        part_done(p);
    if (!r->stopping)
        flow_update(r);
}

static void on_end(pc_consumer *k, void *arg)
{
    (void)k;
    rp_part *p = arg;
    if (!p->run->stopping)
        part_done(p); /* terminated topic: everything there will ever be was received */
}

/* --- stopping ------------------------------------------------------------------------------- */

static void client_closed(void *arg)
{
    rp_run *r = arg;
    r->client = NULL;
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->rate_timer, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
}

static void maybe_close_client(rp_run *r)
{
    if (!r->stopping || r->outstanding > 0 || r->client_closing)
        return;
    r->client_closing = true;
    if (r->client != NULL)
        pc_client_close(r->client, client_closed, r); /* r->client cleared in client_closed */
    else if (!uv_is_closing((uv_handle_t *)&r->tick))
        client_closed(r);
}

static void handle_closed(int status, void *arg)
{
    (void)status;
    rp_run *r = arg;
    r->outstanding--;
    maybe_close_client(r);
}

static void rp_stop_run(rp_run *r, rp_why why, const char *fmt, ...)
{
    if (fmt != NULL && (!r->stopping || (why == RP_WHY_ERROR && r->why != RP_WHY_ERROR))) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof(r->error), fmt, ap);
        va_end(ap);
    }
    if (r->stopping) {
        if (why == RP_WHY_ERROR)
            r->why = RP_WHY_ERROR;
        return;
    }
    r->stopping = true;
    r->why = why;
    uv_timer_stop(&r->tick);
    uv_timer_stop(&r->rate_timer);
    flow_update(r);
    if (r->fd >= 0) {
        (void)sink_flush(r); /* what was read is written, whatever stopped the replay */
        if (r->fd_owned) {
            if (close(r->fd) != 0 && r->why != RP_WHY_ERROR) {
                int e = errno;
                r->why = RP_WHY_ERROR;
                rp_fmt(r->error, sizeof(r->error), "cannot write to %s: %s", dest_name(r),
                       strerror(e));
            }
        }
        r->fd = -1;
    }
    for (size_t i = 0; i < r->part_count; i++) {
        rp_part *p = &r->parts[i];
        if (p->reader != NULL) {
            pc_consumer *k = p->reader;
            p->reader = NULL;
            r->outstanding++;
            pc_consumer_close(k, handle_closed, r);
        }
    }
    if (r->producer != NULL) {
        pc_producer *pr = r->producer;
        r->producer = NULL;
        r->outstanding++;
        pc_producer_close(pr, handle_closed, r);
    }
    maybe_close_client(r);
}

/* --- progress ------------------------------------------------------------------------------- */

/* Fraction done (0..1) from the entries of every partition's range, or -1 when the end is not
 * known (--follow without --until). */
static double progress_fraction(const rp_run *r)
{
    int64_t total = 0, done = 0;
    for (size_t i = 0; i < r->part_count; i++) {
        const rp_part *p = &r->parts[i];
        if (!p->until.set && !p->end.set && !p->done)
            return -1;
        total += p->entries_total;
        if (p->done) {
            done += p->entries_total;
        } else if (p->written) {
            int64_t sl, se;
            part_start_entry(p, &sl, &se);
            int64_t n = part_entries_between(p, sl, se, p->last.ledger_id, p->last.entry_id);
            done += n < p->entries_total ? n : p->entries_total;
        }
    }
    if (total <= 0)
        return 1.0;
    return (double)done / (double)total;
}

static void progress_text(rp_run *r, char *dst, size_t cap, bool bar)
{
    double elapsed_s = (double)(mg_clock_mono_ms() - r->start_ms) / 1000.0;
    double rate = elapsed_s > 0 ? (double)r->messages / elapsed_s : 0;
    double frac = progress_fraction(r);
    char left[32] = "", at[RP_POS_BYTES + 32] = "-";
    if (frac > 0 && frac < 1)
        fmt_duration(elapsed_s * (1 - frac) / frac, left, sizeof(left));
    else if (frac >= 1)
        rp_fmt(left, sizeof(left), "0s");
    if (r->last_part != NULL) {
        char t[RP_POS_BYTES + 16];
        part_id_text(r, r->last_part, &r->last_id, t, sizeof(t));
        rp_fmt(at, sizeof(at), "%s", t);
    }
    size_t done_parts = 0;
    for (size_t i = 0; i < r->part_count; i++)
        done_parts += r->parts[i].done;
    char parts[48] = "";
    if (r->partitioned)
        rp_fmt(parts, sizeof(parts), ", %zu/%zu partitions done", done_parts, r->part_count);
    double mib = (double)r->bytes / (1024.0 * 1024.0);
    if (bar) {
        char b[23];
        int width = 20, fill = frac >= 0 ? (int)(frac * width + 0.5) : 0;
        b[0] = '[';
        for (int i = 0; i < width; i++)
            b[1 + i] = frac < 0 ? '?' : i < fill ? '=' : ' ';
        b[21] = ']';
        b[22] = '\0';
        char pct[16] = "";
        if (frac >= 0)
            rp_fmt(pct, sizeof(pct), " %3.0f%%", frac * 100);
        rp_fmt(dst, cap, "%s%s %" PRId64 " msgs %.1f MiB %.0f msg/s at %s%s%s%s", b, pct,
               r->messages, mib, rate, at, parts, left[0] ? " left " : "", left);
    } else {
        char pct[32] = "";
        if (frac >= 0)
            rp_fmt(pct, sizeof(pct), ", %.0f%%", frac * 100);
        rp_fmt(dst, cap, "replay: %" PRId64 " messages, %.1f MiB, %.0f msg/s, at %s%s%s%s%s",
               r->messages, mib, rate, at, parts, pct, left[0] ? ", time left " : "", left);
    }
}

static void progress(rp_run *r, bool force)
{
    uint64_t now = mg_clock_mono_ms();
    uint64_t every = r->tty ? RP_BAR_MS : (uint64_t)r->o->interval_ms;
    if (!force && now - r->last_progress_ms < every)
        return;
    r->last_progress_ms = now;
    char line[512];
    progress_text(r, line, sizeof(line), r->tty);
    if (r->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        r->bar_drawn = true;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

static void tick(uv_timer_t *t)
{
    rp_run *r = t->data;
    if (r->stopping)
        return;
    uint64_t now = mg_clock_mono_ms();
    if (r->fd >= 0 && r->len > 0 && now - r->flushed_ms >= RP_FLUSH_MS && sink_flush(r) != 0)
        return;
    progress(r, false);
    bool waiting = false;
    for (size_t i = 0; i < r->part_count; i++)
        waiting |= !r->parts[i].done && (r->parts[i].until.set || r->parts[i].end.set);
    if (waiting && !r->paused && r->outstanding == 0 &&
        now - r->last_activity_ms >= (uint64_t)r->o->timeout_ms) {
        size_t undone = 0;
        for (size_t i = 0; i < r->part_count; i++)
            undone += !r->parts[i].done;
        rp_stop_run(r, RP_WHY_ERROR,
                    "no message came for %" PRId64 " ms while %zu %s had not reached %s end",
                    r->o->timeout_ms, undone,
                    r->partitioned ? (undone == 1 ? "partition" : "partitions") : "topic",
                    r->partitioned && undone > 1 ? "their" : "its");
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    rp_run *r = h->data;
    if (r->stopping)
        return;
    r->signal_no = signum;
    rp_stop_run(r, RP_WHY_INTERRUPTED, NULL);
}

/* --- starting ------------------------------------------------------------------------------- */

static void subscribed(int status, pc_consumer *k, void *arg)
{
    rp_part *p = arg;
    rp_run *r = p->run;
    r->outstanding--;
    if (status != MG_OK) {
        const char *why = r->client != NULL ? pc_last_error(r->client) : "";
        rp_stop_run(r, RP_WHY_ERROR, "cannot read %s: %s%s%s", p->topic, mg_strerror(status),
                    why[0] ? ": " : "", why);
        maybe_close_client(r);
        return;
    }
    if (r->stopping) {
        r->outstanding++;
        pc_consumer_close(k, handle_closed, r);
        return;
    }
    p->reader = k;
    r->last_activity_ms = mg_clock_mono_ms();
    if (r->paused || p->done)
        pc_consumer_pause(k);
}

static void subscribe_all(rp_run *r)
{
    for (size_t i = 0; i < r->part_count && !r->stopping; i++) {
        rp_part *p = &r->parts[i];
        if (p->done)
            continue;
        pc_consumer_opts co = {
            .topic = p->topic,
            .reader = true,
            .start_id = p->start_earliest ? PC_MESSAGE_ID_EARLIEST : p->start,
            .start_inclusive = p->start_earliest ? true : p->start_inclusive,
            .receiver_queue_size = RP_RECEIVER_QUEUE,
            .on_message = on_message,
            .on_end = on_end,
            .arg = p,
        };
        int rc = pc_subscribe(r->client, &co, subscribed, p);
        if (rc != MG_OK) {
            rp_stop_run(r, RP_WHY_ERROR, "cannot read %s: %s", p->topic, mg_strerror(rc));
            return;
        }
        r->outstanding++;
    }
    r->last_activity_ms = mg_clock_mono_ms();
}

static void producer_created(int status, pc_producer *pr, void *arg)
{
    rp_run *r = arg;
    r->outstanding--;
    if (status != MG_OK) {
        const char *why = r->client != NULL ? pc_last_error(r->client) : "";
        rp_stop_run(r, RP_WHY_ERROR, "cannot create a producer on %s: %s%s%s", r->dest_arg,
                    mg_strerror(status), why[0] ? ": " : "", why);
        maybe_close_client(r);
        return;
    }
    if (r->stopping) {
        r->outstanding++;
        pc_producer_close(pr, handle_closed, r);
        return;
    }
    r->producer = pr;
    subscribe_all(r);
}

/* --- the admin REST API --------------------------------------------------------------------- */

/* GET base + path; 0 with the reply (any status), or -1 with the reason in r->error. */
static int rest_get(rp_run *r, const char *path, mg_rest_reply *out)
{
    char err[MG_REST_ERR_BYTES];
    mg_rest_request_opts ro = { .method = "GET", .timeout_ms = r->o->timeout_ms };
    if (mg_rest_request(r->o->admin_url, path, &ro, out, err, sizeof(err)) != 0) {
        rp_fmt(r->error, sizeof(r->error), "cannot reach the admin API at %s: %s", r->o->admin_url,
               err);
        return -1;
    }
    return 0;
}

static int rest_fail(rp_run *r, const mg_rest_reply *rep, const char *what)
{
    char reason[256];
    mg_rest_reason(rep, reason, sizeof(reason));
    rp_fmt(r->error, sizeof(r->error), "cannot get %s: HTTP %ld: %s", what, rep->status, reason);
    return -1;
}

static json_t *rest_json(rp_run *r, const mg_rest_reply *rep, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(rep->body, rep->len, 0, &je);
    if (j == NULL)
        rp_fmt(r->error, sizeof(r->error), "the admin API's answer for %s is not JSON: %s", what,
               je.text);
    return j;
}

/* Splits TOPIC into tenant, namespace and local name: NAME, tenant/ns/NAME or
 * persistent://tenant/ns/NAME. */
static int topic_split(const char *topic, char *tenant, char *ns, char *local, size_t cap,
                       char *err, size_t err_size)
{
    const char *s = topic;
    if (strncmp(s, "persistent://", 13) == 0)
        s += 13;
    else if (strstr(s, "://") != NULL) {
        rp_fmt(err, err_size, "'%s': only persistent:// topics are stored and can be replayed",
               topic);
        return -1;
    }
    const char *a = strchr(s, '/');
    if (a == NULL && s == topic) {
        rp_fmt(tenant, cap, "public");
        rp_fmt(ns, cap, "default");
        rp_fmt(local, cap, "%s", s);
    } else {
        const char *b = a != NULL ? strchr(a + 1, '/') : NULL;
        if (a == NULL || b == NULL || strchr(b + 1, '/') != NULL || a == s || b == a + 1 ||
            b[1] == '\0') {
            rp_fmt(err, err_size,
                   "'%s' is not a topic name: NAME, TENANT/NAMESPACE/NAME or "
                   "persistent://TENANT/NAMESPACE/NAME",
                   topic);
            return -1;
        }
        rp_fmt(tenant, cap, "%.*s", (int)(a - s), s);
        rp_fmt(ns, cap, "%.*s", (int)(b - a - 1), a + 1);
        rp_fmt(local, cap, "%s", b + 1);
    }
    if (local[0] == '\0' || strlen(local) >= cap - 32) {
        rp_fmt(err, err_size, "'%s' is not a topic name", topic);
        return -1;
    }
    return 0;
}

/* Reads the partition's end, ledgers and first position kept. Sets p->exists. */
static int part_info(rp_run *r, rp_part *p)
{
    char path[RP_PATH_BYTES + 32];
    mg_rest_reply rep;
    rp_fmt(path, sizeof(path), "%s/lastMessageId", p->rest);
    if (rest_get(r, path, &rep) != 0)
        return -1;
    if (rep.status == 404) {
        mg_rest_reply_free(&rep);
        p->exists = false;
        p->empty = true;
        return 0;
    }
    if (rep.status != 200) {
        rest_fail(r, &rep, "the last message id");
        mg_rest_reply_free(&rep);
        return -1;
    }
    json_t *j = rest_json(r, &rep, "the last message id");
    mg_rest_reply_free(&rep);
    if (j == NULL)
        return -1;
    p->exists = true;
    p->end_ledger = json_integer_value(json_object_get(j, "ledgerId"));
    p->end_entry = json_integer_value(json_object_get(j, "entryId"));
    json_decref(j);

    rp_fmt(path, sizeof(path), "%s/internalStats", p->rest);
    if (rest_get(r, path, &rep) != 0)
        return -1;
    if (rep.status != 200) {
        rest_fail(r, &rep, "the topic's ledgers (internalStats)");
        mg_rest_reply_free(&rep);
        return -1;
    }
    j = rest_json(r, &rep, "internalStats");
    mg_rest_reply_free(&rep);
    if (j == NULL)
        return -1;
    json_t *ledgers = json_object_get(j, "ledgers");
    size_t n = json_array_size(ledgers);
    p->ledger_count = 0;
    p->has_first = false;
    for (size_t i = 0; i < n && p->ledger_count < RP_LEDGERS_MAX; i++) {
        json_t *l = json_array_get(ledgers, i);
        int64_t id = json_integer_value(json_object_get(l, "ledgerId"));
        int64_t entries = json_integer_value(json_object_get(l, "entries"));
        p->ledger_ids[p->ledger_count] = id;
        p->ledger_entries[p->ledger_count++] = entries;
        if (!p->has_first && entries > 0) {
            p->has_first = true;
            p->first_ledger = id;
        }
    }
    /* Nothing kept: the first position is the current ledger's start. */
    if (!p->has_first && p->ledger_count > 0) {
        p->has_first = true;
        p->first_ledger = p->ledger_ids[p->ledger_count - 1];
    }
    json_decref(j);
    p->empty = p->end_entry < 0 || (p->has_first && p->end_ledger < p->first_ledger);
    return 0;
}

/* The first message published at or after ms: 1 found (into *l, *e), 0 none, -1 error. */
static int message_id_at(rp_run *r, rp_part *p, int64_t ms, int64_t *l, int64_t *e)
{
    char path[RP_PATH_BYTES + 64];
    rp_fmt(path, sizeof(path), "%s/messageid/%" PRId64, p->rest, ms);
    mg_rest_reply rep;
    if (rest_get(r, path, &rep) != 0)
        return -1;
    if (rep.status == 404) {
        mg_rest_reply_free(&rep);
        return 0;
    }
    if (rep.status != 200) {
        rest_fail(r, &rep, "the message id of a time");
        mg_rest_reply_free(&rep);
        return -1;
    }
    json_t *j = rest_json(r, &rep, "the message id of a time");
    mg_rest_reply_free(&rep);
    if (j == NULL)
        return -1;
    *l = json_integer_value(json_object_get(j, "ledgerId"));
    *e = json_integer_value(json_object_get(j, "entryId"));
    json_decref(j);
    return 1;
}

static const rp_pos *spec_for(const rp_spec *s, int32_t part, const rp_pos *dflt)
{
    if (!s->multi)
        return &s->one;
    for (size_t i = 0; i < s->count; i++)
        if (s->parts[i] == part)
            return &s->pos[i];
    return dflt;
}

static void set_start_after_end(rp_part *p)
{
    if (p->empty) {
        p->start_earliest = true;
        p->start_pos = (rp_pos){ .kind = RP_POS_EARLIEST, .batch_index = -1 };
    } else {
        p->start = (pc_message_id){ p->end_ledger, p->end_entry, -1, 0, p->index };
        p->start_inclusive = false;
        p->start_pos = (rp_pos){ .kind = RP_POS_ID,
                                 .ledger_id = p->end_ledger,
                                 .entry_id = p->end_entry,
                                 .batch_index = -1,
                                 .after = true };
    }
}

/* Where the partition starts; -1 with r->error on an error (a position outside retention). */
static int resolve_start(rp_run *r, rp_part *p, const rp_pos *pos)
{
    p->start_earliest = false;
    switch (pos->kind) {
    case RP_POS_EARLIEST:
        p->start_earliest = true;
        p->start_pos = *pos;
        return 0;
    case RP_POS_LATEST:
        set_start_after_end(p);
        return 0;
    case RP_POS_ID:
        if (p->exists && p->has_first &&
            rp_id_cmp(pos->ledger_id, pos->entry_id, 0, p->first_ledger, 0, 0) < 0) {
            char t[RP_POS_BYTES];
            rp_pos_format(pos, t, sizeof(t));
            rp_fmt(r->error, sizeof(r->error),
                   "--from %s is before the oldest message %s keeps, at %" PRId64
                   ":0: it is outside retention (older ledgers were deleted) or not of this topic",
                   t, p->topic, p->first_ledger);
            return -1;
        }
        p->start = (pc_message_id){ pos->ledger_id, pos->entry_id, pos->batch_index, 0, p->index };
        p->start_inclusive = !pos->after;
        p->start_pos = *pos;
        return 0;
    case RP_POS_TIME: {
        int64_t l = 0, e = 0;
        int found = p->exists ? message_id_at(r, p, pos->time_ms, &l, &e) : 0;
        if (found < 0)
            return -1;
        if (found == 0) {
            set_start_after_end(p);
            return 0;
        }
        p->start = (pc_message_id){ l, e, -1, 0, p->index };
        p->start_inclusive = true;
        p->start_pos =
            (rp_pos){ .kind = RP_POS_ID, .ledger_id = l, .entry_id = e, .batch_index = -1 };
        return 0;
    }
    }
    return 0;
}

static int resolve_stop(rp_run *r, rp_part *p, const rp_pos *pos)
{
    if (!r->o->follow && !p->empty)
        p->end = (rp_stop){ true, p->end_ledger, p->end_entry, -1, true };
    if (pos == NULL)
        return 0;
    switch (pos->kind) {
    case RP_POS_EARLIEST:
        return 0; /* refused as usage before */
    case RP_POS_LATEST:
        if (!p->empty)
            p->until = (rp_stop){ true, p->end_ledger, p->end_entry, -1, true };
        else
            p->done = true;
        return 0;
    case RP_POS_ID:
        p->until = (rp_stop){ true, pos->ledger_id, pos->entry_id, pos->batch_index, true };
        return 0;
    case RP_POS_TIME: {
        int64_t l = 0, e = 0;
        int found = p->exists ? message_id_at(r, p, pos->time_ms + 1, &l, &e) : 0;
        if (found < 0)
            return -1;
        if (found == 1) {
            p->until = (rp_stop){ true, l, e, -1, false };
        } else if (r->o->follow) {
            p->until_time = true;
            p->until_time_ms = pos->time_ms;
        } else if (!p->empty) {
            p->until = (rp_stop){ true, p->end_ledger, p->end_entry, -1, true };
        }
        return 0;
    }
    }
    return 0;
}

/* Whether nothing lies between the partition's start and its stops. */
static bool range_empty(const rp_part *p, bool follow)
{
    if (p->done)
        return true;
    if (p->empty && !follow)
        return true;
    const rp_stop *stops[2] = { &p->until, &p->end };
    for (int i = 0; i < 2; i++) {
        const rp_stop *s = stops[i];
        if (!s->set)
            continue;
        if (p->start_earliest) {
            if (p->has_first && rp_id_cmp(p->first_ledger, 0, 0, s->ledger_id, s->entry_id, 0) > 0)
                return true;
            continue;
        }
        const pc_message_id *a = &p->start;
        int c = rp_id_cmp(a->ledger_id, a->entry_id, 0, s->ledger_id, s->entry_id, 0);
        bool whole_after = !p->start_inclusive && a->batch_index < 0;
        if (s->inclusive) {
            if (c > 0 || (c == 0 && whole_after))
                return true;
            if (c == 0 && s->batch_index >= 0 && a->batch_index >= 0 &&
                (p->start_inclusive ? a->batch_index > s->batch_index
                                    : a->batch_index >= s->batch_index))
                return true;
        } else if (c >= 0) {
            return true;
        }
    }
    return false;
}

/* --- summary -------------------------------------------------------------------------------- */

static const char *why_word(rp_why w)
{
    switch (w) {
    case RP_WHY_END:
        return "end";
    case RP_WHY_UNTIL:
        return "until";
    case RP_WHY_INTERRUPTED:
        return "interrupted";
    case RP_WHY_ERROR:
        return "error";
    default:
        return "none";
    }
}

static int exit_status(const rp_run *r)
{
    switch (r->why) {
    case RP_WHY_END:
    case RP_WHY_UNTIL:
        return MG_EXIT_OK;
    case RP_WHY_INTERRUPTED:
        return 128 + (r->signal_no > 0 ? r->signal_no : SIGINT);
    default:
        return MG_EXIT_FAILURE;
    }
}

/* Prints the summary on stderr (unless print is false: the error was printed already) and writes
 * --json; returns the exit status. */
static int summary(rp_run *r, bool print)
{
    double elapsed_s = (double)(mg_clock_mono_ms() - r->start_ms) / 1000.0;
    double rate = elapsed_s > 0 ? (double)r->messages / elapsed_s : 0;
    char first[RP_POS_BYTES + 16] = "none", last[RP_POS_BYTES + 16] = "none";
    if (r->first_part != NULL)
        part_id_text(r, r->first_part, &r->first_id, first, sizeof(first));
    if (r->last_part != NULL)
        part_id_text(r, r->last_part, &r->last_id, last, sizeof(last));
    char *resume = resume_text(r);
    if (r->bar_drawn) {
        progress(r, true);
        fputc('\n', stderr);
    }
    const char *why_text =
        r->why == RP_WHY_END     ? "reached the end as it was when the replay began"
        : r->why == RP_WHY_UNTIL ? "reached --until"
        : r->why == RP_WHY_INTERRUPTED
            ? (r->signal_no == SIGTERM ? "interrupted (SIGTERM)" : "interrupted (SIGINT)")
            : r->error;
    if (r->why == RP_WHY_END && r->o->follow)
        why_text = "reached the end";
    if (!print)
        goto json;
    fprintf(stderr, "replay: stopped: %s\n", why_text);
    fprintf(stderr, "replay: %" PRId64 " messages, %.1f MiB in %.1f s (%.0f msg/s) from %s to %s\n",
            r->messages, (double)r->bytes / (1024.0 * 1024.0), elapsed_s, rate, r->topic,
            dest_name(r));
    fprintf(stderr, "replay: first %s, last written %s\n", first, last);
    if (resume != NULL && r->why != RP_WHY_END && r->why != RP_WHY_UNTIL)
        fprintf(stderr, "replay: resume with --from %s\n", resume);
    else if (resume != NULL)
        fprintf(stderr, "replay: to go on later: --from %s\n", resume);
json:;
    int status = exit_status(r);
    if (r->o->json != NULL) {
        json_t *j = json_object();
        json_object_set_new(j, "topic", json_string(r->topic));
        json_object_set_new(j, "partitions",
                            json_integer(r->partitioned ? (json_int_t)r->part_count : 0));
        json_object_set_new(j, "destination", json_string(dest_name(r)));
        json_object_set_new(j, "format", json_string(rp_formats[r->format]));
        json_object_set_new(j, "messages", json_integer(r->messages));
        json_object_set_new(j, "bytes", json_integer(r->bytes));
        json_object_set_new(j, "elapsedMs", json_integer((json_int_t)(elapsed_s * 1000)));
        json_object_set_new(j, "rateMsgPerSec", json_real(rate));
        json_object_set_new(j, "first", r->first_part ? json_string(first) : json_null());
        json_object_set_new(j, "last", r->last_part ? json_string(last) : json_null());
        json_object_set_new(j, "resume", resume != NULL ? json_string(resume) : json_null());
        json_object_set_new(j, "stopped", json_string(why_word(r->why)));
        json_object_set_new(j, "error",
                            r->why == RP_WHY_ERROR ? json_string(r->error) : json_null());
        json_object_set_new(j, "exitStatus", json_integer(status));
        if (json_dump_file(j, r->o->json, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0) {
            fprintf(stderr, "replay: cannot write the summary to %s: %s\n", r->o->json,
                    strerror(errno));
            if (status == MG_EXIT_OK)
                status = MG_EXIT_FAILURE;
        }
        json_decref(j);
    }
    mg_free(resume);
    return status;
}

/* --- main ----------------------------------------------------------------------------------- */

/* Same-kind positions checked before any look-up: --until before --from is a usage error. */
static bool until_before_from(const rp_pos *f, const rp_pos *u)
{
    if (f->kind == RP_POS_TIME && u->kind == RP_POS_TIME)
        return u->time_ms < f->time_ms;
    if (f->kind == RP_POS_ID && u->kind == RP_POS_ID) {
        int c = rp_id_cmp(u->ledger_id, u->entry_id, u->batch_index < 0 ? 0 : u->batch_index,
                          f->ledger_id, f->entry_id, f->batch_index < 0 ? 0 : f->batch_index);
        if (u->batch_index < 0 || f->batch_index < 0)
            c = rp_id_cmp(u->ledger_id, u->entry_id, 0, f->ledger_id, f->entry_id, 0);
        return c < 0;
    }
    return f->kind == RP_POS_LATEST && u->kind == RP_POS_EARLIEST;
}

static int parse_dest(rp_run *r, const char *to, char *err, size_t err_size)
{
    if (strcmp(to, "stdout") == 0 || strcmp(to, "-") == 0) {
        r->dest = RP_DEST_STDOUT;
        rp_fmt(r->dest_text, sizeof(r->dest_text), "stdout");
    } else if (strncmp(to, "file:", 5) == 0 && to[5] != '\0') {
        r->dest = RP_DEST_FILE;
        r->dest_arg = to + 5;
        rp_fmt(r->dest_text, sizeof(r->dest_text), "file %s", to + 5);
    } else if (strncmp(to, "topic:", 6) == 0 && to[6] != '\0') {
        r->dest = RP_DEST_TOPIC;
        r->dest_arg = to + 6;
        rp_fmt(r->dest_text, sizeof(r->dest_text), "topic %s", to + 6);
    } else {
        rp_fmt(err, err_size, "--to '%s' is not stdout, file:PATH or topic:NAME", to);
        return -1;
    }
    return 0;
}

/* Looks the topic up and resolves every partition's start and stop (blocking REST calls).
 * Returns MG_EXIT_OK to go on, else the exit status (the reason printed). */
static int prepare(rp_run *r, const char *topic, const rp_spec *from, const rp_spec *until)
{
    char tenant[RP_TOPIC_BYTES], ns[RP_TOPIC_BYTES], local[RP_TOPIC_BYTES], err[512];
    if (topic_split(topic, tenant, ns, local, sizeof(tenant), err, sizeof(err)) != 0) {
        fprintf(stderr, "magnetar replay: %s\n", err);
        return MG_EXIT_USAGE;
    }
    rp_fmt(r->topic, sizeof(r->topic), "persistent://%s/%s/%s", tenant, ns, local);
    if (r->dest == RP_DEST_TOPIC) {
        char dt[RP_TOPIC_BYTES], dn[RP_TOPIC_BYTES], dl[RP_TOPIC_BYTES];
        if (topic_split(r->dest_arg, dt, dn, dl, sizeof(dt), err, sizeof(err)) != 0) {
            fprintf(stderr, "magnetar replay: --to topic: %s\n", err);
            return MG_EXIT_USAGE;
        }
        if (strcmp(dt, tenant) == 0 && strcmp(dn, ns) == 0 && strcmp(dl, local) == 0) {
            fprintf(stderr, "magnetar replay: --to topic:%s is the topic being replayed\n",
                    r->dest_arg);
            return MG_EXIT_USAGE;
        }
    }
    char et[RP_TOPIC_BYTES * 3], en[RP_TOPIC_BYTES * 3], el[RP_TOPIC_BYTES * 3];
    if (!mg_rest_escape(tenant, et, sizeof(et)) || !mg_rest_escape(ns, en, sizeof(en)) ||
        !mg_rest_escape(local, el, sizeof(el))) {
        fprintf(stderr, "magnetar replay: the topic name '%s' is too long\n", topic);
        return MG_EXIT_USAGE;
    }
    char path[RP_PATH_BYTES + 64];
    rp_fmt(path, sizeof(path), "/admin/v2/persistent/%s/%s/%s/partitions", et, en, el);
    mg_rest_reply rep;
    if (rest_get(r, path, &rep) != 0)
        goto fail;
    if (rep.status != 200) {
        rest_fail(r, &rep, "the topic's partitions");
        mg_rest_reply_free(&rep);
        goto fail;
    }
    json_t *j = rest_json(r, &rep, "the topic's partitions");
    mg_rest_reply_free(&rep);
    if (j == NULL)
        goto fail;
    json_int_t n = json_integer_value(json_object_get(j, "partitions"));
    json_decref(j);
    if (n < 0 || n > RP_PARTITIONS_MAX) {
        rp_fmt(r->error, sizeof(r->error), "%s has %lld partitions, more than %d", r->topic,
               (long long)n, RP_PARTITIONS_MAX);
        goto fail;
    }
    r->partitioned = n > 0;
    r->part_count = n > 0 ? (size_t)n : 1;
    r->parts = mg_calloc(r->part_count, sizeof(*r->parts));
    if (r->parts == NULL) {
        rp_fmt(r->error, sizeof(r->error), "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->part_count; i++) {
        rp_part *p = &r->parts[i];
        p->run = r;
        p->index = r->partitioned ? (int32_t)i : -1;
        if (r->partitioned) {
            char pl[RP_TOPIC_BYTES + 32], epl[RP_TOPIC_BYTES * 3 + 96];
            rp_fmt(pl, sizeof(pl), "%s-partition-%zu", local, i);
            mg_rest_escape(pl, epl, sizeof(epl));
            rp_fmt(p->topic, sizeof(p->topic), "%s-partition-%zu", r->topic, i);
            rp_fmt(p->rest, sizeof(p->rest), "/admin/v2/persistent/%s/%s/%s", et, en, epl);
        } else {
            rp_fmt(p->topic, sizeof(p->topic), "%s", r->topic);
            rp_fmt(p->rest, sizeof(p->rest), "/admin/v2/persistent/%s/%s/%s", et, en, el);
        }
        if (part_info(r, p) != 0)
            goto fail;
        if (!r->partitioned && !p->exists) {
            rp_fmt(r->error, sizeof(r->error), "topic %s does not exist", r->topic);
            goto fail;
        }
    }
    /* The forms of the positions against what the topic is. */
    const rp_spec *specs[2] = { from, until };
    const char *names[2] = { "--from", "--until" };
    for (int s = 0; s < 2; s++) {
        const rp_spec *sp = specs[s];
        if (sp == NULL)
            continue;
        if (sp->multi && !r->partitioned) {
            fprintf(stderr,
                    "magnetar replay: %s names partitions, but %s is not partitioned: give one "
                    "position\n",
                    names[s], r->topic);
            return MG_EXIT_USAGE;
        }
        if (!sp->multi && r->partitioned && sp->one.kind == RP_POS_ID) {
            fprintf(stderr,
                    "magnetar replay: %s: %s has %zu partitions: give a message id per partition "
                    "(0=L:E[:B],1=L:E[:B],...)\n",
                    names[s], r->topic, r->part_count);
            return MG_EXIT_USAGE;
        }
        for (size_t i = 0; sp->multi && i < sp->count; i++) {
            if ((size_t)sp->parts[i] >= r->part_count) {
                fprintf(stderr, "magnetar replay: %s names partition %d, but %s has %zu\n",
                        names[s], (int)sp->parts[i], r->topic, r->part_count);
                return MG_EXIT_USAGE;
            }
        }
    }
    static const rp_pos earliest = { .kind = RP_POS_EARLIEST, .batch_index = -1 };
    for (size_t i = 0; i < r->part_count; i++) {
        rp_part *p = &r->parts[i];
        const rp_pos *fp = spec_for(from, p->index, &earliest);
        const rp_pos *up = until != NULL ? spec_for(until, p->index, NULL) : NULL;
        if (fp != &earliest && up != NULL && until_before_from(fp, up)) {
            char a[RP_POS_BYTES], b[RP_POS_BYTES];
            rp_pos_format(fp, a, sizeof(a));
            rp_pos_format(up, b, sizeof(b));
            fprintf(stderr, "magnetar replay: --until %s is before --from %s%s\n", b, a,
                    r->partitioned ? " (in a partition)" : "");
            return MG_EXIT_USAGE;
        }
        if (resolve_start(r, p, fp) != 0 || resolve_stop(r, p, up) != 0)
            goto fail;
        p->done = range_empty(p, r->o->follow);
        if (!p->done && (p->until.set || p->end.set)) {
            const rp_stop *s =
                p->until.set && (!p->end.set || rp_id_cmp(p->until.ledger_id, p->until.entry_id, 0,
                                                          p->end.ledger_id, p->end.entry_id, 0) < 0)
                    ? &p->until
                    : &p->end;
            int64_t sl, se;
            part_start_entry(p, &sl, &se);
            p->entries_total =
                part_entries_between(p, sl, se, s->ledger_id, s->entry_id - (s->inclusive ? 0 : 1));
        }
    }
    return MG_EXIT_OK;
fail:
    fprintf(stderr, "magnetar replay: %s\n", r->error);
    return MG_EXIT_FAILURE;
}

static int open_dest(rp_run *r)
{
    r->fd = -1;
    if (r->dest == RP_DEST_TOPIC)
        return 0;
    if (r->dest == RP_DEST_STDOUT) {
        r->fd = STDOUT_FILENO;
    } else {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (r->o->append ? O_APPEND : O_TRUNC);
        r->fd = open(r->dest_arg, flags, 0644);
        if (r->fd < 0) {
            rp_fmt(r->error, sizeof(r->error), "cannot open %s for writing: %s", r->dest_arg,
                   strerror(errno));
            return -1;
        }
        r->fd_owned = true;
    }
    struct stat st;
    if (fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode)) {
        r->fd_regular = true;
        off_t at = lseek(r->fd, 0, SEEK_END);
        r->fd_base = at >= 0 ? at : 0;
    }
    r->buf = mg_calloc(1, RP_SINK_BYTES);
    r->recs = mg_calloc(RP_SINK_RECORDS, sizeof(*r->recs));
    if (r->buf == NULL || r->recs == NULL) {
        rp_fmt(r->error, sizeof(r->error), "out of memory");
        return -1;
    }
    return 0;
}

static int run_loop(rp_run *r)
{
    uv_loop_init(&r->loop);
    uv_timer_init(&r->loop, &r->tick);
    uv_timer_init(&r->loop, &r->rate_timer);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->tick.data = r->rate_timer.data = r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    uv_timer_start(&r->tick, tick, RP_TICK_MS, RP_TICK_MS);
    r->flushed_ms = r->last_activity_ms = r->last_progress_ms = mg_clock_mono_ms();
    r->refill_us = mg_clock_mono_us();
    r->tokens = r->burst;
    bool any = false;
    for (size_t i = 0; i < r->part_count; i++)
        any |= !r->parts[i].done;
    if (!any) {
        rp_stop_run(r, r->o->until != NULL ? RP_WHY_UNTIL : RP_WHY_END, NULL);
    } else {
        pc_client_opts co = { .service_url = r->o->service_url,
                              .operation_timeout_ms = (uint32_t)r->o->timeout_ms };
        int rc = pc_client_create(&r->loop, &co, &r->client);
        if (rc != MG_OK) {
            rp_stop_run(r, RP_WHY_ERROR, "cannot create a client for %s: %s", r->o->service_url,
                        mg_strerror(rc));
        } else if (r->dest == RP_DEST_TOPIC) {
            pc_producer_opts po = {
                .topic = r->dest_arg,
                .batching = true,
                .max_pending_messages = RP_PENDING_MAX,
                .send_timeout_ms = (uint32_t)r->o->timeout_ms,
            };
            rc = pc_producer_create(r->client, &po, producer_created, r);
            if (rc != MG_OK)
                rp_stop_run(r, RP_WHY_ERROR, "cannot create a producer on %s: %s", r->dest_arg,
                            rc == MG_EINVAL ? "not a valid topic name" : mg_strerror(rc));
            else
                r->outstanding++;
        } else {
            subscribe_all(r);
        }
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    mg_tool_loop_close(&r->loop);
    return summary(r, true);
}

int mg_tool_replay(int argc, char **argv)
{
    rp_opts o;
    memset(&o, 0, sizeof(o));
    mg_config_result res;
    int exit_now = mg_tool_parse(&rp_spec_cmd, &o, argc, argv, &res);
    if (exit_now >= 0)
        return exit_now;
    if (o.from == NULL)
        return mg_tool_usage_error(&rp_spec_cmd, &o,
                                   "--from is required (earliest, latest, an "
                                   "id, a time, or P=POS,...)");
    int status = MG_EXIT_USAGE;
    rp_run *r = mg_calloc(1, sizeof(*r));
    rp_spec *from = mg_calloc(1, sizeof(*from));
    rp_spec *until = o.until != NULL ? mg_calloc(1, sizeof(*until)) : NULL;
    if (r == NULL || from == NULL || (o.until != NULL && until == NULL)) {
        status = MG_EXIT_FAILURE;
        goto out;
    }
    r->o = &o;
    r->fd = -1;
    r->format = o.format;
    r->tty = isatty(STDERR_FILENO) == 1;
    char err[768];
    int64_t now = mg_clock_wall_ms();
    if (rp_spec_parse(o.from, now, from, err, sizeof(err)) != 0) {
        fprintf(stderr, "magnetar replay: --from: %s\n", err);
        goto out;
    }
    if (until != NULL && rp_spec_parse(o.until, now, until, err, sizeof(err)) != 0) {
        fprintf(stderr, "magnetar replay: --until: %s\n", err);
        goto out;
    }
    if (until != NULL) {
        bool bad = !until->multi ? until->one.kind == RP_POS_EARLIEST : false;
        for (size_t i = 0; until->multi && i < until->count; i++)
            bad |= until->pos[i].kind == RP_POS_EARLIEST;
        if (bad) {
            fprintf(stderr, "magnetar replay: --until earliest would replay nothing: give an id, "
                            "a time or latest\n");
            goto out;
        }
        if (!from->multi && !until->multi && until_before_from(&from->one, &until->one)) {
            char a[RP_POS_BYTES], b[RP_POS_BYTES];
            rp_pos_format(&from->one, a, sizeof(a));
            rp_pos_format(&until->one, b, sizeof(b));
            fprintf(stderr, "magnetar replay: --until %s is before --from %s\n", b, a);
            goto out;
        }
    }
    if (o.rate != NULL) {
        char *end = NULL;
        errno = 0;
        double rate = strtod(o.rate, &end);
        if (end == o.rate || *end != '\0' || errno != 0 || !isfinite(rate) || rate <= 0 ||
            rate > 1e9) {
            fprintf(stderr,
                    "magnetar replay: --rate '%s' is not a number of messages per second "
                    "above 0\n",
                    o.rate);
            goto out;
        }
        r->rate = rate;
        r->burst = RP_BURST(rate);
    }
    if (parse_dest(r, o.to, err, sizeof(err)) != 0) {
        fprintf(stderr, "magnetar replay: %s\n", err);
        goto out;
    }
    if (r->dest == RP_DEST_TOPIC && o.format == RP_FORMAT_RAW)
        fprintf(stderr, "magnetar replay: note: --format raw has no effect with --to topic:\n");
    signal(SIGPIPE, SIG_IGN);
    r->start_ms = mg_clock_mono_ms();
    status = prepare(r, res.positional[0], from, until);
    if (status == MG_EXIT_FAILURE) {
        r->why = RP_WHY_ERROR;
        status = summary(r, false);
    }
    if (status != MG_EXIT_OK)
        goto out;
    if (open_dest(r) != 0) {
        fprintf(stderr, "magnetar replay: %s\n", r->error);
        r->why = RP_WHY_ERROR;
        status = summary(r, false);
        goto out;
    }
    r->start_ms = mg_clock_mono_ms();
    status = run_loop(r);
out:
    if (r != NULL) {
        if (r->fd >= 0 && r->fd_owned)
            close(r->fd);
        mg_free(r->buf);
        mg_free(r->recs);
        mg_free(r->line);
        mg_free(r->parts);
    }
    mg_free(r);
    mg_free(from);
    mg_free(until);
    mg_config_free(&rp_spec_cmd, &o);
    return status;
}
