"""Packet capture in a lab namespace with tcpdump, decoded with scapy."""

from __future__ import annotations

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
        cmd = ["tcpdump", "-i", iface, "-U", "-n", "-w", str(path)]
        if direction:
            cmd += ["-Q", direction]
        self.proc = lab.popen(ns, *cmd, bpf, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        # tcpdump says "listening on" once the filter is attached.
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening" in line, f"tcpdump did not start: {line}"

    def stop(self) -> list[Any]:
        """Stop tcpdump and return the captured frames (scapy packets)."""
        time.sleep(0.2)  # let the last frames land
        self.proc.terminate()
        self.proc.wait(10)
        from scapy.utils import rdpcap

        return list(rdpcap(str(self.path)))
