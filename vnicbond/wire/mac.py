"""MAC addresses as people read them: the one place that spells six bytes as text.

Owns only the text form (``02:00:00:00:00:10``: lower-case hex octets joined by ``:``);
frames carry MACs as raw 6-byte ``bytes``. Standard library only, so the configuration
reader and client commands can import it and still start fast.
"""

from __future__ import annotations


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00\\x00\\x00\\x00\\x10"`` -> ``"02:00:00:00:00:10"``."""
    return ":".join(f"{octet:02x}" for octet in mac)
