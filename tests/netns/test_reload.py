"""Reload (SIGHUP and `vnicbond reload`): changes take effect without a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import yaml

from tests.netns.test_traffic import transfer
from vnicbond.lab import DATA_V4, PEER_V4, ping_result, ping_stream, wait_ping

MIB = 1024 * 1024


def rewrite(bond, **group) -> None:
    bond.config["groups"][0].update(group)
    bond.path.write_text(yaml.safe_dump(bond.config))


def reload(bond) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vnicbond", "reload", "--socket", bond.socket],
                          capture_output=True, text=True, timeout=60)


def test_reload_adds_and_removes_addresses_while_traffic_runs(lab, make_bond):
    bond = make_bond(lab, addresses=[f"{DATA_V4}/24", "198.18.0.12/24"])
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, "198.18.0.12")
    tap = lab.ns(lab.host, "cat", "/sys/class/net/ipmp0/ifindex").stdout
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 300)
    time.sleep(0.3)
    rewrite(bond, addresses=[f"{DATA_V4}/24", "198.18.0.11/24"])
    result = reload(bond)
    assert result.returncode == 0, result.stderr
    assert "addresses added: 198.18.0.11/24" in result.stdout
    t0 = time.monotonic()
    wait_ping(lab, lab.peer, "198.18.0.11", timeout=3)
    assert time.monotonic() - t0 < 1.0
    assert not lab.ping_ok(lab.peer, "198.18.0.12", timeout=0.5)
    transfer(lab, lab.peer, lab.host, PEER_V4, 16 * MIB)  # TCP on the unchanged member
    sent, received, out = ping_result(ping)
    assert sent == received, out  # not one packet lost on the member that did not change
    assert lab.ns(lab.host, "cat", "/sys/class/net/ipmp0/ifindex").stdout == tap  # same TAP
    events = [e for e in bond.request("events") if e["kind"] == "config"]
    assert [e["state"] for e in events] == ["reloaded"]


def test_reload_adds_and_removes_members_and_changes_detection(lab3, make_bond):
    lab = lab3
    bond = make_bond(lab, members=[{"name": "m0"}, {"name": "m1"}])
    wait_ping(lab, lab.peer, DATA_V4)
    assert lab.ns(lab.host, "sysctl", "-n", "net.ipv6.conf.m2.disable_ipv6").stdout.strip() == "0"
    rewrite(bond, members=[{"name": "m0", "test_address": "198.18.0.21/24"},
                           {"name": "m2", "test_address": "198.18.0.23/24"}],
            failure_detection_time="300ms", probe={"targets": [PEER_V4]},
            announce={"count": 1, "interval": "50ms"}, failback=False)
    bond.proc.send_signal(signal.SIGHUP)
    lab.wait_for(lambda: [m["name"] for m in bond.status()["members"]] == ["m0", "m2"],
                 timeout=5, what="the reload")
    st = bond.status()
    assert st["fdt_ms"] == 300 and st["failback"] is False
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]), timeout=5,
                 what="probes on the new configuration")
    # m2 is isolated now, m1 given back.
    assert lab.ns(lab.host, "sysctl", "-n", "net.ipv6.conf.m2.disable_ipv6").stdout.strip() == "1"
    assert lab.ns(lab.host, "sysctl", "-n", "net.ipv6.conf.m1.disable_ipv6").stdout.strip() == "0"
    table = lab.ns(lab.host, "nft", "list", "table", "netdev", "vnicbond_ipmp0").stdout
    assert 'device "m2"' in table and 'device "m1"' not in table
    # The new member carries traffic when the active one is cut silently.
    lab.cut(0)
    lab.wait_for(lambda: bond.active() == "m2", timeout=3, what="probe failover to m2")
    assert lab.ping_ok(lab.peer, DATA_V4)
    assert bond.stop() == 0
    assert lab.ns(lab.host, "sysctl", "-n", "net.ipv6.conf.m2.disable_ipv6").stdout.strip() == "0"


def test_an_invalid_file_is_refused_and_the_running_configuration_stays(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    good = bond.path.read_text()
    bond.path.write_text(good.replace("m1", "m9"))
    check = lab.ns(lab.host, sys.executable, "-m", "vnicbond", "check", "-c", str(bond.path),
                   check=False)
    result = reload(bond)
    assert result.returncode == 1
    assert result.stderr.strip() == check.stderr.strip()  # the same line as `check`
    rewrite(bond, mode="load-spread")
    refused = reload(bond)
    assert refused.returncode == 1 and "needs a restart" in refused.stderr
    bond.proc.send_signal(signal.SIGHUP)  # refused the same way, logged, still running
    time.sleep(0.5)
    assert bond.proc.poll() is None
    assert "reload refused" in bond.logs()
    assert [m["name"] for m in bond.status()["members"]] == ["m0", "m1"]
    assert lab.ping_ok(lab.peer, DATA_V4)
