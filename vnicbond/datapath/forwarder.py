"""The forwarder: moves frames between the TAP and the members' packet rings.

It owns the forwarding table both modes follow, which the daemon sets
(:meth:`Datapath.set_forwarding`, :meth:`Datapath.set_spread`: which member transmits, which
members may deliver to the TAP), the ports, and what every frame loop shares: reading a frame
too long for its receive slot, a pending socket error, the frames the daemon builds itself. It
decides nothing itself. The per-frame loops are :mod:`vnicbond.datapath.backup` (active-backup)
and :mod:`vnicbond.datapath.spread` (load spreading), mixed into :class:`Datapath` so they read
the table as its attributes; flushing a transmit ring is :mod:`vnicbond.datapath.txring`, a
member's counters and drop reasons :mod:`vnicbond.datapath.port`.

Each member's data socket carries a memory-mapped receive ring and transmit ring
(:mod:`vnicbond.system.ring`). Inbound, a readiness callback drains up to ``BATCH`` filled slots
and writes each frame, its virtio-net header just before it in the slot, to the TAP in one
``write`` with no copy. Outbound, the TAP is read straight into the next free transmit slot
(active-backup) and one ``send()`` flushes the batch. Frames keep their virtio-net header from
the reader to the writer untouched, so TCP super-frames and partial checksums cross whole and
the kernel segments or finishes them on the way out.

Every frame read is either passed on or counted under one reason (the ``*_REASONS`` of
:mod:`vnicbond.datapath.port`), so what arrives always adds up to what left plus what was
dropped. Hostile frames cost the same as any other: nothing here parses beyond fixed offsets
checked against the frame's length.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Callable
from typing import Protocol

from vnicbond.core.fdb import MacTable
from vnicbond.datapath.backup import BackupLoops
from vnicbond.datapath.flowhash import FlowTable
from vnicbond.datapath.offsets import BUFFER_SIZE
from vnicbond.datapath.port import TAP_REASONS, Port
from vnicbond.datapath.spread import SpreadLoops
from vnicbond.datapath.txring import flush
from vnicbond.system.packet import socket_error
from vnicbond.system.ring import (
    LEN,
    TP_STATUS_COPY,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_VLAN_TPID_VALID,
    Ring,
)
from vnicbond.wire.vnet import VNET_HDR_LEN, ZERO_VNET_HDR, insert_vlan_tag

_MSG_TRUNC = socket.MSG_TRUNC  # recv returns the frame's real length, so a cut is seen


class Rings(Protocol):
    """A member socket's receive and transmit rings."""

    rx: Ring
    tx: Ring


class Datapath(BackupLoops, SpreadLoops):
    """Frames between one TAP and its members, following the forwarding table."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tap_fd: int, group_mac: bytes,
                 mtu: int = 65535, guests: MacTable | None = None) -> None:
        self.loop = loop
        #: The longest frame (virtio-net header included) that is not a GSO super-frame the
        #: TAP takes from a member: the group's MTU, Ethernet header and one VLAN tag. Longer
        #: ones (a member whose wire has a larger MTU) are dropped, as a NIC of that MTU would.
        self.max_frame = 0
        self.set_group_mtu(mtu)
        self.tap_fd = tap_fd
        self.tap = io.FileIO(tap_fd, "r+", closefd=False)
        self.group_mac = bytes(group_mac)
        self.ports: dict[str, Port] = {}
        self.tx_port: Port | None = None
        self.rx_ports: frozenset[Port] = frozenset()
        # Load spreading: flows -> members, data address -> hosting member, and the one member
        # that hands broadcasts and multicasts to the TAP.
        self.spreading = False
        self.flow_table = FlowTable()
        self.bucket_ports: list[Port | None] = [None] * len(self.flow_table.table)
        self.host_ports: dict[bytes, Port] = {}
        self.first_port: Port | None = None
        self.own_macs: frozenset[bytes] = frozenset([self.group_mac])
        #: Frames read from the TAP that no member was asked to send, by :data:`TAP_REASONS`.
        self.tap_drops = dict.fromkeys(TAP_REASONS, 0)
        #: The guests behind the TAP (bridges, VMs, macvlans): their MACs, learned from the
        #: frames the host sends; ``on_guests`` is called when the table changed.
        self.guests = guests if guests is not None else MacTable(4096, 300.0)
        self.on_guests: Callable[[], None] | None = None
        #: Load spreading: guest MAC -> the member carrying it.
        self.mac_ports: dict[bytes, Port] = {}
        #: The TAP is promiscuous (a bridge port): deliver unicast for any MAC, once.
        self.promiscuous = False
        #: TAP frames no transmit slot takes (load spreading, a full ring), and received frames
        #: too long for their slot.
        self._tap_buf = bytearray(BUFFER_SIZE)
        self._rx_buf = bytearray(BUFFER_SIZE)
        self._rx_view = memoryview(self._rx_buf)
        self._started = False

    @property
    def tap_dropped(self) -> int:
        """Frames read from the TAP and dropped before any member was chosen."""
        return sum(self.tap_drops.values())

    # -- table -------------------------------------------------------------------------------
    def add_port(self, name: str, sock: socket.socket, rings: Rings, mac: bytes = b"",
                 test_ip: bytes | None = None, mtu: int = 1500) -> Port:
        """Start reading a member's socket and rings."""
        port = Port(name, sock, mac, test_ip, mtu)
        port.rx, port.tx = rings.rx, rings.tx
        self.ports[name] = port
        self._refresh_own_macs()
        self.loop.add_reader(sock.fileno(), self._on_member_ready, port)
        return port

    def remove_port(self, name: str) -> Port | None:
        """Stop reading a member's socket and drop it from the table; returns the port."""
        port = self.ports.pop(name, None)
        if port is None:
            return None
        self.detach(name, port)
        if self.tx_port is port:
            self.tx_port = None
        self.rx_ports = self.rx_ports - {port}
        self._refresh_own_macs()
        if self.spreading:
            self.set_spread(tuple(n for n in self.flow_table.members if n != name),
                            {ip: p.name for ip, p in self.host_ports.items() if p is not port})
        return port

    def detach(self, name: str, port: Port | None = None) -> None:
        """The member's NIC went away: stop reading its socket and let go of its rings (the
        caller closes them). The port keeps its counters; frames for it are dropped until the
        forwarding table stops naming it, which the caller arranges at once."""
        port = port or self.ports.get(name)
        if port is None:
            return
        if port.sock.fileno() >= 0:
            self.loop.remove_reader(port.sock.fileno())
        port.rx = port.tx = None
        port.pending.clear()

    def attach(self, name: str, sock: socket.socket, rings: Rings, mac: bytes) -> None:
        """A new NIC took the member's name: read and send through its socket from now on."""
        port = self.ports[name]
        self.detach(name)
        port.sock = sock
        port.rx, port.tx = rings.rx, rings.tx
        port.mac = mac
        self._refresh_own_macs()
        self.loop.add_reader(sock.fileno(), self._on_member_ready, port)

    def rearm(self, name: str) -> None:
        """Watch the member's socket afresh. uvloop stops watching a descriptor that reported
        an error (the NIC went down): this brings it back, and is harmless otherwise."""
        port = self.ports.get(name)
        if port is None or port.rx is None or port.sock.fileno() < 0:
            return
        if socket_error(port.sock):  # left by a wake-up that found frames: it would stop
            port.drops["error"] += 1  # the watch again at once
        self.loop.remove_reader(port.sock.fileno())
        self.loop.add_reader(port.sock.fileno(), self._on_member_ready, port)

    def _refresh_own_macs(self) -> None:
        """The MACs whose broadcasts flooded back to us are our own: the group's and members'."""
        self.own_macs = frozenset([self.group_mac, *(p.mac for p in self.ports.values() if p.mac)])

    def set_test_ip(self, name: str, test_ip: bytes | None) -> None:
        """A reload changed a member's test address."""
        port = self.ports[name]
        port.test_ip4 = test_ip if test_ip is not None and len(test_ip) == 4 else None
        port.test_ip6 = test_ip if test_ip is not None and len(test_ip) == 16 else None

    def set_mtu(self, name: str, mtu: int) -> None:
        """A member's NIC has MTU ``mtu`` now: frames above it are not sent."""
        self.ports[name].tx_max = VNET_HDR_LEN + 14 + mtu

    def set_group_mtu(self, mtu: int) -> None:
        """The group's (the TAP's) MTU is ``mtu`` now: longer frames from members are dropped
        (``oversize``)."""
        self.max_frame = VNET_HDR_LEN + 14 + 4 + mtu

    def set_mac_hosts(self, hosts: tuple[tuple[bytes, str | None], ...],
                      removed: tuple[bytes, ...]) -> None:
        """Load spreading: which member carries each guest MAC (None: none); forget
        ``removed``."""
        mac_ports = self.mac_ports
        for mac in removed:
            mac_ports.pop(mac, None)
        for mac, member in hosts:
            port = self.ports.get(member) if member else None
            if port is None:
                mac_ports.pop(mac, None)
            else:
                mac_ports[mac] = port

    def set_promiscuous(self, on: bool) -> None:
        """The TAP is (or is no longer) promiscuous: unicast for any MAC is delivered, once."""
        self.promiscuous = on

    def set_forwarding(self, tx: str | None, rx: frozenset[str] | set[str]) -> None:
        """Point outbound traffic at member ``tx`` and accept inbound from members ``rx``."""
        self.spreading = False
        self.tx_port = self.ports.get(tx) if tx else None
        self.rx_ports = frozenset(self.ports[n] for n in rx if n in self.ports)

    def set_spread(self, active: tuple[str, ...], hosts: dict[bytes, str | None]) -> None:
        """Load spreading: flows over ``active``; ``hosts``: packed data address -> member."""
        ports = [self.ports[n] for n in active if n in self.ports]
        self.flow_table.set_members([p.name for p in ports])
        self.bucket_ports = [self.ports[m] if m else None for m in self.flow_table.table]
        self.host_ports = {ip: self.ports[m] for ip, m in hosts.items() if m in self.ports}
        self.first_port = ports[0] if ports else None
        self.rx_ports = frozenset(ports)
        self.tx_port = self.first_port
        self.spreading = True

    def start(self) -> None:
        """Start reading the TAP."""
        if not self._started:
            self.loop.add_reader(self.tap_fd, self._on_tap_ready)
            self._started = True

    def stop(self) -> None:
        """Stop reading everything."""
        if self._started:
            self.loop.remove_reader(self.tap_fd)
            self._started = False
        for name in list(self.ports):
            self.remove_port(name)

    def unwatch(self) -> None:
        """Stop reading the TAP and the members, leaving the rings as they are (another
        process forwards for a moment: ``vnicbond upgrade``)."""
        if self._started:
            self.loop.remove_reader(self.tap_fd)
        for port in self.ports.values():
            if port.rx is not None and port.sock.fileno() >= 0:
                self.loop.remove_reader(port.sock.fileno())

    def watch(self) -> None:
        """Read the TAP and the members again after :meth:`unwatch`, on ``self.loop``."""
        if self._started:
            self.loop.add_reader(self.tap_fd, self._on_tap_ready)
        for port in self.ports.values():
            if port.rx is not None and port.sock.fileno() >= 0:
                self.loop.add_reader(port.sock.fileno(), self._on_member_ready, port)

    def cursors(self) -> dict[str, tuple[int, int]]:
        """Each member's next receive and transmit slots (whoever forwards next starts
        there)."""
        return {name: (port.rx.head, port.tx.head) for name, port in self.ports.items()
                if port.rx is not None and port.tx is not None}

    def set_cursors(self, cursors: dict[str, tuple[int, int]]) -> None:
        """Go on from the slots where another process stopped (:meth:`cursors`)."""
        for name, (rx, tx) in cursors.items():
            port = self.ports.get(name)
            if port is not None and port.rx is not None and port.tx is not None:
                port.rx.head, port.tx.head = rx % port.rx.count, tx % port.tx.count

    # -- control frames ----------------------------------------------------------------------
    def send_frame(self, member: str, frame: bytes) -> bool:
        """Send a frame the daemon built (no virtio-net header yet) out of ``member``;
        whether the kernel took it."""
        port = self.ports.get(member)
        if port is None:
            return False
        if port.tx is None:
            port.drops["tx_error"] += 1  # its NIC went away
            return False
        before = port.tx_packets
        if self._queue(port, ZERO_VNET_HDR + frame, 1):
            flush(port, 1, len(frame))
        return port.tx_packets > before

    def _queue(self, port: Port, data: bytes | memoryview, packets: int) -> bool:
        """Copy one frame (virtio-net header first) into the port's next transmit slot and
        request it; a full ring drops it (``tx_congested``)."""
        tx = port.tx
        assert tx is not None
        i = tx.head
        w = tx.at[i]
        if tx.words[w]:
            port.drops["tx_congested"] += 1
            return False
        n = len(data)
        tx.views[i][:n] = data
        tx.words[w + LEN] = n
        tx.words[w] = TP_STATUS_SEND_REQUEST
        tx.head = i + 1 if i + 1 < tx.count else 0
        port.pending.append([w, i, packets, n - VNET_HDR_LEN])
        return True

    # -- shared by the loops -----------------------------------------------------------------
    def _on_tap_ready(self) -> None:
        if self.spreading:
            self._on_tap_spread()
        else:
            self._on_tap()

    def _on_member_ready(self, port: Port) -> None:
        if self.spreading:
            self._on_member_spread(port)
        else:
            self._on_member(port)

    def _copied(self, port: Port, status: int) -> memoryview | None:
        """A frame longer than its receive slot. With ``TP_STATUS_COPY`` the kernel queued it
        whole on the socket (read it, in ring order); without, its queue was full and the
        frame is lost (``kernel``). None: nothing to forward (counted)."""
        if not status & TP_STATUS_COPY:
            port.drops["kernel"] += 1
            return None
        buf = self._rx_buf
        try:
            n = port.sock.recv_into(buf, 0, _MSG_TRUNC)
        except BlockingIOError:
            port.drops["error"] += 1
            return None
        except OSError:
            # A pending socket error (the NIC went down) is reported, and cleared, before the
            # queue is looked at: the frame is still there. Count the error, read the frame,
            # and watch the socket afresh (uvloop stopped watching it on the error).
            port.drops["error"] += 1
            self.loop.call_soon(self.rearm, port.name)
            try:
                n = port.sock.recv_into(buf, 0, _MSG_TRUNC)
            except OSError:
                return None
        if n > len(buf):
            port.drops["oversize"] += 1  # cut short by the buffer: above any MTU
            return None
        return self._rx_view[:n]

    @staticmethod
    def _retagged(frame: memoryview, vlan: int, status: int) -> memoryview:
        """A received frame whose 802.1Q tag the kernel took off (a guest's VLAN), with the tag
        put back: the TAP gets the frame as it was on the wire. ``vlan``: the slot's
        ``tp_vlan_tci`` (low half) and ``tp_vlan_tpid`` (high half)."""
        tpid = vlan >> 16 if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
        return memoryview(insert_vlan_tag(frame, tpid or 0x8100, vlan & 0xFFFF))

    def _heard(self, mac: bytes) -> None:
        """A frame from the TAP came from guest MAC ``mac``: learn it (the table may tell the
        group runtime, which places it at once). The loops drop a multicast or all-zero
        source before (``bad_source``): never a guest."""
        guests = self.guests
        guests.heard(mac, time.monotonic())
        if guests.pending and self.on_guests is not None:
            self.on_guests()

    def _on_empty(self, port: Port) -> None:
        """A wake-up with no frame: a pending socket error (the NIC went down) keeps the
        socket readable, and uvloop then stops watching it. Clear it, count it, watch again."""
        if socket_error(port.sock):
            port.drops["error"] += 1
            self.loop.call_soon(self.rearm, port.name)
