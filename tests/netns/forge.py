"""Inject forged and foreign probe replies onto a member's wire (run in the switch namespace).

``python -m tests.netns.forge PORT MEMBER_MAC TEST_IP TARGET_IP TARGET_MAC SECONDS`` sends,
every 5 ms for SECONDS, frames that look like answers to the member's probes but are not:
echo replies with a wrong token and random identifiers, echo replies from a foreign host,
and broadcast ARP replies from the target's address (as other hosts and a confused bonding
ARP monitor would see). Prints how many frames it sent.
"""

from __future__ import annotations

import random
import socket
import sys
import time


def main() -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether

    port, member_mac, test_ip, target_ip, target_mac, seconds = sys.argv[1:7]
    rng = random.Random(7)
    frames = []
    for i in range(64):
        frames.append(bytes(
            Ether(src=target_mac, dst=member_mac) / IP(src=target_ip, dst=test_ip)
            / ICMP(type=0, id=rng.randrange(65536), seq=i) / (rng.randbytes(8) + bytes(2))))
    frames.append(bytes(Ether(src="02:aa:00:00:00:01", dst=member_mac)
                        / IP(src="198.18.0.99", dst=test_ip) / ICMP(type=0, id=1, seq=1)))
    frames.append(bytes(Ether(src=target_mac, dst="ff:ff:ff:ff:ff:ff")
                        / ARP(op=2, hwsrc=target_mac, psrc=target_ip,
                              hwdst="ff:ff:ff:ff:ff:ff", pdst=test_ip)))
    frames.append(bytes(Ether(src="02:aa:00:00:00:02", dst="ff:ff:ff:ff:ff:ff")
                        / ARP(op=2, hwsrc="02:aa:00:00:00:02", psrc=target_ip,
                              hwdst="00:00:00:00:00:00", pdst=test_ip)))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((port, 0))
    sent = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        for frame in (frames[sent % 64], *frames[64:]):
            sock.send(frame)
        sent += 1
        time.sleep(0.005)
    print(sent * 4)


if __name__ == "__main__":
    main()
