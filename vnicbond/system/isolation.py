"""Keeping the host's own IP stack off the member NICs, and giving the NICs back on exit.

For each member the daemon: drops the member's ingress in an nftables ``netdev`` table (packet
sockets see frames before the ingress hook, so the daemon still reads everything while the
host's ARP and IP never do), disables IPv6 on it (no router/neighbour solicitations or MLD
from the member), and sets it administratively up. It also raises a member's MTU to the
group's when asked (:meth:`Isolation.set_mtu`; :mod:`vnicbond.core.mtu` decides when).

Before touching anything it writes what it found to a state file beside the control socket
(a member's MTU the first time the daemon changes it).
A clean exit restores from memory and deletes the file; a start-up that finds a file left by
a dead instance restores from it first, so a ``kill -9`` leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, replace

from vnicbond.system import netlink

SYSCTL_DISABLE_IPV6 = "/proc/sys/net/ipv6/conf/{}/disable_ipv6"


class IsolationError(RuntimeError):
    """A member could not be isolated; the message names it and the reason."""


@dataclass(slots=True)
class SavedMember:
    """A member's settings as the daemon found them."""

    name: str
    was_up: bool
    disable_ipv6: str | None
    #: The MTU it had before the daemon first changed it (None: never changed).
    mtu: int | None = None


def table_name(group: str) -> str:
    """The nftables table that isolates ``group``'s members."""
    return "vnicbond_" + re.sub(r"[^A-Za-z0-9_]", "_", group)


def _read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _nft(script: str, check: bool = True) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise IsolationError(f"nft: {proc.stderr.strip().splitlines()[0] if proc.stderr else ''}")


def _nft_string(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def instance_alive(pid: int) -> bool:
    """True if ``pid`` is a running vnicbond (not some process that reused the PID)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"vnicbond" in f.read()
    except OSError:
        return False


class Isolation:
    """The isolation of one group's members, recorded in ``state_path``."""

    def __init__(self, group: str, members: list[str], state_path: str) -> None:
        self.group = group
        self.members = members
        self.state_path = state_path
        self.table = table_name(group)
        self.saved: list[SavedMember] = []

    def apply(self) -> None:
        """Record the members' settings, then isolate them. Raises IsolationError."""
        self.saved = [self._record(name) for name in self.members]
        self._write_state()
        # A table left by an instance that died before its state file was written.
        _nft(f"delete table netdev {self.table}\n", check=False)
        chains = [self._chain(name) for name in self.members]
        _nft(f"table netdev {self.table} {{\n" + "\n".join(chains) + "\n}\n")
        for saved in self.saved:
            self._isolate(saved)

    def resume(self) -> None:
        """Go on with the isolation this process's previous code applied (``vnicbond
        upgrade``): the members' own settings are read back from the state file and nothing
        changes on the system. Raises IsolationError if the file is not this process's record
        of this group's members."""
        try:
            with open(self.state_path) as f:
                state = json.load(f)
            saved = [SavedMember(**m) for m in state["members"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IsolationError(f"group {self.group}: no usable state file: {e}") from None
        if state.get("pid") != os.getpid() or state.get("group") != self.group:
            raise IsolationError(f"group {self.group}: the state file is another process's")
        if sorted(s.name for s in saved) != sorted(self.members):
            raise IsolationError(f"group {self.group}: the state file records other members")
        self.saved = saved

    def add_member(self, name: str) -> None:
        """Isolate one more member (a reload added it), recording it first."""
        saved = self._record(name)
        self.saved.append(saved)
        self.members.append(name)
        self._write_state()
        self._add_chain(name)
        self._isolate(saved)

    def adopt(self, name: str) -> None:
        """Isolate a new NIC that took a member's name (the old one was removed, renamed or
        moved away): record its own settings, then replace the member's chain. Raises
        IsolationError (or OSError if the NIC vanished again meanwhile)."""
        saved = self._record(name)
        self.saved = [s for s in self.saved if s.name != name] + [saved]
        self._write_state()
        # The old NIC's chain may have gone with it, or (newer kernels) already hooks the new
        # one by name: delete whatever is there and add it afresh either way.
        _nft(f"delete chain netdev {self.table} {_chain_name(name)}\n", check=False)
        self._add_chain(name)
        self._isolate(saved)

    def release(self, name: str, now_called: str | None) -> None:
        """A member's NIC left: renamed to ``now_called``, or deleted or moved to another
        namespace (None). Drop its chain; give a renamed NIC its recorded settings back (a
        NIC that left the namespace lost them with it). Never raises."""
        saved = [s for s in self.saved if s.name == name]
        self.saved = [s for s in self.saved if s.name != name]
        _nft(f"delete chain netdev {self.table} {_chain_name(name)}\n", check=False)
        if now_called is not None:
            restore_saved(None, [replace(s, name=now_called) for s in saved])
        with contextlib.suppress(OSError):
            self._write_state()

    def remove_member(self, name: str) -> None:
        """Give one member back (a reload removed it). Never raises."""
        saved = [s for s in self.saved if s.name == name]
        self.saved = [s for s in self.saved if s.name != name]
        self.members = [m for m in self.members if m != name]
        _nft(f"delete chain netdev {self.table} {_chain_name(name)}\n", check=False)
        restore_saved(None, saved)
        self._write_state()

    def set_mtu(self, name: str, mtu: int) -> None:
        """Set member ``name``'s MTU, recording the one it had first if this is the daemon's
        first change to it (given back by :meth:`restore`, and after a crash). Raises OSError
        with the kernel's reason if it refuses."""
        saved = next((s for s in self.saved if s.name == name), None)
        if saved is not None and saved.mtu is None:
            info = netlink.get_link(name)
            if info is None:
                raise OSError(errno.ENODEV, f"no interface {name}")
            if info.mtu == mtu:
                return
            saved.mtu = info.mtu
            self._write_state()
        netlink.set_mtu(name, mtu)

    @staticmethod
    def _record(name: str) -> SavedMember:
        """A member NIC's settings as found now. Raises IsolationError if it is missing."""
        info = netlink.get_link(name)
        if info is None:
            raise IsolationError(f"member {name}: no such interface")
        return SavedMember(name, info.admin_up, _read_sysctl(SYSCTL_DISABLE_IPV6.format(name)))

    def _add_chain(self, name: str) -> None:
        _nft(f"add chain netdev {self.table} {self._chain(name).strip()[len('chain '):]}\n")

    @staticmethod
    def _chain(name: str) -> str:
        return (f"  chain {_chain_name(name)} {{ type filter hook ingress device "
                f"{_nft_string(name)} priority -500; policy drop; }}")

    @staticmethod
    def _isolate(saved: SavedMember) -> None:
        if saved.disable_ipv6 is not None:
            _write_sysctl(SYSCTL_DISABLE_IPV6.format(saved.name), "1")
        if not saved.was_up:
            netlink.set_link_up(saved.name, True)

    def restore(self) -> None:
        """Undo :meth:`apply` and delete the state file. Never raises; best effort per item."""
        restore_saved(self.table, self.saved)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_path)

    def _write_state(self) -> None:
        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "group": self.group, "table": self.table,
                       "members": [asdict(s) for s in self.saved]}, f)
        os.replace(tmp, self.state_path)


def _chain_name(member: str) -> str:
    return "member_" + re.sub(r"[^A-Za-z0-9_]", "_", member)


def restore_saved(table: str | None, saved: list[SavedMember]) -> None:
    """Delete the nftables table (if named) and give each member its recorded settings."""
    if table is not None:
        _nft(f"delete table netdev {table}\n", check=False)
    for s in saved:
        try:
            if s.mtu is not None:
                netlink.set_mtu(s.name, s.mtu)
        except Exception:  # noqa: BLE001 - the member is gone, or its MTU cannot go back
            pass
        try:
            if s.disable_ipv6 is not None:
                _write_sysctl(SYSCTL_DISABLE_IPV6.format(s.name), s.disable_ipv6)
        except OSError:
            pass  # the member is gone; nothing to restore
        try:
            if not s.was_up:
                netlink.set_link_up(s.name, False)
        except Exception:  # noqa: BLE001 - restoring is best effort, one member at a time
            pass


def recover_stale(state_path: str) -> int | None:
    """Restore what a dead instance left; returns its PID, or None if there was nothing.

    Raises IsolationError if the instance that wrote the file is still running.
    """
    try:
        with open(state_path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        os.unlink(state_path)
        return None
    pid = int(state.get("pid", 0))
    if pid and pid != os.getpid() and instance_alive(pid):
        raise IsolationError(f"another vnicbond (pid {pid}) runs group {state.get('group')}")
    restore_saved(state["table"], [SavedMember(**m) for m in state.get("members", [])])
    os.unlink(state_path)
    return pid
