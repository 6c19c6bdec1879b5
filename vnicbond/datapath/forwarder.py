"""The forwarder: moves frames between the TAP and the member packet sockets.

It owns the per-frame loops of both modes (active-backup and load spreading) and the
forwarding table they follow, which the daemon sets (:meth:`Datapath.set_forwarding`,
:meth:`Datapath.set_spread`: which member transmits, which members may deliver to the TAP); it
decides nothing itself. A member's counters and drop reasons live in
:mod:`vnicbond.datapath.port`, the rewrite of neighbour discovery in load spreading in
:mod:`vnicbond.datapath.ndp`. Every frame carries its 10-byte virtio-net header from the reader
to the writer untouched, so TCP super-frames and partial checksums cross whole and the kernel
segments or finishes them on the way out.

Per frame it does two system calls and a few byte comparisons: no parsing beyond the
destination MAC, no logging, no allocation beyond a memoryview slice.

Every frame read is either passed on or counted under one reason (the ``*_REASONS`` of
:mod:`vnicbond.datapath.port`), so what arrives always adds up to what left plus what was
dropped. Hostile frames cost the same as any other: nothing here parses beyond fixed offsets
checked against the frame's length, and what the kernel refuses to send (a lying virtio-net
header, a frame above the MTU) comes back as an error that is counted, not raised.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket

from vnicbond.datapath.flowhash import FlowTable, flow_hash
from vnicbond.datapath.ndp import neighbor_discovery
from vnicbond.datapath.offsets import ARP_SHA, ARP_SPA, ARP_TPA, DST, ICMP6, IP6_DST, L3, SRC, TYPE
from vnicbond.datapath.port import MAX_FLOWS, TAP_REASONS, Port, tx_reason, wire_packets
from vnicbond.wire.vnet import VNET_HDR_LEN, ZERO_VNET_HDR

#: Frames drained per readiness callback before yielding to the event loop.
BATCH = 64
#: Room for a 64 KiB GSO super-frame, its Ethernet header and the virtio-net header.
BUFFER_SIZE = 10 + 14 + 65535 + 64
_MSG_TRUNC = socket.MSG_TRUNC  # recv returns the frame's real length, so a cut is seen


class Datapath:
    """Frames between one TAP and its members, following the forwarding table.

    About 350 lines, and one class on purpose: the four frame loops read the table's state
    (ports, the MACs, the buckets) as this object's attributes, hoisted into locals once per
    batch and some read per frame. Holding the table in another object would add a lookup per
    frame or per batch to the hot path, which is what this class exists to keep lean.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, tap_fd: int, group_mac: bytes,
                 mtu: int = 65535) -> None:
        self.loop = loop
        #: The longest frame (virtio-net header included) that is not a GSO super-frame the
        #: TAP takes from a member: the group's MTU, Ethernet header and one VLAN tag. Longer
        #: ones (a member whose wire has a larger MTU) are dropped, as a NIC of that MTU would.
        self.max_frame = VNET_HDR_LEN + 14 + 4 + mtu
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
        self._tap_buf = bytearray(BUFFER_SIZE)
        self._rx_buf = bytearray(BUFFER_SIZE)
        self._started = False

    @property
    def tap_dropped(self) -> int:
        """Frames read from the TAP and dropped before any member was chosen."""
        return sum(self.tap_drops.values())

    # -- table -------------------------------------------------------------------------------
    def add_port(self, name: str, sock: socket.socket, mac: bytes = b"",
                 test_ip: bytes | None = None) -> Port:
        """Start reading a member's socket."""
        port = Port(name, sock, mac, test_ip)
        self.ports[name] = port
        self._refresh_own_macs()
        self.loop.add_reader(sock.fileno(), self._on_member_ready, port)
        return port

    def remove_port(self, name: str) -> Port | None:
        """Stop reading a member's socket and drop it from the table; returns the port."""
        port = self.ports.pop(name, None)
        if port is None:
            return None
        if port.sock.fileno() >= 0:
            self.loop.remove_reader(port.sock.fileno())
        if self.tx_port is port:
            self.tx_port = None
        self.rx_ports = self.rx_ports - {port}
        self._refresh_own_macs()
        if self.spreading:
            self.set_spread(tuple(n for n in self.flow_table.members if n != name),
                            {ip: p.name for ip, p in self.host_ports.items() if p is not port})
        return port

    def detach(self, name: str) -> None:
        """The member's NIC went away: stop reading its socket (the caller closes it). The
        port keeps its counters; sends through it fail and are counted until the forwarding
        table stops naming it, which the caller arranges at once."""
        port = self.ports.get(name)
        if port is not None and port.sock.fileno() >= 0:
            self.loop.remove_reader(port.sock.fileno())

    def attach(self, name: str, sock: socket.socket, mac: bytes) -> None:
        """A new NIC took the member's name: read and send through its socket from now on."""
        port = self.ports[name]
        self.detach(name)
        port.sock = sock
        port.mac = mac
        self._refresh_own_macs()
        self.loop.add_reader(sock.fileno(), self._on_member_ready, port)

    def _refresh_own_macs(self) -> None:
        """The MACs whose broadcasts flooded back to us are our own: the group's and members'."""
        self.own_macs = frozenset([self.group_mac, *(p.mac for p in self.ports.values() if p.mac)])

    def set_test_ip(self, name: str, test_ip: bytes | None) -> None:
        """A reload changed a member's test address."""
        port = self.ports[name]
        port.test_ip4 = test_ip if test_ip is not None and len(test_ip) == 4 else None
        port.test_ip6 = test_ip if test_ip is not None and len(test_ip) == 16 else None

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

    # -- control frames ----------------------------------------------------------------------
    def send_frame(self, member: str, frame: bytes) -> bool:
        """Send a frame the daemon built (no virtio-net header yet) out of ``member``."""
        port = self.ports.get(member)
        if port is None:
            return False
        try:
            port.sock.send(ZERO_VNET_HDR + frame)
        except OSError as e:
            port.drops[tx_reason(e.errno)] += 1
            return False
        port.tx_packets += 1
        port.tx_bytes += len(frame)
        return True

    # -- the hot path ------------------------------------------------------------------------
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

    def _on_tap(self) -> None:
        readinto = self.tap.readinto
        buf = self._tap_buf
        port = self.tx_port
        tap_drops = self.tap_drops
        if port is None:
            # No usable member: drain and count, so stale frames do not burst out later.
            try:
                for _ in range(BATCH):
                    if not readinto(buf):
                        return
                    tap_drops["no_member"] += 1
            except OSError:
                tap_drops["read_error"] += 1
            return
        mv = memoryview(buf)
        send = port.sock.send
        packets = nbytes = 0
        try:
            for _ in range(BATCH):
                n = readinto(buf)
                if not n:  # None: nothing left to read
                    break
                if n < VNET_HDR_LEN + 14:
                    tap_drops["runt"] += 1
                    continue
                try:
                    send(mv[:n])
                except OSError as e:
                    port.drops[tx_reason(e.errno)] += 1
                    continue
                packets += wire_packets(buf, n) if buf[1] else 1
                nbytes += n - VNET_HDR_LEN
        except OSError:
            tap_drops["read_error"] += 1
        port.tx_packets += packets
        port.tx_bytes += nbytes

    def _on_member(self, port: Port) -> None:
        recv_into = port.sock.recv_into
        buf = self._rx_buf
        size = len(buf)
        mv = memoryview(buf)
        tap_fd = self.tap_fd
        write = os.write
        mac = self.group_mac
        deliver = port in self.rx_ports
        drops = port.drops
        max_frame = min(self.max_frame, size)
        packets = nbytes = 0
        for _ in range(BATCH):
            try:
                n = recv_into(buf, 0, _MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError:
                drops["error"] += 1  # e.g. ENETDOWN, reported once when the link goes
                break
            if not deliver:
                drops["inactive"] += 1  # only the members the table names deliver to the TAP
                continue
            if n < VNET_HDR_LEN + 14:
                drops["runt"] += 1
                continue
            if n > max_frame and (n > size or not buf[1]):
                drops["oversize"] += 1  # above the MTU, or cut short by the buffer
                continue
            if buf[VNET_HDR_LEN] & 1:
                # Broadcast or multicast: ignore our own frames flooded back by the switch.
                if buf.startswith(mac, SRC):
                    drops["looped"] += 1
                    continue
            elif not buf.startswith(mac, DST):
                # Unicast for another host (flooded by the switch) or for the member's own
                # MAC (its test address's traffic, which the control socket reads).
                drops["daemon" if buf.startswith(port.mac, DST) else "foreign"] += 1
                continue
            try:
                write(tap_fd, mv[:n])
            except OSError:
                drops["tap_write"] += 1
                continue
            packets += wire_packets(buf, n) if buf[1] else 1
            nbytes += n - VNET_HDR_LEN
        port.rx_packets += packets
        port.rx_bytes += nbytes

    # -- load spreading ----------------------------------------------------------------------
    def _on_tap_spread(self) -> None:
        """Each frame out of the member its flow hashes to, with that member's MAC as source;
        ARP and neighbour discovery out of the member hosting the address they speak for."""
        readinto = self.tap.readinto
        buf = self._tap_buf
        mv = memoryview(buf)
        buckets = self.bucket_ports
        mask = self.flow_table.mask
        tap_drops = self.tap_drops
        for _ in range(BATCH):
            try:
                n = readinto(buf)
            except OSError:
                tap_drops["read_error"] += 1
                return
            if not n:
                return
            if n < VNET_HDR_LEN + 14:
                tap_drops["runt"] += 1
                continue
            ethertype = (buf[TYPE] << 8) | buf[TYPE + 1]
            h = -1
            if ethertype == 0x0806 and n >= ARP_SPA + 4:
                port = self.host_ports.get(bytes(buf[ARP_SPA:ARP_SPA + 4]), self.first_port)
                if port is not None:
                    buf[ARP_SHA:ARP_SHA + 6] = port.mac
            elif (ethertype == 0x86DD and n >= ICMP6 + 8 and buf[L3 + 6] == 58
                  and 133 <= buf[ICMP6] <= 136):
                port = neighbor_discovery(buf, n, self.host_ports, self.first_port,
                                          self.group_mac)
            else:
                h = flow_hash(buf, VNET_HDR_LEN, n)
                port = buckets[h & mask]
            if port is None:
                tap_drops["no_member"] += 1
                continue
            buf[SRC:SRC + 6] = port.mac
            try:
                port.sock.send(mv[:n])
            except OSError as e:
                port.drops[tx_reason(e.errno)] += 1
                continue
            port.tx_packets += wire_packets(buf, n) if buf[1] else 1
            port.tx_bytes += n - VNET_HDR_LEN
            if h >= 0:
                flows = port.flows
                if len(flows) >= MAX_FLOWS:
                    flows.clear()
                flows.add(h)

    def _on_member_spread(self, port: Port) -> None:
        """Frames for the member's own MAC go to the TAP with the TAP's MAC as destination;
        broadcasts and multicasts only from the first active member; none from ourselves."""
        recv_into = port.sock.recv_into
        buf = self._rx_buf
        mv = memoryview(buf)
        tap_fd = self.tap_fd
        write = os.write
        deliver = port in self.rx_ports
        flood = port is self.first_port
        mac = port.mac
        drops = port.drops
        size = len(buf)
        max_frame = min(self.max_frame, size)
        for _ in range(BATCH):
            try:
                n = recv_into(buf, 0, _MSG_TRUNC)
            except BlockingIOError:
                return
            except OSError:
                drops["error"] += 1
                return
            if not deliver:
                drops["inactive"] += 1
                continue
            if n < VNET_HDR_LEN + 14:
                drops["runt"] += 1
                continue
            if n > max_frame and (n > size or not buf[1]):
                drops["oversize"] += 1  # above the MTU, or cut short by the buffer
                continue
            if buf[DST] & 1:
                if not flood:
                    drops["inactive"] += 1  # another member hands broadcasts to the TAP
                    continue
                if bytes(buf[SRC:SRC + 6]) in self.own_macs:
                    drops["looped"] += 1
                    continue
            elif buf.startswith(mac, DST):
                if self._for_test_address(port, buf, n):
                    drops["daemon"] += 1  # a probe reply or ARP for the test address
                    continue
                buf[DST:DST + 6] = self.group_mac
            else:
                drops["foreign"] += 1
                continue
            try:
                write(tap_fd, mv[:n])
            except OSError:
                drops["tap_write"] += 1
                continue
            port.rx_packets += wire_packets(buf, n) if buf[1] else 1
            port.rx_bytes += n - VNET_HDR_LEN

    @staticmethod
    def _for_test_address(port: Port, buf: bytearray, n: int) -> bool:
        ethertype = (buf[TYPE] << 8) | buf[TYPE + 1]
        if port.test_ip4 is not None:
            if ethertype == 0x0800 and n >= L3 + 20:
                return buf.startswith(port.test_ip4, L3 + 16)
            if ethertype == 0x0806 and n >= ARP_TPA + 4:
                return buf.startswith(port.test_ip4, ARP_TPA)
        if port.test_ip6 is not None and ethertype == 0x86DD and n >= L3 + 40:
            return buf.startswith(port.test_ip6, IP6_DST)
        return False
