"""The load-spreading frame loops: each TAP frame into the transmit ring of the member its flow
hashes to, and the members' receive rings into the TAP.

A mixin of :class:`vnicbond.datapath.forwarder.Datapath`, which owns the table these loops read
(the flow buckets, which member hosts each data address, the one member that hands broadcasts
to the TAP, the MACs). Outbound the member is known only once the frame is read, so the TAP is
read into a buffer and the frame copied into that member's ring; every ring used in a batch is
flushed at its end. ARP and neighbour discovery leave by the member hosting the address they
speak for (:mod:`vnicbond.datapath.ndp`), with that member's MAC.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vnicbond.datapath.flowhash import flow_hash
from vnicbond.datapath.ndp import neighbor_discovery
from vnicbond.datapath.offsets import (
    ARP_SHA,
    ARP_SPA,
    ARP_TPA,
    BATCH,
    DST,
    ICMP6,
    IP6_DST,
    L3,
    MIN_FRAME,
    NO_MAC,
    SRC,
    TYPE,
)
from vnicbond.datapath.port import MAX_FLOWS, Port, wire_packets
from vnicbond.datapath.txring import flush
from vnicbond.system.ring import LEN, MAC, SNAPLEN, TP_STATUS_USER, TP_STATUS_VLAN_VALID, VLAN
from vnicbond.wire.vnet import VNET_HDR_LEN

if TYPE_CHECKING:
    from vnicbond.datapath.forwarder import Datapath


class SpreadLoops:
    """``_on_tap_spread`` and ``_on_member_spread`` of :class:`Datapath`."""

    def _on_tap_spread(self: Datapath) -> None:
        """Each frame out of the member its flow hashes to, with that member's MAC as source;
        ARP and neighbour discovery out of the member hosting the address they speak for."""
        readinto = self.tap.readinto
        buf = self._tap_buf
        mv = memoryview(buf)
        buckets = self.bucket_ports
        mask = self.flow_table.mask
        tap_drops = self.tap_drops
        group_mac = self.group_mac
        queued: dict[Port, list[int]] = {}  # port -> [packets, bytes] requested this batch
        for _ in range(BATCH):
            try:
                n = readinto(buf)
            except OSError:
                tap_drops["read_error"] += 1
                break
            if not n:
                break
            if n < MIN_FRAME:
                tap_drops["runt"] += 1
                continue
            ethertype = (buf[TYPE] << 8) | buf[TYPE + 1]
            h = -1
            guest = not buf.startswith(group_mac, SRC)
            if guest:  # a guest's frame keeps its MAC and leaves by the member carrying it
                src = bytes(buf[SRC:SRC + 6])
                if src[0] & 1 or src == NO_MAC:
                    tap_drops["bad_source"] += 1  # as a bridge drops it
                    continue
                self._heard(src)  # a new MAC is placed at once
                port = self.mac_ports.get(src)
            elif ethertype == 0x0806 and n >= ARP_SPA + 4:
                port = self.host_ports.get(bytes(buf[ARP_SPA:ARP_SPA + 4]), self.first_port)
                if port is not None:
                    buf[ARP_SHA:ARP_SHA + 6] = port.mac
            elif (ethertype == 0x86DD and n >= ICMP6 + 8 and buf[L3 + 6] == 58
                  and 133 <= buf[ICMP6] <= 136):
                port = neighbor_discovery(buf, n, self.host_ports, self.first_port,
                                          self.group_mac)
            else:
                h = flow_hash(buf, VNET_HDR_LEN, n)
                port = buckets[h & mask]
            if port is None:
                tap_drops["no_member"] += 1
                continue
            if port.tx is None:  # its NIC just went (the table moves off it at once)
                port.drops["tx_error"] += 1
                continue
            if n > port.tx_max and not buf[1] and (
                    n > port.tx_max + 4 or ethertype != 0x8100):
                port.drops["tx_oversize"] += 1  # above the member's MTU
                continue
            if not guest:
                buf[SRC:SRC + 6] = port.mac
            packets = wire_packets(buf, n) if buf[1] else 1
            if not self._queue(port, mv[:n], packets):
                continue
            counts = queued.get(port)
            if counts is None:
                queued[port] = [packets, n - VNET_HDR_LEN]
            else:
                counts[0] += packets
                counts[1] += n - VNET_HDR_LEN
            if h >= 0:
                flows = port.flows
                if len(flows) >= MAX_FLOWS:
                    flows.clear()
                flows.add(h)
        for port, (packets, nbytes) in queued.items():
            flush(port, packets, nbytes)

    def _on_member_spread(self: Datapath, port: Port) -> None:
        """Frames for the member's own MAC go to the TAP with the TAP's MAC as destination;
        broadcasts and multicasts only from the first active member; none from ourselves.
        Unicast for the TAP's own MAC (a DHCP server answering the client's hardware address)
        also comes from the first active member only: that MAC is never a source on the
        wire in load spreading, so the switch floods such frames to every member."""
        rx = port.rx
        if rx is None:
            return
        words, mem, offsets, at, count = rx.words, rx.mem, rx.offsets, rx.at, rx.count
        copied = self._copied
        retagged = self._retagged
        tap_fd = self.tap_fd
        write = os.write
        deliver = port in self.rx_ports
        flood = port is self.first_port
        mac = port.mac
        drops = port.drops
        guests = self.guests
        mac_ports = self.mac_ports
        max_frame = self.max_frame
        i = rx.head
        got = 0
        for _ in range(BATCH):
            w = at[i]
            status = words[w]
            if not status & TP_STATUS_USER:
                break
            got += 1
            snap = words[w + SNAPLEN]
            if snap < words[w + LEN]:
                frame = copied(port, status)
            else:
                start = offsets[i] + (words[w + MAC] & 0xFFFF) - VNET_HDR_LEN
                frame = mem[start:start + snap + VNET_HDR_LEN]
            if status & TP_STATUS_VLAN_VALID and frame is not None:
                frame = retagged(frame, words[w + VLAN], status)  # the kernel took it off
            ok = False
            if frame is None:
                pass  # counted
            elif not deliver:
                drops["inactive"] += 1
            else:
                n = len(frame)
                if n < MIN_FRAME:
                    drops["runt"] += 1
                elif n > max_frame and not frame[1]:
                    drops["oversize"] += 1
                elif frame[DST] & 1:
                    src = frame[SRC:SRC + 6].tobytes()
                    if not flood:
                        drops["inactive"] += 1  # another member hands broadcasts to the TAP
                    elif src in self.own_macs or src in guests:
                        drops["looped"] += 1  # ours or our guests', flooded back
                    else:
                        ok = True
                elif frame[DST:DST + 6] == mac:
                    if self._for_test_address(port, frame, n):
                        drops["daemon"] += 1  # a probe reply or ARP for the test address
                    else:
                        frame[DST:DST + 6] = self.group_mac
                        ok = True
                else:
                    # For a guest: delivered as it is, by the member carrying it only. The
                    # TAP being a bridge port, unicast for any other host is delivered once,
                    # by the member that hands broadcasts to the TAP.
                    dst = frame[DST:DST + 6].tobytes()
                    host = mac_ports.get(dst)
                    if host is port or (host is None and flood and (
                            dst == self.group_mac
                            or (self.promiscuous and dst not in self.own_macs))):
                        ok = True
                    else:
                        drops["foreign"] += 1
            if ok:
                try:
                    write(tap_fd, frame)
                except OSError:
                    drops["tap_write"] += 1
                else:
                    port.rx_packets += wire_packets(frame, n) if frame[1] else 1
                    port.rx_bytes += n - VNET_HDR_LEN
            frame = None
            words[w] = 0
            i += 1
            if i == count:
                i = 0
        rx.head = i
        if not got:
            self._on_empty(port)

    @staticmethod
    def _for_test_address(port: Port, frame: memoryview, n: int) -> bool:
        ethertype = (frame[TYPE] << 8) | frame[TYPE + 1]
        if port.test_ip4 is not None:
            if ethertype == 0x0800 and n >= L3 + 20:
                return frame[L3 + 16:L3 + 20] == port.test_ip4
            if ethertype == 0x0806 and n >= ARP_TPA + 4:
                return frame[ARP_TPA:ARP_TPA + 4] == port.test_ip4
        if port.test_ip6 is not None and ethertype == 0x86DD and n >= L3 + 40:
            return frame[IP6_DST:IP6_DST + 16] == port.test_ip6
        return False
