"""Answer a cut member's probes with forgeries, live, on its wire (run in the switch namespace).

``python -m tests.netns.forge_live PORT SECONDS [REPLAY.pcap]`` reads what the member sends on
switch port PORT (cut behind it: :meth:`vnicbond.lab.Lab.cut_behind`) and answers at once:

- a transitive request (ethertype 0x88B5, magic ``VBTP``, kind 1) with a reply carrying its
  sequence number and nonce, between the right MACs, but an authenticator of random bytes
  (whoever has no secret can do no better);
- an ICMP echo request with an echo reply from the address asked, with the request's
  identifier and sequence but its payload's bytes inverted (a wrong token);

and, every 5 ms, sends the frames of REPLAY.pcap (real replies captured on that port
earlier, while the member was healthy) again, in turn. Prints ``ready`` once it listens,
and at the end ``{"transitive": N, "echo": N, "replayed": N}``: the frames sent of each kind.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import sys
import time
from pathlib import Path

from vnicbond.lab.responder import checksum

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5
MAGIC = b"VBTP"
PACKET_OUTGOING = 4


def forged_transitive(frame: bytes, rng: random.Random) -> bytes | None:
    """A reply to a transitive request with the right seq and nonce and a random auth."""
    body = frame[14:]
    if len(body) < 20 or body[:4] != MAGIC or body[5] != 1:
        return None
    seq_nonce = body[6:12]
    return (frame[6:12] + frame[0:6] + struct.pack("!H", ETHERTYPE) + MAGIC + bytes([body[4], 2])
            + seq_nonce + rng.randbytes(8) + bytes(max(0, len(body) - 20)))


def forged_echo(frame: bytes) -> bytes | None:
    """An echo reply to an IPv4 echo request, its payload inverted (a wrong token)."""
    if frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if len(ip) < ihl + 8 or ip[9] != 1 or ip[ihl] != 8:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    icmp = ip[ihl:total]
    payload = bytes(b ^ 0xFF for b in icmp[8:])
    body = bytes([0, 0, 0, 0]) + icmp[4:8] + payload
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0x1234, 0, 64, 1,
                                   0, ip[16:20], ip[12:16]))
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return frame[6:12] + frame[0:6] + b"\x08\x00" + bytes(header) + body


def read_pcap(path: Path) -> list[bytes]:
    """The frames of a pcap file (tcpdump ``-w``)."""
    data = path.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    frames, offset = [], 24
    while offset + 16 <= len(data):
        caplen = struct.unpack_from(f"{order}I", data, offset + 8)[0]
        frames.append(data[offset + 16:offset + 16 + caplen])
        offset += 16 + caplen
    return frames


def main() -> None:
    port, seconds = sys.argv[1], float(sys.argv[2])
    replay = read_pcap(Path(sys.argv[3])) if len(sys.argv) > 3 else []
    rng = random.Random(os.getpid())
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((port, 0))
    sock.setblocking(False)
    print("ready", flush=True)
    counts = {"transitive": 0, "echo": 0, "replayed": 0}
    deadline = time.monotonic() + seconds
    next_replay = time.monotonic() if replay else deadline
    while (now := time.monotonic()) < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, min(next_replay, deadline) - now))
        if ready:
            while True:
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                    continue
                if (reply := forged_transitive(frame, rng)) is not None:
                    sock.send(reply)
                    counts["transitive"] += 1
                elif (reply := forged_echo(frame)) is not None:
                    sock.send(reply)
                    counts["echo"] += 1
        if replay and time.monotonic() >= next_replay:
            sock.send(replay[counts["replayed"] % len(replay)])
            counts["replayed"] += 1
            next_replay += 0.005
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
