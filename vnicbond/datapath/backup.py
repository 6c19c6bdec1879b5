"""The active-backup frame loops: the TAP into the active member's transmit ring, and the
members' receive rings into the TAP.

A mixin of :class:`vnicbond.datapath.forwarder.Datapath`, which owns the table these loops read
(``tx_port``, ``rx_ports``, the MACs) as its attributes: hoisted into locals once per batch,
so a frame costs a few byte comparisons, one ``write`` inbound, and an ``n``-th of a ``send``
outbound. No parsing beyond the destination MAC, no logging, no allocation beyond a memoryview
slice and one small list per frame sent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vnicbond.datapath.offsets import BATCH, DST, MIN_FRAME, NO_MAC, SRC, TYPE
from vnicbond.datapath.port import Port, wire_packets
from vnicbond.datapath.txring import flush
from vnicbond.system.ring import (
    LEN,
    MAC,
    SNAPLEN,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER,
    TP_STATUS_VLAN_VALID,
    VLAN,
)
from vnicbond.wire.vnet import VNET_HDR_LEN

if TYPE_CHECKING:
    from vnicbond.datapath.forwarder import Datapath


class BackupLoops:
    """``_on_tap`` and ``_on_member`` of :class:`Datapath` in active-backup."""

    def _on_tap(self: Datapath) -> None:
        readinto = self.tap.readinto
        port = self.tx_port
        tap_drops = self.tap_drops
        tx = port.tx if port is not None else None
        if tx is None:
            # No usable member, or its NIC just went (the table moves off it at once): drain
            # and count, so stale frames do not burst out later.
            try:
                for _ in range(BATCH):
                    n = readinto(self._tap_buf)
                    if not n:
                        return
                    if port is None:
                        tap_drops["no_member"] += 1
                    elif n < MIN_FRAME:
                        tap_drops["runt"] += 1
                    else:
                        port.drops["tx_error"] += 1
            except OSError:
                tap_drops["read_error"] += 1
            return
        words, at, views, count = tx.words, tx.at, tx.views, tx.count
        pending = port.pending
        drops = port.drops
        tx_max = port.tx_max
        mac = self.group_mac
        i = tx.head
        packets = nbytes = 0
        try:
            for _ in range(BATCH):
                w = at[i]
                if words[w]:  # the kernel still has this slot: the ring is full
                    n = readinto(self._tap_buf)
                    if not n:
                        break
                    if n < MIN_FRAME:
                        tap_drops["runt"] += 1
                    else:
                        drops["tx_congested"] += 1
                    continue
                view = views[i]
                n = readinto(view)
                if not n:  # None: nothing left to read
                    break
                if n < MIN_FRAME:
                    tap_drops["runt"] += 1
                    continue
                if view[SRC:SRC + 6] != mac:  # a guest's frame (a bridge, a macvlan): learn it
                    src = view[SRC:SRC + 6].tobytes()
                    if src[0] & 1 or src == NO_MAC:
                        tap_drops["bad_source"] += 1  # as a bridge drops it
                        continue
                    self._heard(src)
                if n > tx_max and not view[1] and (
                        n > tx_max + 4 or view[TYPE] != 0x81 or view[TYPE + 1]):
                    drops["tx_oversize"] += 1  # above the member's MTU (4 more for a VLAN tag)
                    continue
                words[w + LEN] = n
                words[w] = TP_STATUS_SEND_REQUEST
                p = wire_packets(view, n) if view[1] else 1
                pending.append([w, i, p, n - VNET_HDR_LEN])
                packets += p
                nbytes += n - VNET_HDR_LEN
                i += 1
                if i == count:
                    i = 0
        except OSError:
            tap_drops["read_error"] += 1
        tx.head = i
        if pending:
            flush(port, packets, nbytes)

    def _on_member(self: Datapath, port: Port) -> None:
        rx = port.rx
        if rx is None:
            return
        words, mem, offsets, at, count = rx.words, rx.mem, rx.offsets, rx.at, rx.count
        copied = self._copied
        retagged = self._retagged
        tap_fd = self.tap_fd
        write = os.write
        mac = self.group_mac
        guests = self.guests
        deliver = port in self.rx_ports
        drops = port.drops
        max_frame = self.max_frame
        i = rx.head
        got = packets = nbytes = 0
        for _ in range(BATCH):
            w = at[i]
            status = words[w]
            if not status & TP_STATUS_USER:
                break
            got += 1
            snap = words[w + SNAPLEN]
            if snap < words[w + LEN]:  # longer than the slot
                frame = copied(port, status)
            else:  # the virtio-net header lies just before the frame
                start = offsets[i] + (words[w + MAC] & 0xFFFF) - VNET_HDR_LEN
                frame = mem[start:start + snap + VNET_HDR_LEN]
            if status & TP_STATUS_VLAN_VALID and frame is not None:
                frame = retagged(frame, words[w + VLAN], status)  # the kernel took it off
            ok = False
            if frame is None:
                pass  # counted
            elif not deliver:
                drops["inactive"] += 1  # only the members the table names deliver to the TAP
            else:
                n = len(frame)
                if n < MIN_FRAME:
                    drops["runt"] += 1
                elif n > max_frame and not frame[1]:
                    drops["oversize"] += 1  # above the group's MTU and not a super-frame
                elif frame[DST] & 1:
                    # Broadcast or multicast: ignore our own (and our guests') frames flooded
                    # back by the switch.
                    src = frame[SRC:SRC + 6]
                    if src == mac or src.tobytes() in guests:
                        drops["looped"] += 1
                    else:
                        ok = True
                elif frame[DST:DST + 6] == mac:
                    ok = True
                else:
                    # For a guest behind the TAP (delivered as it is), or, the TAP being a
                    # bridge port, for any host but ourselves (another member's MAC is its
                    # probes'); else unicast for another host (flooded by the switch) or for
                    # the member's own MAC (its test address's traffic, which the probe
                    # sockets read).
                    dst = frame[DST:DST + 6].tobytes()
                    if dst == port.mac:
                        drops["daemon"] += 1
                    elif dst in guests or (self.promiscuous and dst not in self.own_macs):
                        ok = True
                    else:
                        drops["foreign"] += 1
            if ok:
                try:
                    write(tap_fd, frame)
                except OSError:
                    drops["tap_write"] += 1
                else:
                    packets += wire_packets(frame, n) if frame[1] else 1
                    nbytes += n - VNET_HDR_LEN
            frame = None
            words[w] = 0  # the slot goes back to the kernel
            i += 1
            if i == count:
                i = 0
        rx.head = i
        port.rx_packets += packets
        port.rx_bytes += nbytes
        if not got:
            self._on_empty(port)
