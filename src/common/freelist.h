/*
 * A bounded free list of fixed-size blocks, for the per-operation contexts of a hot path (one
 * per produced entry at each layer) that cannot be embedded in their caller's context because
 * they outlive it or are created without one.
 *
 * A free list belongs to one object (a connection, a ledger, a storage) and is touched only on
 * that object's loop or thread: no locks. It keeps at most count_max released blocks for reuse;
 * a block released beyond that goes back to the allocator, so a burst costs memory only while
 * it lasts. The object empties its free list when it is freed (mg_freelist_clear); blocks still
 * in use then belong to whoever holds them, which the owning object's life cycle rules out.
 *
 * Invariants:
 *   1. count <= count_max; every block on the list was obtained from mg_freelist_get of the
 *      same list (so it has block_bytes bytes) and is not in use.
 *   2. mg_freelist_get returns zeroed memory, as mg_calloc does, whether the block is reused or
 *      new: a caller that replaced mg_calloc keeps its behaviour.
 *
 * Fault injection (alloc.h) sees only the allocations that reach the allocator: a block reused
 * from the list never fails.
 */
#ifndef MG_COMMON_FREELIST_H
#define MG_COMMON_FREELIST_H

#include "common/alloc.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct mg_freelist_node {
    struct mg_freelist_node *next;
} mg_freelist_node;

typedef struct mg_freelist {
    mg_freelist_node *head;
    size_t block_bytes;
    uint32_t count;     /* blocks on the list */
    uint32_t count_max; /* blocks kept at most */
} mg_freelist;

/* Prepares an empty list of blocks of block_bytes bytes (at least a pointer's), keeping at most
 * count_max of them. Never fails (no allocation). */
static inline void mg_freelist_init(mg_freelist *fl, size_t block_bytes, uint32_t count_max)
{
    fl->head = NULL;
    fl->block_bytes =
        block_bytes < sizeof(mg_freelist_node) ? sizeof(mg_freelist_node) : block_bytes;
    fl->count = 0;
    fl->count_max = count_max;
}

/* A zeroed block of block_bytes: a released one, or a new one from mg_calloc. NULL when the
 * allocator fails (MG_ENOMEM for the caller). Release it with mg_freelist_put on the same list,
 * or with mg_free. */
static inline void *mg_freelist_get(mg_freelist *fl)
{
    mg_freelist_node *n = fl->head;
    if (n == NULL)
        return mg_calloc(1, fl->block_bytes);
    fl->head = n->next;
    fl->count--;
    memset(n, 0, fl->block_bytes);
    return n;
}

/* Releases a block from mg_freelist_get of this list: kept for reuse, or freed when count_max
 * are kept already. NULL is a no-op. */
static inline void mg_freelist_put(mg_freelist *fl, void *block)
{
    if (block == NULL)
        return;
    if (fl->count >= fl->count_max) {
        mg_free(block);
        return;
    }
    mg_freelist_node *n = block;
    n->next = fl->head;
    fl->head = n;
    fl->count++;
}

/* Frees every block on the list; the list stays usable. */
static inline void mg_freelist_clear(mg_freelist *fl)
{
    while (fl->head != NULL) {
        mg_freelist_node *n = fl->head;
        fl->head = n->next;
        mg_free(n);
    }
    fl->count = 0;
}

#endif
