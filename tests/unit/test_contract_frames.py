"""Golden bytes of the frames the daemon puts on the wire, pinned before issue 10's restructuring.

The announcements (gratuitous ARP, unsolicited NA) and the probe builders' frames, for fixed
MACs and addresses, written out as hex taken from the code as it was. ``test_wire.py`` and
``test_probe_wire.py`` check these frames field by field (with ``struct`` and with scapy);
this file checks that not one byte changes, whoever builds them afterwards.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from vnicbond.wire.announce import announcement
from vnicbond.wire.probe import (
    arp_reply,
    arp_request,
    icmp_echo_request,
    neighbor_advertisement,
    neighbor_solicitation,
)

MAC = bytes.fromhex("02a0b1c2d3e4")
PEER_MAC = bytes.fromhex("02ffeeddccbb")
TEST4 = IPv4Address("198.18.0.21")
TARGET4 = IPv4Address("198.18.0.2")
TEST6 = IPv6Address("2001:db8::21")
TARGET6 = IPv6Address("2001:db8::2")


def golden(*lines: str) -> bytes:
    return bytes.fromhex("".join(lines))


# Gratuitous ARP request for 198.18.0.10 from 02:a0:b1:c2:d3:e4, broadcast: Ethernet, then
# htype 1, ptype 0x0800, hlen 6, plen 4, op 1, sender = target = 198.18.0.10, target MAC 0.
GARP_V4 = golden(
    "ffffffffffff" "02a0b1c2d3e4" "0806",
    "0001" "0800" "06" "04" "0001" "02a0b1c2d3e4" "c612000a" "000000000000" "c612000a")

# Unsolicited NA for 2001:db8::10 to ff02::1 (33:33:00:00:00:01), hop limit 255, flags O
# only, Target Link-Layer Address option with the MAC.
NA_V6 = golden(
    "333300000001" "02a0b1c2d3e4" "86dd",
    "60000000" "0020" "3a" "ff",
    "20010db8000000000000000000000010",
    "ff020000000000000000000000000001",
    "88" "00" "72c6" "20000000",
    "20010db8000000000000000000000010",
    "02" "01" "02a0b1c2d3e4")


def test_announcement_golden_ipv4() -> None:
    assert announcement(MAC, "198.18.0.10/24") == GARP_V4
    assert announcement(MAC, "198.18.0.10") == GARP_V4


def test_announcement_golden_ipv6() -> None:
    assert announcement(MAC, "2001:db8::10/64") == NA_V6
    assert announcement(MAC, "2001:db8::10") == NA_V6


PROBE_FRAMES = {
    # Who has 198.18.0.2, tell 198.18.0.21 (broadcast).
    "arp-request": (
        lambda: arp_request(MAC, TEST4, TARGET4),
        golden("ffffffffffff" "02a0b1c2d3e4" "0806",
               "0001" "0800" "06" "04" "0001" "02a0b1c2d3e4" "c6120015" "000000000000"
               "c6120002")),
    # 198.18.0.21 is at 02:a0:b1:c2:d3:e4, to the asker.
    "arp-reply": (
        lambda: arp_reply(MAC, TEST4, PEER_MAC, TARGET4),
        golden("02ffeeddccbb" "02a0b1c2d3e4" "0806",
               "0001" "0800" "06" "04" "0002" "02a0b1c2d3e4" "c6120015" "02ffeeddccbb"
               "c6120002")),
    # IPv4 echo request: IHL 5, TOS 0, id 0, DF, TTL 64; ident 0x1234, seq 0x0102.
    "echo4": (
        lambda: icmp_echo_request(MAC, PEER_MAC, TEST4, TARGET4, 0x1234, 0x0102, b"vnicbond"),
        golden("02ffeeddccbb" "02a0b1c2d3e4" "0800",
               "45" "00" "0024" "0000" "4000" "40" "01" "ae9d" "c6120015" "c6120002",
               "08" "00" "3424" "1234" "0102" "766e6963626f6e64")),
    # ICMPv6 echo request, hop limit 64.
    "echo6": (
        lambda: icmp_echo_request(MAC, PEER_MAC, TEST6, TARGET6, 0x1234, 0x0102, b"vnicbond"),
        golden("02ffeeddccbb" "02a0b1c2d3e4" "86dd",
               "60000000" "0010" "3a" "40",
               "20010db8000000000000000000000021",
               "20010db8000000000000000000000002",
               "80" "00" "6044" "1234" "0102" "766e6963626f6e64")),
    # Neighbour solicitation for 2001:db8::2 to its solicited-node group, with the Source
    # Link-Layer Address option.
    "ns": (
        lambda: neighbor_solicitation(MAC, TEST6, TARGET6),
        golden("3333ff000002" "02a0b1c2d3e4" "86dd",
               "60000000" "0020" "3a" "ff",
               "20010db8000000000000000000000021",
               "ff0200000000000000000001ff000002",
               "87" "00" "95c0" "00000000",
               "20010db8000000000000000000000002",
               "01" "01" "02a0b1c2d3e4")),
    # From :: (duplicate address detection): no option.
    "ns-dad": (
        lambda: neighbor_solicitation(MAC, IPv6Address("::"), TEST6),
        golden("3333ff000021" "02a0b1c2d3e4" "86dd",
               "60000000" "0018" "3a" "ff",
               "00000000000000000000000000000000",
               "ff0200000000000000000001ff000021",
               "87" "00" "4cad" "00000000",
               "20010db8000000000000000000000021")),
    # Solicited advertisement of 2001:db8::21 to the asker: flags S and O, target option.
    "na": (
        lambda: neighbor_advertisement(MAC, TEST6, PEER_MAC, TARGET6),
        golden("02ffeeddccbb" "02a0b1c2d3e4" "86dd",
               "60000000" "0020" "3a" "ff",
               "20010db8000000000000000000000021",
               "20010db8000000000000000000000002",
               "88" "00" "03ed" "60000000",
               "20010db8000000000000000000000021",
               "02" "01" "02a0b1c2d3e4")),
}


@pytest.mark.parametrize("name", sorted(PROBE_FRAMES))
def test_probe_frame_golden(name: str) -> None:
    build, expected = PROBE_FRAMES[name]
    assert build() == expected
