"""Neighbour discovery from the host, in load spreading: which member sends it, and with
which MAC in its link-layer address options.

In load spreading every data address is hosted by one member and answered with that member's
MAC, so an NS, NA or RS the host sends must leave through the member hosting the address it
speaks for, naming that member's MAC instead of the TAP's. This module owns that choice and
the rewrite of the message (RFC 4861 options, the ICMPv6 checksum updated in place). It
touches only the frame it is handed and reads only inside its first ``n`` bytes; the caller
(:meth:`vnicbond.datapath.forwarder.Datapath._on_tap_spread`) has checked that the frame is
an ICMPv6 message of type 133-136 with its header in the frame, and sends it.
"""

from __future__ import annotations

from vnicbond.datapath.offsets import ICMP6, IP6_SRC
from vnicbond.datapath.port import Port

#: Where the options start in each neighbour discovery message (RFC 4861 4.1-4.4).
_ND_OPTIONS = {133: 8, 134: 16, 135: 24, 136: 24}


def neighbor_discovery(buf: bytearray, n: int, hosts: dict[bytes, Port],
                       default: Port | None, group_mac: bytes) -> Port | None:
    """Pick the member for an NS/NA/RS from the host, and put its MAC in the
    link-layer address option, fixing the ICMPv6 checksum.

    ``hosts`` maps each packed data address to its hosting member; an address not in it goes
    to ``default``. ``group_mac`` is the TAP's MAC, the one to replace.
    """
    kind = buf[ICMP6]
    if kind == 136:  # NA: speaks for its target (none in a truncated one)
        key = bytes(buf[ICMP6 + 8:ICMP6 + 24]) if n >= ICMP6 + 24 else b""
    else:  # NS, RS: for the source (the target of a DAD probe from ::)
        key = bytes(buf[IP6_SRC:IP6_SRC + 16])
        if key == bytes(16) and n >= ICMP6 + 24:
            key = bytes(buf[ICMP6 + 8:ICMP6 + 24])
    port = hosts.get(key, default)
    if port is None:
        return None
    offset = ICMP6 + _ND_OPTIONS[kind]
    while offset + 8 <= n:
        length = buf[offset + 1] * 8
        if length == 0:
            break
        if buf[offset] in (1, 2) and length == 8 and buf.startswith(group_mac, offset + 2):
            old = bytes(buf[offset + 2:offset + 8])
            buf[offset + 2:offset + 8] = port.mac
            if not buf[0] & 1:  # a complete checksum: adjust it (RFC 1624)
                _checksum_replace(buf, ICMP6 + 2, old, port.mac)
        offset += length
    return port


def _checksum_replace(buf: bytearray, at: int, old: bytes, new: bytes) -> None:
    """Update the Internet checksum at ``buf[at:at+2]`` for ``old`` (even-aligned, even length)
    replaced by ``new`` (RFC 1624: HC' = ~(~HC + ~m + m'))."""
    total = ~((buf[at] << 8) | buf[at + 1]) & 0xFFFF
    for i in range(0, len(old), 2):
        total += ~((old[i] << 8) | old[i + 1]) & 0xFFFF
        total += (new[i] << 8) | new[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    value = ~total & 0xFFFF
    buf[at] = value >> 8
    buf[at + 1] = value & 0xFF
