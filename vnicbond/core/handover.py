"""Whether the state the daemon's previous code handed over (``vnicbond upgrade``) can be
taken over with the configuration as the new code reads it: a pure comparison, no I/O.

Owns the rule of what an upgrade in place can carry over: the hand-over's layout must be the
one this code reads, it must have been written by this process (an exec keeps the PID), and
each group must be the same group: the same name in the same place, with the same ``mode``,
``mac``, ``mtu`` and members (the TAP, the member sockets and their rings were made for
those). Anything a reload may change (addresses, targets, test addresses, timings) may differ:
the new code goes on with the file's values. If the hand-over cannot be taken over, the new
code starts as after a crash (:mod:`vnicbond.runtime.upgrade`).
"""

from __future__ import annotations

from typing import Any

from vnicbond.config import Config

#: The hand-over's layout; new code refuses another.
FORMAT = 1


def handover_problem(state: dict[str, Any], config: Config, pid: int) -> str | None:
    """Why ``state`` (the hand-over, as JSON) cannot be taken over by process ``pid`` running
    ``config``, in a few words, or None if it can."""
    if state.get("format") != FORMAT:
        return f"hand-over format {state.get('format')!r}, this code reads {FORMAT}"
    if state.get("pid") != pid:
        return "the hand-over was written by another process"
    groups = state.get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return "the hand-over has no groups"
    if [g.get("name") for g in groups] != [g.name for g in config.groups]:
        return "the configuration's groups changed"
    for kept, cfg in zip(groups, config.groups, strict=True):
        for key, now in (("mode", cfg.mode), ("mac", cfg.mac.hex()), ("mtu", cfg.mtu),
                         ("members", [m.name for m in cfg.members])):
            if kept.get(key) != now:
                return f"group {cfg.name}'s {key} changed in the configuration"
    return None
