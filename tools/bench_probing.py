"""The benchmark's *probing* section (``tools/bench --section probing``): failure detection
without test addresses against in.mpathd's classic set-up with one test address per member.

Each run is a fresh lab with the daemon in active-backup on m0 and m1, FDT 300 ms, the peer
198.18.0.2 as the one probe target, in one of two modes:

* ``test-addresses`` (the baseline): m0 and m1 probe from test addresses 198.18.0.21 and .22;
* ``transitive``: no test address; the active member probes from the data address, the
  standby by link-layer probes to it (``probe.transitive``, the default).

and measures, in this order:

* ``target-pps``: echo requests the target answers a second (the members' probes to it,
  from the status's ``sent`` over 5 s);
* ``standby-detect``: from the standby's silent cut (nftables on its switch port, both ways)
  to its ``failed`` event, by the event's own timestamp; then the cut is lifted and the
  member repaired;
* ``cut-gap``: the longest gap between replies to a 10 ms ping from the peer to the data
  address while the active member is silently cut (both ways): detection plus failover.

It measures; tools/bench_report.py makes the table.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from tools.bench_measure import fresh_lab, group_config, measure, run_daemon, wait_reachable
from tools.bench_model import Metric, Results, Sample, Test
from vnicbond.lab import DATA_V4, PEER_V4, PREFIX_V4, Bond, Lab, PingLog, ping_stream, stop

TARGET_LOAD = Metric("target-pps", "probes the target answers a second", tcp=False,
                     outbound=True, unit="pps", lower_is_better=True)
STANDBY_DETECT = Metric("standby-detect", "standby silently cut: until reported failed",
                        tcp=False, outbound=False, unit="ms", lower_is_better=True)
CUT_GAP = Metric("cut-gap", "active silently cut: longest ping gap", tcp=False,
                 outbound=False, unit="ms", lower_is_better=True)
PROBING_METRICS: tuple[Metric, ...] = (TARGET_LOAD, STANDBY_DETECT, CUT_GAP)
PROBING_MODES: tuple[str, ...] = ("test-addresses", "transitive")
FDT = "300ms"
#: Seconds the probes are counted over.
COUNT_FOR = 5.0


def _wait(what: str, predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    print(f"  timed out waiting for {what}", flush=True)
    return False


def _members(bond: Bond) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in bond.status()["members"]}


def _probes_ok(bond: Bond) -> bool:
    return all(m["probe"] == "ok" and m["state"] != "failed" for m in _members(bond).values())


def target_load(lab: Lab, bond: Bond, seconds: int) -> list[Sample]:
    def sent() -> int:
        return sum(t["sent"] for t in bond.status()["targets"] if t["target"] == PEER_V4)

    before, start = sent(), time.monotonic()
    time.sleep(COUNT_FOR)
    after, took = sent(), time.monotonic() - start
    modes = sorted({m["target_mode"] for m in _members(bond).values()})
    return [Sample((after - before) / took, f"{after - before} probes in {took:.1f} s; "
                                            f"members {', '.join(modes)}")]


def standby_detect(lab: Lab, bond: Bond, seconds: int) -> list[Sample]:
    seq = max((e["seq"] for e in bond.events()), default=0)
    cut_at = time.time()
    lab.cut(1)
    found = _wait("m1 to fail", lambda: _members(bond)["m1"]["state"] == "failed")
    reason = _members(bond)["m1"]["reason"]
    failed = [e for e in bond.events(seq) if e["kind"] == "member" and e["member"] == "m1"
              and e["state"] == "failed"]
    lab.uncut(1)
    _wait("m1 repaired", lambda: _probes_ok(bond))
    if not found or not failed:
        return [Sample(None, "m1 was not reported failed")]
    return [Sample(failed[0]["time"] - cut_at, f"reason: {reason}")]


def cut_gap(lab: Lab, bond: Bond, seconds: int) -> list[Sample]:
    log = bond.path.parent / "cut.ping"
    with open(log, "w") as out:
        ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, output=out)
        try:
            time.sleep(1.0)
            lab.cut(0)
            moved = _wait("failover to m1", lambda: bond.active() == "m1")
            time.sleep(1.5)
        finally:
            stop(ping, signal.SIGINT)
            lab.uncut(0)
    pings = PingLog.parse(log.read_text())
    if not moved or pings.transmitted is None or pings.received is None:
        return [Sample(None, "no failover, or ping gave no usable output")]
    lost = pings.transmitted - pings.received
    return [Sample(pings.longest_gap(), f"{lost} of {pings.transmitted} pings lost")]


def _test(metric: Metric, fn: Callable[[Lab, Bond, int], list[Sample]]) -> Test:
    def run(lab: Lab, bond: Bond | None, seconds: int) -> list[Sample]:
        assert bond is not None
        return fn(lab, bond, seconds)

    return Test((metric,), run)


TESTS: tuple[Test, ...] = (_test(TARGET_LOAD, target_load),
                           _test(STANDBY_DETECT, standby_detect), _test(CUT_GAP, cut_gap))


def run_probing(mode: str, seconds: int, results: Results, tag: str) -> None:
    """A fresh lab, the daemon in active-backup on m0 and m1, FDT 300 ms, probing as ``mode``
    says; the three measurements."""
    with fresh_lab() as (lab, workdir):
        group = group_config(lab.members, [f"{DATA_V4}/{PREFIX_V4}"])
        group["failure_detection_time"] = FDT
        group["probe"] = {"targets": [PEER_V4]}
        if mode == "test-addresses":
            for i, member in enumerate(group["members"]):
                member["test_address"] = f"198.18.0.{21 + i}/{PREFIX_V4}"

        def body(bond: Bond) -> None:
            wait_reachable(lab)
            _wait("every probe answered", lambda: _probes_ok(bond))
            measure(lab, mode, seconds, results, tag, bond, TESTS)

        run_daemon(lab, workdir, group, results, tag, body)
