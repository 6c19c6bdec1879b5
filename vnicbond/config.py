"""The vnicbond configuration file: YAML in, frozen dataclasses out.

This module owns the configuration format. :func:`load_config` / :func:`parse_config`
turn a YAML document into an immutable :class:`Config` (with :class:`GroupConfig`,
:class:`MemberConfig`, :class:`Route`, :class:`Announce`, :class:`Probe` and
:class:`ControlConfig` inside it), validating every value on the way. Every problem is
reported as a :class:`ConfigError` whose text is a single line of the form
``FILE:LINE: key.path: what is wrong``. :func:`check_system` adds read-only checks of a
parsed configuration against the running system (member interfaces exist and their MTU
is large enough).

It imports only the standard library and PyYAML, so client commands can use it and
still start fast.

YAML dialect: plain (unquoted) scalars are resolved with YAML 1.2 core-schema rules
rather than PyYAML's YAML 1.1 rules. Booleans are only ``true``/``false`` (``yes``,
``no``, ``on`` and ``off`` are plain strings, so using them where a boolean is
expected is an error); integers are decimal only; there are no sexagesimal numbers
(an unquoted ``02:00:00:00:00:10`` is the string it looks like) and no timestamps.
Duplicate keys in a mapping are errors. Merge keys (``<<``) and application tags are
not supported.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal
from difflib import get_close_matches
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
"""Accepted values of ``log_level``."""

MODES: tuple[str, ...] = ("active-backup", "load-spread")
"""Group modes that are implemented."""

FUTURE_MODES: tuple[str, ...] = ()
"""Group modes that are planned but not supported yet (rejected with a clear message)."""

PROBE_METHODS: tuple[str, ...] = ("icmp", "arp")
"""Accepted values of ``probe.method``."""

MIN_FAILURE_DETECTION_MS = 100
"""Smallest accepted ``failure_detection_time``, in milliseconds."""

_MAX_SOCKET_PATH_BYTES = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_IFNAMSIZ = 16  # Linux interface names are at most IFNAMSIZ - 1 bytes


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """A problem with the configuration, located in the file it came from.

    ``str(error)`` is one line: ``FILE:LINE: key.path: what is wrong``. The ``LINE``
    part is left out when the line is unknown (``line`` is None, e.g. an unreadable
    file), and the ``key.path`` part when the problem is not about one key (``key``
    is empty, e.g. a YAML syntax error).
    """

    path: str
    """The configuration file's path as given (``"<string>"`` for in-memory text)."""
    line: int | None
    """1-based line of the offending YAML node, or None when there is none."""
    key: str
    """Path of the offending key, e.g. ``groups[0].members[1].test_address``; may be empty."""
    message: str
    """What is wrong, for a human."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        super().__init__(path, line, key, message)
        self.path = path
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where, self.key, self.message] if self.key else [where, self.message]
        return _one_line(": ".join(parts))


_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    """Escape every character that ``str.splitlines`` would break a line on."""
    return _LINE_BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Where the daemon listens for client commands (the ``control`` mapping)."""

    socket: str = "/run/vnicbond/vnicbond.sock"
    """Absolute path of the daemon's Unix control socket."""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint (the ``metrics`` mapping); off unless ``listen`` is given."""

    listen: tuple[str, int] | None = None
    """Address and TCP port to serve ``/metrics`` on, from ``ADDRESS:PORT``."""


@dataclass(frozen=True, slots=True)
class Announce:
    """Gratuitous ARP / unsolicited neighbour advertisements sent after a failover."""

    count: int = 3
    """How many announcements to send for each address (0 disables them; at most 100)."""
    interval_ms: int = 100
    """Milliseconds between two announcements (1 to 10000)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Probe-based failure detection (the ``probe`` mapping)."""

    method: str = "icmp"
    """``"icmp"`` (echo requests, IPv4 or IPv6) or ``"arp"`` (ARP requests, IPv4 only)."""
    targets: tuple[IPv4Address | IPv6Address, ...] = ()
    """Addresses to probe through each member; empty means no probing is configured."""


@dataclass(frozen=True, slots=True)
class Route:
    """A route installed through the group's TAP device."""

    to: IPv4Network | IPv6Network
    """Destination network; ``default`` in the file becomes ``0.0.0.0/0`` or ``::/0``."""
    via: IPv4Address | IPv6Address | None = None
    """Gateway (same family as ``to``, on-link for a group address), or None for on-link."""


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """One physical interface bonded into a group."""

    name: str
    """The member's Linux interface name."""
    test_address: IPv4Interface | IPv6Interface | None = None
    """Optional per-member address used as the source of probes; never a data address."""
    standby: bool = False
    """A standby member carries traffic only when no active member is usable."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupConfig:
    """One bonding group: a TAP device whose traffic leaves through one of its members."""

    name: str
    """Name of the group's TAP device (a valid Linux interface name)."""
    mode: str = "active-backup"
    """Bonding mode: ``"active-backup"`` (one member carries traffic) or ``"load-spread"``."""
    mtu: int = 1500
    """MTU of the TAP device (68 to 65535); every member needs at least this MTU."""
    mac: bytes
    """The TAP device's 6-byte MAC address; unicast, never all-zero (see :func:`default_mac`)."""
    addresses: tuple[IPv4Interface | IPv6Interface, ...]
    """The group's data addresses with their prefixes; at least one, no duplicates."""
    routes: tuple[Route, ...] = ()
    """Routes installed through the TAP device."""
    failure_detection_time_ms: int = 1000
    """Time after which an unanswered member is declared failed, in ms (at least 100)."""
    failback: bool = True
    """Whether traffic moves back to a repaired active member from a standby one."""
    announce: Announce = field(default_factory=Announce)
    """Announcement settings used after a failover."""
    probe: Probe = field(default_factory=Probe)
    """Probe settings for failure detection."""
    members: tuple[MemberConfig, ...]
    """The bonded interfaces, in the file's order; at least one is not standby."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole, validated configuration file."""

    path: str
    """The file the configuration came from (``"<string>"`` for :func:`parse_config` text)."""
    control: ControlConfig = field(default_factory=ControlConfig)
    """Control socket settings."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """The Prometheus endpoint; off by default."""
    log_level: str = "info"
    """One of ``debug``, ``info``, ``warning`` or ``error``."""
    groups: tuple[GroupConfig, ...]
    """The bonding groups, in the file's order; at least one."""
    key_lines: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    """1-based source line of each key path's value (e.g. ``groups[0].members[1].name``).

    Filled in by the parser so later checks (:func:`check_system`) and the daemon can
    point at the file; empty for a hand-built Config. Not part of equality.
    """


def _default(cls: type, name: str) -> Any:
    """The default value of dataclass field ``name`` of ``cls``."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    raise LookupError(f"{cls.__name__}.{name} has no default")


# --------------------------------------------------------------------------- helpers


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


def _format_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms and ms % 1000 == 0 else f"{ms}ms"


def default_mac(name: str) -> bytes:
    """The MAC address a group gets when its ``mac`` key is absent.

    Derived from the group name with SHA-256, so it is stable across restarts and
    hosts; the first octet is forced to locally administered (bit 0x02 set) and
    unicast (bit 0x01 clear).
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6]


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00\\x00\\x00\\x00\\x10"`` -> ``"02:00:00:00:00:10"``."""
    return ":".join(f"{octet:02x}" for octet in mac)


_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _ifname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Linux interface name, or None if it is."""
    if not name:
        return "an interface name must not be empty"
    size = len(name.encode("utf-8"))
    if size >= _IFNAMSIZ:
        return (
            f"interface name {name!r} is too long ({size} bytes; "
            f"Linux allows at most {_IFNAMSIZ - 1})"
        )
    if name in (".", ".."):
        return f"{name!r} is not a valid interface name"
    for ch in name:
        if ch in "/:%" or ch.isspace() or not ch.isprintable():
            return (
                f"interface name {name!r} contains {ch!r}; names cannot contain '/', ':', "
                "'%', whitespace or control characters"
            )
    return None


def _read_sysfs_mtu(name: str) -> int | None:
    """MTU of interface ``name`` from /sys/class/net, or None if it does not exist."""
    if _ifname_problem(name) is not None:
        return None
    try:
        return int((Path("/sys/class/net") / name / "mtu").read_text().strip())
    except (OSError, ValueError):
        return None


def check_system(config: Config, mtu_of: Callable[[str], int | None] | None = None) -> None:
    """Read-only checks of ``config`` against the running system.

    Every member interface must exist and have an MTU of at least its group's ``mtu``.
    ``mtu_of(name)`` returns an interface's MTU or None if there is no such interface;
    by default it reads ``/sys/class/net/NAME/mtu``. The first problem is raised as a
    :class:`ConfigError` pointing at the member's ``name`` line.
    """
    get_mtu = mtu_of if mtu_of is not None else _read_sysfs_mtu
    for gi, group in enumerate(config.groups):
        for mi, member in enumerate(group.members):
            key = f"groups[{gi}].members[{mi}].name"
            line = config.key_lines.get(key)
            mtu = get_mtu(member.name)
            if mtu is None:
                raise ConfigError(
                    config.path, line, key, f"interface {member.name!r} does not exist"
                )
            if mtu < group.mtu:
                raise ConfigError(
                    config.path,
                    line,
                    key,
                    f"interface {member.name!r} has MTU {mtu}, below the group's mtu {group.mtu}",
                )


# --------------------------------------------------------------------------- YAML reading

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_INT = _TAG + "int"
_FLOAT = _TAG + "float"
_BOOL = _TAG + "bool"
_NULL = _TAG + "null"
_MAP = _TAG + "map"
_SEQ = _TAG + "seq"


class _CoreResolver(BaseResolver):
    """Resolve plain scalars with YAML 1.2 core-schema rules (see the module docstring)."""


_CoreResolver.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_CoreResolver.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(
    _NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Composer(Reader, Scanner, Parser, Composer, _CoreResolver):
    """Turns YAML text into a node tree (no Python objects) that keeps source marks."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreResolver.__init__(self)


def _compose(text: str, path: str) -> Node | None:
    """Parse ``text`` into a node tree; YAML errors become ConfigError."""
    composer: _Composer | None = None
    try:
        composer = _Composer(text)  # the reader checks the characters right away
        return composer.get_single_node()
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise ConfigError(path, line, "", f"invalid character {shown}: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            context = exc.context
            if exc.context_mark is not None and exc.context_mark.line + 1 != line:
                context += f" on line {exc.context_mark.line + 1}"
            joiner = ", " if exc.problem.startswith("but ") else ": "
            message = f"{context}{joiner}{exc.problem}"
        raise ConfigError(path, line, "", f"YAML syntax error: {message}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "", f"YAML error: {exc}") from None
    finally:
        if composer is not None:
            composer.dispose()


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _describe(node: Node) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag, value = node.tag, str(node.value)
    if tag == _NULL:
        return "null (an empty value)"
    if tag == _BOOL:
        return f"a boolean ({value})"
    if tag == _INT:
        return f"an integer ({value})"
    if tag == _FLOAT:
        return f"a number ({value})"
    if tag == _STR:
        return f"a string ({_short(value)})"
    return f"a value tagged {tag}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe_choices(choices: Sequence[str]) -> str:
    return ", ".join(choices)


_TOP_KEYS = ("control", "metrics", "log_level", "groups")
_CONTROL_KEYS = ("socket",)
_METRICS_KEYS = ("listen",)
_GROUP_KEYS = (
    "name",
    "mode",
    "mtu",
    "mac",
    "addresses",
    "routes",
    "failure_detection_time",
    "failback",
    "announce",
    "probe",
    "members",
)
_ROUTE_KEYS = ("to", "via")
_ANNOUNCE_KEYS = ("count", "interval")
_PROBE_KEYS = ("method", "targets")
_MEMBER_KEYS = ("name", "test_address", "standby")


class _Builder:
    """Walks the node tree of one document, validating it and building a Config."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[str, int] = {}
        # Interface name -> (key path, "group" or "member") of its first use.
        self.ifnames: dict[str, tuple[str, str]] = {}
        # Data or test address -> key path of its first use.
        self.addresses: dict[IPAddress, str] = {}

    # ---- generic node access

    def error(self, node: Node, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, _line(node), key, message)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return key if line is None else f"{key} on line {line}"

    def mapping(
        self, node: Node, key: str, valid: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Node]:
        """The value nodes of a mapping, by key; refuses unknown, duplicate and missing keys."""
        if not isinstance(node, MappingNode) or node.tag != _MAP:
            raise self.error(node, key, f"expected a mapping, got {_describe(node)}")
        values: dict[str, Node] = {}
        key_nodes: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                raise self.error(
                    key_node, key, f"keys must be strings, got {_describe(key_node)} as a key"
                )
            name = str(key_node.value)
            child = _join(key, name)
            if name in key_nodes:
                raise self.error(
                    key_node,
                    child,
                    f"duplicate key {name!r} (first given on line {_line(key_nodes[name])})",
                )
            if name not in valid:
                close = get_close_matches(name, valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(
                    key_node,
                    child,
                    f"unknown key {name!r} ({hint}valid keys: {_describe_choices(valid)})",
                )
            key_nodes[name] = key_node
            values[name] = value_node
            self.lines[child] = _line(value_node)
        for name in required:
            if name not in values:
                raise self.error(node, _join(key, name), "required key is missing")
        return values

    def sequence(self, node: Node, key: str, *, non_empty: str | None = None) -> list[Node]:
        """The item nodes of a list; ``non_empty`` is the error message for an empty one."""
        if not isinstance(node, SequenceNode) or node.tag != _SEQ:
            raise self.error(node, key, f"expected a list, got {_describe(node)}")
        if non_empty is not None and not node.value:
            raise self.error(node, key, non_empty)
        for index, item in enumerate(node.value):
            self.lines[f"{key}[{index}]"] = _line(item)
        return list(node.value)

    def string(self, node: Node, key: str) -> str:
        if isinstance(node, ScalarNode) and node.tag == _STR:
            return str(node.value)
        raise self.error(node, key, f"expected a string, got {_describe(node)}")

    def choice(self, node: Node, key: str, choices: Sequence[str], what: str) -> str:
        value = self.string(node, key)
        if value not in choices:
            raise self.error(
                node, key, f"unknown {what} {_short(value)} (valid: {_describe_choices(choices)})"
            )
        return value

    def boolean(self, node: Node, key: str) -> bool:
        if isinstance(node, ScalarNode) and node.tag == _BOOL:
            text = str(node.value).lower()
            if text in ("true", "false"):
                return text == "true"
        raise self.error(node, key, f"expected a boolean (true or false), got {_describe(node)}")

    def integer(self, node: Node, key: str, low: int, high: int) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            raise self.error(node, key, f"expected an integer, got {_describe(node)}")
        try:
            value = int(str(node.value), 10)
        except ValueError:
            raise self.error(node, key, f"invalid integer {_short(str(node.value))}") from None
        if not low <= value <= high:
            raise self.error(node, key, f"must be between {low} and {high}, got {value}")
        return value

    def duration(self, node: Node, key: str, low: int, high: int | None = None) -> int:
        """A duration in ms: an unquoted integer (ms) or a string like ``250ms`` / ``1.5s``."""
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _STR, _FLOAT):
            raise self.error(
                node,
                key,
                "expected a duration such as '250ms' or '1s' or an integer of milliseconds, "
                f"got {_describe(node)}",
            )
        raw = str(node.value)
        value: object = raw
        if node.tag == _INT:
            try:
                value = int(raw, 10)
            except ValueError:
                raise self.error(node, key, f"invalid integer {_short(raw)}") from None
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None
        if ms < low:
            raise self.error(node, key, f"must be at least {_format_ms(low)}, got {raw}")
        if high is not None and ms > high:
            raise self.error(node, key, f"must be at most {_format_ms(high)}, got {raw}")
        return ms

    def ifname(self, node: Node, key: str) -> str:
        name = self.string(node, key)
        problem = _ifname_problem(name)
        if problem is not None:
            raise self.error(node, key, problem)
        return name

    def mac(self, node: Node, key: str) -> bytes:
        # With the core-schema resolver an unquoted MAC is a plain string; take the raw
        # text of any plain scalar anyway, so no number-like spelling can get in the way.
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT, _FLOAT):
            raise self.error(node, key, f"expected a MAC address, got {_describe(node)}")
        text = str(node.value)
        if not _MAC_RE.fullmatch(text):
            raise self.error(
                node,
                key,
                f"invalid MAC address {_short(text)}: expected six hex octets separated "
                "by ':' such as 02:00:00:00:00:10",
            )
        mac = bytes.fromhex(text.replace(":", ""))
        if mac[0] & 0x01:
            raise self.error(
                node,
                key,
                f"MAC address {format_mac(mac)} is multicast; the group's MAC must be unicast "
                "(bit 0x01 of the first octet clear)",
            )
        if not any(mac):
            raise self.error(node, key, "MAC address must not be all zeros")
        return mac

    def ip_text(self, node: Node, key: str, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            raise self.error(node, key, f"expected {what}, got {_describe(node)}")
        text = str(node.value)
        if "%" in text:
            raise self.error(node, key, f"{_short(text)}: scope ids ('%...') are not allowed")
        return text

    def address(self, node: Node, key: str, what: str = "an IP address") -> IPAddress:
        text = self.ip_text(node, key, what)
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise self.error(
                node, key, f"invalid IP address {_short(text)} (expected e.g. 198.18.0.1)"
            ) from None

    def interface_address(self, node: Node, key: str, what: str) -> IPInterface:
        """An interface address with a prefix (a bare address means /32 or /128)."""
        text = self.ip_text(node, key, "an address with a prefix such as 198.18.0.10/24")
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise self.error(
                node,
                key,
                f"invalid interface address {_short(text)} "
                "(expected e.g. 198.18.0.10/24 or 2001:db8::10/64)",
            ) from None
        ip = iface.ip
        for bad, label in (
            (ip.is_unspecified, "unspecified"),
            (ip.is_multicast, "multicast"),
            (ip.is_loopback, "loopback"),
        ):
            if bad:
                raise self.error(node, key, f"{what} {ip} is a {label} address")
        previous = self.addresses.get(ip)
        if previous is not None:
            raise self.error(node, key, f"{what} {ip} is already used at {self.where(previous)}")
        self.addresses[ip] = key
        return iface

    def claim_ifname(self, name: str, node: Node, key: str, kind: str, group_key: str) -> None:
        """Refuse an interface name already used by a group or a member anywhere."""
        previous = self.ifnames.get(name)
        if previous is not None:
            prev_key, prev_kind = previous
            if kind == prev_kind == "group":
                message = f"duplicate group name {name!r} (also at {self.where(prev_key)})"
            elif kind == "member" and prev_key == f"{group_key}.name":
                message = f"member name {name!r} must differ from the group name"
            elif kind == prev_kind == "member":
                message = f"interface {name!r} is already a member at {self.where(prev_key)}"
            else:
                message = (
                    f"interface {name!r} is already used as a {prev_kind} name at "
                    f"{self.where(prev_key)}"
                )
            raise self.error(node, key, message)
        self.ifnames[name] = (key, kind)

    # ---- the document

    def config(self, root: Node | None) -> Config:
        if root is None:
            raise ConfigError(
                self.path, 1, "", "the configuration is empty; expected a mapping with 'groups'"
            )
        if not isinstance(root, MappingNode):
            raise self.error(
                root, "", f"the top-level document must be a mapping, got {_describe(root)}"
            )
        top = self.mapping(root, "", _TOP_KEYS, required=("groups",))
        kwargs: dict[str, Any] = {}
        if "control" in top:
            kwargs["control"] = self.control(top["control"], "control")
        if "metrics" in top:
            kwargs["metrics"] = self.metrics(top["metrics"], "metrics")
        if "log_level" in top:
            kwargs["log_level"] = self.choice(
                top["log_level"], "log_level", LOG_LEVELS, "log level"
            )
        items = self.sequence(top["groups"], "groups", non_empty="at least one group is required")
        groups = tuple(self.group(item, f"groups[{i}]") for i, item in enumerate(items))
        return Config(
            path=self.path, groups=groups, key_lines=MappingProxyType(dict(self.lines)), **kwargs
        )

    def control(self, node: Node, key: str) -> ControlConfig:
        values = self.mapping(node, key, _CONTROL_KEYS)
        kwargs: dict[str, Any] = {}
        if "socket" in values:
            socket_key = f"{key}.socket"
            socket = self.string(values["socket"], socket_key)
            if not socket.startswith("/"):
                raise self.error(
                    values["socket"], socket_key, f"socket path {_short(socket)} must be absolute"
                )
            if "\0" in socket or len(socket.encode("utf-8")) > _MAX_SOCKET_PATH_BYTES:
                raise self.error(
                    values["socket"],
                    socket_key,
                    f"socket path is too long (at most {_MAX_SOCKET_PATH_BYTES} bytes)"
                    if "\0" not in socket
                    else "socket path must not contain NUL",
                )
            kwargs["socket"] = socket
        return ControlConfig(**kwargs)

    def metrics(self, node: Node, key: str) -> MetricsConfig:
        values = self.mapping(node, key, _METRICS_KEYS)
        if "listen" not in values:
            return MetricsConfig()
        text = self.string(values["listen"], f"{key}.listen")
        try:
            return MetricsConfig(listen=parse_listen(text))
        except ValueError as e:
            raise self.error(values["listen"], f"{key}.listen", str(e)) from None

    def group(self, node: Node, key: str) -> GroupConfig:
        values = self.mapping(node, key, _GROUP_KEYS, required=("name", "addresses", "members"))
        sub = {name: f"{key}.{name}" for name in _GROUP_KEYS}
        name = self.ifname(values["name"], sub["name"])
        self.claim_ifname(name, values["name"], sub["name"], "group", key)
        kwargs: dict[str, Any] = {"name": name}

        if "mode" in values:
            kwargs["mode"] = self.mode(values["mode"], sub["mode"])
        if "mtu" in values:
            kwargs["mtu"] = self.integer(values["mtu"], sub["mtu"], 68, 65535)
        if "mac" in values:
            kwargs["mac"] = self.mac(values["mac"], sub["mac"])
        else:
            kwargs["mac"] = default_mac(name)

        addresses = tuple(
            self.interface_address(item, f"{sub['addresses']}[{i}]", "address")
            for i, item in enumerate(
                self.sequence(
                    values["addresses"],
                    sub["addresses"],
                    non_empty="at least one address is required",
                )
            )
        )
        kwargs["addresses"] = addresses

        if "routes" in values:
            routes: list[Route] = []
            for i, item in enumerate(self.sequence(values["routes"], sub["routes"])):
                routes.append(self.route(item, f"{sub['routes']}[{i}]", addresses, routes))
            kwargs["routes"] = tuple(routes)
        if "failure_detection_time" in values:
            kwargs["failure_detection_time_ms"] = self.duration(
                values["failure_detection_time"],
                sub["failure_detection_time"],
                MIN_FAILURE_DETECTION_MS,
            )
        if "failback" in values:
            kwargs["failback"] = self.boolean(values["failback"], sub["failback"])
        if "announce" in values:
            kwargs["announce"] = self.announce(values["announce"], sub["announce"])
        if "probe" in values:
            kwargs["probe"] = self.probe(values["probe"], sub["probe"])

        members = tuple(
            self.member(item, f"{sub['members']}[{i}]", key)
            for i, item in enumerate(
                self.sequence(
                    values["members"], sub["members"], non_empty="at least one member is required"
                )
            )
        )
        if all(member.standby for member in members):
            raise self.error(
                values["members"],
                sub["members"],
                "at least one member must not be standby (all members are standby)",
            )
        kwargs["members"] = members
        return GroupConfig(**kwargs)

    def mode(self, node: Node, key: str) -> str:
        mode = self.string(node, key)
        if mode in FUTURE_MODES:
            raise self.error(
                node,
                key,
                f"mode {mode!r} is not supported yet (it arrives in a later version); "
                f"use {MODES[0]!r}",
            )
        if mode not in MODES:
            raise self.error(
                node,
                key,
                f"unknown mode {_short(mode)} (valid modes: {_describe_choices(MODES)})",
            )
        return mode

    def route(
        self,
        node: Node,
        key: str,
        addresses: Sequence[IPInterface],
        earlier: Sequence[Route],
    ) -> Route:
        values = self.mapping(node, key, _ROUTE_KEYS, required=("to",))
        to_key, via_key = f"{key}.to", f"{key}.via"
        to_node = values["to"]
        to_text = self.ip_text(to_node, to_key, "'default' or a network such as 10.0.0.0/8")
        to: IPNetwork | None = None
        if to_text != "default":
            try:
                to = ipaddress.ip_network(to_text)
            except ValueError:
                try:
                    loose = ipaddress.ip_network(to_text, strict=False)
                except ValueError:
                    raise self.error(
                        to_node,
                        to_key,
                        f"invalid route destination {_short(to_text)} "
                        "(expected 'default' or a network such as 10.0.0.0/8)",
                    ) from None
                raise self.error(
                    to_node,
                    to_key,
                    f"route destination {to_text} has host bits set (did you mean {loose}?)",
                ) from None

        via: IPAddress | None = None
        if "via" in values:
            via_node = values["via"]
            via = self.address(via_node, via_key, "a gateway IP address")
            if to is not None and via.version != to.version:
                raise self.error(
                    via_node,
                    via_key,
                    f"gateway {via} is IPv{via.version} but the destination {to} "
                    f"is IPv{to.version}",
                )
            if via.is_unspecified or via.is_multicast or via.is_loopback:
                raise self.error(via_node, via_key, f"{via} cannot be a gateway")
            same_family = [a for a in addresses if a.version == via.version]
            if any(a.ip == via for a in same_family):
                raise self.error(
                    via_node, via_key, f"gateway {via} is one of the group's own addresses"
                )
            link_local_v6 = via.version == 6 and via.is_link_local
            if not link_local_v6 and not any(via in a.network for a in same_family):
                own = ", ".join(str(a) for a in addresses)
                raise self.error(
                    via_node,
                    via_key,
                    f"gateway {via} is not on-link for any of the group's addresses ({own})",
                )
        if to is None:
            if via is None:
                raise self.error(
                    node,
                    via_key,
                    "a default route needs 'via' (the gateway; it also picks IPv4 or IPv6)",
                )
            to = ipaddress.ip_network("0.0.0.0/0" if via.version == 4 else "::/0")
        for index, route in enumerate(earlier):
            if route.to == to:
                previous = key.rsplit("[", 1)[0] + f"[{index}]"
                raise self.error(
                    to_node, to_key, f"duplicate route to {to} (also at {self.where(previous)})"
                )
        return Route(to=to, via=via)

    def announce(self, node: Node, key: str) -> Announce:
        values = self.mapping(node, key, _ANNOUNCE_KEYS)
        kwargs: dict[str, Any] = {}
        if "count" in values:
            kwargs["count"] = self.integer(values["count"], f"{key}.count", 0, 100)
        if "interval" in values:
            kwargs["interval_ms"] = self.duration(values["interval"], f"{key}.interval", 1, 10_000)
        return Announce(**kwargs)

    def probe(self, node: Node, key: str) -> Probe:
        values = self.mapping(node, key, _PROBE_KEYS)
        method: str = _default(Probe, "method")
        if "method" in values:
            method = self.choice(values["method"], f"{key}.method", PROBE_METHODS, "probe method")
        targets: list[IPAddress] = []
        if "targets" in values:
            seen: dict[IPAddress, str] = {}
            for i, item in enumerate(self.sequence(values["targets"], f"{key}.targets")):
                item_key = f"{key}.targets[{i}]"
                target = self.address(item, item_key, "a target IP address")
                if target in seen:
                    where = self.where(seen[target])
                    raise self.error(item, item_key, f"duplicate target {target} (also at {where})")
                if target.is_unspecified:
                    raise self.error(item, item_key, f"{target} cannot be a probe target")
                if method == "arp" and target.version != 4:
                    raise self.error(
                        item,
                        item_key,
                        f"probe method 'arp' needs IPv4 targets, {target} is IPv6 "
                        "(use method icmp)",
                    )
                seen[target] = item_key
                targets.append(target)
        return Probe(method=method, targets=tuple(targets))

    def member(self, node: Node, key: str, group_key: str) -> MemberConfig:
        values = self.mapping(node, key, _MEMBER_KEYS, required=("name",))
        name_key = f"{key}.name"
        name = self.ifname(values["name"], name_key)
        self.claim_ifname(name, values["name"], name_key, "member", group_key)
        kwargs: dict[str, Any] = {"name": name}
        if "test_address" in values:
            kwargs["test_address"] = self.interface_address(
                values["test_address"], f"{key}.test_address", "test address"
            )
        if "standby" in values:
            kwargs["standby"] = self.boolean(values["standby"], f"{key}.standby")
        return MemberConfig(**kwargs)


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse and validate configuration ``text``; ``path`` is only used in messages.

    Raises :class:`ConfigError` for YAML syntax errors and invalid configurations.
    """
    return _Builder(path).config(_compose(text, path))


def load_config(path: str) -> Config:
    """Read, parse and validate the configuration file at ``path``.

    Raises :class:`ConfigError`, also when the file is missing, unreadable or not UTF-8.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(path, None, "", f"cannot read the configuration file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, line, "", f"the file is not valid UTF-8 ({exc.reason})") from None
    return parse_config(text, path)


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
