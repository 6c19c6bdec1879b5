"""Flow hashing for load spreading: stable flows, minimal moves, an even spread."""

from __future__ import annotations

import functools
import random
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Ether

from vnicbond.datapath.flowhash import FlowTable, flow_hash, flow_key

FLOWS = 10_000


TEMPLATE = bytes(Ether() / IP(src="198.18.0.1", dst="198.19.0.1") / TCP(sport=1, dport=443))


@functools.cache
def synthetic_flows(n: int = FLOWS, seed: int = 1) -> list[int]:
    """Hashes of n distinct TCP flows from many clients to one server (scapy's frame, with the
    client address and port patched in: building 10,000 frames with scapy takes seconds)."""
    rng = random.Random(seed)
    hashes = set()
    frame = bytearray(TEMPLATE)
    while len(hashes) < n:
        frame[26:30] = bytes((198, 18, rng.randrange(256), rng.randrange(1, 255)))
        frame[34:36] = rng.randrange(1024, 65536).to_bytes(2, "big")
        hashes.add(flow_hash(frame))
    return sorted(hashes)


def assignment(table: FlowTable, flows: list[int]) -> list[str | None]:
    return [table.member_for(h) for h in flows]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_losing_a_member_moves_only_its_flows_and_its_return_moves_about_one_nth(n):
    members = [f"m{i}" for i in range(n)]
    flows = synthetic_flows()
    table = FlowTable()
    table.set_members(members)
    before = assignment(table, flows)
    for lost in members:
        table.set_members([m for m in members if m != lost])
        during = assignment(table, flows)
        for b, d in zip(before, during, strict=True):
            if b != lost:
                assert d == b  # a flow that was not on the lost member stays put
            else:
                assert d != lost and d is not None
        table.set_members(members)
        after = assignment(table, flows)
        moved_back = sum(d != a for d, a in zip(during, after, strict=True))
        assert moved_back <= (1 / n + 0.05) * FLOWS
        assert after == before  # the return restores the original placement exactly


@pytest.mark.parametrize("n", [2, 3, 4])
def test_the_spread_is_within_ten_percent_of_even(n):
    table = FlowTable()
    table.set_members([f"m{i}" for i in range(n)])
    counts = Counter(assignment(table, synthetic_flows(seed=n)))
    even = FLOWS / n
    assert set(counts) == {f"m{i}" for i in range(n)}
    for member, count in counts.items():
        assert abs(count - even) <= 0.10 * even, (member, count, even)


def test_no_members_means_no_member():
    table = FlowTable()
    assert table.set_members([]) == 0
    assert table.member_for(12345) is None
    assert table.set_members(["m0"]) == len(table.table)
    assert table.member_for(12345) == "m0"


def test_bucket_count_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        FlowTable(1000)


def test_a_flow_keeps_its_key_whatever_the_payload():
    a = Ether() / IP(src="198.18.0.10", dst="198.18.0.2") / TCP(sport=40000, dport=5201)
    assert flow_key(bytes(a / b"x")) == flow_key(bytes(a / (b"y" * 1400)))
    other_port = Ether() / IP(src="198.18.0.10", dst="198.18.0.2") / TCP(sport=40001, dport=5201)
    assert flow_key(bytes(a)) != flow_key(bytes(other_port))
    udp = Ether() / IP(src="198.18.0.10", dst="198.18.0.2") / UDP(sport=40000, dport=5201)
    assert flow_key(bytes(a)) != flow_key(bytes(udp))


def test_fragments_of_one_datagram_share_a_key():
    big = IP(src="198.18.0.10", dst="198.18.0.2", id=7) / UDP(sport=1, dport=2) / (b"z" * 3000)
    from scapy.layers.inet import fragment

    keys = {flow_key(bytes(Ether() / f)) for f in fragment(big, fragsize=1000)}
    assert len(keys) == 1


def test_ipv6_with_extension_headers_hashes_on_addresses():
    plain = Ether() / IPv6(src="2001:db8::10", dst="2001:db8::2") / TCP(sport=1, dport=2)
    ext = (Ether() / IPv6(src="2001:db8::10", dst="2001:db8::2") / IPv6ExtHdrHopByHop()
           / TCP(sport=1, dport=2))
    assert flow_key(bytes(ext)) == bytes(ext)[14 + 8:14 + 40]
    assert flow_key(bytes(plain)) != flow_key(bytes(ext))


def test_non_ip_hashes_on_mac_addresses_and_offsets_are_honoured():
    arp = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP())
    assert flow_key(arp) == arp[:12]
    prefixed = bytes(10) + arp  # behind a virtio-net header
    assert flow_hash(prefixed, 10) == flow_hash(arp)


@pytest.mark.parametrize("length", range(0, 60, 3))
def test_truncated_frames_never_raise(length):
    frame = bytes(Ether() / IP() / TCP())[:length]
    assert isinstance(flow_hash(frame), int)
