"""tools/bench's figures that need no lab: percentiles, CPU per packet from two readings, the
active-backup tables' targets and verdicts (alone and against a daemon run as before), and the
stacking table."""

from __future__ import annotations

import pytest

from tools.bench_measure import METRICS, STACK_METRICS
from tools.bench_model import Results, Sample
from tools.bench_paced import Reading, cpu_sample, percentile
from tools.bench_report import ab_rows, ab_tables, format_ratio, stack_rows, versus

BY_KEY = {m.key: m for m in METRICS}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 501)]
    assert percentile(values, 0.99) == 495.0
    assert percentile(values[::-1], 0.5) == 250.0
    assert percentile([7.0], 0.99) == 7.0


def test_ratios_round_against_the_metric() -> None:
    assert format_ratio(0.899) == "0.89"  # higher is better: down
    assert versus(BY_KEY["cpu-out"], 4e-6, 4.02e-6) == "1.01"  # lower is better: up
    assert versus(BY_KEY["rtt-avg"], 0.05e-3, 0.16e-3) == "+0.110 ms"  # times: the difference
    assert versus(BY_KEY["tcp-out"], None, 1e9) == "n/a"


def test_cpu_per_packet_from_two_readings() -> None:
    start = Reading(10.0, 1.0, 1000, 900, daemon_time=10.0, daemon_cpu=2.0, forwarded=0,
                    returned=5, kernel_time=9.9, kernel=100)
    end = Reading(12.0, 1.8, 101_000, 100_900, daemon_time=12.0, daemon_cpu=2.5,
                  forwarded=100_000, returned=7, kernel_time=12.1, kernel=110_100)
    bond = cpu_sample(start, end, daemon=True)
    assert bond.value == pytest.approx(5e-6)
    assert "50.0 kpps" in bond.note and "2 the other way" in bond.note
    assert "sender iperf3 8.00 µs/packet" in bond.note and "NOT" not in bond.note
    kernel = cpu_sample(start, end, daemon=False)
    assert kernel.value == pytest.approx(8e-6)
    slow = Reading(12.0, 1.8, 81_000, 80_900)
    assert "NOT at the 50 kpps asked" in cpu_sample(start, slow, daemon=False).note


def _results(**medians: tuple[float, float, float]) -> Results:
    """kernel, bond and before samples per metric key; the rest from a day that meets every
    target of its own."""
    base = {"tcp-out": (10e9, 9.5e9, 9e9), "tcp-in": (10e9, 9.5e9, 9e9),
            "udp64-out": (100e3, 70e3, 50e3), "udp64-in": (100e3, 95e3, 50e3),
            "rtt-avg": (0.05e-3, 0.15e-3, 0.16e-3), "rtt-p99": (0.1e-3, 0.3e-3, 0.3e-3),
            "cpu-out": (8e-6, 4.5e-6, 5e-6), "cpu-in": (8e-6, 4.5e-6, 5e-6)}
    base.update(medians)
    results = Results()
    for key, values in base.items():
        for mode, value in zip(("kernel", "bond", "before"), values, strict=True):
            results.add(mode, BY_KEY[key], Sample(value, ""))
    return results


def _verdicts(rows: list[list[str]]) -> dict[str, tuple[str, str]]:
    return {m.key: (row[4], row[5]) for m, row in zip(METRICS, rows, strict=True)}


def test_targets_alone() -> None:
    verdicts = _verdicts(ab_rows(_results(**{"udp64-out": (100e3, 59e3, 50e3),
                                             "cpu-in": (8e-6, 5.1e-6, 5e-6)})))
    assert verdicts["tcp-out"] == (">= 0.90", "ok")
    assert verdicts["udp64-out"] == (">= 0.60", "MISSED")
    assert verdicts["rtt-avg"] == ("<= +0.110 ms", "ok")
    assert verdicts["rtt-p99"] == ("-", "-")
    assert verdicts["cpu-out"] == ("<= 5.00 µs", "ok")
    assert verdicts["cpu-in"] == ("<= 5.00 µs", "MISSED")


def test_targets_against_before() -> None:
    results = _results(**{"rtt-p99": (0.1e-3, 0.31e-3, 0.3e-3)})
    after, before, both = ab_tables(results, "after daemon", "before daemon")
    assert [t.title for t in (after, before, both)] == [
        "after: after daemon against the kernel path",
        "before: before daemon against the kernel path", "after against before"]
    verdicts = _verdicts(after.rows)
    assert verdicts["rtt-avg"] == ("<= +0.110 ms (before)", "ok")
    assert verdicts["rtt-p99"] == ("<= +0.200 ms (before)", "MISSED")
    assert verdicts["cpu-out"] == ("<= 5.00 µs (before)", "ok")
    assert verdicts["tcp-out"] == (">= 0.90", "ok")
    own = _verdicts(before.rows)  # the daemon before is the reference for its own rows
    assert own["cpu-out"] == ("-", "-") and own["tcp-out"] == (">= 0.90", "ok")
    assert both.rows[METRICS.index(BY_KEY["cpu-out"])][3:] == ["0.90", "lower"]


def test_stacking_rows_are_bond_against_kernel() -> None:
    results = Results()
    for metric, kernel, bond in zip(STACK_METRICS, (18e9, 18e9), (13.1e9, None), strict=True):
        results.add("kernel", metric, Sample(kernel, ""))
        results.add("bond", metric, Sample(bond, "iperf3 failed"))
    assert stack_rows(results) == [
        ["TCP out (VM -> peer)", "18.00 Gbit/s", "13.10 Gbit/s", "0.72"],
        ["TCP in (peer -> VM)", "18.00 Gbit/s", "n/a", "n/a"]]
    assert results.errors == ["bond tcp-in: iperf3 failed"]
