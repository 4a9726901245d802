"""Subscription management through evrelayctl, with OpenSIPS MI semantics
(reference §1.5, §2; docs/PROTOCOL.md §6): default expire, refresh,
unsubscribe, listing shapes and order, lookups and their errors, exact
socket matching, event names and the events list.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evrtest  # noqa: E402

CATALOGUE = [
    "E_CORE_SR_STATUS_CHANGED", "E_CORE_THRESHOLD", "E_CORE_SHM_THRESHOLD",
    "E_CORE_PKG_THRESHOLD", "E_CORE_PROC_AUTO_SCALE", "E_CORE_TCP_DISCONNECT",
    "E_CORE_LOG", "E_PIKE_BLOCKED", "E_DLG_STATE_CHANGED", "E_UL_AOR_INSERT",
    "E_UL_AOR_DELETE", "E_UL_CONTACT_INSERT", "E_UL_CONTACT_DELETE",
    "E_UL_CONTACT_UPDATE", "E_UL_CONTACT_REFRESH", "E_ACC_CDR", "E_ACC_EVENT",
    "E_ACC_MISSED_EVENT", "E_DISPATCHER_STATUS", "E_LOAD_BALANCER_STATUS",
    "E_DROUTING_STATUS", "E_RTPPROXY_STATUS",
    "E_CLUSTERER_NODE_STATE_CHANGED", "E_FLATSTORE_ROTATION",
]


class Subscriptions(evrtest.RelayTestCase):

    def setUp(self):
        self.r = self.relay()
        self.udp = "udp:127.0.0.1:%d" % evrtest.free_port()

    def event_id(self, name):
        for ev in self.r.ok("list")["Events"]:
            if ev["name"] == name:
                return ev["id"]
        self.fail("%s not in list" % name)

    def one(self, event, spec):
        return self.r.subscribers(event, spec)["Event"]["Subscriber"]

    def test_default_expire_3600(self):
        self.r.subscribe("E_A", self.udp)
        got = self.r.subscribers("E_A")
        self.assertEqual(list(got), ["Event"])
        ev = got["Event"]
        self.assertEqual(ev["name"], "E_A")
        self.assertEqual(ev["id"], self.event_id("E_A"))
        self.assertEqual(len(ev["Subscribers"]), 1)
        sub = ev["Subscribers"][0]
        self.assertEqual(list(sub), ["socket", "expire", "ttl"])
        self.assertEqual(sub["socket"], self.udp)
        self.assertEqual(sub["expire"], 3600)
        self.assertIn(sub["ttl"], (3599, 3600))

    def test_explicit_expire(self):
        self.r.subscribe("E_A", self.udp, 120)
        sub = self.one("E_A", self.udp)
        self.assertEqual(sub["expire"], 120)
        self.assertIn(sub["ttl"], (119, 120))

    def test_refresh_keeps_one_entry_and_resets_ttl(self):
        self.r.subscribe("E_A", self.udp, 5)
        evrtest.wait_until(lambda: self.one("E_A", self.udp)["ttl"] <= 3,
                           timeout=5, interval=0.1, what="ttl <= 3")
        self.r.subscribe("E_A", self.udp, 100)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual(len(subs), 1)
        self.assertEqual(subs[0]["expire"], 100)
        self.assertIn(subs[0]["ttl"], (99, 100))
        #  refresh without expire: back to the default
        self.r.subscribe("E_A", self.udp)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([(s["expire"]) for s in subs], [3600])
        self.assertEqual(self.r.stats()["table"]["subscriptions"], 1)

    def test_expire_zero_unsubscribes(self):
        other = "udp:127.0.0.1:%d" % evrtest.free_port()
        self.r.subscribe("E_A", self.udp)
        self.r.subscribe("E_A", other)
        self.r.subscribe("E_A", self.udp, 0)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs], [other])
        self.r.subscribe("E_A", other, 0)
        self.assertEqual(self.r.subscribers("E_A"), {"Event": {}})
        #  the event stays published
        self.assertIn("E_A", [e["name"] for e in self.r.ok("list")["Events"]])
        #  unsubscribing what is not subscribed is fine (as in OpenSIPS)
        self.assertEqual(self.r.ok("subscribe", "E_A", self.udp, 0), "OK")
        self.assertEqual(self.r.subscribers("E_A"), {"Event": {}})
        self.assertEqual(self.r.stats()["table"]["subscriptions"], 0)
        self.assertEqual(self.r.stats()["targets"], [])

    def test_expire_zero_does_not_publish_event(self):
        self.assertEqual(self.r.ok("subscribe", "E_NEVER", self.udp, 0), "OK")
        e = self.r.err("subscribers", "E_NEVER")
        self.assertEqual((e["code"], e["message"]),
                         (404, "Event not published"))

    def test_negative_expire(self):
        e = self.r.err("subscribe", "E_A", self.udp, -1)
        self.assertEqual(e, {"code": -32602, "message": "Invalid params",
                             "data": "Negative expire value"})
        e = self.r.err("subscribe", "E_A", self.udp, "-3600")
        self.assertEqual(e["data"], "Negative expire value")
        self.assertEqual(self.r.stats()["table"]["subscriptions"], 0)

    def test_newest_first_and_refresh_keeps_place(self):
        specs = ["udp:127.0.0.1:%d" % p for p in evrtest.free_ports(3)]
        for spec in specs:
            self.r.subscribe("E_A", spec, 600)
        listed = [s["socket"]
                  for s in self.r.subscribers("E_A")["Event"]["Subscribers"]]
        self.assertEqual(listed, specs[::-1])
        self.r.subscribe("E_A", specs[0], 900)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs], specs[::-1])
        self.assertEqual([s["expire"] for s in subs], [600, 600, 900])

    def test_all_subscribers(self):
        self.assertEqual(self.r.subscribers(), {"Events": []})
        self.r.subscribe("E_B", self.udp)
        self.r.subscribe("E_PIKE_BLOCKED", self.udp, 50)
        got = self.r.subscribers()["Events"]
        #  only events with subscribers, in id order
        self.assertEqual([e["name"] for e in got], ["E_PIKE_BLOCKED", "E_B"])
        self.assertEqual(got[0]["id"], self.event_id("E_PIKE_BLOCKED"))
        self.assertEqual(got[1]["id"], self.event_id("E_B"))
        self.assertEqual(list(got[0]), ["name", "id", "Subscribers"])
        self.assertEqual(got[0]["Subscribers"][0]["expire"], 50)

    def test_single_subscriber(self):
        other = "udp:127.0.0.1:%d" % evrtest.free_port()
        self.r.subscribe("E_A", self.udp, 70)
        self.r.subscribe("E_A", other, 80)
        got = self.r.subscribers("E_A", self.udp)
        self.assertEqual(list(got["Event"]), ["name", "id", "Subscriber"])
        self.assertEqual(got["Event"]["name"], "E_A")
        self.assertEqual(got["Event"]["id"], self.event_id("E_A"))
        self.assertEqual(got["Event"]["Subscriber"]["socket"], self.udp)
        self.assertEqual(got["Event"]["Subscriber"]["expire"], 70)

    def test_event_not_published(self):
        e = self.r.err("subscribers", "E_NOT_THERE")
        self.assertEqual(e, {"code": 404, "message": "Event not published",
                             "data": "E_NOT_THERE"})
        e = self.r.err("subscribers", "E_NOT_THERE", self.udp)
        self.assertEqual((e["code"], e["message"]),
                         (404, "Event not published"))

    def test_subscriber_does_not_exist(self):
        self.r.subscribe("E_A", self.udp)
        other = "udp:127.0.0.1:%d" % evrtest.free_port()
        e = self.r.err("subscribers", "E_A", other)
        self.assertEqual(e, {"code": 404,
                             "message": "Subscriber does not exist",
                             "data": other})
        e = self.r.err("subscribers", "E_PIKE_BLOCKED", self.udp)
        self.assertEqual(e["message"], "Subscriber does not exist")

    def test_event_without_subscribers(self):
        self.assertEqual(self.r.subscribers("E_PIKE_BLOCKED"), {"Event": {}})

    def test_no_prefix_match(self):
        #  OpenSIPS bug (ref §1.5): 127.0.0.1 matched 127.0.0.10. Fixed.
        port = evrtest.free_port()
        self.r.subscribe("E_A", "udp:127.0.0.1:%d" % port)
        e = self.r.err("subscribers", "E_A", "udp:127.0.0.10:%d" % port)
        self.assertEqual(e["message"], "Subscriber does not exist")
        #  subscribing the longer address adds a second entry
        self.r.subscribe("E_A", "udp:127.0.0.10:%d" % port)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs],
                         ["udp:127.0.0.10:%d" % port,
                          "udp:127.0.0.1:%d" % port])
        #  and unsubscribing it leaves the shorter one alone
        self.r.subscribe("E_A", "udp:127.0.0.10:%d" % port, 0)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([s["socket"] for s in subs],
                         ["udp:127.0.0.1:%d" % port])

    def test_same_port_other_transport_or_path(self):
        d = self.tempdir()
        a, b = os.path.join(d, "a"), os.path.join(d, "ab")
        self.r.subscribe("E_A", "unix:" + a)
        self.r.subscribe("E_A", "unix:" + b)
        self.assertEqual(len(self.r.subscribers("E_A")["Event"]
                             ["Subscribers"]), 2)
        e = self.r.err("subscribers", "E_A", "unix:" + a + "b" + "c")
        self.assertEqual(e["message"], "Subscriber does not exist")

    def test_canonical_socket_matching(self):
        #  spellings of one address are one subscriber
        port = evrtest.free_port()
        self.r.subscribe("E_A", "udp:[0:0::1]:%d" % port)
        self.r.subscribe("E_A", "udp:[::1]:%d" % port, 77)
        subs = self.r.subscribers("E_A")["Event"]["Subscribers"]
        self.assertEqual([(s["socket"], s["expire"]) for s in subs],
                         [("udp:[::1]:%d" % port, 77)])
        sub = self.one("E_A", "udp:[0::0:1]:%d" % port)
        self.assertEqual(sub["socket"], "udp:[::1]:%d" % port)

    def test_event_name_length(self):
        name64 = "E_" + "X" * 62
        name65 = "E_" + "X" * 63
        self.assertEqual(len(name64), 64)
        self.r.subscribe(name64, self.udp)
        self.assertEqual(self.r.subscribers(name64)["Event"]["name"], name64)
        e = self.r.err("subscribe", name65, self.udp)
        self.assertEqual((e["code"], e["message"]),
                         (400, "Bad parameter value"))
        self.assertIn("event name", e["data"])
        e = self.r.err("subscribe", "E BAD", self.udp)
        self.assertEqual(e["code"], 400)
        e = self.r.err("subscribe", "", self.udp)
        self.assertEqual(e["code"], 400)
        names = [ev["name"] for ev in self.r.ok("list")["Events"]]
        self.assertIn(name64, names)
        self.assertNotIn(name65, names)

    def test_list_catalogue_and_new_events(self):
        events = self.r.ok("list")["Events"]
        self.assertEqual([e["name"] for e in events], CATALOGUE)
        self.assertEqual([e["id"] for e in events], list(range(len(CATALOGUE))))
        self.assertEqual(list(events[0]), ["name", "id"])
        self.r.subscribe("E_NEW_ONE", self.udp)
        self.r.subscribe("E_NEW_TWO", self.udp, 0)  # unsubscribe: no event
        self.r.subscribe("E_NEW_THREE", self.udp)
        events = self.r.ok("list")["Events"]
        self.assertEqual(events[len(CATALOGUE):],
                         [{"name": "E_NEW_ONE", "id": len(CATALOGUE)},
                          {"name": "E_NEW_THREE", "id": len(CATALOGUE) + 1}])

    def test_catalogue_from_config(self):
        r = self.relay(config="[events]\ncatalogue = E_ONE, E_TWO E_THREE\n")
        self.assertEqual(r.ok("list"),
                         {"Events": [{"name": "E_ONE", "id": 0},
                                     {"name": "E_TWO", "id": 1},
                                     {"name": "E_THREE", "id": 2}]})
        self.assertEqual(r.subscribers("E_TWO"), {"Event": {}})
        e = r.err("subscribers", "E_PIKE_BLOCKED")
        self.assertEqual(e["code"], 404)

    def test_one_target_shared_by_events(self):
        self.r.subscribe("E_A", self.udp)
        self.r.subscribe("E_B", self.udp)
        targets = self.r.stats()["targets"]
        self.assertEqual([(t["socket"], t["subscriptions"]) for t in targets],
                         [(self.udp, 2)])
        self.r.subscribe("E_A", self.udp, 0)
        self.assertEqual(self.r.target(self.udp)["subscriptions"], 1)
        self.r.subscribe("E_B", self.udp, 0)
        self.assertIsNone(self.r.target(self.udp))

    def test_respelled_subscriber_moves_to_the_new_target(self):
        #  Same subscriber (PARALLEL matches in any order), new spelling:
        #  one entry, listed and delivered with the new socket's target.
        a = "udp:127.0.0.1:19991"
        b = "udp:127.0.0.1:19992"
        first = "virtual:PARALLEL %s %s" % (a, b)
        second = "virtual:PARALLEL %s %s" % (b, a)
        self.r.subscribe("E_V", first)
        self.r.subscribe("E_V", second)
        subs = self.r.subscribers("E_V")["Event"]["Subscribers"]
        self.assertEqual([x["socket"] for x in subs], [second])
        self.assertEqual([t["socket"] for t in self.r.stats()["targets"]],
                         [second])

    def test_text_output(self):
        #  without --json evrelayctl prints tables
        self.r.subscribe("E_A", self.udp, 30)
        rc, out, err = self.r.ctl("subscribers", json=False)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["EVENT", "EXPIRE", "TTL", "SOCKET"])
        self.assertEqual(lines[1].split()[0:2], ["E_A", "30"])
        self.assertEqual(lines[1].split()[3], self.udp)
        rc, out, err = self.r.ctl("subscribe", "E_A", self.udp, json=False)
        self.assertEqual((rc, out), (0, "OK\n"))


if __name__ == "__main__":
    evrtest.main()
