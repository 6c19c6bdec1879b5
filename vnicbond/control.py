"""The control socket: newline-delimited JSON requests and replies over a Unix socket.

The server half runs inside the daemon's event loop and knows nothing of groups: it calls the
handler the daemon gives it. The client half is plain blocking sockets and the standard
library, so client commands start fast.

Protocol: one request per line, ``{"cmd": "status", ...}``; one reply per line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``. Only root (or the
daemon's own user) may connect; a request over ``MAX_REQUEST`` bytes, malformed JSON or a
client that stalls gets an error reply or is dropped, never harming the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from typing import Any

MAX_REQUEST = 64 * 1024
#: Connections served at once; more are told the daemon is busy and closed.
MAX_CLIENTS = 32
READ_TIMEOUT = 5.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(RuntimeError):
    """A client-side failure, with a one-line message for the operator."""


class CommandError(Exception):
    """Raised by a handler to refuse a request with a one-line message."""


# -- server ------------------------------------------------------------------------------------
def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def prepare_socket_dir(path: str, uid: int, gid: int) -> None:
    """Make sure user ``uid`` can create the socket (and the state files) beside ``path``.

    A missing directory is created (mode 0755) and given to ``uid``; an existing one must
    already be writable by it. Raises ControlError naming the directory otherwise.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(os.path.dirname(os.path.abspath(directory)), mode=0o755, exist_ok=True)
    try:
        os.mkdir(directory, 0o755)
    except FileExistsError:
        st = os.stat(directory)
        writable = ((st.st_uid == uid and st.st_mode & stat.S_IWUSR)
                    or (st.st_gid == gid and st.st_mode & stat.S_IWGRP)
                    or st.st_mode & stat.S_IWOTH)
        if not writable and uid != 0:
            raise ControlError(f"control socket directory {directory} is not writable by "
                               f"uid {uid}: give it to that user or choose another "
                               "control.socket") from None
        return
    os.chown(directory, uid, gid)


def prepare_socket_path(path: str) -> None:
    """Make the socket's directory; remove a stale socket, refuse a live one."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"control socket {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: left by a dead instance
        return
    except OSError as e:
        raise ControlError(f"control socket {path}: {e.strerror or e}") from None
    finally:
        probe.close()
    raise ControlError(f"control socket {path} is in use by a running vnicbond")


class ControlServer:
    """Serves ``handler`` on a Unix socket with mode 0600."""

    def __init__(self, path: str, handler: Handler, sock: socket.socket | None = None) -> None:
        """``sock``: a socket already listening on ``path`` (the daemon's previous code's,
        kept across ``vnicbond upgrade``: clients that connected meanwhile are served)."""
        self.path = path
        self.handler = handler
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None
        self._allowed = {0, os.geteuid()}
        self._clients = 0

    async def start(self) -> None:
        """Bind and listen (the socket file is created with mode 0600), or serve ``sock``."""
        if self._sock is not None:
            self._server = await asyncio.start_unix_server(self._serve, sock=self._sock,
                                                           limit=MAX_REQUEST)
            return
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=self.path,
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old)

    def listening_fd(self) -> int | None:
        """The listening socket's descriptor (to keep it across ``vnicbond upgrade``)."""
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].fileno())

    async def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            if self._clients > MAX_CLIENTS:
                # Take the request first (briefly), so the client reads the refusal rather
                # than a broken pipe.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader.readline(), 1.0)
                await self._reply(writer, {"ok": False, "error": "busy: too many connections"})
                return
            if _peer_uid(writer) not in self._allowed:
                await self._reply(writer, {"ok": False, "error": "permission denied: root only"})
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
                except (asyncio.LimitOverrunError, ValueError):
                    await self._reply(writer, {"ok": False, "error": "request too large"})
                    return
                except TimeoutError:
                    return
                if not line:
                    return
                await self._reply(writer, await self._dispatch(line))
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients -= 1
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "malformed request: not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": "malformed request: expected {\"cmd\": ...}"}
        try:
            return {"ok": True, "result": await self.handler(request)}
        except CommandError as e:
            return {"ok": False, "error": str(e)}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()


def inherited_listener(fd: int, path: str) -> socket.socket | None:
    """The control socket listening on ``path`` behind descriptor ``fd``, open since before an
    exec (``vnicbond upgrade``), or None (``fd`` closed) if it is something else."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if (sock.family != socket.AF_UNIX or sock.getsockname() != path
                or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            raise OSError("not the control socket")
        sock.set_inheritable(False)
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock


# -- client ------------------------------------------------------------------------------------
def request(path: str, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
    """Send one command to the daemon and return its result; ControlError on any failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise ControlError(f"cannot reach vnicbond at {path}: {e.strerror or e} "
                               "(is the daemon running? --socket PATH names another)") from None
        sock.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise ControlError(f"vnicbond at {path}: {e.strerror or e}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ControlError(f"vnicbond at {path} sent no valid reply")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request failed")))
    return reply.get("result")
