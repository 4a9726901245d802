"""evrtest - shared helpers for evrelay's process-level integration tests.

The tests run the real `evrelayd` and `evrelayctl` binaries on loopback
against real UDP and unix datagram listeners and real files. Binaries come
from $EVR_BUILD_DIR (default: <repo>/build).

What is here:
  free_ports(n)        distinct free TCP (or UDP) ports on 127.0.0.1, below
                       the ephemeral range, reserved for this process
  Relay                one evrelayd process: start, wait until it answers,
                       control commands through evrelayctl, stop by PID,
                       kill (SIGKILL) and restart on the same ports
  UdpSink, UnixSink    datagram listeners with a 4 MiB receive buffer,
                       drained by a background thread
  wait_until,
  wait_file            polling helpers (no fixed sleeps)
  ZmtpDealer, pb_*     a minimal ZMTP 3.0 DEALER and protobuf codec, to
                       send exact (or deliberately broken) frames to the
                       relay's control and ingest sockets (publish() with
                       an ack point, ack() with failed/rejected_offsets)

Python 3 standard library only.
"""

import atexit
import fcntl
import json as jsonlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("EVR_BUILD_DIR") or os.path.join(REPO, "build")
EVRELAYD = os.path.join(BUILD_DIR, "evrelayd")
EVRELAYCTL = os.path.join(BUILD_DIR, "evrelayctl")

#  Receive buffer of every sink (the kernel caps it at net.core.rmem_max).
SINK_RCVBUF = 4 * 1024 * 1024

#  Every relay process started by this module; killed at exit if a test
#  left one behind (it should not: tests stop relays in cleanups).
_LIVE = {}
_LIVE_LOCK = threading.Lock()


def _kill_leftovers():
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
        _LIVE.clear()
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(_kill_leftovers)


def import_system_module(name):
    """Import a module Debian packages for its own python3 (python3-zmq,
    python3-prometheus-client). When the python3 running the test is
    another one (a pyenv shim, say) without it, the test re-runs itself
    under /usr/bin/python3."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        system_py = "/usr/bin/python3"
        if (os.path.exists(system_py) and not os.environ.get("EVR_REEXEC")
                and os.path.realpath(sys.executable)
                != os.path.realpath(system_py)):
            os.environ["EVR_REEXEC"] = "1"
            os.execv(system_py, [system_py] + sys.argv)
        raise


def require_binaries(*paths):
    """Fail loudly (not skip) when a binary under test is missing."""
    for path in paths or (EVRELAYD, EVRELAYCTL):
        if not os.access(path, os.X_OK):
            raise RuntimeError(
                "%s not built (set EVR_BUILD_DIR, build the target)" % path)


# --------------------------------------------------------------------------
# Small utilities


# Ports handed to child processes come from below the kernel's ephemeral
# range: a port picked by bind(port 0) can be taken again by any outgoing
# connection on the machine before the child binds it. Each port is also
# reserved with a lock file for the life of this process, so the test
# processes ctest runs side by side never pick the same one.
_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "evrtest-ports")
_HELD_PORTS = []
_RNG = random.SystemRandom()


def _port_range():
    """[low, high) for test ports: under the ephemeral range, at most
    [20000, 32768)."""
    high = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(high, int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    low = 20000 if high > 21000 else 10000
    return low, high


def _reserve(port):
    """Take the lock file of a port for this process; False if another
    process (or an earlier call here) holds it."""
    os.makedirs(_PORT_LOCK_DIR, mode=0o1777, exist_ok=True)
    fd = os.open(os.path.join(_PORT_LOCK_DIR, str(port)),
                 os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _HELD_PORTS.append(fd)
    return True


def _bindable(port, kind, family):
    """True when port can be bound now, on loopback, as kind and family."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_base(offsets, kind=socket.SOCK_STREAM, family=socket.AF_INET):
    """A base port such that base + o is free and reserved for every o in
    offsets."""
    low, high = _port_range()
    span = max(offsets) + 1
    for _ in range(1000):
        base = _RNG.randrange(low, high - span)
        ports = [base + o for o in offsets]
        if all(_bindable(p, kind, family) for p in ports) and \
                all(_reserve(p) for p in ports):
            return base
    raise RuntimeError("no free port block of %d in [%d, %d)"
                       % (span, low, high))


def free_ports(n=1, kind=socket.SOCK_STREAM, family=socket.AF_INET):
    """n distinct free ports on loopback, reserved for this process."""
    return [free_port_base([0], kind, family) for _ in range(n)]


def free_port(kind=socket.SOCK_STREAM, family=socket.AF_INET):
    return free_ports(1, kind, family)[0]


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll predicate() until it returns a truthy value; return that value.
    Raises AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s"
                                 % (timeout, what))
        time.sleep(interval)


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def wait_file(path, expected=None, timeout=10.0, min_len=None):
    """Wait until the file exists and (if given) its content equals
    `expected` (bytes) or is at least `min_len` bytes. Returns the content.
    On timeout the assertion names what the file held."""
    def check():
        data = read_bytes(path)
        if data is None:
            return None
        if expected is not None:
            return data if data == expected else None
        if min_len is not None:
            return data if len(data) >= min_len else None
        return data if data else None
    try:
        return wait_until(check, timeout, what="content of %s" % path)
    except AssertionError:
        raise AssertionError("file %s: expected %r, holds %r"
                             % (path, expected, read_bytes(path)))


def udp_rcvbuf_errors():
    """The host's UDP RcvbufErrors counter (receiver-side drops), or None."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [l.split() for l in f if l.startswith("Udp:")]
        head, values = lines[0], lines[1]
        return int(values[head.index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------
# Datagram sinks


class _Sink:
    """A bound datagram socket drained by a thread into a list."""

    def __init__(self, sock):
        self.sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_RCVBUF)
        except OSError:
            pass
        self.sock.settimeout(0.1)
        self._items = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        recv = self.sock.recv
        items = self._items
        cond = self._cond
        while not self._closed:
            try:
                data = recv(70000)
            except socket.timeout:
                continue
            except OSError:
                if self._closed:
                    return
                continue
            batch = [data]
            #  drain whatever else is already queued without the timeout
            try:
                self.sock.setblocking(False)
                while len(batch) < 4096:
                    batch.append(recv(70000))
            except (BlockingIOError, OSError):
                pass
            finally:
                if not self._closed:
                    self.sock.settimeout(0.1)
            with cond:
                items.extend(batch)
                cond.notify_all()

    @property
    def rcvbuf(self):
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def count(self):
        with self._cond:
            return len(self._items)

    def items(self):
        with self._cond:
            return list(self._items)

    def take(self):
        """Everything received so far; the sink starts empty again."""
        with self._cond:
            got = list(self._items)
            del self._items[:]
            return got

    def wait(self, n=1, timeout=10.0):
        """Wait until at least n datagrams arrived; return them all (and
        forget them). Raises AssertionError with what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "expected %d datagram(s) within %.1f s, got %d: %r"
                        % (n, timeout, len(self._items), self._items[:5]))
                self._cond.wait(min(left, 0.2))
            got = list(self._items)
            del self._items[:]
            return got

    def drain(self, n, timeout=30.0, quiet=2.0):
        """Wait until n datagrams arrived, or nothing new came for `quiet`
        seconds; return (and forget) what arrived, possibly fewer than n."""
        deadline = time.monotonic() + timeout
        with self._cond:
            last, last_change = len(self._items), time.monotonic()
            while len(self._items) < n:
                now = time.monotonic()
                if len(self._items) != last:
                    last, last_change = len(self._items), now
                if now >= deadline or now - last_change >= quiet:
                    break
                self._cond.wait(0.1)
            got = list(self._items)
            del self._items[:]
            return got

    def wait_one(self, timeout=10.0):
        got = self.wait(1, timeout)
        if len(got) != 1:
            raise AssertionError("expected one datagram, got %r" % got)
        return got[0]

    def expect_none(self, duration=0.5):
        """Assert that nothing arrives within duration seconds."""
        time.sleep(duration)
        got = self.take()
        if got:
            raise AssertionError("expected no datagram, got %r" % got)

    def close(self):
        self._closed = True
        self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class UdpSink(_Sink):
    """UDP listener on 127.0.0.1 (ipv6=False) or ::1 (ipv6=True)."""

    def __init__(self, ipv6=False, port=0):
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.host = "::1" if ipv6 else "127.0.0.1"
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((self.host, port))
        self.port = sock.getsockname()[1]
        self.ipv6 = ipv6
        super().__init__(sock)

    @property
    def spec(self):
        """The socket string a relay subscribes."""
        if self.ipv6:
            return "udp:[%s]:%d" % (self.host, self.port)
        return "udp:%s:%d" % (self.host, self.port)


class UnixSink(_Sink):
    """unix SOCK_DGRAM listener at dir/name (dir: a temp dir by default,
    removed on close)."""

    def __init__(self, directory=None, name="sink.sock"):
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="evr-unix-")
        self.path = os.path.join(self.dir, name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self.path)
        super().__init__(sock)

    @property
    def spec(self):
        return "unix:" + self.path

    def close(self):
        super().close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# The relay process


class CtlError(AssertionError):
    pass


class Relay:
    """One evrelayd on loopback.

        relay = Relay(args=["--subscribe", "E_X=udp:127.0.0.1:9"],
                      config="[flatstore]\\ndelimiter = |\\n")
        relay.start()            # waits until `evrelayctl list` answers
        relay.ok("subscribe", "E_X", sink.spec)
        relay.stop()             # SIGTERM by PID; returns the exit code

    Use Relay.started(testcase, ...) (or RelayTestCase.relay) to start one
    and register relay.cleanup, which stops it with SIGTERM and fails the
    test unless it exits 0 (SIGKILL fallback; temp files removed).
    """

    #  The command start() repeats until the relay answers it (a relay
    #  whose access policy refuses `list` to local is probed with health).
    PROBE = ("list",)

    def __init__(self, args=(), config=None, workers=None, ctl_args=()):
        self.ctl_args = list(ctl_args)  # e.g. CURVE: --cert F --server-key K
        self.ingest_port, self.control_port = free_ports(2)
        self.ingest = "tcp://127.0.0.1:%d" % self.ingest_port
        self.control = "tcp://127.0.0.1:%d" % self.control_port
        self.tmp = tempfile.mkdtemp(prefix="evr-relay-")
        self.log_path = os.path.join(self.tmp, "evrelayd.log")
        self.config_path = None
        self.args = list(args)
        if config is not None:
            self.config_path = os.path.join(self.tmp, "evrelayd.conf")
            with open(self.config_path, "w") as f:
                f.write(config)
        if workers is not None:
            self.args += ["--workers", str(workers)]
        self.proc = None
        self.returncode = None

    @classmethod
    def started(cls, testcase, *args, **kwargs):
        relay = cls(*args, **kwargs)
        testcase.addCleanup(relay.cleanup)
        relay.start()
        return relay

    @property
    def pid(self):
        return self.proc.pid

    def command(self):
        cmd = [EVRELAYD, "--ingest", self.ingest, "--control", self.control]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd + self.args

    def start(self, timeout=10.0):
        """Start (or start again, after stop() or kill(): same ports, the
        log appended to)."""
        require_binaries()
        self.returncode = None
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._log,
                                     stderr=subprocess.STDOUT)
        with _LIVE_LOCK:
            _LIVE[self.proc.pid] = self.proc
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._forget()
                raise AssertionError("evrelayd exited with %s at start:\n%s"
                                     % (self.proc.returncode, self.log()))
            rc, _, _ = self.ctl(*self.PROBE, timeout_ms=300)
            if rc == 0:
                return self
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError("evrelayd did not answer within %.0f s:"
                                     "\n%s" % (timeout, self.log()))
            time.sleep(0.05)

    def _forget(self):
        with _LIVE_LOCK:
            _LIVE.pop(self.proc.pid, None)
        self.returncode = self.proc.returncode
        self._log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop by PID with sig; wait; return the exit code (the caller
        asserts). Falls back to SIGKILL after timeout (then raises)."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._forget()
                raise AssertionError("evrelayd did not stop within %.0f s of "
                                     "signal %d:\n%s" % (timeout, sig,
                                                         self.log()))
        self._forget()
        return self.returncode

    def kill(self):
        if self.proc is not None and self.returncode is None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._forget()

    def restart(self, timeout=10.0):
        """Start again on the same ports and config after a stop or a
        kill (the log starts over)."""
        if self.alive():
            raise AssertionError("relay %d still runs" % self.pid)
        self.returncode = None
        return self.start(timeout)

    def cleanup(self):
        """Test cleanup: SIGTERM, expect exit code 0; always remove temp
        files. A relay that died on its own is reported too."""
        try:
            if self.proc is not None and self.returncode is None:
                died = self.proc.poll() is not None
                rc = self.stop()
                if died or rc != 0:
                    raise AssertionError(
                        "evrelayd %s with exit code %s:\n%s"
                        % ("died" if died else "stopped", rc, self.log()))
        finally:
            self.kill()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        data = read_bytes(self.log_path) or b""
        return data.decode("utf-8", "replace")

    # ---- control through evrelayctl ------------------------------------

    def ctl(self, *args, json=True, timeout_ms=5000, endpoint=None):
        """Run evrelayctl; return (rc, stdout, stderr) as text."""
        cmd = [EVRELAYCTL, "-s", endpoint or self.control,
               "-t", str(timeout_ms)]
        if json:
            cmd.append("--json")
        cmd += self.ctl_args + [str(a) for a in args]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout_ms / 1000.0 + 10)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"))

    def ctl_json(self, *args, **kwargs):
        """Run evrelayctl --json; return (rc, parsed stdout or None)."""
        rc, out, err = self.ctl(*args, json=True, **kwargs)
        try:
            data = jsonlib.loads(out) if out.strip() else None
        except ValueError:
            raise AssertionError("evrelayctl %s printed non-JSON %r (stderr "
                                 "%r)" % (" ".join(map(str, args)), out, err))
        return rc, data

    def ok(self, *args, **kwargs):
        """Run a command that must succeed; return its parsed result."""
        rc, out, err = self.ctl(*args, json=True, **kwargs)
        if rc != 0:
            raise CtlError("evrelayctl %s: exit %d, stdout %r, stderr %r"
                           % (" ".join(map(str, args)), rc, out, err))
        return jsonlib.loads(out)

    def err(self, *args, **kwargs):
        """Run a command that must fail with an error answer (exit 1);
        return the error object {"code","message"[,"data"]}."""
        rc, out, err = self.ctl(*args, json=True, **kwargs)
        if rc != 1:
            raise CtlError("evrelayctl %s: expected exit 1, got %d, stdout "
                           "%r, stderr %r" % (" ".join(map(str, args)), rc,
                                              out, err))
        obj = jsonlib.loads(out)
        if not err.startswith("error %d: %s" % (obj["code"], obj["message"])):
            raise CtlError("stderr %r does not report %r" % (err, obj))
        return obj

    # ---- shortcuts -------------------------------------------------------

    def subscribe(self, event, spec, expire=None):
        args = ["subscribe", event, spec]
        if expire is not None:
            args.append(expire)
        result = self.ok(*args)
        if result != "OK":
            raise CtlError("subscribe answered %r" % (result,))

    def raise_event(self, event, params=None):
        """raise through evrelayctl; params: a Python object (dumped as
        JSON) or a str (passed as typed)."""
        args = ["raise", event]
        if params is not None:
            args.append(params if isinstance(params, str)
                        else jsonlib.dumps(params, separators=(",", ":")))
        result = self.ok(*args)
        if result != "OK":
            raise CtlError("raise answered %r" % (result,))

    def stats(self):
        return self.ok("stats")

    def target(self, spec):
        """The stats entry of one target (by canonical socket), or None."""
        for t in self.stats()["targets"]:
            if t["socket"] == spec:
                return t
        return None

    def subscribers(self, *args):
        return self.ok("subscribers", *args)


# --------------------------------------------------------------------------
# Minimal protobuf codec (proto2 wire format) for evrelay.proto


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n):
    return (n << 1) ^ (n >> 63)


def _unzigzag(n):
    return (n >> 1) ^ -(n & 1)


def pb_field(num, value, sint=False):
    """One field: int -> varint (zigzag if sint), bytes/str -> length."""
    if isinstance(value, int):
        return _varint(num << 3) + _varint(_zigzag(value) if sint
                                           else value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _varint((num << 3) | 2) + _varint(len(value)) + value


def pb_decode(data):
    """Decode one message into {field number: [values]} (varints as ints,
    length-delimited as bytes). Raises ValueError on bad input."""
    fields = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            value, i = _read_varint(data, i)
        elif wt == 2:
            n, i = _read_varint(data, i)
            if i + n > len(data):
                raise ValueError("truncated")
            value, i = data[i:i + n], i + n
        elif wt == 1:
            value, i = data[i:i + 8], i + 8
        elif wt == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        fields.setdefault(num, []).append(value)
    return fields


def _read_varint(data, i):
    shift = value = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def control_request(method, params_json=None, req_id=1, version=1):
    out = pb_field(1, version) + pb_field(2, req_id) + pb_field(3, method)
    if params_json is not None:
        out += pb_field(4, params_json)
    return out


def control_reply(data):
    """Decode a ControlReply into a dict: version, id, result (text) or
    error {code, message, data}."""
    f = pb_decode(data)
    out = {"version": f.get(1, [None])[0], "id": f.get(2, [None])[0]}
    if 3 in f:
        out["result"] = f[3][0].decode("utf-8")
    if 4 in f:
        e = pb_decode(f[4][0])
        out["error"] = {
            "code": _unzigzag(e[1][0]) if 1 in e else None,
            "message": e[2][0].decode("utf-8") if 2 in e else None,
            "data": e[3][0].decode("utf-8") if 3 in e else None,
        }
    return out


def pb_param(name=None, value=None):
    """A Param: value int -> int_value, str/bytes -> str_value,
    None -> neither."""
    out = b""
    if name is not None:
        out += pb_field(1, name)
    if isinstance(value, int):
        out += pb_field(2, value, sint=True)
    elif value is not None:
        out += pb_field(3, value)
    return out


def pb_event(name, params=(), raised_us=None):
    """An Event; params: list of (name or None, value)."""
    out = pb_field(1, name)
    for pname, pvalue in params:
        out += pb_field(2, pb_param(pname, pvalue))
    if raised_us is not None:
        out += pb_field(3, raised_us)
    return out


#  Publish.ack_point values (proto AckPoint)
ACK_ACCEPTED, ACK_DELIVERED, ACK_NONE = 0, 1, 2


def publish(producer_id, epoch, first_seq, events, version=1,
            ack_point=None):
    """A Publish; events: encoded Event messages (see pb_event); ack_point
    None leaves the field out (ACCEPTED, as producers before it did)."""
    out = (pb_field(1, version) + pb_field(2, producer_id) +
           pb_field(3, epoch) + pb_field(4, first_seq))
    for ev in events:
        out += pb_field(5, ev)
    if ack_point is not None:
        out += pb_field(6, ack_point)
    return out


def _packed_varints(chunks):
    """The values of a packed repeated varint field (all its chunks)."""
    values = []
    for chunk in chunks:
        if isinstance(chunk, int):  # unpacked encoding
            values.append(chunk)
            continue
        i = 0
        while i < len(chunk):
            v, i = _read_varint(chunk, i)
            values.append(v)
    return values


def ack(data):
    """Decode an Ack into a dict (failed and rejected_offsets as lists,
    left out when empty)."""
    f = pb_decode(data)
    names = {1: "version", 2: "producer_id", 3: "epoch", 4: "first_seq",
             5: "count", 6: "acked_through", 7: "status", 8: "error",
             9: "duplicates", 10: "rejected"}
    out = {}
    for num, name in names.items():
        if num in f:
            v = f[num][0]
            out[name] = v.decode("utf-8") if num == 8 else v
    for num, name in ((11, "failed"), (12, "rejected_offsets")):
        if num in f:
            out[name] = _packed_varints(f[num])
    return out


# --------------------------------------------------------------------------
# Minimal ZMTP 3.0 DEALER (NULL mechanism) over a TCP socket


class ZmtpDealer:
    """Just enough ZMTP to talk to the relay's ROUTER sockets as a DEALER
    would, frame by frame, including frames no real client would send."""

    def __init__(self, endpoint, timeout=5.0):
        assert endpoint.startswith("tcp://")
        host, port = endpoint[len("tcp://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout)
        self.sock.settimeout(timeout)
        greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) +
                    b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31)
        self.sock.sendall(greeting)
        peer = self._recvn(64)
        if peer[0] != 0xFF or peer[9] != 0x7F or peer[10] < 3:
            raise AssertionError("not a ZMTP 3 peer: %r" % peer[:12])
        name, value = b"Socket-Type", b"DEALER"
        ready = (bytes([5]) + b"READY" + bytes([len(name)]) + name +
                 struct.pack(">I", len(value)) + value)
        self._send_frame(ready, command=True)
        flags, body = self._recv_frame()
        if not flags & 0x04 or body[1:6] != b"READY":
            raise AssertionError("expected READY, got %r" % body[:16])

    def _recvn(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed the connection")
            buf += chunk
        return bytes(buf)

    def _send_frame(self, body, more=False, command=False):
        flags = (0x01 if more else 0) | (0x04 if command else 0)
        if len(body) > 255:
            head = bytes([flags | 0x02]) + struct.pack(">Q", len(body))
        else:
            head = bytes([flags, len(body)])
        self.sock.sendall(head + body)

    def _recv_frame(self):
        flags = self._recvn(1)[0]
        if flags & 0x02:
            size = struct.unpack(">Q", self._recvn(8))[0]
        else:
            size = self._recvn(1)[0]
        return flags, self._recvn(size)

    def send(self, *frames):
        """Send one message of one or more frames."""
        for i, frame in enumerate(frames):
            self._send_frame(frame, more=i + 1 < len(frames))

    def recv(self, timeout=5.0):
        """Receive one message (list of frames); commands are skipped.
        Raises socket.timeout when nothing comes."""
        self.sock.settimeout(timeout)
        frames = []
        while True:
            flags, body = self._recv_frame()
            if flags & 0x04:
                continue  # PING or other command
            frames.append(body)
            if not flags & 0x01:
                return frames

    def expect_silence(self, duration=0.5):
        """Assert that no message arrives within duration seconds."""
        try:
            frames = self.recv(duration)
        except socket.timeout:
            return
        raise AssertionError("expected no answer, got %r" % frames)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pgrep_evrelayd():
    """PIDs of evrelayd processes started by this module that still run."""
    with _LIVE_LOCK:
        return [pid for pid, p in _LIVE.items() if p.poll() is None]


class RelayTestCase(unittest.TestCase):
    """Base class: binaries present, and no relay of ours left running
    after the class."""

    @classmethod
    def setUpClass(cls):
        require_binaries()

    @classmethod
    def tearDownClass(cls):
        left = pgrep_evrelayd()
        _kill_leftovers()
        if left:
            raise AssertionError("evrelayd processes left running: %r" % left)

    def relay(self, *args, **kwargs):
        """Start a relay whose stop (SIGTERM, exit 0) is a cleanup."""
        return Relay.started(self, *args, **kwargs)

    def udp_sink(self, ipv6=False):
        sink = UdpSink(ipv6=ipv6)
        self.addCleanup(sink.close)
        return sink

    def unix_sink(self, directory=None, name="sink.sock"):
        sink = UnixSink(directory, name)
        self.addCleanup(sink.close)
        return sink

    def tempdir(self):
        d = tempfile.mkdtemp(prefix="evr-it-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


def main():
    unittest.main(verbosity=2)
