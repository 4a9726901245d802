"""The ingest socket, driven with exact Publish frames over a raw ZMTP
DEALER (docs/PROTOCOL.md §4, §5): payload mapping of protobuf events, Ack
fields, de-duplication, per-event rejection, batch rejection, stale
events, envelopes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
from evrtest import pb_event, publish  # noqa: E402

OK, REJECTED = 0, 1


class Ingest(evrtest.RelayTestCase):

    def setUp(self):
        self.r = self.relay()
        self.sink = self.udp_sink()
        self.r.subscribe("E_I", self.sink.spec)
        self.z = evrtest.ZmtpDealer(self.r.ingest)
        self.addCleanup(self.z.close)

    def send(self, frame, *envelope):
        self.z.send(*(list(envelope) + [frame]))
        frames = self.z.recv()
        self.assertEqual(frames[:-1], list(envelope))
        return evrtest.ack(frames[-1])

    def test_payload_mapping(self):
        events = [
            pb_event("E_I", [("min", -9223372036854775808),
                             ("max", 9223372036854775807), ("zero", 0)]),
            pb_event("E_I", [("n", None), (None, "pos"), ("s", "")]),
            pb_event("E_I", [(None, 1), ("named", "v"), (None, None)]),
            pb_event("E_I", [("raw", b"\xff\xfe\x80ok"),
                             ("esc", b"\x00\x01\"\\\n")]),
            pb_event("E_I", [], raised_us=1234567890),
        ]
        a = self.send(publish(b"prod-map", 7, 1, events))
        self.assertEqual(a, {"version": 1, "producer_id": b"prod-map",
                             "epoch": 7, "first_seq": 1, "count": 5,
                             "acked_through": 5, "status": OK})
        self.assertEqual(self.sink.wait(5), [
            b'{"jsonrpc":"2.0","method":"E_I","params":{"min":'
            b'-9223372036854775808,"max":9223372036854775807,"zero":0}}',
            b'{"jsonrpc":"2.0","method":"E_I","params":'
            b'{"n":null,"":"pos","s":""}}',
            b'{"jsonrpc":"2.0","method":"E_I","params":[1,"v",null]}',
            b'{"jsonrpc":"2.0","method":"E_I","params":'
            b'{"raw":"\xff\xfe\x80ok","esc":"\\u0000\\u0001\\"\\\\\\n"}}',
            b'{"jsonrpc":"2.0","method":"E_I"}',
        ])
        ingest = self.r.stats()["ingest"]
        self.assertEqual((ingest["batches"], ingest["received"],
                          ingest["delivered_to_queues"]), (1, 5, 5))

    def test_duplicate_batch_not_delivered_again(self):
        frame = publish(b"prod-dup", 1, 1,
                        [pb_event("E_I", [("seq", i)]) for i in (1, 2, 3)])
        a = self.send(frame)
        self.assertEqual((a["status"], a["acked_through"]), (OK, 3))
        self.assertNotIn("duplicates", a)
        self.assertEqual(len(self.sink.wait(3)), 3)
        a = self.send(frame)
        self.assertEqual((a["status"], a["acked_through"], a["duplicates"]),
                         (OK, 3, 3))
        #  overlapping: 2 and 3 seen, 4 and 5 new
        a = self.send(publish(b"prod-dup", 1, 2,
                              [pb_event("E_I", [("seq", i)])
                               for i in (2, 3, 4, 5)]))
        self.assertEqual((a["first_seq"], a["count"], a["acked_through"],
                          a["duplicates"]), (2, 4, 5, 2))
        self.assertEqual(self.sink.wait(2), [
            b'{"jsonrpc":"2.0","method":"E_I","params":{"seq":4}}',
            b'{"jsonrpc":"2.0","method":"E_I","params":{"seq":5}}'])
        self.sink.expect_none(0.3)
        self.assertEqual(self.r.stats()["ingest"]["duplicates"], 5)

    def test_streams_are_separate(self):
        ev = [pb_event("E_I", [("who", "x")])]
        for pid, epoch in ((b"prod-a", 1), (b"prod-b", 1), (b"prod-a", 2)):
            a = self.send(publish(pid, epoch, 1, ev))
            self.assertNotIn("duplicates", a)
        self.assertEqual(len(self.sink.wait(3)), 3)
        self.assertEqual(self.r.stats()["table"]["producers"], 3)

    def test_bad_events_rejected_one_by_one(self):
        big = "x" * 70000
        events = [
            pb_event("E_I", [("i", 1)]),
            pb_event("bad name", [("i", 2)]),
            pb_event("E_" + "X" * 63, [("i", 3)]),
            pb_event("E_I", [("p%d" % k, k) for k in range(129)]),
            pb_event("E_I", [("big", big)]),
            pb_event("E_I", [("i", 6)]),
        ]
        a = self.send(publish(b"prod-rej", 1, 1, events))
        self.assertEqual((a["status"], a["count"], a["acked_through"],
                          a["rejected"]), (OK, 6, 6, 4))
        self.assertEqual(self.sink.wait(2), [
            b'{"jsonrpc":"2.0","method":"E_I","params":{"i":1}}',
            b'{"jsonrpc":"2.0","method":"E_I","params":{"i":6}}'])
        self.sink.expect_none(0.3)
        #  128 params is fine
        a = self.send(publish(b"prod-rej", 1, 7, [
            pb_event("E_I", [("p%d" % k, k) for k in range(128)])]))
        self.assertNotIn("rejected", a)
        self.assertEqual(len(self.sink.wait_one()), len(
            b'{"jsonrpc":"2.0","method":"E_I","params":{}}') + sum(
                len(b'"p%d":%d,' % (k, k)) for k in range(128)) - 1)

    def test_rejected_counter_matches_acks(self):
        #  evr_stats.h: ingest.rejected = "events refused one by one (name,
        #  params, size)"; it must add up to what the Acks reported.
        a = self.send(publish(b"prod-cnt", 1, 1, [
            pb_event("bad name"),
            pb_event("E_I", [("p%d" % k, k) for k in range(129)]),
            pb_event("E_I", [("big", "x" * 70000)])]))
        self.assertEqual(a["rejected"], 3)
        ingest = self.r.stats()["ingest"]
        self.assertEqual(ingest["rejected"], 3, ingest)

    def test_size_limit_applies_to_built_payloads(self):
        #  PROTOCOL §4.4: the limit is on each payload the relay builds for
        #  its subscribers (65000 bytes by default).
        a = self.send(publish(b"prod-big", 1, 1, [
            pb_event("E_NOBODY", [("big", "x" * 70000)])]))
        self.assertEqual((a["status"], a.get("rejected")), (OK, None))
        #  JSON escaping makes 20,000 bytes of \x01 a 120,000-byte payload
        a = self.send(publish(b"prod-big", 1, 2, [
            pb_event("E_I", [("c", "\x01" * 20000)]),
            pb_event("E_I", [("c", "\x01" * 10000)])]))
        self.assertEqual((a["status"], a["acked_through"], a["rejected"]),
                         (OK, 3, 1))
        got = self.sink.wait_one()
        self.assertEqual(len(got), len(b'{"jsonrpc":"2.0","method":"E_I",'
                                       b'"params":{"c":""}}') + 60000)
        self.assertEqual(self.r.stats()["ingest"]["too_large"], 1)

    def test_oversized_for_one_format_not_delivered_anywhere(self):
        #  PROTOCOL §4.4: "A failing event is rejected individually: it is
        #  not delivered". Too large as JSON-RPC (for the udp subscriber),
        #  small enough as a flatstore line: rejected, so the flatstore
        #  subscriber must not get it either.
        path = os.path.join(self.tempdir(), "f.log")
        self.r.subscribe("E_I", "flatstore:" + path)
        a = self.send(publish(b"prod-mix", 1, 1, [
            pb_event("E_I", [("c", "\x01" * 20000)]),
            pb_event("E_I", [("n", 1)])]))
        self.assertEqual((a["status"], a["rejected"]), (OK, 1))
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_I","params":{"n":1}}')
        data = evrtest.wait_file(path, min_len=1)
        self.assertEqual(data[:40], b"E_I,1\n", "%d bytes" % len(data))

    def test_sequence_upper_bound(self):
        #  PROTOCOL §4.1: first_seq + count - 1 must not exceed 2^64 - 1;
        #  a batch ending exactly there is valid, one past it is refused.
        top = 2 ** 64 - 1
        for pid, first, n, status in ((b"prod-top1", top, 2, REJECTED),
                                      (b"prod-top2", top, 1, OK),
                                      (b"prod-top3", top - 1, 2, OK)):
            a = self.send(publish(pid, 1, first, [
                pb_event("E_I", [("k", k)]) for k in range(n)]))
            self.assertEqual((a["first_seq"], a["count"], a["status"]),
                             (first, n, status), (first, n, a))
            if status == OK:
                #  a fresh stream: only the last `dedup_window` (262144)
                #  sequences below the highest can still be unreceived
                self.assertEqual(a["acked_through"], top - 262144)

    def test_bad_version_rejects_batch(self):
        frame = publish(b"prod-v", 5, 1, [pb_event("E_I", [("v", 2)])],
                        version=2)
        a = self.send(frame)
        self.assertEqual((a["version"], a["status"], a["producer_id"],
                          a["epoch"], a["first_seq"], a["count"],
                          a["acked_through"]),
                         (1, REJECTED, b"prod-v", 5, 1, 1, 0))
        self.assertIn("version", a["error"])
        self.sink.expect_none(0.3)
        self.assertEqual(self.r.stats()["ingest"]["bad_version"], 1)
        #  nothing recorded for de-duplication: version 1 resend delivers
        a = self.send(publish(b"prod-v", 5, 1, [pb_event("E_I", [("v", 1)])]))
        self.assertEqual((a["status"], a["acked_through"]), (OK, 1))
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_I","params":{"v":1}}')

    def test_bad_stream_fields_reject_batch_with_echo(self):
        #  PROTOCOL §4.5: empty or too long producer_id, first_seq 0:
        #  REJECTED, echoing producer_id, epoch, first_seq and count.
        ev = [pb_event("E_I", [("x", 1)])] * 2
        for pid, first in ((b"", 1), (b"p" * 65, 1), (b"prod-z", 0)):
            a = self.send(publish(pid, 9, first, ev))
            self.assertEqual(a["status"], REJECTED, (pid, first))
            self.assertEqual((a["producer_id"], a["epoch"], a["first_seq"],
                              a["count"], a["acked_through"]),
                             (pid, 9, first, 2, 0), (pid, first))
        self.sink.expect_none(0.3)

    def test_ingest_registers_new_events(self):
        a = self.send(publish(b"prod-new", 1, 1, [pb_event("E_BRAND_NEW")]))
        self.assertEqual(a["status"], OK)
        names = [e["name"] for e in self.r.ok("list")["Events"]]
        self.assertIn("E_BRAND_NEW", names)
        self.assertEqual(self.r.subscribers("E_BRAND_NEW"), {"Event": {}})
        self.assertEqual(self.r.stats()["ingest"]["no_subscribers"], 1)

    def test_envelope_echoed(self):
        a = self.send(publish(b"prod-env", 1, 1, [pb_event("E_I")]),
                      b"hop", b"")
        self.assertEqual((a["status"], a["acked_through"]), (OK, 1))
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_I"}')


class Stale(evrtest.RelayTestCase):

    def test_older_than_window(self):
        #  window 64: after seq 1000, 937..1000 are tracked; 2..936 were
        #  forgotten unseen (stale: delivered again, counted), while seq 1
        #  was provably seen (contiguous from the start): a duplicate.
        r = self.relay(config="[limits]\ndedup_window = 64\n")
        sink = self.udp_sink()
        r.subscribe("E_I", sink.spec)
        acks = []
        with evrtest.ZmtpDealer(r.ingest) as z:
            for first in (1, 1000, 500, 1):
                z.send(publish(b"prod-s", 1, first,
                               [pb_event("E_I", [("seq", first)])]))
                acks.append(evrtest.ack(z.recv()[-1]))
        self.assertEqual([a["status"] for a in acks], [OK] * 4)
        self.assertEqual([a["acked_through"] for a in acks],
                         [1, 936, 936, 936])
        self.assertEqual([a.get("duplicates", 0) for a in acks],
                         [0, 0, 0, 1])
        self.assertEqual(sink.wait(3), [
            b'{"jsonrpc":"2.0","method":"E_I","params":{"seq":%d}}' % s
            for s in (1, 1000, 500)])
        sink.expect_none(0.3)
        ingest = r.stats()["ingest"]
        self.assertEqual((ingest["stale"], ingest["duplicates"]), (1, 1))


if __name__ == "__main__":
    evrtest.main()
