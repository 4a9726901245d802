/*  test_payload.c - unit tests for evr_payload (byte-exact encoders).

    Every expectation is the exact byte string a subscriber would receive
    from OpenSIPS (evi reference sections 4.1, 4.2, 4.5 and 10).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evr_payload.h"

//  A named string param from a C string literal.
#define STR(n, v)                                                              \
    {                                                                          \
        .name = (n), .name_len = sizeof(n) - 1, .type = EVR_PARAM_STR,         \
        .s = (v), .s_len = sizeof(v) - 1                                       \
    }
//  A named int param.
#define INT(n, v)                                                              \
    {                                                                          \
        .name = (n), .name_len = sizeof(n) - 1, .type = EVR_PARAM_INT,         \
        .i = (v)                                                               \
    }
//  A named null param.
#define NUL(n)                                                                 \
    {                                                                          \
        .name = (n), .name_len = sizeof(n) - 1, .type = EVR_PARAM_NULL         \
    }
//  Positional (unnamed) params.
#define USTR(v)                                                                \
    {                                                                          \
        .type = EVR_PARAM_STR, .s = (v), .s_len = sizeof(v) - 1                \
    }
#define UINT(v)                                                                \
    {                                                                          \
        .type = EVR_PARAM_INT, .i = (v)                                        \
    }
#define UNUL()                                                                 \
    {                                                                          \
        .type = EVR_PARAM_NULL                                                 \
    }

//  An event view over a name literal and a params array.
#define EVENT(nm, arr)                                                         \
    {                                                                          \
        .name = (nm), .name_len = sizeof(nm) - 1, .params = (arr),             \
        .nparams = sizeof(arr) / sizeof((arr)[0])                              \
    }
#define EVENT0(nm)                                                             \
    {                                                                          \
        .name = (nm), .name_len = sizeof(nm) - 1, .params = NULL, .nparams = 0 \
    }

//  Assert the buffer holds exactly the literal's bytes (NULs included).
#define assert_buf(buf, lit) s_assert_buf((buf), (lit), sizeof(lit) - 1)

//  --------------------------------------------------------------------------
//  Print bytes with C escapes so a mismatch is readable.

static void s_print_escaped(const char *label, const char *data, size_t len)
{
    print_message("%s (%zu bytes): \"", label, len);
    for (size_t index = 0; index < len; index++) {
        unsigned char c = (unsigned char)data[index];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            print_message("%c", c);
        else
            print_message("\\x%02x", c);
    }
    print_message("\"\n");
}

//  --------------------------------------------------------------------------
//  Fail unless buf holds exactly expected[0..len).

static void s_assert_buf(const evr_buf_t *buf, const char *expected, size_t len)
{
    if (buf->len != len || (len && memcmp(buf->data, expected, len) != 0)) {
        s_print_escaped("expected", expected, len);
        s_print_escaped("actual  ", buf->data, buf->len);
        fail_msg("payload bytes differ");
    }
    assert_true(buf->len <= buf->cap);
}

//  --------------------------------------------------------------------------
//  A slow, obvious JSON string encoder (cJSON rules) used as the reference
//  for the fast one. Writes into out (room for 6 * len + 2) and returns the
//  length.

static size_t s_ref_json(char *out, const unsigned char *s, size_t len)
{
    size_t n = 0;
    out[n++] = '"';
    for (size_t index = 0; index < len; index++) {
        unsigned char c = s[index];
        const char *short_esc = NULL;
        switch (c) {
            case '"':
                short_esc = "\\\"";
                break;
            case '\\':
                short_esc = "\\\\";
                break;
            case '\b':
                short_esc = "\\b";
                break;
            case '\f':
                short_esc = "\\f";
                break;
            case '\n':
                short_esc = "\\n";
                break;
            case '\r':
                short_esc = "\\r";
                break;
            case '\t':
                short_esc = "\\t";
                break;
            default:
                break;
        }
        if (short_esc) {
            memcpy(out + n, short_esc, 2);
            n += 2;
        } else if (c < 0x20) {
            sprintf(out + n, "\\u%04x", c);
            n += 6;
        } else
            out[n++] = (char)c;
    }
    out[n++] = '"';
    return n;
}

//  ==========================================================================
//  evr_buf_t

static void test_buf_append_reset_free(void **state)
{
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append(&buf, "abc", 3), 0);
    assert_int_equal(evr_buf_append(&buf, NULL, 0), 0);
    assert_int_equal(evr_buf_append(&buf, "de", 2), 0);
    assert_buf(&buf, "abcde");
    char *data = buf.data;
    size_t cap = buf.cap;
    evr_buf_reset(&buf);
    assert_int_equal(buf.len, 0);
    assert_ptr_equal(buf.data, data); //  memory kept
    assert_int_equal(buf.cap, cap);
    assert_int_equal(evr_buf_append(&buf, "x", 1), 0);
    assert_buf(&buf, "x");
    evr_buf_free(&buf);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_int_equal(buf.cap, 0);
    //  a freed buffer is reusable
    assert_int_equal(evr_buf_append(&buf, "y", 1), 0);
    assert_buf(&buf, "y");
    evr_buf_free(&buf);
    evr_buf_free(&buf); //  twice is harmless
}

static void test_buf_growth(void **state)
{
    evr_buf_t buf = {0};
    //  many small appends: contents intact, capacity grows geometrically
    size_t reallocs = 0;
    size_t last_cap = 0;
    for (size_t index = 0; index < 100000; index++) {
        char c = (char)('a' + index % 26);
        assert_int_equal(evr_buf_append(&buf, &c, 1), 0);
        if (buf.cap != last_cap) {
            reallocs++;
            last_cap = buf.cap;
        }
    }
    assert_int_equal(buf.len, 100000);
    assert_true(reallocs < 20);
    for (size_t index = 0; index < 100000; index++)
        assert_int_equal(buf.data[index], (char)('a' + index % 26));
    //  one big append
    size_t big = 3 * 1024 * 1024 + 7;
    char *block = malloc(big);
    assert_non_null(block);
    memset(block, 'z', big);
    assert_int_equal(evr_buf_append(&buf, block, big), 0);
    assert_int_equal(buf.len, 100000 + big);
    assert_memory_equal(buf.data + 100000, block, big);
    free(block);
    evr_buf_free(&buf);
}

static void test_buf_overflow_refused(void **state)
{
    //  sizes that cannot be allocated fail cleanly and change nothing; the
    //  data pointer is never read because the size check comes first
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append(&buf, "ab", 2), 0);
    assert_int_equal(evr_buf_append(&buf, "x", SIZE_MAX), -1);
    assert_int_equal(evr_buf_append(&buf, "x", SIZE_MAX - 1), -1);
    assert_int_equal(evr_buf_append_json_string(&buf, "x", SIZE_MAX), -1);
    assert_int_equal(evr_buf_append_json_string(&buf, "x", SIZE_MAX - 2), -1);
    assert_int_equal(evr_buf_append_json_string(&buf, "x", SIZE_MAX / 2), -1);
    assert_buf(&buf, "ab");
    evr_buf_free(&buf);
}

//  ==========================================================================
//  JSON string escaping

static void test_json_string_basic(void **state)
{
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append_json_string(&buf, "hello", 5), 0);
    assert_buf(&buf, "\"hello\"");
    evr_buf_reset(&buf);
    assert_int_equal(evr_buf_append_json_string(&buf, "", 0), 0);
    assert_buf(&buf, "\"\"");
    evr_buf_reset(&buf);
    assert_int_equal(evr_buf_append_json_string(&buf, NULL, 0), 0);
    assert_buf(&buf, "\"\"");
    evr_buf_reset(&buf);
    //  length is honoured, not NUL termination
    assert_int_equal(evr_buf_append_json_string(&buf, "abcdef", 3), 0);
    assert_buf(&buf, "\"abc\"");
    //  appends after what is there
    assert_int_equal(evr_buf_append_json_string(&buf, "d", 1), 0);
    assert_buf(&buf, "\"abc\"\"d\"");
    evr_buf_free(&buf);
}

static void test_json_string_short_escapes(void **state)
{
    evr_buf_t buf = {0};
    const char in[] = "q\"b\\s\bf\fn\nr\rt\t.";
    assert_int_equal(evr_buf_append_json_string(&buf, in, sizeof(in) - 1), 0);
    assert_buf(&buf, "\"q\\\"b\\\\s\\bf\\fn\\nr\\rt\\t.\"");
    evr_buf_free(&buf);
}

static void test_json_string_all_control_chars(void **state)
{
    //  every byte 0x00 - 0x1f, spelled out by hand
    char in[32];
    for (int c = 0; c < 32; c++)
        in[c] = (char)c;
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append_json_string(&buf, in, sizeof(in)), 0);
    assert_buf(&buf, "\""
                     "\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007"
                     "\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f"
                     "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
                     "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"
                     "\"");
    evr_buf_free(&buf);
}

static void test_json_string_raw_bytes(void **state)
{
    //  space, DEL, '/', '<', '>', '&', '\'', UTF-8 (2, 3, 4 bytes, U+2028,
    //  U+2029) and invalid UTF-8 all pass through untouched
    const char in[] = " \x7f/<>&'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                      "\xe2\x80\xa8\xe2\x80\xa9\xff\x80\xfe";
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append_json_string(&buf, in, sizeof(in) - 1), 0);
    assert_buf(&buf, "\" \x7f/<>&'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                     "\xe2\x80\xa8\xe2\x80\xa9\xff\x80\xfe\"");
    evr_buf_free(&buf);
}

static void test_json_string_every_byte_every_position(void **state)
{
    //  each of the 256 byte values at each position of strings of length
    //  1..24 (so on both sides of every 8-byte word boundary), against the
    //  reference encoder
    unsigned char in[24];
    char expected[6 * sizeof(in) + 2];
    evr_buf_t buf = {0};
    for (size_t len = 1; len <= sizeof(in); len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (int c = 0; c < 256; c++) {
                memset(in, 'a', sizeof(in));
                in[pos] = (unsigned char)c;
                size_t n = s_ref_json(expected, in, len);
                evr_buf_reset(&buf);
                assert_int_equal(
                    evr_buf_append_json_string(&buf, (char *)in, len), 0);
                s_assert_buf(&buf, expected, n);
            }
        }
    }
    //  and strings made only of bytes that need escaping, next to each
    //  other, with no plain byte in between
    for (size_t len = 1; len <= sizeof(in); len++) {
        for (size_t index = 0; index < len; index++)
            in[index] = (unsigned char)("\"\\\n\x01\x1f"[index % 5]);
        size_t n = s_ref_json(expected, in, len);
        evr_buf_reset(&buf);
        assert_int_equal(evr_buf_append_json_string(&buf, (char *)in, len), 0);
        s_assert_buf(&buf, expected, n);
    }
    evr_buf_free(&buf);
}

static void test_json_string_large(void **state)
{
    //  1 MiB of pseudo-random bytes (lots of escapes: output grows up to
    //  6x), into a buffer that already holds data
    size_t len = 1024 * 1024;
    unsigned char *in = malloc(len);
    char *expected = malloc(6 * len + 2);
    assert_non_null(in);
    assert_non_null(expected);
    uint32_t x = 12345;
    for (size_t index = 0; index < len; index++) {
        x = x * 1103515245u + 12345u;
        unsigned char c = (unsigned char)(x >> 16);
        //  mostly plain text with some specials, so both paths run
        in[index] = (x >> 8) % 8 == 0 ? c : (unsigned char)('a' + c % 26);
    }
    size_t n = s_ref_json(expected, in, len);
    evr_buf_t buf = {0};
    assert_int_equal(evr_buf_append(&buf, "prefix", 6), 0);
    assert_int_equal(evr_buf_append_json_string(&buf, (char *)in, len), 0);
    assert_int_equal(buf.len, 6 + n);
    assert_memory_equal(buf.data, "prefix", 6);
    assert_memory_equal(buf.data + 6, expected, n);

    //  all control bytes: the worst case, 6 output bytes per input byte
    memset(in, 0x01, len);
    evr_buf_reset(&buf);
    assert_int_equal(evr_buf_append_json_string(&buf, (char *)in, len), 0);
    assert_int_equal(buf.len, 6 * len + 2);
    assert_memory_equal(buf.data + 1 + 6 * (len - 1), "\\u0001\"", 7);

    free(in);
    free(expected);
    evr_buf_free(&buf);
}

//  ==========================================================================
//  JSON-RPC notifications

static void test_jsonrpc_reference_examples(void **state)
{
    evr_buf_t buf = {0};

    evr_param_t pike[] = {STR("ip", "192.168.2.11")};
    evr_event_view_t ev1 = EVENT("E_PIKE_BLOCKED", pike);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev1, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_PIKE_BLOCKED\","
                     "\"params\":{\"ip\":\"192.168.2.11\"}}");

    evr_param_t mine[] = {UINT(5), UINT(3)};
    evr_event_view_t ev2 = EVENT("E_MY_EVENT", mine);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev2, NULL), 0);
    assert_buf(
        &buf,
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_MY_EVENT\",\"params\":[5,3]}");

    evr_event_view_t ev3 = EVENT0("E_NO_PARAMS");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev3, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_NO_PARAMS\"}");

    evr_param_t x[] = {INT("a", 1)};
    evr_event_view_t ev4 = EVENT("E_X", x);
    evr_jsonrpc_opts_t opts = {.id = 915243442};
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev4, &opts), 0);
    assert_buf(&buf, "{\"id\":915243442,\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                     "\"params\":{\"a\":1}}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_id(void **state)
{
    evr_buf_t buf = {0};
    evr_event_view_t ev = EVENT0("E_NO_PARAMS");
    //  id 0 is a notification: no "id" key at all
    evr_jsonrpc_opts_t opts = {.id = 0};
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_NO_PARAMS\"}");
    opts.id = 1;
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf,
               "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"E_NO_PARAMS\"}");
    opts.id = UINT64_MAX;
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf, "{\"id\":18446744073709551615,\"jsonrpc\":\"2.0\","
                     "\"method\":\"E_NO_PARAMS\"}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_method(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {UINT(7)};
    evr_event_view_t ev = EVENT("E_CALL", params);
    evr_jsonrpc_opts_t opts = {.method = "notify_me"};
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf,
               "{\"jsonrpc\":\"2.0\",\"method\":\"notify_me\",\"params\":[7]}");
    //  a method is escaped like any string
    opts.method = "a\"b\\c\x01";
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"a\\\"b\\\\c\\u0001\","
                     "\"params\":[7]}");
    //  so is an event name
    evr_event_view_t odd = EVENT("E_\"Q\"\n", params);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &odd, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_\\\"Q\\\"\\n\","
                     "\"params\":[7]}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_values(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {INT("zero", 0),        INT("neg", -42),
                            INT("min", INT64_MIN), INT("max", INT64_MAX),
                            STR("empty", ""),      NUL("null"),
                            STR("s", "x\ty"),      INT("m1", -1)};
    evr_event_view_t ev = EVENT("E_V", params);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);
    assert_buf(&buf,
               "{\"jsonrpc\":\"2.0\",\"method\":\"E_V\",\"params\":{"
               "\"zero\":0,\"neg\":-42,"
               "\"min\":-9223372036854775808,"
               "\"max\":9223372036854775807,"
               "\"empty\":\"\",\"null\":null,\"s\":\"x\\ty\",\"m1\":-1}}");

    evr_param_t positional[] = {UNUL(), USTR(""), UINT(INT64_MIN),
                                USTR("\x7f/<")};
    evr_event_view_t ev2 = EVENT("E_P", positional);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev2, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_P\",\"params\":["
                     "null,\"\",-9223372036854775808,\"\x7f/<\"]}");

    //  a STR param with no bytes at all (s == NULL) is an empty string
    evr_param_t nostr[] = {{.name = "k", .name_len = 1, .type = EVR_PARAM_STR}};
    evr_event_view_t ev3 = EVENT("E_S", nostr);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev3, NULL), 0);
    assert_buf(
        &buf,
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_S\",\"params\":{\"k\":\"\"}}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_keys_escaped(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {STR("a\"b", "1"),     STR("c\\d", "2"),
                            STR("e\nf\x1f", "3"), STR("\xc3\xa9/<", "4"),
                            STR("dup", "5"),      STR("dup", "6")};
    evr_event_view_t ev = EVENT("E_K", params);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_K\",\"params\":{"
                     "\"a\\\"b\":\"1\",\"c\\\\d\":\"2\",\"e\\nf\\u001f\":\"3\","
                     "\"\xc3\xa9/<\":\"4\",\"dup\":\"5\",\"dup\":\"6\"}}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_mixed_named_unnamed(void **state)
{
    evr_buf_t buf = {0};
    //  first param named: an object; a later unnamed param gets key ""
    evr_param_t obj[] = {INT("a", 1), UINT(2), STR("c", "3")};
    evr_event_view_t ev = EVENT("E_M", obj);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_M\",\"params\":{"
                     "\"a\":1,\"\":2,\"c\":\"3\"}}");
    //  first param unnamed: an array; later names are dropped
    evr_param_t arr[] = {UINT(1), INT("b", 2), NUL("c")};
    evr_event_view_t ev2 = EVENT("E_M", arr);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev2, NULL), 0);
    assert_buf(
        &buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_M\",\"params\":[1,2,null]}");
    //  an empty (non-NULL) name still makes an object
    evr_param_t empty_name[] = {{.name = "", .type = EVR_PARAM_INT, .i = 9}};
    evr_event_view_t ev3 = EVENT("E_M", empty_name);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev3, NULL), 0);
    assert_buf(&buf,
               "{\"jsonrpc\":\"2.0\",\"method\":\"E_M\",\"params\":{\"\":9}}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_event_param(void **state)
{
    evr_buf_t buf = {0};
    evr_jsonrpc_opts_t opts = {.event_param = "event"};

    //  object: first key
    evr_param_t obj[] = {STR("ip", "10.0.0.1"), INT("n", 2)};
    evr_event_view_t ev = EVENT("E_PIKE_BLOCKED", obj);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, &opts), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_PIKE_BLOCKED\","
                     "\"params\":{\"event\":\"E_PIKE_BLOCKED\","
                     "\"ip\":\"10.0.0.1\",\"n\":2}}");

    //  array: first element
    evr_param_t arr[] = {UINT(5), USTR("x")};
    evr_event_view_t ev2 = EVENT("E_MY_EVENT", arr);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev2, &opts), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_MY_EVENT\","
                     "\"params\":[\"E_MY_EVENT\",5,\"x\"]}");

    //  no params: left out with them
    evr_event_view_t ev3 = EVENT0("E_NO_PARAMS");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev3, &opts), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_NO_PARAMS\"}");

    //  together with id and method; key and name escaped
    evr_jsonrpc_opts_t all = {
        .id = 3, .method = "m", .event_param = "ev\"name"};
    evr_event_view_t ev4 = EVENT("E_\\X", obj);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev4, &all), 0);
    assert_buf(&buf, "{\"id\":3,\"jsonrpc\":\"2.0\",\"method\":\"m\","
                     "\"params\":{\"ev\\\"name\":\"E_\\\\X\","
                     "\"ip\":\"10.0.0.1\",\"n\":2}}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_appends(void **state)
{
    //  encoders append: what is in the buffer stays
    evr_buf_t buf = {0};
    evr_event_view_t ev = EVENT0("E_A");
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);
    assert_buf(&buf, "{\"jsonrpc\":\"2.0\",\"method\":\"E_A\"}"
                     "{\"jsonrpc\":\"2.0\",\"method\":\"E_A\"}");
    evr_buf_free(&buf);
}

static void test_jsonrpc_large(void **state)
{
    //  many params with big values: the buffer grows from empty
    enum { NPARAMS = 100, VLEN = 10000 };
    char *value = malloc(VLEN);
    assert_non_null(value);
    for (size_t index = 0; index < VLEN; index++)
        value[index] = index % 100 == 99 ? '"' : 'v';
    evr_param_t params[NPARAMS];
    for (size_t index = 0; index < NPARAMS; index++)
        params[index] = (evr_param_t){.name = "k",
                                      .name_len = 1,
                                      .type = EVR_PARAM_STR,
                                      .s = value,
                                      .s_len = VLEN};
    evr_event_view_t ev = {
        .name = "E_BIG", .name_len = 5, .params = params, .nparams = NPARAMS};
    evr_buf_t buf = {0};
    assert_int_equal(evr_payload_jsonrpc(&buf, &ev, NULL), 0);

    //  build the expectation piece by piece
    size_t esc_len = VLEN + VLEN / 100; //  one '\' per '"'
    size_t cap = 64 + NPARAMS * (esc_len + 8);
    char *expected = malloc(cap);
    assert_non_null(expected);
    size_t n = 0;
    n += (size_t)sprintf(expected + n,
                         "{\"jsonrpc\":\"2.0\",\"method\":\"E_BIG\","
                         "\"params\":{");
    for (size_t index = 0; index < NPARAMS; index++) {
        if (index)
            expected[n++] = ',';
        memcpy(expected + n, "\"k\":", 4);
        n += 4;
        n += s_ref_json(expected + n, (unsigned char *)value, VLEN);
    }
    memcpy(expected + n, "}}", 2);
    n += 2;
    s_assert_buf(&buf, expected, n);
    free(expected);
    free(value);
    evr_buf_free(&buf);
}

//  ==========================================================================
//  legacy (<= 3.0) text

//  --------------------------------------------------------------------------
//  evr_payload_jsonrpc_rewrite: the variant for opts of a notification must
//  be byte-identical to encoding the event with opts directly.

//  Encode ev without opts, rewrite it with opts (behind a prefix already in
//  the buffer, which must stay), and compare with the direct encoding.
static void s_check_rewrite(const evr_event_view_t *ev,
                            const evr_jsonrpc_opts_t *opts)
{
    evr_buf_t plain = {0}, direct = {0}, rewritten = {0};
    assert_int_equal(evr_payload_jsonrpc(&plain, ev, NULL), 0);
    assert_int_equal(evr_payload_jsonrpc(&direct, ev, opts), 0);
    //  the event name as the transport gets it: a C string
    char *name = malloc(ev->name_len + 1);
    assert_non_null(name);
    memcpy(name, ev->name, ev->name_len);
    name[ev->name_len] = 0;
    assert_int_equal(evr_buf_append(&rewritten, "PREFIX", 6), 0);
    assert_int_equal(evr_payload_jsonrpc_rewrite(&rewritten, plain.data,
                                                 plain.len, name, opts),
                     0);
    assert_true(rewritten.len >= 6);
    assert_memory_equal(rewritten.data, "PREFIX", 6);
    if (rewritten.len - 6 != direct.len ||
        memcmp(rewritten.data + 6, direct.data, direct.len) != 0) {
        s_print_escaped("input    ", plain.data, plain.len);
        s_print_escaped("expected ", direct.data, direct.len);
        s_print_escaped("rewritten", rewritten.data + 6, rewritten.len - 6);
        fail_msg("rewrite differs from the direct encoding");
    }
    free(name);
    evr_buf_free(&plain);
    evr_buf_free(&direct);
    evr_buf_free(&rewritten);
}

//  Every combination of id, method and event_param for one event, and
//  no opts at all (a plain copy).
static void s_check_rewrite_all_opts(const evr_event_view_t *ev)
{
    static const uint64_t ids[] = {0, 1, 42, 915243442, UINT64_MAX};
    static const char *const methods[] = {NULL, "m", "notify_me", "",
                                          "we\"ird\\\n\x01/<\xc3\xa9"};
    static const char *const params[] = {NULL, "event", "", "e\"p\\\t",
                                         "\xf0\x9f\x98\x80"};
    s_check_rewrite(ev, NULL);
    for (size_t a = 0; a < sizeof ids / sizeof *ids; a++)
        for (size_t b = 0; b < sizeof methods / sizeof *methods; b++)
            for (size_t c = 0; c < sizeof params / sizeof *params; c++) {
                evr_jsonrpc_opts_t opts = {.id = ids[a],
                                           .method = methods[b],
                                           .event_param = params[c]};
                s_check_rewrite(ev, &opts);
            }
}

static void test_rewrite_matches_direct(void **state)
{
    evr_param_t named[] = {STR("ip", "192.168.2.11"), INT("port", 5060)};
    evr_param_t one[] = {INT("a", 1)};
    evr_param_t positional[] = {UINT(5), UINT(3)};
    evr_param_t ustr[] = {USTR("1.2.3.4"), USTR("x y"), UNUL()};
    evr_param_t values[] = {INT("zero", 0),        INT("neg", -42),
                            INT("min", INT64_MIN), INT("max", INT64_MAX),
                            STR("empty", ""),      NUL("null"),
                            STR("s", "x\ty")};
    //  values and keys that look like the structure being split
    evr_param_t tricky[] = {STR("params", "\"}],\"params\":{"),
                            STR("k\"\\", "\\"), STR("}", "]"),
                            STR("\"method\":", "\"jsonrpc\":\"2.0\"")};
    evr_param_t escapes[] = {
        STR("v", "q\"b\\s\n\t\r\b\f\x01\x1f\x7f/<\xc3\xa9\xe2\x80\xa8"),
        STR("\x02", "\xf0\x9f\x98\x80")};
    evr_param_t mixed_obj[] = {INT("a", 1), UINT(2), STR("c", "3")};
    evr_param_t mixed_arr[] = {UINT(1), INT("b", 2), NUL("c")};
    evr_param_t empty_name[] = {{.name = "", .type = EVR_PARAM_INT, .i = 9}};
    evr_param_t nulls[] = {UNUL()};
    evr_param_t nostr[] = {{.name = "k", .name_len = 1, .type = EVR_PARAM_STR}};
    const evr_event_view_t events[] = {
        EVENT("E_PIKE_BLOCKED", named),
        EVENT("E_ONE", one),
        EVENT("E_MY_EVENT", positional),
        EVENT("E_USTR", ustr),
        EVENT("E_V", values),
        EVENT("E_TRICKY", tricky),
        EVENT("E_ESC", escapes),
        EVENT("E_MIXED", mixed_obj),
        EVENT("E_MIXED", mixed_arr),
        EVENT("E_EMPTY_NAME", empty_name),
        EVENT("E_NULL", nulls),
        EVENT("E_NOSTR", nostr),
        EVENT0("E_NO_PARAMS"),
        //  event names with bytes the method escapes
        EVENT("E_\"Q\"\n", named),
        EVENT("E_\\X\\", positional),
        EVENT0("E_\"\\\""),
        EVENT("\xc3\xa9v\x7f", one),
        EVENT0(""),
        EVENT("", positional),
    };
    for (size_t i = 0; i < sizeof events / sizeof *events; i++)
        s_check_rewrite_all_opts(&events[i]);
}

//  A small deterministic generator (xorshift) for the random events.
static uint64_t s_rand(uint64_t *seed)
{
    uint64_t x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *seed = x;
}

//  Fill out[0..len) with bytes biased toward what JSON escapes or what
//  looks like its structure; nul_ok allows '\0'.
static void s_rand_bytes(uint64_t *seed, char *out, size_t len, bool nul_ok)
{
    static const char special[] = "\"\\{}[],:\n\t\x01\x1f\x7f/<";
    for (size_t i = 0; i < len; i++) {
        uint64_t r = s_rand(seed);
        char c;
        if (r % 3 == 0)
            c = special[(r >> 8) % (sizeof special - 1)];
        else
            c = (char)((r >> 16) & 0xff);
        if (c == 0 && !nul_ok)
            c = 'z';
        out[i] = c;
    }
}

static void test_rewrite_random_events(void **state)
{
    enum { ROUNDS = 3000, MAXP = 6, MAXLEN = 12 };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    char names[MAXP][MAXLEN], values[MAXP][MAXLEN], event[MAXLEN + 1];
    char method[MAXLEN + 1], event_param[MAXLEN + 1];
    for (int round = 0; round < ROUNDS; round++) {
        evr_param_t params[MAXP];
        size_t nparams = s_rand(&seed) % (MAXP + 1);
        for (size_t p = 0; p < nparams; p++) {
            uint64_t r = s_rand(&seed);
            size_t nlen = r % MAXLEN, vlen = (r >> 8) % MAXLEN;
            s_rand_bytes(&seed, names[p], nlen, true);
            s_rand_bytes(&seed, values[p], vlen, true);
            params[p] = (evr_param_t){.name = (r >> 16) % 3 ? names[p] : NULL,
                                      .name_len = nlen,
                                      .type = (evr_param_type_t)((r >> 24) % 3),
                                      .i = (int64_t)s_rand(&seed),
                                      .s = values[p],
                                      .s_len = vlen};
        }
        size_t elen = s_rand(&seed) % MAXLEN;
        s_rand_bytes(&seed, event, elen, false);
        event[elen] = 0;
        evr_event_view_t ev = {.name = event,
                               .name_len = elen,
                               .params = nparams ? params : NULL,
                               .nparams = nparams};
        uint64_t r = s_rand(&seed);
        size_t mlen = r % MAXLEN, plen = (r >> 8) % MAXLEN;
        s_rand_bytes(&seed, method, mlen, false);
        method[mlen] = 0;
        s_rand_bytes(&seed, event_param, plen, false);
        event_param[plen] = 0;
        evr_jsonrpc_opts_t opts = {
            .id = (r >> 16) % 2 ? s_rand(&seed) % 100000 : 0,
            .method = (r >> 20) % 2 ? method : NULL,
            .event_param = (r >> 24) % 2 ? event_param : NULL};
        s_check_rewrite(&ev, &opts);
    }
}

//  Rewrite must refuse (-1) and leave out unchanged.
static void s_check_refused(const char *json, const char *event,
                            const evr_jsonrpc_opts_t *opts)
{
    evr_buf_t out = {0};
    assert_int_equal(evr_buf_append(&out, "KEEP", 4), 0);
    assert_int_equal(
        evr_payload_jsonrpc_rewrite(&out, json, strlen(json), event, opts), -1);
    assert_buf(&out, "KEEP");
    evr_buf_free(&out);
}

static void test_rewrite_refuses_other_shapes(void **state)
{
    evr_jsonrpc_opts_t opts = {.id = 7, .event_param = "ev"};
    static const char *const bad[] = {
        "",
        "{",
        "{}",
        "{\"jsonrpc\":\"2.0\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\\\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\"",
        "{\"jsonrpc\":\"2.0\",\"method\":E_X}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\"}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\"} ",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":{}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":{\"a\":1]}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":\"x\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1],\"id\":1}",
        //  already a request: the id comes first
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"E_X\"}",
        " {\"jsonrpc\":\"2.0\",\"method\":\"E_X\"}",
        "{\"jsonrpc\":\"1.0\",\"method\":\"E_X\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        s_check_refused(bad[i], "E_X", &opts);
        s_check_refused(bad[i], "E_X", NULL);
    }
    //  event_param needs the event name when there are params ...
    s_check_refused("{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1]}",
                    NULL, &opts);
    //  ... but not without params, nor without event_param
    evr_buf_t out = {0};
    const char *none = "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\"}";
    assert_int_equal(
        evr_payload_jsonrpc_rewrite(&out, none, strlen(none), NULL, &opts), 0);
    assert_buf(&out, "{\"id\":7,\"jsonrpc\":\"2.0\",\"method\":\"E_X\"}");
    evr_buf_reset(&out);
    evr_jsonrpc_opts_t id_only = {.id = 8};
    const char *arr = "{\"jsonrpc\":\"2.0\",\"method\":\"E_X\",\"params\":[1]}";
    assert_int_equal(
        evr_payload_jsonrpc_rewrite(&out, arr, strlen(arr), NULL, &id_only), 0);
    assert_buf(&out, "{\"id\":8,\"jsonrpc\":\"2.0\",\"method\":\"E_X\","
                     "\"params\":[1]}");
    evr_buf_free(&out);
}

static void test_rewrite_event_stream_examples(void **state)
{
    //  reference section 4.1 / 10: what event_stream puts on the wire
    evr_buf_t out = {0};
    const char *in = "{\"jsonrpc\":\"2.0\",\"method\":\"E_PIKE_BLOCKED\","
                     "\"params\":{\"ip\":\"192.168.2.11\"}}";
    evr_jsonrpc_opts_t opts = {.id = 915243442};
    assert_int_equal(evr_payload_jsonrpc_rewrite(&out, in, strlen(in),
                                                 "E_PIKE_BLOCKED", &opts),
                     0);
    assert_buf(&out, "{\"id\":915243442,\"jsonrpc\":\"2.0\","
                     "\"method\":\"E_PIKE_BLOCKED\","
                     "\"params\":{\"ip\":\"192.168.2.11\"}}");
    evr_buf_reset(&out);
    evr_jsonrpc_opts_t stream = {
        .id = 2, .method = "pike", .event_param = "event"};
    assert_int_equal(evr_payload_jsonrpc_rewrite(&out, in, strlen(in),
                                                 "E_PIKE_BLOCKED", &stream),
                     0);
    assert_buf(&out, "{\"id\":2,\"jsonrpc\":\"2.0\",\"method\":\"pike\","
                     "\"params\":{\"event\":\"E_PIKE_BLOCKED\","
                     "\"ip\":\"192.168.2.11\"}}");
    evr_buf_free(&out);
}

static void test_rewrite_large(void **state)
{
    //  a big payload is copied through in one piece
    enum { NPARAMS = 50, VLEN = 20000 };
    char *value = malloc(VLEN);
    assert_non_null(value);
    for (size_t i = 0; i < VLEN; i++)
        value[i] = (char)(i % 97 == 0 ? '"' : 'a' + i % 26);
    evr_param_t params[NPARAMS];
    for (size_t p = 0; p < NPARAMS; p++)
        params[p] = (evr_param_t){.name = "k",
                                  .name_len = 1,
                                  .type = EVR_PARAM_STR,
                                  .s = value,
                                  .s_len = VLEN};
    evr_event_view_t ev = EVENT("E_BIG", params);
    evr_jsonrpc_opts_t opts = {.id = 99, .method = "x", .event_param = "ev"};
    s_check_rewrite(&ev, &opts);
    free(value);
}

static void test_legacy_basic(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {STR("ip", "192.168.2.11"),
                            INT("n", -7),
                            NUL("none"),
                            STR("empty", ""),
                            UINT(42),
                            USTR("pos"),
                            UNUL()};
    evr_event_view_t ev = EVENT("E_PIKE_BLOCKED", params);
    assert_int_equal(evr_payload_legacy(&buf, &ev), 0);
    assert_buf(&buf, "E_PIKE_BLOCKED\n"
                     "ip::192.168.2.11\n"
                     "n::-7\n"
                     "none::\n"
                     "empty::\n"
                     "42\n"
                     "pos\n"
                     "\n"
                     "\n");
    evr_buf_free(&buf);
}

static void test_legacy_no_params(void **state)
{
    evr_buf_t buf = {0};
    evr_event_view_t ev = EVENT0("E_NO_PARAMS");
    assert_int_equal(evr_payload_legacy(&buf, &ev), 0);
    assert_buf(&buf, "E_NO_PARAMS\n\n");
    evr_buf_free(&buf);
}

static void test_legacy_quoting(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {
        //  a newline: quoted, inner quotes escaped, backslashes as they are
        STR("multi", "say \"hi\"\nto \\ \"all\""),
        //  no newline: written as it is, quotes and all
        STR("plain", "a \"quoted\" word"),
        //  only a newline
        STR("nl", "\n"),
        //  quote at the edges, unnamed
        USTR("\"\n\""),
        INT("min", INT64_MIN),
        INT("max", INT64_MAX),
    };
    evr_event_view_t ev = EVENT("E_Q", params);
    assert_int_equal(evr_payload_legacy(&buf, &ev), 0);
    assert_buf(&buf, "E_Q\n"
                     "multi::\"say \\\"hi\\\"\nto \\ \\\"all\\\"\"\n"
                     "plain::a \"quoted\" word\n"
                     "nl::\"\n\"\n"
                     "\"\\\"\n\\\"\"\n"
                     "min::-9223372036854775808\n"
                     "max::9223372036854775807\n"
                     "\n");
    evr_buf_free(&buf);
}

//  ==========================================================================
//  flatstore lines

static void test_flatstore_basic(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {
        STR("ip", "192.168.2.11"), INT("n", -3),    NUL("none"),
        STR("empty", ""),          UINT(INT64_MAX), USTR("last")};
    evr_event_view_t ev = EVENT("E_PIKE_BLOCKED", params);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", false), 0);
    assert_buf(&buf,
               "E_PIKE_BLOCKED,192.168.2.11,-3,,,9223372036854775807,last\n");
    //  suppress_name: the line starts with the first value
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", true), 0);
    assert_buf(&buf, "192.168.2.11,-3,,,9223372036854775807,last\n");
    //  NULL delimiter: the OpenSIPS default ","
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, NULL, false), 0);
    assert_buf(&buf,
               "E_PIKE_BLOCKED,192.168.2.11,-3,,,9223372036854775807,last\n");
    evr_buf_free(&buf);
}

static void test_flatstore_no_params(void **state)
{
    evr_buf_t buf = {0};
    evr_event_view_t ev = EVENT0("E_NO_PARAMS");
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", false), 0);
    assert_buf(&buf, "E_NO_PARAMS\n");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", true), 0);
    assert_buf(&buf, "\n");
    evr_buf_free(&buf);
}

static void test_flatstore_first_param_empty(void **state)
{
    //  suppress_name with an empty first field: the line starts with the
    //  delimiter of the second
    evr_buf_t buf = {0};
    evr_param_t params[] = {NUL("a"), INT("b", 1)};
    evr_event_view_t ev = EVENT("E_F", params);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", true), 0);
    assert_buf(&buf, ",1\n");
    evr_buf_reset(&buf);
    evr_param_t one[] = {NUL("a")};
    evr_event_view_t ev2 = EVENT("E_F", one);
    assert_int_equal(evr_payload_flatstore(&buf, &ev2, ",", true), 0);
    assert_buf(&buf, "\n");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev2, ",", false), 0);
    assert_buf(&buf, "E_F,\n");
    evr_buf_free(&buf);
}

static void test_flatstore_delimiter_replaced(void **state)
{
    evr_buf_t buf = {0};
    char value[] = "a,b,,c,";
    evr_param_t params[] = {{.name = "v",
                             .name_len = 1,
                             .type = EVR_PARAM_STR,
                             .s = value,
                             .s_len = sizeof(value) - 1},
                            STR("nl", "line1\nline2"), //  newlines raw
                            STR("other", "x;y|z\t")};
    evr_event_view_t ev = EVENT("E_D", params);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", false), 0);
    assert_buf(&buf, "E_D,a b  c ,line1\nline2,x;y|z\t\n");
    //  the input is never modified
    assert_string_equal(value, "a,b,,c,");
    //  a single-char delimiter other than ','
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ";", false), 0);
    assert_buf(&buf, "E_D;a,b,,c,;line1\nline2;x y|z\t\n");
    //  the event name is written as it is, delimiter and all
    evr_event_view_t named = EVENT("E,N", params);
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &named, ",", false), 0);
    assert_buf(&buf, "E,N,a b  c ,line1\nline2,x;y|z\t\n");
    evr_buf_free(&buf);
}

static void test_flatstore_multichar_delimiter(void **state)
{
    evr_buf_t buf = {0};
    evr_param_t params[] = {STR("a", "x||y|z"), INT("b", 12), STR("c", "p,q"),
                            NUL("d"), STR("e", "|")};
    evr_event_view_t ev = EVENT("E_MC", params);
    //  only the delimiter's FIRST character is replaced, wherever it is
    assert_int_equal(evr_payload_flatstore(&buf, &ev, "|,", false), 0);
    assert_buf(&buf, "E_MC|,x  y z|,12|,p,q|,|, \n");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, "|,", true), 0);
    assert_buf(&buf, "x  y z|,12|,p,q|,|, \n");
    evr_buf_reset(&buf);
    assert_int_equal(evr_payload_flatstore(&buf, &ev, " :: ", false), 0);
    assert_buf(&buf, "E_MC :: x||y|z :: 12 :: p,q ::  :: |\n");
    evr_buf_free(&buf);
}

static void test_flatstore_large(void **state)
{
    enum { VLEN = 200000 };
    char *value = malloc(VLEN);
    char *expected = malloc(VLEN + 16);
    assert_non_null(value);
    assert_non_null(expected);
    for (size_t index = 0; index < VLEN; index++)
        value[index] = index % 7 == 0 ? ',' : (char)('a' + index % 26);
    evr_param_t params[] = {{.name = "v",
                             .name_len = 1,
                             .type = EVR_PARAM_STR,
                             .s = value,
                             .s_len = VLEN}};
    evr_event_view_t ev = EVENT("E_L", params);
    evr_buf_t buf = {0};
    assert_int_equal(evr_payload_flatstore(&buf, &ev, ",", false), 0);
    memcpy(expected, "E_L,", 4);
    for (size_t index = 0; index < VLEN; index++)
        expected[4 + index] = value[index] == ',' ? ' ' : value[index];
    expected[4 + VLEN] = '\n';
    s_assert_buf(&buf, expected, VLEN + 5);
    assert_int_equal(value[0], ','); //  input untouched
    free(value);
    free(expected);
    evr_buf_free(&buf);
}

//  ==========================================================================

//  --------------------------------------------------------------------------
//  event ids for evid: subscribers (evr_payload_*_add_id)

#define ID "0123456789abcdef0123456789abcdef-1700000000000000-42"

//  Encode ev as a notification, add the id, compare with expected.
static void s_check_jsonrpc_id(const evr_event_view_t *ev, const char *expected,
                               size_t expected_len)
{
    evr_buf_t plain = {0}, out = {0};
    assert_int_equal(evr_payload_jsonrpc(&plain, ev, NULL), 0);
    assert_int_equal(evr_buf_append(&out, "<", 1), 0);
    assert_int_equal(
        evr_payload_jsonrpc_add_id(&out, plain.data, plain.len, ID), 0);
    s_assert_buf(&out, expected, expected_len);
    evr_buf_free(&plain);
    evr_buf_free(&out);
}

static void test_add_id_object(void **state)
{
    evr_param_t params[] = {STR("ip", "10.0.0.1"), INT("port", 5060)};
    evr_event_view_t ev = EVENT("E_PIKE", params);
    static const char expected[] =
        "<{\"jsonrpc\":\"2.0\",\"method\":\"E_PIKE\",\"params\":{"
        "\"evrelay_id\":\"" ID "\",\"ip\":\"10.0.0.1\",\"port\":5060}}";
    s_check_jsonrpc_id(&ev, expected, sizeof expected - 1);
}

static void test_add_id_array(void **state)
{
    evr_param_t params[] = {USTR("a"), UINT(-7), UNUL()};
    evr_event_view_t ev = EVENT("E_POS", params);
    static const char expected[] =
        "<{\"jsonrpc\":\"2.0\",\"method\":\"E_POS\",\"params\":["
        "\"" ID "\",\"a\",-7,null]}";
    s_check_jsonrpc_id(&ev, expected, sizeof expected - 1);
}

static void test_add_id_no_params(void **state)
{
    evr_event_view_t ev = EVENT0("E_NONE");
    static const char expected[] =
        "<{\"jsonrpc\":\"2.0\",\"method\":\"E_NONE\",\"params\":{"
        "\"evrelay_id\":\"" ID "\"}}";
    s_check_jsonrpc_id(&ev, expected, sizeof expected - 1);
}

static void test_add_id_escapes_and_rewrite(void **state)
{
    //  an escaped quote in a value and the method; the id is escaped too;
    //  and the result still takes event_stream's rewrite
    evr_param_t params[] = {STR("q", "a\"}b")};
    evr_event_view_t ev = EVENT("E_Q", params);
    evr_buf_t plain = {0}, with = {0}, out = {0};
    assert_int_equal(evr_payload_jsonrpc(&plain, &ev, NULL), 0);
    assert_int_equal(
        evr_payload_jsonrpc_add_id(&with, plain.data, plain.len, "x\"y"), 0);
    assert_buf(&with, "{\"jsonrpc\":\"2.0\",\"method\":\"E_Q\",\"params\":{"
                      "\"evrelay_id\":\"x\\\"y\",\"q\":\"a\\\"}b\"}}");
    evr_jsonrpc_opts_t opts = {.id = 9, .event_param = "event"};
    assert_int_equal(
        evr_payload_jsonrpc_rewrite(&out, with.data, with.len, "E_Q", &opts),
        0);
    assert_buf(&out, "{\"id\":9,\"jsonrpc\":\"2.0\",\"method\":\"E_Q\","
                     "\"params\":{\"event\":\"E_Q\",\"evrelay_id\":"
                     "\"x\\\"y\",\"q\":\"a\\\"}b\"}}");
    evr_buf_free(&plain);
    evr_buf_free(&with);
    evr_buf_free(&out);
}

static void test_add_id_refuses_other_shapes(void **state)
{
    evr_buf_t out = {0};
    static const char *bad[] = {
        "",
        "{}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E\"",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E\",\"params\":{}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"E\",\"params\":[}}",
        "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"E\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(
            evr_payload_jsonrpc_add_id(&out, bad[i], strlen(bad[i]), ID), -1);
        assert_int_equal(out.len, 0);
    }
    assert_int_equal(evr_payload_legacy_add_id(&out, "E_X", 3, ID), -1);
    assert_int_equal(
        evr_payload_flatstore_add_id(&out, "E_Y,1\n", 6, "E_X", ",", false, ID),
        -1);
    assert_int_equal(
        evr_payload_flatstore_add_id(&out, "E_X,1", 5, "E_X", ",", false, ID),
        -1);
    assert_int_equal(out.len, 0);
    evr_buf_free(&out);
}

static void test_add_id_legacy(void **state)
{
    evr_param_t params[] = {STR("ip", "10.0.0.1"), INT("port", 5060)};
    evr_event_view_t ev = EVENT("E_PIKE", params);
    evr_buf_t plain = {0}, out = {0};
    assert_int_equal(evr_payload_legacy(&plain, &ev), 0);
    assert_int_equal(evr_payload_legacy_add_id(&out, plain.data, plain.len, ID),
                     0);
    assert_buf(&out,
               "E_PIKE\nevrelay_id::" ID "\nip::10.0.0.1\nport::5060\n\n");
    evr_event_view_t none = EVENT0("E_NONE");
    evr_buf_reset(&plain);
    evr_buf_reset(&out);
    assert_int_equal(evr_payload_legacy(&plain, &none), 0);
    assert_int_equal(evr_payload_legacy_add_id(&out, plain.data, plain.len, ID),
                     0);
    assert_buf(&out, "E_NONE\nevrelay_id::" ID "\n\n");
    evr_buf_free(&plain);
    evr_buf_free(&out);
}

//  Encode a flatstore line, add the id, compare.
static void s_check_flat_id(const evr_event_view_t *ev, const char *delimiter,
                            bool suppress, const char *id, const char *expected)
{
    evr_buf_t plain = {0}, out = {0};
    assert_int_equal(evr_payload_flatstore(&plain, ev, delimiter, suppress), 0);
    char name[65];
    snprintf(name, sizeof name, "%.*s", (int)ev->name_len, ev->name);
    assert_int_equal(evr_payload_flatstore_add_id(&out, plain.data, plain.len,
                                                  name, delimiter, suppress,
                                                  id),
                     0);
    s_assert_buf(&out, expected, strlen(expected));
    evr_buf_free(&plain);
    evr_buf_free(&out);
}

static void test_add_id_flatstore(void **state)
{
    evr_param_t params[] = {STR("ip", "10.0.0.1"), INT("port", 5060)};
    evr_event_view_t ev = EVENT("E_CDR", params);
    s_check_flat_id(&ev, ",", false, ID, "E_CDR," ID ",10.0.0.1,5060\n");
    s_check_flat_id(&ev, ",", true, ID, ID ",10.0.0.1,5060\n");
    s_check_flat_id(&ev, NULL, false, ID, "E_CDR," ID ",10.0.0.1,5060\n");
    s_check_flat_id(&ev, "||", false, ID, "E_CDR||" ID "||10.0.0.1||5060\n");
    //  the delimiter's first character inside the id becomes a space
    s_check_flat_id(&ev, "-", false, "a-b-3", "E_CDR-a b 3-10.0.0.1-5060\n");
    evr_event_view_t none = EVENT0("E_NONE");
    s_check_flat_id(&none, ",", false, ID, "E_NONE," ID "\n");
    s_check_flat_id(&none, ",", true, ID, ID "\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_append_reset_free),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_buf_overflow_refused),
        cmocka_unit_test(test_json_string_basic),
        cmocka_unit_test(test_json_string_short_escapes),
        cmocka_unit_test(test_json_string_all_control_chars),
        cmocka_unit_test(test_json_string_raw_bytes),
        cmocka_unit_test(test_json_string_every_byte_every_position),
        cmocka_unit_test(test_json_string_large),
        cmocka_unit_test(test_jsonrpc_reference_examples),
        cmocka_unit_test(test_jsonrpc_id),
        cmocka_unit_test(test_jsonrpc_method),
        cmocka_unit_test(test_jsonrpc_values),
        cmocka_unit_test(test_jsonrpc_keys_escaped),
        cmocka_unit_test(test_jsonrpc_mixed_named_unnamed),
        cmocka_unit_test(test_jsonrpc_event_param),
        cmocka_unit_test(test_jsonrpc_appends),
        cmocka_unit_test(test_jsonrpc_large),
        cmocka_unit_test(test_rewrite_matches_direct),
        cmocka_unit_test(test_rewrite_random_events),
        cmocka_unit_test(test_rewrite_refuses_other_shapes),
        cmocka_unit_test(test_rewrite_event_stream_examples),
        cmocka_unit_test(test_rewrite_large),
        cmocka_unit_test(test_legacy_basic),
        cmocka_unit_test(test_legacy_no_params),
        cmocka_unit_test(test_legacy_quoting),
        cmocka_unit_test(test_flatstore_basic),
        cmocka_unit_test(test_flatstore_no_params),
        cmocka_unit_test(test_flatstore_first_param_empty),
        cmocka_unit_test(test_flatstore_delimiter_replaced),
        cmocka_unit_test(test_flatstore_multichar_delimiter),
        cmocka_unit_test(test_flatstore_large),
        cmocka_unit_test(test_add_id_object),
        cmocka_unit_test(test_add_id_array),
        cmocka_unit_test(test_add_id_no_params),
        cmocka_unit_test(test_add_id_escapes_and_rewrite),
        cmocka_unit_test(test_add_id_refuses_other_shapes),
        cmocka_unit_test(test_add_id_legacy),
        cmocka_unit_test(test_add_id_flatstore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
