"""Send one ARP request from a lab namespace and count the replies (run inside the peer ns).

``python -m tests.netns.arp_probe IFACE TARGET_IP SECONDS [COUNT]`` sends COUNT requests
(default 1) and prints, as JSON, how many ARP replies for TARGET_IP arrived within SECONDS and
the MACs they carried. The receiving socket is open before the requests leave, so no reply
can be missed.
"""

from __future__ import annotations

import fcntl
import json
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
SIOCGIFADDR = 0x8915


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def main() -> None:
    iface, target, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    mac = sock.getsockname()[4]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()))
    my_ip = ifreq[20:24]
    target_ip = socket.inet_aton(target)
    request = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + my_ip + b"\0" * 6 + target_ip)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    for _ in range(count):
        sock.send(request)
    macs = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        frame = sock.recv(2048)
        op = struct.unpack("!H", frame[20:22])[0]
        if op == 2 and frame[28:32] == target_ip:
            macs.append(_mac(frame[22:28]))
    print(json.dumps({"replies": len(macs), "macs": macs}))


if __name__ == "__main__":
    main()
