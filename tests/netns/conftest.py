"""Fixtures for the network-namespace tests: a fresh lab per test and a daemon on it.

These tests need root (namespaces, veth, nftables). Every namespace a test creates carries a
unique prefix and is removed when the test ends, pass or fail; every daemon is stopped by its
PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnicbond.lab import DATA_V4, DATA_V6, Lab, remove_stale

REQUIRED_TOOLS = ("ip", "nft", "ping", "iperf3", "tcpdump")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run rather than skip: these tests are the point of the project."""
    netns_items = [i for i in items if "tests/netns" in str(i.fspath)]
    if not netns_items:
        return
    for item in netns_items:  # so `-m "not netns"` runs the unit tests alone
        item.add_marker(pytest.mark.netns)
    if os.geteuid() != 0:
        pytest.exit("tests/netns need root (network namespaces): run `make test` as root", 2)
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.exit(f"tests/netns need {', '.join(missing)}: run tools/setup first", 2)


@pytest.fixture(scope="session", autouse=True)
def _stale_labs() -> None:
    remove_stale()


def base_config(lab: Lab, sock: str, **group: Any) -> dict[str, Any]:
    """A daemon configuration for ``lab``; keyword arguments override group keys."""
    g: dict[str, Any] = {
        "name": "ipmp0",
        "addresses": [f"{DATA_V4}/24", f"{DATA_V6}/64"],
        "announce": {"count": 3, "interval": "100ms"},
        "members": [{"name": lab.member(i)} for i in range(lab.members)],
    }
    g.update(group)
    return {"control": {"socket": sock}, "log_level": "debug", "groups": [g]}


class Bond:
    """A vnicbond daemon running in the lab's host namespace."""

    def __init__(self, lab: Lab, workdir: Path, config: dict[str, Any]) -> None:
        self.lab = lab
        self.workdir = workdir
        self.config = config
        self.socket = config["control"]["socket"]
        self.path = workdir / "vnicbond.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self, wait: bool = True, wrap: tuple[str, ...] = (),
              extra: tuple[str, ...] = (), python: tuple[str, ...] = ()) -> Bond:
        """Start the daemon; with ``wait``, return once it answers status.

        ``wrap`` goes before the command (it must exec it, so the PID stays the daemon's),
        ``extra`` after it (e.g. ``--user``); ``python`` replaces this interpreter.
        """
        log = open(self.log, "a")  # noqa: SIM115 - the daemon holds it until it exits
        python = python or (sys.executable,)
        self.proc = self.lab.popen(self.lab.host, *wrap, *python, "-m", "vnicbond",
                                   "run", "-c", str(self.path), *extra, stdout=log,
                                   stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the daemon answers on its control socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.logs()}")
            try:
                self.status()
                return
            except (RuntimeError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.logs()}")

    def request(self, cmd: str) -> Any:
        """One control request, answered from inside the host namespace's view."""
        from vnicbond.control import ControlError, request

        try:
            return request(self.socket, cmd)
        except ControlError as e:
            raise RuntimeError(str(e)) from None

    def status(self) -> dict[str, Any]:
        """The status document of the (single) group."""
        return self.request("status")["groups"][0]

    def member(self, name: str) -> dict[str, Any]:
        """One member's entry in status."""
        return next(m for m in self.status()["members"] if m["name"] == name)

    def active(self) -> str | None:
        """The member that carries traffic now."""
        return self.status()["active"]

    def logs(self) -> str:
        """Everything the daemon wrote."""
        return self.log.read_text() if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` to the daemon's PID and wait for it; returns its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"daemon ignored signal {sig}:\n{self.logs()}") from None
        return self.proc.returncode

    def daemon_pid(self) -> int:
        """PID of the daemon itself (``ip netns exec`` execs it, so it is the Popen's PID)."""
        assert self.proc is not None
        return self.proc.pid


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh two-member lab, always removed."""
    with Lab(members=2) as lab:
        yield lab


@pytest.fixture
def lab3() -> Iterator[Lab]:
    """A fresh three-member lab, always removed."""
    with Lab(members=3) as lab:
        yield lab


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A private directory for configs, logs and the control socket (short path)."""
    path = Path(tempfile.mkdtemp(prefix="vb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_bond(workdir: Path) -> Iterator[Any]:
    """Factory: ``make_bond(lab, **group_overrides)`` starts a daemon; all are stopped after."""
    bonds: list[Bond] = []

    def factory(lab: Lab, start: bool = True, **group: Any) -> Bond:
        sock = str(workdir / f"ctl{len(bonds)}.sock")
        bond = Bond(lab, workdir, base_config(lab, sock, **group))
        bonds.append(bond)
        return bond.start() if start else bond

    yield factory
    for bond in bonds:
        if bond.proc is not None and bond.proc.poll() is None:
            bond.proc.terminate()
            try:
                bond.proc.wait(10)
            except subprocess.TimeoutExpired:
                bond.proc.kill()
                bond.proc.wait(5)


def wait_ping(lab: Lab, ns: str, address: str, timeout: float = 15.0) -> None:
    """Wait until ``address`` answers ping from ``ns`` (IPv6 data addresses run DAD first)."""
    lab.wait_for(lambda: lab.ping_ok(ns, address, timeout=0.5), timeout=timeout,
                 what=f"{address} to answer ping from {ns}")


def ping_stream(lab: Lab, ns: str, address: str, interval: float, count: int
                ) -> subprocess.Popen[str]:
    """Start a ping of ``count`` probes every ``interval`` seconds (ping -i; root allows 10 ms)."""
    return lab.popen(ns, "ping", "-n", "-i", str(interval), "-c", str(count), "-W", "1",
                     address)


def ping_result(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[int, int, str]:
    """(transmitted, received, output) of a finished ping; duplicates appear as 'DUP!'."""
    out, err = proc.communicate(timeout=timeout)
    import re

    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, f"no ping summary:\n{out}\n{err}"
    return int(m.group(1)), int(m.group(2)), out


def json_lines(text: str) -> list[dict[str, Any]]:
    """Parse one JSON object per non-empty line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
