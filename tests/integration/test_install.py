"""`cmake --install` as a user runs it: the installed tree, the installed
evrelayd and evrelayctl working, and a program built against the
installed libevrelay with pkg-config alone raising an event that reaches
a real UDP sink with exact bytes.
"""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

PROGRAM = r"""
#include <evrelay.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    evr_client_t *client = evr_client_new(argv[1], NULL);
    evr_event_t *event = evr_event_new("E_INSTALLED");
    if (!client || !event || evr_event_add_int(event, "n", 42) ||
        evr_event_add_str(event, "from", "pkg-config"))
        return 2;
    if (evr_raise(client, &event) || evr_client_flush(client, 5000))
        return 1;
    evr_client_destroy(&client);
    puts("acked");
    return 0;
}
"""

EXPECTED = [
    "bin/evrelay-agent", "bin/evrelayctl", "bin/evrelayd",
    "include/evrelay.h",
    "lib/libevrelay.so", "lib/libevrelay.so.0", "lib/libevrelay.so.0.1.0",
    "lib/pkgconfig/evrelay.pc",
    "share/evrelay/evrelay-agent.env", "share/evrelay/evrelay-agent.service",
    "share/evrelay/evrelay-agent@.service",
    "share/evrelay/evrelay-cluster.sh", "share/evrelay/evrelayd.conf",
    "share/evrelay/evrelayd.service", "share/evrelay/logrotate.evrelay"]


def sanitized_build():
    """True when EVR_BUILD_DIR was configured with EVR_SANITIZE=ON: a
    program linking its library needs the sanitizer runtime too."""
    cache = os.path.join(evrtest.BUILD_DIR, "CMakeCache.txt")
    with open(cache) as f:
        return "EVR_SANITIZE:BOOL=ON" in f.read()


class Install(evrtest.RelayTestCase):

    def setUp(self):
        super().setUp()
        self.prefix = self.tempdir()
        subprocess.run(["cmake", "--install", evrtest.BUILD_DIR,
                        "--prefix", self.prefix], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def run_ok(self, cmd, env=None):
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60, env=env)
        self.assertEqual(p.returncode, 0,
                         "%s: %s" % (" ".join(cmd), p.stdout.decode()))
        return p.stdout.decode()

    def test_installed_tree(self):
        found = sorted(os.path.relpath(os.path.join(d, f), self.prefix)
                       for d, _, files in os.walk(self.prefix)
                       for f in files)
        self.assertEqual(found, sorted(EXPECTED))
        self.assertTrue(os.access(os.path.join(
            self.prefix, "share/evrelay/evrelay-cluster.sh"), os.X_OK))
        out = self.run_ok([os.path.join(self.prefix, "bin/evrelayd"),
                           "--version"])
        self.assertEqual(out, "evrelayd 0.1.0\n")
        #  the agent finds the installed library without ldconfig
        out = self.run_ok([os.path.join(self.prefix, "bin/evrelay-agent"),
                           "--help"])
        self.assertIn("usage: evrelay-agent", out)

    def test_program_built_with_pkg_config(self):
        sink = self.udp_sink()
        r = self.relay()
        ctl = os.path.join(self.prefix, "bin/evrelayctl")
        self.run_ok([ctl, "-s", r.control, "subscribe",
                     "E_INSTALLED", sink.spec])
        src = os.path.join(self.prefix, "raise.c")
        with open(src, "w") as f:
            f.write(PROGRAM)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(
            self.prefix, "lib", "pkgconfig"))
        flags = self.run_ok(["pkg-config", "--cflags", "--libs", "evrelay"],
                            env=env).split()
        self.assertIn("-levrelay", flags)
        exe = os.path.join(self.prefix, "raise")
        cc = ["cc", "-Wall", "-Wextra", "-Werror", "-o", exe, src] + flags + [
            "-Wl,-rpath," + os.path.join(self.prefix, "lib")]
        if sanitized_build():
            cc.append("-fsanitize=address,undefined")
        self.run_ok(cc)
        self.assertEqual(self.run_ok([exe, r.ingest]), "acked\n")
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_INSTALLED",'
                         b'"params":{"n":42,"from":"pkg-config"}}')


if __name__ == "__main__":
    unittest.main()
