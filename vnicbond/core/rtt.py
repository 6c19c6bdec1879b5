"""Probe timing that adapts to the targets, pure: round-trip estimates and the FDT in use.

Owns the arithmetic of the failure detector's timing (:mod:`vnicbond.core.detector` composes
it and decides when it applies):

* a Jacobson/Karels estimate per target (:func:`estimate`): the first sample r gives
  srtt = r, rttvar = r / 2; each later one rttvar = 3/4 rttvar + 1/4 |srtt - r|, then
  srtt = 7/8 srtt + 1/8 r. Its **crtt** (srtt + 4 rttvar) is how long a reply may take;
* a probe's timeout, fixed when it is sent (:func:`timeout`);
* the group's failure detection time in use (:class:`Fdt`): raised to fit a slow target
  (:func:`fdt_to_fit`), back to the configured value once every target has fitted the
  configured interval for ``FDT_HOLD``.

Times are seconds here; the detector reports milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A probe's timeout is never shorter than this, whatever the estimate says. A target on a
#: quiet LAN answers in well under a millisecond, so srtt + 4 rttvar alone would time probes
#: out after a millisecond or two; a loaded host (the issue's test: a 2-core box running 20 s
#: of bidirectional saturating iperf3 with FDT 300 ms) delays a reply by several ms in its
#: queues and its event loop, and must not see that as a loss. 20 ms is below the interval of
#: any sensible FDT (300 ms gives 42.9 ms) and far above such scheduling delays.
TIMEOUT_FLOOR = 0.020
#: A reply this long after its probe is worth nothing, not even as an RTT sample: the probe
#: stays lost, and the sample would describe a path that no longer exists. 10 s is far below
#: the wrap of the 16-bit sequence numbers (at FDT 300 ms with 20 targets about 100 s) and
#: far above any RTT worth adapting to (it would mean an FDT of about 90 s).
LATE_WINDOW = 10.0
#: Every target must have fitted the configured interval this long before a raised FDT is
#: lowered back (the issue's 60 s).
FDT_HOLD = 60.0
#: A raised FDT gives the slowest target's crtt this much room in the interval (7 intervals
#: per FDT), so that the next jitter does not raise it again at once ...
FDT_MARGIN = 1.25
#: ... rounded up to this many milliseconds, for a readable number in logs and status.
FDT_STEP_MS = 10


@dataclass(frozen=True, slots=True)
class FdtChanged:
    """The failure detection time in use changed from ``old_ms`` to ``new_ms``, and why."""

    old_ms: int
    new_ms: int
    reason: str


def estimate(srtt: float | None, rttvar: float | None, sample: float
             ) -> tuple[float, float]:
    """The estimate (srtt, rttvar) after one more RTT ``sample`` (Jacobson/Karels)."""
    if srtt is None or rttvar is None:
        return sample, sample / 2.0
    rttvar = 0.75 * rttvar + 0.25 * abs(srtt - sample)
    return 0.875 * srtt + 0.125 * sample, rttvar


def crtt(srtt: float | None, rttvar: float | None) -> float | None:
    """How long a reply may take: srtt + 4 rttvar (None while there is no sample)."""
    if srtt is None or rttvar is None:
        return None
    return srtt + 4.0 * rttvar


def timeout(srtt: float | None, rttvar: float | None, interval: float) -> float:
    """A probe's timeout when sent now: min(interval, max(crtt, TIMEOUT_FLOOR)), the
    interval while the target has no sample."""
    c = crtt(srtt, rttvar)
    return interval if c is None else min(interval, max(c, TIMEOUT_FLOOR))


def fdt_to_fit(c: float) -> int:
    """The FDT (ms) whose interval gives a target with crtt ``c`` (s) its margin:
    7 * crtt * FDT_MARGIN, rounded up to FDT_STEP_MS."""
    ms = 7 * c * 1000.0 * FDT_MARGIN
    return math.ceil(round(ms, 6) / FDT_STEP_MS) * FDT_STEP_MS


class Fdt:
    """The group's failure detection time: the configured one, the one in use, and since
    when every target has fitted the configured interval (while raised)."""

    def __init__(self, configured_ms: int) -> None:
        self.configured_ms = configured_ms
        self.in_use_ms = configured_ms
        #: While raised: since when every target has fitted the configured interval.
        self.fast_since: float | None = None

    @property
    def raised(self) -> bool:
        return self.in_use_ms > self.configured_ms

    @property
    def interval(self) -> float:
        """The probe interval in use (s)."""
        return self.in_use_ms / 7000.0

    @property
    def configured_interval(self) -> float:
        return self.configured_ms / 7000.0

    def reconfigure(self, configured_ms: int) -> None:
        """A new configured FDT, in use from now on unless the targets had raised the old one
        above it: that raise stays (and is lowered to the new value later)."""
        was_raised = self.raised
        self.configured_ms = configured_ms
        if not was_raised or self.in_use_ms <= configured_ms:
            self.in_use_ms, self.fast_since = configured_ms, None

    def raise_for(self, c: float) -> FdtChanged | None:
        """A target's crtt ``c`` does not fit the interval in use: raise the FDT to fit it."""
        new = max(self.in_use_ms, fdt_to_fit(c))
        if new == self.in_use_ms:
            return None
        old, self.in_use_ms, self.fast_since = self.in_use_ms, new, None
        return FdtChanged(old, new, f"cannot meet failure detection time "
                                    f"{self.configured_ms} ms, using {new} ms")

    def observe(self, all_fit: bool, now: float) -> None:
        """Whether every target fits the configured interval now (after a sample or a change
        of targets): the hold starts, goes on, or starts over."""
        if not self.raised or not all_fit:
            self.fast_since = None
        elif self.fast_since is None:
            self.fast_since = now

    def lower_at(self) -> float | None:
        """When the raised FDT goes back to the configured one, if nothing is slow again."""
        return None if self.fast_since is None or not self.raised else self.fast_since + FDT_HOLD

    def lower(self, now: float) -> FdtChanged | None:
        """Back to the configured FDT if the hold has passed."""
        at = self.lower_at()
        if at is None or now < at:
            return None
        old, self.in_use_ms, self.fast_since = self.in_use_ms, self.configured_ms, None
        return FdtChanged(old, self.configured_ms,
                          f"targets fast again for {FDT_HOLD:.0f} s: failure detection time "
                          f"back to {self.configured_ms} ms")
