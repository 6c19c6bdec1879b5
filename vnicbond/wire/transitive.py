"""Transitive probes: the link-layer frames a member without an address of its own probes with.

Owns the wire format of transitive probing (issue 14, as Solaris 11's in.mpathd does it): a
member that has neither a test address nor a data address sends a *request* through the switch
to the NIC MAC of a member that probes with ICMP, and the daemon answers it on that member with
a *reply*. Both are plain Ethernet frames (no VLAN tag, no virtio-net header, not padded: the
NIC pads on transmit) of the IEEE local experimental ethertype 0x88B5 (IEEE 802 clause 9.2):

    dst MAC (6) | src MAC (6) | 0x88B5 (2) | b"VBTP" (4) | version 1 (1) | kind (1)
    | seq (2) | nonce (4) | auth (8)

``kind`` is 1 for a request, 2 for a reply; ``seq`` is the detector's sequence number; the
``nonce`` is drawn at random for each request and echoed by its reply; ``auth`` is the 8-byte
keyed BLAKE2b of ``kind | seq | nonce | src MAC | dst MAC`` under the daemon's secret (16 or 32
bytes, never sent). A reply goes from the request's destination to its source, so its auth
differs from the request's: an attacker who captures requests cannot forge replies, and the
nonce (checked by the caller against the one it sent) defeats replays of old replies.

Only ``struct``, ``hashlib`` and ``hmac``: the daemon parses these frames itself, on the hot
side of probing, and must not pull in scapy. :func:`parse` is written for hostile input: it
never raises and returns None for anything that is not a well-formed frame of this format.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

ETH_P_TRANSITIVE = 0x88B5

MAGIC = b"VBTP"
VERSION = 1
REQUEST = 1
REPLY = 2

#: Bytes of a transitive frame: 14 of Ethernet header and 20 of payload.
FRAME_LEN = 34
AUTH_LEN = 8
SECRET_LENGTHS = (16, 32)

_FRAME = struct.Struct("!6s6sH4sBBHI8s")
_COVERED = struct.Struct("!BHI6s6s")

assert _FRAME.size == FRAME_LEN


@dataclass(frozen=True, slots=True)
class Transitive:
    """One decoded transitive frame (its authenticity not yet checked: see :func:`authentic`)."""

    dst_mac: bytes
    src_mac: bytes
    kind: int
    seq: int
    nonce: int
    auth: bytes


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes) or len(secret) not in SECRET_LENGTHS:
        raise ValueError(f"the transitive probe secret must be 16 or 32 bytes, "
                         f"got {len(secret) if isinstance(secret, bytes) else type(secret)}")


def _auth(secret: bytes, kind: int, seq: int, nonce: int, src_mac: bytes,
          dst_mac: bytes) -> bytes:
    covered = _COVERED.pack(kind, seq, nonce, src_mac, dst_mac)
    return hashlib.blake2b(covered, key=secret, digest_size=AUTH_LEN).digest()


def _frame(secret: bytes, kind: int, src_mac: bytes, dst_mac: bytes, seq: int,
           nonce: int) -> bytes:
    _check_secret(secret)
    for name, mac in (("src_mac", src_mac), ("dst_mac", dst_mac)):
        if not isinstance(mac, bytes) or len(mac) != 6:
            raise ValueError(f"{name} must be 6 bytes, got {mac!r}")
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"seq must fit in 16 bits, got {seq}")
    if not 0 <= nonce <= 0xFFFFFFFF:
        raise ValueError(f"nonce must fit in 32 bits, got {nonce}")
    return _FRAME.pack(dst_mac, src_mac, ETH_P_TRANSITIVE, MAGIC, VERSION, kind, seq, nonce,
                       _auth(secret, kind, seq, nonce, src_mac, dst_mac))


def request(secret: bytes, src_mac: bytes, dst_mac: bytes, seq: int, nonce: int) -> bytes:
    """A request from the transitive member's NIC (``src_mac``) to a prober's (``dst_mac``)."""
    return _frame(secret, REQUEST, src_mac, dst_mac, seq, nonce)


def reply(secret: bytes, req: Transitive) -> bytes:
    """The reply to request ``req``: from its destination to its source, same seq and nonce.

    The caller checks ``authentic(secret, req)`` first: this only builds the frame.
    """
    if req.kind != REQUEST:
        raise ValueError(f"only a request is answered, not a frame of kind {req.kind}")
    return _frame(secret, REPLY, req.dst_mac, req.src_mac, req.seq, req.nonce)


def parse(frame: bytes | bytearray | memoryview) -> Transitive | None:
    """Decode a plain Ethernet frame of this format (Ethernet padding after it is ignored).

    None for anything else: too short, another ethertype, magic, version or kind. Never raises.
    """
    try:
        if len(frame) < FRAME_LEN:
            return None
        (dst_mac, src_mac, ethertype, magic, version, kind, seq, nonce,
         auth) = _FRAME.unpack_from(frame, 0)
    except (TypeError, ValueError, struct.error):
        return None
    if (ethertype != ETH_P_TRANSITIVE or magic != MAGIC or version != VERSION
            or kind not in (REQUEST, REPLY)):
        return None
    return Transitive(dst_mac=dst_mac, src_mac=src_mac, kind=kind, seq=seq, nonce=nonce,
                      auth=auth)


def authentic(secret: bytes, t: Transitive) -> bool:
    """Whether ``t``'s auth is the one our ``secret`` gives its kind, seq, nonce and MACs
    (compared in constant time). False for a frame forged, altered or sent by another daemon."""
    _check_secret(secret)
    expected = _auth(secret, t.kind, t.seq, t.nonce, t.src_mac, t.dst_mac)
    return hmac.compare_digest(expected, t.auth)
