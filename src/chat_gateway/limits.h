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

/* The gateway server (piece: gateway, src/chat_gateway/gateway.c). */
/* Auth must be the first packet and arrive this soon after the connection opens (WebSocket: after
 * the handshake): GOIM's comet waits 5 s. A socket that never speaks holds a descriptor and a
 * connection's memory, so it must not wait longer. */
#define CG_AUTH_TIMEOUT_MS_DEFAULT    5000u
/* A live connection that sends nothing for this long is closed. Clients heartbeat every 30 s
 * (REFERENCE.md §4) and Bilibili's servers drop a client after 60-70 s of silence; three missed
 * heartbeats is the point where the client is gone, not late. */
#define CG_IDLE_TIMEOUT_MS_DEFAULT    90000u
/* Frames a connection may have waiting to be written. At 20 merged batches a second per room
 * (Job merge window 50 ms) this is most of a second of backlog; past it the oldest chat frame
 * not yet handed to the kernel is dropped (the soft limit). 16 pointers is 128 bytes, paid by
 * every connection, idle or not. */
#define CG_QUEUE_SLOTS                16u
/* Bytes a connection may have queued (written to no socket yet) before the oldest chat frames
 * are dropped: the soft limit, as Redis's client-output-buffer-limit for pub/sub clients. 256 KiB
 * is seconds of a busy room's traffic; the kernel's socket buffer holds more before it. */
#define CG_QUEUE_SOFT_BYTES_DEFAULT   (256u * 1024)
/* Past this many queued bytes that cannot be dropped (replies, the frame being written) the
 * connection is closed: the hard limit. */
#define CG_QUEUE_HARD_BYTES_DEFAULT   (1024u * 1024)
/* Connections are kept in buckets sharded by a hash of their key, as GOIM's comet does (32
 * buckets by default); a bucket owns its key index and its list of connections. */
#define CG_BUCKETS_DEFAULT            32u
#define CG_BUCKETS_MAX                4096u
/* Client connections one gateway holds. The descriptor limit bounds it first (mg_fd_limit); this
 * bounds the tables sized from it. GOIM's published test held 1 M on one machine. */
#define CG_CONNECTIONS_MAX            (4u * 1024 * 1024)
/* Bytes one read takes from a socket: one buffer for the whole loop (reads are handled at once),
 * so it costs no connection anything; a connection keeps only the bytes of an incomplete packet
 * or frame, copied out. */
#define CG_READ_BUFFER_BYTES          (64u * 1024)
/* How often a gateway rewrites its online counts in the metadata store: GOIM's comet reports
 * its rooms' counts every 10 s. */
#define CG_ONLINE_INTERVAL_MS_DEFAULT 10000u
/* Rooms written in one online report: a metadata value is bounded (ZooKeeper's jute.maxbuffer is
 * 1 MiB), and ~40 bytes a room keeps 16 Ki rooms under it. The largest rooms are kept. */
#define CG_ONLINE_ROOMS_MAX           16384u
/* Job links one gateway accepts: a handful of Job workers per cluster, one link each. */
#define CG_PUSH_LINKS_MAX             256u
/* Room pushes of one read from a Job's link that are fanned out together when they are for the
 * same room (fanout.c): messages in one merged batch. A gateway behind on its fan-out finds a
 * busy room's pushes waiting and writes them to each member at once (the cost of a fan-out is
 * per write, not per message); 256 messages with their position packets is 512 packets, within
 * an op 9 batch's CG_BATCH_PACKETS_MAX for every client. */
#define CG_FANOUT_MERGE_MESSAGES_MAX  256u
/* Frames handled together from one read of a Job's link: a read holds at most a Job's window of
 * pushes (CG_JOB_LINK_WINDOW) and a few pings; more are handled in further rounds. */
#define CG_LINK_READ_FRAMES_MAX       128u
/* The op of a position packet (a Magnetar extension: GOIM's ops end at 17). */
#define CG_OP_POSITION                20u
/* Resume (resume.c). Replays running at once: each holds a reader (a non-durable subscription)
 * on the broker; a reconnect storm after a gateway restart must not open thousands. Past it a
 * client is told "recovered":false at once and goes live. */
#define CG_RESUMES_MAX                256u
/* A replay that has not reached the end it asked for by then is abandoned (the connection is
 * closed; the client reconnects with the same last_id): the log is on disk, and a catch-up read
 * of a room's topic takes seconds, not minutes. */
#define CG_RESUME_TIMEOUT_MS          60000u
/* Live messages a resuming connection holds (copied) until its replay reaches them: seconds of
 * a busy room. */
#define CG_RESUME_HOLD_BYTES_MAX      (4u * 1024 * 1024)

_Static_assert(2u * CG_FANOUT_MERGE_MESSAGES_MAX <= CG_BATCH_PACKETS_MAX,
               "a merged batch with positions fits an op 9 batch");
_Static_assert(CG_QUEUE_SOFT_BYTES_DEFAULT < CG_QUEUE_HARD_BYTES_DEFAULT,
               "the soft queue limit drops before the hard one disconnects");
_Static_assert(CG_QUEUE_SLOTS >= 2 && CG_QUEUE_SLOTS <= 64,
               "a queue needs room for a frame being written and one waiting; slots are a bitmask");

/* WebSocket engine (piece: ws, src/chat_gateway/ws.h, RFC 6455). */
/* Bytes of an HTTP Upgrade request, request line and headers up to the blank line. A browser's
 * request with cookies is 0.5 to 2 KiB; 8 KiB is nginx's default for one header line
 * (large_client_header_buffers) and bounds what a connection buffers before it is a WebSocket. */
#define CG_WS_HANDSHAKE_BYTES_MAX       8192u
/* Payload of a control frame (close, ping, pong): RFC 6455 §5.5 allows at most 125 bytes. */
#define CG_WS_CONTROL_PAYLOAD_BYTES_MAX 125u
/* A close reason: what is left of a control payload after the 2-byte code (RFC 6455 §5.5.1). */
#define CG_WS_CLOSE_REASON_BYTES_MAX    (CG_WS_CONTROL_PAYLOAD_BYTES_MAX - 2u)
/* A client frame's header at its longest: 2 bytes, a 64-bit length, a 4-byte mask (§5.2). A
 * caller's input buffer needs this plus the message bound to hold any acceptable frame. */
#define CG_WS_CLIENT_HEADER_BYTES_MAX   14u
/* A server frame's header at its longest: 2 bytes and a 64-bit length; no mask (§5.1). */
#define CG_WS_SERVER_HEADER_BYTES_MAX   10u
/* A server control frame: a 2-byte header (a length of 125 fits the first byte) and its payload. */
#define CG_WS_CONTROL_FRAME_BYTES_MAX   (2u + CG_WS_CONTROL_PAYLOAD_BYTES_MAX)
/* The message bound a connection applies when nothing else is configured: a client's binary
 * message carries GOIM packets (auth, heartbeats, a room message), each bounded by
 * CG_PACKET_BODY_BYTES_DEFAULT; 16 KiB holds three full ones and keeps the input buffer a
 * connection needs for a whole frame small. */
#define CG_WS_MESSAGE_BYTES_DEFAULT     (16u * 1024)
/* Absolute bound on a message, whatever the configuration (larger values are treated as it):
 * one GOIM packet of the codec's absolute bound. It keeps message lengths and the reassembly
 * buffer's power-of-two growth within a u32. */
#define CG_WS_MESSAGE_BYTES_ABS_MAX     (CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_ABS_MAX)
/* The first allocation of a reassembly buffer; it then doubles up to the message bound, so a
 * message split into many small fragments costs O(log n) reallocations, not one per fragment. */
#define CG_WS_REASSEMBLY_BYTES_MIN      256u
/* An HTTP response the engine builds: status line, Connection, Content-Type and -Length,
 * Sec-WebSocket-Version on a 426, and a one-line body; the 101 response is 129 bytes. */
#define CG_WS_RESPONSE_BYTES_MAX        512u

_Static_assert(CG_WS_MESSAGE_BYTES_DEFAULT <= CG_WS_MESSAGE_BYTES_ABS_MAX,
               "the default message bound must be within the absolute one");
_Static_assert(CG_WS_MESSAGE_BYTES_DEFAULT >=
                   3u * (CG_PACKET_HEADER_BYTES + CG_PACKET_BODY_BYTES_DEFAULT),
               "a default message must hold three default-bounded GOIM packets");
_Static_assert((unsigned long long)CG_WS_MESSAGE_BYTES_ABS_MAX * 2u <= 0xFFFFFFFFull,
               "reassembly doubling must stay within a u32");
_Static_assert(CG_WS_REASSEMBLY_BYTES_MIN <= CG_WS_MESSAGE_BYTES_DEFAULT,
               "the first reassembly allocation must be within the default bound");
_Static_assert(CG_WS_CONTROL_FRAME_BYTES_MAX < CG_WS_RESPONSE_BYTES_MAX,
               "a caller's response buffer also holds any control frame");

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
/* Pushes a Job has sent on one gateway link and not seen answered: a gateway behind on its
 * fan-out stops being fed, so the backlog waits in the topics (read back later through the
 * catch-up path) rather than in the gateway's socket buffers or the Job's memory. A gateway
 * fans out a read's pushes before it reads again, so this also bounds how long its loop is busy
 * with one link: 64 pushes to a room of 10k members is about a second of writes. A gateway
 * keeping up answers within a millisecond, so 64 in flight allow tens of thousands of pushes
 * a second. */
#define CG_JOB_LINK_WINDOW             64u
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
/* Room ids, `type://id`, everywhere in the chat system (auth bodies, op 12, the push API, the
 * Job's properties). The type is a short lowercase tag ("live", "chat"; GOIM writes "live"); 16
 * keeps a room id short enough to be a hash key and a log field. The id part is GOIM's and
 * Bilibili's decimal room number (at most 19 digits as an int64); 64 also takes a UUID or a slug.
 */
#define CG_ROOM_TYPE_BYTES_MAX         16u
#define CG_ROOM_NAME_BYTES_MAX         64u
/* A whole room id: type, "://" and the id part. */
#define CG_ROOM_ID_BYTES_MAX           (CG_ROOM_TYPE_BYTES_MAX + 3u + CG_ROOM_NAME_BYTES_MAX)
#define CG_ROOM_BYTES_MAX              CG_ROOM_ID_BYTES_MAX
/* Bytes of a connection's key (an auth body's "key", a key push's target). GOIM's keys are UUIDs
 * (36 characters); Bilibili's web client sends the token of its getDanmuInfo call, about 200
 * characters. 512 leaves room for a longer token while keeping a key a short heap string. */
#define CG_KEY_BYTES_MAX               512u
/* Bytes of a gateway id, a "host:port" address, a Job's name. */
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

/* The chat HTTP API (piece: api, src/chat_gateway/api.c) and the topics it produces to. */
#include "metadata/limits.h" /* MD_CLIENT_INFLIGHT_MAX */

/* Keys, and mids, in one push. GOIM's logic takes the list from the query string without a
 * bound; 500 keeps the chat.keys property (at most 251 KiB of the longest keys) far below a
 * Pulsar message's metadata bound and a gateway's per-message lookup short. */
#define CG_API_PUSH_TARGETS_MAX       500u
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

_Static_assert(CG_API_ONLINE_REQUESTS_MAX <= MD_CLIENT_INFLIGHT_MAX,
               "one metadata read per online request must stay within MD_CLIENT_INFLIGHT_MAX");
_Static_assert((unsigned long long)CG_API_PUSH_TARGETS_MAX *(CG_KEY_BYTES_MAX + 1) <= 256 * 1024,
               "a chat.keys property must stay small next to a message");
_Static_assert(CG_ONLINE_STALE_MS > CG_ONLINE_WRITE_INTERVAL_MS,
               "a live gateway's node must never look stale");

/* Auth bodies, room ids, op lists and positions (piece: auth, src/chat_gateway). */
/* Bytes of an op 7 auth body handed to the JSON parser: GOIM's body bound (4096, REFERENCE.md
 * §4). A real Bilibili web auth body, with its ~200-character key, is about 300 bytes and a GOIM
 * one about 100; the bound also caps what the parser can allocate and how deep it can nest. */
#define CG_AUTH_BODY_BYTES_MAX     4096u
/* Bytes of an auth key: a connection's key (CG_KEY_BYTES_MAX, above). */
#define CG_AUTH_KEY_BYTES_MAX      CG_KEY_BYTES_MAX
/* Bytes of a client's platform name ("web", "android", "ios", "pc_link"): a label for logs and
 * metrics, never longer than a word. */
#define CG_AUTH_PLATFORM_BYTES_MAX 32u
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
