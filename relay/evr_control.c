/*  evr_control.c - the MI commands, one implementation for every face.

    Method names: evrelay's own (subscribe, list, subscribers, raise, stats,
    health, cluster, flatstore-rotate), OpenSIPS 3.x (event_subscribe, events_list,
    subscribers_list, raise_event, evi_flat_rotate) and 4.x (evi:subscribe,
    evi:list, evi:subscribers, evi:raise, event_flatstore:rotate).
    Results and errors follow OpenSIPS' MI shapes (docs/PROTOCOL.md).
    Before a method runs, the access policy must grant its action to the
    caller; a subscribe's socket must also pass the destination allowlist
    (docs/SECURITY.md). Subscriptions a peer replicates never come through
    here: they were checked on the relay that took them.
*/
#include "evr_control.h"
#include "evr_cluster.h"
#include "evr_defaults.h"
#include "evr_policy.h"
#include "evr_sockspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef json_t *(s_method_fn)(evr_relay_t *relay, json_t *params,
                              evr_mi_error_t *error);

//  -32602 "Invalid params" with a reason.
static json_t *s_invalid(evr_mi_error_t *error, const char *data)
{
    return evr_mi_error(error, -32602, "Invalid params", data);
}

//  Fetch parameter `index` (positional) or `name` (named); NULL if absent.
static json_t *s_param(json_t *params, size_t index, const char *name)
{
    if (json_is_array(params))
        return json_array_get(params, index);
    if (json_is_object(params))
        return json_object_get(params, name);
    return NULL;
}

//  Check the params: at most `max` of them, and named ones among `names`.
static int s_check_params(json_t *params, size_t max, const char *const *names,
                          evr_mi_error_t *error)
{
    if (!params || json_is_null(params))
        return 0;
    if (json_is_array(params)) {
        if (json_array_size(params) <= max)
            return 0;
        s_invalid(error, "Too few or too many parameters");
        return -1;
    }
    if (!json_is_object(params)) {
        s_invalid(error, "params must be an array or an object");
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(params, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < max; i++)
            known |= !strcmp(key, names[i]);
        if (!known) {
            s_invalid(error, "Named parameters do not match");
            return -1;
        }
    }
    return 0;
}

//  One subscriber object, as OpenSIPS lists it.
static json_t *s_sub_json(const evr_sub_info_t *info)
{
    json_t *sub = json_object();
    json_object_set_new(sub, "socket", json_string(info->socket));
    if (info->expire_s == EVR_EXPIRE_NEVER) {
        json_object_set_new(sub, "expire", json_string("never"));
        return sub;
    }
    json_object_set_new(sub, "expire", json_integer(info->expire_s));
    if (info->ttl_s > 0)
        json_object_set_new(sub, "ttl", json_integer(info->ttl_s));
    else
        json_object_set_new(sub, "ttl", json_string("expired"));
    return sub;
}

//  --- subscribe ------------------------------------------------------------

//  Check a subscription's socket against the destination allowlist.
//  Returns 0, or -1 with 403 naming the rule (counted). A socket that does
//  not parse is left to the subscribe, which answers 400.
static int s_check_destination(evr_relay_t *relay, const char *socket,
                               evr_mi_error_t *error)
{
    const evr_policy_rules_t *policy = evr_relay_policy(relay);
    if (!evr_policy_has_allowlist(policy))
        return 0;
    char why[256];
    evr_sockspec_t *spec = evr_sockspec_parse(socket, why, sizeof why);
    if (!spec)
        return 0;
    evr_denial_t denial;
    int rc = evr_policy_check_socket(policy, spec, &denial);
    evr_sockspec_destroy(&spec);
    if (rc == 0)
        return 0;
    evr_relay_policy_stats(relay)->allowlist_denied[denial.allow_rule]++;
    evr_mi_error(error, 403, "Forbidden", denial.message);
    return -1;
}

//  subscribe EVENT SOCKET [EXPIRE]
static json_t *s_subscribe(evr_relay_t *relay, json_t *params,
                           evr_mi_error_t *error)
{
    static const char *const names[] = {"event", "socket", "expire"};
    if (s_check_params(params, 3, names, error))
        return NULL;
    json_t *event = s_param(params, 0, "event");
    json_t *socket = s_param(params, 1, "socket");
    json_t *expire = s_param(params, 2, "expire");
    if (!json_is_string(event) || !json_is_string(socket))
        return s_invalid(error, "event and socket are required strings");
    int64_t expire_s = EVR_DEFAULT_EXPIRE_S;
    if (expire && !json_is_null(expire)) {
        if (json_is_integer(expire))
            expire_s = json_integer_value(expire);
        else if (json_is_string(expire)) {
            char *end;
            const char *text = json_string_value(expire);
            long long v = strtoll(text, &end, 10);
            if (!*text || *end)
                return s_invalid(error, "expire must be an integer");
            expire_s = v;
        } else
            return s_invalid(error, "expire must be an integer");
        if (expire_s < 0)
            return s_invalid(error, "Negative expire value");
    }
    //  an unsubscribe may always remove what is there
    if (expire_s != 0 &&
        s_check_destination(relay, json_string_value(socket), error))
        return NULL;
    char why[512];
    //  the [limits] caps apply here, to local subscribes only
    if (evr_relay_check_subscribe(relay, json_string_value(event),
                                  json_string_value(socket), expire_s, why,
                                  sizeof why))
        return evr_mi_error(error, 400, "Bad parameter value", why);
    //  clustered or persistent: a replicated write, on disk before the
    //  answer, published to the peers after it
    evr_cluster_t *cluster = evr_relay_cluster(relay);
    int rc = cluster ? evr_cluster_write(cluster, json_string_value(event),
                                         json_string_value(socket), expire_s,
                                         why, sizeof why)
                     : evr_relay_subscribe(relay, json_string_value(event),
                                           json_string_value(socket), expire_s,
                                           why, sizeof why);
    if (rc)
        return evr_mi_error(error, 400, "Bad parameter value", why);
    return json_string("OK");
}

//  --- list -----------------------------------------------------------------

//  Append one event to an "Events" array.
static void s_on_event(const char *name, int id, void *arg)
{
    json_t *ev = json_object();
    json_object_set_new(ev, "name", json_string(name));
    json_object_set_new(ev, "id", json_integer(id));
    json_array_append_new(arg, ev);
}

//  list: every event seen, subscribed, or in the catalogue.
static json_t *s_list(evr_relay_t *relay, json_t *params, evr_mi_error_t *error)
{
    if (s_check_params(params, 0, NULL, error))
        return NULL;
    json_t *events = json_array();
    evr_table_events(evr_relay_table(relay), s_on_event, events);
    return json_pack("{s:o}", "Events", events);
}

//  --- subscribers ----------------------------------------------------------

//  Append a subscriber to a "Subscribers" array.
static void s_on_sub(const evr_sub_info_t *info, void *arg)
{
    json_array_append_new(arg, s_sub_json(info));
}

typedef struct {
    evr_table_t *table;
    json_t *events;
    const char **names; //  collected first: lookups must not nest
    size_t n, cap;
} s_all_t;

//  Collect event names.
static void s_collect(const char *name, int id, void *arg)
{
    s_all_t *all = arg;
    if (all->n == all->cap) {
        size_t cap = all->cap ? all->cap * 2 : 64;
        const char **grown = realloc(all->names, cap * sizeof *grown);
        if (!grown)
            return;
        all->names = grown;
        all->cap = cap;
    }
    all->names[all->n++] = name;
}

//  The "Subscribers" array of one event (purging expired entries).
static json_t *s_subscribers_of(evr_table_t *table, const char *event)
{
    json_t *subs = json_array();
    evr_table_lookup(table, event, evr_relay_now_ms(), s_on_sub, subs);
    return subs;
}

//  subscribers [EVENT [SOCKET]]
static json_t *s_subscribers(evr_relay_t *relay, json_t *params,
                             evr_mi_error_t *error)
{
    static const char *const names[] = {"event", "socket"};
    if (s_check_params(params, 2, names, error))
        return NULL;
    evr_table_t *table = evr_relay_table(relay);
    json_t *event = s_param(params, 0, "event");
    json_t *socket = s_param(params, 1, "socket");
    if (socket && !event)
        return s_invalid(error, "Named parameters do not match");
    if (!event) {
        s_all_t all = {.table = table};
        evr_table_events(table, s_collect, &all);
        json_t *events = json_array();
        for (size_t i = 0; i < all.n; i++) {
            json_t *subs = s_subscribers_of(table, all.names[i]);
            if (json_array_size(subs) == 0) {
                json_decref(subs);
                continue;
            }
            json_array_append_new(
                events, json_pack("{s:s,s:i,s:o}", "name", all.names[i], "id",
                                  evr_table_event_id(table, all.names[i]),
                                  "Subscribers", subs));
        }
        free(all.names);
        return json_pack("{s:o}", "Events", events);
    }
    if (!json_is_string(event) || (socket && !json_is_string(socket)))
        return s_invalid(error, "event and socket must be strings");
    const char *name = json_string_value(event);
    int id = evr_table_event_id(table, name);
    if (id < 0)
        return evr_mi_error(error, 404, "Event not published", name);
    if (!socket) {
        json_t *subs = s_subscribers_of(table, name);
        if (json_array_size(subs) == 0) {
            json_decref(subs);
            return json_pack("{s:{}}", "Event");
        }
        return json_pack("{s:{s:s,s:i,s:o}}", "Event", "name", name, "id", id,
                         "Subscribers", subs);
    }
    char why[512];
    evr_sockspec_t *spec =
        evr_sockspec_parse(json_string_value(socket), why, sizeof why);
    evr_sub_info_t info;
    if (!spec || evr_table_find(table, name, evr_sockspec_match_key(spec),
                                evr_relay_now_ms(), &info)) {
        evr_sockspec_destroy(&spec);
        return evr_mi_error(error, 404, "Subscriber does not exist",
                            json_string_value(socket));
    }
    evr_sockspec_destroy(&spec);
    return json_pack("{s:{s:s,s:i,s:o}}", "Event", "name", name, "id", id,
                     "Subscriber", s_sub_json(&info));
}

//  --- raise ----------------------------------------------------------------

//  raise EVENT [PARAMS]
static json_t *s_raise(evr_relay_t *relay, json_t *params,
                       evr_mi_error_t *error)
{
    static const char *const names[] = {"event", "params"};
    if (s_check_params(params, 2, names, error))
        return NULL;
    json_t *event = s_param(params, 0, "event");
    json_t *values = s_param(params, 1, "params");
    if (!json_is_string(event))
        return s_invalid(error, "event is a required string");
    const char *name = json_string_value(event);
    evr_table_t *table = evr_relay_table(relay);
    if (evr_table_event_id(table, name) < 0)
        return evr_mi_error(error, 404, "Event not registered", name);
    evr_mi_params_t p = {.n = 0};
    json_t *result = NULL;
    if (evr_mi_raise_params(values, &p, error) == 0) {
        evr_event_view_t view = {name, strlen(name), p.params, p.n};
        size_t queued = 0;
        if (evr_relay_raise(relay, &view, &queued) == 0)
            evr_mi_error(error, 480, "Temporarily Unavailable",
                         "no subscribers for this event");
        else if (queued == 0)
            evr_mi_error(error, 400, "Bad Params",
                         "nothing queued: the event is too large for its "
                         "subscribers, or their queues are full");
        else
            result = json_string("OK");
    }
    evr_mi_params_free(&p);
    return result;
}

//  --- stats, rotate --------------------------------------------------------

//  stats
static json_t *s_stats(evr_relay_t *relay, json_t *params,
                       evr_mi_error_t *error)
{
    if (s_check_params(params, 0, NULL, error))
        return NULL;
    return evr_relay_stats(relay);
}

//  health: live (the core answers) and ready (evr_relay_ready).
static json_t *s_health(evr_relay_t *relay, json_t *params,
                        evr_mi_error_t *error)
{
    if (s_check_params(params, 0, NULL, error))
        return NULL;
    bool ready = evr_relay_ready(relay);
    return json_pack("{s:s,s:b,s:b}", "status", ready ? "ok" : "starting",
                     "live", 1, "ready", ready);
}

//  cluster: members, versions and counters of the relay cluster.
static json_t *s_cluster(evr_relay_t *relay, json_t *params,
                         evr_mi_error_t *error)
{
    if (s_check_params(params, 0, NULL, error))
        return NULL;
    evr_cluster_t *cluster = evr_relay_cluster(relay);
    if (!cluster)
        return evr_mi_error(error, 400, "Cluster not enabled",
                            "start evrelayd with --cluster or --data-dir");
    return evr_cluster_status(cluster);
}

//  flatstore-rotate PATH
static json_t *s_rotate(evr_relay_t *relay, json_t *params,
                        evr_mi_error_t *error)
{
    static const char *const names[] = {"path_to_file"};
    if (s_check_params(params, 1, names, error))
        return NULL;
    json_t *path = s_param(params, 0, "path_to_file");
    if (!json_is_string(path))
        return s_invalid(error, "path_to_file is a required string");
    if (evr_relay_rotate(relay, json_string_value(path)) == 0)
        return evr_mi_error(error, 400, "File not found",
                            json_string_value(path));
    return json_string("OK");
}

static const struct {
    const char *name;
    s_method_fn *fn;
} s_methods[] = {
    {"subscribe", s_subscribe},
    {"event_subscribe", s_subscribe},
    {"evi:subscribe", s_subscribe},
    {"list", s_list},
    {"events_list", s_list},
    {"evi:list", s_list},
    {"subscribers", s_subscribers},
    {"subscribers_list", s_subscribers},
    {"evi:subscribers", s_subscribers},
    {"raise", s_raise},
    {"raise_event", s_raise},
    {"evi:raise", s_raise},
    {"stats", s_stats},
    {"health", s_health},
    {"cluster", s_cluster},
    {"flatstore-rotate", s_rotate},
    {"evi_flat_rotate", s_rotate},
    {"event_flatstore:rotate", s_rotate},
};

//  May who run method with params? Returns 0, or -1 with 403 naming the
//  [policy] rule (counted by action).
static int s_permit(evr_relay_t *relay, const char *who, const char *method,
                    json_t *params, evr_mi_error_t *error)
{
    evr_action_t action = evr_policy_request_action(method, params);
    evr_denial_t denial;
    if (evr_policy_permit(evr_relay_policy(relay), who, action, &denial) == 0)
        return 0;
    if (action > EVR_ACTION_NONE && action < EVR_ACTION_COUNT)
        evr_relay_policy_stats(relay)->policy_denied[action]++;
    evr_mi_error(error, 403, "Forbidden", denial.message);
    return -1;
}

//  Run one command.
json_t *evr_control_call(evr_relay_t *relay, const char *who,
                         const char *method, json_t *params,
                         evr_mi_error_t *error)
{
    for (size_t i = 0; i < sizeof s_methods / sizeof *s_methods; i++)
        if (!strcmp(method, s_methods[i].name)) {
            if (s_permit(relay, who ? who : EVR_POLICY_LOCAL, method, params,
                         error))
                return NULL;
            return s_methods[i].fn(relay, params, error);
        }
    return evr_mi_error(error, -32601, "Method not found", method);
}

//  Answer one ControlRequest frame.
void evr_control_frame(evr_relay_t *relay, const char *who, const void *frame,
                       size_t len, size_t max_len, evr_control_stats_t *stats,
                       void **reply, size_t *reply_len)
{
    evr_mi_error_t error = {0};
    stats->requests++;
    Evrelay__ControlRequest *req;
    json_t *params;
    evr_mi_rc_t rc =
        evr_mi_request_decode(frame, len, max_len, &req, &params, &error);
    if (rc == EVR_MI_TOO_LARGE)
        stats->too_large++;
    else if (rc == EVR_MI_MALFORMED)
        stats->malformed++;
    json_t *result = NULL;
    if (rc == EVR_MI_OK)
        result = evr_control_call(relay, who, req->method, params, &error);
    char *text = NULL;
    if (result)
        text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    else
        stats->errors++;
    *reply = evr_mi_reply_encode(req ? req->id : 0, text, &error, reply_len);
    free(text);
    json_decref(result);
    json_decref(params);
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
}

//  Answer a request from a client that may no longer send any (its
//  certificate was revoked since it connected): 403, nothing is run.
void evr_control_refuse(const void *frame, size_t len, const char *why,
                        evr_control_stats_t *stats, void **reply,
                        size_t *reply_len)
{
    evr_mi_error_t error = {0};
    stats->requests++;
    stats->errors++;
    Evrelay__ControlRequest *req =
        evrelay__control_request__unpack(NULL, len, frame);
    evr_mi_error(&error, 403, "Forbidden", why);
    *reply = evr_mi_reply_encode(req ? req->id : 0, NULL, &error, reply_len);
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
}
