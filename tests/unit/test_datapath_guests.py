"""The datapath's paths for guests behind the TAP (issue 12), on the packet-ring rig.

The rig of ``test_datapath_drops.py`` (a real :class:`Datapath`, the TAP a socket pair, the
members simulated packet sockets with real rings) with what the group runtime does when the
datapath learns a MAC: :class:`Placement` drains the MAC table's changes into
:class:`~vnicbond.core.guests.Guests` and hands the placements back to
:meth:`Datapath.set_mac_hosts`, synchronously, as ``on_guests`` does.

What is checked, per mode. Active-backup: a frame from a guest MAC is learned (once) and sent
with its MAC unchanged; unicast for a guest (learned or registered) is delivered unchanged,
once; unicast for an unknown MAC is ``foreign`` unless the TAP is promiscuous, then delivered
once, but never a frame for one of our own MACs; a guest's broadcast flooded back is
``looped``. Load spreading: a guest's frames keep its MAC and leave by the member carrying it,
whatever their flow (ARP too); unicast for a guest is delivered only by the member carrying it
(``foreign`` elsewhere) and follows it when it moves; with the TAP promiscuous unknown unicast
is delivered once, by the member that floods; the host's own frames are still spread by flow
with the member's MAC, and teach the table nothing. Every frame is passed on or counted once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.unit.test_datapath_drops import (
    BROADCAST,
    DATA4_B,
    GROUP_MAC,
    MACS,
    MCAST6,
    OTHER_MAC,
    PEER4,
    PEER_MAC,
    Rig,
    arp,
    frame,
    ipv4,
)
from tests.unit.test_datapath_rings import assert_accounts
from vnicbond.core.guests import Guests
from vnicbond.core.model import SetMacHosts
from vnicbond.wire.vnet import VNET_HDR_LEN

GUEST1 = bytes.fromhex("025400000001")  # a VM behind a bridge on the TAP
GUEST2 = bytes.fromhex("025400000002")
MACVLAN = bytes.fromhex("025400000003")  # registered on the TAP's unicast list
SRC = VNET_HDR_LEN + 6


class Placement:
    """What the group runtime does on ``on_guests``: the table's changes to the guests' rules,
    their placements to the datapath, at once."""

    def __init__(self, rig: Rig, spread: bool, active: tuple[str, ...]) -> None:
        self.rig = rig
        self.guests = Guests(spread, failback=True)
        self.active = active
        self.calls = 0
        rig.dp.on_guests = self

    def __call__(self) -> None:
        self.calls += 1
        added, removed = self.rig.dp.guests.changes()
        for effect in self.guests.changed(added, removed, self.active):
            if isinstance(effect, SetMacHosts):
                self.rig.dp.set_mac_hosts(effect.hosts, effect.removed)


def udp(src_mac: bytes, port: int, dst_mac: bytes = PEER_MAC, src_mac_ip: bytes = PEER4,
        ) -> bytes:
    """A UDP frame from ``src_mac`` whose flow is told apart by ``port``."""
    ports = struct.pack("!HHHH", port, 9, 8, 0)
    return frame(dst_mac, src_mac, 0x0800, ipv4(src_mac_ip, bytes((203, 0, 113, 9)), 17, ports))


def src_of(f: bytes) -> bytes:
    return f[SRC:SRC + 6]


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


# -- active-backup ---------------------------------------------------------------------------------
@pytest.fixture
def backup(rig: Rig) -> Placement:
    rig.set_mode("active-backup")  # a sends and delivers
    return Placement(rig, False, ("a",))


def test_backup_a_guests_frame_is_learned_once_and_sent_unchanged(rig: Rig,
                                                                  backup: Placement) -> None:
    frames = [udp(GUEST1, p) for p in range(5)]
    rig.from_host(frames[:1])
    assert GUEST1 in rig.dp.guests and backup.calls == 1
    assert backup.guests.hosts == {GUEST1: None}
    rig.from_host(frames[1:])
    assert backup.calls == 1  # heard again: no news
    assert rig.on_wire("a") == frames
    own = udp(GROUP_MAC, 1)
    rig.from_host([own])
    assert rig.on_wire("a") == [own]
    assert len(rig.dp.guests) == 1 and backup.calls == 1  # the host's own MAC is no guest
    assert_accounts(rig, {}, 6, 6)


def test_backup_unicast_for_a_guest_is_delivered_unchanged_once(rig: Rig,
                                                                backup: Placement) -> None:
    rig.from_host([udp(GUEST1, 1)])
    to_guest = udp(PEER_MAC, 2, dst_mac=GUEST1)
    rig.from_wire("a", [to_guest])
    rig.from_wire("b", [to_guest])  # flooded to the standby's port too
    assert rig.to_tap() == [to_guest]
    assert rig.counted() == {("b", "inactive"): 1}


def test_backup_unicast_for_a_registered_mac_is_delivered_before_it_speaks(
        rig: Rig, backup: Placement) -> None:
    rig.dp.guests.register({MACVLAN})
    to_macvlan = udp(PEER_MAC, 2, dst_mac=MACVLAN)
    rig.from_wire("a", [to_macvlan])
    assert rig.to_tap() == [to_macvlan]


def test_backup_unicast_for_an_unknown_mac_is_foreign(rig: Rig, backup: Placement) -> None:
    rig.from_host([udp(GUEST1, 1)])
    rig.from_wire("a", [udp(PEER_MAC, 2, dst_mac=GUEST2), udp(PEER_MAC, 3, dst_mac=OTHER_MAC)])
    assert rig.to_tap() == []
    assert rig.counted() == {("a", "foreign"): 2}


def test_backup_a_promiscuous_tap_gets_unknown_unicast_once(rig: Rig,
                                                            backup: Placement) -> None:
    rig.dp.promiscuous = True
    unknown = udp(PEER_MAC, 2, dst_mac=OTHER_MAC)
    rig.from_wire("a", [unknown])
    rig.from_wire("b", [unknown])
    assert rig.to_tap() == [unknown]
    assert rig.counted() == {("b", "inactive"): 1}


def test_backup_a_promiscuous_tap_never_gets_frames_for_our_own_macs(
        rig: Rig, backup: Placement) -> None:
    """Frames for a member's own MAC are the daemon's (probes, its test address), whichever
    member's NIC they reach: no bridge behind the TAP gets them."""
    rig.dp.promiscuous = True
    rig.from_wire("a", [udp(PEER_MAC, 1, dst_mac=MACS["a"]), udp(PEER_MAC, 2, dst_mac=MACS["b"]),
                        udp(PEER_MAC, 3, dst_mac=MACS["c"])])
    assert rig.to_tap() == []
    assert rig.counted() == {("a", "daemon"): 1, ("a", "foreign"): 2}


def test_backup_a_guests_broadcast_flooded_back_is_looped(rig: Rig, backup: Placement) -> None:
    rig.from_host([frame(BROADCAST, GUEST1)])
    assert rig.on_wire("a") == [frame(BROADCAST, GUEST1)]
    peers = frame(BROADCAST, PEER_MAC)
    rig.from_wire("a", [frame(BROADCAST, GUEST1), frame(MCAST6, GUEST1), peers])
    assert rig.to_tap() == [peers]
    assert rig.counted() == {("a", "looped"): 2}


# -- load spreading --------------------------------------------------------------------------------
@pytest.fixture
def spread(rig: Rig) -> Placement:
    rig.set_mode("load-spread")  # a and b active, a first (it floods)
    return Placement(rig, True, ("a", "b"))


def test_spread_a_guests_frames_keep_its_mac_and_leave_by_its_member(
        rig: Rig, spread: Placement) -> None:
    first = [udp(GUEST1, 0), udp(GUEST2, 0)]
    rig.from_host(first)
    assert spread.guests.hosts == {GUEST1: "a", GUEST2: "b"}
    assert rig.dp.mac_ports == {GUEST1: rig.port("a"), GUEST2: rig.port("b")}
    one = [udp(GUEST1, p) for p in range(1, 40)]  # many flows: one member all the same
    two = [udp(GUEST2, p) for p in range(1, 40)]
    rig.from_host(one + two)
    assert rig.on_wire("a") == [first[0], *one]
    assert rig.on_wire("b") == [first[1], *two]
    assert spread.calls == 2
    assert_accounts(rig, {}, 80, 80)


def test_spread_a_guests_arp_keeps_its_mac_and_member(rig: Rig, spread: Placement) -> None:
    """The host's ARP leaves by the member hosting the address it speaks for, with that
    member's MAC; a guest's (even for one of our data addresses) is the guest's own."""
    rig.from_host([udp(GUEST1, 0)])
    rig.on_wire("a")
    guest_arp = frame(BROADCAST, GUEST1, 0x0806, arp(1, GUEST1, DATA4_B, bytes(6), PEER4))
    rig.from_host([guest_arp])
    assert rig.on_wire("a") == [guest_arp]
    assert rig.on_wire("b") == []


def test_spread_a_guest_with_no_member_to_carry_it_is_counted(rig: Rig) -> None:
    rig.set_mode("load-spread")
    placement = Placement(rig, True, ())  # learned while no member was active
    rig.from_host([udp(GUEST1, 0)])
    assert placement.guests.hosts == {GUEST1: None}
    assert rig.on_wire("a") == rig.on_wire("b") == []
    assert rig.counted() == {("tap", "no_member"): 1}


def test_spread_unicast_for_a_guest_is_delivered_only_by_its_member(
        rig: Rig, spread: Placement) -> None:
    rig.from_host([udp(GUEST1, 0), udp(GUEST2, 0)])
    to1 = udp(PEER_MAC, 1, dst_mac=GUEST1)
    to2 = udp(PEER_MAC, 2, dst_mac=GUEST2)
    rig.from_wire("a", [to1, to2])
    rig.from_wire("b", [to1, to2])
    assert rig.to_tap() == [to1, to2]  # unchanged: still for the guest, not for the TAP
    assert rig.counted() == {("a", "foreign"): 1, ("b", "foreign"): 1}
    assert_accounts(rig, {"a": 2, "b": 2}, 2, 2)


def test_spread_delivery_follows_a_guest_that_moves(rig: Rig, spread: Placement) -> None:
    rig.from_host([udp(GUEST1, 0)])
    rig.on_wire("a")
    rig.dp.set_mac_hosts(((GUEST1, "b"),), ())  # a left: GUEST1 is carried by b now
    rig.from_host([udp(GUEST1, 1)])
    assert rig.on_wire("a") == [] and rig.on_wire("b") == [udp(GUEST1, 1)]
    to1 = udp(PEER_MAC, 1, dst_mac=GUEST1)
    rig.from_wire("a", [to1])
    rig.from_wire("b", [to1])
    assert rig.to_tap() == [to1]
    assert rig.counted() == {("a", "foreign"): 1}
    rig.dp.set_mac_hosts((), (GUEST1,))  # gone
    rig.from_wire("b", [to1])
    assert rig.to_tap() == []


def test_spread_unknown_unicast_is_foreign_unless_the_tap_is_promiscuous(
        rig: Rig, spread: Placement) -> None:
    unknown = udp(PEER_MAC, 1, dst_mac=OTHER_MAC)
    rig.from_wire("a", [unknown])
    rig.from_wire("b", [unknown])
    assert rig.to_tap() == []
    rig.dp.promiscuous = True
    rig.from_wire("a", [unknown])
    rig.from_wire("b", [unknown])  # the switch floods it to both: the TAP gets it once
    assert rig.to_tap() == [unknown]
    assert rig.counted() == {("a", "foreign"): 1, ("b", "foreign"): 2}


def test_spread_a_promiscuous_tap_still_gets_a_guests_unicast_only_from_its_member(
        rig: Rig, spread: Placement) -> None:
    rig.dp.promiscuous = True
    rig.from_host([udp(GUEST1, 0), udp(GUEST2, 0)])  # GUEST2 on b, not the flooding member
    to2 = udp(PEER_MAC, 2, dst_mac=GUEST2)
    rig.from_wire("a", [to2])
    rig.from_wire("b", [to2])
    assert rig.to_tap() == [to2]
    assert rig.counted() == {("a", "foreign"): 1}


def test_spread_a_promiscuous_tap_never_gets_frames_for_other_members_macs(
        rig: Rig, spread: Placement) -> None:
    rig.dp.promiscuous = True
    rig.from_wire("a", [udp(PEER_MAC, 2, dst_mac=MACS["b"]), udp(PEER_MAC, 3, dst_mac=MACS["c"])])
    assert rig.to_tap() == []
    assert rig.counted() == {("a", "foreign"): 2}


@pytest.mark.parametrize("promiscuous", [False, True])
def test_spread_unicast_for_the_taps_own_mac_is_delivered_once_by_the_first_member(
        rig: Rig, spread: Placement, promiscuous: bool) -> None:
    """A DHCP server answers the client's hardware address, the TAP's MAC, which the switch
    never learned (load spreading sends with the members' MACs): flooded to every member, it
    reaches the TAP once."""
    rig.dp.promiscuous = promiscuous
    offer = udp(PEER_MAC, 1, dst_mac=GROUP_MAC)
    rig.from_wire("a", [offer])
    rig.from_wire("b", [offer])
    assert rig.to_tap() == [offer]
    assert rig.counted() == {("b", "foreign"): 1}


def test_spread_a_guests_broadcast_flooded_back_is_looped(rig: Rig, spread: Placement) -> None:
    rig.from_host([udp(GUEST2, 0)])
    peers = frame(BROADCAST, PEER_MAC)
    rig.from_wire("a", [frame(BROADCAST, GUEST2), frame(MCAST6, GUEST2), peers])
    assert rig.to_tap() == [peers]
    assert rig.counted() == {("a", "looped"): 2}


def test_spread_the_hosts_own_frames_are_still_spread_by_flow_with_the_members_mac(
        rig: Rig, spread: Placement) -> None:
    frames = [udp(GROUP_MAC, p) for p in range(64)]
    rig.from_host(frames)
    sent = {name: rig.on_wire(name) for name in "ab"}
    assert sent["a"] and sent["b"]  # both members carry some of the flows
    assert len(sent["a"]) + len(sent["b"]) == len(frames)
    for name, out in sent.items():
        for f in out:
            assert src_of(f) == MACS[name]
            original = frame(f[VNET_HDR_LEN:VNET_HDR_LEN + 6], GROUP_MAC, 0x0800,
                             f[VNET_HDR_LEN + 14:])
            assert original in frames  # nothing else changed
    assert len(rig.dp.guests) == 0 and spread.calls == 0 and rig.dp.mac_ports == {}


@pytest.mark.parametrize("mode", ["active-backup", "load-spread"])
def test_a_multicast_or_zero_source_teaches_nothing(rig: Rig, mode: str) -> None:
    """No Ethernet station has a multicast or all-zero address (a Linux bridge drops such
    frames before learning): such a source is never taken for a guest, placed or announced."""
    rig.set_mode(mode)
    placement = Placement(rig, mode == "load-spread", ("a",) if mode == "active-backup"
                          else ("a", "b"))
    rig.from_host([udp(BROADCAST, 1), udp(MCAST6, 2), udp(bytes(6), 3)])
    assert len(rig.dp.guests) == 0 and placement.calls == 0
    assert placement.guests.hosts == {} and rig.dp.mac_ports == {}
    assert_accounts(rig, {}, 3, rig.tx_packets())
