/*  fuzz_control.c - libFuzzer target for the control socket's decoding.

    The input is one ControlRequest frame, as the relay's control socket
    (and the HTTP face, through the core) receives it. It goes through
    evr_mi_request_decode (size bound, protobuf, version, params_json with
    duplicate keys refused). Then, as evr_control does:
    - raise's params: the PARAMS value (named "params", or the second
      positional) and the whole params value each go through
      evr_mi_raise_params; accepted params make an event that every
      payload encoder takes, and whose JSON-RPC notification must be valid
      JSON holding as many params;
    - the answer: evr_mi_reply_encode of the error (or of the params as a
      result) must decode back to the same id, code, message and data.
    abort() when a check fails.
*/
#include "evr_defaults.h"
#include "evr_mi.h"
#include "evr_payload.h"
#include "evr_table.h"
#include "evrelay.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_control: %s\n", what);
    abort();
}

//  Encode an event made of accepted raise params with every encoder; the
//  JSON-RPC notification must parse and hold every param.
static void s_encode(const char *name, const evr_mi_params_t *p)
{
    evr_event_view_t view = {name, strlen(name), p->n ? p->params : NULL, p->n};
    evr_buf_t buf = {0};
    if (evr_payload_jsonrpc(&buf, &view, NULL) == 0) {
        json_error_t jerr;
        json_t *json = json_loadb(buf.data, buf.len, 0, &jerr);
        json_t *params = json_object_get(json, "params");
        size_t n = json_is_object(params)  ? json_object_size(params)
                   : json_is_array(params) ? json_array_size(params)
                                           : 0;
        if (!json) {
            fprintf(stderr, "'%.*s': %s\n", (int)buf.len, buf.data, jerr.text);
            s_fail("raise notification is not JSON");
        }
        //  named params come from one JSON object: no duplicate keys
        if (n != p->n)
            s_fail("raise notification lost params");
        json_decref(json);
    }
    evr_buf_reset(&buf);
    evr_payload_legacy(&buf, &view);
    evr_buf_reset(&buf);
    evr_payload_flatstore(&buf, &view, ",", false);
    evr_buf_free(&buf);
}

//  Build raise params from values, as evr_control's raise does.
static void s_raise(const char *name, json_t *values)
{
    evr_mi_params_t p = {.n = 0};
    evr_mi_error_t error = {0};
    if (evr_mi_raise_params(values, &p, &error) == 0) {
        if (error.code)
            s_fail("params accepted with an error");
        if (p.n > EVR_DEFAULT_MAX_PARAMS)
            s_fail("too many params");
        s_encode(name, &p);
    } else if (error.code != 400 || !error.message || !error.data[0])
        s_fail("params refused without a reason");
    evr_mi_params_free(&p);
}

//  Encode a reply and decode it again: it must say the same.
static void s_reply(uint64_t id, const char *result_json,
                    const evr_mi_error_t *error)
{
    size_t len;
    void *frame = evr_mi_reply_encode(id, result_json, error, &len);
    if (!frame)
        return;
    Evrelay__ControlReply *reply =
        evrelay__control_reply__unpack(NULL, len, frame);
    if (!reply || reply->id != id || reply->version != EVR_PROTOCOL_VERSION)
        s_fail("reply does not decode");
    if (result_json) {
        if (reply->error || !reply->result_json ||
            strcmp(reply->result_json, result_json))
            s_fail("result reply differs");
    } else {
        if (!reply->error || reply->result_json ||
            reply->error->code != error->code ||
            strcmp(reply->error->message, error->message))
            s_fail("error reply differs");
        //  the detail travels as a JSON string (dropped when it is not
        //  UTF-8, which jansson cannot hold)
        json_t *detail =
            reply->error->data_json
                ? json_loads(reply->error->data_json, JSON_DECODE_ANY, NULL)
                : NULL;
        if (reply->error->data_json &&
            (!json_is_string(detail) ||
             strcmp(json_string_value(detail), error->data)))
            s_fail("error detail differs");
        json_decref(detail);
    }
    evrelay__control_reply__free_unpacked(reply, NULL);
    free(frame);
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Evrelay__ControlRequest *req;
    json_t *params;
    evr_mi_error_t error = {0};
    evr_mi_rc_t rc = evr_mi_request_decode(
        data, size, EVR_DEFAULT_MAX_CONTROL_BYTES, &req, &params, &error);
    if (rc == EVR_MI_OK) {
        if (error.code || !req || !req->method)
            s_fail("decoded with an error");
        if (!params && req->params_json && *req->params_json)
            s_fail("params_json lost");
        //  raise EVENT PARAMS, named or positional
        json_t *event = json_is_array(params)
                            ? json_array_get(params, 0)
                            : json_object_get(params, "event");
        json_t *values = json_is_array(params)
                             ? json_array_get(params, 1)
                             : json_object_get(params, "params");
        const char *name = json_string_value(event);
        if (!name || !evr_table_valid_name(name))
            name = "E_FUZZ";
        s_raise(name, values);
        s_raise(name, params);
        char *text = json_dumps(params ? params : json_null(),
                                JSON_COMPACT | JSON_ENCODE_ANY);
        if (text)
            s_reply(req->id, text, NULL);
        free(text);
    } else {
        if (!error.code || !error.message)
            s_fail("refused without an error");
        if ((rc == EVR_MI_TOO_LARGE) != (size > EVR_DEFAULT_MAX_CONTROL_BYTES))
            s_fail("size bound");
        if (rc == EVR_MI_BAD_JSON && (!req || params))
            s_fail("bad JSON without its request");
        s_reply(req ? req->id : 0, NULL, &error);
    }
    json_decref(params);
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
    return 0;
}
