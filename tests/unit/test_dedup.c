/*  test_dedup.c - unit tests of evr_dedup, the per-producer window.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evr_dedup.h"

#define NEW EVR_DEDUP_NEW
#define DUP EVR_DEDUP_DUPLICATE
#define STALE EVR_DEDUP_STALE

//  Check a seq and assert the result, through and highest after it.
#define CHECK(d, seq, result, through, highest)                                \
    do {                                                                       \
        assert_int_equal(evr_dedup_check((d), (seq)), (result));               \
        assert_int_equal(evr_dedup_through(d), (through));                     \
        assert_int_equal(evr_dedup_highest(d), (highest));                     \
    } while (0)

static void test_new_destroy(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    assert_non_null(d);
    assert_int_equal(evr_dedup_through(d), 0);
    assert_int_equal(evr_dedup_highest(d), 0);
    evr_dedup_destroy(&d);
    assert_null(d);
    evr_dedup_destroy(&d); //  safe on NULL
    assert_null(d);
}

static void test_seq_zero_invalid(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    CHECK(d, 0, DUP, 0, 0);
    CHECK(d, 1, NEW, 1, 1);
    CHECK(d, 0, DUP, 1, 1);
    evr_dedup_destroy(&d);
}

static void test_in_order(void **state)
{
    evr_dedup_t *d = evr_dedup_new(128);
    for (uint64_t seq = 1; seq <= 1000; seq++)
        CHECK(d, seq, NEW, seq, seq);
    evr_dedup_destroy(&d);
}

static void test_duplicates(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    CHECK(d, 1, NEW, 1, 1);
    CHECK(d, 1, DUP, 1, 1);
    CHECK(d, 3, NEW, 1, 3);
    CHECK(d, 3, DUP, 1, 3); //  seen, in the bitmap
    CHECK(d, 2, NEW, 3, 3);
    CHECK(d, 2, DUP, 3, 3); //  seen, at or below through
    CHECK(d, 1, DUP, 3, 3);
    evr_dedup_destroy(&d);
}

static void test_reordered(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    CHECK(d, 2, NEW, 0, 2);
    CHECK(d, 4, NEW, 0, 4);
    CHECK(d, 3, NEW, 0, 4);
    CHECK(d, 1, NEW, 4, 4); //  fills the hole: through runs to 4
    CHECK(d, 6, NEW, 4, 6);
    CHECK(d, 5, NEW, 6, 6);
    evr_dedup_destroy(&d);
}

static void test_gap_then_fill(void **state)
{
    evr_dedup_t *d = evr_dedup_new(256);
    //  Everything but 1 and 100: through stays at 0, then at 99.
    for (uint64_t seq = 2; seq <= 200; seq++)
        if (seq != 100)
            CHECK(d, seq, NEW, 0, seq);
    CHECK(d, 1, NEW, 99, 200);
    CHECK(d, 150, DUP, 99, 200);
    CHECK(d, 100, NEW, 200, 200); //  the run crosses several words
    for (uint64_t seq = 1; seq <= 200; seq++)
        assert_int_equal(evr_dedup_check(d, seq), DUP);
    evr_dedup_destroy(&d);
}

static void test_window_rounding(void **state)
{
    //  A window of 1 is rounded up to 64: seq 64 still fits, 65 slides.
    evr_dedup_t *d = evr_dedup_new(1);
    CHECK(d, 64, NEW, 0, 64);
    CHECK(d, 65, NEW, 1, 65); //  seq 1 forgotten
    CHECK(d, 1, STALE, 1, 65);
    evr_dedup_destroy(&d);

    //  A window of 0 still works (64).
    d = evr_dedup_new(0);
    assert_non_null(d);
    CHECK(d, 64, NEW, 0, 64);
    CHECK(d, 65, NEW, 1, 65);
    evr_dedup_destroy(&d);

    //  65 rounds up to 128.
    d = evr_dedup_new(65);
    CHECK(d, 128, NEW, 0, 128);
    CHECK(d, 129, NEW, 1, 129);
    evr_dedup_destroy(&d);
}

static void test_window_boundary(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    CHECK(d, 1, NEW, 1, 1);
    //  The bitmap covers (1, 65]: 65 is the last seq that fits.
    CHECK(d, 65, NEW, 1, 65);
    CHECK(d, 65, DUP, 1, 65);
    //  66 slides by one: seq 2, never seen, is forgotten.
    CHECK(d, 66, NEW, 2, 66);
    CHECK(d, 2, STALE, 2, 66);
    CHECK(d, 1, DUP, 2, 66);  //  seen before anything was forgotten
    CHECK(d, 65, DUP, 2, 66); //  still in the bitmap
    CHECK(d, 66, DUP, 2, 66);
    //  Fill 3..64: through runs over 65 and 66.
    for (uint64_t seq = 3; seq <= 64; seq++)
        assert_int_equal(evr_dedup_check(d, seq), NEW);
    assert_int_equal(evr_dedup_through(d), 66);
    CHECK(d, 2, STALE, 66, 66);
    CHECK(d, 40, DUP, 66, 66);
    evr_dedup_destroy(&d);
}

static void test_slide_keeps_seen(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    //  See 2..10, not 1; then 70 slides the window to (6, 70].
    for (uint64_t seq = 2; seq <= 10; seq++)
        CHECK(d, seq, NEW, 0, seq);
    //  1 is forgotten; 2..6 fall out seen; 7..10 stay: through runs to 10.
    CHECK(d, 70, NEW, 10, 70);
    CHECK(d, 1, STALE, 10, 70);
    CHECK(d, 8, DUP, 10, 70); //  above forgotten: provably seen
    CHECK(d, 70, DUP, 10, 70);
    CHECK(d, 11, NEW, 11, 70);
    evr_dedup_destroy(&d);
}

static void test_huge_jump(void **state)
{
    evr_dedup_t *d = evr_dedup_new(1024);
    for (uint64_t seq = 1; seq <= 100; seq++)
        CHECK(d, seq, NEW, seq, seq);
    CHECK(d, 102, NEW, 100, 102);
    //  A jump far beyond the window forgets everything in between.
    uint64_t far = 1000000;
    CHECK(d, far, NEW, far - 1024, far);
    //  Seen before the first forgotten seq (101): still DUPLICATE.
    CHECK(d, 1, DUP, far - 1024, far);
    CHECK(d, 100, DUP, far - 1024, far);
    //  Forgotten or forgotten-and-seen: the window cannot tell.
    CHECK(d, 101, STALE, far - 1024, far);
    CHECK(d, 102, STALE, far - 1024, far);
    CHECK(d, 500000, STALE, far - 1024, far);
    CHECK(d, far - 1024, STALE, far - 1024, far);
    //  Inside the new window: new once, then duplicate.
    CHECK(d, far - 1023, NEW, far - 1023, far);
    CHECK(d, far - 1023, DUP, far - 1023, far);
    CHECK(d, far - 1, NEW, far - 1023, far);
    CHECK(d, far - 1, DUP, far - 1023, far);
    evr_dedup_destroy(&d);
}

static void test_jump_of_exactly_one_window(void **state)
{
    //  The slide distance equals the window: the whole old window falls
    //  out and is scanned for the highest unseen seq.
    evr_dedup_t *d = evr_dedup_new(64);
    CHECK(d, 1, NEW, 1, 1);
    CHECK(d, 65, NEW, 1, 65);    //  top of the window (1, 65]
    CHECK(d, 129, NEW, 65, 129); //  2..64 forgotten, 65 fell out seen
    CHECK(d, 64, STALE, 65, 129);
    CHECK(d, 2, STALE, 65, 129);
    CHECK(d, 65, DUP, 65, 129); //  above forgotten: provably seen
    CHECK(d, 1, DUP, 65, 129);
    CHECK(d, 66, NEW, 66, 129);
    evr_dedup_destroy(&d);

    //  Old window seen except its first seq, then a jump of one window.
    d = evr_dedup_new(64);
    for (uint64_t seq = 2; seq <= 64; seq++)
        CHECK(d, seq, NEW, 0, seq);
    CHECK(d, 128, NEW, 64, 128); //  only seq 1 is forgotten
    CHECK(d, 1, STALE, 64, 128);
    CHECK(d, 2, DUP, 64, 128);
    CHECK(d, 64, DUP, 64, 128);
    evr_dedup_destroy(&d);
}

static void test_repeated_slides(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    //  Every even seq only: each slide forgets the odd ones behind.
    for (uint64_t seq = 2; seq <= 10000; seq += 2) {
        assert_int_equal(evr_dedup_check(d, seq), NEW);
        assert_int_equal(evr_dedup_highest(d), seq);
        assert_true(evr_dedup_through(d) + 64 >= seq);
    }
    uint64_t through = evr_dedup_through(d);
    assert_true(through >= 10000 - 64);
    for (uint64_t seq = through + 1; seq <= 10000; seq++)
        assert_int_equal(evr_dedup_check(d, seq), seq % 2 ? NEW : DUP);
    assert_int_equal(evr_dedup_through(d), 10000);
    assert_int_equal(evr_dedup_check(d, 3), STALE);
    assert_int_equal(evr_dedup_check(d, 1), STALE);
    evr_dedup_destroy(&d);
}

static void test_large_seq_values(void **state)
{
    evr_dedup_t *d = evr_dedup_new(64);
    uint64_t top = UINT64_MAX;
    CHECK(d, top, NEW, top - 64, top);
    CHECK(d, top, DUP, top - 64, top);
    CHECK(d, top - 1, NEW, top - 64, top);
    CHECK(d, 5, STALE, top - 64, top);
    evr_dedup_destroy(&d);
}

static void test_million_sequential(void **state)
{
    //  Sanity, not a benchmark: a million checks, in order then again.
    evr_dedup_t *d = evr_dedup_new(262144);
    assert_non_null(d);
    for (uint64_t seq = 1; seq <= 1000000; seq++)
        if (evr_dedup_check(d, seq) != NEW)
            fail_msg("seq %llu not NEW", (unsigned long long)seq);
    assert_int_equal(evr_dedup_through(d), 1000000);
    assert_int_equal(evr_dedup_highest(d), 1000000);
    for (uint64_t seq = 1; seq <= 1000000; seq++)
        if (evr_dedup_check(d, seq) != DUP)
            fail_msg("seq %llu not DUP", (unsigned long long)seq);
    evr_dedup_destroy(&d);
}

static void test_million_reversed_blocks(void **state)
{
    //  Blocks of 1000 arrive in reverse order: through moves per block,
    //  and each block's last arrival advances it over whole words.
    evr_dedup_t *d = evr_dedup_new(4096);
    for (uint64_t block = 0; block < 1000; block++) {
        for (uint64_t i = 1000; i >= 1; i--)
            if (evr_dedup_check(d, block * 1000 + i) != NEW)
                fail_msg("seq %llu not NEW",
                         (unsigned long long)(block * 1000 + i));
        assert_int_equal(evr_dedup_through(d), (block + 1) * 1000);
    }
    evr_dedup_destroy(&d);
}

//  A reference model: a plain array of seen flags, to compare with the
//  ring bitmap on a pseudo-random arrival order inside the window.
static void test_against_model(void **state)
{
    enum { MAX = 20000, WINDOW = 512 };
    static unsigned char seen[MAX + 1];
    evr_dedup_t *d = evr_dedup_new(WINDOW);
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    uint64_t model_through = 0;
    for (int i = 0; i < 200000; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        //  Stay inside (through, through + window] plus some repeats
        //  below: no slide, so the model is exact.
        uint64_t span = WINDOW + 64;
        uint64_t low = model_through > 64 ? model_through - 64 : 0;
        uint64_t seq = low + 1 + rng % span;
        if (seq > model_through + WINDOW)
            seq = model_through + WINDOW;
        if (seq > MAX)
            break;
        evr_dedup_result_t expect = seen[seq] ? DUP : NEW;
        seen[seq] = 1;
        while (model_through < MAX && seen[model_through + 1])
            model_through++;
        assert_int_equal(evr_dedup_check(d, seq), expect);
        assert_int_equal(evr_dedup_through(d), model_through);
    }
    assert_true(model_through > 1000); //  the walk really moved
    evr_dedup_destroy(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_seq_zero_invalid),
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_gap_then_fill),
        cmocka_unit_test(test_window_rounding),
        cmocka_unit_test(test_window_boundary),
        cmocka_unit_test(test_slide_keeps_seen),
        cmocka_unit_test(test_huge_jump),
        cmocka_unit_test(test_jump_of_exactly_one_window),
        cmocka_unit_test(test_repeated_slides),
        cmocka_unit_test(test_large_seq_values),
        cmocka_unit_test(test_million_sequential),
        cmocka_unit_test(test_million_reversed_blocks),
        cmocka_unit_test(test_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
