"""The [limits] of the relay, against real evrelayd processes started with
small limits in their config file.

Every limit is enforced at its place, with the error the client sees and
its counter (`evrelayctl stats`, `/metrics`):

- ingest, whole frames: max_frame_bytes (an Ack of no stream, REJECTED,
  naming the limit), undecodable frames (random bytes, a truncated
  Publish, an empty frame: the same kind of Ack), max_batch_events and
  max_inflight_bytes (the batch's Ack, REJECTED, naming the limit);
- ingest, one event at a time: max_name_length, max_params,
  max_event_bytes (Ack.rejected_offsets, also with the DELIVERED ack
  point);
- control: max_control_bytes and undecodable requests (-32600), and for
  a local subscribe max_name_length, max_children,
  max_subscriptions_per_event and max_subscriptions (400 "Bad parameter
  value", data naming the limit and its value), also through the HTTP
  face; refreshes and unsubscribes are never refused, expired entries do
  not count, replicated subscriptions are never refused.

After each refusal the relay still serves a normal publish and a normal
subscribe.
"""

import json
import os
import random
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
import test_tcp  # noqa: E402
from evrtest import ZmtpDealer, pb_event, publish, wait_until  # noqa: E402

OK, REJECTED = 0, 1


def name_of(n, prefix="E_"):
    """An event name of exactly n characters."""
    return (prefix + "N" * n)[:n]


class IngestTestCase(evrtest.RelayTestCase):
    """A relay with small ingest limits and one UDP subscriber of E_I."""

    CONFIG = ("[limits]\n"
              "max_frame_bytes = 4096\n"
              "max_event_bytes = 300\n"
              "max_params = 4\n"
              "max_name_length = 16\n"
              "max_batch_events = 8\n")

    def setUp(self):
        self.r = self.relay(config=self.CONFIG)
        self.sink = self.udp_sink()
        self.r.subscribe("E_I", self.sink.spec)

    def send(self, dealer, frame):
        """Send one frame, return the decoded Ack."""
        dealer.send(frame)
        return evrtest.ack(dealer.recv()[-1])

    def assert_serves(self, producer=b"prod-after", seq=1):
        """A normal publish is acked and delivered, a normal subscribe
        answers OK."""
        with ZmtpDealer(self.r.ingest) as d:
            a = self.send(d, publish(producer, 1, seq,
                                     [pb_event("E_I", [("ok", seq)])]))
        self.assertEqual((a["status"], a["producer_id"], a["acked_through"]),
                         (OK, producer, seq), a)
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_I","params":'
                         b'{"ok":%d}}' % seq)
        self.r.subscribe("E_AFTER", "udp:127.0.0.1:9")

    def ingest(self):
        return self.r.stats()["ingest"]


class FrameLimits(IngestTestCase):

    def test_oversized_frame_gets_a_clear_error(self):
        with ZmtpDealer(self.r.ingest) as d:
            a = self.send(d, b"\x0a" * 4097)
            #  answered for no stream: empty producer id, zero numbers
            self.assertEqual(
                (a["status"], a["producer_id"], a["epoch"], a["first_seq"],
                 a["count"], a["acked_through"]),
                (REJECTED, b"", 0, 0, 0, 0), a)
            self.assertEqual(a["error"],
                             "frame of 4097 bytes is over the limit of 4096 "
                             "bytes ([limits] max_frame_bytes)")
            #  a Publish over the limit is not decoded either
            big = publish(b"prod-big", 1, 1, [pb_event("E_I", [(
                "p%d" % k, "x" * 250) for k in range(4)]) for _ in range(5)])
            self.assertGreater(len(big), 4096)
            a = self.send(d, big)
            self.assertEqual((a["status"], a["producer_id"]),
                             (REJECTED, b""), a)
            self.assertIn("max_frame_bytes", a["error"])
            #  exactly the limit is decoded (and refused for what it is)
            a = self.send(d, b"\x00" * 4096)
            self.assertEqual(a["error"],
                             "undecodable frame: not a protobuf Publish")
        ingest = self.ingest()
        self.assertEqual((ingest["refused_frame_bytes"], ingest["too_large"],
                          ingest["malformed"], ingest["received"]),
                         (2, 2, 1, 0), ingest)
        self.sink.expect_none(0.2)
        self.assert_serves()

    def test_garbage_frames_get_a_clear_error(self):
        good = publish(b"prod-g", 1, 1, [pb_event("E_I", [("a", 1)]),
                                         pb_event("E_I", [("b", 2)])])
        frames = [random.Random(7).randbytes(200),   # random bytes
                  good[:-3],                         # a truncated Publish
                  good[:5],                          # cut in the header
                  b"",                               # an empty frame
                  b"\xff" * 9]                       # a bad varint
        with ZmtpDealer(self.r.ingest) as d:
            for frame in frames:
                a = self.send(d, frame)
                self.assertEqual(
                    (a["status"], a["producer_id"], a["count"], a["error"]),
                    (REJECTED, b"", 0,
                     "undecodable frame: not a protobuf Publish"),
                    (frame, a))
            #  the same connection still publishes
            a = self.send(d, good)
            self.assertEqual((a["status"], a["acked_through"]), (OK, 2), a)
        self.assertEqual(len(self.sink.wait(2)), 2)
        ingest = self.ingest()
        self.assertEqual((ingest["malformed"], ingest["batches"],
                          ingest["received"]), (len(frames), 1, 2), ingest)
        self.assert_serves()


class BatchLimits(IngestTestCase):

    def test_max_batch_events(self):
        events = [pb_event("E_I", [("i", i)]) for i in range(9)]
        with ZmtpDealer(self.r.ingest) as d:
            a = self.send(d, publish(b"prod-b", 1, 1, events))
            self.assertEqual(
                (a["status"], a["producer_id"], a["first_seq"], a["count"],
                 a["acked_through"]), (REJECTED, b"prod-b", 1, 9, 0), a)
            self.assertEqual(a["error"],
                             "batch of 9 events is over the limit of 8 "
                             "([limits] max_batch_events)")
            #  refused before de-duplication: the same seqs in a batch of 8
            #  are new
            a = self.send(d, publish(b"prod-b", 1, 1, events[:8]))
            self.assertEqual((a["status"], a["acked_through"]), (OK, 8), a)
            self.assertNotIn("duplicates", a)
            #  fire-and-forget batches refused as a whole are answered too
            a = self.send(d, publish(b"prod-n", 1, 1, events,
                                     ack_point=evrtest.ACK_NONE))
            self.assertEqual((a["status"], a["count"]), (REJECTED, 9), a)
            self.assertIn("max_batch_events", a["error"])
        self.assertEqual(sorted(json.loads(m)["params"]["i"]
                                for m in self.sink.wait(8)), list(range(8)))
        self.sink.expect_none(0.3)
        ingest = self.ingest()
        self.assertEqual((ingest["refused_batch_events"], ingest["batches"],
                          ingest["received"]), (2, 1, 8), ingest)
        self.assert_serves()


class EventLimits(IngestTestCase):

    def batch(self):
        return [
            pb_event("E_I", [("i", 0)]),
            pb_event(name_of(17), [("i", 1)]),                 # name
            pb_event("E_I", [("p%d" % k, k) for k in range(5)]),  # params
            pb_event("E_I", [("big", "x" * 300)]),             # payload
            pb_event(name_of(65), [("i", 4)]),                 # name > 64
            pb_event("E_I", [("p%d" % k, k) for k in range(4)]),
            pb_event("E I", [("i", 6)]),                       # bad name
        ]

    def check_counters(self, received):
        ingest = self.ingest()
        self.assertEqual(
            (ingest["refused_name_length"], ingest["refused_params"],
             ingest["refused_event_bytes"], ingest["rejected"],
             ingest["received"]), (2, 1, 1, 5, received), ingest)

    def test_event_limits_rejected_one_by_one(self):
        #  a name of exactly max_name_length is fine
        self.r.subscribe(name_of(16), self.sink.spec)
        with ZmtpDealer(self.r.ingest) as d:
            a = self.send(d, publish(b"prod-e", 1, 1, self.batch()))
            self.assertEqual((a["status"], a["acked_through"], a["rejected"],
                              a["rejected_offsets"]),
                             (OK, 7, 5, [1, 2, 3, 4, 6]), a)
            a = self.send(d, publish(b"prod-e", 1, 8, [
                pb_event(name_of(16), [("i", 7)])]))
            self.assertNotIn("rejected", a)
        got = self.sink.wait(3)
        self.assertEqual(got[0], b'{"jsonrpc":"2.0","method":"E_I",'
                                 b'"params":{"i":0}}')
        self.assertIn(b'"p3":3', got[1])
        self.assertIn(name_of(16).encode(), got[2])
        self.sink.expect_none(0.2)
        self.check_counters(8)
        self.assert_serves()

    def test_delivered_ack_point_reports_them_too(self):
        with ZmtpDealer(self.r.ingest) as d:
            a = self.send(d, publish(b"prod-d", 1, 1, self.batch(),
                                     ack_point=evrtest.ACK_DELIVERED))
            self.assertEqual((a["status"], a["count"], a["rejected"],
                              a["rejected_offsets"]),
                             (OK, 7, 5, [1, 2, 3, 4, 6]), a)
            self.assertNotIn("failed", a)
        self.assertEqual(len(self.sink.wait(2)), 2)
        self.check_counters(7)
        self.assert_serves()


class InflightLimit(evrtest.RelayTestCase):
    """max_inflight_bytes: the bytes of one producer's DELIVERED batches
    accepted and not yet answered."""

    def event(self, i):
        return pb_event("E_ACK", [("i", i), ("pad", "x" * 80)])

    def test_max_inflight_bytes(self):
        peer = test_tcp.JsonRpcPeer(answer="ok").start()
        self.addCleanup(peer.stop, False)
        r = self.relay(config="[limits]\nmax_inflight_bytes = 1024\n"
                              "[tcp]\nreliable_mode = 1\ntimeout = 30000\n")
        r.subscribe("E_ACK", peer.spec())
        sink = self.udp_sink()
        r.subscribe("E_OTHER", sink.spec)
        delivered = evrtest.ACK_DELIVERED
        pid = b"prod-inflight"
        first = publish(pid, 1, 1, [self.event(i) for i in range(1, 7)],
                        ack_point=delivered)
        second = publish(pid, 1, 7, [self.event(i) for i in range(7, 13)],
                         ack_point=delivered)
        self.assertLess(len(first), 1024)
        self.assertGreater(len(first) + len(second), 1024)
        peer.pause()
        with ZmtpDealer(r.ingest) as d, ZmtpDealer(r.ingest) as other:
            d.send(first)
            wait_until(lambda: r.stats()["table"]["pending_batches"] == 1,
                       what="the first batch in progress")
            self.assertEqual(r.stats()["table"]["inflight_bytes"], len(first))
            #  the second would take the producer over the limit
            d.send(second)
            a = evrtest.ack(d.recv()[-1])
            self.assertEqual((a["status"], a["first_seq"], a["count"]),
                             (REJECTED, 7, 6), a)
            self.assertEqual(a["error"],
                             "producer has %d bytes in flight; this batch of "
                             "%d bytes would exceed the limit of 1024 "
                             "([limits] max_inflight_bytes)"
                             % (len(first), len(second)))
            #  a resend of the batch in progress is not refused: held back
            #  for the original's Ack
            d.send(first)
            d.expect_silence(0.3)
            #  other producers and ack points are served meanwhile
            other.send(publish(b"prod-other", 1, 1,
                               [pb_event("E_OTHER", [("n", 1)])]))
            a = evrtest.ack(other.recv()[-1])
            self.assertEqual((a["status"], a["acked_through"]), (OK, 1), a)
            self.assertEqual(sink.wait_one(), b'{"jsonrpc":"2.0","method":'
                                              b'"E_OTHER","params":{"n":1}}')
            other.send(publish(b"prod-other2", 1, 1, [self.event(1)],
                               ack_point=delivered))
            wait_until(lambda: r.stats()["table"]["pending_batches"] == 2,
                       what="another producer's batch in progress")
            peer.resume()
            a = evrtest.ack(d.recv(10)[-1])
            self.assertEqual((a["status"], a["first_seq"], a["count"],
                              a["acked_through"]), (OK, 1, 6, 6), a)
            self.assertNotIn("failed", a)
            a = evrtest.ack(other.recv(10)[-1])
            self.assertEqual((a["status"], a["producer_id"]),
                             (OK, b"prod-other2"), a)
            wait_until(lambda: r.stats()["table"]["inflight_bytes"] == 0,
                       what="nothing in flight")
            #  nothing in flight again: the refused batch, sent anew, fits
            d.send(second)
            a = evrtest.ack(d.recv(10)[-1])
            self.assertEqual((a["status"], a["first_seq"], a["acked_through"]),
                             (OK, 7, 12), a)
        ingest = r.stats()["ingest"]
        self.assertEqual((ingest["refused_inflight"], ingest["held_back"]),
                         (1, 1), ingest)
        seen = sorted(o["params"]["i"] for _, o in peer.objects
                      if o.get("method") == "E_ACK")
        self.assertEqual(seen, [1] + list(range(1, 13)))


class ControlLimits(evrtest.RelayTestCase):
    """A relay with small control limits; subscribes go through
    evrelayctl (and once through the HTTP face)."""

    CONFIG = ("[relay]\n"
              "sweep_ms = 60000\n"   # only a full count sweeps
              "[limits]\n"
              "max_control_bytes = 2048\n"
              "max_name_length = 16\n"
              "max_subscriptions = 5\n"
              "max_subscriptions_per_event = 3\n"
              "max_children = 2\n")

    def setUp(self):
        self.http_port = evrtest.free_port()
        self.r = self.relay(["--http", "127.0.0.1:%d" % self.http_port],
                            config=self.CONFIG)

    def udp(self, n):
        return "udp:127.0.0.1:%d" % (20000 + n)

    def refused(self, *args):
        e = self.r.err("subscribe", *args)
        self.assertEqual((e["code"], e["message"]),
                         (400, "Bad parameter value"), e)
        return e["data"]

    def control(self):
        return self.r.stats()["control"]

    def assert_serves(self):
        sink = self.udp_sink()
        self.r.subscribe("E_SERVE", sink.spec, 0)  # a no-op unsubscribe
        with ZmtpDealer(self.r.ingest) as d:
            d.send(publish(b"prod-c", 1, 1, [pb_event("E_X", [("a", 1)])]))
            self.assertEqual(evrtest.ack(d.recv()[-1])["status"], OK)
        self.assertTrue(self.r.ok("list"))

    def mi(self, method, params):
        body = json.dumps({"jsonrpc": "2.0", "method": method,
                           "params": params, "id": 1}).encode()
        req = urllib.request.Request(
            "http://127.0.0.1:%d/mi" % self.http_port, data=body,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def metrics(self):
        url = "http://127.0.0.1:%d/metrics" % self.http_port
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.read().decode()

    def test_subscriptions_per_event(self):
        for n in range(2):
            self.r.subscribe("E_A", self.udp(n))
        self.r.subscribe("E_A", "udp:[::1]:20002")
        self.assertEqual(self.refused("E_A", self.udp(3)),
                         "E_A has 3 subscriptions, the limit per event is 3 "
                         "([limits] max_subscriptions_per_event)")
        #  the same through the HTTP face
        reply = self.mi("evi:subscribe", ["E_A", self.udp(3)])
        self.assertEqual(reply["error"]["code"], 400, reply)
        self.assertIn("max_subscriptions_per_event",
                      reply["error"]["data"])
        #  a refresh, also spelled differently, and an unsubscribe pass
        self.r.subscribe("E_A", self.udp(0), 60)
        self.r.subscribe("E_A", "udp:[0::0:1]:20002", 60)
        self.r.subscribe("E_A", self.udp(3), 0)
        self.r.subscribe("E_B", self.udp(3))   # other events are not full
        self.r.subscribe("E_A", self.udp(1), 0)
        self.r.subscribe("E_A", self.udp(3))   # room again
        self.assertEqual(len(self.r.subscribers("E_A")["Event"]
                             ["Subscribers"]), 3)
        self.assertEqual(self.control()["refused_event_subscriptions"], 2)
        self.assertEqual(self.control()["refused_subscriptions"], 0)
        self.assert_serves()

    def test_expired_subscriptions_do_not_count(self):
        for n in range(3):
            self.r.subscribe("E_A", self.udp(n), 1)
        self.refused("E_A", self.udp(3))
        #  expired, not yet swept (sweep_ms is a minute here) and not
        #  listed: a new subscribe sweeps them away and passes
        time.sleep(2.2)
        self.assertEqual(self.r.stats()["table"]["subscriptions"], 3)
        self.r.subscribe("E_A", self.udp(3))
        c = self.control()
        self.assertEqual((c["refused_event_subscriptions"], c["expired"]),
                         (1, 3), c)
        self.assertEqual(len(self.r.subscribers("E_A")["Event"]
                             ["Subscribers"]), 1)

    def test_max_subscriptions(self):
        for n in range(5):
            self.r.subscribe("E_T%d" % (n % 3), self.udp(n))
        self.assertEqual(self.refused("E_T3", self.udp(5)),
                         "the relay holds 5 subscriptions, the limit is 5 "
                         "([limits] max_subscriptions)")
        self.refused("E_T0", self.udp(9))
        self.r.subscribe("E_T0", self.udp(0))    # refresh
        self.r.subscribe("E_T0", self.udp(0), 0)
        self.r.subscribe("E_T3", self.udp(5))    # room again
        self.assertEqual(self.r.stats()["table"]["subscriptions"], 5)
        c = self.control()
        self.assertEqual((c["refused_subscriptions"],
                          c["refused_event_subscriptions"]), (2, 0), c)
        #  refused requests are errors; the rest are not
        self.assertEqual(c["errors"], 2, c)
        self.assert_serves()

    def test_max_children(self):
        three = "virtual:FAILOVER %s %s %s" % (self.udp(1), self.udp(2),
                                              self.udp(3))
        self.assertEqual(self.refused("E_V", three),
                         "virtual: 3 child sockets, more than the limit of 2 "
                         "([limits] max_children)")
        two = "virtual:PARALLEL %s %s" % (self.udp(1), self.udp(2))
        self.r.subscribe("E_V", two)
        self.assertEqual(self.control()["refused_children"], 1)
        self.assert_serves()

    def test_name_length(self):
        self.assertEqual(self.refused(name_of(17), self.udp(1)),
                         "event name of 17 characters is over the limit of "
                         "16 ([limits] max_name_length)")
        self.assertIn("max_name_length",
                      self.refused(name_of(70), self.udp(1)))
        self.r.subscribe(name_of(16), self.udp(1))
        self.assertEqual(self.control()["refused_name_length"], 2)
        names = [e["name"] for e in self.r.ok("list")["Events"]]
        self.assertNotIn(name_of(17), names)
        self.assert_serves()

    def test_control_frames(self):
        with ZmtpDealer(self.r.control) as z:
            big = evrtest.control_request(
                "subscribe", json.dumps(["E_X", "udp:127.0.0.1:9",
                                         "x" * 2100]), 5)
            z.send(big)
            reply = evrtest.control_reply(z.recv()[-1])
            self.assertEqual((reply["id"], reply["error"]["code"],
                              reply["error"]["message"]),
                             (0, -32600, "Invalid request"), reply)
            self.assertEqual(json.loads(reply["error"]["data"]),
                             "request too large: %d bytes, the limit is 2048 "
                             "([limits] max_control_bytes)" % len(big))
            good = evrtest.control_request("list", None, 6)
            for frame in (random.Random(3).randbytes(300), good[:-2], b"",
                          b"\xff" * 12):
                z.send(frame)
                reply = evrtest.control_reply(z.recv()[-1])
                self.assertEqual((reply["id"], reply["error"]["code"],
                                  json.loads(reply["error"]["data"])),
                                 (0, -32600, "undecodable request"),
                                 (frame, reply))
            z.send(good)
            reply = evrtest.control_reply(z.recv()[-1])
            self.assertEqual(reply["id"], 6)
            self.assertIn("Events", json.loads(reply["result"]))
        #  the HTTP face refuses a body over the limit itself (413)
        try:
            self.mi("evi:subscribe", ["E_X", "udp:127.0.0.1:9", "x" * 2100])
            self.fail("a body over max_control_bytes was taken")
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 413)
            self.assertEqual(json.loads(e.read())["error"]["code"], -32600)
        c = self.control()
        self.assertEqual((c["too_large"], c["malformed"]), (2, 4), c)
        self.r.subscribe("E_X", "udp:127.0.0.1:9")
        self.assert_serves()

    def test_counters_in_metrics(self):
        for n in range(3):
            self.r.subscribe("E_A", self.udp(n))
        self.refused("E_A", self.udp(3))
        self.refused(name_of(17), self.udp(3))
        self.refused("E_V", "virtual:PARALLEL %s %s %s" % (
            self.udp(1), self.udp(2), self.udp(3)))
        self.r.subscribe("E_B", self.udp(1))
        self.r.subscribe("E_B", self.udp(2))
        self.refused("E_C", self.udp(1))
        with ZmtpDealer(self.r.ingest) as d:
            d.send(b"\x0a" * 3000)   # under max_frame_bytes: undecodable
            d.recv()
            d.send(publish(b"p", 1, 1, [pb_event(name_of(17))]))
            d.recv()
        text = self.metrics()
        for name, value in (
                ("evrelay_control_refused_event_subscriptions_total", 1),
                ("evrelay_control_refused_subscriptions_total", 1),
                ("evrelay_control_refused_children_total", 1),
                ("evrelay_control_refused_name_length_total", 1),
                ("evrelay_ingest_refused_name_length_total", 1),
                ("evrelay_ingest_refused_params_total", 0),
                ("evrelay_ingest_refused_event_bytes_total", 0),
                ("evrelay_ingest_refused_frame_bytes_total", 0),
                ("evrelay_ingest_refused_batch_events_total", 0),
                ("evrelay_ingest_refused_inflight_total", 0),
                ("evrelay_ingest_malformed_total", 1),
                ("evrelay_table_inflight_bytes", 0)):
            self.assertIn("\n%s %d\n" % (name, value), text, name)
        self.assertIn("# TYPE evrelay_control_refused_subscriptions_total "
                      "counter\n", text)
        self.assertIn("# HELP evrelay_ingest_refused_inflight_total DELIVERED "
                      "batches refused", text)


class ReplicatedSubscriptions(evrtest.RelayTestCase):
    """The caps apply to local subscribes only: a peer's write is taken
    (the tables stay identical), a local one beyond the cap is refused."""

    def test_replicated_writes_are_not_refused(self):
        from test_cluster import ClusterRelay
        a = ClusterRelay("A", os.path.join(self.tempdir(), "a"))
        b = ClusterRelay("B", os.path.join(self.tempdir(), "b"),
                         "[limits]\nmax_subscriptions = 2\n"
                         "max_subscriptions_per_event = 2\n")
        b.peers = [a.endpoint]
        for r in (a, b):
            self.addCleanup(r.cleanup)
            r.start()
        for r in (a, b):
            wait_until(r.ready, 10, what="%s ready" % r.name)
        for n in range(3):
            a.subscribe("E_R", "udp:127.0.0.1:%d" % (21000 + n))

        def on_b():
            ev = b.subscribers("E_R").get("Event") or {}
            return len(ev.get("Subscribers", [])) == 3
        wait_until(on_b, 10, what="3 replicated subscriptions on B")
        e = b.err("subscribe", "E_R", "udp:127.0.0.1:21009")
        self.assertEqual((e["code"], e["data"]),
                         (400, "E_R has 3 subscriptions, the limit per event "
                               "is 2 ([limits] max_subscriptions_per_event)"))
        e = b.err("subscribe", "E_S", "udp:127.0.0.1:21009")
        self.assertIn("([limits] max_subscriptions)", e["data"])
        #  a refresh on B is fine, and replicates
        b.subscribe("E_R", "udp:127.0.0.1:21000", 77)

        def refreshed_on_a():
            for s in a.subscribers("E_R")["Event"]["Subscribers"]:
                if s["socket"] == "udp:127.0.0.1:21000":
                    return s["expire"] == 77
            return False
        wait_until(refreshed_on_a, 10, what="the refresh on A")
        self.assertEqual(b.stats()["cluster"]["apply_errors"], 0)


if __name__ == "__main__":
    evrtest.main()
