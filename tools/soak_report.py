"""The soak's verdict and report (``tools/soak``, see tools/soak.py): the checks a finished
run must pass, its JSON document, and that document as text for the terminal and for
docs/benchmarks.md. It runs nothing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from typing import Any

from tools import ROOT
from tools.soak_run import FDT, KINDS, PING_INTERVAL, Soak, say
from vnicbond.lab.results import command_line, machine, markdown_table, text_table

RSS_SLACK_MIB = 2.0
RSS_SLACK_RATIO = 0.05


# -- the verdict ------------------------------------------------------------------------------
def rss_slack_kib(soak: Soak) -> int:
    """How far the daemon's RSS may grow from start to end: 2 MiB or 5 % of start."""
    start = soak.start_sample.rss_kib if soak.start_sample else 0
    return int(max(RSS_SLACK_MIB * 1024, start * RSS_SLACK_RATIO))


def checks(soak: Soak) -> list[tuple[str, bool, str]]:
    """(name, passed, detail) for every judged property."""
    checks = []
    s, e = soak.start_sample, soak.end_sample
    if s and e:
        growth, slack = e.rss_kib - s.rss_kib, rss_slack_kib(soak)
        checks.append(("rss", growth <= slack,
                       f"{s.rss_kib / 1024:.2f} -> {e.rss_kib / 1024:.2f} MiB "
                       f"({growth / 1024:+.2f} MiB; allowed +{slack / 1024:.2f} MiB)"))
        checks.append(("fds", s.fds == e.fds, f"{s.fds} -> {e.fds}"))
        checks.append(("threads", s.threads == e.threads, f"{s.threads} -> {e.threads}"))
    else:
        checks.append(("samples", False, "no start or end sample"))
    ip = soak.iperf
    stalls = ip.get("stalled_seconds", [])
    checks.append(("tcp", bool(ip.get("ok")),
                   f"iperf3 exit {ip.get('exit')}, error {ip.get('error')}, "
                   f"{ip.get('out_seconds', 0):.0f}/{ip.get('in_seconds', 0):.0f} s "
                   f"of {soak.iperf_seconds} s out/in, {len(stalls)} stalled 1-s intervals"))
    failback = soak.failback
    wrong = [f"#{f.index} {f.kind}: {f.failovers_fault}+{f.failovers_repair}, expected "
             "{}+{}".format(*f.expected(failback))
             for f in soak.faults if (f.failovers_fault, f.failovers_repair)
             != f.expected(failback)]
    checks.append(("failovers", not wrong and bool(soak.faults),
                   "; ".join(wrong) or "as expected for every fault"))
    errors = [f"#{f.index} {f.kind}: {f.error}" for f in soak.faults if f.error]
    kinds = {f.kind for f in soak.faults if not f.error}
    missing = [k for k in KINDS if k not in kinds]
    if missing:
        errors.append("never made: " + ", ".join(missing))
    checks.append(("faults", not errors,
                   "; ".join(errors) or f"{len(soak.faults)} made and repaired"))
    checks.append(("daemon", soak.alive_at_end and soak.exit_status == 0
                   and not soak.traceback_in_log,
                   f"alive at the end: {soak.alive_at_end}, exit on SIGTERM: "
                   f"{soak.exit_status}, traceback in log: {soak.traceback_in_log}"
                   f", warning/error lines: {soak.log_warnings}"))
    return checks


def by_kind(soak: Soak) -> dict[str, dict[str, Any]]:
    """Per kind of fault: how often, failovers, lost pings, failover times."""
    summary = {}
    for kind in KINDS:
        faults = [f for f in soak.faults if f.kind == kind]
        lost = [f.lost for f in faults]
        times = [f.failover_ms for f in faults if f.failover_ms is not None]
        summary[kind] = {
            "count": len(faults),
            "failovers": sum(f.failovers_fault for f in faults),
            "failbacks": sum(f.failovers_repair for f in faults),
            "lost_total": sum(lost),
            "lost_fault": sum(f.lost_fault for f in faults),
            "lost_repair": sum(f.lost_repair for f in faults),
            "lost_median": statistics.median(lost) if lost else None,
            "lost_max": max(lost) if lost else None,
            "failover_ms_median": round(statistics.median(times), 1) if times else None,
            "failover_ms_max": max(times) if times else None,
        }
    return summary


def document(soak: Soak, checks: list[tuple[str, bool, str]]) -> dict[str, Any]:
    """The run's JSON document: verdict, settings, resources, faults, ping, iperf3, checks."""
    s, e = soak.start_sample, soak.end_sample
    log = soak.ping_log
    transmitted = log.transmitted or (max(log.replies) if log.replies else 0)
    return {
        "verdict": "PASS" if all(ok for _, ok, _ in checks) else "FAIL",
        "command": command_line(ROOT),
        "machine": machine(),
        "settings": {"minutes": soak.args.minutes, "interval_s": soak.args.interval,
                     "faults": soak.slots, "fdt": FDT, "failback": soak.failback,
                     "rate_mbit": soak.args.rate, "ping_interval_ms": PING_INTERVAL * 1000,
                     "rss_slack_kib": rss_slack_kib(soak)},
        "duration_s": round(time.monotonic() - soak.started, 1),
        "daemon": {"pid": soak.bond.daemon_pid() if soak.bond.proc else None,
                   "alive_at_end": soak.alive_at_end, "exit": soak.exit_status,
                   "traceback_in_log": soak.traceback_in_log,
                   "warning_lines": soak.log_warnings},
        "resources": {
            "baseline": asdict(soak.baseline) if soak.baseline else None,
            "start": asdict(s) if s else None,
            "end": asdict(e) if e else None,
            "growth": {"rss_kib": e.rss_kib - s.rss_kib, "fds": e.fds - s.fds,
                       "threads": e.threads - s.threads} if s and e else None,
        },
        "samples": [asdict(x) for x in soak.samples],
        "faults": [{**{k: v for k, v in asdict(f).items()
                       if k not in ("at", "repaired_at", "ended_at")},
                    "lost": f.lost} for f in soak.faults],
        "by_kind": by_kind(soak),
        "ping": {"transmitted": transmitted, "received": len(log.replies),
                 "per_second": round(len(log.replies) / (max(log.replies.values())
                                                         - min(log.replies.values())), 1)
                 if len(log.replies) > 1 else None,
                 "lost": transmitted - len(log.replies), "duplicates": log.duplicates,
                 "lost_before_first_fault": soak.outside["before"],
                 "lost_after_last_slot": soak.outside["after"]},
        "iperf3": soak.iperf,
        "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks],
    }


# -- the report -------------------------------------------------------------------------------
def _n(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


def tables(doc: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The resource table and the per-kind table (headers, rows)."""
    res = doc["resources"]
    s, e, g = res["start"], res["end"], res["growth"]
    slack = doc["settings"]["rss_slack_kib"]
    rheaders = ["resource", "ready", "start", "end", "growth", "allowed"]
    b = res["baseline"] or {}
    rows = []
    if s and e and g:
        rows = [
            ["RSS", f"{b.get('rss_kib', 0) / 1024:.2f} MiB", f"{s['rss_kib'] / 1024:.2f} MiB",
             f"{e['rss_kib'] / 1024:.2f} MiB", f"{g['rss_kib'] / 1024:+.2f} MiB",
             f"<= +{slack / 1024:.2f} MiB"],
            ["open descriptors", str(b.get("fds", "")), str(s["fds"]), str(e["fds"]),
             f"{g['fds']:+d}", "0"],
            ["threads", str(b.get("threads", "")), str(s["threads"]), str(e["threads"]),
             f"{g['threads']:+d}", "0"],
            ["events held (history of 1000)", str(b.get("events", "")), str(s["events"]),
             str(e["events"]), f"{e['events'] - s['events']:+d}", "-"],
        ]
    kheaders = ["fault", "times", "failovers", "failbacks", "failover time median / max",
                "lost pings total", "per fault median / max"]
    krows = []
    for kind, k in doc["by_kind"].items():
        times = (f"{_n(k['failover_ms_median'])} / {_n(k['failover_ms_max'])} ms"
                 if k["failover_ms_median"] is not None else "-")
        krows.append([kind, str(k["count"]), str(k["failovers"]), str(k["failbacks"]), times,
                      f"{k['lost_total']} ({k['lost_fault']} + {k['lost_repair']})",
                      f"{_n(k['lost_median'])} / {_n(k['lost_max'])}"])
    return rheaders, rows, kheaders, krows


def iperf_line(ip: dict[str, Any]) -> str:
    if "out_bytes" not in ip:
        return f"iperf3: no result ({ip.get('error')})"
    return (f"iperf3 --bidir: out {ip['out_bits_per_second'] / 1e9:.2f} Gbit/s "
            f"({ip['out_bytes'] / 1e9:.1f} GB, {ip['out_retransmits']} retransmits), "
            f"in {ip['in_bits_per_second'] / 1e9:.2f} Gbit/s ({ip['in_bytes'] / 1e9:.1f} GB, "
            f"{ip['in_retransmits']} retransmits), {len(ip['stalled_seconds'])} 1-s intervals "
            f"with a direction stalled"
            + (f" (at {', '.join(f'{t:g}' for t in ip['stalled_seconds'][:20])} s)"
               if ip["stalled_seconds"] else ""))


def ping_line(doc: dict[str, Any]) -> str:
    p = doc["ping"]
    return (f"ping every {doc['settings']['ping_interval_ms']:g} ms ({p['per_second']} replies "
            f"a second achieved): {p['transmitted']} sent, "
            f"{p['lost']} lost ({p['lost_before_first_fault']} before the first fault, "
            f"{p['lost_after_last_slot']} after the last slot), {p['duplicates']} duplicates")


def fault_line(f: dict[str, Any]) -> str:
    what = f"{f['kind']} {f['member']}" if f["member"] else f["kind"]
    moved = (f"-> {f['failover_to']} in {f['failover_ms']:g} ms" if f["failover_to"]
             else "no failover")
    back = f", whole {f['recovered_ms'] / 1000:.2f} s after the repair" \
        if f["recovered_ms"] is not None and f["kind"] != "reload" else ""
    extra = "".join(f"; {n}" for n in f["notes"]) + (f"; ERROR {f['error']}" if f["error"]
                                                     else "")
    return (f"#{f['index']} at {f['t']:g} s: {what} {moved}, failovers {f['failovers_fault']} + "
            f"{f['failovers_repair']}{back}, lost pings {f['lost_fault']} + "
            f"{f['lost_repair']}{extra}")


def report(doc: dict[str, Any]) -> None:
    """The human-readable report."""
    set_ = doc["settings"]
    rheaders, rrows, kheaders, krows = tables(doc)
    say()
    say(f"soak: {set_['faults']} faults, one every {set_['interval_s']:g} s, FDT {set_['fdt']}, "
        f"failback {set_['failback']}; {doc['duration_s']:.0f} s in all")
    say("start = at the end of the first cycle of four faults (warm-up); end = at the end of "
        "the last slot")
    say()
    say(text_table(rheaders, rrows) if rrows else "no resource samples")
    say()
    say(text_table(kheaders, krows))
    say("(failovers: at the fault; failbacks: at its repair; lost pings: fault + repair phase)")
    say()
    say(iperf_line(doc["iperf3"]))
    say(ping_line(doc))
    say()
    for name, ok, detail in ((c["name"], c["ok"], c["detail"]) for c in doc["checks"]):
        say(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    say(doc["verdict"])


ABOUT = """\
`tools/soak` runs the bond for a long time under load and faults: a fresh two-member lab,
`vnicbond run` in active-backup with ICMP probing of the peer (FDT 300 ms, failback on),
one `iperf3 --bidir` TCP test from the host to the peer for the whole run, and a 10 ms ping
from the peer to 198.18.0.10. Every interval it faults the member that is active at that
moment, cycling through *link-pull* (its switch port down), *silent-cut* (its switch port
drops everything, carrier up), *offline* (`vnicbond offline`), and a *reload* (a second data
address and `announce.count` 4 added or removed, then `vnicbond reload` or SIGHUP); each
fault is repaired half an interval later (port up, cut lifted, `vnicbond online`). The
daemon's resident memory, open descriptors and threads are compared between *start*, at the
end of the first cycle of four faults (warm-up), and *end*, at the end of the last slot;
*ready* is when the daemon first answered, before any load. It passes if RSS grew by at
most the larger of 2 MiB and 5 %, descriptors and threads did not change, the TCP
connections survived (iperf3 ended cleanly, data both ways all along), every fault caused
exactly the expected failovers (one at the fault and, with failback, one at its repair; none
for a reload) and was repaired within its slot, and the daemon was alive at the end and
exited 0 with no traceback logged.
Lost pings are counted per fault (a missing icmp_seq counts for the slot it was sent in,
split into the fault phase and the repair phase) and reported, not judged. RSS may grow
while the daemon's event history fills: it keeps the last 1000 events (member, address,
group, carrier, config changes), about ten per fault here; driven past 1000 events
(offline/online 3000 times), the daemon's RSS rose by about 1.6 MiB and then stayed flat, so
this growth is bounded. The short version, `tests/netns/test_soak.py`, runs
`tools/soak --minutes 1 --interval 7.5 --json --no-record` and also bounds the lost pings."""


def section_text(doc: dict[str, Any]) -> str:
    info, set_ = doc["machine"], doc["settings"]
    rheaders, rrows, kheaders, krows = tables(doc)
    rate = f"{set_['rate_mbit']} Mbit/s each way" if set_["rate_mbit"] else "unlimited"
    lines = [
        "## Soak", "", ABOUT, "",
        f"- date: {info['date']}",
        f"- kernel: `{info['kernel']}`; CPU: {info['cpu']}; cores: {info['cores']}",
        f"- command: `{doc['command']}` ({set_['faults']} faults, one every "
        f"{set_['interval_s']:g} s; iperf3 rate {rate}; failback {set_['failback']}; "
        f"{doc['duration_s']:.0f} s in all)",
        f"- verdict: **{doc['verdict']}**", "",
        markdown_table(rheaders, rrows) if rrows else "No resource samples.", "",
        markdown_table(kheaders, krows), "",
        "Failovers are counted at the fault, failbacks at its repair (the group's `failovers` "
        "counter); failover time is from the fault to the `member ... -> active` event (for "
        "offline, from the start of the `vnicbond offline` command, its Python start-up "
        "included); lost pings are fault phase + repair phase.", "",
        f"- {iperf_line(doc['iperf3'])}",
        f"- {ping_line(doc)}",
        f"- daemon log: {doc['daemon']['warning_lines']} warning or error lines, traceback: "
        f"{doc['daemon']['traceback_in_log']}", "",
        "Checks:", "",
        *(f"- {'PASS' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}" for c in doc["checks"]),
        "", "Each fault:", "",
        *(f"- {fault_line(f)}" for f in doc["faults"]),
        "", "Daemon resources after each slot (s since the load started: RSS MiB / fds / "
        "threads / events held):", "",
        "- " + ", ".join(f"{x['t']:g}: {x['rss_kib'] / 1024:.2f}/{x['fds']}/{x['threads']}/"
                         f"{x['events']}" for x in doc["samples"]),
    ]
    return "\n".join(lines)
