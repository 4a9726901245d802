"""test_agent - evrelay-agent between an OpenSIPS-shaped sender and a
real evrelayd.

Each test starts a real relay (evrtest.Relay) with a UDP (or unix) sink
subscribed, and a real evrelay-agent pointed at the relay's ingest. The
test plays OpenSIPS: it sends the bytes OpenSIPS's event_datagram and
event_stream modules send (JSON-RPC 3.1+, legacy <= 3.0 text, back-to-back
stream objects, reliable-mode requests) and asserts exactly what the sink
receives: the relay re-encodes each event, so a sink subscribed through
the relay must get byte for byte what OpenSIPS itself would have sent it.

Also: reliable-mode replies come only after the relay's outcome (and an
error when no subscriber took the event), malformed input is counted in
the agent's stats line and never stops it, and the agent restarts cleanly.

Python 3 standard library only.
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import evrtest
from evrtest import RelayTestCase, wait_until

AGENT = os.path.join(evrtest.BUILD_DIR, "evrelay-agent")


class Agent:
    """One evrelay-agent process; stderr goes to a log file, from which
    the ready line and the JSON stats lines are read."""

    def __init__(self, relay_ingest, udp=(), unix=(), tcp=(), args=()):
        self.udp, self.unix, self.tcp = list(udp), list(unix), list(tcp)
        self.relay_ingest = relay_ingest
        self.args = list(args)
        self.tmp = tempfile.mkdtemp(prefix="evr-agent-")
        self.log_path = os.path.join(self.tmp, "agent.log")
        self.proc = None
        self.returncode = None

    def command(self):
        cmd = [AGENT, "--relay", self.relay_ingest]
        for addr in self.udp:
            cmd += ["--udp", addr]
        for path in self.unix:
            cmd += ["--unix", path]
        for addr in self.tcp:
            cmd += ["--tcp", addr]
        return cmd + self.args

    def start(self, timeout=10.0):
        evrtest.require_binaries(AGENT)
        self._log = open(self.log_path, "ab")
        self._log_start = self._log.tell()
        self.returncode = None
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("evrelay-agent exited with %s:\n%s"
                                     % (self.proc.returncode, self.log()))
            return "evrelay-agent ready" in self.log()
        wait_until(ready, timeout, what="evrelay-agent ready")
        return self

    def log(self):
        data = evrtest.read_bytes(self.log_path) or b""
        return data[self._log_start:].decode("utf-8", "replace")

    def stats_lines(self):
        """The JSON counter lines logged so far (complete lines only)."""
        lines = self.log().split("\n")[:-1]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stats(self, timeout=5.0):
        """SIGUSR1, then the JSON line it printed."""
        before = len(self.stats_lines())
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(self.stats_lines()) > before, timeout,
                   what="the agent's stats line")
        return self.stats_lines()[-1]

    def input_stats(self, name_prefix, stats=None):
        stats = stats or self.stats()
        for entry in stats["inputs"]:
            if entry["input"].startswith(name_prefix):
                return entry
        raise AssertionError("no input %r in %r" % (name_prefix, stats))

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Signal by PID, wait, return the exit code."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("evrelay-agent did not stop:\n%s"
                                     % self.log())
        self.returncode = self.proc.returncode
        self._log.close()
        return self.returncode

    def kill(self):
        if self.proc is not None and self.returncode is None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.returncode = self.proc.returncode
            self._log.close()

    def cleanup(self):
        try:
            if self.proc is not None and self.returncode is None:
                died = self.proc.poll() is not None
                rc = self.stop()
                if died or rc != 0:
                    raise AssertionError("evrelay-agent %s with exit code %s:"
                                         "\n%s" % ("died" if died else
                                                   "stopped", rc, self.log()))
        finally:
            self.kill()
            import shutil
            shutil.rmtree(self.tmp, ignore_errors=True)


def notification(method, params=None, req_id=None):
    """The bytes OpenSIPS sends (compact, id first, params last)."""
    out = ""
    if req_id is not None:
        out += '"id":%d,' % req_id
    out += '"jsonrpc":"2.0","method":%s' % json.dumps(method)
    if params is not None:
        out += ',"params":' + params
    return ("{" + out + "}").encode()


class StreamClient:
    """An event_stream connection as OpenSIPS opens it."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), 5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data, pieces=None):
        """Send data, cut into pieces of the given sizes (cycled), each
        its own write with a pause, so the agent reads odd fragments."""
        if not pieces:
            self.sock.sendall(data)
            return
        i = k = 0
        while i < len(data):
            n = pieces[k % len(pieces)]
            self.sock.sendall(data[i:i + n])
            i += n
            k += 1
            time.sleep(0.002)

    def replies(self, n, timeout=10.0):
        """Read until n reply objects arrived (they are back to back too);
        return them parsed."""
        deadline = time.monotonic() + timeout
        decoder = json.JSONDecoder()
        out = []
        while True:
            text = self.buf.decode()
            pos = 0
            objs = []
            while pos < len(text):
                try:
                    obj, end = decoder.raw_decode(text, pos)
                except ValueError:
                    break
                objs.append(obj)
                pos = end
            if len(objs) >= n:
                self.buf = text[pos:].encode()
                return objs
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("expected %d replies, got %r"
                                     % (n, self.buf))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError("agent closed the connection; got %r"
                                     % self.buf)
            self.buf += chunk

    def expect_no_reply(self, duration):
        self.sock.settimeout(duration)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        raise AssertionError("expected no reply yet, got %r" % chunk)

    def closed_by_peer(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


class AgentTestCase(RelayTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        evrtest.require_binaries(AGENT)

    def agent(self, relay, udp=1, unix=0, tcp=1, args=(), start=True,
              ingest=None):
        """An agent with udp UDP inputs, unix unix inputs and tcp TCP
        inputs on free loopback ports (self.udp_ports etc.)."""
        ports = evrtest.free_ports(udp, socket.SOCK_DGRAM) if udp else []
        tports = evrtest.free_ports(tcp) if tcp else []
        paths = [os.path.join(self.tempdir(), "agent%d.sock" % i)
                 for i in range(unix)]
        agent = Agent(ingest or relay.ingest,
                      udp=["127.0.0.1:%d" % p for p in ports],
                      unix=paths, tcp=["127.0.0.1:%d" % p for p in tports],
                      args=args)
        agent.udp_ports, agent.tcp_ports, agent.paths = ports, tports, paths
        self.addCleanup(agent.cleanup)
        if start:
            agent.start()
        return agent

    def send_udp(self, agent, data, port=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(data, ("127.0.0.1", port or agent.udp_ports[0]))
        s.close()

    def send_unix(self, path, data):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(data, path)
        s.close()

    def stream(self, agent, i=0):
        client = StreamClient(agent.tcp_ports[i])
        self.addCleanup(client.close)
        return client


#  What OpenSIPS sends to a datagram subscriber; each must reach the
#  relay's subscriber unchanged.
OPENSIPS_PAYLOADS = [
    b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":'
    b'{"ip":"192.168.2.11"}}',
    b'{"jsonrpc":"2.0","method":"E_DLG_STATE_CHANGED","params":{"id":"1f2e",'
    b'"db_id":"42","callid":"a84b4c76e66710@pc33","from_tag":"1928301774",'
    b'"to_tag":"","old_state":3,"new_state":4}}',
    b'{"jsonrpc":"2.0","method":"E_MY_EVENT","params":[5,3]}',
    b'{"jsonrpc":"2.0","method":"E_NO_PARAMS"}',
    #  key order kept; a later unnamed param in an object has the key ""
    b'{"jsonrpc":"2.0","method":"E_ORDER","params":{"z":1,"a":null,'
    b'"":"late","":-2147483648}}',
    #  cJSON escapes, raw DEL, '/', non-UTF-8 and 4-byte UTF-8 bytes
    b'{"jsonrpc":"2.0","method":"E_ESC","params":{"s":"q\\" b\\\\ '
    b'\\b\\f\\n\\r\\t \\u0000\\u001f \x7f/<\xe9t\xe9 \xf0\x9f\x98\x80"}}',
    b'{"jsonrpc":"2.0","method":"E_ACC_CDR","params":{"method":"INVITE",'
    b'"from_tag":"t1","to_tag":"t2","callid":"c1","sip_code":"200",'
    b'"sip_reason":"OK","time":1700000000,"duration":12,"ms_duration":12345,'
    b'"setuptime":1,"created":1699999988}}',
]


class DatagramTest(AgentTestCase):

    def test_udp_json_byte_identical(self):
        sink = self.udp_sink()
        relay = self.relay()
        events = ["E_PIKE_BLOCKED", "E_DLG_STATE_CHANGED", "E_MY_EVENT",
                  "E_NO_PARAMS", "E_ORDER", "E_ESC", "E_ACC_CDR"]
        for event in events:
            relay.subscribe(event, sink.spec)
        agent = self.agent(relay)
        for payload in OPENSIPS_PAYLOADS:
            self.send_udp(agent, payload)
        got = sink.wait(len(OPENSIPS_PAYLOADS))
        self.assertEqual(sorted(got), sorted(OPENSIPS_PAYLOADS))
        st = agent.input_stats("udp:")
        self.assertEqual(st["received"], len(OPENSIPS_PAYLOADS))
        self.assertEqual(st["raised"], len(OPENSIPS_PAYLOADS))
        self.assertEqual(sum(st["malformed"].values()), 0)

    def test_unix_json_and_ipv6_udp(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_PIKE_BLOCKED", sink.spec)
        relay.subscribe("E_MY_EVENT", sink.spec)
        port6 = evrtest.free_port(socket.SOCK_DGRAM, socket.AF_INET6)
        agent = self.agent(relay, udp=0, unix=1, tcp=0,
                           args=["--udp", "[::1]:%d" % port6])
        self.send_unix(agent.paths[0], OPENSIPS_PAYLOADS[0])
        self.assertEqual(sink.wait_one(), OPENSIPS_PAYLOADS[0])
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.sendto(OPENSIPS_PAYLOADS[2], ("::1", port6))
        s.close()
        self.assertEqual(sink.wait_one(), OPENSIPS_PAYLOADS[2])
        stats = agent.stats()
        names = sorted(i["input"] for i in stats["inputs"])
        self.assertEqual(names, sorted(["unix:" + agent.paths[0],
                                        "udp:[::1]:%d" % port6]))

    def test_legacy_text(self):
        sink = self.udp_sink()
        relay = self.relay()
        for event in ("E_PIKE_BLOCKED", "E_LEG", "E_POS", "E_NONE"):
            relay.subscribe(event, sink.spec)
        agent = self.agent(relay)
        cases = [
            (b"E_PIKE_BLOCKED\nip::192.168.2.11\n\n",
             b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED","params":'
             b'{"ip":"192.168.2.11"}}'),
            #  canonical decimal -> int; quoted multi-line value with quotes
            (b'E_LEG\nold_state::3\nn::-7\nzip::007\nml::"a\nb\\"c"\n'
             b'url::sip:a::b\n\n',
             b'{"jsonrpc":"2.0","method":"E_LEG","params":{"old_state":3,'
             b'"n":-7,"zip":"007","ml":"a\\nb\\"c","url":"sip:a::b"}}'),
            #  positional values, an empty one in the middle
            (b"E_POS\nx\n\n42\n\n",
             b'{"jsonrpc":"2.0","method":"E_POS","params":["x","",42]}'),
            (b"E_NONE\n\n", b'{"jsonrpc":"2.0","method":"E_NONE"}'),
        ]
        for text, expected in cases:
            self.send_udp(agent, text)
            self.assertEqual(sink.wait_one(), expected)

    def test_legacy_in_legacy_out(self):
        """A relay set to the legacy format gives a legacy subscriber the
        text OpenSIPS 3.0 sent."""
        sink = self.udp_sink()
        relay = self.relay(config="[datagram]\nformat = legacy\n")
        relay.subscribe("E_LEG", sink.spec)
        agent = self.agent(relay, args=["--legacy-strings"])
        texts = [b"E_LEG\nip::10.0.0.1\ncode::200\n\n",
                 b'E_LEG\nml::"two\nlines \\"q\\""\nx\n\n',
                 b"E_LEG\n\n"]
        for text in texts:
            self.send_udp(agent, text)
            self.assertEqual(sink.wait_one(), text)

    def test_malformed_datagrams_counted(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_OK", sink.spec)
        agent = self.agent(relay, unix=1)
        too_many = ",".join(str(i) for i in range(129))
        bad = [
            (b"{not json", "bad_json"),
            (b'{"jsonrpc":"2.0","method":"E_OK","params":[1,]}', "bad_json"),
            (b'{"jsonrpc":"2.0","method":"E_OK","params":[1]} trailing',
             "bad_json"),
            (b'{"jsonrpc":"2.0","params":[1]}', "bad_jsonrpc"),
            (b'{"jsonrpc":"1.0","method":"E_OK"}', "bad_jsonrpc"),
            (b'{"jsonrpc":"2.0","method":"E_OK","params":"x"}',
             "bad_jsonrpc"),
            (b'{"jsonrpc":"2.0","method":"bad name"}', "bad_name"),
            (b'{"jsonrpc":"2.0","method":"' + b"E" * 65 + b'"}', "bad_name"),
            (b'{"jsonrpc":"2.0","method":"E_OK","params":[' +
             too_many.encode() + b']}', "bad_params"),
            (b'{"jsonrpc":"2.0","method":"E_OK","id":null}', "bad_id"),
            (b"E_OK\nno terminator\n", "bad_legacy"),
            (b"", "bad_legacy"),
            (b"\xff\xfe\x00garbage", "bad_legacy"),
            (b"\xff\xfe\n\n", "bad_name"),
        ]
        for data, _ in bad:
            self.send_udp(agent, data)
        #  unix datagrams can exceed the UDP maximum
        self.send_unix(agent.paths[0], b"{" + b" " * 70000 + b"}")
        #  the agent is alive and still delivers
        good = b'{"jsonrpc":"2.0","method":"E_OK","params":{"a":1}}'
        self.send_udp(agent, good)
        self.assertEqual(sink.wait_one(), good)
        udp = agent.input_stats("udp:")
        expected = {}
        for _, reason in bad:
            expected[reason] = expected.get(reason, 0) + 1
        for reason, count in udp["malformed"].items():
            self.assertEqual(count, expected.get(reason, 0), reason)
        self.assertEqual(udp["received"], len(bad) + 1)
        self.assertEqual(udp["raised"], 1)
        unix = agent.input_stats("unix:")
        self.assertEqual(unix["malformed"]["too_large"], 1)
        #  logged, at a bounded rate
        self.assertIn("malformed input (bad_json", agent.log())
        sink.expect_none(0.3)

    def test_malformed_flood_never_crashes(self):
        relay = self.relay()
        agent = self.agent(relay)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        import random
        rng = random.Random(5)
        for i in range(3000):
            n = rng.randrange(0, 300)
            data = bytes(rng.randrange(256) for _ in range(n))
            if i % 3 == 0:
                data = b"{" + data
            s.sendto(data, ("127.0.0.1", agent.udp_ports[0]))
        s.close()
        st = wait_until(
            lambda: (lambda x: x if x["received"] >= 2900 else None)(
                agent.input_stats("udp:")), 10, what="3000 datagrams read")
        self.assertEqual(st["raised"] + st["rejected"] +
                         sum(st["malformed"].values()), st["received"])
        #  log lines per second are bounded (10 per second plus summaries)
        warnings = [l for l in agent.log().splitlines()
                    if "malformed input" in l]
        self.assertLess(len(warnings), 60)
        self.assertEqual(agent.stop(), 0)


class StreamTest(AgentTestCase):

    def test_back_to_back_split_at_odd_boundaries(self):
        sink = self.udp_sink()
        relay = self.relay()
        for event in ("E_A", "E_B", "E_C", "E_PIKE_BLOCKED"):
            relay.subscribe(event, sink.spec)
        agent = self.agent(relay, udp=0)
        objs = [
            notification("E_A", '{"s":"} { ] [ \\" \\\\","n":-1}'),
            notification("E_B", '[[1,2],{"x":[]},"\\u0000",1.5e3,true]'),
            notification("E_C"),
            OPENSIPS_PAYLOADS[0],
            notification("E_A", '{"i":0}', req_id=1),
            notification("E_B", '["r"]', req_id=2),
        ]
        expected = [
            notification("E_A", '{"s":"} { ] [ \\" \\\\","n":-1}'),
            #  non-int numbers, bools and nested values become their text
            notification("E_B",
                         '["[1,2]","{\\"x\\":[]}","\\u0000","1.5e3","true"]'),
            notification("E_C"),
            OPENSIPS_PAYLOADS[0],
            notification("E_A", '{"i":0}'),
            notification("E_B", '["r"]'),
        ]
        client = self.stream(agent)
        client.send(b"".join(objs), pieces=[1, 3, 7, 2, 13, 5, 64, 11])
        got = sink.wait(len(expected))
        self.assertEqual(got, expected)  # one connection: in order
        replies = client.replies(2)
        self.assertEqual(sorted(r["id"] for r in replies), [1, 2])
        for r in replies:
            self.assertEqual(r, {"jsonrpc": "2.0", "result": "OK",
                                 "id": r["id"]})
        st = agent.input_stats("tcp:")
        self.assertEqual(st["received"], 6)
        self.assertEqual(st["requests"], 2)
        self.assertEqual(st["replies"], {"ok": 2, "error": 0, "dropped": 0})

    def test_many_connections_and_whitespace(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_N", sink.spec)
        agent = self.agent(relay, udp=0)
        clients = [self.stream(agent) for _ in range(20)]
        for i, c in enumerate(clients):
            c.send(b"\n " + notification("E_N", "[%d]" % i, req_id=i + 1) +
                   b"\r\n")
        for i, c in enumerate(clients):
            self.assertEqual(c.replies(1), [{"jsonrpc": "2.0",
                                             "result": "OK", "id": i + 1}])
        got = sink.wait(20)
        self.assertEqual(sorted(got), sorted(
            notification("E_N", "[%d]" % i) for i in range(20)))
        st = agent.input_stats("tcp:")
        self.assertEqual(st["connections"]["accepted"], 20)
        self.assertEqual(st["connections"]["open"], 20)

    def test_event_param_and_method(self):
        """event_stream with /METHOD and event_param: the event name comes
        from the param."""
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_ACC_CDR", sink.spec)
        relay.subscribe("E_PIKE_BLOCKED", sink.spec)
        agent = self.agent(relay, udp=0, args=["--event-param", "event"])
        client = self.stream(agent)
        client.send(notification("cdr", '{"event":"E_ACC_CDR","callid":"c1"}',
                                 req_id=9) +
                    notification("cdr", '["E_PIKE_BLOCKED","10.0.0.1"]'))
        self.assertEqual(client.replies(1)[0]["result"], "OK")
        self.assertEqual(sorted(sink.wait(2)), sorted([
            notification("E_ACC_CDR", '{"callid":"c1"}'),
            notification("E_PIKE_BLOCKED", '["10.0.0.1"]')]))

    def test_malformed_stream(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_OK", sink.spec)
        agent = self.agent(relay, udp=0)
        client = self.stream(agent)
        #  framed but invalid objects: skipped; requests get an error
        client.send(notification("bad name", "[1]", req_id=5) +
                    b'{"jsonrpc":"2.0","method":"E_OK","params":[tru]}' +
                    notification("E_OK", ",".join(["[1"] + ["2"] * 128) + "]",
                                 req_id=6) +
                    b'{"jsonrpc":"2.0","method":"E_OK","id":[1]}' +
                    notification("E_OK", "[1]", req_id=7))
        replies = {r["id"]: r for r in client.replies(3)}
        self.assertEqual(replies[5]["error"]["code"], -32600)
        self.assertEqual(replies[6]["error"]["code"], -32602)
        self.assertEqual(replies[7], {"jsonrpc": "2.0", "result": "OK",
                                      "id": 7})
        self.assertEqual(sink.wait_one(), notification("E_OK", "[1]"))
        st = agent.input_stats("tcp:")
        self.assertEqual(st["malformed"]["bad_name"], 1)
        self.assertEqual(st["malformed"]["bad_json"], 1)
        self.assertEqual(st["malformed"]["bad_params"], 1)
        self.assertEqual(st["malformed"]["bad_id"], 1)
        self.assertEqual(st["connections"]["closed"], 0)
        #  not an object: the stream cannot be resynchronised, it closes
        client.send(b"[1,2]")
        self.assertTrue(client.closed_by_peer())
        #  an object over 1 MiB closes too
        big = self.stream(agent)
        try:
            big.send(b'{"jsonrpc":"2.0","method":"E_OK","params":["' +
                     b"x" * (1024 * 1024 + 10))
        except OSError:
            pass  # closed while we were still sending
        self.assertTrue(big.closed_by_peer())
        #  a half object then EOF is counted as cut off
        half = self.stream(agent)
        half.send(b'{"jsonrpc":"2.0","meth')
        half.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(half.closed_by_peer())
        st = wait_until(lambda: (lambda s: s if s["connections"]["closed"] == 3
                                 else None)(agent.input_stats("tcp:")),
                        5, what="3 connections closed")
        self.assertEqual(st["malformed"]["bad_json"], 3)
        self.assertEqual(st["malformed"]["too_large"], 1)
        #  still serving
        again = self.stream(agent)
        again.send(notification("E_OK", "[2]", req_id=8))
        self.assertEqual(again.replies(1)[0]["result"], "OK")
        self.assertEqual(sink.wait_one(), notification("E_OK", "[2]"))


class ReliableTest(AgentTestCase):

    def test_reply_only_after_relay_ack(self):
        """With the relay down, a reliable-mode request gets no reply; once
        a relay is up and has delivered the event (ack point delivered),
        the reply comes, and the subscriber already has the datagram."""
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))
        self.addCleanup(raw.close)
        spec = "udp:127.0.0.1:%d" % raw.getsockname()[1]
        relay = evrtest.Relay(args=["--subscribe", "E_R=" + spec])
        self.addCleanup(relay.cleanup)
        agent = self.agent(relay, udp=0)
        client = self.stream(agent)
        client.send(notification("E_R", '{"n":1}', req_id=41))
        client.expect_no_reply(1.5)
        relay.start()
        reply = client.replies(1, timeout=15)[0]
        self.assertEqual(reply, {"jsonrpc": "2.0", "result": "OK", "id": 41})
        raw.setblocking(False)
        self.assertEqual(raw.recv(70000), notification("E_R", '{"n":1}'))

    def test_error_reply_when_no_subscriber_took_it(self):
        """ack point delivered: a subscriber whose transport fails (a unix
        path nobody listens on) makes the event FAILED: error reply. With
        no subscriber at all the event is acked: result OK."""
        relay = self.relay()
        relay.subscribe("E_F", "unix:" + os.path.join(self.tempdir(),
                                                      "nobody.sock"))
        agent = self.agent(relay, udp=0)
        client = self.stream(agent)
        client.send(notification("E_F", "[1]", req_id=1) +
                    notification("E_NOBODY", "[1]", req_id=2))
        replies = {r["id"]: r for r in client.replies(2)}
        self.assertEqual(replies[1]["error"]["code"], -32000)
        self.assertIn("no subscriber took it", replies[1]["error"]["message"])
        self.assertEqual(replies[2], {"jsonrpc": "2.0", "result": "OK",
                                      "id": 2})
        st = agent.stats()
        self.assertEqual(st["replies"], {"ok": 1, "error": 1, "dropped": 0})
        self.assertEqual(st["client"]["failed"], 1)

    def test_ack_accepted_answers_once_queued(self):
        relay = self.relay()
        relay.subscribe("E_F", "unix:" + os.path.join(self.tempdir(),
                                                      "nobody.sock"))
        agent = self.agent(relay, udp=0, args=["--ack", "accepted"])
        client = self.stream(agent)
        client.send(notification("E_F", "[1]", req_id=3))
        self.assertEqual(client.replies(1)[0], {"jsonrpc": "2.0",
                                                "result": "OK", "id": 3})

    def test_connection_closed_before_reply(self):
        relay = evrtest.Relay()
        self.addCleanup(relay.cleanup)
        agent = self.agent(relay, udp=0)
        client = self.stream(agent)
        client.send(notification("E_X", "[1]", req_id=1) +
                    notification("E_X", "[2]", req_id=2))
        wait_until(lambda: agent.input_stats("tcp:")["requests"] == 2, 5,
                   what="2 requests read")
        client.close()
        relay.start()
        st = wait_until(lambda: (lambda s: s if s["dropped"] == 2 else None)(
            agent.input_stats("tcp:")["replies"]), 15,
            what="2 replies dropped")
        self.assertEqual(st, {"ok": 0, "error": 0, "dropped": 2})


class LifecycleTest(AgentTestCase):

    def test_stop_with_relay_down(self):
        """SIGTERM with events that no relay acked: the wait is bounded,
        the pending request gets an error reply, the exit code is 0, the
        final counters show what was dropped."""
        relay = evrtest.Relay()  # never started
        self.addCleanup(relay.cleanup)
        agent = self.agent(relay, args=["--flush-timeout", "700"])
        self.send_udp(agent, OPENSIPS_PAYLOADS[0])
        client = self.stream(agent)
        client.send(notification("E_X", "[1]", req_id=77))
        wait_until(lambda: agent.input_stats("tcp:")["requests"] == 1, 5,
                   what="the request read")
        started = time.monotonic()
        self.assertEqual(agent.stop(), 0)
        self.assertLess(time.monotonic() - started, 5)
        reply = client.replies(1)[0]
        self.assertEqual(reply["id"], 77)
        self.assertEqual(reply["error"]["code"], -32000)
        final = agent.stats_lines()[-1]
        self.assertEqual(final["received"], 2)
        self.assertEqual(final["replies"]["error"], 1)
        self.assertEqual(final["client"]["raised"], 2)
        self.assertEqual(final["client"]["acked"], 0)
        self.assertIn("unacknowledged", agent.log())

    def test_restart(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_PIKE_BLOCKED", sink.spec)
        agent = self.agent(relay, unix=1, args=["--stats-interval", "1"])
        self.send_udp(agent, OPENSIPS_PAYLOADS[0])
        self.assertEqual(sink.wait_one(), OPENSIPS_PAYLOADS[0])
        #  --stats-interval prints by itself
        wait_until(lambda: agent.stats_lines(), 5, what="a periodic line")
        self.assertEqual(agent.stop(), 0)
        final = agent.stats_lines()[-1]
        self.assertEqual(final["client"]["acked"], 1)
        self.assertFalse(os.path.exists(agent.paths[0]))  # removed
        #  same ports and path again
        agent.start()
        self.send_unix(agent.paths[0], OPENSIPS_PAYLOADS[0])
        client = self.stream(agent)
        client.send(notification("E_PIKE_BLOCKED", '{"ip":"1"}', req_id=1))
        self.assertEqual(client.replies(1)[0]["result"], "OK")
        self.assertEqual(sorted(sink.wait(2)), sorted(
            [OPENSIPS_PAYLOADS[0], notification("E_PIKE_BLOCKED",
                                                '{"ip":"1"}')]))
        #  killed hard, the unix socket file stays; a restart replaces it
        agent.kill()
        self.assertTrue(os.path.exists(agent.paths[0]))
        agent.start()
        self.send_unix(agent.paths[0], OPENSIPS_PAYLOADS[0])
        self.assertEqual(sink.wait_one(), OPENSIPS_PAYLOADS[0])

    def test_bad_usage_and_busy_port(self):
        for args in (["--ack", "maybe"], ["--udp", "127.0.0.1"],
                     ["--stats-interval", "0"], ["extra"]):
            p = subprocess.run([AGENT] + args, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=10)
            self.assertEqual(p.returncode, 2, args)
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        busy.bind(("127.0.0.1", 0))
        self.addCleanup(busy.close)
        p = subprocess.run([AGENT, "--udp", "127.0.0.1:%d"
                            % busy.getsockname()[1]],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"Address already in use", p.stderr)
        p = subprocess.run([AGENT, "--help"], stdout=subprocess.PIPE,
                           timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--tcp ADDR:PORT", p.stdout)


if __name__ == "__main__":
    evrtest.main()
