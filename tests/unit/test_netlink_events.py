"""What the daemon reads from netlink: the link watcher's RTM_NEWLINK/RTM_DELLINK messages
(built with pyroute2), and the MACs on the TAP's unicast address list."""

from __future__ import annotations

import socket
from typing import Any

from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from vnicbond.system import netlink
from vnicbond.system.netlink import LinkInfo, LinkWatcher


def link_message(kind: int, family: int, index: int, name: str, promiscuity: int | None,
                 link: tuple[int, int | None] | None = None) -> bytes:
    """``link``: IFLA_LINK and IFLA_LINK_NETNSID (None: the same namespace)."""
    msg = ifinfmsg()
    msg["header"]["type"] = kind
    msg["family"] = family
    msg["index"] = index
    msg["flags"] = 0x1 | 0x10000  # up, lower up
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", 1500)]
    if promiscuity is not None:
        msg["attrs"].append(("IFLA_PROMISCUITY", promiscuity))
    if link is not None:
        msg["attrs"].append(("IFLA_LINK", link[0]))
        if link[1] is not None:
            msg["attrs"].append(("IFLA_LINK_NETNSID", link[1]))
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


def test_a_link_in_another_namespace_is_not_what_a_device_is_stacked_on():
    # A macvlan on the TAP (index 4) here; a veth member whose peer is index 4 elsewhere.
    macvlan = delivered(link_message(RTM_NEWLINK, socket.AF_UNSPEC, 9, "mv0", 0, (4, None)))
    veth = delivered(link_message(RTM_NEWLINK, socket.AF_UNSPEC, 3, "m1", 0, (4, 0)))
    assert [i.link for i, _ in macvlan + veth] == [4, 0]


class FdbEntry(dict):
    """An fdb dump message as pyroute2 gives it: fields, and the NDA_LLADDR attribute."""

    def get_attr(self, name: str) -> Any:
        return self["lladdr"] if name == "NDA_LLADDR" else None


def test_the_unicast_list_is_the_device_s_own_not_its_bridge_s_entries():
    self_, master = 0x02, 0x00
    entries = [  # `bridge fdb show dev ipmp0` (index 5), a port of br-vm
        FdbEntry(ifindex=5, flags=master, lladdr="02:95:3a:bf:5d:54"),  # a remote host
        FdbEntry(ifindex=5, flags=master, lladdr="96:07:a5:cb:0f:73"),  # its own MAC
        FdbEntry(ifindex=5, flags=self_, lladdr="02:6d:76:00:00:01"),  # a macvlan's
        FdbEntry(ifindex=5, flags=self_, lladdr="33:33:00:00:00:01"),  # multicast
        FdbEntry(ifindex=6, flags=self_, lladdr="02:6d:76:00:00:02"),  # another device
    ]
    assert netlink.own_unicast(entries, 5) == {bytes.fromhex("026d76000001")}


def test_no_such_device_has_no_list():
    assert netlink.unicast_addresses("nothere0") == set()
