"""The forwarder: moves frames between the TAP and the member packet sockets.

It owns the per-frame path and nothing else. It reads a forwarding table that the daemon sets
(:meth:`Datapath.set_forwarding`: which member transmits, which members may deliver to the TAP)
and decides nothing itself. Every frame carries its 10-byte virtio-net header from the reader
to the writer untouched, so TCP super-frames and partial checksums cross whole and the kernel
segments or finishes them on the way out.

Per frame it does two system calls and a few byte comparisons: no parsing beyond the
destination MAC, no logging, no allocation beyond a memoryview slice.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket

from vnicbond.wire.vnet import GSO_UDP_L4, VNET_HDR_LEN, ZERO_VNET_HDR

#: Frames drained per readiness callback before yielding to the event loop.
BATCH = 64
#: Room for a 64 KiB GSO super-frame, its Ethernet header and the virtio-net header.
BUFFER_SIZE = 10 + 14 + 65535 + 64

#: Offsets of the destination and source MAC behind the virtio-net header.
_DST = VNET_HDR_LEN
_SRC = VNET_HDR_LEN + 6


class Port:
    """One member's packet socket and its counters."""

    __slots__ = (
        "name",
        "rx_bytes",
        "rx_dropped",
        "rx_packets",
        "sock",
        "tx_bytes",
        "tx_dropped",
        "tx_packets",
    )

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_dropped = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_dropped = 0

    def counters(self) -> dict[str, int]:
        """The counters as a plain dict, for status."""
        return {
            "tx_packets": self.tx_packets,
            "rx_packets": self.rx_packets,
            "tx_bytes": self.tx_bytes,
            "rx_bytes": self.rx_bytes,
            "tx_dropped": self.tx_dropped,
            "rx_dropped": self.rx_dropped,
        }


def wire_packets(buf: bytearray | bytes, n: int) -> int:
    """How many packets a frame of ``n`` bytes (header included) becomes on the wire.

    The header's ``hdr_len`` is only a hint (the kernel fills it with the linear length), so
    for a partially checksummed TCP super-frame the header length is ``csum_start`` plus the
    TCP header's own length.
    """
    if buf[1] == 0:  # gso_type NONE (the hot path checks this itself before calling)
        return 1
    gso_size = buf[4] | (buf[5] << 8)
    if gso_size == 0:
        return 1
    header = buf[2] | (buf[3] << 8)
    if buf[0] & 1:  # NEEDS_CSUM: csum_start is where the transport header begins
        l4 = buf[6] | (buf[7] << 8)
        offset = VNET_HDR_LEN + l4 + 12  # the TCP data offset byte
        tcp = buf[1] & 0x7F != GSO_UDP_L4  # UDP's header is always 8 bytes
        header = l4 + ((buf[offset] >> 4) * 4 if tcp and offset < n else 8)
    payload = n - VNET_HDR_LEN - header
    if payload <= 0:
        return 1
    return -(-payload // gso_size)


class Datapath:
    """Frames between one TAP and its members, following the forwarding table."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tap_fd: int, group_mac: bytes) -> None:
        self.loop = loop
        self.tap_fd = tap_fd
        self.tap = io.FileIO(tap_fd, "r+", closefd=False)
        self.group_mac = bytes(group_mac)
        self.ports: dict[str, Port] = {}
        self.tx_port: Port | None = None
        self.rx_ports: frozenset[Port] = frozenset()
        self.tap_dropped = 0
        self._tap_buf = bytearray(BUFFER_SIZE)
        self._rx_buf = bytearray(BUFFER_SIZE)
        self._started = False

    # -- table -------------------------------------------------------------------------------
    def add_port(self, name: str, sock: socket.socket) -> Port:
        """Start reading a member's socket."""
        port = Port(name, sock)
        self.ports[name] = port
        self.loop.add_reader(sock.fileno(), self._on_member, port)
        return port

    def remove_port(self, name: str) -> Port | None:
        """Stop reading a member's socket and drop it from the table; returns the port."""
        port = self.ports.pop(name, None)
        if port is None:
            return None
        self.loop.remove_reader(port.sock.fileno())
        if self.tx_port is port:
            self.tx_port = None
        self.rx_ports = self.rx_ports - {port}
        return port

    def set_forwarding(self, tx: str | None, rx: frozenset[str] | set[str]) -> None:
        """Point outbound traffic at member ``tx`` and accept inbound from members ``rx``."""
        self.tx_port = self.ports.get(tx) if tx else None
        self.rx_ports = frozenset(self.ports[n] for n in rx if n in self.ports)

    def start(self) -> None:
        """Start reading the TAP."""
        if not self._started:
            self.loop.add_reader(self.tap_fd, self._on_tap)
            self._started = True

    def stop(self) -> None:
        """Stop reading everything."""
        if self._started:
            self.loop.remove_reader(self.tap_fd)
            self._started = False
        for name in list(self.ports):
            self.remove_port(name)

    # -- control frames ----------------------------------------------------------------------
    def send_frame(self, member: str, frame: bytes) -> bool:
        """Send a frame the daemon built (no virtio-net header yet) out of ``member``."""
        port = self.ports.get(member)
        if port is None:
            return False
        try:
            port.sock.send(ZERO_VNET_HDR + frame)
        except OSError:
            port.tx_dropped += 1
            return False
        port.tx_packets += 1
        port.tx_bytes += len(frame)
        return True

    # -- the hot path ------------------------------------------------------------------------
    def _on_tap(self) -> None:
        readinto = self.tap.readinto
        buf = self._tap_buf
        port = self.tx_port
        if port is None:
            # No usable member: drain and count, so stale frames do not burst out later.
            try:
                for _ in range(BATCH):
                    if not readinto(buf):
                        return
                    self.tap_dropped += 1
            except OSError:
                self.tap_dropped += 1
            return
        mv = memoryview(buf)
        send = port.sock.send
        packets = nbytes = 0
        try:
            for _ in range(BATCH):
                n = readinto(buf)
                if not n:  # None: nothing left to read
                    break
                try:
                    send(mv[:n])
                except OSError:
                    port.tx_dropped += 1
                    continue
                packets += wire_packets(buf, n) if buf[1] else 1
                nbytes += n - VNET_HDR_LEN
        except OSError:
            self.tap_dropped += 1
        port.tx_packets += packets
        port.tx_bytes += nbytes

    def _on_member(self, port: Port) -> None:
        recv_into = port.sock.recv_into
        buf = self._rx_buf
        mv = memoryview(buf)
        tap_fd = self.tap_fd
        write = os.write
        mac = self.group_mac
        deliver = port in self.rx_ports
        packets = nbytes = 0
        for _ in range(BATCH):
            try:
                n = recv_into(buf)
            except BlockingIOError:
                break
            except OSError:
                port.rx_dropped += 1  # e.g. ENETDOWN, reported once when the link goes
                break
            if not deliver:
                continue  # only the members the table names deliver to the TAP
            if n < VNET_HDR_LEN + 14:
                port.rx_dropped += 1
                continue
            if buf[VNET_HDR_LEN] & 1:
                # Broadcast or multicast: ignore our own frames flooded back by the switch.
                if buf.startswith(mac, _SRC):
                    continue
            elif not buf.startswith(mac, _DST):
                continue  # unicast for another host, flooded by the switch
            try:
                write(tap_fd, mv[:n])
            except OSError:
                port.rx_dropped += 1
                continue
            packets += wire_packets(buf, n) if buf[1] else 1
            nbytes += n - VNET_HDR_LEN
        port.rx_packets += packets
        port.rx_bytes += nbytes
