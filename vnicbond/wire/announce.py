"""Announcements made when a data address moves (gratuitous ARP and unsolicited NA), and when
a guest's MAC behind the TAP moves to another member (a RARP with that MAC as source).

Built with scapy once per (address, MAC) and cached: they are control frames, never on the
per-frame path. Frames are plain Ethernet; the datapath adds the virtio-net header.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address

from vnicbond.wire.mac import format_mac

BROADCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")


@lru_cache(maxsize=1024)
def gratuitous_arp(mac: bytes, address: IPv4Address) -> bytes:
    """A gratuitous ARP request: sender and target protocol address are both ``address``.

    The request form (as ``arping -U`` and the bonding driver send) updates existing entries
    in Linux neighbour tables whatever their ``arp_accept``.
    """
    from scapy.layers.l2 import ARP, Ether

    frame = Ether(src=format_mac(mac), dst=format_mac(BROADCAST)) / ARP(
        op=1, hwsrc=format_mac(mac), psrc=str(address), hwdst="00:00:00:00:00:00",
        pdst=str(address))
    return bytes(frame)


@lru_cache(maxsize=1024)
def unsolicited_na(mac: bytes, address: IPv6Address) -> bytes:
    """An unsolicited neighbour advertisement to all nodes (RFC 4861 7.2.6), Override set."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import Ether

    frame = (
        Ether(src=format_mac(mac), dst=format_mac(ALL_NODES_MAC))
        / IPv6(src=str(address), dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(R=0, S=0, O=1, tgt=str(address))
        / ICMPv6NDOptDstLLAddr(lladdr=format_mac(mac))
    )
    return bytes(frame)


def announcement(mac: bytes, address: str) -> bytes:
    """The announcement for one data address (``198.18.0.10`` or ``2001:db8::10``)."""
    ip = ip_address(address.split("/")[0])
    if isinstance(ip, IPv4Address):
        return gratuitous_arp(mac, ip)
    return unsolicited_na(mac, ip)


@lru_cache(maxsize=4096)
def mac_announcement(mac: bytes) -> bytes:
    """A learning frame for a guest's MAC: a broadcast RARP request (op 3) from ``mac``, as Open
    vSwitch and QEMU send, so that every switch on the way learns ``mac`` on the new port. It
    claims no IP address, so no host's neighbour table changes."""
    from scapy.layers.l2 import ARP, Ether

    frame = Ether(src=format_mac(mac), dst=format_mac(BROADCAST), type=0x8035) / ARP(
        op=3, hwsrc=format_mac(mac), psrc="0.0.0.0", hwdst=format_mac(mac), pdst="0.0.0.0")
    return bytes(frame)
