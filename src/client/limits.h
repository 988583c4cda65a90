/*
 * The fixed limits of the C Pulsar client (src/client), each with the reason for its value;
 * relations between them and the Pulsar wire module's limits are checked at compile time at the
 * end, those with the broker's and the cursor's in broker/limits.h (docs/common.md, "Limits").
 */
#ifndef MG_CLIENT_LIMITS_H
#define MG_CLIENT_LIMITS_H

#include "pulsar/limits.h"

/* C Pulsar client (src/client, piece: client; see client.h). */
/* Lookups followed through Redirect answers before giving up (Pulsar's maxLookupRedirects is
 * 20): a cluster redirects once or twice; more means brokers pointing at each other. */
#define PC_LOOKUP_REDIRECTS_MAX  20
/* Reconnect backoff of a producer or consumer: the first retry after the minimum, doubling to
 * the maximum, reset by a successful (re)connection. Pulsar uses 100 ms to 60 s; 30 s finds a
 * recovered broker twice as soon and still costs a dead one only one attempt per 30 s. */
#define PC_BACKOFF_MS_MIN        100u
#define PC_BACKOFF_MS_MAX        30000u
/* The message size assumed until a broker's CONNECTED tells its max_message_size (Pulsar's
 * default), and the largest one believed (what a Magnetar broker can store at most). */
#define PC_MESSAGE_BYTES_DEFAULT (5u * 1024 * 1024)
#define PC_MESSAGE_BYTES_MAX     (15u * 1024 * 1024)
/* A frame may exceed max_message_size by the command and metadata around the payload; Pulsar
 * allows 10 KiB, as the broker does (BR_FRAME_PADDING_BYTES). */
#define PC_FRAME_PADDING_BYTES   (10u * 1024)
/* A connection reads into buffers of this size (a larger one for a larger frame). */
#define PC_READ_BUF_BYTES        (64u * 1024)
/* "host:port": a DNS name is at most 253 bytes, plus brackets, colon and port. */
#define PC_ADDR_BYTES_MAX        300
/* Hosts in a service URL: a cluster lists a few brokers or one load balancer. */
#define PC_SERVICE_HOSTS_MAX     16
/* Addresses of one resolved host name tried in order (IPv6 and IPv4 of "localhost", round-robin
 * DNS). */
#define PC_RESOLVED_ADDRS_MAX    8
/* Broker connections in one client's pool: one per broker of a cluster. */
#define PC_CONNECTIONS_MAX       1024u
/* Requests waiting for an answer on one connection (lookups, creations, grouped acks): a
 * client has a few per producer or consumer; more means a broker that stopped answering. */
#define PC_CONN_REQUESTS_MAX     65536u
/* Producers and consumers (one per partition) of one client: the broker takes at most 4096 per
 * connection (BR_CONN_HANDLES_MAX); a client spread over brokers may have more. */
#define PC_HANDLES_MAX           65536u
/* max_pending_messages may not be set higher: each pending message holds its payload. */
#define PC_PENDING_MESSAGES_MAX  1000000u
/* Messages in one batch: a consumer acknowledges the messages of a batch one by one with a bit
 * set of MC_ACK_SET_WORDS_MAX words (8192 messages), which the broker refuses past that. */
#define PC_BATCH_MESSAGES_MAX    8192u
/* Properties of one message (pc_send refuses more): Pulsar messages carry a handful. */
#define PC_PROPERTIES_MAX        1024u
/* receiver_queue_size may not be set higher: each permit may bring a message into memory. */
#define PC_RECEIVER_QUEUE_MAX    1000000u
/* Message ids in one ACK command (client.h: grouped acks carry at most 1000 ids), and ids
 * waiting to be sent: past it they are sent at once (or, while disconnected, dropped: the broker
 * redelivers what was not acknowledged). */
#define PC_ACK_IDS_PER_COMMAND   1000u
#define PC_ACK_PENDING_MAX       65536u
/* Negative acks waiting for their delay: past it the oldest are sent early. */
#define PC_NACK_PENDING_MAX      65536u
/* Ack set words of a MESSAGE (a partially acknowledged batch) that are honoured: as the broker's
 * MC_ACK_SET_WORDS_MAX. */
#define PC_ACK_SET_WORDS_MAX     128u
/* Request timeouts, send timeouts and keep-alive are checked this often: timeouts are seconds,
 * so 100 ms is precise enough and costs ten wake-ups a second. */
#define PC_HOUSEKEEPING_MS       100u
/* The broker's error text kept for pc_last_error; longer texts are cut. */
#define PC_ERROR_TEXT_BYTES_MAX  256
/* Producer, consumer and subscription names (the broker's BR_NAME_BYTES_MAX). */
#define PC_NAME_BYTES_MAX        256

/* Relations between the limits above, checked at compile time. */
_Static_assert(PC_MESSAGE_BYTES_DEFAULT <= PC_MESSAGE_BYTES_MAX,
               "the assumed message size must be within the largest one believed");
_Static_assert(
    (unsigned long long)PC_MESSAGE_BYTES_MAX + PC_FRAME_PADDING_BYTES + 4 <=
        MG_PULSAR_FRAME_BYTES_MAX,
    "a frame of the largest message with its padding must fit MG_PULSAR_FRAME_BYTES_MAX");
_Static_assert(MG_PULSAR_UNCOMPRESSED_BYTES_MAX >= PC_MESSAGE_BYTES_MAX,
               "any message the client accepts must fit uncompressed");
_Static_assert(PC_BACKOFF_MS_MIN <= PC_BACKOFF_MS_MAX,
               "the reconnect back-off starts at or below its maximum");
_Static_assert(PC_BATCH_MESSAGES_MAX <= PC_ACK_SET_WORDS_MAX * 64,
               "every message of a batch must have a bit in an ack set of PC_ACK_SET_WORDS_MAX "
               "words");
_Static_assert(PC_BATCH_MESSAGES_MAX <= MG_PULSAR_BATCH_MESSAGES_MAX,
               "a batch the client builds must be one the wire module accepts");
_Static_assert(PC_ACK_IDS_PER_COMMAND <= PC_ACK_PENDING_MAX,
               "one ACK command's ids must fit the ids waiting to be sent");

#endif
