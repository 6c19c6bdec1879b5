"""The network-namespace lab: its namespaces, links and faults, and running commands in it.

Topology (every name carries a unique prefix, so labs never collide)::

    [host ns]  m0 m1 ... (members; the daemon and its TAP live here)
                |  |
    [sw ns]    s0 s1 ... sp   all ports of bridge br0 (the "switch")
                           |
    [peer ns]              p0  198.18.0.2/24, 2001:db8::2/64

Further namespaces (guests stacked on the bond: :mod:`vnicbond.lab.stack`) join the lab
through :meth:`Lab.add_namespace` and go with it.

Faults are made from the switch side, so the host only sees what a real NIC would: a port
taken down (the member loses carrier), or a silent nftables drop (carrier stays up).
Only 198.18.0.0/15 and 2001:db8::/32 are used, and nothing is configured outside the lab's
namespaces. It touches no vnicbond code: it is plain ``ip``/``nft``/``tc`` around
namespaces, and processes started in them are stopped by their PID (:func:`stop`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEER_V4 = "198.18.0.2"
PEER_V6 = "2001:db8::2"
DATA_V4 = "198.18.0.10"
DATA_V6 = "2001:db8::10"
PREFIX_V4 = 24
PREFIX_V6 = 64

_counter = itertools.count()


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def run(cmd: Sequence[str], check: bool = True, timeout: float = 30.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; raise LabError naming it if it fails."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
         timeout: float = 10.0) -> int | None:
    """Send ``sig`` to ``proc`` (its PID only), wait for it (reading what is left in its
    pipes) and SIGKILL it if it stays; its exit status (None if there is no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.communicate()
    return proc.returncode


def existing_namespaces() -> list[str]:
    """Names of all network namespaces known to ``ip netns``."""
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass
class Lab:
    """A host, a switch and a peer namespace joined by ``members`` veth pairs and a bridge."""

    members: int = 2
    prefix: str = ""
    mtu: int = 1500
    host: str = field(init=False)
    switch: str = field(init=False)
    peer: str = field(init=False)
    built: bool = field(init=False, default=False)
    #: Namespaces added to the lab after it was built (:meth:`add_namespace`).
    extra: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not self.prefix:
            self.prefix = f"vb{os.getpid()}x{next(_counter)}"
        self.host = f"{self.prefix}-host"
        self.switch = f"{self.prefix}-sw"
        self.peer = f"{self.prefix}-peer"

    # -- names -------------------------------------------------------------------------------
    def member(self, i: int) -> str:
        """Name of member ``i`` inside the host namespace."""
        return f"m{i}"

    def port(self, i: int) -> str:
        """Name of the switch port facing member ``i``."""
        return f"s{i}"

    # -- building ----------------------------------------------------------------------------
    def build(self) -> Lab:
        """Create the namespaces, links and addresses. Safe to call once."""
        try:
            for ns in (self.host, self.switch, self.peer):
                run(["ip", "netns", "add", ns])
                self.ns(ns, "ip", "link", "set", "lo", "up")
            self.built = True
            sw = self.switch
            self.ns(sw, "ip", "link", "add", "br0", "type", "bridge")
            # A switch forwards at once: no STP, no forwarding delay, no multicast snooping.
            self.ns(sw, "ip", "link", "set", "br0", "type", "bridge", "stp_state", "0",
                    "forward_delay", "0", "mcast_snooping", "0")
            self.ns(sw, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            for i in range(self.members):
                run(["ip", "link", "add", self.member(i), "netns", self.host, "mtu", str(self.mtu),
                     "type", "veth", "peer", self.port(i), "netns", sw, "mtu", str(self.mtu)])
                self.ns(sw, "ip", "link", "set", self.port(i), "master", "br0", "up")
            run(["ip", "link", "add", "p0", "netns", self.peer, "mtu", str(self.mtu),
                 "type", "veth", "peer", "sp", "netns", sw, "mtu", str(self.mtu)])
            self.ns(sw, "ip", "link", "set", "sp", "master", "br0", "up")
            self.ns(sw, "ip", "link", "set", "br0", "up")
            pe = self.peer
            self.ns(pe, "sysctl", "-qw", "net.ipv6.conf.p0.accept_dad=0")
            self.ns(pe, "ip", "addr", "add", f"{PEER_V4}/{PREFIX_V4}", "dev", "p0")
            self.ns(pe, "ip", "addr", "add", f"{PEER_V6}/{PREFIX_V6}", "dev", "p0", "nodad")
            self.ns(pe, "ip", "link", "set", "p0", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def add_namespace(self, role: str) -> str:
        """A further namespace of the lab, ``PREFIX-ROLE``, its loopback up; removed with the
        lab (for guests stacked on the bond: :mod:`vnicbond.lab.stack`)."""
        ns = f"{self.prefix}-{role}"
        run(["ip", "netns", "add", ns])
        self.extra.append(ns)
        self.ns(ns, "ip", "link", "set", "lo", "up")
        return ns

    def destroy(self) -> None:
        """Delete the lab's namespaces (their links go with them). Never raises."""
        for ns in (*reversed(self.extra), self.peer, self.switch, self.host):
            run(["ip", "netns", "del", ns], check=False)
        self.extra.clear()
        self.built = False

    def __enter__(self) -> Lab:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- running things ----------------------------------------------------------------------
    def ns(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30.0,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside namespace ``ns``."""
        return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout, input=input)

    def popen(self, ns: str, *cmd: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start ``cmd`` inside namespace ``ns`` in the background (text mode)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True,  # type: ignore[call-overload]
                                **kwargs)

    # -- faults ------------------------------------------------------------------------------
    def link_down(self, i: int) -> None:
        """Pull member ``i``'s cable: its switch port goes down, the member loses carrier."""
        self.ns(self.switch, "ip", "link", "set", self.port(i), "down")

    def link_up(self, i: int) -> None:
        """Plug member ``i``'s cable back in."""
        self.ns(self.switch, "ip", "link", "set", self.port(i), "up")

    def cut(self, i: int, direction: str = "both") -> None:
        """Silently drop member ``i``'s traffic on the switch side; carrier stays up.

        ``direction`` is ``in`` (towards the host), ``out`` (from the host) or ``both``.
        """
        hooks = {"in": ["egress"], "out": ["ingress"], "both": ["ingress", "egress"]}[direction]
        table = f"cut{i}"
        rules = [f"table netdev {table} {{"]
        for hook in hooks:
            rules.append(f"  chain {hook} {{ type filter hook {hook} device {self.port(i)} "
                         "priority 0; policy drop; }")
        rules.append("}")
        self.ns(self.switch, "nft", "-f", "-", input="\n".join(rules) + "\n")

    def uncut(self, i: int) -> None:
        """Lift a silent cut made by :meth:`cut`."""
        self.ns(self.switch, "nft", "delete", "table", "netdev", f"cut{i}", check=False)

    def cut_behind(self, i: int) -> None:
        """Silently cut member ``i`` inside the switch, behind its port: the bridge drops what
        it would take from or hand to port ``i``; carrier stays up, and frames sent on the
        port itself (a forger on the wire, between the cut and the member) still reach the
        member. Lifted by :meth:`uncut_behind`."""
        port = self.port(i)
        rules = (f"table bridge behind{i} {{\n"
                 f"  chain pre {{ type filter hook prerouting priority -300; policy accept;"
                 f" iifname {port} drop; }}\n"
                 f"  chain post {{ type filter hook postrouting priority 0; policy accept;"
                 f" oifname {port} drop; }}\n}}\n")
        self.ns(self.switch, "nft", "-f", "-", input=rules)

    def uncut_behind(self, i: int) -> None:
        """Lift a cut made by :meth:`cut_behind`."""
        self.ns(self.switch, "nft", "delete", "table", "bridge", f"behind{i}", check=False)

    def drop_echo_requests(self, ns: str | None = None) -> None:
        """Make ``ns`` (the peer by default) deaf to pings, IPv4 and IPv6, while its other
        traffic flows: nobody gets an echo reply from it until :meth:`allow_echo_requests`."""
        rules = ("table inet deaf {\n  chain input { type filter hook input priority 0;"
                 " icmp type echo-request drop; icmpv6 type echo-request drop; }\n}\n")
        self.ns(ns or self.peer, "nft", "-f", "-", input=rules)

    def allow_echo_requests(self, ns: str | None = None) -> None:
        """Lift :meth:`drop_echo_requests`."""
        self.ns(ns or self.peer, "nft", "delete", "table", "inet", "deaf", check=False)

    def answer_broadcast_pings(self, ns: str | None = None) -> None:
        """Let ``ns`` (the peer by default) answer pings to broadcast and multicast IPv4
        addresses such as all-hosts 224.0.0.1, which Linux ignores by default
        (``net.ipv4.icmp_echo_ignore_broadcasts=0``; its ff02::1 answers need nothing)."""
        self.ns(ns or self.peer, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0")

    def rate_limit(self, ns: str, dev: str, mbit: int) -> None:
        """Limit what ``dev`` in ``ns`` sends to ``mbit`` Mbit/s (a ``tbf`` qdisc)."""
        self.ns(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
                "burst", "64kb", "latency", "50ms")

    # -- observation -------------------------------------------------------------------------
    def wait_for(self, predicate: object, timeout: float = 10.0, interval: float = 0.05,
                 what: str = "condition") -> None:
        """Poll ``predicate()`` until it is true; raise TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():  # type: ignore[operator]
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
            time.sleep(interval)

    def link_stats(self, ns: str, dev: str | None = None) -> dict[str, dict[str, Any]]:
        """The kernel's counters (``ip -s -j link``: ``stats64``) of ``dev`` in ``ns``, or
        of every link there, by name; a link whose counters cannot be read is left out."""
        cmd = ["ip", "-s", "-j", "link", "show", *([dev] if dev else [])]
        try:
            links = json.loads(self.ns(ns, *cmd, check=False).stdout or "[]")
        except ValueError:
            return {}
        stats = {}
        for link in links if isinstance(links, list) else []:
            counters = link.get("stats64") or link.get("stats")
            if isinstance(counters, dict):
                stats[str(link.get("ifname"))] = counters
        return stats

    def udp_stats(self, ns: str, pid: int | None = None) -> dict[str, int]:
        """The kernel's UDP counters in ``ns`` (the ``Udp:`` lines of /proc/net/snmp:
        ``InDatagrams``, ``OutDatagrams``, ``RcvbufErrors``, ...), by name. Given ``pid``, a
        process inside ``ns``, they are read through /proc/PID/net at once, with no command
        started. Empty if they cannot be read."""
        if pid is not None:
            try:
                text = Path(f"/proc/{pid}/net/snmp").read_text()
            except OSError:
                return {}
        else:
            text = self.ns(ns, "cat", "/proc/net/snmp", check=False).stdout
        lines = [ln.split() for ln in text.splitlines() if ln.startswith("Udp:")]
        if len(lines) < 2:
            return {}
        return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=False)}

    def mac(self, ns: str, dev: str) -> str:
        """The MAC address of ``dev`` in ``ns`` (``aa:bb:cc:dd:ee:ff``)."""
        return self.ns(ns, "cat", f"/sys/class/net/{dev}/address").stdout.strip()

    def link_local(self, ns: str, dev: str) -> str:
        """The IPv6 link-local address of ``dev`` in ``ns`` (read with ``ip -j addr``,
        without its scope); LabError if it has none (yet: it may still run DAD)."""
        out = self.ns(ns, "ip", "-j", "-6", "addr", "show", "dev", dev, "scope", "link").stdout
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                if str(info.get("local", "")).startswith("fe80:"):
                    return str(info["local"])
        raise LabError(f"{dev} in {ns} has no IPv6 link-local address")

    def ping_ok(self, ns: str, address: str, count: int = 1, timeout: float = 1.0) -> bool:
        """True if ``address`` answers a ping from namespace ``ns``."""
        proc = self.ns(ns, "ping", "-n", "-q", "-c", str(count), "-W", str(timeout), address,
                       check=False, timeout=timeout * count + 5)
        return proc.returncode == 0


def remove_stale(prefix: str = "vb") -> list[str]:
    """Remove namespaces left behind by labs whose owning process is gone."""
    removed = []
    for name in existing_namespaces():
        if not name.startswith(prefix) or "x" not in name:
            continue
        pid_part = name[len(prefix):].split("x", 1)[0]
        if pid_part.isdigit() and not os.path.exists(f"/proc/{pid_part}"):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed
