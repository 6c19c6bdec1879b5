"""A guest's VLAN-tagged frames cross the bond untouched, both ways (issue 12).

There is no 8021q module here, so the tagged frames are written and read as raw frames: a VM
behind a bridge on ``ipmp0`` sends 802.1Q-tagged frames to the peer, and the peer answers with
tagged frames to the VM. Every member's kernel takes the tag of a received frame off into the
packet socket's metadata; the daemon must put it back before the TAP, or the VM's VLAN
interface (or a VLAN-aware bridge) would never see its traffic. tcpdump reads the tag from the
frame or, where the receiving kernel took it off, from the metadata, so it shows the tag that
was on the wire.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.netns.capture import Capture
from vnicbond.lab import BRIDGED_ADDRESSES, PEER_V4, Lab, Stack, wait_ping
from vnicbond.lab.l2 import nic_mac

SEND = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
    "s.bind((sys.argv[1], 0))\n"
    "frame = bytes.fromhex(sys.argv[2])\n"
    "for _ in range(int(sys.argv[3])):\n"
    "    s.send(frame)\n"
    "    time.sleep(0.05)\n"
)


def tagged(dst: str, src: str, vid: int) -> str:
    """A minimum-size frame tagged with VLAN ``vid``, from ``src`` to ``dst``, as hex."""
    mac = bytes.fromhex
    body = b"vnicbond vlan test".ljust(42, b"\0")
    head = mac(dst.replace(":", "")) + mac(src.replace(":", ""))
    return (head + (0x8100).to_bytes(2, "big") + vid.to_bytes(2, "big")
            + (0x88B5).to_bytes(2, "big") + body).hex()


def send(lab: Lab, ns: str, iface: str, frame: str, count: int = 5) -> None:
    lab.ns(ns, sys.executable, "-c", SEND, iface, frame, str(count))


def vlans_from(frames: list, src: str) -> list[int]:
    """The VLAN ids of the captured frames from ``src``."""
    from scapy.layers.l2 import Dot1Q, Ether

    return [f[Dot1Q].vlan for f in frames
            if f.haslayer(Ether) and f[Ether].src == src and f.haslayer(Dot1Q)]


@pytest.mark.parametrize("mode", ["active-backup", "load-spread"])
def test_tagged_guest_frames_cross_the_bond_with_their_tags(lab: Lab, make_bond, workdir: Path,
                                                            mode: str) -> None:
    make_bond(lab, mode=mode, addresses=list(BRIDGED_ADDRESSES))
    stack = Stack(lab).bridge(ipv6=False)
    vm = stack.add_vm()
    stack.enslave("ipmp0")
    wait_ping(lab, vm.ns, PEER_V4)  # the bridge forwards through the bond
    peer_mac = nic_mac(lab, lab.peer, "p0")

    out = Capture(lab, lab.peer, "p0", workdir / "out.pcap", "vlan 100")
    send(lab, vm.ns, vm.ifname, tagged(peer_mac, vm.mac, 100))
    assert vlans_from(out.stop(), vm.mac), "the peer saw no frame tagged VLAN 100 from the VM"

    back = Capture(lab, vm.ns, vm.ifname, workdir / "in.pcap", "vlan 200")
    send(lab, lab.peer, "p0", tagged(vm.mac, peer_mac, 200))
    seen = vlans_from(back.stop(), peer_mac)
    assert seen and set(seen) == {200}, f"the VM got {seen} from the peer, not VLAN 200"
