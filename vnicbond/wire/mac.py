"""MAC addresses as people read them, and the IPv6 link-local address a MAC gives.

Owns the text form (``02:00:00:00:00:10``: lower-case hex octets joined by ``:``; frames
carry MACs as raw 6-byte ``bytes``) and the one derivation of a link-local address from a MAC
(modified EUI-64, RFC 4291 appendix A, as the kernel does with ``addr_gen_mode eui64``).
Standard library only, so the configuration reader and client commands can import it and still
start fast.
"""

from __future__ import annotations

from ipaddress import IPv6Address


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00\\x00\\x00\\x00\\x10"`` -> ``"02:00:00:00:00:10"``."""
    return ":".join(f"{octet:02x}" for octet in mac)


def link_local(mac: bytes) -> IPv6Address:
    """The link-local address ``fe80::/64`` of modified EUI-64 interface identifier of ``mac``:
    the universal/local bit flipped and ``ff:fe`` inserted in the middle
    (``02:00:00:00:00:0a`` -> ``fe80::ff:fe00:a``)."""
    if not isinstance(mac, bytes) or len(mac) != 6:
        raise ValueError(f"a MAC is 6 bytes, got {mac!r}")
    iid = bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:]
    return IPv6Address(b"\xfe\x80" + bytes(6) + iid)
