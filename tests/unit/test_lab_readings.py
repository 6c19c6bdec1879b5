"""The lab's readings that need no namespace: ping's output parsed, a process's CPU time, UDP
counters read through a process."""

from __future__ import annotations

import os
import time

from vnicbond.lab import Lab, PingLog
from vnicbond.lab.bond import cpu_seconds

PING = """\
PING 198.18.0.10 (198.18.0.10) 56(84) bytes of data.
[1700000000.000100] 64 bytes from 198.18.0.10: icmp_seq=1 ttl=64 time=0.061 ms
[1700000000.010100] 64 bytes from 198.18.0.10: icmp_seq=2 ttl=64 time=1.25 ms
[1700000000.010200] 64 bytes from 198.18.0.10: icmp_seq=2 ttl=64 time=1.35 ms (DUP!)
[1700000000.030100] 64 bytes from 198.18.0.10: icmp_seq=4 ttl=64 time=112 ms

--- 198.18.0.10 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 30ms
rtt min/avg/max/mdev = 0.061/28.665/112.000/48.0 ms
"""


def test_ping_round_trip_times_per_reply() -> None:
    log = PingLog.parse(PING)
    assert log.rtt_ms == {1: 0.061, 2: 1.25, 4: 112.0}  # the duplicate's is not kept
    assert log.duplicates == 1
    assert (log.transmitted, log.received, log.max_rtt_ms) == (4, 3, 112.0)


def test_cpu_seconds_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) >= before + 0.03


def test_udp_stats_through_a_process() -> None:
    stats = Lab().udp_stats("unused", os.getpid())  # no namespace: read through /proc/PID/net
    assert {"InDatagrams", "OutDatagrams", "RcvbufErrors"} <= set(stats)
    assert all(isinstance(v, int) for v in stats.values())
