"""Upgrading the running daemon in place (``vnicbond upgrade``, ``SIGUSR2``): the daemon's
side of it, as a part of :class:`vnicbond.runtime.daemon.Daemon`.

The installed code's ``vnicbond check`` runs first (if it refuses, nothing changes); then stop
signals are held, each group hands over what it has (:meth:`GroupRuntime.handover`), a bridge
child forwards meanwhile (:mod:`vnicbond.runtime.bridge`) and the process executes the
installed code with the hand-over (:mod:`vnicbond.runtime.upgrade`: its format and the exec).
If the exec fails, this code goes on. The new code's side is here too: taking over the TAPs,
the isolation, the control socket and the events before the loop runs
(:meth:`Upgrading._take_over`), and the members' sockets with their ring cursors just before
it starts forwarding (:meth:`Upgrading._finish_handover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from vnicbond import __version__, control
from vnicbond.config import Config, check_system
from vnicbond.core.events import EventLog
from vnicbond.runtime import bridge, upgrade
from vnicbond.system.isolation import IsolationError
from vnicbond.system.netlink import LinkInfo, LinkWatcher
from vnicbond.system.notify import notify_systemd
from vnicbond.system.tap import Tap

if TYPE_CHECKING:
    from vnicbond.runtime.group import GroupRuntime

log = logging.getLogger("vnicbond")

#: The signals that stop the daemon (a planned stop: everything is undone).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
#: How long an upgrade waits, stop signals held back, for one that came just before.
SIGNAL_GRACE = 0.01
#: How long the installed code's ``vnicbond check`` may take before an upgrade.
PREFLIGHT_TIMEOUT = 30.0


class Upgrading:
    """The daemon's upgrade in place; the attributes below are the daemon's."""

    config: Config
    groups: list[GroupRuntime]
    events: EventLog
    server: control.ControlServer | None
    started: float
    upgrades: int
    handover: upgrade.Handover | None
    _stop: asyncio.Event | None
    _reloading: bool
    _upgrading: bool
    _listener: socket.socket | None
    _undo: list[Callable[[], None]]
    watcher: LinkWatcher | None
    _spawn: Callable[[Awaitable[Any]], None]
    _close_tap: Callable[[Tap], None]
    _on_link: Callable[[LinkInfo, bool], None]

    # -- the new code's side: taking over, before the loop runs -------------------------------
    def _take_over(self) -> bool:
        """Take over what the daemon's previous code handed over (``vnicbond upgrade``): its
        TAPs, its record of the members' isolation, its control socket, its events. False
        (everything inherited closed, the bridge stopped) if there is nothing to take or it
        cannot be used: the start is then the one after a crash, which adopts the TAPs."""
        handover, self.handover = self.handover, None
        if handover is None:
            return False
        self.upgrades = handover.upgrades  # (the code was replaced, state kept or not)
        why = handover.problem(self.config)
        try:
            if why is None:
                for rt in self.groups:
                    rt.isolation.resume()
                taps = [rt.inherit_tap(handover.group(rt.name)["tap"]) for rt in self.groups]
        except (IsolationError, OSError, ValueError, KeyError, TypeError) as e:
            why = str(e)
        if why is not None:
            log.warning("upgrade: cannot go on from the previous code's state (%s); starting "
                        "as after a crash", why)
            for rt in self.groups:
                rt.isolation.saved, rt.tap = [], None
            handover.abandon()
            return False
        for tap in taps:
            handover.own(tap.fd)
            self._undo.append(functools.partial(self._close_tap, tap))
        self.handover = handover
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.started = float(handover.state["started"])
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.events.restore(handover.state["events"])
        fd = handover.state.get("control")
        if isinstance(fd, int) and fd in handover.fds:
            self._listener = control.inherited_listener(handover.own(fd),
                                                        self.config.control.socket)
        return True

    def _setup_taken_over(self) -> None:
        """:meth:`setup` after :meth:`_take_over`: the TAPs and the members' isolation are
        the previous code's; the addresses and routes are checked, the links read."""
        check_system(self.config)
        if self._listener is None:
            control.prepare_socket_path(self.config.control.socket)
        self.watcher = LinkWatcher(self._on_link)
        self._undo.append(self.watcher.close)
        for rt in self.groups:
            self._undo.append(rt.isolation.restore)
            rt.configure_system(resumed=True)

    # -- the old code's side ------------------------------------------------------------------

    async def upgrade(self) -> dict[str, Any]:
        """Start the installed code in this process in place of this one, handing it
        everything (:mod:`vnicbond.runtime.upgrade`). The installed code first checks the
        configuration (``vnicbond check``): if it refuses, nothing changes. The reply goes
        out before the exec."""
        if self._reloading or self._upgrading:
            raise control.CommandError("upgrade: a reload or another upgrade is in progress")
        if any(rt.busy() for rt in self.groups):
            raise control.CommandError("upgrade: a member NIC is being taken back; try again")
        self._upgrading = True
        try:
            await self._preflight()
        except BaseException:
            self._upgrading = False
            raise
        asyncio.get_running_loop().call_soon(self._hold_stops)
        return {"pid": os.getpid(), "version": __version__, "upgrades": self.upgrades}

    async def _preflight(self) -> None:
        """Run the installed code's ``vnicbond check`` on the configuration file; raise
        CommandError with its one line if it fails."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vnicbond", "check", "-c", self.config.path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), PREFLIGHT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise control.CommandError("upgrade: the installed code's check did not finish in "
                                       f"{PREFLIGHT_TIMEOUT:g} s; nothing changed") from None
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or ["(no message)"]
            raise control.CommandError(f"upgrade: the installed code refuses to start: "
                                       f"{lines[-1]}; nothing changed")

    def _on_sigusr2(self) -> None:
        async def run() -> None:
            try:
                await self.upgrade()
            except control.CommandError as e:
                log.error("%s", e)

        self._spawn(run())

    def _hold_stops(self) -> None:
        """Before the exec: from now on a stop signal waits for the new code, which undoes
        everything once it knows what to undo. One that came just before is seen by the loop
        in the moment :meth:`_exec_new_code` waits, and cancels the upgrade."""
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        asyncio.get_running_loop().call_later(SIGNAL_GRACE, self._exec_new_code)

    def _exec_new_code(self) -> None:
        """Hand over and execute the installed code. While it starts, a bridge child
        forwards (:mod:`vnicbond.runtime.bridge`). Returns only if the exec failed: this code
        then goes on."""
        if self._stop is not None and self._stop.is_set():
            log.info("upgrade: cancelled by a stop")
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            self._upgrading = False
            return
        try:
            groups, fds = [], []
            for rt in self.groups:
                state, kept = rt.handover()
                groups.append(state)
                fds += kept
            listener = self.server.listening_fd() if self.server is not None else None
            state = {"upgrades": self.upgrades, "started": self.started,
                     "version": __version__, "events": self.events.snapshot(),
                     "groups": groups, "control": listener}
        except Exception as e:  # noqa: BLE001 - a bug here must not end the daemon
            log.error("upgrade: cannot hand over: %r; nothing changed", e)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            self._upgrading = False
            return
        log.info("upgrade: handing over to the installed code (%s)", sys.executable)
        datapaths = {rt.name: rt.datapath for rt in self.groups if rt.datapath is not None}
        for dp in datapaths.values():
            dp.unwatch()
        forked = bridge.start(datapaths)
        if forked is not None:
            state["bridge"] = {"pid": forked[0], "fd": forked[1].fileno()}
        notify_systemd(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            upgrade.exec_new_code(state, [*fds, *filter(None, [listener]),
                                          *([forked[1].fileno()] if forked else [])])
        except OSError as e:
            log.error("upgrade: cannot execute %s: %s; going on with the running code",
                      sys.executable, e.strerror or e)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        cursors = bridge.finish(*forked) if forked is not None else None
        for name, dp in datapaths.items():
            if cursors is not None and name in cursors:
                dp.set_cursors(cursors[name])
            dp.watch()
        notify_systemd("READY=1")
        self._upgrading = False

    def _finish_handover(self) -> dict[str, dict[str, Any]] | None:
        """For each group, what the previous code handed over, with its members' ring
        cursors as the bridge left them; the bridge stops here, just before this code starts
        forwarding. None if nothing was handed over."""
        handover = self.handover
        if handover is None:
            return None
        # Announcements need scapy: import it now, not after the bridge stopped.
        import scapy.layers.inet6
        import scapy.layers.l2  # noqa: F401

        kept = {rt.name: handover.group(rt.name) for rt in self.groups}
        cursors = handover.finish_bridge()
        for name, group in kept.items():
            sockets = group.get("sockets")
            if not isinstance(sockets, dict):
                group["sockets"] = {}
                continue
            for member, taken in list(sockets.items()):
                fd = taken.get("fd") if isinstance(taken, dict) else None
                if not isinstance(fd, int) or fd not in handover.fds:
                    del sockets[member]
                    continue
                handover.own(fd)  # the group runtime adopts it or closes it
                if not handover.bridged:
                    continue
                if cursors is None or member not in cursors.get(name, {}):
                    log.warning("%s: member %s: the bridge left its rings in an unknown "
                                "state; opening it afresh", name, member)
                    os.close(fd)
                    del sockets[member]
                else:
                    taken["rx_head"], taken["tx_head"] = cursors[name][member]
        handover.release()
        return kept
