"""test_agent_kamailio - a real Kamailio as a raising node, through
evrelay-agent's evapi consumer mode.

Kamailio (Debian package kamailio + kamailio-extra-modules for evapi)
runs with a generated config: its request_route relays one evapi message
per SIP request, built three ways (literal JSON-RPC text, JSON built with
the jansson module, legacy text) plus one that is not an event. The test
sends SIP requests to Kamailio over UDP, and a UDP sink subscribed to a
real evrelayd must receive exactly the JSON-RPC notification of each.
The agent connects out to evapi, and reconnects when Kamailio starts
late or restarts.

Python 3 standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import evrtest
from evrtest import wait_until
from test_agent import AgentTestCase

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"

CONFIG = r'''#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:%(sip)d
mpath="%(modules)s/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "jansson.so"
loadmodule "evapi.so"
modparam("evapi", "bind_addr", "127.0.0.1:%(evapi)d")
modparam("evapi", "netstring_format", 1)

request_route {
    if ($rm == "OPTIONS") {
        # JSON-RPC written out (values must need no escaping)
        evapi_relay("{\"jsonrpc\":\"2.0\",\"method\":\"E_SIP_OPTIONS\",\"params\":{\"callid\":\"$ci\",\"cseq\":$cs}}");
    } else if ($rm == "MESSAGE") {
        # JSON-RPC built with the jansson module: escaping done right
        $var(ev) = "{\"jsonrpc\":\"2.0\",\"method\":\"E_SIP_MESSAGE\"}";
        jansson_set("string", "params.from", "$fu", "$var(ev)");
        jansson_set("string", "params.body", "$rb", "$var(ev)");
        jansson_set("integer", "params.len", "$cl", "$var(ev)");
        evapi_relay("$var(ev)");
    } else if ($rm == "NOTIFY") {
        # the legacy text format
        evapi_relay("E_SIP_NOTIFY\nip::$si\nport::$sp\n\n");
    } else {
        evapi_relay("not an event");
    }
    sl_send_reply("200", "OK");
    exit;
}
'''


class Kamailio:
    """One kamailio process in the foreground, stopped by PID."""

    def __init__(self, sip_port=None, evapi_port=None):
        self.sip_port = sip_port or evrtest.free_port(socket.SOCK_DGRAM)
        self.evapi_port = evapi_port or evrtest.free_port()
        self.tmp = tempfile.mkdtemp(prefix="evr-kamailio-")
        self.cfg = os.path.join(self.tmp, "kamailio.cfg")
        with open(self.cfg, "w") as f:
            f.write(CONFIG % {"sip": self.sip_port, "evapi": self.evapi_port,
                              "modules": MODULES})
        self.log_path = os.path.join(self.tmp, "kamailio.log")
        self.proc = None

    def start(self, timeout=15.0):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [KAMAILIO, "-DD", "-E", "-f", self.cfg,
             "-P", os.path.join(self.tmp, "kamailio.pid")],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("kamailio exited with %s:\n%s"
                                     % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.evapi_port),
                                         0.2).close()
                return True
            except OSError:
                return False
        wait_until(listening, timeout, what="kamailio's evapi port")
        return self

    def log(self):
        data = evrtest.read_bytes(self.log_path) or b""
        return data.decode("utf-8", "replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._log.close()
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def send(self, method, body=b"", call_id="abc-1"):
        """Send one SIP request over UDP (the 200 OK is not awaited)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        head = ("%s sip:a@127.0.0.1 SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s\r\n"
                "From: <sip:alice@example.com>;tag=1\r\n"
                "To: <sip:a@example.com>\r\n"
                "Call-ID: %s\r\nCSeq: 7 %s\r\nMax-Forwards: 70\r\n"
                "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                % (method, port, call_id, call_id, method, len(body)))
        s.sendto(head.encode() + body, ("127.0.0.1", self.sip_port))
        s.close()
        return port


class KamailioTest(AgentTestCase):

    def kamailio(self, start=True, **kwargs):
        k = Kamailio(**kwargs)
        self.addCleanup(k.cleanup)
        if start:
            k.start()
        return k

    def connected(self, agent, connects=1):
        def check():
            st = agent.input_stats("kamailio:")
            c = st["connections"]
            return st if c["connected"] and c["connects"] >= connects \
                else None
        return wait_until(check, 15, what="the agent connected to evapi")

    def test_evapi_events(self):
        sink = self.udp_sink()
        relay = self.relay()
        for event in ("E_SIP_OPTIONS", "E_SIP_MESSAGE", "E_SIP_NOTIFY"):
            relay.subscribe(event, sink.spec)
        kam = self.kamailio()
        agent = self.agent(relay, udp=0, tcp=0,
                           args=["--kamailio", "127.0.0.1:%d"
                                 % kam.evapi_port])
        self.connected(agent)

        kam.send("OPTIONS", call_id="opt-1")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_SIP_OPTIONS",'
                         b'"params":{"callid":"opt-1","cseq":7}}')
        body = b'hi "q"\\ \xc3\xa9'
        kam.send("MESSAGE", body)
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_SIP_MESSAGE",'
                         b'"params":{"from":"sip:alice@example.com",'
                         b'"body":"hi \\"q\\"\\\\ \xc3\xa9","len":10}}')
        port = kam.send("NOTIFY")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_SIP_NOTIFY",'
                         b'"params":{"ip":"127.0.0.1","port":%d}}' % port)
        kam.send("INFO")  # "not an event"
        st = wait_until(lambda: (lambda s: s if s["received"] == 4 else None)(
            agent.input_stats("kamailio:")), 10, what="4 evapi messages")
        self.assertEqual(st["raised"], 3)
        self.assertEqual(st["malformed"]["bad_legacy"], 1)
        self.assertEqual(st["connections"]["disconnects"], 0)
        sink.expect_none(0.3)

    def test_kamailio_late_and_restarted(self):
        sink = self.udp_sink()
        relay = self.relay()
        relay.subscribe("E_SIP_OPTIONS", sink.spec)
        kam = self.kamailio(start=False)
        agent = self.agent(relay, udp=0, tcp=0,
                           args=["--kamailio", "127.0.0.1:%d"
                                 % kam.evapi_port])
        time.sleep(1.0)
        st = agent.input_stats("kamailio:")
        self.assertFalse(st["connections"]["connected"])
        self.assertEqual(st["connections"]["connects"], 0)
        kam.start()
        self.connected(agent)
        kam.send("OPTIONS", call_id="late-1")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_SIP_OPTIONS",'
                         b'"params":{"callid":"late-1","cseq":7}}')
        kam.stop()
        wait_until(lambda: agent.input_stats("kamailio:")["connections"]
                   ["disconnects"] == 1, 10, what="the disconnect noticed")
        kam.start()
        st = self.connected(agent, connects=2)
        kam.send("OPTIONS", call_id="again-1")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_SIP_OPTIONS",'
                         b'"params":{"callid":"again-1","cseq":7}}')
        #  one warning per outage, not one per attempt
        log = agent.log()
        self.assertEqual(log.count("cannot connect"), 1, log)
        self.assertEqual(log.count("connection lost"), 1, log)
        self.assertEqual(agent.stop(), 0)


if __name__ == "__main__":
    if not os.access(KAMAILIO, os.X_OK) or \
            not os.path.exists(os.path.join(MODULES, "evapi.so")):
        sys.exit("kamailio or its evapi module is not installed: run "
                 "scripts/install-deps.sh")
    evrtest.main()
