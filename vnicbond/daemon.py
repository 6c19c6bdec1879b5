"""The daemon: the only event-loop glue.

System events (link changes from netlink, control requests, signals) go to the decision core
(:class:`vnicbond.group.Group`); the actions it returns are carried out here, on the datapath,
the TAP and the wire. Everything the daemon changes on the system is set up in
:meth:`Daemon.setup` before the loop starts and undone in :meth:`Daemon.teardown` after it
stops, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from vnicbond import control
from vnicbond.config import Config, GroupConfig, check_system
from vnicbond.datapath import Datapath
from vnicbond.detector import Detector, HealthChanged, Output, SendProbe
from vnicbond.group import Group
from vnicbond.model import (
    Action,
    AddressMoved,
    Announce,
    Cause,
    GroupChanged,
    MemberChanged,
    SetCarrier,
    SetForwarding,
    SetSpread,
)
from vnicbond.prober import Prober, ProbingMember, TokenBucket
from vnicbond.reload import group_changes, needs_restart
from vnicbond.system import netlink, privilege
from vnicbond.system.isolation import Isolation, IsolationError, recover_stale
from vnicbond.system.netlink import LinkInfo, LinkWatcher
from vnicbond.system.packet import ControlSockets, open_member_socket
from vnicbond.system.tap import Tap
from vnicbond.wire.announce import announcement

log = logging.getLogger("vnicbond")

#: How many state-change events the daemon keeps for ``status``/``events``.
EVENT_HISTORY = 1000
#: Control frames drained per readiness callback.
CONTROL_BATCH = 32
#: Consecutive losses after which an ICMP probe also re-resolves the target's MAC.
RESOLVE_AFTER = 2
#: ARP replies / neighbour advertisements for a member's test address: per second, and burst.
ANSWER_RATE = 100.0
ANSWER_BURST = 20.0
#: What became of a frame read from a member's control socket: a matched probe reply, an
#: ARP/NDP question for the test address answered or refused by the rate limit, or nothing
#: (malformed, forged, stale, or not ours); ``kernel``: dropped unread, the queue being full.
CONTROL_OUTCOMES = ("received", "replies", "answered", "rate_limited", "ignored", "kernel")


class Stop(BaseException):
    """Raised by the signal handler while the daemon is still setting up."""


def state_path(config: Config, group: str) -> str:
    """Where a group's record of changed settings lives: beside the control socket."""
    return os.path.join(os.path.dirname(config.control.socket) or ".", f"{group}.state")


def probe_targets(cfg: GroupConfig) -> tuple[IPv4Address | IPv6Address, ...]:
    """The configured targets, or else the group's on-link routers (its routes' gateways)."""
    if cfg.probe.targets:
        return tuple(cfg.probe.targets)
    return tuple(dict.fromkeys(r.via for r in cfg.routes if r.via is not None))


def member_targets(cfg: GroupConfig) -> dict[str, tuple[IPv4Address | IPv6Address, ...]]:
    """Per member, the targets it probes: those of its test address's family (none without
    a test address, and none for an IPv6 test address with ARP probes, which are IPv4 only)."""
    targets = probe_targets(cfg)
    result = {}
    for m in cfg.members:
        test = m.test_address
        usable = test is not None and not (cfg.probe.method == "arp" and test.version == 6)
        result[m.name] = tuple(t for t in targets if usable and t.version == test.version)
    return result


class GroupRuntime:
    """One group's live objects: its decision core, TAP, sockets and datapath."""

    def __init__(self, cfg: GroupConfig, state_file: str) -> None:
        self.cfg = cfg
        self.addresses = [str(a) for a in cfg.addresses]
        self.group = Group(cfg.name, [(m.name, m.standby) for m in cfg.members],
                           self.addresses, failback=cfg.failback, mode=cfg.mode)
        self.targets = member_targets(cfg)
        self.detector = Detector([(m, [str(t) for t in ts]) for m, ts in self.targets.items()],
                                 cfg.failure_detection_time_ms)
        self.prober: Prober | None = None
        self.control: dict[str, ControlSockets] = {}
        self.answer_limit = {m.name: TokenBucket(ANSWER_RATE, ANSWER_BURST) for m in cfg.members}
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None
        self.isolation = Isolation(cfg.name, [m.name for m in cfg.members], state_file)
        self.tap: Tap | None = None
        self.sockets: dict[str, socket.socket] = {}
        self.datapath: Datapath | None = None
        self.links: dict[str, LinkInfo | None] = {}
        self.announcing: list[asyncio.TimerHandle] = []
        #: Each member's own MAC (load spreading sends with it).
        self.member_macs: dict[str, bytes] = {}
        #: Packed data address -> its text form, for the datapath's lookups.
        self.packed = {a.ip.packed: str(a) for a in cfg.addresses}
        self.failovers = 0
        self.address_moves = 0
        #: Per member: frames on its control socket by outcome (:data:`CONTROL_OUTCOMES`).
        self.control_stats = {m.name: dict.fromkeys(CONTROL_OUTCOMES, 0) for m in cfg.members}
        #: Members whose name a new NIC took and that are being taken back.
        self.attaching: set[str] = set()
        #: Isolation changes run in worker threads, one at a time and in the order asked
        #: (a NIC's release must not land after its successor's adoption).
        self.isolating = asyncio.Lock()

    async def isolate(self, fn: Callable[..., None], *args: str | None) -> None:
        """Run one isolation change off the event loop, after those asked for before it."""
        async with self.isolating:
            await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def close_sockets(self) -> None:
        """Close every member's sockets (teardown). Never raises."""
        for sock in self.sockets.values():
            sock.close()
        for ctl in self.control.values():
            ctl.close()
        self.sockets.clear()
        self.control.clear()


class Daemon:
    """Runs every configured group until told to stop."""

    def __init__(self, config: Config, user: str | None = None) -> None:
        self.config = config
        #: Drop to this user after opening what needs root (``run --user``).
        self.user = user
        self.groups = [GroupRuntime(g, state_path(config, g.name)) for g in config.groups]
        self.members: dict[str, tuple[GroupRuntime, str]] = {
            m.name: (rt, m.name) for rt in self.groups for m in rt.cfg.members}
        self.by_index: dict[int, tuple[GroupRuntime, str]] = {}
        self._replaced: set[str] = set()
        self.watcher: LinkWatcher | None = None
        self.server: control.ControlServer | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_HISTORY)
        self.started = time.time()
        self._seq = 0
        self._undo: list[Callable[[], None]] = []
        self.rtt: Any = None  # metrics.RttHistogram when metrics are on
        self._reloading = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stop: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Set up, serve until SIGTERM/SIGINT, tear down. Raises on set-up failure."""
        import uvloop

        previous = {s: signal.signal(s, self._raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            self.setup()
            uvloop.run(self.serve())
        except Stop:
            log.info("stopped during start-up")
        finally:
            for s in previous:
                signal.signal(s, signal.SIG_IGN)  # finish cleaning up whatever arrives now
            self.teardown()
            for s, handler in previous.items():
                signal.signal(s, handler)

    @staticmethod
    def _raise_stop(signum: int, frame: object) -> None:
        raise Stop()

    def setup(self) -> None:
        """Check privileges, recover from a dead instance, create the TAPs, drop to
        ``--user`` if asked; then isolate members, open sockets and configure the TAPs."""
        if self.user is not None:  # an unknown user, or no root to drop from, fails first
            privilege.resolve_user(self.user)
            if os.geteuid() != 0:
                raise privilege.PrivilegeError(
                    f"--user {self.user}: only root can change user (this is uid "
                    f"{os.geteuid()}); started unprivileged, leave --user out")
        privilege.check()
        for rt in self.groups:  # first: it also refuses to run beside a live instance
            pid = recover_stale(rt.isolation.state_path)
            if pid is not None:
                log.warning("group %s: restored member settings left by dead instance %d",
                            rt.cfg.name, pid)
        check_system(self.config)
        for rt in self.groups:
            self._create_tap(rt)
        if self.user is not None:
            account = privilege.resolve_user(self.user)
            control.prepare_socket_dir(self.config.control.socket, account.pw_uid,
                                       account.pw_gid)
            privilege.drop_to(self.user)
            log.info("running as %s with CAP_NET_ADMIN and CAP_NET_RAW only", account.pw_name)
        control.prepare_socket_path(self.config.control.socket)
        # Subscribe before reading link states, so no change between the two is missed.
        self.watcher = LinkWatcher(self._on_link)
        self._undo.append(self.watcher.close)
        for rt in self.groups:
            self._setup_group(rt)

    def _create_tap(self, rt: GroupRuntime) -> None:
        """Create the group's TAP: the one step that may need root's access to /dev/net/tun."""
        cfg = rt.cfg
        try:
            rt.tap = Tap(cfg.name, cfg.mac, cfg.mtu)
        except OSError as e:
            hint = ""
            if e.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
                hint = (f" (uid {os.geteuid()} may not open /dev/net/tun: make it accessible, "
                        "as most distributions do with mode 0666, or start as root with "
                        "--user NAME)")
            raise RuntimeError(f"group {cfg.name}: cannot create TAP device: "
                               f"{e.strerror or e}{hint}") from None
        self._undo.append(rt.tap.close)

    def _setup_group(self, rt: GroupRuntime) -> None:
        cfg = rt.cfg
        self._undo.append(rt.isolation.restore)
        rt.isolation.apply()
        self._undo.append(rt.close_sockets)
        probing = []
        for m in cfg.members:
            mac = self._open_member(rt, m.name)
            targets = rt.targets[m.name]
            if targets and m.test_address is not None:
                rt.control[m.name] = ControlSockets(m.name, mac, m.test_address.ip.packed)
                probing.append(ProbingMember(m.name, mac, m.test_address.ip, targets))
        if probing:
            rt.prober = Prober(cfg.probe.method, probing)
        assert rt.tap is not None
        rt.tap.up()
        routes = [(str(r.to), str(r.via) if r.via else None) for r in cfg.routes]
        netlink.configure_addresses(cfg.name, cfg.addresses, routes)
        for m in cfg.members:
            info = rt.links[m.name] = netlink.get_link(m.name)
            if info is not None:
                self.by_index[info.index] = (rt, m.name)
        for address in rt.addresses:  # build (and import scapy) now, not in a failover
            for mac in (cfg.mac, *rt.member_macs.values()):
                announcement(mac, address)

    def _open_member(self, rt: GroupRuntime, name: str, group_mac: bytes | None = None) -> bytes:
        """Open a member's data socket (closed at teardown); returns the member's own MAC."""
        sock = open_member_socket(name, group_mac or rt.cfg.mac)
        rt.sockets[name] = sock
        mac: bytes = sock.getsockname()[4]
        rt.member_macs[name] = mac
        return mac

    def teardown(self) -> None:
        """Undo everything :meth:`setup` did, newest first. Never raises."""
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - keep undoing the rest
                log.warning("cleanup step %s failed: %s", getattr(undo, "__qualname__", undo), e)

    async def serve(self) -> None:
        """The event loop's life: start the datapaths and the control socket, wait for a stop."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        assert self.watcher is not None
        self.watcher.overrun = self._resync
        loop.add_reader(self.watcher.fileno(), self.watcher.on_readable)
        try:
            for rt in self.groups:
                assert rt.tap is not None
                rt.datapath = Datapath(loop, rt.tap.fd, rt.cfg.mac, rt.cfg.mtu)
                tests = {m.name: m.test_address.ip.packed for m in rt.cfg.members
                         if m.test_address is not None}
                for name, sock in rt.sockets.items():
                    rt.datapath.add_port(name, sock, rt.member_macs[name], tests.get(name))
                rt.datapath.start()
                links = {m: bool(info and info.up) for m, info in rt.links.items()}
                self._apply(rt, rt.group.start(rt.detector.start(links, time.monotonic())))
                for member, ctl in rt.control.items():
                    for sock in ctl:
                        loop.add_reader(sock.fileno(), self._on_control, rt, member, sock)
                self._arm(rt)
            if self.config.metrics.listen is not None:
                self._start_metrics(loop, self.config.metrics.listen)
            self.server = control.ControlServer(self.config.control.socket, self._handle)
            await self.server.start()
            _notify_systemd("READY=1")
            log.info("ready: %s", ", ".join(
                f"{rt.cfg.name} ({len(rt.cfg.members)} members)" for rt in self.groups))
            await self._stop.wait()
            log.info("stopping")
        finally:
            _notify_systemd("STOPPING=1")
            loop.remove_reader(self.watcher.fileno())
            for rt in self.groups:
                for handle in rt.announcing:
                    handle.cancel()
                if rt.timer is not None:
                    rt.timer.cancel()
                for ctl in rt.control.values():
                    for sock in ctl:
                        loop.remove_reader(sock.fileno())
                if rt.datapath is not None:
                    rt.datapath.stop()
            if self.server is not None:
                await self.server.close()

    def _start_metrics(self, loop: asyncio.AbstractEventLoop, listen: tuple[str, int]) -> None:
        """Serve Prometheus metrics (imported only when configured: clients stay light)."""
        from vnicbond import metrics

        self.rtt = metrics.RttHistogram()
        collector = metrics.StatusCollector(metrics.threadsafe_source(loop, self.status),
                                            self.rtt)
        try:
            stop = metrics.start_server(listen, collector.registry)
        except OSError as e:
            raise RuntimeError(f"metrics: cannot listen on {listen[0]}:{listen[1]}: "
                               f"{e.strerror or e}") from None
        self._undo.append(stop)
        log.info("metrics on http://%s:%d/metrics", *listen)

    # -- events in ---------------------------------------------------------------------------
    def _on_link(self, info: LinkInfo, deleted: bool) -> None:
        # Members are known by the interface index of the NIC that carries their name: the
        # sockets are bound to that device. If it is deleted, moved to another namespace or
        # renamed, the member fails like a pulled cable; a NIC that then takes the member's
        # name (created, renamed or moved in) is isolated and taken back through the normal
        # repair path.
        entry = self.by_index.get(info.index)
        if entry is not None:
            rt, member = entry
            if not deleted and info.name == member:
                self._link_changed(rt, member, info)
                return
            del self.by_index[info.index]
            self._nic_gone(rt, member, None if deleted else info.name)
        if deleted:
            return
        named = self.members.get(info.name)
        if named is not None:
            rt, member = named
            if rt.links.get(member) is None and member not in rt.attaching:
                self._spawn(self._nic_back(rt, member))

    def _resync(self) -> None:
        """Link events were lost (the netlink queue overflowed): re-read every link, and look
        for members whose NIC went away, which a dump cannot report."""
        log.warning("link events overflowed; re-reading every link")
        assert self.watcher is not None
        self.watcher.request_dump()
        self._spawn(self._recheck_members())

    async def _recheck_members(self) -> None:
        loop = asyncio.get_running_loop()
        for rt in self.groups:
            for member, known in list(rt.links.items()):
                if known is None:
                    continue
                info = await loop.run_in_executor(None, netlink.get_link, member)
                if rt.links.get(member) is not known:
                    continue  # an event about it arrived meanwhile: that one is newer
                if info is None or info.index != known.index:
                    self._on_link(known, deleted=True)  # as the lost event would have
                    if info is not None:
                        self._on_link(info, deleted=False)

    def _link_changed(self, rt: GroupRuntime, member: str, info: LinkInfo) -> None:
        old = rt.links.get(member)
        rt.links[member] = info
        if old is not None and old.up == info.up:
            return
        log.debug("link %s: %s", member, "up" if info.up else "down")
        self._feed(rt, rt.detector.link(member, info.up, time.monotonic()))

    def _nic_gone(self, rt: GroupRuntime, member: str, now_called: str | None) -> None:
        """The member's NIC was deleted, moved away or renamed: fail it, close its sockets."""
        how = f"renamed to {now_called}" if now_called else "removed or moved to another namespace"
        log.warning("%s: member %s's NIC was %s; the member is failed until a NIC of that "
                    "name appears", rt.cfg.name, member, how)
        rt.links[member] = None
        self._close_member(rt, member)
        self._feed(rt, rt.detector.link(member, False, time.monotonic()))
        self._spawn(rt.isolate(rt.isolation.release, member, now_called))

    def _close_member(self, rt: GroupRuntime, member: str) -> None:
        """Stop reading and close a member's sockets (its datapath port keeps its counters)."""
        if rt.datapath is not None:
            port = rt.datapath.ports.get(member)
            if port is not None:
                port.poll_kernel()  # the socket's last kernel drop count goes with it
            rt.datapath.detach(member)
        sock = rt.sockets.pop(member, None)
        if sock is not None:
            sock.close()
        self._close_control(rt, member)

    def _close_control(self, rt: GroupRuntime, member: str) -> None:
        ctl = rt.control.pop(member, None)
        if ctl is not None:
            loop = asyncio.get_running_loop()
            for sock in ctl:
                loop.remove_reader(sock.fileno())
            self._count_control_kernel(rt, member, ctl)
            ctl.close()

    @staticmethod
    def _count_control_kernel(rt: GroupRuntime, member: str, ctl: ControlSockets) -> None:
        counts = rt.control_stats.setdefault(member, dict.fromkeys(CONTROL_OUTCOMES, 0))
        counts["kernel"] += ctl.kernel_drops()

    async def _nic_back(self, rt: GroupRuntime, member: str) -> None:
        """Take back a member whose name a new NIC took: isolate it, open its sockets, and
        hand its link state to the detector, which repairs the member by the usual rules."""
        loop = asyncio.get_running_loop()
        rt.attaching.add(member)
        try:
            await rt.isolate(rt.isolation.adopt, member)
            info = await loop.run_in_executor(None, netlink.get_link, member)
            if info is None or member not in self.members:
                raise IsolationError("it went away again")
            self._open_member(rt, member)
            assert rt.datapath is not None
            rt.datapath.attach(member, rt.sockets[member], rt.member_macs[member])
            rt.links[member] = info
            self.by_index[info.index] = (rt, member)
            self._reprobe(rt)
            log.warning("%s: member %s is back on a new NIC (index %d, %s)", rt.cfg.name,
                        member, info.index, _mac_text(rt.member_macs[member]))
            self._feed(rt, rt.detector.link(member, info.up, time.monotonic()))
        except (OSError, IsolationError) as e:
            log.warning("%s: cannot take member %s back: %s", rt.cfg.name, member,
                        getattr(e, "strerror", None) or e)
            self._close_member(rt, member)
        finally:
            rt.attaching.discard(member)
        # Link changes that arrived while we worked were not ours yet: read them all again.
        if self.watcher is not None:
            self.watcher.request_dump()

    def _spawn(self, aw: Any) -> None:
        """Run a background task the daemon keeps a reference to until it ends."""
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception())

    def _on_timer(self, rt: GroupRuntime) -> None:
        rt.timer = rt.deadline = None
        self._feed(rt, rt.detector.tick(time.monotonic()))

    def _on_control(self, rt: GroupRuntime, member: str, sock: socket.socket) -> None:
        """Probe replies and the test address's ARP/NDP, from one member's control socket."""
        assert rt.prober is not None
        now = time.monotonic()
        outputs: list[Output] = []
        counts = rt.control_stats.setdefault(member, dict.fromkeys(CONTROL_OUTCOMES, 0))
        bucket = rt.answer_limit.setdefault(member, TokenBucket(ANSWER_RATE, ANSWER_BURST))
        for _ in range(CONTROL_BATCH):
            try:
                frame = sock.recv(4096)
            except BlockingIOError:
                break
            except OSError:
                break  # ENETDOWN once when the link goes; the link event says the rest
            counts["received"] += 1
            received = rt.prober.receive(member, frame)
            if not received.answers and not received.replies:
                counts["ignored"] += 1
            for answer in received.answers:
                if bucket.take(now):
                    counts["answered"] += 1
                    with contextlib.suppress(OSError):
                        sock.send(answer)
                else:
                    counts["rate_limited"] += 1
            counts["replies"] += len(received.replies)
            for target, seq in received.replies:
                stats = next((t for t in rt.detector.targets(member) if t.target == target), None)
                before = stats.answers if stats else 0
                outputs.extend(rt.detector.reply(member, target, seq, now))
                if self.rtt is not None and stats and stats.answers > before and stats.rtt_ms:
                    self.rtt.observe(rt.cfg.name, member, target, stats.rtt_ms)
        if outputs:
            self._feed(rt, outputs)

    def _feed(self, rt: GroupRuntime, outputs: list[Output]) -> None:
        """Carry out the detector's outputs: send probes, hand health changes to the group."""
        changes: dict[str, bool] = {}
        cause: Cause | None = None
        for out in outputs:
            if isinstance(out, SendProbe):
                self._send_probe(rt, out)
            elif isinstance(out, HealthChanged):
                changes[out.member] = out.healthy
                cause = cause or out.cause
                log.info("%s: member %s %s: %s", rt.cfg.name, out.member,
                         "healthy" if out.healthy else "unhealthy", out.reason)
        if changes:
            assert cause is not None
            self._apply(rt, rt.group.update_health(changes, cause))
        self._arm(rt)

    def _send_probe(self, rt: GroupRuntime, probe: SendProbe) -> None:
        ctl = rt.control.get(probe.member)
        if ctl is None or rt.prober is None:
            return
        sock = ctl.replies
        stats = next(t for t in rt.detector.targets(probe.member) if t.target == probe.target)
        for frame in rt.prober.probe(probe.member, probe.target, probe.seq,
                                     resolve=stats.lost_run >= RESOLVE_AFTER):
            with contextlib.suppress(OSError):  # a down link: the probe is simply lost
                sock.send(frame)

    def _arm(self, rt: GroupRuntime) -> None:
        """Keep exactly one timer per group, at the detector's next deadline."""
        deadline = rt.detector.next_deadline()
        if deadline == rt.deadline and rt.timer is not None:
            return
        if rt.timer is not None:
            rt.timer.cancel()
            rt.timer = None
        rt.deadline = deadline
        if deadline is not None:
            # The detector's clock is time.monotonic() (the loop's has only milliseconds).
            delay = max(0.0, deadline - time.monotonic())
            rt.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, rt)

    # -- actions out -------------------------------------------------------------------------
    def _apply(self, rt: GroupRuntime, actions: list[Action]) -> None:
        assert rt.datapath is not None and rt.tap is not None
        for action in actions:
            match action:
                case SetForwarding(tx=tx, rx=rx):
                    self._cancel_announcements(rt)
                    rt.datapath.set_forwarding(tx, rx)
                case SetSpread(active=active, hosts=hosts):
                    self._cancel_announcements(rt)
                    by_text = dict(hosts)
                    rt.datapath.set_spread(active, {ip: by_text[text]
                                                    for ip, text in rt.packed.items()})
                case Announce(member=member, addresses=addresses):
                    self._announce(rt, member, addresses)
                case SetCarrier(on=on):
                    rt.tap.set_carrier(on)
                    self._event(rt, "carrier", None, "on" if on else "off", None)
                case MemberChanged(member=member, old=old, new=new, cause=cause):
                    if old is not None and new.value == "active":
                        rt.failovers += 1
                    self._event(rt, "member", member, new.value, cause,
                                old=old.value if old else None)
                case GroupChanged(old=old, new=new, cause=cause):
                    self._event(rt, "group", None, new.value, cause,
                                old=old.value if old else None)
                case AddressMoved(address=address, old=old, new=new, cause=cause):
                    if old is not None:
                        rt.address_moves += 1
                    self._event(rt, "address", new, address, cause, old=old)

    @staticmethod
    def _cancel_announcements(rt: GroupRuntime) -> None:
        """A newer decision supersedes announcements still in progress."""
        for handle in rt.announcing:
            handle.cancel()
        rt.announcing.clear()

    def _announce(self, rt: GroupRuntime, member: str, addresses: tuple[str, ...]) -> None:
        """Send ``announce.count`` rounds of announcements from ``member``, ``interval`` apart.

        Active-backup announces the group's MAC; load spreading the hosting member's own.
        """
        mac = rt.cfg.mac if rt.cfg.mode == "active-backup" else rt.member_macs[member]
        frames = [announcement(mac, a) for a in addresses]
        datapath = rt.datapath
        assert datapath is not None

        def send() -> None:
            for frame in frames:
                datapath.send_frame(member, frame)

        count, interval = rt.cfg.announce.count, rt.cfg.announce.interval_ms / 1000
        if count <= 0:
            return
        send()
        loop = asyncio.get_running_loop()
        now = loop.time()  # forget rounds already sent, so the list stays short
        rt.announcing = [h for h in rt.announcing if not h.cancelled() and h.when() > now]
        rt.announcing.extend(loop.call_later(interval * i, send) for i in range(1, count))

    def _event(self, rt: GroupRuntime, kind: str, member: str | None, state: str,
               cause: Cause | None, old: str | None = None) -> None:
        self._seq += 1
        event = {"seq": self._seq, "time": time.time(), "group": rt.cfg.name, "kind": kind,
                 "member": member, "state": state, "old": old,
                 "cause": cause.value if cause else None}
        self.events.append(event)
        subject = f"member {member}" if kind == "member" else kind
        if kind == "address":
            subject = f"address {state}"
            log.info("%s: %s moved %s -> %s (%s)", rt.cfg.name, subject, old, member,
                     event["cause"])
            return
        log.info("%s: %s %s%s%s", rt.cfg.name, subject, f"{old} -> " if old else "", state,
                 f" ({event['cause']})" if cause else "")

    # -- control -----------------------------------------------------------------------------
    async def _handle(self, request: dict[str, Any]) -> Any:
        cmd = request["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "events":
            since = request.get("since", 0)
            if not isinstance(since, int):
                raise control.CommandError("events: 'since' must be an integer")
            return [e for e in self.events if e["seq"] > since]
        if cmd in ("offline", "online"):
            return self._admin(request.get("member"), offline=cmd == "offline")
        if cmd == "reload":
            return await self.reload()
        raise control.CommandError(f"unknown command {cmd!r}")

    # -- reload -------------------------------------------------------------------------------
    def _on_sighup(self) -> None:
        async def run() -> None:
            try:
                await self.reload()
            except control.CommandError as e:
                log.error("reload refused: %s", e)

        self._spawn(run())

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration and apply what changed, without recreating the TAP.

        An invalid file, or a change that needs a restart (groups, mode, MAC, MTU, routes, the
        control socket, metrics), is refused with one line and nothing changes.
        """
        from vnicbond.config import ConfigError, load_config

        if self._reloading:
            raise control.CommandError("reload: another reload is in progress")
        try:
            new = load_config(self.config.path)
            check_system(new)
        except ConfigError as e:
            raise control.CommandError(str(e)) from None
        refusal = needs_restart(self.config, new)
        if refusal:
            raise control.CommandError(f"reload: changing {refusal} needs a restart; "
                                       "nothing changed")
        self._reloading = True
        try:
            changes = {}
            for rt in self.groups:
                cfg = next(g for g in new.groups if g.name == rt.cfg.name)
                changes[cfg.name] = await self._reload_group(rt, cfg)
                self._event(rt, "config", None, "reloaded", Cause.RELOAD)
            self.config = new
            logging.getLogger().setLevel(new.log_level.upper())
        finally:
            self._reloading = False
        return changes

    async def _reload_group(self, rt: GroupRuntime, cfg: GroupConfig) -> dict[str, list[str]]:
        loop = asyncio.get_running_loop()
        assert rt.datapath is not None
        new = cfg
        changes = group_changes(rt.cfg, new)
        new_members = [m.name for m in new.members]
        for name in changes.members_removed:
            self._drop_member(rt, name)
            await rt.isolate(rt.isolation.remove_member, name)
        for name in changes.members_added:
            await rt.isolate(rt.isolation.add_member, name)
            self._open_member(rt, name, new.mac)
            info = rt.links[name] = await loop.run_in_executor(None, netlink.get_link, name)
            if info is not None:
                self.by_index[info.index] = (rt, name)
            self.members[name] = (rt, name)
            rt.control_stats[name] = dict.fromkeys(CONTROL_OUTCOMES, 0)
            rt.datapath.add_port(name, rt.sockets[name], rt.member_macs[name])
        await loop.run_in_executor(None, netlink.change_addresses, new.name,
                                   changes.addresses_added, changes.addresses_removed)
        rt.cfg = new
        rt.addresses = [str(a) for a in new.addresses]
        rt.packed = {a.ip.packed: str(a) for a in new.addresses}
        rt.targets = member_targets(new)
        for address in rt.addresses:
            for mac in (new.mac, *rt.member_macs.values()):
                announcement(mac, address)
        self._reprobe(rt)
        now = time.monotonic()
        links = {m: bool(rt.links.get(m) and rt.links[m].up) for m in new_members}
        outputs = rt.detector.reconfigure(
            [(m, [str(t) for t in ts]) for m, ts in rt.targets.items()],
            new.failure_detection_time_ms, links, now)
        self._apply(rt, rt.group.reconfigure(
            [(m.name, m.standby) for m in new.members], rt.addresses, new.failback,
            {m: rt.detector.healthy(m) for m in new_members}))
        self._feed(rt, outputs)
        return changes.summary()

    def _drop_member(self, rt: GroupRuntime, name: str) -> None:
        """Stop using a member a reload removed: its sockets, readers and maps."""
        assert rt.datapath is not None
        rt.datapath.remove_port(name)
        sock = rt.sockets.pop(name, None)
        if sock is not None:
            sock.close()
        self._close_control(rt, name)
        rt.links.pop(name, None)
        self.members.pop(name, None)
        for table in (rt.answer_limit, rt.control_stats, rt.member_macs):
            table.pop(name, None)
        for index, (owner, member) in list(self.by_index.items()):
            if owner is rt and member == name:
                del self.by_index[index]

    def _reprobe(self, rt: GroupRuntime) -> None:
        """Control sockets and the prober for the members that probe now."""
        assert rt.datapath is not None
        loop = asyncio.get_running_loop()
        probing = []
        for m in rt.cfg.members:
            test = m.test_address
            rt.datapath.set_test_ip(m.name, test.ip.packed if test is not None else None)
            targets = rt.targets[m.name]
            ctl = rt.control.get(m.name)
            if targets and test is not None:
                if ctl is not None:  # the test address may have changed
                    ctl.refilter(rt.member_macs[m.name], test.ip.packed)
                elif m.name in rt.sockets:  # not while its NIC is gone
                    try:
                        ctl = ControlSockets(m.name, rt.member_macs[m.name], test.ip.packed)
                    except OSError as e:
                        log.warning("%s: member %s: cannot open its probe sockets: %s",
                                    rt.cfg.name, m.name, e.strerror or e)
                    else:
                        rt.control[m.name] = ctl
                        for sock in ctl:
                            loop.add_reader(sock.fileno(), self._on_control, rt, m.name, sock)
                old = rt.prober.members.get(m.name) if rt.prober else None
                member = ProbingMember(m.name, rt.member_macs[m.name], test.ip, targets)
                if old is not None and old.test_ip == test.ip:
                    member.neighbors = old.neighbors  # and what it was waiting for
                    member.resolving = old.resolving
                    member.last_seq = old.last_seq
                probing.append(member)
            elif ctl is not None:
                self._close_control(rt, m.name)
        if not probing:
            rt.prober = None
        elif rt.prober is None:
            rt.prober = Prober(rt.cfg.probe.method, probing)
        else:
            rt.prober = Prober(rt.cfg.probe.method, probing, rt.prober.token, rt.prober.ident)

    def _admin(self, member: object, offline: bool) -> dict[str, Any]:
        """Take a member out of service (moving its traffic first) or put it back."""
        entry = self.members.get(member) if isinstance(member, str) else None
        if entry is None:
            raise control.CommandError(f"no member {member!r} in any group")
        rt, name = entry
        state = rt.group.member_state(name)
        if offline == (state.value == "offline"):
            return {"member": name, "state": state.value, "changed": False}
        if offline:
            others = [m for m in rt.group.members()
                      if m != name and rt.group.member_state(m).value in ("active", "standby")]
            if state.value in ("active", "standby") and not others:
                raise control.CommandError(
                    f"cannot take {name} offline: no other member of {rt.cfg.name} could carry "
                    "its traffic")
        now = time.monotonic()
        self._feed(rt, rt.detector.set_offline(name, offline, now))
        self._apply(rt, rt.group.set_offline(name, offline))
        return {"member": name, "state": rt.group.member_state(name).value, "changed": True}

    def _control_counts(self, rt: GroupRuntime, member: str) -> dict[str, int]:
        ctl = rt.control.get(member)
        if ctl is not None:
            self._count_control_kernel(rt, member, ctl)
        return dict(rt.control_stats.get(member) or dict.fromkeys(CONTROL_OUTCOMES, 0))

    def status(self) -> dict[str, Any]:
        """The status document (see the README for its fields)."""
        groups = []
        for rt in self.groups:
            dp = rt.datapath
            members = []
            for m in rt.cfg.members:
                info = rt.links.get(m.name)
                port = dp.ports.get(m.name) if dp else None
                counters = port.counters() if port else {}
                state = rt.group.member_state(m.name).value
                members.append({
                    "name": m.name,
                    "state": state,
                    "link": "up" if info is not None and info.up else "down",
                    "probe": rt.detector.probe_state(m.name),
                    "reason": rt.detector.reason(m.name, time.monotonic()),
                    "standby": m.standby,
                    "mac": _mac_text(rt.member_macs.get(m.name, b"")),
                    "flows": len(port.flows) if port else 0,
                    "flow_buckets": dp.flow_table.share().get(m.name, 0) if dp else 0,
                    "test_address": str(m.test_address) if m.test_address else None,
                    "control": self._control_counts(rt, m.name),
                    **counters,
                })
            hosts = rt.group.address_hosts()
            groups.append({
                "name": rt.cfg.name,
                "mode": rt.cfg.mode,
                "state": rt.group.state.value if rt.group.state else "failed",
                "carrier": bool(rt.group.carrier),
                "fdt_ms": rt.cfg.failure_detection_time_ms,
                "failback": rt.cfg.failback,
                "active": rt.group.active,
                "failovers": rt.failovers,
                "address_moves": rt.address_moves,
                "tap_dropped": dp.tap_dropped if dp else 0,
                "tap_drops": dict(dp.tap_drops) if dp else {},
                "members": members,
                "addresses": [{"address": a, "member": hosts[a]} for a in rt.addresses],
                "targets": [
                    {"member": m.name, "target": t.target, "rtt_ms": t.rtt_ms, "lost": t.lost,
                     "sent": t.sent}
                    for m in rt.cfg.members for t in rt.detector.targets(m.name)],
                "answers_rate_limited": sum(b.dropped for b in rt.answer_limit.values()),
            })
        return {"pid": os.getpid(), "uptime_s": round(time.time() - self.started, 3),
                "groups": groups}


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _notify_systemd(state: str) -> None:
    """Tell systemd (Type=notify) about our state, if it is listening."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)

