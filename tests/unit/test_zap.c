/*  test_zap.c - unit tests of evr_zap: ZAP request parsing, the keyring
    (per-domain key lists, names, atomic replacement) and the decision.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "evr_zap.h"
#include <string.h>
#include <zmq.h>

static const char *const s_domains[] = {"ingest", "control", "cluster"};

//  A fresh key pair's public key, Z85 and raw.
static void s_key(char *z85, uint8_t *raw)
{
    char secret[41];
    assert_int_equal(zmq_curve_keypair(z85, secret), 0);
    assert_non_null(zmq_z85_decode(raw, z85));
}

//  Parse a request made of the given frames (NULL-terminated strings, the
//  last one raw when key is set).
static int s_parse(evr_zap_request_t *req, const char *domain,
                   const char *mechanism, const uint8_t *key, size_t keylen)
{
    const void *data[7] = {"1.0", "id7",     domain, "127.0.0.1",
                           "",    mechanism, key};
    size_t len[7] = {3, 3, strlen(domain), 9, 0, strlen(mechanism), keylen};
    char err[128];
    return evr_zap_parse(data, len, key ? 7 : 6, req, err, sizeof err);
}

static void test_parse(void **state)
{
    evr_zap_request_t req;
    uint8_t key[32] = {1, 2, 3};
    assert_int_equal(s_parse(&req, "ingest", "CURVE", key, 32), 0);
    assert_string_equal(req.domain, "ingest");
    assert_string_equal(req.address, "127.0.0.1");
    assert_string_equal(req.mechanism, "CURVE");
    assert_true(req.has_key);
    assert_memory_equal(req.key, key, 32);
    assert_int_equal(req.request_id_len, 3);
    //  CURVE without its 32-byte key, a short request, a bad version
    assert_int_equal(s_parse(&req, "ingest", "CURVE", key, 31), -1);
    assert_int_equal(s_parse(&req, "ingest", "CURVE", NULL, 0), -1);
    const void *data[6] = {"2.0", "", "", "", "", "NULL"};
    size_t len[6] = {3, 0, 0, 0, 0, 4};
    char err[128];
    assert_int_equal(evr_zap_parse(data, len, 6, &req, err, sizeof err), -1);
    assert_non_null(strstr(err, "version"));
    assert_int_equal(evr_zap_parse(data, len, 3, &req, err, sizeof err), -1);
    //  NULL mechanism: parsed, no key
    data[0] = "1.0";
    assert_int_equal(evr_zap_parse(data, len, 6, &req, err, sizeof err), 0);
    assert_false(req.has_key);
    //  a domain too long for the buffer
    char longdomain[200];
    memset(longdomain, 'd', sizeof longdomain - 1);
    longdomain[sizeof longdomain - 1] = 0;
    assert_int_equal(s_parse(&req, longdomain, "CURVE", key, 32), -1);
}

static void test_keyring_per_domain(void **state)
{
    evr_keyring_t *ring = evr_keyring_new(s_domains, 3);
    assert_non_null(ring);
    assert_int_equal(evr_keyring_domain(ring, "control"), 1);
    assert_int_equal(evr_keyring_domain(ring, "nope"), -1);
    char alice[41], bob[41];
    uint8_t raw[32];
    s_key(alice, raw);
    s_key(bob, raw);
    assert_int_equal(evr_keyring_begin(ring, 1), 0);
    assert_int_equal(evr_keyring_add(ring, alice, "alice"), 0);
    assert_int_equal(evr_keyring_add(ring, bob, NULL), 0); //  named by key
    assert_int_equal(evr_keyring_add(ring, "short", "x"), -1);
    evr_keyring_commit(ring);
    char name[128];
    assert_true(evr_keyring_lookup(ring, 1, alice, name, sizeof name));
    assert_string_equal(name, "alice");
    assert_true(evr_keyring_lookup(ring, 1, bob, name, sizeof name));
    assert_string_equal(name, bob);
    assert_false(evr_keyring_lookup(ring, 0, alice, NULL, 0)); //  not ingest
    assert_true(evr_keyring_has_name(ring, 1, "alice"));
    assert_false(evr_keyring_has_name(ring, 2, "alice"));
    assert_int_equal(evr_keyring_size(ring, 1), 2);
    //  a reload without alice: she is gone at once, bob stays
    assert_int_equal(evr_keyring_begin(ring, 1), 0);
    assert_int_equal(evr_keyring_add(ring, bob, "bob"), 0);
    assert_true(evr_keyring_has_name(ring, 1, "alice")); //  not committed
    evr_keyring_commit(ring);
    assert_false(evr_keyring_has_name(ring, 1, "alice"));
    assert_true(evr_keyring_has_name(ring, 1, "bob"));
    assert_int_equal(evr_keyring_size(ring, 1), 1);
    assert_int_equal(evr_keyring_begin(ring, 7), -1);
    evr_keyring_destroy(&ring);
    assert_null(ring);
}

static void test_decide(void **state)
{
    evr_keyring_t *ring = evr_keyring_new(s_domains, 3);
    char alice[41], eve[41];
    uint8_t alice_raw[32], eve_raw[32];
    s_key(alice, alice_raw);
    s_key(eve, eve_raw);
    evr_keyring_begin(ring, 0);
    evr_keyring_add(ring, alice, "alice");
    evr_keyring_commit(ring);
    evr_zap_request_t req;
    evr_zap_reply_t reply;
    s_parse(&req, "ingest", "CURVE", alice_raw, 32);
    assert_true(evr_zap_decide(ring, &req, &reply));
    assert_string_equal(reply.status, "200");
    assert_string_equal(reply.user_id, "alice");
    assert_int_equal(reply.domain, 0);
    //  the same key on another socket's domain is refused
    s_parse(&req, "control", "CURVE", alice_raw, 32);
    assert_false(evr_zap_decide(ring, &req, &reply));
    assert_string_equal(reply.status, "400");
    assert_int_equal(reply.domain, 1);
    assert_string_equal(reply.key_z85, alice);
    //  an unknown key, an unknown domain, no CURVE
    s_parse(&req, "ingest", "CURVE", eve_raw, 32);
    assert_false(evr_zap_decide(ring, &req, &reply));
    assert_string_equal(reply.text, "key not allowed");
    s_parse(&req, "elsewhere", "CURVE", alice_raw, 32);
    assert_false(evr_zap_decide(ring, &req, &reply));
    assert_int_equal(reply.domain, -1);
    s_parse(&req, "ingest", "NULL", NULL, 0);
    assert_false(evr_zap_decide(ring, &req, &reply));
    assert_string_equal(reply.text, "CURVE required");
    evr_keyring_destroy(&ring);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_keyring_per_domain),
        cmocka_unit_test(test_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
