"""The benchmark's *upgrade* section (``tools/bench --section upgrade``): how long the bond's
traffic stops when the daemon is upgraded in place, and when it is killed and started again.

A 10 ms ping from the peer to the data address 198.18.0.10 (``ping -D``, read by
:class:`vnicbond.lab.PingLog`) runs for a second, then through the event, then two more
seconds once the bond answers again; the figure is the longest time between two replies.

* ``upgrade-gap``: ``vnicbond upgrade`` (the installed code is this checkout's: the same
  code, executed again in the same process, with the hand-over and the bridge forwarding
  meanwhile; see vnicbond/runtime/upgrade.py);
* ``restart-gap``: ``kill -9`` of the daemon, then ``vnicbond run`` again, which adopts the
  TAP the crash left (the time from the kill to the new daemon forwarding, start-up included).

Each run is a fresh lab with the daemon in active-backup on m0 and m1, and measures both, the
upgrade first. It measures; tools/bench_report.py makes the table.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from tools.bench_measure import fresh_lab, group_config, measure, run_daemon, wait_reachable
from tools.bench_model import Metric, Results, Sample, Test
from vnicbond.lab import DATA_V4, PREFIX_V4, Bond, Lab, PingLog, ping_stream, stop, wait_ping

UPGRADE_GAP = Metric("upgrade-gap", "longest ping gap, vnicbond upgrade", tcp=False,
                     outbound=False, unit="ms", lower_is_better=True)
RESTART_GAP = Metric("restart-gap", "longest ping gap, kill -9 and a new start", tcp=False,
                     outbound=False, unit="ms", lower_is_better=True)
UPGRADE_METRICS: tuple[Metric, ...] = (UPGRADE_GAP, RESTART_GAP)
UPGRADE_MODES: tuple[str, ...] = ("bond",)
#: Pinging before the event, and after the bond answers again.
BEFORE, AFTER = 1.0, 2.0


def gap_during(lab: Lab, log: Path, event: Callable[[], str]) -> Sample:
    """The longest gap between replies to a 10 ms ping from the peer while ``event`` runs
    (it returns a note); the note also says how many pings went unanswered."""
    with open(log, "w") as out:
        ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, output=out)
        try:
            time.sleep(BEFORE)
            note = event()
            wait_ping(lab, lab.peer, DATA_V4)
            time.sleep(AFTER)
        finally:
            stop(ping, signal.SIGINT)
    pings = PingLog.parse(log.read_text())
    if pings.transmitted is None or pings.received is None or len(pings.replies) < 2:
        return Sample(None, f"ping gave no usable output ({note})")
    lost = pings.transmitted - pings.received
    return Sample(pings.longest_gap(), f"{lost} of {pings.transmitted} pings lost; {note}")


def upgrade(bond: Bond) -> str:
    """``vnicbond upgrade``; its output."""
    done = bond.cli("upgrade", check=True)
    return done.stdout.strip()


def kill_and_start(bond: Bond) -> str:
    """``kill -9`` the daemon, start it again; how long the start took."""
    bond.stop(signal.SIGKILL)
    started = time.monotonic()
    bond.start()
    return f"started again in {time.monotonic() - started:.2f} s"


def _test(metric: Metric, event: Callable[[Bond], str]) -> Test:
    def run(lab: Lab, bond: Bond | None, seconds: int) -> list[Sample]:
        assert bond is not None
        return [gap_during(lab, bond.path.parent / f"{metric.key}.ping",
                           lambda: event(bond))]

    return Test((metric,), run)


TESTS: tuple[Test, ...] = (_test(UPGRADE_GAP, upgrade), _test(RESTART_GAP, kill_and_start))


def run_upgrade(seconds: int, results: Results, tag: str) -> None:
    """A fresh lab, the daemon in active-backup on m0 and m1: an upgrade, then a crash and a
    new start, each under a 10 ms ping."""
    with fresh_lab() as (lab, workdir):
        group = group_config(lab.members, [f"{DATA_V4}/{PREFIX_V4}"])

        def body(bond: Bond) -> None:
            wait_reachable(lab)
            measure(lab, "bond", seconds, results, tag, bond, TESTS)

        run_daemon(lab, workdir, group, results, tag, body)
