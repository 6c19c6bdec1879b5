"""The classic BPF programs that decide, in the kernel, which frames reach which socket.

Owns three programs and their assembler (symbolic jumps, resolved to offsets): a member's
data socket's :func:`data_filter`, which keeps the daemon's own probe traffic (replies to its
probes, its all-hosts pings seen by another member, link-layer probes to the member's NIC)
from the host's stack; the probe sockets' :func:`probe_filter`, which passes only the control
frames the prober reads; and :func:`transitive_filter`, the link-layer probes' socket's. They
run in the kernel for every frame, so each test is a few instructions; :func:`attach` puts one
on a socket (``SO_ATTACH_FILTER``), replacing the one before.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

SO_ATTACH_FILTER = 26

# Classic BPF: the few instructions our filters use.
_LDW, _LDH, _LDB = 0x20, 0x28, 0x30  # BPF_LD | BPF_W/H/B | BPF_ABS: A = the bytes at k
_LDWI, _LDHI, _LDBI = 0x40, 0x48, 0x50  # BPF_LD | BPF_W/H/B | BPF_IND: A = the bytes at X + k
_LDLEN = 0x80  # BPF_LD | BPF_W | BPF_LEN: A = the frame's length
_LDXMSH = 0xB1  # BPF_LDX | BPF_B | BPF_MSH: X = 4 * (byte at k & 0xf), an IPv4 header length
_SUBX = 0x1C  # BPF_ALU | BPF_SUB | BPF_X: A -= X
_JEQ, _JGE, _JSET, _RET = 0x15, 0x35, 0x45, 0x06
_JUMPS = (_JEQ, _JGE, _JSET)

#: What a filter returns to pass a frame whole (a GSO super-frame is 64 KiB and more).
_WHOLE = 0xFFFFFFFF
#: A probe socket keeps this much of a frame: more than any control frame it reads.
PROBE_SNAP = 0x40000

ETH_P_TRANSITIVE = 0x88B5  # the transitive probes' ethertype (vnicbond.wire.transitive)

Program = list[tuple[int, int, int, int]]
#: A BPF program that takes no frame.
NOTHING: Program = [(_RET, 0, 0, 0)]

#: Up to this many MACs and question addresses in one probe filter.
MAX_PROBE_MACS = 4
MAX_QUESTION_IPS = 4


class _Assembler:
    """Classic BPF with symbolic forward jumps: ``op(_JEQ, k, "label", "other")``."""

    def __init__(self) -> None:
        self.labels: dict[str, int] = {}
        self.prog: list[tuple[int, object, object, int]] = []

    def at(self, label: str) -> None:
        self.labels[label] = len(self.prog)

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.prog.append((code, jt, jf, k))

    def program(self) -> Program:
        # A jump's offsets count from the instruction after it; jumps only go forward.
        L = self.labels
        return [(code, L[jt] - i - 1, L[jf] - i - 1, k)  # type: ignore[index]
                if code in _JUMPS else (code, 0, 0, k)
                for i, (code, jt, jf, k) in enumerate(self.prog)]


def data_filter(ident: int, token4: bytes, mac: bytes) -> Program:
    """A BPF program for a member's data socket that hides the daemon's own probe traffic
    from the host: it drops transitive probes (ethertype 0x88B5 to the member's own NIC MAC
    ``mac``, as the daemon sends them; a guest's frames of that ethertype pass), and the echo
    replies to our
    probes and our echo requests (another member's all-hosts pings, which the host would
    otherwise answer, and so be found as a target), IPv4 ICMP type 0 or 8 (not a fragment,
    any header length) or ICMPv6 type 129 or 128 (right after the IPv6 header), whose
    identifier is ``ident`` and whose payload starts with ``token4`` (the first 4 bytes of
    the daemon's token). Everything else passes whole.

    The frame is seen from its Ethernet header, a VLAN tag already taken off by the kernel.
    The program never loads past the end of a frame (the kernel drops a frame on such a
    load): a frame too short to be one of our replies passes whole. Most frames cost 3 to 5
    instructions; an ICMP echo at most 20.
    """
    if not 0 <= ident <= 0xFFFF:
        raise ValueError(f"ident must fit in 16 bits, got {ident}")
    if not isinstance(token4, bytes) or len(token4) != 4:
        raise ValueError(f"token4 must be 4 bytes, got {token4!r}")
    token = int.from_bytes(token4, "big")
    a = _Assembler()
    a.op(_LDH, 12)                               # ethertype
    a.op(_JEQ, 0x0800, "v4", "not_v4")
    a.at("not_v4")
    a.op(_JEQ, 0x86DD, "v6", "not_v6")
    a.at("not_v6")
    a.op(_JEQ, ETH_P_TRANSITIVE, "t_mac", "accept")
    a.at("t_mac")
    a.op(_LDW, 0)                                # destination MAC, bytes 0-3
    a.op(_JEQ, int.from_bytes(mac[:4], "big"), "t_mac2", "accept")
    a.at("t_mac2")
    a.op(_LDH, 4)
    a.op(_JEQ, int.from_bytes(mac[4:], "big"), "drop", "accept")
    # IPv4: Ethernet 14 + IPv4 20 + ICMP 8 + 4 bytes of token = 46 at the least.
    a.at("v4")
    a.op(_LDLEN)
    a.op(_JGE, 46, "v4_proto", "accept")
    a.at("v4_proto")
    a.op(_LDB, 23)                               # IPv4 protocol
    a.op(_JEQ, 1, "v4_frag", "accept")
    a.at("v4_frag")
    a.op(_LDH, 20)                               # flags and fragment offset
    a.op(_JSET, 0x3FFF, "accept", "v4_ihl")      # More Fragments or an offset: a fragment
    a.at("v4_ihl")
    a.op(_LDXMSH, 14)                            # X = IPv4 header length
    a.op(_LDLEN)
    a.op(_SUBX)                                  # A = length - header length, from 0 ...
    a.op(_JSET, 0x80000000, "accept", "v4_room")  # ... or below: a header longer than the frame
    a.at("v4_room")
    a.op(_JGE, 26, "v4_type", "accept")          # 14 + ICMP 8 + token 4 after the header
    a.at("v4_type")
    a.op(_LDBI, 14)                              # ICMP type
    a.op(_JEQ, 0, "v4_ident", "v4_request")      # echo reply
    a.at("v4_request")
    a.op(_JEQ, 8, "v4_ident", "accept")          # echo request (another member's)
    a.at("v4_ident")
    a.op(_LDHI, 18)                              # ICMP identifier
    a.op(_JEQ, ident, "v4_token", "accept")
    a.at("v4_token")
    a.op(_LDWI, 22)                              # first 4 bytes of the payload
    a.op(_JEQ, token, "drop", "accept")
    # IPv6: Ethernet 14 + IPv6 40 + ICMPv6 8 + 4 bytes of token = 66 at the least.
    a.at("v6")
    a.op(_LDLEN)
    a.op(_JGE, 66, "v6_nh", "accept")
    a.at("v6_nh")
    a.op(_LDB, 20)                               # next header
    a.op(_JEQ, 58, "v6_type", "accept")
    a.at("v6_type")
    a.op(_LDB, 54)                               # ICMPv6 type
    a.op(_JEQ, 129, "v6_ident", "v6_request")    # echo reply
    a.at("v6_request")
    a.op(_JEQ, 128, "v6_ident", "accept")        # echo request (another member's)
    a.at("v6_ident")
    a.op(_LDH, 58)
    a.op(_JEQ, ident, "v6_token", "accept")
    a.at("v6_token")
    a.op(_LDW, 62)
    a.op(_JEQ, token, "drop", "accept")
    a.at("accept")
    a.op(_RET, _WHOLE)
    a.at("drop")
    a.op(_RET, 0)
    return a.program()


def check_probe_args(macs: Sequence[bytes], question_ips: Sequence[bytes]) -> None:
    """Raise ValueError unless there are 1 to 4 MACs and at most 4 question addresses."""
    if isinstance(macs, (bytes, bytearray)) or not 1 <= len(macs) <= MAX_PROBE_MACS:
        raise ValueError(f"a probe filter takes 1 to {MAX_PROBE_MACS} MACs in a list, "
                         f"got {macs!r}")
    for mac in macs:
        if not isinstance(mac, bytes) or len(mac) != 6:
            raise ValueError(f"a MAC is 6 bytes, got {mac!r}")
    if isinstance(question_ips, (bytes, bytearray)) or len(question_ips) > MAX_QUESTION_IPS:
        raise ValueError(f"a probe filter takes 0 to {MAX_QUESTION_IPS} question addresses in "
                         f"a list, got {question_ips!r}")
    for ip in question_ips:
        if not isinstance(ip, bytes) or len(ip) not in (4, 16):
            raise ValueError(f"a question address is 4 or 16 packed bytes, got {ip!r}")


def probe_filter(macs: Sequence[bytes], question_ips: Sequence[bytes], kind: str) -> Program:
    """A BPF program passing one member's probe socket only what the prober reads.

    ``kind`` ``"replies"``: unicast for any of ``macs`` (1 to 4: the member's own MAC, the
    group's when it probes from a data address) that answers something we sent: ARP replies,
    ICMP and ICMPv6 echo replies, neighbour advertisements. ``"questions"``: ARP requests for
    any IPv4 address of ``question_ips`` (0 to 4 packed addresses, of either family: the
    member's test and link-local addresses), neighbour solicitations for any IPv6 one, unicast
    or not; with none, nothing. Two sockets, two queues: a flood of questions (which anyone may
    send) cannot crowd out a probe reply. Bulk traffic and anything else aimed at these
    addresses (TCP, UDP, echo requests, ICMP errors, other hosts' ARP) never leaves the kernel.
    """
    check_probe_args(macs, question_ips)
    a = _Assembler()
    op, at = a.op, a.at
    if kind == "replies":
        for i, mac in enumerate(macs):
            miss = f"mac{i + 1}" if i + 1 < len(macs) else "drop"
            at(f"mac{i}")
            op(_LDW, 0)                          # destination MAC, bytes 0-3
            op(_JEQ, int.from_bytes(mac[:4], "big"), f"lo{i}", miss)
            at(f"lo{i}")
            op(_LDH, 4)
            op(_JEQ, int.from_bytes(mac[4:], "big"), "type", miss)
        at("type")
        op(_LDH, 12)
        op(_JEQ, 0x0806, "arp", "not_arp")
        at("not_arp")
        op(_JEQ, 0x0800, "v4", "not_v4")
        at("not_v4")
        op(_JEQ, 0x86DD, "v6", "drop")
        at("arp")
        op(_LDH, 20)                             # ARP operation
        op(_JEQ, 2, "accept", "drop")
        at("v4")
        op(_LDB, 23)                             # IPv4 protocol
        op(_JEQ, 1, "icmp", "drop")
        at("icmp")
        op(_LDXMSH, 14)                          # X = IPv4 header length
        op(_LDBI, 14)                            # ICMP type
        op(_JEQ, 0, "accept", "drop")            # echo reply
        at("v6")
        op(_LDB, 20)                             # IPv6 next header
        op(_JEQ, 58, "v6type", "drop")
        at("v6type")
        op(_LDB, 54)                             # ICMPv6 type
        op(_JEQ, 129, "accept", "na")            # echo reply
        at("na")
        op(_JEQ, 136, "accept", "drop")
    elif kind == "questions":
        v4 = [ip for ip in question_ips if len(ip) == 4]
        v6 = [ip for ip in question_ips if len(ip) == 16]
        if not question_ips:
            return [(_RET, 0, 0, 0)]
        op(_LDH, 12)
        if v4:
            op(_JEQ, 0x0806, "arp", "not_arp" if v6 else "drop")
        if v6:
            at("not_arp")
            op(_JEQ, 0x86DD, "nd", "drop")
        if v4:
            at("arp")
            op(_LDH, 20)                         # ARP operation
            op(_JEQ, 1, "tpa", "drop")
            at("tpa")
            op(_LDW, 38)                         # target protocol address
            for i, ip in enumerate(v4):
                op(_JEQ, int.from_bytes(ip, "big"), "accept",
                   f"tpa{i + 1}" if i + 1 < len(v4) else "drop")
                at(f"tpa{i + 1}")
        if v6:
            at("nd")
            op(_LDB, 20)
            op(_JEQ, 58, "v6type", "drop")
            at("v6type")
            op(_LDB, 54)
            op(_JEQ, 135, "target0", "drop")     # neighbour solicitation
            for i, ip in enumerate(v6):          # its target address, bytes 62-77
                miss = f"target{i + 1}" if i + 1 < len(v6) else "drop"
                at(f"target{i}")
                for w in range(4):
                    op(_LDW, 62 + 4 * w)
                    nxt = f"t{i}_{w + 1}" if w < 3 else "accept"
                    op(_JEQ, int.from_bytes(ip[4 * w:4 * w + 4], "big"), nxt, miss)
                    if w < 3:
                        at(nxt)
    else:
        raise ValueError(f"no probe filter of kind {kind!r}")
    at("accept")
    op(_RET, PROBE_SNAP)
    at("drop")
    op(_RET, 0)
    return a.program()


def attach(sock: socket.socket, prog: Program) -> None:
    """Put ``prog`` on ``sock`` (the kernel checks it: EINVAL if it refuses)."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def attach_probe_filter(sock: socket.socket, macs: Sequence[bytes],
                        question_ips: Sequence[bytes], kind: str) -> None:
    """(Re)attach :func:`probe_filter` to ``sock`` (a reload, an election or a new MAC may
    change what the member probes from)."""
    attach(sock, probe_filter(macs, question_ips, kind))


def attach_data_filter(sock: socket.socket, ident: int, token4: bytes, mac: bytes) -> None:
    """(Re)attach :func:`data_filter` to a member's data socket."""
    attach(sock, data_filter(ident, token4, mac))



def transitive_filter() -> Program:
    """A BPF program passing only frames of ethertype 0x88B5 (transitive probes)."""
    a = _Assembler()
    a.op(_LDH, 12)
    a.op(_JEQ, ETH_P_TRANSITIVE, "accept", "drop")
    a.at("accept")
    a.op(_RET, _WHOLE)
    a.at("drop")
    a.op(_RET, 0)
    return a.program()
