/*  test_track.c - unit tests of evr_track, the per-batch delivery
    trackers behind the DELIVERED ack point.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evr_track.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

//  Whether the queue's descriptor polls readable right now.
static bool s_readable(evr_trackq_t *q)
{
    struct pollfd p = {evr_trackq_fd(q), POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

//  A free function that counts its calls.
static int s_freed;
static void s_count_free(void *data)
{
    s_freed++;
    free(data);
}

static void test_new_destroy(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    assert_non_null(q);
    assert_false(s_readable(q));
    assert_null(evr_trackq_pop(q));
    evr_track_t *t = evr_track_new(q, 3);
    assert_non_null(t);
    assert_int_equal(evr_track_events(t), 3);
    assert_int_equal(evr_trackq_live(q), 1);
    s_freed = 0;
    evr_track_set_data(t, malloc(16), s_count_free);
    assert_non_null(evr_track_data(t));
    evr_track_destroy(&t);
    assert_null(t);
    assert_int_equal(s_freed, 1);
    assert_int_equal(evr_trackq_live(q), 0);
    evr_track_destroy(&t); //  safe on NULL
    evr_trackq_destroy(&q);
    assert_null(q);
    evr_trackq_destroy(&q);
}

//  No subscriber at all: the creator's release is the last hold; nothing
//  is queued and no event failed.
static void test_no_deliveries(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    evr_track_t *t = evr_track_new(q, 2);
    assert_true(evr_track_release(t));
    assert_false(s_readable(q));
    assert_null(evr_trackq_pop(q));
    assert_false(evr_track_failed(t, 0));
    assert_false(evr_track_failed(t, 1));
    evr_track_destroy(&t);
    evr_trackq_destroy(&q);
}

//  Deliveries outlive the creator's hold: the last done() queues it, and
//  the marks say which events failed.
static void test_outcomes(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    evr_track_t *t = evr_track_new(q, 4);
    //  event 0: two subscribers, one succeeds; event 1: one, fails;
    //  event 2: none; event 3: two, both fail
    evr_track_expect(t, 0);
    evr_track_expect(t, 1);
    evr_track_expect(t, 3);
    evr_track_hold(t, 5);
    assert_false(evr_track_release(t));
    evr_track_done(t, 0, false);
    evr_track_done(t, 1, false);
    evr_track_done(t, 3, false);
    evr_track_done(t, 0, true);
    assert_false(s_readable(q));
    assert_null(evr_trackq_pop(q));
    evr_track_done(t, 3, false);
    assert_true(s_readable(q));
    evr_track_t *got = evr_trackq_pop(q);
    assert_ptr_equal(got, t);
    assert_false(s_readable(q));
    assert_false(evr_track_failed(got, 0));
    assert_true(evr_track_failed(got, 1));
    assert_false(evr_track_failed(got, 2));
    assert_true(evr_track_failed(got, 3));
    evr_track_destroy(&got);
    evr_trackq_destroy(&q);
}

//  A PARALLEL-style fan-out: the top-level hold turns into one hold per
//  copy; a success of any copy saves the event.
static void test_fan_out(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    evr_track_t *t = evr_track_new(q, 1);
    evr_track_expect(t, 0);
    evr_track_hold(t, 1); //  the job
    assert_false(evr_track_release(t));
    evr_track_hold(t, 3);        //  three children
    evr_track_done(t, 0, false); //  the job's own hold
    evr_track_done(t, 0, false);
    evr_track_done(t, 0, true);
    assert_null(evr_trackq_pop(q));
    evr_track_done(t, 0, false);
    assert_ptr_equal(evr_trackq_pop(q), t);
    assert_false(evr_track_failed(t, 0));
    evr_track_destroy(&t);
    evr_trackq_destroy(&q);
}

//  Finished trackers come out oldest first; the descriptor stays readable
//  until the last is taken; destroying the queue frees what is left.
static void test_queue_order(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    evr_track_t *t[3];
    s_freed = 0;
    for (int i = 0; i < 3; i++) {
        t[i] = evr_track_new(q, 1);
        evr_track_set_data(t[i], malloc(8), s_count_free);
        evr_track_hold(t[i], 1);
        assert_false(evr_track_release(t[i]));
    }
    evr_track_done(t[1], EVR_TRACK_NO_EVENT, true);
    evr_track_done(t[0], EVR_TRACK_NO_EVENT, false);
    evr_track_done(t[2], 0, false);
    assert_int_equal(evr_trackq_live(q), 3);
    assert_true(s_readable(q));
    evr_track_t *a = evr_trackq_pop(q);
    assert_ptr_equal(a, t[1]);
    assert_true(s_readable(q));
    evr_track_destroy(&a);
    assert_int_equal(s_freed, 1);
    evr_trackq_destroy(&q); //  t[0] and t[2] still queued: freed here
    assert_int_equal(s_freed, 3);
}

//  Many threads finishing deliveries of many trackers at once: every
//  tracker is queued exactly once, with the right marks.
#define S_THREADS 4
#define S_TRACKS 2000
#define S_EVENTS 8

typedef struct {
    evr_track_t **tracks;
    int index;
} s_worker_arg_t;

static void *s_worker(void *arg)
{
    s_worker_arg_t *w = arg;
    for (int i = 0; i < S_TRACKS; i++)
        for (uint32_t e = 0; e < S_EVENTS; e++)
            //  event e succeeds on exactly one thread unless e is odd
            evr_track_done(w->tracks[i], e,
                           e % 2 == 0 && (int)(e / 2) % S_THREADS == w->index);
    return NULL;
}

static void test_threads(void **state)
{
    evr_trackq_t *q = evr_trackq_new();
    evr_track_t **tracks = calloc(S_TRACKS, sizeof *tracks);
    for (int i = 0; i < S_TRACKS; i++) {
        tracks[i] = evr_track_new(q, S_EVENTS);
        for (uint32_t e = 0; e < S_EVENTS; e++)
            evr_track_expect(tracks[i], e);
        evr_track_hold(tracks[i], S_THREADS * S_EVENTS);
        assert_false(evr_track_release(tracks[i]));
    }
    pthread_t threads[S_THREADS];
    s_worker_arg_t args[S_THREADS];
    for (int i = 0; i < S_THREADS; i++) {
        args[i] = (s_worker_arg_t){tracks, i};
        assert_int_equal(pthread_create(&threads[i], NULL, s_worker, &args[i]),
                         0);
    }
    for (int i = 0; i < S_THREADS; i++)
        pthread_join(threads[i], NULL);
    int seen = 0;
    evr_track_t *t;
    while ((t = evr_trackq_pop(q))) {
        for (uint32_t e = 0; e < S_EVENTS; e++)
            assert_int_equal(evr_track_failed(t, e), e % 2 == 1);
        evr_track_destroy(&t);
        seen++;
    }
    assert_int_equal(seen, S_TRACKS);
    assert_false(s_readable(q));
    assert_int_equal(evr_trackq_live(q), 0);
    free(tracks);
    evr_trackq_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_no_deliveries),
        cmocka_unit_test(test_outcomes),
        cmocka_unit_test(test_fan_out),
        cmocka_unit_test(test_queue_order),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
