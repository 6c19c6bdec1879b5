"""Telling systemd (``Type=notify``) how the daemon is: ``READY=1``, ``RELOADING=1``,
``STOPPING=1`` over the datagram socket ``$NOTIFY_SOCKET`` names, when there is one."""

from __future__ import annotations

import contextlib
import os
import socket


def notify_systemd(state: str) -> None:
    """Tell systemd about our state, if it is listening (errors are ignored: a missing or
    full socket must not stop the daemon)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)
