"""Least privilege: the two capabilities the daemon needs, checked, kept and nothing more.

The daemon needs ``CAP_NET_ADMIN`` (netlink changes, nftables, member sysctls, the TAP's
ioctls) and ``CAP_NET_RAW`` (packet sockets), and nothing else. It can get them two ways:

* **started unprivileged** with both in its ambient set (systemd's ``User=`` with
  ``AmbientCapabilities=``, or ``setpriv --ambient-caps``). :func:`check` refuses to go on
  without them, with one line naming what is missing, and makes sure they are ambient, so the
  ``nft`` the daemon runs inherits them.
* **started as root with ``--user NAME``**: the daemon opens what needs root's file access (the
  TAP's ``/dev/net/tun``, the control socket's directory), then :func:`drop_to` becomes
  ``NAME`` keeping exactly the two capabilities (permitted, effective, inheritable, ambient and
  bounding sets) with ``no_new_privs`` set, so nothing it runs later can gain more.

The kernel is reached through ``prctl`` and ``capset`` via ctypes; nothing else in the
project touches credentials.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
#: The capabilities the daemon runs with, by number, with their names for messages.
REQUIRED: dict[int, str] = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_NET_RAW: "CAP_NET_RAW"}

PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SYS_CAPSET = 126  # x86_64; see _capset for other machines


class PrivilegeError(RuntimeError):
    """The daemon lacks what it needs, or could not shed what it must not keep."""


def _mask(caps: dict[int, str] | list[int]) -> int:
    return sum(1 << c for c in caps)


def capability_sets(status_text: str | None = None) -> dict[str, int]:
    """The process's capability sets (``CapInh``, ``CapPrm``, ``CapEff``, ``CapBnd``,
    ``CapAmb``) as bit masks, read from ``/proc/self/status`` (or the text given)."""
    if status_text is None:
        with open("/proc/self/status") as f:
            status_text = f.read()
    sets = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            sets[key] = int(value.strip(), 16)
    return sets


def missing(effective: int) -> list[str]:
    """Names of the required capabilities absent from the mask ``effective``."""
    return [name for cap, name in REQUIRED.items() if not effective >> cap & 1]


def check(status_text: str | None = None) -> None:
    """Refuse to run without both capabilities; make them ambient for the programs we run.

    Raises :class:`PrivilegeError` with one line naming what is missing and how to grant it.
    """
    sets = capability_sets(status_text)
    lacking = missing(sets.get("CapEff", 0))
    if lacking:
        raise PrivilegeError(
            f"vnicbond run needs CAP_NET_ADMIN and CAP_NET_RAW; this process (uid "
            f"{os.geteuid()}) lacks {' and '.join(lacking)}: run it as root (optionally with "
            "--user NAME to drop to NAME), or grant them as ambient capabilities (systemd "
            "AmbientCapabilities=, setpriv --ambient-caps)")
    if status_text is None and os.geteuid() != 0:
        _make_ambient(sets)


def _make_ambient(sets: dict[str, int]) -> None:
    """Raise the two capabilities into the ambient set (if not already), so ``nft`` gets them."""
    need = _mask(REQUIRED)
    if sets.get("CapAmb", 0) & need == need:
        return
    if sets.get("CapPrm", 0) & need != need:
        raise PrivilegeError("CAP_NET_ADMIN and CAP_NET_RAW are effective but not permitted; "
                             "cannot pass them on to nft")
    _capset(effective=need | sets.get("CapEff", 0) & sets.get("CapPrm", 0),
            permitted=sets.get("CapPrm", 0), inheritable=need | sets.get("CapInh", 0))
    for cap in REQUIRED:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def resolve_user(name: str) -> pwd.struct_passwd:
    """The account ``--user`` names (a name or a numeric uid); PrivilegeError if unknown."""
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"--user {name}: no such user") from None


def drop_to(name: str) -> pwd.struct_passwd:
    """Become user ``name`` (and its primary group, no supplementary groups) keeping only
    CAP_NET_ADMIN and CAP_NET_RAW, also as ambient capabilities; set ``no_new_privs``.

    Must be called as root. Raises :class:`PrivilegeError` if any step fails: a process left
    half-dropped must not go on.
    """
    account = resolve_user(name)
    if os.geteuid() != 0:
        raise PrivilegeError(f"--user {name}: only root can change user (this is uid "
                             f"{os.geteuid()})")
    need = _mask(REQUIRED)
    try:
        last = _last_cap()
        for cap in range(last + 1):  # nothing exec'd later can regain the others
            if cap not in REQUIRED:
                _prctl(PR_CAPBSET_DROP, cap)
        _prctl(PR_SET_KEEPCAPS, 1)
        os.setgroups([])
        os.setresgid(account.pw_gid, account.pw_gid, account.pw_gid)
        os.setresuid(account.pw_uid, account.pw_uid, account.pw_uid)
        _prctl(PR_SET_KEEPCAPS, 0)
        _capset(effective=need, permitted=need, inheritable=need)
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0)
        for cap in REQUIRED:
            _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as e:
        raise PrivilegeError(f"--user {name}: cannot drop privileges: {e.strerror or e}"
                             ) from None
    os.environ["HOME"] = account.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = account.pw_name
    return account


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _prctl(option: int, arg2: int, arg3: int = 0) -> None:
    libc = _lib()
    if libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (libc's capset, or the raw x86_64 syscall)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    libc = _lib()
    fn = getattr(libc, "capset", None)
    rc = (fn(ctypes.byref(header), data) if fn is not None
          else libc.syscall(_SYS_CAPSET, ctypes.byref(header), data))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
