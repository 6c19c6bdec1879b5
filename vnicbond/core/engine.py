"""The group engine: every decision about one group, composed, with no I/O and no clock.

It owns one group's failure detector (:mod:`vnicbond.core.detector`), its election of active
members and address hosts (:mod:`vnicbond.core.group`), who probes what from where and the
probes' wire side (:mod:`vnicbond.core.probing`, :mod:`vnicbond.core.prober`), the rate limit
on answers for test and link-local addresses, the counters
(failovers, address moves, probe frames by outcome), the announcement schedule, and the
events it reports (:mod:`vnicbond.core.events`). Inputs go in, with the time:

======================  ==============================================================
input                   what it is
======================  ==============================================================
:meth:`start`           the members' links and MACs as found at start-up
:meth:`link`            a member's link went up or down (a NIC that went away: down)
:meth:`nic_back`        a new NIC took a member's name (its MAC and link)
:meth:`probe_frames`    frames read from a member's probe sockets
:meth:`tick`            the time reached :meth:`next_deadline`
:meth:`set_offline`     the operator takes a member out of service or puts it back
:meth:`reconfigure`     a reload's new configuration for the group
:meth:`addresses_read`  the addresses on the TAP, as the kernel has them now
:meth:`gateways_read`   the gateways of the routes through the TAP in the main table
:meth:`resume`          instead of :meth:`start`: new code takes over (``vnicbond
                        upgrade``) from the old code's :meth:`snapshot`
======================  ==============================================================

and effects come out, for the group runtime (:mod:`vnicbond.runtime.group`) to carry out in
order: :class:`SetForwarding`/:class:`SetSpread` (the datapath's table), :class:`SetCarrier`
(the TAP's carrier), :class:`SendAnnouncement` and :class:`SendProbeFrames` (frames to send),
:class:`SetProbing` (what a member's probe sockets take), and, to be recorded, logged or
measured, :class:`Event`, :class:`HealthChanged`, :class:`ProbeAnswered`.

Rules that live here (the modules it composes hold the rest):

* Health changes from one input are decided in one election (a group failure fails every
  member at once, so traffic never hops to a member about to fail too).
* An administrator may not take the last usable member offline.
* A failover is a member becoming active that was not new; an address move is an address
  leaving a member (not a first placement).
* Announcements: ``announce.count`` rounds, ``announce.interval`` apart, the first at once.
  In active-backup they announce the group's MAC (the active member sends with it), in load
  spreading the hosting member's own. A new forwarding decision cancels the rounds left.
* Answers for a test or link-local address (ARP replies, neighbour advertisements): at most
  ``ANSWER_RATE`` a second per member, ``ANSWER_BURST`` at once; answers to the daemon's own
  link-layer probes (authenticated) are not limited.
* After every input, the probing plan follows the election as it stands (a new active
  member probes from the data address, the others transitively); the detector gets the
  plan's targets, keeping what it knew of those that stay.
* Events for the FDT in use (kind ``fdt``) and for targets found or dropped (kind
  ``target``); a target found by all-hosts ping that stops answering a member while another
  answers it is dropped and another looked for.

Its size (under 500 lines) is that of the composition: each input feeds the detector, the
election and the probing plan in turn and joins their outputs; the rules themselves live in
the modules it composes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from vnicbond.config import GroupConfig
from vnicbond.core.addresses import AddressChanges, DataAddresses, TapAddress
from vnicbond.core.detector import (
    NUM_PROBE_FAILS,
    Detector,
    FdtChanged,
    HealthChanged,
    Output,
    ProbeAnswered,
    SendProbe,
    TargetDropped,
)
from vnicbond.core.events import Event
from vnicbond.core.group import ACTIVE_BACKUP, LOAD_SPREAD, Group
from vnicbond.core.guests import Guests
from vnicbond.core.model import (
    Action,
    AddressMoved,
    Announce,
    Cause,
    GroupChanged,
    MemberChanged,
    MemberState,
    SendAnnouncement,
    SendMacAnnouncement,
    SendProbeFrames,
    SetCarrier,
    SetForwarding,
    SetMacHosts,
    SetMemberFilter,
    SetProbing,
    SetSpread,
)
from vnicbond.core.prober import TokenBucket
from vnicbond.core.probing import Probing
from vnicbond.core.targets import MEMBER_PREFIX, MULTICAST, IPAddress

#: Answers for a member's test address: per second, and at once.
ANSWER_RATE = 100.0
ANSWER_BURST = 20.0
#: What became of a frame read from a member's probe sockets: a matched probe reply, an
#: ARP/NDP question for the test address answered or refused by the rate limit, or nothing
#: (malformed, forged, stale, or not ours). ``received`` counts them all.
FRAME_OUTCOMES = ("received", "replies", "answered", "rate_limited", "ignored")

Effect = (SetForwarding | SetSpread | SetCarrier | SendAnnouncement | SendMacAnnouncement
          | SendProbeFrames | SetProbing | SetMacHosts | SetMemberFilter | Event | HealthChanged
          | ProbeAnswered)


class AdminRefused(Exception):
    """An administrative request the rules refuse; the message says why, in one line."""


class GroupEngine:
    """One group's decisions. Every input returns the effects to carry out, in order."""

    def __init__(self, cfg: GroupConfig, rng: random.Random | None = None,
                 token: bytes | None = None, ident: int | None = None,
                 secret: bytes | None = None) -> None:
        self.cfg = cfg
        #: The data addresses: the configured ones and the system's (:mod:`.addresses`).
        self.data = DataAddresses([str(a) for a in cfg.addresses])
        self.addresses = self.data.data()
        self.group = Group(cfg.name, [(m.name, m.standby) for m in cfg.members],
                           self.addresses, failback=cfg.failback, mode=cfg.mode)
        #: Who probes what from where (:mod:`.probing`), and the prober's frames.
        self.probing = Probing(cfg, token, ident, secret)
        self.prober = self.probing.prober
        self.detector = Detector([(m.name, ()) for m in cfg.members],
                                 cfg.failure_detection_time_ms, rng)
        #: Each member's own MAC (probes and load spreading's announcements use it).
        self.macs: dict[str, bytes] = {}
        #: Each member's link as last reported.
        self.links: dict[str, bool] = {}
        self.answer_limit = {m.name: TokenBucket(ANSWER_RATE, ANSWER_BURST) for m in cfg.members}
        #: Per member: frames read from its probe sockets, by :data:`FRAME_OUTCOMES`.
        self.frames = {m.name: dict.fromkeys(FRAME_OUTCOMES, 0) for m in cfg.members}
        self.failovers = 0
        self.address_moves = 0
        #: The guests' MACs behind the TAP: where they live, what the members accept.
        self.guests = Guests(cfg.mode == LOAD_SPREAD, cfg.failback)
        #: Announcement rounds still to send: (when, the round).
        self._rounds: list[tuple[float, SendAnnouncement | SendMacAnnouncement]] = []

    # -- inputs ------------------------------------------------------------------------------
    def start(self, links: dict[str, bool], macs: dict[str, bytes], now: float) -> list[Effect]:
        """The members' links (up or not) and own MACs as found at start-up: the first
        election, with cause ``start``."""
        self.macs = dict(macs)
        self.links = {m.name: links.get(m.name, False) for m in self.cfg.members}
        effects = self._decided(self.group.start(self.detector.start(links, now)), now)
        return self._replanned(effects, now)

    def snapshot(self) -> dict[str, Any]:
        """What code taking over the running daemon keeps of the group's decisions
        (``vnicbond upgrade``), as JSON: the detector's and the election's state, where the
        guest MACs live, and the counters."""
        return {"detector": self.detector.snapshot(), "group": self.group.snapshot(),
                "guests": self.guests.snapshot(), "failovers": self.failovers,
                "address_moves": self.address_moves, "frames": self.frames,
                "probing": self.probing.snapshot()}

    def resume(self, kept: dict[str, Any], links: dict[str, bool], macs: dict[str, bytes],
               now: float) -> list[Effect]:
        """:meth:`start` for code taking over the running daemon, from :meth:`snapshot`'s:
        the members' health and the election go on where they were, with cause ``upgrade``,
        and so do the counters; guest MACs reported again go back to their members. Raises
        ValueError if ``kept`` is malformed; the engine may then be half-resumed: start a new
        one."""
        try:
            failovers, moves = int(kept["failovers"]), int(kept["address_moves"])
            frames = {str(m): {str(k): int(v) for k, v in dict(c).items()}
                      for m, c in dict(kept["frames"]).items()}
            detector, group = dict(kept["detector"]), dict(kept["group"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the engine's state is malformed: {e!r}") from None
        self.macs = dict(macs)
        self.links = {m.name: links.get(m.name, False) for m in self.cfg.members}
        if "probing" in kept:
            self.probing.restore(dict(kept["probing"]))
        # The targets first, as the election left them, so that their statistics carry over.
        hosts = ({a: group.get("active") for a in self.addresses} if self.cfg.mode == ACTIVE_BACKUP
                 else {a: group.get("hosts", {}).get(a) for a in self.addresses})
        self.probing.update(self.cfg, hosts, self.macs, links, now)
        self.detector.retarget(self._detector_members(), now)
        self.guests.resume(dict(kept.get("guests", {})))
        healthy = self.detector.resume(detector, links, now)
        actions = self.group.resume(group, healthy)
        self.failovers, self.address_moves = failovers, moves
        for member, counts in frames.items():
            if member in self.frames:
                self.frames[member].update((k, v) for k, v in counts.items()
                                           if k in FRAME_OUTCOMES)
        # The members' sockets were opened before the plan existed: say what they take.
        effects: list[Effect] = [self.probe_sockets(m.name) for m in self.cfg.members]
        return self._replanned(effects + self._decided(actions, now), now)

    def link(self, member: str, up: bool, now: float) -> list[Effect]:
        """``member``'s link went up or down (a NIC that went away counts as down)."""
        self.links[member] = up
        return self._replanned(self._detected(self.detector.link(member, up, now), now), now)

    def nic_back(self, member: str, mac: bytes, up: bool, now: float) -> list[Effect]:
        """A new NIC (with MAC ``mac``) took ``member``'s name: probe with its MAC from now
        on, and repair it by the usual rules."""
        self.macs[member] = mac
        return self.link(member, up, now)

    def probe_frames(self, member: str, frames: Iterable[bytes], now: float) -> list[Effect]:
        """Frames read from ``member``'s probe sockets: match the replies, answer the
        questions for its test address (rate-limited), decide once on what changed."""
        counts = self.frames[member]
        bucket = self.answer_limit[member]
        answers: list[bytes] = []
        outputs: list[Output] = []
        found: list[Effect] = []
        for frame in frames:
            counts["received"] += 1
            received = self.prober.receive(member, frame)
            if not (received.answers or received.replies or received.found
                    or received.echoes):
                counts["ignored"] += 1
            counts["answered"] += len(received.echoes)
            answers.extend(received.echoes)
            for ip, router in received.found:
                found.extend(self._found(member, ip, router, now))
            for answer in received.answers:
                if bucket.take(now):
                    counts["answered"] += 1
                    answers.append(answer)
                else:
                    counts["rate_limited"] += 1
            counts["replies"] += len(received.replies)
            for target, seq in received.replies:
                outputs.extend(self.detector.reply(member, target, seq, now))
        effects: list[Effect] = [SendProbeFrames(member, tuple(answers))] if answers else []
        return self._replanned(effects + found + self._detected(outputs, now), now)

    def tick(self, now: float) -> list[Effect]:
        """The time reached :meth:`next_deadline`: announcement rounds that are due, probes
        that ran out or are due, all-hosts pings, the proxy's turn."""
        effects: list[Effect] = [r for when, r in self._rounds if when <= now]
        self._rounds = [(when, r) for when, r in self._rounds if when > now]
        effects += self._detected(self.detector.tick(now), now)
        effects += self._silent_found(now)
        self.probing.rotate({m: self.detector.healthy(m) for m in self.links}, self.links, now)
        effects = self._replanned(effects, now)
        for member, frames in self.probing.discover(now, self.detector.interval):
            effects.append(SendProbeFrames(member, tuple(frames)))
        return effects

    def macs_changed(self, added: list[bytes], removed: list[bytes], now: float
                     ) -> list[Effect]:
        """Guest MACs came and went behind the TAP (:class:`vnicbond.core.fdb.MacTable`):
        place them (load spreading) and set what the members accept. Sends nothing, so the
        datapath may call it in the middle of a batch."""
        return list(self.guests.changed(added, removed, self.group.spread))

    def tap_promiscuous(self, on: bool, now: float) -> list[Effect]:
        """The TAP's promiscuity counter is (or is no longer) above zero: a bridge port, a
        capture, an upper device with extra MACs; the members must accept every frame."""
        return list(self.guests.set_tap_promiscuous(on))

    def addresses_read(self, addresses: Iterable[TapAddress], now: float
                       ) -> tuple[AddressChanges, list[Effect]]:
        """The kernel's whole view of the TAP's addresses now: the data addresses follow
        (:mod:`vnicbond.core.addresses`); new ones are placed and announced, cause
        ``system``. Returns what changed, for the log, and the effects."""
        changes = self.data.read(addresses)
        if not changes.added and not changes.removed:
            return changes, []
        self.addresses = self.data.data()
        return changes, self._replanned(
            self._decided(self.group.set_addresses(self.addresses, Cause.SYSTEM), now), now)

    def gateways_read(self, gateways: Iterable[IPAddress], now: float) -> list[Effect]:
        """The gateways of the routes through the TAP in the kernel's main table now: with no
        targets configured they are the probe targets (:mod:`vnicbond.core.targets`), and the
        members probe them from now on; targets that stay keep their statistics."""
        self.probing.gateways = tuple(dict.fromkeys(gateways))
        return self._replanned([], now)

    def set_offline(self, member: str, offline: bool, now: float) -> tuple[bool, list[Effect]]:
        """Take ``member`` out of service (its traffic moves first) or put it back; returns
        whether anything changed. Raises :class:`AdminRefused` for the last usable member."""
        state = self.group.member_state(member)
        if offline == (state is MemberState.OFFLINE):
            return False, []
        usable = (MemberState.ACTIVE, MemberState.STANDBY)
        if offline and state in usable and not any(
                m != member and self.group.member_state(m) in usable for m in self.group.members()):
            raise AdminRefused(f"cannot take {member} offline: no other member of "
                               f"{self.cfg.name} could carry its traffic")
        effects = self._detected(self.detector.set_offline(member, offline, now), now)
        effects += self._decided(self.group.set_offline(member, offline), now)
        return True, self._replanned(effects, now)

    def reconfigure(self, cfg: GroupConfig, links: dict[str, bool], macs: dict[str, bytes],
                    now: float) -> list[Effect]:
        """A reload: new members, addresses, targets, test addresses, FDT, announcements or
        failback (:mod:`vnicbond.core.reload` says what may change). Members and targets that
        stay keep what is known of them; ``links`` and ``macs`` cover every member of
        ``cfg``. Decides once, with cause ``reload``, and reports the reload."""
        names = [m.name for m in cfg.members]
        self.cfg = cfg
        self.data.reconfigure([str(a) for a in cfg.addresses])
        self.addresses = self.data.data()
        self.macs = {m: macs[m] for m in names}
        self.links = {m: links.get(m, False) for m in names}
        self.guests.failback = cfg.failback
        self.answer_limit = {m: self.answer_limit.get(m) or TokenBucket(ANSWER_RATE, ANSWER_BURST)
                             for m in names}
        self.frames = {m: self.frames.get(m) or dict.fromkeys(FRAME_OUTCOMES, 0) for m in names}
        outputs = self.detector.reconfigure(
            [(m, self.probing.plan[m].targets if m in self.probing.plan else ()) for m in names],
            cfg.failure_detection_time_ms, links, now)
        effects = self._decided(self.group.reconfigure(
            [(m.name, m.standby) for m in cfg.members], self.addresses, cfg.failback,
            {m: self.detector.healthy(m) for m in names}), now)
        effects += self._detected(outputs, now)
        effects = self._replanned(effects, now)
        effects.append(self._event("config", None, "reloaded", Cause.RELOAD))
        return effects

    # -- queries -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When :meth:`tick` must run next (None: nothing pending)."""
        times = [when for when, _ in self._rounds]
        times += [t for t in (self.detector.next_deadline(), self.probing.next_deadline())
                  if t is not None]
        return min(times) if times else None

    @property
    def targets(self) -> dict[str, tuple[str, ...]]:
        """Per member, the targets it probes (IPs, and ``member:NAME``)."""
        return {m: p.targets for m, p in self.probing.plan.items()}

    def probe_sockets(self, member: str) -> SetProbing:
        """What ``member``'s probe sockets must take now (:class:`SetProbing`)."""
        p = self.probing.plan.get(member)
        sources = p.sources if p is not None else ()
        return SetProbing(member, tuple(dict.fromkeys(s.mac for s in sources)),
                          tuple(s.ip.packed for s in sources if s.answers))

    def test_address(self, member: str) -> IPv4Address | IPv6Address | None:
        """``member``'s configured test address, if it has one."""
        test = next(m.test_address for m in self.cfg.members if m.name == member)
        return test.ip if test is not None else None

    def answers_rate_limited(self) -> int:
        """Answers for test addresses refused by the rate limit, in all."""
        return sum(b.dropped for b in self.answer_limit.values())

    # -- the composition ---------------------------------------------------------------------
    def _detector_members(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(m.name, self.probing.plan[m.name].targets if m.name in self.probing.plan
                 else ()) for m in self.cfg.members]

    def _replanned(self, effects: list[Effect], now: float) -> list[Effect]:
        """After an input: the probing plan for the election as it stands now. Members whose
        sources changed get their sockets set (:class:`SetProbing`), the detector its new
        targets (which may change health, and the election, and so the plan again: a few
        rounds at most)."""
        for _ in range(4):
            before = dict(self.probing.plan)
            changed = self.probing.update(self.cfg, self.group.address_hosts(), self.macs,
                                          self.links, now)
            if not changed:
                break
            effects += [self.probe_sockets(m) for m in changed
                        if m not in before
                        or before[m].sources != self.probing.plan[m].sources]
            effects += self._detected(self.detector.retarget(self._detector_members(), now),
                                      now)
        return effects

    def _found(self, member: str, ip: IPAddress, router: bool, now: float = 0.0
               ) -> list[Effect]:
        """A host answered ``member``'s all-hosts ping (or is a router): a target, if the
        finder keeps it."""
        finder = self.probing.finder
        changed = finder.router(ip) if router else finder.found(ip, now)
        if not changed or ip not in finder.targets(ip.version):
            return []
        return [self._event("target", member, "found", Cause.PROBE, str(ip),
                            "a router" if router else "answered an all-hosts ping")]

    def _silent_found(self, now: float) -> list[Effect]:
        """Targets found by all-hosts ping that stopped answering a member while another
        answers it are dropped, and others looked for."""
        effects: list[Effect] = []
        for member, p in self.probing.plan.items():
            if p.mode != MULTICAST:
                continue
            stats = [t for t in self.detector.targets(member)
                     if not t.target.startswith(MEMBER_PREFIX)]
            if not any(t.ok_run for t in stats):
                continue
            for t in stats:
                if t.lost_run >= NUM_PROBE_FAILS and self.probing.finder.drop(
                        ip_address(t.target), now):
                    effects.append(self._event("target", member, "dropped", Cause.PROBE,
                                               t.target, "stopped answering"))
        return effects

    def _detected(self, outputs: list[Output], now: float) -> list[Effect]:
        """The detector's outputs as effects: probes as frames, every health change of this
        input decided in one election."""
        effects: list[Effect] = []
        changes: dict[str, bool] = {}
        cause: Cause | None = None
        for out in outputs:
            if isinstance(out, SendProbe):
                if out.member in self.prober.members:
                    frames = self.prober.probe(out.member, out.target, out.seq, out.resolve)
                    effects.append(SendProbeFrames(out.member, tuple(frames)))
            elif isinstance(out, FdtChanged):
                effects.append(self._event("fdt", None, str(out.new_ms), Cause.PROBE,
                                           str(out.old_ms), out.reason))
            elif isinstance(out, TargetDropped):
                effects.append(self._event("target", out.member, "dropped", Cause.PROBE,
                                           out.target, out.reason))
                if self.probing.mode(out.member) == MULTICAST:
                    self.probing.finder.drop(ip_address(out.target), now)
            else:
                effects.append(out)
                if isinstance(out, HealthChanged):
                    changes[out.member] = out.healthy
                    cause = cause or out.cause
        if changes:
            assert cause is not None
            effects += self._decided(self.group.update_health(changes, cause), now)
        return effects

    def _decided(self, actions: list[Action], now: float) -> list[Effect]:
        """The election's actions as effects: counted, reported, announcements scheduled."""
        effects: list[Effect] = []
        for action in actions:
            match action:
                case SetForwarding(tx=tx):
                    self._rounds.clear()  # a newer decision supersedes rounds still to come
                    effects.append(action)
                    if tx is not None and self.guests.hosts:  # the guests move with it
                        effects.extend(self._rounds_of(
                            SendMacAnnouncement(tx, tuple(self.guests.hosts)), now))
                case SetSpread(active=active):
                    self._rounds.clear()
                    effects.append(action)
                    placed, moves = self.guests.moved(active)
                    effects.extend(placed)
                    for member, moved in moves.items():
                        effects.extend(self._rounds_of(
                            SendMacAnnouncement(member, tuple(moved)), now))
                case SetCarrier(on=on):
                    effects.append(action)
                    effects.append(self._event("carrier", None, "on" if on else "off", None))
                case Announce(member=member, addresses=addresses):
                    effects.extend(self._announce(member, addresses, now))
                case MemberChanged(member=member, old=old, new=new, cause=cause):
                    if old is not None and new is MemberState.ACTIVE:
                        self.failovers += 1
                    effects.append(self._event("member", member, new.value, cause,
                                               old.value if old else None))
                case GroupChanged(old=old, new=new, cause=cause):
                    effects.append(self._event("group", None, new.value, cause,
                                               old.value if old else None))
                case AddressMoved(address=address, old=old, new=new, cause=cause):
                    if old is not None:
                        self.address_moves += 1
                    effects.append(self._event("address", new, address, cause, old))
        return effects

    def _announce(self, member: str, addresses: tuple[str, ...], now: float
                  ) -> list[Effect]:
        """Announce ``addresses`` from ``member``, with the MAC they answer to there."""
        mac = self.cfg.mac if self.cfg.mode == ACTIVE_BACKUP else self.macs[member]
        return self._rounds_of(SendAnnouncement(member, mac, addresses), now)

    def _rounds_of(self, first: SendAnnouncement | SendMacAnnouncement, now: float
                   ) -> list[Effect]:
        """``announce.count`` rounds of ``first``: one now, the others scheduled
        ``announce.interval`` apart."""
        count, interval = self.cfg.announce.count, self.cfg.announce.interval_ms / 1000
        if count <= 0:
            return []
        self._rounds.extend((now + interval * i, first) for i in range(1, count))
        return [first]

    def _event(self, kind: str, member: str | None, state: str, cause: Cause | None,
               old: str | None = None, reason: str | None = None) -> Event:
        return Event(self.cfg.name, kind, member, state, old, cause, reason)
