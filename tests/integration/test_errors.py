"""Error answers and robustness: bad socket strings (400 naming the
problem, exit 1), raise errors (480, 404), garbage on the control and
ingest sockets, evrelayctl exit codes, startup failures. After every
error the relay must keep serving, and `stats` must count the errors.
"""

import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

BAD_SOCKETS = [
    #  (socket, words the error data must contain)
    ("xmlrpc:127.0.0.1:5000", ["unknown transport", "xmlrpc"]),
    ("virtualx:PARALLEL", ["unknown transport"]),
    ("127.0.0.1:5000", ["unknown transport"]),
    ("localhost", ["missing transport prefix"]),
    ("udp:127.0.0.1:0", ["port", "'0'", "range"]),
    ("udp:127.0.0.1:65536", ["port", "range"]),
    ("udp:127.0.0.1:http", ["port", "not a number"]),
    ("udp:127.0.0.1", ["missing port"]),
    ("udp:127.0.0.1:", ["missing port"]),
    ("udp::5000", ["missing host"]),
    ("udp:::1:5000", ["IPv6", "brackets"]),
    ("udp:[::1]", ["missing port"]),
    ("udp:[::1:5000", ["']'"]),
    ("udp:[zz::1]:5000", ["invalid IPv6"]),
    ("udp:300.1.1.1:5000", ["invalid IPv4"]),
    ("udp:bad_host:5000", ["invalid character"]),
    ("unix:relative/path.sock", ["unix", "absolute"]),
    ("unix:", ["unix", "missing path"]),
    ("unix:/" + "x" * 200, ["unix", "longer"]),
    ("udp:127.0.0.1: 5000", ["whitespace"]),
]


class BadSockets(evrtest.RelayTestCase):

    def test_each_bad_socket_is_400_and_relay_keeps_serving(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_OK", sink.spec)
        errors_before = r.stats()["control"]["errors"]
        for spec, words in BAD_SOCKETS:
            rc, out, err = r.ctl("subscribe", "E_BAD", spec)
            self.assertEqual(rc, 1, spec)
            e = json.loads(out)
            self.assertEqual((e["code"], e["message"]),
                             (400, "Bad parameter value"), spec)
            for word in words:
                self.assertIn(word, e["data"], spec)
            self.assertIn("error 400: Bad parameter value: ", err)
            #  still serving, and the good subscription still delivers
            self.assertEqual(r.ok("subscribers", "E_OK", sink.spec)["Event"]
                             ["Subscriber"]["socket"], sink.spec)
        r.raise_event("E_OK")
        self.assertEqual(sink.wait_one(), b'{"jsonrpc":"2.0","method":"E_OK"}')
        stats = r.stats()
        self.assertEqual(stats["control"]["errors"] - errors_before,
                         len(BAD_SOCKETS))
        #  no event, no target for failed subscribes
        self.assertEqual(r.err("subscribers", "E_BAD")["code"], 404)
        self.assertEqual([t["socket"] for t in stats["targets"]], [sink.spec])
        self.assertEqual(stats["table"]["subscriptions"], 1)

    def test_unresolvable_host(self):
        r = self.relay()
        e = r.err("subscribe", "E_BAD", "udp:no-such-host.invalid:5000")
        self.assertEqual(e["code"], 400)
        self.assertIn("resolve", e["data"])


class RaiseErrors(evrtest.RelayTestCase):

    def test_no_subscribers_480(self):
        r = self.relay()
        e = r.err("raise", "E_PIKE_BLOCKED", '{"ip":"1.2.3.4"}')
        self.assertEqual((e["code"], e["message"]),
                         (480, "Temporarily Unavailable"))
        #  also after the last subscriber left
        r.subscribe("E_X", "udp:127.0.0.1:9")
        r.subscribe("E_X", "udp:127.0.0.1:9", 0)
        self.assertEqual(r.err("raise", "E_X")["code"], 480)
        self.assertEqual(r.stats()["ingest"]["no_subscribers"], 2)

    def test_unknown_event_404(self):
        r = self.relay()
        e = r.err("raise", "E_NOT_REGISTERED")
        self.assertEqual(e, {"code": 404, "message": "Event not registered",
                             "data": "E_NOT_REGISTERED"})
        e = r.err("raise", "E_" + "X" * 70)
        self.assertEqual(e["code"], 404)
        #  a raise does not register the event
        self.assertEqual(r.err("subscribers", "E_NOT_REGISTERED")["code"],
                         404)

    def test_errors_counted_and_relay_serves(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_X", sink.spec)
        base = r.stats()["control"]
        failing = [
            ("raise", "E_NOPE"),
            ("raise", "E_PIKE_BLOCKED"),
            ("raise", "E_X", "[true]"),
            ("subscribe", "E_X", sink.spec, -1),
            ("subscribers", "E_NOPE"),
            ("flatstore-rotate", "/nope"),
            ("no-such-method",),
        ]
        for args in failing:
            rc, _, _ = r.ctl(*args)
            self.assertEqual(rc, 1, args)
            r.raise_event("E_X", '{"after":"%s"}' % args[0])
            self.assertEqual(sink.wait_one(),
                             b'{"jsonrpc":"2.0","method":"E_X","params":'
                             b'{"after":"' + args[0].encode() + b'"}}')
        now = r.stats()["control"]
        self.assertEqual(now["errors"] - base["errors"], len(failing))
        #  every request counted: the failing ones, the raises, one stats
        self.assertEqual(now["requests"] - base["requests"],
                         2 * len(failing) + 1)


class Garbage(evrtest.RelayTestCase):
    """Frames no client should send, over a raw ZMTP connection."""

    def test_control_garbage(self):
        r = self.relay()
        with evrtest.ZmtpDealer(r.control) as z:
            for frame in (b"", b"\xff" * 7, b"\x0a\x03abc",
                          os.urandom(300)):
                z.send(frame)
                reply = evrtest.control_reply(z.recv()[-1])
                self.assertEqual(reply["id"], 0, frame)
                self.assertEqual((reply["error"]["code"],
                                  reply["error"]["message"]),
                                 (-32600, "Invalid request"))
            #  a wrong version echoes the id
            z.send(evrtest.control_request("list", None, 77, version=2))
            reply = evrtest.control_reply(z.recv()[-1])
            self.assertEqual((reply["id"], reply["error"]["code"]),
                             (77, -32600))
            self.assertIn("version", reply["error"]["data"])
            #  over 1 MiB: refused before decoding
            z.send(evrtest.control_request(
                "raise", json.dumps(["E_X", ["a" * (1 << 20)]]), 78))
            reply = evrtest.control_reply(z.recv()[-1])
            self.assertEqual((reply["id"], reply["error"]["code"]),
                             (0, -32600))
            self.assertIn("too large", reply["error"]["data"])
            #  the same connection still works
            z.send(evrtest.control_request("list", None, 79))
            reply = evrtest.control_reply(z.recv()[-1])
            self.assertEqual(reply["id"], 79)
            self.assertIn("Events", json.loads(reply["result"]))
        stats = r.stats()["control"]
        self.assertEqual(stats["malformed"], 5)
        self.assertEqual(stats["too_large"], 1)
        self.assertEqual(stats["errors"], 6)

    def test_control_not_zmtp(self):
        r = self.relay()
        s = socket.create_connection(("127.0.0.1", r.control_port), 5)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(200))
        s.close()
        s = socket.create_connection(("127.0.0.1", r.control_port), 5)
        s.close()
        self.assertTrue(r.ok("list"))
        self.assertTrue(r.alive())

    def test_ingest_garbage_counted_and_relay_serves(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_X", sink.spec)
        with evrtest.ZmtpDealer(r.ingest) as z:
            for frame in (b"\xff\xff", os.urandom(100), b""):
                z.send(frame)
            #  a good publish after the garbage is delivered and acked
            z.send(evrtest.publish(b"prod-g", 1, 1,
                                   [evrtest.pb_event("E_X", [("a", 1)])]))
            acks = []
            while True:
                a = evrtest.ack(z.recv()[-1])
                acks.append(a)
                if a.get("producer_id") == b"prod-g":
                    break
            self.assertEqual(acks[-1]["status"], 0)
            self.assertEqual(acks[-1]["acked_through"], 1)
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":{"a":1}}')
        ingest = r.stats()["ingest"]
        self.assertEqual(ingest["malformed"], 3)
        self.assertEqual(ingest["received"], 1)
        s = socket.create_connection(("127.0.0.1", r.ingest_port), 5)
        s.sendall(os.urandom(500))
        s.close()
        self.assertTrue(r.ok("list"))

    def test_ingest_garbage_answered_for_no_stream(self):
        #  PROTOCOL §4.5: a frame that is oversized (3.2) or does not
        #  decode (3.3) identifies no batch; the relay answers an Ack of no
        #  stream (empty producer_id, zero numbers), REJECTED, with the
        #  reason, which producers ignore.
        r = self.relay()
        with evrtest.ZmtpDealer(r.ingest) as z:
            z.send(b"\xff\xff")
            a = evrtest.ack(z.recv()[-1])
            self.assertEqual((a["status"], a["producer_id"], a["count"],
                              a["error"]),
                             (1, b"", 0,
                              "undecodable frame: not a protobuf Publish"))
            z.send(b"\x00" * (4 * 1024 * 1024 + 1))
            a = evrtest.ack(z.recv()[-1])
            self.assertEqual((a["status"], a["producer_id"], a["error"]),
                             (1, b"", "frame of 4194305 bytes is over the "
                              "limit of 4194304 bytes ([limits] "
                              "max_frame_bytes)"))
        ingest = r.stats()["ingest"]
        self.assertEqual((ingest["malformed"], ingest["too_large"],
                          ingest["refused_frame_bytes"]), (1, 1, 1))


class CtlExitCodes(evrtest.RelayTestCase):

    def test_usage_errors_exit_2(self):
        r = self.relay()
        for args in (("subscribe", "E_X"), ("subscribe", "E", "S", "1", "x"),
                     ("raise",), ("raise", "E_X", "not json"),
                     ("raise", "E_X", '"a string"'), ("list", "extra"),
                     ()):
            rc, out, err = r.ctl(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertIn("evrelayctl:", err)
        p = subprocess.run([evrtest.EVRELAYCTL, "--bogus"],
                           capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([evrtest.EVRELAYCTL, "--help"],
                           capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"evi:subscribe", p.stdout)

    def test_no_answer_exit_3(self):
        port = evrtest.free_port()
        p = subprocess.run([evrtest.EVRELAYCTL, "-s",
                            "tcp://127.0.0.1:%d" % port, "-t", "300",
                            "list"], capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 3)
        self.assertIn(b"no answer", p.stderr)


class Startup(evrtest.RelayTestCase):

    def run_daemon(self, *args):
        p = subprocess.run([evrtest.EVRELAYD] + list(args),
                           capture_output=True, timeout=10)
        return p.returncode, (p.stdout + p.stderr).decode()

    def test_bad_flag_and_config(self):
        rc, out = self.run_daemon("--no-such-flag")
        self.assertEqual(rc, 2)
        self.assertIn("--no-such-flag", out)
        rc, out = self.run_daemon("--workers", "0")
        self.assertEqual(rc, 2)
        rc, out = self.run_daemon("--config", "/nonexistent/evrelayd.conf")
        self.assertEqual(rc, 2)
        self.assertIn("/nonexistent/evrelayd.conf", out)
        d = self.tempdir()
        for text, words in (("[relay]\nbogus = 1\n", ["unknown key", "bogus"]),
                            ("[limits]\ntarget_queue = many\n",
                             ["bad value", "target_queue"]),
                            ("[datagram]\nformat = xml\n", ["format"]),
                            ("[flatstore]\nsuppress_event_name = maybe\n",
                             ["suppress_event_name"])):
            path = os.path.join(d, "c.conf")
            with open(path, "w") as f:
                f.write(text)
            rc, out = self.run_daemon("--config", path)
            self.assertEqual(rc, 2, text)
            for word in words:
                self.assertIn(word, out, text)

    def test_help_and_version(self):
        rc, out = self.run_daemon("--help")
        self.assertEqual(rc, 0)
        self.assertIn("--subscribe", out)
        rc, out = self.run_daemon("--version")
        self.assertEqual(rc, 0)
        self.assertIn("evrelayd", out)

    def test_control_port_in_use(self):
        r = self.relay()
        rc, out = self.run_daemon("--ingest", "tcp://127.0.0.1:%d"
                                  % evrtest.free_port(),
                                  "--control", r.control)
        self.assertEqual(rc, 1)
        self.assertIn("cannot bind", out)
        self.assertTrue(r.ok("list"))


if __name__ == "__main__":
    evrtest.main()
