/* Proves the protoc-c build rule: a message generated at build time round-trips, and a
 * truncated or corrupted buffer is refused rather than misread. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/position.pb-c.h"

TestSuite(proto_position, .timeout = 10);

Test(proto_position, round_trip)
{
    Magnetar__Position pos = MAGNETAR__POSITION__INIT;
    pos.ledger_id = 1234567890123LL;
    pos.entry_id = -1;
    uint8_t buf[64];
    size_t n = magnetar__position__get_packed_size(&pos);
    cr_assert_leq(n, sizeof(buf));
    cr_assert_eq(magnetar__position__pack(&pos, buf), n);

    Magnetar__Position *back = magnetar__position__unpack(NULL, n, buf);
    cr_assert_not_null(back);
    cr_assert_eq(back->ledger_id, 1234567890123LL);
    cr_assert_eq(back->entry_id, -1);
    magnetar__position__free_unpacked(back, NULL);
}

Test(proto_position, truncated_is_refused)
{
    Magnetar__Position pos = MAGNETAR__POSITION__INIT;
    pos.ledger_id = 42;
    pos.entry_id = 7;
    uint8_t buf[64];
    size_t n = magnetar__position__pack(&pos, buf);
    /* Dropping the last field leaves a required field missing: unpack must fail. */
    cr_assert_null(magnetar__position__unpack(NULL, n - 2, buf));
    /* A length-delimited wire type where a varint belongs must fail too. */
    buf[0] = (uint8_t)((1 << 3) | 2);
    cr_assert_null(magnetar__position__unpack(NULL, n, buf));
}
