"""Active-backup failover on link loss: little loss, announcements from the new member."""

from __future__ import annotations

import time

from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP, Ether

from tests.netns.capture import Capture
from vnicbond.config import default_mac, format_mac
from vnicbond.lab import DATA_V4, DATA_V6, PEER_V4, ping_result, ping_stream, wait_ping

GROUP_MAC = format_mac(default_mac("ipmp0"))


def _announcements(frames, address_v4, address_v6):
    garps = [f for f in frames if ARP in f and f[ARP].op == 1 and f[ARP].psrc == address_v4
             and f[ARP].pdst == address_v4]
    # Unsolicited: to all nodes, Solicited flag clear (the host's own answers to neighbour
    # solicitations are not announcements).
    nas = [f for f in frames if ICMPv6ND_NA in f and f[ICMPv6ND_NA].tgt == address_v6
           and f[ICMPv6ND_NA].S == 0 and f[IPv6].dst == "ff02::1"]
    return garps, nas


def test_link_loss_under_10ms_ping_loses_at_most_3(lab, make_bond, workdir):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    peer_cap = Capture(lab, lab.peer, "p0", workdir / "peer.pcap", "arp or icmp6")
    port_cap = Capture(lab, lab.switch, "s1", workdir / "s1.pcap", "arp or icmp6", "in")
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 300)
    time.sleep(1.0)
    lab.link_down(0)
    sent, received, out = ping_result(ping)
    assert sent - received <= 3, out
    assert "DUP!" not in out
    st = bond.status()
    assert st["active"] == "m1"
    assert {m["name"]: m["state"] for m in st["members"]} == {"m0": "failed", "m1": "active"}
    assert st["state"] == "degraded" and st["carrier"] is True
    assert all(a["member"] == "m1" for a in st["addresses"])
    time.sleep(0.3)  # announce: 3 x 100 ms
    # The peer sees exactly announce.count announcements per data address, all with the
    # group's MAC...
    garps, nas = _announcements(peer_cap.stop(), DATA_V4, DATA_V6)
    assert len(garps) == 3 and len(nas) == 3
    for frame in garps:
        assert frame[Ether].src == GROUP_MAC and frame[ARP].hwsrc == GROUP_MAC
        assert frame[Ether].dst == "ff:ff:ff:ff:ff:ff"
    for frame in nas:
        assert frame[Ether].src == GROUP_MAC
        assert frame[ICMPv6ND_NA].O == 1
    # ... and they entered the switch through the new member's port.
    garps, nas = _announcements(port_cap.stop(), DATA_V4, DATA_V6)
    assert len(garps) == 3 and len(nas) == 3
    # Traffic now flows through m1 both ways.
    before = bond.member("m1")
    assert lab.ping_ok(lab.host, PEER_V4)
    after = bond.member("m1")
    assert after["tx_packets"] > before["tx_packets"]
    assert after["rx_packets"] > before["rx_packets"]


def test_failback_returns_to_the_preferred_member(lab, make_bond):
    bond = make_bond(lab, failback=True)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.link_down(0)
    lab.wait_for(lambda: bond.active() == "m1", what="m1 to take over")
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 300)
    time.sleep(0.5)
    lab.link_up(0)
    # Link state alone repairs a member once its link has stayed up for the repair time
    # (10 probe intervals), so a flapping cable cannot move traffic faster than that.
    lab.wait_for(lambda: bond.active() == "m0", timeout=5, what="failback to m0")
    sent, received, out = ping_result(ping)
    assert sent - received <= 3, out
    assert bond.active() == "m0"
    assert bond.status()["state"] == "ok"


def test_no_failback_keeps_traffic_on_the_survivor(lab, make_bond):
    bond = make_bond(lab, failback=False)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.link_down(0)
    lab.wait_for(lambda: bond.active() == "m1", what="m1 to take over")
    lab.link_up(0)
    lab.wait_for(lambda: bond.member("m0")["state"] == "standby", what="m0 repaired")
    assert bond.active() == "m1"
    assert lab.ping_ok(lab.peer, DATA_V4)


def test_standby_member_is_used_only_while_needed(lab3, make_bond):
    lab = lab3
    members = [{"name": "m0", "standby": True}, {"name": "m1"}, {"name": "m2"}]
    bond = make_bond(lab, members=members, failback=False)
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.active() == "m1"  # configuration order, standby members last
    lab.link_down(1)
    lab.wait_for(lambda: bond.active() == "m2", what="m2 to take over")
    lab.link_down(2)
    lab.wait_for(lambda: bond.active() == "m0", what="the standby to take over")
    assert lab.ping_ok(lab.peer, DATA_V4)
    lab.link_up(2)
    # Even without failback, a standby gives traffic back as soon as it is not needed.
    lab.wait_for(lambda: bond.active() == "m2", what="m2 to take traffic from the standby")
    assert bond.member("m0")["state"] == "standby"
    assert lab.ping_ok(lab.peer, DATA_V4)


def test_all_members_down_then_one_back(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.link_down(0)
    lab.link_down(1)
    lab.wait_for(lambda: bond.status()["state"] == "failed", what="group failed")
    st = bond.status()
    assert st["carrier"] is False and st["active"] is None
    assert all(a["member"] is None for a in st["addresses"])
    link = lab.ns(lab.host, "ip", "link", "show", "ipmp0").stdout
    assert "NO-CARRIER" in link
    assert not lab.ping_ok(lab.peer, DATA_V4)
    lab.link_up(1)
    lab.wait_for(lambda: bond.status()["carrier"], what="carrier back")
    assert bond.active() == "m1"
    assert "NO-CARRIER" not in lab.ns(lab.host, "ip", "link", "show", "ipmp0").stdout
    wait_ping(lab, lab.peer, DATA_V4, timeout=5)
    assert lab.ping_ok(lab.host, PEER_V4)
