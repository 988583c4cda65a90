/*
 * The broker's position containers (broker_int.h): the pending map (open addressing with
 * backward-shift deletion) and the sorted replay set, checked against a plain model through
 * long random sequences of puts and deletes, so that every probe-run and wrap-around case of
 * the deletion is met.
 */
#include "broker/broker_int.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <stdlib.h>

TestSuite(broker_posmap, .timeout = 10);

#define MODEL_LEDGERS 4
#define MODEL_ENTRIES 512

Test(broker_posmap, random_puts_and_deletes_match_a_model)
{
    static bool present[MODEL_LEDGERS][MODEL_ENTRIES];
    static uint32_t value[MODEL_LEDGERS][MODEL_ENTRIES];
    br_posmap m = { 0 };
    size_t count = 0;
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int l = rand() % MODEL_LEDGERS, e = rand() % MODEL_ENTRIES;
        ml_position p = { l + 1, e };
        if (rand() % 3 != 0) {
            br_pending *r = br_posmap_put(&m, p);
            cr_assert_not_null(r);
            if (!present[l][e]) {
                cr_assert_eq(r->msgs, 0, "a new record starts zeroed");
                present[l][e] = true;
                count++;
            }
            r->msgs = (uint32_t)step;
            value[l][e] = (uint32_t)step;
        } else {
            br_posmap_del(&m, p);
            if (present[l][e]) {
                present[l][e] = false;
                count--;
            }
        }
        cr_assert_eq(m.count, count);
        if (step % 997 == 0) {
            for (int i = 0; i < MODEL_LEDGERS; i++)
                for (int j = 0; j < MODEL_ENTRIES; j++) {
                    br_pending *r = br_posmap_get(&m, (ml_position){ i + 1, j });
                    cr_assert_eq(r != NULL, present[i][j], "position %d:%d", i + 1, j);
                    if (r != NULL)
                        cr_assert_eq(r->msgs, value[i][j]);
                }
        }
    }
    br_posmap_free(&m);
    cr_assert_eq(m.count, 0);
    cr_assert_null(br_posmap_get(&m, (ml_position){ 1, 1 }));
}

Test(broker_posmap, replay_set_stays_sorted_and_unique)
{
    br_posset s = { 0 };
    srand(11);
    static bool present[MODEL_LEDGERS][MODEL_ENTRIES];
    size_t count = 0;
    for (int step = 0; step < 50000; step++) {
        int l = rand() % MODEL_LEDGERS, e = rand() % MODEL_ENTRIES;
        ml_position p = { l + 1, e };
        if (rand() % 2 == 0) {
            cr_assert_eq(br_posset_add(&s, p), MG_OK);
            if (!present[l][e]) {
                present[l][e] = true;
                count++;
            }
        } else {
            bool was = br_posset_del(&s, p);
            cr_assert_eq(was, present[l][e]);
            if (was) {
                present[l][e] = false;
                count--;
            }
        }
        cr_assert_eq(s.count, count);
    }
    for (size_t i = 1; i < s.count; i++)
        cr_assert_lt(ml_position_cmp(s.v[i - 1], s.v[i]), 0, "strictly increasing at %zu", i);
    br_posset_free(&s);
    cr_assert_eq(s.count, 0);
}
