/*  evr_stats.c - the relay's own counters and their names. */
#include "evr_stats.h"

#include <stddef.h>

typedef struct {
    const char *name;
    size_t offset;
} s_name_t;

#define S_IN(f)                                                                \
    {                                                                          \
#f, offsetof(evr_ingest_stats_t, f)                                    \
    }
#define S_CT(f)                                                                \
    {                                                                          \
#f, offsetof(evr_control_stats_t, f)                                   \
    }

static const s_name_t s_ingest[] = {S_IN(batches),
                                    S_IN(received),
                                    S_IN(delivered_to_queues),
                                    S_IN(duplicates),
                                    S_IN(stale),
                                    S_IN(malformed),
                                    S_IN(too_large),
                                    S_IN(bad_version),
                                    S_IN(rejected),
                                    S_IN(no_subscribers),
                                    S_IN(queue_full),
                                    S_IN(producers_evicted),
                                    S_IN(events_overflow),
                                    S_IN(delivered_batches),
                                    S_IN(delivered_acks),
                                    S_IN(held_back),
                                    S_IN(failed_events),
                                    S_IN(unacked),
                                    S_IN(refused_frame_bytes),
                                    S_IN(refused_batch_events),
                                    S_IN(refused_inflight),
                                    S_IN(refused_name_length),
                                    S_IN(refused_params),
                                    S_IN(refused_event_bytes),
                                    {NULL, 0}};

static const s_name_t s_control[] = {S_CT(requests),
                                     S_CT(errors),
                                     S_CT(malformed),
                                     S_CT(too_large),
                                     S_CT(expired),
                                     S_CT(refused_name_length),
                                     S_CT(refused_subscriptions),
                                     S_CT(refused_event_subscriptions),
                                     S_CT(refused_children),
                                     {NULL, 0}};

//  Render counters named by table as a JSON object.
static json_t *s_render(const void *stats, const s_name_t *table)
{
    json_t *obj = json_object();
    for (const s_name_t *n = table; obj && n->name; n++) {
        uint64_t v = *(const uint64_t *)((const char *)stats + n->offset);
        json_object_set_new(obj, n->name, json_integer((json_int_t)v));
    }
    return obj;
}

//  Render the ingest counters as a JSON object.
json_t *evr_stats_ingest_json(const evr_ingest_stats_t *stats)
{
    return s_render(stats, s_ingest);
}

//  Render the control counters as a JSON object.
json_t *evr_stats_control_json(const evr_control_stats_t *stats)
{
    return s_render(stats, s_control);
}

//  Render the policy counters as a JSON object.
json_t *evr_stats_policy_json(const evr_policy_stats_t *stats,
                              uint64_t http_unauthorized)
{
    json_t *actions = json_object(), *rules = json_object();
    for (int a = EVR_ACTION_NONE + 1; a < EVR_ACTION_COUNT; a++)
        json_object_set_new(actions, evr_policy_action_name((evr_action_t)a),
                            json_integer((json_int_t)stats->policy_denied[a]));
    for (int r = 0; r < EVR_ALLOW_COUNT; r++)
        json_object_set_new(
            rules, evr_policy_rule_key((evr_allow_rule_t)r),
            json_integer((json_int_t)stats->allowlist_denied[r]));
    return json_pack("{s:o,s:o,s:I}", "policy_denied", actions,
                     "allowlist_denied", rules, "http_unauthorized",
                     (json_int_t)http_unauthorized);
}
