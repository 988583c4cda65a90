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

/* The chat HTTP API (piece: api, src/chat_gateway/api.c) and the topics it produces to. */
#include "metadata/limits.h" /* MD_CLIENT_INFLIGHT_MAX */

/* Chat topics when the configuration does not say: chat-0 .. chat-3. A topic serves a group of
 * rooms (the hash of the room id picks it), so a handful is enough for one broker and keeps the
 * Job workers' subscriptions few. */
#define CG_CHAT_TOPICS_DEFAULT        4u
/* Chat topics at most: each may hold a lazily created producer of the API and a subscription of
 * every Job worker; the producer table is sized from it. */
#define CG_CHAT_TOPICS_MAX            1024u
/* Bytes of the type of a room id `type://id` ([a-z0-9_-]), and of its id part (printable ASCII
 * without spaces, '/', ',' or quotes): GOIM's room ids are short words such as live://1000. */
#define CG_ROOM_TYPE_BYTES_MAX        16u
#define CG_ROOM_NAME_BYTES_MAX        64u
/* A whole room id: type, "://" and the id part. */
#define CG_ROOM_ID_BYTES_MAX          (CG_ROOM_TYPE_BYTES_MAX + 3u + CG_ROOM_NAME_BYTES_MAX)
/* Bytes of one connection key in a key push. GOIM's keys are UUIDs (36 bytes); 128 leaves room
 * for other schemes while bounding the chat.keys property. */
#define CG_KEY_BYTES_MAX              128u
/* Keys, and mids, in one push. GOIM's logic takes the list from the query string without a
 * bound; 1000 keeps the chat.keys property (at most 129 KiB) far below a Pulsar message's
 * metadata bound and a gateway's per-message lookup short. */
#define CG_API_PUSH_TARGETS_MAX       1000u
/* Pushes held while the producer of their topic is being created; past it a push answers -500
 * "busy". Creation takes one lookup and one round trip; 1024 covers a burst at start-up and
 * bounds what a broker that does not answer can pile up. */
#define CG_API_PRODUCER_WAITERS_MAX   1024u
/* Pushes the API's producers hold unacknowledged, per topic (pc_producer_opts
 * max_pending_messages, fail-fast: past it a push answers -500 "busy" instead of waiting). */
#define CG_API_PRODUCER_PENDING_MAX   1000u
/* Online requests being answered at once: each reads every gateway's node one at a time, so
 * this bounds the metadata operations the API has in flight; past it: -500 "busy". */
#define CG_API_ONLINE_REQUESTS_MAX    16u
/* Gateway nodes under /chat/online read for one online answer; nodes past it are left out and
 * counted as skipped. A cluster runs tens of gateways. */
#define CG_API_ONLINE_GATEWAYS_MAX    256u
/* Distinct rooms summed for one online answer; rooms past it are left out (and counted). A
 * gateway writes at most this many into its node. */
#define CG_API_ONLINE_ROOMS_MAX       65536u
/* Rooms named in one GET /goim/online/room, and the largest limit of GET /goim/online/top. */
#define CG_API_ONLINE_QUERY_ROOMS_MAX 100u
#define CG_API_ONLINE_TOP_MAX         1000u
/* A gateway rewrites its node every 10 s; a node not rewritten for three periods belongs to a
 * gateway that is stuck or gone (its ephemeral node outlives it until the session expires). */
#define CG_ONLINE_WRITE_INTERVAL_MS   10000u
#define CG_ONLINE_STALE_MS            (3u * CG_ONLINE_WRITE_INTERVAL_MS)

_Static_assert(CG_CHAT_TOPICS_DEFAULT >= 1 && CG_CHAT_TOPICS_DEFAULT <= CG_CHAT_TOPICS_MAX,
               "the default topic count must be a valid count");
_Static_assert(CG_API_ONLINE_REQUESTS_MAX <= MD_CLIENT_INFLIGHT_MAX,
               "one metadata read per online request must stay within MD_CLIENT_INFLIGHT_MAX");
_Static_assert((unsigned long long)CG_API_PUSH_TARGETS_MAX *(CG_KEY_BYTES_MAX + 1) <= 256 * 1024,
               "a chat.keys property must stay small next to a message");
_Static_assert(CG_ONLINE_STALE_MS > CG_ONLINE_WRITE_INTERVAL_MS,
               "a live gateway's node must never look stale");

#endif
