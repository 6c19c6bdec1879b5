"""Send one ARP request from a lab namespace and count the replies (run inside the peer ns).

``python -m tests.netns.arp_probe IFACE TARGET_IP SECONDS`` prints the number of replies for
TARGET_IP seen within SECONDS, and the MACs they carried, as JSON.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from scapy.arch import get_if_addr, get_if_hwaddr
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import AsyncSniffer, sendp

    iface, target, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    mac, ip = get_if_hwaddr(iface), get_if_addr(iface)
    sniffer = AsyncSniffer(iface=iface, filter=f"arp and arp[6:2] = 2 and src host {target}",
                           store=True)
    sniffer.start()
    while not getattr(sniffer, "running", False):
        pass
    request = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=ip, pdst=target)
    sendp(request, iface=iface, verbose=False)
    import time

    time.sleep(seconds)
    replies = sniffer.stop()
    print(json.dumps({"replies": len(replies), "macs": [p[ARP].hwsrc for p in replies]}))


if __name__ == "__main__":
    main()
