/*  fuzz_store.c - libFuzzer target for the data directory's record files.

    The first byte picks what the rest is, written into a private data
    directory (on /dev/shm when there is one):
      0: the log;
      1: the snapshot;
      2: both: the second byte says where the snapshot ends, the log
         follows.
    evr_store_load must read it or refuse it (a corrupt snapshot). Each
    record it hands over goes where the cluster puts it (socket parsed,
    merged into a map). When it loaded:
    - a second open and load must find the same records, and no torn frame
      (the first load cut it off);
    - a record appended then must be found by the next load;
    - a compaction must leave a snapshot that loads to the map's records.
    abort() when a check fails.
*/
#include "evr_repl.h"
#include "evr_sockspec.h"
#include "evr_store.h"

#include <czmq.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  The data directory of this process.
static char s_dir[64];

//  What a load saw.
typedef struct {
    evr_repl_t *repl; //  NULL: just count
    long count;
} s_load_t;

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_store: %s\n", what);
    abort();
}

//  At exit: remove the data directory.
static void s_cleanup(void)
{
    const char *names[] = {"snapshot", "snapshot.tmp", "log", "lock"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", s_dir, names[i]);
        unlink(path);
    }
    rmdir(s_dir);
}

//  Make the data directory once; quiet the store's log lines.
static void s_setup(void)
{
    if (s_dir[0])
        return;
    zsys_set_logstream(fopen("/dev/null", "w"));
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(s_dir, sizeof s_dir, "%s/evr-fuzz-store-XXXXXX", base);
    if (!mkdtemp(s_dir))
        s_fail("cannot make a data directory");
    atexit(s_cleanup);
}

//  Write a file of the data directory (or remove it when len is 0).
static void s_put(const char *name, const uint8_t *data, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    unlink(path);
    if (!len)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd == -1 || write(fd, data, len) != (ssize_t)len)
        s_fail("cannot write a file");
    close(fd);
}

//  evr_store_load hook: what the cluster does with a stored record.
static void s_on_record(const evr_record_t *stored, void *arg)
{
    s_load_t *load = arg;
    if (!stored->event || !stored->socket || !stored->origin)
        s_fail("loaded record without its strings");
    load->count++;
    if (!load->repl)
        return;
    char why[256];
    evr_sockspec_t *spec = evr_sockspec_parse(stored->socket, why, sizeof why);
    if (!spec)
        return;
    evr_record_t rec = *stored;
    rec.match_key = evr_sockspec_match_key(spec);
    evr_repl_merge(load->repl, &rec);
    evr_sockspec_destroy(&spec);
}

//  Open the directory and load it. Returns the store (NULL when the load
//  refused it) and the count in *load.
static evr_store_t *s_open(s_load_t *load)
{
    char err[256];
    evr_store_t *store =
        evr_store_open(s_dir, EVR_FSYNC_NEVER, err, sizeof err);
    if (!store) {
        fprintf(stderr, "%s\n", err);
        s_fail("cannot open the data directory");
    }
    load->count = 0;
    if (evr_store_load(store, s_on_record, load) < 0)
        evr_store_destroy(&store);
    return store;
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_setup();
    if (size < 2)
        return 0;
    int mode = data[0] % 3;
    const uint8_t *rest = data + 2;
    size_t len = size - 2;
    size_t split = mode == 0 ? 0 : mode == 1 ? len : len * data[1] / 255;
    s_put("snapshot", rest, split);
    s_put("log", rest + split, len - split);

    evr_repl_t *repl = evr_repl_new(86400 * 1000LL, 5000);
    if (!repl)
        return 0;
    s_load_t first = {.repl = repl};
    evr_store_t *store = s_open(&first);
    if (!store) {
        evr_repl_destroy(&repl);
        return 0; //  a corrupt snapshot: refused
    }
    evr_store_stats_t stats;
    evr_store_stats(store, &stats);
    if ((long)(stats.log_frames + stats.snapshot_records) != first.count)
        s_fail("counters and records loaded disagree");
    evr_store_destroy(&store);

    //  the first load cut any torn frame off: the same records, cleanly
    s_load_t again = {0};
    store = s_open(&again);
    if (!store)
        s_fail("a loaded directory does not load again");
    evr_store_stats(store, &stats);
    if (again.count != first.count || stats.torn)
        s_fail("a second load differs");

    //  an append follows the good frames
    evr_record_t rec = {.event = "E_FUZZ",
                        .socket = "udp:127.0.0.1:9",
                        .match_key = "udp:127.0.0.1:9",
                        .expire_s = 60,
                        .sub_time_ms = 1,
                        .hlc = 1 << 16,
                        .origin = "fuzz"};
    if (evr_store_append(store, &rec))
        s_fail("cannot append");
    evr_store_destroy(&store);
    store = s_open(&again);
    if (!store || again.count != first.count + 1)
        s_fail("the appended record is not found");

    //  a compaction keeps the map's records
    if (evr_store_compact(store, repl))
        s_fail("cannot compact");
    evr_store_destroy(&store);
    store = s_open(&again);
    if (!store || again.count != (long)evr_repl_size(repl))
        s_fail("the compacted snapshot differs from the map");
    evr_store_destroy(&store);
    evr_repl_destroy(&repl);
    return 0;
}
