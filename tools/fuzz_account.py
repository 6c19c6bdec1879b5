"""What the fuzzer sees of the daemon and the lab (``tools/fuzz``), and its accounting.

Snapshots of the daemon's status, events and RSS and of the kernel's counters on every lab
link; a thread that times status answers while the fuzz runs; the Prometheus metrics; and
:func:`account`, which compares what the senders got out with what the daemon counted.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tools.fuzz_gen import GROUP, Ctx
from vnicbond.control import request
from vnicbond.lab import Lab
from vnicbond.lab.bond import usage

METRICS_LISTEN = "127.0.0.1:9469"


# -- observing the daemon and the lab -----------------------------------------------------------
def ask(sock: str, cmd: str, timeout: float = 10.0) -> Any:
    """One control request to the daemon (ControlError if it fails)."""
    return request(sock, cmd, timeout=timeout)


def discover(lab: Lab, sock: str) -> Ctx:
    """The frames' context from the running daemon (status) and the lab (MACs, MTUs)."""
    group = ask(sock, "status")["groups"][0]

    def sysfs(ns: str, path: str) -> str:
        return str(lab.ns(ns, "cat", path).stdout.strip())

    return Ctx(
        group_mac=sysfs(lab.host, f"/sys/class/net/{GROUP}/address"),
        members={m["name"]: m["mac"] for m in group["members"]},
        active=group["active"],
        tests={m["name"]: m["test_address"].split("/")[0] for m in group["members"]
               if m["test_address"]},
        peer_mac=sysfs(lab.peer, "/sys/class/net/p0/address"),
        tap_mtu=int(sysfs(lab.host, f"/sys/class/net/{GROUP}/mtu")),
        wire_mtu=int(sysfs(lab.peer, "/sys/class/net/p0/mtu")),
    )


def _link_stats(lab: Lab) -> dict[str, dict[str, int]]:
    """Kernel counters of every lab link: where frames can be lost before the daemon."""
    stats: dict[str, dict[str, int]] = {}
    for ns in (lab.host, lab.switch, lab.peer):
        for name, s in lab.link_stats(ns).items():
            stats[name] = {
                "rx_dropped": s.get("rx", {}).get("dropped", 0),
                "tx_dropped": s.get("tx", {}).get("dropped", 0),
                "tx_packets": s.get("tx", {}).get("packets", 0),
                "rx_packets": s.get("rx", {}).get("packets", 0),
            }
    return stats


def _rss_kib(pid: int) -> int | None:
    try:
        return usage(pid).rss_kib
    except (OSError, LookupError, ValueError):
        return None


def snapshot(lab: Lab, sock: str) -> dict[str, Any]:
    """The daemon's status (first group), its last event, the lab's link counters, its RSS."""
    status = ask(sock, "status")
    events = ask(sock, "events")
    return {"group": status["groups"][0], "pid": status["pid"],
            "last_event": max((e["seq"] for e in events), default=0),
            "links": _link_stats(lab), "rss_kib": _rss_kib(status["pid"]), "time": time.time()}


class StatusWatch:
    """Asks the daemon for status every ``interval`` seconds in a thread while the fuzz
    runs; reports the slowest answer and any failure (a stalled event loop shows here)."""

    def __init__(self, sock: str, interval: float = 0.1) -> None:
        self.sock = sock
        self.interval = interval
        self.slowest = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                ask(self.sock, "status", timeout=10.0)
                self.answers += 1
            except Exception as e:  # noqa: BLE001 - recorded, judged by the caller
                self.failures.append(str(e))
            self.slowest = max(self.slowest, time.monotonic() - t0)
            self._stop.wait(self.interval)


def fetch_metrics(lab: Lab, listen: str = METRICS_LISTEN) -> dict[tuple[str, tuple], float]:
    """The Prometheus metrics, as {(name, sorted label items): value}, from inside the host
    namespace."""
    text = lab.ns(lab.host, sys.executable, "-c", "import sys, urllib.request; sys.stdout.write("
                  f"urllib.request.urlopen('http://{listen}/metrics', timeout=10)"
                  ".read().decode())").stdout
    result: dict[tuple[str, tuple], float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$", line)
        if not m or line.startswith("#"):
            continue
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        result[(m.group(1), labels)] = float(m.group(4))
    return result


def answers(sock: str) -> bool:
    """Whether the daemon answers status within 2 s."""
    try:
        ask(sock, "status", timeout=2)
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


# -- accounting ---------------------------------------------------------------------------------
RX_REASONS = ("inactive", "foreign", "looped", "daemon", "runt", "oversize", "tap_write",
              "error", "kernel")
TX_REASONS = ("tx_oversize", "tx_invalid", "tx_congested", "tx_error")


@dataclass
class Check:
    """One judged property of a fuzz run."""

    name: str
    ok: bool
    detail: str


def _members(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in snap["group"]["members"]}


def deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the daemon counted between two snapshots, per member and for the TAP."""
    mb, ma = _members(before), _members(after)
    out: dict[str, Any] = {"members": {}}
    for name in ma:
        b, a = mb[name], ma[name]
        out["members"][name] = {
            "rx_packets": a["rx_packets"] - b["rx_packets"],
            "tx_packets": a["tx_packets"] - b["tx_packets"],
            "drops": {r: a["drops"].get(r, 0) - b["drops"].get(r, 0)
                      for r in (*RX_REASONS, *TX_REASONS)},
            "control": {k: a.get("control", {}).get(k, 0) - b.get("control", {}).get(k, 0)
                        for k in a.get("control", {})},
        }
    gb, ga = before["group"], after["group"]
    out["tap_drops"] = {r: ga.get("tap_drops", {}).get(r, 0) - gb.get("tap_drops", {}).get(r, 0)
                        for r in ga.get("tap_drops", {})}
    out["tap_dropped"] = ga.get("tap_dropped", 0) - gb.get("tap_dropped", 0)
    out["failovers"] = ga["failovers"] - gb["failovers"]
    out["answers_rate_limited"] = (ga.get("answers_rate_limited", 0)
                                   - gb.get("answers_rate_limited", 0))
    out["links"] = {
        name: {k: after["links"][name][k] - before["links"].get(name, {}).get(k, 0)
               for k in after["links"][name]}
        for name in after["links"]}
    return out


def sent_to(result: dict[str, Any], dests: set[str] | None = None,
             classes: Iterable[str] | None = None) -> int:
    """Frames a sender got out, aimed at one of ``dests`` (all if None), of ``classes``."""
    wanted = set(classes) if classes is not None else None
    return sum(n for cls, by_dest in result["sent"].items()
               if wanted is None or cls in wanted
               for dest, n in by_dest.items() if dests is None or dest in dests)


def account(ctx: Ctx, before: dict[str, Any], after: dict[str, Any],
            results: dict[str, Any], events: list[dict[str, Any]]) -> list[Check]:
    """Compare what was sent with what the daemon counted; the checks the fuzz must pass.

    ``events`` are the daemon's events after ``before`` was taken. Only counts that nothing
    else moves are compared exactly; the rest are lower bounds (the ping, the transfer and
    the probes add to them).
    """
    d = deltas(before, after)
    peer, tap = results["peer"], results["tap"]
    names = list(ctx.members)
    active = ctx.active
    checks: list[Check] = []

    changes = [e for e in events if e["kind"] in ("member", "group", "carrier", "address")]
    checks.append(Check("no state change", not changes and d["failovers"] == 0,
                        f"failovers +{d['failovers']}, events: "
                        + (", ".join(f"{e['kind']} {e.get('member') or ''} {e.get('old')}->"
                                     f"{e['state']} ({e['cause']})" for e in changes)
                           or "none")))
    mb, ma = _members(before), _members(after)
    same = all((mb[n]["state"], mb[n]["probe"]) == (ma[n]["state"], ma[n]["probe"])
               for n in names)
    checks.append(Check("members as before", same and after["group"]["active"] == active,
                        ", ".join(f"{n} {mb[n]['state']}/{mb[n]['probe']} -> "
                                  f"{ma[n]['state']}/{ma[n]['probe']}" for n in names)))

    # Every frame that reached a member's data socket is either delivered or dropped for
    # one reason. A frame reaches: the active member if aimed at the group's MAC; a member
    # if aimed at its own MAC; every member if broadcast, multicast or unknown unicast. The
    # kernel may lose some on the way (counted on the veths): those are taken off.
    flooded = {"broadcast", "multicast", "random"}
    for name in names:
        reach_dests = flooded | {name} | ({"group"} if name == active else set())
        reach = sent_to(peer, reach_dests)
        port = names.index(name)
        lost = (d["links"].get("p0", {}).get("tx_dropped", 0)
                + d["links"].get(f"s{port}", {}).get("tx_dropped", 0))
        m = d["members"][name]
        counted = m["rx_packets"] + sum(m["drops"][r] for r in RX_REASONS)
        checks.append(Check(f"{name}: every frame counted", counted >= reach - lost,
                            f"rx_packets + rx drops +{counted} >= {reach} peer frames that "
                            f"reach it - {lost} lost in the kernel on the way"))
    total = sum(d["members"][n]["rx_packets"] + sum(d["members"][n]["drops"][r]
                                                     for r in RX_REASONS) for n in names)
    checks.append(Check("all members: at least every peer frame", total >= sent_to(peer),
                        f"+{total} >= {sent_to(peer)} sent from the peer"))

    # Unknown unicast reaches the active member only from the fuzzer: exactly, unless the
    # kernel dropped some for a full socket buffer (then never more than were sent), or they
    # were longer than the group's MTU allows (then they count as oversize, which frames for
    # other destinations share: so the oversize count is the slack). (Active-backup only: in
    # load spreading the first active member delivers frames for the group's MAC, and each
    # member what comes for its own MAC.)
    randoms = sent_to(peer, {"random"})
    a = d["members"][active]
    foreign = a["drops"]["foreign"]
    kernel = a["drops"]["kernel"]
    oversize = a["drops"]["oversize"]
    spreading = after["group"].get("mode") == "load-spread"
    if not spreading:
        checks.append(Check(f"{active}: foreign = random unicast sent",
                            randoms - kernel - oversize <= foreign <= randoms,
                            f"foreign +{foreign}, random unicast sent {randoms}, kernel "
                            f"+{kernel}, oversize +{oversize}"))
        # Frames for the active member's own MAC are the daemon's: at least the fuzzer's.
        own = sent_to(peer, {active})
        checks.append(Check(f"{active}: daemon >= frames to its own MAC",
                            a["drops"]["daemon"] + oversize + kernel >= own,
                            f"daemon +{a['drops']['daemon']} + oversize +{oversize} >= {own} "
                            "sent to its MAC"))
    for name in names:
        if ma[name]["state"] == "active":  # (several are, in load spreading)
            continue
        m = d["members"][name]
        reach = sent_to(peer, flooded | {name})
        checks.append(Check(f"{name}: inactive >= frames that reach it",
                            m["drops"]["inactive"] + m["drops"]["kernel"] >= reach
                            - d["links"].get(f"s{names.index(name)}", {}).get("tx_dropped", 0)
                            - d["links"].get("p0", {}).get("tx_dropped", 0),
                            f"inactive +{m['drops']['inactive']} + kernel "
                            f"+{m['drops']['kernel']} >= {reach}"))
    # Forged probe replies reach the member's control socket, which must ignore them.
    for name in ctx.tests:
        m = d["members"][name]
        forged = sent_to(peer, {name}, ["probe-forgery"])
        ignored = m["control"].get("ignored", 0)
        checks.append(Check(f"{name}: control ignored >= forged replies", ignored >= forged,
                            f"ignored +{ignored} >= {forged} forged echo replies; "
                            f"replies +{m['control'].get('replies', 0)}, answered "
                            f"+{m['control'].get('answered', 0)}, rate limited "
                            f"+{m['control'].get('rate_limited', 0)}"))
    # The flood's questions for a test address pass that member's control socket filter:
    # each must come out answered or refused by the rate limit, or be counted as dropped
    # (any control counter other than the five outcomes is taken as a drop count).
    outcomes = {"received", "replies", "answered", "rate_limited", "ignored"}
    for name, n in sorted(peer.get("flood", {}).get("for_test_address", {}).items()):
        c = d["members"][name]["control"]
        dropped = sum(v for k, v in c.items() if k not in outcomes)
        seen = c.get("answered", 0) + c.get("rate_limited", 0) + dropped
        checks.append(Check(f"{name}: flood for its test address counted", seen >= n,
                            f"answered +{c.get('answered', 0)} + rate limited "
                            f"+{c.get('rate_limited', 0)} + counted drops +{dropped} >= {n} "
                            f"sent ({max(0, n - seen)} lost uncounted)"))
    # From the TAP: everything the fuzzer got into the TAP left through the active member
    # or was dropped (the TAP's own queue may drop some: its tx_dropped).
    tap_sent = sent_to(tap)
    out = sum(m["tx_packets"] + sum(m["drops"][r] for r in TX_REASONS)
              for m in d["members"].values()) + d["tap_dropped"]
    tap_lost = d["links"].get(GROUP, {}).get("tx_dropped", 0)
    checks.append(Check("TAP: every frame sent or counted", out >= tap_sent - tap_lost,
                        f"tx_packets + tx drops + tap drops +{out} >= {tap_sent} "
                        f"sent into the TAP - {tap_lost} dropped by its queue"))
    return checks


def metrics_check(status_group: dict[str, Any], first: dict[tuple[str, tuple], float],
                  second: dict[tuple[str, tuple], float]) -> Check:
    """Every drop counter in status lies between two metrics scrapes taken around it."""
    bad, seen = [], 0
    gname = status_group["name"]

    def between(name: str, labels: dict[str, str], value: int) -> None:
        nonlocal seen
        key = (name, tuple(sorted(labels.items())))
        lo, hi = first.get(key), second.get(key)
        seen += 1
        if lo is None or hi is None or not lo <= value <= hi:
            bad.append(f"{name}{labels}: metrics {lo}..{hi}, status {value}")

    for m in status_group["members"]:
        for reason, value in m["drops"].items():
            between("vnicbond_member_drops_total",
                    {"group": gname, "member": m["name"], "reason": reason}, value)
        for outcome, value in (m.get("control") or {}).items():
            between("vnicbond_control_frames_total",
                    {"group": gname, "member": m["name"], "outcome": outcome}, value)
    for reason, value in status_group.get("tap_drops", {}).items():
        between("vnicbond_tap_drops_total", {"group": gname, "reason": reason}, value)
    return Check("metrics match status", not bad and seen > 0,
                 f"{seen} counters compared; " + ("; ".join(bad[:5]) or "all agree"))
