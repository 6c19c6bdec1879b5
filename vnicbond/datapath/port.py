"""One member's port on the datapath and its accounting.

It owns what the datapath counts per member: the :class:`Port` (the member's packet socket and
its rings, MAC, test address, MTU and counters), the reasons a frame is dropped (:data:`RX_REASONS`,
:data:`TX_REASONS`, :data:`TAP_REASONS`), the kernel's verdict on a failed send
(:func:`tx_reason`) and how many packets a frame becomes on the wire (:func:`wire_packets`).
It forwards nothing and decides nothing: :mod:`vnicbond.datapath.forwarder` moves the frames
and adds to these counters inline.
"""

from __future__ import annotations

import errno
import socket

from vnicbond.system.packet import kernel_drops
from vnicbond.system.ring import Ring
from vnicbond.wire.vnet import GSO_UDP_L4, VNET_HDR_LEN

#: The smallest segment size :func:`wire_packets` believes.
MIN_SEGMENT = 64
#: How many distinct flows a member remembers for status before starting over.
MAX_FLOWS = 65536

#: Why a frame read from a member did not reach the TAP. The first four are filtering a
#: switch's flooding makes routine; the rest are errors (``rx_dropped``).
RX_FILTERED = ("inactive", "foreign", "looped", "daemon")
RX_ERRORS = ("runt", "oversize", "tap_write", "error", "kernel")
RX_REASONS = RX_FILTERED + RX_ERRORS
#: Why a frame from the TAP was not sent out of the member chosen for it (``tx_dropped``).
TX_REASONS = ("tx_oversize", "tx_invalid", "tx_congested", "tx_error")
#: Why a frame read from the TAP had no member to go to.
TAP_REASONS = ("runt", "no_member", "bad_source", "read_error")


def tx_reason(err: int | None) -> str:
    """The drop reason for a failed send: the kernel's verdict on the frame."""
    if err == errno.EMSGSIZE:
        return "tx_oversize"  # above the member's MTU and not GSO
    if err in (errno.EINVAL, errno.EFAULT, errno.EPROTO):
        return "tx_invalid"  # e.g. a virtio-net header pointing outside the frame
    if err in (errno.ENOBUFS, errno.EAGAIN):
        return "tx_congested"
    return "tx_error"  # ENETDOWN, ENXIO (the NIC went away), ...


class Port:
    """One member's packet socket, its rings and its counters."""

    __slots__ = (
        "drops",
        "flows",
        "mac",
        "name",
        "pending",
        "rx",
        "rx_bytes",
        "rx_packets",
        "sock",
        "test_ip4",
        "test_ip6",
        "tx",
        "tx_bytes",
        "tx_max",
        "tx_packets",
    )

    def __init__(self, name: str, sock: socket.socket, mac: bytes = b"",
                 test_ip: bytes | None = None, mtu: int = 1500) -> None:
        self.name = name
        self.sock = sock
        #: The socket's receive and transmit rings (None while the member's NIC is gone).
        self.rx: Ring | None = None
        self.tx: Ring | None = None
        #: Transmit slots requested and not yet flushed: [word, slot, packets, bytes] each
        #: (packets -1: given up, to be skipped by the kernel). Empty between callbacks.
        self.pending: list[list[int]] = []
        #: The longest frame (virtio-net header included) that is not a GSO super-frame the
        #: member's NIC sends: its MTU and Ethernet header (4 more with a VLAN tag).
        self.tx_max = VNET_HDR_LEN + 14 + mtu
        #: The member's own MAC: its source address in load spreading.
        self.mac = mac
        #: The member's test address (packed), whose frames belong to the daemon, not the TAP.
        self.test_ip4 = test_ip if test_ip is not None and len(test_ip) == 4 else None
        self.test_ip6 = test_ip if test_ip is not None and len(test_ip) == 16 else None
        #: Flow hashes sent recently (load spreading), bounded by MAX_FLOWS.
        self.flows: set[int] = set()
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        #: Frames not passed on, by reason (:data:`RX_REASONS`, :data:`TX_REASONS`).
        self.drops = dict.fromkeys(RX_REASONS + TX_REASONS, 0)

    @property
    def tx_dropped(self) -> int:
        """Frames from the TAP this member failed to send."""
        d = self.drops
        return sum(d[r] for r in TX_REASONS)

    @property
    def rx_dropped(self) -> int:
        """Frames received on this member lost to an error (not to routine filtering)."""
        d = self.drops
        return sum(d[r] for r in RX_ERRORS)

    def poll_kernel(self) -> None:
        """Add the frames the kernel dropped because the socket's buffer was full.

        ``PACKET_STATISTICS`` resets on every read, so the running total lives here.
        """
        self.drops["kernel"] += kernel_drops(self.sock)

    def counters(self) -> dict[str, int | dict[str, int]]:
        """The counters as a plain dict, for status."""
        self.poll_kernel()
        return {
            "tx_packets": self.tx_packets,
            "rx_packets": self.rx_packets,
            "tx_bytes": self.tx_bytes,
            "rx_bytes": self.rx_bytes,
            "tx_dropped": self.tx_dropped,
            "rx_dropped": self.rx_dropped,
            "rx_filtered": sum(self.drops[r] for r in RX_FILTERED),
            "drops": dict(self.drops),
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
    # A header from the wire can claim any segment size; no real one is this small (Linux's
    # TCP never goes below 88), so a lying header cannot inflate the counters a thousandfold.
    gso_size = max(gso_size, MIN_SEGMENT)
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
