"""Which MACs upper devices registered on the TAP (:func:`netlink.own_unicast`, the filter
behind :func:`netlink.unicast_addresses`), without the kernel: fed with the messages the
kernel's fdb dump sends (``rtnl_fdb_dump``).

For a device that is a bridge port the kernel dumps two kinds of entries for it: the bridge's
own (``br_fdb_dump``: no ``NTF_SELF`` flag, an ``NDA_MASTER`` attribute; every MAC the bridge
learned behind that port, which for the TAP are the hosts on the wire, and the port's own) and
the device's address lists (``ndo_dflt_fdb_dump``: ``NTF_SELF``, ``NUD_PERMANENT``; what upper
devices such as a macvlan put there, unicast and multicast). Only the unicast ``self`` entries
are guests; entries for other devices, without an address, or multicast are not.
"""

from __future__ import annotations

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


def test_the_taps_unicast_self_entries_are_the_registered_macs() -> None:
    dump = [
        entry("02:54:00:00:00:03"),  # a macvlan on the TAP
        entry("02:54:00:00:00:04"),
        entry("33:33:00:00:00:01"),  # multicast lists are not guests
        entry("01:00:5e:00:00:01"),
        entry("02:54:00:00:00:05", ifindex=OTHER),  # another device's
        entry(None),
    ]
    assert netlink.own_unicast(dump, TAP) == {bytes.fromhex("025400000003"),
                                               bytes.fromhex("025400000004")}


def test_no_such_device_has_no_addresses() -> None:
    assert netlink.unicast_addresses("vb-nothere0") == set()


def test_a_bridges_learned_entries_on_the_tap_are_not_guests() -> None:
    """The TAP is a bridge port: the bridge learned the hosts on the wire behind it. They are
    not ours to filter for, and above all not ours to announce on a failover."""
    dump = [
        bridge_entry("02:11:11:11:11:11", NUD_REACHABLE),  # a peer, learned
        bridge_entry("02:11:11:11:11:12", NUD_REACHABLE, NTF_EXT_LEARNED),
        bridge_entry("02:11:11:11:11:13", NUD_NOARP),  # a static entry
        bridge_entry("02:00:00:00:ee:01", NUD_PERMANENT),  # the port's own ("local")
        entry("02:54:00:00:00:03"),  # a macvlan's, on the TAP's own list
    ]
    assert netlink.own_unicast(dump, TAP) == {bytes.fromhex("025400000003")}
