"""Restarts that keep the interface, without root: which existing device may be adopted as the
group's TAP and whether it is vnicbond's, reading an upgrade's hand-over, the bridge that
forwards while new code starts, and the ``vnicbond upgrade`` client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.conftest import deadline
from tests.unit.test_cli import TIMEOUT, loaded_heavy
from vnicbond.cli import EXIT_FAILURE, EXIT_OK, main
from vnicbond.config import parse_config
from vnicbond.runtime import bridge, upgrade
from vnicbond.system.tap import IFF_TAP, IFF_TUN, Found, is_ours, refusal

# -- which device is the group's TAP --------------------------------------------------------------
TAP = Found(7, "tun", IFF_TAP, pi=False, vnet_hdr=True)


@pytest.mark.parametrize(("found", "what"), [
    (Found(7, "veth"), "is a veth device"),
    (Found(7, "bridge"), "is a bridge device"),
    (Found(7, None), "is a device that is not a TAP"),
    (Found(7, "tun", IFF_TUN, vnet_hdr=True), "is a TUN device"),
    (Found(7, "tun", IFF_TAP, pi=True, vnet_hdr=True), "other flags (packet information on)"),
    (Found(7, "tun", IFF_TAP), "other flags (virtio-net headers off)"),
    (Found(7, "tun", IFF_TAP, vnet_hdr=True, multi_queue=True), "other flags (multiple queues)"),
])
def test_a_device_that_is_not_our_kind_of_tap_is_refused_in_one_line(found: Found,
                                                                     what: str) -> None:
    why = refusal("ipmp0", found)
    assert why is not None and what in why
    assert why.startswith("group ipmp0: a device named ipmp0 exists and ")
    assert "nothing was changed" in why and "\n" not in why


def test_a_tap_with_our_flags_may_be_adopted() -> None:
    assert refusal("ipmp0", TAP) is None


@pytest.mark.parametrize(("record", "ours"), [
    (None, False),  # made by someone else (ip tuntap, systemd-networkd)
    ({"name": "ipmp0", "index": 7}, True),  # made by a dead instance
    ({"name": "ipmp0", "index": None}, True),  # it died before the TAP had an index
    ({"name": "ipmp0", "index": 8}, False),  # that one went; someone made this one
    ({"name": "ipmp1", "index": 7}, False),
])
def test_whether_a_tap_is_vnicbonds_is_in_its_record(record: dict[str, Any] | None,
                                                     ours: bool) -> None:
    assert is_ours(record, "ipmp0", 7) is ours


# -- reading a hand-over ----------------------------------------------------------------------
CONFIG = parse_config("""\
groups:
  - name: ipmp0
    mac: 02:00:00:00:00:10
    addresses: [198.18.0.10/24]
    members: [{name: m0}, {name: m1}]
""")


def handed(**changes: Any) -> upgrade.Handover:
    g = CONFIG.groups[0]
    group = {"name": "ipmp0", "mode": g.mode, "mac": g.mac.hex(), "mtu": g.mtu,
             "members": ["m0", "m1"]}
    state = {"format": upgrade.FORMAT, "pid": os.getpid(), "groups": [group]}
    for key, value in changes.items():
        if key in group:
            group[key] = value
        else:
            state[key] = value
    return upgrade.Handover(state)


def test_a_hand_over_matching_the_configuration_is_usable() -> None:
    assert handed().problem(CONFIG) is None


@pytest.mark.parametrize(("change", "problem"), [
    ({"format": 0}, "hand-over format 0"),
    ({"pid": 1}, "written by another process"),
    ({"groups": []}, "groups changed"),
    ({"members": ["m0"]}, "ipmp0's members changed"),
    ({"mtu": 9000}, "ipmp0's mtu changed"),
    ({"mac": "020000000011"}, "ipmp0's mac changed"),
    ({"mode": "load-spread"}, "ipmp0's mode changed"),
])
def test_a_hand_over_that_does_not_match_is_not_used(change: dict[str, Any],
                                                     problem: str) -> None:
    why = handed(**change).problem(CONFIG)
    assert why is not None and problem in why


def test_take_reads_the_hand_over_once(monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    memfd = os.memfd_create("test", 0)
    os.write(memfd, json.dumps({"format": upgrade.FORMAT, "pid": os.getpid(),
                                "upgrades": 2}).encode())
    os.lseek(memfd, 0, os.SEEK_SET)
    monkeypatch.setenv(upgrade.ENV, f"{memfd}:{inherited}")
    taken = upgrade.take()
    assert taken is not None and taken.upgrades == 3 and taken.fds == {inherited}
    assert upgrade.ENV not in os.environ  # not passed on to anything the daemon runs
    assert upgrade.take() is None
    taken.release()
    with pytest.raises(OSError):
        os.fstat(inherited)


def test_an_unreadable_hand_over_is_dropped_and_what_it_names_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    kept = os.open(os.devnull, os.O_RDONLY)  # not inheritable: not the hand-over's
    memfd = os.memfd_create("test", 0)
    os.write(memfd, b"{not json")
    os.lseek(memfd, 0, os.SEEK_SET)
    monkeypatch.setenv(upgrade.ENV, f"{memfd}:{inherited},{kept}")
    assert upgrade.take() is None
    with pytest.raises(OSError):
        os.fstat(inherited)
    os.fstat(kept)
    os.close(kept)


# -- the bridge ---------------------------------------------------------------------------------
class Forwarder:
    """Stands for a datapath: echoes what arrives on one pipe to another, from the bridge."""

    def __init__(self) -> None:
        self.tap_fd, self.inlet = os.pipe()
        self.outlet, self.out = os.pipe()
        # (the bridge keeps the TAP's and the ports' descriptors, and closes every other)
        self.ports = {"m0": SimpleNamespace(rx=True, sock=SimpleNamespace(
            fileno=lambda: self.out))}
        self.loop: Any = None
        self.on_guests: Any = object()
        self.moved = 0

    def watch(self) -> None:
        self.loop.add_reader(self.tap_fd, self.forward)

    def forward(self) -> None:
        os.write(self.out, os.read(self.tap_fd, 100))
        self.moved += 1

    def cursors(self) -> dict[str, tuple[int, int]]:
        return {"m0": (self.moved, 7)}


def test_the_bridge_forwards_until_stopped_then_says_where_it_stopped() -> None:
    fwd = Forwarder()
    started = bridge.start({"ipmp0": fwd})  # type: ignore[dict-item]
    assert started is not None
    pid, sock = started
    with deadline(10):
        for frame in (b"one", b"two"):
            os.write(fwd.inlet, frame)
            assert os.read(fwd.outlet, 100) == frame  # moved by the child, not by this process
    assert fwd.moved == 0
    assert bridge.finish(pid, sock) == {"ipmp0": {"m0": (2, 7)}}
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped


def test_a_bridge_that_does_not_answer_is_killed() -> None:
    started = bridge.start({})
    assert started is not None
    pid, sock = started
    os.kill(pid, 19)  # SIGSTOP: it cannot answer
    assert bridge.finish(pid, sock, timeout=0.2) is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# -- the client ---------------------------------------------------------------------------------
class Daemon:
    """Answers control requests in turn with ``replies`` (None: close without answering)."""

    def __init__(self, path: str, replies: list[dict[str, Any] | None]) -> None:
        self.path = path
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(TIMEOUT)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for reply in self.replies:
            conn, _ = self.sock.accept()
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    data += conn.recv(65536)
                self.requests.append(json.loads(data))
                if reply is not None:
                    conn.sendall(json.dumps({"ok": True, "result": reply}).encode() + b"\n")
        self.sock.close()  # what a daemon that died leaves: nobody listens

    def close(self) -> None:
        self.thread.join(TIMEOUT)


def test_upgrade_waits_for_the_new_code_to_answer(sock_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pid = os.getpid()
    daemon = Daemon(str(sock_dir / "c.sock"), [
        {"pid": pid, "version": "1.0", "upgrades": 0},
        {"pid": pid, "version": "1.0", "upgrades": 0, "groups": []},  # the old code still
        {"pid": pid, "version": "1.1", "upgrades": 1, "groups": []}])
    try:
        assert main(["upgrade", "--socket", daemon.path]) == EXIT_OK
    finally:
        daemon.close()
    assert [r["cmd"] for r in daemon.requests] == ["upgrade", "status", "status"]
    assert capsys.readouterr().out == f"upgraded in place: pid {pid}, vnicbond 1.0 -> 1.1\n"


def test_upgrade_says_so_when_the_new_code_did_not_start(sock_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    daemon = Daemon(str(sock_dir / "c.sock"), [{"pid": pid, "version": "1.0", "upgrades": 0}])
    try:
        assert main(["upgrade", "--socket", daemon.path, "--wait", "10"]) == EXIT_FAILURE
    finally:
        daemon.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the daemon (pid {pid}) exited" in err[0]
    assert "the next start adopts them" in err[0]


def test_the_upgrade_command_stays_light() -> None:
    code = ("import contextlib, io, vnicbond.cli\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            "    rc = vnicbond.cli.main(['upgrade', '--socket', '/nonexistent'])\n"
            "assert rc == 1, rc")
    assert loaded_heavy(code) == []
