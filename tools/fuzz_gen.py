"""The fuzzer's frames (``tools/fuzz``): every class of hostile or broken frame, from the wire
side and from the TAP side, deterministic given a seed.

:class:`Gen` has one method per frame class, each drawing from one seeded random generator
per side, which is why it is one class of some 380 lines: the classes share that generator
and the choice of destinations and addresses. The bytes come from tools/fuzz_frames.py.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from tools.fuzz_frames import (
    F_DATA_VALID,
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    arp,
    eth,
    icmp,
    icmp6,
    ipv4,
    ipv6,
    pack_ip4,
    pack_ip6,
    pack_mac,
    tcp,
    udp,
    vnet,
)

GROUP = "ipmp0"
#: The ports of the fuzz's TCP transfers: no generated segment uses them.
TRANSFER_PORTS = (5201, 5202)


# -- what the frames are aimed at ---------------------------------------------------------------
BROADCAST = b"\xff" * 6
MULTICASTS = (
    bytes.fromhex("333300000001"),  # all nodes
    bytes.fromhex("3333ff000010"),  # solicited-node group of 2001:db8::10
    bytes.fromhex("333300000002"),  # all routers
    bytes.fromhex("01005e000001"),  # 224.0.0.1
    bytes.fromhex("01005e7ffffa"),  # SSDP
)
JUNK_V4 = [f"198.18.0.{200 + i}" for i in range(10)]
JUNK_V6 = [f"2001:db8::{200 + i}" for i in range(10)]


@dataclass
class Ctx:
    """What the generators need to know about the lab and the daemon (JSON-serialisable)."""

    group_mac: str
    members: dict[str, str]  # name -> own MAC, in configuration order
    active: str
    tests: dict[str, str]  # name -> test address (IPv4 or IPv6)
    peer_mac: str
    tap_mtu: int = 1500
    wire_mtu: int = 1500
    data_v4: str = "198.18.0.10"
    data_v6: str = "2001:db8::10"
    peer_v4: str = "198.18.0.2"
    peer_v6: str = "2001:db8::2"

    @staticmethod
    def from_json(text: str) -> Ctx:
        return Ctx(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def tests_v4(self) -> dict[str, str]:
        return {m: ip for m, ip in self.tests.items() if ":" not in ip}

    def tests_v6(self) -> dict[str, str]:
        return {m: ip for m, ip in self.tests.items() if ":" in ip}

    def mac(self, dest: str) -> bytes:
        """The MAC of a named destination: ``group`` or a member's name."""
        if dest == "group":
            return pack_mac(self.group_mac)
        return pack_mac(self.members[dest])


# -- the generators -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    """One generated frame: its class, where it is aimed (``group``, a member's name,
    ``broadcast``, ``multicast``, ``random``, ``peer``) and its bytes; ``vnet`` is the
    virtio-net header to send with it (None: a plain socket)."""

    cls: str
    dest: str
    data: bytes
    vnet: bytes | None = None
    #: A flood frame: the member whose test address it asks for ("" if none).
    about: str = ""


class Gen:
    """Builds frames of every class from one seeded random generator."""

    def __init__(self, ctx: Ctx, seed: int, side: str) -> None:
        self.ctx = ctx
        self.rng = random.Random(f"{seed}-{side}")
        self.side = side
        self.src = pack_mac(ctx.peer_mac) if side == "peer" else pack_mac(ctx.group_mac)
        self.counters: dict[str, int] = {}
        self.known = {pack_mac(ctx.group_mac), pack_mac(ctx.peer_mac), BROADCAST,
                      *(pack_mac(m) for m in ctx.members.values())}

    def next_index(self, name: str) -> int:
        """0, 1, 2, ... per name: classes walk every ICMP type in turn."""
        value = self.counters.get(name, 0)
        self.counters[name] = value + 1
        return value

    def rand(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def random_unicast(self) -> bytes:
        while True:
            mac = bytes([self.rng.randrange(256) & 0xFE]) + self.rand(5)
            if mac not in self.known and any(mac):
                return mac

    def dest(self, kinds: Iterable[str] = ("group", "member", "broadcast", "multicast",
                                           "random")) -> tuple[str, bytes]:
        """A destination of one of ``kinds``; ``member`` picks one of the members."""
        kind = self.rng.choice(list(kinds))
        if kind == "member":
            kind = self.rng.choice(list(self.ctx.members))
        if kind in self.ctx.members or kind == "group":
            return kind, self.ctx.mac(kind)
        if kind == "broadcast":
            return kind, BROADCAST
        if kind == "multicast":
            return kind, self.rng.choice(MULTICASTS)
        if kind == "peer":
            return kind, pack_mac(self.ctx.peer_mac)
        return "random", self.random_unicast()

    def ip_target(self) -> tuple[str, bytes, bytes]:
        """(destination, MAC, IPv4) of an address of the bond: the data address through the
        group's MAC, or a member's test address through the member's own MAC. From the TAP
        side: the peer."""
        if self.side == "tap":
            return "peer", pack_mac(self.ctx.peer_mac), pack_ip4(self.ctx.peer_v4)
        choices = [("group", self.ctx.data_v4), *self.ctx.tests_v4().items()]
        dest, ip = self.rng.choice(choices)
        return dest, self.ctx.mac(dest), pack_ip4(ip)

    def src_v4(self) -> bytes:
        if self.side == "tap":
            return pack_ip4(self.ctx.data_v4)
        return pack_ip4(self.rng.choice([self.ctx.peer_v4, *JUNK_V4]))

    def src_v6(self) -> bytes:
        if self.side == "tap":
            return pack_ip6(self.ctx.data_v6)
        return pack_ip6(self.rng.choice(JUNK_V6))

    def dst_v6(self) -> bytes:
        return pack_ip6(self.ctx.peer_v6 if self.side == "tap" else self.ctx.data_v6)

    def l3_dest(self) -> tuple[str, bytes]:
        if self.side == "tap":
            return self.dest(("peer", "broadcast", "random"))
        return self.dest()

    # Each class: one frame per call.
    def runt(self) -> Frame:
        dest, mac = self.dest(("group", "member", "broadcast", "multicast", "random")
                              if self.side == "peer" else ("peer", "broadcast", "random"))
        n = self.rng.randrange(14, 21) if self.side == "peer" else self.rng.randrange(1, 21)
        frame = (mac + self.src + self.rand(8))[:n]
        return Frame("runt" if self.side == "peer" else "tap-runt", dest, frame)

    def trunc_l3(self) -> Frame:
        dest, mac = self.l3_dest()
        kind = self.rng.randrange(3)
        if kind == 0:
            full = ipv4(self.src_v4(), self.ip_target()[2], 1, icmp(8, 0, self.rand(8)))
            ethertype, cut = 0x0800, self.rng.randrange(0, 20)
        elif kind == 1:
            full = ipv6(self.src_v6(), self.dst_v6(), 58,
                        icmp6(self.src_v6(), self.dst_v6(), 128, 0, self.rand(8)))
            ethertype, cut = 0x86DD, self.rng.randrange(0, 40)
        else:
            full = arp(1, self.src, pack_ip4(self.rng.choice(JUNK_V4)), bytes(6),
                       self.ip_target()[2])
            ethertype, cut = 0x0806, self.rng.randrange(0, 28)
        return Frame(self._cls("trunc-l3"), dest, eth(mac, self.src, ethertype, full[:cut]))

    def _cls(self, name: str) -> str:
        return name if self.side == "peer" else f"tap-{name}"

    def ipv4_ihl(self) -> Frame:
        dest, mac, dst_ip = self.ip_target()
        if self.side == "tap" or self.rng.random() < 0.3:
            dest, mac = self.l3_dest()
        proto = self.rng.choice([1, 6, 17, 0, 255])
        payload = self.rand(self.rng.randrange(0, 40))
        if self.rng.random() < 0.5:
            ihl = self.rng.randrange(0, 5)  # too small
            packet = ipv4(self.src_v4(), dst_ip, proto, payload, ihl=ihl,
                          good=self.rng.random() < 0.8)
        else:
            ihl = self.rng.randrange(6, 16)  # claims options the frame does not have
            packet = ipv4(self.src_v4(), dst_ip, proto, payload, ihl=ihl)
            packet = packet[:20 + self.rng.randrange(0, ihl * 4 - 20)]
        return Frame(self._cls("ipv4-ihl"), dest, eth(mac, self.src, 0x0800, packet))

    def ipv4_len(self) -> Frame:
        dest, mac, dst_ip = self.ip_target()
        if self.side == "tap" or self.rng.random() < 0.3:
            dest, mac = self.l3_dest()
        body = icmp(self.rng.choice([0, 8, 3]), 0, self.rand(self.rng.randrange(4, 60)))
        real = 20 + len(body)
        total = self.rng.choice([0, 1, 19, 20, real - 1, real + 1, real + 100, 65535,
                                 self.rng.randrange(65536)])
        frag = self.rng.choice([0x4000, 0x2000, 0x0001, 0x3FFF, 0])
        packet = ipv4(self.src_v4(), dst_ip, 1, body, total=total, frag=frag)
        return Frame(self._cls("ipv4-len"), dest, eth(mac, self.src, 0x0800, packet))

    def ipv6_ext(self) -> Frame:
        dest, mac = self.l3_dest()
        if self.side == "peer" and self.rng.random() < 0.3:
            dest = self.rng.choice(list(self.ctx.members))
            mac = self.ctx.mac(dest)
        src, dst = self.src_v6(), self.dst_v6()
        final = icmp6(src, dst, self.rng.choice([128, 129, 135, 1]), 0, self.rand(16))
        shape = self.rng.choice(["long", "loop", "truncated", "fragments", "hbh-late"])
        kinds = [0, 60, 43, 44, 51, 135, 139, 140]
        chain = b""
        count = self.rng.randrange(20, 120) if shape in ("long", "loop") else \
            self.rng.randrange(1, 8)
        first = 60 if shape == "loop" else self.rng.choice(kinds)
        current = first
        for i in range(count):
            last = i == count - 1
            if shape == "loop":
                nxt = 60
            elif last and shape != "truncated":
                nxt = 58
            else:
                nxt = self.rng.choice(kinds)
            if current == 44:  # fragment header: 8 bytes, offset and M flag
                frag = self.rng.randrange(0, 0x10000) if shape == "fragments" else 0
                chain += struct.pack("!BBHI", nxt, 0, frag, self.rng.randrange(1 << 32))
            elif current == 51:  # AH counts in 4-byte units, minus 2
                units = self.rng.randrange(1, 4)
                chain += struct.pack("!BB", nxt, units) + self.rand((units + 2) * 4 - 2)
            else:
                units = self.rng.choice([0, 0, 1, 2, 255]) if count < 8 else 0
                body = bytes([1, 4, 0, 0, 0, 0]) + bytes(units * 8)  # PadN
                chain += struct.pack("!BB", nxt, units) + body
            current = nxt
        payload = chain + (final if shape not in ("loop", "truncated") else b"")
        if shape == "truncated":
            payload = payload[:max(0, len(payload) - self.rng.randrange(1, 9))]
        plen = self.rng.choice([None, None, 0, len(payload) + 64, 65535])
        packet = ipv6(src, dst, first, payload, plen=plen)
        return Frame(self._cls("ipv6-ext"), dest, eth(mac, self.src, 0x86DD, packet))

    def arp_odd(self) -> Frame:
        if self.side == "peer":
            dest, mac = self.dest(("broadcast", "broadcast", "member", "group"))
            tpa = pack_ip4(self.rng.choice([self.ctx.data_v4, *self.ctx.tests_v4().values(),
                                        self.rng.choice(JUNK_V4)]))
        else:
            dest, mac = self.dest(("broadcast", "peer"))
            tpa = pack_ip4(self.rng.choice([self.ctx.peer_v4, *JUNK_V4]))
        spa = pack_ip4(self.rng.choice(JUNK_V4))
        shape = self.rng.randrange(4)
        if shape == 0:  # right lengths, odd opcode
            packet = arp(self.rng.choice([0, 3, 4, 8, 9, 0xFFFF, self.rng.randrange(65536)]),
                         self.src, spa, bytes(6), tpa)
        elif shape == 1:  # lengths that do not match what follows
            packet = arp(self.rng.choice([1, 2]), self.src, spa, bytes(6), tpa,
                         hlen=self.rng.choice([0, 1, 5, 7, 16, 255]),
                         plen=self.rng.choice([0, 1, 3, 5, 16, 255]))
        elif shape == 2:  # odd hardware/protocol types
            packet = arp(self.rng.choice([1, 2]), self.src, spa, bytes(6), tpa,
                         htype=self.rng.choice([0, 6, 0xFFFF, self.rng.randrange(65536)]),
                         ptype=self.rng.choice([0x86DD, 0, 0xFFFF, 0x0806]))
        else:  # real lengths for other address sizes: 16-byte protocol addresses
            hlen, plen = self.rng.choice([(6, 16), (8, 4), (20, 4), (6, 0), (0, 0)])
            packet = arp(1, (self.src + bytes(32))[:hlen], (spa * 8)[:plen], bytes(hlen),
                         (tpa * 8)[:plen], ptype=self.rng.choice([0x0800, 0x86DD]))
        if self.rng.random() < 0.2:
            packet = packet[:self.rng.randrange(8, len(packet) + 1)]
        return Frame(self._cls("arp-odd"), dest, eth(mac, self.src, 0x0806, packet))

    def icmp_any(self) -> Frame:
        k = self.next_index("icmp")
        kind, code = k % 256, (k // 256 + self.rng.randrange(4)) % 16
        dest, mac, dst_ip = self.ip_target()
        src_ip = self.src_v4()
        if kind in (3, 4, 5, 11, 12):  # errors quote a header: an unused flow, never ours
            quoted = ipv4(pack_ip4(self.ctx.data_v4), pack_ip4(self.rng.choice(JUNK_V4)),
                          self.rng.choice([1, 6, 17]), self.rand(8))
            body = struct.pack("!HH", 0, self.rng.choice([0, 68, 576, 1280, 65535])) + quoted
        else:
            body = self.rand(self.rng.randrange(4, 64))
        packet = ipv4(src_ip, dst_ip, 1, icmp(kind, code, body, good=self.rng.random() < 0.9))
        return Frame("icmp", dest, eth(mac, self.src, 0x0800, packet))

    def icmp6_any(self) -> Frame:
        k = self.next_index("icmp6")
        kind, code = k % 256, (k // 256 + self.rng.randrange(4)) % 16
        dest, mac = self.dest(("group", "member", "multicast"))
        src = self.src_v6()
        dst = pack_ip6(self.rng.choice([self.ctx.data_v6, "ff02::1", "ff02::1:ff00:10"])) \
            if dest == "multicast" else pack_ip6(self.ctx.tests_v6().get(dest, self.ctx.data_v6))
        body = self.rand(self.rng.randrange(4, 48))
        if kind in (135, 136, 137):  # never a target that is in use
            body = body[:4] + pack_ip6(self.rng.choice(JUNK_V6)) + body[20:]
        packet = ipv6(src, dst, 58, icmp6(src, dst, kind, code, body,
                                          good=self.rng.random() < 0.9),
                      hlim=self.rng.choice([1, 64, 255]))
        return Frame("icmp6", dest, eth(mac, self.src, 0x86DD, packet))

    def probe_forgery(self) -> Frame:
        dest = self.rng.choice(list(self.ctx.tests))
        mac = self.ctx.mac(dest)
        seq = self.rng.randrange(65536)
        body = struct.pack("!HH", self.rng.randrange(65536), seq) + self.rand(8) + \
            struct.pack("!H", seq) + self.rand(self.rng.randrange(0, 16))
        test = self.ctx.tests[dest]
        if ":" in test:  # an ICMPv6 echo reply from the target, or from a stranger
            src6 = pack_ip6(self.rng.choice([self.ctx.peer_v6, self.ctx.peer_v6, JUNK_V6[0]]))
            packet = ipv6(src6, pack_ip6(test), 58, icmp6(src6, pack_ip6(test), 129, 0, body))
            return Frame("probe-forgery", dest, eth(mac, self.src, 0x86DD, packet))
        src_ip = pack_ip4(self.rng.choice([self.ctx.peer_v4, self.ctx.peer_v4, JUNK_V4[0]]))
        packet = ipv4(src_ip, pack_ip4(test), 1, icmp(0, 0, body))
        return Frame("probe-forgery", dest, eth(mac, self.src, 0x0800, packet))

    def nd_bad(self) -> Frame:
        kind = self.rng.choice([135, 136])
        if self.side == "peer":
            dest, mac = self.dest(("multicast", "group", "member"))
            target_text = self.rng.choice([self.ctx.data_v6, *self.ctx.tests_v6().values(),
                                           *self.ctx.tests_v6().values(), *JUNK_V6[:3],
                                           "ff02::1"])
            target = pack_ip6(target_text)
            dst = pack_ip6(self.ctx.tests_v6().get(dest, self.ctx.data_v6))
            if dest == "multicast":  # the target's solicited-node group
                node = target if target[0] != 0xFF else pack_ip6(self.ctx.data_v6)
                dst = pack_ip6("ff02::1:ff00:0")[:13] + node[13:]
                mac = bytes.fromhex("3333ff") + node[13:]
        else:
            dest, mac = self.dest(("broadcast", "peer"))
            target = pack_ip6(self.rng.choice([*JUNK_V6[:3], "ff02::1"]))
            dst = pack_ip6("ff02::1")
        src = pack_ip6(self.rng.choice([*JUNK_V6, "::"])) if self.side == "peer" else \
            pack_ip6(self.ctx.data_v6)
        shape = self.rng.randrange(6)
        lladdr = self.src
        options = {
            0: bytes([1, 0]) + lladdr,  # length 0: a parser that loops on it never ends
            1: bytes([1, 3]) + lladdr,  # runs past the end
            2: bytes([2 if kind == 135 else 1, 2]) + lladdr + bytes(8),  # other type, long
            3: bytes([1, 1]) + lladdr + bytes([2, 1]) + lladdr + bytes([1, 1]) + lladdr,
            4: bytes([1]),  # a truncated option header
            5: bytes([self.rng.randrange(256), self.rng.randrange(0, 3)]) + self.rand(14),
        }[shape]
        flags = self.rng.choice([0, 0x20, 0x40, 0x60, 0xE0])
        body = struct.pack("!B3x16s", flags, target) + options
        packet = ipv6(src, dst, 58, icmp6(src, dst, kind, 0, body), hlim=255)
        return Frame(self._cls("nd-bad"), dest, eth(mac, self.src, 0x86DD, packet))

    def jumbo(self) -> Frame:
        dest, mac = self.dest(("group", "broadcast", "random", "member"))
        top = self.ctx.wire_mtu + 14
        if self.rng.random() < 0.2:
            n = self.rng.randrange(top + 1, top + 200)  # above the wire's MTU: refused
        else:
            n = self.rng.randrange(self.ctx.tap_mtu + 15, max(self.ctx.tap_mtu + 16, top + 1))
        if self.rng.random() < 0.5:
            payload = self.rand(max(0, n - 14 - 28))
            packet = ipv4(self.src_v4(), pack_ip4(self.ctx.data_v4), 17,
                          udp(self.src_v4(), pack_ip4(self.ctx.data_v4), 9, 9, payload))
            frame = eth(mac, self.src, 0x0800, packet)[:n]
        else:
            frame = eth(mac, self.src, self.rng.randrange(0x600, 0x10000), self.rand(n - 14))
        return Frame("jumbo", dest, frame)

    def gso(self, bogus: bool) -> Frame:
        """A TCP super-frame with a virtio-net header, well formed or lying."""
        if self.side == "peer":
            dest, mac = self.dest(("group", "group", "broadcast", "member"))
            src_ip, dst_ip = pack_ip4(self.rng.choice(JUNK_V4)), pack_ip4(self.ctx.data_v4)
            src6, dst6 = pack_ip6(self.rng.choice(JUNK_V6)), pack_ip6(self.ctx.data_v6)
        else:
            dest, mac = self.dest(("peer", "peer", "broadcast", "random"))
            src_ip, dst_ip = pack_ip4(self.ctx.data_v4), pack_ip4(self.ctx.peer_v4)
            src6, dst6 = pack_ip6(self.ctx.data_v6), pack_ip6(self.ctx.peer_v6)
        v6 = self.rng.random() < 0.3
        sport = self.rng.randrange(1024, 5000)
        if sport in TRANSFER_PORTS:
            sport = 1024
        size = self.rng.choice([1, 100, 1400, 3000, 9000, 30000, 62000])
        payload = self.rand(size)
        if v6:
            packet = ipv6(src6, dst6, 6, tcp(src6, dst6, sport, 9, payload, v6=True))
            frame, l4, gso_type = eth(mac, self.src, 0x86DD, packet), 54, GSO_TCPV6
        else:
            packet = ipv4(src_ip, dst_ip, 6, tcp(src_ip, dst_ip, sport, 9, payload))
            frame, l4, gso_type = eth(mac, self.src, 0x0800, packet), 34, GSO_TCPV4
        n = len(frame)
        header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 1448, l4, 16)
        if not bogus:
            return Frame("gso-wire" if self.side == "peer" else "tap-gso", dest, frame, header)
        shape = self.rng.randrange(14)
        if shape == 0:
            header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 0, l4, 16)
        elif shape == 1:
            header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 1, l4, 16)
        elif shape == 2:
            header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 0xFFFF, l4, 16)
        elif shape == 3:
            header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 1448, n + 100, 16)
        elif shape == 4:
            header = vnet(F_NEEDS_CSUM, gso_type, l4 + 20, 1448, l4, n)
        elif shape == 5:
            header = vnet(F_NEEDS_CSUM, gso_type, self.rng.choice([0, n + 1, 0xFFFF]), 1448,
                          l4, 16)
        elif shape == 6:  # NEEDS_CSUM on a runt
            frame = frame[:self.rng.randrange(14, 21)]
            header = vnet(F_NEEDS_CSUM, 0, 0, 0, self.rng.randrange(0, 30),
                          self.rng.randrange(0, 30))
        elif shape == 7:  # UDP fragmentation offload, on TCP
            header = vnet(F_NEEDS_CSUM, GSO_UDP, l4 + 8, 100, l4, 6)
        elif shape == 8:  # UDP segmentation with a wrong checksum offset, or none
            header = vnet(self.rng.choice([0, F_NEEDS_CSUM]), GSO_UDP_L4, l4 + 8, 100, l4, 16)
        elif shape == 9:  # the other IP version's type
            header = vnet(F_NEEDS_CSUM, GSO_TCPV6 if gso_type == GSO_TCPV4 else GSO_TCPV4,
                          l4 + 20, 1448, l4, 16)
        elif shape == 10:  # unknown types, ECN alone, ECN on top
            header = vnet(F_NEEDS_CSUM, self.rng.choice([2, 6, 7, 0x7F, GSO_ECN,
                                                         gso_type | GSO_ECN]),
                          l4 + 20, 1448, l4, 16)
        elif shape == 11:  # odd flags
            header = vnet(self.rng.choice([F_DATA_VALID, 0x04, 0xFF]), 0, 0, 0, l4, 16)
        elif shape == 12:  # a GSO type with size 0 on a big frame: no MTU check at send
            header = vnet(0, gso_type, 0, 0, 0, 0)
        else:  # checksum on a non-TCP frame, at the last possible offset
            frame = frame[:n - 1]
            header = vnet(F_NEEDS_CSUM, 0, 0, 0, len(frame) - 2 - 10, 10)
        return Frame("gso-wire" if self.side == "peer" else "tap-vnet-bogus", dest, frame,
                     header)

    def oversize(self) -> Frame:
        dest, mac = self.dest(("peer", "broadcast"))
        n = self.rng.choice([self.ctx.tap_mtu + 14, self.ctx.tap_mtu + 15,
                             self.ctx.tap_mtu + 18, self.rng.randrange(1600, 9100),
                             self.rng.randrange(9100, 65000)])
        return Frame("tap-oversize", dest,
                     eth(mac, self.src, self.rng.randrange(0x600, 0x10000), self.rand(n - 14)))

    def garbage(self) -> Frame:
        dest, mac = (self.dest() if self.side == "peer"
                     else self.dest(("peer", "broadcast", "multicast", "random")))
        ethertype = self.rng.choice([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x8847, 0x88CC,
                                     0x8035, self.rng.randrange(0, 0x600),
                                     self.rng.randrange(0x600, 0x10000)])
        top = (self.ctx.wire_mtu if self.side == "peer" else self.ctx.tap_mtu)
        n = self.rng.choice([self.rng.randrange(0, 64), self.rng.randrange(0, top + 1)])
        if ethertype in (0x8100, 0x88A8):
            n = max(n, 10)  # a cut tag (inner ones too) never leaves the switch: Linux
            # drops it on input
        body = self.rand(n)
        if ethertype in (0x8100, 0x88A8):  # a tag, then an inner type
            inner = self.rng.choice([0x0800, 0x86DD, 0x0806, 0x8100])
            body = struct.pack("!HH", self.rng.randrange(65536), inner) + body[4:]
        return Frame(self._cls("garbage"), dest, eth(mac, self.src, ethertype, body))


def peer_frames(ctx: Ctx, seed: int, count: int) -> list[Frame]:
    """``count`` frames from the wire side, every class in turn, deterministic in ``seed``."""
    g = Gen(ctx, seed, "peer")
    makers: list[Callable[[], Frame]] = [
        g.runt, g.trunc_l3, g.ipv4_ihl, g.ipv4_len, g.ipv6_ext, g.arp_odd, g.icmp_any,
        g.icmp6_any, g.probe_forgery, g.nd_bad, g.jumbo, lambda: g.gso(False),
        lambda: g.gso(True), g.garbage]
    return [makers[i % len(makers)]() for i in range(count)]


def tap_frames(ctx: Ctx, seed: int, count: int) -> list[Frame]:
    """``count`` frames from the host side (through the TAP), deterministic in ``seed``."""
    g = Gen(ctx, seed, "tap")
    makers: list[Callable[[], Frame]] = [
        g.runt, g.garbage, g.trunc_l3, g.ipv4_ihl, g.ipv4_len, g.ipv6_ext, g.arp_odd,
        g.nd_bad, g.oversize, lambda: g.gso(True), lambda: g.gso(True), lambda: g.gso(False)]
    return [makers[i % len(makers)]() for i in range(count)]


def flood_frames(ctx: Ctx, seed: int, only: str | None = None) -> list[Frame]:
    """The flood: broadcast ARP requests for the IPv4 test addresses (answered, within the
    daemon's rate limit), the data address and a junk one, and neighbour solicitations for
    the IPv6 test addresses, from junk senders; with ``only``, all for that member's test
    address."""
    rng = random.Random(f"{seed}-flood")
    src = pack_mac(ctx.peer_mac)
    targets = [*ctx.tests.items(), ("", ctx.data_v4), ("", "198.18.0.250")]
    if only:
        targets = [(only, ctx.tests[only])]
    frames = []
    for i in range(64):
        about, target = targets[i % len(targets)]
        if ":" in target:  # an IPv6 test address: neighbour solicitations, to its group
            node, sender = pack_ip6(target), pack_ip6(rng.choice(JUNK_V6))
            group = pack_ip6("ff02::1:ff00:0")[:13] + node[13:]
            body = struct.pack("!4x16s", node) + bytes([1, 1]) + src
            packet = ipv6(sender, group, 58, icmp6(sender, group, 135, 0, body), hlim=255)
            frame = eth(bytes.fromhex("3333ff") + node[13:], src, 0x86DD, packet)
            frames.append(Frame("flood", "multicast", frame, about=about))
            continue
        packet = arp(1, src, pack_ip4(rng.choice(JUNK_V4)), bytes(6), pack_ip4(target))
        frames.append(Frame("flood", "broadcast", eth(BROADCAST, src, 0x0806, packet),
                            about=about))
    return frames


def spoof_frames(ctx: Ctx, member: str) -> list[Frame]:
    """Answers that give the probe target a MAC that is not its own, to ``member``'s MAC and
    test address: a unicast ARP reply (IPv4 test address) or a neighbour advertisement with
    Override (IPv6). Not part of the fuzz (they would move the member's probes away on
    purpose); ``--send spoof`` sends them to check that such lies change nothing."""
    mac, peer = ctx.mac(member), pack_mac(ctx.peer_mac)
    fake = bytes.fromhex("02dead00beef")
    test = ctx.tests[member]
    if ":" in test:
        src, dst = pack_ip6(ctx.peer_v6), pack_ip6(test)
        body = struct.pack("!B3x16s", 0x20, src) + bytes([2, 1]) + fake
        frame = eth(mac, peer, 0x86DD, ipv6(src, dst, 58, icmp6(src, dst, 136, 0, body),
                                              hlim=255))
    else:
        frame = eth(mac, peer, 0x0806, arp(2, fake, pack_ip4(ctx.peer_v4), mac, pack_ip4(test)))
    return [Frame("spoof", member, frame)]
