"""The rabbitmq: transport against a real rabbitmq-server that this file
starts and stops itself (evrbroker.Broker: a private node on loopback).

What a subscriber of OpenSIPS's event_rabbitmq sees (reference §4.4), and
what evrelay adds: publisher confirms decide delivered/failed (an
unroutable message is a failure, #1510), queued events survive a broker
restart (#535), FAILOVER moves events off a dead or refusing broker,
subscriptions expire, the password never shows.

Messages are read back with tests/tools/evr_amqp_consume.c (Python's
standard library has no AMQP client).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
import evrbroker  # noqa: E402

CONSUME = os.path.join(evrtest.BUILD_DIR, "evr-amqp-consume")
BLAST = os.path.join(evrtest.BUILD_DIR, "evr-blast")

CONFIG = ("[rabbitmq]\nheartbeat = 2\n"
          "[relay]\nconnect_timeout_ms = 1000\n")

PASSWORD = "s3cret-Pw9"


def body(event, params):
    """The JSON-RPC notification the relay sends for named params."""
    return ('{"jsonrpc":"2.0","method":"%s","params":%s}'
            % (event, json.dumps(params, separators=(",", ":")))).encode()


class RabbitMQ(evrtest.RelayTestCase):
    """One broker for the whole class (it takes ~10 s to boot); a relay
    per test; a queue per test."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        evrtest.require_binaries(CONSUME, BLAST)
        cls.broker = evrbroker.Broker()
        try:
            cls.broker.start()
            cls.broker.add_vhost("evr")
            cls.broker.add_user("evruser", PASSWORD)
        except BaseException:
            cls.broker.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.broker.cleanup()
        finally:
            super().tearDownClass()

    # ---- helpers ------------------------------------------------------

    def amqp(self, command, *args, vhost="/", timeout=30):
        """Run evr-amqp-consume against the broker; return its stdout."""
        cmd = [CONSUME, command, "--port", str(self.broker.port),
               "--vhost", vhost] + [str(a) for a in args]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("%s: exit %d: %s" % (" ".join(cmd),
                                 p.returncode, p.stderr.decode()))
        return p.stdout.decode()

    def queue(self, name, exchange=None, key=None, vhost="/"):
        """Declare (and purge) a queue, bound to exchange with key."""
        args = ["--queue", name]
        if exchange:
            args += ["--exchange", exchange, "--key", key or name]
        self.amqp("setup", *args, vhost=vhost)

    def consume(self, name, count, timeout_ms=10000, vhost="/"):
        """Up to count messages from the queue, as dicts with body bytes."""
        out = self.amqp("consume", "--queue", name, "--count", count,
                        "--timeout-ms", timeout_ms, vhost=vhost,
                        timeout=timeout_ms / 1000.0 + 30)
        msgs = []
        for line in out.splitlines():
            m = json.loads(line)
            m["body"] = bytes.fromhex(m.pop("body_hex"))
            msgs.append(m)
        return msgs

    def spec(self, tail, port=None, creds=""):
        return "rabbitmq:%s127.0.0.1:%d/%s" % (
            creds, port or self.broker.port, tail)

    def wait_outcomes(self, relay, socket, n, timeout=20.0):
        """Wait until delivered + failed + dropped reaches n on the target
        (by canonical socket); return its stats entry."""
        def done():
            t = relay.target(socket)
            if t and t["delivered"] + t["failed"] + t["dropped"] >= n:
                return t
            return None
        return evrtest.wait_until(done, timeout,
                                  what="%d outcomes on %s" % (n, socket))

    def canonical(self, relay, event):
        """The one socket subscribed to event, as the relay prints it."""
        subs = relay.subscribers(event)
        return subs["Event"]["Subscribers"][0]["socket"]

    def blast(self, relay, event, n, rate=None, wait=True):
        cmd = [BLAST, "-e", relay.ingest, "-n", str(n), "-E", event,
               "-t", "30000"]
        if rate:
            cmd += ["-r", str(rate)]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not wait:
            return p
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err.decode())
        return json.loads(out)

    # ---- (1) what the consumer gets ----------------------------------

    def test_body_and_properties(self):
        self.queue("q_body")
        r = self.relay(config=CONFIG)
        r.subscribe("E_BODY", self.spec("q_body"))
        r.raise_event("E_BODY", {"ip": "192.168.2.11", "port": 5060})
        r.raise_event("E_BODY", {"ip": "10.0.0.1", "port": 5061})
        got = self.consume("q_body", 2)
        self.assertEqual([m["body"] for m in got],
                         [body("E_BODY", {"ip": "192.168.2.11",
                                          "port": 5060}),
                          body("E_BODY", {"ip": "10.0.0.1", "port": 5061})])
        for m in got:
            self.assertEqual(m["content_type"], "application/json")
            self.assertEqual(m["exchange"], "")
            self.assertEqual(m["routing_key"], "q_body")
            self.assertIsNone(m["delivery_mode"])
        #  message_id = the event id; control raises get relay-local ones
        ids = [m["message_id"] for m in got]
        self.assertEqual(len(set(ids)), 2, ids)
        for mid in ids:
            self.assertRegex(mid, r"^relay-\d+-\d+$")
        self.assertEqual(int(ids[1].rsplit("-", 1)[1]),
                         int(ids[0].rsplit("-", 1)[1]) + 1, ids)

    def test_persistent_sets_delivery_mode_2(self):
        self.queue("q_persist")
        r = self.relay(config=CONFIG)
        r.subscribe("E_P", self.spec("persistent?q_persist"))
        r.raise_event("E_P", {"n": 1})
        [m] = self.consume("q_persist", 1)
        self.assertEqual(m["delivery_mode"], 2)
        self.assertEqual(m["body"], body("E_P", {"n": 1}))

    def test_named_exchange_and_routing_key(self):
        self.queue("q_exch", exchange="evr.x", key="cdr.key")
        r = self.relay(config=CONFIG)
        r.subscribe("E_EX", self.spec("exchange=evr.x?cdr.key"))
        r.raise_event("E_EX", {"a": "b"})
        [m] = self.consume("q_exch", 1)
        self.assertEqual(m["exchange"], "evr.x")
        self.assertEqual(m["routing_key"], "cdr.key")
        self.assertEqual(m["body"], body("E_EX", {"a": "b"}))

    def test_vhost(self):
        self.queue("q_vhost", vhost="evr")
        r = self.relay(config=CONFIG)
        r.subscribe("E_VH", self.spec("vhost=evr;persistent?q_vhost"))
        r.raise_event("E_VH", {"v": 1})
        [m] = self.consume("q_vhost", 1, vhost="evr")
        self.assertEqual(m["body"], body("E_VH", {"v": 1}))
        self.assertEqual(m["delivery_mode"], 2)
        #  nothing went to the default vhost's queue of that name
        self.queue("q_vhost")
        self.assertEqual(self.consume("q_vhost", 1, timeout_ms=300), [])

    # ---- (2) publisher confirms ---------------------------------------

    def test_confirms_count_every_message(self):
        #  more than the 1024-publish confirm window, in order
        n = 3000
        self.queue("q_many")
        r = self.relay(config=CONFIG)
        r.subscribe("E_MANY", self.spec("q_many"))
        socket = self.canonical(r, "E_MANY")
        self.blast(r, "E_MANY", n)
        t = self.wait_outcomes(r, socket, n)
        self.assertEqual((t["delivered"], t["failed"], t["dropped"]),
                         (n, 0, 0))
        got = self.consume("q_many", n + 1, timeout_ms=5000)
        self.assertEqual(len(got), n)
        #  every event once; published (message numbers) in queue order
        #  (the raise order is libevrelay's business: it may resend)
        seqs = [json.loads(m["body"])["params"]["seq"] for m in got]
        self.assertEqual(sorted(seqs), list(range(1, n + 1)))
        #  message_id = the event id: producer (hex), epoch, seq
        for m in got:
            match = re.match(r"^([0-9a-f]{32})-(\d+)-(\d+)$", m["message_id"])
            self.assertIsNotNone(match, m["message_id"])
            self.assertEqual(int(match.group(3)),
                             json.loads(m["body"])["params"]["seq"])
        self.assertEqual(len({m["message_id"].rsplit("-", 1)[0]
                              for m in got}), 1)

    # ---- (3) what the broker refuses fails ---------------------------

    def test_unroutable_counts_failed(self):
        self.queue("q_routable")
        r = self.relay(config=CONFIG)
        r.subscribe("E_NR", self.spec("no.such.queue"))
        r.subscribe("E_NR", self.spec("q_routable"))
        for i in range(5):
            r.raise_event("E_NR", {"i": i})
        subs = r.subscribers("E_NR")["Event"]["Subscribers"]
        sockets = {s["socket"].rsplit("/", 1)[1]: s["socket"] for s in subs}
        bad = self.wait_outcomes(r, sockets["no.such.queue"], 5)
        good = self.wait_outcomes(r, sockets["q_routable"], 5)
        self.assertEqual((bad["delivered"], bad["failed"]), (0, 5))
        self.assertEqual((good["delivered"], good["failed"]), (5, 0))
        self.assertEqual(len(self.consume("q_routable", 5)), 5)
        self.assertIn("NO_ROUTE", r.log())

    def test_unknown_exchange_counts_failed_and_reconnects(self):
        #  the broker closes the channel (404): failed, reconnect, again
        r = self.relay(config=CONFIG)
        r.subscribe("E_NX", self.spec("exchange=no.such.exchange?k"))
        socket = self.canonical(r, "E_NX")
        for i in range(3):
            r.raise_event("E_NX", {"i": i})
        t = self.wait_outcomes(r, socket, 3)
        self.assertEqual((t["delivered"], t["failed"]), (0, 3))
        self.assertIn("NOT_FOUND", r.log())
        #  a later event gets a new connection (and fails the same way)
        r.raise_event("E_NX", {"i": 3})
        t = self.wait_outcomes(r, socket, 4)
        self.assertEqual((t["delivered"], t["failed"]), (0, 4))
        self.assertGreaterEqual(r.log().count(": connected"), 2)
        self.assertTrue(r.alive())

    # ---- (4) broker restart -------------------------------------------

    def test_broker_restart_mid_stream(self):
        #  a durable queue and persistent messages survive the restart
        self.amqp("setup", "--queue", "q_restart_d", "--durable", "1")
        r = self.relay(config=CONFIG)
        r.subscribe("E_RS", self.spec("persistent?q_restart_d"))
        socket = self.canonical(r, "E_RS")
        r.raise_event("E_RS", {"before": 1})
        self.wait_outcomes(r, socket, 1)
        n = 1500
        blaster = self.blast(r, "E_RS", n, rate=500, wait=False)
        try:
            time.sleep(1.0)
            self.broker.stop()
            time.sleep(0.5)
        finally:
            self.broker.start()
        out, err = blaster.communicate(timeout=60)
        self.assertEqual(blaster.returncode, 0, err.decode())
        t = self.wait_outcomes(r, socket, n + 1, timeout=40)
        if os.environ.get("EVR_TEST_VERBOSE"):
            print("\nrestart: %r\n%s" % (t, r.log()), file=sys.stderr)
        self.assertTrue(r.alive())
        self.assertEqual(t["delivered"] + t["failed"] + t["dropped"], n + 1)
        self.assertEqual(t["queued"], 0)
        self.assertGreater(t["delivered"], 1)
        self.assertIn("broker closed the connection", r.log())
        #  after the restart, new events arrive
        r.raise_event("E_RS", {"after": 1})
        self.wait_outcomes(r, socket, n + 2)
        got = self.consume("q_restart_d", n + 10, timeout_ms=5000)
        bodies = [m["body"] for m in got]
        self.assertIn(body("E_RS", {"after": 1}), bodies)
        #  everything confirmed is there (at-least-once: maybe more)
        t = r.target(socket)
        self.assertGreaterEqual(len(got), t["delivered"] - 1)
        self.assertLessEqual(len(got), n + 2)

    def test_blocked_broker_fails_by_confirm_timeout(self):
        #  a broker under a memory alarm stops reading publishes: the
        #  worker must not block on it (a udp target on the same worker
        #  keeps getting events), and unconfirmed events fail after 10 s
        self.queue("q_blocked")
        sink = self.udp_sink()
        r = self.relay(config=CONFIG, workers=1)
        r.subscribe("E_BL", self.spec("q_blocked"))
        r.subscribe("E_BL", sink.spec)
        socket = [s["socket"] for s in
                  r.subscribers("E_BL")["Event"]["Subscribers"]
                  if s["socket"].startswith("rabbitmq:")][0]
        r.raise_event("E_BL", {"n": 0})
        sink.wait_one()
        self.wait_outcomes(r, socket, 1)
        self.addCleanup(self.broker.ctl, "set_vm_memory_high_watermark",
                        "0.4")
        self.broker.ctl("set_vm_memory_high_watermark", "absolute", "1")
        for i in range(1, 6):
            r.raise_event("E_BL", {"n": i})
        self.assertEqual(len(sink.wait(5, timeout=3.0)), 5)
        t = self.wait_outcomes(r, socket, 6, timeout=20.0)
        self.assertEqual((t["delivered"], t["failed"]), (1, 5))
        self.assertIn("no publisher confirm", r.log())
        self.broker.ctl("set_vm_memory_high_watermark", "0.4")
        r.raise_event("E_BL", {"n": 6})
        t = self.wait_outcomes(r, socket, 7, timeout=20.0)
        self.assertEqual(t["delivered"], 2)

    def silent_broker(self):
        """A TCP port that takes connections (the kernel's backlog) and
        never answers: the AMQP handshake hangs until connect_timeout_ms."""
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        return lsock.getsockname()[1]

    def test_silent_broker_does_not_block_the_worker(self):
        #  the connect attempt runs on its own thread: a udp target on the
        #  same (only) worker gets each event at once, not after the 6 s
        #  the hanging handshake takes
        silent = self.silent_broker()
        sink = self.udp_sink()
        r = self.relay(config="[relay]\nconnect_timeout_ms = 6000\n",
                       workers=1)
        r.subscribe("E_SIL", self.spec("q_silent", port=silent))
        r.subscribe("E_SIL", sink.spec)
        for i in range(5):
            t0 = time.monotonic()
            r.raise_event("E_SIL", {"n": i})
            sink.wait_one(timeout=10.0)
            self.assertLess(time.monotonic() - t0, 2.5,
                            "event %d waited for the rabbitmq connect" % i)
        evrtest.wait_until(lambda: "login" in r.log() or
                           "timed out" in r.log(), timeout=20.0,
                           what="the failed attempt logged")

    def test_stop_during_a_hanging_connect(self):
        #  the relay stops at once, cleanly, while an attempt hangs on its
        #  own thread (the worker it would have blocked joins at once)
        silent = self.silent_broker()
        r = self.relay(config="[relay]\nconnect_timeout_ms = 20000\n",
                       workers=1)
        r.subscribe("E_HANG", self.spec("q_hang", port=silent))
        r.raise_event("E_HANG", {"n": 1})
        evrtest.wait_until(lambda: (r.target(self.canonical(r, "E_HANG"))
                                    or {}).get("queued") == 1,
                           what="the event waiting for the connection")
        t0 = time.monotonic()
        self.assertEqual(r.stop(), 0, r.log())
        self.assertLess(time.monotonic() - t0, 5.0)

    # ---- (5) FAILOVER --------------------------------------------------

    def failover_to_live(self, queue, first_port, n):
        """FAILOVER from a broker at first_port to the live one: every
        event delivered, none failed, each in the queue once."""
        self.queue(queue)
        r = self.relay(config=CONFIG)
        event = "E_" + queue.upper()
        r.subscribe(event, "virtual:FAILOVER %s %s" % (
            self.spec(queue, port=first_port), self.spec(queue)))
        socket = self.canonical(r, event)
        self.blast(r, event, n)
        t = self.wait_outcomes(r, socket, n)
        self.assertEqual((t["delivered"], t["failed"]), (n, 0))
        got = self.consume(queue, n + 1, timeout_ms=3000)
        self.assertEqual(len(got), n)

    def test_failover_dead_broker_to_live(self):
        self.failover_to_live("q_fo", evrtest.free_port(), 50)

    def test_failover_silent_broker_to_live(self):
        #  a child whose attempt is in progress holds its events until the
        #  attempt fails, then FAILOVER moves them on: none lost
        self.failover_to_live("q_fo_sil", self.silent_broker(), 20)

    def test_failover_unroutable_to_routable(self):
        #  OpenSIPS #1510: the first broker takes the connection but cannot
        #  route; confirms (not the hand-off) decide, so events move on
        self.queue("q_fo2")
        r = self.relay(config=CONFIG)
        spec = "virtual:FAILOVER %s %s" % (self.spec("no.such.queue"),
                                           self.spec("q_fo2"))
        r.subscribe("E_FO2", spec)
        socket = self.canonical(r, "E_FO2")
        for i in range(5):
            r.raise_event("E_FO2", {"i": i})
        t = self.wait_outcomes(r, socket, 5)
        self.assertEqual((t["delivered"], t["failed"]), (5, 0))
        self.assertEqual(len(self.consume("q_fo2", 6, timeout_ms=2000)), 5)

    # ---- (6) expiry ----------------------------------------------------

    def test_subscription_expires(self):
        #  OpenSIPS never expires rabbitmq subscribers; we do
        self.queue("q_exp")
        r = self.relay(config=CONFIG)
        r.subscribe("E_EXP", self.spec("q_exp"), 2)
        [sub] = r.subscribers("E_EXP")["Event"]["Subscribers"]
        self.assertEqual(sub["expire"], 2)
        r.raise_event("E_EXP", {"n": 1})
        self.assertEqual(len(self.consume("q_exp", 1)), 1)

        def gone():
            rc, data = r.ctl_json("subscribers", "E_EXP")
            if rc != 0:
                return True
            return not (data.get("Event") or {}).get("Subscribers")
        evrtest.wait_until(gone, 6.0, interval=0.2, what="expiry")
        rc, _, err = r.ctl("raise", "E_EXP", '{"n":2}')
        self.assertIn("no subscribers", err)
        self.assertEqual(self.consume("q_exp", 1, timeout_ms=700), [])

    # ---- (7) the password stays secret ---------------------------------

    def test_password_never_shown(self):
        self.queue("q_pw")
        r = self.relay(config=CONFIG)
        r.subscribe("E_PW", self.spec("q_pw", creds="evruser:%s@" % PASSWORD))
        #  (a socket differing only by password is the same subscriber,
        #  as in OpenSIPS: the wrong one gets its own routing key)
        wrong = self.spec("q_pw_wrong",
                          creds="evruser:wrong-%s@" % PASSWORD)
        r.subscribe("E_PW2", wrong)
        r.raise_event("E_PW", {"n": 1})
        r.raise_event("E_PW2", {"n": 2})
        [m] = self.consume("q_pw", 2, timeout_ms=3000)
        self.assertEqual(m["body"], body("E_PW", {"n": 1}))
        #  the wrong password: login refused, logged, events wait queued
        evrtest.wait_until(lambda: "ACCESS_REFUSED" in r.log(), 10.0,
                           what="the refused login in the log")
        shown = [r.ctl("subscribers", json=j)[1] for j in (True, False)]
        shown += [r.ctl("subscribers", "E_PW", json=j)[1]
                  for j in (True, False)]
        shown += [r.ctl("stats")[1], r.ctl("list")[1]]
        for text in shown + [r.log()]:
            self.assertNotIn(PASSWORD, text)
        self.assertIn("evruser@", shown[0])

    # ---- heartbeats ----------------------------------------------------

    def test_idle_connection_kept_by_heartbeats(self):
        #  heartbeat 1 s: a silent client is dropped by the broker after
        #  2 s; ours sends heartbeats while idle, so one connection lasts
        self.queue("q_hb")
        r = self.relay(config="[rabbitmq]\nheartbeat = 1\n")
        r.subscribe("E_HB", self.spec("q_hb"))
        r.raise_event("E_HB", {"n": 1})
        self.assertEqual(len(self.consume("q_hb", 1)), 1)
        time.sleep(3.5)
        r.raise_event("E_HB", {"n": 2})
        self.assertEqual(len(self.consume("q_hb", 1)), 1)
        log = r.log()
        self.assertEqual(log.count(": connected"), 1, log)


if __name__ == "__main__":
    if not evrbroker.available():
        sys.exit("rabbitmq-server is not installed: run scripts/install-deps.sh")
    unittest.main(verbosity=2)
