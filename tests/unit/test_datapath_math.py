"""Unit tests for the datapath's packet accounting: ``wire_packets`` and ``Port.counters``.

A GSO super-frame of ``hdr_len`` header bytes and N payload bytes leaves the NIC as
ceil(N / gso_size) segments; anything else is one packet.
"""

from __future__ import annotations

import math
import socket

import pytest

from vnicbond.datapath import RX_REASONS, TX_REASONS, Port, wire_packets
from vnicbond.wire.vnet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
    VnetHeader,
    build_vnet,
)

MSS = 1448
HDR_LEN = 66  # Ethernet 14 + IPv4 20 + TCP 32 (timestamps)


def gso_frame(payload: int, gso_type: int = GSO_TCPV4, gso_size: int = MSS,
              hdr_len: int = HDR_LEN) -> bytearray:
    hdr = VnetHeader(flags=F_NEEDS_CSUM, gso_type=gso_type, hdr_len=hdr_len,
                     gso_size=gso_size, csum_start=34, csum_offset=16)
    frame = bytearray(build_vnet(hdr) + bytes(hdr_len + payload))
    # The TCP header (at csum_start) says its own length: 32 bytes, data offset 8 words.
    frame[VNET_HDR_LEN + 34 + 12] = 8 << 4
    return frame


@pytest.mark.parametrize("size", [60, 1514, 9014])
def test_non_gso_frame_is_one_packet(size: int) -> None:
    buf = bytearray(ZERO_VNET_HDR + bytes(size))
    assert wire_packets(buf, len(buf)) == 1


def test_non_gso_frame_with_checksum_offload_is_one_packet() -> None:
    # gso_size/hdr_len may carry hints even without GSO: only gso_type decides.
    hdr = VnetHeader(flags=F_NEEDS_CSUM, gso_type=GSO_NONE, hdr_len=HDR_LEN, gso_size=MSS)
    buf = bytearray(build_vnet(hdr) + bytes(HDR_LEN + 10 * MSS))
    assert wire_packets(buf, len(buf)) == 1


@pytest.mark.parametrize("payload", [1, 100, MSS - 1, MSS, MSS + 1, 2 * MSS, 2 * MSS + 1,
                                     10 * MSS, 45 * MSS - 5, 65535 - HDR_LEN])
def test_tcpv4_gso_frame_becomes_ceil_payload_over_gso_size(payload: int) -> None:
    buf = gso_frame(payload)
    n = VNET_HDR_LEN + HDR_LEN + payload
    assert len(buf) == n
    assert wire_packets(buf, n) == math.ceil(payload / MSS)


def test_only_the_first_n_bytes_count() -> None:
    # The datapath reads into one big reusable buffer: n, not len(buf), is the frame.
    buf = bytearray(65 * 1024)
    buf[:VNET_HDR_LEN] = build_vnet(VnetHeader(gso_type=GSO_TCPV4, hdr_len=HDR_LEN,
                                                gso_size=MSS))
    n = VNET_HDR_LEN + HDR_LEN + 3 * MSS
    assert wire_packets(buf, n) == 3


@pytest.mark.parametrize("gso_type", [GSO_TCPV6, GSO_UDP_L4, GSO_TCPV4 | GSO_ECN])
def test_other_gso_types_segment_the_same_way(gso_type: int) -> None:
    buf = gso_frame(5 * MSS + 1, gso_type=gso_type)
    assert wire_packets(buf, len(buf)) == 6


def test_gso_size_above_255_uses_both_bytes() -> None:
    # gso_size 0x0105 = 261: a reader that took one byte would see 5 or 1.
    buf = gso_frame(2610, gso_size=0x0105)
    assert wire_packets(buf, len(buf)) == 10


def test_gso_size_zero_is_one_packet() -> None:
    buf = gso_frame(10 * MSS, gso_size=0)
    assert wire_packets(buf, len(buf)) == 1


def test_gso_frame_without_payload_is_one_packet() -> None:
    buf = gso_frame(0)
    assert wire_packets(buf, len(buf)) == 1


def test_port_counters_start_at_zero_and_report_every_counter() -> None:
    a, b = socket.socketpair()
    try:
        port = Port("eth0", a)
        zero = dict.fromkeys(RX_REASONS + TX_REASONS, 0)
        assert port.counters() == {
            "tx_packets": 0, "rx_packets": 0, "tx_bytes": 0, "rx_bytes": 0,
            "tx_dropped": 0, "rx_dropped": 0, "rx_filtered": 0, "drops": zero}
        port.tx_packets, port.rx_packets = 1, 2
        port.tx_bytes, port.rx_bytes = 3, 4
        port.drops.update(tx_invalid=2, tx_oversize=3, runt=1, oversize=5, foreign=7, inactive=1)
        counters = port.counters()
        assert counters == {
            "tx_packets": 1, "rx_packets": 2, "tx_bytes": 3, "rx_bytes": 4,
            "tx_dropped": 5, "rx_dropped": 6, "rx_filtered": 8,
            "drops": {**zero, "tx_invalid": 2, "tx_oversize": 3, "runt": 1, "oversize": 5,
                      "foreign": 7, "inactive": 1}}
        port.drops["runt"] += 1
        assert counters["drops"]["runt"] == 1
        # A copy, not a live view.
        snapshot = port.counters()
        port.tx_packets += 10
        assert snapshot["tx_packets"] == 1
    finally:
        a.close()
        b.close()


def tcp_super_frame(hdr_len: int, segments: int) -> bytearray:
    """A real TCPv4 super-frame: Ethernet 14 + IPv4 20 + TCP 32 (data offset 8 words)."""
    eth = bytes(12) + b"\x08\x00"
    ip = bytes([0x45]) + bytes(19)
    tcp = bytes(12) + bytes([8 << 4]) + bytes(19)
    hdr = VnetHeader(flags=F_NEEDS_CSUM, gso_type=GSO_TCPV4, hdr_len=hdr_len, gso_size=MSS,
                     csum_start=34, csum_offset=16)
    return bytearray(build_vnet(hdr) + eth + ip + tcp + bytes(segments * MSS))


@pytest.mark.parametrize("hdr_len", [0, HDR_LEN + MSS], ids=["hdr_len-0", "headlen-with-payload"])
def test_segments_follow_the_real_headers_not_the_hdr_len_hint(hdr_len: int) -> None:
    buf = tcp_super_frame(hdr_len, segments=3)
    assert wire_packets(buf, len(buf)) == 3
