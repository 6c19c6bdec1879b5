"""Member packet sockets: raw AF_PACKET sockets bound to one NIC, with virtio-net headers.

Owns the socket options the datapath relies on: ``PACKET_VNET_HDR`` (GSO super-frames and
partial checksums pass through whole), ``PACKET_IGNORE_OUTGOING`` (we never read back what we
send) and the unicast/all-multicast memberships that make the NIC accept frames for the group's
MAC and the data addresses' multicast groups. Memberships belong to the socket, so the kernel
drops them when the socket closes, even after a crash. A member's data socket carries the
memory-mapped rings the datapath reads and fills (:mod:`vnicbond.system.ring`).

A probing member also has two *probe sockets* (:class:`ProbeSockets`), each behind its own BPF
filter (:func:`probe_filter`), which carry only the control frames the prober reads: replies
to our probes (for any of the MACs the member probes with), and ARP/NDP questions for its test
and link-local addresses. A member taking part in transitive probing has a socket bound to
ethertype 0x88B5 (:func:`open_transitive_socket`). The data socket's own filter
(:func:`data_filter`) keeps those transitive frames and the replies to the daemon's probes
from the host's stack, so a member can probe from a data address unseen.

The filters are classic BPF, assembled here with symbolic jumps; they run in the kernel for
every frame, so each test is a few instructions.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Iterator, Sequence

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


# Classic BPF: the few instructions our filters use.
_LDW, _LDH, _LDB = 0x20, 0x28, 0x30  # BPF_LD | BPF_W/H/B | BPF_ABS: A = the bytes at k
_LDWI, _LDHI, _LDBI = 0x40, 0x48, 0x50  # BPF_LD | BPF_W/H/B | BPF_IND: A = the bytes at X + k
_LDLEN = 0x80  # BPF_LD | BPF_W | BPF_LEN: A = the frame's length
_LDXMSH = 0xB1  # BPF_LDX | BPF_B | BPF_MSH: X = 4 * (byte at k & 0xf), an IPv4 header length
_SUBX = 0x1C  # BPF_ALU | BPF_SUB | BPF_X: A -= X
_JEQ, _JGE, _JSET, _RET = 0x15, 0x35, 0x45, 0x06
_JUMPS = (_JEQ, _JGE, _JSET)

#: What a filter returns to pass a frame whole (a GSO super-frame is 64 KiB and more).
_WHOLE = 0xFFFFFFFF
#: A probe socket keeps this much of a frame: more than any control frame it reads.
_PROBE_SNAP = 0x40000

ETH_P_TRANSITIVE = 0x88B5  # the transitive probes' ethertype (vnicbond.wire.transitive)

Program = list[tuple[int, int, int, int]]
#: A BPF program that takes no frame.
NOTHING: Program = [(_RET, 0, 0, 0)]

#: Up to this many MACs and question addresses in one probe filter.
MAX_PROBE_MACS = 4
MAX_QUESTION_IPS = 4


class _Assembler:
    """Classic BPF with symbolic forward jumps: ``op(_JEQ, k, "label", "other")``."""

    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.prog: list[tuple[int, object, object, int]] = []

    def at(self, label: str) -> None:
        self.labels[label] = len(self.prog)

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.prog.append((code, jt, jf, k))

    def program(self) -> Program:
        # A jump's offsets count from the instruction after it; jumps only go forward.
        L = self.labels
        return [(code, L[jt] - i - 1, L[jf] - i - 1, k)  # type: ignore[index]
                if code in _JUMPS else (code, 0, 0, k)
                for i, (code, jt, jf, k) in enumerate(self.prog)]


def data_filter(ident: int, token4: bytes, mac: bytes) -> Program:
    """A BPF program for a member's data socket that hides the daemon's own probe traffic
    from the host: it drops transitive probes (ethertype 0x88B5 to the member's own NIC MAC
    ``mac``, as the daemon sends them; a guest's frames of that ethertype pass), and the echo
    replies to our
    probes and our echo requests (another member's all-hosts pings, which the host would
    otherwise answer, and so be found as a target), IPv4 ICMP type 0 or 8 (not a fragment,
    any header length) or ICMPv6 type 129 or 128 (right after the IPv6 header), whose
    identifier is ``ident`` and whose payload starts with ``token4`` (the first 4 bytes of
    the daemon's token). Everything else passes whole.

    The frame is seen from its Ethernet header, a VLAN tag already taken off by the kernel.
    The program never loads past the end of a frame (the kernel drops a frame on such a
    load): a frame too short to be one of our replies passes whole. Most frames cost 3 to 5
    instructions; an ICMP echo at most 20.
    """
    if not 0 <= ident <= 0xFFFF:
        raise ValueError(f"ident must fit in 16 bits, got {ident}")
    if not isinstance(token4, bytes) or len(token4) != 4:
        raise ValueError(f"token4 must be 4 bytes, got {token4!r}")
    token = int.from_bytes(token4, "big")
    a = _Assembler()
    a.op(_LDH, 12)                               # ethertype
    a.op(_JEQ, 0x0800, "v4", "not_v4")
    a.at("not_v4")
    a.op(_JEQ, 0x86DD, "v6", "not_v6")
    a.at("not_v6")
    a.op(_JEQ, ETH_P_TRANSITIVE, "t_mac", "accept")
    a.at("t_mac")
    a.op(_LDW, 0)                                # destination MAC, bytes 0-3
    a.op(_JEQ, int.from_bytes(mac[:4], "big"), "t_mac2", "accept")
    a.at("t_mac2")
    a.op(_LDH, 4)
    a.op(_JEQ, int.from_bytes(mac[4:], "big"), "drop", "accept")
    # IPv4: Ethernet 14 + IPv4 20 + ICMP 8 + 4 bytes of token = 46 at the least.
    a.at("v4")
    a.op(_LDLEN)
    a.op(_JGE, 46, "v4_proto", "accept")
    a.at("v4_proto")
    a.op(_LDB, 23)                               # IPv4 protocol
    a.op(_JEQ, 1, "v4_frag", "accept")
    a.at("v4_frag")
    a.op(_LDH, 20)                               # flags and fragment offset
    a.op(_JSET, 0x3FFF, "accept", "v4_ihl")      # More Fragments or an offset: a fragment
    a.at("v4_ihl")
    a.op(_LDXMSH, 14)                            # X = IPv4 header length
    a.op(_LDLEN)
    a.op(_SUBX)                                  # A = length - header length, from 0 ...
    a.op(_JSET, 0x80000000, "accept", "v4_room")  # ... or below: a header longer than the frame
    a.at("v4_room")
    a.op(_JGE, 26, "v4_type", "accept")          # 14 + ICMP 8 + token 4 after the header
    a.at("v4_type")
    a.op(_LDBI, 14)                              # ICMP type
    a.op(_JEQ, 0, "v4_ident", "v4_request")      # echo reply
    a.at("v4_request")
    a.op(_JEQ, 8, "v4_ident", "accept")          # echo request (another member's)
    a.at("v4_ident")
    a.op(_LDHI, 18)                              # ICMP identifier
    a.op(_JEQ, ident, "v4_token", "accept")
    a.at("v4_token")
    a.op(_LDWI, 22)                              # first 4 bytes of the payload
    a.op(_JEQ, token, "drop", "accept")
    # IPv6: Ethernet 14 + IPv6 40 + ICMPv6 8 + 4 bytes of token = 66 at the least.
    a.at("v6")
    a.op(_LDLEN)
    a.op(_JGE, 66, "v6_nh", "accept")
    a.at("v6_nh")
    a.op(_LDB, 20)                               # next header
    a.op(_JEQ, 58, "v6_type", "accept")
    a.at("v6_type")
    a.op(_LDB, 54)                               # ICMPv6 type
    a.op(_JEQ, 129, "v6_ident", "v6_request")    # echo reply
    a.at("v6_request")
    a.op(_JEQ, 128, "v6_ident", "accept")        # echo request (another member's)
    a.at("v6_ident")
    a.op(_LDH, 58)
    a.op(_JEQ, ident, "v6_token", "accept")
    a.at("v6_token")
    a.op(_LDW, 62)
    a.op(_JEQ, token, "drop", "accept")
    a.at("accept")
    a.op(_RET, _WHOLE)
    a.at("drop")
    a.op(_RET, 0)
    return a.program()


def _check_probe_args(macs: Sequence[bytes], question_ips: Sequence[bytes]) -> None:
    if isinstance(macs, (bytes, bytearray)) or not 1 <= len(macs) <= MAX_PROBE_MACS:
        raise ValueError(f"a probe filter takes 1 to {MAX_PROBE_MACS} MACs in a list, "
                         f"got {macs!r}")
    for mac in macs:
        if not isinstance(mac, bytes) or len(mac) != 6:
            raise ValueError(f"a MAC is 6 bytes, got {mac!r}")
    if isinstance(question_ips, (bytes, bytearray)) or len(question_ips) > MAX_QUESTION_IPS:
        raise ValueError(f"a probe filter takes 0 to {MAX_QUESTION_IPS} question addresses in "
                         f"a list, got {question_ips!r}")
    for ip in question_ips:
        if not isinstance(ip, bytes) or len(ip) not in (4, 16):
            raise ValueError(f"a question address is 4 or 16 packed bytes, got {ip!r}")


def probe_filter(macs: Sequence[bytes], question_ips: Sequence[bytes], kind: str) -> Program:
    """A BPF program passing one member's probe socket only what the prober reads.

    ``kind`` ``"replies"``: unicast for any of ``macs`` (1 to 4: the member's own MAC, the
    group's when it probes from a data address) that answers something we sent: ARP replies,
    ICMP and ICMPv6 echo replies, neighbour advertisements. ``"questions"``: ARP requests for
    any IPv4 address of ``question_ips`` (0 to 4 packed addresses, of either family: the
    member's test and link-local addresses), neighbour solicitations for any IPv6 one, unicast
    or not; with none, nothing. Two sockets, two queues: a flood of questions (which anyone may
    send) cannot crowd out a probe reply. Bulk traffic and anything else aimed at these
    addresses (TCP, UDP, echo requests, ICMP errors, other hosts' ARP) never leaves the kernel.
    """
    _check_probe_args(macs, question_ips)
    a = _Assembler()
    op, at = a.op, a.at
    if kind == "replies":
        for i, mac in enumerate(macs):
            miss = f"mac{i + 1}" if i + 1 < len(macs) else "drop"
            at(f"mac{i}")
            op(_LDW, 0)                          # destination MAC, bytes 0-3
            op(_JEQ, int.from_bytes(mac[:4], "big"), f"lo{i}", miss)
            at(f"lo{i}")
            op(_LDH, 4)
            op(_JEQ, int.from_bytes(mac[4:], "big"), "type", miss)
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
    elif kind == "questions":
        v4 = [ip for ip in question_ips if len(ip) == 4]
        v6 = [ip for ip in question_ips if len(ip) == 16]
        if not question_ips:
            return [(_RET, 0, 0, 0)]
        op(_LDH, 12)
        if v4:
            op(_JEQ, 0x0806, "arp", "not_arp" if v6 else "drop")
        if v6:
            at("not_arp")
            op(_JEQ, 0x86DD, "nd", "drop")
        if v4:
            at("arp")
            op(_LDH, 20)                         # ARP operation
            op(_JEQ, 1, "tpa", "drop")
            at("tpa")
            op(_LDW, 38)                         # target protocol address
            for i, ip in enumerate(v4):
                op(_JEQ, int.from_bytes(ip, "big"), "accept",
                   f"tpa{i + 1}" if i + 1 < len(v4) else "drop")
                at(f"tpa{i + 1}")
        if v6:
            at("nd")
            op(_LDB, 20)
            op(_JEQ, 58, "v6type", "drop")
            at("v6type")
            op(_LDB, 54)
            op(_JEQ, 135, "target0", "drop")     # neighbour solicitation
            for i, ip in enumerate(v6):          # its target address, bytes 62-77
                miss = f"target{i + 1}" if i + 1 < len(v6) else "drop"
                at(f"target{i}")
                for w in range(4):
                    op(_LDW, 62 + 4 * w)
                    nxt = f"t{i}_{w + 1}" if w < 3 else "accept"
                    op(_JEQ, int.from_bytes(ip[4 * w:4 * w + 4], "big"), nxt, miss)
                    if w < 3:
                        at(nxt)
    else:
        raise ValueError(f"no probe filter of kind {kind!r}")
    at("accept")
    op(_RET, _PROBE_SNAP)
    at("drop")
    op(_RET, 0)
    return a.program()


def _attach(sock: socket.socket, prog: Program) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def attach_probe_filter(sock: socket.socket, macs: Sequence[bytes],
                        question_ips: Sequence[bytes], kind: str) -> None:
    """(Re)attach :func:`probe_filter` to ``sock`` (a reload, an election or a new MAC may
    change what the member probes from)."""
    _attach(sock, probe_filter(macs, question_ips, kind))


def attach_data_filter(sock: socket.socket, ident: int, token4: bytes, mac: bytes) -> None:
    """(Re)attach :func:`data_filter` to a member's data socket."""
    _attach(sock, data_filter(ident, token4, mac))


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
        _check_probe_args(macs, question_ips)  # before any socket is opened
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
        _attach(self.replies, replies)
        _attach(self.questions, questions)

    def silence(self) -> None:
        """Take nothing more (the member probes from no address now) but stay open: closing
        a packet socket waits for the kernel's RCU grace period (``synchronize_net``, some
        10 ms), which would stall the event loop in the middle of a failover."""
        for sock in self:
            _attach(sock, NOTHING)

    def kernel_drops(self) -> int:
        """Frames the kernel dropped on either socket since the last call."""
        return kernel_drops(self.replies) + kernel_drops(self.questions)

    def close(self) -> None:
        """Close both sockets."""
        self.replies.close()
        self.questions.close()


def transitive_filter() -> Program:
    """A BPF program passing only frames of ethertype 0x88B5 (transitive probes)."""
    a = _Assembler()
    a.op(_LDH, 12)
    a.op(_JEQ, ETH_P_TRANSITIVE, "accept", "drop")
    a.at("accept")
    a.op(_RET, _WHOLE)
    a.at("drop")
    a.op(_RET, 0)
    return a.program()


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
        _attach(sock, transitive_filter())
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        _set_buffers(sock, PROBE_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # ENETDOWN of a NIC that is down
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
