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
_JEQ, _JSET, _RET = 0x15, 0x45, 0x06


def control_filter(member_mac: bytes) -> list[tuple[int, int, int, int]]:
    """A BPF program passing only what the probe engine needs to see on a member.

    Unicast to the member's own MAC (probe replies, ARP and NDP answers), broadcast or
    multicast ARP (requests for the test address), and multicast ICMPv6 (neighbour
    solicitations for the test address). Bulk traffic for the group's MAC never reaches the
    control socket, so it cannot crowd out a probe reply.
    """
    hi = int.from_bytes(member_mac[:4], "big")
    lo = int.from_bytes(member_mac[4:], "big")
    multicast, accept, drop = 6, 11, 12
    # (code, jump-if-true, jump-if-false, k) with absolute jump targets, made relative below.
    prog = [
        (_LDB, 0, 0, 0),  # 0: first byte of the destination MAC
        (_JSET, multicast, 2, 1),  # 1: group bit set?
        (_LDW, 0, 0, 0),  # 2: destination MAC, bytes 0-3
        (_JEQ, 4, drop, hi),  # 3
        (_LDH, 0, 0, 4),  # 4: destination MAC, bytes 4-5
        (_JEQ, accept, drop, lo),  # 5
        (_LDH, 0, 0, 12),  # 6: ethertype
        (_JEQ, accept, 8, 0x0806),  # 7: ARP
        (_JEQ, 9, drop, 0x86DD),  # 8: IPv6
        (_LDB, 0, 0, 20),  # 9: IPv6 next header
        (_JEQ, accept, drop, 58),  # 10: ICMPv6
        (_RET, 0, 0, 0x40000),  # 11: accept
        (_RET, 0, 0, 0),  # 12: drop
    ]
    # A jump's offsets count from the instruction after it.
    return [(code, jt - i - 1, jf - i - 1, k) if code in (_JEQ, _JSET) else (code, 0, 0, k)
            for i, (code, jt, jf, k) in enumerate(prog)]


def open_control_socket(ifname: str, member_mac: bytes) -> socket.socket:
    """A non-blocking packet socket on ``ifname`` for probes and the test address's ARP/NDP."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        prog = b"".join(struct.pack("HBBI", *insn) for insn in control_filter(member_mac))
        buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
