"""Unit tests for vnicbond.core.prober: probes as frames, and frames as matched replies and answers.

scapy is the independent codec: every frame :class:`Prober` emits is decoded (and its checksums
recomputed) by scapy, and every frame it is given is encoded by scapy, so the tests hold the
prober to the wire formats themselves rather than to vnicbond.wire.probe's reading of them.

The rules under test: a probe leaves a member from its test address and its own MAC; a reply
counts only if it comes from the target and is addressed to that member's test address and MAC
(and for ICMP carries our identifier and, first in its payload, the daemon's token and the
sequence number). Anything else counts for nothing. The prober answers ARP and NDP for the test
addresses and learns the targets' MACs from ARP/NDP and genuine echo replies.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP as ScapyARP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from vnicbond.core.prober import ARP, TOKEN_LEN, Prober, ProbingMember, Received
from vnicbond.core.prober import ICMP as ICMP_METHOD
from vnicbond.core.targets import TEST, Source


def _member(name: str, mac: bytes, test_ip: object, targets: tuple) -> ProbingMember:
    """A member probing from its test address, as before probing without them."""
    return ProbingMember(name, mac, (Source(test_ip, mac, TEST),), targets)  # type: ignore[arg-type]

# -- the cast ------------------------------------------------------------------------------------

MAC_A = bytes.fromhex("02000000a001")  # member "a"
MAC_B = bytes.fromhex("02000000b001")  # member "b"
GROUP_MAC = bytes.fromhex("02000000ee01")  # the group's (TAP) MAC, not a member's
TARGET_MAC = bytes.fromhex("021111111111")
TARGET_MAC_2 = bytes.fromhex("021111111122")
EVIL_MAC = bytes.fromhex("026666666666")
ASKER_MAC = bytes.fromhex("025555555555")
BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)

TEST4_A = IPv4Address("198.18.0.11")
TEST4_B = IPv4Address("198.18.0.12")
TARGET4 = IPv4Address("198.18.0.1")
TARGET4_2 = IPv4Address("198.18.0.2")
OTHER4 = IPv4Address("198.18.0.77")  # some other host on the link, not a target
ASKER4 = IPv4Address("198.18.0.50")

TEST6_A = IPv6Address("2001:db8::11")
TEST6_B = IPv6Address("2001:db8::12")
TARGET6 = IPv6Address("2001:db8::1")
TARGET6_2 = IPv6Address("2001:db8::2")
OTHER6 = IPv6Address("2001:db8::77")
ASKER6 = IPv6Address("2001:db8::50")

TOKEN = bytes.fromhex("a1b2c3d4e5f60718")
OTHER_TOKEN = bytes.fromhex("0011223344556677")
IDENT = 0x4D2B

FAMILIES = {
    4: {"test_a": TEST4_A, "test_b": TEST4_B, "target": TARGET4, "target_2": TARGET4_2,
        "other": OTHER4},
    6: {"test_a": TEST6_A, "test_b": TEST6_B, "target": TARGET6, "target_2": TARGET6_2,
        "other": OTHER6},
}


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def make(method: str = ICMP_METHOD, family: int = 4, *, token: bytes = TOKEN,
         ident: int = IDENT) -> Prober:
    """Two members "a" and "b" of one family, each probing the same two targets."""
    f = FAMILIES[family]
    targets = (f["target"], f["target_2"])
    return Prober(method, [_member("a", MAC_A, f["test_a"], targets),
                           _member("b", MAC_B, f["test_b"], targets)],
                  token=token, ident=ident)


def make_mixed() -> Prober:
    """Member "v4" with an IPv4 test address, member "v6" with an IPv6 one, sharing no wire."""
    return Prober(ICMP_METHOD, [_member("v4", MAC_A, TEST4_A, (TARGET4,)),
                                _member("v6", MAC_B, TEST6_B, (TARGET6,))],
                  token=TOKEN, ident=IDENT)


# -- frames, encoded by scapy --------------------------------------------------------------------


def arp_frame(op: int, *, eth_src: bytes = TARGET_MAC, eth_dst: bytes = MAC_A,
              hwsrc: bytes = TARGET_MAC, psrc: IPv4Address = TARGET4, hwdst: bytes = MAC_A,
              pdst: IPv4Address = TEST4_A) -> bytes:
    return bytes(Ether(src=mac_str(eth_src), dst=mac_str(eth_dst))
                 / ScapyARP(op=op, hwsrc=mac_str(hwsrc), psrc=str(psrc), hwdst=mac_str(hwdst),
                            pdst=str(pdst)))


def target_arp_reply(*, hwsrc: bytes = TARGET_MAC, **fields: object) -> bytes:
    """The target's unicast reply to member a's ARP request (fields may be overridden)."""
    return arp_frame(2, eth_src=hwsrc, hwsrc=hwsrc, **fields)


def arp_request_frame(*, sender_mac: bytes = ASKER_MAC, sender_ip: IPv4Address = ASKER4,
                      target_ip: IPv4Address = TEST4_A) -> bytes:
    return arp_frame(1, eth_src=sender_mac, eth_dst=BROADCAST, hwsrc=sender_mac,
                     psrc=sender_ip, hwdst=ZERO_MAC, pdst=target_ip)


def payload_for(seq: int, token: bytes = TOKEN) -> bytes:
    return token + struct.pack("!H", seq)


def echo_frame(family: int, *, seq: int, request: bool = False, eth_src: bytes = TARGET_MAC,
               eth_dst: bytes = MAC_A, src: object = None, dst: object = None,
               ident: int = IDENT, payload: bytes | None = None) -> bytes:
    """An echo reply (or request) from the target to member a, as a well-behaved host sends it."""
    f = FAMILIES[family]
    src = f["target"] if src is None else src
    dst = f["test_a"] if dst is None else dst
    payload = payload_for(seq) if payload is None else payload
    eth = Ether(src=mac_str(eth_src), dst=mac_str(eth_dst))
    if family == 4:
        icmp = ICMP(type=8 if request else 0, code=0, id=ident, seq=seq)
        return bytes(eth / IP(src=str(src), dst=str(dst)) / icmp / Raw(payload))
    cls = ICMPv6EchoRequest if request else ICMPv6EchoReply
    return bytes(eth / IPv6(src=str(src), dst=str(dst)) / cls(id=ident, seq=seq, data=payload))


def solicited_node(address: IPv6Address) -> tuple[str, str]:
    """The solicited-node group of ``address`` and its MAC, worked out here (RFC 4291 2.7.1)."""
    low = address.packed[13:]
    group = IPv6Address(IPv6Address("ff02::1:ff00:0").packed[:13] + low)
    return str(group), "33:33:ff:" + ":".join(f"{b:02x}" for b in low)


def ns_frame(*, src: IPv6Address = ASKER6, src_mac: bytes = ASKER_MAC,
             target: IPv6Address = TEST6_A, option: bool = True,
             unicast_to: bytes | None = None) -> bytes:
    """A neighbour solicitation for ``target`` (to its solicited-node group unless unicast)."""
    group, group_mac = solicited_node(target)
    if unicast_to is None:
        eth = Ether(src=mac_str(src_mac), dst=group_mac)
        ip = IPv6(src=str(src), dst=group, hlim=255)
    else:
        eth = Ether(src=mac_str(src_mac), dst=mac_str(unicast_to))
        ip = IPv6(src=str(src), dst=str(target), hlim=255)
    pkt = eth / ip / ICMPv6ND_NS(tgt=str(target))
    if option:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=mac_str(src_mac))
    return bytes(pkt)


def dad_ns_frame(target: IPv6Address = TEST6_A) -> bytes:
    """Duplicate address detection: from ::, to the solicited-node group, no SLLA option."""
    group, group_mac = solicited_node(target)
    return bytes(Ether(src=mac_str(ASKER_MAC), dst=group_mac)
                 / IPv6(src="::", dst=group, hlim=255) / ICMPv6ND_NS(tgt=str(target)))


def na_frame(*, target: IPv6Address = TARGET6, lladdr: bytes = TARGET_MAC,
             src: IPv6Address | None = None, eth_dst: bytes = MAC_A,
             dst: IPv6Address = TEST6_A) -> bytes:
    """The solicited advertisement of ``target`` at ``lladdr``, to member a by default."""
    src = target if src is None else src
    return bytes(Ether(src=mac_str(lladdr), dst=mac_str(eth_dst))
                 / IPv6(src=str(src), dst=str(dst), hlim=255)
                 / ICMPv6ND_NA(R=0, S=1, O=1, tgt=str(target))
                 / ICMPv6NDOptDstLLAddr(lladdr=mac_str(lladdr)))


def learn(prober: Prober, family: int, member: str = "a", mac: bytes = TARGET_MAC) -> None:
    """Teach ``member`` the target's MAC the way the wire does: the target's ARP reply or NA
    answering the member's question (which the member asked when it first probed)."""
    m = prober.members[member]
    m.resolving.add(FAMILIES[family]["target"])
    if family == 4:
        assert isinstance(m.sources[0].ip, IPv4Address)
        frame = target_arp_reply(hwsrc=mac, eth_dst=m.mac, hwdst=m.mac, pdst=m.sources[0].ip)
    else:
        assert isinstance(m.sources[0].ip, IPv6Address)
        frame = na_frame(lladdr=mac, eth_dst=m.mac, dst=m.sources[0].ip)
    assert prober.receive(member, frame) == Received()


# -- decoding what the prober sends, by scapy ----------------------------------------------------


def recomputed(pkt: Packet, layer: type[Packet], field: str) -> int:
    """The checksum scapy computes for ``field`` of ``layer`` in ``pkt``."""
    copy = Ether(bytes(pkt))
    delattr(copy[layer], field)
    return Ether(bytes(copy))[layer].getfieldval(field)


def decode(frame: bytes) -> Packet:
    pkt = Ether(frame)
    assert bytes(pkt) == frame  # scapy read all of it, nothing left over or invented
    return pkt


def check_arp_request(frame: bytes, *, mac: bytes, ip: IPv4Address,
                      target: IPv4Address) -> None:
    pkt = decode(frame)
    assert pkt[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert pkt[Ether].src == mac_str(mac)
    assert pkt[Ether].type == 0x0806
    arp = pkt[ScapyARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
    assert arp.hwsrc == mac_str(mac)
    assert arp.psrc == str(ip)
    assert arp.hwdst == "00:00:00:00:00:00"
    assert arp.pdst == str(target)


def check_ns(frame: bytes, *, mac: bytes, ip: IPv6Address, target: IPv6Address) -> None:
    pkt = decode(frame)
    group, group_mac = solicited_node(target)
    assert pkt[Ether].dst == group_mac
    assert pkt[Ether].src == mac_str(mac)
    assert pkt[Ether].type == 0x86DD
    ip6 = pkt[IPv6]
    assert (ip6.version, ip6.nh, ip6.hlim) == (6, 58, 255)
    assert ip6.src == str(ip)
    assert ip6.dst == group
    ns = pkt[ICMPv6ND_NS]
    assert (ns.type, ns.code) == (135, 0)
    assert ns.tgt == str(target)
    assert ns.cksum == recomputed(pkt, ICMPv6ND_NS, "cksum")
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == mac_str(mac)


def check_resolve(frame: bytes, family: int, *, mac: bytes = MAC_A) -> None:
    f = FAMILIES[family]
    if family == 4:
        check_arp_request(frame, mac=mac, ip=f["test_a"], target=f["target"])
    else:
        check_ns(frame, mac=mac, ip=f["test_a"], target=f["target"])


def check_echo_request(frame: bytes, family: int, *, seq: int, dst_mac: bytes = TARGET_MAC,
                       token: bytes = TOKEN, ident: int = IDENT) -> None:
    f = FAMILIES[family]
    pkt = decode(frame)
    assert pkt[Ether].dst == mac_str(dst_mac)
    assert pkt[Ether].src == mac_str(MAC_A)
    payload = token + seq.to_bytes(2, "big")
    if family == 4:
        assert pkt[Ether].type == 0x0800
        ip = pkt[IP]
        assert (ip.version, ip.ihl, ip.proto, ip.ttl) == (4, 5, 1, 64)
        assert ip.src == str(f["test_a"])
        assert ip.dst == str(f["target"])
        assert ip.len == 20 + 8 + len(payload)
        assert ip.frag == 0
        assert not ip.flags.MF
        assert ip.chksum == recomputed(pkt, IP, "chksum")
        icmp = pkt[ICMP]
        assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (8, 0, ident, seq)
        assert icmp.chksum == recomputed(pkt, ICMP, "chksum")
        assert pkt[Raw].load == payload
    else:
        assert pkt[Ether].type == 0x86DD
        ip6 = pkt[IPv6]
        assert (ip6.version, ip6.nh, ip6.hlim) == (6, 58, 64)
        assert ip6.src == str(f["test_a"])
        assert ip6.dst == str(f["target"])
        assert ip6.plen == 8 + len(payload)
        echo = pkt[ICMPv6EchoRequest]
        assert (echo.type, echo.code, echo.id, echo.seq) == (128, 0, ident, seq)
        assert echo.data == payload
        assert echo.cksum == recomputed(pkt, ICMPv6EchoRequest, "cksum")


def is_resolve(frame: bytes) -> bool:
    pkt = Ether(frame)
    return ScapyARP in pkt or ICMPv6ND_NS in pkt


# -- the prober itself ---------------------------------------------------------------------------


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method"):
        Prober("ping", [_member("a", MAC_A, TEST4_A, (TARGET4,))])


def test_default_token_and_ident_are_random_per_daemon() -> None:
    members = [_member("a", MAC_A, TEST4_A, (TARGET4,))]
    one, two = Prober(ICMP_METHOD, members), Prober(ICMP_METHOD, members)
    assert len(one.token) == len(two.token) == TOKEN_LEN
    assert one.token != two.token
    assert 0 <= one.ident <= 0xFFFF


# -- 1. ICMP probes: resolve first, then echo to the learned MAC ----------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_first_probe_to_unknown_target_only_resolves(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    frames = prober.probe("a", str(FAMILIES[family]["target"]), 1)
    assert len(frames) == 1
    check_resolve(frames[0], family)
    # Still unknown: every probe resolves again, and nothing else.
    frames = prober.probe("a", str(FAMILIES[family]["target"]), 2)
    assert len(frames) == 1
    check_resolve(frames[0], family)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("seq", [0, 1, 0x1234, 0xFFFF])
def test_icmp_probe_after_learning_is_one_echo_request(family: int, seq: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    assert len(prober.probe("a", target, 7)) == 1
    learn(prober, family)
    frames = prober.probe("a", target, seq)
    assert len(frames) == 1
    check_echo_request(frames[0], family, seq=seq)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_probe_with_resolve_sends_both(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    learn(prober, family)
    frames = prober.probe("a", str(FAMILIES[family]["target"]), 42, resolve=True)
    assert len(frames) == 2
    resolves = [f for f in frames if is_resolve(f)]
    echoes = [f for f in frames if not is_resolve(f)]
    assert len(resolves) == len(echoes) == 1
    check_resolve(resolves[0], family)
    check_echo_request(echoes[0], family, seq=42)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_probe_uses_each_members_own_mac_and_test_address(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    f = FAMILIES[family]
    learn(prober, family, member="a")
    # Member b has learned nothing: it resolves, from its own addresses.
    frames = prober.probe("b", str(f["target"]), 3)
    assert len(frames) == 1
    pkt = decode(frames[0])
    assert pkt[Ether].src == mac_str(MAC_B)
    if family == 4:
        assert (pkt[ScapyARP].hwsrc, pkt[ScapyARP].psrc) == (mac_str(MAC_B), str(f["test_b"]))
    else:
        assert pkt[IPv6].src == str(f["test_b"])
        assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == mac_str(MAC_B)


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_probe_follows_a_changed_target_mac(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    learn(prober, family, mac=TARGET_MAC)
    learn(prober, family, mac=TARGET_MAC_2)
    (frame,) = prober.probe("a", target, 9)
    check_echo_request(frame, family, seq=9, dst_mac=TARGET_MAC_2)


# -- 2. echo replies: the genuine one counts, every forgery counts for nothing ---------------------


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("seq", [0, 5, 0xFFFF])
def test_genuine_echo_reply_matches(family: int, seq: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    learn(prober, family)
    (request,) = prober.probe("a", target, seq)
    # The reply a real host makes of our request: addresses swapped, id/seq/payload echoed.
    req = Ether(request)
    echo = req[ICMP] if family == 4 else req[ICMPv6EchoRequest]
    payload = req[Raw].load if family == 4 else echo.data
    reply = echo_frame(family, seq=echo.seq, ident=echo.id, payload=payload)
    assert prober.receive("a", reply) == Received(replies=((target, seq),))


@pytest.mark.parametrize("family", [4, 6])
def test_genuine_echo_reply_with_ethernet_padding_and_trailing_payload_matches(
        family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    # Hosts echo whatever payload they got; some (or the link) add bytes after ours.
    reply = echo_frame(family, seq=77, payload=payload_for(77) + b"tail")
    assert prober.receive("a", reply + bytes(16)) == Received(replies=((target, 77),))


@pytest.mark.parametrize("family", [4, 6])
def test_genuine_echo_reply_from_second_target_names_it(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target_2 = FAMILIES[family]["target_2"]
    reply = echo_frame(family, seq=8, src=target_2, eth_src=TARGET_MAC_2)
    assert prober.receive("a", reply).replies == ((str(target_2), 8),)


@pytest.mark.parametrize("family", [4, 6])
def test_genuine_echo_reply_on_member_b_matches_there(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    f = FAMILIES[family]
    reply = echo_frame(family, seq=3, eth_dst=MAC_B, dst=f["test_b"])
    assert prober.receive("b", reply).replies == ((str(f["target"]), 3),)


def _forgeries(family: int) -> dict[str, tuple[str, bytes]]:
    """Name -> (member it arrives on, frame) for echo replies that must count for nothing."""
    f = FAMILIES[family]
    seq = 21
    return {
        "wrong token": ("a", echo_frame(family, seq=seq, payload=payload_for(seq, OTHER_TOKEN))),
        "token only, no seq": ("a", echo_frame(family, seq=seq, payload=TOKEN)),
        "empty payload": ("a", echo_frame(family, seq=seq, payload=b"")),
        "token one byte short": ("a", echo_frame(family, seq=seq,
                                                 payload=TOKEN[:-1] + struct.pack("!H", seq))),
        "seq in front of token": ("a", echo_frame(family, seq=seq,
                                                  payload=struct.pack("!H", seq) + TOKEN)),
        "wrong ident": ("a", echo_frame(family, seq=seq, ident=IDENT ^ 0x0100)),
        "payload seq differs": ("a", echo_frame(family, seq=seq, payload=payload_for(seq + 1))),
        "source not a target": ("a", echo_frame(family, seq=seq, src=f["other"])),
        "source is the test address": ("a", echo_frame(family, seq=seq, src=f["test_a"])),
        "destination not the test address": ("a", echo_frame(family, seq=seq, dst=f["other"])),
        "destination is the other member's test address": (
            "a", echo_frame(family, seq=seq, dst=f["test_b"])),
        "ethernet broadcast": ("a", echo_frame(family, seq=seq, eth_dst=BROADCAST)),
        "ethernet to the group MAC": ("a", echo_frame(family, seq=seq, eth_dst=GROUP_MAC)),
        "ethernet to the other member": ("a", echo_frame(family, seq=seq, eth_dst=MAC_B)),
        "member a's reply arriving on member b": ("b", echo_frame(family, seq=seq)),
        "member b's reply arriving on member a": (
            "a", echo_frame(family, seq=seq, eth_dst=MAC_B, dst=f["test_b"])),
        "echo request instead of reply": ("a", echo_frame(family, seq=seq, request=True)),
    }


FORGERY_NAMES = list(_forgeries(4))


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("name", FORGERY_NAMES)
def test_forged_echo_reply_counts_for_nothing(family: int, name: str) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    learn(prober, family, member="a")
    learn(prober, family, member="b")
    member, frame = _forgeries(family)[name]
    # The forger sends from its own MAC: whatever it is, it must not redirect our probes.
    pkt = Ether(frame)
    pkt[Ether].src = mac_str(EVIL_MAC)
    assert prober.receive(member, bytes(pkt)) == Received()
    assert prober.receive(member, frame) == Received()
    (echo,) = prober.probe(member, target, 22)
    assert Ether(echo)[Ether].dst == mac_str(TARGET_MAC)


@pytest.mark.parametrize("family", [4, 6])
def test_reply_to_another_daemons_probe_counts_for_nothing(family: int) -> None:
    ours, theirs = make(ICMP_METHOD, family), make(ICMP_METHOD, family, token=OTHER_TOKEN)
    target = str(FAMILIES[family]["target"])
    learn(theirs, family)
    (request,) = theirs.probe("a", target, 11)
    req = Ether(request)
    payload = req[Raw].load if family == 4 else req[ICMPv6EchoRequest].data
    reply = echo_frame(family, seq=11, payload=payload)
    assert theirs.receive("a", reply).replies == ((target, 11),)
    assert ours.receive("a", reply) == Received()


@pytest.mark.parametrize("family", [4, 6])
def test_echo_reply_is_not_a_question_and_gets_no_answer(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    assert prober.receive("a", echo_frame(family, seq=1)).answers == ()


@pytest.mark.parametrize("family", [4, 6])
def test_genuine_echo_reply_teaches_the_target_mac(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    assert prober.receive("a", echo_frame(family, seq=4, eth_src=TARGET_MAC_2)).replies
    (frame,) = prober.probe("a", target, 5)
    check_echo_request(frame, family, seq=5, dst_mac=TARGET_MAC_2)


def test_icmp_method_does_not_count_arp_replies_as_probe_replies() -> None:
    prober = make(ICMP_METHOD, 4)
    prober.probe("a", str(TARGET4), 1)
    assert prober.receive("a", target_arp_reply()) == Received()


# -- 3. the ARP method ----------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 0xFFFF])
def test_arp_probe_is_a_broadcast_request_from_the_test_address(seq: int) -> None:
    prober = make(ARP, 4)
    for member, mac, ip in (("a", MAC_A, TEST4_A), ("b", MAC_B, TEST4_B)):
        frames = prober.probe(member, str(TARGET4), seq)
        assert len(frames) == 1
        check_arp_request(frames[0], mac=mac, ip=ip, target=TARGET4)


def test_arp_probe_does_not_change_once_the_target_is_known() -> None:
    prober = make(ARP, 4)
    learn(prober, 4)
    frames = prober.probe("a", str(TARGET4), 2, resolve=True)
    assert len(frames) == 1
    check_arp_request(frames[0], mac=MAC_A, ip=TEST4_A, target=TARGET4)


def test_arp_reply_matches_once() -> None:
    prober = make(ARP, 4)
    prober.probe("a", str(TARGET4), 17)
    assert prober.receive("a", target_arp_reply()) == Received(replies=((str(TARGET4), 17),))
    assert prober.receive("a", target_arp_reply()) == Received()


def test_arp_reply_matches_the_last_probe_sent_to_that_target() -> None:
    prober = make(ARP, 4)
    prober.probe("a", str(TARGET4), 30)
    prober.probe("a", str(TARGET4_2), 31)
    prober.probe("a", str(TARGET4), 32)
    assert prober.receive("a", target_arp_reply()).replies == ((str(TARGET4), 32),)
    reply_2 = target_arp_reply(hwsrc=TARGET_MAC_2, psrc=TARGET4_2)
    assert prober.receive("a", reply_2).replies == ((str(TARGET4_2), 31),)


def test_arp_reply_without_a_probe_counts_for_nothing() -> None:
    prober = make(ARP, 4)
    assert prober.receive("a", target_arp_reply()) == Received()


def test_arp_reply_is_per_member() -> None:
    prober = make(ARP, 4)
    prober.probe("a", str(TARGET4), 40)
    prober.probe("b", str(TARGET4), 41)
    reply_b = target_arp_reply(eth_dst=MAC_B, hwdst=MAC_B, pdst=TEST4_B)
    assert prober.receive("b", reply_b).replies == ((str(TARGET4), 41),)
    assert prober.receive("a", target_arp_reply()).replies == ((str(TARGET4), 40),)


ARP_FORGERIES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "gratuitous broadcast reply from the target": ("a", lambda: arp_frame(
        2, eth_dst=BROADCAST, psrc=TARGET4, hwdst=BROADCAST, pdst=TARGET4)),
    "broadcast reply naming the test address": ("a", lambda: target_arp_reply(eth_dst=BROADCAST)),
    "reply from a non-target sender": ("a", lambda: target_arp_reply(hwsrc=EVIL_MAC,
                                                                     psrc=OTHER4)),
    "reply from the test address itself": ("a", lambda: target_arp_reply(psrc=TEST4_A)),
    "reply to another MAC (ethernet and ARP)": ("a", lambda: target_arp_reply(
        eth_dst=GROUP_MAC, hwdst=GROUP_MAC)),
    "reply with ethernet to another MAC": ("a", lambda: target_arp_reply(eth_dst=MAC_B)),
    "reply with ARP target another MAC": ("a", lambda: target_arp_reply(hwdst=MAC_B)),
    "reply for another IP": ("a", lambda: target_arp_reply(pdst=OTHER4)),
    "reply for the other member's IP": ("a", lambda: target_arp_reply(pdst=TEST4_B)),
    "member a's reply arriving on member b": ("b", target_arp_reply),
    "ARP request from the target": ("a", lambda: arp_request_frame(
        sender_mac=TARGET_MAC, sender_ip=TARGET4, target_ip=TEST4_A)),
    "unicast ARP request from the target": ("a", lambda: arp_frame(1)),
}


@pytest.mark.parametrize("name", list(ARP_FORGERIES))
def test_forged_or_foreign_arp_counts_for_nothing(name: str) -> None:
    prober = make(ARP, 4)
    prober.probe("a", str(TARGET4), 50)
    prober.probe("b", str(TARGET4), 51)
    member, build = ARP_FORGERIES[name]
    assert prober.receive(member, build()).replies == ()
    # ... and it used up nothing: the genuine replies still match.
    assert prober.receive("a", target_arp_reply()).replies == ((str(TARGET4), 50),)
    reply_b = target_arp_reply(eth_dst=MAC_B, hwdst=MAC_B, pdst=TEST4_B)
    assert prober.receive("b", reply_b).replies == ((str(TARGET4), 51),)


def test_arp_method_ignores_echo_replies_for_counting() -> None:
    # The ARP method sends no echo; an echo "reply" must not be taken for an ARP probe's reply.
    prober = make(ARP, 4)
    prober.probe("a", str(TARGET4), 60)
    prober.receive("a", echo_frame(4, seq=60))
    assert prober.receive("a", target_arp_reply()).replies == ((str(TARGET4), 60),)


# -- 4. answering ARP and NDP for the test addresses ---------------------------------------------


@pytest.mark.parametrize("method", [ICMP_METHOD, ARP])
def test_arp_request_for_test_address_gets_one_reply(method: str) -> None:
    prober = make(method, 4)
    received = prober.receive("a", arp_request_frame())
    assert received.replies == ()
    assert len(received.answers) == 1
    pkt = decode(received.answers[0])
    assert pkt[Ether].dst == mac_str(ASKER_MAC)
    assert pkt[Ether].src == mac_str(MAC_A)
    assert pkt[Ether].type == 0x0806
    arp = pkt[ScapyARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 2)
    assert (arp.hwsrc, arp.psrc) == (mac_str(MAC_A), str(TEST4_A))
    assert (arp.hwdst, arp.pdst) == (mac_str(ASKER_MAC), str(ASKER4))


def test_arp_request_for_member_b_test_address_is_answered_by_b() -> None:
    prober = make(ICMP_METHOD, 4)
    (answer,) = prober.receive("b", arp_request_frame(target_ip=TEST4_B)).answers
    arp = decode(answer)[ScapyARP]
    assert (arp.op, arp.hwsrc, arp.psrc) == (2, mac_str(MAC_B), str(TEST4_B))


def test_arp_request_from_the_target_for_test_address_is_answered_to_the_target() -> None:
    prober = make(ICMP_METHOD, 4)
    request = arp_request_frame(sender_mac=TARGET_MAC, sender_ip=TARGET4)
    (answer,) = prober.receive("a", request).answers
    pkt = decode(answer)
    assert pkt[Ether].dst == mac_str(TARGET_MAC)
    assert (pkt[ScapyARP].hwdst, pkt[ScapyARP].pdst) == (mac_str(TARGET_MAC), str(TARGET4))


@pytest.mark.parametrize(("member", "asked"), [
    ("a", OTHER4),  # another host
    ("a", TARGET4),  # the target
    ("a", TEST4_B),  # the other member's test address
    ("b", TEST4_A),  # member a's test address, heard on member b
])
def test_arp_request_for_another_address_gets_no_answer(member: str,
                                                        asked: IPv4Address) -> None:
    prober = make(ICMP_METHOD, 4)
    assert prober.receive(member, arp_request_frame(target_ip=asked)) == Received()


def test_arp_reply_is_never_answered() -> None:
    prober = make(ICMP_METHOD, 4)
    reply = arp_frame(2, eth_src=ASKER_MAC, hwsrc=ASKER_MAC, psrc=ASKER4)
    assert prober.receive("a", reply).answers == ()


@pytest.mark.parametrize("option", [True, False])
def test_ns_for_test_address_gets_one_solicited_advertisement(option: bool) -> None:
    prober = make(ICMP_METHOD, 6)
    # Without an SLLA option (a unicast NS) the answer goes to the frame's source MAC.
    frame = ns_frame(option=option, unicast_to=None if option else MAC_A)
    received = prober.receive("a", frame)
    assert received.replies == ()
    assert len(received.answers) == 1
    pkt = decode(received.answers[0])
    assert pkt[Ether].dst == mac_str(ASKER_MAC)
    assert pkt[Ether].src == mac_str(MAC_A)
    assert pkt[Ether].type == 0x86DD
    ip6 = pkt[IPv6]
    assert (ip6.version, ip6.nh, ip6.hlim) == (6, 58, 255)
    assert (ip6.src, ip6.dst) == (str(TEST6_A), str(ASKER6))
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code) == (136, 0)
    assert (na.R, na.S, na.O) == (0, 1, 1)
    assert na.tgt == str(TEST6_A)
    assert na.cksum == recomputed(pkt, ICMPv6ND_NA, "cksum")
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == mac_str(MAC_A)


def test_ns_is_answered_to_its_source_link_layer_address_option() -> None:
    # RFC 4861 7.2.4: the advertisement goes to the SLLA option's address, which is the
    # asker's own even when the frame's Ethernet source is something else.
    prober = make(ICMP_METHOD, 6)
    pkt = Ether(ns_frame())
    pkt[Ether].src = mac_str(EVIL_MAC)
    (answer,) = prober.receive("a", bytes(pkt)).answers
    assert decode(answer)[Ether].dst == mac_str(ASKER_MAC)


def test_arp_request_is_answered_to_its_sender_hardware_address() -> None:
    prober = make(ICMP_METHOD, 4)
    request = arp_frame(1, eth_src=EVIL_MAC, eth_dst=BROADCAST, hwsrc=ASKER_MAC, psrc=ASKER4,
                        hwdst=ZERO_MAC, pdst=TEST4_A)
    (answer,) = prober.receive("a", request).answers
    pkt = decode(answer)
    assert pkt[Ether].dst == mac_str(ASKER_MAC)
    assert (pkt[ScapyARP].hwdst, pkt[ScapyARP].pdst) == (mac_str(ASKER_MAC), str(ASKER4))


def test_ns_for_member_b_test_address_is_answered_by_b() -> None:
    prober = make(ICMP_METHOD, 6)
    (answer,) = prober.receive("b", ns_frame(target=TEST6_B)).answers
    pkt = decode(answer)
    assert pkt[Ether].src == mac_str(MAC_B)
    assert pkt[ICMPv6ND_NA].tgt == str(TEST6_B)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == mac_str(MAC_B)


@pytest.mark.parametrize(("member", "asked"), [
    ("a", OTHER6),
    ("a", TARGET6),
    ("a", TEST6_B),
    ("b", TEST6_A),
])
def test_ns_for_another_address_gets_no_answer(member: str, asked: IPv6Address) -> None:
    prober = make(ICMP_METHOD, 6)
    assert prober.receive(member, ns_frame(target=asked)) == Received()


def test_dad_ns_for_test_address_gets_no_answer() -> None:
    prober = make(ICMP_METHOD, 6)
    assert prober.receive("a", dad_ns_frame()) == Received()


def test_na_is_never_answered() -> None:
    prober = make(ICMP_METHOD, 6)
    assert prober.receive("a", na_frame()).answers == ()


def test_ipv4_member_ignores_ndp() -> None:
    prober = make_mixed()
    for frame in (ns_frame(target=TEST6_B), ns_frame(target=TEST6_A), dad_ns_frame(TEST6_B),
                  na_frame(target=TARGET6, eth_dst=MAC_A, dst=TEST6_B)):
        assert prober.receive("v4", frame) == Received()
    # ... and learned nothing for its own target from it.
    (frame,) = prober.probe("v4", str(TARGET4), 1)
    check_arp_request(frame, mac=MAC_A, ip=TEST4_A, target=TARGET4)


def test_ipv6_member_ignores_arp() -> None:
    prober = make_mixed()
    for frame in (arp_request_frame(target_ip=TEST4_A),
                  arp_request_frame(sender_mac=TARGET_MAC, sender_ip=TARGET4),
                  target_arp_reply(eth_dst=MAC_B, hwdst=MAC_B)):
        assert prober.receive("v6", frame) == Received()
    (frame,) = prober.probe("v6", str(TARGET6), 1)
    assert ICMPv6ND_NS in Ether(frame)


def test_mixed_members_each_answer_their_own_family() -> None:
    prober = make_mixed()
    assert len(prober.receive("v4", arp_request_frame(target_ip=TEST4_A)).answers) == 1
    assert len(prober.receive("v6", ns_frame(target=TEST6_B)).answers) == 1


# -- 5. learning target MACs, and only target MACs ------------------------------------------------


def test_arp_request_from_the_target_for_us_teaches_its_mac() -> None:
    prober = make(ICMP_METHOD, 4)
    request = arp_request_frame(sender_mac=TARGET_MAC_2, sender_ip=TARGET4, target_ip=TEST4_A)
    prober.receive("a", request)
    (frame,) = prober.probe("a", str(TARGET4), 3)
    check_echo_request(frame, 4, seq=3, dst_mac=TARGET_MAC_2)


@pytest.mark.parametrize("asked", [OTHER4, TEST4_B, TARGET4_2])
def test_arp_request_naming_a_target_but_not_for_us_teaches_nothing(asked: IPv4Address) -> None:
    """A broadcast request anyone can forge must not redirect our probes (poisoning)."""
    prober = make(ICMP_METHOD, 4)
    learn(prober, 4)
    before = prober.probe("a", str(TARGET4), 3)
    request = arp_request_frame(sender_mac=EVIL_MAC, sender_ip=TARGET4, target_ip=asked)
    assert prober.receive("a", request).answers == ()
    assert prober.probe("a", str(TARGET4), 3) == before


def test_ns_from_the_target_for_us_teaches_its_mac() -> None:
    prober = make(ICMP_METHOD, 6)
    prober.receive("a", ns_frame(src=TARGET6, src_mac=TARGET_MAC_2, target=TEST6_A))
    (frame,) = prober.probe("a", str(TARGET6), 3)
    check_echo_request(frame, 6, seq=3, dst_mac=TARGET_MAC_2)


@pytest.mark.parametrize("asked", [OTHER6, TARGET6_2])
def test_ns_naming_a_target_but_not_for_us_teaches_nothing(asked: IPv6Address) -> None:
    prober = make(ICMP_METHOD, 6)
    learn(prober, 6)
    before = prober.probe("a", str(TARGET6), 3)
    prober.receive("a", ns_frame(src=TARGET6, src_mac=EVIL_MAC, target=asked))
    assert prober.probe("a", str(TARGET6), 3) == before


@pytest.mark.parametrize("family", [4, 6])
def test_learning_is_per_member(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    learn(prober, family, member="a")
    (frame,) = prober.probe("b", str(FAMILIES[family]["target"]), 1)
    assert is_resolve(frame)


def _non_target_frames() -> list[tuple[str, bytes]]:
    """Frames from OTHER4 / OTHER6 (not targets), each of a kind that teaches from a target."""
    return [
        ("arp request", arp_request_frame(sender_mac=EVIL_MAC, sender_ip=OTHER4,
                                          target_ip=TEST4_A)),
        ("arp request for another", arp_request_frame(sender_mac=EVIL_MAC, sender_ip=OTHER4,
                                                      target_ip=TARGET4)),
        ("arp reply to us", target_arp_reply(hwsrc=EVIL_MAC, psrc=OTHER4)),
        ("echo reply to us", echo_frame(4, seq=1, eth_src=EVIL_MAC, src=OTHER4)),
        ("ns", ns_frame(src=OTHER6, src_mac=EVIL_MAC, target=TEST6_A)),
        ("ns for another", ns_frame(src=OTHER6, src_mac=EVIL_MAC, target=TARGET6)),
        ("na to us", na_frame(target=OTHER6, lladdr=EVIL_MAC)),
        ("echo6 reply to us", echo_frame(6, seq=1, eth_src=EVIL_MAC, src=OTHER6)),
    ]


@pytest.mark.parametrize("index", range(len(_non_target_frames())),
                         ids=[name for name, _ in _non_target_frames()])
def test_nothing_is_learned_from_non_targets(index: int) -> None:
    _name, frame = _non_target_frames()[index]
    for family in (4, 6):
        prober = make(ICMP_METHOD, family)
        assert prober.receive("a", frame).replies == ()
        member = prober.members["a"]
        assert member.neighbors == {}
        # Probing the non-target (or the target) still needs resolving first.
        for address in (FAMILIES[family]["other"], FAMILIES[family]["target"]):
            (only,) = prober.probe("a", str(address), 2)
            assert is_resolve(only)


@pytest.mark.parametrize("family", [4, 6])
def test_a_non_target_cannot_overwrite_a_learned_target_mac(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    learn(prober, family)
    for _name, frame in _non_target_frames():
        prober.receive("a", frame)
    (echo,) = prober.probe("a", str(FAMILIES[family]["target"]), 6)
    check_echo_request(echo, family, seq=6, dst_mac=TARGET_MAC)


def test_arp_reply_from_target_to_someone_else_teaches_nothing() -> None:
    prober = make(ICMP_METHOD, 4)
    prober.receive("a", target_arp_reply(hwsrc=EVIL_MAC, eth_dst=GROUP_MAC, hwdst=GROUP_MAC))
    prober.receive("a", target_arp_reply(hwsrc=EVIL_MAC, eth_dst=BROADCAST))
    (frame,) = prober.probe("a", str(TARGET4), 1)
    assert is_resolve(frame)


def test_na_for_target_to_someone_else_teaches_nothing() -> None:
    prober = make(ICMP_METHOD, 6)
    prober.receive("a", na_frame(lladdr=EVIL_MAC, eth_dst=GROUP_MAC))
    prober.receive("a", na_frame(lladdr=EVIL_MAC, eth_dst=MAC_B, dst=TEST6_B))
    (frame,) = prober.probe("a", str(TARGET6), 1)
    assert is_resolve(frame)


# -- 6. garbage never raises and never counts ----------------------------------------------------


def _genuine_frames() -> list[tuple[str, bytes]]:
    return [
        ("echo4", echo_frame(4, seq=9)),
        ("echo6", echo_frame(6, seq=9)),
        ("arp reply", target_arp_reply()),
        ("arp request", arp_request_frame()),
        ("ns", ns_frame()),
        ("na", na_frame()),
    ]


def _all_probers() -> list[tuple[Prober, list[str]]]:
    return [(make(ICMP_METHOD, 4), ["a", "b"]), (make(ICMP_METHOD, 6), ["a", "b"]),
            (make(ARP, 4), ["a", "b"]), (make_mixed(), ["v4", "v6"])]


def test_random_bytes_never_raise_and_never_count() -> None:
    rng = random.Random(0x5EED)
    probers = _all_probers()
    for prober, members in probers:
        for member in members:
            prober.probe(member, str(prober.members[member].targets[0]), 1)
    for _ in range(3000):
        frame = rng.randbytes(rng.randrange(0, 200))
        for prober, members in probers:
            for member in members:
                assert prober.receive(member, frame) == Received()


def test_random_bytes_behind_real_ethertypes_never_raise_and_never_count() -> None:
    rng = random.Random(0xE7E7)
    probers = _all_probers()
    for prober, members in probers:
        for member in members:
            prober.probe(member, str(prober.members[member].targets[0]), 1)
    for _ in range(3000):
        ethertype = rng.choice((b"\x08\x00", b"\x08\x06", b"\x86\xdd"))
        dst = rng.choice((MAC_A, MAC_B, BROADCAST))
        frame = dst + TARGET_MAC + ethertype + rng.randbytes(rng.randrange(0, 120))
        for prober, members in probers:
            for member in members:
                assert prober.receive(member, frame).replies == ()


@pytest.mark.parametrize("index", range(len(_genuine_frames())),
                         ids=[name for name, _ in _genuine_frames()])
def test_truncated_frames_never_raise_and_never_count(index: int) -> None:
    _name, frame = _genuine_frames()[index]
    for prober, members in _all_probers():
        for member in members:
            for n in range(len(frame)):
                prober.probe(member, str(prober.members[member].targets[0]), 9)
                assert prober.receive(member, frame[:n]) == Received()


@pytest.mark.parametrize("index", range(len(_genuine_frames())),
                         ids=[name for name, _ in _genuine_frames()])
def test_bit_flipped_frames_never_raise(index: int) -> None:
    _name, frame = _genuine_frames()[index]
    rng = random.Random(index)
    for prober, members in _all_probers():
        for member in members:
            for bit in range(len(frame) * 8):
                mutated = bytearray(frame)
                mutated[bit // 8] ^= 1 << (bit % 8)
                if rng.random() < 0.5:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                result = prober.receive(member, bytes(mutated))
                assert isinstance(result, Received)
                for target, seq in result.replies:
                    assert ip_address(target) in prober.members[member].targets
                    assert 0 <= seq <= 0xFFFF


@pytest.mark.parametrize("index", range(len(_genuine_frames())),
                         ids=[name for name, _ in _genuine_frames()])
def test_frames_for_unknown_members_count_for_nothing(index: int) -> None:
    _name, frame = _genuine_frames()[index]
    for prober, _members in _all_probers():
        assert prober.receive("nosuch", frame) == Received()
        assert prober.receive("", frame) == Received()


@pytest.mark.parametrize("frame", [b"", b"\x00", bytes(13), bytes(14), bytes(60), BROADCAST * 20])
def test_degenerate_frames_count_for_nothing(frame: bytes) -> None:
    for prober, members in _all_probers():
        for member in members:
            assert prober.receive(member, frame) == Received()


# -- known bugs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [b"\x5a" * 4, b"\xa5" * 16], ids=["4 bytes", "16 bytes"])
def test_token_of_another_length_is_refused_or_works(token: bytes) -> None:
    try:
        prober = make(ICMP_METHOD, 4, token=token)
    except ValueError:
        return  # refusing it is a fine answer
    target = str(TARGET4)
    learn(prober, 4)
    (request,) = prober.probe("a", target, 12)
    reply = echo_frame(4, seq=12, payload=Ether(request)[Raw].load)
    assert prober.receive("a", reply).replies == ((target, 12),)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    from vnicbond.core.prober import TokenBucket

    bucket = TokenBucket(rate=100.0, burst=20.0)
    assert sum(bucket.take(0.0) for _ in range(50)) == 20  # the burst, then nothing
    assert bucket.dropped == 30
    assert sum(bucket.take(0.1) for _ in range(50)) == 10  # 100/s for 0.1 s
    assert sum(bucket.take(10.0) for _ in range(50)) == 20  # refills only up to the burst


# -- 6. forged answers cannot re-point probes ----------------------------------------------------


def _answer(prober: Prober, family: int, mac: bytes) -> bytes:
    m = prober.members["a"]
    if family == 4:
        return target_arp_reply(hwsrc=mac, eth_dst=m.mac, hwdst=m.mac, pdst=m.sources[0].ip)
    return na_frame(lladdr=mac, eth_dst=m.mac, dst=m.sources[0].ip)


@pytest.mark.parametrize("family", [4, 6])
def test_an_unsolicited_answer_does_not_change_a_learned_mac(family: int) -> None:
    """Anyone on the link can send us an ARP reply or NA naming the target: only the answer
    to a question we asked counts, so a forger cannot blackhole the probes."""
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    learn(prober, family)
    for _ in range(3):
        prober.receive("a", _answer(prober, family, EVIL_MAC))
    (frame,) = prober.probe("a", target, 7)
    check_echo_request(frame, family, seq=7, dst_mac=TARGET_MAC)


@pytest.mark.parametrize("family", [4, 6])
def test_the_answer_to_our_question_teaches_once(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    (question,) = prober.probe("a", target, 1)  # MAC unknown: only the question goes out
    assert is_resolve(question)
    prober.receive("a", _answer(prober, family, TARGET_MAC_2))
    prober.receive("a", _answer(prober, family, EVIL_MAC))  # a second answer: too late
    (frame,) = prober.probe("a", target, 2)
    check_echo_request(frame, family, seq=2, dst_mac=TARGET_MAC_2)


@pytest.mark.parametrize("family", [4, 6])
def test_after_losses_a_new_question_lets_a_moved_target_be_learned(family: int) -> None:
    prober = make(ICMP_METHOD, family)
    target = str(FAMILIES[family]["target"])
    learn(prober, family)
    frames = prober.probe("a", target, 5, resolve=True)
    assert len(frames) == 2 and is_resolve(frames[0])
    prober.receive("a", _answer(prober, family, TARGET_MAC_2))
    (frame,) = prober.probe("a", target, 6)
    check_echo_request(frame, family, seq=6, dst_mac=TARGET_MAC_2)


def test_a_question_from_the_target_teaches_only_while_its_mac_is_unknown() -> None:
    prober = make(ICMP_METHOD, 4)
    learn(prober, 4)
    forged = arp_request_frame(sender_mac=EVIL_MAC, sender_ip=TARGET4, target_ip=TEST4_A)
    assert len(prober.receive("a", forged).answers) == 1  # still answered (rate-limited)
    (frame,) = prober.probe("a", str(TARGET4), 3)
    check_echo_request(frame, 4, seq=3, dst_mac=TARGET_MAC)
