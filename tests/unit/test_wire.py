"""Unit tests for vnicbond.wire: the virtio-net header and the announcement frames (gratuitous
ARP, unsolicited NA, and the RARP that moves a guest's MAC to another switch port).

Frames are decoded here with ``struct`` from the RFC 826 / RFC 4861 / RFC 8200 layouts, never
with scapy, so a mistake in how the frames are built cannot hide in how they are read back.
"""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from vnicbond.wire.announce import (
    announcement,
    gratuitous_arp,
    mac_announcement,
    unsolicited_na,
)
from vnicbond.wire.vnet import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
    VnetHeader,
    build_vnet,
    parse_vnet,
)

MAC = bytes.fromhex("02a0b1c2d3e4")
OTHER_MAC = bytes.fromhex("02ffeeddccbb")
V4 = "198.18.0.10"
V6 = "2001:db8::10"


# -- virtio-net header -------------------------------------------------------------------------
# struct virtio_net_hdr: flags u8, gso_type u8, hdr_len le16, gso_size le16, csum_start le16,
# csum_offset le16. Written out by hand: 66 = 0x0042, 1448 = 0x05a8, 34 = 0x0022, 16 = 0x0010.
GOLDEN_HDR = VnetHeader(flags=F_NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=66, gso_size=1448,
                        csum_start=34, csum_offset=16)
GOLDEN_BYTES = bytes([0x01, 0x01, 0x42, 0x00, 0xA8, 0x05, 0x22, 0x00, 0x10, 0x00])


def test_vnet_header_is_ten_bytes() -> None:
    assert VNET_HDR_LEN == 10
    assert ZERO_VNET_HDR == b"\x00" * 10


def test_vnet_golden_encoding() -> None:
    assert build_vnet(GOLDEN_HDR) == GOLDEN_BYTES


def test_vnet_golden_decoding() -> None:
    assert parse_vnet(GOLDEN_BYTES) == GOLDEN_HDR


def test_vnet_u16_fields_are_little_endian() -> None:
    hdr = VnetHeader(hdr_len=0x0102, gso_size=0x0304, csum_start=0x0506, csum_offset=0x0708)
    assert build_vnet(hdr)[2:] == bytes([0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07])


def test_vnet_zero_header_is_no_offload() -> None:
    hdr = parse_vnet(ZERO_VNET_HDR)
    assert hdr == VnetHeader()
    assert hdr.gso_type == 0 and hdr.flags == 0
    assert build_vnet(VnetHeader()) == ZERO_VNET_HDR


def test_vnet_round_trip_random_values() -> None:
    rng = random.Random(7)
    for _ in range(500):
        hdr = VnetHeader(rng.randrange(256), rng.randrange(256), rng.randrange(65536),
                         rng.randrange(65536), rng.randrange(65536), rng.randrange(65536))
        data = build_vnet(hdr)
        assert len(data) == VNET_HDR_LEN
        assert parse_vnet(data) == hdr


def test_vnet_round_trip_extremes() -> None:
    hdr = VnetHeader(0xFF, 0xFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)
    assert build_vnet(hdr) == b"\xff" * 10
    assert parse_vnet(b"\xff" * 10) == hdr


def test_vnet_parse_reads_only_the_header_of_a_frame() -> None:
    frame = GOLDEN_BYTES + b"\xee" * 60
    assert parse_vnet(frame) == GOLDEN_HDR
    assert parse_vnet(bytearray(frame)) == GOLDEN_HDR
    assert parse_vnet(memoryview(frame)) == GOLDEN_HDR


@pytest.mark.parametrize("length", [0, 1, 9])
def test_vnet_parse_too_short_raises_value_error(length: int) -> None:
    with pytest.raises(ValueError, match="10"):
        parse_vnet(GOLDEN_BYTES[:length])


# -- checksum helpers (RFC 1071) ---------------------------------------------------------------
def ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def icmpv6_checksum(src: bytes, dst: bytes, icmp: bytes) -> int:
    """RFC 8200 8.1: pseudo-header (src, dst, upper-layer length, zeros, next header 58)."""
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    zeroed = icmp[:2] + b"\x00\x00" + icmp[4:]
    return (~ones_complement_sum(pseudo + zeroed)) & 0xFFFF


def test_checksum_helper_against_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    assert ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2


# -- gratuitous ARP ----------------------------------------------------------------------------
def decode_arp(frame: bytes) -> dict[str, object]:
    dst, src, ethertype = struct.unpack_from("!6s6sH", frame, 0)
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack_from(
        "!HHBBH6s4s6s4s", frame, 14)
    return {"dst": dst, "src": src, "ethertype": ethertype, "htype": htype, "ptype": ptype,
            "hlen": hlen, "plen": plen, "op": op, "sha": sha, "spa": spa, "tha": tha,
            "tpa": tpa}


def test_gratuitous_arp_every_field() -> None:
    frame = announcement(MAC, V4)
    assert len(frame) >= 14 + 28
    f = decode_arp(frame)
    assert f["dst"] == b"\xff" * 6
    assert f["src"] == MAC
    assert f["ethertype"] == 0x0806
    assert f["htype"] == 1  # Ethernet
    assert f["ptype"] == 0x0800  # IPv4
    assert f["hlen"] == 6
    assert f["plen"] == 4
    assert f["op"] == 1  # request
    assert f["sha"] == MAC
    assert f["spa"] == bytes([198, 18, 0, 10])
    assert f["tpa"] == bytes([198, 18, 0, 10])
    assert f["tha"] == b"\x00" * 6
    # Anything after the ARP body can only be zero padding.
    assert frame[42:] == b"\x00" * (len(frame) - 42)


def test_gratuitous_arp_follows_mac_and_address() -> None:
    f = decode_arp(announcement(OTHER_MAC, "203.0.113.7"))
    assert f["src"] == OTHER_MAC and f["sha"] == OTHER_MAC
    assert f["spa"] == f["tpa"] == bytes([203, 0, 113, 7])


def test_announcement_accepts_a_prefix_length() -> None:
    assert announcement(MAC, "198.18.0.10/24") == announcement(MAC, V4)
    assert announcement(MAC, "2001:db8::10/64") == announcement(MAC, V6)
    assert decode_arp(announcement(MAC, "198.18.0.10/24"))["spa"] == bytes([198, 18, 0, 10])


def test_announcement_dispatches_on_address_family() -> None:
    assert announcement(MAC, V4) == gratuitous_arp(MAC, IPv4Address(V4))
    assert announcement(MAC, V6) == unsolicited_na(MAC, IPv6Address(V6))


def test_announcement_cache_keeps_macs_apart() -> None:
    a = announcement(MAC, V4)
    b = announcement(OTHER_MAC, V4)
    assert a != b
    assert decode_arp(a)["src"] == MAC and decode_arp(b)["src"] == OTHER_MAC


@pytest.mark.parametrize("bad", ["not-an-address", "198.18.0.300", ""])
def test_announcement_rejects_a_non_address(bad: str) -> None:
    with pytest.raises(ValueError):
        announcement(MAC, bad)


# -- unsolicited neighbour advertisement -------------------------------------------------------
def decode_na(frame: bytes) -> dict[str, object]:
    dst, src, ethertype = struct.unpack_from("!6s6sH", frame, 0)
    vtf, plen, nh, hlim, ip_src, ip_dst = struct.unpack_from("!IHBB16s16s", frame, 14)
    icmp = frame[54:54 + plen]
    itype, code, csum, flags, target = struct.unpack_from("!BBHI16s", icmp, 0)
    opt_type, opt_len = struct.unpack_from("!BB", icmp, 24)
    opt_mac = icmp[26:24 + opt_len * 8]
    return {"dst": dst, "src": src, "ethertype": ethertype, "version": vtf >> 28,
            "plen": plen, "nh": nh, "hlim": hlim, "ip_src": ip_src, "ip_dst": ip_dst,
            "icmp": icmp, "type": itype, "code": code, "csum": csum, "flags": flags,
            "target": target, "opt_type": opt_type, "opt_len": opt_len, "opt_mac": opt_mac,
            "trailer": frame[54 + plen:]}


def test_unsolicited_na_every_field() -> None:
    frame = announcement(MAC, V6)
    f = decode_na(frame)
    addr = IPv6Address(V6).packed
    assert f["dst"] == bytes.fromhex("333300000001")
    assert f["src"] == MAC
    assert f["ethertype"] == 0x86DD
    assert f["version"] == 6
    assert f["nh"] == 58  # ICMPv6
    assert f["hlim"] == 255  # RFC 4861 7.1.2: receivers drop NAs with any other hop limit
    assert f["ip_src"] == addr
    assert f["ip_dst"] == IPv6Address("ff02::1").packed
    # 4 (type, code, checksum) + 4 (flags) + 16 (target) + 8 (one option).
    assert f["plen"] == 32
    assert f["trailer"] == b""
    assert f["type"] == 136
    assert f["code"] == 0
    flags = f["flags"]
    assert isinstance(flags, int)
    assert flags & 0x20000000, "Override must be set"
    assert not flags & 0x80000000, "Router must be clear"
    assert not flags & 0x40000000, "Solicited must be clear"
    assert flags & 0x1FFFFFFF == 0, "reserved bits must be zero"
    assert f["target"] == addr
    assert f["opt_type"] == 2  # Target Link-Layer Address
    assert f["opt_len"] == 1  # in units of 8 bytes
    assert f["opt_mac"] == MAC


def test_unsolicited_na_checksum_is_correct() -> None:
    f = decode_na(announcement(MAC, V6))
    icmp = f["icmp"]
    assert isinstance(icmp, bytes)
    src = IPv6Address(V6).packed
    dst = IPv6Address("ff02::1").packed
    assert f["csum"] == icmpv6_checksum(src, dst, icmp)
    # And the receiver's view: the sum over pseudo-header and message, checksum included,
    # is all ones.
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    assert ones_complement_sum(pseudo + icmp) == 0xFFFF


def test_unsolicited_na_follows_mac_and_address() -> None:
    address = "2001:db8:1::abcd"
    f = decode_na(announcement(OTHER_MAC, address))
    packed = IPv6Address(address).packed
    assert f["src"] == OTHER_MAC and f["opt_mac"] == OTHER_MAC
    assert f["ip_src"] == packed and f["target"] == packed
    icmp = f["icmp"]
    assert isinstance(icmp, bytes)
    assert f["csum"] == icmpv6_checksum(packed, IPv6Address("ff02::1").packed, icmp)


# -- RARP for a guest's MAC --------------------------------------------------------------------
def test_mac_announcement_every_field() -> None:
    """RFC 903's reverse request, as QEMU and Open vSwitch send it to move a MAC: broadcast,
    the guest's MAC as source and in both hardware address fields, no protocol address."""
    frame = mac_announcement(MAC)
    f = decode_arp(frame)
    assert f["dst"] == b"\xff" * 6
    assert f["src"] == MAC
    assert f["ethertype"] == 0x8035  # RARP
    assert (f["htype"], f["ptype"], f["hlen"], f["plen"]) == (1, 0x0800, 6, 4)
    assert f["op"] == 3  # reverse request
    assert f["sha"] == MAC and f["tha"] == MAC
    assert f["spa"] == f["tpa"] == bytes(4)  # claims no IP address
    assert frame[42:] == b"\x00" * (len(frame) - 42)


def test_mac_announcement_follows_the_mac() -> None:
    a, b = mac_announcement(MAC), mac_announcement(OTHER_MAC)
    assert a != b
    assert decode_arp(b)["src"] == OTHER_MAC and decode_arp(b)["sha"] == OTHER_MAC
    assert mac_announcement(MAC) == a
