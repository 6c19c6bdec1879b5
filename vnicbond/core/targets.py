"""Which targets each member probes: the one home of that rule.

As in.mpathd, a group's probe targets are the configured ones, or else its on-link routers
(the gateways of its routes). A member probes only from a test address, and only the targets
of that address's family; ARP probes are IPv4 only, so a member with an IPv6 test address
does not probe when the method is ``arp``. Pure: configuration in, targets out.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from vnicbond.config import GroupConfig

IPAddress = IPv4Address | IPv6Address


def probe_targets(cfg: GroupConfig) -> tuple[IPAddress, ...]:
    """The configured targets, or else the group's on-link routers (its routes' gateways)."""
    if cfg.probe.targets:
        return tuple(cfg.probe.targets)
    return tuple(dict.fromkeys(r.via for r in cfg.routes if r.via is not None))


def member_targets(cfg: GroupConfig) -> dict[str, tuple[IPAddress, ...]]:
    """Per member, in configuration order, the targets it probes (empty: it does not)."""
    targets = probe_targets(cfg)
    result = {}
    for m in cfg.members:
        test = m.test_address
        usable = test is not None and not (cfg.probe.method == "arp" and test.version == 6)
        result[m.name] = tuple(t for t in targets if usable and t.version == test.version)
    return result
