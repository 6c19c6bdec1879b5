"""Flushing a member's transmit ring, and reading the kernel's verdict on each frame back.

The forwarder requests slots (:data:`~vnicbond.system.ring.TP_STATUS_SEND_REQUEST`) as it reads
frames from the TAP and lists them in the port's ``pending``; :func:`flush` then hands them all
to the kernel with one ``send()`` and accounts for every one of them: sent
(``tx_packets``/``tx_bytes``) or dropped under exactly one reason, as a ``send()`` per frame
would have been. Nothing stays requested afterwards, so frames never wait in the ring to burst
out later.

What the kernel says, and what becomes of the frames (Linux 6.18, ``PACKET_LOSS`` on):

* every slot taken (the last one no longer requested): all sent;
* it stopped at a slot still requested, with ``ENOBUFS``/``EAGAIN`` (a full qdisc, a full
  socket buffer, a device that drops) or ``ENETDOWN``/``ENXIO`` (the NIC is down or gone): the
  rest would fare alike, so that slot and every one after it are dropped under the reason
  (``tx_congested``, ``tx_error``) and handed back, our cursor moved back to the kernel's;
* it stopped with another error: that one frame is dropped under its reason and its slot
  emptied (``tp_len`` 0, which the kernel skips), and the rest go on the next ``send()``.

A slot the kernel cannot parse is skipped without a word (``PACKET_LOSS``), and the bytes
``send()`` returns fall short of what was requested: such frames are counted under
``tx_invalid`` in aggregate, from the missing bytes (docs/hardening.md). Frames from the TAP
carry headers the kernel wrote, so it should not happen.
"""

from __future__ import annotations

import errno
import socket

from vnicbond.datapath.port import Port, tx_reason
from vnicbond.system.ring import LEN, TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST

_DONTWAIT = socket.MSG_DONTWAIT
#: Reasons after which the kernel would refuse every frame behind the one it refused.
_STOPPING = ("tx_congested", "tx_error")


def flush(port: Port, packets: int, nbytes: int) -> None:
    """Send what ``port.pending`` lists (``packets`` wire packets, ``nbytes`` bytes in all)."""
    pending = port.pending
    tx = port.tx
    assert tx is not None
    words = tx.words
    send = port.sock.send
    while True:
        try:
            sent = send(b"", _DONTWAIT)  # the frames' bytes it sent, virtio-net headers aside
            err = 0
        except OSError as e:
            sent, err = -1, e.errno or errno.EIO
        if words[pending[-1][0]] != TP_STATUS_SEND_REQUEST:
            if 0 <= sent < nbytes:
                packets -= _skipped(port, nbytes - sent, nbytes)
                nbytes = sent
            port.tx_packets += packets
            port.tx_bytes += nbytes
            pending.clear()
            return
        done = 0  # the kernel stopped at the first slot still requested
        while words[pending[done][0]] != TP_STATUS_SEND_REQUEST:
            done += 1
        rest = pending[done:]
        left_packets = sum(e[2] for e in rest if e[2] >= 0)
        left_bytes = sum(e[3] for e in rest if e[2] >= 0)
        port.tx_packets += packets - left_packets
        port.tx_bytes += nbytes - left_bytes
        packets, nbytes = left_packets, left_bytes
        del pending[:done]
        head = pending[0]
        reason = tx_reason(err or errno.EAGAIN)
        drops = port.drops
        if reason in _STOPPING or head[2] < 0:  # (a slot given up and still not skipped:
            for entry in pending:               # the kernel does not walk the ring at all)
                if entry[2] >= 0:
                    drops[reason] += 1
                words[entry[0]] = TP_STATUS_AVAILABLE
            tx.head = head[1]
            pending.clear()
            return
        drops[reason] += 1
        packets -= head[2]
        nbytes -= head[3]
        head[2] = -1
        words[head[0] + LEN] = 0  # skipped by the kernel on the next send()


def _skipped(port: Port, missing: int, nbytes: int) -> int:
    """Every slot was taken but ``missing`` bytes were not sent: the kernel skipped frames it
    could not parse (``PACKET_LOSS``), and says only how many bytes they held. Counted as
    ``tx_invalid`` in aggregate, one frame for each average frame's worth of the bytes."""
    live = sum(1 for e in port.pending if e[2] >= 0)
    frames = max(1, round(missing * live / nbytes)) if nbytes else 1
    port.drops["tx_invalid"] += frames
    return frames
