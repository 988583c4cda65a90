/*
 * `magnetar replay` (replay.c): the positions it reads and prints (replay_pos.c). A position
 * names where a replay starts or stops, in one partition or, with the per-partition form, in
 * each partition of a partitioned topic:
 *
 *   earliest | latest                 the first message kept, the end when the replay began
 *   L:E[:B]                           a message id: ledger, entry, batch index (-1 or absent:
 *                                     the whole entry; as --from, its first message)
 *   after:L:E[:B]                     the message after that id (the form resume lines use)
 *   2026-12-07T10:00:00Z              an RFC 3339 time (offsets, fractional seconds), and
 *   -2h | -30m | -90s | -500ms | -1d  a time relative to now
 *   P=POS,P=POS,...                   one of the above per partition P (0-based)
 */
#ifndef MG_TOOLS_REPLAY_H
#define MG_TOOLS_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Partitions a per-partition position may name: the broker's own limit (broker/limits.h
 * BR_ADMIN_PARTITIONS_MAX). */
#define RP_PARTITIONS_MAX 1024
/* A formatted position: "P=after:L:E:B" with 64-bit numbers fits in 80 bytes. */
#define RP_POS_BYTES      80

typedef enum rp_pos_kind {
    RP_POS_EARLIEST,
    RP_POS_LATEST,
    RP_POS_ID,
    RP_POS_TIME,
} rp_pos_kind;

typedef struct rp_pos {
    rp_pos_kind kind;
    int64_t ledger_id, entry_id; /* RP_POS_ID */
    int32_t batch_index;         /* RP_POS_ID: -1 = the whole entry */
    bool after;                  /* RP_POS_ID: the message after the id (exclusive) */
    int64_t time_ms;             /* RP_POS_TIME: milliseconds since the epoch */
} rp_pos;

/* A --from or --until value: one position, or one per partition named. */
typedef struct rp_spec {
    bool multi;
    rp_pos one; /* !multi */
    size_t count;
    int32_t parts[RP_PARTITIONS_MAX]; /* multi: partition of pos[i], each at most once */
    rp_pos pos[RP_PARTITIONS_MAX];
} rp_spec;

/* Parses s into *out; now_ms anchors relative times. Returns 0, or -1 with the reason (naming
 * what was not understood) in err. */
int rp_spec_parse(const char *s, int64_t now_ms, rp_spec *out, char *err, size_t err_size);

/* Parses an RFC 3339 time ("2026-12-07T10:00:00.250+01:00") or a relative one ("-2h") into
 * milliseconds since the epoch. Returns 0, or -1 when s is neither. */
int rp_time_parse(const char *s, int64_t now_ms, int64_t *ms_out);

/* Writes p as the text rp_spec_parse reads back ("earliest", "after:12:5:-1", an RFC 3339 UTC
 * time with milliseconds). */
void rp_pos_format(const rp_pos *p, char *dst, size_t cap);

/* Orders two ids (ledger, entry, then batch index with -1 first). */
int rp_id_cmp(int64_t l1, int64_t e1, int32_t b1, int64_t l2, int64_t e2, int32_t b2);

#endif
