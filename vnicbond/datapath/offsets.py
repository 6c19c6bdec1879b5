"""Where the datapath finds the few fields it reads: fixed offsets into a frame as it sits in
the datapath's buffer, behind its 10-byte virtio-net header; and how many frames a loop takes
at once.

It owns these numbers only. Every use checks the frame's length before reading at them; the
parsers of whole messages live in :mod:`vnicbond.wire`.
"""

from __future__ import annotations

from vnicbond.wire.vnet import VNET_HDR_LEN

#: Destination MAC, source MAC and EtherType; the network-layer header behind them.
DST = VNET_HDR_LEN
SRC = VNET_HDR_LEN + 6
TYPE = VNET_HDR_LEN + 12
L3 = VNET_HDR_LEN + 14
#: ARP sender hardware and protocol address; ARP target protocol address.
ARP_SHA = L3 + 8
ARP_SPA = L3 + 14
ARP_TPA = L3 + 24
#: IPv6 source and destination; the ICMPv6 header of an IPv6 packet with no extension header.
IP6_SRC = L3 + 8
IP6_DST = L3 + 24
ICMP6 = L3 + 40

#: The all-zero MAC: never a frame's source.
NO_MAC = bytes(6)

#: Frames drained per readiness callback before yielding to the event loop.
BATCH = 64
#: Room for a 64 KiB GSO super-frame, its Ethernet header and the virtio-net header.
BUFFER_SIZE = 10 + 14 + 65535 + 64
#: The shortest frame: its virtio-net header and an Ethernet header.
MIN_FRAME = VNET_HDR_LEN + 14
