"""Upgrading in place (``vnicbond upgrade``, ``SIGUSR2``): the hand-over from the daemon's
running code to the installed code, in the same process.

The old code writes what the new code needs into a memory file (``memfd``) and executes
``python -m vnicbond`` with its own arguments (:func:`exec_new_code`): the process, and so its
PID, stays (systemd keeps tracking it), and so do the descriptors it marks inheritable: each
group's TAP, its members' data sockets (their rings stay mapped in the kernel; the cursors
travel in the hand-over), the control socket's listening socket (clients wait in its backlog
meanwhile) and the bridge's socket (:mod:`vnicbond.runtime.bridge`, forwarding meanwhile).
The environment variable :data:`ENV` names the memory file and those descriptors.

The new code (:func:`take`) reads it back, and :meth:`Handover.problem` says whether it can be
used with the configuration as it reads now (:mod:`vnicbond.core.handover`: the same process,
the same format, the same groups with the same mode, MAC, MTU and members). If it cannot, or
any piece of it turns out wrong, the daemon starts as after a crash (:meth:`Handover.abandon`
closes what was inherited and stops the bridge first): the persistent TAP is adopted and the
members isolated again.
What a group hands over, and going on from it, are the group runtime's
(:meth:`vnicbond.runtime.group.GroupRuntime.handover`); the decisions' state is the engine's
(:meth:`vnicbond.core.engine.GroupEngine.snapshot`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from vnicbond.config import Config
from vnicbond.core.handover import FORMAT, handover_problem
from vnicbond.runtime import bridge

log = logging.getLogger("vnicbond")

#: The environment variable: ``MEMFD:FD,FD,...`` (the hand-over's memory file, then every
#: descriptor inherited with it).
ENV = "VNICBOND_HANDOVER"


def exec_new_code(state: dict[str, Any], fds: list[int]) -> None:
    """Execute the installed code in this process (``python -m vnicbond`` with this process's
    arguments), handing it ``state`` (JSON) and the descriptors ``fds``. Returns only by
    raising OSError, having taken nothing away: the caller goes on."""
    memfd = os.memfd_create("vnicbond-handover", 0)
    try:
        os.write(memfd, json.dumps({**state, "format": FORMAT, "pid": os.getpid()}).encode())
        os.lseek(memfd, 0, os.SEEK_SET)
        for fd in (memfd, *fds):
            os.set_inheritable(fd, True)
        env = {**os.environ, ENV: f"{memfd}:{','.join(str(fd) for fd in fds)}"}
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.execve(sys.executable, [sys.executable, "-m", "vnicbond", *sys.argv[1:]], env)
    except OSError:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        raise
    finally:
        os.close(memfd)


@dataclass
class Handover:
    """What the previous code handed over, as this process found it."""

    state: dict[str, Any]
    #: Inherited descriptors no object owns yet: closed by :meth:`release`.
    fds: set[int] = field(default_factory=set)
    #: The bridge's PID and socket while it forwards.
    _bridge: tuple[int, Any] | None = None

    @property
    def upgrades(self) -> int:
        """In-place upgrades of this daemon so far, this one included."""
        kept = self.state.get("upgrades", 0)
        return (kept if isinstance(kept, int) else 0) + 1

    def problem(self, config: Config) -> str | None:
        """Why the hand-over cannot be taken over with ``config``, or None
        (:func:`vnicbond.core.handover.handover_problem`)."""
        return handover_problem(self.state, config, os.getpid())

    def group(self, name: str) -> dict[str, Any]:
        """What group ``name`` handed over."""
        return next(g for g in self.state["groups"] if g["name"] == name)

    def own(self, fd: int) -> int:
        """An inherited descriptor is taken over by an object (which closes it from now)."""
        self.fds.discard(fd)
        return fd

    def finish_bridge(self) -> dict[str, dict[str, tuple[int, int]]] | None:
        """Stop the bridge; its ring cursors by group and member (None: there was no bridge,
        or it did not answer, and the rings' state is unknown)."""
        if self._bridge is None:
            return None
        pid, sock = self._bridge
        self._bridge = None
        self.fds.discard(sock.fileno())
        return bridge.finish(pid, sock)

    @property
    def bridged(self) -> bool:
        """Whether a bridge forwarded while this code started."""
        return bool(self.state.get("bridge"))

    def release(self) -> None:
        """Close the inherited descriptors nothing took over. Never raises."""
        for fd in sorted(self.fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def abandon(self) -> None:
        """Give the hand-over up: stop the bridge (it holds the TAPs), close everything
        inherited. The daemon then starts as after a crash."""
        self.finish_bridge()
        self.release()


def take() -> Handover | None:
    """The hand-over the previous code left for this process, if any (:data:`ENV`, which is
    removed from the environment). Never raises: an unreadable one is logged, whatever it
    names is closed, and None returned."""
    value = os.environ.pop(ENV, None)
    if not value:
        return None
    try:
        memfd_text, _, listed = value.partition(":")
        memfd = int(memfd_text)
        fds = {int(fd) for fd in listed.split(",") if fd}
    except ValueError:
        log.warning("upgrade: ignoring %s=%r: not a hand-over", ENV, value)
        return None
    fds = {fd for fd in fds if _inherited(fd)}
    handover = Handover({}, fds)
    try:
        with os.fdopen(memfd, "rb") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        handover.state = state
        kept = state.get("bridge")
        if kept is not None:
            import socket

            handover._bridge = (int(kept["pid"]), socket.socket(fileno=int(kept["fd"])))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("upgrade: the hand-over cannot be read (%s); starting as after a crash", e)
        handover.release()
        return None
    return handover


def _inherited(fd: int) -> bool:
    """Whether ``fd`` is open and was passed on by an exec (inheritable, as the previous code
    marked it)."""
    try:
        return os.get_inheritable(fd)
    except OSError:
        return False
