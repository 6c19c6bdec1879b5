"""What layer 2 looks like in a lab: the switch's forwarding database, a NIC's receive filters.

- The switch's forwarding database: which port of ``br0`` (in the switch namespace) each MAC
  was learned on, from ``bridge -j fdb show br br0`` (learned entries only: a bridge's
  permanent entries for its own ports and the ``self`` entries of the ports' address lists
  are not where a MAC lives on the wire).
- A NIC's receive filters: its promiscuity counter (``ip -d -j link``: ``promiscuity``, the
  kernel's count of everyone who asked for promiscuous mode, which the link flags do not show),
  whether a user set ``PROMISC``, and the unicast MACs on its address list (``bridge -j fdb
  show dev NIC``: the ``self`` entries; packet sockets' ``PACKET_MR_UNICAST`` memberships and
  macvlans' MACs land there).

It reads and parses; what a test expects of the figures is the test's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vnicbond.lab.topology import Lab

SWITCH = "br0"


def _entries(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def is_unicast(mac: str) -> bool:
    """Whether ``mac`` (``aa:bb:...``) is a unicast address (group bit clear)."""
    return not int(mac.split(":", 1)[0], 16) & 1


def parse_fdb(text: str) -> dict[str, str]:
    """MAC -> port of each learned entry in ``bridge -j fdb show`` output (neither
    ``permanent`` nor ``static``, not a port's own ``self`` entry)."""
    learned = {}
    for entry in _entries(text):
        flags = entry.get("flags") or []
        if entry.get("state") in ("permanent", "static") or "self" in flags:
            continue
        if "mac" in entry and "ifname" in entry:
            learned[str(entry["mac"]).lower()] = str(entry["ifname"])
    return learned


def switch_fdb(lab: Lab) -> dict[str, str]:
    """Which switch port each MAC is learned on now (MAC -> ``s0``, ``s1``, ``sp``)."""
    return parse_fdb(lab.ns(lab.switch, "bridge", "-j", "fdb", "show", "br", SWITCH,
                            check=False).stdout)


@dataclass(frozen=True)
class Filters:
    """A NIC's receive filters: what makes it accept frames for MACs other than its own."""

    promiscuity: int  # the kernel's counter: users of promiscuous mode (IFLA_PROMISCUITY)
    promisc_flag: bool  # ``ip link set ... promisc on`` (the PROMISC link flag)
    unicast: frozenset[str]  # unicast MACs on its address list


def parse_filters(link_text: str, fdb_text: str) -> Filters:
    """Filters from ``ip -d -j link show NIC`` and ``bridge -j fdb show dev NIC`` output."""
    links = _entries(link_text)
    link = links[0] if links else {}
    unicast = frozenset(
        str(e["mac"]).lower() for e in _entries(fdb_text)
        if "self" in (e.get("flags") or []) and "mac" in e and is_unicast(str(e["mac"])))
    return Filters(int(link.get("promiscuity", 0)), "PROMISC" in (link.get("flags") or []),
                   unicast)


def nic_filters(lab: Lab, ns: str, dev: str) -> Filters:
    """The receive filters of ``dev`` in ``ns`` now."""
    return parse_filters(
        lab.ns(ns, "ip", "-d", "-j", "link", "show", dev).stdout,
        lab.ns(ns, "bridge", "-j", "fdb", "show", "dev", dev, check=False).stdout)


def nic_mac(lab: Lab, ns: str, dev: str) -> str:
    """The MAC of ``dev`` in ``ns``."""
    return lab.ns(ns, "cat", f"/sys/class/net/{dev}/address").stdout.strip()
