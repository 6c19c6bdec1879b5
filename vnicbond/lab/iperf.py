"""iperf3 across the lab: a one-shot server, clients with JSON reports, and the reports read.

Servers are ``iperf3 -s -1 -J`` (one test, then they exit), ready when their port listens and
stopped by PID; clients are ``iperf3 -c ... -J --connect-timeout 5000``. A :class:`Report`
gives the client's ``-J`` document's parts (totals each way, retransmits, 1-s intervals);
what a figure means for a benchmark or a test is the caller's to say.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnicbond.lab.topology import Lab, stop

PORT = 5201


def listening(lab: Lab, ns: str, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in ``ns``."""
    out = lab.ns(ns, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
    return bool(out.strip())


def start_server(lab: Lab, ns: str, port: int = PORT, bind: str | None = None,
                 **popen: Any) -> subprocess.Popen[str]:
    """A one-shot iperf3 server in ``ns`` (on ``bind`` only, if given), returned once it
    listens (or has exited: its status says why). ``popen`` goes to :meth:`Lab.popen`."""
    cmd = ["iperf3", "-s", "-1", "-J", "-p", str(port), *(["-B", bind] if bind else [])]
    proc = lab.popen(ns, *cmd, **popen)
    try:
        lab.wait_for(lambda: listening(lab, ns, port) or proc.poll() is not None, timeout=10,
                     what=f"iperf3 server in {ns} on port {port}")
    except BaseException:
        stop(proc, timeout=5)
        raise
    return proc


@contextlib.contextmanager
def server(lab: Lab, ns: str, port: int = PORT,
           bind: str | None = None) -> Iterator[subprocess.Popen[str]]:
    """:func:`start_server`, stopped by its PID when the block is left."""
    proc = start_server(lab, ns, port, bind)
    try:
        yield proc
    finally:
        stop(proc, timeout=5)


def start_client(lab: Lab, ns: str, target: str, seconds: int, port: int = PORT,
                 options: Sequence[str] = (), **popen: Any) -> subprocess.Popen[str]:
    """An iperf3 client in ``ns`` testing ``target`` for ``seconds`` with ``options``
    (``-u``, ``-P``, ``--bidir``, ...), its report in JSON on its standard output."""
    return lab.popen(ns, "iperf3", "-c", target, "-p", str(port), "-t", str(seconds), "-J",
                     "--connect-timeout", "5000", *options, **popen)


def wait(proc: subprocess.Popen[str], timeout: float) -> Report:
    """The report of a client started with pipes, once it exits; after ``timeout`` seconds
    it is killed and the report says it timed out."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Report(proc.returncode, out, err, None, timed_out=True)
    return Report.parse(proc.returncode, out, err)


@dataclass
class Report:
    """An iperf3 client's exit status, output and ``-J`` document (None if it printed none)."""

    exit: int | None
    stdout: str
    stderr: str
    data: dict[str, Any] | None
    timed_out: bool = False
    end: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.end = (self.data or {}).get("end", {})

    @classmethod
    def parse(cls, returncode: int | None, stdout: str, stderr: str) -> Report:
        """Read a client's output."""
        try:
            data = json.loads(stdout)
        except ValueError:
            data = None
        return cls(returncode, stdout, stderr, data if isinstance(data, dict) else None)

    @property
    def error(self) -> str | None:
        """What iperf3 reported as its error, if anything."""
        error = (self.data or {}).get("error")
        return None if error is None else str(error)

    def received(self, reverse: bool = False) -> dict[str, Any]:
        """The receiver's totals (``bytes``, ``bits_per_second``, ``seconds``, ...): of the
        test's direction, or with ``reverse`` of the reverse one of a ``--bidir`` test."""
        return dict(self.end.get("sum_received_bidir_reverse" if reverse else "sum_received")
                    or {})

    def retransmits(self, reverse: bool = False) -> int:
        """The sender's TCP retransmits, in the test's or the reverse direction."""
        sent = self.end.get("sum_sent_bidir_reverse" if reverse else "sum_sent") or {}
        return int(sent.get("retransmits", 0))

    def stalled_seconds(self) -> list[float]:
        """The starts of the 1-s intervals in which a direction moved nothing."""
        stalled = []
        for interval in (self.data or {}).get("intervals", []):
            for key in ("sum", "sum_bidir_reverse"):
                part = interval.get(key)
                if part is not None and int(part.get("bytes", 0)) == 0:
                    stalled.append(round(float(part.get("start", 0.0)), 1))
                    break
        return stalled
