/*  test_policy.c - unit tests of evr_policy: operator grants, the MI
    method to action mapping, the destination allowlist (CIDR, host, port,
    path, transport and virtual-child edges), credentials, loopback.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evr_defaults.h"
#include "evr_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A policy from INI lines "section|key|value", NULL-terminated; every
//  line must be accepted.
static evr_policy_rules_t *s_policy(const char *const *lines)
{
    evr_policy_rules_t *self = evr_policy_new();
    assert_non_null(self);
    for (const char *const *l = lines; *l; l++) {
        char copy[512], err[512];
        snprintf(copy, sizeof copy, "%s", *l);
        char *key = strchr(copy, '|');
        assert_non_null(key);
        *key++ = 0;
        char *value = strchr(key, '|');
        assert_non_null(value);
        *value++ = 0;
        if (evr_policy_set(self, copy, key, value, err, sizeof err))
            fail_msg("refused %s: %s", *l, err);
    }
    return self;
}

//  The reason one INI key is refused with (it must be refused).
static const char *s_refused(const char *section, const char *key,
                             const char *value)
{
    static char err[512];
    evr_policy_rules_t *self = evr_policy_new();
    err[0] = 0;
    int rc = evr_policy_set(self, section, key, value, err, sizeof err);
    evr_policy_destroy(&self);
    if (rc == 0)
        fail_msg("accepted [%s] %s = %s", section, key, value);
    assert_true(err[0] != 0);
    return err;
}

//  The denial of a socket (NULL when allowed).
static const char *s_check(const evr_policy_rules_t *self, const char *socket)
{
    static evr_denial_t denial;
    char err[256];
    evr_sockspec_t *spec = evr_sockspec_parse(socket, err, sizeof err);
    if (!spec)
        fail_msg("%s does not parse: %s", socket, err);
    memset(&denial, 0, sizeof denial);
    int rc = evr_policy_check_socket(self, spec, &denial);
    evr_sockspec_destroy(&spec);
    return rc ? denial.message : NULL;
}

//  Fail unless socket is allowed.
#define ALLOWED(self, socket)                                                  \
    do {                                                                       \
        const char *why_ = s_check((self), (socket));                          \
        if (why_)                                                              \
            fail_msg("%s refused: %s", (socket), why_);                        \
    } while (0)

//  Fail unless socket is refused with exactly message.
#define REFUSED(self, socket, message)                                         \
    do {                                                                       \
        const char *why_ = s_check((self), (socket));                          \
        if (!why_)                                                             \
            fail_msg("%s allowed", (socket));                                  \
        assert_string_equal(why_, (message));                                  \
    } while (0)

//  --- an empty policy ---------------------------------------------------------

//  Without any key: every action, every destination, no credentials.
static void test_empty_allows_everything(void **state)
{
    evr_policy_rules_t *self = evr_policy_new();
    evr_denial_t denial;
    assert_false(evr_policy_enforced(self));
    assert_false(evr_policy_has_allowlist(self));
    assert_int_equal(evr_policy_credentials(self, true), 0);
    assert_int_equal(evr_policy_credentials(self, false), 0);
    for (int a = EVR_ACTION_NONE; a < EVR_ACTION_COUNT; a++)
        assert_int_equal(
            evr_policy_permit(self, "anyone", (evr_action_t)a, &denial), 0);
    assert_int_equal(
        evr_policy_permit(self, "local", EVR_ACTION_UNKNOWN, &denial), 0);
    ALLOWED(self, "udp:192.0.2.7:9");
    ALLOWED(self, "flatstore:/etc/../tmp/x");
    assert_null(evr_policy_bearer(self, "x"));
    assert_null(evr_policy_basic(self, "alice", "x"));
    evr_policy_destroy(&self);
    evr_policy_destroy(&self); //  safe on NULL
}

//  The sections the module reads.
static void test_sections(void **state)
{
    assert_true(evr_policy_section("policy"));
    assert_true(evr_policy_section("allow"));
    assert_true(evr_policy_section("http_auth"));
    assert_false(evr_policy_section("relay"));
    assert_false(evr_policy_section("Policy"));
}

//  --- the method -> action mapping ----------------------------------------

//  The action of method with params given as JSON text (NULL: none).
static evr_action_t s_action(const char *method, const char *params)
{
    json_t *p = params ? json_loads(params, JSON_DECODE_ANY, NULL) : NULL;
    if (params)
        assert_non_null(p);
    evr_action_t action = evr_policy_request_action(method, p);
    json_decref(p);
    return action;
}

//  Every MI method name maps to its action; unknown names to none.
static void test_action_mapping(void **state)
{
    static const struct {
        const char *method;
        evr_action_t action;
    } cases[] = {
        {"subscribe", EVR_ACTION_SUBSCRIBE},
        {"event_subscribe", EVR_ACTION_SUBSCRIBE},
        {"evi:subscribe", EVR_ACTION_SUBSCRIBE},
        {"list", EVR_ACTION_LIST},
        {"events_list", EVR_ACTION_LIST},
        {"evi:list", EVR_ACTION_LIST},
        {"subscribers", EVR_ACTION_LIST},
        {"subscribers_list", EVR_ACTION_LIST},
        {"evi:subscribers", EVR_ACTION_LIST},
        {"stats", EVR_ACTION_LIST},
        {"cluster", EVR_ACTION_LIST},
        {"raise", EVR_ACTION_RAISE},
        {"raise_event", EVR_ACTION_RAISE},
        {"evi:raise", EVR_ACTION_RAISE},
        {"flatstore-rotate", EVR_ACTION_ROTATE},
        {"evi_flat_rotate", EVR_ACTION_ROTATE},
        {"event_flatstore:rotate", EVR_ACTION_ROTATE},
        {"health", EVR_ACTION_NONE},
        {"mi_list", EVR_ACTION_UNKNOWN},
        {"Subscribe", EVR_ACTION_UNKNOWN},
        {"", EVR_ACTION_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (s_action(cases[i].method, NULL) != cases[i].action)
            fail_msg("%s: expected %s", cases[i].method,
                     evr_policy_action_name(cases[i].action));
    assert_string_equal(evr_policy_action_name(EVR_ACTION_UNSUBSCRIBE),
                        "unsubscribe");
    assert_string_equal(evr_policy_action_name(EVR_ACTION_NONE), "none");
    assert_string_equal(evr_policy_action_name(EVR_ACTION_UNKNOWN), "unknown");
    assert_string_equal(evr_policy_rule_key(EVR_ALLOW_DIRS), "dirs");
}

//  A subscribe with expire 0 (integer or string) is an unsubscribe.
static void test_expire_zero_is_unsubscribe(void **state)
{
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",0]"),
                     EVR_ACTION_UNSUBSCRIBE);
    assert_int_equal(s_action("event_subscribe", "[\"E\",\"udp:h:1\",\"0\"]"),
                     EVR_ACTION_UNSUBSCRIBE);
    assert_int_equal(s_action("evi:subscribe",
                              "{\"event\":\"E\",\"socket\":\"s\","
                              "\"expire\":0}"),
                     EVR_ACTION_UNSUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",\"00\"]"),
                     EVR_ACTION_UNSUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",60]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\"]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",\"\"]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",\"0x\"]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",0.0]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "[\"E\",\"udp:h:1\",null]"),
                     EVR_ACTION_SUBSCRIBE);
    assert_int_equal(s_action("subscribe", "{\"expire\":\"1\"}"),
                     EVR_ACTION_SUBSCRIBE);
    //  only subscribe has an expire
    assert_int_equal(s_action("raise", "[\"E\",\"x\",0]"), EVR_ACTION_RAISE);
}

//  --- [policy] ------------------------------------------------------------

//  Grants per name, "*" for the unlisted, local apart, exact messages.
static void test_grants(void **state)
{
    const char *lines[] = {"policy|alice|subscribe unsubscribe,list",
                           "policy|ops|all",
                           "policy|*|list",
                           "policy|local|raise",
                           "policy|nobody|none",
                           "policy|alice|rotate", //  adds
                           NULL};
    evr_policy_rules_t *self = s_policy(lines);
    evr_denial_t d;
    assert_true(evr_policy_enforced(self));
    assert_int_equal(evr_policy_permit(self, "alice", EVR_ACTION_SUBSCRIBE, &d),
                     0);
    assert_int_equal(
        evr_policy_permit(self, "alice", EVR_ACTION_UNSUBSCRIBE, &d), 0);
    assert_int_equal(evr_policy_permit(self, "alice", EVR_ACTION_LIST, &d), 0);
    assert_int_equal(evr_policy_permit(self, "alice", EVR_ACTION_ROTATE, &d),
                     0);
    assert_int_equal(evr_policy_permit(self, "alice", EVR_ACTION_RAISE, &d),
                     -1);
    assert_string_equal(d.rule, "policy.alice");
    assert_int_equal(d.allow_rule, -1);
    assert_string_equal(d.message,
                        "refused by policy.alice: operator 'alice' may not "
                        "raise");
    for (int a = EVR_ACTION_SUBSCRIBE; a < EVR_ACTION_COUNT; a++)
        assert_int_equal(evr_policy_permit(self, "ops", (evr_action_t)a, &d),
                         0);
    //  names are exact
    assert_int_equal(evr_policy_permit(self, "Alice", EVR_ACTION_ROTATE, &d),
                     -1);
    assert_string_equal(d.rule, "policy.*");
    assert_string_equal(d.message,
                        "refused by policy.*: operator 'Alice' may not rotate");
    //  '*' is any authenticated operator not listed
    assert_int_equal(evr_policy_permit(self, "bob", EVR_ACTION_LIST, &d), 0);
    assert_int_equal(evr_policy_permit(self, "bob", EVR_ACTION_SUBSCRIBE, &d),
                     -1);
    //  local has its own entry
    assert_int_equal(evr_policy_permit(self, "local", EVR_ACTION_RAISE, &d), 0);
    assert_int_equal(evr_policy_permit(self, "local", EVR_ACTION_LIST, &d), -1);
    assert_string_equal(d.rule, "policy.local");
    //  a listed name with none does not fall back to '*'
    assert_int_equal(evr_policy_permit(self, "nobody", EVR_ACTION_LIST, &d),
                     -1);
    assert_string_equal(d.rule, "policy.nobody");
    //  health needs nothing, an unknown method is refused
    assert_int_equal(evr_policy_permit(self, "nobody", EVR_ACTION_NONE, &d), 0);
    assert_int_equal(evr_policy_permit(self, "ops", EVR_ACTION_UNKNOWN, &d),
                     -1);
    assert_string_equal(d.message,
                        "refused by policy.ops: operator 'ops' may not run "
                        "this method");
    evr_policy_destroy(&self);
}

//  No line and no "*": refused by "policy"; "*" never covers local.
static void test_unlisted(void **state)
{
    const char *lines[] = {"policy|alice|all", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    evr_denial_t d;
    assert_int_equal(evr_policy_permit(self, "bob", EVR_ACTION_LIST, &d), -1);
    assert_string_equal(d.rule, "policy");
    assert_string_equal(d.message,
                        "refused by policy: operator 'bob' is not listed in "
                        "[policy]");
    //  '*' never stands for local
    const char *star[] = {"policy|*|all", NULL};
    evr_policy_rules_t *other = s_policy(star);
    assert_int_equal(evr_policy_permit(other, "local", EVR_ACTION_LIST, &d),
                     -1);
    assert_string_equal(d.message,
                        "refused by policy: operator 'local' is not listed "
                        "in [policy]");
    assert_int_equal(evr_policy_permit(other, "zed", EVR_ACTION_LIST, &d), 0);
    //  an empty value grants nothing but enforces the policy
    const char *empty[] = {"policy|local|", NULL};
    evr_policy_rules_t *third = s_policy(empty);
    assert_true(evr_policy_enforced(third));
    assert_int_equal(evr_policy_permit(third, "local", EVR_ACTION_LIST, &d),
                     -1);
    assert_string_equal(d.rule, "policy.local");
    evr_policy_destroy(&self);
    evr_policy_destroy(&other);
    evr_policy_destroy(&third);
}

//  [policy] values and names that are refused, with their reasons.
static void test_policy_errors(void **state)
{
    assert_string_equal(s_refused("policy", "alice", "subscribe publish"),
                        "unknown action 'publish' (known: subscribe, "
                        "unsubscribe, raise, list, rotate, all, none)");
    assert_string_equal(s_refused("policy", "alice", "ALL"),
                        "unknown action 'ALL' (known: subscribe, "
                        "unsubscribe, raise, list, rotate, all, none)");
    char longname[EVR_POLICY_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_string_equal(s_refused("policy", longname, "all"),
                        "an operator name has 1 to 128 characters");
    assert_string_equal(s_refused("policy", "a\tb", "all"),
                        "an operator name has no spaces or control "
                        "characters");
    assert_string_equal(s_refused("nope", "a", "b"), "unknown section [nope]");
}

//  --- [allow] -------------------------------------------------------------

//  [allow] keys and entries that are refused, with their reasons.
static void test_allow_errors(void **state)
{
    assert_string_equal(s_refused("allow", "networks", "10.0.0.0/8"),
                        "unknown key 'networks' in [allow] (known: "
                        "transports, cidrs, hosts, ports, dirs)");
    assert_string_equal(s_refused("allow", "transports", "udp kafka"),
                        "unknown transport 'kafka' (known: udp, unix, "
                        "flatstore, tcp, rabbitmq, zmq, http, https; a "
                        "virtual socket is checked child by child)");
    assert_string_equal(s_refused("allow", "transports", "virtual"),
                        "unknown transport 'virtual' (known: udp, unix, "
                        "flatstore, tcp, rabbitmq, zmq, http, https; a "
                        "virtual socket is checked child by child)");
    assert_string_equal(s_refused("allow", "cidrs", "10.0.0/8"),
                        "'10.0.0/8' is not an IPv4 or IPv6 address (expected "
                        "ADDRESS[/PREFIX])");
    assert_string_equal(s_refused("allow", "cidrs", "[::1]/128"),
                        "'[::1]/128' is not an IPv4 or IPv6 address (expected "
                        "ADDRESS[/PREFIX])");
    assert_string_equal(s_refused("allow", "cidrs", "10.0.0.0/33"),
                        "bad prefix length in '10.0.0.0/33' (0 to 32)");
    assert_string_equal(s_refused("allow", "cidrs", "::/129"),
                        "bad prefix length in '::/129' (0 to 128)");
    assert_string_equal(s_refused("allow", "cidrs", "10.0.0.0/"),
                        "bad prefix length in '10.0.0.0/' (0 to 32)");
    assert_string_equal(s_refused("allow", "cidrs", "10.0.0.0/-1"),
                        "bad prefix length in '10.0.0.0/-1' (0 to 32)");
    assert_string_equal(s_refused("allow", "hosts", "10.0.0.5"),
                        "'10.0.0.5' is an address, not a host name "
                        "(addresses go in allow.cidrs)");
    assert_string_equal(s_refused("allow", "hosts", "*.10"),
                        "'*.10' is an address, not a host name (addresses go "
                        "in allow.cidrs)");
    assert_string_equal(s_refused("allow", "hosts", "a*.example.net"),
                        "'a*.example.net' is not a host name or *.NAME");
    assert_string_equal(s_refused("allow", "hosts", "*.-bad.net"),
                        "'*.-bad.net' is not a host name or *.NAME");
    assert_string_equal(s_refused("allow", "hosts", "*."),
                        "'*.' is not a host name or *.NAME");
    assert_string_equal(s_refused("allow", "ports", "0"),
                        "'0' is not a port or a range LOW-HIGH of ports 1 to "
                        "65535");
    assert_string_equal(s_refused("allow", "ports", "65536"),
                        "'65536' is not a port or a range LOW-HIGH of ports 1 "
                        "to 65535");
    assert_string_equal(s_refused("allow", "ports", "200-100"),
                        "'200-100' is not a port or a range LOW-HIGH of ports "
                        "1 to 65535");
    assert_string_equal(s_refused("allow", "ports", "9000-"),
                        "'9000-' is not a port or a range LOW-HIGH of ports 1 "
                        "to 65535");
    assert_string_equal(s_refused("allow", "dirs", "var/lib"),
                        "'var/lib' is not an absolute directory without '..'");
    assert_string_equal(s_refused("allow", "dirs", "/var/../etc"),
                        "'/var/../etc' is not an absolute directory without "
                        "'..'");
}

//  IPv4 prefixes at their edges, host bits, mapped addresses, names.
static void test_cidrs_v4(void **state)
{
    const char *lines[] = {"allow|cidrs|10.1.2.3/8, 172.16.0.0/12",
                           "allow|cidrs|192.0.2.1", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    assert_true(evr_policy_has_allowlist(self));
    ALLOWED(self, "udp:10.0.0.0:9");
    ALLOWED(self, "udp:10.255.255.255:9");
    ALLOWED(self, "tcp:172.16.0.1:9");
    ALLOWED(self, "tcp:172.31.255.255:9");
    ALLOWED(self, "udp:192.0.2.1:9");
    //  host bits of 10.1.2.3/8 are cleared in the listing
    REFUSED(self, "udp:11.0.0.0:9",
            "destination refused by allow.cidrs: 11.0.0.0 is not in "
            "10.0.0.0/8, 172.16.0.0/12, 192.0.2.1/32");
    REFUSED(self, "udp:9.255.255.255:9",
            "destination refused by allow.cidrs: 9.255.255.255 is not in "
            "10.0.0.0/8, 172.16.0.0/12, 192.0.2.1/32");
    REFUSED(self, "udp:172.32.0.0:9",
            "destination refused by allow.cidrs: 172.32.0.0 is not in "
            "10.0.0.0/8, 172.16.0.0/12, 192.0.2.1/32");
    REFUSED(self, "udp:192.0.2.2:9",
            "destination refused by allow.cidrs: 192.0.2.2 is not in "
            "10.0.0.0/8, 172.16.0.0/12, 192.0.2.1/32");
    //  IPv4 entries do not admit IPv6, except IPv4-mapped addresses
    REFUSED(self, "udp:[::1]:9",
            "destination refused by allow.cidrs: ::1 is not in 10.0.0.0/8, "
            "172.16.0.0/12, 192.0.2.1/32");
    ALLOWED(self, "udp:[::ffff:10.9.8.7]:9");
    REFUSED(self, "udp:[::ffff:11.0.0.1]:9",
            "destination refused by allow.cidrs: ::ffff:11.0.0.1 is not in "
            "10.0.0.0/8, 172.16.0.0/12, 192.0.2.1/32");
    //  a name is not resolved: without allow.hosts it is refused
    REFUSED(self, "udp:LocalHost:9",
            "destination refused by allow.cidrs: host name 'localhost' is "
            "not an address (names are not resolved; allow them in "
            "allow.hosts)");
    //  destinations without a host are not concerned
    ALLOWED(self, "flatstore:/tmp/x.log");
    ALLOWED(self, "unix:/run/x.sock");
    evr_policy_destroy(&self);

    const char *all[] = {"allow|cidrs|0.0.0.0/0", NULL};
    self = s_policy(all);
    ALLOWED(self, "udp:255.255.255.255:9");
    ALLOWED(self, "udp:0.0.0.0:9");
    REFUSED(self, "udp:[2001:db8::1]:9",
            "destination refused by allow.cidrs: 2001:db8::1 is not in "
            "0.0.0.0/0");
    evr_policy_destroy(&self);
}

//  IPv6 prefixes at their edges, spellings, /0 of either family.
static void test_cidrs_v6(void **state)
{
    const char *lines[] = {"allow|cidrs|::1/128 2001:db8::/32 fe80::/10",
                           "allow|cidrs|2001:DB8:1:2:3:4:5:6/127", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "udp:[::1]:9");
    ALLOWED(self, "udp:[0:0:0:0:0:0:0:1]:9");
    ALLOWED(self, "udp:[2001:db8::]:9");
    ALLOWED(self, "udp:[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:9");
    ALLOWED(self, "udp:[fe80::1]:9");
    ALLOWED(self, "udp:[febf:ffff::1]:9");
    const char *listed = "::1/128, 2001:db8::/32, fe80::/10, "
                         "2001:db8:1:2:3:4:5:6/127";
    char want[512];
    snprintf(want, sizeof want,
             "destination refused by allow.cidrs: 2001:db9:: is not in %s",
             listed);
    REFUSED(self, "udp:[2001:db9::]:9", want);
    snprintf(want, sizeof want,
             "destination refused by allow.cidrs: fec0:: is not in %s", listed);
    REFUSED(self, "udp:[fec0::]:9", want);
    snprintf(want, sizeof want,
             "destination refused by allow.cidrs: ::2 is not in %s", listed);
    REFUSED(self, "udp:[::2]:9", want);
    snprintf(want, sizeof want,
             "destination refused by allow.cidrs: 127.0.0.1 is not in %s",
             listed);
    REFUSED(self, "udp:127.0.0.1:9", want);
    evr_policy_destroy(&self);

    const char *any6[] = {"allow|cidrs|::/0", NULL};
    self = s_policy(any6);
    ALLOWED(self, "udp:[ffff::1]:9");
    REFUSED(self, "udp:10.0.0.1:9",
            "destination refused by allow.cidrs: 10.0.0.1 is not in ::/0");
    evr_policy_destroy(&self);
}

//  Exact and "*." host entries, case, addresses against hosts only.
static void test_hosts(void **state)
{
    const char *lines[] = {"allow|hosts|Rabbit.Internal *.example.net", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "rabbitmq:rabbit.internal/x");
    ALLOWED(self, "tcp:RABBIT.internal:9");
    ALLOWED(self, "udp:a.example.net:9");
    ALLOWED(self, "https://a.b.EXAMPLE.net/hook");
    REFUSED(self, "udp:example.net:9",
            "destination refused by allow.hosts: host 'example.net' is not "
            "in rabbit.internal, *.example.net");
    REFUSED(self, "udp:badexample.net:9",
            "destination refused by allow.hosts: host 'badexample.net' is not "
            "in rabbit.internal, *.example.net");
    REFUSED(self, "udp:rabbit.internal.evil:9",
            "destination refused by allow.hosts: host 'rabbit.internal.evil' "
            "is not in rabbit.internal, *.example.net");
    REFUSED(self, "udp:x.rabbit.internal:9",
            "destination refused by allow.hosts: host 'x.rabbit.internal' is "
            "not in rabbit.internal, *.example.net");
    //  an address meets allow.hosts only without allow.cidrs: refused
    REFUSED(self, "udp:127.0.0.1:9",
            "destination refused by allow.hosts: an address is not a host "
            "name (addresses are allowed by allow.cidrs, which is not set)");
    evr_policy_destroy(&self);

    const char *both[] = {"allow|hosts|localhost", "allow|cidrs|127.0.0.0/8",
                          NULL};
    self = s_policy(both);
    ALLOWED(self, "udp:localhost:9");
    ALLOWED(self, "udp:127.0.0.1:9");
    REFUSED(self, "udp:other:9",
            "destination refused by allow.hosts: host 'other' is not in "
            "localhost");
    REFUSED(self, "udp:10.0.0.1:9",
            "destination refused by allow.cidrs: 10.0.0.1 is not in "
            "127.0.0.0/8");
    evr_policy_destroy(&self);
}

//  Single ports and ranges at their edges, default ports.
static void test_ports(void **state)
{
    const char *lines[] = {"allow|ports|9000 10000-10100", "allow|ports|443",
                           NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "udp:10.0.0.1:9000");
    ALLOWED(self, "udp:10.0.0.1:10000");
    ALLOWED(self, "udp:10.0.0.1:10100");
    ALLOWED(self, "tcp:h:10050/m");
    ALLOWED(self, "https://h/x"); //  default port 443
    REFUSED(self, "udp:10.0.0.1:9999",
            "destination refused by allow.ports: port 9999 is not in 9000, "
            "10000-10100, 443");
    REFUSED(self, "udp:10.0.0.1:10101",
            "destination refused by allow.ports: port 10101 is not in 9000, "
            "10000-10100, 443");
    REFUSED(self, "http://h/x",
            "destination refused by allow.ports: port 80 is not in 9000, "
            "10000-10100, 443");
    REFUSED(self, "rabbitmq:h/rk",
            "destination refused by allow.ports: port 5672 is not in 9000, "
            "10000-10100, 443");
    //  no port: not concerned
    ALLOWED(self, "unix:/x");
    ALLOWED(self, "zmq:push:ipc:///x");
    evr_policy_destroy(&self);
}

//  Paths strictly below a directory, folded, "..", siblings, root.
static void test_dirs(void **state)
{
    const char *lines[] = {"allow|dirs|/var/lib/evrelay/flat/ /run//app/./",
                           NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "flatstore:/var/lib/evrelay/flat/cdr.log");
    ALLOWED(self, "flatstore:/var/lib/evrelay/flat/sub/cdr.log");
    ALLOWED(self, "flatstore:/var/lib//evrelay/./flat/cdr.log");
    ALLOWED(self, "unix:/run/app/ev.sock");
    ALLOWED(self, "zmq:pub:ipc:///run/app/z.sock");
    REFUSED(self, "flatstore:/var/lib/evrelay/flat/../secret",
            "destination refused by allow.dirs: "
            "/var/lib/evrelay/flat/../secret has a '..' component");
    REFUSED(self, "flatstore:/var/lib/evrelay/flatx/cdr.log",
            "destination refused by allow.dirs: "
            "/var/lib/evrelay/flatx/cdr.log is not inside "
            "/var/lib/evrelay/flat, /run/app");
    REFUSED(self, "unix:/run/app",
            "destination refused by allow.dirs: /run/app is not inside "
            "/var/lib/evrelay/flat, /run/app");
    REFUSED(self, "unix:/tmp/x.sock",
            "destination refused by allow.dirs: /tmp/x.sock is not inside "
            "/var/lib/evrelay/flat, /run/app");
    REFUSED(self, "zmq:push:ipc:///tmp/z",
            "destination refused by allow.dirs: /tmp/z is not inside "
            "/var/lib/evrelay/flat, /run/app");
    //  a '..' file name part is no component
    ALLOWED(self, "flatstore:/run/app/..log");
    //  no path: not concerned
    ALLOWED(self, "udp:192.0.2.1:9");
    evr_policy_destroy(&self);

    const char *root[] = {"allow|dirs|/", NULL};
    self = s_policy(root);
    ALLOWED(self, "flatstore:/x");
    REFUSED(self, "flatstore:/a/../x",
            "destination refused by allow.dirs: /a/../x has a '..' "
            "component");
    evr_policy_destroy(&self);

    const char *none[] = {"allow|dirs|", NULL};
    self = s_policy(none);
    REFUSED(self, "flatstore:/x",
            "destination refused by allow.dirs: /x is not inside (nothing)");
    ALLOWED(self, "udp:1.2.3.4:5");
    evr_policy_destroy(&self);
}

//  Transport names, evid: by the wrapped one, https apart from http.
static void test_transports(void **state)
{
    const char *lines[] = {"allow|transports|udp,unix https zmq", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "udp:h:1");
    ALLOWED(self, "evid:udp:h:1");
    ALLOWED(self, "https://h/");
    ALLOWED(self, "zmq:push:tcp://h:1");
    ALLOWED(self, "virtual:PARALLEL udp:h:1 unix:/x");
    REFUSED(self, "http://h/",
            "destination refused by allow.transports: transport 'http' is "
            "not in udp, unix, zmq, https");
    REFUSED(self, "evid:tcp:h:1",
            "destination refused by allow.transports: transport 'tcp' is "
            "not in udp, unix, zmq, https");
    REFUSED(self, "flatstore:/x",
            "destination refused by allow.transports: transport 'flatstore' "
            "is not in udp, unix, zmq, https");
    evr_policy_destroy(&self);
}

//  zmq tcp:// endpoints by address and port, ipc:// by path.
static void test_zmq_endpoints(void **state)
{
    const char *lines[] = {"allow|cidrs|127.0.0.0/8 ::1", "allow|ports|5555",
                           NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "zmq:push:tcp://127.0.0.1:5555");
    ALLOWED(self, "zmq:pub:tcp://[::1]:5555");
    REFUSED(self, "zmq:push:tcp://[::2]:5555",
            "destination refused by allow.cidrs: ::2 is not in 127.0.0.0/8, "
            "::1/128");
    REFUSED(self, "zmq:push:tcp://127.0.0.1:5556",
            "destination refused by allow.ports: port 5556 is not in 5555");
    REFUSED(self, "zmq:push:tcp://broker:5555",
            "destination refused by allow.cidrs: host name 'broker' is not "
            "an address (names are not resolved; allow them in allow.hosts)");
    ALLOWED(self, "zmq:push:ipc:///anywhere");
    evr_policy_destroy(&self);
}

//  Rules are checked transports, host, port, path; the first named.
static void test_rule_order(void **state)
{
    //  transports, then the host, then the port, then the path
    const char *lines[] = {"allow|transports|udp", "allow|cidrs|10.0.0.0/8",
                           "allow|ports|9", NULL};
    evr_policy_rules_t *self = s_policy(lines);
    REFUSED(self, "tcp:192.0.2.1:1",
            "destination refused by allow.transports: transport 'tcp' is not "
            "in udp");
    REFUSED(self, "udp:192.0.2.1:1",
            "destination refused by allow.cidrs: 192.0.2.1 is not in "
            "10.0.0.0/8");
    REFUSED(self, "udp:10.0.0.1:1",
            "destination refused by allow.ports: port 1 is not in 9");
    evr_denial_t d;
    char err[256];
    evr_sockspec_t *spec =
        evr_sockspec_parse("udp:10.0.0.1:1", err, sizeof err);
    assert_int_equal(evr_policy_check_socket(self, spec, &d), -1);
    assert_int_equal(d.allow_rule, EVR_ALLOW_PORTS);
    assert_string_equal(d.rule, "allow.ports");
    evr_sockspec_destroy(&spec);
    evr_policy_destroy(&self);
}

//  A virtual socket passes when each child does; the first refused is
//  named with its number.
static void test_virtual_children(void **state)
{
    const char *lines[] = {"allow|cidrs|127.0.0.0/8", "allow|ports|9000-9010",
                           NULL};
    evr_policy_rules_t *self = s_policy(lines);
    ALLOWED(self, "virtual:FAILOVER udp:127.0.0.1:9000 tcp:127.0.0.2:9010");
    REFUSED(self,
            "virtual:FAILOVER udp:127.0.0.1:9000 udp:127.0.0.1:9999 "
            "udp:10.0.0.1:9000",
            "destination refused by allow.ports: virtual child 2 "
            "'udp:127.0.0.1:9999': port 9999 is not in 9000-9010");
    REFUSED(self, "virtual:PARALLEL udp:127.0.0.1:9000 evid:udp:10.0.0.1:9000",
            "destination refused by allow.cidrs: virtual child 2 "
            "'evid:udp:10.0.0.1:9000': 10.0.0.1 is not in 127.0.0.0/8");
    REFUSED(self, "virtual:ROUND-ROBIN udp:10.0.0.1:9000 udp:127.0.0.1:1",
            "destination refused by allow.cidrs: virtual child 1 "
            "'udp:10.0.0.1:9000': 10.0.0.1 is not in 127.0.0.0/8");
    evr_policy_destroy(&self);
}

//  A long list is cut with "..." and the message stays in bounds.
static void test_long_lists_are_cut(void **state)
{
    evr_policy_rules_t *self = evr_policy_new();
    char err[256];
    for (int i = 0; i < 100; i++) {
        char port[16];
        snprintf(port, sizeof port, "%d", 20000 + i);
        assert_int_equal(
            evr_policy_set(self, "allow", "ports", port, err, sizeof err), 0);
    }
    const char *why = s_check(self, "udp:h:1");
    assert_non_null(why);
    assert_true(strlen(why) < 512);
    assert_non_null(strstr(why, "port 1 is not in 20000, 20001, "));
    assert_non_null(strstr(why, "..."));
    evr_policy_destroy(&self);
}

//  --- [http_auth] -------------------------------------------------------------

//  Bearer and basic credentials name their operator, nothing else does.
static void test_credentials(void **state)
{
    const char *lines[] = {
        "http_auth|alice|bearer:tok-A.1~+/=", "http_auth|bob|basic:p@ss word:x",
        "http_auth|bob|bearer:tok-B", "http_auth|carol|basic:p@ss word:x",
        NULL};
    evr_policy_rules_t *self = s_policy(lines);
    assert_false(evr_policy_enforced(self));
    assert_int_equal(evr_policy_credentials(self, true), 2);
    assert_int_equal(evr_policy_credentials(self, false), 2);
    assert_string_equal(evr_policy_bearer(self, "tok-A.1~+/="), "alice");
    assert_string_equal(evr_policy_bearer(self, "tok-B"), "bob");
    assert_null(evr_policy_bearer(self, "tok-A.1~+/"));
    assert_null(evr_policy_bearer(self, "tok-A.1~+/=x"));
    assert_null(evr_policy_bearer(self, ""));
    assert_null(evr_policy_bearer(self, NULL));
    //  a basic password is no bearer token, and the reverse
    assert_null(evr_policy_bearer(self, "p@ss word:x"));
    assert_null(evr_policy_basic(self, "alice", "tok-A.1~+/="));
    assert_string_equal(evr_policy_basic(self, "bob", "p@ss word:x"), "bob");
    assert_string_equal(evr_policy_basic(self, "carol", "p@ss word:x"),
                        "carol");
    assert_null(evr_policy_basic(self, "Bob", "p@ss word:x"));
    assert_null(evr_policy_basic(self, "bob", "p@ss word"));
    assert_null(evr_policy_basic(self, "dave", "p@ss word:x"));
    assert_null(evr_policy_basic(self, NULL, "p@ss word:x"));
    assert_null(evr_policy_basic(self, "bob", NULL));
    evr_policy_destroy(&self);
}

//  Bad [http_auth] values; errors never show the secret.
static void test_credential_errors(void **state)
{
    const char *want = "expected bearer:TOKEN or basic:PASSWORD (not empty)";
    assert_string_equal(s_refused("http_auth", "alice", "s3cret"), want);
    assert_string_equal(s_refused("http_auth", "alice", "bearer:"), want);
    assert_string_equal(s_refused("http_auth", "alice", "Basic:s3cret"), want);
    assert_string_equal(s_refused("http_auth", "alice", "bearer:a b"),
                        "the secret has a control character or a space");
    assert_string_equal(s_refused("http_auth", "alice", "basic:a\tb"),
                        "the secret has a control character");
    assert_string_equal(s_refused("http_auth", "local", "basic:x"),
                        "'local' names a [policy] entry, not an operator: "
                        "pick another name");
    assert_string_equal(s_refused("http_auth", "*", "bearer:x"),
                        "'*' names a [policy] entry, not an operator: pick "
                        "another name");
    //  one token, two operators
    evr_policy_rules_t *self = evr_policy_new();
    char err[256];
    assert_int_equal(evr_policy_set(self, "http_auth", "alice", "bearer:s3cret",
                                    err, sizeof err),
                     0);
    assert_int_equal(evr_policy_set(self, "http_auth", "bob", "bearer:s3cret",
                                    err, sizeof err),
                     -1);
    assert_string_equal(err, "the same bearer token is given to 'alice'");
    assert_null(strstr(err, "s3cret"));
    evr_policy_destroy(&self);
}

//  --- loopback ----------------------------------------------------------------

//  Whether a textual address is loopback.
static bool s_loopback(const char *text)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
        return evr_policy_loopback((struct sockaddr *)&in);
    assert_int_equal(inet_pton(AF_INET6, text, &in6.sin6_addr), 1);
    return evr_policy_loopback((struct sockaddr *)&in6);
}

//  Loopback addresses of both families.
static void test_loopback(void **state)
{
    assert_true(s_loopback("127.0.0.1"));
    assert_true(s_loopback("127.255.0.9"));
    assert_true(s_loopback("::1"));
    assert_true(s_loopback("::ffff:127.0.0.1"));
    assert_false(s_loopback("0.0.0.0"));
    assert_false(s_loopback("128.0.0.1"));
    assert_false(s_loopback("126.255.255.255"));
    assert_false(s_loopback("10.0.0.1"));
    assert_false(s_loopback("::"));
    assert_false(s_loopback("::2"));
    assert_false(s_loopback("::ffff:10.0.0.1"));
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_false(evr_policy_loopback(&other));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_allows_everything),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_action_mapping),
        cmocka_unit_test(test_expire_zero_is_unsubscribe),
        cmocka_unit_test(test_grants),
        cmocka_unit_test(test_unlisted),
        cmocka_unit_test(test_policy_errors),
        cmocka_unit_test(test_allow_errors),
        cmocka_unit_test(test_cidrs_v4),
        cmocka_unit_test(test_cidrs_v6),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_dirs),
        cmocka_unit_test(test_transports),
        cmocka_unit_test(test_zmq_endpoints),
        cmocka_unit_test(test_rule_order),
        cmocka_unit_test(test_virtual_children),
        cmocka_unit_test(test_long_lists_are_cut),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_credential_errors),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
