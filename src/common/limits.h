/*
 * Every fixed limit in Magnetar, in one place, each with the reason for its value
 * (SQLite's sqliteLimit.h is the model). A limit that an operator may change is a default
 * here and a configuration option elsewhere.
 */
#ifndef MG_COMMON_LIMITS_H
#define MG_COMMON_LIMITS_H

/* A log line is formatted on the stack; longer messages are cut with "...". */
#define MG_LOG_LINE_BYTES_MAX 2048

/* Configuration: option names and values are short words and paths; a config file larger
 * than this is almost certainly the wrong file. */
#define MG_CONFIG_KEY_BYTES_MAX   64
#define MG_CONFIG_VALUE_BYTES_MAX 4096
#define MG_CONFIG_FILE_BYTES_MAX  (1024 * 1024)

/* HTTP admin/metrics server. Admin requests carry small JSON bodies; Pulsar's admin API has no
 * request larger than a few KiB. Connections are operators and scrapers, not clients. */
#define MG_HTTP_BODY_BYTES_MAX  (1024 * 1024)
#define MG_HTTP_CONNECTIONS_MAX 1024
#define MG_HTTP_ROUTES_MAX      128
#define MG_HTTP_PATH_PARAMS_MAX 8
#define MG_HTTP_TIMEOUT_S       30

/* Metrics: a registry bounds its series so a bug that builds labels from data cannot grow it
 * without bound. Label values are topic names at most (Pulsar caps topic names near 256). */
#define MG_METRICS_SERIES_MAX            65536
#define MG_METRICS_LABELS_MAX            8
#define MG_METRICS_NAME_BYTES_MAX        128
#define MG_METRICS_LABEL_VALUE_BYTES_MAX 512

/* A buffer chain holds at most this many slices; a Pulsar MESSAGE frame needs at most 4
 * (header, command, metadata prefix, payload), a batch of dispatched entries a few dozen. */
#define MG_CHAIN_SLICES_MAX 64

/* Configuration parser (common/config.c, piece: config). A subcommand with more options than
 * this would have an unreadable --help; the bound lets the parser keep per-option state on the
 * stack. A config file line holds a key, '=', a value and a little indentation around them. */
#define MG_CONFIG_OPTIONS_MAX    128
#define MG_CONFIG_LINE_BYTES_MAX (MG_CONFIG_KEY_BYTES_MAX + MG_CONFIG_VALUE_BYTES_MAX + 64)

/* Cross-loop queue (common/queue.c, buffers-and-queue piece). A queue preallocates its ring
 * and its drain batch (two pointers per slot), and a drain pass handles at most its capacity, so
 * the capacity also bounds the time one pass holds the consumer loop. Hand-offs between loops
 * need hundreds to a few thousand slots; a million is far past any sane setting and marks a
 * bug that would pin 16 MiB per queue. */
#define MG_QUEUE_CAPACITY_MAX (1u << 20)

/* CRC32C, histograms and the metrics registry (piece: hist). */
/* A histogram with p precision bits has about (64 - p) * 2^p buckets of 8 bytes. p = 12 (0.025 %
 * error, ~1.7 MiB when value_max is near 2^64) is finer than any latency measurement is accurate;
 * more would only cost memory. */
#define MG_HIST_PRECISION_BITS_MAX     12
/* Histograms behind metrics: 5 bits keep the relative error under 3.2 %, and 2^40 - 1 covers
 * 12.7 days in microseconds or 1 TiB in bytes, in 1152 buckets (9 KiB per series). */
#define MG_METRICS_HIST_PRECISION_BITS 5
#define MG_METRICS_HIST_VALUE_MAX      ((1ull << 40) - 1)
/* Families are registered by code, not built from data: a few hundred exist in practice. */
#define MG_METRICS_FAMILIES_MAX        4096
/* HELP texts are one sentence. */
#define MG_METRICS_HELP_BYTES_MAX      1024

/* HTTP server (common/http.c, piece: http). The longest admin API path has about a dozen
 * segments (/admin/v2/persistent/{t}/{ns}/{topic}/subscription/{sub}/skip/{n}); 32 leaves room
 * and keeps the per-request segment table on the stack. Methods are short tokens ("OPTIONS" is
 * the longest standard one). A bind host is an address literal or a DNS name (at most 253). */
#define MG_HTTP_PATH_SEGMENTS_MAX   32
#define MG_HTTP_METHOD_BYTES_MAX    16
#define MG_HTTP_HOST_BYTES_MAX      256
/* Connections the HTTP server admits past its limit while it closes the idle connection that
 * has waited longest (nginx closes idle keep-alive connections the same way when it runs out):
 * a new request, e.g. the health check, is served at once instead of waiting in the backlog for
 * an idle timeout. Connections in the middle of a request are never closed for it; when all
 * are busy and these slots are taken too, a new connection is closed at once. */
#define MG_HTTP_CONNECTIONS_RESERVE 8

/* Listeners (common/listen.c, piece: listen). Accepting pauses for MIN ms when the process runs
 * out of descriptors, doubling on each failure up to MAX ms: descriptors come back when clients
 * close, and a second is a short wait for a client next to a spinning core. A batch of accepts
 * per readiness event keeps one busy listener from starving the loop's other work. */
#define MG_LISTEN_BACKOFF_MS_MIN   10u
#define MG_LISTEN_BACKOFF_MS_MAX   1000u
#define MG_LISTEN_ACCEPT_BATCH_MAX 64u
/* The soft RLIMIT_NOFILE is raised to the hard limit but no further than this: connection
 * tables are sized by it, and a million descriptors is beyond what one process here serves. */
#define MG_FD_LIMIT_MAX            (1u << 20)
/* Descriptors kept out of the connection budget (a quarter of the limit, within these bounds):
 * RocksDB's files, the journal and entry logs, ledger handles, epoll and event fds, metadata
 * and bookie client sockets, and the admin port. An idle standalone uses about 40. */
#define MG_FD_RESERVE_MIN          64u
#define MG_FD_RESERVE_MAX          2048u
/* The admin HTTP server's share never goes below this, so health and metrics stay reachable. */
#define MG_FD_HTTP_MIN             8u

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

/* Managed cursors (piece: cursor, src/cursor). */
/* Acknowledged-ranges set: containers of 65536 entries; 2^20 of them span 68 G entries above a
 * mark-delete position, far past any backlog a subscription keeps (Pulsar trims at retention),
 * and cap the container headers at 40 MiB per cursor. Past it an ack is refused (MG_ELIMIT) and
 * the entry is simply redelivered. */
#define MC_RANGESET_CONTAINERS_MAX     (1u << 20)
/* A durable cursor is written at most once per this interval while acks arrive (Pulsar's
 * markDeleteRatePerSecond is 1/s): a crash loses at most this much acknowledgement work, which
 * is redelivered, while the metadata store sees one write per cursor per second. */
#define MC_PERSIST_INTERVAL_MS_DEFAULT 1000u
/* CursorInfo size: ZooKeeper refuses values near 1 MiB (the store's own limit is 1000 KiB, hard
 * maximum here), and every persist rewrites the whole node, so the default keeps a write under
 * 256 KiB (about 5000 ranges; Pulsar persists 1000 ranges in the metadata store by default).
 * Ranges past the budget are dropped from the record (redelivered after a crash). */
#define MC_CURSOR_INFO_BYTES_DEFAULT   (256u * 1024)
#define MC_CURSOR_INFO_BYTES_HARD_MAX  (1000u * 1024)
/* A batch's ack set: Pulsar batches hold 1000 messages by default (batchingMaxMessages); 128
 * words (8192 messages) leaves room, and a larger set from a client is refused. */
#define MC_ACK_SET_WORDS_MAX           128u
/* Partially acknowledged batches kept per cursor (each up to 1 KiB of bits); past it a partial
 * ack is refused (the batch is redelivered whole, at-least-once). Pulsar bounds unacked
 * messages per subscription at 200000 by default, far fewer batches. */
#define MC_BATCH_ENTRIES_MAX           65536u
/* Entries dispatched and not yet acknowledged whose message count the cursor remembers (a
 * hash table of 24-byte slots at most half full: 3 MiB at most) for the message backlog; past
 * it an ack counts one message. Pulsar stops dispatching at 200000 unacked messages per
 * subscription (maxUnackedMessagesPerSubscription), i.e. far fewer batches. */
#define MC_PENDING_ENTRIES_MAX         (1u << 16)
/* One mc_read_entries call: Pulsar's dispatcher reads 100 entries at a time by default
 * (dispatcherMaxReadBatchSize); 10000 bounds the filtered array built per call. */
#define MC_READ_ENTRIES_MAX            10000
/* Bookie reads per mc_read_entries while every entry read was already acknowledged (contiguous
 * acked runs are skipped without reading, so this only bounds pathological patterns); past it
 * the call completes with MG_EAGAIN and no entries: call again. */
#define MC_READ_ROUNDS_MAX             64
/* Callers waiting for one flush of a cursor (close, resets, explicit flushes). */
#define MC_FLUSH_WAITERS_MAX           64u
/* A cursor's name is a subscription name; Pulsar keeps them short, and the metadata path
 * (/managed-ledgers/<topic>/<name>) must stay under the store's 1024-byte path limit. */
#define MC_NAME_BYTES_MAX              256u
/* Cursors of one managed ledger in one mc_group (subscriptions of a topic). */
#define MC_GROUP_CURSORS_MAX           4096u

/* Ledgers and managed ledgers (piece: ledger, src/ledger). */
/* Bookies in one ensemble. BookKeeper ensembles are 2-5 bookies; striping over more gains
 * nothing, and recovery fences every one of them. Per-entry bookie sets are 32-bit masks. */
#define ML_ENSEMBLE_SIZE_MAX        16
/* Ensembles of one ledger (one per ensemble change). 1024 ensembles of 16 addresses stay under
 * half of the metadata store's 1000 KiB value; a ledger that lost a thousand bookies is better
 * closed (the add fails with MG_ELIMIT, the managed ledger rolls over). */
#define ML_ENSEMBLES_MAX            1024
/* Bookies remembered as failed by one ledger's writer (never chosen again as a replacement). */
#define ML_EXCLUDED_BOOKIES_MAX     64
/* Compare-and-set rounds on one metadata node when the version moved but the state still
 * allows the write (a concurrent recovery bumping the version); more means a fight. */
#define ML_MD_ATTEMPTS_MAX          8
/* Whole recovery restarts (the metadata changed under it before it could be fenced). */
#define ML_RECOVERY_ATTEMPTS_MAX    8
/* Entries one ml_ledger_read gathers with single-entry reads when the ensemble is striped
 * (ensemble_size > write_quorum: no bookie holds a contiguous range). */
#define ML_STRIPED_READ_ENTRIES_MAX 64
/* A managed ledger's name "tenant/namespace/persistent/topic": Pulsar caps topic names well
 * below this, and "/managed-ledgers/" + name + "/" + a cursor name must fit MD_PATH_BYTES_MAX
 * (1024). */
#define ML_NAME_BYTES_MAX           512
/* Ledgers in one managed ledger's list: a LedgerInfo is about 30 bytes, so 20000 of them stay
 * under the metadata store's 1000 KiB value. At the limit the current ledger stops rolling
 * over (retention normally keeps the list far shorter). */
#define ML_LEDGERS_MAX              20000
/* Read handles of closed ledgers a managed ledger keeps open (catch-up readers touch one or
 * two ledgers at a time; each handle costs a metadata read to open). */
#define ML_READ_HANDLES_MAX         8
/* Entries returned by one ml_read: Pulsar dispatches at most a few hundred per read; this caps
 * the array allocated for the result. */
#define ML_READ_ENTRIES_MAX         10000
/* Ledgers one add is written to before its error is reported: a failed ledger is closed and
 * the add retried on the next one (ordering and message indexes kept), at most this often. */
#define ML_ADD_ATTEMPTS_MAX         3
/* Pending-add timer of a writing ledger: checks add timeouts at a quarter of add_timeout_ms,
 * within these bounds. */
#define ML_TIMER_PERIOD_MS_MIN      5
#define ML_TIMER_PERIOD_MS_MAX      1000

/* Metadata paths: topic names plus a few segments; Pulsar bounds topic names well below this.
 * Callers that build paths (ledger, cursor, broker) size their buffers with it. */
#define MD_PATH_BYTES_MAX 1024

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
_Static_assert(BR_CONN_MEMORY_BYTES_MIN / 2 >= BR_MESSAGE_BYTES_MAX + BR_FRAME_PADDING_BYTES,
               "each half of the smallest connection budget holds a largest frame");
/* A connection's share of the output half is the half divided among the connections that have
 * consumers, within these bounds: 1 MiB keeps a reading consumer's socket busy between two write
 * completions (the kernel's send buffer holds a few MiB more). */
#define BR_CONN_OUT_BYTES_MIN      (1024u * 1024)
/* Dispatch paused by the broker-wide output budget resumes once the queues fell below this
 * percentage of it: waking every waiting consumer at each write completion would cost a pass
 * over them per write. */
#define BR_CONN_OUT_RESUME_PCT     75u
/* While the output budget is used up, a connection whose queue has not moved (no write
 * completed) for this long is closed, consumers and all: its bytes would otherwise hold the
 * budget forever and starve consumers that read (a Pulsar client reads its socket whatever the
 * application does: one that stops for 10 s is stuck or hostile). Checked this often. */
#define BR_CONN_OUT_STALL_MS       10000u
#define BR_CONN_OUT_STALL_CHECK_MS 1000u
/* Before CONNECT a frame may be only as large as a CONNECT can be: the command carries
 * client_version, auth_method_name, auth_data and, through a proxy, the original principal, auth
 * data and method, plus a proxy URL and version. Authentication data is the large part: JWTs
 * are a few KiB; Kerberos (SASL) tokens reach Windows' MaxTokenSize, 48000 bytes; a proxy
 * forwards the client's besides its own. 128 KiB holds two such tokens and every string. A
 * larger frame is refused at its header (magnetar_broker_refused_total{reason=
 * "frame_before_connect"}) instead of buffering up to max_message_size for a stranger. */
#define BR_CONNECT_FRAME_BYTES_MAX (128u * 1024)
/* A connection must send CONNECT within this long of being accepted (pulsar clients send it
 * at once); otherwise it is closed, so sockets that never speak, or trickle bytes, do not keep
 * a connection slot. */
#define BR_CONNECT_TIMEOUT_MS      (10u * 1000)
/* Connections refused for a frame before CONNECT are logged one by one at debug level, and at
 * warning level at most once per this period (with the count since the last line). */
#define BR_REFUSED_LOG_PERIOD_MS   10000u

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
 * src/pulsar/topic.c). Tenants and namespaces are short administrative names; a topic's own part
 * (with any -partition-N suffix) gets 255 bytes, a little more than Kafka's 249-byte topic
 * names, so every Kafka topic name maps onto it. */
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
/* Partitions the admin API creates for one topic (PUT .../partitions). A client attaches one
 * producer or consumer per partition, all on its one connection to a standalone broker, and a
 * connection carries at most BR_CONN_HANDLES_MAX (4096) of them: 1024 leaves room for a producer
 * and a consumer of the topic in the same client, with more besides. Pulsar's
 * maxNumPartitionsPerPartitionedTopic defaults to unlimited; 65536 partitions were accepted
 * here once and then no producer could attach. Larger counts already stored stay readable up
 * to MG_PULSAR_TOPIC_PARTITIONS_MAX. */
#define BR_ADMIN_PARTITIONS_MAX        1024

/* Client compression codecs (src/client/compress.c, piece: codec). */
/* The largest payload the client compresses or decompresses (MessageMetadata.uncompressed_size).
 * Pulsar's default maxMessageSize is 5 MiB and Magnetar's broker accepts messages up to
 * BR_MESSAGE_BYTES_MAX (15 MiB); 16 MiB is the next power of two, so any payload a broker can
 * store also fits uncompressed (checked at compile time in compress.c). The bound matters on
 * receive: Pulsar clients check only the compressed size against maxMessageSize and trust
 * uncompressed_size (a u32: up to 4 GiB), and a 5 MiB LZ4 payload really can expand past 1 GiB
 * (ZSTD far more), so without it one message could make the client allocate gigabytes. Batches
 * are far smaller (Pulsar's batchingMaxBytes is 128 KiB); only a single very compressible
 * message larger than this is refused (MG_ELIMIT) rather than inflated. */
#define PC_UNCOMPRESSED_BYTES_MAX (16u * 1024 * 1024)

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

#endif
