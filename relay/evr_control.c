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
#include "evrelay.pb-c.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef json_t *(s_method_fn)(evr_relay_t *relay, json_t *params,
                              evr_mi_error_t *error);

//  Fill an error and return NULL.
static json_t *s_error(evr_mi_error_t *error, int code, const char *message,
                       const char *data)
{
    error->code = code;
    error->message = message;
    snprintf(error->data, sizeof error->data, "%s", data ? data : "");
    return NULL;
}

//  -32602 "Invalid params" with a reason.
static json_t *s_invalid(evr_mi_error_t *error, const char *data)
{
    return s_error(error, -32602, "Invalid params", data);
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
    s_error(error, 403, "Forbidden", denial.message);
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
        return s_error(error, 400, "Bad parameter value", why);
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
        return s_error(error, 400, "Bad parameter value", why);
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
        return s_error(error, 404, "Event not published", name);
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
        return s_error(error, 404, "Subscriber does not exist",
                       json_string_value(socket));
    }
    evr_sockspec_destroy(&spec);
    return json_pack("{s:{s:s,s:i,s:o}}", "Event", "name", name, "id", id,
                     "Subscriber", s_sub_json(&info));
}

//  --- raise ----------------------------------------------------------------

//  Storage for params built from JSON.
typedef struct {
    evr_param_t params[EVR_DEFAULT_MAX_PARAMS];
    char *owned[EVR_DEFAULT_MAX_PARAMS];
    size_t n;
} s_params_t;

//  A JSON number as OpenSIPS' MI takes it: truncated, clamped to int32.
static int64_t s_mi_int(json_t *value)
{
    double d = json_number_value(value);
    if (json_is_integer(value)) {
        json_int_t i = json_integer_value(value);
        return i > INT_MAX ? INT_MAX : i < INT_MIN ? INT_MIN : i;
    }
    if (isnan(d))
        return 0;
    return d >= (double)INT_MAX   ? INT_MAX
           : d <= (double)INT_MIN ? INT_MIN
                                  : (int64_t)d;
}

//  Add one param; owned text (malloc'd) is freed with the params.
static int s_add_param(s_params_t *p, const char *name, evr_param_type_t type,
                       int64_t i, char *owned, const char *s)
{
    if (p->n == EVR_DEFAULT_MAX_PARAMS) {
        free(owned);
        return -1;
    }
    evr_param_t *out = &p->params[p->n];
    out->name = name;
    out->name_len = name ? strlen(name) : 0;
    out->type = type;
    out->i = i;
    out->s = owned ? owned : s;
    out->s_len = out->s ? strlen(out->s) : 0;
    p->owned[p->n++] = owned;
    return 0;
}

//  Build params from a JSON object (named) or array (positional).
static int s_build_params(json_t *value, s_params_t *p, const char **why)
{
    if (json_is_object(value)) {
        const char *key;
        json_t *v;
        json_object_foreach(value, key, v)
        {
            int rc;
            if (json_is_number(v))
                rc =
                    s_add_param(p, key, EVR_PARAM_INT, s_mi_int(v), NULL, NULL);
            else if (json_is_string(v))
                rc = s_add_param(p, key, EVR_PARAM_STR, 0, NULL,
                                 json_string_value(v));
            else
                rc = s_add_param(p, key, EVR_PARAM_STR, 0,
                                 json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY),
                                 NULL);
            if (rc) {
                *why = "too many params";
                return -1;
            }
        }
        return 0;
    }
    size_t i;
    json_t *v;
    json_array_foreach(value, i, v)
    {
        char text[32];
        if (json_is_string(v)) {
            if (s_add_param(p, NULL, EVR_PARAM_STR, 0, NULL,
                            json_string_value(v)))
                return *why = "too many params", -1;
        } else if (json_is_number(v)) {
            snprintf(text, sizeof text, "%lld", (long long)s_mi_int(v));
            if (s_add_param(p, NULL, EVR_PARAM_STR, 0, strdup(text), NULL))
                return *why = "too many params", -1;
        } else {
            *why = "positional params must be strings or numbers";
            return -1;
        }
    }
    return 0;
}

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
        return s_error(error, 404, "Event not registered", name);
    json_t *parsed = NULL;
    if (json_is_string(values)) {
        //  OpenSIPS 3.6 form: a string holding a JSON object
        parsed = json_loads(json_string_value(values), JSON_DECODE_ANY, NULL);
        if (!json_is_object(parsed) && !json_is_array(parsed)) {
            json_decref(parsed);
            return s_error(error, 400, "Bad Params",
                           "params string is not a JSON object");
        }
        values = parsed;
    } else if (values && !json_is_null(values) && !json_is_object(values) &&
               !json_is_array(values)) {
        return s_error(error, 400, "Bad Params",
                       "params must be a JSON object or array");
    }
    s_params_t p = {.n = 0};
    const char *why = NULL;
    json_t *result = NULL;
    if (values && !json_is_null(values) && s_build_params(values, &p, &why))
        s_error(error, 400, "Bad Params", why);
    else {
        evr_event_view_t view = {name, strlen(name), p.params, p.n};
        size_t queued = 0;
        if (evr_relay_raise(relay, &view, &queued) == 0)
            s_error(error, 480, "Temporarily Unavailable",
                    "no subscribers for this event");
        else if (queued == 0)
            s_error(error, 400, "Bad Params",
                    "nothing queued: the event is too large for its "
                    "subscribers, or their queues are full");
        else
            result = json_string("OK");
    }
    for (size_t i = 0; i < p.n; i++)
        free(p.owned[i]);
    json_decref(parsed);
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
        return s_error(error, 400, "Cluster not enabled",
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
        return s_error(error, 400, "File not found", json_string_value(path));
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
    s_error(error, 403, "Forbidden", denial.message);
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
    return s_error(error, -32601, "Method not found", method);
}

//  Encode a ControlReply.
static void s_encode_reply(uint64_t id, const char *result,
                           const evr_mi_error_t *error, void **reply,
                           size_t *reply_len)
{
    Evrelay__ControlReply msg = EVRELAY__CONTROL_REPLY__INIT;
    Evrelay__ControlReply__Error err = EVRELAY__CONTROL_REPLY__ERROR__INIT;
    char *data_json = NULL;
    msg.version = EVR_PROTOCOL_VERSION;
    msg.id = id;
    if (result)
        msg.result_json = (char *)result;
    else {
        err.code = error->code;
        err.message = (char *)error->message;
        if (error->data[0]) {
            json_t *data = json_string(error->data);
            data_json = data ? json_dumps(data, JSON_ENCODE_ANY) : NULL;
            json_decref(data);
            err.data_json = data_json;
        }
        msg.error = &err;
    }
    *reply_len = evrelay__control_reply__get_packed_size(&msg);
    *reply = malloc(*reply_len);
    if (*reply)
        evrelay__control_reply__pack(&msg, *reply);
    free(data_json);
}

//  Answer one ControlRequest frame.
void evr_control_frame(evr_relay_t *relay, const char *who, const void *frame,
                       size_t len, size_t max_len, evr_control_stats_t *stats,
                       void **reply, size_t *reply_len)
{
    evr_mi_error_t error = {0};
    stats->requests++;
    if (len > max_len) {
        stats->too_large++;
        stats->errors++;
        char why[128];
        snprintf(why, sizeof why,
                 "request too large: %zu bytes, the limit is %zu ([limits] "
                 "max_control_bytes)",
                 len, max_len);
        s_error(&error, -32600, "Invalid request", why);
        s_encode_reply(0, NULL, &error, reply, reply_len);
        return;
    }
    Evrelay__ControlRequest *req =
        evrelay__control_request__unpack(NULL, len, frame);
    if (!req || req->version != EVR_PROTOCOL_VERSION) {
        stats->malformed++;
        stats->errors++;
        s_error(&error, -32600, "Invalid request",
                req ? "unsupported protocol version" : "undecodable request");
        s_encode_reply(req ? req->id : 0, NULL, &error, reply, reply_len);
        if (req)
            evrelay__control_request__free_unpacked(req, NULL);
        return;
    }
    json_t *params = NULL;
    char *text = NULL;
    if (req->params_json && *req->params_json) {
        json_error_t jerr;
        //  Duplicate keys are refused rather than silently collapsed; an
        //  integer beyond 64 bits is read as a real, then clamped to 32
        //  bits as OpenSIPS' MI does.
        int flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
        params = json_loads(req->params_json, flags, &jerr);
        if (!params && strstr(jerr.text, "too big"))
            params = json_loads(req->params_json,
                                flags | JSON_DECODE_INT_AS_REAL, &jerr);
        if (!params)
            s_error(&error, -32700, "Parse error", jerr.text);
    }
    json_t *result = NULL;
    if (!error.code)
        result = evr_control_call(relay, who, req->method, params, &error);
    if (result)
        text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    else
        stats->errors++;
    s_encode_reply(req->id, text, &error, reply, reply_len);
    free(text);
    json_decref(result);
    json_decref(params);
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
    s_error(&error, 403, "Forbidden", why);
    s_encode_reply(req ? req->id : 0, NULL, &error, reply, reply_len);
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
}
