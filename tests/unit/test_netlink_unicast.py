"""Reading the MACs upper devices registered on the TAP (:func:`netlink.unicast_addresses`),
without the kernel: pyroute2's ``IPRoute`` is replaced by one that answers the fdb dump with
the messages the kernel sends (``rtnl_fdb_dump``).

For a device that is a bridge port the kernel dumps two kinds of entries for it: the bridge's
own (``br_fdb_dump``: no ``NTF_SELF`` flag, an ``NDA_MASTER`` attribute; every MAC the bridge
learned behind that port, which for the TAP are the hosts on the wire, and the port's own) and
the device's address lists (``ndo_dflt_fdb_dump``: ``NTF_SELF``, ``NUD_PERMANENT``; what upper
devices such as a macvlan put there, unicast and multicast). Only the unicast ``self`` entries
are guests; entries for other devices, without an address, or multicast are not.
"""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2.netlink.rtnl.ndmsg import (
    NTF_EXT_LEARNED,
    NTF_SELF,
    NUD_NOARP,
    NUD_PERMANENT,
    NUD_REACHABLE,
    ndmsg,
)

from vnicbond.system import netlink

TAP = 7
OTHER = 9
BRIDGE = 12


def entry(lladdr: str | None, ifindex: int = TAP, flags: int = NTF_SELF,
          state: int = NUD_PERMANENT) -> ndmsg:
    """One fdb entry of the device's own address lists (as ``ndo_dflt_fdb_dump`` fills it)."""
    msg = ndmsg()
    msg["ifindex"] = ifindex
    msg["flags"] = flags
    msg["state"] = state
    msg["attrs"] = [("NDA_LLADDR", lladdr)] if lladdr is not None else []
    return msg


def bridge_entry(lladdr: str, state: int, flags: int = 0) -> ndmsg:
    """One entry of the bridge's table on the port (as ``fdb_fill_info`` fills it)."""
    msg = entry(lladdr, flags=flags, state=state)
    msg["attrs"] = [*msg["attrs"], ("NDA_MASTER", BRIDGE)]
    return msg


class FakeIPRoute:
    """``IPRoute()`` as unicast_addresses uses it: one link, ``ipmp0``, and a dump."""

    dump: list[ndmsg] = []
    asked: list[tuple[str, dict[str, Any]]] = []

    def __enter__(self) -> FakeIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def link_lookup(self, ifname: str) -> list[int]:
        return [TAP] if ifname == "ipmp0" else []

    def fdb(self, command: str, **kwarg: Any) -> list[ndmsg]:
        FakeIPRoute.asked.append((command, kwarg))
        return list(FakeIPRoute.dump)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeIPRoute]:
    monkeypatch.setattr(netlink, "IPRoute", FakeIPRoute)
    FakeIPRoute.dump = []
    FakeIPRoute.asked = []
    return FakeIPRoute


def test_the_taps_unicast_self_entries_are_the_registered_macs(
        fake: type[FakeIPRoute]) -> None:
    fake.dump = [
        entry("02:54:00:00:00:03"),  # a macvlan on the TAP
        entry("02:54:00:00:00:04"),
        entry("33:33:00:00:00:01"),  # multicast lists are not guests
        entry("01:00:5e:00:00:01"),
        entry("02:54:00:00:00:05", ifindex=OTHER),  # another device's
        entry(None),
    ]
    assert netlink.unicast_addresses("ipmp0") == {bytes.fromhex("025400000003"),
                                                   bytes.fromhex("025400000004")}
    assert fake.asked == [("dump", {"ifindex": TAP})]


def test_no_such_device_has_no_addresses(fake: type[FakeIPRoute]) -> None:
    fake.dump = [entry("02:54:00:00:00:03")]
    assert netlink.unicast_addresses("nothere") == set()
    assert fake.asked == []


def test_a_bridges_learned_entries_on_the_tap_are_not_guests(fake: type[FakeIPRoute]) -> None:
    """The TAP is a bridge port: the bridge learned the hosts on the wire behind it. They are
    not ours to filter for, and above all not ours to announce on a failover."""
    fake.dump = [
        bridge_entry("02:11:11:11:11:11", NUD_REACHABLE),  # a peer, learned
        bridge_entry("02:11:11:11:11:12", NUD_REACHABLE, NTF_EXT_LEARNED),
        bridge_entry("02:11:11:11:11:13", NUD_NOARP),  # a static entry
        bridge_entry("02:00:00:00:ee:01", NUD_PERMANENT),  # the port's own ("local")
        entry("02:54:00:00:00:03"),  # a macvlan's, on the TAP's own list
    ]
    assert netlink.unicast_addresses("ipmp0") == {bytes.fromhex("025400000003")}
