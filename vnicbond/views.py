"""Terminal views of the daemon's status document and events (``vnicbond status``, ``events``).

Pure functions from the documents the control socket returns to text: the default tables,
the ``ipmpstat``-like views and one line per event. No I/O, no imports from the rest of
vnicbond; the CLI and the demo print what they return.
"""

from __future__ import annotations

import time
from typing import Any


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns aligned under their headers, two spaces apart, no trailing blanks."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _human(n: int) -> str:
    """A counter in at most three digits and a unit (K, M, G, T, P: powers of 1000)."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n}{unit}"
        n //= 1000
    return f"{n}P"


def format_status(status: dict[str, Any]) -> str:
    """The status document as aligned tables for a terminal."""
    groups, members, addresses = [], [], []
    for g in status["groups"]:
        groups.append([g["name"], g["mode"], g["state"], "on" if g["carrier"] else "off",
                       g.get("active") or "-", str(g.get("failovers", 0))])
        for m in g["members"]:
            flags = "standby" if m.get("standby") else ""
            members.append([m["name"], g["name"], m["state"], m["link"], m["probe"],
                            _human(m.get("tx_packets", 0)), _human(m.get("rx_packets", 0)),
                            _human(m.get("tx_bytes", 0)) + "B",
                            _human(m.get("rx_bytes", 0)) + "B", flags])
        for a in g["addresses"]:
            addresses.append([a["address"], g["name"], a["member"] or "-",
                              a.get("source", "-")])
    return "\n\n".join([
        table(["GROUP", "MODE", "STATE", "CARRIER", "ACTIVE", "FAILOVERS"], groups),
        table(["MEMBER", "GROUP", "STATE", "LINK", "PROBE", "TX", "RX", "TX_BYTES",
                "RX_BYTES", "FLAGS"], members),
        table(["ADDRESS", "GROUP", "MEMBER", "SOURCE"], addresses),
    ])


def format_targets(status: dict[str, Any]) -> str:
    """Per member: how its targets are chosen (``configured``, ``routes``, ``multicast``,
    ``transitive``, ``disabled``), the addresses it probes from, and which targets they are
    (like ``ipmpstat -t``; other members, for transitive probes)."""
    rows = []
    for g in status["groups"]:
        for m in g["members"]:
            targets = [t for t in g.get("targets", []) if t["member"] == m["name"]]
            mode = m.get("target_mode", "-")
            source = ",".join(m.get("probe_from") or []) or m.get("test_address") or "-"
            rows.append([m["name"], g["name"], mode, source,
                         " ".join(t["target"] for t in targets) or "-"])
    return table(["MEMBER", "GROUP", "MODE", "PROBE_FROM", "TARGETS"], rows)


def _member_list(g: dict[str, Any]) -> str:
    """``ipmpstat -g`` style: active members bare, idle ones (in parentheses), unusable
    ones [in brackets]."""
    names = []
    for m in g["members"]:
        if m["state"] == "active":
            names.append(m["name"])
        elif m["state"] == "standby":
            names.append(f"({m['name']})")
        else:
            names.append(f"[{m['name']}]")
    return " ".join(names)


def format_groups(status: dict[str, Any]) -> str:
    """Per group: mode, state, failure detection time, members (like ``ipmpstat -g``)."""
    rows = [[g["name"], g["mode"], g["state"], f"{g.get('fdt_ms', 0) / 1000:g}s",
             _member_list(g)] for g in status["groups"]]
    return table(["GROUP", "MODE", "STATE", "FDT", "MEMBERS"], rows)


def format_addresses(status: dict[str, Any]) -> str:
    """Per data address: up or down, inbound member, outbound members (``ipmpstat -a``),
    and where it came from (``config``, or ``system``: DHCP, SLAAC, a script)."""
    rows = []
    for g in status["groups"]:
        outbound = " ".join(m["name"] for m in g["members"] if m["state"] == "active") or "-"
        for a in g["addresses"]:
            rows.append([a["address"], "up" if a["member"] else "down", g["name"],
                         a["member"] or "-", outbound, a.get("source", "-")])
    return table(["ADDRESS", "STATE", "GROUP", "INBOUND", "OUTBOUND", "SOURCE"], rows)


def format_macs(status: dict[str, Any]) -> str:
    """The guests' MACs behind each group's TAP: the member carrying each, the seconds since
    it was last heard from, learned or registered."""
    rows = [[m["mac"], g["name"], m["member"] or "-", f"{m['age_s']:.1f}s", m["source"]]
            for g in status["groups"] for m in g.get("macs", [])]
    return table(["MAC", "GROUP", "MEMBER", "AGE", "SOURCE"], rows)


def format_view(status: dict[str, Any], view: str) -> str:
    """One ``ipmpstat``-like view of the status document."""
    if view == "macs":
        return format_macs(status)
    if view == "targets":
        return format_targets(status)
    if view == "groups":
        return format_groups(status)
    if view == "addresses":
        return format_addresses(status)
    return format_status(status).split("\n\n")[1]  # members


def format_event(e: dict[str, Any]) -> str:
    """One line per change: time, group, what changed, and why."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e["time"]))
    stamp += f".{int(e['time'] * 1000) % 1000:03d}"
    if e["kind"] == "member":
        what = f"member {e['member']} {e['old'] or '-'} -> {e['state']}"
    elif e["kind"] == "address":
        what = f"address {e['state']} {e['old'] or '-'} -> {e['member'] or '-'}"
    elif e["kind"] in ("group", "mtu"):
        what = f"{e['kind']} {e['old'] or '-'} -> {e['state']}"
    elif e["kind"] == "mtu_refused":
        who = e["member"] or "the TAP"
        what = f"mtu {e['state']} refused by {who}: {e.get('reason')}; stays {e['old']}"
    else:
        what = f"{e['kind']} {e['state']}"
    cause = f" cause={e['cause']}" if e.get("cause") else ""
    return f"{stamp} {e['group']} {what}{cause}"
