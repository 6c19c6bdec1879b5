"""Member packet sockets: raw AF_PACKET sockets bound to one NIC, with virtio-net headers.

Owns the socket options the datapath relies on: ``PACKET_VNET_HDR`` (GSO super-frames and
partial checksums pass through whole), ``PACKET_IGNORE_OUTGOING`` (we never read back what we
send) and the unicast/all-multicast memberships that make the NIC accept frames for the group's
MAC and the data addresses' multicast groups. Memberships belong to the socket, so the kernel
drops them when the socket closes, even after a crash. A member's data socket carries the
memory-mapped rings the datapath reads and fills (:mod:`vnicbond.system.ring`).

A probing member also has two *probe sockets* (:class:`ProbeSockets`), each behind its own BPF
filter (:func:`probe_filter`), which carry only the control frames the prober reads: replies
to our probes, and ARP/NDP questions for the member's test address.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterator

from vnicbond.system import ring
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
SO_ATTACH_FILTER = 26
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


# Classic BPF, enough for one small filter.
_LDW, _LDH, _LDB = 0x20, 0x28, 0x30  # BPF_LD | BPF_W/H/B | BPF_ABS
_LDBI = 0x50  # BPF_LD | BPF_B | BPF_IND: A = byte at X + k
_LDXMSH = 0xB1  # BPF_LDX | BPF_B | BPF_MSH: X = 4 * (byte at k & 0xf), an IPv4 header length
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06
_JUMPS = (_JEQ, _JSET)


def probe_filter(member_mac: bytes, test_ip: bytes, kind: str
                   ) -> list[tuple[int, int, int, int]]:
    """A BPF program passing one member's probe socket only what the prober reads.

    ``kind`` ``"replies"``: unicast for the member's own MAC that answers something we sent:
    ARP replies, ICMP and ICMPv6 echo replies, neighbour advertisements. ``"questions"``: ARP
    requests for the IPv4 test address ``test_ip``, or neighbour solicitations for the IPv6
    one, unicast or not. Two sockets, two queues: a flood of questions (which anyone may send)
    cannot crowd out a probe reply. Bulk traffic and anything else aimed at the test address
    (TCP, UDP, echo requests, ICMP errors, other hosts' ARP) never leaves the kernel.
    """
    L: dict[str, int] = {}
    prog: list[tuple[int, object, object, int]] = []

    def at(label: str) -> None:
        L[label] = len(prog)

    def op(code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        prog.append((code, jt, jf, k))

    def words(offset: int, data: bytes, last: str) -> None:
        """Jump to ``last`` if the bytes at ``offset`` are ``data``, else drop."""
        chunks = [data[i:i + 4] for i in range(0, len(data), 4)]
        for i, chunk in enumerate(chunks):
            op(_LDW, offset + 4 * i)
            nxt = last if i == len(chunks) - 1 else f"w{offset}_{i + 1}"
            op(_JEQ, int.from_bytes(chunk, "big"), nxt, "drop")
            if i < len(chunks) - 1:
                at(nxt)

    if kind == "replies":
        op(_LDW, 0)                              # destination MAC, bytes 0-3
        op(_JEQ, int.from_bytes(member_mac[:4], "big"), "lo", "drop")
        at("lo")
        op(_LDH, 4)
        op(_JEQ, int.from_bytes(member_mac[4:], "big"), "type", "drop")
        at("type")
        op(_LDH, 12)
        op(_JEQ, 0x0806, "arp", "not_arp")
        at("not_arp")
        op(_JEQ, 0x0800, "v4", "not_v4")
        at("not_v4")
        op(_JEQ, 0x86DD, "v6", "drop")
        at("arp")
        op(_LDH, 20)                             # ARP operation
        op(_JEQ, 2, "accept", "drop")
        at("v4")
        op(_LDB, 23)                             # IPv4 protocol
        op(_JEQ, 1, "icmp", "drop")
        at("icmp")
        op(_LDXMSH, 14)                          # X = IPv4 header length
        op(_LDBI, 14)                            # ICMP type
        op(_JEQ, 0, "accept", "drop")            # echo reply
        at("v6")
        op(_LDB, 20)                             # IPv6 next header
        op(_JEQ, 58, "v6type", "drop")
        at("v6type")
        op(_LDB, 54)                             # ICMPv6 type
        op(_JEQ, 129, "accept", "na")            # echo reply
        at("na")
        op(_JEQ, 136, "accept", "drop")
    elif kind == "questions" and len(test_ip) == 4:
        op(_LDH, 12)
        op(_JEQ, 0x0806, "op", "drop")
        at("op")
        op(_LDH, 20)                             # ARP operation
        op(_JEQ, 1, "tpa", "drop")
        at("tpa")
        words(38, test_ip, "accept")             # target protocol address
    elif kind == "questions" and len(test_ip) == 16:
        op(_LDH, 12)
        op(_JEQ, 0x86DD, "nh", "drop")
        at("nh")
        op(_LDB, 20)
        op(_JEQ, 58, "v6type", "drop")
        at("v6type")
        op(_LDB, 54)
        op(_JEQ, 135, "target", "drop")          # neighbour solicitation
        at("target")
        words(62, test_ip, "accept")             # its target address
    else:
        raise ValueError(f"no probe filter of kind {kind!r} for a {len(test_ip)}-byte address")
    at("accept")
    op(_RET, 0x40000)
    at("drop")
    op(_RET, 0)
    # A jump's offsets count from the instruction after it.
    return [(code, L[jt] - i - 1, L[jf] - i - 1, k) if code in _JUMPS else (code, 0, 0, k)
            for i, (code, jt, jf, k) in enumerate(prog)]  # type: ignore[index]


def attach_probe_filter(sock: socket.socket, member_mac: bytes, test_ip: bytes,
                          kind: str) -> None:
    """(Re)attach :func:`probe_filter` to ``sock`` (a reload may change the test address)."""
    prog = b"".join(struct.pack("HBBI", *insn)
                    for insn in probe_filter(member_mac, test_ip, kind))
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


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


def _probe_socket(ifname: str, member_mac: bytes, test_ip: bytes, kind: str
                    ) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        attach_probe_filter(sock, member_mac, test_ip, kind)  # before bind: nothing slips in
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _set_buffers(sock, PROBE_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ProbeSockets:
    """One probing member's probe sockets: ``replies`` (to our probes and resolutions) and
    ``questions`` (ARP/NDP for the test address). Two queues, so a flood of questions cannot
    crowd out a reply; what the daemon sends (probes, answers) goes out through ``replies``."""

    def __init__(self, ifname: str, member_mac: bytes, test_ip: bytes) -> None:
        self.replies = _probe_socket(ifname, member_mac, test_ip, "replies")
        try:
            self.questions = _probe_socket(ifname, member_mac, test_ip, "questions")
        except BaseException:
            self.replies.close()
            raise

    def __iter__(self) -> Iterator[socket.socket]:
        return iter((self.replies, self.questions))

    def refilter(self, member_mac: bytes, test_ip: bytes) -> None:
        """A reload changed the test address."""
        attach_probe_filter(self.replies, member_mac, test_ip, "replies")
        attach_probe_filter(self.questions, member_mac, test_ip, "questions")

    def kernel_drops(self) -> int:
        """Frames the kernel dropped on either socket since the last call."""
        return kernel_drops(self.replies) + kernel_drops(self.questions)

    def close(self) -> None:
        """Close both sockets."""
        self.replies.close()
        self.questions.close()
