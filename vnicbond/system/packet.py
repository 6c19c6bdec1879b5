"""Member packet sockets: raw AF_PACKET sockets bound to one NIC, with virtio-net headers.

Owns the socket options the datapath relies on: ``PACKET_VNET_HDR`` (GSO super-frames and
partial checksums pass through whole), ``PACKET_IGNORE_OUTGOING`` (we never read back what we
send) and the unicast/all-multicast memberships that make the NIC accept frames for the group's
MAC and the data addresses' multicast groups. Memberships belong to the socket, so the kernel
drops them when the socket closes, even after a crash.
"""

from __future__ import annotations

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
