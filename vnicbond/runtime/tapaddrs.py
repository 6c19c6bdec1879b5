"""One group's TAP as the system configures it: its addresses and its routes' gateways fed to
the engine as they change.

A :class:`TapAddresses` owns the group's :class:`vnicbond.system.ifaddr.AddressWatcher`: it
reads the TAP's addresses and routes once before the event loop runs (after the configured
ones are on), then follows them from the loop, and hands every change to the engine
(:meth:`vnicbond.core.engine.GroupEngine.addresses_read`, ``gateways_read``), whose effects
the group runtime carries out. It logs what the engine's events do not say: an address
that left, a configured one removed by hand, the targets the routes give. It decides
nothing: which addresses are data addresses and which gateways are probe targets is the
core's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from ipaddress import ip_address

from vnicbond.core.engine import Effect, GroupEngine
from vnicbond.system.ifaddr import AddressWatcher

log = logging.getLogger("vnicbond")


class TapAddresses:
    """Follows one TAP's addresses and routes for its group's engine."""

    def __init__(self, group: str, engine: GroupEngine,
                 apply: Callable[[list[Effect]], None]) -> None:
        self.group = group
        self.engine = engine
        self.apply = apply
        #: Called when data addresses were added (the runtime warms their announcements).
        self.on_addresses: Callable[[], None] | None = None
        self.watcher: AddressWatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Subscribe, then read the TAP's addresses and routes (synchronous netlink: before
        the event loop runs)."""
        watcher = AddressWatcher(socket.if_nametoindex(self.group))
        try:
            watcher.read_now()
        except OSError as e:
            watcher.close()
            raise RuntimeError(f"group {self.group}: cannot read the addresses and routes of "
                               f"{self.group}: {e.strerror or e}") from None
        self.watcher = watcher

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow the TAP from the loop, and hand the engine what was read at start (after
        its first election)."""
        assert self.watcher is not None
        self._loop = loop
        self.watcher.on_change = self._changed
        loop.add_reader(self.watcher.fileno(), self.watcher.on_readable)
        self._changed(True, True)

    def pause(self) -> None:
        """Stop reading for a while (a reload changes the configured addresses: the engine
        must hear of them as configured before the kernel reports them); the kernel's reports
        wait in the socket."""
        if self.watcher is not None and self._loop is not None:
            self._loop.remove_reader(self.watcher.fileno())

    def resume(self) -> None:
        """Read again, starting with what waited."""
        if self.watcher is not None and self._loop is not None:
            self._loop.add_reader(self.watcher.fileno(), self.watcher.on_readable)

    def stop(self) -> None:
        """Stop following and close the socket. Never raises."""
        if self.watcher is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self.watcher.fileno())
        self.watcher.close()
        self.watcher = None

    def _changed(self, addresses: bool, gateways: bool) -> None:
        assert self.watcher is not None
        now = time.monotonic()
        if addresses:
            changes, effects = self.engine.addresses_read(self.watcher.addresses.values(), now)
            for address in changes.removed_by_hand:
                log.warning("%s: configured address %s was removed from %s; it is not put "
                            "back (a restart adds it again)", self.group, address, self.group)
            for address in changes.removed:
                if address not in changes.removed_by_hand:
                    log.info("%s: address %s left %s", self.group, address, self.group)
            if changes.added and self.on_addresses is not None:
                self.on_addresses()
            self.apply(effects)
        if gateways:
            before = self.engine.targets
            effects = self.engine.gateways_read(
                [ip_address(g) for g in self.watcher.gateways], now)
            if self.engine.targets != before:
                log.info("%s: probe targets from the routes' gateways: %s", self.group,
                         ", ".join(f"{m} -> {' '.join(str(t) for t in ts) or '-'}"
                                   for m, ts in self.engine.targets.items()))
            self.apply(effects)
