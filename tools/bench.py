"""Benchmark the bond on the namespace lab: active-backup against the kernel path, and load-spread.

Two sections, chosen with ``--section`` (``active-backup``, the default; ``load-spread``;
``all`` runs both, one after the other, each recorded as it ends).

**active-backup** measures four things, each through the bond and through the kernel path:

* ``tcp-out``: TCP throughput from the host namespace to the peer (iperf3 client in the host);
* ``tcp-in``: TCP throughput from the peer to the host (iperf3 client in the peer);
* ``udp64-out`` / ``udp64-in``: 64-byte UDP datagrams per second *received*, same directions
  (``iperf3 -u -l 64 -b 0``: the sender goes as fast as it can, the receiver counts).

The kernel path is the lab with the data address 198.18.0.10/24 put straight on member m0 (no
daemon); the bond is the same lab topology with ``vnicbond run`` owning m0 and m1 through
the TAP ``ipmp0``. Every measurement is repeated (kernel, bond, kernel, bond, ... in a fresh
lab each time, so drift hits both alike) and the median is reported with the ratio
bond/kernel and the target (0.8).

**load-spread** rate-limits every member's wire to the same rate R (``--rate``, default
200 Mbit/s; a ``tbf`` qdisc on m0, m1 for what the host sends and on the switch ports s0, s1
for what it receives) and measures TCP throughput with the daemon in ``mode: load-spread``:

* ``one member``: m0 alone, with the data address 198.18.0.10/24;
* ``two members``: m0 and m1, with 198.18.0.10/24 and 198.18.0.11/24 (one hosted by each);
* ``tcp-out``: ``iperf3 -c 198.18.0.2 -P 8`` from the host (the flows spread over members);
* ``tcp-in``: from the peer, one client with ``-P 4`` per data address (servers in the host
  bound to each address, ports 5201, 5202), run at the same time and summed; with one member,
  one client with ``-P 8``.

It reports the medians, the ratio two/one (ideal 2.0) and each as a multiple of R; the target
is two members >= 1.8 R. Runs alternate one member, two members, ... each in a fresh lab.

A missed target prints ``MISSED``; the exit status is still 0, since this is a benchmark, not
a test. Unless ``--no-record`` is given, the table, the date, the machine and the command line
replace the section of docs/benchmarks.md between its markers.

Needs root, ``ip``, ``nft``, ``tc``, ``iperf3``, ``ping`` and ``ss``. Run it as ``tools/bench``
(or ``make bench``; from the repository, ``.venv/bin/python -m tools.bench``). This module is
its command line, sections and report; tools/bench_measure.py measures; the lab, the daemon,
iperf3 and the results' tables come from :mod:`vnicbond.lab`.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools import DOC, ROOT, interrupt_on_signals
from tools.bench_measure import (
    METRICS,
    MODES,
    SPREAD_METRICS,
    SPREAD_MODES,
    Metric,
    Results,
    run_bond,
    run_kernel,
    run_spread,
)
from vnicbond.lab.results import command_line, machine, markdown_table, record, text_table

TARGET = 0.8  # active-backup: bond / kernel
SPREAD_TARGET = 1.8  # load-spread: two members, as a multiple of R
SPREAD_IDEAL = 2.0  # load-spread: two / one
DEFAULT_RATE = 200  # load-spread: Mbit/s per member and direction


# -- reporting --------------------------------------------------------------------------------
def table_rows(results: Results, args: argparse.Namespace) -> list[list[str]]:
    """metric | kernel | bond | ratio | target | result, one row per metric."""
    rows = []
    for metric in METRICS:
        kernel, bond = results.median("kernel", metric), results.median("bond", metric)
        ratio = bond / kernel if kernel and bond is not None else None
        verdict = "n/a" if ratio is None else ("ok" if ratio >= TARGET else "MISSED")
        rows.append([metric.label, metric.format(kernel), metric.format(bond),
                     format_ratio(ratio), f">= {TARGET:.2f}", verdict])
    return rows


def spread_rows(results: Results, args: argparse.Namespace) -> list[list[str]]:
    """metric | one member | two members | two / one | ideal | target | result; throughputs
    also as multiples of R, which the target is about."""
    rate = args.rate * 1e6
    rows = []
    for metric in SPREAD_METRICS:
        one, two = (results.median(mode, metric) for mode in SPREAD_MODES)
        ratio = two / one if one and two is not None else None
        verdict = "n/a" if two is None else ("ok" if two / rate >= SPREAD_TARGET else "MISSED")
        rows.append([metric.label, _with_rate(metric, one, rate), _with_rate(metric, two, rate),
                     format_ratio(ratio), f"{SPREAD_IDEAL:.2f}", f">= {SPREAD_TARGET:.2f} R",
                     verdict])
    return rows


def _with_rate(metric: Metric, value: float | None, rate: float) -> str:
    """``value`` in the metric's unit and as a multiple of the rate R."""
    if value is None:
        return "n/a"
    return f"{metric.format(value)} ({format_ratio(value / rate)} R)"


def format_ratio(ratio: float | None) -> str:
    """Two decimals, rounded down, so a ratio shown as 0.80 has really reached 0.80."""
    return "n/a" if ratio is None else f"{math.floor(ratio * 100) / 100:.2f}"


HEADERS = ["metric", "kernel", "bond", "ratio", "target", "result"]
SPREAD_HEADERS = ["metric", "one member", "two members", "two / one", "ideal", "target",
                  "result"]


def samples_text(results: Results, metrics: Sequence[Metric] = METRICS,
                 modes: Sequence[str] = MODES) -> list[str]:
    """Every sample, per metric and mode, for judging the noise."""
    lines = []
    for metric in metrics:
        parts = []
        for mode in modes:
            values = results.samples.get((mode, metric.key), [])
            parts.append(f"{mode} " + (", ".join(metric.format(v) for v in values) or "none"))
        lines.append(f"{metric.key}: " + "; ".join(parts))
    return lines


def drops_text(results: Results) -> list[str]:
    """The daemon's drop counters after each run with the daemon."""
    return [f"{tag}: " + ", ".join(f"{k}={v}" for k, v in drops.items())
            for tag, drops in results.drops]


# -- the sections -----------------------------------------------------------------------------
Setup = Callable[[int, Results, str], None]


@dataclass(frozen=True)
class Section:
    """A section of docs/benchmarks.md and the runs that fill it."""

    name: str
    metrics: tuple[Metric, ...]
    modes: tuple[str, ...]
    headers: list[str]
    setups: Callable[[argparse.Namespace], list[Setup]]  # one per mode, in the same order
    rows: Callable[[Results, argparse.Namespace], list[list[str]]]
    about: Callable[[argparse.Namespace], list[str]]  # lines under the command line
    notes_heading: str


def _spread_setups(args: argparse.Namespace) -> list[Setup]:
    return [functools.partial(run_spread, members, args.rate) for members in (1, 2)]


def _spread_about(args: argparse.Namespace) -> list[str]:
    return [f"- R = {args.rate} Mbit/s per member and direction: `tc qdisc add dev X root tbf "
            f"rate {args.rate}mbit burst 64kb latency 50ms` on m0, m1 (host) and s0, s1 "
            "(switch)"]


SECTIONS: dict[str, Section] = {
    "active-backup": Section(
        "active-backup", METRICS, MODES, HEADERS,
        setups=lambda args: [run_kernel, run_bond], rows=table_rows, about=lambda args: [],
        notes_heading="Each test (iperf3 retransmits, UDP loss, and kernel drop counters "
                      "that moved):"),
    "load-spread": Section(
        "load-spread", SPREAD_METRICS, SPREAD_MODES, SPREAD_HEADERS,
        setups=_spread_setups, rows=spread_rows, about=_spread_about,
        notes_heading="Each run's address placement, then each test (per client: throughput "
                      "and iperf3 retransmits; bytes each member carried; kernel drop "
                      "counters that moved):"),
}


def section_text(section: Section, results: Results, rows: list[list[str]],
                 args: argparse.Namespace) -> str:
    """The body of ``section`` in docs/benchmarks.md."""
    info = machine()
    lines = [
        f"- date: {info['date']}",
        f"- kernel: `{info['kernel']}`; CPU: {info['cpu']}; cores: {info['cores']}",
        f"- command: `{command_line(ROOT)}` ({args.seconds} s per test, median of {args.repeat})",
        *section.about(args),
        "",
        markdown_table(section.headers, rows),
        "",
        "Samples:",
        "",
        *(f"- {line}" for line in samples_text(results, section.metrics, section.modes)),
        "",
        section.notes_heading,
        "",
        *(f"- {line}" for line in results.notes),
        "",
        "Daemon drop counters after each bond run:",
        "",
        *(f"- {line}" for line in drops_text(results) or ["none collected"]),
    ]
    if results.errors:
        lines += ["", "Errors:", "", *(f"- {e}" for e in results.errors)]
    return "\n".join(lines)


DOC_HEADER = """\
# Benchmarks

`tools/bench` measures the bond on the namespace lab (`vnicbond/lab/`): a host namespace
with members m0 and m1, a bridge, and a peer at 198.18.0.2. Run it as root from the
repository (it needs `ip`, `nft`, `tc`, `iperf3`, `ping`, `ss`):

    tools/bench                      # 5 s per test, median of 3, records here
    tools/bench --quick --no-record  # 2 s per test, once, print only
    tools/bench --seconds 10 --repeat 5
    tools/bench --section load-spread             # the load-spread section
    tools/bench --section load-spread --rate 100  # with R = 100 Mbit/s
    tools/bench --section all                     # both, one after the other

The *active-backup* section (the default, `--section active-backup`) compares the bond with
the kernel's own path. The *kernel* column has 198.18.0.10/24 put straight on m0 (no daemon);
the *bond* column runs `vnicbond run` with that address on the TAP `ipmp0` and m0, m1 as
members (m0 active). Runs alternate kernel, bond, kernel, bond, ... each in a fresh lab, and
every figure is the median. A full default run takes about two minutes; Ctrl-C stops it and
removes the lab.

| row | what it is |
|---|---|
| TCP out | iperf3 TCP from the host to the peer: throughput the peer received |
| TCP in | iperf3 TCP from the peer to the host: throughput the host received |
| 64 B UDP out | `iperf3 -u -l 64 -b 0` from the host: datagrams per second the peer received |
| 64 B UDP in | the same from the peer: datagrams per second the host received |

Ratio is bond / kernel, rounded down; the target is at least 0.80 in every row (`MISSED`
otherwise; the tool still exits 0). Below each table: every sample, then each test's notes:
iperf3's TCP retransmits, the UDP send rate and loss, and the kernel drop counters that moved
during the test (`ipmp0 tx_dropped`: frames dropped because the TAP's queue was full, i.e. the
daemon did not read them in time; `host`/`peer udp rcvbuf`: datagrams dropped because the
receiving iperf3 did not empty its socket in time). Last come the daemon's own counters from
`vnicbond status --json` (per member `tx_dropped`/`rx_dropped`, the group's `tap_dropped`).

The *load-spread* section (`--section load-spread`) runs the daemon with `mode: load-spread`
and every member's wire limited to the same rate R (`--rate`, default 200 Mbit/s): a `tbf`
qdisc (`rate R burst 64kb latency 50ms`) on m0 and m1 for what the host sends, and on the
switch ports s0 and s1 for what it receives. The *one member* column has m0 alone with
198.18.0.10/24; *two members* has m0 and m1 with 198.18.0.10/24 and 198.18.0.11/24, one
hosted by each. TCP out's 8 flows spread over the members by their flow hash; for TCP in, the
host runs one iperf3 server bound to each data address (ports 5201, 5202) and the peer one
client per address, at the same time (with one member: one client with `-P 8`). Runs
alternate one member, two members, ... each in a fresh lab, and every figure is the median,
also shown as a multiple of R. A default run takes about two minutes.

| row | what it is |
|---|---|
| TCP out | `iperf3 -c 198.18.0.2 -P 8` from the host: throughput the peer received |
| TCP in | `iperf3 -P 4` from the peer to each data address at once, summed |

Two / one is the speed-up, rounded down (ideal 2.00); the target is two members at least
1.80 R in each row (`MISSED` otherwise). Below the table: every sample; where the daemon put
each data address; each test's notes (per client: throughput and retransmits; the bytes each
member carried, from its kernel counters, which shows how evenly the load spread; kernel drop
counters that moved); the daemon's drop counters after each run.

The tool rewrites only the text between its own section's markers
(`<!-- bench:SECTION:start -->` ... `<!-- bench:SECTION:end -->`), so each section
(active-backup and load-spread) keeps its latest result and everything else
here is left alone.
"""


def markers(section: str) -> tuple[str, str]:
    """The start and end markers of a section of docs/benchmarks.md."""
    return f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--section, --seconds, --repeat, --quick, --rate, --no-record."""
    parser = argparse.ArgumentParser(
        prog="tools/bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="active-backup",
                        help="what to measure (default active-backup; all: every section)")
    parser.add_argument("--seconds", type=int, default=5, metavar="T",
                        help="length of each iperf3 test (default 5)")
    parser.add_argument("--repeat", type=int, default=3, metavar="R",
                        help="runs of each set-up; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="same as --seconds 2 --repeat 1")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, metavar="MBIT",
                        help="load-spread: each member's rate limit R in Mbit/s, each way "
                             f"(default {DEFAULT_RATE})")
    parser.add_argument("--no-record", action="store_true",
                        help=f"print only; do not update {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 2, 1
    if args.seconds < 1 or args.repeat < 1:
        parser.error("--seconds and --repeat must be at least 1")
    if args.rate < 1:
        parser.error("--rate must be at least 1")
    return args


def check_tools() -> None:
    """Refuse to start without root or the commands the lab and the tests need."""
    if os.geteuid() != 0:
        raise SystemExit("tools/bench: needs root (network namespaces)")
    missing = [c for c in ("ip", "nft", "tc", "iperf3", "ping", "ss") if shutil.which(c) is None]
    if missing:
        raise SystemExit(f"tools/bench: missing: {', '.join(missing)}")


def run_section(section: Section, args: argparse.Namespace) -> None:
    """Run ``section``'s set-ups ``--repeat`` times (alternating), print the table and record
    it unless ``--no-record``."""
    results = Results()
    started = time.monotonic()
    setups = section.setups(args)
    for rep in range(1, args.repeat + 1):
        for mode, run in zip(section.modes, setups, strict=True):
            tag = f"{mode} {rep}/{args.repeat}"
            print(f"{tag}:", flush=True)
            run(args.seconds, results, tag)
    rows = section.rows(results, args)
    print(f"\n{section.name}, {args.seconds} s per test, median of {args.repeat} "
          f"({time.monotonic() - started:.0f} s):")
    for line in section.about(args):
        print(line.removeprefix("- ").replace("`", ""))
    print()
    print(text_table(section.headers, rows))
    print("\nsamples:\n  " + "\n  ".join(samples_text(results, section.metrics,
                                                      section.modes)))
    print("daemon drop counters:\n  " + "\n  ".join(drops_text(results) or ["none collected"]))
    if results.errors:
        print("errors:\n  " + "\n  ".join(results.errors))
    if not args.no_record:
        record(DOC, *markers(section.name), f"## {section.name}\n\n"
               + section_text(section, results, rows, args), new=DOC_HEADER)
        print(f"\nrecorded in {DOC.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 whether or not the targets are met, 1 if it could not run."""
    args = parse_args(argv)
    check_tools()
    interrupt_on_signals()
    names = list(SECTIONS) if args.section == "all" else [args.section]
    try:
        for i, name in enumerate(names):
            if i:
                print()
            run_section(SECTIONS[name], args)
    except KeyboardInterrupt:
        print("tools/bench: interrupted; the lab was cleaned up", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
        print(f"tools/bench: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
