"""When the daemon is ready: the one home of that rule.

The daemon tells systemd ``READY=1`` (and logs ``ready``) once every group's TAP can carry
traffic, so that ``systemd-networkd-wait-online -i ipmp0`` and services ordered after
``network-online.target`` start on a working interface: a group is ready once its TAP has its
carrier (a member is usable), or once one failure detection time has passed since the start
without one (its members are down: waiting longer would hold the boot for nothing; the
carrier comes on by itself when a member can carry traffic). Pure: the groups' carriers and
the time in, the answer out.
"""

from __future__ import annotations

from collections.abc import Mapping


class Readiness:
    """Whether the daemon that started at ``started`` is ready; ``fdt_ms``: each group's
    failure detection time."""

    def __init__(self, fdt_ms: Mapping[str, int], started: float) -> None:
        self.fdt_ms = dict(fdt_ms)
        self.started = started

    def ready(self, carriers: Mapping[str, bool], now: float) -> bool:
        """Whether every group has its carrier or has waited one failure detection time."""
        return all(carriers.get(g) or now >= self._deadline(g) for g in self.fdt_ms)

    def deadline(self, carriers: Mapping[str, bool]) -> float | None:
        """When the daemon is ready at the latest if no carrier changes (None: ready with
        the carriers as they are)."""
        waiting = [self._deadline(g) for g in self.fdt_ms if not carriers.get(g)]
        return max(waiting) if waiting else None

    def waited_for(self, carriers: Mapping[str, bool]) -> list[str]:
        """The groups without a carrier (ready only because their time ran out)."""
        return [g for g in self.fdt_ms if not carriers.get(g)]

    def _deadline(self, group: str) -> float:
        return self.started + self.fdt_ms[group] / 1000
