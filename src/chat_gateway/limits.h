/*
 * The fixed limits of the chat gateway (src/chat_gateway), each with the reason for its value;
 * relations between them are checked at compile time at the end (docs/common.md, "Limits").
 */
#ifndef MG_CHAT_GATEWAY_LIMITS_H
#define MG_CHAT_GATEWAY_LIMITS_H

/* GOIM packet codec (piece: packet, src/chat_gateway). */
/* The fixed header: packLen u32, headerLen u16, ver u16, op u32, seq u32. GOIM and Bilibili
 * both write headerLen = 16 and nothing else; a packet with another value is refused. */
#define CG_PACKET_HEADER_BYTES       16u
/* The body bound a connection applies to what its client sends when nothing else is configured:
 * GOIM's comet refuses a body over 4096 bytes (REFERENCE.md §4). Auth, heartbeats and a room
 * message sent by a client are all far smaller. */
#define CG_PACKET_BODY_BYTES_DEFAULT 4096u
/* Absolute bound on a body the codec builds or accepts, whatever the configured bound (values
 * above it are treated as it): packLen is a u32 read from the network, and the largest body the
 * gateway itself writes is an op 9 batch of CG_BATCH_PACKETS_MAX packets of a default-bounded
 * body each (checked below), about 4.1 MiB. 8 MiB leaves room for that and keeps a hostile
 * packLen from making a connection buffer gigabytes. */
#define CG_PACKET_BODY_BYTES_ABS_MAX (8u * 1024 * 1024)
/* Packets in one op 9 raw batch, split or built. GOIM's Job merges at most 20 messages per room
 * before pushing; 1024 leaves room for a larger merge setting while bounding the split loop and
 * any per-packet array a caller sizes from it. */
#define CG_BATCH_PACKETS_MAX         1024u

/* Relations between the limits above, checked at compile time. */
_Static_assert(CG_PACKET_BODY_BYTES_DEFAULT <= CG_PACKET_BODY_BYTES_ABS_MAX,
               "the default body bound must be within the absolute one");
_Static_assert((unsigned long long)CG_BATCH_PACKETS_MAX *(CG_PACKET_HEADER_BYTES +
                                                          CG_PACKET_BODY_BYTES_DEFAULT) <=
                   CG_PACKET_BODY_BYTES_ABS_MAX,
               "a full batch of default-bounded packets must fit one op 9 body");
_Static_assert((unsigned long long)CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_ABS_MAX <=
                   0xFFFFFFFFull,
               "packLen is a u32");
_Static_assert(CG_BATCH_PACKETS_MAX *CG_PACKET_HEADER_BYTES <= CG_PACKET_BODY_BYTES_ABS_MAX,
               "a batch of empty packets must fit one op 9 body");

/* Auth bodies, room ids, op lists and positions (piece: auth, src/chat_gateway). */
/* Bytes of an op 7 auth body handed to the JSON parser: GOIM's body bound (4096, REFERENCE.md
 * §4). A real Bilibili web auth body, with its ~200-character key, is about 300 bytes and a GOIM
 * one about 100; the bound also caps what the parser can allocate and how deep it can nest. */
#define CG_AUTH_BODY_BYTES_MAX     4096u
/* Bytes of an auth key. GOIM's keys are UUIDs (36 characters); Bilibili's web client sends the
 * token of its getDanmuInfo call, about 200 characters. 512 leaves room for a longer token while
 * keeping the key a fixed field of every connection. */
#define CG_AUTH_KEY_BYTES_MAX      512u
/* Bytes of a client's platform name ("web", "android", "ios", "pc_link"): a label for logs and
 * metrics, never longer than a word. */
#define CG_AUTH_PLATFORM_BYTES_MAX 32u
/* Bytes of a room type, the part before "://": a short lowercase tag ("live", "chat", "test");
 * GOIM writes "live". 16 keeps a room id short enough to be a hash key and a log field. */
#define CG_ROOM_TYPE_BYTES_MAX     16u
/* Bytes of a room's id, the part after "://": GOIM's and Bilibili's ids are decimal numbers (at
 * most 19 digits as an int64); 64 also takes a UUID or a slug. */
#define CG_ROOM_ID_BYTES_MAX       64u
/* Bytes of a whole room id, "type://id". */
#define CG_ROOM_BYTES_MAX          (CG_ROOM_TYPE_BYTES_MAX + 3u + CG_ROOM_ID_BYTES_MAX)
/* Ops in an auth body's accepts or an op 14/16 body. A client accepts a handful of message ops
 * (GOIM's examples list three); 64 bounds the parse loop and the fixed array in every
 * connection. */
#define CG_ACCEPT_OPS_MAX          64u
/* Bytes of a position's text "ledger:entry:batch" with its NUL: two int64 of at most 19 digits,
 * an int32 of at most 11 characters ("-1" included) and two colons need 52; 64 rounds up. */
#define CG_POSITION_TEXT_BYTES     64u
/* Bytes of an op 8 reply body the auth helpers write, the largest being the refusal
 * {"code":-400,"message":"..."}: the messages are short static strings (under 64 bytes), so
 * 256 holds any of them, even escaped. */
#define CG_AUTH_REPLY_BODY_BYTES   256u

_Static_assert(CG_AUTH_BODY_BYTES_MAX <= CG_PACKET_BODY_BYTES_DEFAULT,
               "an auth body must fit a default-bounded packet");
_Static_assert(CG_AUTH_KEY_BYTES_MAX < CG_AUTH_BODY_BYTES_MAX,
               "a key of the largest length must fit an auth body");
_Static_assert(CG_ROOM_BYTES_MAX < 256u, "a room id's length fits a uint8_t");
_Static_assert(CG_POSITION_TEXT_BYTES >= 19u + 1u + 19u + 1u + 11u + 1u,
               "the text of any position fits the position buffer");

#endif
