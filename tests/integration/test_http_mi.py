"""The relay's HTTP face against a running evrelayd (`--http`): OpenSIPS
mi_http-compatible JSON-RPC at POST /mi (exact response bodies for every
method under its 3.x and 4.x names, every error, named and positional
params, the raise_event string form, notifications, a 200 KB request, a
body over the limit), each call's effect on real UDP and flatstore
subscribers, GET /metrics parsed with the Prometheus client library's own
parser (series exist and move) and by a real prometheus server on
loopback (when the Debian package is installed), GET /health, 404/405,
and the config key.

Uses prometheus_client (Debian's python3-prometheus-client). When the
python3 that runs this file is another one (a pyenv shim, say) without
it, the test re-runs itself under /usr/bin/python3.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
from evrtest import read_bytes, wait_file, wait_until  # noqa: E402

text_string_to_metric_families = evrtest.import_system_module(
    "prometheus_client.parser").text_string_to_metric_families


def compact(obj):
    """JSON as the relay writes it: compact, keys in the given order."""
    return json.dumps(obj, separators=(",", ":"))


def ok_body(result, rid=1):
    """The exact body of a JSON-RPC success answer."""
    return ('{"jsonrpc":"2.0","result":%s,"id":%s}'
            % (compact(result), compact(rid))).encode()


def err_body(code, message, data=None, rid=1):
    """The exact body of a JSON-RPC error answer."""
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return ('{"jsonrpc":"2.0","error":%s,"id":%s}'
            % (compact(error), compact(rid))).encode()


def jsonrpc_payload(event, params=None):
    """The exact notification a udp subscriber receives."""
    out = {"jsonrpc": "2.0", "method": event}
    if params:
        out["params"] = params
    return compact(out).encode()


class HttpRelay:
    """An HTTP client of one relay's HTTP face."""

    def __init__(self, host, port):
        self.host, self.port = host, port

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection: (status, headers, body)."""
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def post(self, body, **kwargs):
        if isinstance(body, (dict, list)):
            body = compact(body)
        if isinstance(body, str):
            body = body.encode()
        return self.request("POST", "/mi", body,
                            {"Content-Type": "application/json"}, **kwargs)

    def mi(self, method, params=None, rid=1):
        """A JSON-RPC call; returns the raw body of a 200 answer."""
        req = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            req["params"] = params
        if rid is not None:
            req["id"] = rid
        status, headers, body = self.post(req)
        if status != 200:
            raise AssertionError("POST /mi %s: HTTP %d %r"
                                 % (method, status, body))
        if headers.get("Content-Type") != "application/json":
            raise AssertionError("Content-Type %r" % headers)
        return body

    def result(self, method, params=None):
        """The parsed result of a call that must succeed."""
        answer = json.loads(self.mi(method, params))
        if "result" not in answer:
            raise AssertionError("%s answered %r" % (method, answer))
        return answer["result"]

    def metrics(self):
        """GET /metrics parsed: {family name: family}."""
        status, headers, body = self.request("GET", "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics: HTTP %d %r" % (status, body))
        self.last_metrics_type = headers.get("Content-Type")
        return {f.name: f
                for f in text_string_to_metric_families(body.decode())}


def sample(families, family, name=None, **labels):
    """The value of the one sample of family (sample name defaults to the
    family's) whose labels include labels; None when there is none."""
    fam = families.get(family)
    if fam is None:
        return None
    found = [s.value for s in fam.samples
             if s.name == (name or family)
             and all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) > 1:
        raise AssertionError("%d samples of %s %r" % (len(found), family,
                                                      labels))
    return found[0] if found else None


class HttpCase(evrtest.RelayTestCase):
    """A relay serving HTTP on a free loopback port."""

    config = None
    extra_args = ()

    def setUp(self):
        self.http_port = evrtest.free_port()
        self.r = self.relay(args=["--http", "127.0.0.1:%d" % self.http_port]
                            + list(self.extra_args), config=self.config)
        self.h = HttpRelay("127.0.0.1", self.http_port)


class Methods(HttpCase):
    """Every method, both names, both params forms, exact bodies."""

    def setUp(self):
        super().setUp()
        self.sink = self.udp_sink()

    def test_subscribe_both_names_both_forms(self):
        calls = [("event_subscribe", ["E_A", self.sink.spec]),
                 ("evi:subscribe", ["E_B", self.sink.spec, 100]),
                 ("event_subscribe", {"event": "E_C",
                                      "socket": self.sink.spec}),
                 ("evi:subscribe", {"event": "E_D", "socket": self.sink.spec,
                                    "expire": "200"})]
        for rid, (method, params) in enumerate(calls, 1):
            self.assertEqual(self.h.mi(method, params, rid),
                             ok_body("OK", rid), method)
        subs = self.r.subscribers()["Events"]
        got = {e["name"]: e["Subscribers"][0]["expire"] for e in subs}
        self.assertEqual(got, {"E_A": 3600, "E_B": 100, "E_C": 3600,
                               "E_D": 200})
        #  each works: a raise reaches the sink
        for name in "ABCD":
            self.r.raise_event("E_" + name, {"x": 1})
            self.assertEqual(self.sink.wait_one(),
                             jsonrpc_payload("E_" + name, {"x": 1}))

    def test_unsubscribe_with_expire_zero(self):
        self.h.mi("evi:subscribe", ["E_U", self.sink.spec])
        self.assertEqual(self.h.mi("evi:subscribe",
                                   ["E_U", self.sink.spec, 0]),
                         ok_body("OK"))
        self.assertEqual(self.h.mi("evi:raise", ["E_U"]),
                         err_body(480, "Temporarily Unavailable",
                                  "no subscribers for this event"))

    def test_list_both_names(self):
        expected = ok_body(self.r.ok("list"), 7)
        self.assertTrue(expected.startswith(
            b'{"jsonrpc":"2.0","result":{"Events":[{"name":'
            b'"E_CORE_SR_STATUS_CHANGED","id":0},{"name":"E_CORE_THRESHOLD",'
            b'"id":1},'))
        self.assertEqual(self.h.mi("events_list", None, 7), expected)
        self.assertEqual(self.h.mi("evi:list", [], 7), expected)
        self.assertEqual(self.h.mi("evi:list", {}, 7), expected)

    def test_subscribers_both_names_all_forms(self):
        r = self.relay(args=["--http", "127.0.0.1:%d" % evrtest.free_port(),
                             "--subscribe", "E_S=" + self.sink.spec,
                             "--subscribe", "E_PIKE_BLOCKED=" +
                             self.sink.spec])
        h = HttpRelay("127.0.0.1", int(r.args[1].rsplit(":", 1)[1]))
        sub = {"socket": self.sink.spec, "expire": "never"}
        ids = {e["name"]: e["id"] for e in r.ok("list")["Events"]}
        everything = {"Events": [
            {"name": "E_PIKE_BLOCKED", "id": ids["E_PIKE_BLOCKED"],
             "Subscribers": [sub]},
            {"name": "E_S", "id": ids["E_S"], "Subscribers": [sub]}]}
        one = {"Event": {"name": "E_S", "id": ids["E_S"],
                         "Subscribers": [sub]}}
        single = {"Event": {"name": "E_S", "id": ids["E_S"],
                            "Subscriber": sub}}
        for method in ("subscribers_list", "evi:subscribers"):
            self.assertEqual(h.mi(method), ok_body(everything), method)
            self.assertEqual(h.mi(method, ["E_S"]), ok_body(one))
            self.assertEqual(h.mi(method, {"event": "E_S"}), ok_body(one))
            self.assertEqual(h.mi(method, ["E_S", self.sink.spec]),
                             ok_body(single))
            self.assertEqual(h.mi(method, {"event": "E_S",
                                           "socket": self.sink.spec}),
                             ok_body(single))
            #  an event known but without subscribers
            self.assertEqual(h.mi(method, ["E_CORE_LOG"]),
                             ok_body({"Event": {}}))

    def test_subscribers_ttl(self):
        self.h.mi("evi:subscribe", ["E_T", self.sink.spec, 50])
        result = self.h.result("evi:subscribers", ["E_T", self.sink.spec])
        sub = result["Event"]["Subscriber"]
        self.assertEqual(list(sub), ["socket", "expire", "ttl"])
        self.assertEqual(sub["expire"], 50)
        self.assertIn(sub["ttl"], (49, 50))

    def test_raise_positional_named_and_string_forms(self):
        flat = os.path.join(self.tempdir(), "ev.log")
        self.h.mi("evi:subscribe", ["E_R", self.sink.spec])
        self.h.mi("evi:subscribe", ["E_R", "flatstore:" + flat])
        forms = [
            ("raise_event", ["E_R"], None, b"E_R\n"),
            ("evi:raise", {"event": "E_R", "params": ["a", 7, 2.5]},
             ["a", "7", "2"], b"E_R,a,7,2\n"),
            ("raise_event", {"event": "E_R",
                             "params": {"ip": "10.0.0.1", "port": 5060}},
             {"ip": "10.0.0.1", "port": 5060}, b"E_R,10.0.0.1,5060\n"),
            #  OpenSIPS 3.6: named params as a string holding an object
            ("raise_event", {"event": "E_R",
                             "params": '{"ip":"10.0.0.2","n":3.7}'},
             {"ip": "10.0.0.2", "n": 3}, b"E_R,10.0.0.2,3\n"),
            ("evi:raise", ["E_R", '{"s":"x"}'], {"s": "x"}, b"E_R,x\n"),
        ]
        lines = b""
        for rid, (method, params, payload, line) in enumerate(forms, 1):
            self.assertEqual(self.h.mi(method, params, rid),
                             ok_body("OK", rid), (method, params))
            self.assertEqual(self.sink.wait_one(),
                             jsonrpc_payload("E_R", payload))
            lines += line
            wait_file(flat, lines)

    def test_rotate_both_names(self):
        d = self.tempdir()
        path = os.path.join(d, "ev.log")
        self.h.mi("evi:subscribe", ["E_F", "flatstore:" + path])
        self.h.mi("evi:raise", ["E_F", ["1"]])
        wait_file(path, b"E_F,1\n")
        for rid, (method, params) in enumerate(
                [("evi_flat_rotate", [path]),
                 ("event_flatstore:rotate", {"path_to_file": path})], 1):
            os.rename(path, path + ".%d" % rid)
            self.assertEqual(self.h.mi(method, params, rid),
                             ok_body("OK", rid))
            self.h.mi("evi:raise", ["E_F", [str(rid + 1)]])
            wait_file(path, b"E_F,%d\n" % (rid + 1))
        for rid in (1, 2):
            self.assertEqual(read_bytes(path + ".%d" % rid),
                             b"E_F,%d\n" % rid)

    def test_stats_and_health_methods(self):
        self.h.mi("evi:subscribe", ["E_X", self.sink.spec])
        stats = self.h.result("stats")
        self.assertEqual(list(stats)[:5],
                         ["uptime_s", "ingest", "control", "table",
                          "targets"])
        target = stats["targets"][0]
        self.assertEqual(target["socket"], self.sink.spec)
        hist = target["latency_buckets_us"]
        self.assertEqual(len(hist["counts"]), len(hist["le"]) + 1)
        self.assertEqual(self.h.mi("health"),
                         ok_body({"status": "ok", "live": True,
                                  "ready": True}))

    def test_string_ids_and_null_id(self):
        self.assertEqual(self.h.mi("evi:subscribe",
                                   ["E_I", self.sink.spec], "abc-1"),
                         ok_body("OK", "abc-1"))
        #  an id of null is a request (answered), not a notification
        self.assertEqual(self.h.post('{"jsonrpc":"2.0","method":"evi:list",'
                                     '"params":[1],"id":null}')[2],
                         err_body(-32602, "Invalid params",
                                  "Too few or too many parameters", None))


class Errors(HttpCase):
    """Every MI error, exact."""

    def setUp(self):
        super().setUp()
        self.sink = self.udp_sink()

    def test_bad_parameter_value(self):
        for socket_spec in ("nope:1.2.3.4:5", "udp:127.0.0.1:0",
                            "udp:127.0.0.1", "virtual:parallel udp:1.2.3.4:5"):
            answer = json.loads(self.h.mi("evi:subscribe",
                                          ["E_X", socket_spec]))
            error = answer["error"]
            self.assertEqual((error["code"], error["message"]),
                             (400, "Bad parameter value"), socket_spec)
            #  the same reason as the control socket gives
            self.assertEqual(error, self.r.err("subscribe", "E_X",
                                               socket_spec))
            self.assertEqual(list(answer), ["jsonrpc", "error", "id"])

    def test_invalid_params(self):
        cases = [
            ("event_subscribe", ["E_X", self.sink.spec, -1],
             "Negative expire value"),
            ("evi:subscribe", ["E_X"], "event and socket are required "
             "strings"),
            ("evi:subscribe", {"event": "E_X", "sock": "x"},
             "Named parameters do not match"),
            ("evi:list", ["x"], "Too few or too many parameters"),
            ("evi:subscribers", {"socket": self.sink.spec},
             "Named parameters do not match"),
            ("evi:subscribe", ["E_X", self.sink.spec, "soon"],
             "expire must be an integer"),
        ]
        for method, params, data in cases:
            self.assertEqual(self.h.mi(method, params),
                             err_body(-32602, "Invalid params", data),
                             (method, params))

    def test_not_found_errors(self):
        self.h.mi("evi:subscribe", ["E_X", self.sink.spec])
        self.assertEqual(self.h.mi("subscribers_list", ["E_NOPE"]),
                         err_body(404, "Event not published", "E_NOPE"))
        other = "udp:127.0.0.1:9"
        self.assertEqual(self.h.mi("evi:subscribers", ["E_X", other]),
                         err_body(404, "Subscriber does not exist", other))
        self.assertEqual(self.h.mi("raise_event", ["E_NOPE"]),
                         err_body(404, "Event not registered", "E_NOPE"))
        self.assertEqual(self.h.mi("evi:raise", ["E_CORE_LOG"]),
                         err_body(480, "Temporarily Unavailable",
                                  "no subscribers for this event"))
        self.assertEqual(self.h.mi("evi_flat_rotate", ["/no/such.log"]),
                         err_body(400, "File not found", "/no/such.log"))
        self.assertEqual(self.h.mi("raise_event", ["E_X", '"x"']),
                         err_body(400, "Bad Params",
                                  "params string is not a JSON object"))
        self.assertEqual(self.h.mi("raise_event", ["E_X", [True]]),
                         err_body(400, "Bad Params",
                                  "positional params must be strings or "
                                  "numbers"))

    def test_method_not_found(self):
        #  OpenSIPS 3.6 has no "mi_list" here either: not ours
        self.assertEqual(self.h.mi("which", None, 3),
                         err_body(-32601, "Method not found", "which", 3))

    def test_parse_error(self):
        for body in (b'{"jsonrpc":"2.0","method":', b"", b"nonsense",
                     b'{"jsonrpc":"2.0","method":"evi:list","id":1,"id":2}'):
            status, headers, answer = self.h.post(body)
            self.assertEqual(status, 200)
            self.assertEqual(answer, err_body(-32700, "Parse error", None,
                                              None), body)

    def test_invalid_request(self):
        for body in ('[{"jsonrpc":"2.0","method":"evi:list","id":1}]', '"x"',
                     '{"jsonrpc":"2.0","method":"evi:list","id":{}}',
                     '{"jsonrpc":"2.0","method":"evi:list","id":[1]}'):
            self.assertEqual(self.h.post(body)[2],
                             err_body(-32600, "Invalid Request", None, None),
                             body)
        #  a readable id is echoed
        for body in ('{"method":"evi:list","id":4}',
                     '{"jsonrpc":"2.0","id":4}',
                     '{"jsonrpc":"2.0","method":5,"id":4}',
                     '{"jsonrpc":"1.0","method":"evi:list","id":4}',
                     '{"jsonrpc":"2.0","method":"evi:list","params":"x",'
                     '"id":4}',
                     '{"jsonrpc":"2.0","method":"evi:list","params":null,'
                     '"id":4}'):
            self.assertEqual(self.h.post(body)[2],
                             err_body(-32600, "Invalid Request", None, 4),
                             body)

    def test_errors_counted(self):
        before = self.r.stats()["control"]
        self.h.mi("nope")
        self.h.mi("evi:list")
        after = self.r.stats()["control"]
        #  the two HTTP calls and the first stats call
        self.assertEqual(after["requests"] - before["requests"], 3)
        self.assertEqual(after["errors"] - before["errors"], 1)


class Notifications(HttpCase):

    def test_notification_runs_and_gets_empty_answer(self):
        sink = self.udp_sink()
        start = time.monotonic()
        status, headers, body = self.h.post(
            {"jsonrpc": "2.0", "method": "evi:subscribe",
             "params": ["E_N", sink.spec]})
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertEqual((status, body), (204, b""))
        self.assertEqual(self.r.subscribers("E_N")["Event"]["Subscribers"]
                         [0]["socket"], sink.spec)
        status, _, body = self.h.post({"jsonrpc": "2.0", "method": "evi:raise",
                                       "params": ["E_N", ["n"]]})
        self.assertEqual((status, body), (204, b""))
        self.assertEqual(sink.wait_one(), jsonrpc_payload("E_N", ["n"]))
        #  a failing notification is not answered either
        status, _, body = self.h.post({"jsonrpc": "2.0", "method": "nope"})
        self.assertEqual((status, body), (204, b""))

    def test_unreadable_notification_is_answered(self):
        #  as OpenSIPS: parse errors and invalid requests are answered
        self.assertEqual(self.h.post(b'{"jsonrpc":"2.0","method"')[2],
                         err_body(-32700, "Parse error", None, None))
        self.assertEqual(self.h.post('{"jsonrpc":"2.0"}')[2],
                         err_body(-32600, "Invalid Request", None, None))

    def test_keep_alive_connection(self):
        #  several requests, a notification among them, on one connection
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=5)
        self.addCleanup(conn.close)
        for i, with_id in enumerate([True, False, True, True]):
            req = {"jsonrpc": "2.0", "method": "evi:list"}
            if with_id:
                req["id"] = i
            conn.request("POST", "/mi", compact(req))
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200 if with_id else 204)
            self.assertEqual(resp.getheader("Connection"), None)
        conn.request("GET", "/health")
        self.assertEqual(conn.getresponse().read(),
                         b'{"status":"ok","live":true,"ready":true}')
        self.assertTrue(body)


class LargeRequests(HttpCase):
    #  events as large as the request (flatstore has no datagram limit)
    config = "[limits]\nmax_event_bytes = 1000000\nmax_control_bytes = 400000\n"

    def test_200kb_request(self):
        path = os.path.join(self.tempdir(), "big.log")
        self.h.mi("evi:subscribe", ["E_BIG", "flatstore:" + path])
        pad = "".join(chr(ord("a") + i % 26) for i in range(200 * 1024))
        body = compact({"jsonrpc": "2.0", "method": "evi:raise",
                        "params": {"event": "E_BIG",
                                   "params": {"pad": pad}}, "id": 9})
        self.assertGreater(len(body), 200 * 1024)
        start = time.monotonic()
        status, _, answer = self.h.post(body)
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual((status, answer), (200, ok_body("OK", 9)))
        wait_file(path, ("E_BIG,%s\n" % pad).encode())
        #  in pieces (chunked upload) too
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=10)
        self.addCleanup(conn.close)
        data = body.encode()
        chunks = (data[i:i + 7000] for i in range(0, len(data), 7000))
        conn.request("POST", "/mi", chunks, encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (200, ok_body("OK", 9)))

    def test_body_over_limit(self):
        expected = err_body(-32600, "Invalid Request",
                            "request body over 400000 bytes", None)
        body = b'{"jsonrpc":"2.0","method":"evi:list","id":1,"pad":"' + \
            b"x" * 400000 + b'"}'
        status, _, answer = self.h.post(body)
        self.assertEqual((status, answer), (413, expected))
        #  announced by Content-Length or found while reading chunks
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=10)
        self.addCleanup(conn.close)
        chunks = (body[i:i + 50000] for i in range(0, len(body), 50000))
        conn.request("POST", "/mi", chunks, encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        self.assertEqual((resp.status, resp.read()), (413, expected))
        #  a client waiting for "100 Continue" is refused before it sends
        with socket.create_connection(("127.0.0.1", self.http_port),
                                      10) as sock:
            sock.sendall(b"POST /mi HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: %d\r\n"
                         b"Expect: 100-continue\r\n\r\n" % len(body))
            answer = b""
            while not answer.endswith(expected):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertTrue(answer.endswith(expected), answer)
        #  the relay still serves
        self.assertEqual(self.h.mi("health"),
                         ok_body({"status": "ok", "live": True,
                                  "ready": True}))


class Routes(HttpCase):

    def test_health(self):
        status, headers, body = self.h.request("GET", "/health")
        self.assertEqual((status, body),
                         (200, b'{"status":"ok","live":true,"ready":true}'))
        self.assertEqual(headers["Content-Type"], "application/json")
        status, headers, body = self.h.request("HEAD", "/health")
        self.assertEqual((status, body), (200, b""))

    def test_not_found_and_not_allowed(self):
        for method, path, status, allow in [
                ("GET", "/", 404, None), ("GET", "/mi/x", 404, None),
                ("POST", "/nope", 404, None), ("GET", "/mi", 405, "POST"),
                ("PUT", "/mi", 405, "POST"),
                ("POST", "/metrics", 405, "GET, HEAD"),
                ("DELETE", "/health", 405, "GET, HEAD")]:
            got, headers, _ = self.h.request(method, path, body=b"{}")
            self.assertEqual(got, status, (method, path))
            self.assertEqual(headers.get("Allow"), allow, (method, path))

    def test_ipv6_and_config_key(self):
        try:
            port6 = evrtest.free_port(family=socket.AF_INET6)
        except OSError:
            self.skipTest("no IPv6 loopback")
        r6 = self.relay(args=["--http", "[::1]:%d" % port6])
        status, _, body = HttpRelay("::1", port6).request("GET", "/health")
        self.assertEqual(status, 200)
        port = evrtest.free_port()
        rc = self.relay(config="[relay]\nhttp = 127.0.0.1:%d\n" % port)
        h = HttpRelay("127.0.0.1", port)
        self.assertEqual(h.mi("evi:list"), ok_body(rc.ok("list")))
        self.assertIsNotNone(r6)

    def test_off_by_default(self):
        port = evrtest.free_port()
        self.relay(config="[relay]\nhttp =\n")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), 0.5).close()

    def test_bad_address_refused_at_start(self):
        for addr, why in [("nonsense", "expected ADDR:PORT"),
                          ("127.0.0.1:0", "bad port"),
                          ("::1:8888", "expected ADDR:PORT"),
                          ("127.0.0.1:%d" % self.http_port, "cannot listen")]:
            r = evrtest.Relay(args=["--http", addr])
            p = subprocess.run(r.command(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
            self.assertEqual(p.returncode, 1, addr)
            self.assertIn(why, p.stdout.decode(), addr)

    def test_stop_with_open_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port,
                                          timeout=5)
        conn.request("GET", "/health")
        conn.getresponse().read()
        #  the connection stays open; the cleanup's stop must exit 0
        self.addCleanup(conn.close)
        self.assertEqual(self.r.stop(), 0)


class Metrics(HttpCase):

    def publish(self, events, first_seq):
        """Publish a batch to the relay's ingest socket; wait for its ack."""
        with evrtest.ZmtpDealer(self.r.ingest) as d:
            d.send(evrtest.publish(b"http-mi-test", 1, first_seq, events))
            ack = evrtest.ack(d.recv()[-1])
        self.assertEqual(ack["status"], 0, ack)
        return ack

    def test_series_exist_and_move(self):
        sink = self.udp_sink()
        flat = os.path.join(self.tempdir(), "m.log")
        self.h.mi("evi:subscribe", ["E_M", sink.spec])
        self.h.mi("evi:subscribe", ["E_M", "flatstore:" + flat])
        m0 = self.h.metrics()
        self.assertEqual(self.h.last_metrics_type,
                         "text/plain; version=0.0.4; charset=utf-8")
        udp = {"target": sink.spec, "transport": "udp"}
        fs = {"target": "flatstore:" + flat, "transport": "flatstore"}
        for family, kind in [
                ("evrelay_uptime_seconds", "gauge"),
                ("evrelay_ingest_received", "counter"),
                ("evrelay_ingest_duplicates", "counter"),
                ("evrelay_ingest_malformed", "counter"),
                ("evrelay_ingest_too_large", "counter"),
                ("evrelay_ingest_rejected", "counter"),
                ("evrelay_ingest_queue_full", "counter"),
                ("evrelay_control_requests", "counter"),
                ("evrelay_table_subscriptions", "gauge"),
                ("evrelay_target_subscriptions", "gauge"),
                ("evrelay_target_delivered", "counter"),
                ("evrelay_target_failed", "counter"),
                ("evrelay_target_dropped", "counter"),
                ("evrelay_target_queued", "gauge"),
                ("evrelay_delivery_latency_seconds", "histogram")]:
            self.assertIn(family, m0)
            self.assertEqual(m0[family].type, kind, family)
        self.assertEqual(sample(m0, "evrelay_table_subscriptions"), 2)
        for labels in (udp, fs):
            self.assertEqual(sample(m0, "evrelay_target_delivered",
                                    "evrelay_target_delivered_total",
                                    **labels), 0)
            self.assertEqual(sample(m0, "evrelay_target_subscriptions",
                                    **labels), 1)
            self.assertEqual(sample(m0, "evrelay_target_queued", **labels), 0)

        #  5 events through ingest (one of them twice), 2 through MI
        now_us = int(time.time() * 1e6)
        events = [evrtest.pb_event("E_M", [("i", i)], raised_us=now_us)
                  for i in range(5)]
        self.publish(events, 1)
        self.publish(events[:1], 1)  # a duplicate
        self.h.mi("evi:raise", ["E_M", ["mi1"]])
        self.h.mi("raise_event", {"event": "E_M", "params": {"x": "mi2"}})
        sink.wait(7)

        def moved():
            m = self.h.metrics()
            done = all(sample(m, "evrelay_target_delivered",
                              "evrelay_target_delivered_total", **lb) == 7
                       for lb in (udp, fs))
            return m if done else None
        m1 = wait_until(moved, what="delivered_total to reach 7")
        self.assertEqual(sample(m1, "evrelay_ingest_received",
                                "evrelay_ingest_received_total") -
                         sample(m0, "evrelay_ingest_received",
                                "evrelay_ingest_received_total"), 6)
        self.assertEqual(sample(m1, "evrelay_ingest_duplicates",
                                "evrelay_ingest_duplicates_total"), 1)
        self.assertGreater(sample(m1, "evrelay_control_requests",
                                  "evrelay_control_requests_total"),
                           sample(m0, "evrelay_control_requests",
                                  "evrelay_control_requests_total"))
        for labels in (udp, fs):
            lat = "evrelay_delivery_latency_seconds"
            count = sample(m1, lat, lat + "_count", **labels)
            self.assertEqual(count, 7)
            self.assertGreater(sample(m1, lat, lat + "_sum", **labels), 0)
            buckets = sorted(
                (float(s.labels["le"]), s.value)
                for s in m1[lat].samples
                if s.name == lat + "_bucket"
                and s.labels["target"] == labels["target"])
            self.assertEqual(buckets[-1], (float("inf"), 7))
            values = [v for _, v in buckets]
            self.assertEqual(values, sorted(values), "cumulative")
            self.assertEqual(len(buckets), 17)
            self.assertEqual(buckets[0][0], 0.0001)
            self.assertEqual(buckets[-2][0], 10.0)

    def test_drops_failures_and_queue_full_move(self):
        #  a closed UDP port: connected UDP sees the refusal as failures
        closed = "udp:127.0.0.1:%d" % evrtest.free_port(socket.SOCK_DGRAM)
        self.h.mi("evi:subscribe", ["E_D", closed])
        for i in range(20):
            self.h.mi("evi:raise", ["E_D", [str(i)]])
        labels = {"target": closed, "transport": "udp"}

        def settled():
            m = self.h.metrics()
            d = sample(m, "evrelay_target_delivered",
                       "evrelay_target_delivered_total", **labels)
            f = sample(m, "evrelay_target_failed",
                       "evrelay_target_failed_total", **labels)
            return m if d + f == 20 else None
        m = wait_until(settled, what="20 outcomes")
        self.assertGreater(sample(m, "evrelay_target_failed",
                                  "evrelay_target_failed_total", **labels), 0)

    def test_virtual_children_labelled(self):
        a, b = self.udp_sink(), self.udp_sink()
        spec = "virtual:PARALLEL %s %s" % (a.spec, b.spec)
        self.h.mi("evi:subscribe", ["E_V", spec])
        self.h.mi("evi:raise", ["E_V", ["v"]])
        a.wait_one()
        b.wait_one()
        canonical = self.r.stats()["targets"][0]["socket"]

        def delivered():
            m = self.h.metrics()
            values = [sample(m, "evrelay_target_delivered",
                             "evrelay_target_delivered_total", target=s,
                             parent=canonical)
                      for s in (a.spec, b.spec)]
            return m if values == [1, 1] else None
        m = wait_until(delivered, what="children delivered")
        fam = m["evrelay_target_delivered"]
        parent = [s for s in fam.samples if s.labels["target"] == canonical]
        self.assertEqual(len(parent), 1)
        self.assertNotIn("parent", parent[0].labels)
        self.assertEqual(parent[0].labels["transport"], "virtual")

    def test_label_escaping_survives_the_parser(self):
        #  a flatstore path with a quote and a backslash
        d = self.tempdir()
        path = os.path.join(d, 'we"ird\\name.log')
        self.assertEqual(self.h.mi("evi:subscribe",
                                   ["E_Q", "flatstore:" + path]),
                         ok_body("OK"))
        m = self.h.metrics()
        self.assertEqual(sample(m, "evrelay_target_subscriptions",
                                target="flatstore:" + path), 1)

    def test_rabbitmq_password_not_exported(self):
        spec = "rabbitmq:alice:s3cret@127.0.0.1:%d/ev" % evrtest.free_port()
        answer = json.loads(self.h.mi("evi:subscribe", ["E_RMQ", spec]))
        if "error" in answer and "not available" in answer["error"].get(
                "data", ""):
            self.skipTest("no rabbitmq transport on this build")
        self.assertEqual(answer["result"], "OK")
        status, _, body = self.h.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b'target="rabbitmq:', body)
        self.assertNotIn(b"s3cret", body)
        self.assertEqual(self.h.mi("evi:subscribe", ["E_RMQ", spec, 0]),
                         ok_body("OK"))

    def test_scrapes_do_not_disturb(self):
        #  a scrape answers while events flow, and the stats agree
        sink = self.udp_sink()
        self.h.mi("evi:subscribe", ["E_S", sink.spec])
        for i in range(50):
            self.h.mi("evi:raise", ["E_S", [str(i)]])
            if i % 10 == 0:
                self.assertIn("evrelay_target_delivered", self.h.metrics())
        self.assertEqual(len(sink.wait(50)), 50)


class RealPrometheus(HttpCase):
    """A real prometheus server (Debian package `prometheus`) on loopback
    scrapes the relay; its query API shows the series and their moves."""

    def setUp(self):
        self.prometheus = shutil.which("prometheus")
        if not self.prometheus:
            self.skipTest("prometheus not installed (scripts/install-deps.sh)")
        super().setUp()
        self.prom_port = evrtest.free_port()
        d = self.tempdir()
        config = os.path.join(d, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "scrape_configs:\n  - job_name: evrelay\n"
                    "    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.http_port)
        log = open(os.path.join(d, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [self.prometheus, "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(d, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.prom_port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self.stop_prometheus, proc)
        self.api = HttpRelay("127.0.0.1", self.prom_port)

        def ready():
            try:
                return self.api.request("GET", "/-/ready", timeout=2)[0] \
                    == 200
            except OSError:
                return proc.poll() is not None
        wait_until(ready, 30, 0.1, "prometheus to be ready")
        self.assertIsNone(proc.poll(), "prometheus exited at start")

    def stop_prometheus(self, proc):
        """Stop our prometheus by PID: SIGTERM, then SIGKILL."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def query(self, promql):
        """An instant query: [(labels, float value)]."""
        status, _, body = self.api.request(
            "GET", "/api/v1/query?" + urllib.parse.urlencode(
                {"query": promql}))
        answer = json.loads(body)
        self.assertEqual((status, answer["status"]), (200, "success"), body)
        return [(r["metric"], float(r["value"][1]))
                for r in answer["data"]["result"]]

    def wait_query(self, promql, predicate, what):
        """Wait until the query's result satisfies predicate; return it."""
        return wait_until(lambda: (lambda r: r if predicate(r) else None)(
            self.query(promql)), 30, 0.25, what)

    def test_series_exist_and_move_in_prometheus(self):
        sink = self.udp_sink()
        self.h.mi("evi:subscribe", ["E_P", sink.spec])
        self.wait_query('up{job="evrelay"}', lambda r: r and r[0][1] == 1,
                        "a successful scrape")
        sel = '{target="%s",transport="udp"}' % sink.spec
        before = self.wait_query("evrelay_target_delivered_total" + sel,
                                 lambda r: len(r) == 1, "the target series")
        self.assertEqual(before[0][1], 0)
        received = self.query("evrelay_ingest_received_total")[0][1]
        now_us = int(time.time() * 1e6)
        with evrtest.ZmtpDealer(self.r.ingest) as d:
            d.send(evrtest.publish(b"prom", 1, 1, [
                evrtest.pb_event("E_P", [("i", i)], raised_us=now_us)
                for i in range(5)]))
            d.recv()
        self.h.mi("evi:raise", ["E_P", ["x"]])
        sink.wait(6)
        self.wait_query("evrelay_target_delivered_total" + sel,
                        lambda r: r and r[0][1] == 6, "delivered to move")
        self.wait_query("evrelay_ingest_received_total",
                        lambda r: r and r[0][1] == received + 5,
                        "received to move")
        self.wait_query("evrelay_delivery_latency_seconds_count" + sel,
                        lambda r: r and r[0][1] == 6, "the histogram")
        p99 = self.query("histogram_quantile(0.99, "
                         "evrelay_delivery_latency_seconds_bucket%s)" % sel)
        self.assertEqual(len(p99), 1)
        self.assertGreater(p99[0][1], 0)
        self.assertLessEqual(p99[0][1], 10)


if __name__ == "__main__":
    evrtest.main()
