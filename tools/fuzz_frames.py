"""The fuzzer's own frame builders, byte by byte with ``struct`` (``tools/fuzz``).

They are the independent check of vnicbond/wire: nothing here may use vnicbond's own parsers
or builders (nor scapy), so a mistake in vnicbond/wire cannot hide itself. Every builder
writes exactly the bytes it is asked for, lying length and checksum fields included.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address


def pack_mac(text: str) -> bytes:
    """``02:00:...`` as 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


def pack_ip4(text: str) -> bytes:
    """An IPv4 address as 4 bytes."""
    return IPv4Address(text).packed


def pack_ip6(text: str) -> bytes:
    """An IPv6 address as 16 bytes."""
    return IPv6Address(text).packed


# -- frame building -----------------------------------------------------------------------------
def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071)."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes = b"") -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ihl: int = 5,
         total: int | None = None, ttl: int = 64, frag: int = 0x4000, good: bool = True,
         options: bytes = b"") -> bytes:
    """An IPv4 packet; ``ihl`` and ``total`` may lie, ``good=False`` spoils the checksum."""
    options = options.ljust(max(0, ihl * 4 - 20), b"\x01")  # NOPs up to what IHL claims
    if total is None:
        total = 20 + len(options) + len(payload)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 0xF), 0, total & 0xFFFF, 0, frag, ttl,
                         proto, 0, src, dst) + options
    csum = checksum(header) ^ (0 if good else 0x5A5A)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def icmp(kind: int, code: int, body: bytes, good: bool = True) -> bytes:
    message = struct.pack("!BBH", kind, code, 0) + body
    csum = checksum(message) ^ (0 if good else 0x1234)
    return message[:2] + struct.pack("!H", csum) + message[4:]


def ipv6(src: bytes, dst: bytes, next_header: int, payload: bytes, *, hlim: int = 64,
         plen: int | None = None) -> bytes:
    length = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, length & 0xFFFF, next_header, hlim, src,
                       dst) + payload


def icmp6(src: bytes, dst: bytes, kind: int, code: int, body: bytes, good: bool = True) -> bytes:
    message = struct.pack("!BBH", kind, code, 0) + body
    pseudo = src + dst + struct.pack("!I3xB", len(message), 58)
    csum = checksum(pseudo + message) ^ (0 if good else 0x4321)
    return message[:2] + struct.pack("!H", csum) + message[4:]


def tcp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, v6: bool = False,
        flags: int = 0x10) -> bytes:
    """A TCP segment with a correct checksum over the IPv4 or IPv6 pseudo-header."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0,
                          0) + payload
    if v6:
        pseudo = src + dst + struct.pack("!I3xB", len(segment), 6)
    else:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(segment))
    csum = checksum(pseudo + segment)
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(segment))
    csum = checksum(pseudo + segment) or 0xFFFF
    return segment[:6] + struct.pack("!H", csum) + segment[8:]


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, *, htype: int = 1,
        ptype: int = 0x0800, hlen: int | None = None, plen: int | None = None) -> bytes:
    """An ARP packet whose length fields may lie about the addresses that follow."""
    return struct.pack("!HHBBH", htype, ptype, len(sha) if hlen is None else hlen,
                       len(spa) if plen is None else plen, op) + sha + spa + tha + tpa


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0) -> bytes:
    """A virtio-net header (little-endian ``struct virtio_net_hdr``)."""
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len & 0xFFFF, gso_size & 0xFFFF,
                       csum_start & 0xFFFF, csum_offset & 0xFFFF)


ZERO_VNET = vnet()
F_NEEDS_CSUM, F_DATA_VALID = 1, 2
GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 1, 3, 4, 5, 0x80
