"""The probe engine's wire side: probes as frames, and frames as matched replies.

It holds what the frames need (each probing member's sources: the addresses it probes from
and their MACs, :mod:`vnicbond.core.targets`; the targets' MACs learned from ARP and NDP; the
members it probes with link-layer frames; the daemon's random token and secret) and nothing
about health: the
:class:`vnicbond.core.detector.Detector` decides, this module only speaks, and the group
engine (:mod:`vnicbond.core.engine`) joins the two. No sockets and no clock:
The prober's methods return frames to send, and :meth:`Prober.receive` the replies it matched,
the answers to send back (ARP replies and neighbour advertisements for test and link-local
addresses, answers to other members' link-layer probes) and the hosts that answered an
all-hosts ping (:meth:`Prober.discover`).

A target's MAC is learned from the answer to our own ARP request or neighbour solicitation
(sent while the MAC is unknown, and again after losses), from a matched echo reply, or, while
still unknown, from the target's own question for our test address; unsolicited replies and
advertisements, which anyone on the link can forge, never change it.

A reply counts only if it matches what was sent: it comes from the target, is addressed to
the source's MAC and address, and for ICMP carries our identifier and, at the start of its
payload, the daemon's random token and the probe's sequence number. A link-layer probe's
answer counts only if it comes from the member probed, answers an outstanding probe's nonce,
and carries the keyed authenticator only this daemon can make
(:mod:`vnicbond.wire.transitive`). Broadcasts from other hosts, stale, replayed or forged
replies count for nothing.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from vnicbond.core.targets import MEMBER_PREFIX, Source
from vnicbond.wire import probe as wire
from vnicbond.wire import transitive

ICMP, ARP = "icmp", "arp"
TOKEN_LEN = 8
SECRET_LEN = 16
#: All-hosts pings (and link-layer probes per member probed) whose answers are still awaited.
PENDING = 64

IPAddress = IPv4Address | IPv6Address


@dataclass(slots=True)
class ProbingMember:
    """What a member's probes are made of."""

    name: str
    #: The NIC's own MAC: link-layer probes go from and to it.
    mac: bytes
    sources: tuple[Source, ...]
    targets: tuple[IPAddress, ...]
    #: Members probed with link-layer frames: name -> their NIC's MAC.
    probers: dict[str, bytes] = field(default_factory=dict)
    #: Target MACs learned on this member's wire.
    neighbors: dict[IPAddress, bytes] = field(default_factory=dict)
    #: For ARP probes, which carry no sequence number: the last one sent to each target.
    last_seq: dict[IPAddress, int] = field(default_factory=dict)
    #: Targets we sent an ARP request or neighbour solicitation to and got no answer from yet:
    #: only an answer to such a question may teach (or change) a target's MAC.
    resolving: set[IPAddress] = field(default_factory=set)
    #: Link-layer probes awaiting an answer: (member probed, seq) -> nonce.
    pending: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Sequence numbers of our recent all-hosts pings.
    discovery: deque[int] = field(default_factory=lambda: deque(maxlen=PENDING))

    def source_for(self, ip: IPAddress) -> Source | None:
        """The source probing targets of ``ip``'s family."""
        return next((s for s in self.sources if s.ip.version == ip.version), None)


@dataclass(frozen=True, slots=True)
class Received:
    """What one incoming control frame amounted to."""

    replies: tuple[tuple[str, int], ...] = ()  # (target, seq) of matched probe replies
    answers: tuple[bytes, ...] = ()  # frames to send back out of the same member
    #: Answers to link-layer probes the daemon itself sent (authenticated: no rate limit).
    echoes: tuple[bytes, ...] = ()
    #: Hosts that answered an all-hosts ping: (address, is a router).
    found: tuple[tuple[IPAddress, bool], ...] = ()


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
                 ident: int | None = None, secret: bytes | None = None) -> None:
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
        #: The key of link-layer probes' authenticators: never on the wire.
        self.secret = secret if secret is not None else os.urandom(SECRET_LEN)
        #: Link-layer probes' nonces: a counter from a random start (unique, so a replayed
        #: answer never matches a probe awaiting one).
        self._nonce = int.from_bytes(self.secret[:4], "big")

    def reconfigure(self, method: str, members: list[ProbingMember]) -> None:
        """A reload, a NIC back with a new MAC, or new sources or targets: probe with
        ``method`` from ``members``.

        The token, identifier and secret stay, so replies to probes already sent still
        match; a member that keeps its sources keeps what it learned of its targets' MACs and
        what it was waiting for; link-layer probes awaiting answers stay awaited.
        """
        if method not in (ICMP, ARP):
            raise ValueError(f"unknown probe method {method!r}")
        old = self.members
        self.method = method
        self.members = {m.name: m for m in members}
        for m in members:
            before = old.get(m.name)
            if before is None:
                continue
            m.pending, m.discovery = before.pending, before.discovery
            if before.sources == m.sources:
                m.neighbors = before.neighbors
                m.resolving = before.resolving
                m.last_seq = before.last_seq
            else:  # a target's MAC is the same on every source's wire: start from it
                m.neighbors = {ip: mac for ip, mac in before.neighbors.items()
                               if ip in m.targets}
        # A member that starts probing a target starts from what the others learned of its
        # MAC (one segment): a new active member's first probe goes out at once.
        known: dict[IPAddress, bytes] = {}
        for m in old.values():
            known.update(m.neighbors)
        for m in members:
            for ip in m.targets:
                if ip not in m.neighbors and ip in known:
                    m.neighbors[ip] = known[ip]

    def probe(self, member: str, target: str, seq: int, resolve: bool = False) -> list[bytes]:
        """The frames that make probe ``seq`` from ``member`` to ``target``.

        ICMP probes go to the target's learned MAC; while it is unknown (or ``resolve`` asks
        to refresh it after losses) an ARP request or neighbour solicitation goes out too.
        A target ``member:NAME`` gets a link-layer probe.
        """
        m = self.members[member]
        if target.startswith(MEMBER_PREFIX):
            return self._transitive(m, target[len(MEMBER_PREFIX):], seq)
        ip = ip_address(target)
        source = m.source_for(ip)
        if source is None:
            return []
        if self.method == ARP:
            m.last_seq[ip] = seq
            assert isinstance(ip, IPv4Address) and isinstance(source.ip, IPv4Address)
            return [wire.arp_request(source.mac, source.ip, ip)]
        frames = []
        mac = m.neighbors.get(ip)
        if mac is None or resolve:
            frames.append(self._resolve(source, ip))
            m.resolving.add(ip)
        if mac is not None:
            payload = self.token + struct.pack("!H", seq)
            frames.append(wire.icmp_echo_request(source.mac, mac, source.ip, ip, self.ident,
                                                 seq, payload))
        return frames

    def discover(self, member: str, version: int, seq: int) -> list[bytes]:
        """An all-hosts ping (224.0.0.1 or ff02::1) from ``member``'s source of IP
        ``version``: the unicast answers come back from :meth:`receive` as ``found``."""
        m = self.members.get(member)
        source = None if m is None else next(
            (s for s in m.sources if s.ip.version == version), None)
        if m is None or source is None or self.method != ICMP:
            return []
        m.discovery.append(seq)
        group = wire.ALL_HOSTS_V4 if version == 4 else wire.ALL_NODES_V6
        payload = self.token + struct.pack("!H", seq)
        return [wire.icmp_echo_request(source.mac, wire.multicast_mac(group), source.ip, group,
                                       self.ident, seq, payload)]

    def _transitive(self, m: ProbingMember, prober: str, seq: int) -> list[bytes]:
        dst = m.probers.get(prober)
        if dst is None:
            return []
        self._nonce = (self._nonce + 1) & 0xFFFFFFFF
        m.pending[(prober, seq)] = self._nonce
        while len(m.pending) > PENDING * max(1, len(m.probers)):
            del m.pending[next(iter(m.pending))]
        return [transitive.request(self.secret, m.mac, dst, seq, self._nonce)]

    def receive(self, member: str, frame: bytes) -> Received:
        """Match one frame that arrived on ``member``'s control sockets."""
        m = self.members.get(member)
        if m is None:
            return NOTHING
        if frame[12:14] == _TRANSITIVE:
            return self._link_layer(m, frame)
        pkt = wire.parse_control(frame)
        if isinstance(pkt, wire.Arp):
            return self._arp(m, pkt)
        if isinstance(pkt, wire.EchoReply):
            return self._echo_reply(m, pkt)
        if isinstance(pkt, wire.NeighborSolicitation):
            return self._solicitation(m, pkt)
        if (isinstance(pkt, wire.NeighborAdvertisement) and pkt.target_ip in m.resolving
                and pkt.target_lladdr and any(pkt.dst_mac == s.mac for s in m.sources)):
            m.neighbors[pkt.target_ip] = pkt.target_lladdr  # the answer to our question
            m.resolving.discard(pkt.target_ip)
            if pkt.router:
                return Received(found=((pkt.target_ip, True),))
        return NOTHING

    def _link_layer(self, m: ProbingMember, frame: bytes) -> Received:
        t = transitive.parse(frame)
        if t is None or t.dst_mac != m.mac or not transitive.authentic(self.secret, t):
            return NOTHING
        if t.kind == transitive.REQUEST:
            return Received(echoes=(transitive.reply(self.secret, t),))
        prober = next((name for name, mac in m.probers.items() if mac == t.src_mac), None)
        if prober is None or m.pending.get((prober, t.seq)) != t.nonce:
            return NOTHING  # not from a member we probe, or not awaited (a replay)
        del m.pending[(prober, t.seq)]
        return Received(replies=((MEMBER_PREFIX + prober, t.seq),))

    def _echo_reply(self, m: ProbingMember, pkt: wire.EchoReply) -> Received:
        source = m.source_for(pkt.dst_ip)
        if (source is None or pkt.dst_mac != source.mac or pkt.dst_ip != source.ip
                or pkt.ident != self.ident or pkt.payload[:TOKEN_LEN] != self.token
                or pkt.payload[TOKEN_LEN:TOKEN_LEN + 2] != struct.pack("!H", pkt.seq)):
            return NOTHING
        if pkt.src_ip in m.targets:
            m.neighbors[pkt.src_ip] = pkt.src_mac
            return Received(replies=((str(pkt.src_ip), pkt.seq),))
        if pkt.seq in m.discovery and _unicast(pkt.src_ip):
            return Received(found=((pkt.src_ip, False),))
        return NOTHING

    def _solicitation(self, m: ProbingMember, pkt: wire.NeighborSolicitation) -> Received:
        source = next((s for s in m.sources if s.ip == pkt.target_ip and s.answers), None)
        if source is None:
            return NOTHING
        if pkt.src_ip.is_unspecified:
            return NOTHING  # duplicate address detection: not a question to answer
        if (pkt.src_ip in m.targets and pkt.source_lladdr
                and pkt.src_ip not in m.neighbors):  # a question to us, first only
            m.neighbors[pkt.src_ip] = pkt.source_lladdr
        dst_mac = pkt.source_lladdr or pkt.src_mac
        assert isinstance(source.ip, IPv6Address)
        return Received(answers=(
            wire.neighbor_advertisement(source.mac, source.ip, dst_mac, pkt.src_ip),))

    def _arp(self, m: ProbingMember, pkt: wire.Arp) -> Received:
        source = next((s for s in m.sources if s.ip.version == 4), None)
        if source is None:
            return NOTHING
        assert isinstance(source.ip, IPv4Address)
        if pkt.op == 1:
            # Only a question to us teaches us the asker's MAC (as Linux does): a broadcast
            # request naming a target as sender, from anyone, must not redirect our probes.
            # A data address's questions are the host's to answer.
            if (source.answers and pkt.target_ip == source.ip
                    and pkt.sender_ip != source.ip):
                if pkt.sender_ip in m.targets and pkt.sender_ip not in m.neighbors:
                    m.neighbors[pkt.sender_ip] = pkt.sender_mac  # a first question to us
                return Received(answers=(
                    wire.arp_reply(source.mac, source.ip, pkt.sender_mac, pkt.sender_ip),))
            return NOTHING
        # A reply: to us, about a target, answering a question we asked.
        if (pkt.dst_mac != source.mac or pkt.target_mac != source.mac
                or pkt.target_ip != source.ip or pkt.sender_ip not in m.targets):
            return NOTHING
        if pkt.sender_ip in m.resolving:  # the answer to our question; others teach nothing
            m.neighbors[pkt.sender_ip] = pkt.sender_mac
            m.resolving.discard(pkt.sender_ip)
        if self.method == ARP and pkt.sender_ip in m.last_seq:
            return Received(replies=((str(pkt.sender_ip), m.last_seq.pop(pkt.sender_ip)),))
        return NOTHING

    @staticmethod
    def _resolve(source: Source, ip: IPAddress) -> bytes:
        if isinstance(ip, IPv4Address):
            assert isinstance(source.ip, IPv4Address)
            return wire.arp_request(source.mac, source.ip, ip)
        assert isinstance(source.ip, IPv6Address)
        return wire.neighbor_solicitation(source.mac, source.ip, ip)


_TRANSITIVE = struct.pack("!H", transitive.ETH_P_TRANSITIVE)


def _unicast(ip: IPAddress) -> bool:
    """Whether ``ip`` may be a probe target (an all-hosts ping's answer from it)."""
    return not (ip.is_multicast or ip.is_unspecified or ip.is_loopback
                or (isinstance(ip, IPv4Address) and ip == IPv4Address("255.255.255.255")))
