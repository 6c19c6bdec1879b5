"""DHCP and router advertisements in a lab: dnsmasq serving a namespace's link, udhcpc taking a
lease on another's interface.

:class:`DhcpServer` runs ``dnsmasq`` (DNS off) in one namespace: DHCPv4 leases from a range,
itself as the router, and with ``ra`` router advertisements for SLAAC on its IPv6 prefix.
:class:`DhcpClient` runs ``udhcpc`` in the foreground on an interface with a script of its own
(written to the caller's directory) that applies the lease with ``ip`` only: the address and
the default route, nothing outside the namespace (udhcpc's default script would edit
/etc/resolv.conf). Both write their state and logs to the caller's directory and are stopped
by their PID. They judge nothing.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from vnicbond.lab.topology import Lab, stop

#: udhcpc's events applied with ``ip``: a deconfig forgets the IPv4 addresses (only those:
#: SLAAC's stay), a lease puts its address and default route on the interface.
CLIENT_SCRIPT = """\
#!/bin/sh
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface" scope global ;;
    bound|renew)
        ip addr replace "$ip/$subnet" dev "$interface"
        if [ -n "$router" ]; then
            ip route replace default via "${router%% *}" dev "$interface"
        fi ;;
esac
exit 0
"""


class DhcpServer:
    """``dnsmasq`` serving ``iface`` in namespace ``ns``: DHCPv4 leases from ``first`` to
    ``last`` (a /24), itself as the router; with ``ra``, router advertisements for SLAAC on
    the interface's IPv6 prefix."""

    def __init__(self, lab: Lab, ns: str, iface: str, workdir: Path, first: str, last: str,
                 ra: bool = True) -> None:
        self.log = workdir / "dnsmasq.log"
        cmd = ["dnsmasq", "--keep-in-foreground", "--port=0", "--conf-file=/dev/null",
               f"--interface={iface}", "--bind-interfaces", "--user=root", "--no-ping",
               f"--dhcp-range={first},{last},255.255.255.0,1h",
               f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}", "--log-dhcp",
               f"--log-facility={self.log}", f"--pid-file={workdir / 'dnsmasq.pid'}"]
        if ra:
            cmd += ["--enable-ra", "--dhcp-range=::,constructor:" + iface + ",ra-only"]
        self.proc = lab.popen(ns, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_started(self, timeout: float = 10.0) -> None:
        """Wait until dnsmasq says it serves; raise RuntimeError with its output if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.proc.communicate()[1]}")
            if self.log.exists() and "DHCP, IP range" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq did not start: {self.logs()}")

    def logs(self) -> str:
        """What dnsmasq logged."""
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        """Stop dnsmasq by its PID."""
        stop(self.proc)


class DhcpClient:
    """``udhcpc`` in the foreground on ``iface`` in namespace ``ns``, its script in
    ``workdir``; it keeps the lease (renewing it) until closed."""

    def __init__(self, lab: Lab, ns: str, iface: str, workdir: Path) -> None:
        script = workdir / "udhcpc.script"
        script.write_text(CLIENT_SCRIPT)
        script.chmod(0o755)
        self.log = workdir / "udhcpc.log"
        with open(self.log, "a") as out:
            self.proc = lab.popen(ns, "udhcpc", "-f", "-i", iface, "-s", str(script),
                                  "-t", "20", "-T", "1", stdout=out, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        """What udhcpc printed."""
        return self.log.read_text() if self.log.exists() else ""

    def close(self) -> None:
        """Stop udhcpc by its PID (it leaves the lease's address in place)."""
        stop(self.proc)
