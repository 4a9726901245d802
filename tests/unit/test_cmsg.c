/*  test_cmsg.c - unit tests of evr_cmsg, the cluster's messages between
    relays: decoding, the checks of records, deltas and heartbeats, and
    the endpoint strings peers advertise.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "evr_cmsg.h"

//  A valid wire record.
static Evrelay__Record s_record(void)
{
    Evrelay__Record pb = EVRELAY__RECORD__INIT;
    pb.event = "E_PIKE_BLOCKED";
    pb.socket = "udp:[0::1]:9000";
    pb.expire_s = 60;
    pb.sub_time_ms = 1000;
    pb.hlc = 1000 << 16;
    pb.origin = "relay1";
    return pb;
}

static void test_decode(void **state)
{
    Evrelay__SnapshotRequest req = EVRELAY__SNAPSHOT_REQUEST__INIT;
    req.id = 5;
    Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
    msg.version = 1;
    msg.body_case = EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_REQUEST;
    msg.snapshot_request = &req;
    uint8_t frame[64];
    size_t len = evrelay__cluster_msg__pack(&msg, frame);
    evr_cmsg_rc_t rc;
    Evrelay__ClusterMsg *got = evr_cmsg_decode(frame, len, 64, &rc);
    assert_non_null(got);
    assert_int_equal(rc, EVR_CMSG_OK);
    assert_int_equal(got->snapshot_request->id, 5);
    evrelay__cluster_msg__free_unpacked(got, NULL);
    assert_null(evr_cmsg_decode(frame, len, len - 1, &rc));
    assert_int_equal(rc, EVR_CMSG_MALFORMED);
    assert_null(evr_cmsg_decode("\xff", 1, 64, &rc));
    assert_int_equal(rc, EVR_CMSG_MALFORMED);
    msg.version = 2;
    len = evrelay__cluster_msg__pack(&msg, frame);
    assert_null(evr_cmsg_decode(frame, len, 64, &rc));
    assert_int_equal(rc, EVR_CMSG_BAD_VERSION);
}

static void test_record(void **state)
{
    Evrelay__Record pb = s_record();
    evr_record_t rec;
    evr_sockspec_t *spec;
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), 0);
    assert_string_equal(rec.match_key, "udp:[::1]:9000");
    assert_int_equal(rec.expire_s, 60);
    assert_false(rec.tombstone);
    //  and back
    Evrelay__Record again;
    evr_cmsg_record_to_pb(&rec, &again);
    assert_string_equal(again.socket, pb.socket);
    assert_int_equal(again.hlc, pb.hlc);
    evr_sockspec_destroy(&spec);

    //  a tombstone needs no expire, and has none
    pb.expire_s = 0;
    pb.has_tombstone = pb.tombstone = true;
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), 0);
    assert_true(rec.tombstone);
    evr_sockspec_destroy(&spec);
}

static void test_record_refused(void **state)
{
    evr_record_t rec;
    evr_sockspec_t *spec;
    Evrelay__Record pb = s_record();
    pb.expire_s = 0; //  a subscription without an expire
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), -1);
    assert_null(spec);
    pb = s_record();
    pb.event = "E X";
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), -1);
    pb = s_record();
    pb.socket = "udp:h";
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), -1);
    assert_null(spec);
    pb = s_record();
    pb.origin = "";
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), -1);
    char origin[EVR_CMSG_MAX_NODE + 2];
    memset(origin, 'o', sizeof origin - 1);
    origin[sizeof origin - 1] = 0;
    pb.origin = origin;
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), -1);
    origin[EVR_CMSG_MAX_NODE] = 0;
    assert_int_equal(evr_cmsg_record_from_pb(&pb, &rec, &spec), 0);
    evr_sockspec_destroy(&spec);
    assert_int_equal(evr_cmsg_record_from_pb(NULL, &rec, &spec), -1);
}

static void test_delta(void **state)
{
    Evrelay__Record pb = s_record();
    Evrelay__Delta delta = EVRELAY__DELTA__INIT;
    delta.origin = "relay1";
    delta.instance = 1;
    delta.seq = 1;
    delta.record = &pb;
    evr_record_t rec;
    evr_sockspec_t *spec;
    assert_int_equal(evr_cmsg_delta(&delta, &rec, &spec), 0);
    evr_sockspec_destroy(&spec);
    delta.seq = 0;
    assert_int_equal(evr_cmsg_delta(&delta, &rec, &spec), -1);
    delta.seq = 1;
    //  a delta's origin is a node id too: bounded like a record's
    char origin[EVR_CMSG_MAX_NODE + 2];
    memset(origin, 'o', sizeof origin - 1);
    origin[sizeof origin - 1] = 0;
    delta.origin = origin;
    assert_int_equal(evr_cmsg_delta(&delta, &rec, &spec), -1);
    assert_null(spec);
    delta.origin = "relay1";
    delta.record = NULL;
    assert_int_equal(evr_cmsg_delta(&delta, &rec, &spec), -1);
}

static void test_heartbeat(void **state)
{
    Evrelay__Heartbeat hb = EVRELAY__HEARTBEAT__INIT;
    hb.node = "relay2";
    hb.cluster_endpoint = "tcp://10.0.0.2:7970";
    hb.pub_endpoint = "tcp://10.0.0.2:40000";
    assert_true(evr_cmsg_heartbeat_ok(&hb));
    hb.node = "";
    assert_false(evr_cmsg_heartbeat_ok(&hb));
    hb.node = "relay2";
    hb.pub_endpoint = NULL;
    assert_false(evr_cmsg_heartbeat_ok(&hb));
}

static void test_endpoints(void **state)
{
    assert_true(evr_cmsg_wildcard_host("tcp://*:1"));
    assert_true(evr_cmsg_wildcard_host("tcp://0.0.0.0:1"));
    assert_true(evr_cmsg_wildcard_host("tcp://[::]:1"));
    assert_false(evr_cmsg_wildcard_host("tcp://h:1"));
    assert_false(evr_cmsg_wildcard_host("ipc:///x"));
    assert_false(evr_cmsg_wildcard_host("tcp://*"));
    char *pub =
        evr_cmsg_pub_connect_endpoint("tcp://*:40000", "tcp://relay2:7970");
    assert_string_equal(pub, "tcp://relay2:40000");
    free(pub);
    pub = evr_cmsg_pub_connect_endpoint("tcp://[::]:40000", "tcp://[::1]:7970");
    assert_string_equal(pub, "tcp://[::1]:40000");
    free(pub);
    pub = evr_cmsg_pub_connect_endpoint("ipc:///run/c.pub", "ipc:///run/c");
    assert_string_equal(pub, "ipc:///run/c.pub");
    free(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),         cmocka_unit_test(test_record),
        cmocka_unit_test(test_record_refused), cmocka_unit_test(test_delta),
        cmocka_unit_test(test_heartbeat),      cmocka_unit_test(test_endpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
