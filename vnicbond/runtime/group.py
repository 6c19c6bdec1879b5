"""One group at run time: its engine's effects carried out on the TAP, the datapath and the wire.

A :class:`GroupRuntime` owns one group's TAP, datapath, members (:mod:`vnicbond.runtime.member`),
isolation (:mod:`vnicbond.system.isolation`) and its one timer, and feeds its engine
(:class:`vnicbond.core.engine.GroupEngine`) with what happens: link changes, probe frames, the
timer, admin requests, reloads. Whatever the engine returns is carried out by :meth:`apply`, in
order, and the timer is re-armed at the engine's next deadline. It also handles the group's
NIC hot-plug (a member's NIC deleted, renamed, moved away, or a new NIC taking its name) and
the system side of a reload (members opened and closed, addresses changed).

It decides nothing: every rule lives in the engine. The daemon (:mod:`vnicbond.runtime.daemon`)
creates it, routes link events to it and runs its background tasks.

Its size (under 500 lines) is that of one group's life: start, stop, effects, timer, hot-plug,
reload and the hand-over of an upgrade, each the system side of an engine input. What stands
on its own has its own module: a member (:mod:`~vnicbond.runtime.member`), the guests
(:mod:`~vnicbond.runtime.guests`), the MTU (:mod:`~vnicbond.runtime.mtu`), the TAP's addresses
(:mod:`~vnicbond.runtime.tapaddrs`), the status (:mod:`~vnicbond.runtime.status`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
from ipaddress import ip_interface
from typing import Any

from vnicbond.config import GroupConfig
from vnicbond.core.detector import HealthChanged, ProbeAnswered
from vnicbond.core.engine import Effect, GroupEngine
from vnicbond.core.events import Event, EventLog
from vnicbond.core.model import (
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
from vnicbond.core.reload import group_changes
from vnicbond.datapath import Datapath
from vnicbond.runtime.guests import TapGuests
from vnicbond.runtime.member import Member
from vnicbond.runtime.mtu import GroupMtu
from vnicbond.runtime.tapaddrs import TapAddresses
from vnicbond.system import netlink
from vnicbond.system.isolation import Isolation, IsolationError
from vnicbond.system.netlink import LinkInfo
from vnicbond.system.packet import inherited_member_socket
from vnicbond.system.ring import Geometry, MemberRings
from vnicbond.system.tap import Tap
from vnicbond.wire.announce import announcement, mac_announcement
from vnicbond.wire.mac import format_mac

log = logging.getLogger("vnicbond")

Spawn = Callable[[Awaitable[Any]], None]


class GroupRuntime:
    """One group's live objects and the glue between them and its engine."""

    def __init__(self, cfg: GroupConfig, state_file: str, events: EventLog, spawn: Spawn,
                 relist: Callable[[], None]) -> None:
        """``spawn`` runs a background task for the group; ``relist`` asks netlink to report
        every link again."""
        self.cfg = cfg
        self.engine = GroupEngine(cfg)
        self.events = events
        self.members = {m.name: Member(m.name, cfg.name) for m in cfg.members}
        #: The guests behind the TAP (a bridge's VMs, macvlans) and their MACs.
        self.guests = TapGuests(cfg, self.engine, self.apply, spawn)
        #: The TAP's addresses and routes as the system configures them, followed.
        self.tap_addresses = TapAddresses(cfg.name, self.engine, self.apply)
        self.tap_addresses.on_addresses = self._warm_announcements
        #: Called with the TAP's carrier whenever the engine switches it (readiness).
        self.on_carrier: Callable[[bool], None] | None = None
        self.isolation = Isolation(cfg.name, [m.name for m in cfg.members], state_file)
        #: The record saying the TAP is vnicbond's (:mod:`vnicbond.system.tap`).
        self.tap_record = os.path.splitext(state_file)[0] + ".tap"
        self.tap: Tap | None = None
        self._tap_link: LinkInfo | None = None
        self.datapath: Datapath | None = None
        #: metrics.RttHistogram when metrics are on: fed with every counted probe reply.
        self.rtt: Any = None
        self._spawn = spawn
        self._relist = relist
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        #: Isolation changes run in worker threads, one at a time and in the order asked
        #: (a NIC's release must not land after its successor's adoption).
        self._isolating = asyncio.Lock()
        #: The group's MTU: the TAP's, followed by the members and the datapath.
        self.mtu = GroupMtu(self, spawn, self._isolate)

    @property
    def name(self) -> str:
        """The group's (and its TAP's) name."""
        return self.cfg.name

    # -- before the event loop -----------------------------------------------------------------
    def create_tap(self) -> Tap:
        """Create the group's TAP, or adopt the one a crash left (:mod:`vnicbond.system.tap`):
        the one step that may need root's access to /dev/net/tun."""
        try:
            self.tap = Tap.open(self.cfg.name, self.cfg.mac, self.cfg.mtu, self.tap_record)
        except OSError as e:
            hint = ""
            if e.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
                hint = (f" (uid {os.geteuid()} may not open /dev/net/tun: make it accessible, "
                        "as most distributions do with mode 0666, or start as root with "
                        "--user NAME)")
            elif e.errno == errno.EBUSY:
                hint = f" (another process has {self.cfg.name} open)"
            raise RuntimeError(f"group {self.cfg.name}: cannot create TAP device: "
                               f"{e.strerror or e}{hint}") from None
        if self.tap.adopted:
            log.warning("group %s: adopted the existing TAP %s (index %d%s)", self.name,
                        self.tap.name, self.tap.index,
                        "" if self.tap.ours else ", not made by vnicbond: left in place on stop")
        self.guests.attach(self.tap.name)
        return self.tap

    def inherit_tap(self, kept: dict[str, Any]) -> Tap:
        """Take over the TAP the daemon's previous code had open (``vnicbond upgrade``:
        :meth:`handover`'s ``tap``). Raises OSError, ValueError or KeyError if the descriptor
        is not that TAP."""
        self.tap = Tap.inherit(int(kept["fd"]), self.cfg.name, int(kept["index"]),
                               bool(kept["ours"]), self.tap_record)
        self.guests.attach(self.tap.name)
        return self.tap

    def configure_system(self, resumed: bool = False) -> None:
        """Isolate the members (``resumed``: the daemon's previous code did, and
        :meth:`vnicbond.system.isolation.Isolation.resume` read its record back), bring the
        TAP up with its addresses and routes, and read the members' links (synchronous
        netlink: before the loop runs)."""
        cfg = self.cfg
        assert self.tap is not None
        if not resumed:
            self.isolation.apply()
        self.mtu.prepare()
        self.tap.up()
        routes = [(str(r.to), str(r.via) if r.via else None) for r in cfg.routes]
        netlink.configure_addresses(cfg.name, cfg.addresses, routes)
        self.tap_addresses.open()
        for member in self.members.values():
            member.link = netlink.get_link(member.name)
        # An adopted TAP may already be a bridge port, with no event to say so.
        self._tap_link = netlink.get_link(cfg.name)

    # -- in the event loop -----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, kept: dict[str, Any] | None = None
              ) -> None:
        """Open the members, start forwarding, make the first election, arm the timer.
        ``kept``: what the daemon's previous code handed over (``vnicbond upgrade``:
        :meth:`handover`): its members' sockets are adopted and its decisions go on."""
        assert self.tap is not None
        self._loop = loop
        self.datapath = Datapath(loop, self.tap.fd, self.cfg.mac, self.mtu.value,
                                 self.guests.table)
        self.datapath.on_guests = self.guests.changed
        self.guests.on_promiscuous = self.datapath.set_promiscuous
        for m in self.cfg.members:
            taken = (kept or {}).get("sockets", {}).get(m.name)
            if taken is None or not self._adopt(self.members[m.name], taken):
                self._open(self.members[m.name])
        self.datapath.start()
        self._warm_announcements()
        links = {name: m.up for name, m in self.members.items()}
        macs = {name: m.mac for name, m in self.members.items()}
        if kept is None:
            self.apply(self.engine.start(links, macs, time.monotonic()))
        else:
            self._resume(kept, links, macs)
        if self._tap_link is not None:
            self.guests.link(self._tap_link, deleted=False)  # its promiscuity as found
        self.tap_addresses.start(loop)
        self.guests.start(loop)

    # -- taking over from the daemon's previous code (vnicbond upgrade) ---------------------
    def handover(self) -> tuple[dict[str, Any], list[int]]:
        """What new code taking over the daemon needs to go on with this group, as JSON (the
        TAP, each open member's socket with its ring cursors, the engine's decisions, the
        guests' MACs), and the descriptors to keep open across the exec."""
        assert self.tap is not None
        members = {name: kept for name, m in self.members.items()
                   if (kept := m.handover()) is not None}
        state = {"name": self.name, "mode": self.cfg.mode, "mac": self.cfg.mac.hex(),
                 "mtu": self.cfg.mtu, "members": [m.name for m in self.cfg.members],
                 "tap": {"fd": self.tap.fd, "index": self.tap.index, "ours": self.tap.ours},
                 "sockets": members, "engine": self.engine.snapshot(),
                 "guests": self.guests.table.snapshot()}
        return state, [self.tap.fd, *(kept["fd"] for kept in members.values())]

    def busy(self) -> bool:
        """Whether a change of the members' isolation is under way (in a worker thread)."""
        return self._isolating.locked() or any(m.attaching for m in self.members.values())

    def _adopt(self, member: Member, kept: dict[str, Any]) -> bool:
        """Take over a member's data socket from the daemon's previous code, its rings at
        the cursors where forwarding stopped; False (the socket closed) if it is not the
        member's any more or its rings do not map as described."""
        assert self._loop is not None and self.datapath is not None
        try:
            sock = inherited_member_socket(int(kept["fd"]), member.name)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: member %s: cannot take its socket over (%s); opening it afresh",
                        self.name, member.name, e)
            return False
        try:
            accepted = {bytes.fromhex(mac) for mac in kept["accepted"]}
            everything = bool(kept["accepting_all"])
            heads = int(kept["rx_head"]), int(kept["tx_head"])
            rx, tx = Geometry(*kept["rx"]), Geometry(*kept["tx"])
            rings = MemberRings(sock, rx, tx, create=False)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: member %s: cannot take its rings over (%s); opening it afresh",
                        self.name, member.name, e)
            sock.close()
            return False
        rings.rx.head, rings.tx.head = heads[0] % rings.rx.count, heads[1] % rings.tx.count
        # (the socket keeps what the NIC was asked to accept: nothing to ask again)
        member.probe_replies = self._probe_replies()
        member.adopt(self._loop, self.datapath, sock, rings, accepted, everything,
                     self._on_probe_frames, self.cfg.mac)
        self._configure(member)
        return True

    def _resume(self, kept: dict[str, Any], links: dict[str, bool],
                macs: dict[str, bytes]) -> None:
        """Go on with the previous code's decisions and guest MACs; a part that cannot be
        read starts afresh (logged)."""
        now = time.monotonic()
        try:
            effects = self.engine.resume(kept["engine"], links, macs, now)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("%s: cannot go on with the previous code's decisions (%s); deciding "
                        "afresh", self.name, e)
            self.engine = self.guests.engine = GroupEngine(self.cfg)
            effects = self.engine.start(links, macs, now)
        self.apply(effects)
        try:
            self.guests.table.restore(kept["guests"])
        except (ValueError, KeyError, TypeError) as e:
            log.warning("%s: cannot take the guest MACs over (%s); learning them afresh",
                        self.name, e)
        self.guests.changed()

    def stop(self) -> None:
        """Stop the timers, close every member, stop forwarding. Never raises."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.guests.stop()
        self.tap_addresses.stop()
        for member in self.members.values():
            member.close()
        if self.datapath is not None:
            self.datapath.stop()

    def _probe_replies(self) -> tuple[int, bytes]:
        """The ICMP identifier and token prefix of the daemon's probes (their replies are
        kept from the TAP)."""
        return self.engine.prober.ident, self.engine.prober.token[:4]

    def _open(self, member: Member) -> None:
        assert self._loop is not None and self.datapath is not None
        member.probe_replies = self._probe_replies()
        member.open(self._loop, self.datapath, self.cfg.mac, self.mtu.value,
                    self._on_probe_frames)
        self._configure(member)
        self.guests.accept_on(member)

    def _configure(self, member: Member) -> None:
        """The member's test address and probing as the configuration and engine have them."""
        member.configure(self.engine.test_address(member.name),
                         self.engine.probe_sockets(member.name), self.cfg.probe.transitive)

    def _configure_all(self) -> None:
        """Every member's probing as the engine has it now (a reload)."""
        for member in self.members.values():
            self._configure(member)

    def _warm_announcements(self) -> None:
        """Build every announcement now (and import scapy), not in the middle of a failover:
        also with no address, a failover announces the guests' MACs."""
        mac_announcement(self.cfg.mac)
        for address in self.engine.addresses:
            for mac in (self.cfg.mac, *(m.mac for m in self.members.values() if m.mac)):
                announcement(mac, address)

    # -- the engine's inputs and effects -------------------------------------------------------
    def apply(self, effects: list[Effect]) -> None:
        """Carry out the engine's effects in order, then re-arm the timer."""
        assert self.datapath is not None and self.tap is not None
        for effect in effects:
            match effect:
                case SetForwarding(tx=tx, rx=rx):
                    self.datapath.set_forwarding(tx, rx)
                case SetSpread(active=active, hosts=hosts):
                    self.datapath.set_spread(active, {ip_interface(text).ip.packed: member
                                                      for text, member in hosts})
                case SetCarrier(on=on):
                    self.tap.set_carrier(on)
                    if self.on_carrier is not None:
                        self.on_carrier(on)
                case SendAnnouncement(member=member, mac=mac, addresses=addresses):
                    for address in addresses:
                        self.datapath.send_frame(member, announcement(mac, address))
                case SendProbeFrames(member=member, frames=frames):
                    self.members[member].send_probe_frames(frames)
                case SetProbing(member=member):
                    if member in self.members:
                        self._configure(self.members[member])
                case SendMacAnnouncement(member=member, macs=macs):
                    for mac in macs:
                        self.datapath.send_frame(member, mac_announcement(mac))
                case SetMacHosts(hosts=hosts, removed=removed):
                    self.datapath.set_mac_hosts(hosts, removed)
                case SetMemberFilter(add=add, remove=remove, promiscuous=promiscuous):
                    for m in self.members.values():
                        m.accept(add, remove, promiscuous)
                case Event():
                    self.events.record(effect, time.time())
                    log.info("%s", effect.log_line())
                case HealthChanged(member=member, healthy=healthy, reason=reason):
                    log.info("%s: member %s %s: %s", self.name, member,
                             "healthy" if healthy else "unhealthy", reason)
                case ProbeAnswered(member=member, target=target, rtt_ms=rtt_ms):
                    if self.rtt is not None:
                        self.rtt.observe(self.name, member, target, rtt_ms)
        self._arm()

    def _arm(self) -> None:
        """Keep exactly one timer, at the engine's next deadline or when a guest MAC ages
        out, whichever comes first."""
        deadlines = [d for d in (self.engine.next_deadline(), self.guests.next_expiry())
                     if d is not None]
        deadline = min(deadlines) if deadlines else None
        if deadline == self._deadline and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None and self._loop is not None:
            # The engine's clock is time.monotonic() (the loop's has only milliseconds).
            delay = max(0.0, deadline - time.monotonic())
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._deadline = None
        now = time.monotonic()
        self.guests.expire(now)
        self.apply(self.engine.tick(now))

    def _on_probe_frames(self, member: str, frames: list[bytes]) -> None:
        self.apply(self.engine.probe_frames(member, frames, time.monotonic()))

    def set_offline(self, member: str, offline: bool) -> bool:
        """The operator's ``offline``/``online``; returns whether anything changed. Raises
        :class:`vnicbond.core.engine.AdminRefused`."""
        changed, effects = self.engine.set_offline(member, offline, time.monotonic())
        self.apply(effects)
        return changed

    # -- NIC hot-plug ----------------------------------------------------------------------------
    def on_link(self, info: LinkInfo, deleted: bool) -> None:
        """A link event. Members are known by the index of the NIC that carries their name:
        their sockets are bound to that device. If it is deleted, moved to another namespace
        or renamed, the member fails like a pulled cable; a NIC that then takes the member's
        name (created, renamed or moved in) is isolated and taken back through the normal
        repair path. Events about the TAP and what is stacked on it go to guests' rules."""
        self.mtu.link(info, deleted)
        if self.guests.link(info, deleted):
            return
        member = next((m for m in self.members.values()
                       if m.link is not None and m.link.index == info.index), None)
        if member is not None:
            if not deleted and info.name == member.name:
                up = member.up
                member.link_changed(info)
                if info.up != up:
                    log.debug("link %s: %s", member.name, "up" if info.up else "down")
                    self.apply(self.engine.link(member.name, info.up, time.monotonic()))
                return
            self._nic_gone(member, None if deleted else info.name)
        if deleted:
            return
        named = self.members.get(info.name)
        if named is not None and named.link is None and not named.attaching:
            self._spawn(self._nic_back(named))

    def _nic_gone(self, member: Member, now_called: str | None) -> None:
        """The member's NIC was deleted, moved away or renamed: fail it, close its sockets."""
        how = f"renamed to {now_called}" if now_called else "removed or moved to another namespace"
        log.warning("%s: member %s's NIC was %s; the member is failed until a NIC of that "
                    "name appears", self.name, member.name, how)
        member.link = None
        member.close()
        self.apply(self.engine.link(member.name, False, time.monotonic()))
        self._spawn(self._isolate(self.isolation.release, member.name, now_called))

    async def _nic_back(self, member: Member) -> None:
        """Take back a member whose name a new NIC took: isolate it, open it, and hand its
        link to the engine, which repairs the member by the usual rules."""
        loop = asyncio.get_running_loop()
        member.attaching = True
        try:
            await self._isolate(self.isolation.adopt, member.name)
            await self.mtu.join(member.name)
            info = await loop.run_in_executor(None, netlink.get_link, member.name)
            if info is None or self.members.get(member.name) is not member:
                raise IsolationError("it went away again")
            self._open(member)
            member.link_changed(info)
            log.warning("%s: member %s is back on a new NIC (index %d, %s)", self.name,
                        member.name, info.index, format_mac(member.mac))
            self.apply(self.engine.nic_back(member.name, member.mac, info.up, time.monotonic()))
        except (OSError, IsolationError) as e:
            log.warning("%s: cannot take member %s back: %s", self.name, member.name,
                        getattr(e, "strerror", None) or e)
            member.close()
        finally:
            member.attaching = False
        # Link changes that arrived while we worked were not ours yet: read them all again.
        self._relist()

    async def recheck(self) -> None:
        """Link events were lost: find members whose NIC went away (a dump cannot say)."""
        loop = asyncio.get_running_loop()
        for member in list(self.members.values()):
            known = member.link
            if known is None:
                continue
            info = await loop.run_in_executor(None, netlink.get_link, member.name)
            if member.link is not known:
                continue  # an event about it arrived meanwhile: that one is newer
            if info is None or info.index != known.index:
                self.on_link(known, deleted=True)  # as the lost event would have
                if info is not None:
                    self.on_link(info, deleted=False)

    async def _isolate(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one isolation change off the event loop, after those asked for before it;
        returns what ``fn`` returns."""
        async with self._isolating:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- reload ----------------------------------------------------------------------------------
    async def reload(self, cfg: GroupConfig) -> dict[str, list[str]]:
        """Apply a new configuration of this group (the daemon has checked that a reload may
        make every change): members and addresses on the system, then the engine."""
        loop = asyncio.get_running_loop()
        changes = group_changes(self.cfg, cfg)
        # Status may be asked for between the steps: the members stay those of self.cfg until
        # both change together.
        for name in changes.members_removed:
            self.members[name].remove()
            await self._isolate(self.isolation.remove_member, name)
        added = {}
        for name in changes.members_added:
            await self._isolate(self.isolation.add_member, name)
            await self.mtu.join(name)
            member = added[name] = Member(name, cfg.name)
            member.link = await loop.run_in_executor(None, netlink.get_link, name)
            assert self._loop is not None and self.datapath is not None
            member.probe_replies = self._probe_replies()
            member.open(self._loop, self.datapath, cfg.mac, self.mtu.value,
                        self._on_probe_frames)
            self.guests.accept_on(member)
        self.tap_addresses.pause()  # the engine hears of configured addresses before the kernel
        try:
            await loop.run_in_executor(None, netlink.change_addresses, cfg.name,
                                       changes.addresses_added, changes.addresses_removed)
        except BaseException:
            self.tap_addresses.resume()
            raise
        self.cfg = cfg
        self.members = {m.name: self.members.get(m.name) or added[m.name] for m in cfg.members}
        links = {name: m.up for name, m in self.members.items()}
        macs = {name: m.mac for name, m in self.members.items()}
        effects = self.engine.reconfigure(cfg, links, macs, time.monotonic())
        self.guests.reconfigure(cfg)
        self._configure_all()
        self._warm_announcements()
        self.apply(effects)
        self.tap_addresses.resume()
        return changes.summary()
