"""The fuzzer's senders (``tools/fuzz``): packet sockets that write generated frames at a
pace, with a flood burst halfway, and count what the kernel took and refused.

A sender runs inside a lab namespace as ``python -m tools.fuzz_send SIDE ...`` (the peer's
``p0`` for ``peer`` and ``spoof``, the group's TAP for ``tap``), started and waited for by
:func:`run_senders`, which hands it the frames' context in a JSON file.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import ROOT
from tools.fuzz_frames import ZERO_VNET
from tools.fuzz_gen import GROUP, Ctx, Frame, flood_frames, peer_frames, spoof_frames, tap_frames

SETTLE = 0.5  # seconds the senders pause after the flood, so the daemon drains its sockets


# -- sending ---------------------------------------------------------------------------------
SOL_PACKET = 263
PACKET_VNET_HDR = 15


def open_sender(ifname: str, vnet_hdr: bool) -> socket.socket:
    """A packet socket that only sends (protocol 0: the kernel queues nothing to it)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    if vnet_hdr:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    sock.bind((ifname, 0))
    return sock


@dataclass
class Tally:
    """Per class and destination: frames sent (the kernel took them) and refused (errno)."""

    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    refused: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, frame: Frame, err: int | None) -> None:
        if err is None:
            by_dest = self.sent.setdefault(frame.cls, {})
            by_dest[frame.dest] = by_dest.get(frame.dest, 0) + 1
        else:
            name = errno.errorcode.get(err, str(err))
            by_err = self.refused.setdefault(frame.cls, {})
            by_err[name] = by_err.get(name, 0) + 1


def send_frames(ifname: str, frames: list[Frame], rate: float, *, always_vnet: bool = False,
                flood: list[Frame] | None = None, flood_count: int = 0,
                deadline: float | None = None) -> dict[str, Any]:
    """Send ``frames`` on ``ifname`` at ``rate`` a second; halfway (at once if there are no
    frames), ``flood_count`` frames of ``flood`` as fast as the socket takes them, then a
    pause of :data:`SETTLE`. ``always_vnet``: one socket with virtio-net headers for
    everything (the TAP side); else frames with a header go through a second socket. Stops
    early at ``deadline`` (monotonic). Returns the tally and timings."""
    tally = Tally()
    plain = None if always_vnet else open_sender(ifname, False)
    with_vnet = open_sender(ifname, True)
    start = time.monotonic()
    flood_at = len(frames) // 2 if flood and flood_count else -1
    flood_info: dict[str, Any] = {}
    skipped = 0
    offset = 0.0  # time the flood and the pause after it took, moved out of the schedule

    def send_flood() -> None:
        assert flood is not None
        t0, wall0 = time.monotonic(), time.time()
        sock = with_vnet if always_vnet else plain
        assert sock is not None
        prefix = ZERO_VNET if always_vnet else b""
        about: dict[str, int] = {}
        for k in range(flood_count):
            f = flood[k % len(flood)]
            try:
                sock.send(prefix + f.data)
                tally.add(f, None)
                about[f.about] = about.get(f.about, 0) + 1
            except OSError as e:
                tally.add(f, e.errno)
        flood_info.update(frames=flood_count, seconds=round(time.monotonic() - t0, 3),
                          for_test_address={m: n for m, n in about.items() if m},
                          start=wall0, end=time.time())
        time.sleep(SETTLE)

    try:
        if flood_at == 0:
            send_flood()
            start = time.monotonic()
        for i, frame in enumerate(frames):
            if i == flood_at and i > 0:
                t0 = time.monotonic()
                send_flood()
                offset += time.monotonic() - t0
            due = start + offset + i / rate
            now = time.monotonic()
            if deadline is not None and now > deadline:
                skipped = len(frames) - i
                break
            if due > now:
                time.sleep(due - now)
            if frame.vnet is not None or always_vnet:
                data, sock = (frame.vnet or ZERO_VNET) + frame.data, with_vnet
            else:
                assert plain is not None
                data, sock = frame.data, plain
            try:
                sock.send(data)
                tally.add(frame, None)
            except OSError as e:
                tally.add(frame, e.errno)
    finally:
        with_vnet.close()
        if plain is not None:
            plain.close()
    return {"sent": tally.sent, "refused": tally.refused, "flood": flood_info,
            "skipped": skipped, "seconds": round(time.monotonic() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.fuzz_send peer|tap|spoof --ctx FILE ...``, run inside the lab's
    namespace by :func:`run_senders`: send, then print the tally as JSON."""
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz_send")
    parser.add_argument("side", choices=("peer", "tap", "spoof"))
    parser.add_argument("--ctx", required=True, help="the frames' context (JSON file)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=20000)
    parser.add_argument("--target", help="the member the flood or the spoofs are for")
    args = parser.parse_args(argv)
    ctx = Ctx.from_json(Path(args.ctx).read_text())
    count = int(args.rate * args.seconds)
    deadline = time.monotonic() + args.seconds * 3 + 30
    if args.side == "peer":
        result = send_frames("p0", peer_frames(ctx, args.seed, count), args.rate,
                             flood=flood_frames(ctx, args.seed, args.target),
                             flood_count=args.flood, deadline=deadline)
    elif args.side == "spoof":
        result = send_frames("p0", spoof_frames(ctx, args.target) * count, args.rate,
                             deadline=deadline)
    else:
        result = send_frames(GROUP, tap_frames(ctx, args.seed, count), args.rate,
                             always_vnet=True, deadline=deadline)
    print(json.dumps(result), flush=True)
    return 0


# -- running the senders in the lab ---------------------------------------------------------------
def run_senders(lab: Any, ctx: Ctx, seconds: float, rate: float, seed: int,
                flood: int = 20000, python: str | None = None, sides: Iterable[str] = (
                    "peer", "tap"), target: str | None = None) -> dict[str, Any]:
    """Fuzz from both sides at once: a sender in the peer namespace (on ``p0``) and one in
    the host namespace (on the TAP), each ``rate * seconds`` frames; the peer's sends a
    ``flood`` burst halfway (all for ``target``'s test address if given). The side
    ``spoof`` sends :func:`spoof_frames` for ``target`` from the peer instead. Returns each
    side's tally."""
    python = python or sys.executable
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="vb-fuzz-",
                                     delete=False) as f:
        f.write(ctx.to_json())
        ctx_path = f.name
    try:
        common = ["--ctx", ctx_path, "--seed", str(seed), "--rate", str(rate),
                  "--seconds", str(seconds)]
        aim = ["--target", target] if target else []
        procs = {}
        sender = [python, "-m", "tools.fuzz_send"]
        for side in sides:
            if side == "peer":
                procs[side] = lab.popen(lab.peer, *sender, "peer", "--flood", str(flood), *aim,
                                        *common, cwd=ROOT)
            elif side == "spoof":
                procs[side] = lab.popen(lab.peer, *sender, "spoof", *aim, *common, cwd=ROOT)
            else:
                procs[side] = lab.popen(lab.host, *sender, "tap", *common, cwd=ROOT)
        results: dict[str, Any] = {}
        errors = []
        limit = seconds * 3 + 90
        for side, proc in procs.items():  # every sender is bounded: wait for each
            try:
                out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=10)
            if proc.returncode != 0:
                errors.append(f"{side} sender exited {proc.returncode}: {err.strip()[-2000:]}")
                continue
            results[side] = json.loads(out.strip().splitlines()[-1])
        if errors:
            raise RuntimeError("; ".join(errors))
        return results
    finally:
        os.unlink(ctx_path)


if __name__ == "__main__":
    sys.exit(main())
