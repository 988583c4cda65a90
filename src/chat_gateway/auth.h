/*
 * What a chat client says when it joins and moves: the op 7 auth body in both dialects the
 * gateway speaks, the op 12 (change room) and op 14/16 (subscribe, unsubscribe) bodies, the
 * positions a reconnecting client resumes from, and the op 8 reply bodies. Like the packet codec
 * (packet.h) it keeps no state between calls; docs/chat_gateway.md is the map.
 *
 * AUTH DIALECTS (REFERENCE.md §4)
 *
 *   GOIM      {"mid":123,"key":"abc","room_id":"live://1000","platform":"web","accepts":[1000]}
 *   Bilibili  {"uid":0,"roomid":1000,"protover":3,"platform":"web","type":2,"key":"..."}
 *
 *   A body with "room_id" is GOIM, one with "roomid" Bilibili; one with neither or both is
 *   refused. Bilibili's "uid" is read as the mid, its "roomid" N (an integer or a decimal string,
 *   > 0) becomes the room "live://N", and its "protover" (0..3) says how the connection's
 *   batches are compressed (compress.h). Either dialect may add the extension fields
 *   "positions":true (send each message's position) and "last_id":"L:E:B" (resume after that
 *   position; implies positions). Unknown fields (Bilibili's "type", "buvid", ...) are ignored.
 *
 * ROOM IDS
 *   "type://id": type is 1..CG_ROOM_TYPE_BYTES_MAX of [a-z0-9_-]; id is 1..CG_ROOM_NAME_BYTES_MAX
 *   printable ASCII characters other than '/', ',', '"' and '\''. A GOIM room id (and an op 12
 *   body, trimmed) is kept as sent; a Bilibili roomid is written "live://N" in plain decimal.
 *
 * POSITIONS
 *   "ledger:entry:batch" in decimal, the position of a message in the log: ledger_id and
 *   entry_id >= 0, batch_index >= 0 or -1 (not in a batch). "ledger:entry" means batch -1 and is
 *   how such a position is written. Positions order by ledger, then entry, then batch.
 *
 * REFUSALS
 *   Every parser refuses bad input with MG_EPROTO and points *why at a short static string
 *   saying what was wrong ("no room (room_id or roomid)", "key too long", ...). The gateway
 *   sends that text back in {"code":-400,"message":...} (cg_auth_reply_refusal) and logs it.
 *
 * THREADING: every function is reentrant and may run on any thread; memory passed in belongs to
 * the caller for the duration of the call. Results are plain values without pointers to heap
 * memory, so a connection copies them as they are.
 */
#ifndef MG_CHAT_GATEWAY_AUTH_H
#define MG_CHAT_GATEWAY_AUTH_H

#include "chat_gateway/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The op 8 reply codes: accepted, and refused for a malformed body. */
#define CG_AUTH_CODE_OK      0
#define CG_AUTH_CODE_REFUSED (-400)

/* Which auth body a client sent; a connection answers in the same dialect. */
typedef enum cg_dialect {
    CG_DIALECT_GOIM = 1,     /* "room_id": batches go out as op 9 */
    CG_DIALECT_BILIBILI = 2, /* "roomid": batches go out as op 5, compressed per protover */
} cg_dialect;

/* A room id, NUL-terminated: text[0, len) is "type://id", the type being text[0, type_len). */
typedef struct cg_room {
    char text[CG_ROOM_BYTES_MAX + 1];
    uint8_t len;
    uint8_t type_len;
} cg_room;

/* A list of ops (an auth body's accepts, an op 14/16 body), in the order sent. */
typedef struct cg_ops {
    uint32_t ops[CG_ACCEPT_OPS_MAX];
    uint32_t count;
} cg_ops;

/* The position of a message in the log. */
typedef struct cg_position {
    int64_t ledger_id;
    int64_t entry_id;
    int32_t batch_index; /* -1 when the message is not in a batch */
} cg_position;

/* A parsed auth body. Strings are NUL-terminated and never NULL (empty when absent). */
typedef struct cg_auth {
    cg_dialect dialect;
    int64_t mid; /* GOIM "mid", Bilibili "uid"; 0 when absent */
    char key[CG_AUTH_KEY_BYTES_MAX + 1];
    uint16_t key_len;
    cg_room room;
    char platform[CG_AUTH_PLATFORM_BYTES_MAX + 1];
    uint8_t platform_len;
    uint8_t protover; /* Bilibili 0..3 (CG_VER_*; 0 when absent); GOIM 0 */
    cg_ops accepts;   /* count 0 when absent */
    bool positions;   /* "positions":true, or a last_id */
    bool has_last_id; /* last_id holds the client's "last_id" */
    cg_position last_id;
} cg_auth;

/* --- Bodies a client sends ------------------------------------------------------------------- */

/* Parses the op 7 body body[0, len) (JSON in either dialect, at most CG_AUTH_BODY_BYTES_MAX
 * bytes; body may be NULL when len is 0) into *out. The JSON is read by jansson with duplicate
 * keys refused. Returns MG_OK, or MG_EPROTO with *why set to what was wrong (out is then
 * undefined), MG_ENOMEM when the parser could not allocate. why may be NULL. */
int cg_auth_parse(const uint8_t *body, size_t len, cg_auth *out, const char **why);

/* Parses a room id: text[0, len) with surrounding whitespace (space, tab, CR, LF) trimmed, as in
 * an op 12 body, following the rules of the header comment. Returns MG_OK, or MG_EPROTO with
 * *why set (why may be NULL). */
int cg_room_parse(const uint8_t *text, size_t len, cg_room *out, const char **why);

/* Whether type[0, len) is a room type (1..CG_ROOM_TYPE_BYTES_MAX of [a-z0-9_-]) and name[0, len)
 * a room id's id part (1..CG_ROOM_NAME_BYTES_MAX printable ASCII characters other than '/', ',',
 * '"' and '\''): the two halves of "type://id", for callers that get them apart (the push API's
 * query). Any thread. */
bool cg_room_type_valid(const char *type, size_t len);
bool cg_room_name_valid(const char *name, size_t len);

/* Parses an op 14/16 body: decimal u32 ops separated by commas, each with optional surrounding
 * whitespace, at most CG_ACCEPT_OPS_MAX of them ("1000,1001"). Returns MG_OK, or MG_EPROTO with
 * *why set (an empty body or item, something other than digits, a value over u32, too many
 * ops). why may be NULL. */
int cg_ops_parse(const uint8_t *text, size_t len, cg_ops *out, const char **why);

/* --- Positions ------------------------------------------------------------------------------- */

/* Parses "L:E:B" or "L:E" (batch -1) from text[0, len): decimal digits only, no sign except a
 * batch of exactly "-1", no value over its type. Returns MG_OK, MG_EPROTO (nothing written). */
int cg_position_parse(const char *text, size_t len, cg_position *out);

/* Writes pos as "L:E:B", or "L:E" when batch_index is -1, with a NUL, into dst, which must hold
 * CG_POSITION_TEXT_BYTES (asserted). pos must be valid (asserted). Returns the length written,
 * NUL excluded. */
size_t cg_position_format(const cg_position *pos, char *dst, size_t dst_capacity);

/* Orders two positions: < 0 when a comes before b, 0 when equal, > 0 after. */
int cg_position_cmp(const cg_position *a, const cg_position *b);

/* --- Op 8 reply bodies ----------------------------------------------------------------------- */

/* The reply bodies below are written into dst, which has room for dst_capacity bytes
 * (CG_AUTH_REPLY_BODY_BYTES holds any of them), without a NUL; *written is set to their length.
 * They return MG_OK, or MG_EINVAL when dst is too small (nothing useful is written). */

/* {"code":0}: the connection is in its room. */
int cg_auth_reply_ok(char *dst, size_t dst_capacity, size_t *written);

/* {"code":0,"recovered":true} or {"code":0,"recovered":false}: the reply to an auth with a
 * last_id, saying whether the messages after it could be replayed from the log. */
int cg_auth_reply_recovered(bool recovered, char *dst, size_t dst_capacity, size_t *written);

/* {"code":-400,"message":"<why>"} with why (UTF-8) JSON-escaped and every non-ASCII character
 * written as \uXXXX. Returns MG_OK, MG_EINVAL (dst too small, or why not UTF-8), MG_ENOMEM. */
int cg_auth_reply_refusal(const char *why, char *dst, size_t dst_capacity, size_t *written);

#endif
