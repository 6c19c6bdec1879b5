"""Which targets each member probes, and from which address: the one home of those rules.

**Targets.** As in.mpathd, per address family a group's probe targets are the configured ones
(``probe.targets``: then only those, of either family), or else its on-link routers: the
gateways of the routes through the TAP in the kernel's main table (a default route from DHCP
or router advertisements, the configured routes, any added by hand), followed as they change
as in.mpathd follows the routing socket; until the kernel's table has been read, the
configured routes' gateways stand for them. A family with neither finds its targets by
all-hosts ping (:mod:`vnicbond.core.discovery`): mode ``multicast``.

**Sources.** A member probes a family's targets from (first that applies):

1. its **test address** of that family (it answers ARP/NS for it: the daemon owns it);
2. with ``probe.transitive`` (Solaris 11's probing without test addresses), for IPv6 its own
   **link-local** address (modified EUI-64 of its NIC's MAC, sent with that MAC; the daemon
   answers neighbour solicitations for it), as in.mpathd probes IPv6 by default;
3. for IPv4, a **data address** it carries: in active-backup the active member's, sent with
   the group's MAC; in load spreading one hosted on it, sent with its own MAC. The host's
   stack answers ARP for it, not the daemon. While no member carries one (every member failed:
   a group failure), one member at a time (the *proxy*, which the engine rotates) probes from
   the group's first IPv4 data address on the group's behalf.

ARP probes are IPv4 only. A member with no source for any family that has targets is
**transitive**: it probes, with link-layer frames (:mod:`vnicbond.wire.transitive`), every
member that probes from an IPv4 address, named ``member:NAME``; a member with no source and
no such member to probe does not probe (link state alone). Without ``probe.transitive`` only
test addresses probe, as before. Pure: configuration, targets, the election and MACs in; each
member's :class:`MemberProbe` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_interface

from vnicbond.config import GroupConfig
from vnicbond.wire.mac import link_local

IPAddress = IPv4Address | IPv6Address

#: How a member's targets are chosen, as status reports it (``ipmpstat -t``'s MODE).
ROUTES, CONFIGURED, MULTICAST, TRANSITIVE, DISABLED = (
    "routes", "configured", "multicast", "transitive", "disabled")
#: Where a member probes from (status's ``probe_from`` lists the addresses).
TEST, DATA, LINK_LOCAL = "test", "data", "link-local"
#: A detector target naming a member probed with link-layer frames: ``member:m0``.
MEMBER_PREFIX = "member:"


@lru_cache(maxsize=1024)
def _interface(address: str) -> tuple[int, IPAddress]:
    """A data address (``198.18.0.10/24``) parsed: its version and address (cached: the plan
    is made again after inputs that change it)."""
    parsed = ip_interface(address)
    return parsed.version, parsed.ip


def version(address: str) -> int:
    """The IP version of a data address such as ``198.18.0.10/24``."""
    return _interface(address)[0]


@dataclass(frozen=True, slots=True)
class Source:
    """An address a member probes from, the MAC it sends with, and whether the daemon
    answers ARP/NS questions for it (a test or link-local address; not a data address)."""

    ip: IPAddress
    mac: bytes
    kind: str

    @property
    def answers(self) -> bool:
        """Whether the daemon (not the host's stack) answers ARP/NS for it."""
        return self.kind != DATA


@dataclass(frozen=True, slots=True)
class MemberProbe:
    """How one member probes: its sources, its detector targets (IPs, then ``member:NAME``),
    and the mode status shows."""

    sources: tuple[Source, ...] = ()
    targets: tuple[str, ...] = ()
    mode: str = DISABLED

    def source(self, version: int) -> Source | None:
        """The source for targets of IP ``version``, if it has one."""
        return next((s for s in self.sources if s.ip.version == version), None)


@dataclass(frozen=True, slots=True)
class GroupTargets:
    """A group's IP targets per family, and how each family's were chosen."""

    v4: tuple[IPAddress, ...] = ()
    v6: tuple[IPAddress, ...] = ()
    mode4: str = DISABLED
    mode6: str = DISABLED

    def of(self, version: int) -> tuple[tuple[IPAddress, ...], str]:
        """The targets of IP ``version`` and their mode."""
        return (self.v4, self.mode4) if version == 4 else (self.v6, self.mode6)


def probe_targets(cfg: GroupConfig, gateways: Sequence[IPAddress] | None = None
                  ) -> tuple[IPAddress, ...]:
    """The configured targets, or else the group's on-link routers: ``gateways``, the
    kernel's, or while they are unknown (None) the configured routes' gateways."""
    if cfg.probe.targets:
        return tuple(cfg.probe.targets)
    if gateways is None:
        gateways = [r.via for r in cfg.routes if r.via is not None]
    return tuple(dict.fromkeys(gateways))


def group_targets(cfg: GroupConfig, gateways: Sequence[IPAddress] | None,
                  found: Mapping[int, Sequence[IPAddress]], families: set[int]
                  ) -> GroupTargets:
    """Per family: the configured targets, else the routes' gateways, else those ``found``
    by all-hosts ping, for the ``families`` the group has an address of (a data or test
    address: a group with no IPv6 address does not go looking for IPv6 hosts)."""
    if cfg.probe.targets:
        v4 = tuple(t for t in cfg.probe.targets if t.version == 4)
        v6 = tuple(t for t in cfg.probe.targets if t.version == 6)
        return GroupTargets(v4, v6, CONFIGURED if v4 else DISABLED,
                            CONFIGURED if v6 else DISABLED)
    routers = probe_targets(cfg, gateways)
    modes, lists = [], []
    for version in (4, 6):
        mine = tuple(t for t in routers if t.version == version)
        if mine:
            modes.append(ROUTES)
        elif version not in families or (cfg.probe.method == "arp" and version == 6):
            modes.append(DISABLED)
        else:
            mine = tuple(found.get(version, ()))
            modes.append(MULTICAST)
        lists.append(mine)
    return GroupTargets(lists[0], lists[1], modes[0], modes[1])


def data_sources(cfg: GroupConfig, hosts: Mapping[str, str | None], macs: Mapping[str, bytes],
                 proxy: str | None) -> dict[str, Source]:
    """Per member, the IPv4 data address it probes from, if any: the first IPv4 address it
    carries (``hosts``: address -> member, as the election has them), sent with the MAC that
    address answers to there; while none is carried, ``proxy``'s, from the first IPv4 data
    address. Only with ``probe.transitive``."""
    if not cfg.probe.transitive:
        return {}
    spread = cfg.mode == "load-spread"
    v4 = [(a, m) for a, m in hosts.items() if version(a) == 4]
    result: dict[str, Source] = {}
    for address, member in v4:
        if member is not None and member not in result and member in macs:
            mac = macs[member] if spread else cfg.mac
            result[member] = Source(_interface(address)[1], mac, DATA)
    if not result and proxy is not None and v4 and proxy in macs:
        mac = macs[proxy] if spread else cfg.mac
        result[proxy] = Source(_interface(v4[0][0])[1], mac, DATA)
    return result


def plan(cfg: GroupConfig, targets: GroupTargets, macs: Mapping[str, bytes],
         data: Mapping[str, Source]) -> dict[str, MemberProbe]:
    """Per member, in configuration order, how it probes (see the module's rules).
    ``data``: :func:`data_sources`. A member whose MAC is not known yet (its NIC was never
    opened) probes nothing."""
    transitive = cfg.probe.transitive
    own: dict[str, tuple[Source, ...]] = {}
    for m in cfg.members:
        mac = macs.get(m.name)
        sources: list[Source] = []
        for version in (4, 6):
            family_targets, _mode = targets.of(version)
            if not family_targets and _mode != MULTICAST:
                continue
            test = m.test_address
            if test is not None and test.version == version:
                if not (cfg.probe.method == "arp" and version == 6):
                    sources.append(Source(test.ip, mac or b"", TEST))
            elif not transitive or mac is None:
                continue
            elif version == 6 and cfg.probe.method == "icmp":
                sources.append(Source(link_local(mac), mac, LINK_LOCAL))
            elif version == 4 and m.name in data:
                sources.append(data[m.name])
        own[m.name] = tuple(s for s in sources if s.mac)
    probers = [name for name, sources in own.items()
               if targets.v4 and any(s.ip.version == 4 for s in sources)]
    result = {}
    for m in cfg.members:
        sources = own[m.name]
        ips: list[str] = []
        mode = DISABLED
        for s in sources:
            family_targets, family_mode = targets.of(s.ip.version)
            ips.extend(str(t) for t in family_targets)
            if mode == DISABLED:
                mode = family_mode
        if sources:
            result[m.name] = MemberProbe(sources, tuple(ips), mode)
            continue
        others = [p for p in probers if p != m.name]
        if transitive and others and m.name in macs:
            result[m.name] = MemberProbe((), tuple(MEMBER_PREFIX + p for p in others), TRANSITIVE)
        else:
            result[m.name] = MemberProbe()
    return result
