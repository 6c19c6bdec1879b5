"""Unit tests for the detector's adaptive timing (issue 14), on a fake clock.

Each rule has its scripted timeline with exact thresholds: the Jacobson/Karels estimate, the
per-probe timeout fixed when sent, late replies as samples, a slow target dropped or the FDT
raised (the 120 ms responder with FDT 300 ms), the FDT lowered after the hold, the quiet
period after a member appears, and the snapshot that carries it all over an upgrade.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.detworld import World
from vnicbond.core import rtt
from vnicbond.core.detector import (
    FDT_HOLD,
    LATE_WINDOW,
    NUM_PROBE_FAILS,
    TIMEOUT_FLOOR,
    Detector,
    FdtChanged,
    HealthChanged,
    ProbeAnswered,
    SendProbe,
    TargetDropped,
)
from vnicbond.core.model import Cause

T1, T2, T3, T4 = "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"
SEEDS = [0, 1, 2, 3, 4]


def raised(configured: int, new: int) -> str:
    return f"cannot meet failure detection time {configured} ms, using {new} ms"


# == the estimate and the timeout ==============================================================
def test_jacobson_karels_estimate_per_target() -> None:
    """First sample r: srtt r, rttvar r/2; then rttvar = 3/4 rttvar + 1/4 |srtt - r| and
    srtt = 7/8 srtt + 1/8 r. rtt_ms is the last sample."""
    delays = iter([0.010, 0.025, 0.002])
    w = World([("a", [T1])], 7000, delay=lambda m, t, s: next(delays, None))
    seen: list[tuple[float | None, float | None, float | None]] = []
    for _ in range(10):
        w.run_until((w.det.next_deadline() or w.now) + 0.5)
        s = w.stats("a", T1)
        if s.answers > len(seen):
            seen.append((s.srtt_ms, s.rttvar_ms, s.rtt_ms))
    assert seen[0] == pytest.approx((10.0, 5.0, 10.0))
    assert seen[1] == pytest.approx((11.875, 7.5, 25.0))
    assert seen[2] == pytest.approx((10.640625, 8.09375, 2.0))


def test_timeout_rule() -> None:
    """min(interval, max(srtt + 4 rttvar, 20 ms)), the interval while there is no sample."""
    assert TIMEOUT_FLOOR == 0.020
    assert rtt.timeout(None, None, 1.0) == 1.0
    assert rtt.timeout(0.010, 0.005, 1.0) == pytest.approx(0.030)
    assert rtt.timeout(0.001, 0.0005, 1.0) == TIMEOUT_FLOOR
    assert rtt.timeout(0.300, 0.200, 1.0) == 1.0


def test_timeout_is_fixed_when_the_probe_is_sent_and_the_loss_counted_at_it() -> None:
    """After one 10 ms answer the next probe's timeout is 30 ms (10 + 4 * 5): it is lost at
    exactly sent + 30 ms, not a moment before, and next_deadline says so."""
    det = Detector([("a", [T1])], 7000, rng=random.Random(0))
    det.start({"a": True}, 0.0)
    now = det.next_deadline()
    assert now is not None
    (p1,) = [o for o in det.tick(now) if isinstance(o, SendProbe)]
    assert det.targets("a")[0].outstanding[p1.seq] == (now, now + 1.0)  # no sample: I
    det.reply("a", T1, p1.seq, now + 0.010)
    s2 = det.next_deadline()
    assert s2 is not None
    (p2,) = [o for o in det.tick(s2) if isinstance(o, SendProbe)]
    (stats,) = det.targets("a")
    assert stats.outstanding[p2.seq] == (s2, pytest.approx(s2 + 0.030))
    deadline = stats.outstanding[p2.seq][1]
    assert det.next_deadline() == deadline
    det.tick(deadline - 1e-9)
    assert stats.lost == 0
    det.tick(deadline)
    assert (stats.lost, stats.lost_run) == (1, 1)
    # a reply now is late: the probe stays lost, the sample is fed, nothing is answered
    out = det.reply("a", T1, p2.seq, deadline + 0.005)
    assert out == []
    assert (stats.lost, stats.lost_run, stats.ok_run, stats.rtt_ms) == (1, 1, 0, 10.0)
    r = (deadline + 0.005 - s2) * 1000.0
    assert stats.rttvar_ms == pytest.approx(0.75 * 5.0 + 0.25 * abs(10.0 - r))
    assert stats.srtt_ms == pytest.approx(0.875 * 10.0 + 0.125 * r)
    # a second copy, or a reply after LATE_WINDOW, is worth nothing
    before = (stats.srtt_ms, stats.rttvar_ms)
    assert det.reply("a", T1, p2.seq, deadline + 0.006) == []
    assert (stats.srtt_ms, stats.rttvar_ms) == before


def test_a_reply_after_the_late_window_is_not_a_sample() -> None:
    """LATE_WINDOW after its probe a reply is still a sample (so slow it raises the FDT); a
    moment later it is worth nothing."""
    results = []
    for late in (LATE_WINDOW, LATE_WINDOW + 0.001):
        det = Detector([("a", [T1])], 7000, rng=random.Random(0))
        det.start({"a": True}, 0.0)
        now = det.next_deadline()
        assert now is not None
        (p,) = [o for o in det.tick(now) if isinstance(o, SendProbe)]
        det.tick(now + 1.0)
        out = det.reply("a", T1, p.seq, now + late)
        results.append(([type(o) for o in out], det.targets("a")[0].srtt_ms))
    assert results == [([FdtChanged], LATE_WINDOW * 1000.0), ([], None)]


# == slow targets: FDT raised ==================================================================
@pytest.mark.parametrize("seed", SEEDS)
def test_a_120_ms_responder_with_fdt_300_raises_the_fdt_and_fails_no_member(seed: int) -> None:
    """The issue's timeline: two members probe one target that answers 120 ms after each probe
    (rounds 0.5 to 1.0 I apart, I = 42.9 ms). The first probes time out after I; their
    losses fall in the quiet period. The first late reply (at its probe + 120 ms) gives
    srtt 120, rttvar 60: 360 ms does not fit I, so FDT goes to 7 * 360 * 1.25 = 3150 ms at
    that very moment; from then on every reply is in time. No member ever fails."""
    w = World([("a", [T1]), ("b", [T1])], 300, delay=lambda m, t, s: 0.120, seed=seed)
    w.run_until(30.0)
    assert w.changes() == []
    first_reply = min(t + 0.120 for t, _ in w.sent)
    assert w.fdt_changes() == [(first_reply, FdtChanged(300, 3150, raised(300, 3150)))]
    assert w.det.fdt_ms == 3150 and w.det.configured_fdt_ms == 300
    assert w.det.interval == pytest.approx(0.45)
    for m in "ab":
        stats = w.stats(m, T1)
        assert stats.lost_run == 0 and stats.ok_run > 50
        assert 1 <= stats.lost <= 5  # the first probes, timed out before the first reply
        assert stats.srtt_ms == pytest.approx(120.0)
        # every probe sent after the raise was answered in time
        after = [t for t, _ in w.probes(m) if t > first_reply]
        assert len(w.answered(m)) >= len(after) - 1


def test_the_raised_fdt_rule() -> None:
    """7 * crtt * 1.25, rounded up to 10 ms."""
    assert rtt.fdt_to_fit(0.360) == 3150
    assert rtt.fdt_to_fit(0.100) == 880  # 875 -> 880
    assert rtt.fdt_to_fit(0.04) == 350


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_fdt_back_to_the_configured_value_after_exactly_the_hold(seed: int) -> None:
    """The responder answers after 120 ms until D, then after 2 ms. Once every target's
    srtt + 4 rttvar fits the configured interval (300 / 7 ms) after a reply at X, and nothing
    is slow again, the FDT goes back to 300 ms at exactly X + 60 s: next_deadline wakes the
    detector for it."""
    D = 20.0
    w = World([("a", [T1]), ("b", [T1])], 300, seed=seed,
              delay=lambda m, t, s: 0.120 if s < D else 0.002)
    w.run_until(D + FDT_HOLD + 30.0)
    assert w.changes() == []
    # the driver's own estimate, reply by reply: when did every target last start to fit?
    est: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    fit_since: float | None = None
    for when, m, t, r in w.replied:
        est[m, t] = rtt.estimate(*est.get((m, t), (None, None)), r * 1000.0)
        fits = all((rtt.crtt(*e) or 0.0) <= 300 / 7.0 for e in est.values())
        if not fits:
            fit_since = None
        elif fit_since is None and when > D:
            fit_since = when
    assert fit_since is not None and fit_since < D + 15.0
    lowered = fit_since + FDT_HOLD
    assert w.fdt_changes() == [
        (w.fdt_changes()[0][0], FdtChanged(300, 3150, raised(300, 3150))),
        (lowered, FdtChanged(3150, 300, "targets fast again for 60 s: failure detection time "
                                        "back to 300 ms"))]
    assert lowered in w.ticks
    assert w.det.fdt_ms == 300 and w.det.interval == pytest.approx(0.3 / 7)


def test_a_slow_sample_during_the_hold_starts_it_over() -> None:
    """One reply of 200 ms during the hold: the hold starts over once the targets fit again,
    so the FDT is still raised 60 s after the first fit, and lowered 60 s after the second."""
    D, J = 20.0, 50.0
    state = {"spike": False}

    def delay(m: str, t: str, s: float) -> float:
        if s < D:
            return 0.120
        if s >= J and not state["spike"]:
            state["spike"] = True
            return 0.200
        return 0.002

    w = World([("a", [T1])], 300, delay=delay)
    w.run_until(J)
    first_fit = w.det.fdt.fast_since
    assert first_fit is not None and first_fit < J - 10.0
    w.run_until(J + 1.0)
    assert w.det.fdt.fast_since is None  # the spike does not fit: the hold is off
    w.run_until(J + 20.0)
    again = w.det.fdt.fast_since
    assert again is not None and again > J
    w.run_until(first_fit + FDT_HOLD + 1.0)
    assert w.det.fdt_ms > 300
    w.run_until(again + FDT_HOLD + 1.0)
    assert w.det.fdt_ms == 300 and w.fdt_changes()[-1][0] == again + FDT_HOLD


# == slow targets: dropped =====================================================================
def test_one_slow_target_among_four_is_dropped_not_the_fdt_raised() -> None:
    """a probes four targets, T4 answers in 120 ms, the others in 2 ms (FDT 300 ms): T4 is
    dropped at its first reply; nothing else changes. A retarget still listing T4 keeps it
    out; one without it forgets it, and the next listing it probes it again."""
    w = World([("a", [T1, T2, T3, T4])], 300,
              delay=lambda m, t, s: 0.120 if t == T4 else 0.002)
    w.run_until(5.0)
    first = min(t for t, p in w.probes("a", T4)) + 0.120
    ((when, drop),) = w.dropped()
    assert when == first and (drop.member, drop.target) == ("a", T4)
    assert drop.reason.startswith("round-trip time 360.0 ms does not fit the probe interval")
    assert w.fdt_changes() == [] and w.changes() == []
    assert [s.target for s in w.det.targets("a")] == [T1, T2, T3]
    assert not [p for t, p in w.probes("a", T4) if t > when]
    w.retarget([("a", [T1, T2, T3, T4])], at=6.0)
    assert [s.target for s in w.det.targets("a")] == [T1, T2, T3]
    w.retarget([("a", [T1, T2, T3])], at=7.0)
    w.retarget([("a", [T1, T2, T3, T4])], at=8.0)
    assert [s.target for s in w.det.targets("a")] == [T1, T2, T3, T4]


@pytest.mark.parametrize(("targets", "slow"), [
    ([T1, T2, T3], {T3}),  # fewer than four: raise
    ([T1, T2, T3, T4], {T3, T4}),  # two slow: raise
    ([T1, T2, T3, T4, "member:p"], {"member:p"}),  # a transitive target is never dropped
], ids=["three", "two-slow", "transitive"])
def test_otherwise_the_fdt_is_raised(targets: list[str], slow: set[str]) -> None:
    w = World([("a", targets), ("p", [T1])], 300,
              delay=lambda m, t, s: 0.120 if t in slow else 0.002)
    w.run_until(5.0)
    assert w.dropped() == [] and w.changes() == []
    assert [c.new_ms for _, c in w.fdt_changes()] == [3150]


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_raising_forgives_the_losses_of_the_slow_targets(seed: int) -> None:
    """Mid-run (the quiet period long over) the target slows from 2 ms to 120 ms: the probes
    time out after 20 ms, so one to four are lost before the first late reply arrives; that
    reply (srtt 16.75, rttvar 29.5) raises the FDT and resets their run: no member fails,
    every lost_run is 0."""
    S = 10.0
    w = World([("a", [T1]), ("b", [T1])], 300, seed=seed,
              delay=lambda m, t, s: 0.120 if s >= S else 0.002)
    w.run_until(S + 0.3)
    (when, change), *_ = w.fdt_changes()  # (again while the estimate climbs from 2 ms)
    runs_before = {m: w.stats(m, T1).lost for m in "ab"}
    assert change.old_ms == 300 and when == pytest.approx(
        min(t for t, _ in w.sent if t >= S) + 0.120)
    w.run_until(S + 20.0)
    assert w.changes() == []
    assert all(w.stats(m, T1).lost_run == 0 for m in "ab")
    assert all(1 <= runs_before[m] < NUM_PROBE_FAILS for m in "ab"), runs_before


# == quiet period ===============================================================================
FDT = 7.0  # FDT 7000 ms: I = 1 s


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_quiet_until_one_fdt_has_passed(seed: int) -> None:
    """a's target never answers from the start: its losses before 7 s (one FDT) are set aside
    (counted in ``lost``, not in the run); it fails at the 5th loss counted at or after 7 s."""
    w = World([("a", [T1]), ("b", [T2])], 7000, seed=seed,
              delay=lambda m, t, s: None if m == "a" else 0.002)
    w.run_until(30.0)
    losses = sorted(t + 1.0 for t, _ in w.probes("a"))  # timeout I: no sample ever
    counted = [x for x in losses if x >= FDT]
    assert len([x for x in losses if x < FDT]) >= 5  # without the quiet period: failed
    ((when, change),) = w.changes("a")
    assert change == HealthChanged("a", False, Cause.PROBE, "probes lost on every target")
    assert when == counted[NUM_PROBE_FAILS - 1]


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_quiet_ends_at_the_first_answer(seed: int) -> None:
    """a's first probe is answered (2 ms), none after: the losses count at once; each later
    probe is lost 20 ms after it was sent (crtt 6 ms, the floor), and a fails at the 5th."""
    first: list[float] = []

    def delay(m: str, t: str, s: float) -> float | None:
        if m == "a" and (first and s > first[0]):
            return None
        first.append(s) if m == "a" else None
        return 0.002

    w = World([("a", [T1]), ("b", [T2])], 7000, seed=seed, delay=delay)
    w.run_until(30.0)
    sent = [t for t, _ in w.probes("a")]
    ((when, _),) = w.changes("a")
    assert when == pytest.approx(sent[NUM_PROBE_FAILS] + TIMEOUT_FLOOR)
    assert when < FDT


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_quiet_after_link_up_and_after_new_targets(seed: int) -> None:
    """The target dies at 10 s; a's link goes down at 12 s and up at U = 13 s: its losses
    count again only from U + FDT (lost grows, lost_run stays 0). b is retargeted at R = 30 s
    to a target that never answers: it fails at the 5th loss counted at or after R + FDT."""
    U, R = 13.0, 30.0

    def delay(m: str, t: str, s: float) -> float | None:
        if t == "dead" or (m == "a" and s >= 10.0):
            return None
        return 0.002

    w = World([("a", [T1]), ("b", [T2])], 7000, seed=seed, delay=delay)
    w.link("a", False, at=12.0)
    w.link("a", True, at=U)
    stats = w.stats("a", T1)
    run, lost = stats.lost_run, stats.lost
    w.run_until(U + FDT - 0.01)
    assert stats.lost_run == run and stats.lost > lost
    lost_in_quiet = stats.lost
    w.run_until(U + FDT + 3.0)
    assert stats.lost_run - run == stats.lost - lost_in_quiet > 0
    w.retarget([("a", [T1]), ("b", ["dead"])], at=R)
    w.run_until(R + 20.0)
    losses = sorted(t + w.det.interval for t, p in w.probes("b", "dead"))
    counted = [x for x in losses if x >= R + FDT]
    (when, change), = [(t, c) for t, c in w.changes("b")]
    assert not change.healthy and when == counted[NUM_PROBE_FAILS - 1]


# == snapshot and resume =======================================================================
def test_snapshot_carries_the_estimates_and_the_raised_fdt() -> None:
    w = World([("a", [T1]), ("b", [T1])], 300, delay=lambda m, t, s: 0.120)
    w.run_until(5.0)
    w.det.fdt.fast_since = 4.5  # (as if the targets had been fast since then)
    kept = json.loads(json.dumps(w.det.snapshot()))
    det = Detector([("a", [T1]), ("b", [T1])], 300, rng=random.Random(1))
    det.resume(kept, {"a": True, "b": True}, 5.0)
    assert det.fdt_ms == 3150 and det.configured_fdt_ms == 300
    assert det.fdt.fast_since == 4.5 and det.next_deadline() is not None
    for m in "ab":
        (old,), (new,) = w.det.targets(m), det.targets(m)
        assert (new.srtt_ms, new.rttvar_ms, new.rtt_ms) == (old.srtt_ms, old.rttvar_ms,
                                                            old.rtt_ms)
    # code before issue 14 kept neither: accepted, nothing raised, no estimate
    for m in "ab":
        for stats in kept[m]["targets"].values():
            del stats["srtt_ms"], stats["rttvar_ms"]
    del kept[":group"]
    det = Detector([("a", [T1]), ("b", [T1])], 300, rng=random.Random(1))
    det.resume(kept, {"a": True, "b": True}, 5.0)
    assert det.fdt_ms == 300 and det.targets("a")[0].srtt_ms is None


@pytest.mark.parametrize("spoil", [
    lambda k: k[":group"].update(fdt_ms="fast"),
    lambda k: k.update({":group": 5}),
    lambda k: k["a"]["targets"][T1].update(srtt_ms="slow"),
    lambda k: k["a"].update(quiet_until="soon"),
    lambda k: k["a"].update(dropped=3),
], ids=["fdt", "group", "srtt", "quiet", "dropped"])
def test_malformed_snapshot_raises_value_error(spoil: Callable[[dict[str, Any]], None]) -> None:
    w = World([("a", [T1])], 300, delay=lambda m, t, s: 0.002)
    w.run_until(1.0)
    kept = json.loads(json.dumps(w.det.snapshot()))
    spoil(kept)
    det = Detector([("a", [T1])], 300, rng=random.Random(1))
    with pytest.raises(ValueError, match="malformed"):
        det.resume(kept, {"a": True}, 1.0)


def test_outputs_are_answered_only_in_time() -> None:
    """(The driver's sanity.) ProbeAnswered only for replies before their probe's deadline."""
    w = World([("a", [T1])], 300, delay=lambda m, t, s: 0.120)
    w.run_until(2.0)
    assert all(isinstance(o, ProbeAnswered) and o.rtt_ms == pytest.approx(120.0)
               for _, o in w.answered("a"))
    assert not math.isnan(w.det.interval)
    assert not [o for _, o in w.outputs if isinstance(o, TargetDropped)]


def test_a_reload_sets_the_configured_fdt_unless_the_targets_raised_it_above() -> None:
    from vnicbond.core.rtt import Fdt
    fdt = Fdt(1000)
    fdt.reconfigure(300)  # not raised: the new value is in use at once
    assert (fdt.configured_ms, fdt.in_use_ms) == (300, 300)
    assert fdt.raise_for(0.2) is not None and fdt.in_use_ms > 1000  # slow targets
    raised = fdt.in_use_ms
    fdt.reconfigure(500)  # still too slow for 500: the raise stays, lowered later
    assert (fdt.configured_ms, fdt.in_use_ms) == (500, raised)
    fdt.reconfigure(raised + 1000)  # above the raise: in use at once
    assert fdt.in_use_ms == raised + 1000 and not fdt.raised
