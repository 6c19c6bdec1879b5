"""The group engine and the guests behind the TAP, on a fake clock (issue 12).

What the engine (:mod:`vnicbond.core.engine`) owes the guests: in active-backup, when another
member takes over, every guest MAC is announced from it (:class:`SendMacAnnouncement`),
``announce.count`` rounds ``announce.interval`` apart through :meth:`GroupEngine.tick`, and a
later decision cancels the rounds left; nothing is announced when there are no guests, when
announcements are off, or for a MAC's first placement. In load spreading a change of the active
members re-places the guest MACs (:class:`SetMacHosts`) and announces those that moved, from
their new member only. The TAP's promiscuity reaches the members' filter. The engine is driven
as in ``test_engine.py`` (its :class:`Wire`, without probes: link events decide).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tests.unit.test_engine import MACS, Wire, config, of
from vnicbond.core.engine import Effect
from vnicbond.core.model import (
    SendAnnouncement,
    SendMacAnnouncement,
    SetForwarding,
    SetMacHosts,
    SetMemberFilter,
    SetSpread,
)


def mac(i: int) -> bytes:
    return bytes([0x02, 0x55]) + i.to_bytes(4, "big")


A, B, C, D = (mac(i) for i in range(1, 5))


def learned(w: Wire, added: list[bytes], removed: list[bytes] | None = None) -> list[Effect]:
    """Guest MACs came (and went) behind the TAP."""
    return w.call(w.engine.macs_changed, added, removed or [])


def timed_rounds(w: Wire, until: float, start: float) -> list[tuple[float, Any]]:
    """The MAC announcements :meth:`tick` sends up to ``until``, with their time since
    ``start``."""
    out = []
    while (deadline := w.engine.next_deadline()) is not None and deadline <= until:
        w.now = max(w.now, deadline)
        out += [(round(w.now - start, 6), a)
                for a in of(w.record(w.engine.tick(w.now)), SendMacAnnouncement)]
    w.now = until
    return out


def index(effects: list[Effect], kind: type) -> int:
    return next(i for i, e in enumerate(effects) if isinstance(e, kind))


# -- active-backup -------------------------------------------------------------------------------
def test_a_first_placement_is_not_announced() -> None:
    w = Wire(config(probe=False))
    effects = learned(w, [A, B])
    assert of(effects, SendMacAnnouncement) == []
    assert of(effects, SendAnnouncement) == []
    assert timed_rounds(w, w.now + 1.0, w.now) == []


def test_failover_announces_every_guest_mac_from_the_new_active_member_in_rounds() -> None:
    w = Wire(config(probe=False))  # announce: 3 rounds, 100 ms apart
    learned(w, [A, B, C])
    timed_rounds(w, w.now + 1.0, w.now)  # the start's address rounds are over
    start = w.now
    effects = w.call(w.engine.link, "m0", False)
    first = SendMacAnnouncement("m1", (A, B, C))
    assert of(effects, SendMacAnnouncement) == [first]
    # Forwarding moves first, so the announcements leave by the member now sending.
    assert effects.index(SetForwarding("m1", frozenset({"m1"}))) < effects.index(first)
    assert timed_rounds(w, start + 1.0, start) == [(0.1, first), (0.2, first)]
    assert w.engine.next_deadline() is None


def test_the_guests_that_left_are_not_announced() -> None:
    w = Wire(config(probe=False))
    learned(w, [A, B, C])
    learned(w, [D], [B])
    effects = w.call(w.engine.link, "m0", False)
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m1", (A, C, D))]


def test_a_later_decision_cancels_the_rounds_left() -> None:
    w = Wire(config(probe=False, members="m0 m1 m2"))
    learned(w, [A])
    timed_rounds(w, w.now + 1.0, w.now)
    start = w.now
    w.call(w.engine.link, "m0", False)  # m1 takes over
    assert timed_rounds(w, start + 0.05, start) == []
    effects = w.call(w.engine.link, "m1", False)  # and m2 from it, before round two
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m2", (A,))]
    later = timed_rounds(w, start + 1.0, start)
    assert later == [(0.15, SendMacAnnouncement("m2", (A,))),
                     (0.25, SendMacAnnouncement("m2", (A,)))]  # none of m1's left


def test_a_failed_group_announces_nothing_and_stops_the_rounds() -> None:
    w = Wire(config(probe=False))
    learned(w, [A])
    timed_rounds(w, w.now + 1.0, w.now)
    start = w.now
    w.call(w.engine.link, "m0", False)
    effects = w.call(w.engine.link, "m1", False)  # no member left
    assert of(effects, SetForwarding) == [SetForwarding(None, frozenset())]
    assert of(effects, SendMacAnnouncement) == []
    assert timed_rounds(w, start + 1.0, start) == []
    effects = w.call(w.engine.link, "m1", True)  # back: the guests are announced from it
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m1", (A,))]


def test_no_guests_no_mac_announcements() -> None:
    w = Wire(config(probe=False))
    effects = w.call(w.engine.link, "m0", False)
    assert of(effects, SendMacAnnouncement) == []
    assert of(effects, SendAnnouncement)  # the data addresses still are
    assert timed_rounds(w, w.now + 1.0, w.now) == []
    learned(w, [A], [])
    learned(w, [], [A])  # gone again before the next failover
    assert of(w.call(w.engine.link, "m0", True), SendMacAnnouncement) == []


def test_no_mac_announcements_with_count_zero() -> None:
    w = Wire(config(probe=False, announce="{count: 0}"))
    learned(w, [A, B])
    assert of(w.call(w.engine.link, "m0", False), SendMacAnnouncement) == []
    assert w.engine.next_deadline() is None


def test_the_rounds_follow_the_configured_count_and_interval() -> None:
    w = Wire(config(probe=False, announce="{count: 2, interval: 250ms}"))
    learned(w, [A])
    timed_rounds(w, w.now + 1.0, w.now)
    start = w.now
    effects = w.call(w.engine.link, "m0", False)
    assert len(of(effects, SendMacAnnouncement)) == 1
    assert timed_rounds(w, start + 2.0, start) == [(0.25, SendMacAnnouncement("m1", (A,)))]


# -- load spreading ------------------------------------------------------------------------------
def spread_wire(members: str = "m0 m1") -> Wire:
    """Load spreading with guests A, B, C, D learned (with two members: A, C on m0 and B, D
    on m1; with three: A, D on m0, B on m1, C on m2), and the start's rounds over."""
    w = Wire(config(probe=False, mode="load-spread", members=members))
    effects = learned(w, [A, B, C, D])
    names = members.split()
    placed = tuple((m, names[i % len(names)]) for i, m in enumerate([A, B, C, D]))
    assert of(effects, SetMacHosts) == [SetMacHosts(placed, ())]
    assert of(effects, SendMacAnnouncement) == []  # first placement: not announced
    timed_rounds(w, w.now + 1.0, w.now)
    return w


def repaired(w: Wire, member: str) -> list[Effect]:
    """``member``'s link comes back; the effects until it is repaired and its rounds over."""
    w.call(w.engine.link, member, True)
    return w.run(w.now + 60.0)


def test_load_spreading_member_loss_moves_its_macs_and_announces_them_from_the_new_one() -> None:
    w = spread_wire()
    start = w.now
    effects = w.call(w.engine.link, "m0", False)
    moved = SetMacHosts(((A, "m1"), (C, "m1")), ())
    first = SendMacAnnouncement("m1", (A, C))
    assert of(effects, SetMacHosts) == [moved]
    assert of(effects, SendMacAnnouncement) == [first]  # B and D did not move: not announced
    # The datapath's table first, the MACs' new member next, then the announcements.
    assert index(effects, SetSpread) < effects.index(moved) < effects.index(first)
    assert timed_rounds(w, start + 1.0, start) == [(0.1, first), (0.2, first)]


def test_load_spreading_failback_brings_the_macs_home_and_announces_them_there() -> None:
    w = spread_wire()
    w.call(w.engine.link, "m0", False)
    timed_rounds(w, w.now + 1.0, w.now)
    effects = repaired(w, "m0")
    assert of(effects, SetMacHosts) == [SetMacHosts(((A, "m0"), (C, "m0")), ())]
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m0", (A, C))] * 3
    assert w.engine.guests.hosts == {A: "m0", B: "m1", C: "m0", D: "m1"}


def test_load_spreading_without_failback_the_macs_stay_on_their_new_member() -> None:
    w = Wire(replace(config(probe=False, mode="load-spread"), failback=False))
    learned(w, [A])
    w.call(w.engine.link, "m0", False)
    assert w.engine.guests.hosts == {A: "m1"}
    timed_rounds(w, w.now + 1.0, w.now)
    effects = repaired(w, "m0")
    assert of(effects, SetMacHosts) == [] and of(effects, SendMacAnnouncement) == []
    assert w.engine.guests.hosts == {A: "m1"}


def test_load_spreading_a_joining_member_takes_its_share_announced_from_it() -> None:
    w = spread_wire()
    effects = w.call(w.engine.reconfigure,
                     config(probe=False, mode="load-spread", members="m0 m1 m2"),
                     dict.fromkeys(MACS, True), MACS)
    assert of(effects, SetMacHosts) == [SetMacHosts(((C, "m2"),), ())]
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m2", (C,))]


def test_load_spreading_a_new_mac_goes_to_the_emptiest_member_unannounced() -> None:
    w = spread_wire("m0 m1 m2")  # A, D on m0; B on m1; C on m2
    assert w.engine.guests.hosts == {A: "m0", B: "m1", C: "m2", D: "m0"}
    effects = learned(w, [mac(9)], [A])
    assert of(effects, SetMacHosts) == [SetMacHosts(((mac(9), "m0"), ), (A,))]
    assert of(effects, SendMacAnnouncement) == []


def test_load_spreading_a_new_decision_supersedes_the_mac_rounds() -> None:
    w = spread_wire("m0 m1 m2")
    start = w.now
    effects = w.call(w.engine.link, "m0", False)  # A to m1, D to m2
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m1", (A,)),
                                                SendMacAnnouncement("m2", (D,))]
    timed_rounds(w, start + 0.05, start)
    effects = w.call(w.engine.link, "m1", False)  # before round two: A and B to m2
    assert of(effects, SendMacAnnouncement) == [SendMacAnnouncement("m2", (A, B))]
    rounds = timed_rounds(w, start + 1.0, start)
    # Nothing from m1 any more: no round pulls A back to the member that lost it.
    assert rounds == [(0.15, SendMacAnnouncement("m2", (A, B))),
                      (0.25, SendMacAnnouncement("m2", (A, B)))]


# -- the TAP's promiscuity -----------------------------------------------------------------------
def test_the_taps_promiscuity_reaches_the_members_filter() -> None:
    w = Wire(config(probe=False))
    effects = learned(w, [A])
    assert of(effects, SetMemberFilter) == [SetMemberFilter((A,), (), False)]
    effects = w.call(w.engine.tap_promiscuous, True)
    assert effects == [SetMemberFilter((), (A,), True)]
    assert w.call(w.engine.tap_promiscuous, True) == []
    assert w.call(w.engine.tap_promiscuous, False) == [SetMemberFilter((A,), (), False)]
