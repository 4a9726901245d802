/*  test_store.c - unit tests for evr_store (snapshot + append log).

    Every test gets a fresh directory under /tmp (removed afterwards); the
    store's data directory is `data` inside it, so open() creates it.
    Files are damaged by hand to play crashes: a frame cut short, a flipped
    bit, a leftover snapshot.tmp, a log that survived a compaction.
*/
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "evr_repl.h"
#include "evr_store.h"

#define MAX_LEASE_MS (7 * 24 * 3600 * 1000LL)
#define MAX_SKEW_MS (60 * 1000LL)
#define T0 1700000000000ULL //  a sub_time_ms

//  Per-test directories.
typedef struct {
    char root[64];  //  the temporary directory
    char data[128]; //  root/data: the store's directory
} dirs_t;

//  One record, owning its strings.
typedef struct {
    char *event;
    char *socket;
    char *origin;
    uint32_t expire_s;
    uint64_t sub_time_ms;
    uint64_t hlc;
    bool tombstone;
    bool had_match_key; //  load must leave match_key NULL
} owned_t;

//  Records handed out by load(), in order.
typedef struct {
    owned_t *recs;
    size_t count;
    size_t cap;
} collector_t;

//  --------------------------------------------------------------------------
//  Helpers

//  nftw callback: remove one entry.
static int s_remove_entry(const char *path, const struct stat *st, int flag,
                          struct FTW *ftw)
{
    return remove(path);
}

//  Remove a directory tree.
static void s_rmtree(const char *path)
{
    nftw(path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

//  Fixture: a fresh temporary directory.
static int s_setup(void **state)
{
    dirs_t *dirs = (dirs_t *)calloc(1, sizeof(dirs_t));
    if (!dirs)
        return -1;
    snprintf(dirs->root, sizeof dirs->root, "/tmp/evr_store_test_XXXXXX");
    if (!mkdtemp(dirs->root)) {
        free(dirs);
        return -1;
    }
    snprintf(dirs->data, sizeof dirs->data, "%s/data", dirs->root);
    *state = dirs;
    return 0;
}

//  Fixture: remove the directory.
static int s_teardown(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    s_rmtree(dirs->root);
    free(dirs);
    return 0;
}

//  A path inside the data directory (static buffer, one at a time).
static const char *s_path(const dirs_t *dirs, const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dirs->data, name);
    return path;
}

//  Size of a file in the data directory, -1 if missing.
static long s_size(const dirs_t *dirs, const char *name)
{
    struct stat st;
    if (stat(s_path(dirs, name), &st) == -1)
        return -1;
    return (long)st.st_size;
}

//  Whether a file exists in the data directory.
static bool s_exists(const dirs_t *dirs, const char *name)
{
    return s_size(dirs, name) >= 0;
}

//  Cut a file to len bytes.
static void s_truncate(const dirs_t *dirs, const char *name, long len)
{
    assert_int_equal(truncate(s_path(dirs, name), (off_t)len), 0);
}

//  Flip the bits of one byte of a file.
static void s_flip(const dirs_t *dirs, const char *name, long offset)
{
    int fd = open(s_path(dirs, name), O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, (off_t)offset), 1);
    byte ^= 0xff;
    assert_int_equal(pwrite(fd, &byte, 1, (off_t)offset), 1);
    close(fd);
}

//  Append raw bytes to a file.
static void s_append_raw(const dirs_t *dirs, const char *name, const void *data,
                         size_t len)
{
    int fd = open(s_path(dirs, name), O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

//  Read a whole file (malloc'd, *len set).
static uint8_t *s_slurp(const dirs_t *dirs, const char *name, size_t *len)
{
    long size = s_size(dirs, name);
    assert_true(size >= 0);
    uint8_t *data = (uint8_t *)malloc((size_t)size + 1);
    assert_non_null(data);
    int fd = open(s_path(dirs, name), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, data, (size_t)size), (ssize_t)size);
    close(fd);
    *len = (size_t)size;
    return data;
}

//  Open the store, which must succeed.
static evr_store_t *s_open(const dirs_t *dirs, evr_fsync_t policy)
{
    char err[256] = "";
    evr_store_t *store = evr_store_open(dirs->data, policy, err, sizeof err);
    if (!store)
        fail_msg("open %s: %s", dirs->data, err);
    return store;
}

//  Load callback: keep a copy of every record.
static void s_collect(const evr_record_t *rec, void *arg)
{
    collector_t *col = (collector_t *)arg;
    if (col->count == col->cap) {
        col->cap = col->cap ? col->cap * 2 : 64;
        col->recs = (owned_t *)realloc(col->recs, col->cap * sizeof(owned_t));
        assert_non_null(col->recs);
    }
    owned_t *own = &col->recs[col->count++];
    own->event = strdup(rec->event);
    own->socket = strdup(rec->socket);
    own->origin = strdup(rec->origin);
    assert_non_null(own->event);
    assert_non_null(own->socket);
    assert_non_null(own->origin);
    own->expire_s = rec->expire_s;
    own->sub_time_ms = rec->sub_time_ms;
    own->hlc = rec->hlc;
    own->tombstone = rec->tombstone;
    own->had_match_key = rec->match_key != NULL;
}

//  Free what a collector holds.
static void s_collector_free(collector_t *col)
{
    for (size_t i = 0; i < col->count; i++) {
        free(col->recs[i].event);
        free(col->recs[i].socket);
        free(col->recs[i].origin);
    }
    free(col->recs);
    memset(col, 0, sizeof *col);
}

//  Open, load everything into a collector, and return the store.
static evr_store_t *s_open_load(const dirs_t *dirs, evr_fsync_t policy,
                                collector_t *col)
{
    evr_store_t *store = s_open(dirs, policy);
    memset(col, 0, sizeof *col);
    long n = evr_store_load(store, s_collect, col);
    assert_int_equal(n, (long)col->count);
    return store;
}

//  A test record (borrowed strings). match_key = socket, as the tests'
//  "socket parser".
static evr_record_t s_rec(const char *event, const char *socket,
                          uint32_t expire_s, uint64_t sub_time_ms,
                          uint16_t counter, const char *origin, bool tombstone)
{
    evr_record_t rec = {
        .event = event,
        .socket = socket,
        .match_key = socket,
        .expire_s = expire_s,
        .sub_time_ms = sub_time_ms,
        .hlc = sub_time_ms << 16 | counter,
        .origin = origin,
        .tombstone = tombstone,
    };
    return rec;
}

//  Whether an owned record equals a view.
static void s_assert_same(const owned_t *own, const evr_record_t *rec)
{
    assert_string_equal(own->event, rec->event);
    assert_string_equal(own->socket, rec->socket);
    assert_string_equal(own->origin, rec->origin);
    assert_int_equal(own->expire_s, rec->expire_s);
    assert_int_equal(own->sub_time_ms, rec->sub_time_ms);
    assert_int_equal(own->hlc, rec->hlc);
    assert_int_equal(own->tombstone, rec->tombstone);
    assert_false(own->had_match_key);
}

//  Open, load (must be empty so far or not: whatever), append n numbered
//  records, and close. sizes[i] = log size after record i (if sizes).
static void s_fill(const dirs_t *dirs, int first, int n, long *sizes)
{
    evr_store_t *store = s_open(dirs, EVR_FSYNC_NEVER);
    assert_true(evr_store_load(store, NULL, NULL) >= 0);
    for (int i = 0; i < n; i++) {
        char socket[64];
        snprintf(socket, sizeof socket, "udp:10.0.0.%d:5060", first + i);
        evr_record_t rec = s_rec("E_TEST", socket, 60,
                                 T0 + (uint64_t)(first + i), 0, "n1", false);
        assert_int_equal(evr_store_append(store, &rec), 0);
        if (sizes)
            sizes[i] = s_size(dirs, "log");
    }
    evr_store_destroy(&store);
}

//  Check that the collector holds records first .. first+n-1 of s_fill.
static void s_assert_filled(const collector_t *col, size_t at, int first, int n)
{
    assert_true(col->count >= at + (size_t)n);
    for (int i = 0; i < n; i++) {
        char socket[64];
        snprintf(socket, sizeof socket, "udp:10.0.0.%d:5060", first + i);
        assert_string_equal(col->recs[at + (size_t)i].socket, socket);
    }
}

//  The store's counters.
static evr_store_stats_t s_stats(const evr_store_t *store)
{
    evr_store_stats_t stats;
    evr_store_stats(store, &stats);
    return stats;
}

//  Monotonic seconds.
static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

//  Check that repl holds exactly the collected records (last one wins for
//  repeated keys, as the collector is in load order).
static void s_assert_repl_has(const evr_repl_t *repl, const collector_t *col)
{
    for (size_t i = 0; i < col->count; i++) {
        const owned_t *own = &col->recs[i];
        const evr_record_t *rec = evr_repl_find(repl, own->event, own->socket);
        assert_non_null(rec);
        assert_string_equal(rec->origin, own->origin);
        assert_true(rec->hlc >= own->hlc);
    }
}

//  Load callback: merge into a repl (match_key computed as the caller
//  would: here the socket itself).
static void s_merge(const evr_record_t *rec, void *arg)
{
    evr_record_t copy = *rec;
    assert_null(copy.match_key);
    copy.match_key = rec->socket;
    evr_repl_result_t result = evr_repl_merge((evr_repl_t *)arg, &copy);
    assert_int_not_equal(result, EVR_REPL_REFUSED);
}

//  Open, load into a new repl, close. Returns the repl.
static evr_repl_t *s_load_repl(const dirs_t *dirs, long *loaded)
{
    evr_repl_t *repl = evr_repl_new(MAX_LEASE_MS, MAX_SKEW_MS);
    assert_non_null(repl);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_NEVER);
    long n = evr_store_load(store, s_merge, repl);
    assert_true(n >= 0);
    if (loaded)
        *loaded = n;
    evr_store_destroy(&store);
    return repl;
}

//  foreach callback: compare each record with the one of another repl.
static void s_compare_with(const evr_record_t *rec, void *arg)
{
    const evr_repl_t *other = (const evr_repl_t *)arg;
    const evr_record_t *twin = evr_repl_find(other, rec->event, rec->match_key);
    assert_non_null(twin);
    assert_string_equal(twin->socket, rec->socket);
    assert_string_equal(twin->origin, rec->origin);
    assert_int_equal(twin->hlc, rec->hlc);
    assert_int_equal(twin->sub_time_ms, rec->sub_time_ms);
    assert_int_equal(twin->tombstone, rec->tombstone);
    if (!rec->tombstone)
        assert_int_equal(twin->expire_s, rec->expire_s);
}

//  Two repls hold the same records.
static void s_assert_repl_equal(const evr_repl_t *a, const evr_repl_t *b)
{
    assert_int_equal(evr_repl_size(a), evr_repl_size(b));
    assert_true(evr_repl_digest(a) == evr_repl_digest(b));
    evr_repl_foreach(a, s_compare_with, (void *)b);
}

//  Merge n records (some tombstones) into repl and append them to store.
static void s_populate(evr_repl_t *repl, evr_store_t *store, int first, int n,
                       uint16_t counter)
{
    for (int i = first; i < first + n; i++) {
        char socket[64];
        snprintf(socket, sizeof socket, "tcp:192.168.%d.%d:%d", i / 250 % 250,
                 i % 250, 1024 + i % 50000);
        bool tombstone = i % 7 == 3;
        evr_record_t rec =
            s_rec(i % 3 ? "E_UL_AOR_INSERT" : "E_DLG_STATE_CHANGED", socket,
                  tombstone ? 0 : 3600, T0 + (uint64_t)i, counter,
                  i % 2 ? "relay-a" : "relay-b", tombstone);
        assert_int_equal(evr_repl_merge(repl, &rec), EVR_REPL_APPLIED);
        if (store)
            assert_int_equal(evr_store_append(store, &rec), 0);
    }
}

//  --------------------------------------------------------------------------
//  Tests

//  open() creates the directory and files with private modes, and says
//  why when it cannot.
static void test_open_creates(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    mode_t old = umask(022);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_ALWAYS);
    umask(old);
    struct stat st;
    assert_int_equal(stat(dirs->data, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(s_path(dirs, "log"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(stat(s_path(dirs, "lock"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_false(s_exists(dirs, "snapshot"));
    assert_int_equal(evr_store_load(store, NULL, NULL), 0);
    evr_store_stats_t stats = s_stats(store);
    assert_int_equal(stats.log_frames, 0);
    assert_int_equal(stats.snapshot_records, 0);
    assert_int_equal(stats.torn, 0);
    assert_false(evr_store_wants_compaction(store));
    evr_store_destroy(&store);
    assert_null(store);
    evr_store_destroy(&store); //  harmless on NULL

    //  An existing directory is fine.
    store = s_open(dirs, EVR_FSYNC_ALWAYS);
    evr_store_destroy(&store);

    //  The parent must exist.
    char path[256];
    char err[256] = "";
    snprintf(path, sizeof path, "%s/missing/data", dirs->root);
    assert_null(evr_store_open(path, EVR_FSYNC_ALWAYS, err, sizeof err));
    assert_non_null(strstr(err, "cannot create data dir"));
    assert_non_null(strstr(err, path));

    //  A file is not a directory.
    snprintf(path, sizeof path, "%s/file", dirs->root);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    err[0] = '\0';
    assert_null(evr_store_open(path, EVR_FSYNC_ALWAYS, err, sizeof err));
    assert_non_null(strstr(err, "cannot open data dir"));
    //  No err buffer: still just NULL.
    assert_null(evr_store_open(path, EVR_FSYNC_ALWAYS, NULL, 0));
}

//  A second open of a directory in use fails until the first closes.
static void test_lock(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    evr_store_t *first = s_open(dirs, EVR_FSYNC_BATCH);
    char err[256] = "";
    char expect[256];
    snprintf(expect, sizeof expect, "data dir %s is used by another relay",
             dirs->data);
    assert_null(evr_store_open(dirs->data, EVR_FSYNC_BATCH, err, sizeof err));
    assert_string_equal(err, expect);
    evr_store_destroy(&first);
    evr_store_t *second = s_open(dirs, EVR_FSYNC_BATCH);
    evr_store_destroy(&second);
}

//  Records come back exactly as appended, tombstones and odd bytes too;
//  append before load, a second load and bad records are refused.
static void test_round_trip(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    //  A socket of 200 kB: several I/O buffers in one frame.
    size_t big_len = 200 * 1000;
    char *big = (char *)malloc(big_len + 1);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(1 + i % 255);
    big[big_len] = '\0';
    evr_record_t recs[] = {
        s_rec("E_UL_AOR_INSERT", "udp:127.0.0.1:8888", 3600, T0, 1, "n1",
              false),
        s_rec("E_UL_AOR_INSERT", "udp:127.0.0.1:8888", 0, T0 + 5, 0, "n2",
              true),
        s_rec("E_X", "rabbitmq:user:p\"a\\ss@host/ex?q", 1, 0, 0, "", false),
        s_rec("E_\xc3\xa9v\xe2\x82\xac", "tcp:[::1]:5060\n\t\r\x01\x7f\xff\xfe",
              UINT32_MAX, UINT64_MAX >> 16, UINT16_MAX, "n\xf0\x9f\x98\x80",
              false),
        s_rec("", "", 0, 0, 0, "x", true),
        s_rec("E_BIG", big, 10, T0, 2, "n1", false),
    };
    size_t n = sizeof recs / sizeof recs[0];
    recs[5].hlc = UINT64_MAX;

    evr_store_t *store = s_open(dirs, EVR_FSYNC_ALWAYS);
    //  Not before load.
    assert_int_equal(evr_store_append(store, &recs[0]), -1);
    collector_t col = {0};
    assert_int_equal(evr_store_load(store, s_collect, &col), 0);
    assert_int_equal(col.count, 0);
    //  Only once.
    assert_int_equal(evr_store_load(store, s_collect, &col), -1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(evr_store_append(store, &recs[i]), 0);

    //  Refused: a missing string, a payload over 1 MiB. The log is
    //  unchanged.
    long size = s_size(dirs, "log");
    evr_record_t bad = recs[0];
    bad.event = NULL;
    assert_int_equal(evr_store_append(store, &bad), -1);
    bad = recs[0];
    bad.origin = NULL;
    assert_int_equal(evr_store_append(store, &bad), -1);
    size_t huge_len = 1024 * 1024 + 1;
    char *huge = (char *)malloc(huge_len + 1);
    assert_non_null(huge);
    memset(huge, 'h', huge_len);
    huge[huge_len] = '\0';
    bad = recs[0];
    bad.socket = huge;
    assert_int_equal(evr_store_append(store, &bad), -1);
    assert_int_equal(s_size(dirs, "log"), size);
    evr_store_stats_t stats = s_stats(store);
    assert_int_equal(stats.appended, n);
    assert_int_equal(stats.log_frames, n);
    evr_store_destroy(&store);

    store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, n);
    for (size_t i = 0; i < n; i++)
        s_assert_same(&col.recs[i], &recs[i]);
    stats = s_stats(store);
    assert_int_equal(stats.log_frames, n);
    assert_int_equal(stats.snapshot_records, 0);
    assert_int_equal(stats.appended, 0);
    assert_int_equal(stats.torn, 0);
    s_collector_free(&col);
    evr_store_destroy(&store);
    free(big);
    free(huge);
}

//  A log cut short anywhere in its last frame loads up to the frame
//  before, is cut there, and takes appends that load fine.
static void test_torn_short(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    long sizes[10];
    s_fill(dirs, 0, 10, sizes);
    long frame9 = sizes[8]; //  where the last frame starts
    long cuts[] = {frame9 + 1, frame9 + 4, frame9 + 7,
                   frame9 + 8, frame9 + 9, sizes[9] - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        s_truncate(dirs, "log", cuts[c]);
        collector_t col;
        evr_store_t *store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
        assert_int_equal(col.count, 9);
        s_assert_filled(&col, 0, 0, 9);
        assert_int_equal(s_size(dirs, "log"), frame9);
        evr_store_stats_t stats = s_stats(store);
        assert_int_equal(stats.torn, 1);
        assert_int_equal(stats.log_frames, 9);
        s_collector_free(&col);
        //  Put the last record back for the next cut.
        char socket[64];
        snprintf(socket, sizeof socket, "udp:10.0.0.%d:5060", 9);
        evr_record_t rec = s_rec("E_TEST", socket, 60, T0 + 9, 0, "n1", false);
        assert_int_equal(evr_store_append(store, &rec), 0);
        evr_store_destroy(&store);
        assert_int_equal(s_size(dirs, "log"), sizes[9]);
    }
    //  Appends after a cut load fine, and nothing is torn any more.
    s_truncate(dirs, "log", frame9 + 3);
    collector_t col;
    evr_store_t *store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 9);
    s_collector_free(&col);
    evr_store_destroy(&store);
    s_fill(dirs, 100, 5, NULL);
    store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 14);
    s_assert_filled(&col, 0, 0, 9);
    s_assert_filled(&col, 9, 100, 5);
    assert_int_equal(s_stats(store).torn, 0);
    s_collector_free(&col);
    evr_store_destroy(&store);

    //  A log of nothing but a partial header.
    s_truncate(dirs, "log", 0);
    s_append_raw(dirs, "log", "\x10\x00", 2);
    store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 0);
    assert_int_equal(s_size(dirs, "log"), 0);
    assert_int_equal(s_stats(store).torn, 1);
    evr_store_destroy(&store);
}

//  A corrupt frame (bad CRC, bad length, undecodable payload) ends the
//  log where it starts.
static void test_torn_corrupt(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    long sizes[10];
    s_fill(dirs, 0, 10, sizes);
    size_t len;
    uint8_t *pristine = s_slurp(dirs, "log", &len);

    //  offset to damage, records expected before it
    struct {
        long offset;
        size_t good;
    } cases[] = {
        {sizes[9] - 1, 9},  //  last byte of the last payload
        {sizes[8] + 4, 9},  //  CRC of the last frame
        {sizes[8] + 0, 9},  //  length of the last frame
        {sizes[3] + 10, 4}, //  payload of frame 5: the rest goes too
        {0, 0},             //  the first length byte
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        s_truncate(dirs, "log", 0);
        s_append_raw(dirs, "log", pristine, len);
        s_flip(dirs, "log", cases[c].offset);
        collector_t col;
        evr_store_t *store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
        assert_int_equal(col.count, cases[c].good);
        s_assert_filled(&col, 0, 0, (int)cases[c].good);
        long expect = cases[c].good ? sizes[cases[c].good - 1] : 0;
        assert_int_equal(s_size(dirs, "log"), expect);
        assert_int_equal(s_stats(store).torn, 1);
        s_collector_free(&col);
        evr_store_destroy(&store);
    }

    //  A length over 1 MiB is corrupt, whatever follows.
    s_truncate(dirs, "log", 0);
    s_append_raw(dirs, "log", pristine, len);
    s_append_raw(dirs, "log", "\x01\x00\x10\x00\x00\x00\x00\x00", 8);
    collector_t col;
    evr_store_t *store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 10);
    assert_int_equal(s_size(dirs, "log"), sizes[9]);
    s_collector_free(&col);
    evr_store_destroy(&store);

    //  A right CRC over what is not a Record: an empty payload (CRC 0),
    //  then garbage bytes with their CRC.
    s_append_raw(dirs, "log", "\0\0\0\0\0\0\0\0", 8);
    store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 10);
    assert_int_equal(s_size(dirs, "log"), sizes[9]);
    s_collector_free(&col);
    evr_store_destroy(&store);
    //  crc32("\xff\xff\xff") = 0xffffff00
    s_append_raw(dirs, "log", "\x03\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff",
                 11);
    store = s_open_load(dirs, EVR_FSYNC_ALWAYS, &col);
    assert_int_equal(col.count, 10);
    assert_int_equal(s_size(dirs, "log"), sizes[9]);
    assert_int_equal(s_stats(store).torn, 1);
    s_collector_free(&col);
    evr_store_destroy(&store);
    free(pristine);
}

//  A write that fails part way (file size limit) is cut back off, and
//  the store goes on appending good frames.
static void test_failed_append_rolled_back(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    long sizes[3];
    s_fill(dirs, 0, 3, sizes);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_BATCH);
    assert_int_equal(evr_store_load(store, NULL, NULL), 3);

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old;
    limit.rlim_cur = (rlim_t)sizes[2] + 10; //  room for part of a frame
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &limit), 0);
    evr_record_t rec =
        s_rec("E_TEST", "udp:10.0.0.3:5060", 60, T0 + 3, 0, "n1", false);
    assert_int_equal(evr_store_append(store, &rec), -1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(s_size(dirs, "log"), sizes[2]);
    evr_store_stats_t stats = s_stats(store);
    assert_int_equal(stats.appended, 0);
    assert_int_equal(stats.log_frames, 3);

    assert_int_equal(evr_store_append(store, &rec), 0);
    evr_store_destroy(&store);
    collector_t col;
    store = s_open_load(dirs, EVR_FSYNC_BATCH, &col);
    assert_int_equal(col.count, 4);
    s_assert_filled(&col, 0, 0, 4);
    assert_int_equal(s_stats(store).torn, 0);
    s_collector_free(&col);
    evr_store_destroy(&store);
}

//  Compaction: the snapshot holds every record of the map, the log is
//  empty, and snapshot + later appends load back to the same map.
static void test_compact(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    evr_repl_t *repl = evr_repl_new(MAX_LEASE_MS, MAX_SKEW_MS);
    assert_non_null(repl);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_BATCH);
    //  Not before load.
    assert_int_equal(evr_store_compact(store, repl), -1);
    assert_int_equal(evr_store_load(store, NULL, NULL), 0);
    //  An empty map makes an empty snapshot.
    assert_int_equal(evr_store_compact(store, repl), 0);
    assert_int_equal(s_size(dirs, "snapshot"), 0);

    //  500 records, then 200 of them rewritten (newer versions): 700
    //  frames in the log, 500 records in the map.
    s_populate(repl, store, 0, 500, 1);
    s_populate(repl, store, 100, 200, 2);
    evr_store_stats_t stats = s_stats(store);
    assert_int_equal(stats.log_frames, 700);
    assert_int_equal(evr_repl_size(repl), 500);

    assert_int_equal(evr_store_compact(store, repl), 0);
    stats = s_stats(store);
    assert_int_equal(stats.log_frames, 0);
    assert_int_equal(stats.snapshot_records, 500);
    assert_int_equal(stats.compactions, 2);
    assert_int_equal(s_size(dirs, "log"), 0);
    assert_true(s_size(dirs, "snapshot") > 0);
    assert_false(s_exists(dirs, "snapshot.tmp"));

    //  Appends after the compaction go to the emptied log.
    s_populate(repl, store, 500, 50, 1);
    s_populate(repl, store, 0, 10, 3);
    assert_int_equal(s_stats(store).log_frames, 60);
    evr_store_destroy(&store);

    long loaded;
    evr_repl_t *back = s_load_repl(dirs, &loaded);
    assert_int_equal(loaded, 560);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);

    //  The counters after a reload: what is on disk.
    collector_t col;
    store = s_open_load(dirs, EVR_FSYNC_BATCH, &col);
    stats = s_stats(store);
    assert_int_equal(stats.snapshot_records, 500);
    assert_int_equal(stats.log_frames, 60);
    assert_int_equal(stats.compactions, 0);
    s_assert_repl_has(repl, &col);
    s_collector_free(&col);
    evr_store_destroy(&store);
    evr_repl_destroy(&repl);
}

//  Crashes: a leftover snapshot.tmp is ignored and removed; a log that
//  survived its compaction merges back to the same map; a corrupt
//  snapshot is an error.
static void test_crash_recovery(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    evr_repl_t *repl = evr_repl_new(MAX_LEASE_MS, MAX_SKEW_MS);
    assert_non_null(repl);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_ALWAYS);
    assert_int_equal(evr_store_load(store, NULL, NULL), 0);
    s_populate(repl, store, 0, 300, 1);
    assert_int_equal(evr_store_compact(store, repl), 0);
    s_populate(repl, store, 300, 20, 1);
    evr_store_destroy(&store);
    size_t snapshot_len;
    uint8_t *snapshot = s_slurp(dirs, "snapshot", &snapshot_len);

    //  A crash while writing snapshot.tmp: a half-written copy, and
    //  plain garbage.
    s_append_raw(dirs, "snapshot.tmp", snapshot, snapshot_len / 2);
    long loaded;
    evr_repl_t *back = s_load_repl(dirs, &loaded);
    assert_false(s_exists(dirs, "snapshot.tmp"));
    assert_int_equal(loaded, 320);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);
    s_append_raw(dirs, "snapshot.tmp", "\xde\xad\xbe\xef\x01", 5);
    back = s_load_repl(dirs, &loaded);
    assert_false(s_exists(dirs, "snapshot.tmp"));
    assert_int_equal(loaded, 320);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);

    //  A crash after the rename, before the log was emptied: the old log
    //  is still there next to the new snapshot.
    size_t log_len;
    uint8_t *log = s_slurp(dirs, "log", &log_len);
    store = s_open(dirs, EVR_FSYNC_ALWAYS);
    assert_int_equal(evr_store_load(store, NULL, NULL), 320);
    assert_int_equal(evr_store_compact(store, repl), 0);
    evr_store_destroy(&store);
    assert_int_equal(s_size(dirs, "log"), 0);
    s_append_raw(dirs, "log", log, log_len);
    back = s_load_repl(dirs, &loaded);
    assert_int_equal(loaded, 320 + 20);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);

    //  A snapshot is never torn: damage is an error, not a cut.
    free(snapshot);
    snapshot = s_slurp(dirs, "snapshot", &snapshot_len);
    s_flip(dirs, "snapshot", (long)snapshot_len / 2);
    store = s_open(dirs, EVR_FSYNC_ALWAYS);
    assert_int_equal(evr_store_load(store, NULL, NULL), -1);
    evr_record_t rec = s_rec("E", "s", 1, T0, 0, "o", false);
    assert_int_equal(evr_store_append(store, &rec), -1); //  not loaded
    evr_store_destroy(&store);
    s_truncate(dirs, "snapshot", (long)snapshot_len - 1);
    store = s_open(dirs, EVR_FSYNC_ALWAYS);
    assert_int_equal(evr_store_load(store, NULL, NULL), -1);
    evr_store_destroy(&store);
    assert_int_equal(s_size(dirs, "snapshot"), (long)snapshot_len - 1);

    free(snapshot);
    free(log);
    evr_repl_destroy(&repl);
}

//  ALWAYS fsyncs every append; BATCH only on flush, and only when dirty;
//  NEVER never.
static void test_fsync_policy(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    evr_record_t rec =
        s_rec("E_TEST", "udp:10.0.0.1:5060", 60, T0, 0, "n1", false);
    evr_fsync_t policies[] = {EVR_FSYNC_ALWAYS, EVR_FSYNC_BATCH,
                              EVR_FSYNC_NEVER};
    uint64_t per_append[] = {1, 0, 0};
    uint64_t per_flush[] = {0, 1, 0};
    for (size_t p = 0; p < 3; p++) {
        evr_store_t *store = s_open(dirs, policies[p]);
        assert_true(evr_store_load(store, NULL, NULL) >= 0);
        uint64_t base = s_stats(store).fsyncs;
        //  Nothing appended: flush does nothing.
        assert_int_equal(evr_store_flush(store), 0);
        assert_int_equal(s_stats(store).fsyncs, base);
        for (int i = 0; i < 5; i++)
            assert_int_equal(evr_store_append(store, &rec), 0);
        assert_int_equal(s_stats(store).fsyncs - base, 5 * per_append[p]);
        assert_int_equal(evr_store_flush(store), 0);
        assert_int_equal(s_stats(store).fsyncs - base,
                         5 * per_append[p] + per_flush[p]);
        //  A second flush has nothing to do.
        assert_int_equal(evr_store_flush(store), 0);
        assert_int_equal(s_stats(store).fsyncs - base,
                         5 * per_append[p] + per_flush[p]);
        assert_int_equal(evr_store_append(store, &rec), 0);
        assert_int_equal(evr_store_flush(store), 0);
        assert_int_equal(s_stats(store).fsyncs - base,
                         6 * per_append[p] + 2 * per_flush[p]);
        assert_int_equal(s_stats(store).appended, 6);
        evr_store_destroy(&store);
    }
    collector_t col;
    evr_store_t *store = s_open_load(dirs, EVR_FSYNC_NEVER, &col);
    assert_int_equal(col.count, 18);
    s_collector_free(&col);
    evr_store_destroy(&store);
}

//  wants_compaction: more than max(10000, 2 x snapshot records) frames.
static void test_wants_compaction(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    evr_repl_t *repl = evr_repl_new(MAX_LEASE_MS, MAX_SKEW_MS);
    assert_non_null(repl);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_NEVER);
    assert_int_equal(evr_store_load(store, NULL, NULL), 0);
    evr_record_t rec =
        s_rec("E_TEST", "udp:10.0.0.1:5060", 60, T0, 0, "n1", false);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(evr_store_append(store, &rec), 0);
    assert_false(evr_store_wants_compaction(store));
    assert_int_equal(evr_store_append(store, &rec), 0);
    assert_true(evr_store_wants_compaction(store));

    s_populate(repl, NULL, 0, 6000, 1);
    assert_int_equal(evr_store_compact(store, repl), 0);
    assert_false(evr_store_wants_compaction(store));
    assert_int_equal(s_stats(store).snapshot_records, 6000);
    for (int i = 0; i < 12000; i++)
        assert_int_equal(evr_store_append(store, &rec), 0);
    assert_false(evr_store_wants_compaction(store));
    assert_int_equal(evr_store_append(store, &rec), 0);
    assert_true(evr_store_wants_compaction(store));
    evr_store_destroy(&store);

    //  The same after a reload.
    store = s_open(dirs, EVR_FSYNC_NEVER);
    assert_int_equal(evr_store_load(store, NULL, NULL), 6000 + 12001);
    assert_true(evr_store_wants_compaction(store));
    evr_store_destroy(&store);
    evr_repl_destroy(&repl);
}

//  100k records: append, load, compact, load (timings printed, not
//  asserted).
static void test_100k(void **state)
{
    dirs_t *dirs = (dirs_t *)*state;
    const int n = 100000;
    evr_repl_t *repl = evr_repl_new(MAX_LEASE_MS, MAX_SKEW_MS);
    assert_non_null(repl);
    evr_store_t *store = s_open(dirs, EVR_FSYNC_BATCH);
    assert_int_equal(evr_store_load(store, NULL, NULL), 0);
    double t = s_now();
    s_populate(repl, store, 0, n, 1);
    assert_int_equal(evr_store_flush(store), 0);
    double t_append = s_now() - t;
    long log_bytes = s_size(dirs, "log");
    assert_true(evr_store_wants_compaction(store));
    evr_store_destroy(&store);

    t = s_now();
    long loaded;
    evr_repl_t *back = s_load_repl(dirs, &loaded);
    double t_load_log = s_now() - t;
    assert_int_equal(loaded, n);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);

    store = s_open(dirs, EVR_FSYNC_BATCH);
    assert_int_equal(evr_store_load(store, NULL, NULL), n);
    t = s_now();
    assert_int_equal(evr_store_compact(store, repl), 0);
    double t_compact = s_now() - t;
    assert_false(evr_store_wants_compaction(store));
    assert_int_equal(s_stats(store).snapshot_records, (uint64_t)n);
    evr_store_destroy(&store);

    t = s_now();
    back = s_load_repl(dirs, &loaded);
    double t_load_snapshot = s_now() - t;
    assert_int_equal(loaded, n);
    s_assert_repl_equal(repl, back);
    evr_repl_destroy(&back);
    evr_repl_destroy(&repl);
    printf("100k records: append+merge %.3f s (log %ld bytes), load log "
           "%.3f s, compact %.3f s (snapshot %ld bytes), load snapshot "
           "%.3f s\n",
           t_append, log_bytes, t_load_log, t_compact, s_size(dirs, "snapshot"),
           t_load_snapshot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_lock, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_torn_short, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_torn_corrupt, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_append_rolled_back, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_compact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_crash_recovery, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_fsync_policy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_wants_compaction, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_100k, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
