"""Which targets each member probes: the one home of that rule.

As in.mpathd, a group's probe targets are the configured ones, or else its on-link routers:
the gateways of the routes through the TAP in the kernel's main table (a default route from
DHCP or router advertisements, the configured routes, any added by hand), followed as they
change as in.mpathd follows the routing socket. Until the kernel's table has been read, the
configured routes' gateways stand for them. A member probes only from a test address, and
only the targets of that address's family; ARP probes are IPv4 only, so a member with an IPv6
test address does not probe when the method is ``arp``. Pure: configuration and the kernel's
gateways in, targets out.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from vnicbond.config import GroupConfig, MemberConfig

IPAddress = IPv4Address | IPv6Address

#: How a member's targets are chosen, as status reports it (``ipmpstat -t``'s MODE).
ROUTES, CONFIGURED, DISABLED = "routes", "configured", "disabled"


def probe_targets(cfg: GroupConfig, gateways: Sequence[IPAddress] | None = None
                  ) -> tuple[IPAddress, ...]:
    """The configured targets, or else the group's on-link routers: ``gateways``, the
    kernel's, or while they are unknown (None) the configured routes' gateways."""
    if cfg.probe.targets:
        return tuple(cfg.probe.targets)
    if gateways is None:
        gateways = [r.via for r in cfg.routes if r.via is not None]
    return tuple(dict.fromkeys(gateways))


def _can_probe(cfg: GroupConfig, member: MemberConfig) -> bool:
    test = member.test_address
    return test is not None and not (cfg.probe.method == "arp" and test.version == 6)


def member_targets(cfg: GroupConfig, gateways: Sequence[IPAddress] | None = None
                   ) -> dict[str, tuple[IPAddress, ...]]:
    """Per member, in configuration order, the targets it probes (empty: it does not)."""
    targets = probe_targets(cfg, gateways)
    result = {}
    for m in cfg.members:
        version = m.test_address.version if m.test_address else None
        result[m.name] = tuple(t for t in targets
                               if _can_probe(cfg, m) and t.version == version)
    return result


def target_mode(cfg: GroupConfig, member: str) -> str:
    """How ``member``'s targets are chosen: ``configured``, ``routes`` (the routes'
    gateways, whatever they are now), or ``disabled`` (it cannot probe: no test address, or
    an IPv6 one with ARP probes)."""
    m = next(m for m in cfg.members if m.name == member)
    if not _can_probe(cfg, m):
        return DISABLED
    return CONFIGURED if cfg.probe.targets else ROUTES
