"""Targets found by all-hosts echo (:class:`vnicbond.core.discovery.TargetFinder`), on a fake
clock.

Each rule of the module docstring, with its exact threshold: when a round asks all-hosts (no
target: every round; after a drop: SEARCH_ROUNDS rounds or until one is found; otherwise once
every REDISCOVER seconds below LIMIT, never at LIMIT); at most LIMIT targets per family and
bounded memory under a flood of responders; addresses that are never targets; the family is
the address's; routers preferred (a router takes a full family's newest non-router place,
listed first); a dropped target held out for DROP_HOLD seconds; snapshot/restore and its
malformed inputs; clear.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from vnicbond.core.discovery import (
    DROP_HOLD,
    LIMIT,
    MEMORY,
    REDISCOVER,
    SEARCH_ROUNDS,
    TargetFinder,
)


def v4(i: int) -> IPv4Address:
    return IPv4Address(f"198.18.{i // 250}.{i % 250 + 1}")


def v6(i: int) -> IPv6Address:
    return IPv6Address(f"fe80::{i + 1:x}")


def full(version: int = 4, now: float = 0.0) -> TargetFinder:
    f = TargetFinder()
    make = v4 if version == 4 else v6
    for i in range(LIMIT):
        assert f.found(make(i), now)
    return f


# -- the constants' reasons hold ---------------------------------------------------------------
def test_constants_are_the_documented_ones() -> None:
    assert (LIMIT, SEARCH_ROUNDS, REDISCOVER, DROP_HOLD, MEMORY) == (5, 3, 60.0, 300.0, 20)


# -- when to ask all-hosts ---------------------------------------------------------------------
@pytest.mark.parametrize("version", [4, 6])
def test_without_a_target_every_round_asks(version: int) -> None:
    f = TargetFinder()
    assert all(f.wanted(version, t * 0.03) for t in range(100))


def test_the_families_are_asked_for_separately() -> None:
    f = TargetFinder()
    f.found(v4(0), 0.0)
    assert f.wanted(4, 0.1) is True  # never asked yet: the periodic round is due
    assert f.wanted(4, 0.2) is False
    assert f.wanted(6, 0.2) is True  # IPv6 has no target: every round
    assert f.wanted(6, 0.3) is True


def test_with_some_targets_at_most_once_every_rediscover_seconds() -> None:
    f = TargetFinder()
    assert f.wanted(4, 10.0) is True
    assert f.found(v4(0), 10.01)
    # The round at 10.0 counts as the last request: the next is due REDISCOVER after it.
    assert f.wanted(4, 10.0 + REDISCOVER - 0.001) is False
    assert f.wanted(4, 10.0 + REDISCOVER) is True
    assert f.wanted(4, 10.0 + REDISCOVER + 0.03) is False
    assert f.wanted(4, 10.0 + 2 * REDISCOVER - 0.001) is False
    assert f.wanted(4, 10.0 + 2 * REDISCOVER) is True


def test_with_limit_targets_never_asks() -> None:
    f = full()
    assert not any(f.wanted(4, t * 10.0) for t in range(100))
    f.drop(v4(0), 1000.0)
    assert f.wanted(4, 1000.1) is True


def test_after_a_drop_search_rounds_ask_then_the_period_again() -> None:
    f = TargetFinder()
    f.wanted(4, 0.0)
    for i in range(3):
        f.found(v4(i), 0.01)
    assert f.drop(v4(1), 5.0) is True
    assert f.searching(4)
    assert [f.wanted(4, 5.0 + 0.03 * r) for r in range(SEARCH_ROUNDS + 1)] == \
        [True] * SEARCH_ROUNDS + [False]
    assert not f.searching(4)
    last = 5.0 + 0.03 * (SEARCH_ROUNDS - 1)
    assert f.wanted(4, last + REDISCOVER - 0.001) is False
    assert f.wanted(4, last + REDISCOVER) is True


def test_a_search_ends_when_a_replacement_is_found() -> None:
    f = TargetFinder()
    for i in range(3):
        f.found(v4(i), 0.0)
    f.wanted(4, 0.0)
    f.drop(v4(0), 1.0)
    assert f.wanted(4, 1.03) is True
    assert f.found(v4(7), 1.04) is True
    assert not f.searching(4)
    assert f.wanted(4, 1.06) is False  # back to once every REDISCOVER from 1.03
    assert f.wanted(4, 1.03 + REDISCOVER) is True


def test_dropping_the_last_target_asks_every_round_past_the_search() -> None:
    f = TargetFinder()
    f.found(v4(0), 0.0)
    f.drop(v4(0), 1.0)
    assert all(f.wanted(4, 1.0 + 0.03 * r) for r in range(SEARCH_ROUNDS * 4))


def test_a_bad_version_is_a_clear_error() -> None:
    f = TargetFinder()
    with pytest.raises(ValueError, match="IP version must be 4 or 6, not 5"):
        f.wanted(5, 0.0)
    with pytest.raises(ValueError, match="IP version"):
        f.targets(0)


# -- responders ----------------------------------------------------------------------------------
def test_responders_are_kept_up_to_limit_in_the_order_found() -> None:
    f = TargetFinder()
    for i in range(LIMIT):
        assert f.found(v4(i), 0.0) is True
    assert f.found(v4(LIMIT), 0.0) is False
    assert f.targets(4) == tuple(v4(i) for i in range(LIMIT))
    assert f.found(v4(2), 1.0) is False  # already a target: no change
    assert f.targets(6) == ()


def test_a_flood_of_responders_keeps_limit_and_bounded_memory() -> None:
    f = TargetFinder()
    for i in range(5000):
        f.found(v4(i), i * 1e-4)
        f.found(v6(i), i * 1e-4)
        f.router(v6(10_000 + i))
    assert f.targets(4) == tuple(v4(i) for i in range(LIMIT))
    assert len(f.targets(6)) == LIMIT
    snap = f.snapshot()
    for v in ("4", "6"):
        assert len(snap[v]["routers"]) <= MEMORY and len(snap[v]["dropped"]) <= MEMORY
    assert len(json.dumps(snap)) < 4000


def test_dropped_memory_is_bounded() -> None:
    f = TargetFinder()
    for i in range(1000):
        f.found(v4(i), i * 1e-3)
        f.drop(v4(i), i * 1e-3)
    assert len(f.snapshot()["4"]["dropped"]) == MEMORY
    # the most recent drops are the ones still held, older ones are forgotten early
    assert f.found(v4(1000 - MEMORY), 2.0) is False
    assert f.found(v4(999 - MEMORY), 2.0) is True


@pytest.mark.parametrize("ip", [
    "224.0.0.1", "239.1.2.3", "0.0.0.0", "127.0.0.1", "127.9.9.9", "255.255.255.255",
    "240.0.0.1", "ff02::1", "ff05::2", "::", "::1", "::ffff:198.18.0.1", "not an address",
    "198.18.0.256", ""])
def test_multicast_unspecified_loopback_and_garbage_are_never_targets(ip: str) -> None:
    f = TargetFinder()
    assert f.found(ip, 0.0) is False
    assert f.router(ip) is False
    assert f.drop(ip, 0.0) is False
    assert f.targets(4) == f.targets(6) == ()


def test_each_responder_goes_to_its_own_family() -> None:
    f = TargetFinder()
    assert f.found("198.18.0.2", 0.0) and f.found("2001:db8::2", 0.0)
    assert f.found(ip_address("fe80::1"), 0.0)
    assert f.targets(4) == (IPv4Address("198.18.0.2"),)
    assert f.targets(6) == (IPv6Address("2001:db8::2"), IPv6Address("fe80::1"))
    # a full IPv4 family does not stop IPv6 responders, nor the reverse
    for i in range(LIMIT):
        f.found(v4(i + 10), 0.0)
    assert f.found(v6(50), 0.0) is True


def test_a_scoped_link_local_is_the_same_target() -> None:
    f = TargetFinder()
    assert f.found("fe80::1%eth0", 0.0) is True
    assert f.found("fe80::1", 0.0) is False
    assert f.targets(6) == (IPv6Address("fe80::1"),)


def test_our_own_addresses_are_never_targets() -> None:
    f = TargetFinder()
    f.found("198.18.0.9", 0.0)
    f.found("198.18.0.2", 0.0)
    assert f.ours(["198.18.0.2", IPv6Address("fe80::42")]) is True
    assert f.targets(4) == (IPv4Address("198.18.0.9"),)
    assert f.found("198.18.0.2", 1.0) is False
    assert f.found("fe80::42", 1.0) is False
    assert f.router("fe80::42") is False
    assert f.ours([]) is False
    assert f.found("198.18.0.2", 1.0) is True  # no longer ours; it was not held as dropped


# -- routers ------------------------------------------------------------------------------------
def test_routers_are_listed_first() -> None:
    f = TargetFinder()
    for i in range(3):
        f.found(v6(i), 0.0)
    assert f.router(v6(2)) is True
    assert f.targets(6) == (v6(2), v6(0), v6(1))
    assert f.router(v6(2)) is False  # told again: no change
    assert f.router(v6(1)) is True
    assert f.targets(6) == (v6(1), v6(2), v6(0))  # routers among themselves: order found


def test_a_router_not_yet_a_target_changes_nothing_until_it_answers() -> None:
    f = TargetFinder()
    f.found(v6(0), 0.0)
    assert f.router(v6(9)) is False
    assert f.targets(6) == (v6(0),)
    assert f.found(v6(9), 1.0) is True
    assert f.targets(6) == (v6(9), v6(0))


def test_a_router_takes_the_place_of_the_newest_host_when_full() -> None:
    f = full(6)
    f.router(v6(100))
    assert f.found(v6(100), 1.0) is True
    assert f.targets(6) == (v6(100), v6(0), v6(1), v6(2), v6(3))
    # the host that gave way was not dropped: it may come back when there is room
    f.drop(v6(0), 2.0)
    assert f.found(v6(LIMIT - 1), 2.1) is True


def test_hosts_do_not_displace_and_routers_do_not_displace_routers() -> None:
    f = full(6)
    assert f.found(v6(50), 1.0) is False  # a host: no room
    for i in range(LIMIT):
        f.router(v6(i))
    f.router(v6(60))
    assert f.found(v6(60), 1.0) is False  # every target is a router already
    assert f.targets(6) == tuple(v6(i) for i in range(LIMIT))


def test_hosts_stay_beside_routers_while_there_is_room() -> None:
    f = TargetFinder()
    f.router(v6(0))
    f.found(v6(0), 0.0)
    assert f.found(v6(1), 0.0) is True
    assert f.targets(6) == (v6(0), v6(1))


# -- dropping -----------------------------------------------------------------------------------
def test_a_dropped_target_is_held_out_for_drop_hold_seconds() -> None:
    f = TargetFinder()
    f.found(v4(0), 0.0)
    f.found(v4(1), 0.0)
    assert f.drop(v4(0), 10.0) is True
    assert f.targets(4) == (v4(1),)
    assert f.drop(v4(0), 10.0) is False  # no longer a target
    assert f.found(v4(0), 10.0 + DROP_HOLD - 0.001) is False
    assert f.found(v4(0), 10.0 + DROP_HOLD) is True
    assert f.targets(4) == (v4(1), v4(0))


def test_dropping_what_is_not_a_target_changes_nothing() -> None:
    f = TargetFinder()
    f.found(v4(0), 0.0)
    f.wanted(4, 0.0)
    assert f.drop(v4(5), 1.0) is False
    assert not f.searching(4)
    assert f.found(v4(5), 1.0) is True  # not held either


def test_a_dropped_router_stays_known_as_a_router() -> None:
    f = TargetFinder()
    f.router(v6(0))
    f.found(v6(0), 0.0)
    f.found(v6(1), 0.0)
    f.drop(v6(0), 1.0)
    assert f.found(v6(0), 1.0 + DROP_HOLD) is True
    assert f.targets(6) == (v6(0), v6(1))


# -- snapshot, restore, clear -------------------------------------------------------------------
def test_snapshot_and_restore_go_on_exactly() -> None:
    f = TargetFinder()
    f.wanted(4, 0.0)
    for i in range(4):
        f.found(v4(i), 0.0)
    f.router(v4(3))
    f.found(v6(0), 0.0)
    f.drop(v4(0), 5.0)
    f.wanted(4, 5.03)
    kept = json.loads(json.dumps(f.snapshot()))
    g = TargetFinder()
    g.found(v4(100), 0.0)
    g.restore(kept)
    assert g.snapshot() == f.snapshot()
    assert g.targets(4) == (v4(3), v4(1), v4(2))
    assert g.targets(6) == (v6(0),)
    # the search goes on where it was, the drop is still held
    assert [g.wanted(4, 5.06 + 0.03 * r) for r in range(SEARCH_ROUNDS)] == \
        [True] * (SEARCH_ROUNDS - 1) + [False]
    assert g.found(v4(0), 6.0) is False


@pytest.mark.parametrize("mangle", [
    lambda k: k.pop("6"),
    lambda k: k["4"].pop("targets"),
    lambda k: k["4"].update(targets="198.18.0.1"),
    lambda k: k["4"].update(targets=["2001:db8::1"]),
    lambda k: k["6"].update(targets=["198.18.0.1"]),
    lambda k: k["4"].update(targets=["224.0.0.1"]),
    lambda k: k["4"].update(targets=[3232235777]),
    lambda k: k["4"].update(targets=[str(v4(i)) for i in range(LIMIT + 1)]),
    lambda k: k["4"].update(routers=["ff02::1"]),
    lambda k: k["4"].update(dropped=[["198.18.0.1"]]),
    lambda k: k["4"].update(dropped=[["198.18.0.1", "soon"]]),
    lambda k: k["4"].update(search=SEARCH_ROUNDS + 1),
    lambda k: k["4"].update(search=-1),
    lambda k: k["4"].update(search="1"),
    lambda k: k["4"].update(last="never"),
])
def test_malformed_state_is_refused_and_changes_nothing(mangle) -> None:
    f = TargetFinder()
    f.found(v4(0), 0.0)
    kept = f.snapshot()
    mangle(kept)
    g = TargetFinder()
    g.found(v4(9), 0.0)
    before = g.snapshot()
    with pytest.raises(ValueError, match="the target finder's state is malformed"):
        g.restore(kept)
    assert g.snapshot() == before


def test_restore_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="malformed"):
        TargetFinder().restore([])  # type: ignore[arg-type]


def test_clear_forgets_all_but_our_addresses() -> None:
    f = TargetFinder()
    f.ours(["198.18.9.9"])
    f.found(v4(0), 0.0)
    f.found(v4(1), 0.0)
    f.router(v4(1))
    f.drop(v4(0), 1.0)
    f.clear()
    assert f.targets(4) == () and not f.searching(4)
    assert f.wanted(4, 1.0) is True
    assert f.found(v4(0), 1.0) is True  # no longer held
    assert f.found("198.18.9.9", 1.0) is False
