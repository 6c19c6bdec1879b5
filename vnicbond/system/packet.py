"""Member packet sockets: raw AF_PACKET sockets bound to one NIC, with virtio-net headers.

Owns the socket options the datapath relies on: ``PACKET_VNET_HDR`` (GSO super-frames and
partial checksums pass through whole), ``PACKET_IGNORE_OUTGOING`` (we never read back what we
send) and the unicast/all-multicast memberships that make the NIC accept frames for the group's
MAC and the data addresses' multicast groups. Memberships belong to the socket, so the kernel
drops them when the socket closes, even after a crash. A member's data socket carries the
memory-mapped rings the datapath reads and fills (:mod:`vnicbond.system.ring`).

A probing member also has two *probe sockets* (:class:`ProbeSockets`), each behind its own BPF
filter (:func:`vnicbond.system.bpf.probe_filter`), which carry only the control frames the
prober reads: replies to our probes (for any of the MACs the member probes with), and ARP/NDP
questions for its test and link-local addresses. A member taking part in transitive probing has
a socket for ethertype 0x88B5 (:func:`open_transitive_socket`). The data socket's own
filter (:func:`vnicbond.system.bpf.data_filter`) keeps those transitive frames and the replies
to the daemon's probes from the host's stack, so a member can probe from a data address unseen.

The filters themselves are :mod:`vnicbond.system.bpf`'s.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence

from vnicbond.system import ring
from vnicbond.system.bpf import (
    NOTHING,
    attach,
    attach_probe_filter,
    check_probe_args,
    probe_filter,
    transitive_filter,
)
from vnicbond.system.ring import MemberRings

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
PACKET_MR_UNICAST = 3
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
PACKET_STATISTICS = 6

#: Data socket buffers: the receive queue holds the super-frames too big for a receive ring
#: slot (PACKET_COPY_THRESH), so it is sized for bursts of 64 KiB GRO frames.
SOCKET_BUFFER = 4 * 1024 * 1024
#: Probe socket buffers: thousands of small frames queue before the kernel drops any.
PROBE_BUFFER = 1024 * 1024


def _membership(ifindex: int, kind: int, addr: bytes = b"") -> bytes:
    # struct packet_mreq: int ifindex; unsigned short type, alen; unsigned char address[8]
    return struct.pack("iHH8s", ifindex, kind, len(addr), addr)


def open_member_socket(ifname: str, group_mac: bytes, mtu: int
                       ) -> tuple[socket.socket, MemberRings]:
    """Open a non-blocking packet socket on ``ifname`` that carries virtio-net headers, with
    its receive and transmit rings (:mod:`vnicbond.system.ring`) sized for a group of MTU
    ``mtu``; the NIC accepts ``group_mac`` and all multicast for it."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        # Options that shape the rings come first: once a ring exists they fail with EBUSY.
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, ring.PACKET_VERSION, ring.TPACKET_V2)
        sock.setsockopt(SOL_PACKET, ring.PACKET_LOSS, 1)  # a slot the kernel cannot parse is
        sock.setsockopt(SOL_PACKET, ring.PACKET_COPY_THRESH, 1)  # skipped; big frames copied
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _set_buffers(sock, SOCKET_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        # Bound to a NIC that is down, the socket starts with ENETDOWN pending: clear it, or
        # the event loop sees an error where there is none yet.
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        ifindex = socket.if_nametoindex(ifname)
        sock.setsockopt(
            SOL_PACKET, PACKET_ADD_MEMBERSHIP, _membership(ifindex, PACKET_MR_UNICAST, group_mac)
        )
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, _membership(ifindex, PACKET_MR_ALLMULTI))
        sock.setblocking(False)
        rings = ring.MemberRings(sock, ring.rx_geometry(mtu))
    except BaseException:
        sock.close()
        raise
    return sock, rings


def inherited_member_socket(fd: int, ifname: str) -> socket.socket:
    """The member data socket behind ``fd``, open in this process since before an exec (the
    daemon's previous code opened it with :func:`open_member_socket`): it must be a packet
    socket bound to the NIC now called ``ifname``, with virtio-net headers and TPACKET_V2.
    Raises OSError or ValueError, having closed ``fd``, if it is not."""
    sock = socket.socket(fileno=fd)
    try:
        if sock.family != socket.AF_PACKET or sock.type != socket.SOCK_RAW:
            raise ValueError(f"descriptor {fd} is not a packet socket")
        bound = sock.getsockname()[0]
        if bound != ifname:
            raise ValueError(f"the socket is bound to {bound!r}, not to {ifname}")
        if (sock.getsockopt(SOL_PACKET, ring.PACKET_VERSION) != ring.TPACKET_V2
                or not sock.getsockopt(SOL_PACKET, PACKET_VNET_HDR)):
            raise ValueError("the socket is not a member data socket")
        sock.set_inheritable(False)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def accept_mac(sock: socket.socket, ifindex: int, mac: bytes, on: bool) -> None:
    """Ask the member's NIC to accept unicast for ``mac`` (a guest's behind the TAP), or stop
    asking. Like every membership it belongs to the socket: gone when the socket closes."""
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP if on else PACKET_DROP_MEMBERSHIP,
                    _membership(ifindex, PACKET_MR_UNICAST, mac))


def accept_all(sock: socket.socket, ifindex: int, on: bool) -> None:
    """Put the member's NIC in promiscuous mode for this socket, or take it out."""
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP if on else PACKET_DROP_MEMBERSHIP,
                    _membership(ifindex, PACKET_MR_PROMISC))


def socket_error(sock: socket.socket) -> int:
    """Read and clear the socket's pending error (0 if none). A ring reader never calls
    ``recv``, so nothing else clears it, and a pending error keeps the socket readable."""
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except OSError:
        return 0


def _set_buffers(sock: socket.socket, size: int) -> None:
    """Ask for ``size``-byte socket buffers, past ``net.core.rmem_max``/``wmem_max`` where
    CAP_NET_ADMIN allows (the ``*FORCE`` options), else as much as the limits give."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


def kernel_drops(sock: socket.socket) -> int:
    """Frames the kernel dropped for ``sock`` since the last call (its buffer was full)."""
    try:
        _packets, dropped = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return int(dropped)


def _probe_socket(ifname: str, macs: Sequence[bytes], question_ips: Sequence[bytes],
                  kind: str) -> socket.socket:
    # Protocol 0 until bound: a packet socket opened for a protocol receives from every NIC
    # from the start, and the filter comes before the bind, so nothing slips in.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        attach_probe_filter(sock, macs, question_ips, kind)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _set_buffers(sock, PROBE_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ProbeSockets:
    """One probing member's probe sockets: ``replies`` (to our probes and resolutions, sent to
    any of ``macs``) and ``questions`` (ARP/NDP for any of ``question_ips``, packed: the test
    and link-local addresses the member answers for). Two queues, so a flood of questions
    cannot crowd out a reply; what the daemon sends (probes, answers) goes out through
    ``replies``."""

    def __init__(self, ifname: str, macs: Sequence[bytes],
                 question_ips: Sequence[bytes]) -> None:
        check_probe_args(macs, question_ips)  # before any socket is opened
        self.replies = _probe_socket(ifname, macs, question_ips, "replies")
        try:
            self.questions = _probe_socket(ifname, macs, question_ips, "questions")
        except BaseException:
            self.replies.close()
            raise

    def __iter__(self) -> Iterator[socket.socket]:
        return iter((self.replies, self.questions))

    def refilter(self, macs: Sequence[bytes], question_ips: Sequence[bytes]) -> None:
        """What the member probes from or answers for changed (a reload, an election, a new
        MAC). Checks both programs before attaching either: a bad argument changes nothing."""
        replies = probe_filter(macs, question_ips, "replies")
        questions = probe_filter(macs, question_ips, "questions")
        attach(self.replies, replies)
        attach(self.questions, questions)

    def silence(self) -> None:
        """Take nothing more (the member probes from no address now) but stay open: closing
        a packet socket waits for the kernel's RCU grace period (``synchronize_net``, some
        10 ms), which would stall the event loop in the middle of a failover."""
        for sock in self:
            attach(sock, NOTHING)

    def kernel_drops(self) -> int:
        """Frames the kernel dropped on either socket since the last call."""
        return kernel_drops(self.replies) + kernel_drops(self.questions)

    def close(self) -> None:
        """Close both sockets."""
        self.replies.close()
        self.questions.close()


def open_transitive_socket(ifname: str) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` for transitive probes, requests and replies
    alike: it takes every frame (``ETH_P_ALL``: a socket bound to one ethertype is served
    after the ingress hook, where the member's isolation drops everything) behind a filter
    passing only ethertype 0x88B5 (whole plain Ethernet frames, as
    :func:`vnicbond.wire.transitive.parse` reads them), and frames sent through it go out on
    ``ifname``. It never reads back what it sends; its buffers are the probe sockets';
    :func:`kernel_drops` reads what the kernel dropped for it."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # no frame before the bind
    try:
        attach(sock, transitive_filter())
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _set_buffers(sock, PROBE_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # ENETDOWN of a NIC that is down
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
