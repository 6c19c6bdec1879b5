"""Failure detection for one group: link state and in.mpathd-style probes, as a pure machine.

No I/O and no clock: events (link change, probe reply, administrative change, the passing of
time through :meth:`Detector.tick`) and the current time go in; probes to send and health
changes come out, and :meth:`Detector.next_deadline` says when to call ``tick`` next. The
group engine (:mod:`vnicbond.core.engine`) turns the probes into frames, feeds back the
replies it has matched, and hands health changes to :class:`vnicbond.core.group.Group`.

Terms (as in in.mpathd):

* **failure detection time** (FDT): the one knob. The **probe interval** I is FDT / 7; each
  probe round goes out at a random point between 0.5 I and 1.0 I after the previous one, so
  members and hosts do not probe in lock-step. The FDT **in use** may be raised above the
  configured one for slow targets (:mod:`vnicbond.core.rtt`); I follows the one in use.
* Each target has a smoothed RTT and variance (Jacobson/Karels, fed by every reply, in time
  or late); its **crtt** is srtt + 4 rttvar. A **probe** is lost when no valid reply arrives
  within its **timeout**, fixed when it is sent: min(I, max(crtt, ``TIMEOUT_FLOOR``)), I
  while the target has no sample.
* A member's probes have **failed** when every target has lost the last ``NUM_PROBE_FAILS``
  (5) probes in a row; they are **repaired** after ``NUM_PROBE_REPAIRS`` (10) consecutive
  answered probes from any target (just one while no member of the group is usable).
* A member is **usable** when it is healthy and not offline; it is **healthy** when its link
  is up, its probes have not failed, and it is not held down for flapping.
* A **transitive** target ``member:P`` is another member of the group, probed with
  link-layer frames (the engine's business); P **vouches** while it is healthy, and its
  silence counts against M only while P is answered by some IP target of its own (lost_run
  below ``SUSPECT_LOSSES``). Outcomes that do not count are **set aside**: counted in
  ``lost``, in no run.

Event/state table (member M):

====================================  ==================================================
event                                 result
====================================  ==================================================
link down                             M unhealthy at once (cause ``link``); probes failed
link up, M probes                     M stays unhealthy until its probes are repaired
link up, M does not probe             M healthy after the link stays up for the repair
                                      time (10 I); at once if no member is usable
link up a third time within 60 s      M is flapping: not repaired until fewer than three
                                      link-ups lie in the last 60 s (unless no member is
                                      usable)
5 losses in a row on every target     M unhealthy (cause ``probe``), unless every other
                                      usable member probing IP targets is losing all of
                                      them too (and no usable member is link-only): then
                                      the targets died, and every usable member fails at
                                      once (group failure) instead of moving traffic
                                      around, transitive probers too (their vouchers'
                                      answers no longer count for them)
10 answers in a row on a target       M's probes repaired (1 answer if none is usable)
M appears (start, link up, reload     quiet period: M's losses are set aside until its
adding it, new targets)               first counted answer or one configured FDT
a reply after its probe's timeout,    the probe stays lost; the RTT feeds the estimate
within ``LATE_WINDOW`` (10 s)
a sample makes a target slow (crtt    an IP target among 4 or more of M's IP targets, all
above I in use)                       others sampled and fitting: dropped
                                      (:class:`TargetDropped`), left out until a target
                                      set without it; otherwise the FDT is raised to fit
                                      it (:class:`FdtChanged`) and the runs of losses of
                                      every slow target are forgiven (reset)
every target fits the configured I    FDT back to the configured one (:class:`FdtChanged`,
for ``FDT_HOLD`` (60 s) while raised  on the tick at that moment)
loss on ``member:P``                  counts only while P is healthy and answered by an
                                      IP target of its own
answer from ``member:P``              counts only while P is healthy; all set aside: M
                                      holds its state (neither fails nor is repaired)
====================================  ==================================================

A member without probes (no test address or no targets) is judged by its link alone and
reports its probe state as ``disabled``.

The module is one state machine with its table above (about 700 lines, with the snapshot an
upgrade carries over): its rules read together, so they stay in one place. The timing's
arithmetic (the estimate, the timeout, the FDT in use and its hold) lives in
:mod:`vnicbond.core.rtt`; the decisions that read the members' state (drop or raise, whose
losses to forgive, whose outcomes count) stay here.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnicbond.core import rtt
from vnicbond.core.model import Cause
from vnicbond.core.rtt import FDT_HOLD, LATE_WINDOW, TIMEOUT_FLOOR, FdtChanged

__all__ = ["FDT_HOLD", "LATE_WINDOW", "TIMEOUT_FLOOR", "FdtChanged"]  # re-exported

NUM_PROBE_FAILS = 5
NUM_PROBE_REPAIRS = 10
#: Consecutive losses on a target after which its probes also ask for its MAC again.
RESOLVE_AFTER = 2
#: Consecutive losses that make another member "also losing its targets".
SUSPECT_LOSSES = 2
FLAP_WINDOW = 60.0
#: Link-ups tolerated within FLAP_WINDOW; one more and the member is flapping.
FLAP_LIMIT = 2
#: A target's statistics that code taking over the daemon keeps (:meth:`Detector.snapshot`).
_KEPT_STATS = ("sent", "lost", "lost_run", "ok_run", "rtt_ms", "answers", "srtt_ms",
               "rttvar_ms")
#: Kept statistics that may be None (and that code before issue 14 did not keep).
_OPTIONAL_STATS = ("rtt_ms", "srtt_ms", "rttvar_ms")
#: A member with this many IP targets or more drops its one slow target instead of raising
#: the group's FDT for everyone (the issue's "four or more").
DROP_MIN_TARGETS = 4
#: A transitive target: another member of the group, probed with link-layer frames.
MEMBER_PREFIX = "member:"
#: The snapshot's key for the group's timing: ":" cannot start an interface's name.
_GROUP_KEY = ":group"


#: Probe states as status reports them.
DISABLED, UNKNOWN, OK, FAILED = "disabled", "unknown", "ok", "failed"
GROUP_FAILURE = "every member lost every target (group failure)"


@dataclass(frozen=True, slots=True)
class SendProbe:
    """Send probe number ``seq`` from ``member`` to ``target``; with ``resolve``, ask for the
    target's MAC again too (its last ``RESOLVE_AFTER`` probes were lost: it may have moved)."""

    member: str
    target: str
    seq: int
    resolve: bool = False


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """``member`` became healthy or unhealthy, and why."""

    member: str
    healthy: bool
    cause: Cause
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeAnswered:
    """A reply to one of ``member``'s probes to ``target`` counted, after ``rtt_ms``."""

    member: str
    target: str
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class TargetDropped:
    """``member`` probes ``target`` no more: it alone was too slow among four or more."""

    member: str
    target: str
    reason: str


Output = SendProbe | HealthChanged | ProbeAnswered | FdtChanged | TargetDropped


@dataclass(slots=True)
class TargetStats:
    """One member's view of one probe target."""

    target: str
    sent: int = 0
    lost: int = 0
    lost_run: int = 0
    ok_run: int = 0
    #: The last answer's RTT (of a reply in time: what :class:`ProbeAnswered` reported).
    rtt_ms: float | None = None
    #: Replies accepted (in time, matching an outstanding probe).
    answers: int = 0
    #: When the last reply was accepted (None: never).
    answered_at: float | None = None
    #: The Jacobson/Karels estimate, fed by every reply in time or late (:mod:`.rtt`).
    srtt_ms: float | None = None
    rttvar_ms: float | None = None
    #: Unresolved probes, seq -> (time sent, deadline fixed when sent), in sending order.
    outstanding: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: Probes sent within LATE_WINDOW and not replied to yet, seq -> time sent, in order:
    #: a reply is worth something (an answer in time, or an RTT sample if late) only once.
    recent: dict[int, float] = field(default_factory=dict)
    #: Outstanding probes answered in time, waiting for earlier ones to be resolved.
    answered: set[int] = field(default_factory=set)

    @property
    def transitive(self) -> bool:
        """Whether the target is another member (``member:<name>``), not an IP address."""
        return self.target.startswith(MEMBER_PREFIX)

    @property
    def crtt(self) -> float | None:
        """srtt + 4 rttvar in seconds (None while there is no sample)."""
        c = rtt.crtt(self.srtt_ms, self.rttvar_ms)
        return None if c is None else c / 1000.0

    def timeout(self, interval: float) -> float:
        """The timeout of a probe sent now (:func:`vnicbond.core.rtt.timeout`)."""
        if self.srtt_ms is None or self.rttvar_ms is None:
            return interval
        return rtt.timeout(self.srtt_ms / 1000.0, self.rttvar_ms / 1000.0, interval)

    def sample(self, seconds: float) -> None:
        """One more RTT sample for the estimate."""
        self.srtt_ms, self.rttvar_ms = rtt.estimate(self.srtt_ms, self.rttvar_ms,
                                                    seconds * 1000.0)


@dataclass(slots=True)
class _Member:
    name: str
    targets: dict[str, TargetStats]
    link_up: bool = False
    link_since: float = 0.0
    offline: bool = False
    probe: str = UNKNOWN
    healthy: bool = False
    next_send: float = 0.0
    link_ups: deque[float] = field(default_factory=deque)
    fail_reason: str = ""
    #: Until when its losses do not count (it just appeared), unless it is answered first.
    quiet_until: float | None = None
    #: Targets dropped for being slow, left out until a target set without them.
    dropped: set[str] = field(default_factory=set)

    @property
    def probing(self) -> bool:
        return bool(self.targets)

    @property
    def usable(self) -> bool:
        return self.healthy and not self.offline


class Detector:
    """Health of every member of one group."""

    def __init__(self, members: Sequence[tuple[str, Iterable[str]]], fdt_ms: int,
                 rng: random.Random | None = None) -> None:
        """``members``: (name, the targets it probes; empty for link state only)."""
        self.fdt = rtt.Fdt(fdt_ms)
        self.rng = rng or random.Random()
        self._members = {name: _Member(name, {t: TargetStats(t) for t in targets})
                         for name, targets in members}
        self._seq = 0
        self._now = 0.0

    @property
    def interval(self) -> float:
        """The probe interval in use (s): the FDT in use / 7."""
        return self.fdt.interval

    @property
    def fdt_ms(self) -> int:
        """The failure detection time in use (raised for slow targets)."""
        return self.fdt.in_use_ms

    @property
    def configured_fdt_ms(self) -> int:
        return self.fdt.configured_ms

    def _begin(self, m: _Member, link_up: bool, now: float) -> None:
        """A new member: healthy if its link is up, probe state ``unknown`` (innocent until its
        probes say otherwise: no wait for 10 answers), first round within half an interval,
        its losses set aside for a while (:meth:`_quiet`)."""
        m.link_up = link_up
        m.link_since = now
        m.probe = DISABLED if not m.probing else (UNKNOWN if link_up else FAILED)
        m.healthy = link_up
        m.next_send = now + self.interval * self.rng.uniform(0.0, 0.5)
        self._quiet(m, now)

    def _quiet(self, m: _Member, now: float) -> None:
        """M appeared: its losses do not count until its first counted answer or until one
        configured FDT has passed (its targets may still be learning its MAC, a switch its
        port)."""
        m.quiet_until = now + self.fdt.configured_ms / 1000.0

    # -- events ------------------------------------------------------------------------------
    def start(self, links: dict[str, bool], now: float) -> dict[str, bool]:
        """Initial link states; returns each member's initial health (see :meth:`_begin`)."""
        for m in self._members.values():
            self._begin(m, links.get(m.name, False), now)
        return {m.name: m.healthy for m in self._members.values()}

    def snapshot(self) -> dict[str, Any]:
        """What code taking over the running daemon keeps of each member (``vnicbond
        upgrade``), as JSON: its link as last seen and since when, whether it is offline,
        healthy, its probe state and why it failed, its recent link-ups (flapping), its quiet
        period, targets dropped as slow, and each target's counts, runs and RTT estimate; and,
        under ``":group"`` (no interface's name), the FDT in use and since when every target
        has been fast. Probes in flight are not kept: their replies would carry the old
        code's token."""
        kept: dict[str, Any] = {m.name: {
            "link_up": m.link_up, "link_since": m.link_since, "offline": m.offline,
            "probe": m.probe, "healthy": m.healthy, "fail_reason": m.fail_reason,
            "link_ups": list(m.link_ups), "quiet_until": m.quiet_until,
            "dropped": sorted(m.dropped),
            "targets": {t.target: {k: getattr(t, k) for k in _KEPT_STATS}
                        for t in m.targets.values()}}
            for m in self._members.values()}
        kept[_GROUP_KEY] = {"fdt_ms": self.fdt.in_use_ms, "fast_since": self.fdt.fast_since}
        return kept

    def resume(self, kept: dict[str, Any], links: dict[str, bool], now: float
               ) -> dict[str, bool]:
        """:meth:`start` for code taking over the running daemon, from :meth:`snapshot`'s:
        each member goes on as it was (a member failed by its probes stays failed until they
        are repaired, a flapping one keeps its link-ups, counts and estimates go on, the FDT
        stays raised), its next probe round within half an interval. A link that changed
        meanwhile is then an ordinary link event; a member or target not in ``kept`` starts
        as at start. Returns each member's health. Raises ValueError, changing nothing, if
        ``kept`` is malformed."""
        restored = {}
        try:
            kept = dict(kept)
            group = dict(kept.pop(_GROUP_KEY, {}))
            fdt_ms = int(group.get("fdt_ms", self.fdt.configured_ms))
            fast_since = _opt_float(group.get("fast_since"))
            for name, k in kept.items():
                if name in self._members:
                    restored[name] = (
                        bool(k["link_up"]), float(k["link_since"]), bool(k["offline"]),
                        str(k["probe"]), bool(k["healthy"]), str(k["fail_reason"]),
                        [float(t) for t in k["link_ups"]],
                        {str(t): _stats(v) for t, v in dict(k["targets"]).items()},
                        _opt_float(k.get("quiet_until")), {str(t) for t in k.get("dropped", [])})
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the failure detector's state is malformed: {e!r}") from None
        self._now = now
        if fdt_ms > self.fdt.configured_ms:
            self.fdt.in_use_ms, self.fdt.fast_since = fdt_ms, fast_since
        for m in self._members.values():
            if m.name not in restored:
                self._begin(m, links.get(m.name, False), now)
                continue
            (link_up, since, offline, probe, healthy, reason, ups, targets, quiet,
             dropped) = restored[m.name]
            self._begin(m, link_up, now)
            m.link_since, m.offline, m.healthy, m.fail_reason = since, offline, healthy, reason
            m.link_ups = deque(ups)
            m.quiet_until = quiet
            m.dropped = dropped & set(m.targets)
            for t in m.dropped:
                del m.targets[t]
            if m.probing and probe in (UNKNOWN, OK, FAILED):
                m.probe = probe
            for t in m.targets.values():
                for key, value in targets.get(t.target, {}).items():
                    setattr(t, key, value)
        for name, up in links.items():
            if name in self._members:
                self.link(name, up, now)  # (nothing if it did not change)
        return {m.name: m.healthy for m in self._members.values()}

    def reconfigure(self, members: Sequence[tuple[str, Iterable[str]]], fdt_ms: int,
                    links: dict[str, bool], now: float) -> list[Output]:
        """A reload: new members, targets or FDT, keeping what is known of the rest.

        Members and targets that stay keep their state and statistics; new members start as
        at start-up (healthy if their link is up); members that probe no more are judged by
        link state alone from now on. A raised FDT stays raised if above the new one.
        """
        self._now = now
        self.fdt.reconfigure(fdt_ms)
        kept: dict[str, _Member] = {}
        for name, targets in members:
            m = self._members.get(name)
            if m is None:
                m = _Member(name, {t: TargetStats(t) for t in targets})
                self._begin(m, links.get(name, False), now)
            else:
                self._set_targets(m, targets, now)
            kept[name] = m
        self._members = kept
        self._watch_fast(now)
        out: list[Output] = []
        for m in kept.values():
            out.extend(self._evaluate(m, now, Cause.RELOAD))
        return self._settle(out, now)

    def retarget(self, members: Sequence[tuple[str, Iterable[str]]], now: float
                 ) -> list[Output]:
        """The members' targets changed (the routes' gateways did): targets that stay keep
        their state and statistics, a member that starts probing is innocent until its
        probes say otherwise, one that stops is judged by its link alone (cause ``probe``).
        A target dropped as slow stays out while it is listed."""
        self._now = now
        out: list[Output] = []
        for name, targets in members:
            m = self._members[name]
            self._set_targets(m, targets, now)
            out.extend(self._evaluate(m, now, Cause.PROBE))
        self._watch_fast(now)
        return self._settle(out, now)

    def _set_targets(self, m: _Member, targets: Iterable[str], now: float) -> None:
        listed = list(dict.fromkeys(targets))
        m.dropped &= set(listed)  # a target set without it forgives it
        old = m.targets
        m.targets = {t: old.get(t) or TargetStats(t) for t in listed if t not in m.dropped}
        if set(m.targets) - set(old):
            self._quiet(m, now)  # new targets: they may not know us yet
        if not m.probing:
            m.probe, m.fail_reason = DISABLED, ""
        elif m.probe == DISABLED:
            m.probe = UNKNOWN if m.link_up else FAILED
            m.next_send = now

    def link(self, member: str, up: bool, now: float) -> list[Output]:
        """The member's link went up or down."""
        self._now = now
        m = self._members[member]
        if m.link_up == up:
            return []
        m.link_up = up
        m.link_since = now
        if up:
            m.link_ups.append(now)
            while m.link_ups[0] + FLAP_WINDOW <= now:  # only the window's link-ups matter
                m.link_ups.popleft()
            m.next_send = now  # probe at once: repair starts counting now
            self._quiet(m, now)
        else:
            for t in m.targets.values():
                t.outstanding.clear()
                t.answered.clear()
                t.recent.clear()
                t.ok_run = 0
            if m.probing:
                m.probe = FAILED
        return self._settle(self._evaluate(m, now, Cause.LINK), now)

    def reply(self, member: str, target: str, seq: int, now: float) -> list[Output]:
        """A valid reply to probe ``seq`` arrived (the caller has matched it). If it counts (in
        time, for an outstanding probe) the outputs start with a :class:`ProbeAnswered`. A
        late one (after the probe's timeout, within LATE_WINDOW of its sending) leaves the
        probe lost but feeds the RTT estimate, which may drop the target or raise the FDT."""
        self._now = now
        m = self._members.get(member)
        t = m.targets.get(target) if m else None
        if m is None or t is None:
            return []
        sent = t.recent.pop(seq, None)
        if sent is None or now - sent > LATE_WINDOW:
            return []  # never sent, a duplicate, voided by a link-down, or far too late
        t.sample(now - sent)
        entry = t.outstanding.get(seq)
        out: list[Output] = []
        if entry is not None and now < entry[1]:
            t.rtt_ms = round((now - sent) * 1000.0, 3)
            t.answers += 1
            t.answered_at = now
            t.answered.add(seq)
            self._resolve(m, t, now)
            out.append(ProbeAnswered(member, target, t.rtt_ms))
        changes = self._adapt(m, t, now)
        if not out and not changes:
            return []  # a late reply that changed nothing but the estimate
        changes.extend(self._evaluate(m, now, Cause.PROBE))
        return out + self._settle(changes, now)

    def set_offline(self, member: str, offline: bool, now: float) -> list[Output]:
        """The administrator took the member out of service (or put it back)."""
        self._now = now
        m = self._members[member]
        if m.offline == offline:
            return []
        m.offline = offline
        return self._settle([], now) if offline else []

    def tick(self, now: float) -> list[Output]:
        """Count probes whose time ran out, send the rounds that are due, lower a raised FDT
        whose hold has passed, re-evaluate."""
        self._now = now
        out: list[Output] = []
        lowered = self.fdt.lower(now)
        if lowered is not None:
            out.append(lowered)
        for m in self._members.values():
            for t in m.targets.values():
                self._resolve(m, t, now)
            if m.probing and m.link_up and now >= m.next_send:
                for t in m.targets.values():
                    self._seq = (self._seq + 1) & 0xFFFF
                    t.outstanding[self._seq] = (now, now + t.timeout(self.interval))
                    t.recent.pop(self._seq, None)
                    t.recent[self._seq] = now
                    while next(iter(t.recent.values())) + LATE_WINDOW < now:
                        del t.recent[next(iter(t.recent))]  # too old to be worth anything
                    t.sent += 1
                    out.append(SendProbe(m.name, t.target, self._seq,
                                         resolve=t.lost_run >= RESOLVE_AFTER))
                m.next_send = now + self.interval * self.rng.uniform(0.5, 1.0)
        changes: list[Output] = []
        for m in self._members.values():
            changes.extend(self._evaluate(m, now, Cause.PROBE))
        return out + self._settle(changes, now)

    # -- queries -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`tick` must run next (None: nothing pending)."""
        times: list[float] = []
        lower = self.fdt.lower_at()
        if lower is not None:
            times.append(lower)
        for m in self._members.values():
            if m.probing and m.link_up:
                times.append(m.next_send)
            for t in m.targets.values():
                times.extend(deadline for _, deadline in t.outstanding.values())
            if m.link_up and not m.healthy:
                times.extend(self._hold_ends(m, self._now))
        return min(times) if times else None

    def healthy(self, member: str) -> bool:
        """Whether the member can carry traffic (offline aside)."""
        return self._members[member].healthy

    def probe_state(self, member: str) -> str:
        """``disabled``, ``unknown``, ``ok`` or ``failed``."""
        return self._members[member].probe

    def flapping(self, member: str, now: float) -> bool:
        """Whether the member is held down for flapping."""
        return self._flapping(self._members[member], now)

    def reason(self, member: str, now: float) -> str | None:
        """Why an unhealthy member is not carrying traffic (None if it is healthy)."""
        m = self._members[member]
        if m.healthy:
            return None
        if not m.link_up:
            return "link down"
        if m.probe == FAILED:
            return m.fail_reason or "probes lost on every target"
        if self._flapping(m, now):
            return "flapping"
        return "link up, waiting to stay up"

    def targets(self, member: str) -> list[TargetStats]:
        """The member's per-target statistics (targets dropped as slow are not among them)."""
        return list(self._members[member].targets.values())

    # -- the rules ---------------------------------------------------------------------------
    def _resolve(self, m: _Member, t: TargetStats, now: float) -> None:
        """Count resolved probes into the runs, strictly in the order they were sent; an
        outcome set aside (:meth:`_counts`) is counted in ``lost`` but in no run."""
        while t.outstanding:
            seq, (_, deadline) = next(iter(t.outstanding.items()))
            if seq in t.answered:
                t.answered.discard(seq)
                if self._counts(m, t, True, now):
                    t.ok_run += 1
                    t.lost_run = 0
                    m.quiet_until = None  # answered: the quiet period is over
            elif deadline <= now:
                t.lost += 1
                if self._counts(m, t, False, now):
                    t.lost_run += 1
                    t.ok_run = 0
            else:
                return  # the oldest is still in flight: later outcomes wait for it
            del t.outstanding[seq]

    def _counts(self, m: _Member, t: TargetStats, answered: bool, now: float) -> bool:
        """Whether an outcome counts in the runs. A loss does not while M is quiet. On a
        transitive target ``member:P``: an answer counts only while P is healthy, a loss only
        while P is healthy and answered by some IP target of its own (lost_run below
        SUSPECT_LOSSES): a P losing its own targets cannot vouch for anyone."""
        if not answered and m.quiet_until is not None and now < m.quiet_until:
            return False
        if not t.transitive:
            return True
        p = self._members.get(t.target[len(MEMBER_PREFIX):])
        if p is None or p is m or not p.healthy:
            return False
        return answered or any(pt.lost_run < SUSPECT_LOSSES
                               for pt in p.targets.values() if not pt.transitive)

    def _adapt(self, m: _Member, t: TargetStats, now: float) -> list[Output]:
        """A new RTT sample on ``t``: if it is slow (crtt above the interval in use), drop it
        (an IP target among DROP_MIN_TARGETS or more of M's, every other one sampled and
        fitting) or raise the group's FDT to fit it, forgiving the losses the slow targets'
        lateness caused."""
        out: list[Output] = []
        c = t.crtt
        if c is not None and c > self.interval:
            ips = [x for x in m.targets.values() if not x.transitive]
            # every other IP target known to fit (a target with no sample yet may be as slow)
            fast = [x for x in ips if x is not t and (c2 := x.crtt) is not None
                    and c2 <= self.interval]
            if not t.transitive and len(ips) >= DROP_MIN_TARGETS and len(fast) == len(ips) - 1:
                del m.targets[t.target]
                m.dropped.add(t.target)
                out.append(TargetDropped(m.name, t.target, (
                    f"round-trip time {c * 1000.0:.1f} ms does not fit the probe interval "
                    f"{self.interval * 1000.0:.1f} ms; {len(ips) - 1} other targets remain")))
            else:
                before = self.interval
                changed = self.fdt.raise_for(c)
                if changed is not None:
                    out.append(changed)
                    for o in self._members.values():
                        for x in o.targets.values():
                            if (x.crtt or 0.0) > before:
                                x.lost_run = 0
        self._watch_fast(now)
        return out

    def _watch_fast(self, now: float) -> None:
        """While the FDT is raised: whether every target fits the configured interval now."""
        limit = self.fdt.configured_interval
        self.fdt.observe(all((t.crtt or 0.0) <= limit for m in self._members.values()
                             for t in m.targets.values()), now)

    def _flapping(self, m: _Member, now: float) -> bool:
        while m.link_ups and m.link_ups[0] + FLAP_WINDOW <= now:
            m.link_ups.popleft()
        return len(m.link_ups) > FLAP_LIMIT

    def _hold_ends(self, m: _Member, now: float) -> list[float]:
        """When the holds on a repair end, for those still in the future."""
        ends = []
        if not m.probing and now < m.link_since + NUM_PROBE_REPAIRS * self.interval:
            ends.append(m.link_since + NUM_PROBE_REPAIRS * self.interval)
        if self._flapping(m, now):
            ends.append(m.link_ups[-FLAP_LIMIT - 1] + FLAP_WINDOW)
        return ends

    def _settle(self, out: list[Output], now: float) -> list[Output]:
        """After a member was lost, let the others be rescued: with no member usable, a
        member that waits only for a hold or for its repair count is repaired at once."""
        if not any(isinstance(o, HealthChanged) and not o.healthy for o in out) and out:
            return out
        for m in self._members.values():
            if not m.healthy and m.link_up:
                out.extend(self._evaluate(m, now, Cause.PROBE))
        return out

    def _none_usable(self, but: _Member) -> bool:
        return not any(o.usable for o in self._members.values() if o is not but)

    def _evaluate(self, m: _Member, now: float, cause: Cause) -> list[Output]:
        out: list[Output] = []
        rescue = self._none_usable(m)  # no one else can carry traffic: repair at once
        reason = "link down" if not m.link_up else "probes lost on every target"
        if not m.probing or not m.link_up:
            cause = Cause.LINK
        if m.probing and m.link_up:
            if m.probe != FAILED:
                if all(t.lost_run >= NUM_PROBE_FAILS for t in m.targets.values()):
                    out.extend(self._probe_failure(m, now))
                    reason = m.fail_reason = GROUP_FAILURE if out else reason
                elif any(t.ok_run for t in m.targets.values()):
                    m.probe = OK
            else:
                need = 1 if rescue else NUM_PROBE_REPAIRS
                if any(t.ok_run >= need for t in m.targets.values()):
                    m.probe = OK
        healthy = m.link_up and m.probe != FAILED
        if healthy and not m.healthy and not rescue:
            # Repairs wait: a flapping link, or a link-only member not up for long enough.
            if self._flapping(m, now):
                healthy, reason = False, "flapping"
            elif not m.probing and now < m.link_since + NUM_PROBE_REPAIRS * self.interval:
                healthy, reason = False, "link up, waiting to stay up"
        if healthy != m.healthy:
            m.healthy = healthy
            out.append(HealthChanged(m.name, healthy, cause,
                                     "repaired" if healthy else reason))
        return out

    def _losing_with(self, o: _Member, m: _Member, now: float) -> bool:
        """Whether ``o`` is losing the targets as ``m`` is (so the targets died, not ``m``):
        a member probing IP targets is losing every one of them; a member probing only other
        members could only reach probers that are ``m`` or losing theirs, and still reaches
        them (answered within the last ``SUSPECT_LOSSES`` intervals): "a prober that fails
        takes with it the members that could only reach it". One that no longer reaches
        ``m`` tells the opposite: ``m`` is cut off, not the targets."""
        ip = [t for t in o.targets.values() if not t.transitive]
        if ip:
            return all(t.lost_run >= SUSPECT_LOSSES for t in ip)
        for t in o.targets.values():
            p = self._members.get(t.target[len(MEMBER_PREFIX):])
            if p is None or (p is not m and not self._ip_losing(p)):
                return False
            if t.answered_at is None or now - t.answered_at > SUSPECT_LOSSES * self.interval:
                return False
        return True

    @staticmethod
    def _ip_losing(p: _Member) -> bool:
        ip = [t for t in p.targets.values() if not t.transitive]
        return bool(ip) and all(t.lost_run >= SUSPECT_LOSSES for t in ip)

    def _probe_failure(self, m: _Member, now: float) -> list[Output]:
        """M lost every target: fail it alone, or fail the group if everyone is losing.

        "Everyone" is every other usable member, each losing with M (:meth:`_losing_with`);
        a member judged by its link alone prevents a group failure, as before."""
        m.probe = FAILED
        others = [o for o in self._members.values() if o is not m and o.usable]
        if not m.usable or not others or not all(
                o.probing and self._losing_with(o, m, now) for o in others):
            return []  # M's own failure; _evaluate reports it
        out: list[Output] = []
        for o in others:
            o.probe = FAILED
            o.healthy = False
            for t in o.targets.values():
                if t.transitive:
                    t.ok_run = 0  # its vouchers fail with it: no rescue on their old word
            o.fail_reason = GROUP_FAILURE
            out.append(HealthChanged(o.name, False, Cause.PROBE, GROUP_FAILURE))
        return out


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _stats(kept: dict[str, Any]) -> dict[str, Any]:
    """A target's kept statistics, checked (KeyError, TypeError, ValueError if malformed);
    the RTT estimate may be missing (kept by code before it existed)."""
    return {**{key: int(kept[key]) for key in _KEPT_STATS if key not in _OPTIONAL_STATS},
            "rtt_ms": _opt_float(kept["rtt_ms"]), "srtt_ms": _opt_float(kept.get("srtt_ms")),
            "rttvar_ms": _opt_float(kept.get("rttvar_ms"))}
