"""Frames carrying an 802.1Q tag (a guest's VLAN behind the bond) cross the datapath untouched.

The kernel takes the outermost tag of every received frame off into the packet socket's
metadata (``tp_vlan_tci``, ``tp_vlan_tpid``) before any packet socket sees it; the simulated
kernel (:mod:`tests.unit.ringsim`) does the same. The datapath must put the tag back, so the
TAP gets the frame as it was on the wire, with the virtio-net header's offsets moved with it.
Outbound, a tagged frame leaves as the host wrote it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.unit.test_datapath_drops import (
    ETH_EXPERIMENTAL,
    GROUP_MAC,
    MACS,
    MODES,
    PEER_MAC,
    Rig,
    frame,
    vnet,
)
from tests.unit.test_datapath_rings import SLOT_ROOM
from vnicbond.wire.vnet import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
    insert_vlan_tag,
    parse_vnet,
)

GUEST_MAC = bytes.fromhex("02766d000001")


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def tagged(dst: bytes, src: bytes, vid: int, body: bytes = bytes(46), tpid: int = 0x8100,
           hdr: bytes = ZERO_VNET_HDR) -> bytes:
    """A frame with one 802.1Q (or 802.1ad) tag, priority 5, VLAN ``vid``."""
    return frame(dst, src, tpid, struct.pack("!HH", 5 << 13 | vid, ETH_EXPERIMENTAL) + body, hdr)


def test_insert_vlan_tag_puts_the_tag_behind_the_macs() -> None:
    plain = frame(GUEST_MAC, PEER_MAC, 0x0800, b"payload")
    out = insert_vlan_tag(plain, 0x8100, 0xA00A)
    assert out == frame(GUEST_MAC, PEER_MAC, 0x8100, b"\xa0\x0a\x08\x00payload")


def test_insert_vlan_tag_moves_the_offload_offsets() -> None:
    """A checksum-offloaded TCP super-frame: csum_start and hdr_len count from the frame's
    start, so both grow by the tag; the segment size and checksum offset do not."""
    hdr = vnet(F_NEEDS_CSUM, GSO_TCPV4, hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16)
    out = insert_vlan_tag(frame(GUEST_MAC, PEER_MAC, 0x0800, bytes(100), hdr), 0x8100, 7)
    h = parse_vnet(out)
    assert (h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start, h.csum_offset) == (
        F_NEEDS_CSUM, GSO_TCPV4, 58, 1448, 38, 16)


def test_insert_vlan_tag_leaves_a_plain_header_alone() -> None:
    out = insert_vlan_tag(frame(GUEST_MAC, PEER_MAC), 0x8100, 7)
    assert out[:VNET_HDR_LEN] == ZERO_VNET_HDR


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8])
def test_a_tagged_frame_for_a_guest_reaches_the_tap_with_its_tag(rig: Rig, tpid: int) -> None:
    """Active-backup: the kernel hands the frame over untagged; the TAP gets it tagged."""
    rig.set_mode("active-backup")
    rig.dp.guests.heard(GUEST_MAC, 0.0)
    f = tagged(GUEST_MAC, PEER_MAC, 100, tpid=tpid)
    rig.from_wire("a", [f])
    assert rig.tapped == [f]


def test_a_tagged_frame_for_the_group_reaches_the_tap_with_its_tag(rig: Rig) -> None:
    rig.set_mode("active-backup")
    """The checksum offset the kernel gave for the untagged frame (34) moves back to where the
    sender's tagged frame had it (38)."""
    f = tagged(GROUP_MAC, PEER_MAC, 42, hdr=vnet(F_NEEDS_CSUM, csum_start=38, csum_offset=6))
    rig.from_wire("a", [f])
    assert rig.tapped == [f]


def test_load_spreading_readdresses_a_tagged_frame_and_keeps_its_tag(rig: Rig) -> None:
    rig.set_mode("load-spread")
    f = tagged(MACS["a"], PEER_MAC, 42)
    rig.from_wire("a", [f])
    assert rig.tapped == [tagged(GROUP_MAC, PEER_MAC, 42)]


def test_untagged_frames_are_not_touched(rig: Rig) -> None:
    rig.set_mode("active-backup")
    f = frame(GROUP_MAC, PEER_MAC)
    rig.from_wire("a", [f])
    assert rig.tapped == [f]


@pytest.mark.parametrize("mode", MODES)
def test_a_tagged_frame_from_a_guest_leaves_as_written(rig: Rig, mode: str) -> None:
    rig.set_mode(mode)
    rig.dp.set_mac_hosts(((GUEST_MAC, "b"),), ())  # load spreading: the guest's member
    f = tagged(PEER_MAC, GUEST_MAC, 100)
    rig.from_host([f])
    sent = [s for sim in rig.sim.values() for s in sim.take_transmitted()]
    assert sent == [f]


def test_a_tagged_super_frame_longer_than_a_slot_keeps_its_tag(rig: Rig) -> None:
    """A GRO super-frame too long for its receive slot is read from the socket's queue; the
    tag the kernel took off is in the slot's header, and goes back in."""
    rig.set_mode("active-backup")
    hdr = vnet(F_NEEDS_CSUM, GSO_TCPV4, hdr_len=58, gso_size=1448, csum_start=38, csum_offset=16)
    f = tagged(GROUP_MAC, PEER_MAC, 42, body=bytes(SLOT_ROOM + 1000), hdr=hdr)
    rig.from_wire("a", [f])
    assert rig.tapped == [f]
