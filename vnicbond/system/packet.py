"""Member packet sockets: raw AF_PACKET sockets bound to one NIC, with virtio-net headers.

Owns the socket options the datapath relies on: ``PACKET_VNET_HDR`` (GSO super-frames and
partial checksums pass through whole), ``PACKET_IGNORE_OUTGOING`` (we never read back what we
send) and the unicast/all-multicast memberships that make the NIC accept frames for the group's
MAC and the data addresses' multicast groups. Memberships belong to the socket, so the kernel
drops them when the socket closes, even after a crash.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2
PACKET_MR_UNICAST = 3
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26

#: Socket buffers sized for bursts of 64 KiB super-frames.
SOCKET_BUFFER = 4 * 1024 * 1024


def _membership(ifindex: int, kind: int, addr: bytes = b"") -> bytes:
    # struct packet_mreq: int ifindex; unsigned short type, alen; unsigned char address[8]
    return struct.pack("iHH8s", ifindex, kind, len(addr), addr)


def open_member_socket(ifname: str, group_mac: bytes) -> socket.socket:
    """Open a non-blocking packet socket on ``ifname`` that carries virtio-net headers."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.bind((ifname, ETH_P_ALL))
        ifindex = socket.if_nametoindex(ifname)
        sock.setsockopt(
            SOL_PACKET, PACKET_ADD_MEMBERSHIP, _membership(ifindex, PACKET_MR_UNICAST, group_mac)
        )
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, _membership(ifindex, PACKET_MR_ALLMULTI))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# Classic BPF, enough for one small filter.
_LDW, _LDH, _LDB = 0x20, 0x28, 0x30  # BPF_LD | BPF_W/H/B | BPF_ABS
_LDBI = 0x50  # BPF_LD | BPF_B | BPF_IND: A = byte at X + k
_LDXMSH = 0xB1  # BPF_LDX | BPF_B | BPF_MSH: X = 4 * (byte at k & 0xf), an IPv4 header length
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06
_JUMPS = (_JEQ, _JSET)


def control_filter(member_mac: bytes, test_ip: bytes | None = None
                   ) -> list[tuple[int, int, int, int]]:
    """A BPF program passing only what the probe engine reads on a member.

    Unicast to the member's own MAC: ARP, ICMP echo replies, ICMPv6 echo replies and
    neighbour solicitations/advertisements. Broadcast ARP only if it asks for the test address
    (``test_ip``, packed IPv4; any, without one), and multicast neighbour solicitations. Bulk
    traffic for the group's MAC, and floods of anything else at the test address (TCP, UDP,
    echo requests, ICMP errors), never reach the control socket, so they cost no Python time
    and cannot crowd out a probe reply.
    """
    hi = int.from_bytes(member_mac[:4], "big")
    lo = int.from_bytes(member_mac[4:], "big")
    L: dict[str, int] = {}
    prog: list[tuple[int, object, object, int]] = []

    def at(label: str) -> None:
        L[label] = len(prog)

    def op(code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        prog.append((code, jt, jf, k))

    op(_LDB, 0)                          # first byte of the destination MAC
    op(_JSET, 1, "multicast", "ucast")   # group bit
    at("ucast")
    op(_LDW, 0)
    op(_JEQ, hi, "lo", "drop")
    at("lo")
    op(_LDH, 4)
    op(_JEQ, lo, "type", "drop")
    at("type")
    op(_LDH, 12)
    op(_JEQ, 0x0806, "accept", "not_arp")
    at("not_arp")
    op(_JEQ, 0x0800, "v4", "not_v4")
    at("not_v4")
    op(_JEQ, 0x86DD, "v6", "drop")
    at("v4")
    op(_LDB, 23)                         # IPv4 protocol
    op(_JEQ, 1, "icmp", "drop")
    at("icmp")
    op(_LDXMSH, 14)                      # X = IPv4 header length
    op(_LDBI, 14)                        # ICMP type
    op(_JEQ, 0, "accept", "drop")        # echo reply
    at("v6")
    op(_LDB, 20)                         # IPv6 next header
    op(_JEQ, 58, "v6type", "drop")
    at("v6type")
    op(_LDB, 54)                         # ICMPv6 type
    op(_JEQ, 129, "accept", "ns")        # echo reply
    at("ns")
    op(_JEQ, 135, "accept", "na")
    at("na")
    op(_JEQ, 136, "accept", "drop")
    at("multicast")
    op(_LDH, 12)
    op(_JEQ, 0x0806, "arp_op" if test_ip else "accept", "m_v6")
    at("m_v6")
    op(_JEQ, 0x86DD, "m_nh", "drop")
    at("m_nh")
    op(_LDB, 20)
    op(_JEQ, 58, "m_type", "drop")
    at("m_type")
    op(_LDB, 54)
    op(_JEQ, 135, "accept", "drop")      # neighbour solicitation (for the test address)
    if test_ip:
        at("arp_op")
        op(_LDH, 20)                     # ARP operation
        op(_JEQ, 1, "arp_tpa", "drop")
        at("arp_tpa")
        op(_LDW, 38)                     # target protocol address
        op(_JEQ, int.from_bytes(test_ip, "big"), "accept", "drop")
    at("accept")
    op(_RET, 0x40000)
    at("drop")
    op(_RET, 0)
    # A jump's offsets count from the instruction after it.
    return [(code, L[jt] - i - 1, L[jf] - i - 1, k) if code in _JUMPS else (code, 0, 0, k)
            for i, (code, jt, jf, k) in enumerate(prog)]  # type: ignore[index]


def attach_control_filter(sock: socket.socket, member_mac: bytes,
                          test_ip: bytes | None = None) -> None:
    """(Re)attach :func:`control_filter` to ``sock`` (a reload may change the test address)."""
    prog = b"".join(struct.pack("HBBI", *insn) for insn in control_filter(member_mac, test_ip))
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_control_socket(ifname: str, member_mac: bytes,
                        test_ip: bytes | None = None) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` for probes and the test address's ARP/NDP."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        attach_control_filter(sock, member_mac, test_ip)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
