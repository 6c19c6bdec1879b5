"""What the benchmark (``tools/bench``) is made of: metrics (the rows of its tables), samples,
the results of a run, and tests (what runs on a ready lab and fills one or more rows).

It measures nothing (tools/bench_measure.py and tools/bench_paced.py do) and reports nothing
(tools/bench.py does).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from vnicbond.lab import Bond, Lab

GROUP = "ipmp0"  # the bond's group, and so its TAP


@dataclass(frozen=True)
class Metric:
    """One row of a table."""

    key: str
    label: str
    tcp: bool
    outbound: bool
    unit: str = ""  # default: Gbit/s for TCP, kpps for UDP; values are in the base unit
    lower_is_better: bool = False  # round-trip times and CPU time, against rates

    def format(self, value: float | None) -> str:
        """A value in this metric's unit, for the table."""
        if value is None:
            return "n/a"
        unit = self.unit or ("Gbit/s" if self.tcp else "kpps")
        scale, decimals = _UNITS[unit]
        return f"{value / scale:.{decimals}f} {unit}"


# unit: (what one of it is in the base unit (bit/s, packets/s, seconds), decimals shown)
_UNITS: dict[str, tuple[float, int]] = {"Gbit/s": (1e9, 2), "Mbit/s": (1e6, 1),
                                        "kpps": (1e3, 1), "pps": (1.0, 1), "ms": (1e-3, 3),
                                        "µs": (1e-6, 2)}


@dataclass
class Sample:
    """One measurement: its value (None if the test failed) and a note for the log."""

    value: float | None
    note: str


@dataclass(frozen=True)
class Test:
    """What runs on a ready lab and the rows it fills: ``run(lab, bond, seconds)`` gives one
    sample per metric, in order. ``bond`` is the daemon when it runs (None on the kernel
    path)."""

    metrics: tuple[Metric, ...]
    run: Callable[[Lab, Bond | None, int], list[Sample]]


def single(metric: Metric, run: Callable[[Lab, Metric, int], Sample]) -> Test:
    """A test that fills one row: ``run(lab, metric, seconds)``."""
    return Test((metric,), lambda lab, bond, seconds: [run(lab, metric, seconds)])


@dataclass
class Results:
    """Every sample for each mode and metric, the daemon's counters per daemon run, and notes."""

    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    drops: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, mode: str, metric: Metric, sample: Sample) -> None:
        """Record a sample (errors are kept apart, with their mode and metric)."""
        if sample.value is None:
            self.errors.append(f"{mode} {metric.key}: {sample.note}")
            return
        self.samples.setdefault((mode, metric.key), []).append(sample.value)

    def median(self, mode: str, metric: Metric) -> float | None:
        """Median of a metric's samples in a mode, or None if there are none."""
        values = self.samples.get((mode, metric.key))
        return statistics.median(values) if values else None
