"""The guests behind one group's TAP at run time: the glue between what the kernel and the
datapath report about them and the group engine's guest rules.

A :class:`TapGuests` owns the group's guest MAC table (:class:`vnicbond.core.fdb.MacTable`,
filled by the datapath as the host sends), follows the TAP over netlink (its promiscuity
counter, and the unicast list upper devices such as macvlans register on it), ages the table
on the group's timer, and hands every change to the engine
(:meth:`vnicbond.core.engine.GroupEngine.macs_changed`, ``tap_promiscuous``); what the engine
returns goes to the group's ``apply``. It decides nothing: placement, filters and
announcements are the engine's (:mod:`vnicbond.core.guests`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from vnicbond.config import GroupConfig
from vnicbond.core.engine import Effect, GroupEngine
from vnicbond.core.fdb import MacTable
from vnicbond.runtime.member import Member
from vnicbond.system import netlink
from vnicbond.system.netlink import LinkInfo

log = logging.getLogger("vnicbond")

#: Seconds between two readings of the TAP's unicast address list: an upper device brought up
#: in another namespace (a container's macvlan) adds its MAC with no event in the daemon's.
UNICAST_LIST_PERIOD = 2.0


class TapGuests:
    """One group's guest MACs, and the TAP's link events that concern them."""

    def __init__(self, cfg: GroupConfig, engine: GroupEngine,
                 apply: Callable[[list[Effect]], None],
                 spawn: Callable[[Awaitable[Any]], None]) -> None:
        """``apply`` carries out the engine's effects; ``spawn`` runs a background task."""
        self.name = cfg.name
        self.mac = cfg.mac
        self.engine = engine
        self.table = MacTable(cfg.mac_learning.limit, cfg.mac_learning.aging_ms / 1000)
        #: Whether the TAP's promiscuity counter is above zero (a bridge port, a capture).
        self.promiscuous = False
        #: Told when :attr:`promiscuous` changes (the datapath's flag).
        self.on_promiscuous: Callable[[bool], None] | None = None
        self._apply = apply
        self._spawn = spawn
        self._tap_index = 0
        self._reading = False
        self._read_again = False
        self._poll: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, tap_name: str) -> None:
        """The TAP exists: link events about it, or naming it as their lower device, are
        ours from now on."""
        self._tap_index = socket.if_nametoindex(tap_name)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the TAP's unicast list now and every :data:`UNICAST_LIST_PERIOD`."""
        self._loop = loop
        self._read_periodically()

    def stop(self) -> None:
        """Stop reading the TAP's unicast list. Never raises."""
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        self._loop = None

    def _read_periodically(self) -> None:
        if self._loop is None:
            return
        self._poll = self._loop.call_later(UNICAST_LIST_PERIOD, self._read_periodically)
        self._read()

    def _read(self) -> None:
        """Read the TAP's unicast list in a worker thread (once more after it if asked again
        meanwhile: the list may have changed after the read began)."""
        if self._reading:
            self._read_again = True
        else:
            self._reading = True
            self._spawn(self._read_unicast_list())

    # -- inputs ------------------------------------------------------------------------------
    def changed(self) -> None:
        """Guest MACs came or went (learned, aged out, evicted, registered): tell the engine.
        Called from inside a datapath batch too: what the engine returns sends nothing."""
        added, removed = self.table.changes()
        if added or removed:
            self._apply(self.engine.macs_changed(added, removed, time.monotonic()))

    def expire(self, now: float) -> None:
        """The group's timer fired: forget MACs not heard from for the aging time."""
        self.table.expire(now)
        if self.table.pending:
            self.changed()

    def next_expiry(self) -> float | None:
        """When :meth:`expire` has something to do next."""
        return self.table.next_expiry()

    def link(self, info: LinkInfo, deleted: bool) -> bool:
        """A link event; returns whether it was about the TAP or a device stacked on it (a
        macvlan), and then follows the TAP's promiscuity and reads its unicast list again."""
        if not self._tap_index or self._tap_index not in (info.index, info.link):
            return False
        if info.index == self._tap_index and not deleted:
            promiscuous = info.promiscuity > 0
            if promiscuous != self.promiscuous:
                log.info("%s: the TAP is %s", self.name,
                         "promiscuous" if promiscuous else "no longer promiscuous")
                self.promiscuous = promiscuous
                if self.on_promiscuous is not None:
                    self.on_promiscuous(promiscuous)
                self._apply(self.engine.tap_promiscuous(promiscuous, time.monotonic()))
        self._read()
        return True

    def reconfigure(self, cfg: GroupConfig) -> None:
        """A reload: the new limit and aging (a smaller limit evicts at once)."""
        self.table.resize(cfg.mac_learning.limit, cfg.mac_learning.aging_ms / 1000)
        if self.table.pending:
            self.changed()

    # -- outputs -----------------------------------------------------------------------------
    def accept_on(self, member: Member) -> None:
        """A member was opened (at start, a new NIC under its name, a reload): its NIC
        accepts what the others do."""
        guests = self.engine.guests
        member.accept(tuple(guests.filter), (), guests.promiscuous)

    async def _read_unicast_list(self) -> None:
        """The MACs upper devices registered on the TAP (a macvlan's) are guests too."""
        try:
            while True:
                self._read_again = False
                macs = await asyncio.get_running_loop().run_in_executor(
                    None, netlink.unicast_addresses, self.name)
                if not self._read_again:
                    break
        finally:
            self._reading = False
        self.table.register(macs - {self.mac})
        if self.table.pending:
            self.changed()
