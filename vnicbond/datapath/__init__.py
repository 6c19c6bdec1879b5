"""The datapath: frames between the TAP and the member packet sockets, and their accounting.

The package owns the per-frame path and nothing else; what it forwards where is decided
elsewhere and handed to :class:`Datapath` as a forwarding table. Its modules:

- :mod:`~vnicbond.datapath.forwarder`: :class:`Datapath`, the forwarder itself.
- :mod:`~vnicbond.datapath.port`: a member's :class:`Port`, its counters and drop reasons.
- :mod:`~vnicbond.datapath.flowhash`: flow -> member, for load spreading.
- :mod:`~vnicbond.datapath.ndp`: neighbour discovery from the host in load spreading: the
  member it leaves by and the MAC it names.
- :mod:`~vnicbond.datapath.offsets`: where in a frame the loops read.

Everything other code imports from the datapath is re-exported here.
"""

from vnicbond.datapath.forwarder import Datapath
from vnicbond.datapath.offsets import BATCH, BUFFER_SIZE
from vnicbond.datapath.port import (
    MIN_SEGMENT,
    RX_ERRORS,
    RX_FILTERED,
    RX_REASONS,
    TAP_REASONS,
    TX_REASONS,
    Port,
    tx_reason,
    wire_packets,
)

__all__ = [
    "BATCH",
    "BUFFER_SIZE",
    "MIN_SEGMENT",
    "RX_ERRORS",
    "RX_FILTERED",
    "RX_REASONS",
    "TAP_REASONS",
    "TX_REASONS",
    "Datapath",
    "Port",
    "tx_reason",
    "wire_packets",
]
