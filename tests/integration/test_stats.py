"""Per-target counters in `evrelayctl stats` move with real outcomes:
delivered to live listeners, failed for a closed UDP port (a connected UDP
socket sees ECONNREFUSED) and for a unix path nobody listens on, dropped
when a target's bounded queue is full. Every event is accounted for.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


def accounted(t):
    return t["delivered"] + t["failed"] + t["dropped"] + t["queued"]


class TargetCounters(evrtest.RelayTestCase):

    def test_shape(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_X", sink.spec)
        stats = r.stats()
        self.assertEqual(list(stats)[:5],
                         ["uptime_s", "ingest", "control", "table", "targets"])
        #  the keys of PROTOCOL §6.4, in that order (more MAY follow)
        self.assertEqual(len(stats["targets"]), 1)
        target = stats["targets"][0]
        self.assertEqual(list(target.items())[:7],
                         [("socket", sink.spec), ("transport", "udp"),
                          ("subscriptions", 1), ("delivered", 0),
                          ("failed", 0), ("dropped", 0), ("queued", 0)])
        self.assertEqual(stats["table"]["subscriptions"], 1)
        for key in ("batches", "received", "malformed", "duplicates",
                    "no_subscribers", "queue_full"):
            self.assertEqual(stats["ingest"][key], 0, key)

    def test_delivered(self):
        r = self.relay()
        udp, unix = self.udp_sink(), self.unix_sink()
        d = self.tempdir()
        path = os.path.join(d, "f.log")
        for spec in (udp.spec, unix.spec, "flatstore:" + path):
            r.subscribe("E_X", spec)
        for i in range(5):
            r.raise_event("E_X", '{"i":%d}' % i)
        udp.wait(5)
        unix.wait(5)
        evrtest.wait_file(path, b"".join(b"E_X,%d\n" % i for i in range(5)))
        def settled():
            ts = r.stats()["targets"]
            return ts if all(t["delivered"] == 5 for t in ts) else None
        targets = evrtest.wait_until(settled, timeout=5, what="delivered 5")
        self.assertEqual(sorted(t["transport"] for t in targets),
                         ["flatstore", "udp", "unix"])
        for t in targets:
            self.assertEqual((t["failed"], t["dropped"], t["queued"]),
                             (0, 0, 0), t)
        self.assertEqual(r.stats()["ingest"]["delivered_to_queues"], 15)

    def test_udp_closed_port_counts_failed(self):
        r = self.relay()
        port = evrtest.free_port(socket.SOCK_DGRAM)
        spec = "udp:127.0.0.1:%d" % port
        r.subscribe("E_X", spec)
        raised = 0
        def failed():
            nonlocal raised
            r.raise_event("E_X", '{"n":%d}' % raised)
            raised += 1
            t = r.target(spec)
            return t if t["failed"] > 0 else None
        evrtest.wait_until(failed, timeout=10, interval=0.05,
                           what="failed > 0 for a closed UDP port")
        t = evrtest.wait_until(
            lambda: (lambda t: t if accounted(t) == raised and
                     t["queued"] == 0 else None)(r.target(spec)),
            timeout=5, what="every raise accounted")
        self.assertGreater(t["failed"], 0)
        self.assertEqual(t["dropped"], 0)
        self.assertLessEqual(raised, 10, "ICMP refusals should show quickly")

    def test_unix_without_listener_counts_failed_then_recovers(self):
        r = self.relay()
        d = self.tempdir()
        path = os.path.join(d, "later.sock")
        spec = "unix:" + path
        r.subscribe("E_X", spec)
        for i in range(3):
            r.raise_event("E_X", '{"i":%d}' % i)
        t = evrtest.wait_until(
            lambda: (lambda t: t if t["failed"] == 3 else None)(
                r.target(spec)), timeout=5, what="failed == 3")
        self.assertEqual((t["delivered"], t["queued"]), (0, 0))
        #  a listener appears: the target reconnects
        sink = self.unix_sink(directory=d, name="later.sock")
        r.raise_event("E_X", '{"i":3}')
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_X","params":{"i":3}}')
        t = evrtest.wait_until(
            lambda: (lambda t: t if t["delivered"] == 1 else None)(
                r.target(spec)), timeout=5, what="delivered == 1")
        self.assertEqual(t["failed"], 3)
        #  and it goes away again
        sink.close()
        r.raise_event("E_X", '{"i":4}')
        evrtest.wait_until(
            lambda: r.target(spec)["failed"] == 4, timeout=5,
            what="failed == 4")
        self.assertEqual(r.target(spec)["delivered"], 1)

    def test_full_queue_drops_and_counts(self):
        r = self.relay(config="[limits]\ntarget_queue = 10\n")
        sink = self.udp_sink()
        r.subscribe("E_Q", sink.spec)
        events = [evrtest.pb_event("E_Q", [("seq", i)])
                  for i in range(1, 101)]
        with evrtest.ZmtpDealer(r.ingest) as z:
            z.send(evrtest.publish(b"prod-q", 1, 1, events))
            a = evrtest.ack(z.recv()[-1])
        self.assertEqual((a["status"], a["count"], a["acked_through"]),
                         (0, 100, 100))
        got = sink.wait(10)
        self.assertEqual(got, [b'{"jsonrpc":"2.0","method":"E_Q","params":'
                               b'{"seq":%d}}' % i for i in range(1, 11)])
        sink.expect_none(0.3)
        t = evrtest.wait_until(
            lambda: (lambda t: t if t["delivered"] == 10 else None)(
                r.target(sink.spec)), timeout=5, what="delivered == 10")
        self.assertEqual((t["dropped"], t["failed"], t["queued"]),
                         (90, 0, 0))
        ingest = r.stats()["ingest"]
        self.assertEqual((ingest["received"], ingest["queue_full"],
                          ingest["delivered_to_queues"]), (100, 90, 10))


if __name__ == "__main__":
    evrtest.main()
