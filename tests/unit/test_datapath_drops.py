"""The datapath against hostile and broken frames, driven for real without root (issue 6).

A real :class:`Datapath` runs on an asyncio loop with a Unix datagram socket pair standing in
for the TAP (each datagram is one frame, virtio-net header first) and simulated packet sockets
with their receive and transmit rings for the members (:mod:`tests.unit.ringsim`: the real
ring layout over plain memory, with the kernel's side as Linux 6.18 has it). Frames arrive in
the members' receive rings and from the far end of the TAP, the datapath's readiness callbacks
are called directly (or by the loop, whose poll asks the simulated kernel what is readable),
and what comes out the other side, what each member's kernel sent and the counters are
checked; after every callback the datapath's ring cursors must agree with the kernel's.

The rules under test: every frame read is either passed on or counted under exactly one
reason (:data:`RX_REASONS`, :data:`TX_REASONS`, :data:`TAP_REASONS`); nothing hostile raises,
stalls the loop (at most ``BATCH`` frames per callback) or changes the forwarding table; a
send the kernel refuses is counted and the rest of the batch still goes out; a detached member's
socket is no longer read, and an attached one carries on with the same counters. What the rings
add (frames longer than a slot, full rings, each outcome of a flush) is in
``test_datapath_rings.py``.
"""

from __future__ import annotations

import asyncio
import errno
import random
import selectors
import socket
import struct
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any, cast

import pytest

from tests.unit.conftest import deadline
from tests.unit.ringsim import SimSocket
from vnicbond.datapath import (
    BATCH,
    BUFFER_SIZE,
    MIN_SEGMENT,
    RX_REASONS,
    TAP_REASONS,
    TX_REASONS,
    Datapath,
    Port,
    tx_reason,
    wire_packets,
)
from vnicbond.datapath.ndp import neighbor_discovery
from vnicbond.wire.vnet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
    VnetHeader,
    build_vnet,
)

# -- the cast ------------------------------------------------------------------------------------

GROUP_MAC = bytes.fromhex("02000000ee01")  # the TAP's MAC
MACS = {"a": bytes.fromhex("02000000a001"), "b": bytes.fromhex("02000000b001"),
        "c": bytes.fromhex("02000000c001")}
NEW_MAC = bytes.fromhex("02000000d001")  # a NIC that takes member a's name
PEER_MAC = bytes.fromhex("021111111111")  # a host on the link
OTHER_MAC = bytes.fromhex("026666666666")  # another host: frames for it are flooded to us
BROADCAST = b"\xff" * 6
MCAST6 = bytes.fromhex("333300000001")
MCAST4 = bytes.fromhex("01005e000001")

TEST4_A = IPv4Address("198.18.0.11").packed  # member a's test address
TEST6_B = IPv6Address("2001:db8::12").packed  # member b's test address
TEST4_C = IPv4Address("198.18.0.13").packed
TEST_IPS = {"a": TEST4_A, "b": TEST6_B, "c": TEST4_C}
DATA4_A = IPv4Address("198.51.100.10").packed  # data addresses, hosted on a, b, b
DATA4_B = IPv4Address("198.51.100.11").packed
DATA6_B = IPv6Address("2001:db8::100").packed
HOSTS: dict[bytes, str | None] = {DATA4_A: "a", DATA4_B: "b", DATA6_B: "b"}
PEER4 = IPv4Address("198.51.100.1").packed
PEER6 = IPv6Address("2001:db8::1").packed
LINK_LOCAL = IPv6Address("fe80::1").packed
ALL_NODES = IPv6Address("ff02::1").packed

ETH_EXPERIMENTAL = 0x88B5  # IEEE local experimental: nothing the datapath looks into
ETH_HLEN = 14
MIN_FRAME = VNET_HDR_LEN + ETH_HLEN
L3 = VNET_HDR_LEN + ETH_HLEN
ICMP6 = L3 + 40
#: The group's MTU in the rig, which sizes the members' receive rings (2,048-byte slots).
MTU = 1500
#: The group's longest frame (``max_frame``) where oversize frames are wanted cheaply.
SMALL_BUF = 512
MODES = ("active-backup", "load-spread")

# -- frames --------------------------------------------------------------------------------------


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return build_vnet(VnetHeader(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset))


def frame(dst: bytes, src: bytes = PEER_MAC, ethertype: int = ETH_EXPERIMENTAL,
          body: bytes = bytes(46), hdr: bytes = ZERO_VNET_HDR) -> bytes:
    """A frame as it crosses a member socket or the TAP: virtio-net header, then Ethernet."""
    return hdr + dst + src + ethertype.to_bytes(2, "big") + body


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (0 when ``data`` already holds a correct one)."""
    if len(data) & 1:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: bytes, dst: bytes, proto: int = 17, body: bytes = bytes(8)) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0,
                         src, dst)
    return header[:10] + checksum(header).to_bytes(2, "big") + header[12:] + body


def ipv6(src: bytes, dst: bytes, next_header: int, body: bytes, hop_limit: int = 255) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), next_header, hop_limit, src,
                       dst) + body


def icmp6(src: bytes, dst: bytes, message: bytes) -> bytes:
    """IPv6 around an ICMPv6 ``message`` (its checksum field zero), with the checksum set."""
    pseudo = src + dst + struct.pack("!I3xB", len(message), 58)
    value = checksum(pseudo + message)
    return ipv6(src, dst, 58, message[:2] + value.to_bytes(2, "big") + message[4:])


def icmp6_checksum_ok(vframe: bytes) -> bool:
    """Whether the ICMPv6 checksum of a frame (virtio-net header first) is right."""
    length = int.from_bytes(vframe[L3 + 4:L3 + 6], "big")
    message = vframe[ICMP6:ICMP6 + length]
    pseudo = vframe[L3 + 8:L3 + 40] + struct.pack("!I3xB", length, 58)
    return checksum(pseudo + message) == 0


def lladdr_option(kind: int, mac: bytes) -> bytes:
    return bytes((kind, 1)) + mac


def nd_frame(kind: int, src_ip: bytes, target: bytes | None = None,
             options: bytes = b"", dst_mac: bytes = MCAST6, dst_ip: bytes = ALL_NODES,
             hdr: bytes = ZERO_VNET_HDR) -> bytes:
    """A neighbour-discovery message from the host (133 RS, 134 RA, 135 NS, 136 NA)."""
    if kind == 133:
        fixed = bytes(4)  # reserved
    elif kind == 134:
        fixed = bytes((64, 0, 0x07, 0x08)) + bytes(8)  # hop limit, flags, lifetime, timers
    else:
        flags = 0x20 if kind == 136 else 0
        fixed = bytes((flags, 0, 0, 0)) + (target or bytes(16))
    message = bytes((kind, 0, 0, 0)) + fixed + options
    return frame(dst_mac, GROUP_MAC, 0x86DD, icmp6(src_ip, dst_ip, message), hdr)


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)


# -- the rig -------------------------------------------------------------------------------------


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a datagram pair, each able to have a batch of long frames in flight (as
    far as ``net.core.wmem_max`` allows)."""
    near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for end in (near, far):
        end.setblocking(False)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return near, far


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``."""
    out = []
    while True:
        try:
            out.append(sock.recv(1 << 17))
        except BlockingIOError:
            return out


class PollingSelector(selectors.DefaultSelector):
    """The loop's selector, which asks the simulated kernels what is readable before each poll
    (the datapath hands receive slots back by writing memory, which no descriptor shows), and
    which treats a socket with an error pending as uvloop does (checked on this machine):
    libuv reports POLLERR to the reader once, then stops watching the descriptor."""

    def __init__(self, before: Callable[[], None], failed: Callable[[int], bool]) -> None:
        super().__init__()
        self._before = before
        self._failed = failed

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._before()
        events = super().select(timeout)
        for key, _ in events:
            if self._failed(key.fd):
                self.unregister(key.fd)
        return events


class Rig:
    """A Datapath with members a, b, c: ``host`` is the TAP's far end, ``sim[m]`` member m's
    simulated packet socket, its rings and the kernel behind them."""

    def __init__(self) -> None:
        self.sims: list[SimSocket] = []
        self.loop = asyncio.SelectorEventLoop(PollingSelector(self.sync, self.failed))
        self.socks: list[socket.socket] = []
        self.tap_end, self.host = self.pair()
        self.dp = Datapath(self.loop, self.tap_end.fileno(), GROUP_MAC, MTU)
        self.sim: dict[str, SimSocket] = {}
        self.tapped: list[bytes] = []
        for name in MACS:
            sim = self.sim[name] = self.new_sim()
            self.dp.add_port(name, cast(socket.socket, sim), sim.rings, MACS[name],
                             TEST_IPS[name])

    def pair(self) -> tuple[socket.socket, socket.socket]:
        near, far = socket_pair()
        self.socks += [near, far]
        return near, far

    def new_sim(self) -> SimSocket:
        """A member socket with its rings, as a member opens it (closed with the rig)."""
        sim = SimSocket(MTU)
        self.sims.append(sim)
        return sim

    def sync(self) -> None:
        for sim in self.sims:
            sim.sync()

    def failed(self, fd: int) -> bool:
        """Whether ``fd`` is a member socket with an error pending."""
        return any(sim.error for sim in self.sims if sim.fileno() == fd)

    def close(self) -> None:
        self.loop.close()
        for s in self.socks:
            s.close()
        for sim in self.sims:
            sim.close()

    def set_mode(self, mode: str) -> None:
        """Active-backup: a sends and delivers. Load spreading: a and b (a first), c idle."""
        if mode == "active-backup":
            self.dp.set_forwarding("a", {"a"})
        else:
            self.dp.set_spread(("a", "b"), HOSTS)

    def port(self, name: str) -> Port:
        return self.dp.ports[name]

    def from_wire(self, name: str, frames: list[bytes]) -> None:
        """Frames arrive on member ``name``; one readiness callback per BATCH frames."""
        for i in range(0, len(frames), BATCH):
            for f in frames[i:i + BATCH]:
                self.sim[name].receive(f)
            self.dp._on_member_ready(self.port(name))
            self.collect()

    def from_host(self, frames: list[bytes]) -> None:
        """Frames the host writes to the TAP; one readiness callback per BATCH frames."""
        for i in range(0, len(frames), BATCH):
            for f in frames[i:i + BATCH]:
                self.host.send(f)
            self.dp._on_tap_ready()
            self.collect()

    def collect(self) -> None:
        """Read what reached the host, so that no socket buffer fills up, and check that every
        member's ring cursors agree with its kernel's."""
        if self.host.fileno() >= 0:
            self.tapped += drain(self.host)
        self.check_rings()

    def check_rings(self) -> None:
        """Between callbacks nothing is left requested on a transmit ring and the datapath's
        cursors are where the kernel's say (:meth:`SimSocket.out_of_step`)."""
        for name, port in self.dp.ports.items():
            sim = self.sim[name]
            if port.rx is None or port.tx is None or port.sock is not sim:
                continue
            assert port.pending == []
            assert sim.out_of_step(port.rx.head, port.tx.head) == [], name

    def to_tap(self) -> list[bytes]:
        """The frames written to the TAP since the last call."""
        self.collect()
        out, self.tapped = self.tapped, []
        return out

    def on_wire(self, name: str) -> list[bytes]:
        """The frames member ``name`` sent since the last call."""
        self.collect()
        return self.sim[name].take_transmitted()

    def counted(self) -> dict[tuple[str, str], int]:
        """Every non-zero drop counter: (member, reason), or ("tap", reason)."""
        out = {(n, r): v for n, p in self.dp.ports.items() for r, v in p.drops.items() if v}
        out.update({("tap", r): v for r, v in self.dp.tap_drops.items() if v})
        return out

    def rx_packets(self) -> int:
        return sum(p.rx_packets for p in self.dp.ports.values())

    def tx_packets(self) -> int:
        return sum(p.tx_packets for p in self.dp.ports.values())

    def table(self) -> tuple[object, ...]:
        """Everything the forwarding decisions read: hostile frames must leave it alone."""
        dp = self.dp
        return (dp.spreading, dp.tx_port, dp.rx_ports, dp.first_port, dict(dp.host_ports),
                tuple(dp.bucket_ports), dp.own_macs, dp.group_mac,
                {n: (p.mac, p.sock, p.test_ip4, p.test_ip6) for n, p in dp.ports.items()})


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


# -- the kernel fact the receive path relies on --------------------------------------------------


def test_recv_into_with_msg_trunc_returns_the_full_length() -> None:
    """The oversize check needs recv_into(MSG_TRUNC) to report the real length of a frame
    queued whole (one longer than its ring slot), however short the buffer; the simulated
    socket does as the kernel does (checked on Linux 6.18)."""
    sim = SimSocket(MTU)
    try:
        assert sim.receive(frame(GROUP_MAC, body=bytes(3000))) == "copy"
        assert sim.recv_into(bytearray(100), 0, socket.MSG_TRUNC) == MIN_FRAME + 3000
    finally:
        sim.close()


# -- from the wire: one reason per frame ---------------------------------------------------------

UNICAST = frame(GROUP_MAC)
RUNTS = [b"", b"\x00", ZERO_VNET_HDR, UNICAST[:MIN_FRAME - 1], bytes(MIN_FRAME - 1)]
OVERSIZE = [frame(GROUP_MAC, body=bytes(SMALL_BUF)), frame(BROADCAST, body=bytes(SMALL_BUF)),
            frame(MACS["a"], body=bytes(SMALL_BUF - MIN_FRAME + 1))]

#: (member, frame) pairs that must each count once under the reason, per mode.
RX_CASES: dict[str, dict[str, list[tuple[str, bytes]]]] = {
    "active-backup": {
        "runt": [("a", f) for f in RUNTS],
        "oversize": [("a", f) for f in OVERSIZE],
        "inactive": [("b", UNICAST), ("c", UNICAST), ("b", frame(BROADCAST)),
                     ("c", frame(MACS["c"]))],
        "foreign": [("a", frame(OTHER_MAC)), ("a", frame(MACS["b"])),
                    ("a", frame(PEER_MAC, GROUP_MAC))],
        "daemon": [("a", frame(MACS["a"])),
                   ("a", frame(MACS["a"], ethertype=0x0800, body=ipv4(PEER4, TEST4_A)))],
        "looped": [("a", frame(BROADCAST, GROUP_MAC)), ("a", frame(MCAST6, GROUP_MAC)),
                   ("a", frame(MCAST4, GROUP_MAC))],
        "tap_write": [("a", UNICAST), ("a", frame(BROADCAST))],
    },
    "load-spread": {
        "runt": [(m, f) for m in "ab" for f in RUNTS],
        "oversize": [(m, f) for m in "ab" for f in OVERSIZE],
        "inactive": [("c", frame(MACS["c"])), ("c", frame(BROADCAST)),
                     ("b", frame(BROADCAST)), ("b", frame(MCAST6))],
        "foreign": [("a", frame(OTHER_MAC)), ("a", frame(MACS["b"])), ("b", frame(MACS["a"])),
                    ("b", frame(MACS["c"])), ("b", UNICAST)],
        "daemon": [
            ("a", frame(MACS["a"], ethertype=0x0800, body=ipv4(PEER4, TEST4_A))),
            ("a", frame(MACS["a"], ethertype=0x0806,
                        body=arp(1, PEER_MAC, PEER4, bytes(6), TEST4_A))),
            ("b", frame(MACS["b"], ethertype=0x86DD,
                        body=ipv6(PEER6, TEST6_B, 17, bytes(8)))),
        ],
        "looped": [("a", frame(BROADCAST, GROUP_MAC)), ("a", frame(BROADCAST, MACS["a"])),
                   ("a", frame(MCAST6, MACS["b"])), ("a", frame(MCAST4, MACS["c"]))],
        "tap_write": [("a", frame(MACS["a"])), ("a", frame(BROADCAST)), ("b", frame(MACS["b"])),
                      ("a", UNICAST)],
    },
}


@pytest.mark.parametrize("reason", ["runt", "oversize", "inactive", "foreign", "daemon",
                                    "looped", "tap_write"])
def test_each_rx_drop_is_counted_once_under_its_reason_and_nothing_reaches_the_tap(
        rig: Rig, mode: str, reason: str) -> None:
    """Each kind of unwanted frame from a member counts exactly once, under its own reason,
    for its member; the TAP gets nothing and the table does not change."""
    rig.set_mode(mode)
    rig.dp.max_frame = SMALL_BUF
    if reason == "tap_write":
        rig.host.close()  # the TAP refuses writes (ECONNREFUSED)
    before = rig.table()
    cases = RX_CASES[mode][reason]
    expected: dict[tuple[str, str], int] = {}
    for member, f in cases:
        rig.from_wire(member, [f])
        expected[member, reason] = expected.get((member, reason), 0) + 1
    assert rig.counted() == expected
    assert rig.rx_packets() == 0
    assert sum(p.rx_bytes for p in rig.dp.ports.values()) == 0
    if reason != "tap_write":
        assert rig.to_tap() == []
    assert rig.table() == before


def test_rx_reason_lists_cover_every_case() -> None:
    """The cases above exercise every filtering and error reason but the two that need a
    broken socket ("error") or the kernel's statistics ("kernel")."""
    for mode in MODES:
        assert set(RX_CASES[mode]) == set(RX_REASONS) - {"error", "kernel"}


@pytest.mark.parametrize("size_delta, reason", [(0, None), (1, "oversize")])
def test_oversize_boundary_with_the_real_buffer(rig: Rig, mode: str, size_delta: int,
                                                reason: str | None) -> None:
    """A frame that exactly fills the 64 KiB buffer is delivered whole; one byte more is cut
    by the kernel and counted as oversize rather than delivered truncated."""
    rig.set_mode(mode)
    rig.dp.max_frame = BUFFER_SIZE  # no MTU below the buffer: only the buffer limits
    dst = GROUP_MAC if mode == "active-backup" else MACS["a"]
    f = frame(dst, body=bytes(BUFFER_SIZE + size_delta - MIN_FRAME))
    rig.from_wire("a", [f])
    if reason is None:
        out = rig.to_tap()
        assert [len(o) for o in out] == [BUFFER_SIZE]
        assert out[0][MIN_FRAME:] == f[MIN_FRAME:]
        assert rig.port("a").rx_packets == 1
        assert rig.counted() == {}
    else:
        assert rig.to_tap() == []
        assert rig.counted() == {("a", reason): 1}


@pytest.mark.parametrize(("extra", "gso", "reason"), [
    (0, False, None), (1, False, "oversize"), (5000, True, None)])
def test_frames_above_the_group_mtu_are_dropped_unless_gso(mode: str, extra: int, gso: bool,
                                                           reason: str | None) -> None:
    """A member whose wire has a larger MTU may hand over longer frames; the group's TAP has
    the group's MTU, so they are dropped as a NIC of that MTU would (one VLAN tag allowed).
    A GRO super-frame (gso_type set) is as long as it needs to be."""
    rig = Rig()
    try:
        rig.dp.max_frame = VNET_HDR_LEN + 14 + 4 + 1500
        rig.set_mode(mode)
        dst = GROUP_MAC if mode == "active-backup" else MACS["a"]
        f = bytearray(frame(dst, body=bytes(rig.dp.max_frame + extra - MIN_FRAME)))
        if gso:
            f[1] = GSO_TCPV4
        rig.from_wire("a", [bytes(f)])
        if reason is None:
            assert [len(o) for o in rig.to_tap()] == [len(f)]
            assert rig.counted() == {}
        else:
            assert rig.to_tap() == []
            assert rig.counted() == {("a", reason): 1}
    finally:
        rig.close()


def test_member_socket_error_is_counted_once(rig: Rig, mode: str) -> None:
    """A socket error (the link went: ENETDOWN) counts once as "error" and does not raise. A
    ring reader finds it pending on a wake-up with no frame (test_datapath_rings has more)."""
    rig.set_mode(mode)
    rig.sim["a"].error = errno.ENETDOWN
    rig.dp._on_member_ready(rig.port("a"))
    assert rig.counted() == {("a", "error"): 1}
    rig.dp._on_member_ready(rig.port("a"))
    assert rig.counted() == {("a", "error"): 1}


def test_valid_frames_from_the_active_member_are_delivered_and_counted(rig: Rig) -> None:
    """Active-backup: unicast for the group's MAC, broadcasts and multicasts from other hosts
    reach the TAP unchanged, each counted in rx_packets and rx_bytes."""
    rig.set_mode("active-backup")
    frames = [UNICAST, frame(BROADCAST), frame(MCAST6), frame(MCAST4),
              frame(GROUP_MAC, ethertype=0x0800, body=ipv4(PEER4, DATA4_A)),
              frame(GROUP_MAC, body=b"")]  # the shortest frame that is not a runt
    rig.from_wire("a", frames)
    assert rig.to_tap() == frames
    assert rig.port("a").rx_packets == len(frames)
    assert rig.port("a").rx_bytes == sum(len(f) - VNET_HDR_LEN for f in frames)
    assert rig.counted() == {}


def for_tap(f: bytes) -> bytes:
    """A frame for a member's MAC as load spreading hands it to the TAP: to the TAP's MAC."""
    return f[:VNET_HDR_LEN] + GROUP_MAC + f[VNET_HDR_LEN + 6:]


def test_valid_frames_in_load_spreading_are_delivered_for_the_tap(rig: Rig) -> None:
    """Load spreading: frames for a member's MAC reach the TAP addressed to the TAP's MAC;
    broadcasts from other hosts come through the first member only."""
    rig.set_mode("load-spread")
    to_a = frame(MACS["a"], body=bytes(range(46)))
    to_b = frame(MACS["b"], ethertype=0x0800, body=ipv4(PEER4, DATA4_B))
    b_test_v4 = frame(MACS["b"], ethertype=0x0800, body=ipv4(PEER4, TEST4_A))  # not b's
    bcast = frame(BROADCAST, body=arp(1, PEER_MAC, PEER4, bytes(6), DATA4_A))
    rig.from_wire("a", [to_a, bcast])
    rig.from_wire("b", [to_b, b_test_v4])
    assert rig.to_tap() == [for_tap(to_a), bcast, for_tap(to_b), for_tap(b_test_v4)]
    assert (rig.port("a").rx_packets, rig.port("b").rx_packets) == (2, 2)
    assert rig.port("b").rx_bytes == len(to_b) + len(b_test_v4) - 2 * VNET_HDR_LEN
    assert rig.counted() == {}


# -- from the wire: the accounting adds up -------------------------------------------------------


def random_body(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def wire_mix(rng: random.Random, mode: str) -> tuple[str, bytes, str, bytes | None]:
    """One random frame from the wire: (member, frame, expected reason or "deliver", what the
    TAP should get). Only non-GSO frames: a GSO frame delivered counts its wire segments."""
    hdr = bytes((rng.choice((0, 1, 2, 3)), 0)) + rng.randbytes(8)  # flags and hints, no GSO
    payload_room = SMALL_BUF - MIN_FRAME
    spread = mode == "load-spread"
    kind = rng.randrange(11)
    member = rng.choice("ab") if spread else "a"
    mac = MACS[member]
    if kind == 0:
        return member, rng.randbytes(rng.randrange(MIN_FRAME)), "runt", None
    if kind == 1:
        f = frame(rng.choice((GROUP_MAC, mac, BROADCAST)),
                  body=random_body(rng, payload_room + 1, payload_room + 200), hdr=hdr)
        return member, f, "oversize", None
    if kind == 2:
        f = frame(rng.choice((GROUP_MAC, mac, BROADCAST, OTHER_MAC)), hdr=hdr,
                  body=random_body(rng, 0, payload_room))
        return ("c" if spread or rng.random() < 0.5 else "b"), f, "inactive", None
    if kind == 3:
        dst = rng.choice((OTHER_MAC, *(m for n, m in MACS.items() if n != member)))
        return member, frame(dst, body=random_body(rng, 0, payload_room), hdr=hdr), "foreign", None
    if kind == 4:  # broadcast or multicast from one of our own MACs
        src = rng.choice((GROUP_MAC, *MACS.values())) if spread else GROUP_MAC
        f = frame(rng.choice((BROADCAST, MCAST4, MCAST6)), src, hdr=hdr,
                  body=random_body(rng, 0, payload_room))
        return "a", f, "looped", None
    if kind == 5:  # for the daemon: the member's MAC (and in load spreading a test address)
        if not spread:
            return "a", frame(MACS["a"], hdr=hdr, body=random_body(rng, 0, payload_room)), \
                "daemon", None
        if member == "a":
            body = ipv4(PEER4, TEST4_A, body=random_body(rng, 0, 200))
            return "a", frame(MACS["a"], ethertype=0x0800, body=body, hdr=hdr), "daemon", None
        body = ipv6(PEER6, TEST6_B, 17, random_body(rng, 0, 200))
        return "b", frame(MACS["b"], ethertype=0x86DD, body=body, hdr=hdr), "daemon", None
    if kind == 6 and spread:  # broadcasts from other hosts through a non-first member
        return "b", frame(BROADCAST, hdr=hdr, body=random_body(rng, 0, payload_room)), \
            "inactive", None
    if kind in (6, 7):  # broadcast or multicast from another host: delivered as is
        f = frame(rng.choice((BROADCAST, MCAST4, MCAST6)), hdr=hdr,
                  body=random_body(rng, 0, payload_room))
        return "a", f, "deliver", f
    body = random_body(rng, 0, payload_room)
    if not spread:
        f = frame(GROUP_MAC, hdr=hdr, body=body)
        return "a", f, "deliver", f
    f = frame(mac, hdr=hdr, ethertype=rng.choice((ETH_EXPERIMENTAL, 0x0800, 0x86DD)), body=body)
    if f[L3 - 2:L3] == b"\x08\x00" and len(f) >= L3 + 20 and member == "a":
        f = f[:L3 + 16] + PEER4 + f[L3 + 20:]  # not a's test address
    if f[L3 - 2:L3] == b"\x86\xdd" and len(f) >= L3 + 40 and member == "b":
        f = f[:L3 + 24] + PEER6 + f[L3 + 40:]  # not b's test address
    return member, f, "deliver", for_tap(f)


@pytest.mark.parametrize("seed", [1234, 5678])
def test_random_wire_mix_adds_up(rig: Rig, mode: str, seed: int) -> None:
    """Over a random mix of 3,000 frames on three members, with the TAP refusing writes now and
    then: exactly the wanted frames reach the TAP, in order; every other frame is counted once
    under the right reason; rx_packets + drops == frames; the table does not change."""
    rng = random.Random(seed)
    rig.set_mode(mode)
    rig.dp.max_frame = SMALL_BUF
    broken_tap, broken_peer = rig.pair()
    broken_peer.close()  # writes to broken_tap fail with ECONNREFUSED
    good_fd = rig.dp.tap_fd
    before = rig.table()
    expected: dict[tuple[str, str], int] = {}
    delivered: dict[str, int] = {}
    total = 0
    while total < 3000:
        chunk = [wire_mix(rng, mode) for _ in range(rng.randint(1, BATCH))]
        by_member: dict[str, list[tuple[str, bytes, str, bytes | None]]] = {}
        for case in chunk:
            by_member.setdefault(case[0], []).append(case)
        for member, cases in by_member.items():
            tap_fails = rng.random() < 0.1
            rig.dp.tap_fd = broken_tap.fileno() if tap_fails else good_fd
            rig.from_wire(member, [c[1] for c in cases])
            want = []
            for _, _, reason, out in cases:
                if reason == "deliver" and tap_fails:
                    reason = "tap_write"
                if reason == "deliver":
                    want.append(out)
                    delivered[member] = delivered.get(member, 0) + 1
                else:
                    expected[member, reason] = expected.get((member, reason), 0) + 1
            assert rig.to_tap() == want
            total += len(cases)
    assert rig.counted() == expected
    assert {n: p.rx_packets for n, p in rig.dp.ports.items() if p.rx_packets} == delivered
    assert rig.rx_packets() + sum(v for (_, r), v in rig.counted().items()
                                  if r in RX_REASONS) == total
    rig.dp.tap_fd = good_fd
    assert rig.table() == before
    c = rig.port("a").counters()
    assert c["rx_packets"] == rig.port("a").rx_packets
    assert c["rx_filtered"] + c["rx_dropped"] == sum(rig.port("a").drops.values())


@pytest.mark.parametrize("direction", ["wire", "tap"])
def test_one_callback_reads_at_most_a_batch(rig: Rig, mode: str, direction: str) -> None:
    """A flood does not stall the loop: one readiness callback handles BATCH frames, even when
    every one of them is dropped, and leaves the rest for the next turn."""
    rig.set_mode(mode)
    runts = [bytes(5)] * (BATCH * 2 + 10)
    if direction == "wire":
        for f in runts:
            rig.sim["a"].receive(f)
        rig.dp._on_member_ready(rig.port("a"))
        assert rig.counted() == {("a", "runt"): BATCH}
        rig.dp._on_member_ready(rig.port("a"))
        assert rig.counted() == {("a", "runt"): 2 * BATCH}
    else:
        for f in runts:
            rig.host.send(f)
        rig.dp._on_tap_ready()
        assert rig.counted() == {("tap", "runt"): BATCH}
        rig.dp._on_tap_ready()
        assert rig.counted() == {("tap", "runt"): 2 * BATCH}


# -- from the host (the TAP) ---------------------------------------------------------------------


def test_runts_from_the_tap_are_counted(rig: Rig, mode: str) -> None:
    """Frames shorter than the virtio-net header plus an Ethernet header go nowhere."""
    rig.set_mode(mode)
    frames = [bytes(n) for n in range(1, MIN_FRAME)] + [frame(BROADCAST)[:MIN_FRAME - 1]]
    rig.from_host(frames)
    assert rig.counted() == {("tap", "runt"): len(frames)}
    assert all(rig.on_wire(m) == [] for m in MACS)
    assert rig.tx_packets() == 0


def test_frames_with_no_member_are_counted(rig: Rig, mode: str) -> None:
    """With no usable member every frame from the host counts as "no_member"."""
    if mode == "active-backup":
        rig.dp.set_forwarding(None, set())
    else:
        rig.dp.set_spread((), {})
    frames = [frame(PEER_MAC, GROUP_MAC), frame(BROADCAST, GROUP_MAC),
              frame(BROADCAST, GROUP_MAC, 0x0806, arp(1, GROUP_MAC, DATA4_A, bytes(6), PEER4)),
              nd_frame(135, DATA6_B, PEER6)] * 20
    rig.from_host(frames)
    assert rig.counted() == {("tap", "no_member"): len(frames)}
    assert all(rig.on_wire(m) == [] for m in MACS)


def test_frames_from_an_invalid_source_are_counted_and_not_learned(rig: Rig, mode: str) -> None:
    """A frame from a multicast or all-zero source MAC (a raw socket on the TAP can write one;
    a bridge drops it) is dropped as "bad_source" and never learned as a guest."""
    rig.set_mode(mode)
    frames = [frame(PEER_MAC, BROADCAST), frame(PEER_MAC, bytes(6)),
              frame(BROADCAST, bytes.fromhex("0180c2000000"))]
    rig.from_host(frames)
    assert rig.counted() == {("tap", "bad_source"): len(frames)}
    assert all(rig.on_wire(m) == [] for m in MACS)
    assert len(rig.dp.guests) == 0


class UnreadableTap:
    """A TAP whose reads fail (the device went away under us)."""

    def readinto(self, _buf: bytearray) -> int:
        raise OSError(errno.EBADFD, "File descriptor in bad state")


@pytest.mark.parametrize("member", [True, False])
def test_tap_read_errors_are_counted(rig: Rig, mode: str, member: bool) -> None:
    """A failing read of the TAP counts once as "read_error" and ends the batch, whether or
    not a member is there to send to."""
    rig.set_mode(mode)
    if not member:
        rig.dp.set_forwarding(None, set())
    rig.dp.tap = cast(Any, UnreadableTap())
    rig.dp._on_tap_ready()
    assert rig.counted() == {("tap", "read_error"): 1}


def test_tap_reason_list_is_covered() -> None:
    """The TAP-side tests here exercise every reason a frame from the host can be dropped."""
    assert set(TAP_REASONS) == {"runt", "no_member", "bad_source", "read_error"}


TX_SCRIPT: list[tuple[int | None, str | None]] = [
    (errno.EMSGSIZE, "tx_oversize"), (None, None), (errno.EINVAL, "tx_invalid"),
    (errno.ENOBUFS, "tx_congested"), (None, None), (errno.ENXIO, "tx_error"),
    (errno.EFAULT, "tx_invalid"), (errno.EPROTO, "tx_invalid"), (errno.EAGAIN, "tx_congested"),
    (errno.ENETDOWN, "tx_error"), (errno.EBADF, "tx_error"), (None, None),
]


@pytest.mark.parametrize("err, reason", [(e, r) for e, r in TX_SCRIPT if e is not None]
                         + [(None, "tx_error"), (errno.EPERM, "tx_error")])
def test_tx_reason_names_the_kernels_verdict(err: int | None, reason: str) -> None:
    """Each errno a send can fail with maps to the documented TX drop reason."""
    assert tx_reason(err) == reason
    assert reason in TX_REASONS


#: Refusals every later frame of a batch would meet too: a transmit ring drops the rest of the
#: batch with them (vnicbond.datapath.txring).
STOPPING = ("tx_congested", "tx_error")


def test_send_errors_are_counted_and_the_batch_goes_on(mode: str) -> None:
    """Sends the kernel refuses count under their reason for the member that failed, and the
    frames after them in the same batch still go out, in order. A refusal that every later
    frame would meet too (ENOBUFS, EAGAIN, ENETDOWN, ENXIO, ...) drops the rest of its batch
    on a transmit ring, so here each of those ends a batch (test_datapath_rings checks what
    becomes of the frames behind one)."""
    rig = Rig()
    try:
        if mode == "active-backup":
            rig.set_mode(mode)
        else:
            rig.dp.set_spread(("a",), {})
        rig.sim["a"].tx_script = [e for e, _ in TX_SCRIPT]
        frames = [frame(PEER_MAC, GROUP_MAC, body=bytes((i,)) * 46) for i in range(len(TX_SCRIPT))]
        batches: list[list[bytes]] = [[]]
        for f, (_, reason) in zip(frames, TX_SCRIPT, strict=True):
            batches[-1].append(f)
            if reason in STOPPING:
                batches.append([])
        for batch in batches:
            for f in batch:
                rig.host.send(f)
            rig.dp._on_tap_ready()  # one batch
            rig.collect()
        expected: dict[tuple[str, str], int] = {}
        for _, reason in TX_SCRIPT:
            if reason is not None:
                expected["a", reason] = expected.get(("a", reason), 0) + 1
        assert rig.counted() == expected
        sent = [f for f, (e, _) in zip(frames, TX_SCRIPT, strict=True) if e is None]
        out = rig.on_wire("a")
        assert [o[MIN_FRAME:] for o in out] == [f[MIN_FRAME:] for f in sent]
        assert rig.port("a").tx_packets == len(sent)
        assert rig.port("a").tx_dropped == len(frames) - len(sent)
    finally:
        rig.close()


def test_a_member_that_always_refuses_does_not_stall_the_tap(mode: str) -> None:
    """Even when every send fails, one callback takes one batch and counts each frame."""
    rig = Rig()
    rig.sim["a"].tx_always = errno.ENOBUFS
    try:
        if mode == "active-backup":
            rig.set_mode(mode)
        else:
            rig.dp.set_spread(("a",), {})
        for _ in range(BATCH + 5):
            rig.host.send(frame(PEER_MAC, GROUP_MAC))
        rig.dp._on_tap_ready()
        assert rig.counted() == {("a", "tx_congested"): BATCH}
        rig.dp._on_tap_ready()
        assert rig.counted() == {("a", "tx_congested"): BATCH + 5}
    finally:
        rig.close()


def random_vnet(rng: random.Random, n: int) -> bytes:
    """A virtio-net header from a liar: any flags, any GSO type, sizes and offsets that are
    zero, huge, near the frame's length or random."""
    def u16() -> int:
        return rng.choice((0, 1, 2, 8, 20, 54, n - VNET_HDR_LEN, n, n + 1, 0xFFFF,
                           rng.randrange(0x10000), rng.randrange(max(n, 1))))

    gso = rng.choice((0, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_TCPV4 | GSO_ECN,
                      GSO_TCPV6 | GSO_ECN, GSO_UDP_L4 | GSO_ECN, rng.randrange(256)))
    flags = rng.choice((0, F_NEEDS_CSUM, 2, 3, rng.randrange(256)))
    return struct.pack("<BBHHHH", flags, gso, u16() & 0xFFFF, u16() & 0xFFFF, u16() & 0xFFFF,
                       u16() & 0xFFFF)


def test_wire_packets_survives_any_header() -> None:
    """For any header and length, the packet count is an int in [1, n] and no byte past the
    frame is read (the frame is passed at its exact length, so such a read would raise)."""
    rng = random.Random(1234)
    big = bytearray(rng.randbytes(BUFFER_SIZE))
    for case in range(10_000):
        if case % 4 == 0:
            n = rng.randint(VNET_HDR_LEN, 200)
        elif case % 4 == 1:
            n = rng.randint(MIN_FRAME, 3000)
        else:
            n = rng.randint(MIN_FRAME, BUFFER_SIZE)
        big[:VNET_HDR_LEN] = random_vnet(rng, n)
        if rng.random() < 0.5:  # a TCP data offset byte where csum_start says the header is
            start = big[6] | (big[7] << 8)
            if VNET_HDR_LEN + start + 12 < n:
                big[VNET_HDR_LEN + start + 12] = rng.randrange(256)
        buf = bytes(big[:n])
        result = wire_packets(buf, n)
        assert type(result) is int
        assert 1 <= result <= n, (buf[:VNET_HDR_LEN].hex(), n, result)


def test_wire_packets_of_a_gso_frame_with_a_zero_or_huge_gso_size() -> None:
    """gso_size 0 cannot divide anything (one packet); a gso_size above the payload is one;
    an absurdly small one (a lying header from the wire) counts as MIN_SEGMENT bytes."""
    body = bytes(3000)
    for gso_size, want in ((0, 1), (0xFFFF, 1), (1, -(-(3000 - 54) // MIN_SEGMENT)),
                           (MIN_SEGMENT - 1, -(-(3000 - 54) // MIN_SEGMENT)), (1448, 3)):
        hdr = vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, gso_size, 34, 16)
        buf = bytearray(hdr + body)
        buf[VNET_HDR_LEN + 34 + 12] = 5 << 4  # a 20-byte TCP header
        assert wire_packets(buf, len(buf)) == want


def test_lying_virtio_headers_from_the_tap_cross_untouched(rig: Rig, mode: str) -> None:
    """2,000 frames from the host with random virtio-net headers and contents: none raises,
    each leaves exactly one member with its header untouched, and tx_packets adds up to the
    packet counts of the frames sent."""
    rng = random.Random(1234)
    rig.set_mode(mode)
    before = rig.table()
    frames = []
    for _ in range(2000):
        body = random_body(rng, 0, 600)
        ethertype = rng.choice((0x0800, 0x86DD, 0x0806, ETH_EXPERIMENTAL, rng.randrange(1 << 16)))
        raw = frame(rng.choice((PEER_MAC, BROADCAST, MCAST6)), GROUP_MAC, ethertype, body)
        frames.append(random_vnet(rng, len(raw)) + raw[VNET_HDR_LEN:])
    rig.from_host(frames)
    out = [(m, o) for m in MACS for o in rig.on_wire(m)]
    assert rig.counted() == {}
    if mode == "active-backup":
        assert out == [("a", f) for f in frames]
    else:
        assert len(out) == len(frames)
        for member, o in out:
            assert o[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12] == MACS[member]
        # Outside ARP and IPv6 (whose link-layer addresses may be rewritten) only the source
        # MAC changes; everywhere the header and the length stay.
        assert sorted(unrewritten(o) for _, o in out) == sorted(unrewritten(f) for f in frames)
    assert rig.tx_packets() == sum(wire_packets(f, len(f)) for f in frames)
    assert rig.table() == before


def unrewritten(f: bytes) -> tuple[bytes, int, bytes]:
    """A frame from the host as load spreading may change it: its source MAC, and for ARP and
    IPv6 the link-layer addresses they carry (and a checksum)."""
    kind = f[L3 - 2:L3]
    rest = f[L3 - 2:] if kind not in (b"\x08\x06", b"\x86\xdd") else kind
    return f[:VNET_HDR_LEN + 6], len(f), rest


def test_random_bytes_from_the_wire_add_up(rig: Rig, mode: str) -> None:
    """3,000 frames of random bytes (any virtio-net header, any length up to the longest frame and
    past it) on random members: none raises, each reaches the TAP or is counted once, the
    packet counters match what the TAP got, and the table does not change."""
    rng = random.Random(1234)
    rig.set_mode(mode)
    rig.dp.max_frame = SMALL_BUF
    before = rig.table()
    total = 0
    for _ in range(60):
        member = rng.choice("abc")
        frames = []
        for _ in range(rng.randint(1, BATCH)):
            f = bytearray(rng.randbytes(rng.randrange(SMALL_BUF + 100)))
            if len(f) >= MIN_FRAME and rng.random() < 0.7:
                dst = rng.choice((GROUP_MAC, BROADCAST, MCAST6, OTHER_MAC, *MACS.values()))
                f[VNET_HDR_LEN:VNET_HDR_LEN + 6] = dst
            frames.append(bytes(f))
        rig.from_wire(member, frames)
        total += len(frames)
    tapped = rig.to_tap()
    dropped = sum(v for (_, r), v in rig.counted().items() if r in RX_REASONS)
    assert len(tapped) + dropped == total
    assert rig.rx_packets() == sum(wire_packets(f, len(f)) for f in tapped)
    assert rig.table() == before


# -- load spreading: ARP and neighbour discovery from the host -----------------------------------


def sent_by(rig: Rig) -> list[tuple[str, bytes]]:
    return [(m, o) for m in MACS for o in rig.on_wire(m)]


def test_arp_from_the_host_truncated_at_every_length(rig: Rig) -> None:
    """ARP from the host, cut at every length: a complete sender address picks the member
    hosting it (its MAC written as sender and source); shorter ones follow the flow hash.
    Every one leaves exactly one active member at its own length; nothing is counted."""
    rig.set_mode("load-spread")
    before = rig.table()
    for spa, host in ((DATA4_B, "b"), (DATA4_A, "a"), (PEER4, "a"), (bytes(4), "a")):
        full = frame(BROADCAST, GROUP_MAC, 0x0806, arp(1, GROUP_MAC, spa, bytes(6), PEER4))
        for f in [full[:n] for n in range(MIN_FRAME, len(full) + 1)] + [full + bytes(18)]:
            rig.from_host([f])
            [(member, out)] = sent_by(rig)
            assert len(out) == len(f)
            assert out[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12] == MACS[member]
            if len(f) >= L3 + 18:  # the sender protocol address is all there
                assert member == host
                assert out[L3 + 8:L3 + 14] == MACS[host]
                assert out[L3 + 14:] == f[L3 + 14:]
            else:
                assert member in ("a", "b")
                assert out[L3 - 2:] == f[L3 - 2:]
    assert rig.counted() == {}
    assert rig.table() == before


@pytest.mark.parametrize("kind, src, target, options, host, at", [
    (135, DATA6_B, PEER6, lladdr_option(1, GROUP_MAC), "b", 24),
    (135, DATA6_B, PEER6, bytes((14, 1)) + bytes(6) + lladdr_option(1, GROUP_MAC), "b", 32),
    (135, bytes(16), DATA6_B, b"", "b", None),  # duplicate address detection
    (136, DATA6_B, DATA6_B, lladdr_option(2, GROUP_MAC), "b", 24),
    (136, LINK_LOCAL, DATA6_B, lladdr_option(2, GROUP_MAC), "b", 24),
    (133, LINK_LOCAL, None, lladdr_option(1, GROUP_MAC), "a", 8),
    (135, LINK_LOCAL, PEER6, lladdr_option(1, GROUP_MAC), "a", 24),
])
@pytest.mark.parametrize("partial", [False, True])
def test_neighbor_discovery_from_the_host_carries_the_hosting_members_mac(
        rig: Rig, kind: int, src: bytes, target: bytes | None, options: bytes, host: str,
        at: int | None, partial: bool) -> None:
    """NS, NA and RS leave the member hosting the address they speak for, with that member's
    MAC in their link-layer address option and a checksum that is still right (left alone
    when the kernel is to finish it: NEEDS_CSUM)."""
    rig.set_mode("load-spread")
    hdr = vnet(F_NEEDS_CSUM, 0, 0, 0, L3 + 40 - VNET_HDR_LEN, 2) if partial else ZERO_VNET_HDR
    f = nd_frame(kind, src, target, options, hdr=hdr)
    rig.from_host([f])
    [(member, out)] = sent_by(rig)
    assert member == host
    assert len(out) == len(f)
    if at is not None:
        assert out[ICMP6 + at + 2:ICMP6 + at + 8] == MACS[host]
    if partial:
        assert out[ICMP6 + 2:ICMP6 + 4] == f[ICMP6 + 2:ICMP6 + 4]
    else:
        assert icmp6_checksum_ok(out)


def random_nd(rng: random.Random) -> tuple[bytes, bool, bytes]:
    """A neighbour-discovery frame from a lying host: options of length 0, running past the
    end, of any type; a ragged tail; a cut anywhere. Returns it, whether it is whole, and
    bytes to leave in the TAP buffer just past it (which must not be read)."""
    kind = rng.choice((133, 134, 135, 136))
    src = rng.choice((DATA6_B, LINK_LOCAL, bytes(16), PEER6))
    target = rng.choice((DATA6_B, PEER6, bytes(16), rng.randbytes(16)))
    options = b""
    for _ in range(rng.randrange(6)):
        units = rng.choice((0, 1, 1, 1, 2, 3, 255, rng.randrange(256)))
        content = GROUP_MAC if rng.random() < 0.6 else rng.randbytes(6)
        padding = rng.randbytes(max(0, min(units, 3) * 8 - 8))
        options += bytes((rng.choice((1, 2, 1, 2, 3, 5, 14, rng.randrange(256))), units))
        options += content + padding
    stale = rng.randbytes(8)
    if rng.random() < 0.3:  # a ragged tail: the start of an option the frame ends inside
        k = rng.randrange(6)
        options += bytes((rng.choice((1, 2)), 1)) + GROUP_MAC[:k]
        stale = GROUP_MAC[k:]  # what an earlier, longer frame left right after it
    hdr = vnet(rng.choice((0, F_NEEDS_CSUM)))
    f = nd_frame(kind, src, target, options, hdr=hdr)
    if rng.random() < 0.4:
        return f[:rng.randint(MIN_FRAME, len(f))], False, stale
    return f, True, stale


def only_lladdr_rewritten(inp: bytes, out: bytes, mac: bytes) -> bool:
    """Whether ``out`` is ``inp`` with the source MAC set to ``mac``, some copies of the TAP's
    MAC replaced by ``mac`` and the ICMPv6 checksum changed, and nothing else."""
    o = bytearray(out)
    o[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12] = inp[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12]
    if len(inp) >= ICMP6 + 4:
        o[ICMP6 + 2:ICMP6 + 4] = inp[ICMP6 + 2:ICMP6 + 4]
    at = o.find(mac)
    while at >= 0:
        if inp[at:at + 6] == GROUP_MAC:
            o[at:at + 6] = GROUP_MAC
        at = o.find(mac, at + 1)
    return bytes(o) == inp


def test_lying_neighbor_discovery_from_the_host(rig: Rig) -> None:
    """3,000 NS/NA/RS/RA frames with lying option lengths and cuts: none raises or loops
    (a deadline guards it), each leaves one member at its own length with only link-layer
    addresses, source MAC and checksum changed; a whole frame's checksum stays right, even
    when it ends inside an option that stale bytes past its end would complete."""
    rng = random.Random(1234)
    rig.set_mode("load-spread")
    before = rig.table()
    with deadline(5):
        for _ in range(3000):
            f, whole, stale = random_nd(rng)
            rig.dp._tap_buf[len(f):len(f) + len(stale)] = stale
            rig.from_host([f])
            [(member, out)] = sent_by(rig)
            assert len(out) == len(f)
            assert only_lladdr_rewritten(f, out, MACS[member]), (f.hex(), out.hex())
            if whole and not f[0] & F_NEEDS_CSUM:
                assert icmp6_checksum_ok(out), f.hex()
    assert rig.counted() == {}
    assert rig.table() == before


def test_neighbor_discovery_parser_stays_inside_the_frame(rig: Rig) -> None:
    """neighbor_discovery on random buffers of their exact length (a read past the end would
    raise): it always ends, returns an active member, and never resizes the buffer."""
    rng = random.Random(1234)
    rig.set_mode("load-spread")
    active = {rig.port("a"), rig.port("b")}
    with deadline(5):
        for _ in range(5000):
            n = rng.randint(ICMP6 + 8, ICMP6 + 120)
            buf = bytearray(rng.randbytes(n))
            buf[0] = rng.choice((0, 1))
            buf[ICMP6] = rng.randint(133, 136)
            for _ in range(rng.randrange(4)):  # plant the TAP's MAC where an option might be
                at = rng.randrange(ICMP6 + 8, n + 1)
                buf[at:at + 8] = (bytes((rng.choice((1, 2)), rng.choice((0, 1, 1, 2))))
                                  + GROUP_MAC)[:n - at]
            port = neighbor_discovery(buf, n, rig.dp.host_ports, rig.dp.first_port, GROUP_MAC)
            assert port in active
            assert len(buf) == n


def test_truncated_neighbor_advertisement_is_routed_by_its_own_bytes(rig: Rig) -> None:
    """An NA too short to hold its target must go the same way whatever frame came before it."""
    rig.set_mode("load-spread")
    whole = nd_frame(136, DATA6_B, DATA6_B, lladdr_option(2, GROUP_MAC))
    cut = whole[:ICMP6 + 8]  # ICMPv6 header and flags; no target
    rig.from_host([cut])
    first = [m for m, _ in sent_by(rig)]
    rig.from_host([whole])  # leaves DATA6_B (hosted on b) where the cut NA's target would be
    assert [m for m, _ in sent_by(rig)] == ["b"]
    rig.from_host([cut])
    assert [m for m, _ in sent_by(rig)] == first


def test_router_advertisement_from_the_host_carries_the_members_mac(rig: Rig) -> None:
    """An RA (the host routing) is rewritten like an RS: its source link-layer address option
    names the member it leaves through, with the checksum fixed."""
    rig.set_mode("load-spread")
    mtu = bytes((5, 1, 0, 0)) + (1500).to_bytes(4, "big")
    f = nd_frame(134, LINK_LOCAL, options=lladdr_option(1, GROUP_MAC) + mtu)
    rig.from_host([f])
    [(member, out)] = sent_by(rig)
    assert out[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12] == MACS[member]
    assert out[ICMP6 + 16 + 2:ICMP6 + 16 + 8] == MACS[member]
    assert icmp6_checksum_ok(out)


# -- a member's NIC goes away and comes back -----------------------------------------------------


def run_loop(rig: Rig) -> None:
    """Let the event loop poll the sockets and run the datapath's readers (reading what reaches
    the host meanwhile, so that a long run does not fill its socket)."""
    rig.loop.add_reader(rig.host.fileno(), lambda: rig.tapped.extend(drain(rig.host)))
    try:
        rig.loop.run_until_complete(asyncio.sleep(0.02))
    finally:
        rig.loop.remove_reader(rig.host.fileno())


def test_detach_stops_reading_and_attach_carries_on_with_the_counters(rig: Rig,
                                                                       mode: str) -> None:
    """After detach the member's socket is not read (its frames stay in its ring); after
    attach frames flow through the new socket, rings and MAC, the old ones are left alone, and
    the counters go on from where they were."""
    rig.set_mode(mode)
    rig.dp.start()
    spread = mode == "load-spread"
    to_host = frame(BROADCAST, GROUP_MAC, 0x0806, arp(1, GROUP_MAC, DATA4_A, bytes(6), PEER4))

    def to_member(mac: bytes, tag: int) -> bytes:
        return frame(mac if spread else GROUP_MAC, body=bytes((tag,)) * 46)

    old = rig.sim["a"]
    old.receive(to_member(MACS["a"], 1))
    rig.host.send(to_host)
    run_loop(rig)
    assert len(rig.to_tap()) == 1
    assert len(rig.on_wire("a")) == 1
    port = rig.port("a")
    assert (port.rx_packets, port.tx_packets) == (1, 1)

    rig.dp.detach("a")
    old.rings.close()  # as the member does: raises if the datapath kept a view of them
    old.receive(to_member(MACS["a"], 2))
    run_loop(rig)
    assert rig.to_tap() == []
    assert port.rx_packets == 1
    assert [f[-1] for f in old.unread()] == [2]  # still in the ring: nobody read it

    new = rig.sim["a"] = rig.new_sim()
    rig.dp.attach("a", cast(socket.socket, new), new.rings, NEW_MAC)
    assert port.mac == NEW_MAC
    assert NEW_MAC in rig.dp.own_macs and MACS["a"] not in rig.dp.own_macs
    new.receive(to_member(NEW_MAC, 3))
    old.receive(to_member(MACS["a"], 4))
    rig.host.send(to_host)
    run_loop(rig)
    tapped = rig.to_tap()
    assert [t[-1] for t in tapped] == [3]
    assert [f[-1] for f in old.unread()] == [2, 4]  # the old socket is not read any more
    out = rig.on_wire("a")
    assert len(out) == 1
    assert old.transmitted == []
    if spread:
        assert out[0][VNET_HDR_LEN + 6:VNET_HDR_LEN + 12] == NEW_MAC
        assert out[0][L3 + 8:L3 + 14] == NEW_MAC
    assert (port.rx_packets, port.tx_packets) == (2, 2)
    if spread:  # the old MAC is no longer the member's
        new.receive(to_member(MACS["a"], 5))
        run_loop(rig)
        assert rig.to_tap() == []
        assert rig.counted() == {("a", "foreign"): 1}
    else:
        assert rig.counted() == {}
    rig.dp.stop()


def test_sends_through_a_detached_closed_member_are_counted(rig: Rig, mode: str) -> None:
    """Between detach (the NIC went, its socket and rings closed) and the table naming another
    member, frames for it are counted as tx_error, not raised, and the batch goes on."""
    rig.set_mode(mode)
    rig.dp.detach("a")
    rig.sim["a"].rings.close()
    rig.sim["a"].close()
    frames = [frame(BROADCAST, GROUP_MAC, 0x0806, arp(1, GROUP_MAC, DATA4_A, bytes(6), PEER4))]
    rig.from_host(frames * 5)
    assert rig.counted() == {("a", "tx_error"): 5}
    assert rig.port("a").tx_packets == 0
