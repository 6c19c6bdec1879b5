"""Which member carries the group's traffic, and which member hosts each data address.

A pure state machine, no I/O and no clock: member health and administrative changes go in,
actions (:mod:`vnicbond.core.model`) come out; the group engine (:mod:`vnicbond.core.engine`)
feeds it and carries its actions on. It is the one place that changes a member's state,
and it emits an action only when something actually changed.

Active-backup rules (as in in.mpathd and the bonding driver's active-backup mode):

* Members are preferred in configuration order, configured standby members last.
* Exactly one usable member is active; it transmits and receives for the whole group and
  hosts every data address. The others are ``standby`` (healthy, idle), ``failed`` or
  ``offline``.
* When the active member stops being usable, the most preferred usable member takes over and
  announces every data address (gratuitous ARP / unsolicited NA).
* ``failback: true``: a repaired member that is preferred to the active one takes traffic back.
  ``failback: false``: it stays a spare until needed. Either way a configured standby member
  gives traffic back as soon as a non-standby member is usable: standby members carry traffic
  only while an active one is missing.
* No usable member: the group has failed and the TAP's carrier goes off.

Load-spread rules (IPMP's load spreading):

* Every usable non-standby member is active: outbound flows spread over all of them and each
  receives for the addresses it hosts. A usable standby member becomes active only to stand
  in for a missing non-standby member, one for one.
* Each data address is hosted by one active member (:mod:`vnicbond.core.placement`): spread as
  evenly as possible; the addresses of a member that leaves go to the active members with the
  fewest; a member that joins takes addresses from the fullest until no two differ by more
  than one; with ``failback: true`` an address goes home when its home member is back. Every
  address that moves is announced from its new member.
* ``failback: false`` (IPMP's FAILBACK=no): nothing moves back. A repaired regular member
  waits as a spare (standby) while other members carry the traffic, and joins again as soon
  as one of them leaves; a standby that stands in for a failed member keeps its place
  meanwhile, also against a repaired standby. (Active-backup differs on purpose: there a
  standby always hands the traffic back, since it is the only member carrying any.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vnicbond.core.model import (
    FIRST,
    Action,
    AddressMoved,
    Announce,
    Cause,
    GroupChanged,
    GroupState,
    MemberChanged,
    MemberState,
    SetCarrier,
    SetForwarding,
    SetSpread,
)
from vnicbond.core.placement import home_placement, place

ACTIVE_BACKUP = "active-backup"
LOAD_SPREAD = "load-spread"


@dataclass(slots=True)
class _Member:
    name: str
    standby: bool
    healthy: bool = False
    offline: bool = False
    state: MemberState | None = None

    @property
    def usable(self) -> bool:
        return self.healthy and not self.offline


class Group:
    """The active-backup decision for one group."""

    def __init__(self, name: str, members: list[tuple[str, bool]], addresses: list[str],
                 failback: bool = True, mode: str = ACTIVE_BACKUP) -> None:
        """``members`` are ``(name, standby)`` pairs in configuration order."""
        if not members:
            raise ValueError("a group needs at least one member")
        if mode not in (ACTIVE_BACKUP, LOAD_SPREAD):
            raise ValueError(f"unknown mode {mode!r}")
        self.name = name
        self.mode = mode
        self.failback = failback
        self.addresses = tuple(addresses)
        self._members = {n: _Member(n, standby) for n, standby in members}
        if len(self._members) != len(members):
            raise ValueError("member names must be unique")
        # Preference: configuration order, standby members last (sorted() is stable).
        self._order = sorted(self._members.values(), key=lambda m: m.standby)
        self.active: str | None = None
        self.state: GroupState | None = None
        self.carrier: bool | None = None
        #: Load spreading: the active members, where each address lives, and its home.
        self.spread: tuple[str, ...] = ()
        self.hosts: dict[str, str | None] = dict.fromkeys(self.addresses)
        self.home = home_placement(self.addresses,
                                   [m.name for m in self._order if not m.standby])
        self._spares: set[str] = set()  # repaired with failback: false, waiting to be needed

    # -- inputs ------------------------------------------------------------------------------
    def start(self, healthy: dict[str, bool]) -> list[Action]:
        """Set every member's initial health and make the first election."""
        for name, ok in healthy.items():
            self._members[name].healthy = ok
        return self._decide(Cause.START)

    def set_health(self, member: str, healthy: bool, cause: Cause) -> list[Action]:
        """A detector says ``member`` can (or cannot) carry traffic."""
        return self.update_health({member: healthy}, cause)

    def update_health(self, changes: dict[str, bool], cause: Cause) -> list[Action]:
        """Several members' health at once, decided in one election.

        A group failure fails every member in the same instant: electing once keeps traffic
        from hopping to a member that is about to fail too.
        """
        changed = False
        for name, healthy in changes.items():
            m = self._members[name]
            if m.healthy != healthy:
                m.healthy = healthy
                changed = True
        return self._decide(cause) if changed else []

    def reconfigure(self, members: list[tuple[str, bool]], addresses: list[str], failback: bool,
                    healthy: dict[str, bool]) -> list[Action]:
        """A reload: new members, addresses or failback, deciding once with cause ``reload``.

        Members that stay keep their state (offline included); ``healthy`` gives every
        member's health as the detector now sees it. New addresses are announced from the
        member that hosts them.
        """
        old = self._members
        self._members = {}
        for name, standby in members:
            m = old.get(name) or _Member(name, standby)
            m.standby = standby
            m.healthy = healthy.get(name, False)
            self._members[name] = m
        self._order = sorted(self._members.values(), key=lambda m: m.standby)
        added = [a for a in addresses if a not in self.addresses]
        self.addresses = tuple(addresses)
        self.failback = failback
        self.home = home_placement(self.addresses,
                                   [m.name for m in self._order if not m.standby])
        self.hosts = {a: self.hosts.get(a) for a in self.addresses}
        self._spares &= set(self._members)
        if self.active not in self._members:
            self.active = None
        self.spread = tuple(m for m in self.spread if m in self._members)
        actions = self._decide(Cause.RELOAD)
        if self.mode == ACTIVE_BACKUP and self.active is not None and added and not any(
                isinstance(a, Announce) for a in actions):
            actions.extend(AddressMoved(a, None, self.active, Cause.RELOAD) for a in added)
            actions.append(Announce(self.active, tuple(added)))
        return actions

    def set_addresses(self, addresses: list[str], cause: Cause) -> list[Action]:
        """The data addresses changed at run time (the system added or removed some on the
        TAP): new ones are placed and announced from the member that hosts them, with
        ``cause``; the others stay where they are (load spreading evens out as ever)."""
        added = [a for a in addresses if a not in self.addresses]
        if not added and len(addresses) == len(self.addresses):
            return []
        self.addresses = tuple(addresses)
        if self.mode == LOAD_SPREAD:
            self.home = home_placement(self.addresses,
                                       [m.name for m in self._order if not m.standby],
                                       keep=self.home)
            self.hosts = {a: self.hosts.get(a) for a in self.addresses}
            return self._spread(cause, changed=True)
        if self.active is None or not added:
            return []
        return [*(AddressMoved(a, None, self.active, cause) for a in added),
                Announce(self.active, tuple(added))]
    def snapshot(self) -> dict[str, Any]:
        """What code taking over the running daemon keeps of the election (``vnicbond
        upgrade``), as JSON: the active member(s), where each address lives, the spares
        held back, and which members are offline."""
        return {"active": self.active, "spread": list(self.spread), "hosts": dict(self.hosts),
                "spares": sorted(self._spares),
                "offline": [m.name for m in self._members.values() if m.offline]}

    def resume(self, kept: dict[str, Any], healthy: dict[str, bool]) -> list[Action]:
        """:meth:`start` for code taking over the running daemon: the election goes on from
        :meth:`snapshot`'s (the active member stays active while usable and failback does
        not say otherwise, addresses stay where they are, offline members stay offline), with
        cause ``upgrade``. What it names that is no longer configured is ignored. Raises
        ValueError, changing nothing, if ``kept`` is malformed."""
        try:
            active = kept.get("active")
            spread = [str(m) for m in kept.get("spread", [])]
            hosts = {str(a): m for a, m in dict(kept.get("hosts", {})).items()}
            spares = {str(m) for m in kept.get("spares", [])}
            offline = {str(m) for m in kept.get("offline", [])}
        except (AttributeError, TypeError, ValueError) as e:
            raise ValueError(f"the election's state is malformed: {e}") from None
        for name, ok in healthy.items():
            self._members[name].healthy = ok
        for m in self._members.values():
            m.offline = m.name in offline
        self.active = active if active in self._members else None
        self.spread = tuple(m for m in spread if m in self._members)
        self.hosts = {a: hosts.get(a) if hosts.get(a) in self.spread else None
                      for a in self.addresses}
        self._spares = spares & set(self._members)
        return self._decide(Cause.UPGRADE)

    def set_offline(self, member: str, offline: bool) -> list[Action]:
        """The administrator takes ``member`` out of service, or puts it back."""
        m = self._members[member]
        if m.offline == offline:
            return []
        m.offline = offline
        return self._decide(Cause.ADMIN)

    # -- queries -----------------------------------------------------------------------------
    def member_state(self, member: str) -> MemberState:
        """The member's current state."""
        state = self._members[member].state
        assert state is not None, "start() has not run"
        return state

    def members(self) -> list[str]:
        """Member names in configuration order."""
        return list(self._members)

    def address_host(self) -> str | None:
        """Active-backup: the member hosting every data address (the active one)."""
        return self.active

    def address_hosts(self) -> dict[str, str | None]:
        """Each data address's hosting member (active-backup: the active one for all)."""
        if self.mode == LOAD_SPREAD:
            return dict(self.hosts)
        return dict.fromkeys(self.addresses, self.active)

    # -- the decision ------------------------------------------------------------------------
    def _decide(self, cause: Cause) -> list[Action]:
        return self._spread(cause) if self.mode == LOAD_SPREAD else self._elect(cause)

    def _member_states(self, active: set[str], cause: Cause) -> list[Action]:
        actions: list[Action] = []
        for m in self._members.values():
            if m.offline:
                new = MemberState.OFFLINE
            elif not m.healthy:
                new = MemberState.FAILED
            elif m.name in active:
                new = MemberState.ACTIVE
            else:
                new = MemberState.STANDBY
            if new != m.state:
                actions.append(MemberChanged(m.name, m.state, new, cause))
                m.state = new
        return actions

    def _group_state(self, cause: Cause) -> list[Action]:
        usable = sum(1 for m in self._members.values() if m.usable)
        state = (GroupState.FAILED if usable == 0
                 else GroupState.OK if usable == len(self._members) else GroupState.DEGRADED)
        if state == self.state:
            return []
        old, self.state = self.state, state
        return [GroupChanged(old, state, cause)]

    def _carrier(self, on: bool) -> list[Action]:
        if on == self.carrier:
            return []
        self.carrier = on
        return [SetCarrier(on)]

    def _spread(self, cause: Cause, changed: bool = False) -> list[Action]:
        """Load spreading's decision; ``changed``: the data addresses changed, so the table
        is set again even if nothing moved (a removed address leaves it)."""
        old_active = set(self.spread)
        usable = [m for m in self._order if m.usable]
        usable_names = {m.name for m in usable}
        if self.failback or not old_active or old_active - usable_names:
            self._spares.clear()  # nobody held back: or someone left and everyone is needed
        else:
            self._spares |= {m.name for m in usable
                             if not m.standby and m.name not in old_active}
        self._spares &= usable_names
        regular = [m for m in usable if not m.standby and m.name not in self._spares]
        missing = sum(1 for m in self._members.values() if not m.standby) - len(regular)
        standbys = [m for m in usable if m.standby]
        if not self.failback:  # one standing in keeps its place against a repaired standby
            standbys.sort(key=lambda m: m.name not in old_active)
        chosen = {m.name for m in regular + standbys[:max(missing, 0)]}
        active = tuple(m.name for m in self._order if m.name in chosen)
        hosts = place(self.addresses, active, self.hosts, self.home, self.failback)
        actions = self._member_states(set(active), cause)
        moved = [a for a in self.addresses if hosts[a] != self.hosts[a]]
        if active != self.spread or moved or changed or cause in FIRST:
            actions.append(SetSpread(active, tuple(hosts.items())))
        actions.extend(AddressMoved(a, self.hosts[a], hosts[a], cause) for a in moved)
        self.spread, self.hosts = active, hosts
        self.active = active[0] if active else None
        actions.extend(self._carrier(bool(active)))
        announce = self.addresses if cause in FIRST else moved
        for member in active:
            mine = tuple(a for a in announce if hosts[a] == member)
            if mine:
                actions.append(Announce(member, mine))
        actions.extend(self._group_state(cause))
        return actions

    def _choose(self) -> str | None:
        usable = [m for m in self._order if m.usable]
        if not usable:
            return None
        best = usable[0]
        current = self._members.get(self.active) if self.active else None
        if current is None or not current.usable or self.failback:
            return best.name
        if current.standby and not best.standby:
            return best.name
        return current.name

    def _elect(self, cause: Cause) -> list[Action]:
        new_active = self._choose()
        old_active = self.active
        self.active = new_active
        actions = self._member_states({new_active} if new_active else set(), cause)
        moved = new_active != old_active
        if moved or cause in FIRST:
            rx = frozenset([new_active]) if new_active else frozenset()
            actions.append(SetForwarding(new_active, rx))
        if moved:
            actions.extend(AddressMoved(a, old_active, new_active, cause) for a in self.addresses)
        actions.extend(self._carrier(new_active is not None))
        # Announce last: the new member already forwards and the carrier is on.
        if (moved or cause in FIRST) and new_active is not None and self.addresses:
            actions.append(Announce(new_active, self.addresses))
        actions.extend(self._group_state(cause))
        return actions
