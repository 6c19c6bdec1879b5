"""A TCP transfer with an end-to-end digest, run inside lab namespaces.

``python -m vnicbond.lab.xfer server ADDR PORT`` accepts one connection, reads to EOF and
prints ``{"bytes": N, "sha256": HEX}``; ``... client ADDR PORT NBYTES [BPS]`` sends NBYTES of
pseudo-random data seeded by NBYTES (paced at BPS bits a second if given) and prints the same
for what it sent, with the seconds it took. Equal digests prove every byte crossed intact
(checksum offload and segmentation included); iperf3 cannot prove an exact count (3.12's
server misses the last block of an ``-n`` transfer). :func:`start` runs both ends in a lab.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from vnicbond.lab.topology import Lab, stop

CHUNK = 64 * 1024
TIMEOUT = 60.0


def serve(addr: str, port: int, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Accept one connection on (``addr``, ``port``), read to EOF: bytes and SHA-256. Prints
    ``listening`` once it listens."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        lsock.listen(1)
        print("listening", flush=True)
        lsock.settimeout(timeout)
        conn, _ = lsock.accept()
        conn.settimeout(timeout)
        digest, total = hashlib.sha256(), 0
        with conn:
            while data := conn.recv(4 * CHUNK):
                digest.update(data)
                total += len(data)
    return {"bytes": total, "sha256": digest.hexdigest()}


def send(addr: str, port: int, nbytes: int, bps: int = 0,
         timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send ``nbytes`` of seeded pseudo-random data (at ``bps`` bits a second; 0: as fast as
    it goes), then wait for the server to close: bytes, SHA-256 and how long it took."""
    rng = random.Random(nbytes)
    digest, total = hashlib.sha256(), 0
    start = time.monotonic()
    with socket.create_connection((addr, port), timeout=timeout) as conn:
        while total < nbytes:
            if bps:
                due = start + total * 8 / bps
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
            data = rng.randbytes(min(CHUNK, nbytes - total))
            conn.sendall(data)
            digest.update(data)
            total += len(data)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # the server closes once it has read everything
    return {"bytes": total, "sha256": digest.hexdigest(),
            "seconds": round(time.monotonic() - start, 3)}


@dataclass
class Transfer:
    """Both ends of one transfer started in a lab: the server's process, then the client's."""

    nbytes: int
    server: subprocess.Popen[str]
    client: subprocess.Popen[str] | None = None

    def stop(self) -> None:
        """Stop both ends by their PIDs (on an error: they are not waited for)."""
        stop(self.client)
        stop(self.server)

    def ends(self, timeout: float = 300.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the server and the client printed once they end, or ``{"error": ...}``."""
        assert self.client is not None
        results = []
        for proc in (self.server, self.client):
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=10)
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            results.append(json.loads(lines[-1]) if proc.returncode == 0 and lines else {
                "error": f"exit {proc.returncode}: {err.strip()[-200:]}"})
        return results[0], results[1]

    def result(self, timeout: float = 300.0) -> dict[str, Any]:
        """Completed (the server read exactly what the client sent, same digest), bytes,
        seconds, or the error."""
        server, client = self.ends(timeout)
        return {
            "completed": (not server.get("error") and not client.get("error")
                          and server.get("bytes") == client.get("bytes") == self.nbytes
                          and server.get("sha256") == client.get("sha256")),
            "bytes": server.get("bytes"), "seconds": client.get("seconds"),
            "error": server.get("error") or client.get("error")}


def start(lab: Lab, server_ns: str, client_ns: str, addr: str, port: int, nbytes: int,
          bps: int = 0) -> Transfer:
    """A server in ``server_ns`` on (``addr``, ``port``), then, once it listens, a client in
    ``client_ns`` sending it ``nbytes`` (at ``bps``). Both run this module with this
    interpreter."""
    module = [sys.executable, "-m", "vnicbond.lab.xfer"]
    transfer = Transfer(nbytes, lab.popen(server_ns, *module, "server", addr, str(port)))
    try:
        assert transfer.server.stdout is not None
        if transfer.server.stdout.readline().strip() != "listening":
            raise RuntimeError(f"transfer server on {addr} port {port} did not start")
        transfer.client = lab.popen(client_ns, *module, "client", addr, str(port), str(nbytes),
                                    str(bps))
    except BaseException:
        transfer.stop()
        raise
    return transfer


def main(argv: list[str]) -> int:
    """``server ADDR PORT`` or ``client ADDR PORT NBYTES [BPS]``; prints the result as JSON."""
    if argv[0] == "server":
        result = serve(argv[1], int(argv[2]))
    else:
        result = send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]) if argv[4:] else 0)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
