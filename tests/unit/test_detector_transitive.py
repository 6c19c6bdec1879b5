"""Unit tests for transitive targets (``member:P``, issue 14) in the failure detector.

A member with no address to probe from probes another member, P, with link-layer frames; P's
answers vouch for it only while P is healthy, and its losses count against it only while P
is healthy and not losing its own IP targets. Scripted timelines on a fake clock (FDT 7 s:
I = 1 s), replies after 2 ms, so a probe is lost 20 ms after it was sent (srtt 2, rttvar ~1:
the timeout's floor).
"""

from __future__ import annotations

import pytest

from tests.unit.detworld import World
from vnicbond.core.detector import (
    GROUP_FAILURE,
    NUM_PROBE_FAILS,
    NUM_PROBE_REPAIRS,
    SUSPECT_LOSSES,
    TIMEOUT_FLOOR,
    HealthChanged,
)
from vnicbond.core.model import Cause

TGT = "198.18.0.1"
RTT = 0.002
T, U = 20.0, 40.0  # the fault starts at T, is lifted at U
SEEDS = [0, 1, 2, 3, 4]
LOST = "probes lost on every target"


def probe_cut(w: World, member: str, after: float) -> list[float]:
    """When ``member``'s probe rounds went out at or after ``after``."""
    return sorted({t for t, _ in w.probes(member) if t >= after})


def fails_at(w: World, member: str, after: float) -> float:
    """The 5th loss in a row from the first round at or after ``after``: each probe is lost
    TIMEOUT_FLOOR after it was sent."""
    return probe_cut(w, member, after)[NUM_PROBE_FAILS - 1] + TIMEOUT_FLOOR


# == (a), (b): active-backup, A probes an IP target, B probes member:A ==========================
@pytest.mark.parametrize("seed", SEEDS)
def test_a_cut_fails_a_and_not_b(seed: int) -> None:
    """A is cut both ways at T: its probes to the target and B's probes to A are lost. A fails
    at its 5th loss; B's losses count only while A still answers some of its own probes (at
    most SUSPECT_LOSSES of them), then are set aside: B does not fail. Lifted at U: A is
    repaired at its 10th answer, and B goes on."""
    cut = lambda m, t, s: None if T <= s < U and (m == "a" or t == "member:a") else RTT  # noqa: E731
    w = World([("a", [TGT]), ("b", ["member:a"])], 7000, seed=seed, delay=cut)
    w.run_until(U + 30.0)
    changes = w.changes()
    assert changes[0] == (fails_at(w, "a", T), HealthChanged("a", False, Cause.PROBE, LOST))
    repaired = probe_cut(w, "a", U)[NUM_PROBE_REPAIRS - 1] + RTT
    assert changes[1:] == [(pytest.approx(repaired), HealthChanged("a", True, Cause.PROBE,
                                                                   "repaired"))]
    b = w.stats("b", "member:a")
    assert b.lost >= 2 * NUM_PROBE_FAILS  # lost, but the runs did not count them all
    assert w.health == {"a": True, "b": True}


@pytest.mark.parametrize("seed", SEEDS)
def test_b_cut_fails_b_and_not_a(seed: int) -> None:
    """B is cut at T: its probes to A are lost while A is healthy and answered by its target,
    so they count: B fails at exactly its 5th loss; A never changes; repaired after U."""
    cut = lambda m, t, s: None if T <= s < U and m == "b" else RTT  # noqa: E731
    w = World([("a", [TGT]), ("b", ["member:a"])], 7000, seed=seed, delay=cut)
    w.run_until(U + 30.0)
    repaired = probe_cut(w, "b", U)[NUM_PROBE_REPAIRS - 1] + RTT
    assert w.changes() == [
        (fails_at(w, "b", T), HealthChanged("b", False, Cause.PROBE, LOST)),
        (pytest.approx(repaired), HealthChanged("b", True, Cause.PROBE, "repaired"))]


# == (c) the target dies ========================================================================
@pytest.mark.parametrize("seed", SEEDS)
def test_target_dies_with_one_ip_prober(seed: int) -> None:
    """The target dies at T; B still reaches A. A fails at its 5th loss, and B, which could
    only reach A and still does, is taken with it (in.mpathd's rule): a group failure at
    that moment, no failover to a member whose path to the target is A's."""
    dead = lambda m, t, s: None if t == TGT and s >= T else RTT  # noqa: E731
    w = World([("a", [TGT]), ("b", ["member:a"])], 7000, seed=seed, delay=dead)
    w.run_until(T + 20.0)
    when = fails_at(w, "a", T)
    assert sorted(w.changes(), key=lambda c: c[1].member) == [
        (when, HealthChanged("a", False, Cause.PROBE, GROUP_FAILURE)),
        (when, HealthChanged("b", False, Cause.PROBE, GROUP_FAILURE))]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_prober_cut_off_does_not_take_a_member_that_no_longer_reaches_it(seed: int) -> None:
    """A is cut off at T (its target and B alike): B's probes to A are lost too, set aside
    while A is losing, and B, which no longer reaches A, is not taken with it: A fails
    alone, B stays healthy to carry the traffic."""
    cut = lambda m, t, s: None if s >= T and (m == "a" or t == "member:a") else RTT  # noqa: E731
    w = World([("a", [TGT]), ("b", ["member:a"])], 7000, seed=seed, delay=cut)
    w.run_until(T + 20.0)
    assert w.changes() == [(fails_at(w, "a", T), HealthChanged("a", False, Cause.PROBE, LOST))]
    assert w.det.healthy("b")


@pytest.mark.parametrize("seed", SEEDS)
def test_target_dies_with_two_ip_probers_is_a_group_failure(seed: int) -> None:
    """P1 and P2 probe the target, T probes both of them. The target dies: the first of P1 and
    P2 to lose 5 in a row finds the other losing too (T, probing only transitively, tells
    nothing of the target): every usable member fails at once, as today, T included."""
    dead = lambda m, t, s: None if t == TGT and s >= T else RTT  # noqa: E731
    w = World([("p1", [TGT]), ("p2", [TGT]), ("t", ["member:p1", "member:p2"])], 7000,
              seed=seed, delay=dead)
    w.run_until(T + 20.0)
    changes = w.changes()
    assert len(changes) == 3 and len({when for when, _ in changes}) == 1
    when = changes[0][0]
    first = min(fails_at(w, "p1", T), fails_at(w, "p2", T))
    assert when == first
    assert {c.member: (c.healthy, c.cause) for _, c in changes} == dict.fromkeys(
        ["p1", "p2", "t"], (False, Cause.PROBE))
    assert [c.reason for _, c in changes].count(GROUP_FAILURE) >= 2
    assert all(w.stats(p, TGT).lost_run >= SUSPECT_LOSSES for p in ("p1", "p2"))


# == (d) three members, two IP probers ==========================================================
@pytest.mark.parametrize("seed", SEEDS)
def test_transitive_member_cut_fails_it(seed: int) -> None:
    cut = lambda m, t, s: None if s >= T and m == "t" else RTT  # noqa: E731
    w = World([("p1", [TGT]), ("p2", [TGT]), ("t", ["member:p1", "member:p2"])], 7000,
              seed=seed, delay=cut)
    w.run_until(T + 20.0)
    assert w.changes() == [(fails_at(w, "t", T), HealthChanged("t", False, Cause.PROBE, LOST))]


@pytest.mark.parametrize("seed", SEEDS)
def test_prober_cut_does_not_fail_the_transitive_member(seed: int) -> None:
    """P1 cut both ways: P1 fails; T's losses to P1 are set aside (P1 is losing its own, then
    failed), its answers from P2 go on: T stays healthy."""
    cut = lambda m, t, s: None if s >= T and (m == "p1" or t == "member:p1") else RTT  # noqa: E731
    w = World([("p1", [TGT]), ("p2", [TGT]), ("t", ["member:p1", "member:p2"])], 7000,
              seed=seed, delay=cut)
    w.run_until(T + 30.0)
    assert w.changes() == [(fails_at(w, "p1", T),
                            HealthChanged("p1", False, Cause.PROBE, LOST))]
    assert w.stats("t", "member:p1").lost_run <= SUSPECT_LOSSES
    assert w.stats("t", "member:p2").ok_run > 10


# == who can vouch ==============================================================================
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_a_member_probing_only_transitively_vouches_for_nobody_losses(seed: int) -> None:
    """C probes B, which probes only transitively: C's losses never count (B is no prober of
    its own), its answers do while B is healthy. C cut: lost grows, lost_run stays 0, C holds."""
    cut = lambda m, t, s: None if s >= T and m == "c" else RTT  # noqa: E731
    w = World([("a", [TGT]), ("b", ["member:a"]), ("c", ["member:b"])], 7000, seed=seed,
              delay=cut)
    w.run_until(T - 0.01)
    c = w.stats("c", "member:b")
    assert c.ok_run > 10
    w.run_until(T + 20.0)
    assert c.lost > 10 and c.lost_run == 0 and w.changes() == []


def test_an_unknown_member_vouches_for_nothing() -> None:
    w = World([("a", [TGT]), ("b", ["member:zz"])], 7000,
              delay=lambda m, t, s: RTT if m == "a" else None)
    w.run_until(30.0)
    b = w.stats("b", "member:zz")
    assert b.lost > 10 and b.lost_run == 0 and w.changes() == []
