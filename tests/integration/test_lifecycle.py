"""Process lifecycle: SIGTERM and SIGINT stop the relay quickly with exit
code 0 (also with undeliverable events queued), SIGHUP does not stop it,
and the ports are free again right after a stop.
"""

import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


class Stop(evrtest.RelayTestCase):

    def stop_quickly(self, relay, sig):
        start = time.monotonic()
        rc = relay.stop(sig, timeout=10)
        took = time.monotonic() - start
        self.assertEqual(rc, 0, relay.log())
        self.assertLess(took, 2.0)
        self.assertIn("stopping", relay.log())

    def test_sigterm(self):
        r = self.relay()
        r.subscribe("E_X", "udp:127.0.0.1:9")
        self.stop_quickly(r, signal.SIGTERM)

    def test_sigint(self):
        r = self.relay()
        self.stop_quickly(r, signal.SIGINT)

    def test_sigterm_right_after_start(self):
        r = evrtest.Relay()
        self.addCleanup(r.cleanup)
        r.start()
        self.stop_quickly(r, signal.SIGTERM)

    def test_stop_with_blocked_target(self):
        #  A unix listener that never reads: the target blocks on a full
        #  receive queue with events still queued. Stopping must not wait.
        d = self.tempdir()
        path = os.path.join(d, "stuck.sock")
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        stuck.bind(path)
        self.addCleanup(stuck.close)
        r = self.relay()
        r.subscribe("E_X", "unix:" + path)
        events = [evrtest.pb_event("E_X", [("pad", "x" * 1000)])
                  for _ in range(2000)]
        with evrtest.ZmtpDealer(r.ingest) as z:
            z.send(evrtest.publish(b"prod-stuck", 1, 1, events))
            self.assertEqual(evrtest.ack(z.recv()[-1])["acked_through"], 2000)
        t = evrtest.wait_until(
            lambda: (lambda t: t if t["queued"] > 0 and
                     t["delivered"] > 0 else None)(r.target("unix:" + path)),
            timeout=5, what="a blocked target")
        self.assertEqual(t["delivered"] + t["queued"] + t["dropped"], 2000)
        self.stop_quickly(r, signal.SIGTERM)

    def test_sighup_does_not_stop(self):
        r = self.relay()
        for _ in range(3):
            r.send_signal(signal.SIGHUP)
        evrtest.wait_until(lambda: r.log().count("SIGHUP") >= 1, timeout=5,
                           what="SIGHUP logged")
        self.assertTrue(r.alive())
        self.assertTrue(r.ok("list"))

    def test_ports_reusable_after_stop(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_X", sink.spec)
        self.assertEqual(r.stop(), 0)
        again = evrtest.Relay()
        again.ingest, again.control = r.ingest, r.control
        again.ingest_port, again.control_port = r.ingest_port, r.control_port
        self.addCleanup(again.cleanup)
        again.start()
        self.assertTrue(again.ok("list"))


if __name__ == "__main__":
    evrtest.main()
