#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets whose inputs are binary
(protobuf frames, store files) or JSON-RPC bodies:

    tests/fuzz/corpus/{control,mi,cluster,store,ack,reply}/

Each seed is a real, valid input (plus a few near misses that the code
must refuse), named after what it holds. Run from anywhere; it rewrites
only the files it names. Needs nothing but the Python standard library:
the protobuf encoding below follows proto/evrelay.proto by hand, on the
varints of tests/integration/evrtest.py.
"""
import json
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from evrtest import _varint as varint, _zigzag as zigzag  # noqa: E402


# --- protobuf wire format (proto2, the few types evrelay.proto uses) -------

def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_sint(field, n):
    return f_varint(field, zigzag(n) & (2**64 - 1))


def f_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def f_packed(field, values):
    return f_bytes(field, b"".join(varint(v) for v in values))


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- Publish (producer to relay) ------------------------------------------------

def publish(events, producer=bytes(range(16)), epoch=1, first_seq=1):
    out = (f_varint(1, 1) + f_bytes(2, producer) + f_varint(3, epoch) +
           f_varint(4, first_seq))
    for e in events:
        out += f_bytes(5, e)
    return out


def event(name, params=()):
    out = f_bytes(1, name)
    for p in params:
        out += f_bytes(2, p)
    return out


def publish_seeds():
    # found by fuzz_publish: an empty string value decodes with no bytes
    # at all (NULL), and the JSON escaper did arithmetic on it
    write("publish", "empty_str_value", publish(
        [event("E_X", [f_bytes(1, "s") + f_bytes(3, b""),
                       f_bytes(3, b"")])]))


# --- ControlRequest (control socket, evrelayctl, the HTTP face) -------------

def control_request(method, params=None, version=1, rid=42):
    out = f_varint(1, version) + f_varint(2, rid) + f_bytes(3, method)
    if params is not None:
        out += f_bytes(4, params if isinstance(params, str)
                       else json.dumps(params, separators=(",", ":"),
                                  ensure_ascii=False))
    return out


def control_seeds():
    seeds = {
        "subscribe": control_request(
            "subscribe", ["E_PIKE_BLOCKED", "udp:127.0.0.1:9000", 60]),
        "subscribe_named_expire_text": control_request(
            "evi:subscribe", {"event": "E_ACC_CDR",
                              "socket": "tcp:10.0.0.5:9000/cdr",
                              "expire": "3600"}),
        "subscribe_virtual": control_request(
            "event_subscribe", ["E_X", "virtual:FAILOVER tcp:h:1 udp:h:2"]),
        "list": control_request("list"),
        "list_empty_params": control_request("events_list", ""),
        "subscribers_one": control_request(
            "subscribers_list", ["E_X", "udp:127.0.0.1:9000"]),
        "raise_named": control_request(
            "raise", ["E_PIKE_BLOCKED", {"ip": "192.168.2.11", "n": 7,
                                          "null": None, "ok": True,
                                          "nested": {"a": [1, 2.5]}}]),
        "raise_positional": control_request(
            "raise_event", {"event": "E_X", "params": ["a", 1, -2.75, "é"]}),
        "raise_string_form": control_request(
            "evi:raise", {"event": "E_X",
                          "params": "{\"caller\":\"sip:a@b\",\"code\":486}"}),
        "raise_big_int": control_request(
            "raise", "[\"E_X\",{\"big\":123456789012345678901234567890,"
                     "\"neg\":-99999999999,\"real\":1e300}]"),
        "raise_escapes": control_request(
            "raise", ["E_X", {"q": "a\"b\\c\n\t\u0001\u00ff\U0001f600"}]),
        "stats": control_request("stats", rid=1),
        "health": control_request("health"),
        "cluster": control_request("cluster"),
        "rotate": control_request("flatstore-rotate",
                                  ["/var/log/evrelay/cdr.log"]),
        "unknown_method": control_request("no_such_method", ["x"]),
        "dup_keys": control_request(
            "subscribe", "{\"event\":\"E_X\",\"event\":\"E_Y\"}"),
        "bad_json": control_request("subscribe", "[\"E_X\","),
        "bad_version": control_request("list", version=2),
        "zero_id": control_request("list", rid=0),
    }
    for name, data in seeds.items():
        write("control", name, data)


# --- POST /mi bodies (the HTTP face) -----------------------------------------

def mi_seeds():
    seeds = {
        "subscribe": {"jsonrpc": "2.0", "method": "evi:subscribe",
                      "params": ["E_PIKE_BLOCKED", "udp:127.0.0.1:9000"],
                      "id": 1},
        "subscribe_named": {"jsonrpc": "2.0", "method": "event_subscribe",
                            "params": {"event": "E_X",
                                       "socket": "unix:/run/s.sock",
                                       "expire": 0},
                            "id": "req-7"},
        "list_no_params": {"jsonrpc": "2.0", "method": "evi:list", "id": 2},
        "notification": {"jsonrpc": "2.0", "method": "stats"},
        "id_null": {"jsonrpc": "2.0", "method": "health", "id": None},
        "id_real": {"jsonrpc": "2.0", "method": "list", "id": 1.5},
        "raise": {"jsonrpc": "2.0", "method": "evi:raise",
                  "params": {"event": "E_X",
                             "params": {"a": 1, "b": "two", "c": [3]}},
                  "id": 3},
        "bad_id_object": {"jsonrpc": "2.0", "method": "list", "id": {}},
        "bad_version": {"jsonrpc": "1.0", "method": "list", "id": 4},
        "bad_method": {"jsonrpc": "2.0", "method": 5, "id": 5},
        "bad_params": {"jsonrpc": "2.0", "method": "list", "params": "x",
                       "id": 6},
        "batch": [{"jsonrpc": "2.0", "method": "list", "id": 1}],
    }
    for name, body in seeds.items():
        write("mi", name, json.dumps(body))
    write("mi", "big_id", '{"jsonrpc":"2.0","method":"list",'
                          '"id":123456789012345678901234567890}')
    write("mi", "dup_keys", '{"jsonrpc":"2.0","method":"list",'
                            '"method":"stats","id":1}')
    write("mi", "escapes", '{"jsonrpc":"2.0","method":"raise","params":'
                           '["E_X",{"s":"\\u00e9\\ud83d\\ude00\\n"}],'
                           '"id":"\\u0041"}')
    write("mi", "parse_error", '{"jsonrpc":"2.0","method":')
    write("mi", "whitespace", ' \r\n\t{ "jsonrpc" : "2.0" , "method" : '
                              '"list" , "id" : -0 } \n')


# --- ClusterMsg (relay to relay) ---------------------------------------------

NOW_MS = 1700000000000          # fuzz_cluster's wall clock
HLC = NOW_MS << 16


def record(event, socket, expire_s=3600, sub_time_ms=NOW_MS, hlc=HLC,
           origin="relay1:7960", tombstone=None):
    out = (f_bytes(1, event) + f_bytes(2, socket) + f_varint(3, expire_s) +
           f_varint(4, sub_time_ms) + f_varint(5, hlc) + f_bytes(6, origin))
    if tombstone is not None:
        out += f_varint(7, 1 if tombstone else 0)
    return out


def origin_seq(origin, instance, seq):
    return f_bytes(1, origin) + f_varint(2, instance) + f_varint(3, seq)


def cluster_msg(field, body, version=1):
    return f_varint(1, version) + f_bytes(field, body)


def delta(rec, origin="relay1:7960", instance=1700000000000000, seq=1):
    return cluster_msg(3, f_bytes(1, origin) + f_varint(2, instance) +
                       f_varint(3, seq) + f_bytes(4, rec))


def heartbeat(node, endpoint, pub, seqs=(), members=(), ready=True,
              hlc=HLC):
    body = (f_bytes(1, node) + f_varint(2, 1700000000000000) +
            f_bytes(3, endpoint) + f_bytes(4, pub))
    for s in seqs:
        body += f_bytes(5, origin_seq(*s))
    body += f_varint(6, 0x1234567890ABCDEF) + f_varint(7, len(seqs))
    for m in members:
        body += f_bytes(8, m)
    body += f_varint(9, 1 if ready else 0) + f_varint(10, hlc)
    return cluster_msg(2, body)


def chunk(rid, records, last, seqs=()):
    body = f_varint(1, rid)
    for r in records:
        body += f_bytes(2, r)
    body += f_varint(3, 1 if last else 0)
    for s in seqs:
        body += f_bytes(4, origin_seq(*s))
    return cluster_msg(5, body)


def cluster_seeds():
    sub = record("E_PIKE_BLOCKED", "udp:127.0.0.1:9000")
    seeds = {
        "delta_subscribe": delta(sub),
        "delta_unsubscribe": delta(
            record("E_PIKE_BLOCKED", "udp:127.0.0.1:9000", expire_s=0,
                   hlc=HLC + 1, tombstone=True), seq=2),
        "delta_virtual": delta(record(
            "E_ACC_CDR", "virtual:PARALLEL tcp:10.0.0.5:9000/cdr "
            "evid:udp:[::1]:9001", expire_s=60), seq=3),
        "delta_rabbitmq_password": delta(record(
            "E_ACC_CDR", "rabbitmq:u:s3cret@10.0.0.6/exchange=ev;persistent"
            "?cdr", expire_s=86400), origin="relay2:7970", seq=9),
        "delta_zero_expire": delta(record("E_X", "unix:/run/s", expire_s=0)),
        "delta_bad_name": delta(record("E X", "udp:h:1")),
        "delta_lease_too_long": delta(record("E_X", "udp:h:1",
                                             expire_s=10 * 86400)),
        "delta_far_future": delta(record("E_X", "udp:h:1",
                                         hlc=(NOW_MS + 60000) << 16)),
        "heartbeat": heartbeat(
            "relay2:7970", "tcp://10.0.0.2:7970", "tcp://10.0.0.2:40123",
            seqs=[("relay1:7960", 1700000000000000, 42),
                  ("relay2:7970", 1700000000000001, 7)],
            members=["tcp://10.0.0.1:7960", "tcp://10.0.0.3:7980"]),
        "heartbeat_wildcard_pub": heartbeat(
            "relay3", "tcp://relay3.example:7980", "tcp://*:40124"),
        "heartbeat_ipv6": heartbeat(
            "relay4", "tcp://[::1]:7990", "tcp://[::]:40125",
            members=["tcp://0.0.0.0:1"], ready=False),
        "heartbeat_ipc": heartbeat("relay5", "ipc:///run/evrelay/c",
                                   "ipc:///run/evrelay/c.pub"),
        "snapshot_request": cluster_msg(4, f_varint(1, 77)),
        "snapshot_chunk": chunk(77, [sub, record(
            "E_ACC_CDR", "flatstore:/var/log/cdr.log", expire_s=0,
            tombstone=True, origin="relay2:7970")], False),
        "snapshot_last": chunk(77, [record(
            "E_X", "zmq:push:tcp://127.0.0.1:5555", expire_s=5,
            hlc=HLC + 5)], True, seqs=[("relay1:7960", 1700000000000000, 3)]),
        "bad_version": cluster_msg(4, f_varint(1, 1), version=2),
    }
    for name, data in seeds.items():
        write("cluster", name, data)


# --- the data directory's files (evr_store) -----------------------------------

def frame(payload, crc=None):
    if crc is None:
        crc = zlib.crc32(payload)
    return struct.pack("<II", len(payload), crc & 0xFFFFFFFF) + payload


def store_seeds():
    sub = record("E_PIKE_BLOCKED", "udp:127.0.0.1:9000")
    again = record("E_PIKE_BLOCKED", "udp:127.0.0.1:9000", expire_s=60,
                   hlc=HLC + 1)
    gone = record("E_PIKE_BLOCKED", "udp:127.0.0.1:9000", expire_s=0,
                  hlc=HLC + 2, tombstone=True)
    other = record("E_ACC_CDR", "virtual:FAILOVER tcp:h:1 unix:/run/s",
                   origin="relay2:7970")
    log3 = frame(sub) + frame(again) + frame(gone)
    snap = frame(other) + frame(sub)
    # first byte: 0 = log, 1 = snapshot, 2 = both (second byte: split)
    seeds = {
        "log_one": b"\0\0" + frame(sub),
        "log_three": b"\0\0" + log3,
        "log_torn": b"\0\0" + log3 + frame(other)[:-5],
        "log_bad_crc": b"\0\0" + frame(sub) + frame(other, crc=1),
        "log_oversize": b"\0\0" + frame(sub) + struct.pack("<II", 2 << 20, 0),
        "log_undecodable": b"\0\0" + frame(sub) + frame(b"\xff\xff\xff"),
        "log_no_origin": b"\0\0" + frame(
            f_bytes(1, "E_X") + f_bytes(2, "udp:h:1") + f_varint(3, 1) +
            f_varint(4, 1) + f_varint(5, 1)),
        "snapshot": b"\1\0" + snap,
        "snapshot_corrupt": b"\1\0" + snap + b"\x01\x02\x03",
        "snapshot_and_log": bytes([2, 255 * len(snap) // (len(snap) + len(log3)) + 1]) +
                            snap + log3,
    }
    for name, data in seeds.items():
        write("store", name, data)


# --- Ack (relay to producer) ----------------------------------------------------

PRODUCER = bytes(range(16))     # fuzz_ack's producer, epoch 1


def ack(first_seq, count, through, status=0, error=None, dups=None,
        rejected=None, failed=(), rejected_offsets=(), producer=PRODUCER,
        epoch=1, version=1, packed=True):
    out = (f_varint(1, version) + f_bytes(2, producer) + f_varint(3, epoch) +
           f_varint(4, first_seq) + f_varint(5, count) +
           f_varint(6, through) + f_varint(7, status))
    if error is not None:
        out += f_bytes(8, error)
    if dups is not None:
        out += f_varint(9, dups)
    if rejected is not None:
        out += f_varint(10, rejected)
    for field, values in ((11, failed), (12, rejected_offsets)):
        if values and packed:
            out += f_packed(field, values)
        else:
            out += b"".join(f_varint(field, v) for v in values)
    return out


def ack_seeds():
    seeds = {
        "ok": ack(1, 256, 256),
        "ok_cumulative": ack(257, 10, 1000, dups=3),
        "batch_rejected": ack(1, 5, 0, status=1,
                              error="unsupported protocol version"),
        "events_rejected": ack(1, 8, 8, rejected=2, rejected_offsets=[1, 6]),
        "rejected_unlisted": ack(1, 8, 8, rejected=3),
        "delivered_failed": ack(1, 8, 8, failed=[0, 3, 7]),
        "failed_and_rejected": ack(1, 8, 8, rejected=1, rejected_offsets=[3],
                                   failed=[3, 4]),
        "offsets_out_of_range": ack(1, 4, 4, rejected=9,
                                    rejected_offsets=[4, 2, 2, 4000000000],
                                    failed=[1, 1, 99]),
        "unpacked_offsets": ack(1, 4, 4, rejected=1, rejected_offsets=[0],
                                failed=[2], packed=False),
        "other_producer": ack(1, 1, 1, producer=b"\xff" * 16),
        "other_version": ack(1, 1, 1, version=2),
    }
    for name, data in seeds.items():
        write("ack", name, data)


# --- ControlReply (relay to evrelayctl) -----------------------------------------

def reply(result=None, error=None, rid=42, version=1):
    out = f_varint(1, version) + f_varint(2, rid)
    if result is not None:
        out += f_bytes(3, result if isinstance(result, str)
                       else json.dumps(result, separators=(",", ":")))
    if error is not None:
        code, message, data = error
        body = f_sint(1, code) + f_bytes(2, message)
        if data is not None:
            body += f_bytes(3, data)
        out += f_bytes(4, body)
    return out


def reply_seeds():
    sub = {"socket": "udp:127.0.0.1:9000", "expire": 3600, "ttl": 3599}
    target = {"socket": "virtual:PARALLEL udp:h:1 tcp:h:2", "queued": 0,
              "delivered": 10, "failed": 1, "dropped": 0,
              "latency_us": {"p50": 120, "p99": 900},
              "children": [{"socket": "udp:h:1", "delivered": 10},
                           {"socket": "tcp:h:2", "failed": 1}]}
    seeds = {
        "ok": reply("OK"),
        "list": reply({"Events": [{"name": "E_PIKE_BLOCKED", "id": 0},
                                  {"name": "E_ACC_CDR", "id": 1}]}),
        "list_empty": reply({"Events": []}),
        "subscribers_all": reply({"Events": [
            {"name": "E_X", "id": 3, "Subscribers": [
                sub, {"socket": "unix:/run/s", "expire": "never"}]}]}),
        "subscribers_event": reply({"Event": {"name": "E_X", "id": 3,
                                              "Subscribers": [sub]}}),
        "subscriber_one": reply({"Event": {"name": "E_X", "id": 3,
                                           "Subscriber": dict(
                                               sub, ttl="expired")}}),
        "subscribers_none": reply({"Event": {}}),
        "stats": reply({"uptime_s": 12, "ingest": {"batches": 5,
                                                   "received": 1000},
                        "control": {"requests": 3},
                        "targets": [target], "empty": []}),
        "cluster": reply({"node": "relay1:7960", "ready": True,
                          "hlc": "0x18bcfe5680000001", "records": 2,
                          "store": {"fsyncs": 4, "torn": 0},
                          "members": [{"node": "relay2:7970",
                                       "endpoint": "tcp://h:7970",
                                       "state": "alive", "ready": True,
                                       "seq": 7, "hlc": "0x1",
                                       "last_heartbeat_ms": 120}]}),
        "cluster_alone": reply({"node": "relay1", "members": []}),
        "health": reply({"status": "ok", "live": True, "ready": True}),
        "nested_tables": reply({"a": {"b": [{"c": 1}, {"d": [1, 2]}]},
                                "x": [{}]}),
        "not_json": reply("not json {"),
        "error": reply(error=(400, "Bad parameter value",
                              "\"udp: bad port in 'udp:h:x'\"")),
        "error_data_object": reply(error=(-32602, "Invalid params",
                                          "{\"why\":[1,2]}")),
        "error_data_not_json": reply(error=(404, "Event not published",
                                            "E_X")),
        "error_id_zero": reply(error=(-32600, "Invalid request",
                                      "\"undecodable request\""), rid=0),
        "deep_nesting": reply('{"k":' * 600 + "1" + "}" * 600),
        "many_columns": reply({"t": [{"c%d" % i: i for i in range(150)},
                                     {"socket": "udp:h:1", "x": None}]}),
        "no_result": reply(),
        "other_version": reply("OK", version=2),
    }
    for name, data in seeds.items():
        write("reply", name, data)


if __name__ == "__main__":
    publish_seeds()
    control_seeds()
    mi_seeds()
    cluster_seeds()
    store_seeds()
    ack_seeds()
    reply_seeds()
