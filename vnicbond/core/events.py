"""Events: the changes an operator sees in ``vnicbond events``, and the log that keeps them.

The group engine emits an :class:`Event` for every state change it decides (a member's state,
the group's state, an address that moved, the carrier, a reload), with its cause. The daemon
records each one in its :class:`EventLog` with the wall-clock time it was carried out and a
sequence number shared by all groups, so ``events`` reads them in order across groups. The
log is bounded: it keeps the last ``HISTORY`` records. No I/O and no clock here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from vnicbond.core.model import Cause

#: How many records the log keeps.
HISTORY = 1000


@dataclass(frozen=True, slots=True)
class Event:
    """One change. ``kind`` is ``member``, ``group``, ``address``, ``carrier``, ``config``,
    ``mtu``, ``mtu_refused``, ``fdt`` (the failure detection time in use changed: ``state``
    the new one in ms, ``old`` the previous, ``reason`` why) or ``target`` (``member``'s probe
    target ``old`` was ``found`` or ``dropped``: ``state``, and ``reason`` why);
    ``state`` is the new state (for ``address``: the address, and
    ``member`` its new host; for ``mtu_refused``: the MTU refused, ``member`` the member that
    refused it, None for the TAP); ``old`` the previous one (for ``mtu_refused``: the MTU that
    stays); ``reason`` the kernel's words where it refused something."""

    group: str
    kind: str
    member: str | None
    state: str
    old: str | None
    cause: Cause | None
    reason: str | None = None

    def log_line(self) -> str:
        """The change as the daemon logs it."""
        cause = self.cause.value if self.cause else None
        if self.kind == "mtu_refused":
            who = f"member {self.member}" if self.member else "the TAP"
            return (f"{self.group}: mtu {self.state} refused: {who} cannot take it "
                    f"({self.reason}); the group stays at {self.old} ({cause})")
        if self.kind == "fdt":
            return f"{self.group}: {self.reason}"
        if self.kind == "target":
            return (f"{self.group}: member {self.member}: probe target {self.old} {self.state}"
                    f" ({self.reason})")
        if self.kind == "address":
            return f"{self.group}: address {self.state} moved {self.old} -> {self.member} ({cause})"
        subject = f"member {self.member}" if self.kind == "member" else self.kind
        old = f"{self.old} -> " if self.old else ""
        why = f" ({cause})" if cause else ""
        return f"{self.group}: {subject} {old}{self.state}{why}"


class EventLog:
    """The last ``HISTORY`` events of every group, in order, as ``events --json`` prints them."""

    def __init__(self, history: int = HISTORY) -> None:
        self._records: deque[dict[str, Any]] = deque(maxlen=history)
        self._seq = 0

    def record(self, event: Event, when: float) -> int:
        """Add ``event``, which happened at wall-clock time ``when``; returns its number."""
        self._seq += 1
        self._records.append({"seq": self._seq, "time": when, "group": event.group,
                              "kind": event.kind, "member": event.member,
                              "state": event.state, "old": event.old,
                              "cause": event.cause.value if event.cause else None,
                              "reason": event.reason})
        return self._seq

    def snapshot(self) -> dict[str, Any]:
        """The log as JSON, for code taking over the running daemon (``vnicbond upgrade``)."""
        return {"seq": self._seq, "records": list(self._records)}

    def restore(self, kept: dict[str, Any]) -> None:
        """Go on from :meth:`snapshot`'s log: its records, then new ones numbered after them.
        Raises ValueError, changing nothing, if ``kept`` is malformed."""
        try:
            seq = int(kept["seq"])
            records = [dict(r) for r in kept["records"]]
            if any(not isinstance(r.get("seq"), int) for r in records):
                raise ValueError("a record without a number")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"the event log is malformed: {e!r}") from None
        self._records.clear()
        self._records.extend(records)
        self._seq = seq

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The records after number ``seq``, oldest first."""
        return [dict(r) for r in self._records if r["seq"] > seq]
