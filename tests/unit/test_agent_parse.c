/*  test_agent_parse.c - unit tests for evr_agent_parse (what evrelay-agent
    reads from OpenSIPS).

    The central check is the round trip: what OpenSIPS sends, parsed and
    encoded again by the relay's own encoder (evr_payload), must give back
    the same bytes. Everything else pins one rule of the header.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evr_agent_parse.h"
#include "evr_payload.h"

//  A string literal and its length (NULs included).
#define LIT(s) (s), sizeof(s) - 1

//  --------------------------------------------------------------------------
//  Parse a JSON-RPC datagram that must be accepted; return the message.

static evr_agent_msg_t s_parse_ok(evr_agent_parser_t *parser, const char *data,
                                  size_t len)
{
    evr_agent_msg_t msg;
    evr_agent_rc_t rc = evr_agent_parse_datagram(parser, data, len, &msg);
    if (rc != EVR_AGENT_OK)
        fail_msg("'%.*s' refused: %s", (int)len, data, evr_agent_rc_name(rc));
    return msg;
}

//  --------------------------------------------------------------------------
//  Assert that the JSON-RPC notification data parses and that the relay's
//  encoder gives back exactly the same bytes.

static void s_round_trip(const char *data, size_t len)
{
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    evr_agent_msg_t msg = s_parse_ok(parser, data, len);
    evr_buf_t buf = {0};
    assert_int_equal(evr_payload_jsonrpc(&buf, &msg.event, NULL), 0);
    if (buf.len != len || memcmp(buf.data, data, len) != 0)
        fail_msg("round trip of '%.*s' gave '%.*s'", (int)len, data,
                 (int)buf.len, buf.data);
    evr_buf_free(&buf);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  Assert the reason a datagram is refused with.

static void s_refused(const char *data, size_t len, evr_agent_rc_t expected)
{
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    evr_agent_msg_t msg;
    evr_agent_rc_t rc = evr_agent_parse_datagram(parser, data, len, &msg);
    if (rc != expected)
        fail_msg("'%.*s': %s, expected %s", (int)len, data,
                 evr_agent_rc_name(rc), evr_agent_rc_name(expected));
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  Assert one param of a message.

static void s_check_str(const evr_param_t *param, const char *name,
                        const char *value, size_t value_len)
{
    if (name) {
        assert_non_null(param->name);
        assert_string_equal(param->name, name);
        assert_int_equal(param->name_len, strlen(name));
    } else
        assert_null(param->name);
    assert_int_equal(param->type, EVR_PARAM_STR);
    assert_int_equal(param->s_len, value_len);
    assert_memory_equal(param->s, value, value_len);
}

static void s_check_int(const evr_param_t *param, const char *name,
                        int64_t value)
{
    if (name)
        assert_string_equal(param->name, name);
    else
        assert_null(param->name);
    assert_int_equal(param->type, EVR_PARAM_INT);
    assert_true(param->i == value);
}

//  --------------------------------------------------------------------------
//  What OpenSIPS sends comes back byte for byte (evi reference 4.1, 10).

static void test_opensips_round_trip(void **state)
{
    (void)state;
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_PIKE_BLOCKED\","
                     "\"params\":{\"ip\":\"192.168.2.11\"}}"));
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_MY_EVENT\","
                     "\"params\":[5,3]}"));
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_NO_PARAMS\"}"));
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_DLG_STATE_CHANGED\","
                     "\"params\":{\"id\":\"1f2e\",\"db_id\":\"42\","
                     "\"callid\":\"abc@h\",\"from_tag\":\"t1\",\"to_tag\":\"\","
                     "\"old_state\":3,\"new_state\":4}}"));
    //  key order is kept as sent, not sorted
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                     "\"params\":{\"z\":1,\"a\":2,\"m\":null}}"));
    //  a later unnamed param inside an object: repeated "" keys
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                     "\"params\":{\"a\":1,\"\":2,\"\":\"x\",\"a\":3}}"));
    //  an object whose first key is "" stays an object
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                     "\"params\":{\"\":1}}"));
    //  cJSON escaping, raw DEL, '/', '<', non-UTF-8 and 4-byte UTF-8
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_ESC\",\"params\":{"
                     "\"s\":\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0000\\u0001\\u001f"
                     " \x7f/<\xe9t\xe9 \xf0\x9f\x98\x80 \xe2\x80\xa8\","
                     "\"k\\n\\\"\":\"v\"}}"));
    //  64-bit ints and null in an array
    s_round_trip(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_INT\",\"params\":["
                     "0,-1,2147483647,-2147483648,9223372036854775807,"
                     "-9223372036854775808,null,\"\"]}"));
}

//  --------------------------------------------------------------------------
//  Params map to the event as the header says.

static void test_param_types(void **state)
{
    (void)state;
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    evr_agent_msg_t msg = s_parse_ok(
        parser,
        LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_T\",\"params\":{"
            "\"i\":-42,\"s\":\"a\\u0000b\\u00e9\\ud83d\\ude00\",\"n\":null,"
            "\"f\":1.50,\"e\":1E+3,\"big\":9223372036854775808,"
            "\"nz\":-0,\"t\":true,\"fa\":false,"
            "\"o\": { \"x\" : [ 1 , \"a \\\" b\" , {} ] } }}"));
    assert_string_equal(msg.event.name, "E_T");
    assert_null(msg.id);
    assert_false(msg.legacy);
    assert_int_equal(msg.event.nparams, 10);
    const evr_param_t *p = msg.event.params;
    s_check_int(&p[0], "i", -42);
    s_check_str(&p[1], "s", LIT("a\0b\xc3\xa9\xf0\x9f\x98\x80"));
    assert_string_equal(p[2].name, "n");
    assert_int_equal(p[2].type, EVR_PARAM_NULL);
    s_check_str(&p[3], "f", LIT("1.50"));
    s_check_str(&p[4], "e", LIT("1E+3"));
    s_check_str(&p[5], "big", LIT("9223372036854775808"));
    s_check_str(&p[6], "nz", LIT("-0")); //  not how an int prints
    s_check_str(&p[7], "t", LIT("true"));
    s_check_str(&p[8], "fa", LIT("false"));
    //  compact text: whitespace between tokens gone, strings as sent
    s_check_str(&p[9], "o", LIT("{\"x\":[1,\"a \\\" b\",{}]}"));

    //  positional params, whitespace everywhere JSON allows it
    msg = s_parse_ok(parser, LIT("{ \"jsonrpc\" : \"2.0\" ,\r\n\t\"params\" :"
                                 " [ \"a\" , -9223372036854775809 ] ,"
                                 " \"method\" : \"E_P\" }\n"));
    assert_string_equal(msg.event.name, "E_P");
    assert_int_equal(msg.event.nparams, 2);
    s_check_str(&msg.event.params[0], NULL, LIT("a"));
    s_check_str(&msg.event.params[1], NULL, LIT("-9223372036854775809"));

    //  empty containers mean no params; unknown members are ignored
    msg = s_parse_ok(parser, LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_E\","
                                 "\"params\":{},\"x\":{\"y\":[1]}}"));
    assert_int_equal(msg.event.nparams, 0);
    assert_null(msg.event.params);
    msg = s_parse_ok(
        parser, LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_E\",\"params\":[]}"));
    assert_int_equal(msg.event.nparams, 0);
    //  an escaped method name is decoded before it is checked
    msg = s_parse_ok(
        parser, LIT("{\"jsonrpc\":\"2\\u002e0\",\"method\":\"E\\u005fX\"}"));
    assert_string_equal(msg.event.name, "E_X");
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  event_stream's reliable mode: the id's source text, to echo.

static void test_ids(void **state)
{
    (void)state;
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    const char opensips[] = "{\"id\":915243442,\"jsonrpc\":\"2.0\","
                            "\"method\":\"E_X\",\"params\":{\"a\":1}}";
    evr_agent_msg_t msg = s_parse_ok(parser, LIT(opensips));
    assert_non_null(msg.id);
    assert_int_equal(msg.id_len, 9);
    assert_memory_equal(msg.id, "915243442", 9);
    assert_ptr_equal(msg.id, opensips + 6); //  points into the input
    //  the relay's encoder with that id gives back the same bytes
    evr_buf_t buf = {0};
    evr_jsonrpc_opts_t opts = {.id = 915243442};
    assert_int_equal(evr_payload_jsonrpc(&buf, &msg.event, &opts), 0);
    assert_int_equal(buf.len, sizeof(opensips) - 1);
    assert_memory_equal(buf.data, opensips, buf.len);
    evr_buf_free(&buf);

    msg = s_parse_ok(parser, LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                                 "\"id\" : \"r-1\\\"\" }"));
    assert_int_equal(msg.id_len, 7);
    assert_memory_equal(msg.id, "\"r-1\\\"\"", 7);
    msg = s_parse_ok(parser,
                     LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":-7}"));
    assert_memory_equal(msg.id, "-7", 2);

    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":null}"),
              EVR_AGENT_BAD_ID);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":1.5}"),
              EVR_AGENT_BAD_ID);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":[1]}"),
              EVR_AGENT_BAD_ID);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":1,\"id\":2}"),
              EVR_AGENT_BAD_JSONRPC);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  Malformed JSON-RPC: each with its reason.

static void test_malformed_json(void **state)
{
    (void)state;
    //  syntax
    s_refused(LIT("{"), EVR_AGENT_BAD_JSON);
    s_refused(LIT("{}{}"), EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\"} x"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\" \"method\":\"E_X\"}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{'jsonrpc':'2.0'}"), EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E\tX\"}"),
              EVR_AGENT_BAD_JSON); //  raw control byte in a string
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\\x\"}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\\u12\"}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\\ud800\"}"),
              EVR_AGENT_BAD_JSON); //  lone high surrogate
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\\udc00\"}"),
              EVR_AGENT_BAD_JSON); //  lone low surrogate
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[01]}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1.]}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[-]}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[tru]}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1e]}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":{1:2}}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1}"),
              EVR_AGENT_BAD_JSON);
    s_refused(LIT("{\"a\":\"x\0\"}"), EVR_AGENT_BAD_JSON); //  raw NUL
    //  a syntax error is reported even after a semantic one
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"bad name\",\"params\":["),
              EVR_AGENT_BAD_JSON);

    //  nesting: 32 levels are fine, 33 are not
    char deep[200];
    for (int levels = 32; levels <= 33; levels++) {
        size_t n = 0;
        n += (size_t)sprintf(deep, "{\"jsonrpc\":\"2.0\",\"method\":\"E_D\","
                                   "\"params\":");
        for (int i = 1; i < levels; i++)
            deep[n++] = '[';
        for (int i = 1; i < levels; i++)
            deep[n++] = ']';
        deep[n++] = '}';
        s_refused(deep, n, levels == 32 ? EVR_AGENT_OK : EVR_AGENT_BAD_JSON);
    }

    //  JSON, but not a JSON-RPC notification
    s_refused(LIT("{}"), EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\"}"), EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"method\":\"E_X\"}"), EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"1.0\",\"method\":\"E_X\"}"),
              EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":2.0,\"method\":\"E_X\"}"),
              EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":5}"), EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":\"a\"}"),
              EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":null}"),
              EVR_AGENT_BAD_JSONRPC);
    s_refused(
        LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"method\":\"E_Y\"}"),
        EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1],"
                  "\"params\":[2]}"),
              EVR_AGENT_BAD_JSONRPC);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"result\":\"OK\",\"id\":1}"),
              EVR_AGENT_BAD_JSONRPC); //  a reply is not an event

    //  bad names
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"\"}"), EVR_AGENT_BAD_NAME);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E X\"}"),
              EVR_AGENT_BAD_NAME);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_\\u0000\"}"),
              EVR_AGENT_BAD_NAME);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"\xc3\xa9\"}"),
              EVR_AGENT_BAD_NAME);
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_"
                  "12345678901234567890123456789012345678901234567890123456789"
                  "0123\"}"),
              EVR_AGENT_BAD_NAME); //  65 characters
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_"
                  "12345678901234567890123456789012345678901234567890123456789"
                  "012\"}"),
              EVR_AGENT_OK); //  64

    //  bad params: a NUL in a name
    s_refused(LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                  "\"params\":{\"a\\u0000b\":1}}"),
              EVR_AGENT_BAD_PARAMS);
    //  not JSON-RPC at all
    s_refused(LIT(""), EVR_AGENT_BAD_LEGACY);
}

//  --------------------------------------------------------------------------
//  The params bound (128 by default, or max_params).

static void test_too_many_params(void **state)
{
    (void)state;
    char data[2048];
    for (int count = 128; count <= 129; count++) {
        size_t n = (size_t)sprintf(
            data, "{\"jsonrpc\":\"2.0\",\"method\":\"E_M\",\"params\":[");
        for (int i = 0; i < count; i++)
            n += (size_t)sprintf(data + n, "%s%d", i ? "," : "", i);
        n += (size_t)sprintf(data + n, "]}");
        s_refused(data, n, count == 128 ? EVR_AGENT_OK : EVR_AGENT_BAD_PARAMS);
    }
    evr_agent_parse_opts_t opts = {.max_params = 2};
    evr_agent_parser_t *parser = evr_agent_parser_new(&opts);
    assert_non_null(parser);
    evr_agent_msg_t msg;
    assert_int_equal(
        evr_agent_parse_jsonrpc(parser,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E\","
                                    "\"params\":{\"a\":1,\"b\":2,\"c\":3}}"),
                                &msg),
        EVR_AGENT_BAD_PARAMS);
    assert_int_equal(
        evr_agent_parse_legacy(parser, LIT("E\na::1\nb::2\nc::3\n\n"), &msg),
        EVR_AGENT_BAD_PARAMS);
    assert_int_equal(
        evr_agent_parse_legacy(parser, LIT("E\na::1\nb::2\n\n"), &msg),
        EVR_AGENT_OK);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  event_stream's event_param: the event name from the first param.

static void test_event_param(void **state)
{
    (void)state;
    evr_agent_parse_opts_t opts = {.event_param = "event"};
    evr_agent_parser_t *parser = evr_agent_parser_new(&opts);
    assert_non_null(parser);
    evr_agent_msg_t msg;
    //  object: the key, removed from the params
    assert_int_equal(evr_agent_parse_jsonrpc(
                         parser,
                         LIT("{\"jsonrpc\":\"2.0\",\"method\":\"cdr\","
                             "\"params\":{\"event\":\"E_ACC_CDR\",\"a\":1}}"),
                         &msg),
                     EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_ACC_CDR");
    assert_int_equal(msg.event.nparams, 1);
    s_check_int(&msg.event.params[0], "a", 1);
    //  array: the first element
    assert_int_equal(evr_agent_parse_jsonrpc(
                         parser,
                         LIT("{\"id\":3,\"jsonrpc\":\"2.0\",\"method\":\"m\","
                             "\"params\":[\"E_Y\",5]}"),
                         &msg),
                     EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_Y");
    assert_int_equal(msg.event.nparams, 1);
    s_check_int(&msg.event.params[0], NULL, 5);
    //  the only param
    assert_int_equal(
        evr_agent_parse_jsonrpc(parser,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"m\","
                                    "\"params\":[\"E_Z\"]}"),
                                &msg),
        EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_Z");
    assert_int_equal(msg.event.nparams, 0);
    assert_null(msg.event.params);
    //  no params: the method names the event
    assert_int_equal(
        evr_agent_parse_jsonrpc(
            parser, LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_M\"}"), &msg),
        EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_M");
    //  an object without the key: the method again, params kept
    assert_int_equal(
        evr_agent_parse_jsonrpc(parser,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"E_M\","
                                    "\"params\":{\"a\":\"x\"}}"),
                                &msg),
        EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_M");
    assert_int_equal(msg.event.nparams, 1);
    //  event_param's entry does not count toward max_params
    evr_agent_parse_opts_t two = {.event_param = "event", .max_params = 2};
    evr_agent_parser_t *bounded = evr_agent_parser_new(&two);
    assert_non_null(bounded);
    assert_int_equal(
        evr_agent_parse_jsonrpc(bounded,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"m\","
                                    "\"params\":[\"E_Y\",1,2]}"),
                                &msg),
        EVR_AGENT_OK);
    assert_int_equal(msg.event.nparams, 2);
    assert_int_equal(
        evr_agent_parse_jsonrpc(bounded,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"m\","
                                    "\"params\":{\"a\":1,\"b\":2,\"c\":3}}"),
                                &msg),
        EVR_AGENT_BAD_PARAMS); //  no event_param entry
    evr_agent_parser_destroy(&bounded);
    //  the entry is there but not a valid name
    assert_int_equal(
        evr_agent_parse_jsonrpc(parser,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"m\","
                                    "\"params\":[5]}"),
                                &msg),
        EVR_AGENT_BAD_NAME);
    assert_int_equal(
        evr_agent_parse_jsonrpc(parser,
                                LIT("{\"jsonrpc\":\"2.0\",\"method\":\"m\","
                                    "\"params\":{\"event\":\"a b\"}}"),
                                &msg),
        EVR_AGENT_BAD_NAME);
    evr_agent_parser_destroy(&parser);

    //  what the relay's event_stream encoder writes parses back
    parser = evr_agent_parser_new(&opts);
    assert_non_null(parser);
    evr_param_t params[] = {
        {.name = "a",
         .name_len = 1,
         .type = EVR_PARAM_STR,
         .s = "x",
         .s_len = 1},
        {.name = "b", .name_len = 1, .type = EVR_PARAM_INT, .i = -3}};
    evr_event_view_t ev = {
        .name = "E_ACC_CDR", .name_len = 9, .params = params, .nparams = 2};
    evr_buf_t buf = {0};
    evr_jsonrpc_opts_t jopts = {
        .id = 7, .method = "cdr", .event_param = "event"};
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &jopts), 0);
    assert_int_equal(evr_agent_parse_jsonrpc(parser, buf.data, buf.len, &msg),
                     EVR_AGENT_OK);
    assert_string_equal(msg.event.name, "E_ACC_CDR");
    assert_memory_equal(msg.id, "7", 1);
    evr_buf_t again = {0};
    assert_int_equal(evr_payload_jsonrpc(&again, &msg.event, &jopts), 0);
    assert_int_equal(again.len, buf.len);
    assert_memory_equal(again.data, buf.data, buf.len);
    evr_buf_free(&buf);
    evr_buf_free(&again);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  Legacy text as OpenSIPS <= 3.0 (and the relay's legacy encoder) writes
//  it.

static void test_legacy(void **state)
{
    (void)state;
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    evr_agent_msg_t msg;

    msg = s_parse_ok(parser, LIT("E_PIKE_BLOCKED\nip::192.168.2.11\n\n"));
    assert_true(msg.legacy);
    assert_null(msg.id);
    assert_string_equal(msg.event.name, "E_PIKE_BLOCKED");
    assert_int_equal(msg.event.nparams, 1);
    s_check_str(&msg.event.params[0], "ip", LIT("192.168.2.11"));

    //  no params
    msg = s_parse_ok(parser, LIT("E_NONE\n\n"));
    assert_string_equal(msg.event.name, "E_NONE");
    assert_int_equal(msg.event.nparams, 0);
    assert_null(msg.event.params);

    //  ints: canonical decimal only; positional lines; "::" in a value
    msg = s_parse_ok(parser, LIT("E_X\nold_state::3\nn::-12\nz::0\nlz::007\n"
                                 "mz::-0\nplus::+1\nhuge::9223372036854775808\n"
                                 "p1\n42\nurl::sip:a::b\n\n"));
    assert_int_equal(msg.event.nparams, 10);
    const evr_param_t *p = msg.event.params;
    s_check_int(&p[0], "old_state", 3);
    s_check_int(&p[1], "n", -12);
    s_check_int(&p[2], "z", 0);
    s_check_str(&p[3], "lz", LIT("007"));
    s_check_str(&p[4], "mz", LIT("-0"));
    s_check_str(&p[5], "plus", LIT("+1"));
    s_check_str(&p[6], "huge", LIT("9223372036854775808"));
    s_check_str(&p[7], NULL, LIT("p1"));
    s_check_int(&p[8], NULL, 42);
    s_check_str(&p[9], "url", LIT("sip:a::b"));

    //  quoted values hold newlines; inner quotes come back
    msg = s_parse_ok(parser, LIT("E_Q\nml::\"a\nb\\\"c\"\n\"x\ny\"\n"
                                 "q::\"no newline\"\n\n"));
    assert_int_equal(msg.event.nparams, 3);
    s_check_str(&msg.event.params[0], "ml", LIT("a\nb\"c"));
    s_check_str(&msg.event.params[1], NULL, LIT("x\ny"));
    //  quotes without a newline inside were never added by OpenSIPS
    s_check_str(&msg.event.params[2], "q", LIT("\"no newline\""));

    //  empty values: named, positional in the middle and at the end
    msg = s_parse_ok(parser, LIT("E_E\na::\n\nb\n\n\n"));
    assert_int_equal(msg.event.nparams, 4);
    s_check_str(&msg.event.params[0], "a", LIT(""));
    s_check_str(&msg.event.params[1], NULL, LIT(""));
    s_check_str(&msg.event.params[2], NULL, LIT("b"));
    s_check_str(&msg.event.params[3], NULL, LIT(""));

    //  bytes >= 0x80 and NULs in values pass; an empty name is a name
    msg = s_parse_ok(parser, LIT("E_B\nv::\xe9\0\xff\n::x\n\n"));
    s_check_str(&msg.event.params[0], "v", LIT("\xe9\0\xff"));
    s_check_str(&msg.event.params[1], "", LIT("x"));

    //  legacy_strings: no ints
    evr_agent_parse_opts_t opts = {.legacy_strings = true};
    evr_agent_parser_t *strings = evr_agent_parser_new(&opts);
    assert_non_null(strings);
    msg = s_parse_ok(strings, LIT("E_S\nsip_code::200\n\n"));
    s_check_str(&msg.event.params[0], "sip_code", LIT("200"));
    evr_agent_parser_destroy(&strings);

    //  malformed
    s_refused(LIT("E_X"), EVR_AGENT_BAD_LEGACY);         //  no newline
    s_refused(LIT("E_X\n"), EVR_AGENT_BAD_LEGACY);       //  no empty line
    s_refused(LIT("E_X\na::1\n"), EVR_AGENT_BAD_LEGACY); //  no empty line
    s_refused(LIT("E_X\na::1\n\nx"), EVR_AGENT_BAD_LEGACY);
    s_refused(LIT("E_X\nml::\"a\nb\"\n"), EVR_AGENT_BAD_LEGACY);
    s_refused(LIT("\n\n"), EVR_AGENT_BAD_NAME);
    s_refused(LIT("E X\n\n"), EVR_AGENT_BAD_NAME);
    s_refused(LIT("GET / HTTP/1.1\r\n\r\n"), EVR_AGENT_BAD_NAME);
    s_refused(LIT("E_X\na\0b::1\n\n"), EVR_AGENT_BAD_PARAMS);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  What the relay's legacy encoder writes parses back to the same bytes.

static void test_legacy_round_trip(void **state)
{
    (void)state;
    evr_param_t params[] = {
        {.name = "ip",
         .name_len = 2,
         .type = EVR_PARAM_STR,
         .s = "::1",
         .s_len = 3},
        {.name = "ml",
         .name_len = 2,
         .type = EVR_PARAM_STR,
         .s = "a\n\"b\"\\\n",
         .s_len = 8},
        {.name = "n", .name_len = 1, .type = EVR_PARAM_INT, .i = -5},
        {.name = NULL, .type = EVR_PARAM_STR, .s = "", .s_len = 0},
        {.name = NULL, .type = EVR_PARAM_STR, .s = "\"q\"", .s_len = 3},
        {.name = "e",
         .name_len = 1,
         .type = EVR_PARAM_STR,
         .s = "",
         .s_len = 0},
        {.name = NULL, .type = EVR_PARAM_STR, .s = "", .s_len = 0}};
    evr_event_view_t ev = {.name = "E_LEG",
                           .name_len = 5,
                           .params = params,
                           .nparams = sizeof(params) / sizeof(params[0])};
    evr_buf_t buf = {0}, again = {0};
    assert_int_equal(evr_payload_legacy(&buf, &ev), 0);
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    evr_agent_msg_t msg = s_parse_ok(parser, buf.data, buf.len);
    assert_int_equal(msg.event.nparams, ev.nparams);
    for (size_t i = 0; i < ev.nparams; i++) {
        const evr_param_t *got = &msg.event.params[i];
        assert_int_equal(got->type, params[i].type);
        if (params[i].name)
            assert_string_equal(got->name, params[i].name);
        else
            assert_null(got->name);
        if (got->type == EVR_PARAM_STR) {
            assert_int_equal(got->s_len, params[i].s_len);
            assert_memory_equal(got->s, params[i].s, got->s_len);
        } else
            assert_true(got->i == params[i].i);
    }
    assert_int_equal(evr_payload_legacy(&again, &msg.event), 0);
    assert_int_equal(again.len, buf.len);
    assert_memory_equal(again.data, buf.data, buf.len);
    evr_buf_free(&buf);
    evr_buf_free(&again);
    evr_agent_parser_destroy(&parser);
}

//  --------------------------------------------------------------------------
//  One parser, many parses: the arena is reused and grows; each result is
//  right.

static void test_reuse(void **state)
{
    (void)state;
    evr_agent_parser_t *parser = evr_agent_parser_new(NULL);
    assert_non_null(parser);
    size_t big_len = 100000;
    char *big = malloc(big_len + 100);
    assert_non_null(big);
    size_t n = (size_t)sprintf(big, "{\"jsonrpc\":\"2.0\",\"method\":\"E_BIG\","
                                    "\"params\":{\"v\":\"");
    size_t value_start = n;
    for (; n < big_len; n++)
        big[n] = (char)('a' + n % 26);
    size_t value_len = n - value_start;
    n += (size_t)sprintf(big + n, "\"}}");
    for (int round = 0; round < 3; round++) {
        evr_agent_msg_t msg = s_parse_ok(parser, big, n);
        s_check_str(&msg.event.params[0], "v", big + value_start, value_len);
        msg = s_parse_ok(parser, LIT("E_SMALL\nx::1\n\n"));
        s_check_int(&msg.event.params[0], "x", 1);
        assert_string_equal(msg.event.name, "E_SMALL");
    }
    free(big);
    evr_agent_parser_destroy(&parser);
    evr_agent_parser_destroy(&parser); //  NULL-safe
    assert_null(parser);
}

//  --------------------------------------------------------------------------
//  Feed data to a framer in pieces of step bytes; collect the objects it
//  finds, joined by '|', into out. Returns the final rc (INCOMPLETE when
//  everything was consumed cleanly).

static evr_agent_rc_t s_frame_all(const char *data, size_t len, size_t step,
                                  char *out, size_t out_size)
{
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    size_t buf_len = 0, fed = 0, out_len = 0;
    evr_agent_framer_t framer;
    evr_agent_framer_reset(&framer);
    evr_agent_rc_t rc = EVR_AGENT_INCOMPLETE;
    out[0] = '\0';
    while (fed < len) {
        size_t chunk = len - fed < step ? len - fed : step;
        memcpy(buf + buf_len, data + fed, chunk);
        buf_len += chunk;
        fed += chunk;
        while (true) {
            size_t skip = 0, end = 0;
            rc = evr_agent_framer_next(&framer, buf, buf_len, &skip, &end);
            if (rc == EVR_AGENT_BAD_JSON)
                goto done;
            if (rc == EVR_AGENT_INCOMPLETE) {
                if (skip && !framer.started) {
                    memmove(buf, buf + skip, buf_len - skip);
                    buf_len -= skip;
                    evr_agent_framer_reset(&framer);
                }
                break;
            }
            size_t obj = end - skip;
            assert_true(out_len + obj + 2 < out_size);
            if (out_len)
                out[out_len++] = '|';
            memcpy(out + out_len, buf + skip, obj);
            out_len += obj;
            out[out_len] = '\0';
            memmove(buf, buf + end, buf_len - end);
            buf_len -= end;
            evr_agent_framer_reset(&framer);
        }
    }
done:
    free(buf);
    return rc;
}

//  --------------------------------------------------------------------------
//  Framing back-to-back objects, split at every possible boundary.

static void test_framer(void **state)
{
    (void)state;
    const char stream[] =
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"E_A\",\"params\":"
        "{\"s\":\"} { ] [ \\\" \\\\\"}}"
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_B\",\"params\":[[1],{\"x\":[]}]}"
        " \r\n\t{\"jsonrpc\":\"2.0\",\"method\":\"E_C\"}\n";
    const char expected[] =
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"E_A\",\"params\":"
        "{\"s\":\"} { ] [ \\\" \\\\\"}}"
        "|{\"jsonrpc\":\"2.0\",\"method\":\"E_B\",\"params\":[[1],{\"x\":[]}]}"
        "|{\"jsonrpc\":\"2.0\",\"method\":\"E_C\"}";
    char out[1024];
    for (size_t step = 1; step <= sizeof(stream); step++) {
        evr_agent_rc_t rc =
            s_frame_all(stream, sizeof(stream) - 1, step, out, sizeof(out));
        assert_int_equal(rc, EVR_AGENT_INCOMPLETE);
        assert_string_equal(out, expected);
    }
    //  an object cut short stays incomplete
    assert_int_equal(s_frame_all(LIT("{\"a\":\"}"), 3, out, sizeof(out)),
                     EVR_AGENT_INCOMPLETE);
    assert_string_equal(out, "");
    //  not an object: the stream cannot go on
    assert_int_equal(s_frame_all(LIT("{\"a\":1} [1]"), 1, out, sizeof(out)),
                     EVR_AGENT_BAD_JSON);
    assert_string_equal(out, "{\"a\":1}");
    assert_int_equal(
        s_frame_all(LIT("GET / HTTP/1.0\r\n"), 4, out, sizeof(out)),
        EVR_AGENT_BAD_JSON);

    //  whitespace before an object is reported as skippable
    evr_agent_framer_t framer;
    evr_agent_framer_reset(&framer);
    size_t skip = 99, end = 99;
    assert_int_equal(evr_agent_framer_next(&framer, LIT("  \n"), &skip, &end),
                     EVR_AGENT_INCOMPLETE);
    assert_int_equal(skip, 3);
    assert_int_equal(evr_agent_framer_next(&framer, LIT("  \n{}"), &skip, &end),
                     EVR_AGENT_OK);
    assert_int_equal(skip, 3);
    assert_int_equal(end, 5);
}

//  --------------------------------------------------------------------------
//  Netstrings as Kamailio's evapi writes them.

static void test_netstring(void **state)
{
    (void)state;
    size_t start = 99, end = 99;
    const char two[] = "5:hello,0:,11:{\"a\":\"b,c\"},";
    assert_int_equal(evr_agent_netstring_next(LIT(two), 100, &start, &end),
                     EVR_AGENT_OK);
    assert_int_equal(start, 2);
    assert_int_equal(end, 7);
    assert_int_equal(
        evr_agent_netstring_next(two + 8, sizeof(two) - 9, 100, &start, &end),
        EVR_AGENT_OK);
    assert_int_equal(start, 2);
    assert_int_equal(end, 2); //  empty payload
    assert_int_equal(
        evr_agent_netstring_next(two + 11, sizeof(two) - 12, 100, &start, &end),
        EVR_AGENT_OK);
    assert_memory_equal(two + 11 + start, "{\"a\":\"b,c\"}", end - start);
    //  every cut of a netstring is incomplete
    for (size_t cut = 0; cut < 8; cut++)
        assert_int_equal(evr_agent_netstring_next(two, cut, 100, &start, &end),
                         EVR_AGENT_INCOMPLETE);
    //  over the bound: refused from the length alone
    assert_int_equal(evr_agent_netstring_next(LIT("1000"), 999, &start, &end),
                     EVR_AGENT_TOO_LARGE);
    assert_int_equal(evr_agent_netstring_next(LIT("99999999999999999999999"),
                                              SIZE_MAX, &start, &end),
                     EVR_AGENT_BAD_FRAME);
    //  not netstrings
    assert_int_equal(evr_agent_netstring_next(LIT(":x,"), 100, &start, &end),
                     EVR_AGENT_BAD_FRAME);
    assert_int_equal(
        evr_agent_netstring_next(LIT("05:hello,"), 100, &start, &end),
        EVR_AGENT_BAD_FRAME);
    assert_int_equal(
        evr_agent_netstring_next(LIT("5:hello;"), 100, &start, &end),
        EVR_AGENT_BAD_FRAME);
    assert_int_equal(
        evr_agent_netstring_next(LIT("{\"a\":1}"), 100, &start, &end),
        EVR_AGENT_BAD_FRAME);
    assert_int_equal(evr_agent_netstring_next(LIT("-1:"), 100, &start, &end),
                     EVR_AGENT_BAD_FRAME);
}

//  --------------------------------------------------------------------------
//  Reason names for counters.

static void test_rc_names(void **state)
{
    (void)state;
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_OK), "ok");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_JSON), "bad_json");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_JSONRPC),
                        "bad_jsonrpc");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_NAME), "bad_name");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_PARAMS), "bad_params");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_ID), "bad_id");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_LEGACY), "bad_legacy");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_BAD_FRAME), "bad_frame");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_TOO_LARGE), "too_large");
    assert_string_equal(evr_agent_rc_name(EVR_AGENT_RC_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opensips_round_trip),
        cmocka_unit_test(test_param_types),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_too_many_params),
        cmocka_unit_test(test_event_param),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_legacy_round_trip),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_framer),
        cmocka_unit_test(test_netstring),
        cmocka_unit_test(test_rc_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
