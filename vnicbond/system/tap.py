"""The IPMP interface: a persistent TAP device with virtio-net headers and offloads.

Owns opening the TAP (``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR``), announcing which offloads its
reader accepts (``TUNSETOFFLOAD``), switching its carrier (``TUNSETCARRIER``), and the TAP's
life across the daemon's: it is made persistent (``TUNSETPERSIST``), so a crash (``kill -9``,
an OOM kill) leaves the interface with its addresses, routes and index, its carrier off; the
next start adopts it instead of recreating it, and a planned stop removes it.

Whether a TAP is vnicbond's own is kept in a small record file beside the group's state file
(``GROUP.tap``), written before the device is created: a TAP of the group's name with our flags
and a record is ours (a dead instance made it) and a stop removes it; one without a record was
made by someone else (``ip tuntap``, systemd-networkd's ``.netdev``) and is used and left in
place. A device of the group's name that is not such a TAP is refused before anything changes
(:func:`refusal`). Addresses and routes are netlink's business (see
:mod:`vnicbond.system.netlink`).

It speaks to ``/dev/net/tun`` with ioctls itself rather than through pytun-pmd3 (no longer a
dependency): a descriptor inherited across ``vnicbond upgrade`` must be taken as it is, and
pytun can only open a device afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
from dataclasses import dataclass

IFF_TAP = 0x0002
IFF_TUN = 0x0001
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
#: The flags the daemon opens its TAP with, and those an adopted TAP must have.
FLAGS = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0
TUNSETCARRIER = 0x400454E2
TUNSETVNETHDRSZ = 0x400454D8

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

#: What the daemon accepts from the host's stack: partial checksums and TCP super-frames.
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFMTU = 0x8922
SIOCSIFHWADDR = 0x8924
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1
IFF_UP = 0x1
IFNAMSIZ = 16
TUN_DEVICE = "/dev/net/tun"


@dataclass(frozen=True, slots=True)
class Found:
    """A device of the group's name as netlink reports it: its index, its kind
    (``IFLA_INFO_KIND``: ``tun``, ``veth``, ``bridge``, None for a plain device) and, for a
    ``tun``, its type (``IFF_TAP`` or ``IFF_TUN``) and flags."""

    index: int
    kind: str | None
    tun_type: int = 0
    pi: bool = False
    vnet_hdr: bool = False
    multi_queue: bool = False


def refusal(name: str, found: Found) -> str | None:
    """Why an existing device called ``name`` cannot be the group's TAP (one line), or None
    if it is a TAP the daemon can adopt: ``IFF_TAP``, no packet information, virtio-net
    headers, one queue."""
    if found.kind != "tun":
        what = f"a {found.kind} device" if found.kind else "a device that is not a TAP"
    elif found.tun_type != IFF_TAP:
        what = "a TUN device, not a TAP"
    else:
        wrong = [w for w, bad in (("packet information on", found.pi),
                                  ("virtio-net headers off", not found.vnet_hdr),
                                  ("multiple queues", found.multi_queue)) if bad]
        if not wrong:
            return None
        what = f"a TAP with other flags ({', '.join(wrong)})"
    return (f"group {name}: a device named {name} exists and is {what}, not vnicbond's TAP; "
            "nothing was changed: delete or rename it, or give the group another name")


def find(name: str) -> Found | None:
    """The device called ``name`` (None if there is none), read over netlink."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    if kind != "tun":
        return Found(idx[0], kind)
    data = info.get_attr("IFLA_INFO_DATA")

    def attr(key: str) -> int:
        value = data.get_attr(key) if data is not None else None
        return int(value or 0)

    return Found(idx[0], kind, attr("IFLA_TUN_TYPE"), bool(attr("IFLA_TUN_PI")),
                 bool(attr("IFLA_TUN_VNET_HDR")), bool(attr("IFLA_TUN_MULTI_QUEUE")))


def check_device(name: str) -> None:
    """Raise RuntimeError (one line) if a device called ``name`` exists and is not a TAP the
    daemon can adopt."""
    found = find(name)
    if found is not None and (why := refusal(name, found)) is not None:
        raise RuntimeError(why)


# -- the record: whether the TAP is ours ------------------------------------------------------
def _read_record(path: str) -> dict[str, object] | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(path: str, name: str, index: int | None) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"name": name, "index": index, "pid": os.getpid()}, f)
    os.replace(tmp, path)


def is_ours(record: dict[str, object] | None, name: str, index: int) -> bool:
    """Whether a record says the TAP ``name`` at ``index`` is one vnicbond made (a record
    without an index: the instance that wrote it died before the TAP had one)."""
    return (record is not None and record.get("name") == name
            and record.get("index") in (None, index))


def _ifreq(name: str, flags: int = 0) -> bytes:
    """A ``struct ifreq`` (40 bytes) with a name and ``ifr_flags``."""
    return struct.pack(f"{IFNAMSIZ}sH22x", name.encode(), flags)


def _sockioctl(request: int, ifreq: bytes) -> bytes:
    """An interface ioctl on a throwaway socket; returns the ifreq as the kernel left it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, ifreq)


def _set_mac(name: str, mac: bytes) -> None:
    ifreq = struct.pack("16sH6s8x", name.encode(), ARPHRD_ETHER, mac)
    _sockioctl(SIOCSIFHWADDR, ifreq)


def _get_mac(name: str) -> bytes:
    ifreq = struct.pack("16sH6s8x", name.encode(), 0, b"")
    return _sockioctl(SIOCGIFHWADDR, ifreq)[18:24]


class Tap:
    """The group's open TAP. :meth:`open` creates or adopts it by name; :meth:`inherit` takes
    a descriptor handed over by the daemon's previous code (``vnicbond upgrade``)."""

    def __init__(self, name: str, fd: int, index: int, ours: bool, adopted: bool,
                 record: str | None) -> None:
        self.name = name
        self.fd = fd
        #: The interface's index, which adopting keeps.
        self.index = index
        #: vnicbond made the TAP (this start or one before): a planned stop removes it.
        self.ours = ours
        #: The TAP existed when this start began (left by a crash, or someone else's).
        self.adopted = adopted
        self._record = record

    @classmethod
    def open(cls, name: str, mac: bytes, mtu: int, record: str) -> Tap:
        """Create the TAP ``name``, or adopt the one there (a crash left it, or someone else
        made it); set its MAC to ``mac`` and its carrier off, and a new TAP's MTU to ``mtu``
        (an adopted TAP keeps the MTU it has: the system may have set it, and the daemon
        follows it, see :mod:`vnicbond.runtime.mtu`). ``record``:
        the file saying the TAP is vnicbond's. Raises RuntimeError (a device of that name that
        is not such a TAP: nothing changed) or OSError."""
        found = find(name)
        if found is not None and (why := refusal(name, found)) is not None:
            raise RuntimeError(why)  # (checked again: it may have appeared since)
        ours = found is None or is_ours(_read_record(record), name, found.index)
        tap = cls(name, -1, found.index if found else 0, ours, found is not None, record)
        try:
            if found is None:
                _write_record(record, name, None)  # before it exists: a crash cannot orphan it
            tap.fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
            fcntl.ioctl(tap.fd, TUNSETIFF, _ifreq(name, FLAGS))
            if found is None:
                fcntl.ioctl(tap.fd, TUNSETPERSIST, 1)
                tap.index = socket.if_nametoindex(name)
                _write_record(record, name, tap.index)
            tap._configure(mac, mtu if found is None else None)
        except BaseException:
            if found is None:
                tap.close()
            else:
                tap.detach()
            raise
        return tap

    @classmethod
    def inherit(cls, fd: int, name: str, index: int, ours: bool, record: str) -> Tap:
        """The TAP behind descriptor ``fd``, open in this process since before an exec; it
        must be the TAP ``name`` at ``index`` with our flags. Raises OSError or ValueError
        (the descriptor is not that TAP: it is left open, the caller closes it)."""
        raw = fcntl.ioctl(fd, TUNGETIFF, _ifreq(""))
        got, flags = struct.unpack_from(f"{IFNAMSIZ}sH", raw)
        got_name = got.split(b"\0", 1)[0].decode()
        if got_name != name or flags & (FLAGS | IFF_TUN | IFF_MULTI_QUEUE) != FLAGS:
            raise ValueError(f"descriptor {fd} is {got_name!r} with flags {flags:#x}, "
                             f"not the TAP {name}")
        if socket.if_nametoindex(name) != index:
            raise ValueError(f"{name} has another index than {index}")
        os.set_inheritable(fd, False)
        os.set_blocking(fd, False)
        return cls(name, fd, index, ours, True, record)

    def _configure(self, mac: bytes, mtu: int | None) -> None:
        # The header size is 10 by default; say so explicitly so a changed default cannot
        # shift every frame.
        fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", 10))
        fcntl.ioctl(self.fd, TUNSETOFFLOAD, OFFLOADS)
        self.set_carrier(False)
        if _get_mac(self.name) != mac:
            _set_mac(self.name, mac)
        if mtu is not None:
            self.set_mtu(mtu)
        os.set_blocking(self.fd, False)

    def up(self) -> None:
        """Set the device administratively up."""
        raw = _sockioctl(SIOCGIFFLAGS, _ifreq(self.name))
        flags = struct.unpack_from("H", raw, IFNAMSIZ)[0]
        if not flags & IFF_UP:
            _sockioctl(SIOCSIFFLAGS, _ifreq(self.name, flags | IFF_UP))

    def set_mtu(self, mtu: int) -> None:
        """Set the device's MTU."""
        _sockioctl(SIOCSIFMTU, struct.pack(f"{IFNAMSIZ}si20x", self.name.encode(), mtu))

    def set_carrier(self, on: bool) -> None:
        """Carrier on means the group has a usable member; routes follow it."""
        fcntl.ioctl(self.fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))

    def close(self) -> None:
        """The planned end (a stop): remove the TAP if it is ours (it stops being persistent
        and goes with the descriptor, and so does its record); leave someone else's in place.
        Never raises."""
        if self.ours:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    fcntl.ioctl(self.fd, TUNSETPERSIST, 0)
            if self._record is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._record)
                self._record = None
        self.detach()

    def detach(self) -> None:
        """Close the descriptor and leave the TAP (persistent, its carrier now off) with its
        addresses and routes, as a crash does: the next start adopts it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
