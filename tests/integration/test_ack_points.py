"""Ack points, per-event outcomes, fire-and-forget, back-pressure and event
ids, end to end: real relays, libevrelay through `evr-blast` (with its
outcome callbacks counted, -o), raw ZMTP frames for the exact Acks, and
real UDP, unix, tcp and flatstore subscribers.

- ACCEPTED (the default) answers at once, byte for byte as before the ack
  point existed; NONE is never answered and its client counts what it
  sent; DELIVERED answers once the deliveries are final, lists in
  Ack.failed what no subscriber took (also through PARALLEL and FAILOVER
  virtual subscribers), holds back a resend of a batch still in progress
  and names refused events in Ack.rejected_offsets;
- back-pressure: a producer whose relay is down loses nothing within its
  window and queue, and reports exactly what it dropped beyond them
  (client counters and DROPPED callbacks); fire-and-forget events wait
  in the queue while no relay is connected;
- event ids: evid: subscribers get "evrelay_id" as their first param
  (JSON-RPC object and array, flatstore), plain ones the same bytes as
  ever.

Needs evr-blast in $EVR_BUILD_DIR. Relay failure with 1M events is in
test_relay_failure.py.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
import test_tcp  # noqa: E402

BLAST = os.path.join(evrtest.BUILD_DIR, "evr-blast")
PID = bytes(range(16))
ID_RE = re.compile(r"^([0-9a-f]{32})-(\d+)-(\d+)$")


def blast(*args, timeout=120, check=True):
    """Run evr-blast; return its last JSON line (and assert exit 0)."""
    p = subprocess.run([BLAST] + [str(a) for a in args],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    try:
        out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError("evr-blast exit %d, stdout %r, stderr %r"
                             % (p.returncode, p.stdout, p.stderr))
    if check and p.returncode != 0:
        raise AssertionError("evr-blast exit %d: %r %r"
                             % (p.returncode, out, p.stderr))
    return out


def seq_of(datagram):
    return json.loads(datagram)["params"]["seq"]


def event(seq, name="E_ACK", pad="x"):
    return evrtest.pb_event(name, [("seq", seq), ("pad", pad)])


class AckPoints(evrtest.RelayTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        evrtest.require_binaries(BLAST)

    def counts(self, out):
        return {k: out[k] for k in ("raised", "sent", "acked", "failed",
                                    "rejected", "dropped", "queued",
                                    "in_flight")}

    # ---- ACCEPTED ------------------------------------------------------

    def test_accepted_ack_bytes_unchanged(self):
        """A Publish without ack_point gets the Ack it always got: the
        required fields in order, nothing else."""
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_ACK", sink.spec)
        with evrtest.ZmtpDealer(r.ingest) as d:
            d.send(evrtest.publish(PID, 7, 1, [event(1), event(2)]))
            [frame] = d.recv()
        expected = (evrtest.pb_field(1, 1) + evrtest.pb_field(2, PID) +
                    evrtest.pb_field(3, 7) + evrtest.pb_field(4, 1) +
                    evrtest.pb_field(5, 2) + evrtest.pb_field(6, 2) +
                    evrtest.pb_field(7, 0))
        self.assertEqual(frame, expected)
        self.assertEqual(sorted(seq_of(x) for x in sink.wait(2)), [1, 2])
        #  ACCEPTED given explicitly: the same answer
        with evrtest.ZmtpDealer(r.ingest) as d:
            d.send(evrtest.publish(PID, 8, 1, [event(1)],
                                   ack_point=evrtest.ACK_ACCEPTED))
            a = evrtest.ack(d.recv()[0])
        self.assertEqual((a["status"], a["count"], a["acked_through"]),
                         (0, 1, 1))
        self.assertNotIn("failed", a)

    def test_accepted_through_libevrelay(self):
        r = self.relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        out = blast("-e", r.ingest, "-n", 5000, "-a", "accepted", "-o")
        self.assertEqual(self.counts(out),
                         dict(raised=5000, sent=5000, acked=5000, failed=0,
                              rejected=0, dropped=0, queued=0, in_flight=0))
        self.assertEqual(out["outcomes"], dict(acked=5000, failed=0,
                                               rejected=0, dropped=0,
                                               missing=0))
        self.assertEqual(sorted(seq_of(x) for x in sink.wait(5000,
                                                             timeout=60)),
                         list(range(1, 5001)))

    def test_rejected_offsets_and_callbacks(self):
        """Events the relay refuses one by one are named in
        Ack.rejected_offsets, and libevrelay reports exactly those as
        REJECTED (ACCEPTED and DELIVERED)."""
        r = self.relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        bad = evrtest.pb_event("BAD NAME", [])
        for point in (None, evrtest.ACK_DELIVERED):
            with evrtest.ZmtpDealer(r.ingest) as d:
                d.send(evrtest.publish(PID, 20 + (point or 0), 1,
                                       [event(1), bad, event(3), bad],
                                       ack_point=point))
                a = evrtest.ack(d.recv()[0])
            self.assertEqual((a["status"], a["rejected"],
                              a["rejected_offsets"]), (0, 2, [1, 3]), a)
            self.assertNotIn("failed", a)
        for point in ("accepted", "delivered"):
            out = blast("-e", r.ingest, "-n", 1000, "-a", point, "-o",
                        "-X", 10)
            self.assertEqual((out["acked"], out["rejected"], out["dropped"]),
                             (900, 100, 0), out)
            self.assertEqual(out["outcomes"], dict(acked=900, failed=0,
                                                   rejected=100, dropped=0,
                                                   missing=0))

    # ---- NONE ----------------------------------------------------------

    def test_none_is_never_answered(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_ACK", sink.spec)
        with evrtest.ZmtpDealer(r.ingest) as d:
            d.send(evrtest.publish(PID, 9, 1, [event(1)],
                                   ack_point=evrtest.ACK_NONE))
            d.expect_silence(0.5)
            #  a batch refused as a whole is still answered
            d.send(evrtest.publish(PID, 9, 0, [event(1)],
                                   ack_point=evrtest.ACK_NONE))
            self.assertEqual(evrtest.ack(d.recv()[0])["status"], 1)
        self.assertEqual(seq_of(sink.wait_one()), 1)
        ingest = r.stats()["ingest"]
        self.assertEqual((ingest["unacked"], ingest["batches"]), (1, 1))

    def test_none_fire_and_forget(self):
        r = self.relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        out = blast("-e", r.ingest, "-n", 20000, "-a", "none", "-o")
        self.assertEqual(self.counts(out),
                         dict(raised=20000, sent=20000, acked=0, failed=0,
                              rejected=0, dropped=0, queued=0, in_flight=0))
        self.assertEqual(out["resent"], 0)
        self.assertEqual(out["outcomes"]["acked"], 20000)
        self.assertEqual(sorted(seq_of(x) for x in sink.wait(20000,
                                                             timeout=60)),
                         list(range(1, 20001)))
        self.assertEqual(r.stats()["ingest"]["unacked"],
                         r.stats()["ingest"]["batches"])

    def test_none_waits_in_the_queue_for_a_relay(self):
        """No relay yet: fire-and-forget events wait in the client's
        bounded queue (the oldest dropped and counted when it is full),
        and go out once a relay is there; nothing is kept or resent after
        that."""
        sink = self.unix_sink()
        r = evrtest.Relay(args=["--subscribe", "E_BLAST=" + sink.spec])
        self.addCleanup(r.cleanup)
        p = subprocess.Popen([BLAST, "-e", r.ingest, "-n", "3000", "-q",
                              "1000", "-a", "none", "-o", "-L", "-t",
                              "60000"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            phase = json.loads(p.stdout.readline())
            self.assertEqual((phase["queued"], phase["dropped"],
                              phase["sent"]), (1000, 2000, 0), phase)
            r.start()
            out_text, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = json.loads(out_text.decode().strip().splitlines()[-1])
        self.assertEqual(p.returncode, 0, (out, err))
        self.assertEqual(self.counts(out),
                         dict(raised=3000, sent=1000, acked=0, failed=0,
                              rejected=0, dropped=2000, queued=0,
                              in_flight=0))
        self.assertEqual(out["outcomes"], dict(acked=1000, failed=0,
                                               rejected=0, dropped=2000,
                                               missing=0))
        self.assertEqual(sorted(seq_of(x) for x in sink.wait(1000)),
                         list(range(2001, 3001)))

    # ---- DELIVERED -----------------------------------------------------

    def delivered(self, r, n=2000):
        return blast("-e", r.ingest, "-n", n, "-a", "delivered", "-o")

    def test_delivered_ok(self):
        r = self.relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        out = self.delivered(r, 20000)
        self.assertEqual(self.counts(out),
                         dict(raised=20000, sent=20000, acked=20000, failed=0,
                              rejected=0, dropped=0, queued=0, in_flight=0))
        self.assertEqual(out["outcomes"]["acked"], 20000)
        #  every event had reached the sink's socket before its ack
        self.assertEqual(len(sink.wait(20000, timeout=60)), 20000)
        st = r.stats()
        self.assertEqual(st["ingest"]["delivered_acks"],
                         st["ingest"]["delivered_batches"])
        self.assertEqual(st["ingest"]["failed_events"], 0)
        self.assertEqual(st["table"]["pending_batches"], 0)

    def test_delivered_no_subscriber_is_acked(self):
        r = self.relay()
        out = self.delivered(r)
        self.assertEqual((out["acked"], out["failed"]), (2000, 0))

    def test_delivered_dead_backend_fails(self):
        """A subscriber that cannot take anything: DELIVERED reports every
        event FAILED (ACCEPTED would have said ACKED)."""
        r = self.relay()
        dead = "unix:%s/nobody.sock" % self.tempdir()
        r.subscribe("E_BLAST", dead)
        out = self.delivered(r)
        self.assertEqual(self.counts(out),
                         dict(raised=2000, sent=2000, acked=0, failed=2000,
                              rejected=0, dropped=0, queued=0, in_flight=0))
        self.assertEqual(out["outcomes"], dict(acked=0, failed=2000,
                                               rejected=0, dropped=0,
                                               missing=0))
        self.assertEqual(r.stats()["ingest"]["failed_events"], 2000)
        self.assertEqual(r.target(dead)["failed"], 2000)
        out = blast("-e", r.ingest, "-n", 2000, "-a", "accepted", "-o")
        self.assertEqual((out["acked"], out["failed"]), (2000, 0))

    def test_delivered_one_of_two_subscribers_is_enough(self):
        r = self.relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        r.subscribe("E_BLAST", "unix:%s/nobody.sock" % self.tempdir())
        out = self.delivered(r)
        self.assertEqual((out["acked"], out["failed"]), (2000, 0))

    def test_delivered_through_virtual(self):
        """PARALLEL copies and FAILOVER re-routes are followed to their
        final outcome: one working child is enough, none fails."""
        dead = "unix:%s/nobody.sock" % self.tempdir()
        dead2 = "unix:%s/nobody2.sock" % self.tempdir()
        for policy, live in (("PARALLEL", True), ("FAILOVER", True),
                             ("ROUND-ROBIN", True), ("PARALLEL", False),
                             ("FAILOVER", False)):
            with self.subTest(policy=policy, live=live):
                r = self.relay()
                sink = self.unix_sink(name="%s%d.sock" % (policy, live))
                spec = "virtual:%s %s %s" % (policy, dead,
                                             sink.spec if live else dead2)
                r.subscribe("E_BLAST", spec)
                out = self.delivered(r, 3000)
                if live:
                    self.assertEqual((out["acked"], out["failed"]), (3000, 0),
                                     out)
                    got = sink.wait(3000, timeout=60)
                    self.assertEqual(sorted(seq_of(x) for x in got),
                                     list(range(1, 3001)))
                else:
                    self.assertEqual((out["acked"], out["failed"]), (0, 3000),
                                     out)
                self.assertEqual(r.stats()["table"]["pending_batches"], 0)
                r.stop()

    def reliable_tcp_relay(self, peer):
        r = self.relay(config="[tcp]\nreliable_mode = 1\ntimeout = 30000\n")
        r.subscribe("E_ACK", peer.spec())
        return r

    def test_delivered_waits_for_the_backend(self):
        """The Ack waits for the JSON-RPC replies; a resend of the batch
        while it is in progress is not answered (held back); once the
        replies come, the original's Ack goes out, and a later resend
        is answered as duplicates at once."""
        peer = test_tcp.JsonRpcPeer(answer="ok").start()
        self.addCleanup(peer.stop, False)
        r = self.reliable_tcp_relay(peer)
        pub = evrtest.publish(PID, 30, 1, [event(1), event(2)],
                              ack_point=evrtest.ACK_DELIVERED)
        peer.pause()
        with evrtest.ZmtpDealer(r.ingest) as d:
            d.send(pub)
            d.expect_silence(0.7)
            self.assertEqual(r.stats()["table"]["pending_batches"], 1)
            d.send(pub)  # a resend while the first is in progress
            d.expect_silence(0.5)
            ingest = r.stats()["ingest"]
            self.assertEqual((ingest["held_back"], ingest["duplicates"]),
                             (1, 2), ingest)
            peer.resume()
            a = evrtest.ack(d.recv(10)[0])
            self.assertEqual((a["status"], a["first_seq"], a["count"],
                              a["acked_through"]), (0, 1, 2, 2), a)
            self.assertNotIn("failed", a)
            self.assertNotIn("duplicates", a)
            d.expect_silence(0.5)  # one Ack for the two sends
            d.send(pub)
            a = evrtest.ack(d.recv()[0])
            self.assertEqual((a["count"], a["duplicates"],
                              a["acked_through"]), (2, 2, 2), a)
        self.assertEqual(r.stats()["table"]["pending_batches"], 0)

    def test_delivered_failed_offsets(self):
        """Ack.failed names exactly the events whose delivery failed."""
        peer = test_tcp.JsonRpcPeer(answer="ok").start()
        self.addCleanup(peer.stop, False)
        r = self.reliable_tcp_relay(peer)
        with evrtest.ZmtpDealer(r.ingest) as d:
            d.send(evrtest.publish(PID, 31, 1, [event(1)],
                                   ack_point=evrtest.ACK_DELIVERED))
            self.assertNotIn("failed", evrtest.ack(d.recv(10)[0]))
            peer.answer = "error"
            d.send(evrtest.publish(PID, 31, 2, [event(2), event(3)],
                                   ack_point=evrtest.ACK_DELIVERED))
            a = evrtest.ack(d.recv(10)[0])
            self.assertEqual((a["first_seq"], a["failed"]), (2, [0, 1]), a)
            #  acked_through: every seq received and final here
            self.assertEqual(a["acked_through"], 3)
        self.assertEqual(r.stats()["ingest"]["failed_events"], 2)

    def test_stopping_with_batches_in_progress(self):
        """A relay stopped while DELIVERED batches are in progress answers
        nothing for them and still exits cleanly."""
        peer = test_tcp.JsonRpcPeer(answer="ok").start()
        self.addCleanup(peer.stop, False)
        r = self.reliable_tcp_relay(peer)
        peer.pause()
        with evrtest.ZmtpDealer(r.ingest) as d:
            for i in range(5):
                d.send(evrtest.publish(PID, 32, 1 + 2 * i,
                                       [event(1 + 2 * i), event(2 + 2 * i)],
                                       ack_point=evrtest.ACK_DELIVERED))
            evrtest.wait_until(
                lambda: r.stats()["table"]["pending_batches"] == 5,
                what="5 batches in progress")
            self.assertEqual(r.stop(), 0)
            try:
                d.expect_silence(0.3)
            except ConnectionError:
                pass  # closed without an answer: just as good
        peer.resume()

    # ---- back-pressure -------------------------------------------------

    def test_relay_down_within_window_loses_nothing(self):
        """The relay stops while a producer streams; everything raised
        meanwhile waits in the window and queue, and arrives once the
        relay is back. Duplicates are possible, losses are not."""
        sink = self.unix_sink()
        r = self.relay(args=["--subscribe", "E_BLAST=" + sink.spec])
        n = 30000
        p = subprocess.Popen([BLAST, "-e", r.ingest, "-n", str(n), "-r",
                              "15000", "-a", "delivered", "-o", "-L",
                              "-t", "60000"],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            evrtest.wait_until(lambda: sink.count() >= 3000, timeout=20,
                               what="the stream started")
            self.assertEqual(r.stop(), 0)
            phase = json.loads(p.stdout.readline())
            self.assertEqual(phase["phase"], "raised")
            self.assertEqual(phase["dropped"], 0, phase)
            self.assertGreater(phase["queued"] + phase["in_flight"], 0, phase)
            time.sleep(1.0)  # down for a while longer
            r.restart()
            out_text, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = json.loads(out_text.decode().strip().splitlines()[-1])
        self.assertEqual(p.returncode, 0, (out, err))
        self.assertEqual(self.counts(out),
                         dict(raised=n, sent=n, acked=n, failed=0,
                              rejected=0, dropped=0, queued=0, in_flight=0))
        self.assertEqual(out["outcomes"]["acked"], n)
        #  acked = delivered: all of it is in the sink's socket by now
        evrtest.wait_until(lambda: len({seq_of(x) for x in sink.items()})
                           == n, timeout=10, what="every seq at the sink")
        got = [seq_of(x) for x in sink.items()]
        self.assertEqual(sorted(set(got)), list(range(1, n + 1)))
        print("\nrelay down mid-stream: %d delivered, %d duplicates, "
              "%d resent" % (len(got), len(got) - n, out["resent"]),
              file=sys.stderr)

    def test_beyond_queue_and_window_reports_drops(self):
        """No relay at all while raising: the client keeps its window and
        queue, drops the rest, and says exactly how many; once a relay
        comes up, what it kept is delivered."""
        sink = self.unix_sink()
        r = evrtest.Relay(args=["--subscribe", "E_BLAST=" + sink.spec])
        self.addCleanup(r.cleanup)
        n, queue, window = 10000, 1000, 2000
        p = subprocess.Popen([BLAST, "-e", r.ingest, "-n", str(n),
                              "-q", str(queue), "-w", str(window),
                              "-a", "delivered", "-o", "-L", "-t", "60000"],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            phase = json.loads(p.stdout.readline())
            self.assertEqual(phase["phase"], "raised")
            #  the window fills, the queue fills, the oldest queued drop
            time.sleep(0.5)
            r.start()
            out_text, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = json.loads(out_text.decode().strip().splitlines()[-1])
        self.assertEqual(p.returncode, 0, (out, err))
        #  kept: what the window took (whole batches, at most `window`)
        #  and the queue's newest `queue`; the rest was dropped
        kept = out["acked"]
        self.assertGreaterEqual(kept, queue)
        self.assertLessEqual(kept, queue + window)
        self.assertEqual(self.counts(out),
                         dict(raised=n, sent=kept, acked=kept, failed=0,
                              rejected=0, dropped=n - kept, queued=0,
                              in_flight=0))
        self.assertEqual(out["outcomes"], dict(acked=kept, failed=0,
                                               rejected=0, dropped=n - kept,
                                               missing=0))
        got = [seq_of(x) for x in sink.drain(kept, timeout=20)]
        self.assertEqual(len(got), kept)
        self.assertEqual(len(set(got)), kept)
        self.assertLessEqual(set(range(n - queue + 1, n + 1)), set(got))
        print("\nno relay: %d raised, %d kept (window %d, queue %d), %d "
              "dropped and reported" % (n, kept, window, queue, n - kept),
              file=sys.stderr)

    # ---- event ids -----------------------------------------------------

    def test_event_ids_in_payloads(self):
        r = self.relay(config="[flatstore]\ndelimiter = |\n")
        plain, evid, child = self.udp_sink(), self.udp_sink(), self.udp_sink()
        flat = os.path.join(self.tempdir(), "ids.log")
        r.subscribe("E_BLAST", plain.spec)
        r.subscribe("E_BLAST", "evid:" + evid.spec)
        r.subscribe("E_BLAST", "virtual:PARALLEL evid:%s %s"
                    % (child.spec, "unix:%s/x.sock" % self.tempdir()))
        r.subscribe("E_BLAST", "evid:flatstore:" + flat)
        subs = r.subscribers("E_BLAST")["Event"]["Subscribers"]
        self.assertIn("evid:" + evid.spec, [s["socket"] for s in subs])
        blast("-e", r.ingest, "-n", 3, "-p", 4)
        got = sorted(plain.wait(3), key=seq_of)
        self.assertEqual(got[0], b'{"jsonrpc":"2.0","method":"E_BLAST",'
                         b'"params":{"seq":1,"pad":"xxxx"}}')
        ids = []
        for sink in (evid, child):
            by_seq = sorted(sink.wait(3), key=seq_of)
            for seq, d in enumerate(by_seq, 1):
                m = re.match(rb'^\{"jsonrpc":"2\.0","method":"E_BLAST",'
                             rb'"params":\{"evrelay_id":"([^"]+)",'
                             rb'"seq":(\d+),"pad":"xxxx"\}\}$', d)
                self.assertIsNotNone(m, d)
                eid = m.group(1).decode()
                self.assertEqual(int(ID_RE.match(eid).group(3)), seq)
                ids.append(eid)
        #  one producer, one epoch; the same ids to both subscribers
        self.assertEqual(len({i.rsplit("-", 1)[0] for i in ids}), 1)
        self.assertEqual(ids[:3], ids[3:])
        evrtest.wait_until(
            lambda: len(evrtest.read_bytes(flat).splitlines()) == 3,
            what="3 flatstore lines")
        lines = evrtest.read_bytes(flat).decode().splitlines()
        self.assertEqual(sorted(lines),
                         sorted("E_BLAST|%s|%d|xxxx" % (ids[i], i + 1)
                                for i in range(3)))
        #  positional params: the id is the first element; control
        #  raises carry relay-<boot us>-<n>
        r.raise_event("E_BLAST", ["a", "b"])
        d = evid.wait_one()
        self.assertRegex(d, rb'^\{"jsonrpc":"2\.0","method":"E_BLAST",'
                         rb'"params":\["relay-\d+-\d+","a","b"\]\}$')
        self.assertEqual(plain.wait_one(), b'{"jsonrpc":"2.0","method":'
                         b'"E_BLAST","params":["a","b"]}')
        r.raise_event("E_BLAST")
        self.assertRegex(evid.wait_one(), rb'^\{"jsonrpc":"2\.0","method":'
                         rb'"E_BLAST","params":\{"evrelay_id":'
                         rb'"relay-\d+-\d+"\}\}$')
        self.assertEqual(plain.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_BLAST"}')

    def test_evid_errors(self):
        r = self.relay()
        e = r.err("subscribe", "E_X", "evid:virtual:PARALLEL udp:1.2.3.4:5")
        self.assertEqual(e["code"], 400)
        self.assertIn("cannot wrap a virtual socket", e.get("data", ""))


if __name__ == "__main__":
    evrtest.main()
