/*  test_table.c - unit tests for evr_table (subscription table).

    The clock is injected: every call takes T (milliseconds), which the
    tests move by hand. Targets are heap-allocated; the release callback
    counts and frees them, so valgrind/ASAN see any leak or double release.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evr_defaults.h"
#include "evr_table.h"

//  A target: a serial number, so releases can be checked one by one.
typedef struct {
    int serial;
} target_t;

//  Release bookkeeping shared by all tables of one test.
#define MAX_SERIALS 200000
typedef struct {
    size_t count;            //  release calls
    unsigned char *released; //  per serial: how many times released
    int next_serial;
} tracker_t;

static tracker_t s_tracker;

//  Release callback: count, check it happens once, free.
static void s_release(void *target, void *arg)
{
    tracker_t *tracker = (tracker_t *)arg;
    target_t *t = (target_t *)target;
    assert_non_null(t);
    assert_true(t->serial >= 0 && t->serial < MAX_SERIALS);
    tracker->released[t->serial]++;
    assert_int_equal(tracker->released[t->serial], 1);
    tracker->count++;
    free(t);
}

//  A new target with the next serial.
static target_t *s_target(void)
{
    target_t *t = (target_t *)malloc(sizeof(target_t));
    assert_non_null(t);
    assert_true(s_tracker.next_serial < MAX_SERIALS);
    t->serial = s_tracker.next_serial++;
    return t;
}

//  Per-test setup: fresh tracker.
static int s_setup(void **state)
{
    memset(&s_tracker, 0, sizeof(s_tracker));
    s_tracker.released = (unsigned char *)calloc(MAX_SERIALS, 1);
    return s_tracker.released ? 0 : -1;
}

//  Per-test teardown.
static int s_teardown(void **state)
{
    free(s_tracker.released);
    s_tracker.released = NULL;
    return 0;
}

//  A table that releases through the tracker.
static evr_table_t *s_table(size_t max_events)
{
    evr_table_t *table = evr_table_new(max_events, s_release, &s_tracker);
    assert_non_null(table);
    return table;
}

//  Subscribe with a fresh target; frees the target when the table did not
//  take it. The socket string is "sock:" + key unless given.
static evr_table_result_t s_sub_sock(evr_table_t *table, const char *event,
                                     const char *key, const char *socket,
                                     int64_t expire_s, int64_t now_ms)
{
    char buf[256];
    if (!socket) {
        snprintf(buf, sizeof(buf), "sock:%s", key);
        socket = buf;
    }
    target_t *t = s_target();
    evr_table_result_t rc =
        evr_table_subscribe(table, event, socket, key, expire_s, now_ms, t);
    if (rc != EVR_TABLE_ADDED)
        free(t);
    return rc;
}

static evr_table_result_t s_sub(evr_table_t *table, const char *event,
                                const char *key, int64_t expire_s,
                                int64_t now_ms)
{
    return s_sub_sock(table, event, key, NULL, expire_s, now_ms);
}

//  Seconds to milliseconds.
#define SEC(s) ((int64_t)(s)*1000)

//  Lookup collector: match keys and infos in call order.
typedef struct {
    size_t n;
    char keys[16][64];
    evr_sub_info_t info[16];
} collect_t;

static void s_collect(const evr_sub_info_t *info, void *arg)
{
    collect_t *c = (collect_t *)arg;
    assert_true(c->n < 16);
    snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", info->match_key);
    c->info[c->n] = *info;
    c->n++;
}

//  Lookup into a fresh collector; checks the count against calls.
static size_t s_lookup(evr_table_t *table, const char *event, int64_t now_ms,
                       collect_t *c)
{
    memset(c, 0, sizeof(*c));
    size_t n = evr_table_lookup(table, event, now_ms, s_collect, c);
    assert_int_equal(n, c->n);
    return n;
}

//  --------------------------------------------------------------------------
//  Default expire: live through second T+3600 ("expired" in it), gone after.

static void test_default_expire_flow(void **state)
{
    evr_table_t *table = s_table(16);
    int64_t t0 = SEC(1700000000) + 250;
    assert_int_equal(
        s_sub(table, "E_PIKE_BLOCKED", "udp:a", EVR_DEFAULT_EXPIRE_S, t0),
        EVR_TABLE_ADDED);
    assert_int_equal(evr_table_size(table), 1);

    evr_sub_info_t info;
    assert_int_equal(
        evr_table_find(table, "E_PIKE_BLOCKED", "udp:a", t0, &info), 0);
    assert_string_equal(info.event, "E_PIKE_BLOCKED");
    assert_int_equal(info.event_id, 0);
    assert_string_equal(info.socket, "sock:udp:a");
    assert_string_equal(info.match_key, "udp:a");
    assert_int_equal(info.expire_s, 3600);
    assert_int_equal(info.sub_time_s, 1700000000);
    assert_int_equal(info.ttl_s, 3600);
    assert_non_null(info.target);

    collect_t c;
    assert_int_equal(s_lookup(table, "E_PIKE_BLOCKED", t0 + SEC(3599), &c), 1);
    assert_int_equal(c.info[0].ttl_s, 1);
    assert_int_equal(s_lookup(table, "E_PIKE_BLOCKED", SEC(1700003600), &c), 1);
    assert_int_equal(c.info[0].ttl_s, 0);
    assert_int_equal(
        s_lookup(table, "E_PIKE_BLOCKED", SEC(1700003600) + 999, &c), 1);
    assert_int_equal(s_tracker.count, 0);

    assert_int_equal(s_lookup(table, "E_PIKE_BLOCKED", SEC(1700003601), &c), 0);
    assert_int_equal(s_tracker.count, 1);
    assert_int_equal(evr_table_size(table), 0);
    evr_table_destroy(&table);
    assert_null(table);
    assert_int_equal(s_tracker.count, 1);
}

//  --------------------------------------------------------------------------
//  Refresh keeps the list position, resets the ttl, replaces socket and
//  expire, and keeps the original target.

static void test_refresh_keeps_position(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "a", 100, SEC(10)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "b", 100, SEC(11)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "c", 100, SEC(12)), EVR_TABLE_ADDED);

    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E", "a", SEC(50), &info), 0);
    void *target_a = info.target;
    assert_int_equal(info.ttl_s, 60);

    assert_int_equal(s_sub_sock(table, "E", "a", "udp:A2", 300, SEC(50) + 999),
                     EVR_TABLE_REFRESHED);
    assert_int_equal(evr_table_size(table), 3);
    assert_int_equal(s_tracker.count, 0);

    collect_t c;
    assert_int_equal(s_lookup(table, "E", SEC(51), &c), 3);
    assert_string_equal(c.keys[0], "c");
    assert_string_equal(c.keys[1], "b");
    assert_string_equal(c.keys[2], "a");
    assert_string_equal(c.info[2].socket, "udp:A2");
    assert_int_equal(c.info[2].expire_s, 300);
    assert_int_equal(c.info[2].sub_time_s, 50);
    assert_int_equal(c.info[2].ttl_s, 299);
    assert_ptr_equal(c.info[2].target, target_a);

    //  b and c expire at 111/112; a lives until 350.
    assert_int_equal(evr_table_sweep(table, SEC(113)), 2);
    assert_int_equal(s_lookup(table, "E", SEC(350), &c), 1);
    assert_int_equal(c.info[0].ttl_s, 0);
    assert_int_equal(evr_table_sweep(table, SEC(351)), 1);
    assert_int_equal(evr_table_size(table), 0);
    assert_int_equal(s_tracker.count, 3);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 3);
}

//  --------------------------------------------------------------------------
//  A permanent re-subscribe refreshes the time but keeps an expiring entry
//  expiring; an expiring re-subscribe makes a permanent entry expiring.

static void test_refresh_never_keeps_expiring(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "a", 10, SEC(0)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "a", EVR_EXPIRE_NEVER, SEC(5)),
                     EVR_TABLE_REFRESHED);
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E", "a", SEC(5), &info), 0);
    assert_int_equal(info.expire_s, 10);
    assert_int_equal(info.sub_time_s, 5);
    assert_int_equal(info.ttl_s, 10);
    assert_int_equal(evr_table_sweep(table, SEC(15)), 0);
    assert_int_equal(evr_table_sweep(table, SEC(16)), 1);
    assert_int_equal(evr_table_find(table, "E", "a", SEC(16), &info), -1);

    //  Permanent, then turned expiring by a refresh with 30 s.
    assert_int_equal(s_sub(table, "E", "p", EVR_EXPIRE_NEVER, SEC(20)),
                     EVR_TABLE_ADDED);
    assert_int_equal(evr_table_find(table, "E", "p", SEC(20), &info), 0);
    assert_int_equal(info.expire_s, EVR_EXPIRE_NEVER);
    assert_int_equal(info.ttl_s, -1);
    assert_int_equal(s_sub(table, "E", "p", 30, SEC(40)), EVR_TABLE_REFRESHED);
    assert_int_equal(evr_table_find(table, "E", "p", SEC(40), &info), 0);
    assert_int_equal(info.expire_s, 30);
    assert_int_equal(info.ttl_s, 30);
    assert_int_equal(evr_table_sweep(table, SEC(70)), 0);
    assert_int_equal(evr_table_sweep(table, SEC(71)), 1);
    assert_int_equal(evr_table_size(table), 0);
    assert_int_equal(s_tracker.count, 2);
    evr_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  expire 0 unsubscribes: existing, missing, unknown event, expired entry.

static void test_unsubscribe(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "a", 60, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "b", 60, SEC(1)), EVR_TABLE_ADDED);

    assert_int_equal(s_sub(table, "E", "a", 0, SEC(2)), EVR_TABLE_REMOVED);
    assert_int_equal(s_tracker.count, 1);
    assert_int_equal(evr_table_size(table), 1);
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E", "a", SEC(2), &info), -1);
    assert_int_equal(evr_table_find(table, "E", "b", SEC(2), &info), 0);

    //  Again: nothing left to remove.
    assert_int_equal(s_sub(table, "E", "a", 0, SEC(2)), EVR_TABLE_NOT_FOUND);
    assert_int_equal(s_tracker.count, 1);

    //  Unknown event: not found, and not registered by an unsubscribe.
    assert_int_equal(s_sub(table, "E_OTHER", "a", 0, SEC(2)),
                     EVR_TABLE_NOT_FOUND);
    assert_int_equal(evr_table_event_id(table, "E_OTHER"), -1);
    assert_int_equal(evr_table_event_count(table), 1);

    //  Invalid event name.
    assert_int_equal(s_sub(table, "bad name", "a", 0, SEC(2)), EVR_TABLE_ERROR);

    //  Expired but not swept: removed, answered as not found.
    assert_int_equal(s_sub(table, "E", "b", 0, SEC(62)), EVR_TABLE_NOT_FOUND);
    assert_int_equal(s_tracker.count, 2);
    assert_int_equal(evr_table_size(table), 0);

    //  Re-subscribe after unsubscribe adds a new entry.
    assert_int_equal(s_sub(table, "E", "a", 60, SEC(70)), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_size(table), 1);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 3);
}

//  --------------------------------------------------------------------------
//  A negative expire other than EVR_EXPIRE_NEVER is an error: the table
//  changes nothing and does not take the target.

static void test_negative_expire(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "a", -2, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(s_sub(table, "E", "a", -3600, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(s_sub(table, "E", "a", INT64_MIN, SEC(1)),
                     EVR_TABLE_ERROR);
    assert_int_equal(evr_table_size(table), 0);
    assert_int_equal(evr_table_event_count(table), 0);

    //  Also on an existing entry: it stays as it was.
    assert_int_equal(s_sub(table, "E", "a", 60, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "a", -5, SEC(30)), EVR_TABLE_ERROR);
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E", "a", SEC(30), &info), 0);
    assert_int_equal(info.sub_time_s, 1);
    assert_int_equal(info.ttl_s, 31);
    assert_int_equal(s_tracker.count, 0);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 1);
}

//  --------------------------------------------------------------------------
//  ttl counts down by whole seconds (sub time is floored); 0 is the
//  "expired" second; the entry goes the second after.

static void test_ttl_countdown(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "a", 3, SEC(10) + 500), EVR_TABLE_ADDED);
    struct {
        int64_t now_ms;
        int64_t ttl;
    } steps[] = {{SEC(10) + 999, 3},
                 {SEC(11), 2},
                 {SEC(12) + 1, 1},
                 {SEC(13), 0},
                 {SEC(13) + 999, 0}};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        evr_sub_info_t info;
        assert_int_equal(
            evr_table_find(table, "E", "a", steps[i].now_ms, &info), 0);
        assert_int_equal(info.sub_time_s, 10);
        assert_int_equal(info.ttl_s, steps[i].ttl);
        collect_t c;
        assert_int_equal(s_lookup(table, "E", steps[i].now_ms, &c), 1);
        assert_int_equal(c.info[0].ttl_s, steps[i].ttl);
    }
    assert_int_equal(evr_table_sweep(table, SEC(13) + 999), 0);
    assert_int_equal(s_tracker.count, 0);
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E", "a", SEC(14), &info), -1);
    assert_int_equal(s_tracker.count, 1);
    assert_int_equal(evr_table_size(table), 0);
    assert_int_equal(evr_table_sweep(table, SEC(14)), 0);

    //  expire 1: live in its own second and the next only.
    assert_int_equal(s_sub(table, "E", "b", 1, SEC(20) + 999), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_lookup(table, "E", SEC(21) + 999, NULL, NULL),
                     1);
    assert_int_equal(evr_table_lookup(table, "E", SEC(22), NULL, NULL), 0);
    assert_int_equal(s_tracker.count, 2);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 2);
}

//  --------------------------------------------------------------------------
//  Listing is newest first; removals keep the others' order; re-adding an
//  expired entry puts it first.

static void test_newest_first_order(void **state)
{
    evr_table_t *table = s_table(16);
    const char *keys[] = {"k1", "k2", "k3", "k4", "k5"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(s_sub(table, "E", keys[i], 100 + i, SEC(i)),
                         EVR_TABLE_ADDED);
    collect_t c;
    assert_int_equal(s_lookup(table, "E", SEC(5), &c), 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(c.keys[i], keys[4 - i]);

    //  Remove the newest, a middle one and the oldest.
    assert_int_equal(s_sub(table, "E", "k5", 0, SEC(5)), EVR_TABLE_REMOVED);
    assert_int_equal(s_sub(table, "E", "k3", 0, SEC(5)), EVR_TABLE_REMOVED);
    assert_int_equal(s_sub(table, "E", "k1", 0, SEC(5)), EVR_TABLE_REMOVED);
    assert_int_equal(s_lookup(table, "E", SEC(5), &c), 2);
    assert_string_equal(c.keys[0], "k4");
    assert_string_equal(c.keys[1], "k2");

    //  New ones go first.
    assert_int_equal(s_sub(table, "E", "k1", 5, SEC(6)), EVR_TABLE_ADDED);
    assert_int_equal(s_lookup(table, "E", SEC(6), &c), 3);
    assert_string_equal(c.keys[0], "k1");
    assert_string_equal(c.keys[1], "k4");
    assert_string_equal(c.keys[2], "k2");

    //  k2 (expire 101, from second 1) is expired at 103; re-subscribing it
    //  then replaces it with a fresh entry at the front.
    assert_int_equal(s_sub(table, "E", "k2", 5, SEC(103)), EVR_TABLE_ADDED);
    assert_int_equal(s_tracker.count, 4); //  k5 k3 k1, old k2
    //  The new k1 (due at 11) goes on this lookup.
    assert_int_equal(s_lookup(table, "E", SEC(103), &c), 2);
    assert_int_equal(s_tracker.count, 5);
    assert_string_equal(c.keys[0], "k2");
    assert_string_equal(c.keys[1], "k4");
    assert_int_equal(c.info[0].sub_time_s, 103);
    assert_int_equal(c.info[0].ttl_s, 5);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 7);
}

//  --------------------------------------------------------------------------
//  Permanent entries: ttl -1, never swept, released on destroy.

static void test_never(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(s_sub(table, "E", "p", EVR_EXPIRE_NEVER, SEC(1)),
                     EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E", "x", 5, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_sweep(table, INT64_MAX), 1);
    collect_t c;
    assert_int_equal(s_lookup(table, "E", INT64_MAX, &c), 1);
    assert_string_equal(c.keys[0], "p");
    assert_int_equal(c.info[0].expire_s, EVR_EXPIRE_NEVER);
    assert_int_equal(c.info[0].ttl_s, -1);
    assert_int_equal(c.info[0].sub_time_s, 1);

    //  A huge expire does not overflow and behaves as very long.
    assert_int_equal(s_sub(table, "E", "h", INT64_MAX, SEC(2)),
                     EVR_TABLE_ADDED);
    assert_int_equal(evr_table_sweep(table, INT64_MAX), 0);
    assert_int_equal(s_lookup(table, "E", INT64_MAX, &c), 2);
    assert_true(c.info[0].ttl_s > 0);

    //  An expire 0 removes a permanent entry too.
    assert_int_equal(s_sub(table, "E", "p", 0, SEC(3)), EVR_TABLE_REMOVED);
    assert_int_equal(evr_table_size(table), 1);
    assert_int_equal(s_tracker.count, 2);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 3);
}

//  --------------------------------------------------------------------------
//  Sweep removes exactly the expired entries, across events.

static void test_sweep_counts(void **state)
{
    evr_table_t *table = s_table(16);
    const char *events[] = {"E_A", "E_B", "E_C"};
    char key[16];
    //  Per event: expires 1..10 and two permanent ones, at second 100.
    for (int e = 0; e < 3; e++) {
        for (int i = 1; i <= 10; i++) {
            snprintf(key, sizeof(key), "k%d", i);
            assert_int_equal(s_sub(table, events[e], key, i, SEC(100)),
                             EVR_TABLE_ADDED);
        }
        assert_int_equal(
            s_sub(table, events[e], "p1", EVR_EXPIRE_NEVER, SEC(100)),
            EVR_TABLE_ADDED);
        assert_int_equal(
            s_sub(table, events[e], "p2", EVR_EXPIRE_NEVER, SEC(100)),
            EVR_TABLE_ADDED);
    }
    assert_int_equal(evr_table_size(table), 36);
    assert_int_equal(evr_table_sweep(table, SEC(50)), 0);
    assert_int_equal(evr_table_sweep(table, SEC(101)), 0);
    assert_int_equal(evr_table_sweep(table, SEC(102)), 3);
    assert_int_equal(evr_table_sweep(table, SEC(102)), 0);
    assert_int_equal(evr_table_sweep(table, SEC(105) + 999), 9);
    //  A lookup removes E_A's k5 and k6 lazily; the sweep does not count
    //  them.
    assert_int_equal(evr_table_lookup(table, "E_A", SEC(107), NULL, NULL), 6);
    assert_int_equal(s_tracker.count, 14);
    assert_int_equal(evr_table_sweep(table, SEC(107)), 4);
    //  Refresh E_B k10 (due at 110) so it lives until 118.
    assert_int_equal(s_sub(table, "E_B", "k10", 10, SEC(108)),
                     EVR_TABLE_REFRESHED);
    assert_int_equal(evr_table_sweep(table, SEC(117)), 11);
    assert_int_equal(evr_table_size(table), 7);
    assert_int_equal(s_tracker.count, 29);
    assert_int_equal(evr_table_sweep(table, SEC(118) + 999), 0);
    assert_int_equal(evr_table_sweep(table, SEC(119)), 1);
    assert_int_equal(evr_table_size(table), 6);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 36);
}

//  --------------------------------------------------------------------------
//  Randomized model check: a simple array model predicts every result,
//  listing order, sweep count and release. Each taken target must be
//  released exactly once, at the predicted time.

#define M_EVENTS 4
#define M_KEYS 12

typedef struct {
    bool present;
    int64_t sub_time_s;
    int64_t expire_s;
    uint64_t seq; //  insertion order, for newest first
    int serial;   //  target serial
} model_sub_t;

static model_sub_t s_model[M_EVENTS][M_KEYS];
static uint64_t s_model_seq;

//  xorshift64: a deterministic generator independent of libc.
static uint64_t s_rand_state = 88172645463325252ULL;
static uint64_t s_rand(void)
{
    s_rand_state ^= s_rand_state << 13;
    s_rand_state ^= s_rand_state >> 7;
    s_rand_state ^= s_rand_state << 17;
    return s_rand_state;
}

static bool s_model_expired(const model_sub_t *m, int64_t now_s)
{
    return m->present && m->expire_s != EVR_EXPIRE_NEVER &&
           now_s > m->sub_time_s + m->expire_s;
}

//  Drop a model entry, expecting the table to have released its target.
static void s_model_drop(model_sub_t *m)
{
    assert_true(m->present);
    assert_int_equal(s_tracker.released[m->serial], 1);
    m->present = false;
}

static size_t s_model_size(void)
{
    size_t n = 0;
    for (int e = 0; e < M_EVENTS; e++)
        for (int k = 0; k < M_KEYS; k++)
            n += s_model[e][k].present;
    return n;
}

static void test_model_random(void **state)
{
    evr_table_t *table = s_table(M_EVENTS);
    memset(s_model, 0, sizeof(s_model));
    s_model_seq = 0;
    char event[16], key[16];
    int64_t now_ms = SEC(1000);
    const int64_t expires[] = {0, 0, 1, 1, 2, 3, 5, 8, EVR_EXPIRE_NEVER};

    for (int step = 0; step < 20000; step++) {
        now_ms += (int64_t)(s_rand() % 700);
        int64_t now_s = now_ms / 1000;
        int e = (int)(s_rand() % M_EVENTS);
        int k = (int)(s_rand() % M_KEYS);
        snprintf(event, sizeof(event), "E_%d", e);
        snprintf(key, sizeof(key), "udp:h%d", k);
        model_sub_t *m = &s_model[e][k];
        int op = (int)(s_rand() % 10);

        if (op < 5) { //  subscribe / refresh / unsubscribe
            int64_t expire = expires[s_rand() % 9];
            target_t *t = s_target();
            size_t before = s_tracker.count;
            evr_table_result_t rc = evr_table_subscribe(table, event, "udp:x",
                                                        key, expire, now_ms, t);
            bool was_expired = s_model_expired(m, now_s);
            if (was_expired)
                s_model_drop(m);
            if (expire == 0) {
                assert_int_equal(rc, m->present ? EVR_TABLE_REMOVED
                                                : EVR_TABLE_NOT_FOUND);
                if (m->present)
                    s_model_drop(m);
                free(t);
            } else if (m->present) {
                assert_int_equal(rc, EVR_TABLE_REFRESHED);
                m->sub_time_s = now_s;
                if (expire != EVR_EXPIRE_NEVER)
                    m->expire_s = expire;
                free(t);
            } else {
                assert_int_equal(rc, EVR_TABLE_ADDED);
                m->present = true;
                m->sub_time_s = now_s;
                m->expire_s = expire;
                m->seq = ++s_model_seq;
                m->serial = t->serial;
            }
            assert_int_equal(s_tracker.count - before,
                             (size_t)was_expired +
                                 (size_t)(rc == EVR_TABLE_REMOVED));
        } else if (op < 7) { //  lookup: order and lazy removal
            collect_t c;
            memset(&c, 0, sizeof(c));
            size_t n = evr_table_lookup(table, event, now_ms, s_collect, &c);
            size_t expect = 0;
            for (int i = 0; i < M_KEYS; i++) {
                if (s_model_expired(&s_model[e][i], now_s))
                    s_model_drop(&s_model[e][i]);
                expect += s_model[e][i].present;
            }
            assert_int_equal(n, expect);
            for (size_t i = 0; i < n; i++) {
                int ki = atoi(c.keys[i] + strlen("udp:h"));
                model_sub_t *mi = &s_model[e][ki];
                assert_true(mi->present);
                if (i > 0) {
                    int kp = atoi(c.keys[i - 1] + strlen("udp:h"));
                    assert_true(s_model[e][kp].seq > mi->seq);
                }
                assert_int_equal(c.info[i].sub_time_s, mi->sub_time_s);
                assert_int_equal(c.info[i].expire_s, mi->expire_s);
                assert_int_equal(c.info[i].ttl_s,
                                 mi->expire_s == EVR_EXPIRE_NEVER
                                     ? -1
                                     : mi->sub_time_s + mi->expire_s - now_s);
                assert_int_equal(((target_t *)c.info[i].target)->serial,
                                 mi->serial);
            }
        } else if (op < 9) { //  find
            evr_sub_info_t info;
            int rc = evr_table_find(table, event, key, now_ms, &info);
            if (s_model_expired(m, now_s))
                s_model_drop(m);
            assert_int_equal(rc, m->present ? 0 : -1);
            if (rc == 0)
                assert_int_equal(((target_t *)info.target)->serial, m->serial);
        } else { //  sweep
            size_t before = s_tracker.count;
            size_t n = evr_table_sweep(table, now_ms);
            size_t expect = 0;
            for (int ei = 0; ei < M_EVENTS; ei++)
                for (int ki = 0; ki < M_KEYS; ki++)
                    if (s_model_expired(&s_model[ei][ki], now_s)) {
                        s_model_drop(&s_model[ei][ki]);
                        expect++;
                    }
            assert_int_equal(n, expect);
            assert_int_equal(s_tracker.count - before, expect);
        }
        assert_int_equal(evr_table_size(table), s_model_size());
    }
    size_t taken = s_model_size();
    size_t before = s_tracker.count;
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count - before, taken);
    //  Every released serial was released exactly once (checked in
    //  s_release); every present model entry is now released too.
    for (int e = 0; e < M_EVENTS; e++)
        for (int k = 0; k < M_KEYS; k++)
            if (s_model[e][k].present)
                assert_int_equal(s_tracker.released[s_model[e][k].serial], 1);
}

//  --------------------------------------------------------------------------
//  Expiry order under churn: many entries with spread-out deadlines, removed
//  and re-timed in the middle, then swept second by second; every sweep
//  must take exactly the entries due in that second.

static void test_sweep_churn(void **state)
{
    enum { N = 3000, SPAN = 400 };
    static int64_t deadline[N]; //  -1: gone
    evr_table_t *table = s_table(4);
    char key[16];
    s_rand_state = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int64_t expire = 1 + (int64_t)(s_rand() % SPAN);
        assert_int_equal(s_sub(table, "E", key, expire, SEC(0)),
                         EVR_TABLE_ADDED);
        deadline[i] = expire;
    }
    //  Unsubscribe a third, re-time a third (earlier or later), at second 0.
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        switch (s_rand() % 3) {
            case 0:
                assert_int_equal(s_sub(table, "E", key, 0, SEC(0)),
                                 EVR_TABLE_REMOVED);
                deadline[i] = -1;
                break;
            case 1: {
                int64_t expire = 1 + (int64_t)(s_rand() % SPAN);
                assert_int_equal(s_sub(table, "E", key, expire, SEC(0)),
                                 EVR_TABLE_REFRESHED);
                deadline[i] = expire;
                break;
            }
            default:
                break;
        }
    }
    for (int64_t sec = 1; sec <= SPAN + 1; sec++) {
        size_t due = 0;
        for (int i = 0; i < N; i++)
            if (deadline[i] >= 0 && deadline[i] < sec) {
                due++;
                deadline[i] = -1;
            }
        assert_int_equal(evr_table_sweep(table, SEC(sec)), due);
    }
    assert_int_equal(evr_table_size(table), 0);
    assert_int_equal(s_tracker.count, N);
    evr_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  Registry: dense ids in first-registration order, idempotent register.

typedef struct {
    int n;
    char names[8][EVR_MAX_EVENT_NAME + 1];
    int ids[8];
} events_t;

static void s_event_cb(const char *name, int id, void *arg)
{
    events_t *ev = (events_t *)arg;
    assert_true(ev->n < 8);
    snprintf(ev->names[ev->n], sizeof(ev->names[0]), "%s", name);
    ev->ids[ev->n] = id;
    ev->n++;
}

static void test_registry(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(evr_table_event_count(table), 0);
    assert_int_equal(evr_table_register(table, "E_CORE_THRESHOLD"), 0);
    assert_int_equal(evr_table_register(table, "E_UL_AOR_INSERT"), 1);
    assert_int_equal(evr_table_register(table, "E_CORE_THRESHOLD"), 0);
    assert_int_equal(s_sub(table, "E_MY", "a", 10, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_lookup(table, "E_RAISED", SEC(1), NULL, NULL),
                     0);
    assert_int_equal(evr_table_register(table, "E_LAST"), 4);
    assert_int_equal(evr_table_event_count(table), 5);

    assert_int_equal(evr_table_event_id(table, "E_CORE_THRESHOLD"), 0);
    assert_int_equal(evr_table_event_id(table, "E_MY"), 2);
    assert_int_equal(evr_table_event_id(table, "E_RAISED"), 3);
    assert_int_equal(evr_table_event_id(table, "E_NOPE"), -1);
    assert_int_equal(evr_table_event_id(table, "e_my"), -1);
    assert_int_equal(evr_table_event_id(table, ""), -1);
    assert_int_equal(evr_table_event_id(table, NULL), -1);

    events_t ev;
    memset(&ev, 0, sizeof(ev));
    evr_table_events(table, s_event_cb, &ev);
    const char *expect[] = {"E_CORE_THRESHOLD", "E_UL_AOR_INSERT", "E_MY",
                            "E_RAISED", "E_LAST"};
    assert_int_equal(ev.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(ev.names[i], expect[i]);
        assert_int_equal(ev.ids[i], i);
    }
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E_MY", "a", SEC(1), &info), 0);
    assert_int_equal(info.event_id, 2);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 1);
}

//  --------------------------------------------------------------------------
//  Name validation: 1..64 printable non-space ASCII.

static void test_name_validation(void **state)
{
    char name[EVR_MAX_EVENT_NAME + 2];
    memset(name, 'E', sizeof(name));
    name[EVR_MAX_EVENT_NAME] = 0;
    assert_true(evr_table_valid_name(name)); //  64
    name[EVR_MAX_EVENT_NAME] = 'E';
    name[EVR_MAX_EVENT_NAME + 1] = 0;
    assert_false(evr_table_valid_name(name)); //  65

    assert_true(evr_table_valid_name("E"));
    assert_true(evr_table_valid_name("!~E_x.y-z:1/[]{}\"'\\"));
    assert_false(evr_table_valid_name(""));
    assert_false(evr_table_valid_name(NULL));
    assert_false(evr_table_valid_name("E X"));
    assert_false(evr_table_valid_name(" E"));
    assert_false(evr_table_valid_name("E\t"));
    assert_false(evr_table_valid_name("E\n"));
    assert_false(evr_table_valid_name("E\x1f"));
    assert_false(evr_table_valid_name("E\x7f"));
    assert_false(evr_table_valid_name("E\x80"));
    assert_false(evr_table_valid_name("\xc3\xa9"));

    evr_table_t *table = s_table(16);
    assert_int_equal(evr_table_register(table, name), -1); //  65
    assert_int_equal(s_sub(table, name, "a", 10, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(evr_table_lookup(table, name, SEC(1), NULL, NULL), 0);
    assert_int_equal(s_sub(table, "E X", "a", 10, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(s_sub(table, "", "a", 10, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(evr_table_register(table, ""), -1);
    assert_int_equal(evr_table_lookup(table, "", SEC(1), NULL, NULL), 0);
    assert_int_equal(evr_table_event_count(table), 0);
    assert_int_equal(evr_table_size(table), 0);

    name[EVR_MAX_EVENT_NAME] = 0;
    assert_int_equal(evr_table_register(table, name), 0); //  64
    assert_int_equal(s_sub(table, name, "a", 10, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_event_count(table), 1);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 1);
}

//  --------------------------------------------------------------------------
//  Registry full: new names refused everywhere, known names still work.

static void test_registry_full(void **state)
{
    evr_table_t *table = s_table(3);
    assert_int_equal(evr_table_register(table, "E_0"), 0);
    assert_int_equal(s_sub(table, "E_1", "a", 10, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(evr_table_lookup(table, "E_2", SEC(1), NULL, NULL), 0);
    assert_int_equal(evr_table_event_count(table), 3);

    assert_int_equal(evr_table_register(table, "E_3"), -1);
    assert_int_equal(s_sub(table, "E_3", "a", 10, SEC(1)), EVR_TABLE_ERROR);
    assert_int_equal(evr_table_lookup(table, "E_3", SEC(1), NULL, NULL), 0);
    assert_int_equal(s_sub(table, "E_3", "a", 0, SEC(1)), EVR_TABLE_NOT_FOUND);
    assert_int_equal(evr_table_event_id(table, "E_3"), -1);
    assert_int_equal(evr_table_event_count(table), 3);

    //  Known events keep working.
    assert_int_equal(evr_table_register(table, "E_2"), 2);
    assert_int_equal(s_sub(table, "E_2", "a", 10, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E_1", "a", 20, SEC(2)), EVR_TABLE_REFRESHED);
    assert_int_equal(evr_table_size(table), 2);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 2);

    //  A table with no room at all.
    table = s_table(0);
    assert_int_equal(evr_table_register(table, "E"), -1);
    assert_int_equal(s_sub(table, "E", "a", 10, SEC(1)), EVR_TABLE_ERROR);
    evr_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  lookup registers unknown (valid) names and finds nothing.

static void test_lookup_registers(void **state)
{
    evr_table_t *table = s_table(16);
    collect_t c;
    assert_int_equal(s_lookup(table, "E_NEW", SEC(1), &c), 0);
    assert_int_equal(evr_table_event_id(table, "E_NEW"), 0);
    assert_int_equal(s_lookup(table, "E_NEW", SEC(1), &c), 0);
    assert_int_equal(evr_table_event_count(table), 1);
    assert_int_equal(s_lookup(table, "E BAD", SEC(1), &c), 0);
    assert_int_equal(evr_table_event_count(table), 1);
    //  find does not register.
    evr_sub_info_t info;
    assert_int_equal(evr_table_find(table, "E_FIND", "a", SEC(1), &info), -1);
    assert_int_equal(evr_table_event_id(table, "E_FIND"), -1);
    evr_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  find: by match key within one event only; expired entries go.

static void test_find(void **state)
{
    evr_table_t *table = s_table(16);
    target_t *t = s_target();
    assert_int_equal(evr_table_subscribe(table, "E_A", "udp:127.0.0.1:9000",
                                         "udp|127.0.0.1|9000", 30, SEC(5), t),
                     EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E_B", "udp|127.0.0.1|9000", 60, SEC(6)),
                     EVR_TABLE_ADDED);

    evr_sub_info_t info;
    memset(&info, 0, sizeof(info));
    assert_int_equal(
        evr_table_find(table, "E_A", "udp|127.0.0.1|9000", SEC(7), &info), 0);
    assert_string_equal(info.event, "E_A");
    assert_int_equal(info.event_id, 0);
    assert_string_equal(info.socket, "udp:127.0.0.1:9000");
    assert_string_equal(info.match_key, "udp|127.0.0.1|9000");
    assert_int_equal(info.expire_s, 30);
    assert_int_equal(info.sub_time_s, 5);
    assert_int_equal(info.ttl_s, 28);
    assert_ptr_equal(info.target, t);

    assert_int_equal(
        evr_table_find(table, "E_B", "udp|127.0.0.1|9000", SEC(7), &info), 0);
    assert_int_equal(info.event_id, 1);
    assert_ptr_not_equal(info.target, t);

    assert_int_equal(
        evr_table_find(table, "E_A", "udp|127.0.0.1|9001", SEC(7), &info), -1);
    assert_int_equal(
        evr_table_find(table, "E_C", "udp|127.0.0.1|9000", SEC(7), &info), -1);
    assert_int_equal(evr_table_find(table, "bad name", "x", SEC(7), &info), -1);

    //  Expired at 36: find fails and removes it; E_B stays.
    assert_int_equal(
        evr_table_find(table, "E_A", "udp|127.0.0.1|9000", SEC(36), &info), -1);
    assert_int_equal(s_tracker.count, 1);
    assert_int_equal(evr_table_size(table), 1);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, 2);
}

//  --------------------------------------------------------------------------
//  Subscriptions per event: entries live or not yet swept, refreshes not
//  counted twice, unknown events 0 and never registered.

static void test_sub_count(void **state)
{
    evr_table_t *table = s_table(16);
    assert_int_equal(evr_table_sub_count(table, "E_A"), 0);
    assert_int_equal(evr_table_sub_count(table, "bad name"), 0);
    assert_int_equal(evr_table_event_count(table), 0);
    assert_int_equal(s_sub(table, "E_A", "a", 10, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E_A", "b", 20, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E_B", "a", 20, SEC(1)), EVR_TABLE_ADDED);
    assert_int_equal(s_sub(table, "E_A", "a", 30, SEC(2)), EVR_TABLE_REFRESHED);
    assert_int_equal(evr_table_sub_count(table, "E_A"), 2);
    assert_int_equal(evr_table_sub_count(table, "E_B"), 1);
    assert_int_equal(evr_table_sub_count(table, "E_C"), 0);
    assert_int_equal(evr_table_event_id(table, "E_C"), -1);
    //  b expired at 22 but is not swept yet: still counted
    assert_int_equal(evr_table_sub_count(table, "E_A"), 2);
    assert_int_equal(evr_table_sweep(table, SEC(22)), 2); //  b and E_B's a
    assert_int_equal(evr_table_sub_count(table, "E_A"), 1);
    assert_int_equal(evr_table_sub_count(table, "E_B"), 0);
    assert_int_equal(s_sub(table, "E_A", "a", 0, SEC(23)), EVR_TABLE_REMOVED);
    assert_int_equal(evr_table_sub_count(table, "E_A"), 0);
    evr_table_destroy(&table);
}

//  --------------------------------------------------------------------------
//  A table with no release callback does not touch targets.

static void test_no_release(void **state)
{
    int targets[3];
    evr_table_t *table = evr_table_new(8, NULL, NULL);
    assert_non_null(table);
    assert_int_equal(
        evr_table_subscribe(table, "E", "s", "a", 1, SEC(1), &targets[0]),
        EVR_TABLE_ADDED);
    assert_int_equal(
        evr_table_subscribe(table, "E", "s", "b", 5, SEC(1), &targets[1]),
        EVR_TABLE_ADDED);
    assert_int_equal(evr_table_subscribe(table, "E", "s", "c", EVR_EXPIRE_NEVER,
                                         SEC(1), &targets[2]),
                     EVR_TABLE_ADDED);
    assert_int_equal(evr_table_sweep(table, SEC(3)), 1);
    assert_int_equal(
        evr_table_subscribe(table, "E", "s", "b", 0, SEC(3), &targets[1]),
        EVR_TABLE_REMOVED);
    evr_table_destroy(&table);
    assert_null(table);
    evr_table_destroy(&table); //  safe on NULL
}

//  --------------------------------------------------------------------------
//  Scale sanity: 100k subscriptions across 10k events, then sweeps.

static void test_scale(void **state)
{
    enum { EVENTS = 10000, PER_EVENT = 10 };
    evr_table_t *table = s_table(EVR_DEFAULT_MAX_EVENTS);
    char event[32], key[48];
    int64_t t0 = SEC(1700000000);
    //  Entry i of event e expires after (e + i) % 10 + 1 seconds, except
    //  every tenth event's first entry, which is permanent.
    size_t expiring_by[12] = {0}; //  count expiring at t0 + n seconds
    size_t permanent = 0;
    for (int e = 0; e < EVENTS; e++) {
        snprintf(event, sizeof(event), "E_SCALE_%d", e);
        for (int i = 0; i < PER_EVENT; i++) {
            snprintf(key, sizeof(key), "udp|10.0.%d.%d|%d", e % 256, i,
                     9000 + e);
            int64_t expire = (e + i) % 10 + 1;
            if (e % 10 == 0 && i == 0) {
                expire = EVR_EXPIRE_NEVER;
                permanent++;
            } else
                expiring_by[expire]++;
            assert_int_equal(s_sub(table, event, key, expire, t0),
                             EVR_TABLE_ADDED);
        }
    }
    assert_int_equal(evr_table_size(table), EVENTS * PER_EVENT);
    assert_int_equal(evr_table_event_count(table), EVENTS);
    assert_int_equal(evr_table_event_id(table, "E_SCALE_9999"), 9999);

    //  Refresh every entry of event 5 (10 entries) to 100 s.
    for (int i = 0; i < PER_EVENT; i++) {
        snprintf(key, sizeof(key), "udp|10.0.%d.%d|%d", 5, i, 9005);
        int64_t expire = (5 + i) % 10 + 1;
        expiring_by[expire]--;
        assert_int_equal(s_sub(table, "E_SCALE_5", key, 100, t0),
                         EVR_TABLE_REFRESHED);
    }

    size_t left = EVENTS * PER_EVENT;
    for (int n = 1; n <= 10; n++) {
        size_t gone = evr_table_sweep(table, t0 + SEC(n + 1));
        assert_int_equal(gone, expiring_by[n]);
        left -= gone;
        assert_int_equal(evr_table_size(table), left);
    }
    assert_int_equal(left, permanent + PER_EVENT);
    assert_int_equal(
        evr_table_lookup(table, "E_SCALE_5", t0 + SEC(50), NULL, NULL),
        PER_EVENT);
    assert_int_equal(
        evr_table_lookup(table, "E_SCALE_10", t0 + SEC(50), NULL, NULL), 1);
    assert_int_equal(evr_table_sweep(table, t0 + SEC(101)), PER_EVENT);
    assert_int_equal(evr_table_size(table), permanent);
    assert_int_equal(s_tracker.count, EVENTS * PER_EVENT - permanent);
    evr_table_destroy(&table);
    assert_int_equal(s_tracker.count, EVENTS * PER_EVENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_expire_flow, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_keeps_position, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_never_keeps_expiring,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_negative_expire, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_countdown, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_newest_first_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_never, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_counts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_model_random, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sweep_churn, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_registry, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_name_validation, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_registry_full, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_lookup_registers, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_find, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sub_count, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_release, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_scale, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
