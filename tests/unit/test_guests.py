"""The guests behind the TAP (:class:`vnicbond.core.guests.Guests`): where each guest MAC lives
and what the members' NICs accept for them.

The rules from its module docstring: in active-backup nothing is placed (every guest MAC lives
on the active member); in load spreading a new MAC goes to the active member carrying the fewest
(ties: preference order) and stays there (sticky), a member that leaves gives its MACs (and only
its) to the others and each move is reported for announcing from the new member, a first
placement is not, ``failback`` returns the MACs home when their member comes back (without it
they stay), and a member that joins takes MACs until no two members differ by more than one.
The members' filter: one entry per guest MAC up to :data:`FILTER_LIMIT`, everything past it or
while the TAP is promiscuous, per-MAC entries again only below half the limit.
"""

from __future__ import annotations

from collections import Counter

from vnicbond.core.guests import FILTER_LIMIT, Guests
from vnicbond.core.model import SetMacHosts, SetMemberFilter


def mac(i: int) -> bytes:
    return bytes([0x02, 0x77]) + i.to_bytes(4, "big")


A, B, C, D, E = (mac(i) for i in range(1, 6))


def hosts_of(effects: list[SetMacHosts | SetMemberFilter]) -> list[SetMacHosts]:
    return [e for e in effects if isinstance(e, SetMacHosts)]


def filters_of(effects: list[SetMacHosts | SetMemberFilter]) -> list[SetMemberFilter]:
    return [e for e in effects if isinstance(e, SetMemberFilter)]


def spread(macs: list[bytes], active: list[str], failback: bool = True) -> Guests:
    """Load spreading with ``macs`` learned while ``active`` were the active members."""
    g = Guests(spread=True, failback=failback)
    g.changed(macs, [], active)
    return g


# -- active-backup -------------------------------------------------------------------------------
def test_active_backup_places_nothing_and_moves_nothing() -> None:
    g = Guests(spread=False, failback=True)
    effects = g.changed([A, B], [], ["m0", "m1"])
    assert g.hosts == {A: None, B: None}
    assert g.home == {} and not any(g.counts.values())
    assert all(member is None for e in hosts_of(effects) for _, member in e.hosts)
    assert g.moved(["m1"]) == ([], {})
    assert g.hosts == {A: None, B: None}
    g.changed([], [A], ["m1"])
    assert g.hosts == {B: None}


# -- load spreading: placement -------------------------------------------------------------------
def test_new_macs_go_to_the_member_with_the_fewest_ties_in_preference_order() -> None:
    g = Guests(spread=True, failback=True)
    effects = g.changed([A, B, C, D], [], ["m0", "m1"])
    assert hosts_of(effects) == [SetMacHosts(((A, "m0"), (B, "m1"), (C, "m0"), (D, "m1")), ())]
    assert g.home == {A: "m0", B: "m1", C: "m0", D: "m1"}
    g.changed([], [A, C], ["m0", "m1"])  # m0 carries none now: the next two go there
    effects = g.changed([E, mac(6)], [], ["m0", "m1"])
    assert hosts_of(effects) == [SetMacHosts(((E, "m0"), (mac(6), "m0")), ())]


def test_placement_is_even_over_many_macs_and_sticky() -> None:
    macs = [mac(100 + i) for i in range(30)]
    g = Guests(spread=True, failback=True)
    for m in macs:  # one at a time, as they are learned
        g.changed([m], [], ["m0", "m1", "m2"])
    assert Counter(g.hosts.values()) == {"m0": 10, "m1": 10, "m2": 10}
    before = dict(g.hosts)
    g.changed([mac(200)], [macs[3]], ["m0", "m1", "m2"])
    assert all(g.hosts[m] == before[m] for m in macs if m != macs[3])
    assert g.moved(["m0", "m1", "m2"]) == ([], {})  # the same members: nothing moves


def test_a_removed_mac_is_forgotten_by_the_datapath_too() -> None:
    g = spread([A, B], ["m0", "m1"])
    effects = g.changed([], [A], ["m0", "m1"])
    assert hosts_of(effects) == [SetMacHosts((), (A,))]
    assert A not in g.hosts and A not in g.home


def test_a_mac_learned_with_no_active_member_is_placed_when_one_comes() -> None:
    g = Guests(spread=True, failback=True)
    effects = g.changed([A], [], [])
    assert hosts_of(effects) == [SetMacHosts(((A, None),), ())]
    placed, moves = g.moved(["m1"])
    assert placed == [SetMacHosts(((A, "m1"),), ())]
    assert g.hosts == {A: "m1"} and g.home == {A: "m1"}
    # Announced there, as the data addresses are when the group comes back.
    assert moves == {"m1": [A]}


# -- load spreading: moves -----------------------------------------------------------------------
def test_a_member_that_leaves_gives_only_its_macs_away_and_they_are_announced_there() -> None:
    g = spread([A, B, C, D], ["m0", "m1", "m2"])  # A m0, B m1, C m2, D m0
    placed, moves = g.moved(["m1", "m2"])
    assert moves == {"m1": [A], "m2": [D]}
    assert placed == [SetMacHosts(((A, "m1"), (D, "m2")), ())]
    assert g.hosts == {A: "m1", B: "m1", C: "m2", D: "m2"}


def test_failback_returns_the_macs_home() -> None:
    g = spread([A, B, C, D], ["m0", "m1"])  # A, C on m0
    g.moved(["m1"])
    assert set(g.hosts.values()) == {"m1"}
    placed, moves = g.moved(["m0", "m1"])
    assert moves == {"m0": [A, C]}
    assert placed == [SetMacHosts(((A, "m0"), (C, "m0")), ())]
    assert g.hosts == {A: "m0", B: "m1", C: "m0", D: "m1"}


def test_without_failback_the_macs_stay_where_they_went() -> None:
    g = spread([A], ["m0", "m1"], failback=False)
    g.moved(["m1"])
    assert g.hosts == {A: "m1"}
    assert g.moved(["m0", "m1"]) == ([], {})
    assert g.hosts == {A: "m1"}
    assert g.home == {A: "m0"}  # it is still its home, for a later failback


def test_without_failback_a_returning_member_gets_its_share_by_evening_out() -> None:
    g = spread([A, B, C], ["m0", "m1", "m2"], failback=False)  # A m0, B m1, C m2
    g.moved(["m1", "m2"])
    assert g.hosts == {A: "m1", B: "m1", C: "m2"}
    placed, moves = g.moved(["m0", "m1", "m2"])
    assert placed == [SetMacHosts(((B, "m0"),), ())]
    assert g.hosts[A] == "m1"  # the one that moved stays
    assert moves == {"m0": [B]}  # the fullest gives its last one
    assert Counter(g.hosts.values()) == {"m0": 1, "m1": 1, "m2": 1}


def test_a_joining_member_evens_out_the_load() -> None:
    g = spread([A, B, C, D], ["m0", "m1"])  # A, C on m0; B, D on m1
    placed, moves = g.moved(["m0", "m1", "m2"])
    assert moves == {"m2": [C]}
    assert placed == [SetMacHosts(((C, "m2"),), ())]
    assert Counter(g.hosts.values()) == {"m0": 1, "m1": 2, "m2": 1}
    g.changed([E], [], ["m0", "m1", "m2"])  # and the counts followed the move
    assert g.hosts[E] == "m0"


def test_no_active_member_leaves_the_macs_unplaced_and_nothing_to_announce() -> None:
    g = spread([A, B], ["m0", "m1"])
    placed, moves = g.moved([])
    assert moves == {}
    assert placed == [SetMacHosts(((A, None), (B, None)), ())]
    placed, moves = g.moved(["m0", "m1"])
    assert g.hosts == {A: "m0", B: "m1"}  # home again
    assert moves == {"m0": [A], "m1": [B]}


# -- what the members accept ---------------------------------------------------------------------
def test_each_guest_mac_gets_one_filter_entry() -> None:
    g = Guests(spread=True, failback=True)
    [f] = filters_of(g.changed([A, B], [], ["m0"]))
    assert set(f.add) == {A, B} and f.remove == () and not f.promiscuous
    [f] = filters_of(g.changed([C], [A], ["m0"]))
    assert f == SetMemberFilter((C,), (A,), False)
    assert g.filter == {B, C}
    assert filters_of(g.changed([], [], ["m0"])) == []


def test_active_backup_filters_the_same_way() -> None:
    g = Guests(spread=False, failback=True)
    [f] = filters_of(g.changed([A], [], ["m0"]))
    assert f == SetMemberFilter((A,), (), False)


def test_past_the_filter_limit_the_members_accept_everything() -> None:
    macs = [mac(1000 + i) for i in range(FILTER_LIMIT + 1)]
    g = Guests(spread=True, failback=True)
    g.changed(macs[:FILTER_LIMIT], [], ["m0"])
    assert not g.promiscuous and len(g.filter) == FILTER_LIMIT
    [f] = filters_of(g.changed(macs[FILTER_LIMIT:], [], ["m0"]))
    assert f.promiscuous and f.add == ()
    assert set(f.remove) == set(macs[:FILTER_LIMIT])  # no entry left behind
    assert g.filter == set()
    assert filters_of(g.changed([mac(5000)], [], ["m0"])) == []


def test_back_to_per_mac_entries_only_below_half_the_limit() -> None:
    macs = [mac(1000 + i) for i in range(FILTER_LIMIT + 1)]
    g = Guests(spread=True, failback=True)
    g.changed(macs, [], ["m0"])
    assert g.promiscuous
    # Down to half the limit: still everything (no flapping around the limit).
    for m in macs[FILTER_LIMIT // 2:]:
        assert filters_of(g.changed([], [m], ["m0"])) == []
        assert g.promiscuous
    assert len(g.hosts) == FILTER_LIMIT // 2
    [f] = filters_of(g.changed([], [macs[0]], ["m0"]))  # below half
    assert not f.promiscuous and f.remove == ()
    assert set(f.add) == set(macs[1:FILTER_LIMIT // 2]) == g.filter
    # And past the limit again, not before.
    more = [mac(3000 + i) for i in range(FILTER_LIMIT - len(g.hosts) + 1)]
    assert filters_of(g.changed(more[:-1], [], ["m0"]))[0].promiscuous is False
    assert filters_of(g.changed(more[-1:], [], ["m0"]))[0].promiscuous is True


def test_a_promiscuous_tap_makes_the_members_accept_everything_and_back() -> None:
    g = Guests(spread=True, failback=True)
    g.changed([A, B], [], ["m0"])
    [f] = g.set_tap_promiscuous(True)
    assert f.promiscuous and f.add == () and set(f.remove) == {A, B}
    assert g.set_tap_promiscuous(True) == []
    assert filters_of(g.changed([C], [A], ["m0"])) == []  # nothing per MAC meanwhile
    [f] = g.set_tap_promiscuous(False)
    assert not f.promiscuous and f.remove == () and set(f.add) == {B, C}
    assert g.filter == {B, C}
    assert g.set_tap_promiscuous(False) == []


def test_a_promiscuous_tap_with_no_guests_still_opens_the_members() -> None:
    g = Guests(spread=False, failback=True)
    assert g.set_tap_promiscuous(True) == [SetMemberFilter((), (), True)]
    assert g.set_tap_promiscuous(False) == [SetMemberFilter((), (), False)]
