"""A member's NIC that disappears (deleted, renamed, moved to another namespace) fails the
member, not the daemon; a NIC that then takes the member's name is isolated and taken back
through the normal repair path."""

from __future__ import annotations

import os
import signal
import time

from vnicbond.lab import DATA_V4, ping_result, ping_stream, run, wait_ping
from vnicbond.lab.bond import cpu_seconds

#: A short failure detection time keeps the link-only repair hold (10 probe intervals) short.
FAST = {"failure_detection_time": "700ms"}


def _chain(lab, member: str) -> str:
    """The isolation chain of ``member`` as nft prints it ("" if there is none)."""
    out = lab.ns(lab.host, "nft", "list", "chain", "netdev", "vnicbond_ipmp0",
                 f"member_{member}", check=False)
    return out.stdout if out.returncode == 0 else ""


def _sysctl(lab, dev: str) -> str:
    return lab.ns(lab.host, "cat", f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").stdout.strip()


def _recreate(lab, i: int) -> None:
    """Plug a brand-new veth in under member ``i``'s name (left down: the daemon raises it)."""
    run(["ip", "link", "add", lab.member(i), "netns", lab.host, "type", "veth", "peer",
         lab.port(i), "netns", lab.switch])
    lab.ns(lab.switch, "ip", "link", "set", lab.port(i), "master", "br0", "up")


def test_deleted_nic_fails_over_and_a_recreated_one_is_taken_back(lab, make_bond):
    bond = make_bond(lab, **FAST)
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.active() == "m0"
    before = bond.member("m0")["rx_packets"]
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 900)
    time.sleep(0.5)
    lab.ns(lab.switch, "ip", "link", "del", "s0")  # the veth pair goes, m0 with it
    lab.wait_for(lambda: bond.member("m0")["state"] == "failed", what="m0 failed")
    assert bond.active() == "m1"
    assert _chain(lab, "m0") == ""  # nothing of ours is left hooked for the old name
    time.sleep(1.0)
    _recreate(lab, 0)
    # Taken back through the repair path (failback: it carries the traffic again).
    lab.wait_for(lambda: bond.active() == "m0", timeout=15, what="m0 back and active")
    sent, received, out = ping_result(ping)
    assert sent - received <= 6, out  # two moves, each like a link pull
    m0 = bond.member("m0")
    assert m0["link"] == "up" and m0["state"] == "active"
    assert m0["rx_packets"] > before  # counters go on across the new NIC
    assert 'device "m0"' in _chain(lab, "m0")  # isolated again
    assert _sysctl(lab, "m0") == "1"
    wait_ping(lab, lab.peer, DATA_V4, timeout=5)
    assert "is back on a new NIC" in bond.logs()
    assert bond.stop() == 0
    # The new NIC got its own settings back: it was down with IPv6 on when it appeared.
    assert _sysctl(lab, "m0") == "0"
    assert "state DOWN" in lab.ns(lab.host, "ip", "link", "show", "m0").stdout
    assert lab.ns(lab.host, "nft", "list", "tables").stdout.strip() == ""


def test_renamed_nic_is_given_back_and_taken_again_when_renamed_back(lab, make_bond):
    bond = make_bond(lab, **FAST)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.ns(lab.host, "ip", "link", "set", "m0", "down")
    lab.ns(lab.host, "ip", "link", "set", "m0", "name", "m0x")
    lab.wait_for(lambda: bond.member("m0")["state"] == "failed", what="m0 failed")
    assert bond.active() == "m1"
    wait_ping(lab, lab.peer, DATA_V4, timeout=5)
    # The renamed NIC is no longer ours: its settings are back and our chain is gone.
    lab.wait_for(lambda: _sysctl(lab, "m0x") == "0", what="m0x's IPv6 given back")
    assert _chain(lab, "m0") == ""
    lab.ns(lab.host, "ip", "link", "set", "m0x", "name", "m0")
    lab.wait_for(lambda: bond.active() == "m0", timeout=15, what="m0 back and active")
    assert _sysctl(lab, "m0") == "1"
    assert 'device "m0"' in _chain(lab, "m0")
    wait_ping(lab, lab.peer, DATA_V4, timeout=5)
    assert bond.stop() == 0


def test_nic_moved_to_another_namespace_and_back(lab, make_bond):
    bond = make_bond(lab, **FAST)
    wait_ping(lab, lab.peer, DATA_V4)
    aux = f"{lab.prefix}-aux"
    run(["ip", "netns", "add", aux])
    try:
        lab.ns(lab.host, "ip", "link", "set", "m0", "netns", aux)
        lab.wait_for(lambda: bond.member("m0")["state"] == "failed", what="m0 failed")
        assert bond.active() == "m1"
        wait_ping(lab, lab.peer, DATA_V4, timeout=5)
        run(["ip", "-n", aux, "link", "set", "m0", "netns", lab.host])
        lab.wait_for(lambda: bond.active() == "m0", timeout=15, what="m0 back and active")
        wait_ping(lab, lab.peer, DATA_V4, timeout=5)
        assert bond.member("m0")["link"] == "up"
    finally:
        run(["ip", "netns", "del", aux], check=False)
    assert bond.stop() == 0


def test_load_spread_takes_a_recreated_nic_back_with_its_new_mac(lab, make_bond):
    """In load-spread each member sends with its own MAC: a NIC re-created under a member's
    name has a new one, and the addresses that go home to it are announced with it."""
    bond = make_bond(lab, mode="load-spread", addresses=["198.18.0.10/24", "198.18.0.11/24"],
                     **FAST)
    start = {a["address"]: a["member"] for a in bond.status()["addresses"]}
    home0 = next(a for a, m in start.items() if m == "m0").split("/")[0]
    old_mac = bond.member("m0")["mac"]
    wait_ping(lab, lab.peer, home0)
    lab.ns(lab.switch, "ip", "link", "del", "s0")
    lab.wait_for(lambda: {a["member"] for a in bond.status()["addresses"]} == {"m1"},
                 what="m0's address to move to m1")
    wait_ping(lab, lab.peer, home0, timeout=5)
    _recreate(lab, 0)
    lab.wait_for(lambda: {a["address"]: a["member"] for a in bond.status()["addresses"]}
                 == start, timeout=15, what="the addresses to go home")
    new_mac = lab.ns(lab.host, "cat", "/sys/class/net/m0/address").stdout.strip()
    assert new_mac != old_mac and bond.member("m0")["mac"] == new_mac
    lab.wait_for(lambda: new_mac in lab.ns(lab.peer, "ip", "neigh", "show", home0).stdout,
                 timeout=3, what="the peer to learn the address is on m0's new MAC")
    sent, received, out = ping_result(ping_stream(lab, lab.peer, home0, 0.01, 100))
    assert sent == received == 100, out
    assert bond.member("m0")["rx_packets"] > 0
    assert bond.stop() == 0


def test_a_nic_deleted_while_link_events_overflowed_is_still_noticed(lab, make_bond):
    """The kernel drops link events when the daemon's netlink queue overflows (ENOBUFS); the
    daemon then re-reads every link. A member's NIC deleted in that window sends no event that
    survives, so the daemon must notice it is gone by looking, not by being told."""
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    pid = bond.daemon_pid()
    run(["ip", "link", "add", "noise0", "netns", lab.host, "type", "veth", "peer", "noise1",
         "netns", lab.host])
    os.kill(pid, signal.SIGSTOP)
    try:
        # Thousands of link events while the daemon cannot read: its queue overflows, and the
        # deletion that follows finds no room.
        script = "".join(f"link set noise0 {'up' if i % 2 else 'down'}\n" for i in range(3000))
        lab.ns(lab.host, "ip", "-batch", "-", input=script)
        lab.ns(lab.switch, "ip", "link", "del", "s0")
    finally:
        os.kill(pid, signal.SIGCONT)
    lab.wait_for(lambda: bond.member("m0")["state"] == "failed", timeout=10,
                 what="m0 failed after the overflow")
    assert bond.active() == "m1"
    assert "overflowed" in bond.logs()
    wait_ping(lab, lab.peer, DATA_V4, timeout=5)
    assert bond.stop() == 0


def test_a_member_set_down_and_up_on_the_host_carries_traffic_again(lab, make_bond):
    """`ip link set m0 down; up` on the host (not a pulled cable: the NIC itself goes down, and
    its sockets get ENETDOWN): while m0 is down the daemon does not spin on the pending error,
    and once it is up again m0 is repaired, takes the traffic back (failback) and forwards
    both ways, its probes answered again (its receive ring and probe sockets are read)."""
    bond = make_bond(lab, **FAST, probe={"targets": ["198.18.0.2"]},
                     members=[{"name": "m0", "test_address": "198.18.0.21/24"},
                              {"name": "m1", "test_address": "198.18.0.22/24"}])
    wait_ping(lab, lab.peer, DATA_V4)
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                 what="both members' probes answered")
    for _ in range(2):  # twice: the second time exercises the watch set up again the first
        lab.ns(lab.host, "ip", "link", "set", "m0", "down")
        lab.wait_for(lambda: bond.active() == "m1", what="m1 to take over")
        cpu = cpu_seconds(bond.daemon_pid())
        time.sleep(1.0)
        # A loop spinning on the pending error would burn the whole second.
        assert cpu_seconds(bond.daemon_pid()) - cpu < 0.5
        assert lab.ping_ok(lab.peer, DATA_V4)
        lab.ns(lab.host, "ip", "link", "set", "m0", "up")
        lab.wait_for(lambda: bond.active() == "m0", timeout=15, what="m0 to take traffic back")
        lab.wait_for(lambda: bond.member("m0")["probe"] == "ok", what="m0's probes answered")
        before = bond.member("m0")
        ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 100)
        sent, received, out = ping_result(ping)
        assert sent == received, out
        after = bond.member("m0")
        assert after["rx_packets"] - before["rx_packets"] >= 100
        assert after["tx_packets"] - before["tx_packets"] >= 100
    assert bond.member("m0")["drops"]["error"] >= 1  # the pending error was seen and cleared
