"""What the benchmark (``tools/bench``, see tools/bench.py) measures and how: the rows of each
section, iperf3 at saturation in each direction, the kernel's drop counters, running the tests
on a ready lab, and the set-ups (the kernel path, the bond, the bond from another checkout,
the bond spreading load over rate-limited members), each on a fresh lab. The paced tests
(round-trip time, CPU per packet) are tools/bench_paced.py's; the metrics, samples and
results tools/bench_model.py's; reporting the figures is tools/bench.py's.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import bench_paced
from tools.bench_model import GROUP, Metric, Results, Sample, Test, single
from vnicbond.control import ControlError
from vnicbond.lab import (
    BRIDGED_ADDRESSES,
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PREFIX_V4,
    PREFIX_V6,
    Bond,
    Guest,
    Lab,
    Stack,
    iperf,
    wait_ping,
)

SPREAD_STREAMS = 8  # load-spread: TCP streams per test, split over the data addresses
DATA2_V4 = "198.18.0.11"  # load-spread: the second data address


# -- what is measured -------------------------------------------------------------------------
#: The active-backup rows measured at saturation (iperf3 as fast as it goes).
SATURATION: tuple[Metric, ...] = (
    Metric("tcp-out", "TCP out (host -> peer)", tcp=True, outbound=True),
    Metric("tcp-in", "TCP in (peer -> host)", tcp=True, outbound=False),
    Metric("udp64-out", "64 B UDP out, received pps", tcp=False, outbound=True),
    Metric("udp64-in", "64 B UDP in, received pps", tcp=False, outbound=False),
)

SPREAD_METRICS: tuple[Metric, ...] = (
    Metric("tcp-out", "TCP out (host -> peer)", tcp=True, outbound=True, unit="Mbit/s"),
    Metric("tcp-in", "TCP in (peer -> host)", tcp=True, outbound=False, unit="Mbit/s"),
)
SPREAD_MODES: tuple[str, ...] = ("one member", "two members")

#: The stacking section's rows: TCP between a VM on a bridge and the peer.
STACK_METRICS: tuple[Metric, ...] = (
    Metric("tcp-out", "TCP out (VM -> peer)", tcp=True, outbound=True),
    Metric("tcp-in", "TCP in (peer -> VM)", tcp=True, outbound=False),
)
STACK_MODES: tuple[str, ...] = ("kernel", "bond")


# -- iperf3 -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flow:
    """One iperf3 client/server pair: the server's address and port, and whether it binds."""

    target: str
    port: int = iperf.PORT
    bind: bool = False  # the server listens on ``target`` only (``-B``)


def iperf_test(lab: Lab, metric: Metric, seconds: int) -> Sample:
    """Run one iperf3 test in ``metric``'s direction; the value is what the receiver got."""
    target = PEER_V4 if metric.outbound else DATA_V4
    options = [] if metric.tcp else ["-u", "-l", "64", "-b", "0"]
    return iperf_flows(lab, metric, [Flow(target)], seconds, options)


def iperf_flows(lab: Lab, metric: Metric, flows: Sequence[Flow], seconds: int,
                options: Sequence[str] = (), local: str | None = None) -> Sample:
    """Run one iperf3 client per flow at the same time, in ``metric``'s direction, each with
    ``options``; the value is the sum of what the receivers got (None if any client failed).
    ``local``: the namespace on this side of the bond (default: the host's)."""
    local = local or lab.host
    client_ns, server_ns = (local, lab.peer) if metric.outbound else (lab.peer, local)
    limit = seconds + 30
    with contextlib.ExitStack() as servers:
        for flow in flows:
            servers.enter_context(iperf.server(lab, server_ns, flow.port,
                                               flow.target if flow.bind else None))
        clients = [iperf.start_client(lab, client_ns, flow.target, seconds, flow.port, options)
                   for flow in flows]
        deadline = time.monotonic() + limit
        reports = [iperf.wait(client, max(0.1, deadline - time.monotonic()))
                   for client in clients]
    samples = [Sample(None, f"iperf3 gave no result within {limit} s") if report.timed_out
               else _report_sample(metric, report) for report in reports]
    if len(samples) == 1:
        return samples[0]
    notes = ", ".join(f"{flow.target}:{flow.port} {metric.format(s.value)} {s.note}"
                      for flow, s in zip(flows, samples, strict=True))
    if any(s.value is None for s in samples):
        return Sample(None, notes)
    return Sample(sum(s.value for s in samples if s.value is not None), notes)


def _report_sample(metric: Metric, report: iperf.Report) -> Sample:
    """The sample in an iperf3 client's JSON report."""
    if report.data is None:
        return Sample(None, f"iperf3 exit {report.exit}: {report.stderr.strip()[:200]}")
    if report.error is not None:
        return Sample(None, f"iperf3: {report.error}")
    return _tcp_sample(report) if metric.tcp else _udp_sample(report.end)


def _tcp_sample(report: iperf.Report) -> Sample:
    bps = report.received().get("bits_per_second")
    if not bps:
        return Sample(None, "iperf3 reported no received throughput")
    return Sample(float(bps), f"{report.retransmits()} retransmits")


def _udp_sample(end: dict[str, Any]) -> Sample:
    received = end.get("sum_received") or end.get("sum", {})
    packets, lost = received.get("packets", 0), received.get("lost_packets", 0)
    seconds = received.get("seconds") or 0.0
    if not packets or seconds <= 0:
        return Sample(None, "iperf3 reported no received packets")
    pps = (packets - lost) / seconds
    return Sample(pps, f"sent {packets / seconds / 1e3:.1f} kpps, "
                       f"lost {received.get('lost_percent', 0.0):.1f}%")


#: The active-backup section's tests: the rates at saturation, then the paced tests.
TESTS: tuple[Test, ...] = (*(single(m, iperf_test) for m in SATURATION), *bench_paced.TESTS)
METRICS: tuple[Metric, ...] = tuple(m for test in TESTS for m in test.metrics)


# -- where packets are lost ------------------------------------------------------------------
def udp_rcvbuf_errors(lab: Lab, ns: str) -> int:
    """UDP datagrams dropped in ``ns`` because a socket's receive buffer was full."""
    return lab.udp_stats(ns).get("RcvbufErrors", 0)


def tap_tx_dropped(lab: Lab) -> int | None:
    """Frames the kernel dropped on the way into the TAP (the daemon did not read in time)."""
    stats = lab.link_stats(lab.host, GROUP).get(GROUP)
    try:
        return int(stats["tx"]["dropped"]) if stats is not None else None
    except (LookupError, TypeError, ValueError):
        return None


def kernel_drops(lab: Lab, tap: bool) -> dict[str, int]:
    """Kernel drop counters that show where 64-byte datagrams are lost (``tap``: the
    daemon's TAP is there)."""
    drops = {"host udp rcvbuf": udp_rcvbuf_errors(lab, lab.host),
             "peer udp rcvbuf": udp_rcvbuf_errors(lab, lab.peer)}
    dropped = tap_tx_dropped(lab) if tap else None
    if dropped is not None:
        drops[f"{GROUP} tx_dropped"] = dropped
    return drops


def moved(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """The counters that grew between two snapshots, as ``name +delta``."""
    return [f"{k} +{after[k] - before[k]}" for k in after if after[k] > before.get(k, after[k])]


def measure(lab: Lab, mode: str, seconds: int, results: Results, tag: str,
            bond: Bond | None = None, tests: Sequence[Test] = TESTS) -> None:
    """Run ``tests`` on a ready lab and record their samples under ``mode``.

    ``bond`` is the daemon when it runs: each test gets it, it must be alive before each
    test, and the TAP's drops are watched too.
    """
    for test in tests:
        if bond is not None:
            bond.alive()
        before = kernel_drops(lab, tap=bond is not None)
        samples = test.run(lab, bond, seconds)
        lost = moved(before, kernel_drops(lab, tap=bond is not None))
        for metric, sample in zip(test.metrics, samples, strict=True):
            if lost:
                sample.note += "; kernel drops: " + ", ".join(lost)
            results.add(mode, metric, sample)
            value = metric.format(sample.value)
            results.notes.append(f"{tag} {metric.key}: {value} ({sample.note})")
            print(f"  [{tag}] {metric.key:<10} {value:>14}  ({sample.note})", flush=True)


# -- the set-ups ------------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_lab() -> Iterator[tuple[Lab, Path]]:
    """A newly built two-member lab and a scratch directory, both removed when left."""
    lab = Lab(members=2)
    workdir = Path(tempfile.mkdtemp(prefix="vnicbond-bench-", dir="/run"))
    try:
        lab.build()
        yield lab, workdir
    finally:
        lab.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def wait_reachable(lab: Lab, addresses: Sequence[str] = (DATA_V4,)) -> None:
    """Wait until the peer can ping each of ``addresses``."""
    for address in addresses:
        wait_ping(lab, lab.peer, address)


def run_kernel(seconds: int, results: Results, tag: str) -> None:
    """The kernel path: the data address straight on m0 of a fresh lab, no daemon."""
    with fresh_lab() as (lab, _):
        for i in range(lab.members):
            lab.ns(lab.host, "ip", "link", "set", lab.member(i), "up")
        m0 = lab.member(0)
        lab.ns(lab.host, "ip", "addr", "add", f"{DATA_V4}/{PREFIX_V4}", "dev", m0)
        lab.ns(lab.host, "ip", "addr", "add", f"{DATA_V6}/{PREFIX_V6}", "dev", m0, "nodad")
        wait_reachable(lab)
        measure(lab, "kernel", seconds, results, tag)


def group_config(members: int, addresses: Sequence[str], mode: str | None = None
                 ) -> dict[str, Any]:
    """One group ``ipmp0`` with ``addresses`` and members m0 .. m<members - 1>."""
    group: dict[str, Any] = {"name": GROUP}
    if mode is not None:
        group["mode"] = mode
    group["addresses"] = list(addresses)
    group["members"] = [{"name": f"m{i}"} for i in range(members)]
    return group


def daemon_config(socket: str, group: dict[str, Any]) -> dict[str, Any]:
    """The daemon's configuration: the control socket and ``group``."""
    return {"control": {"socket": socket}, "groups": [group]}


def daemon_status(bond: Bond) -> dict[str, Any] | None:
    """The daemon's status document, or None if it does not answer."""
    try:
        return dict(bond.request("status"))
    except ControlError:
        return None


def drop_counters(status: dict[str, Any]) -> dict[str, int]:
    """The daemon's drop counters: per member tx/rx and the group's tap_dropped."""
    drops: dict[str, int] = {}
    for group in status.get("groups", []):
        drops[f"{group['name']}.tap_dropped"] = int(group.get("tap_dropped", 0))
        for member in group.get("members", []):
            for key in ("tx_dropped", "rx_dropped"):
                drops[f"{member['name']}.{key}"] = int(member.get(key, 0))
    return drops


@contextlib.contextmanager
def running_daemon(lab: Lab, workdir: Path, group: dict[str, Any],
                   checkout: Path | None = None) -> Iterator[Bond]:
    """Start ``vnicbond run`` for ``group`` in the host namespace (the daemon of
    ``checkout``, if given, else this one's); yield it once its socket answers."""
    bond = Bond.in_workdir(lab, workdir, daemon_config(str(workdir / "ctl.sock"), group))
    try:
        yield bond.start(checkout=checkout)
    finally:
        bond.close(timeout=15)


def run_daemon(lab: Lab, workdir: Path, group: dict[str, Any], results: Results, tag: str,
               body: Callable[[Bond], None], checkout: Path | None = None) -> None:
    """Run ``body`` with the daemon (of ``checkout``, if given) up for ``group`` on a built
    lab; then keep the daemon's drop counters (an error if it no longer answers)."""
    with running_daemon(lab, workdir, group, checkout) as bond:
        body(bond)
        bond.alive()
        status = daemon_status(bond)
    if status is None:
        results.errors.append(f"{tag}: no daemon status after the run")
        return
    drops = drop_counters(status)
    results.drops.append((tag, drops))
    print(f"  [{tag}] daemon drops: " + ", ".join(f"{k}={v}" for k, v in drops.items()),
          flush=True)


def run_bond(seconds: int, results: Results, tag: str, mode: str = "bond",
             checkout: Path | None = None) -> None:
    """The bond: a fresh lab with the daemon owning every member, its samples recorded under
    ``mode``; keeps its drop counters. ``checkout``: the daemon of that checkout of vnicbond
    (the lab and the tests stay this one's)."""
    with fresh_lab() as (lab, workdir):
        group = group_config(lab.members, [f"{DATA_V4}/{PREFIX_V4}", f"{DATA_V6}/{PREFIX_V6}"])

        def body(bond: Bond) -> None:
            wait_reachable(lab)
            measure(lab, mode, seconds, results, tag, bond)

        run_daemon(lab, workdir, group, results, tag, body, checkout)


# -- load spreading ---------------------------------------------------------------------------
def rate_limit(lab: Lab, rate: int) -> None:
    """Limit every member's wire to ``rate`` Mbit/s each way: what the host sends on the
    member, what it receives on the switch port."""
    for i in range(lab.members):
        lab.rate_limit(lab.host, lab.member(i), rate)
        lab.rate_limit(lab.switch, lab.port(i), rate)


def spread_addresses(members: int) -> list[str]:
    """The data addresses of the load-spread group: one per member (two at most)."""
    return [DATA_V4, DATA2_V4][:members]


def member_bytes(lab: Lab, members: int, outbound: bool) -> dict[str, int]:
    """Bytes each member has sent (``outbound``) or received so far."""
    key = "tx" if outbound else "rx"
    counts = {}
    for i in range(members):
        stats = lab.link_stats(lab.host, lab.member(i)).get(lab.member(i))
        with contextlib.suppress(LookupError, TypeError, ValueError):
            counts[lab.member(i)] = int(stats[key]["bytes"]) if stats is not None else 0
    return counts


def spread_test(members: int, lab: Lab, metric: Metric, seconds: int) -> Sample:
    """TCP with SPREAD_STREAMS streams: out to the peer, or in to each data address at once
    (the streams split between them); notes the bytes each member carried."""
    if metric.outbound:
        flows = [Flow(PEER_V4)]
    else:
        flows = [Flow(a, iperf.PORT + i, bind=True)
                 for i, a in enumerate(spread_addresses(members))]
    streams = str(SPREAD_STREAMS // len(flows))
    before = member_bytes(lab, members, metric.outbound)
    sample = iperf_flows(lab, metric, flows, seconds, ["-P", streams])
    after = member_bytes(lab, members, metric.outbound)
    carried = [f"{m} {(after[m] - before.get(m, 0)) / 1e6:.0f} MB" for m in after]
    sample.note += "; carried: " + ", ".join(carried)
    return sample


def wait_spread(lab: Lab, bond: Bond, members: int) -> str:
    """Wait until every member is active and the daemon has placed every data address;
    return the placement, ``address on member, ...``."""
    placement: list[str] = []

    def ready() -> bool:
        bond.alive()
        status = daemon_status(bond)
        if not status or not status.get("groups"):
            return False
        group = status["groups"][0]
        states = [m.get("state") for m in group.get("members", [])]
        hosts = [(a.get("address"), a.get("member")) for a in group.get("addresses", [])]
        placement[:] = [f"{a} on {m}" for a, m in hosts]
        return (len(states) == members and all(s == "active" for s in states)
                and all(m for _, m in hosts))

    lab.wait_for(ready, timeout=20, interval=0.2, what="every member to be active")
    return ", ".join(placement)


def run_spread(members: int, rate: int, seconds: int, results: Results, tag: str) -> None:
    """Load spreading over ``members`` rate-limited members of a fresh lab."""
    mode = SPREAD_MODES[members - 1]
    with fresh_lab() as (lab, workdir):
        rate_limit(lab, rate)
        addresses = spread_addresses(members)
        group = group_config(members, [f"{a}/{PREFIX_V4}" for a in addresses], "load-spread")

        def body(bond: Bond) -> None:
            placement = wait_spread(lab, bond, members)
            wait_reachable(lab, addresses)
            results.notes.append(f"{tag}: {placement}")
            print(f"  [{tag}] {placement}", flush=True)
            measure(lab, mode, seconds, results, tag, bond,
                    [single(m, functools.partial(spread_test, members)) for m in SPREAD_METRICS])

        run_daemon(lab, workdir, group, results, tag, body)


# -- a VM stacked on the bond -----------------------------------------------------------------
def vm_test(vm: Guest, lab: Lab, metric: Metric, seconds: int) -> Sample:
    """One iperf3 TCP test between ``vm`` and the peer, in ``metric``'s direction."""
    target = PEER_V4 if metric.outbound else vm.v4
    return iperf_flows(lab, metric, [Flow(target)], seconds, local=vm.ns)


def run_stack(mode: str, seconds: int, results: Results, tag: str) -> None:
    """A VM on the bridge ``br-vm`` of a fresh lab's host namespace, the bridge over m0 itself
    (``kernel``: no daemon) or over the daemon's TAP (``bond``, active-backup on m0 and m1)."""
    with fresh_lab() as (lab, workdir):
        stack = Stack(lab).bridge(ipv6=False)
        vm = stack.add_vm()
        tests = [single(m, functools.partial(vm_test, vm)) for m in STACK_METRICS]

        def body(bond: Bond | None) -> None:
            stack.enslave(GROUP if bond is not None else lab.member(0))
            wait_ping(lab, lab.peer, vm.v4)
            wait_ping(lab, vm.ns, PEER_V4)
            measure(lab, mode, seconds, results, tag, bond, tests)

        if mode == "kernel":
            body(None)
        else:
            run_daemon(lab, workdir, group_config(lab.members, list(BRIDGED_ADDRESSES)),
                       results, tag, body)
