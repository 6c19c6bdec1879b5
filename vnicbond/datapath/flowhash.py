"""Flow -> member, for spreading outbound load (IPMP's load spreading; issue 4 wires it in).

A frame's flow is its IPv4/IPv6 addresses and, for TCP and UDP, its ports; L2 addresses for
anything that is not IP. Fragments and IPv6 packets with extension headers hash on their
addresses alone, so every piece of one datagram takes the same member. A GSO super-frame is
hashed once, before the kernel segments it, so its segments stay together.

Flows map to one of ``BUCKETS`` buckets by CRC-32 of the flow key; buckets map to members by
rendezvous (highest-random-weight) hashing, recomputed only when the set of members changes.
So when a member leaves, only the buckets it had move, and when it returns about 1/N of all
buckets come back to it; every other flow stays where it was and never reorders. The per-frame
cost is a few slices, one CRC and one list lookup.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence

BUCKETS = 4096
ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_PORTS_PROTOCOLS = (6, 17)  # TCP, UDP


def flow_key(buf: bytes | bytearray, start: int = 0, end: int | None = None) -> bytes:
    """The bytes that identify the flow of the Ethernet frame at ``buf[start:end]``."""
    end = len(buf) if end is None else end
    if end - start < ETH_HLEN:
        return bytes(buf[start:end])
    ethertype = (buf[start + 12] << 8) | buf[start + 13]
    ip = start + ETH_HLEN
    if ethertype == ETH_P_IP and end - ip >= 20:
        ihl = (buf[ip] & 0x0F) * 4
        proto = buf[ip + 9]
        addresses = bytes(buf[ip + 12:ip + 20])
        fragment = ((buf[ip + 6] & 0x3F) << 8) | buf[ip + 7]  # MF flag and offset
        l4 = ip + ihl
        if proto in _PORTS_PROTOCOLS and not fragment and ihl >= 20 and end - l4 >= 4:
            return addresses + bytes((proto,)) + bytes(buf[l4:l4 + 4])
        return addresses + bytes((proto,))
    if ethertype == ETH_P_IPV6 and end - ip >= 40:
        nxt = buf[ip + 6]
        addresses = bytes(buf[ip + 8:ip + 40])
        l4 = ip + 40
        if nxt in _PORTS_PROTOCOLS and end - l4 >= 4:
            return addresses + bytes((nxt,)) + bytes(buf[l4:l4 + 4])
        return addresses  # extension headers: the addresses keep the pieces together
    return bytes(buf[start:start + 12])  # not IP: destination and source MAC


def flow_hash(buf: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
    """CRC-32 of the flow key: stable across runs and processes."""
    return zlib.crc32(flow_key(buf, start, end))


def _weight(member: str, bucket: int) -> bytes:
    return hashlib.blake2b(struct.pack("!I", bucket) + member.encode(), digest_size=8).digest()


class FlowTable:
    """Buckets of flows assigned to members by rendezvous hashing."""

    def __init__(self, buckets: int = BUCKETS) -> None:
        if buckets <= 0 or buckets & (buckets - 1):
            raise ValueError("the number of buckets must be a power of two")
        self.mask = buckets - 1
        self.members: tuple[str, ...] = ()
        #: bucket -> member (None while there is no member).
        self.table: list[str | None] = [None] * buckets
        self._weights: dict[str, list[bytes]] = {}

    def set_members(self, members: Sequence[str]) -> int:
        """Spread the buckets over ``members``; returns how many buckets changed member.

        Each member's weights are computed once, so a failover costs one comparison per
        bucket and member.
        """
        self.members = tuple(dict.fromkeys(members))
        for m in self.members:
            if m not in self._weights:
                self._weights[m] = [_weight(m, b) for b in range(len(self.table))]
        columns = [(self._weights[m], m) for m in self.members]
        moved = 0
        for bucket in range(len(self.table)):
            best = max(columns, key=lambda c: c[0][bucket])[1] if columns else None
            if best != self.table[bucket]:
                self.table[bucket] = best
                moved += 1
        return moved

    def member_for(self, h: int) -> str | None:
        """The member that carries flows of hash ``h``."""
        return self.table[h & self.mask]

    def share(self) -> dict[str, int]:
        """How many buckets each member has."""
        counts = dict.fromkeys(self.members, 0)
        for member in self.table:
            if member is not None:
                counts[member] += 1
        return counts
