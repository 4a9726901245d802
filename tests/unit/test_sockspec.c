/*  test_sockspec.c - unit tests of evr_sockspec, the socket string parser.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_sockspec.h"

//  Parse text, which must succeed; fail with the parser's reason if not.
static evr_sockspec_t *s_parse_ok(const char *text)
{
    char err[256] = "untouched";
    evr_sockspec_t *spec = evr_sockspec_parse(text, err, sizeof(err));
    if (!spec)
        fail_msg("'%s' rejected: %s", text, err);
    return spec;
}

//  Parse text, which must fail with a reason containing `reason`.
static void s_parse_fails(const char *text, const char *reason)
{
    char err[256] = "";
    evr_sockspec_t *spec = evr_sockspec_parse(text, err, sizeof(err));
    if (spec) {
        fail_msg("'%s' accepted as '%s'", text, evr_sockspec_canonical(spec));
        evr_sockspec_destroy(&spec);
    }
    if (!strstr(err, reason))
        fail_msg("'%s': reason '%s' does not contain '%s'", text, err, reason);
    //  One line, no trailing junk.
    assert_null(strchr(err, '\n'));
}

//  Parse text and check canonical, host, port; canonical must re-parse to
//  itself with the same match key.
static void s_check_udp(const char *text, const char *canonical,
                        const char *host, int port)
{
    evr_sockspec_t *spec = s_parse_ok(text);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_UDP);
    assert_string_equal(evr_sockspec_transport_name(spec), "udp");
    assert_string_equal(evr_sockspec_canonical(spec), canonical);
    assert_string_equal(evr_sockspec_match_key(spec), canonical);
    assert_string_equal(evr_sockspec_host(spec), host);
    assert_int_equal(evr_sockspec_port(spec), port);
    assert_null(evr_sockspec_path(spec));

    evr_sockspec_t *again = s_parse_ok(canonical);
    assert_string_equal(evr_sockspec_canonical(again), canonical);
    assert_string_equal(evr_sockspec_match_key(again),
                        evr_sockspec_match_key(spec));
    evr_sockspec_destroy(&again);
    evr_sockspec_destroy(&spec);
    assert_null(spec);
}

//  True if the two strings parse to specs with equal match keys.
static int s_same_subscriber(const char *a, const char *b)
{
    evr_sockspec_t *sa = s_parse_ok(a);
    evr_sockspec_t *sb = s_parse_ok(b);
    int same =
        strcmp(evr_sockspec_match_key(sa), evr_sockspec_match_key(sb)) == 0;
    evr_sockspec_destroy(&sa);
    evr_sockspec_destroy(&sb);
    return same;
}

static void test_udp_ipv4(void **state)
{
    s_check_udp("udp:127.0.0.1:9000", "udp:127.0.0.1:9000", "127.0.0.1", 9000);
    s_check_udp("udp:10.0.0.254:1", "udp:10.0.0.254:1", "10.0.0.254", 1);
    s_check_udp("udp:255.255.255.255:65535", "udp:255.255.255.255:65535",
                "255.255.255.255", 65535);
    //  Leading zeros in the port are accepted and dropped.
    s_check_udp("udp:127.0.0.1:09000", "udp:127.0.0.1:9000", "127.0.0.1", 9000);
}

static void test_udp_names(void **state)
{
    s_check_udp("udp:localhost:8888", "udp:localhost:8888", "localhost", 8888);
    s_check_udp("udp:Events.Example.COM:5060", "udp:events.example.com:5060",
                "Events.Example.COM", 5060);
    s_check_udp("udp:a-b.c-d.e1:10", "udp:a-b.c-d.e1:10", "a-b.c-d.e1", 10);
    s_check_udp("udp:1.2.3.4a:10", "udp:1.2.3.4a:10", "1.2.3.4a", 10);
    //  A 63-character label is the longest allowed.
    char host[80];
    memset(host, 'a', 63);
    host[63] = '\0';
    char text[128], canonical[128];
    snprintf(text, sizeof(text), "udp:%s:1", host);
    snprintf(canonical, sizeof(canonical), "udp:%s:1", host);
    s_check_udp(text, canonical, host, 1);
}

static void test_udp_ipv6(void **state)
{
    s_check_udp("udp:[::1]:9000", "udp:[::1]:9000", "::1", 9000);
    s_check_udp("udp:[0:0::1]:9000", "udp:[::1]:9000", "0:0::1", 9000);
    s_check_udp("udp:[2001:DB8:0:0:0:0:0:1]:5060", "udp:[2001:db8::1]:5060",
                "2001:DB8:0:0:0:0:0:1", 5060);
    s_check_udp("udp:[::ffff:192.0.2.1]:53", "udp:[::ffff:192.0.2.1]:53",
                "::ffff:192.0.2.1", 53);
}

static void test_udp_errors(void **state)
{
    s_parse_fails("udp:127.0.0.1", "missing port");
    s_parse_fails("udp:127.0.0.1:", "missing port");
    s_parse_fails("udp:127.0.0.1:0", "udp: port '0' out of range 1-65535");
    s_parse_fails("udp:127.0.0.1:65536", "port '65536' out of range 1-65535");
    s_parse_fails("udp:127.0.0.1:99999999999999999999", "out of range");
    s_parse_fails("udp:127.0.0.1:9x", "port '9x' is not a number");
    s_parse_fails("udp:127.0.0.1:-1", "is not a number");
    s_parse_fails("udp:127.0.0.1:+1", "is not a number");
    s_parse_fails("udp::9000", "missing host");
    s_parse_fails("udp:", "missing port");
    s_parse_fails("udp:256.1.1.1:9000", "invalid IPv4 address '256.1.1.1'");
    s_parse_fails("udp:1.2.3:9000", "invalid IPv4 address");
    s_parse_fails("udp:1.2.3.4.5:9000", "invalid IPv4 address");
    s_parse_fails("udp:bad_name:9000", "invalid character '_'");
    s_parse_fails("udp:caf\xc3\xa9.example:9000", "non-ASCII byte 0xc3");
    s_parse_fails("udp:-a.com:9000", "starts or ends with '-'");
    s_parse_fails("udp:a-.com:9000", "starts or ends with '-'");
    s_parse_fails("udp:a..com:9000", "empty label");
    s_parse_fails("udp:example.com.:9000", "empty label");
    s_parse_fails("udp:.example.com:9000", "empty label");
    char text[128];
    memset(text, 0, sizeof(text));
    strcpy(text, "udp:");
    memset(text + 4, 'a', 64);
    strcat(text, ":1");
    s_parse_fails(text, "label longer than 63");
}

static void test_udp_ipv6_errors(void **state)
{
    s_parse_fails("udp:::1:9000", "must be in brackets");
    s_parse_fails("udp:fe80::1", "must be in brackets");
    s_parse_fails("udp:[::1]", "missing port");
    s_parse_fails("udp:[::1]:", "missing port");
    s_parse_fails("udp:[::1]9000", "expected ':PORT' after ']'");
    s_parse_fails("udp:[::1:9000", "missing ']'");
    s_parse_fails("udp:[]:9000", "missing host");
    s_parse_fails("udp:[::g]:9000", "invalid IPv6 address '::g'");
    s_parse_fails("udp:[1.2.3.4]:9000", "invalid IPv6 address");
    s_parse_fails("udp:[fe80::1%eth0]:9000", "invalid IPv6 address");
    s_parse_fails("udp:[::1]:0", "out of range 1-65535");
}

static void test_udp_match_keys(void **state)
{
    //  The OpenSIPS prefix bug is gone.
    assert_false(
        s_same_subscriber("udp:127.0.0.1:9000", "udp:127.0.0.10:9000"));
    assert_false(
        s_same_subscriber("udp:127.0.0.10:9000", "udp:127.0.0.1:9000"));
    assert_false(s_same_subscriber("udp:127.0.0.1:9000", "udp:127.0.0.1:9001"));
    assert_false(s_same_subscriber("udp:[::1]:9000", "udp:[::10]:9000"));
    assert_true(s_same_subscriber("udp:127.0.0.1:9000", "udp:127.0.0.1:09000"));
    assert_true(s_same_subscriber("udp:[::1]:9000", "udp:[0:0::1]:9000"));
    assert_true(s_same_subscriber("udp:Host.Example:1", "udp:host.example:1"));
}

static void test_unix(void **state)
{
    evr_sockspec_t *spec = s_parse_ok("unix:/var/run/events.sock");
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_UNIX);
    assert_string_equal(evr_sockspec_transport_name(spec), "unix");
    assert_string_equal(evr_sockspec_canonical(spec),
                        "unix:/var/run/events.sock");
    assert_string_equal(evr_sockspec_match_key(spec),
                        "unix:/var/run/events.sock");
    assert_string_equal(evr_sockspec_path(spec), "/var/run/events.sock");
    assert_null(evr_sockspec_host(spec));
    assert_int_equal(evr_sockspec_port(spec), 0);
    evr_sockspec_destroy(&spec);
    assert_null(spec);

    //  Non-ASCII bytes are legal in file names.
    spec = s_parse_ok("unix:/tmp/caf\xc3\xa9.sock");
    assert_string_equal(evr_sockspec_path(spec), "/tmp/caf\xc3\xa9.sock");
    evr_sockspec_destroy(&spec);

    //  A colon inside the path belongs to the path.
    spec = s_parse_ok("unix:/tmp/a:b");
    assert_string_equal(evr_sockspec_path(spec), "/tmp/a:b");
    evr_sockspec_destroy(&spec);

    //  107 bytes fit sun_path (108 with the NUL), 108 do not.
    char text[256] = "unix:";
    memset(text + 5, 'p', 107);
    text[5] = '/';
    text[5 + 107] = '\0';
    spec = s_parse_ok(text);
    assert_int_equal(strlen(evr_sockspec_path(spec)), 107);
    evr_sockspec_destroy(&spec);
    text[5 + 107] = 'p';
    text[5 + 108] = '\0';
    s_parse_fails(text, "longer than the 107-byte limit");

    s_parse_fails("unix:", "unix: missing path");
    s_parse_fails("unix:tmp/x.sock", "must be absolute");
    s_parse_fails("unix:./x.sock", "must be absolute");
    assert_false(s_same_subscriber("unix:/tmp/a", "unix:/tmp/ab"));
    assert_true(s_same_subscriber("unix:/tmp/a", "unix:/tmp/a"));
}

static void test_flatstore(void **state)
{
    evr_sockspec_t *spec = s_parse_ok("flatstore:/var/log/events.log");
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_FLATSTORE);
    assert_string_equal(evr_sockspec_transport_name(spec), "flatstore");
    assert_string_equal(evr_sockspec_canonical(spec),
                        "flatstore:/var/log/events.log");
    assert_string_equal(evr_sockspec_match_key(spec),
                        "flatstore:/var/log/events.log");
    assert_string_equal(evr_sockspec_path(spec), "/var/log/events.log");
    assert_null(evr_sockspec_host(spec));
    assert_int_equal(evr_sockspec_port(spec), 0);
    evr_sockspec_destroy(&spec);

    s_parse_fails("flatstore:", "flatstore: missing path");
    s_parse_fails("flatstore:events.log", "must be absolute");
    s_parse_fails("flatstore:/var/log/", "must not end in '/'");
    s_parse_fails("flatstore:/", "must not end in '/'");
    assert_false(s_same_subscriber("flatstore:/tmp/a", "unix:/tmp/a"));
    assert_false(s_same_subscriber("flatstore:/tmp/a", "flatstore:/tmp/a2"));
}

static void test_transport_prefix(void **state)
{
    s_parse_fails("tcpx:1.2.3.4:5",
                  "unknown transport 'tcpx' (known: udp, unix, flatstore)");
    s_parse_fails("UDP:127.0.0.1:9000", "unknown transport 'UDP'");
    s_parse_fails("tcp:127.0.0.1:9000", "unknown transport 'tcp'");
    s_parse_fails("/tmp/events.sock", "missing transport prefix");
    s_parse_fails(":127.0.0.1:9000", "missing transport prefix");
    s_parse_fails("udp", "missing transport prefix");
}

static void test_whole_string_checks(void **state)
{
    char err[128] = "untouched";
    assert_null(evr_sockspec_parse(NULL, err, sizeof(err)));
    assert_string_equal(err, "no socket string given");

    s_parse_fails("", "empty socket string");
    s_parse_fails("udp:127.0.0.1: 9000", "whitespace at offset 14");
    s_parse_fails(" udp:127.0.0.1:9000", "whitespace at offset 0");
    s_parse_fails("udp:127.0.0.1:9000\n", "whitespace");
    s_parse_fails("unix:/tmp/my events.sock", "whitespace");
    s_parse_fails("flatstore:/tmp/a\tb", "whitespace");
    s_parse_fails("unix:/tmp/a\001b", "control character");
    s_parse_fails("flatstore:/tmp/a\177b", "control character at offset 16");
    s_parse_fails("udp:127.0.0.1:9000\v", "whitespace at offset 18");

    //  1024 bytes are the limit; the check happens before anything else.
    char *text = malloc(2048);
    assert_non_null(text);
    strcpy(text, "flatstore:/");
    memset(text + 11, 'f', 1024 - 11);
    text[1024] = '\0';
    evr_sockspec_t *spec = s_parse_ok(text);
    evr_sockspec_destroy(&spec);
    memset(text, 'x', 2047);
    text[2047] = '\0';
    s_parse_fails(text, "socket string longer than 1024 bytes");
    free(text);
}

static void test_error_buffer(void **state)
{
    //  A tiny buffer gets a truncated, NUL-terminated reason.
    char err[8];
    memset(err, 'Z', sizeof(err));
    assert_null(evr_sockspec_parse("udp:1.2.3.4:0", err, sizeof(err)));
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_memory_equal(err, "udp: po", 8);

    //  No buffer at all is allowed.
    assert_null(evr_sockspec_parse("udp:1.2.3.4:0", NULL, 0));
    assert_null(evr_sockspec_parse("bogus", err, 0));
    assert_memory_equal(err, "udp: po", 8); //  errlen 0: untouched

    //  Success clears a stale reason.
    char ok[64] = "stale";
    evr_sockspec_t *spec = evr_sockspec_parse("udp:1.2.3.4:1", ok, sizeof(ok));
    assert_non_null(spec);
    assert_string_equal(ok, "");
    evr_sockspec_destroy(&spec);

    //  A long transport name is cut in the reason, the list stays.
    char long_name[300];
    memset(long_name, 'q', 200);
    strcpy(long_name + 200, ":x");
    char reason[256];
    assert_null(evr_sockspec_parse(long_name, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "(known: udp, unix, flatstore)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_ipv4),
        cmocka_unit_test(test_udp_names),
        cmocka_unit_test(test_udp_ipv6),
        cmocka_unit_test(test_udp_errors),
        cmocka_unit_test(test_udp_ipv6_errors),
        cmocka_unit_test(test_udp_match_keys),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_flatstore),
        cmocka_unit_test(test_transport_prefix),
        cmocka_unit_test(test_whole_string_checks),
        cmocka_unit_test(test_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
