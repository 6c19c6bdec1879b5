"""A slow echo responder: a lab host whose ping answers come late, run inside a namespace.

``python -m vnicbond.lab.responder --delay-ms 120 [--ipv6]`` answers every ICMP echo request
(and ICMPv6 with ``--ipv6``) reaching the namespace after DELAY ms, in place of the kernel's
echo reply: it sets ``net.ipv4.icmp_echo_ignore_all=1`` (and ``net.ipv6.icmp.echo_ignore_all``)
in its own namespace while it runs and puts back what was there when it stops (SIGTERM or
SIGINT). Replies are whole echo replies (same identifier, sequence and payload) to the
requester's address, from the address the request went to when that is a unicast one. SIGUSR1
takes the delay away (0 ms), SIGUSR2 puts the first delay back. It prints ``ready`` once it
answers, and on exit ``{"answered": N}``.

:func:`start` runs it in a lab namespace and waits until it is ready, :func:`no_delay` and
:func:`delay` switch it, :func:`finish` stops it by its PID. It judges nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import ipaddress
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from vnicbond.lab.topology import Lab, stop

SYSCTL_V4 = Path("/proc/sys/net/ipv4/icmp_echo_ignore_all")
SYSCTL_V6 = Path("/proc/sys/net/ipv6/icmp/echo_ignore_all")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; Python names it from 3.13 on
ECHO_REQUEST_V4, ECHO_REPLY_V4 = 8, 0
ECHO_REQUEST_V6, ECHO_REPLY_V6 = 128, 129


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_v4(request: bytes) -> bytes | None:
    """The ICMP echo reply to an ICMP message (no IP header), or None if it is no request."""
    if len(request) < 8 or request[0] != ECHO_REQUEST_V4:
        return None
    body = bytes([ECHO_REPLY_V4, 0, 0, 0]) + request[4:]
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def reply_v6(request: bytes) -> bytes | None:
    """The ICMPv6 echo reply to an ICMPv6 message, or None if it is no request (the kernel
    fills in an ICMPv6 raw socket's checksum)."""
    if len(request) < 8 or request[0] != ECHO_REQUEST_V6:
        return None
    return bytes([ECHO_REPLY_V6, 0, 0, 0]) + request[4:]


class Responder:
    """The sockets, the pending replies and the delay in force."""

    def __init__(self, delay_ms: float, ipv6: bool) -> None:
        self.initial_ms = delay_ms
        self.delay_ms = delay_ms
        self.answered = 0
        self.running = True
        self.v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.v4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.v6: socket.socket | None = None
        if ipv6:
            self.v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self.v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        # (due time, number, socket, reply, destination, ancillary data for the source)
        self.pending: list[tuple[float, int, socket.socket, bytes, tuple[object, ...],
                                 list[tuple[int, int, bytes]]]] = []
        self.count = 0

    def receive(self, sock: socket.socket) -> None:
        """Read one request and schedule its reply."""
        data, anc, _flags, addr = sock.recvmsg(65535, 256)
        source: list[tuple[int, int, bytes]] = []
        if sock is self.v4:
            ihl = (data[0] & 0x0F) * 4
            reply = reply_v4(data[ihl:])
            for level, kind, value in anc:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    # in_pktinfo: ifindex, spec_dst (the local address a reply goes from:
                    # the one asked, or the interface's for a broadcast), addr
                    source = [(level, kind, bytes(4) + value[4:8] + bytes(4))]
        else:
            reply = reply_v6(data)
            for level, kind, value in anc:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    asked = ipaddress.IPv6Address(value[:16])
                    if not asked.is_multicast:
                        source = [(level, kind, value[:16] + struct.pack("@I", 0))]
        if reply is None:
            return
        self.count += 1
        due = time.monotonic() + self.delay_ms / 1000
        heapq.heappush(self.pending, (due, self.count, sock, reply, addr, source))

    def send_due(self) -> None:
        """Send every reply whose time has come."""
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            _due, _n, sock, reply, addr, source = heapq.heappop(self.pending)
            with contextlib.suppress(OSError):
                sock.sendmsg([reply], source, 0, addr)
                self.answered += 1

    def run(self) -> None:
        """Answer until told to stop."""
        socks = [s for s in (self.v4, self.v6) if s is not None]
        while self.running:
            timeout = 0.2
            if self.pending:
                timeout = max(0.0, min(timeout, self.pending[0][0] - time.monotonic()))
            try:
                ready, _, _ = select.select(socks, [], [], timeout)
            except InterruptedError:  # pragma: no cover (PEP 475 retries)
                continue
            for sock in ready:
                self.receive(sock)
            self.send_due()


@contextlib.contextmanager
def kernel_silent(paths: list[Path]) -> Iterator[None]:
    """Set each sysctl in ``paths`` to 1 (the kernel answers no echo), restored after."""
    saved = [(p, p.read_text().strip()) for p in paths]
    try:
        for p in paths:
            p.write_text("1\n")
        yield
    finally:
        for p, value in saved:
            p.write_text(value + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m vnicbond.lab.responder")
    parser.add_argument("--delay-ms", type=float, default=120.0)
    parser.add_argument("--ipv6", action="store_true", help="answer ICMPv6 echo as well")
    args = parser.parse_args(argv)
    responder = Responder(args.delay_ms, args.ipv6)

    def stop_running(_sig: int, _frame: FrameType | None) -> None:
        responder.running = False

    def set_delay(sig: int, _frame: FrameType | None) -> None:
        responder.delay_ms = 0.0 if sig == signal.SIGUSR1 else responder.initial_ms

    signal.signal(signal.SIGTERM, stop_running)
    signal.signal(signal.SIGINT, stop_running)
    signal.signal(signal.SIGUSR1, set_delay)
    signal.signal(signal.SIGUSR2, set_delay)
    with kernel_silent([SYSCTL_V4, *([SYSCTL_V6] if args.ipv6 else [])]):
        print("ready", flush=True)
        responder.run()
    print(json.dumps({"answered": responder.answered}), flush=True)


# -- in a lab ----------------------------------------------------------------------------------
def start(lab: Lab, ns: str, delay_ms: float, ipv6: bool = False) -> subprocess.Popen[str]:
    """The responder in ``ns``, returned once the kernel there is silent and it answers."""
    proc = lab.popen(ns, sys.executable, "-m", "vnicbond.lab.responder",
                     "--delay-ms", str(delay_ms), *(["--ipv6"] if ipv6 else []))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate(timeout=10)
        raise RuntimeError(f"the responder did not start: {line}{err}")
    return proc


def no_delay(proc: subprocess.Popen[str]) -> None:
    """Answer at once from now on (SIGUSR1 to its PID)."""
    proc.send_signal(signal.SIGUSR1)


def delay(proc: subprocess.Popen[str]) -> None:
    """Put the first delay back (SIGUSR2 to its PID)."""
    proc.send_signal(signal.SIGUSR2)


def finish(proc: subprocess.Popen[str]) -> int:
    """Stop it by its PID (the kernel answers again); how many echoes it answered."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the responder failed (status {proc.returncode}): {err}")
    return int(json.loads(lines[-1])["answered"])


@contextlib.contextmanager
def running(lab: Lab, ns: str, delay_ms: float,
            ipv6: bool = False) -> Iterator[subprocess.Popen[str]]:
    """:func:`start`, stopped by its PID when the block is left."""
    proc = start(lab, ns, delay_ms, ipv6)
    try:
        yield proc
    finally:
        stop(proc, timeout=5)


if __name__ == "__main__":
    main()
