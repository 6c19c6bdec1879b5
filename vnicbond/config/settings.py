"""What a configuration is: frozen dataclasses with their documented defaults, and the
format's constants.

Owns the shape of a parsed configuration (:class:`Config` and what it holds), every default
value (a key left out of the file takes the field's default here, nowhere else) and the
lists of accepted words (log levels, modes, probe methods). It reads no YAML and validates
nothing: :mod:`vnicbond.config.schema` builds these objects only from checked values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from types import MappingProxyType

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

DEFAULT_SOCKET = "/run/vnicbond/vnicbond.sock"
"""The daemon's control socket when ``control.socket`` is not given."""

MAX_SOCKET_PATH_BYTES = 107
"""Longest accepted ``control.socket``: sizeof(sockaddr_un.sun_path) - 1 on Linux."""

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


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Where the daemon listens for client commands (the ``control`` mapping)."""

    socket: str = DEFAULT_SOCKET
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
class MacLearning:
    """Learning the MACs of guests behind the TAP (bridges, VMs, macvlans): the
    ``mac_learning`` mapping."""

    aging_ms: int = 300_000
    """How long a MAC not heard from stays learned, in ms (1 s to 1 h; 300 s, as a bridge)."""
    limit: int = 4096
    """The most MACs learned per group (16 to 65536); past it the least recently heard goes."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Probe-based failure detection (the ``probe`` mapping)."""

    method: str = "icmp"
    """``"icmp"`` (echo requests, IPv4 or IPv6) or ``"arp"`` (ARP requests, IPv4 only)."""
    targets: tuple[IPv4Address | IPv6Address, ...] = ()
    """Addresses to probe through each member; empty: the routes' gateways, else hosts found
    by all-hosts ping."""
    transitive: bool = True
    """Probe without test addresses (Solaris 11's transitive probing): from data and IPv6
    link-local addresses, and members with neither by link-layer frames to one that probes.
    False: a member without a test address is judged by its link alone."""


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
    addresses: tuple[IPv4Interface | IPv6Interface, ...] = ()
    """The data addresses the daemon puts on the TAP, with their prefixes; no duplicates.
    May be empty: every address the system puts on the TAP (DHCP, SLAAC, scripts) is a data
    address too."""
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
    mac_learning: MacLearning = field(default_factory=MacLearning)
    """Learning the MACs of guests behind the TAP."""
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
