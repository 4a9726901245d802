"""CURVE on every ZeroMQ socket, against real evrelayd processes: keygen,
allowed keys working, unauthenticated, wrong-key, wrong-server-key and
revoked clients refused and counted on ingest, control and the cluster,
and the zmq backend connecting to a CURVE subscriber.

Clients are evrelayctl, evr-blast (libevrelay) and pyzmq (Debian's
python3-zmq, which reads czmq's certificate files); when the python3 that
runs this file has no zmq, it re-runs itself under /usr/bin/python3.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

zmq = evrtest.import_system_module("zmq")
import zmq.auth  # noqa: E402
from evrtest import Relay, free_port, wait_until  # noqa: E402

PID = b"security-test-producer"


def keygen(directory, name, endpoint=None):
    """evrelayctl keygen; returns (public file, secret file)."""
    cmd = [evrtest.EVRELAYCTL, "keygen", name, directory]
    if endpoint:
        cmd.append(endpoint)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    if p.returncode != 0:
        raise AssertionError("keygen %s: %r" % (name, p.stderr))
    base = os.path.join(directory, name + ".cert")
    return base, base + "_secret"


class Keys:
    """A key store for one test: the relay's pair, client pairs, and the
    allow directories the relay reads."""

    def __init__(self, root):
        self.root = root
        self.mine = os.path.join(root, "pairs")
        os.mkdir(self.mine)
        self.dirs = {}
        for d in ("producers", "operators", "peers", "backends"):
            self.dirs[d] = os.path.join(root, d)
            os.mkdir(self.dirs[d])
        self.relay_pub, self.relay_secret = self.pair("relay")

    def pair(self, name, endpoint=None):
        return keygen(self.mine, name, endpoint)

    def allow(self, where, name):
        shutil.copy(os.path.join(self.mine, name + ".cert"),
                    os.path.join(self.dirs[where], name + ".cert"))

    def revoke(self, where, name):
        os.unlink(os.path.join(self.dirs[where], name + ".cert"))

    def args(self, secret=None):
        return ["--cert", secret or self.relay_secret,
                "--producers", self.dirs["producers"],
                "--operators", self.dirs["operators"],
                "--peer-keys", self.dirs["peers"],
                "--backend-keys", self.dirs["backends"]]

    def ctl_args(self, name):
        return ["--cert", os.path.join(self.mine, name + ".cert_secret"),
                "--server-key", self.relay_pub]


def curve_socket(ctx, kind, keys, name, server_pub):
    """A pyzmq socket presenting keys' pair `name` to a server."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if name is not None:
        pub, secret = zmq.auth.load_certificate(
            os.path.join(keys.mine, name + ".cert_secret"))
        sock.curve_publickey = pub
        sock.curve_secretkey = secret
        sock.curve_serverkey = server_pub
    return sock


def one_event(seq, value="x"):
    return evrtest.publish(PID, 7, seq, [evrtest.pb_event(
        "E_SEC", [("v", value)])])


class Security(evrtest.RelayTestCase):

    def setUp(self):
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.destroy, 0)
        root = tempfile.mkdtemp(prefix="evr-keys-")
        self.addCleanup(shutil.rmtree, root, True)
        self.keys = Keys(root)
        self.relay_pub = zmq.auth.load_certificate(self.keys.relay_pub)[0]

    def secure_relay(self, operator="alice", **kwargs):
        if not os.path.exists(os.path.join(self.keys.mine,
                                           operator + ".cert")):
            self.keys.pair(operator)
        self.keys.allow("operators", operator)
        return self.relay(args=self.keys.args(),
                          ctl_args=self.keys.ctl_args(operator), **kwargs)

    def security(self, relay, socket):
        return relay.stats()["security"][socket]

    def exchange(self, sock, frame, timeout=3.0):
        """Send one frame, return the answer or None after timeout."""
        sock.send(frame)
        if sock.poll(int(timeout * 1000)):
            return sock.recv()
        return None

    # ---- keygen ------------------------------------------------------------

    def test_keygen_files_and_modes(self):
        pub, secret = self.keys.pair("relay1", "tcp://10.0.0.1:7960")
        self.assertEqual(os.stat(pub).st_mode & 0o777, 0o644)
        self.assertEqual(os.stat(secret).st_mode & 0o777, 0o600)
        text = open(pub).read()
        self.assertIn('name = "relay1"', text)
        self.assertIn('endpoint = "tcp://10.0.0.1:7960"', text)
        self.assertNotIn("secret-key", text)
        self.assertIn("secret-key", open(secret).read())
        p = subprocess.run([evrtest.EVRELAYCTL, "keygen", "relay1",
                            self.keys.mine], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"refusing to overwrite", p.stderr)

    def test_startup_errors(self):
        """No plain socket beyond loopback without --insecure; CURVE
        without a key directory, or with a bad certificate, is refused."""
        def run(*args):
            p = subprocess.run(
                [evrtest.EVRELAYD, "--control",
                 "tcp://127.0.0.1:%d" % free_port()] + list(args),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, timeout=20)
            return p.returncode, p.stdout.decode()
        rc, out = run("--ingest", "tcp://0.0.0.0:%d" % free_port())
        self.assertEqual(rc, 1, out)
        self.assertIn("is beyond loopback and no certificate is set", out)
        self.assertIn("--insecure", out)
        loop = "tcp://127.0.0.1:%d" % free_port()
        rc, out = run("--ingest", loop, "--cert", self.keys.relay_secret)
        self.assertEqual(rc, 1, out)
        self.assertIn("[security] producers names no key directory", out)
        public_only = os.path.join(self.keys.root, "public-only.cert")
        shutil.copy(self.keys.relay_pub, public_only)
        rc, out = run("--ingest", loop, "--cert", public_only,
                      "--producers", self.keys.dirs["producers"])
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot load the secret certificate", out)
        rc, out = run("--ingest", loop, "--cert", self.keys.relay_secret,
                      "--producers", "/nonexistent/keys")
        self.assertEqual(rc, 1, out)
        self.assertIn("cannot read key directory /nonexistent/keys", out)

    # ---- control -------------------------------------------------------------

    def test_control(self):
        r = self.secure_relay()
        self.assertEqual(r.ok("list")["Events"][0]["id"], 0)  # alice works
        # plain evrelayctl: no answer (handshake refused)
        rc, _, err = self._as(r, None).ctl("list", timeout_ms=700)
        self.assertEqual(rc, 3, err)
        self.assertIn("the relay requires CURVE", err)
        # bob: a key the relay does not list
        self.keys.pair("bob")
        rc, _, err = self._as(r, "bob").ctl("list", timeout_ms=700)
        self.assertEqual(rc, 3, err)
        self.assertIn("the relay refused this certificate", err)
        # alice with the wrong server key
        wrong = self._as(r, "alice")
        wrong.ctl_args[-1] = self.keys.pair("other")[0]
        rc, _, err = wrong.ctl("list", timeout_ms=700)
        self.assertEqual(rc, 3, err)
        self.assertIn("wrong --server-key", err)
        sec = self.security(r, "control")
        self.assertEqual(sec["keys"], 1)
        self.assertGreaterEqual(sec["denied"], 1)
        self.assertGreaterEqual(sec["handshake_failed"], 2)  # plain + wrong
        self.assertIn("security: control refused 127.0.0.1", r.log())

    def _as(self, relay, name):
        """A view of relay whose evrelayctl presents `name`'s pair (None:
        a plain client)."""
        clone = object.__new__(Relay)
        clone.__dict__.update(relay.__dict__)
        clone.ctl_args = self.keys.ctl_args(name) if name else []
        return clone

    def test_control_revoked(self):
        """A connected operator whose certificate is deleted: new
        connections are refused, and its open connection gets 403."""
        self.keys.pair("root")
        self.keys.allow("operators", "root")
        r = self.secure_relay()
        root = self._as(r, "root")
        d = curve_socket(self.ctx, zmq.DEALER, self.keys, "alice",
                         self.relay_pub)
        d.connect(r.control)
        rep = evrtest.control_reply(self.exchange(
            d, evrtest.control_request("list", req_id=5)))
        self.assertNotIn("error", rep)
        self.keys.revoke("operators", "alice")
        wait_until(lambda: self.security(root, "control")["keys"] == 1,
                   what="reload", timeout=5)
        rep = evrtest.control_reply(self.exchange(
            d, evrtest.control_request("list", req_id=6)))
        self.assertEqual(rep["id"], 6)
        self.assertEqual(rep["error"]["code"], 403)
        self.assertIn("revoked", rep["error"]["data"])
        rc, _, _ = r.ctl("list", timeout_ms=700)
        self.assertEqual(rc, 3)  # a new connection with alice's key
        self.assertEqual(self.security(root, "control")["revoked"], 1)

    # ---- ingest ----------------------------------------------------------------

    def test_ingest(self):
        r = self.secure_relay()
        sink = self.udp_sink()
        r.subscribe("E_SEC", sink.spec)
        self.keys.pair("producer")
        self.keys.pair("stranger")
        self.keys.allow("producers", "producer")
        wait_until(lambda: self.security(r, "ingest")["keys"] == 1,
                   what="reload", timeout=5)
        good = curve_socket(self.ctx, zmq.DEALER, self.keys, "producer",
                            self.relay_pub)
        good.connect(r.ingest)
        a = evrtest.ack(self.exchange(good, one_event(1, "ok")))
        self.assertEqual((a["status"], a["acked_through"]), (0, 1))
        self.assertEqual(len(sink.wait(1)), 1)
        # unauthenticated, unknown key, wrong server key: never answered
        plain = self.ctx.socket(zmq.DEALER)
        plain.linger = 0
        plain.connect(r.ingest)
        self.assertIsNone(self.exchange(plain, one_event(2), 1.0))
        stranger = curve_socket(self.ctx, zmq.DEALER, self.keys, "stranger",
                                self.relay_pub)
        stranger.connect(r.ingest)
        self.assertIsNone(self.exchange(stranger, one_event(3), 1.0))
        wrong = curve_socket(self.ctx, zmq.DEALER, self.keys, "producer",
                             zmq.auth.load_certificate(
                                 self.keys.pair("fake")[0])[0])
        wrong.connect(r.ingest)
        self.assertIsNone(self.exchange(wrong, one_event(4), 1.0))
        sec = self.security(r, "ingest")
        self.assertEqual(sec["allowed"], 1)
        self.assertGreaterEqual(sec["denied"], 1)
        self.assertGreaterEqual(sec["handshake_failed"], 2)
        self.assertEqual(r.stats()["ingest"]["received"], 1)
        sink.expect_none(0.2)  # nothing else arrived
        # revoked while connected: the batch is refused, as a whole
        self.keys.revoke("producers", "producer")
        wait_until(lambda: self.security(r, "ingest")["keys"] == 0,
                   what="reload", timeout=5)
        a = evrtest.ack(self.exchange(good, one_event(5)))
        self.assertEqual(a["status"], 1)
        self.assertIn("revoked", a["error"])
        self.assertEqual(self.security(r, "ingest")["revoked"], 1)
        # the relay keeps serving: a newly allowed producer gets through
        self.keys.allow("producers", "stranger")
        wait_until(lambda: self.security(r, "ingest")["keys"] == 1,
                   what="reload", timeout=5)
        again = curve_socket(self.ctx, zmq.DEALER, self.keys, "stranger",
                             self.relay_pub)
        again.connect(r.ingest)
        a = evrtest.ack(self.exchange(again, one_event(6, "late")))
        self.assertEqual(a["status"], 0)
        self.assertIn(b"late", sink.wait(1)[0])

    def test_libevrelay_client(self):
        """evr-blast through libevrelay with opts.cert / opts.server_key:
        every event acked and delivered; without a certificate nothing
        gets through."""
        r = self.secure_relay()
        sink = self.unix_sink()
        r.subscribe("E_BLAST", sink.spec)
        _, secret = self.keys.pair("blaster")
        self.keys.allow("producers", "blaster")
        wait_until(lambda: self.security(r, "ingest")["keys"] == 1,
                   what="reload", timeout=5)
        env = dict(os.environ, EVRELAY_CERT=secret,
                   EVRELAY_SERVER_KEY=self.keys.relay_pub)
        out = self.blast(r, env, "-n", "5000", "-a", "delivered")
        self.assertEqual((out["acked"], out["failed"]), (5000, 0), out)
        self.assertEqual(len(sink.wait(5000)), 5000)
        env.pop("EVRELAY_CERT")
        out = self.blast(r, env, "-n", "10", "-t", "1500", check=False)
        self.assertEqual(out["acked"], 0, out)

    def test_agent(self):
        """evrelay-agent --cert/--server-key: an OpenSIPS datagram arrives
        through a CURVE relay, byte for byte."""
        import socket
        import test_agent
        r = self.secure_relay()
        sink = self.udp_sink()
        r.subscribe("E_PIKE_BLOCKED", sink.spec)
        _, secret = self.keys.pair("opensips1")
        self.keys.allow("producers", "opensips1")
        wait_until(lambda: self.security(r, "ingest")["keys"] == 1,
                   what="reload", timeout=5)
        port = free_port(socket.SOCK_DGRAM)
        agent = test_agent.Agent(r.ingest, udp=["127.0.0.1:%d" % port],
                                 args=["--cert", secret, "--server-key",
                                       self.keys.relay_pub])
        self.addCleanup(agent.cleanup)
        agent.start()
        payload = (b'{"jsonrpc":"2.0","method":"E_PIKE_BLOCKED",'
                   b'"params":{"ip":"192.168.2.11"}}')
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(payload, ("127.0.0.1", port))
        s.close()
        self.assertEqual(sink.wait(1), [payload])
        self.assertEqual(self.security(r, "ingest")["allowed"], 1)

    def blast(self, r, env, *args, check=True):
        import json
        p = subprocess.run([os.path.join(evrtest.BUILD_DIR, "evr-blast"),
                            "-e", r.ingest] + list(args), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=120)
        if check and p.returncode != 0:
            raise AssertionError("evr-blast: %r %r" % (p.stdout, p.stderr))
        return json.loads(p.stdout.decode().strip().splitlines()[-1])

    # ---- zmq backend ------------------------------------------------------------

    def test_zmq_backend(self):
        """The relay is a CURVE client of a zmq subscriber listed in the
        backends directory; an endpoint without a certificate is
        refused at subscribe time."""
        port = free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        pub, secret = self.keys.pair("consumer", endpoint)
        shutil.copy(pub, self.keys.dirs["backends"])
        r = self.secure_relay()
        server_pub, server_secret = zmq.auth.load_certificate(secret)
        pull = self.ctx.socket(zmq.PULL)
        pull.linger = 0
        pull.curve_server = True
        pull.curve_publickey = server_pub
        pull.curve_secretkey = server_secret
        pull.bind(endpoint)
        r.subscribe("E_SEC", "zmq:push:%s" % endpoint)
        r.ok("raise", "E_SEC", '{"v":"over curve"}')
        self.assertTrue(pull.poll(5000))
        self.assertIn(b"over curve", pull.recv())
        other = "zmq:push:tcp://127.0.0.1:%d" % free_port()
        e = r.err("subscribe", "E_SEC", other)
        self.assertIn("no certificate in [security] backends", e["data"])

    # ---- cluster ------------------------------------------------------------------

    def cluster_pair(self, name, allowed=True):
        """A relay's pair naming its cluster endpoint; listed in the peers
        directory when allowed. Returns (endpoint, public, secret)."""
        ep = "tcp://127.0.0.1:%d" % free_port()
        pub, secret = self.keys.pair(name, ep)
        if allowed:
            shutil.copy(pub, self.keys.dirs["peers"])
        return ep, pub, secret

    def cluster_relay(self, name, pair, peers):
        ep, pub, secret = pair
        data = tempfile.mkdtemp(prefix="evr-data-")
        self.addCleanup(shutil.rmtree, data, True)
        args = self.keys.args(secret) + ["--node-id", name, "--cluster", ep,
                                         "--data-dir", data]
        for p in peers:
            args += ["--peer", p]
        self.keys.allow("operators", "alice")
        ctl_args = self.keys.ctl_args("alice")
        ctl_args[-1] = pub  # this relay's own key
        r = self.relay(args=args, ctl_args=ctl_args,
                       config="[cluster]\nheartbeat_ms = 100\n"
                              "join_timeout_ms = 1000\n")
        r.endpoint = ep
        return r

    def test_cluster(self):
        """Two listed relays replicate over CURVE; a relay whose key is
        not in the peers directory is refused and never gets the table."""
        self.keys.pair("alice")
        #  keys first: libzmq does not always retry a handshake that ZAP
        #  refused (libzmq #3519), so peers are listed before they start
        pa, pb = self.cluster_pair("A"), self.cluster_pair("B")
        px = self.cluster_pair("X", allowed=False)
        a = self.cluster_relay("A", pa, [])
        b = self.cluster_relay("B", pb, [a.endpoint])
        a.subscribe("E_SEC", "udp:127.0.0.1:9999")
        wait_until(lambda: any(s.get("socket") == "udp:127.0.0.1:9999"
                               for s in self._subs(b)),
                   what="replication A->B", timeout=15)
        b.subscribe("E_SEC", "udp:127.0.0.1:9998")
        wait_until(lambda: len(self._subs(a)) == 2,
                   what="replication B->A", timeout=15)
        intruder = self.cluster_relay("X", px, [a.endpoint])
        # X may know A's key (it is public), but A does not list X's
        wait_until(lambda: self.security(a, "cluster")["denied"] >= 1,
                   what="A refusing X", timeout=15)
        time.sleep(1.0)
        self.assertEqual(self._subs(intruder), [])
        self.assertGreaterEqual(self.security(a, "cluster")["allowed"], 2)

    def test_cluster_revoked_peer(self):
        """A peer whose certificate leaves the peers directory loses its
        links: it gets no delta made after that, while the listed peers
        still replicate both ways."""
        self.keys.pair("alice")
        pa, pb, pc = (self.cluster_pair(n) for n in "ABC")
        a = self.cluster_relay("A", pa, [])
        b = self.cluster_relay("B", pb, [a.endpoint])
        c = self.cluster_relay("C", pc, [a.endpoint])
        a.subscribe("E_REV", "udp:127.0.0.1:9001")
        for r in (b, c):
            wait_until(lambda: len(self._subs(r)) == 1, timeout=15,
                       what="replication before the revocation")
        self.keys.revoke("peers", "C")
        for r in (a, b):
            wait_until(lambda: "the certificate of peer C left" in r.log(),
                       timeout=15, what="the revocation acted on")
        a.subscribe("E_REV", "udp:127.0.0.1:9002")
        b.subscribe("E_REV", "udp:127.0.0.1:9003")
        for r in (a, b):
            wait_until(lambda: len(self._subs(r)) == 3, timeout=15,
                       what="replication after the revocation")
        time.sleep(2.0)
        self.assertEqual([s["socket"] for s in self._subs(c)],
                         ["udp:127.0.0.1:9001"])

    def _subs(self, relay):
        res = relay.ok("subscribers")
        out = []
        for ev in res.get("Events", []):
            out += ev.get("subscribers", ev.get("Subscribers", []))
        return out


if __name__ == "__main__":
    evrtest.main()
