/*
 * The fixed limits of the broker (src/broker), each with the reason for its value. The broker is
 * where the limits of the modules below meet: relations between its limits and theirs (the
 * Pulsar frame, the bookie entry, cursor names and ack sets, and the C client's sizes, which
 * must agree with the broker's) are checked at compile time at the end (docs/common.md,
 * "Limits").
 */
#ifndef MG_BROKER_LIMITS_H
#define MG_BROKER_LIMITS_H

#include "bookie/limits.h"
#include "client/limits.h"
#include "common/limits.h"
#include "cursor/limits.h"
#include "metadata/limits.h"
#include "prefetch/limits.h"
#include "pulsar/limits.h"

/* Broker (src/broker, piece: broker). */
/* Pulsar's default maxMessageSize: the largest message (batch) a producer may send, advertised
 * as max_message_size in CONNECTED. A frame may exceed it by the command and metadata around
 * the payload: Pulsar allows 10 KiB of padding. */
#define BR_MESSAGE_BYTES_DEFAULT   (5u * 1024 * 1024)
/* A message must fit one bookie entry (BK_ENTRY_BYTES_MAX, 16 MiB) with the broker's
 * BrokerEntryMetadata prefix and the frame around it. */
#define BR_MESSAGE_BYTES_MAX       (15u * 1024 * 1024)
#define BR_FRAME_PADDING_BYTES     (10u * 1024)
/* A connection reads into buffers of this size (a larger one for a larger frame). */
#define BR_READ_BUF_BYTES          (64u * 1024)
/* A connection reading frames larger than BR_READ_BUF_BYTES gets buffers for this many, as long
 * as that stays within BR_READ_BUF_LARGE_BYTES. */
#define BR_READ_BUF_LARGE_FRAMES   4u
#define BR_READ_BUF_LARGE_BYTES    (1024u * 1024)
/* SENDs of one connection waiting for storage: past it the connection is not read from until
 * half have completed (Pulsar's maxPendingPublishRequestsPerConnection is 1000). */
#define BR_CONN_PENDING_SENDS_MAX  1000u
/* Send contexts a connection keeps for reuse (~80 bytes each): as many as it may have in flight,
 * so the list never holds more than the connection once used (80 KB at most), and a producer
 * whose receipts come back in bursts (one group commit acknowledges hundreds of entries) still
 * finds every context it needs. */
#define BR_CONN_SEND_POOL_MAX      BR_CONN_PENDING_SENDS_MAX
/* Producers of one connection the broker closed (CLOSE_PRODUCER) whose ids it remembers: a SEND
 * the client wrote before it read the CLOSE_PRODUCER is dropped, not a protocol error. A client
 * re-registers within a round trip, so a few suffice; beyond them the oldest is forgotten. */
#define BR_CONN_CLOSED_PROD_MAX    8u
/* Bytes queued for a connection's socket: past it dispatch to its consumers pauses until the
 * socket drains (a slow consumer must not grow the broker's memory without bound). The upper
 * bound of a connection's share of the output budget (BR_CONN_MEMORY_BYTES_DEFAULT below). */
#define BR_CONN_OUT_BYTES_MAX      (16u * 1024 * 1024)
/* Producers and consumers on one connection (Pulsar clients multiplex a few dozen). */
#define BR_CONN_HANDLES_MAX        4096u
#define BR_CONNECTIONS_MAX         65536u
/* Topics open on one broker: each holds a managed ledger and its cursors. */
#define BR_TOPICS_MAX              100000u
/* Entries one dispatcher read asks for (Pulsar dispatches at most 100 per read), and bytes. */
#define BR_DISPATCH_ENTRIES_MAX    100
#define BR_DISPATCH_BYTES_MAX      (5u * 1024 * 1024)
/* Entries delivered and not yet acknowledged in one subscription: past it dispatch stops until
 * acks arrive (Pulsar's maxUnackedMessagesPerSubscription is 200000 messages). */
#define BR_SUB_UNACKED_ENTRIES_MAX 200000u
/* Consumers on one subscription. */
#define BR_SUB_CONSUMERS_MAX       1024u
/* Names: Pulsar producer and consumer names are short identifiers; subscription names are
 * cursor names (MC_NAME_BYTES_MAX). */
#define BR_NAME_BYTES_MAX          256
/* Message ids in one ACK or REDELIVER command (Pulsar clients group at most a few thousand). */
#define BR_ACK_IDS_MAX             65536u
/* Key_Shared: the hash range of sticky keys and the points per consumer on the hash ring. */
#define BR_KEY_HASH_RANGE          65536u
#define BR_KEY_RING_POINTS         100u

/* Broker connection memory (src/broker/server.c, "CONNECTION MEMORY"). */
/* Broker-wide budget of connection memory (--connection-memory-mb): half for bytes queued to
 * consumers in output queues, half for receive buffers of frames larger than BR_READ_BUF_BYTES
 * (a partially received frame). 512 MiB: the output half keeps 16 consumer connections at
 * BR_CONN_OUT_BYTES_MAX each (or 256 at BR_CONN_OUT_BYTES_MIN), the receive half 51 frames of
 * the default 5 MiB max_message_size in flight at once, and the whole stays below the default
 * read caches (--tail-cache-mb 256 + --prefetch-mb 512) so that a 2 GiB machine holds it all.
 * Without it, 200 connections that each announced a 5 MiB frame took 1 GiB, and 100 consumers
 * that never read 2 GiB. The smallest budget keeps a whole largest frame in each half. */
#define BR_CONN_MEMORY_BYTES_DEFAULT (512ull * 1024 * 1024)
#define BR_CONN_MEMORY_BYTES_MIN     (32ull * 1024 * 1024)
/* A connection's share of the output half is the half divided among the connections that have
 * consumers, within these bounds: 1 MiB keeps a reading consumer's socket busy between two write
 * completions (the kernel's send buffer holds a few MiB more). */
#define BR_CONN_OUT_BYTES_MIN        (1024u * 1024)
/* Dispatch paused by the broker-wide output budget resumes once the queues fell below this
 * percentage of it: waking every waiting consumer at each write completion would cost a pass
 * over them per write. */
#define BR_CONN_OUT_RESUME_PCT       75u
/* While the output budget is used up, a connection whose queue has not moved (no write
 * completed) for this long is closed, consumers and all: its bytes would otherwise hold the
 * budget forever and starve consumers that read (a Pulsar client reads its socket whatever the
 * application does: one that stops for 10 s is stuck or hostile). Checked this often. */
#define BR_CONN_OUT_STALL_MS         10000u
#define BR_CONN_OUT_STALL_CHECK_MS   1000u
/* Before CONNECT a frame may be only as large as a CONNECT can be: the command carries
 * client_version, auth_method_name, auth_data and, through a proxy, the original principal, auth
 * data and method, plus a proxy URL and version. Authentication data is the large part: JWTs
 * are a few KiB; Kerberos (SASL) tokens reach Windows' MaxTokenSize, 48000 bytes; a proxy
 * forwards the client's besides its own. 128 KiB holds two such tokens and every string. A
 * larger frame is refused at its header (magnetar_broker_refused_total{reason=
 * "frame_before_connect"}) instead of buffering up to max_message_size for a stranger. */
#define BR_CONNECT_FRAME_BYTES_MAX   (128u * 1024)
/* A connection must send CONNECT within this long of being accepted (pulsar clients send it
 * at once); otherwise it is closed, so sockets that never speak, or trickle bytes, do not keep
 * a connection slot. */
#define BR_CONNECT_TIMEOUT_MS        (10u * 1000)
/* Connections refused for a frame before CONNECT are logged one by one at debug level, and at
 * warning level at most once per this period (with the count since the last line). */
#define BR_REFUSED_LOG_PERIOD_MS     10000u
/* Partitions the admin API creates for one topic (PUT .../partitions). A client attaches one
 * producer or consumer per partition, all on its one connection to a standalone broker, and a
 * connection carries at most BR_CONN_HANDLES_MAX (4096) of them: 1024 leaves room for a producer
 * and a consumer of the topic in the same client, with more besides. Pulsar's
 * maxNumPartitionsPerPartitionedTopic defaults to unlimited; 65536 partitions were accepted
 * here once and then no producer could attach. Larger counts already stored stay readable up
 * to MG_PULSAR_TOPIC_PARTITIONS_MAX. */
#define BR_ADMIN_PARTITIONS_MAX      1024
/* Namespaces whose policies one broker keeps in its cache (namespace.c): one entry and one
 * metadata watch each, for every namespace of which a topic was opened here. The metadata client
 * holds at most MD_CLIENT_WATCHES_MAX (4096) watches, shared with the broker's other users; half
 * of them is left to those. Past it a topic of one more namespace is refused (TooManyRequests). */
#define BR_NAMESPACES_CACHED_MAX     2048
/* A metadata read or write of the namespace cache that failed (the session down) is tried again
 * after this long: the creation of public/default at start, and a watch that could not be armed
 * again. */
#define BR_NS_RETRY_MS               1000
/* Compare-and-set attempts of one policy update before it answers 409 (others keep writing the
 * same namespace's policies). */
#define BR_NS_SET_ATTEMPTS_MAX       8

/* The deepest position an admin peek (GET .../subscription/{sub}/position/{n}) reads to: the
 * broker reads the n entries after the mark-delete position to find the last one, so n bounds
 * the work one request makes the bookies do. Peeking is for looking at the head of a backlog. */
#define BR_ADMIN_PEEK_POSITION_MAX 10000

/* Bytes one read of a peek asks for (it reads on until it reaches the entry asked for). */
#define BR_ADMIN_PEEK_READ_BYTES (4u << 20)

/* Relations between the limits above, and with the lower modules', checked at compile time. */
_Static_assert(BR_MESSAGE_BYTES_DEFAULT <= BR_MESSAGE_BYTES_MAX,
               "the default max_message_size must be within BR_MESSAGE_BYTES_MAX");
_Static_assert(
    (unsigned long long)BR_MESSAGE_BYTES_MAX + BR_FRAME_PADDING_BYTES + 4 <=
        MG_PULSAR_FRAME_BYTES_MAX,
    "a frame of the largest message with its padding must fit MG_PULSAR_FRAME_BYTES_MAX");
_Static_assert((unsigned long long)BR_MESSAGE_BYTES_MAX + BR_FRAME_PADDING_BYTES + 2 + 4 +
                       MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX <=
                   BK_ENTRY_BYTES_MAX,
               "the largest message with its frame and the BrokerEntryMetadata prefix (magic, "
               "size, metadata) must fit one bookie entry");
_Static_assert(
    (unsigned long long)BK_ENTRY_BYTES_MAX + BR_FRAME_PADDING_BYTES + 4 <=
        MG_PULSAR_FRAME_BYTES_MAX,
    "a MESSAGE frame carrying the largest stored entry must fit MG_PULSAR_FRAME_BYTES_MAX");
_Static_assert(BR_CONN_MEMORY_BYTES_MIN / 2 >= BR_MESSAGE_BYTES_MAX + BR_FRAME_PADDING_BYTES,
               "each half of the smallest connection budget holds a largest frame");
_Static_assert(BR_CONN_MEMORY_BYTES_MIN <= BR_CONN_MEMORY_BYTES_DEFAULT,
               "the default connection memory budget must be at least its minimum");
_Static_assert(BR_CONN_OUT_BYTES_MIN <= BR_CONN_OUT_BYTES_MAX,
               "a connection's output share bounds must be ordered");
_Static_assert(BR_CONN_OUT_RESUME_PCT < 100, "dispatch resumes below the whole output budget");
_Static_assert(BR_CONN_OUT_STALL_CHECK_MS <= BR_CONN_OUT_STALL_MS,
               "stalled connections are checked at least once per stall period");
_Static_assert(BR_READ_BUF_BYTES <= BR_READ_BUF_LARGE_BYTES,
               "the large receive buffers of a connection are at least as large as its normal one");
_Static_assert(BR_DISPATCH_ENTRIES_MAX <= PF_READ_ENTRIES_MAX,
               "one dispatcher read must be one the prefetcher hands over whole");
_Static_assert(MG_FD_BROKER_MAX == BR_CONNECTIONS_MAX,
               "the descriptor budget caps a broker's share at its connection limit");
_Static_assert(BR_NAME_BYTES_MAX <= MC_NAME_BYTES_MAX,
               "a subscription name must fit a cursor name");
_Static_assert(
    2 * BR_ADMIN_PARTITIONS_MAX <= BR_CONN_HANDLES_MAX,
    "a producer and a consumer of the largest partitioned topic must fit one connection");
_Static_assert(BR_NAMESPACES_CACHED_MAX <= MD_CLIENT_WATCHES_MAX / 2,
               "the namespace cache leaves half of the metadata client's watches to the rest");
_Static_assert(BR_ADMIN_PARTITIONS_MAX <= MG_PULSAR_TOPIC_PARTITIONS_MAX,
               "partition indexes must stay within what topic names carry");
/* The C client and the broker must agree. */
_Static_assert(PC_MESSAGE_BYTES_MAX <= BR_MESSAGE_BYTES_MAX,
               "the client's largest message must be one the broker can store");
_Static_assert(PC_MESSAGE_BYTES_DEFAULT == BR_MESSAGE_BYTES_DEFAULT,
               "the client assumes the broker's default max_message_size (Pulsar's)");
_Static_assert(PC_FRAME_PADDING_BYTES == BR_FRAME_PADDING_BYTES,
               "the client allows the broker's frame padding");
_Static_assert(MG_PULSAR_UNCOMPRESSED_BYTES_MAX >= BR_MESSAGE_BYTES_MAX,
               "any message the broker stores must fit uncompressed");
_Static_assert(PC_NAME_BYTES_MAX <= BR_NAME_BYTES_MAX,
               "a producer, consumer or subscription name of the client must be one the broker "
               "accepts");
_Static_assert(PC_HANDLES_MAX >= BR_CONN_HANDLES_MAX,
               "a client must be able to fill a broker connection with producers and consumers");
_Static_assert(PC_ACK_IDS_PER_COMMAND <= BR_ACK_IDS_MAX,
               "one ACK command of the client must be one the broker accepts");
_Static_assert(PC_ACK_SET_WORDS_MAX == MC_ACK_SET_WORDS_MAX,
               "the client honours the ack sets the cursor keeps");
_Static_assert(PC_BATCH_MESSAGES_MAX <= MC_ACK_SET_WORDS_MAX * 64,
               "every message of a client batch must have a bit in a cursor's ack set");

#endif
