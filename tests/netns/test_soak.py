"""The soak benchmark's short version: one minute of iperf3 load and a fault every 7.5 s.

``tools/soak --minutes 1 --interval 7.5 --json --no-record`` makes eight faults, each of the
four kinds twice (link pull, silent cut, admin offline, reload); the first cycle of four is
its warm-up, the second is measured. The full ten-minute run is ``tools/soak`` (it records
its figures in docs/benchmarks.md); this test only reads the JSON it prints.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--minutes", "1", "--interval", "7.5", "--json", "--no-record"]
#: About 75 s of work; generous, since the machine is shared.
TIMEOUT = 400
KINDS = ("link-pull", "silent-cut", "offline", "reload")
#: Lost 10 ms pings per fault (its failover and its failback together).
MAX_LOST = {
    "link-pull": 5,
    "offline": 5,
    "reload": 5,
    # FDT 300 ms / 10 ms, plus some: a silent cut is only seen by the probes.
    "silent-cut": 300 // 10 + 15,
}


def run_soak() -> tuple[dict[str, Any], str]:
    """Run the short soak; its JSON document and its progress output (stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tools.soak", *ARGS], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it stops its processes and removes its lab
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(f"tools/soak did not finish in {TIMEOUT} s:\n{err}") from None
    lines = out.strip().splitlines()
    assert lines, f"tools/soak printed no JSON (exit {proc.returncode}):\n{err}"
    doc = json.loads(lines[-1])
    assert proc.returncode in (0, 1), f"tools/soak could not run:\n{err}"
    return doc, err


def test_short_soak_keeps_connections_and_resources() -> None:
    doc, log = run_soak()
    checks = {c["name"]: c for c in doc["checks"]}

    # The daemon lived through it and stopped cleanly.
    assert doc["daemon"]["alive_at_end"], log
    assert doc["daemon"]["exit"] == 0, log
    assert not doc["daemon"]["traceback_in_log"], log

    # No lost TCP connection: iperf3 --bidir ran its whole time, data both ways.
    iperf = doc["iperf3"]
    assert iperf["ok"], (iperf, log)
    assert iperf["exit"] == 0 and iperf["error"] is None, log
    assert iperf["out_bytes"] > 0 and iperf["in_bytes"] > 0, log

    # Every kind of fault happened (twice), and each was repaired within its slot.
    faults = doc["faults"]
    assert [f["kind"] for f in faults] == list(KINDS) * 2, log
    assert all(f["error"] is None for f in faults), log
    assert all(f["recovered_ms"] is not None for f in faults), log

    # Each link pull, silent cut and offline made one failover (and one failback at its
    # repair: failback is on); a reload none.
    for f in faults:
        if f["kind"] == "reload":
            assert (f["failovers_fault"], f["failovers_repair"]) == (0, 0), (f, log)
            assert f["failover_to"] is None, (f, log)
        else:
            assert (f["failovers_fault"], f["failovers_repair"]) == (1, 1), (f, log)
            assert f["member"] == "m0" and f["failover_to"] == "m1", (f, log)
    assert checks["failovers"]["ok"] and checks["faults"]["ok"], log

    # No growth between the end of the warm-up cycle and the end.
    res = doc["resources"]
    assert res["end"]["fds"] == res["start"]["fds"], (res, log)
    assert res["end"]["threads"] == res["start"]["threads"], (res, log)
    assert res["growth"]["rss_kib"] <= doc["settings"]["rss_slack_kib"], (res, log)
    assert checks["rss"]["ok"] and checks["fds"]["ok"] and checks["threads"]["ok"], log

    # Lost pings, per fault.
    for f in faults:
        assert f["lost"] <= MAX_LOST[f["kind"]], (f, log)
    assert doc["ping"]["lost_before_first_fault"] == 0, (doc["ping"], log)

    assert doc["verdict"] == "PASS", log
