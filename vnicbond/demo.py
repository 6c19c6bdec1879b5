"""The demo: a throwaway namespace lab, the bond on ``configs/demo.yaml``, a pulled cable.

It builds the lab (:mod:`vnicbond.lab`), starts ``vnicbond run`` in the lab's host namespace,
pings the data address from the peer every 10 ms, pulls the active member's link, then plugs
it back in, and prints who took over and how long traffic stopped each time. The lab is
removed at the end whatever happens (``--keep`` leaves it for inspection).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vnicbond.config import ConfigError, load_config
from vnicbond.lab import DATA_V4, PEER_V4, Bond, Lab, PingLog, ping_stream, wait_ping
from vnicbond.views import format_status

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
INTERVAL = 0.01


def _say(text: str) -> None:
    print(text, flush=True)


def _fault(lab: Lab, bond: Bond, member_index: int, up: bool, label: str) -> None:
    ping = ping_stream(lab, lab.peer, DATA_V4, INTERVAL, 300)
    time.sleep(1.0)
    before = bond.active()
    (lab.link_up if up else lab.link_down)(member_index)
    out, _ = ping.communicate(timeout=30)
    after = bond.active()
    log = PingLog.parse(out, INTERVAL)
    sent = log.transmitted or 0
    lost = sent - (log.received if log.received is not None else len(log.replies))
    _say(f"  {label}: active {before} -> {after}; longest gap between replies "
         f"{log.longest_gap() * 1000:.0f} ms (a reply every {INTERVAL * 1000:.0f} ms), "
         f"{lost} of {sent} lost")


def main(args: argparse.Namespace) -> int:
    """Run the demo; 0 if the bond failed over, 1 otherwise."""
    path = Path(args.config) if args.config else DEFAULT_CONFIG
    try:
        config = load_config(str(path))
    except ConfigError as e:
        print(f"vnicbond demo: {e}", file=sys.stderr)
        return 2
    group = config.groups[0]
    lab = Lab(members=len(group.members))
    bond = Bond(lab, path, config.control.socket, Path("/tmp") / f"{lab.prefix}-daemon.log")
    _say(f"vnicbond demo: lab {lab.prefix}-{{host,sw,peer}}, config {path}")
    try:
        lab.build()
        bond.start()
        wait_ping(lab, lab.peer, DATA_V4)
        st = bond.status()
        _say(f"  bond {group.name} up: addresses "
             f"{', '.join(a['address'] for a in st['addresses'])}, active {st['active']}, "
             f"members {', '.join(m['name'] for m in st['members'])}")
        ok = lab.ping_ok(lab.host, PEER_V4)
        _say(f"  host -> peer {PEER_V4}: {'ok' if ok else 'FAILED'}")
        active = st["active"]
        index = [m.name for m in group.members].index(active)
        _say(f"  pulling {active}'s cable while the peer pings {DATA_V4} every 10 ms ...")
        _fault(lab, bond, index, up=False, label="link down")
        now = bond.active()
        moved = now != active and now is not None
        _say(f"  plugging {active} back in (failback: {str(group.failback).lower()}) ...")
        _fault(lab, bond, index, up=True, label="link up")
        _say("")
        _say(format_status(bond.request("status")))
        _say("")
        _say("  daemon log:")
        code = bond.stop()
        for line in bond.logs().splitlines():
            _say("    " + line)
        _say(f"  result: {'failover worked' if moved else 'NO FAILOVER'}; "
             f"daemon exited {code}")
        return 0 if moved and code == 0 else 1
    finally:
        bond.close()
        if args.keep:
            _say(f"  lab kept: ip netns del {lab.host} {lab.switch} {lab.peer} to remove it; "
                 f"daemon log {bond.log}")
        else:
            lab.destroy()
            bond.log.unlink(missing_ok=True)  # its lines were printed above
