/*
 * The fixed limits of the Pulsar wire module (src/pulsar), each with the reason for its value;
 * relations between them are checked at compile time at the end (docs/common.md, "Limits").
 * Limits that relate these to a higher module's (the ledger's names, the broker's message size)
 * are checked in that module's limits header.
 */
#ifndef MG_PULSAR_LIMITS_H
#define MG_PULSAR_LIMITS_H

#include "common/limits.h"

/* Pulsar wire codec (piece: wire, src/pulsar; shared by the broker and the C client). */
/* Absolute bound on one frame (4 + total_size) that the codec builds or accepts, whatever a
 * connection's setting: total_size is a u32 read from the network, and no setting needs more
 * (a stored entry is at most BK_ENTRY_BYTES_MAX). A connection passes its own bound,
 * max_message_size + padding, to pw_frame_size; this one only caps that. */
#define MG_PULSAR_FRAME_BYTES_MAX                 (128u * 1024 * 1024)
/* Messages in one entry (MessageMetadata.num_messages_in_batch). Producers batch at most 1000
 * messages by default (batchingMaxMessages) and rarely more than 10000. The count becomes flow
 * permits and BrokerEntryMetadata index arithmetic, so a count past this is refused as
 * malformed rather than trusted. */
#define MG_PULSAR_BATCH_MESSAGES_MAX              100000
/* The BrokerEntryMetadata protobuf after magic 0x0e02: two tagged varints, at most 22 bytes; a
 * longer one was not written by a broker (pw_bem_parse refuses it; the managed ledger then
 * reports the entry corrupt). */
#define MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX 64
/* Topic names "domain://tenant/namespace/topic" (pw_topic_name). Pulsar itself sets no length
 * limit; Magnetar does, so that a name fits fixed arrays, is a metrics label value
 * (MG_METRICS_LABEL_VALUE_BYTES_MAX), and its managed-ledger name "tenant/ns/persistent/topic"
 * fits ML_NAME_BYTES_MAX with the metadata path around it (checked at compile time in
 * ledger/limits.h and cursor/limits.h). Tenants and namespaces are short administrative names; a
 * topic's own part (with any -partition-N suffix) gets 255 bytes, a little more than Kafka's
 * 249-byte topic names, so every Kafka topic name maps onto it. */
#define MG_PULSAR_DOMAIN_BYTES_MAX                14 /* "non-persistent" */
#define MG_PULSAR_TENANT_BYTES_MAX                64
#define MG_PULSAR_NAMESPACE_BYTES_MAX             64
#define MG_PULSAR_TOPIC_LOCAL_BYTES_MAX           255
#define MG_PULSAR_TOPIC_BYTES_MAX                                      \
    (MG_PULSAR_DOMAIN_BYTES_MAX + 3 + MG_PULSAR_TENANT_BYTES_MAX + 1 + \
     MG_PULSAR_NAMESPACE_BYTES_MAX + 1 + MG_PULSAR_TOPIC_LOCAL_BYTES_MAX)
/* Partitions of one partitioned topic; partition indexes run from 0 to this minus one. Each
 * partition is a topic with its own managed ledger and cursors; Pulsar leaves the count
 * unlimited by default, but a few thousand are already far past any real use. */
#define MG_PULSAR_TOPIC_PARTITIONS_MAX 65536
/* The managed-ledger name "tenant/ns/persistent/topic" of the longest topic name (a topic maps
 * onto it one to one); the ledger's and the cursor's limits check that it fits
 * ML_NAME_BYTES_MAX and, with "/managed-ledgers/" and "/" + a cursor name around it, the
 * metadata store's 1024-byte paths (MD_PATH_BYTES_MAX). */
#define MG_PULSAR_ML_NAME_BYTES_MAX                                                              \
    (MG_PULSAR_TENANT_BYTES_MAX + 1 + MG_PULSAR_NAMESPACE_BYTES_MAX + 1 + sizeof("persistent") - \
     1 + 1 + MG_PULSAR_TOPIC_LOCAL_BYTES_MAX)

/* Batch compression codecs (piece: codec, src/pulsar/compress.c; used by the C client and the
 * broker). */
/* The largest payload compressed or decompressed (MessageMetadata.uncompressed_size). Pulsar's
 * default maxMessageSize is 5 MiB and Magnetar's broker accepts messages up to
 * BR_MESSAGE_BYTES_MAX (15 MiB); 16 MiB is the next power of two, so any payload a broker can
 * store also fits uncompressed (checked at compile time in broker/limits.h). The bound matters on
 * receive: Pulsar clients check only the compressed size against maxMessageSize and trust
 * uncompressed_size (a u32: up to 4 GiB), and a 5 MiB LZ4 payload really can expand past 1 GiB
 * (ZSTD far more), so without it one message could make a client, or the broker decompressing
 * for a Kafka consumer, allocate gigabytes. Batches are far smaller (Pulsar's batchingMaxBytes
 * is 128 KiB); only a single very compressible message larger than this is refused (MG_ELIMIT)
 * rather than inflated. */
#define MG_PULSAR_UNCOMPRESSED_BYTES_MAX (16u * 1024 * 1024)

/* Relations between the limits above, checked at compile time. */
_Static_assert(MG_PULSAR_TOPIC_BYTES_MAX < MG_METRICS_LABEL_VALUE_BYTES_MAX,
               "a topic name must fit a metrics label value");
_Static_assert(sizeof("non-persistent") - 1 <= MG_PULSAR_DOMAIN_BYTES_MAX,
               "the longest domain, \"non-persistent\", must fit MG_PULSAR_DOMAIN_BYTES_MAX");
_Static_assert(MG_PULSAR_FRAME_BYTES_MAX <= 0xFFFFFFFFull, "a frame's total_size is a u32");

#endif
