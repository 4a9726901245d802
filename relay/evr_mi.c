/*  evr_mi.c - MI requests as they arrive, and the answers' envelopes.
*/
#include "evr_mi.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Fill an error and return NULL.
json_t *evr_mi_error(evr_mi_error_t *error, int code, const char *message,
                     const char *data)
{
    error->code = code;
    error->message = message;
    snprintf(error->data, sizeof error->data, "%s", data ? data : "");
    return NULL;
}

//  Parse request JSON: duplicate keys refused; an integer too big for 64
//  bits read again as a real.
json_t *evr_mi_json_parse(const char *text, size_t len, json_error_t *jerr)
{
    json_error_t local;
    if (!jerr)
        jerr = &local;
    int flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
    json_t *value = json_loadb(text, len, flags, jerr);
    if (!value && strstr(jerr->text, "too big"))
        value = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, jerr);
    return value;
}

//  --- the control socket -----------------------------------------------------

//  Decode a ControlRequest frame and parse its params.
evr_mi_rc_t evr_mi_request_decode(const void *frame, size_t len, size_t max_len,
                                  Evrelay__ControlRequest **req,
                                  json_t **params, evr_mi_error_t *error)
{
    *req = NULL;
    *params = NULL;
    if (len > max_len) {
        char why[128];
        snprintf(why, sizeof why,
                 "request too large: %zu bytes, the limit is %zu ([limits] "
                 "max_control_bytes)",
                 len, max_len);
        evr_mi_error(error, -32600, "Invalid request", why);
        return EVR_MI_TOO_LARGE;
    }
    *req = evrelay__control_request__unpack(NULL, len, frame);
    if (!*req || (*req)->version != EVR_PROTOCOL_VERSION) {
        evr_mi_error(error, -32600, "Invalid request",
                     *req ? "unsupported protocol version"
                          : "undecodable request");
        return EVR_MI_MALFORMED;
    }
    const char *text = (*req)->params_json;
    if (text && *text) {
        json_error_t jerr;
        *params = evr_mi_json_parse(text, strlen(text), &jerr);
        if (!*params) {
            evr_mi_error(error, -32700, "Parse error", jerr.text);
            return EVR_MI_BAD_JSON;
        }
    }
    return EVR_MI_OK;
}

//  Encode a ControlReply.
void *evr_mi_reply_encode(uint64_t id, const char *result_json,
                          const evr_mi_error_t *error, size_t *len)
{
    Evrelay__ControlReply msg = EVRELAY__CONTROL_REPLY__INIT;
    Evrelay__ControlReply__Error err = EVRELAY__CONTROL_REPLY__ERROR__INIT;
    char *data_json = NULL;
    msg.version = EVR_PROTOCOL_VERSION;
    msg.id = id;
    if (result_json)
        msg.result_json = (char *)result_json;
    else {
        err.code = error->code;
        err.message = (char *)(error->message ? error->message : "");
        if (error->data[0]) {
            json_t *data = json_string(error->data);
            data_json = data ? json_dumps(data, JSON_ENCODE_ANY) : NULL;
            json_decref(data);
            err.data_json = data_json;
        }
        msg.error = &err;
    }
    *len = evrelay__control_reply__get_packed_size(&msg);
    void *frame = malloc(*len ? *len : 1);
    if (frame)
        evrelay__control_reply__pack(&msg, frame);
    free(data_json);
    return frame;
}

//  --- the HTTP face ------------------------------------------------------------

//  Refuse a call: code and message; returns -1.
static int s_refuse(evr_mi_call_t *call, int code, const char *message)
{
    call->code = code;
    call->message = message;
    return -1;
}

//  Read a POST /mi body as a JSON-RPC 2.0 request.
int evr_mi_jsonrpc_parse(const char *body, size_t len, evr_mi_call_t *call)
{
    *call = (evr_mi_call_t){0};
    json_t *request = evr_mi_json_parse(body, len, NULL);
    if (!request)
        return s_refuse(call, -32700, "Parse error");
    int rc = -1;
    json_t *id = json_object_get(request, "id");
    if (!json_is_object(request) ||
        (id && !json_is_null(id) && !json_is_number(id) && !json_is_string(id)))
        s_refuse(call, -32600, "Invalid Request");
    else {
        call->notification = !id;
        call->id_json = id ? json_dumps(id, JSON_ENCODE_ANY) : NULL;
        json_t *version = json_object_get(request, "jsonrpc");
        json_t *method = json_object_get(request, "method");
        json_t *params = json_object_get(request, "params");
        if (!json_is_string(version) ||
            strcmp(json_string_value(version), "2.0") ||
            !json_is_string(method) ||
            (params && !json_is_array(params) && !json_is_object(params)))
            s_refuse(call, -32600, "Invalid Request");
        else {
            call->method = strdup(json_string_value(method));
            call->params_json =
                params ? json_dumps(params, JSON_COMPACT | JSON_ENCODE_ANY)
                       : NULL;
            if (!call->method || (id && !call->id_json) ||
                (params && !call->params_json)) {
                free(call->method);
                free(call->params_json);
                call->method = call->params_json = NULL;
                s_refuse(call, -32603, "Internal error");
            } else
                rc = 0;
        }
    }
    json_decref(request);
    return rc;
}

//  Free what a call holds.
void evr_mi_call_free(evr_mi_call_t *call)
{
    free(call->method);
    free(call->params_json);
    free(call->id_json);
    *call = (evr_mi_call_t){0};
}

//  printf into a new string (NULL when out of memory).
static char *s_format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text) {
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return text;
}

//  A JSON-RPC success answer.
char *evr_mi_jsonrpc_result(const char *result_json, const char *id_json)
{
    return s_format("{\"jsonrpc\":\"2.0\",\"result\":%s,\"id\":%s}",
                    result_json, id_json ? id_json : "null");
}

//  A JSON-RPC error answer.
char *evr_mi_jsonrpc_error(int code, const char *message, const char *data_json,
                           const char *id_json)
{
    json_t *text = json_string(message ? message : "");
    char *quoted = text ? json_dumps(text, JSON_ENCODE_ANY) : NULL;
    json_decref(text);
    char *body = s_format(
        "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,\"message\":%s%s%s},"
        "\"id\":%s}",
        code, quoted ? quoted : "\"\"", data_json ? ",\"data\":" : "",
        data_json ? data_json : "", id_json ? id_json : "null");
    free(quoted);
    return body;
}

//  --- raise's params -----------------------------------------------------------

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
static int s_add_param(evr_mi_params_t *p, const char *name,
                       evr_param_type_t type, int64_t i, char *owned,
                       const char *s)
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
static int s_build_params(json_t *value, evr_mi_params_t *p, const char **why)
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

//  Build the params of a raise from its PARAMS value.
int evr_mi_raise_params(json_t *values, evr_mi_params_t *p,
                        evr_mi_error_t *error)
{
    if (json_is_string(values)) {
        //  OpenSIPS 3.6 form: a string holding a JSON object
        p->parsed =
            json_loads(json_string_value(values), JSON_DECODE_ANY, NULL);
        if (!json_is_object(p->parsed) && !json_is_array(p->parsed)) {
            evr_mi_error(error, 400, "Bad Params",
                         "params string is not a JSON object");
            return -1;
        }
        values = p->parsed;
    } else if (values && !json_is_null(values) && !json_is_object(values) &&
               !json_is_array(values)) {
        evr_mi_error(error, 400, "Bad Params",
                     "params must be a JSON object or array");
        return -1;
    }
    const char *why = NULL;
    if (values && !json_is_null(values) && s_build_params(values, p, &why)) {
        evr_mi_error(error, 400, "Bad Params", why);
        return -1;
    }
    return 0;
}

//  Free what params hold.
void evr_mi_params_free(evr_mi_params_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->owned[i]);
    p->n = 0;
    json_decref(p->parsed);
    p->parsed = NULL;
}
