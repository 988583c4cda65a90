/*
 * Tests for common/list.h: an empty head points to itself; pushes keep insertion order both
 * ways; removing the first, a middle and the last node relinks their neighbours and leaves the
 * removed node pointing to itself, so a second remove is a no-op; removing while iterating
 * (taking next first) visits every node; MG_CONTAINER_OF finds the object from a link that is
 * not its first member.
 */
#include "common/list.h"

#include <criterion/criterion.h>
#include <stdint.h>

TestSuite(list, .timeout = 10);

typedef struct item {
    int value;
    mg_link link;
    mg_link other; /* a second list the same object can be in */
} item;

#define ITEMS 5

/* The values of the list head in order, forwards into fwd and backwards into bwd; the count. */
static int walk(mg_link *head, int *fwd, int *bwd)
{
    int n = 0;
    for (mg_link *l = head->next; l != head; l = l->next)
        fwd[n++] = MG_CONTAINER_OF(l, item, link)->value;
    int m = 0;
    for (mg_link *l = head->prev; l != head; l = l->prev)
        bwd[m++] = MG_CONTAINER_OF(l, item, link)->value;
    cr_assert_eq(n, m);
    return n;
}

static void setup_items(mg_link *head, item *it)
{
    mg_list_init(head);
    for (int i = 0; i < ITEMS; i++) {
        it[i].value = i;
        mg_list_init(&it[i].link);
        mg_list_push(head, &it[i].link);
    }
}

Test(list, empty_head_points_to_itself)
{
    mg_link head;
    mg_list_init(&head);
    cr_assert(mg_list_empty(&head));
    cr_assert_eq(head.next, &head);
    cr_assert_eq(head.prev, &head);
}

Test(list, push_keeps_order)
{
    mg_link head;
    item it[ITEMS];
    setup_items(&head, it);
    cr_assert_not(mg_list_empty(&head));
    int fwd[ITEMS], bwd[ITEMS];
    cr_assert_eq(walk(&head, fwd, bwd), ITEMS);
    for (int i = 0; i < ITEMS; i++) {
        cr_assert_eq(fwd[i], i);
        cr_assert_eq(bwd[i], ITEMS - 1 - i);
    }
}

Test(list, remove_first_middle_last)
{
    mg_link head;
    item it[ITEMS];
    setup_items(&head, it);
    mg_list_remove(&it[0].link);
    mg_list_remove(&it[2].link);
    mg_list_remove(&it[ITEMS - 1].link);
    int fwd[ITEMS], bwd[ITEMS];
    cr_assert_eq(walk(&head, fwd, bwd), 2);
    cr_assert_eq(fwd[0], 1);
    cr_assert_eq(fwd[1], 3);
    cr_assert_eq(bwd[0], 3);
    cr_assert_eq(bwd[1], 1);
    for (int i = 0; i < ITEMS; i += 2) {
        cr_assert(mg_list_empty(&it[i].link), "a removed node points to itself");
        cr_assert_eq(it[i].link.prev, &it[i].link);
    }
}

Test(list, remove_twice_is_a_noop)
{
    mg_link head;
    item it[ITEMS];
    setup_items(&head, it);
    mg_list_remove(&it[1].link);
    mg_list_remove(&it[1].link);
    int fwd[ITEMS], bwd[ITEMS];
    cr_assert_eq(walk(&head, fwd, bwd), ITEMS - 1);
    cr_assert_eq(fwd[1], 2);
    /* A node initialised and never pushed is removed without harm too. */
    item lone = { .value = 9 };
    mg_list_init(&lone.link);
    mg_list_remove(&lone.link);
    cr_assert(mg_list_empty(&lone.link));
    cr_assert_eq(walk(&head, fwd, bwd), ITEMS - 1);
}

Test(list, remove_all_while_iterating)
{
    mg_link head;
    item it[ITEMS];
    setup_items(&head, it);
    int seen = 0;
    for (mg_link *l = head.next; l != &head;) {
        item *t = MG_CONTAINER_OF(l, item, link);
        l = l->next;
        cr_assert_eq(t->value, seen);
        mg_list_remove(&t->link);
        seen++;
    }
    cr_assert_eq(seen, ITEMS);
    cr_assert(mg_list_empty(&head));
}

Test(list, push_after_remove_and_two_lists)
{
    mg_link head, other;
    item it[ITEMS];
    setup_items(&head, it);
    mg_list_init(&other);
    /* The same objects in a second list, in reverse, through their second link. */
    for (int i = ITEMS - 1; i >= 0; i--)
        mg_list_push(&other, &it[i].other);
    mg_list_remove(&it[0].link);
    mg_list_push(&head, &it[0].link); /* moved to the tail */
    int fwd[ITEMS], bwd[ITEMS];
    cr_assert_eq(walk(&head, fwd, bwd), ITEMS);
    cr_assert_eq(fwd[0], 1);
    cr_assert_eq(fwd[ITEMS - 1], 0);
    int i = ITEMS - 1;
    for (mg_link *l = other.next; l != &other; l = l->next, i--) {
        item *t = MG_CONTAINER_OF(l, item, other);
        cr_assert_eq(t->value, i);
        cr_assert_eq(t, &it[i]);
    }
    cr_assert_eq(i, -1);
}
