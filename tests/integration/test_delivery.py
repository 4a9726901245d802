"""Exact payload bytes delivered to UDP (IPv4, IPv6) and unix datagram
listeners for events raised through `evrelayctl raise`: JSON-RPC
notifications as OpenSIPS 3.1+ sends them (reference §4.1, §4.2, §10), and
the legacy (<= 3.0) text format selected by `[datagram] format = legacy`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


def params_arg(obj):
    """A JSON text for evrelayctl, ASCII-only (\\u escapes) so the relay
    decodes the escapes itself."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


class JsonRpcDelivery(evrtest.RelayTestCase):
    """One relay with three listeners (udp v4, udp v6, unix) on E_X; every
    raise must reach each of them with identical, exact bytes."""

    def setUp(self):
        self.r = self.relay()
        self.sinks = [self.udp_sink(), self.udp_sink(ipv6=True),
                      self.unix_sink()]
        for sink in self.sinks:
            self.r.subscribe("E_X", sink.spec)

    def assertDelivered(self, expected):
        for sink in self.sinks:
            got = sink.wait_one()
            self.assertEqual(got, expected, "via %s" % sink.spec)

    def test_named_params_object(self):
        self.r.raise_event("E_X", '{"ip":"192.168.2.11","port":5060}')
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'{"ip":"192.168.2.11","port":5060}}')

    def test_named_params_keep_order_as_typed(self):
        self.r.raise_event("E_X", '{"z":1,"a":2,"m":"3"}')
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'{"z":1,"a":2,"m":"3"}}')

    def test_positional_params_become_strings(self):
        #  MI turns every array element into a string, numbers truncated
        self.r.raise_event("E_X", "[1,2.5,-3]")
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'["1","2","-3"]}')

    def test_positional_strings(self):
        self.r.raise_event("E_X", '["1.2.3.4","x y"]')
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'["1.2.3.4","x y"]}')

    def test_no_params(self):
        self.r.raise_event("E_X")
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X"}')

    def test_empty_object_and_array_mean_no_params(self):
        self.r.raise_event("E_X", "{}")
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X"}')
        self.r.raise_event("E_X", "[]")
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X"}')

    def test_escaping_values(self):
        #  cJSON rules: \" \\ \b \f \n \r \t, other controls \u00xx
        #  (lowercase hex), DEL / < and all non-ASCII UTF-8 raw.
        value = ('q"b\\s\n\t\r\b\f\x01\x1f\x7f/<'
                 '\u00e9\u2028\U0001F600')
        self.r.raise_event("E_X", params_arg({"v": value}))
        expected = (b'{"jsonrpc":"2.0","method":"E_X","params":{"v":"'
                    b'q\\"b\\\\s\\n\\t\\r\\b\\f\\u0001\\u001f\x7f/<' +
                    "\u00e9\u2028\U0001F600".encode("utf-8") + b'"}}')
        self.assertDelivered(expected)

    def test_escaping_keys(self):
        self.r.raise_event("E_X", params_arg({'k"\\\n': "v", "\x02": 1}))
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'{"k\\"\\\\\\n":"v","\\u0002":1}}')

    def test_escaping_positional(self):
        self.r.raise_event("E_X", params_arg(["a\"b", "\t", "\x1b[0m"]))
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'["a\\"b","\\t","\\u001b[0m"]}')

    def test_every_control_character(self):
        value = "".join(chr(c) for c in range(1, 0x20))
        self.r.raise_event("E_X", params_arg({"c": value}))
        short = {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}
        body = b"".join(short.get(c, b"\\u%04x" % c) for c in range(1, 0x20))
        self.assertDelivered(b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'{"c":"' + body + b'"}}')

    def test_order_per_target(self):
        for i in range(30):
            self.r.raise_event("E_X", '{"i":%d}' % i)
        for sink in self.sinks:
            got = sink.wait(30)
            self.assertEqual(
                got, [b'{"jsonrpc":"2.0","method":"E_X","params":{"i":%d}}'
                      % i for i in range(30)], sink.spec)

    def test_other_event_not_delivered(self):
        self.r.subscribe("E_Y", self.sinks[0].spec)
        self.r.raise_event("E_Y", '{"a":1}')
        self.assertEqual(self.sinks[0].wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_Y","params":{"a":1}}')
        for sink in self.sinks[1:]:
            sink.expect_none(0.3)


class Ipv6Canonical(evrtest.RelayTestCase):
    """A non-canonical IPv6 spelling reaches the same listener and is
    listed in canonical form."""

    def test_long_form_ipv6(self):
        r = self.relay()
        sink = self.udp_sink(ipv6=True)
        r.subscribe("E_X", "udp:[0:0:0:0:0:0:0:1]:%d" % sink.port)
        subs = r.subscribers("E_X")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs], [sink.spec])
        r.raise_event("E_X", '{"a":"b"}')
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":'
                         b'{"a":"b"}}')


class LegacyDelivery(evrtest.RelayTestCase):
    """[datagram] format = legacy: "NAME\\nname::value\\n...\\n" + "\\n"."""

    def setUp(self):
        self.r = self.relay(config="[datagram]\nformat = legacy\n")
        self.sinks = [self.udp_sink(), self.unix_sink()]
        for sink in self.sinks:
            self.r.subscribe("E_L", sink.spec)

    def assertDelivered(self, expected):
        for sink in self.sinks:
            self.assertEqual(sink.wait_one(), expected, sink.spec)

    def test_named(self):
        self.r.raise_event("E_L", '{"ip":"10.0.0.1","n":7}')
        self.assertDelivered(b"E_L\nip::10.0.0.1\nn::7\n\n")

    def test_positional(self):
        self.r.raise_event("E_L", '["a",5]')
        self.assertDelivered(b"E_L\na\n5\n\n")

    def test_no_params(self):
        self.r.raise_event("E_L")
        self.assertDelivered(b"E_L\n\n")

    def test_value_with_newline_is_quoted(self):
        self.r.raise_event("E_L", params_arg({"m": 'l1\nsay "hi"', "x": 'a"b'}))
        self.assertDelivered(b'E_L\nm::"l1\nsay \\"hi\\""\nx::a"b\n\n')


if __name__ == "__main__":
    evrtest.main()
