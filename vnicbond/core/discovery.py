"""Probe targets found on their own: the hosts that answer an all-hosts echo, as in.mpathd
finds targets when it knows no router. The one home of which responders a group probes.

With no ``probe.targets`` and no route gateways, the members that probe by ICMP add, to some
probe rounds, an echo request to all-hosts (224.0.0.1, ff02::1) carrying the daemon's
identifier and token; a unicast echo reply to it, from whatever source, names a responder.
A :class:`TargetFinder` per group keeps, per address family, the responders it probes. Pure:
addresses and a clock (``now``, seconds) in, targets out; the edges send and validate the
frames, the detector judges the targets.

Rules (constants below, each with its reason):

* **At most** :data:`LIMIT` targets per family (in.mpathd's ``MAX_PROBE_TARGETS``). A flood
  of responders, thousands of distinct addresses, keeps :data:`LIMIT` and stores nothing
  else; what the finder remembers beyond its targets (routers, dropped targets) is bounded by
  :data:`MEMORY` addresses per family.
* **Never a target**: a multicast, unspecified, loopback or IPv4 reserved/broadcast source,
  an IPv4-mapped IPv6 address, or one of the group's own addresses (:meth:`TargetFinder.ours`).
  The family is the address's own: an IPv4 responder is an IPv4 target, an IPv6 one IPv6.
* **When to ask** (:meth:`TargetFinder.wanted`, asked once per probe round and family):
  while the family has no target, every round; after a target was dropped, the next
  :data:`SEARCH_ROUNDS` rounds or until a new target is found; otherwise, while it has fewer
  than :data:`LIMIT` targets, at most once every :data:`REDISCOVER` seconds; never with
  :data:`LIMIT` targets.
* **Routers first**: once an address is known to be a router (an IPv6 neighbour
  advertisement with the Router flag), routers are preferred, as in.mpathd prefers routers
  to hosts: a router that answers while the family is full takes the place of the most
  recently found non-router target, and :meth:`TargetFinder.targets` lists routers first.
  Unlike in.mpathd, which deletes every host target when the first router appears, hosts
  stay while there is room, so that a member keeps several targets to compare (the detector
  drops one slow target only among four or more).
* **Dropped** (:meth:`TargetFinder.drop`: it stopped answering while others answer, or it is
  too slow): the target goes, is not taken back for :data:`DROP_HOLD` seconds, and a search
  for another starts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

IPAddress = IPv4Address | IPv6Address

#: Targets kept per family: in.mpathd's MAX_PROBE_TARGETS.
LIMIT = 5
#: Rounds that ask all-hosts after a target was dropped, unless another is found sooner. Every
#: host that answers at all answers the first of them; the other two cover a lost request or
#: a burst of replies lost where they converge on the member's port. Three rounds last about
#: 2.25 probe intervals (a third of the FDT); then :data:`REDISCOVER` takes over.
SEARCH_ROUNDS = 3
#: Seconds between all-hosts requests while a family has some targets but fewer than
#: :data:`LIMIT`. Every host on the link answers each one: on a LAN of 1000 answering hosts
#: that is 1000 replies a minute (about 17 a second on average) to each member that asks,
#: where asking every round at FDT 300 ms (a round every 32 ms on average) would draw about
#: 31 000 a second. A minute is also in.mpathd's time scale for targets that come back
#: (MIN_RECOVERY_TIME, MIN_SETTLING_TIME: 60 s).
REDISCOVER = 60.0
#: Seconds a dropped target is not taken back. A host that stopped answering is most often
#: rebooting or gone, and a slow one stays slow for a while: taking it back at the next
#: all-hosts round would churn the targets (a drop, a quiet period, a drop again). Five
#: :data:`REDISCOVER` periods: a target that keeps misbehaving costs one retry in five minutes.
DROP_HOLD = 300.0
#: Addresses remembered per family beyond the targets: known routers, and dropped targets;
#: the oldest are forgotten first.
MEMORY = 4 * LIMIT

_VERSIONS = (4, 6)


def _address(ip: IPAddress | str) -> IPAddress | None:
    """``ip`` as an address that may be a target, or None (malformed, or never a target)."""
    try:
        addr = ip_address(ip.split("%", 1)[0] if isinstance(ip, str) else ip)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address):
        if addr.scope_id is not None:
            addr = IPv6Address(str(addr).split("%", 1)[0])
        if addr.ipv4_mapped is not None:
            return None
    elif addr.is_reserved:  # 240.0.0.0/4 and 255.255.255.255
        return None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        return None
    return addr


@dataclass
class _Family:
    """One address family's state."""

    #: Targets in the order they were found.
    targets: list[IPAddress] = field(default_factory=list)
    #: Addresses known to be routers, least recently told first (at most MEMORY).
    routers: OrderedDict[IPAddress, None] = field(default_factory=OrderedDict)
    #: Dropped targets -> when they were dropped, oldest first (at most MEMORY).
    dropped: OrderedDict[IPAddress, float] = field(default_factory=OrderedDict)
    #: Rounds of the search after a drop still to ask all-hosts.
    search: int = 0
    #: When an all-hosts request was last wanted (None: never).
    last: float | None = None

    def ordered(self) -> tuple[IPAddress, ...]:
        routers = self.routers
        return (tuple(t for t in self.targets if t in routers)
                + tuple(t for t in self.targets if t not in routers))

    def held(self, addr: IPAddress, now: float) -> bool:
        """Whether ``addr`` was dropped less than DROP_HOLD ago (older drops are forgotten)."""
        while self.dropped:
            oldest, when = next(iter(self.dropped.items()))
            if now - when < DROP_HOLD:
                break
            del self.dropped[oldest]
        return addr in self.dropped


class TargetFinder:
    """One group's targets found by all-hosts echo, per address family."""

    __slots__ = ("_families", "_ours")

    def __init__(self) -> None:
        self._families = {v: _Family() for v in _VERSIONS}
        self._ours: frozenset[IPAddress] = frozenset()

    @staticmethod
    def _check(version: int) -> None:
        if version not in _VERSIONS:
            raise ValueError(f"IP version must be 4 or 6, not {version!r}")

    def wanted(self, version: int, now: float) -> bool:
        """Whether this probe round should include an all-hosts echo for ``version`` (asked
        once per round: a True answer counts as a request sent)."""
        self._check(version)
        fam = self._families[version]
        if not fam.targets:
            ask = True
        elif fam.search > 0:
            fam.search -= 1
            ask = True
        else:
            ask = len(fam.targets) < LIMIT and (fam.last is None or now - fam.last >= REDISCOVER)
        if ask:
            fam.last = now
        return ask

    def found(self, ip: IPAddress | str, now: float) -> bool:
        """``ip`` answered our all-hosts echo (a unicast echo reply to it): kept as a target if
        there is room (or if it is a router and a non-router can give way), ends a search.
        Returns whether the targets changed."""
        addr = _address(ip)
        if addr is None or addr in self._ours:
            return False
        fam = self._families[addr.version]
        if addr in fam.targets or fam.held(addr, now):
            return False
        if len(fam.targets) >= LIMIT:
            hosts = [t for t in fam.targets if t not in fam.routers]
            if addr not in fam.routers or not hosts:
                return False
            fam.targets.remove(hosts[-1])
        fam.targets.append(addr)
        fam.search = 0
        return True

    def router(self, ip: IPAddress | str) -> bool:
        """``ip`` is known to be a router (a neighbour advertisement with the Router flag):
        preferred from now on. Returns whether the targets (their order) changed."""
        addr = _address(ip)
        if addr is None or addr in self._ours:
            return False
        fam = self._families[addr.version]
        before = fam.ordered()
        fam.routers[addr] = None
        fam.routers.move_to_end(addr)
        while len(fam.routers) > MEMORY:
            fam.routers.popitem(last=False)
        return fam.ordered() != before

    def drop(self, ip: IPAddress | str, now: float) -> bool:
        """Target ``ip`` stopped answering while others answer (or is too slow): removed, not
        taken back for DROP_HOLD seconds, and a search for another starts. Returns whether it
        was a target."""
        addr = _address(ip)
        if addr is None:
            return False
        fam = self._families[addr.version]
        if addr not in fam.targets:
            return False
        fam.targets.remove(addr)
        fam.dropped.pop(addr, None)
        fam.dropped[addr] = now
        while len(fam.dropped) > MEMORY:
            fam.dropped.popitem(last=False)
        fam.search = SEARCH_ROUNDS
        return True

    def ours(self, addresses: Iterable[IPAddress | str]) -> bool:
        """The group's own addresses (data, test and link-local addresses), never targets;
        any that is one now goes (not held as dropped). Returns whether the targets changed."""
        self._ours = frozenset(a for a in (_address(x) for x in addresses) if a is not None)
        changed = False
        for fam in self._families.values():
            kept = [t for t in fam.targets if t not in self._ours]
            changed |= kept != fam.targets
            fam.targets = kept
        return changed

    def targets(self, version: int) -> tuple[IPAddress, ...]:
        """The targets of ``version``: routers first, each part in the order found."""
        self._check(version)
        return self._families[version].ordered()

    def searching(self, version: int) -> bool:
        """Whether a search after a drop is under way for ``version``."""
        self._check(version)
        return self._families[version].search > 0

    def clear(self) -> None:
        """Forget everything but the group's own addresses (targets configured or routes
        appeared, or a reload): the next rounds ask all-hosts again."""
        self._families = {v: _Family() for v in _VERSIONS}

    def snapshot(self) -> dict[str, Any]:
        """The finder as JSON, for code taking over the running daemon (``vnicbond
        upgrade``): per family its targets in the order found, known routers, dropped
        targets with when, the search's rounds left and when all-hosts was last asked."""
        return {str(v): {"targets": [str(t) for t in f.targets],
                         "routers": [str(r) for r in f.routers],
                         "dropped": [[str(d), when] for d, when in f.dropped.items()],
                         "search": f.search, "last": f.last}
                for v, f in self._families.items()}

    def restore(self, kept: dict[str, Any]) -> None:
        """Go on from :meth:`snapshot`'s state, in place of this one's. Raises ValueError,
        changing nothing, if ``kept`` is malformed (also: an address that may not be a target
        or of the wrong family, more than LIMIT targets, a search longer than
        SEARCH_ROUNDS)."""
        families = {}
        try:
            for v in _VERSIONS:
                k = kept[str(v)]

                def addrs(items: Any, v: int = v) -> list[IPAddress]:
                    out = []
                    for item in items:
                        if not isinstance(item, str):
                            raise ValueError(f"{item!r} is not an address")
                        a = _address(item)
                        if a is None or a.version != v:
                            raise ValueError(f"{item!r} cannot be an IPv{v} target")
                        out.append(a)
                    return out

                targets = list(dict.fromkeys(addrs(k["targets"])))
                if len(targets) > LIMIT:
                    raise ValueError(f"{len(targets)} IPv{v} targets, more than {LIMIT}")
                routers = addrs(k["routers"])[-MEMORY:]
                pairs = [(str(d), float(when)) for d, when in k["dropped"]][-MEMORY:]
                dropped = list(zip(addrs(d for d, _ in pairs), (w for _, w in pairs),
                                   strict=True))
                search = k["search"]
                if not isinstance(search, int) or not 0 <= search <= SEARCH_ROUNDS:
                    raise ValueError(f"search rounds {search!r} not in 0..{SEARCH_ROUNDS}")
                last = None if k["last"] is None else float(k["last"])
                families[v] = _Family(targets, OrderedDict.fromkeys(routers),
                                      OrderedDict(dropped), search, last)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the target finder's state is malformed: {e!r}") from None
        self._families = families
