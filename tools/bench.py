"""Benchmark the bond on the namespace lab: active-backup against the kernel path, load-spread,
a VM stacked on the bond, and the traffic's stop across an upgrade and a restart.

Five sections, chosen with ``--section`` (``active-backup``, the default; ``load-spread``;
``stacking``; ``upgrade``; ``probing``; ``all`` runs each, one after the other, each recorded
as it ends).

**active-backup** measures, each through the bond and through the kernel path:

* ``tcp-out``: TCP throughput from the host namespace to the peer (iperf3 client in the host);
* ``tcp-in``: TCP throughput from the peer to the host (iperf3 client in the peer);
* ``udp64-out`` / ``udp64-in``: 64-byte UDP datagrams per second *received*, same directions
  (``iperf3 -u -l 64 -b 0``: the sender goes as fast as it can, the receiver counts);
* ``rtt-avg`` / ``rtt-p99``: ping round-trip time from the peer to the data address, average
  and 99th percentile of 500 pings at 10 ms;
* ``cpu-out`` / ``cpu-in``: CPU time per packet of 64-byte UDP at 50 kpps: the daemon's per
  packet it forwarded on the bond, the sending iperf3's per packet sent on the kernel path
  (tools/bench_paced.py says exactly how).

The kernel path is the lab with the data address 198.18.0.10/24 put straight on member m0 (no
daemon); the bond is the same lab topology with ``vnicbond run`` owning m0 and m1 through
the TAP ``ipmp0``. Every measurement is repeated (kernel, bond, kernel, bond, ... in a fresh
lab each time, so drift hits both alike) and the median is reported against the kernel path
with issue 11's target for the row. ``--compare PATH`` also runs the daemon of another
checkout of vnicbond (e.g. /work/main: "before") in the same alternation (kernel, bond,
before, kernel, ...) and reports it the same way, then the two daemons against each other.

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

**stacking** measures TCP (one ``iperf3`` stream) between a VM and the peer, both ways: a VM
namespace on a bridge ``br-vm`` in the host namespace (:mod:`vnicbond.lab.stack`), the bridge
over member m0 itself (``kernel``: no daemon, the kernel's own path) or over the daemon's TAP
``ipmp0`` (``bond``: active-backup on m0 and m1, the group's data address a /32 nothing uses).
It reports the medians and bond / kernel; there is no target. Runs alternate kernel, bond, ...
each in a fresh lab.

**upgrade** measures the longest gap between replies to a 10 ms ping from the peer to the data
address while the daemon is upgraded in place (``vnicbond upgrade``: ``upgrade-gap``, target
under 100 ms), and while it is killed (``kill -9``) and started again (``restart-gap``, no
target), in a fresh lab each run (tools/bench_restart.py says exactly how).

**probing** measures failure detection without test addresses against the classic set-up
with one test address per member (tools/bench_probing.py says exactly how): the probes the
target answers a second, the time from a standby's silent cut to its ``failed`` event, and the
longest ping gap when the active member is silently cut.

A missed target prints ``MISSED``; the exit status is still 0, since this is a benchmark, not
a test. Unless ``--no-record`` is given, the tables, the date, the machine and the command line
replace the section of docs/benchmarks.md between its markers.

Needs root, ``ip``, ``nft``, ``tc``, ``iperf3``, ``ping`` and ``ss``. Run it as ``tools/bench``
(or ``make bench``; from the repository, ``.venv/bin/python -m tools.bench``). This module is
its command line and sections; tools/bench_measure.py and tools/bench_paced.py measure,
tools/bench_report.py makes the tables; the lab, the daemon, iperf3, ping and the results'
tables come from :mod:`vnicbond.lab`.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools import DOC, ROOT, interrupt_on_signals
from tools.bench_measure import (
    METRICS,
    SPREAD_METRICS,
    SPREAD_MODES,
    STACK_METRICS,
    STACK_MODES,
    run_bond,
    run_kernel,
    run_spread,
    run_stack,
)
from tools.bench_model import Metric, Results
from tools.bench_probing import PROBING_METRICS, PROBING_MODES, run_probing
from tools.bench_report import (
    PROBING_HEADERS,
    SPREAD_HEADERS,
    STACK_HEADERS,
    UPGRADE_HEADERS,
    Table,
    ab_tables,
    drops_text,
    probing_rows,
    samples_text,
    spread_rows,
    stack_rows,
    upgrade_rows,
)
from tools.bench_restart import UPGRADE_METRICS, UPGRADE_MODES, run_upgrade
from vnicbond.lab.results import command_line, machine, markdown_table, record, text_table

DEFAULT_RATE = 200  # load-spread: Mbit/s per member and direction


# -- the sections -----------------------------------------------------------------------------
Setup = Callable[[int, Results, str], None]


@dataclass(frozen=True)
class Section:
    """A section of docs/benchmarks.md and the runs that fill it."""

    name: str
    metrics: tuple[Metric, ...]
    runs: Callable[[argparse.Namespace], list[tuple[str, Setup]]]  # (mode, set-up), in order
    tables: Callable[[Results, argparse.Namespace], list[Table]]
    about: Callable[[argparse.Namespace], list[str]]  # lines under the command line
    notes_heading: str


def checkout_name(path: Path) -> str:
    """A checkout's branch and commit (``-dirty`` if its tracked files changed), as git says."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("describe", "--always", "--dirty")
    return f"`{git('rev-parse', '--abbrev-ref', 'HEAD')}` at {commit}" if commit else "no git"


def _ab_runs(args: argparse.Namespace) -> list[tuple[str, Setup]]:
    runs: list[tuple[str, Setup]] = [
        ("kernel", run_kernel), ("bond", functools.partial(run_bond, checkout=ROOT))]
    if args.compare is not None:
        runs.append(("before", functools.partial(run_bond, mode="before",
                                                 checkout=args.compare)))
    return runs


def _ab_tables(results: Results, args: argparse.Namespace) -> list[Table]:
    if args.compare is None:
        return ab_tables(results)
    return ab_tables(results, "this checkout's daemon", f"the daemon of `{args.compare}`")


def _ab_about(args: argparse.Namespace) -> list[str]:
    if args.compare is None:
        return []
    return [f"- after (bond): the daemon of this checkout ({checkout_name(ROOT)}); before: "
            f"the daemon of `{args.compare}` ({checkout_name(args.compare)}), run in turn: "
            "kernel, bond, before, kernel, ..."]


def _spread_runs(args: argparse.Namespace) -> list[tuple[str, Setup]]:
    return [(mode, functools.partial(run_spread, members, args.rate))
            for members, mode in enumerate(SPREAD_MODES, start=1)]


def _spread_tables(results: Results, args: argparse.Namespace) -> list[Table]:
    return [Table(None, SPREAD_HEADERS, spread_rows(results, args.rate))]


def _spread_about(args: argparse.Namespace) -> list[str]:
    return [f"- R = {args.rate} Mbit/s per member and direction: `tc qdisc add dev X root tbf "
            f"rate {args.rate}mbit burst 64kb latency 50ms` on m0, m1 (host) and s0, s1 "
            "(switch)"]


def _stack_runs(args: argparse.Namespace) -> list[tuple[str, Setup]]:
    return [(mode, functools.partial(run_stack, mode)) for mode in STACK_MODES]


def _stack_tables(results: Results, args: argparse.Namespace) -> list[Table]:
    return [Table(None, STACK_HEADERS, stack_rows(results))]


def _stack_about(args: argparse.Namespace) -> list[str]:
    return ["- a VM namespace (veth, MTU 1500) on the bridge `br-vm` in the host namespace; "
            "kernel: the bridge over m0, no daemon; bond: the bridge over `ipmp0`, "
            "`vnicbond run` in active-backup with m0 (active) and m1; one iperf3 TCP stream "
            "between the VM and the peer each way"]


def _upgrade_runs(args: argparse.Namespace) -> list[tuple[str, Setup]]:
    return [(mode, run_upgrade) for mode in UPGRADE_MODES]


def _upgrade_tables(results: Results, args: argparse.Namespace) -> list[Table]:
    return [Table(None, UPGRADE_HEADERS, upgrade_rows(results))]


def _upgrade_about(args: argparse.Namespace) -> list[str]:
    return ["- a 10 ms ping (`ping -D`) from the peer to 198.18.0.10 through `vnicbond run` "
            "(active-backup on m0 and m1): the longest time between two replies while the "
            "daemon is upgraded in place (`vnicbond upgrade`, this checkout's code executed "
            "again), then while it is killed (`kill -9`) and started again; "
            "`--seconds` does not apply"]


def _probing_runs(args: argparse.Namespace) -> list[tuple[str, Setup]]:
    return [(mode, lambda seconds, results, tag, mode=mode: run_probing(mode, seconds, results,
                                                                         tag))
            for mode in PROBING_MODES]


def _probing_tables(results: Results, args: argparse.Namespace) -> list[Table]:
    return [Table(None, PROBING_HEADERS, probing_rows(results))]


def _probing_about(args: argparse.Namespace) -> list[str]:
    return ["- `vnicbond run` in active-backup on m0 and m1, FDT 300 ms, the peer 198.18.0.2 as "
            "the probe target: members with test addresses 198.18.0.21 and .22 (the "
            "baseline, in.mpathd's classic set-up: two addresses spent), against none "
            "(probing from the data address and by link-layer probes, `probe.transitive`); "
            "`--seconds` does not apply"]


SECTIONS: dict[str, Section] = {
    "active-backup": Section(
        "active-backup", METRICS, _ab_runs, _ab_tables, _ab_about,
        notes_heading="Each test (iperf3 retransmits, UDP loss, ping replies, what the CPU "
                      "per packet rests on, and kernel drop counters that moved):"),
    "load-spread": Section(
        "load-spread", SPREAD_METRICS, _spread_runs, _spread_tables, _spread_about,
        notes_heading="Each run's address placement, then each test (per client: throughput "
                      "and iperf3 retransmits; bytes each member carried; kernel drop "
                      "counters that moved):"),
    "stacking": Section(
        "stacking", STACK_METRICS, _stack_runs, _stack_tables, _stack_about,
        notes_heading="Each test (iperf3 retransmits, kernel drop counters that moved):"),
    "probing": Section(
        "probing", PROBING_METRICS, _probing_runs, _probing_tables, _probing_about,
        notes_heading="Each measurement (probes counted, the failed member's reason, pings "
                      "lost; kernel drop counters that moved):"),
    "upgrade": Section(
        "upgrade", UPGRADE_METRICS, _upgrade_runs, _upgrade_tables, _upgrade_about,
        notes_heading="Each measurement (pings lost, what the upgrade or the new start said; "
                      "kernel drop counters that moved):"),
}


def section_text(section: Section, results: Results, tables: list[Table],
                 args: argparse.Namespace) -> str:
    """The body of ``section`` in docs/benchmarks.md."""
    info = machine()
    modes = [mode for mode, _ in section.runs(args)]
    lines = [
        f"- date: {info['date']}",
        f"- kernel: `{info['kernel']}`; CPU: {info['cpu']}; cores: {info['cores']}",
        f"- command: `{command_line(ROOT)}` ({args.seconds} s per test, median of {args.repeat})",
        *section.about(args),
    ]
    for table in tables:
        lines += ["", *([f"### {table.title}", ""] if table.title else []),
                  markdown_table(table.headers, table.rows)]
    lines += [
        "",
        "Samples:",
        "",
        *(f"- {line}" for line in samples_text(results, section.metrics, modes)),
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


#: docs/benchmarks.md's start, if the file is missing (its description of each section is
#: kept there, not here).
DOC_HEADER = "# Benchmarks\n\n`tools/bench` records its sections here (see tools/bench.py).\n"


def markers(section: str) -> tuple[str, str]:
    """The start and end markers of a section of docs/benchmarks.md."""
    return f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """--section, --seconds, --repeat, --quick, --rate, --compare, --no-record."""
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
    parser.add_argument("--compare", type=Path, metavar="PATH",
                        help="active-backup: also run the daemon of the vnicbond checkout at "
                             "PATH (e.g. /work/main), in turn with this one's, and report "
                             "both (before: PATH's; after: this one's)")
    parser.add_argument("--no-record", action="store_true",
                        help=f"print only; do not update {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeat = 2, 1
    if args.seconds < 1 or args.repeat < 1:
        parser.error("--seconds and --repeat must be at least 1")
    if args.rate < 1:
        parser.error("--rate must be at least 1")
    if args.compare is not None:
        args.compare = args.compare.resolve()
        if not (args.compare / "vnicbond" / "__main__.py").is_file():
            parser.error(f"--compare: no vnicbond checkout at {args.compare}")
        if args.section in ("load-spread", "stacking", "upgrade", "probing"):
            parser.error("--compare is for the active-backup section")
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
    runs = section.runs(args)
    for rep in range(1, args.repeat + 1):
        for mode, run in runs:
            tag = f"{mode} {rep}/{args.repeat}"
            print(f"{tag}:", flush=True)
            run(args.seconds, results, tag)
    tables = section.tables(results, args)
    print(f"\n{section.name}, {args.seconds} s per test, median of {args.repeat} "
          f"({time.monotonic() - started:.0f} s):")
    for line in section.about(args):
        print(line.removeprefix("- ").replace("`", ""))
    for table in tables:
        print(f"\n{table.title}:" if table.title else "")
        print(text_table(table.headers, table.rows))
    modes = [mode for mode, _ in runs]
    print("\nsamples:\n  " + "\n  ".join(samples_text(results, section.metrics, modes)))
    print("daemon drop counters:\n  " + "\n  ".join(drops_text(results) or ["none collected"]))
    if results.errors:
        print("errors:\n  " + "\n  ".join(results.errors))
    if not args.no_record:
        record(DOC, *markers(section.name), f"## {section.name}\n\n"
               + section_text(section, results, tables, args), new=DOC_HEADER)
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
