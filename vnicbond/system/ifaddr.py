"""The TAP's addresses and the gateways of its routes, as the kernel has them, followed over
netlink.

An :class:`AddressWatcher` is a plain netlink socket subscribed to address and route events
(``RTM_NEWADDR``/``RTM_DELADDR``, ``RTM_NEWROUTE``/``RTM_DELROUTE``) before it reads the
current state, so no change between the two is missed: the first reading is synchronous
(:meth:`AddressWatcher.read_now`, before the event loop runs), then the loop reads it with
``add_reader``. It keeps two things for one device: every address on it (with whether it is
still tentative) and the gateways of the routes through it in the main table. Addresses are
kept from their events; routes are read again, by a dump the kernel filters to the device,
whenever a route or an IPv4 address of it changes, since the kernel removes IPv4 routes
without a word when their address or gateway goes. After lost events (``ENOBUFS``) both are
read again. It decides nothing: what the addresses and gateways mean is the core's
(:mod:`vnicbond.core.addresses`, :mod:`vnicbond.core.targets`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from ipaddress import ip_address, ip_interface
from typing import Any

from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from vnicbond.core.addresses import TapAddress

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTNH_F_DEAD = 0x01
ADDRESSES, ROUTES = "addresses", "routes"


def address_of(msg: Any) -> TapAddress:
    """An address message as the core's :class:`TapAddress` (canonical text, prefix)."""
    text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return TapAddress(str(ip_interface(f"{text}/{msg['prefixlen']}")),
                      bool(flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)))


def gateways_of(msg: Any, index: int) -> list[str]:
    """The gateways through device ``index`` of a route message of the main table (a
    multipath route's next hops through it; none for a dead or non-unicast route)."""
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    if table != RT_TABLE_MAIN or msg["type"] != RTN_UNICAST or msg["flags"] & RTNH_F_DEAD:
        return []
    gateway = msg.get_attr("RTA_GATEWAY")
    if msg.get_attr("RTA_OIF") == index and gateway:
        return [str(ip_address(gateway))]
    found = []
    for hop in msg.get_attr("RTA_MULTIPATH") or []:
        gateway = hop.get_attr("RTA_GATEWAY")
        if hop["oif"] == index and gateway and not hop["flags"] & RTNH_F_DEAD:
            found.append(str(ip_address(gateway)))
    return found


class AddressWatcher:
    """Device ``index``'s addresses and its routes' gateways; ``on_change(addresses,
    gateways)`` is called after each batch of messages that changed either (each a bool)."""

    def __init__(self, index: int) -> None:
        self.index = index
        #: Every address on the device, by its text.
        self.addresses: dict[str, TapAddress] = {}
        #: The gateways of the routes through it in the main table, in the kernel's order.
        self.gateways: list[str] = []
        self.on_change: Callable[[bool, bool], None] | None = None
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        with contextlib.suppress(OSError):  # the kernel filters dumps by device (Linux 5.3+)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE
                        | RTMGRP_IPV6_ROUTE))
        #: Our port id: replies to our dumps carry it, events another process caused
        #: carry that process's (and its sequence number, which may equal ours).
        self._port = self.sock.getsockname()[0]
        self._marshal = MarshalRtnl()
        self._seq = 0
        #: The dump in flight (its kind and sequence number) and what it has collected.
        self._dump: tuple[str, int] | None = None
        self._collected: dict[str, TapAddress] | list[str] = []
        self._pending: list[str] = []

    def fileno(self) -> int:
        """The socket's descriptor, for ``loop.add_reader``."""
        return self.sock.fileno()

    def read_now(self, timeout: float = 5.0) -> None:
        """Read the addresses and the routes' gateways now, blocking (before the event loop
        runs); events that arrive meanwhile are applied too. Raises OSError on failure."""
        self._want(ADDRESSES)
        self._want(ROUTES)
        self.sock.settimeout(timeout)
        try:
            while self._dump is not None:
                self._handle(self.sock.recv(1 << 20))
        finally:
            self.sock.setblocking(False)

    def on_readable(self) -> None:
        """Drain the socket, apply every message, then report what changed."""
        addresses, gateways = dict(self.addresses), list(self.gateways)
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: events were lost; read everything again
                self._want(ADDRESSES)
                self._want(ROUTES)
                continue
            self._handle(data)
        changed = (self.addresses != addresses, self.gateways != gateways)
        if any(changed) and self.on_change is not None:
            self.on_change(*changed)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    # -- messages --------------------------------------------------------------------------------
    def _handle(self, data: bytes) -> None:
        for msg in self._marshal.parse(data):
            kind = msg["header"]["type"]
            seq = msg["header"]["sequence_number"]
            ours = (self._dump is not None and seq == self._dump[1]
                    and msg["header"]["pid"] == self._port)
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                if ours:
                    self._dump_done(kind == NLMSG_DONE)
            elif kind in (RTM_NEWADDR, RTM_DELADDR) and msg["index"] == self.index:
                self._address(msg, kind == RTM_NEWADDR, ours)
            elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
                if ours and isinstance(self._collected, list):
                    self._collected.extend(g for g in gateways_of(msg, self.index)
                                           if g not in self._collected)
                elif not ours:
                    self._want(ROUTES)

    def _address(self, msg: Any, new: bool, ours: bool) -> None:
        address = address_of(msg)
        targets = [self.addresses]
        if isinstance(self._collected, dict):
            targets.append(self._collected)  # a dump in flight sees the event too
        if ours:
            targets = targets[1:]
        for table in targets:
            if new:
                table[address.address] = address
            else:
                table.pop(address.address, None)
        if not new and msg["family"] == socket.AF_INET and not ours:
            self._want(ROUTES)  # its routes may have gone with it, unannounced

    # -- dumps -----------------------------------------------------------------------------------
    def _want(self, kind: str) -> None:
        """Read ``kind`` again: now, or after the dump in flight (once, however often asked)."""
        if self._dump is not None:
            if kind not in self._pending:
                self._pending.append(kind)
            return
        self._seq += 1
        self._dump = (kind, self._seq)
        self._collected = {} if kind == ADDRESSES else []
        if kind == ADDRESSES:
            msg: Any = ifaddrmsg()
            msg["index"] = self.index
            msg["family"] = socket.AF_UNSPEC
            msg["header"]["type"] = RTM_GETADDR
        else:
            msg = rtmsg()
            msg["family"] = socket.AF_UNSPEC
            msg["table"] = RT_TABLE_MAIN
            msg["attrs"] = [("RTA_OIF", self.index)]
            msg["header"]["type"] = RTM_GETROUTE
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        try:
            self.sock.send(msg.data)
        except OSError:
            self._dump = None
            raise

    def _dump_done(self, complete: bool) -> None:
        assert self._dump is not None
        kind = self._dump[0]
        if complete:
            if kind == ADDRESSES:
                assert isinstance(self._collected, dict)
                self.addresses = self._collected
            else:
                assert isinstance(self._collected, list)
                self.gateways = self._collected
        self._dump = None
        self._collected = []
        if self._pending:
            self._want(self._pending.pop(0))
