"""Property and fuzz tests: hostile frames against the parsers, the flow hash and the prober
(issue 6). Every generator is seeded (``random.Random(1234)``), so a failure reproduces.

What they protect:

- :func:`vnicbond.wire.probe.parse_control` never raises, refuses frames cut short at any
  length, ignores Ethernet padding, and refuses any single-byte change that a checksum or a
  fixed field (hop limit, ARP hardware/protocol types) covers.
- :func:`vnicbond.datapath.flowhash.flow_key` never raises and depends only on the bytes of
  the frame it is given (``buf[start:end]``), whatever the IPv4 header length or IPv6 next
  header says.
- :meth:`vnicbond.core.prober.Prober.receive` counts a reply only for a correctly matching echo
  reply (or, probing by ARP, the answer to the last request): a change to any byte of the
  token, sequence number, identifier, destination MAC or destination address makes it count
  for nothing, and so does a forged source or any other ICMP type or code; an ARP request or
  neighbour solicitation for a test address gets at most one answer.
- :class:`vnicbond.core.prober.TokenBucket` answers at most ``burst + rate * t`` requests in ``t``
  seconds, and counts every other one as dropped.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import zlib
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from tests.unit.conftest import deadline
from vnicbond.core.prober import ARP, ICMP, TOKEN_LEN, Prober, ProbingMember, Received, TokenBucket
from vnicbond.core.targets import TEST, Source
from vnicbond.datapath.flowhash import flow_hash, flow_key
from vnicbond.wire import probe as wire
from vnicbond.wire.probe import (
    Arp,
    EchoReply,
    NeighborAdvertisement,
    NeighborSolicitation,
    parse_control,
)


def _member(name: str, mac: bytes, test_ip: object, targets: tuple) -> ProbingMember:
    """A member probing from its test address, as before probing without them."""
    return ProbingMember(name, mac, (Source(test_ip, mac, TEST),), targets)  # type: ignore[arg-type]

CONTROL_TYPES = (Arp, EchoReply, NeighborSolicitation, NeighborAdvertisement)

# -- the cast ------------------------------------------------------------------------------------

MAC4 = bytes.fromhex("02000000a001")  # member "v4", IPv4 test address
MAC6 = bytes.fromhex("02000000b001")  # member "v6", IPv6 test address
TARGET_MAC = bytes.fromhex("021111111111")
ASKER_MAC = bytes.fromhex("025555555555")
EVIL_MAC = bytes.fromhex("026666666666")
BROADCAST = b"\xff" * 6

TEST4 = IPv4Address("198.18.0.11")
TARGETS4 = (IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"))
ASKER4 = IPv4Address("198.18.0.50")
TEST6 = IPv6Address("2001:db8::11")
TARGETS6 = (IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"))
ASKER6 = IPv6Address("2001:db8::50")

TOKEN = bytes.fromhex("a1b2c3d4e5f60718")
IDENT = 0x4D2B
SEQ = 0x0107

ETH_HLEN = 14
CASES = 5000


@pytest.fixture(autouse=True)
def no_endless_loop() -> Iterator[None]:
    """Every test here must end: a parser that loops forever fails the test, not the run."""
    with deadline(10):
        yield


def make_prober(method: str = ICMP) -> Prober:
    return Prober(method, [_member("v4", MAC4, TEST4, TARGETS4),
                           _member("v6", MAC6, TEST6, TARGETS6)], token=TOKEN, ident=IDENT)


# -- frames --------------------------------------------------------------------------------------


def checksum(data: bytes | bytearray) -> int:
    """The Internet checksum of ``data`` (0 when ``data`` already holds a correct one)."""
    data = bytes(data) + b"\x00" * (len(data) & 1)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def fix_checksums(frame: bytes | bytearray) -> bytes:
    """Recompute the IPv4 header and ICMP, or the ICMPv6, checksums of an echo frame."""
    f = bytearray(frame)
    if f[12:14] == b"\x08\x00":
        ihl = (f[14] & 0x0F) * 4
        f[24:26] = b"\x00\x00"
        f[24:26] = checksum(f[14:14 + ihl]).to_bytes(2, "big")
        total = int.from_bytes(f[16:18], "big")
        start = 14 + ihl
        f[start + 2:start + 4] = b"\x00\x00"
        f[start + 2:start + 4] = checksum(f[start:14 + total]).to_bytes(2, "big")
    else:
        length = int.from_bytes(f[18:20], "big")
        pseudo = bytes(f[22:54]) + struct.pack("!I3xB", length, 58)
        f[56:58] = b"\x00\x00"
        f[56:58] = checksum(pseudo + f[54:54 + length]).to_bytes(2, "big")
    return bytes(f)


def icmp_offset(frame: bytes) -> int:
    return 34 if frame[12:14] == b"\x08\x00" else 54


def echo_reply(family: int, seq: int = SEQ, *, src: object = None, icmp_type: int | None = None,
               code: int = 0, tail: bytes = b"") -> bytes:
    """A target's echo reply to a member's probe, built by the wire module's echo-request
    builder with the type (and code) changed and the checksums recomputed."""
    if family == 4:
        member_mac, test, targets, reply = MAC4, TEST4, TARGETS4, wire.ICMP_ECHO_REPLY
    else:
        member_mac, test, targets, reply = MAC6, TEST6, TARGETS6, wire.ICMPV6_ECHO_REPLY
    frame = bytearray(wire.icmp_echo_request(
        TARGET_MAC, member_mac, targets[0] if src is None else src, test, IDENT, seq,
        TOKEN + struct.pack("!H", seq) + tail))
    at = icmp_offset(bytes(frame))
    frame[at] = reply if icmp_type is None else icmp_type
    frame[at + 1] = code
    return fix_checksums(frame)


def valid_frames() -> dict[str, bytes]:
    """One well-formed frame of each kind parse_control understands."""
    return {
        "arp_request": wire.arp_request(ASKER_MAC, ASKER4, TEST4),
        "arp_reply": wire.arp_reply(TARGET_MAC, TARGETS4[0], MAC4, TEST4),
        "echo4": echo_reply(4),
        "echo6": echo_reply(6),
        # Zeros at the end: cutting them leaves the checksum right, so only lengths can tell.
        "echo4_zeros": echo_reply(4, tail=bytes(8)),
        "echo6_zeros": echo_reply(6, tail=bytes(8)),
        "ns": wire.neighbor_solicitation(ASKER_MAC, ASKER6, TEST6),
        "dad": wire.neighbor_solicitation(ASKER_MAC, IPv6Address("::"), TEST6),
        "na": wire.neighbor_advertisement(TARGET_MAC, TARGETS6[0], MAC6, TEST6),
    }


VALID = valid_frames()
KINDS = {"arp_request": Arp, "arp_reply": Arp, "echo4": EchoReply, "echo6": EchoReply,
         "echo4_zeros": EchoReply, "echo6_zeros": EchoReply,
         "ns": NeighborSolicitation, "dad": NeighborSolicitation, "na": NeighborAdvertisement}


def protected(kind: str, frame: bytes) -> set[int]:
    """Byte positions where any change must make parse_control refuse the frame: those under
    a checksum, the ethertype, and the fields it must check (ARP types, ND hop limit)."""
    n = len(frame)
    if kind.startswith("arp"):
        return set(range(12, 20))  # ethertype, hardware and protocol type and length
    if kind.startswith("echo4"):
        return set(range(12, n))  # the IPv4 header checksum, then the ICMP checksum
    positions = {12, 13, 20, *range(22, n)}  # next header, pseudo-header and message
    if not kind.startswith("echo6"):
        positions.add(21)  # neighbour discovery insists on hop limit 255
    return positions


def mutations(rng: random.Random, value: int) -> Iterator[int]:
    """Different byte values to put in place of ``value``."""
    seen = {value}
    for v in (value ^ 0x01, value ^ 0x80, value ^ 0xFF, *(rng.randrange(256) for _ in range(3))):
        if v not in seen:
            seen.add(v)
            yield v


# -- (a) parse_control ---------------------------------------------------------------------------


def test_parse_control_never_raises_on_random_bytes() -> None:
    """Random bytes of length 0..200, bare or behind a plausible Ethernet and IP start, give
    None or a control frame, never an exception."""
    rng = random.Random(1234)
    for case in range(2 * CASES):
        data = bytearray(rng.randbytes(rng.randint(0, 200)))
        if case % 2 and len(data) >= ETH_HLEN + 1:
            ethertype = rng.choice((wire.ETH_P_ARP, wire.ETH_P_IP, wire.ETH_P_IPV6))
            data[12:14] = ethertype.to_bytes(2, "big")
            data[14] = (0x45 if ethertype == wire.ETH_P_IP else 0x60) | rng.randrange(16)
            if ethertype == wire.ETH_P_IPV6 and len(data) > 21:
                data[20] = 58
                data[21] = rng.choice((64, 255))
        result = parse_control(bytes(data))
        assert result is None or isinstance(result, CONTROL_TYPES)
        assert parse_control(bytearray(data)) == result
        assert parse_control(memoryview(bytes(data))) == result


def test_valid_control_frames_parse() -> None:
    """The frames the fuzzing starts from are understood (so a refusal below means something)."""
    parsed = {k: parse_control(f) for k, f in VALID.items()}
    for kind, result in parsed.items():
        assert isinstance(result, KINDS[kind]), kind
    echo4 = parsed["echo4"]
    assert isinstance(echo4, EchoReply)
    assert (echo4.src_ip, echo4.dst_ip, echo4.ident, echo4.seq) == (TARGETS4[0], TEST4, IDENT, SEQ)
    assert echo4.payload == TOKEN + struct.pack("!H", SEQ)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_control_frames_cut_short_are_refused_at_every_length(kind: str) -> None:
    """A frame cut anywhere before its end is refused: lengths must add up."""
    frame = VALID[kind]
    for cut in range(len(frame)):
        assert parse_control(frame[:cut]) is None, (kind, cut)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_trailing_garbage_is_padding(kind: str) -> None:
    """Bytes after the frame's own length (Ethernet padding, or garbage) change nothing."""
    rng = random.Random(1234)
    frame = VALID[kind]
    want = parse_control(frame)
    for _ in range(300):
        assert parse_control(frame + rng.randbytes(rng.randint(1, 100))) == want


@pytest.mark.parametrize("kind", sorted(VALID))
def test_single_byte_mutations(kind: str) -> None:
    """Every byte of a valid frame changed to several values: never an exception; a change
    under a checksum or in a field that must be checked is refused; a change of a MAC address
    is read into exactly that field."""
    rng = random.Random(1234)
    frame = VALID[kind]
    original = parse_control(frame)
    assert original is not None
    must_refuse = protected(kind, frame)
    for at in range(len(frame)):
        for value in mutations(rng, frame[at]):
            mutated = frame[:at] + bytes((value,)) + frame[at + 1:]
            result = parse_control(mutated)
            assert result is None or isinstance(result, CONTROL_TYPES)
            if at in must_refuse:
                assert result is None, (kind, at, value)
            elif at < 12:
                assert result == dataclasses.replace(original, dst_mac=mutated[0:6],
                                                     src_mac=mutated[6:12])
            elif kind.startswith("arp") and at in (20, 21):
                assert (result is None) == (mutated[20:22] not in (b"\x00\x01", b"\x00\x02"))


def nd_message(kind: int, options: bytes) -> bytes:
    """An NS from ASKER6 for TEST6, or an NA of TARGETS6[0] to TEST6, with ``options``."""
    if kind == wire.ND_NEIGHBOR_SOLICIT:
        src, dst_ip = ASKER6, wire.solicited_node(TEST6)[0]
        body = struct.pack("!BBHB3x16s", kind, 0, 0, 0, TEST6.packed)
        src_mac, dst_mac = ASKER_MAC, wire.solicited_node(TEST6)[1]
    else:
        src, dst_ip = TARGETS6[0], TEST6
        body = struct.pack("!BBHB3x16s", kind, 0, 0, 0x60, TARGETS6[0].packed)
        src_mac, dst_mac = TARGET_MAC, MAC6
    message = body + options
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(message), 58, 255, src.packed, dst_ip.packed)
    return fix_checksums(dst_mac + src_mac + b"\x86\xdd" + ip + message)


def test_neighbor_discovery_options_of_any_shape() -> None:
    """NS and NA with well-formed option lists give the first link-layer address option of
    their kind (or none); one bad option (length 0, running past the end, a link-layer option
    that is not 8 bytes, a ragged tail) makes the message refused. Checksums are right, so
    only the options decide."""
    rng = random.Random(1234)
    for case in range(CASES):
        kind = rng.choice((wire.ND_NEIGHBOR_SOLICIT, wire.ND_NEIGHBOR_ADVERT))
        wanted = 1 if kind == wire.ND_NEIGHBOR_SOLICIT else 2
        options, first = [], None
        for _ in range(rng.randrange(5)):
            if rng.random() < 0.5:
                mac = rng.randbytes(6)
                options.append(bytes((wanted, 1)) + mac)
                first = first or mac
            else:
                kind_ = rng.choice((3, 5, 14, 3 - wanted, rng.randrange(3, 256)))
                units = rng.randint(1, 3)
                options.append(bytes((kind_, units)) + rng.randbytes(units * 8 - 2))
        defect = case % 5
        if defect == 1:  # an option of length 0 somewhere
            options.insert(rng.randrange(len(options) + 1), bytes((rng.randrange(256), 0, 0, 0)))
        elif defect == 2:  # the last option runs past the end
            units = rng.randint(2, 255)
            options.append(bytes((rng.randrange(256), units))
                           + rng.randbytes(rng.randrange(units * 8 - 2)))
        elif defect == 3:  # a link-layer address option of the wanted kind, not 8 bytes
            units = rng.randint(2, 3)
            options.insert(rng.randrange(len(options) + 1),
                           bytes((wanted, units)) + rng.randbytes(units * 8 - 2))
        elif defect == 4:  # a ragged tail shorter than an option header
            options.append(rng.randbytes(1))
        frame = nd_message(kind, b"".join(options))
        result = parse_control(frame)
        if defect:
            assert result is None, (case, frame.hex())
        elif kind == wire.ND_NEIGHBOR_SOLICIT:
            assert isinstance(result, NeighborSolicitation), frame.hex()
            assert result.source_lladdr == first
        else:
            assert isinstance(result, NeighborAdvertisement), frame.hex()
            assert result.target_lladdr == first


# -- (b) flow hashing ----------------------------------------------------------------------------


def random_l2_frame(rng: random.Random) -> bytes:
    """An Ethernet frame of any kind, often lying: IPv4 with any header length, fragment bits
    and protocol; IPv6 with any next header; cut anywhere."""
    eth = rng.randbytes(12)
    choice = rng.randrange(5)
    if choice == 0:
        ethertype = 0x0800
        ihl = rng.choice((0, 1, 4, 5, 5, 5, 6, 15, rng.randrange(16)))
        body = bytearray(rng.randbytes(rng.randint(0, 80)))
        if len(body) >= 10:
            body[0] = (4 << 4) | ihl
            body[6] = rng.choice((0, 0, 0x20, 0x40, rng.randrange(256)))
            body[7] = rng.choice((0, 0, rng.randrange(256)))
            body[9] = rng.choice((6, 17, 6, 17, 1, 47, rng.randrange(256)))
    elif choice == 1:
        ethertype = 0x86DD
        body = bytearray(rng.randbytes(rng.randint(0, 90)))
        if len(body) >= 7:
            body[0] = 0x60
            body[6] = rng.choice((6, 17, 0, 43, 44, 58, 59, rng.randrange(256)))
    else:
        ethertype = rng.choice((0x0806, 0x8100, 0x88B5, rng.randrange(1 << 16)))
        body = bytearray(rng.randbytes(rng.randint(0, 60)))
    frame = eth + ethertype.to_bytes(2, "big") + bytes(body)
    return frame[:rng.randint(0, len(frame))] if rng.random() < 0.3 else frame


def test_flow_key_depends_only_on_the_frame_it_is_given() -> None:
    """A frame placed at any offset inside random garbage has the key and hash it has alone,
    and new garbage around it changes neither; nothing raises."""
    rng = random.Random(1234)
    for _ in range(CASES):
        frame = random_l2_frame(rng)
        alone = flow_key(frame)
        assert flow_hash(frame) == zlib.crc32(alone)
        start = rng.randint(0, 40)
        end = start + len(frame)
        for _ in range(2):
            buf = bytearray(rng.randbytes(start) + frame + rng.randbytes(rng.randint(0, 40)))
            assert flow_key(buf, start, end) == alone, frame.hex()
            assert flow_hash(bytes(buf), start, end) == zlib.crc32(alone)


def test_flow_key_uses_ports_only_when_a_whole_transport_header_start_is_there() -> None:
    """Ports count only for an unfragmented TCP/UDP datagram whose header (IHL >= 5) lies
    inside the frame; otherwise neither the bytes after the IP header nor the IP header's own
    TOS, length, id, TTL and checksum (where an IHL below 5 would point) change the key. A
    positive control checks that the ports do count when they should."""
    rng = random.Random(1234)
    for _ in range(CASES):
        ihl = rng.randrange(16)
        proto = rng.choice((6, 17))
        fragment = rng.choice((0, 0, 0x2000, rng.randrange(1, 0x2000)))
        header = bytearray(rng.randbytes(20))
        header[0] = 0x40 | ihl
        header[6:8] = fragment.to_bytes(2, "big")
        header[9] = proto
        frame = bytearray(rng.randbytes(12) + b"\x08\x00" + header
                          + rng.randbytes(rng.randint(0, 60)))
        l4 = ETH_HLEN + ihl * 4
        ports_there = ihl >= 5 and not fragment and len(frame) - l4 >= 4
        before = flow_key(frame)
        changed = bytearray(frame)
        # Everything after the 20-byte header, and the header bytes that are neither version
        # and length, fragment, protocol nor addresses (TOS, length, id, TTL, checksum).
        for at in [*range(ETH_HLEN + 20, len(frame)), *(ETH_HLEN + i for i in (1, 2, 3, 4, 5,
                                                                              8, 10, 11))]:
            changed[at] ^= 0xFF
        if ports_there:
            assert flow_key(changed) != before
        else:
            assert flow_key(changed) == before


def test_ipv6_flow_key_of_other_next_headers_is_the_addresses() -> None:
    """IPv6 with an extension header or any non-TCP/UDP next header hashes on its addresses
    alone, so every piece of a datagram goes the same way."""
    rng = random.Random(1234)
    for _ in range(CASES):
        nxt = rng.choice([n for n in range(256) if n not in (6, 17)])
        header = bytearray(rng.randbytes(40))
        header[0] = 0x60
        header[6] = nxt
        frame = rng.randbytes(12) + b"\x86\xdd" + bytes(header) + rng.randbytes(rng.randrange(60))
        assert flow_key(frame) == bytes(header[8:40])


# -- (c) the prober ------------------------------------------------------------------------------


def member_of(family: int) -> str:
    return "v4" if family == 4 else "v6"


def genuine(family: int) -> Received:
    return Received(replies=((str((TARGETS4 if family == 4 else TARGETS6)[0]), SEQ),))


def field_positions(family: int) -> dict[str, range]:
    """Where a genuine echo reply keeps what must match: destination MAC and address, our
    identifier and the sequence number, and in its payload the token and the sequence again."""
    icmp = icmp_offset(echo_reply(family))
    return {
        "dst_mac": range(0, 6),
        "dst_ip": range(30, 34) if family == 4 else range(38, 54),
        "ident": range(icmp + 4, icmp + 6),
        "seq": range(icmp + 6, icmp + 8),
        "token": range(icmp + 8, icmp + 8 + TOKEN_LEN),
        "payload_seq": range(icmp + 8 + TOKEN_LEN, icmp + 10 + TOKEN_LEN),
    }


@pytest.mark.parametrize("family", [4, 6])
def test_a_genuine_echo_reply_counts(family: int) -> None:
    """The positive control: the reply the tests below spoil counts as a reply."""
    assert make_prober().receive(member_of(family), echo_reply(family)) == genuine(family)


@pytest.mark.parametrize("family", [4, 6])
def test_a_changed_byte_in_any_matched_field_counts_for_nothing(family: int) -> None:
    """Changing any byte of the token, sequence, identifier, destination MAC or destination
    address (checksums recomputed, so the frame still parses) makes the reply not count."""
    rng = random.Random(1234)
    frame = echo_reply(family)
    for name, positions in field_positions(family).items():
        for at in positions:
            for value in mutations(rng, frame[at]):
                mutated = fix_checksums(frame[:at] + bytes((value,)) + frame[at + 1:])
                assert isinstance(parse_control(mutated), EchoReply), (name, at)
                prober = make_prober()
                result = prober.receive(member_of(family), mutated)
                assert result.replies == (), (name, at, value)
                assert prober.members[member_of(family)].neighbors == {}


@pytest.mark.parametrize("family", [4, 6])
def test_random_single_byte_changes_never_make_another_reply(family: int) -> None:
    """3,000 random byte changes anywhere in a genuine reply, checksums fixed or not: the
    result is nothing, the same reply, or (a changed source address) a reply from another
    target; never one for a changed sequence number or from a non-target."""
    rng = random.Random(1234)
    frame = echo_reply(family)
    matched = {at for r in field_positions(family).values() for at in r}
    targets = TARGETS4 if family == 4 else TARGETS6
    allowed = {(), *(((str(t), SEQ),) for t in targets)}
    for _ in range(3000):
        at = rng.randrange(len(frame))
        value = rng.choice([v for v in range(256) if v != frame[at]])
        mutated = frame[:at] + bytes((value,)) + frame[at + 1:]
        if rng.random() < 0.5:
            mutated = fix_checksums(mutated)
        prober = make_prober()
        replies = prober.receive(member_of(family), mutated).replies
        assert replies in allowed, (at, value)
        if at in matched:
            assert replies == (), (at, value)
        assert set(prober.members[member_of(family)].neighbors) <= set(targets)


def test_forged_replies_from_non_targets_count_for_nothing() -> None:
    """A perfect reply (token, identifier, sequence) from any source that is not a target,
    or on the wrong member, counts for nothing and teaches no neighbour."""
    rng = random.Random(1234)
    specials4 = [TEST4, ASKER4, IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"),
                 IPv4Address("224.0.0.1"), IPv4Address("127.0.0.1")]
    specials6 = [TEST6, ASKER6, IPv6Address("::"), IPv6Address("ff02::1"), IPv6Address("::1"),
                 IPv6Address("::ffff:198.18.0.1")]
    sources: list[IPv4Address | IPv6Address] = [*specials4, *specials6]
    for _ in range(1000):
        sources.append(IPv4Address(rng.randbytes(4)))
        sources.append(IPv6Address(rng.randbytes(16)))
    for src in sources:
        family = src.version
        if src in (TARGETS4 if family == 4 else TARGETS6):
            continue
        prober = make_prober()
        for member in ("v4", "v6", "nobody"):
            assert prober.receive(member, echo_reply(family, src=src)).replies == ()
        assert all(m.neighbors == {} for m in prober.members.values())
    prober = make_prober()
    assert prober.receive("v6", echo_reply(4)) == Received()  # the right reply, wrong member
    assert prober.receive("nobody", echo_reply(4)) == Received()


@pytest.mark.parametrize("family", [4, 6])
def test_icmp_of_every_type_and_code_counts_only_as_an_echo_reply(family: int) -> None:
    """Messages of every ICMP/ICMPv6 type and code (0-255 each), carrying a perfect echo body
    aimed at the test address: only an echo reply with code 0 counts; none gets an answer."""
    reply_type = wire.ICMP_ECHO_REPLY if family == 4 else wire.ICMPV6_ECHO_REPLY
    counted = []
    for icmp_type in range(256):
        for code in range(256):
            frame = echo_reply(family, icmp_type=icmp_type, code=code)
            result = make_prober().receive(member_of(family), frame)
            assert result.answers == ()
            if result.replies:
                assert result == genuine(family)
                counted.append((icmp_type, code))
    assert counted == [(reply_type, 0)]


def arp_request(rng: random.Random, target: IPv4Address) -> bytes:
    sender_mac = rng.choice((ASKER_MAC, EVIL_MAC, BROADCAST, bytes(6), rng.randbytes(6)))
    sender_ip = rng.choice((ASKER4, TARGETS4[0], IPv4Address(rng.randbytes(4))))
    frame = bytearray(wire.arp_request(ASKER_MAC, sender_ip, target))
    frame[22:28] = sender_mac
    return bytes(frame)


def test_arp_requests_for_the_test_address_get_at_most_one_answer() -> None:
    """3,000 ARP requests, some for the test address, some mutated: each gets at most one
    answer (exactly one, the right ARP reply, when it is a well-formed question for the test
    address from another address), and none counts as a probe reply."""
    rng = random.Random(1234)
    prober = make_prober()
    answered = 0
    for case in range(3000):
        target = TEST4 if rng.random() < 0.7 else IPv4Address(rng.randbytes(4))
        frame = arp_request(rng, target)
        mutated = case % 3 == 0
        if mutated:
            at = rng.randrange(len(frame))
            frame = frame[:at] + bytes((rng.randrange(256),)) + frame[at + 1:]
        for member in ("v4", "v6"):
            result = prober.receive(member, frame)
            assert result.replies == ()
            assert len(result.answers) <= 1
            if member == "v6":
                assert result.answers == ()  # no IPv4 test address to answer for
            elif not mutated:
                asked = parse_control(frame)
                assert isinstance(asked, Arp)
                if target == TEST4 and asked.sender_ip != TEST4:
                    [answer] = result.answers
                    reply = parse_control(answer)
                    assert isinstance(reply, Arp)
                    assert (reply.op, reply.sender_mac, reply.sender_ip) == (2, MAC4, TEST4)
                    assert (reply.target_mac, reply.target_ip) == (asked.sender_mac,
                                                                   asked.sender_ip)
                    answered += 1
                else:
                    assert result.answers == ()
    assert answered > 1000


def test_neighbor_solicitations_for_the_test_address_get_at_most_one_answer() -> None:
    """Solicitations for the test address, whole or with a byte changed: at most one answer,
    exactly one for a well-formed one from an address, none for duplicate address detection."""
    rng = random.Random(1234)
    prober = make_prober()
    ns = wire.neighbor_solicitation(ASKER_MAC, ASKER6, TEST6)
    dad = wire.neighbor_solicitation(ASKER_MAC, IPv6Address("::"), TEST6)
    assert len(prober.receive("v6", ns).answers) == 1
    assert prober.receive("v6", dad).answers == ()
    for _ in range(3000):
        frame = rng.choice((ns, dad))
        at = rng.randrange(len(frame))
        frame = frame[:at] + bytes((rng.randrange(256),)) + frame[at + 1:]
        if rng.random() < 0.5:
            frame = fix_checksums(frame)
        for member in ("v4", "v6"):
            result = prober.receive(member, frame)
            assert result.replies == ()
            assert len(result.answers) <= (1 if member == "v6" else 0)


def test_arp_probing_counts_only_the_answer_to_the_last_request() -> None:
    """Probing by ARP: the target's reply to the member counts once (a replay does not); any
    changed byte of its addresses, operation or types makes it count for nothing."""
    rng = random.Random(1234)
    reply = wire.arp_reply(TARGET_MAC, TARGETS4[0], MAC4, TEST4)
    want = Received(replies=((str(TARGETS4[0]), SEQ),))
    prober = make_prober(ARP)
    prober.probe("v4", str(TARGETS4[0]), SEQ)
    assert prober.receive("v4", reply) == want
    assert prober.receive("v4", reply).replies == ()  # a replay
    # Ethernet destination, types and lengths, operation, sender IP, target MAC and IP.
    matched = {*range(0, 6), *range(12, 22), *range(28, 32), *range(32, 42)}
    for at in range(len(reply)):
        for value in mutations(rng, reply[at]):
            prober = make_prober(ARP)
            prober.probe("v4", str(TARGETS4[0]), SEQ)
            mutated = reply[:at] + bytes((value,)) + reply[at + 1:]
            result = prober.receive("v4", mutated)
            assert result.replies in ((), want.replies)
            if at in matched:
                assert result.replies == (), (at, value)
            assert len(result.answers) <= 1


# -- (d) the answer rate limit -------------------------------------------------------------------


@pytest.mark.parametrize("rate, burst", [(100.0, 20.0), (10.0, 1.0), (1000.0, 50.0)])
def test_token_bucket_bounds_a_flood(rate: float, burst: float) -> None:
    """10,000 requests in one second of fake time: at most burst + rate answers (and not
    far fewer: the bucket refills), every other request counted as dropped."""
    rng = random.Random(1234)
    bucket = TokenBucket(rate, burst)
    times = sorted(rng.uniform(0.0, 1.0) for _ in range(10_000))
    answers = sum(bucket.take(t) for t in times)
    assert answers <= burst + rate * 1.0
    assert answers >= burst + rate * (times[-1] - times[0]) - 1
    assert bucket.dropped == 10_000 - answers


def test_token_bucket_all_at_once_answers_the_burst() -> None:
    """A flood in one instant gets exactly the burst; time then refills at the rate."""
    bucket = TokenBucket(100.0, 20.0)
    assert sum(bucket.take(5.0) for _ in range(10_000)) == 20
    assert bucket.dropped == 10_000 - 20
    assert sum(bucket.take(5.125) for _ in range(100)) == 12  # 12.5 tokens in 1/8 s
    assert bucket.dropped == 10_000 - 20 + 88


def test_token_bucket_idle_time_banks_no_more_than_the_burst() -> None:
    """A long quiet spell does not save up answers for a later flood: the burst is the cap."""
    bucket = TokenBucket(100.0, 20.0)
    assert bucket.take(0.0)
    assert sum(bucket.take(3600.0) for _ in range(10_000)) == 20
    assert bucket.dropped == 10_000 - 20


def test_token_bucket_a_clock_going_back_earns_nothing() -> None:
    """Times that jump back and forth (they should not, but) never earn more than the span."""
    rng = random.Random(1234)
    bucket = TokenBucket(100.0, 20.0)
    times = [rng.uniform(0.0, 1.0) for _ in range(10_000)]
    answers = sum(bucket.take(t) for t in times)
    assert answers <= 20 + 100 * (max(times) - min(times))
    assert bucket.dropped == 10_000 - answers
