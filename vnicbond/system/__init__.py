"""The only code that touches the kernel: TAP, packet sockets, netlink, member isolation."""
