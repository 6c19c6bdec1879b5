"""vnicbond: a userspace virtual NIC that bonds several NICs, in the spirit of Solaris IPMP."""

__version__ = "0.1.0"
