"""Fixtures for the network-namespace tests: a fresh lab per test and a daemon on it.

These tests need root (namespaces, veth, nftables). Every namespace a test creates carries a
unique prefix and is removed when the test ends, pass or fail; every daemon is stopped by its
PID. The lab, the daemon (``Bond``) and the ping helpers live in :mod:`vnicbond.lab`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vnicbond.lab import DATA_V4, DATA_V6, Bond, Lab, remove_stale

REQUIRED_TOOLS = ("ip", "nft", "ping", "iperf3", "tcpdump", "dnsmasq", "udhcpc")


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
        bond = Bond.in_workdir(lab, workdir, base_config(lab, sock, **group))
        bonds.append(bond)
        return bond.start() if start else bond

    yield factory
    for bond in bonds:
        bond.close()
