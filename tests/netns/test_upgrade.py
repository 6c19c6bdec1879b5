"""Upgrading in place (``vnicbond upgrade``, SIGUSR2): the installed code takes over the running
daemon in the same process, and nothing the host relies on notices: the interface and its
index, TCP connections through it, the daemon's PID, the operator's decisions and the event
log. Code that refuses or fails to start loses nothing either."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

import vnicbond
from tests.netns.test_lifecycle import add_by_hand, ifindex, snapshot, still_there
from vnicbond.lab import (
    BRIDGED_ADDRESSES,
    DATA_V4,
    PEER_V4,
    Bond,
    Lab,
    PingLog,
    Stack,
    iperf,
    ping_stream,
    stop,
    unreachable,
    wait_ping,
)
from vnicbond.lab.l2 import Filters, nic_filters

#: The longest a 10 ms ping from the peer may go unanswered during an upgrade (the target is
#: under 100 ms; the bound leaves room for a loaded machine).
GAP_BOUND = 1.0


def upgrades(bond: Bond) -> int:
    """How many times the daemon was upgraded in place."""
    return int(bond.request("status")["upgrades"])


def test_an_upgrade_keeps_the_interface_a_tcp_transfer_and_the_pid(lab, make_bond, workdir):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    index, pid = ifindex(lab), bond.daemon_pid()
    add_by_hand(lab)
    pings = workdir / "ping.log"
    with iperf.server(lab, lab.peer), open(pings, "w") as out:
        client = iperf.start_client(lab, lab.host, PEER_V4, 8, options=["--bidir"])
        ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, output=out)
        try:
            time.sleep(2)
            upgraded = bond.cli("upgrade")
            time.sleep(2)
        finally:
            stop(ping, signal.SIGINT)
        report = iperf.wait(client, timeout=60)
    gap = PingLog.parse(pings.read_text()).longest_gap()
    print(f"longest gap between ping replies during the upgrade: {gap * 1000:.0f} ms")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith(f"upgraded in place: pid {pid}, vnicbond ")
    assert report.exit == 0 and report.error is None, report.stdout + report.stderr
    assert report.received()["bytes"] > 0 and report.received(reverse=True)["bytes"] > 0
    assert ifindex(lab) == index and still_there(lab)
    assert bond.daemon_pid() == pid and bond.request("status")["pid"] == pid
    assert upgrades(bond) == 1
    assert "starting as after a crash" not in bond.logs()
    assert gap < GAP_BOUND, f"ping went unanswered for {gap * 1000:.0f} ms"
    # and a planned stop after an upgrade still removes everything
    assert bond.stop() == 0
    assert snapshot(lab) == before
    assert "Traceback" not in bond.logs()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_a_stop_during_an_upgrade_still_removes_everything(lab, make_bond, delay):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    bond.request("upgrade", timeout=30)  # answered just before the exec
    time.sleep(delay)
    # SIGTERM to the old code (which then does not upgrade), or to the new code starting:
    # the stop waits until it knows what to undo.
    assert bond.stop() == 0
    assert snapshot(lab) == before
    assert "Traceback" not in bond.logs()


def test_sigusr2_upgrades_and_the_decisions_and_events_carry_over(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.cli("offline", "m0").returncode == 0  # traffic moves to m1
    events = bond.events()
    assert bond.proc is not None
    bond.proc.send_signal(signal.SIGUSR2)  # as systemctl kill -s USR2 vnicbond
    lab.wait_for(lambda: _upgraded(bond), timeout=20, what="the upgraded daemon to answer")
    st = bond.status()
    assert st["active"] == "m1"
    assert {m["name"]: m["state"] for m in st["members"]} == {"m0": "offline", "m1": "active"}
    after = bond.events()
    assert after[:len(events)] == events  # the log goes on, numbered on
    assert {(e["member"], e["state"], e["cause"]) for e in after[len(events):]} >= {
        ("m0", "offline", "upgrade"), ("m1", "active", "upgrade")}
    assert st["failovers"] == 1  # the move to m1 was counted once, before the upgrade
    assert lab.ping_ok(lab.peer, DATA_V4)


@pytest.mark.parametrize("mode", ["active-backup", "load-spread"])
def test_vms_behind_the_bond_keep_their_macs_and_members_across_an_upgrade(
        lab, make_bond, workdir, mode):
    stack = Stack(lab).bridge(ipv6=False)
    vms = [stack.add_vm(), stack.add_vm()]
    bond = make_bond(lab, mode=mode, addresses=list(BRIDGED_ADDRESSES))
    idle = member_filters(lab)
    stack.enslave("ipmp0")  # ipmp0 becomes a bridge port: the members accept everything
    lab.wait_for(lambda: all(f.promiscuity > idle[m].promiscuity
                             for m, f in member_filters(lab).items()),
                 what="the members to be promiscuous for the bridge")
    assert unreachable(lab, [(lab.peer, vm.v4) for vm in vms]) == []
    placed = {m["mac"]: m["member"] for m in bond.status()["macs"]}
    filters = member_filters(lab)
    assert len(placed) >= 2 and all(placed.values())
    pings = workdir / "ping.log"
    with open(pings, "w") as out:
        ping = ping_stream(lab, lab.peer, vms[1].v4, 0.01, output=out)
        try:
            time.sleep(1)
            upgraded = bond.cli("upgrade")
            time.sleep(1)
        finally:
            stop(ping, signal.SIGINT)
    assert upgraded.returncode == 0, upgraded.stderr
    log = PingLog.parse(pings.read_text())
    assert log.longest_gap() < GAP_BOUND and log.received, pings.read_text()
    # Right after the upgrade, before any guest spoke again, they are known where they were.
    assert {m["mac"]: m["member"] for m in bond.status()["macs"]} == placed
    assert unreachable(lab, [(lab.peer, vm.v4) for vm in vms]) == []
    # The sockets kept what their NICs accept: nothing asked for twice, nothing dropped.
    assert member_filters(lab) == filters


def member_filters(lab: Lab) -> dict[str, Filters]:
    """The members' receive filters now."""
    return {m: nic_filters(lab, lab.host, m) for m in ("m0", "m1")}


def _upgraded(bond: Bond, times: int = 1) -> bool:
    """Whether the daemon answers, upgraded ``times`` times: one request (the old code may
    answer one and be gone, in its exec, by the next)."""
    try:
        return int(bond.request("status", timeout=1.0)["upgrades"]) == times
    except Exception:  # noqa: BLE001 - not yet
        return False


def test_an_upgrade_the_installed_code_refuses_changes_nothing(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    good = bond.path.read_text()
    bond.path.write_text(good.replace("ipmp0", "ipmp 0"))  # not an interface name
    refused = bond.cli("upgrade")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "the installed code refuses to start" in lines[0], refused.stderr
    assert "nothing changed" in lines[0]
    assert upgrades(bond) == 0 and bond.running()
    assert lab.ping_ok(lab.peer, DATA_V4)


def test_a_changed_group_is_taken_over_as_after_a_crash(lab, make_bond):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    index, pid = ifindex(lab), bond.daemon_pid()
    bond.config["groups"][0]["members"] = [{"name": "m0"}]  # m1 leaves, not yet reloaded
    bond.write_config()
    upgraded = bond.cli("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "starting as after a crash" in bond.logs()
    assert [m["name"] for m in bond.status()["members"]] == ["m0"]
    assert ifindex(lab) == index and bond.daemon_pid() == pid
    wait_ping(lab, lab.peer, DATA_V4)
    # m1 was given back (its IPv6 and its ingress), m0 isolated again
    sysctls = snapshot(lab)["sysctls"]
    assert [s.strip() for s in sysctls] == ["1", before["sysctls"][1].strip()]
    assert bond.stop() == 0
    assert snapshot(lab) == before


@pytest.fixture
def checkout(workdir: Path) -> Path:
    """A copy of this checkout's package, to be replaced under the running daemon."""
    root = workdir / "checkout"
    shutil.copytree(Path(vnicbond.__file__).parent, root / "vnicbond",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_new_code_that_fails_to_start_leaves_the_interface_to_the_next_start(
        lab: Lab, make_bond, checkout: Path):
    before = snapshot(lab)
    bond = make_bond(lab, start=False)
    bond.start(checkout=checkout)
    wait_ping(lab, lab.peer, DATA_V4)
    index, pid = ifindex(lab), bond.daemon_pid()
    add_by_hand(lab)
    daemon = checkout / "vnicbond" / "runtime" / "daemon.py"
    good = daemon.read_text()
    daemon.write_text(good + '\nraise ImportError("broken on purpose")\n')
    failed = bond.cli("upgrade")
    assert failed.returncode == 1
    assert f"the daemon (pid {pid}) exited" in failed.stderr, failed.stderr
    assert bond.stop() == 1  # it had exited already
    assert "broken on purpose" in bond.logs(), bond.tail(30)
    # What the old code had set up is all there, for the next start to adopt.
    assert ifindex(lab) == index and still_there(lab)
    assert "vnicbond_ipmp0" in snapshot(lab)["tables"]
    daemon.write_text(good)
    bond.start(checkout=checkout)
    assert "dead instance" in bond.logs() and "adopted the existing TAP ipmp0" in bond.logs()
    wait_ping(lab, lab.peer, DATA_V4)
    assert ifindex(lab) == index and still_there(lab)
    assert bond.stop() == 0
    assert snapshot(lab) == before
