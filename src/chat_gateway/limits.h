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

#endif
