/*
 * What the broker sees of the Kafka-protocol shim (kop_int.h says how it works): started and
 * closed with the broker, told when a topic gets entries or closes.
 *
 * Threads: the broker's loop.
 */
#ifndef MG_BROKER_KOP_KOP_H
#define MG_BROKER_KOP_KOP_H

#include <stdint.h>

typedef struct br_broker br_broker;
typedef struct br_topic br_topic;
typedef struct kop_server kop_server;

/* Listens on host:port (port 0: ephemeral) and serves the Kafka protocol for b's topics.
 * Errors: MG_ENOMEM, the bind or listen error (MG_EEXIST: port taken). */
int kop_start(br_broker *b, const char *host, uint16_t port, kop_server **out);
uint16_t kop_port(const kop_server *k);
/* Stops listening, closes every connection (their readers close), then calls closed(arg). */
void kop_close(kop_server *k, void (*closed)(void *arg), void *arg);
/* New entries in t: wakes the fetches waiting for them. */
void kop_topic_entries_added(br_topic *t);
/* t closes: the shim's readers of t close (each holds a reference to t until its cursor closed)
 * and its state is freed. */
void kop_topic_closing(br_topic *t);

#endif
