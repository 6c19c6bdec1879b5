"""Read-only checks of a parsed configuration against the running system.

Owns :func:`check_system`: every member interface exists. A member's MTU below its group's
is no error: the daemon raises it at start, as the bonding driver raises its slaves (see
:mod:`vnicbond.core.mtu`), and only the kernel can say whether the member takes it. It only
reads ``/sys/class/net`` (or asks the ``mtu_of`` it is given) and never changes anything;
errors point at the member's line through :attr:`Config.key_lines`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vnicbond.config.errors import ConfigError
from vnicbond.config.settings import Config
from vnicbond.config.values import parse_ifname


def _read_sysfs_mtu(name: str) -> int | None:
    """MTU of interface ``name`` from /sys/class/net, or None if it does not exist."""
    try:
        parse_ifname(name)  # never let a name like '..' walk the file system
        return int((Path("/sys/class/net") / name / "mtu").read_text().strip())
    except (OSError, ValueError):
        return None


def check_system(config: Config, mtu_of: Callable[[str], int | None] | None = None) -> None:
    """Read-only checks of ``config`` against the running system.

    Every member interface must exist (its MTU may be below the group's: the daemon raises
    it). ``mtu_of(name)`` returns an interface's MTU or None if there is no such interface;
    by default it reads ``/sys/class/net/NAME/mtu``. The first problem is raised as a
    :class:`ConfigError` pointing at the member's ``name`` line.
    """
    get_mtu = mtu_of if mtu_of is not None else _read_sysfs_mtu
    for gi, group in enumerate(config.groups):
        for mi, member in enumerate(group.members):
            key = f"groups[{gi}].members[{mi}].name"
            line = config.key_lines.get(key)
            mtu = get_mtu(member.name)
            if mtu is None:
                raise ConfigError(
                    config.path, line, key, f"interface {member.name!r} does not exist"
                )
