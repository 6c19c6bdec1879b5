"""The benchmark's paced tests (``tools/bench``, active-backup): what a packet costs at a set
pace, where tools/bench_measure.py measures rates at saturation.

* ``rtt``: 500 pings, one every 10 ms, from the peer to the data address (``ping -D``, read by
  :class:`vnicbond.lab.PingLog`): the average and the 99th percentile (nearest rank) of the
  replies' round-trip times.
* ``cpu-out`` / ``cpu-in``: 64-byte UDP at 50 kpps (``iperf3 -u -l 64 -b 25.6M``; ``-b``
  counts UDP payload bits) from the host to the peer, or back. After half a second's warm-up,
  over a window of the test's length: on the bond, the daemon's CPU time (utime + stime of
  /proc/PID/stat, every thread) divided by the packets its members' counters say it
  forwarded in the test's direction (``tx_packets`` out, ``rx_packets`` in, from ``vnicbond
  status``); on the kernel path, the sending iperf3's CPU time divided by the datagrams sent
  in its namespace (``Udp: OutDatagrams``). The notes give the rate achieved, the kernel's own
  count of what the daemon forwarded (m0's ``tx_packets`` out, the TAP's ``rx_packets`` in),
  what it forwarded the other way, the sender's CPU per packet on the bond too, and what the
  receiver got.

It reads counters and runs ping and iperf3; it judges nothing.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tools.bench_model import GROUP, Metric, Sample, Test
from vnicbond.lab import (
    DATA_V4,
    PEER_V4,
    Bond,
    Lab,
    PingLog,
    iperf,
    ping_result,
    ping_stream,
    stop,
)
from vnicbond.lab.bond import cpu_seconds

RTT_COUNT = 500
RTT_INTERVAL = 0.01  # seconds
CPU_RATE = 50_000  # packets a second
CPU_SIZE = 64  # UDP payload bytes
WARMUP = 0.5  # seconds between the sender's start and the window
RATE_TOLERANCE = 0.05  # a rate further than this from CPU_RATE is flagged in the note

RTT_AVG = Metric("rtt-avg", "ping RTT, average (peer -> data address)", tcp=False,
                 outbound=False, unit="ms", lower_is_better=True)
RTT_P99 = Metric("rtt-p99", "ping RTT, 99th percentile", tcp=False, outbound=False,
                 unit="ms", lower_is_better=True)
CPU_OUT = Metric("cpu-out", "CPU per packet, 64 B UDP out at 50 kpps", tcp=False,
                 outbound=True, unit="µs", lower_is_better=True)
CPU_IN = Metric("cpu-in", "CPU per packet, 64 B UDP in at 50 kpps", tcp=False,
                outbound=False, unit="µs", lower_is_better=True)


# -- round-trip times -------------------------------------------------------------------------
def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value that ``share`` of ``values`` do not
    exceed (``values`` must not be empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def rtt_test(lab: Lab, bond: Bond | None, seconds: int) -> list[Sample]:
    """RTT_COUNT pings every RTT_INTERVAL from the peer to the data address: the average and
    the 99th percentile of the round-trip times, in seconds (``seconds`` is not used: the
    test is as long as its pings)."""
    proc = ping_stream(lab, lab.peer, DATA_V4, RTT_INTERVAL, RTT_COUNT)
    try:
        sent, _, out = ping_result(proc, timeout=RTT_COUNT * RTT_INTERVAL + 30)
    except AssertionError as e:  # no summary: ping failed
        return [Sample(None, str(e).splitlines()[0])] * 2
    rtts = list(PingLog.parse(out, RTT_INTERVAL).rtt_ms.values())
    if not rtts:
        return [Sample(None, f"no ping replies ({sent} sent)")] * 2
    note = (f"{len(rtts)} of {sent} answered; min {min(rtts):.3f} ms, "
            f"max {max(rtts):.3f} ms")
    return [Sample(statistics.fmean(rtts) / 1e3, note),
            Sample(percentile(rtts, 0.99) / 1e3, note)]


# -- CPU per packet ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """A CPU test's counters at one moment (the daemon's are 0 on the kernel path)."""

    time: float  # when the iperf3 processes were read
    sender_cpu: float  # the sending iperf3's CPU seconds
    sent: int  # UDP datagrams sent in the sender's namespace
    received: int  # UDP datagrams delivered in the receiver's namespace
    daemon_time: float = 0.0  # when the daemon's CPU was read
    daemon_cpu: float = 0.0  # the daemon's CPU seconds
    forwarded: int = 0  # its members' counters in the test's direction, summed
    returned: int = 0  # the same, the other way
    kernel_time: float = 0.0  # about when the kernel's count was read (a command runs)
    kernel: int = 0  # the kernel's count of ``forwarded``: m0 tx_packets out, TAP rx_packets in


def _read(lab: Lab, bond: Bond | None, outbound: bool, sender: int, receiver: int,
          start: bool) -> Reading:
    """The counters now, read from the outside in at the window's start (the kernel's
    count, the daemon's counters, the daemon's CPU, then the iperf3 processes) and from the
    inside out at its end. So each pair that is divided (the daemon's CPU and its counters;
    the sending iperf3's CPU and what it sent) is read back to back, and the daemon's work
    answering the control request stays out of the window. ``sender`` and ``receiver`` are
    the iperf3 processes: their CPU and their namespaces' UDP counters are read through
    /proc, no command started."""
    got: dict[str, Any] = {}

    def processes() -> None:
        got["time"], got["sender_cpu"] = time.monotonic(), cpu_seconds(sender)
        sent_ns, received_ns = (lab.host, lab.peer) if outbound else (lab.peer, lab.host)
        got["sent"] = lab.udp_stats(sent_ns, sender).get("OutDatagrams", 0)
        got["received"] = lab.udp_stats(received_ns, receiver).get("InDatagrams", 0)

    steps: list[Callable[[], None]] = [processes]
    if bond is not None:
        def daemon_cpu() -> None:
            got["daemon_time"], got["daemon_cpu"] = (time.monotonic(),
                                                     cpu_seconds(bond.daemon_pid()))

        def daemon_counters() -> None:
            members = bond.status()["members"]
            tx = sum(int(m["tx_packets"]) for m in members)
            rx = sum(int(m["rx_packets"]) for m in members)
            got["forwarded"], got["returned"] = (tx, rx) if outbound else (rx, tx)

        def kernel() -> None:
            before = time.monotonic()
            links = lab.link_stats(lab.host)
            got["kernel_time"] = (before + time.monotonic()) / 2
            got["kernel"] = int(links[lab.member(0)]["tx"]["packets"] if outbound
                                else links[GROUP]["rx"]["packets"])

        steps = [kernel, daemon_counters, daemon_cpu, processes]
    for step in steps if start else reversed(steps):
        step()
    return Reading(**got)


def cpu_test(metric: Metric, lab: Lab, bond: Bond | None, seconds: int) -> list[Sample]:
    """64-byte UDP at CPU_RATE in ``metric``'s direction; over a window of ``seconds`` after
    WARMUP: the daemon's CPU seconds per packet it forwarded (on the bond), or the sending
    iperf3's per datagram sent (on the kernel path)."""
    outbound = metric.outbound
    client_ns, server_ns, target = ((lab.host, lab.peer, PEER_V4) if outbound
                                    else (lab.peer, lab.host, DATA_V4))
    options = ["-u", "-l", str(CPU_SIZE), "-b", str(CPU_RATE * CPU_SIZE * 8)]
    with iperf.server(lab, server_ns) as server:
        # iperf3 -t takes whole seconds: it runs on for about half a second after the window.
        client = iperf.start_client(lab, client_ns, target, seconds + 1, options=options)
        try:
            time.sleep(WARMUP)
            start = _read(lab, bond, outbound, client.pid, server.pid, start=True)
            time.sleep(seconds)
            end = _read(lab, bond, outbound, client.pid, server.pid, start=False)
        except (OSError, LookupError) as e:  # a process gone, a counter missing
            stop(client, timeout=5)
            return [Sample(None, f"counters unreadable: {e!r}")]
        except BaseException:
            stop(client, timeout=5)
            raise
        report = iperf.wait(client, seconds + 30)
    if report.error is not None or report.timed_out:
        return [Sample(None, f"iperf3: {report.error or 'no result in time'}")]
    return [cpu_sample(start, end, bond is not None)]


def cpu_sample(start: Reading, end: Reading, daemon: bool) -> Sample:
    """CPU seconds per packet between two readings, and the note that shows what it rests on."""
    window = end.time - start.time
    sent, received = end.sent - start.sent, end.received - start.received
    sender_cpu = end.sender_cpu - start.sender_cpu
    sender = sender_cpu / sent if sent else None
    got = f"the receiver got {received / window / 1e3:.1f} kpps"
    if not daemon:
        rate = sent / window
        note = (f"sender iperf3 {sender_cpu:.2f} s CPU / {sent} datagrams sent (Udp "
                f"OutDatagrams) in {window:.2f} s = {rate / 1e3:.1f} kpps; {got}")
        return Sample(sender, note + _off_rate(rate))
    forwarded = end.forwarded - start.forwarded
    daemon_cpu = end.daemon_cpu - start.daemon_cpu
    rate = forwarded / (end.daemon_time - start.daemon_time)
    kernel_rate = (end.kernel - start.kernel) / (end.kernel_time - start.kernel_time)
    note = (f"daemon {daemon_cpu:.2f} s CPU / {forwarded} packets forwarded (members' "
            f"counters) in {end.daemon_time - start.daemon_time:.2f} s = {rate / 1e3:.1f} kpps "
            f"(the kernel's count: {kernel_rate / 1e3:.1f} kpps; "
            f"{end.returned - start.returned} the other way); sender iperf3 "
            f"{'n/a' if sender is None else f'{sender * 1e6:.2f} µs'}/packet; {got}")
    return Sample(daemon_cpu / forwarded if forwarded else None, note + _off_rate(rate))


def _off_rate(rate: float) -> str:
    """A warning for the note if ``rate`` is not the rate asked for."""
    if abs(rate / CPU_RATE - 1) <= RATE_TOLERANCE:
        return ""
    return f"; NOT at the {CPU_RATE / 1e3:.0f} kpps asked"


TESTS: tuple[Test, ...] = (
    Test((RTT_AVG, RTT_P99), rtt_test),
    Test((CPU_OUT,), functools.partial(cpu_test, CPU_OUT)),
    Test((CPU_IN,), functools.partial(cpu_test, CPU_IN)),
)
