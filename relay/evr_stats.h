/*  evr_stats.h - the relay's own counters and their names.

    Every drop, refusal and failure of the ingest and control paths is a
    counter here; per-target counters live on the targets. The name table
    is the single place that names a counter for `evrelayctl stats` (and
    for any later exporter).
*/
#ifndef EVR_STATS_H_INCLUDED
#define EVR_STATS_H_INCLUDED

#include "evr_policy.h"
#include <jansson.h>
#include <stdint.h>

typedef struct {
    uint64_t batches;             //  publish messages accepted
    uint64_t received;            //  events in them
    uint64_t delivered_to_queues; //  (event, target) pairs queued
    uint64_t duplicates;     //  events already seen (de-duplication window)
    uint64_t stale;          //  events older than the window, delivered anyway
    uint64_t malformed;      //  frames that did not decode
    uint64_t too_large;      //  frames or events over the size limits
    uint64_t bad_version;    //  frames with an unknown protocol version
    uint64_t rejected;       //  events refused one by one (name, params, size)
    uint64_t no_subscribers; //  events nobody was subscribed to
    uint64_t queue_full; //  (event, target) pairs dropped: target queue full
    uint64_t producers_evicted; //  producer windows forgotten (LRU)
    uint64_t events_overflow;   //  new event names refused: registry full
    uint64_t delivered_batches; //  publish messages with the DELIVERED point
    uint64_t delivered_acks;    //  their Acks, sent once deliveries were final
    uint64_t held_back;     //  DELIVERED publishes not answered: they repeat
                            //  events whose first delivery is still in progress
    uint64_t failed_events; //  events listed in Ack.failed
    uint64_t unacked;       //  NONE: publish messages accepted without Ack
    //  [limits] refusals, one counter per limit (docs/OPERATIONS.md 1.8)
    uint64_t refused_frame_bytes;  //  frames over max_frame_bytes
    uint64_t refused_batch_events; //  batches over max_batch_events
    uint64_t refused_inflight;     //  batches over max_inflight_bytes
    uint64_t refused_name_length;  //  events: name over max_name_length
    uint64_t refused_params;       //  events: params over max_params
    uint64_t refused_event_bytes;  //  events: payload over max_event_bytes
} evr_ingest_stats_t;

typedef struct {
    uint64_t requests;
    uint64_t errors;    //  answers with an error
    uint64_t malformed; //  frames that did not decode
    uint64_t too_large;
    uint64_t expired; //  subscriptions removed by expiry
    //  [limits] refusals of local subscribes (docs/OPERATIONS.md 1.8)
    uint64_t refused_name_length;         //  event name over max_name_length
    uint64_t refused_subscriptions;       //  table at max_subscriptions
    uint64_t refused_event_subscriptions; //  event at its per-event cap
    uint64_t refused_children;            //  virtual over max_children
} evr_control_stats_t;

typedef struct {
    uint64_t policy_denied[EVR_ACTION_COUNT];   //  by action ([policy])
    uint64_t allowlist_denied[EVR_ALLOW_COUNT]; //  by rule ([allow])
} evr_policy_stats_t;

//  Render the ingest counters as a JSON object (new reference).
json_t *evr_stats_ingest_json(const evr_ingest_stats_t *stats);

//  Render the control counters as a JSON object (new reference).
json_t *evr_stats_control_json(const evr_control_stats_t *stats);

//  Render the policy counters, with the HTTP face's 401 answers, as a JSON
//  object (new reference): {"policy_denied":{ACTION:N,...},
//  "allowlist_denied":{RULE:N,...},"http_unauthorized":N}.
json_t *evr_stats_policy_json(const evr_policy_stats_t *stats,
                              uint64_t http_unauthorized);

#endif
