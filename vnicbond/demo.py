"""The demo: a throwaway namespace lab, the bond on ``configs/demo.yaml``, a pulled cable.

It builds the lab, starts ``vnicbond run`` in the lab's host namespace, pings the data
address from the peer every 10 ms, pulls the active member's link, then plugs it back in,
and prints who took over and how long traffic stopped each time. The lab is removed at the
end whatever happens (``--keep`` leaves it for inspection).
"""

from __future__ import annotations

import argparse
import itertools
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vnicbond.config import ConfigError, load_config
from vnicbond.control import ControlError, request
from vnicbond.lab import DATA_V4, PEER_V4, Lab
from vnicbond.views import format_status

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
INTERVAL = 0.01
_REPLY = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=\d+")


def _say(text: str) -> None:
    print(text, flush=True)


def _status(sock: str) -> dict[str, Any]:
    return request(sock, "status")


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ControlError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def outage(ping_output: str) -> tuple[float, int, int]:
    """(longest gap between replies in ms, replies lost, probes sent) from ``ping -D``."""
    stamps: list[float] = []
    for line in ping_output.splitlines():
        m = _REPLY.match(line)
        if m:
            stamps.append(float(m.group(1)))
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", ping_output)
    transmitted = int(sent.group(1)) if sent else 0
    received = int(sent.group(2)) if sent else len(stamps)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    longest = max(gaps, default=0.0) * 1000
    return longest, transmitted - received, transmitted


def _fault(lab: Lab, sock: str, member_index: int, up: bool, label: str) -> None:
    ping = lab.popen(lab.peer, "ping", "-D", "-n", "-i", str(INTERVAL), "-c", "300", "-W", "1",
                     DATA_V4)
    time.sleep(1.0)
    before = _status(sock)["groups"][0]["active"]
    (lab.link_up if up else lab.link_down)(member_index)
    out, _ = ping.communicate(timeout=30)
    after = _status(sock)["groups"][0]
    gap, lost, sent = outage(out)
    _say(f"  {label}: active {before} -> {after['active']}; longest gap between replies "
         f"{gap:.0f} ms (a reply every {INTERVAL * 1000:.0f} ms), {lost} of {sent} lost")


def main(args: argparse.Namespace) -> int:
    """Run the demo; 0 if the bond failed over, 1 otherwise."""
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    try:
        config = load_config(str(path))
    except ConfigError as e:
        print(f"vnicbond demo: {e}", file=sys.stderr)
        return 2
    group = config.groups[0]
    sock = config.control.socket
    lab = Lab(members=len(group.members))
    daemon: subprocess.Popen[str] | None = None
    log_path = Path("/tmp") / f"{lab.prefix}-daemon.log"
    _say(f"vnicbond demo: lab {lab.prefix}-{{host,sw,peer}}, config {path}")
    try:
        lab.build()
        with open(log_path, "w") as log:
            daemon = lab.popen(lab.host, sys.executable, "-m", "vnicbond", "run", "-c", str(path),
                               stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _status(sock), 20, "the daemon to answer")
        _wait(lambda: lab.ping_ok(lab.peer, DATA_V4, timeout=0.5), 15, "the data address")
        st = _status(sock)["groups"][0]
        _say(f"  bond {group.name} up: addresses "
             f"{', '.join(a['address'] for a in st['addresses'])}, active {st['active']}, "
             f"members {', '.join(m['name'] for m in st['members'])}")
        ok = lab.ping_ok(lab.host, PEER_V4)
        _say(f"  host -> peer {PEER_V4}: {'ok' if ok else 'FAILED'}")
        active = st["active"]
        index = [m.name for m in group.members].index(active)
        _say(f"  pulling {active}'s cable while the peer pings {DATA_V4} every 10 ms ...")
        _fault(lab, sock, index, up=False, label="link down")
        st = _status(sock)["groups"][0]
        moved = st["active"] != active and st["active"] is not None
        _say(f"  plugging {active} back in (failback: {str(group.failback).lower()}) ...")
        _fault(lab, sock, index, up=True, label="link up")
        _say("")
        _say(format_status(_status(sock)))
        _say("")
        _say("  daemon log:")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
        for line in log_path.read_text().splitlines():
            _say("    " + line)
        _say(f"  result: {'failover worked' if moved else 'NO FAILOVER'}; "
             f"daemon exited {daemon.returncode}")
        return 0 if moved and daemon.returncode == 0 else 1
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            daemon.wait(10)
        if args.keep:
            _say(f"  lab kept: ip netns del {lab.host} {lab.switch} {lab.peer} to remove it; "
                 f"daemon log {log_path}")
        else:
            lab.destroy()
            log_path.unlink(missing_ok=True)  # its lines were printed above
