"""Pinging across the lab: waiting for an address to answer, which of many pairs answer (a
ping matrix), a ping stream and its parser.

The stream is ``ping -n -D``: every reply line carries its time, so the parser can tell when
each icmp_seq was answered and in what round-trip time, the longest gap between replies, and
about when each lost one was sent (dated between the replies around it). It runs ping and
reads its output; it judges nothing.
"""

from __future__ import annotations

import bisect
import itertools
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from vnicbond.lab.topology import Lab

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+)\b.*?(\(DUP!\))?$")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")
_RTT = re.compile(r"= [\d.]+/[\d.]+/([\d.]+)/")
_TIME = re.compile(r" time=([\d.]+) ms")


def wait_ping(lab: Lab, ns: str, address: str, timeout: float = 15.0) -> None:
    """Wait until ``address`` answers ping from ``ns`` (IPv6 data addresses run DAD first)."""
    lab.wait_for(lambda: lab.ping_ok(ns, address, timeout=0.5), timeout=timeout,
                 what=f"{address} to answer ping from {ns}")


def unreachable(lab: Lab, pairs: Sequence[tuple[str, str]], deadline: float = 3.0) -> list[str]:
    """Ping every (namespace, address) pair at once, each until its first reply (one ping
    every 0.2 s, for at most ``deadline`` seconds); the pairs that got none, as ``NS ->
    ADDRESS`` with the lab's prefix left out of NS (empty: all answered)."""
    cmd = ["ping", "-n", "-q", "-c", "1", "-i", "0.2", "-w", f"{deadline:g}"]
    procs = [(ns, address, lab.popen(ns, *cmd, address)) for ns, address in pairs]
    failed = []
    for ns, address, proc in procs:
        try:
            proc.communicate(timeout=deadline + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{ns.removeprefix(f'{lab.prefix}-')} -> {address}")
    return failed


def ping_stream(lab: Lab, ns: str, address: str, interval: float, count: int | None = None,
                output: TextIO | None = None) -> subprocess.Popen[str]:
    """Start ``ping -n -D -i INTERVAL`` from ``ns`` (root allows 10 ms): ``count`` probes
    (waiting 1 s for the last replies), or until stopped with SIGINT. Its output goes to a
    pipe, or line by line to ``output`` (a file read while ping runs)."""
    cmd = ["ping", "-n", "-D", "-i", str(interval)]
    if count is not None:
        cmd += ["-c", str(count), "-W", "1"]
    if output is None:
        return lab.popen(ns, *cmd, address)
    linebuf = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
    return lab.popen(ns, *linebuf, *cmd, address, stdout=output, stderr=subprocess.STDOUT,
                     start_new_session=True)


def ping_result(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, int, str]:
    """(transmitted, received, output) of a ping stream, once it ends; duplicates appear
    as 'DUP!'. Raises AssertionError if ping printed no summary."""
    out, err = proc.communicate(timeout=timeout)
    log = PingLog.parse(out)
    if log.transmitted is None or log.received is None:
        raise AssertionError(f"no ping summary:\n{out}\n{err}")
    return log.transmitted, log.received, out


@dataclass
class PingLog:
    """What a ``ping -D`` output says: when each icmp_seq (unwrapped past 65535) was
    answered and its round-trip time, the duplicates, and the summary's totals (None if ping
    printed none)."""

    interval: float = 0.01  # the stream's interval: dates losses after the last reply
    replies: dict[int, float] = field(default_factory=dict)
    rtt_ms: dict[int, float] = field(default_factory=dict)  # of the first reply to each
    duplicates: int = 0
    transmitted: int | None = None
    received: int | None = None
    max_rtt_ms: float | None = None

    @classmethod
    def parse(cls, text: str, interval: float = 0.01) -> PingLog:
        """Read a ``ping -D`` output, whole or as far as it has been written."""
        log = cls(interval)
        last: int | None = None
        for line in text.splitlines():
            m = _REPLY.match(line)
            if m is None:
                if s := _SUMMARY.search(line):
                    log.transmitted, log.received = int(s.group(1)), int(s.group(2))
                elif r := _RTT.search(line):
                    log.max_rtt_ms = float(r.group(1))
                continue
            seq = int(m.group(2))
            if last is not None:  # the unwrapped value nearest the last one
                seq += 65536 * round((last - seq) / 65536)
            last = seq
            if m.group(3) or seq in log.replies:
                log.duplicates += 1
                continue
            log.replies[seq] = float(m.group(1))
            if t := _TIME.search(line):
                log.rtt_ms[seq] = float(t.group(1))
        return log

    def longest_gap(self) -> float:
        """The longest time between two replies in a row, in seconds (0 with fewer than two)."""
        times = sorted(self.replies.values())
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def lost_times(self, trailing: bool) -> list[float]:
        """When each unanswered icmp_seq was sent (about): interpolated between the replies
        around it. ``trailing``: also those after the last reply, up to the summary's count
        (the run is over; dated from the last reply on, one interval each)."""
        if not self.replies:
            return []
        seqs = sorted(self.replies)
        last = seqs[-1]
        end = max(self.transmitted or last, last) if trailing else last
        times = []
        answered = set(seqs)
        for seq in range(1, end + 1):
            if seq in answered:
                continue
            i = bisect.bisect_left(seqs, seq)
            after = seqs[i] if i < len(seqs) else None
            before = seqs[i - 1] if i > 0 else None
            if before is not None and after is not None:
                t0, t1 = self.replies[before], self.replies[after]
                times.append(t0 + (t1 - t0) * (seq - before) / (after - before))
            elif before is not None:
                times.append(self.replies[before] + (seq - before) * self.interval)
            else:
                assert after is not None
                times.append(self.replies[after] - (after - seq) * self.interval)
        return times
