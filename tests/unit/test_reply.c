/*  test_reply.c - unit tests of evr_reply, evrelayctl's printer of the
    relay's answers.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_reply.h"

//  What printing one reply wrote, and what it returned.
typedef struct {
    char *out, *err;
    int rc;
} s_printed_t;

//  Print a reply with result_json (or an error when code is not 0) into
//  memory.
static s_printed_t s_print(const char *result_json, int code,
                           const char *data_json, evr_reply_kind_t kind,
                           bool as_json)
{
    Evrelay__ControlReply reply = EVRELAY__CONTROL_REPLY__INIT;
    Evrelay__ControlReply__Error error = EVRELAY__CONTROL_REPLY__ERROR__INIT;
    reply.version = 1;
    reply.result_json = (char *)result_json;
    if (code) {
        error.code = code;
        error.message = "Bad parameter value";
        error.data_json = (char *)data_json;
        reply.error = &error;
    }
    s_printed_t printed;
    size_t out_len, err_len;
    FILE *out = open_memstream(&printed.out, &out_len);
    FILE *err = open_memstream(&printed.err, &err_len);
    assert_non_null(out);
    assert_non_null(err);
    printed.rc = evr_reply_print(&reply, kind, as_json, "tcp://x", out, err);
    fclose(out);
    fclose(err);
    return printed;
}

//  Free what s_print made.
static void s_free(s_printed_t *printed)
{
    free(printed->out);
    free(printed->err);
}

static void test_ok_and_json(void **state)
{
    s_printed_t p = s_print("\"OK\"", 0, NULL, EVR_REPLY_OTHER, false);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.out, "OK\n");
    assert_string_equal(p.err, "");
    s_free(&p);
    p = s_print("{\"a\":1}", 0, NULL, EVR_REPLY_STATS, true);
    assert_string_equal(p.out, "{\"a\":1}\n");
    s_free(&p);
}

static void test_error_and_no_result(void **state)
{
    s_printed_t p = s_print(NULL, 400, "\"bad port\"", EVR_REPLY_OTHER, false);
    assert_int_equal(p.rc, -1);
    assert_string_equal(p.err, "error 400: Bad parameter value: bad port\n");
    assert_string_equal(p.out, "");
    s_free(&p);
    p = s_print(NULL, 0, NULL, EVR_REPLY_OTHER, false);
    assert_int_equal(p.rc, -1);
    assert_string_equal(p.err, "evrelayctl: answer from tcp://x has no "
                               "result\n");
    s_free(&p);
}

static void test_list_table(void **state)
{
    s_printed_t p = s_print("{\"Events\":[{\"name\":\"E_A\",\"id\":0},"
                            "{\"name\":\"E_LONGER\",\"id\":12}]}",
                            0, NULL, EVR_REPLY_LIST, false);
    assert_string_equal(p.out, "ID  NAME\n"
                               "0   E_A\n"
                               "12  E_LONGER\n");
    s_free(&p);
}

//  Found by fuzz_reply: an array of objects without keys made a table of
//  no columns (a variable-length array of size 0).
static void test_objects_without_keys(void **state)
{
    s_printed_t p = s_print("{\"uptime_s\":1,\"targets\":[{},{}]}", 0, NULL,
                            EVR_REPLY_STATS, false);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.out, "uptime_s  1\n\ntargets:\n");
    s_free(&p);
}

//  Nesting deeper than 8 objects prints as a compact JSON value, however
//  deep the answer goes (the printers recursed once per level, with a
//  label on the stack at each).
static void test_deep_nesting_bounded(void **state)
{
    size_t depth = 2000;
    char *json = malloc(depth * 6 + 16);
    assert_non_null(json);
    char *p = json;
    for (size_t i = 0; i < depth; i++)
        p += sprintf(p, "{\"k\":");
    p += sprintf(p, "1");
    for (size_t i = 0; i < depth; i++)
        *p++ = '}';
    *p = 0;
    s_printed_t printed = s_print(json, 0, NULL, EVR_REPLY_STATS, false);
    assert_int_equal(printed.rc, 0);
    //  8 levels as a label, the rest as the value
    assert_non_null(strstr(printed.out, "k.k.k.k.k.k.k.k.k  {\"k\":{\"k\":"));
    s_free(&printed);
    free(json);
}

//  Many columns: one pass over the keys, not one per key.
static void test_many_columns(void **state)
{
    size_t n = 20000;
    char *json = malloc(n * 16 + 32);
    assert_non_null(json);
    char *p = json + sprintf(json, "{\"t\":[{");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"c%zu\":%zu", i ? "," : "", i, i);
    sprintf(p, "}]}");
    s_printed_t printed = s_print(json, 0, NULL, EVR_REPLY_STATS, false);
    assert_int_equal(printed.rc, 0);
    assert_non_null(strstr(printed.out, "C19999"));
    s_free(&printed);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_and_json),
        cmocka_unit_test(test_error_and_no_result),
        cmocka_unit_test(test_list_table),
        cmocka_unit_test(test_objects_without_keys),
        cmocka_unit_test(test_deep_nesting_bounded),
        cmocka_unit_test(test_many_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
