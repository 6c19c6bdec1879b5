"""Unit tests for vnicbond.core.group: the active-backup decision, driven by scripted timelines.

The expectations come from the rules in the module docstring (and in.mpathd / bonding
active-backup): preference is configuration order with configured standby members last;
exactly one usable member is active and hosts every address; a takeover forwards through the
new member, moves every address and announces them all from it; the carrier is on exactly
while a member is usable; failback decides whether a repaired preferred member takes back.
"""

from __future__ import annotations

import random

import pytest

from vnicbond.core.group import Group
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
)

ACTIVE, STANDBY, FAILED, OFFLINE = (MemberState.ACTIVE, MemberState.STANDBY,
                                    MemberState.FAILED, MemberState.OFFLINE)
OK, DEGRADED, GFAILED = GroupState.OK, GroupState.DEGRADED, GroupState.FAILED
ADDRS = ("198.18.0.10/24", "2001:db8::10/64")


# -- helpers -----------------------------------------------------------------------------------
def make(members: list[tuple[str, bool]] | None = None, addresses: tuple[str, ...] = ADDRS,
         failback: bool = True) -> Group:
    if members is None:
        members = [("a", False), ("b", False), ("c", False)]
    return Group("ipmp0", members, list(addresses), failback=failback)


def started(healthy: dict[str, bool] | None = None, **kwargs: object) -> Group:
    g = make(**kwargs)  # type: ignore[arg-type]
    if healthy is None:
        healthy = dict.fromkeys(g.members(), True)
    g.start(healthy)
    return g


def of(actions: list[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def changes(actions: list[Action]) -> dict[str, tuple[MemberState | None, MemberState]]:
    """MemberChanged as {member: (old, new)}; fails if a member changes twice in one batch."""
    out: dict[str, tuple[MemberState | None, MemberState]] = {}
    for a in of(actions, MemberChanged):
        assert isinstance(a, MemberChanged)
        assert a.member not in out, f"{a.member} changed twice in one batch: {actions}"
        out[a.member] = (a.old, a.new)
    return out


def states(g: Group) -> dict[str, MemberState]:
    return {m: g.member_state(m) for m in g.members()}


def assert_before(actions: list[Action], first: Action, then: Action) -> None:
    assert actions.index(first) < actions.index(then), actions


def assert_takeover(actions: list[Action], old: str | None, new: str, cause: Cause,
                    addresses: tuple[str, ...] = ADDRS) -> None:
    """The actions that matter when traffic moves from ``old`` to ``new``."""
    assert of(actions, SetForwarding) == [SetForwarding(new, frozenset({new}))]
    assert of(actions, AddressMoved) == [AddressMoved(a, old, new, cause) for a in addresses]
    if addresses:
        assert of(actions, Announce) == [Announce(new, addresses)]
        # The announcement leaves through a member that already forwards the group.
        assert_before(actions, SetForwarding(new, frozenset({new})), Announce(new, addresses))
        if SetCarrier(True) in actions:
            assert_before(actions, SetCarrier(True), Announce(new, addresses))
    else:
        assert of(actions, Announce) == []


def assert_no_move(actions: list[Action]) -> None:
    assert of(actions, SetForwarding) == []
    assert of(actions, AddressMoved) == []
    assert of(actions, Announce) == []


# -- construction and queries ------------------------------------------------------------------
def test_group_needs_a_member() -> None:
    with pytest.raises(ValueError):
        Group("ipmp0", [], [])


def test_member_names_must_be_unique() -> None:
    with pytest.raises(ValueError):
        Group("ipmp0", [("a", False), ("a", True)], [])


def test_members_are_listed_in_configuration_order_standby_included() -> None:
    g = make([("s", True), ("b", False), ("a", False)])
    assert g.members() == ["s", "b", "a"]


# -- start -------------------------------------------------------------------------------------
def test_start_all_healthy_first_member_active_and_announced() -> None:
    g = make()
    actions = g.start({"a": True, "b": True, "c": True})
    assert changes(actions) == {"a": (None, ACTIVE), "b": (None, STANDBY), "c": (None, STANDBY)}
    assert all(a.cause is Cause.START for a in of(actions, MemberChanged))
    assert_takeover(actions, None, "a", Cause.START)
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert of(actions, GroupChanged) == [GroupChanged(None, OK, Cause.START)]
    assert g.active == "a" and g.address_host() == "a"
    assert g.carrier is True and g.state is OK
    assert states(g) == {"a": ACTIVE, "b": STANDBY, "c": STANDBY}


def test_start_with_nothing_healthy_fails_the_group_and_turns_carrier_off() -> None:
    g = make()
    actions = g.start({"a": False, "b": False, "c": False})
    assert changes(actions) == {m: (None, FAILED) for m in "abc"}
    # The datapath is told explicitly that nothing forwards, and the carrier is set off.
    assert of(actions, SetForwarding) == [SetForwarding(None, frozenset())]
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert of(actions, Announce) == []
    assert of(actions, AddressMoved) == []
    assert of(actions, GroupChanged) == [GroupChanged(None, GFAILED, Cause.START)]
    assert g.active is None and g.address_host() is None
    assert g.carrier is False and g.state is GFAILED


def test_start_with_first_member_down_elects_the_next_one() -> None:
    g = make()
    actions = g.start({"a": False, "b": True, "c": True})
    assert changes(actions) == {"a": (None, FAILED), "b": (None, ACTIVE), "c": (None, STANDBY)}
    assert_takeover(actions, None, "b", Cause.START)
    assert of(actions, GroupChanged) == [GroupChanged(None, DEGRADED, Cause.START)]


def test_start_with_only_the_standby_healthy_uses_the_standby() -> None:
    g = make([("a", False), ("s", True)])
    actions = g.start({"a": False, "s": True})
    assert g.active == "s"
    assert_takeover(actions, None, "s", Cause.START)
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert g.state is DEGRADED


def test_start_without_addresses_announces_nothing() -> None:
    g = make(addresses=())
    actions = g.start({"a": True, "b": True, "c": True})
    assert of(actions, Announce) == []
    assert of(actions, AddressMoved) == []
    assert of(actions, SetForwarding) == [SetForwarding("a", frozenset({"a"}))]


def test_start_with_failback_false_still_picks_the_most_preferred() -> None:
    g = make(failback=False)
    g.start({"a": True, "b": True, "c": True})
    assert g.active == "a"


# -- preference order --------------------------------------------------------------------------
@pytest.mark.parametrize(("members", "order"), [
    ([("a", False), ("b", False), ("c", False)], ["a", "b", "c"]),
    ([("c", False), ("a", False), ("b", False)], ["c", "a", "b"]),  # config order, not name
    ([("s", True), ("a", False), ("b", False)], ["a", "b", "s"]),  # standby last
    ([("a", False), ("s", True), ("b", False)], ["a", "b", "s"]),
    ([("t", True), ("a", False), ("s", True)], ["a", "t", "s"]),  # standbys in config order
])
@pytest.mark.parametrize("failback", [True, False])
def test_preference_is_config_order_with_standby_last(
        members: list[tuple[str, bool]], order: list[str], failback: bool) -> None:
    g = make(members, failback=failback)
    g.start(dict.fromkeys(order, True))
    # Fail members one by one: each time the next in preference order takes over.
    for i, name in enumerate(order):
        assert g.active == name
        g.set_health(name, False, Cause.LINK)
        expected = order[i + 1] if i + 1 < len(order) else None
        assert g.active == expected


# -- failover ----------------------------------------------------------------------------------
def test_active_fails_next_preferred_takes_over() -> None:
    g = started()
    actions = g.set_health("a", False, Cause.LINK)
    assert changes(actions) == {"a": (ACTIVE, FAILED), "b": (STANDBY, ACTIVE)}
    assert all(a.cause is Cause.LINK for a in of(actions, MemberChanged))
    assert_takeover(actions, "a", "b", Cause.LINK)
    assert of(actions, SetCarrier) == []  # carrier stays on: b carries on
    assert of(actions, GroupChanged) == [GroupChanged(OK, DEGRADED, Cause.LINK)]
    assert states(g) == {"a": FAILED, "b": ACTIVE, "c": STANDBY}
    assert g.address_host() == "b"


def test_cause_is_carried_through_to_every_action() -> None:
    g = started()
    actions = g.set_health("a", False, Cause.PROBE)
    for a in actions:
        if isinstance(a, MemberChanged | GroupChanged | AddressMoved):
            assert a.cause is Cause.PROBE


def test_standby_member_failing_moves_nothing() -> None:
    g = started()
    actions = g.set_health("c", False, Cause.LINK)
    assert changes(actions) == {"c": (STANDBY, FAILED)}
    assert_no_move(actions)
    assert of(actions, SetCarrier) == []
    assert of(actions, GroupChanged) == [GroupChanged(OK, DEGRADED, Cause.LINK)]
    # A second failure while already degraded: no group change either.
    actions = g.set_health("b", False, Cause.LINK)
    assert changes(actions) == {"b": (STANDBY, FAILED)}
    assert_no_move(actions)
    assert of(actions, GroupChanged) == []
    assert g.active == "a"


def test_healthy_standby_recovering_moves_nothing() -> None:
    g = started({"a": True, "b": True, "c": False})
    actions = g.set_health("c", True, Cause.LINK)
    assert changes(actions) == {"c": (FAILED, STANDBY)}
    assert_no_move(actions)
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, OK, Cause.LINK)]


# -- failback ----------------------------------------------------------------------------------
def test_failback_true_repaired_preferred_member_takes_back() -> None:
    g = started(failback=True)
    g.set_health("a", False, Cause.LINK)
    actions = g.set_health("a", True, Cause.LINK)
    assert changes(actions) == {"a": (FAILED, ACTIVE), "b": (ACTIVE, STANDBY)}
    assert_takeover(actions, "b", "a", Cause.LINK)
    assert of(actions, SetCarrier) == []
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, OK, Cause.LINK)]
    assert states(g) == {"a": ACTIVE, "b": STANDBY, "c": STANDBY}


def test_failback_false_repaired_member_stays_standby_until_needed() -> None:
    g = started(failback=False)
    g.set_health("a", False, Cause.LINK)
    actions = g.set_health("a", True, Cause.LINK)
    assert changes(actions) == {"a": (FAILED, STANDBY)}
    assert_no_move(actions)
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, OK, Cause.LINK)]
    assert g.active == "b"
    # Needed again: b fails, and the most preferred usable member (a) takes over.
    actions = g.set_health("b", False, Cause.LINK)
    assert_takeover(actions, "b", "a", Cause.LINK)
    assert g.active == "a"


@pytest.mark.parametrize("failback", [True, False])
def test_configured_standby_gives_traffic_back(failback: bool) -> None:
    g = started(members=[("a", False), ("s", True)], failback=failback)
    g.set_health("a", False, Cause.LINK)
    assert g.active == "s"
    actions = g.set_health("a", True, Cause.LINK)
    assert changes(actions) == {"a": (FAILED, ACTIVE), "s": (ACTIVE, STANDBY)}
    assert_takeover(actions, "s", "a", Cause.LINK)
    assert g.active == "a"


def test_standby_gives_back_to_any_non_standby_with_failback_false() -> None:
    g = started(members=[("a", False), ("b", False), ("s", True)], failback=False)
    g.set_health("a", False, Cause.LINK)
    g.set_health("b", False, Cause.LINK)
    assert g.active == "s"
    # b (not the most preferred) returns: the standby still gives traffic back to it.
    actions = g.set_health("b", True, Cause.LINK)
    assert_takeover(actions, "s", "b", Cause.LINK)
    # a returns later: failback false, so b keeps the traffic.
    actions = g.set_health("a", True, Cause.LINK)
    assert_no_move(actions)
    assert g.active == "b"
    assert states(g) == {"a": STANDBY, "b": ACTIVE, "s": STANDBY}


def test_standby_to_standby_follows_failback() -> None:
    members = [("a", False), ("s", True), ("t", True)]
    for failback, expected in ((True, "s"), (False, "t")):
        g = started(members=members, failback=failback)
        g.set_health("a", False, Cause.LINK)
        g.set_health("s", False, Cause.LINK)
        assert g.active == "t"
        g.set_health("s", True, Cause.LINK)
        assert g.active == expected, f"failback={failback}"


# -- total failure and recovery ----------------------------------------------------------------
def test_all_members_down_then_one_back() -> None:
    g = started(members=[("a", False), ("b", False)])
    g.set_health("a", False, Cause.LINK)
    actions = g.set_health("b", False, Cause.LINK)
    assert changes(actions) == {"b": (ACTIVE, FAILED)}
    assert of(actions, SetForwarding) == [SetForwarding(None, frozenset())]
    assert of(actions, AddressMoved) == [AddressMoved(a, "b", None, Cause.LINK) for a in ADDRS]
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert of(actions, Announce) == []
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, GFAILED, Cause.LINK)]
    assert g.active is None and g.carrier is False and g.state is GFAILED
    assert g.address_host() is None

    actions = g.set_health("b", True, Cause.LINK)
    assert changes(actions) == {"b": (FAILED, ACTIVE)}
    assert_takeover(actions, None, "b", Cause.LINK)
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert_before(actions, SetCarrier(True), Announce("b", ADDRS))
    assert of(actions, GroupChanged) == [GroupChanged(GFAILED, DEGRADED, Cause.LINK)]
    assert g.carrier is True


@pytest.mark.parametrize("failback", [True, False])
def test_after_total_failure_first_member_back_is_used_whatever_failback(failback: bool) -> None:
    g = started(failback=failback)
    for m in "abc":
        g.set_health(m, False, Cause.LINK)
    g.set_health("c", True, Cause.LINK)
    assert g.active == "c"


# -- no change, no actions ---------------------------------------------------------------------
def test_set_health_without_change_returns_nothing() -> None:
    g = started({"a": True, "b": True, "c": False})
    before = (states(g), g.active, g.carrier, g.state)
    assert g.set_health("a", True, Cause.LINK) == []
    assert g.set_health("b", True, Cause.PROBE) == []
    assert g.set_health("c", False, Cause.LINK) == []
    assert (states(g), g.active, g.carrier, g.state) == before


def test_health_change_of_an_offline_member_changes_nothing_visible() -> None:
    g = started()
    g.set_offline("c", True)
    assert g.set_health("c", False, Cause.LINK) == []
    assert g.member_state("c") is OFFLINE
    assert g.set_health("c", True, Cause.LINK) == []


# -- administrative offline --------------------------------------------------------------------
def test_offline_moves_traffic_away_and_back() -> None:
    g = started()
    actions = g.set_offline("a", True)
    assert changes(actions) == {"a": (ACTIVE, OFFLINE), "b": (STANDBY, ACTIVE)}
    assert all(a.cause is Cause.ADMIN for a in of(actions, MemberChanged))
    assert_takeover(actions, "a", "b", Cause.ADMIN)
    # An offline member is not usable: the group is degraded.
    assert of(actions, GroupChanged) == [GroupChanged(OK, DEGRADED, Cause.ADMIN)]
    assert g.member_state("a") is OFFLINE

    actions = g.set_offline("a", False)
    assert changes(actions) == {"a": (OFFLINE, ACTIVE), "b": (ACTIVE, STANDBY)}
    assert_takeover(actions, "b", "a", Cause.ADMIN)
    assert of(actions, GroupChanged) == [GroupChanged(DEGRADED, OK, Cause.ADMIN)]


def test_offline_twice_and_online_twice_return_nothing() -> None:
    g = started()
    assert g.set_offline("a", False) == []
    g.set_offline("b", True)
    assert g.set_offline("b", True) == []


def test_offline_wins_over_failed_and_online_again_reveals_failed() -> None:
    g = started()
    g.set_health("c", False, Cause.LINK)
    actions = g.set_offline("c", True)
    assert changes(actions) == {"c": (FAILED, OFFLINE)}
    assert_no_move(actions)
    actions = g.set_offline("c", False)
    assert changes(actions) == {"c": (OFFLINE, FAILED)}
    assert_no_move(actions)


def test_offline_last_usable_member_fails_the_group() -> None:
    g = started({"a": True, "b": False, "c": False})
    actions = g.set_offline("a", True)
    assert of(actions, SetForwarding) == [SetForwarding(None, frozenset())]
    assert of(actions, SetCarrier) == [SetCarrier(False)]
    assert g.state is GFAILED
    actions = g.set_offline("a", False)
    assert of(actions, SetCarrier) == [SetCarrier(True)]
    assert_takeover(actions, None, "a", Cause.ADMIN)


def test_failback_false_offline_member_back_online_stays_standby() -> None:
    g = started(failback=False)
    g.set_offline("a", True)
    actions = g.set_offline("a", False)
    assert changes(actions) == {"a": (OFFLINE, STANDBY)}
    assert_no_move(actions)
    assert g.active == "b"


def test_member_state_values_are_the_status_words() -> None:
    g = started({"a": True, "b": True, "c": False})
    g.set_offline("b", True)
    assert {m: g.member_state(m).value for m in g.members()} == {
        "a": "active", "b": "offline", "c": "failed"}
    g2 = started()
    assert g2.member_state("b").value == "standby"


# -- random timelines and invariants -----------------------------------------------------------
def _preference(members: list[tuple[str, bool]]) -> list[str]:
    return ([n for n, s in members if not s] + [n for n, s in members if s])


def _run_random(seed: int, steps: int = 300) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 4)
    members = [(f"m{i}", rng.random() < 0.35) for i in range(n)]
    standby = dict(members)
    addresses = tuple(rng.sample([*ADDRS, "198.18.1.1/32"], rng.randint(0, 3)))
    failback = rng.random() < 0.5
    g = Group("ipmp0", members, list(addresses), failback=failback)
    pref = _preference(members)

    healthy = {m: rng.random() < 0.6 for m in standby}
    offline = dict.fromkeys(standby, False)
    prev_states: dict[str, MemberState | None] = dict.fromkeys(standby, None)
    prev_active: str | None = None
    prev_carrier: bool | None = None
    prev_group: GroupState | None = None

    for step in range(steps + 1):
        if step == 0:
            actions = g.start(dict(healthy))
            cause = Cause.START
            input_changed = True
        else:
            m = rng.choice(list(standby))
            if rng.random() < 0.75:
                value = rng.random() < 0.55
                cause = rng.choice([Cause.LINK, Cause.PROBE])
                input_changed = healthy[m] != value
                healthy[m] = value
                actions = g.set_health(m, value, cause)
            else:
                value = rng.random() < 0.3
                cause = Cause.ADMIN
                input_changed = offline[m] != value
                offline[m] = value
                actions = g.set_offline(m, value)
        ctx = f"seed={seed} step={step} failback={failback} members={members} actions={actions}"
        if not input_changed:
            assert actions == [], ctx

        usable = [m for m in pref if healthy[m] and not offline[m]]
        cur = states(g)
        active_members = [m for m, s in cur.items() if s is ACTIVE]

        # Exactly one ACTIVE member iff any usable member exists, and it is g.active.
        assert len(active_members) == (1 if usable else 0), ctx
        assert g.active == (active_members[0] if active_members else None), ctx
        assert g.address_host() == g.active, ctx
        # Every other member's state follows from its health and offline flag.
        for m, s in cur.items():
            if offline[m]:
                assert s is OFFLINE, ctx
            elif not healthy[m]:
                assert s is FAILED, ctx
            elif m != g.active:
                assert s is STANDBY, ctx
        # Who is active.
        if usable:
            if failback or g.active != prev_active:
                # A (new) election picks the most preferred usable member.
                assert g.active == usable[0], ctx
            if not failback:
                if prev_active in usable and not (
                        standby[prev_active] and any(not standby[u] for u in usable)):
                    assert g.active == prev_active, ctx  # no needless move
                if any(not standby[u] for u in usable):
                    assert not standby[g.active], ctx  # type: ignore[index]
        # Carrier and group state.
        assert g.carrier == (g.active is not None), ctx
        expected_group = (GFAILED if not usable else OK if len(usable) == n else DEGRADED)
        assert g.state is expected_group, ctx

        # Actions: MemberChanged exactly for the members whose state really changed.
        expected_changes = {m: (prev_states[m], cur[m]) for m in cur if cur[m] != prev_states[m]}
        assert changes(actions) == expected_changes, ctx
        for a in of(actions, MemberChanged):
            assert a.cause is cause, ctx
        moved = g.active != prev_active
        fwd = of(actions, SetForwarding)
        if moved or step == 0:
            rx = frozenset({g.active}) if g.active else frozenset()
            assert fwd == [SetForwarding(g.active, rx)], ctx
        else:
            assert fwd == [], ctx
        if moved:
            assert of(actions, AddressMoved) == [
                AddressMoved(a, prev_active, g.active, cause) for a in addresses], ctx
        else:
            assert of(actions, AddressMoved) == [], ctx
        ann = of(actions, Announce)
        if (moved or step == 0) and g.active is not None and addresses:
            assert ann == [Announce(g.active, addresses)], ctx
            assert actions.index(ann[0]) > actions.index(fwd[0]), ctx
        else:
            assert ann == [], ctx
        carrier_actions = of(actions, SetCarrier)
        if g.carrier != prev_carrier:
            assert carrier_actions == [SetCarrier(bool(g.carrier))], ctx
            if ann:
                assert actions.index(carrier_actions[0]) < actions.index(ann[0]), ctx
        else:
            assert carrier_actions == [], ctx
        if g.state != prev_group:
            assert of(actions, GroupChanged) == [GroupChanged(prev_group, g.state, cause)], ctx
        else:
            assert of(actions, GroupChanged) == [], ctx

        prev_states = dict(cur)
        prev_active, prev_carrier, prev_group = g.active, g.carrier, g.state


@pytest.mark.parametrize("seed", range(60))
def test_random_timelines_keep_invariants(seed: int) -> None:
    _run_random(seed)
