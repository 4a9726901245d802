/*  evr_mi.h - MI requests as they arrive, and the answers' envelopes.

    Pure module (no I/O), shared by the control socket (evr_control) and
    the HTTP face (evr_http), and fuzzed (fuzz_control, fuzz_mi):
    - evr_mi_request_decode: a ControlRequest frame -> the request and its
      parsed params, or the MI error to answer;
    - evr_mi_reply_encode: the ControlReply frame of a result or an error;
    - evr_mi_jsonrpc_parse: a POST /mi body (JSON-RPC 2.0, as OpenSIPS'
      mi_http takes it) -> method, params and id, or the JSON-RPC error;
    - evr_mi_jsonrpc_result, evr_mi_jsonrpc_error: the JSON-RPC answers;
    - evr_mi_raise_params: raise's PARAMS value -> the event's params, as
      OpenSIPS' MI takes them.
    Request JSON is read alike everywhere (evr_mi_json_parse): duplicate
    keys are refused rather than silently collapsed, and an integer beyond
    64 bits is read as a real (MI clamps numbers to 32 bits anyway).
*/
#ifndef EVR_MI_H_INCLUDED
#define EVR_MI_H_INCLUDED

#include "evr_defaults.h"
#include "evr_event.h"
#include "evrelay.pb-c.h"

#include <jansson.h>
#include <stdbool.h>

//  An MI error.
typedef struct {
    int code;            //  MI / JSON-RPC error code
    const char *message; //  the MI message, e.g. "Bad parameter value"
    char data[512];      //  detail for humans; empty = none
} evr_mi_error_t;

//  Fill *error (data may be NULL) and return NULL, so that a command can
//  `return evr_mi_error(...)`.
json_t *evr_mi_error(evr_mi_error_t *error, int code, const char *message,
                     const char *data);

//  Parse request JSON (any value) of len bytes. NULL with the reason in
//  *jerr (may be NULL) when it is not JSON, or holds a duplicate key.
json_t *evr_mi_json_parse(const char *text, size_t len, json_error_t *jerr);

//  What evr_mi_request_decode found.
typedef enum {
    EVR_MI_OK = 0,    //  *req set, *params set (NULL: no params)
    EVR_MI_TOO_LARGE, //  over max_len: -32600, not decoded
    EVR_MI_MALFORMED, //  not a ControlRequest (*req NULL), or another
                      //  protocol version (*req set, for its id): -32600
    EVR_MI_BAD_JSON   //  params_json is not JSON: -32700, *req set
} evr_mi_rc_t;

//  Decode a ControlRequest frame of len bytes. Fills *error unless OK.
//  Free a *req with evrelay__control_request__free_unpacked and *params
//  with json_decref.
evr_mi_rc_t evr_mi_request_decode(const void *frame, size_t len, size_t max_len,
                                  Evrelay__ControlRequest **req,
                                  json_t **params, evr_mi_error_t *error);

//  Encode the ControlReply to request id: result_json (JSON text) when
//  not NULL, else *error. Returns a malloc'd frame and its size in *len,
//  or NULL when out of memory.
void *evr_mi_reply_encode(uint64_t id, const char *result_json,
                          const evr_mi_error_t *error, size_t *len);

//  One JSON-RPC call read from an HTTP body.
typedef struct {
    char *method;      //  the method (OK only)
    char *params_json; //  params as compact JSON text; NULL: none given
    char *id_json;     //  "id" as JSON text; NULL: absent (or not usable)
    bool notification; //  no "id" member: run, answer nothing
    int code;          //  refused: -32700 or -32600
    const char *message;
} evr_mi_call_t;

//  Read a POST /mi body of len bytes. Returns 0 with method, params_json,
//  id_json and notification set; or -1 with code and message, and id_json
//  when the id was usable (answer with it, else with null). Free with
//  evr_mi_call_free either way.
int evr_mi_jsonrpc_parse(const char *body, size_t len, evr_mi_call_t *call);

//  Free what a call holds.
void evr_mi_call_free(evr_mi_call_t *call);

//  The JSON-RPC success answer (new string, NULL when out of memory):
//  result_json and id_json are JSON text; id_json NULL = null.
char *evr_mi_jsonrpc_result(const char *result_json, const char *id_json);

//  The JSON-RPC error answer (new string, NULL when out of memory);
//  data_json (JSON text) and id_json may be NULL.
char *evr_mi_jsonrpc_error(int code, const char *message, const char *data_json,
                           const char *id_json);

//  An event's params built from JSON.
typedef struct {
    evr_param_t params[EVR_DEFAULT_MAX_PARAMS];
    char *owned[EVR_DEFAULT_MAX_PARAMS]; //  texts made here (or NULL)
    size_t n;
    json_t *parsed; //  the params string's JSON (OpenSIPS 3.6 form)
} evr_mi_params_t;

//  Build the params of a raise from its PARAMS value, as OpenSIPS' MI
//  does: NULL or null = none; an object = named params (numbers truncated
//  and clamped to int32, strings as they are, anything else as compact
//  JSON text); an array = positional string params (numbers printed);
//  a string = a JSON object or array in text (OpenSIPS 3.6). Returns 0,
//  or -1 with 400 "Bad Params" in *error. *p must be zeroed first; free
//  it with evr_mi_params_free either way. The params point into values.
int evr_mi_raise_params(json_t *values, evr_mi_params_t *p,
                        evr_mi_error_t *error);

//  Free what params hold.
void evr_mi_params_free(evr_mi_params_t *p);

#endif
