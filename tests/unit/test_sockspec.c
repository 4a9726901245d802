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

//  True if a and b are both NULL or equal strings.
static int s_same_field(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

//  Fail unless spec's canonical form parses to the same canonical form
//  and match key. For rabbitmq the re-parse gets the default password.
static void s_check_roundtrip(const evr_sockspec_t *spec)
{
    evr_sockspec_t *again = s_parse_ok(evr_sockspec_canonical(spec));
    assert_string_equal(evr_sockspec_canonical(again),
                        evr_sockspec_canonical(spec));
    assert_string_equal(evr_sockspec_match_key(again),
                        evr_sockspec_match_key(spec));
    assert_int_equal(evr_sockspec_transport(again),
                     evr_sockspec_transport(spec));
    assert_string_equal(evr_sockspec_transport_name(again),
                        evr_sockspec_transport_name(spec));
    assert_int_equal(evr_sockspec_port(again), evr_sockspec_port(spec));
    assert_int_equal(evr_sockspec_child_count(again),
                     evr_sockspec_child_count(spec));
    assert_int_equal(evr_sockspec_event_id(again), evr_sockspec_event_id(spec));
    if (evr_sockspec_transport(spec) == EVR_TRANSPORT_RABBITMQ)
        assert_string_equal(evr_sockspec_password(again), "guest");
    evr_sockspec_destroy(&again);
}

//  Fail unless copy is an equal but separate deep copy of spec.
static void s_check_equal_copy(const evr_sockspec_t *spec,
                               const evr_sockspec_t *copy)
{
    assert_ptr_not_equal(copy, spec);
    assert_int_equal(evr_sockspec_transport(copy),
                     evr_sockspec_transport(spec));
    assert_string_equal(evr_sockspec_transport_name(copy),
                        evr_sockspec_transport_name(spec));
    assert_string_equal(evr_sockspec_canonical(copy),
                        evr_sockspec_canonical(spec));
    assert_ptr_not_equal(evr_sockspec_canonical(copy),
                         evr_sockspec_canonical(spec));
    assert_string_equal(evr_sockspec_match_key(copy),
                        evr_sockspec_match_key(spec));
    const char *(*fields[])(const evr_sockspec_t *) = {
        evr_sockspec_host,     evr_sockspec_path,        evr_sockspec_method,
        evr_sockspec_user,     evr_sockspec_password,    evr_sockspec_vhost,
        evr_sockspec_exchange, evr_sockspec_routing_key, evr_sockspec_endpoint,
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *a = fields[i](spec);
        const char *b = fields[i](copy);
        if (!s_same_field(a, b))
            fail_msg("field %zu differs: '%s' vs '%s'", i, a ? a : "(null)",
                     b ? b : "(null)");
        if (a)
            assert_ptr_not_equal(a, b);
    }
    assert_int_equal(evr_sockspec_port(copy), evr_sockspec_port(spec));
    assert_int_equal(evr_sockspec_persistent(copy),
                     evr_sockspec_persistent(spec));
    assert_int_equal(evr_sockspec_zmq_pub(copy), evr_sockspec_zmq_pub(spec));
    assert_int_equal(evr_sockspec_tls(copy), evr_sockspec_tls(spec));
    assert_int_equal(evr_sockspec_policy(copy), evr_sockspec_policy(spec));
    assert_int_equal(evr_sockspec_event_id(copy), evr_sockspec_event_id(spec));
    assert_int_equal(evr_sockspec_child_count(copy),
                     evr_sockspec_child_count(spec));
    for (size_t i = 0; i < evr_sockspec_child_count(spec); i++)
        s_check_equal_copy(evr_sockspec_child(spec, i),
                           evr_sockspec_child(copy, i));
}

//  Parse text, check canonical and match key, that the canonical form
//  round-trips and that a dup is equal; returns the spec.
static evr_sockspec_t *s_check(const char *text, const char *canonical,
                               const char *match_key)
{
    evr_sockspec_t *spec = s_parse_ok(text);
    assert_string_equal(evr_sockspec_canonical(spec), canonical);
    assert_string_equal(evr_sockspec_match_key(spec),
                        match_key ? match_key : canonical);
    s_check_roundtrip(spec);
    evr_sockspec_t *copy = evr_sockspec_dup(spec);
    assert_non_null(copy);
    s_check_equal_copy(spec, copy);
    evr_sockspec_destroy(&copy);
    return spec;
}

//  Fail unless the fields that do not apply to spec's transport are unset.
static void s_check_unset(const evr_sockspec_t *spec, const char *set)
{
    static const struct {
        const char *name;
        const char *(*get)(const evr_sockspec_t *);
    } fields[] = {
        {"host", evr_sockspec_host},
        {"path", evr_sockspec_path},
        {"method", evr_sockspec_method},
        {"user", evr_sockspec_user},
        {"password", evr_sockspec_password},
        {"vhost", evr_sockspec_vhost},
        {"exchange", evr_sockspec_exchange},
        {"routing_key", evr_sockspec_routing_key},
        {"endpoint", evr_sockspec_endpoint},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char word[32];
        snprintf(word, sizeof(word), " %s ", fields[i].name);
        if (strstr(set, word))
            continue;
        if (fields[i].get(spec))
            fail_msg("'%s': %s is '%s', expected NULL",
                     evr_sockspec_canonical(spec), fields[i].name,
                     fields[i].get(spec));
    }
    if (!strstr(set, " port "))
        assert_int_equal(evr_sockspec_port(spec), 0);
    if (!strstr(set, " persistent "))
        assert_int_equal(evr_sockspec_persistent(spec), 0);
    if (!strstr(set, " zmq_pub "))
        assert_int_equal(evr_sockspec_zmq_pub(spec), 0);
    if (!strstr(set, " tls "))
        assert_int_equal(evr_sockspec_tls(spec), 0);
    if (!strstr(set, " policy ")) {
        assert_int_equal(evr_sockspec_policy(spec), 0);
        assert_int_equal(evr_sockspec_child_count(spec), 0);
        assert_null(evr_sockspec_child(spec, 0));
    }
}

//  Parse text, which must fail with a reason containing every one of the
//  NULL-terminated key words.
static void s_parse_fails_all(const char *text, ...)
{
    char err[512] = "";
    evr_sockspec_t *spec = evr_sockspec_parse(text, err, sizeof(err));
    if (spec) {
        fail_msg("'%s' accepted as '%s'", text, evr_sockspec_canonical(spec));
        evr_sockspec_destroy(&spec);
    }
    assert_null(strchr(err, '\n'));
    va_list args;
    va_start(args, text);
    const char *word;
    while ((word = va_arg(args, const char *)))
        if (!strstr(err, word))
            fail_msg("'%s': reason '%s' does not contain '%s'", text, err,
                     word);
    va_end(args);
}

//  Parse text, which must fail; the reason must not contain secret.
static void s_parse_fails_quietly(const char *text, const char *reason,
                                  const char *secret)
{
    char err[512] = "";
    evr_sockspec_t *spec = evr_sockspec_parse(text, err, sizeof(err));
    assert_null(spec);
    if (!strstr(err, reason))
        fail_msg("'%s': reason '%s' does not contain '%s'", text, err, reason);
    if (strstr(err, secret))
        fail_msg("'%s': reason '%s' shows '%s'", text, err, secret);
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
                  "unknown transport 'tcpx' (known: udp, unix, flatstore, "
                  "tcp, rabbitmq, zmq, http, https, virtual)");
    s_parse_fails("UDP:127.0.0.1:9000", "unknown transport 'UDP'");
    s_parse_fails("TCP:127.0.0.1:9000", "unknown transport 'TCP'");
    s_parse_fails("xmlrpc:127.0.0.1:9000/m", "unknown transport 'xmlrpc'");
    s_parse_fails("kafka:127.0.0.1:9092/topic", "unknown transport 'kafka'");
    s_parse_fails("Virtual:PARALLEL", "unknown transport 'Virtual'");
    //  Only a virtual socket may hold whitespace; this one is not virtual.
    s_parse_fails("Virtual:PARALLEL udp:1.2.3.4:5", "whitespace at offset 16");
    s_parse_fails("ZMQ:push:tcp://h:1", "unknown transport 'ZMQ'");
    s_parse_fails("RabbitMQ:h/rk", "unknown transport 'RabbitMQ'");
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
    assert_non_null(strstr(reason, "(known: udp, unix, flatstore, tcp, "
                                   "rabbitmq, zmq, http, https, virtual)"));
}

static void test_tcp(void **state)
{
    evr_sockspec_t *spec =
        s_check("tcp:127.0.0.1:8080", "tcp:127.0.0.1:8080", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_TCP);
    assert_string_equal(evr_sockspec_transport_name(spec), "tcp");
    assert_string_equal(evr_sockspec_host(spec), "127.0.0.1");
    assert_int_equal(evr_sockspec_port(spec), 8080);
    assert_null(evr_sockspec_method(spec));
    s_check_unset(spec, " host port ");
    evr_sockspec_destroy(&spec);

    spec = s_check("tcp:Events.Example.COM:09000/My.Method-1_x:y",
                   "tcp:events.example.com:9000/My.Method-1_x:y", NULL);
    assert_string_equal(evr_sockspec_host(spec), "Events.Example.COM");
    assert_int_equal(evr_sockspec_port(spec), 9000);
    assert_string_equal(evr_sockspec_method(spec), "My.Method-1_x:y");
    s_check_unset(spec, " host port method ");
    evr_sockspec_destroy(&spec);

    spec = s_check("tcp:[2001:DB8:0::0:1]:9000/m", "tcp:[2001:db8::1]:9000/m",
                   NULL);
    assert_string_equal(evr_sockspec_host(spec), "2001:DB8:0::0:1");
    assert_string_equal(evr_sockspec_method(spec), "m");
    evr_sockspec_destroy(&spec);

    spec = s_check("tcp:[::1]:1", "tcp:[::1]:1", NULL);
    assert_string_equal(evr_sockspec_host(spec), "::1");
    evr_sockspec_destroy(&spec);
}

static void test_tcp_errors(void **state)
{
    s_parse_fails("tcp:", "tcp: missing port");
    s_parse_fails("tcp:127.0.0.1", "tcp: missing port");
    s_parse_fails("tcp:127.0.0.1/m", "tcp: missing port");
    s_parse_fails("tcp:127.0.0.1:", "tcp: missing port");
    s_parse_fails("tcp:127.0.0.1:0", "tcp: port '0' out of range 1-65535");
    s_parse_fails("tcp:127.0.0.1:65536/m", "port '65536' out of range");
    s_parse_fails("tcp:127.0.0.1:80a", "port '80a' is not a number");
    s_parse_fails("tcp::9000", "tcp: missing host");
    s_parse_fails("tcp:256.0.0.1:9000", "tcp: invalid IPv4 address");
    s_parse_fails("tcp:bad_host:9000", "invalid character '_' in host name");
    s_parse_fails("tcp:::1:9000", "must be in brackets");
    s_parse_fails("tcp:[::1]", "tcp: missing port");
    s_parse_fails("tcp:[::1]/m", "tcp: missing port");
    s_parse_fails("tcp:[::1:9000", "missing ']'");
    s_parse_fails("tcp:[::1]9000", "expected ':PORT' after ']'");
    s_parse_fails("tcp:[::g]:9000", "invalid IPv6 address '::g'");
    s_parse_fails("tcp:127.0.0.1:9000/", "tcp: empty method");
    s_parse_fails("tcp:127.0.0.1:9000/a/b", "invalid character '/' in method");
    s_parse_fails("tcp:127.0.0.1:9000/a?b", "invalid character '?' in method");
    s_parse_fails("tcp:127.0.0.1:9000/a@b", "invalid character '@' in method");
    s_parse_fails("tcp:127.0.0.1:9000/caf\xc3\xa9", "non-ASCII byte 0xc3");
    s_parse_fails("tcp:127.0.0.1:9000/a b", "whitespace at offset 20");
}

static void test_tcp_match_keys(void **state)
{
    assert_true(s_same_subscriber("tcp:H.example:1/m", "tcp:h.example:01/m"));
    assert_true(s_same_subscriber("tcp:[::1]:1", "tcp:[0::1]:1"));
    assert_false(s_same_subscriber("tcp:127.0.0.1:1", "tcp:127.0.0.10:1"));
    assert_false(s_same_subscriber("tcp:h:1", "tcp:h:2"));
    assert_false(s_same_subscriber("tcp:h:1", "tcp:h:1/m"));
    assert_false(s_same_subscriber("tcp:h:1/m", "tcp:h:1/M"));
    assert_false(s_same_subscriber("tcp:h:1", "udp:h:1"));
}

static void test_rabbitmq(void **state)
{
    evr_sockspec_t *spec = s_check("rabbitmq:127.0.0.1/pike",
                                   "rabbitmq:guest@127.0.0.1:5672/pike", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_RABBITMQ);
    assert_string_equal(evr_sockspec_transport_name(spec), "rabbitmq");
    assert_string_equal(evr_sockspec_host(spec), "127.0.0.1");
    assert_int_equal(evr_sockspec_port(spec), 5672);
    assert_string_equal(evr_sockspec_user(spec), "guest");
    assert_string_equal(evr_sockspec_password(spec), "guest");
    assert_string_equal(evr_sockspec_vhost(spec), "/");
    assert_string_equal(evr_sockspec_exchange(spec), "");
    assert_string_equal(evr_sockspec_routing_key(spec), "pike");
    assert_int_equal(evr_sockspec_persistent(spec), 0);
    s_check_unset(spec, " host port user password vhost exchange routing_key ");
    evr_sockspec_destroy(&spec);

    //  The OpenSIPS documentation example; the password is never shown.
    spec = s_check("rabbitmq:u:s3cret@10.0.0.1:5672/exchange=ev;persistent?cdr",
                   "rabbitmq:u@10.0.0.1:5672/exchange=ev;persistent?cdr",
                   "rabbitmq:u@10.0.0.1:5672/exchange=ev?cdr");
    assert_string_equal(evr_sockspec_user(spec), "u");
    assert_string_equal(evr_sockspec_password(spec), "s3cret");
    assert_string_equal(evr_sockspec_exchange(spec), "ev");
    assert_string_equal(evr_sockspec_routing_key(spec), "cdr");
    assert_int_equal(evr_sockspec_persistent(spec), 1);
    assert_null(strstr(evr_sockspec_canonical(spec), "s3cret"));
    assert_null(strstr(evr_sockspec_match_key(spec), "s3cret"));
    s_check_unset(spec, " host port user password vhost exchange routing_key "
                        "persistent ");
    evr_sockspec_destroy(&spec);

    //  The '@' split is on the last '@' before the host; the password may
    //  hold ':' and '@'.
    spec = s_check("rabbitmq:user:pa:ss@w@rd@Rabbit.Example:1234/rk",
                   "rabbitmq:user@rabbit.example:1234/rk", NULL);
    assert_string_equal(evr_sockspec_user(spec), "user");
    assert_string_equal(evr_sockspec_password(spec), "pa:ss@w@rd");
    assert_string_equal(evr_sockspec_host(spec), "Rabbit.Example");
    assert_int_equal(evr_sockspec_port(spec), 1234);
    evr_sockspec_destroy(&spec);

    //  A user without a password gets the default one; an empty one stays.
    spec = s_check("rabbitmq:alice@h/rk", "rabbitmq:alice@h:5672/rk", NULL);
    assert_string_equal(evr_sockspec_password(spec), "guest");
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:alice:@h/rk", "rabbitmq:alice@h:5672/rk", NULL);
    assert_string_equal(evr_sockspec_password(spec), "");
    evr_sockspec_destroy(&spec);

    //  Parameters print in a fixed order, only when not the default.
    spec = s_check("rabbitmq:h/persistent;vhost=prod;exchange=x?rk",
                   "rabbitmq:guest@h:5672/exchange=x;vhost=prod;persistent?rk",
                   "rabbitmq:guest@h:5672/exchange=x;vhost=prod?rk");
    assert_string_equal(evr_sockspec_vhost(spec), "prod");
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:h/vhost=%2F;exchange=?rk",
                   "rabbitmq:guest@h:5672/rk", NULL);
    assert_string_equal(evr_sockspec_vhost(spec), "/");
    assert_string_equal(evr_sockspec_exchange(spec), "");
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:h/vhost=%2fprod?rk",
                   "rabbitmq:guest@h:5672/vhost=%2Fprod?rk", NULL);
    assert_string_equal(evr_sockspec_vhost(spec), "/prod");
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:h/persistent?rk",
                   "rabbitmq:guest@h:5672/persistent?rk",
                   "rabbitmq:guest@h:5672/rk");
    evr_sockspec_destroy(&spec);

    //  An empty parameter list and empty items are accepted (OpenSIPS
    //  takes "/?rk" as the default exchange).
    spec = s_check("rabbitmq:h/?rk", "rabbitmq:guest@h:5672/rk", NULL);
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:h/;;persistent;?rk",
                   "rabbitmq:guest@h:5672/persistent?rk",
                   "rabbitmq:guest@h:5672/rk");
    evr_sockspec_destroy(&spec);

    //  The routing key may hold '@', '/', ':' and, after the first '?',
    //  '?'; the canonical form escapes them.
    spec = s_check("rabbitmq:h/a@b/c:d", "rabbitmq:guest@h:5672/a%40b%2Fc%3Ad",
                   NULL);
    assert_string_equal(evr_sockspec_routing_key(spec), "a@b/c:d");
    evr_sockspec_destroy(&spec);
    spec = s_check("rabbitmq:h/exchange=e?a?b",
                   "rabbitmq:guest@h:5672/exchange=e?a%3Fb", NULL);
    assert_string_equal(evr_sockspec_routing_key(spec), "a?b");
    evr_sockspec_destroy(&spec);
}

static void test_rabbitmq_escapes(void **state)
{
    evr_sockspec_t *spec = s_check(
        "rabbitmq:us%65r:p%40ss%3a@h/exchange=ex%3Bch;vhost=v%20h?r%6B%25",
        "rabbitmq:user@h:5672/exchange=ex%3Bch;vhost=v%20h?rk%25", NULL);
    assert_string_equal(evr_sockspec_user(spec), "user");
    assert_string_equal(evr_sockspec_password(spec), "p@ss:");
    assert_string_equal(evr_sockspec_exchange(spec), "ex;ch");
    assert_string_equal(evr_sockspec_vhost(spec), "v h");
    assert_string_equal(evr_sockspec_routing_key(spec), "rk%");
    evr_sockspec_destroy(&spec);

    //  Special characters in the user are escaped so the form re-parses.
    spec = s_check("rabbitmq:a%3Ab%40c%2Fd%3F%3B:pw@h/rk",
                   "rabbitmq:a%3Ab%40c%2Fd%3F%3B@h:5672/rk", NULL);
    assert_string_equal(evr_sockspec_user(spec), "a:b@c/d?;");
    evr_sockspec_destroy(&spec);

    //  Raw '@' in the user part (the split is on the last '@').
    spec = s_check("rabbitmq:a@b@h/rk", "rabbitmq:a%40b@h:5672/rk", NULL);
    assert_string_equal(evr_sockspec_user(spec), "a@b");
    evr_sockspec_destroy(&spec);

    //  Control and non-ASCII bytes come out %-escaped.
    spec = s_check("rabbitmq:h/caf\xc3\xa9%01%7F%09",
                   "rabbitmq:guest@h:5672/caf%C3%A9%01%7F%09", NULL);
    assert_string_equal(evr_sockspec_routing_key(spec),
                        "caf\xc3\xa9\x01\x7f\t");
    evr_sockspec_destroy(&spec);

    //  '=' inside a value needs no escape.
    spec = s_check("rabbitmq:h/exchange=a=b?rk",
                   "rabbitmq:guest@h:5672/exchange=a=b?rk", NULL);
    assert_string_equal(evr_sockspec_exchange(spec), "a=b");
    evr_sockspec_destroy(&spec);
}

static void test_rabbitmq_ipv6(void **state)
{
    evr_sockspec_t *spec =
        s_check("rabbitmq:[::1]/rk", "rabbitmq:guest@[::1]:5672/rk", NULL);
    assert_string_equal(evr_sockspec_host(spec), "::1");
    assert_int_equal(evr_sockspec_port(spec), 5672);
    evr_sockspec_destroy(&spec);

    spec = s_check("rabbitmq:u:p@[2001:DB8:0::1]:5673/exchange=x?rk",
                   "rabbitmq:u@[2001:db8::1]:5673/exchange=x?rk", NULL);
    assert_string_equal(evr_sockspec_host(spec), "2001:DB8:0::1");
    assert_int_equal(evr_sockspec_port(spec), 5673);
    assert_string_equal(evr_sockspec_password(spec), "p");
    evr_sockspec_destroy(&spec);

    spec = s_check("rabbitmq:u:p:q@[::ffff:10.0.0.1]/rk",
                   "rabbitmq:u@[::ffff:10.0.0.1]:5672/rk", NULL);
    assert_string_equal(evr_sockspec_password(spec), "p:q");
    evr_sockspec_destroy(&spec);
}

static void test_rabbitmq_errors(void **state)
{
    s_parse_fails("rabbitmq:", "rabbitmq: missing '/'");
    s_parse_fails("rabbitmq:h", "rabbitmq: missing '/'");
    s_parse_fails("rabbitmq:h/", "rabbitmq: missing routing key");
    s_parse_fails("rabbitmq:h/exchange=e?", "rabbitmq: missing routing key");
    s_parse_fails("rabbitmq:h/%41%", "bad %-escape '%' in routing key");
    s_parse_fails("rabbitmq:/rk", "rabbitmq: missing host");
    s_parse_fails("rabbitmq:u@/rk", "rabbitmq: missing host");
    s_parse_fails("rabbitmq::5672/rk", "rabbitmq: missing host");
    s_parse_fails("rabbitmq:h:/rk", "rabbitmq: missing port");
    s_parse_fails("rabbitmq:h:0/rk", "rabbitmq: port '0' out of range");
    s_parse_fails("rabbitmq:h:65536/rk", "out of range 1-65535");
    s_parse_fails("rabbitmq:h:x/rk", "port 'x' is not a number");
    s_parse_fails("rabbitmq:h_1/rk", "invalid character '_' in host name");
    s_parse_fails("rabbitmq:300.1.1.1/rk", "invalid IPv4 address");
    s_parse_fails("rabbitmq:::1/rk", "must be in brackets");
    s_parse_fails("rabbitmq:u:p@fe80::1:5672/rk", "must be in brackets");
    s_parse_fails("rabbitmq:[::1/rk", "missing ']'");
    s_parse_fails("rabbitmq:[::1]x/rk", "expected ':PORT' after ']'");
    s_parse_fails("rabbitmq:[::1]:/rk", "rabbitmq: missing port");
    s_parse_fails("rabbitmq:[zz::1]/rk", "invalid IPv6 address");
    s_parse_fails_quietly("rabbitmq:u:zq/xy@h/rk",
                          "a '/' in the user or password must be written %2F",
                          "zq");
    s_parse_fails("rabbitmq:h:x/a@b", "must be written %2F");
    s_parse_fails("rabbitmq:h:x/ab", "rabbitmq: port 'x' is not a number");
    s_parse_fails("rabbitmq:@h/rk", "rabbitmq: empty user name");
    s_parse_fails("rabbitmq::pw@h/rk", "rabbitmq: empty user name");

    s_parse_fails("rabbitmq:h/tls_domain=dom?rk",
                  "rabbitmq: tls_domain is not supported");
    s_parse_fails("rabbitmq:h/exchange=e;tls_domain?rk",
                  "rabbitmq: tls_domain is not supported");
    s_parse_fails_all("rabbitmq:h/foo=1?rk", "rabbitmq: unknown parameter",
                      "'foo'", NULL);
    s_parse_fails("rabbitmq:h/Exchange=x?rk", "unknown parameter 'Exchange'");
    s_parse_fails("rabbitmq:h/key?x", "unknown parameter 'key'");
    s_parse_fails("rabbitmq:h/exchange?rk",
                  "parameter 'exchange' needs a value");
    s_parse_fails("rabbitmq:h/vhost?rk", "parameter 'vhost' needs a value");
    s_parse_fails("rabbitmq:h/persistent=1?rk",
                  "parameter 'persistent' takes no value");
    s_parse_fails("rabbitmq:h/exchange=a;exchange=b?rk",
                  "parameter 'exchange' given twice");
    s_parse_fails("rabbitmq:h/vhost=a;vhost=a?rk",
                  "parameter 'vhost' given twice");
    s_parse_fails("rabbitmq:h/persistent;persistent?rk",
                  "parameter 'persistent' given twice");
    s_parse_fails("rabbitmq:h/vhost=?rk", "rabbitmq: empty vhost");

    s_parse_fails("rabbitmq:h/r%zk", "bad %-escape '%zk' in routing key");
    s_parse_fails("rabbitmq:h/rk%4", "bad %-escape '%4' in routing key");
    s_parse_fails("rabbitmq:h/rk%00", "%00 (a NUL byte) in routing key");
    s_parse_fails("rabbitmq:u%g1@h/rk", "bad %-escape '%g1' in user");
    s_parse_fails("rabbitmq:h/exchange=%0?rk", "bad %-escape '%0' in exchange");
    s_parse_fails("rabbitmq:h/vhost=%%?rk", "bad %-escape '%%' in vhost");
    //  A bad escape in the password does not echo the password.
    s_parse_fails_quietly("rabbitmq:u:sec%zzret@h/rk",
                          "bad %-escape in password", "%zz");

    //  AMQP short strings hold 255 bytes.
    char text[1100];
    strcpy(text, "rabbitmq:h/");
    memset(text + 11, 'k', 255);
    text[11 + 255] = '\0';
    evr_sockspec_t *spec = s_parse_ok(text);
    evr_sockspec_destroy(&spec);
    strcat(text, "k");
    s_parse_fails(text, "routing key is 256 bytes, longer than 255");
    strcpy(text, "rabbitmq:h/exchange=");
    memset(text + 20, 'e', 256);
    strcpy(text + 20 + 256, "?rk");
    s_parse_fails(text, "exchange is 256 bytes, longer than 255");

    //  Escaping must not make the canonical form too long to re-parse.
    strcpy(text, "rabbitmq:");
    memset(text + 9, '@', 400);
    strcpy(text + 9 + 400, "x@h/rk");
    s_parse_fails(text, "rabbitmq: canonical form would be");

    s_parse_fails("rabbitmq:h/a b", "whitespace at offset 12");
}

static void test_rabbitmq_match_keys(void **state)
{
    //  Password and persistent do not count; defaults equal explicit ones.
    assert_true(s_same_subscriber("rabbitmq:u:p1@h/rk", "rabbitmq:u:p2@h/rk"));
    assert_true(s_same_subscriber("rabbitmq:u@h/rk", "rabbitmq:u:x@h/rk"));
    assert_true(s_same_subscriber("rabbitmq:h/persistent?rk", "rabbitmq:h/rk"));
    assert_true(s_same_subscriber("rabbitmq:h:5672/rk", "rabbitmq:h/rk"));
    assert_true(
        s_same_subscriber("rabbitmq:guest:guest@h/rk", "rabbitmq:H/rk"));
    assert_true(s_same_subscriber("rabbitmq:h/exchange=?rk", "rabbitmq:h/rk"));
    assert_true(s_same_subscriber("rabbitmq:h/vhost=%2F?rk", "rabbitmq:h/rk"));
    assert_true(s_same_subscriber("rabbitmq:h/r%6b", "rabbitmq:h/rk"));
    assert_true(s_same_subscriber("rabbitmq:[::1]/rk", "rabbitmq:[0::1]/rk"));
    assert_true(s_same_subscriber("rabbitmq:h/vhost=v;exchange=e?rk",
                                  "rabbitmq:h/exchange=e;vhost=v?rk"));
    //  Host, port, user, routing key, exchange and vhost all count.
    assert_false(
        s_same_subscriber("rabbitmq:127.0.0.1/rk", "rabbitmq:127.0.0.10/rk"));
    assert_false(s_same_subscriber("rabbitmq:h:5673/rk", "rabbitmq:h/rk"));
    assert_false(s_same_subscriber("rabbitmq:a@h/rk", "rabbitmq:b@h/rk"));
    assert_false(s_same_subscriber("rabbitmq:h/rk", "rabbitmq:h/rk2"));
    assert_false(s_same_subscriber("rabbitmq:h/rk", "rabbitmq:h/RK"));
    assert_false(
        s_same_subscriber("rabbitmq:h/exchange=a?rk", "rabbitmq:h/rk"));
    assert_false(s_same_subscriber("rabbitmq:h/vhost=a?rk", "rabbitmq:h/rk"));
    assert_false(
        s_same_subscriber("rabbitmq:h/exchange=a?rk", "rabbitmq:h/vhost=a?rk"));
}

static void test_zmq(void **state)
{
    evr_sockspec_t *spec = s_check("zmq:push:tcp://127.0.0.1:5555",
                                   "zmq:push:tcp://127.0.0.1:5555", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_ZMQ);
    assert_string_equal(evr_sockspec_transport_name(spec), "zmq");
    assert_string_equal(evr_sockspec_endpoint(spec), "tcp://127.0.0.1:5555");
    assert_int_equal(evr_sockspec_zmq_pub(spec), 0);
    s_check_unset(spec, " endpoint ");
    evr_sockspec_destroy(&spec);

    spec = s_check("zmq:pub:tcp://[0:0::1]:5556", "zmq:pub:tcp://[::1]:5556",
                   NULL);
    assert_string_equal(evr_sockspec_endpoint(spec), "tcp://[::1]:5556");
    assert_int_equal(evr_sockspec_zmq_pub(spec), 1);
    s_check_unset(spec, " endpoint zmq_pub ");
    evr_sockspec_destroy(&spec);

    spec = s_check("zmq:push:tcp://Relay.Example:05555",
                   "zmq:push:tcp://relay.example:5555", NULL);
    evr_sockspec_destroy(&spec);

    spec = s_check("zmq:pub:ipc:///tmp/ev.sock", "zmq:pub:ipc:///tmp/ev.sock",
                   NULL);
    assert_string_equal(evr_sockspec_endpoint(spec), "ipc:///tmp/ev.sock");
    s_check_unset(spec, " endpoint zmq_pub ");
    evr_sockspec_destroy(&spec);

    assert_false(s_same_subscriber("zmq:push:tcp://h:1", "zmq:pub:tcp://h:1"));
    assert_false(s_same_subscriber("zmq:push:tcp://h:1", "zmq:push:tcp://h:2"));
    assert_false(s_same_subscriber("zmq:push:ipc:///a", "unix:/a"));
    assert_true(s_same_subscriber("zmq:push:tcp://H:1", "zmq:push:tcp://h:01"));
}

static void test_zmq_errors(void **state)
{
    s_parse_fails("zmq:", "zmq: missing mode");
    s_parse_fails("zmq::tcp://h:1", "zmq: missing mode");
    s_parse_fails("zmq:push", "zmq: missing endpoint");
    s_parse_fails("zmq:PUSH:tcp://h:1", "zmq: unknown mode 'PUSH'");
    s_parse_fails("zmq:Pub:tcp://h:1", "zmq: unknown mode 'Pub'");
    s_parse_fails("zmq:sub:tcp://h:1", "unknown mode 'sub' (expected push or");
    s_parse_fails("zmq:push:", "zmq: unsupported endpoint ''");
    s_parse_fails("zmq:push:udp://h:1", "unsupported endpoint 'udp://h:1'");
    s_parse_fails("zmq:push:TCP://h:1", "unsupported endpoint");
    s_parse_fails("zmq:push:inproc://x", "unsupported endpoint");
    s_parse_fails("zmq:push:tcp://h", "zmq: missing port");
    s_parse_fails("zmq:push:tcp://h:", "zmq: missing port");
    s_parse_fails("zmq:push:tcp://:1", "zmq: missing host");
    s_parse_fails("zmq:push:tcp://h:0", "zmq: port '0' out of range");
    s_parse_fails("zmq:push:tcp://h:1/x", "port '1/x' is not a number");
    s_parse_fails("zmq:push:tcp://*:5555", "invalid character '*'");
    s_parse_fails("zmq:push:tcp://::1:5555", "must be in brackets");
    s_parse_fails("zmq:push:tcp://[::1]", "zmq: missing port");
    s_parse_fails("zmq:push:tcp://[::x]:1", "zmq: invalid IPv6 address");
    s_parse_fails("zmq:push:ipc://", "zmq: ipc path '' must be absolute");
    s_parse_fails("zmq:push:ipc://rel.sock", "must be absolute");
    s_parse_fails("zmq:push:ipc:///tmp/", "names a directory");
    char text[256] = "zmq:push:ipc://";
    memset(text + 15, 'p', 107);
    text[15] = '/';
    text[15 + 107] = '\0';
    evr_sockspec_t *spec = s_parse_ok(text);
    evr_sockspec_destroy(&spec);
    strcat(text, "p");
    s_parse_fails(text, "zmq: ipc path is 108 bytes");
}

static void test_http(void **state)
{
    evr_sockspec_t *spec =
        s_check("http://example.com", "http://example.com/", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_HTTP);
    assert_string_equal(evr_sockspec_transport_name(spec), "http");
    assert_string_equal(evr_sockspec_host(spec), "example.com");
    assert_int_equal(evr_sockspec_port(spec), 80);
    assert_string_equal(evr_sockspec_path(spec), "/");
    assert_string_equal(evr_sockspec_endpoint(spec), "http://example.com/");
    assert_int_equal(evr_sockspec_tls(spec), 0);
    s_check_unset(spec, " host port path endpoint ");
    evr_sockspec_destroy(&spec);

    spec = s_check("https://Hooks.Example.COM:443/ev/Hook?a=1&b=%2f",
                   "https://hooks.example.com/ev/Hook?a=1&b=%2f", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_HTTP);
    assert_string_equal(evr_sockspec_transport_name(spec), "https");
    assert_string_equal(evr_sockspec_host(spec), "Hooks.Example.COM");
    assert_int_equal(evr_sockspec_port(spec), 443);
    assert_string_equal(evr_sockspec_path(spec), "/ev/Hook?a=1&b=%2f");
    assert_string_equal(evr_sockspec_endpoint(spec),
                        "https://hooks.example.com/ev/Hook?a=1&b=%2f");
    assert_int_equal(evr_sockspec_tls(spec), 1);
    s_check_unset(spec, " host port path endpoint tls ");
    evr_sockspec_destroy(&spec);

    spec = s_check("http://[::1]:8080/x", "http://[::1]:8080/x", NULL);
    assert_string_equal(evr_sockspec_host(spec), "::1");
    assert_int_equal(evr_sockspec_port(spec), 8080);
    evr_sockspec_destroy(&spec);
    spec = s_check("https://[2001:DB8::0:1]", "https://[2001:db8::1]/", NULL);
    assert_string_equal(evr_sockspec_host(spec), "2001:DB8::0:1");
    assert_int_equal(evr_sockspec_port(spec), 443);
    evr_sockspec_destroy(&spec);

    //  The port is shown only when it is not the scheme's default.
    spec = s_check("http://h:443/", "http://h:443/", NULL);
    evr_sockspec_destroy(&spec);
    spec = s_check("https://h:80/", "https://h:80/", NULL);
    evr_sockspec_destroy(&spec);
    spec = s_check("http://10.0.0.1:0080/a/b/", "http://10.0.0.1/a/b/", NULL);
    assert_int_equal(evr_sockspec_port(spec), 80);
    evr_sockspec_destroy(&spec);

    //  A query without a path gets the path "/".
    spec = s_check("http://h?q=1", "http://h/?q=1", NULL);
    assert_string_equal(evr_sockspec_path(spec), "/?q=1");
    evr_sockspec_destroy(&spec);
    spec = s_check("http://h/a:b@c;d=e,f!$'()*+~",
                   "http://h/a:b@c;d=e,f!$'()*+~", NULL);
    evr_sockspec_destroy(&spec);
}

static void test_http_errors(void **state)
{
    s_parse_fails("http://u:p@h/", "http: credentials in the URL are not "
                                   "supported");
    s_parse_fails("https://u@h/", "https: credentials in the URL");
    s_parse_fails("http://h/x#frag", "http: fragments ('#')");
    s_parse_fails("http://h#", "fragments");
    s_parse_fails("http://h/a b", "whitespace at offset 10");
    s_parse_fails("http://h/a\tb", "whitespace");
    s_parse_fails("http://h/a\001", "control character");
    s_parse_fails("HTTP://h/", "unknown transport 'HTTP'");
    s_parse_fails("Https://h/", "unknown transport 'Https'");
    s_parse_fails("http:h", "http: expected http://HOST");
    s_parse_fails("http:/h/", "http: expected http://HOST");
    s_parse_fails("https:h", "https: expected https://HOST");
    s_parse_fails("http://", "http: missing host");
    s_parse_fails("http:///x", "http: missing host");
    s_parse_fails("http://:80/", "http: missing host");
    s_parse_fails("http://h:/", "http: missing port");
    s_parse_fails("http://h:0/", "http: port '0' out of range");
    s_parse_fails("https://h:99999/", "https: port '99999' out of range");
    s_parse_fails("http://h:8o/", "port '8o' is not a number");
    s_parse_fails("http://h_x/", "invalid character '_' in host name");
    s_parse_fails("http://::1/", "must be in brackets");
    s_parse_fails("http://[::1/", "missing ']'");
    s_parse_fails("http://[::1]x/", "expected ':PORT' after ']'");
    s_parse_fails("http://[::1]:/", "http: missing port");
    s_parse_fails("http://[1.2.3.4]/", "invalid IPv6 address");
    s_parse_fails("http://h/%zz", "bad %-escape '%zz' in the URL path");
    s_parse_fails("http://h/%4", "bad %-escape '%4'");
    s_parse_fails("http://h/caf\xc3\xa9",
                  "non-ASCII byte 0xc3 in the URL path");
    s_parse_fails("http://h/a<b", "character '<' must be percent-encoded");
    s_parse_fails("http://h/a\"b", "character '\"' must be percent-encoded");
    s_parse_fails("http://h/a{b}", "character '{' must be percent-encoded");
    s_parse_fails("http://h/a\\b", "character '\\' must be percent-encoded");
}

static void test_http_match_keys(void **state)
{
    assert_true(s_same_subscriber("http://h", "http://h:80/"));
    assert_true(s_same_subscriber("http://H.Example/x", "http://h.example/x"));
    assert_true(s_same_subscriber("https://h:443", "https://h/"));
    assert_true(s_same_subscriber("http://[::1]/", "http://[0::1]:80"));
    assert_false(s_same_subscriber("http://h/", "https://h/"));
    assert_false(s_same_subscriber("http://h/A", "http://h/a"));
    assert_false(s_same_subscriber("http://h/a", "http://h/a/"));
    assert_false(s_same_subscriber("http://h/a?x=1", "http://h/a?x=2"));
    assert_false(s_same_subscriber("http://h:8080/", "http://h/"));
}

static void test_virtual(void **state)
{
    evr_sockspec_t *spec =
        s_check("virtual:PARALLEL udp:127.0.0.1:9000 tcp:H:1/m",
                "virtual:PARALLEL udp:127.0.0.1:9000 tcp:h:1/m",
                "virtual:PARALLEL tcp:h:1/m udp:127.0.0.1:9000");
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_VIRTUAL);
    assert_string_equal(evr_sockspec_transport_name(spec), "virtual");
    assert_int_equal(evr_sockspec_policy(spec), EVR_POLICY_PARALLEL);
    assert_int_equal(evr_sockspec_child_count(spec), 2);
    s_check_unset(spec, " policy ");
    const evr_sockspec_t *child = evr_sockspec_child(spec, 0);
    assert_non_null(child);
    assert_string_equal(evr_sockspec_canonical(child), "udp:127.0.0.1:9000");
    assert_int_equal(evr_sockspec_transport(child), EVR_TRANSPORT_UDP);
    child = evr_sockspec_child(spec, 1);
    assert_string_equal(evr_sockspec_method(child), "m");
    assert_null(evr_sockspec_child(spec, 2));
    evr_sockspec_destroy(&spec);

    //  Tabs and runs of spaces separate children; leading and trailing
    //  runs are tolerated.
    spec = s_check("virtual:FAILOVER\t\tudp:1.2.3.4:5  \t unix:/tmp/s   \t",
                   "virtual:FAILOVER udp:1.2.3.4:5 unix:/tmp/s", NULL);
    assert_int_equal(evr_sockspec_policy(spec), EVR_POLICY_FAILOVER);
    assert_int_equal(evr_sockspec_child_count(spec), 2);
    evr_sockspec_destroy(&spec);

    //  Children in canonical form, IPv6 included; the password is hidden
    //  but kept.
    spec = s_check("virtual:ROUND-ROBIN udp:[0::1]:9 "
                   "rabbitmq:u:s3cret@[::2]/persistent?rk "
                   "http://[::3]:8080 zmq:push:tcp://[::4]:5",
                   "virtual:ROUND-ROBIN udp:[::1]:9 "
                   "rabbitmq:u@[::2]:5672/persistent?rk "
                   "http://[::3]:8080/ zmq:push:tcp://[::4]:5",
                   "virtual:ROUND-ROBIN udp:[::1]:9 rabbitmq:u@[::2]:5672/rk "
                   "http://[::3]:8080/ zmq:push:tcp://[::4]:5");
    assert_int_equal(evr_sockspec_policy(spec), EVR_POLICY_ROUND_ROBIN);
    assert_null(strstr(evr_sockspec_canonical(spec), "s3cret"));
    assert_string_equal(evr_sockspec_password(evr_sockspec_child(spec, 1)),
                        "s3cret");
    evr_sockspec_destroy(&spec);

    //  The OpenSIPS documentation example; duplicates are allowed.
    spec = s_check("virtual:PARALLEL rabbitmq:guest:guest@127.0.0.1:5672/pike "
                   "flatstore:/var/log/opensips_proxy.log",
                   "virtual:PARALLEL rabbitmq:guest@127.0.0.1:5672/pike "
                   "flatstore:/var/log/opensips_proxy.log",
                   "virtual:PARALLEL flatstore:/var/log/opensips_proxy.log "
                   "rabbitmq:guest@127.0.0.1:5672/pike");
    evr_sockspec_destroy(&spec);
    spec = s_check("virtual:FAILOVER udp:h:1 udp:h:1",
                   "virtual:FAILOVER udp:h:1 udp:h:1", NULL);
    assert_int_equal(evr_sockspec_child_count(spec), 2);
    evr_sockspec_destroy(&spec);
}

static void test_virtual_match_keys(void **state)
{
    const char *a = "udp:1.2.3.4:5", *b = "tcp:h:1/m", *c = "unix:/tmp/s";
    char ab_c[128], c_ab[128], b_ca[128];
    const char *policies[] = {"PARALLEL", "FAILOVER", "ROUND-ROBIN"};
    for (int i = 0; i < 3; i++) {
        snprintf(ab_c, sizeof(ab_c), "virtual:%s %s %s %s", policies[i], a, b,
                 c);
        snprintf(c_ab, sizeof(c_ab), "virtual:%s %s %s %s", policies[i], c, a,
                 b);
        snprintf(b_ca, sizeof(b_ca), "virtual:%s\t%s\t\t%s  %s", policies[i], b,
                 c, a);
        //  PARALLEL: any order; FAILOVER, ROUND-ROBIN: the same order.
        int any_order = i == 0;
        assert_int_equal(s_same_subscriber(ab_c, c_ab), any_order);
        assert_int_equal(s_same_subscriber(ab_c, b_ca), any_order);
        assert_true(s_same_subscriber(ab_c, ab_c));
    }
    assert_true(s_same_subscriber("virtual:FAILOVER udp:H:1 tcp:[0::1]:2",
                                  "virtual:FAILOVER\tudp:h:01  tcp:[::1]:2"));
    assert_false(s_same_subscriber("virtual:PARALLEL udp:h:1",
                                   "virtual:FAILOVER udp:h:1"));
    assert_false(s_same_subscriber("virtual:ROUND-ROBIN udp:h:1",
                                   "virtual:FAILOVER udp:h:1"));
    assert_false(s_same_subscriber("virtual:PARALLEL udp:h:1",
                                   "virtual:PARALLEL udp:h:1 udp:h:1"));
    assert_false(s_same_subscriber("virtual:PARALLEL udp:h:1", "udp:h:1"));
    //  A child's own match key rules apply inside.
    assert_true(s_same_subscriber("virtual:PARALLEL rabbitmq:u:p@h/rk udp:h:1",
                                  "virtual:PARALLEL udp:h:1 "
                                  "rabbitmq:u:q@h/persistent?rk"));
    assert_false(s_same_subscriber("virtual:PARALLEL udp:127.0.0.1:1",
                                   "virtual:PARALLEL udp:127.0.0.10:1"));
}

static void test_virtual_errors(void **state)
{
    s_parse_fails("virtual:", "virtual: missing policy");
    s_parse_fails("virtual: PARALLEL udp:h:1", "virtual: missing policy");
    s_parse_fails("virtual:\tPARALLEL udp:h:1", "virtual: missing policy");
    s_parse_fails("virtual:parallel udp:h:1",
                  "virtual: lowercase policy 'parallel'");
    s_parse_fails("virtual:Failover udp:h:1", "lowercase policy 'Failover'");
    s_parse_fails("virtual:round-robin udp:h:1",
                  "lowercase policy 'round-robin'");
    s_parse_fails("virtual:RANDOM udp:h:1", "virtual: unknown policy 'RANDOM'");
    s_parse_fails("virtual:PARALLELX udp:h:1", "unknown policy 'PARALLELX'");
    s_parse_fails("virtual:ROUND_ROBIN udp:h:1", "unknown policy");
    s_parse_fails("virtual:PARALLELudp:h:1", "unknown policy");
    s_parse_fails("virtual:PARALLEL", "virtual: no child sockets");
    s_parse_fails("virtual:PARALLEL  \t ", "virtual: no child sockets");
    s_parse_fails_all("virtual:PARALLEL udp:1.2.3.4:5 tcpx:1.2.3.4:5",
                      "virtual: child 2 'tcpx:1.2.3.4:5': unknown transport "
                      "'tcpx' (known: udp,",
                      NULL);
    s_parse_fails("virtual:FAILOVER udp:1.2.3.4:0",
                  "virtual: child 1 'udp:1.2.3.4:0': udp: port '0' out of "
                  "range");
    s_parse_fails("virtual:FAILOVER udp:h:1 virtual",
                  "virtual: child 2 'virtual': missing transport prefix");
    s_parse_fails("virtual:FAILOVER udp:h:1 unix:rel",
                  "child 2 'unix:rel': unix: path 'rel' must be absolute");
    s_parse_fails_all("virtual:PARALLEL virtual:FAILOVER udp:1.2.3.4:5",
                      "virtual: child 1 'virtual:FAILOVER'",
                      "cannot contain another virtual", NULL);
    s_parse_fails_all("virtual:PARALLEL udp:h:1 virtual:PARALLEL",
                      "child 2 'virtual:PARALLEL'", "virtual", NULL);
    s_parse_fails("virtual:PARALLEL udp:1.2.3.4:5\nudp:1.2.3.4:6",
                  "whitespace other than spaces and tabs at offset 30");
    s_parse_fails("virtual:PARALLEL udp:1.2.3.4:5\rudp:1.2.3.4:6",
                  "whitespace other than spaces and tabs");
    s_parse_fails("virtual:PARALLEL\vudp:1.2.3.4:5", "whitespace other than");
    s_parse_fails("virtual:PARALLEL udp:1.2.3.4:5 \001", "control character");
    //  A failing rabbitmq child is named without its password.
    s_parse_fails_quietly("virtual:PARALLEL udp:h:1 rabbitmq:u:s3cret@h/",
                          "virtual: child 2 'rabbitmq:u:***@h/': rabbitmq: "
                          "missing routing key",
                          "s3cret");
    //  Whitespace is only for virtual sockets.
    s_parse_fails("udp:h:1 udp:h:2", "socket string contains whitespace");
}

static void test_virtual_limits(void **state)
{
    //  32 children are fine, 33 are not.
    char text[4200] = "virtual:PARALLEL";
    for (int i = 1; i <= 32; i++) {
        char child[32];
        snprintf(child, sizeof(child), " udp:10.0.0.%d:%d", i, 1000 + i);
        strcat(text, child);
    }
    evr_sockspec_t *spec = s_parse_ok(text);
    assert_int_equal(evr_sockspec_child_count(spec), 32);
    assert_string_equal(evr_sockspec_canonical(evr_sockspec_child(spec, 31)),
                        "udp:10.0.0.32:1032");
    s_check_roundtrip(spec);
    evr_sockspec_t *copy = evr_sockspec_dup(spec);
    evr_sockspec_destroy(&spec);
    assert_int_equal(evr_sockspec_child_count(copy), 32);
    assert_string_equal(evr_sockspec_canonical(evr_sockspec_child(copy, 31)),
                        "udp:10.0.0.32:1032");
    evr_sockspec_destroy(&copy);
    strcat(text, " udp:10.0.0.33:1033");
    s_parse_fails(text, "virtual: 33 child sockets, more than the limit of 32");

    //  4096 bytes are the limit of a virtual socket string; each child
    //  keeps the 1024-byte limit.
    strcpy(text, "virtual:PARALLEL");
    for (int i = 0; i < 4; i++) {
        strcat(text, " flatstore:/");
        size_t length = strlen(text);
        memset(text + length, 'a' + i, 1019 - 11);
        text[length + 1019 - 11] = '\0';
    }
    assert_int_equal(strlen(text), 4096);
    spec = s_parse_ok(text);
    assert_int_equal(evr_sockspec_child_count(spec), 4);
    s_check_roundtrip(spec);
    evr_sockspec_destroy(&spec);
    strcat(text, " ");
    s_parse_fails(text, "virtual: socket string longer than 4096 bytes");

    strcpy(text, "virtual:PARALLEL udp:h:1 flatstore:/");
    size_t length = strlen(text);
    memset(text + length, 'f', 1025 - 11);
    text[length + 1025 - 11] = '\0';
    s_parse_fails(text, "child 2 'flatstore:/fff");
    s_parse_fails(text, "socket string longer than 1024 bytes");

    //  Defaults make each rabbitmq child 11 bytes longer: the canonical
    //  form would no longer fit.
    strcpy(text, "virtual:PARALLEL");
    for (int i = 0; i < 32; i++) {
        strcat(text, " rabbitmq:h/");
        length = strlen(text);
        memset(text + length, 'k', 126 - 11);
        text[length + 126 - 11] = '\0';
    }
    assert_true(strlen(text) <= 4096);
    s_parse_fails(text, "virtual: canonical form would be");
}

static void test_evid(void **state)
{
    //  the prefix wraps any non-virtual socket; the canonical form and the
    //  match key keep it, the rest is the wrapped socket's
    evr_sockspec_t *spec =
        s_check("evid:udp:127.0.0.1:9000", "evid:udp:127.0.0.1:9000", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_UDP);
    assert_string_equal(evr_sockspec_transport_name(spec), "udp");
    assert_string_equal(evr_sockspec_host(spec), "127.0.0.1");
    assert_int_equal(evr_sockspec_port(spec), 9000);
    assert_int_equal(evr_sockspec_event_id(spec), 1);
    evr_sockspec_destroy(&spec);
    spec = s_check("udp:127.0.0.1:9000", "udp:127.0.0.1:9000", NULL);
    assert_int_equal(evr_sockspec_event_id(spec), 0);
    evr_sockspec_destroy(&spec);
    spec = s_check("evid:tcp:H:1/m", "evid:tcp:h:1/m", NULL);
    assert_int_equal(evr_sockspec_transport(spec), EVR_TRANSPORT_TCP);
    assert_string_equal(evr_sockspec_method(spec), "m");
    evr_sockspec_destroy(&spec);
    spec =
        s_check("evid:flatstore:/tmp/x.log", "evid:flatstore:/tmp/x.log", NULL);
    evr_sockspec_destroy(&spec);
    spec = s_check("evid:unix:/tmp/s", "evid:unix:/tmp/s", NULL);
    evr_sockspec_destroy(&spec);
    spec = s_check("evid:http://h:8080/x", "evid:http://h:8080/x", NULL);
    assert_int_equal(evr_sockspec_event_id(spec), 1);
    evr_sockspec_destroy(&spec);
    //  with and without the prefix: two different subscribers
    assert_false(
        s_same_subscriber("evid:udp:127.0.0.1:9000", "udp:127.0.0.1:9000"));
    assert_true(s_same_subscriber("evid:tcp:H:1/m", "evid:tcp:h:1/m"));
    //  as a virtual child, in canonical form and match key
    spec = s_check("virtual:PARALLEL evid:udp:127.0.0.1:9000 udp:1.2.3.4:5",
                   "virtual:PARALLEL evid:udp:127.0.0.1:9000 udp:1.2.3.4:5",
                   "virtual:PARALLEL evid:udp:127.0.0.1:9000 udp:1.2.3.4:5");
    assert_int_equal(evr_sockspec_event_id(spec), 0);
    assert_int_equal(evr_sockspec_event_id(evr_sockspec_child(spec, 0)), 1);
    assert_int_equal(evr_sockspec_event_id(evr_sockspec_child(spec, 1)), 0);
    evr_sockspec_destroy(&spec);
    spec = s_check("virtual:FAILOVER udp:1.2.3.4:5 evid:udp:1.2.3.4:5",
                   "virtual:FAILOVER udp:1.2.3.4:5 evid:udp:1.2.3.4:5", NULL);
    evr_sockspec_destroy(&spec);
}

static void test_evid_errors(void **state)
{
    s_parse_fails("evid:", "evid: empty socket string");
    s_parse_fails("evid:virtual:PARALLEL udp:h:1",
                  "evid: cannot wrap a virtual socket");
    s_parse_fails("evid:evid:udp:h:1", "evid: given twice");
    s_parse_fails("evid:udp:h:0", "evid: udp: port '0' out of range");
    s_parse_fails("evid:nope:x", "evid: unknown transport 'nope'");
    s_parse_fails("evid:udp:h:1 udp:h:2", "evid: socket string contains "
                                          "whitespace");
    s_parse_fails("virtual:PARALLEL evid:udp:h:0",
                  "virtual: child 1 'evid:udp:h:0': evid: udp: port");
    s_parse_fails("EVID:udp:h:1", "unknown transport 'EVID'");
}

static void test_dup(void **state)
{
    const char *texts[] = {
        "udp:[::1]:9000",
        "unix:/tmp/s",
        "flatstore:/tmp/f",
        "tcp:h:1/m",
        "rabbitmq:u:s3cret@[::1]:5673/exchange=e;vhost=v;persistent?rk",
        "zmq:pub:ipc:///tmp/z",
        "https://h:8443/p?q",
        "virtual:FAILOVER rabbitmq:u:pw@h/rk http://h unix:/tmp/s",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        evr_sockspec_t *spec = s_parse_ok(texts[i]);
        evr_sockspec_t *copy = evr_sockspec_dup(spec);
        assert_non_null(copy);
        s_check_equal_copy(spec, copy);
        //  The copy lives on its own.
        char canonical[256];
        snprintf(canonical, sizeof(canonical), "%s",
                 evr_sockspec_canonical(spec));
        evr_sockspec_destroy(&spec);
        assert_string_equal(evr_sockspec_canonical(copy), canonical);
        evr_sockspec_t *copy2 = evr_sockspec_dup(copy);
        s_check_equal_copy(copy, copy2);
        evr_sockspec_destroy(&copy);
        evr_sockspec_destroy(&copy2);
    }
    evr_sockspec_t *spec = s_parse_ok("virtual:FAILOVER rabbitmq:u:pw@h/rk");
    evr_sockspec_t *copy = evr_sockspec_dup(spec);
    evr_sockspec_destroy(&spec);
    assert_string_equal(evr_sockspec_password(evr_sockspec_child(copy, 0)),
                        "pw");
    evr_sockspec_destroy(&copy);
}

static void test_unset_fields(void **state)
{
    //  Accessors give NULL or 0 for what does not apply.
    evr_sockspec_t *spec = s_parse_ok("udp:h:1");
    s_check_unset(spec, " host port ");
    evr_sockspec_destroy(&spec);
    spec = s_parse_ok("unix:/tmp/s");
    s_check_unset(spec, " path ");
    evr_sockspec_destroy(&spec);
    spec = s_parse_ok("flatstore:/tmp/f");
    s_check_unset(spec, " path ");
    evr_sockspec_destroy(&spec);
    spec = s_parse_ok("virtual:FAILOVER tcp:h:1/m zmq:pub:tcp://h:1");
    s_check_unset(spec, " policy ");
    s_check_unset(evr_sockspec_child(spec, 0), " host port method ");
    s_check_unset(evr_sockspec_child(spec, 1), " endpoint zmq_pub ");
    evr_sockspec_destroy(&spec);
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
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_tcp_errors),
        cmocka_unit_test(test_tcp_match_keys),
        cmocka_unit_test(test_rabbitmq),
        cmocka_unit_test(test_rabbitmq_escapes),
        cmocka_unit_test(test_rabbitmq_ipv6),
        cmocka_unit_test(test_rabbitmq_errors),
        cmocka_unit_test(test_rabbitmq_match_keys),
        cmocka_unit_test(test_zmq),
        cmocka_unit_test(test_zmq_errors),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_http_match_keys),
        cmocka_unit_test(test_virtual),
        cmocka_unit_test(test_virtual_match_keys),
        cmocka_unit_test(test_virtual_errors),
        cmocka_unit_test(test_virtual_limits),
        cmocka_unit_test(test_evid),
        cmocka_unit_test(test_evid_errors),
        cmocka_unit_test(test_dup),
        cmocka_unit_test(test_unset_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
