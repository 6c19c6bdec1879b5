"""Memory-mapped packet rings (``PACKET_RX_RING``/``PACKET_TX_RING``, TPACKET_V2) on a member's
data socket: their layout, their size, and mapping them.

Owns the one place ring memory is sized (:func:`rx_geometry`, :data:`TX_GEOMETRY`) and the
slot layout the datapath reads and writes (:class:`Ring`). It decides nothing about frames: the
datapath (:mod:`vnicbond.datapath`) drains the receive ring and fills the transmit ring.

Layout, as Linux 6.18 lays it out with ``PACKET_VNET_HDR`` (checked on this kernel):

* Every slot starts with a ``struct tpacket2_hdr``: u32 ``tp_status``, u32 ``tp_len``, u32
  ``tp_snaplen``, u16 ``tp_mac``, u16 ``tp_net``, then times and VLAN fields (32 bytes).
* **Receive**: the frame starts ``tp_mac`` bytes into its slot and its 10-byte virtio-net header
  lies just before it, so header and frame are one contiguous run of ``tp_snaplen + 10`` bytes.
  ``tp_len`` is the frame's real length: a frame longer than the slot comes cut
  (``tp_snaplen < tp_len``); with ``PACKET_COPY_THRESH`` the kernel then marks the slot
  ``TP_STATUS_COPY`` and queues the whole frame (header first) on the socket for ``recv``.
  A slot is ours while ``TP_STATUS_USER`` is set; writing 0 hands it back.
* **Transmit**: the virtio-net header and the frame start :data:`TX_DATA` (32) bytes into the
  slot and ``tp_len`` counts both. ``TP_STATUS_SEND_REQUEST`` hands a slot to the kernel, which
  sets ``TP_STATUS_SENDING`` and, once the frame is gone, ``TP_STATUS_AVAILABLE`` (0); one
  ``send()`` makes it walk every requested slot from its own head. With ``PACKET_LOSS`` a slot
  it cannot parse (``tp_len`` 0 included) is skipped; a frame the device refuses (``ENOBUFS``)
  stays requested and stops the walk, to be retried on the next ``send()``.

The socket options that shape the rings (``PACKET_VNET_HDR``, ``PACKET_VERSION``,
``PACKET_LOSS``) must be set before the rings exist, or the kernel answers ``EBUSY``: see
:func:`vnicbond.system.packet.open_member_socket`. The mapping counts in the daemon's RSS from
the start (the kernel maps every page at ``mmap``), and lives until :meth:`MemberRings.close`.
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
from dataclasses import dataclass

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_COPY_THRESH = 7
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
TPACKET_V2 = 1

#: Receive slot status bits.
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_COPY = 1 << 1
#: The kernel took the frame's outermost 802.1Q tag off into ``tp_vlan_tci`` (and, with the
#: second bit, its TPID into ``tp_vlan_tpid``).
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
#: Transmit slot status values.
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1 << 0
TP_STATUS_SENDING = 1 << 1

#: Where a transmit slot's data (virtio-net header, then the frame) starts: TPACKET2_HDRLEN (52)
#: less the sockaddr_ll (20) the kernel does not use on transmit.
TX_DATA = 32
#: Receive: where the kernel puts the frame at the latest (tp_mac for a plain Ethernet frame
#: behind a virtio-net header), so a slot must hold this much more than the frame.
RX_FRAME = 76
#: Slot offsets of tpacket2_hdr's words, in 32-bit words (VLAN: ``tp_vlan_tci`` in the low
#: half, ``tp_vlan_tpid`` in the high half).
LEN, SNAPLEN, MAC, VLAN = 1, 2, 3, 6

PAGE = mmap.PAGESIZE

# -- sizes: the one place ring memory is decided ----------------------------------------------

#: Receive ring bytes per member. Frames that do not fit a slot (GRO super-frames, frames above
#: the group's MTU) reach the socket whole through ``PACKET_COPY_THRESH``, so the ring needs
#: room only for MTU-sized frames: 2 MiB is 1,024 slots at MTU 1500.
RX_RING_BYTES = 2 * 1024 * 1024
#: Transmit slots hold a whole 64 KiB super-frame as the TAP gives it (virtio-net header, 14
#: bytes of Ethernet, up to 65,535 more, behind TX_DATA): 65,600 bytes, 15 to a 1 MiB block.
TX_SLOT = 65600
TX_BLOCK = 1024 * 1024
TX_BLOCKS = 5


@dataclass(frozen=True, slots=True)
class Geometry:
    """A ring's shape: blocks of ``block`` bytes (a power-of-two number of pages) holding
    whole slots of ``slot`` bytes (a multiple of 16)."""

    block: int
    blocks: int
    slot: int

    @property
    def per_block(self) -> int:
        """Slots in one block."""
        return self.block // self.slot

    @property
    def slots(self) -> int:
        """Slots in the ring."""
        return self.per_block * self.blocks

    @property
    def size(self) -> int:
        """Bytes of the ring's mapping."""
        return self.block * self.blocks

    def request(self) -> bytes:
        """``struct tpacket_req`` for ``PACKET_RX_RING``/``PACKET_TX_RING``."""
        return struct.pack("IIII", self.block, self.blocks, self.slot, self.slots)


def _power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def rx_geometry(mtu: int) -> Geometry:
    """The receive ring for a group of MTU ``mtu``: slots for its largest frame (a VLAN tag
    included), :data:`RX_RING_BYTES` in all."""
    slot = max(2048, _power_of_two(RX_FRAME + 14 + 4 + mtu))
    block = max(slot, 64 * 1024)
    return Geometry(block, max(1, RX_RING_BYTES // block), slot)


TX_GEOMETRY = Geometry(TX_BLOCK, TX_BLOCKS, TX_SLOT)


class Ring:
    """One ring's slots over a buffer: the kernel's mapping, or anything laid out alike.

    The datapath reads and writes it through these views: ``mem`` (bytes), ``words`` (the same
    memory as native 32-bit words), each slot's byte offset (``offsets``) and first word
    (``at``), and ``head``, the next slot to look at.
    """

    __slots__ = ("at", "count", "head", "mem", "offsets", "slot", "views", "words")

    def __init__(self, mem: memoryview, geometry: Geometry, views: bool = False) -> None:
        """``views``: keep a view of each slot's data area (transmit rings)."""
        self.mem = mem
        self.words = mem.cast("I")
        self.slot = geometry.slot
        self.count = geometry.slots
        per = geometry.per_block
        self.offsets = [(i // per) * geometry.block + (i % per) * geometry.slot
                        for i in range(self.count)]
        self.at = [o >> 2 for o in self.offsets]
        #: Transmit: each slot's data area (a frame is read straight into it).
        self.views = [mem[o + TX_DATA:o + geometry.slot] for o in self.offsets] if views else []
        self.head = 0

    def release(self) -> None:
        """Give up the views (the mapping cannot close while one is alive)."""
        for view in self.views:
            view.release()
        self.views = []
        self.words.release()
        self.mem.release()


class MemberRings:
    """A member socket's receive and transmit rings, mapped in one piece."""

    def __init__(self, sock: socket.socket, rx: Geometry, tx: Geometry = TX_GEOMETRY,
                 create: bool = True) -> None:
        """Create both rings on ``sock`` (bound, its options set) and map them. Without
        ``create``, map the rings ``sock`` already has (a socket inherited across an exec,
        whose rings the previous code made with this geometry; the kernel refuses a mapping
        of another size with EINVAL)."""
        if create:
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, rx.request())
            sock.setsockopt(SOL_PACKET, PACKET_TX_RING, tx.request())
        self._map = mmap.mmap(sock.fileno(), rx.size + tx.size, mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
        whole = memoryview(self._map)
        self.rx = Ring(whole[:rx.size], rx)
        self.tx = Ring(whole[rx.size:rx.size + tx.size], tx, views=True)
        whole.release()
        self.size = rx.size + tx.size
        #: The rings' shapes, for code that takes the socket over (``vnicbond upgrade``).
        self.geometry = (rx, tx)

    @property
    def rx_geometry(self) -> Geometry:
        """The receive ring's shape (a group MTU it no longer fits needs new rings)."""
        return self.geometry[0]

    def close(self) -> None:
        """Release the views and unmap the rings (the socket closes apart). Never raises: a
        view still held elsewhere leaves the mapping to be unmapped when it goes."""
        self.rx.release()
        self.tx.release()
        with contextlib.suppress(BufferError):
            self._map.close()
