"""flatstore: exact line bytes in real files (reference §4.5, §10), the
[flatstore] config keys, rotation by `flatstore-rotate` and SIGHUP after a
logrotate-style `mv`, and subscribe/rotate errors.
"""

import os
import signal
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402
from evrtest import read_bytes, wait_file  # noqa: E402


class Lines(evrtest.RelayTestCase):

    def setUp(self):
        self.r = self.relay()
        self.dir = self.tempdir()
        self.path = os.path.join(self.dir, "events.log")
        self.r.subscribe("E_F", "flatstore:" + self.path)

    def test_named_params_values_only(self):
        self.r.raise_event("E_F", '{"ip":"10.0.0.1","port":5060,"s":"x y"}')
        wait_file(self.path, b"E_F,10.0.0.1,5060,x y\n")

    def test_positional_and_no_params(self):
        self.r.raise_event("E_F", '["a",7]')
        self.r.raise_event("E_F")
        wait_file(self.path, b"E_F,a,7\nE_F\n")

    def test_delimiter_in_value_becomes_space(self):
        self.r.raise_event("E_F", '{"a":"1,2,,3","b":","}')
        wait_file(self.path, b"E_F,1 2  3, \n")

    def test_empty_value_and_newline_raw(self):
        self.r.raise_event("E_F", '{"a":"","b":"l1\\nl2","c":"\\"q\\""}')
        wait_file(self.path, b'E_F,,l1\nl2,"q"\n')

    def test_lines_appended_in_order(self):
        for i in range(50):
            self.r.raise_event("E_F", '{"i":%d}' % i)
        wait_file(self.path,
                  b"".join(b"E_F,%d\n" % i for i in range(50)))

    def test_two_events_one_file(self):
        self.r.subscribe("E_G", "flatstore:" + self.path)
        self.r.raise_event("E_F", '{"a":1}')
        wait_file(self.path, b"E_F,1\n")
        self.r.raise_event("E_G", '{"b":2}')
        wait_file(self.path, b"E_F,1\nE_G,2\n")
        self.assertEqual(len(self.r.stats()["targets"]), 1)

    def test_appends_to_existing_file(self):
        path = os.path.join(self.dir, "existing.log")
        with open(path, "wb") as f:
            f.write(b"old line\n")
        self.r.subscribe("E_F", "flatstore:" + path)
        self.r.raise_event("E_F", '{"a":1}')
        wait_file(path, b"old line\nE_F,1\n")

    def test_default_permissions(self):
        self.r.raise_event("E_F", '{"a":1}')
        wait_file(self.path, b"E_F,1\n")
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(mode, 0o644 & ~umask)


class ConfigKeys(evrtest.RelayTestCase):

    def test_delimiter_and_suppress_name(self):
        r = self.relay(config="[flatstore]\ndelimiter = |\n"
                              "suppress_event_name = yes\n")
        path = os.path.join(self.tempdir(), "ev.log")
        r.subscribe("E_F", "flatstore:" + path)
        r.raise_event("E_F", '{"a":"x|y","n":5,"c":"a,b"}')
        r.raise_event("E_F", '["p|q"]')
        r.raise_event("E_F")
        wait_file(path, b"x y|5|a,b\np q\n\n")

    def test_delimiter_only(self):
        r = self.relay(config="[flatstore]\ndelimiter = |\n")
        path = os.path.join(self.tempdir(), "ev.log")
        r.subscribe("E_F", "flatstore:" + path)
        r.raise_event("E_F", '{"a":"x|y","n":5}')
        wait_file(path, b"E_F|x y|5\n")

    def test_multichar_delimiter_replaces_first_char(self):
        #  (not ";;": inih takes " ;" as the start of a comment)
        r = self.relay(config="[flatstore]\ndelimiter = |#\n")
        path = os.path.join(self.tempdir(), "ev.log")
        r.subscribe("E_F", "flatstore:" + path)
        r.raise_event("E_F", '{"a":"x|y#z","n":5}')
        wait_file(path, b"E_F|#x y#z|#5\n")

    def test_file_permissions(self):
        r = self.relay(config="[flatstore]\nfile_permissions = 0600\n")
        path = os.path.join(self.tempdir(), "ev.log")
        r.subscribe("E_F", "flatstore:" + path)
        r.raise_event("E_F")
        wait_file(path, b"E_F\n")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)


class Rotation(evrtest.RelayTestCase):

    def setUp(self):
        self.r = self.relay()
        self.dir = self.tempdir()
        self.path = os.path.join(self.dir, "events.log")
        self.old = self.path + ".1"
        self.r.subscribe("E_F", "flatstore:" + self.path)
        self.r.raise_event("E_F", '{"n":1}')
        wait_file(self.path, b"E_F,1\n")
        os.rename(self.path, self.old)

    def after_reopen(self):
        #  still writing to the moved file until told to reopen ...
        self.r.raise_event("E_F", '{"n":2}')
        wait_file(self.old, b"E_F,1\nE_F,2\n")
        self.assertIsNone(read_bytes(self.path))

    def check_reopened(self):
        self.r.raise_event("E_F", '{"n":3}')
        self.r.raise_event("E_F", '{"n":4}')
        wait_file(self.path, b"E_F,3\nE_F,4\n")
        self.assertEqual(read_bytes(self.old), b"E_F,1\nE_F,2\n")
        target = self.r.target("flatstore:" + self.path)
        self.assertEqual((target["delivered"], target["failed"]), (4, 0))

    def test_rotate_command(self):
        self.after_reopen()
        self.assertEqual(self.r.ok("flatstore-rotate", self.path), "OK")
        self.check_reopened()

    def test_sighup(self):
        self.after_reopen()
        self.r.send_signal(signal.SIGHUP)
        evrtest.wait_until(lambda: "SIGHUP" in self.r.log(), timeout=5,
                           what="SIGHUP logged")
        self.assertTrue(self.r.alive())
        self.check_reopened()

    def test_rotate_only_named_file(self):
        other = os.path.join(self.dir, "other.log")
        self.r.subscribe("E_G", "flatstore:" + other)
        self.r.raise_event("E_G", '{"g":1}')
        wait_file(other, b"E_G,1\n")
        os.rename(other, other + ".1")
        self.assertEqual(self.r.ok("flatstore-rotate", self.path), "OK")
        self.r.raise_event("E_G", '{"g":2}')
        wait_file(other + ".1", b"E_G,1\nE_G,2\n")
        self.assertIsNone(read_bytes(other))
        self.check_after_rotate_without_mv_of_main()

    def check_after_rotate_without_mv_of_main(self):
        self.r.raise_event("E_F", '{"n":9}')
        wait_file(self.path, b"E_F,9\n")

    def test_rotate_unknown_path(self):
        rc, out, err = self.r.ctl("flatstore-rotate", self.path + ".nope")
        self.assertEqual(rc, 1)
        e = self.r.err("flatstore-rotate", self.path + ".nope")
        self.assertEqual(e, {"code": 400, "message": "File not found",
                             "data": self.path + ".nope"})
        #  a relative spelling of the same file is not the same path
        e = self.r.err("flatstore-rotate", "events.log")
        self.assertEqual(e["code"], 400)


class Errors(evrtest.RelayTestCase):

    def test_missing_directory(self):
        r = self.relay()
        d = self.tempdir()
        spec = "flatstore:" + os.path.join(d, "nodir", "ev.log")
        e = r.err("subscribe", "E_F", spec)
        self.assertEqual((e["code"], e["message"]),
                         (400, "Bad parameter value"))
        self.assertIn("does not exist", e["data"])
        self.assertIn(os.path.join(d, "nodir"), e["data"])
        e = r.err("subscribers", "E_F")
        self.assertEqual(e["code"], 404)
        self.assertEqual(r.stats()["targets"], [])

    def test_path_is_directory(self):
        r = self.relay()
        d = self.tempdir()
        e = r.err("subscribe", "E_F", "flatstore:" + d)
        self.assertEqual(e["code"], 400)
        e = r.err("subscribe", "E_F", "flatstore:" + d + "/")
        self.assertEqual(e["code"], 400)
        self.assertIn("directory", e["data"])

    def test_relative_and_empty_path(self):
        r = self.relay()
        for spec in ("flatstore:ev.log", "flatstore:"):
            e = r.err("subscribe", "E_F", spec)
            self.assertEqual(e["code"], 400, spec)
            self.assertIn("path", e["data"])


if __name__ == "__main__":
    evrtest.main()
