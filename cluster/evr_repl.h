/*  evr_repl.h - the replicated subscription records: a last-writer-wins
    map, and the version vector of the delta streams that feed it.

    Pure module: no I/O, no clock of its own.

    Records are keyed by (event, match key of the socket). merge() keeps
    the record with the larger version (hlc, then origin as tie-break); it
    is commutative, associative and idempotent, so deltas and snapshots
    can arrive in any order, twice, or late. An unsubscribe is a tombstone
    record.

    Nothing is ever deleted by message, and a record is not deleted when
    its deadline (sub_time_ms + expire_s * 1000) passes either: the record
    under a key is what makes every older version of that key STALE. Were
    it dropped at its deadline, a late older version (from a peer that
    missed the newer one, in a snapshot or a delayed delta) would merge as
    new and be live again until its own deadline: a subscription that was
    refreshed with a shorter expire, or unsubscribed, would come back. So a
    record past its deadline stays in the map as a non-live "shadow", as a
    tombstone does, and gc() drops any record, tombstone or not, only when

        now_ms > physical(hlc) + max_lease_ms + max_skew_ms + 999

    by then no older version of its key can be live anywhere:
    - the lease rule (merge() refuses records that break it): a record's
      deadline <= physical(hlc) + max_lease_ms; an older version has a
      hlc no larger, so a deadline no later;
    - + 999: liveness follows OpenSIPS' rule in whole seconds (see
      evr_repl_live), so a record may be live up to 999 ms past its
      deadline; tombstones get it too, as what they shadow does;
    - + max_skew_ms: a late older version that merges here after the drop
      is passed on to peers (snapshots), and they judge it by their own
      clocks, which may be up to max_skew_ms behind ours.
    The same rule also means a record is never dropped while it is live,
    and every record, live or not, is dropped eventually.

    Shadows and tombstones are records like any other: find(), foreach(),
    size() and the digest include them, and snapshots built with foreach()
    carry them, so that peers learn them too. Whoever applies a record to
    a subscription table must check evr_repl_live() first.

    The version vector tracks, per (origin node, origin instance), the
    highest contiguous delta sequence applied, so a receiver sees gaps.
*/
#ifndef EVR_REPL_H_INCLUDED
#define EVR_REPL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  One record (a borrowed view; strings NUL-terminated).
typedef struct {
    const char *event;
    const char *socket;    //  as subscribed (may hold a password)
    const char *match_key; //  from the socket parser
    uint32_t expire_s;     //  >= 1 unless tombstone
    uint64_t sub_time_ms;
    uint64_t hlc;
    const char *origin; //  node id of the writer
    bool tombstone;
} evr_record_t;

typedef enum {
    EVR_REPL_APPLIED = 0, //  newer than what we had: stored
    EVR_REPL_STALE,       //  not newer: ignored
    EVR_REPL_REFUSED      //  breaks the lease rule, or malformed (or no memory)
} evr_repl_result_t;

typedef enum {
    EVR_SEQ_NEXT = 0, //  the next contiguous seq: apply, recorded
    EVR_SEQ_OLD,      //  already applied (or older): ignore
    EVR_SEQ_GAP       //  beyond the next: some were missed (not recorded)
} evr_seq_result_t;

typedef struct _evr_repl_t evr_repl_t;

typedef void(evr_repl_record_fn)(const evr_record_t *rec, void *arg);
typedef void(evr_repl_seq_fn)(const char *origin, uint64_t instance,
                              uint64_t seq, void *arg);

//  Create an empty map.
evr_repl_t *evr_repl_new(int64_t max_lease_ms, int64_t max_skew_ms);

//  Destroy and NULL the pointer.
void evr_repl_destroy(evr_repl_t **self_p);

//  Merge a record (copied). Refused: a NULL or empty event, socket,
//  match_key or origin; an event holding '\n'; expire_s 0 on a record that
//  is not a tombstone; a deadline after physical(hlc) + max_lease_ms (not
//  checked for tombstones); sub_time_ms after physical(hlc) + max_skew_ms.
evr_repl_result_t evr_repl_merge(evr_repl_t *self, const evr_record_t *rec);

//  The record under (event, match_key), or NULL. Valid until the next
//  call that changes the map.
const evr_record_t *evr_repl_find(const evr_repl_t *self, const char *event,
                                  const char *match_key);

//  Call fn for every record (tombstones and expired shadows included: check
//  evr_repl_live before applying one), in no order.
void evr_repl_foreach(const evr_repl_t *self, evr_repl_record_fn *fn,
                      void *arg);

//  Number of records (tombstones and expired shadows included).
size_t evr_repl_size(const evr_repl_t *self);

//  An order-independent digest of every record's (key, hlc, origin,
//  tombstone), tombstones and expired shadows included: two maps with equal
//  digests hold the same versions (with high probability). Maintained
//  incrementally.
uint64_t evr_repl_digest(const evr_repl_t *self);

//  Drop every record (tombstone or not) whose shadow window is over:
//  now_ms > physical(hlc) + max_lease_ms + max_skew_ms + 999. A record
//  past its deadline but inside the window stays, not live. fn (may be
//  NULL) sees each dropped record first; it is not live by then (gc does
//  not report expiry: it happened at least max_skew_ms earlier, and
//  evr_repl_live tells it). Returns how many went.
size_t evr_repl_gc(evr_repl_t *self, int64_t now_ms, evr_repl_record_fn *fn,
                   void *arg);

//  Whether a record is live at now_ms (not a tombstone, deadline not
//  passed; the deadline second counts as live, as in OpenSIPS, so a record
//  may be live up to 999 ms past sub_time_ms + expire_s * 1000).
bool evr_repl_live(const evr_record_t *rec, int64_t now_ms);

//  Version vector: account for delta `seq` of (origin, instance).
evr_seq_result_t evr_repl_seq_check(evr_repl_t *self, const char *origin,
                                    uint64_t instance, uint64_t seq);

//  Version vector: raise (origin, instance) to at least seq (after a
//  snapshot that included everything up to seq).
void evr_repl_seq_raise(evr_repl_t *self, const char *origin, uint64_t instance,
                        uint64_t seq);

//  Version vector: the highest contiguous seq of (origin, instance), 0
//  when unknown.
uint64_t evr_repl_seq_get(const evr_repl_t *self, const char *origin,
                          uint64_t instance);

//  Version vector: every entry.
void evr_repl_seq_foreach(const evr_repl_t *self, evr_repl_seq_fn *fn,
                          void *arg);

//  Version vector: forget instances of an origin older than `instance`
//  (the origin restarted).
void evr_repl_seq_forget_before(evr_repl_t *self, const char *origin,
                                uint64_t instance);

#endif
