/*
 * The Pulsar binary protocol codec: frames, commands, message and batch payloads,
 * BrokerEntryMetadata and topic names. It is its own target (mg_pulsar) shared by the broker, the
 * managed ledger, the C client and the Kafka shim; it knows nothing of connections, topics or
 * storage, and keeps no state between calls.
 *
 * FRAMES (all integers big-endian)
 *
 *   simple:  [total_size u32][command_size u32][BaseCommand]
 *   payload: [total_size u32][command_size u32][BaseCommand][payload ...]
 *
 *   total_size counts every byte after itself: 4 + command_size + payload bytes, so a frame is
 *   4 + total_size bytes long. Only SEND and MESSAGE carry a payload; any other command with
 *   bytes after it is a protocol error. The payload of SEND and MESSAGE is
 *
 *     [0x0e02 u16][bem_size u32][BrokerEntryMetadata]   optional, only ever from a broker
 *     [0x0e01 u16][crc32c u32]                          optional checksum
 *     [metadata_size u32][MessageMetadata][data]
 *
 *   The CRC32C (common/crc32c.h) covers every byte after the checksum field: metadata_size,
 *   the metadata and the data. The "client bytes" are the payload without the 0x0e02 prefix:
 *   exactly what a producer sent after its SEND command, and what a consumer that did not ask
 *   for broker entry metadata receives after its MESSAGE command. A broker stores
 *   [0x0e02 prefix][client bytes] as one entry and sends either all of it or the client bytes.
 *
 * ZERO COPY
 *   Decoding never copies a payload: pw_frame_decode reports where the payload lies inside the
 *   frame, pw_payload_parse reports offsets and pointers into the caller's bytes, and the only
 *   allocations are those of the unpacked command. Encoding a MESSAGE or SEND writes the sizes
 *   and the command into a small new buffer (pw_payload_head_encode); the payload that follows
 *   on the socket is the caller's stored entry, referenced, not copied.
 *
 * ERRORS
 *   MG_EAGAIN  not enough bytes yet (pw_frame_size only)
 *   MG_ELIMIT  a size beyond the allowed frame size
 *   MG_EPROTO  malformed input: bad sizes, a protobuf that does not parse or lacks required
 *              fields, a type without its sub-command, trailing bytes, absurd counts
 *   MG_ENOTSUP a well-formed BaseCommand whose type this codec does not know (transactions,
 *              topic-list watchers, anything newer): the peer may be answered with an error
 *   MG_ECORRUPT a payload whose checksum does not match (answer SEND_ERROR ChecksumError)
 *   MG_EINVAL  a caller's mistake: an inconsistent command to encode, bad arguments
 *   MG_ENOMEM  allocation failed
 *
 * THREADING: every function is reentrant and may run on any thread; objects passed in belong
 * to the caller for the duration of the call.
 */
#ifndef MG_PULSAR_WIRE_H
#define MG_PULSAR_WIRE_H

#include "common/buf.h"
#include "pulsar/limits.h"
#include "proto/PulsarApi.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two magic numbers of a payload (big-endian u16 on the wire). */
#define PW_MAGIC_CHECKSUM              0x0e01u
#define PW_MAGIC_BROKER_ENTRY_METADATA 0x0e02u

/* Bytes of the two fixed frame fields, total_size and command_size. */
#define PW_FRAME_HEADER_BYTES 8u

/* --- Frames ---------------------------------------------------------------------------------- */

/* Looks at the first n bytes of a stream (p may be NULL when n is 0) and tells how long the
 * frame that starts there is. The bound: frame_max_bytes limits the whole frame, 4 + total_size
 * (the size field included); a connection passes its advertised max_message_size plus the
 * padding it allows for the command and headers. Values above MG_PULSAR_FRAME_BYTES_MAX are
 * treated as MG_PULSAR_FRAME_BYTES_MAX.
 * Returns MG_OK with *frame_len = 4 + total_size (the bytes may not all be there yet: wait for
 * *frame_len bytes), MG_EAGAIN when n < 4, MG_ELIMIT when 4 + total_size > frame_max_bytes,
 * MG_EPROTO when total_size < 4 (no room for command_size). *frame_len is set only on MG_OK. */
int pw_frame_size(const uint8_t *p, size_t n, uint32_t frame_max_bytes, size_t *frame_len);

/* A decoded frame. Offsets are relative to the first byte of the frame. */
typedef struct pw_frame {
    Magnetar__Pulsar__BaseCommand *cmd; /* owned by the frame; NULL after pw_frame_free */
    int type;                           /* cmd->type: a Magnetar__Pulsar__BaseCommand__Type */
    uint32_t frame_len;                 /* 4 + total_size */
    uint32_t command_len;               /* command_size */
    uint32_t payload_off;               /* PW_FRAME_HEADER_BYTES + command_len */
    uint32_t payload_len;               /* bytes after the command: 0 unless SEND or MESSAGE */
} pw_frame;

/* Decodes the frame p[0, frame_len), where frame_len is what pw_frame_size returned for it.
 * Checks command_size <= total_size - 4, unpacks the BaseCommand, checks that the sub-command
 * matching its type is present, and records the payload region of SEND and MESSAGE (the bytes
 * are not parsed: see pw_payload_parse). The payload stays in the caller's buffer.
 * On MG_OK *out holds the command (release it with pw_frame_free). On error nothing is left
 * allocated and out->cmd is NULL; on MG_ENOTSUP out->type and the lengths are still filled in
 * so the caller can name the type it refuses.
 * Errors: MG_EPROTO (sizes, a BaseCommand that does not parse or holds a field numbered 0, a
 * type without its sub-command, bytes after a command that carries no payload), MG_ENOTSUP (type
 * unknown to this codec), MG_EINVAL (frame_len disagrees with the size field or is below 8),
 * MG_ENOMEM. */
int pw_frame_decode(const uint8_t *p, size_t frame_len, pw_frame *out);

/* Releases the command of a decoded frame and sets f->cmd to NULL. Calling it again, or on a
 * frame whose decode failed, is a no-op. */
void pw_frame_free(pw_frame *f);

/* The sub-command of cmd that matches cmd->type (e.g. cmd->send for SEND), or NULL when the
 * type is unknown to this codec or that field is not set. */
const ProtobufCMessage *pw_command_body(const Magnetar__Pulsar__BaseCommand *cmd);

/* Whether m, or a message inside it, holds a field numbered 0. Field numbers start at 1 and
 * every protobuf implementation refuses 0, but protobuf-c 1.4 refuses it only when its tag's
 * first byte says so: written in more bytes than needed (0x80 0x00) it is kept as an unknown
 * field, and written back as a plain 0 tag that protobuf-c itself then refuses. The decoders
 * here (pw_frame_decode, pw_payload_parse) treat such a message as malformed (MG_EPROTO), so
 * nothing is accepted that a Pulsar peer refuses or that does not encode back. */
bool pw_has_field_zero(const ProtobufCMessage *m);

/* The name of a command type for logs and metric labels: "CONNECT", "SEND", ...; "UNKNOWN" for
 * a value this codec does not know. The string is static. */
const char *pw_command_type_name(int type);

/* --- BrokerEntryMetadata ---------------------------------------------------------------------
 * The prefix a managed ledger puts before every stored entry (ARCHITECTURE.md §5):
 *
 *   [0x0e02 u16][size u32][BrokerEntryMetadata{broker_timestamp = 1, index = 2}]
 *
 * big-endian sizes, the protobuf's two fields as varints in field order. This is the one encoder
 * and the one parser of it: the managed ledger writes it and reads it back, the broker rebuilds
 * it for entries held without it, and pw_payload_parse reads it. */

/* Bytes of the largest prefix pw_bem_encode writes: 6 + two tagged 10-byte varints. */
#define PW_BEM_PREFIX_BYTES_MAX (6u + 22u)

/* Writes [0x0e02][size][BrokerEntryMetadata] with both fields set into dst, which has room for
 * PW_BEM_PREFIX_BYTES_MAX bytes, and returns the prefix length (8 to PW_BEM_PREFIX_BYTES_MAX).
 * The values are written as protobuf uint64 (a negative value as its two's complement, 10 bytes).
 * The bytes are those every stored entry carries: do not change them. Cannot fail. */
size_t pw_bem_encode(int64_t broker_timestamp_ms, int64_t index, uint8_t *dst);

/* What pw_bem_parse found. */
typedef struct pw_bem {
    bool has_broker_timestamp;
    bool has_index;
    uint64_t broker_timestamp_ms; /* 0 when absent */
    int64_t index;                /* -1 when absent; the uint64 field read as int64 */
    size_t len;                   /* prefix bytes: 6 + size */
} pw_bem;

/* Parses the prefix at the start of p[0, len) (a stored entry, or a payload that starts with
 * 0x0e02). Returns MG_OK; MG_EPROTO when p does not start with the magic, the prefix is truncated,
 * its size runs past len or exceeds MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX, or the protobuf
 * does not parse or holds a field numbered 0 (pw_has_field_zero); MG_ENOMEM. Either field may be
 * absent: a caller that requires them checks has_*. *out is written only on MG_OK. */
int pw_bem_parse(const uint8_t *p, size_t len, pw_bem *out);

/* --- Payloads -------------------------------------------------------------------------------- */

/* What pw_payload_parse found. Offsets are relative to the p passed to it; pointers point into
 * those same bytes (nothing is allocated or copied), so they are valid while those bytes are
 * and the struct may be copied freely. Strings from the metadata are NOT NUL-terminated. */
typedef struct pw_payload {
    /* [0x0e02][size][BrokerEntryMetadata]: p[0, bem_len) when present */
    bool has_broker_entry_metadata;
    bool has_broker_timestamp;
    bool has_index;
    size_t bem_len;               /* 0 when absent, else 6 + size */
    uint64_t broker_timestamp_ms; /* 0 when absent */
    int64_t index;                /* -1 when absent */

    /* The client bytes: p[client_off, client_off + client_len) = everything after the prefix */
    size_t client_off;
    size_t client_len;

    bool has_checksum;
    uint32_t checksum; /* as found on the wire; verified only when asked */

    /* [metadata_size][MessageMetadata]: the protobuf is p[metadata_off, +metadata_len) */
    size_t metadata_off;
    size_t metadata_len;
    /* The message (or batch) bytes after the metadata, to the end of the payload */
    size_t data_off;
    size_t data_len;

    /* From MessageMetadata */
    int32_t num_messages;        /* num_messages_in_batch; 1 when absent */
    bool batched;                /* num_messages_in_batch present: the data is a batch */
    int64_t sequence_id;         /* producer's sequence id (of the first message) */
    int64_t highest_sequence_id; /* -1 when absent */
    uint64_t publish_time_ms;
    uint64_t event_time_ms; /* 0 when absent */
    int compression;        /* a Magnetar__Pulsar__CompressionType */
    uint32_t uncompressed_size;
    const char *producer_name; /* never NULL after success */
    size_t producer_name_len;
    const uint8_t *partition_key; /* the message key; NULL when absent */
    size_t partition_key_len;
    const uint8_t *ordering_key; /* Key_Shared ordering key; NULL when absent */
    size_t ordering_key_len;
} pw_payload;

/* Parses the payload p[0, len) of a SEND or MESSAGE frame (the bytes after the command) or a
 * stored entry, as laid out in the header comment. A 0x0e02 prefix is accepted wherever it
 * appears first; a broker refuses one in a client's SEND by checking has_broker_entry_metadata.
 * When the 0x0e01 checksum is present and verify_checksum is true, the CRC32C over everything after
 * the checksum field is checked. MessageMetadata is unpacked into scratch memory on the stack
 * (allocating only for very large metadata, released before return) and the fields of pw_payload
 * are extracted; the whole metadata is available through pw_metadata_unpack. Returns MG_OK;
 * MG_ECORRUPT on a checksum mismatch; MG_EPROTO for a truncated prefix, a size past the end,
 * BrokerEntryMetadata longer than MG_PULSAR_BROKER_ENTRY_METADATA_BYTES_MAX or not parsing,
 * MessageMetadata not parsing or lacking producer_name, sequence_id or publish_time, either
 * holding a field numbered 0 (pw_has_field_zero),
 * num_messages_in_batch < 1 or > MG_PULSAR_BATCH_MESSAGES_MAX; MG_ENOMEM. *out is fully written
 * on MG_OK and unspecified otherwise. */
int pw_payload_parse(const uint8_t *p, size_t len, bool verify_checksum, pw_payload *out);

/* Unpacks the whole MessageMetadata of a payload that pw_payload_parse accepted (p is the same
 * buffer, pl its result) into a new message owned by the caller, released with
 * pw_metadata_free. Returns MG_OK, MG_EPROTO (not the same bytes), MG_ENOMEM. */
int pw_metadata_unpack(const uint8_t *p, const pw_payload *pl,
                       Magnetar__Pulsar__MessageMetadata **out);

/* Releases metadata from pw_metadata_unpack. NULL is a no-op. */
void pw_metadata_free(Magnetar__Pulsar__MessageMetadata *md);

/* --- Batch payloads (src/pulsar/batch.c) ------------------------------------------------------
 * The data of an entry whose MessageMetadata has num_messages_in_batch, once uncompressed, is
 * its messages one after another:
 *
 *   [size u32][SingleMessageMetadata of size bytes][payload of payload_size bytes] ...
 *
 * (big-endian size; payload_size is the SingleMessageMetadata field). The count comes from the
 * MessageMetadata, not from the batch. Compression is the client's business: these functions
 * see uncompressed bytes only. */

/* One message of a batch, as pw_batch_next found it. */
typedef struct pw_batch_msg {
    /* Its metadata, unpacked (owned: pw_batch_msg_free); strings are NUL-terminated copies. */
    Magnetar__Pulsar__SingleMessageMetadata *smm;
    /* Its bytes, inside the caller's batch: never copied. */
    const uint8_t *payload;
    size_t payload_len;
} pw_batch_msg;

/* Reads the message that starts at batch[*pos], *pos <= batch_len. On MG_OK *out holds it (the
 * caller releases it with pw_batch_msg_free; out->payload points into batch, valid while batch
 * is) and *pos has moved past it. On error *pos is unchanged and out->smm is NULL. Errors:
 * MG_EPROTO when the bytes left are not such a message (fewer than 4, a size past the end,
 * metadata that does not parse, lacks payload_size or holds a field numbered 0
 * (pw_has_field_zero), a payload_size negative or past the end); MG_ENOMEM. */
int pw_batch_next(const uint8_t *batch, size_t batch_len, size_t *pos, pw_batch_msg *out);

/* Releases a message's metadata and sets m->smm to NULL; a no-op when it is already NULL. */
void pw_batch_msg_free(pw_batch_msg *m);

/* Bytes pw_batch_put writes for smm and its payload: 4 + packed metadata + payload_size. smm must
 * hold a payload_size >= 0. */
size_t pw_batch_msg_size(const Magnetar__Pulsar__SingleMessageMetadata *smm);

/* Appends one message [size][smm][payload] at dst[0, dst_capacity) and returns its length in
 * *written. smm->payload_size must equal payload_len (payload may be NULL when it is 0). Returns
 * MG_OK; MG_EINVAL (smm not a complete SingleMessageMetadata, payload_size disagreeing);
 * MG_ELIMIT when payload_len exceeds INT32_MAX or the message does not fit dst_capacity (nothing
 * written then). */
int pw_batch_put(uint8_t *dst, size_t dst_capacity,
                 const Magnetar__Pulsar__SingleMessageMetadata *smm, const void *payload,
                 size_t payload_len, size_t *written);

/* --- Encoding ----------------------------------------------------------------------------------
 * Every encoder checks the command first: its type must be known, the matching sub-command set
 * and every required field present (protobuf_c_message_check); otherwise MG_EINVAL, since
 * building an incomplete command is the caller's mistake. A result larger than
 * MG_PULSAR_FRAME_BYTES_MAX is MG_ELIMIT. On success *out is a new buffer with refcount 1 owned
 * by the caller, its length the encoded size; on error *out is untouched. */

/* A simple frame [total_size][command_size][cmd] for a command without payload. MG_EINVAL also
 * for SEND and MESSAGE, which need pw_payload_head_encode. */
int pw_command_encode(const Magnetar__Pulsar__BaseCommand *cmd, mg_buf **out);

/* The head of a payload frame: [total_size = 4 + command_size + payload_len][command_size][cmd].
 * The caller sends payload_len bytes of payload right after it (for MESSAGE, a stored entry or
 * its client bytes, as stored). cmd->type must be SEND or MESSAGE (MG_EINVAL otherwise). */
int pw_payload_head_encode(const Magnetar__Pulsar__BaseCommand *cmd, size_t payload_len,
                           mg_buf **out);

/* As pw_payload_head_encode, with prefix[0, prefix_len) (a BrokerEntryMetadata prefix) copied
 * right after the command: for an entry held without its prefix (the tail cache keeps the
 * client's bytes as they came), sent to a consumer that asked for broker entry metadata. The
 * frame's sizes count prefix_len + payload_len after the command. */
int pw_payload_head_encode_prefixed(const Magnetar__Pulsar__BaseCommand *cmd, const uint8_t *prefix,
                                    size_t prefix_len, size_t payload_len, mg_buf **out);

/* The client bytes of a SEND: [0x0e01][crc32c][metadata_size][md][data], the checksum computed.
 * data may be NULL when data_len is 0. MG_EINVAL when md lacks a required field. */
int pw_send_payload_encode(const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                           size_t data_len, mg_buf **out);

/* A whole payload frame in one buffer: pw_payload_head_encode followed by
 * pw_send_payload_encode's bytes. For clients and tests that publish small messages. */
int pw_payload_frame_encode(const Magnetar__Pulsar__BaseCommand *cmd,
                            const Magnetar__Pulsar__MessageMetadata *md, const void *data,
                            size_t data_len, mg_buf **out);

/* --- Common replies ----------------------------------------------------------------------------
 * Convenience encoders for the commands a broker sends most; same ownership and errors as
 * pw_command_encode (message strings are copied into the frame; NULL means ""). */

/* SUCCESS{request_id}. */
int pw_encode_success(uint64_t request_id, mg_buf **out);

/* ERROR{request_id, error, message}; server_error is a Magnetar__Pulsar__ServerError. */
int pw_encode_error(uint64_t request_id, int server_error, const char *message, mg_buf **out);

/* PING{} and PONG{}. */
int pw_encode_ping(mg_buf **out);
int pw_encode_pong(mg_buf **out);

/* SEND_RECEIPT{producer_id, sequence_id, highest_sequence_id (omitted when < 0),
 * message_id{ledger_id, entry_id}}. */
int pw_encode_send_receipt(uint64_t producer_id, int64_t sequence_id, int64_t highest_sequence_id,
                           int64_t ledger_id, int64_t entry_id, mg_buf **out);

/* SEND_ERROR{producer_id, sequence_id, error, message}. */
int pw_encode_send_error(uint64_t producer_id, int64_t sequence_id, int server_error,
                         const char *message, mg_buf **out);

/* The head of a MESSAGE frame: MESSAGE{consumer_id, message_id{ledger_id, entry_id, partition
 * (omitted when < 0)}, redelivery_count (omitted when 0)} announcing payload_len bytes of
 * payload, which the caller sends right after it. */
int pw_encode_message_head(uint64_t consumer_id, int64_t ledger_id, int64_t entry_id,
                           int32_t partition, uint32_t redelivery_count, size_t payload_len,
                           mg_buf **out);

/* --- Topic names (src/pulsar/topic.c)
 * ----------------------------------------------------------------
 * "persistent://tenant/namespace/topic", optionally "...topic-partition-N" for partition N of a
 * partitioned topic. Every part is 1 or more characters of [A-Za-z0-9_=:.-] ('/' only between
 * parts), within the MG_PULSAR_*_BYTES_MAX limits. */

typedef struct pw_topic_name {
    char domain[MG_PULSAR_DOMAIN_BYTES_MAX + 1]; /* "persistent" or "non-persistent" */
    bool persistent;
    char tenant[MG_PULSAR_TENANT_BYTES_MAX + 1];
    char ns[MG_PULSAR_NAMESPACE_BYTES_MAX + 1];
    char local[MG_PULSAR_TOPIC_LOCAL_BYTES_MAX + 1]; /* the topic part, with any suffix */
    int partition;                                   /* N of "-partition-N", else -1 */
    char full[MG_PULSAR_TOPIC_BYTES_MAX + 1];        /* "persistent://t/n/x[-partition-N]" */
    char base[MG_PULSAR_TOPIC_BYTES_MAX + 1];        /* full without "-partition-N" */
} pw_topic_name;

/* Parses a topic name as Pulsar clients write it:
 *   "topic"                              -> persistent://public/default/topic
 *   "tenant/ns/topic"                    -> persistent://tenant/ns/topic
 *   "persistent://tenant/ns/topic"       (and "non-persistent://...": parsed; the broker decides)
 * A topic part ending in "-partition-N", N a decimal without sign or leading zeros below
 * MG_PULSAR_TOPIC_PARTITIONS_MAX, names partition N; with any other text after "-partition-"
 * the whole part is an ordinary name (Pulsar does the same). The legacy form with a cluster
 * ("persistent://tenant/cluster/ns/topic") is refused.
 * Returns MG_OK, or MG_EINVAL with a one-line reason in err (cut to err_size; err may be NULL
 * when err_size is 0), e.g. "topic name 'a//t' has an empty namespace". *out is written only on
 * MG_OK. */
int pw_topic_name_parse(const char *s, pw_topic_name *out, char *err, size_t err_size);

/* The name of partition `partition` of the partitioned topic base (whose own partition is -1).
 * Returns MG_OK, MG_EINVAL (base is itself a partition, or partition is outside
 * [0, MG_PULSAR_TOPIC_PARTITIONS_MAX)), MG_ELIMIT (the suffixed topic part would exceed
 * MG_PULSAR_TOPIC_LOCAL_BYTES_MAX). out may not alias base. */
int pw_topic_partition_name(const pw_topic_name *base, int partition, pw_topic_name *out);

/* Writes the managed-ledger name of a persistent topic, "tenant/ns/persistent/topic" (the
 * topic part with any partition suffix; names never need escaping since they cannot contain
 * '/' or '%'), NUL-terminated, into dst[0, cap). Returns MG_OK, MG_EINVAL for a non-persistent
 * topic (it has no managed ledger), MG_ELIMIT when cap is too small. */
int pw_topic_ml_name(const pw_topic_name *t, char *dst, size_t cap);

#endif
