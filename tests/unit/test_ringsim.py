"""The ring simulator does what its docstring says Linux 6.18 does (tests.unit.ringsim).

The datapath's ring tests are only as good as the kernel they run against: these pin each
behaviour the simulator promises, read through the real :class:`~vnicbond.system.ring.Ring`
as the datapath reads it.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.unit.ringsim import (
    RX_MAC,
    RX_NET,
    TP_STATUS_AVAILABLE,
    TP_STATUS_COPY,
    TP_STATUS_CSUMNOTREADY,
    TP_STATUS_LOSING,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_SENDING,
    TP_STATUS_TS_SOFTWARE,
    TP_STATUS_USER,
    SimSocket,
    check_geometry,
)
from vnicbond.system.ring import LEN, MAC, SNAPLEN, TX_GEOMETRY, Geometry, Ring

DONTWAIT = socket.MSG_DONTWAIT
HDR = bytes((0, *range(2, 11)))  # a virtio-net header (no flags) to recognise


def eth(n: int, fill: int = 0xAB) -> bytes:
    """An Ethernet frame of ``n`` bytes."""
    return b"\xff" * 6 + b"\x02" * 6 + b"\x88\xb5" + bytes([fill]) * (n - 14)


@pytest.fixture
def sim() -> Iterator[SimSocket]:
    s = SimSocket(1500)
    yield s
    s.close()


def stats(sim: SimSocket) -> tuple[int, int]:
    out = sim.getsockopt(263, 6, 8)
    assert isinstance(out, bytes)
    packets, drops = struct.unpack("II", out)
    return packets, drops


def request(tx: Ring, data: bytes, tp_len: int | None = None) -> int:
    """Fill the reader's next transmit slot and request it, as the datapath does."""
    i = tx.head
    w = tx.at[i]
    tx.views[i][:len(data)] = data
    tx.words[w + LEN] = len(data) if tp_len is None else tp_len
    tx.words[w] = TP_STATUS_SEND_REQUEST
    tx.head = (i + 1) % tx.count
    return i


def test_a_frame_is_stored_behind_its_header(sim: SimSocket) -> None:
    rx = sim.rings.rx
    assert sim.receive(HDR + eth(100)) == "ring"
    w = rx.at[0]
    assert rx.words[w] == TP_STATUS_USER | TP_STATUS_TS_SOFTWARE
    assert (rx.words[w + LEN], rx.words[w + SNAPLEN]) == (100, 100)
    assert (rx.words[w + MAC] & 0xFFFF, rx.words[w + MAC] >> 16) == (RX_MAC, RX_NET)
    assert bytes(rx.mem[RX_MAC - 10:RX_MAC + 100]) == HDR + eth(100)
    sim.timestamps = False
    sim.receive(b"\x01" + bytes(9) + eth(60))  # NEEDS_CSUM: the checksum is not there yet
    assert rx.words[rx.at[1]] == TP_STATUS_USER | TP_STATUS_CSUMNOTREADY


def test_a_frame_longer_than_its_slot_is_cut_and_queued_whole(sim: SimSocket) -> None:
    rx = sim.rings.rx
    room = rx.slot - RX_MAC
    assert [sim.receive(HDR + eth(n)) for n in (room, room + 1)] == ["ring", "copy"]
    w = rx.at[1]
    assert rx.words[w] & TP_STATUS_COPY
    assert (rx.words[w + LEN], rx.words[w + SNAPLEN]) == (room + 1, room)
    assert sim.recv_into(bytearray(50), 0, socket.MSG_TRUNC) == 10 + room + 1
    sim.receive_queue_full = True
    assert sim.receive(HDR + eth(room + 1)) == "cut"
    assert not rx.words[rx.at[2]] & TP_STATUS_COPY
    assert not sim.queue


def test_short_input_becomes_an_empty_frame_behind_a_zero_filled_header(sim: SimSocket) -> None:
    rx = sim.rings.rx
    sim.receive(b"\x07\x08")
    w = rx.at[0]
    assert (rx.words[w + LEN], rx.words[w + SNAPLEN]) == (0, 0)
    assert bytes(rx.mem[RX_MAC - 10:RX_MAC]) == b"\x07\x08" + bytes(8)


def test_a_full_ring_drops_and_counts(sim: SimSocket) -> None:
    rx = sim.rings.rx
    for _ in range(rx.count):
        assert sim.receive(HDR + eth(60)) == "ring"
    assert sim.receive(HDR + eth(9000)) == "dropped"
    assert not sim.queue  # no copy queued for a frame the ring had no slot for
    rx.words[rx.at[0]] = 0
    sim.receive(HDR + eth(60))
    assert rx.words[rx.at[0]] & TP_STATUS_LOSING
    assert stats(sim) == (rx.count + 2, 1)
    assert stats(sim) == (0, 0)


def test_recv_reports_a_pending_error_before_the_queue(sim: SimSocket) -> None:
    buf = bytearray(70_000)
    with pytest.raises(BlockingIOError):
        sim.recv_into(buf, 0, socket.MSG_TRUNC)
    sim.receive(HDR + eth(5000))
    sim.error = errno.ENETDOWN
    with pytest.raises(OSError) as e:
        sim.recv_into(buf, 0, socket.MSG_TRUNC)
    assert e.value.errno == errno.ENETDOWN
    assert sim.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert sim.recv_into(buf, 0, socket.MSG_TRUNC) == 5010


def test_readable_while_a_slot_a_frame_or_an_error_waits(sim: SimSocket) -> None:
    rx = sim.rings.rx
    assert not sim.readable()
    sim.receive(HDR + eth(60))
    assert sim.readable()
    rx.words[rx.at[0]] = 0
    assert not sim.readable()
    sim.error = errno.ENETDOWN
    assert sim.readable()
    assert sim.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ENETDOWN
    assert not sim.readable()


def test_send_walks_from_the_kernels_head_and_skips_what_it_cannot_parse(sim: SimSocket) -> None:
    tx = sim.rings.tx
    room = tx.slot - 32
    assert sim.send(b"", DONTWAIT) == 0  # nothing requested
    frames = [(HDR + eth(60), None), (b"", 0), (HDR, 9), (HDR + eth(14)[:13], None),
              (HDR + eth(14), None), (HDR + eth(100), room + 1), (HDR + eth(1000), None)]
    for data, tp_len in frames:
        request(tx, data, tp_len)
    assert sim.send(b"", DONTWAIT) == 60 + 14 + 1000
    assert sim.take_transmitted() == [HDR + eth(60), HDR + eth(14), HDR + eth(1000)]
    assert sim.tx_head == len(frames)
    assert set(sim.tx_statuses()) == {TP_STATUS_AVAILABLE}
    tx.head = 0  # a reader out of step: the kernel looks only at its own head
    request(tx, HDR + eth(60))
    assert sim.send(b"", DONTWAIT) == 0
    assert sim.tx_status(0) == TP_STATUS_SEND_REQUEST
    with pytest.raises(AssertionError):
        sim.send(b"", 0)  # would wait for every frame


def test_a_refused_frame_stays_requested_and_stops_the_walk(sim: SimSocket) -> None:
    tx = sim.rings.tx
    sim.tx_script = [None, errno.ENOBUFS]
    for n in (60, 61, 62):
        request(tx, HDR + eth(n))
    with pytest.raises(OSError) as e:
        sim.send(b"", DONTWAIT)
    assert e.value.errno == errno.ENOBUFS
    assert [len(f) for f in sim.take_transmitted()] == [70]
    assert (sim.tx_head, sim.tx_statuses()[:3]) == (1, [0, 1, 1])
    assert sim.send(b"", DONTWAIT) == 61 + 62  # retried from there


def test_a_device_that_is_down_refuses_before_any_slot(sim: SimSocket) -> None:
    sim.down = errno.ENXIO
    request(sim.rings.tx, HDR + eth(60))
    with pytest.raises(OSError) as e:
        sim.send(b"", DONTWAIT)
    assert e.value.errno == errno.ENXIO
    assert (sim.tx_head, sim.tx_status(0)) == (0, TP_STATUS_SEND_REQUEST)


def test_a_full_send_buffer_ends_the_walk(sim: SimSocket) -> None:
    """What went is returned; EAGAIN only when nothing did. The rest stays requested."""
    tx = sim.rings.tx
    for _ in range(4):
        request(tx, HDR + eth(60))
    sim.send_room = 2
    assert sim.send(b"", DONTWAIT) == 120
    assert (sim.tx_head, sim.tx_statuses()[:4]) == (2, [0, 0, 1, 1])
    sim.send_room = 0
    with pytest.raises(BlockingIOError):
        sim.send(b"", DONTWAIT)
    sim.send_room = None
    assert sim.send(b"", DONTWAIT) == 120


def test_send_reports_and_clears_a_pending_error(sim: SimSocket) -> None:
    request(sim.rings.tx, HDR + eth(60))
    sim.error = errno.ENETDOWN
    with pytest.raises(OSError) as e:
        sim.send(b"", DONTWAIT)
    assert e.value.errno == errno.ENETDOWN
    assert (sim.error, sim.tx_head, sim.tx_status(0)) == (0, 0, TP_STATUS_SEND_REQUEST)
    assert sim.send(b"", DONTWAIT) == 60


def test_frames_in_flight_keep_their_slots(sim: SimSocket) -> None:
    tx = sim.rings.tx
    sim.hold = True
    request(tx, HDR + eth(60))
    assert sim.send(b"", DONTWAIT) == 60
    assert (sim.tx_head, sim.tx_status(0)) == (1, TP_STATUS_SENDING)
    sim.complete()
    assert sim.tx_status(0) == TP_STATUS_AVAILABLE


def test_the_kernel_refuses_a_ring_it_cannot_lay_out() -> None:
    check_geometry(TX_GEOMETRY)
    for bad in (Geometry(1000, 1, 512), Geometry(4096, 1, 8192), Geometry(4096, 1, 100),
                Geometry(4096, 0, 2048), Geometry(4096, 1, 32)):
        with pytest.raises(OSError):
            check_geometry(bad)


def test_closing_the_rings_fails_while_a_view_is_kept(sim: SimSocket) -> None:
    sim.receive(HDR + eth(60))
    kept = sim.rings.rx.mem[RX_MAC:RX_MAC + 60]
    with pytest.raises(BufferError):
        sim.rings.close()
    kept.release()
    sim.rings.close()
