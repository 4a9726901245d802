"""OpenSIPS MI compatibility of the control face: 3.x and 4.x method
names, MI raise param conversions (reference §1.2, §2, §10), the 3.6 form
where `params` is a JSON string holding an object, MI param checking, and
the control envelope rules of docs/PROTOCOL.md §2.4.

Requests that evrelayctl cannot produce (a params string, wrong param
shapes) are sent as raw ControlRequest frames over a minimal ZMTP DEALER
(evrtest.ZmtpDealer).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


class MethodNames(evrtest.RelayTestCase):
    """Every name of every command works, through evrelayctl."""

    def setUp(self):
        self.r = self.relay()
        self.sink = self.udp_sink()

    def test_subscribe_names(self):
        for i, name in enumerate(("subscribe", "event_subscribe",
                                  "evi:subscribe")):
            event = "E_SUB_%d" % i
            self.assertEqual(self.r.ok(name, event, self.sink.spec, 60), "OK")
            sub = self.r.subscribers(event, self.sink.spec)
            self.assertEqual(sub["Event"]["Subscriber"]["expire"], 60, name)

    def test_list_names(self):
        first = self.r.ok("list")
        self.assertIn("Events", first)
        for name in ("events_list", "evi:list"):
            self.assertEqual(self.r.ok(name), first, name)

    def test_subscribers_names(self):
        #  permanent subscriptions: no ttl that could tick between calls
        r = self.relay(args=["-s", "E_A=" + self.sink.spec])
        first = r.ok("subscribers", "E_A")
        self.assertEqual(first["Event"]["Subscribers"],
                         [{"socket": self.sink.spec, "expire": "never"}])
        for name in ("subscribers_list", "evi:subscribers"):
            self.assertEqual(r.ok(name, "E_A"), first, name)
            self.assertEqual(r.ok(name), r.ok("subscribers"), name)
            self.assertEqual(r.ok(name, "E_A", self.sink.spec),
                             r.ok("subscribers", "E_A", self.sink.spec), name)

    def test_raise_names(self):
        self.r.subscribe("E_A", self.sink.spec)
        for name in ("raise", "raise_event", "evi:raise"):
            self.assertEqual(self.r.ok(name, "E_A", '{"via":"%s"}' % name),
                             "OK")
            self.assertEqual(self.sink.wait_one(),
                             b'{"jsonrpc":"2.0","method":"E_A","params":'
                             b'{"via":"' + name.encode() + b'"}}')

    def test_rotate_names(self):
        d = self.tempdir()
        path = os.path.join(d, "ev.log")
        self.r.subscribe("E_A", "flatstore:" + path)
        for name in ("flatstore-rotate", "evi_flat_rotate",
                     "event_flatstore:rotate"):
            self.assertEqual(self.r.ok(name, path), "OK", name)
            e = self.r.err(name, path + ".nope")
            self.assertEqual((e["code"], e["message"]), (400, "File not found"))

    def test_unknown_method(self):
        e = self.r.err("frobnicate", "a", "b")
        self.assertEqual(e, {"code": -32601, "message": "Method not found",
                             "data": "frobnicate"})
        #  3.6 has no evi: names, we do; a misspelt one is still unknown
        e = self.r.err("evi:lists")
        self.assertEqual(e["code"], -32601)
        self.assertTrue(self.r.ok("list"))


class RaiseConversions(evrtest.RelayTestCase):
    """MI raise: numbers in an object become 32-bit ints (truncated,
    clamped), strings stay strings, other values become their JSON text."""

    def setUp(self):
        self.r = self.relay()
        self.sink = self.udp_sink()
        self.r.subscribe("E_X", self.sink.spec)

    def check(self, params, expected_params):
        self.r.raise_event("E_X", params)
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":' +
                         expected_params + b"}")

    def test_numbers_truncate_and_clamp(self):
        self.check('{"a":3.7,"b":-2.5,"c":1e3,"d":3000000000,'
                   '"e":-3000000000,"f":1e30,"g":"42"}',
                   b'{"a":3,"b":-2,"c":1000,"d":2147483647,'
                   b'"e":-2147483648,"f":2147483647,"g":"42"}')

    def test_other_values_become_json_text(self):
        self.check('{"t":true,"f":false,"n":null,"o":{"x":1},"a":[1,"2"]}',
                   b'{"t":"true","f":"false","n":"null",'
                   b'"o":"{\\"x\\":1}","a":"[1,\\"2\\"]"}')

    def test_positional_numbers(self):
        self.check("[1.9,-1.9,1e30,-7]", b'["1","-1","2147483647","-7"]')

    def test_positional_bad_values(self):
        for bad in ("[true]", "[null]", '[{"x":1}]', "[[1]]", '["a",false]'):
            e = self.r.err("raise", "E_X", bad)
            self.assertEqual((e["code"], e["message"]), (400, "Bad Params"),
                             bad)
        self.sink.expect_none(0.2)

    def test_huge_integer_literal_clamps(self):
        #  OpenSIPS 3.6 clamps out-of-range numbers to 2147483647 (ref §10);
        #  evrelayctl accepts the text, so the relay must too.
        self.check('{"a":99999999999999999999,"b":-99999999999999999999}',
                   b'{"a":2147483647,"b":-2147483648}')

    def test_duplicate_keys_refused(self):
        #  OpenSIPS (cJSON) keeps duplicate keys in order (ref §10); our
        #  JSON parser cannot, so the relay refuses them with a clear error
        #  instead of silently collapsing them, and delivers nothing.
        rc, out, err = self.r.ctl("raise", "E_X", '{"a":1,"b":2,"a":3}')
        self.assertEqual(rc, 1)
        self.assertIn("-32700", out + err)
        self.assertIn("duplicate", out + err)
        self.sink.expect_none(0.3)


class RawControl(evrtest.RelayTestCase):
    """Requests evrelayctl cannot make, sent as raw ControlRequest frames."""

    def setUp(self):
        self.r = self.relay()
        self.z = evrtest.ZmtpDealer(self.r.control)
        self.addCleanup(self.z.close)
        self.next_id = 1000

    def call(self, method, params=None, raw_params=None):
        """Send one request; return the decoded reply (checks the id)."""
        self.next_id += 1
        text = raw_params if raw_params is not None else (
            None if params is None else json.dumps(params))
        self.z.send(evrtest.control_request(method, text, self.next_id))
        frames = self.z.recv()
        self.assertEqual(len(frames), 1, frames)
        reply = evrtest.control_reply(frames[0])
        self.assertEqual(reply["version"], 1)
        self.assertEqual(reply["id"], self.next_id)
        return reply

    def assertError(self, reply, code, message, data=None):
        self.assertNotIn("result", reply)
        err = reply["error"]
        self.assertEqual((err["code"], err["message"]), (code, message), err)
        if data is not None:
            self.assertEqual(json.loads(err["data"]), data)

    def test_raise_params_as_json_string(self):
        #  OpenSIPS 3.6: named params are a string holding a JSON object
        sink = self.udp_sink()
        self.r.subscribe("E_X", sink.spec)
        reply = self.call("raise_event", {"event": "E_X",
                                          "params": '{"a":1,"b":"x"}'})
        self.assertEqual(reply["result"], '"OK"')
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":'
                         b'{"a":1,"b":"x"}}')
        reply = self.call("raise_event", ["E_X", '{"ip":"1.2.3.4"}'])
        self.assertEqual(reply["result"], '"OK"')
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":'
                         b'{"ip":"1.2.3.4"}}')

    def test_raise_params_string_not_json(self):
        self.r.subscribe("E_X", "udp:127.0.0.1:9")
        self.assertError(self.call("raise", {"event": "E_X",
                                             "params": "not json"}),
                         400, "Bad Params")
        self.assertError(self.call("raise", {"event": "E_X", "params": 5}),
                         400, "Bad Params")

    def test_named_params(self):
        sink = self.udp_sink()
        reply = self.call("evi:subscribe", {"event": "E_N",
                                            "socket": sink.spec,
                                            "expire": 30})
        self.assertEqual(reply["result"], '"OK"')
        reply = self.call("evi:subscribers", {"event": "E_N",
                                              "socket": sink.spec})
        sub = json.loads(reply["result"])["Event"]["Subscriber"]
        self.assertEqual((sub["socket"], sub["expire"]), (sink.spec, 30))
        self.assertEqual(self.call("evi:raise", {"event": "E_N"})["result"],
                         '"OK"')
        self.assertEqual(sink.wait_one(), b'{"jsonrpc":"2.0","method":"E_N"}')

    def test_expire_as_string(self):
        reply = self.call("subscribe", ["E_S", "udp:127.0.0.1:9", "12"])
        self.assertEqual(reply["result"], '"OK"')
        sub = self.r.subscribers("E_S", "udp:127.0.0.1:9")
        self.assertEqual(sub["Event"]["Subscriber"]["expire"], 12)
        self.assertError(self.call("subscribe", ["E_S", "udp:127.0.0.1:9",
                                                 "12x"]),
                         -32602, "Invalid params")
        self.assertError(self.call("subscribe", ["E_S", "udp:127.0.0.1:9",
                                                 -5]),
                         -32602, "Invalid params", "Negative expire value")

    def test_param_checking(self):
        cases = [
            ("subscribe", [], "Invalid params"),
            ("subscribe", ["E_P"], "Invalid params"),
            ("subscribe", ["E_P", "udp:127.0.0.1:9", 5, "x"],
             "Invalid params"),
            ("subscribe", {"event": "E_P", "socket": "udp:127.0.0.1:9",
                           "bogus": 1}, "Invalid params"),
            ("subscribe", [5, "udp:127.0.0.1:9"], "Invalid params"),
            ("list", ["x"], "Invalid params"),
            ("stats", ["x"], "Invalid params"),
            ("raise", [], "Invalid params"),
            ("subscribers", ["E_PIKE_BLOCKED", "udp:127.0.0.1:9", "x"],
             "Invalid params"),
            ("flatstore-rotate", [], "Invalid params"),
        ]
        for method, params, message in cases:
            reply = self.call(method, params)
            self.assertError(reply, -32602, message)
        #  data texts OpenSIPS uses (ref §10)
        self.assertError(self.call("subscribers",
                                   {"socket": "udp:127.0.0.1:9"}),
                         -32602, "Invalid params",
                         "Named parameters do not match")
        self.assertError(self.call("list", ["x"]), -32602, "Invalid params",
                         "Too few or too many parameters")
        #  a failed subscribe registers nothing
        self.assertError(self.call("subscribers", ["E_P"]), 404,
                         "Event not published")

    def test_params_not_json(self):
        self.assertError(self.call("subscribe", raw_params="[\"E\","),
                         -32700, "Parse error")
        self.assertTrue(self.r.ok("list"))

    def test_result_json_is_compact_opensips_shape(self):
        self.r.subscribe("E_C", "udp:127.0.0.1:9", 100)
        reply = self.call("subscribers", ["E_C"])
        text = reply["result"]
        self.assertNotIn(" ", text)
        self.assertRegex(text, r'^\{"Event":\{"name":"E_C","id":\d+,'
                               r'"Subscribers":\[\{"socket":'
                               r'"udp:127\.0\.0\.1:9","expire":100,'
                               r'"ttl":(100|99)\}\]\}\}$')
        self.assertEqual(self.call("subscribers", ["E_PIKE_BLOCKED"])
                         ["result"], '{"Event":{}}')

    def test_envelope_frames_echoed(self):
        #  PROTOCOL §2.4: the last frame is the payload, the frames before
        #  it are echoed in front of the answer (a REQ peer sends "").
        for envelope in ([b""], [b"hop1", b"hop2"]):
            self.next_id += 1
            self.z.send(*(envelope + [evrtest.control_request(
                "list", None, self.next_id)]))
            frames = self.z.recv()
            self.assertEqual(frames[:-1], envelope)
            reply = evrtest.control_reply(frames[-1])
            self.assertEqual(reply["id"], self.next_id)
            self.assertIn("Events", json.loads(reply["result"]))


if __name__ == "__main__":
    evrtest.main()
