/*  evr_target.h - one delivery destination and its I/O.

    A target is a canonical socket string turned into something that can be
    written to: a connected non-blocking UDP socket, a connected unix
    datagram socket, or an O_APPEND file. Subscriptions share targets
    (several events subscribed by one socket use one target).

    Threads: the relay's core thread creates targets and enqueues messages;
    exactly one delivery worker (evr_target_worker) does the target's I/O.
    Counters are atomics readable from any thread. Targets and messages are
    reference counted so a target can be unsubscribed while its messages are
    still queued.
*/
#ifndef EVR_TARGET_H_INCLUDED
#define EVR_TARGET_H_INCLUDED

#include "evr_sockspec.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Which payload encoding a target consumes.
typedef enum {
    EVR_FORMAT_JSONRPC = 0,
    EVR_FORMAT_LEGACY,
    EVR_FORMAT_FLATSTORE,
    EVR_FORMAT_COUNT
} evr_format_t;

//  An encoded payload shared by every target of one format.
typedef struct {
    int refs; //  atomic
    uint32_t len;
    int64_t raised_us; //  producer's raise time, 0 if unknown
    char data[];
} evr_msg_t;

//  Allocate a message holding a copy of len bytes, with `refs` references.
evr_msg_t *evr_msg_new(const void *data, size_t len, int refs);

//  Drop one reference; frees the message at zero.
void evr_msg_unref(evr_msg_t *msg);

//  Settings shared by all targets, from the relay's configuration.
typedef struct {
    bool datagram_legacy; //  udp/unix get the <= 3.0 text format
    int file_mode;        //  permissions of flatstore files it creates
    int sndbuf; //  SO_SNDBUF for datagram sockets (0 = system default)
} evr_target_opts_t;

typedef struct _evr_target_t evr_target_t;

//  Upper bounds (microseconds) of the raise->delivery latency histogram
//  buckets; a last, unbounded bucket follows. Latency is measured from
//  the producer's raise time, so it includes clock skew between hosts.
#define EVR_LATENCY_BUCKETS 16
extern const uint64_t evr_latency_bounds_us[EVR_LATENCY_BUCKETS];

//  Counters of one target (snapshot).
typedef struct {
    uint64_t delivered;
    uint64_t failed;
    uint64_t dropped;
    uint64_t queued;
    //  delivered messages with a known raise time, by latency bucket
    //  (not cumulative), and the sum of their latencies
    uint64_t latency_count[EVR_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us;
} evr_target_stats_t;

//  Create a target for spec (copied) and open its I/O: resolve the udp host
//  (once, as OpenSIPS does), create the socket, open the file. worker is
//  the index of the delivery worker that will own it. Returns NULL with a
//  reason in err on failure. Starts with one reference.
evr_target_t *evr_target_new(const evr_sockspec_t *spec,
                             const evr_target_opts_t *opts, int worker,
                             char *err, size_t errlen);

//  Take a reference.
void evr_target_ref(evr_target_t *self);

//  Drop a reference and NULL the pointer; closes and frees at zero.
void evr_target_unref(evr_target_t **self_p);

//  The canonical socket string.
const char *evr_target_socket(const evr_target_t *self);

//  The transport name ("udp", ...).
const char *evr_target_transport(const evr_target_t *self);

//  flatstore: the file path; NULL for others.
const char *evr_target_path(const evr_target_t *self);

//  The payload format this target consumes.
evr_format_t evr_target_format(const evr_target_t *self);

//  The worker that owns the target's I/O.
int evr_target_worker(const evr_target_t *self);

//  Core thread: account for one message about to be queued. Returns 0, or
//  -1 when the target's queue is at `limit` (the message is counted as
//  dropped and must not be queued).
int evr_target_admit(evr_target_t *self, size_t limit);

//  Worker: the fd to wait on for POLLOUT, or -1.
int evr_target_fd(const evr_target_t *self);

//  Worker: queue msg (takes the caller's reference to it) behind what the
//  target already holds.
int evr_target_push(evr_target_t *self, evr_msg_t *msg);

//  Worker: write as much of the queue as the destination accepts without
//  blocking. Returns 0 when the queue is empty, 1 when the destination
//  would block (wait for POLLOUT on evr_target_fd), -1 on allocation
//  failure. Messages the destination refuses are counted as failed.
int evr_target_flush(evr_target_t *self);

//  Worker: mark the target as seen in pass `round`; returns true when it
//  was not marked for that round yet (cheap de-duplication of work lists).
bool evr_target_mark(evr_target_t *self, uint64_t round);

//  Worker: drop everything still queued (counted as dropped).
void evr_target_discard(evr_target_t *self);

//  flatstore: reopen the file before the next write (rotation). Any thread.
void evr_target_request_reopen(evr_target_t *self);

//  Reopen every flatstore file before its next write (SIGHUP). Any thread.
void evr_target_reopen_all(void);

//  Snapshot the counters.
void evr_target_stats(const evr_target_t *self, evr_target_stats_t *stats);

#endif
