"""A TCP transfer with an end-to-end digest, run inside lab namespaces.

``python -m tests.netns.xfer server ADDR PORT`` accepts one connection, reads to EOF and
prints ``{"bytes": N, "sha256": HEX}``; ``... client ADDR PORT NBYTES`` sends NBYTES of
seeded pseudo-random data and prints the same for what it sent. Equal digests prove every
byte crossed intact (checksum offload and segmentation included).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys

CHUNK = 256 * 1024


def server(addr: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        lsock.listen(1)
        print("listening", flush=True)
        lsock.settimeout(30)
        conn, _ = lsock.accept()
        conn.settimeout(30)
        digest, total = hashlib.sha256(), 0
        with conn:
            while data := conn.recv(CHUNK):
                digest.update(data)
                total += len(data)
    print(json.dumps({"bytes": total, "sha256": digest.hexdigest()}), flush=True)


def client(addr: str, port: int, nbytes: int) -> None:
    rng = random.Random(nbytes)
    digest, total = hashlib.sha256(), 0
    with socket.create_connection((addr, port), timeout=30) as conn:
        while total < nbytes:
            data = rng.randbytes(min(CHUNK, nbytes - total))
            conn.sendall(data)
            digest.update(data)
            total += len(data)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)  # wait for the server to close: everything was read
    print(json.dumps({"bytes": total, "sha256": digest.hexdigest()}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
