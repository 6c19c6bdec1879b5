"""Data-address placement for load spreading: home, sticky, orphans, failback, even out.

The rules (vnicbond.core.placement module docstring):

* home: with every non-standby member active, address i goes to the member with the fewest so
  far (ties: configuration order), i.e. round robin;
* sticky: an address on a still-active member stays; the addresses of a member that left go,
  in configuration order, to the active member with the fewest (ties: preference order);
* failback: with ``failback`` an address whose home member is active goes home;
* even out: then, while one active member hosts two or more addresses more than another, the
  fullest (ties: preference order) gives its last address (in configuration order) to the
  emptiest (ties: preference order).

So an address on a still-active member moves only to go home (failback) or to even out an
imbalance of more than one.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from vnicbond.core.placement import home_placement, place

ADDRS = [f"198.18.0.{10 + i}/24" for i in range(6)]
ADDRS8 = [f"198.18.0.{10 + i}/24" for i in range(8)]


def reference(addresses: Sequence[str], active: Sequence[str], current: dict[str, str | None],
              home: dict[str, str], failback: bool) -> dict[str, str | None]:
    """The placement rules, written out step by step (independent of vnicbond.core.placement)."""
    if not active:
        return dict.fromkeys(addresses)
    rank = {m: i for i, m in enumerate(active)}
    out: dict[str, str] = {}
    for a in addresses:  # failback home first, else sticky
        if failback and home.get(a) in rank:
            out[a] = home[a]
        elif current.get(a) in rank:
            out[a] = current[a]  # type: ignore[assignment]
    n = Counter(out.values())
    for a in addresses:  # orphans, in configuration order, to the fewest
        if a not in out:
            m = min(active, key=lambda x: (n[x], rank[x]))
            out[a] = m
            n[m] += 1
    while True:  # even out
        fullest = min(active, key=lambda x: (-n[x], rank[x]))
        emptiest = min(active, key=lambda x: (n[x], rank[x]))
        if n[fullest] - n[emptiest] < 2:
            break
        last = [a for a in addresses if out[a] == fullest][-1]
        out[last] = emptiest
        n[fullest] -= 1
        n[emptiest] += 1
    return {a: out[a] for a in addresses}


def spread_of(placement: dict[str, str | None], active: Sequence[str]) -> list[int]:
    c = Counter(placement.values())
    return [c[m] for m in active]


def test_home_spreads_evenly_in_configuration_order():
    home = home_placement(ADDRS, ["m0", "m1", "m2"])
    assert [home[a] for a in ADDRS] == ["m0", "m1", "m2", "m0", "m1", "m2"]
    assert home_placement(ADDRS[:1], ["m0", "m1"]) == {ADDRS[0]: "m0"}
    assert home_placement(ADDRS, []) == {}


@pytest.mark.parametrize("failback", [True, False])
def test_a_failed_member_hands_its_addresses_to_those_with_fewest(failback):
    home = home_placement(ADDRS[:5], ["m0", "m1", "m2"])  # m0: 2, m1: 2, m2: 1
    moved = place(ADDRS[:5], ["m1", "m2"], dict(home), home, failback=failback)
    for a in ADDRS[:5]:
        if home[a] != "m0":
            assert moved[a] == home[a]  # sticky: only m0's addresses move
    # m2 had the fewest (1 against 2): it takes m0's first address; the tie that follows goes
    # to the preferred member. 3 against 2: nothing to even out.
    assert moved[ADDRS[0]] == "m2" and moved[ADDRS[3]] == "m1"
    assert Counter(moved.values()) == {"m1": 3, "m2": 2}


@pytest.mark.parametrize("failback", [True, False])
def test_return_of_a_member(failback):
    home = home_placement(ADDRS, ["m0", "m1"])
    degraded = place(ADDRS, ["m1"], dict(home), home, failback)
    assert set(degraded.values()) == {"m1"}
    back = place(ADDRS, ["m0", "m1"], degraded, home, failback)
    if failback:
        assert back == home  # addresses go back home
    else:
        # Nothing goes home, but the 6-0 imbalance is evened out: m1 gives its last
        # addresses, one at a time, until the two are 3-3.
        a0, a1, a2, a3, a4, a5 = ADDRS
        assert back == {a0: "m1", a1: "m1", a2: "m1", a3: "m0", a4: "m0", a5: "m0"}


@pytest.mark.parametrize("n", range(1, 7))
def test_a_joining_member_takes_the_last_addresses_until_no_two_differ_by_more_than_one(n):
    addrs = ADDRS[:n]
    home = dict.fromkeys(addrs, "m1")
    current: dict[str, str | None] = dict.fromkeys(addrs, "m1")
    new = place(addrs, ["m0", "m1"], current, home, failback=False)
    # m1 keeps ceil(n/2) (its first ones), m0 takes floor(n/2) (m1's last ones); with n odd
    # the imbalance of one that is left stays.
    keep = (n + 1) // 2
    assert new == {a: ("m1" if i < keep else "m0") for i, a in enumerate(addrs)}


def test_imbalance_of_one_moves_nothing():
    a0, a1, a2 = ADDRS[:3]
    current: dict[str, str | None] = {a0: "m1", a1: "m1", a2: "m2"}
    home = {a0: "m1", a1: "m2", a2: "m0"}
    # m0 joins with none, m1 hosts 2: a difference of two, so m1 gives its last (a1).
    assert place(ADDRS[:3], ["m0", "m1", "m2"], current, home, failback=False) == {
        a0: "m1", a1: "m0", a2: "m2"}
    # Only m1 and m2 active: 2 against 1 stays as it is.
    assert place(ADDRS[:3], ["m1", "m2"], current, home, failback=False) == current


@pytest.mark.parametrize(("order", "to_m2", "to_m3"), [
    (["m0", "m1", "m2", "m3"], 4, 5),
    (["m3", "m1", "m2", "m0"], 4, 5),
    (["m0", "m1", "m3", "m2"], 5, 4),
    (["m1", "m0", "m2", "m3"], 5, 4),
])
def test_even_out_breaks_ties_in_preference_order(order, to_m2, to_m3):
    a = ADDRS8
    # m0 and m1 host 3 each, m2 and m3 1 each (8 addresses).
    current: dict[str, str | None] = {a[0]: "m0", a[1]: "m1", a[2]: "m0", a[3]: "m1",
                                      a[4]: "m0", a[5]: "m1", a[6]: "m2", a[7]: "m3"}
    new = place(a, order, current, dict(current), failback=False)
    # The preferred of the fullest (m0 or m1) gives its last address (a4 or a5) to the
    # preferred of the emptiest; then the other fullest (3, now alone at the top) gives its
    # last to the other emptiest (1, now alone at the bottom).
    assert new == {**current, a[to_m2]: "m2", a[to_m3]: "m3"}


def test_even_out_runs_after_failback():
    home = home_placement(ADDRS, ["m0", "m1", "m2"])  # m0: 0 3, m1: 1 4, m2: 2 5
    current: dict[str, str | None] = dict.fromkeys(ADDRS, "m2")  # m0 and m1 were down
    a0, a1, a2, a3, a4, a5 = ADDRS
    # m1 is back: its home addresses (1, 4) go home, leaving m2 with 4 against 2; m2 gives
    # its last (a5, whose home m2 is) to m1.
    new = place(ADDRS, ["m1", "m2"], current, home, failback=True)
    assert new == {a0: "m2", a1: "m1", a2: "m2", a3: "m2", a4: "m1", a5: "m1"}
    # m0 back too: every address goes home, already even.
    assert place(ADDRS, ["m0", "m1", "m2"], new, home, failback=True) == home


def test_no_active_member_hosts_nothing_and_recovery_places_everything():
    home = home_placement(ADDRS, ["m0", "m1"])
    none = place(ADDRS, [], dict(home), home, True)
    assert none == dict.fromkeys(ADDRS)
    back = place(ADDRS, ["m1"], none, home, True)
    assert set(back.values()) == {"m1"}
    both = place(ADDRS, ["m0", "m1"], none, home, False)
    assert both == {a: ("m0", "m1")[i % 2] for i, a in enumerate(ADDRS)}


def test_standby_takes_the_addresses_of_the_member_it_replaces_and_gives_them_back():
    home = home_placement(ADDRS[:4], ["m0", "m1"])  # standby m2 has no home
    replaced = place(ADDRS[:4], ["m1", "m2"], dict(home), home, failback=False)
    assert {a for a, m in replaced.items() if m == "m2"} == {a for a, m in home.items()
                                                             if m == "m0"}
    back = place(ADDRS[:4], ["m0", "m1"], replaced, home, failback=False)
    assert "m2" not in back.values()
    assert Counter(back.values()) == {"m0": 2, "m1": 2}


def test_standby_that_joins_late_gets_its_share():
    home = home_placement(ADDRS[:5], ["m0", "m1", "m2"])  # m0: 0 3, m1: 1 4, m2: 2
    a0, a1, a2, a3, a4 = ADDRS[:5]
    degraded = place(ADDRS[:5], ["m0", "m1"], dict(home), home, failback=False)
    assert degraded == {a0: "m0", a1: "m1", a2: "m0", a3: "m0", a4: "m1"}
    # Standby s comes in for m2: m0 (3) gives its last (a3) to s (0).
    new = place(ADDRS[:5], ["m0", "m1", "s"], degraded, home, failback=False)
    assert new == {a0: "m0", a1: "m1", a2: "m0", a3: "s", a4: "m1"}


@pytest.mark.parametrize("seed", range(4))
def test_random_sequences_keep_the_invariants(seed):
    rng = random.Random(seed)
    members = ["m0", "m1", "m2", "m3", "s"]
    for _ in range(50):
        addrs = ADDRS8[:rng.randint(0, 8)]
        homes = [m for m in members[:4] if rng.random() < 0.8] or ["m0"]
        home = home_placement(addrs, homes)
        current: dict[str, str | None] = dict(home)
        for _ in range(40):
            active = [m for m in members if rng.random() < 0.6]
            rng.shuffle(active)  # any preference order
            failback = rng.random() < 0.5
            new = place(addrs, active, current, home, failback)
            ctx = f"{addrs=} {active=} {current=} {failback=} {new=}"
            assert list(new) == list(addrs), ctx
            assert new == reference(addrs, active, current, home, failback), ctx
            if not active:
                assert all(h is None for h in new.values()), ctx
                current = new
                continue
            assert set(new.values()) <= set(active), ctx
            n = spread_of(new, active)
            assert max(n) - min(n) <= 1, ctx  # even: never more than one apart
            # An address on a still-active member moves only to go home or to even out; an
            # evening move takes it from a member that, before evening, hosted at least two
            # more than its new member.
            before_even = {a: current[a] for a in addrs if current[a] in active}
            if failback:
                before_even.update({a: home[a] for a in addrs if home.get(a) in active})
            for a in addrs:
                if current[a] in active and new[a] != current[a]:
                    if failback and new[a] == home.get(a):
                        continue
                    c = Counter(before_even.values())
                    assert c[before_even[a]] >= c[new[a]] + 2, ctx
            # No needless move: with nothing orphaned, nothing going home and no imbalance
            # of more than one, the placement stays.
            if all(current[a] in active for a in addrs):
                c = Counter(current[a] for a in addrs)
                homing = failback and any(home.get(a) in active and home[a] != current[a]
                                          for a in addrs)
                if not homing and max(c[m] for m in active) - min(c[m] for m in active) <= 1:
                    assert new == current, ctx
            if failback and set(homes) <= set(active) and not set(active) - set(homes):
                assert new == home, ctx  # every home member active: back home, even
            current = new
