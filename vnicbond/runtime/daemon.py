"""The daemon: lifecycle, signals, background tasks, and the operator's socket.

It owns what is common to every group: start-up (privileges, recovery from a dead instance,
the TAPs, dropping to ``--user``, the netlink link watcher) before the event loop runs, the
loop's life (signals, the control socket, metrics, systemd notifications), background tasks,
routing link events to the groups (:class:`vnicbond.runtime.group.GroupRuntime`), answering
the operator's requests and orchestrating a reload. Everything it changes on the system is
recorded as it is made and undone in :meth:`Daemon.teardown`, newest first, whatever happened.
Decisions are the group engines' (:mod:`vnicbond.core.engine`); carrying them out is the group
runtimes' job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vnicbond import control
from vnicbond.config import Config, check_system
from vnicbond.core.engine import AdminRefused
from vnicbond.core.events import EventLog
from vnicbond.core.readiness import Readiness
from vnicbond.core.reload import needs_restart
from vnicbond.runtime import status, upgrade
from vnicbond.runtime.group import GroupRuntime
from vnicbond.runtime.upgrading import STOP_SIGNALS, Upgrading
from vnicbond.system import privilege
from vnicbond.system.isolation import recover_stale
from vnicbond.system.netlink import LinkInfo, LinkWatcher
from vnicbond.system.notify import notify_systemd
from vnicbond.system.tap import Tap, check_device

log = logging.getLogger("vnicbond")



class Stop(BaseException):
    """Raised by the signal handler while the daemon is still setting up."""


def state_path(config: Config, group: str) -> str:
    """Where a group's record of changed settings lives: beside the control socket."""
    return os.path.join(os.path.dirname(config.control.socket) or ".", f"{group}.state")


class Daemon(Upgrading):
    """Runs every configured group until told to stop; upgrading in place is
    :class:`~vnicbond.runtime.upgrading.Upgrading`'s."""

    def __init__(self, config: Config, user: str | None = None,
                 handover: upgrade.Handover | None = None) -> None:
        self.config = config
        #: Drop to this user after opening what needs root (``run --user``).
        self.user = user
        self.events = EventLog()
        self.groups = [GroupRuntime(g, state_path(config, g.name), self.events, self._spawn,
                                    self._relist) for g in config.groups]
        self.watcher: LinkWatcher | None = None
        self.server: control.ControlServer | None = None
        self.started = time.time()
        self._undo: list[Callable[[], None]] = []
        self._reloading = False
        self._tasks: set[asyncio.Future[Any]] = set()
        #: The daemon got ready; it is exiting on an error (not a planned stop).
        self._ready = False
        self._failed = False
        #: What the daemon's previous code handed over (``vnicbond upgrade``), if anything.
        self.handover = handover
        #: In-place upgrades since the daemon started; one is under way.
        self.upgrades = 0
        self._upgrading = False
        self._listener: socket.socket | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        """Set up, serve until SIGTERM/SIGINT, tear down. Raises on set-up failure."""
        import uvloop

        previous = {s: signal.signal(s, self._raise_stop) for s in STOP_SIGNALS}
        for s in (signal.SIGHUP, signal.SIGUSR2):
            previous[s] = signal.signal(s, signal.SIG_IGN)
        try:
            self.setup()
            # An upgrade's previous code blocked them across the exec (see _exec_new_code):
            # one that came meanwhile stops the daemon now, with everything to undo known.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            uvloop.run(self.serve())
        except Stop:
            log.info("stopped during start-up")
        except BaseException:
            self._failed = True
            raise
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
        ``--user`` if asked; then isolate the members and configure the TAPs."""
        if self.user is not None:  # an unknown user, or no root to drop from, fails first
            account = privilege.resolve_user(self.user)
            if os.geteuid() != 0 and not (self.handover and os.geteuid() == account.pw_uid):
                raise privilege.PrivilegeError(
                    f"--user {self.user}: only root can change user (this is uid "
                    f"{os.geteuid()}); started unprivileged, leave --user out")
        privilege.check()
        if self._take_over():
            self._setup_taken_over()
            return
        for rt in self.groups:  # first: it also refuses to run beside a live instance
            pid = recover_stale(rt.isolation.state_path)
            if pid is not None:
                log.warning("group %s: restored member settings left by dead instance %d",
                            rt.name, pid)
        check_system(self.config)
        for rt in self.groups:  # refuse a device of a group's name that is not a TAP first
            check_device(rt.name)
        if self.user is not None:  # first: the TAPs' records go there too
            account = privilege.resolve_user(self.user)
            control.prepare_socket_dir(self.config.control.socket, account.pw_uid,
                                       account.pw_gid)
        for rt in self.groups:
            self._undo.append(functools.partial(self._close_tap, rt.create_tap()))
        if self.user is not None:
            privilege.drop_to(self.user)
            log.info("running as %s with CAP_NET_ADMIN and CAP_NET_RAW only", account.pw_name)
        control.prepare_socket_path(self.config.control.socket)
        # Subscribe before reading link states, so no change between the two is missed.
        self.watcher = LinkWatcher(self._on_link)
        self._undo.append(self.watcher.close)
        for rt in self.groups:
            self._undo.append(rt.isolation.restore)
            rt.configure_system()

    def _close_tap(self, tap: Tap) -> None:
        """A planned stop removes the TAP (if vnicbond made it); an exit on an error keeps one
        that was in service or adopted, as a crash would, for the next start to adopt."""
        if self._failed and (self._ready or tap.adopted):
            log.warning("group %s: keeping the TAP for the next start", tap.name)
            tap.detach()
        else:
            tap.close()

    def teardown(self) -> None:
        """Undo everything :meth:`setup` did, newest first. Never raises."""
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as e:  # noqa: BLE001 - keep undoing the rest
                log.warning("cleanup step %s failed: %s", getattr(undo, "__qualname__", undo), e)

    async def serve(self) -> None:
        """The event loop's life: start the groups and the control socket, wait for a stop."""
        loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.add_signal_handler(signal.SIGUSR2, self._on_sigusr2)
        assert self.watcher is not None
        self.watcher.overrun = self._resync
        loop.add_reader(self.watcher.fileno(), self.watcher.on_readable)
        try:
            started = time.monotonic()
            kept = self._finish_handover()
            for rt in self.groups:
                rt.start(loop, kept.get(rt.name) if kept is not None else None)
            if self.config.metrics.listen is not None:
                self._start_metrics(loop, self.config.metrics.listen)
            self.server = control.ControlServer(self.config.control.socket, self._handle,
                                                self._listener)
            await self.server.start()
            await self._until_ready(stop, started)
            await stop.wait()
            log.info("stopping")
        finally:
            notify_systemd("STOPPING=1")
            loop.remove_reader(self.watcher.fileno())
            for rt in self.groups:
                rt.stop()
            if self.server is not None:
                await self.server.close()

    async def _until_ready(self, stop: asyncio.Event, started: float) -> None:
        """Wait until every group's TAP has its carrier, or has waited one failure detection
        time since ``started`` (:mod:`vnicbond.core.readiness`), then tell systemd and log
        ``ready``; return at once if told to stop first."""
        readiness = Readiness({rt.name: rt.cfg.failure_detection_time_ms for rt in self.groups},
                              started)
        changed = asyncio.Event()
        for rt in self.groups:
            rt.on_carrier = lambda on: changed.set()
        try:
            while True:
                carriers = {rt.name: bool(rt.engine.group.carrier) for rt in self.groups}
                now = time.monotonic()
                if stop.is_set():
                    return
                if readiness.ready(carriers, now):
                    break
                deadline = readiness.deadline(carriers)
                changed.clear()
                waits = {asyncio.ensure_future(changed.wait()),
                         asyncio.ensure_future(stop.wait())}
                _, pending = await asyncio.wait(
                    waits, timeout=None if deadline is None else max(0.0, deadline - now),
                    return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        finally:
            for rt in self.groups:
                rt.on_carrier = None
        notify_systemd("READY=1")
        self._ready = True
        log.info("ready: %s%s", ", ".join(
            f"{rt.name} ({len(rt.cfg.members)} members)" for rt in self.groups),
            f" (upgraded in place, pid {os.getpid()})" if self.upgrades else "")
        for name in readiness.waited_for(carriers):
            log.warning("%s: no member can carry traffic after the failure detection time; "
                        "ready all the same (the carrier comes on when one can)", name)

    def _start_metrics(self, loop: asyncio.AbstractEventLoop, listen: tuple[str, int]) -> None:
        """Serve Prometheus metrics (imported only when configured: clients stay light)."""
        from vnicbond import metrics

        rtt = metrics.RttHistogram()
        for rt in self.groups:
            rt.rtt = rtt
        collector = metrics.StatusCollector(metrics.threadsafe_source(loop, self.status), rtt)
        try:
            stop = metrics.start_server(listen, collector.registry)
        except OSError as e:
            raise RuntimeError(f"metrics: cannot listen on {listen[0]}:{listen[1]}: "
                               f"{e.strerror or e}") from None
        self._undo.append(stop)
        log.info("metrics on http://%s:%d/metrics", *listen)

    # -- background tasks and link events -------------------------------------------------------
    def _spawn(self, aw: Awaitable[Any]) -> None:
        """Run a background task the daemon keeps a reference to until it ends."""
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception())

    def _relist(self) -> None:
        """Ask netlink for every link's state again (the replies arrive as link events)."""
        if self.watcher is not None:
            self.watcher.request_dump()

    def _on_link(self, info: LinkInfo, deleted: bool) -> None:
        for rt in self.groups:
            rt.on_link(info, deleted)

    def _resync(self) -> None:
        """Link events were lost (the netlink queue overflowed): re-read every link, and look
        for members whose NIC went away, which a dump cannot report."""
        log.warning("link events overflowed; re-reading every link")
        self._relist()
        for rt in self.groups:
            self._spawn(rt.recheck())

    # -- the operator's requests ----------------------------------------------------------------
    async def _handle(self, request: dict[str, Any]) -> Any:
        cmd = request["cmd"]
        if cmd == "status":
            return self.status()
        if cmd == "events":
            since = request.get("since", 0)
            if not isinstance(since, int):
                raise control.CommandError("events: 'since' must be an integer")
            return self.events.since(since)
        if cmd in ("offline", "online"):
            return self._admin(request.get("member"), offline=cmd == "offline")
        if cmd == "reload":
            return await self.reload()
        if cmd == "upgrade":
            return await self.upgrade()
        raise control.CommandError(f"unknown command {cmd!r}")

    def status(self) -> dict[str, Any]:
        """The status document (see :mod:`vnicbond.runtime.status`)."""
        return status.document(os.getpid(), self.started, self.groups, self.upgrades)

    def _admin(self, member: object, offline: bool) -> dict[str, Any]:
        """Take a member out of service (moving its traffic first) or put it back."""
        rt = next((g for g in self.groups if isinstance(member, str) and member in g.members),
                  None)
        if rt is None:
            raise control.CommandError(f"no member {member!r} in any group")
        assert isinstance(member, str)
        try:
            changed = rt.set_offline(member, offline)
        except AdminRefused as e:
            raise control.CommandError(str(e)) from None
        return {"member": member, "state": rt.engine.group.member_state(member).value,
                "changed": changed}

    def _on_sighup(self) -> None:
        async def run() -> None:
            try:
                await self.reload()
            except control.CommandError as e:
                log.error("reload refused: %s", e)

        self._spawn(run())

    async def reload(self) -> dict[str, Any]:
        """Re-read the configuration and apply what changed, without recreating the TAP.

        An invalid file, or a change that needs a restart (groups, mode, MAC, routes, the
        control socket, metrics), is refused with one line and nothing changes; so is an MTU
        a member cannot take (:meth:`_reload_mtus`).
        """
        from vnicbond.config import ConfigError, load_config

        if self._reloading or self._upgrading:
            raise control.CommandError("reload: another reload or an upgrade is in progress")
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
            await self._reload_mtus(new)
            changes = {}
            for rt, cfg in zip(self.groups, new.groups, strict=True):
                changes[cfg.name] = await rt.reload(cfg)
            self.config = new
            logging.getLogger().setLevel(new.log_level.upper())
        finally:
            self._reloading = False
        return changes

    async def _reload_mtus(self, new: Config) -> None:
        """Set each group whose ``mtu`` the file changes to it, before any other change; if
        a member cannot take one, set back the groups changed and refuse the reload."""
        done: list[tuple[GroupRuntime, int]] = []
        for rt, cfg in zip(self.groups, new.groups, strict=True):
            if cfg.mtu == rt.cfg.mtu:
                continue
            before = rt.mtu.value
            refusal = await rt.mtu.configure(cfg.mtu)
            if refusal is not None:
                for undone, mtu in reversed(done):
                    await undone.mtu.configure(mtu)
                who = f"member {refusal.device}" if refusal.device else "the TAP"
                raise control.CommandError(
                    f"reload: {cfg.name}'s mtu {cfg.mtu}: {who} cannot take it "
                    f"({refusal.reason}); nothing changed")
            done.append((rt, before))
