"""Soak the bond: long iperf3 load with a fault every few seconds; watch for leaks and losses.

What it does, in order:

1. Builds a fresh two-member namespace lab (``vnicbond.lab.Lab``: members m0 and m1 in the
   host namespace, a bridge, the peer 198.18.0.2) and starts ``vnicbond run`` in the host
   namespace: one active-backup group ``ipmp0`` with the data addresses 198.18.0.10/24 and
   2001:db8::10/64, ICMP probing of the peer from the test addresses 198.18.0.21/24 (m0) and
   198.18.0.22/24 (m1), ``failure_detection_time: 300ms``, announcements 3 x 100 ms, and
   ``failback: true`` (``--no-failback``: false). It waits until both members' probes are
   answered and the peer can ping 198.18.0.10.
2. Starts the load and the loss meter, both for the whole run: one ``iperf3 --bidir`` TCP
   test (``-J``; one connection each way) from the host to an iperf3 server in the peer
   (``--rate``: a bit rate per direction, default unlimited), and ``ping -D -i 0.01``
   from the peer to 198.18.0.10, whose output (one line per reply, with its icmp_seq and
   time) goes to a file.
3. After 3 s of load, runs ``--minutes`` x 60 / ``--interval`` fault slots, one every
   ``--interval`` seconds, cycling through four faults:

   * ``link-pull``: the active member's switch port goes down (``Lab.link_down``: the member
     loses carrier); back up half an interval later;
   * ``silent-cut``: the active member's switch port silently drops everything both ways
     (``Lab.cut``; the carrier stays up, only probes can notice); lifted half an interval
     later;
   * ``offline``: ``vnicbond offline MEMBER`` of the active member; ``vnicbond online MEMBER``
     half an interval later;
   * ``reload``: a real change to the configuration file (the second data address
     198.18.0.11/24 and ``announce.count`` 4 are added, the next time removed again), then
     ``vnicbond reload`` (odd reloads) or SIGHUP to the daemon's PID (even ones).

   The active member is read from ``vnicbond status`` just before each fault, so every fault
   but the reload forces a failover. After the repair the tool waits for the group to be
   whole again (state ``ok``, no member failed or offline, with failback the first member
   active again); a slot whose group is not whole when it ends fails the run, and the next
   fault is skipped if the group is not whole when it is due.
4. Per slot it records the failovers (the group's ``failovers`` counter from status, before
   the fault, at the repair and at the end of the slot; the ``member ... -> active`` events
   for who took over and how long after the fault), the daemon's resources and, at the end,
   the pings lost. A missing icmp_seq is dated by interpolating between the replies around
   it and counted in the slot (and phase: fault or repair) it falls in; slot boundaries are
   set 0.25 s before each fault, so the losses a fault causes always count for it.
5. Samples the daemon's resident memory (``VmRSS``), open descriptors (entries of
   ``/proc/PID/fd``) and threads (``Threads``), with the number of events in its history,
   when it is ready and 1 s before the end of every slot (each time after 0.3 s without a
   control request from the tool, the lowest of three readings 0.1 s apart, so a control
   connection still closing is not counted), and reports two: *start*, at the end of the
   first full cycle of four faults (a warm-up: the first reload starts the daemon's executor
   thread, ...), and *end*, at the end of the last slot. The event history (the last 1000
   events, about ten per fault) still fills during a ten-minute run: that bounded growth is
   what the RSS slack is for.
6. Stops the ping, waits for iperf3 to end, checks the daemon still answers, stops it with
   SIGTERM (by PID) and judges:

   * RSS growth (end - start) at most the larger of 2 MiB and 5 % of start;
   * descriptors and threads exactly equal at start and end;
   * iperf3 exited 0 with no error in its JSON and received data both ways for the whole
     test: no lost TCP connection;
   * each link-pull, silent-cut and offline made exactly one failover, and with failback
     exactly one failback at its repair; each reload none; every fault repaired in its slot;
   * the daemon was alive at the end, exited 0 on SIGTERM, and logged no traceback.

   Pings lost are reported (per fault, per kind, in total), not judged; the short version in
   ``tests/netns/test_soak.py`` bounds them.

It prints a line per slot and a report with ``PASS``/``FAIL`` lines, and exits 0 if every
check passed, 1 if one failed, 2 if the soak could not run, 130 if interrupted. ``--json``
prints only one JSON document on standard output (progress goes to standard error). Unless
``--no-record``, the report replaces the text between ``<!-- soak:begin -->`` and
``<!-- soak:end -->`` in docs/benchmarks.md (both added at the end if absent).

The daemon, ping and the iperf3 processes are stopped by their PIDs and the lab removed
whatever happens, Ctrl-C included. It needs root, ``ip``, ``nft``, ``iperf3``, ``ping`` and
``ss``; it uses only 198.18.0.0/15 and 2001:db8::/32, inside the lab's own namespaces. At least
two full cycles (eight slots) are needed: the default is 10 minutes, a fault every 20 s.
With failback, every link pull hits m0, so more than eight faults need an interval of at
least 7.75 s: a third link-up within 60 s would hold m0 down as flapping (by design).
Run it as ``tools/soak`` (from the repository, ``.venv/bin/python -m tools.soak``). This module
is its command line; tools/soak_run.py makes the run, tools/soak_report.py judges and reports
it; the lab, the daemon, ping, iperf3 and the results' tables come from :mod:`vnicbond.lab`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from tools import DOC, ROOT, interrupt_on_signals
from tools.soak_report import checks, document, fault_line, report, section_text
from tools.soak_run import KINDS, Soak, SoakError, progress_to, say, slot_count
from vnicbond.control import ControlError
from vnicbond.lab.results import record

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
FLAP_WINDOW = 60.0  # the daemon's flap damping: three link-ups within this many seconds
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- main -------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tools/soak", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long the faults go on (default 10)")
    parser.add_argument("--interval", type=float, default=20.0, metavar="SECONDS",
                        help="seconds between faults; each is repaired halfway (default 20)")
    parser.add_argument("--rate", type=int, default=0, metavar="MBIT",
                        help="iperf3 bit rate per direction in Mbit/s (default 0: unlimited)")
    parser.add_argument("--no-failback", action="store_true",
                        help="run the group with failback: false (faults then alternate "
                             "between the members)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout; progress goes to stderr")
    parser.add_argument("--no-record", action="store_true",
                        help=f"do not update {DOC.relative_to(ROOT)}")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the configuration, daemon log, ping and iperf3 output")
    args = parser.parse_args(argv)
    if args.interval < 5:
        parser.error("--interval must be at least 5 s (a fault, its repair, and recovery)")
    if slot_count(args.minutes, args.interval) < 2 * len(KINDS):
        parser.error(f"--minutes x 60 / --interval must allow at least {2 * len(KINDS)} "
                     "faults: a warm-up cycle of four, then at least one measured")
    if args.rate < 0:
        parser.error("--rate must not be negative")
    if (not args.no_failback and slot_count(args.minutes, args.interval) > 2 * len(KINDS)
            and 2 * len(KINDS) * args.interval < FLAP_WINDOW + 2):
        # With failback every link pull hits m0, one every four slots: a third link-up within
        # 60 s holds it down as flapping (in.mpathd's damping, by design), and the run fails.
        parser.error(f"with failback, more than {2 * len(KINDS)} faults need --interval of at "
                     f"least {(FLAP_WINDOW + 2) / (2 * len(KINDS)):g} s (m0 would be held down "
                     "as flapping: three link-ups within 60 s); or use --no-failback")
    return args


def check_tools() -> None:
    if os.geteuid() != 0:
        raise SoakError("needs root (network namespaces)")
    missing = [c for c in ("ip", "nft", "iperf3", "ping", "ss") if shutil.which(c) is None]
    if missing:
        raise SoakError(f"missing: {', '.join(missing)} (run tools/setup)")


def main(argv: list[str] | None = None) -> int:
    """Run the soak; the exit status says how it went (see the module's docstring)."""
    args = parse_args(argv)
    if args.json:
        progress_to(sys.stderr)
    interrupt_on_signals()
    soak: Soak | None = None
    code = EXIT_ERROR
    doc: dict[str, Any] = {}
    try:
        check_tools()
        soak = Soak(args)
        soak.setup()
        soak.start_load()
        soak.run_slots()
        soak.finish()
        doc = document(soak, checks(soak))
        code = EXIT_PASS if doc["verdict"] == "PASS" else EXIT_FAIL
    except KeyboardInterrupt:
        say("tools/soak: interrupted; stopping everything and removing the lab")
        code, doc = EXIT_INTERRUPTED, {"verdict": "INTERRUPTED"}
    except (SoakError, RuntimeError, TimeoutError, OSError, ControlError,
            subprocess.SubprocessError) as e:
        say(f"tools/soak: {e}")
        doc = {"verdict": "ERROR", "error": str(e)}
        if soak is not None and soak.faults:
            doc["faults"] = [fault_line({**asdict(f), "lost": f.lost}) for f in soak.faults]
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if soak is not None:
            soak.cleanup()
    if code in (EXIT_PASS, EXIT_FAIL):
        report(doc)
        if not args.no_record:
            record(DOC, BEGIN, END, section_text(doc))
            say(f"recorded in {DOC.relative_to(ROOT)}")
    if args.json:
        print(json.dumps(doc), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
