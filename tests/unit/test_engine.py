"""The group engine on a fake clock, against a simulated wire.

Each test checks one rule the engine owns (see :mod:`vnicbond.core.engine`'s docstring): one
election per input, the last usable member kept online, failovers and address moves counted,
announcement rounds and their MAC, probes turned into frames (asking for a target's MAC again
after losses), replies matched and measured, answers rate-limited, what the prober learned kept
across a reload, a NIC back with a new MAC, and the events reported. The wire is a scripted
target that answers the engine's frames as a host would (scapy decodes and builds them).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether

from vnicbond.config import parse_config
from vnicbond.core.detector import RESOLVE_AFTER, HealthChanged, ProbeAnswered
from vnicbond.core.engine import (
    ANSWER_BURST,
    AdminRefused,
    Effect,
    GroupEngine,
)
from vnicbond.core.events import Event
from vnicbond.core.model import (
    Cause,
    SendAnnouncement,
    SendProbeFrames,
    SetCarrier,
    SetForwarding,
    SetSpread,
)
from vnicbond.wire.mac import format_mac

GROUP_MAC = bytes.fromhex("020000000010")
MACS = {"m0": bytes.fromhex("02aa00000000"), "m1": bytes.fromhex("02aa00000001"),
        "m2": bytes.fromhex("02aa00000002")}
TARGET_MAC = bytes.fromhex("02bb000000fe")
TARGET = "198.18.0.2"
FDT_MS = 700  # probe interval 0.1 s


def config(members: str = "m0 m1", mode: str = "active-backup", probe: bool = True,
           addresses: str = "[198.18.0.10/24, 2001:db8::10/64]", test_base: int = 21,
           announce: str = "{count: 3, interval: 100ms}") -> Any:
    lines = [f"      - name: {m}" + (f"\n        test_address: 198.18.0.{test_base + i}/24"
                                      if probe else "")
             for i, m in enumerate(members.split())]
    text = f"""\
groups:
  - name: ipmp0
    mode: {mode}
    mac: {format_mac(GROUP_MAC)}
    addresses: {addresses}
    failure_detection_time: {FDT_MS}
    announce: {announce}
    probe: {{targets: [{TARGET}]{"" if probe else ", transitive: false"}}}
    members:
""" + "\n".join(lines) + "\n"
    return parse_config(text).groups[0]


def of(effects: list[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def events(effects: list[Effect]) -> list[tuple[str, str | None, str, str | None, str | None]]:
    return [(e.kind, e.member, e.state, e.old, e.cause.value if e.cause else None)
            for e in of(effects, Event)]


class Wire:
    """The engine, a fake clock and a target that answers ARP and echo requests from any
    member whose wire is not cut."""

    def __init__(self, cfg: Any, links: dict[str, bool] | None = None) -> None:
        self.engine = GroupEngine(cfg, rng=random.Random(1))
        self.now = 100.0
        self.cut: set[str] = set()
        self.effects: list[Effect] = []
        links = links or dict.fromkeys(MACS, True)
        names = [m.name for m in cfg.members]
        self.record(self.engine.start({m: links[m] for m in names},
                                      {m: MACS[m] for m in names}, self.now))

    def record(self, effects: list[Effect]) -> list[Effect]:
        self.effects += effects
        for e in of(effects, SendProbeFrames):  # the target answers at once
            if e.member in self.cut:
                continue
            answers = [a for a in map(answer, e.frames) if a is not None]
            if answers:
                self.effects += self.engine.probe_frames(e.member, answers, self.now + 0.001)
        return effects

    def run(self, until: float) -> list[Effect]:
        """Tick at every deadline up to ``until``; returns the effects."""
        start = len(self.effects)
        while (deadline := self.engine.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.record(self.engine.tick(self.now))
        self.now = until
        return self.effects[start:]

    def call(self, fn: Callable[..., list[Effect]], *args: Any) -> list[Effect]:
        return self.record(fn(*args, self.now))


def answer(frame: bytes) -> bytes | None:
    """What the target sends back for one of the engine's frames (None: nothing)."""
    pkt = Ether(frame)
    if ARP in pkt and pkt[ARP].op == 1 and pkt[ARP].pdst == TARGET:
        return bytes(Ether(src=format_mac(TARGET_MAC), dst=pkt.src)
                     / ARP(op=2, hwsrc=format_mac(TARGET_MAC), psrc=TARGET, hwdst=pkt.src,
                           pdst=pkt[ARP].psrc))
    if IP in pkt and ICMP in pkt and pkt[ICMP].type == 8 and pkt[IP].dst == TARGET:
        return bytes(Ether(src=format_mac(TARGET_MAC), dst=pkt.src)
                     / IP(src=TARGET, dst=pkt[IP].src)
                     / ICMP(type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq) / pkt[ICMP].payload)
    if IPv6 in pkt and ICMPv6EchoRequest in pkt:
        req = pkt[ICMPv6EchoRequest]
        return bytes(Ether(src=format_mac(TARGET_MAC), dst=pkt.src)
                     / IPv6(src=pkt[IPv6].dst, dst=pkt[IPv6].src)
                     / ICMPv6EchoReply(id=req.id, seq=req.seq, data=req.data))
    return None


# -- one election per input ---------------------------------------------------------------------
def test_a_dead_target_fails_the_group_in_one_election() -> None:
    w = Wire(config())
    w.run(w.now + 2.0)
    assert w.engine.group.active == "m0"
    w.cut = {"m0", "m1"}  # the target dies: every member loses it
    effects = w.run(w.now + 2.0)
    # Traffic never hopped to m1 on its way down: one decision took both members out.
    assert [(e.tx, e.rx) for e in of(effects, SetForwarding)] == [(None, frozenset())]
    assert of(effects, SetCarrier) == [SetCarrier(False)]
    changes = of(effects, HealthChanged)
    assert {c.member for c in changes} == {"m0", "m1"} and not any(c.healthy for c in changes)
    assert w.engine.failovers == 0


# -- admin ------------------------------------------------------------------------------------
def test_the_last_usable_member_is_not_taken_offline() -> None:
    w = Wire(config(probe=False))
    changed, effects = w.engine.set_offline("m0", True, w.now)
    assert changed and of(effects, SetForwarding) == [SetForwarding("m1", frozenset({"m1"}))]
    with pytest.raises(AdminRefused) as refused:
        w.engine.set_offline("m1", True, w.now)
    assert str(refused.value) == ("cannot take m1 offline: no other member of ipmp0 could "
                                  "carry its traffic")
    assert w.engine.group.member_state("m1").value == "active"
    assert w.engine.set_offline("m0", True, w.now) == (False, [])  # already offline
    changed, effects = w.engine.set_offline("m0", False, w.now)
    assert changed and ("member", "m0", "active", "offline", "admin") in events(effects)


def test_a_failed_member_may_go_offline_even_when_it_is_the_last_but_one() -> None:
    w = Wire(config(probe=False), links={"m0": True, "m1": False})
    changed, _ = w.engine.set_offline("m1", True, w.now)  # failed: it carries nothing
    assert changed and w.engine.group.member_state("m1").value == "offline"


# -- counters and events ----------------------------------------------------------------------
def test_failovers_and_address_moves_are_counted_not_first_placements() -> None:
    w = Wire(config(probe=False))
    assert (w.engine.failovers, w.engine.address_moves) == (0, 0)
    assert events(w.effects) == [
        ("member", "m0", "active", None, "start"), ("member", "m1", "standby", None, "start"),
        ("address", "m0", "198.18.0.10/24", None, "start"),
        ("address", "m0", "2001:db8::10/64", None, "start"),
        ("carrier", None, "on", None, None), ("group", None, "ok", None, "start")]
    effects = w.call(w.engine.link, "m0", False)
    assert (w.engine.failovers, w.engine.address_moves) == (1, 2)
    assert events(effects) == [
        ("member", "m0", "failed", "active", "link"), ("member", "m1", "active", "standby", "link"),
        ("address", "m1", "198.18.0.10/24", "m0", "link"),
        ("address", "m1", "2001:db8::10/64", "m0", "link"),
        ("group", None, "degraded", "ok", "link")]
    assert [e.log_line() for e in of(effects, Event)][::2] == [
        "ipmp0: member m0 active -> failed (link)",
        "ipmp0: address 198.18.0.10/24 moved m0 -> m1 (link)",
        "ipmp0: group ok -> degraded (link)"]


def test_a_reload_is_reported_last() -> None:
    w = Wire(config(probe=False))
    effects = w.call(w.engine.reconfigure, config(probe=False, members="m0 m1 m2"),
                     dict.fromkeys(MACS, True), MACS)
    assert events(effects)[-1] == ("config", None, "reloaded", None, "reload")
    assert w.engine.frames.keys() == {"m0", "m1", "m2"}


# -- announcements ------------------------------------------------------------------------------
def test_announcements_three_rounds_100ms_apart_with_the_group_mac() -> None:
    w = Wire(config(probe=False))
    start = w.now
    first = of(w.effects, SendAnnouncement)
    assert first == [SendAnnouncement("m0", GROUP_MAC, ("198.18.0.10/24", "2001:db8::10/64"))]
    rounds = []
    while (deadline := w.engine.next_deadline()) is not None:
        w.now = deadline
        rounds += [(round(w.now - start, 6), a) for a in
                   of(w.record(w.engine.tick(w.now)), SendAnnouncement)]
    assert rounds == [(0.1, first[0]), (0.2, first[0])]


def test_a_new_decision_cancels_the_rounds_left() -> None:
    w = Wire(config(probe=False))
    effects = w.call(w.engine.link, "m0", False)  # m1 takes over before round two
    assert of(effects, SendAnnouncement) == [
        SendAnnouncement("m1", GROUP_MAC, ("198.18.0.10/24", "2001:db8::10/64"))]
    later = of(w.run(w.now + 1.0), SendAnnouncement)
    assert [a.member for a in later] == ["m1", "m1"]  # m0's rounds two and three never go


def test_load_spreading_announces_with_each_hosting_members_own_mac() -> None:
    w = Wire(config(probe=False, mode="load-spread",
                    addresses="[198.18.0.10/24, 198.18.0.11/24]"))
    assert of(w.effects, SetSpread)
    assert of(w.effects, SendAnnouncement) == [
        SendAnnouncement("m0", MACS["m0"], ("198.18.0.10/24",)),
        SendAnnouncement("m1", MACS["m1"], ("198.18.0.11/24",))]


def test_no_announcements_with_count_zero() -> None:
    w = Wire(config(probe=False, announce="{count: 0}"))
    assert of(w.effects, SendAnnouncement) == []
    assert of(w.call(w.engine.link, "m0", False), SendAnnouncement) == []
    assert len(of(w.effects, SetForwarding)) == 2


# -- probes -------------------------------------------------------------------------------------
def test_probes_ask_for_the_targets_mac_again_after_two_losses() -> None:
    w = Wire(config())
    w.run(w.now + 1.0)
    probes = [e for e in of(w.effects, SendProbeFrames) if e.member == "m0"]
    assert len(probes[0].frames) == 1 and ARP in Ether(probes[0].frames[0])  # MAC unknown
    assert all(len(p.frames) == 1 and ICMP in Ether(p.frames[0]) for p in probes[1:])
    assert w.engine.detector.probe_state("m0") == "ok"
    w.cut = {"m0"}
    start = len(w.effects)
    w.run(w.now + 0.5)
    sent = [e.frames for e in w.effects[start:] if isinstance(e, SendProbeFrames)
            and e.member == "m0"]
    kinds = [["arp" if ARP in Ether(f) else "icmp" for f in frames] for frames in sent]
    # Each loss is known one interval after its probe: the question goes out with a later
    # probe, never with the first RESOLVE_AFTER after the cut, and then with every probe.
    first = kinds.index(["arp", "icmp"])
    assert first >= RESOLVE_AFTER and kinds[:first] == [["icmp"]] * first
    assert kinds[first:] == [["arp", "icmp"]] * (len(kinds) - first)


def test_counted_replies_are_measured_forged_ones_ignored() -> None:
    w = Wire(config())
    w.run(w.now + 1.0)
    answered = of(w.effects, ProbeAnswered)
    assert answered and all(a.rtt_ms == pytest.approx(1.0) for a in answered)
    assert {a.member for a in answered} == {"m0", "m1"} and {a.target for a in answered} == {TARGET}
    counts = w.engine.frames["m0"]
    assert counts["replies"] == len([a for a in answered if a.member == "m0"])
    ignored = counts["ignored"]  # the ARP reply that taught the target's MAC, for one
    forged = Ether(src=format_mac(TARGET_MAC), dst=format_mac(MACS["m0"])) / IP(
        src=TARGET, dst="198.18.0.21") / ICMP(type=0, id=1, seq=1) / (bytes(10))
    effects = w.engine.probe_frames("m0", [bytes(forged)], w.now)
    assert effects == [] and counts["ignored"] == ignored + 1


def test_answers_for_a_test_address_are_rate_limited() -> None:
    w = Wire(config())
    question = bytes(Ether(src="02:cc:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc="02:cc:00:00:00:01", psrc="198.18.0.99",
                           pdst="198.18.0.21"))
    effects = w.engine.probe_frames("m0", [question] * 30, w.now)
    (sent,) = of(effects, SendProbeFrames)
    assert len(sent.frames) == ANSWER_BURST
    counts = w.engine.frames["m0"]
    assert (counts["received"], counts["answered"], counts["rate_limited"]) == (30, 20, 10)
    assert w.engine.answers_rate_limited() == 10
    later = w.engine.probe_frames("m0", [question], w.now + 0.05)  # 5 tokens back
    assert len(of(later, SendProbeFrames)[0].frames) == 1


def test_a_reload_keeps_what_the_prober_learned_unless_the_test_address_changes() -> None:
    w = Wire(config())
    w.run(w.now + 1.0)
    token = w.engine.prober.token
    assert w.engine.prober.members["m0"].neighbors
    w.call(w.engine.reconfigure, config(), dict.fromkeys(MACS, True), MACS)
    assert w.engine.prober.members["m0"].neighbors and w.engine.prober.token == token
    w.call(w.engine.reconfigure, config(test_base=31), dict.fromkeys(MACS, True), MACS)
    # A new test address: the target's MAC, the same on that wire, is kept.
    assert w.engine.prober.members["m0"].neighbors
    assert w.engine.probe_sockets("m0").questions == (ip_address("198.18.0.31").packed,)
    w.run(w.now + 2.0)
    assert w.engine.detector.probe_state("m0") == "ok"


def test_a_member_without_a_test_address_does_not_probe() -> None:
    w = Wire(config(probe=False))  # and no probing without one (probe.transitive: false)
    assert w.engine.probe_sockets("m0").macs == ()
    w.run(w.now + 1.0)
    assert of(w.effects, SendProbeFrames) == []


def test_a_nic_back_probes_with_its_new_mac() -> None:
    w = Wire(config())
    w.run(w.now + 1.0)
    w.call(w.engine.link, "m1", False)
    new_mac = bytes.fromhex("02aa000000ff")
    w.call(w.engine.nic_back, "m1", new_mac, True)
    start = len(w.effects)
    w.run(w.now + 2.0)
    frames = [f for e in w.effects[start:] if isinstance(e, SendProbeFrames)
              and e.member == "m1" for f in e.frames]
    assert frames and all(Ether(f).src == format_mac(new_mac) for f in frames)
    assert w.engine.group.member_state("m1").value == "standby"  # repaired by the rules
    assert [c.cause for c in of(w.effects[start:], HealthChanged)] == [Cause.PROBE]
