/*
 * The fixed limits of the bookie (src/bookie: storage, journal, entry logs, index, caches, RPC
 * server and client), each with the reason for its value; relations between them are checked at
 * compile time at the end (docs/common.md, "Limits").
 */
#ifndef MG_BOOKIE_LIMITS_H
#define MG_BOOKIE_LIMITS_H

#include "common/limits.h"

/* Bookie location index and caches (piece: index, src/bookie/index.c and cache.c). */
/* RocksDB's own info LOG in the index directory: a few files of a few MiB are enough to read
 * what went wrong; without a bound it grows for the life of the bookie. */
#define BK_INDEX_INFO_LOG_FILES_MAX        4
#define BK_INDEX_INFO_LOG_BYTES_MAX        (8 * 1024 * 1024)
/* Bloom filter on the index's keys: 10 bits per key (~1 % false positives) keeps a lookup of a
 * missing entry (a reader probing past the end of a ledger) to one memtable check. */
#define BK_INDEX_BLOOM_BITS_PER_KEY        10
/* One put_batch indexes at most one flushed write-cache half, so it shares that bound; the
 * batch is built in memory before the one synced write. */
#define BK_INDEX_PUT_BATCH_MAX             BK_WRITE_CACHE_HALF_ENTRIES_MAX
/* Entries in one write-cache half. Each slot costs 128 bytes of preallocated tables (item and
 * its sorted copy, 2 x 4 bytes of entry hash, 2 x 16 of ledger hash, 8 of bookkeeping); a
 * 32 MiB half of 1 KiB entries needs 32 Ki slots, so 1 Mi (entries of 32 bytes) is far past any
 * useful setting and caps the tables at 128 MiB per half. */
#define BK_WRITE_CACHE_HALF_ENTRIES_MAX    (1u << 20)
/* Read cache accounting: each cached entry is charged its payload length plus this much, the
 * node (64 bytes: key, buffer view, hash and FIFO links), the allocator's header (16) and its
 * share of the bucket array, rounded up. */
#define BK_READ_CACHE_ENTRY_OVERHEAD_BYTES 96
/* The read cache's bucket array is sized for one bucket per this many bytes of budget (entries
 * are KiB-sized Pulsar batches, so chains stay short), at most BK_READ_CACHE_BUCKETS_MAX
 * buckets (8 MiB of pointers). Smaller entries only lengthen the chains. */
#define BK_READ_CACHE_BYTES_PER_BUCKET     512
#define BK_READ_CACHE_BUCKETS_MAX          (1u << 20)

/* Bookie entry logs and O_DIRECT reads (piece: elog, src/bookie/entrylog.c and aio.c). */
/* The largest entry payload a bookie stores. A Pulsar frame is 5 MiB by default
 * (maxMessageSize) and operators raise it somewhat; 16 MiB leaves room for that plus the
 * BrokerEntryMetadata prefix, and a corrupt length field can never make a reader allocate more. */
#define BK_ENTRY_BYTES_MAX             (16u * 1024 * 1024)
/* Entry-log size bounds: offsets in a bk_location are u32, so a log ends below 4 GiB; below
 * 64 KiB a log would roll over on almost every flush (tests use 256 KiB). */
#define BK_ENTRYLOG_BYTES_MIN          (64u * 1024)
#define BK_ENTRYLOG_BYTES_MAX          0xFFFFFFFFull
/* Records are gathered in a write buffer and written with one pwrite when it is full or at
 * sync: 4 MiB writes run at the disk's sequential bandwidth. The buffer also holds the ledger
 * map written at roll-over (BK_ENTRYLOG_LEDGERS_MAX * 16 bytes must fit). */
#define BK_ENTRYLOG_WRITE_BUFFER_BYTES (4u * 1024 * 1024)
/* Ledgers in one entry log. The writer keeps the log's ledger map in memory and garbage
 * collection loads it whole; Pulsar ledgers hold thousands of entries, so a 1 GiB log holds a
 * few hundred. Past 65536 (a 1 MiB map) a log rolls over early. */
#define BK_ENTRYLOG_LEDGERS_MAX        65536
/* Entry logs in one directory: 65536 logs of 1 GiB are 64 TiB, past any single disk. The table
 * of logs is a sorted array searched by bisection. */
#define BK_ENTRYLOGS_MAX               65536
/* In-flight O_DIRECT reads of one bk_aio. io_setup counts against fs.aio-max-nr (65536 by
 * default, shared by every process on the host); an NVMe device gains nothing past a queue depth
 * of a few hundred. */
#define BK_AIO_DEPTH_MAX               1024
/* One asynchronous read: enough for the largest record whatever its alignment, so any single
 * entry can be read with one request; range reads are split by the caller. The buffer of a read
 * is this large at most, so depth * this bounds the memory of in-flight reads. */
#define BK_AIO_READ_BYTES_MAX          (BK_ENTRY_BYTES_MAX + 64u * 1024)
/* Reads waiting for a slot, per class: this many times the depth. More means the caller is
 * issuing faster than the disk completes; MG_EAGAIN pushes back on it. */
#define BK_AIO_QUEUE_FACTOR            4

/* Bookie journal (piece: journal, src/bookie/journal.c). */
/* A journal record's payload is one entry, i.e. one Pulsar batch bounded by the 5 MiB frame
 * (maxMessageSize), which operators raise somewhat; 16 MiB (equal to BK_ENTRY_BYTES_MAX, since
 * every journalled entry must also fit an entry log) leaves room, and a corrupt length field
 * read at replay can never make the journal allocate more. */
#define BK_JOURNAL_RECORD_BYTES_MAX  (16u * 1024 * 1024)
/* Records accepted but not yet completed. The queue is a ring preallocated at open (~72 bytes
 * a slot); 1 Mi slots (72 MiB) is far past what a disk syncing every millisecond needs and
 * marks a mistaken setting. */
#define BK_JOURNAL_QUEUE_RECORDS_MAX (1u << 20)
/* One group is assembled in a buffer of this size at most (allocated at open); past a few MiB
 * a larger write gains nothing and only delays the acknowledgements it carries. */
#define BK_JOURNAL_GROUP_BYTES_MAX   (64u * 1024 * 1024)
/* The group-commit wait. BookKeeper uses 1-2 ms; a second would already time clients out. */
#define BK_JOURNAL_GROUP_WAIT_US_MAX 1000000u
/* Segment file size: below 4 KiB almost every group would roll over; above 64 GiB a segment
 * could never be deleted before the whole disk is journal. */
#define BK_JOURNAL_SEGMENT_BYTES_MIN (4ull * 1024)
#define BK_JOURNAL_SEGMENT_BYTES_MAX (64ull * 1024 * 1024 * 1024)
/* Segment files found at open: 65536 segments of 256 MiB are 16 TiB, so more means checkpoints
 * stopped long ago (or tiny segments); open refuses with MG_ELIMIT rather than replay that. */
#define BK_JOURNAL_SEGMENTS_MAX      65536u

/* Bookie RPC (piece: rpc; src/bookie/protocol.c, client.c, server.c; wire format in
 * src/bookie/protocol.h). */
/* An ADD whose payload exceeds BK_ENTRY_BYTES_MAX (the entry-log block above) is refused with
 * MG_ELIMIT. */
/* The payload of one READ_RANGE response: large enough that one catch-up round trip moves
 * a useful amount (a few milliseconds of sequential disk bandwidth) and still at least one
 * maximal entry; the server caps a request's max_bytes at this (or at its lower setting). */
#define BK_RANGE_BYTES_MAX                   (16u * 1024 * 1024)
/* Entries in one READ_RANGE response. Each costs at most 18 header bytes (an EntryRef), so the
 * header stays under 600 KiB; 32768 entries of a full 16 MiB response average 512 bytes, less
 * than any useful batch. */
#define BK_RANGE_ENTRIES_MAX                 32768u
/* A frame header (a protobuf Request or Response): a request is under 100 bytes; a response is
 * at most BK_RANGE_ENTRIES_MAX EntryRefs, a few fixed fields and an error message. */
#define BK_HEADER_BYTES_MAX                  (1024u * 1024)
/* frame_len (the bytes after the length field): the largest header plus the largest payload,
 * 17 MiB. A peer announcing more is broken or hostile and its connection is closed. */
#define BK_FRAME_BYTES_MAX                   (BK_HEADER_BYTES_MAX + BK_RANGE_BYTES_MAX)
/* The human-readable detail of an error response is one sentence; longer ones are cut. */
#define BK_MESSAGE_BYTES_MAX                 256
/* A connection reads into buffers of this size (libuv's own suggestion); a frame that does not
 * fit gets a buffer of its own size, so a payload is never split across buffers. */
#define BK_READ_BUF_BYTES                    (64u * 1024)
/* "host:port": a DNS name is at most 253 bytes, plus brackets, colon and port. */
#define BK_ADDR_BYTES_MAX                    300
/* Client defaults (bk_client_opts). A request unanswered for 10 s means a bookie in trouble
 * (BookKeeper's addEntryTimeout is 10 s too); connecting takes a round trip, 5 s is generous. */
#define BK_CLIENT_REQUEST_TIMEOUT_MS_DEFAULT 10000u
#define BK_CLIENT_CONNECT_TIMEOUT_MS_DEFAULT 5000u
/* Requests pending on one connection: 10000 is hundreds of milliseconds of adds at full rate
 * for a broker; the hard cap keeps a mistyped setting from pinning unbounded memory. */
#define BK_CLIENT_PENDING_DEFAULT            10000u
#define BK_CLIENT_PENDING_MAX                (1u << 20)
/* Distinct bookie addresses one client keeps a connection (or its retry state) for; a cluster
 * has tens to hundreds of bookies. Idle entries are evicted to make room. */
#define BK_CLIENT_CONNECTIONS_MAX            1024u
/* Addresses of one resolved host name tried in order per connection attempt: a name usually
 * has an IPv6 and an IPv4 address ("localhost": ::1 and 127.0.0.1); 8 covers round-robin DNS. */
#define BK_CLIENT_RESOLVED_ADDRS_MAX         8u
/* Reconnect backoff after repeated failures: the first retry is immediate, then doubling from
 * the minimum to the maximum, so a dead bookie costs one connect attempt per 2 s at most. */
#define BK_CLIENT_BACKOFF_MS_MIN             50u
#define BK_CLIENT_BACKOFF_MS_MAX             2000u
/* Server: requests in progress on one connection before it stops reading (the default), and
 * the hard cap of that setting. */
#define BK_SERVER_INFLIGHT_DEFAULT           1000u
#define BK_SERVER_INFLIGHT_MAX               65536u
/* Server: response bytes queued on one connection before it stops reading: a few full range
 * responses; a client that does not read its responses cannot make the bookie buffer more. */
#define BK_SERVER_CONN_OUT_BYTES_MAX         (64u * 1024 * 1024)
/* Server: connections; a bookie serves the brokers of its cluster (a few per broker). */
#define BK_SERVER_CONNECTIONS_MAX            4096u

/* Bookie storage (src/bookie/storage.c). */
/* Defaults (bookie.h documents them). */
#define BK_DEFAULT_WRITE_CACHE_BYTES (64u << 20)
#define BK_DEFAULT_READ_CACHE_BYTES  (64u << 20)
#define BK_DEFAULT_READAHEAD_BYTES   (4u << 20)
#define BK_DEFAULT_AIO_DEPTH         32
/* Adds accepted but not yet acknowledged. Bounds the journal's queue and the completion
 * queue together, so a completion can always be queued. */
#define BK_ADDS_INFLIGHT_MAX         65536
/* Adds waiting for room in the write cache while a flush runs; past it MG_EAGAIN. */
#define BK_ADDS_WAITING_MAX          65536
/* Reads in progress; past it MG_EAGAIN (the server stops reading its sockets). */
#define BK_READS_INFLIGHT_MAX        16384
/* One index look-up returns at most this many consecutive locations. */
#define BK_RUN_ENTRIES_MAX           16384
/* One disk read covers at most this many bytes (aio.c refuses more than 8 MiB). */
#define BK_DISK_READ_BYTES_MAX       (8u << 20)
/* A stretch is read as chunks of about this size, all submitted at once: several 1 MiB reads in
 * flight keep the device busier than one large read (fio's sequential read does the same). */
#define BK_DISK_CHUNK_BYTES          (1u << 20)
#define BK_DISK_CHUNKS_MAX           16
/* A walk (walk_plan) reads at most this much beyond what its entries should take (plus 1/8):
 * the bytes wasted when the stretch turns out shorter than planned. */
#define BK_WALK_SLACK_BYTES          (64u * 1024)
/* Read-ahead state is kept for this many ledgers (least recently used dropped). */
#define BK_RA_LEDGERS_MAX            256
/* Only reads of at most this many entries start read-ahead windows: a reader asking for large
 * ranges already reads sequentially in large I/Os (and the broker prefetcher reads ahead for
 * it); a window would read the same bytes twice. */
#define BK_RA_TRIGGER_ENTRIES_MAX    16
#define BK_RA_ENTRIES_MAX            65536
/* bk_storage_resume writes a probe file of this size in each storage directory: enough that a
 * disk with only a few blocks free still refuses it, small enough to cost nothing. */
#define BK_RESUME_PROBE_BYTES        (1u << 20)
/* The write cache is flushed at least this often when it holds anything. */
#define BK_FLUSH_INTERVAL_MS         1000
/* Garbage collection: look at the entry logs this often; compact a log whose live bytes fell
 * below this share of its size. */
#define BK_GC_INTERVAL_MS            60000
#define BK_GC_LIVE_SHARE_MIN         0.5
/* The size an entry log rolls over at when the caller sets none. */
#define BK_ENTRYLOG_BYTES_DEFAULT    (1ull << 30)

/* I/O fault injection (src/bookie/io.c). Descriptors above this are not tracked for path filters
 * (a fault with a path filter then does not fire for them). The bookie keeps a few dozen files
 * open. */
#define BK_IO_TRACKED_FDS_MAX       65536
#define BK_IO_PATH_FILTER_BYTES_MAX 256

/* Per-add request free lists (common/freelist.h). */
/* Released requests (client.c) a client (a loop) keeps for reuse, per list (TCP ~120 bytes,
 * in-process ~300 bytes each, 1.2 MiB at most): the adds a loop has in flight when every entry
 * holds one message; past it a burst costs the allocator, as before. A list never holds more than
 * the client once had in flight. */
#define BK_CLIENT_REQ_POOL_MAX  4096u
/* Released add contexts (storage.c add_ctx) a storage keeps for reuse (~100 bytes each, 400 KiB at
 * most): the adds in flight when every entry holds one message; past it a burst costs the
 * allocator, as before. The list never holds more than the storage once had in flight. */
#define BK_STORAGE_ADD_POOL_MAX 4096u

/* Relations between the limits above, checked at compile time. */
_Static_assert(BK_INDEX_PUT_BATCH_MAX >= BK_WRITE_CACHE_HALF_ENTRIES_MAX,
               "one index batch must hold every entry of a flushed write-cache half");
_Static_assert(BK_ENTRYLOG_BYTES_MIN <= BK_ENTRYLOG_BYTES_DEFAULT &&
                   BK_ENTRYLOG_BYTES_DEFAULT <= BK_ENTRYLOG_BYTES_MAX,
               "the default entry-log size must lie within BK_ENTRYLOG_BYTES_MIN..MAX");
_Static_assert(BK_ENTRYLOG_BYTES_MAX <= 0xFFFFFFFFull,
               "record offsets in an entry log are u32: a log must end below 4 GiB");
_Static_assert((unsigned long long)BK_ENTRYLOG_LEDGERS_MAX * 16 <= BK_ENTRYLOG_WRITE_BUFFER_BYTES,
               "the ledger map written at roll-over (16 bytes a ledger) must fit the write buffer");
_Static_assert(BK_AIO_READ_BYTES_MAX >= BK_ENTRY_BYTES_MAX,
               "one asynchronous read must hold the largest entry whatever its alignment");
_Static_assert(BK_DISK_READ_BYTES_MAX <= BK_AIO_READ_BYTES_MAX,
               "a disk read of the storage layer must be one the aio layer accepts");
_Static_assert(BK_DEFAULT_AIO_DEPTH <= BK_AIO_DEPTH_MAX,
               "the default aio depth must be within BK_AIO_DEPTH_MAX");
_Static_assert(BK_JOURNAL_RECORD_BYTES_MAX <= BK_ENTRY_BYTES_MAX,
               "a journalled entry must fit an entry log");
_Static_assert(BK_ENTRY_BYTES_MAX <= BK_JOURNAL_RECORD_BYTES_MAX,
               "every entry a bookie accepts must fit one journal record");
_Static_assert(BK_JOURNAL_SEGMENT_BYTES_MIN <= BK_JOURNAL_SEGMENT_BYTES_MAX,
               "the journal segment size bounds must be ordered");
_Static_assert(BK_RANGE_BYTES_MAX >= BK_ENTRY_BYTES_MAX,
               "a READ_RANGE response must hold at least one maximal entry");
/* A maximal response (every entry listed at 18 bytes, fixed fields, message) fits the header
 * bound, and a maximal entry fits a frame with any request header. */
_Static_assert((unsigned long long)BK_RANGE_ENTRIES_MAX * 18 + BK_MESSAGE_BYTES_MAX + 256 <=
                   BK_HEADER_BYTES_MAX,
               "the header of a READ_RANGE response listing BK_RANGE_ENTRIES_MAX entries must fit "
               "BK_HEADER_BYTES_MAX");
_Static_assert((unsigned long long)BK_ENTRY_BYTES_MAX + 4 + 256 <= BK_FRAME_BYTES_MAX,
               "an ADD of the largest entry with its request header must fit an RPC frame");
_Static_assert((unsigned long long)BK_FRAME_BYTES_MAX + 4 <= 0xFFFFFFFFull,
               "an RPC frame's length is a u32");
_Static_assert(BK_SERVER_CONN_OUT_BYTES_MAX >= BK_FRAME_BYTES_MAX + 4,
               "a connection's output queue must hold at least one full range response");
_Static_assert(BK_CLIENT_PENDING_DEFAULT <= BK_CLIENT_PENDING_MAX,
               "the default of pending client requests must be within its hard cap");
_Static_assert(BK_CLIENT_BACKOFF_MS_MIN <= BK_CLIENT_BACKOFF_MS_MAX,
               "the client's reconnect back-off starts at or below its maximum");
_Static_assert(BK_SERVER_INFLIGHT_DEFAULT <= BK_SERVER_INFLIGHT_MAX,
               "the default of server requests in progress must be within its hard cap");
_Static_assert(MG_FD_BOOKIE_MAX == BK_SERVER_CONNECTIONS_MAX,
               "the descriptor budget caps a bookie's share at its server's connection limit");
_Static_assert(BK_RA_TRIGGER_ENTRIES_MAX <= BK_RA_ENTRIES_MAX,
               "a read that triggers read-ahead must fit a read-ahead window");

#endif
