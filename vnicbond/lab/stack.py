"""Guests stacked on the bond in a lab: a host-side bridge with "VM" namespaces, macvlans.

What people put on a bond (issue 12), built in the lab's host namespace::

    [vmN ns]  eth0 198.18.0.60+N/24, 2001:db8::60+N/64 (its own MAC)
               |
    [host ns] vmN ─┬─ br-vm (198.18.0.10/24 for the host, when asked) ─ ipmp0 (or m0)
                   │
              ipmp0 ── mvN (macvlan, mode bridge) ──> moved to [mvN ns] as eth0,
                                                      198.18.0.50+N/24, 2001:db8::50+N/64

The bridge ``br-vm`` (no STP, no forwarding delay, its own fixed MAC so it never takes a
port's) holds veths to VM namespaces and the device it is put over: ``ipmp0`` once the daemon
has created it (:meth:`Stack.enslave` after the start: the TAP appears with the daemon and
goes with it), or a member itself with no daemon, the kernel's own path. A macvlan is created
on ``ipmp0`` in the host namespace and moved into a namespace of its own, as a container's
would be. Every namespace is the lab's (:meth:`Lab.add_namespace`), so it goes with the lab.
It configures guests; the daemon and what it does with their frames are not its business.
"""

from __future__ import annotations

from dataclasses import dataclass

from vnicbond.lab.topology import PREFIX_V4, PREFIX_V6, Lab, run

BRIDGE = "br-vm"
#: The bridge's own MAC, set so it never inherits a port's (the TAP's would be the group's).
BRIDGE_MAC = "02:62:72:00:00:01"
GUEST_IF = "eth0"  # the guest's interface inside its namespace
VM_BASE = 60  # VM N: 198.18.0.(60+N), 2001:db8::(60+N)
MACVLAN_BASE = 50  # macvlan N: 198.18.0.(50+N), 2001:db8::(50+N)
#: The group's data addresses when the TAP is a bridge port: none. An address on a bridge
#: port is unreachable (the bridge takes every frame the port receives), so the host's own
#: addresses go on the bridge, as on a hypervisor's ``vmbr0``.
BRIDGED_ADDRESSES: tuple[str, ...] = ()


@dataclass(frozen=True)
class Guest:
    """A namespace standing for a VM or a container, with its one interface ``eth0``."""

    ns: str
    kind: str  # "vm" (a veth on the bridge) or "macvlan" (on ipmp0)
    index: int
    mac: str
    v4: str
    v6: str

    @property
    def ifname(self) -> str:
        """The guest's interface, inside its namespace."""
        return GUEST_IF

    @property
    def port(self) -> str:
        """The host side's name: the VM's bridge port, or the macvlan's name before it was
        moved into the guest's namespace."""
        return f"{'vm' if self.kind == 'vm' else 'mv'}{self.index}"


def guest_mac(kind: str, index: int) -> str:
    """A fixed locally administered MAC per guest: ``02:76:6d:..`` for VMs, ``02:6d:76:..``
    for macvlans."""
    head = "02:76:6d" if kind == "vm" else "02:6d:76"
    return f"{head}:00:00:{index + 1:02x}"


def guest_addresses(kind: str, index: int) -> tuple[str, str]:
    """A guest's IPv4 and IPv6 address (no prefix)."""
    host = (VM_BASE if kind == "vm" else MACVLAN_BASE) + index
    return f"198.18.0.{host}", f"2001:db8::{host}"


class Stack:
    """The guests stacked on one lab's host namespace, and the bridge they hang off."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.vms: list[Guest] = []
        self.macvlans: list[Guest] = []
        self.bridged = False

    # -- the bridge --------------------------------------------------------------------------
    def bridge(self, ipv6: bool = True) -> Stack:
        """Create ``br-vm`` in the host namespace, up, with its own MAC. ``ipv6=False`` keeps
        the bridge itself silent (no link-local address, router or listener messages), so
        only the guests' MACs go out through it."""
        host = self.lab.host
        self.lab.ns(host, "ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "mtu",
                    str(self.lab.mtu), "type", "bridge", "stp_state", "0", "forward_delay",
                    "0", "mcast_snooping", "0")
        if not ipv6:
            self.lab.ns(host, "sysctl", "-qw", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=1")
        self.lab.ns(host, "ip", "link", "set", BRIDGE, "up")
        self.bridged = True
        return self

    def enslave(self, dev: str, timeout: float = 10.0) -> None:
        """Make ``dev`` of the host namespace a port of the bridge, up: ``ipmp0`` once the
        daemon has created it (waited for up to ``timeout`` seconds), or a member for the
        kernel's own path."""
        host = self.lab.host
        self.lab.wait_for(lambda: self.lab.ns(host, "ip", "link", "show", dev,
                                              check=False).returncode == 0,
                          timeout=timeout, what=f"{dev} to exist in {host}")
        self.lab.ns(host, "ip", "link", "set", dev, "master", BRIDGE, "up")

    def host_address(self, v4: str, v6: str | None = None) -> None:
        """Give the host an address on the bridge (as a hypervisor has on ``vmbr0``)."""
        host = self.lab.host
        self.lab.ns(host, "ip", "addr", "add", f"{v4}/{PREFIX_V4}", "dev", BRIDGE)
        if v6 is not None:
            self.lab.ns(host, "ip", "addr", "add", f"{v6}/{PREFIX_V6}", "dev", BRIDGE, "nodad")

    # -- guests ------------------------------------------------------------------------------
    def add_vm(self) -> Guest:
        """A VM namespace joined to the bridge by a veth (``vmN`` on the host side, ``eth0``
        inside) with its own MAC and addresses."""
        index = len(self.vms)
        guest = self._guest("vm", index)
        mtu = str(self.lab.mtu)
        run(["ip", "link", "add", guest.port, "netns", self.lab.host, "mtu", mtu, "type", "veth",
             "peer", GUEST_IF, "netns", guest.ns, "mtu", mtu])
        self.lab.ns(self.lab.host, "ip", "link", "set", guest.port, "master", BRIDGE, "up")
        self.lab.ns(guest.ns, "ip", "link", "set", GUEST_IF, "address", guest.mac)
        self._address(guest)
        self.vms.append(guest)
        return guest

    def add_macvlan(self, parent: str = "ipmp0", quiet: bool = False) -> Guest:
        """A macvlan in mode bridge on ``parent`` (which must exist: the daemon's TAP), moved
        into a namespace of its own as ``eth0``, with its own MAC and addresses, up (which
        puts its MAC on ``parent``'s unicast address list). Goes when ``parent`` goes (the
        daemon's stop removes the TAP). ``quiet``: no addresses and IPv6 off, so it sends
        nothing at all and its MAC is only on that list."""
        index = len(self.macvlans)
        guest = self._guest("macvlan", index)
        host = self.lab.host
        self.lab.ns(host, "ip", "link", "add", guest.port, "link", parent, "address", guest.mac,
                    "type", "macvlan", "mode", "bridge")
        self.lab.ns(host, "ip", "link", "set", guest.port, "netns", guest.ns)
        self.lab.ns(guest.ns, "ip", "link", "set", guest.port, "name", GUEST_IF)
        if quiet:
            self.lab.ns(guest.ns, "sysctl", "-qw", f"net.ipv6.conf.{GUEST_IF}.disable_ipv6=1")
            self.lab.ns(guest.ns, "ip", "link", "set", GUEST_IF, "up")
        else:
            self._address(guest)
        self.macvlans.append(guest)
        return guest

    @property
    def guests(self) -> list[Guest]:
        """Every guest: the VMs, then the macvlans."""
        return [*self.vms, *self.macvlans]

    def _guest(self, kind: str, index: int) -> Guest:
        ns = self.lab.add_namespace(f"{'vm' if kind == 'vm' else 'mv'}{index}")
        v4, v6 = guest_addresses(kind, index)
        return Guest(ns, kind, index, guest_mac(kind, index), v4, v6)

    def _address(self, guest: Guest) -> None:
        ns = self.lab.ns
        ns(guest.ns, "sysctl", "-qw", f"net.ipv6.conf.{GUEST_IF}.accept_dad=0")
        ns(guest.ns, "ip", "addr", "add", f"{guest.v4}/{PREFIX_V4}", "dev", GUEST_IF)
        ns(guest.ns, "ip", "addr", "add", f"{guest.v6}/{PREFIX_V6}", "dev", GUEST_IF, "nodad")
        ns(guest.ns, "ip", "link", "set", GUEST_IF, "up")
