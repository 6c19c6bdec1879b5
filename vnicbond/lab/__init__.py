"""The network-namespace lab shared by the demo, the netns tests and the tools in tools/.

One home per concept, none of them used by the daemon itself:

- :mod:`~vnicbond.lab.topology`: the namespaces, links, faults and commands run inside them
  (``Lab``, the addresses, stopping a process by its PID);
- :mod:`~vnicbond.lab.bond`: ``vnicbond run`` in a lab (``Bond``): configuration file, start,
  readiness, control requests, events, stop, log;
- :mod:`~vnicbond.lab.ping`: waiting for an address, a ping matrix, a ``ping -D`` stream and
  its parser;
- :mod:`~vnicbond.lab.iperf`: iperf3 servers and clients, and their JSON reports;
- :mod:`~vnicbond.lab.xfer`: a TCP transfer proved whole by a digest at both ends;
- :mod:`~vnicbond.lab.results`: tables, the machine and command line, a marked section of
  docs/benchmarks.md rewritten;
- :mod:`~vnicbond.lab.stack`: guests stacked on the bond: a host bridge with "VM"
  namespaces, macvlans in namespaces of their own (``Stack``, ``Guest``);
- :mod:`~vnicbond.lab.l2`: the switch's forwarding database, a NIC's receive filters
  (promiscuity, unicast address list);
- :mod:`~vnicbond.lab.flood`: a guest flooding random source MACs;
- :mod:`~vnicbond.lab.responder`: a host whose echo replies come late (a slow target), in
  place of its kernel's.

The most used names are importable from here (``from vnicbond.lab import Lab, DATA_V4``);
``iperf``, ``xfer``, ``results``, ``l2``, ``flood`` and ``responder`` are imported as modules
(``xfer``, ``flood`` and ``responder`` also run as ``python -m vnicbond.lab.xfer``, ``.flood``
or ``.responder`` inside namespaces, so this package does not import them).
"""

from vnicbond.lab.bond import Bond, BondError
from vnicbond.lab.ping import PingLog, ping_result, ping_stream, unreachable, wait_ping
from vnicbond.lab.stack import BRIDGED_ADDRESSES, Guest, Stack
from vnicbond.lab.topology import (
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PEER_V6,
    PREFIX_V4,
    PREFIX_V6,
    Lab,
    LabError,
    existing_namespaces,
    remove_stale,
    run,
    stop,
)

__all__ = [
    "BRIDGED_ADDRESSES",
    "DATA_V4",
    "DATA_V6",
    "PEER_V4",
    "PEER_V6",
    "PREFIX_V4",
    "PREFIX_V6",
    "Bond",
    "BondError",
    "Guest",
    "Lab",
    "LabError",
    "PingLog",
    "Stack",
    "existing_namespaces",
    "ping_result",
    "ping_stream",
    "remove_stale",
    "run",
    "stop",
    "unreachable",
    "wait_ping",
]
