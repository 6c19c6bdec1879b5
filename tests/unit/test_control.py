"""Unit tests for vnicbond.control: the control socket's server and client halves.

The server runs on its own event loop in a background thread, so the tests can use the
blocking client (:func:`vnicbond.control.request`) and plain sockets exactly as ``vnicbond
status`` does. Every socket read has a timeout: a broken server fails a test, never hangs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vnicbond.control import (
    MAX_CLIENTS,
    MAX_REQUEST,
    CommandError,
    ControlError,
    ControlServer,
    prepare_socket_dir,
    prepare_socket_path,
    request,
)

TIMEOUT = 5.0
STATUS = {"pid": 1234, "groups": [{"name": "ipmp0", "state": "ok"}]}


async def handler(req: dict[str, Any]) -> Any:
    cmd = req["cmd"]
    if cmd == "status":
        return STATUS
    if cmd == "echo":
        return req
    if cmd == "crash":
        raise KeyError("handler bug")
    raise CommandError(f"unknown command {cmd!r}")


class ServerThread:
    """A ControlServer on its own loop in a daemon thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)  # handler crashes are expected
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = ControlServer(path, handler)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def start(self) -> None:
        self.thread.start()
        self.call(self.server.start())

    def stop(self) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            self.loop.close()



@pytest.fixture
def server(sock_dir: Path) -> Iterator[ServerThread]:
    st = ServerThread(str(sock_dir / "ctl.sock"))
    st.start()
    yield st
    st.stop()


def raw_exchange(path: str, data: bytes) -> dict[str, Any]:
    """Send raw bytes, read one reply line, decode it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(path)
        s.sendall(data)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.endswith(b"\n"), f"no complete reply line: {reply!r}"
    assert reply.count(b"\n") == 1
    decoded = json.loads(reply)
    assert isinstance(decoded, dict)
    return decoded


def assert_error_reply(reply: dict[str, Any]) -> None:
    assert reply["ok"] is False
    assert isinstance(reply["error"], str) and reply["error"]
    assert "\n" not in reply["error"]


# -- serving -----------------------------------------------------------------------------------
def test_status_returns_the_handlers_result(server: ServerThread) -> None:
    assert request(server.path, "status") == STATUS


def test_arguments_reach_the_handler(server: ServerThread) -> None:
    assert request(server.path, "echo", group="ipmp0", n=3) == {
        "cmd": "echo", "group": "ipmp0", "n": 3}


def test_reply_wire_format(server: ServerThread) -> None:
    assert raw_exchange(server.path, b'{"cmd": "status"}\n') == {"ok": True, "result": STATUS}


def test_unknown_command_raises_control_error_with_handlers_message(
        server: ServerThread) -> None:
    with pytest.raises(ControlError) as exc:
        request(server.path, "frobnicate")
    assert str(exc.value) == "unknown command 'frobnicate'"
    # The refusal is a reply, not a dropped connection.
    reply = raw_exchange(server.path, b'{"cmd": "frobnicate"}\n')
    assert reply == {"ok": False, "error": "unknown command 'frobnicate'"}


@pytest.mark.parametrize("payload", [
    b"{not json\n",
    b"\xff\xfe\n",
    b"[1, 2, 3]\n",
    b'"status"\n',
    b"null\n",
    b'{"command": "status"}\n',
    b'{"cmd": 5}\n',
], ids=["garbage", "not-utf8", "array", "string", "null", "no-cmd", "cmd-not-string"])
def test_malformed_request_gets_error_and_server_keeps_serving(
        server: ServerThread, payload: bytes) -> None:
    assert_error_reply(raw_exchange(server.path, payload))
    assert request(server.path, "status") == STATUS


def test_request_over_max_request_gets_error_and_server_keeps_serving(
        server: ServerThread) -> None:
    # Small enough over the limit that the whole request fits in the socket buffers: the
    # server answers after reading past the limit, without draining the rest.
    line = json.dumps({"cmd": "echo", "pad": "x" * (MAX_REQUEST + 1000)}).encode() + b"\n"
    reply = raw_exchange(server.path, line)
    assert_error_reply(reply)
    assert "too large" in reply["error"]
    assert request(server.path, "status") == STATUS


def test_request_limit_boundary(server: ServerThread) -> None:
    prefix = b'{"cmd": "echo", "pad": "'
    suffix = b'"}'
    pad = MAX_REQUEST - len(prefix) - len(suffix)
    exact = prefix + b"x" * pad + suffix
    assert len(exact) == MAX_REQUEST
    # MAX_REQUEST bytes is allowed ...
    reply = raw_exchange(server.path, exact + b"\n")
    assert reply["ok"] is True and len(reply["result"]["pad"]) == pad
    # ... one byte more is not.
    over = prefix + b"x" * (pad + 1) + suffix
    assert_error_reply(raw_exchange(server.path, over + b"\n"))
    assert request(server.path, "status") == STATUS


def test_client_sees_too_large_as_control_error(server: ServerThread) -> None:
    with pytest.raises(ControlError, match="too large"):
        request(server.path, "echo", pad="x" * (MAX_REQUEST + 1))


def test_several_requests_on_one_connection(server: ServerThread) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(server.path)
        s.sendall(b'{"cmd": "echo", "i": 1}\n{"cmd": "nope"}\n{"cmd": "echo", "i": 2}\n')
        data = b""
        while data.count(b"\n") < 3:
            chunk = s.recv(65536)
            assert chunk, f"connection closed early: {data!r}"
            data += chunk
    replies = [json.loads(line) for line in data.splitlines()]
    assert replies[0] == {"ok": True, "result": {"cmd": "echo", "i": 1}}
    assert replies[1] == {"ok": False, "error": "unknown command 'nope'"}
    assert replies[2] == {"ok": True, "result": {"cmd": "echo", "i": 2}}


def test_stalled_client_does_not_block_others(server: ServerThread) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(server.path)
        idle.sendall(b'{"cmd": "sta')  # half a request, and then nothing
        assert request(server.path, "status") == STATUS


def test_handler_crash_does_not_stop_the_server(server: ServerThread) -> None:
    with pytest.raises(ControlError):
        request(server.path, "crash")
    assert request(server.path, "status") == STATUS


def test_peer_not_allowed_is_refused(server: ServerThread) -> None:
    server.server._allowed = {os.geteuid() + 4242, 4243}  # neither root nor us
    # The refusal comes before the server reads anything: no request is needed to get it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(server.path)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert json.loads(data) == {"ok": False, "error": "permission denied: root only"}
    # The blocking client fails too (with the refusal, or with a broken pipe if the server
    # closed before the request was written: the refusal does not wait for a request).
    with pytest.raises(ControlError):
        request(server.path, "status")


# -- the socket file ---------------------------------------------------------------------------
def test_socket_file_mode_is_0600(server: ServerThread) -> None:
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_start_restores_the_umask(sock_dir: Path) -> None:
    old = os.umask(0o022)
    try:
        st = ServerThread(str(sock_dir / "u.sock"))
        st.start()
        try:
            assert os.umask(0o022) == 0o022
        finally:
            st.stop()
    finally:
        os.umask(old)


def test_close_removes_the_socket_file(sock_dir: Path) -> None:
    st = ServerThread(str(sock_dir / "c.sock"))
    st.start()
    assert os.path.exists(st.path)
    st.stop()
    assert not os.path.exists(st.path)
    with pytest.raises(ControlError):
        request(st.path, "status")


# -- prepare_socket_path -----------------------------------------------------------------------
def test_prepare_creates_the_directory(sock_dir: Path) -> None:
    path = sock_dir / "run" / "vnicbond" / "s.sock"
    prepare_socket_path(str(path))
    assert path.parent.is_dir()
    assert not path.exists()


def test_prepare_removes_a_stale_socket(sock_dir: Path) -> None:
    path = str(sock_dir / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays behind, nobody listens
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    prepare_socket_path(path)
    assert not os.path.exists(path)


def test_prepare_refuses_a_live_socket(sock_dir: Path) -> None:
    path = str(sock_dir / "live.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(1)
        with pytest.raises(ControlError) as exc:
            prepare_socket_path(path)
        assert path in str(exc.value)
        assert os.path.exists(path)


def test_prepare_refuses_a_running_control_server(server: ServerThread) -> None:
    with pytest.raises(ControlError, match="in use"):
        prepare_socket_path(server.path)
    assert request(server.path, "status") == STATUS


def test_prepare_then_serve_on_a_stale_path(sock_dir: Path) -> None:
    path = str(sock_dir / "again.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    prepare_socket_path(path)
    st = ServerThread(path)
    st.start()
    try:
        assert request(path, "status") == STATUS
    finally:
        st.stop()


def test_prepare_does_not_delete_a_regular_file(sock_dir: Path) -> None:
    path = sock_dir / "vnicbond.yaml"
    path.write_text("groups: []\n")
    with contextlib.suppress(ControlError):
        prepare_socket_path(str(path))
    assert path.read_text() == "groups: []\n"


# -- the client --------------------------------------------------------------------------------
def test_request_to_missing_path_names_the_path(sock_dir: Path) -> None:
    path = str(sock_dir / "missing.sock")
    with pytest.raises(ControlError) as exc:
        request(path, "status")
    message = str(exc.value)
    assert path in message
    assert "\n" not in message


def test_request_to_stale_socket_is_control_error(sock_dir: Path) -> None:
    path = str(sock_dir / "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    with pytest.raises(ControlError) as exc:
        request(path, "status")
    assert path in str(exc.value)


def answer_once(path: str, reply: bytes) -> tuple[socket.socket, threading.Thread]:
    """A listener on ``path`` that answers one connection with ``reply``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(TIMEOUT)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            conn.recv(65536)
            conn.sendall(reply)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    return listener, t


@pytest.mark.parametrize("reply", [b"this is not json\n", b"", b'{"ok": true'],
                         ids=["not-json", "nothing", "truncated"])
def test_request_to_a_server_that_answers_garbage(sock_dir: Path, reply: bytes) -> None:
    path = str(sock_dir / "junk.sock")
    listener, t = answer_once(path, reply)
    try:
        with pytest.raises(ControlError) as exc:
            request(path, "status")
    finally:
        t.join(TIMEOUT)
        listener.close()
    assert path in str(exc.value)


@pytest.mark.parametrize("reply", [b"[1]\n", b'"ok"\n', b"null\n"],
                         ids=["array", "string", "null"])
def test_request_non_object_reply_is_control_error(sock_dir: Path, reply: bytes) -> None:
    path = str(sock_dir / "odd.sock")
    listener, t = answer_once(path, reply)
    try:
        with pytest.raises(ControlError):
            request(path, "status")
    finally:
        t.join(TIMEOUT)
        listener.close()



def test_connections_beyond_the_limit_are_told_busy_and_the_rest_still_served(
        server: ServerThread) -> None:
    """Idle clients cannot pile up: past MAX_CLIENTS a new one is answered "busy" and
    closed; once they go, requests are served again."""
    idle = []
    try:
        for _ in range(MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(TIMEOUT)
            s.connect(server.path)
            idle.append(s)
        # Every idle connection is being served (a round trip on the last proves it).
        idle[-1].sendall(b'{"cmd": "status"}\n')
        assert json.loads(idle[-1].makefile().readline())["ok"]
        with pytest.raises(ControlError, match="busy"):
            request(server.path, "status", timeout=TIMEOUT)
    finally:
        for s in idle:
            s.close()
    deadline = TIMEOUT
    while True:
        try:
            assert request(server.path, "status", timeout=TIMEOUT) == STATUS
            break
        except ControlError:
            deadline -= 0.05
            assert deadline > 0
            time.sleep(0.05)


def test_prepare_socket_dir_gives_a_new_directory_to_the_user(sock_dir: Path) -> None:
    target = sock_dir / "run" / "x.sock"
    prepare_socket_dir(str(target), os.getuid(), os.getgid())
    st = os.stat(target.parent)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o755)


def test_prepare_socket_dir_refuses_a_directory_the_user_cannot_write(sock_dir: Path) -> None:
    (sock_dir / "ro").mkdir(mode=0o755)
    with pytest.raises(ControlError, match=r"ro is not writable by uid 4242"):
        prepare_socket_dir(str(sock_dir / "ro" / "x.sock"), 4242, 4242)
