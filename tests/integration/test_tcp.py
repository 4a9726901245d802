"""tcp:HOST:PORT[/METHOD] targets, compatible with OpenSIPS event_stream
(reference §4.1, §4.3, §10): a real evrelayd delivers to real TCP JSON-RPC
peers on loopback (Python threads).

- non-reliable mode: exact back-to-back bytes (no delimiter) with /METHOD
  and [tcp] event_param; whatever the peer sends is ignored; a peer that
  is down at subscribe time gets the queued events once it is up;
- reliable mode: ids 1, 2, ... per connection; replies matched by id, in
  any order, several per read or split across reads; an `error` member or
  no reply within [tcp] timeout fails the event; a lost connection fails
  what is in flight and the relay reconnects;
- virtual: FAILOVER moves events on when a tcp child answers errors or
  never answers and returns to it after failover_timeout; ROUND-ROBIN
  spreads over the live children; PARALLEL keeps feeding a udp child while
  its tcp sibling is dead.
"""

import codecs
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


class StreamDecoder:
    """The JSON values of a byte stream that has no delimiter between
    them, as they complete (UTF-8 split across reads is fine)."""

    def __init__(self):
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.decoder = json.JSONDecoder()
        self.text = ""

    def feed(self, data):
        text = self.text + self.utf8.decode(data)
        out, i = [], 0
        while True:
            while i < len(text) and text[i] in " \t\r\n":
                i += 1
            if i == len(text):
                break
            try:
                obj, i = self.decoder.raw_decode(text, i)
            except ValueError:
                break  # unfinished: wait for more
            out.append(obj)
        self.text = text[i:]
        return out


class JsonRpcPeer:
    """A TCP JSON-RPC peer on 127.0.0.1 (or ::1): accepts connections (a
    thread each), records the raw bytes and the decoded objects, and
    answers requests that carry an id according to `answer`:

        "none"     never answers (a non-reliable peer, or a dead one)
        "ok"       {"jsonrpc":"2.0","result":"ok","id":N}
        "error"    {"jsonrpc":"2.0","error":{...},"id":N}
        "junk"     bytes that are not JSON

    hold=k answers only once k requests wait, all in one send, newest
    first (several replies per read, out of order); split=True sends each
    answer in two pieces cut inside an object. close_after=n closes the
    connection and stops listening when the n-th request arrives (without
    answering it). rcvbuf sets a small receive buffer; a peer paused with
    pause() accepts but does not read until resume(). `answer` may be
    changed while running.

    The port is reserved from construction to close() by a bound socket
    that does not listen while the peer is down (connects to it are
    refused), so no other test process can take it meanwhile.
    """

    def __init__(self, answer="none", ipv6=False, hold=1,
                 split=False, close_after=None, rcvbuf=None):
        self.answer = answer
        self.ipv6 = ipv6
        self.host = "::1" if ipv6 else "127.0.0.1"
        self.family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.hold = hold
        self.split = split
        self.close_after = close_after
        self.rcvbuf = rcvbuf
        self.placeholder = self._bound(0)
        self.port = self.placeholder.getsockname()[1]
        self.reading = threading.Event()
        self.reading.set()
        self.cond = threading.Condition()
        self.raws = []      # bytes per accepted connection
        self.objects = []   # (connection index, decoded object)
        self.listener = None
        self.conns = []
        self.threads = []

    def spec(self, method=None):
        host = "[%s]" % self.host if self.ipv6 else self.host
        return "tcp:%s:%d%s" % (host, self.port,
                                "/" + method if method else "")

    # ---- lifecycle -----------------------------------------------------

    def _bound(self, port):
        s = socket.socket(self.family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        s.bind((self.host, port))
        return s

    def start(self):
        s = self._bound(self.port)
        s.listen(16)
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        self.listener = s
        t = threading.Thread(target=self._accept, args=(s,), daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def _close_all(self, keep_port=True):
        with self.cond:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
            if keep_port:
                self.placeholder = self._bound(self.port)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def pause(self):
        self.reading.clear()

    def resume(self):
        self.reading.set()

    def stop(self, keep_port=True):
        """Stop listening and close every connection (joins threads); the
        port stays reserved unless keep_port is False."""
        self._close_all(keep_port)
        if not keep_port and self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        self.reading.set()
        me = threading.current_thread()
        for t in self.threads:
            if t is not me:
                t.join(5)
        self.threads = [t for t in self.threads if t.is_alive()]

    def _accept(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.cond:
                if self.listener is not listener:
                    conn.close()
                    return
                index = len(self.raws)
                self.raws.append(bytearray())
                self.conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn, index),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    # ---- one connection ------------------------------------------------

    def _reply(self, obj):
        if self.answer == "ok":
            return json.dumps({"jsonrpc": "2.0", "result": "ok",
                               "id": obj["id"]},
                              separators=(",", ":")).encode()
        if self.answer == "error":
            return json.dumps({"jsonrpc": "2.0",
                               "error": {"code": -32000, "message": "no"},
                               "id": obj["id"]},
                              separators=(",", ":")).encode()
        if self.answer == "junk":
            return b"}{not json at all"
        return None

    def _send(self, conn, blob):
        if self.split and len(blob) > 1:
            cut = len(blob) // 2 + 1
            conn.sendall(blob[:cut])
            time.sleep(0.02)
            conn.sendall(blob[cut:])
        else:
            conn.sendall(blob)

    def _serve(self, conn, index):
        stream = StreamDecoder()
        pending = []
        try:
            while True:
                self.reading.wait()
                data = conn.recv(65536)
                if not data:
                    return
                with self.cond:
                    self.raws[index] += data
                    self.cond.notify_all()
                for obj in stream.feed(data):
                    with self.cond:
                        self.objects.append((index, obj))
                        count = len(self.objects)
                        self.cond.notify_all()
                    if self.close_after is not None and \
                            count >= self.close_after:
                        self.close_after = None
                        self._close_all()
                        return
                    if "id" in obj:
                        reply = self._reply(obj)
                        if reply is not None:
                            pending.append(reply)
                if pending and len(pending) >= self.hold:
                    blob = b"".join(reversed(pending))
                    pending = []
                    self._send(conn, blob)
        except OSError:
            return
        finally:
            conn.close()

    def send_raw(self, data):
        """Send bytes on the newest open connection."""
        with self.cond:
            conn = self.conns[-1]
        conn.sendall(data)

    # ---- what arrived --------------------------------------------------

    def raw(self, index=None):
        with self.cond:
            if index is not None:
                return bytes(self.raws[index])
            return b"".join(bytes(r) for r in self.raws)

    def connections(self):
        with self.cond:
            return len(self.raws)

    def objs(self):
        with self.cond:
            return list(self.objects)

    def wait_raw(self, expected, timeout=10.0):
        """Wait until everything received equals expected (bytes)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = b"".join(bytes(r) for r in self.raws)
                if got == expected:
                    return got
                if len(got) > len(expected) or \
                        time.monotonic() >= deadline:
                    raise AssertionError("peer %d: expected %r, got %r"
                                         % (self.port, expected, got))
                self.cond.wait(0.1)

    def wait_objects(self, n, timeout=10.0):
        """Wait until at least n objects arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.objects) < n:
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        "peer %d: expected %d objects, got %d: %r"
                        % (self.port, n, len(self.objects),
                           self.objects[:5]))
                self.cond.wait(0.1)
            return list(self.objects)


class StuckListener:
    """A port whose TCP handshake never completes: a listener with a full
    accept queue that never accepts (new SYNs are dropped), so a connect
    to it hangs until the connector gives up."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
        time.sleep(0.1)

    def spec(self):
        return "tcp:127.0.0.1:%d" % self.port

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


class TcpTestCase(evrtest.RelayTestCase):

    def peer(self, *args, start=True, **kwargs):
        p = JsonRpcPeer(*args, **kwargs)
        self.addCleanup(p.stop, False)
        if start:
            p.start()
        return p

    def wait_stats(self, relay, spec, timeout=10.0, child=None, **want):
        """Wait until the target's counters (or those of its child number
        `child`) hold the wanted values; return the entry."""
        last = [None]

        def check():
            entry = relay.target(spec)
            if entry is not None and child is not None:
                entry = entry["children"][child]
            last[0] = entry
            if entry is None:
                return None
            return entry if all(entry[k] == v for k, v in want.items()) \
                else None
        try:
            return evrtest.wait_until(check, timeout, what=repr(want))
        except AssertionError:
            raise AssertionError("%s: wanted %r, stats %r"
                                 % (spec, want, last[0]))


def seqs(objects):
    """The "seq" param of each decoded event, in arrival order."""
    return [o["params"]["seq"] for _, o in objects]


# --------------------------------------------------------------------------


class NonReliable(TcpTestCase):

    def test_exact_bytes_back_to_back(self):
        #  the peer babbles back: a non-reliable relay reads and ignores it
        r = self.relay()
        p = self.peer()
        p6 = self.peer(ipv6=True)
        for spec in (p.spec(), p6.spec()):
            r.subscribe("E_X", spec)
        r.raise_event("E_X", {"ip": "10.0.0.1", "port": 5060})
        r.raise_event("E_X", ["a", "b"])
        r.raise_event("E_X")
        r.raise_event("E_X", {"v": 'q"b\\\n'})
        expected = (b'{"jsonrpc":"2.0","method":"E_X","params":'
                    b'{"ip":"10.0.0.1","port":5060}}'
                    b'{"jsonrpc":"2.0","method":"E_X","params":["a","b"]}'
                    b'{"jsonrpc":"2.0","method":"E_X"}'
                    b'{"jsonrpc":"2.0","method":"E_X","params":'
                    b'{"v":"q\\"b\\\\\\n"}}')
        p.wait_raw(expected)
        p6.wait_raw(expected)
        p.send_raw(b'{"id":1,"result":"ignored"}\n' +
                   b"}{ not JSON either \xff\n" * 5000)
        self.wait_stats(r, p.spec(), delivered=4, failed=0, queued=0)
        self.wait_stats(r, p6.spec(), delivered=4, failed=0, queued=0)
        r.raise_event("E_X", ["again"])
        p.wait_raw(expected + b'{"jsonrpc":"2.0","method":"E_X",'
                   b'"params":["again"]}')
        self.assertEqual(p.connections(), 1)

    def test_method_and_event_param(self):
        r = self.relay(config="[tcp]\nevent_param = event\n")
        plain = self.peer()
        method = self.peer()
        r.subscribe("E_X", plain.spec())
        r.subscribe("E_X", method.spec("notify_me"))
        r.raise_event("E_X", {"ip": "10.0.0.1", "n": 2})
        r.raise_event("E_X", ["a", "b"])
        r.raise_event("E_X")
        body = [b'"params":{"event":"E_X","ip":"10.0.0.1","n":2}}',
                b'"params":["E_X","a","b"]}',
                None]

        def stream(m):
            out = b""
            for b in body:
                out += b'{"jsonrpc":"2.0","method":"%s"' % m
                out += b"," + b if b else b"}"
            return out
        plain.wait_raw(stream(b"E_X"))
        method.wait_raw(stream(b"notify_me"))

    def test_slow_peer_back_pressure_keeps_objects_whole(self):
        #  a peer that stops reading: the socket fills, events wait in the
        #  queue, a partial write keeps the rest of its object; once the
        #  peer reads again everything arrives whole, in order, once
        r = self.relay()
        p = self.peer(rcvbuf=4096)
        p.pause()
        r.subscribe("E_BIG", p.spec())
        z = evrtest.ZmtpDealer(r.ingest)
        self.addCleanup(z.close)
        n, size, per = 120, 60000, 30   # 7.2 MB, above any socket buffer
        for first in range(0, n, per):
            z.send(evrtest.publish(b"tcp-bp", 1, first + 1, [
                evrtest.pb_event("E_BIG", [
                    ("seq", i), ("pad", chr(ord("a") + i % 26) * size)])
                for i in range(first, first + per)]))
            self.assertEqual(evrtest.ack(z.recv()[-1])["count"], per)
        time.sleep(0.3)
        entry = r.target(p.spec())
        self.assertGreater(entry["queued"], 0, entry)
        self.assertEqual(entry["failed"] + entry["dropped"], 0, entry)
        p.resume()
        objs = p.wait_objects(n, timeout=20)
        self.assertEqual(seqs(objs), list(range(n)))
        for _, o in objs:
            self.assertEqual(o["params"]["pad"],
                             chr(ord("a") + o["params"]["seq"] % 26) * size)
        self.wait_stats(r, p.spec(), delivered=n, queued=0)
        self.assertEqual(p.connections(), 1)

    def test_peer_down_at_subscribe_gets_queued_events(self):
        r = self.relay()
        p = self.peer(start=False)
        r.subscribe("E_Q", p.spec())
        for i in range(3):
            r.raise_event("E_Q", {"seq": i})
        time.sleep(0.5)
        entry = r.target(p.spec())
        self.assertEqual((entry["queued"], entry["delivered"],
                          entry["failed"], entry["dropped"]), (3, 0, 0, 0))
        p.start()
        p.wait_raw(b"".join(b'{"jsonrpc":"2.0","method":"E_Q","params":'
                            b'{"seq":%d}}' % i for i in range(3)))
        self.wait_stats(r, p.spec(), delivered=3, queued=0)


class Reliable(TcpTestCase):

    def reliable(self, timeout_ms=5000, extra=""):
        return self.relay(config="[tcp]\nreliable_mode = 1\ntimeout = %d\n%s"
                          % (timeout_ms, extra))

    def test_ok_replies_batched_out_of_order_and_split(self):
        r = self.reliable(extra="event_param = ev\n")
        #  three replies at a time, newest first, cut in the middle
        p = self.peer(answer="ok", hold=3, split=True)
        r.subscribe("E_R", p.spec("m"))
        for i in range(6):
            r.raise_event("E_R", {"seq": i})
        self.wait_stats(r, p.spec("m"), delivered=6, failed=0, queued=0)
        objs = p.objs()
        self.assertEqual([o["id"] for _, o in objs], [1, 2, 3, 4, 5, 6])
        self.assertEqual(p.raw()[:80],
                         b'{"id":1,"jsonrpc":"2.0","method":"m","params":'
                         b'{"ev":"E_R","seq":0}}{"id":2,"jsonrpc":'[:80])
        self.assertEqual(p.connections(), 1)

    def test_error_replies_fail(self):
        r = self.reliable()
        p = self.peer(answer="error")
        r.subscribe("E_R", p.spec())
        for i in range(3):
            r.raise_event("E_R", {"seq": i})
        self.wait_stats(r, p.spec(), delivered=0, failed=3, queued=0)
        self.assertEqual(p.connections(), 1)

    def test_no_reply_fails_after_timeout_and_late_reply_is_ignored(self):
        r = self.reliable(timeout_ms=400)
        p = self.peer(answer="none")
        r.subscribe("E_R", p.spec())
        t0 = time.monotonic()
        r.raise_event("E_R", {"seq": 0})
        r.raise_event("E_R", {"seq": 1})
        p.wait_objects(2)
        self.wait_stats(r, p.spec(), failed=2, queued=0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        #  the answers come too late: ignored, nothing counted twice
        p.send_raw(b'{"jsonrpc":"2.0","result":"ok","id":1}'
                   b'{"jsonrpc":"2.0","result":"ok","id":2}'
                   b'{"jsonrpc":"2.0","result":"ok","id":99}')
        p.answer = "ok"
        r.raise_event("E_R", {"seq": 2})
        objs = p.wait_objects(3)
        self.assertEqual(objs[2][1]["id"], 3)
        self.wait_stats(r, p.spec(), delivered=1, failed=2, queued=0)
        self.assertEqual(p.connections(), 1)

    def test_connection_lost_fails_in_flight_and_reconnects(self):
        r = self.reliable()
        p = self.peer(answer="ok", close_after=3)
        r.subscribe("E_R", p.spec())
        r.raise_event("E_R", {"seq": 0})
        r.raise_event("E_R", {"seq": 1})
        self.wait_stats(r, p.spec(), delivered=2)
        #  the peer hangs up on the third request, unanswered, and is gone
        r.raise_event("E_R", {"seq": 2})
        self.wait_stats(r, p.spec(), delivered=2, failed=1, queued=0)
        r.raise_event("E_R", {"seq": 3})
        r.raise_event("E_R", {"seq": 4})
        time.sleep(0.3)
        self.assertEqual(r.target(p.spec())["queued"], 2)
        p.stop()
        p.start()
        self.wait_stats(r, p.spec(), delivered=4, failed=1, queued=0)
        r.raise_event("E_R", {"seq": 5})
        self.wait_stats(r, p.spec(), delivered=5, failed=1, queued=0)
        objs = p.objs()
        self.assertEqual(p.connections(), 2)
        #  ids start over on the new connection
        self.assertEqual([(c, o["id"], o["params"]["seq"]) for c, o in objs],
                         [(0, 1, 0), (0, 2, 1), (0, 3, 2),
                          (1, 1, 3), (1, 2, 4), (1, 3, 5)])

    def test_malformed_reply_drops_the_connection(self):
        r = self.reliable()
        p = self.peer(answer="junk")
        r.subscribe("E_R", p.spec())
        r.raise_event("E_R", {"seq": 0})
        self.wait_stats(r, p.spec(), failed=1, queued=0)
        p.answer = "ok"
        r.raise_event("E_R", {"seq": 1})
        self.wait_stats(r, p.spec(), delivered=1, failed=1, queued=0)
        self.assertEqual(p.connections(), 2)


class Virtual(TcpTestCase):

    def test_failover_moves_on_after_error_and_returns(self):
        r = self.relay(config="[tcp]\nreliable_mode = 1\ntimeout = 2000\n"
                       "[virtual]\nfailover_timeout = 2\n")
        a = self.peer(answer="error")
        b = self.peer(answer="ok")
        spec = "virtual:FAILOVER %s %s" % (a.spec(), b.spec())
        r.subscribe("E_F", spec)
        for i in range(5):
            r.raise_event("E_F", {"seq": i})
        self.wait_stats(r, spec, delivered=5, queued=0)
        self.assertEqual(seqs(b.objs()), list(range(5)))
        self.assertGreaterEqual(len(a.objs()), 1)
        #  A is healthy again: after failover_timeout it is probed and
        #  takes the events again
        a.answer = "ok"
        time.sleep(2.2)
        before_a, before_b = len(a.objs()), len(b.objs())
        for i in range(5, 8):
            r.raise_event("E_F", {"seq": i})
        self.wait_stats(r, spec, delivered=8, queued=0)
        self.assertEqual(seqs(a.objs()[before_a:]), [5, 6, 7])
        self.assertEqual(len(b.objs()), before_b)
        self.assertEqual(seqs(b.objs()), list(range(5)))

    def test_failover_moves_on_when_no_reply(self):
        r = self.relay(config="[tcp]\nreliable_mode = 1\ntimeout = 300\n"
                       "[virtual]\nfailover_timeout = 2\n")
        a = self.peer(answer="none")
        b = self.peer(answer="ok")
        spec = "virtual:FAILOVER %s %s" % (a.spec(), b.spec())
        r.subscribe("E_F", spec)
        for i in range(4):
            r.raise_event("E_F", {"seq": i})
        self.wait_stats(r, spec, delivered=4, queued=0)
        time.sleep(0.2)
        self.assertEqual(seqs(b.objs()), list(range(4)))
        entry = r.target(spec)
        self.assertGreaterEqual(entry["children"][0]["failed"], 1)
        self.assertEqual(entry["children"][1]["delivered"], 4)

    def test_failover_primary_down(self):
        #  non-reliable: a refused connect is the failure that moves on
        r = self.relay(config="[virtual]\nfailover_timeout = 2\n")
        a = self.peer(start=False)
        b = self.peer()
        spec = "virtual:FAILOVER %s %s" % (a.spec(), b.spec())
        r.subscribe("E_F", spec)
        for i in range(4):
            r.raise_event("E_F", {"seq": i})
        self.wait_stats(r, spec, delivered=4, queued=0)
        self.assertEqual(seqs(b.wait_objects(4)), list(range(4)))

    def test_connect_timeout(self):
        #  a connect that hangs is given up after connect_timeout_ms: a
        #  FAILOVER child's events move on; a top-level target keeps its
        #  events queued and retries with back-off
        r = self.relay(config="[relay]\nconnect_timeout_ms = 300\n")
        stuck = StuckListener()
        self.addCleanup(stuck.close)
        b = self.peer()
        spec = "virtual:FAILOVER %s %s" % (stuck.spec(), b.spec())
        r.subscribe("E_F", spec)
        r.subscribe("E_T", stuck.spec())
        t0 = time.monotonic()
        for i in range(3):
            r.raise_event("E_F", {"seq": i})
        r.raise_event("E_T", {"seq": 0})
        self.assertEqual(seqs(b.wait_objects(3)), [0, 1, 2])
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.wait_stats(r, spec, delivered=3, queued=0)
        r.raise_event("E_F", {"seq": 3})
        self.assertEqual(seqs(b.wait_objects(4)), [0, 1, 2, 3])
        time.sleep(0.5)
        entry = r.target(stuck.spec())
        self.assertEqual((entry["queued"], entry["failed"],
                          entry["delivered"]), (1, 0, 0))

    def test_round_robin_skips_dead_child(self):
        r = self.relay(config="[tcp]\nreliable_mode = 1\n")
        a = self.peer(answer="ok")
        b = self.peer(answer="ok")
        c = self.peer(start=False)
        spec = "virtual:ROUND-ROBIN %s %s %s" % (a.spec(), b.spec(),
                                                 c.spec())
        r.subscribe("E_RR", spec)
        n = 12
        for i in range(n):
            r.raise_event("E_RR", {"seq": i})
        self.wait_stats(r, spec, delivered=n, queued=0)
        got_a, got_b = seqs(a.objs()), seqs(b.objs())
        self.assertEqual(sorted(got_a + got_b), list(range(n)))
        self.assertLessEqual(abs(len(got_a) - len(got_b)), 2,
                             "A %r B %r" % (got_a, got_b))

    def test_parallel_dead_tcp_child_never_starves_udp(self):
        r = self.relay()
        a = self.peer(start=False)
        sink = self.udp_sink()
        spec = "virtual:PARALLEL %s %s" % (a.spec(), sink.spec)
        r.subscribe("E_P", spec)
        n = 6
        for i in range(n):
            r.raise_event("E_P", {"seq": i})
        got = sink.wait(n)
        self.assertEqual([json.loads(g)["params"]["seq"] for g in got],
                         list(range(n)))
        self.wait_stats(r, spec, child=0, failed=n, queued=0)
        self.wait_stats(r, spec, child=1, delivered=n)


if __name__ == "__main__":
    evrtest.main()
