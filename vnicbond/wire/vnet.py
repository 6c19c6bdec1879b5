"""The virtio-net header that prefixes every frame on the TAP and on member sockets.

Layout (``struct virtio_net_hdr``, little-endian): flags u8, gso_type u8, hdr_len u16,
gso_size u16, csum_start u16, csum_offset u16.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VNET_HDR_LEN = 10
#: The header for frames the daemon builds itself: no offload, checksums already complete.
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)

F_NEEDS_CSUM = 0x01
F_DATA_VALID = 0x02
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

_FMT = struct.Struct("<BBHHHH")


@dataclass(frozen=True, slots=True)
class VnetHeader:
    """A decoded virtio-net header."""

    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0


def parse_vnet(data: bytes | bytearray | memoryview) -> VnetHeader:
    """Decode the header at the start of ``data``; ValueError if it is too short."""
    if len(data) < VNET_HDR_LEN:
        raise ValueError(f"virtio-net header needs {VNET_HDR_LEN} bytes, got {len(data)}")
    return VnetHeader(*_FMT.unpack_from(data, 0))


def build_vnet(hdr: VnetHeader) -> bytes:
    """Encode ``hdr`` as the 10 bytes that prefix a frame."""
    return _FMT.pack(hdr.flags, hdr.gso_type, hdr.hdr_len, hdr.gso_size, hdr.csum_start,
                     hdr.csum_offset)


def insert_vlan_tag(data: bytes | bytearray | memoryview, tpid: int, tci: int) -> bytearray:
    """``data`` (a virtio-net header and an Ethernet frame) with the 802.1Q tag ``tpid``/``tci``
    put back behind the MAC addresses, where the sender had it: the kernel takes a received
    frame's outermost tag off into the packet socket's metadata. Offsets the header counts
    from the frame's start (``csum_start``, and ``hdr_len`` of a super-frame) move with the
    rest by the tag's 4 bytes."""
    out = bytearray(len(data) + 4)
    macs = VNET_HDR_LEN + 12
    out[:macs] = data[:macs]
    struct.pack_into("!HH", out, macs, tpid, tci)
    out[macs + 4:] = data[macs:]
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _FMT.unpack_from(out, 0)
    if flags & F_NEEDS_CSUM:
        csum_start += 4
    if gso_type & ~GSO_ECN:
        hdr_len += 4
    _FMT.pack_into(out, 0, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    return out
