/*
 * The fixed limits of the offload module (src/offload), each with the reason for its value
 * (docs/offload.md, "Limits"). Every one is checked where input crosses it: a writer's options
 * and entries, a reader's footer and index, a driver's names.
 */
#ifndef MG_OFFLOAD_LIMITS_H
#define MG_OFFLOAD_LIMITS_H

/* Raw entry bytes grouped into one block before it is compressed. A point read costs one whole
 * block, so blocks stay small; zstd compresses 1 MiB about as well as 4 MiB, and fewer blocks
 * keep the index small. 2 MiB by default. */
#define OF_BLOCK_BYTES_MIN     (1u * 1024 * 1024)
#define OF_BLOCK_BYTES_MAX     (4u * 1024 * 1024)
#define OF_BLOCK_BYTES_DEFAULT (2u * 1024 * 1024)

/* One entry: Pulsar's maxMessageSize is 5 MiB, plus the batch and broker metadata around it.
 * An entry larger than block_bytes travels alone in its own block. */
#define OF_ENTRY_BYTES_MAX (8u * 1024 * 1024)

/* Each entry in a block is preceded by its id (8 bytes) and size (4 bytes). */
#define OF_ENTRY_HEADER_BYTES 12u

/* The largest raw block a reader accepts: a full block, or one entry larger than any block. A
 * hostile index cannot make a reader allocate more than this for one block. */
#define OF_BLOCK_RAW_BYTES_MAX (OF_ENTRY_HEADER_BYTES + OF_ENTRY_BYTES_MAX)

/* Entries in one object: a ledger rolls long before (managedLedgerMaxEntriesPerLedger is 50,000
 * by default); the bound keeps counts in range of the index's 32-bit per-block fields. */
#define OF_ENTRIES_MAX 1000000000ull

/* Blocks in one object: the reader keeps the whole index in memory (40 bytes a block), so this
 * bounds that to 10 MiB (512 GiB of entries in 2 MiB blocks). */
#define OF_BLOCKS_MAX 262144u

/* The metadata stored with an object (the managed ledger's name and such): small, kept in the
 * index. */
#define OF_METADATA_BYTES_MAX 1024u

/* An object's name (its id), without the terminating NUL: what the managed ledger records and the
 * driver uses as a file name or an object key. */
#define OF_NAME_BYTES_MAX 128u

/* The filesystem driver's directory path: leaves room under PATH_MAX (4096) for "/" and a
 * temporary name. */
#define OF_DIR_BYTES_MAX 3800u

/* zstd levels a writer accepts: 1 (fast) to 19 (slow, for archives); 3 is zstd's own default. */
#define OF_ZSTD_LEVEL_MIN     1
#define OF_ZSTD_LEVEL_MAX     19
#define OF_ZSTD_LEVEL_DEFAULT 3

/* An error message (struct of_err): names the object and what is wrong. */
#define OF_ERR_MSG_BYTES 256u

_Static_assert(OF_BLOCK_BYTES_MAX <= OF_BLOCK_RAW_BYTES_MAX,
               "a full block fits the reader's bound");
_Static_assert(OF_BLOCK_RAW_BYTES_MAX < 0x7FFFFFFFu, "block sizes are u32 in the index");
_Static_assert(OF_ENTRIES_MAX < (1ull << 62), "entry ids fit an int64_t");

#endif
