"""One member NIC at run time: the one home of its sockets, MAC, link and drop totals.

A :class:`Member` owns the member's data socket and its memory-mapped rings (lent to the
datapath, which drains and fills them and counts their frames; a BPF filter on the socket keeps
the daemon's own probe traffic from the TAP), its two probe sockets when it probes from an
address and its socket for link-layer probes while the group probes transitively (read here,
their frames handed to the group runtime), the MAC of the NIC it is bound to, the last link
state netlink reported, and the frames the kernel dropped at its probe sockets. Opening and
closing are written here once: :meth:`Member.open` at start, on a reload that adds the member
and when a new NIC takes its name; :meth:`Member.close` when its NIC goes away, a reload
removes it, and at stop; :meth:`Member.reopen` when the group's MTU no longer fits its receive
ring's slots. New code taking over the running daemon (``vnicbond upgrade``) adopts the open
socket instead (:meth:`Member.handover`, :meth:`Member.adopt`).

It decides nothing: what to open and when comes from the group runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import astuple
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from vnicbond.core.model import SetProbing
from vnicbond.datapath import Datapath
from vnicbond.system.bpf import attach_data_filter
from vnicbond.system.netlink import LinkInfo
from vnicbond.system.packet import (
    ProbeSockets,
    accept_all,
    accept_mac,
    kernel_drops,
    open_member_socket,
    open_transitive_socket,
)
from vnicbond.system.ring import MemberRings, rx_geometry

log = logging.getLogger("vnicbond")

#: Frames drained from a probe socket per readiness callback.
PROBE_BATCH = 32

IPAddress = IPv4Address | IPv6Address
#: Called with (member, frames) for frames read from a member's probe sockets.
FrameHandler = Callable[[str, list[bytes]], None]


class Member:
    """One member's live resources."""

    def __init__(self, name: str, group: str) -> None:
        self.name = name
        self.group = group
        #: The NIC's link as netlink last reported it; None while no NIC has the name.
        self.link: LinkInfo | None = None
        #: The NIC's own MAC (known once the member was opened; kept after it closes).
        self.mac = b""
        #: A new NIC took the member's name and is being taken back.
        self.attaching = False
        self.sock: socket.socket | None = None
        self.rings: MemberRings | None = None
        #: What the NIC was asked to accept for guests, on this socket: MACs, or everything.
        self.accepted: set[bytes] = set()
        self.accepting_all = False
        self.probe: ProbeSockets | None = None
        #: The socket of link-layer probes (ethertype 0x88B5), while the group probes so.
        self.transitive: socket.socket | None = None
        #: The daemon's probes' ICMP identifier and token prefix: the data socket's filter
        #: keeps their replies from the TAP (None: no filter).
        self.probe_replies: tuple[int, bytes] | None = None
        self._probe_kernel = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._datapath: Datapath | None = None
        self._on_frames: FrameHandler | None = None
        self._group_mac = b""

    @property
    def up(self) -> bool:
        """Whether its NIC is there and can pass frames."""
        return self.link is not None and self.link.up

    def open(self, loop: asyncio.AbstractEventLoop, datapath: Datapath, group_mac: bytes,
             group_mtu: int, on_frames: FrameHandler) -> None:
        """Open the data socket and its rings on the NIC now called by the member's name
        (asking it to accept ``group_mac``; receive slots sized for ``group_mtu``) and hand
        them to the datapath; :meth:`configure` then says what belongs to its test address and
        whether it probes. Raises OSError if the NIC cannot be opened."""
        sock, rings = open_member_socket(self.name, group_mac, group_mtu)
        self._attach(loop, datapath, sock, rings, on_frames)
        self._group_mac = group_mac

    def adopt(self, loop: asyncio.AbstractEventLoop, datapath: Datapath, sock: socket.socket,
              rings: MemberRings, accepted: set[bytes], accepting_all: bool,
              on_frames: FrameHandler, group_mac: bytes) -> None:
        """Take over the data socket and rings the daemon's previous code had open on the NIC
        (``vnicbond upgrade``): frames that arrived meanwhile wait in its receive ring. The
        socket already carries what the NIC was asked to accept (``accepted``,
        ``accepting_all``); :meth:`configure` then opens the probe sockets afresh."""
        self._attach(loop, datapath, sock, rings, on_frames)
        self._group_mac = group_mac
        self.accepted, self.accepting_all = set(accepted), accepting_all

    def handover(self) -> dict[str, Any] | None:
        """What new code taking over the daemon needs to go on with this member's data
        socket (kept open across the exec): its descriptor, its rings' geometry and cursors,
        what its NIC was asked to accept. None while the member is closed."""
        if self.sock is None or self.rings is None:
            return None
        rx, tx = self.rings.geometry
        return {"fd": self.sock.fileno(), "rx": list(astuple(rx)), "tx": list(astuple(tx)),
                "rx_head": self.rings.rx.head, "tx_head": self.rings.tx.head,
                "accepted": sorted(mac.hex() for mac in self.accepted),
                "accepting_all": self.accepting_all}

    def _attach(self, loop: asyncio.AbstractEventLoop, datapath: Datapath,
                sock: socket.socket, rings: MemberRings, on_frames: FrameHandler) -> None:
        """Use ``sock`` and its rings from now on, and hand them to the datapath."""
        self.sock, self.rings = sock, rings
        self.accepted, self.accepting_all = set(), False
        self.mac = sock.getsockname()[4]
        if self.probe_replies is not None:
            attach_data_filter(sock, *self.probe_replies, self.mac)
        self._loop, self._datapath, self._on_frames = loop, datapath, on_frames
        if self.name in datapath.ports:  # a new NIC under the member's name
            datapath.attach(self.name, sock, rings, self.mac)
        else:
            datapath.add_port(self.name, sock, rings, self.mac)
        if self.link is not None:
            datapath.set_mtu(self.name, self.link.mtu)

    def reopen(self, group_mtu: int) -> bool:
        """The group's MTU is ``group_mtu`` now: if the receive ring's slots are not those
        it needs, open a new data socket and rings and swap them in (the datapath's port keeps
        its counters), then close the old ones; returns whether it did (the NIC then accepts
        no guest MACs on it yet: the caller says which). Frames still in the old ring are
        lost. Only while the member is open; raises OSError, the old socket kept, if the new
        one cannot be opened."""
        old_sock, old_rings, dp = self.sock, self.rings, self._datapath
        if old_sock is None or old_rings is None or dp is None or self._loop is None:
            return False
        if old_rings.rx_geometry == rx_geometry(group_mtu):
            return False
        assert self._on_frames is not None
        port = dp.ports.get(self.name)
        if port is not None:
            port.poll_kernel()  # the old socket's last count of kernel drops
        self.open(self._loop, dp, self._group_mac, group_mtu, self._on_frames)
        old_rings.close()
        old_sock.close()
        return True

    def configure(self, test_ip: IPAddress | None, probing: SetProbing, transitive: bool
                  ) -> None:
        """The member's test address (frames for it belong to the daemon, not the TAP), what
        its probe sockets take (no MAC: it probes from no address, and has none), and
        whether it has a socket for link-layer probes: open, re-filter or close them to
        match. Only while the member is open."""
        if self.sock is None or self._datapath is None:
            return
        self._datapath.set_test_ip(self.name, _packed(test_ip))
        if not probing.macs:
            if self.probe is not None:  # kept open: a close stalls the loop (see silence)
                self.probe.silence()
        elif self.probe is not None:
            self.probe.refilter(list(probing.macs), list(probing.questions))
        else:
            self._open_probe(probing)
        if not transitive:
            self._close_transitive()
        elif self.transitive is None:
            self._open_transitive()

    def close(self) -> None:
        """Stop reading and close every socket (the datapath's port keeps its counters and
        the socket's last count of kernel drops). Never raises."""
        dp = self._datapath
        port = dp.ports.get(self.name) if dp is not None else None
        if dp is not None and port is not None and self.sock is not None:
            port.poll_kernel()
            dp.detach(self.name)
        if self.rings is not None:
            self.rings.close()
            self.rings = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._close_probe()
        self._close_transitive()

    def link_changed(self, info: LinkInfo) -> None:
        """Netlink reports the member's NIC (same index): keep its MTU for the datapath, and
        watch every socket afresh while it is up (uvloop stops watching a socket that reported
        the NIC going down, and a report may come after events were lost)."""
        old, self.link = self.link, info
        dp = self._datapath
        if dp is None or self.sock is None:
            return
        if old is None or old.mtu != info.mtu:
            dp.set_mtu(self.name, info.mtu)
        if info.admin_up:  # (on every report: a missed down-up, events lost, costs nothing)
            dp.rearm(self.name)
            if self._loop is not None:
                for sock in self._control_sockets():
                    self._loop.remove_reader(sock.fileno())
                    self._loop.add_reader(sock.fileno(), self._on_probe_ready, sock)

    def remove(self) -> None:
        """A reload removed the member: close it and drop its datapath port."""
        self.close()
        if self._datapath is not None:
            self._datapath.remove_port(self.name)

    def accept(self, add: tuple[bytes, ...], remove: tuple[bytes, ...], everything: bool) -> None:
        """Ask the NIC to accept the guest MACs in ``add`` and stop for those in ``remove``,
        or to accept every frame (promiscuous). Only while the member is open; a failure (the
        NIC just went) is logged and changes nothing else."""
        sock = self.sock
        if sock is None:
            return
        try:
            ifindex = socket.if_nametoindex(self.name)
            if everything != self.accepting_all:
                accept_all(sock, ifindex, everything)
                self.accepting_all = everything
            for mac in remove:
                if mac in self.accepted:
                    accept_mac(sock, ifindex, mac, False)
                    self.accepted.discard(mac)
            for mac in add:
                if mac not in self.accepted:
                    accept_mac(sock, ifindex, mac, True)
                    self.accepted.add(mac)
        except OSError as e:
            log.warning("%s: member %s: cannot set which MACs it accepts: %s", self.group,
                        self.name, e.strerror or e)

    def send_probe_frames(self, frames: tuple[bytes, ...]) -> None:
        """Send control frames out of a control socket (lost, as on a down link, if the
        member has none now)."""
        sock = self.probe.replies if self.probe is not None else self.transitive
        if sock is None:
            return
        for frame in frames:
            with contextlib.suppress(OSError):
                sock.send(frame)

    def probe_kernel_drops(self) -> int:
        """Frames the kernel dropped at the probe sockets (their queue was full), in all."""
        if self.probe is not None:
            self._probe_kernel += self.probe.kernel_drops()
        if self.transitive is not None:
            self._probe_kernel += kernel_drops(self.transitive)
        return self._probe_kernel

    # -- probe sockets -----------------------------------------------------------------------
    def _control_sockets(self) -> list[socket.socket]:
        socks = list(self.probe) if self.probe is not None else []
        return socks + ([self.transitive] if self.transitive is not None else [])

    def _open_probe(self, probing: SetProbing) -> None:
        assert self._loop is not None
        try:
            self.probe = ProbeSockets(self.name, list(probing.macs), list(probing.questions))
        except OSError as e:
            log.warning("%s: member %s: cannot open its probe sockets: %s", self.group,
                        self.name, e.strerror or e)
            return
        for sock in self.probe:
            self._loop.add_reader(sock.fileno(), self._on_probe_ready, sock)

    def _open_transitive(self) -> None:
        assert self._loop is not None
        try:
            self.transitive = open_transitive_socket(self.name)
        except OSError as e:
            log.warning("%s: member %s: cannot open its link-layer probe socket: %s",
                        self.group, self.name, e.strerror or e)
            return
        self._loop.add_reader(self.transitive.fileno(), self._on_probe_ready, self.transitive)

    def _close_transitive(self) -> None:
        if self.transitive is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self.transitive.fileno())
        self._probe_kernel += kernel_drops(self.transitive)
        self.transitive.close()
        self.transitive = None

    def _close_probe(self) -> None:
        if self.probe is None:
            return
        if self._loop is not None:
            for sock in self.probe:
                self._loop.remove_reader(sock.fileno())
        self.probe_kernel_drops()  # the last count goes with the sockets
        self.probe.close()
        self.probe = None

    def _on_probe_ready(self, sock: socket.socket) -> None:
        frames = []
        for _ in range(PROBE_BATCH):
            try:
                frames.append(sock.recv(4096))
            except OSError:  # drained; or ENETDOWN once as the link goes (netlink says more)
                break
        if frames and self._on_frames is not None:
            self._on_frames(self.name, frames)


def _packed(ip: IPAddress | None) -> bytes | None:
    return ip.packed if ip is not None else None
