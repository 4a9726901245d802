"""The control-plane access policy against running evrelayd processes:
[policy] grants for the unauthenticated caller `local` on the control
socket and over HTTP, per operator name over HTTP with credentials
([http_auth] bearer tokens and basic passwords) and per CURVE certificate
name on the control socket (the ZAP User-Id); the destination
allowlist ([allow]) refusing every rule with its name in the 403, a
virtual subscriber refused for one child, allowed destinations working
end to end (an event arrives at the allowed UDP sink and file); 401
without or with wrong credentials, /metrics behind the policy, /health
open; refusal counters in stats and /metrics; start-up refusals (a static
subscription outside the allowlist, the HTTP face beyond loopback without
credentials unless --insecure, bad policy keys).

Every relay here listens on 127.0.0.1 only: the start-ups beyond loopback
are refusals, checked before anything binds. Starting beyond loopback
with --insecure or with credentials is covered by the unit tests of the
address check (tests/unit/test_policy.c), not by binding 0.0.0.0.
"""

import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
from evrtest import wait_file  # noqa: E402


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


class PolicyRelay(evrtest.Relay):
    """A relay probed with `health` at start: every caller may run it,
    while the policy under test may refuse `list` to local."""

    PROBE = ("health",)


def forbidden(data):
    """The MI error object of a refusal."""
    return {"code": 403, "message": "Forbidden", "data": data}


class Http:
    """A client of a relay's HTTP face on 127.0.0.1, with optional
    credentials: ("bearer", TOKEN) or ("basic", USER, PASSWORD)."""

    def __init__(self, port, auth=None):
        self.port = port
        self.headers = {}
        if auth and auth[0] == "bearer":
            self.headers["Authorization"] = "Bearer " + auth[1]
        elif auth:
            pair = ("%s:%s" % (auth[1], auth[2])).encode()
            self.headers["Authorization"] = ("Basic "
                                             + base64.b64encode(pair).decode())

    def request(self, method, path, body=None):
        """One request on a fresh connection: (status, message, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = dict(self.headers)
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.msg, resp.read()
        finally:
            conn.close()

    def mi(self, method, params=None):
        """A JSON-RPC call: (status, parsed answer or raw body)."""
        req = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            req["params"] = params
        status, _, body = self.request("POST", "/mi", compact(req).encode())
        return status, json.loads(body) if status == 200 else body

    def result(self, method, params=None):
        status, answer = self.mi(method, params)
        if status != 200 or "result" not in answer:
            raise AssertionError("%s: HTTP %d %r" % (method, status, answer))
        return answer["result"]

    def error(self, method, params=None):
        status, answer = self.mi(method, params)
        if status != 200 or "error" not in answer:
            raise AssertionError("%s: HTTP %d %r" % (method, status, answer))
        return answer["error"]


class PolicyCase(evrtest.RelayTestCase):

    def policy_relay(self, config=None, args=()):
        """A started relay (stopped in the cleanup)."""
        return PolicyRelay.started(self, args=list(args), config=config)

    def refused_start(self, config=None, args=()):
        """Run a relay that must refuse to start; return (exit, output)."""
        r = evrtest.Relay(args=list(args), config=config)
        self.addCleanup(r.cleanup)
        p = subprocess.run(r.command(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
        return p.returncode, p.stdout.decode()


# --------------------------------------------------------------------------


class LocalOperator(PolicyCase):
    """The control socket without CURVE: the caller is `local`."""

    def test_no_policy_allows_everything(self):
        r = self.policy_relay()
        sink = self.udp_sink()
        r.subscribe("E_X", sink.spec)
        r.raise_event("E_X", {"a": 1})
        sink.wait_one()
        self.assertEqual(r.ok("subscribe", "E_X", sink.spec, 0), "OK")
        self.assertEqual(r.err("flatstore-rotate", "/nope")["code"], 400)
        self.assertEqual(r.stats()["policy"], {
            "policy_denied": {"subscribe": 0, "unsubscribe": 0, "raise": 0,
                              "list": 0, "rotate": 0},
            "allowlist_denied": {"transports": 0, "cidrs": 0, "hosts": 0,
                                 "ports": 0, "dirs": 0},
            "http_unauthorized": 0})

    def test_local_granted_and_refused(self):
        r = self.policy_relay("[policy]\nlocal = subscribe list\n"
                              "alice = all\n")
        sink = self.udp_sink()
        self.assertEqual(r.ok("subscribe", "E_X", sink.spec), "OK")
        self.assertEqual(r.ok("event_subscribe", "E_Y", sink.spec, 60), "OK")
        self.assertIn("Events", r.ok("list"))
        self.assertIn("Events", r.ok("subscribers_list"))
        self.assertIn("uptime_s", r.ok("stats"))
        self.assertEqual(r.ok("health")["ready"], True)
        refusals = [
            (("raise", "E_X"), "raise"),
            (("evi:raise", "E_X", '{"a":1}'), "raise"),
            (("subscribe", "E_X", sink.spec, 0), "unsubscribe"),
            (("evi:subscribe", "E_X", sink.spec, "0"), "unsubscribe"),
            (("flatstore-rotate", "/var/log/x.log"), "rotate"),
            (("event_flatstore:rotate", "/var/log/x.log"), "rotate"),
        ]
        for args, action in refusals:
            self.assertEqual(
                r.err(*args),
                forbidden("refused by policy.local: operator 'local' may "
                          "not %s" % action), args)
        #  nothing was unsubscribed, nothing raised
        self.assertEqual(len(r.subscribers("E_X")["Event"]["Subscribers"]),
                         1)
        sink.expect_none(0.2)
        stats = r.stats()
        self.assertEqual(stats["policy"]["policy_denied"],
                         {"subscribe": 0, "unsubscribe": 2, "raise": 2,
                          "list": 0, "rotate": 2})
        self.assertEqual(stats["control"]["errors"], 6)
        #  an unknown method is still "Method not found"
        self.assertEqual(r.err("mi_list")["code"], -32601)

    def test_local_not_listed(self):
        #  '*' is any authenticated operator: never local
        r = self.policy_relay("[policy]\n* = all\nalice = all\n")
        why = "refused by policy: operator 'local' is not listed in [policy]"
        self.assertEqual(r.err("list"), forbidden(why))
        self.assertEqual(r.err("stats"), forbidden(why))
        self.assertEqual(r.err("subscribe", "E_X", "udp:127.0.0.1:9"),
                         forbidden(why))
        #  health is open to every caller
        self.assertEqual(r.ok("health"),
                         {"status": "ok", "live": True, "ready": True})

    def test_every_method_name_under_all(self):
        #  each method name maps to an action: none is refused under "all"
        r = self.policy_relay("[policy]\nlocal = all\n")
        sink = self.udp_sink()
        calls = [("subscribe", "E_A", sink.spec),
                 ("event_subscribe", "E_B", sink.spec),
                 ("evi:subscribe", "E_C", sink.spec),
                 ("list",), ("events_list",), ("evi:list",),
                 ("subscribers",), ("subscribers_list",),
                 ("evi:subscribers",), ("raise", "E_A"),
                 ("raise_event", "E_B"), ("evi:raise", "E_C"),
                 ("stats",), ("health",), ("cluster",),
                 ("flatstore-rotate", "/x"), ("evi_flat_rotate", "/x"),
                 ("event_flatstore:rotate", "/x")]
        for call in calls:
            rc, out, err = r.ctl(*call)
            self.assertNotIn("403", err, call)
            self.assertIn(rc, (0, 1), call)
        self.assertEqual(r.stats()["policy"]["policy_denied"],
                         {"subscribe": 0, "unsubscribe": 0, "raise": 0,
                          "list": 0, "rotate": 0})

    def test_bad_policy_refused_at_start(self):
        rc, out = self.refused_start("[policy]\nalice = subscribe publish\n")
        self.assertEqual(rc, 2)
        self.assertIn("evrelayd.conf:2: policy.alice: unknown action "
                      "'publish' (known: subscribe, unsubscribe, raise, "
                      "list, rotate, all, none)", out)
        rc, out = self.refused_start("[allow]\nnetworks = 10.0.0.0/8\n")
        self.assertEqual(rc, 2)
        self.assertIn("allow.networks: unknown key 'networks' in [allow]",
                      out)
        rc, out = self.refused_start("[http_auth]\nalice = bearer:a b c\n")
        self.assertEqual(rc, 2)
        self.assertIn("http_auth.alice: the secret has a control character "
                      "or a space", out)
        self.assertNotIn("a b c", out)


# --------------------------------------------------------------------------


class Allowlist(PolicyCase):
    """[allow]: every rule refuses with its name; allowed destinations
    deliver."""

    def setUp(self):
        self.sink = self.udp_sink()
        self.dir = self.tempdir()
        self.allowed = os.path.join(self.dir, "allowed")
        os.mkdir(self.allowed)
        self.lo, self.hi = self.sink.port, self.sink.port + 10
        self.r = self.policy_relay(
            "[allow]\n"
            "transports = udp unix flatstore tcp\n"
            "cidrs = 127.0.0.0/8, ::1/128\n"
            "hosts = localhost *.example.net\n"
            "ports = %d-%d\n"
            "dirs = %s\n" % (self.lo, self.hi, self.allowed))

    def refusal(self, socket_string, rule, why):
        error = self.r.err("subscribe", "E_R", socket_string)
        self.assertEqual(error, forbidden(
            "destination refused by allow.%s: %s" % (rule, why)))

    def test_every_rule_named(self):
        p = self.lo
        ports = "%d-%d" % (self.lo, self.hi)
        self.refusal("http://127.0.0.1:%d/hook" % p, "transports",
                     "transport 'http' is not in udp, unix, flatstore, tcp")
        self.refusal("zmq:push:tcp://127.0.0.1:%d" % p, "transports",
                     "transport 'zmq' is not in udp, unix, flatstore, tcp")
        self.refusal("udp:192.0.2.7:%d" % p, "cidrs",
                     "192.0.2.7 is not in 127.0.0.0/8, ::1/128")
        self.refusal("tcp:[2001:db8::7]:%d" % p, "cidrs",
                     "2001:db8::7 is not in 127.0.0.0/8, ::1/128")
        self.refusal("udp:sink.example.org:%d" % p, "hosts",
                     "host 'sink.example.org' is not in localhost, "
                     "*.example.net")
        self.refusal("udp:127.0.0.1:1", "ports",
                     "port 1 is not in %s" % ports)
        self.refusal("tcp:127.0.0.1:%d" % (self.hi + 1), "ports",
                     "port %d is not in %s" % (self.hi + 1, ports))
        other = os.path.join(self.dir, "other", "x.log")
        self.refusal("flatstore:" + other, "dirs",
                     "%s is not inside %s" % (other, self.allowed))
        dotdot = os.path.join(self.allowed, "..", "x.log")
        self.refusal("flatstore:" + dotdot, "dirs",
                     "%s has a '..' component" % dotdot)
        self.refusal("unix:/tmp/evr-policy.sock", "dirs",
                     "/tmp/evr-policy.sock is not inside %s" % self.allowed)
        #  nothing was stored, no file made
        self.assertEqual(self.r.subscribers(), {"Events": []})
        self.assertFalse(os.path.exists(dotdot))
        self.assertEqual(self.r.stats()["policy"]["allowlist_denied"],
                         {"transports": 2, "cidrs": 2, "hosts": 1,
                          "ports": 2, "dirs": 3})

    def test_virtual_child_named(self):
        good = self.sink.spec
        bad = "udp:192.0.2.7:%d" % self.lo
        self.refusal("virtual:FAILOVER %s %s" % (good, bad), "cidrs",
                     "virtual child 2 '%s': 192.0.2.7 is not in "
                     "127.0.0.0/8, ::1/128" % bad)
        self.refusal("virtual:PARALLEL %s udp:127.0.0.1:1" % good, "ports",
                     "virtual child 2 'udp:127.0.0.1:1': port 1 is not in "
                     "%d-%d" % (self.lo, self.hi))
        self.assertEqual(self.r.subscribers(), {"Events": []})
        #  with every child allowed it works
        self.r.subscribe("E_V", "virtual:FAILOVER %s %s"
                         % (good, "udp:127.0.0.1:%d" % (self.lo + 1)))
        self.r.raise_event("E_V", {"v": 1})
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_V","params":{"v":1}}')

    def test_allowed_destinations_deliver(self):
        self.r.subscribe("E_OK", self.sink.spec)
        self.r.raise_event("E_OK", {"ip": "192.168.2.11"})
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_OK","params":'
                         b'{"ip":"192.168.2.11"}}')
        #  a name allowed by allow.hosts (resolved only once allowed)
        self.r.subscribe("E_NAME", "udp:localhost:%d" % self.sink.port)
        self.r.raise_event("E_NAME")
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_NAME"}')
        #  a file inside the allowed directory (folded '//' and '.')
        path = os.path.join(self.allowed, "cdr.log")
        self.r.subscribe("E_FILE", "flatstore:%s//./cdr.log" % self.allowed)
        self.r.raise_event("E_FILE", {"a": "b"})
        wait_file(path, b"E_FILE,b\n")
        self.assertEqual(self.r.stats()["policy"]["allowlist_denied"],
                         {"transports": 0, "cidrs": 0, "hosts": 0,
                          "ports": 0, "dirs": 0})

    def test_unsubscribe_is_not_checked(self):
        #  removing is always allowed (nothing to remove here: OK)
        self.assertEqual(self.r.ok("subscribe", "E_R", "udp:192.0.2.7:1", 0),
                         "OK")
        self.assertEqual(
            self.r.stats()["policy"]["allowlist_denied"]["cidrs"], 0)

    def test_static_subscription_outside_refused_at_start(self):
        rc, out = self.refused_start(
            "[allow]\ncidrs = 10.0.0.0/8\n",
            ["--subscribe", "E_S=udp:127.0.0.1:9000"])
        self.assertEqual(rc, 1)
        self.assertIn("static subscription E_S = udp:127.0.0.1:9000: "
                      "destination refused by allow.cidrs: 127.0.0.1 is not "
                      "in 10.0.0.0/8", out)
        rc, out = self.refused_start(
            "[allow]\nports = 9000\n[subscriptions]\n"
            "E_S = virtual:PARALLEL udp:10.0.0.1:9000 udp:10.0.0.1:9001\n")
        self.assertEqual(rc, 1)
        self.assertIn("destination refused by allow.ports: virtual child 2 "
                      "'udp:10.0.0.1:9001': port 9001 is not in 9000", out)

    def test_static_subscription_inside_starts(self):
        r = self.policy_relay("[allow]\ncidrs = 127.0.0.0/8\n",
                              ["--subscribe", "E_S=" + self.sink.spec])
        r.raise_event("E_S")
        self.assertEqual(self.sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_S"}')


# --------------------------------------------------------------------------

TOKEN_A = "tok-alice-0123456789"
TOKEN_C = "tok-carol-9876543210"
PASSWORD_B = "pw of bob:1"

AUTH_CONFIG = (
    "[http_auth]\n"
    "alice = bearer:%s\n"
    "bob = basic:%s\n"
    "carol = bearer:%s\n"
    "[policy]\n"
    "alice = all\n"
    "bob = list subscribe\n"
    "carol = subscribe\n"
    "[allow]\n"
    "cidrs = 127.0.0.0/8\n" % (TOKEN_A, PASSWORD_B, TOKEN_C))


class HttpCredentials(PolicyCase):
    """[http_auth]: the credentials name the operator the policy sees."""

    def setUp(self):
        self.port = evrtest.free_port()
        self.r = self.policy_relay(AUTH_CONFIG,
                                   ["--http", "127.0.0.1:%d" % self.port])
        self.anon = Http(self.port)
        self.alice = Http(self.port, ("bearer", TOKEN_A))
        self.bob = Http(self.port, ("basic", "bob", PASSWORD_B))
        self.carol = Http(self.port, ("bearer", TOKEN_C))

    def assert_401(self, client, method="POST", path="/mi"):
        body = compact({"jsonrpc": "2.0", "method": "list", "id": 1})
        status, msg, text = client.request(
            method, path, body.encode() if method == "POST" else None)
        self.assertEqual(status, 401, (method, path))
        self.assertEqual(text, b"unauthorized\n")
        self.assertEqual(sorted(msg.get_all("WWW-Authenticate")),
                         ['Basic realm="evrelay"', 'Bearer realm="evrelay"'])

    def test_401_without_or_with_wrong_credentials(self):
        wrong = [self.anon,
                 Http(self.port, ("bearer", TOKEN_A + "x")),
                 Http(self.port, ("bearer", TOKEN_A[:-1])),
                 Http(self.port, ("basic", "bob", "pw of bob")),
                 Http(self.port, ("basic", "Bob", PASSWORD_B)),
                 Http(self.port, ("basic", "alice", TOKEN_A)),
                 Http(self.port, ("basic", "carol", TOKEN_C))]
        before = self.alice.result("stats")["control"]["requests"]
        for client in wrong:
            self.assert_401(client)
            self.assert_401(client, "GET", "/metrics")
        #  none reached the core (the stats call itself is one request)
        stats = self.alice.result("stats")
        self.assertEqual(stats["control"]["requests"], before + 1)
        self.assertEqual(stats["policy"]["http_unauthorized"],
                         2 * len(wrong))

    def test_bearer_and_basic(self):
        sink = self.udp_sink()
        self.assertEqual(self.alice.result("evi:subscribe",
                                           ["E_H", sink.spec]), "OK")
        self.assertEqual(self.alice.result("evi:raise", ["E_H", {"x": 1}]),
                         "OK")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_H","params":{"x":1}}')
        self.assertIn("Events", self.bob.result("evi:list"))
        self.assertEqual(self.bob.result("evi:subscribe",
                                         ["E_B", sink.spec, 30]), "OK")
        #  per-name refusals
        self.assertEqual(self.bob.error("evi:raise", ["E_H"]), forbidden(
            "refused by policy.bob: operator 'bob' may not raise"))
        self.assertEqual(
            self.bob.error("evi:subscribe", ["E_B", sink.spec, 0]),
            forbidden("refused by policy.bob: operator 'bob' may not "
                      "unsubscribe"))
        self.assertEqual(self.carol.error("evi:list"), forbidden(
            "refused by policy.carol: operator 'carol' may not list"))
        #  the allowlist applies to every operator
        self.assertEqual(
            self.alice.error("evi:subscribe", ["E_H", "udp:192.0.2.7:9"]),
            forbidden("destination refused by allow.cidrs: 192.0.2.7 is not "
                      "in 127.0.0.0/8"))
        policy = self.alice.result("stats")["policy"]
        self.assertEqual(policy["policy_denied"],
                         {"subscribe": 0, "unsubscribe": 1, "raise": 1,
                          "list": 1, "rotate": 0})
        self.assertEqual(policy["allowlist_denied"]["cidrs"], 1)
        self.assertEqual(policy["http_unauthorized"], 0)

    def test_metrics_need_credentials_and_list(self):
        self.assert_401(self.anon, "GET", "/metrics")
        status, msg, body = self.bob.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(msg["Content-Type"].startswith("text/plain; "
                                                       "version=0.0.4"))
        text = body.decode()
        self.assertIn("\nevrelay_http_unauthorized_total 1\n", text)
        self.assertIn('\nevrelay_policy_denied_total{action="list"} 0\n',
                      text)
        status, _, body = self.carol.request("GET", "/metrics")
        self.assertEqual(status, 403)
        self.assertEqual(body, b"Forbidden: refused by policy.carol: "
                               b"operator 'carol' may not list\n")
        status, _, body = self.alice.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('\nevrelay_policy_denied_total{action="list"} 1\n',
                      body.decode())
        self.assertIn('\nevrelay_allowlist_denied_total{rule="allow.cidrs"} '
                      '0\n', body.decode())

    def test_health_stays_open(self):
        status, _, body = self.anon.request("GET", "/health")
        self.assertEqual((status, body),
                         (200, b'{"status":"ok","live":true,"ready":true}'))

    def test_control_socket_caller_is_local(self):
        #  local is not listed: the control socket without CURVE gets
        #  nothing but health
        why = "refused by policy: operator 'local' is not listed in [policy]"
        self.assertEqual(self.r.err("list"), forbidden(why))
        self.assertEqual(self.r.err("raise", "E_X"), forbidden(why))
        self.assertEqual(self.r.ok("health")["ready"], True)

    def test_expect_continue_refused_before_the_body(self):
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(b"POST /mi HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n"
                      b"Expect: 100-continue\r\n\r\n")
            s.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        self.assertTrue(head.startswith(b"HTTP/1.1 401 "), head)


class HttpWithoutCredentials(PolicyCase):
    """No [http_auth]: the HTTP caller is `local`; beyond loopback the
    relay needs --insecure."""

    def test_http_caller_is_local(self):
        port = evrtest.free_port()
        self.policy_relay("[policy]\nlocal = list\n",
                          ["--http", "127.0.0.1:%d" % port])
        h = Http(port)
        self.assertIn("Events", h.result("evi:list"))
        self.assertEqual(h.error("evi:raise", ["E_X"]), forbidden(
            "refused by policy.local: operator 'local' may not raise"))
        status, _, body = h.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('\nevrelay_policy_denied_total{action="raise"} 1\n',
                      body.decode())

    def test_beyond_loopback_refused_without_insecure(self):
        port = evrtest.free_port()
        rc, out = self.refused_start(args=["--http", "0.0.0.0:%d" % port])
        self.assertEqual(rc, 1)
        self.assertIn("http: 0.0.0.0:%d is not a loopback address and "
                      "[http_auth] has no credentials: add credentials, bind "
                      "to loopback, or start with --insecure" % port, out)
        #  the same from the config file
        rc, out = self.refused_start(
            "[relay]\nhttp = 0.0.0.0:%d\n" % port)
        self.assertEqual(rc, 1)
        self.assertIn("is not a loopback address", out)


# --------------------------------------------------------------------------


class CurveOperators(PolicyCase):
    """With CURVE the operator is the certificate's name (the ZAP
    User-Id): the policy grants per certificate."""

    def setUp(self):
        self.root = self.tempdir()
        self.pairs = os.path.join(self.root, "pairs")
        self.operators = os.path.join(self.root, "operators")
        self.producers = os.path.join(self.root, "producers")
        for d in (self.pairs, self.operators, self.producers):
            os.mkdir(d)
        self.relay_pub = self.keygen("relay")
        for name in ("alice", "bob", "carol"):
            self.keygen(name)
            os.link(os.path.join(self.pairs, name + ".cert"),
                    os.path.join(self.operators, name + ".cert"))
        self.r = PolicyRelay.started(
            self,
            args=["--cert", os.path.join(self.pairs, "relay.cert_secret"),
                  "--operators", self.operators,
                  "--producers", self.producers],
            config="[policy]\nalice = all\nbob = list\n",
            ctl_args=self.curve_args("alice"))

    def keygen(self, name):
        """A key pair named name (its certificate's name metadata); the
        public certificate's path."""
        p = subprocess.run([evrtest.EVRELAYCTL, "keygen", name, self.pairs],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        return os.path.join(self.pairs, name + ".cert")

    def curve_args(self, name):
        return ["--cert", os.path.join(self.pairs, name + ".cert_secret"),
                "--server-key", self.relay_pub]

    def ctl_as(self, name, *args):
        """evrelayctl --json as operator name: (exit, parsed stdout)."""
        cmd = ([evrtest.EVRELAYCTL, "-s", self.r.control, "-t", "5000",
                "--json"] + self.curve_args(name) + [str(a) for a in args])
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=20)
        out = p.stdout.decode()
        return p.returncode, json.loads(out) if out.strip() else None

    def test_grants_follow_the_certificate_name(self):
        sink = self.udp_sink()
        self.assertEqual(self.ctl_as("alice", "subscribe", "E_C", sink.spec),
                         (0, "OK"))
        self.assertEqual(self.ctl_as("alice", "raise", "E_C"), (0, "OK"))
        sink.wait_one()
        rc, listed = self.ctl_as("bob", "subscribers")
        self.assertEqual(rc, 0)
        self.assertEqual(listed["Events"][0]["name"], "E_C")
        self.assertEqual(self.ctl_as("bob", "subscribe", "E_C", sink.spec),
                         (1, forbidden("refused by policy.bob: operator 'bob' "
                                       "may not subscribe")))
        self.assertEqual(self.ctl_as("bob", "raise", "E_C"),
                         (1, forbidden("refused by policy.bob: operator 'bob' "
                                       "may not raise")))
        #  an allowed key without a [policy] line (and no '*'): nothing
        self.assertEqual(self.ctl_as("carol", "list"),
                         (1, forbidden("refused by policy: operator 'carol' "
                                       "is not listed in [policy]")))
        self.assertEqual(self.ctl_as("carol", "health")[0], 0)
        denied = self.r.stats()["policy"]["policy_denied"]
        self.assertEqual(denied, {"subscribe": 1, "unsubscribe": 0,
                                  "raise": 1, "list": 1, "rotate": 0})


if __name__ == "__main__":
    evrtest.main()
