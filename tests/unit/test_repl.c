/*  test_repl.c - unit tests of evr_repl, the replicated records (a
    last-writer-wins map) and the version vector of the delta streams.

    The clock is injected: gc() and live() take now_ms. Oracles are
    computed independently of the module: the winner of a key is the
    write with the largest (hlc, origin) among those applied.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evr_hlc.h"
#include "evr_repl.h"

#define LEASE 3600000 //  max lease, ms (OpenSIPS' default expire)
#define SKEW 10000    //  max skew, ms
#define MK EVR_HLC_MAKE

#define APPLIED EVR_REPL_APPLIED
#define STALE EVR_REPL_STALE
#define REFUSED EVR_REPL_REFUSED

//  --------------------------------------------------------------------------
//  Helpers

//  A subscription written at ms (its hlc and its sub time).
static evr_record_t s_sub(const char *event, const char *key,
                          const char *origin, uint64_t ms, uint16_t logical,
                          uint32_t expire_s)
{
    evr_record_t rec = {event,           key,    key,  expire_s, ms,
                        MK(ms, logical), origin, false};
    return rec;
}

//  An unsubscribe written at ms.
static evr_record_t s_tomb(const char *event, const char *key,
                           const char *origin, uint64_t ms, uint16_t logical)
{
    evr_record_t rec = {event, key, key, 0, ms, MK(ms, logical), origin, true};
    return rec;
}

//  Whether version a is newer than version b (the oracle, written apart
//  from the module).
static bool s_newer(const evr_record_t *a, const evr_record_t *b)
{
    return a->hlc > b->hlc ||
           (a->hlc == b->hlc && strcmp(a->origin, b->origin) > 0);
}

//  Assert two records are equal in every field.
static void s_assert_same(const evr_record_t *a, const evr_record_t *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->event, b->event);
    assert_string_equal(a->socket, b->socket);
    assert_string_equal(a->match_key, b->match_key);
    assert_int_equal(a->expire_s, b->expire_s);
    assert_int_equal(a->sub_time_ms, b->sub_time_ms);
    assert_int_equal(a->hlc, b->hlc);
    assert_string_equal(a->origin, b->origin);
    assert_int_equal(a->tombstone, b->tombstone);
}

//  foreach callback: check a record is in another map, identical.
static void s_check_in(const evr_record_t *rec, void *arg)
{
    const evr_repl_t *other = (const evr_repl_t *)arg;
    s_assert_same(rec, evr_repl_find(other, rec->event, rec->match_key));
}

//  Assert two maps hold the same records, field by field.
static void s_assert_maps_equal(const evr_repl_t *a, const evr_repl_t *b)
{
    assert_int_equal(evr_repl_size(a), evr_repl_size(b));
    assert_int_equal(evr_repl_digest(a), evr_repl_digest(b));
    evr_repl_foreach(a, s_check_in, (void *)b);
}

//  Shuffle n indices (Fisher-Yates).
static void s_shuffle(size_t *idx, size_t n)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

//  The next permutation in lexicographic order; false after the last.
static bool s_next_permutation(size_t *p, size_t n)
{
    size_t i = n - 1;
    while (i > 0 && p[i - 1] >= p[i])
        i--;
    if (i == 0)
        return false;
    size_t j = n - 1;
    while (p[j] <= p[i - 1])
        j--;
    size_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
    for (size_t a = i, b = n - 1; a < b; a++, b--) {
        t = p[a];
        p[a] = p[b];
        p[b] = t;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Records

static void test_new_destroy(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    assert_non_null(m);
    assert_int_equal(evr_repl_size(m), 0);
    assert_int_equal(evr_repl_digest(m), 0);
    assert_null(evr_repl_find(m, "E", "k"));
    evr_repl_destroy(&m);
    assert_null(m);
    evr_repl_destroy(&m); //  safe on NULL
    assert_null(m);
}

//  merge() keeps its own copies of the strings.
static void test_merge_copies(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    char event[] = "E_UL_CONTACT";
    char socket[] = "udp:10.0.0.1:9000 password";
    char key[] = "udp:10.0.0.1:9000";
    char origin[] = "relay-a";
    evr_record_t rec = {event, socket,      key,    60,
                        5000,  MK(5000, 3), origin, false};
    assert_int_equal(evr_repl_merge(m, &rec), APPLIED);
    memset(event, 'x', sizeof(event) - 1);
    memset(socket, 'x', sizeof(socket) - 1);
    memset(key, 'x', sizeof(key) - 1);
    memset(origin, 'x', sizeof(origin) - 1);

    const evr_record_t *got =
        evr_repl_find(m, "E_UL_CONTACT", "udp:10.0.0.1:9000");
    assert_non_null(got);
    assert_string_equal(got->event, "E_UL_CONTACT");
    assert_string_equal(got->socket, "udp:10.0.0.1:9000 password");
    assert_string_equal(got->match_key, "udp:10.0.0.1:9000");
    assert_string_equal(got->origin, "relay-a");
    assert_int_equal(got->expire_s, 60);
    assert_int_equal(got->sub_time_ms, 5000);
    assert_int_equal(got->hlc, MK(5000, 3));
    assert_false(got->tombstone);
    assert_int_equal(evr_repl_size(m), 1);

    //  The key is (event, match key): neither alone finds it.
    assert_null(evr_repl_find(m, "E_UL_CONTACT", "udp:10.0.0.1:9001"));
    assert_null(evr_repl_find(m, "E_OTHER", "udp:10.0.0.1:9000"));
    assert_null(evr_repl_find(m, "E_UL_CONTACT\nudp:10.0.0.1:9000", ""));
    assert_null(evr_repl_find(m, NULL, "udp:10.0.0.1:9000"));
    assert_null(evr_repl_find(m, "E_UL_CONTACT", NULL));
    evr_repl_destroy(&m);
}

//  The same match key under two events, and keys that would collide if
//  the two parts were simply concatenated, are different records.
static void test_keys(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_record_t a = s_sub("E_A", "k", "r1", 1000, 0, 60);
    evr_record_t b = s_sub("E_B", "k", "r1", 1000, 0, 60);
    evr_record_t c = s_sub("E_Ak", "x", "r1", 1000, 0, 60);
    evr_record_t d = s_sub("E_A", "kx", "r1", 1000, 0, 60);
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    assert_int_equal(evr_repl_merge(m, &b), APPLIED);
    assert_int_equal(evr_repl_merge(m, &c), APPLIED);
    assert_int_equal(evr_repl_merge(m, &d), APPLIED);
    assert_int_equal(evr_repl_size(m), 4);
    s_assert_same(evr_repl_find(m, "E_A", "k"), &a);
    s_assert_same(evr_repl_find(m, "E_B", "k"), &b);
    s_assert_same(evr_repl_find(m, "E_Ak", "x"), &c);
    s_assert_same(evr_repl_find(m, "E_A", "kx"), &d);

    //  A match key holding '\n' is fine (only the event may not).
    evr_record_t e = s_sub("E_A", "k\nE_B", "r1", 1000, 0, 60);
    assert_int_equal(evr_repl_merge(m, &e), APPLIED);
    s_assert_same(evr_repl_find(m, "E_A", "k\nE_B"), &e);

    //  Long keys (past any fixed buffer).
    char big[2000];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    evr_record_t f = s_sub("E_A", big, "r1", 1000, 0, 60);
    assert_int_equal(evr_repl_merge(m, &f), APPLIED);
    s_assert_same(evr_repl_find(m, "E_A", big), &f);
    f.hlc++;
    assert_int_equal(evr_repl_merge(m, &f), APPLIED);
    s_assert_same(evr_repl_find(m, "E_A", big), &f);
    assert_int_equal(evr_repl_size(m), 6);
    evr_repl_destroy(&m);
}

//  Malformed records are refused, and change nothing.
static void test_refused_malformed(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_record_t ok = s_sub("E", "k", "r1", 1000, 0, 60);
    evr_record_t r;

    r = ok, r.event = NULL;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.event = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.socket = NULL;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.socket = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.match_key = NULL;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.match_key = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.origin = NULL;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.origin = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.event = "E\nk";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    //  expire 0 is only for tombstones.
    r = ok, r.expire_s = 0;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    //  Tombstones need every string too.
    r = s_tomb("E", "k", "r1", 1000, 0), r.origin = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = s_tomb("E", "k", "r1", 1000, 0), r.socket = NULL;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    assert_int_equal(evr_repl_size(m), 0);
    assert_int_equal(evr_repl_digest(m), 0);

    assert_int_equal(evr_repl_merge(m, &ok), APPLIED);
    uint64_t digest = evr_repl_digest(m);
    //  A refused newer version leaves the stored one alone.
    r = ok, r.hlc = MK(2000, 0), r.match_key = "";
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = ok, r.hlc = MK(2000, 0), r.expire_s = 0;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    s_assert_same(evr_repl_find(m, "E", "k"), &ok);
    assert_int_equal(evr_repl_digest(m), digest);
    //  A tombstone with expire 0 is fine.
    r = s_tomb("E", "k", "r1", 2000, 0);
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    evr_repl_destroy(&m);
}

//  The lease rule: sub_time_ms + expire_s * 1000 <= physical(hlc) + lease.
static void test_lease_rule(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    const uint64_t p = 1700000000000ULL;
    evr_record_t r = s_sub("E", "k", "r1", p, 0, LEASE / 1000);
    assert_int_equal(evr_repl_merge(m, &r), APPLIED); //  exactly the lease

    r = s_sub("E", "k2", "r1", p, 0, LEASE / 1000 + 1);
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);

    //  Sub time 1 ms after the hlc's physical time (within the skew).
    r = s_sub("E", "k3", "r1", p, 0, LEASE / 1000);
    r.sub_time_ms = p + 1;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r.sub_time_ms = p;
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);

    //  Sub time before the hlc: the deadline counts from the sub time.
    r = s_sub("E", "k4", "r1", p, 0, LEASE / 1000 + 5);
    r.sub_time_ms = p - 5000;
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    r = s_sub("E", "k5", "r1", p, 0, LEASE / 1000 + 5);
    r.sub_time_ms = p - 4999;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);

    //  The largest expire, for a tombstone: not checked.
    r = s_tomb("E", "k6", "r1", p, 0);
    r.expire_s = UINT32_MAX;
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);

    //  A refresh that would break the rule does not replace the record.
    r = s_sub("E", "k", "r2", p + 10, 0, LEASE / 1000 + 1);
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    assert_int_equal(evr_repl_find(m, "E", "k")->hlc, MK(p, 0));
    assert_int_equal(evr_repl_size(m), 4);
    evr_repl_destroy(&m);

    //  No overflow on absurd times, even with the largest skew bound.
    m = evr_repl_new(LEASE, INT64_MAX);
    r = s_sub("E", "k", "r1", 1000, 0, 1);
    r.sub_time_ms = UINT64_MAX - 10;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r.expire_s = UINT32_MAX;
    r.sub_time_ms = UINT64_MAX;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    assert_int_equal(evr_repl_size(m), 0);
    evr_repl_destroy(&m);

    //  A zero lease admits nothing but tombstones.
    m = evr_repl_new(0, SKEW);
    r = s_sub("E", "k", "r1", 1000, 0, 1);
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r = s_tomb("E", "k", "r1", 1000, 0);
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    evr_repl_destroy(&m);
}

//  The skew rule: sub_time_ms <= physical(hlc) + max_skew, for every
//  record.
static void test_skew_rule(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    const uint64_t p = 1700000000000ULL;
    evr_record_t r = s_sub("E", "k", "r1", p, 0, 1);
    r.sub_time_ms = p + SKEW;
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    r = s_sub("E", "k2", "r1", p, 0, 1);
    r.sub_time_ms = p + SKEW + 1;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    r.sub_time_ms = UINT64_MAX;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);

    r = s_tomb("E", "k3", "r1", p, 0);
    r.sub_time_ms = p + SKEW;
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    r = s_tomb("E", "k4", "r1", p, 0);
    r.sub_time_ms = p + SKEW + 1;
    assert_int_equal(evr_repl_merge(m, &r), REFUSED);
    assert_int_equal(evr_repl_size(m), 2);
    evr_repl_destroy(&m);
}

//  --------------------------------------------------------------------------
//  Last writer wins

//  Six writes to one key from three origins, with ties on hlc and
//  tombstones, applied in every one of the 720 orders to a fresh map: each
//  merge says APPLIED exactly when the write is newer than every write
//  before it, and every order ends with the same record and digest.
static void test_lww_every_order(void **state)
{
    const evr_record_t writes[] = {
        s_sub("E", "k", "relay-a", 1000, 0, 60),
        s_sub("E", "k", "relay-b", 1000, 0, 30),  //  ties with the first
        s_tomb("E", "k", "relay-c", 1000, 1),     //  later counter
        s_sub("E", "k", "relay-a", 1001, 0, 120), //  later ms
        s_sub("E", "k", "relay-c", 1001, 0, 90),  //  wins the tie at 1001
        s_tomb("E", "k", "relay-b", 1001, 0),
    };
    const size_t n = sizeof(writes) / sizeof(writes[0]);
    size_t winner = 0;
    for (size_t i = 1; i < n; i++)
        if (s_newer(&writes[i], &writes[winner]))
            winner = i;
    assert_int_equal(winner, 4);

    evr_repl_t *ref = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_merge(ref, &writes[winner]), APPLIED);

    size_t p[6] = {0, 1, 2, 3, 4, 5};
    size_t orders = 0;
    do {
        evr_repl_t *m = evr_repl_new(LEASE, SKEW);
        const evr_record_t *best = NULL;
        for (size_t i = 0; i < n; i++) {
            const evr_record_t *w = &writes[p[i]];
            evr_repl_result_t expect =
                !best || s_newer(w, best) ? APPLIED : STALE;
            assert_int_equal(evr_repl_merge(m, w), expect);
            if (expect == APPLIED)
                best = w;
            s_assert_same(evr_repl_find(m, "E", "k"), best);
        }
        s_assert_same(evr_repl_find(m, "E", "k"), &writes[winner]);
        s_assert_maps_equal(m, ref);
        evr_repl_destroy(&m);
        orders++;
    } while (s_next_permutation(p, n));
    assert_int_equal(orders, 720);
    evr_repl_destroy(&ref);
}

//  Many writes to many keys from three origins (ties, tombstones,
//  duplicates), merged in random orders into separate maps: every map ends
//  equal to a map fed only each key's winner.
static void test_lww_random_orders(void **state)
{
    enum { KEYS = 40, WRITES = 800, ROUNDS = 60 };
    static const char *origins[] = {"relay-a", "relay-b", "relay-c"};
    static const char *events[] = {"E_ONE", "E_TWO"};
    static char keys[KEYS][32];
    evr_record_t writes[WRITES];
    srand(4242);
    for (int k = 0; k < KEYS; k++)
        snprintf(keys[k], sizeof(keys[k]), "udp:10.0.0.%d:5060", k);
    for (int i = 0; i < WRITES; i++) {
        int k = rand() % KEYS;
        uint64_t ms = 100000 + (uint64_t)(rand() % 20); //  many ties
        uint16_t logical = (uint16_t)(rand() % 3);
        const char *origin = origins[rand() % 3];
        //  A version (key, hlc, origin) names one write: no two alike.
        bool taken = false;
        for (int j = 0; j < i && !taken; j++)
            taken = writes[j].match_key == keys[k] &&
                    writes[j].hlc == MK(ms, logical) &&
                    writes[j].origin == origin;
        if (taken) {
            i--;
            continue;
        }
        if (rand() % 4 == 0)
            writes[i] = s_tomb(events[k % 2], keys[k], origin, ms, logical);
        else
            writes[i] = s_sub(events[k % 2], keys[k], origin, ms, logical,
                              1 + rand() % 3600);
    }

    //  The oracle: per key, the newest write.
    const evr_record_t *best[KEYS] = {0};
    for (int i = 0; i < WRITES; i++) {
        int k = atoi(writes[i].match_key + strlen("udp:10.0.0."));
        if (!best[k] || s_newer(&writes[i], best[k]))
            best[k] = &writes[i];
    }
    evr_repl_t *ref = evr_repl_new(LEASE, SKEW);
    for (int k = 0; k < KEYS; k++)
        if (best[k])
            assert_int_equal(evr_repl_merge(ref, best[k]), APPLIED);

    size_t idx[WRITES];
    for (size_t i = 0; i < WRITES; i++)
        idx[i] = i;
    for (int round = 0; round < ROUNDS; round++) {
        s_shuffle(idx, WRITES);
        evr_repl_t *m = evr_repl_new(LEASE, SKEW);
        for (size_t i = 0; i < WRITES; i++) {
            evr_repl_merge(m, &writes[idx[i]]);
            if (rand() % 5 == 0) //  a duplicate, right away or later
                assert_int_equal(evr_repl_merge(m, &writes[idx[i]]), STALE);
            if (rand() % 7 == 0)
                evr_repl_merge(m, &writes[idx[rand() % (i + 1)]]);
        }
        s_assert_maps_equal(m, ref);
        s_assert_maps_equal(ref, m);
        evr_repl_destroy(&m);
    }
    evr_repl_destroy(&ref);
}

//  Merging the same record, or the same set, twice changes nothing.
static void test_idempotence(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_record_t a = s_sub("E", "k1", "relay-a", 1000, 0, 60);
    evr_record_t b = s_tomb("E", "k2", "relay-b", 1000, 0);
    evr_record_t c = s_sub("E", "k1", "relay-b", 999, 0, 60);
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    assert_int_equal(evr_repl_merge(m, &b), APPLIED);
    assert_int_equal(evr_repl_merge(m, &c), STALE);
    uint64_t digest = evr_repl_digest(m);
    assert_int_equal(evr_repl_merge(m, &a), STALE);
    assert_int_equal(evr_repl_merge(m, &b), STALE);
    assert_int_equal(evr_repl_merge(m, &c), STALE);
    assert_int_equal(evr_repl_digest(m), digest);
    assert_int_equal(evr_repl_size(m), 2);
    s_assert_same(evr_repl_find(m, "E", "k1"), &a);
    s_assert_same(evr_repl_find(m, "E", "k2"), &b);

    //  Merging a map's own records into it (a snapshot of itself).
    const evr_record_t *own = evr_repl_find(m, "E", "k1");
    assert_int_equal(evr_repl_merge(m, own), STALE);
    assert_int_equal(evr_repl_digest(m), digest);
    evr_repl_destroy(&m);
}

//  Equal hlc: the larger origin (strcmp) wins, in either order. Equal
//  (hlc, origin): the first one stays (same version, STALE).
static void test_tie_break_by_origin(void **state)
{
    evr_record_t a = s_sub("E", "k", "relay-a", 1000, 5, 60);
    evr_record_t b = s_sub("E", "k", "relay-b", 1000, 5, 30);
    evr_repl_t *m1 = evr_repl_new(LEASE, SKEW);
    evr_repl_t *m2 = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_merge(m1, &a), APPLIED);
    assert_int_equal(evr_repl_merge(m1, &b), APPLIED);
    assert_int_equal(evr_repl_merge(m2, &b), APPLIED);
    assert_int_equal(evr_repl_merge(m2, &a), STALE);
    s_assert_same(evr_repl_find(m1, "E", "k"), &b);
    s_assert_same(evr_repl_find(m2, "E", "k"), &b);
    s_assert_maps_equal(m1, m2);

    //  strcmp order, not length: "relay-b" > "relay-aa".
    evr_record_t aa = s_sub("E", "k", "relay-aa", 1000, 5, 60);
    assert_int_equal(evr_repl_merge(m1, &aa), STALE);

    //  Same version, other contents: not newer.
    evr_record_t b2 = b;
    b2.socket = "udp:other:1";
    b2.expire_s = 99;
    assert_int_equal(evr_repl_merge(m1, &b2), STALE);
    s_assert_same(evr_repl_find(m1, "E", "k"), &b);

    //  A larger hlc beats any origin.
    evr_record_t a2 = s_sub("E", "k", "relay-a", 1000, 6, 60);
    assert_int_equal(evr_repl_merge(m1, &a2), APPLIED);
    s_assert_same(evr_repl_find(m1, "E", "k"), &a2);
    evr_repl_destroy(&m1);
    evr_repl_destroy(&m2);
}

//  A tombstone shadows an older subscribe in either order, and is
//  shadowed by a newer one.
static void test_tombstone(void **state)
{
    evr_record_t sub1 = s_sub("E", "k", "relay-a", 1000, 0, 60);
    evr_record_t tomb = s_tomb("E", "k", "relay-b", 2000, 0);
    evr_record_t sub3 = s_sub("E", "k", "relay-c", 3000, 0, 60);

    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_merge(m, &tomb), APPLIED);
    assert_int_equal(evr_repl_merge(m, &sub1), STALE); //  no resurrection
    const evr_record_t *got = evr_repl_find(m, "E", "k");
    s_assert_same(got, &tomb);
    assert_false(evr_repl_live(got, 2000));
    assert_int_equal(evr_repl_size(m), 1); //  tombstones count
    assert_int_equal(evr_repl_merge(m, &sub3), APPLIED);
    got = evr_repl_find(m, "E", "k");
    s_assert_same(got, &sub3);
    assert_true(evr_repl_live(got, 3000));
    assert_int_equal(evr_repl_merge(m, &tomb), STALE);
    evr_repl_destroy(&m);

    m = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_merge(m, &sub1), APPLIED);
    assert_int_equal(evr_repl_merge(m, &tomb), APPLIED);
    s_assert_same(evr_repl_find(m, "E", "k"), &tomb);
    assert_int_equal(evr_repl_merge(m, &sub1), STALE);
    evr_repl_destroy(&m);
}

//  A record handed back to merge() with a newer version, its strings
//  pointing into the stored record itself.
static void test_merge_own_view(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_record_t a = s_sub("E", "k", "relay-a", 1000, 0, 60);
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    evr_record_t r = *evr_repl_find(m, "E", "k");
    r.hlc = MK(1000, 1);
    r.origin = "relay-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    const evr_record_t *got = evr_repl_find(m, "E", "k");
    assert_string_equal(got->origin, r.origin);
    assert_string_equal(got->socket, "k");
    r = *got;
    r.hlc = MK(1000, 2);
    r.socket = "udp:a-longer-socket-than-before:5060";
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    got = evr_repl_find(m, "E", "k");
    assert_string_equal(got->socket, "udp:a-longer-socket-than-before:5060");
    assert_string_equal(
        got->origin, "relay-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    //  Its digest is that of a fresh map holding the same version.
    evr_repl_t *fresh = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_merge(fresh, got), APPLIED);
    s_assert_maps_equal(m, fresh);
    evr_repl_destroy(&fresh);
    evr_repl_destroy(&m);
}

//  --------------------------------------------------------------------------
//  Expiry

//  OpenSIPS' second rule: live while now_s <= sub_time_s + expire_s.
static void test_live_rule(void **state)
{
    evr_record_t r = s_sub("E", "k", "r1", 10500, 0, 2);
    assert_true(evr_repl_live(&r, 0));
    assert_true(evr_repl_live(&r, -5000));
    assert_true(evr_repl_live(&r, 10500));
    assert_true(evr_repl_live(&r, 12000));
    assert_true(evr_repl_live(&r, 12999)); //  the deadline second counts
    assert_false(evr_repl_live(&r, 13000));
    assert_false(evr_repl_live(&r, INT64_MAX));

    r = s_sub("E", "k", "r1", 10000, 0, 2);
    assert_true(evr_repl_live(&r, 12999));
    assert_false(evr_repl_live(&r, 13000));

    r = s_sub("E", "k", "r1", 10999, 0, 1);
    assert_true(evr_repl_live(&r, 11999));
    assert_false(evr_repl_live(&r, 12000));

    r = s_tomb("E", "k", "r1", 10000, 0);
    r.expire_s = 60;
    assert_false(evr_repl_live(&r, 0));
    assert_false(evr_repl_live(&r, 10000));
}

typedef struct {
    const evr_repl_t *map;
    int64_t now; //  the time gc runs at
    size_t calls;
    char last_key[64];
    bool was_findable;
    bool was_live;
} gc_seen_t;

//  gc callback: remember what was dropped, check it is still in the map
//  and whether it was live.
static void s_on_drop(const evr_record_t *rec, void *arg)
{
    gc_seen_t *seen = (gc_seen_t *)arg;
    seen->calls++;
    snprintf(seen->last_key, sizeof(seen->last_key), "%s", rec->match_key);
    seen->was_findable =
        evr_repl_find(seen->map, rec->event, rec->match_key) == rec;
    seen->was_live = seen->was_live || evr_repl_live(rec, seen->now);
}

//  Run gc at now with s_on_drop.
static size_t s_gc(evr_repl_t *m, gc_seen_t *seen, int64_t now)
{
    seen->now = now;
    return evr_repl_gc(m, now, s_on_drop, seen);
}

//  The shadow window: a record of physical time p (tombstone or not) is
//  dropped right after p + max_lease + max_skew + 999.
#define WINDOW (LEASE + SKEW + 999)

//  gc drops each record, tombstone or not, right after physical(hlc) +
//  max_lease + max_skew + 999, and keeps it until then, past its deadline
//  too (not live).
static void test_gc_boundaries(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_record_t a = s_sub("E", "a", "r1", 10500, 0, 2); //  live to 12999
    evr_record_t b = s_sub("E", "b", "r1", 10000, 0, 5); //  live to 15999
    evr_record_t t = s_tomb("E", "t", "r1", 11000, 7);
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    assert_int_equal(evr_repl_merge(m, &b), APPLIED);
    assert_int_equal(evr_repl_merge(m, &t), APPLIED);
    const uint64_t digest = evr_repl_digest(m);

    evr_repl_t *without_b = evr_repl_new(LEASE, SKEW);
    evr_repl_merge(without_b, &a);
    evr_repl_merge(without_b, &t);

    gc_seen_t seen = {m, 0, 0, "", false, false};
    assert_int_equal(s_gc(m, &seen, 0), 0);
    assert_int_equal(s_gc(m, &seen, 12999), 0);
    //  Past a's deadline, then b's: both stay, not live, and unchanged.
    assert_int_equal(s_gc(m, &seen, 13000), 0);
    assert_false(evr_repl_live(evr_repl_find(m, "E", "a"), 13000));
    assert_true(evr_repl_live(evr_repl_find(m, "E", "b"), 13000));
    assert_int_equal(s_gc(m, &seen, 16000), 0);
    s_assert_same(evr_repl_find(m, "E", "a"), &a);
    s_assert_same(evr_repl_find(m, "E", "b"), &b);
    assert_false(evr_repl_live(evr_repl_find(m, "E", "b"), 16000));
    assert_int_equal(evr_repl_size(m), 3);
    assert_int_equal(evr_repl_digest(m), digest);
    assert_int_equal(seen.calls, 0);

    //  b (hlc 10000) goes first, then a (hlc 10500), then t (hlc 11000).
    assert_int_equal(s_gc(m, &seen, 10000 + WINDOW), 0);
    assert_int_equal(s_gc(m, &seen, 10000 + WINDOW + 1), 1);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.last_key, "b");
    assert_true(seen.was_findable);
    assert_null(evr_repl_find(m, "E", "b"));
    assert_int_equal(evr_repl_size(m), 2);
    s_assert_maps_equal(m, without_b);

    assert_int_equal(s_gc(m, &seen, 10500 + WINDOW), 0);
    assert_int_equal(s_gc(m, &seen, 10500 + WINDOW + 1), 1);
    assert_string_equal(seen.last_key, "a");
    assert_int_equal(evr_repl_size(m), 1);

    assert_int_equal(s_gc(m, &seen, 11000 + WINDOW), 0);
    assert_non_null(evr_repl_find(m, "E", "t"));
    assert_int_equal(s_gc(m, &seen, 11000 + WINDOW + 1), 1);
    assert_string_equal(seen.last_key, "t");
    assert_int_equal(seen.calls, 3);
    assert_false(seen.was_live);
    assert_int_equal(evr_repl_size(m), 0);
    assert_int_equal(evr_repl_digest(m), 0);
    assert_null(evr_repl_find(m, "E", "t"));

    //  A dropped record can come back with a newer version.
    evr_record_t a2 = s_sub("E", "a", "r1", 20000, 0, 2);
    assert_int_equal(evr_repl_merge(m, &a2), APPLIED);
    assert_int_equal(evr_repl_size(m), 1);
    evr_repl_destroy(&without_b);
    evr_repl_destroy(&m);
}

//  The +999: a record with the longest lease, subscribed on a whole second,
//  is live through physical(hlc) + max_lease + 999, so even with no skew
//  it stays that long, and goes right after.
static void test_gc_longest_lease(void **state)
{
    const uint64_t p = 1700000000000ULL;
    evr_repl_t *m = evr_repl_new(LEASE, 0);
    evr_record_t r = s_sub("E", "k", "r1", p, 0, LEASE / 1000);
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    const int64_t last = (int64_t)p + LEASE + 999;
    assert_true(evr_repl_live(&r, last));
    assert_false(evr_repl_live(&r, last + 1));
    gc_seen_t seen = {m, 0, 0, "", false, false};
    assert_int_equal(s_gc(m, &seen, last), 0);
    assert_int_equal(s_gc(m, &seen, last + 1), 1);
    assert_false(seen.was_live);
    evr_repl_destroy(&m);

    //  No overflow with the largest bounds: nothing is ever dropped.
    m = evr_repl_new(INT64_MAX, INT64_MAX);
    assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    assert_int_equal(evr_repl_gc(m, INT64_MAX, NULL, NULL), 0);
    assert_int_equal(evr_repl_size(m), 1);
    evr_repl_destroy(&m);
}

//  The window uses the hlc's physical time, not the sub time, for
//  tombstones and subscriptions alike.
static void test_gc_uses_hlc(void **state)
{
    evr_repl_t *m = evr_repl_new(1000, 500);
    evr_record_t t = s_tomb("E", "t", "r1", 50000, 0);
    t.sub_time_ms = 1; //  long before the hlc
    evr_record_t s = s_sub("E", "s", "r1", 50000, 0, 1);
    s.sub_time_ms = 1; //  dead from the start
    assert_int_equal(evr_repl_merge(m, &t), APPLIED);
    assert_int_equal(evr_repl_merge(m, &s), APPLIED);
    assert_false(evr_repl_live(&s, 50000));
    assert_int_equal(evr_repl_gc(m, 52499, NULL, NULL), 0);
    assert_int_equal(evr_repl_size(m), 2);
    assert_int_equal(evr_repl_gc(m, 52500, NULL, NULL), 2);
    assert_int_equal(evr_repl_size(m), 0);
    evr_repl_destroy(&m);
}

typedef struct {
    evr_repl_t *into;
    int64_t now;
    size_t applied;
    size_t live;
} snap_t;

//  foreach callback: merge a record into another map (a snapshot), and
//  count the applied ones that are live there.
static void s_snapshot_into(const evr_record_t *rec, void *arg)
{
    snap_t *snap = (snap_t *)arg;
    if (evr_repl_merge(snap->into, rec) == APPLIED) {
        snap->applied++;
        if (evr_repl_live(rec, snap->now))
            snap->live++;
    }
}

//  An expired record does not come back: A (expire 3600 s) is replaced by
//  a newer refresh B (expire 60 s). Past B's deadline, B stays as a shadow
//  and a late copy of A (from a peer that missed B) is STALE; snapshots
//  carry B, so that peer learns it. Only after B's window is B dropped,
//  and by then A is past its own last live second, even on a clock
//  max_skew behind.
static void test_gc_no_resurrection(void **state)
{
    const uint64_t p = 1700000000000ULL;
    const evr_record_t a = s_sub("E", "k", "relay-a", p, 0, 3600);
    const evr_record_t b = s_sub("E", "k", "relay-b", p + 1000, 0, 60);
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_repl_t *peer = evr_repl_new(LEASE, SKEW); //  missed B
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    assert_int_equal(evr_repl_merge(peer, &a), APPLIED);
    assert_int_equal(evr_repl_merge(m, &b), APPLIED);
    assert_true(evr_repl_live(&b, (int64_t)p + 61999));
    assert_false(evr_repl_live(&b, (int64_t)p + 62000));

    //  Past B's deadline, well within A's: B stays, not live.
    int64_t now = (int64_t)p + 62000;
    assert_true(evr_repl_live(&a, now)); //  what would come back
    gc_seen_t seen = {m, 0, 0, "", false, false};
    assert_int_equal(s_gc(m, &seen, now), 0);
    s_assert_same(evr_repl_find(m, "E", "k"), &b);
    assert_false(evr_repl_live(evr_repl_find(m, "E", "k"), now));
    uint64_t digest = evr_repl_digest(m);

    //  The late A is STALE, the map unchanged.
    assert_int_equal(evr_repl_merge(m, &a), STALE);
    s_assert_same(evr_repl_find(m, "E", "k"), &b);
    assert_int_equal(evr_repl_digest(m), digest);

    //  So is a whole snapshot of the peer that missed B ...
    snap_t snap = {m, now, 0, 0};
    evr_repl_foreach(peer, s_snapshot_into, &snap);
    assert_int_equal(snap.applied, 0);
    assert_int_equal(evr_repl_digest(m), digest);
    //  ... while ours carries the shadow B to it: it replaces A there,
    //  not live.
    snap = (snap_t){peer, now, 0, 0};
    evr_repl_foreach(m, s_snapshot_into, &snap);
    assert_int_equal(snap.applied, 1);
    assert_int_equal(snap.live, 0);
    s_assert_same(evr_repl_find(peer, "E", "k"), &b);
    s_assert_maps_equal(peer, m);

    //  Until the end of B's window, still so (the late A stays STALE).
    const int64_t b_end = (int64_t)p + 1000 + WINDOW;
    assert_int_equal(s_gc(m, &seen, b_end), 0);
    assert_int_equal(evr_repl_merge(m, &a), STALE);
    s_assert_same(evr_repl_find(m, "E", "k"), &b);

    //  Right after, B goes; A could not be live anywhere by then.
    assert_int_equal(s_gc(m, &seen, b_end + 1), 1);
    assert_int_equal(seen.calls, 1);
    assert_false(seen.was_live);
    assert_int_equal(evr_repl_size(m), 0);
    assert_false(evr_repl_live(&a, b_end + 1));
    assert_false(evr_repl_live(&a, b_end + 1 - SKEW));
    //  A late A merges then, but is not live, and goes at the next gc
    //  (its own window, starting earlier than B's, is over too).
    assert_int_equal(evr_repl_merge(m, &a), APPLIED);
    assert_false(evr_repl_live(evr_repl_find(m, "E", "k"), b_end + 1));
    assert_int_equal(s_gc(m, &seen, b_end + 1), 1);
    assert_int_equal(evr_repl_size(m), 0);
    assert_false(seen.was_live);
    evr_repl_destroy(&peer);
    evr_repl_destroy(&m);
}

//  --------------------------------------------------------------------------
//  Digest and iteration

static void test_digest(void **state)
{
    evr_record_t a = s_sub("E", "k1", "relay-a", 1000, 0, 60);
    evr_record_t b = s_sub("E", "k2", "relay-b", 1000, 1, 60);
    evr_record_t c = s_tomb("E", "k3", "relay-a", 1200, 0);

    evr_repl_t *m1 = evr_repl_new(LEASE, SKEW);
    evr_repl_t *m2 = evr_repl_new(LEASE, SKEW);
    evr_repl_merge(m1, &a);
    evr_repl_merge(m1, &b);
    evr_repl_merge(m1, &c);
    evr_repl_merge(m2, &c);
    evr_repl_merge(m2, &a);
    evr_repl_merge(m2, &b);
    assert_int_not_equal(evr_repl_digest(m1), 0);
    assert_int_equal(evr_repl_digest(m1), evr_repl_digest(m2));

    //  Each single difference of version shows.
    evr_record_t variants[5];
    variants[0] = c, variants[0].hlc++;              //  hlc
    variants[1] = c, variants[1].origin = "relay-z"; //  origin
    variants[2] = c, variants[2].tombstone = false;  //  tombstone
    variants[2].expire_s = 60;
    variants[3] = c, variants[3].match_key = "k4"; //  key
    variants[4] = c, variants[4].event = "F";      //  key
    uint64_t seen[6] = {evr_repl_digest(m1)};
    for (int v = 0; v < 5; v++) {
        evr_repl_t *m3 = evr_repl_new(LEASE, SKEW);
        evr_repl_merge(m3, &a);
        evr_repl_merge(m3, &b);
        assert_int_equal(evr_repl_merge(m3, &variants[v]), APPLIED);
        seen[v + 1] = evr_repl_digest(m3);
        for (int w = 0; w <= v; w++)
            assert_int_not_equal(seen[v + 1], seen[w]);
        evr_repl_destroy(&m3);
    }

    //  Contents that are not part of the version do not show.
    evr_repl_t *m4 = evr_repl_new(LEASE, SKEW);
    evr_record_t a_other = a;
    a_other.socket = "udp:elsewhere:1";
    a_other.expire_s = 7;
    a_other.sub_time_ms = 999;
    evr_repl_merge(m4, &a_other);
    evr_repl_merge(m4, &b);
    evr_repl_merge(m4, &c);
    assert_int_equal(evr_repl_digest(m4), evr_repl_digest(m1));
    evr_repl_destroy(&m4);

    //  Replacing a record: the same digest as a map that only ever held the
    //  new version.
    evr_record_t a_new = s_sub("E", "k1", "relay-c", 1100, 0, 60);
    assert_int_equal(evr_repl_merge(m1, &a_new), APPLIED);
    assert_int_not_equal(evr_repl_digest(m1), evr_repl_digest(m2));
    evr_repl_t *m5 = evr_repl_new(LEASE, SKEW);
    evr_repl_merge(m5, &b);
    evr_repl_merge(m5, &a_new);
    evr_repl_merge(m5, &c);
    s_assert_maps_equal(m1, m5);
    assert_int_equal(evr_repl_merge(m2, &a_new), APPLIED);
    s_assert_maps_equal(m1, m2);
    evr_repl_destroy(&m5);
    evr_repl_destroy(&m1);
    evr_repl_destroy(&m2);
}

typedef struct {
    size_t count;
    size_t tombstones;
} count_t;

//  foreach callback: count.
static void s_count(const evr_record_t *rec, void *arg)
{
    count_t *c = (count_t *)arg;
    c->count++;
    if (rec->tombstone)
        c->tombstones++;
}

static void test_foreach(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    count_t c = {0, 0};
    evr_repl_foreach(m, s_count, &c);
    assert_int_equal(c.count, 0);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        evr_record_t r = i % 4 ? s_sub("E", key, "r1", 1000, 0, 60)
                               : s_tomb("E", key, "r1", 1000, 0);
        assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    }
    evr_repl_foreach(m, s_count, &c);
    assert_int_equal(c.count, 100);
    assert_int_equal(c.tombstones, 25);
    assert_int_equal(evr_repl_size(m), 100);
    evr_repl_destroy(&m);
}

//  --------------------------------------------------------------------------
//  Version vector

static void test_seq_next_old_gap(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 0);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 0), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 2), EVR_SEQ_GAP);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 0); //  not recorded
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 1), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 1);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 1), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 2), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 4), EVR_SEQ_GAP);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 2);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 3), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 4), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, 2), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 7, UINT64_MAX),
                     EVR_SEQ_GAP);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 4);

    //  Instances and origins are independent.
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 8), 0);
    assert_int_equal(evr_repl_seq_get(m, "relay-b", 7), 0);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 8, 1), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_check(m, "relay-b", 7, 1), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 7), 4);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 8), 1);
    assert_int_equal(evr_repl_seq_get(m, "relay-b", 7), 1);

    //  No origin: ignored.
    assert_int_equal(evr_repl_seq_check(m, "", 1, 1), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, NULL, 1, 1), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_get(m, "", 1), 0);
    evr_repl_destroy(&m);
}

static void test_seq_raise(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_repl_seq_raise(m, "relay-a", 1, 10);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 1), 10);
    evr_repl_seq_raise(m, "relay-a", 1, 5); //  never lowers
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 1), 10);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 10), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 11), EVR_SEQ_NEXT);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 13), EVR_SEQ_GAP);
    evr_repl_seq_raise(m, "relay-a", 1, 20); //  a snapshot filled the gap
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 1), 20);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 13), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 21), EVR_SEQ_NEXT);
    evr_repl_seq_raise(m, "relay-a", 1, 0);
    evr_repl_seq_raise(m, "relay-b", 1, 0); //  nothing to record
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 1), 21);
    assert_int_equal(evr_repl_seq_get(m, "relay-b", 1), 0);
    evr_repl_destroy(&m);
}

typedef struct {
    size_t count;
    uint64_t sum; //  of instance * 1000 + seq
    char origins[256];
} seq_seen_t;

//  seq_foreach callback: tally.
static void s_seq_tally(const char *origin, uint64_t instance, uint64_t seq,
                        void *arg)
{
    seq_seen_t *seen = (seq_seen_t *)arg;
    seen->count++;
    seen->sum += instance * 1000 + seq;
    strncat(seen->origins, origin,
            sizeof(seen->origins) - strlen(seen->origins) - 1);
}

static void test_seq_forget_and_foreach(void **state)
{
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_repl_seq_raise(m, "relay-a", 1, 5);
    evr_repl_seq_raise(m, "relay-a", 2, 6);
    evr_repl_seq_raise(m, "relay-a", 3, 7);
    evr_repl_seq_raise(m, "relay-b", 1, 8);
    seq_seen_t seen = {0, 0, ""};
    evr_repl_seq_foreach(m, s_seq_tally, &seen);
    assert_int_equal(seen.count, 4);
    assert_int_equal(seen.sum, 1005 + 2006 + 3007 + 1008);

    //  relay-a restarted as instance 3: 1 and 2 go, relay-b untouched.
    evr_repl_seq_forget_before(m, "relay-a", 3);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 1), 0);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 2), 0);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 3), 7);
    assert_int_equal(evr_repl_seq_get(m, "relay-b", 1), 8);
    memset(&seen, 0, sizeof(seen));
    evr_repl_seq_foreach(m, s_seq_tally, &seen);
    assert_int_equal(seen.count, 2);
    assert_int_equal(seen.sum, 3007 + 1008);

    //  A late delta or snapshot of a forgotten instance stays forgotten.
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 2, 7), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 1, 1), EVR_SEQ_OLD);
    evr_repl_seq_raise(m, "relay-a", 2, 50);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 2), 0);
    //  Newer instances are welcome.
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 4, 1), EVR_SEQ_NEXT);
    //  Forgetting less than before changes nothing.
    evr_repl_seq_forget_before(m, "relay-a", 1);
    assert_int_equal(evr_repl_seq_get(m, "relay-a", 3), 7);
    assert_int_equal(evr_repl_seq_check(m, "relay-a", 2, 1), EVR_SEQ_OLD);

    //  An unknown origin: its old instances are ignored from the start.
    evr_repl_seq_forget_before(m, "relay-c", 9);
    assert_int_equal(evr_repl_seq_check(m, "relay-c", 8, 1), EVR_SEQ_OLD);
    assert_int_equal(evr_repl_seq_check(m, "relay-c", 9, 1), EVR_SEQ_NEXT);

    memset(&seen, 0, sizeof(seen));
    evr_repl_seq_foreach(m, s_seq_tally, &seen);
    assert_int_equal(seen.count, 4);
    assert_int_equal(seen.sum, 3007 + 4001 + 1008 + 9001);
    evr_repl_seq_forget_before(m, "", 9); //  ignored
    evr_repl_seq_forget_before(m, NULL, 9);
    evr_repl_destroy(&m);
}

//  --------------------------------------------------------------------------
//  Scale

typedef struct {
    int64_t now;
    size_t count;
    size_t live;
    size_t tombstones;
} big_seen_t;

//  foreach callback: check a record of the big map and count it.
static void s_check_big(const evr_record_t *rec, void *arg)
{
    big_seen_t *seen = (big_seen_t *)arg;
    seen->count++;
    if (rec->tombstone)
        seen->tombstones++;
    if (evr_repl_live(rec, seen->now)) {
        //  Only the refreshed ones (the even keys) live that long.
        assert_int_equal(atoi(rec->match_key + 1) % 2, 0);
        seen->live++;
    }
}

//  Count the records of the big map at now.
static big_seen_t s_big_count(const evr_repl_t *m, int64_t now)
{
    big_seen_t seen = {now, 0, 0, 0};
    evr_repl_foreach(m, s_check_big, &seen);
    return seen;
}

//  100k records: merge, refresh half, unsubscribe a tenth; then gc as time
//  passes: the expired stay (not live) until their window is over, and
//  the map matches an oracle at every step.
static void test_100k(void **state)
{
    enum { N = 100000 };
    static const char *origins[] = {"relay-a", "relay-b", "relay-c"};
    static const char *events[] = {"E_UL_CONTACT", "E_DIALOG", "E_PIKE"};
    const uint64_t base = 1700000000000ULL;
    evr_repl_t *m = evr_repl_new(LEASE, SKEW);
    evr_repl_t *survivors = evr_repl_new(LEASE, SKEW);
    char key[32];

    //  First writes at base + i, for 1 to 100 s.
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        evr_record_t r =
            s_sub(events[i % 3], key, origins[i % 3], base + i, 0, 1 + i % 100);
        assert_int_equal(evr_repl_merge(m, &r), APPLIED);
    }
    assert_int_equal(evr_repl_size(m), N);

    //  At base + N + i, refresh the even ones for 1000 s, unsubscribe every
    //  i % 10 == 5.
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        uint64_t ms = base + N + i;
        evr_record_t r;
        if (i % 2 == 0)
            r = s_sub(events[i % 3], key, origins[(i + 1) % 3], ms, 0, 1000);
        else if (i % 10 == 5)
            r = s_tomb(events[i % 3], key, origins[(i + 1) % 3], ms, 0);
        else
            continue;
        assert_int_equal(evr_repl_merge(m, &r), APPLIED);
        assert_int_equal(evr_repl_merge(survivors, &r), APPLIED);
    }
    assert_int_equal(evr_repl_size(m), N);
    const uint64_t digest = evr_repl_digest(m);

    //  After every first write's deadline, before the refreshed ones':
    //  nothing goes, the first writes are shadows.
    int64_t now = (int64_t)(base + N + 100 * 1000 + 1000);
    assert_int_equal(evr_repl_gc(m, now, NULL, NULL), 0);
    assert_int_equal(evr_repl_size(m), N);
    assert_int_equal(evr_repl_digest(m), digest);
    big_seen_t seen = s_big_count(m, now);
    assert_int_equal(seen.count, N);
    assert_int_equal(seen.live, N / 2);
    assert_int_equal(seen.tombstones, N / 10);

    //  After every refreshed deadline too: still nothing goes, none live.
    now = (int64_t)(base + 2 * N + 1000 * 1000 + 1000);
    assert_int_equal(evr_repl_gc(m, now, NULL, NULL), 0);
    seen = s_big_count(m, now);
    assert_int_equal(seen.count, N);
    assert_int_equal(seen.live, 0);

    //  The first writes' windows end by base + N - 1 + WINDOW, the last one
    //  (k99999, never refreshed) exactly then.
    now = (int64_t)(base + N - 1) + WINDOW;
    assert_int_equal(evr_repl_gc(m, now, NULL, NULL), N / 2 - N / 10 - 1);
    assert_non_null(evr_repl_find(m, events[(N - 1) % 3], "k99999"));
    assert_int_equal(evr_repl_gc(m, now + 1, NULL, NULL), 1);
    assert_int_equal(evr_repl_size(m), N / 2 + N / 10);
    s_assert_maps_equal(m, survivors);
    seen = s_big_count(m, now + 1);
    assert_int_equal(seen.count, N / 2 + N / 10);
    assert_int_equal(seen.tombstones, N / 10);
    assert_int_equal(seen.live, 0);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        const evr_record_t *r = evr_repl_find(m, events[i % 3], key);
        if (i % 2 == 0 || i % 10 == 5)
            assert_non_null(r);
        else
            assert_null(r);
    }
    //  Nothing more to do at the same time.
    assert_int_equal(evr_repl_gc(m, now + 1, NULL, NULL), 0);

    //  The refreshes' and tombstones' windows (the same rule) end by
    //  base + 2N - 2 + WINDOW (k99998, refreshed): then it is empty.
    now = (int64_t)(base + 2 * N - 2) + WINDOW;
    assert_int_equal(evr_repl_gc(m, now, NULL, NULL), N / 2 + N / 10 - 1);
    assert_int_equal(evr_repl_gc(m, now + 1, NULL, NULL), 1);
    assert_int_equal(evr_repl_size(m), 0);
    assert_int_equal(evr_repl_digest(m), 0);
    evr_repl_destroy(&survivors);
    evr_repl_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_destroy),
        cmocka_unit_test(test_merge_copies),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_refused_malformed),
        cmocka_unit_test(test_lease_rule),
        cmocka_unit_test(test_skew_rule),
        cmocka_unit_test(test_lww_every_order),
        cmocka_unit_test(test_lww_random_orders),
        cmocka_unit_test(test_idempotence),
        cmocka_unit_test(test_tie_break_by_origin),
        cmocka_unit_test(test_tombstone),
        cmocka_unit_test(test_merge_own_view),
        cmocka_unit_test(test_live_rule),
        cmocka_unit_test(test_gc_boundaries),
        cmocka_unit_test(test_gc_longest_lease),
        cmocka_unit_test(test_gc_uses_hlc),
        cmocka_unit_test(test_gc_no_resurrection),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_foreach),
        cmocka_unit_test(test_seq_next_old_gap),
        cmocka_unit_test(test_seq_raise),
        cmocka_unit_test(test_seq_forget_and_foreach),
        cmocka_unit_test(test_100k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
