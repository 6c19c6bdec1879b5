"""Probe-based failure detection: silent faults with the carrier up, as in.mpathd finds them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from vnicbond.lab import (
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PEER_V6,
    iperf,
    ping_result,
    ping_stream,
    wait_ping,
)

FDT = "300ms"
INTERVAL = 0.3 / 7
#: Lost replies of a 10 ms ping allowed for a silent cut: FDT + one probe interval (~350 ms).
MAX_LOST = 35


def probing(lab, method="icmp", **overrides):
    """Group settings: FDT 300 ms, test addresses .21/.22/.23, the peer as the target."""
    group = {
        "failure_detection_time": FDT,
        "probe": {"method": method, "targets": [PEER_V4]},
        "members": [{"name": lab.member(i), "test_address": f"198.18.0.{21 + i}/24"}
                    for i in range(lab.members)],
    }
    group.update(overrides)
    return group


def states(bond):
    return {m["name"]: (m["state"], m["probe"]) for m in bond.status()["members"]}


def wait_probes_ok(lab, bond):
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                 timeout=5, what="every member's probes answered")


def cut_under_ping(lab, bond, address, count=150, lead=0.3, direction="both"):
    """Silently cut m0 while the peer pings ``address`` every 10 ms; at most MAX_LOST lost."""
    wait_ping(lab, lab.peer, address)
    wait_probes_ok(lab, bond)
    ping = ping_stream(lab, lab.peer, address, 0.01, count)
    time.sleep(lead)
    lab.cut(0, direction)
    sent, received, out = ping_result(ping)
    assert sent - received <= MAX_LOST, out


@pytest.mark.parametrize("direction", ["both", "in", "out"])
def test_silent_cut_of_the_active_member_fails_over_and_back(lab, make_bond, direction):
    bond = make_bond(lab, **probing(lab))
    cut_under_ping(lab, bond, DATA_V4, count=200, lead=0.5, direction=direction)
    st = bond.status()
    assert st["active"] == "m1"
    m0 = next(m for m in st["members"] if m["name"] == "m0")
    assert (m0["state"], m0["link"], m0["probe"]) == ("failed", "up", "failed")
    assert m0["reason"] == "probes lost on every target"
    # Lift the cut: 10 answered probes repair m0, and failback gives it the traffic back.
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 200)
    time.sleep(0.3)
    lab.uncut(0)
    lab.wait_for(lambda: bond.active() == "m0", timeout=5, what="failback to m0")
    sent, received, out = ping_result(ping)
    assert sent - received <= 3, out
    assert states(bond) == {"m0": ("active", "ok"), "m1": ("standby", "ok")}


def test_silent_cut_of_a_standby_member_moves_nothing(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_ping(lab, lab.peer, DATA_V4)
    wait_probes_ok(lab, bond)
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 100)
    lab.cut(1)
    lab.wait_for(lambda: bond.member("m1")["state"] == "failed", timeout=3,
                 what="m1 to be reported failed")
    sent, received, out = ping_result(ping)
    assert sent == received, out
    st = bond.status()
    assert st["active"] == "m0" and st["failovers"] == 0 and st["state"] == "degraded"


def test_dead_target_fails_the_group_without_flapping(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_ping(lab, lab.peer, DATA_V4)
    wait_probes_ok(lab, bond)
    # The target stops answering the probes (its own traffic still flows).
    rule = ("table inet deaf {\n chain input {\n type filter hook input priority 0;\n"
            " ip saddr { 198.18.0.21, 198.18.0.22 } icmp type echo-request drop\n }\n}\n")
    lab.ns(lab.peer, "nft", "-f", "-", input=rule)
    lab.wait_for(lambda: bond.status()["state"] == "failed", timeout=3, what="group failure")
    st = bond.status()
    assert st["carrier"] is False and st["active"] is None
    assert st["failovers"] == 0  # traffic never hopped to the other member first
    events = bond.request("events")
    assert not [e for e in events if e["kind"] == "member" and e["state"] == "active"
                and e["cause"] != "start"]
    assert all(m["reason"].endswith("(group failure)") or m["reason"].startswith("probes")
               for m in st["members"])
    time.sleep(1.0)
    assert bond.status()["state"] == "failed"  # stays failed: no thrashing while it lasts
    # The target answers again: the group recovers within one FDT, skipping the repair count.
    lab.ns(lab.peer, "nft", "delete", "table", "inet", "deaf")
    t0 = time.monotonic()
    lab.wait_for(lambda: bond.status()["carrier"], timeout=3, what="recovery")
    assert time.monotonic() - t0 < 0.3 + 0.2  # one FDT, plus the time to ask
    wait_ping(lab, lab.peer, DATA_V4, timeout=3)


def test_forged_and_foreign_replies_do_not_keep_a_cut_member_alive(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_ping(lab, lab.peer, DATA_V4)
    wait_probes_ok(lab, bond)
    member_mac = lab.ns(lab.host, "cat", "/sys/class/net/m0/address").stdout.strip()
    peer_mac = lab.ns(lab.peer, "cat", "/sys/class/net/p0/address").stdout.strip()
    forger = lab.popen(lab.switch, sys.executable, "-m", "tests.netns.forge", "s0", member_mac,
                       "198.18.0.21", PEER_V4, peer_mac, "2.0")
    time.sleep(0.2)
    lab.cut(0, "out")  # the target never hears m0's probes; only forgeries come back
    out, err = forger.communicate(timeout=30)
    assert forger.returncode == 0, err
    assert int(out) > 100
    st = bond.status()
    m0 = next(m for m in st["members"] if m["name"] == "m0")
    assert m0["state"] == "failed" and m0["probe"] == "failed"
    assert st["active"] == "m1"


@pytest.mark.parametrize("method", ["icmp", "arp"])
def test_probe_methods_detect_a_silent_cut(lab, make_bond, method):
    bond = make_bond(lab, **probing(lab, method=method))
    cut_under_ping(lab, bond, DATA_V4)
    assert states(bond)["m0"] == ("failed", "failed")
    assert bond.active() == "m1"


def test_ipv6_test_addresses_probe_an_ipv6_target(lab, make_bond):
    bond = make_bond(lab, **probing(
        lab, probe={"targets": [PEER_V6]},
        members=[{"name": "m0", "test_address": "2001:db8::21/64"},
                 {"name": "m1", "test_address": "2001:db8::22/64"}]))
    cut_under_ping(lab, bond, DATA_V6)
    assert states(bond)["m0"] == ("failed", "failed")
    targets = bond.status()["targets"]
    assert {(t["member"], t["target"]) for t in targets} == {("m0", PEER_V6), ("m1", PEER_V6)}


def test_without_targets_members_fall_back_to_link_state(lab, make_bond):
    bond = make_bond(lab, members=[{"name": "m0", "test_address": "198.18.0.21/24"},
                                   {"name": "m1"}])
    st = bond.status()
    assert [m["probe"] for m in st["members"]] == ["disabled", "disabled"]
    assert st["targets"] == []


def test_on_link_routers_are_the_default_targets(lab, make_bond):
    bond = make_bond(lab, **probing(lab, probe={"method": "icmp"},
                                    routes=[{"to": "198.19.0.0/16", "via": PEER_V4}]))
    wait_probes_ok(lab, bond)
    # The IPv4 route's gateway; for IPv6, with no route, hosts found by all-hosts ping.
    targets = bond.status()["targets"]
    assert {t["target"] for t in targets if ":" not in t["target"]} == {PEER_V4}
    assert [m["target_mode"] for m in bond.status()["members"]] == ["routes"] * 2


def test_link_flapping_is_damped(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_ping(lab, lab.peer, DATA_V4)
    wait_probes_ok(lab, bond)
    for _ in range(8):  # down/up every 200 ms for ~3 s
        lab.link_down(0)
        time.sleep(0.2)
        lab.link_up(0)
        time.sleep(0.2)
    assert bond.proc.poll() is None
    # Without damping, 10 answered probes (~0.3 s) would repair m0 and move traffic back.
    time.sleep(2.0)
    st = bond.status()
    assert st["active"] == "m1"
    m0 = next(m for m in st["members"] if m["name"] == "m0")
    assert (m0["state"], m0["link"], m0["reason"]) == ("failed", "up", "flapping")
    assert lab.ping_ok(lab.peer, DATA_V4)
    events = [e for e in bond.request("events") if e["kind"] == "member" and e["member"] == "m0"]
    # m0 lost the traffic once and never got it back while flapping.
    assert [e["state"] for e in events if e["cause"] != "start"] == ["failed"]


def test_no_false_failover_under_saturating_load(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_ping(lab, lab.peer, DATA_V4)
    wait_probes_ok(lab, bond)
    before = bond.request("events")
    with iperf.server(lab, lab.peer):
        report = iperf.wait(iperf.start_client(lab, lab.host, PEER_V4, 30, options=["--bidir"]),
                            timeout=90)
    assert report.exit == 0, report.stderr
    assert report.received()["bits_per_second"] > 1e9  # it really was saturated
    assert bond.request("events") == before  # zero state changes
    st = bond.status()
    assert st["failovers"] == 0
    assert all(m["probe"] == "ok" for m in st["members"])
    lost = sum(t["lost"] for t in st["targets"])
    sent = sum(t["sent"] for t in st["targets"])
    assert sent > 1000 and lost < sent * 0.05


def test_daemon_without_probes_accepts_probe_config_with_unreachable_target(lab, make_bond):
    # A target nobody answers, from the start: the members are reported failed by probes
    # and the group failed, but the daemon keeps probing and runs on.
    bond = make_bond(lab, **probing(lab, probe={"targets": ["198.18.0.200"]}))
    lab.wait_for(lambda: bond.status()["state"] == "failed", timeout=3, what="group failure")
    assert bond.proc.poll() is None
    assert subprocess.run(["true"]).returncode == 0


def test_answers_for_a_test_address_are_rate_limited(lab, make_bond):
    bond = make_bond(lab, **probing(lab))
    wait_probes_ok(lab, bond)
    out = lab.ns(lab.peer, sys.executable, "-m", "tests.netns.arp_probe", "p0", "198.18.0.21",
                 "1.0", "2000", timeout=30).stdout
    replies = json.loads(out.strip().splitlines()[-1])["replies"]
    # A burst of 20 and 100 a second: 2000 questions in well under a second get ~20-120.
    assert 1 <= replies <= 150
    limited = bond.status()["answers_rate_limited"]
    assert 500 <= limited <= 2000 - replies  # (the socket may also drop some of the flood)
    assert bond.member("m0")["probe"] == "ok"  # probing goes on meanwhile
