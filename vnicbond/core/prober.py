"""The probe engine's wire side: probes as frames, and frames as matched replies.

It holds what the frames need (each probing member's MAC and test address, the targets'
MACs learned from ARP and NDP, the daemon's random token) and nothing about health: the
:class:`vnicbond.core.detector.Detector` decides, this module only speaks, and the group
engine (:mod:`vnicbond.core.engine`) joins the two. No sockets and no clock:
:meth:`Prober.probe` returns the frames to send, :meth:`Prober.receive` the replies it matched
and the answers to send back (ARP replies and neighbour advertisements for test addresses).

A target's MAC is learned from the answer to our own ARP request or neighbour solicitation
(sent while the MAC is unknown, and again after losses), from a matched echo reply, or, while
still unknown, from the target's own question for our test address; unsolicited replies and
advertisements, which anyone on the link can forge, never change it.

A reply counts only if it matches what was sent: it comes from the target, is addressed to
the member's own MAC and test address, and for ICMP carries our identifier and, at the start
of its payload, the daemon's random token and the probe's sequence number. Broadcasts from
other hosts, stale or forged replies count for nothing.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from vnicbond.wire import probe as wire

ICMP, ARP = "icmp", "arp"
TOKEN_LEN = 8


@dataclass(slots=True)
class ProbingMember:
    """What a member's probes are made of."""

    name: str
    mac: bytes
    test_ip: IPv4Address | IPv6Address
    targets: tuple[IPv4Address | IPv6Address, ...]
    #: Target MACs learned on this member's wire.
    neighbors: dict[IPv4Address | IPv6Address, bytes] = field(default_factory=dict)
    #: For ARP probes, which carry no sequence number: the last one sent to each target.
    last_seq: dict[IPv4Address | IPv6Address, int] = field(default_factory=dict)
    #: Targets we sent an ARP request or neighbour solicitation to and got no answer from yet:
    #: only an answer to such a question may teach (or change) a target's MAC.
    resolving: set[IPv4Address | IPv6Address] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Received:
    """What one incoming control frame amounted to."""

    replies: tuple[tuple[str, int], ...] = ()  # (target, seq) of matched probe replies
    answers: tuple[bytes, ...] = ()  # frames to send back out of the same member


NOTHING = Received()


class TokenBucket:
    """At most ``rate`` events a second on average, ``burst`` at once (the clock is passed in).

    Bounds the ARP replies and neighbour advertisements the daemon sends for test addresses,
    so a flood of questions cannot turn it into an amplifier.
    """

    __slots__ = ("burst", "dropped", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp: float | None = None
        self.dropped = 0

    def take(self, now: float) -> bool:
        """Spend one token if there is one; count a drop otherwise."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.dropped += 1
        return False


class Prober:
    """Frames for the probes of one group."""

    def __init__(self, method: str, members: list[ProbingMember], token: bytes | None = None,
                 ident: int | None = None) -> None:
        if method not in (ICMP, ARP):
            raise ValueError(f"unknown probe method {method!r}")
        self.method = method
        self.members = {m.name: m for m in members}
        self.token = token if token is not None else os.urandom(TOKEN_LEN)
        if len(self.token) != TOKEN_LEN:
            raise ValueError(f"the probe token must be {TOKEN_LEN} bytes")
        self.ident = ident if ident is not None else int.from_bytes(os.urandom(2), "big")
        if not 0 <= self.ident <= 0xFFFF:
            raise ValueError("the ICMP identifier must fit in 16 bits")

    def reconfigure(self, method: str, members: list[ProbingMember]) -> None:
        """A reload (or a NIC back with a new MAC): probe with ``method`` from ``members``.

        The token and identifier stay, so replies to probes already sent still match; a
        member that keeps its test address keeps what it learned of its targets' MACs and
        what it was waiting for.
        """
        if method not in (ICMP, ARP):
            raise ValueError(f"unknown probe method {method!r}")
        old = self.members
        self.method = method
        self.members = {m.name: m for m in members}
        for m in members:
            before = old.get(m.name)
            if before is not None and before.test_ip == m.test_ip:
                m.neighbors = before.neighbors
                m.resolving = before.resolving
                m.last_seq = before.last_seq

    def probe(self, member: str, target: str, seq: int, resolve: bool = False) -> list[bytes]:
        """The frames that make probe ``seq`` from ``member`` to ``target``.

        ICMP probes go to the target's learned MAC; while it is unknown (or ``resolve`` asks
        to refresh it after losses) an ARP request or neighbour solicitation goes out too.
        """
        m = self.members[member]
        ip = ip_address(target)
        if self.method == ARP:
            m.last_seq[ip] = seq
            assert isinstance(ip, IPv4Address) and isinstance(m.test_ip, IPv4Address)
            return [wire.arp_request(m.mac, m.test_ip, ip)]
        frames = []
        mac = m.neighbors.get(ip)
        if mac is None or resolve:
            frames.append(self._resolve(m, ip))
            m.resolving.add(ip)
        if mac is not None:
            payload = self.token + struct.pack("!H", seq)
            frames.append(wire.icmp_echo_request(m.mac, mac, m.test_ip, ip, self.ident, seq,
                                                 payload))
        return frames

    def receive(self, member: str, frame: bytes) -> Received:
        """Match one frame that arrived on ``member``'s control socket."""
        m = self.members.get(member)
        if m is None:
            return NOTHING
        pkt = wire.parse_control(frame)
        if isinstance(pkt, wire.Arp):
            return self._arp(m, pkt)
        if isinstance(pkt, wire.EchoReply):
            if (pkt.dst_mac == m.mac and pkt.dst_ip == m.test_ip and pkt.src_ip in m.targets
                    and pkt.ident == self.ident and pkt.payload[:TOKEN_LEN] == self.token
                    and pkt.payload[TOKEN_LEN:TOKEN_LEN + 2] == struct.pack("!H", pkt.seq)):
                m.neighbors[pkt.src_ip] = pkt.src_mac
                return Received(replies=((str(pkt.src_ip), pkt.seq),))
            return NOTHING
        if isinstance(pkt, wire.NeighborSolicitation):
            answers: tuple[bytes, ...] = ()
            if pkt.target_ip == m.test_ip and isinstance(m.test_ip, IPv6Address):
                if pkt.src_ip.is_unspecified:
                    return NOTHING  # duplicate address detection: not a question to answer
                if (pkt.src_ip in m.targets and pkt.source_lladdr
                        and pkt.src_ip not in m.neighbors):  # a question to us, first only
                    m.neighbors[pkt.src_ip] = pkt.source_lladdr
                dst_mac = pkt.source_lladdr or pkt.src_mac
                answers = (wire.neighbor_advertisement(m.mac, m.test_ip, dst_mac, pkt.src_ip),)
            return Received(answers=answers)
        if (isinstance(pkt, wire.NeighborAdvertisement) and pkt.dst_mac == m.mac
                and pkt.target_ip in m.resolving and pkt.target_lladdr):
            m.neighbors[pkt.target_ip] = pkt.target_lladdr  # the answer to our question
            m.resolving.discard(pkt.target_ip)
        return NOTHING

    def _arp(self, m: ProbingMember, pkt: wire.Arp) -> Received:
        if not isinstance(m.test_ip, IPv4Address):
            return NOTHING
        if pkt.op == 1:
            # Only a question to us teaches us the asker's MAC (as Linux does): a broadcast
            # request naming a target as sender, from anyone, must not redirect our probes.
            if pkt.target_ip == m.test_ip and pkt.sender_ip != m.test_ip:
                if pkt.sender_ip in m.targets and pkt.sender_ip not in m.neighbors:
                    m.neighbors[pkt.sender_ip] = pkt.sender_mac  # a first question to us
                return Received(answers=(
                    wire.arp_reply(m.mac, m.test_ip, pkt.sender_mac, pkt.sender_ip),))
            return NOTHING
        # A reply: to us, about a target, answering a question we asked.
        if (pkt.dst_mac != m.mac or pkt.target_mac != m.mac or pkt.target_ip != m.test_ip
                or pkt.sender_ip not in m.targets):
            return NOTHING
        if pkt.sender_ip in m.resolving:  # the answer to our question; others teach nothing
            m.neighbors[pkt.sender_ip] = pkt.sender_mac
            m.resolving.discard(pkt.sender_ip)
        if self.method == ARP and pkt.sender_ip in m.last_seq:
            return Received(replies=((str(pkt.sender_ip), m.last_seq.pop(pkt.sender_ip)),))
        return NOTHING

    @staticmethod
    def _resolve(m: ProbingMember, ip: IPv4Address | IPv6Address) -> bytes:
        if isinstance(ip, IPv4Address):
            assert isinstance(m.test_ip, IPv4Address)
            return wire.arp_request(m.mac, m.test_ip, ip)
        assert isinstance(m.test_ip, IPv6Address)
        return wire.neighbor_solicitation(m.mac, m.test_ip, ip)
