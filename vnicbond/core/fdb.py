"""The MACs behind the TAP: guests' addresses learned from the frames the host sends, and
those upper devices registered on it, as a bridge's forwarding database keeps them.

A pure table, no I/O and no clock (``now`` comes in). The datapath calls :meth:`MacTable.heard`
for every frame from the TAP whose source is not the group's own MAC, so that call does the
least it can: a dictionary lookup and, for a known MAC, one move to the end.

Rules (as the Linux bridge and Open vSwitch's MAC learning):

* A learned MAC stays while it is heard from at least once every ``aging`` seconds.
* The table holds at most ``limit`` learned MACs. A new one past the limit pushes out the one
  heard from least recently, and the eviction is counted: a guest flooding random source MACs
  can neither grow the table nor push out a MAC in use, unless it sends at least ``limit`` new
  MACs in less time than that MAC's guest takes to speak again.
* Registered MACs (a macvlan's, put on the TAP's unicast list before it sends anything) do not
  age and do not count against the limit; they follow the TAP's list.
* Every change is reported once, to be drained with :meth:`changes`: MACs that arrived and
  MACs that left (aged out, evicted, unregistered), so the group engine can place, announce
  and filter them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class MacTable:
    """Learned and registered MACs of one group."""

    __slots__ = ("_gone", "_new", "_reported", "aging", "evictions", "learned", "limit",
                 "registered")

    def __init__(self, limit: int, aging: float) -> None:
        self.limit = limit
        self.aging = aging
        #: Learned MAC -> when it was last heard from, least recently heard first.
        self.learned: OrderedDict[bytes, float] = OrderedDict()
        #: MACs the TAP's unicast list holds.
        self.registered: set[bytes] = set()
        #: Learned MACs pushed out by newer ones since the start.
        self.evictions = 0
        self._new: list[bytes] = []
        self._gone: list[bytes] = []
        #: The MACs :meth:`changes` has reported present.
        self._reported: set[bytes] = set()

    def __contains__(self, mac: object) -> bool:
        return mac in self.learned or mac in self.registered

    def __len__(self) -> int:
        return len(self.learned) + len(self.registered - self.learned.keys())

    @property
    def pending(self) -> bool:
        """Whether :meth:`changes` has something to report."""
        return bool(self._new or self._gone)

    def heard(self, mac: bytes, now: float) -> bool:
        """A frame from the TAP came from ``mac``: learn it, or note it is still there.
        Returns whether it was not learned before."""
        learned = self.learned
        if mac in learned:
            learned[mac] = now
            learned.move_to_end(mac)
            return False
        if mac in self.registered:  # no place among the learned: it neither ages nor counts
            return False
        if len(learned) >= self.limit:
            old, _ = learned.popitem(last=False)
            self.evictions += 1
            if old not in self.registered:
                self._gone.append(old)
        learned[mac] = now
        if mac not in self.registered:
            self._new.append(mac)
        return True

    def expire(self, now: float) -> None:
        """Forget the learned MACs not heard from for ``aging`` seconds."""
        learned = self.learned
        while learned:
            mac, last = next(iter(learned.items()))
            if last + self.aging > now:
                return
            del learned[mac]
            if mac not in self.registered:
                self._gone.append(mac)

    def next_expiry(self) -> float | None:
        """When :meth:`expire` has something to do next (None: no learned MAC)."""
        if not self.learned:
            return None
        return next(iter(self.learned.values())) + self.aging

    def register(self, macs: set[bytes]) -> None:
        """The TAP's unicast list is now ``macs``. A learned MAC that gets registered gives
        up its place among the learned."""
        for mac in macs - self.registered:
            if self.learned.pop(mac, None) is None:
                self._new.append(mac)
        for mac in self.registered - macs:
            if mac not in self.learned:
                self._gone.append(mac)
        self.registered = set(macs)

    def resize(self, limit: int, aging: float) -> None:
        """A reload: new limit and aging; learned MACs past the new limit go (counted)."""
        self.limit, self.aging = limit, aging
        while len(self.learned) > limit:
            old, _ = self.learned.popitem(last=False)
            self.evictions += 1
            if old not in self.registered:
                self._gone.append(old)

    def snapshot(self) -> dict[str, Any]:
        """The table as JSON, for code taking over the running daemon (``vnicbond upgrade``):
        learned MACs with when they were last heard from (least recently first), registered
        MACs, evictions."""
        return {"learned": [[mac.hex(), last] for mac, last in self.learned.items()],
                "registered": sorted(mac.hex() for mac in self.registered),
                "evictions": self.evictions}

    def restore(self, kept: dict[str, Any]) -> None:
        """Take :meth:`snapshot`'s MACs into an empty table (the limit still applies); all of
        them are reported by the next :meth:`changes`. Raises ValueError, changing nothing, if
        ``kept`` is malformed."""
        try:
            learned = [(bytes.fromhex(mac), float(last)) for mac, last in kept["learned"]]
            registered = {bytes.fromhex(mac) for mac in kept["registered"]}
            evictions = int(kept["evictions"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the MAC table is malformed: {e!r}") from None
        if any(len(mac) != 6 for mac, _ in learned) or any(len(m) != 6 for m in registered):
            raise ValueError("the MAC table holds something that is not a MAC")
        self.register(registered)
        for mac, last in learned[-self.limit:] if self.limit else []:
            if mac not in registered:
                self.learned[mac] = last
                self._new.append(mac)
        self.evictions = evictions

    def changes(self) -> tuple[list[bytes], list[bytes]]:
        """The MACs present now that were not at the last call, in the order they came, and
        those present then and gone now."""
        new, gone = self._new, self._gone
        self._new, self._gone = [], []
        reported = self._reported
        added = [m for m in dict.fromkeys(new) if m not in reported and m in self]
        removed = [m for m in dict.fromkeys(gone) if m in reported and m not in self]
        reported.difference_update(removed)
        reported.update(added)
        return added, removed

    def age(self, mac: bytes, now: float) -> float | None:
        """Seconds since ``mac`` was last heard from (None: registered, which does not age)."""
        last = self.learned.get(mac)
        return None if last is None else now - last
