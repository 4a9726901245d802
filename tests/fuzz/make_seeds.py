#!/usr/bin/env python3
"""Write the seeds of the libFuzzer targets whose inputs are binary
(protobuf frames, store files) or JSON-RPC bodies, into
tests/fuzz/corpus/<target>/ (the targets are the calls at the end).

Each seed is a real, valid input (plus a few near misses that the code
must refuse), named after what it holds. Run from anywhere; it rewrites
only the files it names. Needs nothing but the Python standard library:
the protobuf encoding below follows proto/evrelay.proto by hand.
"""
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


# --- protobuf wire format (proto2, the few types evrelay.proto uses) -------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return (n << 1) ^ (n >> 63)


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


if __name__ == "__main__":
    publish_seeds()
    control_seeds()
    mi_seeds()
