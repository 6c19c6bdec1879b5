"""Netlink: link state and MTU, addresses and routes.

Two halves. The synchronous helpers (pyroute2 ``IPRoute``) run before the event loop starts
and after it stops: pyroute2 0.9's synchronous API cannot run inside a running loop. The
:class:`LinkWatcher` is a plain non-blocking netlink socket subscribed to link events, read
from the loop with ``add_reader`` and decoded by pyroute2's message classes, so link changes
arrive as events. The one thing polled is a device's unicast address list
(:func:`unicast_addresses`, a plain socket too), whose changes raise no event.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_GETNEIGH, RTM_NEWNEIGH
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

RTMGRP_LINK = 0x1
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
IFA_F_NODAD = 0x02
NTF_SELF = 0x02  # an fdb entry of the device's own address list


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the daemon needs to know of a link."""

    index: int
    name: str
    admin_up: bool
    carrier: bool
    mtu: int
    #: The kernel's promiscuity counter (a bridge port, a capture, an upper device that
    #: needs extra MACs), which the link's flags do not show.
    promiscuity: int = 0
    #: The device this one is stacked on in this namespace (a macvlan's parent), 0 if none.
    #: A veth's IFLA_LINK is its peer's index in another namespace (IFLA_LINK_NETNSID), which
    #: may equal any index here (a lab's m1 and the TAP): that one is 0 too.
    link: int = 0

    @property
    def up(self) -> bool:
        """Administratively up with carrier: able to pass frames."""
        return self.admin_up and self.carrier


def _link_info(msg: object) -> LinkInfo:
    flags = msg["flags"]  # type: ignore[index]
    return LinkInfo(
        index=msg["index"],  # type: ignore[index]
        name=msg.get_attr("IFLA_IFNAME"),  # type: ignore[attr-defined]
        admin_up=bool(flags & IFF_UP),
        carrier=bool(flags & IFF_LOWER_UP),
        mtu=msg.get_attr("IFLA_MTU") or 0,  # type: ignore[attr-defined]
        promiscuity=msg.get_attr("IFLA_PROMISCUITY") or 0,  # type: ignore[attr-defined]
        link=(msg.get_attr("IFLA_LINK") or 0  # type: ignore[attr-defined]
              if msg.get_attr("IFLA_LINK_NETNSID") is None else 0),  # type: ignore[attr-defined]
    )


def get_link(name: str) -> LinkInfo | None:
    """The link called ``name``, or None if there is none."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        return _link_info(ipr.get_links(idx[0])[0])


def unicast_addresses(name: str) -> set[bytes]:
    """The unicast MACs upper devices put on ``name``'s address list (a macvlan's, once it is
    up): ``bridge fdb show dev NAME``'s ``self permanent`` entries, multicast left out (empty
    if there is no such device). Read often (see :mod:`vnicbond.runtime.group`), so the
    kernel is asked for that device's entries only: pyroute2's ``fdb("dump", ifindex=...)``
    reads every bridge's whole table and filters it in Python, 0.1 s of parsing per 3,000
    entries (a host bridge behind a guest flooding source MACs holds tens of thousands)."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return set()
    return own_unicast(_fdb_dump(index), index)


def own_unicast(entries: Iterable[Any], index: int) -> set[bytes]:
    """The unicast MACs on device ``index``'s own address list among fdb dump entries: its
    ``self`` entries. A bridge port's dump also holds the bridge's entries for it (``master``:
    the hosts it learned behind the port, the port's own MAC), which are not on its list."""
    macs = set()
    for msg in entries:
        text = msg.get_attr("NDA_LLADDR")
        if msg["ifindex"] != index or not msg["flags"] & NTF_SELF or not text:
            continue
        mac = bytes.fromhex(text.replace(":", ""))
        if len(mac) == 6 and not mac[0] & 1:
            macs.add(mac)
    return macs


def _fdb_dump(index: int) -> list[Any]:
    """The fdb entries of device ``index``: an RTM_GETNEIGH dump of family AF_BRIDGE whose
    body is an ifinfomsg naming the device, as ``bridge fdb show dev`` asks, so the kernel
    sends that device's entries only."""
    request = ifinfmsg()
    request["header"]["type"] = RTM_GETNEIGH
    request["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    request["header"]["sequence_number"] = 1
    request["family"] = socket.AF_BRIDGE
    request["index"] = index
    request.encode()
    marshal = MarshalRtnl()
    entries = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(request.data)
        while True:
            for msg in marshal.parse(sock.recv(65536)):
                kind = msg["header"]["type"]
                if kind == NLMSG_DONE:
                    return entries
                if kind == NLMSG_ERROR:
                    raise OSError(-msg["error"] if msg["error"] else 0, "fdb dump failed")
                if kind == RTM_NEWNEIGH:
                    entries.append(msg)


def set_link_up(name: str, up: bool) -> None:
    """Set a link administratively up or down."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            ipr.link("set", index=idx[0], state="up" if up else "down")


def set_mtu(name: str, mtu: int) -> None:
    """Set link ``name``'s MTU. Raises OSError with the kernel's errno if it refuses (a
    macvlan above its lower device's MTU, a NIC's maximum: ``EINVAL``) or the link is gone."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            raise OSError(errno.ENODEV, f"no interface {name}")
        try:
            ipr.link("set", index=idx[0], mtu=mtu)
        except NetlinkError as e:
            raise OSError(e.code, os.strerror(e.code)) from None


def configure_addresses(ifname: str, addresses: Iterable[IPv4Interface | IPv6Interface],
                        routes: Iterable[tuple[str, str | None]]) -> None:
    """Put data addresses and routes on ``ifname`` (``routes``: (destination CIDR, gateway));
    those already there (an adopted TAP kept them) are left as they are."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        for addr in addresses:
            with _unless_exists():
                ipr.addr("add", index=index, address=str(addr.ip),
                         prefixlen=addr.network.prefixlen)
        for dst, via in routes:
            kwargs: dict[str, object] = {"dst": dst, "oif": index}
            if via:
                kwargs["gateway"] = via
            with _unless_exists():
                ipr.route("add", **kwargs)


@contextlib.contextmanager
def _unless_exists() -> Iterator[None]:
    """Ignore the kernel's "File exists" (EEXIST) for an address or route already there."""
    try:
        yield
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def change_addresses(ifname: str, add: Iterable[IPv4Interface | IPv6Interface],
                     remove: Iterable[IPv4Interface | IPv6Interface]) -> None:
    """Add and remove data addresses on ``ifname`` (a reload)."""
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        for addr in remove:
            ipr.addr("del", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)
        for addr in add:
            ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen)


class LinkWatcher:
    """Link events from the kernel, delivered to ``callback(LinkInfo, deleted)``."""

    def __init__(self, callback: Callable[[LinkInfo, bool], None]) -> None:
        self.callback = callback
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)
        self._marshal = MarshalRtnl()
        #: Set when the kernel dropped events (ENOBUFS): the owner must re-read every link.
        self.overrun: Callable[[], None] | None = None

    def fileno(self) -> int:
        """The socket's descriptor, for ``loop.add_reader``."""
        return self.sock.fileno()

    def on_readable(self) -> None:
        """Drain the socket and deliver each link message."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                # ENOBUFS: events were lost; the owner re-reads the links it cares about.
                if self.overrun is not None:
                    self.overrun()
                continue
            for msg in self._marshal.parse(data):
                event = msg.get("event")
                # A bridge also reports its ports (family AF_BRIDGE: the port's state, with
                # no promiscuity, and a DELLINK when it leaves the bridge): not the link's.
                if event not in ("RTM_NEWLINK", "RTM_DELLINK") or msg["family"] == socket.AF_BRIDGE:
                    continue
                self.callback(_link_info(msg), event == "RTM_DELLINK")

    def request_dump(self) -> None:
        """Ask for every link's state; the replies arrive as ordinary link events."""
        msg = ifinfmsg()
        msg["header"]["type"] = RTM_GETLINK
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = 1
        msg["family"] = socket.AF_UNSPEC
        msg.encode()
        with contextlib.suppress(OSError):
            self.sock.send(msg.data)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
