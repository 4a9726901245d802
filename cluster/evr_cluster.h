/*  evr_cluster.h - the relay cluster: the replicated, persistent
    subscription table around the pure modules evr_hlc, evr_repl and
    evr_store (docs/CLUSTER.md).

    A shell, run by the relay's core thread: it owns no thread. The relay
    adds its sockets to the core loop's poll (evr_cluster_poll_items),
    hands back what the poll found (evr_cluster_poll_handle, which also
    runs the due timers) and bounds the poll timeout with
    evr_cluster_timeout. Every call below is made from that one thread.

    Sockets (only with a listen endpoint; without one the cluster is just
    persistence): a ROUTER bound at the listen endpoint answers peers'
    heartbeats and snapshot requests; a PUB bound on the same host at an
    ephemeral port carries this relay's deltas; one SUB connected to every
    peer's PUB receives theirs; one DEALER per peer, connected to the
    peer's ROUTER, sends heartbeats and snapshot requests and receives the
    answers.

    The table itself stays the relay's: the cluster calls the apply
    callback whenever a record changes what the table should hold (live:
    subscribe with the record's subscription time; tombstone or expired:
    unsubscribe). Static subscriptions never pass through here.
*/
#ifndef EVR_CLUSTER_H_INCLUDED
#define EVR_CLUSTER_H_INCLUDED

#include "evr_auth.h"
#include "evr_config.h"
#include "evr_repl.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

//  The most poll items the cluster asks for: ROUTER, SUB, one DEALER per
//  peer.
#define EVR_CLUSTER_MAX_POLL (2 + EVR_CLUSTER_MAX_PEERS)

typedef struct _evr_cluster_t evr_cluster_t;

//  Make the relay's table agree with rec: live -> subscribe rec->socket to
//  rec->event for rec->expire_s with rec->sub_time_ms as the subscription
//  time; !live (tombstone, or past its deadline) -> unsubscribe. remote is
//  false for this relay's own control writes (then a refusal, with its
//  reason in err, refuses the write), true for records from peers, the
//  disk or gc (a static subscription of the same key then stays). Returns
//  0 or -1.
typedef int(evr_cluster_apply_fn)(void *arg, const evr_record_t *rec, bool live,
                                  bool remote, char *err, size_t errlen);

//  Create the cluster for cfg (cfg->cluster and/or cfg->data_dir set; cfg
//  must outlive it): open and load the store (applying every live record),
//  bind the sockets in ctx, connect to the configured peers and start
//  joining. NULL with a reason in err on failure.
evr_cluster_t *evr_cluster_new(void *ctx, evr_auth_t *auth,
                               const evr_config_t *cfg,
                               evr_cluster_apply_fn *apply, void *arg,
                               char *err, size_t errlen);

//  Close the sockets, flush and close the store, free, NULL the pointer.
void evr_cluster_destroy(evr_cluster_t **self_p);

//  Fill items (room for max, at least EVR_CLUSTER_MAX_POLL) with the
//  sockets to poll for input. Returns how many.
size_t evr_cluster_poll_items(evr_cluster_t *self, zmq_pollitem_t *items,
                              size_t max);

//  Handle the sockets the poll found readable (items and n as filled by
//  evr_cluster_poll_items, revents set by zmq_poll), then run the timers
//  that are due.
void evr_cluster_poll_handle(evr_cluster_t *self, const zmq_pollitem_t *items,
                             size_t n);

//  Milliseconds until the next timer (0: one is due).
long evr_cluster_timeout(evr_cluster_t *self);

//  A control subscribe (expire_s >= 1) or unsubscribe (expire_s 0) on this
//  relay: a new record versioned now, applied to the table, merged,
//  appended to the log, then published to the peers (asynchronously).
//  Call evr_cluster_sync before answering the request. Returns 0, or -1
//  with the reason in err (bad event or socket, expire above max_lease_s,
//  the table refused it).
int evr_cluster_write(evr_cluster_t *self, const char *event,
                      const char *socket, int64_t expire_s, char *err,
                      size_t errlen);

//  Put the local writes made since the last call on disk (fsync = batch;
//  always fsyncs each append, never leaves it to the kernel): the relay
//  calls it once before sending the answers of a round of control
//  requests (group commit).
void evr_cluster_sync(evr_cluster_t *self);

//  Joined: the table holds a snapshot of a peer (or no peer answered
//  within the join timeout, or there is no peer to ask).
bool evr_cluster_ready(evr_cluster_t *self);

//  The `cluster` command's result (new reference).
json_t *evr_cluster_status(evr_cluster_t *self);

//  The counters for `stats` (new reference): an object of numbers, and
//  "peers", an array of per-peer objects.
json_t *evr_cluster_stats(evr_cluster_t *self);

//  This relay's node id.
const char *evr_cluster_node(evr_cluster_t *self);

#endif
