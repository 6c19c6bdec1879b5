"""A small fake world around one :class:`vnicbond.core.detector.Detector`, for scripted timelines.

A fake clock (plain floats), a seeded rng, and a scripted network: ``delay(member, target,
sent_at)`` gives the RTT of each probe's reply, or None for no reply. The world calls
``tick`` at every ``next_deadline()`` and ``reply`` when a reply is due (replies first at
equal times), and records every output with its time. No rule of the detector is repeated
here: the tests state the expected thresholds themselves.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Sequence

from vnicbond.core.detector import (
    Detector,
    FdtChanged,
    HealthChanged,
    Output,
    ProbeAnswered,
    SendProbe,
    TargetDropped,
)

Delay = Callable[[str, str, float], float | None]


class World:
    """The detector, its clock and its network."""

    def __init__(self, members: Sequence[tuple[str, Iterable[str]]], fdt_ms: int, *,
                 delay: Delay, seed: int = 0, links: dict[str, bool] | None = None) -> None:
        self.det = Detector([(m, list(ts)) for m, ts in members], fdt_ms,
                            rng=random.Random(seed))
        self.delay = delay
        self.now = 0.0
        self.outputs: list[tuple[float, Output]] = []
        self.sent: list[tuple[float, SendProbe]] = []
        self.ticks: list[float] = []
        self.replied: list[tuple[float, str, str, float]] = []  # (when, member, target, rtt)
        self._replies: list[tuple[float, int, str, str, int, float]] = []
        self._order = itertools.count()
        self.health = self.det.start(links or {m: True for m, _ in members}, 0.0)

    def _take(self, outs: list[Output]) -> list[Output]:
        for o in outs:
            self.outputs.append((self.now, o))
            if isinstance(o, SendProbe):
                self.sent.append((self.now, o))
                d = self.delay(o.member, o.target, self.now)
                if d is not None:
                    heapq.heappush(self._replies, (self.now + d, next(self._order), o.member,
                                                   o.target, o.seq, self.now))
            elif isinstance(o, HealthChanged):
                self.health[o.member] = o.healthy
        return outs

    def run_until(self, t: float) -> None:
        """Every tick and reply at or before ``t``; then the clock stays at ``t``."""
        while True:
            deadline = self.det.next_deadline()
            reply = self._replies[0][0] if self._replies else None
            if reply is not None and reply <= t and (deadline is None or reply <= deadline):
                when, _, member, target, seq, sent = heapq.heappop(self._replies)
                self.now = when
                self.replied.append((when, member, target, when - sent))
                self._take(self.det.reply(member, target, seq, when))
            elif deadline is not None and deadline <= t:
                assert deadline >= self.now, (deadline, self.now)
                self.now = deadline
                self.ticks.append(deadline)
                self._take(self.det.tick(deadline))
            else:
                break
        self.now = max(self.now, t)

    def link(self, member: str, up: bool, at: float) -> list[Output]:
        self.run_until(at)
        return self._take(self.det.link(member, up, at))

    def retarget(self, members: Sequence[tuple[str, Iterable[str]]], at: float
                 ) -> list[Output]:
        self.run_until(at)
        return self._take(self.det.retarget(members, at))

    # -- queries -------------------------------------------------------------------------------
    def changes(self, member: str | None = None) -> list[tuple[float, HealthChanged]]:
        return [(t, o) for t, o in self.outputs if isinstance(o, HealthChanged)
                and (member is None or o.member == member)]

    def fdt_changes(self) -> list[tuple[float, FdtChanged]]:
        return [(t, o) for t, o in self.outputs if isinstance(o, FdtChanged)]

    def dropped(self) -> list[tuple[float, TargetDropped]]:
        return [(t, o) for t, o in self.outputs if isinstance(o, TargetDropped)]

    def answered(self, member: str) -> list[tuple[float, ProbeAnswered]]:
        return [(t, o) for t, o in self.outputs
                if isinstance(o, ProbeAnswered) and o.member == member]

    def probes(self, member: str, target: str | None = None) -> list[tuple[float, SendProbe]]:
        return [(t, p) for t, p in self.sent
                if p.member == member and (target is None or p.target == target)]

    def stats(self, member: str, target: str):
        return next(s for s in self.det.targets(member) if s.target == target)
