"""The guests behind the TAP: which member carries each guest MAC, and what the members must
accept for them. Pure: the MACs that came and went (:class:`vnicbond.core.fdb.MacTable`),
the active members and the TAP's promiscuity go in; effects come out.

Rules:

* **Active-backup**: every guest MAC lives on the active member. When the active member changes
  the group engine announces them all from the new one (see :mod:`vnicbond.core.engine`).
* **Load spreading** (Open vSwitch's ``balance-slb``): a guest's frames keep its MAC, so each
  MAC is placed on exactly one active member, as data addresses are
  (:mod:`vnicbond.core.placement`): a new MAC goes to the active member carrying the fewest, and
  that member is its home; a MAC moves only when its member leaves, or goes home when it returns
  (``failback``), or to even out the members when one joins. Moves are announced from the new
  member; a first placement is not (the guest's own frames teach the switch).
* **What the members accept** (:class:`~vnicbond.core.model.SetMemberFilter`): each member's
  NIC is asked to accept every guest MAC (so a failover needs no change), one filter entry per
  MAC, up to :data:`FILTER_LIMIT`; past it, or while the TAP is promiscuous (a bridge port
  that must flood), the NIC accepts everything, and below :data:`FILTER_LIMIT` / 2 it goes back
  to per-MAC entries.
"""

from __future__ import annotations

from collections.abc import Sequence

from vnicbond.core.model import SetMacHosts, SetMemberFilter
from vnicbond.core.placement import fewest, place

#: Guest MACs the members accept one filter entry at a time; past it they go promiscuous.
FILTER_LIMIT = 64


class Guests:
    """The guest MACs of one group."""

    def __init__(self, spread: bool, failback: bool) -> None:
        self.spread = spread
        self.failback = failback
        #: Guest MAC -> the member carrying it (load spreading; None: no active member),
        #: in the order they came.
        self.hosts: dict[bytes, str | None] = {}
        #: Load spreading: where each MAC was first placed, where failback returns it.
        self.home: dict[bytes, str] = {}
        #: Load spreading: how many MACs each member carries.
        self.counts: dict[str, int] = {}
        self.tap_promiscuous = False
        #: What the members are asked to accept now: per-MAC entries, or everything.
        self.filter: set[bytes] = set()
        self.promiscuous = False
        #: Load spreading: where the daemon's previous code had each MAC (host, home), for
        #: MACs that arrive again after ``vnicbond upgrade`` (:meth:`resume`).
        self._kept: dict[bytes, tuple[str | None, str | None]] = {}

    def changed(self, added: Sequence[bytes], removed: Sequence[bytes],
                active: Sequence[str]) -> list[SetMacHosts | SetMemberFilter]:
        """MACs came and went behind the TAP; ``active``: the active members in preference
        order. New MACs go to the active member with the fewest (load spreading)."""
        counts = self.counts
        for mac in removed:
            host = self.hosts.pop(mac, None)
            self.home.pop(mac, None)
            if host is not None:
                counts[host] -= 1
        placed: list[tuple[bytes, str | None]] = []
        for mac in added:
            member = None
            if self.spread and active:
                for m in active:
                    counts.setdefault(m, 0)
                host, home = self._kept.pop(mac, (None, None))
                member = host if host in active else fewest(counts, active)
                counts[member] += 1
                self.home[mac] = home or member
            self.hosts[mac] = member
            placed.append((mac, member))
        effects: list[SetMacHosts | SetMemberFilter] = []
        if self.spread and (placed or removed):  # active-backup: all on the active member
            effects.append(SetMacHosts(tuple(placed), tuple(removed)))
        effects.extend(self._filter())
        return effects

    def moved(self, active: Sequence[str]) -> tuple[list[SetMacHosts], dict[str, list[bytes]]]:
        """Load spreading: the active members changed; re-place the MACs by the placement
        rules. Returns the effect and, per member, the MACs that moved to it (to announce)."""
        if not self.spread or not self.hosts:
            return [], {}
        macs = list(self.hosts)
        new = place(macs, tuple(active), self.hosts, self.home, self.failback)
        for mac, member in new.items():
            if member is not None and mac not in self.home:
                self.home[mac] = member
        changed = [(m, new[m]) for m in macs if new[m] != self.hosts[m]]
        self.hosts = new
        self.counts = {}
        for member in new.values():
            if member is not None:
                self.counts[member] = self.counts.get(member, 0) + 1
        moves: dict[str, list[bytes]] = {}
        for mac, member in changed:
            if member is not None:
                moves.setdefault(member, []).append(mac)
        return ([SetMacHosts(tuple(changed), ())] if changed else []), moves

    def snapshot(self) -> dict[str, dict[str, str | None]]:
        """Where each guest MAC lives and its home, as JSON, for code taking over the
        running daemon (``vnicbond upgrade``)."""
        return {mac.hex(): {"host": host, "home": self.home.get(mac)}
                for mac, host in self.hosts.items()}

    def resume(self, kept: dict[str, dict[str, str | None]]) -> None:
        """The previous code's placement (:meth:`snapshot`): a MAC it had placed goes back to
        its member when it is reported again (if that member is active), keeping its home.
        Raises ValueError, changing nothing, if ``kept`` is malformed."""
        try:
            placed = {bytes.fromhex(mac): (p["host"], p["home"]) for mac, p in kept.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the guests' placement is malformed: {e!r}") from None
        self._kept = placed

    def set_tap_promiscuous(self, on: bool) -> list[SetMemberFilter]:
        """The TAP's promiscuity counter is (or is no longer) above zero."""
        self.tap_promiscuous = on
        return self._filter()

    def _filter(self) -> list[SetMemberFilter]:
        """The members' filter for the MACs now, if it changed."""
        count = len(self.hosts)
        promiscuous = self.tap_promiscuous or count > FILTER_LIMIT or (
            self.promiscuous and count >= FILTER_LIMIT // 2)
        want = set() if promiscuous else set(self.hosts)
        if promiscuous == self.promiscuous and want == self.filter:
            return []
        add, remove = want - self.filter, self.filter - want
        self.filter, self.promiscuous = want, promiscuous
        return [SetMemberFilter(tuple(add), tuple(remove), promiscuous)]
