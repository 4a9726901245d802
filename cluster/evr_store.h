/*  evr_store.h - the subscription records on disk: snapshot + append log.

    A data directory holds `snapshot` (every record at some point) and
    `log` (records applied since, in order). Both are sequences of frames:
    a 4-byte little-endian length, a 4-byte CRC-32 of the payload, and the
    payload (one protobuf Record). Loading reads the snapshot, then the
    log; a torn or corrupt frame at the end of the log (a crash mid-write)
    ends the log there and is cut off, and is counted.

    Compaction writes a new snapshot to `snapshot.tmp`, fsyncs it, renames
    it over `snapshot`, fsyncs the directory, then empties the log, so a
    crash at any point leaves a loadable state (merging is idempotent:
    records present in both snapshot and log are harmless).

    fsync policy: ALWAYS fsyncs the log after every append (a subscribe is
    on disk before it is acknowledged); BATCH fsyncs when flush() is called
    (the relay calls it every 100 ms and before acknowledging a control
    write); NEVER leaves it to the kernel.
*/
#ifndef EVR_STORE_H_INCLUDED
#define EVR_STORE_H_INCLUDED

#include "evr_repl.h"
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    EVR_FSYNC_ALWAYS = 0,
    EVR_FSYNC_BATCH,
    EVR_FSYNC_NEVER
} evr_fsync_t;

typedef struct _evr_store_t evr_store_t;

//  Open (creating it if needed) the data directory. NULL with a reason in
//  err on failure (missing parent, not writable, locked by another relay:
//  the store holds an flock on `lock`).
evr_store_t *evr_store_open(const char *dir, evr_fsync_t policy, char *err,
                            size_t errlen);

//  Close and NULL the pointer (flushes first).
void evr_store_destroy(evr_store_t **self_p);

//  Read every record (snapshot, then log) and hand each to fn. Returns the
//  number read, or -1 on an I/O error. Call once, right after open.
long evr_store_load(evr_store_t *self, evr_repl_record_fn *fn, void *arg);

//  Append a record to the log. Returns 0 or -1.
int evr_store_append(evr_store_t *self, const evr_record_t *rec);

//  fsync the log if anything was appended since the last fsync.
int evr_store_flush(evr_store_t *self);

//  Whether the log has grown enough to be worth compacting (e.g. more
//  than max(10000, 2 x the last snapshot's records) frames).
bool evr_store_wants_compaction(const evr_store_t *self);

//  Replace the snapshot with every record of repl, and empty the log.
int evr_store_compact(evr_store_t *self, const evr_repl_t *repl);

//  Counters: frames appended, fsyncs, compactions, torn frames cut off.
typedef struct {
    uint64_t appended;
    uint64_t fsyncs;
    uint64_t compactions;
    uint64_t torn;
    uint64_t log_frames;
    uint64_t snapshot_records;
} evr_store_stats_t;
void evr_store_stats(const evr_store_t *self, evr_store_stats_t *stats);

#endif
