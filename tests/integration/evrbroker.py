"""evrbroker - a private, throw-away rabbitmq-server for integration tests.

    broker = Broker()
    broker.start()          # waits until the node runs its apps
    broker.port             # AMQP port on 127.0.0.1
    broker.ctl("add_vhost", "evr")
    broker.stop()           # rabbitmqctl stop, then SIGKILL by PID if needed
    broker.start()          # the same node again (same data: vhosts, users)
    broker.cleanup()        # stop, stop our epmd, remove the temp dir

Everything the node writes lives in one temp dir: database, logs, config,
the plugin list (none), and HOME (the Erlang cookie). The node has a unique
name (evr-test-<pid>-<n>@localhost), listens on 127.0.0.1 only, on a free
AMQP port and a free distribution port, and registers with a private epmd
on a free port (ERL_EPMD_PORT), so it never meets a system broker or
another test's broker, and stopping it kills only what it started.

The package scripts in /usr/sbin switch to the rabbitmq user when run as
root; we run the real ones in /usr/lib/rabbitmq/bin directly, as the
current user. Nothing is installed here: scripts/install-deps.sh installs
rabbitmq-server. Python 3 standard library only.
"""

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from evrtest import free_ports

RABBIT_BIN = "/usr/lib/rabbitmq/bin"

_SEQ = itertools.count(1)
_LIVE = set()
_LIVE_LOCK = threading.Lock()


def _bin(name):
    """The real rabbitmq script (not the /usr/sbin su wrapper)."""
    path = os.path.join(RABBIT_BIN, name)
    if os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if not found:
        raise RuntimeError("%s not installed (run scripts/install-deps.sh)"
                           % name)
    return found


def available():
    """True when rabbitmq-server and rabbitmqctl are installed."""
    try:
        _bin("rabbitmq-server")
        _bin("rabbitmqctl")
        return True
    except RuntimeError:
        return False


def _cleanup_leftovers():
    with _LIVE_LOCK:
        brokers = list(_LIVE)
    for broker in brokers:
        broker.cleanup()


atexit.register(_cleanup_leftovers)


class BrokerError(AssertionError):
    pass


class Broker:
    """One private rabbitmq-server node on 127.0.0.1."""

    def __init__(self, start_timeout=90.0):
        self.tmp = tempfile.mkdtemp(prefix="evr-rabbit-")
        self.node = "evr-test-%d-%d@localhost" % (os.getpid(), next(_SEQ))
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.start_timeout = start_timeout
        self.proc = None
        self._log = None
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        config = os.path.join(self.tmp, "rabbitmq.conf")
        with open(config, "w") as f:
            #  no disk-space alarm on a small temp dir; quiet logs
            f.write("disk_free_limit.absolute = 1MB\n"
                    "log.console = false\n"
                    "log.file.level = info\n")
        plugins = os.path.join(self.tmp, "enabled_plugins")
        with open(plugins, "w") as f:
            f.write("[].\n")
        env_conf = os.path.join(self.tmp, "rabbitmq-env.conf")
        open(env_conf, "w").close()
        self.env = dict(os.environ)
        self.env.update({
            "HOME": home,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(self.tmp, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.tmp, "log"),
            "RABBITMQ_CONFIG_FILE": config,
            "RABBITMQ_ADVANCED_CONFIG_FILE":
                os.path.join(self.tmp, "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": env_conf,
            "RABBITMQ_ENABLED_PLUGINS_FILE": plugins,
            "RABBITMQ_PLUGINS_EXPAND_DIR":
                os.path.join(self.tmp, "plugins-expand"),
            "RABBITMQ_PID_FILE": os.path.join(self.tmp, "rabbit.pid"),
        })
        #  never inherit another node's settings from the environment
        for key in ("RABBITMQ_CONFIG_FILES", "RABBITMQ_USE_LONGNAME",
                    "RABBITMQ_SERVER_START_ARGS", "RABBITMQ_CTL_ERL_ARGS"):
            self.env.pop(key, None)
        with _LIVE_LOCK:
            _LIVE.add(self)

    @classmethod
    def started(cls, testcase, **kwargs):
        """Start a broker whose cleanup is registered on testcase."""
        broker = cls(**kwargs)
        testcase.addCleanup(broker.cleanup)
        broker.start()
        return broker

    @property
    def amqp(self):
        return "127.0.0.1:%d" % self.port

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        """The node's stdout and its log file, for failure messages."""
        out = []
        for path in (os.path.join(self.tmp, "server.out"),
                     os.path.join(self.tmp, "log", self.node + ".log")):
            try:
                with open(path, "rb") as f:
                    out.append(f.read()[-4000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.2):
                return True
        except OSError:
            return False

    def start(self):
        """Start the node in the background and wait until it runs."""
        if self.running():
            return self
        self._log = open(os.path.join(self.tmp, "server.out"), "ab")
        self.proc = subprocess.Popen(
            [_bin("rabbitmq-server")], env=self.env, cwd=self.tmp,
            stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not self._port_open():
            if self.proc.poll() is not None:
                raise BrokerError("rabbitmq-server exited with %s:\n%s"
                                  % (self.proc.returncode, self.log()))
            if time.monotonic() >= deadline:
                self._kill()
                raise BrokerError("rabbitmq-server not up within %.0f s:\n%s"
                                  % (self.start_timeout, self.log()))
            time.sleep(0.1)
        left = max(5.0, deadline - time.monotonic())
        rc, out = self.ctl_rc("await_startup", timeout=left)
        if rc != 0:
            raise BrokerError("await_startup failed (%d): %s\n%s"
                              % (rc, out, self.log()))
        return self

    def ctl_rc(self, *args, timeout=60.0):
        """Run rabbitmqctl against this node; return (rc, output)."""
        cmd = [_bin("rabbitmqctl"), "-n", self.node, "-q"] + list(args)
        try:
            p = subprocess.run(cmd, env=self.env, cwd=self.tmp,
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1, "rabbitmqctl %s timed out" % " ".join(args)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def ctl(self, *args, timeout=60.0):
        """Run rabbitmqctl; raise unless it succeeds; return its output."""
        rc, out = self.ctl_rc(*args, timeout=timeout)
        if rc != 0:
            raise BrokerError("rabbitmqctl %s: exit %d: %s"
                              % (" ".join(args), rc, out))
        return out

    def add_vhost(self, vhost, user="guest"):
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def add_user(self, user, password, vhost="/"):
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def _kill(self):
        """SIGKILL the node's whole process group (it was started in a
        session of its own: the script, beam, and its helpers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def stop(self, timeout=30.0):
        """Stop the node (rabbitmqctl stop), then make sure by PID."""
        if not self.running():
            self._kill()
            return
        self.ctl_rc("stop", timeout=timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def _stop_epmd(self):
        """Our epmd is private (its own port): stop it."""
        try:
            subprocess.run(["epmd", "-kill"], env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def cleanup(self):
        """Stop the node and its epmd; remove every file."""
        with _LIVE_LOCK:
            if self not in _LIVE:
                return
            _LIVE.discard(self)
        try:
            self.stop()
        finally:
            self._stop_epmd()
            shutil.rmtree(self.tmp, ignore_errors=True)
