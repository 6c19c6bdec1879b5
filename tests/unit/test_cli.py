"""Unit tests for vnicbond.cli: the status table, the parser and the client commands.

The status documents below have the shape :meth:`vnicbond.runtime.daemon.Daemon.status` builds;
the guest MACs' entries (``status macs``) are also built here by
:func:`vnicbond.runtime.status.guest_macs` from a MAC table and placement.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from vnicbond import __version__
from vnicbond.cli import EXIT_FAILURE, EXIT_OK, build_parser, main
from vnicbond.core.fdb import MacTable
from vnicbond.runtime.status import guest_macs
from vnicbond.views import format_macs, format_status

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable
TIMEOUT = 30.0


def member(name: str, state: str, link: str, standby: bool = False,
           **counters: int) -> dict[str, Any]:
    return {"name": name, "state": state, "link": link, "probe": "disabled",
            "standby": standby, "test_address": None, **counters}


def group(name: str, members: list[dict[str, Any]], addresses: list[str],
          active: str | None, state: str = "ok", carrier: bool = True,
          failovers: int = 0) -> dict[str, Any]:
    return {"name": name, "mode": "active-backup", "state": state, "carrier": carrier,
            "fdt_ms": 10000, "failback": True, "active": active, "failovers": failovers,
            "address_moves": 0, "tap_dropped": 0, "members": members,
            "addresses": [{"address": a, "member": active, "source": "config"}
                          for a in addresses]}


def typical() -> dict[str, Any]:
    """A two-member group after a failover, counters in the millions."""
    return {"pid": 4242, "uptime_s": 86400.5, "groups": [group(
        "ipmp0",
        [member("enp1s0", "failed", "down", tx_packets=123_456_789, rx_packets=98_765_432,
                tx_bytes=987_654_321_000, rx_bytes=123_456_789_000, tx_dropped=3,
                rx_dropped=7),
         member("enp2s0", "active", "up", standby=True, tx_packets=5_555_555,
                rx_packets=4_444_444, tx_bytes=7_777_777_777, rx_bytes=6_666_666_666,
                tx_dropped=0, rx_dropped=0)],
        ["198.18.0.10/24", "2001:db8::10/64"], active="enp2s0", state="degraded",
        failovers=1)]}


def tables(text: str) -> list[list[str]]:
    blocks = text.split("\n\n")
    assert len(blocks) == 3, text
    return [block.splitlines() for block in blocks]


def parse_table(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """Split rows at the header's column starts, checking every cell is aligned to them."""
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            raw = line[start:end]
            cell = raw.strip()
            if cell:
                # Aligned: the value starts exactly under its header, after a gap.
                assert raw[0] != " ", f"column {names[i]} misaligned in {line!r}"
                assert start == 0 or line[start - 1] == " ", f"{names[i]} glued in {line!r}"
            cells.append(cell)
        assert line.rstrip() == line, f"trailing blanks in {line!r}"
        rows.append(cells)
    return names, rows


# -- format_status -----------------------------------------------------------------------------
def test_format_status_lists_every_group_member_and_address_aligned() -> None:
    status = typical()
    group_t, member_t, address_t = tables(format_status(status))

    names, rows = parse_table(group_t)
    assert names == ["GROUP", "MODE", "STATE", "CARRIER", "ACTIVE", "FAILOVERS"]
    assert rows == [["ipmp0", "active-backup", "degraded", "on", "enp2s0", "1"]]

    names, rows = parse_table(member_t)
    assert names == ["MEMBER", "GROUP", "STATE", "LINK", "PROBE", "TX", "RX", "TX_BYTES",
                     "RX_BYTES", "FLAGS"]
    assert [r[:5] for r in rows] == [["enp1s0", "ipmp0", "failed", "down", "disabled"],
                                     ["enp2s0", "ipmp0", "active", "up", "disabled"]]
    assert [r[9] for r in rows] == ["", "standby"]
    for r in rows:
        # Counters are abbreviated: at most three digits and a unit, bytes end in B.
        for cell in r[5:7]:
            assert re.fullmatch(r"\d{1,3}[KMGTP]?", cell), r
        for cell in r[7:9]:
            assert re.fullmatch(r"\d{1,3}[KMGTP]?B", cell), r
    # The failed member sent more than the active one and it shows in the units.
    assert rows[0][5].endswith("M") and rows[1][5].endswith("M")
    assert rows[0][7].endswith("GB") and rows[1][7].endswith("GB")

    names, rows = parse_table(address_t)
    assert names == ["ADDRESS", "GROUP", "MEMBER", "SOURCE"]
    assert rows == [["198.18.0.10/24", "ipmp0", "enp2s0", "config"],
                    ["2001:db8::10/64", "ipmp0", "enp2s0", "config"]]


def test_format_status_small_counters_are_exact() -> None:
    status = typical()
    m = status["groups"][0]["members"][0]
    m.update(tx_packets=0, rx_packets=7, tx_bytes=999, rx_bytes=12)
    _, rows = parse_table(tables(format_status(status))[1])
    assert rows[0][5:9] == ["0", "7", "999B", "12B"]


def test_format_status_fits_80_columns() -> None:
    text = format_status(typical())
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"


def test_format_status_group_without_active_member() -> None:
    status = {"pid": 1, "uptime_s": 1.0, "groups": [group(
        "ipmp0", [member("eth0", "failed", "down"), member("eth1", "offline", "up")],
        ["198.18.0.10/24"], active=None, state="failed", carrier=False)]}
    group_t, member_t, address_t = tables(format_status(status))
    _, rows = parse_table(group_t)
    assert rows == [["ipmp0", "active-backup", "failed", "off", "-", "0"]]
    _, rows = parse_table(member_t)
    # A member without counters (no datapath yet) shows zeros.
    assert [r[2:9] for r in rows] == [
        ["failed", "down", "disabled", "0", "0", "0B", "0B"],
        ["offline", "up", "disabled", "0", "0", "0B", "0B"]]
    _, rows = parse_table(address_t)
    assert rows == [["198.18.0.10/24", "ipmp0", "-", "config"]]


def test_format_status_several_groups() -> None:
    status = typical()
    status["groups"].append(group(
        "ipmp1", [member("eth9", "active", "up")], ["198.19.0.10/24"], active="eth9"))
    group_t, member_t, address_t = tables(format_status(status))
    assert [r[0] for r in parse_table(group_t)[1]] == ["ipmp0", "ipmp1"]
    assert [(r[0], r[1]) for r in parse_table(member_t)[1]] == [
        ("enp1s0", "ipmp0"), ("enp2s0", "ipmp0"), ("eth9", "ipmp1")]
    assert parse_table(address_t)[1][-1] == ["198.19.0.10/24", "ipmp1", "eth9", "config"]


def test_format_status_long_names_widen_their_column() -> None:
    status = typical()
    status["groups"][0]["members"][0]["name"] = "a-very-long-member-name"
    _, rows = parse_table(tables(format_status(status))[1])
    assert rows[0][0] == "a-very-long-member-name"
    assert rows[1][0] == "enp2s0"


def test_format_status_does_not_modify_its_input() -> None:
    status = typical()
    before = copy.deepcopy(status)
    format_status(status)
    assert status == before


# -- guest MACs (status macs) -------------------------------------------------------------------
GUEST1 = bytes.fromhex("025400000001")
GUEST2 = bytes.fromhex("025400000002")
MACVLAN = bytes.fromhex("025400000003")


def runtime(table: MacTable, mode: str, hosts: dict[bytes, str | None],
            active: str | None) -> Any:
    """What guest_macs reads of a group runtime."""
    return cast(Any, SimpleNamespace(
        guests=SimpleNamespace(table=table), cfg=SimpleNamespace(mode=mode),
        engine=SimpleNamespace(guests=SimpleNamespace(hosts=hosts),
                               group=SimpleNamespace(active=active))))


def guest_table() -> MacTable:
    table = MacTable(16, 300.0)
    table.heard(GUEST2, 90.0)
    table.heard(GUEST1, 95.5)
    table.register({MACVLAN})
    return table


def test_guest_macs_in_load_spreading_name_each_macs_member_and_age() -> None:
    rt = runtime(guest_table(), "load-spread",
                 {GUEST2: "enp1s0", GUEST1: "enp2s0", MACVLAN: "enp1s0"}, "enp1s0")
    assert guest_macs(rt, 100.0) == [
        {"mac": "02:54:00:00:00:02", "member": "enp1s0", "age_s": 10.0, "source": "learned"},
        {"mac": "02:54:00:00:00:01", "member": "enp2s0", "age_s": 4.5, "source": "learned"},
        {"mac": "02:54:00:00:00:03", "member": "enp1s0", "age_s": 0.0, "source": "registered"}]


def test_guest_macs_in_active_backup_live_on_the_active_member() -> None:
    table = guest_table()
    rt = runtime(table, "active-backup", dict.fromkeys([GUEST2, GUEST1, MACVLAN]), "enp2s0")
    assert [(m["mac"], m["member"]) for m in guest_macs(rt, 100.0)] == [
        ("02:54:00:00:00:02", "enp2s0"), ("02:54:00:00:00:01", "enp2s0"),
        ("02:54:00:00:00:03", "enp2s0")]
    rt = runtime(table, "active-backup", {}, None)  # the group failed
    assert [m["member"] for m in guest_macs(rt, 100.0)] == [None, None, None]


def macs_status() -> dict[str, Any]:
    status = typical()
    status["groups"][0]["macs"] = guest_macs(runtime(
        guest_table(), "load-spread", {GUEST2: "enp2s0", GUEST1: None, MACVLAN: "enp2s0"},
        "enp2s0"), 100.0)
    status["groups"].append(group("ipmp1", [member("enp3s0", "active", "up")], [], "enp3s0"))
    status["groups"][1]["macs"] = [{"mac": "02:54:00:00:01:01", "member": "enp3s0",
                                    "age_s": 123.456, "source": "learned"}]
    return status


def test_format_macs_lists_every_guest_mac_aligned() -> None:
    names, rows = parse_table(format_macs(macs_status()).splitlines())
    assert names == ["MAC", "GROUP", "MEMBER", "AGE", "SOURCE"]
    assert rows == [
        ["02:54:00:00:00:02", "ipmp0", "enp2s0", "10.0s", "learned"],
        ["02:54:00:00:00:01", "ipmp0", "-", "4.5s", "learned"],  # no member carries it
        ["02:54:00:00:00:03", "ipmp0", "enp2s0", "0.0s", "registered"],
        ["02:54:00:00:01:01", "ipmp1", "enp3s0", "123.5s", "learned"]]


def test_format_macs_without_guests_is_the_header_alone() -> None:
    assert format_macs(typical()) == "MAC  GROUP  MEMBER  AGE  SOURCE"  # no "macs": none


def test_status_macs_prints_the_macs_view(sock_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    status = macs_status()
    srv = OneShotServer(str(sock_dir / "s.sock"), {"ok": True, "result": status})
    try:
        assert main(["status", "macs", "--socket", srv.path]) == EXIT_OK
    finally:
        srv.close()
    assert srv.request == {"cmd": "status"}
    out = capsys.readouterr().out
    assert out == format_macs(status) + "\n"
    assert len(out.splitlines()) == 5


# -- parser ------------------------------------------------------------------------------------
def test_parser_status_options() -> None:
    args = build_parser().parse_args(["status", "--json", "--socket", "/tmp/x.sock"])
    assert args.command == "status" and args.json is True and args.socket == "/tmp/x.sock"
    args = build_parser().parse_args(["status"])
    assert args.json is False and args.socket is None and args.config is None


@pytest.mark.parametrize("argv", [[], ["run"], ["check"], ["bogus"]])
def test_parser_rejects_incomplete_commands_with_usage_error(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_parser_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vnicbond {__version__}"


# -- status against a control socket -----------------------------------------------------------
class OneShotServer:
    """Answers one control request with ``reply`` and records the request."""

    def __init__(self, path: str, reply: dict[str, Any]) -> None:
        self.path = path
        self.reply = reply
        self.request: dict[str, Any] | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(TIMEOUT)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.request = json.loads(data)
            conn.sendall(json.dumps(self.reply).encode() + b"\n")

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.sock.close()



def test_status_prints_the_table(sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = typical()
    srv = OneShotServer(str(sock_dir / "s.sock"), {"ok": True, "result": status})
    try:
        assert main(["status", "--socket", srv.path]) == EXIT_OK
    finally:
        srv.close()
    assert srv.request == {"cmd": "status"}
    out = capsys.readouterr().out
    assert out == format_status(status) + "\n"


def test_status_json_prints_the_document(sock_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    status = typical()
    srv = OneShotServer(str(sock_dir / "s.sock"), {"ok": True, "result": status})
    try:
        assert main(["status", "--json", "--socket", srv.path]) == EXIT_OK
    finally:
        srv.close()
    assert json.loads(capsys.readouterr().out) == status


def test_status_takes_the_socket_from_the_configuration(
        sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(sock_dir / "cfg.sock")
    config = sock_dir / "vnicbond.yaml"
    config.write_text(f"control:\n  socket: {path}\ngroups:\n  - name: ipmp0\n"
                      "    addresses: [198.18.0.10/24]\n    members:\n      - name: m0\n")
    status = typical()
    srv = OneShotServer(path, {"ok": True, "result": status})
    try:
        assert main(["status", "-c", str(config), "--json"]) == EXIT_OK
    finally:
        srv.close()
    assert json.loads(capsys.readouterr().out) == status


def test_status_error_reply_is_one_line_and_exit_1(
        sock_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = OneShotServer(str(sock_dir / "s.sock"), {"ok": False, "error": "group busy"})
    try:
        assert main(["status", "--socket", srv.path]) == EXIT_FAILURE
    finally:
        srv.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "vnicbond: group busy\n"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "vnicbond", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT, check=False)


def test_status_on_missing_socket_exits_1_with_one_line() -> None:
    assert not os.path.exists("/nonexistent")
    proc = run_cli("status", "--socket", "/nonexistent")
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "/nonexistent" in lines[0]
    assert lines[0].startswith("vnicbond: ")


HEAVY = ("scapy", "pyroute2", "uvloop")


def loaded_heavy(code: str) -> list[str]:
    probe = (f"{code}\nimport sys\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    proc = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_heavy_modules_are_importable_here() -> None:
    # Guards the next tests: they would pass vacuously if the probe could never see them.
    assert loaded_heavy("import scapy, pyroute2, uvloop") == sorted(HEAVY)


def test_importing_cli_and_control_stays_light() -> None:
    assert loaded_heavy("import vnicbond.cli, vnicbond.control") == []


def test_status_command_stays_light() -> None:
    code = ("import contextlib, io, vnicbond.cli\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            "    rc = vnicbond.cli.main(['status', '--socket', '/nonexistent'])\n"
            "assert rc == 1, rc")
    assert loaded_heavy(code) == []
