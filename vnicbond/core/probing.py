"""How one group probes, composed: who probes what from where, targets found on their own.

:class:`Probing` holds the parts of probing that follow the election rather than the
configuration alone: the plan (:func:`vnicbond.core.targets.plan`: each member's sources,
targets and mode, recomputed when the election, the MACs, the targets or the addresses
change), the targets found by all-hosts ping (:class:`vnicbond.core.discovery.TargetFinder`)
and when to look for more, the *proxy* (while no member carries an IPv4 data address, one
member at a time probes from one on the group's behalf, the next one after ``PROXY_TURN``
failure detection times without being repaired), and the prober that turns it all into
frames (:class:`vnicbond.core.prober.Prober`). The group engine (:mod:`vnicbond.core.engine`)
feeds it and hands the plan's targets to the failure detector. Pure: no I/O, the time passed
in.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any

from vnicbond.config import GroupConfig
from vnicbond.core.discovery import TargetFinder
from vnicbond.core.prober import Prober, ProbingMember
from vnicbond.core.targets import (
    MEMBER_PREFIX,
    MULTICAST,
    GroupTargets,
    IPAddress,
    MemberProbe,
    data_sources,
    group_targets,
    plan,
    version,
)

#: Failure detection times a proxy probes without being repaired before the next one tries.
PROXY_TURN = 2


class Probing:
    """One group's probing plan, found targets, proxy and prober."""

    def __init__(self, cfg: GroupConfig, token: bytes | None = None, ident: int | None = None,
                 secret: bytes | None = None) -> None:
        self.cfg = cfg
        self.finder = TargetFinder()
        self.prober = Prober(cfg.probe.method, [], token, ident, secret)
        #: The gateways of the routes through the TAP (None: not read yet).
        self.gateways: tuple[IPAddress, ...] | None = None
        self.targets = GroupTargets()
        self.plan: dict[str, MemberProbe] = {m.name: MemberProbe() for m in cfg.members}
        self.proxy: str | None = None
        self._proxy_since = 0.0
        self._discover_at: float | None = None
        self._seq = 0
        self._links: dict[str, bool] = {}
        #: What the plan was last made from (see :meth:`update`).
        self._key: tuple[Any, ...] | None = None

    def update(self, cfg: GroupConfig, hosts: Mapping[str, str | None],
               macs: Mapping[str, bytes], links: Mapping[str, bool], now: float) -> list[str]:
        """The plan for the election's address ``hosts``, the members' ``macs`` and
        ``links``; returns the members whose plan changed (the prober already speaks for
        the new one)."""
        key = (tuple(hosts.items()), tuple(macs.items()), tuple(links.items()), self.gateways,
               self.finder.targets(4), self.finder.targets(6), self.proxy)
        if cfg is self.cfg and key == self._key:
            return []  # nothing it depends on changed (the common case: every probe reply)
        self.cfg = cfg
        self._links = dict(links)
        families = {version(a) for a in hosts}
        families |= {m.test_address.version for m in cfg.members if m.test_address}
        found = {v: self.finder.targets(v) for v in (4, 6)}
        self.targets = group_targets(cfg, self.gateways, found, families)
        carriers = data_sources(cfg, hosts, macs, None)
        if carriers or 4 not in families or not cfg.probe.transitive:
            self.proxy = None
        elif self.proxy is None or not links.get(self.proxy, False):
            up = [m.name for m in cfg.members if links.get(m.name, False)]
            if up and self.proxy not in up:
                self.proxy, self._proxy_since = up[0], now
        new = plan(cfg, self.targets, macs, data_sources(cfg, hosts, macs, self.proxy))
        self._key = (tuple(hosts.items()), tuple(macs.items()), tuple(links.items()),
                     self.gateways, self.finder.targets(4), self.finder.targets(6), self.proxy)
        changed = [m for m, p in new.items() if self.plan.get(m) != p]
        if changed or set(new) != set(self.plan):
            self.plan = new
            self.prober.reconfigure(cfg.probe.method, [
                ProbingMember(name, macs[name], p.sources,
                              tuple(ip_address(t) for t in p.targets
                                    if not t.startswith(MEMBER_PREFIX)),
                              {t[len(MEMBER_PREFIX):]: macs[t[len(MEMBER_PREFIX):]]
                               for t in p.targets if t.startswith(MEMBER_PREFIX)})
                for name, p in new.items() if name in macs])
        return changed

    def rotate(self, healthy: Mapping[str, bool], links: Mapping[str, bool], now: float
               ) -> bool:
        """Give the proxy's turn to the next member with its link up once the proxy has
        probed ``PROXY_TURN`` failure detection times without being repaired; returns
        whether it changed (then :meth:`update` again)."""
        proxy = self.proxy
        if proxy is None or healthy.get(proxy, False):
            return False
        if now < self._proxy_since + PROXY_TURN * self.cfg.failure_detection_time_ms / 1000:
            return False
        names = [m.name for m in self.cfg.members]
        start = names.index(proxy) if proxy in names else -1
        for name in names[start + 1:] + names[:start + 1]:
            if links.get(name, False):
                changed = name != proxy
                self.proxy, self._proxy_since = name, now
                return changed
        return False

    def discover(self, now: float, interval: float) -> list[tuple[str, list[bytes]]]:
        """All-hosts pings due now, per member: once a probe interval, for each family whose
        targets are found that way and that wants more (:class:`TargetFinder`)."""
        if self._discover_at is not None and now < self._discover_at:
            return []
        families = [v for v in (4, 6) if self.targets.of(v)[1] == MULTICAST]
        if not families:
            self._discover_at = None
            return []
        self._discover_at = now + interval
        out = []
        for family in families:
            if not self.finder.wanted(family, now):
                continue
            self._seq = (self._seq + 1) & 0xFFFF
            # From one member: every host answers each ping, and the targets are the group's.
            for name, p in self.plan.items():
                if p.source(family) is not None and self._links.get(name, False):
                    frames = self.prober.discover(name, family, self._seq)
                    if frames:
                        out.append((name, frames))
                        break
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`discover` or :meth:`rotate` may have something to do."""
        times = [t for t in (self._discover_at,) if t is not None]
        if self.proxy is not None:
            times.append(self._proxy_since
                         + PROXY_TURN * self.cfg.failure_detection_time_ms / 1000)
        return min(times) if times else None

    def mode(self, member: str) -> str:
        """How ``member``'s targets are chosen, as status shows it."""
        return self.plan[member].mode if member in self.plan else "disabled"

    def snapshot(self) -> dict[str, Any]:
        """What code taking over the running daemon keeps: the targets found."""
        return {"found": self.finder.snapshot()}

    def restore(self, kept: dict[str, Any]) -> None:
        """Go on with :meth:`snapshot`'s found targets. Raises ValueError if malformed."""
        self.finder.restore(kept["found"])
