"""A source-MAC flood, as a hostile or broken guest sends it, run inside a lab namespace.

``python -m vnicbond.lab.flood IFACE DST COUNT [RATE [SEED]]`` sends COUNT minimum-size frames
through an AF_PACKET socket on IFACE, each from a different random locally administered
unicast MAC (``x2:``, ``x6:``, ``xa:``, ``xe:`` first octets; all COUNT distinct, none the
same as IFACE's own), to DST (a MAC, or ``ff:ff:ff:ff:ff:ff``), with the local experimental
EtherType 0x88b5 so no stack on the way answers them; paced at RATE frames a second (0: as
fast as the socket takes them). It prints ``{"sent": N, "distinct": N, "seconds": T}``.
:func:`start` runs it in a lab, :func:`result` reads what it printed.
"""

from __future__ import annotations

import errno
import json
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vnicbond.lab.topology import Lab

ETHERTYPE = 0x88B5  # IEEE 802 local experimental
BROADCAST = "ff:ff:ff:ff:ff:ff"
BURST = 64  # frames sent between two looks at the clock when paced


def mac_bytes(mac: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` as six bytes."""
    return bytes.fromhex(mac.replace(":", ""))


def random_macs(count: int, seed: int, avoid: bytes = b"") -> list[bytes]:
    """``count`` distinct random locally administered unicast MACs (never ``avoid``)."""
    rng = random.Random(seed)
    seen: set[bytes] = {avoid}
    macs = []
    while len(macs) < count:
        mac = bytes([(rng.randrange(256) & 0xFC) | 0x02]) + rng.randbytes(5)
        if mac not in seen:
            seen.add(mac)
            macs.append(mac)
    return macs


def frames(dst: str, sources: list[bytes]) -> list[bytes]:
    """One 60-byte frame per source MAC to ``dst``, numbered in its payload."""
    head = mac_bytes(dst)
    return [head + src + struct.pack("!HI", ETHERTYPE, i) + bytes(42)
            for i, src in enumerate(sources)]


def flood(iface: str, dst: str, count: int, rate: float = 0.0, seed: int = 1) -> dict[str, Any]:
    """Send the flood on ``iface``: sent, distinct sources, seconds taken."""
    own = mac_bytes(Path(f"/sys/class/net/{iface}/address").read_text().strip())
    sources = random_macs(count, seed, own)
    batch = frames(dst, sources)
    sent = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        start = time.monotonic()
        for frame in batch:
            if rate and sent % BURST == 0:
                due = start + sent / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            while True:
                try:
                    sock.send(frame)
                    break
                except OSError as e:  # the device's queue is full: wait for room
                    if e.errno != errno.ENOBUFS:
                        raise
                    time.sleep(0.0005)
            sent += 1
        seconds = time.monotonic() - start
    return {"sent": sent, "distinct": len(set(sources)), "seconds": round(seconds, 3)}


def start(lab: Lab, ns: str, iface: str, dst: str, count: int, rate: float = 0.0,
          seed: int = 1) -> subprocess.Popen[str]:
    """The flood run in ``ns`` by this interpreter (its output on a pipe)."""
    return lab.popen(ns, sys.executable, "-m", "vnicbond.lab.flood", iface, dst, str(count),
                     str(rate), str(seed))


def result(proc: subprocess.Popen[str], timeout: float = 120.0) -> dict[str, Any]:
    """What a flood started with :func:`start` printed once it ends (``{"error": ...}`` if
    it failed)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {err.strip()[-300:]}"}
    return dict(json.loads(lines[-1]))


def main(argv: list[str]) -> int:
    """``IFACE DST COUNT [RATE [SEED]]``; prints the result as JSON."""
    rate = float(argv[3]) if argv[3:] else 0.0
    seed = int(argv[4]) if argv[4:] else 1
    print(json.dumps(flood(argv[0], argv[1], int(argv[2]), rate, seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
