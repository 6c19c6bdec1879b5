"""Unit tests for vnicbond.core.group in load-spread mode (IPMP-style load spreading).

The expectations come from the load-spread rules in the vnicbond.core.group docstring and the
placement rules in vnicbond.core.placement:

* every usable non-standby (regular) member is active, except that with ``failback: false``
  (IPMP's FAILBACK=no) a repaired regular member waits as a spare (STANDBY, in no
  SetSpread.active) while other members carry the traffic, and joins as soon as one of the
  active members leaves (or when no member is active);
* usable standby members stand in, one for one, for regular members that are not active
  (failed, offline, or held as spares), in preference order. With ``failback: true`` a
  standby stands in only while a regular member is unusable and hands everything back when it
  returns (a repaired, preferred standby takes over from a less preferred one); with
  ``failback: false`` one standing in keeps its place, also after the member it replaces is
  repaired (that one is then the spare) and against a repaired, preferred standby;
* each data address is hosted by one active member. Home: round robin over the regular
  members in configuration order. Sticky: an address stays on its member while that member
  is active; the addresses of a member that left go (in configuration order) to the active
  member with the fewest (ties: preference order); with ``failback: true`` an address goes
  home when its home member is active. Even out: then, while one active member hosts two or
  more addresses more than another, the fullest gives its last address (configuration order)
  to the emptiest (ties: preference order). So an address on a still-active member moves only
  to go home or to even out an imbalance of more than one. Every moved address is announced
  from its new member and only there;
* no usable member: no active member, every address hosted by nobody, carrier off, group FAILED.

Every batch of actions is also checked against the state change it describes (``Harness.run``):
MemberChanged exactly for real changes, one SetSpread when the spread or placement changed,
one AddressMoved per moved address, announcements exactly for moved addresses, carrier equal to
"some member is active".
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from vnicbond.core.group import LOAD_SPREAD, Group
from vnicbond.core.model import (
    Action,
    AddressMoved,
    Announce,
    Cause,
    GroupChanged,
    GroupState,
    MemberChanged,
    MemberState,
    SetCarrier,
    SetForwarding,
    SetSpread,
)

ACTIVE, STANDBY, FAILED, OFFLINE = (MemberState.ACTIVE, MemberState.STANDBY,
                                    MemberState.FAILED, MemberState.OFFLINE)
OK, DEGRADED, GFAILED = GroupState.OK, GroupState.DEGRADED, GroupState.FAILED
ADDRS = ("198.18.0.10/24", "2001:db8::10/64", "198.18.0.11/24", "2001:db8::11/64",
         "198.18.0.12/24", "2001:db8::12/64")

Members = list[tuple[str, bool]]
REG2: Members = [("a", False), ("b", False)]
REG3: Members = [("a", False), ("b", False), ("c", False)]
REG4: Members = [("a", False), ("b", False), ("c", False), ("d", False)]


# -- helpers -----------------------------------------------------------------------------------
def of(actions: Sequence[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def preference(members: Members) -> list[str]:
    """Configuration order, standby members last."""
    return [n for n, s in members if not s] + [n for n, s in members if s]


def home_of(members: Members, addresses: Sequence[str]) -> dict[str, str]:
    """Home placement: round robin over the non-standby members in configuration order."""
    regular = [n for n, s in members if not s]
    return {a: regular[i % len(regular)] for i, a in enumerate(addresses)}


def counts(hosts: dict[str, str | None], spread: Sequence[str]) -> dict[str, int]:
    c = Counter(h for h in hosts.values() if h is not None)
    return {m: c[m] for m in spread}


def within_one(hosts: dict[str, str | None], spread: Sequence[str]) -> bool:
    n = counts(hosts, spread).values()
    return not n or max(n) - min(n) <= 1


def placed(addresses: Sequence[str], spread: Sequence[str], before: dict[str, str | None],
           home: dict[str, str], failback: bool) -> dict[str, str | None]:
    """Reference placement, step by step from the rules: failback home / sticky, orphans (in
    address order) to the fewest, then even out (fullest's last address to the emptiest);
    ties in preference (spread) order."""
    if not spread:
        return dict.fromkeys(addresses)
    rank = {m: i for i, m in enumerate(spread)}
    out: dict[str, str] = {}
    for a in addresses:
        if failback and home.get(a) in rank:
            out[a] = home[a]
        elif before.get(a) in rank:
            out[a] = before[a]  # type: ignore[assignment]
    n = Counter(out.values())
    for a in addresses:
        if a not in out:
            m = min(spread, key=lambda x: (n[x], rank[x]))
            out[a] = m
            n[m] += 1
    while True:
        fullest = min(spread, key=lambda x: (-n[x], rank[x]))
        emptiest = min(spread, key=lambda x: (n[x], rank[x]))
        if n[fullest] - n[emptiest] < 2:
            break
        out[[a for a in addresses if out[a] == fullest][-1]] = emptiest
        n[fullest] -= 1
        n[emptiest] += 1
    return {a: out[a] for a in addresses}


def orphans_to_fewest(hosts: dict[str, str | None], orphans: Sequence[str],
                      spread: Sequence[str]) -> dict[str, str | None]:
    """``hosts`` with each orphan (in address order) given to the active member with the
    fewest addresses, ties in preference (spread) order, and nothing evened out."""
    out = dict(hosts)
    for a in orphans:
        out[a] = None
    c = counts(out, spread)
    for a in orphans:
        m = min(spread, key=lambda x: (c[x], spread.index(x)))
        out[a] = m
        c[m] += 1
    return out


def expected_spread(pref: Sequence[str], standby: dict[str, bool], usable: Sequence[str],
                    before: Sequence[str], failback: bool) -> tuple[str, ...]:
    """Reference for the active members after a decision, from the rules.

    Regular members: every usable one with failback; without, a usable one that was not
    active (repaired, or back from offline) joins only if an active member left or none was
    active. Standby members: one per regular member that is not active, preferring (without
    failback) those already standing in, then preference order."""
    left = any(m not in usable for m in before)
    regular = [m for m in pref if not standby[m]]
    joined = [m for m in regular if m in usable
              and (failback or not before or left or m in before)]
    candidates = [m for m in pref if standby[m] and m in usable]
    if not failback:
        candidates.sort(key=lambda m: m not in before)
    chosen = set(joined) | set(candidates[:len(regular) - len(joined)])
    return tuple(m for m in pref if m in chosen)


@dataclass
class Snapshot:
    spread: tuple[str, ...]
    hosts: dict[str, str | None]
    states: dict[str, MemberState | None]
    carrier: bool | None
    state: GroupState | None


class Harness:
    """A load-spread Group plus the inputs it was given; ``run`` checks every batch."""

    def __init__(self, members: Members, addresses: Sequence[str] = ADDRS[:4],
                 failback: bool = True) -> None:
        self.members = members
        self.addresses = tuple(addresses)
        self.failback = failback
        self.g = Group("ipmp0", members, list(addresses), failback=failback, mode=LOAD_SPREAD)
        self.healthy = {n: False for n, _ in members}
        self.offline = {n: False for n, _ in members}
        self.standby = dict(members)
        self.pref = preference(members)
        self.home = home_of(members, addresses)
        self.started = False

    # -- observation ---------------------------------------------------------------------------
    def snap(self) -> Snapshot:
        g = self.g
        st = {n: (g.member_state(n) if self.started else None) for n in self.standby}
        return Snapshot(tuple(g.spread), g.address_hosts(), st, g.carrier, g.state)

    @property
    def hosts(self) -> dict[str, str | None]:
        return self.g.address_hosts()

    @property
    def spread(self) -> tuple[str, ...]:
        return tuple(self.g.spread)

    def states(self) -> dict[str, MemberState]:
        return {n: self.g.member_state(n) for n in self.g.members()}

    def usable(self) -> list[str]:
        return [m for m in self.pref if self.healthy[m] and not self.offline[m]]

    # -- inputs --------------------------------------------------------------------------------
    def start(self, healthy: dict[str, bool] | None = None) -> list[Action]:
        if healthy is None:
            healthy = dict.fromkeys(self.standby, True)
        self.healthy.update(healthy)

        def go() -> list[Action]:
            self.started = True
            return self.g.start(dict(healthy))
        return self.run(go, Cause.START, changed=True)

    def health(self, member: str, ok: bool, cause: Cause = Cause.LINK) -> list[Action]:
        changed = self.healthy[member] != ok
        self.healthy[member] = ok
        return self.run(lambda: self.g.set_health(member, ok, cause), cause, changed)

    def healths(self, changes: dict[str, bool], cause: Cause = Cause.PROBE) -> list[Action]:
        changed = any(self.healthy[m] != ok for m, ok in changes.items())
        self.healthy.update(changes)
        return self.run(lambda: self.g.update_health(dict(changes), cause), cause, changed)

    def set_offline(self, member: str, off: bool) -> list[Action]:
        changed = self.offline[member] != off
        self.offline[member] = off
        return self.run(lambda: self.g.set_offline(member, off), Cause.ADMIN, changed)

    # -- the per-batch check -------------------------------------------------------------------
    def run(self, fn: Callable[[], list[Action]], cause: Cause, changed: bool) -> list[Action]:
        before = self.snap()
        actions = fn()
        after = self.snap()
        ctx = f"cause={cause} before={before} after={after} actions={actions}"
        if not changed:
            assert actions == [], ctx
        start = cause is Cause.START
        assert of(actions, SetForwarding) == [], ctx  # load spreading never uses it

        # Member states follow health, offline and the spread.
        for m, s in after.states.items():
            if self.offline[m]:
                assert s is OFFLINE, ctx
            elif not self.healthy[m]:
                assert s is FAILED, ctx
            else:
                assert s is (ACTIVE if m in after.spread else STANDBY), ctx
        # The spread: usable members, in preference order.
        assert list(after.spread) == [m for m in self.pref if m in after.spread], ctx
        assert set(after.spread) <= set(self.usable()), ctx
        assert self.g.active == (after.spread[0] if after.spread else None), ctx
        # Every address on an active member iff one exists.
        if after.spread:
            assert all(h in after.spread for h in after.hosts.values()), ctx
        else:
            assert all(h is None for h in after.hosts.values()), ctx
        assert list(after.hosts) == list(self.addresses), ctx

        # MemberChanged exactly for real changes, with the cause.
        expected_mc = [MemberChanged(m, before.states[m], after.states[m], cause)
                       for m in self.g.members() if after.states[m] != before.states[m]]
        assert of(actions, MemberChanged) == expected_mc, ctx
        # SetSpread once when the spread or the placement changed (and at start).
        moved = [a for a in self.addresses if after.hosts[a] != before.hosts[a]]
        spread_actions = of(actions, SetSpread)
        if start or moved or after.spread != before.spread:
            assert spread_actions == [SetSpread(after.spread, tuple(after.hosts.items()))], ctx
        else:
            assert spread_actions == [], ctx
        # One AddressMoved per moved address.
        assert of(actions, AddressMoved) == [
            AddressMoved(a, before.hosts[a], after.hosts[a], cause) for a in moved], ctx
        # Announcements: exactly the moved addresses (all of them at start), from their host.
        announce = self.addresses if start else tuple(moved)
        expected_ann = []
        for m in after.spread:
            mine = tuple(a for a in announce if after.hosts[a] == m)
            if mine:
                expected_ann.append(Announce(m, mine))
        ann = of(actions, Announce)
        assert ann == expected_ann, ctx
        # Carrier.
        assert after.carrier == bool(after.spread), ctx
        if after.carrier != before.carrier:
            assert of(actions, SetCarrier) == [SetCarrier(bool(after.carrier))], ctx
        else:
            assert of(actions, SetCarrier) == [], ctx
        # Announce after the spread is installed and the carrier is on.
        for a in ann:
            assert actions.index(spread_actions[0]) < actions.index(a), ctx
            if SetCarrier(True) in actions:
                assert actions.index(SetCarrier(True)) < actions.index(a), ctx
        # Group state.
        usable = self.usable()
        expected_state = (GFAILED if not usable
                          else OK if len(usable) == len(self.standby) else DEGRADED)
        assert after.state is expected_state, ctx
        if after.state != before.state:
            assert of(actions, GroupChanged) == [
                GroupChanged(before.state, after.state, cause)], ctx
        else:
            assert of(actions, GroupChanged) == [], ctx
        return actions


def started(members: Members, addresses: Sequence[str] = ADDRS[:4], failback: bool = True,
            healthy: dict[str, bool] | None = None) -> Harness:
    h = Harness(members, addresses, failback)
    h.start(healthy)
    return h


# -- start -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_addrs", range(1, 7))
@pytest.mark.parametrize("members", [REG2, REG3], ids=["2", "3"])
def test_start_spreads_addresses_evenly_and_announces_each_once(members: Members,
                                                                n_addrs: int) -> None:
    addrs = ADDRS[:n_addrs]
    names = [n for n, _ in members]
    h = Harness(members, addrs)
    actions = h.start()
    expected_hosts = {a: names[i % len(names)] for i, a in enumerate(addrs)}
    assert h.hosts == expected_hosts
    assert within_one(h.hosts, names)
    assert h.spread == tuple(names)
    assert of(actions, SetSpread) == [SetSpread(tuple(names), tuple(expected_hosts.items()))]
    assert of(actions, MemberChanged) == [MemberChanged(n, None, ACTIVE, Cause.START)
                                          for n in names]
    assert of(actions, AddressMoved) == [AddressMoved(a, None, expected_hosts[a], Cause.START)
                                         for a in addrs]
    # Every address announced exactly once, from its host.
    announced = [(ann.member, a) for ann in of(actions, Announce) for a in ann.addresses]
    assert sorted(announced) == sorted((m, a) for a, m in expected_hosts.items())
    assert len({a for _, a in announced}) == len(announced) == n_addrs
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert of(actions, GroupChanged) == [GroupChanged(None, OK, Cause.START)]
    assert h.states() == dict.fromkeys(names, ACTIVE)
    assert h.g.carrier is True and h.g.state is OK


def test_start_exact_actions_two_members_three_addresses() -> None:
    h = Harness(REG2, ADDRS[:3])
    a0, a1, a2 = ADDRS[:3]
    assert h.start() == [
        MemberChanged("a", None, ACTIVE, Cause.START),
        MemberChanged("b", None, ACTIVE, Cause.START),
        SetSpread(("a", "b"), ((a0, "a"), (a1, "b"), (a2, "a"))),
        AddressMoved(a0, None, "a", Cause.START),
        AddressMoved(a1, None, "b", Cause.START),
        AddressMoved(a2, None, "a", Cause.START),
        SetCarrier(True),
        Announce("a", (a0, a2)),
        Announce("b", (a1,)),
        GroupChanged(None, OK, Cause.START),
    ]


def test_start_without_addresses_spreads_flows_and_announces_nothing() -> None:
    h = Harness(REG3, ())
    actions = h.start()
    assert of(actions, SetSpread) == [SetSpread(("a", "b", "c"), ())]
    assert of(actions, Announce) == []
    assert of(actions, AddressMoved) == []
    assert of(actions, SetCarrier) == [SetCarrier(True)]


def test_start_lists_non_standby_members_in_configuration_order() -> None:
    members: Members = [("c", False), ("s", True), ("a", False), ("b", False)]
    h = started(members, ADDRS)
    assert h.spread == ("c", "a", "b")
    assert h.g.member_state("s") is STANDBY
    assert "s" not in h.hosts.values()
    assert [h.hosts[a] for a in ADDRS] == ["c", "a", "b", "c", "a", "b"]


@pytest.mark.parametrize("failback", [True, False])
def test_start_with_a_member_down_spreads_over_the_others(failback: bool) -> None:
    h = started(REG3, ADDRS, failback, healthy={"a": False, "b": True, "c": True})
    assert h.spread == ("b", "c")
    assert counts(h.hosts, h.spread) == {"b": 3, "c": 3}
    assert h.g.member_state("a") is FAILED
    assert h.g.state is DEGRADED


def test_start_with_nothing_healthy_fails_the_group() -> None:
    h = Harness(REG2, ADDRS[:2])
    actions = h.start({"a": False, "b": False})
    assert of(actions, SetSpread) == [SetSpread((), ((ADDRS[0], None), (ADDRS[1], None)))]
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert of(actions, Announce) == []
    assert of(actions, AddressMoved) == []
    assert of(actions, GroupChanged) == [GroupChanged(None, GFAILED, Cause.START)]
    assert h.states() == {"a": FAILED, "b": FAILED}


# -- a member fails ----------------------------------------------------------------------------
FAIL_CASES = [(m, n, k) for m in (REG2, REG3) for n in range(1, 7) for k in range(len(m))]


@pytest.mark.parametrize(("members", "n_addrs", "k"), FAIL_CASES,
                         ids=[f"{len(m)}m-{n}a-fail{k}" for m, n, k in FAIL_CASES])
@pytest.mark.parametrize("failback", [True, False])
def test_a_member_fails_only_its_addresses_move_to_the_fewest(
        members: Members, n_addrs: int, k: int, failback: bool) -> None:
    h = started(members, ADDRS[:n_addrs], failback)
    before = h.hosts
    gone = members[k][0]
    rest = tuple(n for n, _ in members if n != gone)
    orphans = [a for a in h.addresses if before[a] == gone]

    actions = h.health(gone, False)

    assert h.spread == rest
    assert of(actions, SetSpread)[0].active == rest  # type: ignore[attr-defined]
    # From an even start, orphans given to the fewest leave nothing to even out.
    assert h.hosts == orphans_to_fewest(before, orphans, rest)
    assert h.hosts == placed(h.addresses, rest, before, h.home, failback)
    assert within_one(h.hosts, rest)
    assert [a for a in h.addresses if h.hosts[a] != before[a]] == orphans
    assert of(actions, AddressMoved) == [AddressMoved(a, gone, h.hosts[a], Cause.LINK)
                                         for a in orphans]
    announced = [(ann.member, a) for ann in of(actions, Announce) for a in ann.addresses]
    assert sorted(announced) == sorted((h.hosts[a], a) for a in orphans)
    assert of(actions, MemberChanged) == [MemberChanged(gone, ACTIVE, FAILED, Cause.LINK)]
    assert of(actions, SetCarrier) == []
    assert of(actions, GroupChanged) == [GroupChanged(OK, DEGRADED, Cause.LINK)]


def test_member_fails_exact_actions_three_members_four_addresses() -> None:
    h = started(REG3, ADDRS[:4])
    a0, a1, a2, a3 = ADDRS[:4]
    # home: a0 a, a1 b, a2 c, a3 a. a fails: a0 -> b (tie, preference), a3 -> c (fewest).
    assert h.health("a", False, Cause.PROBE) == [
        MemberChanged("a", ACTIVE, FAILED, Cause.PROBE),
        SetSpread(("b", "c"), ((a0, "b"), (a1, "b"), (a2, "c"), (a3, "c"))),
        AddressMoved(a0, "a", "b", Cause.PROBE),
        AddressMoved(a3, "a", "c", Cause.PROBE),
        Announce("b", (a0,)),
        Announce("c", (a3,)),
        GroupChanged(OK, DEGRADED, Cause.PROBE),
    ]


def test_failure_of_a_member_hosting_nothing_moves_no_address() -> None:
    h = started(REG3, ADDRS[:2])  # c hosts nothing
    before = h.hosts
    actions = h.health("c", False)
    assert h.hosts == before
    assert of(actions, SetSpread) == [SetSpread(("a", "b"), tuple(before.items()))]
    assert of(actions, AddressMoved) == [] and of(actions, Announce) == []


def test_orphans_go_to_the_member_with_the_fewest_not_round_robin() -> None:
    h = started(REG3, ADDRS[:5])  # a: 0 3, b: 1 4, c: 2
    h.health("a", False)
    # c had the fewest (1): it takes a's first address, then the tie goes to b.
    assert h.hosts == {ADDRS[0]: "c", ADDRS[1]: "b", ADDRS[2]: "c", ADDRS[3]: "b",
                       ADDRS[4]: "b"}


def test_second_failure_moves_only_the_second_members_addresses() -> None:
    h = started(REG3, ADDRS)
    h.health("a", False)
    mid = h.hosts
    actions = h.health("b", False)
    moved = [a for a in ADDRS if mid[a] == "b"]
    assert h.hosts == dict.fromkeys(ADDRS, "c")
    assert of(actions, Announce) == [Announce("c", tuple(moved))]


def test_health_without_change_returns_nothing() -> None:
    h = started(REG3, ADDRS)
    assert h.health("a", True) == []
    h.health("a", False)
    assert h.health("a", False) == []
    assert h.healths({"a": False, "b": True}) == []


def test_group_wide_failure_in_one_batch() -> None:
    h = started(REG3, ADDRS)
    actions = h.healths({"a": False, "b": False})
    assert h.hosts == dict.fromkeys(ADDRS, "c")
    assert of(actions, Announce) == [Announce("c", tuple(a for a in ADDRS
                                                         if a not in ADDRS[2::3]))]
    assert len(of(actions, SetSpread)) == 1


# -- return with failback: true ----------------------------------------------------------------
RETURN_CASES = [(m, n, k) for m in (REG2, REG3) for n in range(1, 7) for k in range(len(m))]


@pytest.mark.parametrize(("members", "n_addrs", "k"), RETURN_CASES,
                         ids=[f"{len(m)}m-{n}a-member{k}" for m, n, k in RETURN_CASES])
def test_failback_true_return_restores_the_start_placement(
        members: Members, n_addrs: int, k: int) -> None:
    h = started(members, ADDRS[:n_addrs], failback=True)
    start_hosts, start_spread = h.hosts, h.spread
    name = members[k][0]
    h.health(name, False)
    degraded = h.hosts
    actions = h.health(name, True)
    assert h.hosts == start_hosts
    assert h.spread == start_spread
    back = [a for a in h.addresses if start_hosts[a] == name]
    assert of(actions, AddressMoved) == [AddressMoved(a, degraded[a], name, Cause.LINK)
                                         for a in back]
    assert of(actions, Announce) == ([Announce(name, tuple(back))] if back else [])
    assert of(actions, MemberChanged) == [MemberChanged(name, FAILED, ACTIVE, Cause.LINK)]
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, OK, Cause.LINK)]


def test_failback_true_after_two_failures_each_return_takes_its_own_home() -> None:
    h = started(REG3, ADDRS)
    start_hosts = h.hosts  # a: 0 3, b: 1 4, c: 2 5
    a0, a1, a2, a3, a4, a5 = ADDRS
    h.health("a", False)
    h.health("b", False)
    assert h.hosts == dict.fromkeys(ADDRS, "c")
    actions = h.health("b", True)
    # b's home addresses (1, 4) go home; c is left with 4 against 2 and evens out by giving
    # its last address (5, at home on c) to b.
    assert h.hosts == {a0: "c", a1: "b", a2: "c", a3: "c", a4: "b", a5: "b"}
    assert of(actions, AddressMoved) == [AddressMoved(a, "c", "b", Cause.LINK)
                                         for a in (a1, a4, a5)]
    assert of(actions, Announce) == [Announce("b", (a1, a4, a5))]
    actions = h.health("a", True)
    assert h.hosts == start_hosts  # every address home again (5 back from b to c)
    assert of(actions, AddressMoved) == [AddressMoved(a0, "c", "a", Cause.LINK),
                                         AddressMoved(a3, "c", "a", Cause.LINK),
                                         AddressMoved(a5, "b", "c", Cause.LINK)]
    assert of(actions, Announce) == [Announce("a", (a0, a3)), Announce("c", (a5,))]


# -- failback: false ---------------------------------------------------------------------------
@pytest.mark.parametrize("members", [REG2, REG3], ids=["2", "3"])
def test_failback_false_return_moves_no_address(members: Members) -> None:
    h = started(members, ADDRS, failback=False)
    h.health("a", False)
    degraded = h.hosts
    actions = h.health("a", True)
    assert h.hosts == degraded
    assert "a" not in h.hosts.values()
    assert of(actions, AddressMoved) == [] and of(actions, Announce) == []


@pytest.mark.parametrize("members", [REG2, REG3], ids=["2", "3"])
def test_failback_false_repaired_member_waits_as_standby(members: Members) -> None:
    h = started(members, ADDRS, failback=False)
    h.health("a", False)
    degraded_spread, degraded = h.spread, h.hosts
    actions = h.health("a", True)
    assert actions == [MemberChanged("a", FAILED, STANDBY, Cause.LINK),
                       GroupChanged(DEGRADED, OK, Cause.LINK)]
    assert h.g.member_state("a") is STANDBY
    assert h.spread == degraded_spread
    assert h.hosts == degraded
    # It stays a spare while nothing else changes, also when another healthy member reports.
    assert h.health("b", True) == []
    assert h.spread == degraded_spread


def test_failback_false_member_back_from_offline_waits_as_standby() -> None:
    h = started(REG3, ADDRS, failback=False)
    h.set_offline("b", True)
    before = h.hosts
    actions = h.set_offline("b", False)
    assert of(actions, MemberChanged) == [MemberChanged("b", OFFLINE, STANDBY, Cause.ADMIN)]
    assert of(actions, SetSpread) == [] and of(actions, AddressMoved) == []
    assert h.spread == ("a", "c")
    assert h.hosts == before


def test_failback_false_member_down_at_start_waits_as_standby_when_repaired() -> None:
    h = started(REG3, ADDRS, failback=False, healthy={"a": False, "b": True, "c": True})
    before = h.hosts
    assert h.spread == ("b", "c")
    h.health("a", True)
    assert h.g.member_state("a") is STANDBY
    assert h.spread == ("b", "c") and h.hosts == before


def test_failback_false_second_member_up_after_total_failure_waits() -> None:
    h = started(REG2, ADDRS, failback=False)
    h.healths({"a": False, "b": False})
    h.health("b", True)  # no member active: it joins
    assert h.spread == ("b",)
    assert h.hosts == dict.fromkeys(ADDRS, "b")
    actions = h.health("a", True)
    assert h.g.member_state("a") is STANDBY
    assert h.spread == ("b",)
    assert of(actions, SetSpread) == []


def test_failback_false_members_back_together_after_total_failure_all_join() -> None:
    h = started(REG3, ADDRS, failback=False)
    h.healths(dict.fromkeys("abc", False))
    h.healths({"a": True, "c": True})  # no member was active: both join
    assert h.spread == ("a", "c")
    assert h.hosts == {a: ("a", "c")[i % 2] for i, a in enumerate(ADDRS)}


@pytest.mark.parametrize("members", [REG2, REG3], ids=["2", "3"])
def test_failback_false_spare_joins_and_takes_addresses_when_another_leaves(
        members: Members) -> None:
    h = started(members, ADDRS, failback=False)
    h.health("a", False)
    h.health("a", True)
    before = h.hosts
    actions = h.health("b", False)
    assert h.g.member_state("a") is ACTIVE
    assert "a" in h.spread and "b" not in h.spread
    orphans = [a for a in ADDRS if before[a] == "b"]
    assert h.hosts == orphans_to_fewest(before, orphans, h.spread)
    assert h.hosts == placed(ADDRS, h.spread, before, h.home, False)
    assert any(h.hosts[x] == "a" for x in orphans)  # it had the fewest (none)
    assert [a for a in ADDRS if h.hosts[a] != before[a]] == orphans
    assert within_one(h.hosts, h.spread)
    assert {a.member for a in of(actions, Announce)} <= set(h.spread)


def test_failback_false_spare_that_joins_is_given_its_share() -> None:
    h = started(REG4, ADDRS[:3], failback=False)  # home: a 0, b 1, c 2, d nothing
    a0, a1, a2 = ADDRS[:3]
    h.health("a", False)  # 0 to d (fewest)
    h.health("d", False)  # 0 to b (tie with c: preference)
    assert h.hosts == {a0: "b", a1: "b", a2: "c"} and h.spread == ("b", "c")
    h.health("d", True)
    h.health("a", True)
    assert h.spread == ("b", "c")  # both spares
    assert h.g.member_state("a") is STANDBY and h.g.member_state("d") is STANDBY
    actions = h.health("c", False)  # an active member leaves: both spares join
    assert h.spread == ("a", "b", "d")
    # c's address goes to a (fewest, preferred); then b hosts 2 against d's 0: b gives its
    # last address (1) to d.
    assert h.hosts == {a0: "b", a1: "d", a2: "a"}
    assert of(actions, AddressMoved) == [AddressMoved(a1, "b", "d", Cause.LINK),
                                         AddressMoved(a2, "c", "a", Cause.LINK)]
    assert of(actions, Announce) == [Announce("a", (a2,)), Announce("d", (a1,))]
    assert of(actions, MemberChanged) == [MemberChanged("a", STANDBY, ACTIVE, Cause.LINK),
                                          MemberChanged("c", ACTIVE, FAILED, Cause.LINK),
                                          MemberChanged("d", STANDBY, ACTIVE, Cause.LINK)]


def test_failback_false_spare_joins_when_an_active_member_goes_offline() -> None:
    h = started(REG3, ADDRS, failback=False)
    h.health("a", False)
    h.health("a", True)
    assert h.spread == ("b", "c")
    h.set_offline("c", True)
    assert h.spread == ("a", "b")
    assert h.g.member_state("a") is ACTIVE
    assert within_one(h.hosts, h.spread)


def test_failback_false_start_uses_every_member() -> None:
    h = started(REG3, ADDRS, failback=False)
    assert h.spread == ("a", "b", "c")
    assert within_one(h.hosts, h.spread)


# -- standby members ---------------------------------------------------------------------------
STBY1: Members = [("a", False), ("b", False), ("s", True)]
STBY2: Members = [("a", False), ("s1", True), ("b", False), ("s2", True)]  # interleaved


@pytest.mark.parametrize("failback", [True, False])
@pytest.mark.parametrize("members", [STBY1, STBY2], ids=["1s", "2s"])
def test_standby_members_idle_while_all_regular_members_usable(members: Members,
                                                               failback: bool) -> None:
    h = started(members, ADDRS, failback)
    standby = [n for n, s in members if s]
    assert h.spread == ("a", "b")
    assert all(h.g.member_state(s) is STANDBY for s in standby)
    assert not set(standby) & set(h.hosts.values())
    # A standby member failing or coming back moves nothing.
    before = h.hosts
    actions = h.health(standby[0], False)
    assert of(actions, SetSpread) == [] and of(actions, Announce) == []
    assert of(actions, MemberChanged) == [MemberChanged(standby[0], STANDBY, FAILED,
                                                        Cause.LINK)]
    h.health(standby[0], True)
    assert h.hosts == before and h.spread == ("a", "b")


@pytest.mark.parametrize("failback", [True, False])
def test_standby_stands_in_for_a_failed_member(failback: bool) -> None:
    h = started(STBY1, ADDRS[:4], failback)
    a0, a1, a2, a3 = ADDRS[:4]
    assert h.health("a", False) == [
        MemberChanged("a", ACTIVE, FAILED, Cause.LINK),
        MemberChanged("s", STANDBY, ACTIVE, Cause.LINK),
        SetSpread(("b", "s"), ((a0, "s"), (a1, "b"), (a2, "s"), (a3, "b"))),
        AddressMoved(a0, "a", "s", Cause.LINK),
        AddressMoved(a2, "a", "s", Cause.LINK),
        Announce("s", (a0, a2)),
        GroupChanged(OK, DEGRADED, Cause.LINK),
    ]


@pytest.mark.parametrize("failback", [True, False])
def test_one_standby_per_failed_member_in_configuration_order(failback: bool) -> None:
    h = started(STBY2, ADDRS, failback)
    h.health("a", False)
    assert h.spread == ("b", "s1")
    assert h.g.member_state("s2") is STANDBY
    h.health("b", False)
    assert h.spread == ("s1", "s2")
    assert set(h.hosts.values()) == {"s1", "s2"}


@pytest.mark.parametrize("failback", [True, False])
def test_next_standby_stands_in_when_the_first_is_unusable(failback: bool) -> None:
    h = started(STBY2, ADDRS, failback, healthy={"a": True, "b": True, "s1": False,
                                                 "s2": True})
    h.health("b", False)
    assert h.spread == ("a", "s2")
    assert h.g.member_state("s1") is FAILED


def test_failback_true_repaired_preferred_standby_takes_over_from_the_other() -> None:
    # As active-backup's standby-to-standby rule: with failback the preferred one takes back.
    h = started(STBY2, ADDRS, True, healthy={"a": True, "b": True, "s1": False, "s2": True})
    h.health("b", False)
    before = h.hosts
    actions = h.health("s1", True)
    assert h.spread == ("a", "s1")
    assert h.g.member_state("s2") is STANDBY
    moved = [a for a in ADDRS if before[a] == "s2"]
    assert h.hosts == orphans_to_fewest(before, moved, ("a", "s1"))
    assert h.hosts == placed(ADDRS, ("a", "s1"), before, h.home, True)
    assert [a for a in ADDRS if h.hosts[a] != before[a]] == moved
    assert {x for ann in of(actions, Announce) for x in ann.addresses} == set(moved)


def test_failback_false_repaired_standby_does_not_displace_the_stand_in() -> None:
    h = started(STBY2, ADDRS, False, healthy={"a": True, "b": True, "s1": False, "s2": True})
    h.health("b", False)
    assert h.spread == ("a", "s2")
    before = h.hosts
    actions = h.health("s1", True)
    assert actions == [MemberChanged("s1", FAILED, STANDBY, Cause.LINK)]
    assert h.spread == ("a", "s2")
    assert h.g.member_state("s1") is STANDBY
    assert h.hosts == before
    # b repaired too: b is the spare now, s2 still keeps its place and s1 waits.
    actions = h.health("b", True)
    assert actions == [MemberChanged("b", FAILED, STANDBY, Cause.LINK),
                       GroupChanged(DEGRADED, OK, Cause.LINK)]
    assert h.spread == ("a", "s2")
    # s2 leaves: the spare b joins, no standby is needed any more.
    actions = h.health("s2", False)
    assert h.spread == ("a", "b")
    assert h.g.member_state("s1") is STANDBY
    assert h.hosts == placed(ADDRS, ("a", "b"), before, h.home, False)
    assert set(h.hosts.values()) == {"a", "b"} and within_one(h.hosts, ("a", "b"))


@pytest.mark.parametrize("failback", [True, False])
def test_failed_stand_in_is_replaced_by_the_next_standby(failback: bool) -> None:
    h = started(STBY2, ADDRS, failback)
    h.health("a", False)
    before = h.hosts
    actions = h.health("s1", False)
    assert h.spread == ("b", "s2")
    moved = [a for a in ADDRS if before[a] == "s1"]
    assert h.hosts == orphans_to_fewest(before, moved, ("b", "s2"))
    assert h.hosts == placed(ADDRS, ("b", "s2"), before, h.home, failback)
    assert [a for a in ADDRS if h.hosts[a] != before[a]] == moved
    assert of(actions, MemberChanged) == [
        MemberChanged("s1", ACTIVE, FAILED, Cause.LINK),
        MemberChanged("s2", STANDBY, ACTIVE, Cause.LINK)]


@pytest.mark.parametrize("members", [STBY1, STBY2], ids=["1s", "2s"])
def test_failback_true_standby_gives_everything_back_when_the_regular_member_returns(
        members: Members) -> None:
    h = started(members, ADDRS, True)
    start_hosts = h.hosts
    stand_in = next(n for n, s in members if s)
    h.health("a", False)
    assert stand_in in h.spread
    held = [a for a in ADDRS if h.hosts[a] == stand_in]
    assert held
    actions = h.health("a", True)
    assert h.spread == ("a", "b")
    assert h.g.member_state(stand_in) is STANDBY
    assert stand_in not in h.hosts.values()
    assert MemberChanged(stand_in, ACTIVE, STANDBY, Cause.LINK) in actions
    assert h.hosts == start_hosts
    # Everything the stand-in held moved, and was announced from its new host.
    assert of(actions, AddressMoved) == [AddressMoved(a, stand_in, h.hosts[a], Cause.LINK)
                                         for a in held]
    announced = {(ann.member, x) for ann in of(actions, Announce) for x in ann.addresses}
    assert announced == {(h.hosts[a], a) for a in held}


@pytest.mark.parametrize("members", [STBY1, STBY2], ids=["1s", "2s"])
def test_failback_false_standby_keeps_its_place_when_the_regular_member_returns(
        members: Members) -> None:
    h = started(members, ADDRS, False)
    stand_in = next(n for n, s in members if s)
    h.health("a", False)
    assert h.spread == ("b", stand_in)
    degraded = h.hosts
    assert stand_in in degraded.values()
    actions = h.health("a", True)
    # a is the spare now: nothing moves, the stand-in stays active.
    assert of(actions, MemberChanged) == [MemberChanged("a", FAILED, STANDBY, Cause.LINK)]
    assert of(actions, SetSpread) == [] and of(actions, AddressMoved) == []
    assert h.spread == ("b", stand_in)
    assert h.hosts == degraded
    assert h.g.member_state(stand_in) is ACTIVE


@pytest.mark.parametrize("members", [STBY1, STBY2], ids=["1s", "2s"])
def test_failback_false_spare_joins_when_the_stand_in_leaves(members: Members) -> None:
    h = started(members, ADDRS, False)
    stand_in = next(n for n, s in members if s)
    h.health("a", False)
    h.health("a", True)
    before = h.hosts
    held = [a for a in ADDRS if before[a] == stand_in]
    actions = h.health(stand_in, False)
    assert h.spread == ("a", "b")  # the spare joins; no other standby is needed
    assert all(h.g.member_state(n) is STANDBY for n, s in members if s and n != stand_in)
    assert h.hosts == orphans_to_fewest(before, held, ("a", "b"))
    assert all(h.hosts[x] == "a" for x in held)  # a had none, b had the rest
    assert of(actions, AddressMoved) == [AddressMoved(x, stand_in, "a", Cause.LINK)
                                         for x in held]
    assert of(actions, Announce) == [Announce("a", tuple(held))]


def test_failback_false_another_regular_failure_keeps_the_stand_in_and_wakes_the_spare() -> None:
    h = started(STBY1, ADDRS, False)
    h.health("a", False)
    h.health("a", True)
    assert h.spread == ("b", "s")
    before = h.hosts
    h.health("b", False)  # the spare a joins; s still stands in (now for b)
    assert h.spread == ("a", "s")
    assert h.hosts == placed(ADDRS, ("a", "s"), before, h.home, False)
    assert all(h.hosts[x] == "s" for x in ADDRS if before[x] == "s")


@pytest.mark.parametrize("failback", [True, False])
def test_standby_that_comes_in_later_gets_its_share(failback: bool) -> None:
    members: Members = [("a", False), ("b", False), ("c", False), ("s", True)]
    h = started(members, ADDRS[:5], failback)  # home: a 0 3, b 1 4, c 2
    a0, a1, a2, a3, a4 = ADDRS[:5]
    h.health("c", False)  # s stands in for c and takes its address
    assert h.spread == ("a", "b", "s") and h.hosts[a2] == "s"
    h.health("s", False)  # nobody left to stand in: 2 to a (tie with b: preference)
    assert h.spread == ("a", "b")
    assert h.hosts == {a0: "a", a1: "b", a2: "a", a3: "a", a4: "b"}
    actions = h.health("s", True)
    # s stands in again with nothing; a hosts 3 against 0: a gives its last (3) to s.
    assert h.spread == ("a", "b", "s")
    assert h.hosts == {a0: "a", a1: "b", a2: "a", a3: "s", a4: "b"}
    assert of(actions, AddressMoved) == [AddressMoved(a3, "a", "s", Cause.LINK)]
    assert of(actions, Announce) == [Announce("s", (a3,))]


def test_failback_true_only_standby_members_left_carry_everything_until_one_returns() -> None:
    h = started(STBY2, ADDRS, True)
    h.healths({"a": False, "b": False})
    assert h.spread == ("s1", "s2")
    assert h.g.state is DEGRADED and h.g.carrier is True
    before = h.hosts
    h.health("b", True)
    assert h.spread == ("b", "s1")
    assert h.g.member_state("s2") is STANDBY
    assert h.hosts == placed(ADDRS, ("b", "s1"), before, h.home, True)
    assert all(h.hosts[x] == "b" for x in ADDRS if h.home[x] == "b")


def test_failback_false_only_standby_members_left_keep_carrying_when_one_returns() -> None:
    h = started(STBY2, ADDRS, False)
    h.healths({"a": False, "b": False})
    assert h.spread == ("s1", "s2")
    assert h.g.state is DEGRADED and h.g.carrier is True
    before = h.hosts
    actions = h.health("b", True)
    assert actions == [MemberChanged("b", FAILED, STANDBY, Cause.LINK)]
    assert h.spread == ("s1", "s2") and h.hosts == before
    h.health("a", True)
    assert h.spread == ("s1", "s2") and h.hosts == before
    assert h.g.member_state("a") is STANDBY and h.g.state is OK
    # s1 leaves: every spare joins at once, and s2 no longer stands in for anyone.
    actions = h.health("s1", False)
    assert h.spread == ("a", "b")
    assert h.g.member_state("s2") is STANDBY
    assert h.hosts == home_of(STBY2, ADDRS)
    assert MemberChanged("s2", ACTIVE, STANDBY, Cause.LINK) in actions


# -- all members down, then one back -----------------------------------------------------------
@pytest.mark.parametrize("failback", [True, False])
@pytest.mark.parametrize("members", [REG2, REG3, STBY1], ids=["2", "3", "1s"])
def test_all_members_down_then_one_back(members: Members, failback: bool) -> None:
    h = started(members, ADDRS[:5], failback)
    names = [n for n, _ in members]
    before = h.hosts
    actions = h.healths(dict.fromkeys(names, False), Cause.LINK)
    assert h.spread == ()
    assert of(actions, SetSpread) == [SetSpread((), tuple((a, None) for a in ADDRS[:5]))]
    assert of(actions, AddressMoved) == [AddressMoved(a, before[a], None, Cause.LINK)
                                         for a in ADDRS[:5]]
    assert of(actions, Announce) == []
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert of(actions, GroupChanged) == [GroupChanged(OK, GFAILED, Cause.LINK)]
    assert h.hosts == dict.fromkeys(ADDRS[:5])
    assert h.g.active is None and h.g.carrier is False and h.g.state is GFAILED
    assert set(h.states().values()) == {FAILED}

    back = names[-1]
    actions = h.health(back, True)
    assert h.spread == (back,)
    assert h.hosts == dict.fromkeys(ADDRS[:5], back)
    assert of(actions, Announce) == [Announce(back, ADDRS[:5])]
    assert of(actions, AddressMoved) == [AddressMoved(a, None, back, Cause.LINK)
                                         for a in ADDRS[:5]]
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert actions.index(SetCarrier(True)) < actions.index(Announce(back, ADDRS[:5]))
    assert of(actions, GroupChanged) == [GroupChanged(GFAILED, DEGRADED, Cause.LINK)]
    assert h.g.member_state(back) is ACTIVE


def test_members_failing_one_by_one_end_in_a_failed_group() -> None:
    h = started(REG3, ADDRS)
    h.health("a", False)
    h.health("b", False)
    actions = h.health("c", False)
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert of(actions, AddressMoved) == [AddressMoved(a, "c", None, Cause.LINK) for a in ADDRS]
    assert h.g.state is GFAILED


# -- offline -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", range(3))
def test_offline_behaves_as_a_failure_with_state_offline(k: int) -> None:
    name = REG3[k][0]
    failed = started(REG3, ADDRS[:5])
    failed_actions = failed.health(name, False)
    off = started(REG3, ADDRS[:5])
    actions = off.set_offline(name, True)
    assert off.hosts == failed.hosts and off.spread == failed.spread
    assert off.g.member_state(name) is OFFLINE
    assert of(actions, MemberChanged) == [MemberChanged(name, ACTIVE, OFFLINE, Cause.ADMIN)]

    def without_cause(acts: list[Action]) -> list[object]:
        return [(a.address, a.old, a.new) if isinstance(a, AddressMoved) else a
                for a in acts if not isinstance(a, MemberChanged | GroupChanged)]
    assert without_cause(actions) == without_cause(failed_actions)
    assert of(actions, GroupChanged) == [GroupChanged(OK, DEGRADED, Cause.ADMIN)]


def test_offline_and_back_with_failback_true_restores_placement() -> None:
    h = started(REG3, ADDRS)
    start_hosts = h.hosts
    h.set_offline("b", True)
    assert h.set_offline("b", True) == []
    actions = h.set_offline("b", False)
    assert h.hosts == start_hosts
    assert of(actions, Announce) == [Announce("b", tuple(a for a in ADDRS
                                                         if start_hosts[a] == "b"))]
    assert h.set_offline("b", False) == []


def test_health_change_of_an_offline_member_changes_nothing_visible() -> None:
    h = started(REG3, ADDRS)
    h.set_offline("a", True)
    assert h.health("a", False) == []
    assert h.health("a", True) == []
    assert h.g.member_state("a") is OFFLINE


def test_offline_standby_does_not_stand_in() -> None:
    h = started(STBY2, ADDRS)
    h.set_offline("s1", True)
    h.health("a", False)
    assert h.spread == ("b", "s2")


def test_last_member_offline_fails_the_group() -> None:
    h = started(REG2, ADDRS[:2])
    h.health("a", False)
    actions = h.set_offline("b", True)
    assert h.spread == () and h.g.state is GFAILED
    assert of(actions, SetCarrier) == [SetCarrier(False)]


# -- random timelines --------------------------------------------------------------------------
def _run_random(seed: int, failback: bool, steps: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 5)
    flags = [rng.random() < 0.35 for _ in range(n)]
    if all(flags):
        flags[rng.randrange(n)] = False
    members = [(f"m{i}", s) for i, s in enumerate(flags)]
    addresses = ADDRS[:rng.randint(0, 6)]
    h = Harness(members, addresses, failback)
    regular = [m for m, s in members if not s]
    names = [m for m, _ in members]

    for step in range(steps + 1):
        before = h.snap()
        if step == 0:
            healthy = {m: rng.random() < 0.75 for m in names}
            h.start(healthy)
            cause = Cause.START
        else:
            r = rng.random()
            if r < 0.6:
                h.health(rng.choice(names), rng.random() < 0.55,
                         rng.choice([Cause.LINK, Cause.PROBE]))
            elif r < 0.75:
                h.healths({m: rng.random() < 0.5 for m in rng.sample(names, 2)})
            else:
                h.set_offline(rng.choice(names), rng.random() < 0.35)
            cause = None
        after = h.snap()
        ctx = (f"seed={seed} step={step} failback={failback} members={members} "
               f"before={before} after={after}")
        usable = h.usable()
        spread = after.spread
        hosts = after.hosts
        # Someone is active iff someone is usable; carrier follows.
        assert bool(spread) == bool(usable), ctx
        assert h.g.carrier == bool(spread), ctx
        # The active members, exactly as the rules make them.
        assert spread == expected_spread(h.pref, h.standby, usable, before.spread,
                                         failback), ctx
        # Standby members stand in one for one for regular members that are not active.
        idle_regular = [m for m in regular if m not in spread]
        active_standby = [m for m in spread if h.standby[m]]
        usable_standby = [m for m in usable if h.standby[m]]
        assert len(active_standby) == min(len(idle_regular), len(usable_standby)), ctx
        left = [m for m in before.spread if m not in usable]
        if failback:
            # Every usable regular member is active; standby members in preference order.
            assert [m for m in spread if not h.standby[m]] == [
                m for m in usable if not h.standby[m]], ctx
            assert active_standby == usable_standby[:len(active_standby)], ctx
        else:
            # Nothing comes back: a usable member that was active stays active unless it is
            # a standby member no longer needed because spares joined.
            for m in before.spread:
                if m in usable and m not in spread:
                    assert h.standby[m] and left, ctx
            # A regular member that was not active joins only when an active member left or
            # none was active (spares: usable, not active, STANDBY).
            for m in regular:
                if m in spread and m not in before.spread:
                    assert left or not before.spread, ctx
            # A standby member that starts standing in is preferred to every idle one that
            # was not standing in either (those standing in keep their place: see above).
            for m in active_standby:
                if m not in before.spread:
                    assert all(h.pref.index(x) > h.pref.index(m) for x in usable_standby
                               if x not in spread and x not in before.spread), ctx
        # Placement, exactly as the rules make it.
        assert hosts == placed(addresses, spread, before.hosts, h.home, failback), ctx
        if spread:
            assert within_one(hosts, spread), ctx
        # An address on a still-active member moves only to go home (failback) or to even
        # out: then its member hosted at least two more than the new one before evening.
        base = {a: before.hosts[a] for a in addresses if before.hosts[a] in spread}
        if failback:
            base.update({a: h.home[a] for a in addresses if h.home[a] in spread})
        c = Counter(base.values())
        for a in addresses:
            if before.hosts[a] in spread and hosts[a] != before.hosts[a]:
                if failback and hosts[a] == h.home[a]:
                    continue
                assert c[base[a]] >= c[hosts[a]] + 2, ctx
        # Home: at a start with every member healthy, and whenever failback is on and every
        # regular member is usable, the placement is home.
        if (cause is Cause.START and len(usable) == len(names)) or (
                failback and set(regular) <= set(usable)):
            assert hosts == {a: h.home[a] for a in addresses}, ctx


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("failback", [True, False])
def test_random_timelines_keep_invariants(seed: int, failback: bool) -> None:
    for k in range(10):  # ten groups (member lists, addresses) per seed
        _run_random(seed * 10 + k, failback, steps=100)
