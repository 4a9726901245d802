"""Relay failure under load: no event lost when a relay dies.

3 relays, each subscribed to the same UDP sink (static --subscribe: there
is no cluster yet, every relay has the same subscription), and 2
producers (two evr-blast processes, each one libevrelay client connected
to all 3 relays) streaming 500,000 events each at a steady rate with the
DELIVERED ack point. One relay is killed with SIGKILL a third of the way
in and restarted on the same ports 2 s later; two thirds of the way in,
another one hangs (SIGSTOP) for 1.5 s, so that batches pile up in it
unacknowledged and are resent to the others, and is then killed with
SIGKILL and restarted as well.

The sink is evr-sink (C, recvmmsg, 8 MiB receive buffer, one bitmap per
producer), so that it keeps up. Checked: every (producer, seq) arrived at
least once, both producers report every event acked and nothing dropped,
failed or rejected (and every outcome callback ran). Duplicates are
expected (batches the dead relay delivered but could not ack are resent
to the others, and the restarted relay has forgotten what it saw); they
are counted and printed.

EVR_FAILURE_EVENTS (total, default 1000000) and EVR_FAILURE_RATE (events
per second per producer, default 12500) tune the run; it takes about
N / (2 * RATE) seconds plus setup.
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

BLAST = os.path.join(evrtest.BUILD_DIR, "evr-blast")
SINK = os.path.join(evrtest.BUILD_DIR, "evr-sink")
TOTAL = int(os.environ.get("EVR_FAILURE_EVENTS", "1000000"))
RATE = int(os.environ.get("EVR_FAILURE_RATE", "12500"))
PRODUCERS = 2
RELAYS = 3


class RelayFailure(evrtest.RelayTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        evrtest.require_binaries(BLAST, SINK)

    def start_sink(self, n):
        summary = os.path.join(self.tempdir(), "sink.json")
        sink = subprocess.Popen([SINK, "-n", str(n), "-P", str(PRODUCERS),
                                 "-o", summary, "-D", "50"],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE)
        self.addCleanup(self.stop_pid, sink)
        line = sink.stdout.readline().decode()
        sink.stdout.close()
        self.assertTrue(line.startswith("port "), line)
        return sink, int(line.split()[1]), summary

    def stop_pid(self, proc):
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def settled(self, relays):
        """Every relay idle: nothing queued, no DELIVERED batch pending."""
        def check():
            for r in relays:
                st = r.stats()
                if st["table"]["pending_batches"] or any(
                        t["queued"] for t in st["targets"]):
                    return False
            return True
        evrtest.wait_until(check, timeout=60, interval=0.2,
                           what="relays idle")

    def test_kill_one_of_three_relays_mid_stream(self):
        per = TOTAL // PRODUCERS
        sink, port, summary = self.start_sink(per)
        spec = "udp:127.0.0.1:%d" % port
        relays = [self.relay(args=["--subscribe", "E_BLAST=" + spec])
                  for _ in range(RELAYS)]
        endpoints = ",".join(r.ingest for r in relays)
        blasts = []
        for p in range(PRODUCERS):
            proc = subprocess.Popen(
                [BLAST, "-e", endpoints, "-n", str(per), "-I", str(p),
                 "-p", "32", "-r", str(RATE), "-a", "delivered", "-o",
                 "-t", str(int(per / RATE * 1000) + 120000)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            self.addCleanup(self.stop_pid, proc)
            blasts.append(proc)
        start = time.monotonic()
        stream_s = per / RATE

        #  a third of the way in: SIGKILL the second relay
        time.sleep(stream_s / 3)
        victim = relays[1]
        before = victim.stats()["ingest"]
        victim.kill()
        killed_at = time.monotonic() - start
        time.sleep(2.0)
        victim.restart()
        restarted_at = time.monotonic() - start

        #  two thirds of the way in: the third relay hangs, then dies
        time.sleep(max(0.0, start + 2 * stream_s / 3 - time.monotonic()))
        hung = relays[2]
        hung.send_signal(signal.SIGSTOP)
        hung_at = time.monotonic() - start
        time.sleep(1.5)
        hung.kill()
        time.sleep(1.0)
        hung.restart()

        results = []
        for proc in blasts:
            out, err = proc.communicate(timeout=stream_s + 150)
            try:
                res = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise AssertionError("evr-blast exit %d: %r %r"
                                     % (proc.returncode, out, err))
            self.assertEqual(proc.returncode, 0, (res, err))
            results.append(res)
        streamed_s = time.monotonic() - start
        self.settled(relays)
        time.sleep(0.5)
        sink.send_signal(signal.SIGTERM)
        sink.wait(30)
        with open(summary) as f:
            got = json.load(f)

        report = ["", "relay failure: %d producers x %d events at %d/s each "
                  "over %d relays; relay 2 killed (SIGKILL) at %.1f s after "
                  "%d batches, restarted at %.1f s; relay 3 stopped "
                  "(SIGSTOP) at %.1f s, killed 1.5 s later, restarted 1 s "
                  "after that; streams done at %.1f s"
                  % (PRODUCERS, per, RATE, RELAYS, killed_at,
                     before["batches"], restarted_at, hung_at, streamed_s)]
        for p, res in enumerate(results):
            report.append("producer %d: acked %d, resent %d, dropped %d, "
                          "failed %d, outcomes %r"
                          % (p, res["acked"], res["resent"], res["dropped"],
                             res["failed"], res["outcomes"]))
        total_dups = 0
        for pr in got["producers"]:
            total_dups += pr["duplicates"]
            report.append("sink, producer %d: %d unique, %d missing, %d "
                          "duplicates; first duplicated seqs %s; first "
                          "missing %s" % (pr["p"], pr["unique"],
                                          pr["missing"], pr["duplicates"],
                                          pr["duplicate_seqs"][:50],
                                          pr["missing_seqs"][:20]))
        report.append("sink: %d datagrams, %d junk; delivered %d, missing "
                      "%d, duplicates %d"
                      % (got["received"], got["junk"],
                         sum(pr["unique"] for pr in got["producers"]),
                         sum(pr["missing"] for pr in got["producers"]),
                         total_dups))
        for i, r in enumerate(relays):
            ing = r.stats()["ingest"]
            report.append("relay %d%s: batches %d, received %d, duplicates "
                          "%d, delivered_acks %d, held_back %d"
                          % (i + 1, " (restarted)" if r is not relays[0]
                             else "",
                             ing["batches"], ing["received"],
                             ing["duplicates"], ing["delivered_acks"],
                             ing["held_back"]))
        print("\n".join(report), file=sys.stderr)

        for res in results:
            self.assertTrue(res["flushed"], res)
            self.assertEqual((res["raised"], res["acked"], res["dropped"],
                              res["failed"], res["rejected"], res["queued"],
                              res["in_flight"]),
                             (per, per, 0, 0, 0, 0, 0), res)
            self.assertEqual(res["outcomes"],
                             dict(acked=per, failed=0, rejected=0,
                                  dropped=0, missing=0), res)
        self.assertEqual(got["junk"], 0)
        for pr in got["producers"]:
            self.assertEqual((pr["unique"], pr["missing"]), (per, 0),
                             "\n".join(report))


if __name__ == "__main__":
    evrtest.main()
