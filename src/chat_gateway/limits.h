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

/* Push protocol and Job worker (piece: job, src/chat_gateway/push.c, job.c, topics.c). The
 * relations between these are checked after the section. */
#include "client/limits.h"
/* Bytes of the big-endian length in front of every push protocol frame. */
#define CG_PUSH_LENGTH_BYTES           4u
/* The largest frame (length prefix included) either side writes or accepts. A push carries at
 * least one message whole, and a Pulsar message may be as large as PC_MESSAGE_BYTES_MAX (15 MiB)
 * on a Magnetar broker; 16 MiB holds such a message with its push around it, and keeps a
 * hostile length from making a link buffer gigabytes. The Job splits merged pushes to stay under
 * it, and drops (counts as malformed) a single message that cannot fit. */
#define CG_PUSH_FRAME_BYTES_MAX        (16u * 1024 * 1024)
/* What a push adds around its messages' bodies, at most: per message its position, op, publish
 * time and field tags (under 64 bytes); per push its room or targets and its topic (bounded by
 * the target limits below, checked at the end). The Job splits a merged push before these and
 * the bodies reach CG_PUSH_FRAME_BYTES_MAX. */
#define CG_PUSH_MESSAGE_OVERHEAD_BYTES 64u
#define CG_PUSH_HEADER_BYTES_MAX       (512u * 1024)
/* A chat topic's name: CG_CHAT_TOPIC_PREFIX (33 bytes) and a u32 in decimal fit in 48. */
#define CG_CHAT_TOPIC_NAME_BYTES_MAX   48u
/* Chat topics one Job consumes (--chat-topics): one consumer each. GOIM spreads rooms over a
 * few Kafka partitions; 1024 is far beyond any deployment and bounds the consumer table. */
#define CG_CHAT_TOPICS_MAX             1024u
#define CG_CHAT_TOPICS_DEFAULT         4u
/* Room merging. GOIM's Job pushes a room's messages when 20 are waiting (its room Batch
 * setting) or after a short signal delay; Magnetar waits 50 ms by default, well under what a
 * reader of a chat notices. A merged push becomes one op 9 batch at the gateway, so it holds at
 * most CG_BATCH_PACKETS_MAX messages; the delay is bounded so a setting cannot hold messages for
 * minutes. */
#define CG_JOB_MERGE_MESSAGES_DEFAULT  20u
#define CG_JOB_MERGE_MS_DEFAULT        50u
#define CG_JOB_MERGE_MS_MAX            10000u
/* Flow permits of each chat consumer (its receiver queue): Pulsar's default, 1000. */
#define CG_JOB_RECEIVER_QUEUE_MESSAGES 1000u
/* Messages a Job holds unacknowledged (received, merged, pushed, waiting for PushAcks) before it
 * pauses its consumers; they resume at half. It bounds the Job's memory when a gateway is slow
 * to acknowledge: the receiver queues alone do not, since the client replenishes permits as
 * messages are handed over, not as they are acknowledged. */
#define CG_JOB_UNACKED_MESSAGES_MAX    20000u
/* Gateways one Job follows (one TCP link each). GOIM deployments run tens of comets. */
#define CG_JOB_GATEWAYS_MAX            1024u
/* Rooms the Job remembers per gateway. Past it the Job stops tracking that gateway's rooms and
 * sends it every room push (the gateway drops those of rooms it does not hold): more traffic,
 * never a lost message. A million rooms is a large gateway's worth. */
#define CG_JOB_GATEWAY_ROOMS_MAX       (1u << 20)
/* Bytes of a room id, a key, a gateway id, a "host:port" address, a Job's name. Room ids are
 * "type://id" and keys are connection ids in GOIM: tens of bytes. */
#define CG_ROOM_BYTES_MAX              256u
#define CG_GATEWAY_ID_BYTES_MAX        128u
#define CG_ADDR_BYTES_MAX              280u
#define CG_JOB_NAME_BYTES_MAX          128u
/* Keys or member ids one message may name (chat.keys, chat.mids): GOIM's push API takes lists
 * of a few hundred; more is refused as malformed. */
#define CG_PUSH_TARGETS_MAX            1024u
/* Link keep-alive (the protocol's rule): Ping after 10 s without a frame from the peer; a link
 * silent for 30 s is dead and reconnected. A connect that has not completed in 5 s is retried. */
#define CG_PUSH_PING_IDLE_MS           10000u
#define CG_PUSH_DEAD_MS                30000u
#define CG_JOB_CONNECT_TIMEOUT_MS      5000u
/* Reconnect backoff of a gateway link: doubling from 100 ms to 5 s, reset when the link is
 * ready. A gateway restarting comes back within seconds; its registration goes when it dies. */
#define CG_JOB_BACKOFF_MS_MIN          100u
#define CG_JOB_BACKOFF_MS_MAX          5000u
/* Retry delay after the gateway registry could not be read (the metadata session is down). */
#define CG_JOB_REGISTRY_RETRY_MS       1000u
/* The Job's housekeeping tick: reconnects (the smallest backoff is one tick), connect timeouts,
 * pings and dead links, retries of the registry and of subscriptions. Ten a second costs a walk
 * over at most CG_JOB_GATEWAYS_MAX gateways. */
#define CG_JOB_TICK_MS                 100u
/* A link reads into a buffer of this size. */
#define CG_JOB_READ_BUF_BYTES          (64u * 1024)

_Static_assert(CG_PUSH_FRAME_BYTES_MAX <= 0xFFFFFFFFu - CG_PUSH_LENGTH_BYTES,
               "the length prefix is a u32");
_Static_assert((unsigned long long)PC_MESSAGE_BYTES_MAX + CG_PUSH_HEADER_BYTES_MAX +
                       CG_PUSH_MESSAGE_OVERHEAD_BYTES <=
                   CG_PUSH_FRAME_BYTES_MAX,
               "a push must hold the largest message a broker stores");
_Static_assert((unsigned long long)CG_PUSH_TARGETS_MAX *(CG_ROOM_BYTES_MAX + 4) +
                       CG_ROOM_BYTES_MAX + CG_CHAT_TOPIC_NAME_BYTES_MAX <=
                   CG_PUSH_HEADER_BYTES_MAX,
               "a push's targets, room and topic fit its header allowance");
_Static_assert(CG_JOB_MERGE_MESSAGES_DEFAULT <= CG_BATCH_PACKETS_MAX,
               "a merged push becomes one op 9 batch");
_Static_assert(CG_PUSH_PING_IDLE_MS < CG_PUSH_DEAD_MS, "ping before the link is declared dead");
_Static_assert(CG_JOB_BACKOFF_MS_MIN <= CG_JOB_BACKOFF_MS_MAX, "backoff bounds in order");
_Static_assert(CG_JOB_UNACKED_MESSAGES_MAX >= 2 * CG_BATCH_PACKETS_MAX,
               "the pause threshold must allow full merged pushes to form");
_Static_assert(CG_CHAT_TOPIC_NAME_BYTES_MAX >= sizeof("persistent://public/default/chat-") + 10,
               "a chat topic name with any u32 index fits");
_Static_assert(CG_CHAT_TOPICS_DEFAULT <= CG_CHAT_TOPICS_MAX, "the default topic count is allowed");

#endif
