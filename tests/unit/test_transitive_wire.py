"""Unit tests for vnicbond.wire.transitive: the link-layer probes of transitive probing.

scapy is the independent decoder of the frames built here, and the auth is recomputed from the
contract's definition with hashlib, so a mistake cannot hide symmetrically in builder and
checker. The rest is hostile input: every truncation, every field changed, replays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import subprocess
import sys

import pytest
from scapy.layers.l2 import Ether

from vnicbond.wire.transitive import (
    ETH_P_TRANSITIVE,
    FRAME_LEN,
    REPLY,
    REQUEST,
    Transitive,
    authentic,
    parse,
    reply,
    request,
)

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
PROBER = bytes.fromhex("020000000001")  # the member probing with ICMP
MEMBER = bytes.fromhex("020000000002")  # the transitive member
THIRD = bytes.fromhex("020000000003")
SEQ = 0xBEEF
NONCE = 0xDEADBEEF


def contract_auth(secret: bytes, kind: int, seq: int, nonce: int, src: bytes,
                  dst: bytes) -> bytes:
    """auth as the contract words it: blake2b(key=secret, digest_size=8) over
    kind|seq|nonce|src_mac|dst_mac."""
    data = bytes([kind]) + seq.to_bytes(2, "big") + nonce.to_bytes(4, "big") + src + dst
    return hashlib.blake2b(data, key=secret, digest_size=8).digest()


def req_frame(secret: bytes = SECRET) -> bytes:
    return request(secret, MEMBER, PROBER, SEQ, NONCE)


def patch(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


# -- the frames, as scapy reads them ------------------------------------------------------------


def test_request_layout_read_by_scapy() -> None:
    frame = req_frame()
    assert len(frame) == FRAME_LEN == 34
    eth = Ether(frame)
    assert eth.dst == "02:00:00:00:00:01" and eth.src == "02:00:00:00:00:02"
    assert eth.type == ETH_P_TRANSITIVE == 0x88B5
    payload = bytes(eth.payload)
    assert payload[:4] == b"VBTP"
    assert payload[4] == 1 and payload[5] == REQUEST == 1
    assert struct.unpack("!HI", payload[6:12]) == (SEQ, NONCE)
    assert payload[12:] == contract_auth(SECRET, 1, SEQ, NONCE, MEMBER, PROBER)


def test_reply_goes_back_with_the_same_seq_and_nonce_and_its_own_auth() -> None:
    req = parse(req_frame())
    assert req is not None
    frame = reply(SECRET, req)
    eth = Ether(frame)
    assert eth.dst == "02:00:00:00:00:02" and eth.src == "02:00:00:00:00:01"
    assert eth.type == 0x88B5
    payload = bytes(eth.payload)
    assert payload[:6] == b"VBTP\x01\x02"
    assert struct.unpack("!HI", payload[6:12]) == (SEQ, NONCE)
    assert payload[12:] == contract_auth(SECRET, 2, SEQ, NONCE, PROBER, MEMBER)
    assert payload[12:] != Ether(req_frame()).payload.load[12:]


def test_round_trip() -> None:
    req = parse(req_frame())
    assert req == Transitive(dst_mac=PROBER, src_mac=MEMBER, kind=REQUEST, seq=SEQ, nonce=NONCE,
                             auth=contract_auth(SECRET, 1, SEQ, NONCE, MEMBER, PROBER))
    assert authentic(SECRET, req)
    rep = parse(reply(SECRET, req))
    assert rep is not None
    assert (rep.dst_mac, rep.src_mac, rep.kind, rep.seq, rep.nonce) == (
        MEMBER, PROBER, REPLY, SEQ, NONCE)
    assert authentic(SECRET, rep)


@pytest.mark.parametrize("secret_len", [16, 32])
def test_both_secret_lengths(secret_len: int) -> None:
    secret = bytes(range(secret_len))
    t = parse(request(secret, MEMBER, PROBER, 0, 0))
    assert t is not None and authentic(secret, t)
    assert not authentic(bytes(range(1, secret_len + 1)), t)


def test_extremes_of_seq_and_nonce() -> None:
    for seq, nonce in ((0, 0), (0xFFFF, 0xFFFFFFFF)):
        t = parse(request(SECRET, MEMBER, PROBER, seq, nonce))
        assert t is not None and (t.seq, t.nonce) == (seq, nonce) and authentic(SECRET, t)


def test_builders_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="16 or 32 bytes"):
        request(b"short", MEMBER, PROBER, 1, 1)
    with pytest.raises(ValueError, match="16 or 32 bytes"):
        request(bytes(24), MEMBER, PROBER, 1, 1)
    with pytest.raises(ValueError, match="src_mac"):
        request(SECRET, MEMBER[:5], PROBER, 1, 1)
    with pytest.raises(ValueError, match="dst_mac"):
        request(SECRET, MEMBER, PROBER + b"\x00", 1, 1)
    with pytest.raises(ValueError, match="seq"):
        request(SECRET, MEMBER, PROBER, 0x10000, 1)
    with pytest.raises(ValueError, match="nonce"):
        request(SECRET, MEMBER, PROBER, 1, 1 << 32)
    with pytest.raises(ValueError, match="nonce"):
        request(SECRET, MEMBER, PROBER, 1, -1)
    rep = parse(reply(SECRET, parse(req_frame())))  # type: ignore[arg-type]
    assert rep is not None
    with pytest.raises(ValueError, match="only a request"):
        reply(SECRET, rep)
    with pytest.raises(ValueError, match="16 or 32 bytes"):
        authentic(b"", rep)


def test_module_imports_only_the_standard_library() -> None:
    code = ("import sys, vnicbond.wire.transitive; "
            "sys.exit(1 if any(m.split('.')[0] == 'scapy' for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- parse: hostile input ---------------------------------------------------------------------


def test_ethernet_padding_is_ignored() -> None:
    frame = req_frame()
    padded = frame + bytes(60 - len(frame))
    assert parse(padded) == parse(frame)
    assert parse(bytes(Ether(frame))) == parse(frame)
    assert parse(bytearray(padded)) == parse(memoryview(frame)) == parse(frame)


def test_every_truncation_is_rejected() -> None:
    frame = req_frame()
    for n in range(len(frame)):
        assert parse(frame[:n]) is None, n


@pytest.mark.parametrize(("offset", "value"), [
    (12, b"\x88\xb6"),   # another ethertype
    (12, b"\x08\x00"),
    (14, b"VBTQ"),       # magic
    (14, b"vbtp"),
    (18, b"\x00"),       # version
    (18, b"\x02"),
    (19, b"\x00"),       # kind
    (19, b"\x03"),
    (19, b"\xff"),
], ids=["ethertype", "ipv4", "magic", "magic-case", "version0", "version2", "kind0", "kind3",
        "kind255"])
def test_wrong_header_fields_are_rejected(offset: int, value: bytes) -> None:
    assert parse(patch(req_frame(), offset, value)) is None


def test_empty_and_garbage_never_raise() -> None:
    rng = random.Random(14)
    assert parse(b"") is None
    for _ in range(3000):
        data = rng.choice([b"", req_frame()[:rng.randrange(35)]]) + rng.randbytes(
            rng.randrange(0, 60))
        result = parse(data)
        assert result is None or isinstance(result, Transitive)
    assert parse("not bytes") is None  # type: ignore[arg-type]
    assert parse(None) is None  # type: ignore[arg-type]


def test_a_vlan_tagged_frame_is_not_ours() -> None:
    frame = req_frame()
    tagged = frame[:12] + b"\x81\x00\x00\x05" + frame[12:]
    assert parse(tagged) is None


# -- authenticity: every covered field, forgeries, replays --------------------------------------


def test_every_single_bit_flip_is_caught() -> None:
    """Flipping any bit of a request either makes it unparsable or inauthentic."""
    frame = req_frame()
    for bit in range(len(frame) * 8):
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        t = parse(bytes(flipped))
        assert t is None or not authentic(SECRET, t), bit


@pytest.mark.parametrize("field", ["dst_mac", "src_mac", "kind", "seq", "nonce", "auth"])
def test_changing_any_covered_field_fails(field: str) -> None:
    t = parse(req_frame())
    assert t is not None and authentic(SECRET, t)
    changed = {"dst_mac": THIRD, "src_mac": THIRD, "kind": REPLY, "seq": SEQ ^ 1,
               "nonce": NONCE ^ 0x80000000, "auth": bytes(8)}[field]
    assert not authentic(SECRET, dataclasses.replace(t, **{field: changed}))


def test_swapped_macs_fail() -> None:
    """A request turned around (MACs swapped, kind changed to reply) is no reply."""
    t = parse(req_frame())
    assert t is not None
    forged = dataclasses.replace(t, src_mac=t.dst_mac, dst_mac=t.src_mac, kind=REPLY)
    assert not authentic(SECRET, forged)
    assert not authentic(SECRET, dataclasses.replace(t, src_mac=t.dst_mac, dst_mac=t.src_mac))


def test_a_reply_from_another_secret_fails() -> None:
    t = parse(req_frame())
    assert t is not None
    rep = parse(reply(OTHER_SECRET, t))
    assert rep is not None and not authentic(SECRET, rep)


def test_a_replayed_reply_with_another_nonce_fails() -> None:
    """Capturing one reply and rewriting its nonce (to match a newer request) gives nothing."""
    old = parse(reply(SECRET, parse(req_frame())))  # type: ignore[arg-type]
    assert old is not None and authentic(SECRET, old)
    frame = reply(SECRET, parse(req_frame()))  # type: ignore[arg-type]
    rewritten = parse(patch(frame, 22, struct.pack("!I", NONCE + 1)))
    assert rewritten is not None and rewritten.nonce == NONCE + 1
    assert not authentic(SECRET, rewritten)
    rewritten = parse(patch(frame, 20, struct.pack("!H", SEQ + 1)))
    assert rewritten is not None and not authentic(SECRET, rewritten)


def test_a_reply_meant_for_another_member_fails() -> None:
    """A reply to THIRD, its destination rewritten to MEMBER, is not MEMBER's."""
    req = parse(request(SECRET, THIRD, PROBER, SEQ, NONCE))
    assert req is not None
    frame = patch(reply(SECRET, req), 0, MEMBER)
    t = parse(frame)
    assert t is not None and t.dst_mac == MEMBER and not authentic(SECRET, t)


def test_random_auth_never_passes() -> None:
    rng = random.Random(7)
    t = parse(req_frame())
    assert t is not None
    for _ in range(2000):
        assert not authentic(SECRET, dataclasses.replace(t, auth=rng.randbytes(8)))
