"""Fuzz the bond with hostile and broken frames, from the wire and from the host.

Two senders, each an AF_PACKET socket writing frames built here byte by byte (``struct``
only; the frames are deterministic given ``--seed``):

* **peer side**: on the peer's ``p0`` (run inside the peer namespace), so frames cross the
  lab's switch and arrive on the members as anything from the LAN would: on the active
  member, a standby or a failed one (broadcast, multicast and unknown unicast reach them all);
* **TAP side**: on the group's TAP (``ipmp0``, in the host namespace) with ``PACKET_VNET_HDR``,
  so frames enter the TAP's queue as the host's own stack would put them there, each behind
  a virtio-net header (bogus ones included); the daemon reads them and sends them out.

Peer-side classes (aimed at the group's MAC, each member's own MAC, broadcast, multicast and
random unicast): ``runt`` (14-20 bytes; below 14 the kernel refuses to send), ``trunc-l3``
(IPv4/IPv6/ARP headers cut short), ``ipv4-ihl`` (IHL below 5 or past the frame's end),
``ipv4-len`` (lying total length, odd fragment fields), ``ipv6-ext`` (long, looping and
truncated extension-header chains, lying payload length), ``arp-odd`` (odd hardware/protocol
types, lengths and opcodes, at the test and data addresses), ``icmp`` and ``icmp6`` (every
type in turn with varied codes, at each member's test address through its own MAC and at the
data address), ``probe-forgery`` (echo replies that look like answers to the members' probes:
right addresses, random identifier and payload), ``nd-bad`` (neighbour solicitations and
advertisements with broken options, for the data and test addresses), ``jumbo`` (above the
group's MTU up to the wire's; above the wire's the kernel refuses them), ``gso-wire``
(virtio-net headers from the wire: TCP super-frames, and headers with a GSO size of 0, 1 or
65535, checksum offsets past the end, lying header lengths, odd GSO types and flags),
``garbage`` (random bytes behind a random EtherType, VLAN tags included); and halfway a
``flood`` sent as fast as the socket goes (``--flood`` frames): broadcast ARP requests for
the IPv4 test addresses, the data address and a junk address, and neighbour solicitations
for the IPv6 test address.

TAP-side classes: ``tap-runt`` (1-20 bytes: below 14 the kernel refuses them), ``tap-garbage``,
``tap-trunc-l3``, ``tap-ipv4-ihl``, ``tap-ipv4-len``, ``tap-ipv6-ext``, ``tap-arp-odd``,
``tap-nd-bad`` (as above, to the peer and broadcast), ``tap-oversize`` (above the TAP's MTU
without GSO), ``tap-vnet-bogus`` (the lying virtio-net headers above) and ``tap-gso``
(well-formed TCP super-frames). The kernel refuses many at send (EINVAL, EMSGSIZE): the
senders count what it took and what it refused, per class.

The frames never poison the lab: every peer-side frame has the peer's MAC as source, every
TAP-side one the group's; ARP and neighbour discovery that parses carries "junk" sender
addresses (198.18.0.200-209, 2001:db8::200-209) and never gives a real address another MAC;
no TCP segment uses the transfers' ports. (The ``spoof`` sender, used by the tests, does lie
on purpose: :func:`~tools.fuzz_gen.spoof_frames`.)

``tools/fuzz --lab`` builds a fresh lab (``vnicbond.lab.Lab``: ``--members``, default 2;
wire MTU ``--wire-mtu``, default 9000, with the group's MTU 1500; ``--failed N`` fails the
last N members first, by a one-way cut), starts ``vnicbond run`` (``--mode``, default
active-backup) probing the peer 198.18.0.2 and 2001:db8::2 by ICMP from the test addresses
198.18.0.21, 2001:db8::22, 198.18.0.23, ... (FDT 1 s: :func:`probing`), with metrics on
127.0.0.1:9469 in the host namespace; runs a 10 ms ping from the peer to 198.18.0.10 and two
paced TCP transfers of a fixed size (host to peer and peer to host, 20 Mbit/s each, every
byte hashed at both ends: :mod:`vnicbond.lab.xfer`); fuzzes from both sides for
``--seconds`` at ``--rate`` frames a second per side; and prints a report: per class what
was sent and what the kernel refused; the daemon's counter deltas and the kernel's drops on
the lab's links; the accounting checks (:func:`~tools.fuzz_account.account`); ping loss;
the transfers; the slowest status answer while fuzzing; whether the daemon is alive; its
RSS before and after. It exits 1 if a check failed; ``--json`` prints the whole result as
JSON. In ``load-spread`` mode the two checks that only hold in active-backup are left out.

The lab's switch runs with ``bridge-nf-call-*tables`` off (:func:`prepare_lab`): with
``br_netfilter`` loaded, Linux's bridge validates IPv4/IPv6 headers and drops malformed
frames before they reach the members, which a real switch does not.

The fuzzer is this module (the command line, the run on a lab, the report) and its parts:
tools/fuzz_frames.py (the byte-by-byte builders: the independent check of vnicbond/wire, so
they never use it), tools/fuzz_gen.py (the frame classes), tools/fuzz_send.py (the senders,
run inside the lab's namespaces) and tools/fuzz_account.py (snapshots, metrics and the
accounting). As a library (``tests/netns/test_fuzz.py`` imports it): :func:`prepare_lab`,
:func:`probing`, :func:`fail_members`, :func:`discover`, :func:`fuzz_running_bond` (ping,
transfers, both senders, snapshots and the accounting), :func:`run_senders`,
:func:`fetch_metrics`, :func:`metrics_check`, :func:`format_report`, :func:`sent_to`,
:func:`answers`.

Needs root, ``ip``, ``ping`` and ``sysctl``. Run it as ``tools/fuzz`` (from the repository,
``.venv/bin/python -m tools.fuzz``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tools.fuzz_account import (
    METRICS_LISTEN,
    Check,
    StatusWatch,
    account,
    answers,
    ask,
    deltas,
    discover,
    fetch_metrics,
    metrics_check,
    sent_to,
    snapshot,
)
from tools.fuzz_gen import GROUP, TRANSFER_PORTS
from tools.fuzz_send import SETTLE, run_senders
from vnicbond.lab import (
    DATA_V4,
    DATA_V6,
    PEER_V4,
    PEER_V6,
    Bond,
    BondError,
    Lab,
    PingLog,
    ping_stream,
    stop,
    wait_ping,
    xfer,
)

PING_INTERVAL = 0.01

__all__ = ["METRICS_LISTEN", "answers", "discover", "fail_members", "fetch_metrics",
           "format_report", "fuzz_running_bond", "metrics_check", "prepare_lab", "probing",
           "run_senders", "sent_to"]


# -- the whole run on a fresh lab ---------------------------------------------------------------
def fail_members(lab: Lab, sock: str, count: int) -> list[str]:
    """Fail the last ``count`` members by a one-way cut at the switch: what they send is
    dropped (their probes go unanswered) while what the switch sends them still arrives, so
    the fuzz reaches failed members too. Waits until status reports them failed."""
    names = [lab.member(i) for i in range(lab.members - count, lab.members)]
    for name in names:
        lab.cut(int(name[1:]), "out")

    def failed() -> bool:
        members = ask(sock, "status")["groups"][0]["members"]
        return all(m["state"] == "failed" for m in members if m["name"] in names)

    lab.wait_for(failed, timeout=15, what=f"{', '.join(names)} to fail")
    return names


def prepare_lab(lab: Any) -> None:
    """Make the lab's switch forward malformed frames as a real one does: without
    ``br_netfilter``'s header checks (set per namespace, only in the switch's)."""
    lab.ns(lab.switch, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0",
           "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0",
           check=False)


def probing(lab: Any) -> dict[str, Any]:
    """Group settings: ICMP probes of the peer, FDT 1 s (a busy machine is no reason to
    fail a member); member i probes from 198.18.0.(21+i), except m1, which probes over IPv6
    from 2001:db8::22, so the fuzz meets an IPv6 test address too."""
    return {
        "failure_detection_time": "1s",
        "probe": {"method": "icmp", "targets": [PEER_V4, PEER_V6]},
        "members": [{"name": lab.member(i),
                     "test_address": f"2001:db8::{21 + i}/64" if i == 1
                     else f"198.18.0.{21 + i}/24"} for i in range(lab.members)],
    }


def lab_config(lab: Lab, sock: str, metrics: str | None = METRICS_LISTEN,
               mode: str = "active-backup") -> dict[str, Any]:
    """The daemon's configuration for the lab: :func:`probing`, group MTU 1500, metrics in
    the host namespace."""
    config: dict[str, Any] = {
        "control": {"socket": sock},
        "log_level": "info",
        "groups": [{
            "name": GROUP,
            "mode": mode,
            "mtu": 1500,
            "addresses": [f"{DATA_V4}/24", f"{DATA_V6}/64"],
            **probing(lab),
        }],
    }
    if metrics:
        config["metrics"] = {"listen": metrics}
    return config


def _ping_stats(out: str, window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Totals of a ``ping -D`` run; lost requests dated from the replies around them (by
    sequence number) and counted ``in_window`` if they fall in ``window`` (wall clock)."""
    log = PingLog.parse(out, PING_INTERVAL)
    if log.transmitted is None or log.received is None:
        return {"error": out[-300:]}
    lost_at = log.lost_times(trailing=True)
    in_window = sum(1 for t in lost_at if window and window[0] <= t <= window[1])
    return {"sent": log.transmitted, "received": log.received,
            "lost": log.transmitted - log.received, "lost_in_flood": in_window,
            "max_rtt_ms": log.max_rtt_ms, "duplicates": log.duplicates}


def start_transfers(lab: Lab, nbytes: int, bps: int) -> dict[str, xfer.Transfer]:
    """Two TCP transfers through the bond at once, ``nbytes`` each at ``bps``: host -> peer
    (out through the TAP) and peer -> host (in through the members)."""
    transfers: dict[str, xfer.Transfer] = {}
    try:
        transfers["out"] = xfer.start(lab, lab.peer, lab.host, PEER_V4, TRANSFER_PORTS[0],
                                      nbytes, bps)
        transfers["in"] = xfer.start(lab, lab.host, lab.peer, DATA_V4, TRANSFER_PORTS[1],
                                     nbytes, bps)
    except BaseException:
        stop_transfers(transfers)
        raise
    return transfers


def stop_transfers(transfers: dict[str, xfer.Transfer]) -> None:
    """Stop the transfers' processes (on an error: they are not waited for)."""
    for transfer in transfers.values():
        transfer.stop()


def transfer_result(transfers: dict[str, xfer.Transfer], nbytes: int) -> dict[str, Any]:
    """Wait for both transfers: per direction, completed (the server read exactly what the
    client sent, same digest), bytes, seconds, or the error."""
    result: dict[str, Any] = {"requested": nbytes}
    for name, transfer in transfers.items():
        result[name] = transfer.result()
    result["completed"] = all(result[n]["completed"] for n in transfers)
    return result


def run_lab(args: argparse.Namespace) -> dict[str, Any]:
    """``--lab``: build a lab, run the daemon, ping, transfer and fuzz; judge and report."""
    report: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="vb-fuzz-", dir="/tmp"))
    sock = str(workdir / "ctl.sock")
    with Lab(members=args.members, mtu=args.wire_mtu) as lab:
        prepare_lab(lab)
        bond = Bond.in_workdir(lab, workdir, lab_config(lab, sock, mode=args.mode))
        try:
            bond.start(timeout=30)
            wait_ping(lab, lab.peer, DATA_V4)
            lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                         timeout=10, what="every member's probes answered")
            fail_members(lab, sock, args.failed)
            report.update(fuzz_running_bond(lab, sock, args.seconds, args.rate, args.seed,
                                            args.flood, daemon_proc=bond.proc))
            m1 = fetch_metrics(lab)
            st = bond.status()
            m2 = fetch_metrics(lab)
            report["checks"].append(asdict(metrics_check(st, m1, m2)))
        finally:
            with contextlib.suppress(BondError):
                if bond.proc is not None:
                    bond.stop(timeout=20)
            report["daemon_exit"] = bond.returncode
            text = bond.logs()
            report["daemon_tracebacks"] = text.count("Traceback")
            report["daemon_log_tail"] = text.splitlines()[-15:]
    report["checks"].append(asdict(Check("daemon exited 0, no traceback",
                                         report["daemon_exit"] == 0
                                         and report["daemon_tracebacks"] == 0,
                                         f"exit {report['daemon_exit']}, "
                                         f"{report['daemon_tracebacks']} tracebacks")))
    report["ok"] = all(c["ok"] for c in report["checks"])
    if report["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        report["workdir"] = str(workdir)
    return report


def fuzz_running_bond(lab: Lab, sock: str, seconds: float, rate: float, seed: int,
                      flood: int, daemon_proc: subprocess.Popen[str] | None = None,
                      transfer_rate: int = 20_000_000) -> dict[str, Any]:
    """Ping, transfer and fuzz a running bond; the report with its ``checks``."""
    ctx = discover(lab, sock)
    margin = 4.0
    pings = int((seconds + 6) * 100)
    nbytes = int(transfer_rate / 8 * (seconds + margin)) // xfer.CHUNK * xfer.CHUNK
    transfers = start_transfers(lab, nbytes, transfer_rate)
    try:
        ping = ping_stream(lab, lab.peer, DATA_V4, PING_INTERVAL, pings)
    except BaseException:
        stop_transfers(transfers)
        raise
    try:
        time.sleep(margin / 2)
        before = snapshot(lab, sock)
        with StatusWatch(sock) as watch:
            results = run_senders(lab, ctx, seconds, rate, seed, flood)
        time.sleep(1.0)
        after = snapshot(lab, sock)
        events = [e for e in ask(sock, "events") if e["seq"] > before["last_event"]]
    except BaseException:
        stop_transfers(transfers)
        stop(ping)
        raise
    transfer = transfer_result(transfers, nbytes)
    try:
        out, _ = ping.communicate(timeout=pings * 0.02 + 60)
    except subprocess.TimeoutExpired:
        ping.send_signal(signal.SIGINT)
        out, _ = ping.communicate(timeout=10)
    flood_info = results["peer"].get("flood") or {}
    window = ((flood_info["start"] - 0.05, flood_info["end"] + SETTLE)
              if flood_info.get("start") else None)
    ping_stats = _ping_stats(out, window)
    checks = account(ctx, before, after, results, events)
    alive = (daemon_proc is None or daemon_proc.poll() is None) and answers(sock)
    checks.insert(0, Check("daemon alive and answering", alive and not watch.failures,
                           f"{watch.answers} status answers during the fuzz, slowest "
                           f"{watch.slowest * 1000:.0f} ms, failures: "
                           f"{watch.failures[:3] or 'none'}"))
    # Outside the flood, nothing may be lost. A flood beyond what the daemon drains (the
    # machine busy with other work) overflows the active member's socket buffer or the TAP's
    # queue: pings lost in the flood are allowed only up to the drops counted there.
    d = deltas(before, after)
    absorbed = (d["members"][ctx.active]["drops"]["kernel"]
                + d["links"].get(GROUP, {}).get("tx_dropped", 0))
    lost, in_flood = ping_stats.get("lost"), ping_stats.get("lost_in_flood", 0)
    checks.append(Check("ping lost nothing (but to a counted flood overflow)",
                        lost is not None and lost - in_flood == 0 and in_flood <= absorbed
                        and not ping_stats.get("duplicates"),
                        f"{ping_stats}; drops counted in the flood: {ctx.active} kernel + "
                        f"{GROUP} queue = {absorbed}"))
    checks.append(Check("transfer completed", bool(transfer["completed"]),
                        f"{transfer}"))
    return {"seed": seed, "seconds": seconds, "rate": rate, "flood": flood,
            "ctx": asdict(ctx), "results": results, "deltas": deltas(before, after),
            "ping": ping_stats, "transfer": transfer,
            "rss_kib": {"before": before["rss_kib"], "after": after["rss_kib"]},
            "status_watch": {"answers": watch.answers,
                             "slowest_ms": round(watch.slowest * 1000, 1)},
            "checks": [asdict(c) for c in checks]}


# -- the report ---------------------------------------------------------------------------------
def format_report(report: dict[str, Any]) -> str:
    """The run's report as text: what was sent, what the daemon counted, the checks."""
    lines = [f"vnicbond fuzz: seed {report['seed']}, {report['seconds']} s at "
             f"{report['rate']} frames/s per side, flood {report['flood']}"]
    results = report.get("results", {})
    for side in ("peer", "tap"):
        r = results.get(side)
        if not r:
            continue
        lines.append("")
        lines.append(f"{side} side ({r['seconds']} s"
                     + (f", flood {r['flood']['frames']} in {r['flood']['seconds']} s"
                        if r.get("flood") else "") + (f", {r['skipped']} not sent in time"
                                                       if r.get("skipped") else "") + ")")
        lines.append(f"  {'CLASS':<16}{'SENT':>8}  {'BY DESTINATION':<58} REFUSED AT SEND")
        for cls in sorted(set(r["sent"]) | set(r["refused"])):
            by_dest = r["sent"].get(cls, {})
            refused = r["refused"].get(cls, {})
            lines.append(f"  {cls:<16}{sum(by_dest.values()):>8}  "
                         f"{' '.join(f'{k}:{v}' for k, v in sorted(by_dest.items())):<58} "
                         f"{' '.join(f'{k}:{v}' for k, v in sorted(refused.items())) or '-'}")
        lines.append(f"  {'total':<16}{sent_to(r):>8}  refused "
                     f"{sum(sum(v.values()) for v in r['refused'].values())}")
    d = report.get("deltas")
    if d:
        lines.append("")
        lines.append("daemon counters (after - before)")
        for name, m in d["members"].items():
            drops = " ".join(f"{k}:{v}" for k, v in m["drops"].items() if v)
            control = " ".join(f"{k}:{v}" for k, v in m["control"].items() if v)
            lines.append(f"  {name}: rx_packets +{m['rx_packets']} tx_packets "
                         f"+{m['tx_packets']}; drops {drops or '-'}; control {control or '-'}")
        lines.append(f"  tap_drops {d['tap_drops']}, failovers +{d['failovers']}, answers "
                     f"rate limited +{d['answers_rate_limited']}")
        kernel = {n: {k: v for k, v in s.items() if "dropped" in k and v}
                  for n, s in d["links"].items()}
        lines.append("  kernel drops on lab links: "
                     + (", ".join(f"{n} {s}" for n, s in kernel.items() if s) or "none"))
    if "ping" in report:
        lines.append("")
        lines.append(f"ping (10 ms, peer -> data address): {report['ping']}")
        lines.append(f"transfers (TCP, hashed): {report['transfer']}")
        lines.append(f"status while fuzzing: {report['status_watch']}")
        rss = report["rss_kib"]
        lines.append(f"daemon RSS: {rss['before']} KiB before, {rss['after']} KiB after")
    lines.append("")
    for c in report.get("checks", []):
        lines.append(f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}")
    lines.append("")
    exit_status = (f"daemon exit status {report['daemon_exit']}; "
                   if "daemon_exit" in report else "")
    lines.append(f"{exit_status}result: {'PASS' if report.get('ok') else 'FAIL'}"
                 + (f" (kept {report['workdir']})" if report.get("workdir") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``tools/fuzz --lab ...``: 0 if every check passed, 1 if one failed, 2 without root."""
    parser = argparse.ArgumentParser(prog="fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", action="store_true",
                        help="build a lab, run the daemon, fuzz it and report")
    parser.add_argument("--seconds", type=float, default=20.0, help="fuzzing time (default 20)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="frames a second per side (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--flood", type=int, default=20000,
                        help="frames in the peer's flood burst (default 20000)")
    parser.add_argument("--members", type=int, default=2, help="lab members (default 2)")
    parser.add_argument("--mode", choices=("active-backup", "load-spread"),
                        default="active-backup", help="the group's mode (default active-backup)")
    parser.add_argument("--failed", type=int, default=0,
                        help="fail this many of the last members before fuzzing, by a "
                             "one-way cut (default 0)")
    parser.add_argument("--wire-mtu", type=int, default=9000,
                        help="the lab's link MTU (the group's is 1500; default 9000)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if not args.lab:
        parser.error("nothing to do: use --lab")
    if os.geteuid() != 0:
        print("fuzz: needs root (network namespaces)", file=sys.stderr)
        return 2
    report = run_lab(args)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
