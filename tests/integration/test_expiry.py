"""Subscription expiry in real time (reference §1.5): the ttl counts down,
the entry lists as "expired" in its last second, is gone afterwards, and
delivery stops; static subscriptions (--subscribe, [subscriptions]) never
expire and list as "never", and MI can still turn them into expiring ones.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402


def lookup(relay, event, spec):
    """The subscriber object, or None when the relay says it is gone."""
    rc, data = relay.ctl_json("subscribers", event, spec)
    if rc == 0:
        return data["Event"]["Subscriber"]
    assert data["code"] == 404, data
    return None


class Expiry(evrtest.RelayTestCase):

    def test_ttl_counts_down_then_expired_then_gone(self):
        r = self.relay()
        sink = self.udp_sink()
        start = time.monotonic()
        r.subscribe("E_T", sink.spec, 2)
        seen = []
        deadline = start + 6
        while time.monotonic() < deadline:
            sub = lookup(r, "E_T", sink.spec)
            if sub is None:
                break
            self.assertEqual(sub["expire"], 2)
            if not seen or seen[-1] != sub["ttl"]:
                seen.append(sub["ttl"])
            time.sleep(0.05)
        gone_after = time.monotonic() - start
        #  2 s of life, plus the part of the second it was made in
        self.assertGreaterEqual(gone_after, 1.9, seen)
        self.assertLessEqual(gone_after, 4.0, seen)
        #  e.g. [2, 1, "expired"]: counting down, "expired" last
        self.assertEqual(seen[-1], "expired", seen)
        numbers = seen[:-1]
        self.assertTrue(numbers, seen)
        self.assertIn(numbers[0], (1, 2), seen)
        self.assertEqual(numbers, sorted(numbers, reverse=True), seen)
        self.assertTrue(all(isinstance(n, int) and n >= 1 for n in numbers))
        #  gone everywhere
        self.assertEqual(r.subscribers("E_T"), {"Event": {}})
        self.assertEqual(r.subscribers(), {"Events": []})
        #  and nothing is delivered any more
        e = r.err("raise", "E_T")
        self.assertEqual((e["code"], e["message"]),
                         (480, "Temporarily Unavailable"))
        sink.expect_none(0.3)

    def test_delivery_stops_after_expiry(self):
        r = self.relay()
        short, keep = self.udp_sink(), self.udp_sink()
        r.subscribe("E_T", keep.spec)
        r.subscribe("E_T", short.spec, 1)
        r.raise_event("E_T", '{"n":1}')
        for sink in (short, keep):
            self.assertEqual(sink.wait_one(),
                             b'{"jsonrpc":"2.0","method":"E_T","params":'
                             b'{"n":1}}')
        #  wait without listing: the sweep removes it, and counts it
        evrtest.wait_until(
            lambda: r.stats()["table"]["subscriptions"] == 1,
            timeout=5, interval=0.1, what="expiry sweep")
        stats = r.stats()
        self.assertEqual(stats["control"]["expired"], 1)
        self.assertEqual([t["socket"] for t in stats["targets"]], [keep.spec])
        r.raise_event("E_T", '{"n":2}')
        self.assertEqual(keep.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_T","params":{"n":2}}')
        short.expect_none(0.3)

    def test_still_delivered_while_listed_expired(self):
        #  OpenSIPS: live through its last second (subscription_time +
        #  expire < now is the expiry test). Retry if a second boundary
        #  falls between the listing and the raise.
        r = self.relay()
        sink = self.udp_sink()
        for attempt in range(3):
            r.subscribe("E_T", sink.spec, 1)
            def state():
                sub = lookup(r, "E_T", sink.spec)
                if sub is None:
                    return "gone"
                return sub["ttl"] if sub["ttl"] == "expired" else None
            if evrtest.wait_until(state, timeout=4, interval=0.02,
                                  what="expired listing") != "expired":
                continue
            rc, _ = r.ctl_json("raise", "E_T")
            after = lookup(r, "E_T", sink.spec)
            if after is not None and after["ttl"] == "expired":
                self.assertEqual(rc, 0)
                self.assertEqual(sink.wait_one(),
                                 b'{"jsonrpc":"2.0","method":"E_T"}')
                return
            sink.take()
            evrtest.wait_until(lambda: lookup(r, "E_T", sink.spec) is None,
                               timeout=3)
        self.fail("never caught the expired second")

    def test_resubscribe_after_expiry_is_new(self):
        r = self.relay()
        sink = self.udp_sink()
        r.subscribe("E_T", sink.spec, 1)
        evrtest.wait_until(lambda: lookup(r, "E_T", sink.spec) is None,
                           timeout=4, interval=0.1, what="expiry")
        r.subscribe("E_T", sink.spec, 30)
        self.assertEqual(lookup(r, "E_T", sink.spec)["expire"], 30)
        r.raise_event("E_T")
        self.assertEqual(sink.wait_one(), b'{"jsonrpc":"2.0","method":"E_T"}')


    def test_resubscribe_expired_before_the_sweep(self):
        #  The expired entry is still in the table (the sweep runs once a
        #  minute here): re-subscribing replaces it, and its target must
        #  survive the swap (it once was freed and used afterwards).
        r = self.relay(config="[relay]\nsweep_ms = 60000\n")
        sink = self.udp_sink()
        r.subscribe("E_T", sink.spec, 1)
        time.sleep(2.2)
        r.subscribe("E_T", sink.spec, 30)
        for _ in range(3):
            r.raise_event("E_T")
        self.assertEqual(sink.wait(3),
                         [b'{"jsonrpc":"2.0","method":"E_T"}'] * 3)
        self.assertEqual(lookup(r, "E_T", sink.spec)["expire"], 30)


class StaticSubscriptions(evrtest.RelayTestCase):

    def test_flag_subscription_never_expires(self):
        sink = self.udp_sink()
        r = self.relay(args=["--subscribe", "E_S=" + sink.spec,
                             "-s", "E_PIKE_BLOCKED=" + sink.spec])
        self.assertEqual(r.subscribers("E_S"),
                         {"Event": {"name": "E_S", "id": 24,
                                    "Subscribers": [{"socket": sink.spec,
                                                     "expire": "never"}]}})
        sub = r.subscribers("E_PIKE_BLOCKED", sink.spec)
        self.assertEqual(sub["Event"]["Subscriber"],
                         {"socket": sink.spec, "expire": "never"})
        r.raise_event("E_S", '{"a":1}')
        self.assertEqual(sink.wait_one(),
                         b'{"jsonrpc":"2.0","method":"E_S","params":{"a":1}}')

    def test_config_subscriptions(self):
        a, b = self.udp_sink(), self.unix_sink()
        r = self.relay(config="[subscriptions]\nE_C = %s\nE_C = %s\n"
                       % (a.spec, b.spec))
        subs = r.subscribers("E_C")["Event"]["Subscribers"]
        self.assertEqual(sorted(s["socket"] for s in subs),
                         sorted([a.spec, b.spec]))
        self.assertTrue(all(s["expire"] == "never" and "ttl" not in s
                            for s in subs), subs)
        r.raise_event("E_C")
        for sink in (a, b):
            self.assertEqual(sink.wait_one(),
                             b'{"jsonrpc":"2.0","method":"E_C"}')

    def test_mi_can_make_static_expire_or_remove_it(self):
        #  OpenSIPS: an MI subscribe with expire turns a permanent
        #  subscription into an expiring one; expire 0 removes it.
        a, b = self.udp_sink(), self.udp_sink()
        r = self.relay(args=["-s", "E_S=" + a.spec, "-s", "E_S=" + b.spec])
        r.subscribe("E_S", a.spec, 40)
        sub = r.subscribers("E_S", a.spec)["Event"]["Subscriber"]
        self.assertEqual(sub["expire"], 40)
        self.assertIn(sub["ttl"], (39, 40))
        r.subscribe("E_S", b.spec, 0)
        subs = r.subscribers("E_S")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs], [a.spec])

    def test_bad_static_subscription_stops_startup(self):
        relay = evrtest.Relay(args=["--subscribe",
                                    "E_S=udp:127.0.0.1:0"])
        self.addCleanup(relay.cleanup)
        with self.assertRaises(AssertionError) as ctx:
            relay.start()
        self.assertEqual(relay.returncode, 1)
        self.assertIn("static subscription", str(ctx.exception))
        self.assertIn("port '0'", str(ctx.exception))


if __name__ == "__main__":
    evrtest.main()
