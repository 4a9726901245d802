/*  test_hlc.c - unit tests of evr_hlc, the hybrid logical clock.

    The wall clock is injected: every call takes it in ms.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "evr_hlc.h"

#define MK EVR_HLC_MAKE
#define PHYS EVR_HLC_PHYSICAL

//  The logical part of a timestamp.
#define LOGICAL(t) ((t)&0xffff)

static void test_new_destroy(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_non_null(c);
    assert_int_equal(evr_hlc_last(c), 0);
    evr_hlc_destroy(&c);
    assert_null(c);
    evr_hlc_destroy(&c); //  safe on NULL
    assert_null(c);
}

static void test_macros(void **state)
{
    uint64_t t = MK(1700000000123LL, 42);
    assert_int_equal(PHYS(t), 1700000000123LL);
    assert_int_equal(LOGICAL(t), 42);
    assert_true(MK(5, 0xffff) < MK(6, 0));
}

//  An advancing wall clock gives its own time with logical 0.
static void test_now_follows_wall(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 0));
    assert_int_equal(evr_hlc_now(c, 1001), MK(1001, 0));
    assert_int_equal(evr_hlc_now(c, 5000), MK(5000, 0));
    assert_int_equal(evr_hlc_last(c), MK(5000, 0));
    evr_hlc_destroy(&c);
}

//  A stuck wall clock: the logical counter counts.
static void test_now_stuck_wall(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 0));
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 1));
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 2));
    assert_int_equal(evr_hlc_now(c, 1001), MK(1001, 0));
    evr_hlc_destroy(&c);
}

//  A wall clock stepping back: never goes back, keeps counting.
static void test_now_backwards_wall(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 5000), MK(5000, 0));
    assert_int_equal(evr_hlc_now(c, 4000), MK(5000, 1));
    assert_int_equal(evr_hlc_now(c, 0), MK(5000, 2));
    assert_int_equal(evr_hlc_now(c, -7), MK(5000, 3)); //  clamped
    assert_int_equal(evr_hlc_now(c, 4999), MK(5000, 4));
    assert_int_equal(evr_hlc_now(c, 5001), MK(5001, 0));
    evr_hlc_destroy(&c);
}

//  A wall clock before the epoch counts from 0 (the initial 0 counts as
//  issued: the first timestamp is after it).
static void test_negative_wall(void **state)
{
    evr_hlc_t *c = evr_hlc_new(0);
    assert_int_equal(evr_hlc_now(c, -100), MK(0, 1));
    assert_int_equal(evr_hlc_now(c, -100), MK(0, 2));
    evr_hlc_destroy(&c);
}

//  65536 timestamps in one ms fill the counter; the next one borrows the
//  next ms; the wall clock, still in the earlier ms, does not pull it back.
static void test_logical_overflow(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    uint64_t prev = evr_hlc_now(c, 1000);
    assert_int_equal(prev, MK(1000, 0));
    for (int i = 1; i <= 0xffff; i++) {
        uint64_t t = evr_hlc_now(c, 1000);
        assert_true(t > prev);
        assert_int_equal(t, MK(1000, i));
        prev = t;
    }
    assert_int_equal(evr_hlc_now(c, 1000), MK(1001, 0));
    assert_int_equal(evr_hlc_now(c, 1000), MK(1001, 1));
    assert_int_equal(evr_hlc_now(c, 1001), MK(1001, 2));
    assert_int_equal(evr_hlc_now(c, 1002), MK(1002, 0));
    evr_hlc_destroy(&c);
}

//  A remote timestamp at the counter's top: merging it carries too.
static void test_update_logical_overflow(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_update(c, MK(1000, 0xffff), 1000), 0);
    assert_true(evr_hlc_last(c) > MK(1000, 0xffff));
    assert_int_equal(PHYS(evr_hlc_last(c)), 1001);
    uint64_t t = evr_hlc_now(c, 1000);
    assert_true(t > MK(1000, 0xffff));
    assert_int_equal(PHYS(t), 1001);
    evr_hlc_destroy(&c);
}

//  A remote clock ahead (within the skew) pulls ours forward: the next
//  local timestamp is after it, even though our wall clock is behind.
static void test_remote_ahead_pulls_forward(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 0));
    uint64_t remote = MK(1500, 7);
    assert_int_equal(evr_hlc_update(c, remote, 1000), 0);
    assert_true(evr_hlc_last(c) > remote);
    uint64_t t = evr_hlc_now(c, 1000);
    assert_true(t > remote);
    assert_int_equal(PHYS(t), 1500);
    //  Our wall clock catching up takes over again.
    assert_int_equal(evr_hlc_now(c, 1600), MK(1600, 0));
    evr_hlc_destroy(&c);
}

//  A remote timestamp in the same ms as ours: after both counters.
static void test_remote_same_ms(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    for (int i = 0; i < 6; i++)
        evr_hlc_now(c, 2000); //  MK(2000, 5)
    assert_int_equal(evr_hlc_last(c), MK(2000, 5));
    assert_int_equal(evr_hlc_update(c, MK(2000, 9), 2000), 0);
    assert_true(evr_hlc_last(c) > MK(2000, 9));
    assert_true(evr_hlc_now(c, 2000) > MK(2000, 9));
    //  A remote counter behind ours: still after our own.
    uint64_t last = evr_hlc_last(c);
    assert_int_equal(evr_hlc_update(c, MK(2000, 1), 2000), 0);
    assert_true(evr_hlc_last(c) > last);
    evr_hlc_destroy(&c);
}

//  A remote timestamp behind us never moves the clock back.
static void test_remote_behind(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 9000), MK(9000, 0));
    assert_int_equal(evr_hlc_update(c, MK(100, 3), 9000), 0);
    assert_true(evr_hlc_last(c) >= MK(9000, 0));
    assert_true(evr_hlc_now(c, 9000) > MK(9000, 0));
    //  The wall clock ahead of both wins.
    assert_int_equal(evr_hlc_update(c, MK(100, 3), 12000), 0);
    assert_int_equal(evr_hlc_last(c), MK(12000, 0));
    evr_hlc_destroy(&c);
}

//  A remote clock more than max_skew ahead is refused, clock unchanged;
//  exactly max_skew ahead is accepted.
static void test_remote_too_far(void **state)
{
    evr_hlc_t *c = evr_hlc_new(1000);
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 0));
    assert_int_equal(evr_hlc_update(c, MK(2001, 0), 1000), -1);
    assert_int_equal(evr_hlc_last(c), MK(1000, 0));
    assert_int_equal(evr_hlc_update(c, UINT64_MAX, 1000), -1);
    assert_int_equal(evr_hlc_last(c), MK(1000, 0));
    assert_int_equal(evr_hlc_now(c, 1000), MK(1000, 1));

    //  The boundary: physical == wall + max_skew.
    assert_int_equal(evr_hlc_update(c, MK(2000, 0xffff), 1000), 0);
    assert_true(evr_hlc_last(c) > MK(2000, 0xffff));
    evr_hlc_destroy(&c);

    //  With no skew allowed, only the wall clock's own ms passes.
    c = evr_hlc_new(0);
    assert_int_equal(evr_hlc_update(c, MK(1001, 0), 1000), -1);
    assert_int_equal(evr_hlc_last(c), 0);
    assert_int_equal(evr_hlc_update(c, MK(1000, 3), 1000), 0);
    assert_int_equal(evr_hlc_last(c), MK(1000, 4));
    evr_hlc_destroy(&c);

    //  A huge skew bound does not overflow.
    c = evr_hlc_new(INT64_MAX);
    assert_int_equal(evr_hlc_update(c, MK(((uint64_t)1 << 48) - 1, 0), 0), 0);
    assert_int_equal(PHYS(evr_hlc_last(c)), ((uint64_t)1 << 48) - 1);
    evr_hlc_destroy(&c);
}

//  Random interleaving of local events and remote timestamps under a
//  jittery wall clock: every timestamp issued is after the previous one
//  and after every remote timestamp accepted.
static void test_random_monotonic(void **state)
{
    srand(12345);
    evr_hlc_t *c = evr_hlc_new(50);
    int64_t wall = 1000000;
    uint64_t prev = 0;
    uint64_t max_remote = 0;
    for (int i = 0; i < 200000; i++) {
        wall += rand() % 7 - 3; //  jitters, steps back
        int what = rand() % 4;
        if (what == 0) {
            uint64_t remote = MK(wall + rand() % 120 - 60, rand() % 0x10000);
            int rc = evr_hlc_update(c, remote, wall);
            if ((int64_t)PHYS(remote) > wall + 50) {
                assert_int_equal(rc, -1);
                assert_int_equal(evr_hlc_last(c), prev);
            } else {
                assert_int_equal(rc, 0);
                assert_true(evr_hlc_last(c) > prev);
                assert_true(evr_hlc_last(c) > remote);
                if (remote > max_remote)
                    max_remote = remote;
                prev = evr_hlc_last(c);
            }
        } else {
            uint64_t t = evr_hlc_now(c, wall);
            assert_true(t > prev);
            assert_true(t > max_remote);
            assert_true((int64_t)PHYS(t) >= wall);
            assert_int_equal(evr_hlc_last(c), t);
            prev = t;
        }
    }
    evr_hlc_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_now_follows_wall),
        cmocka_unit_test(test_now_stuck_wall),
        cmocka_unit_test(test_now_backwards_wall),
        cmocka_unit_test(test_negative_wall),
        cmocka_unit_test(test_logical_overflow),
        cmocka_unit_test(test_update_logical_overflow),
        cmocka_unit_test(test_remote_ahead_pulls_forward),
        cmocka_unit_test(test_remote_same_ms),
        cmocka_unit_test(test_remote_behind),
        cmocka_unit_test(test_remote_too_far),
        cmocka_unit_test(test_random_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
