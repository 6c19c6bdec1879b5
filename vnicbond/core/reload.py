"""What a configuration reload changes: a pure comparison of the running configuration with
the file's new one, for :meth:`vnicbond.runtime.daemon.Daemon.reload` to carry out.

Owns the rule of which changes a reload may make (members, data addresses, probe targets and
test addresses, failure detection time, announcements, failback, standby, the MTU, log level)
and which need a restart (the set of groups, a group's mode, MAC or routes, the control
socket, metrics): those would recreate the TAP or the control socket under live traffic.
A changed MTU is set on the TAP as an ``ip link set`` would be (:mod:`vnicbond.core.mtu`).
No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

from vnicbond.config import Config, GroupConfig

#: Group keys a reload refuses to change.
RESTART_KEYS = ("mode", "mac", "routes")


def needs_restart(old: Config, new: Config) -> str | None:
    """The first change from ``old`` to ``new`` that needs a restart, named for the operator,
    or None if a reload can apply them all."""
    if [g.name for g in new.groups] != [g.name for g in old.groups]:
        return "the groups"
    if new.control != old.control:
        return "control.socket"
    if new.metrics != old.metrics:
        return "metrics"
    for a, b in zip(old.groups, new.groups, strict=True):
        for key in RESTART_KEYS:
            if getattr(a, key) != getattr(b, key):
                return f"{b.name}'s {key}"
    return None


@dataclass(frozen=True, slots=True)
class GroupChanges:
    """Members and data addresses a reload adds to and removes from one group, in the
    order the configuration lists them."""

    members_added: tuple[str, ...]
    members_removed: tuple[str, ...]
    addresses_added: tuple[IPv4Interface | IPv6Interface, ...]
    addresses_removed: tuple[IPv4Interface | IPv6Interface, ...]

    def summary(self) -> dict[str, list[str]]:
        """The reply to ``vnicbond reload``: names and addresses as text."""
        return {"members_added": list(self.members_added),
                "members_removed": list(self.members_removed),
                "addresses_added": sorted(str(a) for a in self.addresses_added),
                "addresses_removed": sorted(str(a) for a in self.addresses_removed)}


def group_changes(old: GroupConfig, new: GroupConfig) -> GroupChanges:
    """What changes in membership and data addresses from ``old`` to ``new``."""
    old_members = [m.name for m in old.members]
    new_members = [m.name for m in new.members]
    old_addrs = {str(a) for a in old.addresses}
    new_addrs = {str(a) for a in new.addresses}
    return GroupChanges(
        members_added=tuple(n for n in new_members if n not in old_members),
        members_removed=tuple(n for n in old_members if n not in new_members),
        addresses_added=tuple(a for a in new.addresses if str(a) not in old_addrs),
        addresses_removed=tuple(a for a in old.addresses if str(a) not in new_addrs))
