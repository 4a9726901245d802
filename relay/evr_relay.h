/*  evr_relay.h - the relay core: ingest, control, table, dispatch.

    One thread (the caller of evr_relay_run) owns the ingest and control
    ROUTER sockets, the subscription table, the target registry and the
    de-duplication windows, so none of them needs a lock. Delivery happens
    in the worker threads (evr_worker). The functions below other than
    new/destroy/run are for evr_control, which runs in the same thread.
*/
#ifndef EVR_RELAY_H_INCLUDED
#define EVR_RELAY_H_INCLUDED

#include "evr_config.h"
#include "evr_event.h"
#include "evr_stats.h"
#include "evr_table.h"
#include <jansson.h>

typedef struct _evr_relay_t evr_relay_t;

//  Create the relay: bind its sockets, start the workers, add the static
//  subscriptions of cfg (which must outlive the relay). NULL with a reason
//  in err on failure. Blocks SIGINT, SIGTERM and SIGHUP in the calling
//  thread (so in every thread it starts); evr_relay_run, called from the
//  same thread, reads them from a signalfd.
evr_relay_t *evr_relay_new(const evr_config_t *cfg, char *err, size_t errlen);

//  Stop the workers, close everything, free, NULL the pointer.
void evr_relay_destroy(evr_relay_t **self_p);

//  Serve until SIGINT/SIGTERM. SIGHUP reopens every flatstore file.
//  Returns 0 on a clean stop.
int evr_relay_run(evr_relay_t *self);

//  The subscription table.
evr_table_t *evr_relay_table(evr_relay_t *self);

//  Subscribe / refresh / (expire 0) unsubscribe socket to event. Returns
//  0, or -1 with the reason in err (an unknown transport, a bad socket, a
//  destination that cannot be opened).
int evr_relay_subscribe(evr_relay_t *self, const char *event,
                        const char *socket, int64_t expire_s, char *err,
                        size_t errlen);

//  evr_relay_subscribe with now_ms (ms since the epoch) as the
//  subscription time (a replicated record's).
int evr_relay_subscribe_at(evr_relay_t *self, const char *event,
                           const char *socket, int64_t expire_s, int64_t now_ms,
                           char *err, size_t errlen);

//  Check a local subscribe (control socket, HTTP face) against the
//  [limits] caps before it is made: an event name over max_name_length, a
//  virtual socket with more than max_children children, and, when it would
//  add a subscription (not a refresh, not an unsubscribe), an event that
//  has max_subscriptions_per_event or a table that has max_subscriptions
//  live subscriptions. Returns 0, or -1 with the reason (naming the limit
//  and its value) in err; each refusal is counted in the control stats.
//  Replicated and static subscriptions are not checked (a peer's write is
//  never refused, so the tables cannot diverge). A socket that does not
//  parse passes: the subscribe reports it.
int evr_relay_check_subscribe(evr_relay_t *self, const char *event,
                              const char *socket, int64_t expire_s, char *err,
                              size_t errlen);

//  The cluster (replication and persistence of the table), or NULL when
//  the relay runs without --cluster and --data-dir.
typedef struct _evr_cluster_t evr_cluster_t;
evr_cluster_t *evr_relay_cluster(evr_relay_t *self);

//  Queue ev for every live subscriber and hand the work to the workers.
//  Returns the number of live subscriptions it matched; *queued (may be
//  NULL) gets how many of them the event was queued for (fewer when it is
//  too large or a target queue is full).
size_t evr_relay_raise(evr_relay_t *self, const evr_event_view_t *ev,
                       size_t *queued);

//  Ask flatstore targets writing `path` to reopen. Returns how many.
size_t evr_relay_rotate(evr_relay_t *self, const char *path);

//  Ready to serve (the `health` command, GET /health). A clustered relay
//  will be ready only once its table is in sync.
bool evr_relay_ready(evr_relay_t *self);

//  The access policy: [policy], [allow], [http_auth] (read-only).
const evr_policy_rules_t *evr_relay_policy(evr_relay_t *self);

//  The counters of requests the policy refused.
evr_policy_stats_t *evr_relay_policy_stats(evr_relay_t *self);

//  Everything `evrelayctl stats` shows (new reference).
json_t *evr_relay_stats(evr_relay_t *self);

//  The relay's clock, ms since the epoch.
int64_t evr_relay_now_ms(void);

#endif
