"""The bond as the system configures it (issue 13): addresses from DHCP and SLAAC, addresses
added and removed by hand, the routes' gateways as probe targets, and readiness.

dnsmasq in the peer's namespace serves DHCP and router advertisements; udhcpc on ``ipmp0``
(with a script of its own, :mod:`vnicbond.lab.dhcp`) takes a lease and its default route, and
the TAP takes a SLAAC address. The daemon's configuration has no addresses: it follows
whatever is on the TAP, announces it on a failover and probes the DHCP router.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP, Ether

from tests.netns.capture import Capture
from vnicbond.config import default_mac, format_mac
from vnicbond.lab import DATA_V4, PEER_V4, Lab, ping_result, ping_stream, wait_ping
from vnicbond.lab.dhcp import DhcpClient, DhcpServer

GROUP_MAC = format_mac(default_mac("ipmp0"))
ANNOUNCE = 3
#: Lost replies of a 10 ms ping allowed for a silent cut: FDT + one probe interval (~350 ms),
#: as in test_probes.
MAX_LOST_CUT = 35


@pytest.fixture
def dhcp(lab: Lab, workdir: Path) -> Iterator[DhcpServer]:
    """dnsmasq on the peer: leases in 198.18.0.100-150, itself the router, SLAAC adverts."""
    server = DhcpServer(lab, lab.peer, "p0", workdir, "198.18.0.100", "198.18.0.150")
    try:
        server.wait_started()
        yield server
    finally:
        server.close()


def no_addresses(lab: Lab, **group: Any) -> dict[str, Any]:
    """Group keys for a bond configured with no address."""
    return {"addresses": [], "announce": {"count": ANNOUNCE, "interval": "100ms"}, **group}


def system_addresses(bond: Any, version: int) -> list[str]:
    """The bond's data addresses of IP ``version`` that the system put there, as status has
    them (without prefix)."""
    return [a["address"].split("/")[0] for a in bond.status()["addresses"]
            if a["source"] == "system" and (":" in a["address"]) == (version == 6)]


def lease(lab: Lab, bond: Any, workdir: Path, timeout: float = 20.0) -> tuple[DhcpClient, str]:
    """udhcpc on ipmp0; once its lease is a data address: the client and that address."""
    client = DhcpClient(lab, lab.host, "ipmp0", workdir)
    try:
        lab.wait_for(lambda: system_addresses(bond, 4), timeout=timeout,
                     what=f"a DHCP lease on ipmp0 (udhcpc: {client.logs()})")
    except BaseException:
        client.close()
        raise
    return client, system_addresses(bond, 4)[0]


def announcements(frames: list[Any], v4: str, v6: str) -> tuple[list[Any], list[Any]]:
    """Gratuitous ARPs for ``v4`` and unsolicited NAs for ``v6`` among ``frames``."""
    garps = [f for f in frames if ARP in f and f[ARP].op == 1 and f[ARP].psrc == v4
             and f[ARP].pdst == v4]
    nas = [f for f in frames if ICMPv6ND_NA in f and f[ICMPv6ND_NA].tgt == v6
           and f[ICMPv6ND_NA].S == 0 and f[IPv6].dst == "ff02::1"]
    return garps, nas


def test_dhcp_and_slaac_addresses_fail_over_and_are_announced(lab, make_bond, workdir, dhcp):
    bond = make_bond(lab, **no_addresses(lab))
    assert bond.status()["addresses"] == []
    client, v4 = lease(lab, bond, workdir)
    try:
        lab.wait_for(lambda: system_addresses(bond, 6), timeout=20,
                     what="a SLAAC address on ipmp0")
        v6 = system_addresses(bond, 6)[0]
        assert v6.startswith("2001:db8::")
        st = bond.status()
        assert all(a["member"] == "m0" for a in st["addresses"]), st["addresses"]
        assert not any(a["address"].startswith("fe80:") for a in st["addresses"])
        wait_ping(lab, lab.peer, v4)
        wait_ping(lab, lab.peer, v6)
        port = Capture(lab, lab.switch, "s1", workdir / "s1.pcap", "arp or icmp6", "in")
        pings = [ping_stream(lab, lab.peer, a, 0.01, 300) for a in (v4, v6)]
        time.sleep(1.0)
        lab.link_down(0)
        for ping in pings:
            sent, received, out = ping_result(ping)
            assert sent - received <= 3, out
        st = bond.status()
        assert st["active"] == "m1"
        assert [(a["member"], a["source"]) for a in st["addresses"]] == [("m1", "system")] * 2
        time.sleep(0.3)  # the rounds: 3 x 100 ms
        # announce.count of each, with the group's MAC, entering the switch from m1.
        garps, nas = announcements(port.stop(), v4, v6)
        assert len(garps) == ANNOUNCE and len(nas) == ANNOUNCE
        assert all(f[Ether].src == GROUP_MAC and f[ARP].hwsrc == GROUP_MAC for f in garps)
        assert [e["cause"] for e in bond.events() if e["kind"] == "address"
                and e["state"].startswith(v4)] == ["system", "link"]
    finally:
        client.close()


def test_load_spread_places_an_address_added_by_hand_and_leaves_one_removed(
        lab, make_bond, workdir):
    # As systemd sets it on most hosts: removing the subnet's first address keeps the others.
    lab.ns(lab.host, "sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1")
    bond = make_bond(lab, mode="load-spread", addresses=[f"{DATA_V4}/24"])
    macs = {m["name"]: m["mac"] for m in bond.status()["members"]}
    wait_ping(lab, lab.peer, DATA_V4)
    added = "198.18.0.11"
    lab.ns(lab.host, "ip", "addr", "add", f"{added}/24", "dev", "ipmp0")
    lab.wait_for(lambda: len(bond.status()["addresses"]) == 2, timeout=5,
                 what="the address added by hand to be a data address")
    hosts = {a["address"]: (a["member"], a["source"]) for a in bond.status()["addresses"]}
    assert hosts == {f"{DATA_V4}/24": ("m0", "config"), f"{added}/24": ("m1", "system")}
    wait_ping(lab, lab.peer, added)
    neigh = lab.ns(lab.peer, "ip", "neigh", "show", added, "dev", "p0").stdout
    assert macs["m1"] in neigh, neigh
    # Its member fails: it moves to m0, announced with m0's MAC.
    lab.link_down(1)
    lab.wait_for(lambda: macs["m0"] in lab.ns(lab.peer, "ip", "neigh", "show", added).stdout,
                 timeout=5, what=f"the peer's neighbour entry for {added} to follow to m0")
    assert lab.ping_ok(lab.peer, added)
    # The configured address removed by hand is left alone: not put back, said once.
    lab.ns(lab.host, "ip", "addr", "del", f"{DATA_V4}/24", "dev", "ipmp0")
    lab.wait_for(lambda: [a["address"] for a in bond.status()["addresses"]] == [f"{added}/24"],
                 timeout=5, what=f"{DATA_V4} to leave the data addresses")
    lab.ns(lab.host, "ip", "addr", "add", "198.18.0.12/24", "dev", "ipmp0")  # one more event
    lab.wait_for(lambda: len(bond.status()["addresses"]) == 2, timeout=5, what="198.18.0.12")
    out = lab.ns(lab.host, "ip", "-4", "addr", "show", "dev", "ipmp0").stdout
    assert f"{DATA_V4}/" not in out
    assert bond.logs().count(f"configured address {DATA_V4}/24 was removed") == 1


def test_the_dhcp_router_is_the_probe_target(lab, make_bond, workdir, dhcp):
    members = [{"name": lab.member(i), "test_address": f"198.18.0.{21 + i}/24"}
               for i in range(lab.members)]
    bond = make_bond(lab, **no_addresses(lab, failure_detection_time="300ms", members=members))
    st = bond.status()
    # No route yet: targets are looked for by all-hosts ping, which the peer does not answer.
    assert [(m["target_mode"], m["probe"]) for m in st["members"]] == [
        ("multicast", "disabled")] * 2
    assert st["targets"] == []

    def v4_targets() -> list[tuple[str, str]]:
        return [(t["member"], t["target"]) for t in bond.status()["targets"]
                if ":" not in t["target"]]

    client, v4 = lease(lab, bond, workdir)
    try:
        lab.wait_for(lambda: v4_targets() == [("m0", PEER_V4), ("m1", PEER_V4)], timeout=5,
                     what="the DHCP router as every member's target")
        lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                     timeout=5, what="probes answered")
        wait_ping(lab, lab.peer, v4)
        ping = ping_stream(lab, lab.peer, v4, 0.01, 200)
        time.sleep(0.5)
        lab.cut(0)  # silent: the link stays up
        sent, received, out = ping_result(ping)
        assert sent - received <= MAX_LOST_CUT, out
        m0 = bond.member("m0")
        assert (m0["state"], m0["link"], m0["probe"]) == ("failed", "up", "failed")
        assert m0["reason"] == "probes lost on every target"
        assert bond.active() == "m1"
        targets = bond.cli("status", "targets", check=True).stdout.splitlines()
        row = targets[1].split()
        assert row[:3] == ["m0", "ipmp0", "routes"] and PEER_V4 in row[4:]
        # Its test address, and its IPv6 link-local for the router of the advertisements.
        assert row[3].split(",")[0] == "198.18.0.21"
    finally:
        client.close()
    # The IPv4 route goes: its gateway is probed no more (IPv6 goes on with the router that
    # advertised itself).
    lab.uncut(0)
    lab.ns(lab.host, "ip", "route", "del", "default", "dev", "ipmp0")
    lab.wait_for(lambda: v4_targets() == [], timeout=5, what="no IPv4 targets")


# -- readiness -------------------------------------------------------------------------------------
@pytest.fixture
def notify(workdir: Path) -> Iterator[socket.socket]:
    """A NOTIFY_SOCKET the test owns, as systemd's for a Type=notify service."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(workdir / "notify.sock"))
    yield sock
    sock.close()


def notified(sock: socket.socket, timeout: float) -> str | None:
    """The next notification, or None if none came within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def with_notify(sock: socket.socket) -> tuple[str, ...]:
    return ("env", f"NOTIFY_SOCKET={sock.getsockname()}")


def test_ready_once_a_member_can_carry_traffic(lab, make_bond, notify):
    lab.link_down(0)
    lab.link_down(1)
    bond = make_bond(lab, start=False, failure_detection_time="10s")
    bond.start(wrap=with_notify(notify))  # returns once the control socket answers
    assert bond.status()["carrier"] is False
    assert notified(notify, 1.0) is None  # not ready: no member, the 10 s are not over
    assert "ready" not in bond.logs()
    lab.link_up(1)
    assert notified(notify, 5.0) == "READY=1"
    assert bond.status()["carrier"] is True
    lab.wait_for(lambda: "ready: ipmp0 (2 members)" in bond.logs(), timeout=5,
                 what="the ready line")
    bond.stop()
    assert notified(notify, 1.0) == "STOPPING=1"


def test_ready_after_one_failure_detection_time_without_a_member(lab, make_bond, notify):
    lab.link_down(0)
    lab.link_down(1)
    bond = make_bond(lab, start=False, failure_detection_time="1s")
    t0 = time.monotonic()
    bond.start(wrap=with_notify(notify))
    assert notified(notify, 10.0) == "READY=1"
    assert time.monotonic() - t0 >= 1.0
    assert bond.status()["carrier"] is False
    lab.wait_for(lambda: "ipmp0: no member can carry traffic" in bond.logs(), timeout=5,
                 what="the warning")
    assert json.loads(bond.cli("status", "--json", check=True).stdout)["groups"][0][
        "state"] == "failed"


def test_a_dhcp_lease_in_load_spread(lab, make_bond, workdir, dhcp):
    """The server answers the TAP's MAC (the client's hardware address), which load spreading
    never sends with: the offer still reaches the TAP, and the lease is placed on a member."""
    bond = make_bond(lab, **no_addresses(lab, mode="load-spread"))
    macs = {m["name"]: m["mac"] for m in bond.status()["members"]}
    client, v4 = lease(lab, bond, workdir)
    try:
        host = next(a["member"] for a in bond.status()["addresses"] if a["address"].startswith(v4))
        assert host in macs
        wait_ping(lab, lab.peer, v4)
        assert macs[host] in lab.ns(lab.peer, "ip", "neigh", "show", v4, "dev", "p0").stdout
    finally:
        client.close()
