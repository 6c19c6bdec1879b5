"""A member's packet socket and its TPACKET_V2 rings, simulated: the kernel's side, for tests.

:class:`SimSocket` stands in for the socket :func:`vnicbond.system.packet.open_member_socket`
opens, and its ``rings`` for the :class:`~vnicbond.system.ring.MemberRings` it maps: two real
:class:`~vnicbond.system.ring.Ring` objects over bytearrays, with the real geometry (the receive
ring from ``rx_geometry(mtu)``, the transmit ring :data:`~vnicbond.system.ring.TX_GEOMETRY`
unless a test asks for another). The datapath reads and writes the rings through those objects
exactly as it does the kernel's mapping; this module plays the kernel on the other side. It
owns no datapath logic and must not import the datapath: what it does is what Linux does.

The kernel's side works on the bytearrays directly (no views of its own), computes slot
addresses itself (``packet_lookup_frame``: block ``i // per_block``, then ``i % per_block``
slots in) rather than borrowing the datapath's, and keeps its own cursors (``rx_head``,
``tx_head``), so a datapath whose cursor drifts from the kernel's is caught, not imitated.

Behaviour, as Linux 6.18 has it (``af_packet.c``: ``tpacket_rcv``, ``tpacket_snd``,
``packet_poll``; each point checked on this machine with veth pairs in a namespace, the
socket opened by ``open_member_socket``):

Receive (:meth:`SimSocket.receive`: a frame arrives from the wire, virtio-net header first)

* The kernel fills slots in order from its own head. A slot whose status is not
  ``TP_STATUS_KERNEL`` (0) means the ring is full: the frame is dropped (no copy is queued
  either) and counted in the socket's ``tp_drops``; its head stays.
* A stored frame starts ``tp_mac`` = 76 bytes into its slot (``TPACKET_ALIGN(52 + 16) + 10 -
  14``), ``tp_net`` = 90; its 10-byte virtio-net header lies at ``tp_mac - 10``. ``tp_len`` is
  the frame's length without the header; ``tp_snaplen`` = ``min(tp_len, slot - 76)``. The
  status is ``TP_STATUS_USER``, plus ``TP_STATUS_LOSING`` while ``tp_drops`` is not zero (until
  the statistics are read), ``TP_STATUS_CSUMNOTREADY``/``TP_STATUS_CSUM_VALID`` for a partial
  or verified checksum (the header's flags), and ``TP_STATUS_TS_SOFTWARE`` when packets are
  timestamped (whether they are depends on other sockets of the host: :attr:`timestamps`).
  The status word is written last.
* A frame longer than its slot is stored cut; with ``PACKET_COPY_THRESH`` and room in the
  socket's receive queue the slot also gets ``TP_STATUS_COPY`` and the whole frame (header
  first) is queued, in ring order, for ``recv``. With the queue full
  (:attr:`SimSocket.receive_queue_full`: ``sk_rmem_alloc >= sk_rcvbuf``) it is only cut.
* ``recv_into(buf, nbytes, MSG_TRUNC)`` returns the queued frame's whole length (header
  included) however short ``buf`` is. Before it looks at the queue it reports and clears a
  pending socket error (``sock_error`` in ``__skb_try_recv_datagram``): the frame stays queued.
* ``getsockopt(SOL_PACKET, PACKET_STATISTICS)`` returns ``(tp_packets + tp_drops, tp_drops)``
  (V1/V2 add the drops in) and resets both.
* The socket is readable (``packet_poll`` and ``datagram_poll``) while the slot before the
  kernel's head is not ``TP_STATUS_KERNEL``, a frame is queued, or an error is pending.

Transmit (``send(b"", MSG_DONTWAIT)``; :attr:`SimSocket.transmitted` records what left)

* Without ``MSG_DONTWAIT`` the kernel waits for every frame to complete (``need_wait`` looks
  at the flag only, not at ``O_NONBLOCK``): the simulator refuses that outright.
* The device down or gone (:attr:`SimSocket.down`: ``ENETDOWN``, ``ENXIO``): raised before any
  slot is looked at.
* Otherwise the kernel walks from its own head while the slot there is
  ``TP_STATUS_SEND_REQUEST`` (``SENDING`` or ``AVAILABLE`` there stops it). Per slot, in the
  kernel's order: ``tp_len`` above the slot's data room, or below the 10-byte header (0
  included), is skipped (``PACKET_LOSS``: status ``AVAILABLE``, head advances, nothing
  counted); then the skb is allocated, which fails with a pending socket error (reported and
  cleared) or a full send buffer (:attr:`SimSocket.send_room`, ``EAGAIN``): the slot stays
  requested, the head stays, and ``send`` returns the bytes sent so far, or raises if there
  are none; then a frame whose Ethernet header is not all there (``tp_len`` below 24) is
  skipped as above; then the device's verdict (:attr:`SimSocket.tx_script`,
  :attr:`SimSocket.tx_always`): an errno (``ENOBUFS`` from a dropping device, ...) leaves the
  slot requested and the head where it is and is raised; else the frame is sent: recorded,
  status ``AVAILABLE`` (``SENDING`` while :attr:`SimSocket.hold` keeps it in flight, until
  :meth:`SimSocket.complete`), head advances. ``send`` returns the bytes sent (``tp_len`` less
  the header each); with nothing requested, 0.

``SO_ERROR``: :attr:`SimSocket.error` is pending until ``getsockopt(SOL_SOCKET, SO_ERROR)``
returns and clears it (or ``recv``/``send`` report it as above).

Choices where no kernel is the model:

* Input shorter than the 10-byte header cannot come from a real kernel (it always writes a
  whole header, and a NIC hands over no frame shorter than an Ethernet header): such input is
  taken as a header cut short, zero-filled, with an empty frame (``tp_len`` 0). Frames shorter
  than an Ethernet header are stored as given. Both keep the datapath's runt checks testable.
* Not modelled: VLAN tags (a NIC that strips them puts them in ``tp_vlan_tci``), the
  validation of a transmitted frame's virtio-net header (a lying one is skipped under
  ``PACKET_LOSS``, which the datapath counts as sent: docs/hardening.md), timestamps' values.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import deque
from collections.abc import Iterator

from vnicbond.system.ring import TX_DATA, TX_GEOMETRY, Geometry, Ring, rx_geometry

SOL_PACKET = 263
PACKET_STATISTICS = 6
VNET = 10  # the virtio-net header's length
ETH = 14
#: tp_mac and tp_net of a plain Ethernet frame behind a virtio-net header.
RX_MAC = 76
RX_NET = 90
#: struct tpacket2_hdr and struct sockaddr_ll: the kernel's minimum slot.
TPACKET2_HDRLEN = 52

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_COPY = 1 << 1
TP_STATUS_LOSING = 1 << 2
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TP_STATUS_CSUM_VALID = 1 << 7
TP_STATUS_TS_SOFTWARE = 1 << 29
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1 << 0
TP_STATUS_SENDING = 1 << 1

_WORD = struct.Struct("=I")
_HALF = struct.Struct("=H")
#: tp_len, tp_snaplen, tp_mac, tp_net, tp_sec, tp_nsec, tp_vlan_tci | tp_vlan_tpid << 16
_RX_HDR = struct.Struct("=IIHHIII")
_VNET = struct.Struct("<BBHHHH")  # struct virtio_net_hdr
_PAGE = 4096


def check_geometry(g: Geometry) -> None:
    """Refuse a ring the kernel refuses (``packet_set_ring``): ``EINVAL``."""
    ok = (g.block > 0 and g.block % _PAGE == 0 and g.slot >= TPACKET2_HDRLEN
          and g.slot % 16 == 0 and g.block // g.slot > 0 and g.blocks > 0)
    if not ok:
        raise OSError(errno.EINVAL, f"the kernel refuses the ring {g}")


class _Ring:
    """One ring's memory as the kernel sees it: slot addresses and its own head."""

    def __init__(self, geometry: Geometry) -> None:
        check_geometry(geometry)
        self.buf = bytearray(geometry.size)
        self.slot = geometry.slot
        self.count = geometry.slots
        per = geometry.block // geometry.slot
        self.offsets = [(i // per) * geometry.block + (i % per) * geometry.slot
                        for i in range(self.count)]
        self.head = 0

    def status(self, i: int) -> int:
        return int(_WORD.unpack_from(self.buf, self.offsets[i])[0])

    def set_status(self, i: int, status: int) -> None:
        _WORD.pack_into(self.buf, self.offsets[i], status)

    def word(self, i: int, k: int) -> int:
        return int(_WORD.unpack_from(self.buf, self.offsets[i] + 4 * k)[0])

    def statuses(self) -> list[int]:
        """Every slot's status (through a view released at once: the memory stays free of
        exports, as the kernel's pages are)."""
        with memoryview(self.buf) as mem, mem.cast("I") as words:
            return [words[o >> 2] for o in self.offsets]

    def advance(self) -> None:
        self.head = self.head + 1 if self.head + 1 < self.count else 0


class SimRings:
    """What :class:`~vnicbond.system.ring.MemberRings` gives the datapath: ``rx`` and ``tx``,
    real :class:`Ring` objects over the simulated memory."""

    def __init__(self, rx: _Ring, rx_geometry: Geometry, tx: _Ring, tx_geometry: Geometry
                 ) -> None:
        self._memory = (rx.buf, tx.buf)
        self.rx = Ring(memoryview(rx.buf), rx_geometry)
        self.tx = Ring(memoryview(tx.buf), tx_geometry, views=True)
        self.closed = False

    def close(self) -> None:
        """Release the views, then fail as ``mmap.close()`` does if any view of the ring
        memory is still alive (the datapath kept one)."""
        self.rx.release()
        self.tx.release()
        self.closed = True
        for buf in self._memory:
            try:
                buf.append(0)  # a bytearray cannot grow while a view of it exists
            except BufferError as e:
                raise BufferError("a view of the ring is still alive after close") from e
            buf.pop()


class SimSocket:
    """A member's packet socket with its rings: the datapath's side (``fileno``, ``send``,
    ``recv_into``, ``getsockopt``, ``close``) and the kernel's, which tests drive
    (:meth:`receive`, :attr:`transmitted`, and the attributes that script its answers)."""

    def __init__(self, mtu: int = 1500, tx: Geometry = TX_GEOMETRY) -> None:
        rxg = rx_geometry(mtu)
        self._rx = _Ring(rxg)
        self._tx = _Ring(tx)
        self.rings = SimRings(self._rx, rxg, self._tx, tx)
        #: Frames queued whole for ``recv`` (cut in their slot, ``TP_STATUS_COPY``).
        self.queue: deque[bytes] = deque()
        #: The socket's receive queue has no room: frames longer than a slot are only cut.
        self.receive_queue_full = False
        #: Timestamp received frames (``TP_STATUS_TS_SOFTWARE``).
        self.timestamps = True
        #: ``PACKET_STATISTICS`` since the last read.
        self.tp_packets = 0
        self.tp_drops = 0
        #: The pending socket error (``SO_ERROR``), 0 for none.
        self.error = 0
        #: The device is down or gone: every ``send`` raises this errno first.
        self.down: int | None = None
        #: The device's verdict on each frame it is given, in turn (None: sent).
        self.tx_script: list[int | None] = []
        #: The verdict once the script is used up (None: sent).
        self.tx_always: int | None = None
        #: Frames the send buffer takes before it is full (None: no limit).
        self.send_room: int | None = None
        #: Sent frames stay ``TP_STATUS_SENDING`` (in a queue or a driver) until complete().
        self.hold = False
        #: What the member sent: virtio-net header, then the frame, as the kernel took it.
        self.transmitted: list[bytes] = []
        #: How often the datapath asked (``getsockopt`` SO_ERROR, ``send`` calls).
        self.error_reads = 0
        self.sends = 0
        self._sending: list[int] = []
        self._filled: set[int] = set()  # receive slots filled and not yet seen handed back
        self._bell, self._ringer = socket.socketpair()
        self._bell.setblocking(False)
        self._rung = False
        self._closed = False

    # -- the datapath's side -------------------------------------------------------------------
    def fileno(self) -> int:
        return -1 if self._closed else self._bell.fileno()

    def recv_into(self, buf: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        self._check_open()
        try:
            if self.error:
                err, self.error = self.error, 0
                raise OSError(err, os.strerror(err))
            if not self.queue:
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            data = self.queue.popleft()
            room = min(nbytes or len(buf), len(buf))
            n = min(room, len(data))
            buf[:n] = data[:n]
            return len(data) if flags & socket.MSG_TRUNC else n
        finally:
            self.sync()

    def send(self, data: bytes, flags: int = 0) -> int:
        """Flush the transmit ring from the kernel's head (see the module's docstring)."""
        self._check_open()
        if not flags & socket.MSG_DONTWAIT:
            raise AssertionError("send() without MSG_DONTWAIT waits for every frame")
        self.sends += 1
        try:
            return self._walk()
        finally:
            self.sync()

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        self._check_open()
        try:
            if level == socket.SOL_SOCKET and option == socket.SO_ERROR and buflen is None:
                self.error_reads += 1
                err, self.error = self.error, 0
                return err
            if level == SOL_PACKET and option == PACKET_STATISTICS and buflen == 8:
                stats = struct.pack("II", self.tp_packets + self.tp_drops, self.tp_drops)
                self.tp_packets = self.tp_drops = 0
                return stats
            raise OSError(errno.ENOPROTOOPT, os.strerror(errno.ENOPROTOOPT))
        finally:
            self.sync()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bell.close()
            self._ringer.close()

    # -- the kernel's side: receive ------------------------------------------------------------
    def receive(self, data: bytes) -> str:
        """A frame (virtio-net header first) arrives from the wire. Returns where it went:
        ``"ring"``, ``"copy"`` (cut in its slot and queued whole), ``"cut"`` (cut, the queue
        full) or ``"dropped"`` (the ring full)."""
        self._check_open()
        if len(data) < VNET:
            data = data + bytes(VNET - len(data))
        rx = self._rx
        i = rx.head
        if rx.status(i) != TP_STATUS_KERNEL:
            self.tp_drops += 1
            self.sync()
            return "dropped"
        status = TP_STATUS_USER
        vlan = 0
        if len(data) >= VNET + 18 and data[VNET + 12:VNET + 14] in (b"\x81\x00", b"\x88\xa8"):
            # The kernel takes the outermost tag off into tp_vlan_tci / tp_vlan_tpid before
            # any packet socket sees the frame.
            # Offsets the virtio-net header counts from the frame's start lose the tag's 4.
            tpid, tci = struct.unpack_from("!HH", data, VNET + 12)
            flags, gso, hdr_len, size, csum_start, csum_offset = _VNET.unpack_from(data, 0)
            hdr = _VNET.pack(flags, gso, max(hdr_len - 4, 0) if gso else hdr_len, size,
                             csum_start - 4 if flags & 1 else csum_start, csum_offset)
            data = hdr + data[VNET:VNET + 12] + data[VNET + 16:]
            vlan = tci | tpid << 16
            status |= TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID
        tp_len = len(data) - VNET
        snaplen = min(tp_len, rx.slot - RX_MAC)
        outcome = "ring"
        if snaplen < tp_len:
            if self.receive_queue_full:
                outcome = "cut"
            else:
                status |= TP_STATUS_COPY
                self.queue.append(bytes(data))
                outcome = "copy"
        rx.advance()
        if self.tp_drops:
            status |= TP_STATUS_LOSING
        if data[0] & 1:
            status |= TP_STATUS_CSUMNOTREADY
        elif data[0] & 2:
            status |= TP_STATUS_CSUM_VALID
        if self.timestamps:
            status |= TP_STATUS_TS_SOFTWARE
        self.tp_packets += 1
        at = rx.offsets[i]
        rx.buf[at + RX_MAC - VNET:at + RX_MAC + snaplen] = data[:VNET + snaplen]
        _RX_HDR.pack_into(rx.buf, at + 4, tp_len, snaplen, RX_MAC, RX_NET, 1, 0, vlan)
        rx.set_status(i, status)
        self._filled.add(i)
        self.sync()
        return outcome

    @property
    def rx_head(self) -> int:
        """The receive slot the kernel fills next."""
        return self._rx.head

    def rx_status(self, i: int) -> int:
        return self._rx.status(i)

    def unread(self) -> Iterator[bytes]:
        """The frames (header first, as stored) in slots not yet handed back, oldest first."""
        rx = self._rx
        for k in range(rx.count):
            i = (rx.head + k) % rx.count
            if rx.status(i) & TP_STATUS_USER:
                at = rx.offsets[i] + _HALF.unpack_from(rx.buf, rx.offsets[i] + 12)[0]
                yield bytes(rx.buf[at - VNET:at + rx.word(i, 2)])

    # -- the kernel's side: transmit -----------------------------------------------------------
    @property
    def tx_head(self) -> int:
        """The transmit slot the kernel looks at next."""
        return self._tx.head

    def tx_status(self, i: int) -> int:
        return self._tx.status(i)

    def tx_statuses(self) -> list[int]:
        return self._tx.statuses()

    def complete(self) -> None:
        """Every frame in flight is gone: its slot becomes ``AVAILABLE``."""
        for i in self._sending:
            self._tx.set_status(i, TP_STATUS_AVAILABLE)
        self._sending.clear()
        self.sync()

    def take_transmitted(self) -> list[bytes]:
        out, self.transmitted = self.transmitted, []
        return out

    def _walk(self) -> int:
        if self.down is not None:
            raise OSError(self.down, os.strerror(self.down))
        tx = self._tx
        room = tx.slot - TX_DATA
        sent = 0
        while tx.status(tx.head) == TP_STATUS_SEND_REQUEST:
            i = tx.head
            tp_len = tx.word(i, 1)
            if tp_len > room or tp_len < VNET:
                self._skip(i)
                continue
            err = 0
            if self.error:
                err, self.error = self.error, 0
            elif self.send_room is not None and self.send_room <= 0:
                err = errno.EAGAIN
            if err:
                if sent:
                    return sent
                raise OSError(err, os.strerror(err))
            if tp_len < VNET + ETH:
                self._skip(i)
                continue
            verdict = self.tx_script.pop(0) if self.tx_script else self.tx_always
            if verdict is not None:
                raise OSError(verdict, os.strerror(verdict))
            at = tx.offsets[i] + TX_DATA
            self.transmitted.append(bytes(tx.buf[at:at + tp_len]))
            if self.send_room is not None:
                self.send_room -= 1
            if self.hold:
                tx.set_status(i, TP_STATUS_SENDING)
                self._sending.append(i)
            else:
                tx.set_status(i, TP_STATUS_AVAILABLE)
            tx.advance()
            sent += tp_len - VNET
        return sent

    def _skip(self, i: int) -> None:
        self._tx.set_status(i, TP_STATUS_AVAILABLE)
        self._tx.advance()

    # -- a reader's cursors ----------------------------------------------------------------------
    def out_of_step(self, rx_cursor: int, tx_cursor: int) -> list[str]:
        """Where a reader whose cursors are ``rx_cursor`` (the next receive slot it reads) and
        ``tx_cursor`` (the next transmit slot it fills), between two of its callbacks,
        disagrees with the kernel: the receive slots not handed back must be exactly those
        from its cursor up to the kernel's head; no transmit slot may be left requested, and
        both transmit cursors must be at the same slot. Empty: in step."""
        problems = []
        rx = self._rx
        # Only the kernel fills receive slots, so only those it filled can be still filled.
        self._filled = {i for i in self._filled if rx.status(i) != TP_STATUS_KERNEL}
        filled = sorted(self._filled)
        expected = sorted((rx_cursor + k) % rx.count for k in range(len(filled)))
        if filled != expected:
            problems.append(f"receive slots {filled} filled, reader at {rx_cursor}")
        elif (rx_cursor + len(filled)) % rx.count != rx.head:
            problems.append(f"receive: reader at {rx_cursor} with {len(filled)} filled, "
                            f"kernel at {rx.head}")
        requested = [i for i, status in enumerate(self._tx.statuses())
                     if status == TP_STATUS_SEND_REQUEST]
        if requested:
            problems.append(f"transmit slots {requested} still requested")
        if tx_cursor != self._tx.head:
            problems.append(f"transmit: reader at {tx_cursor}, kernel at {self._tx.head}")
        return problems

    # -- readiness -----------------------------------------------------------------------------
    def readable(self) -> bool:
        """What ``poll`` says: a filled slot before the kernel's head, a queued frame, or a
        pending error."""
        rx = self._rx
        before = rx.head - 1 if rx.head else rx.count - 1
        return bool(self.error or self.queue or rx.status(before) != TP_STATUS_KERNEL)

    def sync(self) -> None:
        """Make the descriptor the event loop watches readable exactly when :meth:`readable`
        (the datapath hands slots back by writing memory, which nothing here sees: the rig
        calls this before the loop polls)."""
        if self._closed:
            return
        want = self.readable()
        if want and not self._rung:
            self._ringer.send(b"!")
            self._rung = True
        elif not want and self._rung:
            self._bell.recv(1)
            self._rung = False

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

