"""Data-address placement for load spreading: even, sticky, failback to home."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from vnicbond.placement import home_placement, place

ADDRS = [f"198.18.0.{10 + i}/24" for i in range(6)]


def test_home_spreads_evenly_in_configuration_order():
    home = home_placement(ADDRS, ["m0", "m1", "m2"])
    assert [home[a] for a in ADDRS] == ["m0", "m1", "m2", "m0", "m1", "m2"]
    assert home_placement(ADDRS[:1], ["m0", "m1"]) == {ADDRS[0]: "m0"}
    assert home_placement(ADDRS, []) == {}


def test_a_failed_member_hands_its_addresses_to_those_with_fewest():
    home = home_placement(ADDRS[:5], ["m0", "m1", "m2"])  # m0: 2, m1: 2, m2: 1
    moved = place(ADDRS[:5], ["m1", "m2"], dict(home), home, failback=True)
    for a in ADDRS[:5]:
        if home[a] != "m0":
            assert moved[a] == home[a]  # sticky: only m0's addresses move
    # m2 had the fewest (1 against 2): it takes m0's first address; the tie that follows goes
    # to the preferred member.
    assert moved[ADDRS[0]] == "m2" and moved[ADDRS[3]] == "m1"
    assert Counter(moved.values()) == {"m1": 3, "m2": 2}


@pytest.mark.parametrize("failback", [True, False])
def test_return_of_a_member(failback):
    home = home_placement(ADDRS, ["m0", "m1"])
    degraded = place(ADDRS, ["m1"], dict(home), home, failback)
    assert set(degraded.values()) == {"m1"}
    back = place(ADDRS, ["m0", "m1"], degraded, home, failback)
    if failback:
        assert back == home  # addresses rebalance back home
    else:
        assert back == degraded  # they stay until needed


def test_no_active_member_hosts_nothing_and_recovery_places_everything():
    home = home_placement(ADDRS, ["m0", "m1"])
    none = place(ADDRS, [], dict(home), home, True)
    assert none == dict.fromkeys(ADDRS)
    back = place(ADDRS, ["m1"], none, home, True)
    assert set(back.values()) == {"m1"}


def test_standby_takes_the_addresses_of_the_member_it_replaces_and_gives_them_back():
    home = home_placement(ADDRS[:4], ["m0", "m1"])  # standby m2 has no home
    replaced = place(ADDRS[:4], ["m1", "m2"], dict(home), home, failback=False)
    assert {a for a, m in replaced.items() if m == "m2"} == {a for a, m in home.items()
                                                             if m == "m0"}
    back = place(ADDRS[:4], ["m0", "m1"], replaced, home, failback=False)
    assert "m2" not in back.values()
    assert Counter(back.values()) == {"m0": 2, "m1": 2}


def test_random_sequences_keep_the_invariants():
    rng = random.Random(5)
    members = ["m0", "m1", "m2", "m3"]
    home = home_placement(ADDRS, members)
    current: dict[str, str | None] = dict(home)
    for _ in range(2000):
        active = [m for m in members if rng.random() < 0.7]
        failback = rng.random() < 0.5
        new = place(ADDRS, active, current, home, failback)
        if not active:
            assert set(new.values()) == {None}
        else:
            assert set(new.values()) <= set(active)
            for a in ADDRS:  # an address on a still-active member moves only to go home
                if current[a] in active and new[a] != current[a]:
                    assert failback and new[a] == home[a]
            counts = Counter(new.values())
            if not failback:  # orphans fill the least-loaded members: never more than 1 apart
                kept = Counter(current[a] for a in ADDRS if current[a] in active)
                if max(kept.values(), default=0) <= min(kept.get(m, 0) for m in active) + 1:
                    assert max(counts.values()) - min(counts.get(m, 0) for m in active) <= 1
        current = new
