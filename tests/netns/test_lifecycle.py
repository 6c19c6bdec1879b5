"""Start-up, clean exit and recovery after a crash leave the system as it was found."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
import yaml

from vnicbond.lab import DATA_V4, PEER_V4, Lab, iperf, wait_ping


def snapshot(lab: Lab) -> dict[str, object]:
    """What the daemon may change in the host namespace."""
    links = lab.ns(lab.host, "ip", "-o", "link", "show").stdout
    return {
        "links": sorted(
            (line.split(":")[1].strip().split("@")[0], "UP" in line.split("<")[1].split(">")[0])
            for line in links.splitlines()),
        "tables": lab.ns(lab.host, "nft", "list", "tables").stdout,
        "sysctls": [lab.ns(lab.host, "sysctl", "-n", f"net.ipv6.conf.{lab.member(i)}.disable_ipv6"
                           ).stdout for i in range(lab.members)],
        "addresses": lab.ns(lab.host, "ip", "-o", "addr", "show").stdout,
        "routes": lab.ns(lab.host, "ip", "route", "show").stdout,
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_exit_restores_everything(lab, make_bond, sig):
    before = snapshot(lab)
    bond = make_bond(lab, routes=[{"to": "198.19.0.0/16", "via": "198.18.0.2"}])
    wait_ping(lab, lab.peer, DATA_V4)
    during = snapshot(lab)
    assert during != before and "ipmp0" in str(during["links"])
    assert "198.19.0.0/16 via 198.18.0.2 dev ipmp0" in str(during["routes"])
    assert bond.stop(sig) == 0
    assert snapshot(lab) == before
    assert "Traceback" not in bond.logs()


def test_restart_after_kill_9_cleans_up_and_comes_up(lab, make_bond):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
    left = snapshot(lab)
    assert "vnicbond_ipmp0" in str(left["tables"])  # what a crash leaves behind
    assert "ipmp0" in str(left["links"])  # the TAP stays, with its addresses
    assert f"inet {DATA_V4}/24" in str(left["addresses"])
    bond.start()
    assert "dead instance" in bond.logs()
    assert "adopted the existing TAP ipmp0" in bond.logs()
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.status()["state"] == "ok"
    # Restored once and isolated once again: one table, one drop chain per member.
    table = lab.ns(lab.host, "nft", "list", "table", "netdev", "vnicbond_ipmp0").stdout
    assert table.count("policy drop") == lab.members
    assert bond.stop() == 0
    assert snapshot(lab) == before
    assert not os.path.exists(os.path.join(os.path.dirname(bond.socket), "ipmp0.tap"))


def ifindex(lab: Lab, dev: str = "ipmp0") -> int:
    """The index of ``dev`` in the lab's host namespace."""
    return int(json.loads(lab.ns(lab.host, "ip", "-j", "link", "show", dev).stdout)[0]["ifindex"])


#: An address and a route the system (not the configuration) puts on the bond.
HAND_ADDRESS = "198.18.0.20/24"
HAND_ROUTE = ("198.19.5.0/24", "via", PEER_V4)


def add_by_hand(lab: Lab) -> None:
    """``ip addr add`` and ``ip route add`` on ipmp0, as a script or a DHCP client would."""
    lab.ns(lab.host, "ip", "addr", "add", HAND_ADDRESS, "dev", "ipmp0")
    lab.ns(lab.host, "ip", "route", "add", *HAND_ROUTE, "dev", "ipmp0")


def still_there(lab: Lab) -> bool:
    """Whether what :func:`add_by_hand` added is still on ipmp0."""
    addrs = lab.ns(lab.host, "ip", "-o", "addr", "show", "dev", "ipmp0").stdout
    routes = lab.ns(lab.host, "ip", "route", "show", "dev", "ipmp0").stdout
    return f"inet {HAND_ADDRESS}" in addrs and " ".join(HAND_ROUTE) in routes


def test_kill_9_keeps_the_interface_and_a_transfer_survives_the_restart(lab, make_bond):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    index = ifindex(lab)
    add_by_hand(lab)
    with iperf.server(lab, lab.peer):
        client = iperf.start_client(lab, lab.host, PEER_V4, 12, options=["--bidir"])
        time.sleep(3)
        assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
        assert ifindex(lab) == index and still_there(lab)  # nobody holds it: it stays
        bond.start()
        report = iperf.wait(client, timeout=60)
    assert report.exit == 0 and report.error is None, report.stdout + report.stderr
    assert report.received()["bytes"] > 0 and report.received(reverse=True)["bytes"] > 0
    assert ifindex(lab) == index
    assert still_there(lab)
    assert "adopted the existing TAP ipmp0" in bond.logs()
    assert bond.status()["state"] == "ok"
    assert bond.stop() == 0  # a planned stop removes the TAP, as always
    assert snapshot(lab) == before


FOREIGN_DEVICES = {
    "veth": ("ip", "link", "add", "ipmp0", "type", "veth", "peer", "name", "ipmp0p"),
    "bridge": ("ip", "link", "add", "ipmp0", "type", "bridge"),
    "tap without virtio-net headers": ("ip", "tuntap", "add", "dev", "ipmp0", "mode", "tap"),
    "tun": ("ip", "tuntap", "add", "dev", "ipmp0", "mode", "tun", "vnet_hdr"),
}


@pytest.mark.parametrize("kind", list(FOREIGN_DEVICES))
def test_a_device_of_the_groups_name_that_is_not_its_tap_is_refused(lab, make_bond, kind):
    lab.ns(lab.host, *FOREIGN_DEVICES[kind])
    bond = make_bond(lab, start=False)
    bond.config["log_level"] = "info"  # (debug would add asyncio's and pyroute2's lines)
    bond.write_config()
    before = snapshot(lab)
    device = lab.ns(lab.host, "ip", "-d", "link", "show", "ipmp0").stdout
    proc = lab.ns(lab.host, sys.executable, "-m", "vnicbond", "run", "-c", str(bond.path),
                  check=False, timeout=30)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "a device named ipmp0 exists" in lines[0] and "not vnicbond's TAP" in lines[0]
    assert snapshot(lab) == before
    assert lab.ns(lab.host, "ip", "-d", "link", "show", "ipmp0").stdout == device


def test_a_tap_made_by_someone_else_is_used_and_left_in_place(lab, make_bond):
    lab.ns(lab.host, "ip", "tuntap", "add", "dev", "ipmp0", "mode", "tap", "vnet_hdr")
    index = ifindex(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    assert ifindex(lab) == index
    assert "not made by vnicbond: left in place on stop" in bond.logs()
    assert bond.stop() == 0
    assert ifindex(lab) == index  # still there, as it was found


def test_second_instance_on_the_same_socket_is_refused(lab, make_bond):
    bond = make_bond(lab)
    second = lab.ns(lab.host, sys.executable, "-m", "vnicbond", "run", "-c", str(bond.path),
                    check=False, timeout=30)
    assert second.returncode == 1
    assert "another vnicbond" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert bond.status()["state"] == "ok"  # the first one is unharmed


BAD_CONFIGS = {
    "unknown key": ({"colour": "blue"}, "groups[0].colour"),
    "bad address": ({"addresses": ["198.18.0.300/24"]}, "groups[0].addresses[0]"),
    "bad duration": ({"failure_detection_time": "fast"}, "groups[0].failure_detection_time"),
    "wrong type": ({"failback": "sometimes"}, "groups[0].failback"),
    "duplicate member": ({"members": [{"name": "m0"}, {"name": "m0"}]}, "groups[0].members[1]"),
    "missing member list": ({"members": None}, "groups[0]"),
    "member that does not exist": ({"members": [{"name": "m0"}, {"name": "m9"}]},
                                   "groups[0].members[1].name"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_invalid_config_is_refused_and_nothing_changes(lab, make_bond, name):
    override, key = BAD_CONFIGS[name]
    before = snapshot(lab)
    bond = make_bond(lab, start=False)
    config = bond.config
    config["groups"][0].update(override)
    if config["groups"][0]["members"] is None:
        del config["groups"][0]["members"]
    bond.path.write_text(yaml.safe_dump(config))
    for verb in ("check", "run"):
        proc = lab.ns(lab.host, sys.executable, "-m", "vnicbond", verb, "-c", str(bond.path),
                      check=False, timeout=30)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(bond.path) in lines[0] and key in lines[0]
    assert snapshot(lab) == before


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.6, 0.9, 1.2])
def test_sigterm_at_any_moment_of_start_up_leaves_nothing(lab, make_bond, delay):
    before = snapshot(lab)
    bond = make_bond(lab, start=False)
    bond.start(wait=False)
    time.sleep(delay)
    status = bond.stop()
    assert status in (0, -signal.SIGTERM), bond.logs()
    assert "Traceback" not in bond.logs()
    assert snapshot(lab) == before
    assert not os.path.exists(bond.socket)
    assert not os.path.exists(os.path.join(os.path.dirname(bond.socket), "ipmp0.state"))
    assert not os.path.exists(os.path.join(os.path.dirname(bond.socket), "ipmp0.tap"))
    # and the next start is a normal one
    bond.start()
    assert bond.status()["state"] == "ok"
