/*  fuzz_mi.c - libFuzzer target for the HTTP face's MI JSON-RPC parser.

    The input is one POST /mi body. evr_mi_jsonrpc_parse must accept it
    (method, params, id) or refuse it with a JSON-RPC error. Then, as the
    HTTP face and the core do:
    - an accepted call becomes a ControlRequest frame, which the core's
      decoder (evr_mi_request_decode) must take, with params equal to the
      body's; raise's params are built from them (evr_mi_raise_params);
    - every answer the face can give (a result, an error whose message and
      data come from the call, a refusal) must be valid JSON-RPC: an object
      with "jsonrpc":"2.0" and the request's id (null when it had none
      usable).
    abort() when a check fails.
*/
#include "evr_defaults.h"
#include "evr_mi.h"
#include "evrelay.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_mi: %s\n", what);
    abort();
}

//  Check an answer: a JSON-RPC 2.0 object with the given id (JSON text,
//  NULL = null). Returns the parsed answer (decref it).
static json_t *s_check_answer(char *answer, const char *id_json)
{
    if (!answer)
        return NULL; //  out of memory
    json_error_t jerr;
    json_t *json = json_loads(answer, 0, &jerr);
    if (!json) {
        fprintf(stderr, "'%s': %s\n", answer, jerr.text);
        s_fail("answer is not JSON");
    }
    json_t *version = json_object_get(json, "jsonrpc");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0"))
        s_fail("answer without jsonrpc 2.0");
    json_t *want =
        id_json ? json_loads(id_json, JSON_DECODE_ANY, NULL) : json_null();
    if (!want || !json_equal(want, json_object_get(json, "id")))
        s_fail("answer with another id");
    json_decref(want);
    free(answer);
    return json;
}

//  Build raise params from values, as the core's raise does: accepted or
//  refused with a reason, never more than the bound.
static void s_raise(json_t *values)
{
    evr_mi_params_t p = {.n = 0};
    evr_mi_error_t error = {0};
    if (evr_mi_raise_params(values, &p, &error) == 0) {
        if (p.n > EVR_DEFAULT_MAX_PARAMS)
            s_fail("too many params");
        for (size_t i = 0; i < p.n; i++)
            if (p.params[i].type == EVR_PARAM_STR && !p.params[i].s)
                s_fail("a string param without its text");
    } else if (error.code != 400 || !error.data[0])
        s_fail("raise params refused without a reason");
    evr_mi_params_free(&p);
}

//  The call as the core receives it: a ControlRequest it must decode,
//  with the same params.
static void s_to_core(const evr_mi_call_t *call)
{
    Evrelay__ControlRequest req = EVRELAY__CONTROL_REQUEST__INIT;
    req.version = EVR_PROTOCOL_VERSION;
    req.id = 1;
    req.method = call->method;
    req.params_json = call->params_json;
    size_t len = evrelay__control_request__get_packed_size(&req);
    uint8_t *frame = malloc(len ? len : 1);
    if (!frame)
        return;
    evrelay__control_request__pack(&req, frame);
    Evrelay__ControlRequest *got;
    json_t *params;
    evr_mi_error_t error = {0};
    evr_mi_rc_t rc = evr_mi_request_decode(
        frame, len, EVR_DEFAULT_MAX_CONTROL_BYTES, &got, &params, &error);
    //  a body bigger than the control bound is the configuration's
    //  business (http max body), not the parser's
    if (rc != EVR_MI_OK && len <= EVR_DEFAULT_MAX_CONTROL_BYTES) {
        fprintf(stderr, "params '%s': %s\n", call->params_json, error.data);
        s_fail("the core refuses what the HTTP face accepted");
    }
    if (rc == EVR_MI_OK) {
        if (strcmp(got->method, call->method))
            s_fail("method changed on the way");
        json_t *again =
            call->params_json ? json_loads(call->params_json, 0, NULL) : NULL;
        if ((params || again) && !json_equal(params, again))
            s_fail("params changed on the way");
        json_decref(again);
        //  what raise makes of them (named "params" or the second)
        s_raise(json_is_array(params) ? json_array_get(params, 1)
                                      : json_object_get(params, "params"));
    }
    json_decref(params);
    if (got)
        evrelay__control_request__free_unpacked(got, NULL);
    free(frame);
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    //  a private copy, so reads past the end are caught
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    evr_mi_call_t call;
    if (evr_mi_jsonrpc_parse(body, size, &call) == 0) {
        if (!call.method || call.code || call.notification != !call.id_json)
            s_fail("accepted call is incomplete");
        if (call.params_json) {
            json_t *params = evr_mi_json_parse(call.params_json,
                                               strlen(call.params_json), NULL);
            if (!json_is_object(params) && !json_is_array(params))
                s_fail("params are not an object or an array");
            json_decref(params);
        }
        s_to_core(&call);
        //  the answers: the core's result, an error that quotes the call
        json_decref(s_check_answer(
            evr_mi_jsonrpc_result(call.params_json ? call.params_json : "null",
                                  call.id_json),
            call.id_json));
        json_t *detail = json_string(call.method);
        char *data_json = json_dumps(detail, JSON_ENCODE_ANY);
        json_t *answer = s_check_answer(
            evr_mi_jsonrpc_error(-32601, call.method, data_json, call.id_json),
            call.id_json);
        json_t *error = json_object_get(answer, "error");
        if (answer &&
            (!json_is_string(json_object_get(error, "message")) ||
             strcmp(json_string_value(json_object_get(error, "message")),
                    call.method) ||
             !json_equal(json_object_get(error, "data"), detail)))
            s_fail("error answer does not quote the call");
        json_decref(answer);
        json_decref(detail);
        free(data_json);
    } else {
        if (call.code != -32700 && call.code != -32600 && call.code != -32603)
            s_fail("refused with an unknown code");
        if (!call.message || call.method || call.params_json)
            s_fail("refused call holds a request");
        json_decref(s_check_answer(
            evr_mi_jsonrpc_error(call.code, call.message, NULL, call.id_json),
            call.id_json));
    }
    evr_mi_call_free(&call);
    free(body);
    return 0;
}
