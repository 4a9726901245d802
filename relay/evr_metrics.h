/*  evr_metrics.h - the relay's counters in the Prometheus text format.

    A pure module: it takes the result of the `stats` command (JSON text)
    and renders the Prometheus text exposition format, version 0.0.4. It
    does no I/O and keeps no state, so the HTTP face can call it from its
    own thread on a copy of the stats that the core thread produced.

    Naming: evrelay_<section>_<key>_total for the counters of the ingest
    and control sections, evrelay_table_<key> gauges for the table,
    evrelay_target_* per target (labels target = canonical socket,
    transport; a virtual target's children carry parent = the virtual
    socket too) and the histogram evrelay_delivery_latency_seconds;
    evrelay_cluster_<key>[_total] for the cluster section (gauges for its
    state, counters for the rest) and evrelay_cluster_peer_* per peer
    (label peer = node id); evrelay_policy_denied_total{action},
    evrelay_allowlist_denied_total{rule} and evrelay_http_unauthorized_total
    for the policy section. The full table is in docs/OPERATIONS.md.
*/
#ifndef EVR_METRICS_H_INCLUDED
#define EVR_METRICS_H_INCLUDED

#include <stddef.h>

//  The Content-Type of what evr_metrics_render returns.
#define EVR_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

//  Render stats_json (len bytes, the `stats` result) as Prometheus text.
//  Returns a new NUL-terminated string (caller frees) and its length in
//  *out_len (may be NULL), or NULL when stats_json is not a JSON object.
char *evr_metrics_render(const char *stats_json, size_t len, size_t *out_len);

#endif
