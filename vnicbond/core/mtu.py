"""The group's MTU: following the TAP's, raising the members, and whether a change stands.

The group's MTU is the TAP's: set at start from the configuration, then changed by whoever sets
the TAP's (``ip link set ipmp0 mtu N``, a DHCP client, systemd-networkd) or by a reload whose
file changes ``mtu``. An :class:`MtuFollower` decides, with no I/O, what each change needs on
the system and whether it stands; the group runtime (:mod:`vnicbond.runtime.mtu`) carries the
steps out and makes the datapath's size checks and the members' receive rings follow.

Rules (one home for each):

* **Members are raised to at least the group's MTU**, as the bonding driver sets its slaves,
  in configuration order; a member already at or above it is left alone. Members are never
  lowered while the daemon runs (a member above the group's MTU does no harm: frames above the
  group's MTU are dropped as ``oversize`` before the TAP); each gets back the MTU it had when
  the daemon stops (:mod:`vnicbond.system.isolation`).
* **A change stands only if every member present takes it.** If the kernel refuses one, the
  members raised for it are set back to what they had, in reverse order; a change reported by
  the TAP sets the TAP back to the group's MTU (unless a newer report already came: that one
  is followed next); a reload's change sets the TAP last, so a refusal leaves it untouched.
  The refusal is an event naming the member and the kernel's reason.
* **One change at a time.** Reports of the TAP's MTU that arrive during a change are followed
  after it, the latest only. After a refusal that set the TAP back, reports of the refused
  MTU still queued from before are stale, up to the first report of another MTU.
* A member that joins (a reload adds it, a new NIC takes its name) is raised like the others;
  if it cannot be, it stays below the group's MTU and the datapath's per-member check drops
  the frames it cannot send (``tx_oversize``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vnicbond.core.events import Event
from vnicbond.core.model import Cause

#: The TAP in a step: a member's name is a string, the TAP has none.
TAP = None


@dataclass(frozen=True, slots=True)
class SetMtus:
    """Set each device to its MTU, in order (``None``: the group's TAP), stopping at the first
    the kernel refuses. Then report to :meth:`MtuFollower.finished` (undo steps: ignore the
    outcome, best effort)."""

    steps: tuple[tuple[str | None, int], ...]


@dataclass(frozen=True, slots=True)
class FollowMtu:
    """The group's MTU is now ``mtu``: the datapath's size checks and the members' receive
    rings follow it."""

    mtu: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """The kernel refused a step: ``device`` (a member's name, or ``None``: the TAP) cannot take
    the MTU, for ``reason`` (the kernel's words)."""

    device: str | None
    reason: str


MtuEffect = SetMtus | FollowMtu | Event


@dataclass(frozen=True, slots=True)
class _Change:
    """A change being carried out: from ``old`` to ``mtu``; ``before`` holds each member's MTU
    before it was raised, in step order."""

    mtu: int
    old: int
    before: tuple[tuple[str, int], ...]
    from_tap: bool
    cause: Cause


class MtuFollower:
    """One group's MTU and the change being made to it."""

    def __init__(self, group: str, mtu: int) -> None:
        self.group = group
        #: The group's MTU in force: the datapath's checks and the rings' slots follow it.
        self.mtu = mtu
        self._pending: _Change | None = None
        #: The latest TAP report not yet followed, and a reload's wish.
        self._reported: int | None = None
        self._configured: int | None = None
        #: A refused MTU the TAP was set back from: its reports queued before are stale.
        self._stale: int | None = None

    @property
    def busy(self) -> bool:
        """Whether a change is being carried out."""
        return self._pending is not None

    def wanted(self) -> bool:
        """Whether a change waits to be made (after the one under way, if any)."""
        return self._configured is not None or (
            self._reported is not None and self._reported != self.mtu)

    # -- inputs ------------------------------------------------------------------------------
    def tap_reported(self, mtu: int) -> None:
        """Netlink reports the TAP with MTU ``mtu`` (on any change of the link, not only its
        MTU); :meth:`next` says what to do about it."""
        if mtu == self._stale:
            return
        self._stale = None
        change = self._pending
        if change is not None and change.from_tap and mtu == change.mtu:
            return  # the change under way
        self._reported = mtu

    def configured(self, mtu: int) -> None:
        """A reload changed the configured ``mtu``: set the TAP to it, members first."""
        self._configured = mtu

    def next(self, members: Mapping[str, int]) -> SetMtus | None:
        """The next change to carry out, if any and none is under way; ``members``: the MTU of
        each member present, in configuration order. A reload's wish goes first."""
        if self._pending is not None:
            return None
        if self._configured is not None:
            mtu, from_tap, cause = self._configured, False, Cause.RELOAD
            self._configured = None
        elif self._reported is not None and self._reported != self.mtu:
            mtu, from_tap, cause = self._reported, True, Cause.LINK
            self._reported = None
        else:
            self._reported = None
            return None
        before = tuple((name, have) for name, have in members.items() if have < mtu)
        self._pending = _Change(mtu, self.mtu, before, from_tap, cause)
        steps: list[tuple[str | None, int]] = [(name, mtu) for name, _ in before]
        if not from_tap:
            steps.append((TAP, mtu))
        return SetMtus(tuple(steps))

    def finished(self, done: int, refusal: Refusal | None = None) -> list[MtuEffect]:
        """The change's steps were carried out: ``done`` of them taken, then the ``refusal``,
        or every step taken. What follows: the datapath's new MTU and an event, or the undo
        steps and the refusal's event."""
        change = self._pending
        assert change is not None, "finished without a change under way"
        self._pending = None
        if refusal is None:
            old, self.mtu = self.mtu, change.mtu
            if change.mtu == old:
                return []
            return [FollowMtu(change.mtu),
                    Event(self.group, "mtu", None, str(change.mtu), str(old), change.cause)]
        undo: list[tuple[str | None, int]] = [
            (name, have) for name, have in reversed(change.before[:done])]
        if change.from_tap and self._reported is None:
            undo.append((TAP, self.mtu))
            self._stale = change.mtu
        event = Event(self.group, "mtu_refused", refusal.device, str(change.mtu),
                      str(self.mtu), change.cause, refusal.reason)
        return [SetMtus(tuple(undo)), event] if undo else [event]

    def member_target(self, mtu: int) -> int | None:
        """A member that joins with MTU ``mtu``: the MTU to raise it to, or None if it has
        enough."""
        want = max(self.mtu, self._pending.mtu if self._pending else 0)
        return want if mtu < want else None
