"""Load spreading as IPMP does it: every member carries traffic, each with its own MAC."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import pytest

from vnicbond.config import default_mac, format_mac
from vnicbond.lab import PEER_V4, Lab, iperf, ping_result, ping_stream, wait_ping

RATE_MBIT = 200
# Outbound TCP streams in a test that needs every member to carry some. Source ports are
# random, so with 8 streams one of three members is left without any in about 1 run of 9
# (3 * (2/3)**8); with 32 it is about 1 in 140,000.
HASHED_STREAMS = 32
ADDR = ["198.18.0.10", "198.18.0.11", "198.18.0.12"]


def spread(lab: Lab, addresses: int = 2, **overrides):
    group = {
        "mode": "load-spread",
        "addresses": [f"{a}/24" for a in ADDR[:addresses]],
        "members": [{"name": lab.member(i)} for i in range(lab.members)],
    }
    group.update(overrides)
    return group


def probed(lab: Lab, addresses: int = 2):
    return spread(lab, addresses, failure_detection_time="300ms",
                  probe={"targets": [PEER_V4]},
                  members=[{"name": lab.member(i), "test_address": f"198.18.0.{21 + i}/24"}
                           for i in range(lab.members)])


def limit(lab: Lab, ns: str, devices: list[str]) -> None:
    for dev in devices:
        lab.rate_limit(ns, dev, RATE_MBIT)


def member_macs(lab: Lab) -> dict[str, str]:
    return {lab.member(i): lab.ns(lab.host, "cat", f"/sys/class/net/{lab.member(i)}/address"
                                  ).stdout.strip() for i in range(lab.members)}


def iperf_client(lab: Lab, ns: str, address: str, port: int, streams: int,
                 seconds: int) -> subprocess.Popen[str]:
    return iperf.start_client(lab, ns, address, seconds, port, ["-P", str(streams)])


def received_mbit(client: subprocess.Popen[str]) -> float:
    report = iperf.wait(client, timeout=60)
    assert report.exit == 0, report.stderr + report.stdout[-2000:]
    return report.received()["bits_per_second"] / 1e6


@pytest.mark.parametrize(("members", "factor"), [(2, 1.8), (3, 2.7)])
def test_outbound_bandwidth_adds_up(make_bond, members, factor):
    with Lab(members=members) as lab:
        make_bond(lab, **spread(lab))
        wait_ping(lab, lab.peer, ADDR[0])
        limit(lab, lab.host, [lab.member(i) for i in range(members)])
        with iperf.server(lab, lab.peer, 5201, PEER_V4):
            mbit = received_mbit(iperf_client(lab, lab.host, PEER_V4, 5201, HASHED_STREAMS, 5))
        assert mbit >= factor * RATE_MBIT, f"{mbit:.0f} Mbit/s with {members} members"


def test_inbound_to_two_addresses_on_two_members_adds_up(lab, make_bond):
    bond = make_bond(lab, **spread(lab))
    hosts = {a["address"]: a["member"] for a in bond.status()["addresses"]}
    assert sorted(hosts.values()) == ["m0", "m1"]  # one address each
    for a in ADDR[:2]:
        wait_ping(lab, lab.peer, a)
    limit(lab, lab.switch, ["s0", "s1"])
    with contextlib.ExitStack() as servers:
        for i, a in enumerate(ADDR[:2]):
            servers.enter_context(iperf.server(lab, lab.host, 5201 + i, a))
        clients = [iperf_client(lab, lab.peer, a, 5201 + i, 4, 5)
                   for i, a in enumerate(ADDR[:2])]
        total = sum(received_mbit(c) for c in clients)
    assert total >= 1.8 * RATE_MBIT, f"{total:.0f} Mbit/s"


def test_each_member_mac_lives_on_one_port_and_nothing_arrives_twice(lab, make_bond, workdir):
    bond = make_bond(lab, **spread(lab))
    macs = member_macs(lab)
    hosts = {a["address"].split("/")[0]: a["member"] for a in bond.status()["addresses"]}
    for a in ADDR[:2]:
        wait_ping(lab, lab.peer, a)
        sent, received, out = ping_result(ping_stream(lab, lab.peer, a, 0.01, 100))
        assert sent == received == 100 and "DUP!" not in out, out
        # One ARP request, one answer, carrying the hosting member's MAC.
        probe = lab.ns(lab.peer, sys.executable, "-m", "tests.netns.arp_probe", "p0", a, "1.0")
        assert json.loads(probe.stdout.strip().splitlines()[-1]) == {
            "replies": 1, "macs": [macs[hosts[a]]]}
    # Outbound flows from both members, then the switch's forwarding database.
    with iperf.server(lab, lab.peer, 5201, PEER_V4):
        received_mbit(iperf_client(lab, lab.host, PEER_V4, 5201, HASHED_STREAMS, 2))
    assert all(m["tx_packets"] > 100 for m in bond.status()["members"])
    fdb = lab.ns(lab.switch, "bridge", "fdb", "show", "br", "br0").stdout
    for i, member in enumerate(sorted(macs)):
        ports = {line.split()[2] for line in fdb.splitlines() if line.startswith(macs[member])}
        assert ports == {f"s{i}"}, fdb
    assert format_mac(default_mac("ipmp0")) not in fdb  # the TAP's own MAC stays home
    # A broadcast from the peer reaches the host once.
    receiver = lab.popen(lab.host, sys.executable, "-c", (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',5400)); s.settimeout(1.5)\n"
        "print('ready',flush=True); n=0\n"
        "try:\n"
        "    while True: s.recv(100); n+=1\n"
        "except OSError: pass\n"
        "print(n)\n"))
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    lab.ns(lab.peer, sys.executable, "-c", (
        "import socket\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n"
        "[s.sendto(b'x',('198.18.0.255',5400)) for _ in range(5)]\n"))
    out, _ = receiver.communicate(timeout=10)
    assert out.strip().splitlines()[-1] == "5"


def test_silent_cut_under_load_keeps_every_connection(lab, make_bond):
    bond = make_bond(lab, **probed(lab))
    macs = member_macs(lab)
    for a in ADDR[:2]:
        wait_ping(lab, lab.peer, a)
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]), timeout=5,
                 what="probes answered")
    limit(lab, lab.host, ["m0", "m1"])
    with iperf.server(lab, lab.peer, 5201, PEER_V4), iperf.server(lab, lab.host, 5202, ADDR[0]):
        outbound = iperf_client(lab, lab.host, PEER_V4, 5201, 8, 6)
        inbound = iperf_client(lab, lab.peer, ADDR[0], 5202, 4, 6)
        time.sleep(2.0)
        lab.cut(0)
        cut_at = time.monotonic()

        def arp_follows() -> bool:
            neigh = lab.ns(lab.peer, "ip", "neigh", "show", "dev", "p0").stdout
            return all(f"{a} " in neigh and macs["m1"] in next(
                line for line in neigh.splitlines() if line.startswith(f"{a} "))
                for a in ADDR[:2])

        lab.wait_for(arp_follows, timeout=3, interval=0.02, what="peer ARP on m1")
        assert time.monotonic() - cut_at <= 0.3 + 0.1 + 0.25  # FDT + interval, + polling
        # Throughout, the switch sees each member's MAC on that member's port only.
        while outbound.poll() is None:
            fdb = lab.ns(lab.switch, "bridge", "fdb", "show", "br", "br0").stdout
            for i, member in enumerate(("m0", "m1")):
                ports = {line.split()[2] for line in fdb.splitlines()
                         if line.startswith(macs[member])}
                assert ports <= {f"s{i}"}, fdb
            time.sleep(0.2)
        assert received_mbit(outbound) > 0  # iperf3 exits non-zero on a reset connection
        assert received_mbit(inbound) > 0
    st = bond.status()
    assert [m["state"] for m in st["members"]] == ["failed", "active"]
    assert {a["member"] for a in st["addresses"]} == {"m1"}


def test_failback_rebalances_addresses_and_announces_them(lab, make_bond):
    bond = make_bond(lab, **spread(lab))
    start = {a["address"]: a["member"] for a in bond.status()["addresses"]}
    for a in ADDR[:2]:
        wait_ping(lab, lab.peer, a)  # the peer has a neighbour entry for each address
    lab.link_down(0)
    lab.wait_for(lambda: {a["member"] for a in bond.status()["addresses"]} == {"m1"},
                 timeout=3, what="m0's address to move to m1")
    lab.link_up(0)
    lab.wait_for(lambda: {a["address"]: a["member"] for a in bond.status()["addresses"]}
                 == start, timeout=5, what="addresses to go home")
    macs = member_macs(lab)
    home0 = next(a for a, m in start.items() if m == "m0").split("/")[0]
    lab.wait_for(lambda: macs["m0"] in lab.ns(lab.peer, "ip", "neigh", "show", home0).stdout,
                 timeout=2, what="the peer to learn the address is back on m0")
    assert lab.ping_ok(lab.peer, home0)


def test_ipv6_neighbour_discovery_speaks_with_the_hosting_member_mac(lab, make_bond):
    v6 = ["2001:db8::10", "2001:db8::11"]
    bond = make_bond(lab, mode="load-spread", addresses=[f"{a}/64" for a in v6])
    macs = member_macs(lab)
    hosts = {a["address"].split("/")[0]: a["member"] for a in bond.status()["addresses"]}
    assert sorted(hosts.values()) == ["m0", "m1"]
    for a in v6:
        wait_ping(lab, lab.peer, a)  # NS/NA through the bond: checksums must be right
        neigh = lab.ns(lab.peer, "ip", "-6", "neigh", "show", a).stdout
        assert macs[hosts[a]] in neigh, neigh
        sent, received, out = ping_result(ping_stream(lab, lab.peer, a, 0.01, 50))
        assert sent == received == 50 and "DUP!" not in out, out
