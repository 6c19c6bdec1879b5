"""The data socket's BPF program (vnicbond.system.bpf.data_filter), run on the classic-BPF
machine of :mod:`tests.unit.bpfsim` with frames built by scapy: the replies to the daemon's own
probes and every transitive probe are dropped, so the host's stack never sees them; everything
else, whatever its size, passes whole. The kernel's checker accepts the program."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    IPv6,
    IPv6ExtHdrDestOpt,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from tests.unit import bpfsim
from vnicbond.system.bpf import attach, data_filter, transitive_filter
from vnicbond.wire import transitive
from vnicbond.wire.probe import icmp_echo_request

IDENT = 0x4B1D
TOKEN = bytes.fromhex("c0ffee42a5a5a5a5")  # the daemon's token; the filter knows 4 bytes
PAYLOAD = TOKEN + (7).to_bytes(2, "big")  # what the prober sends: token, then sequence
MAC = "02:00:00:00:00:0a"  # the member's NIC
PROG = data_filter(IDENT, TOKEN[:4], bytes.fromhex(MAC.replace(":", "")))
WHOLE = 0xFFFFFFFF
PEER = "02:00:00:00:00:01"
V4, PEER_V4 = "198.18.0.10", "198.18.0.1"
V6, PEER_V6 = "fe80::ff:fe00:a", "fe80::1"


def verdict(pkt: object) -> int:
    return bpfsim.run(PROG, bytes(pkt))  # type: ignore[call-overload]


def reply4(ident: int = IDENT, payload: bytes = PAYLOAD, **ip: object) -> object:
    return (Ether(src=PEER, dst=MAC) / IP(src=PEER_V4, dst=V4, **ip)
            / ICMP(type=0, id=ident, seq=7) / Raw(payload))


def reply6(ident: int = IDENT, payload: bytes = PAYLOAD) -> object:
    return (Ether(src=PEER, dst=MAC) / IPv6(src=PEER_V6, dst=V6)
            / ICMPv6EchoReply(id=ident, seq=7, data=payload))


def test_the_kernel_accepts_the_program() -> None:
    for ident, token4 in ((IDENT, TOKEN[:4]), (0, bytes(4)), (0xFFFF, b"\xff" * 4)):
        prog = data_filter(ident, token4, bytes(6))
        bpfsim.check(prog)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            attach(sock, prog)  # EINVAL if the kernel's checker refuses it


def test_it_is_short() -> None:
    assert len(PROG) <= 48


# -- dropped -----------------------------------------------------------------------------------

OURS = {
    "echo reply": reply4(),
    "echo reply, only the token": reply4(payload=TOKEN[:4]),
    "echo reply, 1400 bytes": reply4(payload=PAYLOAD + bytes(1400)),
    "echo reply, IP options (IHL 6)": reply4(options=[IPOption_Router_Alert()]),
    "echo reply, IHL 15": reply4(options=[IPOption_Router_Alert()] * 10),
    "echo reply, DF": reply4(flags="DF"),
    "echo6 reply": reply6(),
    "echo6 reply, only the token": reply6(payload=TOKEN[:4]),
    "echo6 reply, 1400 bytes": reply6(payload=PAYLOAD + bytes(1400)),
    "echo reply padded": Ether(bytes(reply4(payload=TOKEN[:4])) + bytes(20)),
}


@pytest.mark.parametrize("name", OURS)
def test_replies_to_our_probes_are_dropped(name: str) -> None:
    assert verdict(OURS[name]) == 0


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_a_reply_to_what_the_prober_builds_is_dropped(family: str) -> None:
    """The echo request our prober sends, answered the way a host answers it."""
    src, dst = ((IPv4Address(V4), IPv4Address(PEER_V4)) if family == "v4"
                else (IPv6Address(V6), IPv6Address(PEER_V6)))
    req = Ether(icmp_echo_request(bytes(6), bytes(6), src, dst, IDENT, 9, PAYLOAD))
    if family == "v4":
        rep = (Ether(dst=MAC) / IP(src=PEER_V4, dst=V4) / ICMP(type=0, id=req[ICMP].id, seq=9)
               / Raw(bytes(req[ICMP].payload)))
    else:
        rep = Ether(dst=MAC) / IPv6(src=PEER_V6, dst=V6) / ICMPv6EchoReply(
            id=req[ICMPv6EchoRequest].id, seq=9, data=req[ICMPv6EchoRequest].data)
    assert verdict(rep) == 0
    # Our own request, seen on another member (an all-hosts ping): the host must not answer
    # it, or the group would find itself as a target.
    assert verdict(req) == 0


@pytest.mark.parametrize("kind", ["request", "reply"])
def test_transitive_probes_are_dropped(kind: str) -> None:
    secret = bytes(16)
    ours, other = bytes.fromhex(MAC.replace(":", "")), bytes.fromhex("020000000001")
    if kind == "request":  # another member's probe, to this member's NIC
        frame = transitive.request(secret, other, ours, 1, 2)
    else:  # the answer to this member's probe
        parsed = transitive.parse(transitive.request(secret, ours, other, 1, 2))
        assert parsed is not None
        frame = transitive.reply(secret, parsed)
    assert verdict(frame) == 0
    assert verdict(frame + bytes(26)) == 0
    # Any frame of the ethertype to the member's own MAC, ours or not, short or long.
    assert verdict(Ether(dst=MAC, type=0x88B5)) == 0
    assert verdict(Ether(dst=MAC, type=0x88B5) / bytes(1500)) == 0


def test_a_guests_frames_of_the_ethertype_pass() -> None:
    """A VM's own 0x88B5 frames (local experimental: anyone may use it, a nested vnicbond
    too) are to its MACs or broadcast, never to the member's NIC: they pass whole."""
    for dst in ("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:0b", "02:00:00:00:01:0a"):
        assert verdict(Ether(dst=dst, type=0x88B5) / bytes(100)) == WHOLE


# -- passed, whole -----------------------------------------------------------------------------

OTHERS = {
    "other ident": reply4(ident=IDENT ^ 1),
    "other ident v6": reply6(ident=IDENT ^ 0x100),
    "ident byte-swapped": reply4(ident=0x1D4B),
    "ping's reply": reply4(ident=1234, payload=bytes(56)),
    "token 3 bytes only": reply4(payload=TOKEN[:3]),
    "token 3 bytes only v6": reply6(payload=TOKEN[:3]),
    "no payload": reply4(payload=b""),
    "no payload v6": reply6(payload=b""),
    "echo request with another ident": (Ether(dst=MAC) / IP(dst=V4)
                                        / ICMP(type=8, id=IDENT ^ 1) / Raw(PAYLOAD)),
    "echo6 request with another token": (Ether(dst=MAC) / IPv6(dst=V6)
                                         / ICMPv6EchoRequest(id=IDENT, data=bytes(12))),
    "icmp error quoting our probe": (Ether(dst=MAC) / IP(dst=V4) / ICMP(type=3, code=1)
                                     / IP(src=V4, dst=PEER_V4) / ICMP(type=0, id=IDENT)
                                     / Raw(PAYLOAD)),
    "icmp6 error": Ether(dst=MAC) / IPv6(dst=V6) / ICMPv6DestUnreach() / Raw(bytes(48)),
    "first fragment": reply4(flags="MF", payload=PAYLOAD + bytes(100)),
    "later fragment": Ether(dst=MAC) / IP(src=PEER_V4, dst=V4, proto=1, frag=10) / Raw(
        bytes(ICMP(type=0, id=IDENT) / Raw(PAYLOAD))),
    "last fragment": Ether(dst=MAC) / IP(src=PEER_V4, dst=V4, proto=1, frag=1) / Raw(
        bytes(ICMP(type=0, id=IDENT) / Raw(PAYLOAD))),
    "ipv6 with an extension header": (Ether(dst=MAC) / IPv6(dst=V6) / IPv6ExtHdrDestOpt()
                                      / ICMPv6EchoReply(id=IDENT, data=PAYLOAD)),
    "udp carrying our bytes": (Ether(dst=MAC) / IP(dst=V4) / UDP(sport=0, dport=IDENT)
                               / Raw(PAYLOAD)),
    "tcp": Ether(dst=MAC) / IP(dst=V4) / TCP(flags="S"),
    "tcp6": Ether(dst=MAC) / IPv6(dst=V6) / TCP(flags="S"),
    "udp6": Ether(dst=MAC) / IPv6(dst=V6) / UDP() / Raw(PAYLOAD),
    "arp request": Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, pdst=V4),
    "arp reply": Ether(dst=MAC) / ARP(op=2, psrc=PEER_V4, pdst=V4),
    "na": Ether(dst=MAC) / IPv6(dst=V6) / ICMPv6ND_NA(tgt=PEER_V6),
    "vlan tag left in": (Ether(dst=MAC) / Dot1Q(vlan=5) / IP(src=PEER_V4, dst=V4)
                         / ICMP(type=0, id=IDENT) / Raw(PAYLOAD)),
    "other ethertype": Ether(type=0x88B6) / bytes(40),
    "ihl past the end": Ether(bytes(reply4())[:14] + b"\x4f" + bytes(reply4())[15:40]),
    "ihl below 5": Ether(bytes(reply4())[:14] + b"\x41" + bytes(reply4())[15:]),
}


@pytest.mark.parametrize("name", OTHERS)
def test_everything_else_passes_whole(name: str) -> None:
    assert verdict(OTHERS[name]) == WHOLE


@pytest.mark.parametrize("byte", range(4))
@pytest.mark.parametrize("family", ["v4", "v6"])
def test_any_other_token_passes(byte: int, family: str) -> None:
    token = bytearray(PAYLOAD)
    token[byte] ^= 0x80
    pkt = reply4(payload=bytes(token)) if family == "v4" else reply6(payload=bytes(token))
    assert verdict(pkt) == WHOLE
    # Bytes after the first four are not looked at: the prober checks the whole token.
    rest = PAYLOAD[:4] + bytes(len(PAYLOAD) - 4)
    pkt = reply4(payload=rest) if family == "v4" else reply6(payload=rest)
    assert verdict(pkt) == 0


@pytest.mark.parametrize("size", [65535 + 14, 100_000, 200_000])
def test_gso_super_frames_pass_whole(size: int) -> None:
    tcp = bytes(Ether(dst=MAC) / IP(dst=V4, len=0) / TCP())
    assert bpfsim.run(PROG, tcp + bytes(size - len(tcp))) == WHOLE
    tcp6 = bytes(Ether(dst=MAC) / IPv6(dst=V6, plen=0) / TCP())
    assert bpfsim.run(PROG, tcp6 + bytes(size - len(tcp6))) == WHOLE
    big_reply = bytes(reply4()) + bytes(size)  # (the IP length field cannot say so)
    assert bpfsim.run(PROG, big_reply) == 0  # ours, however big


def test_short_frames_pass() -> None:
    """Every truncation of other frames passes whole; a truncation of one of our replies too,
    until the 4 bytes of token are in it: the filter never loads past the end of a frame (the
    kernel drops a frame on such a load). Only a frame shorter than its Ethernet header, which
    no NIC delivers, is dropped."""
    ours = [bytes(reply4()), bytes(reply6()), bytes(OURS["echo reply, IHL 15"])]
    others = [bytes(OTHERS[name]) for name in ("tcp", "arp reply", "later fragment",
                                               "ipv6 with an extension header")]
    for frame in ours + others:
        token_end = len(frame) - len(PAYLOAD) + 4
        for n in range(14, len(frame) + 1):
            dropped = frame in ours and n >= token_end
            assert bpfsim.run(PROG, frame[:n]) == (0 if dropped else WHOLE), n
    for n in range(14):
        assert bpfsim.run(PROG, bytes(n)) == 0
    for fill in (0x00, 0x08, 0x86, 0xFF):
        for n in range(14, 90):
            assert bpfsim.run(PROG, bytes([fill]) * n) == WHOLE, (fill, n)


def test_ident_and_token_are_checked() -> None:
    with pytest.raises(ValueError, match="ident"):
        data_filter(0x10000, TOKEN[:4], bytes(6))
    with pytest.raises(ValueError, match="ident"):
        data_filter(-1, TOKEN[:4], bytes(6))
    with pytest.raises(ValueError, match="token4 must be 4 bytes"):
        data_filter(IDENT, TOKEN, bytes(6))
    with pytest.raises(ValueError, match="token4 must be 4 bytes"):
        data_filter(IDENT, TOKEN[:3], bytes(6))


def test_the_transitive_socket_takes_its_ethertype_alone() -> None:
    """The link-layer probe socket takes every frame (a socket bound to one ethertype is
    served after the ingress hook, where isolation drops everything), filtered to 0x88B5."""
    prog = transitive_filter()
    bpfsim.check(prog)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        attach(sock, prog)
    frame = transitive.request(bytes(16), bytes.fromhex("02000000000a"), bytes(6), 1, 2)
    assert bpfsim.run(prog, frame) == WHOLE
    for other in (OURS["echo reply"], OTHERS["tcp"], OTHERS["arp request"]):  # not 0x88B5
        assert bpfsim.run(prog, bytes(other)) == 0
