"""The probe sockets' BPF program, run on a small classic-BPF interpreter: what reaches the
probe engine, and that floods at the test address do not."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from vnicbond.system.packet import probe_filter

MAC = "02:00:00:00:00:0a"
GROUP = "02:00:00:00:00:99"
OTHER = "02:00:00:00:00:77"
TEST4 = "198.18.0.21"
TEST6 = "2001:db8::21"


def run_bpf(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """Just enough of the classic BPF machine for our program (absolute loads raise on a
    short packet, which the kernel treats as 'drop')."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        try:
            if code == 0x20:
                a = int.from_bytes(pkt[k:k + 4], "big") if k + 4 <= len(pkt) else None
            elif code == 0x28:
                a = int.from_bytes(pkt[k:k + 2], "big") if k + 2 <= len(pkt) else None
            elif code == 0x30:
                a = pkt[k] if k < len(pkt) else None
            elif code == 0x50:
                a = pkt[x + k] if x + k < len(pkt) else None
            elif code == 0xB1:
                x = 4 * (pkt[k] & 0xF) if k < len(pkt) else None
            elif code == 0x15:
                pc += jt if a == k else jf
            elif code == 0x45:
                pc += jt if a & k else jf
            elif code == 0x06:
                return k
            else:
                raise AssertionError(f"unknown opcode {code:#x}")
        except TypeError:
            return 0
        if a is None or x is None:
            return 0


TEST4_PACKED = IPv4Address(TEST4).packed
TEST6_PACKED = IPv6Address(TEST6).packed
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))


def kinds(pkt: object, test_ip: bytes) -> set[str]:
    """Which of the member's two probe sockets ``pkt`` reaches."""
    return {kind for kind in ("replies", "questions")
            if run_bpf(probe_filter(MAC_BYTES, test_ip, kind), bytes(pkt)) > 0}


def test_offsets_are_forward_and_fit_a_byte() -> None:
    for test_ip in (TEST4_PACKED, TEST6_PACKED):
        for kind in ("replies", "questions"):
            for code, jt, jf, _k in probe_filter(MAC_BYTES, test_ip, kind):
                if code in (0x15, 0x45):
                    assert 0 <= jt < 256 and 0 <= jf < 256


REPLIES = [
    Ether(dst=MAC) / IP(src="198.18.0.2", dst=TEST4) / ICMP(type=0),
    Ether(dst=MAC) / IP(src="198.18.0.2", dst=TEST4, options=b"\x01" * 8) / ICMP(type=0),
    Ether(dst=MAC) / ARP(op=2, psrc="198.18.0.2", pdst=TEST4),
    Ether(dst=MAC) / IPv6(src="2001:db8::2", dst=TEST6) / ICMPv6EchoReply(),
    Ether(dst=MAC) / IPv6(src="2001:db8::2", dst=TEST6) / ICMPv6ND_NA(tgt="2001:db8::2"),
]


@pytest.mark.parametrize("pkt", REPLIES, ids=["echo reply", "echo reply, IP options",
                                              "arp reply", "echo6 reply", "na"])
@pytest.mark.parametrize("test_ip", [TEST4_PACKED, TEST6_PACKED], ids=["v4", "v6"])
def test_replies_to_us_reach_the_replies_socket_only(pkt: object, test_ip: bytes) -> None:
    assert kinds(pkt, test_ip) == {"replies"}


@pytest.mark.parametrize("pkt", [
    Ether(dst=MAC) / ARP(op=1, psrc="198.18.0.2", pdst=TEST4),
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="198.18.0.2", pdst=TEST4),
], ids=["unicast", "broadcast"])
def test_arp_questions_for_the_ipv4_test_address_reach_the_questions_socket(pkt: object) -> None:
    assert kinds(pkt, TEST4_PACKED) == {"questions"}
    assert kinds(pkt, TEST6_PACKED) == set()  # an IPv6 test address answers no ARP


@pytest.mark.parametrize("pkt", [
    Ether(dst=MAC) / IPv6(src="2001:db8::2", dst=TEST6) / ICMPv6ND_NS(tgt=TEST6),
    Ether(dst="33:33:ff:00:00:21") / IPv6(src="2001:db8::2", dst="ff02::1:ff00:21")
    / ICMPv6ND_NS(tgt=TEST6),
], ids=["unicast", "multicast"])
def test_solicitations_for_the_ipv6_test_address_reach_the_questions_socket(pkt: object) -> None:
    assert kinds(pkt, TEST6_PACKED) == {"questions"}
    assert kinds(pkt, TEST4_PACKED) == set()


@pytest.mark.parametrize("pkt", [
    Ether(dst=GROUP) / IP(dst="198.18.0.10") / ICMP(type=0),  # data traffic
    Ether(dst=OTHER) / ARP(op=2, pdst=TEST4),
    Ether(dst=MAC) / IP(dst=TEST4) / ICMP(type=8),  # echo request flood at the test address
    Ether(dst=MAC) / IP(dst=TEST4) / ICMP(type=3),
    Ether(dst=MAC) / IP(dst=TEST4) / TCP(flags="S"),
    Ether(dst=MAC) / IP(dst=TEST4) / UDP(),
    Ether(dst=MAC) / IPv6(dst=TEST6) / ICMPv6EchoRequest(),
    Ether(dst=MAC) / IPv6(dst=TEST6) / ICMPv6DestUnreach(),
    Ether(dst=MAC) / IPv6(dst=TEST6) / UDP(),
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, pdst="198.18.0.99"),  # someone else's question
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, psrc="198.18.0.2", pdst=TEST4),  # gratuitous
    Ether(dst="ff:ff:ff:ff:ff:ff") / IP(dst="198.18.0.255") / UDP(),
    Ether(dst="33:33:00:00:00:01") / IPv6(dst="ff02::1") / ICMPv6ND_NA(tgt="2001:db8::2"),
    Ether(dst="33:33:ff:00:00:99") / IPv6(dst="ff02::1:ff00:99") / ICMPv6ND_NS(tgt="2001:db8::99"),
    Ether(dst=MAC, type=0x0800) / b"\x45",  # truncated
    Ether(dst=MAC, type=0x86DD) / b"\x60\x00",
    Ether(dst=MAC, type=0x0806) / b"\x00\x01",
], ids=["data", "other mac", "echo request", "icmp error", "tcp", "udp", "echo6 request",
        "icmp6 error", "udp6", "broadcast arp for another", "gratuitous arp", "broadcast ip",
        "multicast na", "ns for another", "truncated ipv4", "truncated ipv6", "truncated arp"])
@pytest.mark.parametrize("test_ip", [TEST4_PACKED, TEST6_PACKED], ids=["v4", "v6"])
def test_the_rest_is_dropped_in_the_kernel(pkt: object, test_ip: bytes) -> None:
    assert kinds(pkt, test_ip) == set()


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind 'both'"):
        probe_filter(MAC_BYTES, TEST4_PACKED, "both")
