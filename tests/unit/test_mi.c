/*  test_mi.c - unit tests of evr_mi: MI requests as they arrive (control
    frames, HTTP JSON-RPC bodies, raise's params) and the answers'
    envelopes.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "evr_mi.h"

//  Pack a ControlRequest into a new buffer; *len gets its size.
static uint8_t *s_request(uint32_t version, uint64_t id, const char *method,
                          const char *params_json, size_t *len)
{
    Evrelay__ControlRequest req = EVRELAY__CONTROL_REQUEST__INIT;
    req.version = version;
    req.id = id;
    req.method = (char *)method;
    req.params_json = (char *)params_json;
    *len = evrelay__control_request__get_packed_size(&req);
    uint8_t *frame = malloc(*len + 1);
    assert_non_null(frame);
    evrelay__control_request__pack(&req, frame);
    return frame;
}

//  Decode a request made of these parts; returns the outcome.
static evr_mi_rc_t s_decode(uint32_t version, const char *params_json,
                            size_t max_len, evr_mi_error_t *error,
                            json_t **params, uint64_t *id)
{
    size_t len;
    uint8_t *frame = s_request(version, 9, "subscribe", params_json, &len);
    Evrelay__ControlRequest *req;
    evr_mi_rc_t rc =
        evr_mi_request_decode(frame, len, max_len, &req, params, error);
    *id = req ? req->id : 0;
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
    free(frame);
    return rc;
}

static void test_request_decode(void **state)
{
    evr_mi_error_t error = {0};
    json_t *params;
    uint64_t id;
    assert_int_equal(
        s_decode(1, "[\"E_X\",\"udp:h:1\"]", 1024, &error, &params, &id),
        EVR_MI_OK);
    assert_int_equal(id, 9);
    assert_true(json_is_array(params));
    assert_int_equal(error.code, 0);
    json_decref(params);
    //  empty params_json: no params
    assert_int_equal(s_decode(1, "", 1024, &error, &params, &id), EVR_MI_OK);
    assert_null(params);
    //  an integer beyond 64 bits is read as a real
    assert_int_equal(s_decode(1, "[123456789012345678901234567890]", 1024,
                              &error, &params, &id),
                     EVR_MI_OK);
    assert_true(json_is_real(json_array_get(params, 0)));
    json_decref(params);
}

static void test_request_refused(void **state)
{
    evr_mi_error_t error = {0};
    json_t *params;
    uint64_t id;
    assert_int_equal(s_decode(1, "[1]", 4, &error, &params, &id),
                     EVR_MI_TOO_LARGE);
    assert_int_equal(error.code, -32600);
    assert_string_equal(error.data, "request too large: 20 bytes, the limit "
                                    "is 4 ([limits] max_control_bytes)");
    assert_int_equal(id, 0);
    //  another version: refused, but with the request's id
    assert_int_equal(s_decode(2, NULL, 1024, &error, &params, &id),
                     EVR_MI_MALFORMED);
    assert_int_equal(id, 9);
    assert_string_equal(error.data, "unsupported protocol version");
    assert_int_equal(
        s_decode(1, "{\"a\":1,\"a\":2}", 1024, &error, &params, &id),
        EVR_MI_BAD_JSON);
    assert_int_equal(error.code, -32700);
    assert_null(params);
    Evrelay__ControlRequest *req;
    assert_int_equal(
        evr_mi_request_decode("\xff\xff", 2, 1024, &req, &params, &error),
        EVR_MI_MALFORMED);
    assert_null(req);
    assert_string_equal(error.data, "undecodable request");
}

static void test_reply_encode(void **state)
{
    evr_mi_error_t error = {0};
    evr_mi_error(&error, 404, "Event not published", "E_\"X");
    size_t len;
    void *frame = evr_mi_reply_encode(7, NULL, &error, &len);
    Evrelay__ControlReply *reply =
        evrelay__control_reply__unpack(NULL, len, frame);
    assert_non_null(reply);
    assert_int_equal(reply->id, 7);
    assert_null(reply->result_json);
    assert_int_equal(reply->error->code, 404);
    assert_string_equal(reply->error->message, "Event not published");
    assert_string_equal(reply->error->data_json, "\"E_\\\"X\"");
    evrelay__control_reply__free_unpacked(reply, NULL);
    free(frame);
    frame = evr_mi_reply_encode(8, "\"OK\"", NULL, &len);
    reply = evrelay__control_reply__unpack(NULL, len, frame);
    assert_string_equal(reply->result_json, "\"OK\"");
    assert_null(reply->error);
    evrelay__control_reply__free_unpacked(reply, NULL);
    free(frame);
}

//  Parse a body; returns the outcome, the call in *call (free it).
static int s_call(const char *body, evr_mi_call_t *call)
{
    return evr_mi_jsonrpc_parse(body, strlen(body), call);
}

static void test_jsonrpc_accepted(void **state)
{
    evr_mi_call_t call;
    assert_int_equal(s_call("{\"jsonrpc\":\"2.0\",\"method\":\"evi:subscribe\","
                            "\"params\":[\"E_X\", \"udp:h:1\"],\"id\":1}",
                            &call),
                     0);
    assert_string_equal(call.method, "evi:subscribe");
    assert_string_equal(call.params_json, "[\"E_X\",\"udp:h:1\"]");
    assert_string_equal(call.id_json, "1");
    assert_false(call.notification);
    evr_mi_call_free(&call);
    //  no id: a notification; id null: answered with null
    assert_int_equal(s_call("{\"jsonrpc\":\"2.0\",\"method\":\"list\"}", &call),
                     0);
    assert_true(call.notification);
    assert_null(call.id_json);
    assert_null(call.params_json);
    evr_mi_call_free(&call);
    assert_int_equal(
        s_call("{\"jsonrpc\":\"2.0\",\"method\":\"list\",\"id\":null}", &call),
        0);
    assert_false(call.notification);
    assert_string_equal(call.id_json, "null");
    evr_mi_call_free(&call);
}

static void test_jsonrpc_refused(void **state)
{
    evr_mi_call_t call;
    assert_int_equal(s_call("{\"jsonrpc\":", &call), -1);
    assert_int_equal(call.code, -32700);
    assert_null(call.id_json);
    evr_mi_call_free(&call);
    assert_int_equal(s_call("[1]", &call), -1);
    assert_int_equal(call.code, -32600);
    evr_mi_call_free(&call);
    //  an id of the wrong type cannot be echoed
    assert_int_equal(
        s_call("{\"jsonrpc\":\"2.0\",\"method\":\"list\",\"id\":[1]}", &call),
        -1);
    assert_int_equal(call.code, -32600);
    assert_null(call.id_json);
    evr_mi_call_free(&call);
    //  a usable id is echoed
    assert_int_equal(
        s_call("{\"jsonrpc\":\"1.0\",\"method\":\"list\",\"id\":\"a\"}", &call),
        -1);
    assert_int_equal(call.code, -32600);
    assert_string_equal(call.id_json, "\"a\"");
    evr_mi_call_free(&call);
    assert_int_equal(s_call("{\"jsonrpc\":\"2.0\",\"method\":\"list\","
                            "\"params\":\"x\",\"id\":2}",
                            &call),
                     -1);
    assert_null(call.method);
    evr_mi_call_free(&call);
    assert_int_equal(s_call("{\"jsonrpc\":\"2.0\",\"method\":\"a\","
                            "\"method\":\"b\",\"id\":2}",
                            &call),
                     -1);
    assert_int_equal(call.code, -32700);
    evr_mi_call_free(&call);
}

static void test_jsonrpc_answers(void **state)
{
    char *text = evr_mi_jsonrpc_result("\"OK\"", "7");
    assert_string_equal(text,
                        "{\"jsonrpc\":\"2.0\",\"result\":\"OK\",\"id\":7}");
    free(text);
    text = evr_mi_jsonrpc_error(-32601, "Method \"x\"", "\"x\"", NULL);
    assert_string_equal(text, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32601,"
                              "\"message\":\"Method \\\"x\\\"\",\"data\":"
                              "\"x\"},\"id\":null}");
    free(text);
}

//  Build raise params from JSON text; returns the outcome.
static int s_raise(const char *json, evr_mi_params_t *p, evr_mi_error_t *error)
{
    json_t *values = json ? json_loads(json, JSON_DECODE_ANY, NULL) : NULL;
    memset(p, 0, sizeof *p);
    int rc = evr_mi_raise_params(values, p, error);
    json_decref(values); //  p->params point into it: check before
    return rc;
}

static void test_raise_params(void **state)
{
    evr_mi_params_t p;
    evr_mi_error_t error = {0};
    json_t *values = json_loads("{\"s\":\"x\",\"n\":1e12,\"o\":{\"a\":[1]},"
                                "\"z\":null}",
                                0, NULL);
    memset(&p, 0, sizeof p);
    assert_int_equal(evr_mi_raise_params(values, &p, &error), 0);
    assert_int_equal(p.n, 4);
    assert_string_equal(p.params[0].name, "s");
    assert_int_equal(p.params[0].type, EVR_PARAM_STR);
    assert_int_equal(p.params[1].type, EVR_PARAM_INT);
    assert_int_equal(p.params[1].i, 2147483647); //  clamped as MI does
    assert_string_equal(p.params[2].s, "{\"a\":[1]}");
    assert_string_equal(p.params[3].s, "null");
    evr_mi_params_free(&p);
    json_decref(values);

    values = json_loads("[\"a\",-2.9]", 0, NULL);
    memset(&p, 0, sizeof p);
    assert_int_equal(evr_mi_raise_params(values, &p, &error), 0);
    assert_int_equal(p.n, 2);
    assert_null(p.params[1].name);
    assert_string_equal(p.params[1].s, "-2");
    evr_mi_params_free(&p);
    json_decref(values);

    //  OpenSIPS 3.6: the params as a string of JSON
    values = json_string("{\"k\":\"v\"}");
    memset(&p, 0, sizeof p);
    assert_int_equal(evr_mi_raise_params(values, &p, &error), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.params[0].s, "v");
    evr_mi_params_free(&p);
    json_decref(values);

    assert_int_equal(s_raise(NULL, &p, &error), 0);
    assert_int_equal(p.n, 0);
    evr_mi_params_free(&p);
}

static void test_raise_params_refused(void **state)
{
    evr_mi_params_t p;
    evr_mi_error_t error = {0};
    assert_int_equal(s_raise("[true]", &p, &error), -1);
    assert_int_equal(error.code, 400);
    assert_string_equal(error.data,
                        "positional params must be strings or numbers");
    evr_mi_params_free(&p);
    assert_int_equal(s_raise("\"[1\"", &p, &error), -1);
    assert_string_equal(error.data, "params string is not a JSON object");
    evr_mi_params_free(&p);
    assert_int_equal(s_raise("5", &p, &error), -1);
    evr_mi_params_free(&p);
    //  more than the bound
    char big[EVR_DEFAULT_MAX_PARAMS * 4 + 16];
    char *q = big;
    *q++ = '[';
    for (int i = 0; i <= EVR_DEFAULT_MAX_PARAMS; i++)
        q += sprintf(q, "%s\"\"", i ? "," : "");
    strcpy(q, "]");
    assert_int_equal(s_raise(big, &p, &error), -1);
    assert_string_equal(error.data, "too many params");
    evr_mi_params_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_decode),
        cmocka_unit_test(test_request_refused),
        cmocka_unit_test(test_reply_encode),
        cmocka_unit_test(test_jsonrpc_accepted),
        cmocka_unit_test(test_jsonrpc_refused),
        cmocka_unit_test(test_jsonrpc_answers),
        cmocka_unit_test(test_raise_params),
        cmocka_unit_test(test_raise_params_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
