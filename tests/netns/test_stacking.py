"""Bridges, VMs, macvlans and containers on top of the bond (issue 12), with real traffic.

What a hypervisor or container host relies on when its uplink is ``ipmp0``: guests behind a
bridge over the TAP, or macvlans on it, reach the wire and each other in both modes; a failover
takes their MACs along (the switch learns them on the new member at once); an idle
container's macvlan is not forgotten; load spreading
puts each guest on one member and adds up the members' bandwidth; a guest flooding random
source MACs neither grows the daemon nor cuts the other guests off; the members' receive
filters are given back when the daemon goes, even by ``kill -9``; status and metrics show the
guests. Topology: :mod:`vnicbond.lab.stack` (``br-vm`` in the host namespace, VM namespaces
198.18.0.60+N, macvlan namespaces 198.18.0.50+N).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netns.scrape import scrape
from vnicbond.lab import (
    BRIDGED_ADDRESSES,
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PEER_V6,
    Bond,
    Guest,
    Lab,
    PingLog,
    Stack,
    iperf,
    ping_stream,
    unreachable,
    xfer,
)
from vnicbond.lab import flood as flooder
from vnicbond.lab.l2 import nic_filters, nic_mac, switch_fdb
from vnicbond.lab.stack import BRIDGE_MAC

AB, SPREAD = "active-backup", "load-spread"
MODES = [AB, SPREAD]
RATE_MBIT = 200  # load spreading: each member's wire
MEMBERS = ("m0", "m1")
ANNOUNCE_INTERVAL = 0.1  # announce.interval's default, in seconds


def bridged(lab: Lab, make_bond: Any, mode: str = AB, vms: int = 2, host: bool = True,
            **group: Any) -> tuple[Bond, Stack]:
    """The daemon with ``ipmp0`` a port of ``br-vm``, ``vms`` VMs on the bridge and, with
    ``host``, the host's own addresses (198.18.0.10, 2001:db8::10) on it. Without ``host``
    the bridge itself stays silent, so the VMs are the only guests."""
    stack = Stack(lab).bridge(ipv6=host)
    for _ in range(vms):
        stack.add_vm()
    bond = make_bond(lab, mode=mode, addresses=list(BRIDGED_ADDRESSES), **group)
    stack.enslave("ipmp0")
    if host:
        stack.host_address(DATA_V4, DATA_V6)
    return bond, stack


def reach(lab: Lab, pairs: list[tuple[str, str]]) -> None:
    """Every (namespace, address) pair answers ping."""
    assert unreachable(lab, pairs) == []


def both(guest: Guest) -> list[str]:
    return [guest.v4, guest.v6]


def guest_macs(bond: Bond) -> dict[str, dict[str, Any]]:
    """The guests in status, by MAC."""
    return {m["mac"]: m for m in bond.status()["macs"]}


def ping_to_file(lab: Lab, ns: str, address: str, path: Path):
    """A 10 ms ping stream written to ``path`` until it is stopped with SIGINT, returned once
    it has had 20 replies."""
    out = path.open("w")
    proc = ping_stream(lab, ns, address, 0.01, output=out)
    out.close()
    lab.wait_for(lambda: len(PingLog.parse(path.read_text()).replies) >= 20, timeout=5,
                 what=f"ping {address} from {ns} to answer")
    return proc


def stop_ping(proc: Any, path: Path) -> PingLog:
    """Stop a ping stream (its PID) and read what it said."""
    proc.send_signal(signal.SIGINT)
    proc.wait(10)
    log = PingLog.parse(path.read_text())
    assert log.transmitted is not None and log.received is not None, path.read_text()
    return log


# -- a bridge with VMs ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_vms_on_a_bridge_over_the_bond_reach_everyone(lab, make_bond, mode):
    bond, stack = bridged(lab, make_bond, mode)
    vm0, vm1 = stack.vms
    host = [DATA_V4, DATA_V6]
    reach(lab, [
        *((vm.ns, a) for vm in (vm0, vm1) for a in (PEER_V4, PEER_V6)),  # VM -> peer
        *((lab.peer, a) for a in (*both(vm0), *both(vm1), *host)),  # peer -> VM, host
        *((vm0.ns, a) for a in both(vm1)), *((vm1.ns, a) for a in both(vm0)),  # VM <-> VM
        *((lab.host, a) for a in (*both(vm0), *both(vm1))),  # host -> VM
    ])
    # TCP both ways between a VM and the peer, every byte checked.
    size = 16 << 20
    for server_ns, client_ns, address in ((lab.peer, vm0.ns, PEER_V4),
                                          (vm0.ns, lab.peer, vm0.v4)):
        result = xfer.start(lab, server_ns, client_ns, address, 5300, size).result(timeout=60)
        assert result["completed"], result
    assert bond.status()["tap_dropped"] == 0
    assert {vm0.mac, vm1.mac, BRIDGE_MAC} <= set(guest_macs(bond))


def test_failover_takes_the_vms_macs_to_the_new_member(lab, make_bond, workdir):
    bond, stack = bridged(lab, make_bond, announce={"count": 3, "interval": "100ms"})  # defaults
    vm0, vm1 = stack.vms
    reach(lab, [(lab.peer, vm0.v4), (lab.peer, vm1.v4)])
    macs = {vm0.mac, vm1.mac}
    lab.wait_for(lambda: all(switch_fdb(lab).get(m) == "s0" for m in macs),
                 what="the switch to learn the VMs on m0's port")
    seq = max((e["seq"] for e in bond.events()), default=0)
    log = workdir / "ping.txt"
    ping = ping_to_file(lab, lab.peer, vm0.v4, log)  # vm1 is silent meanwhile
    lab.link_down(0)
    # Poll the switch's forwarding database until both VMs are on m1's port: the silent vm1
    # gets there by the daemon's announcement (without one it takes seconds).
    deadline = time.monotonic() + 5
    while True:
        fdb = switch_fdb(lab)
        moved_at = time.time()  # the read that saw it ended by now
        if all(fdb.get(m) == "s1" for m in macs):
            break
        assert time.monotonic() < deadline, f"VMs' MACs not on s1: {fdb}"
    lab.wait_for(lambda: bond.active() == "m1", what="m1 to take over")
    failover = next(e for e in bond.events(since=seq) if e["kind"] == "member"
                    and e["member"] == "m1" and e["state"] == "active")
    assert moved_at - failover["time"] <= ANNOUNCE_INTERVAL, (
        f"the switch learned the VMs on s1 {moved_at - failover['time']:.3f} s after the "
        "failover")
    lab.wait_for(lambda: len(PingLog.parse(log.read_text()).replies) >= 150, timeout=5,
                 what="ping to go on after the failover")
    result = stop_ping(ping, log)
    assert result.transmitted - result.received <= 3, log.read_text()
    assert result.duplicates == 0
    assert all(m["member"] == "m1" for m in bond.status()["macs"])
    reach(lab, [(lab.peer, vm1.v4), (vm1.ns, PEER_V6)])


# -- macvlans -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_macvlans_on_the_bond_pass_the_bond_macvlan_matrix(lab, make_bond, mode):
    """The ping matrix of the kernel's selftest drivers/net/bonding/bond_macvlan.sh: client
    (the peer) to the bond and each macvlan, macvlan to macvlan, then each back to the
    client; IPv4 and IPv6."""
    bond = make_bond(lab, mode=mode)
    stack = Stack(lab)
    mv1, mv2 = stack.add_macvlan(), stack.add_macvlan()  # the selftest's macvlan_1, _2
    server = [DATA_V4, DATA_V6]
    reach(lab, [(lab.peer, a) for a in (*server, *both(mv1), *both(mv2))]
          + [(mv1.ns, a) for a in both(mv2)])
    reach(lab, [(ns, a) for ns in (lab.host, mv1.ns, mv2.ns) for a in (PEER_V4, PEER_V6)])
    assert {mv1.mac, mv2.mac} <= set(guest_macs(bond))


def test_an_idle_container_stays_reachable(lab, make_bond):
    """A container's macvlan, brought up in its own namespace (no link event reaches the
    daemon), is registered from the TAP's address list, and so it is not forgotten however
    long the container stays silent."""
    bond = make_bond(lab, mac_learning={"aging": "1s"})
    mv = Stack(lab).add_macvlan(quiet=True)  # IPv6 off: it says nothing unasked
    lab.ns(mv.ns, "ip", "addr", "add", f"{mv.v4}/24", "dev", mv.ifname)
    lab.wait_for(lambda: guest_macs(bond).get(mv.mac, {}).get("source") == "registered",
                 timeout=5, what="the macvlan's MAC to be registered")
    reach(lab, [(lab.peer, mv.v4)])  # the peer knows its MAC now
    time.sleep(1.5)  # silent past mac_learning.aging: nothing to wait for, time to pass
    assert lab.ping_ok(lab.peer, mv.v4)  # to its MAC at once, no ARP first
    assert guest_macs(bond)[mv.mac]["source"] == "registered"


# -- load spreading -------------------------------------------------------------------------
def test_two_vms_spread_over_two_members_add_up(lab, make_bond):
    bond, stack = bridged(lab, make_bond, SPREAD, host=False)
    vm0, vm1 = stack.vms
    reach(lab, [(vm.ns, PEER_V4) for vm in (vm0, vm1)])
    members = {vm.mac: guest_macs(bond)[vm.mac]["member"] for vm in (vm0, vm1)}
    assert sorted(members.values()) == ["m0", "m1"], members  # one VM on each member
    for m in MEMBERS:
        lab.rate_limit(lab.host, m, RATE_MBIT)
    ports: dict[str, set[str | None]] = {vm.mac: set() for vm in (vm0, vm1)}
    with iperf.server(lab, lab.peer, 5201), iperf.server(lab, lab.peer, 5202):
        clients = [iperf.start_client(lab, vm.ns, PEER_V4, 4, 5201 + i, ["-P", "4"])
                   for i, vm in enumerate((vm0, vm1))]
        while any(c.poll() is None for c in clients):
            fdb = switch_fdb(lab)
            for mac in ports:
                ports[mac].add(fdb.get(mac))
            time.sleep(0.2)
        reports = [iperf.wait(c, timeout=30) for c in clients]
    for report in reports:
        assert report.exit == 0, report.stderr + report.stdout[-2000:]
    mbit = [r.received()["bits_per_second"] / 1e6 for r in reports]
    assert sum(mbit) >= 1.8 * RATE_MBIT, f"{mbit} Mbit/s"
    # Each VM's MAC only ever on the port of the member carrying it.
    assert ports == {mac: {f"s{member[1]}"} for mac, member in members.items()}, ports


def test_status_and_metrics_show_the_guests(lab, make_bond):
    bond = make_bond(lab, start=False, mode=SPREAD, addresses=list(BRIDGED_ADDRESSES))
    bond.config["metrics"] = {"listen": "127.0.0.1:9469"}
    bond.write_config()
    stack = Stack(lab).bridge(ipv6=False)
    vm0, vm1 = stack.add_vm(), stack.add_vm()
    bond.start()
    stack.enslave("ipmp0")
    reach(lab, [(lab.peer, vm0.v4), (lab.peer, vm1.v4)])
    # A change of the TAP's link (an alias, a capture, an MTU) makes the daemon read its
    # address list again, at once: the hosts the bridge learned behind the TAP (the peer)
    # are not guests, now or in the half second after.
    lab.ns(lab.host, "ip", "link", "set", "ipmp0", "alias", "uplink")
    until = time.monotonic() + 0.5
    while time.monotonic() < until:
        assert sorted(guest_macs(bond)) == sorted([vm0.mac, vm1.mac])
        time.sleep(0.05)
    st = bond.request("status")
    macs = st["groups"][0]["macs"]
    assert sorted(m["mac"] for m in macs) == sorted([vm0.mac, vm1.mac]), macs
    assert sorted(m["member"] for m in macs) == ["m0", "m1"]
    assert all(m["source"] == "learned" and 0 <= m["age_s"] < 5 for m in macs), macs
    assert st["groups"][0]["macs_learned"] == 2 and st["groups"][0]["mac_evictions"] == 0
    js = bond.cli("status", "--json")
    assert js.returncode == 0 and json.loads(js.stdout)["groups"][0]["macs"][0]["mac"] in (
        vm0.mac, vm1.mac)
    text = bond.cli("status", "macs")
    assert text.returncode == 0, text
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["MAC", "GROUP", "MEMBER", "AGE", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    for m in macs:
        assert rows[m["mac"]][1:3] == ["ipmp0", m["member"]], text.stdout
        assert rows[m["mac"]][4] == "learned"
    metrics = scrape(lab)
    assert metrics["vnicbond_macs{group=ipmp0}"] == 2
    assert metrics["vnicbond_mac_evictions_total{group=ipmp0}"] == 0


# -- a hostile guest --------------------------------------------------------------------------
#: The flood's pace: new source MACs at a rate the daemon forwards with room to spare. The TAP
#: gives a guest no back-pressure, so a guest sending faster than the daemon forwards (with
#: one MAC or many) makes the kernel drop the TAP's frames, every guest's alike: that is
#: throughput (docs/benchmarks.md), not what the MAC table's cap is about.
FLOOD_RATE = 20_000


@pytest.mark.parametrize("mode", MODES)
def test_a_source_mac_flood_is_capped_and_spares_the_other_vm(lab, make_bond, workdir, mode):
    limit = 1024
    bond, stack = bridged(lab, make_bond, mode, host=False, mac_learning={"limit": limit})
    vm0, vm1 = stack.vms
    reach(lab, [(lab.peer, vm0.v4), (lab.peer, vm1.v4)])
    home = guest_macs(bond)[vm1.mac]["member"]
    rss = bond.usage().rss_kib
    log = workdir / "ping.txt"
    ping = ping_to_file(lab, lab.peer, vm1.v4, log)
    flood = flooder.start(lab, vm0.ns, vm0.ifname, nic_mac(lab, lab.peer, "p0"), 50_000,
                          FLOOD_RATE)
    sent = flooder.result(flood)
    assert sent.get("sent") == 50_000, sent
    result = stop_ping(ping, log)
    bond.alive()
    grown = bond.usage().rss_kib - rss
    assert grown < 10 * 1024, f"RSS grew by {grown} KiB"
    st = bond.status()
    assert st["macs_learned"] == limit and st["mac_evictions"] > 0, (
        st["macs_learned"], st["mac_evictions"])
    # The other VM, heard from all along, kept its place in the table and on its member.
    assert {m["mac"]: m["member"] for m in st["macs"]}.get(vm1.mac) == home
    lost = result.transmitted - result.received
    assert lost < 0.01 * result.transmitted, (
        f"{lost} of {result.transmitted} lost during the flood ({sent})")
    reach(lab, [(lab.peer, vm1.v4), (lab.peer, vm0.v4)])


# -- giving the NICs back ---------------------------------------------------------------------
def member_filters(lab: Lab) -> dict[str, Any]:
    return {m: nic_filters(lab, lab.host, m) for m in MEMBERS}


def test_members_filters_are_given_back_on_stop_and_after_kill(lab, make_bond):
    found = member_filters(lab)
    bond = make_bond(lab)
    stack = Stack(lab)
    # A macvlan: each member accepts its MAC (one unicast filter entry).
    mv = stack.add_macvlan()
    reach(lab, [(mv.ns, PEER_V4)])
    lab.wait_for(lambda: all(mv.mac in f.unicast for f in member_filters(lab).values()),
                 what="the members to accept the macvlan's MAC")
    assert bond.stop() == 0
    assert member_filters(lab) == found
    # A bridge: its ports are promiscuous, so the members are too.
    stack.bridge(ipv6=False)
    bond.start()
    accepting = member_filters(lab)
    stack.enslave("ipmp0")
    lab.wait_for(lambda: all(f.promiscuity > accepting[m].promiscuity
                             for m, f in member_filters(lab).items()),
                 what="the members to be promiscuous for the bridge")
    assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
    assert member_filters(lab) == found  # the sockets' memberships went with them
    bond.start()
    assert bond.stop() == 0
    assert member_filters(lab) == found
