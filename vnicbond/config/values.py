"""The configuration's value parsers: one written value in, a Python value or a ValueError out.

Owns the spelling rules of single values: durations (``250ms``, ``1.5s``, integer
milliseconds), MAC addresses and the default MAC of a group, Linux interface names,
addresses (plain, with a prefix, route destinations), the control socket's path and the
metrics listen address. Each parser raises :class:`ValueError` whose text is the message a
user reads after ``FILE:LINE: key.path:``. These functions know no YAML and no file
positions (the schema puts them there) and nothing of how values relate to each other
(duplicates, gateways on-link: :mod:`vnicbond.config.schema`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from decimal import Decimal

from vnicbond.config.errors import short
from vnicbond.config.settings import MAX_SOCKET_PATH_BYTES, IPAddress, IPInterface, IPNetwork
from vnicbond.wire.mac import format_mac

_IFNAMSIZ = 16  # Linux interface names are at most IFNAMSIZ - 1 bytes

# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s)")


def parse_duration_ms(value: object) -> int:
    """Convert a duration to whole milliseconds.

    Accepted: a non-negative ``int`` (milliseconds, e.g. ``300``) or a string made of
    a non-negative number and a unit with nothing in between, ``ms`` or ``s``
    (``"250ms"``, ``"1s"``, ``"1.5s"``). Refused with ``ValueError``: booleans, floats,
    unit-less strings (``"300"``), negative values, spaces (``"10 ms"``), other units
    and results that are not a whole number of milliseconds (``"1.5ms"``).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '250ms' or '1s', got a boolean ({value})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration must not be negative, got {value}")
        return value
    if isinstance(value, float):
        raise ValueError(
            f"a duration without a unit is milliseconds and must be an integer, got {value!r}; "
            "write e.g. '1.5s' or '1500ms'"
        )
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '250ms' or '1s', got {type(value).__name__}")
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        if value.strip().startswith("-"):
            raise ValueError(f"a duration must not be negative, got {value!r}")
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", value):
            raise ValueError(
                f"duration {value!r} has no unit; write e.g. '{value}ms' or '{value}s' "
                "(only an unquoted integer means milliseconds)"
            )
        raise ValueError(
            f"invalid duration {value!r}: expected a number directly followed by 'ms' or 's' "
            "(e.g. '250ms', '1.5s') or an integer of milliseconds"
        )
    number = Decimal(match[1])
    ms = number * 1000 if match[2] == "s" else number
    if ms != ms.to_integral_value():
        raise ValueError(f"duration {value!r} is not a whole number of milliseconds")
    return int(ms)


def format_ms(ms: int) -> str:
    """A duration as a message shows it: ``1000`` -> ``1s``, ``250`` -> ``250ms``."""
    return f"{ms // 1000}s" if ms and ms % 1000 == 0 else f"{ms}ms"


# --------------------------------------------------------------------------- MACs

_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def default_mac(name: str) -> bytes:
    """The MAC address a group gets when its ``mac`` key is absent.

    Derived from the group name with SHA-256, so it is stable across restarts and
    hosts; the first octet is forced to locally administered (bit 0x02 set) and
    unicast (bit 0x01 clear).
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6]


def parse_mac(text: str) -> bytes:
    """``"02:00:00:00:00:10"`` -> 6 bytes; a group's MAC, so unicast and not all zeros."""
    if not _MAC_RE.fullmatch(text):
        raise ValueError(
            f"invalid MAC address {short(text)}: expected six hex octets separated "
            "by ':' such as 02:00:00:00:00:10"
        )
    mac = bytes.fromhex(text.replace(":", ""))
    if mac[0] & 0x01:
        raise ValueError(
            f"MAC address {format_mac(mac)} is multicast; the group's MAC must be unicast "
            "(bit 0x01 of the first octet clear)"
        )
    if not any(mac):
        raise ValueError("MAC address must not be all zeros")
    return mac


# --------------------------------------------------------------------------- interface names


def parse_ifname(name: str) -> str:
    """``name`` if it is a valid Linux interface name; else ValueError saying why not."""
    if not name:
        raise ValueError("an interface name must not be empty")
    size = len(name.encode("utf-8"))
    if size >= _IFNAMSIZ:
        raise ValueError(
            f"interface name {name!r} is too long ({size} bytes; "
            f"Linux allows at most {_IFNAMSIZ - 1})"
        )
    if name in (".", ".."):
        raise ValueError(f"{name!r} is not a valid interface name")
    for ch in name:
        if ch in "/:%" or ch.isspace() or not ch.isprintable():
            raise ValueError(
                f"interface name {name!r} contains {ch!r}; names cannot contain '/', ':', "
                "'%', whitespace or control characters"
            )
    return name


# --------------------------------------------------------------------------- addresses


def _refuse_scope(text: str) -> None:
    if "%" in text:
        raise ValueError(f"{short(text)}: scope ids ('%...') are not allowed")


def parse_address(text: str) -> IPAddress:
    """A plain IPv4 or IPv6 address (a gateway, a probe target); no prefix, no scope id."""
    _refuse_scope(text)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IP address {short(text)} (expected e.g. 198.18.0.1)") from None


def parse_interface_address(text: str, what: str) -> IPInterface:
    """An address with a prefix (a bare one means /32 or /128) that a host can own.

    ``what`` names the address in messages (``"address"``, ``"test address"``).
    """
    _refuse_scope(text)
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(
            f"invalid interface address {short(text)} "
            "(expected e.g. 198.18.0.10/24 or 2001:db8::10/64)"
        ) from None
    ip = iface.ip
    for bad, label in (
        (ip.is_unspecified, "unspecified"),
        (ip.is_multicast, "multicast"),
        (ip.is_loopback, "loopback"),
    ):
        if bad:
            raise ValueError(f"{what} {ip} is a {label} address")
    return iface


def parse_route_destination(text: str) -> IPNetwork | None:
    """A route's ``to``: a network without host bits, or None for ``default``."""
    _refuse_scope(text)
    if text == "default":
        return None
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"invalid route destination {short(text)} "
                "(expected 'default' or a network such as 10.0.0.0/8)"
            ) from None
        raise ValueError(
            f"route destination {text} has host bits set (did you mean {loose}?)"
        ) from None


def parse_socket_path(path: str) -> str:
    """``path`` if it can be the daemon's Unix socket: absolute, short enough, no NUL."""
    if not path.startswith("/"):
        raise ValueError(f"socket path {short(path)} must be absolute")
    if "\0" in path:
        raise ValueError("socket path must not contain NUL")
    if len(path.encode("utf-8")) > MAX_SOCKET_PATH_BYTES:
        raise ValueError(f"socket path is too long (at most {MAX_SOCKET_PATH_BYTES} bytes)")
    return path


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9469"`` or ``"[::1]:9469"`` -> ``(address, port)``.

    The address must be a literal IPv4 address, or an IPv6 one in brackets; the port
    1..65535. Anything else raises :class:`ValueError` saying what was expected.
    """
    usage = f"metrics listen {text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:9469 or [::1]:9469"
    if not isinstance(text, str):
        raise ValueError(usage)
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(usage)
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{usage} ({host!r} is not an IPv6 address)") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(usage)
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            hint = "put IPv6 addresses in brackets" if ":" in host else "not an IPv4 address"
            raise ValueError(f"{usage} ({host!r}: {hint})") from None
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{usage} (port {port_text!r} is not a number)")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{usage} (port {port} is not in 1..65535)")
    return str(address), port
