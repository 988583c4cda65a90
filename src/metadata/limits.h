/*
 * The fixed limits of the metadata store (src/metadata), each with the reason for its value;
 * relations between them are checked at compile time below (docs/common.md, "Limits").
 */
#ifndef MG_METADATA_LIMITS_H
#define MG_METADATA_LIMITS_H

/* Metadata store, ZooKeeper backend (piece: mdzk, src/metadata/zk.c). */
/* A connect string lists a handful of host:port pairs and a chroot path; ensembles have 3, 5 or 7
 * servers, so 64 hosts and 4 KiB are far past any real setting and catch a pasted file. */
#define MD_ZK_TARGET_BYTES_MAX  4096
#define MD_ZK_HOSTS_MAX         64
/* A get with a watch on a missing node reads again when an exists check finds the node created
 * meanwhile; each round means the node was created and deleted again within one round trip.
 * Past this many rounds the churn is pathological and the read fails with MG_EIO. */
#define MD_ZK_GET_ROUNDS_MAX    16
/* A create with MD_CREATE_PARENTS recreates the missing ancestors again when another client
 * deletes one of them in between; past this many rounds it fails with MG_ENOTFOUND. */
#define MD_ZK_PARENT_ROUNDS_MAX 8
/* Closing waits this long for requests already sent to get their real results (a live server
 * answers in milliseconds; a dead one makes them fail within a connect attempt) before it closes
 * the handle and fails what is left with MG_ECLOSED. */
#define MD_ZK_CLOSE_DRAIN_MS    5000
/* After a session expiry a new handle is created; if that fails (host names do not resolve, out
 * of memory) it is tried again after this delay, until it works or the store is closed. */
#define MD_ZK_REINIT_RETRY_MS   1000

/* Metadata paths: topic names plus a few segments; Pulsar bounds topic names well below this.
 * Callers that build paths (ledger, cursor, broker) size their buffers with it. */
#define MD_PATH_BYTES_MAX 1024

/* Limits of the metadata store: ZooKeeper refuses packets above jute.maxbuffer (default 0xfffff
 * bytes, about 1 MiB); a value must leave room for the path and the request header. In-flight
 * and watch counts bound the memory a client can pin; a caller past them gets MG_ELIMIT and backs
 * off. */
#define MD_VALUE_BYTES_MAX     (1000 * 1024)
#define MD_CLIENT_INFLIGHT_MAX 4096
#define MD_CLIENT_WATCHES_MAX  4096

/* The id allocator reserves this many ids per round trip. A restart skips what is left of a
 * block: with 64-bit ids, gaps cost nothing, and fewer compare-and-set rounds mean fewer
 * conflicts between brokers creating ledgers at once. */
#define MD_ID_BLOCK          16
#define MD_ID_COUNTERS_MAX   16
#define MD_ID_NAME_BYTES_MAX 64
#define MD_ID_RETRIES_MAX    64

/* Pulsar's default zooKeeperSessionTimeoutMillis. */
#define MD_ZK_SESSION_TIMEOUT_MS_DEFAULT 30000

/* Embedded store (src/metadata/rocksdb.c). RocksDB's own LOG files: enough history to diagnose a
 * failure, bounded on disk. */
#define MD_ROCKSDB_INFO_LOG_FILES_MAX 4
#define MD_ROCKSDB_INFO_LOG_BYTES_MAX (4u << 20)
/* Metadata is small; a smaller memtable than RocksDB's 64 MiB default bounds memory. */
#define MD_ROCKSDB_WRITE_BUFFER_BYTES (8u << 20)

/* Relations between the limits above, checked at compile time. */
_Static_assert(MD_VALUE_BYTES_MAX + MD_PATH_BYTES_MAX < 0xfffff,
               "a largest value and a longest path must leave room for the request header within "
               "ZooKeeper's default jute.maxbuffer (0xfffff bytes)");

#endif
