"""Unit tests for vnicbond.wire.probe: the control frames of probe-based failure detection.

scapy is the independent codec here: every frame the module builds is decoded by scapy (and its
checksums recomputed by scapy), and every frame the parser is given is encoded by scapy, so a
mistake cannot hide symmetrically in both directions of the module.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
    in6_chksum,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Padding, Raw
from scapy.utils import checksum

from vnicbond.wire.probe import (
    ALL_HOSTS_V4,
    ALL_NODES_V6,
    Arp,
    EchoReply,
    NeighborAdvertisement,
    NeighborSolicitation,
    arp_reply,
    arp_request,
    icmp_echo_request,
    multicast_mac,
    neighbor_advertisement,
    neighbor_solicitation,
    parse_control,
    solicited_node,
)

MAC = bytes.fromhex("02a0b1c2d3e4")
PEER_MAC = bytes.fromhex("02ffeeddccbb")
V4 = IPv4Address("198.18.0.11")
PEER_V4 = IPv4Address("198.18.0.1")
V6 = IPv6Address("2001:db8::11")
PEER_V6 = IPv6Address("2001:db8::1:2:3")
LL6 = IPv6Address("fe80::a0:b1ff:fec2:d3e4")
PAYLOAD = b"vnicbond probe \x00\x01\x02\xff"
CONTROL_TYPES = (Arp, EchoReply, NeighborSolicitation, NeighborAdvertisement)


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def recomputed(frame: bytes, layer: type[Packet], field: str) -> int:
    """The value scapy itself computes for checksum ``field`` of ``layer`` in ``frame``."""
    pkt = Ether(frame)
    delattr(pkt[layer], field)
    return Ether(bytes(pkt))[layer].getfieldval(field)


def pad60(frame: bytes) -> bytes:
    return frame + bytes(max(0, 60 - len(frame)))


def icmp6_frame(message: bytes, *, src: IPv6Address = PEER_V6, dst: IPv6Address = V6,
                hlim: int = 255, eth_dst: bytes = MAC) -> bytes:
    """An ICMPv6 ``message`` (raw bytes, checksum field zero) with scapy's checksum filled in."""
    ip = IPv6(src=str(src), dst=str(dst), nh=58, hlim=hlim)
    csum = in6_chksum(58, ip / Raw(message), message)
    message = message[:2] + csum.to_bytes(2, "big") + message[4:]
    return bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(eth_dst)) / ip / Raw(message))


def icmp4_frame(message: bytes, **ip_fields: object) -> bytes:
    """An IPv4 frame carrying raw ``message`` with scapy filling in the IP header checksum."""
    return bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                 / IP(src=str(PEER_V4), dst=str(V4), proto=1, **ip_fields) / Raw(message))


def with_icmp_checksum(message: bytes) -> bytes:
    message = message[:2] + b"\x00\x00" + message[4:]
    return message[:2] + checksum(message).to_bytes(2, "big") + message[4:]


def patch(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


def fix_ipv4_checksum(frame: bytes) -> bytes:
    """Recompute the IPv4 header checksum (over IHL words, or 20 bytes if IHL is below 5)."""
    ihl = max(5, frame[14] & 0x0F) * 4
    header = patch(frame[14:14 + ihl], 10, b"\x00\x00")
    return patch(frame, 24, checksum(header).to_bytes(2, "big"))


# -- frames built by scapy, each with what parse_control must return -----------------------------


def scapy_arp(op: int) -> bytes:
    if op == 1:
        return bytes(Ether(src=mac_str(PEER_MAC), dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc=mac_str(PEER_MAC), psrc=str(PEER_V4),
                           hwdst="00:00:00:00:00:00", pdst=str(V4)))
    return bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                 / ARP(op=2, hwsrc=mac_str(PEER_MAC), psrc=str(PEER_V4), hwdst=mac_str(MAC),
                       pdst=str(V4)))


def scapy_echo4(payload: bytes = PAYLOAD, **ip_fields: object) -> bytes:
    return bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                 / IP(src=str(PEER_V4), dst=str(V4), **ip_fields)
                 / ICMP(type=0, code=0, id=0x1234, seq=0xBEEF) / Raw(payload))


def scapy_echo6(payload: bytes = PAYLOAD, **ip_fields: object) -> bytes:
    return bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                 / IPv6(src=str(PEER_V6), dst=str(V6), **ip_fields)
                 / ICMPv6EchoReply(id=0x1234, seq=0xBEEF, data=payload))


def scapy_ns(*, src: IPv6Address = PEER_V6, hlim: int = 255, option: bool = True) -> bytes:
    group, group_mac = solicited_node(V6)
    pkt = (Ether(src=mac_str(PEER_MAC), dst=mac_str(group_mac))
           / IPv6(src=str(src), dst=str(group), hlim=hlim) / ICMPv6ND_NS(tgt=str(V6)))
    if option:
        pkt /= ICMPv6NDOptSrcLLAddr(lladdr=mac_str(PEER_MAC))
    return bytes(pkt)


def scapy_na(*, r: int = 0, s: int = 1, o: int = 1, hlim: int = 255, option: bool = True,
             dst: IPv6Address = V6) -> bytes:
    pkt = (Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
           / IPv6(src=str(PEER_V6), dst=str(dst), hlim=hlim)
           / ICMPv6ND_NA(R=r, S=s, O=o, tgt=str(PEER_V6)))
    if option:
        pkt /= ICMPv6NDOptDstLLAddr(lladdr=mac_str(PEER_MAC))
    return bytes(pkt)


EXPECTED_ARP_REQUEST = Arp(op=1, src_mac=PEER_MAC, sender_mac=PEER_MAC, sender_ip=PEER_V4,
                           target_mac=bytes(6), target_ip=V4, dst_mac=b"\xff" * 6)
EXPECTED_ARP_REPLY = Arp(op=2, src_mac=PEER_MAC, sender_mac=PEER_MAC, sender_ip=PEER_V4,
                         target_mac=MAC, target_ip=V4, dst_mac=MAC)
EXPECTED_ECHO4 = EchoReply(src_mac=PEER_MAC, dst_mac=MAC, src_ip=PEER_V4, dst_ip=V4,
                           ident=0x1234, seq=0xBEEF, payload=PAYLOAD)
EXPECTED_ECHO6 = EchoReply(src_mac=PEER_MAC, dst_mac=MAC, src_ip=PEER_V6, dst_ip=V6,
                           ident=0x1234, seq=0xBEEF, payload=PAYLOAD)
EXPECTED_NS = NeighborSolicitation(src_mac=PEER_MAC, dst_mac=mac_bytes("33:33:ff:00:00:11"),
                                   src_ip=PEER_V6, target_ip=V6, source_lladdr=PEER_MAC)
EXPECTED_NA = NeighborAdvertisement(src_mac=PEER_MAC, dst_mac=MAC, src_ip=PEER_V6,
                                    target_ip=PEER_V6, target_lladdr=PEER_MAC, solicited=True,
                                    override=True)

SCAPY_CASES: dict[str, tuple[Callable[[], bytes], object]] = {
    "arp-request": (lambda: scapy_arp(1), EXPECTED_ARP_REQUEST),
    "arp-reply": (lambda: scapy_arp(2), EXPECTED_ARP_REPLY),
    "echo4": (scapy_echo4, EXPECTED_ECHO4),
    "echo4-empty": (lambda: scapy_echo4(b""), dataclasses.replace(EXPECTED_ECHO4, payload=b"")),
    "echo4-odd": (lambda: scapy_echo4(b"abc"), dataclasses.replace(EXPECTED_ECHO4, payload=b"abc")),
    "echo4-ihl6": (lambda: scapy_echo4(options=[IPOption_Router_Alert()]), EXPECTED_ECHO4),
    "echo6": (scapy_echo6, EXPECTED_ECHO6),
    "echo6-odd": (lambda: scapy_echo6(b"abc"), dataclasses.replace(EXPECTED_ECHO6, payload=b"abc")),
    "ns": (scapy_ns, EXPECTED_NS),
    "ns-no-option": (lambda: scapy_ns(option=False),
                     dataclasses.replace(EXPECTED_NS, source_lladdr=None)),
    "ns-dad": (lambda: scapy_ns(src=IPv6Address("::"), option=False),
               dataclasses.replace(EXPECTED_NS, src_ip=IPv6Address("::"), source_lladdr=None)),
    "na": (scapy_na, EXPECTED_NA),
    "na-no-option": (lambda: scapy_na(option=False),
                     dataclasses.replace(EXPECTED_NA, target_lladdr=None)),
    "na-unsolicited": (lambda: scapy_na(s=0, o=0, dst=IPv6Address("ff02::1")),
                       dataclasses.replace(EXPECTED_NA, solicited=False, override=False,
                                           dst_mac=MAC)),
    "na-router": (lambda: scapy_na(r=1, s=1, o=0),
                  dataclasses.replace(EXPECTED_NA, override=False, router=True)),
    "na-router-unsolicited": (lambda: scapy_na(r=1, s=0, o=1, dst=IPv6Address("ff02::1")),
                              dataclasses.replace(EXPECTED_NA, solicited=False, router=True)),
}


def our_frames() -> dict[str, bytes]:
    return {
        "arp-request": arp_request(MAC, V4, PEER_V4),
        "arp-reply": arp_reply(MAC, V4, PEER_MAC, PEER_V4),
        "echo4": icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 7, 9, PAYLOAD),
        "echo6": icmp_echo_request(MAC, PEER_MAC, V6, PEER_V6, 7, 9, PAYLOAD),
        "ns": neighbor_solicitation(MAC, V6, PEER_V6),
        "na": neighbor_advertisement(MAC, V6, PEER_MAC, PEER_V6),
    }


def valid_frames() -> dict[str, bytes]:
    """Every kind of frame the parser accepts, unpadded: our builders' and scapy's.

    (Our echo requests are left out: the parser reads echo replies only.)
    """
    frames = {f"ours-{name}": frame for name, frame in our_frames().items()
              if not name.startswith("echo")}
    frames.update((f"scapy-{name}", build()) for name, (build, _) in SCAPY_CASES.items())
    return frames


# -- builders, decoded by scapy -----------------------------------------------------------------


def test_arp_request_decoded_by_scapy() -> None:
    frame = arp_request(MAC, V4, PEER_V4)
    assert len(frame) == 42
    pkt = Ether(frame)
    assert pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.src == mac_str(MAC) and pkt.type == 0x0806
    arp = pkt[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    assert arp.hwsrc == mac_str(MAC) and arp.psrc == str(V4)
    assert arp.hwdst == "00:00:00:00:00:00" and arp.pdst == str(PEER_V4)
    assert bytes(pkt) == frame


def test_arp_reply_decoded_by_scapy() -> None:
    frame = arp_reply(MAC, V4, PEER_MAC, PEER_V4)
    assert len(frame) == 42
    pkt = Ether(frame)
    assert pkt.dst == mac_str(PEER_MAC) and pkt.src == mac_str(MAC) and pkt.type == 0x0806
    arp = pkt[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 2)
    assert arp.hwsrc == mac_str(MAC) and arp.psrc == str(V4)
    assert arp.hwdst == mac_str(PEER_MAC) and arp.pdst == str(PEER_V4)
    assert bytes(pkt) == frame


@pytest.mark.parametrize("payload", [b"", b"x", b"ab", PAYLOAD, bytes(range(256)) * 5,
                                     b"\xff" * 33, b"\x00" * 8])
def test_icmp_echo_request_v4_decoded_by_scapy(payload: bytes) -> None:
    frame = icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 0xABCD, 0x0102, payload)
    assert len(frame) == 14 + 20 + 8 + len(payload)
    pkt = Ether(frame)
    assert pkt.dst == mac_str(PEER_MAC) and pkt.src == mac_str(MAC) and pkt.type == 0x0800
    ip = pkt[IP]
    assert (ip.version, ip.ihl, ip.ttl, ip.proto, ip.frag) == (4, 5, 64, 1, 0)
    assert ip.flags == "DF"
    assert ip.len == 20 + 8 + len(payload)
    assert ip.src == str(V4) and ip.dst == str(PEER_V4)
    assert ip.chksum == recomputed(frame, IP, "chksum")
    icmp = pkt[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (8, 0, 0xABCD, 0x0102)
    assert icmp.chksum == recomputed(frame, ICMP, "chksum")
    assert bytes(icmp.payload) == payload
    assert bytes(pkt) == frame


@pytest.mark.parametrize("payload", [b"", b"x", b"ab", PAYLOAD, bytes(range(256)) * 5,
                                     b"\xff" * 33])
def test_icmp_echo_request_v6_decoded_by_scapy(payload: bytes) -> None:
    frame = icmp_echo_request(MAC, PEER_MAC, V6, PEER_V6, 0xABCD, 0x0102, payload)
    assert len(frame) == 14 + 40 + 8 + len(payload)
    pkt = Ether(frame)
    assert pkt.dst == mac_str(PEER_MAC) and pkt.src == mac_str(MAC) and pkt.type == 0x86DD
    ip = pkt[IPv6]
    assert (ip.version, ip.tc, ip.fl, ip.nh, ip.hlim) == (6, 0, 0, 58, 64)
    assert ip.plen == 8 + len(payload)
    assert ip.src == str(V6) and ip.dst == str(PEER_V6)
    echo = pkt[ICMPv6EchoRequest]
    assert (echo.type, echo.code, echo.id, echo.seq) == (128, 0, 0xABCD, 0x0102)
    assert echo.data == payload
    assert echo.cksum == recomputed(frame, ICMPv6EchoRequest, "cksum")
    assert bytes(pkt) == frame


@pytest.mark.parametrize("target", [PEER_V6, IPv6Address("fe80::1:2ff:fe03:405"),
                                    IPv6Address("2001:db8::ffff:ffff")])
def test_neighbor_solicitation_decoded_by_scapy(target: IPv6Address) -> None:
    from socket import AF_INET6, inet_ntop, inet_pton

    from scapy.layers.inet6 import in6_getnsma, in6_getnsmac

    frame = neighbor_solicitation(MAC, LL6, target)
    group = in6_getnsma(inet_pton(AF_INET6, str(target)))
    pkt = Ether(frame)
    assert pkt.dst == in6_getnsmac(group) and pkt.src == mac_str(MAC) and pkt.type == 0x86DD
    ip = pkt[IPv6]
    assert (ip.version, ip.nh, ip.hlim, ip.plen) == (6, 58, 255, 32)
    assert ip.src == str(LL6) and ip.dst == inet_ntop(AF_INET6, group)
    ns = pkt[ICMPv6ND_NS]
    assert (ns.type, ns.code, ns.res, ns.tgt) == (135, 0, 0, str(target))
    assert ns.cksum == recomputed(frame, ICMPv6ND_NS, "cksum")
    opt = pkt[ICMPv6NDOptSrcLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (1, 1, mac_str(MAC))
    assert not opt.payload
    assert bytes(pkt) == frame
    assert solicited_node(target) == (IPv6Address(inet_ntop(AF_INET6, group)),
                                      mac_bytes(in6_getnsmac(group)))


def test_neighbor_solicitation_for_dad_has_no_source_lladdr() -> None:
    frame = neighbor_solicitation(MAC, IPv6Address("::"), V6)
    pkt = Ether(frame)
    assert pkt[IPv6].src == "::" and pkt[IPv6].plen == 24
    assert ICMPv6NDOptSrcLLAddr not in pkt
    assert pkt[ICMPv6ND_NS].cksum == recomputed(frame, ICMPv6ND_NS, "cksum")


def test_neighbor_advertisement_decoded_by_scapy() -> None:
    frame = neighbor_advertisement(MAC, V6, PEER_MAC, PEER_V6)
    pkt = Ether(frame)
    assert pkt.dst == mac_str(PEER_MAC) and pkt.src == mac_str(MAC) and pkt.type == 0x86DD
    ip = pkt[IPv6]
    assert (ip.version, ip.nh, ip.hlim, ip.plen) == (6, 58, 255, 32)
    assert ip.src == str(V6) and ip.dst == str(PEER_V6)
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.res) == (136, 0, 0, 1, 1, 0)
    assert na.tgt == str(V6)
    assert na.cksum == recomputed(frame, ICMPv6ND_NA, "cksum")
    opt = pkt[ICMPv6NDOptDstLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (2, 1, mac_str(MAC))
    assert not opt.payload
    assert bytes(pkt) == frame


@pytest.mark.parametrize("seed", range(20))
def test_checksums_agree_with_scapy_on_random_inputs(seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(rng.randrange(0, 100))
    ident, seq = rng.randrange(65536), rng.randrange(65536)
    v4 = icmp_echo_request(MAC, PEER_MAC, IPv4Address(rng.getrandbits(32)),
                           IPv4Address(rng.getrandbits(32)), ident, seq, payload)
    assert Ether(v4)[IP].chksum == recomputed(v4, IP, "chksum")
    assert Ether(v4)[ICMP].chksum == recomputed(v4, ICMP, "chksum")
    v6 = icmp_echo_request(MAC, PEER_MAC, IPv6Address(rng.getrandbits(128)),
                           IPv6Address(rng.getrandbits(128)), ident, seq, payload)
    assert Ether(v6)[ICMPv6EchoRequest].cksum == recomputed(v6, ICMPv6EchoRequest, "cksum")


def test_builders_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        arp_request(MAC[:5], V4, PEER_V4)
    with pytest.raises(ValueError):
        arp_reply(MAC, V4, PEER_MAC + b"\x00", PEER_V4)
    with pytest.raises(ValueError):
        icmp_echo_request(MAC, PEER_MAC, V4, PEER_V6, 1, 1, b"")
    with pytest.raises(ValueError):
        icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 65536, 1, b"")
    with pytest.raises(ValueError):
        icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 1, -1, b"")
    with pytest.raises(ValueError):
        icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 1, 1, bytes(65536))
    with pytest.raises(ValueError):
        neighbor_solicitation(b"", V6, PEER_V6)
    with pytest.raises(ValueError):
        neighbor_advertisement(MAC, V6, b"abc", PEER_V6)
    for ttl in (0, 256, -1):
        with pytest.raises(ValueError, match="ttl must be 1 to 255"):
            icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 1, 1, b"", ttl=ttl)
    with pytest.raises(ValueError, match="not a multicast address"):
        multicast_mac(PEER_V4)
    with pytest.raises(ValueError, match="not a multicast address"):
        multicast_mac(PEER_V6)


# -- all-hosts / all-nodes pings (target discovery) ---------------------------------------------


def test_the_discovery_groups() -> None:
    assert str(ALL_HOSTS_V4) == "224.0.0.1"
    assert str(ALL_NODES_V6) == "ff02::1"
    assert multicast_mac(ALL_HOSTS_V4) == mac_bytes("01:00:5e:00:00:01")
    assert multicast_mac(ALL_NODES_V6) == mac_bytes("33:33:00:00:00:01")


@pytest.mark.parametrize("group", ["224.0.0.1", "224.0.0.251", "239.255.255.250", "224.128.0.1",
                                   "239.128.1.2", "ff02::1", "ff02::2", "ff02::1:ff00:21",
                                   "ff05::1:3", "ff0e::dead:beef"])
def test_multicast_mac_agrees_with_scapy(group: str) -> None:
    from socket import AF_INET6, inet_pton

    from scapy.layers.inet6 import in6_getnsmac
    from scapy.layers.l2 import getmacbyip

    if ":" in group:
        expected = in6_getnsmac(inet_pton(AF_INET6, group))
        assert multicast_mac(IPv6Address(group)) == mac_bytes(expected)
    else:
        assert multicast_mac(IPv4Address(group)) == mac_bytes(getmacbyip(group))


def test_multicast_mac_keeps_23_bits_of_ipv4() -> None:
    # 224.128.0.1 and 224.0.0.1 share a MAC: the 24th bit is not carried (RFC 1112 6.4).
    assert multicast_mac(IPv4Address("224.128.0.1")) == multicast_mac(ALL_HOSTS_V4)
    assert multicast_mac(IPv4Address("239.255.255.255")) == mac_bytes("01:00:5e:7f:ff:ff")
    assert multicast_mac(solicited_node(V6)[0]) == solicited_node(V6)[1]


def test_all_hosts_ping_is_what_ping_t1_sends() -> None:
    """IPv4 to 224.0.0.1, TTL 1, to the group's MAC: what ``ping -t 1 224.0.0.1`` puts on the
    wire (apart from the identification, 0 here: DF is set, RFC 6864)."""
    frame = icmp_echo_request(MAC, multicast_mac(ALL_HOSTS_V4), V4, ALL_HOSTS_V4, 0x4242, 3,
                              PAYLOAD, ttl=1)
    pkt = Ether(frame)
    assert pkt.dst == "01:00:5e:00:00:01" and pkt.src == mac_str(MAC)
    ip = pkt[IP]
    assert (ip.ttl, ip.proto, ip.src, ip.dst) == (1, 1, str(V4), "224.0.0.1")
    assert ip.chksum == recomputed(frame, IP, "chksum")
    icmp = pkt[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (8, 0, 0x4242, 3)
    assert icmp.chksum == recomputed(frame, ICMP, "chksum")
    assert bytes(icmp.payload) == PAYLOAD


@pytest.mark.parametrize("src", [LL6, V6])
def test_all_nodes_ping(src: IPv6Address) -> None:
    frame = icmp_echo_request(MAC, multicast_mac(ALL_NODES_V6), src, ALL_NODES_V6, 0x4242, 3,
                              PAYLOAD, ttl=1)
    pkt = Ether(frame)
    assert pkt.dst == "33:33:00:00:00:01" and pkt.src == mac_str(MAC)
    ip = pkt[IPv6]
    assert (ip.hlim, ip.nh, ip.src, ip.dst) == (1, 58, str(src), "ff02::1")
    echo = pkt[ICMPv6EchoRequest]
    assert (echo.type, echo.id, echo.seq, echo.data) == (128, 0x4242, 3, PAYLOAD)
    assert echo.cksum == recomputed(frame, ICMPv6EchoRequest, "cksum")


def test_ttl_defaults_to_64_for_both_families() -> None:
    assert Ether(icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 1, 1, b""))[IP].ttl == 64
    assert Ether(icmp_echo_request(MAC, PEER_MAC, V6, PEER_V6, 1, 1, b""))[IPv6].hlim == 64
    assert Ether(icmp_echo_request(MAC, PEER_MAC, V4, PEER_V4, 1, 1, b"", ttl=255))[IP].ttl == 255


@pytest.mark.parametrize(("src", "dst"), [(V4, ALL_HOSTS_V4), (LL6, ALL_NODES_V6)])
def test_unicast_replies_to_an_all_hosts_ping_parse(src: IPv4Address | IPv6Address,
                                                     dst: IPv4Address | IPv6Address) -> None:
    """Every host answers from its own address to ours: the reply parses like any other."""
    request = Ether(icmp_echo_request(MAC, multicast_mac(dst), src, dst, 0x4242, 3, PAYLOAD,
                                      ttl=1))
    responder = IPv4Address("198.18.0.77") if isinstance(src, IPv4Address) else IPv6Address(
        "fe80::77")
    eth = Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
    if isinstance(src, IPv4Address):
        reply = eth / IP(src=str(responder), dst=str(src)) / ICMP(
            type=0, id=request[ICMP].id, seq=request[ICMP].seq) / Raw(PAYLOAD)
    else:
        reply = eth / IPv6(src=str(responder), dst=str(src)) / ICMPv6EchoReply(
            id=0x4242, seq=3, data=PAYLOAD)
    assert parse_control(bytes(reply)) == EchoReply(
        src_mac=PEER_MAC, dst_mac=MAC, src_ip=responder, dst_ip=src, ident=0x4242, seq=3,
        payload=PAYLOAD)


# -- parser, fed frames built by scapy ----------------------------------------------------------


@pytest.mark.parametrize("name", SCAPY_CASES)
def test_parse_scapy_frame(name: str) -> None:
    build, expected = SCAPY_CASES[name]
    assert parse_control(build()) == expected


@pytest.mark.parametrize("name", SCAPY_CASES)
def test_parse_scapy_frame_padded_to_60_bytes(name: str) -> None:
    build, expected = SCAPY_CASES[name]
    assert parse_control(pad60(build())) == expected
    # Padding that is not zeros, and more of it, must not leak into the payload either.
    assert parse_control(build() + b"\xa5" * 64) == expected


def test_short_frames_really_are_padded() -> None:
    arp = pad60(scapy_arp(1))
    assert len(scapy_arp(1)) == 42 and len(arp) == 60
    assert Padding in Ether(arp)
    echo = pad60(scapy_echo4(b"ab"))
    assert len(scapy_echo4(b"ab")) == 44 and len(echo) == 60
    assert parse_control(echo) == dataclasses.replace(EXPECTED_ECHO4, payload=b"ab")


def test_parse_scapy_padding_layer() -> None:
    frame = bytes(Ether(src=mac_str(PEER_MAC), dst="ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=mac_str(PEER_MAC), psrc=str(PEER_V4), pdst=str(V4))
                  / Padding(load=b"\x00" * 18))
    assert len(frame) == 60
    assert parse_control(frame) == EXPECTED_ARP_REQUEST


def test_parse_ipv4_header_with_options() -> None:
    frame = scapy_echo4(options=[IPOption_Router_Alert()])
    assert Ether(frame)[IP].ihl == 6
    assert parse_control(frame) == EXPECTED_ECHO4
    assert parse_control(pad60(frame)) == EXPECTED_ECHO4


def test_parse_accepts_bytearray_and_memoryview() -> None:
    frame = scapy_echo6()
    assert parse_control(bytearray(frame)) == EXPECTED_ECHO6
    assert parse_control(memoryview(frame)) == EXPECTED_ECHO6


def test_parse_ns_skips_unknown_options_and_keeps_first_lladdr() -> None:
    group, group_mac = solicited_node(V6)
    frame = bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(group_mac))
                  / IPv6(src=str(PEER_V6), dst=str(group), hlim=255)
                  / ICMPv6ND_NS(tgt=str(V6)) / ICMPv6NDOptMTU(mtu=1500)
                  / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(PEER_MAC))
                  / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(MAC)))
    assert parse_control(frame) == EXPECTED_NS


def test_parse_na_ignores_source_lladdr_option() -> None:
    frame = bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                  / IPv6(src=str(PEER_V6), dst=str(V6), hlim=255)
                  / ICMPv6ND_NA(R=0, S=1, O=1, tgt=str(PEER_V6))
                  / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(MAC)))
    assert parse_control(frame) == dataclasses.replace(EXPECTED_NA, target_lladdr=None)


def unhandled_frames() -> dict[str, bytes]:
    """Well-formed frames of kinds the parser does not handle."""
    eth = Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
    group, group_mac = solicited_node(V6)
    return {
        "icmp-echo-request": bytes(eth / IP(src=str(PEER_V4), dst=str(V4))
                                   / ICMP(type=8, id=1, seq=1)),
        "icmp-unreachable": bytes(eth / IP(src=str(PEER_V4), dst=str(V4)) / ICMP(type=3, code=1)
                                  / Raw(bytes(28))),
        "udp": bytes(eth / IP(src=str(PEER_V4), dst=str(V4)) / UDP(sport=1, dport=2)
                     / Raw(b"abcdefgh")),
        "icmpv6-echo-request": bytes(eth / IPv6(src=str(PEER_V6), dst=str(V6))
                                     / ICMPv6EchoRequest(id=1, seq=1)),
        "router-advertisement": bytes(eth / IPv6(src=str(LL6), dst="ff02::1", hlim=255)
                                      / ICMPv6ND_RA()),
        "vlan-arp": bytes(Ether(src=mac_str(PEER_MAC), dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=5)
                          / ARP(op=1, hwsrc=mac_str(PEER_MAC), psrc=str(PEER_V4),
                                pdst=str(V4))),
        "vlan-ns": bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(group_mac)) / Dot1Q(vlan=5)
                         / IPv6(src=str(PEER_V6), dst=str(group), hlim=255)
                         / ICMPv6ND_NS(tgt=str(V6))),
        "ipx": bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC), type=0x8137) / Raw(bytes(46))),
    }


@pytest.mark.parametrize("name", unhandled_frames())
def test_parse_ignores_other_kinds(name: str) -> None:
    assert parse_control(unhandled_frames()[name]) is None


# -- round trips --------------------------------------------------------------------------------


def test_round_trip_arp_request() -> None:
    assert parse_control(arp_request(MAC, V4, PEER_V4)) == Arp(
        op=1, src_mac=MAC, sender_mac=MAC, sender_ip=V4, target_mac=bytes(6),
        target_ip=PEER_V4, dst_mac=b"\xff" * 6)


def test_round_trip_arp_reply() -> None:
    assert parse_control(arp_reply(MAC, V4, PEER_MAC, PEER_V4)) == Arp(
        op=2, src_mac=MAC, sender_mac=MAC, sender_ip=V4, target_mac=PEER_MAC,
        target_ip=PEER_V4, dst_mac=PEER_MAC)


@pytest.mark.parametrize(("src", "dst"), [(V4, PEER_V4), (V6, PEER_V6)])
def test_round_trip_echo_through_a_scapy_responder(src: IPv4Address | IPv6Address,
                                                   dst: IPv4Address | IPv6Address) -> None:
    request = icmp_echo_request(MAC, PEER_MAC, src, dst, 0x4242, 17, PAYLOAD)
    assert parse_control(request) is None  # a request is not something the daemon reads
    pkt = Ether(request)
    eth = Ether(src=pkt.dst, dst=pkt.src)
    if isinstance(src, IPv4Address):
        reply = eth / IP(src=pkt[IP].dst, dst=pkt[IP].src) / ICMP(
            type=0, id=pkt[ICMP].id, seq=pkt[ICMP].seq) / Raw(bytes(pkt[ICMP].payload))
    else:
        echo = pkt[ICMPv6EchoRequest]
        reply = eth / IPv6(src=pkt[IPv6].dst, dst=pkt[IPv6].src) / ICMPv6EchoReply(
            id=echo.id, seq=echo.seq, data=echo.data)
    assert parse_control(bytes(reply)) == EchoReply(
        src_mac=PEER_MAC, dst_mac=MAC, src_ip=dst, dst_ip=src, ident=0x4242, seq=17,
        payload=PAYLOAD)


@pytest.mark.parametrize("target", [PEER_V6, IPv6Address("fe80::1")])
def test_round_trip_neighbor_solicitation(target: IPv6Address) -> None:
    _group, group_mac = solicited_node(target)
    assert parse_control(neighbor_solicitation(MAC, LL6, target)) == NeighborSolicitation(
        src_mac=MAC, dst_mac=group_mac, src_ip=LL6, target_ip=target, source_lladdr=MAC)
    assert parse_control(neighbor_solicitation(MAC, IPv6Address("::"), target)) == (
        NeighborSolicitation(src_mac=MAC, dst_mac=group_mac, src_ip=IPv6Address("::"),
                             target_ip=target, source_lladdr=None))


def test_round_trip_neighbor_advertisement() -> None:
    assert parse_control(neighbor_advertisement(MAC, V6, PEER_MAC, PEER_V6)) == (
        NeighborAdvertisement(src_mac=MAC, dst_mac=PEER_MAC, src_ip=V6, target_ip=V6,
                              target_lladdr=MAC, solicited=True, override=True))


def test_round_trip_padded() -> None:
    for name, frame in our_frames().items():
        if name in ("echo4", "echo6"):
            continue
        parsed = parse_control(frame)
        assert parsed is not None
        assert parse_control(pad60(frame)) == parsed


def test_results_are_frozen_slotted_dataclasses() -> None:
    result = parse_control(scapy_arp(1))
    assert isinstance(result, Arp)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.op = 2  # type: ignore[misc]
    for cls in CONTROL_TYPES:
        assert "__slots__" in cls.__dict__
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_module_does_not_import_scapy() -> None:
    code = ("import sys, vnicbond.wire.probe; "
            "sys.exit(1 if any(m.split('.')[0] == 'scapy' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- hostile input ------------------------------------------------------------------------------


def test_empty_and_tiny_frames() -> None:
    assert parse_control(b"") is None
    for n in range(1, 61):
        assert parse_control(bytes(n)) is None
        assert parse_control(b"\xff" * n) is None


@pytest.mark.parametrize("name", valid_frames())
def test_every_truncation_is_rejected(name: str) -> None:
    frame = valid_frames()[name]
    assert parse_control(frame) is not None
    for n in range(len(frame)):
        assert parse_control(frame[:n]) is None, n


def test_ipv4_total_length_too_big() -> None:
    frame = scapy_echo4()
    total = len(frame) - 14
    pkt = Ether(frame)
    pkt[IP].len = total + 1
    del pkt[IP].chksum
    lying = bytes(pkt)
    assert Ether(lying)[IP].len == total + 1
    assert Ether(lying)[IP].chksum == recomputed(lying, IP, "chksum")
    assert parse_control(lying) is None
    assert parse_control(fix_ipv4_checksum(patch(frame, 16, (0xFFFF).to_bytes(2, "big")))) is None


def test_ipv4_total_length_shorter_than_header() -> None:
    frame = fix_ipv4_checksum(patch(scapy_echo4(), 16, (19).to_bytes(2, "big")))
    assert parse_control(frame) is None


def test_ipv4_total_length_shorter_than_icmp_header() -> None:
    frame = fix_ipv4_checksum(patch(scapy_echo4(), 16, (20 + 7).to_bytes(2, "big")))
    assert parse_control(frame) is None


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ipv4_ihl_below_5(ihl: int) -> None:
    frame = scapy_echo4()
    frame = fix_ipv4_checksum(patch(frame, 14, bytes([0x40 | ihl])))
    assert parse_control(frame) is None


def test_ipv4_ihl_4_that_would_otherwise_parse() -> None:
    """A 16-byte "header" (no destination) followed by a valid echo reply, checksums all right.

    Only the IHL >= 5 rule can reject it.
    """
    message = with_icmp_checksum(b"\x00\x00\x00\x00\x12\x34\xbe\xef" + PAYLOAD)
    header = bytes([0x44, 0]) + (16 + len(message)).to_bytes(2, "big") + bytes(4) + bytes(
        [64, 1, 0, 0]) + PEER_V4.packed
    header = patch(header, 10, checksum(header).to_bytes(2, "big"))
    frame = MAC + PEER_MAC + b"\x08\x00" + header + message
    assert checksum(header) == 0 and checksum(message) == 0
    assert parse_control(frame) is None
    # The same message behind a proper 20-byte header is accepted.
    assert parse_control(icmp4_frame(message)) == EXPECTED_ECHO4


@pytest.mark.parametrize("ihl", [12, 15])
def test_ipv4_ihl_past_the_end(ihl: int) -> None:
    frame = scapy_echo4(b"")  # 14 + 20 + 8 bytes: IHL 12 (48 bytes) or 15 (60) overruns
    assert len(frame) - 14 < ihl * 4
    frame = patch(frame, 14, bytes([0x40 | ihl]))
    assert parse_control(frame) is None
    assert parse_control(fix_ipv4_checksum(frame)) is None


def test_ipv4_ihl_past_total_length() -> None:
    frame = pad60(scapy_echo4(b""))  # the header fits in the padding, not in total length
    frame = fix_ipv4_checksum(patch(frame, 14, bytes([0x48])))
    assert parse_control(frame) is None


def test_ipv4_wrong_version() -> None:
    frame = fix_ipv4_checksum(patch(scapy_echo4(), 14, b"\x65"))
    assert parse_control(frame) is None


def test_bad_ipv4_header_checksum() -> None:
    frame = scapy_echo4()
    bad = patch(frame, 24, bytes([frame[24] ^ 0x01, frame[25]]))
    assert parse_control(bad) is None
    assert parse_control(patch(frame, 22, b"\x3f")) is None  # TTL changed, checksum not


def test_bad_icmp_checksum() -> None:
    frame = scapy_echo4()
    bad = patch(frame, 36, bytes([frame[36] ^ 0x80]))
    assert Ether(bad)[ICMP].chksum != recomputed(bad, ICMP, "chksum")
    assert parse_control(bad) is None
    assert parse_control(frame[:-1] + bytes([frame[-1] ^ 0x01])) is None  # payload changed


@pytest.mark.parametrize(("flags", "frag"), [("MF", 0), (0, 1), (0, 185), ("MF", 8191)])
def test_ipv4_fragments(flags: object, frag: int) -> None:
    frame = scapy_echo4(flags=flags, frag=frag)
    assert Ether(frame)[IP].chksum == recomputed(frame, IP, "chksum")
    assert parse_control(frame) is None


def test_df_is_fine() -> None:
    assert parse_control(scapy_echo4(flags="DF")) == EXPECTED_ECHO4


def test_icmp_message_shorter_than_8_bytes() -> None:
    message = with_icmp_checksum(b"\x00\x00\x00\x00\x12\x34")
    assert parse_control(icmp4_frame(message)) is None


def test_icmp_nonzero_code() -> None:
    message = with_icmp_checksum(b"\x00\x01\x00\x00\x12\x34\xbe\xef" + PAYLOAD)
    assert parse_control(icmp4_frame(message)) is None
    good = with_icmp_checksum(b"\x00\x00\x00\x00\x12\x34\xbe\xef" + PAYLOAD)
    assert parse_control(icmp4_frame(good)) == EXPECTED_ECHO4


def test_ipv4_not_icmp() -> None:
    message = with_icmp_checksum(b"\x00\x00\x00\x00\x12\x34\xbe\xef")
    frame = bytes(Ether(src=mac_str(PEER_MAC), dst=mac_str(MAC))
                  / IP(src=str(PEER_V4), dst=str(V4), proto=17) / Raw(message))
    assert parse_control(frame) is None


@pytest.mark.parametrize(("offset", "value"), [
    (14, b"\x00\x06"),  # htype 6 (IEEE 802)
    (16, b"\x86\xdd"),  # ptype IPv6
    (18, b"\x08"),  # hlen 8
    (19, b"\x10"),  # plen 16
    (20, b"\x00\x03"),  # op 3 (RARP request)
    (20, b"\x00\x00"),  # op 0
    (20, b"\x01\x01"),  # op 257
])
def test_arp_with_unexpected_header(offset: int, value: bytes) -> None:
    for op in (1, 2):
        frame = pad60(scapy_arp(op))
        assert parse_control(frame) is not None
        assert parse_control(patch(frame, offset, value)) is None


def test_arp_with_hlen_8_plen_16_from_scapy() -> None:
    frame = bytes(Ether(src=mac_str(PEER_MAC), dst="ff:ff:ff:ff:ff:ff")
                  / ARP(hwlen=8, plen=16, op=1) / Raw(bytes(48)))
    assert Ether(frame)[ARP].hwlen == 8
    assert parse_control(frame) is None


@pytest.mark.parametrize("build", [scapy_echo6, scapy_ns, scapy_na], ids=["echo", "ns", "na"])
def test_ipv6_hop_by_hop_header(build: Callable[[], bytes]) -> None:
    pkt = Ether(build())
    ip = pkt[IPv6]
    upper = ip.payload.copy()
    wrapped = bytes(Ether(src=pkt.src, dst=pkt.dst)
                    / IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim) / IPv6ExtHdrHopByHop() / upper)
    assert Ether(wrapped)[IPv6].nh == 0
    assert parse_control(wrapped) is None


def test_ipv6_payload_length_too_big() -> None:
    frame = scapy_echo6()
    plen = len(frame) - 54
    assert parse_control(patch(frame, 18, (plen + 1).to_bytes(2, "big"))) is None
    assert parse_control(pad60(patch(frame, 18, (plen + 1).to_bytes(2, "big")))) is None


def test_ipv6_wrong_version() -> None:
    assert parse_control(patch(scapy_echo6(), 14, b"\x40")) is None


def test_bad_icmpv6_checksum() -> None:
    for build in (scapy_echo6, scapy_ns, scapy_na):
        frame = build()
        assert parse_control(frame) is not None
        assert parse_control(patch(frame, 56, bytes([frame[56] ^ 0x04]))) is None
        assert parse_control(patch(frame, 22, bytes([frame[22] ^ 0x01]))) is None  # src addr


def test_ns_with_hop_limit_64() -> None:
    frame = scapy_ns(hlim=64)
    assert Ether(frame)[ICMPv6ND_NS].cksum == recomputed(frame, ICMPv6ND_NS, "cksum")
    assert parse_control(frame) is None


def test_na_with_hop_limit_64() -> None:
    assert parse_control(scapy_na(hlim=64)) is None


def ns_message(options: bytes, *, target: IPv6Address = V6, code: int = 0) -> bytes:
    return bytes([135, code]) + bytes(6) + target.packed + options


def na_message(options: bytes, *, flags: int = 0x60, target: IPv6Address = PEER_V6) -> bytes:
    return bytes([136, 0, 0, 0, flags, 0, 0, 0]) + target.packed + options


def test_raw_ns_helper_matches_scapy() -> None:
    frame = icmp6_frame(ns_message(b"\x01\x01" + PEER_MAC), dst=solicited_node(V6)[0],
                        eth_dst=solicited_node(V6)[1])
    assert parse_control(frame) == EXPECTED_NS
    assert frame == scapy_ns()


def test_ns_option_length_zero() -> None:
    assert parse_control(icmp6_frame(ns_message(b"\x01\x00" + PEER_MAC))) is None
    # A zero-length option after a valid one, and one of an unknown type.
    assert parse_control(icmp6_frame(ns_message(b"\x01\x01" + PEER_MAC + b"\x0e\x00"
                                                + bytes(6)))) is None


def test_ns_option_running_past_the_end() -> None:
    assert parse_control(icmp6_frame(ns_message(b"\x01\x02" + PEER_MAC))) is None
    assert parse_control(icmp6_frame(ns_message(b"\x01\x01" + PEER_MAC + b"\x0e"))) is None
    assert parse_control(icmp6_frame(ns_message(b"\x01\x01" + PEER_MAC[:5]))) is None
    # Running past the message into Ethernet padding is still past the end.
    assert parse_control(pad60(icmp6_frame(ns_message(b"\x01\x02" + PEER_MAC))) + bytes(8)) is None


def test_ns_source_lladdr_of_wrong_size() -> None:
    assert parse_control(icmp6_frame(ns_message(b"\x01\x02" + bytes(14)))) is None


def test_ns_shorter_than_24_bytes() -> None:
    assert parse_control(icmp6_frame(ns_message(b"")[:20])) is None


def test_ns_with_nonzero_code() -> None:
    assert parse_control(icmp6_frame(ns_message(b"", code=1))) is None


def test_ns_for_a_multicast_target() -> None:
    assert parse_control(icmp6_frame(ns_message(b"", target=IPv6Address("ff02::1")))) is None


def test_dad_ns_rules() -> None:
    unspecified = IPv6Address("::")
    group, group_mac = solicited_node(V6)
    ok = icmp6_frame(ns_message(b""), src=unspecified, dst=group, eth_dst=group_mac)
    assert parse_control(ok) == dataclasses.replace(EXPECTED_NS, src_ip=unspecified,
                                                    source_lladdr=None)
    with_option = icmp6_frame(ns_message(b"\x01\x01" + PEER_MAC), src=unspecified, dst=group)
    assert parse_control(with_option) is None
    unicast = icmp6_frame(ns_message(b""), src=unspecified, dst=V6)
    assert parse_control(unicast) is None


def test_na_rules() -> None:
    assert parse_control(icmp6_frame(na_message(b"\x02\x01" + PEER_MAC))) == EXPECTED_NA
    assert parse_control(icmp6_frame(na_message(b"\x02\x00" + PEER_MAC))) is None
    assert parse_control(icmp6_frame(na_message(b"\x02\x02" + PEER_MAC))) is None
    assert parse_control(icmp6_frame(na_message(b"", target=IPv6Address("ff02::1")))) is None
    assert parse_control(icmp6_frame(na_message(b"")[:23])) is None
    # Solicited advertisements are never sent to a multicast group (RFC 4861 7.1.2).
    assert parse_control(icmp6_frame(na_message(b""), dst=IPv6Address("ff02::1"))) is None
    assert parse_control(icmp6_frame(na_message(b"", flags=0x20),
                                     dst=IPv6Address("ff02::1"))) is not None


def test_na_router_flag() -> None:
    """The R flag (bit 7 of the flags byte) alone sets ``router``: a router is preferred as a
    discovered target."""
    cases = [(0xE0, True, True, True), (0x80, True, False, False), (0x60, False, True, True),
             (0x7F, False, True, True)]
    for flags, router, solicited, override in cases:
        parsed = parse_control(icmp6_frame(na_message(b"", flags=flags)))
        assert isinstance(parsed, NeighborAdvertisement)
        assert (parsed.router, parsed.solicited, parsed.override) == (router, solicited, override)


def test_icmpv6_echo_reply_too_short() -> None:
    assert parse_control(icmp6_frame(b"\x81\x00\x00\x00\x12\x34")) is None
    assert parse_control(icmp6_frame(b"\x81\x00\x00\x00\x12\x34\xbe\xef")) == (
        dataclasses.replace(EXPECTED_ECHO6, payload=b""))


def test_icmpv6_echo_reply_nonzero_code() -> None:
    assert parse_control(icmp6_frame(b"\x81\x01\x00\x00\x12\x34\xbe\xef")) is None


def test_fuzz_random_bytes() -> None:
    rng = random.Random(1)
    prefixes = [b"", MAC + PEER_MAC + b"\x08\x06", MAC + PEER_MAC + b"\x08\x00",
                MAC + PEER_MAC + b"\x86\xdd", MAC + PEER_MAC + b"\x08\x00\x45",
                MAC + PEER_MAC + b"\x86\xdd\x60\x00\x00\x00"]
    for _ in range(4000):
        data = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 120))
        result = parse_control(data)
        assert result is None or isinstance(result, CONTROL_TYPES)


def test_fuzz_single_byte_mutations() -> None:
    rng = random.Random(1)
    frames = [*valid_frames().values(), *map(pad60, valid_frames().values())]
    for frame in frames:
        for _ in range(200):
            pos = rng.randrange(len(frame))
            mutated = patch(frame, pos, bytes([rng.randrange(256)]))
            result = parse_control(mutated)
            assert result is None or isinstance(result, CONTROL_TYPES)
            if rng.random() < 0.2:  # also a mutation followed by a truncation
                result = parse_control(mutated[:rng.randrange(len(mutated) + 1)])
                assert result is None or isinstance(result, CONTROL_TYPES)
