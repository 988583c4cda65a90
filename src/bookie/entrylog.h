/*
 * Entry logs: the bookie's ledger-sorted data files (BookKeeper's entry logger, our own format).
 * The storage's flush thread appends the write cache, sorted by (ledger, entry), so each
 * ledger's entries lie contiguous on disk and a catch-up reader is served by a few large
 * sequential reads. ../shared/REFERENCE.md §2, ../shared/ARCHITECTURE.md §5-6.
 *
 * On-disk format (all integers big-endian):
 *
 *   File <dir>/<id as 8 lower-case hex digits>.log; ids start at 1 (0 is never a log).
 *
 *   Header block, bytes [0, 4096) so the records start aligned for O_DIRECT:
 *     [0]  "MGEL"              magic
 *     [4]  u32 version         1
 *     [8]  u32 log_id          the id in the file name
 *     [12] u32 flags           0
 *     [16] u64 map_offset      0 until roll-over, then where the ledger map starts (= the end
 *                              of the last record)
 *     [24] u64 map_len         ledger map bytes (16 per ledger)
 *     [32] u32 map_crc         CRC32C of the ledger map bytes
 *     [36] u32 header_crc      CRC32C of bytes [0, 36)
 *     the rest of the block is zero.
 *
 *   Records, back to back from offset 4096:
 *     [0]  u32 record_len      the whole record, this header included (24 + payload)
 *     [4]  u32 crc             CRC32C of bytes [8, record_len): ledger id, entry id, payload
 *     [8]  i64 ledger_id
 *     [16] i64 entry_id
 *     [24] payload             at most BK_ENTRY_BYTES_MAX bytes
 *
 *   Ledger map (written at roll-over after the last record): [i64 ledger_id][u64 bytes] per
 *   ledger, ascending by ledger id; bytes = the sum of the ledger's record_len in this log.
 *
 * Invariants:
 *   1. Writing always goes to a log created by this process (opening starts a new log with id =
 *      highest existing + 1): nothing is ever appended after a tail that a crash may have torn.
 *   2. A log is "finished" once it rolled over: its records and ledger map never change again.
 *      Only the current log grows, and only the one writer thread appends to it.
 *   3. A record lies wholly below log_bytes_max, unless it is the only record of its log (a
 *      record larger than log_bytes_max - 4096 goes alone into a fresh log), so every offset
 *      and size fits a u32.
 *   4. A location returned by append is valid for readers only after the next
 *      bk_entrylogs_sync() returned MG_OK: until then its bytes may still sit in the write
 *      buffer (the storage keeps the entries in its write cache until the sync).
 *   5. The header and the map are checked with CRC32C; a log whose header or map does not check
 *      (a crash during roll-over, a log that was current at a crash) is still readable: its
 *      records carry their own checksums, and its ledger map is rebuilt by scanning.
 *
 * Writer state machine (the flush thread):
 *
 *     OPEN --append/sync/roll-over: any pwrite, fdatasync or file creation fails--> ERROR
 *
 *   ERROR is sticky: append and sync return the error that caused it (MG_ENOSPC, MG_EIO, ...)
 *   until the logs are closed and reopened, or bk_entrylogs_resume starts a new log, because
 *   after a failed write or fdatasync nobody knows what reached the disk of the log being
 *   written. The storage turns it into its read-only state. Readers keep working in ERROR.
 *
 *     ERROR --bk_entrylogs_resume (a new log could be created)--> OPEN
 *
 * Threads: open/close are not concurrent with anything. append, sync and current_id belong to
 * one writer thread. Everything else (reads, direct_fd, log_size, list, ledger_map, scan,
 * remove) may be called from any thread at any time; a mutex guards the table of logs (held
 * only for lookups, never across I/O), each log is reference-counted while a reader uses it,
 * and a removed log's descriptors are closed when its last reader is done.
 *
 * Descriptors are opened lazily: a finished log gets a read descriptor at its first read and
 * an O_DIRECT one at its first bk_entrylogs_direct_fd(); both stay open until the log is
 * removed or the logs are closed.
 *
 * All file operations go through the bk_io (io.h), so tests inject ENOSPC, EIO, failing
 * fdatasync and short reads.
 *
 * Private to src/bookie (the storage node's public API is bookie/bookie.h).
 */
#ifndef MG_BOOKIE_ENTRYLOG_H
#define MG_BOOKIE_ENTRYLOG_H

#include "bookie/io.h"

#include <stddef.h>
#include <stdint.h>

/* Where an entry's record lies: the log, the offset of the record header and the size of the
 * whole record (header included). The index (index.h) maps (ledger, entry) to one. */
typedef struct bk_location {
    uint32_t log_id;
    uint32_t offset;
    uint32_t size;
} bk_location;

/* A decoded record. payload points into the parsed bytes (no copy). */
typedef struct bk_record {
    int64_t ledger_id;
    int64_t entry_id;
    const uint8_t *payload;
    size_t payload_len;
    size_t record_size; /* the whole record, header included */
} bk_record;

#define BK_ENTRYLOG_HEADER_BYTES   4096u
#define BK_RECORD_HEADER_BYTES     24u
#define BK_ENTRYLOG_FORMAT_VERSION 1u

typedef struct bk_entrylogs bk_entrylogs;

/* Opens the entry logs in dir (which must exist; the storage creates it): lists the existing
 * logs (reading their headers; a header that does not check is logged and the log kept as one
 * without a map) and creates a new current log with id = highest + 1, fsyncing the directory.
 * log_bytes_max: roll-over size, 0 = 1 GiB, else within [BK_ENTRYLOG_BYTES_MIN,
 * BK_ENTRYLOG_BYTES_MAX]. io is borrowed and must outlive the logs.
 * [out] *out: owned by the caller (bk_entrylogs_close).
 * Errors: MG_EINVAL (log_bytes_max out of range, dir too long), MG_ENOTFOUND (no directory dir),
 * MG_ELIMIT (BK_ENTRYLOGS_MAX logs
 * already, or the id space is exhausted), MG_ENOMEM, MG_EIO/MG_ENOSPC/... from the file system.
 * Synchronous (start-up). */
int bk_entrylogs_open(const char *dir, bk_io *io, uint64_t log_bytes_max, bk_entrylogs **out);

/* Closes every descriptor and frees the logs. Writes nothing: appends not covered by a
 * successful sync are lost, as in a crash, and the current log is left without a ledger map (it
 * is scanned when its map is asked for). No other call may run or start. NULL is a no-op. */
void bk_entrylogs_close(bk_entrylogs *el);

/* Appends one record for (ledger_id, entry_id) with len payload bytes (copied; payload is not
 * kept), rolling over to a new log first when the record would pass log_bytes_max or the
 * current log already holds BK_ENTRYLOG_LEDGERS_MAX ledgers. The record goes into the write
 * buffer, which is written out when full; records larger than the buffer are written directly.
 * [out] *out: the record's location, valid for readers after the next successful sync.
 * Errors: MG_EINVAL (ledger_id < 0), MG_ELIMIT (len > BK_ENTRY_BYTES_MAX; or a roll-over needs a
 * log beyond BK_ENTRYLOGS_MAX / the id space), MG_ENOMEM (the ledger map could not grow) — these
 * leave nothing appended and the writer usable; the sticky ERROR state's code (MG_ENOSPC, MG_EIO,
 * ...) when a write or a roll-over failed now or before. Writer thread only. */
int bk_entrylogs_append(bk_entrylogs *el, int64_t ledger_id, int64_t entry_id, const void *payload,
                        size_t len, bk_location *out);

/* Writes the buffer out and fdatasyncs the current log, and before it the log finished by the
 * last roll-over (if not yet synced) and the directory (if a log was created since the last
 * sync). On MG_OK every location returned by append so far is durable and readable.
 * Errors: the sticky ERROR state's code (MG_ENOSPC, MG_EIO, ...). Writer thread only. */
int bk_entrylogs_sync(bk_entrylogs *el);

/* The id of the log being written. Writer thread only (or when no writer runs). */
uint32_t bk_entrylogs_current_id(const bk_entrylogs *el);

/* Leaves ERROR: the log being written is left as it is (finished without a ledger map; the
 * locations of what the failed flush wrote were never returned as synced, so nothing refers to
 * them) and a new log becomes the current one. Everything appended since the last successful
 * sync must be appended again. MG_OK (also when not in ERROR), or the error of creating the
 * new log (still in ERROR), MG_ELIMIT (no further log may exist). Writer thread. */
int bk_entrylogs_resume(bk_entrylogs *el);

/* Size of a record header (24). */
size_t bk_record_header_bytes(void);

/* Decodes the record starting at p, with avail bytes available there (more may follow: only
 * the first record_len bytes are looked at). Checks the length bounds and the CRC.
 * Returns MG_OK and fills *out (payload points into p); MG_EAGAIN when avail is too short:
 * out->record_size is then the whole record's size once the length field is there (avail >= 4
 * and the length is plausible), else 0 (read at least bk_record_header_bytes()); MG_ECORRUPT
 * when the length is out of bounds (smaller than the header, or a payload past
 * BK_ENTRY_BYTES_MAX: also what zeroed bytes after a torn tail give) or the CRC does not match.
 * Pure; any thread. */
int bk_record_parse(const uint8_t *p, size_t avail, bk_record *out);

/* Reads the record at loc into dst (at least loc.size bytes) with pread through the bk_io and
 * validates it. [out] *out: the record, payload pointing into dst.
 * Errors: MG_ENOTFOUND (no log loc.log_id), MG_ELIMIT (dst_capacity < loc.size), MG_ECORRUPT
 * (the size is not a record's, the location lies before the first record or past the end of
 * the file, the CRC or length does not match), MG_EIO/... from the read. Any thread. */
int bk_entrylogs_read_sync(bk_entrylogs *el, bk_location loc, uint8_t *dst, size_t dst_capacity,
                           bk_record *out);

/* A read-only O_DIRECT descriptor of log log_id for asynchronous reads (aio.h), opened at the
 * first call and cached: every call returns the same descriptor. It stays valid until the log
 * is removed or the logs are closed; the caller must not close it, and must not use it after
 * bk_entrylogs_remove (the storage removes a log only once no index entry or read refers to it).
 * Errors: MG_ENOTFOUND (no such log), MG_EINVAL (the file system refuses O_DIRECT), MG_EIO/...
 * Any thread. */
int bk_entrylogs_direct_fd(bk_entrylogs *el, uint32_t log_id, int *fd);

/* The end of the log's records: for the current log every byte appended so far (written out
 * or still buffered), for a finished log the offset of its ledger map, for a log found at open
 * without a valid map the file's size then. 0 for an unknown log. Any thread. */
uint64_t bk_entrylogs_log_size(bk_entrylogs *el, uint32_t log_id);

/* Fills ids[0, n) with the ids of the finished logs (every log but the current one), ascending,
 * and returns how many there are in total (n = min(that, capacity)). Any thread. */
size_t bk_entrylogs_list(bk_entrylogs *el, uint32_t *ids, size_t capacity);

/* Calls fn(ledger_id, bytes, arg) for every ledger with records in log log_id, ascending by
 * ledger id, bytes = the sum of its record sizes. From the stored ledger map, or by scanning the
 * records when the log has none or it does not check (a log that was current at a crash).
 * Errors: MG_ENOTFOUND (no such log), MG_ESTATE (log_id is the current log: its map is not
 * final), MG_ENOMEM, MG_ELIMIT (a scanned log holds more than BK_ENTRYLOG_LEDGERS_MAX ledgers),
 * MG_EIO/... Any thread. */
int bk_entrylogs_ledger_map(bk_entrylogs *el, uint32_t log_id,
                            void (*fn)(int64_t ledger_id, uint64_t bytes, void *arg), void *arg);

/* Calls fn for every valid record of log log_id in file order, with its location; rec->payload
 * is valid during the call only. Stops at the end of the records, or at the first corrupt or
 * truncated record (returning MG_OK: a torn tail is normal for a log that was current at a
 * crash), or when fn returns non-zero (then returns fn's value if it is negative, else MG_OK).
 * For the current log only the bytes written out so far are scanned.
 * Errors: MG_ENOTFOUND, MG_ENOMEM, MG_EIO/... from reads. Any thread. */
int bk_entrylogs_scan(bk_entrylogs *el, uint32_t log_id,
                      int (*fn)(const bk_record *rec, bk_location loc, void *arg), void *arg);

/* Removes a finished log: drops it from the table and unlinks its file (the directory is not
 * fsynced: a log that comes back after a crash only holds bytes that garbage collection already
 * found dead). Reads in progress finish on the open descriptors; later ones get MG_ENOTFOUND.
 * Errors: MG_ENOTFOUND, MG_ESTATE (the current log), MG_EIO/... from unlink. Any thread. */
int bk_entrylogs_remove(bk_entrylogs *el, uint32_t log_id);

#endif
