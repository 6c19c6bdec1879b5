"""A vnicbond daemon run in a lab: its configuration file, start, readiness, requests, stop.

The one way the netns tests, the demo and the tools run the bond: ``python -m vnicbond run -c
FILE`` in the lab's host namespace (``ip netns exec`` execs it, so the process's PID is the
daemon's and every stop goes to that PID only), its output appended to a log file, and the
control socket for everything else. It does not decide what the configuration says: callers
hand it a dictionary (written here as YAML) or an existing file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vnicbond.control import ControlError, request
from vnicbond.lab.topology import Lab, stop

START_TIMEOUT = 20.0


class BondError(RuntimeError):
    """The daemon exited, did not get ready, or ignored a signal; the message carries its log."""


@dataclass(frozen=True)
class Usage:
    """What a process holds at one moment."""

    rss_kib: int
    fds: int
    threads: int


def usage(pid: int) -> Usage:
    """Resident memory (``VmRSS``) and threads from /proc/PID/status, and the number of open
    descriptors. Raises OSError if the process is gone, LookupError if it is a zombie."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return Usage(int(fields["VmRSS"][0]), len(list(Path(f"/proc/{pid}/fd").iterdir())),
                 int(fields["Threads"][0]))


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, all its threads: user plus system time
    (``utime`` + ``stime`` of /proc/PID/stat, in clock ticks). Raises OSError if it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bond:
    """``vnicbond run`` in the lab's host namespace, its configuration file and log."""

    def __init__(self, lab: Lab, path: Path, socket: str, log: Path,
                 config: dict[str, Any] | None = None) -> None:
        self.lab = lab
        self.path = path
        self.socket = socket
        self.log = log
        #: What :meth:`write_config` writes to ``path`` (None: the file is the caller's).
        self.config = config
        self.proc: subprocess.Popen[str] | None = None

    @classmethod
    def in_workdir(cls, lab: Lab, workdir: Path, config: dict[str, Any]) -> Bond:
        """A bond whose ``config`` is written to ``workdir``/vnicbond.yaml, logging to
        ``workdir``/daemon.log; its control socket is the one ``config`` names."""
        bond = cls(lab, workdir / "vnicbond.yaml", str(config["control"]["socket"]),
                   workdir / "daemon.log", config)
        bond.write_config()
        return bond

    def write_config(self) -> None:
        """Write ``config`` to the configuration file (whole, by a rename)."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config))
        tmp.replace(self.path)

    # -- the process ---------------------------------------------------------------------------
    def start(self, wait: bool = True, wrap: tuple[str, ...] = (), extra: tuple[str, ...] = (),
              python: tuple[str, ...] = (), timeout: float = START_TIMEOUT,
              checkout: Path | None = None) -> Bond:
        """Start the daemon; with ``wait``, return once it answers status.

        ``wrap`` goes before the command (it must exec it, so the PID stays the daemon's),
        ``extra`` after it (e.g. ``--user``); ``python`` replaces this interpreter. The daemon
        gets a session of its own: a Ctrl-C meant for the caller does not reach it, the
        caller stops it by its PID. ``checkout`` runs the daemon of another checkout of
        vnicbond: it starts in that directory, which is also first on its PYTHONPATH, so
        ``-m vnicbond`` imports that checkout's package (the lab stays the caller's).
        """
        path = str(self.path)
        where: dict[str, Any] = {}
        if checkout is not None:
            paths = [str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])]
            path = str(self.path.resolve())
            where = {"cwd": str(checkout),
                     "env": {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}}
        with open(self.log, "a") as log:
            self.proc = self.lab.popen(self.lab.host, *wrap, *(python or (sys.executable,)),
                                       "-m", "vnicbond", "run", "-c", path, *extra,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, **where)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the daemon answers on its control socket, and check that the PID
        stopped later is the daemon's own."""
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            with contextlib.suppress(ControlError):
                self.request("status")
                break
            if time.monotonic() > deadline:
                raise BondError(f"daemon not ready after {timeout:g}s:\n{self.tail()}")
            time.sleep(0.1)
        cmdline = Path(f"/proc/{self.daemon_pid()}/cmdline").read_bytes()
        if b"vnicbond" not in cmdline:
            raise BondError(f"PID {self.daemon_pid()} is not the daemon: {cmdline!r}")

    def daemon_pid(self) -> int:
        """The daemon's PID (``ip netns exec`` execs it, so it is the started process's)."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The daemon's exit status; None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def running(self) -> bool:
        """Whether the daemon was started and has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def alive(self) -> None:
        """Raise BondError (with the log's tail) if the daemon has exited."""
        if not self.running():
            raise BondError(f"the daemon exited (status {self.returncode}):\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` to the daemon's PID and wait for it; its exit status. If it does not
        exit within ``timeout``, it is killed and BondError raised."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stop(self.proc, signal.SIGKILL, timeout=5)
                raise BondError(f"daemon ignored signal {sig}:\n{self.logs()}") from None
        return self.proc.returncode

    def close(self, timeout: float = 10.0) -> None:
        """Stop the daemon if it runs (SIGTERM, then SIGKILL); never raises for a daemon
        that is slow to go. For clean-up: :meth:`stop` is the checked way."""
        stop(self.proc, signal.SIGTERM, timeout)

    # -- what it says --------------------------------------------------------------------------
    def request(self, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
        """One control request (ControlError if it fails)."""
        return request(self.socket, cmd, timeout=timeout, **args)

    def status(self) -> dict[str, Any]:
        """The status document of the (first) group."""
        return self.request("status")["groups"][0]

    def member(self, name: str) -> dict[str, Any]:
        """One member's entry in status."""
        return next(m for m in self.status()["members"] if m["name"] == name)

    def active(self) -> str | None:
        """The member that carries traffic now."""
        return self.status()["active"]

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """The recorded events newer than ``since``."""
        return list(self.request("events", since=since))

    def cli(self, *args: str, timeout: float = 30.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """``vnicbond ARGS --socket SOCKET``, as an operator types it (client commands need
        no namespace)."""
        return subprocess.run([sys.executable, "-m", "vnicbond", *args, "--socket", self.socket],
                              capture_output=True, text=True, timeout=timeout, check=check)

    def logs(self) -> str:
        """Everything the daemon wrote."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.logs().splitlines()[-lines:])

    def usage(self) -> Usage:
        """What the daemon holds now (:func:`usage`)."""
        return usage(self.daemon_pid())
