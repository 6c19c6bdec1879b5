"""The datapath on its members' packet rings (issue 11), driven without root.

The rig of ``test_datapath_drops.py`` (a real :class:`Datapath`, the TAP a socket pair, the
members :class:`~tests.unit.ringsim.SimSocket`: real rings over plain memory, the kernel's side
simulated as Linux 6.18 has it) checks here what the rings bring: frames longer than a receive
slot, full rings on either side, each outcome of a transmit ring's flush as
:mod:`vnicbond.datapath.txring` describes it, the MTU check that keeps oversize frames out of
the ring, a pending socket error on a ring reader, frames the daemon sends, new rings after a
NIC comes back, and, under thousands of random frames and kernel trouble, that the datapath's
ring cursors never leave the kernel's. Where no GSO super-frame is involved the tests also
check the accounting rule of docs/hardening.md (:func:`assert_accounts`): each frame is passed
on or counted once.
"""

from __future__ import annotations

import errno
import random
import socket
from collections.abc import Iterator
from typing import cast

import pytest

from tests.unit.ringsim import (
    RX_MAC,
    TP_STATUS_AVAILABLE,
    TP_STATUS_COPY,
    TP_STATUS_LOSING,
    TP_STATUS_SENDING,
    TP_STATUS_USER,
    check_geometry,
)
from tests.unit.test_datapath_drops import (
    BROADCAST,
    GROUP_MAC,
    MACS,
    MIN_FRAME,
    MODES,
    MTU,
    NEW_MAC,
    OTHER_MAC,
    PEER_MAC,
    Rig,
    for_tap,
    frame,
    run_loop,
    vnet,
)
from vnicbond.datapath import BATCH, BUFFER_SIZE, RX_REASONS, wire_packets
from vnicbond.system.ring import TX_DATA, TX_GEOMETRY, rx_geometry
from vnicbond.wire.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, ZERO_VNET_HDR

#: The room for a frame in a receive slot of the rig's rings (2,048 bytes less tp_mac).
SLOT_ROOM = rx_geometry(MTU).slot - RX_MAC


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def only_a(rig: Rig, mode: str) -> None:
    """Member a alone sends and delivers (in load spreading it is the only active member)."""
    if mode == "active-backup":
        rig.dp.set_forwarding("a", {"a"})
    else:
        rig.dp.set_spread(("a",), {})


def to_a(mode: str, tag: int, size: int = 60, hdr: bytes = ZERO_VNET_HDR) -> tuple[bytes, bytes]:
    """A frame of ``size`` bytes (Ethernet) for member a to deliver, tagged in its first body
    bytes, and what the TAP gets for it."""
    dst = GROUP_MAC if mode == "active-backup" else MACS["a"]
    f = frame(dst, body=tag.to_bytes(4, "big") + bytes(size - 18), hdr=hdr)
    return f, for_tap(f) if mode == "load-spread" else f


def from_host(tag: int, size: int = 60, ethertype: int = 0x88B5) -> bytes:
    """A frame the host writes to the TAP, tagged in its first body bytes."""
    return frame(PEER_MAC, GROUP_MAC, ethertype, tag.to_bytes(4, "big") + bytes(size - 18))


def tag(f: bytes) -> int:
    return int.from_bytes(f[MIN_FRAME:MIN_FRAME + 4], "big")


def wake(rig: Rig, member: str) -> None:
    """Member ``member``'s socket is readable: its reader runs once."""
    rig.dp._on_member_ready(rig.port(member))
    rig.collect()


def write_batch(rig: Rig, frames: list[bytes]) -> None:
    """The host writes ``frames`` (at most a batch) and the TAP's reader runs once."""
    assert len(frames) <= BATCH
    for f in frames:
        rig.host.send(f)
    rig.dp._on_tap_ready()
    rig.collect()


def assert_accounts(rig: Rig, arrived: dict[str, int], written: int, sent: int,
                    failed_reads: dict[str, int] | None = None) -> None:
    """The accounting rule of docs/hardening.md, for frames that are not GSO super-frames:
    every frame that reached a member's kernel is on the TAP (``rx_packets``) or counted once
    under an RX reason (``kernel`` for those the kernel dropped unread, read from its
    statistics); every frame the host wrote to the TAP left one member (``tx_packets``; its
    kernel ``sent`` them) or is counted once under a TX reason of its member or a TAP reason.
    ``failed_reads``: per member, the ``error`` counts that are failed reads, not frames."""
    failed = failed_reads or {}
    for name, port in rig.dp.ports.items():
        port.poll_kernel()
        counted = sum(port.drops[r] for r in RX_REASONS) - failed.get(name, 0)
        assert port.rx_packets + counted == arrived.get(name, 0), name
    ports = rig.dp.ports.values()
    assert sum(p.tx_packets + p.tx_dropped for p in ports) + rig.dp.tap_dropped == written
    assert sum(p.tx_packets for p in ports) == sent


# -- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [68, 576, 1280, 1500, 1501, 4000, 9000, 9216, 16000, 65535])
def test_ring_sizes_fit_what_they_carry(mtu: int) -> None:
    """The kernel accepts every ring the daemon asks for; a receive slot holds the group's
    longest frame (a VLAN tag included), so only super-frames take the copy path; a transmit
    slot holds the longest frame the TAP gives (a 64 KiB super-frame behind a VLAN tag); and a
    batch never fills the transmit ring by itself."""
    g = rx_geometry(mtu)
    check_geometry(g)
    check_geometry(TX_GEOMETRY)
    assert g.slot - RX_MAC >= 14 + 4 + mtu
    assert TX_GEOMETRY.slot - TX_DATA >= VNET_HDR_LEN + 14 + 4 + 65535
    assert TX_GEOMETRY.slots >= BATCH


# -- receive: frames longer than a slot --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_frames_longer_than_a_slot_arrive_whole_and_in_ring_order(rig: Rig, mode: str) -> None:
    """Frames that do not fit their receive slot (at the boundary and far past it, GSO
    super-frames among them) reach the TAP whole, through the socket's queue, in the order
    they arrived among the frames that fit."""
    only_a(rig, mode)
    rig.dp.max_frame = BUFFER_SIZE  # no MTU below the buffer: only the ring's slots matter
    sizes = [60, SLOT_ROOM, SLOT_ROOM + 1, 60, 9000, 60, 60, 30_000, 65_000, SLOT_ROOM - 1]
    frames = [to_a(mode, i, n) for i, n in enumerate(sizes)]
    gso = vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    frames.append(to_a(mode, 99, 40_000, gso))
    outcomes = [rig.sim["a"].receive(f) for f, _ in frames]
    assert outcomes == ["ring", "ring", "copy", "ring", "copy", "ring", "ring", "copy", "copy",
                        "ring", "copy"]
    wake(rig, "a")
    assert rig.to_tap() == [out for _, out in frames]
    assert not rig.sim["a"].queue
    port = rig.port("a")
    assert port.rx_packets == len(sizes) + wire_packets(frames[-1][1], len(frames[-1][1]))
    assert port.rx_bytes == sum(len(f) - VNET_HDR_LEN for f, _ in frames)
    assert rig.counted() == {}


def test_a_cut_frame_without_copy_counts_kernel_and_is_never_delivered(rig: Rig) -> None:
    """With the socket's receive queue full the kernel only cuts a long frame: it is counted
    under ``kernel`` and never reaches the TAP cut; the frames around it and a long frame once
    the queue has room again arrive whole."""
    only_a(rig, "active-backup")
    rig.dp.max_frame = BUFFER_SIZE
    sim = rig.sim["a"]
    small1, small2 = to_a("active-backup", 1)[0], to_a("active-backup", 2)[0]
    big1, big2 = to_a("active-backup", 3, 5000)[0], to_a("active-backup", 4, 5000)[0]
    sim.receive_queue_full = True
    assert [sim.receive(f) for f in (small1, big1, small2)] == ["ring", "cut", "ring"]
    assert sim.rx_status(1) & (TP_STATUS_USER | TP_STATUS_COPY) == TP_STATUS_USER
    wake(rig, "a")
    assert rig.to_tap() == [small1, small2]
    assert rig.counted() == {("a", "kernel"): 1}
    sim.receive_queue_full = False
    assert sim.receive(big2) == "copy"
    wake(rig, "a")
    assert rig.to_tap() == [big2]
    assert_accounts(rig, {"a": 4}, 0, 0)


@pytest.mark.parametrize("mode", MODES)
def test_long_frames_that_are_dropped_are_still_taken_off_the_queue(rig: Rig, mode: str) -> None:
    """A long frame dropped for any reason (inactive member, foreign, above the group's MTU,
    above the buffer) is still read from the socket's queue, so the next long frame read is
    its own."""
    only_a(rig, mode)
    rig.dp.max_frame = 9000
    long_frames = {
        "foreign": ("a", frame(OTHER_MAC, body=bytes(4000))),
        "oversize": ("a", to_a(mode, 1, 9100)[0]),
        "inactive": ("c", to_a(mode, 2, 4000)[0]),
    }
    for member, f in long_frames.values():
        assert rig.sim[member].receive(f) == "copy"
    assert rig.sim["a"].receive(to_a(mode, 3, BUFFER_SIZE)[0]) == "copy"  # past the buffer
    wanted, out = to_a(mode, 4, 5000)
    assert rig.sim["a"].receive(wanted) == "copy"
    assert rig.sim["c"].receive(to_a(mode, 5, 3000)[0]) == "copy"
    for member in "ac":
        wake(rig, member)
    assert rig.to_tap() == [out]
    assert rig.counted() == {("a", "foreign"): 1, ("a", "oversize"): 2, ("c", "inactive"): 2}
    assert not rig.sim["a"].queue and not rig.sim["c"].queue
    assert_accounts(rig, {"a": 4, "c": 2}, 0, 0)


# -- receive: a full ring ----------------------------------------------------------------------


def test_a_full_receive_ring_counts_its_drops_under_kernel(rig: Rig) -> None:
    """Frames that find the receive ring full are dropped by the kernel and show under
    ``kernel`` once the statistics are read (status, or poll_kernel); frames stored while such
    drops are unread carry TP_STATUS_LOSING and are read like any other."""
    only_a(rig, "active-backup")
    sim = rig.sim["a"]
    slots = rig.port("a").rx
    assert slots is not None
    frames = [to_a("active-backup", i)[0] for i in range(slots.count + 7)]
    outcomes = [sim.receive(f) for f in frames]
    assert outcomes == ["ring"] * slots.count + ["dropped"] * 7
    wake(rig, "a")  # one batch: BATCH slots handed back
    late = [to_a("active-backup", 10_000 + i)[0] for i in range(3)]
    assert [sim.receive(f) for f in late] == ["ring"] * 3
    assert sim.rx_status(0) & TP_STATUS_LOSING
    for _ in range(slots.count // BATCH + 1):
        wake(rig, "a")
    assert rig.to_tap() == frames[:slots.count] + late
    assert rig.counted() == {}
    assert rig.port("a").counters()["drops"]["kernel"] == 7  # type: ignore[index]
    assert rig.counted() == {("a", "kernel"): 7}
    assert sim.receive(to_a("active-backup", 20_000)[0]) == "ring"
    assert not sim.rx_status(3) & TP_STATUS_LOSING  # the statistics were read
    wake(rig, "a")
    assert_accounts(rig, {"a": len(frames) + len(late) + 1}, 0, 0)


def test_the_loop_drains_a_ring_in_batches_without_empty_wakeups(rig: Rig) -> None:
    """Driven by the event loop, the reader is woken while filled slots wait and drains them
    all, a batch per wake-up, in order; once the ring is empty it is not woken again."""
    only_a(rig, "active-backup")
    rig.dp.max_frame = BUFFER_SIZE
    rig.dp.start()
    frames = [to_a("active-backup", i, 3000 if i % 50 == 7 else 60)[0] for i in range(300)]
    for f in frames:
        rig.sim["a"].receive(f)
    run_loop(rig)
    assert rig.to_tap() == frames
    assert rig.sim["a"].error_reads == 0  # no wake-up found the ring empty
    assert_accounts(rig, {"a": 300}, 0, 0)
    rig.dp.stop()


# -- receive: a pending socket error -----------------------------------------------------------


def test_a_pending_error_on_an_empty_wakeup_is_counted_once_and_the_reader_rearmed(
        rig: Rig) -> None:
    """A ring reader never calls recv, so a pending error (the NIC went down) would keep the
    socket readable: a wake-up with no frame reads and clears it, counts it once as ``error``
    and watches the socket afresh (loop.call_soon(rearm)); the loop then stays quiet."""
    only_a(rig, "active-backup")
    rearmed: list[str] = []
    rearm = rig.dp.rearm

    def record(name: str) -> None:
        rearmed.append(name)
        rearm(name)

    rig.dp.rearm = record  # type: ignore[method-assign]
    rig.dp.start()
    sim = rig.sim["a"]
    sim.error = errno.ENETDOWN
    run_loop(rig)
    assert rig.counted() == {("a", "error"): 1}
    assert sim.error_reads <= 2  # the wake-up (and the rearm), not a spinning loop
    assert rearmed == ["a"]
    key = rig.loop._selector.get_key(sim.fileno())  # type: ignore[attr-defined]
    assert key.data[0]._callback == rig.dp._on_member_ready
    f = to_a("active-backup", 1)[0]
    sim.receive(f)
    run_loop(rig)
    assert rig.to_tap() == [f]  # still read after the rearm
    assert_accounts(rig, {"a": 1}, 0, 0, failed_reads={"a": 1})
    rig.dp.stop()


def test_an_error_behind_frames_does_not_leave_the_member_unread(rig: Rig) -> None:
    """The NIC goes down while frames wait in the ring: the wake-up reads a batch and leaves
    the error pending, and uvloop stops watching the socket. When the NIC is back and the
    member's socket is watched afresh (Member.link_changed calls rearm), it must stay watched:
    every frame is read, in order, and the error counted once. (Observed with uvloop on this
    machine: with the error still pending the rearmed reader ran once, then never again.)"""
    only_a(rig, "active-backup")
    rig.dp.start()
    sim = rig.sim["a"]
    frames = [to_a("active-backup", i)[0] for i in range(200)]
    for f in frames[:80]:
        sim.receive(f)
    sim.error = errno.ENETDOWN
    run_loop(rig)
    assert rig.counted() == {}  # the wake-up found frames: the error is still pending
    rig.dp.rearm("a")  # the NIC is up again
    for f in frames[80:]:
        sim.receive(f)
    run_loop(rig)
    assert rig.to_tap() == frames
    assert rig.counted() == {("a", "error"): 1}
    selector = rig.loop._selector  # type: ignore[attr-defined]
    assert selector.get_key(sim.fileno()).data[0] is not None  # still watched
    assert_accounts(rig, {"a": 200}, 0, 0, failed_reads={"a": 1})
    rig.dp.stop()


def test_a_pending_error_does_not_strand_a_long_frame_on_the_queue(rig: Rig) -> None:
    """recv reports (and clears) a pending socket error before it looks at the queue, leaving
    the frame queued (checked on Linux 6.18). Read for a slot marked TP_STATUS_COPY when the
    NIC went down, that frame must not stay behind: it would keep the socket readable with the
    ring empty (the loop spinning on empty wake-ups) and be read for the next long frame's slot
    in its place."""
    only_a(rig, "active-backup")
    rig.dp.max_frame = BUFFER_SIZE
    rig.dp.start()
    sim = rig.sim["a"]
    big1, big2 = to_a("active-backup", 1, 5000)[0], to_a("active-backup", 2, 6000)[0]
    assert sim.receive(big1) == "copy"
    sim.error = errno.ENETDOWN
    run_loop(rig)
    assert not sim.queue
    assert sim.error_reads <= 1  # not one per spin of the loop
    assert sim.receive(big2) == "copy"
    run_loop(rig)
    assert rig.to_tap()[-1:] == [big2]
    rig.dp.stop()


# -- transmit: one flush per batch and what the kernel says ------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_goes_out_with_one_send(rig: Rig, mode: str) -> None:
    """A batch of frames from the TAP is written into the ring and flushed with one send();
    every frame leaves whole and in order, counted in tx_packets and tx_bytes."""
    only_a(rig, mode)
    frames = [from_host(i, 60 + 20 * i) for i in range(BATCH)]
    write_batch(rig, frames)
    assert rig.sim["a"].sends == 1
    out = rig.on_wire("a")
    assert [o[MIN_FRAME:] for o in out] == [f[MIN_FRAME:] for f in frames]
    assert [o[:VNET_HDR_LEN] for o in out] == [f[:VNET_HDR_LEN] for f in frames]
    port = rig.port("a")
    assert (port.tx_packets, port.tx_bytes) == (BATCH, sum(len(f) - VNET_HDR_LEN for f in frames))
    assert rig.counted() == {}
    assert_accounts(rig, {}, BATCH, BATCH)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("err", [errno.ENOBUFS, errno.EAGAIN])
def test_a_congested_device_drops_the_rest_of_the_batch_and_the_next_goes_out(
        rig: Rig, mode: str, err: int) -> None:
    """The device refuses a frame mid-batch for lack of room: the frames before it are sent,
    it and every one after it are dropped as ``tx_congested``, their slots handed back and the
    cursor moved back to the kernel's, so the next batch goes out whole from there."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.tx_script = [None] * 7 + [err]
    first = [from_host(i) for i in range(20)]
    write_batch(rig, first)
    assert [tag(o) for o in rig.on_wire("a")] == list(range(7))
    assert rig.counted() == {("a", "tx_congested"): 13}
    assert set(sim.tx_statuses()) == {TP_STATUS_AVAILABLE}
    assert sim.tx_head == rig.port("a").tx.head == 7  # type: ignore[union-attr]
    second = [from_host(100 + i) for i in range(20)]
    write_batch(rig, second)
    assert [tag(o) for o in rig.on_wire("a")] == [100 + i for i in range(20)]
    assert_accounts(rig, {}, 40, 27)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("err", [errno.ENETDOWN, errno.ENXIO])
def test_a_device_that_is_down_drops_the_batch_as_tx_error(rig: Rig, mode: str,
                                                           err: int) -> None:
    """The NIC is down or gone: the kernel refuses before looking at any slot; the whole batch
    counts as ``tx_error``, its slots handed back; once the NIC is back the next batch goes."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    write_batch(rig, [from_host(i) for i in range(3)])
    sim.down = err
    write_batch(rig, [from_host(10 + i) for i in range(10)])
    assert rig.counted() == {("a", "tx_error"): 10}
    assert sim.tx_head == rig.port("a").tx.head == 3  # type: ignore[union-attr]
    sim.down = None
    write_batch(rig, [from_host(20 + i) for i in range(5)])
    assert [tag(o) for o in rig.on_wire("a")] == [0, 1, 2, 20, 21, 22, 23, 24]
    assert_accounts(rig, {}, 18, 8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("err, reason", [(errno.EINVAL, "tx_invalid"), (errno.EFAULT, "tx_invalid"),
                                         (errno.EPROTO, "tx_invalid"),
                                         (errno.EMSGSIZE, "tx_oversize")])
def test_a_frame_the_kernel_refuses_alone_is_dropped_alone(rig: Rig, mode: str, err: int,
                                                           reason: str) -> None:
    """A refusal that concerns one frame drops that frame under its reason; its slot is given
    up (the kernel skips it) and the frames after it go out on the next send, in order."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.tx_script = [None, None, err, None, err]
    write_batch(rig, [from_host(i) for i in range(8)])
    assert [tag(o) for o in rig.on_wire("a")] == [0, 1, 3, 5, 6, 7]
    assert rig.counted() == {("a", reason): 2}
    assert sim.sends == 3
    assert_accounts(rig, {}, 8, 6)


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_frame_then_congestion_in_one_batch(rig: Rig, mode: str) -> None:
    """One frame refused alone, then the device congested later in the same batch: each
    counted under its own reason, the frames between them sent, the rest handed back."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.tx_script = [None, errno.EINVAL, None, errno.ENOBUFS]
    write_batch(rig, [from_host(i) for i in range(6)])
    assert [tag(o) for o in rig.on_wire("a")] == [0, 2]
    assert rig.counted() == {("a", "tx_invalid"): 1, ("a", "tx_congested"): 3}
    write_batch(rig, [from_host(10)])
    assert [tag(o) for o in rig.on_wire("a")] == [10]
    assert_accounts(rig, {}, 7, 3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("room", [0, 5])
def test_a_full_send_buffer_sends_part_of_the_batch(rig: Rig, mode: str, room: int) -> None:
    """The socket's send buffer fills mid-batch: send() returns what it sent (or EAGAIN if
    nothing); the rest counts as ``tx_congested`` and the next batch goes out."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.send_room = room
    write_batch(rig, [from_host(i) for i in range(12)])
    assert [tag(o) for o in rig.on_wire("a")] == list(range(room))
    assert rig.counted() == {("a", "tx_congested"): 12 - room}
    sim.send_room = None
    write_batch(rig, [from_host(50 + i) for i in range(4)])
    assert [tag(o) for o in rig.on_wire("a")] == [50, 51, 52, 53]
    assert_accounts(rig, {}, 16, room + 4)


@pytest.mark.parametrize("mode", MODES)
def test_a_pending_error_met_by_a_flush_drops_the_batch_as_tx_error(rig: Rig, mode: str) -> None:
    """A pending socket error is reported (and cleared) by the send that flushes a batch: the
    batch counts as ``tx_error``; no later wake-up counts it again."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.error = errno.ENETDOWN
    write_batch(rig, [from_host(i) for i in range(5)])
    assert rig.counted() == {("a", "tx_error"): 5}
    assert sim.error == 0
    wake(rig, "a")
    write_batch(rig, [from_host(9)])
    assert [tag(o) for o in rig.on_wire("a")] == [9]
    assert rig.counted() == {("a", "tx_error"): 5}
    assert_accounts(rig, {}, 6, 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_full_transmit_ring_counts_tx_congested(rig: Rig, mode: str) -> None:
    """Frames still in flight keep their slots: once every slot is taken, frames from the TAP
    count as ``tx_congested`` (not one is queued); when the kernel is done with them the next
    frames take the slots again, from where the kernel is."""
    only_a(rig, mode)
    sim = rig.sim["a"]
    sim.hold = True
    slots = TX_GEOMETRY.slots
    written = 0
    for start in range(0, slots + 30, BATCH):
        batch = [from_host(i) for i in range(start, min(start + BATCH, slots + 30))]
        write_batch(rig, batch)
        written += len(batch)
    assert [tag(o) for o in rig.on_wire("a")] == list(range(slots))
    assert rig.counted() == {("a", "tx_congested"): 30}
    assert set(sim.tx_statuses()) == {TP_STATUS_SENDING}
    sim.complete()
    write_batch(rig, [from_host(1000 + i) for i in range(10)])
    assert [tag(o) for o in rig.on_wire("a")] == [1000 + i for i in range(10)]
    assert_accounts(rig, {}, written + 10, slots + 10)


# -- transmit: the member's MTU ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mtu", [1280, 1500, 9000])
def test_frames_above_the_members_mtu_are_never_queued(rig: Rig, mode: str, mtu: int) -> None:
    """set_mtu sets the longest frame a member sends: a frame above it that is not a GSO
    super-frame counts as ``tx_oversize`` and never reaches the ring (a device would drop it
    after the ring took it, and a ring holds no per-frame verdict for that); a VLAN-tagged one
    may be 4 bytes longer; a super-frame goes whatever its length."""
    only_a(rig, mode)
    rig.dp.set_mtu("a", mtu)
    sim = rig.sim["a"]
    eth = 14 + mtu
    oversize = [from_host(1, eth + 1), from_host(2, eth + 5, 0x8100), from_host(3, eth + 4)]
    write_batch(rig, oversize)
    assert rig.counted() == {("a", "tx_oversize"): 3}
    assert (sim.sends, sim.tx_head, rig.port("a").tx.head) == (0, 0, 0)  # type: ignore[union-attr]
    assert set(sim.tx_statuses()) == {TP_STATUS_AVAILABLE}
    gso = bytearray(from_host(6, eth + 3000))
    gso[:VNET_HDR_LEN] = vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    fits = [from_host(4, eth), from_host(5, eth + 4, 0x8100), bytes(gso)]
    write_batch(rig, fits)
    assert [tag(o) for o in rig.on_wire("a")] == [4, 5, 6]
    assert rig.counted() == {("a", "tx_oversize"): 3}
    assert rig.port("a").tx_packets == 2 + wire_packets(gso, len(gso))


# -- frames the daemon sends -------------------------------------------------------------------


def test_send_frame_goes_through_the_ring(rig: Rig) -> None:
    """A frame the daemon built (an announcement, a probe) is written into the member's ring
    behind a zero virtio-net header and flushed at once: True when the kernel took it; when it
    did not, False and counted under its reason."""
    sim = rig.sim["b"]
    f = frame(BROADCAST, MACS["b"], 0x0806, bytes(28))[VNET_HDR_LEN:]
    assert rig.dp.send_frame("b", f)
    assert rig.on_wire("b") == [ZERO_VNET_HDR + f]
    port = rig.port("b")
    assert (port.tx_packets, port.tx_bytes, sim.sends) == (1, len(f), 1)
    assert not rig.dp.send_frame("nobody", f)
    sim.down = errno.ENETDOWN
    assert not rig.dp.send_frame("b", f)
    sim.down = None
    sim.hold = True
    for _ in range(TX_GEOMETRY.slots):
        assert rig.dp.send_frame("b", f)
    assert not rig.dp.send_frame("b", f)  # every slot in flight
    rig.collect()
    assert rig.counted() == {("b", "tx_error"): 1, ("b", "tx_congested"): 1}
    assert port.tx_packets == 1 + TX_GEOMETRY.slots


def test_send_frame_through_a_detached_member_is_counted(rig: Rig) -> None:
    """Between detach and the table no longer naming the member, a frame the daemon sends
    through it is refused and counted (``tx_error``), as any other frame chosen for it."""
    rig.dp.detach("b")
    rig.sim["b"].rings.close()
    rig.sim["b"].close()
    assert not rig.dp.send_frame("b", frame(BROADCAST, MACS["b"])[VNET_HDR_LEN:])
    assert rig.counted() == {("b", "tx_error"): 1}


# -- a NIC comes back --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_attach_gives_the_member_new_rings(rig: Rig, mode: str) -> None:
    """A member whose NIC went and came back reads and sends through the new socket's rings,
    from their first slot, while the old rings are let go (no view of them kept: closing them
    succeeds) and the old socket is not watched any more, even when asked to rearm."""
    only_a(rig, mode)
    rig.dp.start()
    old = rig.sim["a"]
    for i in range(5):
        old.receive(to_a(mode, i)[0])
    write_batch(rig, [from_host(i) for i in range(7)])
    run_loop(rig)
    assert (old.rx_head, old.tx_head) == (5, 7)
    old_fd = old.fileno()
    rig.dp.detach("a")
    old.rings.close()
    old.close()
    rig.dp.rearm("a")
    with pytest.raises(KeyError):
        rig.loop._selector.get_key(old_fd)  # type: ignore[attr-defined]
    new = rig.sim["a"] = rig.new_sim()
    rig.dp.attach("a", cast(socket.socket, new), new.rings, NEW_MAC)
    f, out = to_a(mode, 100)
    if mode == "load-spread":
        f, out = frame(NEW_MAC, body=f[MIN_FRAME:]), for_tap(frame(NEW_MAC, body=f[MIN_FRAME:]))
    new.receive(f)
    write_batch(rig, [from_host(200)])
    run_loop(rig)
    assert rig.to_tap()[-1] == out
    assert [tag(o) for o in rig.on_wire("a")] == [200]
    assert (new.rx_head, new.tx_head) == (1, 1)
    port = rig.port("a")
    assert port.rx is not None and port.tx is not None
    assert (port.rx.head, port.tx.head) == (1, 1)
    assert (port.rx_packets, port.tx_packets) == (6, 8)
    assert_accounts(rig, {"a": 6}, 8, 8)
    rig.dp.stop()


# -- everything at once ------------------------------------------------------------------------


class Traffic:
    """Random frames both ways through the rig, with the kernel misbehaving at random, and
    what the accounting must come to."""

    def __init__(self, rig: Rig, mode: str, rng: random.Random) -> None:
        self.rig, self.mode, self.rng = rig, mode, rng
        self.arrived = dict.fromkeys(MACS, 0)
        self.failed_reads = dict.fromkeys(MACS, 0)
        self.expected_tap: dict[str, list[bytes]] = {m: [] for m in MACS}
        self.written: list[bytes] = []
        self.sent: dict[str, list[bytes]] = {m: [] for m in MACS}
        self.seq = 0

    def deliverable(self, member: str, dst: bytes) -> bool:
        if self.mode == "active-backup":
            return member == "a" and dst in (GROUP_MAC, BROADCAST)
        # The TAP's own MAC too, from the first member (a DHCP server's answer to its chaddr).
        return member in "ab" and (dst == MACS[member]
                                   or (dst in (BROADCAST, GROUP_MAC) and member == "a"))

    def wire(self) -> None:
        rng, rig = self.rng, self.rig
        member = rng.choice("abc")
        sim = rig.sim[member]
        sim.receive_queue_full = rng.random() < 0.1
        count = 1100 if rng.random() < 0.02 else rng.randint(1, 100)  # now and then a flood
        for _ in range(count):
            self.seq += 1
            dst = rng.choice((GROUP_MAC, BROADCAST, OTHER_MAC, MACS[member]))
            size = rng.choice((60, rng.randint(60, 1500), rng.randint(SLOT_ROOM - 3, SLOT_ROOM + 3),
                               rng.randint(2000, 4000)))
            if rng.random() < 0.005:
                size = rng.randint(20_000, 60_000)
            body = member.encode() + self.seq.to_bytes(4, "big") + rng.randbytes(size - 19)
            f = frame(dst, body=body, hdr=bytes((rng.choice((0, 1, 2)),)) + bytes(9))
            outcome = sim.receive(f)
            self.arrived[member] += 1
            if outcome in ("ring", "copy") and self.deliverable(member, dst):
                out = for_tap(f) if self.mode == "load-spread" and dst != BROADCAST else f
                self.expected_tap[member].append(out)
        for _ in range(rng.randint(0, 3)):
            wake(rig, member)

    def error(self) -> None:
        """A socket error on a member whose ring and queue are empty, found by the next
        wake-up. (Behind waiting frames the watch comes back only when the NIC is reported
        up again and the runtime re-arms it: see the tests of that case above.)"""
        member = self.rng.choice("abc")
        sim = self.rig.sim[member]
        if sim.queue or any(True for _ in sim.unread()):
            return
        sim.error = errno.ENETDOWN
        wake(self.rig, member)
        self.failed_reads[member] += 1

    def tap(self) -> None:
        rng, rig = self.rng, self.rig
        for name in MACS:
            sim = rig.sim[name]
            sim.down = errno.ENETDOWN if rng.random() < 0.05 else None
            sim.send_room = rng.randint(0, 40) if rng.random() < 0.1 else None
            sim.hold = rng.random() < 0.2
            if rng.random() < 0.3:
                sim.complete()
            if rng.random() < 0.2:
                sim.tx_script = [rng.choice((None, None, None, errno.ENOBUFS, errno.EAGAIN,
                                             errno.EINVAL, errno.EPROTO, errno.EPERM))
                                 for _ in range(rng.randint(1, 10))]
        for _ in range(rng.randint(1, 2)):
            batch = [self.from_host() for _ in range(rng.randint(1, BATCH))]
            self.written += batch
            write_batch(rig, batch)
        for name in MACS:
            self.sent[name] += rig.on_wire(name)

    def from_host(self) -> bytes:
        """A frame from the host: a runt now and then, a jumbo frame (about the members' MTU of
        9,000) rarely enough that a batch fits the TAP's socket pair (some 200 KB)."""
        rng = self.rng
        self.seq += 1
        if rng.random() < 0.03:
            return rng.randbytes(rng.randrange(1, MIN_FRAME))
        size = rng.randint(9000, 9030) if rng.random() < 0.05 else rng.randint(60, 1514)
        dst = rng.choice((PEER_MAC, BROADCAST, OTHER_MAC))
        ethertype = 0x8100 if rng.random() < 0.1 else 0x88B5
        return frame(dst, GROUP_MAC, ethertype, self.seq.to_bytes(4, "big")
                     + rng.randbytes(size - 18))

    def run_loop(self) -> None:
        """The event loop runs the readers, when what waits in the rings fits the TAP's socket
        pair (some 200 KB: the loop may run every member's reader before the host's)."""
        waiting = sum(len(f) for sim in self.rig.sim.values()
                      for f in (*sim.unread(), *sim.queue))
        if waiting < 100_000:
            run_loop(self.rig)

    def settle(self) -> None:
        """The kernel's trouble over, every ring drained and every frame in flight done."""
        rig = self.rig
        for name in MACS:
            sim = rig.sim[name]
            sim.down = sim.send_room = None
            sim.hold = sim.receive_queue_full = False
            sim.tx_script = []
            sim.complete()
            for _ in range(rig.port(name).rx.count // BATCH + 2):  # type: ignore[union-attr]
                if not sim.queue and not any(True for _ in sim.unread()):
                    break
                wake(rig, name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [1, 2])
def test_the_cursors_stay_in_step_under_random_traffic_and_kernel_trouble(
        rig: Rig, mode: str, seed: int) -> None:
    """Thousands of frames both ways, long and short, deliverable or not, through rings that
    fill up, queues that overflow, devices that refuse, go down or hold frames, sockets with
    errors, the loop running now and then: after every callback the datapath's cursors agree
    with the kernel's (the rig checks); at the end no slot is stuck or lost, every frame is
    accounted for once, and what reached the TAP and each member's wire is exactly the frames
    meant for it, whole and in order."""
    rng = random.Random(seed)
    rig.set_mode(mode)
    rig.dp.max_frame = BUFFER_SIZE
    for name in MACS:
        rig.dp.set_mtu(name, 9000)
    rig.dp.start()
    traffic = Traffic(rig, mode, rng)
    while len(traffic.written) < 10_000 or sum(traffic.arrived.values()) < 10_000:
        step = rng.random()
        if step < 0.45:
            traffic.wire()
        elif step < 0.9:
            traffic.tap()
        elif step < 0.97:
            traffic.error()
        else:
            traffic.run_loop()
    traffic.settle()
    for name, sim in rig.sim.items():
        assert not list(sim.unread()) and not sim.queue
        assert set(sim.tx_statuses()) == {TP_STATUS_AVAILABLE}
        traffic.sent[name] += sim.take_transmitted()
    tapped: dict[str, list[bytes]] = {m: [] for m in MACS}
    for f in rig.to_tap():
        tapped[chr(f[MIN_FRAME])].append(f)
    assert tapped == traffic.expected_tap
    for name, port in rig.dp.ports.items():
        assert port.rx_bytes == sum(len(f) - VNET_HDR_LEN for f in tapped[name])
        assert port.tx_bytes == sum(len(f) - VNET_HDR_LEN for f in traffic.sent[name])
    written = {tag(f): f for f in traffic.written if len(f) >= MIN_FRAME}
    for name, out in traffic.sent.items():
        tags = [tag(o) for o in out]
        assert tags == sorted(set(tags)), name
        for o in out:
            f = written[tag(o)]
            assert (o[:VNET_HDR_LEN + 6], o[MIN_FRAME - 2:]) == (f[:VNET_HDR_LEN + 6],
                                                                 f[MIN_FRAME - 2:])
    assert_accounts(rig, traffic.arrived, len(traffic.written),
                    sum(len(o) for o in traffic.sent.values()), traffic.failed_reads)
    counted = {r for (_, r) in rig.counted()}
    assert {"kernel", "tx_congested", "tx_error", "tx_invalid", "tx_oversize"} <= counted
    rig.dp.stop()
