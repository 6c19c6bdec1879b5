"""What the address watcher (:mod:`vnicbond.system.ifaddr`) reads from netlink: the TAP's
addresses from RTM_NEWADDR/RTM_DELADDR (tentative ones marked, other devices' ignored), and
the gateways of its routes in the main table from a route dump, asked for again whenever a
route or an IPv4 address changes. Messages are built with pyroute2 and fed through a fake
socket."""

from __future__ import annotations

import socket
from typing import Any

from pyroute2.netlink import NLM_F_MULTI, NLMSG_DONE, nlmsg
from pyroute2.netlink.rtnl import RTM_DELADDR, RTM_NEWADDR, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from vnicbond.core.addresses import TapAddress
from vnicbond.system.ifaddr import IFA_F_TENTATIVE, RT_TABLE_MAIN, AddressWatcher

TAP = 7
OTHER = 9


def address(kind: int, index: int, text: str, prefix: int, flags: int = 0) -> bytes:
    msg = ifaddrmsg()
    msg["header"]["type"] = kind
    msg["family"] = socket.AF_INET6 if ":" in text else socket.AF_INET
    msg["index"] = index
    msg["prefixlen"] = prefix
    msg["attrs"] = [("IFA_ADDRESS", text), ("IFA_FLAGS", flags)]
    if ":" not in text:
        msg["attrs"].append(("IFA_LOCAL", text))
    msg.encode()
    return bytes(msg.data)


def route(oif: int | None, gateway: str | None, table: int = RT_TABLE_MAIN, seq: int = 0,
          pid: int = 0, hops: list[tuple[int, str]] | None = None) -> bytes:
    msg = rtmsg()
    msg["header"]["type"] = RTM_NEWROUTE
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    msg["family"] = socket.AF_INET
    msg["table"] = table
    msg["type"] = 1
    attrs: list[Any] = [("RTA_TABLE", table)]
    if oif is not None:
        attrs.append(("RTA_OIF", oif))
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    if hops:
        attrs.append(("RTA_MULTIPATH", [{"oif": o, "attrs": [("RTA_GATEWAY", g)]}
                                        for o, g in hops]))
    msg["attrs"] = attrs
    msg.encode()
    return bytes(msg.data)


def done(seq: int, pid: int) -> bytes:
    msg = nlmsg()
    msg["header"]["type"] = NLMSG_DONE
    msg["header"]["flags"] = NLM_F_MULTI
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    msg.encode()
    return bytes(msg.data)


class Feed:
    """A socket that hands out queued datagrams, then nothing, and records what is sent."""

    def __init__(self) -> None:
        self.queue: list[bytes] = []
        self.sent: list[bytes] = []

    def recv(self, size: int) -> bytes:
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop(0)

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def watcher() -> tuple[AddressWatcher, Feed, list[tuple[bool, bool]]]:
    w = AddressWatcher(TAP)
    w.sock.close()
    feed = Feed()
    w.sock = feed  # type: ignore[assignment]
    changes: list[tuple[bool, bool]] = []
    w.on_change = lambda a, g: changes.append((a, g))
    return w, feed, changes


def test_addresses_of_the_tap_are_followed_tentative_ones_marked():
    w, feed, changes = watcher()
    feed.queue = [address(RTM_NEWADDR, TAP, "198.18.0.50", 24),
                  address(RTM_NEWADDR, TAP, "2001:0db8:0::8c:1", 64, IFA_F_TENTATIVE),
                  address(RTM_NEWADDR, OTHER, "198.18.1.1", 24)]
    w.on_readable()
    assert list(w.addresses.values()) == [TapAddress("198.18.0.50/24"),
                                          TapAddress("2001:db8::8c:1/64", tentative=True)]
    assert changes == [(True, False)]
    feed.queue = [address(RTM_NEWADDR, TAP, "2001:db8::8c:1", 64)]  # DAD is over
    w.on_readable()
    assert w.addresses["2001:db8::8c:1/64"] == TapAddress("2001:db8::8c:1/64")
    assert feed.sent == []  # an address that comes asks for no route dump


def test_an_ipv4_address_that_goes_asks_for_the_routes_again():
    w, feed, changes = watcher()
    feed.queue = [address(RTM_NEWADDR, TAP, "198.18.0.50", 24),
                  address(RTM_DELADDR, TAP, "198.18.0.50", 24)]
    w.on_readable()
    assert w.addresses == {} and changes == []  # came and went: nothing changed
    assert len(feed.sent) == 1  # its routes may have gone without a word


def test_a_route_event_asks_for_a_dump_whose_gateways_through_the_tap_count():
    w, feed, changes = watcher()
    feed.queue = [route(TAP, "198.18.0.2")]  # an event: only a sign that something changed
    w.on_readable()
    assert w.gateways == [] and len(feed.sent) == 1
    seq, pid = w._dump[1], w._port  # type: ignore[index]
    feed.queue = [route(TAP, "198.18.0.2", seq=seq, pid=pid),
                  route(OTHER, "198.18.1.2", seq=seq, pid=pid),
                  route(TAP, "198.18.0.3", table=100, seq=seq, pid=pid),
                  route(None, None, seq=seq, pid=pid,
                        hops=[(TAP, "198.18.0.4"), (OTHER, "198.18.1.4")]),
                  route(TAP, "198.18.0.2", seq=seq, pid=pid),
                  done(seq, pid)]
    w.on_readable()
    assert w.gateways == ["198.18.0.2", "198.18.0.4"]
    assert changes == [(False, True)]


def test_another_process_s_message_with_our_sequence_number_is_an_event():
    w, feed, _ = watcher()
    feed.queue = [route(TAP, "198.18.0.2")]
    w.on_readable()
    seq = w._dump[1]  # type: ignore[index]
    feed.queue = [route(TAP, "198.18.0.9", seq=seq, pid=w._port + 1), done(seq, w._port)]
    w.on_readable()
    assert w.gateways == []  # not part of our dump
    assert len(feed.sent) == 2  # but a change: read again
