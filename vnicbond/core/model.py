"""The words the decision core speaks: member states, causes, and the actions it asks for.

Everything here is a small frozen value. :class:`vnicbond.core.group.Group` returns the
actions up to :class:`AddressMoved`; the group engine (:mod:`vnicbond.core.engine`) passes the
forwarding and carrier ones on as effects, turns announcements into :class:`SendAnnouncement`
rounds and probes into :class:`SendProbeFrames`, and the group runtime
(:mod:`vnicbond.runtime.group`) carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MemberState(StrEnum):
    """A member's role as status reports it."""

    ACTIVE = "active"  # carries the group's traffic now
    STANDBY = "standby"  # healthy and ready, carries nothing now
    FAILED = "failed"  # its link (or, later, its probes) says it cannot carry traffic
    OFFLINE = "offline"  # taken out by the administrator


class GroupState(StrEnum):
    """The group's health, as in ipmpstat: all members usable, some, or none."""

    OK = "ok"
    DEGRADED = "degraded"
    FAILED = "failed"


class Cause(StrEnum):
    """Why a state changed."""

    START = "start"
    LINK = "link"
    PROBE = "probe"
    ADMIN = "admin"
    RELOAD = "reload"
    SYSTEM = "system"  # the system put an address on the TAP (DHCP, SLAAC, a script)
    UPGRADE = "upgrade"  # new code took over the running daemon (``vnicbond upgrade``)


#: The causes of a process's first decision: the datapath is new and must be told everything.
FIRST = (Cause.START, Cause.UPGRADE)


@dataclass(frozen=True, slots=True)
class SetForwarding:
    """Send outbound frames through ``tx``; deliver inbound frames from the ``rx`` members."""

    tx: str | None
    rx: frozenset[str]


@dataclass(frozen=True, slots=True)
class SetSpread:
    """Load spreading: spread outbound flows over ``active`` (preference order), receive on
    all of them, and host each data address on its member (``hosts``: (address, member))."""

    active: tuple[str, ...]
    hosts: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class Announce:
    """Send gratuitous ARPs / unsolicited NAs for ``addresses`` out of ``member``."""

    member: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SetCarrier:
    """Switch the TAP's carrier: on while the group has a usable member."""

    on: bool


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """A member's state changed (recorded, logged and reported; nothing to do on the system)."""

    member: str
    old: MemberState | None
    new: MemberState
    cause: Cause


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """The group's state changed."""

    old: GroupState | None
    new: GroupState
    cause: Cause


@dataclass(frozen=True, slots=True)
class AddressMoved:
    """A data address is now hosted by another member (None: by no member)."""

    address: str
    old: str | None
    new: str | None
    cause: Cause


Action = (SetForwarding | SetSpread | Announce | SetCarrier | MemberChanged | GroupChanged
          | AddressMoved)


@dataclass(frozen=True, slots=True)
class SendAnnouncement:
    """Send one round of announcements (gratuitous ARP / unsolicited NA, one per address)
    for ``addresses`` out of ``member``, with ``mac`` as the addresses' link-layer address."""

    member: str
    mac: bytes
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendProbeFrames:
    """Send these control frames (probes, ARP/NDP answers for a test address; plain
    Ethernet) out of ``member``'s probe socket."""

    member: str
    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetProbing:
    """``member``'s probe sockets must take replies for ``macs`` (the MACs its sources send
    with) and questions (ARP/NS) for ``questions`` (its test and link-local addresses);
    no MAC: it probes from no address and needs none."""

    member: str
    macs: tuple[bytes, ...]
    questions: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SendMacAnnouncement:
    """Send one round of learning frames (RARP, the guest's MAC as source, broadcast) for each
    guest MAC in ``macs`` out of ``member``, so the switch moves them to its port."""

    member: str
    macs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetMacHosts:
    """Load spreading: each guest MAC in ``hosts`` is now carried by its member (None: no
    member), and the MACs in ``removed`` are gone."""

    hosts: tuple[tuple[bytes, str | None], ...]
    removed: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetMemberFilter:
    """Every member's NIC accepts the guest MACs in ``add`` and no longer those in ``remove``;
    with ``promiscuous``, it accepts every frame instead."""

    add: tuple[bytes, ...]
    remove: tuple[bytes, ...]
    promiscuous: bool
