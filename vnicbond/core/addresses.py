"""Which addresses are a group's data addresses, and where each came from: the one home of
that rule.

The daemon puts the configured addresses on the TAP at start; the system may put others
there (a DHCP client, SLAAC, ``ip addr add`` from a script) and take any away. Every address
on the TAP is a data address, announced on a move and placed on a member in load spreading,
whoever put it there. Pure: the kernel's view of the TAP's addresses goes in (the runtime
follows it over netlink), the data addresses come out; no I/O, no clock.

Rules:

* Until the TAP's addresses have been read, the data addresses are the configured ones.
* A configured address is a data address from the moment it is configured (also while
  IPv6 duplicate address detection runs on it), until it is seen to leave the TAP. One
  removed by hand is not put back: the daemon does not fight the administrator; a restart
  adds it again. Put back by hand, it is a configured address again.
* Any other address on the TAP is a data address (source ``system``) once it is usable: not
  tentative (IPv6 duplicate address detection still running, or failed).
* IPv6 link-local addresses (fe80::/10) are never data addresses. They belong to the link,
  derived from the TAP's MAC: in active-backup that MAC is the group's on every member, so
  nothing about them changes on a failover; in load spreading they leave by the first active
  member. Solaris IPMP likewise keeps link-local addresses off the IPMP interface's data
  addresses. Leaving them out keeps the addresses, events and counters an operator sees to
  the ones somebody configured.
* Order: configured addresses in the configuration's order, then the others in the order
  they appeared (placement in load spreading depends on it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_interface

CONFIG = "config"
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class TapAddress:
    """An address on the TAP as the kernel reports it: ``address`` with its prefix
    (``198.18.0.10/24``), and whether it is still tentative (or failed duplicate address
    detection)."""

    address: str
    tentative: bool = False


@dataclass(frozen=True, slots=True)
class AddressChanges:
    """What one reading of the TAP's addresses changed: data addresses added and removed,
    and, among the removed ones, configured addresses somebody took off the TAP."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    removed_by_hand: tuple[str, ...] = ()


def is_link_local_v6(address: str) -> bool:
    """Whether ``address`` (with or without a prefix) is an IPv6 link-local address."""
    iface = ip_interface(address)
    return iface.version == 6 and iface.ip.is_link_local


class DataAddresses:
    """A group's data addresses and their sources (see the module's rules)."""

    def __init__(self, configured: Sequence[str]) -> None:
        self.configured: tuple[str, ...] = tuple(configured)
        #: Configured addresses seen leaving the TAP (not put back).
        self.gone: set[str] = set()
        #: Other usable addresses on the TAP, in the order they appeared.
        self.system: list[str] = []
        #: Every address on the TAP at the last reading (None: not read yet).
        self.on_tap: set[str] | None = None

    def data(self) -> list[str]:
        """The data addresses, in order."""
        return [a for a in self.configured if a not in self.gone] + self.system

    def source(self, address: str) -> str:
        """Where a data address came from: ``config`` or ``system``."""
        return CONFIG if address in self.configured else SYSTEM

    def read(self, addresses: Iterable[TapAddress]) -> AddressChanges:
        """The kernel's whole view of the TAP's addresses now: what it changes."""
        before = self.data()
        listed = list(addresses)
        present = {a.address for a in listed}
        previous = self.on_tap
        by_hand = []
        for a in self.configured:
            if a in present:
                self.gone.discard(a)
            elif previous is not None and a in previous and a not in self.gone:
                self.gone.add(a)
                by_hand.append(a)
        usable = [a.address for a in listed
                  if not a.tentative and a.address not in self.configured
                  and not is_link_local_v6(a.address)]
        kept = [a for a in self.system if a in usable]
        self.system = kept + [a for a in dict.fromkeys(usable) if a not in kept]
        self.on_tap = present
        after = self.data()
        return AddressChanges(
            added=tuple(a for a in after if a not in before),
            removed=tuple(a for a in before if a not in after),
            removed_by_hand=tuple(by_hand))

    def reconfigure(self, configured: Sequence[str]) -> None:
        """A reload's configured addresses (the runtime has added and removed them on the TAP
        already; the kernel's report of it may not have been read yet). An address that
        becomes configured stops being a system one; one no longer configured counts as a
        system address while it stays on the TAP, at the next reading."""
        self.configured = tuple(configured)
        self.gone &= set(self.configured)
        self.system = [a for a in self.system if a not in self.configured]
