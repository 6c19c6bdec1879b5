"""Control frames of failure detection: ARP, ICMP/ICMPv6 echo and IPv6 neighbour discovery.

Owns the wire formats of what a probing member sends and receives when it probes its targets
from a test, data or link-local address (as in.mpathd does): ARP requests and replies (RFC
826), ICMP echo (RFC 792), ICMPv6 echo (RFC 4443), and neighbour solicitations and
advertisements (RFC 4861), and the all-hosts / all-nodes groups that target discovery pings
(with their multicast MACs). Builders return
plain Ethernet frames (no VLAN tag, no virtio-net header, not padded to the 60-byte minimum:
the NIC pads on transmit); the datapath adds the virtio-net header. :func:`parse_control`
reads one such plain frame.

Only ``struct``: this runs in the daemon for every control frame, so it must not pull in scapy.
The parser is written for hostile input. It never raises, and it returns None for anything it
does not fully understand and validate: VLAN-tagged frames, IPv4 fragments, IPv6 extension
headers, bad checksums, lengths that do not add up, and every message other than an ARP request
or reply, an echo reply, a neighbour solicitation or a neighbour advertisement.

Its size (a little over 400 lines) is that of four protocols' builders and the one parser,
which share their checksums, header layouts and checks: apart, they would repeat them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)

ARP_REQUEST = 1
ARP_REPLY = 2

IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136

ND_OPT_SOURCE_LLADDR = 1
ND_OPT_TARGET_LLADDR = 2

NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20

#: TTL / hop limit of echo requests; neighbour discovery always uses 255 (RFC 4861 7.1).
DEFAULT_TTL = 64
ND_HOP_LIMIT = 255

_IPV4_DF = 0x4000
_IPV4_MF_OFFSET = 0x3FFF  # More Fragments flag and the 13-bit fragment offset

ETH_HLEN = 14
ARP_LEN = 28
IPV4_HLEN = 20
IPV6_HLEN = 40
ICMP_ECHO_HLEN = 8
ND_HLEN = 24  # type, code, checksum, 4 bytes flags/reserved, 16-byte target

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ECHO = struct.Struct("!BBHHH")
_ND = struct.Struct("!BBHB3x16s")

#: Where target discovery pings when no target is configured (RFC 1112, RFC 4291 2.7.1).
ALL_HOSTS_V4 = IPv4Address("224.0.0.1")
ALL_NODES_V6 = IPv6Address("ff02::1")

_IPV4_MULTICAST_MAC_PREFIX = bytes.fromhex("01005e")
_IPV6_MULTICAST_MAC_PREFIX = bytes.fromhex("3333")

_SOLICITED_NODE_PREFIX = IPv6Address("ff02::1:ff00:0").packed[:13]  # ff02::1:ff00:0/104
_SOLICITED_NODE_MAC_PREFIX = bytes.fromhex("3333ff")


@dataclass(frozen=True, slots=True)
class Arp:
    """An ARP request (op 1) or reply (op 2) for IPv4 over Ethernet."""

    op: int
    src_mac: bytes  # Ethernet source
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address
    dst_mac: bytes  # Ethernet destination


@dataclass(frozen=True, slots=True)
class EchoReply:
    """An ICMP echo reply (IPv4, type 0) or ICMPv6 echo reply (type 129)."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv4Address | IPv6Address
    dst_ip: IPv4Address | IPv6Address
    ident: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """A neighbour solicitation (ICMPv6 135); ``src_ip`` is ``::`` for duplicate detection."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv6Address
    target_ip: IPv6Address
    source_lladdr: bytes | None


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """A neighbour advertisement (ICMPv6 136)."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: IPv6Address
    target_ip: IPv6Address
    target_lladdr: bytes | None
    solicited: bool
    override: bool
    router: bool = False  # the R flag: the sender is a router (RFC 4861 4.4)


ControlFrame = Arp | EchoReply | NeighborSolicitation | NeighborAdvertisement


# -- checksums ---------------------------------------------------------------------------------


def _sum16(data: bytes) -> int:
    """The folded ones'-complement sum of ``data`` as 16-bit big-endian words (RFC 1071).

    2**16 is 1 modulo 0xFFFF, so the end-around-carry sum is the value modulo 0xFFFF, written
    0xFFFF rather than 0 when any bit is set (a ones'-complement sum of non-zero words is never
    +0).
    """
    if len(data) & 1:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0
    return value % 0xFFFF or 0xFFFF


def _checksum(data: bytes) -> int:
    """The Internet checksum to store in a header whose checksum field is zero in ``data``."""
    return 0xFFFF - _sum16(data)


def _pseudo_header6(src: bytes, dst: bytes, length: int) -> bytes:
    """The IPv6 pseudo-header of an ICMPv6 message (RFC 8200 8.1)."""
    return src + dst + struct.pack("!I3xB", length, IPPROTO_ICMPV6)


# -- builders ----------------------------------------------------------------------------------


def _check_mac(name: str, mac: bytes) -> None:
    if not isinstance(mac, bytes) or len(mac) != 6:
        raise ValueError(f"{name} must be 6 bytes, got {mac!r}")


def _check_u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must fit in 16 bits, got {value}")


def _arp(op: int, eth_dst: bytes, sender_mac: bytes, sender_ip: IPv4Address,
         target_mac: bytes, target_ip: IPv4Address) -> bytes:
    return _ETH.pack(eth_dst, sender_mac, ETH_P_ARP) + _ARP.pack(
        1, ETH_P_IP, 6, 4, op, sender_mac, sender_ip.packed, target_mac, target_ip.packed)


def arp_request(src_mac: bytes, src_ip: IPv4Address, target_ip: IPv4Address) -> bytes:
    """A broadcast ARP request from (``src_mac``, ``src_ip``) asking who has ``target_ip``."""
    _check_mac("src_mac", src_mac)
    return _arp(ARP_REQUEST, BROADCAST, src_mac, src_ip, ZERO_MAC, target_ip)


def arp_reply(src_mac: bytes, src_ip: IPv4Address, dst_mac: bytes, dst_ip: IPv4Address) -> bytes:
    """A unicast ARP reply to (``dst_mac``, ``dst_ip``): ``src_ip`` is at ``src_mac``."""
    _check_mac("src_mac", src_mac)
    _check_mac("dst_mac", dst_mac)
    return _arp(ARP_REPLY, dst_mac, src_mac, src_ip, dst_mac, dst_ip)


def _ipv6_icmp(src_mac: bytes, dst_mac: bytes, src_ip: IPv6Address, dst_ip: IPv6Address,
               hop_limit: int, message: bytes) -> bytes:
    """Ethernet + IPv6 around an ICMPv6 ``message`` whose checksum (bytes 2-3) is zero."""
    if len(message) > 0xFFFF:
        raise ValueError(f"ICMPv6 message of {len(message)} bytes needs a jumbogram")
    src, dst = src_ip.packed, dst_ip.packed
    csum = _checksum(_pseudo_header6(src, dst, len(message)) + message)
    return (_ETH.pack(dst_mac, src_mac, ETH_P_IPV6)
            + _IPV6.pack(6 << 28, len(message), IPPROTO_ICMPV6, hop_limit, src, dst)
            + message[:2] + csum.to_bytes(2, "big") + message[4:])


def multicast_mac(ip: IPv4Address | IPv6Address) -> bytes:
    """The Ethernet group address of multicast ``ip``: ``01:00:5e`` and its low 23 bits (RFC
    1112 6.4), or ``33:33`` and its low 32 bits (RFC 2464 7)."""
    if not ip.is_multicast:
        raise ValueError(f"{ip} is not a multicast address")
    if isinstance(ip, IPv4Address):
        low = int.from_bytes(ip.packed[1:], "big") & 0x7FFFFF
        return _IPV4_MULTICAST_MAC_PREFIX + low.to_bytes(3, "big")
    return _IPV6_MULTICAST_MAC_PREFIX + ip.packed[12:]


def icmp_echo_request(src_mac: bytes, dst_mac: bytes, src_ip: IPv4Address | IPv6Address,
                      dst_ip: IPv4Address | IPv6Address, ident: int, seq: int,
                      payload: bytes, ttl: int = DEFAULT_TTL) -> bytes:
    """An ICMP (IPv4) or ICMPv6 echo request; the family is that of the IPs.

    ``ttl`` is the TTL or hop limit (64 unless said otherwise; 1 for an all-hosts ping, as
    ``ping -t 1`` sends it, so that no router forwards it). ``dst_mac`` is the target's, or
    :func:`multicast_mac` of a multicast ``dst_ip``. IPv4: IHL 5, DF set, identification 0
    (an atomic datagram, RFC 6864).
    """
    _check_mac("src_mac", src_mac)
    _check_mac("dst_mac", dst_mac)
    _check_u16("ident", ident)
    _check_u16("seq", seq)
    if not 1 <= ttl <= 255:
        raise ValueError(f"ttl must be 1 to 255, got {ttl}")
    if isinstance(src_ip, IPv4Address) and isinstance(dst_ip, IPv4Address):
        total = IPV4_HLEN + ICMP_ECHO_HLEN + len(payload)
        if total > 0xFFFF:
            raise ValueError(f"echo payload of {len(payload)} bytes does not fit in IPv4")
        message = _ECHO.pack(ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
        message = message[:2] + _checksum(message).to_bytes(2, "big") + message[4:]
        header = _IPV4.pack(0x45, 0, total, 0, _IPV4_DF, ttl, IPPROTO_ICMP, 0,
                            src_ip.packed, dst_ip.packed)
        header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
        return _ETH.pack(dst_mac, src_mac, ETH_P_IP) + header + message
    if isinstance(src_ip, IPv6Address) and isinstance(dst_ip, IPv6Address):
        message = _ECHO.pack(ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + payload
        return _ipv6_icmp(src_mac, dst_mac, src_ip, dst_ip, ttl, message)
    raise ValueError(f"src_ip {src_ip} and dst_ip {dst_ip} must be of the same family")


def solicited_node(address: IPv6Address) -> tuple[IPv6Address, bytes]:
    """The solicited-node multicast address of ``address`` and its MAC (RFC 4291 2.7.1)."""
    low = address.packed[13:]
    return IPv6Address(_SOLICITED_NODE_PREFIX + low), _SOLICITED_NODE_MAC_PREFIX + low


def neighbor_solicitation(src_mac: bytes, src_ip: IPv6Address, target_ip: IPv6Address) -> bytes:
    """A multicast neighbour solicitation for ``target_ip`` from (``src_mac``, ``src_ip``).

    Sent to the target's solicited-node group with hop limit 255 and a Source Link-Layer
    Address option, except from ``::`` (duplicate address detection), where RFC 4861 7.1.1
    forbids the option.
    """
    _check_mac("src_mac", src_mac)
    dst_ip, dst_mac = solicited_node(target_ip)
    message = _ND.pack(ND_NEIGHBOR_SOLICIT, 0, 0, 0, target_ip.packed)
    if not src_ip.is_unspecified:
        message += bytes((ND_OPT_SOURCE_LLADDR, 1)) + src_mac
    return _ipv6_icmp(src_mac, dst_mac, src_ip, dst_ip, ND_HOP_LIMIT, message)


def neighbor_advertisement(src_mac: bytes, src_ip: IPv6Address, dst_mac: bytes,
                           dst_ip: IPv6Address) -> bytes:
    """The solicited advertisement answering (``dst_mac``, ``dst_ip``)'s solicitation of ``src_ip``.

    Unicast, hop limit 255, Solicited and Override set, Router clear, target ``src_ip`` and a
    Target Link-Layer Address option carrying ``src_mac``.
    """
    _check_mac("src_mac", src_mac)
    _check_mac("dst_mac", dst_mac)
    message = (_ND.pack(ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
                        src_ip.packed)
               + bytes((ND_OPT_TARGET_LLADDR, 1)) + src_mac)
    return _ipv6_icmp(src_mac, dst_mac, src_ip, dst_ip, ND_HOP_LIMIT, message)


# -- parser ------------------------------------------------------------------------------------


def parse_control(frame: bytes | bytearray | memoryview) -> ControlFrame | None:
    """Decode a plain Ethernet frame if it is an ARP request/reply, an echo reply, an NS or an NA.

    None for anything else and for anything malformed; never raises.
    """
    if not isinstance(frame, bytes):
        frame = bytes(frame)
    if len(frame) < ETH_HLEN:
        return None
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame, 0)
    if ethertype == ETH_P_ARP:
        return _parse_arp(frame, dst_mac, src_mac)
    if ethertype == ETH_P_IP:
        return _parse_ipv4(frame, dst_mac, src_mac)
    if ethertype == ETH_P_IPV6:
        return _parse_ipv6(frame, dst_mac, src_mac)
    return None


def _parse_arp(frame: bytes, dst_mac: bytes, src_mac: bytes) -> Arp | None:
    if len(frame) < ETH_HLEN + ARP_LEN:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HLEN)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4) or op not in (ARP_REQUEST, ARP_REPLY):
        return None
    return Arp(op=op, src_mac=src_mac, sender_mac=sha, sender_ip=IPv4Address(spa),
               target_mac=tha, target_ip=IPv4Address(tpa), dst_mac=dst_mac)


def _parse_ipv4(frame: bytes, dst_mac: bytes, src_mac: bytes) -> EchoReply | None:
    available = len(frame) - ETH_HLEN
    if available < IPV4_HLEN:
        return None
    (version_ihl, _tos, total, _ident, fragment, _ttl, proto, _csum, src,
     dst) = _IPV4.unpack_from(frame, ETH_HLEN)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < IPV4_HLEN or ihl > available:
        return None
    if total < ihl or total > available:
        return None
    if fragment & _IPV4_MF_OFFSET or proto != IPPROTO_ICMP:
        return None
    if _sum16(frame[ETH_HLEN:ETH_HLEN + ihl]) != 0xFFFF:
        return None
    message = frame[ETH_HLEN + ihl:ETH_HLEN + total]  # cuts any Ethernet padding
    if len(message) < ICMP_ECHO_HLEN:
        return None
    icmp_type, code, _csum, ident, seq = _ECHO.unpack_from(message, 0)
    if icmp_type != ICMP_ECHO_REPLY or code != 0 or _sum16(message) != 0xFFFF:
        return None
    return EchoReply(src_mac=src_mac, dst_mac=dst_mac, src_ip=IPv4Address(src),
                     dst_ip=IPv4Address(dst), ident=ident, seq=seq,
                     payload=bytes(message[ICMP_ECHO_HLEN:]))


def _parse_ipv6(frame: bytes, dst_mac: bytes,
                src_mac: bytes) -> EchoReply | NeighborSolicitation | NeighborAdvertisement | None:
    available = len(frame) - ETH_HLEN - IPV6_HLEN
    if available < 0:
        return None
    version_class_flow, length, next_header, hop_limit, src, dst = _IPV6.unpack_from(
        frame, ETH_HLEN)
    if version_class_flow >> 28 != 6 or length > available or next_header != IPPROTO_ICMPV6:
        return None
    start = ETH_HLEN + IPV6_HLEN
    message = frame[start:start + length]  # cuts any Ethernet padding
    if length < 4 or _sum16(_pseudo_header6(src, dst, length) + message) != 0xFFFF:
        return None
    icmp_type, code = message[0], message[1]
    if code != 0:
        return None
    if icmp_type == ICMPV6_ECHO_REPLY:
        if length < ICMP_ECHO_HLEN:
            return None
        _type, _code, _csum, ident, seq = _ECHO.unpack_from(message, 0)
        return EchoReply(src_mac=src_mac, dst_mac=dst_mac, src_ip=IPv6Address(src),
                         dst_ip=IPv6Address(dst), ident=ident, seq=seq,
                         payload=bytes(message[ICMP_ECHO_HLEN:]))
    if icmp_type not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
        return None
    # RFC 4861 7.1.1 / 7.1.2: hop limit 255 (never forwarded), at least 24 bytes, target not
    # multicast, every option of non-zero length and inside the message.
    if hop_limit != ND_HOP_LIMIT or length < ND_HLEN:
        return None
    _type, _code, _csum, flags, target = _ND.unpack_from(message, 0)
    if target[0] == 0xFF:
        return None
    wanted = ND_OPT_SOURCE_LLADDR if icmp_type == ND_NEIGHBOR_SOLICIT else ND_OPT_TARGET_LLADDR
    options = _lladdr_option(message, wanted)
    if options is None:
        return None
    lladdr = options or None
    if icmp_type == ND_NEIGHBOR_SOLICIT:
        if src == bytes(16) and (lladdr is not None or dst[:13] != _SOLICITED_NODE_PREFIX):
            return None
        return NeighborSolicitation(src_mac=src_mac, dst_mac=dst_mac, src_ip=IPv6Address(src),
                                    target_ip=IPv6Address(target), source_lladdr=lladdr)
    solicited = bool(flags & NA_FLAG_SOLICITED)
    if solicited and dst[0] == 0xFF:
        return None
    return NeighborAdvertisement(src_mac=src_mac, dst_mac=dst_mac, src_ip=IPv6Address(src),
                                 target_ip=IPv6Address(target), target_lladdr=lladdr,
                                 solicited=solicited, override=bool(flags & NA_FLAG_OVERRIDE),
                                 router=bool(flags & NA_FLAG_ROUTER))


def _lladdr_option(message: bytes, wanted: int) -> bytes | None:
    """The Ethernet address in the first option of type ``wanted``, b"" if there is none.

    None (reject the message) if an option has length 0, runs past the end, or is of type
    ``wanted`` but not 8 bytes long (a 6-byte address). Later duplicates are ignored, as Linux
    does; options of other types are skipped (RFC 4861 4.6).
    """
    found = b""
    pos, end = ND_HLEN, len(message)
    while pos < end:
        if end - pos < 2:
            return None
        option_type, units = message[pos], message[pos + 1]
        next_pos = pos + units * 8
        if units == 0 or next_pos > end:
            return None
        if option_type == wanted:
            if units != 1:
                return None
            if not found:
                found = bytes(message[pos + 2:pos + 8])
        pos = next_pos
    return found
