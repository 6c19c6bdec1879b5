"""The status document (``vnicbond status --json``, and the metrics built from it).

One function per level, each a table of what the running objects already know: the engine's
decisions and counters, each member's link, MAC and probe sockets, the datapath's counters.
The document's fields are a contract with users (README's "Status", docs/reference.md):
change them only with the docs. Reading it changes nothing but the kernel-drop totals, which
are brought up to date.
"""

from __future__ import annotations

import time
from typing import Any

from vnicbond import __version__
from vnicbond.runtime.group import GroupRuntime
from vnicbond.wire.mac import format_mac


def group_status(rt: GroupRuntime, now: float) -> dict[str, Any]:
    """One group's entry in the status document; ``now`` on the engine's clock."""
    engine, dp = rt.engine, rt.datapath
    share = dp.flow_table.share() if dp else {}
    members = []
    for m in rt.cfg.members:
        member = rt.members[m.name]
        port = dp.ports.get(m.name) if dp else None
        counters = port.counters() if port else {}
        members.append({
            "name": m.name,
            "state": engine.group.member_state(m.name).value,
            "link": "up" if member.up else "down",
            "probe": engine.detector.probe_state(m.name),
            "reason": engine.detector.reason(m.name, now),
            "standby": m.standby,
            "mac": format_mac(member.mac),
            "flows": len(port.flows) if port else 0,
            "flow_buckets": share.get(m.name, 0),
            "test_address": str(m.test_address) if m.test_address else None,
            "target_mode": engine.probing.mode(m.name),
            "probe_from": [str(s.ip) for s in engine.probing.plan[m.name].sources]
            if m.name in engine.probing.plan else [],
            # The frames on the member's probe sockets by outcome ("control" for users).
            "control": {**engine.frames[m.name], "kernel": member.probe_kernel_drops()},
            **counters,
        })
    group = engine.group
    hosts = group.address_hosts()
    return {
        "name": rt.cfg.name,
        "mode": rt.cfg.mode,
        "mtu": rt.mtu.value,
        "state": group.state.value if group.state else "failed",
        "carrier": bool(group.carrier),
        "fdt_ms": engine.detector.fdt_ms,
        "fdt_configured_ms": rt.cfg.failure_detection_time_ms,
        "failback": rt.cfg.failback,
        "active": group.active,
        "failovers": engine.failovers,
        "address_moves": engine.address_moves,
        "tap_dropped": dp.tap_dropped if dp else 0,
        "tap_drops": dict(dp.tap_drops) if dp else {},
        "members": members,
        "addresses": [{"address": a, "member": hosts[a], "source": engine.data.source(a)}
                      for a in engine.addresses],
        "targets": [
            {"member": m.name, "target": t.target, "rtt_ms": t.rtt_ms, "srtt_ms": t.srtt_ms,
             "rttvar_ms": t.rttvar_ms, "lost": t.lost, "sent": t.sent}
            for m in rt.cfg.members for t in engine.detector.targets(m.name)],
        "answers_rate_limited": engine.answers_rate_limited(),
        "macs": guest_macs(rt, now),
        "macs_learned": len(rt.guests.table),
        "mac_evictions": rt.guests.table.evictions,
    }


def guest_macs(rt: GroupRuntime, now: float) -> list[dict[str, Any]]:
    """The guests' MACs behind the TAP: the member carrying each, how long since it was last
    heard from, and whether it was learned or registered on the TAP by an upper device."""
    table, hosts = rt.guests.table, rt.engine.guests.hosts
    spread = rt.cfg.mode == "load-spread"
    macs = []
    for mac in [*table.learned, *sorted(table.registered - table.learned.keys())]:
        age = table.age(mac, now)
        macs.append({"mac": format_mac(mac),
                     "member": hosts.get(mac) if spread else rt.engine.group.active,
                     "age_s": round(age, 3) if age is not None else 0.0,
                     "source": "registered" if mac in table.registered else "learned"})
    return macs


def document(pid: int, started: float, groups: list[GroupRuntime], upgrades: int = 0
             ) -> dict[str, Any]:
    """The whole status document; ``started`` is the daemon's start in wall-clock time,
    ``upgrades`` how many times it was upgraded in place since."""
    now = time.monotonic()
    return {"pid": pid, "uptime_s": round(time.time() - started, 3),
            "version": __version__, "upgrades": upgrades,
            "groups": [group_status(rt, now) for rt in groups]}
