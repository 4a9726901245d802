"""zmq:push:ENDPOINT and zmq:pub:ENDPOINT targets against real ZeroMQ
receivers (pyzmq, Debian's python3-zmq): exact payload frames at a PULL,
[event, payload] frames at a SUB with a prefix filter, PUSH holding events
until a receiver binds, and FAILOVER moving on from a PUSH nobody receives.

python3-zmq is installed for Debian's interpreter; when the python3 that
runs this file is another one (a pyenv shim, say) without zmq, the test
re-runs itself under /usr/bin/python3.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

zmq = evrtest.import_system_module("zmq")


def jsonrpc(event, params=None):
    """The exact JSON-RPC notification the relay sends (reference §4.1)."""
    out = {"jsonrpc": "2.0", "method": event}
    if params:
        out["params"] = params
    return json.dumps(out, separators=(",", ":")).encode()


def find_target(relay, transport):
    """The stats entry of the (single) target of a transport."""
    found = [t for t in relay.stats()["targets"]
             if t["transport"] == transport]
    return found[0] if len(found) == 1 else None


class ZmqTransport(evrtest.RelayTestCase):

    def setUp(self):
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.destroy, 0)
        self.r = self.relay()

    def receiver(self, kind, endpoint=None):
        """A bound PULL or SUB socket; returns (socket, its endpoint)."""
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.addCleanup(sock.close, 0)
        if endpoint is None:
            endpoint = "tcp://127.0.0.1:%d" % evrtest.free_port()
        sock.bind(endpoint)
        return sock, endpoint

    def recv(self, sock, timeout=10.0):
        if not sock.poll(int(timeout * 1000)):
            raise AssertionError("nothing received within %.1f s" % timeout)
        return sock.recv_multipart()

    def expect_nothing(self, sock, duration=0.5):
        if sock.poll(int(duration * 1000)):
            self.fail("unexpected message %r" % sock.recv_multipart())

    def test_push_exact_payload_at_pull(self):
        pull, endpoint = self.receiver(zmq.PULL)
        self.r.subscribe("E_ZMQ", "zmq:push:" + endpoint)
        self.r.raise_event("E_ZMQ", '{"ip":"10.0.0.1","port":5060}')
        self.assertEqual(self.recv(pull), [jsonrpc(
            "E_ZMQ", {"ip": "10.0.0.1", "port": 5060})])
        self.r.raise_event("E_ZMQ", '["a","b"]')
        self.assertEqual(self.recv(pull), [
            b'{"jsonrpc":"2.0","method":"E_ZMQ","params":["a","b"]}'])
        self.r.raise_event("E_ZMQ")
        self.assertEqual(self.recv(pull),
                         [b'{"jsonrpc":"2.0","method":"E_ZMQ"}'])
        evrtest.wait_until(
            lambda: (find_target(self.r, "zmq") or {}).get("delivered") == 3,
            what="3 delivered")
        t = find_target(self.r, "zmq")
        self.assertEqual((t["failed"], t["dropped"], t["queued"]), (0, 0, 0))

    def test_push_over_ipv6(self):
        pull = self.ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.IPV6, 1)
        self.addCleanup(pull.close, 0)
        port = evrtest.free_port(family=evrtest.socket.AF_INET6)
        pull.bind("tcp://[::1]:%d" % port)
        self.r.subscribe("E_ZMQ", "zmq:push:tcp://[::1]:%d" % port)
        self.r.raise_event("E_ZMQ", {"v6": 1})
        self.assertEqual(self.recv(pull), [jsonrpc("E_ZMQ", {"v6": 1})])

    def test_push_over_ipc(self):
        path = os.path.join(self.tempdir(), "pull.ipc")
        pull, endpoint = self.receiver(zmq.PULL, "ipc://" + path)
        self.r.subscribe("E_ZMQ", "zmq:push:" + endpoint)
        for i in range(20):
            self.r.raise_event("E_ZMQ", {"n": i})
        for i in range(20):
            self.assertEqual(self.recv(pull), [jsonrpc("E_ZMQ", {"n": i})])

    def test_pub_frames_with_prefix_filter(self):
        sub, endpoint = self.receiver(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"E_CALL")
        spec = "zmq:pub:" + endpoint
        for event in ("E_CALL_START", "E_CALL_END", "E_OTHER"):
            self.r.subscribe(event, spec)
        #  PUB is fire-and-forget: events before the connection and the
        #  subscription are up are lost, so warm up until one arrives
        def warm():
            self.r.raise_event("E_CALL_START", {"warm": 1})
            return sub.poll(200)
        evrtest.wait_until(warm, timeout=10, what="PUB/SUB connected")
        while sub.poll(300):
            self.assertEqual(sub.recv_multipart()[0], b"E_CALL_START")
        self.r.raise_event("E_OTHER", {"n": 0})
        self.r.raise_event("E_CALL_START", {"n": 1})
        self.r.raise_event("E_OTHER", {"n": 2})
        self.r.raise_event("E_CALL_END", {"n": 3})
        self.assertEqual(self.recv(sub), [
            b"E_CALL_START", jsonrpc("E_CALL_START", {"n": 1})])
        self.assertEqual(self.recv(sub), [
            b"E_CALL_END", jsonrpc("E_CALL_END", {"n": 3})])
        self.expect_nothing(sub)
        #  filtered events still count as delivered: the socket took them
        t = find_target(self.r, "zmq")
        self.assertEqual((t["failed"], t["dropped"]), (0, 0))
        evrtest.wait_until(
            lambda: find_target(self.r, "zmq")["queued"] == 0, what="idle")

    def test_push_holds_events_until_a_receiver_binds(self):
        endpoint = "tcp://127.0.0.1:%d" % evrtest.free_port()
        self.r.subscribe("E_ZMQ", "zmq:push:" + endpoint)
        for i in range(5):
            self.r.raise_event("E_ZMQ", {"n": i})
        evrtest.wait_until(
            lambda: (find_target(self.r, "zmq") or {}).get("queued") == 5,
            what="5 queued")
        t = find_target(self.r, "zmq")
        self.assertEqual((t["delivered"], t["failed"], t["dropped"]),
                         (0, 0, 0))
        pull, _ = self.receiver(zmq.PULL, endpoint)
        for i in range(5):
            self.assertEqual(self.recv(pull), [jsonrpc("E_ZMQ", {"n": i})])
        self.r.raise_event("E_ZMQ", {"n": 5})
        self.assertEqual(self.recv(pull), [jsonrpc("E_ZMQ", {"n": 5})])
        evrtest.wait_until(
            lambda: find_target(self.r, "zmq")["delivered"] == 6,
            what="6 delivered")
        t = find_target(self.r, "zmq")
        self.assertEqual((t["failed"], t["dropped"], t["queued"]), (0, 0, 0))

    def test_unsubscribe_closes_the_socket(self):
        from zmq.utils.monitor import recv_monitor_message
        pull, endpoint = self.receiver(zmq.PULL)
        monitor = pull.get_monitor_socket(zmq.EVENT_ACCEPTED |
                                          zmq.EVENT_DISCONNECTED)
        self.addCleanup(pull.disable_monitor)
        self.addCleanup(monitor.close, 0)
        sink = self.udp_sink()
        self.r.subscribe("E_NUDGE", sink.spec)
        spec = "zmq:push:" + endpoint
        self.r.subscribe("E_ZMQ", spec)
        self.r.raise_event("E_ZMQ", {"n": 0})
        self.assertEqual(self.recv(pull), [jsonrpc("E_ZMQ", {"n": 0})])

        def next_event():
            if not monitor.poll(10000):
                raise AssertionError("no monitor event within 10 s")
            return recv_monitor_message(monitor)["event"]
        self.assertEqual(next_event(), zmq.EVENT_ACCEPTED)
        self.r.subscribe("E_ZMQ", spec, 0)  # expire 0 = unsubscribe
        #  the worker closes the orphaned target's socket, in its own
        #  thread, at its next turn: an event for another target makes one
        self.r.raise_event("E_NUDGE")
        sink.wait_one()
        self.assertEqual(next_event(), zmq.EVENT_DISCONNECTED)

    def test_stop_with_events_waiting_for_a_receiver(self):
        endpoint = "tcp://127.0.0.1:%d" % evrtest.free_port()
        relay = evrtest.Relay()
        self.addCleanup(relay.cleanup)
        relay.start()
        relay.subscribe("E_ZMQ", "zmq:push:" + endpoint)
        for i in range(3):
            relay.raise_event("E_ZMQ", {"n": i})
        evrtest.wait_until(
            lambda: (find_target(relay, "zmq") or {}).get("queued") == 3,
            what="3 queued")
        start = time.monotonic()
        self.assertEqual(relay.stop(), 0)
        self.assertLess(time.monotonic() - start, 3.0)

    def test_failover_from_push_nobody_receives_to_udp(self):
        dead = "tcp://127.0.0.1:%d" % evrtest.free_port()
        sink = self.udp_sink()
        self.r.subscribe("E_ZMQ",
                         "virtual:FAILOVER zmq:push:%s %s" % (dead, sink.spec))
        n = 20
        for i in range(n):
            self.r.raise_event("E_ZMQ", {"n": i})
        got = sink.wait(n)
        self.assertEqual(got, [jsonrpc("E_ZMQ", {"n": i}) for i in range(n)])
        v = find_target(self.r, "virtual")
        evrtest.wait_until(
            lambda: find_target(self.r, "virtual")["delivered"] == n,
            what="%d delivered by the virtual target" % n)
        v = find_target(self.r, "virtual")
        self.assertEqual((v["failed"], v["dropped"], v["queued"]), (0, 0, 0))
        zchild, uchild = v["children"]
        self.assertEqual(zchild["delivered"], 0)
        self.assertGreaterEqual(zchild["failed"], 1)
        self.assertEqual(zchild["queued"], 0)
        self.assertEqual(uchild["delivered"], n)


if __name__ == "__main__":
    evrtest.main()
