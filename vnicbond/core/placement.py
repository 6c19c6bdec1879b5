"""Which member hosts each data address when several members are active (load spreading).

IPMP binds each data address to one active interface, spreading them so inbound load spreads
too. Pure functions, no state: the caller keeps the current placement and passes it back.

Rules:

* **Home**: with every non-standby member active, address i goes to the member with the fewest
  addresses so far (ties: configuration order). That is where failback returns it.
* **Sticky**: an address whose member is still active stays there; only the addresses of a
  member that left move, each to the active member with the fewest (ties: preference order).
* **Failback**: with ``failback`` an address whose home member is active again goes home.
* **Even**: then, while one active member hosts two or more addresses more than another, the
  fullest gives its last address to the emptiest (as IPMP does when an interface becomes
  active), so a member that joins gets its share.
"""

from __future__ import annotations

from collections.abc import Sequence


def _fewest(counts: dict[str, int], order: Sequence[str]) -> str:
    return min(order, key=lambda m: (counts[m], order.index(m)))


def home_placement(addresses: Sequence[str], members: Sequence[str]) -> dict[str, str]:
    """Each address's home among ``members`` (the non-standby members, in preference order)."""
    if not members:
        return {}
    counts = dict.fromkeys(members, 0)
    home = {}
    for address in addresses:
        member = _fewest(counts, members)
        home[address] = member
        counts[member] += 1
    return home


def place(addresses: Sequence[str], active: Sequence[str], current: dict[str, str | None],
          home: dict[str, str], failback: bool) -> dict[str, str | None]:
    """The new placement for ``active`` members (in preference order); None: no member."""
    if not active:
        return dict.fromkeys(addresses)
    active_set = set(active)
    result: dict[str, str | None] = {}
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
        member = _fewest(counts, active)
        result[address] = member
        counts[member] += 1
    while True:
        fullest = max(active, key=lambda m: (counts[m], -active.index(m)))
        emptiest = _fewest(counts, active)
        if counts[fullest] - counts[emptiest] <= 1:
            break
        address = next(a for a in reversed(addresses) if result[a] == fullest)
        result[address] = emptiest
        counts[fullest] -= 1
        counts[emptiest] += 1
    return {a: result[a] for a in addresses}
