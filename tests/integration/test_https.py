"""HTTPS on the relay's HTTP face, against real evrelayd processes: MI,
metrics and health over TLS with a bearer token (an event subscribed and
raised through it arrives at a real UDP sink), plain HTTP refused on the
TLS port, and every bad TLS setting refused at start with its reason.

Certificates are made by the openssl command line (scripts/install-deps.sh
installs it): self-signed, for IP 127.0.0.1, trusted by the test client.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

TOKEN = "tls-token-0123456789"
CONFIG = ("[http_auth]\nops = bearer:%s\n[policy]\nops = all\nlocal = list\n"
          "[allow]\ncidrs = 127.0.0.0/8\n" % TOKEN)


def make_cert(directory, name, cn="127.0.0.1"):
    """A self-signed EC certificate for IP 127.0.0.1: (cert, key) paths."""
    cert = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


class Https(evrtest.RelayTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.tempdir()
        self.cert, self.key = make_cert(self.dir, "relay")
        self.port = evrtest.free_port()

    def start(self, args=(), config=CONFIG):
        return self.relay(args=["--http", "127.0.0.1:%d" % self.port,
                                "--http-cert", self.cert,
                                "--http-key", self.key] + list(args),
                          config=config)

    def request(self, method, path, body=None, token=TOKEN):
        """One HTTPS request that verifies the relay's certificate:
        (status, body)."""
        ctx = ssl.create_default_context(cafile=self.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=10, context=ctx)
        headers = {"Authorization": "Bearer " + token} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def mi(self, method, params):
        body = json.dumps({"jsonrpc": "2.0", "method": method,
                           "params": params, "id": 7}).encode()
        status, answer = self.request("POST", "/mi", body)
        self.assertEqual(status, 200, answer)
        return json.loads(answer)

    def test_mi_metrics_and_health_over_tls(self):
        sink = self.udp_sink()
        self.start()
        self.assertEqual(self.request("GET", "/health", token=None),
                         (200, b'{"status":"ok","live":true,"ready":true}'))
        self.assertEqual(self.mi("evi:subscribe", ["E_TLS", sink.spec]),
                         {"jsonrpc": "2.0", "result": "OK", "id": 7})
        self.assertEqual(self.mi("evi:raise", ["E_TLS", {"n": 1}]),
                         {"jsonrpc": "2.0", "result": "OK", "id": 7})
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_TLS",'
                         b'"params":{"n":1}}')
        status, text = self.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b'evrelay_target_delivered_total{target="%s",'
                      b'transport="udp"} 1\n' % sink.spec.encode(), text)
        #  credentials are still required under TLS
        status, _ = self.request("GET", "/metrics", token="wrong")
        self.assertEqual(status, 401)

    def test_plain_http_gets_no_answer_and_tls_goes_on(self):
        r = self.start()
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                got = b""
        self.assertFalse(got.startswith(b"HTTP/"), got)
        self.assertEqual(self.request("GET", "/health", token=None)[0], 200)
        self.assertIn("serving HTTPS on 127.0.0.1:%d" % self.port, r.log())

    def test_client_refuses_an_unknown_certificate(self):
        self.start()
        other, _ = make_cert(self.dir, "other")
        ctx = ssl.create_default_context(cafile=other)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=10, context=ctx)
        with self.assertRaises(ssl.SSLCertVerificationError):
            conn.request("GET", "/health")
        conn.close()

    def test_config_file_keys(self):
        config = CONFIG + "[security]\nhttp_cert = %s\nhttp_key = %s\n" % (
            self.cert, self.key)
        self.relay(args=["--http", "127.0.0.1:%d" % self.port],
                   config=config)
        self.assertEqual(self.request("GET", "/health", token=None)[0], 200)

    def verified_by(self, cafile):
        """Whether a GET /health whose client trusts only cafile works."""
        ctx = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                           timeout=10, context=ctx)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except ssl.SSLError:
            return False
        finally:
            conn.close()

    def test_sighup_reads_a_renewed_certificate(self):
        r = self.start()
        old = os.path.join(self.dir, "old.pem")
        shutil.copy(self.cert, old)
        new_cert, new_key = make_cert(self.dir, "renewed")
        shutil.copy(new_cert, self.cert)
        shutil.copy(new_key, self.key)
        self.assertTrue(self.verified_by(old))  # not read before SIGHUP
        os.kill(r.pid, signal.SIGHUP)
        evrtest.wait_until(lambda: self.verified_by(new_cert),
                           what="the renewed certificate served")
        self.assertFalse(self.verified_by(old))
        #  a key that does not go with the certificate: the pair in use
        #  stays, and the reason is logged
        _, other_key = make_cert(self.dir, "other")
        shutil.copy(other_key, self.key)
        os.kill(r.pid, signal.SIGHUP)
        evrtest.wait_until(lambda: "kept the ones read before" in r.log(),
                           what="the refused pair logged")
        self.assertTrue(self.verified_by(new_cert))
        #  an unreadable key: the same
        with open(self.key, "w") as f:
            f.write("garbage\n")
        os.kill(r.pid, signal.SIGHUP)
        evrtest.wait_until(
            lambda: "SIGHUP: http: cannot read the TLS key %s: not a PEM "
                    "file" % self.key in r.log(),
            what="the unreadable key logged")
        self.assertTrue(self.verified_by(new_cert))
        self.assertEqual(self.mi("evi:list", [])["id"], 7)
        self.assertEqual(r.stop(), 0)

    def refused(self, *args):
        """evrelayd with these HTTP flags must refuse to start: its
        output."""
        cmd = [evrtest.EVRELAYD,
               "--ingest", "tcp://127.0.0.1:%d" % evrtest.free_port(),
               "--control", "tcp://127.0.0.1:%d" % evrtest.free_port(),
               "--http", "127.0.0.1:%d" % self.port] + list(args)
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=20)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 1, out)
        return out

    def test_bad_tls_settings_refused_at_start(self):
        out = self.refused("--http-cert", self.cert)
        self.assertIn("TLS needs both a certificate (http_cert) and its key "
                      "(http_key)", out)
        out = self.refused("--http-key", self.key)
        self.assertIn("TLS needs both", out)
        missing = os.path.join(self.dir, "missing.pem")
        out = self.refused("--http-cert", missing, "--http-key", self.key)
        self.assertIn("cannot read the TLS certificate %s: No such file"
                      % missing, out)
        garbage = os.path.join(self.dir, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        out = self.refused("--http-cert", self.cert, "--http-key", garbage)
        self.assertIn("cannot read the TLS key %s: not a PEM file" % garbage,
                      out)
        _, other_key = make_cert(self.dir, "other")
        out = self.refused("--http-cert", self.cert, "--http-key", other_key)
        self.assertIn("cannot serve on 127.0.0.1:%d (is the TLS key the "
                      "certificate's?)" % self.port, out)
        #  no secret in any message
        with open(self.key) as f:
            body = f.read().splitlines()[1]
        self.assertNotIn(body, out)


if __name__ == "__main__":
    unittest.main()
