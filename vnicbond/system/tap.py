"""The IPMP interface: a TAP device with virtio-net headers and offloads.

Owns opening the TAP (``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR``), announcing which offloads its
reader accepts (``TUNSETOFFLOAD``), and switching its carrier (``TUNSETCARRIER``). Addresses and
routes are netlink's business (see :mod:`vnicbond.system.netlink`).
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

from pytun_pmd3 import TunTapDevice

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUNSETOFFLOAD = 0x400454D0
TUNSETCARRIER = 0x400454E2
TUNSETVNETHDRSZ = 0x400454D8

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

#: What the daemon accepts from the host's stack: partial checksums and TCP super-frames.
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN


SIOCSIFHWADDR = 0x8924
ARPHRD_ETHER = 1


def _set_mac(name: str, mac: bytes) -> None:
    # pytun-pmd3's hwaddr setter writes into a temporary copy of the ifreq (a ctypes char-array
    # quirk) and so hands the kernel an all-zero MAC; build the ifreq ourselves.
    ifreq = struct.pack("16sH6s8x", name.encode(), ARPHRD_ETHER, mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCSIFHWADDR, ifreq)


class Tap:
    """An open TAP device; closing the descriptor removes the device (it is never persistent)."""

    def __init__(self, name: str, mac: bytes, mtu: int) -> None:
        self.dev = TunTapDevice(name=name, flags=IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
        self.name = self.dev.name
        self.fd = self.dev.fileno()
        try:
            # The header size is 10 by default; say so explicitly so a changed default cannot
            # shift every frame.
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, OFFLOADS)
            self.set_carrier(False)
            _set_mac(self.name, mac)
            self.dev.mtu = mtu
            os.set_blocking(self.fd, False)
        except BaseException:
            self.close()
            raise

    def up(self) -> None:
        """Set the device administratively up."""
        self.dev.up()

    def set_carrier(self, on: bool) -> None:
        """Carrier on means the group has a usable member; routes follow it."""
        fcntl.ioctl(self.fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))

    def close(self) -> None:
        """Close the descriptor, which removes the device."""
        if self.fd >= 0:
            self.dev.close()
            self.fd = -1
