/*  evr_metrics.c - the relay's counters in the Prometheus text format.

    Input: {"uptime_s":N,"ingest":{...},"control":{...},"table":{...},
    "targets":[{"socket":S,"transport":T,"subscriptions":N,"delivered":N,
    "failed":N,"dropped":N,"queued":N,"latency_buckets_us":{"le":[...],
    "counts":[...],"sum":N},"children":[...]},...],"cluster":{...,
    "peers":[{"node":S,"alive":0|1,"deltas_in":N,...},...]},"policy":{
    "policy_denied":{ACTION:N,...},"allowlist_denied":{RULE:N,...},
    "http_unauthorized":N}}. Unknown keys
    of a known section are exported too (with a generic help text), so a
    new relay counter shows up without a change here; unknown sections are
    left out until they get a type here.
*/
#include "evr_metrics.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Help text of one key of a section.
typedef struct {
    const char *key;
    const char *help;
} s_help_t;

static const s_help_t s_ingest_help[] = {
    {"batches", "Publish messages accepted."},
    {"received", "Events received in publish messages."},
    {"delivered_to_queues", "Event copies queued for a target."},
    {"duplicates", "Events dropped as already seen (de-duplication window)."},
    {"stale", "Events older than the de-duplication window, delivered anyway."},
    {"malformed", "Publish frames that did not decode."},
    {"too_large", "Frames or events over the size limits."},
    {"bad_version", "Publish frames with an unknown protocol version."},
    {"rejected", "Events refused one by one (name, params, size)."},
    {"no_subscribers", "Events nobody was subscribed to."},
    {"queue_full", "Event copies dropped because a target queue was full."},
    {"producers_evicted", "Producer windows forgotten (least recently seen)."},
    {"events_overflow", "New event names refused: event registry full."},
    {"delivered_batches", "Publish messages with the DELIVERED ack point."},
    {"delivered_acks", "Acks sent once a DELIVERED batch's deliveries were "
                       "final."},
    {"held_back", "DELIVERED publishes left unanswered: they repeat events "
                  "whose first delivery is still in progress."},
    {"failed_events", "Events reported failed (no subscriber took them)."},
    {"unacked", "Publish messages with the NONE ack point (not answered)."},
    {"refused_frame_bytes", "Publish frames over max_frame_bytes."},
    {"refused_batch_events", "Publish batches over max_batch_events."},
    {"refused_inflight", "DELIVERED batches refused: the producer's bytes in "
                         "flight would exceed max_inflight_bytes."},
    {"refused_name_length", "Events whose name is over max_name_length."},
    {"refused_params", "Events with more params than max_params."},
    {"refused_event_bytes", "Events whose payload is over max_event_bytes."},
    {NULL, NULL}};

static const s_help_t s_control_help[] = {
    {"requests", "Control requests (control socket and HTTP face)."},
    {"errors", "Control requests answered with an error."},
    {"malformed", "Control frames that did not decode."},
    {"too_large", "Control frames over the size limit."},
    {"expired", "Subscriptions removed by expiry."},
    {"refused_name_length", "Subscribes refused: event name over "
                            "max_name_length."},
    {"refused_subscriptions", "Subscribes refused: the relay holds "
                              "max_subscriptions."},
    {"refused_event_subscriptions", "Subscribes refused: the event has "
                                    "max_subscriptions_per_event."},
    {"refused_children", "Subscribes refused: a virtual socket with more "
                         "children than max_children."},
    {NULL, NULL}};

static const s_help_t s_table_help[] = {
    {"subscriptions", "Live subscriptions in the table."},
    {"events", "Event names the relay knows."},
    {"producers", "Producer instances with a de-duplication window."},
    {"pending_batches", "DELIVERED batches whose deliveries are in "
                        "progress."},
    {"inflight_bytes", "Bytes of DELIVERED batches in progress, all "
                       "producers."},
    {NULL, NULL}};

static const s_help_t s_cluster_help[] = {
    {"ready", "1 once the relay has joined the cluster (table in sync)."},
    {"records", "Replicated records held (tombstones and shadows included)."},
    {"members", "Peers known."},
    {"members_alive", "Peers heard from within 3 heartbeats."},
    {"deltas_out", "Local writes published to the peers."},
    {"deltas_in", "Deltas received from the peers."},
    {"stale", "Deltas not newer than what the relay holds."},
    {"refused_skew", "Records refused: their clock too far ahead."},
    {"refused_lease", "Records or subscribes refused by the lease rule."},
    {"snapshots_served", "Snapshots streamed to peers."},
    {"snapshots_pulled", "Snapshots merged from peers."},
    {"gaps", "Deltas that arrived after a missed one."},
    {"malformed", "Cluster frames or records that did not decode."},
    {"apply_errors", "Replicated records the table could not take."},
    {"store_log_frames", "Records in the append log now."},
    {"store_snapshot_records", "Records in the on-disk snapshot."},
    {"store_last_compaction_ms", "Duration of the last compaction, ms."},
    {NULL, NULL}};

//  The gauges of the cluster section (its other values are counters).
static const char *const s_cluster_gauges[] = {"ready",
                                               "records",
                                               "members",
                                               "members_alive",
                                               "store_log_frames",
                                               "store_snapshot_records",
                                               "store_last_compaction_ms",
                                               NULL};

//  Whether key of a section of counters is a gauge all the same.
static bool s_is_gauge(const char *section, const char *key)
{
    if (strcmp(section, "cluster"))
        return false;
    for (const char *const *g = s_cluster_gauges; *g; g++)
        if (!strcmp(*g, key))
            return true;
    return false;
}

//  A section of the stats object and the type of its values.
typedef struct {
    const char *section;
    bool counter; //  counter (name gets _total) or gauge
    const s_help_t *help;
} s_section_t;

static const s_section_t s_sections[] = {
    {"ingest", true, s_ingest_help},
    {"control", true, s_control_help},
    {"table", false, s_table_help},
    {"cluster", true, s_cluster_help},
};

//  A per-target value.
typedef struct {
    const char *key;
    const char *name;
    const char *type;
    const char *help;
} s_target_metric_t;

static const s_target_metric_t s_target_metrics[] = {
    {"subscriptions", "evrelay_target_subscriptions", "gauge",
     "Subscriptions that use the target."},
    {"delivered", "evrelay_target_delivered_total", "counter",
     "Events the target delivered."},
    {"failed", "evrelay_target_failed_total", "counter",
     "Deliveries that failed."},
    {"dropped", "evrelay_target_dropped_total", "counter",
     "Events dropped for the target (queue full, retired)."},
    {"queued", "evrelay_target_queued", "gauge",
     "Events waiting in the target's queue (queue depth)."},
};

#define S_LATENCY "evrelay_delivery_latency_seconds"

//  Write a metric name: every character other than [A-Za-z0-9_] becomes
//  an underscore.
static void s_put_name(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_';
        fputc(ok ? c : '_', out);
    }
}

//  Write a label value, escaped: backslash, double quote and newline.
static void s_put_label_value(FILE *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

//  Write a JSON number as a sample value.
static void s_put_number(FILE *out, json_t *value)
{
    if (json_is_integer(value))
        fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    else
        fprintf(out, "%.17g", json_number_value(value));
}

//  Format microseconds as seconds, exactly and without trailing zeros.
static const char *s_seconds(char *text, size_t size, json_int_t us)
{
    bool negative = us < 0;
    unsigned long long abs_us =
        negative ? 0ULL - (unsigned long long)us : (unsigned long long)us;
    int n = snprintf(text, size, "%s%llu.%06llu", negative ? "-" : "",
                     abs_us / 1000000ULL, abs_us % 1000000ULL);
    if (n < 0 || (size_t)n >= size)
        n = (int)strlen(text);
    while (n > 0 && text[n - 1] == '0')
        text[--n] = 0;
    if (n > 0 && text[n - 1] == '.')
        text[--n] = 0;
    return text;
}

//  Write the # HELP and # TYPE lines of a family.
static void s_put_family(FILE *out, const char *name, const char *type,
                         const char *help)
{
    fprintf(out, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fprintf(out, "\n# TYPE %s %s\n", name, type);
}

//  The help text of key in a section's table, or NULL.
static const char *s_help_of(const s_help_t *table, const char *key)
{
    for (const s_help_t *h = table; h->key; h++)
        if (!strcmp(h->key, key))
            return h->help;
    return NULL;
}

//  Render one section: one family per numeric key.
static void s_put_section(FILE *out, const s_section_t *section, json_t *object)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        if (!json_is_number(value))
            continue;
        char *name = NULL;
        size_t len = 0;
        FILE *nf = open_memstream(&name, &len);
        if (!nf)
            return;
        bool counter = section->counter && !s_is_gauge(section->section, key);
        fputs("evrelay_", nf);
        s_put_name(nf, section->section);
        fputc('_', nf);
        s_put_name(nf, key);
        if (counter)
            fputs("_total", nf);
        fclose(nf);
        const char *help = s_help_of(section->help, key);
        char generic[256];
        if (!help) {
            snprintf(generic, sizeof generic, "evrelay %s value %s.",
                     section->section, key);
            help = generic;
        }
        s_put_family(out, name, counter ? "counter" : "gauge", help);
        fprintf(out, "%s ", name);
        s_put_number(out, value);
        fputc('\n', out);
        free(name);
    }
}

//  Write the labels of a target sample: target, transport, parent (for a
//  virtual target's child), and le (for a histogram bucket) when given.
static void s_put_labels(FILE *out, json_t *target, const char *parent,
                         const char *le)
{
    const char *socket = json_string_value(json_object_get(target, "socket"));
    const char *transport =
        json_string_value(json_object_get(target, "transport"));
    fputs("{target=\"", out);
    s_put_label_value(out, socket ? socket : "");
    fputs("\",transport=\"", out);
    s_put_label_value(out, transport ? transport : "");
    fputc('"', out);
    if (parent) {
        fputs(",parent=\"", out);
        s_put_label_value(out, parent);
        fputc('"', out);
    }
    if (le)
        fprintf(out, ",le=\"%s\"", le);
    fputc('}', out);
}

typedef void(s_target_fn)(FILE *out, json_t *target, const char *parent,
                          const void *arg);

//  Call fn for every target of the array and, after each virtual target,
//  for its children (parent = the virtual target's socket).
static void s_each_target(FILE *out, json_t *targets, const char *parent,
                          s_target_fn *fn, const void *arg)
{
    size_t i;
    json_t *target;
    json_array_foreach(targets, i, target)
    {
        if (!json_is_object(target) ||
            !json_is_string(json_object_get(target, "socket")))
            continue;
        fn(out, target, parent, arg);
        json_t *children = json_object_get(target, "children");
        if (json_is_array(children))
            s_each_target(out, children,
                          json_string_value(json_object_get(target, "socket")),
                          fn, arg);
    }
}

//  One sample of a per-target value (nothing when the target lacks it).
static void s_put_target_value(FILE *out, json_t *target, const char *parent,
                               const void *arg)
{
    const s_target_metric_t *metric = arg;
    json_t *value = json_object_get(target, metric->key);
    if (!json_is_number(value))
        return;
    fputs(metric->name, out);
    s_put_labels(out, target, parent, NULL);
    fputc(' ', out);
    s_put_number(out, value);
    fputc('\n', out);
}

//  The latency histogram of one target: cumulative buckets (the JSON has
//  a count per bucket, the last one unbounded), _sum in seconds, _count.
static void s_put_target_latency(FILE *out, json_t *target, const char *parent,
                                 const void *arg)
{
    json_t *hist = json_object_get(target, "latency_buckets_us");
    json_t *le = json_object_get(hist, "le");
    json_t *counts = json_object_get(hist, "counts");
    json_t *sum = json_object_get(hist, "sum");
    size_t n = json_array_size(le);
    if (!json_is_array(le) || !json_is_array(counts) ||
        json_array_size(counts) != n + 1 || !json_is_integer(sum))
        return;
    json_int_t total = 0;
    for (size_t b = 0; b <= n; b++) {
        json_t *bound = json_array_get(le, b);
        json_t *count = json_array_get(counts, b);
        if ((b < n && !json_is_integer(bound)) || !json_is_integer(count))
            return;
    }
    for (size_t b = 0; b <= n; b++) {
        total += json_integer_value(json_array_get(counts, b));
        char text[64] = "+Inf";
        if (b < n)
            s_seconds(text, sizeof text,
                      json_integer_value(json_array_get(le, b)));
        fputs(S_LATENCY "_bucket", out);
        s_put_labels(out, target, parent, text);
        fprintf(out, " %" JSON_INTEGER_FORMAT "\n", total);
    }
    fputs(S_LATENCY "_sum", out);
    s_put_labels(out, target, parent, NULL);
    char seconds[64];
    fprintf(out, " %s\n",
            s_seconds(seconds, sizeof seconds, json_integer_value(sum)));
    fputs(S_LATENCY "_count", out);
    s_put_labels(out, target, parent, NULL);
    fprintf(out, " %" JSON_INTEGER_FORMAT "\n", total);
}

//  A per-peer value of the cluster; scale: multiply by it (ms -> s).
typedef struct {
    const char *key;
    const char *name;
    const char *type;
    const char *help;
    double scale;
} s_peer_metric_t;

static const s_peer_metric_t s_peer_metrics[] = {
    {"alive", "evrelay_cluster_peer_alive", "gauge",
     "1 while the peer's heartbeats arrive (alive), else 0.", 0},
    {"deltas_in", "evrelay_cluster_peer_deltas_in_total", "counter",
     "Deltas received from the peer.", 0},
    {"snapshots_pulled", "evrelay_cluster_peer_snapshots_pulled_total",
     "counter", "Snapshots merged from the peer.", 0},
    {"gaps", "evrelay_cluster_peer_gaps_total", "counter",
     "Deltas of the peer that arrived after a missed one.", 0},
    {"last_heartbeat_ms", "evrelay_cluster_peer_last_heartbeat_seconds",
     "gauge", "Seconds since the peer's last heartbeat (absent: never).",
     0.001},
};

//  One family of per-peer samples, labelled peer="node" (a negative
//  value means "never": no sample).
static void s_put_peer_metric(FILE *out, json_t *peers,
                              const s_peer_metric_t *metric)
{
    s_put_family(out, metric->name, metric->type, metric->help);
    size_t i;
    json_t *peer;
    json_array_foreach(peers, i, peer)
    {
        const char *node = json_string_value(json_object_get(peer, "node"));
        json_t *value = json_object_get(peer, metric->key);
        if (!node || !json_is_number(value) ||
            (metric->scale && json_number_value(value) < 0))
            continue;
        fputs(metric->name, out);
        fputs("{peer=\"", out);
        s_put_label_value(out, node);
        fputs("\"} ", out);
        if (metric->scale)
            fprintf(out, "%.3f", json_number_value(value) * metric->scale);
        else
            s_put_number(out, value);
        fputc('\n', out);
    }
}

//  One labelled counter family from an object of counters: name{label=
//  "PREFIX KEY"} N for each numeric key.
static void s_put_labelled(FILE *out, json_t *object, const char *name,
                           const char *help, const char *label,
                           const char *prefix)
{
    if (!json_is_object(object))
        return;
    s_put_family(out, name, "counter", help);
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        if (!json_is_number(value))
            continue;
        fprintf(out, "%s{%s=\"%s", name, label, prefix);
        s_put_label_value(out, key);
        fputs("\"} ", out);
        s_put_number(out, value);
        fputc('\n', out);
    }
}

//  The policy section: refusals by action and by allowlist rule, and the
//  HTTP face's 401 answers.
static void s_put_policy(FILE *out, json_t *policy)
{
    s_put_labelled(out, json_object_get(policy, "policy_denied"),
                   "evrelay_policy_denied_total",
                   "Control requests refused by [policy], by action.", "action",
                   "");
    s_put_labelled(out, json_object_get(policy, "allowlist_denied"),
                   "evrelay_allowlist_denied_total",
                   "Subscriptions refused by the destination allowlist, by "
                   "rule.",
                   "rule", "allow.");
    json_t *unauthorized = json_object_get(policy, "http_unauthorized");
    if (json_is_number(unauthorized)) {
        s_put_family(out, "evrelay_http_unauthorized_total", "counter",
                     "HTTP requests answered 401: credentials missing or "
                     "wrong.");
        fputs("evrelay_http_unauthorized_total ", out);
        s_put_number(out, unauthorized);
        fputc('\n', out);
    }
}

//  Render the stats JSON as Prometheus text.
char *evr_metrics_render(const char *stats_json, size_t len, size_t *out_len)
{
    json_t *stats = json_loadb(stats_json, len, 0, NULL);
    if (!json_is_object(stats)) {
        json_decref(stats);
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out) {
        json_decref(stats);
        return NULL;
    }
    json_t *uptime = json_object_get(stats, "uptime_s");
    if (json_is_number(uptime)) {
        s_put_family(out, "evrelay_uptime_seconds", "gauge",
                     "Seconds since the relay started.");
        fputs("evrelay_uptime_seconds ", out);
        s_put_number(out, uptime);
        fputc('\n', out);
    }
    for (size_t s = 0; s < sizeof s_sections / sizeof *s_sections; s++) {
        json_t *object = json_object_get(stats, s_sections[s].section);
        if (json_is_object(object))
            s_put_section(out, &s_sections[s], object);
    }
    json_t *policy = json_object_get(stats, "policy");
    if (json_is_object(policy))
        s_put_policy(out, policy);
    json_t *targets = json_object_get(stats, "targets");
    if (json_is_array(targets)) {
        for (size_t m = 0;
             m < sizeof s_target_metrics / sizeof *s_target_metrics; m++) {
            const s_target_metric_t *metric = &s_target_metrics[m];
            s_put_family(out, metric->name, metric->type, metric->help);
            s_each_target(out, targets, NULL, s_put_target_value, metric);
        }
        s_put_family(out, S_LATENCY, "histogram",
                     "Time from the producer's raise to delivery.");
        s_each_target(out, targets, NULL, s_put_target_latency, NULL);
    }
    json_t *peers = json_object_get(json_object_get(stats, "cluster"), "peers");
    if (json_is_array(peers))
        for (size_t m = 0; m < sizeof s_peer_metrics / sizeof *s_peer_metrics;
             m++)
            s_put_peer_metric(out, peers, &s_peer_metrics[m]);
    fclose(out);
    json_decref(stats);
    if (out_len)
        *out_len = size;
    return text;
}
