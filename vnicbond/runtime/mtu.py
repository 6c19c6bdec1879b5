"""One group's MTU at run time: the glue between the TAP's MTU, a reload's ``mtu`` and the MTU
rules of :mod:`vnicbond.core.mtu`.

A :class:`GroupMtu` feeds the group's :class:`~vnicbond.core.mtu.MtuFollower` with the TAP's
MTU as netlink reports it (``ip link set ipmp0 mtu N``) and with a reload's new ``mtu``, and
carries out what it decides, one change at a time: the steps in a worker thread (members
through the group's isolation, which records each member's MTU before its first change and
gives it back on exit and after a crash; the TAP through netlink), then, for a change that
stands, the datapath's size check and the members' receive rings (reopened when their slots
no longer fit the MTU, as :func:`vnicbond.system.ring.rx_geometry` sizes them). Events go to
the group runtime's ``apply``. It also raises the members at start and a member that joins.
It decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from vnicbond.core.events import Event
from vnicbond.core.mtu import TAP, FollowMtu, MtuFollower, Refusal, SetMtus
from vnicbond.system import netlink
from vnicbond.system.isolation import Isolation

if TYPE_CHECKING:
    from vnicbond.runtime.group import GroupRuntime

log = logging.getLogger("vnicbond")


class GroupMtu:
    """One group's MTU: the TAP's, followed by the members and the datapath."""

    def __init__(self, rt: GroupRuntime, spawn: Callable[[Awaitable[Any]], None],
                 isolate: Callable[..., Awaitable[Any]]) -> None:
        """``spawn`` runs a background task; ``isolate`` runs a function in a worker thread
        after the group's isolation changes asked for before it (its state file is one)."""
        self.rt = rt
        self._spawn = spawn
        self._isolate = isolate
        self.follower = MtuFollower(rt.name, rt.cfg.mtu)
        self._tap_index = 0
        self._lock = asyncio.Lock()
        self._running = False

    @property
    def value(self) -> int:
        """The group's MTU in force."""
        return self.follower.mtu

    # -- before the event loop ------------------------------------------------------------------
    def prepare(self) -> None:
        """The TAP exists and the members are isolated: the group's MTU is the TAP's; raise
        every member below it (synchronous netlink: before the loop runs). Raises
        RuntimeError naming a member that cannot take it."""
        rt = self.rt
        self._tap_index = socket.if_nametoindex(rt.name)
        tap = netlink.get_link(rt.name)
        self.follower = MtuFollower(rt.name, tap.mtu if tap is not None else rt.cfg.mtu)
        for name in rt.members:
            try:
                _raise(rt.isolation, self.follower, rt.name, name)
            except OSError as e:
                raise RuntimeError(f"group {rt.name}: member {name} cannot take the group's "
                                   f"MTU {self.value}: {e.strerror or e}") from None

    # -- in the event loop ------------------------------------------------------------------------
    def link(self, info: netlink.LinkInfo, deleted: bool) -> None:
        """A link event: if it reports the TAP, follow its MTU."""
        if deleted or not self._tap_index or info.index != self._tap_index:
            return
        self.follower.tap_reported(info.mtu)
        if self.follower.wanted() and not self._running:
            self._running = True
            self._spawn(self._follow_reports())

    async def configure(self, mtu: int) -> Refusal | None:
        """A reload changed ``mtu``: raise the members, then set the TAP; None once it
        stands, else the refusal (members and TAP as they were; an event says why)."""
        async with self._lock:
            self.follower.configured(mtu)
            return await self._change()

    async def join(self, name: str) -> None:
        """Member ``name`` joins (a reload adds it, a new NIC takes its name) and is
        isolated: raise it to the group's MTU. If it cannot take it, say so and go on."""
        rt = self.rt
        try:
            await self._isolate(_raise, rt.isolation, self.follower, rt.name, name)
        except OSError as e:
            log.warning("%s: member %s cannot take the group's MTU %d (%s): frames above its "
                        "own MTU are not sent through it", rt.name, name, self.value,
                        e.strerror or e)

    async def _follow_reports(self) -> None:
        try:
            while self.follower.wanted():
                async with self._lock:
                    await self._change()
        finally:
            self._running = False

    async def _change(self) -> Refusal | None:
        """Make the change the follower wants next (the lock held): steps, then what follows."""
        rt = self.rt
        loop = asyncio.get_running_loop()
        mtus = await loop.run_in_executor(None, _member_mtus, list(rt.members))
        change = self.follower.next(mtus)
        if change is None:
            return None
        done, refusal = await self._isolate(_carry_out, rt.isolation, rt.name, change)
        for effect in self.follower.finished(done, refusal):
            match effect:
                case SetMtus():
                    _, failed = await self._isolate(_carry_out, rt.isolation, rt.name, effect)
                    if failed is not None:
                        log.warning("%s: cannot set %s's MTU back: %s", rt.name,
                                    failed.device or "the TAP", failed.reason)
                case FollowMtu(mtu=mtu):
                    self._follow(mtu)
                case Event(kind="mtu_refused"):  # a warning, not a change
                    rt.events.record(effect, time.time())
                    log.warning("%s", effect.log_line())
                case Event():
                    rt.apply([effect])
        return refusal

    def _follow(self, mtu: int) -> None:
        """The group's MTU is ``mtu`` now: the datapath's size check, and each open member's
        receive ring if its slots no longer fit (the port keeps its counters)."""
        rt = self.rt
        if rt.datapath is not None:
            rt.datapath.set_group_mtu(mtu)
        for member in rt.members.values():
            try:
                if member.reopen(mtu):
                    rt.guests.accept_on(member)
            except OSError as e:
                log.warning("%s: member %s: cannot reopen its socket for MTU %d (frames above "
                            "its receive slots are copied): %s", rt.name, member.name, mtu,
                            e.strerror or e)


# -- in worker threads ----------------------------------------------------------------------------
def _member_mtus(names: list[str]) -> dict[str, int]:
    """Each present member's MTU as the kernel has it now, in the order given."""
    mtus = {}
    for name in names:
        info = netlink.get_link(name)
        if info is not None:
            mtus[name] = info.mtu
    return mtus


def _carry_out(isolation: Isolation, tap: str, change: SetMtus) -> tuple[int, Refusal | None]:
    """Set each device's MTU in order, members through ``isolation`` (recorded); stop at the
    first refusal. Returns how many steps were taken, and the refusal."""
    for done, (device, mtu) in enumerate(change.steps):
        try:
            if device is TAP:
                netlink.set_mtu(tap, mtu)
            else:
                isolation.set_mtu(device, mtu)
        except OSError as e:
            return done, Refusal(device, e.strerror or str(e))
        except Exception as e:  # noqa: BLE001 - a failure of netlink itself: a refusal too,
            return done, Refusal(device, str(e))  # so the change is rolled back, not stuck
    return len(change.steps), None


def _raise(isolation: Isolation, follower: MtuFollower, group: str, name: str) -> None:
    """Raise member ``name`` to the group's MTU if it is below (a start, a member joining).
    Raises OSError if the kernel refuses; a missing member is left alone."""
    info = netlink.get_link(name)
    target = follower.member_target(info.mtu) if info is not None else None
    if target is not None and info is not None:
        isolation.set_mtu(name, target)
        log.info("%s: member %s's MTU raised from %d to the group's %d", group, name,
                 info.mtu, target)
