"""http:// and https:// webhook targets against real HTTP servers
(http.server in threads on 127.0.0.1): the exact POST, keep-alive
connection reuse, 2xx = delivered, any other status / a timeout / a
refused connection = failed (never retried), certificate verification for
https, FAILOVER and ROUND-ROBIN over webhooks, and a clean stop with a
request in flight.
"""

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


def jsonrpc(event, params=None):
    """The exact JSON-RPC notification the relay sends (reference §4.1)."""
    out = {"jsonrpc": "2.0", "method": event}
    if params:
        out["params"] = params
    return json.dumps(out, separators=(",", ":")).encode()


class Webhook:
    """An HTTP/1.1 server on 127.0.0.1 (or ::1) answering every POST with `status`
    (changeable) or, with hang=True, never. Records each request as
    (method, path, headers, body) and counts accepted connections."""

    def __init__(self, status=200, hang=False, tls_context=None,
                 ipv6=False):
        self.status = status
        self.hang = hang
        self.requests = []
        self.connections = 0
        self.cond = threading.Condition()
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with hook.cond:
                    hook.requests.append((self.command, self.path,
                                          dict(self.headers.items()), body))
                    hook.cond.notify_all()
                if hook.hang:
                    hook.release.wait(30)
                    self.close_connection = True
                    return
                self.send_response(hook.status)
                if hook.status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                if hook.status in (204, 304):  # no body, by definition
                    self.end_headers()
                    return
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ipv6 else socket.AF_INET

            def handle_error(self, request, client_address):
                pass  # a refused TLS handshake, a client gone: expected

            def process_request(self, request, client_address):
                with hook.cond:
                    hook.connections += 1
                super().process_request(request, client_address)

        self.host = "[::1]" if ipv6 else "127.0.0.1"
        self.server = Server(("::1" if ipv6 else "127.0.0.1", 0), Handler)
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(
                self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path="/hook", scheme="http"):
        return "%s://%s:%d%s" % (scheme, self.host, self.port, path)

    def wait(self, n, timeout=10.0):
        """Wait for at least n requests; return all recorded so far."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d request(s), got %d"
                                         % (n, len(self.requests)))
                self.cond.wait(min(left, 0.2))
            return list(self.requests)

    def bodies(self):
        with self.cond:
            return [r[3] for r in self.requests]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def target(relay, transport):
    """The stats entry of the (single) target of a transport ("http"
    stands for https too)."""
    names = ("http", "https") if transport == "http" else (transport,)
    found = [t for t in relay.stats()["targets"]
             if t["transport"] in names]
    return found[0] if len(found) == 1 else None


def counts(relay, transport):
    t = target(relay, transport) or {}
    return tuple(t.get(k) for k in ("delivered", "failed", "dropped",
                                    "queued"))


class HttpTransport(evrtest.RelayTestCase):

    def webhook(self, *args, **kwargs):
        hook = Webhook(*args, **kwargs)
        self.addCleanup(hook.close)
        return hook

    def wait_counts(self, relay, expected, transport="http", timeout=10.0):
        """Wait until (delivered, failed, dropped, queued) == expected."""
        try:
            evrtest.wait_until(lambda: counts(relay, transport) == expected,
                               timeout=timeout, what="counts %r" % (expected,))
        except AssertionError:
            raise AssertionError("counts %r, expected %r" % (
                counts(relay, transport), expected))

    def test_post_exact_body_and_headers(self):
        hook = self.webhook()
        r = self.relay()
        r.subscribe("E_HTTP", hook.url("/hook?x=1"))
        r.raise_event("E_HTTP", '{"ip":"10.0.0.1","port":5060}')
        (method, path, headers, body), = hook.wait(1)
        self.assertEqual(method, "POST")
        self.assertEqual(path, "/hook?x=1")
        self.assertEqual(body, b'{"jsonrpc":"2.0","method":"E_HTTP",'
                         b'"params":{"ip":"10.0.0.1","port":5060}}')
        self.assertEqual(headers.get("Content-Type"), "application/json")
        self.assertEqual(headers.get("Content-Length"), str(len(body)))
        self.assertNotIn("Expect", headers)
        #  the event id (a control raise: relay-<boot us>-<n>)
        self.assertRegex(headers.get("X-Evrelay-Event-Id", ""),
                         r"^relay-\d+-\d+$")
        self.wait_counts(r, (1, 0, 0, 0))

    def test_ipv6_webhook(self):
        hook = self.webhook(ipv6=True)
        r = self.relay()
        r.subscribe("E_HTTP", hook.url())
        r.raise_event("E_HTTP", {"v6": 1})
        (_, _, _, body), = hook.wait(1)
        self.assertEqual(body, jsonrpc("E_HTTP", {"v6": 1}))
        self.wait_counts(r, (1, 0, 0, 0))

    def test_large_body_without_expect_continue(self):
        hook = self.webhook()
        r = self.relay()
        r.subscribe("E_HTTP", hook.url())
        big = "x" * 20000
        r.raise_event("E_HTTP", {"v": big})
        (_, _, headers, body), = hook.wait(1)
        self.assertEqual(body, jsonrpc("E_HTTP", {"v": big}))
        self.assertNotIn("Expect", headers)
        self.wait_counts(r, (1, 0, 0, 0))

    def test_keep_alive_reuses_one_connection(self):
        hook = self.webhook()
        r = self.relay()
        r.subscribe("E_HTTP", hook.url())
        for i in range(5):
            r.raise_event("E_HTTP", {"n": i})
            hook.wait(i + 1)
            self.wait_counts(r, (i + 1, 0, 0, 0))
        self.assertEqual(hook.connections, 1)
        #  a burst spreads over at most 4 kept-alive connections
        for i in range(5, 45):
            r.raise_event("E_HTTP", {"n": i})
        hook.wait(45)
        self.wait_counts(r, (45, 0, 0, 0))
        self.assertLessEqual(hook.connections, 4)
        self.assertEqual(sorted(hook.bodies()),
                         sorted(jsonrpc("E_HTTP", {"n": i})
                                for i in range(45)))

    def test_only_2xx_is_delivered(self):
        hook = self.webhook(status=204)
        r = self.relay()
        r.subscribe("E_HTTP", hook.url())
        r.raise_event("E_HTTP", {"n": 0})
        self.wait_counts(r, (1, 0, 0, 0))
        failed = 0
        for status in (500, 503, 404, 400, 302):
            hook.status = status
            r.raise_event("E_HTTP", {"status": status})
            failed += 1
            self.wait_counts(r, (1, failed, 0, 0))
        #  one request per event: failures are not retried, redirects not
        #  followed
        time.sleep(0.3)
        self.assertEqual(len(hook.requests), 6)
        self.assertTrue(all(p == "/hook" for _, p, _, _ in hook.requests))
        hook.status = 201
        r.raise_event("E_HTTP", {"n": 1})
        self.wait_counts(r, (2, failed, 0, 0))
        self.assertIn("HTTP status 500", r.log())

    def test_server_that_never_answers_fails_after_timeout(self):
        hook = self.webhook(hang=True)
        r = self.relay(config="[http]\ntimeout = 500\n")
        r.subscribe("E_HTTP", hook.url())
        start = time.monotonic()
        r.raise_event("E_HTTP", {"n": 0})
        r.raise_event("E_HTTP", {"n": 1})
        hook.wait(1)
        self.wait_counts(r, (0, 2, 0, 0), timeout=5)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 4.0)

    def test_connection_refused_fails(self):
        port = evrtest.free_port()
        r = self.relay()
        r.subscribe("E_HTTP", "http://127.0.0.1:%d/" % port)
        for i in range(3):
            r.raise_event("E_HTTP", {"n": i})
        self.wait_counts(r, (0, 3, 0, 0))
        self.assertIn("127.0.0.1", r.log())

    def test_connect_timeout(self):
        #  a listener whose backlog is full never completes a handshake
        #  on loopback: the connect times out after connect_timeout_ms
        lsock = socket.socket()
        self.addCleanup(lsock.close)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(lsock.getsockname())
            except BlockingIOError:
                pass
            fillers.append(s)
        for s in fillers:
            self.addCleanup(s.close)
        r = self.relay(config="[relay]\nconnect_timeout_ms = 300\n"
                              "[http]\ntimeout = 20000\n")
        r.subscribe("E_HTTP", "http://127.0.0.1:%d/" % lsock.getsockname()[1])
        start = time.monotonic()
        r.raise_event("E_HTTP", {"n": 0})
        self.wait_counts(r, (0, 1, 0, 0), timeout=10)
        self.assertLess(time.monotonic() - start, 5.0)

    def pem_pair(self, name):
        """A self-signed certificate for IP 127.0.0.1 and its key:
        (cert, key) paths."""
        d = self.tempdir()
        key = os.path.join(d, name + ".key")
        cert = os.path.join(d, name + ".pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                        "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return cert, key

    def test_https_verifies_the_certificate(self):
        cert, key = self.pem_pair("server")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        hook = self.webhook(tls_context=ctx)
        r = self.relay()
        r.subscribe("E_HTTP", hook.url(scheme="https"))
        r.raise_event("E_HTTP", {"n": 0})
        #  self-signed: not in the system CA store, so refused
        self.wait_counts(r, (0, 1, 0, 0))
        self.assertEqual(hook.requests, [])
        self.assertRegex(r.log(), "(?i)certificate")

    def test_https_private_ca_and_client_certificate(self):
        """[http] ca_file trusts a private CA; client_cert and client_key
        authenticate the relay to a webhook that requires them (mutual
        TLS); without them the webhook refuses the handshake."""
        server_cert, server_key = self.pem_pair("server")
        client_cert, client_key = self.pem_pair("client")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(server_cert, server_key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_cert)
        hook = self.webhook(tls_context=ctx)
        ca_only = "[http]\nca_file = %s\n" % server_cert
        mutual = ca_only + "client_cert = %s\nclient_key = %s\n" % (
            client_cert, client_key)
        r = self.relay(config=mutual)
        r.subscribe("E_MTLS", hook.url(scheme="https"))
        r.raise_event("E_MTLS", {"n": 1})
        self.wait_counts(r, (1, 0, 0, 0))
        self.assertEqual(hook.bodies(), [jsonrpc("E_MTLS", {"n": 1})])
        r.stop()
        r2 = self.relay(config=ca_only)
        r2.subscribe("E_MTLS", hook.url(scheme="https"))
        r2.raise_event("E_MTLS", {"n": 2})
        self.wait_counts(r2, (0, 1, 0, 0))
        self.assertEqual(len(hook.bodies()), 1)

    def test_bad_tls_files_refused_at_start(self):
        cert, key = self.pem_pair("client")
        missing = os.path.join(self.tempdir(), "missing.pem")
        for config, message in (
                ("[http]\nca_file = %s\n" % missing,
                 "http.ca_file: cannot read %s: No such file" % missing),
                ("[http]\nclient_cert = %s\n" % cert,
                 "http: client_cert and client_key go together")):
            r = evrtest.Relay(config=config)
            self.addCleanup(r.cleanup)
            p = subprocess.run(r.command(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=20)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn(message, p.stdout.decode())

    def test_failover_from_500_to_200(self):
        bad, good = self.webhook(status=500), self.webhook()
        r = self.relay()
        r.subscribe("E_HTTP", "virtual:FAILOVER %s %s"
                    % (bad.url(), good.url()))
        n = 10
        for i in range(n):
            r.raise_event("E_HTTP", {"n": i})
        good.wait(n)
        self.wait_counts(r, (n, 0, 0, 0), transport="virtual")
        self.assertEqual(good.bodies(),
                         [jsonrpc("E_HTTP", {"n": i}) for i in range(n)])
        #  the failed child is skipped for failover_timeout after its
        #  first failure
        self.assertGreaterEqual(len(bad.requests), 1)
        bchild, gchild = target(r, "virtual")["children"]
        self.assertEqual(bchild["delivered"], 0)
        self.assertEqual(bchild["failed"], len(bad.requests))
        self.assertEqual(gchild["delivered"], n)

    def test_round_robin_spreads_evenly(self):
        a, b = self.webhook(), self.webhook()
        r = self.relay()
        r.subscribe("E_HTTP", "virtual:ROUND-ROBIN %s %s" % (a.url(), b.url()))
        n = 20
        for i in range(n):
            r.raise_event("E_HTTP", {"n": i})
        self.wait_counts(r, (n, 0, 0, 0), transport="virtual")
        self.assertEqual(len(a.requests), n // 2)
        self.assertEqual(len(b.requests), n // 2)
        self.assertEqual(sorted(a.bodies() + b.bodies()),
                         sorted(jsonrpc("E_HTTP", {"n": i})
                                for i in range(n)))

    def test_stop_with_request_in_flight(self):
        hook = self.webhook(hang=True)
        relay = evrtest.Relay()
        self.addCleanup(relay.cleanup)
        relay.start()
        relay.subscribe("E_HTTP", hook.url())
        relay.raise_event("E_HTTP", {"n": 0})
        hook.wait(1)
        start = time.monotonic()
        self.assertEqual(relay.stop(), 0)
        self.assertLess(time.monotonic() - start, 3.0)


if __name__ == "__main__":
    evrtest.main()
