"""One soak run (``tools/soak``, see tools/soak.py): the lab, the daemon, the load, the faults
and the samples, up to the figures read at its end. Judging them and writing them down is
tools/soak_report.py's.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from vnicbond.control import ControlError
from vnicbond.lab import (
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PREFIX_V4,
    PREFIX_V6,
    Bond,
    BondError,
    Lab,
    PingLog,
    iperf,
    ping_stream,
    stop,
    wait_ping,
)
from vnicbond.lab.bond import usage

GROUP = "ipmp0"
FDT = "300ms"
PING_INTERVAL = 0.01
LEAD = 3.0  # seconds of load before the first fault
TAIL = 2.0  # seconds of load after the last slot
MARGIN = 0.25  # slot boundaries lie this long before each fault
QUIET = 0.3  # seconds without control requests before the daemon's resources are read
SAMPLE_LEAD = 1.0  # the resources are read this long before a slot ends
KINDS = ("link-pull", "silent-cut", "offline", "reload")
EXTRA_V4 = "198.18.0.11/24"  # what reloads add and remove

OUT: TextIO = sys.stdout  # where progress and the report go (stderr with --json)


def say(text: str = "") -> None:
    """A line of progress or report."""
    print(text, file=OUT, flush=True)


def progress_to(stream: TextIO) -> None:
    """Send progress and the report to ``stream`` from now on."""
    global OUT
    OUT = stream


class SoakError(RuntimeError):
    """The soak could not run (the set-up failed, a command failed, the daemon died early)."""


# -- the daemon -------------------------------------------------------------------------------
def group_config(lab: Lab, failback: bool, extra: bool) -> dict[str, Any]:
    """The group; ``extra``: with the reload's change (a second IPv4 address, 4 announcements)."""
    addresses = [f"{DATA_V4}/{PREFIX_V4}", f"{DATA_V6}/{PREFIX_V6}"]
    if extra:
        addresses.append(EXTRA_V4)
    return {
        "name": GROUP,
        "mode": "active-backup",
        "addresses": addresses,
        "failure_detection_time": FDT,
        "failback": failback,
        "announce": {"count": 4 if extra else 3, "interval": "100ms"},
        "probe": {"method": "icmp", "targets": [PEER_V4]},
        "members": [{"name": lab.member(i), "test_address": f"198.18.0.{21 + i}/{PREFIX_V4}"}
                    for i in range(lab.members)],
    }


def daemon_config(lab: Lab, socket: str, failback: bool, extra: bool) -> dict[str, Any]:
    """The daemon's configuration: the control socket, log level info, :func:`group_config`."""
    return {"control": {"socket": socket}, "log_level": "info",
            "groups": [group_config(lab, failback, extra)]}


@dataclass
class Resources:
    """What the daemon holds at one moment."""

    t: float  # seconds since the load started
    rss_kib: int
    fds: int
    threads: int
    events: int = 0  # events in the daemon's history (it keeps the last 1000)

    def text(self) -> str:
        return (f"rss {self.rss_kib / 1024:.2f} MiB, fds {self.fds}, threads {self.threads}, "
                f"events held {self.events}")


def resources(pid: int, t: float) -> Resources:
    """What the daemon holds now (:func:`vnicbond.lab.bond.usage`), at ``t``."""
    held = usage(pid)
    return Resources(round(t, 1), held.rss_kib, held.fds, held.threads)


def quiet_resources(pid: int, t: float, events: int = 0) -> Resources:
    """``resources`` without the transient ones: after QUIET s with no control request from
    this tool (the daemon closes a finished control connection a moment after the reply),
    the reading with the fewest descriptors of three, 0.1 s apart. A leak stays in all."""
    time.sleep(QUIET)
    readings = []
    for i in range(3):
        if i:
            time.sleep(0.1)
        readings.append(resources(pid, t))
    reading = min(readings, key=lambda r: (r.fds, r.threads))
    reading.events = events
    return reading


# -- ping and iperf3 --------------------------------------------------------------------------
def count_in(times: list[float], start: float, end: float) -> int:
    """How many of the sorted ``times`` lie in [start, end)."""
    return bisect.bisect_left(times, end) - bisect.bisect_left(times, start)


def iperf_report(report: iperf.Report, seconds: float) -> dict[str, Any]:
    """What the client's ``-J`` report says: intact connections, bytes, rates, stalls."""
    result: dict[str, Any] = {"exit": report.exit, "ok": False, "error": None}
    if report.data is None:
        result["error"] = (f"no JSON report (exit {report.exit}): "
                           f"{report.stderr.strip()[-300:]}")
        return result
    result["error"] = report.error
    directions = {"out": report.received(),  # host -> peer, as the peer got it
                  "in": report.received(reverse=True)}
    for name, summary in directions.items():
        result[f"{name}_bytes"] = int(summary.get("bytes", 0))
        result[f"{name}_bits_per_second"] = float(summary.get("bits_per_second", 0.0))
        result[f"{name}_seconds"] = float(summary.get("seconds", 0.0))
    result["out_retransmits"] = report.retransmits()
    result["in_retransmits"] = report.retransmits(reverse=True)
    result["stalled_seconds"] = report.stalled_seconds()
    full = seconds - 1.0
    result["ok"] = (report.exit == 0 and result["error"] is None
                    and all(result[f"{d}_bytes"] > 0 and result[f"{d}_seconds"] >= full
                            for d in directions))
    return result


# -- faults -----------------------------------------------------------------------------------
@dataclass
class Fault:
    """One slot: the fault made, what the daemon did, what it cost."""

    index: int
    kind: str
    member: str | None = None
    t: float = 0.0  # seconds since the load started
    at: float = 0.0  # wall-clock time of the fault
    repaired_at: float = 0.0
    ended_at: float = 0.0
    failover_to: str | None = None
    failover_ms: float | None = None
    failovers_before: int = 0  # the group's failovers counter before the fault
    failovers_fault: int = 0  # between the fault and its repair
    failovers_repair: int = 0  # between the repair and the end of the slot
    recovered_ms: float | None = None  # after the repair; None: not whole by the slot's end
    lost_fault: int = 0
    lost_repair: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def lost(self) -> int:
        return self.lost_fault + self.lost_repair

    def expected(self, failback: bool) -> tuple[int, int]:
        """Failovers this fault must cause: (at the fault, at the repair)."""
        if self.kind == "reload":
            return 0, 0
        return 1, 1 if failback else 0


def whole(status: dict[str, Any], failback: bool, preferred: str) -> bool:
    """The group has every member usable (and, with failback, its first member active)."""
    return (status["state"] == "ok"
            and all(m["state"] in ("active", "standby") for m in status["members"])
            and (not failback or status["active"] == preferred))


class Soak:
    """One run: the lab, the daemon, the load, the faults and the samples."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots = slot_count(args.minutes, args.interval)
        self.lab = Lab(members=2)
        self.workdir = Path(tempfile.mkdtemp(prefix="vb-soak-", dir="/tmp"))
        self.failback = not args.no_failback
        self.extra = False  # the configuration has the reloads' change
        self.bond = Bond.in_workdir(self.lab, self.workdir, daemon_config(
            self.lab, str(self.workdir / "ctl.sock"), self.failback, self.extra))
        self.exit_status: int | None = None
        self.ping: subprocess.Popen[str] | None = None
        self.server: subprocess.Popen[str] | None = None
        self.client: subprocess.Popen[str] | None = None
        self.files: list[TextIO] = []
        self.faults: list[Fault] = []
        self.samples: list[Resources] = []
        self.baseline: Resources | None = None
        self.start_sample: Resources | None = None
        self.end_sample: Resources | None = None
        self.t0 = 0.0  # monotonic time the load started
        self.iperf_seconds = 0
        self.iperf: dict[str, Any] = {}
        self.ping_log = PingLog(PING_INTERVAL)
        self.outside: dict[str, int] = {"before": 0, "after": 0}
        self.reloads = 0
        self.alive_at_end = False
        self.traceback_in_log = False
        self.log_warnings = 0
        self.started = time.monotonic()
        self.preferred = self.lab.member(0)

    # -- set-up and tear-down ----------------------------------------------------------------
    def output(self, name: str) -> TextIO:
        f = open(self.workdir / name, "w")  # noqa: SIM115 - closed in cleanup()
        self.files.append(f)
        return f

    def setup(self) -> None:
        """The lab, the daemon, probes answered and the data address reachable."""
        self.lab.build()
        self.bond.start()
        st: dict[str, Any] = {}

        def ready() -> bool:
            self.bond.alive()
            st.update(self.bond.status())
            return all(m["probe"] == "ok" for m in st["members"]) and whole(
                st, self.failback, self.preferred)

        try:
            self.lab.wait_for(ready, timeout=20, interval=0.1, what="both members' probes")
            wait_ping(self.lab, self.lab.peer, DATA_V4, timeout=20)
        except TimeoutError as e:
            raise SoakError(f"{e}: {st}\n{self.bond.tail()}") from None
        self.baseline = quiet_resources(self.bond.daemon_pid(), 0.0, len(self.bond.events(0)))
        say(f"daemon ready (pid {self.bond.daemon_pid()}, {self.baseline.text()}); "
            f"lab {self.lab.prefix}, workdir {self.workdir}")

    def start_load(self) -> None:
        """iperf3 --bidir from the host to the peer, and a 10 ms ping from the peer."""
        lab = self.lab
        self.iperf_seconds = math.ceil(LEAD + self.slots * self.args.interval + TAIL)
        self.server = iperf.start_server(lab, lab.peer, stdout=self.output("iperf3-server.json"),
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if self.server.poll() is not None:
            raise SoakError(f"iperf3 server exited {self.server.returncode}")
        options = ["--bidir", *(["-b", f"{self.args.rate}M"] if self.args.rate else [])]
        self.client = iperf.start_client(lab, lab.host, PEER_V4, self.iperf_seconds,
                                         options=options, stdout=self.output("iperf3-client.json"),
                                         stderr=self.output("iperf3-client.err"),
                                         start_new_session=True)
        self.ping = ping_stream(lab, lab.peer, DATA_V4, PING_INTERVAL,
                                output=self.output("ping.txt"))
        self.t0 = time.monotonic()
        rate = f"{self.args.rate} Mbit/s each way" if self.args.rate else "unlimited"
        say(f"load: iperf3 --bidir for {self.iperf_seconds} s ({rate}), ping every "
            f"{PING_INTERVAL * 1000:.0f} ms; {self.slots} faults, one every "
            f"{self.args.interval:g} s")

    def cleanup(self) -> None:
        """Stop everything this run started, by PID, and remove the lab. Never raises."""
        for proc in (self.client, self.ping):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                stop(proc, signal.SIGINT, timeout=5)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            stop(self.server, signal.SIGTERM, timeout=5)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.stop_daemon()
        for f in self.files:
            with contextlib.suppress(OSError):
                f.close()
        self.lab.destroy()
        if not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_daemon(self) -> None:
        """SIGTERM by PID (SIGKILL if it stays), once; keeps its exit status."""
        if self.bond.proc is not None and self.exit_status is None:
            with contextlib.suppress(BondError):
                self.bond.stop(timeout=15)
            self.exit_status = self.bond.returncode

    # -- the slots ---------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def sleep_until(self, t: float) -> None:
        """Sleep until ``t`` (seconds since the load started), checking the load runs."""
        while True:
            left = t - self.now()
            if left <= 0:
                return
            time.sleep(min(left, 0.5))
            self.check_running()

    def check_running(self) -> None:
        self.bond.alive()
        for name, proc in (("ping", self.ping), ("iperf3", self.client)):
            if proc is not None and proc.poll() is not None and self.now() < self.iperf_seconds:
                raise SoakError(f"{name} exited early with status {proc.returncode}")

    def last_seq(self) -> int:
        events = self.bond.events(0)
        return int(events[-1]["seq"]) if events else 0

    def run_slots(self) -> None:
        for k in range(self.slots):
            start = LEAD + k * self.args.interval
            self.sleep_until(start)
            fault = Fault(k + 1, KINDS[k % len(KINDS)])
            self.faults.append(fault)
            end = start + self.args.interval
            self.run_slot(fault, start, end)
            sample = quiet_resources(self.bond.daemon_pid(), self.now(),
                                     len(self.bond.events(0)))
            self.samples.append(sample)
            if k + 1 == len(KINDS):
                self.start_sample = sample
            self.sleep_until(end)
            fault.ended_at = time.time()
            fault.failovers_repair = (self.bond.status()["failovers"] - fault.failovers_before
                                      - fault.failovers_fault)
            self.ping_log = PingLog.parse((self.workdir / "ping.txt").read_text(), PING_INTERVAL)
            self.attribute_losses(final=False)
            say(self.slot_line(fault, sample))
        self.end_sample = self.samples[-1] if self.samples else None

    def run_slot(self, fault: Fault, start: float, end: float) -> None:
        """Make the fault, repair it at mid-slot, wait for the group to be whole."""
        bond = self.bond
        fault.t = round(self.now(), 1)
        fault.at = time.time()  # again just before the fault itself, in inject()
        st = bond.status()
        fault.failovers_before = st["failovers"]
        if not whole(st, self.failback, self.preferred):
            fault.error = (f"skipped: the group was not whole when the fault was due "
                           f"(state {st['state']}, members "
                           + ", ".join(f"{m['name']} {m['state']}" for m in st["members"]) + ")")
            fault.repaired_at = fault.at
            self.sleep_until(end - SAMPLE_LEAD)
            return
        seq0 = self.last_seq()
        repair = self.inject(fault, st)
        self.sleep_until(start + self.args.interval / 2)
        events = bond.events(seq0)
        moved = [e for e in events if e["kind"] == "member" and e["state"] == "active"
                 and e["old"] is not None]
        if moved:
            fault.failover_to = moved[0]["member"]
            fault.failover_ms = round((moved[0]["time"] - fault.at) * 1000.0, 1)
        st = bond.status()
        fault.failovers_fault = st["failovers"] - fault.failovers_before
        fault.repaired_at = time.time()
        repair()
        deadline = end - SAMPLE_LEAD
        while self.now() < deadline:
            st = bond.status()
            if whole(st, self.failback, self.preferred):
                fault.recovered_ms = round((time.time() - fault.repaired_at) * 1000.0, 1)
                break
            time.sleep(0.05)
        if fault.recovered_ms is None:
            fault.error = ("not whole again by the end of its slot: "
                           + ", ".join(f"{m['name']} {m['state']} ({m['reason']})"
                                       for m in st["members"]))
        self.sleep_until(end - SAMPLE_LEAD)

    def inject(self, fault: Fault, st: dict[str, Any]) -> Callable[[], None]:
        """Make ``fault`` on the active member now; return what repairs it."""
        lab = self.lab
        member = st["active"]
        index = next((i for i in range(lab.members) if lab.member(i) == member), None)
        if fault.kind != "reload":
            if index is None:
                raise SoakError(f"no active member to fault: {st}")
            fault.member = member
        fault.at = time.time()
        if fault.kind == "link-pull":
            assert index is not None
            lab.link_down(index)
            return lambda: lab.link_up(index)
        if fault.kind == "silent-cut":
            assert index is not None
            lab.cut(index)
            return lambda: lab.uncut(index)
        if fault.kind == "offline":
            self.admin("offline", member)

            def online() -> None:
                self.admin("online", member)

            return online
        self.reload(fault)
        return lambda: None

    def admin(self, verb: str, member: str) -> None:
        out = self.bond.cli(verb, member, timeout=60)
        # offline: "m0 is now offline"; online: "m0 is now active" (or standby, or failed
        # while its probes are not yet repaired)
        expected = f"{member} is now {verb}" if verb == "offline" else f"{member} is now "
        if out.returncode != 0 or not out.stdout.strip().startswith(expected):
            raise SoakError(f"vnicbond {verb} {member}: exit {out.returncode}: "
                            f"{(out.stdout + out.stderr).strip()}")

    def reload(self, fault: Fault) -> None:
        """Rewrite the configuration with the next change and reload: vnicbond reload on odd
        reloads, SIGHUP on even ones."""
        bond = self.bond
        self.reloads += 1
        self.extra = not self.extra
        bond.config = daemon_config(self.lab, bond.socket, self.failback, self.extra)
        bond.write_config()
        change = (f"added {EXTRA_V4}, announce.count 4" if self.extra
                  else f"removed {EXTRA_V4}, announce.count 3")
        if self.reloads % 2:
            out = bond.cli("reload", timeout=60)
            if out.returncode != 0:
                raise SoakError(f"vnicbond reload: exit {out.returncode}: {out.stderr.strip()}")
            fault.notes.append(f"vnicbond reload: {change}")
        else:
            seq = self.last_seq()
            os.kill(bond.daemon_pid(), signal.SIGHUP)

            def reloaded() -> bool:
                return any(e["kind"] == "config" for e in bond.events(seq))

            try:
                self.lab.wait_for(reloaded, timeout=10, what="the SIGHUP reload")
            except TimeoutError:
                raise SoakError("SIGHUP: no reload within 10 s:\n" + bond.tail()) from None
            fault.notes.append(f"SIGHUP: {change}")
        hosted = {a["address"] for a in bond.status()["addresses"]}
        if (EXTRA_V4 in hosted) != self.extra:
            fault.error = f"reload not applied: the group's addresses are {sorted(hosted)}"

    # -- the figures -------------------------------------------------------------------------
    def attribute_losses(self, final: bool) -> None:
        """Count the unanswered pings into the slots (fault and repair phases)."""
        times = sorted(self.ping_log.lost_times(trailing=final))
        if not self.faults:
            return
        bounds = [f.at - MARGIN for f in self.faults]
        ends = [*bounds[1:], (self.faults[-1].ended_at or time.time()) - MARGIN]
        for fault, begin, end in zip(self.faults, bounds, ends, strict=True):
            middle = fault.repaired_at - MARGIN if fault.repaired_at else end
            fault.lost_fault = count_in(times, begin, middle)
            fault.lost_repair = count_in(times, middle, end)
        self.outside = {"before": count_in(times, 0.0, bounds[0]),
                        "after": count_in(times, ends[-1], math.inf)}

    def slot_line(self, fault: Fault, sample: Resources) -> str:
        what = f"{fault.kind} {fault.member}" if fault.member else fault.kind
        if fault.failover_to:
            moved = f"-> {fault.failover_to} in {fault.failover_ms:.0f} ms"
        else:
            moved = "no failover"
        back = ""
        if fault.recovered_ms is not None and fault.kind != "reload":
            back = f", whole {fault.recovered_ms / 1000:.1f} s after repair"
        note = f" !! {fault.error}" if fault.error else ""
        return (f"[{sample.t:6.1f}s] {fault.index:>3}/{self.slots} {what:<14} {moved:<18} "
                f"failovers {fault.failovers_fault}+{fault.failovers_repair}{back}; "
                f"lost {fault.lost_fault}+{fault.lost_repair}; {sample.text()}{note}")

    def finish(self) -> None:
        """End the load, read its results, check and stop the daemon."""
        assert self.client is not None and self.ping is not None
        limit = self.iperf_seconds + 60 - self.now()
        try:
            self.client.wait(max(limit, 5.0))
        except subprocess.TimeoutExpired:
            stop(self.client, signal.SIGINT, timeout=5)
        stop(self.ping, signal.SIGINT, timeout=5)
        stop(self.server, signal.SIGTERM, timeout=5)
        for f in self.files:
            f.flush()
        report = iperf.Report.parse(self.client.returncode,
                                    (self.workdir / "iperf3-client.json").read_text(),
                                    (self.workdir / "iperf3-client.err").read_text())
        self.iperf = iperf_report(report, self.iperf_seconds)
        self.ping_log = PingLog.parse((self.workdir / "ping.txt").read_text(), PING_INTERVAL)
        self.attribute_losses(final=True)
        if self.bond.running():
            with contextlib.suppress(ControlError):
                self.alive_at_end = bool(self.bond.status())
        self.stop_daemon()
        log = self.bond.logs()
        self.traceback_in_log = "Traceback" in log
        self.log_warnings = sum(1 for line in log.splitlines()
                                if " WARNING " in line or " ERROR " in line)


def slot_count(minutes: float, interval: float) -> int:
    """How many faults fit in the run."""
    return int(minutes * 60 / interval + 1e-9)
