"""Which member hosts each data address when several members are active (load spreading).

IPMP binds each data address to one active interface, spreading them so inbound load spreads
too. Pure functions, no state: the caller keeps the current placement and passes it back. The
same rules place the MACs of guests behind the TAP (:mod:`vnicbond.core.guests`), so the
functions take any hashable items, not only addresses.

Rules:

* **Home**: with every non-standby member active, address i goes to the member with the fewest
  addresses so far (ties: configuration order). That is where failback returns it. When
  addresses come and go at run time (the system's own, a DHCP lease), the others keep their
  homes and a new one's home is the member with the fewest homes.
* **Sticky**: an address whose member is still active stays there; only the addresses of a
  member that left move, each to the active member with the fewest (ties: preference order).
* **Failback**: with ``failback`` an address whose home member is active again goes home.
* **Even**: then, while one active member hosts two or more addresses more than another, the
  fullest gives its last address to the emptiest (as IPMP does when an interface becomes
  active), so a member that joins gets its share.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def fewest(counts: dict[str, int], order: Sequence[str]) -> str:
    """The member of ``order`` holding the fewest (ties: the first in ``order``)."""
    return min(order, key=lambda m: (counts[m], order.index(m)))


def home_placement(addresses: Sequence[K], members: Sequence[str],
                   keep: dict[K, str] | None = None) -> dict[K, str]:
    """Each address's home among ``members`` (the non-standby members, in preference order).
    With ``keep`` (the homes so far), an address keeps its home there if that is one of
    ``members``; the others are placed after them."""
    if not members:
        return {}
    counts = dict.fromkeys(members, 0)
    home = {}
    for address in addresses:
        kept = keep.get(address) if keep else None
        if kept in counts:
            assert kept is not None
            home[address] = kept
            counts[kept] += 1
    for address in addresses:
        if address not in home:
            member = fewest(counts, members)
            home[address] = member
            counts[member] += 1
    return {a: home[a] for a in addresses}


def place(addresses: Sequence[K], active: Sequence[str], current: dict[K, str | None],
          home: dict[K, str], failback: bool) -> dict[K, str | None]:
    """The new placement for ``active`` members (in preference order); None: no member."""
    if not active:
        return dict.fromkeys(addresses)
    active_set = set(active)
    result: dict[K, str | None] = {}
    counts = dict.fromkeys(active, 0)
    pending = []
    for address in addresses:
        host = current.get(address)
        if failback and home.get(address) in active_set:
            host = home[address]
        if host in active_set:
            assert host is not None
            result[address] = host
            counts[host] += 1
        else:
            pending.append(address)
    for address in pending:
        member = fewest(counts, active)
        result[address] = member
        counts[member] += 1
    # Each member's addresses by their position, so the fullest gives its last one in O(log n).
    held: dict[str, list[int]] = {m: [] for m in active}
    for i, address in enumerate(addresses):
        held[result[address]].append(i)  # type: ignore[index]
    while True:
        fullest = max(active, key=lambda m: (counts[m], -active.index(m)))
        emptiest = fewest(counts, active)
        if counts[fullest] - counts[emptiest] <= 1:
            break
        i = held[fullest].pop()
        bisect.insort(held[emptiest], i)
        result[addresses[i]] = emptiest
        counts[fullest] -= 1
        counts[emptiest] += 1
    return {a: result[a] for a in addresses}
