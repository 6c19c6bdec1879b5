"""Probing without a test address (issue 14): from data addresses, transitive link-layer
probes, IPv6 link-local, targets found by all-hosts ping, and timing that adapts.

Every test runs FDT 300 ms and no ``test_address`` anywhere, the peer pinging a data address
every 10 ms where traffic matters; faults are made on the wire's switch side (nftables), so
the host only sees what a real NIC would.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from tests.netns.capture import Capture
from vnicbond.lab import (
    DATA_V4,
    DATA_V6,
    PEER_V4,
    Bond,
    Lab,
    iperf,
    ping_result,
    ping_stream,
    responder,
    wait_ping,
)

FDT_S = 0.3
#: Lost replies of a 10 ms ping allowed for a silent cut of the active member: FDT + one
#: probe interval is at most 400 ms.
MAX_LOST = 40
#: The daemon's loop and the control request that reads its event, on a 2-core machine
#: shared with other tests: added to the 2 FDT a standby's failure may take to be reported.
SCHEDULING_SLACK_S = 0.05
#: How long a lowered FDT waits for every target to stay fast (the contract's FDT_HOLD).
FDT_HOLD_S = 60.0
RAISED = "cannot meet failure detection time 300 ms, using"


def no_test_addresses(lab: Lab, targets: list[str] | None = None, **overrides: Any) -> dict:
    """Group settings: FDT 300 ms, the peer as the target (``targets=[]``: none, found by
    all-hosts ping), members with no test address."""
    targets = [PEER_V4] if targets is None else targets
    group: dict[str, Any] = {
        "failure_detection_time": "300ms",
        "probe": {"targets": targets} if targets else {"method": "icmp"},
        "members": [{"name": lab.member(i)} for i in range(lab.members)],
    }
    group.update(overrides)
    return group


def members(bond: Bond) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in bond.status()["members"]}


def states(bond: Bond) -> dict[str, tuple[str, str]]:
    return {name: (m["state"], m["probe"]) for name, m in members(bond).items()}


def last_seq(bond: Bond) -> int:
    return max((e["seq"] for e in bond.events()), default=0)


def changes(bond: Bond, since: int, *kinds: str) -> list[dict[str, Any]]:
    """Events of ``kinds`` recorded after ``since``."""
    return [e for e in bond.events(since) if e["kind"] in kinds]


def wait_probes_ok(lab: Lab, bond: Bond, timeout: float = 5.0) -> None:
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                 timeout=timeout, what="every member's probes answered")


def start(lab: Lab, make_bond: Any, address: str = DATA_V4, **group: Any) -> Bond:
    """A bond probing without test addresses, its data address answering, every probe ok."""
    bond = make_bond(lab, **no_test_addresses(lab, **group))
    wait_ping(lab, lab.peer, address)
    wait_probes_ok(lab, bond)
    return bond


def cut_active_under_ping(lab: Lab, bond: Bond, address: str = DATA_V4,
                          direction: str = "both") -> None:
    """Silently cut the active m0 while the peer pings ``address`` every 10 ms: at most
    MAX_LOST replies lost, m1 carries the traffic, m0 failed with its link up."""
    assert bond.active() == "m0"
    ping = ping_stream(lab, lab.peer, address, 0.01, 200)
    time.sleep(0.5)
    lab.cut(0, direction)
    sent, received, out = ping_result(ping)
    assert sent - received <= MAX_LOST, out
    st = bond.status()
    m0 = next(m for m in st["members"] if m["name"] == "m0")
    assert st["active"] == "m1"
    assert (m0["state"], m0["link"], m0["probe"]) == ("failed", "up", "failed")


def eui64_link_local(mac: str) -> str:
    """The fe80::/64 address a NIC with ``mac`` derives (modified EUI-64)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    groups = [f"{int.from_bytes(iid[i:i + 2], 'big'):x}" for i in range(0, 8, 2)]
    return "fe80::" + ":".join(groups)


# -- silent cuts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["both", "in", "out"])
def test_silent_cut_of_the_active_member_fails_over_and_is_repaired(lab, make_bond, direction):
    bond = start(lab, make_bond)
    mode = {name: m["target_mode"] for name, m in members(bond).items()}
    assert mode == {"m0": "configured", "m1": "transitive"}
    cut_active_under_ping(lab, bond, direction=direction)
    lab.uncut(0)
    lab.wait_for(lambda: states(bond) == {"m0": ("active", "ok"), "m1": ("standby", "ok")},
                 timeout=5, what="m0 repaired (and given the traffic back)")
    assert lab.ping_ok(lab.peer, DATA_V4)


def test_silent_cut_of_the_standby_is_found_within_two_fdt_and_moves_nothing(lab, make_bond):
    bond = start(lab, make_bond)
    assert members(bond)["m1"]["target_mode"] == "transitive"
    assert [t["target"] for t in bond.status()["targets"] if t["member"] == "m1"] == ["member:m0"]
    seq = last_seq(bond)
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 150)
    time.sleep(0.2)
    lab.cut(1)
    # The cut is in force once nft returns: timing from then on can only under-measure it.
    cut_at = time.time()
    lab.wait_for(lambda: members(bond)["m1"]["state"] == "failed", timeout=3,
                 what="m1 to be reported failed")
    sent, received, out = ping_result(ping)
    assert sent == received, out
    failed = [e for e in changes(bond, seq, "member") if e["member"] == "m1"]
    assert [e["state"] for e in failed] == ["failed"]
    assert failed[0]["time"] - cut_at <= 2 * FDT_S + SCHEDULING_SLACK_S, failed[0]
    st = bond.status()
    assert st["active"] == "m0" and st["failovers"] == 0
    assert changes(bond, seq, "address") == []
    assert [e["member"] for e in changes(bond, seq, "member")] == ["m1"]
    lab.uncut(1)
    lab.wait_for(lambda: states(bond) == {"m0": ("active", "ok"), "m1": ("standby", "ok")},
                 timeout=5, what="m1 repaired")
    assert bond.active() == "m0"


def test_probing_without_test_addresses_goes_on_across_an_upgrade(lab, make_bond):
    """``vnicbond upgrade``: the new code probes from the data address and transitively at
    once (no member fails for the hand-over), and still finds a silent cut."""
    bond = start(lab, make_bond)
    seq, pid = last_seq(bond), bond.daemon_pid()
    upgraded = bond.cli("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr + bond.tail()
    assert bond.daemon_pid() == pid and bond.request("status")["upgrades"] == 1
    time.sleep(2 * FDT_S)
    assert states(bond) == {"m0": ("active", "ok"), "m1": ("standby", "ok")}
    # The new code restates each state once (cause upgrade); nothing changed since.
    assert [(e["member"], e["state"]) for e in changes(bond, seq, "member", "group")
            if e["cause"] != "upgrade"] == []
    cut_active_under_ping(lab, bond)


def test_dead_target_fails_the_group_without_flapping(lab, make_bond):
    bond = start(lab, make_bond)
    lab.drop_echo_requests()  # the peer answers no member; its own traffic still flows
    lab.wait_for(lambda: bond.status()["state"] == "failed", timeout=3, what="group failure")
    st = bond.status()
    assert st["carrier"] is False and st["active"] is None
    assert st["failovers"] == 0  # traffic never hopped to the other member first
    time.sleep(0.5)  # let the failure settle (the last member's own state change)
    seq = last_seq(bond)
    time.sleep(3.0)
    assert changes(bond, seq, "member", "group", "carrier", "address") == []
    assert bond.status()["state"] == "failed"
    lab.allow_echo_requests()
    lab.wait_for(lambda: bond.status()["carrier"], timeout=3, what="recovery")
    wait_ping(lab, lab.peer, DATA_V4, timeout=3)


# -- forgeries on a cut member's wire ---------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 1], ids=["echo-replies-to-the-active",
                                             "transitive-answers-to-the-standby"])
def test_forged_and_replayed_answers_do_not_keep_a_cut_member_alive(lab, make_bond, workdir,
                                                                     cut):
    bond = start(lab, make_bond)
    name = lab.member(cut)
    assert members(bond)[name]["target_mode"] == ("configured", "transitive")[cut]
    # Real answers to the member's probes, captured on its wire while it is healthy.
    capture = Capture(lab, lab.switch, lab.port(cut), workdir / "answers.pcap",
                      "ether proto 0x88b5 or icmp[icmptype] == icmp-echoreply",
                      direction="out")
    time.sleep(1.0)
    answers = capture.stop()
    assert len(answers) >= 10, answers
    # A forger on the member's wire answers every probe it sends (right sequence numbers
    # and nonces, wrong token or authenticator) and replays the capture, from before the
    # member is cut inside the switch until 3 s after.
    forger = lab.popen(lab.switch, sys.executable, "-m", "tests.netns.forge_live",
                       lab.port(cut), "3.5", str(capture.path))
    assert forger.stdout is not None and forger.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    lab.cut_behind(cut)
    lab.wait_for(lambda: members(bond)[name]["state"] == "failed", timeout=3,
                 what=f"{name} to be declared failed")
    out, err = forger.communicate(timeout=30)
    assert forger.returncode == 0, err
    sent = json.loads(out)
    assert sent["replayed"] > 100
    # It answered the member's own probes: ICMP ones while it carried the data address,
    # transitive ones after (the active member) or all along (the standby).
    assert sent["transitive"] > 10, sent
    if cut == 0:
        assert sent["echo"] > 0, sent
    m = members(bond)[name]
    assert (m["state"], m["probe"]) == ("failed", "failed")  # still, after 3 s of forgeries
    assert bond.active() == ("m1" if cut == 0 else "m0")  # the one that is not cut
    lab.uncut_behind(cut)
    lab.wait_for(lambda: states(bond)[name][1] == "ok", timeout=5, what=f"{name} repaired")


# -- targets found on their own, IPv6 link-local -------------------------------------------------
def test_without_targets_or_routes_the_peer_is_found_by_all_hosts_ping(lab, make_bond):
    lab.answer_broadcast_pings()
    bond = make_bond(lab, **no_test_addresses(lab, targets=[]))
    wait_ping(lab, lab.peer, DATA_V4)
    lab.wait_for(lambda: members(bond)["m0"]["target_mode"] == "multicast"
                 and PEER_V4 in {t["target"] for t in bond.status()["targets"]},
                 timeout=5, what="the peer found by all-hosts ping")
    wait_probes_ok(lab, bond)
    cut_active_under_ping(lab, bond)


def test_ipv6_only_group_probes_a_link_local_target(lab, make_bond):
    target = lab.link_local(lab.peer, "p0")
    bond = start(lab, make_bond, address=DATA_V6, addresses=[f"{DATA_V6}/64"],
                 targets=[target])
    for name, m in members(bond).items():
        own = eui64_link_local(lab.mac(lab.host, name))
        assert m["target_mode"] == "configured"
        assert [a.split("/")[0] for a in m["probe_from"]] == [own]
    assert {(t["member"], t["target"]) for t in bond.status()["targets"]} == {
        ("m0", target), ("m1", target)}
    cut_active_under_ping(lab, bond, address=DATA_V6)


# -- timing that adapts, and no false alarm -----------------------------------------------------
def test_a_slow_target_raises_fdt_instead_of_failing_members_and_it_comes_back(lab, make_bond):
    with responder.running(lab, lab.peer, 120) as slow:
        bond = make_bond(lab, **no_test_addresses(lab))
        wait_ping(lab, lab.peer, DATA_V4)
        lab.wait_for(lambda: bond.status()["fdt_ms"] > 300, timeout=10, what="FDT raised")
        st = bond.status()
        assert st["fdt_configured_ms"] == 300
        raised = [e for e in bond.events() if e["kind"] == "fdt"]
        assert raised and raised[0]["reason"].startswith(RAISED), raised
        assert (str(raised[0]["old"]), raised[0]["cause"]) == ("300", "probe")
        time.sleep(2.0)
        assert all(m["state"] != "failed" for m in bond.status()["members"])
        seq = last_seq(bond)
        responder.no_delay(slow)
        fast_at = time.time()
        lab.wait_for(lambda: bond.status()["fdt_ms"] == 300, timeout=FDT_HOLD_S + 20,
                     interval=0.5, what="FDT back to 300 ms")
        lowered = [e for e in changes(bond, seq, "fdt") if e["state"] == "300"]
        assert lowered, bond.events(seq)
        assert lowered[0]["time"] - fast_at >= FDT_HOLD_S
    assert [e for e in bond.events() if e["kind"] == "member" and e["cause"] != "start"] == []
    assert bond.status()["failovers"] == 0


def test_no_false_failover_under_saturating_bidirectional_load(lab, make_bond):
    bond = start(lab, make_bond)
    seq = last_seq(bond)
    with iperf.server(lab, lab.peer):
        report = iperf.wait(iperf.start_client(lab, lab.host, PEER_V4, 20, options=["--bidir"]),
                            timeout=60)
    assert report.exit == 0, report.stderr
    assert report.received()["bits_per_second"] > 1e9  # it really was saturated
    assert changes(bond, seq, "member", "group", "address") == []
    st = bond.status()
    assert st["failovers"] == 0
    assert all(m["probe"] == "ok" for m in st["members"])


# -- load-spread -------------------------------------------------------------------------------
def test_load_spread_member_without_an_address_is_judged_transitively(lab3, make_bond):
    lab = lab3
    bond = start(lab, make_bond, mode="load-spread",
                 addresses=["198.18.0.10/24", "198.18.0.11/24"])
    hosts = {a["address"]: a["member"] for a in bond.status()["addresses"]}
    idle = next(n for n in (lab.member(i) for i in range(3)) if n not in hosts.values())
    modes = {name: m["target_mode"] for name, m in members(bond).items()}
    assert modes == {n: "transitive" if n == idle else "configured" for n in modes}
    seq = last_seq(bond)
    lab.cut(int(idle[1:]))
    lab.wait_for(lambda: members(bond)[idle]["state"] == "failed", timeout=3,
                 what=f"{idle} to be declared failed")
    assert {a["address"]: a["member"] for a in bond.status()["addresses"]} == hosts
    assert changes(bond, seq, "address") == []
    assert all(m["state"] != "failed" for n, m in members(bond).items() if n != idle)
