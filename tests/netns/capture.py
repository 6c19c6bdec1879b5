"""Packet capture in a lab namespace with tcpdump, decoded with scapy (or, for the source
MACs of many frames, read straight from the file)."""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from vnicbond.lab import Lab


class Capture:
    """``tcpdump -i IFACE -w FILE FILTER`` in a namespace, stopped by PID."""

    def __init__(self, lab: Lab, ns: str, iface: str, path: Path, bpf: str,
                 direction: str | None = None) -> None:
        self.path = path
        # Immediate mode: each frame is handed over as it comes, not when a block of the
        # capture ring fills or times out, so none is still in the kernel when tcpdump stops.
        cmd = ["tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-w", str(path)]
        if direction:
            cmd += ["-Q", direction]
        self.proc = lab.popen(ns, *cmd, bpf, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        # tcpdump says "listening on" once the filter is attached.
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening" in line, f"tcpdump did not start: {line}"

    def finish(self) -> Path:
        """Stop tcpdump; the capture file."""
        time.sleep(0.2)  # let the last frames land
        self.proc.terminate()
        self.proc.wait(10)
        return self.path

    def stop(self) -> list[Any]:
        """Stop tcpdump and return the captured frames (scapy packets)."""
        import scapy.layers.l2  # noqa: F401  (registers Ethernet, so frames decode)
        from scapy.utils import rdpcap

        return list(rdpcap(str(self.finish())))


def frame_sources(path: Path) -> list[str]:
    """The source MAC of every frame in a pcap file (tcpdump ``-w``, Ethernet), in order:
    read with struct, fast enough for tens of thousands of frames."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    sources, offset = [], 24
    while offset + 16 <= len(data):
        caplen = struct.unpack_from(f"{order}I", data, offset + 8)[0]
        frame = data[offset + 16:offset + 16 + caplen]
        if len(frame) >= 12:
            sources.append(frame[6:12].hex(":"))
        offset += 16 + caplen
    return sources
