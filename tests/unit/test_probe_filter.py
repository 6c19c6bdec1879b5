"""The probe sockets' BPF program, run on a small classic-BPF interpreter
(:mod:`tests.unit.bpfsim`): what reaches the probe engine, and that floods at the test address
do not; with several MACs and question addresses, each of them and nothing else. The kernel's
own checker accepts every program (attached to a plain UDP socket: no privilege needed)."""

from __future__ import annotations

import socket
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

from tests.unit import bpfsim
from vnicbond.system.bpf import NOTHING, attach, probe_filter
from vnicbond.system.packet import ProbeSockets

MAC = "02:00:00:00:00:0a"
GROUP = "02:00:00:00:00:99"
OTHER = "02:00:00:00:00:77"
TEST4 = "198.18.0.21"
TEST6 = "2001:db8::21"


TEST4_PACKED = IPv4Address(TEST4).packed
TEST6_PACKED = IPv6Address(TEST6).packed
MAC_BYTES = bytes.fromhex(MAC.replace(":", ""))


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def kinds(pkt: object, test_ip: bytes, macs: list[bytes] | None = None) -> set[str]:
    """Which of the member's two probe sockets ``pkt`` reaches."""
    macs = macs or [MAC_BYTES]
    return {kind for kind in ("replies", "questions")
            if bpfsim.run(probe_filter(macs, [test_ip], kind), bytes(pkt)) > 0}


ARGUMENTS = [
    ([MAC_BYTES], [TEST4_PACKED]),
    ([MAC_BYTES], [TEST6_PACKED]),
    ([MAC_BYTES], []),
    ([MAC_BYTES, mac_bytes(GROUP)], [TEST4_PACKED, TEST6_PACKED]),
    ([bytes([i]) * 6 for i in range(4)],
     [TEST4_PACKED, TEST6_PACKED, IPv6Address("fe80::1").packed, bytes(4)]),
    ([MAC_BYTES], [IPv6Address(f"fe80::{i}").packed for i in range(1, 5)]),
    ([MAC_BYTES], [IPv4Address(f"198.18.0.{i}").packed for i in range(1, 5)]),
]


@pytest.mark.parametrize(("macs", "ips"), ARGUMENTS)
@pytest.mark.parametrize("kind", ["replies", "questions"])
def test_the_kernel_accepts_every_program(macs: list[bytes], ips: list[bytes],
                                          kind: str) -> None:
    prog = probe_filter(macs, ips, kind)
    bpfsim.check(prog)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        attach(sock, prog)  # the kernel's checker runs here: EINVAL if it refuses


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
        probe_filter([MAC_BYTES], [TEST4_PACKED], "both")


@pytest.mark.parametrize(("macs", "ips", "message"), [
    ([], [TEST4_PACKED], "1 to 4 MACs"),
    ([MAC_BYTES] * 5, [TEST4_PACKED], "1 to 4 MACs"),
    (MAC_BYTES, [TEST4_PACKED], "1 to 4 MACs"),  # the old signature: one MAC, not a list
    ([MAC_BYTES[:5]], [TEST4_PACKED], "a MAC is 6 bytes"),
    ([MAC_BYTES], TEST4_PACKED, "0 to 4 question addresses"),
    ([MAC_BYTES], [TEST4_PACKED] * 5, "0 to 4 question addresses"),
    ([MAC_BYTES], [bytes(5)], "4 or 16 packed bytes"),
    ([MAC_BYTES], ["198.18.0.21"], "4 or 16 packed bytes"),
])
def test_bad_arguments_are_refused(macs: object, ips: object, message: str) -> None:
    for kind in ("replies", "questions"):
        with pytest.raises(ValueError, match=message):
            probe_filter(macs, ips, kind)  # type: ignore[arg-type]


# -- several MACs, several question addresses ---------------------------------------------------

MACS = [mac_bytes("02:00:00:00:00:0a"), mac_bytes("02:00:00:00:00:99"),
        mac_bytes("02:00:00:00:0a:00"), mac_bytes("0a:00:00:00:00:0a")]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_replies_for_any_of_the_macs_and_no_other(count: int) -> None:
    macs = MACS[:count]
    prog = probe_filter(macs, [], "replies")
    for mac in MACS:
        text = ":".join(f"{b:02x}" for b in mac)
        for pkt in (Ether(dst=text) / IP(dst=TEST4) / ICMP(type=0),
                    Ether(dst=text) / ARP(op=2, pdst=TEST4),
                    Ether(dst=text) / IPv6(dst="fe80::1") / ICMPv6EchoReply(),
                    Ether(dst=text) / IPv6(dst="fe80::1") / ICMPv6ND_NA(tgt="fe80::2")):
            assert (bpfsim.run(prog, bytes(pkt)) > 0) == (mac in macs), (mac, pkt.summary())
    # Same first four bytes or same last two as a MAC of ours is not enough.
    for near in ("02:00:00:00:00:0b", "02:00:00:01:00:0a", "03:00:00:00:00:0a"):
        assert bpfsim.run(prog, bytes(Ether(dst=near) / IP() / ICMP(type=0))) == 0
    assert bpfsim.run(prog, bytes(Ether(dst=MAC) / IP() / ICMP(type=8))) == 0


def test_questions_for_any_address_of_both_families() -> None:
    v4 = [IPv4Address("198.18.0.21"), IPv4Address("198.18.0.22")]
    v6 = [IPv6Address("2001:db8::21"), IPv6Address("fe80::ff:fe00:a")]
    prog = probe_filter([MAC_BYTES], [v4[0].packed, v6[0].packed, v4[1].packed, v6[1].packed],
                        "questions")
    for ip in v4:
        assert bpfsim.run(prog, bytes(Ether(dst="ff:ff:ff:ff:ff:ff")
                                      / ARP(op=1, psrc="198.18.0.2", pdst=str(ip)))) > 0
        assert bpfsim.run(prog, bytes(Ether(dst=MAC) / ARP(op=2, pdst=str(ip)))) == 0
    for ip in v6:
        assert bpfsim.run(prog, bytes(Ether(dst=MAC) / IPv6(src="fe80::2", dst=str(ip))
                                      / ICMPv6ND_NS(tgt=str(ip)))) > 0
        echo = Ether(dst=MAC) / IPv6(dst=str(ip)) / ICMPv6EchoRequest()
        assert bpfsim.run(prog, bytes(echo)) == 0
    for other in ("198.18.0.23", "198.18.0.20", "21.0.18.198"):
        assert bpfsim.run(prog, bytes(Ether(dst=MAC) / ARP(op=1, pdst=other))) == 0
    # Addresses that share three of four words with one of ours.
    for other in ("2001:db8::22", "2001:db9::21", "fe80::ff:fe00:b", "fe80::1:ff:fe00:a",
                  "2001:db8::ff:fe00:a"):
        assert bpfsim.run(prog, bytes(Ether(dst=MAC) / IPv6(dst="ff02::1:ff00:21")
                                      / ICMPv6ND_NS(tgt=other))) == 0


@pytest.mark.parametrize("ips", [[TEST4_PACKED], [TEST6_PACKED]], ids=["v4 only", "v6 only"])
def test_questions_of_one_family_drop_the_other(ips: list[bytes]) -> None:
    prog = probe_filter([MAC_BYTES], ips, "questions")
    arp = bytes(Ether(dst=MAC) / ARP(op=1, pdst=TEST4))
    ns = bytes(Ether(dst=MAC) / IPv6(dst="ff02::1:ff00:21") / ICMPv6ND_NS(tgt=TEST6))
    assert (bpfsim.run(prog, arp) > 0, bpfsim.run(prog, ns) > 0) == (len(ips[0]) == 4,
                                                                      len(ips[0]) == 16)


def test_with_no_question_address_the_questions_socket_gets_nothing() -> None:
    prog = probe_filter([MAC_BYTES], [], "questions")
    for pkt in (Ether(dst=MAC) / ARP(op=1, pdst=TEST4),
                Ether(dst=MAC) / IPv6() / ICMPv6ND_NS(tgt=TEST6),
                Ether(dst=MAC) / IP() / ICMP(type=0), Ether(dst=MAC, type=0x88B5) / bytes(20)):
        assert bpfsim.run(prog, bytes(pkt)) == 0


def test_probe_sockets_take_lists() -> None:
    """ProbeSockets(ifname, macs, question_ips) and refilter(macs, question_ips) check what
    they are given before touching a socket (opening one needs CAP_NET_RAW, tested in netns)."""
    with pytest.raises(ValueError, match="1 to 4 MACs"):
        ProbeSockets("lo", [], [TEST4_PACKED])
    with pytest.raises(ValueError, match="1 to 4 MACs"):
        ProbeSockets.refilter(object.__new__(ProbeSockets), MAC_BYTES, [TEST4_PACKED])


def test_silenced_probe_sockets_take_nothing() -> None:
    """A member that probes from no address any more keeps its probe sockets open (a close
    waits for an RCU grace period, in the middle of a failover) behind a program that takes
    nothing; the kernel accepts it."""
    bpfsim.check(NOTHING)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        attach(sock, NOTHING)
    for frame in (bytes(60), bytes(Ether(dst=MAC) / IP() / ICMP(type=0))):
        assert bpfsim.run(NOTHING, frame) == 0
