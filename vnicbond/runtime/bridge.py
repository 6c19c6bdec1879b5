"""Forwarding while the daemon's new code starts (``vnicbond upgrade``): the bridge.

The daemon upgrades by executing the installed code in its own process (the PID stays, so
systemd keeps tracking it), and Python takes a few hundred milliseconds to import and set up.
Just before the exec, the old code forks a *bridge*: a child that goes on forwarding with the
old code's datapath objects, on the same TAP descriptor and member sockets and the same
memory-mapped rings (the kernel's pages, shared), while the new code starts. When the new
code is ready to forward, it asks the bridge to stop; the bridge answers with each member's
ring cursors (where the next frame is) and exits, and the new code goes on from there. Frames
the bridge does not get to wait in the kernel's queues (the TAP's, the receive rings).

The bridge runs only the datapath: nothing decides, probes or learns for the engine
meanwhile (guest MACs it hears are heard again by the new code). It holds only what it
forwards with (every other descriptor is closed: a metrics port, say, is free for the new
code), stops by itself after :data:`MAX_SECONDS`, and also when its socket to the daemon
closes (the new code failed and the process exited).

:func:`start` forks it; :func:`finish` stops it. It decides nothing.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from vnicbond.datapath import Datapath

#: The longest the bridge forwards: the new code takes well under a second to start.
MAX_SECONDS = 60.0
#: How long :func:`finish` waits for the bridge's answer and its exit.
FINISH_TIMEOUT = 3.0


class _Loop:
    """The event-loop calls the datapath makes (readers, ``call_soon``), on a plain epoll."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.readers: dict[int, tuple[Callable[..., None], tuple[Any, ...]]] = {}
        self.soon: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def add_reader(self, fd: int, callback: Callable[..., None], *args: Any) -> None:
        if fd in self.readers:
            self.epoll.unregister(fd)
        self.epoll.register(fd, select.EPOLLIN)
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd: int) -> bool:
        if self.readers.pop(fd, None) is None:
            return False
        with contextlib.suppress(OSError):
            self.epoll.unregister(fd)
        return True

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self.soon.append((callback, args))

    def run_once(self, timeout: float) -> None:
        """Wait up to ``timeout`` for readiness and run what is ready, then what was asked
        for soon. A callback that raises is skipped, as the event loop would."""
        for fd, _ in self.epoll.poll(timeout):
            reader = self.readers.get(fd)
            if reader is not None:
                _call(*reader)
        soon, self.soon = self.soon, []
        for callback, args in soon:
            _call(callback, args)


def _call(callback: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        callback(*args)
    except Exception as e:  # noqa: BLE001 - one bad frame must not stop the bridge
        os.write(2, f"vnicbond bridge: {e!r}\n".encode())


def start(datapaths: dict[str, Datapath]) -> tuple[int, socket.socket] | None:
    """Fork the bridge, forwarding for ``datapaths`` (by group), which this process must have
    stopped reading (:meth:`Datapath.unwatch`). Returns the child's PID and this end of its
    socket, or None if it cannot fork (frames then wait in the kernel's queues)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:  # the bridge
        code = 1
        try:
            code = _serve(datapaths, theirs)
        except BaseException as e:  # noqa: BLE001 - say why, then go: the new code reopens
            with contextlib.suppress(OSError):
                os.write(2, f"vnicbond bridge: stopped: {e!r}\n".encode())
        finally:
            os._exit(code)
    theirs.close()
    return pid, ours


def _serve(datapaths: dict[str, Datapath], sock: socket.socket) -> int:
    """The bridge's life: forward until asked to stop (or the daemon goes), then answer with
    the ring cursors."""
    gc.disable()  # descriptors are closed below under objects that must not close them again
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGHUP, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    keep = {0, 1, 2, sock.fileno()}
    for dp in datapaths.values():
        keep.add(dp.tap_fd)
        keep.update(p.sock.fileno() for p in dp.ports.values() if p.rx is not None)
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            with contextlib.suppress(OSError):
                os.close(int(name))
    loop = _Loop()
    stop: list[bool] = []
    loop.add_reader(sock.fileno(), stop.append, True)
    for dp in datapaths.values():
        dp.loop = loop  # type: ignore[assignment]
        dp.on_guests = None  # the engine is not here: nothing to place
        dp.watch()
    deadline = time.monotonic() + MAX_SECONDS
    while not stop and time.monotonic() < deadline:
        loop.run_once(0.5)
    cursors = {group: dp.cursors() for group, dp in datapaths.items()}
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        while sock.recv(4096):  # read the request whole: a Unix socket closed with
            pass                # unread data resets its peer
    with contextlib.suppress(OSError):
        sock.sendall(json.dumps({"cursors": cursors}).encode())
    return 0


def finish(pid: int, sock: socket.socket, timeout: float = FINISH_TIMEOUT
           ) -> dict[str, dict[str, tuple[int, int]]] | None:
    """Stop the bridge (:func:`start`) and reap it: each group's ring cursors, by member, or
    None if it did not answer in time (it is then killed: the rings' state is unknown)."""
    data = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(b"stop")
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass  # what arrived is checked below
    finally:
        sock.close()
    if not _reap(pid, timeout):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid, timeout)
        return None
    try:
        cursors = json.loads(data)["cursors"]
        return {str(group): {str(member): (int(rx), int(tx))
                             for member, (rx, tx) in dict(ports).items()}
                for group, ports in dict(cursors).items()}
    except (KeyError, TypeError, ValueError):
        return None


def _reap(pid: int, timeout: float) -> bool:
    """Wait for child ``pid`` to exit; whether it did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True  # not ours to wait for, or already reaped
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
