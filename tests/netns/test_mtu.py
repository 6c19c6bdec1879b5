"""The bond's MTU follows the TAP's: jumbo frames after `ip link set ipmp0 mtu 9000` or a reload,
the TAP set back when a member cannot take it, and the members' own MTUs given back on exit.

The lab's wire (switch ports, bridge, peer) carries 9000 bytes; the members start at 1500, so
the daemon has to raise them. A member that cannot go above 1500 is a macvlan on a veth of MTU
1500 (the kernel refuses a macvlan an MTU above its lower device's).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Iterator

import pytest
import yaml

from vnicbond.lab import DATA_V4, DATA_V6, PEER_V4, PEER_V6, Lab, run, wait_ping

JUMBO = 9000
#: ICMP payload of the big pings: an 8,042-byte frame, sent with DF set.
BIG = 8000


@pytest.fixture
def jumbo_lab() -> Iterator[Lab]:
    """Two members at MTU 1500 on a wire (ports, bridge, peer) of MTU 9000."""
    with Lab(members=2, mtu=JUMBO) as lab:
        for i in range(lab.members):
            lab.ns(lab.host, "ip", "link", "set", lab.member(i), "mtu", "1500")
        yield lab


def mtu(lab: Lab, dev: str) -> int:
    """``dev``'s MTU in the host namespace."""
    return int(lab.ns(lab.host, "cat", f"/sys/class/net/{dev}/mtu").stdout)


def ifindex(lab: Lab, dev: str) -> int:
    return int(lab.ns(lab.host, "cat", f"/sys/class/net/{dev}/ifindex").stdout)


def links(lab: Lab) -> list[tuple[str, int, bool]]:
    """Every link in the host namespace: its name, MTU and whether it is set up."""
    return sorted((link["ifname"], link["mtu"], "UP" in link["flags"])
                  for link in json.loads(lab.ns(lab.host, "ip", "-j", "link", "show").stdout))


def big_pings(lab: Lab, ns: str, address: str, count: int = 3) -> int:
    """How many of ``count`` pings of BIG bytes with DF set (``-M do``) are answered."""
    proc = lab.ns(ns, "ping", "-n", "-q", "-M", "do", "-s", str(BIG), "-c", str(count),
                  "-i", "0.2", "-W", "2", address, check=False, timeout=30)
    found = re.search(r"(\d+) received", proc.stdout)
    return int(found.group(1)) if found else 0


def assert_jumbo_both_ways(lab: Lab) -> None:
    """8000-byte pings with DF set, host to peer and peer to host, IPv4 and IPv6: all answered."""
    for ns, address in ((lab.host, PEER_V4), (lab.peer, DATA_V4),
                        (lab.host, PEER_V6), (lab.peer, DATA_V6)):
        assert big_pings(lab, ns, address) == 3, f"{ns} -> {address}"


def reload(bond, **group) -> tuple[int, str]:
    """Rewrite the group's keys and ask for a reload: (exit status, stderr)."""
    bond.config["groups"][0].update(group)
    bond.path.write_text(yaml.safe_dump(bond.config))
    proc = bond.cli("reload")
    return proc.returncode, proc.stderr


def test_the_tap_mtu_set_by_hand_is_followed_and_jumbo_frames_cross_both_ways(
        jumbo_lab, make_bond):
    lab = jumbo_lab
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    assert big_pings(lab, lab.peer, DATA_V4, 1) == 0  # the group's MTU is 1500 still
    pid, index = bond.daemon_pid(), ifindex(lab, "ipmp0")

    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "mtu", str(JUMBO))
    lab.wait_for(lambda: bond.status()["mtu"] == JUMBO, timeout=5, what="the group's MTU")
    assert [mtu(lab, m) for m in ("m0", "m1")] == [JUMBO, JUMBO]  # raised, as bonding does
    assert_jumbo_both_ways(lab)
    changes = [e for e in bond.events() if e["kind"] == "mtu"]
    assert [(e["old"], e["state"], e["cause"]) for e in changes] == [("1500", "9000", "link")]
    assert bond.daemon_pid() == pid and ifindex(lab, "ipmp0") == index

    # Lowered again: the TAP's checks follow, the members keep what they were given.
    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "mtu", "1500")
    lab.wait_for(lambda: bond.status()["mtu"] == 1500, timeout=5, what="the group's MTU")
    assert big_pings(lab, lab.peer, DATA_V4, 1) == 0
    assert lab.ping_ok(lab.peer, DATA_V4)
    assert [mtu(lab, m) for m in ("m0", "m1")] == [JUMBO, JUMBO]
    member = bond.member("m0")
    assert member["drops"]["oversize"] >= 1  # the peer's big ping, dropped before the TAP

    assert bond.stop() == 0
    assert [mtu(lab, m) for m in ("m0", "m1")] == [1500, 1500]  # given back


def test_mtu_changed_by_reload_without_restart_and_given_back_after_a_crash(
        jumbo_lab, make_bond):
    lab = jumbo_lab
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    pid, index = bond.daemon_pid(), ifindex(lab, "ipmp0")

    status, err = reload(bond, mtu=JUMBO)
    assert status == 0, err
    assert bond.daemon_pid() == pid and ifindex(lab, "ipmp0") == index
    assert mtu(lab, "ipmp0") == JUMBO and bond.status()["mtu"] == JUMBO
    assert [mtu(lab, m) for m in ("m0", "m1")] == [JUMBO, JUMBO]
    assert_jumbo_both_ways(lab)
    changes = [e for e in bond.events() if e["kind"] == "mtu"]
    assert [(e["old"], e["state"], e["cause"]) for e in changes] == [("1500", "9000", "reload")]

    # A crash leaves the members raised; the next start gives their MTU back before raising
    # them again for its configuration (mtu 9000 now), and its stop gives it back for good.
    assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
    bond.start()
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    assert mtu(lab, "ipmp0") == JUMBO
    assert [mtu(lab, m) for m in ("m0", "m1")] == [JUMBO, JUMBO]
    assert_jumbo_both_ways(lab)
    assert bond.stop() == 0
    assert [mtu(lab, m) for m in ("m0", "m1")] == [1500, 1500]


def test_an_mtu_set_by_hand_survives_a_crash_and_the_next_start(jumbo_lab, make_bond):
    """The TAP outlives a crash, and so does what the system set on it: the next start adopts
    it with the MTU it has (not the configuration's 1500), raises the members again and
    carries jumbo frames; its stop gives the members their MTU back."""
    lab = jumbo_lab
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "mtu", str(JUMBO))
    lab.wait_for(lambda: bond.status()["mtu"] == JUMBO, timeout=5, what="the group's MTU")
    index = ifindex(lab, "ipmp0")

    assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
    bond.start()
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    assert ifindex(lab, "ipmp0") == index
    assert mtu(lab, "ipmp0") == JUMBO and bond.status()["mtu"] == JUMBO
    assert [mtu(lab, m) for m in ("m0", "m1")] == [JUMBO, JUMBO]
    assert_jumbo_both_ways(lab)
    assert bond.stop() == 0
    assert [mtu(lab, m) for m in ("m0", "m1")] == [1500, 1500]


def test_a_nic_that_takes_a_members_name_is_raised_to_the_group_mtu(jumbo_lab, make_bond):
    lab = jumbo_lab
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "mtu", str(JUMBO))
    lab.wait_for(lambda: bond.status()["mtu"] == JUMBO, timeout=5, what="the group's MTU")
    lab.ns(lab.switch, "ip", "link", "del", "s0")  # the veth pair goes, m0 with it
    lab.wait_for(lambda: bond.member("m0")["state"] == "failed", what="m0 failed")
    # A new NIC of MTU 1500 under m0's name, on a switch port of 9000.
    run(["ip", "link", "add", "m0", "netns", lab.host, "mtu", "1500", "type", "veth",
         "peer", "s0", "netns", lab.switch, "mtu", str(JUMBO)])
    lab.ns(lab.switch, "ip", "link", "set", "s0", "master", "br0", "up")
    lab.wait_for(lambda: bond.active() == "m0", timeout=15, what="m0 back and active")
    assert mtu(lab, "m0") == JUMBO
    assert_jumbo_both_ways(lab)  # through the new NIC
    assert bond.stop() == 0
    assert [mtu(lab, m) for m in ("m0", "m1")] == [1500, 1500]  # each its own MTU back


@pytest.fixture
def macvlan_lab(jumbo_lab) -> Lab:
    """The jumbo lab with a macvlan ``mv1`` on m1 (MTU 1500): a member that cannot go higher."""
    lab = jumbo_lab
    lab.ns(lab.host, "ip", "link", "add", "link", "m1", "name", "mv1", "type", "macvlan",
           "mode", "bridge")
    lab.ns(lab.host, "ip", "link", "set", "m1", "up")
    lab.ns(lab.host, "ip", "link", "set", "mv1", "up")
    return lab


def test_a_member_that_cannot_take_the_mtu_sets_the_tap_back_and_says_why(
        macvlan_lab, make_bond):
    lab = macvlan_lab
    bond = make_bond(lab, members=[{"name": "m0"}, {"name": "mv1"}])
    wait_ping(lab, lab.peer, DATA_V4)
    pid, index = bond.daemon_pid(), ifindex(lab, "ipmp0")

    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "mtu", str(JUMBO))
    lab.wait_for(lambda: any(e["kind"] == "mtu_refused" for e in bond.events()), timeout=5,
                 what="the refusal")
    lab.wait_for(lambda: mtu(lab, "ipmp0") == 1500, timeout=5, what="the TAP's MTU set back")
    (refused,) = [e for e in bond.events() if e["kind"] == "mtu_refused"]
    assert (refused["member"], refused["state"], refused["old"], refused["reason"]) == (
        "mv1", "9000", "1500", "Invalid argument")
    assert not [e for e in bond.events() if e["kind"] == "mtu"]
    assert mtu(lab, "m0") == 1500  # raised first, then set back
    assert bond.status()["mtu"] == 1500
    line = bond.cli("events").stdout
    assert "mtu 9000 refused by mv1: Invalid argument; stays 1500" in line
    assert "member mv1 cannot take it (Invalid argument)" in bond.logs()
    assert lab.ping_ok(lab.peer, DATA_V4)

    # The same MTU by reload: refused in one line, nothing changed, the daemon carries on.
    status, err = reload(bond, mtu=JUMBO)
    assert status == 1
    assert err.strip() == ("vnicbond: reload: ipmp0's mtu 9000: member mv1 cannot take it "
                           "(Invalid argument); nothing changed")
    assert (mtu(lab, "ipmp0"), mtu(lab, "m0"), mtu(lab, "mv1")) == (1500, 1500, 1500)
    assert bond.daemon_pid() == pid and ifindex(lab, "ipmp0") == index
    assert lab.ping_ok(lab.peer, DATA_V4)
    assert bond.stop() == 0
    assert (mtu(lab, "m0"), mtu(lab, "mv1")) == (1500, 1500)


def test_a_configured_mtu_a_member_cannot_take_fails_the_start_and_changes_nothing(
        macvlan_lab, make_bond):
    lab = macvlan_lab
    before = links(lab)
    bond = make_bond(lab, start=False, mtu=JUMBO, members=[{"name": "m0"}, {"name": "mv1"}])
    proc = lab.ns(lab.host, sys.executable, "-m", "vnicbond", "run", "-c", str(bond.path),
                  check=False, timeout=30)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (  # the log before it is at level debug
        "vnicbond: group ipmp0: member mv1 cannot take the group's MTU 9000: Invalid argument")
    assert links(lab) == before  # m0 back at 1500 (and down, as it was), no TAP
    assert not os.path.exists(os.path.join(os.path.dirname(bond.socket), "ipmp0.state"))
