"""The link watcher's reading of RTM_NEWLINK/RTM_DELLINK messages (built with pyroute2)."""

from __future__ import annotations

import socket

from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vnicbond.system.netlink import LinkInfo, LinkWatcher


def link_message(kind: int, family: int, index: int, name: str, promiscuity: int | None
                 ) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = kind
    msg["family"] = family
    msg["index"] = index
    msg["flags"] = 0x1 | 0x10000  # up, lower up
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", 1500)]
    if promiscuity is not None:
        msg["attrs"].append(("IFLA_PROMISCUITY", promiscuity))
    msg.encode()
    return bytes(msg.data)


class Feed:
    """A socket that returns one datagram, then nothing."""

    def __init__(self, data: bytes) -> None:
        self.data: list[bytes] = [data]

    def recv(self, size: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        return self.data.pop()


def delivered(data: bytes) -> list[tuple[LinkInfo, bool]]:
    got: list[tuple[LinkInfo, bool]] = []
    watcher = LinkWatcher(lambda info, deleted: got.append((info, deleted)))
    watcher.sock.close()
    watcher.sock = Feed(data)  # type: ignore[assignment]
    watcher.on_readable()
    return got


def test_a_link_report_is_delivered_with_its_promiscuity():
    got = delivered(link_message(RTM_NEWLINK, socket.AF_UNSPEC, 5, "ipmp0", 1))
    assert [(i.index, i.name, i.promiscuity, i.up, d) for i, d in got] == [
        (5, "ipmp0", 1, True, False)]


def test_a_bridge_s_reports_about_its_port_are_not_the_link_s():
    # A bridge tells of a port's state (no promiscuity in it), and sends a DELLINK of family
    # AF_BRIDGE when the port leaves: neither says the device changed or went.
    for kind in (RTM_NEWLINK, RTM_DELLINK):
        assert delivered(link_message(kind, socket.AF_BRIDGE, 5, "ipmp0", None)) == []
