/*
 * Intrusive circular doubly linked list, as in the Linux kernel's list.h: an object that goes
 * into a list embeds an mg_link, and the list itself is one mg_link (the head) that points to
 * the first and last nodes. Nothing is allocated; MG_CONTAINER_OF gets the object back from its
 * link.
 *
 * INVARIANTS
 *   1. A head is never NULL-linked: an empty list's head points to itself (mg_list_init).
 *   2. A node that is in no list points to itself (mg_list_init, or after mg_list_remove), so
 *      removing it again is a no-op.
 *   3. A node is in at most one list per link; an object in several lists embeds one link each.
 *
 * Iterate with the head as the end mark; to remove the current node while iterating, take its
 * next first:
 *
 *     for (mg_link *l = head->next; l != head;) {
 *         thing *t = MG_CONTAINER_OF(l, thing, link);
 *         l = l->next;
 *         ...
 *     }
 *
 * Not thread-safe: a list belongs to one loop (ARCHITECTURE.md §4). Header only.
 */
#ifndef MG_COMMON_LIST_H
#define MG_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct mg_link {
    struct mg_link *prev, *next;
} mg_link;

/* The object of type `type` whose member `member` is at ptr. */
#define MG_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Makes l an empty list head, or a node in no list. */
static inline void mg_list_init(mg_link *l)
{
    l->prev = l->next = l;
}

/* Whether the list head has no node (for a node: whether it is in no list). */
static inline bool mg_list_empty(const mg_link *head)
{
    return head->next == head;
}

/* Appends l, which must be in no list, at the tail of the list head. */
static inline void mg_list_push(mg_link *head, mg_link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Unlinks l from its list and leaves it pointing to itself (a no-op on a node in no list). */
static inline void mg_list_remove(mg_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

#endif
