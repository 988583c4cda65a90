/*
 * The chat topic naming rule, shared by everything that produces to or consumes from the chat
 * topics (the Job worker, the HTTP push API, the gateway): a deployment has a fixed number of
 * chat topics, persistent://public/default/chat-<i> for i in [0, topics), and a message goes to
 * the topic its routing string hashes to, so that every message of one room (or one key, one
 * member id) lands in one topic and keeps its order there.
 *
 * ROUTING STRING (docs/chat_gateway.md "Chat topics")
 *   room pushes   the room id, "type://id" ("live://1000")
 *   key pushes    the first key
 *   mid pushes    the first member id, in decimal
 *   all pushes    none: always chat-0
 *
 * The hash is 32-bit FNV-1a (offset basis 0x811c9dc5, prime 0x01000193, one byte at a time,
 * as specified by Fowler, Noll and Vo), the index the hash modulo the topic count. Changing the
 * topic count moves rooms between topics: a deployment sets it once.
 *
 * THREADING: every function is reentrant and keeps no state.
 */
#ifndef MG_CHAT_GATEWAY_TOPICS_H
#define MG_CHAT_GATEWAY_TOPICS_H

#include <stddef.h>
#include <stdint.h>

/* The prefix of every chat topic's name; the index follows in decimal. */
#define CG_CHAT_TOPIC_PREFIX "persistent://public/default/chat-"

/* The 32-bit FNV-1a hash of p[0, n) (p may be NULL when n is 0; "" hashes to the offset basis,
 * 0x811c9dc5). Cannot fail. */
uint32_t cg_fnv1a32(const void *p, size_t n);

/* The index of the chat topic for the NUL-terminated routing string among topics topics
 * (cg_fnv1a32 of its bytes, without the NUL, modulo topics). topics must be at least 1
 * (asserted). */
uint32_t cg_chat_topic_index(const char *routing, uint32_t topics);

/* Writes the name of chat topic index, CG_CHAT_TOPIC_PREFIX followed by the index in decimal,
 * NUL-terminated, into dst of cap bytes. Returns MG_OK, MG_EINVAL when dst is too small (dst is
 * then an empty string when cap > 0). CG_CHAT_TOPIC_NAME_BYTES_MAX bytes (limits.h) always
 * suffice. */
int cg_chat_topic_name(uint32_t index, char *dst, size_t cap);

#endif
